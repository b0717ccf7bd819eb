//! Leads (SPEC §4, §9, §13): list, create, read, merge-patch, soft-delete, reassign, stop and
//! resume the protection clock, export and erase the person's data. Bodies are `freshplan_api::leads`; this module converts them to and
//! from the domain.

use std::collections::BTreeSet;

use actix_web::http::{StatusCode, header};
use actix_web::{HttpRequest, HttpResponse, web};

use freshplan_api::leads as api;
use freshplan_api::privacy;
use freshplan_api::territories::TerritoryRef;
use freshplan_leads::lead::limits;
use freshplan_leads::model::CompanyName;
use freshplan_leads::personal::MailRecord;
use freshplan_leads::protection::ProtectionPolicy;
use freshplan_leads::service::CreateLead;
use freshplan_leads::{Lead, LeadData, LeadPatch};
use freshplan_territory::Territory;

use crate::AppState;
use crate::api::common;
use crate::auth::Caller;
use crate::http::{self, Wire, lead_etag, parse_json, require_json, wire_enum};
use crate::problem::Problem;

type Result<T> = std::result::Result<T, Problem>;

wire_enum!(freshplan_leads::model::BusinessType => api::BusinessType { Restaurant, Hotel, Canteen, Catering, Other });
wire_enum!(freshplan_leads::model::KitchenSize => api::KitchenSize { Small, Medium, Large });
wire_enum!(freshplan_leads::model::LeadSource => api::LeadSource { Web, Email, Phone, Event, Partner, Import });
wire_enum!(freshplan_leads::personal::ConsentSource => api::ConsentSource { Api, Unsubscribe, Import, Erasure });
wire_enum!(freshplan_leads::status::LeadStatus => api::LeadStatus {
    Registered, Active, Reminder, GracePeriod, Qualified, Converted, Lost, Expired, Deleted
});

/// Registers the lead routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/api/leads", web::get().to(list_leads))
        .route("/api/leads", web::post().to(create_lead))
        .route("/api/leads/{id}", web::get().to(get_lead))
        .route("/api/leads/{id}", web::patch().to(patch_lead))
        .route("/api/leads/{id}", web::delete().to(delete_lead))
        .route("/api/leads/{id}/owner", web::put().to(reassign))
        .route("/api/leads/{id}/clock/stop", web::post().to(stop_clock))
        .route("/api/leads/{id}/clock/resume", web::post().to(resume_clock))
        .route(
            "/api/leads/{id}/personal-data",
            web::get().to(personal_data),
        )
        .route("/api/leads/{id}/erasure", web::post().to(erase));
}

/// The API form of a lead (SPEC §4.1).
pub fn to_api(lead: &Lead, policy: &ProtectionPolicy) -> api::Lead {
    let t = Territory::get(lead.territory);
    let d = &lead.data;
    let mark = |m: &Option<freshplan_leads::lead::FollowUpMark>| {
        m.as_ref().map(|m| api::FollowUpMark {
            status: if m.status == "SENT" {
                api::FollowUpStatus::Sent
            } else {
                api::FollowUpStatus::Skipped
            },
            processed_at: m.processed_at,
            reason: m.reason.clone(),
        })
    };
    api::Lead {
        id: lead.id,
        version: lead.version,
        company_name: d.company_name.as_str().to_owned(),
        contact_person: d.contact_person.clone(),
        email: d.email.as_ref().map(|e| e.as_str().to_owned()),
        phone: d.phone.clone(),
        website: d.website.clone(),
        street: d.street.clone(),
        postal_code: d.postal_code.clone(),
        city: d.city.clone(),
        country_code: d.country_code.clone(),
        territory: TerritoryRef {
            id: t.id.as_str().into(),
            name: t.name.into(),
            currency_code: t.currency_code.into(),
        },
        business_type: d.business_type.map(Wire::wire),
        kitchen_size: d.kitchen_size.map(Wire::wire),
        employee_count: d.employee_count.map(i64::from),
        estimated_volume: d.estimated_volume.map(|v| v.cents() as f64 / 100.0),
        industry: d.industry.clone(),
        source: d.source.wire(),
        source_campaign: d.source_campaign.clone(),
        email_consent: d.email_consent,
        email_consent_at: lead.email_consent_at,
        email_consent_source: lead.email_consent_source.map(Wire::wire),
        erased_at: lead.erased_at,
        status: lead.status.wire(),
        owner_user_id: lead.owner.as_ref().map(|u| u.as_str().to_owned()),
        collaborator_user_ids: lead
            .collaborators
            .iter()
            .map(|u| u.as_str().to_owned())
            .collect(),
        registered_at: lead.registered_at,
        last_activity_at: lead.last_activity_at,
        last_meaningful_contact_at: lead.last_meaningful_contact_at,
        protection: api::Protection {
            protected_until: lead.protected_until(policy),
            reminder_at: lead.protection.reminder_at,
            grace_until: lead.protection.grace_until,
            clock_stopped_at: lead.protection.clock_stopped_at,
            stop_reason: lead.protection.stop_reason.clone(),
            paused_seconds: lead.protection.paused_seconds,
        },
        follow_ups: api::FollowUps {
            t3: mark(&lead.follow_ups.t3),
            t7: mark(&lead.follow_ups.t7),
        },
        created_at: lead.created_at,
        created_by: lead.created_by.as_str().to_owned(),
        updated_at: lead.updated_at,
        updated_by: lead.updated_by.as_str().to_owned(),
    }
}

/// A `POST /api/leads` body as the domain's lead data and backdated registration.
pub fn create_command(body: api::LeadCreate) -> Result<(LeadData, Option<time::OffsetDateTime>)> {
    common::lead_data(body).map_err(Problem::validation)
}

/// A merge patch as the domain's [`LeadPatch`].
pub fn patch_command(body: api::LeadPatch) -> Result<LeadPatch> {
    let mut errs = common::Errors::default();
    // A cleared field is `Some(None)`; a value that fails its rule leaves the field unpatched
    // and is reported.
    let mut text = |field, v: Option<Option<String>>, max| -> Option<Option<String>> {
        v.map(|v| errs.text(field, v, max))
    };
    let contact_person = text("contactPerson", body.contact_person, limits::CONTACT_PERSON);
    let phone = text("phone", body.phone, limits::PHONE);
    let website = text("website", body.website, limits::WEBSITE);
    let street = text("street", body.street, limits::STREET);
    let postal_code = text("postalCode", body.postal_code, limits::POSTAL_CODE);
    let city = text("city", body.city, limits::CITY);
    let industry = text("industry", body.industry, limits::INDUSTRY);
    let source_campaign = text(
        "sourceCampaign",
        body.source_campaign,
        limits::SOURCE_CAMPAIGN,
    );
    let company_name = body.company_name.and_then(|c| {
        if errs.within("companyName", &c, CompanyName::MAX_LEN) {
            errs.take(CompanyName::parse(&c))
        } else {
            None
        }
    });
    let email = body.email.map(|e| errs.email(e));
    let country_code = body.country_code.and_then(|c| errs.country(&c));
    let employee_count = body
        .employee_count
        .map(|n| n.and_then(|n| errs.employees(n)));
    let estimated_volume = body
        .estimated_volume
        .map(|v| v.and_then(|v| errs.volume(v)));
    let owner_user_id = body
        .owner_user_id
        .and_then(|u| errs.user("ownerUserId", &u));
    let collaborator_user_ids = body.collaborator_user_ids.map(|ids| {
        ids.unwrap_or_default()
            .iter()
            .filter_map(|u| errs.user("collaboratorUserIds", u))
            .collect::<BTreeSet<_>>()
    });
    errs.finish()?;
    Ok(LeadPatch {
        company_name,
        contact_person,
        email,
        phone,
        website,
        street,
        postal_code,
        city,
        country_code,
        business_type: body.business_type.map(|b| b.map(Wire::wire)),
        kitchen_size: body.kitchen_size.map(|k| k.map(Wire::wire)),
        employee_count,
        estimated_volume,
        industry,
        source: body.source.map(Wire::wire),
        source_campaign,
        email_consent: body.email_consent,
        status: body.status.map(|s| api::LeadStatus::from(s).wire()),
        owner_user_id,
        collaborator_user_ids,
    })
}

fn lead_response(status: StatusCode, state: &AppState, lead: &Lead) -> HttpResponse {
    HttpResponse::build(status)
        .insert_header((header::ETAG, lead_etag(lead.id, lead.version)))
        .json(to_api(lead, state.leads.policy()))
}

/// `GET /api/leads`
#[utoipa::path(get, path = "/api/leads", tag = "leads", security(("bearer" = [])),
    params(
        ("page" = Option<u32>, Query, minimum = 0, maximum = 1000000, description = "0-based page"),
        ("size" = Option<u32>, Query, minimum = 1, maximum = 200, description = "Page size (default 20)"),
        ("sort" = Option<String>, Query, pattern = r"^(createdAt|updatedAt|companyName|status|registeredAt|lastActivityAt|estimatedVolume|city)(,([aA][sS][cC]|[dD][eE][sS][cC]))?$", description = "field,asc|desc (default createdAt,asc)"),
        ("status" = Option<Vec<api::LeadStatus>>, Query, explode = true, description = "Repeatable; also comma-separated"),
        ("territory" = Option<String>, Query, pattern = "^([dD][eE]|[cC][hH])$", description = "DE or CH (any case)"),
        ("ownerUserId" = Option<String>, Query, min_length = 1, max_length = 64, pattern = r"^[^\u0000-\u001F\u007F-\u009F]*[^\s\u0000-\u001F\u007F-\u009F][^\u0000-\u001F\u007F-\u009F]*$"),
        ("businessType" = Option<api::BusinessType>, Query),
        ("q" = Option<String>, Query, max_length = 100, description = "Case-insensitive substring of company, contact, email, city; % and _ are literal"),
        ("includeDeleted" = Option<bool>, Query, description = "Admins only: list soft-deleted leads too")),
    responses(
        (status = 200, description = "A page of leads, with a weak ETag", body = api::LeadPage,
            headers(("ETag" = String, description = "Weak; differs per page, filter and data"))),
        (status = 304, description = "Not modified (If-None-Match)"),
        (status = 400, response = crate::openapi::BadRequest),
        (status = 401, response = crate::openapi::Unauthorized),
        (status = 403, response = crate::openapi::Forbidden)))]
pub async fn list_leads(
    req: HttpRequest,
    state: web::Data<AppState>,
    caller: Caller,
) -> Result<HttpResponse> {
    let q = http::lead_query(req.query_string())?;
    let page = state.leads.list(&caller.0, &q).await?;
    let body = api::LeadPage {
        data: page
            .items
            .iter()
            .map(|l| to_api(l, state.leads.policy()))
            .collect(),
        page: q.page,
        size: q.size,
        total: page.total,
        total_pages: page.total.div_ceil(u64::from(q.size)),
    };
    let bytes = serde_json::to_vec(&body).map_err(|e| Problem::internal(&e))?;
    let etag = http::weak_etag(&bytes);
    if http::if_none_match(&req, &etag) {
        return Ok(HttpResponse::NotModified()
            .insert_header((header::ETAG, etag))
            .finish());
    }
    Ok(HttpResponse::Ok()
        .insert_header((header::ETAG, etag))
        .content_type("application/json")
        .body(bytes))
}

/// `POST /api/leads`
#[utoipa::path(post, path = "/api/leads", tag = "leads", security(("bearer" = [])),
    params(("Idempotency-Key" = Option<String>, Header, pattern = "^[!-~]{1,255}$", description = "1–255 visible ASCII characters. Replays the first response for 24 h; the same key with another body is 422")),
    request_body(content = api::LeadCreate, description = "Lead fields (SPEC 4.1)"),
    responses(
        (status = 201, description = "The lead", body = api::Lead,
            headers(("ETag" = String, description = "Strong"), ("Location" = String, description = "/api/leads/{id}")),
            links(("GetLeadById" = (operation_id = "get_lead", parameters(("id" = "$response.body#/id")))),
                  ("PatchLeadById" = (operation_id = "patch_lead", parameters(("id" = "$response.body#/id"), ("header.If-Match" = "$response.header.ETag")))),
                  ("DeleteLeadById" = (operation_id = "delete_lead", parameters(("id" = "$response.body#/id"), ("header.If-Match" = "$response.header.ETag")))),
                  ("LogActivityOnLead" = (operation_id = "log_activity", parameters(("id" = "$response.body#/id")))),
                  ("ListActivitiesOfLead" = (operation_id = "list_activities", parameters(("id" = "$response.body#/id")))),
                  ("StopClockOfLead" = (operation_id = "stop_clock", parameters(("id" = "$response.body#/id")))),
                  ("ResumeClockOfLead" = (operation_id = "resume_clock", parameters(("id" = "$response.body#/id")))),
                  ("ReassignLead" = (operation_id = "reassign", parameters(("id" = "$response.body#/id")))),
                  ("ExportPersonalData" = (operation_id = "export_personal_data", parameters(("id" = "$response.body#/id")))),
                  ("EraseLead" = (operation_id = "erase_lead", parameters(("id" = "$response.body#/id"), ("header.If-Match" = "$response.header.ETag")))))),
        (status = 400, response = crate::openapi::BadRequest),
        (status = 401, response = crate::openapi::Unauthorized),
        (status = 403, response = crate::openapi::Forbidden),
        (status = 409, response = crate::openapi::Duplicate),
        (status = 413, response = crate::openapi::TooLarge),
        (status = 415, response = crate::openapi::UnsupportedMediaType),
        (status = 422, response = crate::openapi::Unprocessable)))]
pub async fn create_lead(
    req: HttpRequest,
    state: web::Data<AppState>,
    caller: Caller,
    payload: web::Payload,
) -> Result<HttpResponse> {
    let body = http::read_body(&req, payload).await?;
    require_json(&req, false)?;
    let (data, registered_at) = create_command(parse_json(&body)?)?;
    let idempotency = common::idempotency_key(&req)?.map(|key| (key, http::body_hash(&body)));
    let (lead, _replayed) = state
        .leads
        .create(
            &caller.0,
            CreateLead {
                data,
                registered_at,
                idempotency,
            },
        )
        .await?;
    let mut resp = lead_response(StatusCode::CREATED, &state, &lead);
    resp.headers_mut().insert(
        header::LOCATION,
        header::HeaderValue::from_str(&format!("/api/leads/{}", lead.id))
            .map_err(|e| Problem::internal(&e))?,
    );
    Ok(resp)
}

/// `GET /api/leads/{id}`
#[utoipa::path(get, path = "/api/leads/{id}", tag = "leads", security(("bearer" = [])), params(("id" = Uuid, Path)),
    responses(
        (status = 200, description = "The lead", body = api::Lead, headers(("ETag" = String, description = "Strong; names the version"))),
        (status = 304, description = "Not modified (If-None-Match)"),
        (status = 400, response = crate::openapi::BadRequest),
        (status = 401, response = crate::openapi::Unauthorized),
        (status = 404, response = crate::openapi::NotFound)))]
pub async fn get_lead(
    req: HttpRequest,
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<String>,
) -> Result<HttpResponse> {
    let id = http::path_id(&id)?;
    let lead = state.leads.get(&caller.0, id).await?;
    let etag = lead_etag(lead.id, lead.version);
    if http::if_none_match(&req, &etag) {
        return Ok(HttpResponse::NotModified()
            .insert_header((header::ETAG, etag))
            .finish());
    }
    Ok(lead_response(StatusCode::OK, &state, &lead))
}

/// `PATCH /api/leads/{id}` (JSON merge patch)
#[utoipa::path(patch, path = "/api/leads/{id}", tag = "leads", security(("bearer" = [])),
    params(("id" = Uuid, Path), ("If-Match" = String, Header, pattern = r#"^[ \t]*(\*|(W/)?"[!#-~]*"([ \t]*,[ \t]*(W/)?"[!#-~]*")*)?[ \t]*$"#, description = "The lead's ETag (or `*`); missing or empty is 428, stale is 412")),
    request_body(content((api::LeadPatch = "application/merge-patch+json"), (api::LeadPatch = "application/json"))),
    responses(
        (status = 200, description = "The updated lead", body = api::Lead, headers(("ETag" = String, description = "The new strong ETag"))),
        (status = 400, response = crate::openapi::BadRequest),
        (status = 401, response = crate::openapi::Unauthorized),
        (status = 403, response = crate::openapi::Forbidden),
        (status = 404, response = crate::openapi::NotFound),
        (status = 409, response = crate::openapi::Duplicate),
        (status = 412, response = crate::openapi::PreconditionFailed),
        (status = 413, response = crate::openapi::TooLarge),
        (status = 415, response = crate::openapi::UnsupportedMediaType),
        (status = 422, response = crate::openapi::Unprocessable),
        (status = 428, response = crate::openapi::PreconditionRequired)))]
pub async fn patch_lead(
    req: HttpRequest,
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse> {
    let body = http::read_body(&req, payload).await?;
    let id = http::path_id(&id)?;
    require_json(&req, true)?;
    let patch = patch_command(parse_json(&body)?)?;
    let expected = http::required_if_match(&req, id)?;
    let lead = state.leads.update(&caller.0, id, expected, patch).await?;
    Ok(lead_response(StatusCode::OK, &state, &lead))
}

/// `DELETE /api/leads/{id}`
#[utoipa::path(delete, path = "/api/leads/{id}", tag = "leads", security(("bearer" = [])),
    params(("id" = Uuid, Path), ("If-Match" = String, Header, pattern = r#"^[ \t]*(\*|(W/)?"[!#-~]*"([ \t]*,[ \t]*(W/)?"[!#-~]*")*)?[ \t]*$"#, description = "The lead's ETag (or `*`); missing or empty is 428, stale is 412")),
    responses(
        (status = 204, description = "Soft-deleted"),
        (status = 400, response = crate::openapi::BadRequest),
        (status = 401, response = crate::openapi::Unauthorized),
        (status = 403, response = crate::openapi::Forbidden),
        (status = 404, response = crate::openapi::NotFound),
        (status = 409, response = crate::openapi::Conflict),
        (status = 412, response = crate::openapi::PreconditionFailed),
        (status = 428, response = crate::openapi::PreconditionRequired)))]
pub async fn delete_lead(
    req: HttpRequest,
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<String>,
) -> Result<HttpResponse> {
    let id = http::path_id(&id)?;
    let expected = http::required_if_match(&req, id)?;
    state.leads.delete(&caller.0, id, expected).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// `PUT /api/leads/{id}/owner`
#[utoipa::path(put, path = "/api/leads/{id}/owner", tag = "leads", security(("bearer" = [])),
    params(("id" = Uuid, Path), ("If-Match" = Option<String>, Header, pattern = r#"^[ \t]*(\*|(W/)?"[!#-~]*"([ \t]*,[ \t]*(W/)?"[!#-~]*")*)?[ \t]*$"#, description = "The lead's ETag (or `*`), honoured when sent (empty: as if not sent): stale is 412")),
    request_body(content = api::OwnerChange),
    responses(
        (status = 200, description = "The updated lead", body = api::Lead, headers(("ETag" = String))),
        (status = 400, response = crate::openapi::BadRequest),
        (status = 401, response = crate::openapi::Unauthorized),
        (status = 403, response = crate::openapi::Forbidden),
        (status = 404, response = crate::openapi::NotFound),
        (status = 409, response = crate::openapi::Conflict),
        (status = 412, response = crate::openapi::PreconditionFailed),
        (status = 413, response = crate::openapi::TooLarge),
        (status = 415, response = crate::openapi::UnsupportedMediaType),
        (status = 422, response = crate::openapi::Unprocessable)))]
pub async fn reassign(
    req: HttpRequest,
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse> {
    let body = http::read_body(&req, payload).await?;
    let id = http::path_id(&id)?;
    require_json(&req, false)?;
    let change: api::OwnerChange = parse_json(&body)?;
    let mut errs = common::Errors::default();
    let owner = errs.user("ownerUserId", &change.owner_user_id);
    errs.finish()?;
    let owner = owner.ok_or_else(|| Problem::bad_request("ownerUserId could not be read."))?;
    let lead = state
        .leads
        .reassign(&caller.0, id, http::optional_if_match(&req, id)?, owner)
        .await?;
    Ok(lead_response(StatusCode::OK, &state, &lead))
}

/// `POST /api/leads/{id}/clock/stop`
#[utoipa::path(post, path = "/api/leads/{id}/clock/stop", tag = "leads", security(("bearer" = [])),
    params(("id" = Uuid, Path), ("If-Match" = Option<String>, Header, pattern = r#"^[ \t]*(\*|(W/)?"[!#-~]*"([ \t]*,[ \t]*(W/)?"[!#-~]*")*)?[ \t]*$"#, description = "The lead's ETag (or `*`), honoured when sent (empty: as if not sent): stale is 412")),
    request_body(content = api::ClockStop),
    responses(
        (status = 200, description = "The updated lead", body = api::Lead, headers(("ETag" = String))),
        (status = 400, response = crate::openapi::BadRequest),
        (status = 401, response = crate::openapi::Unauthorized),
        (status = 403, response = crate::openapi::Forbidden),
        (status = 404, response = crate::openapi::NotFound),
        (status = 409, response = crate::openapi::Conflict),
        (status = 412, response = crate::openapi::PreconditionFailed),
        (status = 413, response = crate::openapi::TooLarge),
        (status = 415, response = crate::openapi::UnsupportedMediaType),
        (status = 422, response = crate::openapi::Unprocessable)))]
pub async fn stop_clock(
    req: HttpRequest,
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse> {
    let body = http::read_body(&req, payload).await?;
    let id = http::path_id(&id)?;
    require_json(&req, false)?;
    let stop: api::ClockStop = parse_json(&body)?;
    // The length as sent, before the precondition (the domain trims, then checks it too).
    let mut errs = common::Errors::default();
    errs.within_lines(
        "reason",
        &stop.reason,
        freshplan_leads::protection::MAX_STOP_REASON,
    );
    errs.finish()?;
    let lead = state
        .leads
        .stop_clock(
            &caller.0,
            id,
            http::optional_if_match(&req, id)?,
            &stop.reason,
        )
        .await?;
    Ok(lead_response(StatusCode::OK, &state, &lead))
}

/// `POST /api/leads/{id}/clock/resume`
#[utoipa::path(post, path = "/api/leads/{id}/clock/resume", tag = "leads", security(("bearer" = [])),
    params(("id" = Uuid, Path), ("If-Match" = Option<String>, Header, pattern = r#"^[ \t]*(\*|(W/)?"[!#-~]*"([ \t]*,[ \t]*(W/)?"[!#-~]*")*)?[ \t]*$"#, description = "The lead's ETag (or `*`), honoured when sent (empty: as if not sent): stale is 412")),
    responses(
        (status = 200, description = "The updated lead", body = api::Lead, headers(("ETag" = String))),
        (status = 400, response = crate::openapi::BadRequest),
        (status = 401, response = crate::openapi::Unauthorized),
        (status = 403, response = crate::openapi::Forbidden),
        (status = 404, response = crate::openapi::NotFound),
        (status = 409, response = crate::openapi::Conflict),
        (status = 412, response = crate::openapi::PreconditionFailed)))]
pub async fn resume_clock(
    req: HttpRequest,
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<String>,
) -> Result<HttpResponse> {
    let id = http::path_id(&id)?;
    let lead = state
        .leads
        .resume_clock(&caller.0, id, http::optional_if_match(&req, id)?)
        .await?;
    Ok(lead_response(StatusCode::OK, &state, &lead))
}

/// The API form of a stored mail in the export.
fn export_mail(m: &MailRecord, territory: &str) -> freshplan_api::mails::Mail {
    use freshplan_api::followups::Stage;
    use freshplan_api::mails::MailStatus;
    freshplan_api::mails::Mail {
        id: m.id,
        lead_id: m.lead_id,
        territory: territory.to_owned(),
        stage: if m.stage == "T3" {
            Stage::T3
        } else {
            Stage::T7
        },
        recipient: m.recipient.clone(),
        subject: m.subject.clone(),
        status: match m.status.as_str() {
            "QUEUED" => MailStatus::Queued,
            "SENT" => MailStatus::Sent,
            _ => MailStatus::Dead,
        },
        attempts: m.attempts,
        next_attempt_at: m.next_attempt_at,
        last_error: m.last_error.clone(),
        created_at: m.created_at,
        sent_at: m.sent_at,
        html: m.html.clone(),
        text: m.text.clone(),
        unsubscribe_url: m.unsubscribe_url.clone(),
    }
}

/// `GET /api/leads/{id}/personal-data`
#[utoipa::path(get, path = "/api/leads/{id}/personal-data", operation_id = "export_personal_data", tag = "privacy", security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses(
        (status = 200, description = "Everything stored about the lead's person (DSGVO Art. 15, 20), also for deleted and erased leads; the export is recorded in the audit log. Served with `Cache-Control: no-store`.", body = privacy::PersonalDataExport),
        (status = 400, response = crate::openapi::BadRequest),
        (status = 401, response = crate::openapi::Unauthorized),
        (status = 403, response = crate::openapi::Forbidden),
        (status = 404, response = crate::openapi::NotFound)))]
pub async fn personal_data(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<String>,
) -> Result<HttpResponse> {
    let id = http::path_id(&id)?;
    let export = state.leads.personal_data(&caller.0, id).await?;
    let territory = export.lead.territory.as_str();
    let events = export
        .records
        .events
        .iter()
        .map(|e| serde_json::from_value(e.clone()))
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| Problem::internal(&e))?;
    let body = privacy::PersonalDataExport {
        exported_at: export.exported_at,
        lead: to_api(&export.lead, state.leads.policy()),
        activities: export
            .records
            .activities
            .iter()
            .map(common::activity)
            .collect(),
        consent_history: export
            .records
            .consent
            .iter()
            .map(|c| privacy::ConsentChange {
                consent: c.consent,
                source: c.source.wire(),
                changed_at: c.changed_at,
                changed_by: c.changed_by.as_str().to_owned(),
            })
            .collect(),
        mails: export
            .records
            .mails
            .iter()
            .map(|m| export_mail(m, territory))
            .collect(),
        events,
    };
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(body))
}

/// `POST /api/leads/{id}/erasure`
#[utoipa::path(post, path = "/api/leads/{id}/erasure", operation_id = "erase_lead", tag = "privacy", security(("bearer" = [])),
    params(("id" = Uuid, Path), ("If-Match" = String, Header, pattern = r#"^[ \t]*(\*|(W/)?"[!#-~]*"([ \t]*,[ \t]*(W/)?"[!#-~]*")*)?[ \t]*$"#, description = "The lead's ETag (or `*`); missing or empty is 428, stale is 412 — except for an erased lead, which answers 200 unchanged (idempotent)")),
    request_body(content = privacy::ErasureRequest),
    responses(
        (status = 200, description = "The erased lead (personal fields null, `erasedAt` set) and its ETag. In one transaction: timeline texts redacted, mails withdrawn and stripped, outbox event data redacted, idempotency replays purged, duplicate keys released, `ERASED` entry, `lead.erased.v1` event, audit-log entry. Idempotent.", body = api::Lead, headers(("ETag" = String))),
        (status = 400, response = crate::openapi::BadRequest),
        (status = 401, response = crate::openapi::Unauthorized),
        (status = 403, response = crate::openapi::Forbidden),
        (status = 404, response = crate::openapi::NotFound),
        (status = 409, description = "Another transaction holds the lead (a follow-up run is processing it): retry shortly; nothing was changed", body = Problem),
        (status = 412, response = crate::openapi::PreconditionFailed),
        (status = 413, response = crate::openapi::TooLarge),
        (status = 415, response = crate::openapi::UnsupportedMediaType),
        (status = 422, response = crate::openapi::Unprocessable),
        (status = 428, response = crate::openapi::PreconditionRequired)))]
pub async fn erase(
    req: HttpRequest,
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse> {
    let body = http::read_body(&req, payload).await?;
    let id = http::path_id(&id)?;
    require_json(&req, false)?;
    let request: privacy::ErasureRequest = parse_json(&body)?;
    let expected = http::required_if_match(&req, id)?;
    let reason = privacy::ErasureReason::from(request.reason).wire();
    let lead = state.leads.erase(&caller.0, id, expected, reason).await?;
    Ok(lead_response(StatusCode::OK, &state, &lead))
}
