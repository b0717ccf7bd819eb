//! Observability of the HTTP layer (SPEC §10): `GET /metrics` and the per-request metrics.

use actix_web::http::header;
use actix_web::{HttpResponse, web};

use crate::AppState;

/// `GET /metrics`: the Prometheus text exposition (no token, like the health endpoints). 404
/// when metrics are switched off (`FRESHPLAN_METRICS=false`).
#[utoipa::path(get, path = "/metrics", tag = "meta", responses(
    (status = 200, description = "Prometheus text exposition format 0.0.4", content_type = "text/plain"),
    (status = 404, description = "Metrics are switched off", body = crate::problem::Problem)))]
pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    match &state.metrics {
        Some(m) => HttpResponse::Ok()
            .insert_header((header::CONTENT_TYPE, m.content_type()))
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .body(m.encode()),
        None => HttpResponse::NotFound()
            .content_type("application/problem+json")
            .json(&crate::problem::Problem::not_found("Metrics are switched off.").0),
    }
}

/// Records one finished request: the route label is the matched route pattern (bounded), or
/// `unmatched` for a path no route serves.
pub fn record(
    state: Option<&web::Data<AppState>>,
    method: &str,
    pattern: Option<&str>,
    status: u16,
    seconds: f64,
) {
    if let Some(m) = state.and_then(|s| s.metrics.as_ref()) {
        m.http_request(method, pattern.unwrap_or("unmatched"), status, seconds);
    }
}
