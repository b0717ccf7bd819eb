//! The mail outbox, for admins (SPEC §6): `GET /api/mails`, `GET /api/mails/{id}`,
//! `POST /api/mails/{id}/requeue`.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::followups::Stage;
use crate::wire::rfc3339;

/// A mail's delivery state; also the `status` filter of `GET /api/mails`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum MailStatus {
    /// Waiting for (another) attempt.
    Queued,
    /// Handed to the SMTP server.
    Sent,
    /// Given up (or withdrawn by an unsubscribe); `lastError` says why.
    Dead,
}

/// A mail of the outbox without its bodies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MailSummary {
    /// The mail id.
    pub id: Uuid,
    /// The lead.
    pub lead_id: Uuid,
    /// The lead's territory (`DE`, `CH`).
    pub territory: String,
    /// The follow-up stage.
    pub stage: Stage,
    /// The recipient.
    pub recipient: String,
    /// The subject line.
    pub subject: String,
    /// The delivery state.
    pub status: MailStatus,
    /// Attempts so far.
    pub attempts: u32,
    /// When the next attempt is due (QUEUED).
    #[serde(with = "rfc3339")]
    pub next_attempt_at: OffsetDateTime,
    /// The last failure.
    #[schema(required = true)]
    pub last_error: Option<String>,
    /// When it was queued.
    #[serde(with = "rfc3339")]
    pub created_at: OffsetDateTime,
    /// When it was sent.
    #[serde(with = "rfc3339::option")]
    #[schema(required = true)]
    pub sent_at: Option<OffsetDateTime>,
}

/// One mail with its bodies: `GET /api/mails/{id}`, `POST /api/mails/{id}/requeue`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Mail {
    /// The mail id.
    pub id: Uuid,
    /// The lead.
    pub lead_id: Uuid,
    /// The lead's territory (`DE`, `CH`).
    pub territory: String,
    /// The follow-up stage.
    pub stage: Stage,
    /// The recipient.
    pub recipient: String,
    /// The subject line.
    pub subject: String,
    /// The delivery state.
    pub status: MailStatus,
    /// Attempts so far.
    pub attempts: u32,
    /// When the next attempt is due (QUEUED).
    #[serde(with = "rfc3339")]
    pub next_attempt_at: OffsetDateTime,
    /// The last failure.
    #[schema(required = true)]
    pub last_error: Option<String>,
    /// When it was queued.
    #[serde(with = "rfc3339")]
    pub created_at: OffsetDateTime,
    /// When it was sent.
    #[serde(with = "rfc3339::option")]
    #[schema(required = true)]
    pub sent_at: Option<OffsetDateTime>,
    /// The HTML body.
    pub html: String,
    /// The plain-text body.
    pub text: String,
    /// The signed unsubscribe link.
    pub unsubscribe_url: String,
}

/// `GET /api/mails`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MailPage {
    /// Newest first.
    pub mails: Vec<MailSummary>,
    /// Pass it as `after` for the next page; `null` on the last. Opaque.
    #[schema(required = true)]
    pub next_cursor: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_summary_writes_every_field_and_reads_back() {
        let summary = MailSummary {
            id: Uuid::nil(),
            lead_id: Uuid::max(),
            territory: "DE".into(),
            stage: Stage::T3,
            recipient: "info@example.com".into(),
            subject: "Ihr Probenpaket".into(),
            status: MailStatus::Queued,
            attempts: 0,
            next_attempt_at: time::macros::datetime!(2026-03-05 09:15 UTC),
            last_error: None,
            created_at: time::macros::datetime!(2026-03-05 09:15 UTC),
            sent_at: None,
        };
        let json = serde_json::to_value(&summary).unwrap();
        assert_eq!(json["stage"], "T3");
        assert_eq!(json["status"], "QUEUED");
        assert_eq!(json["lastError"], json!(null));
        assert_eq!(json["sentAt"], json!(null));
        assert_eq!(
            serde_json::from_value::<MailSummary>(json).unwrap(),
            summary
        );
    }

    #[test]
    fn the_status_filter_reads_the_api_spelling_only() {
        let status = |s: &str| serde_json::from_value::<MailStatus>(json!(s));
        assert_eq!(status("DEAD").unwrap(), MailStatus::Dead);
        assert!(status("dead").is_err());
        assert!(status("BOUNCED").is_err());
    }
}
