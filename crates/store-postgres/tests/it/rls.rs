//! Row-level security (SPEC §3): fail closed, territories, the sales scope, transaction-local
//! contexts, and no bypass through a superuser URL.

use std::collections::BTreeSet;

use sqlx::ConnectOptions as _;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use uuid::Uuid;

use freshplan_kernel::{Actor, Role, TerritoryId};
use freshplan_leads::access::{LeadFacts, can_read};
use freshplan_leads::activity::{Activity, ActivityType};
use freshplan_leads::ports::{LeadQuery, LeadStore, LeadTx, WriteError};
use freshplan_store_postgres::{PgLeadStore, app_pool_options, connect, connect_with};

use crate::helpers::{
    Db, NOW, admin, id, ids, lead, manager, rep, uid, viewer, with_collaborators,
};

const LEAD_TABLES: [&str; 6] = [
    "leads",
    "lead_collaborators",
    "activities",
    "idempotency_keys",
    "followups",
    "event_outbox",
];

/// rep-1 owns 1 (DE) and 4 (CH); rep-2 owns 2 (DE, rep-1 collaborates) and 3 (DE).
async fn seed_scopes(db: &Db) {
    db.seed(&[
        lead(1, "Eins", "DE", "rep-1"),
        with_collaborators(lead(2, "Zwei", "DE", "rep-2"), &["rep-1", "rep-9"]),
        lead(3, "Drei", "DE", "rep-2"),
        lead(4, "Vier", "CH", "rep-1"),
    ])
    .await;
    // A timeline entry, an idempotency key, a follow-up and an event on each lead, written
    // behind the policies' back.
    for n in 1..=4u128 {
        sqlx::query(
            "insert into activities (id, lead_id, territory_id, type, occurred_at, user_id, \
                                     meaningful_contact, created_at) \
             select $1, id, territory_id, 'NOTE', now(), 'x', false, now() from leads where id = $2",
        )
        .bind(Uuid::from_u128(n))
        .bind(id(n))
        .execute(&db.su)
        .await
        .unwrap();
        sqlx::query(
            "insert into followups (lead_id, territory_id, stage, status, processed_at) \
             select id, territory_id, 'T3', 'SENT', now() from leads where id = $1",
        )
        .bind(id(n))
        .execute(&db.su)
        .await
        .unwrap();
        sqlx::query(
            "insert into idempotency_keys (user_id, key, request_hash, lead_id, territory_id, created_at) \
             select owner_user_id, 'k' || $2, 'h', id, territory_id, now() from leads where id = $1",
        )
        .bind(id(n))
        .bind(n.to_string())
        .execute(&db.su)
        .await
        .unwrap();
        sqlx::query(
            "insert into event_outbox (event_id, source, type, payload) \
             values ($1, 'freshplan.leads', 'lead.created.v1', '{}')",
        )
        .bind(Uuid::from_u128(100 + n))
        .execute(&db.su)
        .await
        .unwrap();
    }
}

async fn visible_ids(tx: &mut freshplan_store_postgres::PgLeadTx, table: &str) -> Vec<Uuid> {
    let column = if table == "leads" { "id" } else { "lead_id" };
    sqlx::query_scalar(&format!("select distinct {column} from {table} order by 1"))
        .fetch_all(tx.connection().await.unwrap())
        .await
        .unwrap()
}

#[sqlx::test(migrator = "freshplan_store_postgres::MIGRATOR")]
async fn no_context_means_zero_rows(pool_opts: PgPoolOptions, opts: PgConnectOptions) {
    let db = Db::new(pool_opts, opts).await;
    seed_scopes(&db).await;
    for table in LEAD_TABLES {
        assert!(db.count(table).await > 0, "{table} is seeded");
        // Outside any transaction, as the application role.
        let n: i64 = sqlx::query_scalar(&format!("select count(*) from {table}"))
            .fetch_one(&db.app)
            .await
            .unwrap();
        assert_eq!(n, 0, "{table} without context");
        // In a transaction without context.
        let mut tx = db.app.begin().await.unwrap();
        let n: i64 = sqlx::query_scalar(&format!("select * from (select count(*) from {table}) c"))
            .fetch_one(&mut *tx)
            .await
            .unwrap();
        assert_eq!(n, 0, "{table} in a transaction without context");
    }
    // Nor can it write: an update touches nothing, an insert is refused.
    let touched = sqlx::query("update leads set company_name = 'x'")
        .execute(&db.app)
        .await
        .unwrap()
        .rows_affected();
    assert_eq!(touched, 0);
    let refused = sqlx::query(
        "insert into event_outbox (event_id, source, type, payload) values (gen_random_uuid(), 's', 't', '{}')",
    )
    .execute(&db.app)
    .await;
    assert!(refused.is_err(), "an outbox insert needs a context");
    db.close().await;
}

#[sqlx::test(migrator = "freshplan_store_postgres::MIGRATOR")]
async fn a_de_manager_cannot_read_ch_rows(pool_opts: PgPoolOptions, opts: PgConnectOptions) {
    let db = Db::new(pool_opts, opts).await;
    seed_scopes(&db).await;
    let store = db.store();
    let mut tx = store.begin(&manager(TerritoryId::De)).await.unwrap();
    // `select *` — no filter of ours, only the policy.
    let all: Vec<Uuid> = sqlx::query_scalar("select id from (select * from leads) l order by id")
        .fetch_all(tx.connection().await.unwrap())
        .await
        .unwrap();
    assert_eq!(all, vec![id(1), id(2), id(3)]);
    for table in ["activities", "followups", "lead_collaborators"] {
        assert!(
            !visible_ids(&mut tx, table).await.contains(&id(4)),
            "{table} leaks the CH lead"
        );
    }
    assert!(tx.get(id(4)).await.unwrap().is_none());
    assert!(tx.get(id(1)).await.unwrap().is_some());
    // Writing into CH is refused by the policy, not only by the domain.
    let touched = sqlx::query("update leads set company_name = 'x' where id = $1")
        .bind(id(4))
        .execute(tx.connection().await.unwrap())
        .await
        .unwrap()
        .rows_affected();
    assert_eq!(touched, 0);
    let refused = tx.insert(&lead(5, "Fünf", "CH", "manager-DE")).await;
    assert!(matches!(refused, Err(WriteError::Store(_))), "{refused:?}");
    drop(tx);
    // Moving a DE lead into CH is refused too (the new row fails WITH CHECK).
    let mut tx = store.begin(&manager(TerritoryId::De)).await.unwrap();
    let moved = sqlx::query("update leads set territory_id = 'CH' where id = $1")
        .bind(id(1))
        .execute(tx.connection().await.unwrap())
        .await;
    assert!(moved.is_err());
    drop(tx);
    // The CH manager sees exactly the CH lead.
    let mut tx = store.begin(&manager(TerritoryId::Ch)).await.unwrap();
    assert_eq!(visible_ids(&mut tx, "leads").await, vec![id(4)]);
    drop(tx);
    db.close().await;
}

#[sqlx::test(migrator = "freshplan_store_postgres::MIGRATOR")]
async fn sales_sees_only_owned_or_collaborating_leads(
    pool_opts: PgPoolOptions,
    opts: PgConnectOptions,
) {
    let db = Db::new(pool_opts, opts).await;
    seed_scopes(&db).await;
    let store = db.store();
    let mut tx = store.begin(&rep("rep-1")).await.unwrap();
    // 1 owned, 2 collaborating; 3 is rep-2's; 4 is rep-1's but in CH, where rep-1 does not work.
    for table in ["leads", "activities", "followups", "lead_collaborators"] {
        let expected = if table == "lead_collaborators" {
            vec![id(2)]
        } else {
            vec![id(1), id(2)]
        };
        assert_eq!(visible_ids(&mut tx, table).await, expected, "{table}");
    }
    // The collaborator sees the whole collaborator set of lead 2, not just its own row.
    let collaborators: Vec<String> =
        sqlx::query_scalar("select user_id from lead_collaborators order by user_id")
            .fetch_all(tx.connection().await.unwrap())
            .await
            .unwrap();
    assert_eq!(collaborators, ["rep-1", "rep-9"]);
    let two = tx.get(id(2)).await.unwrap().unwrap();
    assert_eq!(two.collaborators, [uid("rep-1"), uid("rep-9")].into());
    // Own idempotency keys only (rep-1's key on the CH lead is outside its territories).
    let keys: Vec<String> = sqlx::query_scalar("select key from idempotency_keys order by key")
        .fetch_all(tx.connection().await.unwrap())
        .await
        .unwrap();
    assert_eq!(keys, ["k1"]);
    // No event feed for sales.
    let events: i64 = sqlx::query_scalar("select count(*) from event_outbox")
        .fetch_one(tx.connection().await.unwrap())
        .await
        .unwrap();
    assert_eq!(events, 0);
    let page = tx.list(&LeadQuery::default()).await.unwrap();
    assert_eq!(ids(&page.items), vec![id(1), id(2)]);
    assert_eq!(page.total, 2);
    drop(tx);
    // rep-2 sees its own two.
    let mut tx = store.begin(&rep("rep-2")).await.unwrap();
    assert_eq!(visible_ids(&mut tx, "leads").await, vec![id(2), id(3)]);
    drop(tx);
    db.close().await;
}

#[sqlx::test(migrator = "freshplan_store_postgres::MIGRATOR")]
async fn writes_outside_the_scope_are_refused(pool_opts: PgPoolOptions, opts: PgConnectOptions) {
    let db = Db::new(pool_opts, opts).await;
    seed_scopes(&db).await;
    let store = db.store();
    // A viewer reads (and may lock) but cannot change a lead or log on it.
    let mut tx = store.begin(&viewer(TerritoryId::De)).await.unwrap();
    let mut one = tx.get(id(1)).await.unwrap().expect("a viewer reads");
    one.version += 1;
    assert!(matches!(
        tx.update(&one, 1).await,
        Err(WriteError::Store(_))
    ));
    drop(tx);
    let mut tx = store.begin(&viewer(TerritoryId::De)).await.unwrap();
    let note = Activity::system(
        Uuid::from_u128(9),
        id(1),
        ActivityType::Note,
        NOW,
        uid("viewer-DE"),
        None,
        serde_json::json!({}),
    );
    // The entry goes out with the next statement or the commit, which it fails.
    tx.insert_activity(&note).await.unwrap();
    assert!(tx.commit().await.is_err());
    // A sales rep cannot create a lead for somebody else.
    let mut tx = store.begin(&rep("rep-1")).await.unwrap();
    assert!(tx.insert(&lead(7, "Sieben", "DE", "rep-2")).await.is_err());
    drop(tx);
    // A collaborator logs on the lead (which touches it); a stranger cannot even see it.
    let mut tx = store.begin(&rep("rep-1")).await.unwrap();
    let mut two = tx.get(id(2)).await.unwrap().unwrap();
    let note = Activity::system(
        Uuid::from_u128(10),
        id(2),
        ActivityType::Note,
        NOW,
        uid("rep-1"),
        None,
        serde_json::json!({}),
    );
    tx.insert_activity(&note).await.unwrap();
    two.version += 1;
    tx.update(&two, 1).await.unwrap();
    tx.commit().await.unwrap();
    let mut tx = store.begin(&rep("rep-3")).await.unwrap();
    assert!(tx.get(id(2)).await.unwrap().is_none());
    drop(tx);
    db.close().await;
}

/// A matrix of actors × leads: what the database shows equals the domain's `can_read`.
#[sqlx::test(migrator = "freshplan_store_postgres::MIGRATOR")]
async fn database_visibility_equals_the_domain_access_policy(
    pool_opts: PgPoolOptions,
    opts: PgConnectOptions,
) {
    let db = Db::new(pool_opts, opts).await;
    let mut leads = Vec::new();
    let mut n = 0u128;
    for country in ["DE", "CH"] {
        for owner in ["u1", "u2"] {
            for collaborators in [&[][..], &["u1"][..], &["u3", "u2"][..]] {
                n += 1;
                leads.push(with_collaborators(
                    lead(n, &format!("Firma {n}"), country, owner),
                    collaborators,
                ));
            }
        }
    }
    // A released lead (EXPIRED, no owner).
    n += 1;
    let mut released = lead(n, "Frei", "DE", "u1");
    released.owner = None;
    leads.push(released);
    db.seed(&leads).await;

    let de = [TerritoryId::De];
    let ch = [TerritoryId::Ch];
    let both = TerritoryId::ALL;
    let actors = vec![
        admin(),
        Actor::system(),
        Actor::new(uid("m"), [Role::Manager], de),
        Actor::new(uid("m"), [Role::Manager], both),
        Actor::new(uid("v"), [Role::Viewer], ch),
        Actor::new(uid("u1"), [Role::Sales], de),
        Actor::new(uid("u1"), [Role::Sales], both),
        Actor::new(uid("u2"), [Role::Sales], ch),
        Actor::new(uid("u3"), [Role::Sales], de),
        Actor::new(uid("u3"), [Role::Sales, Role::Viewer], ch),
        Actor::new(uid("u1"), [Role::Sales], []),
        Actor::new(uid("s"), [Role::Service], both),
        Actor::new(uid("nobody"), [], both),
    ];
    let store = PgLeadStore::new(db.app.clone());
    for actor in &actors {
        let expected: BTreeSet<Uuid> = leads
            .iter()
            .filter(|l| {
                can_read(
                    actor,
                    &LeadFacts {
                        territory: l.territory,
                        owner: l.owner.as_ref(),
                        collaborators: &l.collaborators,
                    },
                )
            })
            .map(|l| l.id)
            .collect();
        let mut tx = store.begin(actor).await.unwrap();
        let seen: BTreeSet<Uuid> = visible_ids(&mut tx, "leads").await.into_iter().collect();
        assert_eq!(seen, expected, "{actor:?}");
        drop(tx);
    }
    db.close().await;
}

#[sqlx::test(migrator = "freshplan_store_postgres::MIGRATOR")]
async fn the_context_is_transaction_local_on_a_single_connection(
    pool_opts: PgPoolOptions,
    opts: PgConnectOptions,
) {
    let db = Db::new(pool_opts, opts.clone()).await;
    seed_scopes(&db).await;
    let one = app_pool_options(PgPoolOptions::new().max_connections(1))
        .connect_with(opts)
        .await
        .unwrap();
    let store = PgLeadStore::new(one.clone());
    let mut pids = BTreeSet::new();
    for round in 0..3 {
        for (who, expected) in [("rep-1", vec![id(1), id(2)]), ("rep-2", vec![id(2), id(3)])] {
            let mut tx = store.begin(&rep(who)).await.unwrap();
            let pid: i32 = sqlx::query_scalar("select pg_backend_pid()")
                .fetch_one(tx.connection().await.unwrap())
                .await
                .unwrap();
            pids.insert(pid);
            assert_eq!(visible_ids(&mut tx, "leads").await, expected, "{who}");
            let page = tx.list(&LeadQuery::default()).await.unwrap();
            assert_eq!(ids(&page.items), expected);
            // Alternate commit and rollback: neither may leave the identity behind.
            if round % 2 == 0 {
                tx.commit().await.unwrap();
            } else {
                drop(tx);
            }
            // The same connection, outside a transaction: no identity, no rows.
            let (user, visible): (Option<String>, i64) = sqlx::query_as(
                "select nullif(current_setting('freshplan.user_id', true), ''), \
                        (select count(*) from leads)",
            )
            .fetch_one(&one)
            .await
            .unwrap();
            assert_eq!((user, visible), (None, 0), "after {who}");
        }
    }
    assert_eq!(pids.len(), 1, "one connection served every transaction");
    one.close().await;
    db.close().await;
}

#[sqlx::test(migrator = "freshplan_store_postgres::MIGRATOR")]
async fn a_superuser_url_still_gets_rls_through_connect(
    pool_opts: PgPoolOptions,
    opts: PgConnectOptions,
) {
    let db = Db::new(pool_opts, opts.clone()).await;
    seed_scopes(&db).await;
    let url = opts.to_url_lossy();
    let via_url = connect(url.as_str(), 2).await.unwrap();
    let via_opts = connect_with(opts, 2).await.unwrap();
    for pool in [&via_url, &via_opts] {
        let (session_is_superuser, current, visible): (bool, String, i64) = sqlx::query_as(
            "select (select rolsuper from pg_roles where rolname = session_user), \
                    current_user::text, (select count(*) from leads)",
        )
        .fetch_one(pool)
        .await
        .unwrap();
        assert!(session_is_superuser, "the URL logs in as a superuser");
        assert_eq!(current, "freshplan_app");
        assert_eq!(visible, 0);
        let store = PgLeadStore::new(pool.clone());
        let mut tx = store.begin(&manager(TerritoryId::Ch)).await.unwrap();
        assert_eq!(visible_ids(&mut tx, "leads").await, vec![id(4)]);
        drop(tx);
        pool.close().await;
    }
    // Even a plain superuser pool handed to the store is switched per transaction.
    let store = PgLeadStore::new(db.su.clone());
    let mut tx = store.begin(&manager(TerritoryId::Ch)).await.unwrap();
    assert_eq!(visible_ids(&mut tx, "leads").await, vec![id(4)]);
    drop(tx);
    db.close().await;
}
