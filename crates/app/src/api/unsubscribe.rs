//! `GET /unsubscribe?token=…` (SPEC §6): the link at the foot of every follow-up mail. No login —
//! the HMAC-signed token is the authority. It withdraws the lead's email consent (the domain logs
//! `UNSUBSCRIBED` and writes the event) and withdraws the lead's mails that have not gone out yet,
//! then answers a short German confirmation page.
//!
//! Idempotent (docs/decisions/0007): a second click answers the same page and changes nothing —
//! the consent is already withdrawn, so the domain logs no second `UNSUBSCRIBED` and writes no
//! event, and there is no queued mail left to withdraw. A malformed or forged token is 400 (an
//! HTML page, or `application/problem+json` for a client that asks for JSON), never a 5xx.
//!
//! The page leaks nothing about the lead (no name, no address): whoever holds the link learns
//! only that it worked. It is served with `Referrer-Policy: no-referrer` and `no-store`, since its
//! URL carries the token.

use actix_web::http::{StatusCode, header};
use actix_web::{HttpRequest, HttpResponse, web};

use freshplan_followup::unsubscribe::UnsubscribeToken;
use freshplan_kernel::{Clock as _, SystemClock};
use freshplan_leads::LeadError;

use crate::AppState;
use crate::api::common::not_configured;
use crate::problem::Problem;

/// What the outbox records as `lastError` of a mail withdrawn by an unsubscribe.
pub const WITHDRAWN: &str = "withdrawn: the recipient unsubscribed";

/// Registers `GET /unsubscribe`.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/unsubscribe", web::get().to(unsubscribe));
}

const CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; \
                   form-action 'none'; frame-ancestors 'none'";

fn page(status: StatusCode, title: &str, message: &str) -> HttpResponse {
    let html = format!(
        "<!DOCTYPE html>\n<html lang=\"de\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <meta name=\"robots\" content=\"noindex\">\n<title>{title} – FreshPlan</title>\n\
         <style>body{{font-family:system-ui,sans-serif;max-width:36rem;margin:4rem auto;\
         padding:0 1rem;color:#222;line-height:1.5}}h1{{font-size:1.5rem}}</style>\n\
         </head>\n<body>\n<h1>{title}</h1>\n<p>{message}</p>\n<p>FreshPlan</p>\n</body>\n</html>\n"
    );
    HttpResponse::build(status)
        .insert_header((header::CONTENT_TYPE, "text/html; charset=utf-8"))
        .insert_header((header::CONTENT_SECURITY_POLICY, CSP))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::REFERRER_POLICY, "no-referrer"))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header(("X-Robots-Tag", "noindex"))
        .body(html)
}

/// Whether the client asked for JSON rather than a page (an API client, not a mail reader's
/// browser).
fn wants_json(req: &HttpRequest) -> bool {
    let accept = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    accept.contains("json") && !accept.contains("text/html")
}

/// The refusal: a page for people, a problem for API clients.
fn refuse(req: &HttpRequest, problem: Problem) -> HttpResponse {
    if wants_json(req) {
        return actix_web::ResponseError::error_response(&problem);
    }
    let status = actix_web::ResponseError::status_code(&problem);
    if status == StatusCode::BAD_REQUEST {
        page(
            status,
            "Link ungültig",
            "Dieser Abmeldelink ist ungültig oder unvollständig. Bitte öffnen Sie den Link aus \
             der E-Mail vollständig, oder antworten Sie einfach auf die E-Mail, wenn Sie keine \
             weiteren Nachrichten wünschen.",
        )
    } else {
        page(
            status,
            "Abmeldung gerade nicht möglich",
            "Ihre Abmeldung konnte gerade nicht verarbeitet werden. Bitte versuchen Sie es in \
             einigen Minuten erneut.",
        )
    }
}

/// `GET /unsubscribe`
#[utoipa::path(get, path = "/unsubscribe", operation_id = "unsubscribe", tag = "followups",
    params(("token" = String, Query, description = "The signed token of the mail's unsubscribe link")),
    responses(
        (status = 200, description = "A German confirmation page; repeated clicks answer the same and change nothing", content_type = "text/html"),
        (status = 400, description = "Missing, malformed or forged token: an HTML page, or a problem when the client accepts only JSON", content((String = "text/html"), (Problem = "application/problem+json"))),
        (status = 503, response = crate::openapi::Unavailable)))]
pub async fn unsubscribe(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let mut token = None;
    for (k, v) in form_urlencoded::parse(req.query_string().as_bytes()) {
        if k == "token" {
            if token.is_some() {
                return refuse(&req, Problem::bad_field("token", "given more than once"));
            }
            token = Some(v.into_owned());
        }
        // Other parameters (e.g. tracking added by a mail client) are ignored: the link must
        // keep working.
    }
    let Some(token) = token else {
        return refuse(&req, Problem::bad_field("token", "is required"));
    };
    let Some(secret) = state.followups.unsubscribe_secret() else {
        return refuse(&req, not_configured());
    };
    let lead_id = match UnsubscribeToken::verify(&token, secret) {
        Ok(id) => id,
        Err(e) => {
            tracing::info!(error = %e, "unsubscribe link refused");
            return refuse(
                &req,
                Problem::bad_field("token", "is not a valid unsubscribe token"),
            );
        }
    };
    match state.leads.withdraw_consent(lead_id).await {
        // NotFound: a token we signed for a lead that no longer exists; nothing left to stop.
        Ok(_) | Err(LeadError::NotFound) => {}
        Err(e) => return refuse(&req, Problem::from(e)),
    }
    match state
        .followups
        .outbox()
        .withdraw_for_lead(lead_id, SystemClock.now(), WITHDRAWN)
        .await
    {
        Ok(0) => {}
        Ok(n) => {
            tracing::info!(%lead_id, withdrawn = n, "queued mails withdrawn after unsubscribe")
        }
        Err(e) => return refuse(&req, Problem::internal(&e)),
    }
    tracing::info!(%lead_id, "unsubscribed");
    page(
        StatusCode::OK,
        "Abmeldung bestätigt",
        "Sie erhalten von uns keine weiteren automatischen E-Mails. Ihre Abmeldung wurde \
         gespeichert; Sie müssen nichts weiter tun.",
    )
}
