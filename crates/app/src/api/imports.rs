//! Imports of lead lists (issue 15): `POST /api/leads/imports` (a CSV file; `dryRun=true`
//! validates without writing), `GET /api/leads/imports/{id}` (state, counts, the refused and
//! duplicate rows) and `GET /api/leads/imports/{id}/rows` (every processed row, paged). The rows'
//! field rules are a single create's ([`common::lead_data`]); the running lives in
//! [`crate::imports`].

use actix_web::http::{StatusCode, header};
use actix_web::{HttpRequest, HttpResponse, web};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use uuid::Uuid;

use freshplan_api::imports as wire;
use freshplan_api::leads as api;
use freshplan_import_csv::{Field, Record, SheetError};
use freshplan_kernel::UserId;
use freshplan_leads::access;
use freshplan_leads::import::{ImportCandidate, ImportState, RowReport};
use freshplan_leads::model::{FieldError, LeadSource};
use freshplan_leads::ports::{LeadStore, LeadTx};
use freshplan_store_postgres::imports::{Claimed, ImportRecord, NewImport, Registered, StoredRow};

use crate::AppState;
use crate::api::common;
use crate::auth::Caller;
use crate::http;
use crate::imports::{self as runner, Prepared};
use crate::problem::Problem;

type Result<T> = std::result::Result<T, Problem>;

/// The largest file accepted (larger is 413).
pub const FILE_LIMIT: usize = 20 * 1024 * 1024;

/// Refused and duplicate rows an import's resource lists (more: `/rows?problemsOnly=true`).
const PROBLEMS_LISTED: u32 = 1_000;

/// The media types a CSV file arrives as (browsers send Excel's for `.csv` on Windows).
const CSV_TYPES: [&str; 5] = [
    "text/csv",
    "application/csv",
    "text/comma-separated-values",
    "application/vnd.ms-excel",
    "text/plain",
];

/// Registers the import routes (before `/api/leads/{id}`, which would take `imports` for an id).
/// Each path is a resource of its own whose other methods get the 405 of
/// [`crate::routes::fallback`], not the lead routes' answer for an id named `imports`.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/api/leads/imports")
            .route(web::post().to(create_import))
            .default_service(web::to(crate::routes::fallback)),
    )
    .service(
        web::resource("/api/leads/imports/{id}")
            .route(web::get().to(get_import))
            .default_service(web::to(crate::routes::fallback)),
    )
    .service(
        web::resource("/api/leads/imports/{id}/rows")
            .route(web::get().to(list_rows))
            .default_service(web::to(crate::routes::fallback)),
    );
}

/// A row's cells as a create body, through the field rules of a single create.
pub fn candidate(record: &Record) -> std::result::Result<ImportCandidate, Vec<FieldError>> {
    let mut body = api::LeadCreate::default();
    let mut errors = Vec::new();
    let mut owner = None;
    let mut registered_at = None;
    let mut source_given = false;
    for (field, raw) in &record.values {
        let name = field.api_name();
        // A cell's line breaks (Alt+Enter in Excel, e.g. an address's second line) join its
        // lines with ", ": no lead field holds more than one line.
        let value = if raw.contains(['\n', '\r']) {
            let lines: Vec<&str> = raw
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .collect();
            field.normalise(&lines.join(", "))
        } else {
            field.normalise(raw)
        };
        let refuse = |errors: &mut Vec<FieldError>, message: &str| {
            errors.push(FieldError::new(name, message));
        };
        match field {
            Field::CompanyName => body.company_name = value,
            Field::ContactPerson => body.contact_person = Some(value),
            Field::Email => body.email = Some(value),
            Field::Phone => body.phone = Some(value),
            Field::Website => body.website = Some(value),
            Field::Street => body.street = Some(value),
            Field::PostalCode => body.postal_code = Some(value),
            Field::City => body.city = Some(value),
            Field::CountryCode => body.country_code = Some(value),
            Field::Industry => body.industry = Some(value),
            Field::SourceCampaign => body.source_campaign = Some(value),
            Field::BusinessType => body.business_type = enum_value(name, &value, &mut errors),
            Field::KitchenSize => body.kitchen_size = enum_value(name, &value, &mut errors),
            Field::Source => {
                source_given = true;
                body.source = enum_value(name, &value, &mut errors);
            }
            Field::EmployeeCount => match value.parse::<i64>() {
                Ok(n) => body.employee_count = Some(n),
                Err(_) => refuse(&mut errors, "must be a whole number"),
            },
            Field::EstimatedVolume => match value.parse::<f64>() {
                Ok(v) if v.is_finite() => body.estimated_volume = Some(v),
                _ => refuse(&mut errors, "must be a number (e.g. 1.234,50 or 1234.50)"),
            },
            Field::EmailConsent => match value.as_str() {
                "true" => body.email_consent = Some(true),
                "false" => body.email_consent = Some(false),
                _ => refuse(&mut errors, "must be yes or no (ja/nein, x for yes)"),
            },
            Field::RegisteredAt => match OffsetDateTime::parse(&value, &Rfc3339) {
                Ok(t) => registered_at = Some(t),
                Err(_) => refuse(
                    &mut errors,
                    "must be a date (DD.MM.YYYY or YYYY-MM-DD) or an RFC 3339 date-time",
                ),
            },
            Field::OwnerUserId => match UserId::parse(&value) {
                Ok(u) => owner = Some(u),
                Err(e) => errors.push(FieldError::new(name, e.to_string())),
            },
        }
    }
    match common::lead_data(body) {
        Ok((mut data, _)) if errors.is_empty() => {
            if !source_given {
                data.source = LeadSource::Import;
            }
            Ok(ImportCandidate {
                line: record.line,
                data,
                registered_at,
                owner,
            })
        }
        Ok(_) => Err(errors),
        Err(mut more) => {
            errors.append(&mut more);
            Err(errors)
        }
    }
}

/// An API enum from its (normalised) name; an unknown name is refused with the allowed ones.
fn enum_value<T: serde::de::DeserializeOwned + serde::Serialize>(
    field: &'static str,
    value: &str,
    errors: &mut Vec<FieldError>,
) -> Option<T> {
    match serde_json::from_value(serde_json::Value::String(value.to_owned())) {
        Ok(v) => Some(v),
        Err(_) => {
            errors.push(FieldError::new(field, allowed_values(field)));
            None
        }
    }
}

fn allowed_values(field: &str) -> &'static str {
    match field {
        "businessType" => {
            "must be one of RESTAURANT, HOTEL, CANTEEN, CATERING, OTHER (or Gaststätte, Kantine, …)"
        }
        "kitchenSize" => "must be one of SMALL, MEDIUM, LARGE (or klein, mittel, groß)",
        _ => "must be one of WEB, EMAIL, PHONE, EVENT, PARTNER, IMPORT (or Messe, Telefon, …)",
    }
}

/// The `charset` of a CSV Content-Type; 415 for anything but CSV.
fn csv_charset(req: &HttpRequest) -> Result<Option<String>> {
    let ct = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let mut parts = ct.split(';');
    let mime = parts.next().unwrap_or("").trim().to_ascii_lowercase();
    if !CSV_TYPES.contains(&mime.as_str()) {
        return Err(Problem::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-media-type",
            "Send the file as text/csv (optionally with a charset parameter).",
        ));
    }
    Ok(parts.find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case("charset")
            .then(|| v.trim().trim_matches('"').to_owned())
    }))
}

/// `dryRun`, and `mapping` (repeatable: `header:field`, the field by its API name).
fn import_params(query: &str) -> Result<(bool, Vec<(String, Field)>)> {
    let mut dry_run = None;
    let mut mapping = Vec::new();
    for (k, v) in form_urlencoded::parse(query.as_bytes()) {
        match k.as_ref() {
            "dryRun" if dry_run.is_none() => {
                dry_run = Some(match v.as_ref() {
                    "true" => true,
                    "false" => false,
                    _ => return Err(Problem::bad_field("dryRun", "must be true or false")),
                });
            }
            "dryRun" => return Err(Problem::bad_field("dryRun", "given more than once")),
            "mapping" => {
                let entry = v
                    .rsplit_once(':')
                    .filter(|(header, _)| {
                        !header.chars().any(char::is_control)
                            && header.chars().any(|c| !c.is_whitespace() && c != ':')
                    })
                    .and_then(|(header, field)| {
                        Field::from_api_name(field).map(|f| (header.to_owned(), f))
                    })
                    .ok_or_else(|| {
                        Problem::bad_field(
                            "mapping",
                            format!(
                                "must be `column header:field` with a field of {}",
                                Field::ALL.map(Field::api_name).join(", ")
                            ),
                        )
                    })?;
                mapping.push(entry);
            }
            other => return Err(Problem::bad_field(other, "unknown query parameter")),
        }
    }
    Ok((dry_run.unwrap_or(false), mapping))
}

/// A file that cannot be read as a whole.
fn sheet_problem(e: &SheetError) -> Problem {
    match e {
        SheetError::TooManyRows { .. } => Problem::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload-too-large",
            e.to_string(),
        ),
        SheetError::UnknownCharset(_) => Problem::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-media-type",
            e.to_string(),
        ),
        _ => Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-file",
            e.to_string(),
        ),
    }
}

fn columns(prepared: &Prepared) -> (serde_json::Value, serde_json::Value) {
    let columns = prepared
        .sheet
        .columns()
        .iter()
        .map(|c| serde_json::json!({"header": c.header, "field": c.field.map(Field::api_name)}))
        .collect();
    let unknown = prepared
        .sheet
        .unknown_columns()
        .into_iter()
        .map(|h| serde_json::Value::String(h.to_owned()))
        .collect();
    (
        serde_json::Value::Array(columns),
        serde_json::Value::Array(unknown),
    )
}

fn columns_to_wire(columns: &serde_json::Value) -> Vec<wire::ImportColumn> {
    columns
        .as_array()
        .map(|a| {
            a.iter()
                .map(|c| wire::ImportColumn {
                    header: c["header"].as_str().unwrap_or_default().to_owned(),
                    field: c["field"].as_str().map(str::to_owned),
                })
                .collect()
        })
        .unwrap_or_default()
}

fn strings(v: &serde_json::Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn stored_row_to_wire(r: &StoredRow) -> wire::ImportRow {
    let outcome = match r.outcome.as_str() {
        "CREATED" => wire::RowOutcome::Created,
        "REFUSED" => wire::RowOutcome::Refused,
        _ => wire::RowOutcome::Duplicate,
    };
    wire::ImportRow {
        line: r.line,
        outcome,
        lead_id: (outcome == wire::RowOutcome::Created)
            .then_some(r.lead_id)
            .flatten(),
        existing_lead_id: (outcome == wire::RowOutcome::Duplicate)
            .then_some(r.lead_id)
            .flatten(),
        duplicate_of_line: r.other_line,
        duplicate_kind: r.kind.clone(),
        errors: r
            .errors
            .iter()
            .map(|(field, message)| wire::RowError {
                field: field.clone(),
                message: message.clone(),
            })
            .collect(),
    }
}

fn record_to_wire(r: &ImportRecord, problems: Vec<wire::ImportRow>) -> wire::LeadImport {
    wire::LeadImport {
        id: Some(r.id),
        dry_run: false,
        state: match r.state {
            ImportState::Running => wire::ImportState::Running,
            ImportState::Succeeded => wire::ImportState::Succeeded,
            ImportState::Failed => wire::ImportState::Failed,
        },
        encoding: r.encoding.clone(),
        delimiter: r.delimiter.clone(),
        columns: columns_to_wire(&r.columns),
        unknown_columns: strings(&r.unknown_columns),
        rows: r.total_rows,
        processed: r.processed,
        created: r.created,
        refused: r.refused,
        duplicates: r.duplicates,
        problems,
        error: r.error.clone(),
        created_at: r.created_at,
        finished_at: r.finished_at,
    }
}

fn count(reports: &[RowReport], name: &str) -> u32 {
    u32::try_from(reports.iter().filter(|r| r.outcome.name() == name).count()).unwrap_or(u32::MAX)
}

/// The import as the caller sees it now, with its first problems.
async fn current(state: &AppState, caller: &Caller, id: Uuid) -> Result<wire::LeadImport> {
    let mut tx = state.leads.store().begin(&caller.0).await?;
    let record = tx
        .import_record(id)
        .await?
        .ok_or_else(|| Problem::not_found("No import with this id is visible to you."))?;
    let problems = tx.import_rows(id, true, 0, PROBLEMS_LISTED).await?;
    tx.commit().await?;
    Ok(record_to_wire(
        &record,
        problems.items.iter().map(stored_row_to_wire).collect(),
    ))
}

fn accepted(import: &wire::LeadImport) -> Result<HttpResponse> {
    let id = import.id.unwrap_or_default();
    Ok(HttpResponse::Accepted()
        .insert_header((header::LOCATION, format!("/api/leads/imports/{id}")))
        .json(import))
}

/// `POST /api/leads/imports`
#[utoipa::path(post, path = "/api/leads/imports", operation_id = "import_leads", tag = "imports", security(("bearer" = [])),
    params(
        ("dryRun" = Option<bool>, Query, description = "Validate every row with the rules of a single create and report, without writing anything"),
        ("mapping" = Option<Vec<String>>, Query, explode = true, pattern = r"^[^\u0000-\u001F\u007F-\u009F]*[^\s:\u0000-\u001F\u007F-\u009F][^\u0000-\u001F\u007F-\u009F]*:(companyName|contactPerson|email|phone|website|street|postalCode|city|countryCode|businessType|kitchenSize|employeeCount|estimatedVolume|industry|source|sourceCampaign|emailConsent|registeredAt|ownerUserId)$", description = "Repeatable `column header:field` (the field by its API name), winning over the recognised column titles, e.g. `mapping=Kunde:companyName`"),
        ("Idempotency-Key" = Option<String>, Header, pattern = "^[!-~]{1,255}$", description = "The same file with the same key is imported once: a retry answers the first import")),
    request_body(content = String, content_type = "text/csv", description = "The file: UTF-8 (with or without BOM) or Windows-1252 (German Excel), `;` or `,` separated, a header line, at most 20 MB and 50,000 rows"),
    responses(
        (status = 200, description = "The dry run's report (nothing written)", body = wire::LeadImport),
        (status = 202, description = "The import, running in the background (poll its Location)", body = wire::LeadImport,
            headers(("Location" = String, description = "/api/leads/imports/{id}")),
            links(("GetImportById" = (operation_id = "get_import", parameters(("id" = "$response.body#/id")))))),
        (status = 400, response = crate::openapi::BadRequest),
        (status = 401, response = crate::openapi::Unauthorized),
        (status = 403, response = crate::openapi::Forbidden),
        (status = 413, response = crate::openapi::TooLarge),
        (status = 415, response = crate::openapi::UnsupportedMediaType),
        (status = 422, response = crate::openapi::Unprocessable),
        (status = 503, response = crate::openapi::Unavailable)))]
pub async fn create_import(
    req: HttpRequest,
    state: web::Data<AppState>,
    caller: Caller,
    payload: web::Payload,
) -> Result<HttpResponse> {
    let (dry_run, mapping) = import_params(req.query_string())?;
    if !access::may_import(&caller.0) {
        return Err(Problem::forbidden("your role cannot create leads"));
    }
    let charset = csv_charset(&req)?;
    let idempotency = common::idempotency_key(&req)?;
    let body = http::read_body_up_to(&req, payload, FILE_LIMIT, "20 MB").await?;
    let convert = state.imports.convert();
    // Decoding and reading 50,000 rows is CPU work of a few hundred milliseconds: off the HTTP
    // worker, whose other connections would wait for it.
    let prepared = {
        let (body, charset, mapping) = (body.clone(), charset.clone(), mapping.clone());
        web::block(move || runner::prepare(&body, charset, mapping, convert))
            .await
            .map_err(|e| Problem::internal(&e))?
            .map_err(|e| sheet_problem(&e))?
    };
    let rows = u32::try_from(
        prepared
            .sheet
            .count_records()
            .map_err(|e| sheet_problem(&e))?,
    )
    .unwrap_or(u32::MAX);
    let (columns, unknown) = columns(&prepared);
    if dry_run {
        let reports = runner::dry_run(&state.leads, &caller.0, &prepared).await?;
        return Ok(HttpResponse::Ok().json(wire::LeadImport {
            id: None,
            dry_run: true,
            state: wire::ImportState::Validated,
            encoding: prepared.sheet.encoding().to_owned(),
            delimiter: prepared.sheet.delimiter().to_string(),
            columns: columns_to_wire(&columns),
            unknown_columns: strings(&unknown),
            rows,
            processed: rows,
            created: count(&reports, "created"),
            refused: count(&reports, "refused"),
            duplicates: count(&reports, "duplicate"),
            problems: reports
                .iter()
                .filter(|r| r.outcome.name() != "created")
                .map(|r| runner::row_to_wire(r, true))
                .collect(),
            error: None,
            created_at: OffsetDateTime::now_utc(),
            finished_at: Some(OffsetDateTime::now_utc()),
        }));
    }
    let mapping_json = runner::mapping_json(&mapping);
    let hash = idempotency.as_ref().map(|_| {
        let mut keyed = body.to_vec();
        keyed.extend_from_slice(format!("\0{charset:?}\0{mapping_json}").as_bytes());
        http::body_hash(&keyed)
    });
    let id = Uuid::now_v7();
    let importer = &state.imports;
    let mut tx = state.leads.store().begin(&caller.0).await?;
    let registered = tx
        .register_import(&NewImport {
            id,
            actor: &caller.0,
            idempotency: idempotency.as_deref().zip(hash.as_deref()),
            file: &body,
            charset: charset.as_deref(),
            mapping: mapping_json.clone(),
            encoding: prepared.sheet.encoding(),
            delimiter: prepared.sheet.delimiter(),
            columns,
            unknown_columns: unknown,
            total_rows: rows,
            worker: importer.worker(),
            lease: importer.lease(),
        })
        .await?;
    tx.commit().await?;
    if let Registered::Existing { id, request_hash } = registered {
        if Some(request_hash) != hash {
            return Err(freshplan_leads::LeadError::IdempotencyMismatch.into());
        }
        return accepted(&current(&state, &caller, id).await?);
    }
    drop(prepared);
    importer.spawn(Claimed {
        id,
        actor: caller.0.clone(),
        file: body.to_vec(),
        charset,
        mapping: mapping_json,
        processed: 0,
    });
    accepted(&current(&state, &caller, id).await?)
}

/// `GET /api/leads/imports/{id}`
#[utoipa::path(get, path = "/api/leads/imports/{id}", operation_id = "get_import", tag = "imports", security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses(
        (status = 200, description = "The import: state, counts, and its first 1,000 refused or duplicate rows", body = wire::LeadImport),
        (status = 400, response = crate::openapi::BadRequest),
        (status = 401, response = crate::openapi::Unauthorized),
        (status = 404, response = crate::openapi::NotFound),
        (status = 503, response = crate::openapi::Unavailable)))]
pub async fn get_import(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<String>,
) -> Result<HttpResponse> {
    let id = http::path_id(&id)?;
    Ok(HttpResponse::Ok().json(current(&state, &caller, id).await?))
}

/// `GET /api/leads/imports/{id}/rows`
#[utoipa::path(get, path = "/api/leads/imports/{id}/rows", operation_id = "list_import_rows", tag = "imports", security(("bearer" = [])),
    params(("id" = Uuid, Path),
        ("page" = Option<u32>, Query, minimum = 0, maximum = 1000000, description = "0-based page"),
        ("size" = Option<u32>, Query, minimum = 1, maximum = 200, description = "Page size (default 20)"),
        ("problemsOnly" = Option<bool>, Query, description = "Only the refused and duplicate rows")),
    responses(
        (status = 200, description = "The processed rows in line order: each created lead's id, each refusal's fields", body = wire::ImportRowPage),
        (status = 400, response = crate::openapi::BadRequest),
        (status = 401, response = crate::openapi::Unauthorized),
        (status = 404, response = crate::openapi::NotFound),
        (status = 503, response = crate::openapi::Unavailable)))]
pub async fn list_rows(
    req: HttpRequest,
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<String>,
) -> Result<HttpResponse> {
    let id = http::path_id(&id)?;
    let mut page = 0;
    let mut size = 20;
    let mut problems_only = false;
    for (k, v) in common::params(req.query_string(), &["page", "size", "problemsOnly"])? {
        match k.as_str() {
            "problemsOnly" => {
                problems_only = match v.as_str() {
                    "true" => true,
                    "false" => false,
                    _ => return Err(Problem::bad_field("problemsOnly", "must be true or false")),
                }
            }
            "page" => {
                page = v
                    .parse::<u32>()
                    .ok()
                    .filter(|p| *p <= 1_000_000)
                    .ok_or_else(|| Problem::bad_field("page", "must be 0..1000000"))?;
            }
            _ => {
                size = v
                    .parse::<u32>()
                    .ok()
                    .filter(|s| (1..=200).contains(s))
                    .ok_or_else(|| Problem::bad_field("size", "must be 1..200"))?;
            }
        }
    }
    let mut tx = state.leads.store().begin(&caller.0).await?;
    if tx.import_record(id).await?.is_none() {
        return Err(Problem::not_found(
            "No import with this id is visible to you.",
        ));
    }
    let rows = tx.import_rows(id, problems_only, page, size).await?;
    tx.commit().await?;
    Ok(HttpResponse::Ok().json(wire::ImportRowPage {
        data: rows.items.iter().map(stored_row_to_wire).collect(),
        page,
        size,
        total: rows.total,
        total_pages: rows.total.div_ceil(u64::from(size)),
    }))
}
