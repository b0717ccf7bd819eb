//! Liveness and readiness (no token needed).

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};

use freshplan_api::health::{Health, State};
use freshplan_kernel::Actor;

use crate::AppState;
use crate::problem::{MEDIA_TYPE, Problem};

/// Registers the health routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/health/live", web::get().to(live))
        .route("/health/ready", web::get().to(ready));
}

/// `GET /health/live`: 503 once the event listener found that the database lost events this
/// replica had already delivered (a failover to a standby without them, ADR 0015) — the in-memory
/// event state belongs to a history that is gone, and only a restart starts it afresh.
#[utoipa::path(get, path = "/health/live", tag = "meta",
    responses(
        (status = 200, description = "The process serves requests", body = Health),
        (status = 503, description = "Restart this process: the database lost events it had already delivered (a failover to a standby that lacked them)", body = freshplan_api::Problem, content_type = "application/problem+json")))]
pub async fn live(state: web::Data<AppState>) -> HttpResponse {
    if state.events.as_ref().is_some_and(|e| e.diverged()) {
        let problem = Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "event-history-diverged",
            "The database lost events this replica had already delivered (a failover to a \
             standby that lacked them); restart this process.",
        );
        return HttpResponse::ServiceUnavailable()
            .content_type(MEDIA_TYPE)
            .json(&problem.0);
    }
    HttpResponse::Ok().json(Health {
        status: State::Up,
        database: None,
        event_listener: None,
    })
}

/// `GET /health/ready`: 503 while the database is unreachable or this replica's event listener
/// is down (not checked when `FRESHPLAN_EVENTS` is off).
#[utoipa::path(get, path = "/health/ready", tag = "meta", responses(
    (status = 200, description = "Ready: the database is `UP`, the event listener `UP` (`OFF` when the pipeline is switched off)", body = Health),
    (status = 503, description = "The database or the event listener is down; the problem names both (`database`, `eventListener`)", body = freshplan_api::Problem, content_type = "application/problem+json")))]
pub async fn ready(state: web::Data<AppState>) -> HttpResponse {
    use freshplan_leads::ports::{LeadStore, LeadTx};
    let database = match state.leads.store().begin(&Actor::system()).await {
        Ok(tx) => tx.commit().await.is_ok(),
        Err(_) => false,
    };
    let listener = state.events.as_ref().map(|e| e.listener_connected());
    let down = match (database, listener) {
        (true, None | Some(true)) => None,
        (false, Some(false)) => Some("The database and the event listener are down."),
        (false, _) => Some("The database is unreachable."),
        (true, Some(false)) => Some("The event listener is not connected."),
    };
    let up = |ok: bool| if ok { State::Up } else { State::Down };
    let health = Health {
        status: if down.is_none() {
            State::Up
        } else {
            State::Down
        },
        database: Some(up(database)),
        event_listener: Some(listener.map_or(State::Off, up)),
    };
    match down {
        None => HttpResponse::Ok().json(health),
        Some(detail) => {
            let mut problem = Problem::new(StatusCode::SERVICE_UNAVAILABLE, "not-ready", detail);
            let mut extra = serde_json::Map::new();
            extra.insert(
                "database".into(),
                serde_json::to_value(health.database).unwrap_or_default(),
            );
            extra.insert(
                "eventListener".into(),
                serde_json::to_value(health.event_listener).unwrap_or_default(),
            );
            problem.extra = Some(extra);
            HttpResponse::ServiceUnavailable()
                .content_type(MEDIA_TYPE)
                .json(&problem.0)
        }
    }
}
