//! The audit log of personal-data processing (SPEC §13): `GET /api/audit`, admins only. Who
//! exported or erased whose data when and why, and what retention erased — never the data.

use actix_web::{HttpRequest, HttpResponse, web};

use freshplan_api::privacy as api;
use freshplan_leads::personal::AuditEntry;

use crate::AppState;
use crate::auth::Caller;
use crate::http::{self, Wire, wire_enum};
use crate::problem::Problem;

type Result<T> = std::result::Result<T, Problem>;

wire_enum!(freshplan_leads::personal::AuditAction => api::AuditAction {
    PersonalDataExported, LeadErased, RetentionRun
});

/// Registers `GET /api/audit`.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/api/audit", web::get().to(list));
}

fn to_api(e: &AuditEntry) -> api::AuditEntry {
    api::AuditEntry {
        id: e.id,
        at: e.at,
        actor: e.actor.as_str().to_owned(),
        action: e.action.wire(),
        lead_id: e.lead_id,
        territory: e.territory.map(|t| t.as_str().to_owned()),
        reason: e.reason.map(Wire::wire),
        leads_erased: e.leads_erased,
        mail_bodies_erased: e.mail_bodies_erased,
    }
}

/// `GET /api/audit`
#[utoipa::path(get, path = "/api/audit", operation_id = "list_audit", tag = "privacy", security(("bearer" = [])),
    params(
        ("page" = Option<u32>, Query, minimum = 0, maximum = 1000000, description = "0-based page"),
        ("size" = Option<u32>, Query, minimum = 1, maximum = 200, description = "Page size (default 20)")),
    responses(
        (status = 200, description = "Exports, erasures and retention runs, newest first, without personal data", body = api::AuditPage),
        (status = 400, response = crate::openapi::BadRequest),
        (status = 401, response = crate::openapi::Unauthorized),
        (status = 403, response = crate::openapi::Forbidden)))]
pub async fn list(
    req: HttpRequest,
    state: web::Data<AppState>,
    caller: Caller,
) -> Result<HttpResponse> {
    let (page, size) = http::paging(req.query_string())?;
    let p = state.leads.audit_log(&caller.0, page, size).await?;
    Ok(HttpResponse::Ok().json(api::AuditPage {
        data: p.items.iter().map(to_api).collect(),
        page,
        size,
        total: p.total,
        total_pages: p.total.div_ceil(u64::from(size)),
    }))
}
