//! Follow-up automation, mail delivery and the cockpit API, wired (SPEC §6, §8, §9, §10):
//! the follow-up service on PostgreSQL with the mail templates from the database, its schedule
//! and the protection sweep's ([`crate::scheduler`]), the SMTP dispatcher ([`crate::mails`]),
//! the cockpit hub ([`crate::dashboard`]) and their routes ([`configure`]).
//!
//! | route | who |
//! |---|---|
//! | `POST /api/followups/run` | admin |
//! | `GET /api/followups/runs` | admin, manager |
//! | `GET /api/dashboard/followup`, `…/followup-stream` | admin, manager, viewer, sales (scoped) |
//! | `GET /api/mails`, `GET /api/mails/{id}`, `POST /api/mails/{id}/requeue` | admin |
//! | `GET /unsubscribe?token=…` | anyone holding a signed link |

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::http::{StatusCode, header};
use actix_web::web::Bytes;
use actix_web::{HttpRequest, HttpResponse, web};
use anyhow::Context as _;
use tokio::sync::{Notify, watch};

use freshplan_events_pg::{CommitSignal, EventConsumer};
use freshplan_followup::service::{FollowUpConfig, FollowUpService, RunError};
use freshplan_followup::unsubscribe::{DEVELOPMENT_SECRET, validate_secret};
use freshplan_followup::{RunReport, Scope};
use freshplan_kernel::UuidV7Generator;
use freshplan_kernel::{Actor, Clock, CloudEvent, IdGenerator as _, Role, TerritoryId};
use freshplan_mail_smtp::SmtpTransport;
use freshplan_mail_smtp::{Dispatcher, DispatcherConfig, Mailbox, PgMailOutbox, Sender};
use freshplan_metrics_prometheus::Metrics;
use freshplan_store_postgres::followup::ExclusiveRun;
use freshplan_store_postgres::{AfterCommit, PgFollowUpStore, PgLeadStore};

use crate::AppState;
use crate::auth::Caller;
use crate::config::Config;
use crate::dashboard::{DashboardConsumer, DashboardHub};
use crate::problem::Problem;
use crate::scheduler::{Background, closed, parse_cron, spawn_cron};
use crate::sse;

type Result<T> = std::result::Result<T, Problem>;

/// The follow-up service as wired (its clock: [`crate::config::FollowUpClock`]).
pub type FollowUpSvc = FollowUpService<PgFollowUpStore, Arc<dyn Clock>, UuidV7Generator>;

/// The mail dispatcher as wired: on the follow-up clock, which queues the mails (a mail is due
/// at its queue time, so the dispatcher and a requeue must see the same "now").
pub type MailDispatcher = Dispatcher<SmtpTransport, Arc<dyn Clock>>;

/// The language of the mail templates read at start-up (both territories write German).
pub const TEMPLATE_LANGUAGE: &str = "de";

/// Leads per transaction of the protection sweep.
pub const SWEEP_BATCH: u32 = 200;

/// The SMTP command timeout of the dispatcher.
pub const SMTP_TIMEOUT: Duration = Duration::from_secs(30);

/// The SSE event name of the cockpit stream (SPEC §8; `assets/cockpit.js` listens for it).
pub const FIGURES_EVENT: &str = "followup-metrics";

/// `limit` of `GET /api/followups/runs` when none is given, and its maximum.
pub const DEFAULT_RUNS: u32 = 20;
/// The largest `limit` of `GET /api/followups/runs`.
pub const MAX_RUNS: u32 = 100;

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

fn log_report(report: &RunReport) {
    tracing::info!(
        run_id = %report.run_id,
        t3 = report.t3_count,
        t7 = report.t7_count,
        skipped = report.skipped_count,
        "follow-up run finished"
    );
}

fn log_failure(failure: &RunError) {
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

/// The mail dispatcher of a configuration; `None` without `FRESHPLAN_SMTP_URL`.
fn dispatcher(
    config: &Config,
    outbox: &PgMailOutbox,
    clock: Arc<dyn Clock>,
) -> anyhow::Result<Option<MailDispatcher>> {
    let Some(url) = &config.smtp_url else {
        return Ok(None);
    };
    let mailbox = |name: &str, value: &str| -> anyhow::Result<Mailbox> {
        value
            .parse::<Mailbox>()
            .with_context(|| format!("{name}={value:?}: expected `Name <address>` or an address"))
    };
    let from = config
        .mail_from
        .as_deref()
        .context("FRESHPLAN_SMTP_URL is set, so FRESHPLAN_MAIL_FROM (the sender) must be too")?;
    let sender = Sender::new(
        mailbox("FRESHPLAN_MAIL_FROM", from)?,
        config
            .mail_reply_to
            .as_deref()
            .map(|r| mailbox("FRESHPLAN_MAIL_REPLY_TO", r))
            .transpose()?,
    );
    // The URL may carry credentials: never repeat it in a message.
    let transport = SmtpTransport::from_url(url, SMTP_TIMEOUT)
        .context("FRESHPLAN_SMTP_URL is not a valid SMTP URL (smtp://host:port, smtps://…)")?;
    Ok(Some(Dispatcher::new(
        outbox.clone(),
        transport,
        clock,
        DispatcherConfig::new(sender),
    )))
}

/// What [`crate::start`] builds before the server starts; [`Setup::start`] starts its
/// background tasks once the application state exists.
pub struct Setup {
    followups: Arc<FollowUps>,
    dashboard: DashboardConsumer,
    followup_cron: Option<cron::Schedule>,
    sweep_cron: Option<cron::Schedule>,
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
            tasks.push(
                "sweep-schedule",
                spawn_cron("sweep", schedule, closing.clone(), move || {
                    let state = state.clone();
                    async move { sweep(&state).await }
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

// ---------------------------------------------------------------------------------------------
// Query parameters
// ---------------------------------------------------------------------------------------------

/// The query's parameters, each at most once and all of them in `allowed` (SPEC §9: anything
/// else is 400).
pub(crate) fn params(query: &str, allowed: &[&str]) -> Result<Vec<(String, String)>> {
    let mut out: Vec<(String, String)> = Vec::new();
    for (k, v) in form_urlencoded::parse(query.as_bytes()) {
        if !allowed.contains(&k.as_ref()) {
            return Err(Problem::bad_field(&k, "unknown query parameter"));
        }
        if out.iter().any(|(seen, _)| *seen == k) {
            return Err(Problem::bad_field(&k, "given more than once"));
        }
        out.push((k.into_owned(), v.into_owned()));
    }
    Ok(out)
}

/// A number parameter in `1..=max`.
pub(crate) fn limit(name: &str, value: &str, max: u32) -> Result<u32> {
    value
        .parse::<u32>()
        .ok()
        .filter(|n| (1..=max).contains(n))
        .ok_or_else(|| Problem::bad_field(name, format!("must be between 1 and {max}")))
}

/// The optional `territory` filter of the dashboard endpoints: `DE` or `CH`, else 400.
fn territory_filter(query: &str) -> Result<Option<TerritoryId>> {
    params(query, &["territory"])?
        .into_iter()
        .next()
        .map(|(_, v)| {
            v.parse::<TerritoryId>().map_err(|_| {
                Problem::bad_field("territory", format!("unknown territory {v:?}; DE or CH"))
            })
        })
        .transpose()
}

// ---------------------------------------------------------------------------------------------
// Handlers
// ---------------------------------------------------------------------------------------------

fn require_admin(actor: &Actor, what: &str) -> Result<()> {
    if actor.has_role(Role::Admin) {
        Ok(())
    } else {
        Err(Problem::forbidden(format!("{what} is for admins.")))
    }
}

/// `POST /api/followups/run`
#[utoipa::path(post, path = "/api/followups/run", tag = "followups", security(("bearer" = [])),
    responses(
        (status = 200, description = "The run report: T+3/T+7 SENT counts, SKIPPED in `skippedCount`", body = schema::RunReport),
        (status = 401, body = Problem), (status = 403, body = Problem),
        (status = 409, description = "Another run (on any replica) holds the cluster-wide lock", body = Problem),
        (status = 500, description = "The run failed after committing what `runId` names (see GET /api/followups/runs)", body = Problem),
        (status = 503, description = "Follow-up mail is not configured on this replica", body = Problem)))]
pub async fn run(state: web::Data<AppState>, caller: Caller) -> Result<HttpResponse> {
    require_admin(&caller.0, "Triggering a follow-up run")?;
    match state.followups.run().await {
        Ok(ExclusiveRun::Busy) => Err(Problem::new(
            StatusCode::CONFLICT,
            "followup-run-in-progress",
            "Another follow-up run holds the cluster-wide lock; try again when it has finished.",
        )),
        Ok(ExclusiveRun::Finished(Ok(report))) => {
            log_report(&report);
            Ok(HttpResponse::Ok()
                .insert_header((header::CACHE_CONTROL, "no-store"))
                .json(report))
        }
        Ok(ExclusiveRun::Finished(Err(failure))) => {
            // Logged once, with the cause chain; the body stays opaque but names the run.
            log_failure(&failure);
            let mut problem = Problem::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "The follow-up run failed; what it committed before is recorded under runId.",
            );
            let mut extra = serde_json::Map::new();
            extra.insert("runId".into(), failure.report.run_id.to_string().into());
            problem.extra = Some(extra);
            Err(problem)
        }
        Err(RunFailed::NotConfigured) => Err(not_configured()),
        Err(e @ RunFailed::Store(_)) => Err(Problem::internal(&e)),
    }
}

pub(crate) fn not_configured() -> Problem {
    Problem::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "followups-not-configured",
        "Follow-up mail is not configured on this service (FRESHPLAN_UNSUBSCRIBE_SECRET).",
    )
}

/// The body of `GET /api/followups/runs`.
#[derive(serde::Serialize)]
struct Runs {
    runs: Vec<freshplan_store_postgres::RunRecord>,
}

/// `GET /api/followups/runs`
#[utoipa::path(get, path = "/api/followups/runs", tag = "followups", security(("bearer" = [])),
    params(("limit" = Option<u32>, Query, minimum = 1, maximum = 100, description = "How many runs (default 20)")),
    responses(
        (status = 200, description = "The latest runs, newest first", body = schema::RunList),
        (status = 400, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem)))]
pub async fn runs(
    req: HttpRequest,
    state: web::Data<AppState>,
    caller: Caller,
) -> Result<HttpResponse> {
    let actor = &caller.0;
    if !(actor.has_role(Role::Admin) || actor.has_role(Role::Manager)) {
        return Err(Problem::forbidden(
            "The follow-up run log is for admins and managers.",
        ));
    }
    let mut n = DEFAULT_RUNS;
    for (k, v) in params(req.query_string(), &["limit"])? {
        if k == "limit" {
            n = limit("limit", &v, MAX_RUNS)?;
        }
    }
    let runs = state
        .followups
        .store()
        .runs(actor, n)
        .await
        .map_err(|e| Problem::internal(&e))?;
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(Runs { runs }))
}

/// The dashboard is for the roles SPEC §2 gives a scope; others (service, no role) are 403.
fn require_dashboard(actor: &Actor) -> Result<()> {
    if Scope::for_actor(actor, None).kind() == freshplan_followup::cockpit::ScopeKind::None {
        Err(Problem::forbidden(
            "The follow-up dashboard is for the admin, manager, viewer and sales roles.",
        ))
    } else {
        Ok(())
    }
}

/// `GET /api/dashboard/followup`
#[utoipa::path(get, path = "/api/dashboard/followup", tag = "cockpit", security(("bearer" = [])),
    params(("territory" = Option<String>, Query, description = "DE or CH: narrow the caller's scope to one territory (outside the caller's territories: all figures 0)")),
    responses(
        (status = 200, description = "The cockpit figures of the caller's scope (admin: all; manager, viewer: own territories; sales: own leads)", body = schema::FollowUpFigures),
        (status = 400, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem)))]
pub async fn figures(
    req: HttpRequest,
    state: web::Data<AppState>,
    caller: Caller,
) -> Result<HttpResponse> {
    let territory = territory_filter(req.query_string())?;
    require_dashboard(&caller.0)?;
    let snapshot = state
        .followups
        .hub()
        .current(&caller.0, territory)
        .await
        .map_err(|e| Problem::internal(AsRef::<dyn std::error::Error>::as_ref(&e)))?;
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(&*snapshot))
}

/// `GET /api/dashboard/followup-stream`
#[utoipa::path(get, path = "/api/dashboard/followup-stream", tag = "cockpit", security(("bearer" = [])),
    params(("territory" = Option<String>, Query, description = "DE or CH, as for GET /api/dashboard/followup")),
    responses(
        (status = 200, description = "`text/event-stream`: a `: open` comment, then `event: followup-metrics` messages whose `data:` is the JSON of GET /api/dashboard/followup — once on connect, then whenever the scope's figures change; a `: keep-alive` comment after 15 s of quiet. Ends when the server stops", content_type = "text/event-stream", body = schema::FollowUpFigures),
        (status = 400, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem)))]
pub async fn figures_stream(
    req: HttpRequest,
    state: web::Data<AppState>,
    caller: Caller,
) -> Result<HttpResponse> {
    let territory = territory_filter(req.query_string())?;
    require_dashboard(&caller.0)?;
    let rx = state
        .followups
        .hub()
        .subscribe(&caller.0, territory)
        .await
        .map_err(|e| Problem::internal(AsRef::<dyn std::error::Error>::as_ref(&e)))?;
    let figures = FiguresStream {
        rx,
        closing: state.closing.clone(),
        first: true,
    };
    let opened = futures_util::stream::once(std::future::ready(sse::comment("open")));
    let messages = futures_util::stream::unfold(figures, |mut f| async move {
        let message = f.next().await?;
        Some((message, f))
    });
    let body = futures_util::StreamExt::chain(opened, messages);
    // Ends at the token's expiry (ADR 0010).
    let expires_at = caller.expires_at();
    Ok(sse::response_until(
        Box::pin(body),
        state.sse_keep_alive,
        expires_at,
    ))
}

/// One cockpit stream client: its scope's snapshots.
struct FiguresStream {
    rx: watch::Receiver<Option<Arc<crate::dashboard::Snapshot>>>,
    closing: watch::Receiver<bool>,
    first: bool,
}

impl FiguresStream {
    /// The next `followup-metrics` message: the current snapshot at first, then each change;
    /// `None` ends the stream (the server stops).
    async fn next(&mut self) -> Option<Bytes> {
        loop {
            if *self.closing.borrow() {
                return None;
            }
            if !std::mem::take(&mut self.first) {
                tokio::select! {
                    biased;
                    () = closed(&mut self.closing) => return None,
                    changed = self.rx.changed() => changed.ok()?,
                }
            }
            let snapshot = self.rx.borrow_and_update().clone();
            if let Some(snapshot) = snapshot {
                match serde_json::to_string(&*snapshot) {
                    Ok(json) => return Some(sse::frame(Some(FIGURES_EVENT), None, &json)),
                    Err(error) => {
                        tracing::error!(%error, "encoding cockpit figures");
                        return None;
                    }
                }
            }
        }
    }
}

/// Registers the follow-up, cockpit, mail and unsubscribe routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/api/followups/run", web::post().to(run))
        .route("/api/followups/runs", web::get().to(runs))
        .route("/api/dashboard/followup", web::get().to(figures))
        .route(
            "/api/dashboard/followup-stream",
            web::get().to(figures_stream),
        )
        .route("/api/mails", web::get().to(crate::mails::list))
        .route("/api/mails/{id}", web::get().to(crate::mails::get))
        .route(
            "/api/mails/{id}/requeue",
            web::post().to(crate::mails::requeue),
        )
        .route(
            "/unsubscribe",
            web::get().to(crate::unsubscribe::unsubscribe),
        );
}

/// OpenAPI schemas of the follow-up, cockpit and mail bodies (they document; the bodies are
/// written by the domain and adapter types named in each).
pub mod schema {
    use time::OffsetDateTime;
    use utoipa::ToSchema;
    use uuid::Uuid;

    /// A follow-up run (`freshplan_followup::RunReport`).
    #[derive(Debug, ToSchema)]
    #[schema(rename_all = "camelCase")]
    pub struct RunReport {
        /// The run id.
        pub run_id: Uuid,
        /// T+3 follow-ups SENT.
        pub t3_count: u32,
        /// T+7 follow-ups SENT.
        pub t7_count: u32,
        /// Follow-ups SKIPPED (both stages).
        pub skipped_count: u32,
        /// When the run started.
        pub started_at: OffsetDateTime,
        /// When it finished.
        pub finished_at: OffsetDateTime,
    }

    /// How a recorded run ended.
    #[derive(Debug, ToSchema)]
    #[schema(rename_all = "SCREAMING_SNAKE_CASE")]
    pub enum RunOutcome {
        /// Nothing processable was left.
        Completed,
        /// A batch failed; the counts are what committed before.
        Failed,
    }

    /// A row of the run log (`freshplan_store_postgres::RunRecord`).
    #[derive(Debug, ToSchema)]
    #[schema(rename_all = "camelCase")]
    pub struct RunRecord {
        /// The run id.
        pub run_id: Uuid,
        /// T+3 follow-ups SENT.
        pub t3_count: u32,
        /// T+7 follow-ups SENT.
        pub t7_count: u32,
        /// Follow-ups SKIPPED.
        pub skipped_count: u32,
        /// When the run started.
        pub started_at: OffsetDateTime,
        /// When it finished.
        pub finished_at: OffsetDateTime,
        /// Completed or failed.
        pub outcome: RunOutcome,
        /// For a failed run: why.
        pub error: Option<String>,
    }

    /// `GET /api/followups/runs`.
    #[derive(Debug, ToSchema)]
    pub struct RunList {
        /// Newest first.
        pub runs: Vec<RunRecord>,
    }

    /// On what basis the figures' scope was granted.
    #[derive(Debug, ToSchema)]
    #[schema(rename_all = "SCREAMING_SNAKE_CASE")]
    pub enum ScopeKind {
        /// Admin: every lead.
        All,
        /// Manager or viewer: the own territories.
        Territories,
        /// Sales: the own leads.
        OwnLeads,
        /// Nothing.
        None,
    }

    /// The cockpit figures (`crate::dashboard::Snapshot`, SPEC §8).
    #[derive(Debug, ToSchema)]
    #[schema(rename_all = "camelCase")]
    pub struct FollowUpFigures {
        /// Open leads (REGISTERED/ACTIVE, clock running) without a T+3 record.
        #[schema(rename = "pendingT3")]
        pub pending_t3: u64,
        /// Open leads with T+3 processed and no T+7 record.
        #[schema(rename = "pendingT7")]
        pub pending_t7: u64,
        /// Follow-ups SENT since local midnight, Europe/Berlin.
        pub sent_today: u64,
        /// Percent (one decimal) of leads with a SENT follow-up that are now CONVERTED.
        pub conversion_rate: f64,
        /// The basis of the scope.
        pub scope: ScopeKind,
        /// When the figures were computed.
        pub generated_at: OffsetDateTime,
    }

    /// A mail's delivery state.
    #[derive(Debug, ToSchema)]
    #[schema(rename_all = "SCREAMING_SNAKE_CASE")]
    pub enum MailStatus {
        /// Waiting for (another) attempt.
        Queued,
        /// Handed to the SMTP server.
        Sent,
        /// Given up (or withdrawn by an unsubscribe); `lastError` says why.
        Dead,
    }

    /// A follow-up stage.
    #[derive(Debug, ToSchema)]
    pub enum Stage {
        /// The T+3 sample offer.
        T3,
        /// The T+7 bulk-order offer.
        T7,
    }

    /// A mail of the outbox without its bodies (`freshplan_mail_smtp::MailSummary`).
    #[derive(Debug, ToSchema)]
    #[schema(rename_all = "camelCase")]
    pub struct MailSummary {
        /// The mail id.
        pub id: Uuid,
        /// The lead.
        pub lead_id: Uuid,
        /// The lead's territory (`DE`, `CH`).
        pub territory: String,
        /// The follow-up stage.
        pub stage: Stage,
        /// The recipient.
        pub recipient: String,
        /// The subject line.
        pub subject: String,
        /// The delivery state.
        pub status: MailStatus,
        /// Attempts so far.
        pub attempts: u32,
        /// When the next attempt is due (QUEUED).
        pub next_attempt_at: OffsetDateTime,
        /// The last failure.
        pub last_error: Option<String>,
        /// When it was queued.
        pub created_at: OffsetDateTime,
        /// When it was sent.
        pub sent_at: Option<OffsetDateTime>,
    }

    /// One mail with its bodies (`freshplan_mail_smtp::MailRecord`).
    #[derive(Debug, ToSchema)]
    #[schema(rename_all = "camelCase")]
    pub struct Mail {
        /// The mail id.
        pub id: Uuid,
        /// The lead.
        pub lead_id: Uuid,
        /// The lead's territory (`DE`, `CH`).
        pub territory: String,
        /// The follow-up stage.
        pub stage: Stage,
        /// The recipient.
        pub recipient: String,
        /// The subject line.
        pub subject: String,
        /// The delivery state.
        pub status: MailStatus,
        /// Attempts so far.
        pub attempts: u32,
        /// When the next attempt is due (QUEUED).
        pub next_attempt_at: OffsetDateTime,
        /// The last failure.
        pub last_error: Option<String>,
        /// When it was queued.
        pub created_at: OffsetDateTime,
        /// When it was sent.
        pub sent_at: Option<OffsetDateTime>,
        /// The HTML body.
        pub html: String,
        /// The plain-text body.
        pub text: String,
        /// The signed unsubscribe link.
        pub unsubscribe_url: String,
    }

    /// `GET /api/mails`.
    #[derive(Debug, ToSchema)]
    #[schema(rename_all = "camelCase")]
    pub struct MailPage {
        /// Newest first.
        pub mails: Vec<MailSummary>,
        /// Pass it as `after` for the next page; `null` on the last. Opaque.
        pub next_cursor: Option<String>,
    }
}
