//! Activities — the lead's timeline (SPEC §5).

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use freshplan_kernel::UserId;

use crate::model::FieldError;

/// The type of a timeline entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ActivityType {
    /// An email sent to the prospect.
    Email,
    /// An email received from the prospect.
    EmailReceived,
    /// A phone call.
    Call,
    /// A meeting.
    Meeting,
    /// Samples sent.
    SampleSent,
    /// Feedback on samples.
    SampleFeedback,
    /// An order.
    Order,
    /// An internal note (not a contact).
    Note,
    /// System: the lead was created.
    Created,
    /// System: the lead was updated.
    Updated,
    /// System: the status changed.
    StatusChanged,
    /// System: the owner changed.
    OwnerChanged,
    /// System: the protection clock was stopped.
    ClockStopped,
    /// System: the protection clock was resumed.
    ClockResumed,
    /// System: a follow-up mail was sent.
    FollowupSent,
    /// System: a follow-up was skipped.
    FollowupSkipped,
    /// System: the 60-day reminder.
    ReminderSent,
    /// System: the grace period started.
    GracePeriodStarted,
    /// System: protection expired.
    Expired,
    /// System: a REMINDER lead became ACTIVE again through a contact.
    Reactivated,
    /// System: soft-deleted.
    Deleted,
    /// System: the prospect withdrew email consent.
    Unsubscribed,
    /// System: the person's data was erased (SPEC §13).
    Erased,
}

impl ActivityType {
    /// Every type, in a stable order.
    pub const ALL: [ActivityType; 23] = [
        ActivityType::Email,
        ActivityType::EmailReceived,
        ActivityType::Call,
        ActivityType::Meeting,
        ActivityType::SampleSent,
        ActivityType::SampleFeedback,
        ActivityType::Order,
        ActivityType::Note,
        ActivityType::Created,
        ActivityType::Updated,
        ActivityType::StatusChanged,
        ActivityType::OwnerChanged,
        ActivityType::ClockStopped,
        ActivityType::ClockResumed,
        ActivityType::FollowupSent,
        ActivityType::FollowupSkipped,
        ActivityType::ReminderSent,
        ActivityType::GracePeriodStarted,
        ActivityType::Expired,
        ActivityType::Reactivated,
        ActivityType::Deleted,
        ActivityType::Unsubscribed,
        ActivityType::Erased,
    ];

    /// The API/database spelling, e.g. `SAMPLE_SENT`.
    pub fn as_str(self) -> &'static str {
        match self {
            ActivityType::Email => "EMAIL",
            ActivityType::EmailReceived => "EMAIL_RECEIVED",
            ActivityType::Call => "CALL",
            ActivityType::Meeting => "MEETING",
            ActivityType::SampleSent => "SAMPLE_SENT",
            ActivityType::SampleFeedback => "SAMPLE_FEEDBACK",
            ActivityType::Order => "ORDER",
            ActivityType::Note => "NOTE",
            ActivityType::Created => "CREATED",
            ActivityType::Updated => "UPDATED",
            ActivityType::StatusChanged => "STATUS_CHANGED",
            ActivityType::OwnerChanged => "OWNER_CHANGED",
            ActivityType::ClockStopped => "CLOCK_STOPPED",
            ActivityType::ClockResumed => "CLOCK_RESUMED",
            ActivityType::FollowupSent => "FOLLOWUP_SENT",
            ActivityType::FollowupSkipped => "FOLLOWUP_SKIPPED",
            ActivityType::ReminderSent => "REMINDER_SENT",
            ActivityType::GracePeriodStarted => "GRACE_PERIOD_STARTED",
            ActivityType::Expired => "EXPIRED",
            ActivityType::Reactivated => "REACTIVATED",
            ActivityType::Deleted => "DELETED",
            ActivityType::Unsubscribed => "UNSUBSCRIBED",
            ActivityType::Erased => "ERASED",
        }
    }

    /// Parses the API spelling.
    pub fn parse(s: &str) -> Option<ActivityType> {
        ActivityType::ALL.into_iter().find(|t| t.as_str() == s)
    }

    /// Whether users may log this type (the first eight); the rest are written by the system.
    pub fn is_user_loggable(self) -> bool {
        (self as usize) <= (ActivityType::Note as usize)
    }

    /// Whether this type is a meaningful contact: every user type except `NOTE`.
    pub fn is_meaningful_contact(self) -> bool {
        self.is_user_loggable() && self != ActivityType::Note
    }
}

/// The longest activity description, in characters.
pub const MAX_DESCRIPTION: usize = 2000;

/// An entry of a lead's timeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Activity {
    /// The activity id.
    pub id: Uuid,
    /// The lead it belongs to.
    pub lead_id: Uuid,
    /// What happened.
    pub activity_type: ActivityType,
    /// When it happened.
    pub occurred_at: OffsetDateTime,
    /// Free text, ≤ 2000 characters.
    pub description: Option<String>,
    /// Who logged it (`system` for system entries).
    pub user_id: UserId,
    /// Derived from the type.
    pub meaningful_contact: bool,
    /// Server-set details (e.g. old and new status).
    pub metadata: serde_json::Value,
    /// When it was recorded.
    pub created_at: OffsetDateTime,
}

impl Activity {
    /// A system entry (the timeline record of an automatic change).
    pub fn system(
        id: Uuid,
        lead_id: Uuid,
        activity_type: ActivityType,
        at: OffsetDateTime,
        user_id: UserId,
        description: Option<String>,
        metadata: serde_json::Value,
    ) -> Activity {
        Activity {
            id,
            lead_id,
            activity_type,
            occurred_at: at,
            description,
            user_id,
            meaningful_contact: activity_type.is_meaningful_contact(),
            metadata,
            created_at: at,
        }
    }
}

/// Validates the description of a logged activity (trimmed, ≤ 2000 characters, no control characters but line breaks and tabs; empty is none).
pub fn validate_description(description: Option<&str>) -> Result<Option<String>, FieldError> {
    crate::model::multiline_text("description", description, MAX_DESCRIPTION)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_types_and_meaningful_contacts() {
        let user: Vec<_> = ActivityType::ALL
            .into_iter()
            .filter(|t| t.is_user_loggable())
            .map(|t| t.as_str())
            .collect();
        assert_eq!(
            user,
            [
                "EMAIL",
                "EMAIL_RECEIVED",
                "CALL",
                "MEETING",
                "SAMPLE_SENT",
                "SAMPLE_FEEDBACK",
                "ORDER",
                "NOTE"
            ]
        );
        assert!(!ActivityType::Note.is_meaningful_contact());
        assert!(ActivityType::Call.is_meaningful_contact());
        assert!(!ActivityType::FollowupSent.is_meaningful_contact());
        assert!(!ActivityType::Created.is_user_loggable());
    }

    #[test]
    fn names_round_trip() {
        for t in ActivityType::ALL {
            assert_eq!(ActivityType::parse(t.as_str()), Some(t));
            assert_eq!(serde_json::to_value(t).unwrap(), t.as_str());
        }
    }

    #[test]
    fn description_limit() {
        assert!(validate_description(Some(&"x".repeat(2000))).is_ok());
        assert!(validate_description(Some(&"x".repeat(2001))).is_err());
        assert_eq!(validate_description(Some("  ")).unwrap(), None);
    }

    #[test]
    fn description_refuses_nul_and_control_characters_but_keeps_lines() {
        for bad in ["a\u{0}b", "\u{0}", "a\u{1b}b", "a\u{7f}b", "a\u{85}b"] {
            let e = validate_description(Some(bad)).unwrap_err();
            assert_eq!(e.field, "description", "{bad:?}");
        }
        assert_eq!(
            validate_description(Some(" Anruf:\r\n\t- Muster\n")).unwrap(),
            Some("Anruf:\r\n\t- Muster".to_owned())
        );
    }
}
