//! What is personal about a lead (SPEC §13; DSGVO Art. 4(1), revDSG Art. 5 lit. a), decided once
//! here and used by the export, the erasure and retention alike (docs/decisions/0012).
//!
//! * **Lead fields** ([`PersonalField`]): the contact person, email, phone — and, because a lead may
//!   be a sole trader whose business is named after and located at the person (and nothing in a
//!   lead tells a sole trader from a GmbH reliably), the company name, website, street, postal code
//!   and city too; plus the stop-the-clock reason, free text a manager wrote about the prospect.
//!   What statistics need stays: status, territory, country, dates, business type, kitchen size,
//!   employee count, estimated volume, industry, source and campaign, owner and collaborators
//!   (the sales reps' ids are employee data, not the prospect's).
//! * **Timeline**: the free text of the entries users log (all eight user types), of
//!   `CLOCK_STOPPED` (the reason, in the description and the metadata) and of `FOLLOWUP_SENT`
//!   (its description names the recipient) — [`description_is_personal`],
//!   [`metadata_is_personal`]. Other system entries hold statuses, user ids and times only.
//! * **Mails**: recipient, subject, bodies, unsubscribe link and the last SMTP error (which may
//!   quote the address) of every stored mail.
//! * **Events**: the data fields named in [`PERSONAL_EVENT_DATA`] (`lead.created.v1` carries the
//!   company name).
//! * **Idempotency replays**: the stored hash of a create request is a hash of personal data;
//!   erasure deletes the lead's keys.
//! * **Consent ledger** entries carry no personal data (a flag, a time, an actor, a source) and
//!   are kept: they prove what the lead agreed to and when.

use time::{Duration, OffsetDateTime};
use uuid::Uuid;

use freshplan_kernel::{TerritoryId, UserId};

use crate::activity::{Activity, ActivityType};
use crate::lead::Lead;
use crate::model::{CompanyName, closed_enum};

closed_enum!(
    /// Where a change of the email consent came from (the consent ledger, DSGVO Art. 7(1)).
    ConsentSource, "source" {
        /// A user through the API (create or update).
        Api => "API",
        /// The prospect, through the unsubscribe link of a mail.
        Unsubscribe => "UNSUBSCRIBE",
        /// A CSV import (SPEC §14).
        Import => "IMPORT",
        /// The erasure of the person's data.
        Erasure => "ERASURE",
    }
);

closed_enum!(
    /// Why a person's data was erased: the grounds of DSGVO Art. 17(1), and retention. A closed
    /// set, so the audit log never holds free text about the person.
    ErasureReason, "reason" {
        /// The data subject asked for it (Art. 17(1)).
        DataSubjectRequest => "DATA_SUBJECT_REQUEST",
        /// Consent was withdrawn and nothing else allows keeping the data (Art. 17(1)(b)).
        ConsentWithdrawn => "CONSENT_WITHDRAWN",
        /// The data subject objected (Art. 17(1)(c), Art. 21).
        Objection => "OBJECTION",
        /// No longer needed for its purpose (Art. 17(1)(a)).
        NoLongerNeeded => "NO_LONGER_NEEDED",
        /// Processed unlawfully (Art. 17(1)(d)).
        UnlawfulProcessing => "UNLAWFUL_PROCESSING",
        /// A legal obligation requires it (Art. 17(1)(e)).
        LegalObligation => "LEGAL_OBLIGATION",
        /// The retention period ran out (the sweep; Art. 5(1)(e)).
        Retention => "RETENTION",
    }
);

closed_enum!(
    /// A personal field of a lead (the API names).
    PersonalField, "field" {
        /// `companyName` (replaced by [`erased_company_name`]: the field is required).
        CompanyName => "companyName",
        /// `contactPerson`.
        ContactPerson => "contactPerson",
        /// `email`.
        Email => "email",
        /// `phone`.
        Phone => "phone",
        /// `website`.
        Website => "website",
        /// `street`.
        Street => "street",
        /// `postalCode`.
        PostalCode => "postalCode",
        /// `city`.
        City => "city",
        /// `protection.stopReason`.
        StopReason => "protection.stopReason",
    }
);

closed_enum!(
    /// What an audit-log entry records.
    AuditAction, "action" {
        /// `GET /api/leads/{id}/personal-data`.
        PersonalDataExported => "PERSONAL_DATA_EXPORTED",
        /// `POST /api/leads/{id}/erasure`.
        LeadErased => "LEAD_ERASED",
        /// A batch of the retention sweep.
        RetentionRun => "RETENTION_RUN",
    }
);

/// What replaces redacted free text (event data, a clock's stop reason).
pub const REDACTED: &str = "[erased]";

/// The company name of an erased lead: a placeholder naming the lead id, so that the duplicate
/// keys of erased leads never collide with each other.
pub fn erased_company_name(lead_id: Uuid) -> CompanyName {
    CompanyName::parse(&format!("[erased {lead_id}]"))
        .unwrap_or_else(|e| unreachable!("a 45-character name is valid: {e}"))
}

impl PersonalField {
    /// Removes this field's value from `lead` (null, or the placeholder where a value is
    /// required).
    pub fn erase(self, lead: &mut Lead) {
        let d = &mut lead.data;
        match self {
            PersonalField::CompanyName => d.company_name = erased_company_name(lead.id),
            PersonalField::ContactPerson => d.contact_person = None,
            PersonalField::Email => d.email = None,
            PersonalField::Phone => d.phone = None,
            PersonalField::Website => d.website = None,
            PersonalField::Street => d.street = None,
            PersonalField::PostalCode => d.postal_code = None,
            PersonalField::City => d.city = None,
            PersonalField::StopReason => {
                if lead.protection.stop_reason.is_some() {
                    lead.protection.stop_reason = Some(REDACTED.to_owned());
                }
            }
        }
    }
}

/// Whether the description of a timeline entry of this type may hold personal data: what users
/// log, `CLOCK_STOPPED` (the reason) and `FOLLOWUP_SENT` (it names the recipient address).
pub fn description_is_personal(t: ActivityType) -> bool {
    t.is_user_loggable() || matches!(t, ActivityType::ClockStopped | ActivityType::FollowupSent)
}

/// Whether the metadata of a timeline entry of this type may hold personal data:
/// `CLOCK_STOPPED` (the reason). Other metadata holds statuses, ids and times only.
pub fn metadata_is_personal(t: ActivityType) -> bool {
    t == ActivityType::ClockStopped
}

/// The activity types whose description erasure removes ([`description_is_personal`]).
pub fn personal_description_types() -> Vec<ActivityType> {
    ActivityType::ALL
        .into_iter()
        .filter(|t| description_is_personal(*t))
        .collect()
}

/// The activity types whose metadata erasure empties ([`metadata_is_personal`]).
pub fn personal_metadata_types() -> Vec<ActivityType> {
    ActivityType::ALL
        .into_iter()
        .filter(|t| metadata_is_personal(*t))
        .collect()
}

/// Redacts an entry in place; whether it held anything to redact (stores that keep activities
/// in another form do the same in their own terms).
pub fn redact_activity(a: &mut Activity) -> bool {
    let mut changed = false;
    if description_is_personal(a.activity_type) && a.description.is_some() {
        a.description = None;
        changed = true;
    }
    if metadata_is_personal(a.activity_type) && a.metadata != serde_json::json!({}) {
        a.metadata = serde_json::json!({});
        changed = true;
    }
    changed
}

/// The `data` fields of stored events that carry personal data, by event type.
pub const PERSONAL_EVENT_DATA: &[(&str, &[&str])] = &[("lead.created.v1", &["companyName"])];

/// Redacts the personal `data` fields of an event's JSON form in place (each replaced by
/// [`REDACTED`]); whether anything was personal.
pub fn redact_event(event: &mut serde_json::Value) -> bool {
    let Some(event_type) = event
        .get("type")
        .and_then(|t| t.as_str())
        .map(str::to_owned)
    else {
        return false;
    };
    let Some((_, fields)) = PERSONAL_EVENT_DATA
        .iter()
        .find(|(t, _)| *t == event_type.as_str())
    else {
        return false;
    };
    let Some(data) = event.get_mut("data").and_then(|d| d.as_object_mut()) else {
        return false;
    };
    for field in *fields {
        if data.contains_key(*field) {
            data.insert((*field).to_owned(), REDACTED.into());
        }
    }
    true
}

/// One change of a lead's email consent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsentChange {
    /// The entry id.
    pub id: Uuid,
    /// The lead.
    pub lead_id: Uuid,
    /// The consent after the change.
    pub consent: bool,
    /// Where it came from.
    pub source: ConsentSource,
    /// When.
    pub changed_at: OffsetDateTime,
    /// Who (a user id, or `system` for the unsubscribe link and retention).
    pub changed_by: UserId,
}

/// A stored mail to the lead (the follow-up module's mail outbox, as the export shows it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailRecord {
    /// The mail id.
    pub id: Uuid,
    /// The lead.
    pub lead_id: Uuid,
    /// `T3` or `T7`.
    pub stage: String,
    /// The recipient address.
    pub recipient: String,
    /// The subject line.
    pub subject: String,
    /// The HTML body.
    pub html: String,
    /// The text body.
    pub text: String,
    /// The signed unsubscribe link.
    pub unsubscribe_url: String,
    /// `QUEUED`, `SENT` or `DEAD`.
    pub status: String,
    /// Delivery attempts.
    pub attempts: u32,
    /// When the next attempt is due.
    pub next_attempt_at: OffsetDateTime,
    /// The last delivery failure.
    pub last_error: Option<String>,
    /// When it was queued.
    pub created_at: OffsetDateTime,
    /// When it was handed to the SMTP server.
    pub sent_at: Option<OffsetDateTime>,
}

/// Everything stored about a lead's person besides the lead row.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PersonalRecords {
    /// The whole timeline, oldest first.
    pub activities: Vec<Activity>,
    /// The consent ledger, oldest first.
    pub consent: Vec<ConsentChange>,
    /// Every mail, oldest first.
    pub mails: Vec<MailRecord>,
    /// The retained outbox events whose data carries personal data ([`PERSONAL_EVENT_DATA`]),
    /// in their stored JSON form, oldest first.
    pub events: Vec<serde_json::Value>,
}

/// The export of `GET /api/leads/{id}/personal-data` (DSGVO Art. 15, 20).
#[derive(Debug, Clone, PartialEq)]
pub struct PersonalData {
    /// When it was exported.
    pub exported_at: OffsetDateTime,
    /// The lead.
    pub lead: Lead,
    /// The rest.
    pub records: PersonalRecords,
}

/// One entry of the audit log: who processed whose data when and why — never the data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    /// The entry id.
    pub id: Uuid,
    /// When.
    pub at: OffsetDateTime,
    /// Who.
    pub actor: UserId,
    /// What.
    pub action: AuditAction,
    /// Which lead (exports and erasures).
    pub lead_id: Option<Uuid>,
    /// Its territory.
    pub territory: Option<TerritoryId>,
    /// Why (erasures).
    pub reason: Option<ErasureReason>,
    /// Leads erased (erasure: 1; retention: the batch's count).
    pub leads_erased: u32,
    /// Mail bodies removed by retention.
    pub mail_bodies_erased: u32,
}

/// What erasing a lead's related records touched (besides the lead row).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ErasureCounts {
    /// Timeline entries redacted.
    pub activities: u64,
    /// Mails stripped (queued ones also withdrawn).
    pub mails: u64,
    /// Outbox events redacted.
    pub events: u64,
    /// Idempotency keys deleted.
    pub idempotency_keys: u64,
}

/// The retention periods (SPEC §13): how long closed leads and mail bodies are kept. `None`
/// keeps them forever.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionPolicy {
    /// LOST, EXPIRED and DELETED leads are erased this long after their last change
    /// (default 730 days, about 24 months).
    pub closed_leads: Option<Duration>,
    /// The bodies of SENT and DEAD mails are removed this long after their last change
    /// (default 90 days).
    pub mail_bodies: Option<Duration>,
}

impl Default for RetentionPolicy {
    fn default() -> Self {
        RetentionPolicy {
            closed_leads: Some(Duration::days(730)),
            mail_bodies: Some(Duration::days(90)),
        }
    }
}

/// What one retention batch did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetentionReport {
    /// Leads erased.
    pub leads_erased: u32,
    /// Mails whose bodies were removed.
    pub mail_bodies_erased: u32,
}

impl RetentionReport {
    /// Whether the batch did anything.
    pub fn is_empty(&self) -> bool {
        self.leads_erased == 0 && self.mail_bodies_erased == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::LeadData;
    use freshplan_kernel::Actor;
    use time::macros::datetime;

    #[test]
    fn erasing_every_personal_field_leaves_the_statistics() {
        let at = datetime!(2026-03-02 09:00 UTC);
        let mut data =
            LeadData::new(CompanyName::parse("Metzgerei Hans Muster").unwrap(), "DE").unwrap();
        data.contact_person = Some("Hans Muster".into());
        data.email = Some(crate::model::Email::parse("hans@muster.example").unwrap());
        data.phone = Some("+49 30 1234".into());
        data.city = Some("Berlin".into());
        data.business_type = Some(crate::model::BusinessType::Catering);
        let (mut lead, _) = Lead::register(Uuid::max(), data, &Actor::system(), None, at).unwrap();
        lead.protection.stop_reason = Some("Herr Muster im Urlaub".into());
        for f in PersonalField::ALL {
            f.erase(&mut lead);
        }
        assert_eq!(
            lead.data.company_name.as_str(),
            format!("[erased {}]", Uuid::max())
        );
        assert_eq!(lead.data.contact_person, None);
        assert_eq!(lead.data.email, None);
        assert_eq!(lead.data.phone, None);
        assert_eq!(lead.data.city, None);
        assert_eq!(lead.protection.stop_reason.as_deref(), Some(REDACTED));
        assert_eq!(
            lead.data.business_type,
            Some(crate::model::BusinessType::Catering)
        );
        assert_eq!(lead.data.country_code, "DE");
    }

    #[test]
    fn only_the_named_event_fields_are_redacted() {
        let mut created = serde_json::json!({
            "type": "lead.created.v1",
            "data": {"leadId": "x", "companyName": "Metzgerei Hans Muster", "status": "REGISTERED"}
        });
        assert!(redact_event(&mut created));
        assert_eq!(created["data"]["companyName"], REDACTED);
        assert_eq!(created["data"]["status"], "REGISTERED");
        let mut other =
            serde_json::json!({"type": "lead.updated.v1", "data": {"fields": ["email"]}});
        assert!(!redact_event(&mut other));
        assert_eq!(other["data"]["fields"][0], "email");
    }

    proptest::proptest! {
        /// For every timeline entry, redaction removes exactly the parts its type marks personal
        /// (the description, the metadata), leaves the rest as it was, says whether it removed
        /// anything, and has nothing left to do the second time.
        #[test]
        fn redaction_removes_exactly_the_personal_parts_of_an_entry(
            activity_type in crate::testing::activity_type(),
            description in proptest::option::of("[a-z ]{0,12}"),
            with_metadata in proptest::bool::ANY,
        ) {
            let metadata = if with_metadata {
                serde_json::json!({"reason": "Herr Muster im Urlaub"})
            } else {
                serde_json::json!({})
            };
            let original = Activity::system(
                Uuid::nil(),
                Uuid::nil(),
                activity_type,
                datetime!(2026-03-02 09:00 UTC),
                freshplan_kernel::UserId::parse("u").unwrap(),
                description.clone(),
                metadata.clone(),
            );
            let mut redacted = original.clone();
            let changed = redact_activity(&mut redacted);
            let personal_description = description_is_personal(activity_type);
            let personal_metadata = metadata_is_personal(activity_type);
            proptest::prop_assert_eq!(
                &redacted.description,
                if personal_description { &None } else { &description }
            );
            proptest::prop_assert_eq!(
                &redacted.metadata,
                &if personal_metadata { serde_json::json!({}) } else { metadata }
            );
            proptest::prop_assert_eq!(
                changed,
                (personal_description && description.is_some())
                    || (personal_metadata && with_metadata)
            );
            proptest::prop_assert_eq!(
                Activity { description: None, metadata: serde_json::Value::Null, ..redacted.clone() },
                Activity { description: None, metadata: serde_json::Value::Null, ..original }
            );
            proptest::prop_assert!(!redact_activity(&mut redacted));
        }
    }

    #[test]
    fn a_retention_batch_is_empty_only_when_it_erased_no_lead_and_no_mail_body() {
        assert!(RetentionReport::default().is_empty());
        let leads = RetentionReport {
            leads_erased: 1,
            ..RetentionReport::default()
        };
        let mails = RetentionReport {
            mail_bodies_erased: 3,
            ..RetentionReport::default()
        };
        assert!(!leads.is_empty());
        assert!(!mails.is_empty());
    }

    #[test]
    fn user_entries_clock_reasons_and_mail_recipients_are_personal_statuses_are_not() {
        assert!(description_is_personal(ActivityType::Note));
        assert!(description_is_personal(ActivityType::Call));
        assert!(description_is_personal(ActivityType::ClockStopped));
        assert!(description_is_personal(ActivityType::FollowupSent));
        assert!(!description_is_personal(ActivityType::StatusChanged));
        assert!(!description_is_personal(ActivityType::Erased));
        assert_eq!(personal_description_types().len(), 10);
        assert_eq!(personal_metadata_types(), [ActivityType::ClockStopped]);
    }
}
