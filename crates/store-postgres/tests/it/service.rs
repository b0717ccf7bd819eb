//! `LeadService` on `PgLeadStore`: the use cases end to end, with their events in the outbox of
//! the same transaction — and none when the change fails.

use std::sync::Arc;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use time::Duration;

use freshplan_kernel::FixedClock;
use freshplan_kernel::testing::SequentialIds;
use freshplan_leads::activity::ActivityType;
use freshplan_leads::model::{CompanyName, Email};
use freshplan_leads::protection::ProtectionPolicy;
use freshplan_leads::status::LeadStatus;
use freshplan_leads::{CreateLead, LeadData, LeadError, LeadPatch, LeadService, LogActivity};
use freshplan_store_postgres::PgLeadStore;

use crate::helpers::{Db, NOW, admin, rep};

/// The lead service on the test database, with a fixed clock at [`NOW`].
pub(crate) type Service = LeadService<PgLeadStore, Arc<FixedClock>, SequentialIds>;

pub(crate) fn service(db: &Db) -> (Service, Arc<FixedClock>) {
    let clock = Arc::new(FixedClock::new(NOW));
    let service = LeadService::new(
        db.store(),
        clock.clone(),
        SequentialIds::default(),
        ProtectionPolicy::default(),
    );
    (service, clock)
}

fn post(email: &str) -> LeadData {
    let mut data =
        LeadData::new(CompanyName::parse("Gasthaus Zur Post GmbH").unwrap(), "DE").unwrap();
    data.email = Some(Email::parse(email).unwrap());
    data.email_consent = true;
    data
}

async fn outbox(db: &Db) -> Vec<(String, bool, String)> {
    sqlx::query_as("select type, dashboard, txid::text from event_outbox order by id")
        .fetch_all(&db.su)
        .await
        .unwrap()
}

#[sqlx::test(migrator = "freshplan_store_postgres::MIGRATOR")]
async fn create_log_and_sweep_write_their_events_atomically(
    pool_opts: PgPoolOptions,
    opts: PgConnectOptions,
) {
    let db = Db::new(pool_opts, opts).await;
    let (service, clock) = service(&db);
    let rep1 = rep("rep-1");
    let create = CreateLead {
        data: post("info@post.de"),
        registered_at: None,
        idempotency: Some(("key-1".into(), "hash-1".into())),
    };
    let (lead, replayed) = service.create(&rep1, create.clone()).await.unwrap();
    assert!(!replayed);
    assert_eq!(lead.status, LeadStatus::Registered);
    // The same key and body replays the first response.
    let (again, replayed) = service.create(&rep1, create).await.unwrap();
    assert!(replayed);
    assert_eq!(again, lead);

    clock.advance(Duration::hours(1));
    let call = LogActivity {
        activity_type: ActivityType::Call,
        occurred_at: None,
        description: Some("Erstgespräch".into()),
    };
    let (_, lead) = service.log_activity(&rep1, lead.id, call).await.unwrap();
    assert_eq!(lead.status, LeadStatus::Active);
    let note = LogActivity {
        activity_type: ActivityType::Note,
        occurred_at: None,
        description: Some("intern".into()),
    };
    service.log_activity(&rep1, lead.id, note).await.unwrap();

    // 60 days without a meaningful contact: REMINDER; 10 days of grace later: EXPIRED.
    clock.advance(Duration::days(61));
    assert_eq!(service.sweep(10).await.unwrap().transitions, 1);
    assert_eq!(
        service.sweep(10).await.unwrap().transitions,
        0,
        "idempotent"
    );
    clock.advance(Duration::days(11));
    assert_eq!(service.sweep(10).await.unwrap().transitions, 1);
    let expired = service.get(&admin(), lead.id).await.unwrap();
    assert_eq!(expired.status, LeadStatus::Expired);
    assert_eq!(expired.owner, None);
    assert_eq!(expired.version, 5);
    // The released lead is out of rep-1's scope now (the database says so too).
    assert!(matches!(
        service.get(&rep1, lead.id).await,
        Err(LeadError::NotFound)
    ));

    let events = outbox(&db).await;
    let types: Vec<&str> = events.iter().map(|e| e.0.as_str()).collect();
    assert_eq!(
        types,
        [
            "lead.created.v1",
            "lead.activity.logged.v1",
            "lead.status.changed.v1",
            "lead.activity.logged.v1",
            "lead.protection.reminder.v1",
            "lead.status.changed.v1",
            "lead.protection.expired.v1",
            "lead.status.changed.v1",
        ]
    );
    let dashboard: Vec<bool> = events.iter().map(|e| e.1).collect();
    assert_eq!(dashboard, [true, true, true, false, true, true, true, true]);
    // One transaction per change: create | call | note | reminder sweep | expiry sweep.
    let mut txids: Vec<&str> = events.iter().map(|e| e.2.as_str()).collect();
    txids.dedup();
    assert_eq!(txids.len(), 5);
    // …and each change's timeline entries committed with it.
    let timeline = service.activities(&admin(), lead.id, 0, 50).await.unwrap();
    let kinds: Vec<&str> = timeline
        .items
        .iter()
        .rev()
        .map(|a| a.activity_type.as_str())
        .collect();
    assert_eq!(
        kinds,
        [
            "CREATED",
            "CALL",
            "STATUS_CHANGED",
            "NOTE",
            "REMINDER_SENT",
            "EXPIRED"
        ]
    );
    db.close().await;
}

#[sqlx::test(migrator = "freshplan_store_postgres::MIGRATOR")]
async fn a_failed_change_leaves_no_event(pool_opts: PgPoolOptions, opts: PgConnectOptions) {
    let db = Db::new(pool_opts, opts).await;
    let (service, _clock) = service(&db);
    let (lead, _) = service
        .create(
            &rep("rep-1"),
            CreateLead {
                data: post("info@post.de"),
                registered_at: None,
                idempotency: None,
            },
        )
        .await
        .unwrap();
    let before = (
        db.count("leads").await,
        db.count("event_outbox").await,
        db.count("activities").await,
    );
    assert_eq!(before, (1, 1, 1));

    // A duplicate that rep-2 cannot see: 409 without naming it, nothing written.
    let dup = service
        .create(
            &rep("rep-2"),
            CreateLead {
                data: post(" INFO@post.de"),
                registered_at: None,
                idempotency: None,
            },
        )
        .await;
    assert!(
        matches!(dup, Err(LeadError::Duplicate { existing: None, .. })),
        "{dup:?}"
    );
    // A stale If-Match.
    let stale = service
        .update(
            &rep("rep-1"),
            lead.id,
            Some(0),
            LeadPatch {
                city: Some(Some("Berlin".into())),
                ..LeadPatch::default()
            },
        )
        .await;
    assert!(matches!(
        stale,
        Err(LeadError::PreconditionFailed { current: 1 })
    ));
    // A change the database refuses: a viewer slipping past the domain is impossible, but a
    // rep logging on a lead it cannot see gets a 404 and writes nothing.
    let hidden = service
        .log_activity(
            &rep("rep-2"),
            lead.id,
            LogActivity {
                activity_type: ActivityType::Call,
                occurred_at: None,
                description: None,
            },
        )
        .await;
    assert!(matches!(hidden, Err(LeadError::NotFound)));
    let after = (
        db.count("leads").await,
        db.count("event_outbox").await,
        db.count("activities").await,
    );
    assert_eq!(after, before);
    db.close().await;
}

#[sqlx::test(migrator = "freshplan_store_postgres::MIGRATOR")]
async fn racing_creates_of_one_prospect_yield_one_lead_and_one_409(
    pool_opts: PgPoolOptions,
    opts: PgConnectOptions,
) {
    let db = Db::new(pool_opts, opts).await;
    let (service, _clock) = service(&db);
    let service = Arc::new(service);
    let mut tasks = Vec::new();
    for who in ["rep-1", "rep-2", "rep-3", "rep-4"] {
        let service = service.clone();
        tasks.push(tokio::spawn(async move {
            service
                .create(
                    &rep(who),
                    CreateLead {
                        data: post("info@post.de"),
                        registered_at: None,
                        idempotency: None,
                    },
                )
                .await
        }));
    }
    let mut created = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => created += 1,
            Err(LeadError::Duplicate { .. }) => {}
            Err(other) => panic!("a race must end in 201 or 409, not {other:?}"),
        }
    }
    assert_eq!(created, 1);
    assert_eq!(db.count("leads").await, 1);
    assert_eq!(db.count("event_outbox").await, 1);
    db.close().await;
}
