//! The timeline (SPEC §5): list a lead's activities, log one. Bodies are
//! `freshplan_api::activities`.

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};

use freshplan_api::activities as api;

use crate::AppState;
use crate::api::common;
use crate::auth::Caller;
use crate::http::{self, Wire, lead_etag, parse_json, require_json};
use crate::problem::Problem;

type Result<T> = std::result::Result<T, Problem>;

/// Registers the timeline routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/api/leads/{id}/activities", web::get().to(list_activities))
        .route("/api/leads/{id}/activities", web::post().to(log_activity));
}

/// `GET /api/leads/{id}/activities`
#[utoipa::path(get, path = "/api/leads/{id}/activities", tag = "activities", security(("bearer" = [])),
    params(("id" = Uuid, Path),
        ("page" = Option<u32>, Query, minimum = 0, maximum = 1000000, description = "0-based page"),
        ("size" = Option<u32>, Query, minimum = 1, maximum = 200, description = "Page size (default 20)")),
    responses(
        (status = 200, description = "The timeline, newest first", body = api::ActivityPage),
        (status = 400, response = crate::openapi::BadRequest),
        (status = 401, response = crate::openapi::Unauthorized),
        (status = 404, response = crate::openapi::NotFound)))]
pub async fn list_activities(
    req: HttpRequest,
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<String>,
) -> Result<HttpResponse> {
    let id = http::path_id(&id)?;
    let (page, size) = http::paging(req.query_string())?;
    let p = state.leads.activities(&caller.0, id, page, size).await?;
    Ok(HttpResponse::Ok().json(api::ActivityPage {
        data: p.items.iter().map(common::activity).collect(),
        page,
        size,
        total: p.total,
        total_pages: p.total.div_ceil(u64::from(size)),
    }))
}

/// `POST /api/leads/{id}/activities`
#[utoipa::path(post, path = "/api/leads/{id}/activities", tag = "activities", security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    request_body(content = api::ActivityCreate),
    responses(
        (status = 201, description = "The activity", body = api::Activity, headers(("ETag" = String, description = "The lead's new strong ETag"))),
        (status = 400, response = crate::openapi::BadRequest),
        (status = 401, response = crate::openapi::Unauthorized),
        (status = 403, response = crate::openapi::Forbidden),
        (status = 404, response = crate::openapi::NotFound),
        (status = 409, response = crate::openapi::Conflict),
        (status = 413, response = crate::openapi::TooLarge),
        (status = 415, response = crate::openapi::UnsupportedMediaType),
        (status = 422, response = crate::openapi::Unprocessable)))]
pub async fn log_activity(
    req: HttpRequest,
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse> {
    let body = http::read_body(&req, payload).await?;
    let id = http::path_id(&id)?;
    require_json(&req, false)?;
    let body: api::ActivityCreate = parse_json(&body)?;
    // The document's `maxLength` and pattern apply to what was sent; the domain trims first.
    if let Some(message) = body
        .description
        .as_deref()
        .and_then(|d| http::text_refusal(d, freshplan_leads::activity::MAX_DESCRIPTION, true))
    {
        return Err(Problem::invalid("description".into(), message));
    }
    let cmd = freshplan_leads::LogActivity {
        activity_type: api::ActivityType::from(body.activity_type).wire(),
        occurred_at: body.occurred_at,
        description: body.description,
    };
    let (activity, lead) = state.leads.log_activity(&caller.0, id, cmd).await?;
    Ok(HttpResponse::Created()
        .insert_header((header::ETAG, lead_etag(lead.id, lead.version)))
        .json(common::activity(&activity)))
}
