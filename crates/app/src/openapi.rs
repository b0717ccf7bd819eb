//! The OpenAPI 3.1 document, generated from the handlers' annotations.

use utoipa::OpenApi;
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{AdditionalProperties, Schema};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};

use crate::routes;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "FreshPlan Leads API",
        description = "Lead acquisition backend (SPEC.md)."
    ),
    paths(
        routes::list_territories,
        routes::get_territory,
        routes::list_leads,
        routes::create_lead,
        routes::get_lead,
        routes::patch_lead,
        routes::delete_lead,
        routes::list_activities,
        routes::log_activity,
        routes::reassign,
        routes::stop_clock,
        routes::resume_clock,
        crate::feed::list,
        crate::feed::stream,
        crate::followups::run,
        crate::followups::runs,
        crate::followups::figures,
        crate::followups::figures_stream,
        crate::mails::list,
        crate::mails::get,
        crate::mails::requeue,
        crate::unsubscribe::unsubscribe,
        routes::openapi,
        routes::live,
        routes::ready,
        crate::observe::metrics,
        crate::cockpit::page
    ),
    components(schemas(
        crate::problem::Problem,
        crate::problem::FieldProblem,
        crate::dto::TerritoryDto,
        crate::dto::schema::Lead,
        crate::dto::schema::LeadPage,
        crate::dto::schema::LeadCreate,
        crate::dto::schema::LeadPatch,
        crate::dto::schema::Activity,
        crate::dto::schema::ActivityPage,
        crate::dto::schema::ActivityCreate,
        crate::dto::schema::OwnerChange,
        crate::dto::schema::ClockStop,
        crate::feed::schema::CloudEvent,
        crate::feed::schema::EventPage,
        crate::followups::schema::RunReport,
        crate::followups::schema::RunOutcome,
        crate::followups::schema::RunRecord,
        crate::followups::schema::RunList,
        crate::followups::schema::ScopeKind,
        crate::followups::schema::FollowUpFigures,
        crate::followups::schema::MailStatus,
        crate::followups::schema::Stage,
        crate::followups::schema::MailSummary,
        crate::followups::schema::Mail,
        crate::followups::schema::MailPage
    ))
)]
struct ApiDoc;

/// The document, with the bearer scheme; request bodies state that unknown fields are refused.
pub fn document() -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    if let Some(c) = doc.components.as_mut() {
        for name in crate::dto::schema::REQUEST_BODIES {
            if let Some(RefOr::T(Schema::Object(o))) = c.schemas.get_mut(*name) {
                o.additional_properties = Some(Box::new(AdditionalProperties::FreeForm(false)));
            }
        }
        c.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
    doc
}
