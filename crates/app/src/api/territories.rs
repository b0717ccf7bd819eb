//! Territories (SPEC §1): both are readable by every authenticated user.

use actix_web::{HttpResponse, web};

use freshplan_api::territories as api;
use freshplan_territory::Territory;

use crate::auth::Caller;
use crate::problem::Problem;

/// Registers the territory routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/api/territories", web::get().to(list_territories))
        .route("/api/territories/{id}", web::get().to(get_territory));
}

/// The API form of a territory.
pub fn to_api(t: &Territory) -> api::Territory {
    api::Territory {
        id: t.id.as_str().into(),
        name: t.name.into(),
        currency_code: t.currency_code.into(),
        vat_rate: t.vat_rate_percent(),
        language_code: t.language_code.into(),
        time_zone: t.time_zone.into(),
        payment_terms_days: t.payment_terms_days,
    }
}

/// `GET /api/territories`
#[utoipa::path(get, path = "/api/territories", tag = "territories", security(("bearer" = [])),
    responses(
        (status = 200, description = "Both territories", body = [api::Territory]),
        (status = 401, response = crate::openapi::Unauthorized)))]
pub async fn list_territories(_caller: Caller) -> HttpResponse {
    HttpResponse::Ok().json(Territory::all().iter().map(to_api).collect::<Vec<_>>())
}

/// `GET /api/territories/{id}`
#[utoipa::path(get, path = "/api/territories/{id}", tag = "territories", security(("bearer" = [])),
    params(("id" = String, Path, description = "DE or CH; any other id is 404")),
    responses(
        (status = 200, description = "The territory", body = api::Territory),
        (status = 401, response = crate::openapi::Unauthorized),
        (status = 404, response = crate::openapi::NotFound)))]
pub async fn get_territory(
    _caller: Caller,
    id: web::Path<String>,
) -> Result<HttpResponse, Problem> {
    let tid = id
        .parse::<freshplan_kernel::TerritoryId>()
        .map_err(|_| Problem::not_found(format!("No territory {:?}.", id.as_str())))?;
    Ok(HttpResponse::Ok().json(to_api(Territory::get(tid))))
}
