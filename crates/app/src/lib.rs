//! FreshPlan Leads service: wiring of the domain (`freshplan-leads`) to PostgreSQL
//! (`freshplan-store-postgres`) and HTTP (actix-web). Handlers parse, call a service and map the
//! result; the rules live in the domain crates.

// `Problem` (136 bytes) is the error of one request path, built at most once per request;
// boxing it everywhere would add noise for no measurable gain.
#![allow(clippy::result_large_err)]

pub mod api;
pub mod auth;
pub mod cockpit;
pub mod config;
pub mod dashboard;
pub mod events;
pub mod followups;
pub mod http;
pub mod imports;
pub mod mails;
pub mod observe;
pub mod openapi;
pub mod problem;
pub mod routes;
pub mod scheduler;
pub mod sse;

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::{Server, ServerHandle};
use actix_web::{App, HttpServer, middleware, web};
use tokio::sync::watch;

use freshplan_events_pg::{CommitSignal, EventConsumer};
use freshplan_kernel::{SystemClock, UuidV7Generator};
use freshplan_leads::LeadService;
use freshplan_leads::protection::ProtectionPolicy;
use freshplan_metrics_prometheus::Metrics;
use freshplan_store_postgres::PgLeadStore;

use crate::auth::Authenticator;
use crate::events::Events;

/// The request body limit (SPEC §9).
pub const BODY_LIMIT: usize = 64 * 1024;

/// The lead service as wired in production.
pub type Leads = LeadService<PgLeadStore, SystemClock, UuidV7Generator>;

/// Shared state of the HTTP handlers.
pub struct AppState {
    /// The lead use cases.
    pub leads: Leads,
    /// The SPEC §10 metrics (`None` when switched off).
    pub metrics: Option<Metrics>,
    /// This replica's event pipeline and its SSE broadcast (`None` when `FRESHPLAN_EVENTS` is
    /// off).
    pub events: Option<Arc<Events>>,
    /// Becomes `true` when the server begins to stop: long-lived responses (SSE) end then, so
    /// a graceful stop does not wait for them.
    pub closing: watch::Receiver<bool>,
    /// The keep-alive interval of SSE responses ([`sse::response`]).
    pub sse_keep_alive: Duration,
    /// Follow-ups, mail outbox and cockpit figures ([`followups`]).
    pub followups: Arc<followups::FollowUps>,
    /// Lead-list imports run by this replica ([`imports`]).
    pub imports: Arc<imports::Importer>,
}

/// How long a lead list waits for the read replica to replay the primary's position before it
/// reads from the primary instead (`FRESHPLAN_DATABASE_READ_URL`).
pub const READ_REPLICA_MAX_WAIT: std::time::Duration = std::time::Duration::from_millis(200);

/// How long a lead list waits for a connection of the read replica's pool before it reads from
/// the primary instead (the replica is down or its pool exhausted).
pub const READ_REPLICA_ACQUIRE_TIMEOUT: std::time::Duration = std::time::Duration::from_millis(500);

/// Connects, builds the state, starts this replica's event pipeline (unless
/// `FRESHPLAN_EVENTS` is off) and starts serving on `listener`. Returns at once; drive the
/// service with [`Running::run`] (tests: stop it through [`Running::stopper`]) or
/// [`Running::run_until_signal`] (the binary).
pub async fn start(config: &config::Config, listener: TcpListener) -> anyhow::Result<Running> {
    let pool = freshplan_store_postgres::connect(&config.database_url, config.pool_size).await?;
    let metrics = config.metrics.then(Metrics::new);
    // The writer side's wake-up: the lead store pokes it after every commit that appended events
    // (never inside the transaction), the pipeline's notifier turns it into a coalesced NOTIFY.
    let signal = config.events.then(CommitSignal::new);
    let mut store = PgLeadStore::new(pool);
    if let Some(url) = &config.database_read_url {
        let replica = freshplan_store_postgres::connect_replica(
            url,
            config.pool_size,
            READ_REPLICA_ACQUIRE_TIMEOUT,
        )?;
        store = store.with_read_replica(replica, READ_REPLICA_MAX_WAIT);
    }
    if let Some(hook) = events::after_commit_hook(signal.clone(), metrics.clone()) {
        store = store.with_after_commit(hook);
    }
    // Follow-ups, mail and cockpit: every configuration refusal happens here, before anything
    // starts.
    let followups =
        followups::Setup::build(config, &store, signal.clone(), metrics.clone()).await?;
    let authenticator = Authenticator::new(
        config.hs256_secret.as_deref(),
        config.jwks_document()?.as_deref(),
        config.issuer.clone(),
        config.audience.clone(),
    )?;
    let events = match signal {
        None => None,
        Some(signal) => {
            // The in-process consumers of this replica, besides the SSE stream's broadcaster
            // (which `Events::start` puts first). Add a consumer here — each with a unique name —
            // and keep its handle in `AppState` for the handlers that need it.
            let consumers: Vec<Arc<dyn EventConsumer>> = vec![followups.dashboard_consumer()];
            Some(Events::start(
                &store,
                &config.database_url,
                signal,
                config.events_retention,
                config.sse_buffer,
                metrics.clone(),
                consumers,
            )?)
        }
    };
    let leads = LeadService::new(
        store,
        SystemClock,
        UuidV7Generator,
        ProtectionPolicy::default(),
    );
    let (closing_tx, closing) = watch::channel(false);
    let importer = Arc::new(imports::Importer::new(
        leads.clone(),
        config.import_lease,
        metrics.clone(),
        api::imports::candidate,
    ));
    let state = web::Data::new(AppState {
        imports: importer.clone(),
        leads,
        metrics,
        events: events.clone(),
        closing: closing.clone(),
        sse_keep_alive: config.sse_keep_alive,
        followups: followups.followups(),
    });
    let shared_followups = followups.followups();
    // The schedules, the dispatcher and the cockpit refresher; they end on `closing`.
    let mut background = followups.start(&state, &closing);
    background.push(
        "import-resumer",
        tokio::spawn(importer.resume(closing.clone())),
    );
    let auth = web::Data::new(Arc::new(authenticator));
    let mut server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .app_data(auth.clone())
            .wrap(middleware::from_fn(http::refuse_nul_in_query))
            .wrap(middleware::from_fn(request_id))
            .configure(routes::configure)
            .configure(cockpit::configure)
            .default_service(web::to(routes::fallback))
    })
    .shutdown_timeout(30)
    // Signals are handled by `Running::run_until_signal`: SSE streams must end before a
    // graceful stop can finish.
    .disable_signals()
    .listen(listener)?;
    if let Some(w) = config.workers {
        server = server.workers(w);
    }
    let server = server.run();
    Ok(Running {
        stopper: Stopper {
            handle: server.handle(),
            closing: Arc::new(closing_tx),
        },
        server,
        events,
        background,
        followups: shared_followups,
    })
}

/// A started service: the HTTP server and this replica's event pipeline.
pub struct Running {
    server: Server,
    stopper: Stopper,
    events: Option<Arc<Events>>,
    background: scheduler::Background,
    followups: Arc<followups::FollowUps>,
}

impl std::fmt::Debug for Running {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Running")
            .field("events", &self.events)
            .finish_non_exhaustive()
    }
}

/// Stops a [`Running`] service from another task.
#[derive(Clone)]
pub struct Stopper {
    handle: ServerHandle,
    closing: Arc<watch::Sender<bool>>,
}

impl std::fmt::Debug for Stopper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stopper").finish_non_exhaustive()
    }
}

impl Stopper {
    /// Begins to stop: SSE streams end and the listening socket closes at once; `graceful`: every
    /// request in flight finishes first (up to 30 s), otherwise connections are dropped. Returns
    /// when the HTTP server has stopped ([`Running::run`] then stops the event pipeline).
    pub async fn stop(&self, graceful: bool) {
        self.closing.send_replace(true);
        self.handle.stop(graceful).await;
    }
}

impl Running {
    /// A handle that stops the service.
    pub fn stopper(&self) -> Stopper {
        self.stopper.clone()
    }

    /// This replica's event pipeline (`None` when `FRESHPLAN_EVENTS` is off).
    pub fn events(&self) -> Option<&Arc<Events>> {
        self.events.as_ref()
    }

    /// This replica's follow-ups, mail outbox and cockpit hub.
    pub fn followups(&self) -> &Arc<followups::FollowUps> {
        &self.followups
    }

    /// The names of this replica's background tasks (schedules, dispatcher, cockpit).
    pub fn background_tasks(&self) -> Vec<&'static str> {
        self.background.names()
    }

    /// Serves until stopped ([`Running::stopper`]), then shuts the event pipeline down: each
    /// consumer finishes its batch, the listener connection closes. Commits made by the last
    /// in-flight requests are still delivered to this replica's consumers before it stops, or by
    /// the other replicas' listeners.
    pub async fn run(self) -> std::io::Result<()> {
        let served = self.server.await;
        self.stopper.closing.send_replace(true);
        // A follow-up run or a mail batch in flight finishes first (bounded).
        self.background.stop().await;
        if let Some(events) = &self.events {
            events.shutdown().await;
        }
        served
    }

    /// [`Running::run`], stopped by a signal: SIGTERM stops gracefully (the listening socket
    /// closes at once, in-flight requests finish — up to 30 s — SSE streams end), SIGINT and
    /// SIGQUIT stop at once (as actix-server's own handling does).
    pub async fn run_until_signal(self) -> std::io::Result<()> {
        let stopper = self.stopper();
        let signals = tokio::spawn(async move {
            if let Some(graceful) = stop_signal().await {
                tracing::info!(graceful, "stopping");
                stopper.stop(graceful).await;
            }
        });
        let served = self.run().await;
        signals.abort();
        served
    }
}

/// Waits for a stop signal: `Some(true)` for SIGTERM (graceful), `Some(false)` for SIGINT or
/// SIGQUIT; `None` when no handler could be installed.
#[cfg(unix)]
async fn stop_signal() -> Option<bool> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).ok()?;
    let mut int = signal(SignalKind::interrupt()).ok()?;
    let mut quit = signal(SignalKind::quit()).ok()?;
    tokio::select! {
        _ = term.recv() => Some(true),
        _ = int.recv() => Some(false),
        _ = quit.recv() => Some(false),
    }
}

/// Waits for Ctrl-C (stops at once).
#[cfg(not(unix))]
async fn stop_signal() -> Option<bool> {
    tokio::signal::ctrl_c().await.ok().map(|()| false)
}

/// Gives every request an id (from `X-Request-Id` or a fresh UUID), logs it with method, path,
/// status and duration, and echoes it in the response.
async fn request_id(
    req: actix_web::dev::ServiceRequest,
    next: middleware::Next<impl actix_web::body::MessageBody>,
) -> Result<actix_web::dev::ServiceResponse<impl actix_web::body::MessageBody>, actix_web::Error> {
    let id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 64 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
    let span = tracing::info_span!("request", request_id = %id, method = %req.method(), path = %req.path());
    let started = std::time::Instant::now();
    let mut res = tracing::Instrument::instrument(next.call(req), span.clone()).await?;
    observe::record(
        res.request().app_data::<web::Data<AppState>>(),
        res.request().method().as_str(),
        res.request().match_pattern().as_deref(),
        res.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    let _in_span = span.enter();
    tracing::info!(
        status = res.status().as_u16(),
        elapsed_ms = started.elapsed().as_secs_f64() * 1000.0,
        "handled"
    );
    if let Ok(v) = actix_web::http::header::HeaderValue::from_str(&id) {
        res.headers_mut().insert(
            actix_web::http::header::HeaderName::from_static("x-request-id"),
            v,
        );
    }
    Ok(res)
}

/// Installs the tracing subscriber once (text or JSON).
pub fn init_tracing(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| "info,sqlx=warn".into());
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}
