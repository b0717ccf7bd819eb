//! The dispatcher against PostgreSQL and a real SMTP server: what arrives (recipient, subject,
//! bodies, footer, signed unsubscribe link, headers), outages (mails stay queued and back off,
//! then arrive exactly once), giving up (bounded attempts, permanent rejections, crashed
//! attempts), concurrent dispatchers, and the admin listing.

use std::collections::BTreeMap;
use std::sync::Arc;

use mail_parser::MessageParser;
use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use time::macros::datetime;
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

use freshplan_followup::unsubscribe::UnsubscribeToken;
use freshplan_followup::{FollowUpConfig, FollowUpService};
use freshplan_kernel::{Actor, FixedClock, Role, TerritoryId, UserId, UuidV7Generator};
use freshplan_leads::Lead;
use freshplan_leads::LeadData;
use freshplan_leads::model::{BusinessType, CompanyName, Email};
use freshplan_leads::ports::{LeadStore, LeadTx};
use freshplan_mail_smtp::{
    Dispatcher, DispatcherConfig, MailQuery, MailStatus, PgMailOutbox, RetryPolicy, Sender,
    SmtpTransport,
};
use freshplan_store_postgres::{PgFollowUpStore, PgLeadStore, app_pool_options};
use freshplan_territory::Territory;

use freshplan_mail_smtp::testing::{Received, Sink};

const SECRET: &[u8] = b"a-private-unsubscribe-secret-of-32-bytes";
/// Monday 2 March 2026, 10:00 in Berlin.
const REGISTERED: OffsetDateTime = datetime!(2026-03-02 09:00 UTC);
/// Thursday: T+3.
const T3_AT: OffsetDateTime = datetime!(2026-03-05 09:00 UTC);

struct Db {
    app: PgPool,
    su: PgPool,
}

impl Db {
    async fn new(pool_opts: PgPoolOptions, opts: PgConnectOptions) -> Db {
        let app = app_pool_options(pool_opts.max_connections(8))
            .connect_with(opts.clone())
            .await
            .unwrap();
        let su = PgPoolOptions::new()
            .max_connections(2)
            .connect_with(opts)
            .await
            .unwrap();
        Db { app, su }
    }

    async fn close(self) {
        self.app.close().await;
        self.su.close().await;
    }
}

fn uid(s: &str) -> UserId {
    UserId::parse(s).unwrap()
}

fn admin() -> Actor {
    Actor::new(uid("admin"), [Role::Admin], [])
}

fn lead_id(n: u128) -> Uuid {
    Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0000 | n)
}

fn lead(n: u128, country: &str, owner: &str) -> Lead {
    let mut data = LeadData::new(
        CompanyName::parse(&format!("Gasthaus Nummer {n}")).unwrap(),
        country,
    )
    .unwrap();
    data.email = Some(Email::parse(&format!("kueche{n}@example.de")).unwrap());
    data.email_consent = true;
    data.contact_person = Some(format!("Person {n}"));
    data.business_type = Some(BusinessType::Hotel);
    let creator = Actor::new(uid(owner), [Role::Sales], TerritoryId::ALL);
    Lead::register(lead_id(n), data, &creator, None, REGISTERED)
        .unwrap()
        .0
}

/// Leads registered on Monday, followed up on Thursday: their T+3 mails are queued.
async fn queue_mails(db: &Db, leads: &[Lead]) {
    let store = PgLeadStore::new(db.app.clone());
    let mut tx = store.begin(&admin()).await.unwrap();
    for l in leads {
        tx.insert(l).await.unwrap();
    }
    tx.commit().await.unwrap();
    let followups = PgFollowUpStore::new(db.app.clone());
    let config = FollowUpConfig {
        templates: followups.active_templates("de").await.unwrap(),
        ..FollowUpConfig::new("https://crm.example/unsubscribe", SECRET.to_vec())
    };
    let service =
        FollowUpService::new(followups, FixedClock::new(T3_AT), UuidV7Generator, config).unwrap();
    let (report, _) = service.run(Uuid::now_v7()).await.unwrap();
    assert_eq!(report.t3_count as usize, leads.len());
}

fn sender() -> Sender {
    Sender::new(
        "FreshPlan <noreply@freshplan.example>".parse().unwrap(),
        None,
    )
}

fn dispatcher(
    db: &Db,
    url: &str,
    clock: Arc<FixedClock>,
    retry: RetryPolicy,
) -> Dispatcher<SmtpTransport, Arc<FixedClock>> {
    let transport = SmtpTransport::from_url(url, std::time::Duration::from_secs(5)).unwrap();
    Dispatcher::new(
        PgMailOutbox::new(db.app.clone()),
        transport,
        clock,
        DispatcherConfig {
            batch_size: 10,
            retry,
            ..DispatcherConfig::new(sender())
        },
    )
}

type Stored = (
    Uuid,
    Uuid,
    String,
    i32,
    OffsetDateTime,
    Option<String>,
    Option<OffsetDateTime>,
);
type Row = (
    Uuid,
    String,
    i32,
    OffsetDateTime,
    Option<String>,
    Option<OffsetDateTime>,
);

/// `(id, status, attempts, next_attempt_at, last_error, sent_at)` by lead.
async fn mails(db: &Db) -> BTreeMap<Uuid, Row> {
    let rows: Vec<Stored> =
        sqlx::query_as(
            "select lead_id, id, status, attempts, next_attempt_at, last_error, sent_at from mail_outbox",
        )
        .fetch_all(&db.su)
        .await
        .unwrap();
    rows.into_iter()
        .map(|(lead, id, status, attempts, next, error, sent)| {
            (lead, (id, status, attempts, next, error, sent))
        })
        .collect()
}

fn normalise(s: &str) -> String {
    s.replace("\r\n", "\n").trim_end().to_owned()
}

fn message_ids(received: &[Received]) -> Vec<String> {
    let mut ids: Vec<String> = received
        .iter()
        .map(|r| {
            MessageParser::default()
                .parse(&r.data)
                .unwrap()
                .message_id()
                .unwrap()
                .to_owned()
        })
        .collect();
    ids.sort();
    ids
}

#[sqlx::test(migrator = "freshplan_store_postgres::MIGRATOR")]
async fn queued_follow_ups_arrive_complete(pool_opts: PgPoolOptions, opts: PgConnectOptions) {
    let db = Db::new(pool_opts, opts).await;
    queue_mails(&db, &[lead(1, "DE", "rep-1"), lead(2, "CH", "rep-ch")]).await;
    let sink = Sink::start().await;
    let clock = Arc::new(FixedClock::new(T3_AT + Duration::minutes(1)));
    let d = dispatcher(&db, &sink.url(), clock.clone(), RetryPolicy::default());

    let report = d.drain(10).await.unwrap();
    assert_eq!(
        (report.claimed, report.sent, report.retried, report.dead),
        (2, 2, 0, 0)
    );
    let received = sink.received();
    assert_eq!(received.len(), 2);

    let stored: Vec<(Uuid, Uuid, String, String, String, String, String)> = sqlx::query_as(
        "select id, lead_id, territory_id, recipient, subject, text, html from mail_outbox order by lead_id",
    )
    .fetch_all(&db.su)
    .await
    .unwrap();
    for (id, lead, territory, recipient, subject, text, html) in stored {
        let r = received
            .iter()
            .find(|r| r.to == [recipient.clone()])
            .unwrap_or_else(|| panic!("no mail to {recipient}"));
        assert_eq!(r.from, "noreply@freshplan.example");
        let m = MessageParser::default().parse(&r.data).unwrap();
        assert_eq!(m.subject(), Some(subject.as_str()));
        assert_eq!(
            m.to().and_then(|a| a.first()).and_then(|a| a.address()),
            Some(recipient.as_str())
        );
        assert_eq!(
            m.message_id(),
            Some(format!("{id}@freshplan.example").as_str())
        );
        let body_text = m.body_text(0).unwrap();
        let body_html = m.body_html(0).unwrap();
        assert_eq!(normalise(&body_text), normalise(&text));
        assert_eq!(normalise(&body_html), normalise(&html));
        assert!(body_text.starts_with(&format!("Guten Tag Person {},", lead.as_u128() & 0xff)));
        // The territory's footer: legal entity and VAT.
        let t = Territory::get(territory.parse::<TerritoryId>().unwrap());
        assert!(body_text.contains(t.legal_entity), "{body_text}");
        assert!(body_text.contains(t.vat_id), "{body_text}");
        assert!(body_text.contains(&t.legal_footer()));
        assert!(body_html.contains(t.vat_id));
        // A signed unsubscribe link, in the bodies and in List-Unsubscribe.
        let header = m.header_raw("List-Unsubscribe").unwrap().trim();
        let url = header
            .strip_prefix('<')
            .and_then(|h| h.strip_suffix('>'))
            .unwrap();
        assert!(url.starts_with("https://crm.example/unsubscribe?token="));
        assert!(body_text.contains(url) && body_html.contains(url));
        let token = url.split_once("token=").unwrap().1;
        assert_eq!(UnsubscribeToken::verify(token, SECRET), Ok(lead));
        assert!(UnsubscribeToken::verify(token, b"another secret").is_err());
    }
    assert!(String::from_utf8_lossy(&received[0].data).contains("multipart/alternative"));

    // Recorded: SENT at the clock's time, one attempt, no error; nothing left to do.
    for (_, (_, status, attempts, _, error, sent_at)) in mails(&db).await {
        assert_eq!((status.as_str(), attempts, error), ("SENT", 1, None));
        assert_eq!(sent_at, Some(clock_now(&clock)));
    }
    clock.advance(Duration::days(1));
    assert_eq!(d.drain(10).await.unwrap().claimed, 0);
    assert_eq!(sink.received().len(), 2);
    db.close().await;
}

fn clock_now(clock: &FixedClock) -> OffsetDateTime {
    freshplan_kernel::Clock::now(clock)
}

#[sqlx::test(migrator = "freshplan_store_postgres::MIGRATOR")]
async fn an_outage_backs_off_and_recovery_delivers_each_mail_once(
    pool_opts: PgPoolOptions,
    opts: PgConnectOptions,
) {
    let db = Db::new(pool_opts, opts).await;
    queue_mails(
        &db,
        &[lead(1, "DE", "r"), lead(2, "DE", "r"), lead(3, "CH", "r")],
    )
    .await;
    let mut sink = Sink::start().await;
    sink.stop().await;
    let start = T3_AT + Duration::minutes(1);
    let clock = Arc::new(FixedClock::new(start));
    let d = dispatcher(&db, &sink.url(), clock.clone(), RetryPolicy::default());

    // Down: every mail's attempt fails, it stays queued and backs off 2 minutes.
    let report = d.drain(10).await.unwrap();
    assert_eq!(
        (report.claimed, report.sent, report.retried, report.dead),
        (3, 0, 3, 0)
    );
    for (_, (_, status, attempts, next, error, sent_at)) in mails(&db).await {
        assert_eq!((status.as_str(), attempts, sent_at), ("QUEUED", 1, None));
        assert_eq!(next, start + Duration::minutes(2));
        assert!(next > start);
        assert!(error.unwrap().starts_with("unavailable:"));
    }
    // Not due before the backoff ends.
    clock.advance(Duration::minutes(1));
    assert_eq!(d.drain(10).await.unwrap().claimed, 0);
    // Still down at the second attempt: 4 more minutes.
    clock.advance(Duration::minutes(1));
    let second = clock_now(&clock);
    assert_eq!(d.drain(10).await.unwrap().retried, 3);
    for (_, (_, status, attempts, next, _, _)) in mails(&db).await {
        assert_eq!((status.as_str(), attempts), ("QUEUED", 2));
        assert_eq!(next, second + Duration::minutes(4));
    }

    // Back up: each mail arrives exactly once.
    sink.restart().await;
    clock.advance(Duration::minutes(4));
    let report = d.drain(10).await.unwrap();
    assert_eq!((report.claimed, report.sent), (3, 3));
    for (_, (_, status, attempts, _, _, _)) in mails(&db).await {
        assert_eq!((status.as_str(), attempts), ("SENT", 3));
    }
    clock.advance(Duration::hours(5));
    assert_eq!(d.drain(10).await.unwrap().claimed, 0);
    let ids = message_ids(&sink.received());
    assert_eq!(ids.len(), 3);
    let mut unique = ids.clone();
    unique.dedup();
    assert_eq!(unique, ids, "every mail exactly once");
    db.close().await;
}

#[sqlx::test(migrator = "freshplan_store_postgres::MIGRATOR")]
async fn after_max_attempts_a_mail_is_dead_and_can_be_requeued(
    pool_opts: PgPoolOptions,
    opts: PgConnectOptions,
) {
    let db = Db::new(pool_opts, opts).await;
    queue_mails(&db, &[lead(1, "DE", "r"), lead(2, "DE", "r")]).await;
    let mut sink = Sink::start().await;
    sink.stop().await;
    let clock = Arc::new(FixedClock::new(T3_AT));
    let retry = RetryPolicy {
        max_attempts: 3,
        ..RetryPolicy::default()
    };
    let d = dispatcher(&db, &sink.url(), clock.clone(), retry);
    for attempt in 1..=3u32 {
        let report = d.drain(10).await.unwrap();
        assert_eq!(report.claimed, 2, "attempt {attempt}");
        clock.advance(retry.backoff(attempt));
    }
    for (_, (_, status, attempts, _, error, _)) in mails(&db).await {
        assert_eq!((status.as_str(), attempts), ("DEAD", 3));
        assert!(error.unwrap().contains("unavailable"));
    }
    // Dead mails are never claimed again, whenever.
    sink.restart().await;
    clock.advance(Duration::days(30));
    assert_eq!(d.drain(10).await.unwrap().claimed, 0);
    assert!(sink.received().is_empty());

    // The admin sees them, requeues one, and it goes out.
    let outbox = d.outbox();
    let dead = outbox
        .list(
            &admin(),
            &MailQuery {
                status: Some(MailStatus::Dead),
                ..MailQuery::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(dead.mails.len(), 2);
    let manager = Actor::new(uid("m"), [Role::Manager], [TerritoryId::De]);
    assert!(
        !outbox
            .requeue(&manager, dead.mails[0].id, clock_now(&clock))
            .await
            .unwrap()
    );
    assert!(
        outbox
            .requeue(&admin(), dead.mails[0].id, clock_now(&clock))
            .await
            .unwrap()
    );
    assert_eq!(d.drain(10).await.unwrap().sent, 1);
    assert_eq!(sink.received().len(), 1);
    db.close().await;
}

#[sqlx::test(migrator = "freshplan_store_postgres::MIGRATOR")]
async fn a_permanent_rejection_is_dead_at_once(pool_opts: PgPoolOptions, opts: PgConnectOptions) {
    let db = Db::new(pool_opts, opts).await;
    queue_mails(&db, &[lead(1, "DE", "r"), lead(2, "DE", "r")]).await;
    let sink = Sink::start().await;
    sink.refuse("kueche1@example.de");
    let clock = Arc::new(FixedClock::new(T3_AT));
    let d = dispatcher(&db, &sink.url(), clock, RetryPolicy::default());
    let report = d.drain(10).await.unwrap();
    assert_eq!((report.sent, report.dead, report.retried), (1, 1, 0));
    let rows = mails(&db).await;
    let (_, status, attempts, _, error, _) = &rows[&lead_id(1)];
    assert_eq!((status.as_str(), *attempts), ("DEAD", 1));
    assert!(error.as_deref().unwrap().contains("550"), "{error:?}");
    assert_eq!(rows[&lead_id(2)].1, "SENT");
    assert_eq!(sink.received().len(), 1);
    db.close().await;
}

#[sqlx::test(migrator = "freshplan_store_postgres::MIGRATOR")]
async fn a_dispatcher_that_dies_mid_batch_loses_nothing(
    pool_opts: PgPoolOptions,
    opts: PgConnectOptions,
) {
    let db = Db::new(pool_opts, opts).await;
    queue_mails(&db, &[lead(1, "DE", "r"), lead(2, "DE", "r")]).await;
    let sink = Sink::start().await;
    let clock = Arc::new(FixedClock::new(T3_AT));
    let d = dispatcher(&db, &sink.url(), clock.clone(), RetryPolicy::default());
    let lease = DispatcherConfig::new(sender()).lease;

    // Another dispatcher claimed both mails and died before recording anything.
    let outbox = PgMailOutbox::new(db.app.clone());
    assert_eq!(
        outbox.claim(T3_AT, 10, T3_AT + lease).await.unwrap().len(),
        2
    );
    // While its lease lasts, the mails are nobody else's; afterwards they go out, once.
    clock.advance(lease - Duration::SECOND);
    assert_eq!(d.drain(10).await.unwrap().claimed, 0);
    clock.advance(Duration::SECOND);
    let report = d.drain(10).await.unwrap();
    assert_eq!(report.sent, 2);
    for (_, (_, status, attempts, _, _, _)) in mails(&db).await {
        assert_eq!((status.as_str(), attempts), ("SENT", 2));
    }
    assert_eq!(sink.received().len(), 2);

    // A dispatcher that dies during a mail's last permitted attempt: the mail is given up when
    // the lease ends, not claimed forever.
    queue_mails(&db, &[lead(3, "DE", "r")]).await;
    let one_try = dispatcher(
        &db,
        &sink.url(),
        clock.clone(),
        RetryPolicy {
            max_attempts: 1,
            ..RetryPolicy::default()
        },
    );
    let now = clock_now(&clock);
    assert_eq!(outbox.claim(now, 10, now + lease).await.unwrap().len(), 1);
    clock.advance(lease);
    let report = one_try.drain(10).await.unwrap();
    assert_eq!((report.claimed, report.dead), (0, 1));
    let (_, status, _, _, error, _) = &mails(&db).await[&lead_id(3)];
    assert_eq!(status, "DEAD");
    assert!(error.as_deref().unwrap().contains("did not report back"));
    assert_eq!(sink.received().len(), 2);
    db.close().await;
}

#[sqlx::test(migrator = "freshplan_store_postgres::MIGRATOR")]
async fn two_dispatchers_deliver_each_mail_once(pool_opts: PgPoolOptions, opts: PgConnectOptions) {
    let db = Db::new(pool_opts, opts).await;
    let leads: Vec<Lead> = (1..=40).map(|n| lead(n, "DE", "r")).collect();
    queue_mails(&db, &leads).await;
    let sink = Sink::start().await;
    let clock = Arc::new(FixedClock::new(T3_AT));
    let a = Arc::new(dispatcher(
        &db,
        &sink.url(),
        clock.clone(),
        RetryPolicy::default(),
    ));
    let b = Arc::new(dispatcher(
        &db,
        &sink.url(),
        clock.clone(),
        RetryPolicy::default(),
    ));
    let ta = tokio::spawn({
        let a = a.clone();
        async move { a.drain(100).await }
    });
    let tb = tokio::spawn({
        let b = b.clone();
        async move { b.drain(100).await }
    });
    let (ra, rb) = (ta.await.unwrap().unwrap(), tb.await.unwrap().unwrap());
    assert_eq!(ra.sent + rb.sent, 40);
    assert_eq!(ra.claimed + rb.claimed, 40, "no mail claimed twice");
    let ids = message_ids(&sink.received());
    let mut unique = ids.clone();
    unique.dedup();
    assert_eq!((ids.len(), unique.len()), (40, 40));
    db.close().await;
}

#[sqlx::test(migrator = "freshplan_store_postgres::MIGRATOR")]
async fn the_admin_listing_pages_filters_and_respects_row_level_security(
    pool_opts: PgPoolOptions,
    opts: PgConnectOptions,
) {
    let db = Db::new(pool_opts, opts).await;
    queue_mails(
        &db,
        &[
            lead(1, "DE", "rep-1"),
            lead(2, "DE", "rep-2"),
            lead(3, "CH", "rep-ch"),
            lead(4, "DE", "rep-1"),
        ],
    )
    .await;
    let outbox = PgMailOutbox::new(db.app.clone());
    // Pages of 3 and 1, newest first, no mail twice.
    let first = outbox
        .list(
            &admin(),
            &MailQuery {
                limit: 3,
                ..MailQuery::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(first.mails.len(), 3);
    let cursor = first.next.unwrap();
    let again: freshplan_mail_smtp::MailCursor = cursor.to_string().parse().unwrap();
    let second = outbox
        .list(
            &admin(),
            &MailQuery {
                limit: 3,
                after: Some(again),
                ..MailQuery::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(second.mails.len(), 1);
    assert!(second.next.is_none());
    let mut all: Vec<Uuid> = first
        .mails
        .iter()
        .chain(&second.mails)
        .map(|m| m.id)
        .collect();
    all.sort();
    all.dedup();
    assert_eq!(all.len(), 4);
    assert!(
        first
            .mails
            .windows(2)
            .all(|w| (w[0].created_at, w[0].id) >= (w[1].created_at, w[1].id))
    );

    let leads_of = |page: freshplan_mail_smtp::MailPage| {
        let mut v: Vec<u128> = page
            .mails
            .iter()
            .map(|m| m.lead_id.as_u128() & 0xff)
            .collect();
        v.sort();
        v
    };
    let q = MailQuery::default();
    let de = Actor::new(uid("m"), [Role::Manager], [TerritoryId::De]);
    assert_eq!(leads_of(outbox.list(&de, &q).await.unwrap()), [1, 2, 4]);
    let rep1 = Actor::new(uid("rep-1"), [Role::Sales], [TerritoryId::De]);
    assert_eq!(leads_of(outbox.list(&rep1, &q).await.unwrap()), [1, 4]);
    let queued = MailQuery {
        status: Some(MailStatus::Queued),
        lead_id: Some(lead_id(3)),
        ..MailQuery::default()
    };
    assert_eq!(leads_of(outbox.list(&admin(), &queued).await.unwrap()), [3]);
    let sent = MailQuery {
        status: Some(MailStatus::Sent),
        ..MailQuery::default()
    };
    assert!(outbox.list(&admin(), &sent).await.unwrap().mails.is_empty());

    // One mail with its bodies; invisible to the wrong territory.
    let id = first.mails[0].id;
    let record = outbox.get(&admin(), id).await.unwrap().unwrap();
    assert!(record.text.contains("unsubscribe?token="));
    let json = serde_json::to_value(&record).unwrap();
    assert_eq!(json["status"], "QUEUED");
    assert!(json["nextAttemptAt"].is_string() && json["html"].is_string());
    let ch_mail = outbox
        .list(
            &admin(),
            &MailQuery {
                lead_id: Some(lead_id(3)),
                ..MailQuery::default()
            },
        )
        .await
        .unwrap()
        .mails[0]
        .id;
    assert!(outbox.get(&de, ch_mail).await.unwrap().is_none());

    // Unsubscribed before delivery: the queued mail is withdrawn, and never sent.
    assert_eq!(
        outbox
            .withdraw_for_lead(lead_id(1), T3_AT, "unsubscribed")
            .await
            .unwrap(),
        1
    );
    let sink = Sink::start().await;
    let d = dispatcher(
        &db,
        &sink.url(),
        Arc::new(FixedClock::new(T3_AT)),
        RetryPolicy::default(),
    );
    assert_eq!(d.drain(10).await.unwrap().sent, 3);
    let (_, status, attempts, _, error, _) = &mails(&db).await[&lead_id(1)];
    assert_eq!(
        (status.as_str(), *attempts, error.as_deref()),
        ("DEAD", 0, Some("unsubscribed"))
    );
    assert!(
        sink.received()
            .iter()
            .all(|r| r.to != ["kueche1@example.de"])
    );
    db.close().await;
}

/// SMTP through [`SmtpTransport`]; after the `nth` send the database goes away (new connections
/// refused, the open ones cut) — a failover in the middle of a batch.
struct DatabaseGoesAway {
    smtp: SmtpTransport,
    sent: std::sync::atomic::AtomicUsize,
    nth: usize,
    /// A connection to another database of the server, and the test's database.
    control: Arc<tokio::sync::Mutex<sqlx::PgConnection>>,
    database: String,
}

impl freshplan_mail_smtp::MailTransport for DatabaseGoesAway {
    async fn send(&self, message: lettre::Message) -> Result<(), freshplan_mail_smtp::SendError> {
        self.smtp.send(message).await?;
        if self.sent.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1 == self.nth {
            let mut control = self.control.lock().await;
            set_connections(&mut control, &self.database, false).await;
            sqlx::query(
                "select pg_terminate_backend(pid) from pg_stat_activity where datname = $1",
            )
            .bind(&self.database)
            .execute(&mut *control)
            .await
            .unwrap();
        }
        Ok(())
    }
}

async fn set_connections(control: &mut sqlx::PgConnection, database: &str, allowed: bool) {
    sqlx::query(&format!(
        "alter database \"{database}\" with allow_connections {allowed}"
    ))
    .execute(&mut *control)
    .await
    .unwrap();
}

#[sqlx::test(migrator = "freshplan_store_postgres::MIGRATOR")]
async fn a_batch_cut_off_by_a_database_failover_hands_its_unattempted_mails_back_at_once(
    pool_opts: PgPoolOptions,
    opts: PgConnectOptions,
) {
    use sqlx::Connection as _;
    let db = Db::new(pool_opts, opts.clone()).await;
    let leads: Vec<Lead> = (1..=5).map(|n| lead(n, "DE", "r")).collect();
    queue_mails(&db, &leads).await;
    let sink = Sink::start().await;
    let clock = Arc::new(FixedClock::new(T3_AT));
    let database = opts.get_database().unwrap().to_owned();
    let control = Arc::new(tokio::sync::Mutex::new(
        sqlx::PgConnection::connect_with(&opts.clone().database("postgres"))
            .await
            .unwrap(),
    ));
    let transport = DatabaseGoesAway {
        smtp: SmtpTransport::from_url(&sink.url(), std::time::Duration::from_secs(5)).unwrap(),
        sent: Default::default(),
        nth: 2,
        control: Arc::clone(&control),
        database: database.clone(),
    };
    let d = Dispatcher::new(
        PgMailOutbox::new(db.app.clone()),
        transport,
        clock.clone(),
        DispatcherConfig {
            batch_size: 10,
            ..DispatcherConfig::new(sender())
        },
    );

    // The batch claims all five; the second mail goes out, then the database is gone: its SENT
    // record fails and the batch ends.
    assert!(d.drain(10).await.is_err());
    assert_eq!(sink.received().len(), 2);

    // The database is back (same clock: the claim's 15-minute lease has not ended). The next
    // batch records the second mail, hands back the three it never attempted and sends them.
    set_connections(&mut *control.lock().await, &database, true).await;
    let report = d.drain(10).await.unwrap();
    assert_eq!((report.claimed, report.sent), (3, 3));
    for (_, status, attempts, _, _, _) in mails(&db).await.values() {
        assert_eq!(status, "SENT");
        assert_eq!(*attempts, 1, "a handed-back claim is not an attempt");
    }
    let ids = message_ids(&sink.received());
    let mut unique = ids.clone();
    unique.sort();
    unique.dedup();
    assert_eq!((ids.len(), unique.len()), (5, 5), "every mail exactly once");
    db.close().await;
}
