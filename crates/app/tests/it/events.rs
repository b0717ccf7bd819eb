//! The event feed (SPEC §7.5) and the event side of the service over real HTTP: paging and
//! `nextCursor`, 400/403, the SSE stream (live, resumable, keep-alive, lag), `/health/ready` with
//! the listener, the metrics, `FRESHPLAN_EVENTS=false` and the graceful stop.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use reqwest::Method;
use serde_json::{Value, json};

use freshplan_client::api::health::State;
use freshplan_client::events::{CloudEvent, Cursor, EventQuery};
use freshplan_client::sse::{Connection, Message};

use crate::helpers::*;
use crate::sse_client::{Item, SseClient, ids, settled_feed, whole_feed};

fn service() -> String {
    token("svc-billing", &["service"], &[])
}

/// Creates `n` leads named `{prefix} {i}` (in order) as the admin; their ids.
async fn create_leads(app: &TestApp, prefix: &str, n: usize) -> Vec<String> {
    let mut out = Vec::new();
    for i in 0..n {
        let lead = app
            .create_ok(&admin(), lead(&format!("{prefix} {i}")))
            .await;
        out.push(lead["id"].as_str().unwrap().to_owned());
    }
    out
}

async fn feed(app: &TestApp, tok: &str, query: &str) -> reqwest::Response {
    app.get(tok, &format!("/api/events{query}")).await
}

/// A page of the feed through the client, its events written back as JSON: comparing them
/// with the raw JSON of the stream's messages (and of the raw pages) checks that the typed
/// CloudEvent is true to the wire.
async fn page(app: &TestApp, query: EventQuery) -> (Vec<Value>, String) {
    let page = app.api(&admin()).events().page(&query).await.unwrap();
    (
        page.events
            .iter()
            .map(|e| serde_json::to_value(e).unwrap())
            .collect(),
        page.next_cursor,
    )
}

fn events_after(cursor: &str) -> EventQuery {
    EventQuery::new().after(Cursor::new(cursor))
}

/// Waits until the feed shows every committed event (see [`settled_feed`]).
async fn settle(app: &TestApp) {
    settled_feed(&app.client, &app.base, &admin(), &app.database_url).await;
}

fn subjects(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| e["subject"].as_str().unwrap().to_owned())
        .collect()
}

fn stream_url(app: &TestApp, query: &str) -> String {
    format!("{}/api/events/stream{query}", app.base)
}

#[actix_web::test]
async fn the_feed_pages_in_commit_order_and_next_cursor_is_where_to_resume() {
    let app = spawn_app().await;
    // Nothing yet: an empty page, the start cursor; never cached.
    let r = feed(&app, &admin(), "").await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["cache-control"], "no-store");
    let (events, next) = page(&app, EventQuery::new()).await;
    assert!(events.is_empty());
    assert_eq!(next, "0-0");

    let leads = create_leads(&app, "Feed", 5).await;
    settle(&app).await;
    let (all, last) = page(&app, EventQuery::new()).await;
    assert_eq!(
        subjects(&all),
        leads,
        "one lead.created.v1 per lead, in commit order"
    );
    for e in &all {
        assert_eq!(e["type"], "lead.created.v1");
        assert_eq!(e["specversion"], "1.0");
        assert_eq!(e["source"], "freshplan.leads");
        assert_eq!(e["datacontenttype"], "application/json");
        assert!(e["idempotencykey"].is_string() && e["data"].is_object());
    }
    // Pages of two: the same events, each page resuming at the previous nextCursor; the last,
    // empty page echoes the cursor.
    let (paged, paged_last) = whole_feed(&app.client, &app.base, &admin(), 2).await;
    assert_eq!(paged, all);
    assert_eq!(paged_last, last);
    let (first_two, cursor_two) = page(&app, EventQuery::new().limit(2)).await;
    assert_eq!(first_two, all[..2]);
    let (rest, rest_cursor) = page(&app, events_after(&cursor_two)).await;
    assert_eq!(rest, all[2..]);
    assert_eq!(rest_cursor, last);
    // Nothing new: empty, nextCursor unchanged (always present).
    let (none, same) = page(&app, events_after(&last)).await;
    assert!(none.is_empty());
    assert_eq!(same, last);

    // A change later: exactly it, after the cursor the client holds.
    let sixth = create_leads(&app, "Feed late", 1).await;
    settle(&app).await;
    let (new, newest) = page(&app, events_after(&last)).await;
    assert_eq!(subjects(&new), sixth);
    assert_ne!(newest, last);

    // The type filter: a logged note is lead.activity.logged.v1.
    let r = app
        .req(
            Method::POST,
            &format!("/api/leads/{}/activities", leads[0]),
            &admin(),
        )
        .json(&json!({"type": "NOTE", "description": "Notiz"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    settle(&app).await;
    let (notes, _) = page(
        &app,
        EventQuery::new().event_type("lead.activity.logged.v1"),
    )
    .await;
    assert_eq!(notes.len(), 1);
    assert_eq!(notes[0]["subject"], leads[0].as_str());
    let (created, _) = page(
        &app,
        EventQuery::new().event_type("lead.created.v1").limit(1000),
    )
    .await;
    assert_eq!(created.len(), 6);
    let (after_filter, _) = page(&app, events_after(&last).event_type("lead.created.v1")).await;
    assert_eq!(subjects(&after_filter), sixth);

    // The service role reads the same feed.
    let all = app
        .api(&service())
        .events()
        .page(&EventQuery::new().limit(1000))
        .await
        .unwrap();
    assert_eq!(all.events.len(), 7);
}

#[actix_web::test]
async fn the_feed_refuses_bad_queries_with_400_and_other_roles_with_403() {
    let app = spawn_app().await;
    create_leads(&app, "Refuse", 1).await;
    for bad in [
        "?after=garbage",
        "?after=01-2",
        "?after=1-",
        "?after=-1",
        "?limit=0",
        "?limit=1001",
        "?limit=ten",
        "?limit=-1",
        "?type=lead.nope.v1",
        "?type=",
        "?foo=1",
        "?limit=1&limit=2",
    ] {
        let v = problem(feed(&app, &admin(), bad).await, 400).await;
        assert!(!v["errors"].as_array().unwrap().is_empty(), "{bad}: {v}");
    }
    for ok in [
        "?limit=1",
        "?limit=1000",
        "?after=0-0",
        "?type=lead.followup.processed.v1",
    ] {
        assert_eq!(feed(&app, &admin(), ok).await.status(), 200, "{ok}");
    }
    for tok in [
        manager_de(),
        rep("rep-1"),
        token("viewer-1", &["viewer"], &["DE"]),
    ] {
        problem(feed(&app, &tok, "").await, 403).await;
        let events = app.api(&tok).events();
        let e = events.page(&EventQuery::new()).await.unwrap_err();
        assert!(e.is_forbidden(), "{e}");
        let e = events.stream(None, None).await.unwrap_err();
        assert!(e.is_forbidden(), "{e}");
        // the consumer ends with it (no retry can help)
        let mut consumer = events.consumer().into_stream();
        assert!(consumer.next().await.unwrap().unwrap_err().is_forbidden());
        assert!(consumer.next().await.is_none());
    }
    let r = app
        .client
        .get(format!("{}/api/events", app.base))
        .send()
        .await
        .unwrap();
    problem(r, 401).await;
    let anonymous = app.api("");
    anonymous.clear_token();
    let e = anonymous
        .events()
        .page(&EventQuery::new())
        .await
        .unwrap_err();
    assert!(e.is_unauthorized(), "{e}");
    // a typed query out of range is 400 naming the parameter
    let e = app
        .api(&admin())
        .events()
        .page(&EventQuery::new().limit(1001))
        .await
        .unwrap_err();
    assert_eq!(e.field_error("limit"), Some("must be between 1 and 1000"));

    // The stream: a bad cursor in the query or in Last-Event-ID, `limit` (not a stream
    // parameter) and unknown types are 400.
    for bad in ["?after=x", "?limit=10", "?type=nope"] {
        problem(
            app.get(&admin(), &format!("/api/events/stream{bad}")).await,
            400,
        )
        .await;
    }
    let r = app
        .req(Method::GET, "/api/events/stream", &admin())
        .header("last-event-id", "not-a-cursor")
        .send()
        .await
        .unwrap();
    let v = problem(r, 400).await;
    assert_eq!(v["errors"][0]["field"], "Last-Event-ID");
}

#[actix_web::test]
async fn the_stream_sends_events_committed_after_connecting_with_their_cursor_as_id() {
    let app = spawn_app().await;
    let before = create_leads(&app, "Vorher", 2).await;
    settle(&app).await;
    let mut sse = SseClient::connect(&app.client, &stream_url(&app, ""), &admin(), None).await;
    let (_, cursor_at_connect) = page(&app, EventQuery::new()).await;

    let after = create_leads(&app, "Nachher", 3).await;
    let mut got = Vec::new();
    for _ in 0..3 {
        got.push(
            sse.next_message(Duration::from_secs(10))
                .await
                .expect("an event within 10 s"),
        );
    }
    // Only the new ones (without a cursor the stream starts with new events), in commit order,
    // one CloudEvent per message, no event name.
    let events: Vec<Value> = got.iter().map(|m| m.json()).collect();
    assert_eq!(subjects(&events), after);
    assert!(got.iter().all(|m| m.event.is_none()));
    // Nothing more comes (no duplicate, nothing from before the connection).
    assert!(sse.next_message(Duration::from_millis(700)).await.is_none());
    assert!(!subjects(&events).iter().any(|s| before.contains(s)));

    // Each id is the event's feed cursor: a page of one after the previous id is that event,
    // and its nextCursor is the id.
    let mut previous = cursor_at_connect;
    for (m, e) in got.iter().zip(&events) {
        let id = m.id.clone().expect("id: is set");
        let (one, next) = page(&app, events_after(&previous).limit(1)).await;
        assert_eq!(one, vec![e.clone()]);
        assert_eq!(next, id);
        previous = id;
    }

    // The type filter applies to the stream too.
    let mut notes = SseClient::connect(
        &app.client,
        &stream_url(&app, "?type=lead.activity.logged.v1"),
        &service(),
        None,
    )
    .await;
    create_leads(&app, "Ohne Notiz", 1).await;
    let r = app
        .req(
            Method::POST,
            &format!("/api/leads/{}/activities", after[1]),
            &admin(),
        )
        .json(&json!({"type": "NOTE"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let m = notes.next_message(Duration::from_secs(10)).await.unwrap();
    assert_eq!(m.json()["type"], "lead.activity.logged.v1");
    assert_eq!(m.json()["subject"], after[1].as_str());
    assert!(
        notes
            .next_message(Duration::from_millis(500))
            .await
            .is_none()
    );
}

#[actix_web::test]
async fn last_event_id_resumes_with_exactly_the_missed_events_in_order() {
    let app = spawn_app().await;
    let mut sse = SseClient::connect(&app.client, &stream_url(&app, ""), &admin(), None).await;
    create_leads(&app, "Gesehen", 2).await;
    let first = sse.next_message(Duration::from_secs(10)).await.unwrap();
    let second = sse.next_message(Duration::from_secs(10)).await.unwrap();
    drop(sse); // the client goes away

    let missed = create_leads(&app, "Verpasst", 4).await;
    let last_seen = second.id.clone().unwrap();
    // Resume with Last-Event-ID (what EventSource sends on reconnect; here the client's raw
    // stream): exactly the four, in order, then live events.
    let mut resumed = app
        .api(&admin())
        .events()
        .stream(Some(&Cursor::new(last_seen.clone())), None)
        .await
        .unwrap();
    let mut got = Vec::new();
    for _ in 0..4 {
        let m = next_event(&mut resumed, Duration::from_secs(10))
            .await
            .expect("an event within 10 s");
        assert!(m.event.is_none() && m.id.is_some());
        got.push(serde_json::from_str::<CloudEvent>(&m.data).unwrap());
    }
    let got_subjects: Vec<String> = got.iter().map(|e| e.subject.clone().unwrap()).collect();
    assert_eq!(got_subjects, missed);
    assert!(got.iter().all(|e| e.event_type == "lead.created.v1"));
    let live = create_leads(&app, "Live", 1).await;
    let m = next_event(&mut resumed, Duration::from_secs(10))
        .await
        .unwrap();
    let live_event: CloudEvent = serde_json::from_str(&m.data).unwrap();
    assert_eq!(live_event.subject.as_deref(), Some(live[0].as_str()));
    assert_eq!(resumed.last_event_id(), m.id.unwrap());
    assert!(
        next_event(&mut resumed, Duration::from_millis(700))
            .await
            .is_none()
    );

    // `after` does the same; Last-Event-ID wins over it (a reconnecting EventSource keeps the
    // URL it started with).
    let from_first = first.id.clone().unwrap();
    let mut by_query = SseClient::connect(
        &app.client,
        &stream_url(&app, &format!("?after={from_first}")),
        &admin(),
        None,
    )
    .await;
    let mut all_after_first = Vec::new();
    for _ in 0..6 {
        all_after_first.push(
            by_query
                .next_message(Duration::from_secs(10))
                .await
                .unwrap(),
        );
    }
    assert_eq!(all_after_first[0].id, second.id);
    assert!(
        by_query
            .next_message(Duration::from_millis(500))
            .await
            .is_none()
    );
    let mut both = SseClient::connect(
        &app.client,
        &stream_url(&app, "?after=0-0"),
        &admin(),
        Some(&last_seen),
    )
    .await;
    let m = both.next_message(Duration::from_secs(10)).await.unwrap();
    assert_eq!(m.json()["subject"], missed[0].as_str());
}

/// The next message of a client stream within `limit` (`None`: none came); panics when the
/// stream ends.
async fn next_event(conn: &mut Connection, limit: Duration) -> Option<Message> {
    let m = tokio::time::timeout(limit, conn.next_message())
        .await
        .ok()?;
    Some(m.unwrap().expect("the event stream ended"))
}

#[actix_web::test]
async fn a_quiet_stream_sends_keep_alive_comments() {
    let app = spawn_app_with(|c| c.sse_keep_alive = Duration::from_millis(200))
        .await
        .unwrap();
    let mut sse = SseClient::connect(&app.client, &stream_url(&app, ""), &admin(), None).await;
    let started = Instant::now();
    for _ in 0..3 {
        match sse.next_item(Duration::from_secs(5)).await {
            Some(Item::Comment(c)) => assert_eq!(c, "keep-alive"),
            other => panic!("expected a keep-alive comment, got {other:?}"),
        }
    }
    assert!(
        started.elapsed() >= Duration::from_millis(550),
        "one per interval, not a flood: {:?}",
        started.elapsed()
    );
    // An event in between is still delivered.
    let lead = create_leads(&app, "Zwischendurch", 1).await;
    let m = sse.next_message(Duration::from_secs(10)).await.unwrap();
    assert_eq!(m.json()["subject"], lead[0].as_str());
}

#[actix_web::test]
async fn a_subscriber_that_falls_behind_catches_up_from_the_outbox_without_loss_or_repeat() {
    // A broadcast of one event: concurrent commits overrun it and the stream must catch up
    // from the outbox.
    let app = spawn_app_with(|c| c.sse_buffer = 1).await.unwrap();
    let events = app.events.clone().unwrap();
    let mut sse = SseClient::connect(&app.client, &stream_url(&app, ""), &admin(), None).await;
    let tok = admin();
    let mut created = 0;
    for burst in 0..20 {
        let futures = (0..20).map(|i| app.create(&tok, lead(&format!("Stau {burst}-{i}"))));
        for r in futures_util::future::join_all(futures).await {
            assert_eq!(r.status(), 201);
            created += 1;
        }
        if events.stream_lags() > 0 && burst >= 1 {
            break;
        }
    }
    assert!(
        events.stream_lags() > 0,
        "the stream never lagged behind a broadcast of 1"
    );
    let mut got = Vec::new();
    while got.len() < created {
        match sse.next_message(Duration::from_secs(15)).await {
            Some(m) => got.push(m),
            None => panic!("{} of {created} events arrived", got.len()),
        }
    }
    assert!(sse.next_message(Duration::from_millis(700)).await.is_none());
    let outbox = settled_feed(&app.client, &app.base, &admin(), &app.database_url).await;
    let streamed: Vec<Value> = got.iter().map(|m| m.json()).collect();
    assert_eq!(
        ids(&streamed),
        ids(&outbox),
        "every event once, in commit order"
    );
    let cursors: Vec<String> = got.iter().map(|m| m.id.clone().unwrap()).collect();
    let mut unique = cursors.clone();
    unique.dedup();
    assert_eq!(unique.len(), cursors.len());
}

#[actix_web::test]
async fn ready_and_metrics_report_the_listener_and_the_published_events() {
    let app = spawn_app().await;
    let body = wait_ready(&app).await;
    assert_eq!(
        body,
        json!({"status": "UP", "database": "UP", "eventListener": "UP"})
    );
    create_leads(&app, "Metrik", 2).await;
    let mut sse = SseClient::connect(&app.client, &stream_url(&app, ""), &admin(), None).await;
    create_leads(&app, "Metrik live", 1).await;
    sse.next_message(Duration::from_secs(10)).await.unwrap();
    // The gauge follows the listener within its refresh interval.
    let started = Instant::now();
    let text = loop {
        let text = app
            .client
            .get(format!("{}/metrics", app.base))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if text
            .lines()
            .any(|l| l == "freshplan_event_listener_connected 1")
        {
            break text;
        }
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "gauge not 1:\n{text}"
        );
        actix_web::rt::time::sleep(Duration::from_millis(50)).await;
    };
    let published = r#"freshplan_events_published_total{event_type="lead.created.v1",module="leads",result="ok"} 3"#;
    assert!(text.lines().any(|l| l == published), "{text}");
    assert!(
        text.lines().any(|l| l.starts_with(
            r#"freshplan_events_consumed_total{event_type="lead.created.v1",module="event-stream",result="ok"}"#
        )),
        "{text}"
    );
}

/// Waits for `/health/ready` to answer 200; its body.
async fn wait_ready(app: &TestApp) -> Value {
    let started = Instant::now();
    loop {
        let r = app
            .client
            .get(format!("{}/health/ready", app.base))
            .send()
            .await
            .unwrap();
        if r.status() == 200 {
            return r.json().await.unwrap();
        }
        assert!(started.elapsed() < Duration::from_secs(20), "not ready");
        actix_web::rt::time::sleep(Duration::from_millis(50)).await;
    }
}

#[actix_web::test]
async fn with_events_off_the_outbox_is_still_written_and_read_but_not_streamed() {
    let app = spawn_app_with(|c| c.events = false).await.unwrap();
    assert!(app.events.is_none());
    let body = wait_ready(&app).await;
    assert_eq!(body["eventListener"], "OFF");
    let leads = create_leads(&app, "Ohne Pipeline", 2).await;
    settle(&app).await;
    let (all, _) = page(&app, EventQuery::new()).await;
    assert_eq!(subjects(&all), leads);
    let v = problem(app.get(&admin(), "/api/events/stream").await, 503).await;
    assert!(
        v["detail"].as_str().unwrap().contains("switched off"),
        "{v}"
    );
}

#[actix_web::test]
async fn stopping_ends_open_streams_so_the_graceful_stop_does_not_wait_for_them() {
    let app = spawn_app().await;
    let mut sse = SseClient::connect(&app.client, &stream_url(&app, ""), &admin(), None).await;
    let started = Instant::now();
    let stopper = app.stopper.clone();
    let stop = actix_web::rt::spawn(async move { stopper.stop(true).await });
    loop {
        match sse.next_item(Duration::from_secs(10)).await {
            Some(Item::End) => break,
            Some(Item::Comment(_)) => {}
            other => panic!("expected the stream to end, got {other:?}"),
        }
    }
    stop.await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the stop waited {:?} (the shutdown timeout is 30 s)",
        started.elapsed()
    );
    // The pipeline is shut down after the server: the listener is gone.
    let events = app.events.clone().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while events.listener().is_some() {
        assert!(Instant::now() < deadline, "the pipeline was not shut down");
        actix_web::rt::time::sleep(Duration::from_millis(20)).await;
    }
}

#[actix_web::test]
async fn ready_is_503_while_the_event_listener_is_down_and_the_stream_catches_up_after() {
    let (proxy, app) = crate::pg_proxy::app_behind_proxy().await;
    let events = app.events.clone().unwrap();
    wait_ready(&app).await;
    let mut sse = SseClient::connect(&app.client, &stream_url(&app, ""), &admin(), None).await;
    let metrics = || async {
        app.client
            .get(format!("{}/metrics", app.base))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    };

    // The listener's connection drops and cannot come back; the database is fine.
    proxy.block_listener(true);
    let started = Instant::now();
    let down = loop {
        let r = app
            .client
            .get(format!("{}/health/ready", app.base))
            .send()
            .await
            .unwrap();
        if r.status() == 503 {
            break problem(r, 503).await;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "still ready");
        actix_web::rt::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(down["database"], "UP");
    assert_eq!(down["eventListener"], "DOWN");
    // The client reads the 503 as a health report.
    let health = app.api(&admin()).health().ready().await.unwrap();
    assert_eq!(
        (health.status, health.database, health.event_listener),
        (State::Down, Some(State::Up), Some(State::Down))
    );
    assert_eq!(down["detail"], "The event listener is not connected.");
    // Writes go on (the outbox is part of the transaction); the feed reads them.
    let during = create_leads(&app, "Waehrend", 2).await;
    settle(&app).await;
    let (all, _) = page(&app, EventQuery::new()).await;
    assert_eq!(subjects(&all), during);
    let started = Instant::now();
    while !metrics()
        .await
        .contains("freshplan_event_listener_connected 0")
    {
        assert!(started.elapsed() < Duration::from_secs(5), "gauge not 0");
        actix_web::rt::time::sleep(Duration::from_millis(50)).await;
    }
    actix_web::rt::time::sleep(Duration::from_millis(1500)).await;
    assert!(!events.listener_connected(), "refused reconnects stay down");

    // It may come back: ready again, the reconnect counted, and the stream gets what committed
    // meanwhile (the listener catches up after reconnecting).
    proxy.block_listener(false);
    wait_ready(&app).await;
    let mut got = Vec::new();
    for _ in 0..2 {
        got.push(
            sse.next_message(Duration::from_secs(10))
                .await
                .unwrap()
                .json(),
        );
    }
    assert_eq!(subjects(&got), during);
    let text = metrics().await;
    assert!(
        text.contains("freshplan_event_listener_connected 1"),
        "{text}"
    );
    let reconnects: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("freshplan_event_listener_reconnects_total "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(reconnects >= 1, "{text}");
    assert!(events.listener().unwrap().reconnects >= 1);
}
