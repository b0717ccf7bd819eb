//! The benchmark database: created next to the test databases on the server `ensure_postgres`
//! provides, migrated by the release binary, and seeded in bulk SQL. A database seeded at the
//! requested size (and with the current seed version) is reused.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use sqlx::{Connection as _, Executor as _, PgConnection, Row as _};

/// Bump when the seed changes shape, so older bench databases are reseeded.
const SEED_VERSION: i32 = 1;

/// The id of seeded lead `n` (1-based): predictable, so the load generator and pgbench can pick
/// a random existing lead without a lookup.
pub(crate) fn lead_id(n: u64) -> String {
    format!("00000000-0000-4000-8000-{n:012x}")
}

/// The user id of sales rep `i` (1-based).
pub(crate) fn rep_id(i: u64) -> String {
    format!("rep-{i:04}")
}

/// The territory rep `i` works in: every fifth rep works in CH.
pub(crate) fn rep_territory(i: u64) -> &'static str {
    if i.is_multiple_of(5) { "CH" } else { "DE" }
}

/// How many reps own the seeded leads: about 500 leads each, a multiple of 5.
pub(crate) fn rep_count(leads: u64) -> u64 {
    (leads / 500).max(5) / 5 * 5
}

/// `url` with its database name replaced.
pub(crate) fn with_database(url: &str, db: &str) -> Result<String> {
    let (base, rest) = url
        .rsplit_once('/')
        .with_context(|| format!("no database name in {url}"))?;
    let query = rest
        .split_once('?')
        .map(|(_, q)| format!("?{q}"))
        .unwrap_or_default();
    Ok(format!("{base}/{db}{query}"))
}

/// Creates (if needed), migrates and seeds the bench database; removes what earlier runs
/// created. Returns its URL.
pub(crate) async fn prepare(
    admin_url: &str,
    freshplan: &Path,
    leads: u64,
    reseed: bool,
) -> Result<String> {
    let db = if leads.is_multiple_of(1_000_000) {
        format!("freshplan_bench_{}m", leads / 1_000_000)
    } else if leads.is_multiple_of(1_000) {
        format!("freshplan_bench_{}k", leads / 1_000)
    } else {
        format!("freshplan_bench_{leads}")
    };
    let url = with_database(admin_url, &db)?;
    let mut admin = PgConnection::connect(admin_url)
        .await
        .context("connecting to PostgreSQL")?;
    let exists: bool =
        sqlx::query_scalar("select exists (select 1 from pg_database where datname = $1)")
            .bind(&db)
            .fetch_one(&mut admin)
            .await?;
    if !exists {
        println!("xtask bench: creating database {db}");
        admin
            .execute(format!("create database {db}").as_str())
            .await?;
    }
    if !migrate(freshplan, &url)? {
        // The database was migrated by a build whose migrations differ (an edited migration
        // under development): it is the bench's own, so start it afresh.
        println!("xtask bench: the migrations of {db} do not match this build; recreating it");
        admin
            .execute(format!("drop database {db} with (force)").as_str())
            .await?;
        admin
            .execute(format!("create database {db}").as_str())
            .await?;
        if !migrate(freshplan, &url)? {
            bail!("freshplan migrate failed on a new database");
        }
    }
    admin.close().await?;

    // The bench connects as the server's superuser (as the tests do): it bypasses row-level
    // security, which seeding and cleaning up need. The server under test never does.
    let mut conn = PgConnection::connect(&url).await?;
    conn.execute(
        "create table if not exists bench_seed (leads bigint not null, version int not null)",
    )
    .await?;
    let seeded = sqlx::query("select leads, version from bench_seed")
        .fetch_optional(&mut conn)
        .await?
        .map(|r| (r.get::<i64, _>(0), r.get::<i32, _>(1)));
    let want = (i64::try_from(leads)?, SEED_VERSION);
    if reseed || seeded != Some(want) {
        seed(&mut conn, leads).await?;
    } else {
        println!("xtask bench: {db} already holds {leads} seeded leads; reusing it");
        cleanup(&mut conn).await?;
    }
    conn.close().await?;
    Ok(url)
}

/// Runs `freshplan migrate` on `url`; `false` when it fails.
pub(crate) fn migrate(freshplan: &Path, url: &str) -> Result<bool> {
    let out = Command::new(freshplan)
        .arg("migrate")
        .env("DATABASE_URL", url)
        .env("RUST_LOG", "warn")
        .env("RUST_BACKTRACE", "0")
        .output()
        .context("running freshplan migrate")?;
    if !out.status.success() {
        println!(
            "xtask bench: freshplan migrate failed: {}",
            String::from_utf8_lossy(&out.stderr)
                .lines()
                .take(6)
                .collect::<Vec<_>>()
                .join(" | ")
        );
    }
    Ok(out.status.success())
}

/// Removes what the write scenarios added (created leads, timeline entries, events, idempotency
/// keys) and refreshes statistics and the visibility map, so every run starts from the same data.
pub(crate) async fn cleanup(conn: &mut PgConnection) -> Result<()> {
    let started = Instant::now();
    let deleted = sqlx::query("delete from leads where company_name like 'Bench New %'")
        .execute(&mut *conn)
        .await?
        .rows_affected();
    conn.execute("truncate activities, event_outbox, idempotency_keys cascade")
        .await?;
    // The count read models churn with every write (deltas appended, folded, deleted); this
    // machine's PostgreSQL runs without autovacuum, and their dead rows would slow every later
    // write, list total and cockpit read (seen: 170,000 dead rows after a few runs, event
    // delivery in seconds instead of milliseconds).
    conn.execute(
        "vacuum (analyze) leads, lead_collaborators, activities, event_outbox, lead_counts, \
         lead_count_deltas, followup_figure_counts, followup_sent_counts, consent_changes",
    )
    .await?;
    println!(
        "xtask bench: reset the data ({deleted} created leads removed, vacuumed) in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Bulk-inserts `leads` leads consistent with the domain: duplicate keys as
/// `DuplicateKeys::of` computes them (company name lower-cased without its legal form, postal
/// code, country; the email lower-cased), `next_sweep_at` as `protection::next_due` (60 days
/// after the last meaningful contact or the registration), owners spread over the reps
/// (a fifth of them in CH), a tenth of the leads with a collaborator, mixed statuses, business
/// types and volumes.
pub(crate) async fn seed(conn: &mut PgConnection, leads: u64) -> Result<()> {
    let started = Instant::now();
    let reps = rep_count(leads);
    println!("xtask bench: seeding {leads} leads owned by {reps} reps (bulk SQL)");
    conn.execute("truncate leads, lead_collaborators, activities, followups, idempotency_keys, event_outbox, bench_seed cascade")
        .await?;
    const BATCH: u64 = 100_000;
    let mut from = 1;
    while from <= leads {
        let to = (from + BATCH - 1).min(leads);
        sqlx::query(SEED_SQL)
            .bind(i64::try_from(from)?)
            .bind(i64::try_from(to)?)
            .bind(i64::try_from(reps)?)
            .execute(&mut *conn)
            .await
            .context("seeding leads")?;
        println!(
            "xtask bench:   {to} leads ({:.0} s)",
            started.elapsed().as_secs_f64()
        );
        from = to + 1;
    }
    conn.execute("vacuum (analyze) leads, lead_collaborators")
        .await?;
    sqlx::query("insert into bench_seed (leads, version) values ($1, $2)")
        .bind(i64::try_from(leads)?)
        .bind(SEED_VERSION)
        .execute(&mut *conn)
        .await?;
    println!(
        "xtask bench: seeded in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// `$1..=$2`: the lead numbers; `$3`: the number of reps. `h` is a multiplicative hash of `n`
/// that spreads statuses, types and volumes independently of the owner.
const SEED_SQL: &str = r#"
insert into leads (
    id, version, company_name, contact_person, email, phone, website, street, postal_code, city,
    country_code, business_type, kitchen_size, employee_count, estimated_volume, industry, source,
    source_campaign, email_consent, email_consent_at, territory_id, status, owner_user_id,
    collaborator_user_ids, registered_at, last_activity_at, last_meaningful_contact_at,
    reminder_at, grace_until, clock_stopped_at, stop_reason, paused_seconds,
    paused_seconds_at_contact, created_at, created_by, updated_at, updated_by, email_key,
    company_key, next_sweep_at)
select id, version, company_name, 'Kontakt ' || n, email, '+49 30 ' || n, null,
       'Hauptstrasse ' || (n % 200 + 1), postal_code, city, territory, business_type,
       (array['SMALL', 'MEDIUM', 'LARGE'])[h % 3 + 1], (h % 250)::int,
       ((n * 7919) % 10000000) / 100.0, 'Gastronomie',
       (array['WEB', 'EMAIL', 'PHONE', 'EVENT', 'PARTNER', 'IMPORT'])[(h / 7) % 6 + 1], null,
       n % 2 = 0, case when n % 2 = 0 then registered_at end, territory, status, owner,
       case when n % 10 = 3 and owner is not null
            then array['rep-' || lpad(((rep + 4) % $3 + 1)::text, 4, '0')]
            else '{}'::text[] end,
       registered_at, coalesce(contact_at, registered_at), contact_at,
       null, null, null, null, 0, 0,
       registered_at, coalesce(owner, 'rep-0001'), coalesce(contact_at, registered_at),
       coalesce(owner, 'rep-0001'), email,
       '["' || lower(type_word || ' ' || name_word || ' ' || n) || '","' || postal_code || '","'
            || territory || '"]',
       case when status in ('REGISTERED', 'ACTIVE')
            then coalesce(contact_at, registered_at) + interval '60 days' end
  from (
    select n, h, rep, territory, status, business_type, type_word, name_word, registered_at,
           ('00000000-0000-4000-8000-' || lpad(to_hex(n), 12, '0'))::uuid as id,
           case status when 'REGISTERED' then 1 when 'ACTIVE' then 2 else 3 end as version,
           type_word || ' ' || name_word || ' ' || n
               || case territory when 'CH' then ' AG' else ' GmbH' end as company_name,
           'kontakt.' || n || '@' || lower(type_word) || '-' || n || '.de' as email,
           case territory when 'CH' then (1000 + n % 9000)::text
                else lpad((1067 + n % 98000)::text, 5, '0') end as postal_code,
           case territory
               when 'CH' then (array['Zürich', 'Basel', 'Bern', 'Luzern', 'St. Gallen'])[h % 5 + 1]
               else (array['Berlin', 'Hamburg', 'München', 'Köln', 'Frankfurt', 'Stuttgart',
                           'Düsseldorf', 'Leipzig', 'Dresden', 'Hannover'])[h % 10 + 1] end as city,
           case when status = 'EXPIRED' then null
                else 'rep-' || lpad(rep::text, 4, '0') end as owner,
           case when status <> 'REGISTERED'
                then registered_at + (now() - registered_at) / 2 end as contact_at
      from (
        select n, h, rep,
               case when rep % 5 = 0 then 'CH' else 'DE' end as territory,
               case when h % 1000 < 300 then 'REGISTERED'
                    when h % 1000 < 700 then 'ACTIVE'
                    when h % 1000 < 800 then 'QUALIFIED'
                    when h % 1000 < 850 then 'CONVERTED'
                    when h % 1000 < 950 then 'LOST'
                    else 'EXPIRED' end as status,
               (array['RESTAURANT', 'HOTEL', 'CANTEEN', 'CATERING', 'OTHER'])[(h / 1000) % 5 + 1]
                   as business_type,
               (array['Restaurant', 'Hotel', 'Kantine', 'Catering', 'Bistro'])[(h / 1000) % 5 + 1]
                   as type_word,
               (array['Adler', 'Linde', 'Post', 'Sonne', 'Krone', 'Hirsch', 'Rose', 'Stern',
                      'Anker', 'Eiche'])[(h / 5000) % 10 + 1] as name_word,
               now() - make_interval(mins => ((h / 50000) % 43200)::int) as registered_at
          from (
            select n, (n * 2654435761) % 4294967296 as h, n % $3 + 1 as rep
              from generate_series($1::bigint, $2::bigint) as n
          ) g
      ) s
  ) t
"#;
