//! `cargo xtask cost`: the database work of each API operation against committed budgets
//! (issue 12's regression guard; part of `cargo xtask test`).
//!
//! Wall-clock throughput on a shared two-core machine moves by 10–30 % between runs and cannot
//! guard anything. What a request makes PostgreSQL do does not move: the statements the service
//! sends, the statements its triggers and functions run, the rows they touch, the shared buffers
//! they read and the WAL they write. This module measures exactly that, per operation, on a
//! **private PostgreSQL server** of its own (`.freshplan/pg-cost`, started with
//! `pg_stat_statements`; nothing else runs there, so other tests running at the same time cannot
//! blur it), through the real `freshplan serve` over HTTP:
//!
//! 1. a fresh database, migrated by the binary, 10,000 leads seeded in bulk (the bench's seed, so
//!    the indexes have a realistic depth; none of them is due for a follow-up);
//! 2. the server with the event pipeline, the sweep and the follow-up schedule off (request work
//!    only; the outbox row is still written by every change) and its follow-up clock in business
//!    hours;
//! 3. every operation warmed up, then run [`N`] times one after another on one connection, the
//!    statistics reset before each and read after; the figures are per operation (the follow-up
//!    batch: per lead it processes).
//!
//! Budgets live in `xtask/cost-budgets.toml`, each operation with the reason for its figures. A
//! figure more than [`TOLERANCE`] above its budget fails; raise the budget in the same commit
//! as the change, with its reason (`cargo xtask cost --update` writes the measured figures and
//! keeps the reasons). A figure far below its budget is reported, so budgets follow
//! improvements down.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result, bail};
use hyper::Method;
use sqlx::{Connection as _, Executor as _, PgConnection, Row as _};

use super::load::Conn;
use super::server::Server;

/// Repetitions of each operation (after [`WARM_UP`] unmeasured ones).
const N: u64 = 100;
/// Unmeasured repetitions first: every pooled connection prepares its statements once.
const WARM_UP: u64 = 20;
/// Leads of the follow-up batch (one run, one batch).
const DUE: u64 = 50;
/// Seeded leads.
const LEADS: u64 = 10_000;
/// How far above its budget a figure may be.
pub(crate) const TOLERANCE: f64 = 0.10;
/// The budgets file, relative to the workspace root.
const BUDGETS: &str = "xtask/cost-budgets.toml";
/// Server options of the private cluster: statement statistics (nested statements too), and
/// nothing that writes behind the measurement's back.
const SERVER_OPTIONS: &str = "-c shared_preload_libraries=pg_stat_statements \
     -c pg_stat_statements.track=all -c pg_stat_statements.track_utility=on \
     -c autovacuum=off -c full_page_writes=off";

/// The measured figures, in a fixed order.
const FIGURES: [(&str, &str); 5] = [
    (
        "statements",
        "statements the service sends (BEGIN/COMMIT included)",
    ),
    ("nested", "statements run inside triggers and functions"),
    ("rows", "rows returned or written by all statements"),
    (
        "buffers",
        "shared buffers read (hit or read) by the service's statements",
    ),
    ("wal_bytes", "WAL bytes written"),
];

/// The operations, in the order they run.
const OPERATIONS: [(&str, &str); 6] = [
    (
        "create",
        "POST /api/leads as a sales rep (with email consent)",
    ),
    (
        "patch",
        "PATCH /api/leads/{id}, a new phone number, as a manager",
    ),
    (
        "activity",
        "POST /api/leads/{id}/activities, a CALL (first contact: REGISTERED → ACTIVE)",
    ),
    ("get", "GET /api/leads/{id} as a manager"),
    (
        "list",
        "GET /api/leads, a page of 50 open DE leads by last change, as a manager",
    ),
    (
        "followup",
        "POST /api/followups/run, per lead of one batch of due T+3 follow-ups",
    ),
];

/// What one operation cost, per operation.
#[derive(Debug, Clone, Default)]
pub(crate) struct Cost {
    figures: BTreeMap<&'static str, f64>,
    /// The statements (normalised text) with calls and execution time (ms) per operation, most
    /// frequent first.
    statements: Vec<(String, f64, bool, f64)>,
    /// Execution time of the service's statements per operation, ms (informative: it moves
    /// with the machine, so it has no budget).
    exec_ms: f64,
}

/// `cargo xtask cost [--update] [--verbose]`: measures and checks against (or writes) the
/// budgets. `freshplan` is the server binary to measure.
pub(crate) fn check(root: &Path, freshplan: &Path, update: bool, verbose: bool) -> Result<()> {
    let pg = crate::pg::start_cluster(root, "pg-cost", SERVER_OPTIONS)?;
    let work = super::target_dir(root).join("cost");
    std::fs::create_dir_all(&work)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let measured = runtime.block_on(measure(freshplan, pg.url(), &work));
    drop(pg);
    let measured = measured?;

    let path = root.join(BUDGETS);
    let text = std::fs::read_to_string(&path).unwrap_or_default();
    let budgets: toml::Table = text
        .parse()
        .with_context(|| format!("reading {}", path.display()))?;
    let mut failures = Vec::new();
    let mut report = String::new();
    let _ = writeln!(
        report,
        "xtask cost: database work per operation ({N} each; budget in brackets, +{:.0} % allowed)",
        TOLERANCE * 100.0
    );
    let _ = writeln!(
        report,
        "  {:<9} {:>18} {:>18} {:>18} {:>20} {:>22} {:>12}",
        "", "statements", "nested", "rows", "buffers", "WAL bytes", "exec ms"
    );
    for (op, _) in OPERATIONS {
        let cost = &measured[op];
        let budget = budgets.get(op).and_then(|v| v.as_table());
        let mut line = format!("  {op:<9}");
        for (figure, _) in FIGURES {
            let value = cost.figures[figure];
            let limit = budget
                .and_then(|b| b.get(figure))
                .and_then(|v| v.as_float().or_else(|| v.as_integer().map(|i| i as f64)));
            let cell = match limit {
                Some(limit) => format!("{value:.1} [{limit}]"),
                None => format!("{value:.1} [—]"),
            };
            let width = if figure == "wal_bytes" {
                22
            } else if figure == "buffers" {
                20
            } else {
                18
            };
            let _ = write!(line, " {cell:>width$}");
            match limit {
                None if !update => failures.push(format!("{op}: no budget for {figure}")),
                Some(limit) if !update && value > limit * (1.0 + TOLERANCE) + 0.05 => {
                    failures.push(format!(
                        "{op}: {figure} {value:.1} per operation is {:+.0} % over its budget {limit}",
                        (value / limit - 1.0) * 100.0
                    ));
                }
                Some(limit) if !update && value < limit * (1.0 - TOLERANCE) - 0.05 => {
                    println!(
                        "xtask cost: {op}: {figure} {value:.1} is {:.0} % under its budget {limit}: \
                         lower it (`cargo xtask cost --update`)",
                        (1.0 - value / limit) * 100.0
                    );
                }
                _ => {}
            }
        }
        let _ = writeln!(report, "{line} {:>12.3}", cost.exec_ms);
    }
    print!("{report}");
    let failed_ops: Vec<&str> = OPERATIONS
        .iter()
        .map(|(op, _)| *op)
        .filter(|op| failures.iter().any(|f| f.starts_with(&format!("{op}:"))))
        .collect();
    for (op, _) in OPERATIONS {
        if verbose || failed_ops.contains(&op) {
            println!("xtask cost: the statements of `{op}`, calls per operation:");
            for (query, calls, toplevel, ms) in &measured[op].statements {
                let kind = if *toplevel { "sent  " } else { "nested" };
                println!("  {calls:>6.2} {kind} {ms:>7.3} ms  {query}");
            }
        }
    }
    if update {
        std::fs::write(&path, render(&budgets, &measured))
            .with_context(|| format!("writing {}", path.display()))?;
        println!(
            "xtask cost: wrote the measured figures to {BUDGETS}; give each change its reason"
        );
        return Ok(());
    }
    if !failures.is_empty() {
        for f in &failures {
            println!("xtask cost: {f}");
        }
        bail!(
            "{} figure(s) over budget: find the extra work (the statements above), or raise the \
             budget in {BUDGETS} in the same commit with the reason",
            failures.len()
        );
    }
    println!("xtask cost: every figure within its budget");
    Ok(())
}

/// The budgets file with the measured figures, keeping each operation's `why`.
fn render(old: &toml::Table, measured: &BTreeMap<&'static str, Cost>) -> String {
    let mut out = String::from(
        "# Database work per API operation: the budgets of `cargo xtask cost` (part of\n\
         # `cargo xtask test`; see xtask/src/bench/cost.rs). Figures are per operation (followup:\n\
         # per lead of the batch). A measured figure more than 10 % above its budget fails the\n\
         # tests: raise the budget here in the same commit as the change, and say why in `why`.\n",
    );
    for (figure, meaning) in FIGURES {
        let _ = writeln!(out, "#   {figure}: {meaning}");
    }
    for (op, what) in OPERATIONS {
        let why = old
            .get(op)
            .and_then(|t| t.get("why"))
            .and_then(|w| w.as_str())
            .unwrap_or("");
        let _ = writeln!(out, "\n# {what}\n[{op}]");
        let _ = writeln!(out, "why = {}", toml::Value::String(why.to_owned()));
        for (figure, _) in FIGURES {
            let v = measured[op].figures[figure];
            if figure == "buffers" || figure == "wal_bytes" {
                let _ = writeln!(out, "{figure} = {}", v.round() as i64);
            } else {
                let _ = writeln!(out, "{figure} = {:.1}", (v * 10.0).round() / 10.0);
            }
        }
    }
    out
}

async fn measure(
    freshplan: &Path,
    admin_url: &str,
    work: &Path,
) -> Result<BTreeMap<&'static str, Cost>> {
    const DB: &str = "freshplan_cost";
    let url = super::seed::with_database(admin_url, DB)?;
    let mut admin = PgConnection::connect(admin_url)
        .await
        .context("connecting to the cost server")?;
    admin
        .execute(format!("drop database if exists {DB} with (force)").as_str())
        .await?;
    admin
        .execute(format!("create database {DB}").as_str())
        .await?;
    admin.close().await?;
    if !super::seed::migrate(freshplan, &url)? {
        bail!("freshplan migrate failed on the cost database");
    }
    let mut db = PgConnection::connect(&url).await?;
    db.execute("create extension if not exists pg_stat_statements")
        .await?;
    db.execute("create table bench_seed (leads bigint not null, version int not null)")
        .await?;
    super::seed::seed(&mut db, LEADS).await?;
    // No seeded lead is due for a follow-up: the batch below holds exactly the ones made for it.
    db.execute("update leads set followup_next_stage = null")
        .await?;
    db.execute("vacuum (analyze)").await?;

    let shift = super::followup::business_shift(time::OffsetDateTime::now_utc());
    let env = [
        ("FRESHPLAN_EVENTS", "false".to_owned()),
        ("FRESHPLAN_SWEEP_ENABLED", "false".to_owned()),
        // One batch at a time: concurrent batches claim in an order that varies run to run.
        ("FRESHPLAN_FOLLOWUP_CONCURRENCY", "1".to_owned()),
        ("FRESHPLAN_ENV", "development".to_owned()),
        ("FRESHPLAN_FOLLOWUP_CLOCK_OFFSET", format!("+{shift}s")),
    ];
    let mint = |sub: &str, roles: &str, territories: &str| {
        super::events::mint_with_env(freshplan, &env, sub, roles, territories)
    };
    let rep = mint(
        &super::seed::rep_id(1),
        "sales",
        super::seed::rep_territory(1),
    )?;
    let manager = mint("cost-manager", "manager", "DE")?;
    let admin = mint("cost-admin", "admin", "")?;
    // One connection, so every request runs on a connection the warm-up took past PostgreSQL's
    // switch from custom to generic plans (after five executions of a prepared statement); the
    // follow-up run needs two (its lock and a batch), on a server of its own.
    let (url_ref, env_ref) = (&url, &env);
    let start = |pool: &str| {
        let mut env = env_ref.to_vec();
        env.push(("FRESHPLAN_POOL_SIZE", pool.to_owned()));
        let log = work.join(format!("server-pool-{pool}.log"));
        async move { Server::start_with_env(freshplan, url_ref, super::SECRET, &log, &env).await }
    };
    let mut server = start("1").await?;
    let mut http = Conn::open(server.addr).await?;

    let mut created: Vec<String> = Vec::new();
    let mut costs = BTreeMap::new();
    for (op, _) in OPERATIONS {
        if op == "followup" {
            drop(server);
            server = start("2").await?;
            http = Conn::open(server.addr).await?;
            // The due leads, registered by an admin (only admins may backdate) three and a half
            // days before the server's follow-up clock (shifted into business hours, over a
            // weekend or holidays by days): T+3 is due, T+7 is not. Never in the future.
            let now = time::OffsetDateTime::now_utc();
            let registered =
                (now + time::Duration::seconds(shift) - time::Duration::hours(84)).min(now);
            for i in 0..DUE {
                let body = lead_body(&format!("due-{i}"), Some(registered));
                let (status, bytes) = http
                    .call(
                        Method::POST,
                        "/api/leads",
                        &admin,
                        Some(("application/json", body)),
                        false,
                    )
                    .await?;
                expect(status, 201, "creating a due lead", &bytes)?;
            }
            let before = snapshot(&mut db, false).await?;
            let (status, bytes) = http
                .call(Method::POST, "/api/followups/run", &admin, None, false)
                .await?;
            expect(status, 200, "the follow-up run", &bytes)?;
            let report: serde_json::Value = serde_json::from_slice(&bytes)?;
            let sent = report["t3Count"].as_u64().unwrap_or(0);
            if sent != DUE {
                bail!("the follow-up run sent {sent} T+3 follow-ups, not {DUE}: {report}");
            }
            costs.insert(op, read(&mut db, before, DUE).await?);
            continue;
        }
        for round in 0..2 {
            let count = if round == 0 { WARM_UP } else { N };
            let before = if round == 1 {
                Some(snapshot(&mut db, matches!(op, "get" | "list")).await?)
            } else {
                None
            };
            for i in 0..count {
                match op {
                    "create" => {
                        let body = lead_body(&format!("{round}-{i}"), None);
                        let (status, bytes) = http
                            .call(
                                Method::POST,
                                "/api/leads",
                                &rep,
                                Some(("application/json", body)),
                                false,
                            )
                            .await?;
                        expect(status, 201, "create", &bytes)?;
                        let lead: serde_json::Value = serde_json::from_slice(&bytes)?;
                        created.push(lead["id"].as_str().context("no id")?.to_owned());
                    }
                    "patch" => {
                        let id = &created[(round * WARM_UP + i) as usize % created.len()];
                        let body = serde_json::json!({ "phone": format!("+49 30 {i:07}") });
                        let (status, bytes) = http
                            .call(
                                Method::PATCH,
                                &format!("/api/leads/{id}"),
                                &manager,
                                Some(("application/merge-patch+json", body.to_string())),
                                true,
                            )
                            .await?;
                        expect(status, 200, "patch", &bytes)?;
                    }
                    "activity" => {
                        let id = &created[(round * WARM_UP + i) as usize % created.len()];
                        let body = serde_json::json!({
                            "type": "CALL",
                            "description": format!("Anruf {i}: Interesse an Bio-Gemüse"),
                        });
                        let (status, bytes) = http
                            .call(
                                Method::POST,
                                &format!("/api/leads/{id}/activities"),
                                &rep,
                                Some(("application/json", body.to_string())),
                                false,
                            )
                            .await?;
                        expect(status, 201, "activity", &bytes)?;
                    }
                    "get" => {
                        let id = super::seed::lead_id(1 + (i * 97) % LEADS);
                        let (status, bytes) = http
                            .call(
                                Method::GET,
                                &format!("/api/leads/{id}"),
                                &manager,
                                None,
                                false,
                            )
                            .await?;
                        // Every fifth rep's leads are in CH: a DE manager gets 404 for those.
                        if status != 200 && status != 404 {
                            expect(status, 200, "get", &bytes)?;
                        }
                    }
                    "list" => {
                        let (status, bytes) = http
                            .call(
                                Method::GET,
                                super::load::list_path(0),
                                &manager,
                                None,
                                false,
                            )
                            .await?;
                        expect(status, 200, "list", &bytes)?;
                    }
                    _ => unreachable!(),
                }
            }
            if let Some(before) = before {
                costs.insert(op, read(&mut db, before, N).await?);
            }
        }
    }
    drop(server);
    db.close().await?;
    Ok(costs)
}

fn lead_body(n: &str, registered: Option<time::OffsetDateTime>) -> String {
    let mut body = serde_json::json!({
        "companyName": format!("Kosten {n} GmbH"),
        "contactPerson": "Erika Mustermann",
        "email": format!("kosten.{n}@kosten.de"),
        "phone": "+49 30 1234567",
        "street": "Hauptstrasse 1",
        "postalCode": "10115",
        "city": "Berlin",
        "countryCode": "DE",
        "businessType": "RESTAURANT",
        "kitchenSize": "MEDIUM",
        "employeeCount": 12,
        "estimatedVolume": 2500.5,
        "source": "WEB",
        "emailConsent": true,
    });
    if let Some(at) = registered {
        body["registeredAt"] = at
            .format(&time::format_description::well_known::Rfc3339)
            .expect("a formattable instant")
            .into();
    }
    body.to_string()
}

fn expect(status: u16, want: u16, what: &str, body: &[u8]) -> Result<()> {
    if status != want {
        bail!(
            "{what} answered {status}, not {want}: {}",
            String::from_utf8_lossy(body)
        );
    }
    Ok(())
}

/// Folds the count read models (writers fold at random, and a list sums the unfolded deltas of
/// its keys, so every operation starts from the same compact state), vacuums, resets the
/// statement statistics and returns the WAL insert position.
async fn snapshot(db: &mut PgConnection, read_only: bool) -> Result<String> {
    db.execute(
        "select count(freshplan_fold_lead_counts(territory_id, status, business_type)) \
           from lead_counts",
    )
    .await?;
    db.execute(
        "select freshplan_compact_followup_sent_counts() \
              + freshplan_compact_followup_figure_counts(current_date)",
    )
    .await?;
    // The folded deltas' dead rows would be pruned by whichever statement reads their pages
    // first, with WAL and buffers of its own.
    db.execute(
        "vacuum lead_counts, lead_count_deltas, followup_figure_counts, followup_sent_counts",
    )
    .await?;
    if read_only {
        // The writes left dead lead versions; a read would prune them or skip their index
        // entries depending on when the last writer's snapshot went away.
        db.execute("vacuum leads").await?;
    }
    db.execute("select pg_stat_statements_reset()").await?;
    Ok(
        sqlx::query_scalar("select pg_current_wal_insert_lsn()::text")
            .fetch_one(&mut *db)
            .await?,
    )
}

/// What ran since [`snapshot`] returned `wal_before`, divided by `per`.
async fn read(db: &mut PgConnection, wal_before: String, per: u64) -> Result<Cost> {
    let wal: i64 =
        sqlx::query_scalar("select pg_wal_lsn_diff(pg_current_wal_insert_lsn(), $1::pg_lsn)::int8")
            .bind(&wal_before)
            .fetch_one(&mut *db)
            .await?;
    // The measurement's own statements (reset, WAL positions) are left out by their text.
    let rows = sqlx::query(
        "select regexp_replace(query, '\\s+', ' ', 'g') as query, toplevel, calls::int8,
                rows::int8, (shared_blks_hit + shared_blks_read)::int8 as buffers,
                total_exec_time
           from pg_stat_statements
          where dbid = (select oid from pg_database where datname = current_database())
            and query not like '%pg_stat_statements%'
            and query not like '%pg_current_wal_insert_lsn%'
          order by calls desc, query",
    )
    .fetch_all(&mut *db)
    .await?;
    let per = per as f64;
    let (mut sent, mut nested, mut touched, mut buffers) = (0i64, 0i64, 0i64, 0i64);
    let mut exec_ms = 0.0;
    let mut statements = Vec::new();
    for row in rows {
        let query: String = row.get("query");
        let toplevel: bool = row.get("toplevel");
        let calls: i64 = row.get("calls");
        touched += row.get::<i64, _>("rows");
        let ms: f64 = row.get("total_exec_time");
        if toplevel {
            exec_ms += ms;
            sent += calls;
            buffers += row.get::<i64, _>("buffers");
        } else {
            nested += calls;
        }
        let short: String = query.chars().take(140).collect();
        statements.push((short, calls as f64 / per, toplevel, ms / per));
    }
    let figures = BTreeMap::from([
        ("statements", sent as f64 / per),
        ("nested", nested as f64 / per),
        ("rows", touched as f64 / per),
        ("buffers", buffers as f64 / per),
        ("wal_bytes", wal as f64 / per),
    ]);
    Ok(Cost {
        figures,
        statements,
        exec_ms: exec_ms / per,
    })
}
