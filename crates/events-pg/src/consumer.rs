//! In-process consumers: the [`EventConsumer`] port and the task that feeds one.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use freshplan_kernel::Actor;
use freshplan_kernel::metrics::{
    CONSUMED_DUPLICATE, CONSUMED_ERROR, CONSUMED_OK, EventMetrics, PATH_CATCH_UP,
};
use sqlx::{PgConnection, PgPool};
use tokio::sync::{Notify, mpsc, watch};

use crate::checkpoint;
use crate::cursor::Cursor;
use crate::dedupe::DedupeWindow;
use crate::fanout::{Delivery, Fanout};
use crate::outbox::{self, OutboxEvent};

/// What a consumer's `apply` may return on failure: the event is retried (with backoff) until
/// `apply` succeeds. To give up on an event, log it and return `Ok`.
pub type ConsumerError = Box<dyn std::error::Error + Send + Sync>;

/// How a consumer's effect relates to its checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsumerMode {
    /// The effect is written through the transaction handed to `apply`, which also advances the
    /// durable checkpoint: each event's effect commits exactly once, across restarts and across
    /// replicas running the same consumer (they serialise on a per-consumer advisory lock).
    Transactional,
    /// The effect happens outside the database (a mail, a webhook); the durable checkpoint is
    /// committed after it. At-least-once: a crash between effect and checkpoint repeats the
    /// effect; within a process the dedupe window suppresses repeats. Replicas running the same
    /// consumer serialise on the same lock.
    AtLeastOnce,
    /// In-memory, per process (SSE fan-out, metrics): no durable checkpoint; starts with the
    /// events that commit after the pipeline's first connection, keeps its position in memory,
    /// and dedupes by `source`+`id`. Every replica runs its own.
    Ephemeral,
}

/// Where a durable consumer without a checkpoint starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StartFrom {
    /// At the oldest retained event (a new read model builds itself from history).
    #[default]
    Oldest,
    /// With events that commit from now on.
    Head,
}

/// An in-process consumer of the outbox.
///
/// `apply` is called once per event, in commit order, never concurrently for one consumer.
/// Per lead (subject), events arrive in the order their changes committed.
#[async_trait]
pub trait EventConsumer: Send + Sync + 'static {
    /// A stable name: the checkpoint key and the metrics label. Lower-case ASCII letters,
    /// digits, `.`, `_` and `-`, starting with a letter or digit, at most 63 characters.
    fn name(&self) -> &'static str;

    /// How effect and checkpoint relate.
    fn mode(&self) -> ConsumerMode;

    /// Where a durable consumer without a checkpoint starts (ignored for
    /// [`ConsumerMode::Ephemeral`]).
    fn start_from(&self) -> StartFrom {
        StartFrom::Oldest
    }

    /// Applies one event. `tx` is the checkpoint's transaction (system context) for
    /// [`ConsumerMode::Transactional`] consumers and `None` otherwise.
    async fn apply(
        &self,
        event: &OutboxEvent,
        tx: Option<&mut PgConnection>,
    ) -> Result<(), ConsumerError>;
}

/// Whether `name` is a valid consumer name (see [`EventConsumer::name`]).
pub(crate) fn valid_name(name: &str) -> bool {
    let ok_char = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    (1..=63).contains(&name.len())
        && name.bytes().next().is_some_and(ok_char)
        && name
            .bytes()
            .all(|b| ok_char(b) || b == b'.' || b == b'_' || b == b'-')
}

/// Counters of one consumer, shared with the pipeline handle.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) applied: AtomicU64,
    pub(crate) duplicates: AtomicU64,
    pub(crate) errors: AtomicU64,
    pub(crate) dedupe_entries: AtomicU64,
    pub(crate) dedupe_hits: AtomicU64,
    pub(crate) dedupe_lookups: AtomicU64,
    /// The position (all events at or before it are applied); `None` until known.
    pub(crate) position: std::sync::Mutex<Option<Cursor>>,
}

impl Counters {
    pub(crate) fn position(&self) -> Option<Cursor> {
        *self
            .position
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn set_position(&self, c: Cursor) {
        *self
            .position
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(c);
    }
}

/// Settings of a consumer task.
#[derive(Debug, Clone)]
pub(crate) struct WorkerSettings {
    pub(crate) page_size: u32,
    pub(crate) batch_size: usize,
    pub(crate) retry_min: Duration,
    pub(crate) retry_max: Duration,
    pub(crate) dedupe_window: usize,
    pub(crate) query_timeout: Duration,
}

/// The task feeding one consumer.
pub(crate) struct Worker {
    pub(crate) consumer: Arc<dyn EventConsumer>,
    pub(crate) slot: usize,
    pub(crate) rx: mpsc::Receiver<Delivery>,
    pub(crate) lagged: Arc<Notify>,
    pub(crate) fanout: Arc<Fanout>,
    pub(crate) pool: PgPool,
    pub(crate) settings: WorkerSettings,
    pub(crate) metrics: Arc<dyn EventMetrics>,
    pub(crate) counters: Arc<Counters>,
    pub(crate) shutdown: watch::Receiver<bool>,
}

/// The task was told to stop.
struct Stopped;

impl Worker {
    fn stopping(&self) -> bool {
        *self.shutdown.borrow()
    }

    /// Sleeps `delay` unless shutdown comes first.
    async fn pause(&mut self, delay: Duration) -> Result<(), Stopped> {
        tokio::select! {
            biased;
            _ = self.shutdown.changed() => Err(Stopped),
            () = tokio::time::sleep(delay) => {
                if self.stopping() { Err(Stopped) } else { Ok(()) }
            }
        }
    }

    pub(crate) async fn run(mut self) {
        let mut dedupe = DedupeWindow::new(self.settings.dedupe_window);
        let mode = self.consumer.mode();
        let name = self.consumer.name();
        // Where this consumer stands: its durable checkpoint, or (ephemeral) wherever the reader
        // starts — it is registered live and takes what the reader dispatches.
        let mut position = if mode == ConsumerMode::Ephemeral {
            None
        } else {
            match self.initial_checkpoint().await {
                Ok(c) => Some(c),
                Err(Stopped) => return,
            }
        };
        if let Some(p) = position {
            self.counters.set_position(p);
        }
        loop {
            if self.stopping() {
                return;
            }
            let step = if self.fanout.is_live(self.slot) {
                self.live_step(&mut dedupe, &mut position).await
            } else {
                self.catch_up_step(&mut dedupe, &mut position).await
            };
            if step.is_err() {
                return;
            }
            let (hits, lookups) = dedupe.stats();
            self.counters
                .dedupe_entries
                .store(dedupe.len() as u64, Ordering::Relaxed);
            self.counters.dedupe_hits.store(hits, Ordering::Relaxed);
            self.counters
                .dedupe_lookups
                .store(lookups, Ordering::Relaxed);
            tracing::trace!(consumer = name, ?position, "consumer step");
        }
    }

    async fn initial_checkpoint(&mut self) -> Result<Cursor, Stopped> {
        let mut delay = self.settings.retry_min;
        loop {
            let attempt = async {
                let start = match self.consumer.start_from() {
                    StartFrom::Oldest => Cursor::START,
                    StartFrom::Head => outbox::head(&self.pool).await.map_err(|e| e.to_string())?,
                };
                checkpoint::init(&self.pool, self.consumer.name(), start)
                    .await
                    .map_err(|e| e.to_string())
            };
            match tokio::time::timeout(self.settings.query_timeout, attempt).await {
                Ok(Ok(c)) => return Ok(c),
                Ok(Err(error)) => {
                    tracing::warn!(consumer = self.consumer.name(), %error, "reading the checkpoint failed; retrying");
                }
                Err(_) => {
                    tracing::warn!(
                        consumer = self.consumer.name(),
                        "reading the checkpoint timed out; retrying"
                    );
                }
            }
            self.pause(delay).await?;
            delay = (delay * 2).min(self.settings.retry_max);
        }
    }

    /// Live: apply what the reader sends, a batch at a time; on a lag signal, return so the
    /// next step catches up.
    async fn live_step(
        &mut self,
        dedupe: &mut DedupeWindow,
        position: &mut Option<Cursor>,
    ) -> Result<(), Stopped> {
        let first = tokio::select! {
            biased;
            _ = self.shutdown.changed() => return Err(Stopped),
            d = self.rx.recv() => d,
            () = self.lagged.notified() => return Ok(()),
        };
        let Some(first) = first else {
            return Err(Stopped);
        };
        let mut batch = vec![first];
        while batch.len() < self.settings.batch_size {
            match self.rx.try_recv() {
                Ok(d) => batch.push(d),
                Err(_) => break,
            }
        }
        self.apply_batch(batch, dedupe, position).await
    }

    /// Lagging (or starting behind): drain the channel, then read the outbox from our own
    /// position until we reach the reader, then go live.
    async fn catch_up_step(
        &mut self,
        dedupe: &mut DedupeWindow,
        position: &mut Option<Cursor>,
    ) -> Result<(), Stopped> {
        let mut drained = Vec::new();
        while let Ok(d) = self.rx.try_recv() {
            drained.push(d);
        }
        if !drained.is_empty() {
            return self.apply_batch(drained, dedupe, position).await;
        }
        let Some(after) = *position else {
            // An ephemeral consumer that lagged before it applied anything (cannot happen: a
            // full channel is drained and applied first): it starts where the reader is.
            match self.fanout.dispatched() {
                Some(d) => {
                    *position = Some(d);
                    self.fanout.try_go_live(self.slot, d);
                }
                None => self.pause(Duration::from_millis(10)).await?,
            }
            return Ok(());
        };
        let limit = self.settings.page_size;
        let read = async {
            let mut tx = freshplan_store_postgres::begin_as(&self.pool, &Actor::system()).await?;
            let batch = outbox::read_batch(&mut *tx, after, limit).await?;
            tx.commit().await?;
            Ok::<_, outbox::OutboxError>(batch)
        };
        let batch = match tokio::time::timeout(self.settings.query_timeout, read).await {
            Ok(Ok(batch)) => batch,
            Ok(Err(error)) => {
                tracing::warn!(consumer = self.consumer.name(), %error, "catch-up read failed; retrying");
                return self
                    .pause(self.settings.retry_min.max(Duration::from_millis(200)))
                    .await;
            }
            Err(_) => {
                tracing::warn!(
                    consumer = self.consumer.name(),
                    "catch-up read timed out; retrying"
                );
                return self.pause(self.settings.retry_min).await;
            }
        };
        let next = batch.next_position(after, limit);
        let short = batch.events.len() < limit as usize;
        let deliveries: Vec<Delivery> = batch
            .events
            .into_iter()
            .map(|e| Delivery {
                event: Arc::new(e),
                path: PATH_CATCH_UP,
            })
            .collect();
        self.apply_batch(deliveries, dedupe, position).await?;
        // Everything up to `next` is applied or does not exist.
        let at = position.map_or(next, |p| p.max(next));
        *position = Some(at);
        self.counters.set_position(at);
        if short && !self.fanout.try_go_live(self.slot, at) {
            // The reader is ahead of our snapshot (it dispatched after we read): read again. A
            // newer snapshot's horizon is never behind an older one's, so this ends.
            tokio::task::yield_now().await;
        }
        Ok(())
    }

    /// Applies a batch (in order), skipping duplicates, retrying failures with backoff.
    async fn apply_batch(
        &mut self,
        batch: Vec<Delivery>,
        dedupe: &mut DedupeWindow,
        position: &mut Option<Cursor>,
    ) -> Result<(), Stopped> {
        let name = self.consumer.name();
        let mut fresh = Vec::with_capacity(batch.len());
        for d in batch {
            let e = &d.event;
            // The cache first (cheap, in memory), then the position (the checkpoint's image).
            let duplicate =
                dedupe.seen(&e.event.source, e.event.id) || position.is_some_and(|p| e.cursor <= p);
            if duplicate {
                self.duplicate(e);
            } else {
                fresh.push(d);
            }
        }
        if fresh.is_empty() {
            return Ok(());
        }
        let mut delay = self.settings.retry_min;
        loop {
            let result = match self.consumer.mode() {
                ConsumerMode::Ephemeral => self.apply_in_memory(&mut fresh, dedupe, position).await,
                mode => self.apply_durable(mode, &mut fresh, dedupe, position).await,
            };
            match result {
                Ok(()) => return Ok(()),
                Err(error) => {
                    self.counters.errors.fetch_add(1, Ordering::Relaxed);
                    if let Some(d) = fresh.first() {
                        self.metrics.event_consumed(
                            &d.event.event.event_type,
                            name,
                            CONSUMED_ERROR,
                        );
                    }
                    tracing::warn!(consumer = name, %error, retry_in = ?delay, "applying events failed; retrying");
                    self.pause(delay).await?;
                    delay = (delay * 2).min(self.settings.retry_max);
                }
            }
        }
    }

    fn duplicate(&self, e: &OutboxEvent) {
        self.counters.duplicates.fetch_add(1, Ordering::Relaxed);
        self.metrics.event_consumed(
            &e.event.event_type,
            self.consumer.name(),
            CONSUMED_DUPLICATE,
        );
    }

    fn applied(&self, d: &Delivery) {
        let e = &d.event.event;
        self.counters.applied.fetch_add(1, Ordering::Relaxed);
        self.metrics
            .event_consumed(&e.event_type, self.consumer.name(), CONSUMED_OK);
        let latency = (time::OffsetDateTime::now_utc() - e.time).as_seconds_f64();
        self.metrics
            .event_latency(&e.event_type, d.path, latency.max(0.0));
    }

    /// Ephemeral: apply one by one; each applied event leaves `fresh` (a retry resumes at the
    /// failed one).
    async fn apply_in_memory(
        &mut self,
        fresh: &mut Vec<Delivery>,
        dedupe: &mut DedupeWindow,
        position: &mut Option<Cursor>,
    ) -> Result<(), ConsumerError> {
        while let Some(d) = fresh.first() {
            self.consumer.apply(&d.event, None).await?;
            let d = fresh.remove(0);
            dedupe.insert(&d.event.event.source, d.event.event.id);
            *position = Some(d.event.cursor);
            self.counters.set_position(d.event.cursor);
            self.applied(&d);
        }
        Ok(())
    }

    /// Durable: one transaction for the batch — lock the checkpoint, apply what is beyond it,
    /// advance it, commit.
    async fn apply_durable(
        &mut self,
        mode: ConsumerMode,
        fresh: &mut Vec<Delivery>,
        dedupe: &mut DedupeWindow,
        position: &mut Option<Cursor>,
    ) -> Result<(), ConsumerError> {
        let name = self.consumer.name();
        let mut tx = freshplan_store_postgres::begin_as(&self.pool, &Actor::system()).await?;
        let checkpoint = checkpoint::lock(&mut tx, name).await?;
        let mut applied = Vec::new();
        let mut skipped = Vec::new();
        for d in fresh.iter() {
            let e = &d.event;
            if e.cursor <= checkpoint {
                // Another replica (or an earlier run) committed it already.
                skipped.push(d.clone());
                continue;
            }
            if mode == ConsumerMode::AtLeastOnce && dedupe.contains(&e.event.source, e.event.id) {
                // Applied before a failed checkpoint commit: the effect happened already.
                skipped.push(d.clone());
                continue;
            }
            match mode {
                ConsumerMode::Transactional => self.consumer.apply(e, Some(&mut *tx)).await?,
                _ => {
                    self.consumer.apply(e, None).await?;
                    dedupe.insert(&e.event.source, e.event.id);
                }
            }
            applied.push(d.clone());
        }
        let last = applied.last().map(|d| d.event.cursor);
        if let Some(last) = last {
            checkpoint::advance(&mut tx, name, last).await?;
        }
        tx.commit().await?;
        for d in &skipped {
            self.duplicate(&d.event);
        }
        for d in &applied {
            dedupe.insert(&d.event.event.source, d.event.event.id);
            self.applied(d);
        }
        let reached = [Some(checkpoint), last, *position]
            .into_iter()
            .flatten()
            .max()
            .unwrap_or(checkpoint);
        *position = Some(reached);
        self.counters.set_position(reached);
        fresh.clear();
        Ok(())
    }
}

/// An [`ConsumerMode::Ephemeral`] consumer that republishes every event on a
/// `tokio::sync::broadcast` channel: the SSE endpoints subscribe to it. A subscriber that falls
/// behind gets `RecvError::Lagged` and resumes with [`crate::read_page`] after the last cursor it
/// sent — nothing is dropped silently.
#[derive(Debug, Clone)]
pub struct BroadcastConsumer {
    name: &'static str,
    tx: tokio::sync::broadcast::Sender<Arc<OutboxEvent>>,
}

impl BroadcastConsumer {
    /// A broadcaster named `name` whose subscribers may fall `capacity` events behind.
    pub fn new(name: &'static str, capacity: usize) -> BroadcastConsumer {
        let (tx, _) = tokio::sync::broadcast::channel(capacity.max(1));
        BroadcastConsumer { name, tx }
    }

    /// A new subscriber: receives the events applied from now on.
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<Arc<OutboxEvent>> {
        self.tx.subscribe()
    }
}

#[async_trait]
impl EventConsumer for BroadcastConsumer {
    fn name(&self) -> &'static str {
        self.name
    }

    fn mode(&self) -> ConsumerMode {
        ConsumerMode::Ephemeral
    }

    async fn apply(
        &self,
        event: &OutboxEvent,
        _tx: Option<&mut PgConnection>,
    ) -> Result<(), ConsumerError> {
        // No subscriber is not an error: nobody is watching.
        let _ = self.tx.send(Arc::new(event.clone()));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consumer_names_match_the_checkpoint_constraint() {
        for good in ["dashboard", "lead-read-model", "a", "m.v2_x", "9lives"] {
            assert!(valid_name(good), "{good}");
        }
        for bad in [
            "",
            "Dashboard",
            "-x",
            ".x",
            "with space",
            "ü",
            &"x".repeat(64),
        ] {
            assert!(!valid_name(bad), "{bad}");
        }
    }
}
