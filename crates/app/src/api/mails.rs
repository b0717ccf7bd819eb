//! The mail outbox for admins (SPEC §6): `GET /api/mails`, `GET /api/mails/{id}`,
//! `POST /api/mails/{id}/requeue`. Delivery is [`crate::mails`]' dispatcher.

use actix_web::http::{StatusCode, header};
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize as _;
use serde::de::IntoDeserializer as _;
use uuid::Uuid;

use freshplan_api::followups::Stage;
use freshplan_api::mails::{Mail, MailPage, MailStatus, MailSummary};
use freshplan_mail_smtp::{MailCursor, MailQuery, MailRecord, MailStatus as Delivery};

use crate::AppState;
use crate::api::common::{Result, limit, params};
use crate::auth::Caller;
use crate::problem::Problem;

/// `limit` of `GET /api/mails` when none is given.
pub const DEFAULT_MAILS: u32 = 50;
/// The largest `limit` of `GET /api/mails`.
pub const MAX_MAILS: u32 = 500;

/// Registers the three mail routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/api/mails", web::get().to(list))
        .route("/api/mails/{id}", web::get().to(get))
        .route("/api/mails/{id}/requeue", web::post().to(requeue));
}

fn status(s: Delivery) -> MailStatus {
    match s {
        Delivery::Queued => MailStatus::Queued,
        Delivery::Sent => MailStatus::Sent,
        Delivery::Dead => MailStatus::Dead,
    }
}

fn delivery(s: MailStatus) -> Delivery {
    match s {
        MailStatus::Queued => Delivery::Queued,
        MailStatus::Sent => Delivery::Sent,
        MailStatus::Dead => Delivery::Dead,
    }
}

fn stage(s: freshplan_followup::Stage) -> Stage {
    match s {
        freshplan_followup::Stage::T3 => Stage::T3,
        freshplan_followup::Stage::T7 => Stage::T7,
    }
}

/// The body of a listed mail.
fn summary(m: freshplan_mail_smtp::MailSummary) -> MailSummary {
    MailSummary {
        id: m.id,
        lead_id: m.lead_id,
        territory: m.territory.to_string(),
        stage: stage(m.stage),
        recipient: m.recipient,
        subject: m.subject,
        status: status(m.status),
        attempts: m.attempts,
        next_attempt_at: m.next_attempt_at,
        last_error: m.last_error,
        created_at: m.created_at,
        sent_at: m.sent_at,
    }
}

/// The body of one mail.
fn mail(m: MailRecord) -> Mail {
    let MailSummary {
        id,
        lead_id,
        territory,
        stage,
        recipient,
        subject,
        status,
        attempts,
        next_attempt_at,
        last_error,
        created_at,
        sent_at,
    } = summary(m.summary);
    Mail {
        id,
        lead_id,
        territory,
        stage,
        recipient,
        subject,
        status,
        attempts,
        next_attempt_at,
        last_error,
        created_at,
        sent_at,
        html: m.html,
        text: m.text,
        unsubscribe_url: m.unsubscribe_url,
    }
}

fn require_admin(caller: &Caller) -> Result<()> {
    if caller.0.has_role(freshplan_kernel::Role::Admin) {
        Ok(())
    } else {
        Err(Problem::forbidden("The mail outbox is for admins."))
    }
}

fn mail_id(raw: &str) -> Result<Uuid> {
    crate::http::path_id(raw)
}

fn no_mail() -> Problem {
    Problem::not_found("No mail with this id.")
}

fn ok(body: &impl serde::Serialize) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(body)
}

/// `GET /api/mails`
#[utoipa::path(get, path = "/api/mails", operation_id = "list_mails", tag = "mails", security(("bearer" = [])),
    params(
        ("status" = Option<MailStatus>, Query, description = "Only mails in this state"),
        ("leadId" = Option<Uuid>, Query, description = "Only the mails of this lead"),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 500, description = "Mails per page (default 50)"),
        ("after" = Option<String>, Query, pattern = "^-?(0|[1-9][0-9]{0,15})\\.[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", description = "`nextCursor` of the previous page")),
    responses(
        (status = 200, description = "Mails newest first, without bodies", body = MailPage),
        (status = 400, response = crate::openapi::BadRequest), (status = 401, response = crate::openapi::Unauthorized), (status = 403, response = crate::openapi::Forbidden)))]
pub async fn list(
    req: HttpRequest,
    state: web::Data<AppState>,
    caller: Caller,
) -> Result<HttpResponse> {
    require_admin(&caller)?;
    let mut query = MailQuery {
        limit: DEFAULT_MAILS,
        ..MailQuery::default()
    };
    for (k, v) in params(req.query_string(), &["status", "leadId", "limit", "after"])? {
        match k.as_str() {
            "status" => {
                let parsed = MailStatus::deserialize(v.as_str().into_deserializer()).map_err(
                    |_: serde::de::value::Error| {
                        Problem::bad_field("status", "must be QUEUED, SENT or DEAD")
                    },
                )?;
                query.status = Some(delivery(parsed));
            }
            "leadId" => {
                query.lead_id = Some(
                    Uuid::parse_str(&v)
                        .map_err(|_| Problem::bad_field("leadId", "must be a UUID"))?,
                );
            }
            "limit" => query.limit = limit("limit", &v, MAX_MAILS)?,
            _ => {
                query.after =
                    Some(v.parse::<MailCursor>().map_err(|_| {
                        Problem::bad_field("after", "not a cursor this API returned")
                    })?);
            }
        }
    }
    let page = state
        .followups
        .outbox()
        .list(&caller.0, &query)
        .await
        .map_err(|e| Problem::internal(&e))?;
    Ok(ok(&MailPage {
        mails: page.mails.into_iter().map(summary).collect(),
        next_cursor: page.next.map(|c| c.to_string()),
    }))
}

/// `GET /api/mails/{id}`
#[utoipa::path(get, path = "/api/mails/{id}", operation_id = "get_mail", tag = "mails", security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses(
        (status = 200, description = "The mail with its bodies", body = Mail),
        (status = 400, response = crate::openapi::BadRequest), (status = 401, response = crate::openapi::Unauthorized), (status = 403, response = crate::openapi::Forbidden), (status = 404, response = crate::openapi::NotFound)))]
pub async fn get(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<String>,
) -> Result<HttpResponse> {
    require_admin(&caller)?;
    let id = mail_id(&id)?;
    let found = state
        .followups
        .outbox()
        .get(&caller.0, id)
        .await
        .map_err(|e| Problem::internal(&e))?
        .ok_or_else(no_mail)?;
    Ok(ok(&mail(found)))
}

/// `POST /api/mails/{id}/requeue`
#[utoipa::path(post, path = "/api/mails/{id}/requeue", operation_id = "requeue_mail", tag = "mails", security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses(
        (status = 200, description = "The mail, QUEUED again with its attempts reset and due now", body = Mail),
        (status = 400, response = crate::openapi::BadRequest), (status = 401, response = crate::openapi::Unauthorized), (status = 403, response = crate::openapi::Forbidden), (status = 404, response = crate::openapi::NotFound),
        (status = 409, description = "The mail is not DEAD, its lead has withdrawn consent (`no-consent`), or retention removed its bodies", body = Problem)))]
pub async fn requeue(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<String>,
) -> Result<HttpResponse> {
    require_admin(&caller)?;
    let id = mail_id(&id)?;
    let outbox = state.followups.outbox();
    let internal = |e: freshplan_mail_smtp::MailError| Problem::internal(&e);
    let found = outbox
        .get(&caller.0, id)
        .await
        .map_err(internal)?
        .ok_or_else(no_mail)?;
    let not_dead = |status: Delivery| {
        Problem::new(
            StatusCode::CONFLICT,
            "mail-not-dead",
            format!("Only DEAD mails can be requeued; this one is {status}."),
        )
    };
    if found.summary.status != Delivery::Dead {
        return Err(not_dead(found.summary.status));
    }
    // A mail withdrawn by an unsubscribe (or whose lead is gone) must never go out after all.
    let consent = match state.leads.get(&caller.0, found.summary.lead_id).await {
        Ok(lead) => lead.data.email_consent,
        Err(freshplan_leads::LeadError::NotFound) => false,
        Err(e) => return Err(e.into()),
    };
    if !consent {
        return Err(Problem::new(
            StatusCode::CONFLICT,
            "no-consent",
            "The lead has withdrawn its email consent (or was deleted); the mail stays DEAD.",
        ));
    }
    if !outbox
        .requeue(&caller.0, id, state.followups.clock().now())
        .await
        .map_err(internal)?
    {
        // Its bodies were removed by retention (SPEC §13), or it changed between the read and
        // the update (another admin requeued it).
        return Err(Problem::new(
            StatusCode::CONFLICT,
            "mail-not-requeueable",
            "The mail is no longer DEAD, or its bodies were removed by retention.",
        ));
    }
    state.followups.wake_dispatcher();
    let requeued = outbox
        .get(&caller.0, id)
        .await
        .map_err(internal)?
        .ok_or_else(no_mail)?;
    Ok(HttpResponse::Ok().json(mail(requeued)))
}
