//! The domain events a lead emits (SPEC §7.2) and their CloudEvents form.

use serde_json::json;
use time::OffsetDateTime;
use uuid::Uuid;

use freshplan_kernel::{CloudEvent, KeyBasis, UserId};

use crate::activity::Activity;
use crate::lead::Lead;
use crate::personal::ErasureReason;
use crate::status::LeadStatus;

/// A lead event, before it gets its envelope.
#[derive(Debug, Clone, PartialEq)]
pub enum LeadEvent {
    /// `lead.created.v1`.
    Created,
    /// `lead.updated.v1`: which fields changed.
    Updated {
        /// API names of the changed fields.
        fields: Vec<&'static str>,
    },
    /// `lead.status.changed.v1`.
    StatusChanged {
        /// Before.
        old: LeadStatus,
        /// After.
        new: LeadStatus,
        /// Why: `MANUAL`, `FIRST_CONTACT`, `REACTIVATED`, `INACTIVITY`, `PROTECTION_ENDED`,
        /// `GRACE_EXPIRED`.
        reason: String,
    },
    /// `lead.owner.changed.v1`.
    OwnerChanged {
        /// Previous owner.
        old: Option<UserId>,
        /// New owner.
        new: Option<UserId>,
    },
    /// `lead.activity.logged.v1`.
    ActivityLogged(Box<Activity>),
    /// `lead.deleted.v1`.
    Deleted {
        /// The status before deletion.
        old_status: LeadStatus,
    },
    /// `lead.protection.reminder.v1`.
    ProtectionReminder {
        /// When the grace window ends.
        grace_until: OffsetDateTime,
    },
    /// `lead.protection.expired.v1`.
    ProtectionExpired {
        /// The released owner.
        previous_owner: Option<UserId>,
    },
    /// `lead.erased.v1`: the person's data was erased; consumers erase their copies too.
    Erased {
        /// Why.
        reason: ErasureReason,
    },
}

/// Whether a lead event can move the cockpit figures (the `dashboard_updates` hint of SPEC §7.3):
/// everything except a logged activity that is not a meaningful contact. Stated on the envelope,
/// because that is what adapters hold when they write the outbox.
pub fn moves_dashboard(event: &CloudEvent) -> bool {
    event.event_type != crate::import::IMPORT_FINISHED
        && !(event.event_type == LEAD_EVENT_TYPES[4]
            && event.data.get("meaningfulContact") == Some(&serde_json::Value::Bool(false)))
}

/// Every lead event type this crate emits (the follow-up types come from `freshplan-followup`).
pub const LEAD_EVENT_TYPES: [&str; 10] = [
    "lead.created.v1",
    "lead.updated.v1",
    "lead.status.changed.v1",
    "lead.owner.changed.v1",
    "lead.activity.logged.v1",
    "lead.deleted.v1",
    "lead.protection.reminder.v1",
    "lead.protection.expired.v1",
    "lead.erased.v1",
    crate::import::IMPORT_FINISHED,
];

pub(crate) fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

impl LeadEvent {
    /// The CloudEvents `type`.
    pub fn event_type(&self) -> &'static str {
        match self {
            LeadEvent::Created => LEAD_EVENT_TYPES[0],
            LeadEvent::Updated { .. } => LEAD_EVENT_TYPES[1],
            LeadEvent::StatusChanged { .. } => LEAD_EVENT_TYPES[2],
            LeadEvent::OwnerChanged { .. } => LEAD_EVENT_TYPES[3],
            LeadEvent::ActivityLogged(_) => LEAD_EVENT_TYPES[4],
            LeadEvent::Deleted { .. } => LEAD_EVENT_TYPES[5],
            LeadEvent::ProtectionReminder { .. } => LEAD_EVENT_TYPES[6],
            LeadEvent::ProtectionExpired { .. } => LEAD_EVENT_TYPES[7],
            LeadEvent::Erased { .. } => LEAD_EVENT_TYPES[8],
        }
    }

    /// The `data` of the event. Every payload carries `leadId`, `territory` and `version`; the
    /// machine-readable catalog with JSON Schemas is still to be written (issue 4).
    pub fn data(&self, lead: &Lead, version: i64) -> serde_json::Value {
        let mut data = json!({
            "leadId": lead.id,
            "territory": lead.territory,
            "version": version,
        });
        let extra = match self {
            LeadEvent::Created => json!({
                "companyName": lead.data.company_name.as_str(),
                "status": lead.status,
                "ownerUserId": lead.owner,
                "businessType": lead.data.business_type,
                "registeredAt": rfc3339(lead.registered_at),
            }),
            LeadEvent::Updated { fields } => json!({ "fields": fields }),
            LeadEvent::StatusChanged { old, new, reason } => {
                json!({"oldStatus": old, "newStatus": new, "reason": reason})
            }
            LeadEvent::OwnerChanged { old, new } => {
                json!({"oldOwnerUserId": old, "newOwnerUserId": new})
            }
            LeadEvent::ActivityLogged(a) => json!({
                "activityId": a.id,
                "type": a.activity_type,
                "meaningfulContact": a.meaningful_contact,
                "occurredAt": rfc3339(a.occurred_at),
                "userId": a.user_id,
            }),
            LeadEvent::Deleted { old_status } => json!({"oldStatus": old_status}),
            LeadEvent::ProtectionReminder { grace_until } => {
                json!({"graceUntil": rfc3339(*grace_until)})
            }
            LeadEvent::ProtectionExpired { previous_owner } => {
                json!({"previousOwnerUserId": previous_owner})
            }
            LeadEvent::Erased { reason } => json!({
                "reason": reason,
                "erasedAt": lead.erased_at.map(rfc3339),
            }),
        };
        if let (Some(obj), serde_json::Value::Object(extra)) = (data.as_object_mut(), extra) {
            obj.extend(extra);
        }
        data
    }

    /// The CloudEvent: source `freshplan.leads`, subject the lead id, idempotency key from type,
    /// lead id and the version the change produced.
    pub fn to_cloud_event(
        &self,
        id: Uuid,
        lead: &Lead,
        version: i64,
        at: OffsetDateTime,
    ) -> CloudEvent {
        CloudEvent::new(
            id,
            CloudEvent::SOURCE_LEADS,
            self.event_type(),
            at,
            Some(lead.id.to_string()),
            KeyBasis::Version(version),
            self.data(lead, version),
        )
        .unwrap_or_else(|e| unreachable!("static source and type are valid: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::activity::ActivityType;
    use crate::model::CompanyName;
    use freshplan_kernel::Actor;
    use time::macros::datetime;

    #[test]
    fn every_instant_in_an_event_payload_is_rfc_3339_utc() {
        let at = datetime!(2026-03-02 09:00:05 UTC);
        let data = crate::LeadData::new(CompanyName::parse("A").unwrap(), "DE").unwrap();
        let (mut lead, _) = Lead::register(Uuid::nil(), data, &Actor::system(), None, at).unwrap();
        lead.erased_at = Some(at + time::Duration::days(400));
        let payload = |e: LeadEvent| e.data(&lead, 2);
        assert_eq!(
            payload(LeadEvent::Created)["registeredAt"],
            "2026-03-02T09:00:05Z"
        );
        let call = Activity::system(
            Uuid::nil(),
            lead.id,
            ActivityType::Call,
            datetime!(2026-03-03 14:30 UTC),
            UserId::parse("u").unwrap(),
            None,
            serde_json::json!({}),
        );
        assert_eq!(
            payload(LeadEvent::ActivityLogged(Box::new(call)))["occurredAt"],
            "2026-03-03T14:30:00Z"
        );
        assert_eq!(
            payload(LeadEvent::ProtectionReminder {
                grace_until: datetime!(2026-05-11 09:00 UTC)
            })["graceUntil"],
            "2026-05-11T09:00:00Z"
        );
        assert_eq!(
            payload(LeadEvent::Erased {
                reason: ErasureReason::DataSubjectRequest
            })["erasedAt"],
            "2027-04-06T09:00:05Z"
        );
    }

    #[test]
    fn only_non_contact_activities_leave_the_dashboard_alone() {
        let at = datetime!(2026-03-02 09:00 UTC);
        let data = crate::LeadData::new(CompanyName::parse("A").unwrap(), "DE").unwrap();
        let (lead, _) = Lead::register(Uuid::nil(), data, &Actor::system(), None, at).unwrap();
        let activity = |t: ActivityType| {
            LeadEvent::ActivityLogged(Box::new(Activity::system(
                Uuid::nil(),
                lead.id,
                t,
                at,
                UserId::parse("u").unwrap(),
                None,
                serde_json::json!({}),
            )))
        };
        let ce = |e: LeadEvent| e.to_cloud_event(Uuid::nil(), &lead, 1, at);
        assert!(!moves_dashboard(&ce(activity(ActivityType::Note))));
        let mut call = activity(ActivityType::Note);
        if let LeadEvent::ActivityLogged(a) = &mut call {
            a.activity_type = ActivityType::Call;
            a.meaningful_contact = true;
        }
        assert!(moves_dashboard(&ce(call)));
        assert!(moves_dashboard(&ce(LeadEvent::Created)));
        assert!(moves_dashboard(&ce(LeadEvent::Deleted {
            old_status: LeadStatus::Active
        })));
    }
}
