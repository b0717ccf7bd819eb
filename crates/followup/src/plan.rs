//! Planning: which stage of a lead is next, when it may go out, and whether it is sent or
//! skipped (SPEC §6).
//!
//! Planning is a pure function of a [`Candidate`] snapshot and `now`. Adapters pre-select
//! candidates cheaply (see [`crate::port::FollowUpTx::claim_due`]); the domain re-plans every
//! one of them, so a coarse or stale pre-selection can never send something the rules forbid.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use freshplan_kernel::TerritoryId;
use freshplan_leads::model::BusinessType;
use freshplan_leads::status::LeadStatus;

use crate::stage::{FollowUpRecord, SkipReason, Stage};

/// What planning needs to know about one lead: a snapshot taken (and locked) by the store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Candidate {
    /// The lead id.
    pub lead_id: Uuid,
    /// The lead's aggregate version when the snapshot was taken (basis of event keys).
    pub version: i64,
    /// The lead's territory (calendar, currency, footer, row-level security).
    pub territory: TerritoryId,
    /// The lead's status; only `REGISTERED` and `ACTIVE` are eligible.
    pub status: LeadStatus,
    /// Whether the protection clock is stopped; a stopped clock holds follow-ups back.
    pub clock_stopped: bool,
    /// The anchor of both stages.
    #[serde(with = "time::serde::rfc3339")]
    pub registered_at: OffsetDateTime,
    /// The lead's email address, if any.
    pub email: Option<String>,
    /// Whether the lead consented to emails.
    pub email_consent: bool,
    /// The latest meaningful contact, if any.
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_meaningful_contact_at: Option<OffsetDateTime>,
    /// The kind of business (none counts as `OTHER` for offers).
    pub business_type: Option<BusinessType>,
    /// The company name (used in mails).
    pub company_name: String,
    /// The contact person (used in the salutation).
    pub contact_person: Option<String>,
    /// The T+3 record, once processed.
    pub t3: Option<FollowUpRecord>,
    /// The T+7 record, once processed.
    pub t7: Option<FollowUpRecord>,
}

impl Candidate {
    /// The record of `stage`, if processed.
    pub fn record(&self, stage: Stage) -> Option<&FollowUpRecord> {
        match stage {
            Stage::T3 => self.t3.as_ref(),
            Stage::T7 => self.t7.as_ref(),
        }
    }

    /// The next stage without a record: T+3 first, T+7 only after T+3 was processed (sent or
    /// skipped), `None` when both are done.
    pub fn next_stage(&self) -> Option<Stage> {
        match (&self.t3, &self.t7) {
            (None, _) => Some(Stage::T3),
            (Some(_), None) => Some(Stage::T7),
            (Some(_), Some(_)) => None,
        }
    }

    /// Whether follow-ups may happen at all: `REGISTERED` or `ACTIVE`, clock running. A deleted
    /// lead is `DELETED` and so never eligible.
    pub fn is_eligible(&self) -> bool {
        self.status.is_open() && !self.clock_stopped
    }

    /// The email address to write to: trimmed, `None` when missing or blank.
    pub fn mail_address(&self) -> Option<&str> {
        self.email
            .as_deref()
            .map(str::trim)
            .filter(|e| !e.is_empty())
    }
}

/// When `stage` is due: `registered_at + 3 d` / `+ 7 d`.
pub fn due_at(registered_at: OffsetDateTime, stage: Stage) -> OffsetDateTime {
    registered_at + stage.due_offset()
}

/// When `stage` goes out: the first instant ≥ [`due_at`] inside the territory's business hours
/// (08:00–18:00 local time on business days, SPEC §1).
pub fn send_at(
    territory: TerritoryId,
    registered_at: OffsetDateTime,
    stage: Stage,
) -> OffsetDateTime {
    freshplan_territory::next_business_slot(territory, due_at(registered_at, stage))
}

/// What processing a due stage does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Render the mail and place it in the outbox.
    Send,
    /// Record the stage as skipped, with the reason.
    Skip(SkipReason),
}

/// The decision for one candidate at one instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    /// Not `REGISTERED`/`ACTIVE` (including `DELETED`), or the clock is stopped: nothing
    /// happens yet; the stage is not consumed.
    Ineligible,
    /// The next stage is not due yet, or `now` lies outside business hours.
    Waiting {
        /// The next stage.
        stage: Stage,
        /// The earliest instant at which it will be processed.
        send_at: OffsetDateTime,
    },
    /// Process `stage` now.
    Process {
        /// The stage to process.
        stage: Stage,
        /// Send or skip.
        outcome: Outcome,
    },
    /// Both stages have records.
    Complete,
}

/// Plans the next stage of `candidate` at `now`.
///
/// - Both stages recorded → [`Plan::Complete`] (checked first: a record is final whatever the
///   lead's status became later).
/// - Not eligible ([`Candidate::is_eligible`]) → [`Plan::Ineligible`].
/// - Only the next unprocessed stage is considered ([`Candidate::next_stage`]), so T+7 is never
///   planned before T+3 has a record, and a stage with a record is never planned again.
/// - A stage is processed only at an instant inside business hours and not before its
///   [`send_at`]; a run that missed the slot (e.g. the scheduler was down over the weekend)
///   catches up at the next business instant, never on a Sunday night.
/// - Otherwise the outcome follows [`outcome`].
pub fn plan(candidate: &Candidate, now: OffsetDateTime) -> Plan {
    let Some(stage) = candidate.next_stage() else {
        return Plan::Complete;
    };
    if !candidate.is_eligible() {
        return Plan::Ineligible;
    }
    let due = due_at(candidate.registered_at, stage);
    let slot = freshplan_territory::next_business_slot(candidate.territory, due.max(now));
    if slot > now {
        Plan::Waiting {
            stage,
            send_at: slot,
        }
    } else {
        Plan::Process {
            stage,
            outcome: outcome(candidate, stage, now),
        }
    }
}

/// Send or skip `stage` at `now`. Precedence: `NO_EMAIL`, then `NO_CONSENT`, then
/// `RECENT_CONTACT` (a meaningful contact no more than 3 / 7 days before `now`, the bound
/// included; a contact timestamped after `now` counts as recent too).
pub fn outcome(candidate: &Candidate, stage: Stage, now: OffsetDateTime) -> Outcome {
    if candidate.mail_address().is_none() {
        return Outcome::Skip(SkipReason::NoEmail);
    }
    if !candidate.email_consent {
        return Outcome::Skip(SkipReason::NoConsent);
    }
    let recent = candidate
        .last_meaningful_contact_at
        .is_some_and(|at| now - at <= stage.recent_contact_window());
    if recent {
        return Outcome::Skip(SkipReason::RecentContact);
    }
    Outcome::Send
}

/// Why an outcome could not be applied to a candidate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ApplyError {
    /// The stage already has a record: processing is exactly-once per (lead, stage).
    #[error("follow-up {stage} of lead {lead_id} was already processed")]
    AlreadyProcessed {
        /// The lead.
        lead_id: Uuid,
        /// The stage.
        stage: Stage,
    },
    /// T+7 before T+3 was processed.
    #[error("follow-up T7 of lead {lead_id} cannot be processed before T3")]
    OutOfOrder {
        /// The lead.
        lead_id: Uuid,
    },
}

/// Applies `outcome` for `stage` to `candidate`, returning the new record.
///
/// This is the domain's exactly-once rule: a stage that already has a record is refused with
/// [`ApplyError::AlreadyProcessed`] and the candidate stays unchanged.
///
/// ```
/// # use freshplan_followup::plan::{apply_outcome, ApplyError, Outcome};
/// # use freshplan_followup::stage::Stage;
/// # fn demo(mut c: freshplan_followup::plan::Candidate, now: time::OffsetDateTime) {
/// apply_outcome(&mut c, Stage::T3, Outcome::Send, now).unwrap();
/// assert!(matches!(
///     apply_outcome(&mut c, Stage::T3, Outcome::Send, now),
///     Err(ApplyError::AlreadyProcessed { .. })
/// ));
/// # }
/// ```
pub fn apply_outcome(
    candidate: &mut Candidate,
    stage: Stage,
    outcome: Outcome,
    now: OffsetDateTime,
) -> Result<FollowUpRecord, ApplyError> {
    if candidate.record(stage).is_some() {
        return Err(ApplyError::AlreadyProcessed {
            lead_id: candidate.lead_id,
            stage,
        });
    }
    if stage == Stage::T7 && candidate.t3.is_none() {
        return Err(ApplyError::OutOfOrder {
            lead_id: candidate.lead_id,
        });
    }
    let record = match outcome {
        Outcome::Send => FollowUpRecord::sent(stage, now),
        Outcome::Skip(reason) => FollowUpRecord::skipped(stage, reason, now),
    };
    match stage {
        Stage::T3 => candidate.t3 = Some(record),
        Stage::T7 => candidate.t7 = Some(record),
    }
    Ok(record)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stage::FollowUpStatus;
    use crate::testing;
    use freshplan_territory::in_business_hours;
    use proptest::prelude::*;
    use time::Duration;
    use time::macros::datetime;

    /// Monday 2 March 2026, 10:00 Berlin (09:00 UTC).
    const REGISTERED: OffsetDateTime = datetime!(2026-03-02 09:00 UTC);

    fn lead() -> Candidate {
        Candidate {
            lead_id: Uuid::from_u128(1),
            version: 1,
            territory: TerritoryId::De,
            status: LeadStatus::Registered,
            clock_stopped: false,
            registered_at: REGISTERED,
            email: Some("kueche@example.de".into()),
            email_consent: true,
            last_meaningful_contact_at: None,
            business_type: Some(BusinessType::Restaurant),
            company_name: "Gasthaus Adler".into(),
            contact_person: Some("Anna Berger".into()),
            t3: None,
            t7: None,
        }
    }

    #[test]
    fn due_is_three_and_seven_days_after_registration() {
        assert_eq!(
            due_at(REGISTERED, Stage::T3),
            datetime!(2026-03-05 09:00 UTC)
        );
        assert_eq!(
            due_at(REGISTERED, Stage::T7),
            datetime!(2026-03-09 09:00 UTC)
        );
    }

    #[test]
    fn send_at_moves_to_the_next_business_slot() {
        // Due Thursday 5 March 10:00 Berlin: inside business hours, unchanged.
        assert_eq!(
            send_at(TerritoryId::De, REGISTERED, Stage::T3),
            datetime!(2026-03-05 09:00 UTC)
        );
        // Registered Wednesday 4 March 20:00 Berlin: due Saturday 7 March 20:00 → Monday 08:00.
        let reg = datetime!(2026-03-04 19:00 UTC);
        assert_eq!(
            send_at(TerritoryId::De, reg, Stage::T3),
            datetime!(2026-03-09 07:00 UTC)
        );
    }

    #[test]
    fn waiting_before_send_at() {
        let now = datetime!(2026-03-05 08:59 UTC);
        assert_eq!(
            plan(&lead(), now),
            Plan::Waiting {
                stage: Stage::T3,
                send_at: datetime!(2026-03-05 09:00 UTC)
            }
        );
    }

    #[test]
    fn processes_t3_when_due_in_business_hours() {
        let now = datetime!(2026-03-05 09:00 UTC);
        assert_eq!(
            plan(&lead(), now),
            Plan::Process {
                stage: Stage::T3,
                outcome: Outcome::Send
            }
        );
    }

    #[test]
    fn missed_slot_catches_up_only_in_business_hours() {
        // Due Thursday; the scheduler was down until Saturday 7 March 12:00 Berlin.
        let saturday = datetime!(2026-03-07 11:00 UTC);
        assert_eq!(
            plan(&lead(), saturday),
            Plan::Waiting {
                stage: Stage::T3,
                send_at: datetime!(2026-03-09 07:00 UTC)
            }
        );
        let monday = datetime!(2026-03-09 07:00 UTC);
        assert!(matches!(
            plan(&lead(), monday),
            Plan::Process {
                stage: Stage::T3,
                ..
            }
        ));
    }

    #[test]
    fn only_registered_or_active_with_running_clock_are_eligible() {
        let now = datetime!(2026-03-05 09:00 UTC);
        for status in LeadStatus::ALL {
            let c = Candidate { status, ..lead() };
            let expected_eligible = matches!(status, LeadStatus::Registered | LeadStatus::Active);
            assert_eq!(
                plan(&c, now) != Plan::Ineligible,
                expected_eligible,
                "{status}"
            );
        }
        let stopped = Candidate {
            clock_stopped: true,
            ..lead()
        };
        assert_eq!(plan(&stopped, now), Plan::Ineligible);
        let deleted = Candidate {
            status: LeadStatus::Deleted,
            ..lead()
        };
        assert_eq!(plan(&deleted, now), Plan::Ineligible);
    }

    #[test]
    fn t7_only_after_t3_was_processed() {
        let now = datetime!(2026-03-10 09:00 UTC);
        // T+7 is long due, but T+3 has no record: T+3 comes first.
        assert!(matches!(
            plan(&lead(), now),
            Plan::Process {
                stage: Stage::T3,
                ..
            }
        ));
        // A skipped T+3 counts as processed.
        let c = Candidate {
            t3: Some(FollowUpRecord::skipped(
                Stage::T3,
                SkipReason::NoConsent,
                now,
            )),
            ..lead()
        };
        assert!(matches!(
            plan(&c, now),
            Plan::Process {
                stage: Stage::T7,
                ..
            }
        ));
    }

    #[test]
    fn complete_when_both_stages_have_records() {
        let now = datetime!(2026-03-10 09:00 UTC);
        let c = Candidate {
            t3: Some(FollowUpRecord::sent(Stage::T3, now)),
            t7: Some(FollowUpRecord::sent(Stage::T7, now)),
            status: LeadStatus::Converted,
            ..lead()
        };
        assert_eq!(plan(&c, now), Plan::Complete);
    }

    #[test]
    fn skip_reasons_in_precedence_order() {
        let now = datetime!(2026-03-05 09:00 UTC);
        let recent = Some(now - Duration::days(1));
        let all_bad = Candidate {
            email: None,
            email_consent: false,
            last_meaningful_contact_at: recent,
            ..lead()
        };
        assert_eq!(
            outcome(&all_bad, Stage::T3, now),
            Outcome::Skip(SkipReason::NoEmail)
        );
        let blank = Candidate {
            email: Some("   ".into()),
            ..all_bad.clone()
        };
        assert_eq!(
            outcome(&blank, Stage::T3, now),
            Outcome::Skip(SkipReason::NoEmail)
        );
        let with_email = Candidate {
            email: Some("a@b.de".into()),
            ..all_bad
        };
        assert_eq!(
            outcome(&with_email, Stage::T3, now),
            Outcome::Skip(SkipReason::NoConsent)
        );
        let consented = Candidate {
            email_consent: true,
            ..with_email
        };
        assert_eq!(
            outcome(&consented, Stage::T3, now),
            Outcome::Skip(SkipReason::RecentContact)
        );
        let quiet = Candidate {
            last_meaningful_contact_at: None,
            ..consented
        };
        assert_eq!(outcome(&quiet, Stage::T3, now), Outcome::Send);
    }

    #[test]
    fn recent_contact_window_is_three_or_seven_days_inclusive() {
        let now = datetime!(2026-03-10 09:00 UTC);
        let at = |d: Duration| Candidate {
            last_meaningful_contact_at: Some(now - d),
            ..lead()
        };
        assert_eq!(
            outcome(&at(Duration::days(3)), Stage::T3, now),
            Outcome::Skip(SkipReason::RecentContact)
        );
        assert_eq!(
            outcome(&at(Duration::days(3) + Duration::SECOND), Stage::T3, now),
            Outcome::Send
        );
        assert_eq!(
            outcome(&at(Duration::days(5)), Stage::T7, now),
            Outcome::Skip(SkipReason::RecentContact)
        );
        assert_eq!(
            outcome(&at(Duration::days(7)), Stage::T7, now),
            Outcome::Skip(SkipReason::RecentContact)
        );
        assert_eq!(
            outcome(&at(Duration::days(8)), Stage::T7, now),
            Outcome::Send
        );
    }

    #[test]
    fn apply_outcome_is_exactly_once_and_in_order() {
        let now = datetime!(2026-03-10 09:00 UTC);
        let mut c = lead();
        assert_eq!(
            apply_outcome(&mut c, Stage::T7, Outcome::Send, now),
            Err(ApplyError::OutOfOrder { lead_id: c.lead_id })
        );
        let r = apply_outcome(
            &mut c,
            Stage::T3,
            Outcome::Skip(SkipReason::RecentContact),
            now,
        )
        .unwrap();
        assert_eq!(r.status, FollowUpStatus::Skipped);
        assert_eq!(r.reason, Some(SkipReason::RecentContact));
        assert_eq!(c.t3, Some(r));
        let before = c.clone();
        assert_eq!(
            apply_outcome(&mut c, Stage::T3, Outcome::Send, now),
            Err(ApplyError::AlreadyProcessed {
                lead_id: c.lead_id,
                stage: Stage::T3
            })
        );
        assert_eq!(c, before);
        apply_outcome(&mut c, Stage::T7, Outcome::Send, now).unwrap();
        assert!(c.t7.is_some_and(|r| r.is_sent()));
    }

    /// The precedence rule written out independently of [`outcome`].
    fn expected_outcome(c: &Candidate, stage: Stage, now: OffsetDateTime) -> Outcome {
        let has_email = c.email.as_ref().is_some_and(|e| !e.trim().is_empty());
        let recent = c
            .last_meaningful_contact_at
            .is_some_and(|at| at >= now - Duration::days(stage.days()));
        match (has_email, c.email_consent, recent) {
            (false, _, _) => Outcome::Skip(SkipReason::NoEmail),
            (true, false, _) => Outcome::Skip(SkipReason::NoConsent),
            (true, true, true) => Outcome::Skip(SkipReason::RecentContact),
            (true, true, false) => Outcome::Send,
        }
    }

    proptest! {
        #[test]
        fn send_at_is_never_before_due_and_always_in_business_hours(
            territory in freshplan_kernel::testing::territory_id(),
            registered in testing::instant(),
            stage in testing::stage(),
        ) {
            let at = send_at(territory, registered, stage);
            prop_assert!(at >= due_at(registered, stage));
            prop_assert!(in_business_hours(territory, at));
        }

        #[test]
        fn processing_happens_only_when_due_and_in_business_hours(
            (now, c) in testing::instant().prop_flat_map(|now| {
                (Just(now), testing::candidate_registered_between(now - Duration::days(12), now + Duration::days(1)))
            }),
        ) {
            if let Plan::Process { stage, .. } = plan(&c, now) {
                prop_assert!(now >= send_at(c.territory, c.registered_at, stage));
                prop_assert!(in_business_hours(c.territory, now));
                prop_assert!(c.is_eligible());
            }
            if let Plan::Waiting { stage, send_at: at } = plan(&c, now) {
                prop_assert!(at > now);
                prop_assert!(at >= due_at(c.registered_at, stage));
                prop_assert!(in_business_hours(c.territory, at));
            }
        }

        #[test]
        fn t7_is_never_planned_before_t3_was_processed(
            c in testing::candidate(),
            now in testing::instant(),
        ) {
            let c = Candidate { t3: None, ..c };
            match plan(&c, now) {
                Plan::Waiting { stage, .. } | Plan::Process { stage, .. } => prop_assert_eq!(stage, Stage::T3),
                Plan::Ineligible => prop_assert!(!c.is_eligible()),
                Plan::Complete => prop_assert!(false, "T3 has no record, so the plan cannot be complete"),
            }
        }

        #[test]
        fn a_stage_is_never_processed_twice(
            c in testing::candidate(),
            start in 0i64..(10 * 24 * 60),
            steps in proptest::collection::vec(0i64..(2 * 24 * 60), 1..12),
        ) {
            // Walk time forward from around registration, applying whatever the plan says, and
            // count processing per stage.
            let mut c = c;
            let mut now = c.registered_at + Duration::minutes(start);
            let mut processed = Vec::new();
            for minutes in steps {
                now += Duration::minutes(minutes);
                if let Plan::Process { stage, outcome } = plan(&c, now) {
                    prop_assert!(c.record(stage).is_none());
                    apply_outcome(&mut c, stage, outcome, now).unwrap();
                    processed.push(stage);
                    // Re-planning at the same instant never offers the same stage again.
                    if let Plan::Process { stage: again, .. } | Plan::Waiting { stage: again, .. } = plan(&c, now) {
                        prop_assert_ne!(again, stage);
                    }
                }
            }
            let t3 = processed.iter().filter(|s| **s == Stage::T3).count();
            let t7 = processed.iter().filter(|s| **s == Stage::T7).count();
            prop_assert!(t3 <= 1 && t7 <= 1);
            if let Some(i) = processed.iter().position(|s| *s == Stage::T7) {
                prop_assert!(c.t3.is_some());
                prop_assert!(!processed[i..].contains(&Stage::T3));
            }
        }

        #[test]
        fn skip_reasons_follow_the_precedence(
            c in testing::candidate(),
            stage in testing::stage(),
            now in testing::instant(),
        ) {
            prop_assert_eq!(outcome(&c, stage, now), expected_outcome(&c, stage, now));
        }

        #[test]
        fn applying_to_a_recorded_stage_always_fails_and_changes_nothing(
            c in testing::candidate(),
            stage in testing::stage(),
            now in testing::instant(),
        ) {
            let mut c = c;
            let before = c.clone();
            let result = apply_outcome(&mut c, stage, Outcome::Send, now);
            if before.record(stage).is_some() {
                prop_assert_eq!(result, Err(ApplyError::AlreadyProcessed { lead_id: before.lead_id, stage }));
                prop_assert_eq!(c, before);
            }
        }
    }
}
