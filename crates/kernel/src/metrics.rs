//! The event-delivery metrics port (SPEC §10).
//!
//! The event adapter (`freshplan-events-pg`) reports through [`EventMetrics`]; the Prometheus
//! adapter implements it. The trait is plain (no runtime, no async): implementations must be
//! cheap and must not block, because they are called on the delivery path.
//!
//! Every label value passed here is bounded: `event_type` is a CloudEvents `type` (the adapter
//! maps unknown types to a fixed label itself), `module`, `consumer`, `result` and `path` are
//! `&'static str` from closed sets named below.
//!
//! ```
//! use freshplan_kernel::metrics::{EventMetrics, NoopEventMetrics, CONSUMED_OK};
//! let m: &dyn EventMetrics = &NoopEventMetrics;
//! m.event_consumed("lead.created.v1", "dashboard", CONSUMED_OK);
//! ```

/// `result` of [`EventMetrics::event_consumed`]: the consumer applied the event.
pub const CONSUMED_OK: &str = "ok";
/// `result` of [`EventMetrics::event_consumed`]: a repeat delivery, suppressed by the dedupe
/// cache or the consumer's checkpoint.
pub const CONSUMED_DUPLICATE: &str = "duplicate";
/// `result` of [`EventMetrics::event_consumed`]: the consumer failed; the event is retried.
pub const CONSUMED_ERROR: &str = "error";

/// `path` of [`EventMetrics::event_latency`]: delivered live after an in-process commit signal.
pub const PATH_LOCAL: &str = "local";
/// `path`: delivered live after a `cross_module_events` notification.
pub const PATH_NOTIFY: &str = "notify";
/// `path`: delivered live by the polling fallback (no notification arrived).
pub const PATH_POLL: &str = "poll";
/// `path`: delivered live by the catch-up that follows a listener (re)connect.
pub const PATH_RECONNECT: &str = "reconnect";
/// `path`: delivered by a consumer's own catch-up from its checkpoint (after lag or at start).
pub const PATH_CATCH_UP: &str = "catch_up";

/// Metrics of the event pipeline. Implementations are shared (`Arc<dyn EventMetrics>`).
pub trait EventMetrics: Send + Sync + 'static {
    /// An event written to the outbox and committed (`module`: `leads` or `followup`). Called by
    /// the writer side after commit, not by the delivery pipeline.
    fn event_published(&self, event_type: &str, module: &'static str, ok: bool);

    /// One delivery of an event to `consumer`; `result` is [`CONSUMED_OK`],
    /// [`CONSUMED_DUPLICATE`] or [`CONSUMED_ERROR`].
    fn event_consumed(&self, event_type: &str, consumer: &'static str, result: &'static str);

    /// Time from the event's `time` to its application by a consumer, in seconds, by delivery
    /// `path` ([`PATH_LOCAL`], [`PATH_NOTIFY`], [`PATH_POLL`], [`PATH_RECONNECT`],
    /// [`PATH_CATCH_UP`]).
    fn event_latency(&self, event_type: &str, path: &'static str, seconds: f64);

    /// The dedupe caches of this process: entries held (all consumers together) and the
    /// cumulative hit rate (`hits / lookups`, 0 when there were none).
    fn dedupe(&self, entries: u64, hit_rate: f64);

    /// Committed outbox events that the slowest consumer of this process has not applied yet.
    fn outbox_pending(&self, pending: u64);

    /// The dedicated listener connection was re-established after a loss.
    fn listener_reconnected(&self);
}

/// An [`EventMetrics`] that records nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoopEventMetrics;

impl EventMetrics for NoopEventMetrics {
    fn event_published(&self, _event_type: &str, _module: &'static str, _ok: bool) {}
    fn event_consumed(&self, _event_type: &str, _consumer: &'static str, _result: &'static str) {}
    fn event_latency(&self, _event_type: &str, _path: &'static str, _seconds: f64) {}
    fn dedupe(&self, _entries: u64, _hit_rate: f64) {}
    fn outbox_pending(&self, _pending: u64) {}
    fn listener_reconnected(&self) {}
}
