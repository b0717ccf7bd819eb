//! Use-case tests of `LeadService` on the in-memory adapters, and properties of the aggregate.

use proptest::prelude::*;
use time::macros::datetime;
use time::{Duration, OffsetDateTime};

use freshplan_kernel::testing::SequentialIds;
use freshplan_kernel::{Actor, FixedClock, Role, TerritoryId, UserId};

use crate::activity::ActivityType;
use crate::duplicates::DuplicateKind;
use crate::events::LeadEvent;
use crate::lead::{Lead, LeadData, LeadPatch};
use crate::memory::{InMemoryLeadStore, block_on};
use crate::model::LeadSource;
use crate::model::{CompanyName, Email};
use crate::ports::LeadQuery;
use crate::protection::{AutoTransition, ProtectionPolicy, SweepFacts, next_due, next_transition};
use crate::service::{CreateLead, LeadError, LeadService, LogActivity};
use crate::status::{LeadStatus, TransitionError};
use crate::testing::{duration_up_to, instant, lead_data};

const T0: OffsetDateTime = datetime!(2026-03-02 09:00 UTC);

type Svc = LeadService<InMemoryLeadStore, std::sync::Arc<FixedClock>, SequentialIds>;

fn setup() -> (Svc, InMemoryLeadStore, std::sync::Arc<FixedClock>) {
    let store = InMemoryLeadStore::default();
    let clock = std::sync::Arc::new(FixedClock::new(T0));
    (
        LeadService::new(
            store.clone(),
            clock.clone(),
            SequentialIds::default(),
            ProtectionPolicy::default(),
        ),
        store,
        clock,
    )
}

fn u(s: &str) -> UserId {
    UserId::parse(s).unwrap()
}
fn rep(name: &str) -> Actor {
    Actor::new(u(name), [Role::Sales], [TerritoryId::De])
}
fn manager() -> Actor {
    Actor::new(u("manager"), [Role::Manager], [TerritoryId::De])
}
fn admin() -> Actor {
    Actor::new(u("admin"), [Role::Admin], [])
}
fn data(name: &str) -> LeadData {
    LeadData::new(CompanyName::parse(name).unwrap(), "DE").unwrap()
}
fn create(svc: &Svc, actor: &Actor, d: LeadData) -> Result<Lead, LeadError> {
    block_on(svc.create(
        actor,
        CreateLead {
            data: d,
            registered_at: None,
            idempotency: None,
        },
    ))
    .map(|r| r.0)
}
fn types(store: &InMemoryLeadStore) -> Vec<String> {
    store.events().into_iter().map(|e| e.event_type).collect()
}

#[test]
fn create_writes_lead_timeline_and_event_together() {
    let (svc, store, _) = setup();
    let lead = create(&svc, &rep("r1"), data("Gasthaus Post")).unwrap();
    assert_eq!(lead.status, LeadStatus::Registered);
    assert_eq!(lead.version, 1);
    assert_eq!(lead.registered_at, T0);
    assert_eq!(types(&store), ["lead.created.v1"]);
    assert_eq!(store.activities()[0].activity_type, ActivityType::Created);
    let ev = &store.events()[0];
    assert_eq!(ev.subject.as_deref(), Some(lead.id.to_string().as_str()));
    assert_eq!(ev.data["territory"], "DE");
}

#[test]
fn create_in_foreign_territory_or_as_viewer_is_forbidden() {
    let (svc, store, _) = setup();
    let ch = LeadData::new(CompanyName::parse("Beizli").unwrap(), "CH").unwrap();
    assert!(matches!(
        create(&svc, &rep("r1"), ch),
        Err(LeadError::Forbidden(_))
    ));
    let viewer = Actor::new(u("v"), [Role::Viewer], [TerritoryId::De]);
    assert!(matches!(
        create(&svc, &viewer, data("X")),
        Err(LeadError::Forbidden(_))
    ));
    assert!(store.leads().is_empty() && store.events().is_empty());
}

#[test]
fn backdating_is_admin_only() {
    let (svc, _, _) = setup();
    let cmd = |d| CreateLead {
        data: d,
        registered_at: Some(T0 - Duration::days(30)),
        idempotency: None,
    };
    assert!(matches!(
        block_on(svc.create(&manager(), cmd(data("A")))),
        Err(LeadError::Forbidden(_))
    ));
    let (lead, _) = block_on(svc.create(&admin(), cmd(data("B")))).unwrap();
    assert_eq!(lead.registered_at, T0 - Duration::days(30));
}

#[test]
fn duplicates_are_409_and_named_only_when_visible() {
    let (svc, store, _) = setup();
    let mut d = data("Hotel Adler GmbH");
    d.email = Some(Email::parse("info@adler.de").unwrap());
    let first = create(&svc, &rep("r1"), d).unwrap();
    // another rep cannot see it: 409 without details
    let mut d2 = data("Other");
    d2.email = Some(Email::parse("INFO@adler.de ").unwrap());
    match create(&svc, &rep("r2"), d2.clone()) {
        Err(LeadError::Duplicate {
            kind: DuplicateKind::Email,
            existing: None,
        }) => {}
        other => panic!("{other:?}"),
    }
    // a manager can: named
    match create(&svc, &manager(), d2) {
        Err(LeadError::Duplicate {
            existing: Some(l), ..
        }) => assert_eq!(l.id, first.id),
        other => panic!("{other:?}"),
    }
    // company + postal code + country
    let mut a = data("Kantine Nord");
    a.postal_code = Some("10115".into());
    create(&svc, &rep("r1"), a).unwrap();
    let mut b = data("kantine  nord AG");
    b.postal_code = Some("10115".into());
    assert!(matches!(
        create(&svc, &rep("r3"), b),
        Err(LeadError::Duplicate {
            kind: DuplicateKind::Company,
            ..
        })
    ));
    assert_eq!(store.leads().len(), 2);
}

#[test]
fn deleted_leads_no_longer_block_duplicates_and_answer_404() {
    let (svc, _, _) = setup();
    let r = rep("r1");
    let lead = create(&svc, &r, data("Alpha")).unwrap();
    block_on(svc.delete(&r, lead.id, Some(1))).unwrap();
    assert!(matches!(
        block_on(svc.get(&r, lead.id)),
        Err(LeadError::NotFound)
    ));
    create(&svc, &r, data("Alpha")).unwrap();
    let page = block_on(svc.list(
        &admin(),
        &LeadQuery {
            include_deleted: true,
            ..LeadQuery::default()
        },
    ))
    .unwrap();
    assert_eq!(page.total, 2);
    let page = block_on(svc.list(&admin(), &LeadQuery::default())).unwrap();
    assert_eq!(page.total, 1);
    assert!(matches!(
        block_on(svc.list(
            &manager(),
            &LeadQuery {
                include_deleted: true,
                ..LeadQuery::default()
            }
        )),
        Err(LeadError::Forbidden(_))
    ));
}

#[test]
fn idempotency_key_replays_and_rejects_other_bodies() {
    let (svc, store, _) = setup();
    let r = rep("r1");
    let cmd = |hash: &str, name: &str| CreateLead {
        data: data(name),
        registered_at: None,
        idempotency: Some(("k1".into(), hash.into())),
    };
    let (a, replay_a) = block_on(svc.create(&r, cmd("h1", "Alpha"))).unwrap();
    let (b, replay_b) = block_on(svc.create(&r, cmd("h1", "Alpha"))).unwrap();
    assert!(!replay_a && replay_b);
    assert_eq!(a.id, b.id);
    assert!(matches!(
        block_on(svc.create(&r, cmd("h2", "Beta"))),
        Err(LeadError::IdempotencyMismatch)
    ));
    assert_eq!(store.leads().len(), 1);
    assert_eq!(store.events().len(), 1);
}

#[test]
fn an_idempotency_key_is_honoured_for_24_hours_and_not_a_second_longer() {
    use crate::service::IDEMPOTENCY_WINDOW;
    let (svc, store, clock) = setup();
    let r = rep("r1");
    let cmd = |hash: &str, name: &str| CreateLead {
        data: data(name),
        registered_at: None,
        idempotency: Some(("k1".into(), hash.into())),
    };
    let (first, _) = block_on(svc.create(&r, cmd("h1", "Alpha"))).unwrap();
    clock.set(T0 + IDEMPOTENCY_WINDOW - Duration::seconds(1));
    let (again, replayed) = block_on(svc.create(&r, cmd("h1", "Alpha"))).unwrap();
    assert!(replayed);
    assert_eq!(again.id, first.id);
    // From the 24th hour on the key is free: another body creates another lead.
    clock.set(T0 + IDEMPOTENCY_WINDOW);
    let (other, replayed) = block_on(svc.create(&r, cmd("h2", "Beta"))).unwrap();
    assert!(!replayed);
    assert_ne!(other.id, first.id);
    assert_eq!(store.leads().len(), 2);
}

#[test]
fn the_service_keeps_and_sweeps_by_the_protection_policy_it_was_given() {
    let policy = ProtectionPolicy {
        protection_months: 3,
        inactivity: Duration::days(30),
        grace: Duration::days(5),
    };
    // The store indexes due leads by the same policy, as the PostgreSQL store does.
    let store = InMemoryLeadStore::with_policy(policy);
    let clock = std::sync::Arc::new(FixedClock::new(T0));
    let svc = LeadService::new(store, clock.clone(), SequentialIds::default(), policy);
    assert_eq!(*svc.policy(), policy);
    let r = rep("r1");
    let lead = create(&svc, &r, data("Alpha")).unwrap();
    clock.set(T0 + Duration::days(30));
    block_on(svc.sweep(10)).unwrap();
    let reminded = block_on(svc.get(&r, lead.id)).unwrap();
    assert_eq!(reminded.status, LeadStatus::Reminder);
    assert_eq!(
        reminded.protection.grace_until,
        Some(T0 + Duration::days(35))
    );
}

#[test]
fn a_patch_that_makes_a_lead_a_duplicate_is_refused_naming_the_other_lead_when_visible() {
    let (svc, store, _) = setup();
    let mut first = data("Hotel Adler GmbH");
    first.email = Some(Email::parse("info@adler.de").unwrap());
    let first = create(&svc, &rep("r1"), first).unwrap();
    let second = create(&svc, &rep("r1"), data("Hotel Krone")).unwrap();
    let patch = LeadPatch {
        email: Some(Some(Email::parse("Info@Adler.de").unwrap())),
        ..LeadPatch::default()
    };
    match block_on(svc.update(&rep("r1"), second.id, None, patch)) {
        Err(LeadError::Duplicate {
            kind: DuplicateKind::Email,
            existing: Some(other),
        }) => assert_eq!(other.id, first.id),
        other => panic!("{other:?}"),
    }
    assert_eq!(store.leads().iter().filter(|l| l.version > 1).count(), 0);
    // A new address that no other lead has is fine.
    let fresh = LeadPatch {
        email: Some(Some(Email::parse("info@krone.de").unwrap())),
        ..LeadPatch::default()
    };
    let updated = block_on(svc.update(&rep("r1"), second.id, None, fresh)).unwrap();
    assert_eq!(updated.version, 2);
}

#[test]
fn a_manager_or_admin_may_set_a_leads_collaborators_a_collaborator_may_not() {
    let (svc, _, _) = setup();
    let owner = rep("r1");
    let lead = create(&svc, &owner, data("Alpha")).unwrap();
    let team = |ids: &[&str]| LeadPatch {
        collaborator_user_ids: Some(ids.iter().map(|id| u(id)).collect()),
        ..LeadPatch::default()
    };
    let lead = block_on(svc.update(&manager(), lead.id, None, team(&["r2"]))).unwrap();
    assert_eq!(lead.collaborators, [u("r2")].into());
    assert!(matches!(
        block_on(svc.update(&rep("r2"), lead.id, None, team(&["r2", "r3"]))),
        Err(LeadError::Forbidden(_))
    ));
    let lead = block_on(svc.update(&admin(), lead.id, None, team(&["r2", "r4"]))).unwrap();
    assert_eq!(lead.collaborators, [u("r2"), u("r4")].into());
    let lead = block_on(svc.update(&owner, lead.id, None, team(&[]))).unwrap();
    assert!(lead.collaborators.is_empty());
}

#[test]
fn a_deleted_leads_timeline_is_not_found() {
    let (svc, _, _) = setup();
    let r = rep("r1");
    let lead = create(&svc, &r, data("Alpha")).unwrap();
    assert!(
        !block_on(svc.activities(&r, lead.id, 0, 20))
            .unwrap()
            .items
            .is_empty()
    );
    block_on(svc.delete(&manager(), lead.id, None)).unwrap();
    assert!(matches!(
        block_on(svc.activities(&manager(), lead.id, 0, 20)),
        Err(LeadError::NotFound)
    ));
}

#[test]
fn a_sweep_in_batches_examines_and_moves_every_due_lead() {
    let (svc, store, clock) = setup();
    let r = rep("r1");
    for n in 0..5 {
        create(&svc, &r, data(&format!("Lead {n}"))).unwrap();
    }
    clock.set(T0 + Duration::days(60));
    let report = block_on(svc.sweep(2)).unwrap();
    assert_eq!((report.examined, report.transitions), (5, 5));
    assert!(
        store
            .leads()
            .iter()
            .all(|l| l.status == LeadStatus::Reminder)
    );
    // Nothing is due any more until the grace windows end.
    let again = block_on(svc.sweep(2)).unwrap();
    assert_eq!((again.examined, again.transitions), (0, 0));
}

#[test]
fn sales_sees_only_own_or_collaborating_leads() {
    let (svc, _, _) = setup();
    let r1 = rep("r1");
    let r2 = rep("r2");
    let lead = create(&svc, &r1, data("Alpha")).unwrap();
    create(&svc, &r2, data("Beta")).unwrap();
    assert!(matches!(
        block_on(svc.get(&r2, lead.id)),
        Err(LeadError::NotFound)
    ));
    assert_eq!(
        block_on(svc.list(&r2, &LeadQuery::default()))
            .unwrap()
            .total,
        1
    );
    // add r2 as collaborator: can read and log activities, not update
    let patch = LeadPatch {
        collaborator_user_ids: Some([u("r2")].into()),
        ..LeadPatch::default()
    };
    block_on(svc.update(&r1, lead.id, Some(1), patch)).unwrap();
    assert!(block_on(svc.get(&r2, lead.id)).is_ok());
    block_on(svc.log_activity(
        &r2,
        lead.id,
        LogActivity {
            activity_type: ActivityType::Call,
            occurred_at: None,
            description: None,
        },
    ))
    .unwrap();
    let patch = LeadPatch {
        city: Some(Some("Berlin".into())),
        ..LeadPatch::default()
    };
    assert!(matches!(
        block_on(svc.update(&r2, lead.id, None, patch)),
        Err(LeadError::Forbidden(_))
    ));
}

#[test]
fn patch_changes_fields_bumps_version_and_checks_if_match() {
    let (svc, store, _) = setup();
    let r = rep("r1");
    let lead = create(&svc, &r, data("Alpha")).unwrap();
    let patch = LeadPatch {
        city: Some(Some("Köln".into())),
        ..LeadPatch::default()
    };
    let updated = block_on(svc.update(&r, lead.id, Some(1), patch.clone())).unwrap();
    assert_eq!(updated.version, 2);
    assert_eq!(updated.data.city.as_deref(), Some("Köln"));
    assert!(matches!(
        block_on(svc.update(&r, lead.id, Some(1), patch)),
        Err(LeadError::PreconditionFailed { current: 2 })
    ));
    // clearing with null
    let clear = LeadPatch {
        city: Some(None),
        ..LeadPatch::default()
    };
    let cleared = block_on(svc.update(&r, lead.id, Some(2), clear)).unwrap();
    assert_eq!(cleared.data.city, None);
    assert_eq!(
        types(&store),
        ["lead.created.v1", "lead.updated.v1", "lead.updated.v1"]
    );
    // a no-op patch changes nothing
    let same = block_on(svc.update(&r, lead.id, Some(3), LeadPatch::default())).unwrap();
    assert_eq!(same.version, 3);
}

#[test]
fn invalid_transition_is_refused_and_changes_nothing() {
    let (svc, store, _) = setup();
    let r = rep("r1");
    let lead = create(&svc, &r, data("Alpha")).unwrap();
    let patch = LeadPatch {
        status: Some(LeadStatus::Converted),
        city: Some(Some("X".into())),
        ..LeadPatch::default()
    };
    assert!(matches!(
        block_on(svc.update(&r, lead.id, Some(1), patch)),
        Err(LeadError::Transition(TransitionError::NotAllowed { .. }))
    ));
    let after = block_on(svc.get(&r, lead.id)).unwrap();
    assert_eq!(after, lead);
    assert_eq!(store.events().len(), 1);
}

#[test]
fn status_change_emits_status_event_with_reason() {
    let (svc, store, _) = setup();
    let r = rep("r1");
    let lead = create(&svc, &r, data("Alpha")).unwrap();
    let patch = LeadPatch {
        status: Some(LeadStatus::Qualified),
        ..LeadPatch::default()
    };
    let q = block_on(svc.update(&r, lead.id, Some(1), patch)).unwrap();
    assert_eq!(q.status, LeadStatus::Qualified);
    let ev = store.events().pop().unwrap();
    assert_eq!(ev.event_type, "lead.status.changed.v1");
    assert_eq!(ev.data["oldStatus"], "REGISTERED");
    assert_eq!(ev.data["newStatus"], "QUALIFIED");
}

#[test]
fn meaningful_contact_activates_and_reactivates() {
    let (svc, store, clock) = setup();
    let r = rep("r1");
    let lead = create(&svc, &r, data("Alpha")).unwrap();
    let note = LogActivity {
        activity_type: ActivityType::Note,
        occurred_at: None,
        description: Some("internal".into()),
    };
    let (_, l) = block_on(svc.log_activity(&r, lead.id, note)).unwrap();
    assert_eq!(l.status, LeadStatus::Registered);
    assert_eq!(l.last_meaningful_contact_at, None);
    assert_eq!(l.last_activity_at, Some(T0));
    let call = LogActivity {
        activity_type: ActivityType::Call,
        occurred_at: Some(T0 - Duration::hours(1)),
        description: None,
    };
    let (a, l) = block_on(svc.log_activity(&r, lead.id, call)).unwrap();
    assert!(a.meaningful_contact);
    assert_eq!(l.status, LeadStatus::Active);
    assert_eq!(l.last_meaningful_contact_at, Some(T0 - Duration::hours(1)));
    assert_eq!(l.last_activity_at, Some(T0), "max with the existing value");
    // 60 days later: reminder; a contact reactivates
    clock.advance(Duration::days(61));
    let rep_ = block_on(svc.sweep(100)).unwrap();
    assert_eq!(rep_.transitions, 1);
    let l = block_on(svc.get(&r, lead.id)).unwrap();
    assert_eq!(l.status, LeadStatus::Reminder);
    let meeting = LogActivity {
        activity_type: ActivityType::Meeting,
        occurred_at: None,
        description: None,
    };
    let (_, l) = block_on(svc.log_activity(&r, lead.id, meeting)).unwrap();
    assert_eq!(l.status, LeadStatus::Active);
    assert_eq!(l.protection.grace_until, None);
    assert!(
        store
            .activities()
            .iter()
            .any(|a| a.activity_type == ActivityType::Reactivated)
    );
    assert!(types(&store).contains(&"lead.protection.reminder.v1".to_owned()));
}

#[test]
fn system_activity_types_and_future_times_are_refused() {
    let (svc, store, _) = setup();
    let r = rep("r1");
    let lead = create(&svc, &r, data("Alpha")).unwrap();
    let bad = LogActivity {
        activity_type: ActivityType::FollowupSent,
        occurred_at: None,
        description: None,
    };
    assert!(matches!(
        block_on(svc.log_activity(&r, lead.id, bad)),
        Err(LeadError::Validation(_))
    ));
    let future = LogActivity {
        activity_type: ActivityType::Call,
        occurred_at: Some(T0 + Duration::minutes(1)),
        description: None,
    };
    assert!(matches!(
        block_on(svc.log_activity(&r, lead.id, future)),
        Err(LeadError::Validation(_))
    ));
    let long = LogActivity {
        activity_type: ActivityType::Call,
        occurred_at: None,
        description: Some("x".repeat(2001)),
    };
    assert!(matches!(
        block_on(svc.log_activity(&r, lead.id, long)),
        Err(LeadError::Validation(_))
    ));
    assert_eq!(store.activities().len(), 1);
}

#[test]
fn protection_runs_6_60_10_to_expiry() {
    let (svc, store, clock) = setup();
    let r = rep("r1");
    let lead = create(&svc, &r, data("Alpha")).unwrap();
    // day 59: nothing; day 60: reminder
    clock.set(T0 + Duration::days(60) - Duration::seconds(1));
    assert_eq!(block_on(svc.sweep(10)).unwrap().transitions, 0);
    clock.set(T0 + Duration::days(60));
    assert_eq!(block_on(svc.sweep(10)).unwrap().transitions, 1);
    let l = block_on(svc.get(&r, lead.id)).unwrap();
    assert_eq!(l.status, LeadStatus::Reminder);
    assert_eq!(l.protection.grace_until, Some(T0 + Duration::days(70)));
    // grace passes: expired, owner released, manager still sees it
    clock.set(T0 + Duration::days(70));
    block_on(svc.sweep(10)).unwrap();
    let l = block_on(svc.get(&manager(), lead.id)).unwrap();
    assert_eq!(l.status, LeadStatus::Expired);
    assert_eq!(l.owner, None);
    assert!(types(&store).contains(&"lead.protection.expired.v1".to_owned()));
    // manager reopens with a new owner: protection restarts
    let patch = LeadPatch {
        status: Some(LeadStatus::Active),
        owner_user_id: Some(u("r9")),
        ..LeadPatch::default()
    };
    assert!(matches!(
        block_on(svc.update(&r, lead.id, None, patch.clone())),
        Err(LeadError::NotFound)
    ));
    let l = block_on(svc.update(&manager(), lead.id, None, patch)).unwrap();
    assert_eq!(l.owner, Some(u("r9")));
    assert_eq!(l.registered_at, T0 + Duration::days(70));
}

#[test]
fn protection_ends_after_six_months_with_grace() {
    let (svc, _, clock) = setup();
    let r = rep("r1");
    let lead = create(&svc, &r, data("Alpha")).unwrap();
    // keep contacting every 50 days so no reminder happens
    for k in 1..=3 {
        clock.set(T0 + Duration::days(50 * k));
        block_on(svc.sweep(10)).unwrap();
        block_on(svc.log_activity(
            &r,
            lead.id,
            LogActivity {
                activity_type: ActivityType::Call,
                occurred_at: None,
                description: None,
            },
        ))
        .unwrap();
    }
    let protected_until = datetime!(2026-09-02 09:00 UTC);
    clock.set(protected_until - Duration::seconds(1));
    block_on(svc.sweep(10)).unwrap();
    assert_eq!(
        block_on(svc.get(&r, lead.id)).unwrap().status,
        LeadStatus::Active
    );
    clock.set(protected_until);
    block_on(svc.sweep(10)).unwrap();
    let l = block_on(svc.get(&r, lead.id)).unwrap();
    assert_eq!(l.status, LeadStatus::GracePeriod);
    assert_eq!(
        l.protection.grace_until,
        Some(protected_until + Duration::days(10))
    );
}

#[test]
fn stop_the_clock_pauses_transitions_and_extends_windows() {
    let (svc, store, clock) = setup();
    let r = rep("r1");
    let lead = create(&svc, &r, data("Alpha")).unwrap();
    assert!(matches!(
        block_on(svc.stop_clock(&r, lead.id, None, "holiday")),
        Err(LeadError::Forbidden(_))
    ));
    clock.set(T0 + Duration::days(10));
    let l = block_on(svc.stop_clock(&manager(), lead.id, Some(1), "Betriebsferien")).unwrap();
    assert!(l.protection.clock_stopped_at.is_some());
    assert!(matches!(
        block_on(svc.stop_clock(&manager(), lead.id, None, "again")),
        Err(LeadError::Conflict(_))
    ));
    // while stopped nothing happens, and only closing moves are allowed
    clock.set(T0 + Duration::days(100));
    assert_eq!(block_on(svc.sweep(10)).unwrap().transitions, 0);
    let to_active = LeadPatch {
        status: Some(LeadStatus::Active),
        ..LeadPatch::default()
    };
    assert!(matches!(
        block_on(svc.update(&r, lead.id, None, to_active)),
        Err(LeadError::Transition(TransitionError::ClockStopped))
    ));
    let l = block_on(svc.resume_clock(&manager(), lead.id, None)).unwrap();
    assert_eq!(l.protection.paused_seconds, 90 * 86_400);
    assert_eq!(
        l.protected_until(svc.policy()),
        datetime!(2026-09-02 09:00 UTC) + Duration::days(90)
    );
    // the 60-day window moved by 90 days: reminder at day 150, not before
    clock.set(T0 + Duration::days(150) - Duration::seconds(1));
    assert_eq!(block_on(svc.sweep(10)).unwrap().transitions, 0);
    clock.set(T0 + Duration::days(150));
    assert_eq!(block_on(svc.sweep(10)).unwrap().transitions, 1);
    assert!(
        store
            .activities()
            .iter()
            .any(|a| a.activity_type == ActivityType::ClockResumed)
    );
}

fn call() -> LogActivity {
    LogActivity {
        activity_type: ActivityType::Call,
        occurred_at: None,
        description: None,
    }
}

/// The status-change facts of the outbox: `(oldStatus, newStatus, reason)` in order.
fn status_events(store: &InMemoryLeadStore) -> Vec<(String, String, String)> {
    store
        .events()
        .into_iter()
        .filter(|e| e.event_type == "lead.status.changed.v1")
        .map(|e| {
            let s = |k: &str| e.data[k].as_str().unwrap_or_default().to_owned();
            (s("oldStatus"), s("newStatus"), s("reason"))
        })
        .collect()
}

#[test]
fn a_contact_while_stopped_is_recorded_and_activates_only_on_resume() {
    let (svc, store, clock) = setup();
    let r = rep("r1");
    let lead = create(&svc, &r, data("Alpha")).unwrap();
    clock.set(T0 + Duration::days(1));
    block_on(svc.stop_clock(&manager(), lead.id, None, "Betriebsferien")).unwrap();
    clock.set(T0 + Duration::days(2));
    let (activity, l) = block_on(svc.log_activity(&r, lead.id, call())).unwrap();
    assert!(activity.meaningful_contact);
    assert_eq!(
        l.status,
        LeadStatus::Registered,
        "no transition while stopped"
    );
    assert_eq!(l.last_meaningful_contact_at, Some(T0 + Duration::days(2)));
    assert_eq!(l.last_activity_at, Some(T0 + Duration::days(2)));
    assert!(types(&store).contains(&"lead.activity.logged.v1".to_owned()));
    assert!(status_events(&store).is_empty());
    assert!(
        !store
            .activities()
            .iter()
            .any(|a| a.activity_type == ActivityType::StatusChanged)
    );
    // a second contact while stopped still changes nothing but the contact times
    clock.set(T0 + Duration::days(3));
    let (_, l) = block_on(svc.log_activity(&r, lead.id, call())).unwrap();
    assert_eq!(l.status, LeadStatus::Registered);

    clock.set(T0 + Duration::days(4));
    let l = block_on(svc.resume_clock(&manager(), lead.id, Some(l.version))).unwrap();
    assert_eq!(l.status, LeadStatus::Active);
    assert!(!l.protection.contact_while_stopped);
    assert_eq!(
        status_events(&store),
        [(
            "REGISTERED".to_owned(),
            "ACTIVE".to_owned(),
            "FIRST_CONTACT".to_owned()
        )]
    );
    let ev = store.events().pop().unwrap();
    assert_eq!(ev.event_type, "lead.status.changed.v1");
    assert_eq!(ev.data["version"], l.version);
    let entry = store.activities().pop().unwrap();
    assert_eq!(entry.activity_type, ActivityType::StatusChanged);
    assert_eq!(
        entry.metadata,
        serde_json::json!({"oldStatus": "REGISTERED", "newStatus": "ACTIVE", "reason": "FIRST_CONTACT"})
    );
    assert_eq!(entry.occurred_at, T0 + Duration::days(4));
    // the transition happened once: resuming again is refused, a later stop/resume adds nothing
    block_on(svc.stop_clock(&manager(), lead.id, None, "again")).unwrap();
    let l = block_on(svc.resume_clock(&manager(), lead.id, None)).unwrap();
    assert_eq!(l.status, LeadStatus::Active);
    assert_eq!(status_events(&store).len(), 1);
}

#[test]
fn a_note_while_stopped_makes_no_transition_on_resume() {
    let (svc, store, _) = setup();
    let r = rep("r1");
    let lead = create(&svc, &r, data("Alpha")).unwrap();
    block_on(svc.stop_clock(&manager(), lead.id, None, "Betriebsferien")).unwrap();
    let note = LogActivity {
        activity_type: ActivityType::Note,
        occurred_at: None,
        description: Some("internal".into()),
    };
    block_on(svc.log_activity(&r, lead.id, note)).unwrap();
    let l = block_on(svc.resume_clock(&manager(), lead.id, None)).unwrap();
    assert_eq!(l.status, LeadStatus::Registered);
    assert!(status_events(&store).is_empty());
}

#[test]
fn a_contact_while_stopped_reactivates_a_reminder_on_resume() {
    let (svc, store, clock) = setup();
    let r = rep("r1");
    let lead = create(&svc, &r, data("Alpha")).unwrap();
    block_on(svc.log_activity(&r, lead.id, call())).unwrap();
    clock.set(T0 + Duration::days(60));
    block_on(svc.sweep(10)).unwrap();
    let l = block_on(svc.get(&r, lead.id)).unwrap();
    assert_eq!(l.status, LeadStatus::Reminder);
    let reminder_at = l.protection.reminder_at;
    assert!(reminder_at.is_some());
    clock.set(T0 + Duration::days(61));
    block_on(svc.stop_clock(&manager(), lead.id, None, "Betriebsferien")).unwrap();
    clock.set(T0 + Duration::days(62));
    let meeting = LogActivity {
        activity_type: ActivityType::Meeting,
        occurred_at: None,
        description: None,
    };
    let (_, l) = block_on(svc.log_activity(&r, lead.id, meeting)).unwrap();
    assert_eq!(
        l.status,
        LeadStatus::Reminder,
        "no transition while stopped"
    );
    assert_eq!(l.protection.reminder_at, reminder_at);
    assert_eq!(l.last_meaningful_contact_at, Some(T0 + Duration::days(62)));
    assert!(
        !store
            .activities()
            .iter()
            .any(|a| a.activity_type == ActivityType::Reactivated)
    );
    // the grace window would have passed by now on a running clock; stopped, nothing happens
    clock.set(T0 + Duration::days(90));
    assert_eq!(block_on(svc.sweep(10)).unwrap().transitions, 0);
    let l = block_on(svc.resume_clock(&manager(), lead.id, None)).unwrap();
    assert_eq!(l.status, LeadStatus::Active);
    assert_eq!(l.protection.reminder_at, None);
    assert_eq!(l.protection.grace_until, None);
    let entry = store.activities().pop().unwrap();
    assert_eq!(entry.activity_type, ActivityType::Reactivated);
    assert_eq!(entry.metadata["reason"], "REACTIVATED");
    assert_eq!(
        status_events(&store).last().unwrap(),
        &(
            "REMINDER".to_owned(),
            "ACTIVE".to_owned(),
            "REACTIVATED".to_owned()
        )
    );
    // running again: the next reminder is 60 days (plus the pause after it) after the contact
    assert_eq!(block_on(svc.sweep(10)).unwrap().transitions, 0);
}

#[test]
fn manual_closing_moves_while_stopped_still_work() {
    let (svc, store, _) = setup();
    let r = rep("r1");
    let to = |s: LeadStatus| LeadPatch {
        status: Some(s),
        ..LeadPatch::default()
    };
    // REGISTERED → QUALIFIED → CONVERTED while stopped
    let a = create(&svc, &r, data("Alpha")).unwrap();
    block_on(svc.stop_clock(&manager(), a.id, None, "pause")).unwrap();
    let l = block_on(svc.update(&r, a.id, None, to(LeadStatus::Qualified))).unwrap();
    assert_eq!(l.status, LeadStatus::Qualified);
    let l = block_on(svc.update(&r, a.id, None, to(LeadStatus::Converted))).unwrap();
    assert_eq!(l.status, LeadStatus::Converted);
    // a contact logged while stopped, then LOST: resume makes no further transition
    let b = create(&svc, &r, data("Beta")).unwrap();
    block_on(svc.stop_clock(&manager(), b.id, None, "pause")).unwrap();
    block_on(svc.log_activity(&r, b.id, call())).unwrap();
    let l = block_on(svc.update(&r, b.id, None, to(LeadStatus::Lost))).unwrap();
    assert_eq!(l.status, LeadStatus::Lost);
    let l = block_on(svc.resume_clock(&manager(), b.id, None)).unwrap();
    assert_eq!(l.status, LeadStatus::Lost);
    // other moves stay refused while stopped
    let c = create(&svc, &r, data("Gamma")).unwrap();
    block_on(svc.stop_clock(&manager(), c.id, None, "pause")).unwrap();
    assert!(matches!(
        block_on(svc.update(&r, c.id, None, to(LeadStatus::Active))),
        Err(LeadError::Transition(TransitionError::ClockStopped))
    ));
    let reasons: Vec<_> = status_events(&store).into_iter().map(|e| e.2).collect();
    assert_eq!(reasons, ["MANUAL", "MANUAL", "MANUAL"]);
}

#[test]
fn a_stop_reason_with_nul_or_control_characters_is_refused_and_changes_nothing() {
    let (svc, store, _) = setup();
    let lead = create(&svc, &rep("r1"), data("Alpha")).unwrap();
    for bad in [
        "Ferien\u{0}",
        "\u{0}",
        "a\u{1b}b",
        "",
        "   ",
        &"x".repeat(501),
    ] {
        match block_on(svc.stop_clock(&manager(), lead.id, None, bad)) {
            Err(LeadError::Validation(errors)) => assert_eq!(errors[0].field, "reason"),
            other => panic!("{bad:?}: {other:?}"),
        }
    }
    assert_eq!(block_on(svc.get(&manager(), lead.id)).unwrap(), lead);
    assert_eq!(store.events().len(), 1);
    let l = block_on(svc.stop_clock(&manager(), lead.id, None, " Ferien\n\tbis Januar ")).unwrap();
    assert_eq!(
        l.protection.stop_reason.as_deref(),
        Some("Ferien\n\tbis Januar")
    );
}

#[test]
fn a_description_with_nul_is_refused_and_changes_nothing() {
    let (svc, store, _) = setup();
    let r = rep("r1");
    let lead = create(&svc, &r, data("Alpha")).unwrap();
    let bad = LogActivity {
        activity_type: ActivityType::Call,
        occurred_at: None,
        description: Some("Anruf\u{0}".into()),
    };
    assert!(matches!(
        block_on(svc.log_activity(&r, lead.id, bad)),
        Err(LeadError::Validation(_))
    ));
    assert_eq!(block_on(svc.get(&r, lead.id)).unwrap(), lead);
    assert_eq!(store.activities().len(), 1);
}

#[test]
fn reassign_is_manager_only_and_emits_owner_changed() {
    let (svc, store, _) = setup();
    let r = rep("r1");
    let lead = create(&svc, &r, data("Alpha")).unwrap();
    assert!(matches!(
        block_on(svc.reassign(&r, lead.id, None, u("r2"))),
        Err(LeadError::Forbidden(_))
    ));
    let l = block_on(svc.reassign(&manager(), lead.id, Some(1), u("r2"))).unwrap();
    assert_eq!(l.owner, Some(u("r2")));
    assert!(matches!(
        block_on(svc.get(&r, lead.id)),
        Err(LeadError::NotFound)
    ));
    assert_eq!(types(&store).last().unwrap(), "lead.owner.changed.v1");
}

#[test]
fn unsubscribe_withdraws_consent_once() {
    let (svc, store, _) = setup();
    let mut d = data("Alpha");
    d.email_consent = true;
    let lead = create(&svc, &rep("r1"), d).unwrap();
    assert_eq!(lead.email_consent_at, Some(T0));
    let l = block_on(svc.withdraw_consent(lead.id)).unwrap();
    assert!(!l.data.email_consent);
    let again = block_on(svc.withdraw_consent(lead.id)).unwrap();
    assert_eq!(again.version, l.version);
    assert_eq!(
        store
            .activities()
            .iter()
            .filter(|a| a.activity_type == ActivityType::Unsubscribed)
            .count(),
        1
    );
}

#[test]
fn idempotency_keys_of_a_changes_events_are_distinct() {
    let (svc, store, clock) = setup();
    let r = rep("r1");
    let lead = create(&svc, &r, data("Alpha")).unwrap();
    clock.set(T0 + Duration::days(400));
    block_on(svc.sweep(10)).unwrap(); // GRACE_PERIOD then EXPIRED in one sweep
    let l = block_on(svc.get(&admin(), lead.id)).unwrap();
    assert_eq!(l.status, LeadStatus::Expired);
    let keys: std::collections::HashSet<_> =
        store.events().iter().map(|e| e.idempotencykey).collect();
    assert_eq!(keys.len(), store.events().len());
}

fn swept(mut lead: Lead, now: OffsetDateTime, policy: &ProtectionPolicy) -> Lead {
    lead.sweep(now, policy);
    lead
}

fn arbitrary_lead() -> impl Strategy<Value = (Lead, Vec<(i64, i64)>)> {
    // A lead registered at some instant, then a schedule of (offset seconds, action) steps.
    (
        lead_data(),
        instant(),
        proptest::collection::vec((0i64..200 * 86_400, 0i64..4), 0..8),
    )
        .prop_map(|(d, at, steps)| {
            let (lead, _) = Lead::register(uuid::Uuid::nil(), d, &rep("r1"), None, at).unwrap();
            (lead, steps)
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn sweep_is_idempotent((lead, _) in arbitrary_lead(), later in duration_up_to(500)) {
        let policy = ProtectionPolicy::default();
        let now = lead.registered_at + later;
        let once = swept(lead, now, &policy);
        let twice = swept(once.clone(), now, &policy);
        prop_assert_eq!(once, twice);
    }

    #[test]
    fn paused_seconds_never_decrease_and_expiry_respects_windows((lead, steps) in arbitrary_lead()) {
        let policy = ProtectionPolicy::default();
        let m = manager();
        let mut lead = lead;
        let mut now = lead.registered_at;
        let mut paused = 0;
        for (offset, action) in steps {
            now += Duration::seconds(offset);
            let before = lead.clone();
            match action {
                0 => { let _ = lead.stop_clock("pause", &m, now); }
                1 => { let _ = lead.resume_clock(&m, now); }
                2 => { lead.record_activity(ActivityType::Call, now, &m, now); }
                _ => {}
            }
            lead.sweep(now, &policy);
            prop_assert!(lead.protection.paused_seconds >= paused);
            paused = lead.protection.paused_seconds;
            if lead.status == LeadStatus::GracePeriod && before.status != LeadStatus::GracePeriod {
                // protection-end grace never starts before protectedUntil, unless from a reminder
                prop_assert!(now >= lead.protected_until(&policy) || before.status == LeadStatus::Reminder || before.status == LeadStatus::Registered || before.status == LeadStatus::Active);
                prop_assert!(now >= lead.protected_until(&policy));
            }
            if lead.status == LeadStatus::Expired && before.status != LeadStatus::Expired {
                // expiry only after a grace window, and via GRACE_PERIOD never before protectedUntil
                prop_assert!(now >= before.protection.grace_until.unwrap_or(now));
                prop_assert!(lead.owner.is_none());
                if before.status == LeadStatus::GracePeriod || before.status == LeadStatus::Registered || before.status == LeadStatus::Active {
                    prop_assert!(now >= lead.protected_until(&policy));
                }
            }
        }
    }

    #[test]
    fn next_due_is_exactly_when_a_transition_becomes_due((lead, _) in arbitrary_lead(), later in duration_up_to(400)) {
        let policy = ProtectionPolicy::default();
        let lead = swept(lead.clone(), lead.registered_at + later, &policy);
        let facts = SweepFacts { status: lead.status, registered_at: lead.registered_at, last_meaningful_contact_at: lead.last_meaningful_contact_at, protection: &lead.protection };
        match next_due(&facts, &policy) {
            Some(due) => {
                prop_assert!(next_transition(&facts, due - Duration::seconds(1), &policy).is_none() || due - Duration::seconds(1) < lead.registered_at + later);
                prop_assert!(next_transition(&facts, due, &policy).is_some());
            }
            None => prop_assert!(next_transition(&facts, lead.registered_at + later + Duration::days(3650), &policy).is_none()),
        }
    }

    #[test]
    fn service_never_lets_a_stranger_rep_read_or_change(d in lead_data()) {
        prop_assume!(d.territory().unwrap() == TerritoryId::De);
        let (svc, store, _) = setup();
        let owner = rep("owner");
        let lead = create(&svc, &owner, d).unwrap();
        let stranger = rep("stranger");
        prop_assert!(matches!(block_on(svc.get(&stranger, lead.id)), Err(LeadError::NotFound)));
        let patch = LeadPatch { city: Some(None), ..LeadPatch::default() };
        prop_assert!(matches!(block_on(svc.update(&stranger, lead.id, None, patch)), Err(LeadError::NotFound)));
        prop_assert!(matches!(block_on(svc.delete(&stranger, lead.id, None)), Err(LeadError::NotFound)));
        let call = LogActivity { activity_type: ActivityType::Call, occurred_at: None, description: None };
        prop_assert!(matches!(block_on(svc.log_activity(&stranger, lead.id, call)), Err(LeadError::NotFound)));
        prop_assert_eq!(block_on(svc.list(&stranger, &LeadQuery::default())).unwrap().total, 0);
        prop_assert_eq!(store.events().len(), 1);
    }
}

/// A command applied to a lead whose clock is stopped (and to its running twin).
#[derive(Debug, Clone)]
enum Command {
    /// Log an activity, backdated by some seconds.
    Log(ActivityType, i64),
    /// A manual status move (PATCH `status`).
    Move(LeadStatus),
    /// The protection sweep.
    Sweep,
    /// Time passes (seconds).
    Wait(i64),
}

fn command() -> impl Strategy<Value = Command> {
    prop_oneof![
        // Backdated up to a week (so also before the reminder), and at most 18 h a step for 12
        // steps: the twin stays inside its 60-day and 10-day windows, so its sweep never moves it
        // and the comparison is about the contacts alone (the property asserts that too).
        3 => (crate::testing::user_activity_type(), 0i64..7 * 86_400)
            .prop_map(|(t, back)| Command::Log(t, back)),
        2 => crate::testing::status().prop_map(Command::Move),
        1 => Just(Command::Sweep),
        1 => (0i64..18 * 3_600).prop_map(Command::Wait),
    ]
}

/// Whether SPEC §4.3 lets a user move `from` → `to` while the clock is stopped (written out
/// independently of the status table).
fn spec_allows_while_stopped(from: LeadStatus, to: LeadStatus) -> bool {
    use LeadStatus::*;
    matches!(
        (from, to),
        (
            Registered | Active | Reminder | GracePeriod,
            Qualified | Lost
        ) | (Qualified, Converted | Lost)
    )
}

fn status_changes(changes: &crate::lead::Changes) -> Vec<(LeadStatus, LeadStatus, String)> {
    changes
        .events
        .iter()
        .filter_map(|(_, e)| match e {
            crate::events::LeadEvent::StatusChanged { old, new, reason } => {
                Some((*old, *new, reason.clone()))
            }
            _ => None,
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// SPEC §4.5 stop-the-clock: while stopped the status moves only by the manual moves allowed
    /// while stopped, contacts are still recorded; on resume the status is what the same accepted
    /// commands produce on a twin whose clock kept running.
    #[test]
    fn a_stopped_clock_defers_contact_transitions_to_resume(
        d in lead_data(),
        t0 in instant(),
        start in 0u8..3,
        commands in proptest::collection::vec(command(), 0..12),
    ) {
        let policy = ProtectionPolicy::default();
        let m = manager();
        let (mut lead, _) = Lead::register(uuid::Uuid::nil(), d, &rep("r1"), None, t0).unwrap();
        let mut now = t0;
        match start {
            0 => {}
            1 => { lead.record_activity(ActivityType::Call, now, &m, now); }
            _ => {
                now += policy.inactivity;
                lead.sweep(now, &policy);
                prop_assert_eq!(lead.status, LeadStatus::Reminder);
            }
        }
        let mut twin = lead.clone();
        lead.stop_clock("pause", &m, now).unwrap();
        let mut stopped_log = Vec::new();
        let mut twin_log = Vec::new();
        let mut manual_moves = 0;
        for c in commands {
            let before = lead.status;
            match c {
                Command::Log(t, back) => {
                    let at = now - Duration::seconds(back);
                    stopped_log.extend(status_changes(&lead.record_activity(t, at, &m, now)));
                    twin_log.extend(status_changes(&twin.record_activity(t, at, &m, now)));
                    // the contact is recorded exactly as on a running clock
                    prop_assert_eq!(lead.last_meaningful_contact_at, twin.last_meaningful_contact_at);
                    prop_assert_eq!(lead.last_activity_at, twin.last_activity_at);
                    prop_assert_eq!(lead.status, before);
                }
                Command::Move(to) => {
                    let patch = LeadPatch { status: Some(to), ..LeadPatch::default() };
                    match lead.apply_patch(patch.clone(), &m, now) {
                        Ok(ch) if lead.status != before => {
                            prop_assert!(spec_allows_while_stopped(before, to), "{} -> {}", before, to);
                            prop_assert_eq!(lead.status, to);
                            stopped_log.extend(status_changes(&ch));
                            // the twin takes the same move; from its status the table allows it too
                            let ch = twin.apply_patch(patch, &m, now);
                            prop_assert!(ch.is_ok(), "twin refused {} -> {}: {:?}", twin.status, to, ch);
                            twin_log.extend(status_changes(&ch.unwrap()));
                            manual_moves += 1;
                        }
                        _ => prop_assert_eq!(lead.status, before),
                    }
                }
                Command::Sweep => {
                    prop_assert!(lead.sweep(now, &policy).is_empty());
                    prop_assert!(twin.sweep(now, &policy).is_empty(), "the twin must not be swept");
                }
                Command::Wait(s) => now += Duration::seconds(s),
            }
            prop_assert!(lead.protection.is_stopped());
        }
        let resumed = lead.resume_clock(&m, now).unwrap();
        stopped_log.extend(status_changes(&resumed));
        prop_assert!(!lead.protection.contact_while_stopped);
        prop_assert_eq!(lead.status, twin.status);
        prop_assert_eq!(lead.protection.reminder_at, twin.protection.reminder_at);
        if manual_moves == 0 {
            // the same transitions with the same reasons, only later
            prop_assert_eq!(stopped_log, twin_log);
        }
        // a second stop/resume has nothing left to apply
        let status = lead.status;
        lead.stop_clock("again", &m, now).unwrap();
        prop_assert!(status_changes(&lead.resume_clock(&m, now).unwrap()).is_empty());
        prop_assert_eq!(lead.status, status);
    }
}

#[cfg(feature = "mocks")]
#[test]
fn a_store_failure_surfaces_as_store_error_and_nothing_is_committed() {
    use crate::ports::{MockLeadStore, MockLeadTx, StoreError};
    let mut store = MockLeadStore::new();
    store.expect_begin().returning(|_| {
        let mut tx = MockLeadTx::new();
        tx.expect_find_duplicate()
            .returning(|_, _| Box::pin(async { Ok(None) }));
        tx.expect_insert().returning(|_| {
            Box::pin(async {
                Err(crate::ports::WriteError::Store(StoreError::msg(
                    "connection reset",
                )))
            })
        });
        tx.expect_commit().never();
        Box::pin(async move { Ok(tx) })
    });
    let svc = LeadService::new(
        store,
        FixedClock::new(T0),
        SequentialIds::default(),
        ProtectionPolicy::default(),
    );
    let r = block_on(svc.create(
        &rep("r1"),
        CreateLead {
            data: data("Alpha"),
            registered_at: None,
            idempotency: None,
        },
    ));
    assert!(matches!(r, Err(LeadError::Store(_))));
}

// ---------------------------------------------------------------------------------------------
// Rules that mutation testing found unstated (issue 16)
// ---------------------------------------------------------------------------------------------

/// One step of a protection-clock schedule: stop or resume the clock, log a meaningful contact
/// now, or log one again at the instant of the last contact.
#[derive(Debug, Clone, Copy)]
enum ClockStep {
    Stop,
    Resume,
    Contact,
    SameContactAgain,
}

/// Up to 8 steps, each after a gap of up to 5 days: the 60 running days are never reached
/// inside the schedule, so only the clock and the contacts move the deadline.
fn clock_schedule() -> impl Strategy<Value = Vec<(i64, ClockStep)>> {
    proptest::collection::vec(
        (
            0i64..5 * 86_400,
            prop_oneof![
                Just(ClockStep::Stop),
                Just(ClockStep::Resume),
                Just(ClockStep::Contact),
                Just(ClockStep::SameContactAgain),
            ],
        ),
        0..8,
    )
}

/// The part of the `pauses` (start, end) that lies after `basis`.
fn paused_after(pauses: &[(OffsetDateTime, OffsetDateTime)], basis: OffsetDateTime) -> Duration {
    pauses
        .iter()
        .map(|&(start, end)| (end - start.max(basis)).max(Duration::ZERO))
        .sum()
}

#[test]
fn a_change_is_empty_only_without_timeline_entries_events_and_consent_change() {
    use crate::lead::{Changes, TimelineEntry};
    use crate::personal::ConsentSource;
    assert!(Changes::default().is_empty());
    let only_timeline = Changes {
        timeline: vec![TimelineEntry {
            activity_type: ActivityType::Updated,
            description: None,
            metadata: serde_json::json!({}),
        }],
        ..Changes::default()
    };
    let only_event = Changes {
        events: vec![(2, LeadEvent::Created)],
        ..Changes::default()
    };
    let only_consent = Changes {
        consent: Some(ConsentSource::Api),
        ..Changes::default()
    };
    for changes in [only_timeline, only_event, only_consent] {
        assert!(!changes.is_empty(), "{changes:?}");
    }
}

#[test]
fn every_sort_field_of_the_api_is_read_by_its_exact_name() {
    use crate::ports::SortField;
    for (name, field) in [
        ("createdAt", SortField::CreatedAt),
        ("updatedAt", SortField::UpdatedAt),
        ("companyName", SortField::CompanyName),
        ("status", SortField::Status),
        ("registeredAt", SortField::RegisteredAt),
        ("lastActivityAt", SortField::LastActivityAt),
        ("estimatedVolume", SortField::EstimatedVolume),
        ("city", SortField::City),
    ] {
        assert_eq!(SortField::parse(name), Some(field), "{name}");
    }
    for unknown in ["", "created_at", "CreatedAt", "email", "id"] {
        assert_eq!(SortField::parse(unknown), None, "{unknown}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// SPEC §4.5: the 60-day window counts running clock only. For every schedule of stops,
    /// resumes and contacts, the reminder falls exactly 60 days of running clock after the last
    /// meaningful contact (or the registration): its instant plus 60 days plus every paused
    /// second after it; a contact logged again at the same instant changes nothing.
    #[test]
    fn the_reminder_falls_60_days_of_running_clock_after_the_last_meaningful_contact(
        registered in instant(),
        schedule in clock_schedule(),
    ) {
        let policy = ProtectionPolicy::default();
        let m = manager();
        let (mut lead, _) =
            Lead::register(uuid::Uuid::nil(), data("Alpha"), &rep("r1"), None, registered).unwrap();
        let mut now = registered;
        let mut pauses: Vec<(OffsetDateTime, OffsetDateTime)> = Vec::new();
        let mut stopped_at = None;
        let mut last_contact = None;
        for (gap, step) in schedule {
            now += Duration::seconds(gap);
            match step {
                ClockStep::Stop => {
                    if lead.stop_clock("trade fair", &m, now).is_ok() {
                        stopped_at = Some(now);
                    }
                }
                ClockStep::Resume => {
                    if lead.resume_clock(&m, now).is_ok() {
                        pauses.push((stopped_at.take().expect("stopped"), now));
                    }
                }
                ClockStep::Contact => {
                    lead.record_activity(ActivityType::Call, now, &m, now);
                    last_contact = Some(now);
                }
                ClockStep::SameContactAgain => {
                    if let Some(at) = last_contact {
                        lead.record_activity(ActivityType::Meeting, at, &m, now);
                    }
                }
            }
            lead.sweep(now, &policy);
        }
        if let Some(start) = stopped_at {
            now += Duration::hours(1);
            lead.resume_clock(&m, now).unwrap();
            pauses.push((start, now));
        }
        prop_assert_eq!(lead.last_meaningful_contact_at, last_contact);
        let basis = last_contact.unwrap_or(registered);
        let reminder = basis + Duration::days(60) + paused_after(&pauses, basis);
        let facts = SweepFacts {
            status: lead.status,
            registered_at: lead.registered_at,
            last_meaningful_contact_at: lead.last_meaningful_contact_at,
            protection: &lead.protection,
        };
        prop_assert!(reminder > now && reminder < lead.protected_until(&policy));
        prop_assert_eq!(next_due(&facts, &policy), Some(reminder));
        prop_assert_eq!(next_transition(&facts, reminder - Duration::seconds(1), &policy), None);
        prop_assert_eq!(
            next_transition(&facts, reminder, &policy),
            Some(AutoTransition::Reminder { grace_until: reminder + policy.grace })
        );
    }

    /// SPEC §4.5: a stopped clock stops the grace window too. For every pause during a
    /// reminder's grace window, the window ends exactly that much later.
    #[test]
    fn a_pause_during_the_grace_window_moves_its_end_by_exactly_the_pause(
        registered in instant(),
        into_grace in 0i64..10 * 86_400,
        pause in 1i64..30 * 86_400,
    ) {
        let policy = ProtectionPolicy::default();
        let m = manager();
        let (mut lead, _) =
            Lead::register(uuid::Uuid::nil(), data("Alpha"), &rep("r1"), None, registered).unwrap();
        let reminded = registered + Duration::days(60);
        lead.sweep(reminded, &policy);
        prop_assert_eq!(lead.status, LeadStatus::Reminder);
        let grace_until = lead.protection.grace_until.expect("a reminder has a grace window");
        let stop = reminded + Duration::seconds(into_grace);
        lead.stop_clock("holiday", &m, stop).unwrap();
        lead.resume_clock(&m, stop + Duration::seconds(pause)).unwrap();
        let moved = grace_until + Duration::seconds(pause);
        prop_assert_eq!(lead.protection.grace_until, Some(moved));
        let mut just_before = lead.clone();
        just_before.sweep(moved - Duration::seconds(1), &policy);
        prop_assert_eq!(just_before.status, LeadStatus::Reminder);
        lead.sweep(moved, &policy);
        prop_assert_eq!(lead.status, LeadStatus::Expired);
    }

    /// A merge patch sets exactly the fields whose value differs from the lead's and names them
    /// in its `lead.updated.v1` event; the same patch again changes nothing.
    #[test]
    fn a_patch_sets_exactly_the_fields_that_differ_and_names_them(
        old in lead_data(),
        new in lead_data(),
        source in proptest::sample::select(LeadSource::ALL.to_vec()),
    ) {
        let r = rep("r1");
        let (mut lead, _) = Lead::register(uuid::Uuid::nil(), old.clone(), &r, None, T0).unwrap();
        let patch = LeadPatch {
            company_name: Some(new.company_name.clone()),
            email: Some(new.email.clone()),
            postal_code: Some(new.postal_code.clone()),
            business_type: Some(new.business_type),
            source: Some(source),
            country_code: Some(new.country_code.clone()),
            email_consent: Some(new.email_consent),
            ..LeadPatch::default()
        };
        // In the order the event lists them.
        let expected: Vec<&str> = [
            (old.company_name != new.company_name, "companyName"),
            (old.email != new.email, "email"),
            (old.postal_code != new.postal_code, "postalCode"),
            (old.business_type != new.business_type, "businessType"),
            (old.source != source, "source"),
            (old.country_code != new.country_code, "countryCode"),
            (old.email_consent != new.email_consent, "emailConsent"),
        ]
        .into_iter()
        .filter_map(|(differs, name)| differs.then_some(name))
        .collect();
        let changes = lead.apply_patch(patch.clone(), &r, T0 + Duration::hours(1)).unwrap();
        prop_assert_eq!(&lead.data.company_name, &new.company_name);
        prop_assert_eq!(&lead.data.email, &new.email);
        prop_assert_eq!(&lead.data.postal_code, &new.postal_code);
        prop_assert_eq!(lead.data.business_type, new.business_type);
        prop_assert_eq!(lead.data.source, source);
        prop_assert_eq!(&lead.data.country_code, &new.country_code);
        prop_assert_eq!(lead.territory, new.territory().unwrap());
        prop_assert_eq!(lead.data.email_consent, new.email_consent);
        let named: Vec<&str> = changes
            .events
            .iter()
            .filter_map(|(_, event)| match event {
                LeadEvent::Updated { fields } => Some(fields.clone()),
                _ => None,
            })
            .flatten()
            .collect();
        prop_assert_eq!(&named, &expected);
        prop_assert_eq!(lead.version, if expected.is_empty() { 1 } else { 2 });
        let again = lead.apply_patch(patch, &r, T0 + Duration::hours(2)).unwrap();
        prop_assert!(again.is_empty());
    }
}

// ---------------------------------------------------------------------------------------------
// Personal data (SPEC §13)
// ---------------------------------------------------------------------------------------------

mod personal_data {
    use super::*;
    use crate::personal::{AuditAction, ConsentSource, ErasureReason, REDACTED, RetentionPolicy};

    fn personal(name: &str) -> LeadData {
        let mut d = data(name);
        d.contact_person = Some("Erika Mustermann".into());
        d.email = Some(Email::parse("erika@mustermann.example").unwrap());
        d.phone = Some("+49 30 999".into());
        d.city = Some("Berlin".into());
        d.email_consent = true;
        d
    }

    #[test]
    fn every_consent_change_is_in_the_ledger_with_its_source() {
        let (svc, store, clock) = setup();
        let r = rep("r1");
        let lead = create(&svc, &r, personal("Alpha")).unwrap();
        assert_eq!(lead.email_consent_source, Some(ConsentSource::Api));
        clock.set(T0 + Duration::hours(1));
        let l = block_on(svc.withdraw_consent(lead.id)).unwrap();
        assert_eq!(l.email_consent_source, Some(ConsentSource::Unsubscribe));
        clock.set(T0 + Duration::hours(2));
        let patch = LeadPatch {
            email_consent: Some(true),
            ..LeadPatch::default()
        };
        let l = block_on(svc.update(&r, lead.id, Some(l.version), patch)).unwrap();
        assert_eq!(l.email_consent_at, Some(T0 + Duration::hours(2)));
        // A patch that does not touch consent records nothing.
        let patch = LeadPatch {
            phone: Some(None),
            ..LeadPatch::default()
        };
        block_on(svc.update(&r, lead.id, Some(l.version), patch)).unwrap();
        let ledger: Vec<_> = store
            .consent_changes()
            .into_iter()
            .map(|c| {
                (
                    c.consent,
                    c.source,
                    c.changed_by.as_str().to_owned(),
                    c.changed_at,
                )
            })
            .collect();
        assert_eq!(
            ledger,
            [
                (true, ConsentSource::Api, "r1".to_owned(), T0),
                (
                    false,
                    ConsentSource::Unsubscribe,
                    "system".to_owned(),
                    T0 + Duration::hours(1)
                ),
                (
                    true,
                    ConsentSource::Api,
                    "r1".to_owned(),
                    T0 + Duration::hours(2)
                ),
            ]
        );
        // Created without consent: no entry.
        create(&svc, &r, data("Beta")).unwrap();
        assert_eq!(store.consent_changes().len(), 3);
    }

    #[test]
    fn erasure_removes_the_person_keeps_the_statistics_and_is_idempotent() {
        let (svc, store, clock) = setup();
        let r = rep("r1");
        let lead = create(&svc, &r, personal("Metzgerei Erika Mustermann")).unwrap();
        let call = LogActivity {
            activity_type: ActivityType::Call,
            occurred_at: None,
            description: Some("Erika wants samples".into()),
        };
        block_on(svc.log_activity(&r, lead.id, call)).unwrap();
        let lead = block_on(svc.get(&r, lead.id)).unwrap();
        // Only admins erase.
        assert!(matches!(
            block_on(svc.erase(&manager(), lead.id, None, ErasureReason::DataSubjectRequest)),
            Err(LeadError::Forbidden(_))
        ));
        assert!(matches!(
            block_on(svc.erase(
                &admin(),
                lead.id,
                Some(lead.version - 1),
                ErasureReason::DataSubjectRequest
            )),
            Err(LeadError::PreconditionFailed { .. })
        ));
        clock.set(T0 + Duration::hours(1));
        let erased = block_on(svc.erase(
            &admin(),
            lead.id,
            Some(lead.version),
            ErasureReason::DataSubjectRequest,
        ))
        .unwrap();
        assert_eq!(erased.erased_at, Some(T0 + Duration::hours(1)));
        assert_eq!(erased.data.contact_person, None);
        assert_eq!(erased.data.email, None);
        assert!(!erased.data.email_consent);
        assert_eq!(erased.email_consent_source, Some(ConsentSource::Erasure));
        assert_eq!(erased.status, lead.status);
        assert_eq!(erased.territory, lead.territory);
        assert_eq!(erased.registered_at, lead.registered_at);
        // The timeline keeps its entries, without the text; the created event is redacted.
        let acts = store.activities();
        let call = acts
            .iter()
            .find(|a| a.activity_type == ActivityType::Call)
            .unwrap();
        assert_eq!(call.description, None);
        assert!(acts.iter().any(|a| a.activity_type == ActivityType::Erased));
        let created = store
            .events()
            .into_iter()
            .find(|e| e.event_type == "lead.created.v1")
            .unwrap();
        assert_eq!(created.data["companyName"], REDACTED);
        let last = store.events().pop().unwrap();
        assert_eq!(last.event_type, "lead.erased.v1");
        assert_eq!(last.data["reason"], "DATA_SUBJECT_REQUEST");
        assert!(!last.data.to_string().contains("Erika"));
        // Idempotent: again (even with the old ETag) answers the erased lead, changes nothing.
        let events = store.events().len();
        let again = block_on(svc.erase(
            &admin(),
            lead.id,
            Some(lead.version),
            ErasureReason::DataSubjectRequest,
        ))
        .unwrap();
        assert_eq!(again.version, erased.version);
        assert_eq!(store.events().len(), events);
        // Frozen: no user change any more.
        assert!(matches!(
            block_on(svc.update(&r, lead.id, None, LeadPatch::default())),
            Err(LeadError::Conflict(_))
        ));
        // The duplicate keys are released: the same person can be registered again.
        create(&svc, &r, personal("Metzgerei Erika Mustermann")).unwrap();
        // Exports and erasures are audited, without personal data.
        block_on(svc.personal_data(&manager(), erased.id)).unwrap();
        let audit = block_on(svc.audit_log(&admin(), 0, 10)).unwrap();
        let actions: Vec<_> = audit.items.iter().map(|e| e.action).collect();
        assert_eq!(
            actions,
            [AuditAction::PersonalDataExported, AuditAction::LeadErased]
        );
        assert!(matches!(
            block_on(svc.audit_log(&manager(), 0, 10)),
            Err(LeadError::Forbidden(_))
        ));
    }

    #[test]
    fn a_sales_rep_cannot_export() {
        let (svc, _, _) = setup();
        let r = rep("r1");
        let lead = create(&svc, &r, personal("Alpha")).unwrap();
        assert!(matches!(
            block_on(svc.personal_data(&r, lead.id)),
            Err(LeadError::Forbidden(_))
        ));
        let export = block_on(svc.personal_data(&admin(), lead.id)).unwrap();
        assert_eq!(export.records.activities.len(), 1);
        assert_eq!(export.records.consent.len(), 1);
        assert_eq!(export.records.events.len(), 1);
    }

    #[test]
    fn retention_erases_exactly_the_closed_leads_past_their_period() {
        let (svc, store, clock) = setup();
        let r = rep("r1");
        let policy = RetentionPolicy {
            closed_leads: Some(Duration::days(730)),
            mail_bodies: None,
        };
        let lost = create(&svc, &r, personal("Lost old")).unwrap();
        let deleted = create(&svc, &r, data("Deleted old")).unwrap();
        let open = create(&svc, &r, data("Open old")).unwrap();
        let lost_late = create(&svc, &r, data("Lost late")).unwrap();
        let lost_patch = LeadPatch {
            status: Some(LeadStatus::Lost),
            ..LeadPatch::default()
        };
        block_on(svc.update(&r, lost.id, None, lost_patch.clone())).unwrap();
        block_on(svc.delete(&r, deleted.id, None)).unwrap();
        clock.set(T0 + Duration::days(10));
        block_on(svc.update(&r, lost_late.id, None, lost_patch)).unwrap();
        // One second before the first period ends: nothing.
        clock.set(T0 + Duration::days(730) - Duration::seconds(1));
        assert!(block_on(svc.retention(&policy, 10)).unwrap().is_empty());
        let retention_runs = || {
            block_on(svc.audit_log(&admin(), 0, 50))
                .unwrap()
                .items
                .iter()
                .filter(|e| e.action == AuditAction::RetentionRun)
                .count()
        };
        assert_eq!(
            retention_runs(),
            0,
            "a run that erased nothing is not audited"
        );
        clock.set(T0 + Duration::days(730));
        let report = block_on(svc.retention(&policy, 1)).unwrap();
        assert_eq!(report.leads_erased, 2);
        let get = |id| store.leads().into_iter().find(|l| l.id == id).unwrap();
        assert!(get(lost.id).erased_at.is_some());
        assert!(get(deleted.id).erased_at.is_some());
        assert!(get(open.id).erased_at.is_none());
        assert!(get(lost_late.id).erased_at.is_none());
        // Each batch that erased something is audited (two batches of one), the last, empty
        // batch is not.
        assert_eq!(retention_runs(), 2);
        // Erased ones are not erased twice.
        assert!(block_on(svc.retention(&policy, 10)).unwrap().is_empty());
        clock.set(T0 + Duration::days(740));
        assert_eq!(
            block_on(svc.retention(&policy, 10)).unwrap().leads_erased,
            1
        );
        assert!(get(open.id).erased_at.is_none());
    }
}

// ---------------------------------------------------------------------------------------------
// Imports: each row is created exactly as a single create, with the file's rules on top.
// ---------------------------------------------------------------------------------------------

mod imports {
    use super::*;
    use crate::import::{ImportCandidate, InFileKeys, RowOutcome};
    use crate::personal::ConsentSource;
    use crate::ports::LeadTx;
    use uuid::Uuid;

    const IMPORT: Uuid = Uuid::from_u128(0x1e);

    fn row(line: u64, d: LeadData) -> ImportCandidate {
        ImportCandidate {
            line,
            data: d,
            registered_at: None,
            owner: None,
        }
    }

    fn run(
        svc: &Svc,
        actor: &Actor,
        rows: Vec<ImportCandidate>,
        dry_run: bool,
    ) -> Vec<(u64, RowOutcome)> {
        let in_file = InFileKeys::build(rows.iter().map(|r| (r.line, r.data.duplicate_keys())));
        let (tx, reports) =
            block_on(svc.import_batch(actor, IMPORT, rows, &in_file, dry_run)).unwrap();
        block_on(tx.commit()).unwrap();
        reports.into_iter().map(|r| (r.line, r.outcome)).collect()
    }

    #[test]
    fn an_imported_lead_is_created_as_a_single_create_would_with_the_import_as_its_source() {
        let (svc, store, _) = setup();
        let mut with_consent = data("Gasthaus Post");
        with_consent.email_consent = true;
        let out = run(
            &svc,
            &rep("r1"),
            vec![row(2, with_consent), row(3, data("Hotel Adler"))],
            false,
        );
        assert!(matches!(out[0], (2, RowOutcome::Created { .. })));
        assert!(matches!(out[1], (3, RowOutcome::Created { .. })));
        let leads = store.leads();
        assert_eq!(leads.len(), 2);
        for lead in &leads {
            assert_eq!(lead.status, LeadStatus::Registered);
            assert_eq!(
                lead.owner,
                Some(u("r1")),
                "the importer owns what they import"
            );
            assert_eq!(lead.registered_at, T0);
            assert_eq!(lead.version, 1);
        }
        assert_eq!(types(&store), ["lead.created.v1", "lead.created.v1"]);
        let timeline = store.activities();
        assert_eq!(timeline.len(), 2);
        assert!(
            timeline
                .iter()
                .all(|a| a.activity_type == ActivityType::Created
                    && a.metadata["importId"] == IMPORT.to_string())
        );
        let post = leads
            .iter()
            .find(|l| l.data.company_name.as_str() == "Gasthaus Post")
            .unwrap();
        assert_eq!(post.email_consent_source, Some(ConsentSource::Import));
        let ledger = store.consent_changes();
        assert_eq!(
            ledger.len(),
            1,
            "only the row that gave consent is in the ledger"
        );
        assert_eq!(ledger[0].source, ConsentSource::Import);
        assert_eq!(ledger[0].lead_id, post.id);
    }

    #[test]
    fn a_dry_run_reports_the_same_outcomes_and_writes_nothing() {
        let (svc, store, _) = setup();
        create(&svc, &rep("r1"), data("Gasthaus Post")).unwrap();
        let rows = || {
            vec![
                row(2, data("Gasthaus Post")),
                row(3, data("Hotel Adler")),
                row(4, data("hotel  adler")),
                row(
                    5,
                    LeadData::new(CompanyName::parse("Zürich AG").unwrap(), "CH").unwrap(),
                ),
            ]
        };
        let dry = run(&svc, &rep("r1"), rows(), true);
        assert_eq!(store.leads().len(), 1, "a dry run creates nothing");
        assert_eq!(types(&store), ["lead.created.v1"]);
        let real = run(&svc, &rep("r1"), rows(), false);
        let shape =
            |o: &[(u64, RowOutcome)]| o.iter().map(|(l, o)| (*l, o.name())).collect::<Vec<_>>();
        assert_eq!(shape(&dry), shape(&real));
        assert_eq!(
            shape(&real),
            [
                (2, "duplicate"),
                (3, "created"),
                (4, "duplicate"),
                (5, "refused")
            ]
        );
        assert_eq!(store.leads().len(), 2);
    }

    #[test]
    fn duplicates_name_the_existing_lead_only_when_the_importer_may_read_it_and_name_earlier_lines()
    {
        let (svc, _, _) = setup();
        let mine = create(&svc, &rep("r1"), data("Gasthaus Post")).unwrap();
        let theirs = create(&svc, &rep("r2"), data("Hotel Adler")).unwrap();
        let out = run(
            &svc,
            &rep("r1"),
            vec![
                row(2, data("Gasthaus Post")),
                row(3, data("Hotel Adler")),
                row(4, data("Kantine Nord")),
                row(9, data("kantine nord")),
            ],
            false,
        );
        assert_eq!(
            out[0].1,
            RowOutcome::Duplicate {
                kind: DuplicateKind::Company,
                existing: Some(mine.id),
                other_line: None
            }
        );
        assert_eq!(
            out[1].1,
            RowOutcome::Duplicate {
                kind: DuplicateKind::Company,
                existing: None,
                other_line: None
            },
            "another rep's lead {} is a duplicate but not named",
            theirs.id
        );
        assert!(matches!(out[2].1, RowOutcome::Created { .. }));
        assert_eq!(
            out[3].1,
            RowOutcome::Duplicate {
                kind: DuplicateKind::Company,
                existing: None,
                other_line: Some(4)
            }
        );
    }

    #[test]
    fn owner_backdating_and_territory_are_checked_per_row_as_for_single_creates() {
        let (svc, store, _) = setup();
        let backdated = ImportCandidate {
            registered_at: Some(T0 - Duration::days(30)),
            ..row(2, data("Gasthaus Post"))
        };
        let owned = ImportCandidate {
            owner: Some(u("r2")),
            ..row(3, data("Hotel Adler"))
        };
        let swiss = row(
            4,
            LeadData::new(CompanyName::parse("Zürich AG").unwrap(), "CH").unwrap(),
        );
        let out = run(
            &svc,
            &rep("r1"),
            vec![backdated.clone(), owned.clone(), swiss.clone()],
            false,
        );
        let fields = |o: &RowOutcome| match o {
            RowOutcome::Refused { errors } => errors.iter().map(|e| e.field).collect::<Vec<_>>(),
            other => panic!("refused expected, got {other:?}"),
        };
        assert_eq!(fields(&out[0].1), ["registeredAt"]);
        assert_eq!(fields(&out[1].1), ["ownerUserId"]);
        assert_eq!(fields(&out[2].1), ["countryCode"]);
        assert!(store.leads().is_empty());

        let out = run(&svc, &manager(), vec![owned, swiss.clone()], false);
        assert!(matches!(out[0].1, RowOutcome::Created { .. }));
        assert_eq!(
            fields(&out[1].1),
            ["countryCode"],
            "a DE manager cannot import CH"
        );
        assert_eq!(
            store.leads()[0].owner,
            Some(u("r2")),
            "a manager names the owner"
        );

        let out = run(&svc, &admin(), vec![backdated, swiss], false);
        assert!(
            out.iter()
                .all(|(_, o)| matches!(o, RowOutcome::Created { .. }))
        );
        let backdated = store
            .leads()
            .into_iter()
            .find(|l| l.data.company_name.as_str() == "Gasthaus Post")
            .unwrap();
        assert_eq!(backdated.registered_at, T0 - Duration::days(30));
    }

    #[test]
    fn viewers_cannot_import() {
        let (svc, _, _) = setup();
        let viewer = Actor::new(u("v"), [Role::Viewer], [TerritoryId::De]);
        let err = block_on(svc.import_batch(
            &viewer,
            IMPORT,
            vec![row(2, data("A"))],
            &InFileKeys::default(),
            true,
        ))
        .err()
        .unwrap();
        assert!(matches!(err, LeadError::Forbidden(_)));
    }
}
