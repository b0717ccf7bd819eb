//! The notifier: turns commit signals into coalesced `NOTIFY`s, outside request transactions.
//!
//! `NOTIFY` inside a writing transaction takes a cluster-wide lock at commit, serialising every
//! committing transaction that notified. Here the writer only pokes a [`CommitSignal`] after
//! its commit; this task issues `pg_notify` in its own short statement, at most once per channel
//! per window: the first signal after a quiet window is sent at once, the signals that arrive
//! inside the window collapse into one `NOTIFY` when it ends. The payload is a hint, never the
//! event: `pg_snapshot_xmax(pg_current_snapshot())` at send time (every event committed before
//! the NOTIFY has a smaller txid).

use std::time::Duration;

use sqlx::PgPool;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::signal::CommitSignal;

/// Channel of every event (SPEC §7.3).
pub const CHANNEL_EVENTS: &str = "cross_module_events";
/// Channel of events that move cockpit figures (SPEC §7.3).
pub const CHANNEL_DASHBOARD: &str = "dashboard_updates";

/// Longest a NOTIFY may take before it is given up (the listeners' polling covers a lost one).
const NOTIFY_TIMEOUT: Duration = Duration::from_secs(5);

/// Sends one NOTIFY on `cross_module_events`, and on `dashboard_updates` when `dashboard`, in one
/// statement (one implicit transaction, so both or neither).
pub(crate) async fn notify(pool: &PgPool, dashboard: bool) -> Result<(), sqlx::Error> {
    sqlx::query(
        "select pg_notify(c.channel, h.hint)
           from (select pg_snapshot_xmax(pg_current_snapshot())::text as hint) h,
                (values ($1::text, true), ($2::text, $3::bool)) as c(channel, wanted)
          where c.wanted",
    )
    .bind(CHANNEL_EVENTS)
    .bind(CHANNEL_DASHBOARD)
    .bind(dashboard)
    .execute(pool)
    .await?;
    Ok(())
}

/// The notifier task.
pub(crate) async fn run(
    pool: PgPool,
    signal: CommitSignal,
    window: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut last_sent: Option<Instant> = None;
    loop {
        tokio::select! {
            biased;
            _ = shutdown.changed() => return,
            () = signal.wait_notifier() => {}
        }
        if let Some(last) = last_sent {
            let due = last + window;
            if Instant::now() < due {
                tokio::select! {
                    biased;
                    _ = shutdown.changed() => return,
                    () = tokio::time::sleep_until(due) => {}
                }
            }
        }
        let (events, dashboard) = signal.take();
        if !events {
            continue;
        }
        last_sent = Some(Instant::now());
        match tokio::time::timeout(NOTIFY_TIMEOUT, notify(&pool, dashboard)).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => {
                tracing::warn!(%error, "NOTIFY failed; other replicas will see the events by polling");
            }
            Err(_) => {
                tracing::warn!("NOTIFY timed out; other replicas will see the events by polling");
            }
        }
    }
}
