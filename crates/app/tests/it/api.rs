use futures_util::TryStreamExt;
use reqwest::Method;
use serde_json::{Value, json};

use freshplan_client::ETag;
use freshplan_client::activities::PageQuery;
use freshplan_client::api::activities::{ActivityCreate, ActivityType, UserActivityType};
use freshplan_client::api::health::State;
use freshplan_client::api::leads::{
    BusinessType, ClockStop, Lead, LeadCreate, LeadPage, LeadPatch, LeadStatus, OwnerChange,
    StatusChange,
};
use freshplan_client::api::problem::DuplicateOn;
use freshplan_client::leads::{LeadQuery, SortField};

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
    let anonymous = app.api("");
    anonymous.clear_token();
    let ready = anonymous.health().ready().await.unwrap();
    assert_eq!(
        (ready.status, ready.database, ready.event_listener),
        (State::Up, Some(State::Up), Some(State::Up))
    );
    let live = anonymous.health().live().await.unwrap();
    assert_eq!((live.status, live.database), (State::Up, None));
    assert!(anonymous.openapi().await.unwrap()["paths"].is_object());
    let e = anonymous.leads().list(LeadQuery::new()).await.unwrap_err();
    assert!(e.is_unauthorized(), "{e}");
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
    let api = app.api(&rep("r1"));
    let all = api.territories().list().await.unwrap();
    assert_eq!(all[0].id, "DE");
    assert_eq!(all[1].vat_rate, 8.1);
    assert_eq!(all[1].currency_code, "CHF");
    let de = api.territories().get("DE").await.unwrap();
    assert_eq!(de.vat_rate, 19.0);
    assert_eq!(de.payment_terms_days, 30);
    let e = api.territories().get("AT").await.unwrap_err();
    assert!(e.is_not_found(), "{e}");
}

#[actix_web::test]
async fn create_get_patch_delete_with_etags() {
    let app = spawn_app().await;
    let r1 = rep("rep-1");
    let api = app.api(&r1);
    let leads = api.leads();
    let created = leads
        .create(&LeadCreate {
            country_code: Some("de".into()),
            email: Some("Info@Post.de".into()),
            email_consent: Some(true),
            estimated_volume: Some(1234.5),
            business_type: Some(BusinessType::Restaurant),
            ..LeadCreate::new("Gasthaus Zur Post GmbH")
        })
        .await
        .unwrap();
    let (id, etag) = (created.id, created.etag.clone());
    assert!(!etag.is_weak(), "a lead's ETag is strong");
    assert_eq!(created.status, LeadStatus::Registered);
    assert_eq!(created.owner_user_id.as_deref(), Some("rep-1"));
    assert_eq!(created.country_code, "DE");
    assert_eq!(created.territory.currency_code, "EUR");
    assert_eq!(created.estimated_volume, Some(1234.5));
    assert!(created.email_consent_at.is_some());
    assert!(created.protection.protected_until > created.registered_at);

    // GET answers the same ETag; with If-None-Match → 304
    assert_eq!(leads.get(id).await.unwrap().etag, etag);
    assert!(
        leads
            .get_if_none_match(id, &etag)
            .await
            .unwrap()
            .is_not_modified()
    );

    // PATCH (merge patch): the new lead and its fresh ETag; null clears
    let patched = leads
        .patch(
            id,
            &etag,
            &LeadPatch {
                city: Some(Some("Köln".into())),
                phone: Some(None),
                ..LeadPatch::default()
            },
        )
        .await
        .unwrap();
    assert_ne!(patched.etag, etag);
    assert_eq!(patched.city.as_deref(), Some("Köln"));
    assert_eq!(patched.version, 2);
    // the returned ETag is the fresh one: GET agrees, and the old one is now modified
    assert_eq!(leads.get(id).await.unwrap().etag, patched.etag);
    let fresh = leads.get_if_none_match(id, &etag).await.unwrap();
    assert_eq!(fresh.etag(), &patched.etag);
    assert_eq!(fresh.modified().unwrap().version, 2);
    // stale → 412
    let city = |c: &str| LeadPatch {
        city: Some(Some(c.into())),
        ..LeadPatch::default()
    };
    let e = leads.patch(id, &etag, &city("Bonn")).await.unwrap_err();
    assert!(e.is_precondition_failed(), "{e}");
    let cleared = leads
        .patch(
            id,
            &patched.etag,
            &LeadPatch {
                city: Some(None),
                ..LeadPatch::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(cleared.city, None);

    // DELETE: stale 412, then 204; then 404, gone from lists
    let e = leads.delete(id, &patched.etag).await.unwrap_err();
    assert!(e.is_precondition_failed(), "{e}");
    leads.delete(id, &cleared.etag).await.unwrap();
    assert!(leads.get(id).await.unwrap_err().is_not_found());
    assert_eq!(leads.list(LeadQuery::new()).await.unwrap().total, 0);
    let all = app
        .api(&admin())
        .leads()
        .list(LeadQuery::new().include_deleted(true))
        .await
        .unwrap();
    assert_eq!(all.total, 1);
    assert_eq!(all.data[0].status, LeadStatus::Deleted);
    // a deleted lead no longer blocks its duplicate
    leads
        .create(&LeadCreate {
            email: Some("info@post.de".into()),
            ..LeadCreate::new("Gasthaus Zur Post")
        })
        .await
        .unwrap();
}

#[actix_web::test]
async fn writes_need_if_match_and_create_answers_location() {
    // The raw HTTP of what the client does for you: Location, 428 without If-Match, the merge
    // patch media type.
    let app = spawn_app().await;
    let r1 = rep("rep-1");
    let r = app.create(&r1, lead("Alpha")).await;
    assert_eq!(r.status(), 201);
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    let etag = r.headers()["etag"].to_str().unwrap().to_owned();
    let lead: Value = r.json().await.unwrap();
    assert_eq!(
        location,
        format!("/api/leads/{}", lead["id"].as_str().unwrap())
    );
    assert_eq!(etag, lead_etag(&lead));
    let r = app
        .req(Method::GET, &location, &r1)
        .header("If-None-Match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 304);
    let r = app
        .req(Method::PATCH, &location, &r1)
        .json(&json!({"city": "Köln"}))
        .send()
        .await
        .unwrap();
    problem(r, 428).await;
    problem(
        app.req(Method::DELETE, &location, &r1)
            .send()
            .await
            .unwrap(),
        428,
    )
    .await;
    let r = app
        .req(Method::PATCH, &location, &r1)
        .header("If-Match", &etag)
        .header("content-type", "application/merge-patch+json")
        .body(r#"{"city":"Köln","phone":null}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_ne!(r.headers()["etag"].to_str().unwrap(), etag);
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
    let mine = app
        .api(&rep("rep-1"))
        .leads()
        .create(&new_lead("Alpha"))
        .await
        .unwrap();
    app.api(&rep("rep-2"))
        .leads()
        .create(&new_lead("Beta"))
        .await
        .unwrap();
    let ch = app
        .api(&manager_ch())
        .leads()
        .create(&LeadCreate {
            country_code: Some("CH".into()),
            ..LeadCreate::new("Beizli")
        })
        .await
        .unwrap();
    let total = |tok: String| {
        let api = app.api(&tok);
        async move { api.leads().list(LeadQuery::new()).await.unwrap().total }
    };
    // other rep: 404, not 403
    let e = app
        .api(&rep("rep-2"))
        .leads()
        .get(mine.id)
        .await
        .unwrap_err();
    assert!(e.is_not_found(), "{e}");
    // DE manager sees both DE leads, not the CH one
    assert_eq!(total(manager_de()).await, 2);
    assert!(
        app.api(&manager_de())
            .leads()
            .get(ch.id)
            .await
            .unwrap_err()
            .is_not_found()
    );
    // a rep's list has only own leads; admin sees all three
    assert_eq!(total(rep("rep-1")).await, 1);
    assert_eq!(total(admin()).await, 3);
    // viewer reads, cannot write (403)
    let viewer = app.api(&token("v", &["viewer"], &["DE"]));
    let seen = viewer.leads().get(mine.id).await.unwrap();
    let e = viewer
        .leads()
        .patch(
            mine.id,
            &seen.etag,
            &LeadPatch {
                city: Some(Some("X".into())),
                ..LeadPatch::default()
            },
        )
        .await
        .unwrap_err();
    assert!(e.is_forbidden(), "{e}");
    // a rep cannot create in CH; a role without territories creates nothing
    let e = app
        .api(&rep("rep-1"))
        .leads()
        .create(&LeadCreate {
            country_code: Some("CH".into()),
            ..LeadCreate::new("Z")
        })
        .await
        .unwrap_err();
    assert!(e.is_forbidden(), "{e}");
    let e = app
        .api(&token("n", &["sales"], &[]))
        .leads()
        .create(&new_lead("Nothing"))
        .await
        .unwrap_err();
    assert!(e.is_forbidden(), "{e}");
    // service role cannot read leads
    let e = app
        .api(&token("svc", &["service"], &["DE"]))
        .leads()
        .list(LeadQuery::new())
        .await
        .unwrap_err();
    assert!(e.is_forbidden(), "{e}");
}

#[actix_web::test]
async fn duplicates_are_409_and_name_only_visible_leads() {
    let app = spawn_app().await;
    let first = app
        .api(&rep("rep-1"))
        .leads()
        .create(&LeadCreate {
            postal_code: Some("80331".into()),
            email: Some("info@adler.de".into()),
            ..LeadCreate::new("Hotel Adler GmbH")
        })
        .await
        .unwrap();
    // rep-2 may not read rep-1's lead: a duplicate, without naming it
    let e = app
        .api(&rep("rep-2"))
        .leads()
        .create(&LeadCreate {
            postal_code: Some("80331".into()),
            ..LeadCreate::new("hotel  adler")
        })
        .await
        .unwrap_err();
    assert!(e.is_duplicate(), "{e}");
    assert_eq!(e.existing_lead_id(), None);
    assert_eq!(e.duplicate_on(), Some(DuplicateOn::Company));
    // the manager may: named
    let e = app
        .api(&manager_de())
        .leads()
        .create(&LeadCreate {
            email: Some("INFO@adler.de".into()),
            ..LeadCreate::new("Other")
        })
        .await
        .unwrap_err();
    assert!(e.is_duplicate(), "{e}");
    assert_eq!(e.existing_lead_id(), Some(first.id));
    assert_eq!(e.duplicate_on(), Some(DuplicateOn::Email));
    assert_eq!(
        e.problem().unwrap().existing_company_name.as_deref(),
        Some("Hotel Adler GmbH")
    );
    assert_eq!(app.row_counts().await.0, 1);
}

#[actix_web::test]
async fn idempotency_key_replays_the_first_response() {
    let app = spawn_app().await;
    let leads = app.api(&rep("rep-1")).leads();
    let a = leads
        .create_idempotent(&new_lead("Alpha"), "abc-1")
        .await
        .unwrap();
    let b = leads
        .create_idempotent(&new_lead("Alpha"), "abc-1")
        .await
        .unwrap();
    assert_eq!(a.id, b.id);
    assert_eq!(a.etag, b.etag);
    // the same key with another body
    let e = leads
        .create_idempotent(&new_lead("Beta"), "abc-1")
        .await
        .unwrap_err();
    assert!(e.is_idempotency_key_reused(), "{e}");
    // without the key the same body is a duplicate
    assert!(
        leads
            .create(&new_lead("Alpha"))
            .await
            .unwrap_err()
            .is_duplicate()
    );
    assert_eq!(app.row_counts().await.0, 1);
}

#[actix_web::test]
async fn list_paging_sorting_filters_and_etags() {
    let app = spawn_app().await;
    let leads = app.api(&manager_de()).leads();
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
        leads
            .create(&LeadCreate {
                postal_code: Some(format!("1000{i}")),
                business_type: Some(if i % 2 == 0 {
                    BusinessType::Hotel
                } else {
                    BusinessType::Restaurant
                }),
                ..new_lead(name)
            })
            .await
            .unwrap();
    }
    let by_name = || LeadQuery::new().sort_asc(SortField::CompanyName).size(2);
    let p0 = leads
        .list(by_name())
        .conditional(None)
        .await
        .unwrap()
        .modified()
        .unwrap();
    assert!(p0.etag.is_weak());
    assert_eq!((p0.total, p0.total_pages), (6, 3));
    let names = |page: &LeadPage| -> Vec<String> {
        page.data.iter().map(|l| l.company_name.clone()).collect()
    };
    assert_eq!(names(&p0), ["alpha", "bravo"]);
    let p1 = leads
        .list(by_name().page(1))
        .conditional(None)
        .await
        .unwrap();
    assert_ne!(p1.etag(), &p0.etag, "pages differ");
    let again = leads
        .list(by_name())
        .conditional(Some(&p0.etag))
        .await
        .unwrap();
    assert!(again.is_not_modified());
    // every page, walked as a stream: the six in order
    let pages: Vec<LeadPage> = leads.list(by_name()).pages().try_collect().await.unwrap();
    assert_eq!(pages.len(), 3);
    let all: Vec<String> = leads
        .list(by_name())
        .items()
        .map_ok(|l| l.company_name)
        .try_collect()
        .await
        .unwrap();
    assert_eq!(
        all,
        [
            "alpha",
            "bravo",
            "Charlie",
            "Delta",
            "Echo 100%",
            "Fox_trot"
        ]
    );
    let from_page_2: Vec<Lead> = leads
        .list(by_name().page(2))
        .items()
        .try_collect()
        .await
        .unwrap();
    assert_eq!(from_page_2.len(), 2);
    // filters
    let total = |q: LeadQuery| {
        let leads = leads.clone();
        async move { leads.list(q).await.unwrap().total }
    };
    assert_eq!(
        total(LeadQuery::new().business_type(BusinessType::Hotel)).await,
        3
    );
    assert_eq!(total(LeadQuery::new().q("%")).await, 1, "% is literal");
    assert_eq!(total(LeadQuery::new().q("_")).await, 1, "_ is literal");
    assert_eq!(total(LeadQuery::new().q("ALPHA")).await, 1);
    assert_eq!(
        total(
            LeadQuery::new()
                .status(LeadStatus::Registered)
                .status(LeadStatus::Active)
        )
        .await,
        6
    );
    assert_eq!(total(LeadQuery::new().status(LeadStatus::Lost)).await, 0);
    // data change changes the ETag of the same page
    leads.create(&LeadCreate::new("aaa first")).await.unwrap();
    let changed = leads
        .list(by_name())
        .conditional(Some(&p0.etag))
        .await
        .unwrap();
    assert_ne!(changed.etag(), &p0.etag);
    assert_eq!(names(&changed.modified().unwrap()), ["aaa first", "alpha"]);
    // a value out of range is 400 through the client too
    let e = leads.list(LeadQuery::new().size(201)).await.unwrap_err();
    assert!(e.is_bad_request(), "{e}");
    assert_eq!(e.field_errors()[0].field, "size");
    // what the typed query cannot even express
    let m = manager_de();
    for bad in [
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
    let api = app.api(&rep("rep-1"));
    let manager = app.api(&manager_de());
    let l = api.leads().create(&new_lead("Alpha")).await.unwrap();
    let id = l.id;
    let logged = api
        .activities()
        .log(
            id,
            &ActivityCreate {
                description: Some("Erstkontakt".into()),
                ..ActivityCreate::new(UserActivityType::Call)
            },
        )
        .await
        .unwrap();
    assert!(logged.activity.meaningful_contact);
    assert_eq!(logged.activity.lead_id, id);
    let after = api.leads().get(id).await.unwrap();
    assert_eq!(after.status, LeadStatus::Active);
    assert_eq!(after.etag, logged.lead_etag, "the lead's new ETag");
    // a system type is 422 (raw: the typed body cannot name one)
    problem(
        app.req(
            Method::POST,
            &format!("/api/leads/{id}/activities"),
            &rep("rep-1"),
        )
        .json(&json!({"type": "FOLLOWUP_SENT"}))
        .send()
        .await
        .unwrap(),
        422,
    )
    .await;
    let timeline = api.activities().list(id, PageQuery::new()).await.unwrap();
    let types: Vec<ActivityType> = timeline.data.iter().map(|a| a.activity_type).collect();
    assert!(
        types.contains(&ActivityType::Call)
            && types.contains(&ActivityType::Created)
            && types.contains(&ActivityType::StatusChanged),
        "{types:?}"
    );
    // pages of one, newest first, walked to the end
    let walked: Vec<ActivityType> = api
        .activities()
        .list(id, PageQuery::new().size(1))
        .items()
        .map_ok(|a| a.activity_type)
        .try_collect()
        .await
        .unwrap();
    assert_eq!(walked, types);
    // invalid transition → 422 naming the status
    let e = api
        .leads()
        .patch(
            id,
            &after.etag,
            &LeadPatch {
                status: Some(StatusChange::Converted),
                ..LeadPatch::default()
            },
        )
        .await
        .unwrap_err();
    assert!(e.is_invalid_transition(), "{e}");
    assert!(e.field_error("status").is_some());
    // owner: rep 403, manager 200 (and then the rep no longer sees it)
    let to_rep_2 = OwnerChange {
        owner_user_id: "rep-2".into(),
    };
    let e = api.leads().reassign(id, &to_rep_2, None).await.unwrap_err();
    assert!(e.is_forbidden(), "{e}");
    let reassigned = manager.leads().reassign(id, &to_rep_2, None).await.unwrap();
    assert_eq!(reassigned.owner_user_id.as_deref(), Some("rep-2"));
    assert!(api.leads().get(id).await.unwrap_err().is_not_found());
    // clock: a stale If-Match is 412 (it is honoured when sent), twice stopped is 409
    let e = manager
        .leads()
        .stop_clock(
            id,
            &ClockStop {
                reason: "Betriebsferien".into(),
            },
            Some(&after.etag),
        )
        .await
        .unwrap_err();
    assert!(e.is_precondition_failed(), "{e}");
    let stopped = manager
        .leads()
        .stop_clock(
            id,
            &ClockStop {
                reason: "Betriebsferien".into(),
            },
            Some(&reassigned.etag),
        )
        .await
        .unwrap();
    assert!(stopped.protection.clock_stopped_at.is_some());
    let e = manager
        .leads()
        .stop_clock(
            id,
            &ClockStop {
                reason: "again".into(),
            },
            None,
        )
        .await
        .unwrap_err();
    assert!(e.is_conflict(), "{e}");
    let e = manager
        .leads()
        .resume_clock(
            id,
            Some(&ETag::new("\"00000000000000000000000000000000-1\"")),
        )
        .await
        .unwrap_err();
    assert!(e.is_precondition_failed(), "{e}");
    let resumed = manager.leads().resume_clock(id, None).await.unwrap();
    assert!(resumed.protection.clock_stopped_at.is_none());
    assert_ne!(resumed.etag, stopped.etag);
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
