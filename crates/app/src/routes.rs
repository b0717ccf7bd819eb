//! The HTTP routes (SPEC §9). Handlers parse, call a service, and map the result.

use actix_web::http::{StatusCode, header};
use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::json;
use uuid::Uuid;

use freshplan_kernel::Actor;
use freshplan_leads::service::CreateLead;
use freshplan_territory::Territory;

use crate::AppState;
use crate::auth::Caller;
use crate::dto;
use crate::http::{self, lead_etag};
use crate::problem::Problem;

type Result<T> = std::result::Result<T, Problem>;

/// Every route, as (method, path) in OpenAPI form; the route table and the OpenAPI document are
/// both checked against it by the tests.
pub const ROUTES: &[(&str, &str)] = &[
    ("get", "/api/territories"),
    ("get", "/api/territories/{id}"),
    ("get", "/api/leads"),
    ("post", "/api/leads"),
    ("get", "/api/leads/{id}"),
    ("patch", "/api/leads/{id}"),
    ("delete", "/api/leads/{id}"),
    ("get", "/api/leads/{id}/activities"),
    ("post", "/api/leads/{id}/activities"),
    ("put", "/api/leads/{id}/owner"),
    ("post", "/api/leads/{id}/clock/stop"),
    ("post", "/api/leads/{id}/clock/resume"),
    ("get", "/api/events"),
    ("get", "/api/events/stream"),
    ("post", "/api/followups/run"),
    ("get", "/api/followups/runs"),
    ("get", "/api/dashboard/followup"),
    ("get", "/api/dashboard/followup-stream"),
    ("get", "/api/mails"),
    ("get", "/api/mails/{id}"),
    ("post", "/api/mails/{id}/requeue"),
    ("get", "/unsubscribe"),
    ("get", "/api/openapi.json"),
    ("get", "/health/live"),
    ("get", "/health/ready"),
    ("get", "/metrics"),
    ("get", "/cockpit"),
];

/// Registers every route.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/api/territories", web::get().to(list_territories))
        .route("/api/territories/{id}", web::get().to(get_territory))
        .route("/api/leads", web::get().to(list_leads))
        .route("/api/leads", web::post().to(create_lead))
        .route("/api/leads/{id}", web::get().to(get_lead))
        .route("/api/leads/{id}", web::patch().to(patch_lead))
        .route("/api/leads/{id}", web::delete().to(delete_lead))
        .route("/api/leads/{id}/activities", web::get().to(list_activities))
        .route("/api/leads/{id}/activities", web::post().to(log_activity))
        .route("/api/leads/{id}/owner", web::put().to(reassign))
        .route("/api/leads/{id}/clock/stop", web::post().to(stop_clock))
        .route("/api/leads/{id}/clock/resume", web::post().to(resume_clock))
        .route("/api/events", web::get().to(crate::feed::list))
        .route("/api/events/stream", web::get().to(crate::feed::stream))
        .route("/api/openapi.json", web::get().to(openapi))
        .route("/health/live", web::get().to(live))
        .route("/health/ready", web::get().to(ready))
        .route("/metrics", web::get().to(crate::observe::metrics));
}

fn lead_response(
    status: StatusCode,
    state: &AppState,
    lead: &freshplan_leads::Lead,
) -> HttpResponse {
    HttpResponse::build(status)
        .insert_header((header::ETAG, lead_etag(lead.id, lead.version)))
        .json(dto::lead_json(lead, state.leads.policy()))
}

fn require_json(req: &HttpRequest, allow_merge_patch: bool) -> Result<()> {
    let ct = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let mime = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if mime == "application/json" || (allow_merge_patch && mime == "application/merge-patch+json") {
        Ok(())
    } else {
        Err(Problem::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-media-type",
            "Send the body as application/json.",
        ))
    }
}

/// `GET /api/territories`
#[utoipa::path(get, path = "/api/territories", tag = "territories", security(("bearer" = [])),
    responses((status = 200, description = "Both territories", body = [dto::TerritoryDto]), (status = 401, body = Problem)))]
pub async fn list_territories(_caller: Caller) -> HttpResponse {
    let all: Vec<dto::TerritoryDto> = Territory::all().iter().map(Into::into).collect();
    HttpResponse::Ok().json(all)
}

/// `GET /api/territories/{id}`
#[utoipa::path(get, path = "/api/territories/{id}", tag = "territories", security(("bearer" = [])),
    params(("id" = String, Path, description = "DE or CH")),
    responses((status = 200, body = dto::TerritoryDto), (status = 401, body = Problem), (status = 404, body = Problem)))]
pub async fn get_territory(_caller: Caller, id: web::Path<String>) -> Result<HttpResponse> {
    let tid = id
        .parse::<freshplan_kernel::TerritoryId>()
        .map_err(|_| Problem::not_found(format!("No territory {:?}.", id.as_str())))?;
    Ok(HttpResponse::Ok().json(dto::TerritoryDto::from(Territory::get(tid))))
}

/// `GET /api/leads`
#[utoipa::path(get, path = "/api/leads", tag = "leads", security(("bearer" = [])),
    params(("page" = Option<u32>, Query), ("size" = Option<u32>, Query, description = "1-200"), ("sort" = Option<String>, Query, description = "field,asc|desc"),
           ("status" = Option<Vec<String>>, Query), ("territory" = Option<String>, Query), ("ownerUserId" = Option<String>, Query),
           ("businessType" = Option<String>, Query), ("q" = Option<String>, Query), ("includeDeleted" = Option<bool>, Query)),
    responses((status = 200, description = "A page of leads, with a weak ETag", body = dto::schema::LeadPage), (status = 304), (status = 400, body = Problem), (status = 401, body = Problem)))]
pub async fn list_leads(
    req: HttpRequest,
    state: web::Data<AppState>,
    caller: Caller,
) -> Result<HttpResponse> {
    let q = http::lead_query(req.query_string())?;
    let page = state.leads.list(&caller.0, &q).await?;
    let total_pages = page.total.div_ceil(u64::from(q.size));
    let body = json!({
        "data": page.items.iter().map(|l| dto::lead_json(l, state.leads.policy())).collect::<Vec<_>>(),
        "page": q.page,
        "size": q.size,
        "total": page.total,
        "totalPages": total_pages,
    });
    let bytes = serde_json::to_vec(&body).map_err(|e| Problem::internal(&e))?;
    let etag = http::weak_etag(&bytes);
    if http::if_none_match(&req, &etag) {
        return Ok(HttpResponse::NotModified()
            .insert_header((header::ETAG, etag))
            .finish());
    }
    Ok(HttpResponse::Ok()
        .insert_header((header::ETAG, etag))
        .content_type("application/json")
        .body(bytes))
}

/// `POST /api/leads`
#[utoipa::path(post, path = "/api/leads", tag = "leads", security(("bearer" = [])),
    params(("Idempotency-Key" = Option<String>, Header, description = "Replays the first response for 24 h")),
    request_body(content = dto::schema::LeadCreate, description = "Lead fields (SPEC 4.1)"),
    responses((status = 201, description = "The lead, with Location and ETag", body = dto::schema::Lead), (status = 400, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem), (status = 409, body = Problem), (status = 413, body = Problem), (status = 422, body = Problem)))]
pub async fn create_lead(
    req: HttpRequest,
    state: web::Data<AppState>,
    caller: Caller,
    payload: web::Payload,
) -> Result<HttpResponse> {
    let body = http::read_body(&req, payload).await?;
    require_json(&req, false)?;
    let parsed = dto::create_body(&body)?;
    let idempotency = match req.headers().get("idempotency-key") {
        None => None,
        Some(v) => {
            let key = v
                .to_str()
                .ok()
                .map(str::trim)
                .filter(|k| !k.is_empty() && k.len() <= 255);
            Some((
                key.ok_or_else(|| {
                    Problem::bad_field("Idempotency-Key", "must be 1-255 visible characters")
                })?
                .to_owned(),
                http::body_hash(&body),
            ))
        }
    };
    let (lead, _replayed) = state
        .leads
        .create(
            &caller.0,
            CreateLead {
                data: parsed.data,
                registered_at: parsed.registered_at,
                idempotency,
            },
        )
        .await?;
    let mut resp = lead_response(StatusCode::CREATED, &state, &lead);
    resp.headers_mut().insert(
        header::LOCATION,
        header::HeaderValue::from_str(&format!("/api/leads/{}", lead.id))
            .map_err(|e| Problem::internal(&e))?,
    );
    Ok(resp)
}

fn id_of(raw: &str) -> Result<Uuid> {
    dto::path_id(raw)
}

/// `GET /api/leads/{id}`
#[utoipa::path(get, path = "/api/leads/{id}", tag = "leads", security(("bearer" = [])), params(("id" = Uuid, Path)),
    responses((status = 200, description = "The lead, with a strong ETag", body = dto::schema::Lead), (status = 304), (status = 400, body = Problem), (status = 401, body = Problem), (status = 404, body = Problem)))]
pub async fn get_lead(
    req: HttpRequest,
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<String>,
) -> Result<HttpResponse> {
    let id = id_of(&id)?;
    let lead = state.leads.get(&caller.0, id).await?;
    let etag = lead_etag(lead.id, lead.version);
    if http::if_none_match(&req, &etag) {
        return Ok(HttpResponse::NotModified()
            .insert_header((header::ETAG, etag))
            .finish());
    }
    Ok(lead_response(StatusCode::OK, &state, &lead))
}

/// `PATCH /api/leads/{id}` (JSON merge patch)
#[utoipa::path(patch, path = "/api/leads/{id}", tag = "leads", security(("bearer" = [])),
    params(("id" = Uuid, Path), ("If-Match" = String, Header)),
    request_body(content((dto::schema::LeadPatch = "application/merge-patch+json"), (dto::schema::LeadPatch = "application/json"))),
    responses((status = 200, description = "The updated lead and its new ETag", body = dto::schema::Lead), (status = 400, body = Problem), (status = 401, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem), (status = 412, body = Problem), (status = 422, body = Problem), (status = 428, body = Problem)))]
pub async fn patch_lead(
    req: HttpRequest,
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse> {
    let body = http::read_body(&req, payload).await?;
    let id = id_of(&id)?;
    require_json(&req, true)?;
    let patch = dto::patch_body(&body)?;
    let expected = http::required_if_match(&req, id)?;
    let lead = state.leads.update(&caller.0, id, expected, patch).await?;
    Ok(lead_response(StatusCode::OK, &state, &lead))
}

/// `DELETE /api/leads/{id}`
#[utoipa::path(delete, path = "/api/leads/{id}", tag = "leads", security(("bearer" = [])), params(("id" = Uuid, Path), ("If-Match" = String, Header)),
    responses((status = 204), (status = 401, body = Problem), (status = 404, body = Problem), (status = 412, body = Problem), (status = 428, body = Problem)))]
pub async fn delete_lead(
    req: HttpRequest,
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<String>,
) -> Result<HttpResponse> {
    let id = id_of(&id)?;
    let expected = http::required_if_match(&req, id)?;
    state.leads.delete(&caller.0, id, expected).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// `GET /api/leads/{id}/activities`
#[utoipa::path(get, path = "/api/leads/{id}/activities", tag = "activities", security(("bearer" = [])),
    params(("id" = Uuid, Path), ("page" = Option<u32>, Query), ("size" = Option<u32>, Query)),
    responses((status = 200, description = "The timeline, newest first", body = dto::schema::ActivityPage), (status = 400, body = Problem), (status = 401, body = Problem), (status = 404, body = Problem)))]
pub async fn list_activities(
    req: HttpRequest,
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<String>,
) -> Result<HttpResponse> {
    let id = id_of(&id)?;
    let (page, size) = http::paging(req.query_string())?;
    let p = state.leads.activities(&caller.0, id, page, size).await?;
    Ok(HttpResponse::Ok().json(json!({
        "data": p.items.iter().map(dto::activity_json).collect::<Vec<_>>(),
        "page": page, "size": size, "total": p.total, "totalPages": p.total.div_ceil(u64::from(size)),
    })))
}

/// `POST /api/leads/{id}/activities`
#[utoipa::path(post, path = "/api/leads/{id}/activities", tag = "activities", security(("bearer" = [])), params(("id" = Uuid, Path)),
    request_body(content = dto::schema::ActivityCreate),
    responses((status = 201, description = "The activity; ETag is the lead's new one", body = dto::schema::Activity), (status = 400, body = Problem), (status = 401, body = Problem), (status = 404, body = Problem), (status = 422, body = Problem)))]
pub async fn log_activity(
    req: HttpRequest,
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse> {
    let body = http::read_body(&req, payload).await?;
    let id = id_of(&id)?;
    require_json(&req, false)?;
    let cmd = dto::activity_body(&body)?;
    let (activity, lead) = state.leads.log_activity(&caller.0, id, cmd).await?;
    Ok(HttpResponse::Created()
        .insert_header((header::ETAG, lead_etag(lead.id, lead.version)))
        .json(dto::activity_json(&activity)))
}

/// `PUT /api/leads/{id}/owner`
#[utoipa::path(put, path = "/api/leads/{id}/owner", tag = "leads", security(("bearer" = [])), params(("id" = Uuid, Path)),
    request_body(content = dto::schema::OwnerChange),
    responses((status = 200, description = "The updated lead and its ETag", body = dto::schema::Lead), (status = 400, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem), (status = 412, body = Problem), (status = 422, body = Problem)))]
pub async fn reassign(
    req: HttpRequest,
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse> {
    let body = http::read_body(&req, payload).await?;
    let id = id_of(&id)?;
    require_json(&req, false)?;
    let owner = dto::owner_body(&body)?;
    let lead = state
        .leads
        .reassign(&caller.0, id, http::optional_if_match(&req, id), owner)
        .await?;
    Ok(lead_response(StatusCode::OK, &state, &lead))
}

/// `POST /api/leads/{id}/clock/stop`
#[utoipa::path(post, path = "/api/leads/{id}/clock/stop", tag = "leads", security(("bearer" = [])), params(("id" = Uuid, Path)),
    request_body(content = dto::schema::ClockStop),
    responses((status = 200, description = "The updated lead and its ETag", body = dto::schema::Lead), (status = 400, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem), (status = 412, body = Problem), (status = 422, body = Problem)))]
pub async fn stop_clock(
    req: HttpRequest,
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse> {
    let body = http::read_body(&req, payload).await?;
    let id = id_of(&id)?;
    require_json(&req, false)?;
    let reason = dto::reason_body(&body)?;
    let lead = state
        .leads
        .stop_clock(&caller.0, id, http::optional_if_match(&req, id), &reason)
        .await?;
    Ok(lead_response(StatusCode::OK, &state, &lead))
}

/// `POST /api/leads/{id}/clock/resume`
#[utoipa::path(post, path = "/api/leads/{id}/clock/resume", tag = "leads", security(("bearer" = [])), params(("id" = Uuid, Path)),
    responses((status = 200, description = "The updated lead and its ETag", body = dto::schema::Lead), (status = 400, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem), (status = 412, body = Problem)))]
pub async fn resume_clock(
    req: HttpRequest,
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<String>,
) -> Result<HttpResponse> {
    let id = id_of(&id)?;
    let lead = state
        .leads
        .resume_clock(&caller.0, id, http::optional_if_match(&req, id))
        .await?;
    Ok(lead_response(StatusCode::OK, &state, &lead))
}

/// `GET /api/openapi.json`
#[utoipa::path(get, path = "/api/openapi.json", tag = "meta", responses((status = 200, description = "This document")))]
pub async fn openapi() -> HttpResponse {
    HttpResponse::Ok().json(crate::openapi::document())
}

/// `GET /health/live`
#[utoipa::path(get, path = "/health/live", tag = "meta", responses((status = 200)))]
pub async fn live() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "UP"}))
}

/// `GET /health/ready`: 503 while the database is unreachable or this replica's event listener
/// is down (not checked when `FRESHPLAN_EVENTS` is off).
#[utoipa::path(get, path = "/health/ready", tag = "meta", responses(
    (status = 200, description = "`{status, database, eventListener}`: `UP` (the listener `OFF` when the pipeline is switched off)"),
    (status = 503, description = "The database or the event listener is down", body = Problem)))]
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
    let up = |ok: bool| if ok { "UP" } else { "DOWN" };
    match down {
        None => HttpResponse::Ok().json(json!({
            "status": "UP",
            "database": "UP",
            "eventListener": listener.map_or("OFF", up),
        })),
        Some(detail) => {
            let mut problem = Problem::new(StatusCode::SERVICE_UNAVAILABLE, "not-ready", detail);
            let mut extra = serde_json::Map::new();
            extra.insert("database".into(), up(database).into());
            extra.insert("eventListener".into(), listener.map_or("OFF", up).into());
            problem.extra = Some(extra);
            HttpResponse::ServiceUnavailable()
                .content_type("application/problem+json")
                .json(problem)
        }
    }
}
