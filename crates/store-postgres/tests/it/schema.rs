//! The schema itself: seed data, the application role, forced RLS, and that the queries' shapes
//! match their indexes.

use sqlx::ConnectOptions as _;
use sqlx::Row as _;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use freshplan_territory::Territory;

use crate::helpers::{Db, admin, lead, with_email};

#[sqlx::test(migrator = "freshplan_store_postgres::MIGRATOR")]
async fn territories_are_seeded_from_the_domain(pool_opts: PgPoolOptions, opts: PgConnectOptions) {
    let db = Db::new(pool_opts, opts).await;
    // Readable by the application role without any context (reference data, no RLS).
    let rows = sqlx::query(
        "select id, name, currency_code, vat_rate::text as vat, language_code, time_zone, \
                payment_terms_days, legal_entity, vat_id from territories order by id desc",
    )
    .fetch_all(&db.app)
    .await
    .unwrap();
    assert_eq!(rows.len(), Territory::all().len());
    for (row, t) in rows.iter().zip(Territory::all()) {
        assert_eq!(row.get::<String, _>("id"), t.id.as_str());
        assert_eq!(row.get::<String, _>("name"), t.name);
        assert_eq!(row.get::<String, _>("currency_code"), t.currency_code);
        let vat = format!(
            "{}.{:02}",
            t.vat_basis_points / 100,
            t.vat_basis_points % 100
        );
        assert_eq!(row.get::<String, _>("vat"), vat);
        assert_eq!(row.get::<String, _>("language_code"), t.language_code);
        assert_eq!(row.get::<String, _>("time_zone"), t.time_zone);
        assert_eq!(
            row.get::<i32, _>("payment_terms_days"),
            i32::from(t.payment_terms_days)
        );
        assert_eq!(row.get::<String, _>("legal_entity"), t.legal_entity);
        assert_eq!(row.get::<String, _>("vat_id"), t.vat_id);
    }
    db.close().await;
}

#[sqlx::test(migrator = "freshplan_store_postgres::MIGRATOR")]
async fn the_app_role_is_unprivileged_and_every_lead_table_forces_rls(
    pool_opts: PgPoolOptions,
    opts: PgConnectOptions,
) {
    let db = Db::new(pool_opts, opts).await;
    let (login, superuser, bypass, current): (bool, bool, bool, String) = sqlx::query_as(
        "select rolcanlogin, rolsuper, rolbypassrls, current_user::text \
           from pg_roles where rolname = 'freshplan_app'",
    )
    .fetch_one(&db.app)
    .await
    .unwrap();
    assert!(!login && !superuser && !bypass);
    assert_eq!(current, "freshplan_app");
    for table in [
        "leads",
        "lead_collaborators",
        "activities",
        "idempotency_keys",
        "followups",
        "event_outbox",
    ] {
        let (enabled, forced): (bool, bool) = sqlx::query_as(
            "select relrowsecurity, relforcerowsecurity from pg_class \
              where oid = $1::regclass",
        )
        .bind(table)
        .fetch_one(&db.su)
        .await
        .unwrap();
        assert!(
            enabled && forced,
            "{table}: enable={enabled} force={forced}"
        );
    }
    db.close().await;
}

async fn plan(conn: &mut sqlx::PgConnection, sql: &str) -> String {
    let lines: Vec<String> = sqlx::query_scalar(&format!("explain {sql}"))
        .fetch_all(conn)
        .await
        .unwrap();
    lines.join("\n")
}

#[sqlx::test(migrator = "freshplan_store_postgres::MIGRATOR")]
async fn the_query_shapes_match_their_indexes(pool_opts: PgPoolOptions, opts: PgConnectOptions) {
    let db = Db::new(pool_opts, opts).await;
    db.seed(&[with_email(
        lead(1, "Gasthaus Post", "DE", "rep-1"),
        "info@post.de",
    )])
    .await;
    let mut conn = db.su.acquire().await.unwrap();
    sqlx::query("set enable_seqscan = off")
        .execute(&mut *conn)
        .await
        .unwrap();
    sqlx::query("set enable_sort = off")
        .execute(&mut *conn)
        .await
        .unwrap();
    // The search inside freshplan_search_leads (run with its owner's rights): its own body,
    // with a needle in place of the parameter.
    let body: String =
        sqlx::query_scalar("select prosrc from pg_proc where proname = 'freshplan_search_leads'")
            .fetch_one(&mut *conn)
            .await
            .unwrap();
    assert_eq!(body.matches("needle").count(), 1, "{body}");
    let p = plan(&mut conn, &body.replace("needle", "'post'")).await;
    assert!(p.contains("leads_search_trgm_idx"), "{p}");
    // The sweep.
    let p = plan(
        &mut conn,
        "select l.id from leads l where l.next_sweep_at <= now() \
         order by l.next_sweep_at, l.id limit 10 for no key update of l skip locked",
    )
    .await;
    assert!(p.contains("leads_next_sweep_at_idx"), "{p}");
    // Sorts with the id tie-breaker, both directions.
    for (expr, index) in [
        (
            "lower(l.company_name collate freshplan_text) collate \"C\"",
            "leads_company_name_idx",
        ),
        ("l.city collate \"C\"", "leads_city_idx"),
        ("l.created_at", "leads_created_at_idx"),
        ("l.status", "leads_status_idx"),
        ("l.estimated_volume", "leads_estimated_volume_idx"),
    ] {
        for dir in ["asc", "desc"] {
            let p = plan(
                &mut conn,
                &format!("select l.id from leads l order by {expr} {dir}, l.id {dir} limit 20"),
            )
            .await;
            assert!(p.contains(index), "{expr} {dir}: {p}");
        }
    }
    // Duplicate lookups use the partial unique indexes.
    let p = plan(
        &mut conn,
        "select l.id from leads l where l.status <> 'DELETED' \
         and (l.email_key = 'x' or l.company_key = 'y')",
    )
    .await;
    assert!(
        p.contains("leads_email_key_uq") && p.contains("leads_company_key_uq"),
        "{p}"
    );
    drop(conn);
    // As the application: the search function is reachable, the raw tables are not bypassed.
    let mut tx = freshplan_store_postgres::begin_as(&db.app, &admin())
        .await
        .unwrap();
    let hits: Vec<uuid::Uuid> = sqlx::query_scalar("select freshplan_search_leads('post')")
        .fetch_all(&mut *tx)
        .await
        .unwrap();
    assert_eq!(hits, vec![crate::helpers::id(1)]);
    drop(tx);
    db.close().await;
}

#[sqlx::test(migrator = "freshplan_store_postgres::MIGRATOR")]
async fn migrating_again_is_a_no_op(pool_opts: PgPoolOptions, opts: PgConnectOptions) {
    let db = Db::new(pool_opts, opts).await;
    let url = db.opts.to_url_lossy();
    freshplan_store_postgres::migrate(url.as_str())
        .await
        .expect("re-running the migrator");
    db.close().await;
}
