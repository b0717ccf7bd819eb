//! The mail outbox (SPEC §6): this replica's dispatcher loop, and the admin API over the outbox
//! (`GET /api/mails`, `GET /api/mails/{id}`, `POST /api/mails/{id}/requeue`).
//!
//! Delivery is `freshplan-mail-smtp`'s (claim with a lease, send, record; retries with backoff,
//! `DEAD` after the last attempt); what this module adds is *when*: at start, whenever a follow-up
//! run queued mails or an admin requeued one (a wake-up), and every `FRESHPLAN_MAIL_POLL` for
//! retries. Every replica with `FRESHPLAN_SMTP_URL` runs one; claims skip each other's mails.

use std::sync::Arc;
use std::time::Duration;

use actix_web::http::{StatusCode, header};
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Serialize;
use tokio::sync::{Notify, watch};
use uuid::Uuid;

use freshplan_mail_smtp::{MailCursor, MailQuery, MailStatus, MailSummary};

use crate::AppState;
use crate::auth::Caller;
use crate::followups::{MailDispatcher, limit, params};
use crate::problem::Problem;
use crate::scheduler::closed;

type Result<T> = std::result::Result<T, Problem>;

/// Batches per drain (each up to the dispatcher's batch size).
const DRAIN_BATCHES: u32 = 100;

/// `limit` of `GET /api/mails` when none is given.
pub const DEFAULT_MAILS: u32 = 50;
/// The largest `limit` of `GET /api/mails`.
pub const MAX_MAILS: u32 = 500;

/// The dispatcher loop of this replica: drains the outbox, then waits for a wake-up, the poll
/// interval or `closing` (a batch in flight finishes first).
pub async fn dispatch(
    dispatcher: MailDispatcher,
    wake: Arc<Notify>,
    poll: Duration,
    mut closing: watch::Receiver<bool>,
) {
    loop {
        if *closing.borrow() {
            return;
        }
        match dispatcher.drain(DRAIN_BATCHES).await {
            Ok(report) if report.claimed > 0 || report.dead > 0 => tracing::info!(
                claimed = report.claimed,
                sent = report.sent,
                retried = report.retried,
                dead = report.dead,
                "mail dispatch"
            ),
            Ok(_) => {}
            Err(e) => {
                tracing::error!(error = %e, "mail dispatch failed; retrying at the next poll")
            }
        }
        tokio::select! {
            biased;
            () = closed(&mut closing) => return,
            () = wake.notified() => {}
            () = tokio::time::sleep(poll) => {}
        }
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

/// The body of `GET /api/mails`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Page {
    mails: Vec<MailSummary>,
    next_cursor: Option<String>,
}

/// `GET /api/mails`
#[utoipa::path(get, path = "/api/mails", tag = "mails", security(("bearer" = [])),
    params(
        ("status" = Option<String>, Query, description = "QUEUED, SENT or DEAD"),
        ("leadId" = Option<Uuid>, Query, description = "Only the mails of this lead"),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 500, description = "Mails per page (default 50)"),
        ("after" = Option<String>, Query, description = "`nextCursor` of the previous page")),
    responses(
        (status = 200, description = "Mails newest first, without bodies", body = crate::followups::schema::MailPage),
        (status = 400, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem)))]
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
                query.status =
                    Some(v.parse::<MailStatus>().map_err(|_| {
                        Problem::bad_field("status", "must be QUEUED, SENT or DEAD")
                    })?);
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
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(Page {
            mails: page.mails,
            next_cursor: page.next.map(|c| c.to_string()),
        }))
}

/// `GET /api/mails/{id}`
#[utoipa::path(get, path = "/api/mails/{id}", tag = "mails", security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses(
        (status = 200, description = "The mail with its bodies", body = crate::followups::schema::Mail),
        (status = 400, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem)))]
pub async fn get(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<String>,
) -> Result<HttpResponse> {
    require_admin(&caller)?;
    let id = mail_id(&id)?;
    let mail = state
        .followups
        .outbox()
        .get(&caller.0, id)
        .await
        .map_err(|e| Problem::internal(&e))?
        .ok_or_else(no_mail)?;
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(mail))
}

/// `POST /api/mails/{id}/requeue`
#[utoipa::path(post, path = "/api/mails/{id}/requeue", tag = "mails", security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses(
        (status = 200, description = "The mail, QUEUED again with its attempts reset and due now", body = crate::followups::schema::Mail),
        (status = 400, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem),
        (status = 409, description = "The mail is not DEAD", body = Problem)))]
pub async fn requeue(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<String>,
) -> Result<HttpResponse> {
    require_admin(&caller)?;
    let id = mail_id(&id)?;
    let outbox = state.followups.outbox();
    let internal = |e: freshplan_mail_smtp::MailError| Problem::internal(&e);
    let mail = outbox
        .get(&caller.0, id)
        .await
        .map_err(internal)?
        .ok_or_else(no_mail)?;
    let not_dead = |status: MailStatus| {
        Problem::new(
            StatusCode::CONFLICT,
            "mail-not-dead",
            format!("Only DEAD mails can be requeued; this one is {status}."),
        )
    };
    if mail.summary.status != MailStatus::Dead {
        return Err(not_dead(mail.summary.status));
    }
    // A mail withdrawn by an unsubscribe (or whose lead is gone) must never go out after all.
    let consent = match state.leads.get(&caller.0, mail.summary.lead_id).await {
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
        // Changed between the read and the update (another admin requeued it).
        return Err(not_dead(MailStatus::Queued));
    }
    state.followups.wake_dispatcher();
    let mail = outbox
        .get(&caller.0, id)
        .await
        .map_err(internal)?
        .ok_or_else(no_mail)?;
    Ok(HttpResponse::Ok().json(mail))
}
