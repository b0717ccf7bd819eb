//! Databases, producers and recording consumers for the tests.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::json;
use sqlx::{Connection as _, PgConnection, PgPool};
use time::OffsetDateTime;
use uuid::Uuid;

use freshplan_events_pg::{
    CommitSignal, ConsumerError, ConsumerMode, EventConsumer, OutboxEvent, PipelineConfig,
};
use freshplan_kernel::{Actor, CloudEvent, KeyBasis, Role, UserId};
use freshplan_leads::ports::{LeadStore as _, LeadTx as _};
use freshplan_store_postgres::PgLeadStore;

/// The server the tests use (`DATABASE_URL`, as for `#[sqlx::test]`, else the local default).
pub(crate) fn admin_url() -> String {
    #[allow(clippy::disallowed_methods)] // tests read where their database is
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// A fresh, migrated database with the recording table; dropped by [`TestDb::drop`].
pub(crate) struct TestDb {
    pub(crate) url: String,
    admin_url: String,
}

impl TestDb {
    pub(crate) async fn new() -> TestDb {
        TestDb::on(&admin_url()).await
    }

    /// A fresh database on the server of `admin_url`.
    pub(crate) async fn on(admin_url: &str) -> TestDb {
        let url = freshplan_store_postgres::testing::fresh_database(admin_url)
            .await
            .expect("fresh database");
        freshplan_store_postgres::migrate(&url)
            .await
            .expect("migrate");
        let mut conn = PgConnection::connect(&url).await.expect("connect");
        sqlx::raw_sql(
            "create table test_applied (
                 seq      bigserial primary key,
                 consumer text   not null,
                 event_id uuid   not null,
                 subject  text   not null,
                 n        bigint not null
             );
             grant select, insert on test_applied to freshplan_app;
             grant usage on sequence test_applied_seq_seq to freshplan_app;",
        )
        .execute(&mut conn)
        .await
        .expect("recording table");
        conn.close().await.expect("close");
        TestDb {
            url,
            admin_url: admin_url.to_owned(),
        }
    }

    /// An application pool (role `freshplan_app`).
    pub(crate) async fn app_pool(&self, size: u32) -> PgPool {
        freshplan_store_postgres::connect(&self.url, size)
            .await
            .expect("app pool")
    }

    /// A superuser connection (bypasses row-level security).
    pub(crate) async fn su(&self) -> PgConnection {
        PgConnection::connect(&self.url).await.expect("connect")
    }

    /// What the transactional recorder `consumer` applied, in order: `(subject, n)`.
    pub(crate) async fn recorded(&self, consumer: &str) -> Vec<(String, i64)> {
        let mut conn = self.su().await;
        let rows =
            sqlx::query_as("select subject, n from test_applied where consumer = $1 order by seq")
                .bind(consumer)
                .fetch_all(&mut conn)
                .await
                .expect("recorded");
        conn.close().await.ok();
        rows
    }

    /// Drops the database (every pool on it must be closed).
    pub(crate) async fn drop(self) {
        let name = self.url.rsplit('/').next().unwrap_or_default().to_owned();
        let name = name.split('?').next().unwrap_or_default().to_owned();
        if let Ok(mut conn) = PgConnection::connect(&self.admin_url).await {
            let _ = sqlx::query(&format!("drop database if exists {name} with (force)"))
                .execute(&mut conn)
                .await;
            conn.close().await.ok();
        }
    }
}

/// Fast timings for tests: short windows and polls, small pages and channels (so the paging and
/// lag paths run), no retention job.
pub(crate) fn test_config(signal: &CommitSignal) -> PipelineConfig {
    init_logs();
    PipelineConfig {
        notify_window: Duration::from_millis(20),
        poll_interval: Duration::from_secs(2),
        blocked_poll_min: Duration::from_millis(10),
        blocked_poll_max: Duration::from_millis(200),
        ping_interval: Duration::from_secs(1),
        ping_timeout: Duration::from_secs(2),
        query_timeout: Duration::from_secs(10),
        connect_timeout: Duration::from_secs(5),
        reconnect_min: Duration::from_millis(50),
        reconnect_max: Duration::from_millis(500),
        page_size: 50,
        batch_size: 20,
        channel_capacity: 64,
        retry_min: Duration::from_millis(20),
        retry_max: Duration::from_millis(500),
        retention: None,
        stats_interval: Duration::from_millis(200),
        ..PipelineConfig::default()
    }
    .with_signal(signal.clone())
}

/// Logs of the pipeline in the test output (`RUST_LOG=freshplan_events_pg=debug` to see more).
pub(crate) fn init_logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_test_writer()
        .try_init();
}

pub(crate) fn admin() -> Actor {
    Actor::new(UserId::parse("admin").expect("user id"), [Role::Admin], [])
}

/// The event number `n` of lead `subject` (the payload carries `n`).
pub(crate) fn event(subject: &str, n: i64) -> CloudEvent {
    CloudEvent::new(
        Uuid::now_v7(),
        CloudEvent::SOURCE_LEADS,
        "lead.updated.v1",
        OffsetDateTime::now_utc(),
        Some(subject.to_owned()),
        KeyBasis::Version(n),
        json!({"leadId": subject, "territory": "DE", "version": n, "n": n}),
    )
    .expect("event")
}

/// Commits `event` through the real outbox writer (`PgLeadTx::append_event`), then signals.
pub(crate) async fn publish(
    store: &PgLeadStore,
    signal: Option<&CommitSignal>,
    event: &CloudEvent,
) {
    let mut tx = store.begin(&admin()).await.expect("begin");
    tx.append_event(event).await.expect("append");
    tx.commit().await.expect("commit");
    if let Some(s) = signal {
        s.committed(freshplan_leads::events::moves_dashboard(event));
    }
}

/// `leads` producers in parallel, each committing `per_lead` events for its lead one after
/// another (numbered from `first`). Returns the expected `(subject → last n)`.
pub(crate) async fn produce(
    store: &PgLeadStore,
    signal: Option<&CommitSignal>,
    prefix: &str,
    leads: usize,
    first: i64,
    per_lead: i64,
) -> BTreeMap<String, i64> {
    let mut tasks = Vec::new();
    for k in 0..leads {
        let store = store.clone();
        let signal = signal.cloned();
        let subject = format!("{prefix}-{k}");
        tasks.push(tokio::spawn(async move {
            for n in first..first + per_lead {
                publish(&store, signal.as_ref(), &event(&subject, n)).await;
            }
            (subject, first + per_lead - 1)
        }));
    }
    let mut expected = BTreeMap::new();
    for t in tasks {
        let (s, last) = t.await.expect("producer");
        expected.insert(s, last);
    }
    expected
}

/// Merges expectations of several production rounds.
pub(crate) fn merge(a: &mut BTreeMap<String, i64>, b: BTreeMap<String, i64>) {
    for (k, v) in b {
        let e = a.entry(k).or_insert(0);
        *e = (*e).max(v);
    }
}

/// Asserts that `records` holds, per subject, exactly `1..=last` in that order: every event
/// applied exactly once, in order per lead.
pub(crate) fn assert_exactly_once_in_order(
    who: &str,
    records: &[(String, i64)],
    expected: &BTreeMap<String, i64>,
) {
    let mut by_subject: BTreeMap<&str, Vec<i64>> = BTreeMap::new();
    for (s, n) in records {
        by_subject.entry(s.as_str()).or_default().push(*n);
    }
    assert_eq!(
        by_subject.keys().copied().collect::<Vec<_>>(),
        expected.keys().map(String::as_str).collect::<Vec<_>>(),
        "{who}: subjects"
    );
    for (subject, last) in expected {
        let got = &by_subject[subject.as_str()];
        let want: Vec<i64> = (1..=*last).collect();
        assert_eq!(
            got, &want,
            "{who}: events of {subject} (exactly once, in order)"
        );
    }
}

/// Polls `check` until it returns true or `limit` passes; panics with `what` then.
pub(crate) async fn eventually<F, Fut>(what: &str, limit: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if check().await {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The number of events in `expected`.
pub(crate) fn total(expected: &BTreeMap<String, i64>) -> usize {
    expected.values().map(|n| *n as usize).sum()
}

fn subject_and_n(e: &OutboxEvent) -> (String, i64) {
    (
        e.event.subject.clone().unwrap_or_default(),
        e.event.data["n"].as_i64().unwrap_or(-1),
    )
}

/// A transactional consumer: records `(subject, n)` into `test_applied` in the checkpoint's
/// transaction (exactly-once effect). Optionally slow.
pub(crate) struct DbRecorder {
    pub(crate) name: &'static str,
    pub(crate) delay: Duration,
}

#[async_trait]
impl EventConsumer for DbRecorder {
    fn name(&self) -> &'static str {
        self.name
    }

    fn mode(&self) -> ConsumerMode {
        ConsumerMode::Transactional
    }

    async fn apply(
        &self,
        event: &OutboxEvent,
        tx: Option<&mut PgConnection>,
    ) -> Result<(), ConsumerError> {
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
        let tx = tx.ok_or("a transactional consumer gets the transaction")?;
        let (subject, n) = subject_and_n(event);
        sqlx::query(
            "insert into test_applied (consumer, event_id, subject, n) values ($1, $2, $3, $4)",
        )
        .bind(self.name)
        .bind(event.event.id)
        .bind(subject)
        .bind(n)
        .execute(tx)
        .await?;
        Ok(())
    }
}

/// An in-memory consumer (ephemeral or at-least-once): records `(subject, n)` in a vector.
/// Optionally slow.
pub(crate) struct MemRecorder {
    pub(crate) name: &'static str,
    pub(crate) mode: ConsumerMode,
    pub(crate) delay: Duration,
    pub(crate) seen: Mutex<Vec<(String, i64)>>,
}

impl MemRecorder {
    pub(crate) fn new(name: &'static str, mode: ConsumerMode, delay: Duration) -> Arc<MemRecorder> {
        Arc::new(MemRecorder {
            name,
            mode,
            delay,
            seen: Mutex::new(Vec::new()),
        })
    }

    pub(crate) fn records(&self) -> Vec<(String, i64)> {
        self.seen.lock().expect("lock").clone()
    }

    pub(crate) fn count(&self) -> usize {
        self.seen.lock().expect("lock").len()
    }
}

#[async_trait]
impl EventConsumer for MemRecorder {
    fn name(&self) -> &'static str {
        self.name
    }

    fn mode(&self) -> ConsumerMode {
        self.mode
    }

    async fn apply(
        &self,
        event: &OutboxEvent,
        _tx: Option<&mut PgConnection>,
    ) -> Result<(), ConsumerError> {
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
        self.seen.lock().expect("lock").push(subject_and_n(event));
        Ok(())
    }
}

/// Counts rows of `test_applied` for `consumer`.
pub(crate) async fn recorded_count(db: &TestDb, consumer: &str) -> usize {
    db.recorded(consumer).await.len()
}
