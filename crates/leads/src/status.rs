//! The status machine of SPEC §4.3, with the manual-transition table held as data.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The status of a lead.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum LeadStatus {
    /// Just registered; no meaningful contact yet.
    Registered,
    /// Worked on by its owner.
    Active,
    /// 60 days without a meaningful contact: the owner was reminded.
    Reminder,
    /// Protection ran out while not qualified: a last window.
    GracePeriod,
    /// Qualified as a real opportunity.
    Qualified,
    /// Became a customer (terminal).
    Converted,
    /// Lost (terminal).
    Lost,
    /// Protection expired; the owner was released.
    Expired,
    /// Soft-deleted (terminal; only via DELETE).
    Deleted,
}

impl LeadStatus {
    /// Every status, in a stable order.
    pub const ALL: [LeadStatus; 9] = [
        LeadStatus::Registered,
        LeadStatus::Active,
        LeadStatus::Reminder,
        LeadStatus::GracePeriod,
        LeadStatus::Qualified,
        LeadStatus::Converted,
        LeadStatus::Lost,
        LeadStatus::Expired,
        LeadStatus::Deleted,
    ];

    /// The API/database spelling, e.g. `GRACE_PERIOD`.
    pub const fn as_str(self) -> &'static str {
        match self {
            LeadStatus::Registered => "REGISTERED",
            LeadStatus::Active => "ACTIVE",
            LeadStatus::Reminder => "REMINDER",
            LeadStatus::GracePeriod => "GRACE_PERIOD",
            LeadStatus::Qualified => "QUALIFIED",
            LeadStatus::Converted => "CONVERTED",
            LeadStatus::Lost => "LOST",
            LeadStatus::Expired => "EXPIRED",
            LeadStatus::Deleted => "DELETED",
        }
    }

    /// Terminal statuses absorb: nothing leaves them.
    pub const fn is_terminal(self) -> bool {
        matches!(
            self,
            LeadStatus::Converted | LeadStatus::Lost | LeadStatus::Deleted
        )
    }

    /// Open for follow-ups and pending figures: `REGISTERED` or `ACTIVE`.
    pub const fn is_open(self) -> bool {
        matches!(self, LeadStatus::Registered | LeadStatus::Active)
    }
}

impl fmt::Display for LeadStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An unknown status name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown lead status {0:?}")]
pub struct UnknownStatus(pub String);

impl FromStr for LeadStatus {
    type Err = UnknownStatus;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        LeadStatus::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| UnknownStatus(s.to_owned()))
    }
}

/// Who may take a manual transition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    /// Anyone allowed to update the lead.
    Updater,
    /// Managers and admins only; the lead needs a new owner and protection restarts.
    ManagerReopen,
}

/// The manual-transition table of SPEC §4.3: `(from, to, gate)`. Anything not listed is refused.
pub const MANUAL_TRANSITIONS: &[(LeadStatus, LeadStatus, Gate)] = &[
    (LeadStatus::Registered, LeadStatus::Active, Gate::Updater),
    (LeadStatus::Registered, LeadStatus::Qualified, Gate::Updater),
    (LeadStatus::Registered, LeadStatus::Lost, Gate::Updater),
    (LeadStatus::Active, LeadStatus::Qualified, Gate::Updater),
    (LeadStatus::Active, LeadStatus::Lost, Gate::Updater),
    (LeadStatus::Reminder, LeadStatus::Active, Gate::Updater),
    (LeadStatus::Reminder, LeadStatus::Qualified, Gate::Updater),
    (LeadStatus::Reminder, LeadStatus::Lost, Gate::Updater),
    (LeadStatus::GracePeriod, LeadStatus::Active, Gate::Updater),
    (
        LeadStatus::GracePeriod,
        LeadStatus::Qualified,
        Gate::Updater,
    ),
    (LeadStatus::GracePeriod, LeadStatus::Lost, Gate::Updater),
    (LeadStatus::Qualified, LeadStatus::Converted, Gate::Updater),
    (LeadStatus::Qualified, LeadStatus::Lost, Gate::Updater),
    (LeadStatus::Expired, LeadStatus::Active, Gate::ManagerReopen),
];

/// The statuses still allowed as targets while the protection clock is stopped.
pub const ALLOWED_WHILE_STOPPED: [LeadStatus; 3] = [
    LeadStatus::Qualified,
    LeadStatus::Converted,
    LeadStatus::Lost,
];

/// Why a manual transition was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TransitionError {
    /// The pair is not in [`MANUAL_TRANSITIONS`].
    #[error("a lead cannot go from {from} to {to}")]
    NotAllowed {
        /// Current status.
        from: LeadStatus,
        /// Requested status.
        to: LeadStatus,
    },
    /// The clock is stopped and the target is not QUALIFIED, CONVERTED or LOST.
    #[error(
        "while the protection clock is stopped a lead can only become QUALIFIED, CONVERTED or LOST"
    )]
    ClockStopped,
}

/// Looks up a manual transition: its gate when the table allows it.
///
/// ```
/// use freshplan_leads::status::{manual_transition, Gate, LeadStatus};
/// assert_eq!(manual_transition(LeadStatus::Registered, LeadStatus::Active, false), Ok(Gate::Updater));
/// assert!(manual_transition(LeadStatus::Lost, LeadStatus::Active, false).is_err());
/// assert!(manual_transition(LeadStatus::Registered, LeadStatus::Active, true).is_err());
/// ```
pub fn manual_transition(
    from: LeadStatus,
    to: LeadStatus,
    clock_stopped: bool,
) -> Result<Gate, TransitionError> {
    let gate = MANUAL_TRANSITIONS
        .iter()
        .find(|(f, t, _)| *f == from && *t == to)
        .map(|(_, _, g)| *g)
        .ok_or(TransitionError::NotAllowed { from, to })?;
    if clock_stopped && !ALLOWED_WHILE_STOPPED.contains(&to) {
        return Err(TransitionError::ClockStopped);
    }
    Ok(gate)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The table of SPEC §4.3, written out independently of [`MANUAL_TRANSITIONS`] so that
    /// breaking one row of the data makes this test fail.
    fn spec_allows(from: LeadStatus, to: LeadStatus) -> bool {
        use LeadStatus::*;
        match from {
            Registered => matches!(to, Active | Qualified | Lost),
            Active => matches!(to, Qualified | Lost),
            Reminder | GracePeriod => matches!(to, Active | Qualified | Lost),
            Qualified => matches!(to, Converted | Lost),
            Expired => matches!(to, Active),
            Converted | Lost | Deleted => false,
        }
    }

    #[test]
    fn table_matches_the_spec_cell_by_cell() {
        for from in LeadStatus::ALL {
            for to in LeadStatus::ALL {
                assert_eq!(
                    manual_transition(from, to, false).is_ok(),
                    spec_allows(from, to),
                    "{from} -> {to}"
                );
            }
        }
    }

    #[test]
    fn only_expired_reopen_is_manager_gated() {
        assert_eq!(
            manual_transition(LeadStatus::Expired, LeadStatus::Active, false),
            Ok(Gate::ManagerReopen)
        );
        let gated: Vec<_> = MANUAL_TRANSITIONS
            .iter()
            .filter(|r| r.2 == Gate::ManagerReopen)
            .collect();
        assert_eq!(gated.len(), 1);
    }

    #[test]
    fn clock_stopped_allows_only_closing_moves() {
        assert!(manual_transition(LeadStatus::Active, LeadStatus::Qualified, true).is_ok());
        assert!(manual_transition(LeadStatus::Qualified, LeadStatus::Converted, true).is_ok());
        assert!(manual_transition(LeadStatus::Active, LeadStatus::Lost, true).is_ok());
        assert_eq!(
            manual_transition(LeadStatus::Reminder, LeadStatus::Active, true),
            Err(TransitionError::ClockStopped)
        );
    }

    #[test]
    fn names_round_trip() {
        for s in LeadStatus::ALL {
            assert_eq!(s.as_str().parse::<LeadStatus>(), Ok(s));
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        }
        assert!("registered".parse::<LeadStatus>().is_err());
    }

    fn status() -> impl Strategy<Value = LeadStatus> {
        proptest::sample::select(LeadStatus::ALL.to_vec())
    }

    #[test]
    fn open_is_exactly_registered_and_active() {
        // SPEC §6: eligible for follow-ups (and pending in the cockpit) only while REGISTERED or
        // ACTIVE.
        for s in LeadStatus::ALL {
            assert_eq!(
                s.is_open(),
                matches!(s, LeadStatus::Registered | LeadStatus::Active),
                "{s}"
            );
        }
    }

    #[test]
    fn terminal_is_exactly_what_the_status_table_lets_nothing_leave() {
        // SPEC §4.3: CONVERTED, LOST and DELETED move nowhere; every other status has a way out
        // (EXPIRED back to ACTIVE for a manager).
        for from in LeadStatus::ALL {
            let stuck = LeadStatus::ALL
                .into_iter()
                .all(|to| manual_transition(from, to, false).is_err());
            assert_eq!(from.is_terminal(), stuck, "{from}");
        }
    }

    proptest! {
        #[test]
        fn no_transition_outside_the_table_is_accepted(from in status(), to in status(), stopped in any::<bool>()) {
            if manual_transition(from, to, stopped).is_ok() {
                prop_assert!(spec_allows(from, to));
            }
        }

        #[test]
        fn terminal_states_absorb(from in status(), to in status(), stopped in any::<bool>()) {
            if from.is_terminal() {
                prop_assert!(manual_transition(from, to, stopped).is_err());
            }
        }
    }
}
