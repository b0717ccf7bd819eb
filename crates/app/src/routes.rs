//! The route table (SPEC §9): every (method, path) the service serves, the registration of the
//! resource modules' routes, and the answer for everything else — 405 with `Allow` for a
//! method a path does not serve, 404 for a path that does not exist.

use actix_web::http::{Method, header};
use actix_web::{HttpRequest, HttpResponse, web};

use crate::api;
use crate::problem::{MEDIA_TYPE, Problem};

/// Every route, as (method, path) in OpenAPI form; the route table and the OpenAPI document are
/// both checked against it by the tests.
pub const ROUTES: &[(&str, &str)] = &[
    ("get", "/api/territories"),
    ("get", "/api/territories/{id}"),
    ("get", "/api/leads"),
    ("post", "/api/leads"),
    ("post", "/api/leads/imports"),
    ("get", "/api/leads/imports/{id}"),
    ("get", "/api/leads/imports/{id}/rows"),
    ("get", "/api/leads/{id}"),
    ("patch", "/api/leads/{id}"),
    ("delete", "/api/leads/{id}"),
    ("get", "/api/leads/{id}/activities"),
    ("post", "/api/leads/{id}/activities"),
    ("put", "/api/leads/{id}/owner"),
    ("post", "/api/leads/{id}/clock/stop"),
    ("post", "/api/leads/{id}/clock/resume"),
    ("get", "/api/leads/{id}/personal-data"),
    ("post", "/api/leads/{id}/erasure"),
    ("get", "/api/audit"),
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
    ("post", "/unsubscribe"),
    ("get", "/api/openapi.json"),
    ("get", "/health/live"),
    ("get", "/health/ready"),
    ("get", "/metrics"),
    ("get", "/cockpit"),
];

/// Registers the routes of the resource modules in [`crate::api`] and the service's own.
pub fn configure(cfg: &mut web::ServiceConfig) {
    api::configure(cfg);
    cfg.route("/api/openapi.json", web::get().to(crate::openapi::openapi))
        .route("/metrics", web::get().to(crate::observe::metrics));
}

/// Whether a request path matches a route pattern (`{name}` matches one non-empty segment).
fn matches(pattern: &str, path: &str) -> bool {
    let mut p = pattern.split('/');
    let mut q = path.split('/');
    loop {
        match (p.next(), q.next()) {
            (None, None) => return true,
            (Some(a), Some(b)) if a.starts_with('{') && a.ends_with('}') => {
                if b.is_empty() {
                    return false;
                }
            }
            (Some(a), Some(b)) if a == b => {}
            _ => return false,
        }
    }
}

/// The methods a path is served with, in `Allow` form (upper case, sorted), or `None` when no
/// route has this path.
pub fn allowed_methods(path: &str) -> Option<Vec<String>> {
    // A literal segment wins over a parameter (`/api/leads/imports` is not the lead `imports`):
    // only the matching patterns with the fewest parameters count.
    let params = |pattern: &str| pattern.matches('{').count();
    let fewest = ROUTES
        .iter()
        .filter(|(_, pattern)| matches(pattern, path))
        .map(|(_, pattern)| params(pattern))
        .min()?;
    let mut methods: Vec<String> = ROUTES
        .iter()
        .filter(|(_, pattern)| matches(pattern, path) && params(pattern) == fewest)
        .map(|(m, _)| m.to_ascii_uppercase())
        .collect();
    if methods.is_empty() {
        return None;
    }
    methods.sort();
    methods.dedup();
    Some(methods)
}

/// The default service: 405 with `Allow` when the path exists with other methods, else 404;
/// both as problems.
pub async fn fallback(req: HttpRequest) -> HttpResponse {
    match allowed_methods(req.path()) {
        Some(methods) if req.method() != Method::HEAD || !methods.contains(&"GET".to_owned()) => {
            let allow = methods.join(", ");
            let problem = Problem::new(
                actix_web::http::StatusCode::METHOD_NOT_ALLOWED,
                "method-not-allowed",
                format!("{} is not served here; allowed: {allow}.", req.method()),
            );
            HttpResponse::MethodNotAllowed()
                .insert_header((header::ALLOW, allow))
                .content_type(MEDIA_TYPE)
                .json(&problem.0)
        }
        _ => HttpResponse::NotFound()
            .content_type(MEDIA_TYPE)
            .json(&Problem::not_found("No such resource.").0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allow_lists_the_methods_of_a_path() {
        assert_eq!(
            allowed_methods("/api/leads/0190-x").unwrap(),
            ["DELETE", "GET", "PATCH"]
        );
        assert_eq!(allowed_methods("/api/leads").unwrap(), ["GET", "POST"]);
        assert_eq!(allowed_methods("/api/leads/imports").unwrap(), ["POST"]);
        assert_eq!(
            allowed_methods("/api/leads/imports/0190-x/rows").unwrap(),
            ["GET"]
        );
        assert_eq!(
            allowed_methods("/api/leads/x/clock/resume").unwrap(),
            ["POST"]
        );
        assert!(allowed_methods("/api/leads/").is_none());
        assert!(allowed_methods("/api/nope").is_none());
        assert!(allowed_methods("/api/leads/x/y").is_none());
    }
}
