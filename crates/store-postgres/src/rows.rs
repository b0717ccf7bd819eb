//! Rows ↔ domain values: the column lists and the decoding of a lead and an activity.

use std::collections::BTreeSet;

use sqlx::Row as _;
use sqlx::postgres::PgRow;
use time::OffsetDateTime;
use uuid::Uuid;

use freshplan_kernel::{TerritoryId, UserId};
use freshplan_leads::Lead;
use freshplan_leads::activity::{Activity, ActivityType};
use freshplan_leads::lead::{FollowUpMark, FollowUpMarks, LeadData};
use freshplan_leads::model::{BusinessType, CompanyName, Email, KitchenSize, LeadSource, Volume};
use freshplan_leads::personal::{
    AuditAction, AuditEntry, ConsentChange, ConsentSource, ErasureReason, MailRecord,
};
use freshplan_leads::ports::StoreError;
use freshplan_leads::protection::Protection;
use freshplan_leads::status::LeadStatus;

use crate::error::{corrupt, store_error};

/// The lead columns read back (alias `l`), with the follow-up marks from `f3`/`f7`.
/// `estimated_volume` travels as integer cents, exactly.
pub(crate) const LEAD_COLUMNS: &str = "\
    l.id, l.version, l.company_name, l.contact_person, l.email, l.phone, l.website, l.street, \
    l.postal_code, l.city, l.country_code, l.business_type, l.kitchen_size, l.employee_count, \
    (l.estimated_volume * 100)::bigint as estimated_volume_cents, l.industry, l.source, \
    l.source_campaign, l.email_consent, l.email_consent_at, l.email_consent_source, l.erased_at, \
    l.territory_id, l.status, \
    l.owner_user_id, l.collaborator_user_ids, l.registered_at, l.last_activity_at, \
    l.last_meaningful_contact_at, l.reminder_at, l.grace_until, l.clock_stopped_at, \
    l.stop_reason, l.paused_seconds, l.paused_seconds_at_contact, l.contact_while_stopped, \
    l.created_at, l.created_by, l.updated_at, l.updated_by, \
    f3.status as t3_status, f3.processed_at as t3_processed_at, f3.reason as t3_reason, \
    f7.status as t7_status, f7.processed_at as t7_processed_at, f7.reason as t7_reason";

/// `leads l` with its follow-up records (one per stage at most: `followups_lead_stage_uq`).
pub(crate) const LEAD_FROM: &str = "\
    leads l \
    left join followups f3 on f3.lead_id = l.id and f3.stage = 'T3' \
    left join followups f7 on f7.lead_id = l.id and f7.stage = 'T7'";

/// The written lead columns, in bind order after `id` (`$1`), with their value expressions
/// (`{}` is the placeholder). Shared by insert and update so the two cannot drift apart.
pub(crate) const LEAD_WRITE_COLUMNS: &[(&str, &str)] = &[
    ("version", "{}"),
    ("company_name", "{}"),
    ("contact_person", "{}"),
    ("email", "{}"),
    ("phone", "{}"),
    ("website", "{}"),
    ("street", "{}"),
    ("postal_code", "{}"),
    ("city", "{}"),
    ("country_code", "{}"),
    ("business_type", "{}"),
    ("kitchen_size", "{}"),
    ("employee_count", "{}"),
    ("estimated_volume", "{}::numeric / 100"),
    ("industry", "{}"),
    ("source", "{}"),
    ("source_campaign", "{}"),
    ("email_consent", "{}"),
    ("email_consent_at", "{}"),
    ("email_consent_source", "{}"),
    ("erased_at", "{}"),
    ("territory_id", "{}"),
    ("status", "{}"),
    ("owner_user_id", "{}"),
    ("collaborator_user_ids", "{}"),
    ("registered_at", "{}"),
    ("last_activity_at", "{}"),
    ("last_meaningful_contact_at", "{}"),
    ("reminder_at", "{}"),
    ("grace_until", "{}"),
    ("clock_stopped_at", "{}"),
    ("stop_reason", "{}"),
    ("paused_seconds", "{}"),
    ("paused_seconds_at_contact", "{}"),
    ("contact_while_stopped", "{}"),
    ("created_at", "{}"),
    ("created_by", "{}"),
    ("updated_at", "{}"),
    ("updated_by", "{}"),
    ("email_key", "{}"),
    ("company_key", "{}"),
    ("next_sweep_at", "{}"),
];

fn get<'r, T>(row: &'r PgRow, column: &'static str) -> Result<T, StoreError>
where
    T: sqlx::Decode<'r, sqlx::Postgres> + sqlx::Type<sqlx::Postgres>,
{
    row.try_get(column).map_err(store_error("decode a row"))
}

fn parse_opt<T, E>(
    value: Option<String>,
    field: &'static str,
    parse: impl FnOnce(&str) -> Result<T, E>,
) -> Result<Option<T>, StoreError>
where
    E: std::error::Error + Send + Sync + 'static,
{
    value
        .map(|v| parse(&v).map_err(|e| corrupt(field, e)))
        .transpose()
}

fn user(value: String, field: &'static str) -> Result<UserId, StoreError> {
    UserId::parse(&value).map_err(|e| corrupt(field, e))
}

fn mark(row: &PgRow, prefix: &str) -> Result<Option<FollowUpMark>, StoreError> {
    let (status, processed_at, reason) = match prefix {
        "t3" => ("t3_status", "t3_processed_at", "t3_reason"),
        _ => ("t7_status", "t7_processed_at", "t7_reason"),
    };
    let status: Option<String> = get(row, status)?;
    let processed_at: Option<OffsetDateTime> = get(row, processed_at)?;
    Ok(match (status, processed_at) {
        (Some(status), Some(processed_at)) => Some(FollowUpMark {
            status,
            processed_at,
            reason: get(row, reason)?,
        }),
        _ => None,
    })
}

/// Decodes a row selected with [`LEAD_COLUMNS`].
pub(crate) fn lead(row: &PgRow) -> Result<Lead, StoreError> {
    let company_name: String = get(row, "company_name")?;
    let data = LeadData {
        company_name: CompanyName::parse(&company_name).map_err(|e| corrupt("company_name", e))?,
        contact_person: get(row, "contact_person")?,
        email: parse_opt(get(row, "email")?, "email", Email::parse)?,
        phone: get(row, "phone")?,
        website: get(row, "website")?,
        street: get(row, "street")?,
        postal_code: get(row, "postal_code")?,
        city: get(row, "city")?,
        country_code: get(row, "country_code")?,
        business_type: parse_opt(get(row, "business_type")?, "business_type", |s| {
            s.parse::<BusinessType>()
        })?,
        kitchen_size: parse_opt(get(row, "kitchen_size")?, "kitchen_size", |s| {
            s.parse::<KitchenSize>()
        })?,
        employee_count: get(row, "employee_count")?,
        estimated_volume: get::<Option<i64>>(row, "estimated_volume_cents")?
            .map(Volume::from_cents)
            .transpose()
            .map_err(|e| corrupt("estimated_volume", e))?,
        industry: get(row, "industry")?,
        source: get::<String>(row, "source")?
            .parse::<LeadSource>()
            .map_err(|e| corrupt("source", e))?,
        source_campaign: get(row, "source_campaign")?,
        email_consent: get(row, "email_consent")?,
    };
    let collaborators = get::<Vec<String>>(row, "collaborator_user_ids")?
        .into_iter()
        .map(|u| user(u, "collaborator_user_ids"))
        .collect::<Result<BTreeSet<_>, _>>()?;
    Ok(Lead {
        id: get(row, "id")?,
        version: get(row, "version")?,
        data,
        territory: get::<String>(row, "territory_id")?
            .parse::<TerritoryId>()
            .map_err(|e| corrupt("territory_id", e))?,
        status: get::<String>(row, "status")?
            .parse::<LeadStatus>()
            .map_err(|e| corrupt("status", e))?,
        owner: get::<Option<String>>(row, "owner_user_id")?
            .map(|u| user(u, "owner_user_id"))
            .transpose()?,
        collaborators,
        registered_at: get(row, "registered_at")?,
        last_activity_at: get(row, "last_activity_at")?,
        last_meaningful_contact_at: get(row, "last_meaningful_contact_at")?,
        email_consent_at: get(row, "email_consent_at")?,
        email_consent_source: parse_opt(
            get(row, "email_consent_source")?,
            "email_consent_source",
            |s| s.parse::<ConsentSource>(),
        )?,
        erased_at: get(row, "erased_at")?,
        protection: Protection {
            reminder_at: get(row, "reminder_at")?,
            grace_until: get(row, "grace_until")?,
            clock_stopped_at: get(row, "clock_stopped_at")?,
            stop_reason: get(row, "stop_reason")?,
            paused_seconds: get(row, "paused_seconds")?,
            paused_seconds_at_contact: get(row, "paused_seconds_at_contact")?,
            contact_while_stopped: get(row, "contact_while_stopped")?,
        },
        follow_ups: FollowUpMarks {
            t3: mark(row, "t3")?,
            t7: mark(row, "t7")?,
        },
        created_at: get(row, "created_at")?,
        created_by: user(get(row, "created_by")?, "created_by")?,
        updated_at: get(row, "updated_at")?,
        updated_by: user(get(row, "updated_by")?, "updated_by")?,
    })
}

/// The activity columns read back.
pub(crate) const ACTIVITY_COLUMNS: &str = "\
    id, lead_id, type, occurred_at, description, user_id, meaningful_contact, metadata, created_at";

#[derive(Debug, thiserror::Error)]
#[error("unknown activity type {0:?}")]
struct UnknownActivityType(String);

/// Decodes a row selected with [`ACTIVITY_COLUMNS`].
pub(crate) fn activity(row: &PgRow) -> Result<Activity, StoreError> {
    let activity_type: String = get(row, "type")?;
    Ok(Activity {
        id: get::<Uuid>(row, "id")?,
        lead_id: get(row, "lead_id")?,
        activity_type: ActivityType::parse(&activity_type)
            .ok_or_else(|| corrupt("type", UnknownActivityType(activity_type.clone())))?,
        occurred_at: get(row, "occurred_at")?,
        description: get(row, "description")?,
        user_id: user(get(row, "user_id")?, "user_id")?,
        meaningful_contact: get(row, "meaningful_contact")?,
        metadata: get(row, "metadata")?,
        created_at: get(row, "created_at")?,
    })
}

/// Decodes a consent-ledger row.
pub(crate) fn consent_change(row: &PgRow) -> Result<ConsentChange, StoreError> {
    Ok(ConsentChange {
        id: get(row, "id")?,
        lead_id: get(row, "lead_id")?,
        consent: get(row, "consent")?,
        source: get::<String>(row, "source")?
            .parse::<ConsentSource>()
            .map_err(|e| corrupt("source", e))?,
        changed_at: get(row, "changed_at")?,
        changed_by: user(get(row, "changed_by")?, "changed_by")?,
    })
}

/// Decodes a mail-outbox row for the export.
pub(crate) fn mail_record(row: &PgRow) -> Result<MailRecord, StoreError> {
    Ok(MailRecord {
        id: get(row, "id")?,
        lead_id: get(row, "lead_id")?,
        stage: get(row, "stage")?,
        recipient: get(row, "recipient")?,
        subject: get(row, "subject")?,
        html: get(row, "html")?,
        text: get(row, "text")?,
        unsubscribe_url: get(row, "unsubscribe_url")?,
        status: get(row, "status")?,
        attempts: u32::try_from(get::<i32>(row, "attempts")?).unwrap_or(0),
        next_attempt_at: get(row, "next_attempt_at")?,
        last_error: get(row, "last_error")?,
        created_at: get(row, "created_at")?,
        sent_at: get(row, "sent_at")?,
    })
}

/// Decodes an audit-log row.
pub(crate) fn audit_entry(row: &PgRow) -> Result<AuditEntry, StoreError> {
    Ok(AuditEntry {
        id: get(row, "id")?,
        at: get(row, "at")?,
        actor: user(get(row, "actor")?, "actor")?,
        action: get::<String>(row, "action")?
            .parse::<AuditAction>()
            .map_err(|e| corrupt("action", e))?,
        lead_id: get(row, "lead_id")?,
        territory: parse_opt(get(row, "territory_id")?, "territory_id", |s| {
            s.parse::<TerritoryId>()
        })?,
        reason: parse_opt(get(row, "reason")?, "reason", |s| {
            s.parse::<ErasureReason>()
        })?,
        leads_erased: u32::try_from(get::<i32>(row, "leads_erased")?).unwrap_or(0),
        mail_bodies_erased: u32::try_from(get::<i32>(row, "mail_bodies_erased")?).unwrap_or(0),
    })
}
