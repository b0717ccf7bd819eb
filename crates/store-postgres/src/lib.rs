//! PostgreSQL adapter of FreshPlan Leads: the schema ([`MIGRATOR`]), the row-level-security
//! context, and [`PgLeadStore`], the production implementation of
//! [`freshplan_leads::ports::LeadStore`] (repository, timeline, idempotency keys and the
//! transactional event outbox on one transaction).
//!
//! # Row-level security (SPEC §3)
//!
//! * The database enforces the data room and the sales scope itself: every lead-scoped table has
//!   `ENABLE` + `FORCE ROW LEVEL SECURITY` and policies that read the caller context (see
//!   `migrations/0002_row_level_security.sql`).
//! * Application queries never run as a role that bypasses the policies. [`connect`] switches
//!   every new pooled connection to the unprivileged [`APP_ROLE`] (`set role freshplan_app`), and
//!   every unit of work ([`begin_as`], used by [`PgLeadStore`]) begins with
//!   `set local role freshplan_app` too, so even a superuser `DATABASE_URL` gets the policies.
//! * The caller context (user id, roles, territories) is bound to the transaction with
//!   `set_config(…, true)` in the same round trip as `BEGIN`; it vanishes at commit or rollback,
//!   so a pooled connection never carries one request's identity into the next. Without a context
//!   every policy is false: zero rows.
//! * Background work runs as [`Actor::system`], whose context has the role `system` — one more
//!   identity the policies know, not a bypass.
//!
//! [`migrate`] applies the migrations on a plain connection of the `DATABASE_URL` role (which
//! owns the schema and creates `freshplan_app`).

use std::fmt::Write as _;

use sqlx::migrate::{MigrateError, Migrator};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection as _, Executor as _, PgConnection, PgPool, Postgres, Transaction};

use freshplan_kernel::Actor;

mod error;
/// The follow-up ports on PostgreSQL, the run guard and log, and the cockpit figures.
pub mod followup;
pub mod imports;
mod rows;
mod store;

pub use followup::{ExclusiveRun, PgFollowUpStore, PgFollowUpTx, RunGuard, RunOutcome, RunRecord};
pub use store::{AfterCommit, PgLeadStore, PgLeadTx};
/// Helpers for HTTP-level tests against a real database.
pub mod testing;

/// The migrations under `migrations/` at the workspace root, embedded at compile time.
pub static MIGRATOR: Migrator = sqlx::migrate!("../../migrations");

/// The unprivileged role every application connection switches to (NOLOGIN, NOSUPERUSER,
/// NOBYPASSRLS; created by the migrations and granted to the migrating role).
pub const APP_ROLE: &str = "freshplan_app";

/// Installs the session set-up on a pool: every new connection runs `set role freshplan_app` and
/// `set jit = off` (one round trip) before it is handed out. Use it to build pools with other
/// settings (e.g. in tests: `#[sqlx::test]` hands out pool options that share its connection
/// limit).
///
/// JIT is off because our statements are short and their estimated costs are not: a row-level
/// security policy with a sub-query (the manager's outbox read of migration 0010) made the outbox
/// reader's generic plan cost ≈ 2·10⁷, above `jit_above_cost`, and PostgreSQL compiled it on
/// every execution — 2 s of JIT for 1 ms of execution (EXPLAIN ANALYZE; ADR 0013).
pub fn app_pool_options(options: PgPoolOptions) -> PgPoolOptions {
    options.after_connect(|conn, _meta| {
        Box::pin(async move {
            conn.execute(format!("set role {APP_ROLE}; {SESSION_SETTINGS}").as_str())
                .await?;
            Ok(())
        })
    })
}

/// Session settings of every application connection (see [`app_pool_options`]).
pub const SESSION_SETTINGS: &str = "set jit = off";

/// The longest a request waits for a pooled connection. While the database cannot be reached
/// (an outage, a failover before the endpoint points at the new primary) the pool keeps trying to
/// connect; a request gives up after this and answers 503 ([`is_unavailable`]) instead of
/// hanging. Under load, connections are handed out in milliseconds.
pub const ACQUIRE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);

/// A pool whose connections run as [`APP_ROLE`], whatever role `url` logs in as, and that gives
/// up on a connection after [`ACQUIRE_TIMEOUT`].
pub async fn connect(url: &str, max_connections: u32) -> Result<PgPool, sqlx::Error> {
    app_pool_options(PgPoolOptions::new().max_connections(max_connections))
        .acquire_timeout(ACQUIRE_TIMEOUT)
        .connect(url)
        .await
}

/// A pool like [`connect`]'s for a read replica (a hot standby): it connects on first use, so
/// an unreachable replica never keeps the service from starting, and gives up on a connection
/// after `acquire_timeout` (the read then goes to the primary).
pub fn connect_replica(
    url: &str,
    max_connections: u32,
    acquire_timeout: std::time::Duration,
) -> Result<PgPool, sqlx::Error> {
    app_pool_options(PgPoolOptions::new().max_connections(max_connections))
        .acquire_timeout(acquire_timeout)
        .connect_lazy(url)
}

/// [`connect`] with parsed connect options.
pub async fn connect_with(
    options: PgConnectOptions,
    max_connections: u32,
) -> Result<PgPool, sqlx::Error> {
    app_pool_options(PgPoolOptions::new().max_connections(max_connections))
        .acquire_timeout(ACQUIRE_TIMEOUT)
        .connect_with(options)
        .await
}

/// Whether `error` or one of its sources says the database cannot be reached right now, so the
/// request may succeed when retried shortly: the connection failed or broke, no pooled connection
/// came within [`ACQUIRE_TIMEOUT`], the server is shutting down, starting or recovering (SQLSTATE
/// class 08, 57P01–57P03), has no connection slot left (53300), or is a standby that refuses
/// writes (25006, a failover before the endpoint moved). The HTTP layer answers these with 503.
pub fn is_unavailable(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(error);
    while let Some(e) = next {
        if let Some(e) = e.downcast_ref::<sqlx::Error>()
            && unavailable(e)
        {
            return true;
        }
        next = e.source();
    }
    false
}

fn unavailable(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| {
            code.starts_with("08")
                || matches!(&*code, "57P01" | "57P02" | "57P03" | "53300" | "25006")
        }),
        _ => false,
    }
}

/// Applies the pending migrations on one plain connection of `url`'s role (not role-switched:
/// the migrations create tables, policies and the application role).
pub async fn migrate(url: &str) -> Result<(), MigrateError> {
    let mut conn = PgConnection::connect(url).await?;
    MIGRATOR.run(&mut conn).await?;
    conn.close().await?;
    Ok(())
}

/// Begins a transaction on `pool` as `actor`: `BEGIN`, `set local role freshplan_app` and the
/// caller context, in one round trip. Other adapters (follow-ups, event feed) open their units of
/// work with it so they share the same row-level-security context.
pub async fn begin_as(
    pool: &PgPool,
    actor: &Actor,
) -> Result<Transaction<'static, Postgres>, sqlx::Error> {
    pool.begin_with(begin_statement(actor)).await
}

/// The context of `actor` as the three comma lists the policies read:
/// `(user id, roles, territories)`. The system actor has the role `system`.
pub fn context_of(actor: &Actor) -> (String, String, String) {
    let roles = if actor.is_system() {
        "system".to_owned()
    } else {
        actor
            .roles()
            .iter()
            .map(|r| r.as_str())
            .collect::<Vec<_>>()
            .join(",")
    };
    let territories = actor
        .territories()
        .iter()
        .map(|t| t.as_str())
        .collect::<Vec<_>>()
        .join(",");
    (actor.user_id().as_str().to_owned(), roles, territories)
}

/// `BEGIN` + role switch + context as one simple-protocol query. Roles and territories are
/// closed sets of ASCII names; the user id is free text, so it travels hex-encoded and is decoded
/// by the server: nothing the caller controls is ever spliced into SQL.
fn begin_statement(actor: &Actor) -> String {
    let (user, roles, territories) = context_of(actor);
    let mut hex = String::with_capacity(user.len() * 2);
    for b in user.bytes() {
        let _ = write!(hex, "{b:02x}");
    }
    debug_assert!(
        roles
            .bytes()
            .chain(territories.bytes())
            .all(|b| b.is_ascii_alphabetic() || b == b','),
        "context lists are closed ASCII sets"
    );
    format!(
        "begin; set local role {APP_ROLE}; \
         select set_config('freshplan.user_id', convert_from(decode('{hex}', 'hex'), 'UTF8'), true), \
                set_config('freshplan.roles', '{roles}', true), \
                set_config('freshplan.territories', '{territories}', true)"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use freshplan_kernel::{Role, TerritoryId, UserId};

    #[test]
    fn context_lists() {
        let a = Actor::new(
            UserId::parse("o'brien; drop table leads").unwrap(),
            [Role::Sales, Role::Manager],
            [TerritoryId::Ch, TerritoryId::De],
        );
        let (u, r, t) = context_of(&a);
        assert_eq!(u, "o'brien; drop table leads");
        assert_eq!(r, "manager,sales");
        assert_eq!(t, "DE,CH");
        let sql = begin_statement(&a);
        assert!(
            !sql.contains("o'brien"),
            "the user id is hex-encoded: {sql}"
        );
        assert_eq!(context_of(&Actor::system()).1, "system");
        assert_eq!(context_of(&Actor::system()).2, "DE,CH");
    }
}
