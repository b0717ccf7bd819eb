//! Integration tests of the PostgreSQL adapter: one binary, a fresh database per test
//! (`#[sqlx::test(migrator = "freshplan_store_postgres::MIGRATOR")]`; needs `DATABASE_URL` of a
//! role that may create databases).
//!
//! The harness logs in as the `DATABASE_URL` role (a superuser here), which bypasses row-level
//! security. So every test that is about the application builds its own pool from the harness's
//! connect options with [`freshplan_store_postgres::app_pool_options`] (connections switched to
//! `freshplan_app`), and uses the superuser pool only to set up or inspect rows behind the
//! policies' back.

mod after_commit;
mod followup;
mod followup_cockpit;
mod helpers;
mod list;
mod personal_data;
mod rls;
mod schema;
mod service;
mod store;
