//! Pools, actors and leads for the tests.

use std::collections::BTreeSet;

use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use time::OffsetDateTime;
use time::macros::datetime;
use uuid::Uuid;

use freshplan_kernel::{Actor, Role, TerritoryId, UserId};
use freshplan_leads::Lead;
use freshplan_leads::LeadData;
use freshplan_leads::model::{CompanyName, Email};
use freshplan_leads::ports::{LeadStore, LeadTx};
use freshplan_store_postgres::{PgLeadStore, app_pool_options};

/// A fixed "now" with whole seconds (PostgreSQL keeps microseconds).
pub(crate) const NOW: OffsetDateTime = datetime!(2026-03-02 09:00 UTC);

/// The pools of one test database.
pub(crate) struct Db {
    /// Role-switched (`freshplan_app`): what the application uses.
    pub(crate) app: PgPool,
    /// The harness's login role (superuser): bypasses row-level security, for set-up and checks.
    pub(crate) su: PgPool,
    /// The test database's connect options (superuser login).
    pub(crate) opts: PgConnectOptions,
}

impl Db {
    pub(crate) async fn new(pool_opts: PgPoolOptions, opts: PgConnectOptions) -> Db {
        let app = app_pool_options(pool_opts)
            .connect_with(opts.clone())
            .await
            .expect("app pool");
        let su = PgPoolOptions::new()
            .max_connections(2)
            .connect_with(opts.clone())
            .await
            .expect("superuser pool");
        Db { app, su, opts }
    }

    pub(crate) fn store(&self) -> PgLeadStore {
        PgLeadStore::new(self.app.clone())
    }

    /// Closes the pools, so the harness can drop the database.
    pub(crate) async fn close(self) {
        self.app.close().await;
        self.su.close().await;
    }

    /// Counts rows of `table` behind the policies' back.
    pub(crate) async fn count(&self, table: &str) -> i64 {
        sqlx::query_scalar(&format!("select count(*) from {table}"))
            .fetch_one(&self.su)
            .await
            .expect("count")
    }

    /// Inserts leads as the admin, committing.
    pub(crate) async fn seed(&self, leads: &[Lead]) {
        let store = self.store();
        let mut tx = store.begin(&admin()).await.expect("begin");
        for l in leads {
            tx.insert(l).await.expect("insert");
        }
        tx.commit().await.expect("commit");
    }
}

pub(crate) fn uid(s: &str) -> UserId {
    UserId::parse(s).expect("valid user id")
}

pub(crate) fn admin() -> Actor {
    Actor::new(uid("admin"), [Role::Admin], [])
}

pub(crate) fn manager(t: TerritoryId) -> Actor {
    Actor::new(uid(&format!("manager-{t}")), [Role::Manager], [t])
}

pub(crate) fn viewer(t: TerritoryId) -> Actor {
    Actor::new(uid(&format!("viewer-{t}")), [Role::Viewer], [t])
}

pub(crate) fn rep(name: &str) -> Actor {
    Actor::new(uid(name), [Role::Sales], [TerritoryId::De])
}

/// Deterministic lead ids.
pub(crate) fn id(n: u128) -> Uuid {
    Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0000 | n)
}

/// A registered lead `n` in `country`, owned by `owner`, with a unique name and no email.
pub(crate) fn lead(n: u128, company: &str, country: &str, owner: &str) -> Lead {
    let data = LeadData::new(CompanyName::parse(company).expect("name"), country).expect("data");
    let creator = Actor::new(uid(owner), [Role::Sales], TerritoryId::ALL);
    Lead::register(id(n), data, &creator, None, NOW)
        .expect("register")
        .0
}

pub(crate) fn with_email(mut l: Lead, email: &str) -> Lead {
    l.data.email = Some(Email::parse(email).expect("email"));
    l
}

pub(crate) fn with_collaborators(mut l: Lead, users: &[&str]) -> Lead {
    l.collaborators = users.iter().map(|u| uid(u)).collect::<BTreeSet<_>>();
    l
}

/// The ids of some leads, sorted.
pub(crate) fn ids(leads: &[Lead]) -> Vec<Uuid> {
    let mut v: Vec<Uuid> = leads.iter().map(|l| l.id).collect();
    v.sort();
    v
}
