//! The OpenAPI 3.1 document, generated from the handlers' annotations.

use utoipa::OpenApi;
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{AdditionalProperties, Schema};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};

use crate::{api, routes};

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
        api::events::list,
        api::events::stream,
        api::followups::run,
        api::followups::runs,
        api::dashboard::figures,
        api::dashboard::figures_stream,
        api::mails::list,
        api::mails::get,
        api::mails::requeue,
        api::unsubscribe::unsubscribe,
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
        freshplan_api::events::CloudEvent,
        freshplan_api::events::EventPage,
        freshplan_api::followups::RunReport,
        freshplan_api::followups::RunOutcome,
        freshplan_api::followups::RunRecord,
        freshplan_api::followups::RunList,
        freshplan_api::followups::ScopeKind,
        freshplan_api::followups::FollowUpFigures,
        freshplan_api::followups::Stage,
        freshplan_api::mails::MailStatus,
        freshplan_api::mails::MailSummary,
        freshplan_api::mails::Mail,
        freshplan_api::mails::MailPage
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
