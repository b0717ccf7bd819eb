//! The access policy of SPEC §2 as a pure function of actor × lead × action.

use std::collections::BTreeSet;

use freshplan_kernel::{Actor, Role, TerritoryId, UserId};

/// What the caller wants to do with a lead.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// Read the lead and its timeline.
    Read,
    /// Change its data or status.
    Update,
    /// Log an activity.
    LogActivity,
    /// Soft-delete it.
    Delete,
    /// Reassign the owner.
    Reassign,
    /// Stop or resume the protection clock; reopen an EXPIRED lead.
    ManageProtection,
    /// Export everything stored about the lead's person (SPEC §13): admins; managers in their
    /// territories.
    ExportPersonalData,
    /// Erase the lead's person (SPEC §13): admins only.
    Erase,
}

impl Action {
    /// Every action.
    pub const ALL: [Action; 8] = [
        Action::Read,
        Action::Update,
        Action::LogActivity,
        Action::Delete,
        Action::Reassign,
        Action::ManageProtection,
        Action::ExportPersonalData,
        Action::Erase,
    ];
}

/// The policy's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Go ahead.
    Allow,
    /// The caller may not even read the lead: answer 404 (no existence leak).
    NotFound,
    /// The caller may read the lead but its role never allows the action: answer 403.
    Forbidden,
}

/// The facts about a lead that access depends on.
#[derive(Debug, Clone, Copy)]
pub struct LeadFacts<'a> {
    /// Its territory.
    pub territory: TerritoryId,
    /// Its owner.
    pub owner: Option<&'a UserId>,
    /// Its collaborators.
    pub collaborators: &'a BTreeSet<UserId>,
}

fn is_owner(actor: &Actor, lead: &LeadFacts<'_>) -> bool {
    lead.owner == Some(actor.user_id())
}

fn is_collaborator(actor: &Actor, lead: &LeadFacts<'_>) -> bool {
    lead.collaborators.contains(actor.user_id())
}

/// Whether the actor may read the lead at all. Roles combine: any role that grants it is enough.
pub fn can_read(actor: &Actor, lead: &LeadFacts<'_>) -> bool {
    if actor.is_system() || actor.has_role(Role::Admin) {
        return true;
    }
    if !actor.works_in(lead.territory) {
        return false;
    }
    actor.has_role(Role::Manager)
        || actor.has_role(Role::Viewer)
        || (actor.has_role(Role::Sales) && (is_owner(actor, lead) || is_collaborator(actor, lead)))
}

/// The decision for `action` on a lead (SPEC §2 table).
///
/// ```
/// use std::collections::BTreeSet;
/// use freshplan_kernel::{Actor, Role, TerritoryId, UserId};
/// use freshplan_leads::access::{decide, Action, Decision, LeadFacts};
///
/// let owner = UserId::parse("rep-1").unwrap();
/// let none = BTreeSet::new();
/// let lead = LeadFacts { territory: TerritoryId::De, owner: Some(&owner), collaborators: &none };
/// let other_rep = Actor::new(UserId::parse("rep-2").unwrap(), [Role::Sales], [TerritoryId::De]);
/// assert_eq!(decide(&other_rep, &lead, Action::Read), Decision::NotFound);
/// let viewer = Actor::new(UserId::parse("v").unwrap(), [Role::Viewer], [TerritoryId::De]);
/// assert_eq!(decide(&viewer, &lead, Action::Update), Decision::Forbidden);
/// ```
pub fn decide(actor: &Actor, lead: &LeadFacts<'_>, action: Action) -> Decision {
    if !can_read(actor, lead) {
        return Decision::NotFound;
    }
    if actor.is_system() || actor.has_role(Role::Admin) {
        return Decision::Allow;
    }
    // From here the actor works in the lead's territory (can_read checked it).
    let manager = actor.has_role(Role::Manager);
    let sales = actor.has_role(Role::Sales);
    let allowed = match action {
        Action::Read => true,
        Action::Update | Action::Delete => manager || (sales && is_owner(actor, lead)),
        Action::LogActivity => {
            manager || (sales && (is_owner(actor, lead) || is_collaborator(actor, lead)))
        }
        Action::Reassign | Action::ManageProtection | Action::ExportPersonalData => manager,
        Action::Erase => false,
    };
    if allowed {
        Decision::Allow
    } else {
        Decision::Forbidden
    }
}

/// Whether the actor may create a lead in `territory`: admins anywhere; managers and sales reps
/// in their own territories. `Err(())` means 403.
pub fn can_create(actor: &Actor, territory: TerritoryId) -> bool {
    if actor.is_system() || actor.has_role(Role::Admin) {
        return true;
    }
    (actor.has_role(Role::Manager) || actor.has_role(Role::Sales)) && actor.works_in(territory)
}

/// Whether the actor's roles may import leads at all (the create roles: admins, managers, sales
/// reps; each row's territory is checked with [`can_create`]).
pub fn may_import(actor: &Actor) -> bool {
    actor.is_system()
        || [Role::Admin, Role::Manager, Role::Sales]
            .into_iter()
            .any(|r| actor.has_role(r))
}

/// Whether the actor may name another user as a new lead's owner (an import's owner column):
/// managers and admins, as for reassigning.
pub fn can_assign_owner(actor: &Actor) -> bool {
    actor.is_system() || actor.has_role(Role::Admin) || actor.has_role(Role::Manager)
}

/// Only admins may backdate `registeredAt` (imports).
pub fn can_backdate(actor: &Actor) -> bool {
    actor.is_system() || actor.has_role(Role::Admin)
}

/// Whether the actor's roles can ever read leads (used to answer 403 on lists for e.g. `service`).
pub fn may_list_leads(actor: &Actor) -> bool {
    actor.is_system()
        || [Role::Admin, Role::Manager, Role::Sales, Role::Viewer]
            .into_iter()
            .any(|r| actor.has_role(r))
}

#[cfg(test)]
mod tests {
    use super::*;
    use freshplan_kernel::testing::actor;
    use proptest::prelude::*;

    fn u(s: &str) -> UserId {
        UserId::parse(s).unwrap()
    }

    #[test]
    fn imports_are_for_the_create_roles_and_only_managers_and_admins_name_owners() {
        let one = |role| Actor::new(u("x"), [role], [TerritoryId::De]);
        for (role, imports, names_owner) in [
            (Role::Admin, true, true),
            (Role::Manager, true, true),
            (Role::Sales, true, false),
            (Role::Viewer, false, false),
            (Role::Service, false, false),
        ] {
            assert_eq!(may_import(&one(role)), imports, "{role:?} imports");
            assert_eq!(
                can_assign_owner(&one(role)),
                names_owner,
                "{role:?} names owners"
            );
        }
        assert!(may_import(&Actor::system()) && can_assign_owner(&Actor::system()));
    }

    #[test]
    fn table_of_spec_section_2() {
        let owner = u("owner");
        let collab: BTreeSet<_> = [u("collab")].into();
        let lead = LeadFacts {
            territory: TerritoryId::De,
            owner: Some(&owner),
            collaborators: &collab,
        };
        let admin = Actor::new(u("a"), [Role::Admin], []);
        let manager = Actor::new(u("m"), [Role::Manager], [TerritoryId::De]);
        let ch_manager = Actor::new(u("mc"), [Role::Manager], [TerritoryId::Ch]);
        let own_rep = Actor::new(u("owner"), [Role::Sales], [TerritoryId::De]);
        let collab_rep = Actor::new(u("collab"), [Role::Sales], [TerritoryId::De]);
        let other_rep = Actor::new(u("x"), [Role::Sales], [TerritoryId::De]);
        let viewer = Actor::new(u("v"), [Role::Viewer], [TerritoryId::De]);
        let service = Actor::new(u("s"), [Role::Service], [TerritoryId::De]);
        use Decision::*;
        let expect = [
            (&admin, [Allow; 8]),
            (
                &manager,
                [Allow, Allow, Allow, Allow, Allow, Allow, Allow, Forbidden],
            ),
            (&ch_manager, [NotFound; 8]),
            (
                &own_rep,
                [
                    Allow, Allow, Allow, Allow, Forbidden, Forbidden, Forbidden, Forbidden,
                ],
            ),
            (
                &collab_rep,
                [
                    Allow, Forbidden, Allow, Forbidden, Forbidden, Forbidden, Forbidden, Forbidden,
                ],
            ),
            (&other_rep, [NotFound; 8]),
            (
                &viewer,
                [
                    Allow, Forbidden, Forbidden, Forbidden, Forbidden, Forbidden, Forbidden,
                    Forbidden,
                ],
            ),
            (&service, [NotFound; 8]),
        ];
        for (who, decisions) in expect {
            for (action, want) in Action::ALL.into_iter().zip(decisions) {
                assert_eq!(
                    decide(who, &lead, action),
                    want,
                    "{} {:?}",
                    who.user_id(),
                    action
                );
            }
        }
    }

    #[test]
    fn being_named_owner_or_collaborator_gives_a_viewer_no_write() {
        // Only a sales rep writes through ownership: a viewer named as owner or collaborator
        // (data from before a role change) still only reads.
        let viewer = Actor::new(u("v"), [Role::Viewer], [TerritoryId::De]);
        let named: BTreeSet<_> = [u("v")].into();
        for (owner, collaborators) in [(Some(u("v")), BTreeSet::new()), (None, named)] {
            let lead = LeadFacts {
                territory: TerritoryId::De,
                owner: owner.as_ref(),
                collaborators: &collaborators,
            };
            assert_eq!(decide(&viewer, &lead, Action::Read), Decision::Allow);
            for action in [Action::LogActivity, Action::Update, Action::Delete] {
                assert_eq!(
                    decide(&viewer, &lead, action),
                    Decision::Forbidden,
                    "{action:?}"
                );
            }
        }
    }

    #[test]
    fn only_roles_that_read_leads_may_list_them() {
        assert!(may_list_leads(&Actor::system()));
        for role in [Role::Admin, Role::Manager, Role::Sales, Role::Viewer] {
            assert!(may_list_leads(&Actor::new(
                u("x"),
                [role],
                [TerritoryId::De]
            )));
        }
        assert!(!may_list_leads(&Actor::new(
            u("svc"),
            [Role::Service],
            [TerritoryId::De]
        )));
        assert!(!may_list_leads(&Actor::new(
            u("none"),
            [],
            [TerritoryId::De]
        )));
    }

    #[test]
    fn sales_owner_in_foreign_territory_sees_nothing() {
        let owner = u("owner");
        let none = BTreeSet::new();
        let lead = LeadFacts {
            territory: TerritoryId::Ch,
            owner: Some(&owner),
            collaborators: &none,
        };
        let rep = Actor::new(u("owner"), [Role::Sales], [TerritoryId::De]);
        assert_eq!(decide(&rep, &lead, Action::Read), Decision::NotFound);
    }

    #[test]
    fn creation_rules() {
        assert!(can_create(
            &Actor::new(u("a"), [Role::Admin], []),
            TerritoryId::Ch
        ));
        assert!(can_create(
            &Actor::new(u("r"), [Role::Sales], [TerritoryId::De]),
            TerritoryId::De
        ));
        assert!(!can_create(
            &Actor::new(u("r"), [Role::Sales], [TerritoryId::De]),
            TerritoryId::Ch
        ));
        assert!(!can_create(
            &Actor::new(u("r"), [Role::Sales], []),
            TerritoryId::De
        ));
        assert!(!can_create(
            &Actor::new(u("v"), [Role::Viewer], [TerritoryId::De]),
            TerritoryId::De
        ));
        assert!(!can_backdate(&Actor::new(
            u("m"),
            [Role::Manager],
            [TerritoryId::De]
        )));
    }

    proptest! {
        #[test]
        fn a_pure_sales_actor_never_touches_a_lead_it_neither_owns_nor_collaborates_on(
            a in freshplan_kernel::testing::sales_actor(),
            territory in freshplan_kernel::testing::territory_id(),
            owner in freshplan_kernel::testing::user_id(),
            collabs in proptest::collection::btree_set(freshplan_kernel::testing::user_id(), 0..3),
        ) {
            prop_assume!(&owner != a.user_id() && !collabs.contains(a.user_id()));
            let lead = LeadFacts { territory, owner: Some(&owner), collaborators: &collabs };
            for action in Action::ALL {
                prop_assert_eq!(decide(&a, &lead, action), Decision::NotFound);
            }
        }

        #[test]
        fn nobody_outside_the_territory_reads_unless_admin(
            a in actor(),
            territory in freshplan_kernel::testing::territory_id(),
            owner in freshplan_kernel::testing::user_id(),
        ) {
            let none = BTreeSet::new();
            let lead = LeadFacts { territory, owner: Some(&owner), collaborators: &none };
            if !a.has_role(Role::Admin) && !a.works_in(territory) {
                prop_assert_eq!(decide(&a, &lead, Action::Read), Decision::NotFound);
            }
        }

        #[test]
        fn every_allowed_action_implies_read(a in actor(), owner in freshplan_kernel::testing::user_id()) {
            let none = BTreeSet::new();
            let lead = LeadFacts { territory: TerritoryId::De, owner: Some(&owner), collaborators: &none };
            for action in Action::ALL {
                if decide(&a, &lead, action) == Decision::Allow {
                    prop_assert!(can_read(&a, &lead));
                }
            }
        }
    }
}
