//! `/unsubscribe?token=…` (SPEC §6): the link at the foot of every follow-up mail and in its
//! `List-Unsubscribe` header. No login — the HMAC-signed token is the authority.
//!
//! - `POST` unsubscribes: it withdraws the lead's email consent (the domain logs `UNSUBSCRIBED`
//!   and writes the event) and the lead's mails that have not gone out yet, then answers a short
//!   German confirmation page. It is what a mailbox provider sends for RFC 8058 one-click (the
//!   mails carry `List-Unsubscribe-Post: List-Unsubscribe=One-Click`) and what the button of the
//!   `GET` page sends.
//! - `GET` changes nothing (docs/decisions/0007, update): link scanners, virus checkers and
//!   prefetchers follow every link in a mail, and must not unsubscribe the reader. It verifies
//!   the token and answers a page whose button posts to the same URL.
//!
//! The `POST` body is never read: RFC 8058 lets the provider send `List-Unsubscribe=One-Click`
//! as `application/x-www-form-urlencoded` or `multipart/form-data`, a browser's form sends the
//! former, and nothing in a body could change what the token in the URL already decides. So
//! an empty body, another media type or garbage is accepted and ignored — never a 4xx that
//! would leave the reader subscribed, never a 5xx.
//!
//! Idempotent: a second `POST` answers the same page and changes nothing — the consent is
//! already withdrawn, so the domain logs no second `UNSUBSCRIBED` and writes no event, and there
//! is no queued mail left to withdraw. A malformed or forged token is 400 for both methods (an
//! HTML page, or `application/problem+json` for a client that asks for JSON), never a 5xx.
//!
//! The pages leak nothing about the lead (no name, no address): whoever holds the link learns
//! only that it worked. They are served with `Referrer-Policy: no-referrer` and `no-store`, since
//! their URL carries the token, and `noindex`.

use actix_web::http::{StatusCode, header};
use actix_web::{HttpRequest, HttpResponse, web};

use freshplan_followup::unsubscribe::UnsubscribeToken;
use freshplan_kernel::{Clock as _, SystemClock};
use freshplan_leads::LeadError;
use uuid::Uuid;

use crate::AppState;
use crate::api::common::not_configured;
use crate::problem::Problem;

/// What the outbox records as `lastError` of a mail withdrawn by an unsubscribe.
pub const WITHDRAWN: &str = "withdrawn: the recipient unsubscribed";

/// Registers `GET` and `POST /unsubscribe`.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/unsubscribe", web::get().to(unsubscribe))
        .route("/unsubscribe", web::post().to(unsubscribe_one_click));
}

/// The pages' policy: no script, no resource but the inline style, and the button's form may
/// post only to this service (`'self'`: the origin the reader reached the page under, which the
/// form's relative action keeps, path prefix included).
const CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; \
                   form-action 'self'; frame-ancestors 'none'";

/// A page: `title`, the `message` (HTML, written here) and, when given, a form below it.
fn page(status: StatusCode, title: &str, message: &str, form: Option<&str>) -> HttpResponse {
    let form = form.unwrap_or_default();
    let html = format!(
        "<!DOCTYPE html>\n<html lang=\"de\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <meta name=\"robots\" content=\"noindex\">\n<title>{title} – FreshPlan</title>\n\
         <style>body{{font-family:system-ui,sans-serif;max-width:36rem;margin:4rem auto;\
         padding:0 1rem;color:#222;line-height:1.5}}h1{{font-size:1.5rem}}\
         button{{font:inherit;padding:.5rem 1.25rem;cursor:pointer}}</style>\n\
         </head>\n<body>\n<h1>{title}</h1>\n<p>{message}</p>\n{form}<p>FreshPlan</p>\n</body>\n\
         </html>\n"
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

/// `text` for an HTML attribute value or text.
fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The button of the `GET` page: a form posting what a one-click mail client posts, to the
/// page's own URL. The action is relative (`unsubscribe?token=…` resolves against
/// `…/unsubscribe?token=…`), so it works under any public origin or path prefix.
fn one_click_form(token: &str) -> String {
    let query: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("token", token)
        .finish();
    format!(
        "<form method=\"post\" action=\"{}\">\n\
         <input type=\"hidden\" name=\"List-Unsubscribe\" value=\"One-Click\">\n\
         <p><button type=\"submit\">Abmelden</button></p>\n</form>\n",
        escape_html(&format!("unsubscribe?{query}"))
    )
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
            None,
        )
    } else {
        page(
            status,
            "Abmeldung gerade nicht möglich",
            "Ihre Abmeldung konnte gerade nicht verarbeitet werden. Bitte versuchen Sie es in \
             einigen Minuten erneut.",
            None,
        )
    }
}

/// The token of the request's query, verified: the lead it was signed for and the token as
/// given; otherwise the refusal to answer (400 for a missing, repeated, malformed or forged
/// token, 503 without a signing secret).
fn verified(req: &HttpRequest, state: &AppState) -> Result<(Uuid, String), HttpResponse> {
    let mut token = None;
    for (k, v) in form_urlencoded::parse(req.query_string().as_bytes()) {
        if k == "token" {
            if token.is_some() {
                return Err(refuse(
                    req,
                    Problem::bad_field("token", "given more than once"),
                ));
            }
            token = Some(v.into_owned());
        }
        // Other parameters (e.g. tracking added by a mail client) are ignored: the link must
        // keep working.
    }
    let Some(token) = token else {
        return Err(refuse(req, Problem::bad_field("token", "is required")));
    };
    let Some(secret) = state.followups.unsubscribe_secret() else {
        return Err(refuse(req, not_configured()));
    };
    match UnsubscribeToken::verify(&token, secret) {
        Ok(lead_id) => Ok((lead_id, token)),
        Err(e) => {
            tracing::info!(error = %e, "unsubscribe link refused");
            Err(refuse(
                req,
                Problem::bad_field("token", "is not a valid unsubscribe token"),
            ))
        }
    }
}

/// `GET /unsubscribe`
#[utoipa::path(get, path = "/unsubscribe", operation_id = "unsubscribe", tag = "followups",
    description = "The page of the mail's unsubscribe link. It changes nothing (link scanners and prefetchers follow links): it verifies the token and shows a button whose form posts `List-Unsubscribe=One-Click` to the same URL (`POST /unsubscribe`).",
    params(("token" = String, Query, description = "The signed token of the mail's unsubscribe link")),
    responses(
        (status = 200, description = "A German page asking to confirm, with a button (a form posting to `unsubscribe?token=…`, the same URL); nothing is changed", content_type = "text/html"),
        (status = 400, description = "Missing, malformed or forged token: an HTML page, or a problem when the client accepts only JSON", content((String = "text/html"), (Problem = "application/problem+json"))),
        (status = 503, response = crate::openapi::Unavailable)))]
pub async fn unsubscribe(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let (_, token) = match verified(&req, &state) {
        Ok(verified) => verified,
        Err(refused) => return refused,
    };
    page(
        StatusCode::OK,
        "Abmelden?",
        "Möchten Sie keine weiteren automatischen E-Mails von FreshPlan erhalten? Dann \
         bestätigen Sie Ihre Abmeldung bitte mit dem Knopf.",
        Some(&one_click_form(&token)),
    )
}

/// `POST /unsubscribe`
#[utoipa::path(post, path = "/unsubscribe", operation_id = "unsubscribe_one_click", tag = "followups",
    description = "Unsubscribes (RFC 8058 one-click, and the button of `GET /unsubscribe`): withdraws the lead's email consent (`UNSUBSCRIBED` on its timeline) and its mails not sent yet. Idempotent: a repeated request answers the same page and changes nothing. The token in the URL decides; the body is never read.",
    params(("token" = String, Query, description = "The signed token of the mail's unsubscribe link")),
    request_body(
        description = "Optional and ignored: what RFC 8058 mail clients and the page's form send (`List-Unsubscribe=One-Click`). An empty body, another media type or any other content is accepted and ignored just the same.",
        content(
            (Option<Object> = "application/x-www-form-urlencoded", example = json!({"List-Unsubscribe": "One-Click"})),
            (Option<Object> = "multipart/form-data", example = json!({"List-Unsubscribe": "One-Click"})))),
    responses(
        (status = 200, description = "A German confirmation page; repeated requests answer the same and change nothing", content_type = "text/html"),
        (status = 400, description = "Missing, malformed or forged token: an HTML page, or a problem when the client accepts only JSON", content((String = "text/html"), (Problem = "application/problem+json"))),
        (status = 503, response = crate::openapi::Unavailable)))]
pub async fn unsubscribe_one_click(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let (lead_id, _) = match verified(&req, &state) {
        Ok(verified) => verified,
        Err(refused) => return refused,
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
        None,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_form_posts_the_one_click_body_to_the_escaped_same_url() {
        let form = one_click_form("a.b");
        assert!(form.contains("<form method=\"post\" action=\"unsubscribe?token=a.b\">"));
        assert!(form.contains("name=\"List-Unsubscribe\" value=\"One-Click\""));
        // Whatever a token holds, it stays inside the attribute.
        let form = one_click_form("x\"><script>&y=1");
        assert!(
            form.contains("action=\"unsubscribe?token=x%22%3E%3Cscript%3E%26y%3D1\""),
            "{form}"
        );
        assert_eq!(
            escape_html("<a href='x'>&\"</a>"),
            "&lt;a href=&#39;x&#39;&gt;&amp;&quot;&lt;/a&gt;"
        );
    }
}
