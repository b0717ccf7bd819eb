//! Fault tests (issue 4): each asserts that every consumer applied every event exactly once, in
//! order per lead — a transactional consumer (effect + checkpoint in one transaction, recorded
//! in `test_applied`) and in-memory consumers (dedupe + position).

use std::sync::Arc;
use std::time::Duration;

use freshplan_events_pg::{
    CommitSignal, ConsumerMode, EventConsumer, EventPipeline, LISTENER_APPLICATION_NAME,
};
use freshplan_leads::ports::{LeadStore as _, LeadTx as _};
use freshplan_store_postgres::PgLeadStore;

use crate::helpers::{
    DbRecorder, MemRecorder, TestDb, admin, assert_exactly_once_in_order, event, eventually, merge,
    produce, recorded_count, test_config, total,
};
use crate::pg::PrivatePg;

const WAIT: Duration = Duration::from_secs(60);

/// Terminates this database's listener backend(s); returns how many.
async fn kill_listener(db: &TestDb) -> i64 {
    let mut su = db.su().await;
    let n: i64 = sqlx::query_scalar(
        "select count(*) filter (where pg_terminate_backend(pid))
           from pg_stat_activity
          where application_name = $1 and datname = current_database()",
    )
    .bind(LISTENER_APPLICATION_NAME)
    .fetch_one(&mut su)
    .await
    .expect("terminate");
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listener_backend_killed_mid_stream() {
    let db = TestDb::new().await;
    let pool = db.app_pool(4).await;
    let signal = CommitSignal::new();
    let mem = MemRecorder::new("mem", ConsumerMode::Ephemeral, Duration::ZERO);
    let consumers: Vec<Arc<dyn EventConsumer>> = vec![
        mem.clone(),
        Arc::new(DbRecorder {
            name: "projection",
            delay: Duration::ZERO,
        }),
    ];
    let pipeline = EventPipeline::start(pool.clone(), &db.url, consumers, test_config(&signal))
        .expect("start");
    assert!(pipeline.wait_ready(Duration::from_secs(10)).await);

    let store = PgLeadStore::new(pool.clone());
    let producer = {
        let (store, signal) = (store.clone(), signal.clone());
        tokio::spawn(async move { produce(&store, Some(&signal), "lead", 8, 1, 40).await })
    };
    let mut killed = 0;
    for round in 1..=3 {
        tokio::time::sleep(Duration::from_millis(150)).await;
        killed += kill_listener(&db).await;
        eventually("the listener reconnects", WAIT, || async {
            let s = pipeline.listener();
            s.connected && s.reconnects >= round
        })
        .await;
    }
    let expected = producer.await.expect("producer");
    assert_eq!(killed, 3, "each round found the listener's backend");

    let n = total(&expected);
    eventually("every event applied", WAIT, || async {
        mem.count() >= n && recorded_count(&db, "projection").await >= n
    })
    .await;
    // Let stragglers (duplicates, if any) arrive before judging.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_exactly_once_in_order("mem", &mem.records(), &expected);
    assert_exactly_once_in_order("projection", &db.recorded("projection").await, &expected);
    assert!(pipeline.listener().reconnects >= 3);

    pipeline.shutdown().await;
    pool.close().await;
    db.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_restarted_mid_stream() {
    let server = tokio::task::spawn_blocking(PrivatePg::start)
        .await
        .expect("private server");
    let db = TestDb::on(&server.url()).await;
    let pool = db.app_pool(4).await;
    let signal = CommitSignal::new();
    let mem = MemRecorder::new("mem", ConsumerMode::Ephemeral, Duration::ZERO);
    let at_least_once = MemRecorder::new(
        "mailer",
        ConsumerMode::AtLeastOnce,
        Duration::from_millis(1),
    );
    let consumers: Vec<Arc<dyn EventConsumer>> = vec![
        mem.clone(),
        at_least_once.clone(),
        Arc::new(DbRecorder {
            name: "projection",
            // Slow enough that the restart lands while it is still applying.
            delay: Duration::from_millis(5),
        }),
    ];
    let pipeline = EventPipeline::start(pool.clone(), &db.url, consumers, test_config(&signal))
        .expect("start");
    assert!(pipeline.wait_ready(Duration::from_secs(10)).await);
    let store = PgLeadStore::new(pool.clone());

    let mut expected = produce(&store, Some(&signal), "lead", 6, 1, 25).await;
    let server = tokio::task::spawn_blocking(move || {
        server.restart();
        server
    })
    .await
    .expect("restart");
    eventually(
        "the listener reconnects after the restart",
        WAIT,
        || async {
            let s = pipeline.listener();
            s.connected && s.reconnects >= 1
        },
    )
    .await;
    merge(
        &mut expected,
        produce(&store, Some(&signal), "lead", 6, 26, 25).await,
    );

    let n = total(&expected);
    eventually("every event applied", WAIT, || async {
        mem.count() >= n
            && at_least_once.count() >= n
            && recorded_count(&db, "projection").await >= n
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_exactly_once_in_order("mem", &mem.records(), &expected);
    assert_exactly_once_in_order("mailer", &at_least_once.records(), &expected);
    assert_exactly_once_in_order("projection", &db.recorded("projection").await, &expected);

    pipeline.shutdown().await;
    pool.close().await;
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_held_open_is_waited_for_then_delivered_first() {
    let db = TestDb::new().await;
    let pool = db.app_pool(6).await;
    let signal = CommitSignal::new();
    let mem = MemRecorder::new("mem", ConsumerMode::Ephemeral, Duration::ZERO);
    let consumers: Vec<Arc<dyn EventConsumer>> = vec![
        mem.clone(),
        Arc::new(DbRecorder {
            name: "projection",
            delay: Duration::ZERO,
        }),
    ];
    let pipeline = EventPipeline::start(pool.clone(), &db.url, consumers, test_config(&signal))
        .expect("start");
    assert!(pipeline.wait_ready(Duration::from_secs(10)).await);
    let store = PgLeadStore::new(pool.clone());

    // An old transaction appends its event, writes it (the store sends pending rows with the
    // next statement) and stays open.
    let mut old = store.begin(&admin()).await.expect("begin");
    old.append_event(&event("late", 1)).await.expect("append");
    old.connection().await.expect("the event is written");
    // Younger transactions commit (and signal) after it.
    let mut expected = produce(&store, Some(&signal), "lead", 5, 1, 10).await;
    let mut su = db.su().await;
    let committed: i64 = sqlx::query_scalar("select count(*) from event_outbox")
        .fetch_one(&mut su)
        .await
        .expect("count");
    assert_eq!(
        committed, 50,
        "the younger events are committed and visible"
    );
    // The cursor waits: nothing younger than the open transaction is delivered.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(mem.count(), 0, "delivered past a running older transaction");
    assert_eq!(recorded_count(&db, "projection").await, 0);

    // It commits late, without a signal: the reader's short re-poll finds it.
    old.commit().await.expect("commit");
    expected.insert("late".to_owned(), 1);
    let n = total(&expected);
    eventually("every event applied", WAIT, || async {
        mem.count() >= n && recorded_count(&db, "projection").await >= n
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let records = mem.records();
    assert_eq!(
        records[0],
        ("late".to_owned(), 1),
        "commit order by txid: the old one first"
    );
    assert_exactly_once_in_order("mem", &records, &expected);
    let projected = db.recorded("projection").await;
    assert_eq!(projected[0], ("late".to_owned(), 1));
    assert_exactly_once_in_order("projection", &projected, &expected);

    drop(su);
    pipeline.shutdown().await;
    pool.close().await;
    db.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_slower_than_the_producer_loses_nothing() {
    let db = TestDb::new().await;
    let pool = db.app_pool(6).await;
    let signal = CommitSignal::new();
    let fast = MemRecorder::new("fast", ConsumerMode::Ephemeral, Duration::ZERO);
    let slow = MemRecorder::new("slow", ConsumerMode::Ephemeral, Duration::from_millis(3));
    let slow_mailer = MemRecorder::new(
        "slow-mailer",
        ConsumerMode::AtLeastOnce,
        Duration::from_millis(2),
    );
    let consumers: Vec<Arc<dyn EventConsumer>> = vec![
        fast.clone(),
        slow.clone(),
        slow_mailer.clone(),
        Arc::new(DbRecorder {
            name: "slow-projection",
            delay: Duration::from_millis(2),
        }),
    ];
    let mut config = test_config(&signal);
    config.channel_capacity = 4;
    config.batch_size = 3;
    let pipeline = EventPipeline::start(pool.clone(), &db.url, consumers, config).expect("start");
    assert!(pipeline.wait_ready(Duration::from_secs(10)).await);
    // The durable consumers start behind (from their checkpoints); wait until they have joined
    // the live stream, so that their channels are what fills up below.
    eventually("the durable consumers are live", WAIT, || async {
        let reader = pipeline.listener().position;
        pipeline
            .consumer_stats()
            .iter()
            .filter(|s| s.name.starts_with("slow-"))
            .all(|s| s.position.is_some() && s.position >= reader)
    })
    .await;
    let store = PgLeadStore::new(pool.clone());

    let expected = produce(&store, Some(&signal), "lead", 6, 1, 50).await;
    let n = total(&expected);
    eventually("every event applied", WAIT, || async {
        fast.count() >= n
            && slow.count() >= n
            && slow_mailer.count() >= n
            && recorded_count(&db, "slow-projection").await >= n
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_exactly_once_in_order("fast", &fast.records(), &expected);
    assert_exactly_once_in_order("slow", &slow.records(), &expected);
    assert_exactly_once_in_order("slow-mailer", &slow_mailer.records(), &expected);
    assert_exactly_once_in_order(
        "slow-projection",
        &db.recorded("slow-projection").await,
        &expected,
    );
    let stats = pipeline.consumer_stats();
    let lags = |name: &str| stats.iter().find(|s| s.name == name).map_or(0, |s| s.lags);
    assert!(
        lags("slow") >= 1,
        "the slow consumer's channel filled up: {stats:?}"
    );
    assert!(lags("slow-projection") >= 1, "{stats:?}");

    pipeline.shutdown().await;
    pool.close().await;
    db.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_each_receive_every_event() {
    let db = TestDb::new().await;
    let replicas = [
        ("a", Duration::from_secs(2)),
        ("b", Duration::from_secs(120)),
    ];
    let mut running = Vec::new();
    for (_, poll) in replicas {
        let pool = db.app_pool(4).await;
        let signal = CommitSignal::new();
        let mem = MemRecorder::new("mem", ConsumerMode::Ephemeral, Duration::ZERO);
        let consumers: Vec<Arc<dyn EventConsumer>> = vec![
            mem.clone(),
            // The same durable consumer on both replicas: applied once between them.
            Arc::new(DbRecorder {
                name: "shared-projection",
                delay: Duration::ZERO,
            }),
        ];
        let mut config = test_config(&signal);
        // Replica b would poll only after two minutes: it learns of a's commits by NOTIFY.
        config.poll_interval = poll;
        let pipeline =
            EventPipeline::start(pool.clone(), &db.url, consumers, config).expect("start");
        assert!(pipeline.wait_ready(Duration::from_secs(10)).await);
        running.push((pool, signal, mem, pipeline));
    }
    // Only replica a's writer commits (and signals its own notifier).
    let store = PgLeadStore::new(running[0].0.clone());
    let expected = produce(&store, Some(&running[0].1), "lead", 6, 1, 30).await;
    let n = total(&expected);
    eventually(
        "both replicas applied every event",
        Duration::from_secs(30),
        || async {
            running.iter().all(|(_, _, mem, _)| mem.count() >= n)
                && recorded_count(&db, "shared-projection").await >= n
        },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    for ((name, _), (_, _, mem, _)) in replicas.iter().zip(&running) {
        assert_exactly_once_in_order(&format!("replica {name}"), &mem.records(), &expected);
    }
    assert_exactly_once_in_order(
        "shared-projection",
        &db.recorded("shared-projection").await,
        &expected,
    );
    for (pool, _, _, pipeline) in running {
        pipeline.shutdown().await;
        pool.close().await;
    }
    db.drop().await;
}
