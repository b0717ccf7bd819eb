//! The OpenAPI 3.1 document, generated from the handlers' annotations and the body types of
//! `freshplan_api` (the same types that parse and render the bodies).

use actix_web::HttpResponse;
use serde_json::{Value, json};
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
    /// 409 duplicate.
    Duplicate => "A duplicate lead (SPEC 4.2): `duplicateOn`, and `existingLeadId`/`existingCompanyName` when the caller may read the other lead. On a change, also a lead whose personal data was erased (it no longer changes; no `duplicateOn` then).";
    /// 409 state.
    Conflict => "The lead's state does not allow this now (e.g. the clock is already stopped or running), or its personal data was erased (an erased lead no longer changes).";
    /// 412.
    PreconditionFailed => "`If-Match` names an older version of the lead: fetch it again.";
    /// 413.
    TooLarge => "The request body exceeds 64 KiB (an import's file: 20 MB or 50,000 rows).";
    /// 415.
    UnsupportedMediaType => "The body is not `application/json` (or, for a merge patch, `application/merge-patch+json`; for an import, `text/csv` with a known charset).";
    /// 422.
    Unprocessable => "A value of the right type that is not allowed, a missing required field, an unknown enum value, a transition the status table forbids, or an Idempotency-Key reused with another body: `errors` names the fields.";
    /// 428.
    PreconditionRequired => "`If-Match` is required.";
    /// 503.
    Unavailable => "The database cannot be reached right now (`database-unavailable`, with `Retry-After`; nothing was changed), or this replica cannot serve this: the event pipeline is switched off (`FRESHPLAN_EVENTS=false`) or follow-up mail is not configured (no unsubscribe secret).";
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
        api::imports::create_import,
        api::imports::get_import,
        api::imports::list_rows,
        api::leads::get_lead,
        api::leads::patch_lead,
        api::leads::delete_lead,
        api::activities::list_activities,
        api::activities::log_activity,
        api::leads::reassign,
        api::leads::stop_clock,
        api::leads::resume_clock,
        api::leads::personal_data,
        api::leads::erase,
        api::audit::list,
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
        api::unsubscribe::unsubscribe_one_click,
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
            freshplan_api::events::CloudEvent,
            freshplan_api::events::EventPage,
            freshplan_api::followups::RunReport,
            freshplan_api::followups::RunOutcome,
            freshplan_api::followups::RunRecord,
            freshplan_api::followups::RunList,
            freshplan_api::followups::ScopeKind,
            freshplan_api::followups::FollowUpFigures,
            freshplan_api::mails::MailStatus,
            freshplan_api::followups::Stage,
            freshplan_api::mails::MailSummary,
            freshplan_api::mails::Mail,
            freshplan_api::mails::MailPage,
            freshplan_api::leads::ConsentSource,
            freshplan_api::privacy::ErasureRequest,
            freshplan_api::privacy::ErasureRequestReason,
            freshplan_api::privacy::ErasureReason,
            freshplan_api::privacy::ConsentChange,
            freshplan_api::privacy::PersonalDataExport,
            freshplan_api::privacy::AuditAction,
            freshplan_api::privacy::AuditEntry,
            freshplan_api::privacy::AuditPage,
            freshplan_api::imports::LeadImport,
            freshplan_api::imports::ImportState,
            freshplan_api::imports::ImportColumn,
            freshplan_api::imports::ImportRow,
            freshplan_api::imports::RowOutcome,
            freshplan_api::imports::RowError,
            freshplan_api::imports::ImportRowPage
        ),
        responses(
            BadRequest,
            Unauthorized,
            Forbidden,
            NotFound,
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
fn generated() -> utoipa::openapi::OpenApi {
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
            // Every operation that reads the database answers 503 while it cannot be reached.
            if ((path.starts_with("/api/") && path != "/api/openapi.json")
                || path == "/unsubscribe")
                && !operation.responses.responses.contains_key("503")
            {
                operation.responses.responses.insert(
                    "503".to_owned(),
                    RefOr::Ref(Ref::from_response_name("Unavailable")),
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

/// The OpenAPI 3.1 document as served. On top of what utoipa generates, it states what the
/// derive cannot: the SSE streams' events (one schema per event, `data` as JSON of the named
/// schema — OpenAPI 3.2's `itemSchema` way, which schemathesis reads), the enums whose values
/// come from the domain (country codes, event types), the item rules of `collaboratorUserIds`,
/// and link objects spelled as OpenAPI spells them (`operationId`).
pub fn document() -> Value {
    let mut doc = serde_json::to_value(generated()).unwrap_or_default();
    rename_link_keys(&mut doc);
    let event_types: Vec<Value> = api::events::event_types().map(Value::from).collect();
    let countries: Vec<Value> = freshplan_territory::country_codes()
        .iter()
        .flat_map(|c| [Value::from(*c), Value::from(c.to_ascii_lowercase())])
        .collect();
    let schemas = &mut doc["components"]["schemas"];
    for body in ["LeadCreate", "LeadPatch"] {
        // An empty string means "no email" (it clears the field): the format applies otherwise.
        if let Some(email) = schemas[body]["properties"]["email"].as_object_mut()
            && email.remove("format").is_some()
        {
            email.insert(
                "anyOf".into(),
                json!([{"format": "email"}, {"maxLength": 0}]),
            );
        }
        let country = &mut schemas[body]["properties"]["countryCode"];
        if let Some(o) = country.as_object_mut() {
            o.remove("pattern");
            o.insert("enum".into(), Value::Array(countries.clone()));
        }
    }
    if let Some(Value::Object(collaborators)) =
        doc.pointer_mut("/components/schemas/LeadPatch/properties/collaboratorUserIds")
    {
        collaborators.remove("oneOf");
        collaborators.insert("type".into(), json!(["array", "null"]));
        collaborators.insert(
            "items".into(),
            json!({"type": "string", "minLength": 1, "maxLength": 64, "pattern": USER_ID_PATTERN}),
        );
    }
    schemas_insert(
        &mut doc,
        "TokenExpired",
        json!({
            "type": "object",
            "description": "The last message of a stream whose bearer token expired (`event: token-expired`, no `id:`): reconnect with a new token (and `Last-Event-ID`).",
            "required": ["reason", "expiredAt"],
            "properties": {
                "reason": {"type": "string", "const": "token expired"},
                "expiredAt": {"type": "string", "format": "date-time"}
            }
        }),
    );
    for (path, data_event) in [
        (
            "/api/events/stream",
            json!({"$ref": "#/components/schemas/CloudEvent"}),
        ),
        (
            "/api/dashboard/followup-stream",
            json!({"$ref": "#/components/schemas/FollowUpFigures"}),
        ),
    ] {
        // An unnamed SSE message is a `message` event (what EventSource and schemathesis call it).
        let named = if path == "/api/events/stream" {
            json!({"const": "message"})
        } else {
            json!({"const": crate::api::dashboard::FIGURES_EVENT})
        };
        let event = json!({
            "type": "object",
            "required": ["data"],
            "properties": {
                "id": {"type": "string"},
                "event": {"anyOf": [named, {"const": crate::sse::TOKEN_EXPIRED_EVENT}]},
                "retry": {"type": "integer"},
                "data": {
                    "type": "string",
                    "contentMediaType": "application/json",
                    "contentSchema": {"anyOf": [data_event, {"$ref": "#/components/schemas/TokenExpired"}]}
                }
            }
        });
        if let Some(content) = doc.pointer_mut(&format!(
            "/paths/{}/get/responses/200/content/text~1event-stream",
            path.replace('/', "~1")
        )) {
            *content = json!({"itemSchema": event});
        }
    }
    // An optional query or header parameter is absent or a string, never JSON null.
    if let Some(Value::Object(paths)) = doc.get_mut("paths") {
        for item in paths.values_mut().filter_map(Value::as_object_mut) {
            for operation in item.values_mut() {
                let Some(Value::Array(params)) = operation.get_mut("parameters") else {
                    continue;
                };
                for param in params {
                    // Text parameters never hold U+0000 (`crate::http::refuse_nul_in_query`).
                    let schema = &mut param["schema"];
                    let text = schema["type"] == "string"
                        || schema["type"]
                            .as_array()
                            .is_some_and(|t| t.contains(&json!("string")));
                    let open = ["pattern", "enum", "format"]
                        .iter()
                        .all(|k| schema.get(k).is_none());
                    if text && open {
                        schema["pattern"] = json!(r"^[^\u0000]*$");
                    }
                    if let Some(Value::Array(types)) = param.pointer_mut("/schema/type") {
                        types.retain(|t| t != "null");
                        if let [only] = types.as_slice() {
                            let only = only.clone();
                            param["schema"]["type"] = only;
                        }
                    }
                }
            }
        }
    }
    // An optional request body (utoipa's `Option<…>`) is absent when not sent, never JSON null.
    if let Some(Value::Object(paths)) = doc.get_mut("paths") {
        for operation in paths
            .values_mut()
            .filter_map(Value::as_object_mut)
            .flat_map(|item| item.values_mut())
        {
            if operation.pointer("/requestBody/required") == Some(&Value::Bool(true)) {
                continue;
            }
            let Some(Value::Object(content)) = operation.pointer_mut("/requestBody/content") else {
                continue;
            };
            for media in content.values_mut() {
                if let Some(Value::Array(types)) = media.pointer_mut("/schema/type") {
                    types.retain(|t| t != "null");
                    if let [only] = types.as_slice() {
                        let only = only.clone();
                        media["schema"]["type"] = only;
                    }
                }
            }
        }
    }
    for (path, operation) in [("/api/events", "get"), ("/api/events/stream", "get")] {
        if let Some(Value::Array(params)) = doc.pointer_mut(&format!(
            "/paths/{}/{operation}/parameters",
            path.replace('/', "~1")
        )) {
            for p in params.iter_mut().filter(|p| p["name"] == "type") {
                p["schema"] = json!({"type": "string", "enum": event_types.clone()});
            }
        }
    }
    doc
}

/// The pattern of a user id in a body or query: 1–64 characters, not blank, no control
/// characters.
pub const USER_ID_PATTERN: &str = r"^[^\u0000-\u001F\u007F-\u009F]*[^\s\u0000-\u001F\u007F-\u009F][^\u0000-\u001F\u007F-\u009F]*$";

fn schemas_insert(doc: &mut Value, name: &str, schema: Value) {
    if let Some(Value::Object(schemas)) = doc.pointer_mut("/components/schemas") {
        schemas.insert(name.to_owned(), schema);
    }
}

/// utoipa writes a link's fields in snake case; OpenAPI spells them in camel case.
fn rename_link_keys(doc: &mut Value) {
    let Some(Value::Object(paths)) = doc.get_mut("paths") else {
        return;
    };
    for item in paths.values_mut() {
        let Some(item) = item.as_object_mut() else {
            continue;
        };
        for operation in item.values_mut() {
            let Some(Value::Object(responses)) = operation.get_mut("responses") else {
                continue;
            };
            for response in responses.values_mut() {
                let Some(Value::Object(links)) = response.get_mut("links") else {
                    continue;
                };
                for link in links.values_mut() {
                    let Some(link) = link.as_object_mut() else {
                        continue;
                    };
                    for (from, to) in [
                        ("operation_id", "operationId"),
                        ("operation_ref", "operationRef"),
                        ("request_body", "requestBody"),
                    ] {
                        if let Some(v) = link.remove(from) {
                            link.insert(to.to_owned(), v);
                        }
                    }
                }
            }
        }
    }
}

/// `GET /api/openapi.json`
#[utoipa::path(get, path = "/api/openapi.json", tag = "meta",
    responses((status = 200, description = "This document (OpenAPI 3.1)", content_type = "application/json")))]
pub async fn openapi() -> HttpResponse {
    HttpResponse::Ok().json(document())
}
