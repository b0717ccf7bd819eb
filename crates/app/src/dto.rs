//! HTTP DTOs: JSON shapes of SPEC §4.1/§5 and the strict conversion of request bodies into domain
//! commands. Wrong JSON types and unknown fields are 400; values of the right type that the domain
//! refuses are 422 (SPEC §9).

use std::collections::BTreeSet;

use serde::Serialize;
use serde_json::{Map, Value};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use uuid::Uuid;

use freshplan_kernel::UserId;
use freshplan_leads::activity::{Activity, ActivityType};
use freshplan_leads::lead::limits;
use freshplan_leads::model::{
    BusinessType, CompanyName, Email, FieldError, KitchenSize, LeadSource, Volume, bounded_text,
};
use freshplan_leads::status::LeadStatus;
use freshplan_leads::{Lead, LeadData, LeadPatch};
use freshplan_territory::Territory;

use crate::problem::Problem;

fn ts(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_default()
}

/// `{id, name, currencyCode, vatRate, languageCode, timeZone, paymentTermsDays}`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TerritoryDto {
    /// `DE` or `CH`.
    pub id: String,
    /// Display name.
    pub name: String,
    /// ISO 4217.
    pub currency_code: String,
    /// Percent, e.g. 19.0.
    pub vat_rate: f64,
    /// BCP 47.
    pub language_code: String,
    /// IANA zone.
    pub time_zone: String,
    /// Days.
    pub payment_terms_days: u16,
}

impl From<&Territory> for TerritoryDto {
    fn from(t: &Territory) -> Self {
        TerritoryDto {
            id: t.id.as_str().into(),
            name: t.name.into(),
            currency_code: t.currency_code.into(),
            vat_rate: t.vat_rate_percent(),
            language_code: t.language_code.into(),
            time_zone: t.time_zone.into(),
            payment_terms_days: t.payment_terms_days,
        }
    }
}

/// The JSON form of a lead (SPEC §4.1).
pub fn lead_json(lead: &Lead, policy: &freshplan_leads::protection::ProtectionPolicy) -> Value {
    let t = Territory::get(lead.territory);
    let d = &lead.data;
    let mark = |m: &Option<freshplan_leads::lead::FollowUpMark>| {
        m.as_ref().map(|m| serde_json::json!({"status": m.status, "processedAt": ts(m.processed_at), "reason": m.reason}))
    };
    serde_json::json!({
        "id": lead.id,
        "version": lead.version,
        "companyName": d.company_name.as_str(),
        "contactPerson": d.contact_person,
        "email": d.email.as_ref().map(Email::as_str),
        "phone": d.phone,
        "website": d.website,
        "street": d.street,
        "postalCode": d.postal_code,
        "city": d.city,
        "countryCode": d.country_code,
        "territory": {"id": t.id.as_str(), "name": t.name, "currencyCode": t.currency_code},
        "businessType": d.business_type,
        "kitchenSize": d.kitchen_size,
        "employeeCount": d.employee_count,
        "estimatedVolume": d.estimated_volume.map(|v| v.cents() as f64 / 100.0),
        "industry": d.industry,
        "source": d.source,
        "sourceCampaign": d.source_campaign,
        "emailConsent": d.email_consent,
        "emailConsentAt": lead.email_consent_at.map(ts),
        "status": lead.status,
        "ownerUserId": lead.owner,
        "collaboratorUserIds": lead.collaborators,
        "registeredAt": ts(lead.registered_at),
        "lastActivityAt": lead.last_activity_at.map(ts),
        "lastMeaningfulContactAt": lead.last_meaningful_contact_at.map(ts),
        "protection": {
            "protectedUntil": ts(lead.protected_until(policy)),
            "reminderAt": lead.protection.reminder_at.map(ts),
            "graceUntil": lead.protection.grace_until.map(ts),
            "clockStoppedAt": lead.protection.clock_stopped_at.map(ts),
            "stopReason": lead.protection.stop_reason,
            "pausedSeconds": lead.protection.paused_seconds,
        },
        "followUps": {"t3": mark(&lead.follow_ups.t3), "t7": mark(&lead.follow_ups.t7)},
        "createdAt": ts(lead.created_at),
        "createdBy": lead.created_by,
        "updatedAt": ts(lead.updated_at),
        "updatedBy": lead.updated_by,
    })
}

/// The JSON form of an activity (SPEC §5).
pub fn activity_json(a: &Activity) -> Value {
    serde_json::json!({
        "id": a.id,
        "leadId": a.lead_id,
        "type": a.activity_type,
        "occurredAt": ts(a.occurred_at),
        "description": a.description,
        "userId": a.user_id,
        "meaningfulContact": a.meaningful_contact,
        "metadata": a.metadata,
        "createdAt": ts(a.created_at),
    })
}

/// Parses a request body: JSON object or 400.
pub fn parse_object(body: &[u8]) -> Result<Map<String, Value>, Problem> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(Problem::bad_request(
            "The request body must be a JSON object.",
        )),
        Err(e) => Err(Problem::bad_request(format!(
            "The request body is not valid JSON: {e}"
        ))),
    }
}

/// A field of a JSON object: absent, explicitly null, or a value.
enum Slot<T> {
    Absent,
    Null,
    Value(T),
}

/// Strict field access over a JSON object: remembers which fields were read so unknown ones can
/// be reported, and answers 400 for wrong JSON types.
pub struct Fields {
    map: Map<String, Value>,
    known: Vec<&'static str>,
}

impl Fields {
    /// Wraps an object.
    pub fn new(map: Map<String, Value>) -> Fields {
        Fields {
            map,
            known: Vec::new(),
        }
    }

    fn slot(&mut self, name: &'static str) -> Slot<Value> {
        self.known.push(name);
        match self.map.get(name) {
            None => Slot::Absent,
            Some(Value::Null) => Slot::Null,
            Some(v) => Slot::Value(v.clone()),
        }
    }

    fn string(&mut self, name: &'static str) -> Result<Slot<String>, Problem> {
        Ok(match self.slot(name) {
            Slot::Absent => Slot::Absent,
            Slot::Null => Slot::Null,
            Slot::Value(Value::String(s)) => Slot::Value(s),
            Slot::Value(_) => return Err(Problem::bad_field(name, "must be a string")),
        })
    }

    fn bool(&mut self, name: &'static str) -> Result<Slot<bool>, Problem> {
        Ok(match self.slot(name) {
            Slot::Absent => Slot::Absent,
            Slot::Null => Slot::Null,
            Slot::Value(Value::Bool(b)) => Slot::Value(b),
            Slot::Value(_) => return Err(Problem::bad_field(name, "must be a boolean")),
        })
    }

    fn number(&mut self, name: &'static str) -> Result<Slot<serde_json::Number>, Problem> {
        Ok(match self.slot(name) {
            Slot::Absent => Slot::Absent,
            Slot::Null => Slot::Null,
            Slot::Value(Value::Number(n)) => Slot::Value(n),
            Slot::Value(_) => return Err(Problem::bad_field(name, "must be a number")),
        })
    }

    fn array_of_strings(&mut self, name: &'static str) -> Result<Slot<Vec<String>>, Problem> {
        Ok(match self.slot(name) {
            Slot::Absent => Slot::Absent,
            Slot::Null => Slot::Null,
            Slot::Value(Value::Array(items)) => Slot::Value(
                items
                    .into_iter()
                    .map(|v| match v {
                        Value::String(s) => Ok(s),
                        _ => Err(Problem::bad_field(name, "must be an array of strings")),
                    })
                    .collect::<Result<_, _>>()?,
            ),
            Slot::Value(_) => return Err(Problem::bad_field(name, "must be an array of strings")),
        })
    }

    /// 400 when the object has a field nobody asked for.
    pub fn finish(self) -> Result<(), Problem> {
        let unknown: Vec<&String> = self
            .map
            .keys()
            .filter(|k| !self.known.contains(&k.as_str()))
            .collect();
        if unknown.is_empty() {
            Ok(())
        } else {
            let mut p = Problem::bad_request(format!(
                "Unknown field(s): {}",
                unknown
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
            for f in unknown {
                p.errors.push(crate::problem::FieldProblem {
                    field: f.clone(),
                    message: "unknown field".into(),
                });
            }
            Err(p)
        }
    }
}

/// Collects 422 field errors while converting.
#[derive(Default)]
struct Errors(Vec<FieldError>);

impl Errors {
    fn take<T>(&mut self, r: Result<T, FieldError>) -> Option<T> {
        r.map_err(|e| self.0.push(e)).ok()
    }
}

fn text(
    errs: &mut Errors,
    field: &'static str,
    slot: Slot<String>,
    max: usize,
) -> Option<Option<String>> {
    match slot {
        Slot::Absent => None,
        Slot::Null => Some(None),
        Slot::Value(s) => errs.take(bounded_text(field, Some(&s), max)),
    }
}

fn enum_field<T: std::str::FromStr<Err = FieldError>>(
    errs: &mut Errors,
    slot: Slot<String>,
) -> Option<Option<T>> {
    match slot {
        Slot::Absent => None,
        Slot::Null => Some(None),
        Slot::Value(s) => errs.take(s.parse::<T>()).map(Some),
    }
}

fn parse_time(field: &'static str, s: &str) -> Result<OffsetDateTime, FieldError> {
    OffsetDateTime::parse(s, &Rfc3339)
        .map_err(|_| FieldError::new(field, "must be an RFC 3339 date-time"))
}

/// The patchable/creatable data fields, parsed from a body.
struct DataFields {
    company_name: Option<CompanyName>,
    company_given: bool,
    contact_person: Option<Option<String>>,
    email: Option<Option<Email>>,
    phone: Option<Option<String>>,
    website: Option<Option<String>>,
    street: Option<Option<String>>,
    postal_code: Option<Option<String>>,
    city: Option<Option<String>>,
    country_code: Option<Option<String>>,
    business_type: Option<Option<BusinessType>>,
    kitchen_size: Option<Option<KitchenSize>>,
    employee_count: Option<Option<i32>>,
    estimated_volume: Option<Option<Volume>>,
    industry: Option<Option<String>>,
    source: Option<Option<LeadSource>>,
    source_campaign: Option<Option<String>>,
    email_consent: Option<Option<bool>>,
}

fn data_fields(f: &mut Fields, errs: &mut Errors) -> Result<DataFields, Problem> {
    let company = f.string("companyName")?;
    let company_given = !matches!(company, Slot::Absent);
    let company_name = match company {
        Slot::Absent => None,
        Slot::Null => {
            errs.0.push(FieldError::new("companyName", "is required"));
            None
        }
        Slot::Value(s) => errs.take(CompanyName::parse(&s)),
    };
    let email = match f.string("email")? {
        Slot::Absent => None,
        Slot::Null => Some(None),
        Slot::Value(s) if s.trim().is_empty() => Some(None),
        Slot::Value(s) => errs.take(Email::parse(&s)).map(Some),
    };
    let employee_count = match f.number("employeeCount")? {
        Slot::Absent => None,
        Slot::Null => Some(None),
        Slot::Value(n) => match n.as_i64() {
            Some(v) if (0..=i64::from(i32::MAX)).contains(&v) => Some(Some(v as i32)),
            Some(_) => {
                errs.0.push(FieldError::new(
                    "employeeCount",
                    "must be between 0 and 2147483647",
                ));
                None
            }
            None if n.as_f64().is_some_and(|x| x < 0.0) => {
                errs.0.push(FieldError::new(
                    "employeeCount",
                    "must be greater than or equal to 0",
                ));
                None
            }
            None => return Err(Problem::bad_field("employeeCount", "must be an integer")),
        },
    };
    let estimated_volume = match f.number("estimatedVolume")? {
        Slot::Absent => None,
        Slot::Null => Some(None),
        Slot::Value(n) => errs.take(Volume::parse_decimal(&n.to_string())).map(Some),
    };
    let email_consent = match f.bool("emailConsent")? {
        Slot::Absent => None,
        Slot::Null => Some(None),
        Slot::Value(b) => Some(Some(b)),
    };
    Ok(DataFields {
        company_name,
        company_given,
        contact_person: text(
            errs,
            "contactPerson",
            f.string("contactPerson")?,
            limits::CONTACT_PERSON,
        ),
        email,
        phone: text(errs, "phone", f.string("phone")?, limits::PHONE),
        website: text(errs, "website", f.string("website")?, limits::WEBSITE),
        street: text(errs, "street", f.string("street")?, limits::STREET),
        postal_code: text(
            errs,
            "postalCode",
            f.string("postalCode")?,
            limits::POSTAL_CODE,
        ),
        city: text(errs, "city", f.string("city")?, limits::CITY),
        country_code: match f.string("countryCode")? {
            Slot::Absent => None,
            Slot::Null => Some(None),
            Slot::Value(s) => errs
                .take(
                    freshplan_territory::normalise_country_code(&s)
                        .map_err(|e| FieldError::new("countryCode", e.to_string())),
                )
                .map(Some),
        },
        business_type: enum_field(errs, f.string("businessType")?),
        kitchen_size: enum_field(errs, f.string("kitchenSize")?),
        employee_count,
        estimated_volume,
        industry: text(errs, "industry", f.string("industry")?, limits::INDUSTRY),
        source: enum_field(errs, f.string("source")?),
        source_campaign: text(
            errs,
            "sourceCampaign",
            f.string("sourceCampaign")?,
            limits::SOURCE_CAMPAIGN,
        ),
        email_consent,
    })
}

/// A parsed `POST /api/leads` body.
pub struct CreateBody {
    /// The data.
    pub data: LeadData,
    /// Backdated registration.
    pub registered_at: Option<OffsetDateTime>,
}

/// Parses a create body.
pub fn create_body(body: &[u8]) -> Result<CreateBody, Problem> {
    let mut f = Fields::new(parse_object(body)?);
    let mut errs = Errors::default();
    let d = data_fields(&mut f, &mut errs)?;
    let registered_at = match f.string("registeredAt")? {
        Slot::Value(s) => errs.take(parse_time("registeredAt", &s)),
        _ => None,
    };
    f.finish()?;
    if !d.company_given {
        errs.0.push(FieldError::new("companyName", "is required"));
    }
    if !errs.0.is_empty() {
        return Err(Problem::validation(errs.0));
    }
    let company = d
        .company_name
        .ok_or_else(|| Problem::validation(vec![FieldError::new("companyName", "is required")]))?;
    let country = d.country_code.flatten().unwrap_or_else(|| "DE".to_owned());
    let mut data = LeadData::new(company, &country).map_err(|e| Problem::validation(vec![e]))?;
    data.contact_person = d.contact_person.flatten();
    data.email = d.email.flatten();
    data.phone = d.phone.flatten();
    data.website = d.website.flatten();
    data.street = d.street.flatten();
    data.postal_code = d.postal_code.flatten();
    data.city = d.city.flatten();
    data.business_type = d.business_type.flatten();
    data.kitchen_size = d.kitchen_size.flatten();
    data.employee_count = d.employee_count.flatten();
    data.estimated_volume = d.estimated_volume.flatten();
    data.industry = d.industry.flatten();
    data.source = d.source.flatten().unwrap_or(LeadSource::Web);
    data.source_campaign = d.source_campaign.flatten();
    data.email_consent = d.email_consent.flatten().unwrap_or(false);
    Ok(CreateBody {
        data,
        registered_at,
    })
}

/// Parses a JSON merge patch body.
pub fn patch_body(body: &[u8]) -> Result<LeadPatch, Problem> {
    let mut f = Fields::new(parse_object(body)?);
    let mut errs = Errors::default();
    let d = data_fields(&mut f, &mut errs)?;
    let status = match f.string("status")? {
        Slot::Absent => None,
        Slot::Null => {
            errs.0.push(FieldError::new("status", "cannot be cleared"));
            None
        }
        Slot::Value(s) => errs.take(
            s.parse::<LeadStatus>()
                .map_err(|_| FieldError::new("status", format!("unknown status {s:?}"))),
        ),
    };
    let owner_user_id = match f.string("ownerUserId")? {
        Slot::Value(s) => {
            errs.take(UserId::parse(&s).map_err(|e| FieldError::new("ownerUserId", e.to_string())))
        }
        Slot::Null | Slot::Absent => None,
    };
    let collaborator_user_ids = match f.array_of_strings("collaboratorUserIds")? {
        Slot::Absent => None,
        Slot::Null => Some(BTreeSet::new()),
        Slot::Value(v) => errs.take(
            v.iter()
                .map(|s| {
                    UserId::parse(s)
                        .map_err(|e| FieldError::new("collaboratorUserIds", e.to_string()))
                })
                .collect::<Result<BTreeSet<_>, _>>(),
        ),
    };
    // Read-only fields are rejected like unknown ones, except that naming them is kinder.
    for ro in [
        "id",
        "version",
        "territory",
        "protection",
        "followUps",
        "createdAt",
        "createdBy",
        "updatedAt",
        "updatedBy",
        "registeredAt",
        "lastActivityAt",
        "lastMeaningfulContactAt",
        "emailConsentAt",
    ] {
        if f.map.contains_key(ro) {
            return Err(Problem::bad_field(ro, "is read-only"));
        }
    }
    f.finish()?;
    for (name, cleared) in [
        ("countryCode", matches!(d.country_code, Some(None))),
        ("source", matches!(d.source, Some(None))),
        ("emailConsent", matches!(d.email_consent, Some(None))),
    ] {
        if cleared {
            errs.0.push(FieldError::new(name, "cannot be cleared"));
        }
    }
    if !errs.0.is_empty() {
        return Err(Problem::validation(errs.0));
    }
    Ok(LeadPatch {
        company_name: d.company_name,
        contact_person: d.contact_person,
        email: d.email,
        phone: d.phone,
        website: d.website,
        street: d.street,
        postal_code: d.postal_code,
        city: d.city,
        country_code: d.country_code.flatten(),
        business_type: d.business_type,
        kitchen_size: d.kitchen_size,
        employee_count: d.employee_count,
        estimated_volume: d.estimated_volume,
        industry: d.industry,
        source: d.source.flatten(),
        source_campaign: d.source_campaign,
        email_consent: d.email_consent.flatten(),
        status,
        owner_user_id,
        collaborator_user_ids,
    })
}

/// A parsed `POST /activities` body.
pub fn activity_body(body: &[u8]) -> Result<freshplan_leads::LogActivity, Problem> {
    let mut f = Fields::new(parse_object(body)?);
    let mut errs = Errors::default();
    let activity_type = match f.string("type")? {
        Slot::Value(s) => errs.take(
            ActivityType::parse(&s)
                .ok_or_else(|| FieldError::new("type", format!("unknown activity type {s:?}"))),
        ),
        _ => {
            errs.0.push(FieldError::new("type", "is required"));
            None
        }
    };
    let occurred_at = match f.string("occurredAt")? {
        Slot::Value(s) => errs.take(parse_time("occurredAt", &s)),
        _ => None,
    };
    let description = match f.string("description")? {
        Slot::Value(s) => Some(s),
        _ => None,
    };
    f.finish()?;
    match (activity_type, errs.0.is_empty()) {
        (Some(activity_type), true) => Ok(freshplan_leads::LogActivity {
            activity_type,
            occurred_at,
            description,
        }),
        _ => Err(Problem::validation(errs.0)),
    }
}

/// Parses `{"ownerUserId": "…"}`.
pub fn owner_body(body: &[u8]) -> Result<UserId, Problem> {
    let mut f = Fields::new(parse_object(body)?);
    let s = f.string("ownerUserId")?;
    f.finish()?;
    match s {
        Slot::Value(s) => UserId::parse(&s)
            .map_err(|e| Problem::validation(vec![FieldError::new("ownerUserId", e.to_string())])),
        _ => Err(Problem::validation(vec![FieldError::new(
            "ownerUserId",
            "is required",
        )])),
    }
}

/// Parses `{"reason": "…"}`.
pub fn reason_body(body: &[u8]) -> Result<String, Problem> {
    let mut f = Fields::new(parse_object(body)?);
    let s = f.string("reason")?;
    f.finish()?;
    match s {
        Slot::Value(s) => Ok(s),
        _ => Err(Problem::validation(vec![FieldError::new(
            "reason",
            "is required",
        )])),
    }
}

/// Parses a path id: 400 when it is not a UUID.
pub fn path_id(raw: &str) -> Result<Uuid, Problem> {
    Uuid::parse_str(raw).map_err(|_| Problem::bad_field("id", "must be a UUID"))
}

/// OpenAPI schemas of the request and response bodies (SPEC §4.1, §5, §9). They document; they
/// do not parse or write: the bodies are parsed by the functions above and written by
/// [`lead_json`] and [`activity_json`]. The HTTP tests hold a real response against these
/// schemas and probe the parsers with every documented field, so the two cannot drift apart
/// unnoticed. Enum values come from the domain's own lists.
pub mod schema {
    use std::borrow::Cow;

    use time::OffsetDateTime;
    use utoipa::openapi::RefOr;
    use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
    use utoipa::{PartialSchema, ToSchema};
    use uuid::Uuid;

    use freshplan_leads::activity::ActivityType as DomainActivityType;
    use freshplan_leads::model::{
        BusinessType as DomainBusinessType, KitchenSize as DomainKitchenSize,
        LeadSource as DomainLeadSource,
    };
    use freshplan_leads::status::LeadStatus as DomainLeadStatus;

    fn string_enum<'a>(
        description: &str,
        values: impl IntoIterator<Item = &'a str>,
    ) -> RefOr<Schema> {
        RefOr::T(Schema::Object(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .description(Some(description))
                .enum_values(Some(values))
                .build(),
        ))
    }

    /// A string enum whose values are a domain enum's spellings.
    macro_rules! enum_schema {
        ($(#[$doc:meta])* $name:ident, $description:literal, $values:expr) => {
            $(#[$doc])*
            #[derive(Debug)]
            pub struct $name;

            impl PartialSchema for $name {
                fn schema() -> RefOr<Schema> {
                    string_enum($description, $values)
                }
            }

            impl ToSchema for $name {
                fn name() -> Cow<'static, str> {
                    Cow::Borrowed(stringify!($name))
                }
            }
        };
    }

    enum_schema!(
        /// `businessType`.
        BusinessType,
        "The kind of food-service business.",
        DomainBusinessType::ALL.iter().map(|v| v.as_str())
    );
    enum_schema!(
        /// `kitchenSize`.
        KitchenSize,
        "The size of the prospect's kitchen.",
        DomainKitchenSize::ALL.iter().map(|v| v.as_str())
    );
    enum_schema!(
        /// `source`.
        LeadSource,
        "Where the lead came from (default WEB).",
        DomainLeadSource::ALL.iter().map(|v| v.as_str())
    );
    enum_schema!(
        /// `status` of a lead as returned.
        LeadStatus,
        "The lead's status (SPEC 4.3); DELETED only for admins listing with includeDeleted=true.",
        DomainLeadStatus::ALL.iter().map(|v| v.as_str())
    );
    enum_schema!(
        /// `status` in a merge patch: every status but `DELETED` (only `DELETE` soft-deletes).
        LeadStatusChange,
        "The target status of a manual transition (SPEC 4.3); anything the status machine does not allow is 422.",
        DomainLeadStatus::ALL
            .iter()
            .filter(|s| **s != DomainLeadStatus::Deleted)
            .map(|v| v.as_str())
    );
    enum_schema!(
        /// `type` of an activity as returned.
        ActivityType,
        "What happened; the types after NOTE are written by the system only.",
        DomainActivityType::ALL.iter().map(|t| t.as_str())
    );
    enum_schema!(
        /// `type` of an activity a user logs.
        UserActivityType,
        "The activity types users may log; every one but NOTE is a meaningful contact.",
        DomainActivityType::ALL
            .iter()
            .filter(|t| t.is_user_loggable())
            .map(|t| t.as_str())
    );
    enum_schema!(
        /// Outcome of a follow-up stage.
        FollowUpStatus,
        "Whether the follow-up mail was sent or skipped.",
        ["SENT", "SKIPPED"]
    );

    /// The territory of a lead (read-only, derived from `countryCode`).
    #[derive(Debug, ToSchema)]
    #[schema(rename_all = "camelCase")]
    pub struct TerritoryRef {
        /// `DE` or `CH`.
        pub id: String,
        /// Display name.
        pub name: String,
        /// ISO 4217.
        pub currency_code: String,
    }

    /// Lead protection (SPEC 4.5), read-only.
    #[derive(Debug, ToSchema)]
    #[schema(rename_all = "camelCase")]
    pub struct Protection {
        /// `registeredAt` + 6 months + `pausedSeconds`.
        pub protected_until: OffsetDateTime,
        /// When the 60-day reminder fired.
        #[schema(required = true)]
        pub reminder_at: Option<OffsetDateTime>,
        /// End of the current grace period.
        #[schema(required = true)]
        pub grace_until: Option<OffsetDateTime>,
        /// Set while the clock is stopped.
        #[schema(required = true)]
        pub clock_stopped_at: Option<OffsetDateTime>,
        /// Why the clock is stopped.
        #[schema(required = true)]
        pub stop_reason: Option<String>,
        /// Total stopped time so far.
        #[schema(minimum = 0)]
        pub paused_seconds: i64,
    }

    /// The outcome of one follow-up stage.
    #[derive(Debug, ToSchema)]
    #[schema(rename_all = "camelCase")]
    pub struct FollowUpMark {
        /// Sent or skipped.
        pub status: FollowUpStatus,
        /// When it was processed.
        pub processed_at: OffsetDateTime,
        /// The skip reason (`NO_CONSENT`, `NO_EMAIL`, `RECENT_CONTACT`), null when sent.
        #[schema(required = true)]
        pub reason: Option<String>,
    }

    /// The follow-up stages of a lead (read-only; null until processed).
    #[derive(Debug, ToSchema)]
    pub struct FollowUps {
        /// T+3 (sample offer).
        #[schema(required = true)]
        pub t3: Option<FollowUpMark>,
        /// T+7 (bulk-order offer).
        #[schema(required = true)]
        pub t7: Option<FollowUpMark>,
    }

    /// A lead (SPEC 4.1). Every property is always present; optional values are null.
    #[derive(Debug, ToSchema)]
    #[schema(rename_all = "camelCase")]
    pub struct Lead {
        /// Server-assigned.
        pub id: Uuid,
        /// +1 on every change; the strong ETag names it.
        #[schema(minimum = 1)]
        pub version: i64,
        /// The company.
        #[schema(min_length = 1, max_length = 255)]
        pub company_name: String,
        /// Contact person.
        #[schema(required = true, max_length = 255)]
        pub contact_person: Option<String>,
        /// Email address.
        #[schema(required = true, format = Email, max_length = 254)]
        pub email: Option<String>,
        /// Phone.
        #[schema(required = true, max_length = 50)]
        pub phone: Option<String>,
        /// Website.
        #[schema(required = true, max_length = 255)]
        pub website: Option<String>,
        /// Street.
        #[schema(required = true, max_length = 255)]
        pub street: Option<String>,
        /// Postal code.
        #[schema(required = true, max_length = 20)]
        pub postal_code: Option<String>,
        /// City.
        #[schema(required = true, max_length = 100)]
        pub city: Option<String>,
        /// ISO 3166-1 alpha-2, upper case.
        #[schema(pattern = "^[A-Z]{2}$")]
        pub country_code: String,
        /// Derived from `countryCode`.
        pub territory: TerritoryRef,
        /// Business type.
        #[schema(required = true)]
        pub business_type: Option<BusinessType>,
        /// Kitchen size.
        #[schema(required = true)]
        pub kitchen_size: Option<KitchenSize>,
        /// Employees.
        #[schema(required = true, minimum = 0)]
        pub employee_count: Option<i32>,
        /// Estimated volume, a decimal with at most 2 places.
        #[schema(required = true, minimum = 0)]
        pub estimated_volume: Option<f64>,
        /// Industry.
        #[schema(required = true, max_length = 50)]
        pub industry: Option<String>,
        /// Source.
        pub source: LeadSource,
        /// Campaign.
        #[schema(required = true, max_length = 255)]
        pub source_campaign: Option<String>,
        /// Consent to follow-up mails.
        pub email_consent: bool,
        /// When consent was given (set by the server).
        #[schema(required = true)]
        pub email_consent_at: Option<OffsetDateTime>,
        /// Status.
        pub status: LeadStatus,
        /// Owner; null once released (EXPIRED).
        #[schema(required = true)]
        pub owner_user_id: Option<String>,
        /// Collaborators (a set).
        pub collaborator_user_ids: Vec<String>,
        /// Start of protection.
        pub registered_at: OffsetDateTime,
        /// Last activity of any kind.
        #[schema(required = true)]
        pub last_activity_at: Option<OffsetDateTime>,
        /// Last meaningful contact.
        #[schema(required = true)]
        pub last_meaningful_contact_at: Option<OffsetDateTime>,
        /// Protection state.
        pub protection: Protection,
        /// Follow-up state.
        pub follow_ups: FollowUps,
        /// Created.
        pub created_at: OffsetDateTime,
        /// Creator's user id.
        pub created_by: String,
        /// Last change.
        pub updated_at: OffsetDateTime,
        /// Last changer's user id (`system` for automatic changes).
        pub updated_by: String,
    }

    /// `POST /api/leads`. Unknown fields are 400; optional fields may be null or absent.
    #[derive(Debug, ToSchema)]
    #[schema(rename_all = "camelCase")]
    pub struct LeadCreate {
        /// Required; 1–255 characters after trimming.
        #[schema(min_length = 1, max_length = 255)]
        pub company_name: String,
        /// Contact person.
        #[schema(max_length = 255)]
        pub contact_person: Option<String>,
        /// Email address (an empty string means none).
        #[schema(format = Email, max_length = 254)]
        pub email: Option<String>,
        /// Phone.
        #[schema(max_length = 50)]
        pub phone: Option<String>,
        /// Website.
        #[schema(max_length = 255)]
        pub website: Option<String>,
        /// Street.
        #[schema(max_length = 255)]
        pub street: Option<String>,
        /// Postal code.
        #[schema(max_length = 20)]
        pub postal_code: Option<String>,
        /// City.
        #[schema(max_length = 100)]
        pub city: Option<String>,
        /// ISO 3166-1 alpha-2 (any case); default `DE`.
        pub country_code: Option<String>,
        /// Business type.
        pub business_type: Option<BusinessType>,
        /// Kitchen size.
        pub kitchen_size: Option<KitchenSize>,
        /// Employees.
        #[schema(minimum = 0)]
        pub employee_count: Option<i32>,
        /// Estimated volume, at most 2 decimal places.
        #[schema(minimum = 0)]
        pub estimated_volume: Option<f64>,
        /// Industry.
        #[schema(max_length = 50)]
        pub industry: Option<String>,
        /// Default `WEB`.
        pub source: Option<LeadSource>,
        /// Campaign.
        #[schema(max_length = 255)]
        pub source_campaign: Option<String>,
        /// Default false.
        pub email_consent: Option<bool>,
        /// Backdated registration (imports; admin only).
        pub registered_at: Option<OffsetDateTime>,
    }

    /// `PATCH /api/leads/{id}`: a JSON merge patch. An absent field stays; `null` clears an
    /// optional one (clearing `companyName`, `countryCode`, `source`, `emailConsent` or `status`
    /// is 422). Read-only and unknown fields are 400.
    #[derive(Debug, ToSchema)]
    #[schema(rename_all = "camelCase")]
    pub struct LeadPatch {
        /// 1–255 characters after trimming.
        #[schema(required = false, min_length = 1, max_length = 255)]
        pub company_name: String,
        /// Contact person.
        #[schema(max_length = 255)]
        pub contact_person: Option<String>,
        /// Email address.
        #[schema(format = Email, max_length = 254)]
        pub email: Option<String>,
        /// Phone.
        #[schema(max_length = 50)]
        pub phone: Option<String>,
        /// Website.
        #[schema(max_length = 255)]
        pub website: Option<String>,
        /// Street.
        #[schema(max_length = 255)]
        pub street: Option<String>,
        /// Postal code.
        #[schema(max_length = 20)]
        pub postal_code: Option<String>,
        /// City.
        #[schema(max_length = 100)]
        pub city: Option<String>,
        /// ISO 3166-1 alpha-2; moving between territories follows it.
        #[schema(required = false)]
        pub country_code: String,
        /// Business type.
        pub business_type: Option<BusinessType>,
        /// Kitchen size.
        pub kitchen_size: Option<KitchenSize>,
        /// Employees.
        #[schema(minimum = 0)]
        pub employee_count: Option<i32>,
        /// Estimated volume, at most 2 decimal places.
        #[schema(minimum = 0)]
        pub estimated_volume: Option<f64>,
        /// Industry.
        #[schema(max_length = 50)]
        pub industry: Option<String>,
        /// Source.
        #[schema(required = false)]
        pub source: LeadSource,
        /// Campaign.
        #[schema(max_length = 255)]
        pub source_campaign: Option<String>,
        /// Consent to follow-up mails.
        #[schema(required = false)]
        pub email_consent: bool,
        /// A manual transition (SPEC 4.3).
        #[schema(required = false)]
        pub status: LeadStatusChange,
        /// With `status: ACTIVE` on an EXPIRED lead: its new owner (managers/admins).
        #[schema(min_length = 1, max_length = 64)]
        pub owner_user_id: Option<String>,
        /// Replaces the collaborators; null clears them.
        pub collaborator_user_ids: Option<Vec<String>>,
    }

    /// A timeline entry (SPEC 5).
    #[derive(Debug, ToSchema)]
    #[schema(rename_all = "camelCase")]
    pub struct Activity {
        /// Server-assigned.
        pub id: Uuid,
        /// The lead.
        pub lead_id: Uuid,
        /// What happened.
        #[schema(rename = "type")]
        pub activity_type: ActivityType,
        /// When it happened.
        pub occurred_at: OffsetDateTime,
        /// Free text.
        #[schema(required = true, max_length = 2000)]
        pub description: Option<String>,
        /// Who logged it (`system` for system entries).
        pub user_id: String,
        /// Derived from the type.
        pub meaningful_contact: bool,
        /// Server-set details, e.g. old and new status.
        #[schema(value_type = Object)]
        pub metadata: serde_json::Value,
        /// When it was recorded.
        pub created_at: OffsetDateTime,
    }

    /// `POST /api/leads/{id}/activities`.
    #[derive(Debug, ToSchema)]
    #[schema(rename_all = "camelCase")]
    pub struct ActivityCreate {
        /// A user activity type; system types are 422.
        #[schema(rename = "type")]
        pub activity_type: UserActivityType,
        /// Default now; not in the future.
        pub occurred_at: Option<OffsetDateTime>,
        /// Free text.
        #[schema(max_length = 2000)]
        pub description: Option<String>,
    }

    /// A page of leads (`GET /api/leads`).
    #[derive(Debug, ToSchema)]
    #[schema(rename_all = "camelCase")]
    pub struct LeadPage {
        /// The leads of this page.
        pub data: Vec<Lead>,
        /// 0-based page number.
        pub page: u32,
        /// Page size.
        #[schema(minimum = 1, maximum = 200)]
        pub size: u32,
        /// Matching leads on all pages.
        pub total: u64,
        /// Number of pages.
        pub total_pages: u64,
    }

    /// A page of a lead's timeline, newest first.
    #[derive(Debug, ToSchema)]
    #[schema(rename_all = "camelCase")]
    pub struct ActivityPage {
        /// The activities of this page.
        pub data: Vec<Activity>,
        /// 0-based page number.
        pub page: u32,
        /// Page size.
        #[schema(minimum = 1, maximum = 200)]
        pub size: u32,
        /// Activities on all pages.
        pub total: u64,
        /// Number of pages.
        pub total_pages: u64,
    }

    /// `PUT /api/leads/{id}/owner`.
    #[derive(Debug, ToSchema)]
    #[schema(rename_all = "camelCase")]
    pub struct OwnerChange {
        /// The new owner's user id.
        #[schema(min_length = 1, max_length = 64)]
        pub owner_user_id: String,
    }

    /// `POST /api/leads/{id}/clock/stop`.
    #[derive(Debug, ToSchema)]
    pub struct ClockStop {
        /// Why the protection clock stops.
        #[schema(min_length = 1, max_length = 500)]
        pub reason: String,
    }

    /// The request bodies: unknown fields are rejected (400), which the document states with
    /// `additionalProperties: false`.
    pub const REQUEST_BODIES: &[&str] = &[
        "LeadCreate",
        "LeadPatch",
        "ActivityCreate",
        "OwnerChange",
        "ClockStop",
    ];
}
