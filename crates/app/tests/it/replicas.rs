//! Two `freshplan serve` processes (`CARGO_BIN_EXE_freshplan`) on one database: events written
//! through one replica reach an SSE client of the other exactly once and in order — also when
//! the writing replica is killed with SIGKILL in the middle of a stream of commits (some of them
//! committed, their wake-up never sent) and restarted. The outbox, read through the feed, is the
//! ground truth.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::Client;
use serde_json::{Value, json};

use crate::helpers::*;
use crate::process::Serve;
use crate::sse_client::{Message, SseClient, ids, settled_feed};

/// Settings of both replicas: enough connections for requests, SSE catch-up and the pipeline.
const ENV: &[(&str, &str)] = &[("FRESHPLAN_POOL_SIZE", "8"), ("FRESHPLAN_WORKERS", "2")];

fn base(s: &Serve) -> String {
    format!("http://{}", s.addr)
}

/// What an SSE client received, with when.
#[derive(Default)]
struct Received {
    messages: Vec<(Message, Instant)>,
    ended: bool,
}

/// Reads `client` in a task until the stream ends.
fn collect(mut client: SseClient) -> Arc<Mutex<Received>> {
    let received = Arc::new(Mutex::new(Received::default()));
    let sink = Arc::clone(&received);
    tokio::spawn(async move {
        loop {
            match client.next_message_or_end(Duration::from_secs(3600)).await {
                Some(m) => sink.lock().unwrap().messages.push((m, Instant::now())),
                None => {
                    sink.lock().unwrap().ended = true;
                    return;
                }
            }
        }
    });
    received
}

fn events_of(r: &Arc<Mutex<Received>>) -> Vec<Value> {
    r.lock()
        .unwrap()
        .messages
        .iter()
        .map(|(m, _)| m.json())
        .collect()
}

/// Waits until `r` holds `n` messages (or more), at most `limit`.
async fn wait_for(r: &Arc<Mutex<Received>>, n: usize, limit: Duration, what: &str) {
    let started = Instant::now();
    while r.lock().unwrap().messages.len() < n {
        assert!(
            started.elapsed() < limit,
            "{what}: {} of {n} events after {limit:?}",
            r.lock().unwrap().messages.len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Creates a lead and logs a call on it (a meaningful contact: REGISTERED → ACTIVE), so each lead
/// has several events whose order matters. Returns the lead id and when the create committed.
async fn lead_with_call(
    client: &Client,
    base: &str,
    name: &str,
) -> Result<(String, Instant), String> {
    let r = client
        .post(format!("{base}/api/leads"))
        .bearer_auth(admin())
        .json(&lead(name))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if r.status() != 201 {
        return Err(format!("create: {}", r.status()));
    }
    let committed = Instant::now();
    let id = r.json::<Value>().await.map_err(|e| e.to_string())?["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = client
        .post(format!("{base}/api/leads/{id}/activities"))
        .bearer_auth(admin())
        .json(&json!({"type": "CALL", "description": "Erstkontakt"}))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if r.status() != 201 {
        return Err(format!("activity: {}", r.status()));
    }
    Ok((id, committed))
}

/// Per lead, the types in the order delivered: a lead's events must come in the order its
/// changes committed (created first, then what the call did).
fn assert_ordered_per_lead(events: &[Value], outbox: &[Value], what: &str) {
    let per_lead = |list: &[Value]| {
        let mut m: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for e in list {
            m.entry(e["subject"].as_str().unwrap().to_owned())
                .or_default()
                .push(e["type"].as_str().unwrap().to_owned());
        }
        m
    };
    let got = per_lead(events);
    assert_eq!(got, per_lead(outbox), "{what}: per-lead order");
    for (lead, types) in &got {
        assert_eq!(
            types[0], "lead.created.v1",
            "{what}: lead {lead}: {types:?}"
        );
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn metric(text: &str, prefix: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .fold(0.0, |sum, x| sum + x)
}

async fn metrics(client: &Client, base: &str) -> String {
    client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_sse_client_on_replica_b_gets_every_event_written_through_replica_a_once_in_order() {
    let database_url = fresh_database().await;
    let mut a = Serve::spawn(&database_url, ENV);
    let mut b = Serve::spawn(&database_url, ENV);
    a.wait_ready().await;
    b.wait_ready().await;
    let client = Client::new();
    let sse_b = SseClient::connect(
        &client,
        &format!("{}/api/events/stream", base(&b)),
        &admin(),
        None,
    )
    .await;
    let on_b = collect(sse_b);

    // Four writers through A, 25 leads each (a create and a call per lead).
    let commits: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let (client, base_a, commits) = (client.clone(), base(&a), Arc::clone(&commits));
            tokio::spawn(async move {
                for i in 0..25 {
                    let (id, at) = lead_with_call(&client, &base_a, &format!("Replika {w}-{i}"))
                        .await
                        .unwrap();
                    commits.lock().unwrap().insert(id, at);
                }
            })
        })
        .collect();
    for w in writers {
        w.await.unwrap();
    }
    let outbox = settled_feed(&client, &base(&a), &admin(), &database_url).await;
    assert!(outbox.len() >= 200, "{} events", outbox.len());
    wait_for(&on_b, outbox.len(), Duration::from_secs(30), "replica B").await;
    tokio::time::sleep(Duration::from_millis(500)).await;

    let received = events_of(&on_b);
    assert_eq!(
        ids(&received),
        ids(&outbox),
        "every event once, in commit order"
    );
    assert_ordered_per_lead(&received, &outbox, "replica B");

    // Commit (the 201 of the create through A) → arrival of its lead.created.v1 at B's client.
    let commits = commits.lock().unwrap().clone();
    let mut latencies: Vec<Duration> = on_b
        .lock()
        .unwrap()
        .messages
        .iter()
        .filter_map(|(m, at)| {
            let e = m.json();
            (e["type"] == "lead.created.v1")
                .then(|| at.saturating_duration_since(commits[e["subject"].as_str().unwrap()]))
        })
        .collect();
    latencies.sort();
    assert_eq!(latencies.len(), 100);
    println!(
        "commit on A -> SSE client on B, {} events: p50 {:?}, p90 {:?}, p99 {:?}, max {:?}",
        latencies.len(),
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.9),
        percentile(&latencies, 0.99),
        latencies[latencies.len() - 1],
    );
    assert!(
        latencies[latencies.len() - 1] < Duration::from_secs(10),
        "the latency objective (SPEC §7.3: < 10 s)"
    );

    // The wake-ups are wired: a commit on A wakes A's reader through the commit signal (path
    // `local`) and B's through A's NOTIFY (path `notify`); without them both would wait for the
    // 5 s poll. Every replica's horizon is cluster-wide, so a writing transaction elsewhere on the
    // server (another test creating its database) can hold a read back, and the event then comes
    // by the short re-read of a blocked read (path `poll`): probe with single commits until both
    // paths have been seen.
    let created_by = |text: &str, path: &str| {
        metric(
            text,
            &format!(
                r#"freshplan_event_latency_seconds_count{{event_type="lead.created.v1",path="{path}"}}"#
            ),
        )
    };
    let mut probes = 0;
    loop {
        let (local, notify) = (
            created_by(&metrics(&client, &base(&a)).await, "local"),
            created_by(&metrics(&client, &base(&b)).await, "notify"),
        );
        if local > 0.0 && notify > 0.0 {
            break;
        }
        assert!(
            probes < 20,
            "after {probes} probes: {local} local wake-ups on A, {notify} NOTIFY wake-ups on B"
        );
        probes += 1;
        let expected = on_b.lock().unwrap().messages.len() + 2;
        lead_with_call(&client, &base(&a), &format!("Probe {probes}"))
            .await
            .unwrap();
        wait_for(&on_b, expected, Duration::from_secs(10), "probe").await;
    }
    assert!(a.running() && b.running());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replica_killed_between_commits_and_wake_ups_loses_nothing_for_any_client() {
    let database_url = fresh_database().await;
    let mut a = Serve::spawn(&database_url, ENV);
    let mut b = Serve::spawn(&database_url, ENV);
    a.wait_ready().await;
    b.wait_ready().await;
    let client = Client::new();
    let stream = |s: &Serve| format!("{}/api/events/stream", base(s));
    let on_b = collect(SseClient::connect(&client, &stream(&b), &admin(), None).await);
    let on_a = collect(SseClient::connect(&client, &stream(&a), &admin(), None).await);

    // Writers through A until it dies; A is killed while they commit.
    let writers: Vec<_> = (0..3)
        .map(|w| {
            let (client, base_a) = (client.clone(), base(&a));
            tokio::spawn(async move {
                let mut done = 0;
                for i in 0.. {
                    match lead_with_call(&client, &base_a, &format!("Absturz {w}-{i}")).await {
                        Ok(_) => done += 1,
                        Err(_) => return done, // A is gone
                    }
                }
                done
            })
        })
        .collect();
    wait_for(
        &on_a,
        30,
        Duration::from_secs(30),
        "replica A before the kill",
    )
    .await;
    a.child.kill().expect("SIGKILL"); // std's kill is SIGKILL
    let killed_at = Instant::now();
    a.child.wait().unwrap();
    let mut before_kill = 0;
    for w in writers {
        before_kill += w.await.unwrap();
    }
    // The client on A lost its connection.
    let started = Instant::now();
    while !on_a.lock().unwrap().ended {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "A's stream did not end"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let seen_on_a = events_of(&on_a);
    let last_id = on_a
        .lock()
        .unwrap()
        .messages
        .last()
        .unwrap()
        .0
        .id
        .clone()
        .unwrap();

    // What A committed before it died is all in the outbox (some of it possibly without a
    // NOTIFY): B gets it all — by NOTIFY or, for the last commits, by its polling fallback.
    let committed = settled_feed(&client, &base(&b), &admin(), &database_url).await;
    wait_for(
        &on_b,
        committed.len(),
        Duration::from_secs(30),
        "replica B after the kill",
    )
    .await;
    let caught_up_after = killed_at.elapsed();

    // A comes back on the same database; a client resumes there with Last-Event-ID.
    let mut a2 = Serve::spawn(&database_url, ENV);
    a2.wait_ready().await;
    let resumed =
        collect(SseClient::connect(&client, &stream(&a2), &admin(), Some(&last_id)).await);
    for i in 0..10 {
        lead_with_call(&client, &base(&a2), &format!("Neustart {i}"))
            .await
            .unwrap();
    }
    for i in 0..5 {
        lead_with_call(&client, &base(&b), &format!("Nebenan {i}"))
            .await
            .unwrap();
    }
    // The outbox as its owner sees it, read through the feed once every row is final.
    let outbox = settled_feed(&client, &base(&a2), &admin(), &database_url).await;
    wait_for(&on_b, outbox.len(), Duration::from_secs(30), "replica B").await;
    wait_for(
        &resumed,
        outbox.len() - seen_on_a.len(),
        Duration::from_secs(30),
        "the client resumed on A",
    )
    .await;
    tokio::time::sleep(Duration::from_millis(700)).await;

    let on_b_events = events_of(&on_b);
    assert_eq!(
        ids(&on_b_events),
        ids(&outbox),
        "B: every event once, in order"
    );
    assert_ordered_per_lead(&on_b_events, &outbox, "replica B");
    let mut on_a_events = seen_on_a.clone();
    on_a_events.extend(events_of(&resumed));
    assert_eq!(
        ids(&on_a_events),
        ids(&outbox),
        "A: what it saw before the kill plus the resumed stream is every event once, in order"
    );
    assert_ordered_per_lead(&on_a_events, &outbox, "client of A");
    println!(
        "SIGKILL test: {} events committed before the kill ({before_kill} leads with a call acknowledged, \
         the client on A had {}); B had all of them {caught_up_after:?} after the kill; {} events in total",
        committed.len(),
        seen_on_a.len(),
        outbox.len(),
    );
    assert!(b.running() && a2.running());
}
