//! The feed and cursor, the notifier, checkpoints, retention and consumer semantics.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::PgListener;
use sqlx::{Connection as _, PgConnection};
use uuid::Uuid;

use freshplan_events_pg::{
    CHANNEL_DASHBOARD, CHANNEL_EVENTS, CommitSignal, ConsumerError, ConsumerMode, Cursor,
    EventConsumer, EventPipeline, FeedPage, OutboxEvent, checkpoint, head, purge_outbox, read_page,
};
use freshplan_kernel::{Actor, Role, TerritoryId, UserId};
use freshplan_leads::ports::{LeadStore as _, LeadTx as _};
use freshplan_store_postgres::PgLeadStore;

use crate::helpers::{
    DbRecorder, MemRecorder, TestDb, admin, assert_exactly_once_in_order, event, eventually, merge,
    produce, publish, recorded_count, test_config, total,
};

const WAIT: Duration = Duration::from_secs(30);

fn subjects(events: &[OutboxEvent]) -> Vec<String> {
    events
        .iter()
        .map(|e| e.event.subject.clone().unwrap_or_default())
        .collect()
}

#[tokio::test]
async fn the_feed_pages_in_commit_order_and_never_skips_a_late_commit() {
    let db = TestDb::new().await;
    let pool = db.app_pool(4).await;
    let store = PgLeadStore::new(pool.clone());
    for s in ["a", "b", "c"] {
        publish(&store, None, &event(s, 1)).await;
    }
    let mut deleted = event("d", 1);
    deleted.event_type = "lead.deleted.v1".into();
    publish(&store, None, &deleted).await;

    // Visibility waits for every older transaction on the cluster (other tests create databases
    // concurrently), so wait until all four are final before paging.
    settled(&pool, None, 4).await;
    // Pages of two, then nothing new: nextCursor stays.
    let p1 = read_page(&pool, &admin(), None, 2, None)
        .await
        .expect("page");
    assert_eq!(subjects(&p1.events), ["a", "b"]);
    assert_eq!(p1.next_cursor, p1.events[1].cursor);
    let p2 = read_page(&pool, &admin(), Some(p1.next_cursor), 2, None)
        .await
        .expect("page");
    assert_eq!(subjects(&p2.events), ["c", "d"]);
    let p3 = read_page(&pool, &admin(), Some(p2.next_cursor), 2, None)
        .await
        .expect("page");
    assert!(p3.events.is_empty());
    assert_eq!(
        p3.next_cursor, p2.next_cursor,
        "unchanged when nothing is new"
    );
    // The text form round-trips through `after`.
    let again = Cursor::parse(&p1.next_cursor.encode()).expect("cursor");
    assert_eq!(again, p1.next_cursor);
    // Type filter; limit clamped to 1..=1000.
    let only = read_page(&pool, &admin(), None, 0, Some("lead.deleted.v1"))
        .await
        .expect("page");
    assert_eq!(subjects(&only.events), ["d"]);
    // Row-level security: a sales rep's context reads nothing.
    let rep = Actor::new(
        UserId::parse("rep").expect("id"),
        [Role::Sales],
        [TerritoryId::De],
    );
    assert!(
        read_page(&pool, &rep, None, 100, None)
            .await
            .expect("page")
            .events
            .is_empty()
    );
    // A service context reads the feed.
    let service = Actor::new(UserId::parse("svc").expect("id"), [Role::Service], []);
    assert_eq!(
        read_page(&pool, &service, None, 100, None)
            .await
            .expect("page")
            .events
            .len(),
        4
    );

    // A late commit: `late` takes its txid and outbox id first, `early` commits after it.
    let from = head(&pool).await.expect("head");
    let mut late = store.begin(&admin()).await.expect("begin");
    late.append_event(&event("late", 1)).await.expect("append");
    late.connection().await.expect("the event is written");
    publish(&store, None, &event("early", 1)).await;
    let mut su = db.su().await;
    let ids: Vec<(String, i64)> = sqlx::query_as(
        "select subject, id from event_outbox where subject in ('late', 'early') order by id",
    )
    .fetch_all(&mut su)
    .await
    .expect("ids");
    // Only `early` is visible yet, and its id is the larger one: a reader remembering
    // `id > last_id` would now move past `late` for good.
    assert_eq!(ids.len(), 1);
    let before = read_page(&pool, &admin(), Some(from), 100, None)
        .await
        .expect("page");
    assert!(
        before.events.is_empty(),
        "nothing is final while `late` runs"
    );
    assert_eq!(before.next_cursor, from);
    late.commit().await.expect("commit");
    let ids: Vec<(String, i64)> = sqlx::query_as(
        "select subject, id from event_outbox where subject in ('late', 'early') order by id",
    )
    .fetch_all(&mut su)
    .await
    .expect("ids");
    assert_eq!(ids[0].0, "late", "late has the smaller id: {ids:?}");
    let after = settled(&pool, Some(from), 2).await;
    assert_eq!(
        subjects(&after.events),
        ["late", "early"],
        "commit-safe order"
    );

    su.close().await.ok();
    pool.close().await;
    db.drop().await;
}

/// The feed page after `after` once it holds at least `n` events (events become final when every
/// older transaction on the cluster has ended; other tests' transactions can delay that).
async fn settled(pool: &sqlx::PgPool, after: Option<Cursor>, n: usize) -> FeedPage {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let page = read_page(pool, &admin(), after, 100, None)
            .await
            .expect("page");
        if page.events.len() >= n || tokio::time::Instant::now() > deadline {
            return page;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn notifications_are_coalesced_and_carry_only_a_hint() {
    let db = TestDb::new().await;
    let pool = db.app_pool(4).await;
    let mut listener = PgListener::connect(&db.url).await.expect("listener");
    listener
        .listen_all([CHANNEL_EVENTS, CHANNEL_DASHBOARD])
        .await
        .expect("listen");
    let signal = CommitSignal::new();
    let mut config = test_config(&signal);
    config.notify_window = Duration::from_millis(300);
    let pipeline = EventPipeline::start(pool.clone(), &db.url, Vec::new(), config).expect("start");
    assert!(pipeline.wait_ready(Duration::from_secs(10)).await);

    // A burst of 200 signals, one of them for the dashboard.
    for i in 0..200 {
        signal.committed(i == 100);
    }
    let mut events = 0;
    let mut dashboard = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_millis(1500);
    while let Ok(Ok(n)) = tokio::time::timeout_at(deadline, listener.recv()).await {
        let hint: u64 = n.payload().parse().expect("the payload is a txid hint");
        assert!(hint > 0);
        match n.channel() {
            CHANNEL_EVENTS => events += 1,
            CHANNEL_DASHBOARD => dashboard += 1,
            other => panic!("unexpected channel {other}"),
        }
    }
    // The first signal is sent at once, the rest of the burst collapses into one more.
    assert!(
        (1..=2).contains(&events),
        "{events} NOTIFYs for 200 commits"
    );
    assert!(
        (1..=2).contains(&dashboard),
        "{dashboard} dashboard NOTIFYs"
    );

    pipeline.shutdown().await;
    drop(listener);
    pool.close().await;
    db.drop().await;
}

#[tokio::test]
async fn checkpoints_are_system_data_under_forced_rls() {
    let db = TestDb::new().await;
    let pool = db.app_pool(2).await;
    let mut su = db.su().await;
    let (enabled, forced): (bool, bool) = sqlx::query_as(
        "select relrowsecurity, relforcerowsecurity from pg_class
          where oid = 'event_consumer_checkpoints'::regclass",
    )
    .fetch_one(&mut su)
    .await
    .expect("pg_class");
    assert!(enabled && forced);
    sqlx::query(
        "insert into event_consumer_checkpoints (consumer, cursor_txid, cursor_id)
         values ('x', '5', 7)",
    )
    .execute(&mut su)
    .await
    .expect("insert as owner");
    // The application role without context sees none; an admin reads, cannot write.
    let seen: i64 = sqlx::query_scalar("select count(*) from event_consumer_checkpoints")
        .fetch_one(&pool)
        .await
        .expect("count");
    assert_eq!(seen, 0);
    let mut tx = freshplan_store_postgres::begin_as(&pool, &admin())
        .await
        .expect("begin");
    let seen: i64 = sqlx::query_scalar("select count(*) from event_consumer_checkpoints")
        .fetch_one(&mut *tx)
        .await
        .expect("count");
    assert_eq!(seen, 1);
    let updated = sqlx::query("update event_consumer_checkpoints set cursor_id = 9")
        .execute(&mut *tx)
        .await
        .expect("update")
        .rows_affected();
    assert_eq!(updated, 0, "only the system context moves checkpoints");
    drop(tx);
    assert_eq!(
        checkpoint(&pool, "x").await.expect("read"),
        Some(Cursor::new(5, 7))
    );
    assert_eq!(checkpoint(&pool, "y").await.expect("read"), None);
    su.close().await.ok();
    pool.close().await;
    db.drop().await;
}

#[tokio::test]
async fn retention_deletes_old_events_in_batches_up_to_the_protected_checkpoint() {
    let db = TestDb::new().await;
    let pool = db.app_pool(2).await;
    let store = PgLeadStore::new(pool.clone());
    for n in 1..=6 {
        publish(&store, None, &event("r", n)).await;
    }
    let mut su = db.su().await;
    // Events 1–5 are eight days old.
    sqlx::query(
        "update event_outbox
            set created_at = now() - interval '8 days'
                             - (10 - (payload->'data'->>'n')::int) * interval '1 minute'
          where (payload->'data'->>'n')::int <= 5",
    )
    .execute(&mut su)
    .await
    .expect("backdate");
    // Final once every older transaction on the cluster has ended (other tests run alongside).
    let all = settled(&pool, None, 6).await;
    let week = Duration::from_secs(7 * 24 * 3600);
    // Protected at event 3: 1–3 go (in batches of two), 4 and 5 stay for the consumer.
    let deleted = purge_outbox(&pool, week, Some(all.events[2].cursor), 2, 10)
        .await
        .expect("purge");
    assert_eq!(deleted, 3);
    // One batch at most: bounded work per run.
    let next = purge_outbox(&pool, week, None, 1, 1).await.expect("purge");
    assert_eq!(next, 1);
    let rest = read_page(&pool, &admin(), None, 100, None)
        .await
        .expect("page");
    let ns: Vec<i64> = rest
        .events
        .iter()
        .map(|e| e.event.data["n"].as_i64().unwrap_or(0))
        .collect();
    assert_eq!(ns, [5, 6], "the young event stays whatever the checkpoint");
    su.close().await.ok();
    pool.close().await;
    db.drop().await;
}

/// Fails the first attempt at every third event (after recording it, so the rollback must
/// take the record back).
struct Flaky {
    failed: Mutex<HashSet<Uuid>>,
    inner: DbRecorder,
}

#[async_trait]
impl EventConsumer for Flaky {
    fn name(&self) -> &'static str {
        self.inner.name
    }

    fn mode(&self) -> ConsumerMode {
        ConsumerMode::Transactional
    }

    async fn apply(
        &self,
        event: &OutboxEvent,
        tx: Option<&mut PgConnection>,
    ) -> Result<(), ConsumerError> {
        self.inner.apply(event, tx).await?;
        let n = event.event.data["n"].as_i64().unwrap_or(0);
        if n % 3 == 0 && self.failed.lock().expect("lock").insert(event.event.id) {
            return Err("transient failure".into());
        }
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn durable_consumers_resume_from_their_checkpoints_and_retries_apply_once() {
    let db = TestDb::new().await;
    let pool = db.app_pool(4).await;
    let store = PgLeadStore::new(pool.clone());
    // Events before the consumers exist: durable ones start from the oldest retained event.
    let mut expected = produce(&store, None, "lead", 3, 1, 10).await;

    let start = |signal: &CommitSignal, mailer: Arc<MemRecorder>| {
        let consumers: Vec<Arc<dyn EventConsumer>> = vec![
            Arc::new(DbRecorder {
                name: "projection",
                delay: Duration::ZERO,
            }),
            Arc::new(Flaky {
                failed: Mutex::new(HashSet::new()),
                inner: DbRecorder {
                    name: "flaky",
                    delay: Duration::ZERO,
                },
            }),
            mailer,
        ];
        EventPipeline::start(pool.clone(), &db.url, consumers, test_config(signal)).expect("start")
    };
    let signal = CommitSignal::new();
    let mailer = MemRecorder::new("mailer", ConsumerMode::AtLeastOnce, Duration::ZERO);
    let pipeline = start(&signal, mailer.clone());
    merge(
        &mut expected,
        produce(&store, Some(&signal), "lead", 3, 11, 10).await,
    );
    let n = total(&expected);
    eventually("first run applied everything", WAIT, || async {
        recorded_count(&db, "projection").await >= n
            && recorded_count(&db, "flaky").await >= n
            && mailer.count() >= n
    })
    .await;
    let stats = pipeline.consumer_stats();
    assert!(
        stats.iter().any(|s| s.name == "flaky" && s.errors >= 1),
        "the flaky consumer failed and was retried: {stats:?}"
    );
    pipeline.shutdown().await;

    // Events while no pipeline runs, then a new pipeline (a restarted app).
    merge(
        &mut expected,
        produce(&store, None, "lead", 3, 21, 10).await,
    );
    let signal = CommitSignal::new();
    let mailer_2 = MemRecorder::new("mailer", ConsumerMode::AtLeastOnce, Duration::ZERO);
    let pipeline = start(&signal, mailer_2.clone());
    let n = total(&expected);
    eventually("second run caught up", WAIT, || async {
        recorded_count(&db, "projection").await >= n
            && recorded_count(&db, "flaky").await >= n
            && mailer.count() + mailer_2.count() >= n
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_exactly_once_in_order("projection", &db.recorded("projection").await, &expected);
    assert_exactly_once_in_order("flaky", &db.recorded("flaky").await, &expected);
    let mut mailed = mailer.records();
    mailed.extend(mailer_2.records());
    assert_exactly_once_in_order("mailer (both runs)", &mailed, &expected);
    let last = db.recorded("projection").await.len();
    assert_eq!(last, n);
    assert!(
        checkpoint(&pool, "projection")
            .await
            .expect("checkpoint")
            .is_some_and(|c| c > Cursor::START)
    );

    pipeline.shutdown().await;
    pool.close().await;
    db.drop().await;
}

/// A backlog (what a follow-up run of 100k leads leaves) is read page by page at index speed:
/// each read checks the snapshot horizon once, not once per returned event (that check was a
/// sequential scan of the outbox per row: 500 scans of the whole table per page).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_backlog_is_delivered_at_index_speed() {
    const BACKLOG: usize = 20_000;
    let db = TestDb::new().await;
    let pool = db.app_pool(4).await;
    let events: Vec<_> = (0..BACKLOG)
        .map(|n| event("backlog", i64::try_from(n).expect("small") + 1))
        .collect();
    let mut su = PgConnection::connect(&db.url).await.expect("connect");
    sqlx::query(
        "insert into event_outbox (event_id, source, type, subject, territory_id, payload)
         select * from unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[],
                              $6::jsonb[])",
    )
    .bind(events.iter().map(|e| e.id).collect::<Vec<_>>())
    .bind(events.iter().map(|e| e.source.clone()).collect::<Vec<_>>())
    .bind(
        events
            .iter()
            .map(|e| e.event_type.clone())
            .collect::<Vec<_>>(),
    )
    .bind(events.iter().map(|e| e.subject.clone()).collect::<Vec<_>>())
    .bind(vec!["DE"; BACKLOG])
    .bind(
        events
            .iter()
            .map(|e| serde_json::to_value(e).expect("json"))
            .collect::<Vec<_>>(),
    )
    .execute(&mut su)
    .await
    .expect("backlog");
    su.close().await.ok();

    let signal = CommitSignal::new();
    let reader = MemRecorder::new("backlog", ConsumerMode::AtLeastOnce, Duration::ZERO);
    let pipeline = EventPipeline::start(
        pool.clone(),
        &db.url,
        vec![reader.clone() as Arc<dyn EventConsumer>],
        freshplan_events_pg::PipelineConfig {
            page_size: 500,
            ..test_config(&signal)
        },
    )
    .expect("start");
    // 40 pages. With the per-row horizon check each page cost ≈ 500 × a scan of 20k rows
    // (seconds per page on this machine); at index speed the whole backlog takes well under 1 s.
    eventually("the backlog delivered", Duration::from_secs(15), || async {
        reader.count() >= BACKLOG
    })
    .await;
    let seen = reader.records();
    assert_eq!(seen.len(), BACKLOG, "exactly once");
    assert!(
        seen.iter()
            .enumerate()
            .all(|(i, (s, n))| s == "backlog" && usize::try_from(*n).ok() == Some(i + 1)),
        "in commit order"
    );
    pipeline.shutdown().await;
    pool.close().await;
    db.drop().await;
}
