//! The timeline (SPEC §5).

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::wire::rfc3339;

/// What happened; the types after `NOTE` are written by the system only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[allow(missing_docs)] // the variants are their names
pub enum ActivityType {
    Email,
    EmailReceived,
    Call,
    Meeting,
    SampleSent,
    SampleFeedback,
    Order,
    Note,
    Created,
    Updated,
    StatusChanged,
    OwnerChanged,
    ClockStopped,
    ClockResumed,
    FollowupSent,
    FollowupSkipped,
    ReminderSent,
    GracePeriodStarted,
    Expired,
    Reactivated,
    Deleted,
    Unsubscribed,
    Erased,
}

/// The activity types users may log; every one but `NOTE` is a meaningful contact. The system
/// types are 422.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[allow(missing_docs)] // the variants are their names
pub enum UserActivityType {
    Email,
    EmailReceived,
    Call,
    Meeting,
    SampleSent,
    SampleFeedback,
    Order,
    Note,
}

impl From<UserActivityType> for ActivityType {
    fn from(t: UserActivityType) -> ActivityType {
        match t {
            UserActivityType::Email => ActivityType::Email,
            UserActivityType::EmailReceived => ActivityType::EmailReceived,
            UserActivityType::Call => ActivityType::Call,
            UserActivityType::Meeting => ActivityType::Meeting,
            UserActivityType::SampleSent => ActivityType::SampleSent,
            UserActivityType::SampleFeedback => ActivityType::SampleFeedback,
            UserActivityType::Order => ActivityType::Order,
            UserActivityType::Note => ActivityType::Note,
        }
    }
}

/// A timeline entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Activity {
    /// Server-assigned.
    pub id: Uuid,
    /// The lead.
    pub lead_id: Uuid,
    /// What happened.
    #[serde(rename = "type")]
    pub activity_type: ActivityType,
    /// When it happened.
    #[serde(with = "rfc3339")]
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
    #[serde(with = "rfc3339")]
    pub created_at: OffsetDateTime,
}

/// `POST /api/leads/{id}/activities`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ActivityCreate {
    /// A user activity type.
    #[serde(rename = "type")]
    pub activity_type: UserActivityType,
    /// Default now; not in the future (422).
    #[serde(
        default,
        with = "rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub occurred_at: Option<OffsetDateTime>,
    /// Free text (line breaks and tabs allowed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(
        max_length = 2000,
        pattern = r"^[^\u0000-\u0008\u000B\u000C\u000E-\u001F\u007F-\u009F]*$"
    )]
    pub description: Option<String>,
}

impl ActivityCreate {
    /// An activity of `activity_type` now, without a description.
    pub fn new(activity_type: UserActivityType) -> ActivityCreate {
        ActivityCreate {
            activity_type,
            occurred_at: None,
            description: None,
        }
    }
}

crate::page!(
    /// A page of a lead's timeline, newest first (`GET /api/leads/{id}/activities`).
    ActivityPage of Activity
);
