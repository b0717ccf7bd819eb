//! Personal data (SPEC §13): the export of `GET /api/leads/{id}/personal-data`, the body of
//! `POST /api/leads/{id}/erasure` and the audit log of `GET /api/audit`.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::activities::Activity;
use crate::events::CloudEvent;
use crate::leads::{ConsentSource, Lead};
use crate::mails::Mail;
use crate::page;
use crate::wire::rfc3339;

/// Why a person's data is erased: the grounds of DSGVO Art. 17(1). A closed set, so that the
/// audit log never holds free text about the person.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ErasureRequestReason {
    /// The data subject asked for it.
    DataSubjectRequest,
    /// Consent was withdrawn and nothing else allows keeping the data (Art. 17(1)(b)).
    ConsentWithdrawn,
    /// The data subject objected (Art. 17(1)(c)).
    Objection,
    /// No longer needed for its purpose (Art. 17(1)(a)).
    NoLongerNeeded,
    /// Processed unlawfully (Art. 17(1)(d)).
    UnlawfulProcessing,
    /// A legal obligation requires it (Art. 17(1)(e)).
    LegalObligation,
}

/// Why data was erased, as the audit log and `lead.erased.v1` state it: a request's reason, or
/// `RETENTION` (the sweep).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[allow(missing_docs)] // as ErasureRequestReason, plus RETENTION
pub enum ErasureReason {
    DataSubjectRequest,
    ConsentWithdrawn,
    Objection,
    NoLongerNeeded,
    UnlawfulProcessing,
    LegalObligation,
    /// The retention period ran out.
    Retention,
}

impl From<ErasureRequestReason> for ErasureReason {
    fn from(r: ErasureRequestReason) -> ErasureReason {
        match r {
            ErasureRequestReason::DataSubjectRequest => ErasureReason::DataSubjectRequest,
            ErasureRequestReason::ConsentWithdrawn => ErasureReason::ConsentWithdrawn,
            ErasureRequestReason::Objection => ErasureReason::Objection,
            ErasureRequestReason::NoLongerNeeded => ErasureReason::NoLongerNeeded,
            ErasureRequestReason::UnlawfulProcessing => ErasureReason::UnlawfulProcessing,
            ErasureRequestReason::LegalObligation => ErasureReason::LegalObligation,
        }
    }
}

/// `POST /api/leads/{id}/erasure`. Unknown fields are 400.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ErasureRequest {
    /// The legal ground.
    pub reason: ErasureRequestReason,
}

/// One change of the email consent (the consent ledger).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConsentChange {
    /// The consent after the change.
    pub consent: bool,
    /// Where it came from.
    pub source: ConsentSource,
    /// When.
    #[serde(with = "rfc3339")]
    pub changed_at: OffsetDateTime,
    /// Who: a user id, or `system` (the unsubscribe link, retention).
    pub changed_by: String,
}

/// Everything stored about a lead's person (DSGVO Art. 15, 20), in one machine-readable
/// document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PersonalDataExport {
    /// When this export was made.
    #[serde(with = "rfc3339")]
    pub exported_at: OffsetDateTime,
    /// The lead's fields.
    pub lead: Lead,
    /// The whole timeline, oldest first.
    pub activities: Vec<Activity>,
    /// Every change of the email consent, oldest first.
    pub consent_history: Vec<ConsentChange>,
    /// Every mail to the lead (recipient, subject, bodies, delivery state and attempts), oldest
    /// first.
    pub mails: Vec<Mail>,
    /// The events of the retained outbox whose data carries the person's data, oldest first.
    pub events: Vec<CloudEvent>,
}

/// What an audit-log entry records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AuditAction {
    /// `GET /api/leads/{id}/personal-data`.
    PersonalDataExported,
    /// `POST /api/leads/{id}/erasure`.
    LeadErased,
    /// A batch of the retention sweep.
    RetentionRun,
}

/// One entry of the audit log: who processed whose data when and why — never the data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditEntry {
    /// The entry id.
    pub id: Uuid,
    /// When.
    #[serde(with = "rfc3339")]
    pub at: OffsetDateTime,
    /// Who: a user id, or `system` (retention).
    pub actor: String,
    /// What.
    pub action: AuditAction,
    /// Which lead (exports and erasures).
    #[schema(required = true)]
    pub lead_id: Option<Uuid>,
    /// The lead's territory.
    #[schema(required = true)]
    pub territory: Option<String>,
    /// Why (erasures and retention).
    #[schema(required = true)]
    pub reason: Option<ErasureReason>,
    /// Leads erased (an erasure: 1; a retention batch: its count).
    #[schema(minimum = 0)]
    pub leads_erased: u32,
    /// Mail bodies removed by retention.
    #[schema(minimum = 0)]
    pub mail_bodies_erased: u32,
}

page!(
    /// `GET /api/audit`: newest first.
    AuditPage of AuditEntry
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_erasure_request_names_a_legal_ground_and_nothing_else() {
        let r: ErasureRequest =
            serde_json::from_str(r#"{"reason":"DATA_SUBJECT_REQUEST"}"#).unwrap();
        assert_eq!(r.reason, ErasureRequestReason::DataSubjectRequest);
        assert!(serde_json::from_str::<ErasureRequest>(r#"{"reason":"RETENTION"}"#).is_err());
        assert!(
            serde_json::from_str::<ErasureRequest>(r#"{"reason":"OBJECTION","note":"x"}"#).is_err()
        );
    }
}
