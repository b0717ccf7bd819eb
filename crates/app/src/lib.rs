//! FreshPlan Leads service: wiring of the domain (`freshplan-leads`) to PostgreSQL
//! (`freshplan-store-postgres`) and HTTP (actix-web). Handlers parse, call a service and map the
//! result; the rules live in the domain crates.

// `Problem` (136 bytes) is the error of one request path, built at most once per request;
// boxing it everywhere would add noise for no measurable gain.
#![allow(clippy::result_large_err)]

pub mod auth;
pub mod cockpit;
pub mod config;
pub mod dto;
pub mod http;
pub mod observe;
pub mod openapi;
pub mod problem;
pub mod routes;
pub mod sse;

use std::net::TcpListener;
use std::sync::Arc;

use actix_web::dev::Server;
use actix_web::{App, HttpResponse, HttpServer, middleware, web};

use freshplan_kernel::{SystemClock, UuidV7Generator};
use freshplan_leads::LeadService;
use freshplan_leads::protection::ProtectionPolicy;
use freshplan_metrics_prometheus::Metrics;
use freshplan_store_postgres::PgLeadStore;

use crate::auth::Authenticator;
use crate::problem::Problem;

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
}

/// Connects, builds the state and starts serving on `listener`. Returns the running server
/// (await it; on SIGTERM it stops accepting, lets in-flight requests finish — up to 30 s — and
/// returns; SIGINT and SIGQUIT stop at once, as actix-server does).
pub async fn start(config: &config::Config, listener: TcpListener) -> anyhow::Result<Server> {
    let pool = freshplan_store_postgres::connect(&config.database_url, config.pool_size).await?;
    let store = PgLeadStore::new(pool);
    let leads = LeadService::new(
        store,
        SystemClock,
        UuidV7Generator,
        ProtectionPolicy::default(),
    );
    let authenticator = Authenticator::new(
        config.hs256_secret.as_deref(),
        config.jwks_document()?.as_deref(),
        config.issuer.clone(),
        config.audience.clone(),
    )?;
    let metrics = config.metrics.then(Metrics::new);
    let state = web::Data::new(AppState { leads, metrics });
    let auth = web::Data::new(Arc::new(authenticator));
    let mut server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .app_data(auth.clone())
            .wrap(middleware::from_fn(request_id))
            .configure(routes::configure)
            .configure(cockpit::configure)
            .default_service(web::to(|| async {
                HttpResponse::NotFound()
                    .content_type("application/problem+json")
                    .json(Problem::not_found("No such resource."))
            }))
    })
    .shutdown_timeout(30)
    .listen(listener)?;
    if let Some(w) = config.workers {
        server = server.workers(w);
    }
    Ok(server.run())
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
