//! [`EventPipeline`]: the notifier, the reader, the consumers, retention and metrics, started
//! together and stopped together.

use std::collections::BTreeSet;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use freshplan_kernel::Actor;
use freshplan_kernel::metrics::{EventMetrics, NoopEventMetrics};
use sqlx::PgPool;
use sqlx::postgres::PgConnectOptions;
use tokio::sync::{Notify, mpsc, watch};
use tokio::task::JoinHandle;

use crate::checkpoint;
use crate::consumer::{ConsumerMode, Counters, EventConsumer, Worker, WorkerSettings, valid_name};
use crate::cursor::Cursor;
use crate::dedupe::DEFAULT_DEDUPE_WINDOW;
use crate::fanout::Fanout;
use crate::listener::{ListenerStatus, Reader, ReaderSettings, SharedStatus};
use crate::notifier;
use crate::retention::{DEFAULT_RETENTION, purge_outbox};
use crate::signal::CommitSignal;

/// Settings of the pipeline. `PipelineConfig::default()` is what production uses.
#[derive(Clone)]
pub struct PipelineConfig {
    /// Coalescing window of the notifier: at most one NOTIFY per channel per window.
    pub notify_window: Duration,
    /// Polling fallback: the reader reads the outbox at least this often when no notification
    /// comes.
    pub poll_interval: Duration,
    /// First re-read delay while committed events wait behind an older running transaction
    /// (doubles up to `blocked_poll_max` while it keeps waiting).
    pub blocked_poll_min: Duration,
    /// Longest re-read delay while committed events wait (capped by `poll_interval`).
    pub blocked_poll_max: Duration,
    /// The reader pings its connection after this much quiet.
    pub ping_interval: Duration,
    /// A ping slower than this drops the connection.
    pub ping_timeout: Duration,
    /// A read slower than this drops the connection (reader) or is retried (consumer).
    pub query_timeout: Duration,
    /// Connecting slower than this counts as a failed attempt.
    pub connect_timeout: Duration,
    /// First reconnect delay; doubles (with jitter) up to `reconnect_max`.
    pub reconnect_min: Duration,
    /// Longest reconnect delay.
    pub reconnect_max: Duration,
    /// Server-side TCP keepalive of the listener connection: idle time before probing.
    pub keepalive_idle: Duration,
    /// … time between probes.
    pub keepalive_interval: Duration,
    /// … probes lost before the server drops the connection.
    pub keepalive_count: u32,
    /// Events per outbox read.
    pub page_size: u32,
    /// Events per consumer batch (one transaction for durable consumers).
    pub batch_size: usize,
    /// Capacity of each consumer's channel; a consumer that lets it fill catches up from its own
    /// position instead.
    pub channel_capacity: usize,
    /// Keys in each consumer's dedupe window.
    pub dedupe_window: usize,
    /// First retry delay of a failing consumer; doubles up to `retry_max`.
    pub retry_min: Duration,
    /// Longest retry delay of a failing consumer.
    pub retry_max: Duration,
    /// Outbox retention (`None`: this process does not purge).
    pub retention: Option<Duration>,
    /// How often the retention job runs.
    pub retention_interval: Duration,
    /// Rows per retention batch.
    pub retention_batch: u32,
    /// How often the dedupe and backlog gauges are refreshed.
    pub stats_interval: Duration,
    /// Where the metrics go.
    pub metrics: Arc<dyn EventMetrics>,
    /// The signal the writer side pokes after commit (create it first with
    /// [`CommitSignal::new`] to hand it to the store before the pipeline starts).
    pub signal: CommitSignal,
}

impl Default for PipelineConfig {
    fn default() -> PipelineConfig {
        PipelineConfig {
            // Short enough that an event under steady load waits ≈ 2.5 ms for its NOTIFY on
            // average; at most 200 NOTIFYs per channel and second per replica (issue 12).
            notify_window: Duration::from_millis(5),
            poll_interval: Duration::from_secs(5),
            // While events wait behind an older open transaction: re-read after 5 ms, doubling
            // to 100 ms (at most 10 reads a second while nothing else wakes the reader).
            blocked_poll_min: Duration::from_millis(5),
            blocked_poll_max: Duration::from_millis(100),
            ping_interval: Duration::from_secs(15),
            ping_timeout: Duration::from_secs(5),
            query_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            reconnect_min: Duration::from_millis(100),
            reconnect_max: Duration::from_secs(10),
            keepalive_idle: Duration::from_secs(30),
            keepalive_interval: Duration::from_secs(10),
            keepalive_count: 3,
            page_size: 500,
            batch_size: 100,
            channel_capacity: 1024,
            dedupe_window: DEFAULT_DEDUPE_WINDOW,
            retry_min: Duration::from_millis(100),
            retry_max: Duration::from_secs(30),
            retention: Some(DEFAULT_RETENTION),
            retention_interval: Duration::from_secs(60 * 60),
            retention_batch: 1000,
            stats_interval: Duration::from_secs(5),
            metrics: Arc::new(NoopEventMetrics),
            signal: CommitSignal::new(),
        }
    }
}

impl fmt::Debug for PipelineConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PipelineConfig")
            .field("notify_window", &self.notify_window)
            .field("poll_interval", &self.poll_interval)
            .field("page_size", &self.page_size)
            .field("batch_size", &self.batch_size)
            .field("channel_capacity", &self.channel_capacity)
            .field("dedupe_window", &self.dedupe_window)
            .field("retention", &self.retention)
            .finish_non_exhaustive()
    }
}

impl PipelineConfig {
    /// Uses `metrics`.
    pub fn with_metrics(mut self, metrics: Arc<dyn EventMetrics>) -> PipelineConfig {
        self.metrics = metrics;
        self
    }

    /// Uses `signal` (one the writer side already holds).
    pub fn with_signal(mut self, signal: CommitSignal) -> PipelineConfig {
        self.signal = signal;
        self
    }
}

/// The pipeline could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The database URL does not parse.
    #[error("invalid database URL: {0}")]
    DatabaseUrl(#[source] sqlx::Error),
    /// A consumer name breaks the naming rule of [`EventConsumer::name`].
    #[error("invalid consumer name {0:?}: lower-case letters, digits, '.', '_', '-', at most 63")]
    InvalidConsumerName(String),
    /// Two consumers share a name (they would share a checkpoint).
    #[error("two consumers are named {0:?}")]
    DuplicateConsumerName(String),
    /// A size setting is zero.
    #[error("{0} must be at least 1")]
    ZeroSetting(&'static str),
    /// Not called inside a tokio runtime.
    #[error("EventPipeline::start must be called inside a tokio runtime")]
    NoRuntime,
}

/// Counters of one consumer ([`EventPipeline::consumer_stats`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerStats {
    /// Its name.
    pub name: &'static str,
    /// Events applied (effects committed / performed) by this process.
    pub applied: u64,
    /// Deliveries suppressed as duplicates (dedupe window or checkpoint).
    pub duplicates: u64,
    /// Failed attempts (each retried).
    pub errors: u64,
    /// Times its channel filled up and it caught up from its own position.
    pub lags: u64,
    /// Everything at or before this is applied (or does not exist).
    pub position: Option<Cursor>,
}

struct ConsumerEntry {
    name: &'static str,
    slot: usize,
    counters: Arc<Counters>,
}

/// A running event pipeline. Drop it only after [`EventPipeline::shutdown`] (dropping it
/// without stops the tasks at their next await, abruptly).
pub struct EventPipeline {
    signal: CommitSignal,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    status: SharedStatus,
    fanout: Arc<Fanout>,
    consumers: Vec<ConsumerEntry>,
}

impl fmt::Debug for EventPipeline {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventPipeline")
            .field("listener", &self.listener())
            .field("consumers", &self.consumer_stats())
            .finish_non_exhaustive()
    }
}

impl EventPipeline {
    /// Starts the pipeline on the application pool `pool` (from
    /// `freshplan_store_postgres::connect`: consumers' transactions, NOTIFY, retention) and
    /// `database_url` (the listener's own connection, opened and re-opened by the reader).
    ///
    /// Returns at once; the listener connects in the background ([`EventPipeline::listener`]
    /// tells whether it is up — `/health/ready`). Durable consumers resume from their
    /// checkpoints; ephemeral ones get the events that commit after the listener's first
    /// connection ([`EventPipeline::wait_ready`]).
    pub fn start(
        pool: PgPool,
        database_url: &str,
        consumers: Vec<Arc<dyn EventConsumer>>,
        config: PipelineConfig,
    ) -> Result<EventPipeline, StartError> {
        let options: PgConnectOptions = database_url.parse().map_err(StartError::DatabaseUrl)?;
        EventPipeline::start_with(pool, options, consumers, config)
    }

    /// [`EventPipeline::start`] with parsed connect options for the listener.
    pub fn start_with(
        pool: PgPool,
        listener_options: PgConnectOptions,
        consumers: Vec<Arc<dyn EventConsumer>>,
        config: PipelineConfig,
    ) -> Result<EventPipeline, StartError> {
        tokio::runtime::Handle::try_current().map_err(|_| StartError::NoRuntime)?;
        for (value, name) in [
            (config.page_size as usize, "page_size"),
            (config.batch_size, "batch_size"),
            (config.channel_capacity, "channel_capacity"),
            (config.dedupe_window, "dedupe_window"),
            (config.retention_batch as usize, "retention_batch"),
        ] {
            if value == 0 {
                return Err(StartError::ZeroSetting(name));
            }
        }
        let mut names = BTreeSet::new();
        for c in &consumers {
            let name = c.name();
            if !valid_name(name) {
                return Err(StartError::InvalidConsumerName(name.to_owned()));
            }
            if !names.insert(name) {
                return Err(StartError::DuplicateConsumerName(name.to_owned()));
            }
        }

        let (shutdown, shutdown_rx) = watch::channel(false);
        let fanout = Arc::new(Fanout::default());
        let status = SharedStatus::default();
        let metrics = Arc::clone(&config.metrics);
        let signal = config.signal.clone();
        let mut tasks = Vec::new();
        let mut entries = Vec::new();

        let worker_settings = WorkerSettings {
            page_size: config.page_size,
            batch_size: config.batch_size,
            retry_min: config.retry_min,
            retry_max: config.retry_max,
            dedupe_window: config.dedupe_window,
            query_timeout: config.query_timeout,
        };
        let mut durable = Vec::new();
        for consumer in consumers {
            let (tx, rx) = mpsc::channel(config.channel_capacity);
            let lagged = Arc::new(Notify::new());
            // Durable consumers start behind (catching up from their checkpoints); ephemeral
            // ones take what the reader dispatches from its start.
            let live = consumer.mode() == ConsumerMode::Ephemeral;
            if !live {
                durable.push(consumer.name());
            }
            let slot = fanout.add(tx, Arc::clone(&lagged), live);
            let counters = Arc::new(Counters::default());
            entries.push(ConsumerEntry {
                name: consumer.name(),
                slot,
                counters: Arc::clone(&counters),
            });
            let worker = Worker {
                consumer,
                slot,
                rx,
                lagged,
                fanout: Arc::clone(&fanout),
                pool: pool.clone(),
                settings: worker_settings.clone(),
                metrics: Arc::clone(&metrics),
                counters,
                shutdown: shutdown_rx.clone(),
            };
            tasks.push(tokio::spawn(worker.run()));
        }

        let reader = Reader {
            options: listener_options,
            settings: ReaderSettings {
                page_size: config.page_size,
                poll_interval: config.poll_interval,
                blocked_poll_min: config.blocked_poll_min,
                blocked_poll_max: config.blocked_poll_max.min(config.poll_interval),
                ping_interval: config.ping_interval,
                ping_timeout: config.ping_timeout,
                query_timeout: config.query_timeout,
                connect_timeout: config.connect_timeout,
                reconnect_min: config.reconnect_min,
                reconnect_max: config.reconnect_max,
                keepalive_idle: config.keepalive_idle,
                keepalive_interval: config.keepalive_interval,
                keepalive_count: config.keepalive_count,
            },
            fanout: Arc::clone(&fanout),
            signal: signal.clone(),
            metrics: Arc::clone(&metrics),
            status: Arc::clone(&status),
            shutdown: shutdown_rx.clone(),
        };
        tasks.push(tokio::spawn(reader.run()));
        tasks.push(tokio::spawn(notifier::run(
            pool.clone(),
            signal.clone(),
            config.notify_window,
            shutdown_rx.clone(),
        )));
        let counters: Vec<Arc<Counters>> =
            entries.iter().map(|e| Arc::clone(&e.counters)).collect();
        tasks.push(tokio::spawn(stats_task(
            pool.clone(),
            counters,
            Arc::clone(&metrics),
            config.stats_interval,
            shutdown_rx.clone(),
        )));
        if let Some(retention) = config.retention {
            tasks.push(tokio::spawn(retention_task(
                pool,
                durable,
                retention,
                config.retention_interval,
                config.retention_batch,
                shutdown_rx,
            )));
        }
        Ok(EventPipeline {
            signal,
            shutdown,
            tasks,
            status,
            fanout,
            consumers: entries,
        })
    }

    /// The handle the writer side pokes after each commit that appended events.
    pub fn commit_signal(&self) -> CommitSignal {
        self.signal.clone()
    }

    /// The listener's state (`/health/ready` is not ready while `connected` is false).
    pub fn listener(&self) -> ListenerStatus {
        *self
            .status
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Waits until the listener is connected and has caught up once, at most `limit`; returns
    /// whether it is.
    pub async fn wait_ready(&self, limit: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if self.listener().connected {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Counters of every consumer, in registration order.
    pub fn consumer_stats(&self) -> Vec<ConsumerStats> {
        self.consumers
            .iter()
            .map(|e| ConsumerStats {
                name: e.name,
                applied: e.counters.applied.load(Ordering::Relaxed),
                duplicates: e.counters.duplicates.load(Ordering::Relaxed),
                errors: e.counters.errors.load(Ordering::Relaxed),
                lags: self.fanout.lags(e.slot),
                position: e.counters.position(),
            })
            .collect()
    }

    /// Stops every task: each consumer finishes the batch it is applying (a durable batch
    /// commits or rolls back as a whole), the listener connection closes.
    pub async fn shutdown(mut self) {
        let _ = self.shutdown.send(true);
        // Let the reader's and notifier's waits see it.
        self.signal.wake_reader();
        for task in self.tasks.drain(..) {
            if let Err(error) = task.await
                && error.is_panic()
            {
                tracing::error!(%error, "an event pipeline task panicked");
            }
        }
    }
}

impl Drop for EventPipeline {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Refreshes the dedupe and backlog gauges.
async fn stats_task(
    pool: PgPool,
    counters: Vec<Arc<Counters>>,
    metrics: Arc<dyn EventMetrics>,
    interval: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            _ = shutdown.changed() => return,
            _ = tick.tick() => {}
        }
        let (mut entries, mut hits, mut lookups) = (0, 0, 0);
        for c in &counters {
            entries += c.dedupe_entries.load(Ordering::Relaxed);
            hits += c.dedupe_hits.load(Ordering::Relaxed);
            lookups += c.dedupe_lookups.load(Ordering::Relaxed);
        }
        let rate = if lookups == 0 {
            0.0
        } else {
            hits as f64 / lookups as f64
        };
        metrics.dedupe(entries, rate);
        let slowest = counters.iter().filter_map(|c| c.position()).min();
        if let Some(slowest) = slowest {
            match tokio::time::timeout(
                interval.max(Duration::from_secs(1)),
                pending_after(&pool, slowest),
            )
            .await
            {
                Ok(Ok(n)) => metrics.outbox_pending(n),
                Ok(Err(error)) => tracing::debug!(%error, "counting the outbox backlog failed"),
                Err(_) => tracing::debug!("counting the outbox backlog timed out"),
            }
        }
    }
}

/// Committed outbox events after `after` (capped at 100 000: the gauge is for alerting).
pub(crate) async fn pending_after(pool: &PgPool, after: Cursor) -> Result<u64, sqlx::Error> {
    let mut tx = freshplan_store_postgres::begin_as(pool, &Actor::system()).await?;
    let n: i64 = sqlx::query_scalar(
        "select count(*) from (select 1 from event_outbox
                                where (txid, id) > ($1::text::xid8, $2::bigint) limit 100000) t",
    )
    .bind(after.txid().to_string())
    .bind(after.id())
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(u64::try_from(n).unwrap_or(0))
}

/// Runs [`purge_outbox`] every `interval` (first after a minute at most), protecting the
/// durable consumers' checkpoints.
async fn retention_task(
    pool: PgPool,
    durable: Vec<&'static str>,
    retention: Duration,
    interval: Duration,
    batch: u32,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut wait = interval.min(Duration::from_secs(60));
    loop {
        tokio::select! {
            biased;
            _ = shutdown.changed() => return,
            () = tokio::time::sleep(wait) => {}
        }
        wait = interval;
        let protect = match checkpoint::lowest(&pool, &durable).await {
            Ok(p) => p,
            Err(error) => {
                tracing::warn!(%error, "outbox retention: reading checkpoints failed");
                continue;
            }
        };
        match purge_outbox(&pool, retention, protect, batch, 1000).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(deleted = n, "outbox retention"),
            Err(error) => tracing::warn!(%error, "outbox retention failed"),
        }
    }
}
