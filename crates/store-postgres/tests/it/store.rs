//! The repository operations: round trip, duplicates under concurrency, versions, the sweep's
//! SKIP LOCKED, the timeline, idempotency keys and the outbox.

use std::time::Duration as StdDuration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use time::Duration;
use uuid::Uuid;

use freshplan_kernel::{Actor, CloudEvent, KeyBasis, TerritoryId};
use freshplan_leads::activity::{Activity, ActivityType};
use freshplan_leads::duplicates::DuplicateKind;
use freshplan_leads::lead::{FollowUpMark, FollowUpMarks};
use freshplan_leads::model::{BusinessType, KitchenSize, LeadSource, Volume};
use freshplan_leads::ports::{IdempotencyRecord, LeadStore, LeadTx, WriteError};
use freshplan_leads::protection::Protection;
use freshplan_leads::status::LeadStatus;

use crate::helpers::{Db, NOW, admin, id, lead, rep, uid, with_collaborators, with_email};

#[sqlx::test(migrator = "freshplan_store_postgres::MIGRATOR")]
async fn a_full_lead_round_trips(pool_opts: PgPoolOptions, opts: PgConnectOptions) {
    let db = Db::new(pool_opts, opts).await;
    let mut full = with_collaborators(
        with_email(lead(1, "Café du Lac Sàrl", "CH", "rep-1"), "Info@Lac.CH"),
        &["rep-2", "rep-3"],
    );
    let d = &mut full.data;
    d.contact_person = Some("Anna Müller".into());
    d.phone = Some("+41 44 123 45 67".into());
    d.website = Some("https://lac.example.ch".into());
    d.street = Some("Seestrasse 1".into());
    d.postal_code = Some("8001".into());
    d.city = Some("Zürich".into());
    d.business_type = Some(BusinessType::Hotel);
    d.kitchen_size = Some(KitchenSize::Large);
    d.employee_count = Some(42);
    d.estimated_volume = Some(Volume::from_cents(Volume::MAX_CENTS).unwrap());
    d.industry = Some("Gastronomie".into());
    d.source = LeadSource::Event;
    d.source_campaign = Some("Igeho 2025".into());
    d.email_consent = true;
    full.email_consent_at = Some(NOW - Duration::days(3));
    full.version = 7;
    full.status = LeadStatus::Reminder;
    // Microsecond precision survives; finer parts would be truncated (documented on PgLeadStore).
    full.registered_at = NOW - Duration::days(80) + Duration::microseconds(123_456);
    full.last_activity_at = Some(NOW - Duration::days(2));
    full.last_meaningful_contact_at = Some(NOW - Duration::days(70));
    full.protection = Protection {
        reminder_at: Some(NOW - Duration::days(1)),
        grace_until: Some(NOW + Duration::days(9)),
        clock_stopped_at: Some(NOW - Duration::hours(5)),
        stop_reason: Some("Betriebsferien".into()),
        paused_seconds: 86_400,
        paused_seconds_at_contact: 3_600,
        contact_while_stopped: true,
    };
    full.created_at = NOW - Duration::days(80);
    full.created_by = uid("importer");
    full.updated_at = NOW - Duration::minutes(1);
    full.updated_by = uid("manager-CH");
    db.seed(std::slice::from_ref(&full)).await;
    // The follow-up marks come from the follow-up records.
    sqlx::query(
        "insert into followups (lead_id, territory_id, stage, status, reason, processed_at) values \
         ($1, 'CH', 'T3', 'SENT', null, $2), ($1, 'CH', 'T7', 'SKIPPED', 'RECENT_CONTACT', $3)",
    )
    .bind(full.id)
    .bind(NOW - Duration::days(77))
    .bind(NOW - Duration::days(73))
    .execute(&db.su)
    .await
    .unwrap();
    full.follow_ups = FollowUpMarks {
        t3: Some(FollowUpMark {
            status: "SENT".into(),
            processed_at: NOW - Duration::days(77),
            reason: None,
        }),
        t7: Some(FollowUpMark {
            status: "SKIPPED".into(),
            processed_at: NOW - Duration::days(73),
            reason: Some("RECENT_CONTACT".into()),
        }),
    };
    let store = db.store();
    let mut tx = store.begin(&admin()).await.unwrap();
    let back = tx.get(full.id).await.unwrap().expect("the lead");
    assert_eq!(back, full);
    // The same lead comes back from the list, the duplicate lookup and the sweep.
    let listed = tx.list(&Default::default()).await.unwrap();
    assert_eq!(listed.items, vec![full.clone()]);
    let dup = tx
        .find_duplicate(&full.data.duplicate_keys(), None)
        .await
        .unwrap();
    assert_eq!(dup.as_ref(), Some(&full));
    // The derived columns are the domain's.
    let (email_key, company_key, volume): (Option<String>, String, String) = sqlx::query_as(
        "select email_key, company_key, estimated_volume::text from leads where id = $1",
    )
    .bind(full.id)
    .fetch_one(tx.connection().await.unwrap())
    .await
    .unwrap();
    assert_eq!(email_key.as_deref(), Some("info@lac.ch"));
    assert_eq!(company_key, r#"["café du lac","8001","CH"]"#);
    assert_eq!(volume, "999999999999.99");
    // Collaborators are mirrored into lead_collaborators.
    let mirrored: Vec<(String, String)> = sqlx::query_as(
        "select user_id, territory_id from lead_collaborators where lead_id = $1 order by user_id",
    )
    .bind(full.id)
    .fetch_all(tx.connection().await.unwrap())
    .await
    .unwrap();
    assert_eq!(
        mirrored,
        [("rep-2".into(), "CH".into()), ("rep-3".into(), "CH".into())]
    );
    drop(tx);

    // An update round-trips too, including a move to the other territory (the children follow)
    // and a changed collaborator set.
    let mut moved = back.clone();
    moved.version += 1;
    moved.data.country_code = "DE".into();
    moved.territory = TerritoryId::De;
    moved.collaborators = [uid("rep-3"), uid("rep-4")].into();
    moved.data.estimated_volume = None;
    moved.protection.clock_stopped_at = None;
    moved.protection.stop_reason = None;
    let mut tx = store.begin(&admin()).await.unwrap();
    tx.update(&moved, back.version).await.unwrap();
    tx.commit().await.unwrap();
    let mut tx = store.begin(&admin()).await.unwrap();
    assert_eq!(tx.get(full.id).await.unwrap().as_ref(), Some(&moved));
    let children: Vec<(String, String)> = sqlx::query_as(
        "select 'collaborator ' || user_id, territory_id from lead_collaborators where lead_id = $1 \
         union all select 'followup ' || stage, territory_id from followups where lead_id = $1 \
         order by 1",
    )
    .bind(full.id)
    .fetch_all(tx.connection().await.unwrap())
    .await
    .unwrap();
    assert_eq!(
        children,
        [
            ("collaborator rep-3".into(), "DE".into()),
            ("collaborator rep-4".into(), "DE".into()),
            ("followup T3".into(), "DE".into()),
            ("followup T7".into(), "DE".into()),
        ]
    );
    drop(tx);
    db.close().await;
}

/// Two transactions insert the same prospect; the second waits on the unique index and, when the
/// first commits, fails as a duplicate — never as a generic error.
async fn race(db: &Db, first: freshplan_leads::Lead, second: freshplan_leads::Lead) -> WriteError {
    let store = db.store();
    let mut t1 = store.begin(&rep("rep-1")).await.unwrap();
    t1.insert(&first).await.unwrap();
    let store2 = store.clone();
    let racer = tokio::spawn(async move {
        let mut t2 = store2.begin(&rep("rep-2")).await.unwrap();
        // Not visible to rep-2 (uncommitted, and not its lead): only the index can stop it.
        assert!(
            t2.find_duplicate(&second.data.duplicate_keys(), None)
                .await
                .unwrap()
                .is_none()
        );
        t2.insert(&second).await
    });
    tokio::time::sleep(StdDuration::from_millis(300)).await;
    assert!(
        !racer.is_finished(),
        "the second insert waits for the first"
    );
    t1.commit().await.unwrap();
    racer
        .await
        .unwrap()
        .expect_err("the second insert is a duplicate")
}

#[sqlx::test(migrator = "freshplan_store_postgres::MIGRATOR")]
async fn concurrent_duplicates_are_duplicates(pool_opts: PgPoolOptions, opts: PgConnectOptions) {
    let db = Db::new(pool_opts, opts).await;
    let e = race(
        &db,
        with_email(lead(1, "Gasthaus Post", "DE", "rep-1"), "info@post.de"),
        with_email(lead(2, "Anderer Name", "DE", "rep-2"), " INFO@Post.de "),
    )
    .await;
    assert!(
        matches!(e, WriteError::Duplicate(DuplicateKind::Email)),
        "{e:?}"
    );
    let mut a = lead(3, "Hotel Adler AG", "DE", "rep-1");
    a.data.postal_code = Some("10115".into());
    let mut b = lead(4, "hotel  adler", "DE", "rep-2");
    b.data.postal_code = Some(" 10115 ".into());
    let e = race(&db, a, b).await;
    assert!(
        matches!(e, WriteError::Duplicate(DuplicateKind::Company)),
        "{e:?}"
    );
    // No postal code on either side is the same prospect too (decision 0002).
    let e = race(
        &db,
        lead(5, "Kantine Nord", "DE", "rep-1"),
        lead(6, "Kantine Nord GmbH", "DE", "rep-2"),
    )
    .await;
    assert!(
        matches!(e, WriteError::Duplicate(DuplicateKind::Company)),
        "{e:?}"
    );
    // Same company, other country: no duplicate.
    let mut tx = db.store().begin(&admin()).await.unwrap();
    tx.insert(&lead(7, "Kantine Nord", "CH", "rep-1"))
        .await
        .unwrap();
    tx.commit().await.unwrap();
    db.close().await;
}

#[sqlx::test(migrator = "freshplan_store_postgres::MIGRATOR")]
async fn a_deleted_lead_blocks_no_duplicate(pool_opts: PgPoolOptions, opts: PgConnectOptions) {
    let db = Db::new(pool_opts, opts).await;
    let first = with_email(lead(1, "Gasthaus Post", "DE", "rep-1"), "info@post.de");
    db.seed(std::slice::from_ref(&first)).await;
    let store = db.store();
    let mut tx = store.begin(&admin()).await.unwrap();
    let again = with_email(lead(2, "Gasthaus Post", "DE", "rep-2"), "info@post.de");
    assert!(matches!(
        tx.insert(&again).await,
        Err(WriteError::Duplicate(DuplicateKind::Email))
    ));
    drop(tx);
    let mut tx = store.begin(&admin()).await.unwrap();
    let mut deleted = tx.get(first.id).await.unwrap().unwrap();
    deleted.status = LeadStatus::Deleted;
    deleted.version += 1;
    tx.update(&deleted, 1).await.unwrap();
    tx.commit().await.unwrap();
    let mut tx = store.begin(&admin()).await.unwrap();
    assert!(
        tx.find_duplicate(&again.data.duplicate_keys(), None)
            .await
            .unwrap()
            .is_none()
    );
    tx.insert(&again).await.unwrap();
    tx.commit().await.unwrap();
    // find_duplicate skips the lead itself when asked to.
    let mut tx = store.begin(&admin()).await.unwrap();
    let keys = again.data.duplicate_keys();
    assert_eq!(
        tx.find_duplicate(&keys, None).await.unwrap().map(|l| l.id),
        Some(again.id)
    );
    assert!(
        tx.find_duplicate(&keys, Some(again.id))
            .await
            .unwrap()
            .is_none()
    );
    drop(tx);
    db.close().await;
}

#[sqlx::test(migrator = "freshplan_store_postgres::MIGRATOR")]
async fn stale_versions_conflict(pool_opts: PgPoolOptions, opts: PgConnectOptions) {
    let db = Db::new(pool_opts, opts).await;
    db.seed(&[lead(1, "Eins", "DE", "rep-1")]).await;
    let store = db.store();
    let mut t1 = store.begin(&admin()).await.unwrap();
    let mut a = t1.get(id(1)).await.unwrap().unwrap();
    a.version = 2;
    a.data.city = Some("Berlin".into());
    t1.update(&a, 1).await.unwrap();
    t1.commit().await.unwrap();
    // A writer that read version 1 (e.g. through an old ETag) loses.
    let mut t2 = store.begin(&admin()).await.unwrap();
    let mut b = a.clone();
    b.version = 2;
    b.data.city = Some("Hamburg".into());
    assert!(matches!(
        t2.update(&b, 1).await,
        Err(WriteError::VersionConflict)
    ));
    // A lead that does not exist (or is invisible) conflicts too, as in the reference adapter.
    let mut ghost = lead(9, "Geist", "DE", "rep-1");
    ghost.version = 2;
    assert!(matches!(
        t2.update(&ghost, 1).await,
        Err(WriteError::VersionConflict)
    ));
    drop(t2);
    let mut t3 = store.begin(&admin()).await.unwrap();
    assert_eq!(
        t3.get(id(1)).await.unwrap().unwrap().data.city.as_deref(),
        Some("Berlin")
    );
    drop(t3);
    db.close().await;
}

#[sqlx::test(migrator = "freshplan_store_postgres::MIGRATOR")]
async fn the_sweep_skips_locked_leads(pool_opts: PgPoolOptions, opts: PgConnectOptions) {
    let db = Db::new(pool_opts, opts).await;
    // Due: registered 61 days ago without contact. Not due: registered now; a stopped clock;
    // a QUALIFIED lead.
    let mut leads = Vec::new();
    for n in 1..=4 {
        let mut l = lead(n, &format!("Fällig {n}"), "DE", "rep-1");
        l.registered_at = NOW - Duration::days(60 + i64::try_from(n).unwrap());
        leads.push(l);
    }
    leads.push(lead(5, "Frisch", "DE", "rep-1"));
    let mut stopped = lead(6, "Gestoppt", "DE", "rep-1");
    stopped.registered_at = NOW - Duration::days(90);
    stopped.protection.clock_stopped_at = Some(NOW - Duration::days(1));
    leads.push(stopped);
    let mut qualified = lead(7, "Qualifiziert", "DE", "rep-1");
    qualified.registered_at = NOW - Duration::days(90);
    qualified.status = LeadStatus::Qualified;
    leads.push(qualified);
    db.seed(&leads).await;

    let store = db.store();
    let mut t1 = store.begin(&Actor::system()).await.unwrap();
    let first = t1.due_for_sweep(NOW, 2).await.unwrap();
    // Oldest due first.
    assert_eq!(
        first.iter().map(|l| l.id).collect::<Vec<_>>(),
        [id(4), id(3)]
    );
    let mut t2 = store.begin(&Actor::system()).await.unwrap();
    let second = t2.due_for_sweep(NOW, 10).await.unwrap();
    assert_eq!(
        second.iter().map(|l| l.id).collect::<Vec<_>>(),
        [id(2), id(1)]
    );
    drop(t1);
    drop(t2);
    // Once released, all four are due again; nothing else ever is.
    let mut t3 = store.begin(&Actor::system()).await.unwrap();
    assert_eq!(t3.due_for_sweep(NOW, 10).await.unwrap().len(), 4);
    assert!(
        t3.due_for_sweep(NOW - Duration::days(5), 10)
            .await
            .unwrap()
            .is_empty()
    );
    drop(t3);
    db.close().await;
}

#[sqlx::test(migrator = "freshplan_store_postgres::MIGRATOR")]
async fn the_timeline_is_newest_first_and_paged(pool_opts: PgPoolOptions, opts: PgConnectOptions) {
    let db = Db::new(pool_opts, opts).await;
    db.seed(&[lead(1, "Eins", "DE", "rep-1")]).await;
    let store = db.store();
    let mut tx = store.begin(&rep("rep-1")).await.unwrap();
    let mut written = Vec::new();
    for n in 0..5u128 {
        // Two share an instant: the id breaks the tie.
        let at = NOW - Duration::hours(i64::try_from(n.min(3)).unwrap());
        let a = Activity {
            id: Uuid::from_u128(10 + n),
            lead_id: id(1),
            activity_type: if n % 2 == 0 {
                ActivityType::Call
            } else {
                ActivityType::Note
            },
            occurred_at: at,
            description: Some(format!("Eintrag {n}")),
            user_id: uid("rep-1"),
            meaningful_contact: n % 2 == 0,
            metadata: serde_json::json!({"n": n as u64}),
            created_at: NOW,
        };
        tx.insert_activity(&a).await.unwrap();
        written.push(a);
    }
    let mut expected = written.clone();
    expected.sort_by(|a, b| b.occurred_at.cmp(&a.occurred_at).then(b.id.cmp(&a.id)));
    let all = tx.list_activities(id(1), 0, 10).await.unwrap();
    assert_eq!(all.items, expected);
    assert_eq!(all.total, 5);
    let page = tx.list_activities(id(1), 1, 2).await.unwrap();
    assert_eq!(page.items, expected[2..4]);
    assert_eq!(page.total, 5);
    let past = tx.list_activities(id(1), 9, 2).await.unwrap();
    assert!(past.items.is_empty());
    assert_eq!(past.total, 5);
    // An activity needs a lead the caller can see.
    let orphan = Activity {
        lead_id: id(9),
        id: Uuid::from_u128(99),
        ..written[0].clone()
    };
    // The entry goes out with the transaction's next statement, which it fails.
    tx.insert_activity(&orphan).await.unwrap();
    assert!(tx.list_activities(id(1), 1, 2).await.is_err());
    drop(tx);
    db.close().await;
}

#[sqlx::test(migrator = "freshplan_store_postgres::MIGRATOR")]
async fn idempotency_keys_per_user(pool_opts: PgPoolOptions, opts: PgConnectOptions) {
    let db = Db::new(pool_opts, opts).await;
    db.seed(&[
        lead(1, "Eins", "DE", "rep-1"),
        lead(2, "Zwei", "DE", "rep-1"),
    ])
    .await;
    let store = db.store();
    let record = |lead: u128, at| IdempotencyRecord {
        request_hash: format!("hash-{lead}"),
        lead_id: id(lead),
        created_at: at,
    };
    let mut tx = store.begin(&rep("rep-1")).await.unwrap();
    assert_eq!(tx.idempotency_get("k").await.unwrap(), None);
    tx.idempotency_put("k", &record(1, NOW)).await.unwrap();
    assert_eq!(tx.idempotency_get("k").await.unwrap(), Some(record(1, NOW)));
    tx.commit().await.unwrap();
    // A live key is taken …
    let mut tx = store.begin(&rep("rep-1")).await.unwrap();
    assert!(matches!(
        tx.idempotency_put("k", &record(2, NOW + Duration::hours(1)))
            .await,
        Err(WriteError::IdempotencyKeyTaken)
    ));
    // … an expired one is taken over.
    let later = NOW + Duration::hours(25);
    tx.idempotency_put("k", &record(2, later)).await.unwrap();
    assert_eq!(
        tx.idempotency_get("k").await.unwrap(),
        Some(record(2, later))
    );
    tx.commit().await.unwrap();
    // Keys are per user: an admin neither sees nor collides with rep-1's key.
    let mut tx = store.begin(&admin()).await.unwrap();
    assert_eq!(tx.idempotency_get("k").await.unwrap(), None);
    tx.idempotency_put("k", &record(1, NOW)).await.unwrap();
    tx.commit().await.unwrap();
    // Concurrently: the second writer of a key waits for the first, then finds it taken.
    let mut t1 = store.begin(&rep("rep-1")).await.unwrap();
    t1.idempotency_put("race", &record(1, NOW)).await.unwrap();
    let store2 = store.clone();
    let racer = tokio::spawn(async move {
        let mut t2 = store2.begin(&rep("rep-1")).await.unwrap();
        t2.idempotency_put("race", &record(2, NOW)).await
    });
    tokio::time::sleep(StdDuration::from_millis(300)).await;
    t1.commit().await.unwrap();
    assert!(matches!(
        racer.await.unwrap(),
        Err(WriteError::IdempotencyKeyTaken)
    ));
    db.close().await;
}

/// event_id, type, subject, territory_id, dashboard, txid, payload.
type OutboxRow = (
    Uuid,
    String,
    Option<String>,
    Option<String>,
    bool,
    String,
    serde_json::Value,
);

fn event(n: u128, event_type: &str, data: serde_json::Value) -> CloudEvent {
    CloudEvent::new(
        Uuid::from_u128(n),
        CloudEvent::SOURCE_LEADS,
        event_type,
        NOW,
        Some(id(1).to_string()),
        KeyBasis::Version(1),
        data,
    )
    .unwrap()
}

#[sqlx::test(migrator = "freshplan_store_postgres::MIGRATOR")]
async fn events_exist_if_and_only_if_their_change_committed(
    pool_opts: PgPoolOptions,
    opts: PgConnectOptions,
) {
    let db = Db::new(pool_opts, opts).await;
    let store = db.store();
    // Rolled back: neither the lead nor its event.
    let mut tx = store.begin(&rep("rep-1")).await.unwrap();
    tx.insert(&lead(1, "Eins", "DE", "rep-1")).await.unwrap();
    tx.append_event(&event(
        1,
        "lead.created.v1",
        serde_json::json!({"territory": "DE"}),
    ))
    .await
    .unwrap();
    drop(tx);
    assert_eq!(
        (db.count("leads").await, db.count("event_outbox").await),
        (0, 0)
    );
    // Committed: both, and the event row carries the writing transaction's id.
    let mut tx = store.begin(&rep("rep-1")).await.unwrap();
    tx.insert(&lead(1, "Eins", "DE", "rep-1")).await.unwrap();
    tx.append_event(&event(
        2,
        "lead.created.v1",
        serde_json::json!({"territory": "DE"}),
    ))
    .await
    .unwrap();
    let quiet = event(
        3,
        "lead.activity.logged.v1",
        serde_json::json!({"territory": "CH", "meaningfulContact": false}),
    );
    tx.append_event(&quiet).await.unwrap();
    let xact: String = sqlx::query_scalar("select pg_current_xact_id()::text")
        .fetch_one(tx.connection().await.unwrap())
        .await
        .unwrap();
    assert_eq!(db.count("event_outbox").await, 0, "invisible before commit");
    tx.commit().await.unwrap();
    let rows: Vec<OutboxRow> = sqlx::query_as(
        "select event_id, type, subject, territory_id, dashboard, txid::text, payload \
               from event_outbox order by id",
    )
    .fetch_all(&db.su)
    .await
    .unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0].0, Uuid::from_u128(2));
    assert_eq!(rows[0].1, "lead.created.v1");
    assert_eq!(rows[0].2, Some(id(1).to_string()));
    assert_eq!(rows[0].3.as_deref(), Some("DE"));
    assert!(rows[0].4, "a created lead moves the dashboard");
    assert!(!rows[1].4, "a note does not");
    assert_eq!(rows[1].3.as_deref(), Some("CH"));
    assert!(rows.iter().all(|r| r.5 == xact));
    // The payload is the whole CloudEvent.
    let back: CloudEvent = serde_json::from_value(rows[1].6.clone()).unwrap();
    assert_eq!(back, quiet);
    // The feed is readable by the system and service contexts, not by a sales rep.
    let service = Actor::new(uid("svc"), [freshplan_kernel::Role::Service], []);
    for (actor, expected) in [(Actor::system(), 2i64), (service, 2), (rep("rep-1"), 0)] {
        let mut tx = store.begin(&actor).await.unwrap();
        let n: i64 = sqlx::query_scalar("select count(*) from event_outbox")
            .fetch_one(tx.connection().await.unwrap())
            .await
            .unwrap();
        assert_eq!(n, expected, "{actor:?}");
    }
    db.close().await;
}

/// Application connections never JIT-compile: our statements run in milliseconds, but row-level
/// security sub-queries give some of them estimated costs above `jit_above_cost`, and compiling
/// them cost seconds per execution (the outbox reader; ADR 0013).
#[sqlx::test(migrator = "freshplan_store_postgres::MIGRATOR")]
async fn application_connections_run_without_jit(pool_opts: PgPoolOptions, opts: PgConnectOptions) {
    let db = Db::new(pool_opts, opts).await;
    let mut tx = db.store().begin(&admin()).await.unwrap();
    let jit: String = sqlx::query_scalar("show jit")
        .fetch_one(tx.connection().await.unwrap())
        .await
        .unwrap();
    assert_eq!(jit, "off");
    drop(tx);
    db.close().await;
}
