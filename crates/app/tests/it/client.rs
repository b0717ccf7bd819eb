//! The event consumer of `freshplan-client` against the real service: it hands out exactly the
//! committed events — each once, in commit order — across a restart from a stored checkpoint,
//! cut connections, a replica that ends its streams as it stops, and a refused token.

use std::time::Duration;

use futures_util::stream::BoxStream;
use futures_util::{StreamExt, TryStreamExt};
use serde_json::Value;

use freshplan_client::api::activities::{ActivityCreate, UserActivityType};
use freshplan_client::api::followups::{FollowUpFigures, ScopeKind};
use freshplan_client::consumer::Checkpoint;
use freshplan_client::events::CloudEvent;
use freshplan_client::{BoxError, Client};

use crate::helpers::*;
use crate::http_proxy::HttpProxy;
use crate::sse_client::{ids, settled_feed};

type Events = BoxStream<'static, freshplan_client::Result<(Checkpoint, CloudEvent)>>;

fn service() -> String {
    token("svc-consumer", &["service"], &[])
}

/// Creates `n` leads named `{prefix} {i}` as the admin (one `lead.created.v1` each).
async fn create_leads(app: &TestApp, prefix: &str, n: usize) {
    let leads = app.api(&admin()).leads();
    for i in 0..n {
        leads
            .create(&new_lead(&format!("{prefix} {i}")))
            .await
            .unwrap();
    }
}

/// The next `n` events within 15 s.
async fn take(events: &mut Events, n: usize) -> Vec<(Checkpoint, CloudEvent)> {
    let mut out = Vec::new();
    while out.len() < n {
        match tokio::time::timeout(Duration::from_secs(15), events.try_next()).await {
            Ok(Ok(Some(item))) => out.push(item),
            Ok(Ok(None)) => panic!("the consumer ended after {} of {n} events", out.len()),
            Ok(Err(e)) => panic!("the consumer failed after {} of {n} events: {e}", out.len()),
            Err(_) => panic!("{} of {n} events within 15 s", out.len()),
        }
    }
    out
}

/// Polls for `d`, expecting nothing (this also lets the consumer go live on the stream).
async fn quiet(events: &mut Events, d: Duration) {
    if let Ok(item) = tokio::time::timeout(d, events.next()).await {
        panic!("expected nothing more, got {item:?}");
    }
}

/// The outbox, as the admin's feed shows it once settled: the ids in commit order.
async fn outbox_ids(app: &TestApp) -> Vec<String> {
    let events: Vec<Value> =
        settled_feed(&app.client, &app.base, &admin(), &app.database_url).await;
    ids(&events)
}

fn event_ids(items: &[(Checkpoint, CloudEvent)]) -> Vec<String> {
    items.iter().map(|(_, e)| e.id.to_string()).collect()
}

#[actix_web::test]
async fn the_consumer_hands_out_the_committed_events_and_resumes_from_a_stored_checkpoint() {
    let app = spawn_app().await;
    create_leads(&app, "Bestand", 5).await;
    let api = app.api(&admin());
    let first = api.leads().list(Default::default()).await.unwrap().data[0].id;
    api.activities()
        .log(first, &ActivityCreate::new(UserActivityType::Note))
        .await
        .unwrap();
    let backlog = outbox_ids(&app).await;
    assert_eq!(backlog.len(), 6);

    // Catch-up in pages of 2: stop after the third event, in the middle of the second page.
    let svc = app.api(&service());
    let mut consumer = svc.events().consumer().page_limit(2).into_stream();
    let seen = take(&mut consumer, 3).await;
    drop(consumer);
    let stored = seen[2].0.to_string();
    assert!(!seen[2].0.is_exact(), "{stored}: mid-page");
    assert!(seen[1].0.is_exact(), "a page's last event has its cursor");

    // Meanwhile more commits.
    create_leads(&app, "Verpasst", 2).await;

    // A new consumer from the stored checkpoint: the rest of the backlog and what committed
    // meanwhile, then live events from the stream; nothing twice, nothing missing.
    let mut consumer = svc
        .events()
        .consumer()
        .page_limit(2)
        .resume_from(stored.parse().unwrap())
        .into_stream();
    let mut rest = take(&mut consumer, 5).await;
    quiet(&mut consumer, Duration::from_millis(500)).await;
    create_leads(&app, "Live", 2).await;
    rest.extend(take(&mut consumer, 2).await);
    quiet(&mut consumer, Duration::from_millis(700)).await;
    assert!(
        rest.last().unwrap().0.is_exact(),
        "a streamed event's checkpoint is its cursor"
    );

    let mut all = event_ids(&seen);
    all.extend(event_ids(&rest));
    assert_eq!(
        all,
        outbox_ids(&app).await,
        "each event once, in commit order"
    );
    assert_eq!(all[..6], backlog[..]);
    let live: Vec<&str> = rest[5..]
        .iter()
        .map(|(_, e)| e.event_type.as_str())
        .collect();
    assert_eq!(live, ["lead.created.v1", "lead.created.v1"]);

    // The checkpoint of the last event, stored and used again: nothing more to hand out.
    let last = rest.last().unwrap().0.to_string();
    let mut again = svc
        .events()
        .consumer()
        .resume_from(last.parse().unwrap())
        .into_stream();
    quiet(&mut again, Duration::from_millis(700)).await;
}

#[actix_web::test]
async fn cut_connections_are_resumed_without_loss_or_repeat() {
    let app = spawn_app().await;
    let proxy = HttpProxy::start(&app.base).await;
    let through_proxy = Client::new(&proxy.base()).unwrap().with_token(service());
    let mut consumer = through_proxy
        .events()
        .consumer()
        .backoff(Duration::from_millis(20), Duration::from_millis(200))
        .into_stream();
    create_leads(&app, "Vorher", 3).await;
    let mut got = take(&mut consumer, 3).await;
    quiet(&mut consumer, Duration::from_millis(300)).await;

    for round in 0..3 {
        let connections = proxy.accepted();
        // Events while the stream is up, the cut, events while it is down.
        create_leads(&app, &format!("Runde {round} live"), 2).await;
        got.extend(take(&mut consumer, 1).await);
        proxy.cut();
        create_leads(&app, &format!("Runde {round} getrennt"), 2).await;
        got.extend(take(&mut consumer, 3).await);
        quiet(&mut consumer, Duration::from_millis(300)).await;
        assert!(
            proxy.accepted() > connections,
            "round {round}: the consumer reconnected"
        );
    }
    assert_eq!(event_ids(&got), outbox_ids(&app).await);
    assert_eq!(got.len(), 15);
}

#[actix_web::test]
async fn a_replica_that_stops_ends_the_stream_and_the_consumer_resumes_on_another() {
    let a = spawn_app().await;
    let database_url = a.database_url.clone();
    let b = spawn_app_with(|c| c.database_url = database_url)
        .await
        .unwrap();
    let proxy = HttpProxy::start(&a.base).await;
    let mut consumer = Client::new(&proxy.base())
        .unwrap()
        .with_token(service())
        .events()
        .consumer()
        .backoff(Duration::from_millis(20), Duration::from_millis(200))
        .into_stream();
    create_leads(&a, "Auf A", 2).await;
    let mut got = take(&mut consumer, 2).await;
    quiet(&mut consumer, Duration::from_millis(300)).await;

    // The load balancer sends new connections to B; A stops gracefully, ending its streams.
    proxy.point_to(&b.base);
    a.stopper.stop(true).await;
    create_leads(&b, "Auf B", 2).await;
    got.extend(take(&mut consumer, 2).await);
    quiet(&mut consumer, Duration::from_millis(500)).await;
    // (B's TestApp names its own unused database: count A's, which both share.)
    let outbox = settled_feed(&b.client, &b.base, &admin(), &a.database_url).await;
    assert_eq!(event_ids(&got), ids(&outbox));
}

#[actix_web::test]
async fn a_refused_token_is_replaced_by_the_provider_or_ends_the_consumer() {
    let app = spawn_app().await;
    create_leads(&app, "Token", 2).await;
    // Expired beyond the validation's leeway: every request with it is 401.
    let expired = freshplan_app::auth::mint_hs256(SECRET, "svc", &["service"], &[], -120).unwrap();

    let without = app.api(&expired);
    let mut consumer = without.events().consumer().into_stream();
    let e = consumer.next().await.unwrap().unwrap_err();
    assert!(e.is_unauthorized(), "{e}");
    assert!(consumer.next().await.is_none(), "a 401 is final");

    let fresh = service();
    let with = app.api(&expired);
    let mut consumer = with
        .events()
        .consumer()
        .token_provider({
            let fresh = fresh.clone();
            move || {
                let fresh = fresh.clone();
                async move { Ok::<_, BoxError>(fresh) }
            }
        })
        .into_stream();
    let got = take(&mut consumer, 2).await;
    assert_eq!(event_ids(&got), outbox_ids(&app).await);
    assert_eq!(with.token(), Some(fresh), "the client has the fresh token");
}

/// The next figures of a client's cockpit stream within 5 s.
async fn next(
    figures: &mut BoxStream<'static, freshplan_client::Result<FollowUpFigures>>,
) -> FollowUpFigures {
    tokio::time::timeout(Duration::from_secs(5), figures.try_next())
        .await
        .expect("figures within 5 s")
        .unwrap()
        .expect("the stream ended")
}

#[actix_web::test]
async fn the_cockpit_figures_stream_through_the_client() {
    let app = spawn_app().await;
    let dashboard = app.api(&manager_de()).dashboard();
    let Err(e) = app
        .api(&token("svc", &["service"], &[]))
        .dashboard()
        .followup_stream(None)
        .await
    else {
        panic!("the service role has no cockpit");
    };
    assert!(e.is_forbidden(), "{e}");
    let mut figures = dashboard.followup_stream(Some("DE")).await.unwrap();
    let first = next(&mut figures).await;
    assert_eq!((first.pending_t3, first.scope), (0, ScopeKind::Territories));
    // The same figures as the GET endpoint (computed at their own time).
    let got = dashboard.followup(Some("DE")).await.unwrap();
    assert_eq!(
        FollowUpFigures {
            generated_at: first.generated_at,
            ..got
        },
        first
    );
    app.api(&rep("rep-a"))
        .leads()
        .create(&new_lead("Neu im Cockpit"))
        .await
        .unwrap();
    assert_eq!(next(&mut figures).await.pending_t3, 1);
}

#[actix_web::test]
async fn without_the_stream_the_consumer_polls_the_pages() {
    // FRESHPLAN_EVENTS=false: the stream answers 503, the feed pages still work.
    let app = spawn_app_with(|c| c.events = false).await.unwrap();
    let mut consumer = app
        .api(&service())
        .events()
        .consumer()
        .backoff(Duration::from_millis(20), Duration::from_millis(100))
        // Every 503 counts, every page with events starts the count again.
        .max_failures(10)
        .into_stream();
    create_leads(&app, "Ohne Stream", 2).await;
    let mut got = take(&mut consumer, 2).await;
    for round in 0..3 {
        create_leads(&app, &format!("Abgefragt {round}"), 1).await;
        got.extend(take(&mut consumer, 1).await);
    }
    assert_eq!(event_ids(&got), outbox_ids(&app).await);
}

#[actix_web::test]
async fn at_token_expired_the_consumer_asks_its_provider_and_goes_on_without_a_gap() {
    let app = spawn_app().await;
    create_leads(&app, "Vor Ablauf", 2).await;
    // A token that expires in about two seconds: its stream ends then with `token-expired`.
    let exp = time::OffsetDateTime::now_utc().unix_timestamp() + 3;
    let short = crate::keys::sign(
        jsonwebtoken::Algorithm::HS256,
        None,
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
        &crate::keys::claims(serde_json::json!({"sub": "svc", "roles": ["service"], "exp": exp})),
    );
    let asked = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let client = app.api(&short);
    let mut consumer = client
        .events()
        .consumer()
        .token_provider({
            let asked = std::sync::Arc::clone(&asked);
            move || {
                asked.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                async { Ok::<_, BoxError>(service()) }
            }
        })
        .into_stream();
    let mut got = take(&mut consumer, 2).await;
    // Live on the stream past the expiry: the stream ends with `token-expired`, the consumer
    // asks once and reconnects with the fresh token. (Which of the two signals it acted on —
    // that message, or the 401 a stream with an expired token gets — the scripted server of
    // crates/client/tests/consumer.rs tells apart; here the point is the real service.)
    let until_expired =
        Duration::from_secs((exp - time::OffsetDateTime::now_utc().unix_timestamp() + 2) as u64);
    quiet(&mut consumer, until_expired).await;
    assert_eq!(asked.load(std::sync::atomic::Ordering::SeqCst), 1);
    assert_ne!(
        client.token(),
        Some(short),
        "the client has the fresh token"
    );
    create_leads(&app, "Nach Ablauf", 2).await;
    got.extend(take(&mut consumer, 2).await);
    quiet(&mut consumer, Duration::from_millis(500)).await;
    assert_eq!(event_ids(&got), outbox_ids(&app).await);
    assert_eq!(asked.load(std::sync::atomic::Ordering::SeqCst), 1);
}
