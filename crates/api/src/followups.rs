//! Follow-up runs and the cockpit figures (SPEC §6, §8).

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::wire::rfc3339;

/// A follow-up stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
pub enum Stage {
    /// The T+3 sample offer.
    T3,
    /// The T+7 bulk-order offer.
    T7,
}

/// A follow-up run: `POST /api/followups/run`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunReport {
    /// The run id.
    pub run_id: Uuid,
    /// T+3 follow-ups SENT.
    pub t3_count: u32,
    /// T+7 follow-ups SENT.
    pub t7_count: u32,
    /// Follow-ups SKIPPED (both stages).
    pub skipped_count: u32,
    /// When the run started.
    #[serde(with = "rfc3339")]
    pub started_at: OffsetDateTime,
    /// When it finished.
    #[serde(with = "rfc3339")]
    pub finished_at: OffsetDateTime,
}

/// How a recorded run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RunOutcome {
    /// Nothing processable was left.
    Completed,
    /// A batch failed; the counts are what committed before.
    Failed,
}

/// A row of the run log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunRecord {
    /// The run id.
    pub run_id: Uuid,
    /// T+3 follow-ups SENT.
    pub t3_count: u32,
    /// T+7 follow-ups SENT.
    pub t7_count: u32,
    /// Follow-ups SKIPPED.
    pub skipped_count: u32,
    /// When the run started.
    #[serde(with = "rfc3339")]
    pub started_at: OffsetDateTime,
    /// When it finished.
    #[serde(with = "rfc3339")]
    pub finished_at: OffsetDateTime,
    /// Completed or failed.
    pub outcome: RunOutcome,
    /// For a failed run: why (absent for a completed one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// `GET /api/followups/runs`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RunList {
    /// Newest first.
    pub runs: Vec<RunRecord>,
}

/// On what basis the figures' scope was granted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ScopeKind {
    /// Admin: every lead.
    All,
    /// Manager or viewer: the own territories.
    Territories,
    /// Sales: the own leads.
    OwnLeads,
    /// Nothing.
    None,
}

/// The cockpit figures: `GET /api/dashboard/followup` and each `followup-metrics` message of
/// `GET /api/dashboard/followup-stream` (SPEC §8).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct FollowUpFigures {
    /// Open leads (REGISTERED/ACTIVE, clock running) without a T+3 record.
    #[serde(rename = "pendingT3")]
    pub pending_t3: u64,
    /// Open leads with T+3 processed and no T+7 record.
    #[serde(rename = "pendingT7")]
    pub pending_t7: u64,
    /// Follow-ups SENT since local midnight, Europe/Berlin.
    pub sent_today: u64,
    /// Percent (one decimal) of leads with a SENT follow-up that are now CONVERTED.
    pub conversion_rate: f64,
    /// The basis of the scope.
    pub scope: ScopeKind,
    /// When the figures were computed.
    #[serde(with = "rfc3339")]
    pub generated_at: OffsetDateTime,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_run_record_round_trips_and_omits_a_missing_error() {
        let record = RunRecord {
            run_id: Uuid::nil(),
            t3_count: 1,
            t7_count: 2,
            skipped_count: 3,
            started_at: time::macros::datetime!(2026-03-05 09:15 UTC),
            finished_at: time::macros::datetime!(2026-03-05 09:15:02 UTC),
            outcome: RunOutcome::Completed,
            error: None,
        };
        let json = serde_json::to_value(&record).unwrap();
        assert_eq!(
            json,
            json!({
                "runId": "00000000-0000-0000-0000-000000000000",
                "t3Count": 1, "t7Count": 2, "skippedCount": 3,
                "startedAt": "2026-03-05T09:15:00Z", "finishedAt": "2026-03-05T09:15:02Z",
                "outcome": "COMPLETED",
            })
        );
        assert_eq!(serde_json::from_value::<RunRecord>(json).unwrap(), record);
    }

    #[test]
    fn figures_spell_their_stage_names_as_the_cockpit_reads_them() {
        let figures = FollowUpFigures {
            pending_t3: 4,
            pending_t7: 1,
            sent_today: 1,
            conversion_rate: 12.5,
            scope: ScopeKind::OwnLeads,
            generated_at: time::macros::datetime!(2026-03-05 09:15 UTC),
        };
        let json = serde_json::to_value(&figures).unwrap();
        assert_eq!(json["pendingT3"], 4);
        assert_eq!(json["pendingT7"], 1);
        assert_eq!(json["scope"], "OWN_LEADS");
        assert_eq!(
            serde_json::from_value::<FollowUpFigures>(json).unwrap(),
            figures
        );
    }
}
