//! Personal data on PostgreSQL (SPEC §13): retention with the injectable clock, erasure that
//! never waits for a lead another transaction holds, and the export as a manager under
//! row-level security.

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

use freshplan_kernel::{Actor, Role, TerritoryId};
use freshplan_leads::model::{CompanyName, Email};
use freshplan_leads::personal::{ErasureReason, RetentionPolicy};
use freshplan_leads::status::LeadStatus;
use freshplan_leads::{CreateLead, Lead, LeadData, LeadError, LeadPatch};

use crate::helpers::{Db, NOW, admin, rep, uid};
use crate::service::{Service, service};

async fn create(service: &Service, name: &str, email: &str) -> Lead {
    let mut data = LeadData::new(CompanyName::parse(name).unwrap(), "DE").unwrap();
    data.email = Some(Email::parse(email).unwrap());
    data.contact_person = Some(format!("Kontakt {name}"));
    data.email_consent = true;
    let cmd = CreateLead {
        data,
        registered_at: None,
        idempotency: None,
    };
    service.create(&rep("rep-1"), cmd).await.unwrap().0
}

/// A mail of `lead` in the outbox, last changed at `at`.
async fn mail(db: &Db, lead: &Lead, stage: &str, status: &str, at: OffsetDateTime) -> Uuid {
    let id = Uuid::now_v7();
    sqlx::query(
        "insert into mail_outbox (id, lead_id, territory_id, stage, recipient, subject, html, \
            text, unsubscribe_url, status, attempts, next_attempt_at, created_at, updated_at, \
            sent_at) \
         values ($1, $2, 'DE', $3, 'to@example.org', 'Ihr Angebot', '<p>Body</p>', 'Body', \
                 'https://crm.example/unsubscribe?token=t', $4, 1, $5, $5, $5, \
                 case when $4 = 'SENT' then $5 end)",
    )
    .bind(id)
    .bind(lead.id)
    .bind(stage)
    .bind(status)
    .bind(at)
    .execute(&db.su)
    .await
    .unwrap();
    id
}

async fn erased(db: &Db, id: Uuid) -> bool {
    sqlx::query_scalar::<_, Option<OffsetDateTime>>("select erased_at from leads where id = $1")
        .bind(id)
        .fetch_one(&db.su)
        .await
        .unwrap()
        .is_some()
}

async fn body(db: &Db, id: Uuid) -> (String, bool) {
    sqlx::query_as("select html || text, body_erased_at is not null from mail_outbox where id = $1")
        .bind(id)
        .fetch_one(&db.su)
        .await
        .unwrap()
}

#[sqlx::test(migrator = "freshplan_store_postgres::MIGRATOR")]
async fn retention_erases_exactly_what_is_past_its_period(
    pool_opts: PgPoolOptions,
    opts: PgConnectOptions,
) {
    let db = Db::new(pool_opts, opts).await;
    let (service, clock) = service(&db);
    let rep1 = rep("rep-1");
    let lost = create(&service, "Lost Alt", "lost@example.org").await;
    let deleted = create(&service, "Deleted Alt", "deleted@example.org").await;
    let open = create(&service, "Offen Alt", "open@example.org").await;
    let lost_later = create(&service, "Lost Neu", "later@example.org").await;
    let to_lost = LeadPatch {
        status: Some(LeadStatus::Lost),
        ..LeadPatch::default()
    };
    service
        .update(&rep1, lost.id, None, to_lost.clone())
        .await
        .unwrap();
    service.delete(&rep1, deleted.id, None).await.unwrap();
    let sent_old = mail(&db, &open, "T3", "SENT", NOW).await;
    let dead_old = mail(&db, &open, "T7", "DEAD", NOW).await;
    let sent_new = mail(&db, &lost_later, "T3", "SENT", NOW + Duration::days(30)).await;
    let queued_old = mail(&db, &lost_later, "T7", "QUEUED", NOW).await;
    clock.set(NOW + Duration::days(10));
    service
        .update(&rep1, lost_later.id, None, to_lost)
        .await
        .unwrap();

    let policy = RetentionPolicy::default();
    // 89 days on: no mail body is due yet, no lead either.
    clock.set(NOW + Duration::days(90) - Duration::seconds(1));
    assert!(service.retention(&policy, 1).await.unwrap().is_empty());
    // 90 days: the two old bodies (the queued mail and the newer one stay).
    clock.set(NOW + Duration::days(90));
    let report = service.retention(&policy, 1).await.unwrap();
    assert_eq!((report.leads_erased, report.mail_bodies_erased), (0, 2));
    assert_eq!(body(&db, sent_old).await, (String::new(), true));
    assert_eq!(body(&db, dead_old).await, (String::new(), true));
    assert_eq!(body(&db, sent_new).await, ("<p>Body</p>Body".into(), false));
    assert_eq!(
        body(&db, queued_old).await,
        ("<p>Body</p>Body".into(), false)
    );

    // 730 days after their last change: the LOST and the DELETED lead, in batches of one.
    clock.set(NOW + Duration::days(730) - Duration::seconds(1));
    assert_eq!(service.retention(&policy, 1).await.unwrap().leads_erased, 0);
    clock.set(NOW + Duration::days(730));
    let report = service.retention(&policy, 1).await.unwrap();
    assert_eq!(report.leads_erased, 2);
    assert!(erased(&db, lost.id).await);
    assert!(erased(&db, deleted.id).await);
    assert!(!erased(&db, open.id).await);
    assert!(!erased(&db, lost_later.id).await);
    // Each with the erasure's event and timeline entry, and audited per batch.
    let reasons: Vec<String> = sqlx::query_scalar(
        "select payload -> 'data' ->> 'reason' from event_outbox \
          where type = 'lead.erased.v1' order by id",
    )
    .fetch_all(&db.su)
    .await
    .unwrap();
    assert_eq!(reasons, ["RETENTION", "RETENTION"]);
    let audit: Vec<(String, i32, i32)> = sqlx::query_as(
        "select action, leads_erased, mail_bodies_erased from audit_log order by at, id",
    )
    .fetch_all(&db.su)
    .await
    .unwrap();
    let runs = audit
        .iter()
        .filter(|(a, _, _)| a == "RETENTION_RUN")
        .count();
    // Batches of one: two bodies at day 90; at day 730 the two leads and the newer body.
    assert_eq!(runs, 5, "{audit:?}");
    assert_eq!(audit.iter().map(|(_, l, _)| l).sum::<i32>(), 2);
    assert_eq!(audit.iter().map(|(_, _, m)| m).sum::<i32>(), 3);

    // Ten days later the lead that was closed later follows; nothing is erased twice.
    clock.set(NOW + Duration::days(740));
    let report = service.retention(&policy, 10).await.unwrap();
    assert_eq!(report.leads_erased, 1);
    assert!(erased(&db, lost_later.id).await);
    assert!(!erased(&db, open.id).await);
    assert_eq!(
        db.count("event_outbox where type = 'lead.erased.v1'").await,
        3
    );
    db.close().await;
}

#[sqlx::test(migrator = "freshplan_store_postgres::MIGRATOR")]
async fn erasure_does_not_wait_for_a_held_lead_and_changes_nothing_then(
    pool_opts: PgPoolOptions,
    opts: PgConnectOptions,
) {
    let db = Db::new(pool_opts, opts).await;
    let (service, _) = service(&db);
    let lead = create(&service, "Gehalten", "held@example.org").await;
    // A follow-up run's claim holds the row like this (FOR NO KEY UPDATE in its transaction).
    let mut holder = db.su.begin().await.unwrap();
    sqlx::query("select id from leads where id = $1 for no key update")
        .bind(lead.id)
        .execute(&mut *holder)
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let refused = service
        .erase(
            &admin(),
            lead.id,
            Some(lead.version),
            ErasureReason::DataSubjectRequest,
        )
        .await;
    assert!(
        matches!(refused, Err(LeadError::Conflict(_))),
        "{refused:?}"
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(2));
    holder.rollback().await.unwrap();
    assert!(!erased(&db, lead.id).await);
    assert_eq!(db.count("audit_log").await, 0);
    assert_eq!(
        db.count("event_outbox where type = 'lead.erased.v1'").await,
        0
    );
    // Released: the erasure goes through.
    let done = service
        .erase(
            &admin(),
            lead.id,
            Some(lead.version),
            ErasureReason::DataSubjectRequest,
        )
        .await
        .unwrap();
    assert!(done.erased_at.is_some());
    db.close().await;
}

#[sqlx::test(migrator = "freshplan_store_postgres::MIGRATOR")]
async fn a_manager_exports_the_own_territory_only_with_the_events(
    pool_opts: PgPoolOptions,
    opts: PgConnectOptions,
) {
    let db = Db::new(pool_opts, opts).await;
    let (service, _) = service(&db);
    let lead = create(&service, "Export GmbH", "export@example.org").await;
    let de = Actor::new(uid("manager-de"), [Role::Manager], [TerritoryId::De]);
    let ch = Actor::new(uid("manager-ch"), [Role::Manager], [TerritoryId::Ch]);
    let export = service.personal_data(&de, lead.id).await.unwrap();
    assert_eq!(export.records.events.len(), 1);
    assert_eq!(
        export.records.events[0]["data"]["companyName"],
        "Export GmbH"
    );
    assert_eq!(export.records.consent.len(), 1);
    assert_eq!(export.records.activities.len(), 1);
    assert!(matches!(
        service.personal_data(&ch, lead.id).await,
        Err(LeadError::NotFound)
    ));
    assert!(matches!(
        service.personal_data(&rep("rep-1"), lead.id).await,
        Err(LeadError::Forbidden(_))
    ));
    // The export is audited with who and which lead, and nothing personal.
    let audit: Vec<(String, String, Uuid)> =
        sqlx::query_as("select actor, action, lead_id from audit_log")
            .fetch_all(&db.su)
            .await
            .unwrap();
    assert_eq!(
        audit,
        [(
            "manager-de".to_owned(),
            "PERSONAL_DATA_EXPORTED".to_owned(),
            lead.id
        )]
    );
    db.close().await;
}

#[sqlx::test(migrator = "freshplan_store_postgres::MIGRATOR")]
async fn the_consent_ledger_follows_its_lead_into_the_other_territory(
    pool_opts: PgPoolOptions,
    opts: PgConnectOptions,
) {
    let db = Db::new(pool_opts, opts).await;
    let (service, _) = service(&db);
    let lead = create(&service, "Umzug AG", "umzug@example.org").await;
    let moved = service
        .update(
            &admin(),
            lead.id,
            Some(lead.version),
            LeadPatch {
                country_code: Some("CH".into()),
                email_consent: Some(false),
                ..LeadPatch::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(moved.territory, TerritoryId::Ch);
    let ledger: Vec<(String, bool, String)> = sqlx::query_as(
        "select territory_id, consent, source from consent_changes \
          where lead_id = $1 order by changed_at, id",
    )
    .bind(lead.id)
    .fetch_all(&db.su)
    .await
    .unwrap();
    assert_eq!(
        ledger,
        [
            ("CH".to_owned(), true, "API".to_owned()),
            ("CH".to_owned(), false, "API".to_owned())
        ]
    );
    // The export follows the lead too: the CH manager reads its events written while it was DE.
    let ch = Actor::new(uid("manager-ch"), [Role::Manager], [TerritoryId::Ch]);
    let export = service.personal_data(&ch, lead.id).await.unwrap();
    assert_eq!(export.records.events.len(), 1);
    assert_eq!(export.records.consent.len(), 2);
    db.close().await;
}

#[sqlx::test(migrator = "freshplan_store_postgres::MIGRATOR")]
async fn erasure_purges_every_users_idempotency_keys_of_the_lead(
    pool_opts: PgPoolOptions,
    opts: PgConnectOptions,
) {
    let db = Db::new(pool_opts, opts).await;
    let (service, clock) = service(&db);
    let mut data = LeadData::new(CompanyName::parse("Schlüssel GmbH").unwrap(), "DE").unwrap();
    data.email = Some(Email::parse("key@example.org").unwrap());
    let keyed = |data: LeadData, key: &str| CreateLead {
        data,
        registered_at: None,
        idempotency: Some((key.to_owned(), format!("hash-{key}"))),
    };
    // A sales rep's key, erased by an admin.
    let (lead, _) = service
        .create(&rep("rep-1"), keyed(data, "rep-key"))
        .await
        .unwrap();
    let other = create(&service, "Andere AG", "other@example.org").await;
    let keys = |id: Uuid| {
        let su = db.su.clone();
        async move {
            sqlx::query_scalar::<_, i64>("select count(*) from idempotency_keys where lead_id = $1")
                .bind(id)
                .fetch_one(&su)
                .await
                .unwrap()
        }
    };
    assert_eq!(keys(lead.id).await, 1);
    service
        .erase(&admin(), lead.id, None, ErasureReason::DataSubjectRequest)
        .await
        .unwrap();
    assert_eq!(keys(lead.id).await, 0);
    // And by retention, as the system.
    let mut data = LeadData::new(CompanyName::parse("Verloren KG").unwrap(), "DE").unwrap();
    data.email = Some(Email::parse("lost@example.org").unwrap());
    let (lost, _) = service
        .create(&rep("rep-1"), keyed(data, "rep-key-2"))
        .await
        .unwrap();
    service
        .update(
            &rep("rep-1"),
            lost.id,
            None,
            LeadPatch {
                status: Some(LeadStatus::Lost),
                ..LeadPatch::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(keys(lost.id).await, 1);
    clock.set(NOW + Duration::days(731));
    let report = service
        .retention(&RetentionPolicy::default(), 10)
        .await
        .unwrap();
    assert_eq!(report.leads_erased, 1);
    assert_eq!(keys(lost.id).await, 0);
    assert!(!erased(&db, other.id).await);
    db.close().await;
}
