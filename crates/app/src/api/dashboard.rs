//! The cockpit figures (SPEC §8): `GET /api/dashboard/followup` and its SSE stream
//! `GET /api/dashboard/followup-stream`, for admins, managers, viewers and sales (each over the
//! own scope). The figures are computed and cached by [`crate::dashboard::DashboardHub`].

use std::sync::Arc;

use actix_web::http::header;
use actix_web::web::Bytes;
use actix_web::{HttpRequest, HttpResponse, web};
use tokio::sync::watch;

use freshplan_api::followups::{FollowUpFigures, ScopeKind};
use freshplan_followup::Scope;
use freshplan_followup::cockpit::ScopeKind as DomainScopeKind;
use freshplan_kernel::{Actor, TerritoryId};

use crate::AppState;
use crate::api::common::{Result, params};
use crate::auth::Caller;
use crate::dashboard::Snapshot;
use crate::problem::Problem;
use crate::scheduler::closed;
use crate::sse;

/// The SSE event name of the cockpit stream (SPEC §8; `assets/cockpit.js` listens for it).
pub const FIGURES_EVENT: &str = "followup-metrics";

/// Registers `GET /api/dashboard/followup` and `GET /api/dashboard/followup-stream`.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/api/dashboard/followup", web::get().to(figures))
        .route(
            "/api/dashboard/followup-stream",
            web::get().to(figures_stream),
        );
}

/// The body of a snapshot.
fn body(snapshot: &Snapshot) -> FollowUpFigures {
    FollowUpFigures {
        pending_t3: snapshot.figures.pending_t3,
        pending_t7: snapshot.figures.pending_t7,
        sent_today: snapshot.figures.sent_today,
        conversion_rate: snapshot.figures.conversion_rate,
        scope: match snapshot.scope {
            DomainScopeKind::All => ScopeKind::All,
            DomainScopeKind::Territories => ScopeKind::Territories,
            DomainScopeKind::OwnLeads => ScopeKind::OwnLeads,
            DomainScopeKind::None => ScopeKind::None,
        },
        generated_at: snapshot.generated_at,
    }
}

/// The optional `territory` filter of the dashboard endpoints: `DE` or `CH`, else 400.
fn territory_filter(query: &str) -> Result<Option<TerritoryId>> {
    params(query, &["territory"])?
        .into_iter()
        .next()
        .map(|(_, v)| {
            crate::http::territory_id(&v).ok_or_else(|| {
                Problem::bad_field("territory", format!("unknown territory {v:?}; DE or CH"))
            })
        })
        .transpose()
}

/// The dashboard is for the roles SPEC §2 gives a scope; others (service, no role) are 403.
fn require_dashboard(actor: &Actor) -> Result<()> {
    if Scope::for_actor(actor, None).kind() == DomainScopeKind::None {
        Err(Problem::forbidden(
            "The follow-up dashboard is for the admin, manager, viewer and sales roles.",
        ))
    } else {
        Ok(())
    }
}

/// `GET /api/dashboard/followup`
#[utoipa::path(get, path = "/api/dashboard/followup", operation_id = "get_followup_figures", tag = "cockpit", security(("bearer" = [])),
    params(("territory" = Option<String>, Query, pattern = "^([dD][eE]|[cC][hH])$", description = "DE or CH: narrow the caller's scope to one territory (outside the caller's territories: all figures 0)")),
    responses(
        (status = 200, description = "The cockpit figures of the caller's scope (admin: all; manager, viewer: own territories; sales: own leads)", body = FollowUpFigures),
        (status = 400, response = crate::openapi::BadRequest), (status = 401, response = crate::openapi::Unauthorized), (status = 403, response = crate::openapi::Forbidden)))]
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
        .json(body(&snapshot)))
}

/// `GET /api/dashboard/followup-stream`
#[utoipa::path(get, path = "/api/dashboard/followup-stream", operation_id = "stream_followup_figures", tag = "cockpit", security(("bearer" = [])),
    params(("territory" = Option<String>, Query, pattern = "^([dD][eE]|[cC][hH])$", description = "DE or CH, as for GET /api/dashboard/followup")),
    responses(
        (status = 200, description = "`text/event-stream`: a `: open` comment, then `event: followup-metrics` messages whose `data:` is the JSON of GET /api/dashboard/followup — once on connect, then whenever the scope's figures change; a `: keep-alive` comment after 15 s of quiet. Ends when the server stops, and at the bearer token's `exp` with a last message `event: token-expired`, `data: {\"reason\":\"token expired\",\"expiredAt\":\"<exp, RFC 3339>\"}` (no `id:`); open it again with a new token.", content_type = "text/event-stream", body = FollowUpFigures),
        (status = 400, response = crate::openapi::BadRequest), (status = 401, response = crate::openapi::Unauthorized), (status = 403, response = crate::openapi::Forbidden)))]
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
    rx: watch::Receiver<Option<Arc<Snapshot>>>,
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
                match serde_json::to_string(&body(&snapshot)) {
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
