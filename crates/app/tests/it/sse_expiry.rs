//! The SSE streams end at the caller's token expiry (ADR 0010): `GET /api/events/stream` and
//! `GET /api/dashboard/followup-stream` send a last `event: token-expired` message (no `id:`) at
//! the token's `exp` — not 30 s later, when the validation's leeway runs out — and end; a feed
//! client resumes with a fresh token and `Last-Event-ID` without losing or repeating an event.

use std::time::{Duration, Instant};

use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::helpers::*;
use crate::keys::{claims, sign, unauthorized};
use crate::sse_client::{Item, Message, SseClient, ids, settled_feed};

/// How late after `exp` the last message may arrive (a busy two-core machine).
const LATE: Duration = Duration::from_secs(5);

/// An HS256 token of the test apps for `sub` with `roles`/`territories` that expires at `exp`
/// (Unix seconds).
fn token_expiring(sub: &str, roles: &[&str], territories: &[&str], exp: i64) -> String {
    let c = claims(json!({"sub": sub, "roles": roles, "territories": territories, "exp": exp}));
    sign(
        Algorithm::HS256,
        None,
        &EncodingKey::from_secret(SECRET.as_bytes()),
        &c,
    )
}

/// `exp` at least `seconds` (and less than `seconds + 1`) from now.
fn exp_in(seconds: i64) -> i64 {
    OffsetDateTime::now_utc().unix_timestamp() + 1 + seconds
}

fn at(exp: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(exp).unwrap()
}

/// Reads `sse` until its `token-expired` message (every message before it is returned) and
/// checks that message: named, no `id:`, the reason and the expiry in its data, and sent at
/// `exp` (not before it, at most [`LATE`] after it). Then the response must end.
async fn messages_until_expiry(sse: &mut SseClient, exp: i64) -> Vec<Message> {
    let expires_at = at(exp);
    let mut before = Vec::new();
    let limit = Duration::try_from(expires_at - OffsetDateTime::now_utc()).unwrap() + LATE;
    let deadline = Instant::now() + limit;
    let last = loop {
        match sse
            .next_item(deadline.saturating_duration_since(Instant::now()))
            .await
        {
            Some(Item::Message(m)) if m.event.as_deref() == Some("token-expired") => break m,
            Some(Item::Message(m)) => before.push(m),
            Some(Item::Comment(_)) => {}
            Some(Item::End) => panic!("the stream ended without the token-expired message"),
            None => panic!(
                "no token-expired message within {LATE:?} of exp ({} messages before)",
                before.len()
            ),
        }
    };
    let received = OffsetDateTime::now_utc();
    assert!(
        received >= expires_at,
        "ended {} before exp",
        expires_at - received
    );
    assert!(
        received - expires_at <= LATE,
        "ended {} after exp",
        received - expires_at
    );
    assert_eq!(last.id, None, "Last-Event-ID must not move");
    assert_eq!(
        last.json(),
        json!({"reason": "token expired", "expiredAt": expires_at.format(&Rfc3339).unwrap()})
    );
    // And that was the last thing on the response: it ends, nothing goes on.
    assert_eq!(
        sse.next_item(Duration::from_secs(5)).await,
        Some(Item::End),
        "the stream goes on after token-expired"
    );
    before
}

/// Creates a lead every 100 ms until `until`; their ids, in commit order.
async fn keep_creating(app_base: String, until: Instant) -> Vec<String> {
    let client = reqwest::Client::new();
    let tok = admin();
    let mut created = Vec::new();
    while Instant::now() < until {
        let r = client
            .post(format!("{app_base}/api/leads"))
            .bearer_auth(&tok)
            .json(&lead(&format!("Ablauf {}", created.len())))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        let v: Value = r.json().await.unwrap();
        created.push(v["id"].as_str().unwrap().to_owned());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    created
}

fn subjects(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| e["subject"].as_str().unwrap().to_owned())
        .collect()
}

#[actix_web::test]
async fn the_event_stream_ends_at_token_expiry_and_a_fresh_token_resumes_without_loss_or_repeat() {
    let app = spawn_app().await;
    let url = format!("{}/api/events/stream", app.base);
    let exp = exp_in(5);
    let short = token_expiring("svc-billing", &["service"], &[], exp);
    let mut sse = SseClient::connect(&app.client, &url, &short, None).await;

    // Leads are committed before, around and after the expiry.
    let writer = actix_web::rt::spawn(keep_creating(
        app.base.clone(),
        Instant::now()
            + Duration::try_from(at(exp) - OffsetDateTime::now_utc()).unwrap()
            + Duration::from_millis(1500),
    ));
    let first = messages_until_expiry(&mut sse, exp).await;
    assert!(!first.is_empty(), "no event arrived before the expiry");
    assert!(first.iter().all(|m| m.event.is_none() && m.id.is_some()));

    let created = writer.await.unwrap();
    let all = settled_feed(&app.client, &app.base, &admin(), &app.database_url).await;
    assert_eq!(subjects(&all), created);
    assert!(
        all.len() > first.len(),
        "nothing was committed after the expiry"
    );

    // The expired token (still inside the validation's leeway) opens no new stream.
    let last_seen = first.last().unwrap().id.clone().unwrap();
    let r = app
        .client
        .get(&url)
        .bearer_auth(&short)
        .header("last-event-id", &last_seen)
        .send()
        .await
        .unwrap();
    let (problem, challenge) = unauthorized(r).await;
    assert!(challenge.contains("invalid_token"), "{challenge}");
    assert!(problem["detail"].as_str().unwrap().contains("expired"));

    // A fresh token and the last processed id: exactly the events committed since, once each.
    let fresh = token("svc-billing", &["service"], &[]);
    let mut resumed = SseClient::connect(&app.client, &url, &fresh, Some(&last_seen)).await;
    let mut second = Vec::new();
    for _ in first.len()..all.len() {
        let m = resumed
            .next_message(Duration::from_secs(10))
            .await
            .unwrap_or_else(|| panic!("{} of {} events", second.len(), all.len() - first.len()));
        second.push(m);
    }
    assert!(
        resumed
            .next_message(Duration::from_millis(700))
            .await
            .is_none(),
        "an event came twice"
    );
    let received: Vec<Value> = first.iter().chain(&second).map(|m| m.json()).collect();
    assert_eq!(
        ids(&received),
        ids(&all),
        "every event once, in commit order"
    );
}

#[actix_web::test]
async fn the_dashboard_stream_ends_at_token_expiry() {
    let app = spawn_app().await;
    let url = format!("{}/api/dashboard/followup-stream", app.base);
    let exp = exp_in(4);
    let short = token_expiring("manager-de", &["manager"], &["DE"], exp);
    let mut sse = SseClient::connect(&app.client, &url, &short, None).await;
    let first = sse.next_message(Duration::from_secs(5)).await.unwrap();
    assert_eq!(first.event.as_deref(), Some("followup-metrics"));
    assert_eq!(first.json()["pendingT3"], 0);
    // Live until the expiry.
    app.create_ok(&admin(), lead("Kurz vor Ablauf")).await;
    let before = messages_until_expiry(&mut sse, exp).await;
    assert_eq!(before.len(), 1, "{before:?}");
    assert_eq!(before[0].event.as_deref(), Some("followup-metrics"));
    assert_eq!(before[0].json()["pendingT3"], 1);

    let r = app
        .client
        .get(&url)
        .bearer_auth(&short)
        .send()
        .await
        .unwrap();
    unauthorized(r).await;
}

#[actix_web::test]
async fn a_token_past_its_exp_but_inside_the_leeway_gets_no_stream() {
    let app = spawn_app().await;
    let exp = OffsetDateTime::now_utc().unix_timestamp() - 5;
    let service = token_expiring("svc-billing", &["service"], &[], exp);
    let manager = token_expiring("manager-de", &["manager"], &["DE"], exp);
    // Requests still accept it (clock skew with the identity provider) …
    assert_eq!(app.get(&service, "/api/events").await.status(), 200);
    assert_eq!(
        app.get(&manager, "/api/dashboard/followup").await.status(),
        200
    );
    // … a stream, which would end at once, does not.
    let (problem, challenge) = unauthorized(app.get(&service, "/api/events/stream").await).await;
    assert!(challenge.contains("invalid_token"), "{challenge}");
    let expired_at = at(exp).format(&Rfc3339).unwrap();
    assert!(
        problem["detail"].as_str().unwrap().contains(&expired_at),
        "{problem}"
    );
    unauthorized(app.get(&manager, "/api/dashboard/followup-stream").await).await;
}
