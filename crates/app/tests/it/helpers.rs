use std::net::TcpListener;

use reqwest::{Client, Method, RequestBuilder, Response};
use serde_json::{Value, json};

pub(crate) const SECRET: &str = "test-secret-test-secret-test-secret!";

/// The unsubscribe-link secret of the test apps (private-looking, 32+ bytes: accepted outside
/// development).
pub(crate) const UNSUBSCRIBE_SECRET: &str = "test-unsubscribe-secret-of-more-than-32-bytes";

/// `FRESHPLAN_PUBLIC_URL` of the test apps (links are checked for it, then followed on the real
/// port).
pub(crate) const PUBLIC_URL: &str = "https://crm.freshplan.test";

pub(crate) struct TestApp {
    pub(crate) base: String,
    pub(crate) client: Client,
    pub(crate) database_url: String,
    /// Stops the server (SSE streams end, then the event pipeline stops).
    pub(crate) stopper: freshplan_app::Stopper,
    /// The event pipeline (`None` with `events = false`).
    pub(crate) events: Option<std::sync::Arc<freshplan_app::events::Events>>,
}

/// Boots the application on port 0 against a fresh, migrated database.
pub(crate) async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await.expect("start")
}

/// A fresh, migrated database; its URL.
pub(crate) async fn fresh_database() -> String {
    #[allow(clippy::disallowed_methods)] // tests read where their database is
    let admin = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let database_url = freshplan_store_postgres::testing::fresh_database(&admin)
        .await
        .expect("fresh database");
    freshplan_store_postgres::migrate(&database_url)
        .await
        .expect("migrate");
    database_url
}

/// [`spawn_app`] with the configuration adjusted first (the defaults: HS256 with [`SECRET`], no
/// JWKS, issuer or audience); the error when the application refuses to start.
pub(crate) async fn spawn_app_with(
    adjust: impl FnOnce(&mut freshplan_app::config::Config),
) -> anyhow::Result<TestApp> {
    let database_url = fresh_database().await;
    let mut config = freshplan_app::config::Config {
        bind: "127.0.0.1:0".into(),
        hs256_secret: Some(SECRET.into()),
        pool_size: 4,
        workers: Some(1),
        unsubscribe_secret: Some(UNSUBSCRIBE_SECRET.into()),
        public_url: Some(PUBLIC_URL.into()),
        // No scheduled follow-up run or sweep in the middle of a test's own events (the
        // follow-up tests run them explicitly, or switch the schedules on).
        followup_enabled: false,
        sweep_enabled: false,
        ..freshplan_app::config::Config::with_defaults(database_url.clone())
    };
    adjust(&mut config);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let running = freshplan_app::start(&config, listener).await?;
    let stopper = running.stopper();
    let events = running.events().cloned();
    actix_web::rt::spawn(running.run());
    let app = TestApp {
        base: format!("http://127.0.0.1:{port}"),
        client: Client::new(),
        database_url,
        stopper,
        events,
    };
    // Like a load balancer, tests start once the replica is ready (database and event listener).
    let started = std::time::Instant::now();
    loop {
        let r = app
            .client
            .get(format!("{}/health/ready", app.base))
            .send()
            .await?;
        if r.status() == 200 {
            return Ok(app);
        }
        anyhow::ensure!(
            started.elapsed() < std::time::Duration::from_secs(30),
            "not ready after 30 s: {}",
            r.text().await?
        );
        actix_web::rt::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

pub(crate) fn token(sub: &str, roles: &[&str], territories: &[&str]) -> String {
    freshplan_app::auth::mint_hs256(SECRET, sub, roles, territories, 3600).unwrap()
}

pub(crate) fn admin() -> String {
    token("admin-1", &["admin"], &[])
}
pub(crate) fn manager_de() -> String {
    token("manager-de", &["manager"], &["DE"])
}
pub(crate) fn manager_ch() -> String {
    token("manager-ch", &["MANAGER"], &["CH"])
}
pub(crate) fn rep(name: &str) -> String {
    token(name, &["sales"], &["DE"])
}

impl TestApp {
    pub(crate) fn req(&self, method: Method, path: &str, tok: &str) -> RequestBuilder {
        self.client
            .request(method, format!("{}{}", self.base, path))
            .bearer_auth(tok)
    }

    /// The typed client of this app with `tok` (sharing the test's connection pool).
    pub(crate) fn api(&self, tok: &str) -> freshplan_client::Client {
        freshplan_client::Client::with_http(self.client.clone(), &self.base)
            .unwrap()
            .with_token(tok)
    }

    pub(crate) async fn create(&self, tok: &str, body: Value) -> Response {
        self.req(Method::POST, "/api/leads", tok)
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    pub(crate) async fn create_ok(&self, tok: &str, body: Value) -> Value {
        let r = self.create(tok, body).await;
        assert_eq!(r.status(), 201, "{:?}", r.text().await);
        r.json().await.unwrap()
    }

    pub(crate) async fn get(&self, tok: &str, path: &str) -> Response {
        self.req(Method::GET, path, tok).send().await.unwrap()
    }

    /// Every lead row as the database owner sees it (count), to prove nothing changed.
    pub(crate) async fn row_counts(&self) -> (i64, i64, i64) {
        freshplan_store_postgres::testing::row_counts(&self.database_url)
            .await
            .unwrap()
    }
}

pub(crate) fn lead(name: &str) -> Value {
    json!({"companyName": name, "countryCode": "DE", "city": "Berlin", "postalCode": "10115"})
}

/// [`lead`] as the typed create body.
pub(crate) fn new_lead(name: &str) -> freshplan_client::api::leads::LeadCreate {
    freshplan_client::api::leads::LeadCreate {
        country_code: Some("DE".into()),
        city: Some("Berlin".into()),
        postal_code: Some("10115".into()),
        ..freshplan_client::api::leads::LeadCreate::new(name)
    }
}

pub(crate) async fn problem(r: Response, status: u16) -> Value {
    assert_eq!(r.status().as_u16(), status);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["status"], status);
    assert!(v["type"].is_string() && v["title"].is_string() && v["detail"].is_string());
    v
}
