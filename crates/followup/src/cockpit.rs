//! The cockpit follow-up figures (SPEC §8), as pure functions over a snapshot of rows.
//!
//! The adapter loads one [`CockpitRow`] per lead (under row-level security, so it already sees
//! no more than the caller may); [`figures`] then applies the caller's [`Scope`] again — the
//! domain states the rule, the database enforces it too.
//!
//! Deleted leads are left out of every figure: they disappear from lists (SPEC §4.6), so they
//! disappear from the cockpit too, including their mails in "sent today".

use std::collections::BTreeSet;

use serde::Serialize;
use time::OffsetDateTime;

use freshplan_kernel::{Actor, Role, TerritoryId, UserId};
use freshplan_leads::status::LeadStatus;

use crate::stage::FollowUpRecord;

/// What the cockpit needs to know about one lead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CockpitRow {
    /// The lead's territory.
    pub territory: TerritoryId,
    /// The owner (`None` once released).
    pub owner: Option<UserId>,
    /// The lead's status.
    pub status: LeadStatus,
    /// Whether the protection clock is stopped.
    pub clock_stopped: bool,
    /// The T+3 record, once processed.
    pub t3: Option<FollowUpRecord>,
    /// The T+7 record, once processed.
    pub t7: Option<FollowUpRecord>,
}

impl CockpitRow {
    fn is_open(&self) -> bool {
        self.status.is_open() && !self.clock_stopped
    }

    fn records(&self) -> impl Iterator<Item = &FollowUpRecord> {
        self.t3.iter().chain(self.t7.iter())
    }
}

/// On what basis a scope was granted (the `scope` field of the API answer).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ScopeKind {
    /// Admin (or the system context): every lead.
    All,
    /// Manager or viewer: every lead in the own territories.
    Territories,
    /// Sales: the leads the caller owns, in the own territories.
    OwnLeads,
    /// Every other caller: nothing.
    None,
}

/// Which leads a caller's figures are computed over (SPEC §2, "follow-up dashboard").
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Scope {
    kind: ScopeKind,
    territories: BTreeSet<TerritoryId>,
    #[serde(skip_serializing_if = "Option::is_none", rename = "ownerUserId")]
    owner: Option<UserId>,
}

impl Scope {
    /// Every lead in every territory.
    pub fn all() -> Scope {
        Scope {
            kind: ScopeKind::All,
            territories: TerritoryId::ALL.into_iter().collect(),
            owner: None,
        }
    }

    /// No lead at all.
    pub fn none() -> Scope {
        Scope {
            kind: ScopeKind::None,
            territories: BTreeSet::new(),
            owner: None,
        }
    }

    /// The scope of `actor`, optionally narrowed to one territory.
    ///
    /// The broadest role wins: admin → all; manager or viewer → own territories; sales → own
    /// leads (`owner == actor`) in own territories; anyone else → nothing. The background
    /// `system` actor gets all (it computes the global figures). A territory filter outside
    /// the actor's territories leaves an empty scope, never an error (no existence leak).
    ///
    /// ```
    /// use freshplan_followup::cockpit::{Scope, ScopeKind};
    /// use freshplan_kernel::{Actor, Role, TerritoryId, UserId};
    ///
    /// let rep = Actor::new(UserId::parse("rep").unwrap(), [Role::Sales], [TerritoryId::De]);
    /// assert_eq!(Scope::for_actor(&rep, None).kind(), ScopeKind::OwnLeads);
    /// assert!(Scope::for_actor(&rep, Some(TerritoryId::Ch)).territories().is_empty());
    /// ```
    pub fn for_actor(actor: &Actor, territory: Option<TerritoryId>) -> Scope {
        let narrow = |set: BTreeSet<TerritoryId>| -> BTreeSet<TerritoryId> {
            set.into_iter()
                .filter(|t| territory.is_none_or(|f| f == *t))
                .collect()
        };
        let (kind, owner) = if actor.is_system() || actor.has_role(Role::Admin) {
            (ScopeKind::All, None)
        } else if actor.has_role(Role::Manager) || actor.has_role(Role::Viewer) {
            (ScopeKind::Territories, None)
        } else if actor.has_role(Role::Sales) {
            (ScopeKind::OwnLeads, Some(actor.user_id().clone()))
        } else {
            return Scope::none();
        };
        let territories = match kind {
            ScopeKind::All => TerritoryId::ALL.into_iter().collect(),
            _ => actor.territories().clone(),
        };
        Scope {
            kind,
            territories: narrow(territories),
            owner,
        }
    }

    /// The basis of the scope.
    pub fn kind(&self) -> ScopeKind {
        self.kind
    }

    /// The territories in scope (after the filter).
    pub fn territories(&self) -> &BTreeSet<TerritoryId> {
        &self.territories
    }

    /// The owner rows must have (sales scopes only).
    pub fn owner(&self) -> Option<&UserId> {
        self.owner.as_ref()
    }

    /// Whether `row` is in scope.
    pub fn includes(&self, row: &CockpitRow) -> bool {
        let in_territory = self.territories.contains(&row.territory);
        match self.kind {
            ScopeKind::None => false,
            ScopeKind::All | ScopeKind::Territories => in_territory,
            ScopeKind::OwnLeads => in_territory && self.owner.is_some() && row.owner == self.owner,
        }
    }
}

/// The four cockpit tiles.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FollowUpFigures {
    /// Open leads (REGISTERED/ACTIVE, clock running) without a T+3 record.
    pub pending_t3: u64,
    /// Open leads with T+3 processed (sent or skipped) and no T+7 record.
    pub pending_t7: u64,
    /// Follow-ups SENT since local midnight, Europe/Berlin (both stages).
    pub sent_today: u64,
    /// Percent (one decimal) of leads with at least one SENT follow-up that are now
    /// CONVERTED; 0 when no lead has a SENT follow-up.
    pub conversion_rate: f64,
}

/// Computes the figures over the rows in `scope` at `now`.
///
/// "Today" starts at local midnight in Europe/Berlin for every caller (SPEC §8), also for
/// Swiss leads — both territories share the time zone offset anyway.
pub fn figures<'a>(
    rows: impl IntoIterator<Item = &'a CockpitRow>,
    scope: &Scope,
    now: OffsetDateTime,
) -> FollowUpFigures {
    let midnight = freshplan_territory::start_of_local_day(TerritoryId::De, now);
    let mut f = FollowUpFigures {
        pending_t3: 0,
        pending_t7: 0,
        sent_today: 0,
        conversion_rate: 0.0,
    };
    let (mut with_sent, mut converted) = (0u64, 0u64);
    for row in rows
        .into_iter()
        .filter(|r| scope.includes(r) && r.status != LeadStatus::Deleted)
    {
        if row.is_open() {
            match (&row.t3, &row.t7) {
                (None, _) => f.pending_t3 += 1,
                (Some(_), None) => f.pending_t7 += 1,
                (Some(_), Some(_)) => {}
            }
        }
        f.sent_today += row
            .records()
            .filter(|r| r.is_sent() && r.processed_at >= midnight)
            .count() as u64;
        if row.records().any(FollowUpRecord::is_sent) {
            with_sent += 1;
            if row.status == LeadStatus::Converted {
                converted += 1;
            }
        }
    }
    f.conversion_rate = percent_one_decimal(converted, with_sent);
    f
}

/// `part / whole` in percent, rounded half up to one decimal; 0 when `whole` is 0.
pub fn percent_one_decimal(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        return 0.0;
    }
    let tenths = (u128::from(part) * 1000 + u128::from(whole) / 2) / u128::from(whole);
    // Exact: tenths ≤ 1000·part/whole fits f64 for any realistic count.
    tenths as f64 / 10.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stage::{SkipReason, Stage};
    use crate::testing;
    use proptest::prelude::*;
    use time::Duration;
    use time::macros::datetime;

    /// 10:00 Berlin on a Tuesday in summer (UTC+2): local midnight is 22:00 UTC the day before.
    const NOW: OffsetDateTime = datetime!(2026-07-07 08:00 UTC);

    fn user(id: &str) -> UserId {
        UserId::parse(id).unwrap()
    }

    fn row(territory: TerritoryId, owner: &str, status: LeadStatus) -> CockpitRow {
        CockpitRow {
            territory,
            owner: Some(user(owner)),
            status,
            clock_stopped: false,
            t3: None,
            t7: None,
        }
    }

    fn sent(stage: Stage, at: OffsetDateTime) -> Option<FollowUpRecord> {
        Some(FollowUpRecord::sent(stage, at))
    }

    #[test]
    fn pending_counts() {
        let earlier = NOW - Duration::days(2);
        let rows = vec![
            row(TerritoryId::De, "a", LeadStatus::Registered),
            row(TerritoryId::De, "a", LeadStatus::Active),
            CockpitRow {
                clock_stopped: true,
                ..row(TerritoryId::De, "a", LeadStatus::Active)
            },
            row(TerritoryId::De, "a", LeadStatus::Reminder),
            CockpitRow {
                t3: sent(Stage::T3, earlier),
                ..row(TerritoryId::De, "a", LeadStatus::Active)
            },
            CockpitRow {
                t3: Some(FollowUpRecord::skipped(
                    Stage::T3,
                    SkipReason::NoConsent,
                    earlier,
                )),
                ..row(TerritoryId::Ch, "a", LeadStatus::Registered)
            },
            CockpitRow {
                t3: sent(Stage::T3, earlier),
                t7: sent(Stage::T7, earlier),
                ..row(TerritoryId::De, "a", LeadStatus::Active)
            },
            row(TerritoryId::De, "a", LeadStatus::Deleted),
        ];
        let f = figures(&rows, &Scope::all(), NOW);
        assert_eq!((f.pending_t3, f.pending_t7), (2, 2));
    }

    #[test]
    fn sent_today_counts_from_berlin_midnight() {
        let midnight = datetime!(2026-07-06 22:00 UTC);
        let rows = vec![
            CockpitRow {
                t3: sent(Stage::T3, midnight),
                ..row(TerritoryId::De, "a", LeadStatus::Active)
            },
            CockpitRow {
                t3: sent(Stage::T3, midnight - Duration::SECOND),
                t7: sent(Stage::T7, NOW),
                ..row(TerritoryId::Ch, "a", LeadStatus::Converted)
            },
            CockpitRow {
                t3: Some(FollowUpRecord::skipped(Stage::T3, SkipReason::NoEmail, NOW)),
                ..row(TerritoryId::De, "a", LeadStatus::Active)
            },
        ];
        assert_eq!(figures(&rows, &Scope::all(), NOW).sent_today, 2);
    }

    #[test]
    fn conversion_rate_over_leads_with_a_sent_follow_up() {
        let at = NOW - Duration::days(10);
        let mut rows = vec![
            CockpitRow {
                t3: sent(Stage::T3, at),
                ..row(TerritoryId::De, "a", LeadStatus::Converted)
            },
            CockpitRow {
                t3: sent(Stage::T3, at),
                t7: sent(Stage::T7, at),
                ..row(TerritoryId::De, "a", LeadStatus::Active)
            },
            CockpitRow {
                t3: sent(Stage::T3, at),
                ..row(TerritoryId::De, "a", LeadStatus::Lost)
            },
            // Converted without a SENT follow-up: in neither count.
            CockpitRow {
                t3: Some(FollowUpRecord::skipped(
                    Stage::T3,
                    SkipReason::NoConsent,
                    at,
                )),
                ..row(TerritoryId::De, "a", LeadStatus::Converted)
            },
        ];
        assert_eq!(figures(&rows, &Scope::all(), NOW).conversion_rate, 33.3);
        rows.push(CockpitRow {
            t7: sent(Stage::T7, at),
            ..row(TerritoryId::De, "a", LeadStatus::Converted)
        });
        assert_eq!(figures(&rows, &Scope::all(), NOW).conversion_rate, 50.0);
        assert_eq!(figures(&[], &Scope::all(), NOW).conversion_rate, 0.0);
    }

    #[test]
    fn rounding_to_one_decimal() {
        assert_eq!(percent_one_decimal(1, 3), 33.3);
        assert_eq!(percent_one_decimal(2, 3), 66.7);
        assert_eq!(percent_one_decimal(1, 8), 12.5);
        assert_eq!(percent_one_decimal(1, 16), 6.3);
        assert_eq!(percent_one_decimal(5, 5), 100.0);
        assert_eq!(percent_one_decimal(0, 0), 0.0);
    }

    #[test]
    fn scopes_per_role() {
        let admin = Actor::new(user("adm"), [Role::Admin], []);
        let manager = Actor::new(user("m"), [Role::Manager], [TerritoryId::Ch]);
        let viewer = Actor::new(user("v"), [Role::Viewer], [TerritoryId::De]);
        let rep = Actor::new(user("a"), [Role::Sales], [TerritoryId::De]);
        let service = Actor::new(user("svc"), [Role::Service], [TerritoryId::De]);
        let nobody = Actor::new(user("n"), [], [TerritoryId::De]);

        let de_a = row(TerritoryId::De, "a", LeadStatus::Active);
        let de_b = row(TerritoryId::De, "b", LeadStatus::Active);
        let ch_a = row(TerritoryId::Ch, "a", LeadStatus::Active);
        let released = CockpitRow {
            owner: None,
            ..row(TerritoryId::De, "a", LeadStatus::Expired)
        };

        let admin_scope = Scope::for_actor(&admin, None);
        assert!(
            [&de_a, &de_b, &ch_a, &released]
                .iter()
                .all(|r| admin_scope.includes(r))
        );

        let m = Scope::for_actor(&manager, None);
        assert_eq!(m.kind(), ScopeKind::Territories);
        assert!(m.includes(&ch_a) && !m.includes(&de_a));

        let v = Scope::for_actor(&viewer, None);
        assert!(v.includes(&de_a) && v.includes(&de_b) && !v.includes(&ch_a));

        let s = Scope::for_actor(&rep, None);
        assert_eq!(s.kind(), ScopeKind::OwnLeads);
        assert!(s.includes(&de_a));
        assert!(!s.includes(&de_b), "another rep's lead");
        assert!(!s.includes(&ch_a), "own lead outside own territories");
        assert!(!s.includes(&released));

        for a in [&service, &nobody] {
            let none = Scope::for_actor(a, None);
            assert_eq!(none.kind(), ScopeKind::None);
            assert!(!none.includes(&de_a));
        }
        assert_eq!(
            Scope::for_actor(&Actor::system(), None).kind(),
            ScopeKind::All
        );
    }

    #[test]
    fn broadest_role_wins() {
        let both = Actor::new(user("a"), [Role::Sales, Role::Manager], [TerritoryId::De]);
        let s = Scope::for_actor(&both, None);
        assert_eq!(s.kind(), ScopeKind::Territories);
        assert!(s.includes(&row(TerritoryId::De, "b", LeadStatus::Active)));
    }

    #[test]
    fn territory_filter_narrows() {
        let admin = Actor::new(user("adm"), [Role::Admin], []);
        let ch_only = Scope::for_actor(&admin, Some(TerritoryId::Ch));
        assert!(ch_only.includes(&row(TerritoryId::Ch, "a", LeadStatus::Active)));
        assert!(!ch_only.includes(&row(TerritoryId::De, "a", LeadStatus::Active)));
        let manager = Actor::new(user("m"), [Role::Manager], [TerritoryId::De]);
        assert!(
            Scope::for_actor(&manager, Some(TerritoryId::Ch))
                .territories()
                .is_empty()
        );
    }

    #[test]
    fn scope_serialises_for_the_api() {
        let rep = Actor::new(user("a"), [Role::Sales], [TerritoryId::De]);
        assert_eq!(
            serde_json::to_value(Scope::for_actor(&rep, None)).unwrap(),
            serde_json::json!({"kind": "OWN_LEADS", "territories": ["DE"], "ownerUserId": "a"})
        );
        let f = FollowUpFigures {
            pending_t3: 1,
            pending_t7: 2,
            sent_today: 3,
            conversion_rate: 12.5,
        };
        assert_eq!(
            serde_json::to_value(f).unwrap(),
            serde_json::json!({"pendingT3": 1, "pendingT7": 2, "sentToday": 3, "conversionRate": 12.5})
        );
    }

    proptest! {
        #[test]
        fn figures_in_a_scope_equal_figures_over_the_rows_it_includes(
            rows in proptest::collection::vec(testing::cockpit_row(), 0..40),
            actor in freshplan_kernel::testing::actor(),
            filter in proptest::option::of(freshplan_kernel::testing::territory_id()),
            now in testing::instant(),
        ) {
            let scope = Scope::for_actor(&actor, filter);
            let visible: Vec<CockpitRow> = rows.iter().filter(|r| scope.includes(r)).cloned().collect();
            prop_assert_eq!(figures(&rows, &scope, now), figures(&visible, &Scope::all(), now));
            if let Some(f) = filter {
                prop_assert!(visible.iter().all(|r| r.territory == f));
            }
            if scope.kind() == ScopeKind::OwnLeads {
                prop_assert!(visible.iter().all(|r| r.owner.as_ref() == Some(actor.user_id())));
            }
            prop_assert!(visible.iter().all(|r| actor.works_in(r.territory)));
        }

        #[test]
        fn a_scope_names_exactly_the_territories_and_owner_it_includes_rows_by(
            actor in prop_oneof![
                9 => freshplan_kernel::testing::actor(),
                1 => Just(Actor::system()),
            ],
            filter in proptest::option::of(freshplan_kernel::testing::territory_id()),
            row in testing::cockpit_row(),
        ) {
            // Stores select a scope's rows by `territories()` and `owner()`; they must pick
            // exactly the rows `includes` accepts.
            let scope = Scope::for_actor(&actor, filter);
            let selected = scope.territories().contains(&row.territory)
                && scope.owner().is_none_or(|o| row.owner.as_ref() == Some(o));
            prop_assert_eq!(scope.includes(&row), selected);
            // Only a sales scope has an owner, and it is the caller.
            prop_assert_eq!(scope.owner().is_some(), scope.kind() == ScopeKind::OwnLeads);
            prop_assert!(scope.owner().is_none_or(|o| o == actor.user_id()));
            // The territories are the caller's (every one for admins and the system), narrowed
            // by the filter; none for a caller without a reading role.
            let expected: BTreeSet<TerritoryId> = if scope.kind() == ScopeKind::None {
                BTreeSet::new()
            } else {
                actor
                    .territories()
                    .iter()
                    .copied()
                    .filter(|t| filter.is_none_or(|f| f == *t))
                    .collect()
            };
            prop_assert_eq!(scope.territories(), &expected);
        }

        #[test]
        fn conversion_rate_is_a_percentage_with_one_decimal(
            rows in proptest::collection::vec(testing::cockpit_row(), 0..40),
            now in testing::instant(),
        ) {
            let rate = figures(&rows, &Scope::all(), now).conversion_rate;
            prop_assert!((0.0..=100.0).contains(&rate));
            prop_assert!(((rate * 10.0).round() - rate * 10.0).abs() < 1e-9);
        }

        #[test]
        fn pending_figures_never_exceed_open_leads(
            rows in proptest::collection::vec(testing::cockpit_row(), 0..40),
            now in testing::instant(),
        ) {
            let f = figures(&rows, &Scope::all(), now);
            let open = rows.iter().filter(|r| r.status.is_open() && !r.clock_stopped).count() as u64;
            prop_assert!(f.pending_t3 + f.pending_t7 <= open);
        }
    }
}
