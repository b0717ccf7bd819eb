//! Follow-up automation, mail delivery and the cockpit, wired (SPEC §6, §8, §10): the
//! follow-up service on PostgreSQL with the mail templates from the database, its schedule and
//! the protection sweep's ([`crate::scheduler`]), the SMTP dispatcher ([`crate::mails`]) and the
//! cockpit hub ([`crate::dashboard`]). [`Setup`] builds them, [`FollowUps`] is what the handlers
//! use.
//!
//! No HTTP here: the routes are `crate::api::{followups, dashboard, mails, unsubscribe}`, which
//! import this module, never the other way round.

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::web;
use anyhow::Context as _;
use tokio::sync::{Notify, watch};

use freshplan_events_pg::{CommitSignal, EventConsumer};
use freshplan_followup::RunReport;
use freshplan_followup::service::{FollowUpConfig, FollowUpService, RunError};
use freshplan_followup::unsubscribe::{DEVELOPMENT_SECRET, validate_secret};
use freshplan_kernel::UuidV7Generator;
use freshplan_kernel::{Clock, CloudEvent, IdGenerator as _};
use freshplan_leads::personal::RetentionPolicy;
use freshplan_mail_smtp::PgMailOutbox;
use freshplan_metrics_prometheus::Metrics;
use freshplan_store_postgres::followup::ExclusiveRun;
use freshplan_store_postgres::{AfterCommit, PgFollowUpStore, PgLeadStore};

use crate::AppState;
use crate::config::Config;
use crate::dashboard::{DashboardConsumer, DashboardHub};
use crate::mails::{MailDispatcher, dispatcher};
use crate::scheduler::{Background, parse_cron, spawn_cron};

/// The follow-up service as wired (its clock: [`crate::config::FollowUpClock`]).
pub type FollowUpSvc = FollowUpService<PgFollowUpStore, Arc<dyn Clock>, UuidV7Generator>;

/// The language of the mail templates read at start-up (both territories write German).
pub const TEMPLATE_LANGUAGE: &str = "de";

/// Leads per transaction of the protection sweep.
pub const SWEEP_BATCH: u32 = 200;

/// Leads (and mail bodies) one retention transaction erases at most: an erasure rewrites a
/// lead's timeline, mails and events, so batches stay small to keep lock times short.
pub const RETENTION_BATCH: u32 = 50;

/// The module label of follow-up events in `freshplan_events_published_total`.
const MODULE_FOLLOWUP: &str = "followup";

/// The follow-up store's after-commit hook: like the lead store's
/// ([`crate::events::after_commit_hook`]), it pokes the pipeline's commit signal — so processed
/// follow-ups and run reports reach consumers and the cockpit at once, not at the next poll —
/// and counts the published events (module `followup`).
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
                metrics.event_published(&event.event_type, MODULE_FOLLOWUP, true);
            }
        }
    }))
}

/// Why a follow-up run could not happen.
#[derive(Debug, thiserror::Error)]
pub enum RunFailed {
    /// No unsubscribe secret is configured, so no mail may be written (only possible with
    /// `FRESHPLAN_FOLLOWUP_ENABLED=false` outside development).
    #[error("follow-up mail is not configured (FRESHPLAN_UNSUBSCRIBE_SECRET is not set)")]
    NotConfigured,
    /// Taking the lock or recording the run failed.
    #[error("the follow-up run could not be started or recorded")]
    Store(#[from] freshplan_followup::StoreError),
}

/// The follow-up side of one replica, shared by the handlers and the background tasks.
pub struct FollowUps {
    store: PgFollowUpStore,
    service: Option<FollowUpSvc>,
    outbox: PgMailOutbox,
    hub: Arc<DashboardHub>,
    metrics: Option<Metrics>,
    /// The follow-up clock ([`crate::config::FollowUpClock`]).
    clock: Arc<dyn Clock>,
    /// Wakes this replica's dispatcher (mails were queued or requeued).
    mail_wake: Arc<Notify>,
    dispatching: bool,
}

impl std::fmt::Debug for FollowUps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FollowUps")
            .field("service", &self.service)
            .field("dispatching", &self.dispatching)
            .finish_non_exhaustive()
    }
}

impl FollowUps {
    /// The follow-up store (run lock, run log, figures).
    pub fn store(&self) -> &PgFollowUpStore {
        &self.store
    }

    /// The follow-up clock: runs, records, mail queue and mail delivery.
    pub fn clock(&self) -> &dyn Clock {
        self.clock.as_ref()
    }

    /// The follow-up service; `None` when follow-up mail is not configured.
    pub fn service(&self) -> Option<&FollowUpSvc> {
        self.service.as_ref()
    }

    /// The mail outbox.
    pub fn outbox(&self) -> &PgMailOutbox {
        &self.outbox
    }

    /// The cockpit hub.
    pub fn hub(&self) -> &Arc<DashboardHub> {
        &self.hub
    }

    /// Whether this replica runs the mail dispatcher (`FRESHPLAN_SMTP_URL` is set).
    pub fn dispatching(&self) -> bool {
        self.dispatching
    }

    /// Wakes this replica's dispatcher (a no-op without one).
    pub fn wake_dispatcher(&self) {
        self.mail_wake.notify_one();
    }

    /// The unsubscribe signing key; `None` when follow-up mail is not configured.
    pub fn unsubscribe_secret(&self) -> Option<&[u8]> {
        self.service
            .as_ref()
            .map(|s| s.config().unsubscribe_secret.as_slice())
    }

    /// One follow-up run, exclusively cluster-wide (the scheduler's and `POST
    /// /api/followups/run`'s): [`ExclusiveRun::Busy`] while another run holds the lock;
    /// otherwise the run is recorded with its `lead.followup.processed.v1` event (also a failed
    /// one), the follow-up metrics are counted, the dispatcher is woken for the new mails and
    /// the cockpit figures are invalidated.
    pub async fn run(&self) -> std::result::Result<ExclusiveRun, RunFailed> {
        let service = self.service.as_ref().ok_or(RunFailed::NotConfigured)?;
        let started = Instant::now();
        let run_id = UuidV7Generator.new_id();
        let outcome = self
            .store
            .run_exclusive(service, run_id, &UuidV7Generator)
            .await?;
        if let ExclusiveRun::Finished(result) = &outcome {
            let (report, errors) = match result {
                Ok(report) => (report, 0),
                Err(failure) => (&failure.report, 1),
            };
            if let Some(m) = &self.metrics {
                m.followup_run(
                    u64::from(report.t3_count),
                    u64::from(report.t7_count),
                    u64::from(report.skipped_count),
                    errors,
                    started.elapsed().as_secs_f64(),
                );
            }
            if report.t3_count + report.t7_count > 0 {
                self.wake_dispatcher();
            }
            // The run's events invalidate the hub through the pipeline as well; this covers a
            // replica without one (FRESHPLAN_EVENTS=false), and `followup_pending` follows the
            // run at once, stream clients or not.
            self.hub.invalidate();
            self.hub.refresh_global().await;
        }
        Ok(outcome)
    }

    /// A scheduled run: [`FollowUps::run`], logged.
    async fn scheduled_run(&self) {
        match self.run().await {
            Ok(ExclusiveRun::Busy) => {
                tracing::info!("follow-up run skipped: another run holds the cluster-wide lock");
            }
            Ok(ExclusiveRun::Finished(Ok(report))) => log_report(&report),
            Ok(ExclusiveRun::Finished(Err(failure))) => log_failure(&failure),
            Err(e) => tracing::error!(error = %chain(&e), "follow-up run failed to start"),
        }
    }
}

/// Logs a finished run.
pub(crate) fn log_report(report: &RunReport) {
    tracing::info!(
        run_id = %report.run_id,
        t3 = report.t3_count,
        t7 = report.t7_count,
        skipped = report.skipped_count,
        "follow-up run finished"
    );
}

/// Logs a failed run with its cause chain.
pub(crate) fn log_failure(failure: &RunError) {
    tracing::error!(
        run_id = %failure.report.run_id,
        processed = failure.report.processed(),
        error = %chain(failure),
        "follow-up run failed"
    );
}

/// `error` and its sources, joined with ": ".
fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut out = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        out.push_str(": ");
        out.push_str(&e.to_string());
        source = e.source();
    }
    out
}

/// The unsubscribe key and link base of a configuration: validated secret, `<public>/unsubscribe`.
/// `None` when follow-up mail is deliberately unconfigured (no secret, follow-ups off, not
/// development). The rules are docs/decisions/0007.
pub fn mail_settings(config: &Config) -> anyhow::Result<Option<(Vec<u8>, String)>> {
    let secret = match &config.unsubscribe_secret {
        Some(secret) => {
            validate_secret(secret.as_bytes(), config.development).with_context(|| {
                "FRESHPLAN_UNSUBSCRIBE_SECRET is refused outside development \
                 (set a private random secret of at least 32 bytes, or FRESHPLAN_ENV=development)"
            })?;
            secret.as_bytes().to_vec()
        }
        None if config.development => {
            tracing::warn!(
                "FRESHPLAN_UNSUBSCRIBE_SECRET is not set: using the published development secret"
            );
            DEVELOPMENT_SECRET.as_bytes().to_vec()
        }
        None if config.followup_enabled => anyhow::bail!(
            "FRESHPLAN_UNSUBSCRIBE_SECRET is not set: follow-up mails need a private signing \
             secret of at least 32 bytes for their unsubscribe links (or set \
             FRESHPLAN_FOLLOWUP_ENABLED=false, or FRESHPLAN_ENV=development)"
        ),
        None => {
            tracing::warn!(
                "FRESHPLAN_UNSUBSCRIBE_SECRET is not set and follow-ups are off: follow-up runs \
                 and unsubscribe links answer 503 on this replica"
            );
            return Ok(None);
        }
    };
    let public = match &config.public_url {
        Some(url) => url.trim().to_owned(),
        None if config.development => format!("http://{}", config.bind),
        None => anyhow::bail!(
            "FRESHPLAN_PUBLIC_URL is not set: unsubscribe links need the public base URL of \
             this service, e.g. https://crm.example.com"
        ),
    };
    let parsed = reqwest::Url::parse(&public)
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some())
        .filter(|u| u.query().is_none() && u.fragment().is_none())
        .with_context(|| {
            format!("FRESHPLAN_PUBLIC_URL={public:?}: expected an http(s) URL without query")
        })?;
    let base = format!("{}/unsubscribe", parsed.as_str().trim_end_matches('/'));
    Ok(Some((secret, base)))
}

/// What [`crate::start`] builds before the server starts; [`Setup::start`] starts its
/// background tasks once the application state exists.
pub struct Setup {
    followups: Arc<FollowUps>,
    dashboard: DashboardConsumer,
    followup_cron: Option<cron::Schedule>,
    sweep_cron: Option<cron::Schedule>,
    retention: RetentionPolicy,
    dispatcher: Option<MailDispatcher>,
    mail_poll: Duration,
}

impl std::fmt::Debug for Setup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Setup")
            .field("followups", &self.followups)
            .finish_non_exhaustive()
    }
}

impl Setup {
    /// Checks the follow-up, schedule and mail configuration (every refusal happens here, before
    /// anything starts) and builds the follow-up side on the lead store's pool: the follow-up
    /// store with its after-commit hook, the service with the active templates of the database,
    /// the hub, the dashboard consumer and the dispatcher.
    pub async fn build(
        config: &Config,
        leads: &PgLeadStore,
        signal: Option<CommitSignal>,
        metrics: Option<Metrics>,
    ) -> anyhow::Result<Setup> {
        let pool = leads.pool().clone();
        let clock = config.followup_clock.clock();
        if let Some(offset) = config.followup_clock.offset() {
            tracing::warn!(
                %offset,
                now = %clock.now(),
                "FRESHPLAN_FOLLOWUP_CLOCK_OFFSET: follow-ups are planned, recorded and mailed on \
                 the wall clock shifted by this (development only)"
            );
        }
        let mut store = PgFollowUpStore::new(pool.clone());
        if let Some(hook) = after_commit_hook(signal, metrics.clone()) {
            store = store.with_after_commit(hook);
        }
        let service = match mail_settings(config)? {
            None => None,
            Some((secret, base)) => {
                let templates = store
                    .active_templates(TEMPLATE_LANGUAGE)
                    .await
                    .context("reading the active mail templates")?;
                let follow_up = FollowUpConfig {
                    templates,
                    concurrency: config.followup_concurrency,
                    ..FollowUpConfig::new(base, secret)
                };
                Some(
                    FollowUpService::new(store.clone(), clock.clone(), UuidV7Generator, follow_up)
                        .context("the follow-up configuration (mail_templates) is invalid")?,
                )
            }
        };
        let followup_cron = parse_cron("FRESHPLAN_FOLLOWUP_CRON", &config.followup_cron)?;
        let sweep_cron = parse_cron("FRESHPLAN_SWEEP_CRON", &config.sweep_cron)?;
        let outbox = PgMailOutbox::new(pool);
        let dispatcher = dispatcher(config, &outbox, clock.clone())?;
        let hub = DashboardHub::new(store.clone(), metrics.clone(), clock.clone());
        Ok(Setup {
            followups: Arc::new(FollowUps {
                store,
                service,
                outbox,
                hub,
                metrics,
                clock,
                mail_wake: Arc::new(Notify::new()),
                dispatching: dispatcher.is_some(),
            }),
            dashboard: DashboardConsumer::new(),
            followup_cron: config.followup_enabled.then_some(followup_cron),
            sweep_cron: config.sweep_enabled.then_some(sweep_cron),
            retention: config.retention,
            dispatcher,
            mail_poll: config.mail_poll,
        })
    }

    /// The shared follow-up side (for [`AppState`]).
    pub fn followups(&self) -> Arc<FollowUps> {
        self.followups.clone()
    }

    /// The cockpit's event consumer, to register with the event pipeline.
    pub fn dashboard_consumer(&self) -> Arc<dyn EventConsumer> {
        self.dashboard.consumer()
    }

    /// Starts the background tasks: the cockpit refresher and its event reader, the follow-up
    /// and sweep schedules (when enabled) and the mail dispatcher (with an SMTP URL). Each ends
    /// once `closing` is set; [`Background::stop`] waits for them.
    pub fn start(self, state: &web::Data<AppState>, closing: &watch::Receiver<bool>) -> Background {
        let mut tasks = Background::default();
        let hub = self.followups.hub.clone();
        tasks.push(
            "dashboard-refresher",
            tokio::spawn(hub.clone().run(closing.clone())),
        );
        tasks.push(
            "dashboard-consumer",
            self.dashboard.spawn(hub, closing.clone()),
        );
        if let Some(schedule) = self.followup_cron {
            let followups = self.followups.clone();
            tasks.push(
                "followup-schedule",
                spawn_cron("followup", schedule, closing.clone(), move || {
                    let followups = followups.clone();
                    async move { followups.scheduled_run().await }
                }),
            );
        }
        if let Some(schedule) = self.sweep_cron {
            let state = state.clone();
            let retention = self.retention;
            tasks.push(
                "sweep-schedule",
                spawn_cron("sweep", schedule, closing.clone(), move || {
                    let state = state.clone();
                    async move {
                        sweep(&state).await;
                        retain(&state, &retention).await;
                    }
                }),
            );
        }
        if let Some(dispatcher) = self.dispatcher {
            tasks.push(
                "mail-dispatcher",
                tokio::spawn(crate::mails::dispatch(
                    dispatcher,
                    self.followups.mail_wake.clone(),
                    self.mail_poll,
                    closing.clone(),
                )),
            );
        }
        tasks
    }
}

/// Retention (SPEC §13), after each sweep: erases closed leads and removes old mail bodies past
/// their periods, in short batches of [`RETENTION_BATCH`] that skip rows others hold (safe on
/// every replica at once, never blocking the API for long); each committed batch is counted and
/// logged, so a failure later in the run loses no count.
pub async fn retain(state: &AppState, policy: &RetentionPolicy) {
    loop {
        match state.leads.retention_batch(policy, RETENTION_BATCH).await {
            Ok(report) if report.is_empty() => {
                tracing::debug!("retention: nothing (more) due");
                return;
            }
            Ok(report) => {
                if let Some(m) = &state.metrics {
                    m.retention(
                        u64::from(report.leads_erased),
                        u64::from(report.mail_bodies_erased),
                    );
                }
                tracing::info!(
                    leads_erased = report.leads_erased,
                    mail_bodies_erased = report.mail_bodies_erased,
                    "retention batch"
                );
                if report.leads_erased < RETENTION_BATCH
                    && report.mail_bodies_erased < RETENTION_BATCH
                {
                    return;
                }
            }
            Err(e) => {
                tracing::warn!(error = %chain(&e), "retention failed; next tick retries");
                return;
            }
        }
    }
}

/// One scheduled protection sweep (SPEC §4.5), logged. Safe on every replica at once: the
/// sweep claims due leads `FOR NO KEY UPDATE SKIP LOCKED`.
async fn sweep(state: &AppState) {
    match state.leads.sweep(SWEEP_BATCH).await {
        Ok(report) if report.transitions > 0 => tracing::info!(
            examined = report.examined,
            transitions = report.transitions,
            "protection sweep"
        ),
        Ok(_) => tracing::debug!("protection sweep: nothing due"),
        Err(e) => tracing::warn!(error = %chain(&e), "protection sweep failed; next tick retries"),
    }
}
