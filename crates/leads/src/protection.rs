//! Lead protection 6 / 60 / 10 with stop-the-clock accounting (SPEC §4.5).

use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};

use crate::status::LeadStatus;

/// The protection durations. They are configuration; [`ProtectionPolicy::default`] is the
/// sales-agent contract: 6 months, 60 days, 10 days.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProtectionPolicy {
    /// How long the owner's claim lasts from `registeredAt`, in calendar months.
    pub protection_months: u8,
    /// The longest gap allowed between meaningful contacts.
    pub inactivity: Duration,
    /// The last window after a reminder or after protection ran out.
    pub grace: Duration,
}

impl Default for ProtectionPolicy {
    fn default() -> Self {
        ProtectionPolicy {
            protection_months: 6,
            inactivity: Duration::days(60),
            grace: Duration::days(10),
        }
    }
}

/// Adds calendar months to an instant (UTC calendar), clamping the day to the month's end
/// (31 Aug + 6 months = 28/29 Feb).
pub fn add_months(t: OffsetDateTime, months: u8) -> OffsetDateTime {
    let date = t.date();
    let total = date.year() * 12 + i32::from(u8::from(date.month())) - 1 + i32::from(months);
    let year = total.div_euclid(12);
    let month = time::Month::try_from(u8::try_from(total.rem_euclid(12) + 1).unwrap_or(1))
        .unwrap_or(time::Month::January);
    let day = date.day().min(month.length(year));
    let new_date = time::Date::from_calendar_date(year, month, day).unwrap_or(date);
    t.replace_date(new_date)
}

/// The protection state of a lead.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Protection {
    /// When the 60-day reminder was issued (status REMINDER).
    pub reminder_at: Option<OffsetDateTime>,
    /// The end of the current grace window (REMINDER or GRACE_PERIOD).
    pub grace_until: Option<OffsetDateTime>,
    /// Set while the clock is stopped.
    pub clock_stopped_at: Option<OffsetDateTime>,
    /// Why the clock was stopped (≤ 500 characters).
    pub stop_reason: Option<String>,
    /// Total seconds the clock has been stopped (completed pauses only); never decreases.
    pub paused_seconds: i64,
    /// The part of `paused_seconds` that lay before the last meaningful contact: only pauses
    /// after the contact extend the 60-day window.
    pub paused_seconds_at_contact: i64,
    /// A meaningful contact was logged while the clock was stopped. It made no transition then
    /// (SPEC §4.5); the one it would have made (REGISTERED → ACTIVE `FIRST_CONTACT`, REMINDER →
    /// ACTIVE `REACTIVATED`) happens when the clock resumes, and this is cleared.
    #[serde(default)]
    pub contact_while_stopped: bool,
}

/// The longest stop reason, in characters.
pub const MAX_STOP_REASON: usize = 500;

impl Protection {
    /// `registeredAt + months + pausedSeconds`.
    pub fn protected_until(
        &self,
        registered_at: OffsetDateTime,
        policy: &ProtectionPolicy,
    ) -> OffsetDateTime {
        add_months(registered_at, policy.protection_months) + Duration::seconds(self.paused_seconds)
    }

    /// When 60 days without a meaningful contact are reached (pauses after the contact excluded).
    pub fn inactivity_deadline(
        &self,
        registered_at: OffsetDateTime,
        last_meaningful_contact_at: Option<OffsetDateTime>,
        policy: &ProtectionPolicy,
    ) -> OffsetDateTime {
        let basis = last_meaningful_contact_at.unwrap_or(registered_at);
        let paused_since = if last_meaningful_contact_at.is_some() {
            self.paused_seconds - self.paused_seconds_at_contact
        } else {
            self.paused_seconds
        };
        basis + policy.inactivity + Duration::seconds(paused_since.max(0))
    }

    /// Whether the clock is stopped.
    pub fn is_stopped(&self) -> bool {
        self.clock_stopped_at.is_some()
    }

    /// The pause seconds to credit before an instant `at` (completed pauses plus the part of a
    /// running pause before `at`).
    pub fn paused_before(&self, at: OffsetDateTime) -> i64 {
        let running = self
            .clock_stopped_at
            .map(|s| (at - s).whole_seconds().max(0))
            .unwrap_or(0);
        self.paused_seconds + running
    }
}

/// An automatic transition decided by the sweep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AutoTransition {
    /// 60 days without contact: REMINDER, with a grace window until `grace_until`.
    Reminder {
        /// When the grace window ends.
        grace_until: OffsetDateTime,
    },
    /// Protection ran out while not qualified: GRACE_PERIOD until `grace_until`.
    GracePeriod {
        /// When the grace window ends.
        grace_until: OffsetDateTime,
    },
    /// The grace window passed: EXPIRED, owner released.
    Expire,
}

/// The facts the sweep needs about one lead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SweepFacts<'a> {
    /// The current status.
    pub status: LeadStatus,
    /// When the lead was registered.
    pub registered_at: OffsetDateTime,
    /// The last meaningful contact.
    pub last_meaningful_contact_at: Option<OffsetDateTime>,
    /// The protection state.
    pub protection: &'a Protection,
}

/// The next automatic transition due at `now`, if any. Pure; the caller applies it and asks again
/// until `None` (see [`crate::Lead::sweep`]), which makes the sweep idempotent.
///
/// Rules (SPEC §4.5): nothing while the clock is stopped; REGISTERED/ACTIVE → GRACE_PERIOD when
/// `protectedUntil` is reached, else → REMINDER after the inactivity window; REMINDER → EXPIRED
/// when its grace passed, else → GRACE_PERIOD when `protectedUntil` is reached (keeping the
/// earlier of the two deadlines); GRACE_PERIOD → EXPIRED when its grace passed.
pub fn next_transition(
    facts: &SweepFacts<'_>,
    now: OffsetDateTime,
    policy: &ProtectionPolicy,
) -> Option<AutoTransition> {
    let p = facts.protection;
    if p.is_stopped() {
        return None;
    }
    let protected_until = p.protected_until(facts.registered_at, policy);
    match facts.status {
        LeadStatus::Registered | LeadStatus::Active => {
            if now >= protected_until {
                Some(AutoTransition::GracePeriod {
                    grace_until: protected_until + policy.grace,
                })
            } else if now
                >= p.inactivity_deadline(
                    facts.registered_at,
                    facts.last_meaningful_contact_at,
                    policy,
                )
            {
                Some(AutoTransition::Reminder {
                    grace_until: now + policy.grace,
                })
            } else {
                None
            }
        }
        LeadStatus::Reminder => {
            let grace_until = p.grace_until.unwrap_or(now);
            if now >= grace_until {
                Some(AutoTransition::Expire)
            } else if now >= protected_until {
                Some(AutoTransition::GracePeriod {
                    grace_until: grace_until.min(protected_until + policy.grace),
                })
            } else {
                None
            }
        }
        LeadStatus::GracePeriod => {
            let grace_until = p.grace_until.unwrap_or(protected_until + policy.grace);
            (now >= grace_until).then_some(AutoTransition::Expire)
        }
        LeadStatus::Qualified
        | LeadStatus::Converted
        | LeadStatus::Lost
        | LeadStatus::Expired
        | LeadStatus::Deleted => None,
    }
}

/// The earliest instant at which [`next_transition`] will return a transition, if nothing else
/// changes; `None` while the clock is stopped or in a status the sweep never moves. Stores index
/// this so the sweep reads only due leads, while the rule itself stays here.
pub fn next_due(facts: &SweepFacts<'_>, policy: &ProtectionPolicy) -> Option<OffsetDateTime> {
    let p = facts.protection;
    if p.is_stopped() {
        return None;
    }
    let protected_until = p.protected_until(facts.registered_at, policy);
    match facts.status {
        LeadStatus::Registered | LeadStatus::Active => {
            Some(protected_until.min(p.inactivity_deadline(
                facts.registered_at,
                facts.last_meaningful_contact_at,
                policy,
            )))
        }
        LeadStatus::Reminder => Some(
            p.grace_until
                .map_or(protected_until, |g| g.min(protected_until)),
        ),
        LeadStatus::GracePeriod => Some(p.grace_until.unwrap_or(protected_until + policy.grace)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn add_months_clamps_to_month_end() {
        assert_eq!(
            add_months(datetime!(2026-08-31 10:00 UTC), 6),
            datetime!(2027-02-28 10:00 UTC)
        );
        assert_eq!(
            add_months(datetime!(2027-08-31 10:00 UTC), 6),
            datetime!(2028-02-29 10:00 UTC)
        );
        assert_eq!(
            add_months(datetime!(2026-01-15 00:00 UTC), 6),
            datetime!(2026-07-15 00:00 UTC)
        );
        assert_eq!(
            add_months(datetime!(2026-12-01 00:00 UTC), 1),
            datetime!(2027-01-01 00:00 UTC)
        );
    }

    #[test]
    fn protected_until_adds_pauses() {
        let p = Protection {
            paused_seconds: 3600,
            ..Protection::default()
        };
        assert_eq!(
            p.protected_until(
                datetime!(2026-01-01 00:00 UTC),
                &ProtectionPolicy::default()
            ),
            datetime!(2026-07-01 01:00 UTC)
        );
    }

    #[test]
    fn inactivity_counts_only_pauses_after_the_contact() {
        let policy = ProtectionPolicy::default();
        let p = Protection {
            paused_seconds: 100,
            paused_seconds_at_contact: 40,
            ..Protection::default()
        };
        let contact = datetime!(2026-02-01 00:00 UTC);
        assert_eq!(
            p.inactivity_deadline(datetime!(2026-01-01 00:00 UTC), Some(contact), &policy),
            contact + Duration::days(60) + Duration::seconds(60)
        );
        assert_eq!(
            p.inactivity_deadline(datetime!(2026-01-01 00:00 UTC), None, &policy),
            datetime!(2026-01-01 00:00 UTC) + Duration::days(60) + Duration::seconds(100)
        );
    }

    #[test]
    fn the_pause_credited_before_an_instant_is_the_completed_pauses_plus_the_running_one_up_to_it()
    {
        let stopped = datetime!(2026-03-01 10:00 UTC);
        let running = Protection {
            paused_seconds: 500,
            clock_stopped_at: Some(stopped),
            ..Protection::default()
        };
        // Before the running pause began it counts nothing; after, every second of it.
        assert_eq!(running.paused_before(stopped - Duration::hours(1)), 500);
        assert_eq!(running.paused_before(stopped), 500);
        assert_eq!(running.paused_before(stopped + Duration::seconds(90)), 590);
        // Without a running pause: the completed ones, at any instant.
        let resumed = Protection {
            paused_seconds: 500,
            ..Protection::default()
        };
        assert_eq!(resumed.paused_before(stopped + Duration::days(9)), 500);
        assert_eq!(Protection::default().paused_before(stopped), 0);
    }

    proptest::proptest! {
        /// SPEC §4.5: when protection ends while a lead is in REMINDER, it moves to
        /// GRACE_PERIOD keeping the earlier of the two deadlines: the reminder's grace end, or
        /// protectedUntil + grace (a window stored under a longer grace than today's).
        #[test]
        fn protection_ending_during_a_reminder_keeps_the_earlier_grace_end(
            reminded_before_end in 1i64..10 * 86_400,
            stored_beyond in 1i64..30 * 86_400,
        ) {
            let policy = ProtectionPolicy::default();
            let registered = datetime!(2026-01-01 00:00 UTC);
            let protected_until = Protection::default().protected_until(registered, &policy);
            let reminded = protected_until - Duration::seconds(reminded_before_end);
            let facts = |p| SweepFacts {
                status: LeadStatus::Reminder,
                registered_at: registered,
                last_meaningful_contact_at: Some(reminded - policy.inactivity),
                protection: p,
            };
            let reminder = Protection {
                reminder_at: Some(reminded),
                grace_until: Some(reminded + policy.grace),
                ..Protection::default()
            };
            proptest::prop_assert_eq!(next_due(&facts(&reminder), &policy), Some(protected_until));
            proptest::prop_assert_eq!(
                next_transition(&facts(&reminder), protected_until, &policy),
                Some(AutoTransition::GracePeriod { grace_until: reminded + policy.grace })
            );
            let longer = Protection {
                grace_until: Some(protected_until + policy.grace + Duration::seconds(stored_beyond)),
                ..reminder.clone()
            };
            proptest::prop_assert_eq!(
                next_transition(&facts(&longer), protected_until, &policy),
                Some(AutoTransition::GracePeriod { grace_until: protected_until + policy.grace })
            );
        }
    }

    #[test]
    fn each_grace_window_starts_where_the_rule_says() {
        let policy = ProtectionPolicy::default();
        let registered = datetime!(2026-01-01 00:00 UTC);
        let p = Protection::default();
        let protected_until = p.protected_until(registered, &policy);
        let facts = |status| SweepFacts {
            status,
            registered_at: registered,
            last_meaningful_contact_at: None,
            protection: &p,
        };
        // 60 days without contact: the reminder's grace runs from the sweep's now.
        let now = registered + Duration::days(61);
        assert_eq!(
            next_transition(&facts(LeadStatus::Active), now, &policy),
            Some(AutoTransition::Reminder {
                grace_until: now + policy.grace
            })
        );
        // Protection over: the grace period runs from protectedUntil, however late the sweep.
        let late = protected_until + Duration::days(3);
        let registered_only = Protection::default();
        let contacted = SweepFacts {
            status: LeadStatus::Active,
            registered_at: registered,
            last_meaningful_contact_at: Some(late - Duration::days(1)),
            protection: &registered_only,
        };
        assert_eq!(
            next_transition(&contacted, late, &policy),
            Some(AutoTransition::GracePeriod {
                grace_until: protected_until + policy.grace
            })
        );
        // A GRACE_PERIOD lead without a recorded window expires grace after protectedUntil.
        assert_eq!(
            next_due(&facts(LeadStatus::GracePeriod), &policy),
            Some(protected_until + policy.grace)
        );
        assert_eq!(
            next_transition(
                &facts(LeadStatus::GracePeriod),
                protected_until + policy.grace - Duration::seconds(1),
                &policy
            ),
            None
        );
        assert_eq!(
            next_transition(
                &facts(LeadStatus::GracePeriod),
                protected_until + policy.grace,
                &policy
            ),
            Some(AutoTransition::Expire)
        );
    }
}
