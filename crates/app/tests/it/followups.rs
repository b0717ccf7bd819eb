//! Follow-ups, mail and the cockpit over real HTTP, against a fresh PostgreSQL database per test
//! and — for delivery — a real SMTP server on 127.0.0.1 ([`crate::smtp_sink`]) (SPEC §6, §8, §9,
//! §10, §11): runs and their lock, the run log, the mail outbox API, delivery and the unsubscribe
//! link, the cockpit figures per role and their stream, the schedules on two replicas, and the
//! configuration the service refuses to start with.
//!
//! Follow-ups go out only inside business hours (SPEC §6), so the follow-up side of these apps
//! runs on a clock that started at a recent business hour and runs at real speed
//! ([`business_clock`]); everything else runs on the wall clock. "Due" is made by registering
//! leads in the past (admins may backdate `registeredAt`), and a later stage is made due by
//! moving a registration further back through the lead store's port ([`move_registration`]).

use std::collections::BTreeSet;
use std::net::TcpListener;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mail_parser::MessageParser;
use reqwest::{Client, Method, Response};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use uuid::Uuid;

use freshplan_app::config::{Config, FollowUpClock};
use freshplan_app::followups::FollowUps;
use freshplan_client::api::followups::{FollowUpFigures, RunList, RunReport, ScopeKind};
use freshplan_client::api::mails::{Mail, MailPage, MailStatus};
use freshplan_client::mails::MailQuery;
use freshplan_followup::Stage;
use freshplan_followup::unsubscribe::{DEVELOPMENT_SECRET, UnsubscribeToken};
use freshplan_kernel::{Actor, Clock, TerritoryId};
use freshplan_leads::ports::{LeadStore, LeadTx};
use freshplan_store_postgres::{PgFollowUpStore, PgLeadStore};
use freshplan_territory::Territory;

use crate::helpers::*;
use crate::openapi_schema::{assert_conforms, assert_round_trips, response_schema};
use crate::sse_client::{Item, SseClient};
use freshplan_api as api;
use freshplan_mail_smtp::testing::Sink;

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

fn ts(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap()
}

/// A clock running at real speed, `behind` the wall clock.
struct Behind(time::Duration);

impl Clock for Behind {
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc() - self.0
    }
}

/// 10:00 UTC (11:00 or 12:00 local time) of the latest day up to now that is a business day in
/// both territories.
fn business_hour() -> OffsetDateTime {
    let now = OffsetDateTime::now_utc();
    (0..30)
        .map(|days| (now - time::Duration::days(days)).replace_time(time::macros::time!(10:00)))
        .find(|t| {
            *t <= now
                && TerritoryId::ALL
                    .into_iter()
                    .all(|territory| freshplan_territory::next_business_slot(territory, *t) == *t)
        })
        .expect("a business day within 30 days")
}

/// The follow-up clock of these tests: from the latest business hour, at real speed.
fn business_clock() -> Arc<dyn Clock> {
    Arc::new(Behind(OffsetDateTime::now_utc() - business_hour()))
}

/// Runs the app's follow-up side on [`business_clock`].
pub(crate) fn at_business_hours(c: &mut Config) {
    c.followup_clock = FollowUpClock::new(business_clock());
}

/// The follow-up clock's now (the apps' clocks share the offset up to microseconds).
fn followup_now() -> OffsetDateTime {
    business_clock().now()
}

/// A registration whose T+3 is due (and inside business hours on the follow-up clock), while
/// T+7 is not due yet: 7 days minus 10 minutes before the follow-up clock's now.
pub(crate) fn t3_due_registration() -> OffsetDateTime {
    let now = followup_now();
    let registered = now - time::Duration::days(7) + time::Duration::minutes(10);
    assert!(freshplan_followup::send_at(TerritoryId::De, registered, Stage::T3) <= now);
    registered
}

/// A German lead with a contact person and a business type; `email`, consent and a backdated
/// registration as given.
fn lead_with(
    name: &str,
    email: Option<&str>,
    consent: bool,
    registered_at: Option<OffsetDateTime>,
) -> Value {
    let mut body = json!({
        "companyName": name, "countryCode": "DE", "city": "Berlin", "postalCode": "10115",
        "contactPerson": "Anna Berger", "businessType": "RESTAURANT", "emailConsent": consent,
    });
    if let Some(email) = email {
        body["email"] = json!(email);
    }
    if let Some(at) = registered_at {
        body["registeredAt"] = json!(ts(at));
    }
    body
}

fn id(lead: &Value) -> String {
    lead["id"].as_str().unwrap().to_owned()
}

fn keys(v: &Value) -> BTreeSet<String> {
    v.as_object()
        .unwrap_or_else(|| panic!("not an object: {v}"))
        .keys()
        .cloned()
        .collect()
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

async fn json_ok(r: Response) -> Value {
    let status = r.status();
    let body = r.text().await.unwrap();
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

async fn run(app: &TestApp, tok: &str) -> Response {
    app.req(Method::POST, "/api/followups/run", tok)
        .send()
        .await
        .unwrap()
}

/// A run as the admin, through the client.
pub(crate) async fn run_ok(app: &TestApp) -> RunReport {
    app.api(&admin()).followups().run().await.unwrap()
}

pub(crate) fn counts(report: &RunReport) -> (u32, u32, u32) {
    (report.t3_count, report.t7_count, report.skipped_count)
}

async fn lead_of(app: &TestApp, lead: &str) -> Value {
    json_ok(app.get(&admin(), &format!("/api/leads/{lead}")).await).await
}

/// The activity types of a lead's timeline, newest first.
async fn timeline(app: &TestApp, lead: &str) -> Vec<String> {
    let page = json_ok(
        app.get(&admin(), &format!("/api/leads/{lead}/activities?size=200"))
            .await,
    )
    .await;
    page["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["type"].as_str().unwrap().to_owned())
        .collect()
}

fn count_of(types: &[String], t: &str) -> usize {
    types.iter().filter(|x| *x == t).count()
}

async fn metrics_text(app: &TestApp) -> String {
    app.client
        .get(format!("{}/metrics", app.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// The value of one series (`name{labels}` exactly as exposed) in a Prometheus text page.
fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        l.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

/// Waits until `check` holds (at most `limit`), returning the last value seen.
async fn eventually<T, F, Fut>(
    limit: Duration,
    what: &str,
    mut probe: F,
    check: impl Fn(&T) -> bool,
) -> T
where
    T: serde::Serialize,
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = T>,
{
    let started = Instant::now();
    loop {
        let v = probe().await;
        if check(&v) {
            return v;
        }
        assert!(
            started.elapsed() < limit,
            "{what}: still {} after {limit:?}",
            serde_json::to_value(&v).unwrap()
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Moves a lead's registration back by `by`, through the lead store's port as the system — the
/// tests' time travel, so that a later stage becomes due.
async fn move_registration(database_url: &str, lead: &str, by: time::Duration) {
    let pool = freshplan_store_postgres::connect(database_url, 1)
        .await
        .unwrap();
    let store = PgLeadStore::new(pool.clone());
    let mut tx = store.begin(&Actor::system()).await.unwrap();
    let mut l = tx.get(lead.parse().unwrap()).await.unwrap().unwrap();
    let old = l.version;
    l.registered_at -= by;
    l.version += 1;
    tx.update(&l, old).await.unwrap();
    tx.commit().await.unwrap();
    pool.close().await;
}

/// The configuration of [`spawn_app_with`], for a replica started here.
fn test_config(database_url: &str) -> Config {
    Config {
        bind: "127.0.0.1:0".into(),
        hs256_secret: Some(SECRET.into()),
        pool_size: 4,
        workers: Some(1),
        unsubscribe_secret: Some(UNSUBSCRIBE_SECRET.into()),
        public_url: Some(PUBLIC_URL.into()),
        followup_enabled: false,
        sweep_enabled: false,
        ..Config::with_defaults(database_url)
    }
}

/// Like [`spawn_app_with`], but on `database_url` when given (a second replica of the same
/// database), and keeping the replica's follow-up side (the cockpit hub's query count).
async fn spawn_replica(
    database_url: Option<&str>,
    adjust: impl FnOnce(&mut Config),
) -> (TestApp, Arc<FollowUps>) {
    let database_url = match database_url {
        Some(url) => url.to_owned(),
        None => fresh_database().await,
    };
    let mut config = test_config(&database_url);
    adjust(&mut config);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let running = freshplan_app::start(&config, listener)
        .await
        .expect("start");
    let followups = running.followups().clone();
    let app = TestApp {
        base: format!("http://127.0.0.1:{port}"),
        client: Client::new(),
        database_url,
        stopper: running.stopper(),
        events: running.events().cloned(),
    };
    actix_web::rt::spawn(running.run());
    let started = Instant::now();
    while app
        .client
        .get(format!("{}/health/ready", app.base))
        .send()
        .await
        .map(|r| r.status() != 200)
        .unwrap_or(true)
    {
        assert!(started.elapsed() < Duration::from_secs(30), "not ready");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    (app, followups)
}

async fn openapi(app: &TestApp) -> Value {
    json_ok(
        app.client
            .get(format!("{}/api/openapi.json", app.base))
            .send()
            .await
            .unwrap(),
    )
    .await
}

// ---------------------------------------------------------------------------------------------
// Runs, the run lock, the run log, the outbox API
// ---------------------------------------------------------------------------------------------

#[actix_web::test]
async fn a_run_over_http_sends_due_follow_ups_records_them_and_holds_the_cluster_lock() {
    let app = spawn_app_with(at_business_hours).await.unwrap();
    let adm = admin();
    let due = t3_due_registration();
    let a = id(&app
        .create_ok(
            &adm,
            lead_with("Gasthaus Adler", Some("kueche@adler.test"), true, Some(due)),
        )
        .await);
    let b = id(&app
        .create_ok(
            &adm,
            lead_with(
                "Hotel Ohne Zustimmung",
                Some("info@ohne.test"),
                false,
                Some(due),
            ),
        )
        .await);
    let c = id(&app
        .create_ok(
            &adm,
            lead_with("Kantine Neu", Some("kueche@neu.test"), true, None),
        )
        .await);

    // Only admins trigger runs (SPEC §2).
    for tok in [rep("rep-a"), manager_de(), token("svc", &["service"], &[])] {
        problem(run(&app, &tok).await, 403).await;
    }
    let anonymous = app
        .client
        .post(format!("{}/api/followups/run", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
    assert!(
        timeline(&app, &a)
            .await
            .iter()
            .all(|t| t != "FOLLOWUP_SENT")
    );
    let mut stream = SseClient::connect(
        &app.client,
        &format!("{}/api/events/stream", app.base),
        &adm,
        None,
    )
    .await;

    // The run: A's T+3 is sent, B's skipped for want of consent, C is not due. (Read raw, to
    // check the body itself below; the later runs go through the client.)
    let first_body = json_ok(run(&app, &adm).await).await;
    let ran = Instant::now();
    let first: RunReport = serde_json::from_value(first_body.clone()).unwrap();
    assert_eq!(
        keys(&first_body),
        set(&[
            "runId",
            "t3Count",
            "t7Count",
            "skippedCount",
            "startedAt",
            "finishedAt"
        ])
    );
    assert_eq!(counts(&first), (1, 0, 1));
    assert!(first.started_at <= first.finished_at);

    let la = lead_of(&app, &a).await;
    assert_eq!(la["followUps"]["t3"]["status"], "SENT");
    assert!(la["followUps"]["t7"].is_null());
    let lb = lead_of(&app, &b).await;
    assert_eq!(lb["followUps"]["t3"]["status"], "SKIPPED");
    assert_eq!(lb["followUps"]["t3"]["reason"], "NO_CONSENT");
    assert!(lead_of(&app, &c).await["followUps"]["t3"].is_null());
    assert_eq!(count_of(&timeline(&app, &a).await, "FOLLOWUP_SENT"), 1);
    assert_eq!(count_of(&timeline(&app, &b).await, "FOLLOWUP_SKIPPED"), 1);

    // The run's events reach the replica's consumers at once (the follow-up store wakes the
    // pipeline after each commit; without that, only its 5-second poll would). The creates'
    // events may still be on their way: an event is delivered once every older transaction on
    // the cluster has ended, and other tests run alongside — so they are skipped here, and the
    // bound stays well below the poll.
    let mut types = Vec::new();
    while types.len() < 3 {
        let left = (ran + Duration::from_secs(3)).saturating_duration_since(Instant::now());
        let m = stream
            .next_message(left)
            .await
            .unwrap_or_else(|| panic!("only {types:?} within 3 s of the run"));
        let t = m.json()["type"].as_str().unwrap().to_owned();
        if t.starts_with("lead.followup.") {
            types.push(t);
        }
    }
    types.sort();
    assert_eq!(
        types,
        [
            "lead.followup.processed.v1",
            "lead.followup.sent.v1",
            "lead.followup.skipped.v1"
        ]
    );

    // Without SMTP the mail waits in the outbox, complete and visible to admins.
    let page = json_ok(app.get(&adm, "/api/mails").await).await;
    let mails = page["mails"].as_array().unwrap();
    assert_eq!(mails.len(), 1, "{page}");
    assert!(page["nextCursor"].is_null());
    let summary = &mails[0];
    assert_eq!(summary["leadId"], a.as_str());
    assert_eq!(summary["status"], "QUEUED");
    assert_eq!(summary["stage"], "T3");
    assert_eq!(summary["recipient"], "kueche@adler.test");
    let mail_id = summary["id"].as_str().unwrap().to_owned();
    let mail = json_ok(app.get(&adm, &format!("/api/mails/{mail_id}")).await).await;
    assert!(
        mail["subject"]
            .as_str()
            .unwrap()
            .starts_with("Gasthaus Adler"),
        "{mail}"
    );
    let text = mail["text"].as_str().unwrap();
    assert!(text.starts_with("Guten Tag Anna Berger,"), "{text}");
    assert!(
        text.contains(&Territory::get(TerritoryId::De).legal_footer()),
        "{text}"
    );
    let link = mail["unsubscribeUrl"].as_str().unwrap();
    assert!(
        link.starts_with(&format!("{PUBLIC_URL}/unsubscribe?token=")),
        "{link}"
    );
    assert!(text.contains(link) && mail["html"].as_str().unwrap().contains(link));

    // The listing's filters and refusals.
    let api = app.api(&adm);
    let lead_id = |l: &str| Uuid::parse_str(l).unwrap();
    let typed_page: MailPage = serde_json::from_value(page.clone()).unwrap();
    assert_eq!(
        api.mails().list(&MailQuery::new()).await.unwrap(),
        typed_page
    );
    for (query, n) in [
        (MailQuery::new().status(MailStatus::Queued), 1),
        (MailQuery::new().status(MailStatus::Sent), 0),
        (MailQuery::new().status(MailStatus::Dead), 0),
        (MailQuery::new().lead_id(lead_id(&b)), 0),
        (
            MailQuery::new()
                .lead_id(lead_id(&a))
                .status(MailStatus::Queued)
                .limit(1),
            1,
        ),
    ] {
        let p = api.mails().list(&query).await.unwrap();
        assert_eq!(p.mails.len(), n, "{query:?}");
        assert!(p.next_cursor.is_none(), "{query:?}");
        assert!(p.mails.iter().all(|m| m.lead_id == lead_id(&a)));
    }
    let typed_mail: Mail = serde_json::from_value(mail.clone()).unwrap();
    assert_eq!(
        api.mails().get(lead_id(&mail_id)).await.unwrap(),
        typed_mail
    );
    assert_eq!(typed_mail.status, MailStatus::Queued);
    for query in [
        "?status=sent",
        "?limit=0",
        "?limit=501",
        "?leadId=x",
        "?after=x",
        "?foo=1",
        "?status=SENT&status=DEAD",
    ] {
        problem(app.get(&adm, &format!("/api/mails{query}")).await, 400).await;
    }
    for tok in [manager_de(), rep("rep-a")] {
        problem(app.get(&tok, "/api/mails").await, 403).await;
        problem(app.get(&tok, &format!("/api/mails/{mail_id}")).await, 403).await;
    }
    problem(
        app.get(&adm, &format!("/api/mails/{}", Uuid::now_v7()))
            .await,
        404,
    )
    .await;
    problem(app.get(&adm, "/api/mails/not-a-uuid").await, 400).await;
    let requeue = |id: String| {
        app.req(Method::POST, &format!("/api/mails/{id}/requeue"), &adm)
            .send()
    };
    problem(requeue(mail_id.clone()).await.unwrap(), 409).await; // QUEUED, not DEAD
    let e = api.mails().requeue(lead_id(&mail_id)).await.unwrap_err();
    assert!(e.is_conflict() && e.slug() == Some("mail-not-dead"), "{e}");

    // Nothing is processed twice.
    let second = run_ok(&app).await;
    assert_eq!(counts(&second), (0, 0, 0));

    // While another run (any replica) holds the cluster-wide lock: 409.
    let pool = freshplan_store_postgres::connect(&app.database_url, 2)
        .await
        .unwrap();
    let guard = PgFollowUpStore::new(pool.clone())
        .try_begin_run()
        .await
        .unwrap()
        .expect("the lock is free between runs");
    let busy = problem(run(&app, &adm).await, 409).await;
    assert!(
        busy["type"]
            .as_str()
            .unwrap()
            .ends_with("/followup-run-in-progress")
    );
    let e = api.followups().run().await.unwrap_err();
    assert!(e.is_conflict(), "{e}");
    assert_eq!(e.slug(), Some("followup-run-in-progress"));
    guard.release().await.unwrap();
    pool.close().await;
    let third = run_ok(&app).await;
    assert_eq!(counts(&third), (0, 0, 0));

    // The run log: every finished run, newest first; admins and managers only.
    let log = json_ok(app.get(&adm, "/api/followups/runs").await).await;
    let runs = log["runs"].as_array().unwrap();
    let ids: Vec<&str> = runs.iter().map(|r| r["runId"].as_str().unwrap()).collect();
    let expected: Vec<String> = [&third, &second, &first]
        .iter()
        .map(|r| r.run_id.to_string())
        .collect();
    assert_eq!(ids, expected);
    assert!(
        runs.iter()
            .all(|r| r["outcome"] == "COMPLETED" && r.get("error").is_none())
    );
    assert_eq!(runs[2]["t3Count"], 1);
    assert_eq!(runs[2]["skippedCount"], 1);
    let typed_log: RunList = serde_json::from_value(log.clone()).unwrap();
    assert_eq!(api.followups().runs(None).await.unwrap(), typed_log);
    let one = api.followups().runs(Some(1)).await.unwrap();
    assert_eq!(one.runs, typed_log.runs[..1]);
    assert_eq!(one.runs[0].run_id, third.run_id);
    for tok in [manager_de(), manager_ch()] {
        let l = json_ok(app.get(&tok, "/api/followups/runs").await).await;
        assert_eq!(l["runs"].as_array().unwrap().len(), 3);
    }
    for tok in [
        rep("rep-a"),
        token("v", &["viewer"], &["DE"]),
        token("svc", &["service"], &[]),
    ] {
        problem(app.get(&tok, "/api/followups/runs").await, 403).await;
    }
    for query in [
        "?limit=0",
        "?limit=101",
        "?limit=x",
        "?foo=1",
        "?limit=1&limit=2",
    ] {
        problem(
            app.get(&adm, &format!("/api/followups/runs{query}")).await,
            400,
        )
        .await;
    }

    // Each run's lead.followup.processed.v1 is in the outbox (read through the feed).
    let feed = eventually(
        Duration::from_secs(10),
        "processed events in the feed",
        || async {
            json_ok(
                app.get(&adm, "/api/events?type=lead.followup.processed.v1")
                    .await,
            )
            .await
        },
        |f| f["events"].as_array().is_some_and(|e| e.len() == 3),
    )
    .await;
    let mut processed: Vec<&str> = feed["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["data"]["runId"].as_str().unwrap())
        .collect();
    processed.reverse();
    assert_eq!(processed, expected);
    assert_eq!(feed["events"][0]["data"]["t3Count"], 1);

    // The follow-up metrics (SPEC §10), counted after each run.
    let text = metrics_text(&app).await;
    assert_eq!(
        metric(&text, r#"followup_processed_total{type="T3"}"#),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        metric(&text, r#"followup_processed_total{type="T7"}"#),
        Some(0.0)
    );
    assert_eq!(
        metric(&text, r#"followup_processed_total{type="SKIPPED"}"#),
        Some(1.0)
    );
    assert_eq!(metric(&text, "followup_errors_total"), Some(0.0));
    assert_eq!(
        metric(&text, "followup_processing_duration_seconds_count"),
        Some(3.0)
    );
    // Pending from the global scope, refreshed by the run (no stream client): C waits for T+3,
    // A and B for T+7.
    assert_eq!(metric(&text, r#"followup_pending{type="T3"}"#), Some(1.0));
    assert_eq!(metric(&text, r#"followup_pending{type="T7"}"#), Some(2.0));
    // Counted as published by the follow-up module: one of each stage event, three runs.
    let published = |t: &str| {
        text.lines()
            .find(|l| {
                l.starts_with("freshplan_events_published_total{")
                    && l.contains(&format!("event_type=\"{t}\""))
                    && l.contains("module=\"followup\"")
            })
            .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
    };
    assert_eq!(published("lead.followup.sent.v1"), Some(1.0), "{text}");
    assert_eq!(published("lead.followup.skipped.v1"), Some(1.0));
    assert_eq!(published("lead.followup.processed.v1"), Some(3.0));

    // The bodies are what the OpenAPI document says, and what their freshplan-api types read
    // and write.
    let doc = openapi(&app).await;
    let mail_path = format!("/api/mails/{mail_id}");
    for (method, path, documented, body) in [
        (
            "post",
            "/api/followups/run",
            "/api/followups/run",
            &first_body,
        ),
        ("get", "/api/followups/runs", "/api/followups/runs", &log),
        ("get", "/api/mails", "/api/mails", &page),
        ("get", mail_path.as_str(), "/api/mails/{id}", &mail),
    ] {
        let what = format!("{method} {path}");
        assert_conforms(
            &doc,
            response_schema(&doc, method, documented, 200),
            body,
            &what,
        );
    }
    assert_round_trips::<api::followups::RunReport>(&first_body, "POST /api/followups/run");
    assert_round_trips::<api::followups::RunList>(&log, "GET /api/followups/runs");
    assert_round_trips::<api::mails::MailPage>(&page, "GET /api/mails");
    assert_round_trips::<api::mails::Mail>(&mail, "GET /api/mails/{id}");

    // Unsubscribing (one-click) withdraws the queued mail: DEAD, and it cannot be requeued.
    let r = one_click(&app, &on_app(&app, link)).await;
    assert_eq!(r.status(), 200);
    let withdrawn = json_ok(app.get(&adm, &format!("/api/mails/{mail_id}")).await).await;
    assert_eq!(withdrawn["status"], "DEAD");
    assert!(
        withdrawn["lastError"]
            .as_str()
            .unwrap()
            .contains("unsubscribed")
    );
    let refused = problem(requeue(mail_id.clone()).await.unwrap(), 409).await;
    assert!(refused["type"].as_str().unwrap().ends_with("/no-consent"));
}

// ---------------------------------------------------------------------------------------------
// Delivery over SMTP and the unsubscribe link
// ---------------------------------------------------------------------------------------------

/// Waits until the sink holds `n` messages.
pub(crate) async fn received(sink: &Sink, n: usize) -> Vec<freshplan_mail_smtp::testing::Received> {
    let started = Instant::now();
    loop {
        let got = sink.received();
        if got.len() >= n {
            return got;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{} of {n} mails arrived",
            got.len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn mail_of(app: &TestApp, lead: &str) -> Value {
    let page = json_ok(
        app.get(&admin(), &format!("/api/mails?leadId={lead}"))
            .await,
    )
    .await;
    let mails = page["mails"].as_array().unwrap();
    assert_eq!(mails.len(), 1, "{page}");
    let mail_id = mails[0]["id"].as_str().unwrap();
    json_ok(app.get(&admin(), &format!("/api/mails/{mail_id}")).await).await
}

/// The summaries of a lead's mails, oldest first.
async fn mails_of(app: &TestApp, lead: &str) -> Vec<Value> {
    let page = json_ok(
        app.get(&admin(), &format!("/api/mails?leadId={lead}"))
            .await,
    )
    .await;
    let mut mails = page["mails"].as_array().unwrap().clone();
    mails.sort_by_key(|m| m["createdAt"].as_str().unwrap().to_owned());
    mails
}

/// The value of header `name` of a received message, unfolded (RFC 5322 §2.2.3: a line break
/// followed by white space is that white space).
fn unfolded(m: &mail_parser::Message<'_>, name: &str) -> String {
    m.header_raw(name)
        .unwrap_or_else(|| panic!("no {name} header"))
        .replace("\r\n", "")
        .replace('\n', "")
        .trim()
        .to_owned()
}

/// The http(s) URL of a `List-Unsubscribe` value (RFC 2369: a comma-separated list of `<…>`,
/// white space inside the brackets to be ignored).
fn list_unsubscribe_url(value: &str) -> String {
    value
        .split(',')
        .filter_map(|part| part.trim().strip_prefix('<')?.strip_suffix('>'))
        .map(|url| url.split_whitespace().collect::<String>())
        .find(|url| url.starts_with("https://") || url.starts_with("http://"))
        .unwrap_or_else(|| panic!("no http(s) URL in List-Unsubscribe: {value}"))
}

#[test]
fn folded_unsubscribe_headers_are_read_whole() {
    // A relay may fold long header fields (lettre does not: the URL has no white space).
    let raw = "List-Unsubscribe:\r\n <mailto:unsubscribe@freshplan.test>,\r\n\t<https://crm.freshplan.test/\r\n unsubscribe?token=abc.def>\r\n\
               List-Unsubscribe-Post:\r\n List-Unsubscribe=One-Click\r\n\
               Subject: x\r\n\r\nbody\r\n";
    let m = MessageParser::default().parse(raw.as_bytes()).unwrap();
    assert_eq!(
        list_unsubscribe_url(&unfolded(&m, "List-Unsubscribe")),
        "https://crm.freshplan.test/unsubscribe?token=abc.def"
    );
    assert_eq!(unfolded(&m, "List-Unsubscribe-Post"), ONE_CLICK);
}

/// `link` (a URL under the test apps' [`PUBLIC_URL`]) on the app's real port — what the proxy
/// in front of the service does; path and query stay exactly as in the mail.
fn on_app(app: &TestApp, link: &str) -> reqwest::Url {
    let rest = link
        .strip_prefix(PUBLIC_URL)
        .unwrap_or_else(|| panic!("{link} is not under {PUBLIC_URL}"));
    reqwest::Url::parse(&format!("{}{rest}", app.base)).unwrap()
}

/// The body of an RFC 8058 one-click request.
const ONE_CLICK: &str = "List-Unsubscribe=One-Click";

/// What a mailbox provider does for RFC 8058 one-click: `POST` `List-Unsubscribe=One-Click`
/// (`application/x-www-form-urlencoded`) to the URL of `List-Unsubscribe` — no cookie, no login.
async fn one_click(app: &TestApp, url: &reqwest::Url) -> Response {
    app.client
        .post(url.clone())
        .header("content-type", "application/x-www-form-urlencoded")
        .body(ONE_CLICK)
        .send()
        .await
        .unwrap()
}

/// The headers every unsubscribe page carries: HTML, not stored, no referrer, not indexed.
fn assert_page_headers(r: &Response) {
    let h = r.headers();
    assert_eq!(h["content-type"], "text/html; charset=utf-8");
    assert_eq!(h["referrer-policy"], "no-referrer");
    assert_eq!(h["cache-control"], "no-store");
    assert_eq!(h["x-robots-tag"], "noindex");
    assert_eq!(h["x-content-type-options"], "nosniff");
    let csp = h["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("form-action 'self'"), "{csp}");
    assert!(csp.contains("default-src 'none'"), "{csp}");
}

/// `text` with the five HTML character references undone.
fn unescape_html(text: &str) -> String {
    text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&amp;", "&")
}

/// The value of attribute `name` of the tag `tag` (its text from `<` to `>`), unescaped.
fn attribute(tag: &str, name: &str) -> Option<String> {
    let start = tag.find(&format!(" {name}=\""))? + name.len() + 3;
    let len = tag[start..].find('"')?;
    Some(unescape_html(&tag[start..start + len]))
}

/// The one form of an unsubscribe page, as a browser reads it: its method, its action resolved
/// against the page's URL, and its fields.
struct Form {
    method: String,
    action: reqwest::Url,
    fields: Vec<(String, String)>,
}

fn form_of(page_url: &reqwest::Url, html: &str) -> Form {
    assert_eq!(html.matches("<form").count(), 1, "{html}");
    let start = html.find("<form").unwrap();
    let end = start + html[start..].find("</form>").expect("</form>");
    let inner = &html[start..end];
    let tag = &inner[..inner.find('>').unwrap()];
    let fields = inner
        .split("<input")
        .skip(1)
        .map(|input| {
            let tag = &input[..input.find('>').unwrap()];
            (
                attribute(tag, "name").unwrap(),
                attribute(tag, "value").unwrap_or_default(),
            )
        })
        .collect();
    Form {
        method: attribute(tag, "method").unwrap_or_else(|| "get".into()),
        action: page_url
            .join(&attribute(tag, "action").expect("an action"))
            .unwrap(),
        fields,
    }
}

#[actix_web::test]
async fn mail_reaches_a_real_smtp_server_and_one_click_from_its_headers_unsubscribes_once() {
    let mut sink = Sink::start().await;
    let url = sink.url();
    // A poll interval far beyond the test: mails go out because the run wakes the dispatcher.
    let app = spawn_app_with(|c| {
        at_business_hours(c);
        c.smtp_url = Some(url);
        c.mail_from = Some("FreshPlan Vertrieb <vertrieb@freshplan.test>".into());
        c.mail_reply_to = Some("Team Nord <team-nord@freshplan.test>".into());
        c.mail_poll = Duration::from_secs(3600);
    })
    .await
    .unwrap();
    let adm = admin();
    let due = t3_due_registration();
    let a = id(&app
        .create_ok(
            &adm,
            lead_with("Gasthaus Adler", Some("kueche@adler.test"), true, Some(due)),
        )
        .await);
    let d = id(&app
        .create_ok(
            &adm,
            lead_with(
                "Hotel Abgewiesen",
                Some("bounce@refused.test"),
                true,
                Some(due),
            ),
        )
        .await);
    sink.refuse("bounce@refused.test");

    assert_eq!(counts(&run_ok(&app).await), (2, 0, 0));
    let got = received(&sink, 1).await;

    // What arrived: recipient, sender, subject, bodies, footer, unsubscribe link.
    // The sink has the message once the SMTP server accepted it; the outbox
    // records SENT right after, in its own transaction.
    let stored = eventually(
        Duration::from_secs(10),
        "A's mail is recorded as sent",
        || mail_of(&app, &a),
        |m| m["status"] == "SENT",
    )
    .await;
    let r = got
        .iter()
        .find(|r| r.to == ["kueche@adler.test".to_owned()])
        .expect("A's mail arrived");
    assert_eq!(r.from, "vertrieb@freshplan.test");
    let m = MessageParser::default().parse(&r.data).unwrap();
    assert_eq!(m.subject(), stored["subject"].as_str());
    assert!(m.subject().unwrap().starts_with("Gasthaus Adler"));
    assert_eq!(
        m.to().and_then(|t| t.first()).and_then(|t| t.address()),
        Some("kueche@adler.test")
    );
    assert_eq!(
        m.reply_to()
            .and_then(|t| t.first())
            .and_then(|t| t.address()),
        Some("team-nord@freshplan.test")
    );
    let text = m.body_text(0).unwrap();
    let html = m.body_html(0).unwrap();
    assert!(text.starts_with("Guten Tag Anna Berger,"), "{text}");
    let de = Territory::get(TerritoryId::De);
    assert!(
        text.contains(de.legal_entity) && text.contains(de.vat_id),
        "{text}"
    );
    assert!(text.contains(&de.legal_footer()), "{text}");
    assert!(html.contains(de.vat_id));
    // RFC 8058 one-click, as the mailbox provider reads the headers (folded or not).
    let link = list_unsubscribe_url(&unfolded(&m, "List-Unsubscribe"));
    assert_eq!(unfolded(&m, "List-Unsubscribe-Post"), ONE_CLICK);
    assert_eq!(link, stored["unsubscribeUrl"].as_str().unwrap());
    assert!(
        link.starts_with(&format!("{PUBLIC_URL}/unsubscribe?token=")),
        "{link}"
    );
    assert!(text.contains(&link) && html.contains(&link));
    let token = link.split_once("token=").unwrap().1.to_owned();
    assert_eq!(
        UnsubscribeToken::verify(&token, UNSUBSCRIBE_SECRET.as_bytes()),
        Ok(a.parse().unwrap())
    );
    assert_eq!(stored["status"], "SENT");
    assert!(stored["sentAt"].is_string());

    // The refused mail is DEAD; requeued once the address works, it goes out.
    let dead = eventually(
        Duration::from_secs(10),
        "the refused mail is dead",
        || mail_of(&app, &d),
        |m| m["status"] == "DEAD",
    )
    .await;
    assert!(
        dead["lastError"].as_str().unwrap().contains("rejected"),
        "{dead}"
    );
    sink.accept("bounce@refused.test");
    let dead_id = dead["id"].as_str().unwrap().parse().unwrap();
    let requeued = app.api(&adm).mails().requeue(dead_id).await.unwrap();
    assert_eq!(
        (requeued.id, requeued.status, requeued.attempts),
        (dead_id, MailStatus::Queued, 0)
    );
    let got = received(&sink, 2).await;
    assert!(
        got.iter()
            .any(|r| r.to == ["bounce@refused.test".to_owned()])
    );
    eventually(
        Duration::from_secs(10),
        "the requeued mail is sent",
        || mail_of(&app, &d),
        |m| m["status"] == "SENT",
    )
    .await;

    // A's T+7 falls due while the SMTP server is down: it stays queued (the attempt failed; the
    // retry is minutes away).
    sink.stop().await;
    move_registration(&app.database_url, &a, time::Duration::days(10)).await;
    assert_eq!(counts(&run_ok(&app).await), (0, 1, 0));
    let queued = eventually(
        Duration::from_secs(10),
        "A's T+7 was tried once",
        || mails_of(&app, &a),
        |m| m.len() == 2 && m[1]["attempts"] == 1,
    )
    .await;
    assert_eq!(
        (&queued[0]["status"], &queued[1]["status"]),
        (&json!("SENT"), &json!("QUEUED"))
    );

    // What a mailbox provider does with those headers: POST `List-Unsubscribe=One-Click` to the
    // URL, without a login. Consent withdrawn, UNSUBSCRIBED logged, the queued T+7 withdrawn.
    let url = on_app(&app, &link);
    let before = lead_of(&app, &a).await;
    let r = one_click(&app, &url).await;
    assert_eq!(r.status(), 200);
    assert_page_headers(&r);
    assert!(r.text().await.unwrap().contains("Abmeldung bestätigt"));
    let after = lead_of(&app, &a).await;
    assert_eq!(after["emailConsent"], false);
    assert!(after["emailConsentAt"].is_null());
    assert_eq!(
        after["version"].as_i64(),
        before["version"].as_i64().map(|v| v + 1)
    );
    assert_eq!(count_of(&timeline(&app, &a).await, "UNSUBSCRIBED"), 1);
    let withdrawn = mails_of(&app, &a).await;
    assert_eq!(withdrawn[0]["status"], "SENT");
    assert_eq!(withdrawn[1]["status"], "DEAD");
    assert_eq!(
        withdrawn[1]["lastError"],
        freshplan_app::api::unsubscribe::WITHDRAWN
    );

    // The provider (or the reader) again: the same page, nothing changes (docs/decisions/0007).
    let timeline_after = timeline(&app, &a).await;
    let r = one_click(&app, &url).await;
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("Abmeldung bestätigt"));
    assert_eq!(lead_of(&app, &a).await, after);
    assert_eq!(timeline(&app, &a).await, timeline_after);
    assert_eq!(mails_of(&app, &a).await, withdrawn);
    // The consent ledger holds the withdrawal once, with its source (SPEC §13).
    let export = json_ok(
        app.get(&adm, &format!("/api/leads/{a}/personal-data"))
            .await,
    )
    .await;
    let ledger: Vec<(bool, &str, &str)> = export["consentHistory"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["consent"].as_bool().unwrap(),
                c["source"].as_str().unwrap(),
                c["changedBy"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        ledger,
        [(true, "API", "admin-1"), (false, "UNSUBSCRIBE", "system")]
    );
    assert_eq!(after["emailConsentSource"], "UNSUBSCRIBE");

    // Forged, malformed or missing tokens: 400 for both methods — a page for people, a problem
    // for API clients.
    let mut forged = token.clone();
    let last = forged.pop().unwrap();
    forged.push(if last == 'A' { 'B' } else { 'A' });
    let foreign =
        UnsubscribeToken::sign(a.parse().unwrap(), b"another-secret-another-secret-12345");
    for query in [
        format!("?token={forged}"),
        format!("?token={foreign}"),
        "?token=abc".to_owned(),
        "?token=".to_owned(),
        String::new(),
        format!("?token={token}&token={token}"),
    ] {
        for method in [Method::GET, Method::POST] {
            let send = |accept: &'static str| {
                app.client
                    .request(method.clone(), format!("{}/unsubscribe{query}", app.base))
                    .header("accept", accept)
                    .header("content-type", "application/x-www-form-urlencoded")
                    .body(ONE_CLICK)
                    .send()
            };
            let r = send("text/html").await.unwrap();
            assert_eq!(r.status(), 400, "{method} {query}");
            assert_page_headers(&r);
            let html = r.text().await.unwrap();
            assert!(html.contains("Link ungültig"), "{html}");
            assert!(!html.contains("<form"), "{html}");
            problem(send("application/json").await.unwrap(), 400).await;
        }
    }
    // A correctly signed token of a lead that does not exist (any more): nothing to stop.
    let gone = UnsubscribeToken::sign(Uuid::now_v7(), UNSUBSCRIBE_SECRET.as_bytes());
    let r = one_click(
        &app,
        &on_app(&app, &format!("{PUBLIC_URL}/unsubscribe?token={gone}")),
    )
    .await;
    assert_eq!(r.status(), 200);

    // Nothing more goes out to A: the withdrawn mail can never be requeued, and with the server
    // back nothing else arrives.
    sink.restart().await;
    let dead_id = withdrawn[1]["id"].as_str().unwrap().parse().unwrap();
    let e = app.api(&adm).mails().requeue(dead_id).await.unwrap_err();
    assert_eq!(
        (e.status(), e.slug()),
        (Some(409), Some("no-consent")),
        "{e}"
    );
    assert_eq!(counts(&run_ok(&app).await), (0, 0, 0));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(sink.received().len(), 2);
    assert_eq!(count_of(&timeline(&app, &a).await, "UNSUBSCRIBED"), 1);
}

/// A link scanner's, a prefetcher's or the reader's `GET` of the link changes nothing; the
/// page's button (a form a browser posts) unsubscribes. RFC 8058 lets providers post
/// `multipart/form-data` too, and any other body is ignored: the token decides.
#[actix_web::test]
async fn a_get_of_the_unsubscribe_link_changes_nothing_and_its_button_unsubscribes() {
    let app = spawn_app_with(at_business_hours).await.unwrap();
    let adm = admin();
    let due = t3_due_registration();
    let mut leads = Vec::new();
    for (name, email) in [
        ("Gasthaus Adler", "kueche@adler.test"),
        ("Hotel Post", "rezeption@post.test"),
        ("Kantine Nord", "einkauf@nord.test"),
    ] {
        leads.push(id(&app
            .create_ok(&adm, lead_with(name, Some(email), true, Some(due)))
            .await));
    }
    // No SMTP server: the mails stay queued.
    assert_eq!(counts(&run_ok(&app).await), (3, 0, 0));
    let link_of = |mail: &Value| on_app(&app, mail["unsubscribeUrl"].as_str().unwrap());

    // A: GETs — the scanner, the prefetcher, the reader opening the page — change nothing.
    let a = &leads[0];
    let url = link_of(&mail_of(&app, a).await);
    let (lead_before, timeline_before, mails_before) = (
        lead_of(&app, a).await,
        timeline(&app, a).await,
        mails_of(&app, a).await,
    );
    let mut form = None;
    for _ in 0..3 {
        let r = app.client.get(url.clone()).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert_page_headers(&r);
        let html = r.text().await.unwrap();
        assert!(html.contains("<meta name=\"robots\" content=\"noindex\">"));
        assert!(!html.contains("<script"), "{html}");
        assert!(!html.contains("Abmeldung bestätigt"), "{html}");
        form = Some(form_of(&url, &html));
    }
    assert_eq!(lead_of(&app, a).await, lead_before);
    assert_eq!(lead_before["emailConsent"], true);
    assert_eq!(timeline(&app, a).await, timeline_before);
    assert_eq!(mails_of(&app, a).await, mails_before);
    assert_eq!(mails_before[0]["status"], "QUEUED");

    // The button: a form posting to the same URL, with the one-click field.
    let form = form.unwrap();
    assert_eq!(form.method.to_ascii_lowercase(), "post");
    assert_eq!(form.action, url);
    assert_eq!(
        form.fields,
        [("List-Unsubscribe".to_owned(), "One-Click".to_owned())]
    );
    // Pressed, the browser posts the form: unsubscribed.
    let body: String = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(&form.fields)
        .finish();
    let r = app
        .client
        .post(form.action.clone())
        .header("content-type", "application/x-www-form-urlencoded")
        .header("accept", "text/html,application/xhtml+xml,*/*;q=0.8")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_page_headers(&r);
    assert!(r.text().await.unwrap().contains("Abmeldung bestätigt"));
    let after = lead_of(&app, a).await;
    assert_eq!(after["emailConsent"], false);
    assert_eq!(
        after["version"].as_i64(),
        lead_before["version"].as_i64().map(|v| v + 1)
    );
    assert_eq!(count_of(&timeline(&app, a).await, "UNSUBSCRIBED"), 1);
    assert_eq!(mails_of(&app, a).await[0]["status"], "DEAD");
    // Opening the page again still changes nothing.
    let r = app.client.get(url.clone()).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(lead_of(&app, a).await, after);

    // B: the provider posts multipart/form-data (RFC 8058's preferred form): unsubscribed.
    let b = &leads[1];
    let url = link_of(&mail_of(&app, b).await);
    let r = app
        .client
        .post(url)
        .header(
            "content-type",
            "multipart/form-data; boundary=one-click-boundary",
        )
        .body(
            "--one-click-boundary\r\n\
             Content-Disposition: form-data; name=\"List-Unsubscribe\"\r\n\r\n\
             One-Click\r\n--one-click-boundary--\r\n",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(lead_of(&app, b).await["emailConsent"], false);
    assert_eq!(count_of(&timeline(&app, b).await, "UNSUBSCRIBED"), 1);

    // C: an empty body unsubscribes; any other body after it is ignored, never a 5xx — and
    // with a bad token it is the token's 400.
    let c = &leads[2];
    let url = link_of(&mail_of(&app, c).await);
    let r = app.client.post(url.clone()).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let after = lead_of(&app, c).await;
    assert_eq!(after["emailConsent"], false);
    let bad = {
        let mut u = url.clone();
        u.set_query(Some("token=not-a-token"));
        u
    };
    for (content_type, body) in [
        (None, b"".to_vec()),
        (
            Some("application/json"),
            br#"{"List-Unsubscribe":"One-Click"}"#.to_vec(),
        ),
        (
            Some("application/x-www-form-urlencoded"),
            b"%%%=&&List-Unsubscribe=Maybe".to_vec(),
        ),
        (Some("multipart/form-data"), b"--no-boundary".to_vec()),
        (
            Some("text/plain; charset=utf-8"),
            "a\u{0}b".as_bytes().to_vec(),
        ),
        (
            Some("application/octet-stream"),
            vec![0xff, 0xfe, 0x00, 0x80],
        ),
        (Some("no media type at all"), b"garbage".to_vec()),
    ] {
        for (target, status) in [(&url, 200), (&bad, 400)] {
            let mut req = app.client.post(target.clone()).body(body.clone());
            if let Some(content_type) = content_type {
                req = req.header("content-type", content_type);
            }
            let r = req.send().await.unwrap();
            assert_eq!(r.status(), status, "{content_type:?} {target}");
        }
    }
    assert_eq!(lead_of(&app, c).await, after);
    assert_eq!(count_of(&timeline(&app, c).await, "UNSUBSCRIBED"), 1);
}

// ---------------------------------------------------------------------------------------------
// The cockpit figures per role, and their stream
// ---------------------------------------------------------------------------------------------

/// The figures `tok` gets (with `query`) once they equal `(pendingT3, pendingT7, sentToday,
/// conversionRate)` and `scope` — the cache follows commits through the event pipeline, a few
/// milliseconds later.
async fn figures_are(
    app: &TestApp,
    tok: &str,
    query: &str,
    expected: (u64, u64, u64, f64),
    scope: ScopeKind,
) {
    let path = format!("/api/dashboard/followup{query}");
    let territory = match query {
        "" => None,
        q => Some(
            q.strip_prefix("?territory=")
                .expect("only a territory filter"),
        ),
    };
    let dashboard = app.api(tok).dashboard();
    eventually(
        Duration::from_secs(5),
        &format!("figures of {path}"),
        || async { dashboard.followup(territory).await.unwrap() },
        |f: &FollowUpFigures| {
            (f.pending_t3, f.pending_t7, f.sent_today, f.conversion_rate) == expected
                && f.scope == scope
        },
    )
    .await;
}

async fn patch_status(app: &TestApp, lead: &str, status: &str) {
    let r = app.get(&admin(), &format!("/api/leads/{lead}")).await;
    let etag = r.headers()["etag"].to_str().unwrap().to_owned();
    let r = app
        .req(Method::PATCH, &format!("/api/leads/{lead}"), &admin())
        .header("if-match", etag)
        .header("content-type", "application/merge-patch+json")
        .body(json!({"status": status}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
}

#[actix_web::test]
async fn dashboard_figures_follow_the_callers_scope() {
    let app = spawn_app_with(at_business_hours).await.unwrap();
    let adm = admin();
    let rep_a = rep("rep-a");
    let rep_b = rep("rep-b");
    let viewer = token("viewer-de", &["viewer"], &["DE"]);
    // L1: due, with consent, owned by rep-a (admins backdate, then hand it over).
    let l1 = id(&app
        .create_ok(
            &adm,
            lead_with(
                "Gasthaus Eins",
                Some("eins@gast.test"),
                true,
                Some(t3_due_registration()),
            ),
        )
        .await);
    let r = app
        .req(Method::PUT, &format!("/api/leads/{l1}/owner"), &adm)
        .json(&json!({"ownerUserId": "rep-a"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    app.create_ok(&rep_a, lead("Gasthaus Zwei")).await;
    app.create_ok(&rep_b, lead("Gasthaus Drei")).await;
    let ch = |name: &str| json!({"companyName": name, "countryCode": "CH", "city": "Zürich", "postalCode": "8001"});
    app.create_ok(&manager_ch(), ch("Restaurant Vier")).await;
    app.create_ok(&adm, ch("Hotel Fünf")).await;

    figures_are(&app, &adm, "", (5, 0, 0, 0.0), ScopeKind::All).await;
    figures_are(
        &app,
        &manager_de(),
        "",
        (3, 0, 0, 0.0),
        ScopeKind::Territories,
    )
    .await;
    figures_are(
        &app,
        &manager_ch(),
        "",
        (2, 0, 0, 0.0),
        ScopeKind::Territories,
    )
    .await;
    figures_are(&app, &viewer, "", (3, 0, 0, 0.0), ScopeKind::Territories).await;
    figures_are(&app, &rep_a, "", (2, 0, 0, 0.0), ScopeKind::OwnLeads).await;
    figures_are(&app, &rep_b, "", (1, 0, 0, 0.0), ScopeKind::OwnLeads).await;
    // The territory filter narrows the caller's scope; outside it, everything is 0.
    figures_are(&app, &adm, "?territory=CH", (2, 0, 0, 0.0), ScopeKind::All).await;
    figures_are(&app, &adm, "?territory=de", (3, 0, 0, 0.0), ScopeKind::All).await;
    figures_are(
        &app,
        &manager_de(),
        "?territory=CH",
        (0, 0, 0, 0.0),
        ScopeKind::Territories,
    )
    .await;
    for query in [
        "?territory=XX",
        "?territory=",
        "?foo=1",
        "?territory=DE&territory=CH",
    ] {
        problem(
            app.get(&adm, &format!("/api/dashboard/followup{query}"))
                .await,
            400,
        )
        .await;
    }
    problem(
        app.get(
            &token("svc", &["service"], &["DE"]),
            "/api/dashboard/followup",
        )
        .await,
        403,
    )
    .await;
    assert_eq!(
        app.client
            .get(format!("{}/api/dashboard/followup", app.base))
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    let f = json_ok(app.get(&adm, "/api/dashboard/followup").await).await;
    assert_eq!(
        keys(&f),
        set(&[
            "pendingT3",
            "pendingT7",
            "sentToday",
            "conversionRate",
            "scope",
            "generatedAt"
        ])
    );
    let doc = openapi(&app).await;
    assert_conforms(
        &doc,
        response_schema(&doc, "get", "/api/dashboard/followup", 200),
        &f,
        "GET /api/dashboard/followup",
    );
    assert_round_trips::<api::followups::FollowUpFigures>(&f, "GET /api/dashboard/followup");

    // L1's T+3 goes out: it moves from "T+3 pending" to "T+7 pending" and "sent today".
    assert_eq!(counts(&run_ok(&app).await), (1, 0, 0));
    figures_are(&app, &adm, "", (4, 1, 1, 0.0), ScopeKind::All).await;
    figures_are(
        &app,
        &manager_de(),
        "",
        (2, 1, 1, 0.0),
        ScopeKind::Territories,
    )
    .await;
    figures_are(
        &app,
        &manager_ch(),
        "",
        (2, 0, 0, 0.0),
        ScopeKind::Territories,
    )
    .await;
    figures_are(&app, &rep_a, "", (1, 1, 1, 0.0), ScopeKind::OwnLeads).await;
    figures_are(&app, &rep_b, "", (1, 0, 0, 0.0), ScopeKind::OwnLeads).await;

    // Converted after a sent follow-up: 100 % conversion, no longer pending.
    patch_status(&app, &l1, "QUALIFIED").await;
    patch_status(&app, &l1, "CONVERTED").await;
    figures_are(&app, &adm, "", (4, 0, 1, 100.0), ScopeKind::All).await;
    figures_are(&app, &rep_a, "", (1, 0, 1, 100.0), ScopeKind::OwnLeads).await;
    figures_are(&app, &rep_b, "", (1, 0, 0, 0.0), ScopeKind::OwnLeads).await;
    figures_are(
        &app,
        &manager_ch(),
        "?territory=CH",
        (2, 0, 0, 0.0),
        ScopeKind::Territories,
    )
    .await;

    // followup_pending follows the global figures without any stream client.
    let started = Instant::now();
    loop {
        let text = metrics_text(&app).await;
        if metric(&text, r#"followup_pending{type="T3"}"#) == Some(4.0)
            && metric(&text, r#"followup_pending{type="T7"}"#) == Some(0.0)
        {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(15), "{text}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[actix_web::test]
async fn the_stream_pushes_changed_figures_within_a_second_with_one_query_per_scope() {
    let (app, followups) = spawn_replica(None, |c| {
        at_business_hours(c);
        c.sse_keep_alive = Duration::from_millis(300);
    })
    .await;
    let url = format!("{}/api/dashboard/followup-stream", app.base);

    // Refusals before anything streams.
    assert_eq!(app.client.get(&url).send().await.unwrap().status(), 401);
    let r = app
        .client
        .get(&url)
        .bearer_auth(token("svc", &["service"], &["DE"]))
        .send()
        .await
        .unwrap();
    problem(r, 403).await;
    let r = app
        .client
        .get(format!("{url}?territory=XX"))
        .bearer_auth(manager_de())
        .send()
        .await
        .unwrap();
    problem(r, 400).await;

    // Many clients on one scope, and an admin: each gets the figures once on connect.
    const CLIENTS: usize = 12;
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        let mut c = SseClient::connect(&app.client, &url, &manager_de(), None).await;
        let m = c
            .next_message(Duration::from_secs(5))
            .await
            .expect("figures on connect");
        assert_eq!(m.event.as_deref(), Some("followup-metrics"));
        assert_eq!(m.json()["pendingT3"], 0);
        assert_eq!(m.json()["scope"], "TERRITORIES");
        clients.push(c);
    }
    let mut admin_stream = SseClient::connect(&app.client, &url, &admin(), None).await;
    let first = admin_stream
        .next_message(Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(first.json()["scope"], "ALL");
    // The same JSON as the GET endpoint.
    let get = json_ok(app.get(&manager_de(), "/api/dashboard/followup").await).await;
    let streamed = clients[0].comments.clone();
    assert!(streamed.contains(&"open".to_owned()));
    assert_eq!(keys(&get), keys(&first.json()));

    // A quiet stream sends keep-alive comments.
    match clients[0].next_item(Duration::from_secs(3)).await {
        Some(Item::Comment(c)) => assert_eq!(c, "keep-alive"),
        other => panic!("expected a keep-alive comment, got {other:?}"),
    }

    // A new lead: every client gets pendingT3 + 1 within a second, for one figures query per
    // live scope (the managers' and the admin's), not one per client.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let queries = followups.hub().queries();
    app.create_ok(&rep("rep-a"), lead("Neueröffnung am Markt"))
        .await;
    let created = Instant::now();
    let deadline = created + Duration::from_secs(1);
    for c in clients.iter_mut().chain(std::iter::once(&mut admin_stream)) {
        let m = c
            .next_message(deadline.saturating_duration_since(Instant::now()))
            .await
            .unwrap_or_else(|| panic!("no figures within 1 s of the commit"));
        assert_eq!(m.event.as_deref(), Some("followup-metrics"));
        assert_eq!(m.json()["pendingT3"], 1, "{}", m.data);
    }
    let spent = followups.hub().queries() - queries;
    assert!(
        (1..=2).contains(&spent),
        "{spent} figures queries for one change, 2 scopes and {} clients",
        CLIENTS + 1
    );

    // A change that does not move the figures (a meaningful contact on the new lead keeps it
    // pending) pushes nothing; only keep-alives follow.
    let leads = json_ok(app.get(&admin(), "/api/leads").await).await;
    let new_lead = leads["data"][0]["id"].as_str().unwrap().to_owned();
    let r = app
        .req(
            Method::POST,
            &format!("/api/leads/{new_lead}/activities"),
            &rep("rep-a"),
        )
        .json(&json!({"type": "CALL", "description": "Erstkontakt"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let quiet_until = Instant::now() + Duration::from_millis(800);
    while let Some(item) = clients[1]
        .next_item(quiet_until.saturating_duration_since(Instant::now()))
        .await
    {
        assert_eq!(
            item,
            Item::Comment("keep-alive".into()),
            "unchanged figures were pushed"
        );
    }

    // Stopping the server ends the streams.
    app.stopper.stop(true).await;
    for c in clients.iter_mut().take(2) {
        let started = Instant::now();
        loop {
            match c.next_item(Duration::from_secs(5)).await {
                Some(Item::End) => break,
                Some(_) => assert!(
                    started.elapsed() < Duration::from_secs(5),
                    "the stream did not end"
                ),
                None => panic!("the stream did not end"),
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The schedules, on two replicas of one database
// ---------------------------------------------------------------------------------------------

#[actix_web::test]
async fn scheduled_runs_on_two_replicas_process_each_follow_up_once_and_the_sweep_runs() {
    let database_url = fresh_database().await;
    // Both replicas on one follow-up clock.
    let clock = business_clock();
    let every_second = |c: &mut Config| {
        c.followup_clock = FollowUpClock::new(clock.clone());
        c.followup_enabled = true;
        c.followup_cron = "* * * * * *".into();
        c.sweep_enabled = true;
        c.sweep_cron = "* * * * * *".into();
    };
    let (a, _) = spawn_replica(Some(&database_url), every_second).await;
    let (b, _) = spawn_replica(Some(&database_url), every_second).await;
    let adm = admin();
    let due = t3_due_registration();
    let mut leads = Vec::new();
    for i in 0..6 {
        let app = if i % 2 == 0 { &a } else { &b };
        leads.push(id(&app
            .create_ok(
                &adm,
                lead_with(
                    &format!("Gasthaus Takt {i}"),
                    Some(&format!("takt{i}@gast.test")),
                    true,
                    Some(due),
                ),
            )
            .await));
    }
    // 70 days without a meaningful contact: the sweep moves it to REMINDER (SPEC §4.5).
    let quiet = id(&a
        .create_ok(
            &adm,
            lead_with(
                "Kantine Still",
                None,
                false,
                Some(OffsetDateTime::now_utc() - time::Duration::days(70)),
            ),
        )
        .await);

    for lead in &leads {
        eventually(
            Duration::from_secs(15),
            "the scheduled run sent T+3",
            || lead_of(&a, lead),
            |l| l["followUps"]["t3"]["status"] == "SENT",
        )
        .await;
    }
    eventually(
        Duration::from_secs(15),
        "the scheduled sweep",
        || lead_of(&b, &quiet),
        |l| l["status"] == "REMINDER",
    )
    .await;
    // Let both schedules tick a few more times over the processed leads.
    tokio::time::sleep(Duration::from_millis(2500)).await;

    // Exactly once: one mail and one FOLLOWUP_SENT per lead, and the runs' counts add up.
    let page = json_ok(a.get(&adm, "/api/mails?limit=500").await).await;
    let mut mailed: Vec<String> = page["mails"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["leadId"].as_str().unwrap().to_owned())
        .collect();
    mailed.sort();
    let mut expected = leads.clone();
    expected.sort();
    assert_eq!(mailed, expected);
    for lead in &leads {
        assert_eq!(count_of(&timeline(&a, lead).await, "FOLLOWUP_SENT"), 1);
    }
    assert_eq!(count_of(&timeline(&a, &quiet).await, "REMINDER_SENT"), 1);
    let log = json_ok(a.get(&adm, "/api/followups/runs?limit=100").await).await;
    let runs = log["runs"].as_array().unwrap();
    assert!(runs.len() >= 3, "{log}");
    let sent: u64 = runs.iter().map(|r| r["t3Count"].as_u64().unwrap()).sum();
    assert_eq!(sent, 6);
    // One run at a time, cluster-wide: the recorded runs never overlap.
    let mut spans: Vec<(OffsetDateTime, OffsetDateTime)> = runs
        .iter()
        .map(|r| {
            let at = |k: &str| OffsetDateTime::parse(r[k].as_str().unwrap(), &Rfc3339).unwrap();
            (at("startedAt"), at("finishedAt"))
        })
        .collect();
    spans.sort();
    for pair in spans.windows(2) {
        assert!(pair[0].1 <= pair[1].0, "overlapping runs: {pair:?}");
    }
    // Each recorded run was counted by the replica that ran it (a replica that found the lock
    // taken skipped its tick); compared between two ticks.
    let started = Instant::now();
    loop {
        let counted: f64 = futures_util::future::join_all([&a, &b].map(metrics_text))
            .await
            .iter()
            .map(|t| metric(t, "followup_processing_duration_seconds_count").unwrap_or(0.0))
            .sum();
        let recorded = json_ok(a.get(&adm, "/api/followups/runs?limit=100").await).await["runs"]
            .as_array()
            .unwrap()
            .len();
        if counted == recorded as f64 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{counted} runs counted, {recorded} recorded"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let t3: f64 = futures_util::future::join_all([&a, &b].map(metrics_text))
        .await
        .iter()
        .map(|t| metric(t, r#"followup_processed_total{type="T3"}"#).unwrap_or(0.0))
        .sum();
    assert_eq!(t3, 6.0);
}

// ---------------------------------------------------------------------------------------------
// Configuration
// ---------------------------------------------------------------------------------------------

async fn refused(adjust: impl FnOnce(&mut Config)) -> String {
    let mut shown = String::new();
    let result = spawn_app_with(|c| {
        adjust(c);
        shown = format!("{c:?}");
    })
    .await;
    match result {
        Ok(_) => panic!("the service started with {shown}"),
        Err(e) => format!("{e:#}"),
    }
}

#[actix_web::test]
async fn the_service_refuses_weak_unsubscribe_secrets_and_bad_schedules_outside_development() {
    for (adjust, expected) in [
        (
            Box::new(|c: &mut Config| c.unsubscribe_secret = Some("short-secret".into()))
                as Box<dyn FnOnce(&mut Config)>,
            "at least 32 bytes",
        ),
        (
            Box::new(|c: &mut Config| c.unsubscribe_secret = Some(DEVELOPMENT_SECRET.into())),
            "published default",
        ),
        (
            Box::new(|c: &mut Config| {
                c.unsubscribe_secret = None;
                c.followup_enabled = true;
            }),
            "FRESHPLAN_UNSUBSCRIBE_SECRET is not set",
        ),
        (
            Box::new(|c: &mut Config| c.public_url = None),
            "FRESHPLAN_PUBLIC_URL is not set",
        ),
        (
            Box::new(|c: &mut Config| c.public_url = Some("ftp://crm.example".into())),
            "FRESHPLAN_PUBLIC_URL=",
        ),
        (
            Box::new(|c: &mut Config| c.followup_cron = "*/15 * * * *".into()),
            "FRESHPLAN_FOLLOWUP_CRON",
        ),
        (
            Box::new(|c: &mut Config| c.sweep_cron = "every five minutes".into()),
            "FRESHPLAN_SWEEP_CRON",
        ),
        (
            Box::new(|c: &mut Config| c.smtp_url = Some("smtp://127.0.0.1:25".into())),
            "FRESHPLAN_MAIL_FROM",
        ),
        (
            Box::new(|c: &mut Config| {
                c.smtp_url = Some("gopher://127.0.0.1".into());
                c.mail_from = Some("noreply@freshplan.test".into());
            }),
            "FRESHPLAN_SMTP_URL",
        ),
    ] {
        let message = refused(adjust).await;
        assert!(
            message.contains(expected),
            "{expected:?} not in {message:?}"
        );
    }
    assert!(
        refused(|c| c.unsubscribe_secret = Some("short".into()))
            .await
            .contains("FRESHPLAN_UNSUBSCRIBE_SECRET")
    );

    // Development (FRESHPLAN_ENV=development) accepts a short secret, or none, and defaults the
    // public URL; follow-ups work there.
    let dev = spawn_app_with(|c| {
        c.development = true;
        c.unsubscribe_secret = Some("short".into());
        c.public_url = None;
    })
    .await
    .unwrap();
    assert_eq!(counts(&run_ok(&dev).await), (0, 0, 0));
    let dev = spawn_app_with(|c| {
        c.development = true;
        c.unsubscribe_secret = None;
    })
    .await
    .unwrap();
    let token = UnsubscribeToken::sign(Uuid::now_v7(), DEVELOPMENT_SECRET.as_bytes());
    for method in [Method::GET, Method::POST] {
        let r = dev
            .client
            .request(
                method.clone(),
                format!("{}/unsubscribe?token={token}", dev.base),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{method}");
    }

    // Outside development, follow-ups switched off may go without a secret: runs and links are
    // then 503, everything else works.
    let off = spawn_app_with(|c| {
        c.unsubscribe_secret = None;
        c.followup_enabled = false;
    })
    .await
    .unwrap();
    problem(run(&off, &admin()).await, 503).await;
    for method in [Method::GET, Method::POST] {
        let r = off
            .client
            .request(method, format!("{}/unsubscribe?token=x", off.base))
            .header("accept", "application/json")
            .send()
            .await
            .unwrap();
        problem(r, 503).await;
    }
    figures_are(&off, &admin(), "", (0, 0, 0, 0.0), ScopeKind::All).await;
}

#[cfg(unix)]
#[actix_web::test]
async fn the_binary_exits_on_a_weak_secret_and_starts_in_development() {
    use crate::process::Serve;
    let database_url = fresh_database().await;
    let mut weak = Serve::spawn(
        &database_url,
        &[
            ("FRESHPLAN_UNSUBSCRIBE_SECRET", "change-me"),
            ("FRESHPLAN_FOLLOWUP_ENABLED", "true"),
        ],
    );
    let started = Instant::now();
    let status = loop {
        if let Some(status) = weak.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "still running:\n{}",
            weak.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let log = weak.log();
    assert_eq!(status.code(), Some(1), "{log}");
    assert!(log.contains("FRESHPLAN_UNSUBSCRIBE_SECRET"), "{log}");

    let mut dev = Serve::spawn(
        &database_url,
        &[
            ("FRESHPLAN_UNSUBSCRIBE_SECRET", "change-me"),
            ("FRESHPLAN_ENV", "development"),
            ("FRESHPLAN_FOLLOWUP_ENABLED", "true"),
        ],
    );
    dev.wait_ready().await;
    let r = reqwest::Client::new()
        .post(format!("http://{}/api/followups/run", dev.addr))
        .bearer_auth(admin())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}
