//! Stop-the-clock over HTTP (SPEC §4.5): a meaningful contact logged while the clock is stopped is
//! recorded but moves nothing; the transition it would have made happens on resume, with its
//! timeline entry and event.

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::*;
use crate::sse_client::settled_feed;

async fn json_of(app: &TestApp, tok: &str, path: &str) -> Value {
    let r = app.get(tok, path).await;
    assert_eq!(r.status(), 200, "{path}");
    r.json().await.unwrap()
}

/// The `lead.status.changed.v1` events of `lead` in the feed, once the feed shows every committed
/// event.
async fn status_events(app: &TestApp, lead: &str) -> Vec<Value> {
    settled_feed(&app.client, &app.base, &admin(), &app.database_url)
        .await
        .into_iter()
        .filter(|e| e["type"] == "lead.status.changed.v1" && e["subject"] == lead)
        .collect()
}

#[actix_web::test]
async fn a_contact_while_the_clock_is_stopped_activates_the_lead_on_resume() {
    let app = spawn_app().await;
    let r1 = rep("rep-1");
    let l = app.create_ok(&r1, lead("Alpha")).await;
    let id = l["id"].as_str().unwrap();
    let path = format!("/api/leads/{id}");

    let r = app
        .req(Method::POST, &format!("{path}/clock/stop"), &manager_de())
        .json(&json!({"reason": "Betriebsferien"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    let r = app
        .req(Method::POST, &format!("{path}/activities"), &r1)
        .json(&json!({"type": "CALL", "description": "Erstkontakt"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let call: Value = r.json().await.unwrap();
    assert_eq!(call["meaningfulContact"], true);

    let stopped = json_of(&app, &r1, &path).await;
    assert_eq!(
        stopped["status"], "REGISTERED",
        "no transition while stopped"
    );
    // the contact is recorded (the stored time, as the timeline shows it)
    let logged = json_of(&app, &r1, &format!("{path}/activities")).await;
    let logged = &logged["data"][0];
    assert_eq!(logged["id"], call["id"]);
    assert!(logged["occurredAt"].is_string());
    assert_eq!(stopped["lastMeaningfulContactAt"], logged["occurredAt"]);
    assert_eq!(stopped["lastActivityAt"], logged["occurredAt"]);
    assert!(stopped["protection"]["clockStoppedAt"].is_string());
    assert!(status_events(&app, id).await.is_empty());

    let r = app
        .req(Method::POST, &format!("{path}/clock/resume"), &manager_de())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let resumed: Value = r.json().await.unwrap();
    assert_eq!(resumed["status"], "ACTIVE");
    assert!(resumed["protection"]["clockStoppedAt"].is_null());
    assert_eq!(json_of(&app, &r1, &path).await["status"], "ACTIVE");

    // The timeline, newest first: the status change follows CLOCK_RESUMED.
    let timeline = json_of(&app, &r1, &format!("{path}/activities")).await;
    let entries = timeline["data"].as_array().unwrap();
    let types: Vec<&str> = entries
        .iter()
        .map(|a| a["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        [
            "STATUS_CHANGED",
            "CLOCK_RESUMED",
            "CALL",
            "CLOCK_STOPPED",
            "CREATED"
        ]
    );
    assert_eq!(
        entries[0]["metadata"],
        json!({"oldStatus": "REGISTERED", "newStatus": "ACTIVE", "reason": "FIRST_CONTACT"})
    );

    // The event, as the running-clock path writes it.
    let events = status_events(&app, id).await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["data"]["oldStatus"], "REGISTERED");
    assert_eq!(events[0]["data"]["newStatus"], "ACTIVE");
    assert_eq!(events[0]["data"]["reason"], "FIRST_CONTACT");
    assert_eq!(events[0]["data"]["version"], resumed["version"]);
}
