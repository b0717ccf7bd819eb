//! A consumer of the event feed that resumes where it stopped: it hands out every event once,
//! in commit order, across reconnects and — with a stored [`Checkpoint`] — across restarts.
//!
//! How it reads (SPEC §7.5):
//!
//! 1. **Catch-up**: `GET /api/events?after=<position>` page by page until a page comes back
//!    empty (`nextCursor` stops moving).
//! 2. **Live**: `GET /api/events/stream` with `Last-Event-ID: <position>`, one event per
//!    message with its cursor as `id:`.
//! 3. **Reconnect**: when the connection drops, the server ends the stream, or nothing (not even
//!    a keep-alive comment) arrives for [`Consumer::idle_timeout`], it waits with exponential
//!    backoff (bounded by [`Consumer::backoff`], with jitter) and starts again at 1. from the
//!    last event it handed out. Events it already handed out are dropped if the server sends
//!    them again (by `source` + `id`, over a bounded window).
//!    When the stream cannot be had at all (e.g. 503 from a replica with the event pipeline
//!    switched off), this is polling the pages at the backoff's pace.
//! 4. **Tokens**: when the stream ends with the `token-expired` message, or a request is 401,
//!    the consumer asks its [`TokenProvider`] for a fresh token, sets it on the client
//!    ([`crate::Client::set_token`]) and goes on. Without a provider — or when a fresh token is
//!    refused too — a 401 ends the stream with [`Error::Unauthorized`].
//!
//! The consumer is a [`futures_util::Stream`] of `Result<(Checkpoint, CloudEvent)>`. The
//! checkpoint says "everything up to and including this event is handed out": store it after
//! processing the event, and pass it to [`Consumer::resume_from`] when you start again. An
//! error item is final (the stream ends after it): 400 (a cursor the service does not know),
//! 401 as above, 403 (not an admin or service token), an event that cannot be read, a failing
//! token provider, or [`Consumer::max_failures`] consecutive failed connection attempts.
//! Transient failures before that are retried and logged (`tracing`), not yielded.
//!
//! ```no_run
//! use futures_util::TryStreamExt;
//! use freshplan_client::Client;
//! use freshplan_client::consumer::Checkpoint;
//!
//! # async fn load_checkpoint() -> Option<String> { None }
//! # async fn save_checkpoint(_: &str) {}
//! # async fn fetch_token() -> String { String::new() }
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let client = Client::new("https://crm.example")?.with_token(fetch_token().await);
//! let start: Checkpoint = match load_checkpoint().await {
//!     Some(text) => text.parse()?,
//!     None => Checkpoint::start(),
//! };
//! let mut events = client
//!     .events()
//!     .consumer()
//!     .resume_from(start)
//!     .token_provider(|| async { Ok::<_, freshplan_client::BoxError>(fetch_token().await) })
//!     .into_stream();
//! while let Some((checkpoint, event)) = events.try_next().await? {
//!     println!("{} {:?}", event.event_type, event.subject);
//!     save_checkpoint(&checkpoint.to_string()).await;
//! }
//! # Ok(())
//! # }
//! ```

use std::collections::{HashSet, VecDeque};
use std::fmt;
use std::future::Future;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use futures_util::stream::{self, BoxStream};
use uuid::Uuid;

use crate::events::{CloudEvent, Cursor, EventQuery};
use crate::sse::{Connection, Item};
use crate::{BoxError, Client, Error, Result};

/// The name of the stream's last message when the caller's token expired (ADR 0010).
pub const TOKEN_EXPIRED_EVENT: &str = "token-expired";

/// The largest page of `GET /api/events`.
const MAX_PAGE: u32 = 1000;

/// A connection that lasted this long was healthy: the failure count starts again.
const HEALTHY: Duration = Duration::from_secs(10);

/// Where a consumer stands: after the event it handed out last.
///
/// Usually that is the event's feed cursor. For an event from the middle of a catch-up page the
/// service names no cursor (a page carries only its last event's), so the checkpoint is the
/// page's start cursor plus the event's id, and resuming skips through that event. Either way
/// it is exact: no event is lost or handed out again.
///
/// Its text form (`Display`/`FromStr`) is for storing it: `after=<cursor>`, with
/// `&through=<event id>` for a mid-page position; the empty string is the start of the feed.
///
/// ```
/// use freshplan_client::consumer::Checkpoint;
/// use freshplan_client::events::Cursor;
///
/// let exact = Checkpoint::after(Cursor::new("7341-42"));
/// assert_eq!(exact.to_string(), "after=7341-42");
/// assert_eq!(exact.cursor(), Some(&Cursor::new("7341-42")));
/// assert!(exact.is_exact());
///
/// let mid_page: Checkpoint = "after=7341-42&through=0190c2d4-e5f6-7a8b-9c0d-1e2f3a4b5c6d".parse().unwrap();
/// assert!(!mid_page.is_exact());
/// assert_eq!(mid_page.to_string().parse::<Checkpoint>().unwrap(), mid_page);
///
/// assert_eq!(Checkpoint::start().to_string(), "");
/// assert_eq!("".parse::<Checkpoint>().unwrap(), Checkpoint::start());
/// assert!("through=nope".parse::<Checkpoint>().is_err());
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Checkpoint {
    after: Option<Cursor>,
    through: Option<Uuid>,
}

impl Checkpoint {
    /// The start of the feed (the oldest retained event).
    pub fn start() -> Checkpoint {
        Checkpoint::default()
    }

    /// After this cursor (a page's `nextCursor`, an SSE `id:`).
    pub fn after(cursor: Cursor) -> Checkpoint {
        Checkpoint {
            after: Some(cursor),
            through: None,
        }
    }

    /// The feed cursor this position is at or after (`None`: the start).
    pub fn cursor(&self) -> Option<&Cursor> {
        self.after.as_ref()
    }

    /// Exactly at [`Checkpoint::cursor`] (not in the middle of a catch-up page).
    pub fn is_exact(&self) -> bool {
        self.through.is_none()
    }
}

impl fmt::Display for Checkpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut url = reqwest::Url::parse("http://checkpoint/").map_err(|_| fmt::Error)?;
        {
            let mut q = url.query_pairs_mut();
            if let Some(a) = &self.after {
                q.append_pair("after", a.as_str());
            }
            if let Some(t) = self.through {
                q.append_pair("through", &t.to_string());
            }
        }
        f.write_str(url.query().unwrap_or(""))
    }
}

/// A text that is not a [`Checkpoint`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a checkpoint: {0}")]
pub struct ParseCheckpointError(String);

impl FromStr for Checkpoint {
    type Err = ParseCheckpointError;

    fn from_str(s: &str) -> std::result::Result<Checkpoint, ParseCheckpointError> {
        let bad = |why: &str| ParseCheckpointError(format!("{s:?}: {why}"));
        let mut url = reqwest::Url::parse("http://checkpoint/").map_err(|_| bad("internal"))?;
        url.set_query(Some(s));
        let mut cp = Checkpoint::default();
        for (k, v) in url.query_pairs() {
            match k.as_ref() {
                "after" if cp.after.is_none() => cp.after = Some(Cursor::new(v.into_owned())),
                "through" if cp.through.is_none() => {
                    cp.through = Some(Uuid::parse_str(&v).map_err(|_| bad("through is no UUID"))?)
                }
                other => return Err(bad(&format!("unexpected {other:?}"))),
            }
        }
        Ok(cp)
    }
}

/// Where a consumer gets a fresh bearer token: when the stream ends with `token-expired`, or a
/// request is 401. Any `Fn() -> impl Future<Output = Result<String, BoxError>>` is one.
///
/// ```
/// use freshplan_client::BoxError;
/// use freshplan_client::consumer::TokenProvider;
///
/// fn takes(_: impl TokenProvider) {}
/// takes(|| async { Ok::<_, BoxError>("eyJhbGciOi…".to_owned()) });
/// ```
pub trait TokenProvider: Send + Sync + 'static {
    /// A token to use from now on (without the `Bearer ` prefix).
    fn fresh_token(&self) -> BoxFuture<'_, std::result::Result<String, BoxError>>;
}

impl<F, Fut> TokenProvider for F
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = std::result::Result<String, BoxError>> + Send + 'static,
{
    fn fresh_token(&self) -> BoxFuture<'_, std::result::Result<String, BoxError>> {
        Box::pin(self())
    }
}

/// A resuming consumer of the event feed (see the [module docs](self)); made by
/// [`crate::events::Events::consumer`], configured with its methods, run with
/// [`Consumer::into_stream`].
///
/// ```
/// use std::time::Duration;
/// use freshplan_client::Client;
/// use freshplan_client::events::Cursor;
///
/// let client = Client::new("http://localhost:8080")?.with_token("t");
/// let consumer = client
///     .events()
///     .consumer()
///     .after(Cursor::new("7341-42"))
///     .event_type("lead.status.changed.v1")
///     .page_limit(200)
///     .backoff(Duration::from_millis(100), Duration::from_secs(10))
///     .max_failures(20);
/// let _events = consumer.into_stream(); // nothing happens until polled
/// # Ok::<(), freshplan_client::Error>(())
/// ```
#[must_use = "a consumer does nothing until streamed"]
pub struct Consumer {
    client: Client,
    start: Checkpoint,
    event_type: Option<String>,
    page_limit: u32,
    initial_backoff: Duration,
    max_backoff: Duration,
    max_failures: Option<u32>,
    idle_timeout: Option<Duration>,
    dedupe_window: usize,
    token_provider: Option<Arc<dyn TokenProvider>>,
}

impl fmt::Debug for Consumer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Consumer")
            .field("start", &self.start)
            .field("event_type", &self.event_type)
            .field("page_limit", &self.page_limit)
            .field("initial_backoff", &self.initial_backoff)
            .field("max_backoff", &self.max_backoff)
            .field("max_failures", &self.max_failures)
            .field("idle_timeout", &self.idle_timeout)
            .field("token_provider", &self.token_provider.is_some())
            .finish()
    }
}

impl Consumer {
    pub(crate) fn new(client: Client) -> Consumer {
        Consumer {
            client,
            start: Checkpoint::start(),
            event_type: None,
            page_limit: 500,
            initial_backoff: Duration::from_millis(250),
            max_backoff: Duration::from_secs(30),
            max_failures: None,
            idle_timeout: Some(Duration::from_secs(60)),
            dedupe_window: 10_000,
            token_provider: None,
        }
    }

    /// Start after this checkpoint (one the consumer handed out before).
    pub fn resume_from(mut self, checkpoint: Checkpoint) -> Consumer {
        self.start = checkpoint;
        self
    }

    /// Start after this feed cursor.
    pub fn after(self, cursor: Cursor) -> Consumer {
        self.resume_from(Checkpoint::after(cursor))
    }

    /// Only events of this catalog type. Checkpoints are positions in the filtered feed: resume
    /// with the same filter.
    pub fn event_type(mut self, event_type: impl Into<String>) -> Consumer {
        self.event_type = Some(event_type.into());
        self
    }

    /// Events per catch-up page (1–1000, default 500).
    pub fn page_limit(mut self, limit: u32) -> Consumer {
        self.page_limit = limit.clamp(1, MAX_PAGE);
        self
    }

    /// The wait before the first reconnect, doubled per consecutive failure up to `max`
    /// (defaults 250 ms and 30 s); each wait is jittered down by up to half.
    pub fn backoff(mut self, initial: Duration, max: Duration) -> Consumer {
        self.initial_backoff = initial;
        self.max_backoff = max.max(initial);
        self
    }

    /// End with the last error after this many consecutive failed attempts (default: retry
    /// forever).
    pub fn max_failures(mut self, failures: u32) -> Consumer {
        self.max_failures = Some(failures.max(1));
        self
    }

    /// Reconnect when the stream sends nothing, not even a keep-alive comment, for this long
    /// (default 60 s, four of the service's default keep-alive intervals; `None`: never): a
    /// connection that died without a word (a lost peer, a NAT that forgot it) looks exactly
    /// like a quiet one otherwise.
    pub fn idle_timeout(mut self, timeout: Option<Duration>) -> Consumer {
        self.idle_timeout = timeout;
        self
    }

    /// How many recent event keys (`source` + `id`) to remember for dropping repeats (default
    /// 10,000).
    pub fn dedupe_window(mut self, events: usize) -> Consumer {
        self.dedupe_window = events.max(1);
        self
    }

    /// Where to get a fresh token when the stream says `token-expired` or a request is 401.
    pub fn token_provider(mut self, provider: impl TokenProvider) -> Consumer {
        self.token_provider = Some(Arc::new(provider));
        self
    }

    /// Runs the consumer: the events with their checkpoints, in commit order, each once (see the
    /// [module docs](self)). Dropping the stream stops it.
    pub fn into_stream(self) -> BoxStream<'static, Result<(Checkpoint, CloudEvent)>> {
        let run = Run::new(self);
        stream::unfold(run, |mut run| async move {
            let item = run.next().await?;
            Some((item, run))
        })
        .boxed()
    }
}

/// What the consumer does next.
enum Phase {
    CatchUp,
    Connect,
    Stream {
        conn: Box<Connection>,
        since: Instant,
    },
    Refresh,
    Wait {
        delay: Duration,
        then: Box<Phase>,
    },
}

/// The recent event keys handed out.
struct Seen {
    keys: HashSet<(String, Uuid)>,
    order: VecDeque<(String, Uuid)>,
    capacity: usize,
}

impl Seen {
    /// Records `e`; false if it was handed out already.
    fn insert(&mut self, e: &CloudEvent) -> bool {
        let key = (e.source.clone(), e.id);
        if !self.keys.insert(key.clone()) {
            return false;
        }
        self.order.push_back(key);
        while self.order.len() > self.capacity {
            if let Some(old) = self.order.pop_front() {
                self.keys.remove(&old);
            }
        }
        true
    }
}

/// A running consumer.
struct Run {
    cfg: Consumer,
    /// The position after the last event handed out.
    at: Checkpoint,
    /// A mid-page start position still to skip through (only until the first page).
    skip_through: Option<Uuid>,
    backlog: VecDeque<(Checkpoint, CloudEvent)>,
    seen: Seen,
    phase: Option<Phase>,
    failures: u32,
    /// A fresh token was fetched and has not been accepted yet.
    refreshed: bool,
    done: bool,
}

/// How a failed step goes on.
enum Failure {
    /// Worth another attempt after a backoff.
    Retry(Error),
    /// Ends the stream.
    Fatal(Error),
    /// 401: a fresh token might help.
    Unauthorized(Error),
}

fn classify(e: Error) -> Failure {
    match e {
        Error::Unauthorized(_) => Failure::Unauthorized(e),
        Error::Transport(_) | Error::Status { .. } => Failure::Retry(e),
        Error::Problem(ref p) if p.status >= 500 || p.status == 429 => Failure::Retry(e),
        other => Failure::Fatal(other),
    }
}

impl Run {
    fn new(cfg: Consumer) -> Run {
        let skip_through = cfg.start.through;
        Run {
            at: cfg.start.clone(),
            skip_through,
            backlog: VecDeque::new(),
            seen: Seen {
                keys: HashSet::new(),
                order: VecDeque::new(),
                capacity: cfg.dedupe_window,
            },
            phase: Some(Phase::CatchUp),
            failures: 0,
            refreshed: false,
            done: false,
            cfg,
        }
    }

    fn backoff(&self) -> Duration {
        let exp = self.failures.saturating_sub(1).min(20);
        let full = self
            .cfg
            .initial_backoff
            .saturating_mul(1 << exp)
            .min(self.cfg.max_backoff);
        // Jitter down by up to half, so that many consumers don't reconnect in step.
        let r = (Uuid::new_v4().as_u128() % 1000) as u32;
        full.mul_f64(0.5 + f64::from(r) / 2000.0)
    }

    /// Goes on after `failure` from a step that is retried from `retry`; the error to end with,
    /// if it is final.
    fn fail(&mut self, failure: Failure, retry: Phase) -> Option<Error> {
        match failure {
            Failure::Fatal(e) => Some(e),
            Failure::Unauthorized(e) => {
                if self.cfg.token_provider.is_some() && !self.refreshed {
                    tracing::debug!("event consumer: 401; asking the token provider");
                    self.phase = Some(Phase::Refresh);
                    None
                } else {
                    Some(e)
                }
            }
            Failure::Retry(e) => {
                self.failures += 1;
                if self
                    .cfg
                    .max_failures
                    .is_some_and(|max| self.failures >= max)
                {
                    return Some(e);
                }
                let delay = self.backoff();
                tracing::warn!(error = %e, failures = self.failures, ?delay, "event consumer: reconnecting");
                self.phase = Some(Phase::Wait {
                    delay,
                    then: Box::new(retry),
                });
                None
            }
        }
    }

    async fn next(&mut self) -> Option<Result<(Checkpoint, CloudEvent)>> {
        loop {
            if self.done {
                return None;
            }
            if let Some((checkpoint, event)) = self.backlog.pop_front() {
                self.at = checkpoint.clone();
                if self.seen.insert(&event) {
                    return Some(Ok((checkpoint, event)));
                }
                tracing::debug!(id = %event.id, "event consumer: dropping a repeated event");
                continue;
            }
            let phase = self.phase.take().unwrap_or(Phase::CatchUp);
            if let Err(e) = self.step(phase).await {
                self.done = true;
                return Some(Err(e));
            }
        }
    }

    /// One step of the current phase; an error ends the stream.
    async fn step(&mut self, phase: Phase) -> Result<()> {
        match phase {
            Phase::CatchUp => self.catch_up().await,
            Phase::Connect => self.connect().await,
            Phase::Stream { conn, since } => self.read(conn, since).await,
            Phase::Refresh => self.refresh().await,
            Phase::Wait { delay, then } => {
                tokio::time::sleep(delay).await;
                self.phase = Some(*then);
                Ok(())
            }
        }
    }

    async fn catch_up(&mut self) -> Result<()> {
        let mut query = EventQuery::new().limit(if self.skip_through.is_some() {
            // The skipped event is within a page of the cursor: find it in one read.
            MAX_PAGE
        } else {
            self.cfg.page_limit
        });
        if let Some(after) = self.at.cursor() {
            query = query.after(after.clone());
        }
        if let Some(t) = &self.cfg.event_type {
            query = query.event_type(t.clone());
        }
        let page = match self.cfg.client.events().page(&query).await {
            Ok(page) => page,
            Err(e) => {
                return match self.fail(classify(e), Phase::CatchUp) {
                    Some(e) => Err(e),
                    None => Ok(()),
                };
            }
        };
        self.refreshed = false;
        let start = self.at.cursor().cloned();
        let next = Cursor::from(page.next_cursor);
        let mut events = page.events;
        let read = events.len();
        if let Some(through) = self.skip_through.take() {
            match events.iter().position(|e| e.id == through) {
                Some(i) => {
                    events.drain(..=i);
                }
                None => tracing::warn!(
                    %through,
                    "event consumer: the checkpoint's event is not after its cursor any more \
                     (retention, or another type filter); handing out everything after the cursor"
                ),
            }
        }
        if read == 0 {
            // Caught up: `nextCursor` did not move.
            self.at = Checkpoint::after(next);
            self.phase = Some(Phase::Connect);
            return Ok(());
        }
        // Progress: the attempts that failed before it (e.g. a stream that is switched off on
        // this replica, 503) no longer count towards `max_failures`.
        self.failures = 0;
        let last = events.len().saturating_sub(1);
        for (i, event) in events.into_iter().enumerate() {
            let checkpoint = if i == last {
                Checkpoint::after(next.clone())
            } else {
                Checkpoint {
                    after: start.clone(),
                    through: Some(event.id),
                }
            };
            self.backlog.push_back((checkpoint, event));
        }
        if self.backlog.is_empty() {
            // Everything on the page was skipped: go on after it.
            self.at = Checkpoint::after(next);
        }
        self.phase = Some(Phase::CatchUp);
        Ok(())
    }

    async fn connect(&mut self) -> Result<()> {
        let stream = self
            .cfg
            .client
            .events()
            .stream(self.at.cursor(), self.cfg.event_type.as_deref())
            .await;
        match stream {
            Ok(conn) => {
                self.refreshed = false;
                self.phase = Some(Phase::Stream {
                    conn: Box::new(conn),
                    since: Instant::now(),
                });
                Ok(())
            }
            Err(e) => match self.fail(classify(e), Phase::CatchUp) {
                Some(e) => Err(e),
                None => Ok(()),
            },
        }
    }

    async fn read(&mut self, mut conn: Box<Connection>, since: Instant) -> Result<()> {
        let item = match self.cfg.idle_timeout {
            Some(idle) => match tokio::time::timeout(idle, conn.next_item()).await {
                Ok(item) => item,
                Err(_) => {
                    tracing::warn!(
                        ?idle,
                        "event consumer: the stream went silent; reconnecting"
                    );
                    return self.dropped(since, Error::StreamEnded("silent past the idle timeout"));
                }
            },
            None => conn.next_item().await,
        };
        match item {
            Ok(Some(Item::Message(m))) => {
                match m.event.as_deref() {
                    None | Some("message") => {
                        let id = m.id.ok_or_else(|| Error::Decode {
                            what: "event",
                            status: 200,
                            message: "an event stream message without an id".into(),
                        })?;
                        let event: CloudEvent =
                            serde_json::from_str(&m.data).map_err(|e| Error::Decode {
                                what: "event",
                                status: 200,
                                message: format!("message {id}: {e}"),
                            })?;
                        self.failures = 0;
                        self.backlog
                            .push_back((Checkpoint::after(Cursor::new(id)), event));
                    }
                    Some(TOKEN_EXPIRED_EVENT) => {
                        tracing::debug!(data = %m.data, "event consumer: the token expired");
                        // Without a provider, reconnect with the same token: the service
                        // refuses it (401) if it really expired, and that ends the stream.
                        self.phase = Some(if self.cfg.token_provider.is_some() {
                            Phase::Refresh
                        } else {
                            Phase::CatchUp
                        });
                        return Ok(());
                    }
                    Some(_) => {} // a message of another kind: not for this consumer
                }
                self.phase = Some(Phase::Stream { conn, since });
                Ok(())
            }
            Ok(Some(Item::Comment(_))) => {
                self.phase = Some(Phase::Stream { conn, since });
                Ok(())
            }
            Ok(None) => self.dropped(since, Error::StreamEnded("the server ended it")),
            Err(e) => self.dropped(since, e),
        }
    }

    /// The stream ended, broke off or went silent (`e`): reconnect after a backoff.
    fn dropped(&mut self, since: Instant, e: Error) -> Result<()> {
        if since.elapsed() >= HEALTHY {
            self.failures = 0;
        }
        match self.fail(Failure::Retry(e), Phase::CatchUp) {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    async fn refresh(&mut self) -> Result<()> {
        let Some(provider) = self.cfg.token_provider.clone() else {
            self.phase = Some(Phase::CatchUp);
            return Ok(());
        };
        match provider.fresh_token().await {
            Ok(token) => {
                self.cfg.client.set_token(token);
                self.refreshed = true;
                self.phase = Some(Phase::CatchUp);
                Ok(())
            }
            Err(e) => match self.fail(Failure::Retry(Error::Token(e)), Phase::Refresh) {
                Some(e) => Err(e),
                None => Ok(()),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(id: u128) -> CloudEvent {
        serde_json::from_value(serde_json::json!({
            "specversion": "1.0", "id": Uuid::from_u128(id), "source": "freshplan.leads",
            "type": "lead.created.v1", "time": "2026-03-02T09:30:00Z",
            "datacontenttype": "application/json", "idempotencykey": Uuid::from_u128(id),
            "data": {}
        }))
        .unwrap()
    }

    #[test]
    fn the_dedupe_window_forgets_the_oldest() {
        let mut seen = Seen {
            keys: HashSet::new(),
            order: VecDeque::new(),
            capacity: 2,
        };
        assert!(seen.insert(&event(1)));
        assert!(!seen.insert(&event(1)));
        assert!(seen.insert(&event(2)));
        assert!(seen.insert(&event(3)));
        assert!(seen.insert(&event(1)), "1 was forgotten");
        assert!(!seen.insert(&event(3)));
    }

    #[test]
    fn backoff_doubles_up_to_the_bound_with_jitter_down_to_half() {
        let client = Client::new("http://x").unwrap();
        let mut run = Run::new(
            Consumer::new(client).backoff(Duration::from_millis(100), Duration::from_secs(1)),
        );
        for (failures, full) in [
            (1, 100),
            (2, 200),
            (3, 400),
            (4, 800),
            (5, 1000),
            (40, 1000),
        ] {
            run.failures = failures;
            let d = run.backoff();
            assert!(
                d >= Duration::from_millis(full / 2) && d <= Duration::from_millis(full),
                "{failures}: {d:?}"
            );
        }
    }
}
