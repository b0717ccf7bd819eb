//! Bad text input is never a 5xx (SPEC §9): a U+0000 (or another control character where the
//! field allows none) in a user id, an activity description, a stop reason, any query parameter,
//! the `Idempotency-Key` header or the unsubscribe token answers 400/422
//! `application/problem+json` and changes nothing.

use reqwest::header::HeaderValue;
use reqwest::{Method, Response};
use serde_json::{Value, json};

use crate::helpers::*;

/// A 400 or 422 problem (`application/problem+json`, RFC 9457 members); its body.
async fn refused(r: Response) -> Value {
    let status = r.status().as_u16();
    assert!(
        status == 400 || status == 422,
        "expected 400 or 422, got {status}: {:?}",
        r.text().await
    );
    problem(r, status).await
}

/// What a refused request must leave alone: the lead's version and its timeline's length.
async fn snapshot(app: &TestApp, id: &str) -> (Value, Value) {
    let lead: Value = app
        .get(&admin(), &format!("/api/leads/{id}"))
        .await
        .json()
        .await
        .unwrap();
    let timeline: Value = app
        .get(&admin(), &format!("/api/leads/{id}/activities"))
        .await
        .json()
        .await
        .unwrap();
    assert!(lead["version"].is_i64() && timeline["total"].is_i64());
    (lead["version"].clone(), timeline["total"].clone())
}

fn if_match(lead: &str, version: &Value) -> String {
    format!("\"{}-{version}\"", lead.replace('-', ""))
}

#[actix_web::test]
async fn control_characters_in_user_ids_are_422_and_change_nothing() {
    let app = spawn_app().await;
    let r1 = rep("rep-1");
    let l = app.create_ok(&r1, lead("Alpha")).await;
    let id = l["id"].as_str().unwrap();
    let before = snapshot(&app, id).await;

    for bad in ["rep\u{0}2", "\u{0}", "rep\n2", "rep\u{7}2"] {
        // collaboratorUserIds in PATCH
        let p = refused(
            app.req(Method::PATCH, &format!("/api/leads/{id}"), &r1)
                .header("If-Match", if_match(id, &before.0))
                .json(&json!({"collaboratorUserIds": ["rep-2", bad]}))
                .send()
                .await
                .unwrap(),
        )
        .await;
        // A U+0000 anywhere in a body is 400 naming the element; other controls are the
        // domain's 422 on the field.
        let field = p["errors"][0]["field"].as_str().unwrap_or_default();
        assert!(field.starts_with("collaboratorUserIds"), "{p}");
        // ownerUserId in PATCH
        refused(
            app.req(Method::PATCH, &format!("/api/leads/{id}"), &manager_de())
                .header("If-Match", if_match(id, &before.0))
                .json(&json!({"ownerUserId": bad}))
                .send()
                .await
                .unwrap(),
        )
        .await;
        // PUT /owner
        let p = refused(
            app.req(
                Method::PUT,
                &format!("/api/leads/{id}/owner"),
                &manager_de(),
            )
            .json(&json!({"ownerUserId": bad}))
            .send()
            .await
            .unwrap(),
        )
        .await;
        assert_eq!(p["errors"][0]["field"], "ownerUserId", "{p}");
        assert_eq!(snapshot(&app, id).await, before, "{bad:?}");
    }
    // the ownerUserId filter parses a user id too (a control character other than U+0000)
    let p = refused(app.get(&admin(), "/api/leads?ownerUserId=rep%0A1").await).await;
    assert_eq!(p["errors"][0]["field"], "ownerUserId");
    // a good collaborator still works
    let r = app
        .req(Method::PATCH, &format!("/api/leads/{id}"), &r1)
        .header("If-Match", if_match(id, &before.0))
        .json(&json!({"collaboratorUserIds": ["rep-2"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[actix_web::test]
async fn reopening_an_expired_lead_for_a_nul_owner_is_422_and_changes_nothing() {
    let app = spawn_app_with(|c| {
        c.sweep_enabled = true;
        c.sweep_cron = "* * * * * *".into();
    })
    .await
    .unwrap();
    let registered = time::OffsetDateTime::now_utc() - time::Duration::days(400);
    let mut body = lead("Expired");
    body["registeredAt"] = json!(
        registered
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap()
    );
    let l = app.create_ok(&admin(), body).await;
    let id = l["id"].as_str().unwrap();
    let started = std::time::Instant::now();
    loop {
        let cur: Value = app
            .get(&admin(), &format!("/api/leads/{id}"))
            .await
            .json()
            .await
            .unwrap();
        if cur["status"] == "EXPIRED" {
            break;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(15),
            "not swept: {cur}"
        );
        actix_web::rt::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let before = snapshot(&app, id).await;
    let p = refused(
        app.req(Method::PATCH, &format!("/api/leads/{id}"), &manager_de())
            .header("If-Match", if_match(id, &before.0))
            .json(&json!({"status": "ACTIVE", "ownerUserId": "rep\u{0}9"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(p["errors"][0]["field"], "ownerUserId", "{p}");
    assert_eq!(snapshot(&app, id).await, before);
    // the same reopening with a proper owner works
    let r = app
        .req(Method::PATCH, &format!("/api/leads/{id}"), &manager_de())
        .header("If-Match", if_match(id, &before.0))
        .json(&json!({"status": "ACTIVE", "ownerUserId": "rep-9"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[actix_web::test]
async fn nul_in_a_description_or_a_stop_reason_is_422_and_changes_nothing() {
    let app = spawn_app().await;
    let r1 = rep("rep-1");
    let l = app.create_ok(&r1, lead("Alpha")).await;
    let id = l["id"].as_str().unwrap();
    let before = snapshot(&app, id).await;
    for bad in ["Anruf\u{0}", "\u{0}", "a\u{1b}[31mb"] {
        let p = refused(
            app.req(Method::POST, &format!("/api/leads/{id}/activities"), &r1)
                .json(&json!({"type": "CALL", "description": bad}))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(p["errors"][0]["field"], "description", "{p}");
        let p = refused(
            app.req(
                Method::POST,
                &format!("/api/leads/{id}/clock/stop"),
                &manager_de(),
            )
            .json(&json!({"reason": bad}))
            .send()
            .await
            .unwrap(),
        )
        .await;
        assert_eq!(p["errors"][0]["field"], "reason", "{p}");
    }
    assert_eq!(snapshot(&app, id).await, before);
    let after: Value = app
        .get(&r1, &format!("/api/leads/{id}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(after["status"], "REGISTERED");
    assert!(after["lastActivityAt"].is_null());
    assert!(after["protection"]["clockStoppedAt"].is_null());
    // line breaks and tabs are text, not control characters to refuse
    let r = app
        .req(Method::POST, &format!("/api/leads/{id}/activities"), &r1)
        .json(&json!({"type": "NOTE", "description": "Zeile 1\r\n\tZeile 2"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let r = app
        .req(
            Method::POST,
            &format!("/api/leads/{id}/clock/stop"),
            &manager_de(),
        )
        .json(&json!({"reason": "Betriebsferien\nbis 6. Januar"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[actix_web::test]
async fn nul_in_any_query_parameter_is_400() {
    let app = spawn_app().await;
    let r1 = rep("rep-1");
    let l = app.create_ok(&r1, lead("Alpha")).await;
    let id = l["id"].as_str().unwrap();
    let before = snapshot(&app, id).await;
    let cases: Vec<(String, String)> = [
        (r1.clone(), "/api/leads?q=Alp%00ha".to_owned()),
        (r1.clone(), "/api/leads?q=%00".to_owned()),
        (admin(), "/api/leads?ownerUserId=rep-1%00".to_owned()),
        (admin(), "/api/leads?ownerUserId=%00".to_owned()),
        (r1.clone(), "/api/leads?status=ACTIVE%00".to_owned()),
        (r1.clone(), "/api/leads?territory=DE%00".to_owned()),
        (r1.clone(), "/api/leads?businessType=HOTEL%00".to_owned()),
        (r1.clone(), "/api/leads?sort=city%00,asc".to_owned()),
        (r1.clone(), "/api/leads?page=0%00&size=20".to_owned()),
        (r1.clone(), "/api/leads?size=%00".to_owned()),
        (admin(), "/api/leads?includeDeleted=true%00".to_owned()),
        (r1.clone(), "/api/leads?q%00=x".to_owned()),
        (r1.clone(), format!("/api/leads/{id}/activities?page=%00")),
        (r1.clone(), format!("/api/leads/{id}/activities?size=1%00")),
        // a route that reads no query refuses it too
        (r1.clone(), format!("/api/leads/{id}?x=%00")),
        (admin(), "/api/events?after=%00".to_owned()),
        (admin(), "/api/events?type=lead.created.v1%00".to_owned()),
        (admin(), "/api/events?limit=1%00".to_owned()),
        (admin(), "/api/events/stream?after=0-0%00".to_owned()),
        (admin(), "/api/events/stream?type=%00".to_owned()),
        (
            admin(),
            "/api/dashboard/followup?territory=DE%00".to_owned(),
        ),
        (
            admin(),
            "/api/dashboard/followup-stream?territory=%00".to_owned(),
        ),
        (admin(), "/api/mails?status=SENT%00".to_owned()),
        (admin(), format!("/api/mails?leadId={id}%00")),
        (admin(), "/api/mails?after=%00".to_owned()),
        (admin(), "/api/mails?limit=%00".to_owned()),
        (admin(), "/api/followups/runs?limit=1%00".to_owned()),
        (manager_de(), "/api/followups/runs?limit=%00".to_owned()),
    ]
    .into_iter()
    .collect();
    for (tok, path) in cases {
        let r = app.get(&tok, &path).await;
        assert_eq!(r.status(), 400, "{path}");
        problem(r, 400).await;
    }
    // the unsubscribe link, its page (GET) and its one-click (POST): a problem for a JSON
    // client, the HTML page for a browser
    let unsubscribe = format!("{}/unsubscribe?token=a%00b", app.base);
    for method in [Method::GET, Method::POST] {
        let r = app
            .client
            .request(method.clone(), &unsubscribe)
            .header("Accept", "application/problem+json")
            .send()
            .await
            .unwrap();
        let p = problem(r, 400).await;
        assert_eq!(p["errors"][0]["field"], "token", "{method}");
        let r = app
            .client
            .request(method.clone(), &unsubscribe)
            .header("Accept", "text/html")
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body("List-Unsubscribe=One-Click")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{method}");
        assert!(
            r.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/html")
        );
    }
    assert_eq!(snapshot(&app, id).await, before);
}

#[actix_web::test]
async fn a_bad_idempotency_key_is_400_and_creates_nothing() {
    let app = spawn_app().await;
    let r1 = rep("rep-1");
    let counts = app.row_counts().await;
    for key in [
        HeaderValue::from_bytes(b"key-\xff\xfe").unwrap(),
        HeaderValue::from_static("   "),
        HeaderValue::from_str(&"k".repeat(256)).unwrap(),
    ] {
        let r = app
            .req(Method::POST, "/api/leads", &r1)
            .header("Idempotency-Key", key)
            .json(&lead("Alpha"))
            .send()
            .await
            .unwrap();
        let p = problem(r, 400).await;
        assert_eq!(p["errors"][0]["field"], "Idempotency-Key");
    }
    // U+0000 cannot even be sent in a header: the HTTP parser refuses the request (400, before
    // the application sees it; no client library lets one through, so this writes the bytes).
    let body = serde_json::to_string(&lead("Alpha")).unwrap();
    let request = format!(
        "POST /api/leads HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {r1}\r\n\
         Content-Type: application/json\r\nIdempotency-Key: key\u{0}1\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let addr = app.base.trim_start_matches("http://").to_owned();
    let response = tokio::task::spawn_blocking(move || {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .unwrap();
        s.write_all(request.as_bytes()).unwrap();
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        String::from_utf8_lossy(&out).into_owned()
    })
    .await
    .unwrap();
    assert!(response.starts_with("HTTP/1.1 400"), "{response}");
    assert_eq!(app.row_counts().await, counts);
}
