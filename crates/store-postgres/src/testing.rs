//! Test support for the crates that test over HTTP against a real database: a fresh database per
//! test and row counts as the database owner sees them (bypassing RLS on purpose, to prove that a
//! rejected request changed nothing).

use sqlx::{Connection, PgConnection};

/// Creates a fresh, empty database next to the one `admin_url` names and returns its URL.
pub async fn fresh_database(admin_url: &str) -> Result<String, sqlx::Error> {
    let name = format!("freshplan_test_{}", uuid::Uuid::now_v7().simple());
    let mut conn = PgConnection::connect(admin_url).await?;
    sqlx::query(&format!("create database {name}"))
        .execute(&mut conn)
        .await?;
    conn.close().await?;
    let (base, query) = match admin_url.split_once('?') {
        Some((b, q)) => (b, format!("?{q}")),
        None => (admin_url, String::new()),
    };
    let prefix = base.rsplit_once('/').map_or(base, |(p, _)| p);
    Ok(format!("{prefix}/{name}{query}"))
}

/// `(leads, activities, event_outbox)` row counts, read as the login user (the table owner).
pub async fn row_counts(url: &str) -> Result<(i64, i64, i64), sqlx::Error> {
    let mut conn = PgConnection::connect(url).await?;
    let row: (i64, i64, i64) = sqlx::query_as(
        "select (select count(*) from leads), (select count(*) from activities), (select count(*) from event_outbox)",
    )
    .fetch_one(&mut conn)
    .await?;
    conn.close().await?;
    Ok(row)
}
