//! Event delivery of FreshPlan Leads on PostgreSQL (SPEC §7.3–7.5): the transactional outbox,
//! read in commit order and delivered to in-process consumers on every replica.
//!
//! * **Wake-ups, not carriers.** The writer commits its change and its events
//!   (`freshplan-store-postgres`), then pokes a [`CommitSignal`]. The notifier issues a coalesced
//!   `NOTIFY` on [`CHANNEL_EVENTS`] (and [`CHANNEL_DASHBOARD`]) outside any request transaction;
//!   the payload is a hint, never the event.
//! * **One listener per process** on a dedicated connection: LISTEN, catch up from the outbox,
//!   then read on every notification, local signal or poll; reconnect with backoff (counted).
//! * **A commit-order cursor** ([`Cursor`], `(txid, id)` bounded by the snapshot's xmin) that
//!   never skips a transaction that commits late; the same cursor is the SSE id and the feed's
//!   `after` ([`read_page`], [`head`]).
//! * **Fan-out** to [`EventConsumer`]s through bounded channels; a consumer that falls behind
//!   catches up from its own position, nothing is dropped.
//! * **Dedupe** by `source`+`id` in a FIFO window (quick_cache) in front of durable
//!   per-consumer checkpoints (`event_consumer_checkpoints`); transactional consumers get
//!   exactly-once effects.
//! * **Retention** ([`purge_outbox`]): events older than 7 days, never beyond a durable
//!   consumer's checkpoint.
//!
//! The protocol and its reasons are in `docs/events-delivery.md`.
//!
//! # Wiring (app)
//!
//! ```no_run
//! # async fn wire(pool: sqlx::PgPool, url: &str) -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use freshplan_events_pg::{BroadcastConsumer, CommitSignal, EventConsumer, EventPipeline, PipelineConfig};
//!
//! let signal = CommitSignal::new();          // hand a clone to the store: `signal.committed(dashboard)` after commit
//! let sse = BroadcastConsumer::new("sse", 1024);
//! let consumers: Vec<Arc<dyn EventConsumer>> = vec![Arc::new(sse.clone())];
//! let pipeline = EventPipeline::start(
//!     pool, url, consumers, PipelineConfig::default().with_signal(signal.clone()),
//! )?;
//! // … serve; /health/ready looks at pipeline.listener().connected …
//! pipeline.shutdown().await;
//! # Ok(()) }
//! ```

mod checkpoint;
mod consumer;
mod cursor;
mod dedupe;
mod fanout;
mod listener;
mod notifier;
mod outbox;
mod pipeline;
mod retention;
mod signal;

pub use checkpoint::checkpoint;
pub use consumer::{BroadcastConsumer, ConsumerError, ConsumerMode, EventConsumer, StartFrom};
pub use cursor::{Cursor, InvalidCursor};
pub use dedupe::DEFAULT_DEDUPE_WINDOW;
pub use listener::{LISTENER_APPLICATION_NAME, ListenerStatus};
pub use notifier::{CHANNEL_DASHBOARD, CHANNEL_EVENTS};
pub use outbox::{FeedPage, MAX_PAGE, OutboxError, OutboxEvent, head, read_page};
pub use pipeline::{ConsumerStats, EventPipeline, PipelineConfig, StartError};
pub use retention::{DEFAULT_RETENTION, purge_outbox};
pub use signal::CommitSignal;

/// The metrics port this crate reports through (defined in the kernel so the Prometheus adapter
/// needs no database crate).
pub use freshplan_kernel::metrics::{EventMetrics, NoopEventMetrics};
