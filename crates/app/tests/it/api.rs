use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::*;

#[actix_web::test]
async fn authentication_is_required_and_strict() {
    let app = spawn_app().await;
    let r = app
        .client
        .get(format!("{}/api/leads", app.base))
        .send()
        .await
        .unwrap();
    problem(r, 401).await;
    problem(app.get("garbage", "/api/leads").await, 401).await;
    // alg: none
    let none = format!(
        "{}.{}.",
        base64url(r#"{"alg":"none","typ":"JWT"}"#),
        base64url(r#"{"sub":"x","roles":["admin"],"exp":9999999999}"#)
    );
    problem(app.get(&none, "/api/leads").await, 401).await;
    // wrong secret
    let forged = freshplan_app::auth::mint_hs256(
        "another-secret-another-secret-12345",
        "x",
        &["admin"],
        &[],
        60,
    )
    .unwrap();
    problem(app.get(&forged, "/api/leads").await, 401).await;
    // expired
    let expired = freshplan_app::auth::mint_hs256(SECRET, "x", &["admin"], &[], -3600).unwrap();
    problem(app.get(&expired, "/api/leads").await, 401).await;
    // health and openapi need no token
    assert_eq!(
        app.client
            .get(format!("{}/health/ready", app.base))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        app.client
            .get(format!("{}/health/live", app.base))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

fn base64url(s: &str) -> String {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let b = s.as_bytes();
    let mut out = String::new();
    for chunk in b.chunks(3) {
        let n = (u32::from(chunk[0]) << 16)
            | (u32::from(*chunk.get(1).unwrap_or(&0)) << 8)
            | u32::from(*chunk.get(2).unwrap_or(&0));
        for i in 0..=chunk.len() {
            out.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

#[actix_web::test]
async fn territories_are_readable_and_unknown_is_404() {
    let app = spawn_app().await;
    let all: Value = app
        .get(&rep("r1"), "/api/territories")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(all[0]["id"], "DE");
    assert_eq!(all[1]["vatRate"], 8.1);
    assert_eq!(all[1]["currencyCode"], "CHF");
    let de: Value = app
        .get(&rep("r1"), "/api/territories/DE")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(de["vatRate"], 19.0);
    assert_eq!(de["paymentTermsDays"], 30);
    problem(app.get(&rep("r1"), "/api/territories/AT").await, 404).await;
}

#[actix_web::test]
async fn create_get_patch_delete_with_etags() {
    let app = spawn_app().await;
    let r1 = rep("rep-1");
    let r = app.create(&r1, json!({"companyName": "Gasthaus Zur Post GmbH", "countryCode": "de", "email": "Info@Post.de", "emailConsent": true, "estimatedVolume": 1234.5, "businessType": "RESTAURANT"})).await;
    assert_eq!(r.status(), 201);
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    let etag = r.headers()["etag"].to_str().unwrap().to_owned();
    let lead: Value = r.json().await.unwrap();
    assert_eq!(
        location,
        format!("/api/leads/{}", lead["id"].as_str().unwrap())
    );
    assert_eq!(lead["status"], "REGISTERED");
    assert_eq!(lead["ownerUserId"], "rep-1");
    assert_eq!(lead["countryCode"], "DE");
    assert_eq!(lead["territory"]["currencyCode"], "EUR");
    assert_eq!(lead["estimatedVolume"], 1234.5);
    assert!(lead["emailConsentAt"].is_string());
    assert!(lead["protection"]["protectedUntil"].is_string());

    // GET with If-None-Match → 304
    let r = app
        .req(Method::GET, &location, &r1)
        .header("If-None-Match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 304);

    // PATCH needs If-Match
    let r = app
        .req(Method::PATCH, &location, &r1)
        .json(&json!({"city": "Köln"}))
        .send()
        .await
        .unwrap();
    problem(r, 428).await;
    let r = app
        .req(Method::PATCH, &location, &r1)
        .header("If-Match", &etag)
        .header("content-type", "application/merge-patch+json")
        .body(r#"{"city":"Köln","phone":null}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let etag2 = r.headers()["etag"].to_str().unwrap().to_owned();
    assert_ne!(etag, etag2);
    let patched: Value = r.json().await.unwrap();
    assert_eq!(patched["city"], "Köln");
    assert_eq!(patched["version"], 2);
    // the returned ETag is the fresh one: GET agrees
    let r = app.get(&r1, &location).await;
    assert_eq!(r.headers()["etag"].to_str().unwrap(), etag2);
    // stale → 412
    let r = app
        .req(Method::PATCH, &location, &r1)
        .header("If-Match", &etag)
        .json(&json!({"city": "Bonn"}))
        .send()
        .await
        .unwrap();
    problem(r, 412).await;
    // clear with null
    let r = app
        .req(Method::PATCH, &location, &r1)
        .header("If-Match", &etag2)
        .json(&json!({"city": null}))
        .send()
        .await
        .unwrap();
    let cleared: Value = r.json().await.unwrap();
    assert!(cleared["city"].is_null());
    let etag3 = lead_etag(&cleared);

    // DELETE: 428 without, 204 with; then 404, gone from lists
    problem(
        app.req(Method::DELETE, &location, &r1)
            .send()
            .await
            .unwrap(),
        428,
    )
    .await;
    let r = app
        .req(Method::DELETE, &location, &r1)
        .header("If-Match", &etag3)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    problem(app.get(&r1, &location).await, 404).await;
    let list: Value = app.get(&r1, "/api/leads").await.json().await.unwrap();
    assert_eq!(list["total"], 0);
    let list: Value = app
        .get(&admin(), "/api/leads?includeDeleted=true")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list["total"], 1);
    // a deleted lead no longer blocks its duplicate
    app.create_ok(
        &r1,
        json!({"companyName": "Gasthaus Zur Post", "email": "info@post.de"}),
    )
    .await;
}

fn lead_etag(lead: &Value) -> String {
    format!(
        "\"{}-{}\"",
        lead["id"].as_str().unwrap().replace('-', ""),
        lead["version"]
    )
}

#[actix_web::test]
async fn visibility_follows_roles_and_territories() {
    let app = spawn_app().await;
    let mine = app.create_ok(&rep("rep-1"), lead("Alpha")).await;
    app.create_ok(&rep("rep-2"), lead("Beta")).await;
    let ch = app
        .create_ok(
            &manager_ch(),
            json!({"companyName": "Beizli", "countryCode": "CH"}),
        )
        .await;
    let path = format!("/api/leads/{}", mine["id"].as_str().unwrap());
    // other rep: 404, not 403
    problem(app.get(&rep("rep-2"), &path).await, 404).await;
    // DE manager sees both DE leads, not the CH one
    let list: Value = app
        .get(&manager_de(), "/api/leads")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list["total"], 2);
    problem(
        app.get(
            &manager_de(),
            &format!("/api/leads/{}", ch["id"].as_str().unwrap()),
        )
        .await,
        404,
    )
    .await;
    // a rep's list has only own leads
    let list: Value = app
        .get(&rep("rep-1"), "/api/leads")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list["total"], 1);
    // admin sees all three
    let list: Value = app.get(&admin(), "/api/leads").await.json().await.unwrap();
    assert_eq!(list["total"], 3);
    // viewer reads, cannot write (403)
    let viewer = token("v", &["viewer"], &["DE"]);
    assert_eq!(app.get(&viewer, &path).await.status(), 200);
    problem(
        app.req(Method::PATCH, &path, &viewer)
            .header("If-Match", lead_etag(&mine))
            .json(&json!({"city": "X"}))
            .send()
            .await
            .unwrap(),
        403,
    )
    .await;
    // a rep cannot create in CH; a role without territories creates nothing
    problem(
        app.create(
            &rep("rep-1"),
            json!({"companyName": "Z", "countryCode": "CH"}),
        )
        .await,
        403,
    )
    .await;
    problem(
        app.create(&token("n", &["sales"], &[]), lead("Nothing"))
            .await,
        403,
    )
    .await;
    // service role cannot read leads
    problem(
        app.get(&token("svc", &["service"], &["DE"]), "/api/leads")
            .await,
        403,
    )
    .await;
}

#[actix_web::test]
async fn duplicates_are_409_and_name_only_visible_leads() {
    let app = spawn_app().await;
    app.create_ok(
        &rep("rep-1"),
        json!({"companyName": "Hotel Adler GmbH", "postalCode": "80331", "email": "info@adler.de"}),
    )
    .await;
    let p = problem(
        app.create(
            &rep("rep-2"),
            json!({"companyName": "hotel  adler", "postalCode": "80331"}),
        )
        .await,
        409,
    )
    .await;
    assert!(p.get("existingLeadId").is_none());
    let p = problem(
        app.create(
            &manager_de(),
            json!({"companyName": "Other", "email": "INFO@adler.de"}),
        )
        .await,
        409,
    )
    .await;
    assert!(p["existingLeadId"].is_string());
    assert_eq!(p["duplicateOn"], "EMAIL");
    assert_eq!(app.row_counts().await.0, 1);
}

#[actix_web::test]
async fn idempotency_key_replays_the_first_response() {
    let app = spawn_app().await;
    let r1 = rep("rep-1");
    let send = |body: Value| {
        app.req(Method::POST, "/api/leads", &r1)
            .header("Idempotency-Key", "abc-1")
            .json(&body)
            .send()
    };
    let a: Value = send(lead("Alpha")).await.unwrap().json().await.unwrap();
    let r = send(lead("Alpha")).await.unwrap();
    assert_eq!(r.status(), 201);
    let b: Value = r.json().await.unwrap();
    assert_eq!(a["id"], b["id"]);
    problem(send(lead("Beta")).await.unwrap(), 422).await;
    assert_eq!(app.row_counts().await.0, 1);
}

#[actix_web::test]
async fn list_paging_sorting_filters_and_etags() {
    let app = spawn_app().await;
    let m = manager_de();
    for (i, name) in [
        "Delta",
        "alpha",
        "Charlie",
        "bravo",
        "Echo 100%",
        "Fox_trot",
    ]
    .iter()
    .enumerate()
    {
        let mut body = lead(name);
        body["postalCode"] = json!(format!("1000{i}"));
        body["businessType"] = json!(if i % 2 == 0 { "HOTEL" } else { "RESTAURANT" });
        app.create_ok(&m, body).await;
    }
    let r = app
        .get(&m, "/api/leads?sort=companyName,asc&size=2&page=0")
        .await;
    let etag0 = r.headers()["etag"].to_str().unwrap().to_owned();
    assert!(etag0.starts_with("W/"));
    let p0: Value = r.json().await.unwrap();
    assert_eq!(p0["total"], 6);
    assert_eq!(p0["totalPages"], 3);
    let names: Vec<&str> = p0["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["companyName"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["alpha", "bravo"]);
    let r = app
        .get(&m, "/api/leads?sort=companyName,asc&size=2&page=1")
        .await;
    assert_ne!(r.headers()["etag"].to_str().unwrap(), etag0, "pages differ");
    let r = app
        .req(
            Method::GET,
            "/api/leads?sort=companyName,asc&size=2&page=0",
            &m,
        )
        .header("If-None-Match", &etag0)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 304);
    // filters
    let hotels: Value = app
        .get(&m, "/api/leads?businessType=HOTEL")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(hotels["total"], 3);
    let q: Value = app.get(&m, "/api/leads?q=%25").await.json().await.unwrap();
    assert_eq!(q["total"], 1, "% is literal");
    let q: Value = app.get(&m, "/api/leads?q=_").await.json().await.unwrap();
    assert_eq!(q["total"], 1, "_ is literal");
    let q: Value = app
        .get(&m, "/api/leads?q=ALPHA")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(q["total"], 1);
    // data change changes the ETag of the same page
    app.create_ok(&m, json!({"companyName": "aaa first"})).await;
    let r = app
        .get(&m, "/api/leads?sort=companyName,asc&size=2&page=0")
        .await;
    assert_ne!(r.headers()["etag"].to_str().unwrap(), etag0);
    for bad in [
        "size=201",
        "size=0",
        "page=x",
        "sort=nope,asc",
        "status=OPEN",
        "territory=XX",
        "foo=bar",
    ] {
        problem(app.get(&m, &format!("/api/leads?{bad}")).await, 400).await;
    }
}

#[actix_web::test]
async fn activities_status_owner_and_clock() {
    let app = spawn_app().await;
    let r1 = rep("rep-1");
    let l = app.create_ok(&r1, lead("Alpha")).await;
    let id = l["id"].as_str().unwrap();
    let r = app
        .req(Method::POST, &format!("/api/leads/{id}/activities"), &r1)
        .json(&json!({"type": "CALL", "description": "Erstkontakt"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let a: Value = r.json().await.unwrap();
    assert_eq!(a["meaningfulContact"], true);
    let after: Value = app
        .get(&r1, &format!("/api/leads/{id}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(after["status"], "ACTIVE");
    problem(
        app.req(Method::POST, &format!("/api/leads/{id}/activities"), &r1)
            .json(&json!({"type": "FOLLOWUP_SENT"}))
            .send()
            .await
            .unwrap(),
        422,
    )
    .await;
    let tl: Value = app
        .get(&r1, &format!("/api/leads/{id}/activities"))
        .await
        .json()
        .await
        .unwrap();
    let types: Vec<&str> = tl["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["type"].as_str().unwrap())
        .collect();
    assert!(
        types.contains(&"CALL") && types.contains(&"CREATED") && types.contains(&"STATUS_CHANGED"),
        "{types:?}"
    );
    // invalid transition → 422
    let cur: Value = app
        .get(&r1, &format!("/api/leads/{id}"))
        .await
        .json()
        .await
        .unwrap();
    let p = problem(
        app.req(Method::PATCH, &format!("/api/leads/{id}"), &r1)
            .header("If-Match", lead_etag(&cur))
            .json(&json!({"status": "CONVERTED"}))
            .send()
            .await
            .unwrap(),
        422,
    )
    .await;
    assert_eq!(p["errors"][0]["field"], "status");
    // owner: rep 403, manager 200
    problem(
        app.req(Method::PUT, &format!("/api/leads/{id}/owner"), &r1)
            .json(&json!({"ownerUserId": "rep-2"}))
            .send()
            .await
            .unwrap(),
        403,
    )
    .await;
    let r = app
        .req(
            Method::PUT,
            &format!("/api/leads/{id}/owner"),
            &manager_de(),
        )
        .json(&json!({"ownerUserId": "rep-2"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    problem(app.get(&r1, &format!("/api/leads/{id}")).await, 404).await;
    // clock
    let r = app
        .req(
            Method::POST,
            &format!("/api/leads/{id}/clock/stop"),
            &manager_de(),
        )
        .json(&json!({"reason": "Betriebsferien"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let stopped: Value = r.json().await.unwrap();
    assert!(stopped["protection"]["clockStoppedAt"].is_string());
    problem(
        app.req(
            Method::POST,
            &format!("/api/leads/{id}/clock/stop"),
            &manager_de(),
        )
        .json(&json!({"reason": "again"}))
        .send()
        .await
        .unwrap(),
        409,
    )
    .await;
    let r = app
        .req(
            Method::POST,
            &format!("/api/leads/{id}/clock/resume"),
            &manager_de(),
        )
        .header("If-Match", "\"00000000000000000000000000000000-1\"")
        .send()
        .await
        .unwrap();
    problem(r, 412).await;
    let r = app
        .req(
            Method::POST,
            &format!("/api/leads/{id}/clock/resume"),
            &manager_de(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[actix_web::test]
async fn openapi_documents_every_route() {
    let app = spawn_app().await;
    let doc: Value = app
        .client
        .get(format!("{}/api/openapi.json", app.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    let paths = doc["paths"].as_object().unwrap();
    for (method, path) in freshplan_app::routes::ROUTES {
        assert!(
            paths.get(*path).and_then(|p| p.get(*method)).is_some(),
            "{method} {path} missing from OpenAPI"
        );
        // and the route is served (anything but the default 404 for unknown paths)
        let concrete = path
            .replace("{id}", "00000000-0000-7000-8000-000000000000")
            .replace(
                "/territories/00000000-0000-7000-8000-000000000000",
                "/territories/DE",
            );
        let m = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
        let r = app
            .req(m, &concrete, &admin())
            .header("content-type", "application/json")
            .body("{}")
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        if r.headers()
            .get("content-type")
            .is_some_and(|v| v == "text/event-stream")
        {
            // An SSE stream is served (and would never end): do not read it.
            continue;
        }
        let body: Value = r.json().await.unwrap_or(Value::Null);
        assert!(
            !(status == 404 && body["detail"] == "No such resource."),
            "{method} {path} not routed"
        );
    }
    let documented: usize = paths.values().map(|p| p.as_object().unwrap().len()).sum();
    assert_eq!(
        documented,
        freshplan_app::routes::ROUTES.len(),
        "OpenAPI documents a route that is not in ROUTES"
    );
}
