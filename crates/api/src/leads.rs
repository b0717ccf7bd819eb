//! Leads (SPEC §4): the lead as returned, its create body and its merge patch.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::territories::TerritoryRef;
use crate::wire::{integer, patch, rfc3339};

/// The kind of food-service business.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[allow(missing_docs)] // the variants are their names
pub enum BusinessType {
    Restaurant,
    Hotel,
    Canteen,
    Catering,
    Other,
}

/// The size of the prospect's kitchen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[allow(missing_docs)] // the variants are their names
pub enum KitchenSize {
    Small,
    Medium,
    Large,
}

/// Where the lead came from (default `WEB`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[allow(missing_docs)] // the variants are their names
pub enum LeadSource {
    Web,
    Email,
    Phone,
    Event,
    Partner,
    Import,
}

/// The lead's status (SPEC §4.3); `DELETED` only for admins listing with
/// `includeDeleted=true`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[allow(missing_docs)] // the variants are their names
pub enum LeadStatus {
    Registered,
    Active,
    Reminder,
    GracePeriod,
    Qualified,
    Converted,
    Lost,
    Expired,
    Deleted,
}

/// The target of a manual transition (SPEC §4.3): every status but `DELETED` (only `DELETE`
/// soft-deletes). A move the status table does not allow from the lead's current status is 422.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[allow(missing_docs)] // the variants are their names
pub enum StatusChange {
    Registered,
    Active,
    Reminder,
    GracePeriod,
    Qualified,
    Converted,
    Lost,
    Expired,
}

impl From<StatusChange> for LeadStatus {
    fn from(s: StatusChange) -> LeadStatus {
        match s {
            StatusChange::Registered => LeadStatus::Registered,
            StatusChange::Active => LeadStatus::Active,
            StatusChange::Reminder => LeadStatus::Reminder,
            StatusChange::GracePeriod => LeadStatus::GracePeriod,
            StatusChange::Qualified => LeadStatus::Qualified,
            StatusChange::Converted => LeadStatus::Converted,
            StatusChange::Lost => LeadStatus::Lost,
            StatusChange::Expired => LeadStatus::Expired,
        }
    }
}

/// Where a change of the email consent came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ConsentSource {
    /// A user through the API (create or update).
    Api,
    /// The prospect, through the unsubscribe link of a mail.
    Unsubscribe,
    /// A CSV import.
    Import,
    /// The erasure of the person's data.
    Erasure,
}

/// Whether a follow-up mail was sent or skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[allow(missing_docs)] // the variants are their names
pub enum FollowUpStatus {
    Sent,
    Skipped,
}

/// Lead protection (SPEC §4.5), read-only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Protection {
    /// `registeredAt` + 6 months + `pausedSeconds`.
    #[serde(with = "rfc3339")]
    pub protected_until: OffsetDateTime,
    /// When the 60-day reminder fired.
    #[serde(with = "rfc3339::option")]
    #[schema(required = true)]
    pub reminder_at: Option<OffsetDateTime>,
    /// End of the current grace period.
    #[serde(with = "rfc3339::option")]
    #[schema(required = true)]
    pub grace_until: Option<OffsetDateTime>,
    /// Set while the clock is stopped.
    #[serde(with = "rfc3339::option")]
    #[schema(required = true)]
    pub clock_stopped_at: Option<OffsetDateTime>,
    /// Why the clock is stopped.
    #[schema(required = true, max_length = 500)]
    pub stop_reason: Option<String>,
    /// Total stopped time so far.
    #[schema(minimum = 0)]
    pub paused_seconds: i64,
}

/// The outcome of one follow-up stage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct FollowUpMark {
    /// Sent or skipped.
    pub status: FollowUpStatus,
    /// When it was processed.
    #[serde(with = "rfc3339")]
    pub processed_at: OffsetDateTime,
    /// The skip reason (`NO_CONSENT`, `NO_EMAIL`, `RECENT_CONTACT`), null when sent.
    #[schema(required = true)]
    pub reason: Option<String>,
}

/// The follow-up stages of a lead (read-only; null until processed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FollowUps {
    /// T+3 (sample offer).
    #[schema(required = true)]
    pub t3: Option<FollowUpMark>,
    /// T+7 (bulk-order offer).
    #[schema(required = true)]
    pub t7: Option<FollowUpMark>,
}

/// A lead (SPEC §4.1). Every property is always present; optional values are null.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Lead {
    /// Server-assigned.
    pub id: Uuid,
    /// +1 on every change; the strong ETag names it.
    #[schema(minimum = 1)]
    pub version: i64,
    /// The company.
    #[schema(
        pattern = r"^[^\u0000-\u001F\u007F-\u009F]*$",
        min_length = 1,
        max_length = 255
    )]
    pub company_name: String,
    /// Contact person.
    #[schema(
        pattern = r"^[^\u0000-\u001F\u007F-\u009F]*$",
        required = true,
        max_length = 255
    )]
    pub contact_person: Option<String>,
    /// Email address.
    #[schema(required = true, format = Email, max_length = 254)]
    pub email: Option<String>,
    /// Phone.
    #[schema(
        pattern = r"^[^\u0000-\u001F\u007F-\u009F]*$",
        required = true,
        max_length = 50
    )]
    pub phone: Option<String>,
    /// Website.
    #[schema(
        pattern = r"^[^\u0000-\u001F\u007F-\u009F]*$",
        required = true,
        max_length = 255
    )]
    pub website: Option<String>,
    /// Street.
    #[schema(
        pattern = r"^[^\u0000-\u001F\u007F-\u009F]*$",
        required = true,
        max_length = 255
    )]
    pub street: Option<String>,
    /// Postal code.
    #[schema(
        pattern = r"^[^\u0000-\u001F\u007F-\u009F]*$",
        required = true,
        max_length = 20
    )]
    pub postal_code: Option<String>,
    /// City.
    #[schema(
        pattern = r"^[^\u0000-\u001F\u007F-\u009F]*$",
        required = true,
        max_length = 100
    )]
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
    #[schema(required = true, minimum = 0, maximum = 2147483647)]
    pub employee_count: Option<i64>,
    /// Estimated volume, a decimal with at most 2 places.
    #[schema(required = true, minimum = 0, maximum = 999999999999.99)]
    pub estimated_volume: Option<f64>,
    /// Industry.
    #[schema(
        pattern = r"^[^\u0000-\u001F\u007F-\u009F]*$",
        required = true,
        max_length = 50
    )]
    pub industry: Option<String>,
    /// Source.
    pub source: LeadSource,
    /// Campaign.
    #[schema(
        pattern = r"^[^\u0000-\u001F\u007F-\u009F]*$",
        required = true,
        max_length = 255
    )]
    pub source_campaign: Option<String>,
    /// Consent to follow-up mails.
    pub email_consent: bool,
    /// When consent was given (set by the server).
    #[serde(with = "rfc3339::option")]
    #[schema(required = true)]
    pub email_consent_at: Option<OffsetDateTime>,
    /// Where the current consent state came from (null: consent never given); every change is
    /// in the consent ledger of `GET /api/leads/{id}/personal-data`.
    #[schema(required = true)]
    pub email_consent_source: Option<ConsentSource>,
    /// When the person's data was erased (`POST /api/leads/{id}/erasure`); an erased lead
    /// keeps only what statistics need and no longer changes.
    #[serde(with = "rfc3339::option")]
    #[schema(required = true)]
    pub erased_at: Option<OffsetDateTime>,
    /// Status.
    pub status: LeadStatus,
    /// Owner; null once released (EXPIRED).
    #[schema(required = true)]
    pub owner_user_id: Option<String>,
    /// Collaborators (a set, sorted).
    pub collaborator_user_ids: Vec<String>,
    /// Start of protection.
    #[serde(with = "rfc3339")]
    pub registered_at: OffsetDateTime,
    /// Last activity of any kind.
    #[serde(with = "rfc3339::option")]
    #[schema(required = true)]
    pub last_activity_at: Option<OffsetDateTime>,
    /// Last meaningful contact.
    #[serde(with = "rfc3339::option")]
    #[schema(required = true)]
    pub last_meaningful_contact_at: Option<OffsetDateTime>,
    /// Protection state.
    pub protection: Protection,
    /// Follow-up state.
    pub follow_ups: FollowUps,
    /// Created.
    #[serde(with = "rfc3339")]
    pub created_at: OffsetDateTime,
    /// Creator's user id.
    pub created_by: String,
    /// Last change.
    #[serde(with = "rfc3339")]
    pub updated_at: OffsetDateTime,
    /// Last changer's user id (`system` for automatic changes).
    pub updated_by: String,
}

/// `POST /api/leads`. Unknown fields are 400; optional fields may be null or absent.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LeadCreate {
    /// Required; 1–255 characters after trimming.
    #[schema(
        min_length = 1,
        max_length = 255,
        pattern = r"^[^\u0000-\u001F\u007F-\u009F]*[^\s\u0000-\u001F\u007F-\u009F][^\u0000-\u001F\u007F-\u009F]*$"
    )]
    pub company_name: String,
    /// Contact person.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(pattern = r"^[^\u0000-\u001F\u007F-\u009F]*$", max_length = 255)]
    pub contact_person: Option<String>,
    /// Email address (an empty string means none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(format = Email, max_length = 254)]
    pub email: Option<String>,
    /// Phone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(pattern = r"^[^\u0000-\u001F\u007F-\u009F]*$", max_length = 50)]
    pub phone: Option<String>,
    /// Website.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(pattern = r"^[^\u0000-\u001F\u007F-\u009F]*$", max_length = 255)]
    pub website: Option<String>,
    /// Street.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(pattern = r"^[^\u0000-\u001F\u007F-\u009F]*$", max_length = 255)]
    pub street: Option<String>,
    /// Postal code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(pattern = r"^[^\u0000-\u001F\u007F-\u009F]*$", max_length = 20)]
    pub postal_code: Option<String>,
    /// City.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(pattern = r"^[^\u0000-\u001F\u007F-\u009F]*$", max_length = 100)]
    pub city: Option<String>,
    /// ISO 3166-1 alpha-2 (any case); default `DE`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(pattern = "^[A-Za-z]{2}$")]
    pub country_code: Option<String>,
    /// Business type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub business_type: Option<BusinessType>,
    /// Kitchen size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kitchen_size: Option<KitchenSize>,
    /// Employees (`119.0` is read as 119).
    #[serde(
        default,
        deserialize_with = "integer::deserialize",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(minimum = 0, maximum = 2147483647)]
    pub employee_count: Option<i64>,
    /// Estimated volume, at most 2 decimal places.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 0, maximum = 999999999999.99, multiple_of = 0.01)]
    pub estimated_volume: Option<f64>,
    /// Industry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(pattern = r"^[^\u0000-\u001F\u007F-\u009F]*$", max_length = 50)]
    pub industry: Option<String>,
    /// Default `WEB`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<LeadSource>,
    /// Campaign.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(pattern = r"^[^\u0000-\u001F\u007F-\u009F]*$", max_length = 255)]
    pub source_campaign: Option<String>,
    /// Default false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email_consent: Option<bool>,
    /// Backdated registration (imports; admin only, else 403); not in the future.
    #[serde(
        default,
        with = "rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub registered_at: Option<OffsetDateTime>,
}

impl LeadCreate {
    /// A create body with only the company name.
    pub fn new(company_name: impl Into<String>) -> LeadCreate {
        LeadCreate {
            company_name: company_name.into(),
            ..LeadCreate::default()
        }
    }
}

/// `PATCH /api/leads/{id}`: a JSON merge patch (RFC 7396). An absent field stays; `null`
/// clears an optional one (`companyName`, `countryCode`, `source`, `emailConsent` and `status`
/// cannot be cleared: `null` is 400). Read-only and unknown fields are 400.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LeadPatch {
    /// 1–255 characters after trimming.
    #[serde(
        default,
        deserialize_with = "patch::required",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(
        nullable = false,
        min_length = 1,
        max_length = 255,
        pattern = r"^[^\u0000-\u001F\u007F-\u009F]*[^\s\u0000-\u001F\u007F-\u009F][^\u0000-\u001F\u007F-\u009F]*$"
    )]
    pub company_name: Option<String>,
    /// Contact person.
    #[serde(
        default,
        deserialize_with = "patch::nullable",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(pattern = r"^[^\u0000-\u001F\u007F-\u009F]*$", value_type = Option<String>, max_length = 255)]
    pub contact_person: Option<Option<String>>,
    /// Email address (an empty string clears it too).
    #[serde(
        default,
        deserialize_with = "patch::nullable",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<String>, format = Email, max_length = 254)]
    pub email: Option<Option<String>>,
    /// Phone.
    #[serde(
        default,
        deserialize_with = "patch::nullable",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(pattern = r"^[^\u0000-\u001F\u007F-\u009F]*$", value_type = Option<String>, max_length = 50)]
    pub phone: Option<Option<String>>,
    /// Website.
    #[serde(
        default,
        deserialize_with = "patch::nullable",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(pattern = r"^[^\u0000-\u001F\u007F-\u009F]*$", value_type = Option<String>, max_length = 255)]
    pub website: Option<Option<String>>,
    /// Street.
    #[serde(
        default,
        deserialize_with = "patch::nullable",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(pattern = r"^[^\u0000-\u001F\u007F-\u009F]*$", value_type = Option<String>, max_length = 255)]
    pub street: Option<Option<String>>,
    /// Postal code.
    #[serde(
        default,
        deserialize_with = "patch::nullable",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(pattern = r"^[^\u0000-\u001F\u007F-\u009F]*$", value_type = Option<String>, max_length = 20)]
    pub postal_code: Option<Option<String>>,
    /// City.
    #[serde(
        default,
        deserialize_with = "patch::nullable",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(pattern = r"^[^\u0000-\u001F\u007F-\u009F]*$", value_type = Option<String>, max_length = 100)]
    pub city: Option<Option<String>>,
    /// ISO 3166-1 alpha-2 (any case); moving between territories follows it.
    #[serde(
        default,
        deserialize_with = "patch::required",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(nullable = false, pattern = "^[A-Za-z]{2}$")]
    pub country_code: Option<String>,
    /// Business type.
    #[serde(
        default,
        deserialize_with = "patch::nullable",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<BusinessType>)]
    pub business_type: Option<Option<BusinessType>>,
    /// Kitchen size.
    #[serde(
        default,
        deserialize_with = "patch::nullable",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<KitchenSize>)]
    pub kitchen_size: Option<Option<KitchenSize>>,
    /// Employees (`119.0` is read as 119).
    #[serde(
        default,
        deserialize_with = "integer::patch",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<i64>, minimum = 0, maximum = 2147483647)]
    pub employee_count: Option<Option<i64>>,
    /// Estimated volume, at most 2 decimal places.
    #[serde(
        default,
        deserialize_with = "patch::nullable",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<f64>, minimum = 0, maximum = 999999999999.99, multiple_of = 0.01)]
    pub estimated_volume: Option<Option<f64>>,
    /// Industry.
    #[serde(
        default,
        deserialize_with = "patch::nullable",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(pattern = r"^[^\u0000-\u001F\u007F-\u009F]*$", value_type = Option<String>, max_length = 50)]
    pub industry: Option<Option<String>>,
    /// Source.
    #[serde(
        default,
        deserialize_with = "patch::required",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(nullable = false)]
    pub source: Option<LeadSource>,
    /// Campaign.
    #[serde(
        default,
        deserialize_with = "patch::nullable",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(pattern = r"^[^\u0000-\u001F\u007F-\u009F]*$", value_type = Option<String>, max_length = 255)]
    pub source_campaign: Option<Option<String>>,
    /// Consent to follow-up mails.
    #[serde(
        default,
        deserialize_with = "patch::required",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(nullable = false)]
    pub email_consent: Option<bool>,
    /// A manual transition (SPEC §4.3); one the status table does not allow from the lead's
    /// current status is 422.
    #[serde(
        default,
        deserialize_with = "patch::required",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(nullable = false)]
    pub status: Option<StatusChange>,
    /// Only with `status: ACTIVE` on an EXPIRED lead (managers/admins): its new owner; in any
    /// other patch 422 (reassign with `PUT /api/leads/{id}/owner`). `null` is the same as absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(
        pattern = r"^[^\u0000-\u001F\u007F-\u009F]*[^\s\u0000-\u001F\u007F-\u009F][^\u0000-\u001F\u007F-\u009F]*$",
        min_length = 1,
        max_length = 64
    )]
    pub owner_user_id: Option<String>,
    /// Replaces the collaborators (a set of user ids, 1–64 characters each, no control
    /// characters); null clears them.
    #[serde(
        default,
        deserialize_with = "patch::nullable",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<Vec<String>>)]
    pub collaborator_user_ids: Option<Option<Vec<String>>>,
}

/// `PUT /api/leads/{id}/owner`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OwnerChange {
    /// The new owner's user id.
    #[schema(
        pattern = r"^[^\u0000-\u001F\u007F-\u009F]*[^\s\u0000-\u001F\u007F-\u009F][^\u0000-\u001F\u007F-\u009F]*$",
        min_length = 1,
        max_length = 64
    )]
    pub owner_user_id: String,
}

/// `POST /api/leads/{id}/clock/stop`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ClockStop {
    /// Why the protection clock stops (line breaks and tabs allowed).
    #[schema(
        min_length = 1,
        max_length = 500,
        pattern = r"^[^\u0000-\u0008\u000B\u000C\u000E-\u001F\u007F-\u009F]*[^\s\u0000-\u0008\u000B\u000C\u000E-\u001F\u007F-\u009F][^\u0000-\u0008\u000B\u000C\u000E-\u001F\u007F-\u009F]*$"
    )]
    pub reason: String,
}

crate::page!(
    /// A page of leads (`GET /api/leads`).
    LeadPage of Lead
);
