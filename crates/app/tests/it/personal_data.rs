//! Personal data over real HTTP (SPEC §13): a lead's person lives through the whole product —
//! timeline notes, a follow-up mail delivered to a real SMTP server, an owner change, a stopped
//! clock, the event feed, an idempotent create replayed — is exported with all of it, then
//! erased; afterwards no text, JSON or byte column of any table in the database holds any of
//! the person's values. Plus the rules around it: who may export and erase, If-Match,
//! idempotency, the audit log.

use reqwest::Method;
use serde_json::{Value, json};

use freshplan_mail_smtp::testing::Sink;

use crate::followups::{at_business_hours, counts, received, run_ok, t3_due_registration};
use crate::helpers::*;

/// The person's distinctive values: each must be in the export before and nowhere after.
const COMPANY: &str = "Metzgerei Zaphod Quibblewick";
const CONTACT: &str = "Zaphod Quibblewick";
const EMAIL: &str = "zaphod@quibblewick-metzgerei.test";
const PHONE: &str = "+49 30 5550 7719";
const WEBSITE: &str = "https://quibblewick-metzgerei.test";
const STREET: &str = "Quibblestrasse 42";
const POSTAL: &str = "QW-7719";
const CITY: &str = "Quibbelhausen";
const NOTE: &str = "Quibblewick bevorzugt Lieferung dienstags";
const CALL: &str = "Telefonat mit Zaphod ueber Musterkisten";
const STOP: &str = "Quibblewick im Krankenhaus";

const VALUES: [&str; 11] = [
    COMPANY, CONTACT, EMAIL, PHONE, WEBSITE, STREET, POSTAL, CITY, NOTE, CALL, STOP,
];

async fn json_of(r: reqwest::Response, status: u16) -> (Value, Option<String>) {
    let code = r.status().as_u16();
    let etag = r
        .headers()
        .get("etag")
        .map(|v| v.to_str().unwrap().to_owned());
    let text = r.text().await.unwrap();
    assert_eq!(code, status, "{text}");
    (serde_json::from_str(&text).unwrap(), etag)
}

/// Every place in the database where `needle` occurs (every table, every text, JSON, array and
/// byte column: [`freshplan_store_postgres::testing::occurrences`]).
async fn occurrences(database_url: &str, needle: &str) -> Vec<String> {
    let (found, tables) = freshplan_store_postgres::testing::occurrences(database_url, needle)
        .await
        .unwrap();
    assert!(tables >= 15, "every table is scanned ({tables})");
    found
}

/// The event feed (as an admin) once it holds `needle`, at most 20 s: the feed shows an event
/// once every older transaction on the cluster has ended, and other tests run alongside.
async fn feed_with(app: &TestApp, needle: &str) -> Value {
    let started = std::time::Instant::now();
    loop {
        let (feed, _) = json_of(app.get(&admin(), "/api/events?limit=1000").await, 200).await;
        if feed.to_string().contains(needle) || started.elapsed().as_secs() > 20 {
            return feed;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[actix_web::test]
async fn erasure_leaves_no_trace_of_the_person_anywhere_and_the_export_had_it_all() {
    let sink = Sink::start().await;
    let url = sink.url();
    let app = spawn_app_with(|c| {
        at_business_hours(c);
        c.smtp_url = Some(url);
        c.mail_from = Some("FreshPlan Vertrieb <vertrieb@freshplan.test>".into());
        c.mail_poll = std::time::Duration::from_secs(3600);
    })
    .await
    .unwrap();
    let adm = admin();
    let body = json!({
        "companyName": COMPANY, "contactPerson": CONTACT, "email": EMAIL, "phone": PHONE,
        "website": WEBSITE, "street": STREET, "postalCode": POSTAL, "city": CITY,
        "countryCode": "DE", "businessType": "CATERING", "emailConsent": true,
        "registeredAt": t3_due_registration()
            .format(&time::format_description::well_known::Rfc3339).unwrap(),
    });
    // An idempotent create, replayed.
    let create = || {
        app.req(Method::POST, "/api/leads", &adm)
            .header("Idempotency-Key", "quibble-create-1")
            .json(&body)
    };
    let (lead, _) = json_of(create().send().await.unwrap(), 201).await;
    let (replayed, _) = json_of(create().send().await.unwrap(), 201).await;
    assert_eq!(replayed["id"], lead["id"]);
    let id = lead["id"].as_str().unwrap().to_owned();
    assert_eq!(lead["emailConsentSource"], "API");
    assert_eq!(lead["erasedAt"], Value::Null);

    // A follow-up mail, delivered to a real SMTP server (before the call: a recent contact
    // would skip it).
    assert_eq!(counts(&run_ok(&app).await), (1, 0, 0));
    let got = received(&sink, 1).await;
    assert_eq!(got[0].to, [EMAIL.to_owned()]);
    // The timeline: a note and a call with the person in their text.
    for (kind, text) in [("NOTE", NOTE), ("CALL", CALL)] {
        let r = app
            .req(Method::POST, &format!("/api/leads/{id}/activities"), &adm)
            .json(&json!({"type": kind, "description": text}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
    }
    // An owner change, a stopped and resumed clock (the reason names the person).
    let r = app
        .req(Method::PUT, &format!("/api/leads/{id}/owner"), &adm)
        .json(&json!({"ownerUserId": "rep-2"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    for (path, body) in [("stop", json!({"reason": STOP})), ("resume", json!({}))] {
        let r = app
            .req(Method::POST, &format!("/api/leads/{id}/clock/{path}"), &adm)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{path}: {}", r.text().await.unwrap());
    }
    // The event feed, read by another service.
    let feed = feed_with(&app, COMPANY).await;
    assert!(feed.to_string().contains(COMPANY));

    // Before: every value is stored somewhere, and the export holds every one of them.
    for v in VALUES {
        assert!(!occurrences(&app.database_url, v).await.is_empty(), "{v}");
    }
    let (export, _) = json_of(
        app.get(&manager_de(), &format!("/api/leads/{id}/personal-data"))
            .await,
        200,
    )
    .await;
    let text = export.to_string();
    for v in VALUES {
        assert!(text.contains(v), "the export lacks {v}: {text}");
    }
    assert_eq!(export["lead"]["id"], id.as_str());
    assert_eq!(export["mails"][0]["recipient"], EMAIL);
    assert_eq!(export["mails"][0]["status"], "SENT");
    assert!(
        export["mails"][0]["text"]
            .as_str()
            .unwrap()
            .contains(CONTACT)
    );
    assert_eq!(export["consentHistory"][0]["consent"], true);
    assert_eq!(export["consentHistory"][0]["source"], "API");
    assert_eq!(export["events"][0]["type"], "lead.created.v1");
    let types: Vec<&str> = export["activities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["type"].as_str().unwrap())
        .collect();
    for t in [
        "CREATED",
        "NOTE",
        "CALL",
        "FOLLOWUP_SENT",
        "OWNER_CHANGED",
        "CLOCK_STOPPED",
    ] {
        assert!(types.contains(&t), "{t} in {types:?}");
    }

    // Who may erase: admins only, with If-Match.
    let (current, etag) = json_of(app.get(&adm, &format!("/api/leads/{id}")).await, 200).await;
    let etag = etag.unwrap();
    let erase = |tok: &str| {
        app.req(Method::POST, &format!("/api/leads/{id}/erasure"), tok)
            .json(&json!({"reason": "DATA_SUBJECT_REQUEST"}))
    };
    problem(
        erase(&manager_de())
            .header("If-Match", &etag)
            .send()
            .await
            .unwrap(),
        403,
    )
    .await;
    problem(erase(&adm).send().await.unwrap(), 428).await;
    problem(
        erase(&adm)
            .header("If-Match", "\"0\"")
            .send()
            .await
            .unwrap(),
        412,
    )
    .await;
    let r = app
        .req(Method::POST, &format!("/api/leads/{id}/erasure"), &adm)
        .header("If-Match", &etag)
        .json(&json!({"reason": "RETENTION"}))
        .send()
        .await
        .unwrap();
    problem(r, 422).await;
    let (erased, new_etag) = json_of(
        erase(&adm).header("If-Match", &etag).send().await.unwrap(),
        200,
    )
    .await;
    assert_ne!(new_etag.as_deref(), Some(etag.as_str()));
    assert!(erased["erasedAt"].is_string());
    assert_eq!(erased["status"], current["status"]);
    assert_eq!(erased["businessType"], "CATERING");
    assert_eq!(erased["territory"]["id"], "DE");
    assert_eq!(erased["emailConsent"], false);
    assert_eq!(erased["emailConsentSource"], "ERASURE");
    for field in [
        "contactPerson",
        "email",
        "phone",
        "website",
        "street",
        "postalCode",
        "city",
    ] {
        assert_eq!(erased[field], Value::Null, "{field}");
    }

    // After: none of the values is anywhere in the database.
    for v in VALUES {
        let found = occurrences(&app.database_url, v).await;
        assert!(found.is_empty(), "{v} is still stored in {found:?}");
    }
    assert!(occurrences(&app.database_url, "quibble").await.is_empty());

    // Idempotent: again, even with the old ETag, answers the erased lead and changes nothing.
    let (again, _) = json_of(
        erase(&adm).header("If-Match", &etag).send().await.unwrap(),
        200,
    )
    .await;
    assert_eq!(again["version"], erased["version"]);
    // An erased lead no longer changes.
    let r = app
        .req(Method::PATCH, &format!("/api/leads/{id}"), &adm)
        .header("If-Match", new_etag.unwrap())
        .json(&json!({"phone": PHONE}))
        .send()
        .await
        .unwrap();
    problem(r, 409).await;
    // Consumers learn of it: lead.erased.v1 on the feed, without personal data.
    let feed = feed_with(&app, "lead.erased.v1").await;
    let erased_events: Vec<&Value> = feed["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "lead.erased.v1")
        .collect();
    assert_eq!(erased_events.len(), 1);
    assert_eq!(erased_events[0]["data"]["reason"], "DATA_SUBJECT_REQUEST");
    // The duplicate keys are free: the person can be registered again.
    let mut again_body = body.clone();
    again_body.as_object_mut().unwrap().remove("registeredAt");
    app.create_ok(&adm, again_body).await;
    // The audit log names who exported and erased which lead, and nothing personal.
    let (audit, _) = json_of(app.get(&adm, "/api/audit").await, 200).await;
    let actions: Vec<(&str, &str)> = audit["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["action"].as_str().unwrap(), e["actor"].as_str().unwrap()))
        .collect();
    assert_eq!(
        actions,
        [
            ("LEAD_ERASED", "admin-1"),
            ("PERSONAL_DATA_EXPORTED", "manager-de")
        ]
    );
    problem(app.get(&manager_de(), "/api/audit").await, 403).await;
}

#[actix_web::test]
async fn only_admins_and_managers_of_the_territory_export() {
    let app = spawn_app().await;
    let lead = app.create_ok(&rep("rep-1"), lead("Export Probe")).await;
    let id = lead["id"].as_str().unwrap();
    let path = format!("/api/leads/{id}/personal-data");
    problem(app.get(&rep("rep-1"), &path).await, 403).await;
    problem(app.get(&manager_ch(), &path).await, 404).await;
    let r = app.get(&manager_de(), &path).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["cache-control"], "no-store");
    problem(
        app.get(
            &admin(),
            "/api/leads/00000000-0000-0000-0000-000000000000/personal-data",
        )
        .await,
        404,
    )
    .await;
    problem(
        app.get(&admin(), "/api/leads/not-a-uuid/personal-data")
            .await,
        400,
    )
    .await;
}

#[actix_web::test]
async fn the_typed_client_exports_erases_and_reads_the_audit_log() {
    use freshplan_client::api::privacy::{AuditAction, ErasureRequestReason};

    let app = spawn_app().await;
    let admin = app.api(&admin());
    let created = admin
        .leads()
        .create(&freshplan_client::api::leads::LeadCreate {
            contact_person: Some("Client Person".into()),
            ..new_lead("Client Export")
        })
        .await
        .unwrap();
    let id = created.value.id;
    let export = admin.leads().personal_data(id).await.unwrap();
    assert_eq!(export.lead.contact_person.as_deref(), Some("Client Person"));
    assert_eq!(export.events.len(), 1);
    let erased = admin
        .leads()
        .erase(id, &created.etag, ErasureRequestReason::Objection)
        .await
        .unwrap();
    assert!(erased.value.erased_at.is_some());
    assert_eq!(erased.value.contact_person, None);
    // Idempotent through the client too: the stale ETag of the retry is fine.
    let again = admin
        .leads()
        .erase(id, &created.etag, ErasureRequestReason::Objection)
        .await
        .unwrap();
    assert_eq!(again.value.version, erased.value.version);
    let audit = admin.audit().list(0, 10).await.unwrap();
    let actions: Vec<AuditAction> = audit.data.iter().map(|e| e.action).collect();
    assert_eq!(
        actions,
        [AuditAction::LeadErased, AuditAction::PersonalDataExported]
    );
    assert!(audit.data.iter().all(|e| e.lead_id == Some(id)));
    let e = app
        .api(&manager_de())
        .audit()
        .list(0, 10)
        .await
        .unwrap_err();
    assert_eq!(e.status(), Some(403));
}
