//! Bad input never yields a 5xx, always a problem document, and changes nothing.

use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, TestRunner};
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::*;

#[actix_web::test]
async fn bad_input_gets_a_4xx_problem_and_changes_nothing() {
    let app = spawn_app().await;
    let r1 = rep("rep-1");
    let l = app.create_ok(&r1, lead("Alpha")).await;
    let id = l["id"].as_str().unwrap().to_owned();
    let before = app.row_counts().await;
    let cases: Vec<(Method, String, String, u16)> = vec![
        (Method::POST, "/api/leads".into(), "{not json".into(), 400),
        (Method::POST, "/api/leads".into(), "[]".into(), 400),
        (
            Method::POST,
            "/api/leads".into(),
            r#"{"companyName": 5}"#.into(),
            400,
        ),
        (
            Method::POST,
            "/api/leads".into(),
            r#"{"companyName": "X", "bogus": 1}"#.into(),
            400,
        ),
        (
            Method::POST,
            "/api/leads".into(),
            r#"{"city": "X"}"#.into(),
            422,
        ),
        (
            Method::POST,
            "/api/leads".into(),
            format!(r#"{{"companyName": "{}"}}"#, "x".repeat(256)),
            422,
        ),
        (
            Method::POST,
            "/api/leads".into(),
            r#"{"companyName": "X", "employeeCount": -1}"#.into(),
            422,
        ),
        (
            Method::POST,
            "/api/leads".into(),
            r#"{"companyName": "X", "estimatedVolume": -0.5}"#.into(),
            422,
        ),
        (
            Method::POST,
            "/api/leads".into(),
            r#"{"companyName": "X", "businessType": "BAR"}"#.into(),
            422,
        ),
        (
            Method::POST,
            "/api/leads".into(),
            r#"{"companyName": "X", "countryCode": "XX"}"#.into(),
            422,
        ),
        (
            Method::POST,
            "/api/leads".into(),
            r#"{"companyName": "X", "email": "not-an-email"}"#.into(),
            422,
        ),
        (
            Method::POST,
            "/api/leads".into(),
            r#"{"companyName": "X'); drop table leads; --", "email": "a@b.de' or 1=1"}"#.into(),
            422,
        ),
        (
            Method::POST,
            "/api/leads".into(),
            format!(r#"{{"companyName": "{}"}}"#, "x".repeat(70 * 1024)),
            413,
        ),
        (
            Method::GET,
            "/api/leads/not-a-uuid".into(),
            String::new(),
            400,
        ),
        (
            Method::GET,
            "/api/leads?size=201".into(),
            String::new(),
            400,
        ),
        (
            Method::PATCH,
            format!("/api/leads/{id}"),
            r#"{"city": "X"}"#.into(),
            428,
        ),
        (
            Method::POST,
            format!("/api/leads/{id}/activities"),
            r#"{"type": "CALL", "occurredAt": "yesterday"}"#.into(),
            422,
        ),
    ];
    for (method, path, body, want) in cases {
        let r = app
            .req(method.clone(), &path, &r1)
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        assert_eq!(
            status,
            want,
            "{method} {path} {}",
            &body[..body.len().min(80)]
        );
        assert_eq!(
            r.headers()["content-type"],
            "application/problem+json",
            "{method} {path}"
        );
    }
    // If-Match present but body bad: 400/422 and still nothing changed
    let r = app
        .req(Method::PATCH, &format!("/api/leads/{id}"), &r1)
        .header("If-Match", "*")
        .json(&json!({"status": "FLYING"}))
        .send()
        .await
        .unwrap();
    problem(r, 422).await;
    assert_eq!(app.row_counts().await, before);
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| json!(f)),
        "\\PC{0,40}".prop_map(Value::String),
        prop_oneof![
            Just("DE"),
            Just("CH"),
            Just("HOTEL"),
            Just("ACTIVE"),
            Just("CONVERTED"),
            Just("x@y.de"),
            Just("%_'\";--")
        ]
        .prop_map(|s| json!(s)),
    ];
    leaf.prop_recursive(2, 8, 4, |inner| {
        proptest::collection::vec(inner, 0..3).prop_map(Value::Array)
    })
}

fn body() -> impl Strategy<Value = Value> {
    let keys = prop_oneof![
        Just("companyName"),
        Just("countryCode"),
        Just("email"),
        Just("status"),
        Just("employeeCount"),
        Just("estimatedVolume"),
        Just("businessType"),
        Just("ownerUserId"),
        Just("collaboratorUserIds"),
        Just("registeredAt"),
        Just("unknown"),
        Just("type"),
        Just("reason")
    ];
    proptest::collection::btree_map(keys, json_value(), 0..5)
        .prop_map(|m| Value::Object(m.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()))
}

#[actix_web::test]
async fn generated_requests_never_5xx() {
    let app = spawn_app().await;
    let r1 = rep("rep-1");
    let l = app.create_ok(&r1, lead("Alpha")).await;
    let id = l["id"].as_str().unwrap().to_owned();
    let mut runner = TestRunner::new(Config {
        cases: 150,
        ..Config::default()
    });
    let strategy = (
        0usize..6,
        body(),
        prop_oneof![
            Just(id.clone()),
            Just("nope".to_owned()),
            Just("00000000-0000-0000-0000-000000000000".to_owned()),
            "[a-z0-9%]{0,12}"
        ],
    );
    let mut cases = Vec::new();
    for _ in 0..150 {
        cases.push(strategy.new_tree(&mut runner).unwrap().current());
    }
    for (route, body, target) in cases {
        let before = app.row_counts().await;
        let (method, path) = match route {
            0 => (Method::POST, "/api/leads".to_owned()),
            1 => (Method::PATCH, format!("/api/leads/{target}")),
            2 => (Method::POST, format!("/api/leads/{target}/activities")),
            3 => (Method::PUT, format!("/api/leads/{target}/owner")),
            4 => (Method::POST, format!("/api/leads/{target}/clock/stop")),
            _ => (Method::GET, format!("/api/leads?q={target}&sort={target}")),
        };
        let r = app
            .req(method.clone(), &path, &r1)
            .header("If-Match", "\"stale-0\"")
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        assert!(status < 500, "{method} {path} {body} → {status}");
        if status >= 400 {
            assert_eq!(
                r.headers()["content-type"],
                "application/problem+json",
                "{method} {path} {body}"
            );
            assert_eq!(
                app.row_counts().await,
                before,
                "rejected {method} {path} {body} changed rows"
            );
        }
    }
}
