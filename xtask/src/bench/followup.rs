//! `cargo xtask bench followup`: the follow-up and cockpit benchmark of issue 5.
//!
//! A dedicated database (`freshplan_bench_followup_1m`) holds 1M leads in bulk SQL, shaped for
//! follow-ups and numbered like the API bench's (`seed::lead_id`), registration time rising with
//! the number (as UUIDv7 ids rise with creation time):
//!
//! | leads (by number) | registered | follow-up state |
//! |---|---|---|
//! | the oldest (≈ 893k) | 2 years … 7 days ago | T+3 and T+7 done (SENT with consent, else SKIPPED `NO_CONSENT`), statuses mixed like the API bench's |
//! | 2k | 7 … 3 days ago | T+3 SENT, T+7 pending (not due) |
//! | **100k** (`--due`) | 7 … 3 days ago | **T+3 due**: 70 % REGISTERED, 30 % ACTIVE (contact long ago), 90 % with consent |
//! | 5k | the last 3 days | T+3 pending (not due) |
//!
//! Each invocation first re-arms this state relative to "now" (the recent leads' times and
//! follow-up records; the bench's own rows removed), then measures the cockpit (2, 3) on a
//! server with the real clock, runs the follow-ups (1), and measures the cockpit again (2, 3, 4)
//! — a morning before the run, and the same day after it:
//!
//! 1. **Follow-up run.** A release server with `POST /api/followups/run` as admin: duration
//!    (the request, and the report's `startedAt`…`finishedAt`), follow-ups per second, the
//!    server's peak RSS (`VmHWM`) once its event pipeline has delivered the run's events.
//!    Follow-ups go out only inside business hours (SPEC §6): outside them the run's server
//!    starts with `FRESHPLAN_ENV=development` and `FRESHPLAN_FOLLOWUP_CLOCK_OFFSET=+<n>s`
//!    (docs/decisions/0007 §11), which shifts its follow-up clock to the next business morning,
//!    and the due leads are placed relative to that instant.
//! 2. **Manager dashboard** (`GET /api/dashboard/followup` as a DE manager, sequential): the
//!    cached answer; the uncached one (a lead create invalidates the scope through the event
//!    pipeline before each sample, `generatedAt` proves the answer was computed afresh); and the
//!    store's figures query alone (`PgFollowUpStore::figures`, as the hub runs it).
//! 3. **Stream fan-out.** 1,000 clients on `GET /api/dashboard/followup-stream` (the same
//!    scope); per change (a lead create) the time from sending the create to the *last* client
//!    having the new figures.
//! 4. **First figures painted** in headless Chromium over WebDriver (`chromedriver`): the
//!    cockpit page's own `performance.mark('figures-painted')`, from navigation start; skipped
//!    (and said so) without Chromium.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use hyper::Method;
use serde_json::{Value, json};
use sqlx::{Connection as _, Executor as _, PgConnection, Row as _};
use time::OffsetDateTime;

use freshplan_followup::Scope;
use freshplan_kernel::{Actor, Role, TerritoryId, UserId};
use freshplan_store_postgres::PgFollowUpStore;

use super::events::{
    Http, Provenance, SseStream, median, mint_with_env, new_lead_body, per_run, percentile,
    thousands, verdict, warn_if_busy, write_section,
};
use super::server::Server;
use super::{SECRET, seed};

/// Options of `cargo xtask bench followup`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct FollowupArgs {
    /// Repetitions of the dashboard, stream and browser measurements in each state (before
    /// and after the follow-up run); the report gives medians.
    #[arg(long, default_value_t = 2)]
    runs: usize,
    /// Follow-up runs (each after re-arming the due leads); the cockpit is measured before
    /// the first and after the last.
    #[arg(long, default_value_t = 1)]
    followup_runs: usize,
    /// Seconds of sequential dashboard requests per kind (cached, uncached, store query).
    #[arg(long, default_value_t = 10)]
    secs: u64,
    /// Leads in the database.
    #[arg(long, default_value_t = 1_000_000)]
    leads: u64,
    /// Leads whose T+3 follow-up is due.
    #[arg(long, default_value_t = 100_000)]
    due: u64,
    /// Connected stream clients.
    #[arg(long, default_value_t = 1000)]
    clients: usize,
    /// Changes (lead creates) the stream clients must see, per repetition.
    #[arg(long, default_value_t = 20)]
    changes: usize,
    /// Measured page loads in Chromium per repetition (after one warm-up load); 0 skips.
    #[arg(long, default_value_t = 5)]
    page_loads: usize,
    /// Reseed even when the database already holds the requested shape.
    #[arg(long)]
    reseed: bool,
    /// Do not touch docs/BENCHMARKS.md (results still go to target/bench/).
    #[arg(long)]
    no_report: bool,
    /// Benchmark this `freshplan` binary instead of building the workspace's.
    #[arg(long)]
    server_binary: Option<PathBuf>,
}

/// Bump when the seed changes shape, so an older database is reseeded.
const SEED_VERSION: i32 = 3;
/// The unsubscribe key of the bench servers (32+ bytes, not a published default).
const UNSUBSCRIBE_SECRET: &str = "freshplan-bench-unsubscribe-key-0123456789abcdef";

/// The lead groups by number (see the module docs).
#[derive(Debug, Clone, Copy)]
struct Shape {
    leads: u64,
    due: u64,
    /// T+7 pending (T+3 done), not due.
    t7_pending: u64,
    /// T+3 pending, not due.
    fresh: u64,
}

impl Shape {
    fn new(leads: u64, due: u64) -> Result<Shape> {
        let s = Shape {
            leads,
            due,
            t7_pending: (due / 50).max(1),
            fresh: (due / 20).max(1),
        };
        if s.due == 0 || s.old() < 1000 {
            bail!("--due must be positive and leave at least 1000 older leads");
        }
        Ok(s)
    }
    fn old(self) -> u64 {
        self.leads
            .saturating_sub(self.due + self.t7_pending + self.fresh)
    }
    /// First number of the T+7-pending group; the due group follows it, then the fresh one.
    fn t7_from(self) -> u64 {
        self.old() + 1
    }
    fn due_from(self) -> u64 {
        self.t7_from() + self.t7_pending
    }
    fn fresh_from(self) -> u64 {
        self.due_from() + self.due
    }
}

#[derive(Debug, Clone, Default)]
struct RunSample {
    /// The request, client side.
    request_s: f64,
    /// `finishedAt - startedAt` of the report (the server's clock).
    server_s: f64,
    t3: u64,
    t7: u64,
    skipped: u64,
    rss_start_kib: u64,
    rss_peak_kib: u64,
    /// The clock shift of the run's server, seconds (0: the real clock).
    shift_s: i64,
}

impl RunSample {
    fn processed(&self) -> u64 {
        self.t3 + self.t7 + self.skipped
    }
}

/// The cockpit measurements in one state of the data.
#[derive(Debug, Default)]
struct StateResults {
    cached_ms: Vec<Vec<f64>>,
    uncached_ms: Vec<Vec<f64>>,
    uncached_retries: u64,
    store_ms: Vec<Vec<f64>>,
    figures: Option<Value>,
    /// Per repetition: per change, send of the create → last client.
    last_ms: Vec<Vec<f64>>,
    /// Per repetition: per change, `201` → last client.
    last_ack_ms: Vec<Vec<f64>>,
    /// Every client's receipt, from the create's send.
    every_ms: Vec<f64>,
    missed: u64,
}

/// Before the follow-up run (T+3 due, nothing sent today) and after it (the due leads' T+3
/// sent today, their T+7 pending).
const STATES: [&str; 2] = ["before the run", "after the run"];

#[derive(Debug, Default)]
struct Results {
    prov: Provenance,
    shape: Option<Shape>,
    runs: usize,
    secs: u64,
    clients: usize,
    changes: usize,
    followup: Vec<RunSample>,
    states: [StateResults; 2],
    paint_ms: Vec<f64>,
    browser_note: Option<String>,
}

pub(crate) fn run(root: &Path, args: FollowupArgs) -> Result<()> {
    if args.runs == 0
        || args.followup_runs == 0
        || args.secs == 0
        || args.clients == 0
        || args.changes == 0
    {
        bail!("--runs, --followup-runs, --secs, --clients and --changes must be positive");
    }
    let shape = Shape::new(args.leads, args.due)?;
    warn_if_busy();
    let freshplan = match &args.server_binary {
        Some(path) => path.clone(),
        None => super::build_release(root)?,
    };
    let pg = crate::pg::ensure_postgres(root)?;
    let work = super::target_dir(root).join("bench");
    std::fs::create_dir_all(&work)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let clock = Instant::now();
    let mut prov = Provenance::now(root);
    let mut results = runtime.block_on(measure(&args, shape, &freshplan, pg.url(), &work))?;
    drop(runtime);
    drop(pg);
    prov.postgres = std::mem::take(&mut results.prov.postgres);
    prov.elapsed_secs = clock.elapsed().as_secs();
    results.prov = prov;
    let section = section(&results);
    println!("\n{section}");
    let saved = work.join("followup-latest.md");
    std::fs::write(&saved, &section)?;
    println!("xtask bench: results saved to {}", saved.display());
    if !args.no_report {
        let path = write_section(root, "followup", &section)?;
        println!("xtask bench: updated {}", path.display());
    }
    Ok(())
}

async fn measure(
    args: &FollowupArgs,
    shape: Shape,
    freshplan: &Path,
    admin_url: &str,
    work: &Path,
) -> Result<Results> {
    let url = prepare(admin_url, freshplan, shape, args.reseed).await?;
    let mut db = PgConnection::connect(&url).await?;
    let mut results = Results {
        shape: Some(shape),
        runs: args.runs,
        secs: args.secs,
        clients: args.clients,
        changes: args.changes,
        ..Results::default()
    };
    results.prov.postgres = Provenance::postgres_of(&mut db).await?;
    let base_env = vec![
        ("FRESHPLAN_SWEEP_ENABLED", "false".to_owned()),
        (
            "FRESHPLAN_UNSUBSCRIBE_SECRET",
            UNSUBSCRIBE_SECRET.to_owned(),
        ),
        ("FRESHPLAN_PUBLIC_URL", "http://bench.invalid".to_owned()),
    ];
    let tokens = Tokens {
        manager: super::mint(freshplan, "bench-manager-de", "manager", "DE")?,
        rep: super::mint(freshplan, &seed::rep_id(1), "sales", seed::rep_territory(1))?,
    };
    let pid = std::process::id();

    for f in 0..args.followup_runs {
        // The due leads, placed relative to the run's "now" (shifted into business hours when
        // needed; the same shift for the data and for the server's clock).
        let shift = business_shift(OffsetDateTime::now_utc());
        let anchor = OffsetDateTime::now_utc() + time::Duration::seconds(shift);
        rearm(&mut db, shape, anchor).await?;
        if f == 0 {
            cockpit(
                args,
                freshplan,
                &url,
                work,
                &base_env,
                &tokens,
                &mut results,
                0,
                &format!("{pid}b"),
            )
            .await?;
        }
        let mut env = base_env.clone();
        if shift > 0 {
            env.push(("FRESHPLAN_ENV", "development".to_owned()));
            env.push(("FRESHPLAN_FOLLOWUP_CLOCK_OFFSET", format!("+{shift}s")));
            println!(
                "xtask bench: outside business hours: the run's follow-up clock runs {:.1} h \
                 ahead (FRESHPLAN_FOLLOWUP_CLOCK_OFFSET), from {anchor}",
                shift as f64 / 3600.0
            );
        }
        let mut sample = followup_run(freshplan, &url, work, &env).await?;
        sample.shift_s = shift;
        check_counts(&mut db).await?;
        println!(
            "xtask bench: follow-up run {} of {}: {} processed (T+3 sent {}, skipped {}) in \
             {:.1} s ({:.0}/s); peak RSS {:.1} MB",
            f + 1,
            args.followup_runs,
            sample.processed(),
            sample.t3,
            sample.skipped,
            sample.request_s,
            sample.processed() as f64 / sample.request_s,
            sample.rss_peak_kib as f64 * 1024.0 / 1e6
        );
        results.followup.push(sample);
    }
    // No VACUUM after the run: the figures read the counts of migrations/0006, not the rows the
    // run touched, so the cockpit is measured as autovacuum leaves the tables.
    cockpit(
        args,
        freshplan,
        &url,
        work,
        &base_env,
        &tokens,
        &mut results,
        1,
        &format!("{pid}a"),
    )
    .await?;
    // Leave the database as a next invocation expects it (the bench's own leads removed).
    db.execute("delete from leads where company_name like 'Bench New %'")
        .await?;
    db.close().await?;
    Ok(results)
}

struct Tokens {
    manager: String,
    rep: String,
}

/// `--runs` repetitions of the dashboard and stream measurements (and, after the run, the
/// browser's) in state `state`, on a server with the real clock.
#[allow(clippy::too_many_arguments)] // two call sites; a struct would only rename them
async fn cockpit(
    args: &FollowupArgs,
    freshplan: &Path,
    url: &str,
    work: &Path,
    env: &[(&str, String)],
    tokens: &Tokens,
    results: &mut Results,
    state: usize,
    tag: &str,
) -> Result<()> {
    let server = Server::start_with_env(
        freshplan,
        url,
        SECRET,
        &work.join("followup-server.log"),
        env,
    )
    .await?;
    for r in 0..args.runs {
        println!(
            "xtask bench: {}, repetition {} of {}",
            STATES[state],
            r + 1,
            args.runs
        );
        let (cached, uncached, retries, figures) = dashboard(
            server.addr,
            &tokens.manager,
            &tokens.rep,
            args.secs,
            &format!("{tag}{r}d"),
        )
        .await?;
        let store = store_query(url, args.secs).await?;
        println!(
            "xtask bench:   dashboard p95: cached {:.2} ms ({} samples), uncached {:.2} ms ({}), \
             store query {:.2} ms ({})",
            percentile(&cached, 0.95),
            cached.len(),
            percentile(&uncached, 0.95),
            uncached.len(),
            percentile(&store, 0.95),
            store.len()
        );
        let fan = fan_out(
            server.addr,
            &tokens.manager,
            &tokens.rep,
            args.clients,
            args.changes,
            &format!("{tag}{r}s"),
        )
        .await?;
        println!(
            "xtask bench:   {} stream clients: create → last client p50 {:.1} ms, p99 {:.1} ms \
             (from the 201: p99 {:.1} ms); {} receipts missed",
            args.clients,
            percentile(&fan.last_ms, 0.5),
            percentile(&fan.last_ms, 0.99),
            percentile(&fan.last_ack_ms, 0.99),
            fan.missed
        );
        let st = &mut results.states[state];
        st.cached_ms.push(cached);
        st.uncached_ms.push(uncached);
        st.uncached_retries += retries;
        st.store_ms.push(store);
        st.figures = Some(figures);
        st.last_ms.push(fan.last_ms);
        st.last_ack_ms.push(fan.last_ack_ms);
        st.every_ms.extend(fan.every_ms);
        st.missed += fan.missed;

        if state == 1 && args.page_loads > 0 && results.browser_note.is_none() {
            match first_paint(server.addr, &tokens.manager, args.page_loads, work).await {
                Ok(v) => {
                    println!("xtask bench:   first figures painted: {}", per_run(&v, 1));
                    results.paint_ms.extend(v);
                }
                Err(e) => {
                    println!("xtask bench:   browser measurement skipped: {e:#}");
                    results.browser_note = Some(format!("{e:#}"));
                }
            }
        }
    }
    if args.page_loads == 0 {
        results.browser_note = Some("skipped (`--page-loads 0`)".into());
    }
    drop(server);
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Data
// ---------------------------------------------------------------------------------------------

async fn prepare(admin_url: &str, freshplan: &Path, shape: Shape, reseed: bool) -> Result<String> {
    let db = if shape.leads.is_multiple_of(1_000_000) {
        format!("freshplan_bench_followup_{}m", shape.leads / 1_000_000)
    } else {
        format!("freshplan_bench_followup_{}", shape.leads)
    };
    let url = seed::with_database(admin_url, &db)?;
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

    // Superuser, like the API bench: seeding bypasses row-level security.
    let mut conn = PgConnection::connect(&url).await?;
    conn.execute(
        "create table if not exists bench_followup_seed (leads bigint not null, due bigint not \
         null, version int not null)",
    )
    .await?;
    let seeded = sqlx::query("select leads, due, version from bench_followup_seed")
        .fetch_optional(&mut conn)
        .await?
        .map(|r| (r.get::<i64, _>(0), r.get::<i64, _>(1), r.get::<i32, _>(2)));
    let want = (
        i64::try_from(shape.leads)?,
        i64::try_from(shape.due)?,
        SEED_VERSION,
    );
    if reseed || seeded != Some(want) {
        seed_leads(&mut conn, shape).await?;
        sqlx::query("insert into bench_followup_seed (leads, due, version) values ($1, $2, $3)")
            .bind(want.0)
            .bind(want.1)
            .bind(want.2)
            .execute(&mut conn)
            .await?;
    } else {
        println!("xtask bench: {db} already holds the seeded leads; reusing it");
    }
    conn.close().await?;
    Ok(url)
}

fn migrate(freshplan: &Path, url: &str) -> Result<bool> {
    let out = Command::new(freshplan)
        .arg("migrate")
        .env("DATABASE_URL", url)
        .env("RUST_LOG", "warn")
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

/// Bulk-inserts the leads and the older leads' follow-up records with triggers off (this
/// session in `replica` mode), then rebuilds what the triggers would have maintained: the lead
/// counts (0005) and the conversion counts (0004). The recent groups get their times from
/// [`rearm`].
async fn seed_leads(conn: &mut PgConnection, shape: Shape) -> Result<()> {
    let started = Instant::now();
    let reps = seed::rep_count(shape.leads);
    println!(
        "xtask bench: seeding {} leads ({} with T+3 due) owned by {reps} reps (bulk SQL)",
        thousands(shape.leads),
        thousands(shape.due)
    );
    conn.execute(
        "truncate leads, lead_collaborators, activities, followups, idempotency_keys, \
         event_outbox, mail_outbox, followup_runs, bench_followup_seed cascade",
    )
    .await?;
    conn.execute("set session_replication_role = replica")
        .await?;
    const BATCH: u64 = 100_000;
    let mut from = 1;
    while from <= shape.leads {
        let to = (from + BATCH - 1).min(shape.leads);
        sqlx::query(SEED_SQL)
            .bind(i64::try_from(from)?)
            .bind(i64::try_from(to)?)
            .bind(i64::try_from(reps)?)
            .bind(i64::try_from(shape.old())?)
            .bind(i64::try_from(shape.due_from())?)
            .bind(i64::try_from(shape.fresh_from())?)
            .execute(&mut *conn)
            .await
            .context("seeding leads")?;
        println!(
            "xtask bench:   {} leads ({:.0} s)",
            thousands(to),
            started.elapsed().as_secs_f64()
        );
        from = to + 1;
    }
    sqlx::query(OLD_FOLLOWUPS_SQL)
        .bind(uuid::Uuid::parse_str(&seed::lead_id(shape.old()))?)
        .execute(&mut *conn)
        .await
        .context("seeding follow-up records")?;
    sqlx::query(
        "update leads set followup_t3_sent_at = registered_at + interval '3 days', \
                followup_t7_sent_at = registered_at + interval '7 days' \
          where id <= $1::uuid and followup_sent",
    )
    .bind(uuid::Uuid::parse_str(&seed::lead_id(shape.old()))?)
    .execute(&mut *conn)
    .await
    .context("seeding the follow-up send times")?;
    conn.execute(
        "update lead_counts set n = 0 where n <> 0; delete from lead_count_deltas; \
         insert into lead_counts (territory_id, status, business_type, n) \
         select territory_id, status, coalesce(business_type, ''), count(*) from leads \
          group by 1, 2, 3 \
         on conflict (territory_id, status, business_type) do update set n = excluded.n",
    )
    .await?;
    conn.execute("set session_replication_role = origin")
        .await?;
    println!(
        "xtask bench:   follow-up records and counts ({:.0} s)",
        started.elapsed().as_secs_f64()
    );
    rearm(conn, shape, OffsetDateTime::now_utc()).await?;
    println!(
        "xtask bench: seeded in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Puts the recent lead groups in place relative to `anchor` (the follow-up run's "now"): their
/// registration times, follow-up progress and records, and removes what earlier runs wrote
/// (created leads, mails, activities, events, run log). Then refreshes statistics.
async fn rearm(conn: &mut PgConnection, shape: Shape, anchor: OffsetDateTime) -> Result<()> {
    let started = Instant::now();
    // With the triggers on: the cascades remove the created leads' rows, the counts follow.
    conn.execute("delete from leads where company_name like 'Bench New %'")
        .await?;
    conn.execute("truncate activities, mail_outbox, event_outbox, idempotency_keys, followup_runs")
        .await?;
    let first = uuid::Uuid::parse_str(&seed::lead_id(shape.t7_from()))?;
    let last = uuid::Uuid::parse_str(&seed::lead_id(shape.leads))?;
    let mut tx = conn.begin().await?;
    (&mut *tx)
        .execute("set local session_replication_role = replica")
        .await?;
    sqlx::query("delete from followups where lead_id between $1::uuid and $2::uuid")
        .bind(first)
        .bind(last)
        .execute(&mut *tx)
        .await?;
    sqlx::query(REARM_SQL)
        .bind(i64::try_from(shape.t7_from())?)
        .bind(i64::try_from(shape.t7_pending)?)
        .bind(i64::try_from(shape.due_from())?)
        .bind(i64::try_from(shape.due)?)
        .bind(i64::try_from(shape.fresh_from())?)
        .bind(i64::try_from(shape.fresh)?)
        .bind(anchor)
        .execute(&mut *tx)
        .await
        .context("re-arming the due leads")?;
    sqlx::query(
        "insert into followups (lead_id, territory_id, stage, status, reason, processed_at) \
         select id, territory_id, 'T3', 'SENT', null, registered_at + interval '3 days' \
           from leads where id between $1::uuid and $2::uuid",
    )
    .bind(first)
    .bind(uuid::Uuid::parse_str(&seed::lead_id(shape.due_from() - 1))?)
    .execute(&mut *tx)
    .await?;
    (&mut *tx)
        .execute(
            "delete from followup_sent_counts; \
         insert into followup_sent_counts (territory_id, owner_user_id, status, n) \
         select territory_id, coalesce(owner_user_id, ''), status, count(*) from leads \
          where followup_sent group by 1, 2, 3; \
         select freshplan_rebuild_followup_figure_counts()",
        )
        .await?;
    tx.commit().await?;
    conn.execute("vacuum (analyze) leads, followups, followup_sent_counts, followup_figure_counts")
        .await?;
    let due: i64 = sqlx::query_scalar(
        "select count(*) from leads where status in ('REGISTERED', 'ACTIVE') \
           and clock_stopped_at is null and followup_next_stage = 'T3' \
           and registered_at <= $1 - interval '3 days'",
    )
    .bind(anchor)
    .fetch_one(&mut *conn)
    .await?;
    if u64::try_from(due)? != shape.due {
        bail!("re-arming left {due} leads due instead of {}", shape.due);
    }
    println!(
        "xtask bench:   re-armed {} due leads for {anchor} in {:.1} s",
        thousands(shape.due),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// `$1..=$2` lead numbers, `$3` reps, `$4` old leads, `$5` first due, `$6` first fresh lead.
/// Like the API bench's seed (duplicate keys as `DuplicateKeys::of`, owners, names), with the
/// old leads registered over two years up to 7 days ago, both follow-ups done
/// (`followup_next_stage` null; `followup_sent` with consent), and the recent ones open with the
/// statuses [`rearm`] expects.
const SEED_SQL: &str = r#"
insert into leads (
    id, version, company_name, contact_person, email, phone, website, street, postal_code, city,
    country_code, business_type, kitchen_size, employee_count, estimated_volume, industry, source,
    source_campaign, email_consent, email_consent_at, territory_id, status, owner_user_id,
    collaborator_user_ids, registered_at, last_activity_at, last_meaningful_contact_at,
    reminder_at, grace_until, clock_stopped_at, stop_reason, paused_seconds,
    paused_seconds_at_contact, created_at, created_by, updated_at, updated_by, email_key,
    company_key, next_sweep_at, followup_next_stage, followup_sent)
select id, version, company_name, 'Kontakt ' || n, email, '+49 30 ' || n, null,
       'Hauptstrasse ' || (n % 200 + 1), postal_code, city, territory, business_type,
       (array['SMALL', 'MEDIUM', 'LARGE'])[h % 3 + 1], (h % 250)::int,
       ((n * 7919) % 10000000) / 100.0, 'Gastronomie',
       (array['WEB', 'EMAIL', 'PHONE', 'EVENT', 'PARTNER', 'IMPORT'])[(h / 7) % 6 + 1], null,
       consent, case when consent then registered_at end, territory, status, owner, '{}'::text[],
       registered_at, coalesce(contact_at, registered_at), contact_at,
       null, null, null, null, 0, 0,
       registered_at, coalesce(owner, 'rep-0001'), coalesce(contact_at, registered_at),
       coalesce(owner, 'rep-0001'), email,
       '["' || lower(type_word || ' ' || name_word || ' ' || n) || '","' || postal_code || '","'
            || territory || '"]',
       case when status in ('REGISTERED', 'ACTIVE')
            then coalesce(contact_at, registered_at) + interval '60 days' end,
       case when n > $4 then 'T3' end,
       n <= $4 and consent
  from (
    select n, h, territory, status, consent, business_type, type_word, name_word, registered_at,
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
           case when status = 'ACTIVE' and n > $4 then registered_at + interval '1 minute'
                when status <> 'REGISTERED' then registered_at + (now() - registered_at) / 2
           end as contact_at
      from (
        select n, h, rep,
               case when rep % 5 = 0 then 'CH' else 'DE' end as territory,
               case when n > $4 and n < $5 then 'REGISTERED'
                    when n >= $5 and n < $6 then
                         case when h % 10 < 7 then 'REGISTERED' else 'ACTIVE' end
                    when n >= $6 then 'REGISTERED'
                    when h % 1000 < 300 then 'REGISTERED'
                    when h % 1000 < 700 then 'ACTIVE'
                    when h % 1000 < 800 then 'QUALIFIED'
                    when h % 1000 < 850 then 'CONVERTED'
                    when h % 1000 < 950 then 'LOST'
                    else 'EXPIRED' end as status,
               case when n <= $4 then n % 2 = 0
                    when n >= $5 and n < $6 then n % 10 <> 0
                    else true end as consent,
               (array['RESTAURANT', 'HOTEL', 'CANTEEN', 'CATERING', 'OTHER'])[(h / 1000) % 5 + 1]
                   as business_type,
               (array['Restaurant', 'Hotel', 'Kantine', 'Catering', 'Bistro'])[(h / 1000) % 5 + 1]
                   as type_word,
               (array['Adler', 'Linde', 'Post', 'Sonne', 'Krone', 'Hirsch', 'Rose', 'Stern',
                      'Anker', 'Eiche'])[(h / 5000) % 10 + 1] as name_word,
               case when n <= $4
                    then now() - interval '7 days 2 hours'
                         - make_interval(secs => (($4 - n) * (723.0 * 86400 / $4))::float8)
                    else now() - interval '1 day' end as registered_at
          from (
            select n, (n * 2654435761) % 4294967296 as h, n % $3 + 1 as rep
              from generate_series($1::bigint, $2::bigint) as n
          ) g
      ) s
  ) t
"#;

/// The older leads' T+3 and T+7 records (`$1`: the last old lead's id): SENT with consent, else
/// SKIPPED `NO_CONSENT`, at registration + 3 / + 7 days.
const OLD_FOLLOWUPS_SQL: &str = "
insert into followups (lead_id, territory_id, stage, status, reason, processed_at, created_at)
select l.id, l.territory_id, s.stage,
       case when l.email_consent then 'SENT' else 'SKIPPED' end,
       case when l.email_consent then null else 'NO_CONSENT' end,
       l.registered_at + s.days, l.registered_at + s.days
  from leads l
 cross join (values ('T3', interval '3 days'), ('T7', interval '7 days')) as s(stage, days)
 where l.id <= $1::uuid
";

/// `$1`/`$2`: first number and size of the T+7-pending group, `$3`/`$4` of the due group,
/// `$5`/`$6` of the fresh group; `$7` the run's now. Due and T+7-pending leads are registered
/// between 6 d 23 h and 3 d 1 h before it (T+3 due, T+7 not), fresh ones in the last 71 h; an
/// ACTIVE lead's contact a minute after its registration (not recent).
const REARM_SQL: &str = "
update leads l
   set registered_at = g.reg, created_at = g.reg,
       last_meaningful_contact_at = case when l.status = 'ACTIVE' then g.reg + interval '1 minute' end,
       last_activity_at = case when l.status = 'ACTIVE' then g.reg + interval '1 minute' else g.reg end,
       updated_at = case when l.status = 'ACTIVE' then g.reg + interval '1 minute' else g.reg end,
       email_consent_at = case when l.email_consent then g.reg end,
       next_sweep_at = case when l.status = 'ACTIVE' then g.reg + interval '1 minute' else g.reg end
                       + interval '60 days',
       followup_next_stage = g.stage,
       followup_sent = g.sent,
       followup_t3_sent_at = case when g.sent then g.reg + interval '3 days' end,
       followup_t7_sent_at = null
  from (
    select ('00000000-0000-4000-8000-' || lpad(to_hex(n), 12, '0'))::uuid as id,
           case when n < $5
                then $7::timestamptz - interval '6 days 23 hours'
                     + make_interval(secs => ((case when n < $3 then n - $1 else n - $3 end)
                                              * (94.0 * 3600 / case when n < $3 then $2 else $4 end))::float8)
                else $7::timestamptz - interval '71 hours'
                     + make_interval(secs => ((n - $5) * (70.0 * 3600 / $6))::float8)
           end as reg,
           case when n < $3 then 'T7' else 'T3' end as stage,
           n < $3 as sent
      from generate_series($1::bigint, $5::bigint + $6::bigint - 1) as n
  ) g
 where l.id = g.id
";

// ---------------------------------------------------------------------------------------------
// 1. The follow-up run
// ---------------------------------------------------------------------------------------------

/// Seconds to add to `now` so that both territories are in business hours for the next 75
/// minutes (0 when they already are), a quarter of an hour into the slot.
pub(crate) fn business_shift(now: OffsetDateTime) -> i64 {
    use freshplan_territory::{in_business_hours, next_business_slot};
    let open = |t: OffsetDateTime| {
        [TerritoryId::De, TerritoryId::Ch].into_iter().all(|z| {
            in_business_hours(z, t) && in_business_hours(z, t + time::Duration::minutes(75))
        })
    };
    if open(now) {
        return 0;
    }
    let mut t = now;
    for _ in 0..400 {
        t = next_business_slot(TerritoryId::Ch, next_business_slot(TerritoryId::De, t));
        let at = t + time::Duration::minutes(15);
        if open(at) {
            return (at - now).whole_seconds();
        }
        t += time::Duration::hours(1);
    }
    0
}

async fn followup_run(
    freshplan: &Path,
    url: &str,
    work: &Path,
    env: &[(&str, String)],
) -> Result<RunSample> {
    let admin = mint_with_env(freshplan, env, "bench-admin", "admin", "")?;
    let server =
        Server::start_with_env(freshplan, url, SECRET, &work.join("followup-run.log"), env).await?;
    let (rss_start_kib, _) = server.memory_kib()?;
    let mut http = Http::open(server.addr).await?;
    let started = Instant::now();
    let (status, body) = http
        .call(Method::POST, "/api/followups/run", Some(&admin), None)
        .await?;
    let request_s = started.elapsed().as_secs_f64();
    if status != 200 {
        bail!(
            "POST /api/followups/run: HTTP {status}: {}",
            String::from_utf8_lossy(&body[..body.len().min(500)])
        );
    }
    let report: Value = serde_json::from_slice(&body)?;
    let at = |k: &str| {
        report[k].as_str().and_then(|t| {
            OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).ok()
        })
    };
    let server_s = match (at("startedAt"), at("finishedAt")) {
        (Some(a), Some(b)) => (b - a).as_seconds_f64(),
        _ => f64::NAN,
    };
    // The peak includes delivering the run's events to this replica's consumers: wait until the
    // pipeline has caught up (its `freshplan_outbox_pending` gauge is 0), at most 60 s.
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        let text = http.get_text("/metrics", None).await.unwrap_or_default();
        let pending = text
            .lines()
            .find_map(|l| l.strip_prefix("freshplan_outbox_pending "))
            .and_then(|v| v.trim().parse::<f64>().ok());
        if pending == Some(0.0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let (rss_peak_kib, _) = server.memory_kib()?;
    let n = |k: &str| report[k].as_u64().unwrap_or(0);
    Ok(RunSample {
        request_s,
        server_s,
        t3: n("t3Count"),
        t7: n("t7Count"),
        skipped: n("skippedCount"),
        rss_start_kib,
        rss_peak_kib,
        shift_s: 0,
    })
}

/// The cockpit's count read models after a run equal a recount from the leads (the run folds
/// and vacuums them while its batches append deltas, migrations/0007): pending per stage, the
/// run's day's sent counts (the latest day the counts hold) and the conversion counts, per
/// territory and owner. A difference fails the bench.
async fn check_counts(db: &mut PgConnection) -> Result<()> {
    let differences: i64 = sqlx::query_scalar(
        "with d as (select max(day) as day from followup_figure_counts where metric = 'SENT'),          truth as (              select c.t, c.o, c.m, c.d, sum(c.n)::bigint as n                from (select l.territory_id, coalesce(l.owner_user_id, ''),                             freshplan_followup_pending(l.status, l.clock_stopped_at,                                                        l.followup_next_stage),                             null::date, 1                        from leads l                      union all                      select l.territory_id, coalesce(l.owner_user_id, ''), 'SENT',                             freshplan_berlin_day(x.at), 1                        from leads l, d,                             unnest(array[l.followup_t3_sent_at, l.followup_t7_sent_at]) x(at)                       where l.status <> 'DELETED' and freshplan_berlin_day(x.at) = d.day                     ) c(t, o, m, d, n)               where c.m is not null               group by 1, 2, 3, 4),          model as (              select territory_id, owner_user_id, metric, f.day, sum(n)::bigint                from followup_figure_counts f, d               where metric <> 'SENT' or f.day = d.day               group by 1, 2, 3, 4 having sum(n) <> 0),          sent_truth as (              select territory_id, coalesce(owner_user_id, ''), status, count(*)::bigint                from leads where followup_sent group by 1, 2, 3),          sent_model as (              select territory_id, owner_user_id, status, sum(n)::bigint                from followup_sent_counts group by 1, 2, 3 having sum(n) <> 0)          select (select count(*) from ((select * from truth except select * from model)                                        union all                                        (select * from model except select * from truth)) a)               + (select count(*) from ((select * from sent_truth except select * from sent_model)                                        union all                                        (select * from sent_model except select * from sent_truth)) b)",
    )
    .fetch_one(&mut *db)
    .await
    .context("checking the count read models")?;
    if differences != 0 {
        bail!("after the run, {differences} count keys differ from a recount of the leads");
    }
    println!("xtask bench:   the cockpit's counts equal a recount of the leads");
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// 2. The manager dashboard
// ---------------------------------------------------------------------------------------------

async fn create_lead(http: &mut Http, rep: &str, n: &str) -> Result<()> {
    let (status, body) = http
        .call(
            Method::POST,
            "/api/leads",
            Some(rep),
            Some(("application/json", new_lead_body(n, "DE"))),
        )
        .await?;
    if status != 201 {
        bail!(
            "POST /api/leads: HTTP {status}: {}",
            String::from_utf8_lossy(&body[..body.len().min(300)])
        );
    }
    Ok(())
}

/// One `GET /api/dashboard/followup`: (ms, figures).
async fn figures_once(http: &mut Http, token: &str) -> Result<(f64, Value)> {
    let t = Instant::now();
    let text = http
        .get_text("/api/dashboard/followup", Some(token))
        .await?;
    let ms = t.elapsed().as_secs_f64() * 1000.0;
    Ok((ms, serde_json::from_str(&text)?))
}

/// Cached and uncached `GET /api/dashboard/followup` as the DE manager, `secs` seconds each;
/// returns both latency lists (ms), how often an uncached sample had to be retried (the
/// invalidation had not arrived yet), and the last figures.
async fn dashboard(
    addr: SocketAddr,
    manager: &str,
    rep: &str,
    secs: u64,
    tag: &str,
) -> Result<(Vec<f64>, Vec<f64>, u64, Value)> {
    let mut http = Http::open(addr).await?;
    let mut writer = Http::open(addr).await?;
    // Warm-up (also computes the scope's first snapshot).
    for _ in 0..50 {
        figures_once(&mut http, manager).await?;
    }
    let mut cached = Vec::new();
    let end = Instant::now() + Duration::from_secs(secs);
    let mut last = Value::Null;
    while Instant::now() < end {
        let (ms, v) = figures_once(&mut http, manager).await?;
        cached.push(ms);
        last = v;
    }
    let mut uncached = Vec::new();
    let mut retries = 0;
    let end = Instant::now() + Duration::from_secs(secs);
    let mut i = 0u64;
    while Instant::now() < end {
        let before = last["generatedAt"].clone();
        create_lead(&mut writer, rep, &format!("{tag}-{i}")).await?;
        i += 1;
        // Delivery to this replica's cockpit consumer takes milliseconds.
        tokio::time::sleep(Duration::from_millis(30)).await;
        loop {
            let (ms, v) = figures_once(&mut http, manager).await?;
            if v["generatedAt"] != before {
                uncached.push(ms);
                last = v;
                break;
            }
            retries += 1;
            if retries > 1000 {
                bail!("the dashboard never recomputed after a change");
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    Ok((cached, uncached, retries, last))
}

/// The store's figures query for the DE manager's scope, as the hub runs it (as `system`, with
/// the scope), sequentially for `secs` seconds; ms.
async fn store_query(url: &str, secs: u64) -> Result<Vec<f64>> {
    let pool = freshplan_store_postgres::connect(url, 1).await?;
    let store = PgFollowUpStore::new(pool.clone());
    let manager = Actor::new(
        UserId::parse("bench-manager-de")?,
        [Role::Manager],
        [TerritoryId::De],
    );
    let scope = Scope::for_actor(&manager, None);
    for _ in 0..20 {
        store
            .figures(&Actor::system(), &scope, OffsetDateTime::now_utc())
            .await?;
    }
    let mut out = Vec::new();
    let end = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < end {
        let t = Instant::now();
        store
            .figures(&Actor::system(), &scope, OffsetDateTime::now_utc())
            .await?;
        out.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    pool.close().await;
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// 3. Stream fan-out
// ---------------------------------------------------------------------------------------------

struct FanOut {
    last_ms: Vec<f64>,
    last_ack_ms: Vec<f64>,
    every_ms: Vec<f64>,
    missed: u64,
}

async fn fan_out(
    addr: SocketAddr,
    manager: &str,
    rep: &str,
    clients: usize,
    changes: usize,
    tag: &str,
) -> Result<FanOut> {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(usize, u64, Instant)>();
    let mut tasks = Vec::with_capacity(clients);
    let path = "/api/dashboard/followup-stream";
    let connected = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    for chunk in 0..clients.div_ceil(50) {
        let mut opening = Vec::new();
        for c in chunk * 50..((chunk + 1) * 50).min(clients) {
            let manager = manager.to_owned();
            opening.push(tokio::spawn(async move {
                (c, SseStream::connect(addr, path, &manager).await)
            }));
        }
        for o in opening {
            let (c, stream) = o.await?;
            let mut stream = stream.with_context(|| format!("stream client {c}"))?;
            let tx = tx.clone();
            let connected = std::sync::Arc::clone(&connected);
            connected.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tasks.push(tokio::spawn(async move {
                while let Ok(Some(m)) = stream.next().await {
                    let at = Instant::now();
                    if m.event.as_deref() != Some("followup-metrics") {
                        continue;
                    }
                    let pending = serde_json::from_str::<Value>(&m.data)
                        .ok()
                        .and_then(|v| v["pendingT3"].as_u64())
                        .unwrap_or(0);
                    if tx.send((c, pending, at)).is_err() {
                        return;
                    }
                }
            }));
        }
    }
    drop(tx);
    // Every client's first message: the current figures.
    let mut base = 0;
    let mut first = vec![false; clients];
    let mut seen = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    while seen < clients {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, rx.recv()).await {
            Ok(Some((c, pending, _))) => {
                if !first[c] {
                    first[c] = true;
                    seen += 1;
                    base = base.max(pending);
                }
            }
            _ => bail!("only {seen} of {clients} stream clients got their first figures"),
        }
    }
    println!(
        "xtask bench:   {} stream clients connected",
        connected.load(std::sync::atomic::Ordering::Relaxed)
    );
    let mut writer = Http::open(addr).await?;
    let mut out = FanOut {
        last_ms: Vec::new(),
        last_ack_ms: Vec::new(),
        every_ms: Vec::new(),
        missed: 0,
    };
    for k in 1..=changes as u64 {
        let want = base + k;
        let sent = Instant::now();
        create_lead(&mut writer, rep, &format!("{tag}-{k}")).await?;
        let acked = Instant::now();
        let mut got = vec![false; clients];
        let mut n = 0;
        let mut last = sent;
        let deadline = sent + Duration::from_secs(10);
        while n < clients {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, rx.recv()).await {
                Ok(Some((c, pending, at))) if pending >= want && !got[c] => {
                    got[c] = true;
                    n += 1;
                    last = last.max(at);
                    out.every_ms
                        .push(at.saturating_duration_since(sent).as_secs_f64() * 1000.0);
                }
                Ok(Some(_)) => {}
                _ => break,
            }
        }
        out.missed += (clients - n) as u64;
        out.last_ms
            .push(last.saturating_duration_since(sent).as_secs_f64() * 1000.0);
        out.last_ack_ms
            .push(last.saturating_duration_since(acked).as_secs_f64() * 1000.0);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for t in tasks {
        t.abort();
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// 4. First figures painted (headless Chromium over WebDriver)
// ---------------------------------------------------------------------------------------------

fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/bin")])
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// A `chromedriver` on a free port and the profile of the Chromium it starts; dropping it ends
/// the processes it started (by id) and removes the profile.
struct Driver {
    child: Child,
    addr: SocketAddr,
    profile: PathBuf,
}

impl Driver {
    fn browser_pids(&self) -> Vec<u32> {
        let marker = format!("--user-data-dir={}", self.profile.display());
        let Ok(dir) = std::fs::read_dir("/proc") else {
            return Vec::new();
        };
        dir.flatten()
            .filter_map(|e| {
                let pid = e.file_name().to_str()?.parse::<u32>().ok()?;
                let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
                cmdline
                    .split(|b| *b == 0)
                    .any(|arg| arg == marker.as_bytes())
                    .then_some(pid)
            })
            .collect()
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        for pid in self.browser_pids() {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

async fn webdriver(
    http: &mut Http,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> Result<Value> {
    let (status, bytes) = http
        .call(
            method,
            path,
            None,
            body.map(|b| ("application/json", b.to_string())),
        )
        .await?;
    let v: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    if status != 200 {
        bail!("WebDriver {path}: HTTP {status}: {v}");
    }
    Ok(v["value"].clone())
}

/// Loads `/cockpit` `loads + 1` times (the first is a warm-up) and returns the page's mark
/// `figures-painted` (ms from navigation start) of the measured loads.
async fn first_paint(addr: SocketAddr, token: &str, loads: usize, work: &Path) -> Result<Vec<f64>> {
    let chromium = which("chromium").context("chromium is not installed")?;
    let chromedriver = which("chromedriver").context("chromedriver is not installed")?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let profile =
        std::env::temp_dir().join(format!("freshplan-bench-chromium-{}", std::process::id()));
    std::fs::create_dir_all(&profile)?;
    let log = std::fs::File::create(work.join("chromedriver.log"))?;
    let child = Command::new(&chromedriver)
        .arg(format!("--port={port}"))
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .context("starting chromedriver")?;
    let driver = Driver {
        child,
        addr: SocketAddr::from(([127, 0, 0, 1], port)),
        profile,
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut http = loop {
        if let Ok(mut h) = Http::open(driver.addr).await
            && let Ok(v) = webdriver(&mut h, Method::GET, "/status", None).await
            && v["ready"] == true
        {
            break h;
        }
        if Instant::now() > deadline {
            bail!("chromedriver did not become ready in 30 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let caps = json!({"capabilities": {"alwaysMatch": {
        "browserName": "chrome",
        "goog:chromeOptions": {
            "binary": chromium,
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                     "--disable-background-networking", "--disable-dev-shm-usage",
                     format!("--user-data-dir={}", driver.profile.display()),
                     "--window-size=1280,800", "--lang=de-DE"],
        },
        "timeouts": {"script": 10_000, "pageLoad": 60_000, "implicit": 0},
    }}});
    let session = webdriver(&mut http, Method::POST, "/session", Some(caps)).await?;
    let id = session["sessionId"]
        .as_str()
        .context("no WebDriver session id")?
        .to_owned();
    let result = async {
        let mut out = Vec::new();
        for i in 0..=loads {
            webdriver(
                &mut http,
                Method::POST,
                &format!("/session/{id}/url"),
                Some(json!({"url": "about:blank"})),
            )
            .await?;
            webdriver(
                &mut http,
                Method::POST,
                &format!("/session/{id}/url"),
                Some(json!({"url": format!("http://{addr}/cockpit#token={token}")})),
            )
            .await?;
            let started = Instant::now();
            let mark = loop {
                let v = webdriver(
                    &mut http,
                    Method::POST,
                    &format!("/session/{id}/execute/sync"),
                    Some(json!({"script": "const m = performance.getEntriesByName('figures-painted')[0]; return m ? m.startTime : null;", "args": []})),
                )
                .await?;
                if let Some(ms) = v.as_f64() {
                    break ms;
                }
                if started.elapsed() > Duration::from_secs(10) {
                    bail!("the cockpit painted no figures within 10 s");
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            };
            if i > 0 {
                out.push(mark);
            }
        }
        Ok(out)
    }
    .await;
    let _ = webdriver(&mut http, Method::DELETE, &format!("/session/{id}"), None).await;
    drop(driver);
    result
}

// ---------------------------------------------------------------------------------------------
// Report
// ---------------------------------------------------------------------------------------------

fn flat(v: &[Vec<f64>]) -> Vec<f64> {
    v.iter().flatten().copied().collect()
}

fn section(r: &Results) -> String {
    let shape = r.shape.unwrap_or(Shape {
        leads: 0,
        due: 0,
        t7_pending: 0,
        fresh: 0,
    });
    let mut s = String::new();
    let _ = writeln!(s, "## Follow-up and cockpit benchmark (issue 5)\n");
    let _ = writeln!(
        s,
        "Generated by `cargo xtask bench followup`; this section is replaced on the next run.\n"
    );
    let _ = write!(
        s,
        "{}",
        r.prov.bullets(
            "release build (pool of 16, one worker per core, info logging to a file), \
             follow-up schedule and protection sweep off, `FRESHPLAN_UNSUBSCRIBE_SECRET` and \
             `FRESHPLAN_PUBLIC_URL` set, no `FRESHPLAN_SMTP_URL` (mails stay queued)",
            &format!(
                "the cockpit measured in two states of the data — before the follow-up run \
                 ({} T+3 due, nothing sent today) and after it ({} run(s); the due leads' T+3 \
                 sent or skipped today, their T+7 pending) — with {} repetition(s) in each: \
                 dashboard requests {} s per kind, {} stream clients × {} changes. Data: {} \
                 leads (`freshplan_bench_followup_…`), {} with T+3 due, {} with T+3 pending, {} \
                 with T+7 pending, the rest (registered over two years) with both follow-ups \
                 done. Latencies in ms; medians over the repetitions unless said otherwise.",
                thousands(shape.due),
                r.followup.len(),
                r.runs,
                r.secs,
                r.clients,
                r.changes,
                thousands(shape.leads),
                thousands(shape.due),
                thousands(shape.fresh),
                thousands(shape.t7_pending)
            ),
        )
    );
    let _ = writeln!(s);

    let durations: Vec<f64> = r.followup.iter().map(|x| x.request_s).collect();
    let rss: Vec<f64> = r
        .followup
        .iter()
        .map(|x| x.rss_peak_kib as f64 * 1024.0 / 1e6)
        .collect();
    let rate: Vec<f64> = r
        .followup
        .iter()
        .map(|x| x.processed() as f64 / x.request_s)
        .collect();
    let processed: Vec<u64> = r.followup.iter().map(RunSample::processed).collect();
    let all_processed = processed.iter().all(|p| *p == shape.due);
    let p95s = |v: &[Vec<f64>]| v.iter().map(|x| percentile(x, 0.95)).collect::<Vec<_>>();
    let p99s = |v: &[Vec<f64>]| v.iter().map(|x| percentile(x, 0.99)).collect::<Vec<_>>();

    let _ = writeln!(s, "### Goals\n");
    let _ = writeln!(s, "| goal | target | measured | verdict |");
    let _ = writeln!(s, "|---|---|---|---|");
    if r.followup.is_empty() {
        let _ = writeln!(
            s,
            "| {} due follow-ups in one run | ≤ 60 s, peak RSS ≤ 300 MB | not measured | **not met** |",
            thousands(shape.due),
        );
    } else {
        let d = median(&durations);
        let peak = rss.iter().copied().fold(0.0, f64::max);
        let _ = writeln!(
            s,
            "| {} due follow-ups in one run | ≤ 60 s | {d:.1} s ({:.0} follow-ups/s) · {} s{} | {} |",
            thousands(shape.due),
            median(&rate),
            per_run(&durations, 1),
            if all_processed {
                String::new()
            } else {
                format!(" — processed {processed:?}, expected {}", shape.due)
            },
            verdict(d <= 60.0 && all_processed)
        );
        let _ = writeln!(
            s,
            "| … server peak RSS (VmHWM) during the run | ≤ 300 MB | {peak:.1} MB (largest of the runs) · {} MB | {} |",
            per_run(&rss, 1),
            verdict(peak <= 300.0)
        );
    }
    for (i, st) in r.states.iter().enumerate() {
        if st.uncached_ms.is_empty() {
            continue;
        }
        let u95 = median(&p95s(&st.uncached_ms));
        let _ = writeln!(
            s,
            "| manager dashboard figures p95, {} leads, {} | ≤ 20 ms | {u95:.2} ms uncached · {} ms; cached {:.2} ms; the store's query alone {:.2} ms | {} |",
            thousands(shape.leads),
            STATES[i],
            per_run(&p95s(&st.uncached_ms), 2),
            median(&p95s(&st.cached_ms)),
            median(&p95s(&st.store_ms)),
            verdict(u95 <= 20.0)
        );
    }
    for (i, st) in r.states.iter().enumerate() {
        if st.last_ms.is_empty() {
            continue;
        }
        let last = flat(&st.last_ms);
        let l99 = percentile(&last, 0.99);
        let _ = writeln!(
            s,
            "| {} stream clients updated, commit → last client p99, {} | ≤ 250 ms | {l99:.1} ms from sending the create, over {} changes (from its `201`: {:.1} ms) · {} ms{} | {} |",
            thousands(r.clients as u64),
            STATES[i],
            last.len(),
            percentile(&flat(&st.last_ack_ms), 0.99),
            per_run(&p99s(&st.last_ms), 1),
            if st.missed > 0 {
                format!("; {} receipts missed", st.missed)
            } else {
                String::new()
            },
            verdict(l99 <= 250.0 && st.missed == 0)
        );
    }
    if r.paint_ms.is_empty() {
        let _ = writeln!(
            s,
            "| first figures painted in Chromium | ≤ 200 ms | not measured: {} | **not met** |",
            r.browser_note.as_deref().unwrap_or("skipped")
        );
    } else {
        let p = median(&r.paint_ms);
        let _ = writeln!(
            s,
            "| first figures painted in Chromium (navigation start → the page's `figures-painted` mark) | ≤ 200 ms | {p:.0} ms median of {} loads, slowest {:.0} ms · {} ms | {} |",
            r.paint_ms.len(),
            r.paint_ms.iter().copied().fold(0.0, f64::max),
            per_run(&r.paint_ms, 0),
            verdict(p <= 200.0)
        );
    }

    let _ = writeln!(s, "\n### Follow-up run\n");
    if !r.followup.is_empty() {
        let _ = writeln!(
            s,
            "| run | request s | report s | T+3 sent | T+7 sent | skipped | per second | RSS at start MB | peak RSS MB | follow-up clock |"
        );
        let _ = writeln!(s, "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|");
        for (i, x) in r.followup.iter().enumerate() {
            let _ = writeln!(
                s,
                "| {} | {:.1} | {:.1} | {} | {} | {} | {:.0} | {:.1} | {:.1} | {} |",
                i + 1,
                x.request_s,
                x.server_s,
                x.t3,
                x.t7,
                x.skipped,
                x.processed() as f64 / x.request_s,
                x.rss_start_kib as f64 * 1024.0 / 1e6,
                x.rss_peak_kib as f64 * 1024.0 / 1e6,
                if x.shift_s == 0 {
                    "wall clock".to_owned()
                } else {
                    format!(
                        "+{:.1} h (`FRESHPLAN_FOLLOWUP_CLOCK_OFFSET`)",
                        x.shift_s as f64 / 3600.0
                    )
                }
            );
        }
        let _ = writeln!(
            s,
            "\n`POST /api/followups/run` as admin on a fresh server: batches of 250 leads, one \
             transaction each (claim `FOR NO KEY UPDATE SKIP LOCKED`, plan, render, record, \
             mail, event). The peak RSS is read once the replica's event pipeline has delivered \
             the run's events (`freshplan_outbox_pending` 0). After every run the cockpit's \
             count read models are checked against a recount of the leads (a difference fails \
             the bench). Skipped: the due leads without \
             consent (`NO_CONSENT`). Follow-ups go out only inside business hours: outside them \
             the run's server starts with `FRESHPLAN_ENV=development` and \
             `FRESHPLAN_FOLLOWUP_CLOCK_OFFSET` (docs/decisions/0007 §11), which shifts only its \
             follow-up clock to the next business morning, and the due leads are placed \
             relative to that instant. The cockpit measurements use servers with the real \
             clock.\n"
        );
    }

    let _ = writeln!(
        s,
        "### Manager dashboard (`GET /api/dashboard/followup`, DE manager, sequential)\n"
    );
    let _ = writeln!(
        s,
        "| state | kind | samples | p50 | p95 | p99 | p95 per repetition |"
    );
    let _ = writeln!(s, "|---|---|---:|---:|---:|---:|---|");
    for (i, st) in r.states.iter().enumerate() {
        for (name, per) in [
            ("cached (no change since the last answer)", &st.cached_ms),
            (
                "uncached (a lead create invalidated the scope before each sample)",
                &st.uncached_ms,
            ),
            (
                "the store's figures query alone (`PgFollowUpStore::figures` as the hub runs it, one connection)",
                &st.store_ms,
            ),
        ] {
            if per.is_empty() {
                continue;
            }
            let all = flat(per);
            let _ = writeln!(
                s,
                "| {} | {name} | {} | {:.2} | {:.2} | {:.2} | {} |",
                STATES[i],
                all.len(),
                percentile(&all, 0.5),
                percentile(&all, 0.95),
                percentile(&all, 0.99),
                per_run(&p95s(per), 2)
            );
        }
    }
    let _ = writeln!(s);
    for (i, st) in r.states.iter().enumerate() {
        if let Some(f) = &st.figures {
            let _ = writeln!(
                s,
                "- Figures {} (DE manager): pendingT3 {}, pendingT7 {}, sentToday {}, \
                 conversionRate {} %; {} uncached requests came before the invalidation had \
                 arrived (`generatedAt` unchanged) and were repeated, not counted.",
                STATES[i],
                f["pendingT3"],
                f["pendingT7"],
                f["sentToday"],
                f["conversionRate"],
                st.uncached_retries
            );
        }
    }

    let _ = writeln!(
        s,
        "\n### Stream fan-out ({} clients on `GET /api/dashboard/followup-stream`, DE manager)\n",
        thousands(r.clients as u64)
    );
    let _ = writeln!(
        s,
        "Per change a sales rep of DE creates a lead (pendingT3 + 1), and the next change \
         follows 200 ms after the last client had this one. Measured from sending the create to \
         the moment the last client has the new figures (an upper bound of commit → last \
         client; from the create's `201`, a lower bound). The clients run in the bench process \
         on the same two cores.\n"
    );
    let _ = writeln!(
        s,
        "| state | measure | p50 | p99 | max | p99 per repetition |"
    );
    let _ = writeln!(s, "|---|---|---:|---:|---:|---|");
    for (i, st) in r.states.iter().enumerate() {
        if st.last_ms.is_empty() {
            continue;
        }
        let last = flat(&st.last_ms);
        let ack = flat(&st.last_ack_ms);
        for (name, all, per) in [
            ("create sent → last client", &last, Some(&st.last_ms)),
            ("create's 201 → last client", &ack, Some(&st.last_ack_ms)),
            (
                "create sent → each client (every receipt)",
                &st.every_ms,
                None,
            ),
        ] {
            let _ = writeln!(
                s,
                "| {} | {name} | {:.1} | {:.1} | {:.1} | {} |",
                STATES[i],
                percentile(all, 0.5),
                percentile(all, 0.99),
                all.iter().copied().fold(0.0, f64::max),
                per.map(|p| per_run(&p99s(p), 1)).unwrap_or_default()
            );
        }
    }
    if !r.paint_ms.is_empty() {
        let _ = writeln!(
            s,
            "\nFirst figures: headless Chromium (`--headless=new`) driven over WebDriver by \
             `chromedriver`, after the run; each load starts from `about:blank`, one warm-up \
             load per repetition is not counted; the value is the page's own \
             `performance.mark('figures-painted')` (ms since navigation start, set right after \
             the first figures are written into the tiles)."
        );
    }
    s
}
