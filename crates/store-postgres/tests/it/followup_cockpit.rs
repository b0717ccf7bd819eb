//! The cockpit figures (SPEC §8) from PostgreSQL: per scope (admin, managers and viewers of a
//! territory, a sales rep, a territory filter) equal to the domain's `figures` over the same
//! rows, and hand-checked numbers; row-level security of the mail outbox.

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use time::macros::datetime;
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

use freshplan_followup::cockpit::CockpitRow;
use freshplan_followup::port::{FollowUpStore, FollowUpTx, OutgoingMail, ProcessedFollowUp};
use freshplan_followup::{FollowUpRecord, Scope, SkipReason, Stage, figures};
use freshplan_kernel::{Actor, CloudEvent, KeyBasis, Role, TerritoryId, UserId};
use freshplan_leads::Lead;
use freshplan_leads::activity::Activity;
use freshplan_leads::status::LeadStatus;
use freshplan_store_postgres::PgFollowUpStore;

use crate::followup::mailable;
use crate::helpers::{Db, NOW, admin, id, manager, rep, uid, viewer};

/// Tuesday 10 March 2026, 11:00 in Berlin: local midnight is 23:00 UTC the day before.
const AT: OffsetDateTime = datetime!(2026-03-10 10:00 UTC);

/// Records `stage` of `lead` through the adapter (record, activity, event, and a mail when
/// sent), as the follow-up run would.
async fn record(
    store: &PgFollowUpStore,
    lead: &Lead,
    stage: Stage,
    sent: bool,
    at: OffsetDateTime,
) {
    let record = if sent {
        FollowUpRecord::sent(stage, at)
    } else {
        FollowUpRecord::skipped(stage, SkipReason::NoConsent, at)
    };
    let n = lead.id.as_u128() & 0xffff;
    let salt = u128::from(stage.days() as u8);
    let mail = sent.then(|| OutgoingMail {
        id: Uuid::from_u128(0x1000_0000 | n << 4 | salt),
        lead_id: lead.id,
        territory: lead.territory,
        stage,
        to: "x@example.de".into(),
        subject: "s".into(),
        html: "h".into(),
        text: "t".into(),
        unsubscribe_url: "https://crm.example/unsubscribe?token=x".into(),
        queued_at: at,
    });
    let event = CloudEvent::new(
        Uuid::from_u128(0x2000_0000 | n << 4 | salt),
        CloudEvent::SOURCE_FOLLOWUP,
        freshplan_followup::event::event_type(record.status),
        at,
        Some(lead.id.to_string()),
        KeyBasis::Version(lead.version * 10 + stage.days()),
        serde_json::json!({"leadId": lead.id, "territory": lead.territory.as_str()}),
    )
    .unwrap();
    let mut tx = store.begin().await.unwrap();
    tx.record(ProcessedFollowUp {
        lead_id: lead.id,
        territory: lead.territory,
        record,
        activity: Activity::system(
            Uuid::from_u128(0x3000_0000 | n << 4 | salt),
            lead.id,
            record.status.activity_type(),
            at,
            Actor::system().user_id().clone(),
            None,
            serde_json::json!({}),
        ),
        mail,
        events: vec![event],
    })
    .await
    .unwrap();
    tx.commit().await.unwrap();
}

/// Every lead as a cockpit row, read behind the policies' back.
async fn current(db: &Db) -> Vec<CockpitRow> {
    type Row = (
        String,
        Option<String>,
        String,
        bool,
        Option<String>,
        Option<OffsetDateTime>,
        Option<String>,
        Option<OffsetDateTime>,
    );
    let rows: Vec<Row> = sqlx::query_as(
        "select l.territory_id, l.owner_user_id, l.status, l.clock_stopped_at is not null, \
                f3.status, f3.processed_at, f7.status, f7.processed_at \
           from leads l \
           left join followups f3 on f3.lead_id = l.id and f3.stage = 'T3' \
           left join followups f7 on f7.lead_id = l.id and f7.stage = 'T7'",
    )
    .fetch_all(&db.su)
    .await
    .unwrap();
    let rec = |stage, status: Option<String>, at: Option<OffsetDateTime>| {
        status.zip(at).map(|(s, at)| {
            if s == "SENT" {
                FollowUpRecord::sent(stage, at)
            } else {
                FollowUpRecord::skipped(stage, SkipReason::NoConsent, at)
            }
        })
    };
    rows.into_iter()
        .map(|(t, owner, status, stopped, s3, a3, s7, a7)| CockpitRow {
            territory: t.parse().unwrap(),
            owner: owner.map(|o| UserId::parse(&o).unwrap()),
            status: status.parse().unwrap(),
            clock_stopped: stopped,
            t3: rec(Stage::T3, s3, a3),
            t7: rec(Stage::T7, s7, a7),
        })
        .collect()
}

#[sqlx::test(migrator = "freshplan_store_postgres::MIGRATOR")]
async fn figures_per_scope_match_the_domain(pool_opts: PgPoolOptions, opts: PgConnectOptions) {
    let db = Db::new(pool_opts, opts).await;
    let store = PgFollowUpStore::new(db.app.clone());
    let today = AT - Duration::hours(2);
    let yesterday = AT - Duration::days(1);

    // DE, rep-1: pending T3 (1), T3 sent today → pending T7 (2), both sent yesterday and now
    // CONVERTED (3), T3 skipped → pending T7 (4), stopped clock with nothing (5), T3 sent today
    // but deleted since (6), LOST after a sent T3 (7).
    // DE, rep-2: pending T3 (8), both done, the T7 sent today (9).
    // CH, rep-ch: pending T3 (10), T3 sent today (11), converted after T3 sent yesterday (12).
    let mut leads: Vec<Lead> = Vec::new();
    for (n, country, owner) in [
        (1, "DE", "rep-1"),
        (2, "DE", "rep-1"),
        (3, "DE", "rep-1"),
        (4, "DE", "rep-1"),
        (5, "DE", "rep-1"),
        (6, "DE", "rep-1"),
        (7, "DE", "rep-1"),
        (8, "DE", "rep-2"),
        (9, "DE", "rep-2"),
        (10, "CH", "rep-ch"),
        (11, "CH", "rep-ch"),
        (12, "CH", "rep-ch"),
    ] {
        leads.push(mailable(n, &format!("Betrieb {n}"), country, owner));
    }
    leads[2].status = LeadStatus::Converted;
    leads[4].protection.clock_stopped_at = Some(NOW);
    leads[6].status = LeadStatus::Lost;
    leads[11].status = LeadStatus::Converted;
    db.seed(&leads).await;
    let l = |n: usize| &leads[n - 1];
    record(&store, l(2), Stage::T3, true, today).await;
    record(&store, l(3), Stage::T3, true, yesterday).await;
    record(&store, l(3), Stage::T7, true, yesterday).await;
    record(&store, l(4), Stage::T3, false, today).await;
    record(&store, l(6), Stage::T3, true, today).await;
    record(&store, l(7), Stage::T3, true, yesterday).await;
    record(&store, l(9), Stage::T3, false, yesterday).await;
    record(&store, l(9), Stage::T7, true, today).await;
    record(&store, l(11), Stage::T3, true, today).await;
    record(&store, l(12), Stage::T3, true, yesterday).await;
    // Deleted after its mail went out.
    sqlx::query("update leads set status = 'DELETED' where id = $1")
        .bind(id(6))
        .execute(&db.su)
        .await
        .unwrap();

    let rows = current(&db).await;
    let rep_ch = Actor::new(uid("rep-ch"), [Role::Sales], [TerritoryId::Ch]);
    let both = Actor::new(
        uid("manager-both"),
        [Role::Manager],
        [TerritoryId::De, TerritoryId::Ch],
    );
    let nobody = Actor::new(uid("service-x"), [Role::Service], [TerritoryId::De]);
    let cases: Vec<(&str, Actor, Option<TerritoryId>)> = vec![
        ("admin", admin(), None),
        ("admin DE", admin(), Some(TerritoryId::De)),
        ("manager DE", manager(TerritoryId::De), None),
        ("manager CH", manager(TerritoryId::Ch), None),
        (
            "manager DE filtered to CH",
            manager(TerritoryId::De),
            Some(TerritoryId::Ch),
        ),
        ("manager of both, CH", both.clone(), Some(TerritoryId::Ch)),
        ("viewer DE", viewer(TerritoryId::De), None),
        ("rep-1", rep("rep-1"), None),
        ("rep-2", rep("rep-2"), None),
        ("rep-ch", rep_ch, None),
        ("service", nobody, None),
        ("system", Actor::system(), None),
    ];
    for (name, actor, filter) in &cases {
        let scope = Scope::for_actor(actor, *filter);
        let got = store.figures(actor, &scope, AT).await.unwrap();
        assert_eq!(got, figures(&rows, &scope, AT), "{name}");
    }
    // The conversion counts are delta rows until folded; folding changes no figure.
    let keys = "(select distinct territory_id, owner_user_id, status from followup_sent_counts) k";
    assert!(db.count("followup_sent_counts").await > db.count(keys).await);
    assert!(store.compact_counts(AT).await.unwrap() > 0);
    assert_eq!(db.count("followup_sent_counts").await, db.count(keys).await);
    assert_eq!(store.compact_counts(AT).await.unwrap(), 0);
    for (name, actor, filter) in &cases {
        let scope = Scope::for_actor(actor, *filter);
        let got = store.figures(actor, &scope, AT).await.unwrap();
        assert_eq!(got, figures(&rows, &scope, AT), "{name}, folded");
    }

    // Hand-checked.
    let f = |actor: &Actor, filter| {
        let scope = Scope::for_actor(actor, filter);
        let store = store.clone();
        let actor = actor.clone();
        async move { store.figures(&actor, &scope, AT).await.unwrap() }
    };
    let de = f(&manager(TerritoryId::De), None).await;
    // pending T3: 1, 8 (5 is stopped); pending T7: 2, 4; sent today: 2, 9 (6 is deleted);
    // with a SENT follow-up: 2, 3, 7, 9 → 1 converted of 4 = 25 %.
    assert_eq!(
        (
            de.pending_t3,
            de.pending_t7,
            de.sent_today,
            de.conversion_rate
        ),
        (2, 2, 2, 25.0)
    );
    let r1 = f(&rep("rep-1"), None).await;
    // rep-1: pending T3: 1; pending T7: 2, 4; sent today: 2; sent: 2, 3, 7 → 1 of 3 = 33.3 %.
    assert_eq!(
        (
            r1.pending_t3,
            r1.pending_t7,
            r1.sent_today,
            r1.conversion_rate
        ),
        (1, 2, 1, 33.3)
    );
    let ch = f(&both, Some(TerritoryId::Ch)).await;
    // pending T3: 10; pending T7: 11; sent today: 11; sent: 11, 12 → 1 of 2 = 50 %.
    assert_eq!(
        (
            ch.pending_t3,
            ch.pending_t7,
            ch.sent_today,
            ch.conversion_rate
        ),
        (1, 1, 1, 50.0)
    );
    let all = f(&admin(), None).await;
    assert_eq!(
        (all.pending_t3, all.pending_t7, all.sent_today),
        (
            de.pending_t3 + ch.pending_t3,
            de.pending_t7 + ch.pending_t7,
            3
        )
    );
    // "Today" starts at local midnight in Berlin (23:00 UTC in March): one minute into the
    // next day, nothing was sent today.
    let scope = Scope::for_actor(&manager(TerritoryId::De), None);
    let next_day = store
        .figures(
            &manager(TerritoryId::De),
            &scope,
            datetime!(2026-03-10 23:01 UTC),
        )
        .await
        .unwrap();
    assert_eq!(next_day.sent_today, 0);

    // The counts follow every change of a counted lead, whoever makes it (migrations/0006's
    // trigger, here through plain SQL): an owner change moves pending and sent, a stopped
    // clock or a closed lead leaves pending, an undeleted lead counts again, a hard delete
    // and a lead without owner.
    for change in [
        "update leads set owner_user_id = 'rep-2' where company_name = 'Betrieb 2'",
        "update leads set clock_stopped_at = now() where company_name = 'Betrieb 1'",
        "update leads set status = 'QUALIFIED' where company_name = 'Betrieb 8'",
        "update leads set status = 'ACTIVE' where company_name = 'Betrieb 6'",
        "update leads set clock_stopped_at = null where company_name = 'Betrieb 5'",
        "update leads set owner_user_id = null where company_name = 'Betrieb 10'",
        "delete from leads where company_name = 'Betrieb 9'",
    ] {
        sqlx::query(change).execute(&db.su).await.unwrap();
        let now = current(&db).await;
        for (name, actor, filter) in &cases {
            let scope = Scope::for_actor(actor, *filter);
            let got = store.figures(actor, &scope, AT).await.unwrap();
            assert_eq!(got, figures(&now, &scope, AT), "{name} after {change}");
        }
    }
    // Folding keeps every figure; two days later the day's sent counts are dropped (the
    // figures of that day count nothing sent "today" either way).
    let now = current(&db).await;
    let later = AT + Duration::days(2);
    for at in [AT, later] {
        assert!(store.compact_counts(at).await.unwrap() > 0, "{at}");
        for (name, actor, filter) in &cases {
            let scope = Scope::for_actor(actor, *filter);
            let got = store.figures(actor, &scope, at).await.unwrap();
            assert_eq!(got, figures(&now, &scope, at), "{name} at {at}, folded");
        }
    }
    assert_eq!(
        db.count("followup_figure_counts where metric = 'SENT'")
            .await,
        0,
        "sent counts of past days are dropped"
    );
    db.close().await;
}

#[sqlx::test(migrator = "freshplan_store_postgres::MIGRATOR")]
async fn mails_are_visible_with_their_lead_only(pool_opts: PgPoolOptions, opts: PgConnectOptions) {
    let db = Db::new(pool_opts, opts).await;
    let store = PgFollowUpStore::new(db.app.clone());
    let leads = [
        mailable(1, "Betrieb Eins", "DE", "rep-1"),
        mailable(2, "Betrieb Zwei", "DE", "rep-2"),
        mailable(3, "Betrieb Drei", "CH", "rep-ch"),
    ];
    db.seed(&leads).await;
    for l in &leads {
        record(&store, l, Stage::T3, true, AT).await;
    }
    let visible = |actor: Actor| {
        let pool = db.app.clone();
        async move {
            let mut tx = freshplan_store_postgres::begin_as(&pool, &actor)
                .await
                .unwrap();
            let mut ids: Vec<Uuid> = sqlx::query_scalar("select lead_id from mail_outbox")
                .fetch_all(&mut *tx)
                .await
                .unwrap();
            // Only admin and system change mails.
            let updated = sqlx::query("update mail_outbox set attempts = attempts + 1")
                .execute(&mut *tx)
                .await
                .unwrap()
                .rows_affected();
            ids.sort();
            (ids, updated)
        }
    };
    assert_eq!(visible(admin()).await, (vec![id(1), id(2), id(3)], 3));
    assert_eq!(
        visible(Actor::system()).await,
        (vec![id(1), id(2), id(3)], 3)
    );
    assert_eq!(
        visible(manager(TerritoryId::De)).await,
        (vec![id(1), id(2)], 0)
    );
    assert_eq!(visible(manager(TerritoryId::Ch)).await, (vec![id(3)], 0));
    assert_eq!(visible(rep("rep-1")).await, (vec![id(1)], 0));
    // No context, no rows.
    let mut conn = db.app.acquire().await.unwrap();
    let none: i64 = sqlx::query_scalar("select count(*) from mail_outbox")
        .fetch_one(&mut *conn)
        .await
        .unwrap();
    assert_eq!(none, 0);
    drop(conn);
    db.close().await;
}

/// A statement that changes many leads at once (a follow-up batch, a bulk SQL change) appends one
/// delta row per key with the net change and does not fold (migrations/0007: the run compacts
/// instead); the counts stay exact, and compaction folds them.
#[sqlx::test(migrator = "freshplan_store_postgres::MIGRATOR")]
async fn a_bulk_statement_appends_one_delta_per_key(
    pool_opts: PgPoolOptions,
    opts: PgConnectOptions,
) {
    let db = Db::new(pool_opts, opts).await;
    let leads: Vec<Lead> = (1..=100)
        .map(|n| mailable(n, &format!("Betrieb {n}"), "DE", "rep-1"))
        .collect();
    db.seed(&leads).await;
    let store = PgFollowUpStore::new(db.app.clone());
    store.compact_counts(AT).await.unwrap();
    let pending = |owner: &'static str| {
        let db = &db;
        async move {
            sqlx::query_scalar::<_, Option<i64>>(
                "select sum(n)::bigint from followup_figure_counts \
                  where owner_user_id = $1 and metric = 'T3'",
            )
            .bind(owner)
            .fetch_one(&db.su)
            .await
            .unwrap()
            .unwrap_or(0)
        }
    };
    assert_eq!((pending("rep-1").await, pending("rep-2").await), (100, 0));
    let before = db.count("followup_figure_counts").await;

    sqlx::query("update leads set owner_user_id = 'rep-2' where owner_user_id = 'rep-1'")
        .execute(&db.su)
        .await
        .unwrap();
    assert_eq!(
        db.count("followup_figure_counts").await,
        before + 2,
        "one row for rep-1 (-100) and one for rep-2 (+100), nothing folded"
    );
    assert_eq!((pending("rep-1").await, pending("rep-2").await), (0, 100));

    // An update that changes nothing counted appends nothing.
    sqlx::query("update leads set phone = '+49 30 1'")
        .execute(&db.su)
        .await
        .unwrap();
    assert_eq!(db.count("followup_figure_counts").await, before + 2);

    store.compact_counts(AT).await.unwrap();
    assert_eq!(
        db.count("followup_figure_counts where owner_user_id = 'rep-2'")
            .await,
        1
    );
    assert_eq!(
        db.count("followup_figure_counts where owner_user_id = 'rep-1'")
            .await,
        0
    );
    db.close().await;
}
