//! A database outage as the service sees it (issue 13): every connection cut and new ones
//! refused, through a TCP proxy in front of PostgreSQL. Requests fail fast with a 503 problem that
//! says to retry, change nothing, and the same replica serves again once the database is back —
//! without a restart.

use std::time::{Duration, Instant};

use reqwest::Method;

use crate::helpers::{lead, problem, rep};

#[actix_web::test]
async fn a_database_outage_answers_503_fast_and_the_replica_recovers_without_a_restart() {
    let (proxy, app) = crate::pg_proxy::app_behind_proxy().await;
    let tok = rep("rep-1");
    let created = app.create_ok(&tok, lead("Gasthaus Vorher")).await;
    let path = format!("/api/leads/{}", created["id"].as_str().unwrap());
    let before = app.row_counts().await;

    proxy.outage(true);
    // A read and a write: each a 503 problem within the pool's acquire timeout (3 s) and a
    // margin, with `Retry-After`; the write changed nothing.
    for (what, request) in [
        ("a read", app.req(Method::GET, &path, &tok)),
        (
            "a create",
            app.req(Method::POST, "/api/leads", &tok)
                .json(&lead("Gasthaus Waehrenddessen")),
        ),
    ] {
        let started = Instant::now();
        let r = request.send().await.unwrap();
        let took = started.elapsed();
        assert!(took < Duration::from_secs(5), "{what} took {took:?}");
        assert_eq!(r.headers()["retry-after"], "2", "{what}");
        let p = problem(r, 503).await;
        assert_eq!(
            p["type"], "https://freshplan.example/problems/database-unavailable",
            "{what}: {p}"
        );
    }
    let r = app
        .client
        .get(format!("{}/health/ready", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(app.row_counts().await, before, "nothing was written");

    // Back: the same replica answers again within seconds, nothing restarted.
    proxy.outage(false);
    let back = Instant::now();
    loop {
        let r = app.get(&tok, &path).await;
        if r.status() == 200 {
            break;
        }
        assert!(
            back.elapsed() < Duration::from_secs(10),
            "still {} after the database came back",
            r.status()
        );
        actix_web::rt::time::sleep(Duration::from_millis(100)).await;
    }
    let again = app.create_ok(&tok, lead("Gasthaus Waehrenddessen")).await;
    assert_eq!(again["companyName"], "Gasthaus Waehrenddessen");
}
