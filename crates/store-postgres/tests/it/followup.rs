//! `FollowUpService` on `PgFollowUpStore`: the run end to end against PostgreSQL — each processed
//! stage's record, timeline entry, mail and event in one transaction, exactly once per (lead,
//! stage), also with two runs at once; a failing write rolls the whole batch back; the same
//! results as the in-memory store the domain tests use; templates, the run lock and the run log.

use std::sync::Arc;

use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::TestRunner;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use time::macros::datetime;
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

use freshplan_followup::port::{
    FollowUpStore, FollowUpTx, OutgoingMail, ProcessedFollowUp, StoreError,
};
use freshplan_followup::testing::InMemoryFollowUpStore;
use freshplan_followup::unsubscribe::UnsubscribeToken;
use freshplan_followup::{
    Candidate, FollowUpConfig, FollowUpRecord, FollowUpService, RunReport, Stage, default_templates,
};
use freshplan_kernel::testing::SequentialIds;
use freshplan_kernel::{Actor, FixedClock, TerritoryId, UuidV7Generator};
use freshplan_leads::Lead;
use freshplan_leads::activity::{Activity, ActivityType};
use freshplan_leads::model::BusinessType;
use freshplan_leads::status::LeadStatus;
use freshplan_store_postgres::{ExclusiveRun, PgFollowUpStore, RunOutcome};
use freshplan_territory::Territory;

use crate::helpers::{Db, NOW, admin, id, lead, manager, rep, with_email};

pub(crate) const SECRET: &[u8] = b"a-private-unsubscribe-secret-of-32-bytes";
pub(crate) const BASE_URL: &str = "https://crm.example/unsubscribe";
/// Thursday 5 March 2026, 10:00 in Berlin and Zurich: T+3 of a lead registered at [`NOW`].
pub(crate) const T3_AT: OffsetDateTime = datetime!(2026-03-05 09:00 UTC);
/// Monday 9 March 2026, 10:00: T+7.
pub(crate) const T7_AT: OffsetDateTime = datetime!(2026-03-09 09:00 UTC);

type MailRow = (Uuid, String, String, String, String, String, String, i32);
type MailBodies = (Uuid, Uuid, String, String, String, String, String);
type ActivityRow = (Uuid, Uuid, String, Option<String>, serde_json::Value);
type PgService<I> = FollowUpService<PgFollowUpStore, Arc<FixedClock>, I>;

pub(crate) async fn config(store: &PgFollowUpStore, batch_size: usize) -> FollowUpConfig {
    FollowUpConfig {
        batch_size,
        templates: store.active_templates("de").await.expect("templates"),
        ..FollowUpConfig::new(BASE_URL, SECRET.to_vec())
    }
}

async fn service(
    db: &Db,
    at: OffsetDateTime,
    batch_size: usize,
) -> (PgService<SequentialIds>, Arc<FixedClock>) {
    let store = PgFollowUpStore::new(db.app.clone());
    let clock = Arc::new(FixedClock::new(at));
    let config = config(&store, batch_size).await;
    let service = FollowUpService::new(store, clock.clone(), SequentialIds::default(), config)
        .expect("valid configuration");
    (service, clock)
}

/// A lead `n` in `country` owned by `owner`, with an address and consent.
pub(crate) fn mailable(n: u128, company: &str, country: &str, owner: &str) -> Lead {
    let mut l = with_email(
        lead(n, company, country, owner),
        &format!("kueche{n}@example.de"),
    );
    l.data.email_consent = true;
    l.data.business_type = Some(BusinessType::Restaurant);
    l.data.contact_person = Some(format!("Person {n}"));
    l
}

/// A SENT `stage` of lead `n` (in DE) without mail or event, as a holder of the claim records it.
fn sent(stage: Stage, n: u128, activity: u128) -> ProcessedFollowUp {
    let at = match stage {
        Stage::T3 => T3_AT,
        Stage::T7 => T7_AT,
    };
    ProcessedFollowUp {
        lead_id: id(n),
        territory: TerritoryId::De,
        record: FollowUpRecord::sent(stage, at),
        activity: Activity::system(
            Uuid::from_u128(activity),
            id(n),
            ActivityType::FollowupSent,
            at,
            Actor::system().user_id().clone(),
            None,
            serde_json::json!({}),
        ),
        mail: None,
        events: vec![],
    }
}

/// Leads 1 and 2 in DE, both mailable, owned by rep-1.
async fn seed_two_mailable(db: &Db) {
    db.seed(&[
        mailable(1, "Gasthaus Adler", "DE", "rep-1"),
        mailable(2, "Hotel Post", "DE", "rep-1"),
    ])
    .await;
}

async fn records(db: &Db) -> Vec<(Uuid, String, String, Option<String>)> {
    sqlx::query_as("select lead_id, stage, status, reason from followups order by lead_id, stage")
        .fetch_all(&db.su)
        .await
        .unwrap()
}

async fn next_stage(db: &Db, lead_id: Uuid) -> (Option<String>, bool) {
    sqlx::query_as("select followup_next_stage, followup_sent from leads where id = $1")
        .bind(lead_id)
        .fetch_one(&db.su)
        .await
        .unwrap()
}

#[sqlx::test(migrator = "freshplan_store_postgres::MIGRATOR")]
async fn seeded_templates_are_the_domain_defaults(
    pool_opts: PgPoolOptions,
    opts: PgConnectOptions,
) {
    let db = Db::new(pool_opts, opts).await;
    let store = PgFollowUpStore::new(db.app.clone());
    assert_eq!(
        store.active_templates("de").await.unwrap(),
        default_templates().to_vec()
    );
    assert!(store.active_templates("fr").await.unwrap().is_empty());
    // One active template per stage and language.
    let second = sqlx::query(
        "insert into mail_templates (stage, language, subject, html, text) values ('T3', 'de', 's', 'h', 't')",
    )
    .execute(&db.su)
    .await
    .unwrap_err();
    assert_eq!(
        second.as_database_error().and_then(|e| e.constraint()),
        Some("mail_templates_active_uq")
    );
    db.close().await;
}

#[sqlx::test(migrator = "freshplan_store_postgres::MIGRATOR")]
async fn a_run_writes_record_activity_mail_and_event_once_per_stage(
    pool_opts: PgPoolOptions,
    opts: PgConnectOptions,
) {
    let db = Db::new(pool_opts, opts).await;
    let sent = mailable(1, "Gasthaus Adler", "DE", "rep-1");
    let swiss = mailable(2, "Hotel Rigi", "CH", "rep-ch");
    let no_email = lead(3, "Kantine Nord", "DE", "rep-1");
    let mut no_consent = mailable(4, "Catering Süd", "DE", "rep-1");
    no_consent.data.email_consent = false;
    let mut stopped = mailable(5, "Bistro Stop", "DE", "rep-1");
    stopped.protection.clock_stopped_at = Some(NOW);
    let mut lost = mailable(6, "Imbiss Weg", "DE", "rep-1");
    lost.status = LeadStatus::Lost;
    let mut fresh = mailable(7, "Café Neu", "DE", "rep-1");
    fresh.registered_at = NOW + Duration::days(1);
    db.seed(&[sent, swiss, no_email, no_consent, stopped, lost, fresh])
        .await;

    let (service, clock) = service(&db, T3_AT, 2).await;
    let (report, processed) = service.run(Uuid::from_u128(900)).await.unwrap();
    assert_eq!(
        (report.t3_count, report.t7_count, report.skipped_count),
        (2, 0, 2)
    );
    assert_eq!(processed.event_type, "lead.followup.processed.v1");
    assert_eq!(
        records(&db).await,
        vec![
            (id(1), "T3".into(), "SENT".into(), None),
            (id(2), "T3".into(), "SENT".into(), None),
            (
                id(3),
                "T3".into(),
                "SKIPPED".into(),
                Some("NO_EMAIL".into())
            ),
            (
                id(4),
                "T3".into(),
                "SKIPPED".into(),
                Some("NO_CONSENT".into())
            ),
        ]
    );

    // The mails: rendered, footer of the lead's territory, signed link, queued.
    let mails: Vec<MailRow> = sqlx::query_as(
        "select lead_id, territory_id, recipient, subject, text, html, status, attempts \
           from mail_outbox order by lead_id",
    )
    .fetch_all(&db.su)
    .await
    .unwrap();
    assert_eq!(mails.len(), 2);
    for (lead_id, territory, recipient, subject, text, html, status, attempts) in &mails {
        let t = Territory::get(territory.parse::<TerritoryId>().unwrap());
        assert_eq!(
            recipient,
            &format!("kueche{}@example.de", lead_id.as_u128() & 0xff)
        );
        assert!(subject.contains("Ihre kostenlose"), "{subject}");
        assert!(text.starts_with(&format!("Guten Tag Person {},", lead_id.as_u128() & 0xff)));
        assert!(text.contains(&t.legal_footer()), "{text}");
        assert!(html.contains("<strong>"));
        let token = text
            .split("token=")
            .nth(1)
            .unwrap()
            .split_whitespace()
            .next()
            .unwrap();
        assert_eq!(UnsubscribeToken::verify(token, SECRET), Ok(*lead_id));
        assert_eq!((status.as_str(), *attempts), ("QUEUED", 0));
    }
    assert!(mails[1].4.contains("CHE-123.456.789 MWST"));

    // Timeline and events, one each per processed stage.
    let activities: Vec<(Uuid, String, String)> = sqlx::query_as(
        "select lead_id, type, user_id from activities \
          where type like 'FOLLOWUP%' order by lead_id",
    )
    .fetch_all(&db.su)
    .await
    .unwrap();
    assert_eq!(
        activities
            .iter()
            .map(|(l, t, u)| (l.as_u128() & 0xff, t.as_str(), u.as_str()))
            .collect::<Vec<_>>(),
        [
            (1, "FOLLOWUP_SENT", "system"),
            (2, "FOLLOWUP_SENT", "system"),
            (3, "FOLLOWUP_SKIPPED", "system"),
            (4, "FOLLOWUP_SKIPPED", "system"),
        ]
    );
    let events: Vec<(String, Option<String>, Option<String>, bool)> = sqlx::query_as(
        "select type, subject, territory_id, dashboard from event_outbox \
          where source = 'freshplan.leads.followup' order by subject",
    )
    .fetch_all(&db.su)
    .await
    .unwrap();
    assert_eq!(
        events,
        vec![
            (
                "lead.followup.sent.v1".into(),
                Some(id(1).to_string()),
                Some("DE".into()),
                true
            ),
            (
                "lead.followup.sent.v1".into(),
                Some(id(2).to_string()),
                Some("CH".into()),
                true
            ),
            (
                "lead.followup.skipped.v1".into(),
                Some(id(3).to_string()),
                Some("DE".into()),
                true
            ),
            (
                "lead.followup.skipped.v1".into(),
                Some(id(4).to_string()),
                Some("DE".into()),
                true
            ),
        ]
    );
    // The processed event is returned, not written (the caller records the run).
    assert_eq!(
        db.count("event_outbox where type = 'lead.followup.processed.v1'")
            .await,
        0
    );
    assert_eq!(next_stage(&db, id(1)).await, (Some("T7".into()), true));
    assert_eq!(next_stage(&db, id(3)).await, (Some("T7".into()), false));
    assert_eq!(next_stage(&db, id(5)).await, (Some("T3".into()), false));

    // Running again changes nothing.
    let (again, _) = service.run(Uuid::from_u128(901)).await.unwrap();
    assert_eq!(again.processed(), 0);
    assert_eq!(db.count("followups").await, 4);

    // T+7: the two sent and the two skipped leads; T+7 of a lead whose T+3 was skipped is
    // processed too (skipped again here: no address, no consent).
    clock.set(T7_AT);
    let (t7, _) = service.run(Uuid::from_u128(902)).await.unwrap();
    assert_eq!((t7.t3_count, t7.t7_count, t7.skipped_count), (1, 2, 2));
    assert_eq!(db.count("followups where stage = 'T7'").await, 4);
    assert_eq!(db.count("mail_outbox").await, 5);
    assert_eq!(next_stage(&db, id(1)).await, (None, true));
    // Exactly one record per (lead, stage), whatever ran.
    assert_eq!(
        db.count("(select lead_id, stage from followups group by 1, 2 having count(*) > 1) d")
            .await,
        0
    );
    // The lead read model shows the marks.
    let store = db.store();
    let mut tx = freshplan_leads::ports::LeadStore::begin(&store, &admin())
        .await
        .unwrap();
    let l = freshplan_leads::ports::LeadTx::get(&mut tx, id(1))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(l.follow_ups.t3.unwrap().status, "SENT");
    assert_eq!(l.follow_ups.t7.unwrap().status, "SENT");
    assert_eq!(
        l.version, 1,
        "recording a follow-up is not a change of the lead"
    );
    drop(tx);
    db.close().await;
}

#[sqlx::test(migrator = "freshplan_store_postgres::MIGRATOR")]
async fn claims_skip_locked_leads_and_page_by_id(pool_opts: PgPoolOptions, opts: PgConnectOptions) {
    let db = Db::new(pool_opts, opts).await;
    let leads: Vec<Lead> = (1..=5)
        .map(|n| mailable(n, &format!("Gasthaus {n}"), "DE", "rep-1"))
        .collect();
    db.seed(&leads).await;
    let store = PgFollowUpStore::new(db.app.clone());
    let ids_of = |c: &[Candidate]| {
        c.iter()
            .map(|c| c.lead_id.as_u128() & 0xff)
            .collect::<Vec<_>>()
    };

    let mut a = store.begin().await.unwrap();
    assert_eq!(ids_of(&a.claim_due(T3_AT, None, 2).await.unwrap()), [1, 2]);
    let mut b = store.begin().await.unwrap();
    assert_eq!(
        ids_of(&b.claim_due(T3_AT, None, 10).await.unwrap()),
        [3, 4, 5]
    );
    assert!(
        a.claim_due(T3_AT, Some(id(2)), 2).await.unwrap().is_empty(),
        "3..5 are locked by b"
    );
    b.rollback().await.unwrap();
    assert_eq!(
        ids_of(&a.claim_due(T3_AT, Some(id(2)), 2).await.unwrap()),
        [3, 4]
    );
    // Not due yet: one minute before T+3.
    let mut c = store.begin().await.unwrap();
    assert!(
        c.claim_due(NOW + Duration::days(3) - Duration::minutes(1), None, 10)
            .await
            .unwrap()
            .is_empty()
    );
    drop((a, c));
    db.close().await;
}

#[sqlx::test(migrator = "freshplan_store_postgres::MIGRATOR")]
async fn locked_leads_are_skipped_and_a_second_record_is_refused(
    pool_opts: PgPoolOptions,
    opts: PgConnectOptions,
) {
    let db = Db::new(pool_opts, opts).await;
    seed_two_mailable(&db).await;
    let (service, _) = service(&db, T3_AT, 10).await;
    let store = service.store().clone();
    // One transaction holds both leads: a run skips them instead of waiting.
    let mut holder = store.begin().await.unwrap();
    let claimed = holder.claim_due(T3_AT, None, 10).await.unwrap();
    assert_eq!(claimed.len(), 2);
    let (skipped, _) = service.run(Uuid::from_u128(1)).await.unwrap();
    assert_eq!(
        skipped.processed(),
        0,
        "locked leads are skipped, not waited for"
    );

    // A writer that bypassed the claim recorded lead 2's T+3 meanwhile: the holder's record
    // (buffered, written at commit) hits the unique key and is refused as already recorded,
    // naming the lead and stage that has the record.
    sqlx::query(
        "insert into followups (lead_id, territory_id, stage, status, reason, processed_at) \
         values ($1, 'DE', 'T3', 'SKIPPED', 'NO_EMAIL', $2)",
    )
    .bind(id(2))
    .bind(T3_AT)
    .execute(&db.su)
    .await
    .unwrap();
    // Lead 1 first, so the batch's first row is not the one that violates the key.
    holder.record(sent(Stage::T3, 1, 76)).await.unwrap();
    holder.record(sent(Stage::T3, 2, 77)).await.unwrap();
    let err = holder.commit().await.unwrap_err();
    assert!(
        matches!(err, StoreError::AlreadyRecorded { stage: Stage::T3, lead_id } if lead_id == id(2)),
        "{err:?}"
    );
    assert_eq!(db.count("activities where type like 'FOLLOWUP%'").await, 0);

    // Released: the run processes lead 1; lead 2's T+3 has its record, so it is not redone.
    let (done, _) = service.run(Uuid::from_u128(2)).await.unwrap();
    assert_eq!((done.t3_count, done.skipped_count), (1, 0));
    assert_eq!(db.count("followups").await, 2);
    db.close().await;
}

/// A stage whose *mail* exists already (without its record: only a writer that bypassed the
/// store leaves that) is refused at commit as already recorded, naming its lead, and nothing of
/// the batch stays.
#[sqlx::test(migrator = "freshplan_store_postgres::MIGRATOR")]
async fn an_existing_mail_refuses_the_stage(pool_opts: PgPoolOptions, opts: PgConnectOptions) {
    let db = Db::new(pool_opts, opts).await;
    seed_two_mailable(&db).await;
    sqlx::query(
        "insert into mail_outbox (id, lead_id, territory_id, stage, recipient, subject, html, \
                                  text, unsubscribe_url, next_attempt_at, created_at, updated_at) \
         values ($1, $2, 'DE', 'T3', 'x@example.de', 's', 'h', 't', 'u', $3, $3, $3)",
    )
    .bind(Uuid::from_u128(99))
    .bind(id(2))
    .bind(T3_AT)
    .execute(&db.su)
    .await
    .unwrap();
    let store = PgFollowUpStore::new(db.app.clone());
    let mut tx = store.begin().await.unwrap();
    assert_eq!(tx.claim_due(T3_AT, None, 10).await.unwrap().len(), 2);
    for (n, mail) in [(1, 81), (2, 82)] {
        let mut processed = sent(Stage::T3, n, mail + 10);
        processed.mail = Some(OutgoingMail {
            id: Uuid::from_u128(mail),
            lead_id: id(n),
            territory: TerritoryId::De,
            stage: Stage::T3,
            to: format!("kueche{n}@example.de"),
            subject: "s".into(),
            html: "h".into(),
            text: "t".into(),
            unsubscribe_url: "https://crm.example/unsubscribe?token=x".into(),
            queued_at: T3_AT,
        });
        tx.record(processed).await.unwrap();
    }
    let err = tx.commit().await.unwrap_err();
    assert!(
        matches!(err, StoreError::AlreadyRecorded { stage: Stage::T3, lead_id } if lead_id == id(2)),
        "{err:?}"
    );
    assert_eq!(db.count("followups").await, 0);
    assert_eq!(db.count("mail_outbox").await, 1);
    db.close().await;
}

/// The writes of a transaction are buffered and written at commit: a second stage of the same
/// lead in one transaction sees the first (both records, the lead's progress after both).
#[sqlx::test(migrator = "freshplan_store_postgres::MIGRATOR")]
async fn both_stages_of_a_lead_in_one_transaction(
    pool_opts: PgPoolOptions,
    opts: PgConnectOptions,
) {
    let db = Db::new(pool_opts, opts).await;
    seed_two_mailable(&db).await;
    let store = PgFollowUpStore::new(db.app.clone());
    let mut tx = store.begin().await.unwrap();
    assert_eq!(tx.claim_due(T7_AT, None, 10).await.unwrap().len(), 2);
    tx.record(sent(Stage::T3, 1, 71)).await.unwrap();
    tx.record(sent(Stage::T3, 2, 72)).await.unwrap();
    tx.record(sent(Stage::T7, 1, 73)).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(
        records(&db).await,
        vec![
            (id(1), "T3".into(), "SENT".into(), None),
            (id(1), "T7".into(), "SENT".into(), None),
            (id(2), "T3".into(), "SENT".into(), None),
        ]
    );
    assert_eq!(next_stage(&db, id(1)).await, (None, true));
    assert_eq!(next_stage(&db, id(2)).await, (Some("T7".into()), true));
    assert_eq!(db.count("activities where type = 'FOLLOWUP_SENT'").await, 3);
    db.close().await;
}

#[sqlx::test(migrator = "freshplan_store_postgres::MIGRATOR")]
async fn a_failing_write_rolls_back_the_whole_batch(
    pool_opts: PgPoolOptions,
    opts: PgConnectOptions,
) {
    let db = Db::new(pool_opts, opts).await;
    let mut boom = with_email(lead(2, "Kantine Nord", "DE", "rep-1"), "boom@example.de");
    boom.data.email_consent = true;
    db.seed(&[
        mailable(1, "Gasthaus Adler", "DE", "rep-1"),
        boom,
        mailable(3, "Hotel Post", "DE", "rep-1"),
    ])
    .await;
    // The mail insert of lead 2 fails in the middle of the batch (after lead 1's statement).
    sqlx::query(
        "create function boom() returns trigger language plpgsql as $$ \
         begin if new.recipient = 'boom@example.de' then raise exception 'injected failure'; end if; \
         return new; end $$",
    )
    .execute(&db.su)
    .await
    .unwrap();
    sqlx::query(
        "create trigger boom before insert on mail_outbox for each row execute function boom()",
    )
    .execute(&db.su)
    .await
    .unwrap();

    let (service, _) = service(&db, T3_AT, 10).await;
    let failure = service.run(Uuid::from_u128(1)).await.unwrap_err();
    assert_eq!(failure.report.processed(), 0);
    assert!(format!("{:?}", failure.source).contains("injected failure"));
    for table in [
        "followups",
        "mail_outbox",
        "event_outbox where source = 'freshplan.leads.followup'",
        "activities where type like 'FOLLOWUP%'",
    ] {
        assert_eq!(db.count(table).await, 0, "{table}");
    }
    assert_eq!(next_stage(&db, id(1)).await, (Some("T3".into()), false));

    sqlx::query("drop trigger boom on mail_outbox")
        .execute(&db.su)
        .await
        .unwrap();
    let (report, _) = service.run(Uuid::from_u128(2)).await.unwrap();
    assert_eq!(report.t3_count, 3);
    assert_eq!(db.count("followups").await, 3);
    assert_eq!(db.count("mail_outbox").await, 3);
    db.close().await;
}

#[sqlx::test(migrator = "freshplan_store_postgres::MIGRATOR")]
async fn two_concurrent_runs_never_process_a_stage_twice(
    pool_opts: PgPoolOptions,
    opts: PgConnectOptions,
) {
    let db = Db::new(pool_opts.max_connections(8), opts).await;
    let n = 240u128;
    let leads: Vec<Lead> = (1..=n)
        .map(|i| {
            mailable(
                i,
                &format!("Gasthaus Nummer {i}"),
                if i % 3 == 0 { "CH" } else { "DE" },
                "rep-1",
            )
        })
        .collect();
    db.seed(&leads).await;

    let store = PgFollowUpStore::new(db.app.clone());
    let clock = Arc::new(FixedClock::new(T7_AT));
    let make = || async {
        Arc::new(
            FollowUpService::new(
                store.clone(),
                clock.clone(),
                UuidV7Generator,
                config(&store, 7).await,
            )
            .unwrap(),
        )
    };
    let (a, b) = (make().await, make().await);
    let ta = tokio::spawn({
        let a = a.clone();
        async move { a.run(Uuid::from_u128(1)).await }
    });
    let tb = tokio::spawn({
        let b = b.clone();
        async move { b.run(Uuid::from_u128(2)).await }
    });
    let (ra, _) = ta.await.unwrap().expect("run a");
    let (rb, _) = tb.await.unwrap().expect("run b");
    // Both stages of every lead are due at T+7: each processed exactly once across both runs.
    let total = |r: &RunReport| (r.t3_count, r.t7_count);
    assert_eq!(
        (total(&ra).0 + total(&rb).0, total(&ra).1 + total(&rb).1),
        (n as u32, n as u32)
    );
    assert_eq!(db.count("followups").await, 2 * n as i64);
    assert_eq!(db.count("mail_outbox").await, 2 * n as i64);
    assert_eq!(
        db.count("event_outbox where source = 'freshplan.leads.followup'")
            .await,
        2 * n as i64
    );
    db.close().await;
}

/// Inserts `c` as a lead row directly (generated snapshots carry hostile names and blank
/// addresses the lead domain would refuse), with its records and the lead's follow-up progress
/// as the adapter writes it.
async fn insert_candidate(db: &Db, c: &Candidate) {
    let next = c.next_stage().map(Stage::as_str);
    let sent = c.t3.iter().chain(c.t7.iter()).any(|r| r.is_sent());
    sqlx::query(
        "insert into leads (id, version, company_name, contact_person, email, country_code, \
            business_type, source, email_consent, territory_id, status, owner_user_id, \
            registered_at, last_meaningful_contact_at, clock_stopped_at, created_at, created_by, \
            updated_at, updated_by, company_key, followup_next_stage, followup_sent) \
         values ($1, $2, $3, $4, $5, $6, $7, 'WEB', $8, $6, $9, 'rep-1', $10, $11, $12, $10, \
            'rep-1', $10, 'rep-1', $1::text, $13, $14)",
    )
    .bind(c.lead_id)
    .bind(c.version)
    .bind(&c.company_name)
    .bind(&c.contact_person)
    .bind(&c.email)
    .bind(c.territory.as_str())
    .bind(c.business_type.map(|b| b.as_str()))
    .bind(c.email_consent)
    .bind(c.status.as_str())
    .bind(c.registered_at)
    .bind(c.last_meaningful_contact_at)
    .bind(c.clock_stopped.then_some(c.registered_at))
    .bind(next)
    .bind(sent)
    .execute(&db.su)
    .await
    .unwrap();
    for r in c.t3.iter().chain(c.t7.iter()) {
        sqlx::query(
            "insert into followups (lead_id, territory_id, stage, status, reason, processed_at) \
             values ($1, $2, $3, $4, $5, $6)",
        )
        .bind(c.lead_id)
        .bind(c.territory.as_str())
        .bind(r.stage.as_str())
        .bind(r.status.as_str())
        .bind(r.reason.map(|r| r.as_str()))
        .bind(r.processed_at)
        .execute(&db.su)
        .await
        .unwrap();
    }
}

#[sqlx::test(migrator = "freshplan_store_postgres::MIGRATOR")]
async fn same_results_as_the_in_memory_store(pool_opts: PgPoolOptions, opts: PgConnectOptions) {
    let db = Db::new(pool_opts, opts).await;
    let store = PgFollowUpStore::new(db.app.clone());
    let mut runner = TestRunner::deterministic();
    for case in 0..6 {
        let now = T7_AT + Duration::hours(case);
        let strategy = freshplan_followup::testing::candidates_registered_between(
            25,
            now - Duration::days(12),
            now,
        );
        let candidates = strategy.new_tree(&mut runner).unwrap().current();
        sqlx::query("truncate leads, followups, activities, mail_outbox, event_outbox cascade")
            .execute(&db.su)
            .await
            .unwrap();
        for c in &candidates {
            insert_candidate(&db, c).await;
        }
        let memory = InMemoryFollowUpStore::with_candidates(candidates.clone());
        let clock = Arc::new(FixedClock::new(now));
        // One batch at a time: the sequential ids then name the same rows in both stores.
        let cfg = FollowUpConfig {
            batch_size: 4,
            concurrency: 1,
            ..FollowUpConfig::new(BASE_URL, SECRET.to_vec())
        };
        let mem = FollowUpService::new(
            memory.clone(),
            clock.clone(),
            SequentialIds::default(),
            cfg.clone(),
        )
        .unwrap();
        let pg = FollowUpService::new(store.clone(), clock, SequentialIds::default(), cfg).unwrap();
        let (mem_report, mem_event) = mem.run(Uuid::from_u128(7)).await.unwrap();
        let (pg_report, pg_event) = pg.run(Uuid::from_u128(7)).await.unwrap();
        assert_eq!(pg_report, mem_report, "case {case}");
        assert_eq!(pg_event, mem_event, "case {case}");

        // Records, mails, activities and events: the same, in the same order (by lead, stage).
        let mut mem_records: Vec<(Uuid, String, String, Option<String>)> = memory
            .records()
            .iter()
            .map(|r| {
                (
                    r.lead_id,
                    r.record.stage.as_str().to_owned(),
                    r.record.status.as_str().to_owned(),
                    r.record.reason.map(|x| x.as_str().to_owned()),
                )
            })
            .collect();
        for c in &candidates {
            for r in c.t3.iter().chain(c.t7.iter()) {
                mem_records.push((
                    c.lead_id,
                    r.stage.as_str().to_owned(),
                    r.status.as_str().to_owned(),
                    r.reason.map(|x| x.as_str().to_owned()),
                ));
            }
        }
        mem_records.sort();
        assert_eq!(records(&db).await, mem_records, "case {case}");

        let pg_mails: Vec<MailBodies> = sqlx::query_as(
            "select id, lead_id, recipient, subject, html, text, unsubscribe_url from mail_outbox order by id",
        )
        .fetch_all(&db.su)
        .await
        .unwrap();
        let mut mem_mails: Vec<_> = memory
            .mails()
            .into_iter()
            .map(|m| {
                (
                    m.id,
                    m.lead_id,
                    m.to,
                    m.subject,
                    m.html,
                    m.text,
                    m.unsubscribe_url,
                )
            })
            .collect();
        mem_mails.sort();
        assert_eq!(pg_mails, mem_mails, "case {case}");

        let pg_activities: Vec<ActivityRow> = sqlx::query_as(
            "select id, lead_id, type, description, metadata from activities order by id",
        )
        .fetch_all(&db.su)
        .await
        .unwrap();
        let mut mem_activities: Vec<_> = memory
            .activities()
            .into_iter()
            .map(|a| {
                (
                    a.id,
                    a.lead_id,
                    a.activity_type.as_str().to_owned(),
                    a.description,
                    a.metadata,
                )
            })
            .collect();
        mem_activities.sort_by_key(|a| a.0);
        assert_eq!(pg_activities, mem_activities, "case {case}");

        let pg_events: Vec<serde_json::Value> =
            sqlx::query_scalar("select payload from event_outbox order by event_id")
                .fetch_all(&db.su)
                .await
                .unwrap();
        let mut mem_events = memory.events();
        mem_events.sort_by_key(|e| e.id);
        let mem_events: Vec<serde_json::Value> = mem_events
            .iter()
            .map(|e| serde_json::to_value(e).unwrap())
            .collect();
        assert_eq!(pg_events, mem_events, "case {case}");

        // And the lead's follow-up progress is the domain's.
        for c in memory.candidates() {
            assert_eq!(
                next_stage(&db, c.lead_id).await,
                (
                    c.next_stage().map(|s| s.as_str().to_owned()),
                    c.t3.iter().chain(c.t7.iter()).any(|r| r.is_sent())
                ),
                "case {case}"
            );
        }
    }
    db.close().await;
}

#[sqlx::test(migrator = "freshplan_store_postgres::MIGRATOR")]
async fn the_run_lock_is_cluster_wide_and_released(
    pool_opts: PgPoolOptions,
    opts: PgConnectOptions,
) {
    let db = Db::new(pool_opts, opts).await;
    let store = PgFollowUpStore::new(db.app.clone());
    // Another "replica": its own pool on the same database.
    let other = PgFollowUpStore::new(
        freshplan_store_postgres::app_pool_options(PgPoolOptions::new().max_connections(2))
            .connect_with(db.opts.clone())
            .await
            .unwrap(),
    );
    let guard = store.try_begin_run().await.unwrap().expect("free");
    assert!(other.try_begin_run().await.unwrap().is_none());
    assert!(
        store.try_begin_run().await.unwrap().is_none(),
        "not re-entrant across connections"
    );
    guard.release().await.unwrap();
    let guard = other.try_begin_run().await.unwrap().expect("released");

    // Dropped without release (a panicking run): the connection is closed, the lock goes with it.
    drop(guard);
    let mut free = None;
    for _ in 0..100 {
        if let Some(g) = store.try_begin_run().await.unwrap() {
            free = Some(g);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    free.expect("the lock is released when its session ends")
        .release()
        .await
        .unwrap();
    other.pool().close().await;
    db.close().await;
}

#[sqlx::test(migrator = "freshplan_store_postgres::MIGRATOR")]
async fn exclusive_runs_are_logged_with_their_event(
    pool_opts: PgPoolOptions,
    opts: PgConnectOptions,
) {
    let db = Db::new(pool_opts, opts).await;
    db.seed(&[
        mailable(1, "Gasthaus Adler", "DE", "rep-1"),
        lead(2, "Kantine Nord", "DE", "rep-1"),
    ])
    .await;
    let (service, clock) = service(&db, T3_AT, 10).await;
    let store = service.store().clone();

    let held = store.try_begin_run().await.unwrap().unwrap();
    assert!(matches!(
        store
            .run_exclusive(&service, Uuid::from_u128(10), &UuidV7Generator)
            .await
            .unwrap(),
        ExclusiveRun::Busy
    ));
    assert_eq!(db.count("followups").await, 0, "a busy run does nothing");
    held.release().await.unwrap();

    let ExclusiveRun::Finished(Ok(report)) = store
        .run_exclusive(&service, Uuid::from_u128(11), &UuidV7Generator)
        .await
        .unwrap()
    else {
        panic!("the run should finish");
    };
    assert_eq!((report.t3_count, report.skipped_count), (1, 1));
    clock.advance(Duration::hours(1));
    let ExclusiveRun::Finished(Ok(second)) = store
        .run_exclusive(&service, Uuid::from_u128(12), &UuidV7Generator)
        .await
        .unwrap()
    else {
        panic!("the second run should finish");
    };
    assert_eq!(second.processed(), 0);

    // A failing run is logged as failed, with what committed before, and publishes its event.
    sqlx::query("alter table followups add constraint no_t7 check (stage <> 'T7')")
        .execute(&db.su)
        .await
        .unwrap();
    clock.set(T7_AT);
    let ExclusiveRun::Finished(Err(failure)) = store
        .run_exclusive(&service, Uuid::from_u128(13), &UuidV7Generator)
        .await
        .unwrap()
    else {
        panic!("the third run should fail");
    };
    assert_eq!(failure.report.processed(), 0);

    let runs = store.runs(&manager(TerritoryId::Ch), 10).await.unwrap();
    assert_eq!(
        runs.iter()
            .map(|r| (r.report.run_id.as_u128(), r.outcome, r.report.processed()))
            .collect::<Vec<_>>(),
        [
            (13, RunOutcome::Failed, 0),
            (12, RunOutcome::Completed, 0),
            (11, RunOutcome::Completed, 2)
        ]
    );
    assert!(
        runs[0].error.as_deref().unwrap().contains("no_t7"),
        "{:?}",
        runs[0].error
    );
    assert_eq!(runs[2].report, report);
    let json = serde_json::to_value(&runs[2]).unwrap();
    assert_eq!(json["runId"], Uuid::from_u128(11).to_string());
    assert_eq!(
        (json["t3Count"].as_u64(), json["outcome"].as_str()),
        (Some(1), Some("COMPLETED"))
    );
    // Admins and managers list runs; sales reps see none.
    assert_eq!(store.runs(&admin(), 2).await.unwrap().len(), 2);
    assert!(store.runs(&rep("rep-1"), 10).await.unwrap().is_empty());

    let processed: Vec<serde_json::Value> = sqlx::query_scalar(
        "select payload -> 'data' from event_outbox where type = 'lead.followup.processed.v1' order by id",
    )
    .fetch_all(&db.su)
    .await
    .unwrap();
    assert_eq!(
        processed.len(),
        3,
        "after every run, also the empty and the failed one"
    );
    assert_eq!(processed[0]["runId"], Uuid::from_u128(11).to_string());
    assert_eq!(
        (
            processed[0]["t3Count"].as_u64(),
            processed[0]["skippedCount"].as_u64()
        ),
        (Some(1), Some(1))
    );
    db.close().await;
}
