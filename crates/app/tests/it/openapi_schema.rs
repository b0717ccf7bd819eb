//! The OpenAPI document describes the bodies the code really reads and writes (SPEC §4.1, §5,
//! §9), so the document cannot drift from the code unnoticed:
//! - the lead schema lists exactly the SPEC §4.1 fields, with the SPEC's enum values and formats;
//! - real responses are validated against the schema their path documents: every object in them
//!   has no property the schema does not declare and every property it requires (the lead
//!   schema requires all of them), and the `freshplan-api` type of the body reads it and writes
//!   it back unchanged;
//! - every property a request schema documents is accepted by the parser, `null` exactly where
//!   the schema says nullable, and every lead field it does not document is refused (400).

use std::collections::BTreeSet;

use reqwest::Method;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::helpers::*;

/// SPEC §4.1, in its order (with SPEC §13's `emailConsentSource` and `erasedAt`).
const SPEC_LEAD_FIELDS: &[&str] = &[
    "id",
    "version",
    "companyName",
    "contactPerson",
    "email",
    "phone",
    "website",
    "street",
    "postalCode",
    "city",
    "countryCode",
    "territory",
    "businessType",
    "kitchenSize",
    "employeeCount",
    "estimatedVolume",
    "industry",
    "source",
    "sourceCampaign",
    "emailConsent",
    "emailConsentAt",
    "emailConsentSource",
    "erasedAt",
    "status",
    "ownerUserId",
    "collaboratorUserIds",
    "registeredAt",
    "lastActivityAt",
    "lastMeaningfulContactAt",
    "protection",
    "followUps",
    "createdAt",
    "createdBy",
    "updatedAt",
    "updatedBy",
];

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

fn keys(v: &Value) -> BTreeSet<String> {
    v.as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default()
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|s| s.as_str().unwrap().to_owned())
        .collect()
}

/// Follows a `$ref` into `components.schemas`.
fn resolve<'a>(doc: &'a Value, schema: &'a Value) -> &'a Value {
    match schema.get("$ref").and_then(Value::as_str) {
        Some(r) => {
            let name = r.strip_prefix("#/components/schemas/").unwrap();
            let target = &doc["components"]["schemas"][name];
            assert!(!target.is_null(), "dangling $ref {r}");
            resolve(doc, target)
        }
        None => schema,
    }
}

fn component<'a>(doc: &'a Value, name: &str) -> &'a Value {
    resolve(doc, &doc["components"]["schemas"][name])
}

/// The schema a path documents for a JSON response.
pub(crate) fn response_schema<'a>(
    doc: &'a Value,
    method: &str,
    path: &str,
    status: u16,
) -> &'a Value {
    let s = &doc["paths"][path][method]["responses"][status.to_string()]["content"]["application/json"]
        ["schema"];
    assert!(
        !s.is_null(),
        "{method} {path} documents no {status} JSON body"
    );
    s
}

/// The schema a path documents for its request body.
fn request_schema<'a>(doc: &'a Value, method: &str, path: &str, content_type: &str) -> &'a Value {
    let s = &doc["paths"][path][method]["requestBody"]["content"][content_type]["schema"];
    assert!(
        !s.is_null(),
        "{method} {path} documents no {content_type} body"
    );
    resolve(doc, s)
}

/// Checks `value` against `schema` — the subset of JSON Schema the document uses — and that
/// every object has only declared properties (and the required ones). Collects the mismatches.
fn check(doc: &Value, schema: &Value, value: &Value, at: &str, errors: &mut Vec<String>) {
    let schema = resolve(doc, schema);
    if let Some(alternatives) = schema.get("oneOf").and_then(Value::as_array) {
        let matching = alternatives
            .iter()
            .filter(|alt| {
                let mut e = Vec::new();
                check(doc, alt, value, at, &mut e);
                e.is_empty()
            })
            .count();
        if matching != 1 {
            errors.push(format!(
                "{at}: {value} matches {matching} of the oneOf alternatives"
            ));
        }
        return;
    }
    if let Some(t) = schema.get("type") {
        let allowed: Vec<String> = match t {
            Value::String(s) => vec![s.clone()],
            other => strings(other),
        };
        let actual = match value {
            Value::Null => "null",
            Value::Bool(_) => "boolean",
            Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
            Value::Number(_) => "number",
            Value::String(_) => "string",
            Value::Array(_) => "array",
            Value::Object(_) => "object",
        };
        let ok = allowed
            .iter()
            .any(|a| a == actual || (a == "number" && actual == "integer"));
        if !ok {
            errors.push(format!(
                "{at}: {value} ({actual}) is not of type {allowed:?}"
            ));
            return;
        }
    } else {
        errors.push(format!("{at}: schema without a type: {schema}"));
        return;
    }
    if let Some(values) = schema.get("enum").and_then(Value::as_array)
        && !value.is_null()
        && !values.contains(value)
    {
        errors.push(format!("{at}: {value} is not one of {values:?}"));
    }
    match value {
        Value::String(s) => {
            match schema.get("format").and_then(Value::as_str) {
                Some("uuid") if uuid::Uuid::parse_str(s).is_err() => {
                    errors.push(format!("{at}: {s:?} is not a uuid"));
                }
                Some("date-time") if OffsetDateTime::parse(s, &Rfc3339).is_err() => {
                    errors.push(format!("{at}: {s:?} is not an RFC 3339 date-time"));
                }
                Some("email") if !s.contains('@') => {
                    errors.push(format!("{at}: {s:?} is not an email address"));
                }
                _ => {}
            }
            let len = s.chars().count() as u64;
            if let Some(max) = schema.get("maxLength").and_then(Value::as_u64)
                && len > max
            {
                errors.push(format!("{at}: longer than {max}"));
            }
            if let Some(min) = schema.get("minLength").and_then(Value::as_u64)
                && len < min
            {
                errors.push(format!("{at}: shorter than {min}"));
            }
            match schema.get("pattern").and_then(Value::as_str) {
                None => {}
                Some("^[A-Z]{2}$") if s.len() == 2 && s.bytes().all(|b| b.is_ascii_uppercase()) => {
                }
                Some("^[A-Z]{2}$") => {
                    errors.push(format!("{at}: {s:?} is not two upper-case letters"));
                }
                // The text rules (no control characters; not blank): ECMA-262 patterns of
                // character classes, which Rust's `char` predicates state exactly.
                Some(r"^[^\u0000-\u001F\u007F-\u009F]*$") if s.chars().any(char::is_control) => {
                    errors.push(format!("{at}: {s:?} holds a control character"));
                }
                Some(
                    r"^[^\u0000-\u001F\u007F-\u009F]*[^\s\u0000-\u001F\u007F-\u009F][^\u0000-\u001F\u007F-\u009F]*$",
                ) if s.chars().any(char::is_control) || s.trim().is_empty() => {
                    errors.push(format!("{at}: {s:?} is blank or holds a control character"));
                }
                Some(
                    r"^[^\u0000-\u001F\u007F-\u009F]*$"
                    | r"^[^\u0000-\u001F\u007F-\u009F]*[^\s\u0000-\u001F\u007F-\u009F][^\u0000-\u001F\u007F-\u009F]*$",
                ) => {}
                Some(p) => panic!("{at}: teach this checker the pattern {p:?}"),
            }
        }
        Value::Number(n) => {
            let x = n.as_f64().unwrap();
            if let Some(min) = schema.get("minimum").and_then(Value::as_f64)
                && x < min
            {
                errors.push(format!("{at}: {x} < minimum {min}"));
            }
            if let Some(max) = schema.get("maximum").and_then(Value::as_f64)
                && x > max
            {
                errors.push(format!("{at}: {x} > maximum {max}"));
            }
        }
        Value::Array(items) => {
            let item_schema = &schema["items"];
            for (i, item) in items.iter().enumerate() {
                check(doc, item_schema, item, &format!("{at}[{i}]"), errors);
            }
        }
        Value::Object(object) => {
            // A free-form object (`metadata`) declares no properties.
            if let Some(properties) = schema.get("properties").and_then(Value::as_object) {
                let declared: BTreeSet<&String> = properties.keys().collect();
                let present: BTreeSet<&String> = object.keys().collect();
                for extra in present.difference(&declared) {
                    errors.push(format!("{at}: property {extra} is not in the schema"));
                }
                for (name, v) in object {
                    if let Some(s) = properties.get(name) {
                        check(doc, s, v, &format!("{at}.{name}"), errors);
                    }
                }
            }
            if let Some(required) = schema.get("required") {
                for name in strings(required) {
                    if !object.contains_key(&name) {
                        errors.push(format!("{at}: required {name} is missing"));
                    }
                }
            }
        }
        Value::Null | Value::Bool(_) => {}
    }
}

pub(crate) fn assert_conforms(doc: &Value, schema: &Value, value: &Value, what: &str) {
    let mut errors = Vec::new();
    check(doc, schema, value, what, &mut errors);
    assert!(
        errors.is_empty(),
        "{what} does not match its schema:\n{}",
        errors.join("\n")
    );
}

/// `value` is what `T` — the body's type in `freshplan-api`, whose schema the document shows —
/// reads and writes: parsed and written back, it is unchanged.
pub(crate) fn assert_round_trips<T>(value: &Value, what: &str)
where
    T: serde::de::DeserializeOwned + serde::Serialize,
{
    let parsed: T = serde_json::from_value(value.clone()).unwrap_or_else(|e| {
        panic!(
            "{what}: {} does not read it: {e}\n{value}",
            std::any::type_name::<T>()
        )
    });
    assert_eq!(
        &serde_json::to_value(&parsed).unwrap(),
        value,
        "{what}: {} does not write it back unchanged",
        std::any::type_name::<T>()
    );
}

async fn openapi(app: &TestApp) -> Value {
    app.client
        .get(format!("{}/api/openapi.json", app.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

fn enum_of(doc: &Value, schema: &Value) -> Vec<String> {
    let s = resolve(doc, schema);
    let s = match s.get("oneOf").and_then(Value::as_array) {
        Some(alts) => resolve(doc, alts.iter().find(|a| a["type"] != "null").unwrap()),
        None => s,
    };
    strings(&s["enum"])
}

#[actix_web::test]
async fn the_lead_schema_is_spec_4_1_and_what_the_api_returns() {
    let app = spawn_app().await;
    let doc = openapi(&app).await;

    // The document's lead: exactly the SPEC fields, all always present.
    let lead_schema = response_schema(&doc, "get", "/api/leads/{id}", 200);
    let lead = resolve(&doc, lead_schema);
    assert_eq!(keys(&lead["properties"]), set(SPEC_LEAD_FIELDS));
    assert_eq!(
        strings(&lead["required"])
            .into_iter()
            .collect::<BTreeSet<_>>(),
        set(SPEC_LEAD_FIELDS)
    );
    let p = &lead["properties"];
    assert_eq!(p["id"]["format"], "uuid");
    for ts in ["registeredAt", "createdAt", "updatedAt"] {
        assert_eq!(p[ts]["format"], "date-time", "{ts}");
    }
    for nullable_ts in [
        "emailConsentAt",
        "lastActivityAt",
        "lastMeaningfulContactAt",
    ] {
        assert_eq!(p[nullable_ts]["format"], "date-time", "{nullable_ts}");
        assert_eq!(
            p[nullable_ts]["type"],
            json!(["string", "null"]),
            "{nullable_ts}"
        );
    }
    assert_eq!(
        keys(&resolve(&doc, &p["territory"])["properties"]),
        set(&["id", "name", "currencyCode"])
    );
    assert_eq!(
        keys(&resolve(&doc, &p["protection"])["properties"]),
        set(&[
            "protectedUntil",
            "reminderAt",
            "graceUntil",
            "clockStoppedAt",
            "stopReason",
            "pausedSeconds"
        ])
    );
    let follow_ups = resolve(&doc, &p["followUps"]);
    assert_eq!(keys(&follow_ups["properties"]), set(&["t3", "t7"]));
    let mark = component(&doc, "FollowUpMark");
    assert_eq!(
        keys(&mark["properties"]),
        set(&["status", "processedAt", "reason"])
    );
    // The SPEC's enum values.
    assert_eq!(
        enum_of(&doc, &p["businessType"]),
        ["RESTAURANT", "HOTEL", "CANTEEN", "CATERING", "OTHER"]
    );
    assert_eq!(
        enum_of(&doc, &p["kitchenSize"]),
        ["SMALL", "MEDIUM", "LARGE"]
    );
    assert_eq!(
        enum_of(&doc, &p["source"]),
        ["WEB", "EMAIL", "PHONE", "EVENT", "PARTNER", "IMPORT"]
    );
    assert_eq!(
        enum_of(&doc, &p["status"]),
        [
            "REGISTERED",
            "ACTIVE",
            "REMINDER",
            "GRACE_PERIOD",
            "QUALIFIED",
            "CONVERTED",
            "LOST",
            "EXPIRED",
            "DELETED"
        ]
    );
    let user_types = [
        "EMAIL",
        "EMAIL_RECEIVED",
        "CALL",
        "MEETING",
        "SAMPLE_SENT",
        "SAMPLE_FEEDBACK",
        "ORDER",
        "NOTE",
    ];
    let create_activity = request_schema(
        &doc,
        "post",
        "/api/leads/{id}/activities",
        "application/json",
    );
    assert_eq!(
        enum_of(&doc, &create_activity["properties"]["type"]),
        user_types
    );
    let activity = resolve(
        &doc,
        response_schema(&doc, "post", "/api/leads/{id}/activities", 201),
    );
    let all_types = enum_of(&doc, &activity["properties"]["type"]);
    assert_eq!(all_types.len(), 23);
    assert_eq!(all_types[..8], user_types);
    assert!(all_types.iter().any(|t| t == "UNSUBSCRIBED"));
    assert!(all_types.iter().any(|t| t == "ERASED"));

    // A lead with every field set, through a contact, a stopped clock and collaborators ...
    let admin = admin();
    let backdated = (OffsetDateTime::now_utc() - time::Duration::days(10))
        .format(&Rfc3339)
        .unwrap();
    let full = app
        .create_ok(
            &admin,
            json!({
                "companyName": "Hotel Alpenblick AG", "contactPerson": "Frau Muster",
                "email": "info@alpenblick.ch", "phone": "+41 44 000 00 00",
                "website": "https://alpenblick.example", "street": "Bahnhofstrasse 1",
                "postalCode": "8001", "city": "Zürich", "countryCode": "ch",
                "businessType": "HOTEL", "kitchenSize": "LARGE", "employeeCount": 40,
                "estimatedVolume": 12500.75, "industry": "Hospitality", "source": "EVENT",
                "sourceCampaign": "Intergastra", "emailConsent": true, "registeredAt": backdated,
            }),
        )
        .await;
    let id = full["id"].as_str().unwrap().to_owned();
    let r = app
        .req(Method::POST, &format!("/api/leads/{id}/activities"), &admin)
        .json(&json!({"type": "CALL", "description": "First call"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let logged: Value = r.json().await.unwrap();
    assert_conforms(
        &doc,
        response_schema(&doc, "post", "/api/leads/{id}/activities", 201),
        &logged,
        "POST /activities",
    );
    let etag = app.get(&admin, &format!("/api/leads/{id}")).await.headers()["etag"]
        .to_str()
        .unwrap()
        .to_owned();
    let r = app
        .req(Method::PATCH, &format!("/api/leads/{id}"), &admin)
        .header("If-Match", etag)
        .json(&json!({"collaboratorUserIds": ["rep-2", "rep-3"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_conforms(
        &doc,
        response_schema(&doc, "patch", "/api/leads/{id}", 200),
        &r.json().await.unwrap(),
        "PATCH",
    );
    let r = app
        .req(Method::PUT, &format!("/api/leads/{id}/owner"), &admin)
        .json(&json!({"ownerUserId": "rep-1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_conforms(
        &doc,
        response_schema(&doc, "put", "/api/leads/{id}/owner", 200),
        &r.json().await.unwrap(),
        "PUT owner",
    );
    let r = app
        .req(Method::POST, &format!("/api/leads/{id}/clock/stop"), &admin)
        .json(&json!({"reason": "Owner on parental leave"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_conforms(
        &doc,
        response_schema(&doc, "post", "/api/leads/{id}/clock/stop", 200),
        &r.json().await.unwrap(),
        "clock stop",
    );

    // ... and a lead with nothing but its name: both GET responses are exactly the schema.
    let minimal = app
        .create_ok(&admin, json!({"companyName": "Imbiss Ecke"}))
        .await;
    for lead_id in [id.as_str(), minimal["id"].as_str().unwrap()] {
        let got: Value = app
            .get(&admin, &format!("/api/leads/{lead_id}"))
            .await
            .json()
            .await
            .unwrap();
        assert_conforms(
            &doc,
            lead_schema,
            &got,
            &format!("GET /api/leads/{lead_id}"),
        );
    }
    let got: Value = app
        .get(&admin, &format!("/api/leads/{id}"))
        .await
        .json()
        .await
        .unwrap();
    // The rich lead really exercised the non-null branches.
    for (field, value) in [
        ("countryCode", json!("CH")),
        ("businessType", json!("HOTEL")),
        ("estimatedVolume", json!(12500.75)),
        ("status", json!("ACTIVE")),
        ("ownerUserId", json!("rep-1")),
    ] {
        assert_eq!(got[field], value, "{field}");
    }
    for non_null in [
        "emailConsentAt",
        "lastActivityAt",
        "lastMeaningfulContactAt",
    ] {
        assert!(got[non_null].is_string(), "{non_null}");
    }
    assert!(got["protection"]["clockStoppedAt"].is_string());
    assert_eq!(got["territory"]["currencyCode"], "CHF");

    let r = app
        .req(
            Method::POST,
            &format!("/api/leads/{id}/clock/resume"),
            &admin,
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_conforms(
        &doc,
        response_schema(&doc, "post", "/api/leads/{id}/clock/resume", 200),
        &r.json().await.unwrap(),
        "clock resume",
    );

    // The pages.
    let page: Value = app
        .get(&admin, "/api/leads?size=5")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(page["total"], 2);
    assert_conforms(
        &doc,
        response_schema(&doc, "get", "/api/leads", 200),
        &page,
        "GET /api/leads",
    );
    let timeline: Value = app
        .get(&admin, &format!("/api/leads/{id}/activities"))
        .await
        .json()
        .await
        .unwrap();
    assert!(
        timeline["data"].as_array().unwrap().len() >= 5,
        "{timeline}"
    );
    assert_conforms(
        &doc,
        response_schema(&doc, "get", "/api/leads/{id}/activities", 200),
        &timeline,
        "GET /activities",
    );
}

/// Sends `body` to `path` and returns the status and the problem's field errors.
async fn send(
    app: &TestApp,
    method: Method,
    path: &str,
    tok: &str,
    if_match: Option<&str>,
    body: &Value,
) -> (u16, Value) {
    let mut rb = app.req(method, path, tok).json(body);
    if let Some(etag) = if_match {
        rb = rb.header("If-Match", etag);
    }
    let r = rb.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

fn nullable(doc: &Value, property: &Value) -> bool {
    let p = resolve(doc, property);
    match (p.get("type"), p.get("oneOf")) {
        (Some(Value::Array(types)), _) => types.contains(&json!("null")),
        (_, Some(Value::Array(alts))) => alts.iter().any(|a| a["type"] == "null"),
        _ => false,
    }
}

#[actix_web::test]
async fn request_schemas_are_what_the_parsers_accept() {
    let app = spawn_app().await;
    let doc = openapi(&app).await;
    let admin = admin();
    let lead_fields = set(SPEC_LEAD_FIELDS);

    for name in [
        "LeadCreate",
        "LeadPatch",
        "ActivityCreate",
        "OwnerChange",
        "ClockStop",
    ] {
        assert_eq!(
            component(&doc, name)["additionalProperties"],
            false,
            "{name} must say that unknown fields are refused"
        );
    }

    // POST /api/leads: each documented field is accepted; null exactly where documented.
    let create = request_schema(&doc, "post", "/api/leads", "application/json");
    assert_eq!(strings(&create["required"]), ["companyName"]);
    let documented = keys(&create["properties"]);
    for (i, field) in documented.iter().enumerate() {
        let mut body = json!({"companyName": format!("Create probe {i}")});
        body[field] = Value::Null;
        let (status, problem) = send(&app, Method::POST, "/api/leads", &admin, None, &body).await;
        let expected = if nullable(&doc, &create["properties"][field]) {
            201
        } else {
            422
        };
        assert_eq!(status, expected, "POST with {field}: null → {problem}");
    }
    // Every other lead field is refused as unknown.
    let probe = app
        .create_ok(&admin, json!({"companyName": "Patch probe"}))
        .await;
    let id = probe["id"].as_str().unwrap().to_owned();
    for field in lead_fields.difference(&documented) {
        let body = json!({"companyName": "Refused", field.as_str(): probe[field]});
        let (status, problem) = send(&app, Method::POST, "/api/leads", &admin, None, &body).await;
        assert_eq!(
            status, 400,
            "POST accepted the undocumented {field}: {problem}"
        );
        assert_eq!(problem["errors"][0]["field"], field.as_str());
    }

    // PATCH: the same, under If-Match.
    let patch = request_schema(
        &doc,
        "patch",
        "/api/leads/{id}",
        "application/merge-patch+json",
    );
    assert_eq!(
        request_schema(&doc, "patch", "/api/leads/{id}", "application/json"),
        patch
    );
    assert!(
        patch.get("required").is_none(),
        "a merge patch requires nothing"
    );
    let documented = keys(&patch["properties"]);
    let path = format!("/api/leads/{id}");
    for field in &documented {
        let etag = app.get(&admin, &path).await.headers()["etag"]
            .to_str()
            .unwrap()
            .to_owned();
        let (status, problem) = send(
            &app,
            Method::PATCH,
            &path,
            &admin,
            Some(&etag),
            &json!({field.as_str(): null}),
        )
        .await;
        let expected = if nullable(&doc, &patch["properties"][field]) {
            200
        } else {
            422
        };
        assert_eq!(status, expected, "PATCH {field}: null → {problem}");
    }
    let current: Value = app.get(&admin, &path).await.json().await.unwrap();
    for field in lead_fields.difference(&documented) {
        let etag = app.get(&admin, &path).await.headers()["etag"]
            .to_str()
            .unwrap()
            .to_owned();
        let (status, problem) = send(
            &app,
            Method::PATCH,
            &path,
            &admin,
            Some(&etag),
            &json!({field.as_str(): current[field]}),
        )
        .await;
        assert_eq!(
            status, 400,
            "PATCH accepted the undocumented {field}: {problem}"
        );
        assert_eq!(problem["errors"][0]["field"], field.as_str());
    }
    // The documented enum values are the accepted ones.
    for value in enum_of(&doc, &patch["properties"]["businessType"]) {
        let etag = app.get(&admin, &path).await.headers()["etag"]
            .to_str()
            .unwrap()
            .to_owned();
        let (status, problem) = send(
            &app,
            Method::PATCH,
            &path,
            &admin,
            Some(&etag),
            &json!({"businessType": value}),
        )
        .await;
        assert_eq!(status, 200, "businessType {value}: {problem}");
    }

    // Activities: the documented user types are accepted, the system ones refused.
    let activities = format!("/api/leads/{id}/activities");
    let create_activity = request_schema(
        &doc,
        "post",
        "/api/leads/{id}/activities",
        "application/json",
    );
    assert_eq!(strings(&create_activity["required"]), ["type"]);
    let loggable = enum_of(&doc, &create_activity["properties"]["type"]);
    let activity = resolve(
        &doc,
        response_schema(&doc, "post", "/api/leads/{id}/activities", 201),
    );
    for t in enum_of(&doc, &activity["properties"]["type"]) {
        let (status, problem) = send(
            &app,
            Method::POST,
            &activities,
            &admin,
            None,
            &json!({"type": t, "description": null, "occurredAt": null}),
        )
        .await;
        let expected = if loggable.contains(&t) { 201 } else { 422 };
        assert_eq!(status, expected, "activity {t}: {problem}");
    }
    let (status, _) = send(
        &app,
        Method::POST,
        &activities,
        &admin,
        None,
        &json!({"type": "NOTE", "userId": "x"}),
    )
    .await;
    assert_eq!(status, 400, "an undocumented activity field is refused");

    // Owner and clock bodies: their one documented field is required and nothing else passes.
    for (method, p, schema_path, field, value) in [
        (
            Method::PUT,
            format!("/api/leads/{id}/owner"),
            "/api/leads/{id}/owner",
            "ownerUserId",
            json!("rep-9"),
        ),
        (
            Method::POST,
            format!("/api/leads/{id}/clock/stop"),
            "/api/leads/{id}/clock/stop",
            "reason",
            json!("Audit"),
        ),
    ] {
        let m = method.as_str().to_ascii_lowercase();
        let schema = request_schema(&doc, &m, schema_path, "application/json");
        assert_eq!(keys(&schema["properties"]), set(&[field]));
        assert_eq!(strings(&schema["required"]), [field]);
        let (status, _) = send(&app, method.clone(), &p, &admin, None, &json!({})).await;
        assert_eq!(status, 422, "{p} without {field}");
        let (status, _) = send(
            &app,
            method.clone(),
            &p,
            &admin,
            None,
            &json!({field: value, "extra": 1}),
        )
        .await;
        assert_eq!(status, 400, "{p} with an undocumented field");
        let (status, problem) = send(&app, method, &p, &admin, None, &json!({field: value})).await;
        assert_eq!(status, 200, "{p}: {problem}");
    }
}

#[actix_web::test]
async fn the_event_page_is_what_its_schema_says() {
    let app = spawn_app().await;
    let created = app.create_ok(&admin(), lead("Gasthaus Schema")).await;
    let r = app
        .req(
            Method::POST,
            &format!("/api/leads/{}/activities", created["id"].as_str().unwrap()),
            &admin(),
        )
        .json(&json!({"type": "CALL"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let doc = openapi(&app).await;
    crate::sse_client::settled_feed(&app.client, &app.base, &admin(), &app.database_url).await;
    let page: Value = app.get(&admin(), "/api/events").await.json().await.unwrap();
    assert!(page["events"].as_array().unwrap().len() >= 2, "{page}");
    let schema = response_schema(&doc, "get", "/api/events", 200);
    assert_conforms(&doc, schema, &page, "GET /api/events");
    assert_round_trips::<freshplan_api::events::EventPage>(&page, "GET /api/events");
    // The stream documents its messages (OpenAPI 3.2 `itemSchema`): a `message` event whose
    // `data` is one CloudEvent (or the last, `token-expired` one).
    let item = &doc["paths"]["/api/events/stream"]["get"]["responses"]["200"]["content"]["text/event-stream"]
        ["itemSchema"];
    assert_eq!(
        item["properties"]["data"]["contentMediaType"],
        "application/json"
    );
    let data = &item["properties"]["data"]["contentSchema"]["anyOf"][0];
    assert_conforms(&doc, data, &page["events"][0], "an event-stream message");
}
