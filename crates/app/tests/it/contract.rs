//! The HTTP contract's edges that the OpenAPI document states (ADR 0011): 405 with `Allow` for a
//! method a path does not serve, integers as JSON Schema means them, `If-Match` and
//! `Idempotency-Key` read exactly as their documented patterns, and every error a problem.

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::*;

#[actix_web::test]
async fn an_undeclared_method_is_405_with_allow_and_an_unknown_path_404() {
    let app = spawn_app().await;
    let id = "0190c2a4-0000-7000-8000-000000000000";
    for (method, path, allow) in [
        ("TRACE", format!("/api/leads/{id}"), "DELETE, GET, PATCH"),
        ("PUT", "/api/leads".to_owned(), "GET, POST"),
        ("DELETE", "/api/territories".to_owned(), "GET"),
        ("GET", format!("/api/leads/{id}/clock/stop"), "POST"),
        ("POST", "/api/openapi.json".to_owned(), "GET"),
    ] {
        let r = app
            .req(
                Method::from_bytes(method.as_bytes()).unwrap(),
                &path,
                &admin(),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(r.headers()["allow"], allow, "{method} {path}");
        let p = problem(r, 405).await;
        assert!(p["detail"].as_str().unwrap().contains(allow), "{p}");
    }
    let r = app.get(&admin(), "/api/nothing-here").await;
    assert!(r.headers().get("allow").is_none());
    problem(r, 404).await;
}

#[actix_web::test]
async fn an_integral_float_is_an_integer_and_a_fraction_is_not() {
    let app = spawn_app().await;
    let created = app
        .create_ok(
            &admin(),
            json!({"companyName": "Kantine 119", "employeeCount": 119.0}),
        )
        .await;
    assert_eq!(created["employeeCount"], 119);
    let r = app
        .create(
            &admin(),
            json!({"companyName": "Kantine 119.5", "employeeCount": 119.5}),
        )
        .await;
    let p = problem(r, 400).await;
    assert_eq!(p["errors"][0]["field"], "employeeCount");
    let r = app
        .create(
            &admin(),
            json!({"companyName": "Kantine -1", "employeeCount": -1.0}),
        )
        .await;
    let p = problem(r, 422).await;
    assert_eq!(p["errors"][0]["field"], "employeeCount");
}

#[actix_web::test]
async fn a_malformed_if_match_is_400_a_stale_one_412_and_nothing_changes() {
    let app = spawn_app().await;
    let lead = app.create_ok(&admin(), lead("Gasthaus If-Match")).await;
    let id = lead["id"].as_str().unwrap();
    let path = format!("/api/leads/{id}");
    let current = format!("{}-{}", id.replace('-', ""), lead["version"]);
    // If-Match compares strongly: the weak form of the current tag does not match.
    let weak = format!("W/\"{current}\"");
    for (header, status) in [
        (weak.as_str(), 412),
        ("{}", 400),
        ("abc", 400),
        ("null", 400),
        ("\"0190c2a400007000800000000000000-1\"", 412),
        ("W/\"x\", \"y\"", 412),
    ] {
        let r = app
            .req(Method::PATCH, &path, &admin())
            .header("If-Match", header)
            .json(&json!({"city": "Hamburg"}))
            .send()
            .await
            .unwrap();
        let p = problem(r, status).await;
        if status == 400 {
            assert_eq!(p["errors"][0]["field"], "If-Match", "{header:?}: {p}");
        }
        let r = app
            .req(Method::POST, &format!("{path}/clock/resume"), &admin())
            .header("If-Match", header)
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.status().as_u16(),
            status,
            "resume with If-Match {header:?}"
        );
    }
    // An empty If-Match is an empty list: no precondition, so PATCH still needs one (428).
    let r = app
        .req(Method::PATCH, &path, &admin())
        .header("If-Match", "")
        .json(&json!({"city": "Hamburg"}))
        .send()
        .await
        .unwrap();
    problem(r, 428).await;
    let now: Value = app.get(&admin(), &path).await.json().await.unwrap();
    assert_eq!(now["version"], lead["version"]);
    assert_eq!(now["city"], "Berlin");
}

#[actix_web::test]
async fn an_idempotency_key_is_visible_ascii_as_documented() {
    let app = spawn_app().await;
    for bad in ["with space", "tab\there", "ä"] {
        let r = app
            .req(Method::POST, "/api/leads", &admin())
            .header("Idempotency-Key", bad.as_bytes())
            .json(&lead("Idempotent Inn"))
            .send()
            .await
            .unwrap();
        let p = problem(r, 400).await;
        assert_eq!(p["errors"][0]["field"], "Idempotency-Key", "{bad:?}");
    }
    assert_eq!(app.row_counts().await.0, 0, "nothing was created");
    let r = app
        .req(Method::POST, "/api/leads", &admin())
        .header("Idempotency-Key", "import-2026-12-06/42")
        .json(&lead("Idempotent Inn"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
}

#[actix_web::test]
async fn the_document_links_a_created_lead_to_its_operations() {
    let app = spawn_app().await;
    let doc: Value = app
        .get(&admin(), "/api/openapi.json")
        .await
        .json()
        .await
        .unwrap();
    let links = &doc["paths"]["/api/leads"]["post"]["responses"]["201"]["links"];
    let mut operation_ids = std::collections::BTreeSet::new();
    for item in doc["paths"].as_object().unwrap().values() {
        for operation in item.as_object().unwrap().values() {
            if let Some(id) = operation["operationId"].as_str() {
                assert!(
                    operation_ids.insert(id.to_owned()),
                    "operationId {id} twice"
                );
            }
        }
    }
    for (name, link) in links.as_object().unwrap() {
        let target = link["operationId"].as_str().unwrap_or_default();
        assert!(operation_ids.contains(target), "link {name} → {target}");
        assert_eq!(link["parameters"]["id"], "$response.body#/id");
    }
    assert_eq!(
        links["PatchLeadById"]["parameters"]["header.If-Match"],
        "$response.header.ETag"
    );
    // Every error response of every operation is a problem.
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            for (status, response) in operation["responses"].as_object().unwrap() {
                if status.as_str() >= "400" && response.get("$ref").is_none() {
                    let content = response["content"].as_object();
                    let content = content.unwrap_or_else(|| panic!("{method} {path} {status}"));
                    assert!(
                        content.contains_key("application/problem+json")
                            && !content.contains_key("application/json"),
                        "{method} {path} {status}"
                    );
                }
            }
        }
    }
}

#[actix_web::test]
async fn text_is_checked_as_sent_before_the_domain_trims_it() {
    let app = spawn_app().await;
    let lead = app.create_ok(&admin(), lead("Gasthaus Roh")).await;
    let id = lead["id"].as_str().unwrap();
    // 2,001 characters sent, 2,000 after trimming: longer than the documented maxLength.
    let long = format!(" {}", "x".repeat(2000));
    let r = app
        .req(
            Method::POST,
            &format!("/api/leads/{id}/activities"),
            &admin(),
        )
        .json(&json!({"type": "NOTE", "description": long}))
        .send()
        .await
        .unwrap();
    let p = problem(r, 422).await;
    assert_eq!(p["errors"][0]["field"], "description");
    // A control character that trimming would remove is still refused (the pattern says so).
    for body in [
        json!({"companyName": "Gasthaus\u{0085}"}),
        json!({"companyName": "Gasthaus Vier", "city": "\u{000B}Berlin"}),
    ] {
        let p = problem(app.create(&admin(), body).await, 422).await;
        assert!(p["errors"][0]["field"].is_string(), "{p}");
    }
    let r = app.get(&admin(), "/api/leads?ownerUserId=%0Banna").await;
    problem(r, 400).await;
    assert_eq!(app.row_counts().await.0, 1, "only the first lead exists");
}
