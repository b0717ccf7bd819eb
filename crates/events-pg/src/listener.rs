//! The reader: one dedicated connection (not from the application pool) that LISTENs on
//! `cross_module_events` and reads the outbox in commit order for the fan-out.
//!
//! On every (re)connect it first subscribes, then catches up from its position (so a
//! notification sent between the catch-up and the subscription cannot be missed), then waits
//! for: a notification, an in-process commit signal, the polling timer (the fallback when
//! notifications stop — and, shorter, while a committed event waits behind an older running
//! transaction), or the ping timer. A failed read or ping, a lost connection or a timeout drops
//! the connection; it is re-established with exponential backoff and jitter, and counted.
//!
//! Liveness: the server is asked to probe the connection with TCP keepalives
//! (`tcp_keepalives_idle`/`_interval`/`_count` as startup options; sqlx 0.8 exposes no client-side
//! socket option), and the reader pings it (`select 1` under a timeout) when it has been quiet
//! for `ping_interval`, so a half-open connection is noticed from this side too.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use freshplan_kernel::Actor;
use freshplan_kernel::metrics::{EventMetrics, PATH_LOCAL, PATH_NOTIFY, PATH_POLL, PATH_RECONNECT};
use sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions};
use sqlx::{Executor as _, PgPool};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::cursor::Cursor;
use crate::fanout::Fanout;
use crate::notifier::CHANNEL_EVENTS;
use crate::outbox::{self, OutboxError};
use crate::signal::CommitSignal;

/// `application_name` of the listener's connection (find it in `pg_stat_activity`).
pub const LISTENER_APPLICATION_NAME: &str = "freshplan-events-listener";

/// What the reader needs to know.
#[derive(Debug, Clone)]
pub(crate) struct ReaderSettings {
    pub(crate) page_size: u32,
    pub(crate) poll_interval: Duration,
    pub(crate) blocked_poll_min: Duration,
    pub(crate) blocked_poll_max: Duration,
    pub(crate) ping_interval: Duration,
    pub(crate) ping_timeout: Duration,
    pub(crate) query_timeout: Duration,
    pub(crate) connect_timeout: Duration,
    pub(crate) reconnect_min: Duration,
    pub(crate) reconnect_max: Duration,
    pub(crate) keepalive_idle: Duration,
    pub(crate) keepalive_interval: Duration,
    pub(crate) keepalive_count: u32,
}

/// The listener's state as the handle sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ListenerStatus {
    /// The dedicated connection is up, subscribed and caught up at least once.
    pub connected: bool,
    /// Connections established after a loss, since start.
    pub reconnects: u64,
    /// Everything at or before this position has been handed to the live consumers.
    pub position: Option<Cursor>,
    /// The database no longer has the history this listener delivered (a failover to a standby
    /// that lacked the latest transactions: asynchronous replication). The listener has stopped:
    /// what it and the in-memory consumers hold belongs to a history that is gone, and only a
    /// restart of the process starts them afresh (ADR 0015).
    pub diverged: bool,
}

pub(crate) type SharedStatus = Arc<Mutex<ListenerStatus>>;

fn update(status: &SharedStatus, f: impl FnOnce(&mut ListenerStatus)) {
    f(&mut status
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner));
}

/// Why a session ended.
#[derive(Debug, thiserror::Error)]
enum SessionEnd {
    #[error("shutdown")]
    Shutdown,
    #[error("connection lost")]
    Lost,
    #[error("{0}")]
    Database(#[from] sqlx::Error),
    #[error("{0}")]
    Outbox(#[from] OutboxError),
    #[error("{0} timed out")]
    Timeout(&'static str),
    #[error("the database's event history diverged from what this listener delivered: {0}")]
    Diverged(String),
}

pub(crate) struct Reader {
    pub(crate) options: PgConnectOptions,
    pub(crate) settings: ReaderSettings,
    pub(crate) fanout: Arc<Fanout>,
    pub(crate) signal: CommitSignal,
    pub(crate) metrics: Arc<dyn EventMetrics>,
    pub(crate) status: SharedStatus,
    pub(crate) shutdown: watch::Receiver<bool>,
}

/// A little jitter (0–25 % of `d`) without a random-number crate: the clock's nanoseconds.
fn jitter(d: Duration) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |t| t.subsec_nanos());
    d + d.mul_f64(f64::from(nanos % 1000) / 4000.0)
}

impl Reader {
    fn stopping(&self) -> bool {
        *self.shutdown.borrow()
    }

    pub(crate) async fn run(mut self) {
        let mut position: Option<Cursor> = None;
        let mut last_event: Option<(Cursor, uuid::Uuid)> = None;
        let mut backoff = self.settings.reconnect_min;
        let mut ever_connected = false;
        loop {
            if self.stopping() {
                return;
            }
            match tokio::time::timeout(self.settings.connect_timeout, self.connect()).await {
                Ok(Ok((pool, mut listener))) => {
                    if ever_connected {
                        self.metrics.listener_reconnected();
                        update(&self.status, |s| s.reconnects += 1);
                    }
                    ever_connected = true;
                    let end = self
                        .session(&mut listener, &mut position, &mut last_event, &mut backoff)
                        .await;
                    update(&self.status, |s| s.connected = false);
                    drop(listener);
                    // Close in the background: a dead peer must not hold up the reconnect.
                    tokio::spawn(async move {
                        let _ = tokio::time::timeout(Duration::from_secs(2), pool.close()).await;
                    });
                    match end {
                        SessionEnd::Shutdown => return,
                        SessionEnd::Diverged(why) => {
                            tracing::error!(
                                %why,
                                "the database lost events this replica already delivered (a \
                                 failover to a standby that lacked them); the event listener \
                                 stops and /health/live fails so the process is restarted"
                            );
                            update(&self.status, |s| s.diverged = true);
                            return;
                        }
                        other => {
                            tracing::warn!(error = %other, "event listener connection lost; reconnecting");
                        }
                    }
                }
                Ok(Err(error)) => {
                    tracing::warn!(%error, retry_in = ?backoff, "event listener cannot connect");
                }
                Err(_) => tracing::warn!(retry_in = ?backoff, "event listener connect timed out"),
            }
            tokio::select! {
                biased;
                _ = self.shutdown.changed() => return,
                () = tokio::time::sleep(jitter(backoff)) => {}
            }
            backoff = (backoff * 2).min(self.settings.reconnect_max);
        }
    }

    /// A dedicated one-connection pool (sqlx's listener reconnects through a pool; we do not let
    /// it — reconnecting is ours, so it is counted and followed by a catch-up), the listener on
    /// it, the system context, and the subscription.
    async fn connect(&self) -> Result<(PgPool, PgListener), sqlx::Error> {
        let s = &self.settings;
        let options = self
            .options
            .clone()
            .application_name(LISTENER_APPLICATION_NAME)
            .options([
                (
                    "tcp_keepalives_idle",
                    s.keepalive_idle.as_secs().max(1).to_string(),
                ),
                (
                    "tcp_keepalives_interval",
                    s.keepalive_interval.as_secs().max(1).to_string(),
                ),
                ("tcp_keepalives_count", s.keepalive_count.max(1).to_string()),
            ]);
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .min_connections(0)
            .acquire_timeout(s.connect_timeout)
            .test_before_acquire(false)
            .max_lifetime(None)
            .idle_timeout(None)
            .connect_with(options)
            .await?;
        let mut listener = PgListener::connect_with(&pool).await?;
        listener.ignore_pool_close_event(true);
        listener.eager_reconnect(false);
        // This connection belongs to the system reader alone, so its context is session-wide
        // (pooled connections set theirs per transaction): the application role, system context.
        let (user, roles, territories) = freshplan_store_postgres::context_of(&Actor::system());
        (&mut listener)
            .execute(
                format!(
                    "set role {}; {}",
                    freshplan_store_postgres::APP_ROLE,
                    freshplan_store_postgres::SESSION_SETTINGS
                )
                .as_str(),
            )
            .await?;
        sqlx::query(
            "select set_config('freshplan.user_id', $1, false),
                    set_config('freshplan.roles', $2, false),
                    set_config('freshplan.territories', $3, false)",
        )
        .bind(user)
        .bind(roles)
        .bind(territories)
        .execute(&mut listener)
        .await?;
        listener.listen(CHANNEL_EVENTS).await?;
        Ok((pool, listener))
    }

    async fn session(
        &mut self,
        listener: &mut PgListener,
        position: &mut Option<Cursor>,
        last_event: &mut Option<(Cursor, uuid::Uuid)>,
        backoff: &mut Duration,
    ) -> SessionEnd {
        match self.serve(listener, position, last_event, backoff).await {
            Ok(()) => SessionEnd::Shutdown,
            Err(end) => end,
        }
    }

    async fn serve(
        &mut self,
        listener: &mut PgListener,
        position: &mut Option<Cursor>,
        last_event: &mut Option<(Cursor, uuid::Uuid)>,
        backoff: &mut Duration,
    ) -> Result<(), SessionEnd> {
        let s = self.settings.clone();
        if let Some(at) = *position {
            // A reconnect: is this still the history we delivered from?
            let check = self
                .timed("history check", history_check(listener, at, *last_event))
                .await??;
            if let Some(why) = check {
                return Err(SessionEnd::Diverged(why));
            }
        }
        if position.is_none() {
            // First connection: start with the events that commit from now on (durable
            // consumers catch up from their checkpoints by themselves).
            let xmin: String = self
                .timed(
                    "start",
                    sqlx::query_scalar("select pg_snapshot_xmin(pg_current_snapshot())::text")
                        .fetch_one(&mut *listener),
                )
                .await??;
            let start = Cursor::new(xmin.parse().map_err(|_| OutboxError::Malformed("xmin"))?, 0);
            *position = Some(start);
            self.fanout.dispatch(&[], PATH_RECONNECT, start);
        }
        let mut blocked = self
            .catch_up(listener, position, last_event, PATH_RECONNECT)
            .await?;
        update(&self.status, |st| st.connected = true);
        *backoff = s.reconnect_min;
        let mut blocked_delay = s.blocked_poll_min;
        // `last_read` drives the polling fallback, `last_traffic` (reads and pings) the ping.
        let mut last_read = Instant::now();
        let mut last_traffic = last_read;
        loop {
            let next_poll = if blocked {
                last_read + blocked_delay
            } else {
                last_read + s.poll_interval
            };
            let next_ping = last_traffic + s.ping_interval;
            let path = tokio::select! {
                biased;
                _ = self.shutdown.changed() => return Ok(()),
                n = listener.try_recv() => match n {
                    Ok(Some(_)) => {
                        // Many notifications, one read.
                        while listener.next_buffered().is_some() {}
                        PATH_NOTIFY
                    }
                    Ok(None) => return Err(SessionEnd::Lost),
                    Err(e) => return Err(e.into()),
                },
                () = self.signal.wait_reader() => PATH_LOCAL,
                () = tokio::time::sleep_until(next_poll) => PATH_POLL,
                () = tokio::time::sleep_until(next_ping) => {
                    self.timed("ping", sqlx::query("select 1").execute(&mut *listener)).await??;
                    last_traffic = Instant::now();
                    continue;
                }
            };
            if self.stopping() {
                return Ok(());
            }
            let was_blocked = blocked;
            blocked = self.catch_up(listener, position, last_event, path).await?;
            last_read = Instant::now();
            last_traffic = last_read;
            blocked_delay = if blocked && was_blocked {
                (blocked_delay * 2).min(s.blocked_poll_max)
            } else {
                s.blocked_poll_min
            };
            tracing::debug!(path, ?position, blocked, "reader caught up");
        }
    }

    async fn timed<T>(
        &self,
        what: &'static str,
        f: impl std::future::Future<Output = T>,
    ) -> Result<T, SessionEnd> {
        let limit = if what == "ping" {
            self.settings.ping_timeout
        } else {
            self.settings.query_timeout
        };
        tokio::time::timeout(limit, f)
            .await
            .map_err(|_| SessionEnd::Timeout(what))
    }

    /// Reads and dispatches pages until one comes back short. Returns whether committed events
    /// wait behind a running transaction.
    async fn catch_up(
        &self,
        listener: &mut PgListener,
        position: &mut Option<Cursor>,
        last_event: &mut Option<(Cursor, uuid::Uuid)>,
        path: &'static str,
    ) -> Result<bool, SessionEnd> {
        let limit = self.settings.page_size;
        loop {
            let after = position.unwrap_or(Cursor::START);
            let batch = self
                .timed("read", outbox::read_batch(&mut *listener, after, limit))
                .await??;
            let next = batch.next_position(after, limit);
            let events: Vec<_> = batch.events.into_iter().map(Arc::new).collect();
            if let Some(e) = events.last() {
                *last_event = Some((e.cursor, e.event.id));
            }
            self.fanout.dispatch(&events, path, next);
            *position = Some(next);
            update(&self.status, |s| s.position = Some(next));
            if events.len() < limit as usize {
                return Ok(batch.blocked);
            }
        }
    }
}

/// Whether the database still holds the history this listener delivered from, checked on every
/// reconnect (ADR 0015). On the same history, every transaction below the listener's position
/// had finished when it was read, so the database's horizon is at or past the position; no event
/// can have appeared between the last event it delivered and its position; and that event is
/// still there. A promoted standby that lacked the latest transactions (asynchronous
/// replication) breaks one of these: it hands out their transaction ids again, so events of new
/// transactions would sit below the position and never be delivered. `Some(why)` then.
async fn history_check(
    listener: &mut PgListener,
    position: Cursor,
    last_event: Option<(Cursor, uuid::Uuid)>,
) -> Result<Option<String>, sqlx::Error> {
    use sqlx::Row as _;
    let since = last_event.map_or(position, |(c, _)| c.min(position));
    let row = sqlx::query(
        "select pg_snapshot_xmin(pg_current_snapshot())::text as xmin,
                exists(select 1 from event_outbox
                        where (txid, id) > ($1::text::xid8, $2::bigint)
                          and (txid, id) <= ($3::text::xid8, $4::bigint)) as hidden,
                (select event_id from event_outbox
                  where txid = $5::text::xid8 and id = $6::bigint) as last_event,
                exists(select 1 from event_outbox
                        where (txid, id) < ($5::text::xid8, $6::bigint)) as older",
    )
    .bind(since.txid().to_string())
    .bind(since.id())
    .bind(position.txid().to_string())
    .bind(position.id())
    .bind(last_event.map_or(0, |(c, _)| c.txid()).to_string())
    .bind(last_event.map_or(0, |(c, _)| c.id()))
    .fetch_one(&mut *listener)
    .await?;
    let xmin: String = row.try_get("xmin")?;
    let horizon = Cursor::horizon(xmin.parse().unwrap_or(0));
    if horizon < position {
        return Ok(Some(format!(
            "the database's oldest running transaction {xmin} is below the listener's position {position}"
        )));
    }
    if row.try_get::<bool, _>("hidden")? {
        return Ok(Some(format!(
            "events appeared between {since} and the listener's position {position}"
        )));
    }
    if let Some((cursor, id)) = last_event {
        let found: Option<uuid::Uuid> = row.try_get("last_event")?;
        // Missing with nothing older: retention purged it (the outbox is older than the last
        // event this listener saw), not a lost history.
        let purged = found.is_none() && !row.try_get::<bool, _>("older")?;
        if found != Some(id) && !purged {
            return Ok(Some(format!(
                "the last delivered event {id} at {cursor} is not in the outbox (found {found:?})"
            )));
        }
    }
    Ok(None)
}
