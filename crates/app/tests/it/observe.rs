//! `/metrics` (SPEC §10) and the `/cockpit` page's assets (SPEC §8) over real HTTP.

use reqwest::Method;

use crate::helpers::{admin, lead, spawn_app, spawn_app_with};

#[actix_web::test]
async fn metrics_count_requests_by_route_pattern_without_a_token() {
    let app = spawn_app().await;
    let created = app.create_ok(&admin(), lead("Gasthaus Metrik")).await;
    let id = created["id"].as_str().unwrap();
    for _ in 0..3 {
        let r = app.get(&admin(), &format!("/api/leads/{id}")).await;
        assert_eq!(r.status(), 200);
    }
    assert_eq!(app.get(&admin(), "/no/such/route").await.status(), 404);

    let r = app
        .client
        .get(format!("{}/metrics", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    let text = r.text().await.unwrap();
    assert!(
        text.contains(
            r#"http_requests_total{method="GET",route="/api/leads/{id}",status="200"} 3"#
        ),
        "{text}"
    );
    assert!(
        text.contains(r#"http_requests_total{method="POST",route="/api/leads",status="201"} 1"#)
    );
    assert!(text.contains(r#"route="unmatched",status="404"} 1"#));
    assert!(
        !text.contains(id),
        "no lead id may appear in a label (bounded labels)"
    );
    assert!(text.contains("http_request_duration_seconds_bucket{method=\"GET\",route=\"/api/leads/{id}\",le=\"0.005\"}"));
}

#[actix_web::test]
async fn metrics_can_be_switched_off() {
    let app = spawn_app_with(|c| c.metrics = false).await.unwrap();
    let r = app
        .client
        .get(format!("{}/metrics", app.base))
        .send()
        .await
        .unwrap();
    crate::helpers::problem(r, 404).await;
    assert_eq!(app.get(&admin(), "/api/leads").await.status(), 200);
}

#[actix_web::test]
async fn the_cockpit_page_and_its_assets_are_served_with_a_strict_policy() {
    let app = spawn_app().await;
    for (path, content_type, marker) in [
        ("/cockpit", "text/html", "T+3 ausstehend"),
        ("/cockpit/cockpit.js", "text/javascript", "followup-stream"),
        ("/cockpit/cockpit.css", "text/css", ".tile"),
    ] {
        let r = app
            .client
            .request(Method::GET, format!("{}{path}", app.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{path}");
        assert!(
            r.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with(content_type)
        );
        let csp = r.headers()["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"));
        assert!(r.text().await.unwrap().contains(marker), "{path}");
    }
}
