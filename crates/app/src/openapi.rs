//! The OpenAPI 3.1 document, generated from the handlers' annotations and the body types of
//! `freshplan_api` (the same types that parse and render the bodies).

use actix_web::HttpResponse;
use utoipa::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, RefOr, Response, ResponseBuilder};

use crate::api;
use freshplan_api::problem::MEDIA_TYPE;

/// A reusable error response: an RFC 9457 problem (`application/problem+json`).
macro_rules! problem_response {
    ($($(#[$doc:meta])* $name:ident => $description:literal;)+) => {$(
        $(#[$doc])*
        pub struct $name;

        impl<'s> utoipa::ToResponse<'s> for $name {
            fn response() -> (&'s str, RefOr<Response>) {
                (
                    stringify!($name),
                    ResponseBuilder::new()
                        .description($description)
                        .content(
                            MEDIA_TYPE,
                            ContentBuilder::new()
                                .schema(Some(Ref::from_schema_name("Problem")))
                                .build(),
                        )
                        .build()
                        .into(),
                )
            }
        }
    )+};
}

problem_response! {
    /// 400.
    BadRequest => "The request is malformed: not JSON, a value of the wrong JSON type, an unknown field, a malformed path id or query parameter, U+0000 in a text (SPEC 9). `errors` names the field.";
    /// 401.
    Unauthorized => "The bearer token is missing, invalid or expired (`WWW-Authenticate: Bearer`).";
    /// 403.
    Forbidden => "The caller's role never allows this action, or the territory is not the caller's.";
    /// 404.
    NotFound => "No such resource visible to the caller (a lead the caller may not read is 404 too).";
    /// 405.
    MethodNotAllowed => "The path does not serve this method; `Allow` lists the ones it does.";
    /// 409 duplicate.
    Duplicate => "A duplicate lead (SPEC 4.2): `duplicateOn`, and `existingLeadId`/`existingCompanyName` when the caller may read the other lead.";
    /// 409 state.
    Conflict => "The lead's state does not allow this now (e.g. the clock is already stopped or running).";
    /// 412.
    PreconditionFailed => "`If-Match` names an older version of the lead: fetch it again.";
    /// 413.
    TooLarge => "The request body exceeds 64 KiB.";
    /// 415.
    UnsupportedMediaType => "The body is not `application/json` (or, for a merge patch, `application/merge-patch+json`).";
    /// 422.
    Unprocessable => "A value of the right type that is not allowed, a missing required field, an unknown enum value, a transition the status table forbids, or an Idempotency-Key reused with another body: `errors` names the fields.";
    /// 428.
    PreconditionRequired => "`If-Match` is required.";
    /// 503.
    Unavailable => "The service cannot do this now (e.g. the feature is switched off on this replica).";
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "FreshPlan Leads API",
        description = "Lead acquisition backend (SPEC.md). Every error is an RFC 9457 problem (`application/problem+json`); a method a path does not serve is 405 with `Allow`."
    ),
    paths(
        api::territories::list_territories,
        api::territories::get_territory,
        api::leads::list_leads,
        api::leads::create_lead,
        api::leads::get_lead,
        api::leads::patch_lead,
        api::leads::delete_lead,
        api::activities::list_activities,
        api::activities::log_activity,
        api::leads::reassign,
        api::leads::stop_clock,
        api::leads::resume_clock,
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
        openapi,
        api::meta::live,
        api::meta::ready,
        crate::observe::metrics,
        crate::cockpit::page
    ),
    components(
        schemas(
            freshplan_api::Problem,
            freshplan_api::FieldProblem,
            freshplan_api::problem::DuplicateOn,
            freshplan_api::territories::Territory,
            freshplan_api::leads::Lead,
            freshplan_api::leads::LeadPage,
            freshplan_api::leads::LeadCreate,
            freshplan_api::leads::LeadPatch,
            freshplan_api::leads::OwnerChange,
            freshplan_api::leads::ClockStop,
            freshplan_api::activities::Activity,
            freshplan_api::activities::ActivityPage,
            freshplan_api::activities::ActivityCreate,
            freshplan_api::health::Health,
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
        ),
        responses(
            BadRequest,
            Unauthorized,
            Forbidden,
            NotFound,
            MethodNotAllowed,
            Duplicate,
            Conflict,
            PreconditionFailed,
            TooLarge,
            UnsupportedMediaType,
            Unprocessable,
            PreconditionRequired,
            Unavailable
        )
    )
)]
struct ApiDoc;

/// The document, with the bearer scheme; every error response is `application/problem+json`,
/// and every `/api/` operation can answer 400 (a U+0000 in any query parameter is refused before
/// the handler: `crate::http::refuse_nul_in_query`).
pub fn document() -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    for (path, item) in doc.paths.paths.iter_mut() {
        let operations = [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
        ];
        for operation in operations.into_iter().flatten() {
            if path.starts_with("/api/") && !operation.responses.responses.contains_key("400") {
                operation.responses.responses.insert(
                    "400".to_owned(),
                    RefOr::Ref(Ref::from_response_name("BadRequest")),
                );
            }
            for (status, response) in operation.responses.responses.iter_mut() {
                let RefOr::T(response) = response else {
                    continue;
                };
                if status.as_str() >= "400"
                    && let Some(content) = response.content.shift_remove("application/json")
                {
                    response.content.insert(MEDIA_TYPE.to_owned(), content);
                }
            }
        }
    }
    if let Some(c) = doc.components.as_mut() {
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

/// `GET /api/openapi.json`
#[utoipa::path(get, path = "/api/openapi.json", tag = "meta",
    responses((status = 200, description = "This document (OpenAPI 3.1)", content_type = "application/json")))]
pub async fn openapi() -> HttpResponse {
    HttpResponse::Ok().json(document())
}
