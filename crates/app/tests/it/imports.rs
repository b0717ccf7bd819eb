//! Imports of lead lists over real HTTP with real files (issue 15): a Windows-1252 `;` file as
//! German Excel saves it (umlauts, a quoted line break, a quoted `;`, a blank line, trailing empty
//! columns, every kind of refused row, an in-file and an existing duplicate), a UTF-8-with-BOM
//! `,` file with an owner column, the 50,001-row file, a replayed import, and a replica killed
//! mid-import (`freshplan serve` processes, SIGKILL).

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::*;

const EXCEL_1252: &[u8] = include_bytes!("../fixtures/import-messe-excel-1252.csv");
const UTF8_BOM: &[u8] = include_bytes!("../fixtures/import-purchased-list-utf8-bom.csv");

impl TestApp {
    /// `POST /api/leads/imports` with a CSV body.
    pub(crate) async fn import(
        &self,
        tok: &str,
        query: &str,
        body: impl Into<reqwest::Body>,
        key: Option<&str>,
    ) -> reqwest::Response {
        let mut r = self
            .req(Method::POST, &format!("/api/leads/imports{query}"), tok)
            .header("content-type", "text/csv");
        if let Some(k) = key {
            r = r.header("idempotency-key", k);
        }
        r.body(body).send().await.unwrap()
    }

    /// Polls an import until it is no longer RUNNING (at most `limit`).
    pub(crate) async fn finished_import(&self, tok: &str, id: &str, limit: Duration) -> Value {
        let started = Instant::now();
        loop {
            let r = self.get(tok, &format!("/api/leads/imports/{id}")).await;
            assert_eq!(r.status(), 200);
            let v: Value = r.json().await.unwrap();
            if v["state"] != "RUNNING" {
                return v;
            }
            assert!(started.elapsed() < limit, "import still running: {v}");
            actix_web::rt::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn leads_named(&self, tok: &str, q: &str) -> Vec<Value> {
        let r = self
            .get(tok, &format!("/api/leads?size=200&q={}", urlencode(q)))
            .await;
        assert_eq!(r.status(), 200);
        let v: Value = r.json().await.unwrap();
        v["data"].as_array().unwrap().clone()
    }

    async fn events_of(&self, event_type: &str) -> Vec<Value> {
        let r = self
            .get(
                &admin(),
                &format!("/api/events?limit=1000&type={event_type}"),
            )
            .await;
        assert_eq!(r.status(), 200);
        let v: Value = r.json().await.unwrap();
        v["events"].as_array().unwrap().clone()
    }
}

fn urlencode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

fn problems_by_line(report: &Value) -> Vec<(u64, String, Vec<String>)> {
    report["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["line"].as_u64().unwrap(),
                p["outcome"].as_str().unwrap().to_owned(),
                p["errors"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|e| e["field"].as_str().unwrap().to_owned())
                    .collect(),
            )
        })
        .collect()
}

#[actix_web::test]
async fn a_german_excel_file_is_checked_by_a_dry_run_then_imported_exactly_as_single_creates() {
    let app = spawn_app().await;
    let rep = token("rep-import", &["sales"], &["DE"]);
    let existing = app
        .create_ok(
            &rep,
            json!({"companyName": "Brauhaus Alt", "email": "brauhaus@alt.de", "countryCode": "DE"}),
        )
        .await;
    let before = app.row_counts().await;

    // Dry run: the whole report, nothing written.
    let r = app.import(&rep, "?dryRun=true", EXCEL_1252, None).await;
    assert_eq!(r.status(), 200);
    let dry: Value = r.json().await.unwrap();
    assert_eq!(app.row_counts().await, before, "a dry run writes nothing");
    assert_eq!(dry["dryRun"], true);
    assert_eq!(dry["state"], "VALIDATED");
    assert!(dry.get("id").is_none(), "a dry run stores nothing to name");
    assert_eq!(dry["encoding"], "windows-1252");
    assert_eq!(dry["delimiter"], ";");
    assert_eq!(dry["unknownColumns"], json!(["Notiz"]));
    assert_eq!(
        dry["columns"][4],
        json!({"header": "Straße", "field": "street"})
    );
    assert_eq!(
        (
            dry["rows"].as_u64(),
            dry["created"].as_u64(),
            dry["refused"].as_u64(),
            dry["duplicates"].as_u64()
        ),
        (Some(9), Some(4), Some(3), Some(2)),
        "{dry:#}"
    );
    let problems = problems_by_line(&dry);
    assert_eq!(
        problems,
        vec![
            (
                8,
                "REFUSED".to_owned(),
                vec![
                    "businessType".to_owned(),
                    "employeeCount".into(),
                    "estimatedVolume".into(),
                    "emailConsent".into(),
                    "email".into()
                ]
            ),
            (9, "REFUSED".into(), vec!["companyName".to_owned()]),
            (10, "REFUSED".into(), vec!["countryCode".to_owned()]),
            (11, "DUPLICATE".into(), vec![]),
            (12, "DUPLICATE".into(), vec![]),
        ],
        "{dry:#}"
    );
    let dup_in_file = &dry["problems"][3];
    assert_eq!(dup_in_file["duplicateOfLine"], 5);
    assert_eq!(dup_in_file["duplicateKind"], "EMAIL");
    let dup_existing = &dry["problems"][4];
    assert_eq!(dup_existing["existingLeadId"], existing["id"]);
    assert_eq!(dup_existing["duplicateOfLine"], Value::Null);

    // The import: the same outcomes, in the background.
    let r = app.import(&rep, "", EXCEL_1252, None).await;
    assert_eq!(r.status(), 202);
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    let accepted: Value = r.json().await.unwrap();
    let id = accepted["id"].as_str().unwrap().to_owned();
    assert_eq!(location, format!("/api/leads/imports/{id}"));
    let done = app
        .finished_import(&rep, &id, Duration::from_secs(30))
        .await;
    assert_eq!(done["state"], "SUCCEEDED", "{done:#}");
    assert_eq!(
        (
            done["processed"].as_u64(),
            done["created"].as_u64(),
            done["refused"].as_u64(),
            done["duplicates"].as_u64()
        ),
        (Some(9), Some(4), Some(3), Some(2))
    );
    assert_eq!(problems_by_line(&done), problems);

    // Umlauts, ß, the quoted `;` and `"`, the quoted line break, the German number spellings.
    let leads = app.leads_named(&rep, "").await;
    assert_eq!(
        leads.len(),
        5,
        "the four imported leads and the existing one"
    );
    let by_name = |name: &str| {
        leads
            .iter()
            .find(|l| l["companyName"] == name)
            .unwrap_or_else(|| panic!("{name} missing from {leads:#?}"))
            .clone()
    };
    let mueller = by_name("Bäckerei Müller & Söhne");
    assert_eq!(mueller["contactPerson"], "Jürgen Weiß");
    assert_eq!(mueller["street"], "Hauptstraße 5");
    assert_eq!(mueller["estimatedVolume"], 1234.5);
    assert_eq!(mueller["employeeCount"], 12);
    assert_eq!(mueller["businessType"], "RESTAURANT");
    assert_eq!(mueller["emailConsent"], true);
    assert_eq!(mueller["emailConsentSource"], "IMPORT");
    assert_eq!(mueller["source"], "IMPORT");
    assert_eq!(mueller["ownerUserId"], "rep-import");
    assert_eq!(mueller["status"], "REGISTERED");
    let post = by_name("Gasthaus \"Zur Post\"; Inh. Groß");
    assert_eq!(post["street"], "Marktplatz 1, Hinterhaus");
    assert_eq!(post["city"], "München");
    assert_eq!(post["estimatedVolume"], 12000.0);
    assert_eq!(post["emailConsent"], false, "nein");
    assert_eq!(post["emailConsentSource"], Value::Null);
    let adler = by_name("Hotel Adler");
    assert_eq!(adler["emailConsent"], true, "x");
    assert_eq!(adler["countryCode"], "DE", "D");
    let kantine = by_name("Kantine Nord GmbH");
    assert_eq!(kantine["businessType"], "CANTEEN");
    assert_eq!(
        kantine["emailConsent"], false,
        "no Einwilligung column value: no consent"
    );
    assert!(leads.iter().all(|l| l["companyName"] != "Café Süd"));

    // The timeline names the import; one lead.created.v1 per created lead; the import's own event.
    let timeline: Value = app
        .get(
            &rep,
            &format!("/api/leads/{}/activities", mueller["id"].as_str().unwrap()),
        )
        .await
        .json()
        .await
        .unwrap();
    let created = &timeline["data"][0];
    assert_eq!(created["type"], "CREATED");
    assert_eq!(created["description"], "Lead imported (line 2)");
    let created_events = app.events_of("lead.created.v1").await;
    assert_eq!(created_events.len(), 5, "four imported, one created before");
    let finished = app.events_of("lead.import.finished.v1").await;
    assert_eq!(finished.len(), 1);
    assert_eq!(finished[0]["subject"], id.as_str());
    assert_eq!(
        finished[0]["data"],
        json!({"importId": id, "state": "SUCCEEDED", "rows": 9, "created": 4, "refused": 3,
               "duplicates": 2, "startedAt": finished[0]["data"]["startedAt"],
               "finishedAt": finished[0]["data"]["finishedAt"]})
    );

    // Every row, paged, with the created leads' ids.
    let rows: Value = app
        .get(&rep, &format!("/api/leads/imports/{id}/rows?size=200"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(rows["total"], 9);
    assert_eq!(rows["data"][0]["line"], 2);
    assert_eq!(rows["data"][0]["leadId"], mueller["id"]);
    // Another rep cannot see the import.
    let other = app
        .get(&rep_token("rep-other"), &format!("/api/leads/imports/{id}"))
        .await;
    problem(other, 404).await;
    // The metric counts the rows by result.
    let metrics = app
        .client
        .get(format!("{}/metrics", app.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("freshplan_import_rows_total{result=\"created\"} 4"),
        "{metrics}"
    );
    assert!(metrics.contains("freshplan_import_rows_total{result=\"refused\"} 3"));
    assert!(metrics.contains("freshplan_import_rows_total{result=\"duplicate\"} 2"));
}

fn rep_token(name: &str) -> String {
    token(name, &["sales"], &["DE"])
}

#[actix_web::test]
async fn a_utf8_bom_comma_file_names_owners_for_a_manager_and_only_for_a_manager() {
    let app = spawn_app().await;
    // A sales rep may not name owners: every row with an owner is refused for that field.
    let r = app
        .import(&rep_token("rep-x"), "?dryRun=true", UTF8_BOM, None)
        .await;
    assert_eq!(r.status(), 200);
    let dry: Value = r.json().await.unwrap();
    assert_eq!(dry["encoding"], "UTF-8");
    assert_eq!(dry["delimiter"], ",");
    assert_eq!(dry["unknownColumns"], json!(["Notes"]));
    assert_eq!(
        problems_by_line(&dry),
        vec![
            (2, "REFUSED".to_owned(), vec!["ownerUserId".to_owned()]),
            (3, "REFUSED".into(), vec!["ownerUserId".to_owned()]),
        ]
    );
    assert_eq!(dry["created"], 1);

    let r = app.import(&manager_de(), "", UTF8_BOM, None).await;
    assert_eq!(r.status(), 202);
    let id = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let done = app
        .finished_import(&manager_de(), &id, Duration::from_secs(30))
        .await;
    assert_eq!(
        (done["created"].as_u64(), done["refused"].as_u64()),
        (Some(3), Some(0)),
        "{done:#}"
    );
    let leads = app.leads_named(&manager_de(), "").await;
    let owner = |name: &str| {
        leads.iter().find(|l| l["companyName"] == name).unwrap()["ownerUserId"].clone()
    };
    assert_eq!(owner("Sushi Bar Tokio, Berlin"), "rep-a");
    assert_eq!(owner("Mensa Campus Nord"), "rep-b");
    assert_eq!(
        owner("Event Catering Ost"),
        "manager-de",
        "no owner: the importer"
    );
    // rep-a sees the lead imported for them.
    assert_eq!(app.leads_named(&rep_token("rep-a"), "Sushi").await.len(), 1);
}

#[actix_web::test]
async fn a_replayed_import_imports_once_and_bad_files_change_nothing() {
    let app = spawn_app().await;
    let rep = rep_token("rep-replay");
    let r = app.import(&rep, "", UTF8_BOM, Some("fair-2026")).await;
    assert_eq!(r.status(), 202);
    let first: Value = r.json().await.unwrap();
    app.finished_import(&rep, first["id"].as_str().unwrap(), Duration::from_secs(30))
        .await;
    let after_first = app.row_counts().await;
    // The same file and key: the same import, nothing imported twice.
    let r = app.import(&rep, "", UTF8_BOM, Some("fair-2026")).await;
    assert_eq!(r.status(), 202);
    let again: Value = r.json().await.unwrap();
    assert_eq!(again["id"], first["id"]);
    assert_eq!(again["state"], "SUCCEEDED");
    assert_eq!(app.row_counts().await, after_first);
    // The same key with another file: 422.
    problem(
        app.import(&rep, "", EXCEL_1252, Some("fair-2026")).await,
        422,
    )
    .await;

    // 50,001 data rows: 413 before anything is written.
    let mut big = String::from("Firma;PLZ\n");
    for i in 0..50_001 {
        big.push_str(&format!("Firma {i};{:05}\n", i % 99_999));
    }
    problem(app.import(&rep, "", big.clone(), None).await, 413).await;
    problem(app.import(&rep, "?dryRun=true", big, None).await, 413).await;
    // No company column, a JSON body, a bad mapping, an unknown charset, a viewer.
    problem(app.import(&rep, "", "Name2;PLZ\nx;1\n", None).await, 422).await;
    let r = app
        .req(Method::POST, "/api/leads/imports", &rep)
        .json(&json!({"companyName": "x"}))
        .send()
        .await
        .unwrap();
    problem(r, 415).await;
    problem(
        app.import(&rep, "?mapping=Kunde%3Anope", UTF8_BOM, None)
            .await,
        400,
    )
    .await;
    let r = app
        .req(Method::POST, "/api/leads/imports", &rep)
        .header("content-type", "text/csv; charset=klingon")
        .body(UTF8_BOM)
        .send()
        .await
        .unwrap();
    problem(r, 415).await;
    let viewer = token("viewer-1", &["viewer"], &["DE"]);
    problem(app.import(&viewer, "", UTF8_BOM, None).await, 403).await;
    // An explicit mapping makes an unknown title a field.
    let r = app
        .import(
            &rep,
            "?dryRun=true&mapping=Kunde%3AcompanyName",
            "Kunde;PLZ\nGasthaus Linde;12345\n",
            None,
        )
        .await;
    assert_eq!(r.status(), 200);
    let dry: Value = r.json().await.unwrap();
    assert_eq!(dry["created"], 1, "{dry:#}");
    assert_eq!(
        app.row_counts().await,
        after_first,
        "none of these wrote anything"
    );
}

/// A file of `rows` distinct leads (`;`, Windows-1252-free ASCII).
fn numbered_file(rows: usize) -> String {
    let mut s = String::from("Firma;E-Mail;PLZ;Ort\n");
    for i in 0..rows {
        s.push_str(&format!(
            "Betrieb {i:05};kontakt{i}@betrieb.de;{:05};Berlin\n",
            10_000 + i
        ));
    }
    s
}

/// `GET /api/leads/imports/{id}` on a `freshplan serve` process.
#[cfg(unix)]
async fn import_state(
    client: &reqwest::Client,
    server: &crate::process::Serve,
    id: &str,
    tok: &str,
) -> Value {
    client
        .get(format!("http://{}/api/leads/imports/{id}", server.addr))
        .bearer_auth(tok)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[cfg(unix)]
#[actix_web::test]
async fn a_replica_killed_mid_import_loses_nothing_and_doubles_nothing() {
    use crate::process::Serve;
    const ROWS: usize = 6_000;
    let database_url = fresh_database().await;
    let env = [("FRESHPLAN_IMPORT_LEASE", "2s")];
    let mut a = Serve::spawn(&database_url, &env);
    a.wait_ready().await;
    let client = reqwest::Client::new();
    let rep = rep_token("rep-kill");
    let r = client
        .post(format!("http://{}/api/leads/imports", a.addr))
        .bearer_auth(&rep)
        .header("content-type", "text/csv")
        .body(numbered_file(ROWS))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202, "{}", a.log());
    let id = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // Kill A once some batches are committed and before the last.
    let started = Instant::now();
    let killed_at = loop {
        let v = import_state(&client, &a, &id, &rep).await;
        let processed = v["processed"].as_u64().unwrap();
        assert_eq!(v["state"], "RUNNING", "finished before the kill: {v}");
        if processed >= 500 {
            a.child.kill().unwrap();
            a.child.wait().unwrap();
            break processed;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "{}", a.log());
        actix_web::rt::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(killed_at < ROWS as u64);
    // B starts and takes the import over once A's lease has expired.
    let mut b = Serve::spawn(&database_url, &env);
    b.wait_ready().await;
    let started = Instant::now();
    let done = loop {
        let v = import_state(&client, &b, &id, &rep).await;
        if v["state"] != "RUNNING" {
            break v;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "{v}\n{}",
            b.log()
        );
        actix_web::rt::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(done["state"], "SUCCEEDED", "{done}");
    assert_eq!(done["created"], ROWS, "{done}");
    assert_eq!(done["refused"], 0);
    assert_eq!(done["duplicates"], 0, "no row was applied twice: {done}");
    // Exactly one lead per row, one row record per line, one event per lead.
    let (leads, _, _) = freshplan_store_postgres::testing::row_counts(&database_url)
        .await
        .unwrap();
    assert_eq!(leads, ROWS as i64);
    let page: Value = client
        .get(format!(
            "http://{}/api/leads/imports/{id}/rows?size=1",
            b.addr
        ))
        .bearer_auth(&rep)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(page["total"], ROWS);
    let mut after = String::new();
    let mut created_events = 0;
    loop {
        let v: Value = client
            .get(format!(
                "http://{}/api/events?limit=1000&type=lead.created.v1{after}",
                b.addr
            ))
            .bearer_auth(admin())
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let n = v["events"].as_array().unwrap().len();
        created_events += n;
        if n == 0 {
            break;
        }
        after = format!("&after={}", v["nextCursor"].as_str().unwrap());
    }
    assert_eq!(created_events, ROWS);
    assert!(
        b.log().contains("resuming an import"),
        "B took the import over:\n{}",
        b.log()
    );
}
