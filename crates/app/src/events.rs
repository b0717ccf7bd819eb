//! The event side of one replica, wired (SPEC §7.3–7.5): the after-commit hook the lead store
//! calls, the event pipeline with its in-process consumers, and what the HTTP layer needs from
//! them — the broadcast that `GET /api/events/stream` subscribes to and the listener state for
//! `/health/ready`. Delivery itself (cursor, catch-up, dedupe, NOTIFY) is `freshplan-events-pg`;
//! the protocol is described in `docs/ARCHITECTURE.md`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use freshplan_events_pg::{
    BroadcastConsumer, CommitSignal, EventConsumer, EventPipeline, ListenerStatus, OutboxEvent,
    PipelineConfig, StartError,
};
use freshplan_kernel::CloudEvent;
use freshplan_metrics_prometheus::Metrics;
use freshplan_store_postgres::{AfterCommit, PgLeadStore};

/// The name of the consumer behind `GET /api/events/stream` (its metrics label).
pub const STREAM_CONSUMER: &str = "event-stream";

/// How often `freshplan_event_listener_connected` is refreshed from the listener's state.
pub const GAUGE_INTERVAL: Duration = Duration::from_millis(500);

/// The module label of lead events in `freshplan_events_published_total`.
const MODULE_LEADS: &str = "leads";

/// The lead store's after-commit hook: pokes the pipeline's commit signal (a `dashboard_updates`
/// wake-up too when an event moves cockpit figures) and counts the published events. `None`
/// when there is nothing to do (pipeline and metrics both off).
///
/// It runs on the request's task right after COMMIT: both calls are non-blocking (an atomic and
/// a `Notify`; a counter increment). The NOTIFY itself is issued later by the pipeline's
/// notifier, never inside the request transaction (SPEC §7.3).
pub fn after_commit_hook(
    signal: Option<CommitSignal>,
    metrics: Option<Metrics>,
) -> Option<AfterCommit> {
    if signal.is_none() && metrics.is_none() {
        return None;
    }
    Some(Arc::new(move |events: &[CloudEvent]| {
        if let Some(signal) = &signal {
            signal.committed(events.iter().any(freshplan_leads::events::moves_dashboard));
        }
        if let Some(metrics) = &metrics {
            for event in events {
                metrics.event_published(&event.event_type, MODULE_LEADS, true);
            }
        }
    }))
}

/// The running event pipeline of this replica and the handles the HTTP layer uses.
pub struct Events {
    /// `None` once shut down.
    pipeline: Mutex<Option<EventPipeline>>,
    stream: BroadcastConsumer,
    stream_lags: AtomicU64,
}

impl std::fmt::Debug for Events {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Events")
            .field("listener", &self.listener())
            .finish_non_exhaustive()
    }
}

impl Events {
    /// Starts the pipeline on the store's pool (consumers' transactions, NOTIFY, retention) with
    /// its own listener connection from `database_url`. The consumers are the SSE stream's
    /// broadcaster ([`STREAM_CONSUMER`], whose subscribers may fall `stream_buffer` events behind)
    /// followed by `consumers` (unique names). `metrics`, when on, receives the pipeline's metrics
    /// and `freshplan_event_listener_connected`.
    pub fn start(
        store: &PgLeadStore,
        database_url: &str,
        signal: CommitSignal,
        retention: Option<Duration>,
        stream_buffer: usize,
        metrics: Option<Metrics>,
        consumers: Vec<Arc<dyn EventConsumer>>,
    ) -> Result<Arc<Events>, StartError> {
        let stream = BroadcastConsumer::new(STREAM_CONSUMER, stream_buffer);
        let mut all: Vec<Arc<dyn EventConsumer>> = vec![Arc::new(stream.clone())];
        all.extend(consumers);
        let mut config = PipelineConfig::default().with_signal(signal);
        config.retention = retention;
        if let Some(m) = &metrics {
            config = config.with_metrics(Arc::new(m.clone()));
        }
        let pipeline = EventPipeline::start(store.pool().clone(), database_url, all, config)?;
        let events = Arc::new(Events {
            pipeline: Mutex::new(Some(pipeline)),
            stream,
            stream_lags: AtomicU64::new(0),
        });
        if let Some(m) = metrics {
            tokio::spawn(listener_gauge(Arc::downgrade(&events), m));
        }
        Ok(events)
    }

    /// The listener's state; `None` after [`Events::shutdown`].
    pub fn listener(&self) -> Option<ListenerStatus> {
        self.pipeline
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .map(EventPipeline::listener)
    }

    /// Whether the listener connection is up (what `/health/ready` requires).
    pub fn listener_connected(&self) -> bool {
        self.listener().is_some_and(|l| l.connected)
    }

    /// Whether the listener found that the database lost events it had delivered (a failover to
    /// a standby without them) and stopped: the process must be restarted (`/health/live`).
    pub fn diverged(&self) -> bool {
        self.listener().is_some_and(|l| l.diverged)
    }

    /// Waits until the listener has connected once and fixed where it starts reading (its
    /// first connection starts at the head of the outbox). Only from then on does the broadcast
    /// carry every event that commits, so a stream must not take its catch-up read before. Later
    /// losses of the connection do not matter: the listener catches up from its position.
    pub async fn started(&self) {
        while self.listener().is_some_and(|l| l.position.is_none()) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// A subscriber of the SSE stream's broadcaster: every event this replica's pipeline
    /// delivers from now on, in cursor order. On `RecvError::Lagged`, resume with
    /// `freshplan_events_pg::read_page` after the last cursor handled.
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<Arc<OutboxEvent>> {
        self.stream.subscribe()
    }

    /// How often an event-stream client fell behind the broadcast and caught up from the outbox.
    pub fn stream_lags(&self) -> u64 {
        self.stream_lags.load(Ordering::Relaxed)
    }

    pub(crate) fn stream_lagged(&self) {
        self.stream_lags.fetch_add(1, Ordering::Relaxed);
    }

    /// Stops the pipeline (consumers finish their batch, the listener connection closes).
    /// Idempotent.
    pub async fn shutdown(&self) {
        let pipeline = self
            .pipeline
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(pipeline) = pipeline {
            pipeline.shutdown().await;
        }
    }
}

/// Keeps `freshplan_event_listener_connected` in step with the listener (set on every change,
/// checked every [`GAUGE_INTERVAL`]); ends when the pipeline is shut down or dropped.
async fn listener_gauge(events: Weak<Events>, metrics: Metrics) {
    let mut last = None;
    loop {
        let Some(listener) = events.upgrade().and_then(|e| e.listener()) else {
            return;
        };
        if last != Some(listener.connected) {
            metrics.listener_connected(listener.connected);
            last = Some(listener.connected);
        }
        tokio::time::sleep(GAUGE_INTERVAL).await;
    }
}
