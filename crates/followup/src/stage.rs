//! The follow-up vocabulary: stages, outcomes and the record a processed stage leaves behind
//! (SPEC §6).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};

use freshplan_leads::activity::ActivityType;

/// One of the two automatic follow-ups.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Stage {
    /// T+3 — the sample offer, due three days after registration.
    #[serde(rename = "T3")]
    T3,
    /// T+7 — the bulk-order offer, due seven days after registration (and only after T+3 was
    /// processed).
    #[serde(rename = "T7")]
    T7,
}

impl Stage {
    /// Both stages, in processing order.
    pub const ALL: [Stage; 2] = [Stage::T3, Stage::T7];

    /// The API/database spelling: `"T3"` or `"T7"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Stage::T3 => "T3",
            Stage::T7 => "T7",
        }
    }

    /// The number of days after `registeredAt` the stage is due (3 or 7).
    pub const fn days(self) -> i64 {
        match self {
            Stage::T3 => 3,
            Stage::T7 => 7,
        }
    }

    /// The offset from `registeredAt` at which the stage is due.
    pub const fn due_offset(self) -> Duration {
        Duration::days(self.days())
    }

    /// How far back a meaningful contact makes the stage `RECENT_CONTACT` (3 or 7 days).
    pub const fn recent_contact_window(self) -> Duration {
        Duration::days(self.days())
    }

    /// A short German label for timelines and mails (`"T+3"`, `"T+7"`).
    pub const fn label(self) -> &'static str {
        match self {
            Stage::T3 => "T+3",
            Stage::T7 => "T+7",
        }
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A string that names no known value of one of this module's enums.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {kind} {value:?}")]
pub struct UnknownValue {
    /// What was being parsed (`"stage"`, `"follow-up status"`, `"skip reason"`).
    pub kind: &'static str,
    /// The offending input.
    pub value: String,
}

impl FromStr for Stage {
    type Err = UnknownValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Stage::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| UnknownValue {
                kind: "stage",
                value: s.to_owned(),
            })
    }
}

/// How a stage was processed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum FollowUpStatus {
    /// A mail was placed in the outbox.
    Sent,
    /// No mail; the record carries the [`SkipReason`].
    Skipped,
}

impl FollowUpStatus {
    /// The API/database spelling: `"SENT"` or `"SKIPPED"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            FollowUpStatus::Sent => "SENT",
            FollowUpStatus::Skipped => "SKIPPED",
        }
    }

    /// The timeline entry a processed stage writes (`FOLLOWUP_SENT` / `FOLLOWUP_SKIPPED`).
    pub const fn activity_type(self) -> ActivityType {
        match self {
            FollowUpStatus::Sent => ActivityType::FollowupSent,
            FollowUpStatus::Skipped => ActivityType::FollowupSkipped,
        }
    }
}

impl fmt::Display for FollowUpStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for FollowUpStatus {
    type Err = UnknownValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "SENT" => Ok(FollowUpStatus::Sent),
            "SKIPPED" => Ok(FollowUpStatus::Skipped),
            _ => Err(UnknownValue {
                kind: "follow-up status",
                value: s.to_owned(),
            }),
        }
    }
}

/// Why a stage was skipped. Skipping is never silent: it is recorded, logged on the timeline
/// and published as `lead.followup.skipped.v1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SkipReason {
    /// The lead has no (non-blank) email address. Checked first.
    NoEmail,
    /// The lead has not consented to emails (or withdrew consent). Checked second.
    NoConsent,
    /// A meaningful contact happened within the stage's window (3 / 7 days). Checked last.
    RecentContact,
}

impl SkipReason {
    /// Every reason, in precedence order (the first that applies wins).
    pub const ALL: [SkipReason; 3] = [
        SkipReason::NoEmail,
        SkipReason::NoConsent,
        SkipReason::RecentContact,
    ];

    /// The API/database spelling, e.g. `"NO_CONSENT"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            SkipReason::NoEmail => "NO_EMAIL",
            SkipReason::NoConsent => "NO_CONSENT",
            SkipReason::RecentContact => "RECENT_CONTACT",
        }
    }

    /// A German explanation for the timeline.
    pub const fn label(self) -> &'static str {
        match self {
            SkipReason::NoEmail => "keine E-Mail-Adresse hinterlegt",
            SkipReason::NoConsent => "keine Einwilligung in E-Mail-Kontakt",
            SkipReason::RecentContact => "kürzlicher persönlicher Kontakt",
        }
    }
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SkipReason {
    type Err = UnknownValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        SkipReason::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| UnknownValue {
                kind: "skip reason",
                value: s.to_owned(),
            })
    }
}

/// The record of a processed stage. Its existence is what makes processing exactly-once: a
/// stage with a record is never planned again (the database backs this with a unique key on
/// `(lead_id, stage)`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FollowUpRecord {
    /// Which stage.
    pub stage: Stage,
    /// Sent or skipped.
    pub status: FollowUpStatus,
    /// Set exactly when `status` is `SKIPPED`.
    pub reason: Option<SkipReason>,
    /// When it was processed.
    #[serde(with = "time::serde::rfc3339")]
    pub processed_at: OffsetDateTime,
}

impl FollowUpRecord {
    /// A `SENT` record.
    pub const fn sent(stage: Stage, processed_at: OffsetDateTime) -> FollowUpRecord {
        FollowUpRecord {
            stage,
            status: FollowUpStatus::Sent,
            reason: None,
            processed_at,
        }
    }

    /// A `SKIPPED` record with its reason.
    pub const fn skipped(
        stage: Stage,
        reason: SkipReason,
        processed_at: OffsetDateTime,
    ) -> FollowUpRecord {
        FollowUpRecord {
            stage,
            status: FollowUpStatus::Skipped,
            reason: Some(reason),
            processed_at,
        }
    }

    /// Whether a mail went out.
    pub const fn is_sent(&self) -> bool {
        matches!(self.status, FollowUpStatus::Sent)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn stage_offsets_and_windows() {
        assert_eq!(Stage::T3.due_offset(), Duration::days(3));
        assert_eq!(Stage::T7.due_offset(), Duration::days(7));
        assert_eq!(Stage::T3.recent_contact_window(), Duration::days(3));
        assert_eq!(Stage::T7.recent_contact_window(), Duration::days(7));
    }

    #[test]
    fn api_spellings_round_trip() {
        for s in Stage::ALL {
            assert_eq!(s.as_str().parse::<Stage>(), Ok(s));
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        }
        for r in SkipReason::ALL {
            assert_eq!(r.as_str().parse::<SkipReason>(), Ok(r));
            assert_eq!(serde_json::to_value(r).unwrap(), r.as_str());
        }
        for st in [FollowUpStatus::Sent, FollowUpStatus::Skipped] {
            assert_eq!(st.as_str().parse::<FollowUpStatus>(), Ok(st));
            assert_eq!(serde_json::to_value(st).unwrap(), st.as_str());
        }
        assert_eq!(
            SkipReason::ALL.map(SkipReason::as_str),
            ["NO_EMAIL", "NO_CONSENT", "RECENT_CONTACT"]
        );
        assert!("t3".parse::<Stage>().is_err());
        assert!("sent".parse::<FollowUpStatus>().is_err());
    }

    #[test]
    fn record_serialises_in_api_shape() {
        let r = FollowUpRecord::skipped(
            Stage::T3,
            SkipReason::NoConsent,
            datetime!(2026-03-05 09:00 UTC),
        );
        assert_eq!(
            serde_json::to_value(r).unwrap(),
            serde_json::json!({
                "stage": "T3", "status": "SKIPPED", "reason": "NO_CONSENT",
                "processedAt": "2026-03-05T09:00:00Z"
            })
        );
        assert!(FollowUpRecord::sent(Stage::T7, datetime!(2026-03-05 09:00 UTC)).is_sent());
    }

    #[test]
    fn statuses_map_to_system_activities() {
        assert_eq!(
            FollowUpStatus::Sent.activity_type(),
            ActivityType::FollowupSent
        );
        assert_eq!(
            FollowUpStatus::Skipped.activity_type(),
            ActivityType::FollowupSkipped
        );
    }
}
