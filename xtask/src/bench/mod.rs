//! `cargo xtask bench api`: the API benchmark of issue 3. It seeds a dedicated database (100k
//! leads, 1M with `--million`), starts the release server, and measures GET by id, a filtered and
//! sorted list page of 50, create and patch — unloaded (one connection), under a fixed offered
//! load (open loop), and at saturation (32 connections) — next to the PostgreSQL floor for the
//! same GET statements through pgbench at the same concurrency. Each scenario runs `--runs`
//! times (interleaved, so drift hits all of them alike) and the report gives medians. The
//! results replace this size's section of `docs/BENCHMARKS.md`.
//!
//! The server, PostgreSQL and the load generator share the machine, so the figures compare best
//! as ratios within one run (API vs pgbench floor), not across machines.
//!
//! The other benches, each in its module: `bench events` (issue 4: cross-replica event
//! delivery), `bench followup` (issue 5: a follow-up run over 1M leads and the cockpit),
//! `bench import` (issue 15: dry run and import of a 20,000-row German Excel file on the 100k
//! database, GET-by-id latency under the import against a baseline, the server's RSS during
//! it) and `bench instructions` (issue 12: CPU instructions per request, metrics on and off).

pub(crate) mod cost;
mod events;
mod followup;
mod import;
mod instructions;
mod load;
mod pgbench;
mod report;
mod seed;
mod server;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use sqlx::Connection as _;

use load::{Outcome, Target, Workload};

/// `cargo xtask bench …`
#[derive(Debug, clap::Subcommand)]
pub(crate) enum BenchCmd {
    /// Benchmark the HTTP API against the PostgreSQL floor; writes docs/BENCHMARKS.md.
    Api(ApiArgs),
    /// Benchmark event delivery across two replicas (issue 4); writes docs/BENCHMARKS.md.
    Events(events::EventsArgs),
    /// Benchmark a follow-up run over 1M leads and the cockpit (issue 5); writes
    /// docs/BENCHMARKS.md.
    Followup(followup::FollowupArgs),
    /// Benchmark a CSV import of lead lists (issue 15): dry run, import under GET load, server
    /// RSS; writes docs/BENCHMARKS.md.
    Import(import::ImportArgs),
    /// Count the server's CPU instructions per request with callgrind, metrics on and off
    /// (issue 12: the metrics cost); prints a table, writes nothing.
    Instructions(instructions::InstructionsArgs),
}

/// Options of `cargo xtask bench api`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct ApiArgs {
    /// Seed 1,000,000 leads instead of 100,000.
    #[arg(long)]
    million: bool,
    /// Seed this many leads (overrides --million).
    #[arg(long)]
    leads: Option<u64>,
    /// Repetitions of every scenario; the report gives the median.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Seconds per scenario and repetition.
    #[arg(long, default_value_t = 10)]
    secs: u64,
    /// Connections of the saturation scenarios and of pgbench.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Offered load of the open-loop read-mix scenario, requests per second.
    #[arg(long, default_value_t = 1000)]
    rate: u32,
    /// Reseed even when the bench database already holds the requested size.
    #[arg(long)]
    reseed: bool,
    /// Do not touch docs/BENCHMARKS.md (results still go to target/bench/).
    #[arg(long)]
    no_report: bool,
    /// Name of the JSON results file under target/bench/ (default: api-<leads>-latest).
    #[arg(long)]
    label: Option<String>,
    /// Let the pgbench floor lock the row like the store's read path did before it had a
    /// non-locking read (`for no key update`); for before/after comparisons only.
    #[arg(long, hide = true)]
    floor_locking: bool,
    /// Benchmark this `freshplan` binary instead of building the workspace's (e.g. a copy of an
    /// earlier build, for before/after comparisons).
    #[arg(long)]
    server_binary: Option<PathBuf>,
    /// Run only these scenarios (comma list of `get1`, `list1`, `mix`, `get`, `floor`, `list`,
    /// `create`, `patch`), e.g. while profiling one of them; implies `--no-report`.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
}

/// The development secret of the server under test.
const SECRET: &str = "freshplan-bench-secret-not-for-production";

pub(crate) fn run(root: &Path, cmd: BenchCmd) -> Result<()> {
    // `cargo xtask` builds xtask without optimisations; an unoptimised load generator would
    // spend the cores it shares with the server and the database on itself. Run again as a
    // release build.
    if cfg!(debug_assertions) {
        println!("xtask bench: re-running as an optimised build (cargo run --release -p xtask)");
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let status = Command::new(cargo)
            .current_dir(root)
            .args(["run", "--quiet", "--release", "-p", "xtask", "--"])
            .args(std::env::args_os().skip(1))
            .status()
            .context("running the optimised xtask")?;
        if !status.success() {
            bail!("the optimised bench failed: {status}");
        }
        return Ok(());
    }
    match cmd {
        BenchCmd::Api(args) => api(root, args),
        BenchCmd::Events(args) => events::run(root, args),
        BenchCmd::Followup(args) => followup::run(root, args),
        BenchCmd::Import(args) => import::run(root, args),
        BenchCmd::Instructions(args) => instructions::run(root, args),
    }
}

/// The scenarios in the order they run within one repetition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Scenario {
    GetUnloaded,
    ListUnloaded,
    ReadMixOpen,
    GetSaturated,
    GetFloor,
    ListSaturated,
    CreateSaturated,
    PatchSaturated,
}

/// One measurement of one scenario.
#[derive(Debug, Clone, Default)]
pub(crate) struct Sample {
    pub(crate) p50_us: u64,
    pub(crate) p95_us: u64,
    pub(crate) p99_us: u64,
    pub(crate) rps: f64,
    pub(crate) ok: u64,
    pub(crate) errors: u64,
    /// Per kind (read mix): `(p50, p95, p99)`.
    pub(crate) kinds: BTreeMap<String, (u64, u64, u64)>,
}

impl Sample {
    fn of(o: &Outcome) -> Sample {
        let q = |h: &hdrhistogram::Histogram<u64>| {
            (
                h.value_at_quantile(0.50),
                h.value_at_quantile(0.95),
                h.value_at_quantile(0.99),
            )
        };
        let (p50_us, p95_us, p99_us) = q(&o.all);
        Sample {
            p50_us,
            p95_us,
            p99_us,
            rps: o.rps(),
            ok: o.ok,
            errors: o.errors,
            kinds: o
                .by_kind
                .iter()
                .map(|(k, h)| (format!("{k:?}"), q(h)))
                .collect(),
        }
    }
}

/// Everything one invocation measured.
#[derive(Debug, Clone, Default)]
pub(crate) struct Results {
    pub(crate) leads: u64,
    pub(crate) runs: usize,
    pub(crate) secs: u64,
    pub(crate) concurrency: usize,
    pub(crate) rate: u32,
    pub(crate) samples: BTreeMap<Scenario, Vec<Sample>>,
    pub(crate) rss_peak_kib: u64,
    pub(crate) rss_end_kib: u64,
    pub(crate) postgres: String,
    pub(crate) pg_settings: Vec<(String, String)>,
    pub(crate) started: String,
    pub(crate) elapsed_secs: u64,
    pub(crate) command: String,
    pub(crate) git: String,
}

fn target_dir(root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"))
}

fn build_release(root: &Path) -> Result<PathBuf> {
    println!("xtask bench: building the release server (cargo build --release -p freshplan-app)");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(root)
        .args([
            "build",
            "--release",
            "-p",
            "freshplan-app",
            "--bin",
            "freshplan",
        ])
        .status()
        .context("running cargo build")?;
    if !status.success() {
        bail!("cargo build --release failed: {status}");
    }
    Ok(target_dir(root).join("release").join("freshplan"))
}

pub(crate) fn mint(freshplan: &Path, sub: &str, roles: &str, territories: &str) -> Result<String> {
    let out = Command::new(freshplan)
        .args(["token", sub, roles, territories])
        .env("FRESHPLAN_AUTH_HS256_SECRET", SECRET)
        .output()
        .context("running freshplan token")?;
    if !out.status.success() {
        bail!(
            "freshplan token failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8(out.stdout)?.trim().to_owned())
}

fn command_line() -> String {
    let args: Vec<String> = std::env::args().skip(1).collect();
    format!("cargo xtask {}", args.join(" "))
}

fn capture(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

fn api(root: &Path, args: ApiArgs) -> Result<()> {
    let leads = args
        .leads
        .unwrap_or(if args.million { 1_000_000 } else { 100_000 });
    if leads < 1_000 {
        bail!("--leads must be at least 1000");
    }
    if args.runs == 0 || args.secs == 0 || args.concurrency == 0 {
        bail!("--runs, --secs and --concurrency must be positive");
    }
    let pgbench = pgbench::find()?;
    let freshplan = match &args.server_binary {
        Some(path) => path.clone(),
        None => build_release(root)?,
    };
    let pg = crate::pg::ensure_postgres(root)?;
    let work = target_dir(root).join("bench");
    std::fs::create_dir_all(&work)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        // Two threads like pgbench's `-j 2`: the load generator gets the same share of the two
        // cores as the floor's client.
        .worker_threads(2)
        .enable_all()
        .build()?;
    let started = capture("date", &["-u", "+%Y-%m-%d %H:%M UTC"]);
    let clock = Instant::now();
    let mut results = runtime.block_on(measure(
        root,
        &args,
        leads,
        &freshplan,
        &pgbench,
        pg.url(),
        &work,
    ))?;
    drop(pg);
    results.started = started;
    results.elapsed_secs = clock.elapsed().as_secs();
    results.command = command_line();
    results.git = {
        let head = capture(
            "git",
            &[
                "-C",
                &root.to_string_lossy(),
                "rev-parse",
                "--short",
                "HEAD",
            ],
        );
        let dirty = !capture(
            "git",
            &[
                "-C",
                &root.to_string_lossy(),
                "status",
                "--porcelain",
                "--untracked-files=no",
            ],
        )
        .is_empty();
        if dirty {
            format!("{head} + uncommitted changes")
        } else {
            head
        }
    };

    let label = args
        .label
        .clone()
        .unwrap_or_else(|| format!("api-{leads}-latest"));
    let json = work.join(format!("{label}.json"));
    std::fs::write(
        &json,
        serde_json::to_string_pretty(&report::to_json(&results))?,
    )?;
    if !args.only.is_empty() {
        println!(
            "xtask bench: results saved to {} (--only: no report)",
            json.display()
        );
        return Ok(());
    }
    let section = report::section(&results);
    println!("\n{section}");
    println!("xtask bench: results saved to {}", json.display());
    if !args.no_report {
        let path = root.join("docs").join("BENCHMARKS.md");
        report::write(&path, leads, &section)?;
        println!("xtask bench: updated {}", path.display());
    }
    Ok(())
}

async fn measure(
    root: &Path,
    args: &ApiArgs,
    leads: u64,
    freshplan: &Path,
    pgbench_bin: &Path,
    admin_url: &str,
    work: &Path,
) -> Result<Results> {
    let url = seed::prepare(admin_url, freshplan, leads, args.reseed).await?;
    let mut db = sqlx::PgConnection::connect(&url).await?;
    let postgres: String = sqlx::query_scalar("select version()")
        .fetch_one(&mut db)
        .await?;
    let mut pg_settings = Vec::new();
    for name in [
        "shared_buffers",
        "max_connections",
        "fsync",
        "synchronous_commit",
    ] {
        let v: String = sqlx::query_scalar("select current_setting($1)")
            .bind(name)
            .fetch_one(&mut db)
            .await?;
        pg_settings.push((name.to_owned(), v));
    }

    println!("xtask bench: minting tokens");
    let reps_total = seed::rep_count(leads);
    let mut reps = Vec::new();
    for i in 1..=(args.concurrency as u64).min(reps_total) {
        let user = seed::rep_id(i);
        let territory = seed::rep_territory(i);
        let token = mint(freshplan, &user, "sales", territory)?;
        reps.push((user, token, territory));
    }
    let manager_all = mint(freshplan, "bench-manager-all", "manager", "DE,CH")?;
    let manager_de = mint(freshplan, "bench-manager-de", "manager", "DE")?;

    let server = server::Server::start(freshplan, &url, SECRET, &work.join("server.log")).await?;
    println!("xtask bench: server on {}", server.addr);
    let target = Arc::new(Target {
        addr: server.addr,
        leads,
        manager_all,
        manager_de,
        reps,
        tag: std::process::id().to_string(),
    });

    let secs = Duration::from_secs(args.secs);
    let c = args.concurrency;
    let warm = Duration::from_secs(args.secs.min(5));

    let floor_sql = pgbench::get_statement(root, args.floor_locking)?;
    let floor_script = pgbench::script(&floor_sql, "bench-manager-all", "manager", "DE,CH");

    let mut samples: BTreeMap<Scenario, Vec<Sample>> = BTreeMap::new();
    let mut push = |s: Scenario, sample: Sample| samples.entry(s).or_default().push(sample);
    for r in 0..args.runs {
        let seed = 1000 * (r as u64 + 1);
        // Before every run, not only the first: the clean-up after a run ends with `ANALYZE`,
        // which invalidates every plan PostgreSQL has cached for `leads`, and the first requests
        // of the next run would each pay for planning again (ADR 0016).
        println!(
            "xtask bench: warming up (caches, prepared statements and their plans on every pooled connection)"
        );
        check(
            load::closed_loop(Arc::clone(&target), Workload::Get, c, warm, 1).await?,
            "warm-up GET",
        )?;
        check(
            load::closed_loop(Arc::clone(&target), Workload::List, c, warm, 2).await?,
            "warm-up list",
        )?;
        println!("xtask bench: run {} of {}", r + 1, args.runs);
        let scenarios: [(Scenario, &str); 8] = [
            (Scenario::GetUnloaded, "GET by id, 1 connection"),
            (Scenario::ListUnloaded, "list page, 1 connection"),
            (Scenario::ReadMixOpen, "read mix, open loop"),
            (Scenario::GetSaturated, "GET by id, saturation"),
            (Scenario::GetFloor, "pgbench floor for GET by id"),
            (Scenario::ListSaturated, "list page, saturation"),
            (Scenario::CreateSaturated, "create, saturation"),
            (Scenario::PatchSaturated, "patch, saturation"),
        ];
        for (scenario, name) in scenarios {
            let short = match scenario {
                Scenario::GetUnloaded => "get1",
                Scenario::ListUnloaded => "list1",
                Scenario::ReadMixOpen => "mix",
                Scenario::GetSaturated => "get",
                Scenario::GetFloor => "floor",
                Scenario::ListSaturated => "list",
                Scenario::CreateSaturated => "create",
                Scenario::PatchSaturated => "patch",
            };
            if !args.only.is_empty() && !args.only.iter().any(|o| o == short) {
                continue;
            }
            let t = Arc::clone(&target);
            let sample = match scenario {
                Scenario::GetUnloaded => Sample::of(&check(
                    load::closed_loop(t, Workload::Get, 1, secs, seed + 1).await?,
                    name,
                )?),
                Scenario::ListUnloaded => Sample::of(&check(
                    load::closed_loop(t, Workload::List, 1, secs, seed + 2).await?,
                    name,
                )?),
                Scenario::ReadMixOpen => Sample::of(&check(
                    load::open_loop(t, Workload::ReadMix, args.rate, secs, 64, seed + 3).await?,
                    name,
                )?),
                Scenario::GetSaturated => Sample::of(&check(
                    load::closed_loop(t, Workload::Get, c, secs, seed + 4).await?,
                    name,
                )?),
                Scenario::GetFloor => {
                    let f = pgbench::run(
                        pgbench_bin,
                        &url,
                        work,
                        "floor-get",
                        &floor_script,
                        leads,
                        c,
                        args.secs,
                    )?;
                    Sample {
                        p50_us: f.p50_us,
                        p95_us: f.p95_us,
                        p99_us: f.p99_us,
                        rps: f.tps,
                        ok: 0,
                        errors: f.failed,
                        kinds: BTreeMap::new(),
                    }
                }
                Scenario::ListSaturated => Sample::of(&check(
                    load::closed_loop(t, Workload::List, c, secs, seed + 5).await?,
                    name,
                )?),
                Scenario::CreateSaturated => Sample::of(&check(
                    load::closed_loop(t, Workload::Create, c, secs, seed + 6).await?,
                    name,
                )?),
                Scenario::PatchSaturated => Sample::of(&check(
                    load::closed_loop(t, Workload::Patch, c, secs, seed + 7).await?,
                    name,
                )?),
            };
            println!(
                "xtask bench:   {name:<30} p50 {:>7.2} ms  p95 {:>7.2} ms  p99 {:>7.2} ms  {:>8.0}/s  errors {}",
                ms(sample.p50_us),
                ms(sample.p95_us),
                ms(sample.p99_us),
                sample.rps,
                sample.errors
            );
            push(scenario, sample);
        }
        seed::cleanup(&mut db).await?;
    }
    let (rss_peak_kib, rss_end_kib) = server.memory_kib()?;
    drop(server);
    db.close().await?;
    Ok(Results {
        leads,
        runs: args.runs,
        secs: args.secs,
        concurrency: c,
        rate: args.rate,
        samples,
        rss_peak_kib,
        rss_end_kib,
        postgres,
        pg_settings,
        ..Results::default()
    })
}

/// Fails on a scenario whose requests failed: its figures would describe error responses.
fn check(o: Outcome, name: &str) -> Result<Outcome> {
    let total = o.ok + o.errors;
    if o.errors > 0 {
        let share = o.errors as f64 / total.max(1) as f64;
        println!(
            "xtask bench:   {name}: {} of {total} requests failed; first: {}",
            o.errors,
            o.first_error.as_deref().unwrap_or("?")
        );
        if share > 0.01 {
            bail!("{name}: more than 1 % of the requests failed");
        }
    }
    if o.ok == 0 {
        bail!("{name}: no request succeeded");
    }
    Ok(o)
}

pub(crate) fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}
