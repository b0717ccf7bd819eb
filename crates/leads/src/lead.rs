//! The Lead aggregate (SPEC §4) and its state changes.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use freshplan_kernel::{Actor, Role, TerritoryId, UserId};

use crate::activity::ActivityType;
use crate::duplicates::DuplicateKeys;
use crate::events::LeadEvent;
use crate::model::{
    BusinessType, CompanyName, Email, FieldError, KitchenSize, LeadSource, Volume, multiline_text,
};
use crate::personal::{ConsentSource, ErasureReason, PersonalField};
use crate::protection::{
    AutoTransition, MAX_STOP_REASON, Protection, ProtectionPolicy, SweepFacts, next_transition,
};
use crate::status::{Gate, LeadStatus, TransitionError, manual_transition};

/// The editable data of a lead (everything a user may set).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeadData {
    /// Required, 1–255 characters.
    pub company_name: CompanyName,
    /// ≤ 255.
    pub contact_person: Option<String>,
    /// A valid address.
    pub email: Option<Email>,
    /// ≤ 50.
    pub phone: Option<String>,
    /// ≤ 255.
    pub website: Option<String>,
    /// ≤ 255.
    pub street: Option<String>,
    /// ≤ 20.
    pub postal_code: Option<String>,
    /// ≤ 100.
    pub city: Option<String>,
    /// ISO 3166-1 alpha-2, upper case.
    pub country_code: String,
    /// The kind of business.
    pub business_type: Option<BusinessType>,
    /// Kitchen size.
    pub kitchen_size: Option<KitchenSize>,
    /// ≥ 0.
    pub employee_count: Option<i32>,
    /// ≥ 0, two decimals.
    pub estimated_volume: Option<Volume>,
    /// ≤ 50.
    pub industry: Option<String>,
    /// Where the lead came from.
    pub source: LeadSource,
    /// ≤ 255.
    pub source_campaign: Option<String>,
    /// Whether the prospect agreed to receive email.
    pub email_consent: bool,
}

/// Field limits of SPEC §4.1, in characters.
pub mod limits {
    /// `contactPerson`.
    pub const CONTACT_PERSON: usize = 255;
    /// `phone`.
    pub const PHONE: usize = 50;
    /// `website`.
    pub const WEBSITE: usize = 255;
    /// `street`.
    pub const STREET: usize = 255;
    /// `postalCode`.
    pub const POSTAL_CODE: usize = 20;
    /// `city`.
    pub const CITY: usize = 100;
    /// `industry`.
    pub const INDUSTRY: usize = 50;
    /// `sourceCampaign`.
    pub const SOURCE_CAMPAIGN: usize = 255;
}

impl LeadData {
    /// Minimal data: a company in a country, everything else empty.
    pub fn new(company_name: CompanyName, country_code: &str) -> Result<LeadData, FieldError> {
        Ok(LeadData {
            company_name,
            contact_person: None,
            email: None,
            phone: None,
            website: None,
            street: None,
            postal_code: None,
            city: None,
            country_code: freshplan_territory::normalise_country_code(country_code)
                .map_err(|e| FieldError::new("countryCode", e.to_string()))?,
            business_type: None,
            kitchen_size: None,
            employee_count: None,
            estimated_volume: None,
            industry: None,
            source: LeadSource::Web,
            source_campaign: None,
            email_consent: false,
        })
    }

    /// The territory derived from the country (SPEC §1).
    pub fn territory(&self) -> Result<TerritoryId, FieldError> {
        freshplan_territory::territory_for_country(&self.country_code)
            .map_err(|e| FieldError::new("countryCode", e.to_string()))
    }

    /// The duplicate keys of SPEC §4.2.
    pub fn duplicate_keys(&self) -> DuplicateKeys {
        DuplicateKeys::of(self)
    }
}

/// The outcome of a follow-up stage as shown on the lead (read-only; written by the follow-up
/// automation).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FollowUpMark {
    /// `SENT` or `SKIPPED`.
    pub status: String,
    /// When it was processed.
    pub processed_at: OffsetDateTime,
    /// The skip reason, if skipped.
    pub reason: Option<String>,
}

/// The follow-up marks of a lead.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct FollowUpMarks {
    /// T+3.
    pub t3: Option<FollowUpMark>,
    /// T+7.
    pub t7: Option<FollowUpMark>,
}

/// A lead.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lead {
    /// Server-assigned id.
    pub id: Uuid,
    /// +1 on every change.
    pub version: i64,
    /// The editable data.
    pub data: LeadData,
    /// Derived from the country.
    pub territory: TerritoryId,
    /// The status.
    pub status: LeadStatus,
    /// The owner; `None` once released (EXPIRED).
    pub owner: Option<UserId>,
    /// Users who may read the lead and log activities.
    pub collaborators: BTreeSet<UserId>,
    /// The protection anchor.
    pub registered_at: OffsetDateTime,
    /// The last logged activity of any kind.
    pub last_activity_at: Option<OffsetDateTime>,
    /// The last meaningful contact.
    pub last_meaningful_contact_at: Option<OffsetDateTime>,
    /// When consent was given (server-set).
    pub email_consent_at: Option<OffsetDateTime>,
    /// Where the current consent state came from (`None`: never given).
    pub email_consent_source: Option<ConsentSource>,
    /// When the person's data was erased (SPEC §13). Users can no longer change an erased lead;
    /// the sweep and the follow-up automation still process it (statistics, nothing personal).
    pub erased_at: Option<OffsetDateTime>,
    /// Protection state.
    pub protection: Protection,
    /// Follow-up outcomes (read-only).
    pub follow_ups: FollowUpMarks,
    /// Creation time.
    pub created_at: OffsetDateTime,
    /// Creator.
    pub created_by: UserId,
    /// Last change time.
    pub updated_at: OffsetDateTime,
    /// Last changer.
    pub updated_by: UserId,
}

/// A timeline entry a change writes (the service gives it an id).
#[derive(Debug, Clone, PartialEq)]
pub struct TimelineEntry {
    /// The system activity type.
    pub activity_type: ActivityType,
    /// Human-readable summary.
    pub description: Option<String>,
    /// Details.
    pub metadata: serde_json::Value,
}

/// What a state change produced besides the new state: timeline entries and domain events.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Changes {
    /// Timeline entries to write.
    pub timeline: Vec<TimelineEntry>,
    /// Events to write to the outbox (with the version they belong to).
    pub events: Vec<(i64, LeadEvent)>,
    /// A change of the email consent to record in the ledger (the new value is the lead's).
    pub consent: Option<ConsentSource>,
}

impl Changes {
    /// Whether the change changed anything.
    pub fn is_empty(&self) -> bool {
        self.timeline.is_empty() && self.events.is_empty() && self.consent.is_none()
    }

    fn entry(
        &mut self,
        activity_type: ActivityType,
        description: impl Into<String>,
        metadata: serde_json::Value,
    ) {
        self.timeline.push(TimelineEntry {
            activity_type,
            description: Some(description.into()),
            metadata,
        });
    }
}

/// A partial update (JSON merge patch semantics): `None` leaves a field alone,
/// `Some(None)` clears an optional field.
#[derive(Debug, Clone, PartialEq, Default)]
#[allow(clippy::option_option)] // three states are the point of a merge patch
pub struct LeadPatch {
    /// New company name.
    pub company_name: Option<CompanyName>,
    /// Contact person.
    pub contact_person: Option<Option<String>>,
    /// Email.
    pub email: Option<Option<Email>>,
    /// Phone.
    pub phone: Option<Option<String>>,
    /// Website.
    pub website: Option<Option<String>>,
    /// Street.
    pub street: Option<Option<String>>,
    /// Postal code.
    pub postal_code: Option<Option<String>>,
    /// City.
    pub city: Option<Option<String>>,
    /// Country (normalised upper-case code); may move the lead to the other territory.
    pub country_code: Option<String>,
    /// Business type.
    pub business_type: Option<Option<BusinessType>>,
    /// Kitchen size.
    pub kitchen_size: Option<Option<KitchenSize>>,
    /// Employee count.
    pub employee_count: Option<Option<i32>>,
    /// Estimated volume.
    pub estimated_volume: Option<Option<Volume>>,
    /// Industry.
    pub industry: Option<Option<String>>,
    /// Source.
    pub source: Option<LeadSource>,
    /// Campaign.
    pub source_campaign: Option<Option<String>>,
    /// Email consent.
    pub email_consent: Option<bool>,
    /// A manual status transition.
    pub status: Option<LeadStatus>,
    /// The new owner when reopening an EXPIRED lead.
    pub owner_user_id: Option<UserId>,
    /// The full set of collaborators.
    pub collaborator_user_ids: Option<BTreeSet<UserId>>,
}

/// Why a change to a lead was refused by the aggregate.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChangeError {
    /// A value is not allowed.
    #[error("invalid field: {0}")]
    Validation(FieldError),
    /// The status machine refused.
    #[error(transparent)]
    Transition(#[from] TransitionError),
    /// Reopening an EXPIRED lead needs a manager or admin.
    #[error("only managers and admins may reopen an expired lead")]
    ReopenForbidden,
    /// The clock is already stopped / not stopped.
    #[error("{0}")]
    Clock(&'static str),
    /// The lead is deleted.
    #[error("the lead is deleted")]
    Deleted,
}

impl Lead {
    /// Registers a new lead owned by its creator (SPEC §4.4). `registered_at` backdates an import
    /// (the access policy allows that to admins only); it cannot lie in the future.
    pub fn register(
        id: Uuid,
        data: LeadData,
        creator: &Actor,
        registered_at: Option<OffsetDateTime>,
        now: OffsetDateTime,
    ) -> Result<(Lead, Changes), ChangeError> {
        let territory = data.territory().map_err(ChangeError::Validation)?;
        let registered_at = registered_at.unwrap_or(now);
        if registered_at > now {
            return Err(ChangeError::Validation(FieldError::new(
                "registeredAt",
                "must not be in the future",
            )));
        }
        let lead = Lead {
            id,
            version: 1,
            email_consent_at: data.email_consent.then_some(now),
            email_consent_source: data.email_consent.then_some(ConsentSource::Api),
            erased_at: None,
            territory,
            status: LeadStatus::Registered,
            owner: Some(creator.user_id().clone()),
            collaborators: BTreeSet::new(),
            registered_at,
            last_activity_at: None,
            last_meaningful_contact_at: None,
            protection: Protection::default(),
            follow_ups: FollowUpMarks::default(),
            created_at: now,
            created_by: creator.user_id().clone(),
            updated_at: now,
            updated_by: creator.user_id().clone(),
            data,
        };
        let mut changes = Changes {
            consent: lead.email_consent_source,
            ..Changes::default()
        };
        changes.entry(
            ActivityType::Created,
            "Lead registered",
            serde_json::json!({"status": "REGISTERED"}),
        );
        changes.events.push((1, LeadEvent::Created));
        Ok((lead, changes))
    }

    /// A lead created by an import: [`Lead::register`] with the file's owner (else the importer),
    /// the import named in the `CREATED` timeline entry, and consent (only where the file gives it
    /// explicitly) recorded with the source `IMPORT`.
    pub fn import(
        id: Uuid,
        data: LeadData,
        importer: &Actor,
        owner: Option<UserId>,
        registered_at: Option<OffsetDateTime>,
        now: OffsetDateTime,
        origin: (Uuid, u64),
    ) -> Result<(Lead, Changes), ChangeError> {
        let (mut lead, mut changes) = Lead::register(id, data, importer, registered_at, now)?;
        if let Some(owner) = owner {
            lead.owner = Some(owner);
        }
        if lead.data.email_consent {
            lead.email_consent_source = Some(ConsentSource::Import);
            changes.consent = Some(ConsentSource::Import);
        }
        let (import_id, line) = origin;
        changes.timeline.clear();
        changes.entry(
            ActivityType::Created,
            format!("Lead imported (line {line})"),
            serde_json::json!({"status": "REGISTERED", "importId": import_id, "line": line}),
        );
        Ok((lead, changes))
    }

    /// Whether the lead is soft-deleted.
    pub fn is_deleted(&self) -> bool {
        self.status == LeadStatus::Deleted
    }

    /// `protectedUntil` under `policy`.
    pub fn protected_until(&self, policy: &ProtectionPolicy) -> OffsetDateTime {
        self.protection.protected_until(self.registered_at, policy)
    }

    fn touch(&mut self, actor: &Actor, now: OffsetDateTime) -> i64 {
        self.version += 1;
        self.updated_at = now;
        self.updated_by = actor.user_id().clone();
        self.version
    }

    fn set_status(&mut self, to: LeadStatus, reason: &str, changes: &mut Changes, version: i64) {
        let from = self.status;
        self.status = to;
        changes.events.push((
            version,
            LeadEvent::StatusChanged {
                old: from,
                new: to,
                reason: reason.to_owned(),
            },
        ));
    }

    /// Applies a merge patch (the access policy has already allowed the update itself; reopening
    /// an EXPIRED lead additionally needs a manager or admin, checked here).
    pub fn apply_patch(
        &mut self,
        patch: LeadPatch,
        actor: &Actor,
        now: OffsetDateTime,
    ) -> Result<Changes, ChangeError> {
        if self.is_deleted() {
            return Err(ChangeError::Deleted);
        }
        let before = self.clone();
        let mut fields: Vec<&'static str> = Vec::new();
        macro_rules! set {
            ($field:ident, $name:literal) => {
                if let Some(v) = patch.$field {
                    if self.data.$field != v {
                        self.data.$field = v;
                        fields.push($name);
                    }
                }
            };
        }
        if let Some(v) = patch.company_name
            && self.data.company_name != v
        {
            self.data.company_name = v;
            fields.push("companyName");
        }
        set!(contact_person, "contactPerson");
        set!(email, "email");
        set!(phone, "phone");
        set!(website, "website");
        set!(street, "street");
        set!(postal_code, "postalCode");
        set!(city, "city");
        set!(business_type, "businessType");
        set!(kitchen_size, "kitchenSize");
        set!(employee_count, "employeeCount");
        set!(estimated_volume, "estimatedVolume");
        set!(industry, "industry");
        set!(source_campaign, "sourceCampaign");
        if let Some(v) = patch.source
            && self.data.source != v
        {
            self.data.source = v;
            fields.push("source");
        }
        if let Some(code) = patch.country_code {
            let code = freshplan_territory::normalise_country_code(&code).map_err(|e| {
                ChangeError::Validation(FieldError::new("countryCode", e.to_string()))
            })?;
            if self.data.country_code != code {
                self.data.country_code = code;
                self.territory = self.data.territory().map_err(ChangeError::Validation)?;
                fields.push("countryCode");
            }
        }
        if let Some(consent) = patch.email_consent
            && self.data.email_consent != consent
        {
            self.data.email_consent = consent;
            self.email_consent_at = consent.then_some(now);
            self.email_consent_source = Some(ConsentSource::Api);
            fields.push("emailConsent");
        }
        if let Some(c) = patch.collaborator_user_ids
            && self.collaborators != c
        {
            self.collaborators = c;
            fields.push("collaboratorUserIds");
        }
        let mut changes = Changes {
            consent: fields
                .contains(&"emailConsent")
                .then_some(ConsentSource::Api),
            ..Changes::default()
        };
        let status_change = patch.status.filter(|s| *s != self.status);
        if patch.owner_user_id.is_some() && status_change != Some(LeadStatus::Active) {
            *self = before;
            return Err(ChangeError::Validation(FieldError::new(
                "ownerUserId",
                "can only be set when reopening an EXPIRED lead; use PUT /owner to reassign",
            )));
        }
        if fields.is_empty() && status_change.is_none() {
            return Ok(changes);
        }
        let version = self.touch(actor, now);
        if !fields.is_empty() {
            changes.entry(
                ActivityType::Updated,
                format!("Updated {}", fields.join(", ")),
                serde_json::json!({"fields": fields}),
            );
            changes.events.push((
                version,
                LeadEvent::Updated {
                    fields: fields.clone(),
                },
            ));
        }
        if let Some(to) = status_change {
            let gate = match manual_transition(self.status, to, self.protection.is_stopped()) {
                Ok(g) => g,
                Err(e) => {
                    *self = before;
                    return Err(e.into());
                }
            };
            let from = self.status;
            if gate == Gate::ManagerReopen {
                if !(actor.has_role(Role::Manager) || actor.has_role(Role::Admin)) {
                    *self = before;
                    return Err(ChangeError::ReopenForbidden);
                }
                let new_owner = patch
                    .owner_user_id
                    .unwrap_or_else(|| actor.user_id().clone());
                self.owner = Some(new_owner.clone());
                // Reopening restarts protection: a fresh 6-month claim for the new owner.
                self.registered_at = now;
                self.last_meaningful_contact_at = None;
                self.protection = Protection::default();
                changes.entry(
                    ActivityType::OwnerChanged,
                    format!("Owner set to {new_owner}"),
                    serde_json::json!({"oldOwner": null, "newOwner": new_owner}),
                );
                changes.events.push((
                    version,
                    LeadEvent::OwnerChanged {
                        old: None,
                        new: Some(new_owner),
                    },
                ));
            }
            if matches!(from, LeadStatus::Reminder | LeadStatus::GracePeriod) {
                self.protection.reminder_at = None;
                self.protection.grace_until = None;
            }
            changes.entry(
                ActivityType::StatusChanged,
                format!("Status {} → {}", from, to),
                serde_json::json!({"oldStatus": from, "newStatus": to, "reason": "MANUAL"}),
            );
            self.set_status(to, "MANUAL", &mut changes, version);
        }
        Ok(changes)
    }

    /// Records a logged activity's effect (SPEC §5): `lastActivityAt`, and for a meaningful
    /// contact `lastMeaningfulContactAt` (max with the existing value) and the automatic
    /// transitions REGISTERED → ACTIVE and REMINDER → ACTIVE (REACTIVATED). While the clock is
    /// stopped the contact is recorded but the transition waits for [`Lead::resume_clock`]
    /// (SPEC §4.5).
    pub fn record_activity(
        &mut self,
        activity_type: ActivityType,
        occurred_at: OffsetDateTime,
        actor: &Actor,
        now: OffsetDateTime,
    ) -> Changes {
        let version = self.touch(actor, now);
        let mut changes = Changes::default();
        self.last_activity_at = Some(
            self.last_activity_at
                .map_or(occurred_at, |t| t.max(occurred_at)),
        );
        if activity_type.is_meaningful_contact() {
            if self
                .last_meaningful_contact_at
                .is_none_or(|t| occurred_at > t)
            {
                self.last_meaningful_contact_at = Some(occurred_at);
                self.protection.paused_seconds_at_contact = self
                    .protection
                    .paused_before(occurred_at)
                    .min(self.protection.paused_before(now));
            }
            if self.protection.is_stopped() {
                self.protection.contact_while_stopped = true;
            } else {
                self.contact_transition(&mut changes, version);
            }
        }
        changes
    }

    /// The automatic transition of a meaningful contact (SPEC §4.3): REGISTERED → ACTIVE
    /// (`FIRST_CONTACT`), REMINDER → ACTIVE (`REACTIVATED`); nothing from any other status.
    fn contact_transition(&mut self, changes: &mut Changes, version: i64) {
        match self.status {
            LeadStatus::Registered => {
                changes.entry(
                    ActivityType::StatusChanged,
                    "Status REGISTERED → ACTIVE (first meaningful contact)",
                    serde_json::json!({"oldStatus": "REGISTERED", "newStatus": "ACTIVE", "reason": "FIRST_CONTACT"}),
                );
                self.set_status(LeadStatus::Active, "FIRST_CONTACT", changes, version);
            }
            LeadStatus::Reminder => {
                self.protection.reminder_at = None;
                self.protection.grace_until = None;
                changes.entry(
                    ActivityType::Reactivated,
                    "Reactivated by a meaningful contact",
                    serde_json::json!({"oldStatus": "REMINDER", "newStatus": "ACTIVE", "reason": "REACTIVATED"}),
                );
                self.set_status(LeadStatus::Active, "REACTIVATED", changes, version);
            }
            _ => {}
        }
    }

    /// Reassigns the owner (managers/admins; the access policy checks that).
    pub fn reassign(
        &mut self,
        new_owner: UserId,
        actor: &Actor,
        now: OffsetDateTime,
    ) -> Result<Changes, ChangeError> {
        if self.is_deleted() {
            return Err(ChangeError::Deleted);
        }
        let mut changes = Changes::default();
        if self.owner.as_ref() == Some(&new_owner) {
            return Ok(changes);
        }
        let version = self.touch(actor, now);
        let old = self.owner.replace(new_owner.clone());
        changes.entry(
            ActivityType::OwnerChanged,
            format!("Owner set to {new_owner}"),
            serde_json::json!({"oldOwner": old, "newOwner": new_owner}),
        );
        changes.events.push((
            version,
            LeadEvent::OwnerChanged {
                old,
                new: Some(new_owner),
            },
        ));
        Ok(changes)
    }

    /// Stops the protection clock with a reason (≤ 500 characters).
    pub fn stop_clock(
        &mut self,
        reason: &str,
        actor: &Actor,
        now: OffsetDateTime,
    ) -> Result<Changes, ChangeError> {
        if self.is_deleted() {
            return Err(ChangeError::Deleted);
        }
        let reason = match multiline_text("reason", Some(reason), MAX_STOP_REASON) {
            Ok(Some(r)) => r,
            Ok(None) => {
                return Err(ChangeError::Validation(FieldError::new(
                    "reason",
                    "must be 1-500 characters",
                )));
            }
            Err(e) => return Err(ChangeError::Validation(e)),
        };
        if self.protection.is_stopped() {
            return Err(ChangeError::Clock(
                "the protection clock is already stopped",
            ));
        }
        let version = self.touch(actor, now);
        self.protection.clock_stopped_at = Some(now);
        self.protection.stop_reason = Some(reason.clone());
        let mut changes = Changes::default();
        changes.entry(
            ActivityType::ClockStopped,
            format!("Protection clock stopped: {reason}"),
            serde_json::json!({"reason": reason}),
        );
        changes.events.push((
            version,
            LeadEvent::Updated {
                fields: vec!["protection"],
            },
        ));
        Ok(changes)
    }

    /// Resumes the clock: the stopped duration is added to `pausedSeconds` and to a running grace
    /// window, and the transition the meaningful contacts logged while stopped would have made
    /// happens now, with its timeline entry and event (SPEC §4.5).
    pub fn resume_clock(
        &mut self,
        actor: &Actor,
        now: OffsetDateTime,
    ) -> Result<Changes, ChangeError> {
        if self.is_deleted() {
            return Err(ChangeError::Deleted);
        }
        let Some(stopped_at) = self.protection.clock_stopped_at else {
            return Err(ChangeError::Clock("the protection clock is not stopped"));
        };
        let version = self.touch(actor, now);
        let paused = (now - stopped_at).whole_seconds().max(0);
        self.protection.paused_seconds += paused;
        if let Some(g) = self.protection.grace_until {
            self.protection.grace_until = Some(g + time::Duration::seconds(paused));
        }
        self.protection.clock_stopped_at = None;
        self.protection.stop_reason = None;
        let mut changes = Changes::default();
        changes.entry(
            ActivityType::ClockResumed,
            format!("Protection clock resumed after {paused} s"),
            serde_json::json!({"pausedSeconds": paused}),
        );
        changes.events.push((
            version,
            LeadEvent::Updated {
                fields: vec!["protection"],
            },
        ));
        if std::mem::take(&mut self.protection.contact_while_stopped) {
            self.contact_transition(&mut changes, version);
        }
        Ok(changes)
    }

    /// Soft-deletes the lead (SPEC §4.6).
    pub fn soft_delete(
        &mut self,
        actor: &Actor,
        now: OffsetDateTime,
    ) -> Result<Changes, ChangeError> {
        if self.is_deleted() {
            return Err(ChangeError::Deleted);
        }
        let version = self.touch(actor, now);
        let old = self.status;
        self.status = LeadStatus::Deleted;
        let mut changes = Changes::default();
        changes.entry(
            ActivityType::Deleted,
            "Lead deleted",
            serde_json::json!({"oldStatus": old}),
        );
        changes
            .events
            .push((version, LeadEvent::Deleted { old_status: old }));
        Ok(changes)
    }

    /// Withdraws email consent (the unsubscribe link), logging `UNSUBSCRIBED`.
    pub fn withdraw_consent(&mut self, actor: &Actor, now: OffsetDateTime) -> Changes {
        let mut changes = Changes::default();
        if !self.data.email_consent {
            return changes;
        }
        let version = self.touch(actor, now);
        self.data.email_consent = false;
        self.email_consent_at = None;
        self.email_consent_source = Some(ConsentSource::Unsubscribe);
        changes.consent = Some(ConsentSource::Unsubscribe);
        changes.entry(
            ActivityType::Unsubscribed,
            "The prospect withdrew email consent",
            serde_json::json!({}),
        );
        changes.events.push((
            version,
            LeadEvent::Updated {
                fields: vec!["emailConsent"],
            },
        ));
        changes
    }

    /// Erases the person's data (SPEC §13): every [`PersonalField`] removed, the consent
    /// withdrawn (recorded with source `ERASURE`), an `ERASED` entry and a `lead.erased.v1` event
    /// without personal data. Works on deleted leads too (retention erases them). Idempotent: an
    /// erased lead is left alone. The store redacts the related records (timeline, mails, events,
    /// idempotency replays) in the same transaction.
    pub fn erase(&mut self, reason: ErasureReason, actor: &Actor, now: OffsetDateTime) -> Changes {
        let mut changes = Changes::default();
        if self.erased_at.is_some() {
            return changes;
        }
        let version = self.touch(actor, now);
        for field in PersonalField::ALL {
            field.erase(self);
        }
        self.erased_at = Some(now);
        if self.data.email_consent {
            self.data.email_consent = false;
            self.email_consent_at = None;
            self.email_consent_source = Some(ConsentSource::Erasure);
            changes.consent = Some(ConsentSource::Erasure);
        }
        changes.entry(
            ActivityType::Erased,
            "Personal data erased",
            serde_json::json!({"reason": reason}),
        );
        changes.events.push((version, LeadEvent::Erased { reason }));
        changes
    }

    /// The protection sweep for one lead (SPEC §4.5): applies every automatic transition due at
    /// `now`, each as its own change (version +1), until none is due. Idempotent: a second sweep
    /// at the same instant changes nothing.
    pub fn sweep(&mut self, now: OffsetDateTime, policy: &ProtectionPolicy) -> Changes {
        let system = Actor::system();
        let mut changes = Changes::default();
        while let Some(t) = next_transition(
            &SweepFacts {
                status: self.status,
                registered_at: self.registered_at,
                last_meaningful_contact_at: self.last_meaningful_contact_at,
                protection: &self.protection,
            },
            now,
            policy,
        ) {
            let version = self.touch(&system, now);
            let from = self.status;
            match t {
                AutoTransition::Reminder { grace_until } => {
                    self.protection.reminder_at = Some(now);
                    self.protection.grace_until = Some(grace_until);
                    changes.entry(
                        ActivityType::ReminderSent,
                        "No meaningful contact for 60 days: reminder",
                        serde_json::json!({"graceUntil": grace_until.unix_timestamp()}),
                    );
                    changes
                        .events
                        .push((version, LeadEvent::ProtectionReminder { grace_until }));
                    self.set_status(LeadStatus::Reminder, "INACTIVITY", &mut changes, version);
                }
                AutoTransition::GracePeriod { grace_until } => {
                    self.protection.grace_until = Some(grace_until);
                    changes.entry(
                        ActivityType::GracePeriodStarted,
                        "Protection ended: grace period started",
                        serde_json::json!({"graceUntil": grace_until.unix_timestamp()}),
                    );
                    self.set_status(
                        LeadStatus::GracePeriod,
                        "PROTECTION_ENDED",
                        &mut changes,
                        version,
                    );
                }
                AutoTransition::Expire => {
                    let previous_owner = self.owner.take();
                    changes.entry(
                        ActivityType::Expired,
                        "Protection expired: owner released",
                        serde_json::json!({"previousOwner": previous_owner, "fromStatus": from}),
                    );
                    changes
                        .events
                        .push((version, LeadEvent::ProtectionExpired { previous_owner }));
                    self.set_status(LeadStatus::Expired, "GRACE_EXPIRED", &mut changes, version);
                }
            }
        }
        changes
    }
}
