//! Follow-ups on three `freshplan serve` processes (`CARGO_BIN_EXE_freshplan`) sharing one
//! database, their schedules firing every second (SPEC §6, §11: "the scheduler never
//! double-processes"): 2,000 due leads, the replica in the middle of the run killed with SIGKILL,
//! and in the end every lead has exactly one T+3 follow-up — one `SENT` record, one
//! `FOLLOWUP_SENT`, one `lead.followup.sent.v1`, one mail in the outbox — and a real SMTP server
//! on 127.0.0.1 ([`crate::smtp_sink`]) received each mail exactly once.
//!
//! The setup, and why:
//! - A fourth process, with its schedule off, seeds the leads through the API (as an admin,
//!   registered 7 days minus 30 minutes before the follow-up clock's now: T+3 due, T+7 not yet)
//!   and is the observer (figures, feed, outbox); it never runs follow-ups.
//! - Replica C starts first and so takes the cluster-wide run lock with the whole backlog; A and
//!   B start while C's run is under way (their ticks find the lock taken) and are the mail
//!   dispatchers. C is killed once a share of the leads is processed: its run is never recorded,
//!   its lock goes with its database session, and A or B finishes the rest at a following tick.
//! - C has no SMTP: a dispatcher killed between an SMTP send and its `SENT` record sends that
//!   mail again when its 15-minute lease ends (at least once, by design: `freshplan-mail-smtp`).
//!   This test is about the run, so the killed replica holds no mail lease, and "exactly once
//!   at the SMTP server" is a deterministic assertion.
//!
//! Follow-ups go out only inside business hours (08:00–18:00 Europe/Berlin on business days), so
//! the scenario needs a follow-up clock inside them for its whole length ([`MARGIN`]). When the
//! wall clock is, the four processes run as in production. When it is not ([`clock_offset`]),
//! all four run with `FRESHPLAN_ENV=development` and `FRESHPLAN_FOLLOWUP_CLOCK_OFFSET` set to
//! the way to 10:00 Berlin time of the next business day: their follow-up side — planning,
//! records, run log, mail queue and dispatch — runs at that hour, at real speed. Development
//! changes nothing else here (the test's unsubscribe secret and public URL are explicit, and
//! accepted either way). Registrations are backdated from the follow-up clock's now, which stays
//! in the real past (the API refuses a future one). So the test asserts the same exact counts at
//! any hour, and that the runs happened at the follow-up clock's time.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use mail_parser::MessageParser;
use reqwest::Client;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use freshplan_app::config::FOLLOWUP_CLOCK_OFFSET;
use freshplan_followup::Stage;
use freshplan_kernel::TerritoryId;

use crate::helpers::*;
use crate::process::Serve;
use freshplan_mail_smtp::testing::Sink;

/// Due leads.
const LEADS: usize = 2000;
/// Parallel creates while seeding.
pub(crate) const SEEDERS: usize = 16;
/// C is killed once at least this many leads are processed (and before all are).
const KILL_AFTER: u64 = 400;
/// How long the scenario may take on the follow-up clock: it must end before closing time.
const MARGIN: time::Duration = time::Duration::minutes(20);
/// The mails' sender (its domain is the `Message-ID` domain).
pub(crate) const MAIL_FROM: &str = "FreshPlan Vertrieb <vertrieb@freshplan.test>";

pub(crate) fn base(s: &Serve) -> String {
    format!("http://{}", s.addr)
}

/// Whether German business hours last from `now` throughout the next [`MARGIN`].
fn open_throughout(now: OffsetDateTime) -> bool {
    let open = |t: OffsetDateTime| freshplan_territory::in_business_hours(TerritoryId::De, t);
    // Business hours are one block per day, far longer than MARGIN: open at both ends means open
    // in between.
    open(now) && open(now + MARGIN)
}

/// The follow-up clock offset of the processes: none when business hours last throughout the
/// next [`MARGIN`]; otherwise the way, in whole seconds, to 10:00 Berlin time of the next
/// business day (today's before 08:00 on a business day; after a weekend or holidays, at most
/// about five days ahead).
pub(crate) fn clock_offset(now: OffsetDateTime) -> Option<time::Duration> {
    use freshplan_territory::{next_business_slot, start_of_local_day};
    if open_throughout(now) {
        return None;
    }
    // The day of the first business hour from `now + MARGIN` on; its opening (08:00 local), then
    // 10:00 (no clock change lies between 08:00 and 10:00).
    let day = start_of_local_day(
        TerritoryId::De,
        next_business_slot(TerritoryId::De, now + MARGIN),
    );
    let ten = next_business_slot(TerritoryId::De, day) + time::Duration::hours(2);
    // Whole seconds, rounded up: the follow-up clock starts at 10:00:00 or just after.
    let way = ten - now;
    let offset =
        time::Duration::seconds(way.whole_seconds() + i64::from(way.subsec_nanoseconds() > 0));
    assert!(
        offset.is_positive() && open_throughout(now + offset),
        "{now} + {offset}: not inside business hours throughout the next {MARGIN}"
    );
    Some(offset)
}

/// Every process's environment for [`clock_offset`]'s `offset`: production (nothing), or
/// development with the follow-up clock shifted. Says which on stdout.
pub(crate) fn clock_env(
    now: OffsetDateTime,
    offset: Option<time::Duration>,
) -> Vec<(&'static str, String)> {
    match offset {
        None => {
            println!("German business hours throughout the next {MARGIN} (now {now})");
            vec![]
        }
        Some(offset) => {
            let shift = format!("{:+}s", offset.whole_seconds());
            println!(
                "outside German business hours now ({now}): {FOLLOWUP_CLOCK_OFFSET}={shift}, the \
                 follow-up clock shows {}",
                now + offset
            );
            vec![
                ("FRESHPLAN_ENV", "development".to_owned()),
                (FOLLOWUP_CLOCK_OFFSET, shift),
            ]
        }
    }
}

/// Registered 7 days minus 30 minutes before the follow-up clock's `now`: T+3 due and sendable
/// (its slot lies in the last four days), T+7 due only in 30 minutes. Still in the real past
/// (`now` is at most a few days ahead of the wall clock).
pub(crate) fn t3_due(now: OffsetDateTime) -> OffsetDateTime {
    let registered = now - time::Duration::days(7) + time::Duration::minutes(30);
    assert!(
        freshplan_followup::send_at(TerritoryId::De, registered, Stage::T3) <= now,
        "no German business hour in the four days before {now}: no T+3 is sendable then"
    );
    assert!(
        registered < OffsetDateTime::now_utc() - time::Duration::days(1),
        "registered {registered}: not in the real past"
    );
    registered
}

/// `n` leads whose T+3 is due at `followup_now` ([`t3_due`]), created through `base` by an
/// admin (who may backdate `registeredAt`), [`SEEDERS`] at a time: `Gasthaus {tag} 0000` … with
/// consent and the address `{tag}0000@gast.test` …. Their ids and addresses.
pub(crate) async fn seed_due_leads(
    client: &Client,
    base: &str,
    n: usize,
    followup_now: OffsetDateTime,
    tag: &str,
) -> BTreeMap<String, String> {
    let due = t3_due(followup_now).format(&Rfc3339).unwrap();
    let seeded: BTreeMap<String, String> = futures_util::stream::iter(0..n)
        .map(|i| {
            let (client, due) = (client.clone(), due.clone());
            let email = format!("{tag}{i:04}@gast.test");
            let body = json!({
                "companyName": format!("Gasthaus {tag} {i:04}"), "countryCode": "DE",
                "city": "Berlin", "postalCode": "10115", "contactPerson": "Anna Berger",
                "businessType": "RESTAURANT", "email": email, "emailConsent": true,
                "registeredAt": due,
            });
            let url = format!("{base}/api/leads");
            async move {
                let r = client
                    .post(url)
                    .bearer_auth(admin())
                    .json(&body)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
                let lead: Value = r.json().await.unwrap();
                (lead["id"].as_str().unwrap().to_owned(), email)
            }
        })
        .buffer_unordered(SEEDERS)
        .collect()
        .await;
    assert_eq!(seeded.len(), n, "distinct leads");
    seeded
}

pub(crate) async fn get_json(client: &Client, url: &str) -> Value {
    let r = client.get(url).bearer_auth(admin()).send().await.unwrap();
    let status = r.status();
    let body = r.text().await.unwrap();
    assert_eq!(status, 200, "{url}: {body}");
    serde_json::from_str(&body).unwrap()
}

/// Leads whose T+3 is still pending, per the observer's cockpit figures (admin).
pub(crate) async fn pending(client: &Client, base: &str) -> u64 {
    let f = get_json(client, &format!("{base}/api/dashboard/followup")).await;
    f["pendingT3"].as_u64().unwrap()
}

/// Sum of every series of `name` (with any labels) on a replica's `/metrics` page.
pub(crate) async fn metric(client: &Client, base: &str, series: &str) -> f64 {
    let text = client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .filter_map(|l| {
            l.strip_prefix(series)?
                .strip_prefix(' ')?
                .trim()
                .parse::<f64>()
                .ok()
        })
        .sum()
}

/// Every event of `event_type` in the outbox, through the feed.
async fn feed(client: &Client, base: &str, event_type: &str) -> Vec<Value> {
    let mut events = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let mut url = format!("{base}/api/events?type={event_type}&limit=1000");
        if let Some(cursor) = &after {
            url.push_str(&format!("&after={cursor}"));
        }
        let page = get_json(client, &url).await;
        let batch = page["events"].as_array().unwrap().clone();
        if batch.is_empty() {
            return events;
        }
        events.extend(batch);
        after = Some(page["nextCursor"].as_str().unwrap().to_owned());
    }
}

/// Every mail of the outbox (summaries), through `GET /api/mails`.
pub(crate) async fn outbox(client: &Client, base: &str) -> Vec<Value> {
    let mut mails = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let mut url = format!("{base}/api/mails?limit=500");
        if let Some(cursor) = &after {
            url.push_str(&format!("&after={cursor}"));
        }
        let page = get_json(client, &url).await;
        mails.extend(page["mails"].as_array().unwrap().iter().cloned());
        match page["nextCursor"].as_str() {
            Some(cursor) => after = Some(cursor.to_owned()),
            None => return mails,
        }
    }
}

/// Counts of each item.
pub(crate) fn tally<T: Ord>(items: impl IntoIterator<Item = T>) -> BTreeMap<T, usize> {
    let mut m = BTreeMap::new();
    for item in items {
        *m.entry(item).or_insert(0) += 1;
    }
    m
}

/// Waits until `probe` answers `true`, at most `limit`; `what` and the last state on failure.
pub(crate) async fn wait_until<F, Fut>(limit: Duration, what: &str, mut probe: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = (bool, String)>,
{
    let started = Instant::now();
    loop {
        let (done, state) = probe().await;
        if done {
            return;
        }
        assert!(started.elapsed() < limit, "{what} after {limit:?}: {state}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A replica's `/metrics` figure: (runs finished, T+3 sent).
async fn runs_and_sent(client: &Client, replica: &Serve) -> (f64, f64) {
    (
        metric(
            client,
            &base(replica),
            "followup_processing_duration_seconds_count",
        )
        .await,
        metric(
            client,
            &base(replica),
            r#"followup_processed_total{type="T3"}"#,
        )
        .await,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_replicas_send_each_of_2000_t3_follow_ups_once_although_one_is_killed_mid_run() {
    let now = OffsetDateTime::now_utc();
    let offset = clock_offset(now);
    let clock_env = clock_env(now, offset);
    let clock_env: Vec<(&str, &str)> = clock_env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let offset = offset.unwrap_or(time::Duration::ZERO);
    let followup_now = now + offset;
    let database_url = fresh_database().await;
    let sink = Sink::start().await;
    let client = Client::new();

    // The seeder and observer: schedules off (Serve's defaults), no SMTP.
    let mut observer_env = vec![("FRESHPLAN_POOL_SIZE", "8"), ("FRESHPLAN_WORKERS", "2")];
    observer_env.extend(clock_env.iter().copied());
    let mut observer = Serve::spawn(&database_url, &observer_env);
    observer.wait_ready().await;
    let obs = base(&observer);

    // 2,000 due leads through the API.
    let seeding = Instant::now();
    let leads = seed_due_leads(&client, &obs, LEADS, followup_now, "replika").await;
    println!(
        "seeded {} due leads through the API in {:?}",
        leads.len(),
        seeding.elapsed()
    );
    wait_until(Duration::from_secs(10), "all leads pending", || async {
        let p = pending(&client, &obs).await;
        (p == LEADS as u64, format!("{p} pending"))
    })
    .await;

    // The replicas: schedules every second; A and B deliver mail.
    let smtp = sink.url();
    let mut scheduled: Vec<(&str, &str)> = vec![
        ("FRESHPLAN_POOL_SIZE", "6"),
        ("FRESHPLAN_FOLLOWUP_ENABLED", "true"),
        ("FRESHPLAN_FOLLOWUP_CRON", "* * * * * *"),
    ];
    scheduled.extend(clock_env.iter().copied());
    let mut dispatching = scheduled.clone();
    dispatching.extend([
        ("FRESHPLAN_SMTP_URL", smtp.as_str()),
        ("FRESHPLAN_MAIL_FROM", MAIL_FROM),
        ("FRESHPLAN_MAIL_POLL", "1s"),
    ]);
    let c_started = Instant::now();
    let mut c = Serve::spawn(&database_url, &scheduled);
    c.wait_ready().await;
    wait_until(Duration::from_secs(30), "C's run began", || async {
        let p = pending(&client, &obs).await;
        (p < LEADS as u64, format!("{p} pending"))
    })
    .await;
    // A and B come up while C runs (not awaited: C must not finish first on a fast machine).
    let mut a = Serve::spawn(&database_url, &dispatching);
    let mut b = Serve::spawn(&database_url, &dispatching);

    // C in the middle of its run: killed.
    let waiting = Instant::now();
    let processed_at_kill = loop {
        let processed = LEADS as u64 - pending(&client, &obs).await;
        if processed >= KILL_AFTER {
            break processed;
        }
        assert!(
            waiting.elapsed() < Duration::from_secs(120),
            "C processed only {processed}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    c.child.kill().expect("SIGKILL"); // std's kill is SIGKILL
    c.child.wait().unwrap();
    let killed = Instant::now();
    a.wait_ready().await;
    b.wait_ready().await;
    println!(
        "C killed with SIGKILL {:?} after it started, {processed_at_kill} of {LEADS} follow-ups \
         processed",
        c_started.elapsed(),
    );
    assert!(
        processed_at_kill < LEADS as u64,
        "C's run finished before it could be killed"
    );
    // A or B takes over at a following tick and finishes; the mails arrive.
    wait_until(Duration::from_secs(300), "every lead processed", || async {
        let p = pending(&client, &obs).await;
        (p == 0, format!("{p} pending"))
    })
    .await;
    println!(
        "every follow-up processed {:?} after the kill",
        killed.elapsed()
    );
    wait_until(
        Duration::from_secs(300),
        "every mail at the SMTP server",
        || async {
            let n = sink.received().len();
            (n >= LEADS, format!("{n} mails"))
        },
    )
    .await;
    println!(
        "every mail at the SMTP server {:?} after the kill",
        killed.elapsed()
    );
    // Both survivors run on their schedules (a tick that finds the lock taken does not count).
    wait_until(Duration::from_secs(60), "A and B each ran", || async {
        let (ra, _) = runs_and_sent(&client, &a).await;
        let (rb, _) = runs_and_sent(&client, &b).await;
        (ra >= 1.0 && rb >= 1.0, format!("A {ra}, B {rb} runs"))
    })
    .await;
    // More ticks and mail polls on both replicas: nothing more may come.
    tokio::time::sleep(Duration::from_secs(3)).await;
    wait_until(Duration::from_secs(60), "no mail left queued", || async {
        let queued = get_json(&client, &format!("{obs}/api/mails?status=QUEUED&limit=1")).await;
        let n = queued["mails"].as_array().unwrap().len();
        (n == 0, format!("{queued}"))
    })
    .await;

    // Every lead: one T+3 record, SENT (all consent, none has a recent contact); no T+7.
    let mut sent = BTreeSet::new();
    let mut listed = BTreeSet::new();
    for page in 0..LEADS.div_ceil(200) {
        let body = get_json(
            &client,
            &format!("{obs}/api/leads?size=200&page={page}&sort=companyName,asc"),
        )
        .await;
        for lead in body["data"].as_array().unwrap() {
            let id = lead["id"].as_str().unwrap().to_owned();
            let t3 = &lead["followUps"]["t3"];
            if !t3.is_null() {
                assert_eq!(t3["status"], "SENT", "{lead}");
                sent.insert(id.clone());
            }
            assert!(lead["followUps"]["t7"].is_null(), "{lead}");
            listed.insert(id);
        }
    }
    assert_eq!(listed, leads.keys().cloned().collect::<BTreeSet<_>>());
    assert_eq!(sent, listed, "every lead got its T+3");
    println!("{} of {LEADS} leads have a SENT T+3", sent.len());

    // One sent event per SENT record, none else; nothing skipped.
    let sent_events = feed(&client, &obs, "lead.followup.sent.v1").await;
    let per_lead = tally(
        sent_events
            .iter()
            .map(|e| e["subject"].as_str().unwrap().to_owned()),
    );
    assert!(
        per_lead.values().all(|n| *n == 1),
        "a lead with more than one sent event: {:?}",
        per_lead.iter().find(|(_, n)| **n != 1)
    );
    assert_eq!(per_lead.keys().cloned().collect::<BTreeSet<_>>(), sent);
    assert!(
        feed(&client, &obs, "lead.followup.skipped.v1")
            .await
            .is_empty()
    );
    // One FOLLOWUP_SENT on each SENT lead's timeline, none on the others.
    let timelines: Vec<(String, usize)> = futures_util::stream::iter(leads.keys().cloned())
        .map(|id| {
            let (client, obs) = (client.clone(), obs.clone());
            async move {
                let page = get_json(
                    &client,
                    &format!("{obs}/api/leads/{id}/activities?size=200"),
                )
                .await;
                let n = page["data"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter(|a| a["type"] == "FOLLOWUP_SENT")
                    .count();
                (id, n)
            }
        })
        .buffer_unordered(SEEDERS)
        .collect()
        .await;
    for (id, n) in &timelines {
        assert_eq!(*n, usize::from(sent.contains(id)), "FOLLOWUP_SENT on {id}");
    }

    // The outbox: one T+3 mail per SENT record, to the lead's address, delivered.
    let mails = outbox(&client, &obs).await;
    assert_eq!(mails.len(), LEADS, "mails in the outbox");
    let mut mail_of_lead: BTreeMap<String, String> = BTreeMap::new();
    for m in &mails {
        assert_eq!(m["stage"], "T3", "{m}");
        assert_eq!(m["status"], "SENT", "{m}");
        let lead = m["leadId"].as_str().unwrap().to_owned();
        assert_eq!(
            Some(m["recipient"].as_str().unwrap()),
            leads.get(&lead).map(String::as_str),
            "{m}"
        );
        let previous = mail_of_lead.insert(lead, m["id"].as_str().unwrap().to_owned());
        assert!(previous.is_none(), "two mails for one lead: {m}");
    }
    assert_eq!(mail_of_lead.keys().cloned().collect::<BTreeSet<_>>(), sent);

    // The SMTP server: each mail exactly once (by its deterministic Message-ID), each SENT
    // lead's address exactly once.
    let received = sink.received();
    let message_ids = tally(received.iter().map(|r| {
        let m = MessageParser::default()
            .parse(&r.data)
            .expect("a MIME message");
        let id = m
            .message_id()
            .expect("a Message-ID")
            .trim_matches(['<', '>']);
        id.strip_suffix("@freshplan.test")
            .unwrap_or_else(|| panic!("Message-ID {id}"))
            .to_owned()
    }));
    assert_eq!(received.len(), LEADS, "mails at the SMTP server");
    assert!(
        message_ids.values().all(|n| *n == 1),
        "a mail arrived twice"
    );
    assert_eq!(
        message_ids.keys().cloned().collect::<BTreeSet<_>>(),
        mail_of_lead.values().cloned().collect::<BTreeSet<_>>(),
        "the SMTP server got exactly the outbox's mails"
    );
    let recipients = tally(received.iter().flat_map(|r| r.to.clone()));
    assert!(recipients.values().all(|n| *n == 1));
    assert_eq!(
        recipients.keys().cloned().collect::<BTreeSet<_>>(),
        sent.iter()
            .map(|id| leads[id].clone())
            .collect::<BTreeSet<_>>()
    );

    // Who ran: A and B each (every replica counts its own runs); C (killed) sent the rest, in a
    // run that was never recorded.
    let mut by_survivors = 0.0;
    for (name, replica) in [("A", &a), ("B", &b)] {
        let (runs, t3) = runs_and_sent(&client, replica).await;
        println!("replica {name}: {runs} runs, {t3} T+3 sent");
        assert!(runs >= 1.0, "replica {name} never ran");
        by_survivors += t3;
    }
    let by_c = sent.len() as f64 - by_survivors;
    println!("replica C (killed): {by_c} T+3 sent before the kill");
    assert!(
        by_c >= processed_at_kill as f64,
        "C committed at least what was seen before the kill"
    );
    assert!(by_survivors >= 1.0, "the survivors finished the run");
    // The run log: completed runs, one at a time, on the follow-up clock, that account for no
    // more than the survivors sent.
    let log = get_json(&client, &format!("{obs}/api/followups/runs?limit=100")).await;
    let runs = log["runs"].as_array().unwrap();
    assert!(!runs.is_empty());
    let followup_end = OffsetDateTime::now_utc() + offset;
    let mut spans = Vec::new();
    for r in runs {
        assert_eq!(r["outcome"], "COMPLETED", "{r}");
        let at = |k: &str| OffsetDateTime::parse(r[k].as_str().unwrap(), &Rfc3339).unwrap();
        let (started, finished) = (at("startedAt"), at("finishedAt"));
        assert!(
            followup_now <= started && finished <= followup_end,
            "a run outside the follow-up clock's [{followup_now}, {followup_end}]: {r}"
        );
        spans.push((started, finished));
    }
    spans.sort();
    for pair in spans.windows(2) {
        assert!(pair[0].1 <= pair[1].0, "overlapping runs: {pair:?}");
    }
    let logged: f64 = runs.iter().map(|r| r["t3Count"].as_f64().unwrap()).sum();
    assert!(
        logged <= by_survivors,
        "runs logged {logged} T+3, the survivors sent {by_survivors}"
    );
    assert!(a.running() && b.running() && observer.running());
}

/// [`clock_offset`] at chosen instants: none inside business hours (for the whole margin),
/// otherwise the way to 10:00 Berlin time of the next business day — across a night, a weekend,
/// Easter and a daylight-saving change.
#[test]
fn the_clock_offset_leads_to_10_00_of_the_next_business_day() {
    use time::macros::datetime;
    for (now, expected) in [
        // Monday 09:00 CET: open until long after the margin.
        (datetime!(2026-11-23 09:00 +01:00), None),
        // Monday 17:45 CET: closes within the margin.
        (
            datetime!(2026-11-23 17:45 +01:00),
            Some(datetime!(2026-11-24 10:00 +01:00)),
        ),
        // Monday 18:44 CET (the evening), Tuesday 03:00 and 07:50 (opens within the margin).
        (
            datetime!(2026-11-23 18:44 +01:00),
            Some(datetime!(2026-11-24 10:00 +01:00)),
        ),
        (
            datetime!(2026-11-24 03:00 +01:00),
            Some(datetime!(2026-11-24 10:00 +01:00)),
        ),
        (
            datetime!(2026-11-24 07:50 +01:00),
            Some(datetime!(2026-11-24 10:00 +01:00)),
        ),
        // Friday evening and Sunday: Monday.
        (
            datetime!(2026-11-27 19:00 +01:00),
            Some(datetime!(2026-11-30 10:00 +01:00)),
        ),
        (
            datetime!(2026-11-29 12:00 +01:00),
            Some(datetime!(2026-11-30 10:00 +01:00)),
        ),
        // Maundy Thursday 2026 evening: Good Friday and Easter Monday are holidays.
        (
            datetime!(2026-04-02 18:30 +02:00),
            Some(datetime!(2026-04-07 10:00 +02:00)),
        ),
        // Friday 27 March 2026 evening (CET); clocks go forward on Sunday: Monday 10:00 CEST.
        (
            datetime!(2026-03-27 18:30 +01:00),
            Some(datetime!(2026-03-30 10:00 +02:00)),
        ),
    ] {
        let offset = clock_offset(now);
        match expected {
            None => assert_eq!(offset, None, "{now}"),
            Some(ten) => {
                let shifted = now + offset.expect("an offset");
                assert!(
                    ten <= shifted && shifted < ten + time::Duration::seconds(1),
                    "{now}: {shifted}, expected {ten}"
                );
            }
        }
    }
}

/// Outside development the binary refuses the follow-up clock offset before it touches the
/// database (the URL here leads nowhere), and says why.
#[tokio::test]
async fn serve_refuses_the_follow_up_clock_offset_outside_development() {
    let mut serve = Serve::spawn(
        "postgres://postgres@127.0.0.1:1/nowhere",
        &[(FOLLOWUP_CLOCK_OFFSET, "+38h")],
    );
    let started = Instant::now();
    let exit = loop {
        if let Some(status) = serve.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "still running:\n{}",
            serve.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let log = serve.log();
    assert_eq!(exit.code(), Some(1), "{log}");
    assert!(
        log.contains("FRESHPLAN_FOLLOWUP_CLOCK_OFFSET=+38h is refused outside development")
            && log.contains("FRESHPLAN_ENV=development"),
        "{log}"
    );
}
