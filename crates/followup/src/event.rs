//! The follow-up events (SPEC §7.2) and the run report.
//!
//! | type | subject | key basis | data |
//! |---|---|---|---|
//! | `lead.followup.sent.v1` | lead id | [`stage_basis`] | `{leadId, stage, territory, processedAt}` |
//! | `lead.followup.skipped.v1` | lead id | [`stage_basis`] | `{leadId, stage, territory, reason, processedAt}` |
//! | `lead.followup.processed.v1` | — | `Run(runId)` | `{runId, t3Count, t7Count, skippedCount, processedAt}` |

use serde::{Deserialize, Serialize};
use serde_json::json;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use uuid::Uuid;

use freshplan_kernel::{CloudEvent, KeyBasis, TerritoryId};

use crate::stage::{FollowUpRecord, FollowUpStatus, Stage};

/// `lead.followup.sent.v1`.
pub const FOLLOWUP_SENT: &str = "lead.followup.sent.v1";
/// `lead.followup.skipped.v1`.
pub const FOLLOWUP_SKIPPED: &str = "lead.followup.skipped.v1";
/// `lead.followup.processed.v1`.
pub const FOLLOWUP_PROCESSED: &str = "lead.followup.processed.v1";

/// The event type of a processed stage.
pub const fn event_type(status: FollowUpStatus) -> &'static str {
    match status {
        FollowUpStatus::Sent => FOLLOWUP_SENT,
        FollowUpStatus::Skipped => FOLLOWUP_SKIPPED,
    }
}

/// The idempotency-key basis of a stage event: the lead version with the stage folded in,
/// `version · 10 + 3` for T+3 and `version · 10 + 7` for T+7.
///
/// Why not the plain version: recording a follow-up need not change the lead's version, so
/// T+3 and T+7 of the same lead can carry the same version — and a T+3 SENT and a T+7 SENT
/// event share type and subject. Folding the stage in keeps their keys distinct while a
/// retried processing of the same stage at the same version still yields the same key.
/// (Injective for every version below `i64::MAX / 10`, i.e. for every real version.)
pub const fn stage_basis(version: i64, stage: Stage) -> KeyBasis {
    KeyBasis::Version(version.saturating_mul(10).saturating_add(stage.days()))
}

fn rfc3339(at: OffsetDateTime) -> String {
    at.to_offset(time::UtcOffset::UTC)
        .format(&Rfc3339)
        .expect("every UTC OffsetDateTime within year 0..=9999 formats as RFC 3339")
}

/// The `lead.followup.sent.v1` / `lead.followup.skipped.v1` event of a processed stage.
///
/// `version` is the lead version of the claimed snapshot; the event's time is the record's
/// `processed_at`.
pub fn stage_event(
    id: Uuid,
    lead_id: Uuid,
    version: i64,
    territory: TerritoryId,
    record: &FollowUpRecord,
) -> CloudEvent {
    let mut data = json!({
        "leadId": lead_id,
        "stage": record.stage.as_str(),
        "territory": territory.as_str(),
        "processedAt": rfc3339(record.processed_at),
    });
    if let Some(reason) = record.reason {
        data["reason"] = json!(reason.as_str());
    }
    CloudEvent::new(
        id,
        CloudEvent::SOURCE_FOLLOWUP,
        event_type(record.status),
        record.processed_at,
        Some(lead_id.to_string()),
        stage_basis(version, record.stage),
        data,
    )
    .expect("source and type are non-empty constants")
}

/// The summary of one follow-up run (`POST /api/followups/run`, `lead.followup.processed.v1`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunReport {
    /// The run id.
    pub run_id: Uuid,
    /// T+3 follow-ups SENT in this run.
    pub t3_count: u32,
    /// T+7 follow-ups SENT in this run.
    pub t7_count: u32,
    /// Follow-ups SKIPPED in this run (both stages).
    pub skipped_count: u32,
    /// When the run started.
    #[serde(with = "time::serde::rfc3339")]
    pub started_at: OffsetDateTime,
    /// When the run finished.
    #[serde(with = "time::serde::rfc3339")]
    pub finished_at: OffsetDateTime,
}

impl RunReport {
    /// An empty report of a run that starts at `started_at`.
    pub const fn new(run_id: Uuid, started_at: OffsetDateTime) -> RunReport {
        RunReport {
            run_id,
            t3_count: 0,
            t7_count: 0,
            skipped_count: 0,
            started_at,
            finished_at: started_at,
        }
    }

    /// Counts one processed record.
    pub fn count(&mut self, record: &FollowUpRecord) {
        match (record.status, record.stage) {
            (FollowUpStatus::Sent, Stage::T3) => self.t3_count += 1,
            (FollowUpStatus::Sent, Stage::T7) => self.t7_count += 1,
            (FollowUpStatus::Skipped, _) => self.skipped_count += 1,
        }
    }

    /// All follow-ups processed in the run.
    pub const fn processed(&self) -> u32 {
        self.t3_count + self.t7_count + self.skipped_count
    }
}

/// The `lead.followup.processed.v1` event of a run (published after every run): no subject,
/// keyed by the run id, timed at `finished_at`.
pub fn processed_event(report: &RunReport, id: Uuid) -> CloudEvent {
    CloudEvent::new(
        id,
        CloudEvent::SOURCE_FOLLOWUP,
        FOLLOWUP_PROCESSED,
        report.finished_at,
        None,
        KeyBasis::Run(report.run_id),
        json!({
            "runId": report.run_id,
            "t3Count": report.t3_count,
            "t7Count": report.t7_count,
            "skippedCount": report.skipped_count,
            "processedAt": rfc3339(report.finished_at),
        }),
    )
    .expect("source and type are non-empty constants")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stage::SkipReason;
    use proptest::prelude::*;
    use time::macros::datetime;

    const AT: OffsetDateTime = datetime!(2026-03-05 10:00 +01:00);

    #[test]
    fn sent_event_shape() {
        let lead = Uuid::from_u128(5);
        let e = stage_event(
            Uuid::from_u128(1),
            lead,
            4,
            TerritoryId::De,
            &FollowUpRecord::sent(Stage::T3, AT),
        );
        assert_eq!(e.event_type, "lead.followup.sent.v1");
        assert_eq!(e.source, "freshplan.leads.followup");
        assert_eq!(e.subject.as_deref(), Some(lead.to_string().as_str()));
        assert_eq!(e.time, datetime!(2026-03-05 09:00 UTC));
        assert_eq!(
            e.data,
            json!({"leadId": lead, "stage": "T3", "territory": "DE", "processedAt": "2026-03-05T09:00:00Z"})
        );
    }

    #[test]
    fn skipped_event_carries_the_reason() {
        let record = FollowUpRecord::skipped(Stage::T7, SkipReason::RecentContact, AT);
        let e = stage_event(
            Uuid::from_u128(1),
            Uuid::from_u128(5),
            4,
            TerritoryId::Ch,
            &record,
        );
        assert_eq!(e.event_type, "lead.followup.skipped.v1");
        assert_eq!(e.data["reason"], "RECENT_CONTACT");
        assert_eq!(e.data["stage"], "T7");
        assert_eq!(e.data["territory"], "CH");
    }

    #[test]
    fn t3_and_t7_keys_differ_at_the_same_version() {
        let lead = Uuid::from_u128(5);
        let t3 = stage_event(
            Uuid::from_u128(1),
            lead,
            4,
            TerritoryId::De,
            &FollowUpRecord::sent(Stage::T3, AT),
        );
        let t7 = stage_event(
            Uuid::from_u128(2),
            lead,
            4,
            TerritoryId::De,
            &FollowUpRecord::sent(Stage::T7, AT),
        );
        assert_ne!(t3.idempotencykey, t7.idempotencykey);
    }

    #[test]
    fn a_retry_yields_the_same_key() {
        let lead = Uuid::from_u128(5);
        let r = FollowUpRecord::sent(Stage::T7, AT);
        let a = stage_event(Uuid::from_u128(1), lead, 4, TerritoryId::De, &r);
        let b = stage_event(Uuid::from_u128(2), lead, 4, TerritoryId::De, &r);
        assert_eq!(a.idempotencykey, b.idempotencykey);
    }

    #[test]
    fn run_report_counts_sent_per_stage_and_skipped_together() {
        let mut r = RunReport::new(Uuid::nil(), AT);
        r.count(&FollowUpRecord::sent(Stage::T3, AT));
        r.count(&FollowUpRecord::sent(Stage::T3, AT));
        r.count(&FollowUpRecord::sent(Stage::T7, AT));
        r.count(&FollowUpRecord::skipped(Stage::T3, SkipReason::NoEmail, AT));
        r.count(&FollowUpRecord::skipped(
            Stage::T7,
            SkipReason::NoConsent,
            AT,
        ));
        assert_eq!(
            (r.t3_count, r.t7_count, r.skipped_count, r.processed()),
            (2, 1, 2, 5)
        );
    }

    #[test]
    fn processed_event_shape() {
        let run = Uuid::from_u128(77);
        let report = RunReport {
            run_id: run,
            t3_count: 2,
            t7_count: 1,
            skipped_count: 3,
            started_at: datetime!(2026-03-05 09:00 UTC),
            finished_at: datetime!(2026-03-05 09:00:02 UTC),
        };
        let e = processed_event(&report, Uuid::from_u128(1));
        assert_eq!(e.event_type, "lead.followup.processed.v1");
        assert_eq!(e.subject, None);
        assert_eq!(
            e.idempotencykey,
            freshplan_kernel::idempotency_key(FOLLOWUP_PROCESSED, "", KeyBasis::Run(run))
        );
        assert_eq!(
            e.data,
            json!({"runId": run, "t3Count": 2, "t7Count": 1, "skippedCount": 3, "processedAt": "2026-03-05T09:00:02Z"})
        );
        assert_eq!(
            serde_json::to_value(report).unwrap(),
            json!({"runId": run, "t3Count": 2, "t7Count": 1, "skippedCount": 3,
                   "startedAt": "2026-03-05T09:00:00Z", "finishedAt": "2026-03-05T09:00:02Z"})
        );
    }

    proptest! {
        #[test]
        fn stage_keys_are_distinct_across_stages_and_versions(
            v1 in 0i64..(i64::MAX / 10), v2 in 0i64..(i64::MAX / 10),
            s1 in crate::testing::stage(), s2 in crate::testing::stage(),
        ) {
            prop_assume!((v1, s1) != (v2, s2));
            prop_assert_ne!(stage_basis(v1, s1), stage_basis(v2, s2));
        }
    }
}
