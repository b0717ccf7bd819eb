//! Test support for the crates that test over HTTP against a real database: a fresh database per
//! test, row counts as the database owner sees them (bypassing RLS on purpose, to prove that a
//! rejected request changed nothing), and a scan of every table for a value (to prove an erasure
//! left nothing behind).

use sqlx::{Connection, PgConnection, Row as _};

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

/// Every place in the database at `url` where `needle` occurs, case-insensitively, as
/// `schema.table: n rows` (or `schema.table.column` for a bytea column), read as the login user
/// (the owner, bypassing RLS): every table of every non-system schema, each row as text — which
/// covers text, varchar, json, jsonb and array columns — and each bytea column as bytes. Also
/// returns how many tables it scanned.
pub async fn occurrences(url: &str, needle: &str) -> Result<(Vec<String>, usize), sqlx::Error> {
    let mut conn = PgConnection::connect(url).await?;
    let tables = sqlx::query(
        "select table_schema::text, table_name::text from information_schema.tables \
          where table_type = 'BASE TABLE' \
            and table_schema not in ('pg_catalog', 'information_schema')",
    )
    .fetch_all(&mut conn)
    .await?;
    let mut found = Vec::new();
    for t in &tables {
        let (schema, table): (String, String) = (t.try_get(0)?, t.try_get(1)?);
        let n: i64 = sqlx::query_scalar(&format!(
            "select count(*) from \"{schema}\".\"{table}\" t \
              where strpos(lower(t::text), lower($1)) > 0"
        ))
        .bind(needle)
        .fetch_one(&mut conn)
        .await?;
        if n > 0 {
            found.push(format!("{schema}.{table}: {n} rows"));
        }
        let bytea: Vec<String> = sqlx::query_scalar(
            "select column_name::text from information_schema.columns \
              where table_schema = $1 and table_name = $2 and data_type = 'bytea'",
        )
        .bind(&schema)
        .bind(&table)
        .fetch_all(&mut conn)
        .await?;
        for column in bytea {
            let n: i64 = sqlx::query_scalar(&format!(
                "select count(*) from \"{schema}\".\"{table}\" \
                  where position(convert_to($1, 'UTF8') in \"{column}\") > 0"
            ))
            .bind(needle)
            .fetch_one(&mut conn)
            .await?;
            if n > 0 {
                found.push(format!("{schema}.{table}.{column}: {n} rows"));
            }
        }
    }
    conn.close().await?;
    Ok((found, tables.len()))
}
