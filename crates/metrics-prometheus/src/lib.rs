//! The Prometheus adapter: every metric of SPEC §10 on one registry of its own (never the
//! process-global default registry, so an embedder's metrics and ours cannot collide), and the
//! text exposition served at `/metrics`.
//!
//! Labels are bounded by construction: `event_type` is one of the catalog's types (anything else
//! is counted as `other`), `method` one of the HTTP methods the API uses, `route` the matched
//! route *pattern* (never a path with an id in it), `status` a three-digit code, `result` and
//! `module` come from closed sets of the callers.
//!
//! ```
//! use freshplan_metrics_prometheus::Metrics;
//! let m = Metrics::new();
//! m.event_published("lead.created.v1", "leads", true);
//! m.http_request("GET", "/api/leads/{id}", 200, 0.002);
//! let text = m.encode();
//! assert!(text.contains(r#"freshplan_events_published_total{event_type="lead.created.v1",module="leads",result="ok"} 1"#));
//! assert!(text.contains(r#"http_requests_total{method="GET",route="/api/leads/{id}",status="200"} 1"#));
//! ```

use prometheus::{
    Encoder, Gauge, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

/// Buckets of `freshplan_event_latency_seconds`: fine below 100 ms (the SSE objective), with
/// the seed's 10 s objective as a bucket of its own.
pub const EVENT_LATENCY_BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Buckets of `http_request_duration_seconds`.
pub const HTTP_BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

/// Buckets of `followup_processing_duration_seconds` (a whole run).
pub const RUN_BUCKETS: [f64; 10] = [0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0];

const METHODS: [&str; 7] = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"];

/// The SPEC §10 metrics on their own registry.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    events_published: IntCounterVec,
    events_consumed: IntCounterVec,
    dedupe_entries: IntGauge,
    dedupe_hit_rate: Gauge,
    event_latency: HistogramVec,
    outbox_pending: IntGauge,
    listener_reconnects: IntCounter,
    listener_connected: IntGauge,
    followup_processed: IntCounterVec,
    followup_errors: IntCounter,
    followup_pending: IntGaugeVec,
    followup_duration: Histogram,
    http_requests: IntCounterVec,
    http_duration: HistogramVec,
    retention_erased: IntCounterVec,
    import_rows: IntCounterVec,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

fn result_label(ok: bool) -> &'static str {
    if ok { "ok" } else { "error" }
}

/// The catalog type, or `other` for anything outside it (keeps the label set bounded).
pub fn event_type_label(event_type: &str) -> &'static str {
    freshplan_leads::events::LEAD_EVENT_TYPES
        .iter()
        .chain(
            [
                freshplan_followup::event::FOLLOWUP_SENT,
                freshplan_followup::event::FOLLOWUP_SKIPPED,
                freshplan_followup::event::FOLLOWUP_PROCESSED,
            ]
            .iter(),
        )
        .find(|t| **t == event_type)
        .copied()
        .unwrap_or("other")
}

/// The HTTP method, or `OTHER`.
pub fn method_label(method: &str) -> &'static str {
    METHODS
        .iter()
        .find(|m| **m == method)
        .copied()
        .unwrap_or("OTHER")
}

fn status_label(status: u16) -> String {
    if (100..=599).contains(&status) {
        status.to_string()
    } else {
        "other".to_owned()
    }
}

/// The follow-up stage label: `T3`, `T7`, or `other`.
fn stage_label(stage: &str) -> &'static str {
    match stage {
        "T3" => "T3",
        "T7" => "T7",
        "SKIPPED" => "SKIPPED",
        _ => "other",
    }
}

impl Metrics {
    /// Registers every metric on a fresh registry.
    pub fn new() -> Metrics {
        Self::try_new().expect("metric names and label sets are static and distinct")
    }

    fn try_new() -> prometheus::Result<Metrics> {
        let registry = Registry::new();
        let events_published = IntCounterVec::new(
            Opts::new(
                "freshplan_events_published_total",
                "Events written to the outbox, by type, producing module and result.",
            ),
            &["event_type", "module", "result"],
        )?;
        let events_consumed = IntCounterVec::new(
            Opts::new(
                "freshplan_events_consumed_total",
                "Events applied by in-process consumers, by type, consumer and result (ok, duplicate, error).",
            ),
            &["event_type", "module", "result"],
        )?;
        let dedupe_entries = IntGauge::new(
            "freshplan_dedupe_cache_entries",
            "Entries in the in-memory dedupe cache (source+id).",
        )?;
        let dedupe_hit_rate = Gauge::new(
            "freshplan_dedupe_cache_hit_rate",
            "Share of deliveries found in the dedupe cache since start (0..1).",
        )?;
        let event_latency = HistogramVec::new(
            HistogramOpts::new(
                "freshplan_event_latency_seconds",
                "Time from the event's commit to its consumption, by type and delivery path.",
            )
            .buckets(EVENT_LATENCY_BUCKETS.to_vec()),
            &["event_type", "path"],
        )?;
        let outbox_pending = IntGauge::new(
            "freshplan_outbox_pending",
            "Outbox events committed but not yet delivered to this replica's consumers.",
        )?;
        let listener_reconnects = IntCounter::new(
            "freshplan_event_listener_reconnects_total",
            "Times the LISTEN connection was re-established.",
        )?;
        let listener_connected = IntGauge::new(
            "freshplan_event_listener_connected",
            "1 while this replica's LISTEN connection is up, 0 while it reconnects.",
        )?;
        let followup_processed = IntCounterVec::new(
            Opts::new(
                "followup_processed_total",
                "Follow-ups processed, by type (T3, T7 sent; SKIPPED).",
            ),
            &["type"],
        )?;
        let followup_errors = IntCounter::new(
            "followup_errors_total",
            "Follow-up leads whose processing failed (rolled back, retried next run).",
        )?;
        let followup_pending = IntGaugeVec::new(
            Opts::new(
                "followup_pending",
                "Open leads waiting for a follow-up stage.",
            ),
            &["type"],
        )?;
        let followup_duration = Histogram::with_opts(
            HistogramOpts::new(
                "followup_processing_duration_seconds",
                "Duration of one follow-up run.",
            )
            .buckets(RUN_BUCKETS.to_vec()),
        )?;
        let http_requests = IntCounterVec::new(
            Opts::new(
                "http_requests_total",
                "HTTP requests, by method, route and status.",
            ),
            &["method", "route", "status"],
        )?;
        let http_duration = HistogramVec::new(
            HistogramOpts::new(
                "http_request_duration_seconds",
                "HTTP request duration, by method and route.",
            )
            .buckets(HTTP_BUCKETS.to_vec()),
            &["method", "route"],
        )?;
        let retention_erased = IntCounterVec::new(
            Opts::new(
                "freshplan_retention_erased_total",
                "What retention erased (SPEC §13), by kind: lead, mail_body.",
            ),
            &["kind"],
        )?;
        registry.register(Box::new(retention_erased.clone()))?;
        let import_rows = IntCounterVec::new(
            Opts::new(
                "freshplan_import_rows_total",
                "Rows of imported lead lists by result: created, refused, duplicate (dry runs not counted).",
            ),
            &["result"],
        )?;
        registry.register(Box::new(import_rows.clone()))?;
        registry.register(Box::new(events_published.clone()))?;
        registry.register(Box::new(events_consumed.clone()))?;
        registry.register(Box::new(dedupe_entries.clone()))?;
        registry.register(Box::new(dedupe_hit_rate.clone()))?;
        registry.register(Box::new(event_latency.clone()))?;
        registry.register(Box::new(outbox_pending.clone()))?;
        registry.register(Box::new(listener_reconnects.clone()))?;
        registry.register(Box::new(listener_connected.clone()))?;
        registry.register(Box::new(followup_processed.clone()))?;
        registry.register(Box::new(followup_errors.clone()))?;
        registry.register(Box::new(followup_pending.clone()))?;
        registry.register(Box::new(followup_duration.clone()))?;
        registry.register(Box::new(http_requests.clone()))?;
        registry.register(Box::new(http_duration.clone()))?;
        Ok(Metrics {
            registry,
            events_published,
            events_consumed,
            dedupe_entries,
            dedupe_hit_rate,
            event_latency,
            outbox_pending,
            listener_reconnects,
            listener_connected,
            followup_processed,
            followup_errors,
            followup_pending,
            followup_duration,
            http_requests,
            http_duration,
            retention_erased,
            import_rows,
        })
    }

    /// The registry (to add an embedder's own collectors).
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The Prometheus text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut buf = Vec::with_capacity(16 * 1024);
        // Encoding our own well-formed families into a Vec cannot fail.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }

    /// The content type of [`Metrics::encode`].
    pub fn content_type(&self) -> &'static str {
        "text/plain; version=0.0.4; charset=utf-8"
    }

    /// An event written to the outbox (`module`: `leads` or `followup`).
    pub fn event_published(&self, event_type: &str, module: &'static str, ok: bool) {
        self.events_published
            .with_label_values(&[event_type_label(event_type), module, result_label(ok)])
            .inc();
    }

    /// An event handled by a consumer; `result` is `ok`, `duplicate` or `error`.
    pub fn event_consumed(&self, event_type: &str, consumer: &'static str, result: &'static str) {
        self.events_consumed
            .with_label_values(&[event_type_label(event_type), consumer, result])
            .inc();
    }

    /// Commit-to-consumer latency of one event on `path` (e.g. `consumer`, `sse`).
    pub fn event_latency(&self, event_type: &str, path: &'static str, seconds: f64) {
        self.event_latency
            .with_label_values(&[event_type_label(event_type), path])
            .observe(seconds.max(0.0));
    }

    /// The dedupe cache's size and cumulative hit rate.
    pub fn dedupe(&self, entries: u64, hit_rate: f64) {
        self.dedupe_entries
            .set(i64::try_from(entries).unwrap_or(i64::MAX));
        self.dedupe_hit_rate.set(hit_rate.clamp(0.0, 1.0));
    }

    /// Outbox events not yet delivered here.
    pub fn outbox_pending(&self, pending: u64) {
        self.outbox_pending
            .set(i64::try_from(pending).unwrap_or(i64::MAX));
    }

    /// The listener connection was re-established.
    pub fn listener_reconnected(&self) {
        self.listener_reconnects.inc();
    }

    /// Whether the LISTEN connection is up (an addition to SPEC §10 for the "listener down" alert).
    pub fn listener_connected(&self, up: bool) {
        self.listener_connected.set(i64::from(up));
    }

    /// One follow-up run: sent T+3 / T+7 and skipped counts, failed leads, duration.
    pub fn followup_run(&self, t3: u64, t7: u64, skipped: u64, errors: u64, seconds: f64) {
        self.followup_processed
            .with_label_values(&[stage_label("T3")])
            .inc_by(t3);
        self.followup_processed
            .with_label_values(&[stage_label("T7")])
            .inc_by(t7);
        self.followup_processed
            .with_label_values(&[stage_label("SKIPPED")])
            .inc_by(skipped);
        self.followup_errors.inc_by(errors);
        self.followup_duration.observe(seconds.max(0.0));
    }

    /// One retention batch: leads erased, mails whose bodies were removed.
    pub fn retention(&self, leads: u64, mail_bodies: u64) {
        self.retention_erased
            .with_label_values(&["lead"])
            .inc_by(leads);
        self.retention_erased
            .with_label_values(&["mail_body"])
            .inc_by(mail_bodies);
    }

    /// Rows of an import batch, by result (`created`, `refused`, `duplicate`).
    pub fn import_rows(&self, result: &str, n: u64) {
        self.import_rows.with_label_values(&[result]).inc_by(n);
    }

    /// Open leads waiting for T+3 and for T+7.
    pub fn followup_pending(&self, t3: u64, t7: u64) {
        self.followup_pending
            .with_label_values(&["T3"])
            .set(i64::try_from(t3).unwrap_or(i64::MAX));
        self.followup_pending
            .with_label_values(&["T7"])
            .set(i64::try_from(t7).unwrap_or(i64::MAX));
    }

    /// One HTTP request; `route` must be the matched route pattern (or `unmatched`).
    pub fn http_request(&self, method: &str, route: &str, status: u16, seconds: f64) {
        let method = method_label(method);
        self.http_requests
            .with_label_values(&[method, route, &status_label(status)])
            .inc();
        self.http_duration
            .with_label_values(&[method, route])
            .observe(seconds.max(0.0));
    }
}

/// The event pipeline's metrics port (`freshplan-events-pg` reports through it): forwards to the
/// inherent methods of the same names.
impl freshplan_kernel::metrics::EventMetrics for Metrics {
    fn event_published(&self, event_type: &str, module: &'static str, ok: bool) {
        Metrics::event_published(self, event_type, module, ok);
    }

    fn event_consumed(&self, event_type: &str, consumer: &'static str, result: &'static str) {
        Metrics::event_consumed(self, event_type, consumer, result);
    }

    fn event_latency(&self, event_type: &str, path: &'static str, seconds: f64) {
        Metrics::event_latency(self, event_type, path, seconds);
    }

    fn dedupe(&self, entries: u64, hit_rate: f64) {
        Metrics::dedupe(self, entries, hit_rate);
    }

    fn outbox_pending(&self, pending: u64) {
        Metrics::outbox_pending(self, pending);
    }

    fn listener_reconnected(&self) {
        Metrics::listener_reconnected(self);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_spec_metric_is_exposed_with_help_and_type() {
        let m = Metrics::new();
        m.event_published("lead.created.v1", "leads", true);
        m.event_consumed("lead.created.v1", "dashboard", "ok");
        m.event_latency("lead.created.v1", "consumer", 0.003);
        m.dedupe(3, 0.5);
        m.outbox_pending(7);
        m.listener_reconnected();
        m.followup_run(2, 1, 4, 0, 0.2);
        m.followup_pending(10, 5);
        m.http_request("GET", "/api/leads", 200, 0.001);
        let text = m.encode();
        for name in [
            "freshplan_events_published_total",
            "freshplan_events_consumed_total",
            "freshplan_dedupe_cache_entries",
            "freshplan_dedupe_cache_hit_rate",
            "freshplan_event_latency_seconds",
            "freshplan_outbox_pending",
            "freshplan_event_listener_reconnects_total",
            "freshplan_event_listener_connected",
            "followup_processed_total",
            "followup_errors_total",
            "followup_pending",
            "followup_processing_duration_seconds",
            "http_requests_total",
            "http_request_duration_seconds",
        ] {
            assert!(
                text.contains(&format!("# TYPE {name} ")),
                "{name} missing:\n{text}"
            );
            assert!(
                text.contains(&format!("# HELP {name} ")),
                "{name} has no help"
            );
        }
        assert!(text.contains("freshplan_outbox_pending 7"));
        assert!(text.contains(r#"followup_processed_total{type="T3"} 2"#));
        assert!(text.contains(r#"followup_pending{type="T7"} 5"#));
    }

    #[test]
    fn event_latency_has_a_ten_second_bucket() {
        let m = Metrics::new();
        m.event_latency("lead.updated.v1", "sse", 9.0);
        let text = m.encode();
        assert!(
            text.contains(r#"freshplan_event_latency_seconds_bucket{event_type="lead.updated.v1",path="sse",le="10"} 1"#),
            "{text}"
        );
        assert!(text.contains(
            r#"freshplan_event_latency_seconds_bucket{event_type="lead.updated.v1",path="sse",le="5"} 0"#
        ));
    }

    #[test]
    fn labels_stay_bounded() {
        let m = Metrics::new();
        m.event_published("evil.type.from.outside", "leads", false);
        m.http_request("BREW", "unmatched", 418, 0.0);
        let text = m.encode();
        assert!(text.contains(r#"event_type="other",module="leads",result="error""#));
        assert!(!text.contains("evil"));
        assert!(text.contains(r#"method="OTHER",route="unmatched",status="418""#));
    }

    /// The Grafana dashboard and the alert rules in `docs/ops/` may only use metrics this adapter
    /// exposes (a renamed metric would silently blank a panel or disarm an alert).
    #[test]
    fn ops_files_reference_only_exposed_metrics() {
        let m = Metrics::new();
        m.followup_pending(0, 0);
        m.followup_run(0, 0, 0, 0, 0.0);
        m.event_latency("lead.created.v1", "sse", 0.0);
        m.event_published("lead.created.v1", "leads", true);
        m.event_consumed("lead.created.v1", "dashboard", "ok");
        m.http_request("GET", "/api/leads", 200, 0.0);
        let exposed: std::collections::BTreeSet<String> = m
            .encode()
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.split(['{', ' ']).next())
            .map(str::to_owned)
            .collect();
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/ops");
        let mut referenced = 0;
        for file in ["alerts.yml", "grafana-dashboard.json"] {
            let text = std::fs::read_to_string(format!("{dir}/{file}")).unwrap();
            let words = text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'));
            for word in words.filter(|w| {
                (w.starts_with("freshplan_")
                    || w.starts_with("followup_")
                    || w.starts_with("http_"))
                    && w.len() > "http_".len()
            }) {
                referenced += 1;
                assert!(
                    exposed.contains(word),
                    "{file} uses {word}, which is not exposed"
                );
            }
        }
        assert!(referenced > 20, "the ops files reference the metrics");
    }

    /// Every method of the port lands in the metric of the same name (no call is dropped or
    /// routed to another metric by the forwarding impl).
    #[test]
    fn the_event_metrics_port_forwards_to_the_spec_metrics() {
        use freshplan_kernel::metrics::{CONSUMED_DUPLICATE, EventMetrics, PATH_NOTIFY};
        let m = Metrics::new();
        let port: std::sync::Arc<dyn EventMetrics> = std::sync::Arc::new(m.clone());
        port.event_published("lead.created.v1", "leads", true);
        port.event_published("lead.created.v1", "leads", false);
        port.event_consumed("lead.updated.v1", "sse", CONSUMED_DUPLICATE);
        port.event_latency("lead.deleted.v1", PATH_NOTIFY, 0.004);
        port.dedupe(12, 0.25);
        port.outbox_pending(9);
        port.listener_reconnected();
        port.listener_reconnected();
        let text = m.encode();
        for line in [
            r#"freshplan_events_published_total{event_type="lead.created.v1",module="leads",result="ok"} 1"#,
            r#"freshplan_events_published_total{event_type="lead.created.v1",module="leads",result="error"} 1"#,
            r#"freshplan_events_consumed_total{event_type="lead.updated.v1",module="sse",result="duplicate"} 1"#,
            r#"freshplan_event_latency_seconds_bucket{event_type="lead.deleted.v1",path="notify",le="0.005"} 1"#,
            r#"freshplan_event_latency_seconds_bucket{event_type="lead.deleted.v1",path="notify",le="0.0025"} 0"#,
            "freshplan_dedupe_cache_entries 12",
            "freshplan_dedupe_cache_hit_rate 0.25",
            "freshplan_outbox_pending 9",
            "freshplan_event_listener_reconnects_total 2",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing:\n{text}");
        }
    }

    #[test]
    fn two_instances_do_not_share_state() {
        let a = Metrics::new();
        let b = Metrics::new();
        a.listener_reconnected();
        assert!(
            a.encode()
                .contains("freshplan_event_listener_reconnects_total 1")
        );
        assert!(
            b.encode()
                .contains("freshplan_event_listener_reconnects_total 0")
        );
    }
}
