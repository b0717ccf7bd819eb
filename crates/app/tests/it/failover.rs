//! PostgreSQL failover under load (issue 13): a primary and a synchronous hot standby of the
//! test's own ([`crate::pg_pair`]), two `freshplan serve` replicas connected through one endpoint
//! ([`crate::pg_proxy`], re-pointed after the promotion as a Kubernetes Service or HAProxy in
//! front of Patroni/CloudNativePG is), and a steady mixed load: lead creates (with
//! `Idempotency-Key`), patches (with `If-Match`) and activities on both replicas, a follow-up run
//! with mail delivery to a real SMTP server, an SSE client on each replica and a consumer of the
//! event feed. The primary is killed with SIGKILL (every process of it at once), the standby
//! promoted, the endpoint re-pointed. Then:
//! - every write answered 2xx is on the new primary, unchanged; a write without an answer
//!   committed once or not at all (a create retried with its `Idempotency-Key` yields one lead);
//! - every event after the starting cursor reaches both SSE clients and the feed consumer
//!   exactly once, in commit order per lead, and the cursor stays valid across the promotion
//!   (the new primary's `xid8` continues from the replayed WAL);
//! - every follow-up mail reaches the SMTP server exactly once, the interrupted run's leads are
//!   finished by a later run without doubling;
//! - during the outage requests fail fast with 503 problems (within [`ANSWER_BOUND`]),
//!   `/health/ready` answers 503, and both replicas write again within [`RECOVERY_BOUND`] of the
//!   promotion without a restart.
//!
//! The figures are printed (`cargo nextest run -p freshplan-app --no-capture failover`).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mail_parser::MessageParser;
use reqwest::Client;
use serde_json::{Value, json};
use time::OffsetDateTime;

use freshplan_events_pg::Cursor;
use freshplan_mail_smtp::testing::Sink;

use crate::followup_replicas::{
    MAIL_FROM, base, clock_env, clock_offset, get_json, outbox, seed_due_leads, tally, wait_until,
};
use crate::helpers::*;
use crate::pg_pair::{PgPair, Replication};
use crate::pg_proxy::PgProxy;
use crate::process::Serve;
use crate::sse_client::{Item, SseClient};

/// Due leads whose T+3 the follow-up run sends.
const DUE_LEADS: usize = 1500;
/// Writers (each one unit after the other: create, patch, activity), half on each replica.
const WRITERS: usize = 4;
/// How long the primary stays dead before the standby is promoted (failure detection).
const OUTAGE: Duration = Duration::from_secs(2);
/// The longest any request may take to be answered during the outage: the pool's acquire
/// timeout (3 s) and a margin.
const ANSWER_BOUND: Duration = Duration::from_secs(5);
/// Both replicas write again within this time of the promotion, without a restart.
const RECOVERY_BOUND: Duration = Duration::from_secs(10);
/// Load after the recovery, before the writers stop.
const AFTER: Duration = Duration::from_secs(3);

/// A primary and its standby, a fresh database on the primary, and the service's one endpoint
/// (a proxy to the primary, re-pointed after a promotion).
struct Endpoint {
    pair: PgPair,
    proxy: PgProxy,
    /// The database's name.
    database: String,
    /// `DATABASE_URL` for the service: the database through the proxy.
    service_url: String,
}

impl Endpoint {
    async fn start(replication: Replication) -> Endpoint {
        let pair = PgPair::start(replication);
        let proxy = PgProxy::start_to(pair.primary.addr()).await;
        let database_url =
            freshplan_store_postgres::testing::fresh_database(&pair.primary.url("postgres"))
                .await
                .expect("a database on the primary");
        Endpoint {
            database: database_url.rsplit('/').next().unwrap().to_owned(),
            service_url: proxy.url(&database_url),
            pair,
            proxy,
        }
    }
}

/// One answered (or unanswered) request.
#[derive(Debug, Clone)]
struct Answer {
    replica: usize,
    what: &'static str,
    sent: Instant,
    took: Duration,
    /// `None`: no answer (the connection failed or timed out).
    status: Option<u16>,
}

impl Answer {
    fn write_ok(&self) -> bool {
        self.what != "ready" && self.status.is_some_and(|s| (200..300).contains(&s))
    }
}

/// One writer's unit of work and what the service answered.
#[derive(Debug, Clone)]
struct Unit {
    replica: usize,
    token: String,
    key: String,
    body: Value,
    /// The lead's id from a 201.
    id: Option<String>,
    /// `Some(true)`: the patch was answered 200; `Some(false)`: sent, no 2xx.
    patched: Option<bool>,
    /// The same for the activity.
    noted: Option<bool>,
}

impl Unit {
    fn company(&self) -> &str {
        self.body["companyName"].as_str().unwrap()
    }
    fn first_contact(&self) -> String {
        format!("Erst {}", self.company())
    }
    fn second_contact(&self) -> String {
        format!("Zweit {}", self.company())
    }
    fn note(&self) -> String {
        format!("Notiz {}", self.company())
    }
}

type Log = Arc<Mutex<Vec<Answer>>>;

/// Sends `request`, logs the answer, returns the response when there was one.
async fn send(
    log: &Log,
    replica: usize,
    what: &'static str,
    request: reqwest::RequestBuilder,
) -> Option<reqwest::Response> {
    let sent = Instant::now();
    let response = request.send().await.ok();
    log.lock().unwrap().push(Answer {
        replica,
        what,
        sent,
        took: sent.elapsed(),
        status: response.as_ref().map(|r| r.status().as_u16()),
    });
    response
}

async fn writer(w: usize, bases: [String; 2], stop: Arc<AtomicBool>, log: Log) -> Vec<Unit> {
    let client = Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let replica = w % 2;
    let base = &bases[replica];
    let token = rep(&format!("rep-failover-{w}"));
    let mut units = Vec::new();
    let mut n = 0;
    while !stop.load(Ordering::SeqCst) {
        n += 1;
        let company = format!("Failover W{w} #{n:05}");
        let mut unit = Unit {
            replica,
            token: token.clone(),
            key: uuid::Uuid::now_v7().to_string(),
            body: json!({
                "companyName": company, "countryCode": "DE", "city": "Berlin",
                "postalCode": "10115", "contactPerson": format!("Erst {company}"),
            }),
            id: None,
            patched: None,
            noted: None,
        };
        let created = send(
            &log,
            replica,
            "create",
            client
                .post(format!("{base}/api/leads"))
                .bearer_auth(&token)
                .header("idempotency-key", &unit.key)
                .json(&unit.body),
        )
        .await;
        let Some(created) = created.filter(|r| r.status() == 201) else {
            units.push(unit);
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let etag = created.headers()["etag"].to_str().unwrap().to_owned();
        let lead: Value = created.json().await.unwrap();
        let id = lead["id"].as_str().unwrap().to_owned();
        unit.id = Some(id.clone());
        let patched = send(
            &log,
            replica,
            "patch",
            client
                .patch(format!("{base}/api/leads/{id}"))
                .bearer_auth(&token)
                .header("if-match", etag)
                .header("content-type", "application/merge-patch+json")
                .body(json!({"contactPerson": unit.second_contact()}).to_string()),
        )
        .await
        .is_some_and(|r| r.status() == 200);
        unit.patched = Some(patched);
        if patched {
            let noted = send(
                &log,
                replica,
                "activity",
                client
                    .post(format!("{base}/api/leads/{id}/activities"))
                    .bearer_auth(&token)
                    .json(&json!({"type": "NOTE", "description": unit.note()})),
            )
            .await
            .is_some_and(|r| r.status() == 201);
            unit.noted = Some(noted);
        }
        units.push(unit);
    }
    units
}

/// One received event: its cursor (the SSE `id:`; the feed's events carry none) and the
/// CloudEvent.
#[derive(Debug, Clone)]
struct Got {
    cursor: Cursor,
    event: Value,
}

type Received = Arc<Mutex<Vec<Got>>>;

/// Reads `/api/events/stream` on `base` from `after` on, reconnecting (with `Last-Event-ID`)
/// whenever the stream ends or cannot be opened, until `stop`. Returns the reconnects.
async fn sse_reader(base: String, after: String, got: Received, stop: Arc<AtomicBool>) -> usize {
    let client = Client::new();
    let token = admin();
    let mut last = after;
    let mut reconnects = 0;
    while !stop.load(Ordering::SeqCst) {
        let url = format!("{base}/api/events/stream");
        let Ok(mut stream) = SseClient::try_connect(&client, &url, &token, Some(&last)).await
        else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        loop {
            if stop.load(Ordering::SeqCst) {
                return reconnects;
            }
            match stream.next_item(Duration::from_millis(200)).await {
                Some(Item::Message(m)) => {
                    let id = m.id.clone().expect("every event has an id");
                    got.lock().unwrap().push(Got {
                        cursor: Cursor::parse(&id).unwrap(),
                        event: m.json(),
                    });
                    last = id;
                }
                Some(Item::End) => break,
                Some(Item::Comment(_)) | None => {}
            }
        }
        reconnects += 1;
    }
    reconnects
}

/// Reads the event feed from `after` on, page by page, until `stop`; a 503 (or no answer) is
/// retried with the same cursor, any other status than 200 fails the test. Returns the 503s.
async fn feed_consumer(base: String, after: String, got: Received, stop: Arc<AtomicBool>) -> usize {
    let client = Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let token = admin();
    let mut cursor = after;
    let mut unavailable = 0;
    while !stop.load(Ordering::SeqCst) {
        let url = format!("{base}/api/events?after={cursor}&limit=500");
        let Ok(r) = client.get(&url).bearer_auth(&token).send().await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        match r.status().as_u16() {
            200 => {}
            503 => {
                unavailable += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
            other => panic!("{url}: {other}: {}", r.text().await.unwrap()),
        }
        let page: Value = r.json().await.unwrap();
        let events = page["events"].as_array().unwrap();
        // The feed's events carry no cursor of their own (a page's last one is `nextCursor`);
        // their order is the commit order.
        got.lock().unwrap().extend(events.iter().map(|e| Got {
            cursor: Cursor::START,
            event: e.clone(),
        }));
        let next = page["nextCursor"].as_str().unwrap().to_owned();
        if events.is_empty() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        cursor = next;
    }
    unavailable
}

/// Polls `/health/ready` on `base` every 100 ms until `stop`.
async fn ready_probe(base: String, replica: usize, log: Log, stop: Arc<AtomicBool>) {
    let client = Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    while !stop.load(Ordering::SeqCst) {
        send(
            &log,
            replica,
            "ready",
            client.get(format!("{base}/health/ready")),
        )
        .await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The event ids of `got`, checking each arrived once.
fn once_each(what: &str, got: &[Got]) -> Vec<String> {
    let ids: Vec<String> = got
        .iter()
        .map(|g| g.event["id"].as_str().unwrap().to_owned())
        .collect();
    let doubled: Vec<(&String, usize)> = tally(ids.iter())
        .into_iter()
        .filter(|(_, n)| *n > 1)
        .take(5)
        .collect();
    assert!(
        doubled.is_empty(),
        "{what}: events received twice: {doubled:?}"
    );
    ids
}

/// Per lead (`subject`), the event ids of `order` in that order (subjects looked up in `got`).
fn per_lead(order: &[String], got: &[Got]) -> BTreeMap<String, Vec<String>> {
    let subjects: BTreeMap<&str, &str> = got
        .iter()
        .filter_map(|g| Some((g.event["id"].as_str()?, g.event["subject"].as_str()?)))
        .collect();
    let mut m: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for id in order {
        if let Some(subject) = subjects.get(id.as_str()) {
            m.entry((*subject).to_owned()).or_default().push(id.clone());
        }
    }
    m
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_primary_killed_under_load_fails_over_to_its_sync_standby_losing_and_doubling_nothing() {
    let now = OffsetDateTime::now_utc();
    let offset = clock_offset(now);
    let clock_env = clock_env(now, offset);
    let followup_now = now + offset.unwrap_or(time::Duration::ZERO);

    // The database: a primary and its synchronous standby, one endpoint in front.
    let Endpoint {
        pair,
        proxy,
        database,
        service_url,
    } = Endpoint::start(Replication::Synchronous).await;
    let sink = Sink::start().await;
    let smtp = sink.url();

    // Replica A: mail; replica B: mail and the follow-up schedule (every second) — started
    // once the due leads are there.
    let mut env: Vec<(&str, &str)> = vec![
        ("FRESHPLAN_POOL_SIZE", "6"),
        ("FRESHPLAN_WORKERS", "2"),
        ("FRESHPLAN_SMTP_URL", &smtp),
        ("FRESHPLAN_MAIL_FROM", MAIL_FROM),
        ("FRESHPLAN_MAIL_POLL", "1s"),
    ];
    env.extend(clock_env.iter().map(|(k, v)| (*k, v.as_str())));
    let mut a = Serve::spawn(&service_url, &env);
    a.wait_ready().await;
    let client = Client::new();
    let base_a = base(&a);

    // The due leads, through A.
    let seeded = seed_due_leads(&client, &base_a, DUE_LEADS, followup_now, "failover").await;
    // Where the readers start: after the seeding's events.
    let (_, cursor0) = crate::sse_client::whole_feed(&client, &base_a, &admin(), 1000).await;
    println!("{DUE_LEADS} due leads seeded; the readers start after {cursor0}");

    let stop_writers = Arc::new(AtomicBool::new(false));
    let stop_readers = Arc::new(AtomicBool::new(false));
    let log: Log = Arc::default();
    let mut b = Serve::spawn(&service_url, &env);
    b.wait_ready().await;
    let bases = [base_a.clone(), base(&b)];
    let pids = (a.child.id(), b.child.id());

    // The readers and the writers.
    let sse: Vec<Received> = vec![Arc::default(), Arc::default()];
    let sse_tasks: Vec<_> = (0..2)
        .map(|r| {
            tokio::spawn(sse_reader(
                bases[r].clone(),
                cursor0.clone(),
                Arc::clone(&sse[r]),
                Arc::clone(&stop_readers),
            ))
        })
        .collect();
    let feed: Received = Arc::default();
    let feed_task = tokio::spawn(feed_consumer(
        base_a.clone(),
        cursor0.clone(),
        Arc::clone(&feed),
        Arc::clone(&stop_readers),
    ));
    let probes: Vec<_> = (0..2)
        .map(|r| {
            tokio::spawn(ready_probe(
                bases[r].clone(),
                r,
                Arc::clone(&log),
                Arc::clone(&stop_readers),
            ))
        })
        .collect();
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            tokio::spawn(writer(
                w,
                bases.clone(),
                Arc::clone(&stop_writers),
                Arc::clone(&log),
            ))
        })
        .collect();

    // The writers busy, the follow-up run (started on B by an admin) under way — its first
    // batch committed: the primary dies.
    let processed = |node: &crate::pg_pair::Node| -> usize {
        pair.sql_in(
            node,
            &database,
            "select count(*) from followups where stage = 'T3'",
        )
        .parse()
        .unwrap()
    };
    wait_until(
        Duration::from_secs(30),
        "writes on both replicas",
        || async {
            let log = log.lock().unwrap();
            let ok = |r: usize| {
                log.iter()
                    .filter(|a| a.replica == r && a.write_ok())
                    .count()
            };
            (
                ok(0) >= 10 && ok(1) >= 10,
                format!("{} and {}", ok(0), ok(1)),
            )
        },
    )
    .await;
    let run = |client: Client, base: String| async move {
        let r = client
            .post(format!("{base}/api/followups/run"))
            .bearer_auth(admin())
            .send()
            .await
            .ok()?;
        Some((r.status().as_u16(), r.text().await.unwrap_or_default()))
    };
    let first_run = tokio::spawn(run(client.clone(), bases[1].clone()));
    wait_until(
        Duration::from_secs(60),
        "the follow-up run began",
        || async {
            let done = processed(&pair.primary);
            (done >= 250, format!("{done} processed"))
        },
    )
    .await;
    let processed_at_kill = processed(&pair.primary);
    let max_txid_before = pair.sql_in(
        &pair.primary,
        &database,
        "select max(txid)::text from event_outbox",
    );
    let killed = Instant::now();
    pair.kill_primary();
    println!(
        "primary killed with {processed_at_kill} of {DUE_LEADS} follow-ups processed; the \
         outbox's last txid {max_txid_before}"
    );
    assert!(
        processed_at_kill < DUE_LEADS,
        "the follow-up run ended before the kill"
    );

    tokio::time::sleep(OUTAGE).await;
    pair.promote();
    let next_xid = pair.sql(&pair.standby, "select pg_current_xact_id()::text");
    // What the interrupted run committed, as the new primary has it.
    let processed_at_promotion = processed(&pair.standby);
    proxy.repoint(pair.standby.addr());
    let promoted = Instant::now();
    println!(
        "standby promoted {:?} after the kill; its next xid8 {next_xid} continues the old \
         primary's {max_txid_before}",
        promoted - killed
    );
    assert!(
        next_xid.parse::<u64>().unwrap() > max_txid_before.parse::<u64>().unwrap(),
        "xid8 continues from the replayed WAL"
    );

    // Recovery on both replicas, then more load.
    wait_until(RECOVERY_BOUND, "both replicas write again", || async {
        let log = log.lock().unwrap();
        let back = |r: usize| {
            log.iter()
                .any(|a| a.replica == r && a.write_ok() && a.sent >= promoted)
        };
        (back(0) && back(1), String::new())
    })
    .await;
    tokio::time::sleep(AFTER).await;
    stop_writers.store(true, Ordering::SeqCst);
    let mut units: Vec<Unit> = Vec::new();
    for w in writers {
        units.extend(w.await.unwrap());
    }

    // The creates that got no 201: the client retries each with its key and the same body.
    let retry_client = Client::new();
    let mut retried = 0;
    for unit in units.iter_mut().filter(|u| u.id.is_none()) {
        let r = retry_client
            .post(format!("{}/api/leads", bases[unit.replica]))
            .bearer_auth(&unit.token)
            .header("idempotency-key", &unit.key)
            .json(&unit.body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201, "retry of {}", unit.company());
        let lead: Value = r.json().await.unwrap();
        unit.id = Some(lead["id"].as_str().unwrap().to_owned());
        retried += 1;
    }

    // The interrupted run failed (503) or lost its answer; the next run finishes the rest, as
    // the schedule's next tick would.
    let interrupted = first_run.await.unwrap();
    assert!(
        interrupted
            .as_ref()
            .is_none_or(|(status, _)| *status == 503),
        "the interrupted run answered {interrupted:?}"
    );
    let (status, report) = run(client.clone(), bases[1].clone()).await.unwrap();
    assert_eq!(status, 200, "{report}");
    let report: Value = serde_json::from_str(&report).unwrap();
    assert_eq!(
        report["t3Count"].as_u64().unwrap() as usize,
        DUE_LEADS - processed_at_promotion,
        "the next run sends exactly what the interrupted one left: {report}"
    );
    wait_until(
        Duration::from_secs(120),
        "every due follow-up processed",
        || async {
            let done = processed(&pair.standby);
            (
                done == DUE_LEADS,
                format!("{done} of {DUE_LEADS} processed"),
            )
        },
    )
    .await;
    wait_until(Duration::from_secs(120), "no mail left queued", || async {
        let queued = get_json(
            &client,
            &format!("{base_a}/api/mails?status=QUEUED&limit=1"),
        )
        .await;
        let n = queued["mails"].as_array().unwrap().len();
        (n == 0, format!("{queued}"))
    })
    .await;

    // Every event committed after cursor0 (so far: the schedule goes on) reaches each reader.
    let committed = || -> Vec<String> {
        let c = Cursor::parse(&cursor0).unwrap();
        pair.sql_in(
            &pair.standby,
            &database,
            &format!(
                "select event_id from event_outbox \
                  where (txid::text::numeric, id) > ({}, {}) order by txid, id",
                c.txid(),
                c.id()
            ),
        )
        .lines()
        .map(str::to_owned)
        .collect()
    };
    let outbox_now = committed();
    let expected = outbox_now.len();
    let wanted: BTreeSet<String> = outbox_now.iter().cloned().collect();
    wait_until(
        Duration::from_secs(30),
        "every event at every reader",
        || async {
            let missing = |got: &Received| {
                let have: BTreeSet<String> = got
                    .lock()
                    .unwrap()
                    .iter()
                    .map(|g| g.event["id"].as_str().unwrap().to_owned())
                    .collect();
                wanted.difference(&have).count()
            };
            let missing = [missing(&sse[0]), missing(&sse[1]), missing(&feed)];
            let detail: Vec<String> = [("A", &sse[0]), ("B", &sse[1])]
                .iter()
                .map(|(name, got)| {
                    let got = got.lock().unwrap();
                    let seen: BTreeSet<&str> = got
                        .iter()
                        .map(|g| g.event["id"].as_str().unwrap())
                        .collect();
                    let lost: Vec<String> = outbox_now
                        .iter()
                        .enumerate()
                        .filter(|(_, id)| !seen.contains(id.as_str()))
                        .take(3)
                        .map(|(i, id)| {
                            let e = feed
                                .lock()
                                .unwrap()
                                .iter()
                                .find(|g| g.event["id"] == id.as_str())
                                .map(|g| format!("{} {}", g.event["type"], g.event["time"]))
                                .unwrap_or_default();
                            format!("#{i} of the outbox order {id} {e}")
                        })
                        .collect();
                    format!("{name}: {} received, missing {lost:?}", got.len())
                })
                .collect();
            (
                missing == [0, 0, 0],
                format!("missing at SSE A, SSE B, the feed: {missing:?} of {expected}; {detail:?}"),
            )
        },
    )
    .await;
    // A little longer: anything doubled would arrive now.
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop_readers.store(true, Ordering::SeqCst);
    let mut sse_reconnects = Vec::new();
    for t in sse_tasks {
        sse_reconnects.push(t.await.unwrap());
    }
    let feed_unavailable = feed_task.await.unwrap();
    for p in probes {
        p.await.unwrap();
    }
    let log = log.lock().unwrap().clone();

    // 1. The outage as clients saw it: 2xx or a fast 503, nothing else.
    for a in &log {
        if let Some(status) = a.status {
            assert!(
                (200..300).contains(&status) || status == 503,
                "{} on replica {} answered {status}",
                a.what,
                a.replica
            );
        }
        assert!(
            a.took <= ANSWER_BOUND,
            "{} on replica {} took {:?} (status {:?})",
            a.what,
            a.replica,
            a.took,
            a.status
        );
    }
    let refused: Vec<&Answer> = log
        .iter()
        .filter(|a| a.what != "ready" && a.status == Some(503))
        .collect();
    let unanswered = log.iter().filter(|a| a.status.is_none()).count();
    let slowest_refusal = refused.iter().map(|a| a.took).max().unwrap_or_default();
    let not_ready = |r: usize| {
        log.iter()
            .filter(|a| a.what == "ready" && a.replica == r && a.status == Some(503))
            .count()
    };
    assert!(
        not_ready(0) > 0 && not_ready(1) > 0,
        "/health/ready never said 503"
    );
    for r in 0..2 {
        let last = log
            .iter()
            .rev()
            .find(|a| a.what == "ready" && a.replica == r)
            .unwrap();
        assert_eq!(last.status, Some(200), "replica {r} ready again");
    }
    let first_write_after = |r: usize| {
        log.iter()
            .filter(|a| a.replica == r && a.write_ok() && a.sent >= promoted)
            .map(|a| a.sent + a.took - promoted)
            .min()
            .unwrap()
    };
    let recovery = [first_write_after(0), first_write_after(1)];
    assert!(
        recovery.iter().all(|d| *d <= RECOVERY_BOUND),
        "{recovery:?}"
    );
    assert!(a.running() && b.running(), "a replica exited");
    assert_eq!((a.child.id(), b.child.id()), pids, "no replica restarted");

    // 2. Writes: each unit's lead exists once; answered writes are there, unanswered ones
    // committed once or not at all.
    let companies: BTreeMap<String, usize> = pair
        .sql_in(
            &pair.standby,
            &database,
            "select company_name || '|' || count(*) from leads \
             where company_name like 'Failover W%' group by company_name",
        )
        .lines()
        .map(|l| {
            let (c, n) = l.rsplit_once('|').unwrap();
            (c.to_owned(), n.parse().unwrap())
        })
        .collect();
    assert_eq!(
        companies.keys().cloned().collect::<BTreeSet<_>>(),
        units.iter().map(|u| u.company().to_owned()).collect(),
        "one lead per unit, no other"
    );
    assert!(
        companies.values().all(|n| *n == 1),
        "a lead created twice: {:?}",
        companies.iter().find(|(_, n)| **n != 1)
    );
    let mut unanswered_committed = 0;
    let mut unanswered_lost = 0;
    for unit in &units {
        let id = unit.id.as_ref().unwrap();
        let lead = get_json(&client, &format!("{}/api/leads/{id}", bases[unit.replica])).await;
        assert_eq!(lead["companyName"], unit.company());
        let contact = lead["contactPerson"].as_str().unwrap();
        match unit.patched {
            Some(true) => assert_eq!(contact, unit.second_contact(), "{lead}"),
            Some(false) if contact == unit.second_contact() => unanswered_committed += 1,
            Some(false) => {
                assert_eq!(contact, unit.first_contact(), "{lead}");
                unanswered_lost += 1;
            }
            None => assert_eq!(contact, unit.first_contact(), "{lead}"),
        }
        if let Some(noted) = unit.noted {
            let page = get_json(
                &client,
                &format!("{}/api/leads/{id}/activities?size=50", bases[unit.replica]),
            )
            .await;
            let notes = page["data"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|a| a["description"] == unit.note())
                .count();
            if noted {
                assert_eq!(notes, 1, "{id}");
            } else {
                assert!(notes <= 1, "{id}: the note {notes} times");
                if notes == 1 {
                    unanswered_committed += 1;
                } else {
                    unanswered_lost += 1;
                }
            }
        }
    }

    // 3. Events: once each at every reader, the same set, in commit order per lead.
    let sse_a = sse[0].lock().unwrap().clone();
    let sse_b = sse[1].lock().unwrap().clone();
    let fed = feed.lock().unwrap().clone();
    let outbox_later: BTreeSet<String> = committed().into_iter().collect();
    let in_order = |got: &[Got]| -> Vec<String> {
        got.iter()
            .map(|g| g.event["id"].as_str().unwrap().to_owned())
            .filter(|id| wanted.contains(id))
            .collect()
    };
    for (name, got) in [
        ("the feed consumer", &fed),
        ("the SSE client on A", &sse_a),
        ("the SSE client on B", &sse_b),
    ] {
        let ids: BTreeSet<String> = once_each(name, got).into_iter().collect();
        assert!(ids.is_superset(&wanted), "{name}: an event missing");
        assert!(
            ids.is_subset(&outbox_later),
            "{name}: an event that is not in the outbox"
        );
        // Commit order per lead (the feed: the commit order itself).
        assert_eq!(
            per_lead(&in_order(got), got),
            per_lead(&outbox_now, &fed),
            "{name}: commit order per lead"
        );
    }
    assert_eq!(in_order(&fed), outbox_now, "the feed in commit order");
    for (name, got) in [
        ("the SSE client on A", &sse_a),
        ("the SSE client on B", &sse_b),
    ] {
        // Cursors rise throughout, across the promotion: the new primary's xid8 continues.
        assert!(
            got.windows(2).all(|w| w[0].cursor < w[1].cursor),
            "{name}: cursors in order"
        );
    }
    let types = |t: &str| {
        fed.iter()
            .filter(|g| g.event["type"] == t)
            .map(|g| g.event["subject"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    let created = tally(types("lead.created.v1"));
    assert_eq!(
        created.keys().cloned().collect::<BTreeSet<_>>(),
        units.iter().map(|u| u.id.clone().unwrap()).collect(),
        "one lead.created.v1 per lead"
    );
    assert!(created.values().all(|n| *n == 1));
    let sent = tally(types("lead.followup.sent.v1"));
    assert!(sent.values().all(|n| *n == 1), "a follow-up sent twice");

    // 4. Mails: each due lead's T+3 once in the outbox, SENT, once at the SMTP server.
    let mails = outbox(&client, &base_a).await;
    assert_eq!(mails.len(), DUE_LEADS, "mails in the outbox");
    assert!(
        mails
            .iter()
            .all(|m| m["status"] == "SENT" && m["stage"] == "T3")
    );
    let mail_leads = tally(
        mails
            .iter()
            .map(|m| m["leadId"].as_str().unwrap().to_owned()),
    );
    assert_eq!(
        mail_leads.keys().cloned().collect::<BTreeSet<_>>(),
        seeded.keys().cloned().collect(),
        "one mail per due lead"
    );
    assert!(mail_leads.values().all(|n| *n == 1));
    let received = sink.received();
    let message_ids = tally(received.iter().map(|r| {
        let m = MessageParser::default()
            .parse(&r.data)
            .expect("a MIME message");
        m.message_id().expect("a Message-ID").to_owned()
    }));
    assert_eq!(received.len(), DUE_LEADS, "mails at the SMTP server");
    assert!(
        message_ids.values().all(|n| *n == 1),
        "a mail arrived twice"
    );
    assert_eq!(sent.len(), DUE_LEADS, "one sent event per due lead");

    let answered = log.iter().filter(|a| a.what != "ready").count();
    println!(
        "failover figures: primary killed, standby promoted {:.2} s later (outage held {OUTAGE:?}); \
         first successful write after the promotion: replica A {:.2} s, B {:.2} s (bound \
         {RECOVERY_BOUND:?}); {answered} API requests, of which {} refused with 503 during the \
         outage (slowest {:.2} s, bound {ANSWER_BOUND:?}), {unanswered} without an answer, none \
         answered otherwise; /health/ready 503 {} times on A, {} on B; {} units of work, {} \
         creates retried with their Idempotency-Key, unanswered writes found committed {} / not \
         committed {}; {} events after the starting cursor, each exactly once on both SSE \
         clients (reconnects {:?}) and at the feed consumer (503s {}); {} follow-up mails, each \
         exactly once at the SMTP server; xid8 {} before, {} at the promotion; lost or doubled: 0",
        (promoted - killed).as_secs_f64() - OUTAGE.as_secs_f64(),
        recovery[0].as_secs_f64(),
        recovery[1].as_secs_f64(),
        refused.len(),
        slowest_refusal.as_secs_f64(),
        not_ready(0),
        not_ready(1),
        units.len(),
        retried,
        unanswered_committed,
        unanswered_lost,
        expected,
        sse_reconnects,
        feed_unavailable,
        received.len(),
        max_txid_before,
        next_xid,
    );
    drop(pair);
}

/// `POST /api/leads` of [`lead`]`(company)` with `Idempotency-Key: key`, answered 201.
async fn create_with_key(client: &Client, base: &str, tok: &str, company: &str, key: &str) {
    let r = client
        .post(format!("{base}/api/leads"))
        .bearer_auth(tok)
        .header("idempotency-key", key)
        .json(&lead(company))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{company}: {}", r.text().await.unwrap());
}

/// An admin's event stream on `base` from `after` on.
async fn admin_stream(client: &Client, base: &str, after: &str) -> SseClient {
    SseClient::connect(
        client,
        &format!("{base}/api/events/stream"),
        &admin(),
        Some(after),
    )
    .await
}

/// Asynchronous replication (not supported, ADR 0015) loses what the standby had not received.
/// The service must not double anything and must say that it cannot fill the gap: a replica
/// whose listener already delivered events the promoted standby never got stops its listener,
/// logs why and fails `/health/live` (so it is restarted); a create retried with its
/// `Idempotency-Key` makes exactly one lead; a restarted replica streams the new history.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_asynchronous_standby_that_lost_delivered_events_makes_the_replica_ask_for_a_restart() {
    let Endpoint {
        pair,
        proxy,
        database,
        service_url,
    } = Endpoint::start(Replication::Asynchronous).await;
    let client = Client::new();
    let tok = rep("rep-async");
    let mut a = Serve::spawn(&service_url, &[("FRESHPLAN_POOL_SIZE", "4")]);
    a.wait_ready().await;
    let base_a = base(&a);

    // Ten leads both servers have; the readers' common ground.
    for n in 0..10 {
        create_with_key(
            &client,
            &base_a,
            &tok,
            &format!("Async Gemeinsam {n}"),
            &uuid::Uuid::now_v7().to_string(),
        )
        .await;
    }
    pair.wait_caught_up();
    let (_, common) = crate::sse_client::whole_feed(&client, &base_a, &admin(), 1000).await;
    let mut stream = admin_stream(&client, &base_a, &common).await;

    // The standby stops receiving; ten more creates are acknowledged by the primary alone and
    // delivered by A's listener (its stream shows them).
    pair.stop_standby();
    let lost: Vec<(String, String)> = (0..10)
        .map(|n| {
            (
                format!("Async Verloren {n}"),
                uuid::Uuid::now_v7().to_string(),
            )
        })
        .collect();
    for (company, key) in &lost {
        create_with_key(&client, &base_a, &tok, company, key).await;
    }
    for _ in 0..10 {
        let m = stream
            .next_message(Duration::from_secs(10))
            .await
            .expect("A's listener delivers the acknowledged creates");
        assert_eq!(m.json()["type"], "lead.created.v1");
    }

    // The primary dies; the standby, without those ten, is promoted.
    pair.kill_primary();
    pair.start_standby();
    pair.promote();
    proxy.repoint(pair.standby.addr());
    let leads = |pattern: &str| -> usize {
        pair.sql_in(
            &pair.standby,
            &database,
            &format!("select count(*) from leads where company_name like '{pattern}'"),
        )
        .parse()
        .unwrap()
    };
    assert_eq!(
        leads("Async Verloren %"),
        0,
        "the ten are lost with the primary"
    );

    // A's listener reconnects, finds the history it delivered gone, and asks for a restart.
    let started = Instant::now();
    loop {
        let r = client
            .get(format!("{base_a}/health/live"))
            .send()
            .await
            .unwrap();
        if r.status() == 503 {
            let p: Value = r.json().await.unwrap();
            assert_eq!(
                p["type"],
                "https://freshplan.example/problems/event-history-diverged"
            );
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "A still live 30 s after the promotion:\n{}",
            a.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        a.log()
            .contains("the database lost events this replica already delivered"),
        "{}",
        a.log()
    );

    // The client retries its unconfirmed creates with their keys (through A, which still
    // serves requests): each makes one lead.
    for (company, key) in &lost {
        create_with_key(&client, &base_a, &tok, company, key).await;
        create_with_key(&client, &base_a, &tok, company, key).await; // a replay
    }
    assert_eq!(leads("Async Verloren %"), 10, "one lead per retried create");
    assert_eq!(leads("Async Gemeinsam %"), 10);

    // Restarted (as its orchestrator would), A is live and streams the new history from the
    // common ground: each retried create's event once, none of the lost ones.
    a.child.kill().unwrap();
    a.child.wait().unwrap();
    let mut a = Serve::spawn(&service_url, &[("FRESHPLAN_POOL_SIZE", "4")]);
    a.wait_ready().await;
    let base_a = base(&a);
    let r = client
        .get(format!("{base_a}/health/live"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let mut stream = admin_stream(&client, &base_a, &common).await;
    let mut created = Vec::new();
    while let Some(m) = stream.next_message(Duration::from_secs(3)).await {
        created.push(
            m.json()["data"]["companyName"]
                .as_str()
                .unwrap_or("")
                .to_owned(),
        );
    }
    created.sort();
    let mut expected: Vec<String> = lost.iter().map(|(c, _)| c.clone()).collect();
    expected.sort();
    assert_eq!(created, expected, "the new history's events, each once");
}
