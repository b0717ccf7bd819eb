//! `PgLeadStore::with_after_commit`: the hook sees exactly the events of a unit of work that
//! committed — once, in append order — and nothing of one that rolled back, was dropped or whose
//! commit failed.

use std::sync::{Arc, Mutex};

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use uuid::Uuid;

use freshplan_kernel::{CloudEvent, KeyBasis};
use freshplan_leads::ports::{LeadStore, LeadTx};
use freshplan_store_postgres::AfterCommit;

use crate::helpers::{Db, NOW, id, lead, rep};

fn event(n: u128, event_type: &str) -> CloudEvent {
    CloudEvent::new(
        Uuid::from_u128(n),
        CloudEvent::SOURCE_LEADS,
        event_type,
        NOW,
        Some(id(n).to_string()),
        KeyBasis::Version(1),
        serde_json::json!({"territory": "DE"}),
    )
    .unwrap()
}

/// A hook that records each call's event ids, and what it recorded.
fn recorder() -> (AfterCommit, Arc<Mutex<Vec<Vec<Uuid>>>>) {
    let calls = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&calls);
    let hook: AfterCommit = Arc::new(move |events: &[CloudEvent]| {
        seen.lock()
            .unwrap()
            .push(events.iter().map(|e| e.id).collect());
    });
    (hook, calls)
}

#[sqlx::test(migrator = "freshplan_store_postgres::MIGRATOR")]
async fn the_after_commit_hook_fires_once_after_commit_and_never_otherwise(
    pool_opts: PgPoolOptions,
    opts: PgConnectOptions,
) {
    let db = Db::new(pool_opts, opts).await;
    // A commit that fails: a deferred constraint trigger refuses one event type when the
    // transaction commits (not when the row is inserted).
    sqlx::raw_sql(
        "create function test_refuse_at_commit() returns trigger language plpgsql as $$
         begin
           if new.type = 'test.refused.v1' then raise exception 'refused at commit'; end if;
           return null;
         end $$;
         create constraint trigger refuse_at_commit after insert on event_outbox
           deferrable initially deferred for each row execute function test_refuse_at_commit();",
    )
    .execute(&db.su)
    .await
    .unwrap();
    let (hook, calls) = recorder();
    let store = db.store().with_after_commit(hook);
    let calls_now = || calls.lock().unwrap().clone();

    // Dropped (rolled back) after appending: no call.
    let mut tx = store.begin(&rep("rep-1")).await.unwrap();
    tx.insert(&lead(1, "Eins", "DE", "rep-1")).await.unwrap();
    tx.append_event(&event(1, "lead.created.v1")).await.unwrap();
    drop(tx);
    assert_eq!(calls_now(), Vec::<Vec<Uuid>>::new(), "dropped");

    // The commit itself fails: no call, and nothing was written.
    let mut tx = store.begin(&rep("rep-1")).await.unwrap();
    tx.append_event(&event(2, "lead.created.v1")).await.unwrap();
    tx.append_event(&event(3, "test.refused.v1")).await.unwrap();
    let failed = tx.commit().await;
    assert!(failed.is_err(), "the deferred trigger refuses the commit");
    assert_eq!(calls_now(), Vec::<Vec<Uuid>>::new(), "failed commit");
    assert_eq!(db.count("event_outbox").await, 0);

    // A unit of work without events: no call.
    let tx = store.begin(&rep("rep-1")).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(calls_now(), Vec::<Vec<Uuid>>::new(), "no events");

    // Committed: exactly one call with the appended events, in order, and they are in the
    // outbox by then.
    let mut tx = store.begin(&rep("rep-1")).await.unwrap();
    tx.insert(&lead(4, "Vier", "DE", "rep-1")).await.unwrap();
    tx.append_event(&event(4, "lead.created.v1")).await.unwrap();
    tx.append_event(&event(5, "lead.updated.v1")).await.unwrap();
    assert_eq!(calls_now(), Vec::<Vec<Uuid>>::new(), "not before commit");
    tx.commit().await.unwrap();
    assert_eq!(
        calls_now(),
        vec![vec![Uuid::from_u128(4), Uuid::from_u128(5)]]
    );
    assert_eq!(db.count("event_outbox").await, 2);

    // The next unit of work starts with an empty list (no carry-over from the last one).
    let mut tx = store.begin(&rep("rep-1")).await.unwrap();
    tx.append_event(&event(6, "lead.deleted.v1")).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(
        calls_now(),
        vec![
            vec![Uuid::from_u128(4), Uuid::from_u128(5)],
            vec![Uuid::from_u128(6)]
        ]
    );

    // A store without a hook keeps working as before.
    let plain = db.store();
    let mut tx = plain.begin(&rep("rep-1")).await.unwrap();
    tx.append_event(&event(7, "lead.updated.v1")).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(calls_now().len(), 2);
    assert_eq!(db.count("event_outbox").await, 4);
    db.close().await;
}
