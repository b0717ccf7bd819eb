//! The `/cockpit` page (SPEC §8): HTML, CSS and JavaScript embedded in the binary, served with
//! a strict content security policy (no inline code, connections to this origin only).

use actix_web::http::header;
use actix_web::{HttpResponse, web};

const HTML: &str = include_str!("../assets/cockpit.html");
const CSS: &str = include_str!("../assets/cockpit.css");
const JS: &str = include_str!("../assets/cockpit.js");

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
                   img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

fn asset(content_type: &'static str, body: &'static str) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, content_type))
        .insert_header((header::CONTENT_SECURITY_POLICY, CSP))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::REFERRER_POLICY, "no-referrer"))
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .body(body)
}

/// `GET /cockpit`: the follow-up cockpit page (open it with `#token=<bearer token>`).
#[utoipa::path(get, path = "/cockpit", tag = "cockpit", responses(
    (status = 200, description = "The cockpit page (HTML); it reads the token from the URL fragment and streams /api/dashboard/followup-stream", content_type = "text/html")))]
pub async fn page() -> HttpResponse {
    asset("text/html; charset=utf-8", HTML)
}

/// Registers `/cockpit` and its two assets.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/cockpit", web::get().to(page))
        .route(
            "/cockpit/cockpit.css",
            web::get().to(|| async { asset("text/css; charset=utf-8", CSS) }),
        )
        .route(
            "/cockpit/cockpit.js",
            web::get().to(|| async { asset("text/javascript; charset=utf-8", JS) }),
        );
}
