//! `cargo xtask bench import`: the lead-import benchmark of issue 15.
//!
//! On the API bench's database (100k seeded leads, `freshplan_bench_100k`, reused or seeded by
//! [`seed::prepare`]) every run:
//!
//! 1. writes a fresh file as German Excel saves a trade-fair list: `--rows` distinct rows of
//!    Windows-1252 text, `;` separated, CRLF, a header of German titles (`Firma;Ansprechpartner;
//!    E-Mail;Telefon;Straße;PLZ;Ort;Land;Betriebsart;Mitarbeiter;Volumen;Einwilligung`), company
//!    names and cities with umlauts and ß, some quoted cells, German spellings (`ja`/`nein`,
//!    `1.234,50 €`, `1.200` staff, `Deutschland`, `Gaststätte`). Every row is a new DE lead:
//!    company names `Messe 2026 Betrieb <run>-<row> …` and e-mails of their own, postal codes
//!    distinct within the file, so no row duplicates a seeded lead or another row;
//! 2. starts a fresh release server (events, metrics and the cockpit's counts on — the
//!    defaults; follow-up schedule and protection sweep off) and warms it up with GETs;
//! 3. **dry run:** `POST /api/leads/imports?dryRun=true` of the file as a DE sales rep
//!    (`rep-0001`), wall time of the request, client side; the report must count every row
//!    `created`;
//! 4. **import:** `POST /api/leads/imports` of the same file, then `GET
//!    /api/leads/imports/{id}` every 100 ms until it is no longer `RUNNING`: the time from the
//!    POST to the answer saying `SUCCEEDED` (every row created, owned by the importer). Meanwhile
//!    an open-loop load generator sends `GET /api/leads/{id}` of random seeded leads (the DE+CH
//!    manager) at `--get-rate` per second on its own connections, from 100 ms before the POST
//!    until `SUCCEEDED`, and a thread samples the server's resident set (`VmRSS`) every 100 ms;
//! 5. waits until the event pipeline has delivered the import's events (`freshplan_outbox_pending`
//!    0), then sends the same GET load for the same duration without an import: the baseline;
//! 6. stops the server and removes what the run imported (its leads — by their company-name
//!    prefix, as seeded leads have the source `IMPORT` too — and `lead_imports`, whose rows
//!    cascade), truncates the outbox and vacuums like the other benches, so the next run (and the
//!    next bench) finds the 100k leads again. The same clean-up runs before the first run.
//!
//! The report gives each figure's median and range over `--runs` and replaces the `import`
//! section of `docs/BENCHMARKS.md`; the figures also go to `target/bench/import-latest.json`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use hyper::Method;
use hyper::body::Bytes;
use serde_json::{Value, json};
use sqlx::{Connection as _, Executor as _, PgConnection};

use super::events::{
    Http, Provenance, median, per_run, thousands, verdict, warn_if_busy, write_section,
};
use super::load::{self, Outcome, Rng, Target, Workload};
use super::server::{self, Server};
use super::{SECRET, seed};

/// Options of `cargo xtask bench import`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct ImportArgs {
    /// Data rows of the imported file (at most 50,000, the import's limit).
    #[arg(long, default_value_t = 20_000)]
    rows: u32,
    /// Repetitions (each with a file of its own and a fresh server); the report gives medians.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Offered rate of the GET-by-id load during the import and of its baseline, requests per
    /// second (open loop).
    #[arg(long, default_value_t = 200)]
    get_rate: u32,
    /// The seeded leads of the database (the API bench's; seeded if missing).
    #[arg(long, default_value_t = 100_000)]
    leads: u64,
    /// Do not touch docs/BENCHMARKS.md (results still go to target/bench/).
    #[arg(long)]
    no_report: bool,
    /// Benchmark this `freshplan` binary instead of building the workspace's (before/after).
    #[arg(long)]
    server_binary: Option<PathBuf>,
}

/// Every imported company name starts with this; the clean-up removes leads by it.
const PREFIX: &str = "Messe 2026 Betrieb ";
/// Connections of the GET load (enough for its rate at a few ms each, and for stalls).
const GET_CONNECTIONS: usize = 32;
/// How often the import's state is polled and the server's memory sampled.
const EVERY: Duration = Duration::from_millis(100);
/// The GET load starts this long before the import's POST.
const LEAD_IN: Duration = Duration::from_millis(100);
/// An import still running after this fails the bench.
const IMPORT_MAX: Duration = Duration::from_secs(600);
/// How long to wait for the import's events to be delivered before the baseline.
const DRAIN_MAX: Duration = Duration::from_secs(120);

/// The goals of issue 15.
const DRY_RUN_GOAL_S: f64 = 2.0;
const IMPORT_GOAL_S: f64 = 15.0;
const GET_P99_GOAL_MS: f64 = 10.0;
const RSS_GOAL_MB: f64 = 150.0;

/// GET-by-id latencies of one window.
#[derive(Debug, Clone, Default)]
struct Latency {
    p50_ms: f64,
    p95_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    ok: u64,
    errors: u64,
    /// The window's length (the baseline repeats it).
    secs: f64,
}

impl Latency {
    fn of(o: &Outcome, secs: f64) -> Latency {
        Latency {
            p50_ms: super::ms(o.all.value_at_quantile(0.50)),
            p95_ms: super::ms(o.all.value_at_quantile(0.95)),
            p99_ms: super::ms(o.all.value_at_quantile(0.99)),
            max_ms: super::ms(o.all.max()),
            ok: o.ok,
            errors: o.errors,
            secs,
        }
    }

    fn json(&self) -> Value {
        json!({
            "p50_ms": self.p50_ms, "p95_ms": self.p95_ms, "p99_ms": self.p99_ms,
            "max_ms": self.max_ms, "ok": self.ok, "errors": self.errors, "secs": self.secs,
        })
    }
}

/// What one run measured.
#[derive(Debug, Clone, Default)]
struct RunSample {
    file_bytes: usize,
    /// The dry run's POST, client side.
    dry_run_s: f64,
    /// The import's POST until its `202`.
    accepted_s: f64,
    /// The import's POST until a GET said `SUCCEEDED`.
    import_s: f64,
    /// `createdAt` → `finishedAt` of the import resource (the server's clock).
    server_s: f64,
    created: u64,
    /// GET by id while the import ran.
    during: Latency,
    /// The same load, same duration, no import.
    baseline: Latency,
    /// `VmRSS` just before the import's POST.
    rss_before_kib: u64,
    /// The largest `VmRSS` sampled from the POST until `SUCCEEDED`.
    rss_peak_kib: u64,
    rss_samples: usize,
    /// The largest `VmRSS` sampled until the import's events were delivered.
    rss_peak_events_kib: u64,
    /// `VmHWM` once the events were delivered (the whole server life: warm-up, dry run, import).
    hwm_kib: u64,
    /// `SUCCEEDED` → the outbox drained.
    events_s: f64,
}

#[derive(Debug, Default)]
struct Results {
    prov: Provenance,
    rows: u32,
    runs: usize,
    get_rate: u32,
    leads: u64,
    samples: Vec<RunSample>,
}

pub(crate) fn run(root: &Path, args: ImportArgs) -> Result<()> {
    if args.runs == 0 || args.get_rate == 0 {
        bail!("--runs and --get-rate must be positive");
    }
    if !(1..=50_000).contains(&args.rows) {
        bail!("--rows must be 1..=50000 (the import's limit)");
    }
    if args.leads < 1_000 {
        bail!("--leads must be at least 1000");
    }
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
    let mut results = runtime.block_on(measure(&args, &freshplan, pg.url(), &work))?;
    drop(runtime);
    drop(pg);
    prov.postgres = std::mem::take(&mut results.prov.postgres);
    prov.elapsed_secs = clock.elapsed().as_secs();
    results.prov = prov;
    let section = section(&results);
    println!("\n{section}");
    let json_path = work.join("import-latest.json");
    std::fs::write(
        &json_path,
        serde_json::to_string_pretty(&to_json(&results))?,
    )?;
    let saved = work.join("import-latest.md");
    std::fs::write(&saved, &section)?;
    println!(
        "xtask bench: results saved to {} and {}",
        json_path.display(),
        saved.display()
    );
    if !args.no_report {
        let path = write_section(root, "import", &section)?;
        println!("xtask bench: updated {}", path.display());
    }
    Ok(())
}

async fn measure(
    args: &ImportArgs,
    freshplan: &Path,
    admin_url: &str,
    work: &Path,
) -> Result<Results> {
    let url = seed::prepare(admin_url, freshplan, args.leads, false).await?;
    let mut db = PgConnection::connect(&url).await?;
    let mut results = Results {
        rows: args.rows,
        runs: args.runs,
        get_rate: args.get_rate,
        leads: args.leads,
        ..Results::default()
    };
    results.prov.postgres = Provenance::postgres_of(&mut db).await?;
    cleanup(&mut db, args.leads).await?;

    println!("xtask bench: minting tokens");
    // The importer: a sales rep of DE (rep 1), so every row's lead is theirs.
    let rep_user = seed::rep_id(1);
    let rep_territory = seed::rep_territory(1);
    if rep_territory != "DE" {
        bail!("rep 1 is expected to work in DE, not {rep_territory}");
    }
    let rep = super::mint(freshplan, &rep_user, "sales", rep_territory)?;
    let manager_all = super::mint(freshplan, "bench-manager-all", "manager", "DE,CH")?;
    let manager_de = super::mint(freshplan, "bench-manager-de", "manager", "DE")?;
    let env = [("FRESHPLAN_SWEEP_ENABLED", "false".to_owned())];
    let pid = std::process::id();

    for r in 0..args.runs {
        let run_no = r + 1;
        println!("xtask bench: run {run_no} of {}", args.runs);
        let file = Bytes::from(csv_file(run_no, args.rows));
        let server = Server::start_with_env(
            freshplan,
            &url,
            SECRET,
            &work.join("import-server.log"),
            &env,
        )
        .await?;
        let target = Arc::new(Target {
            addr: server.addr,
            leads: args.leads,
            manager_all: manager_all.clone(),
            manager_de: manager_de.clone(),
            reps: vec![(rep_user.clone(), rep.clone(), rep_territory)],
            tag: format!("{pid}i{r}"),
        });
        // Warm-up: every pooled connection prepares the GET's statements.
        super::check(
            load::open_loop(
                Arc::clone(&target),
                Workload::Get,
                args.get_rate,
                Duration::from_secs(2),
                GET_CONNECTIONS,
                1,
            )
            .await?,
            "warm-up GET",
        )?;
        let sample = one_run(args, &server, &target, &rep, &file, r as u64).await;
        drop(server);
        // Clean up even when the run failed, so the database is left as the next bench expects.
        cleanup(&mut db, args.leads).await?;
        let sample = sample?;
        println!(
            "xtask bench:   {} rows ({:.1} MB): dry run {:.2} s; import {:.2} s ({:.0} rows/s, \
             202 after {:.2} s, server {:.2} s); GET p50/p95/p99 {:.2}/{:.2}/{:.2} ms during, \
             {:.2}/{:.2}/{:.2} ms baseline; RSS {:.1} MB before, peak {:.1} MB ({} samples), \
             events delivered {:.1} s after",
            sample.created,
            sample.file_bytes as f64 / 1e6,
            sample.dry_run_s,
            sample.import_s,
            f64::from(args.rows) / sample.import_s,
            sample.accepted_s,
            sample.server_s,
            sample.during.p50_ms,
            sample.during.p95_ms,
            sample.during.p99_ms,
            sample.baseline.p50_ms,
            sample.baseline.p95_ms,
            sample.baseline.p99_ms,
            mb(sample.rss_before_kib),
            mb(sample.rss_peak_kib),
            sample.rss_samples,
            sample.events_s,
        );
        results.samples.push(sample);
    }
    db.close().await?;
    Ok(results)
}

/// Steps 3–5 of the module docs on a started, warmed-up server.
async fn one_run(
    args: &ImportArgs,
    server: &Server,
    target: &Arc<Target>,
    rep: &str,
    file: &Bytes,
    r: u64,
) -> Result<RunSample> {
    let rows = u64::from(args.rows);
    let mut http = Http::open(server.addr).await?;
    let mut sample = RunSample {
        file_bytes: file.len(),
        ..RunSample::default()
    };

    // 3. The dry run.
    let t = Instant::now();
    let (status, body) = http
        .call_bytes(
            Method::POST,
            "/api/leads/imports?dryRun=true",
            Some(rep),
            Some(("text/csv", file.clone())),
        )
        .await?;
    sample.dry_run_s = t.elapsed().as_secs_f64();
    let report = expect_json(status, 200, &body, "the dry run")?;
    check_report(&report, rows, "the dry run")?;
    if report["encoding"] != "windows-1252" || report["delimiter"] != ";" {
        bail!(
            "the dry run read the file as {} with {:?}, not windows-1252 with ';'",
            report["encoding"],
            report["delimiter"]
        );
    }

    // 4. The import under GET load, the memory sampled.
    let (_, rss_before_kib) = server.memory_kib()?;
    sample.rss_before_kib = rss_before_kib;
    let sampler = Sampler::start(server.pid());
    let loading = Arc::new(AtomicBool::new(false));
    let load_started = Instant::now();
    let get_load = tokio::spawn(load::open_loop_until(
        Arc::clone(target),
        Workload::Get,
        args.get_rate,
        IMPORT_MAX,
        GET_CONNECTIONS,
        1000 * (r + 1) + 1,
        Some(Arc::clone(&loading)),
    ));
    tokio::time::sleep(LEAD_IN).await;
    let posted = Instant::now();
    let polled = import_and_wait(&mut http, rep, file, posted).await;
    let done = Instant::now();
    loading.store(true, Ordering::Relaxed);
    let window = done.duration_since(load_started);
    let during = get_load.await?;
    let (accepted_s, resource) = polled?;
    sample.accepted_s = accepted_s;
    sample.import_s = done.duration_since(posted).as_secs_f64();
    check_report(&resource, rows, "the import")?;
    sample.created = resource["created"].as_u64().unwrap_or(0);
    sample.server_s = match (
        rfc3339(&resource["createdAt"]),
        rfc3339(&resource["finishedAt"]),
    ) {
        (Some(a), Some(b)) => (b - a).as_seconds_f64(),
        _ => f64::NAN,
    };
    sample.during = Latency::of(
        &super::check(during?, "GET by id during the import")?,
        window.as_secs_f64(),
    );

    // 5. The events delivered, then the baseline.
    let drained = Instant::now();
    let deadline = drained + DRAIN_MAX;
    loop {
        let text = http.get_text("/metrics", None).await.unwrap_or_default();
        let pending = text
            .lines()
            .find_map(|l| l.strip_prefix("freshplan_outbox_pending "))
            .and_then(|v| v.trim().parse::<f64>().ok());
        if pending == Some(0.0) {
            break;
        }
        if Instant::now() > deadline {
            println!(
                "xtask bench:   the import's events were not delivered within {} s \
                 (freshplan_outbox_pending {pending:?}); the baseline runs anyway",
                DRAIN_MAX.as_secs()
            );
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    sample.events_s = drained.elapsed().as_secs_f64();
    let rss = sampler.finish()?;
    sample.rss_samples = rss
        .iter()
        .filter(|(at, _)| *at >= posted && *at <= done)
        .count();
    sample.rss_peak_kib = rss
        .iter()
        .filter(|(at, _)| *at >= posted && *at <= done)
        .map(|(_, kib)| *kib)
        .max()
        .unwrap_or(0);
    sample.rss_peak_events_kib = rss.iter().map(|(_, kib)| *kib).max().unwrap_or(0);
    sample.hwm_kib = server.memory_kib()?.0;

    let baseline = load::open_loop(
        Arc::clone(target),
        Workload::Get,
        args.get_rate,
        window,
        GET_CONNECTIONS,
        1000 * (r + 1) + 2,
    )
    .await?;
    sample.baseline = Latency::of(
        &super::check(baseline, "GET by id, baseline")?,
        window.as_secs_f64(),
    );
    Ok(sample)
}

/// A thread reading a process's `VmRSS` every [`EVERY`] until [`Sampler::finish`] (or drop).
struct Sampler {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<Vec<(Instant, u64)>>>,
}

impl Sampler {
    fn start(pid: u32) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let mut out = Vec::new();
            while !flag.load(Ordering::Relaxed) {
                if let Ok((_, rss)) = server::memory_kib_of(pid) {
                    out.push((Instant::now(), rss));
                }
                std::thread::sleep(EVERY);
            }
            out
        });
        Sampler {
            stop,
            thread: Some(thread),
        }
    }

    /// The samples: `(when, VmRSS in KiB)`.
    fn finish(mut self) -> Result<Vec<(Instant, u64)>> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().map_or(Ok(Vec::new()), |t| {
            t.join()
                .map_err(|_| anyhow::anyhow!("the memory sampler panicked"))
        })
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// POSTs the file for import and polls it until it is no longer `RUNNING`: `(seconds from
/// `posted` to the 202, the final resource)`; an import that failed is an error.
async fn import_and_wait(
    http: &mut Http,
    rep: &str,
    file: &Bytes,
    posted: Instant,
) -> Result<(f64, Value)> {
    let (status, body) = http
        .call_bytes(
            Method::POST,
            "/api/leads/imports",
            Some(rep),
            Some(("text/csv", file.clone())),
        )
        .await?;
    let accepted_s = posted.elapsed().as_secs_f64();
    let created = expect_json(status, 202, &body, "the import")?;
    let id = created["id"]
        .as_str()
        .context("the import's 202 names no id")?
        .to_owned();
    let path = format!("/api/leads/imports/{id}");
    loop {
        let (status, body) = http.call(Method::GET, &path, Some(rep), None).await?;
        let resource = expect_json(status, 200, &body, "GET of the import")?;
        match resource["state"].as_str() {
            Some("RUNNING") => {}
            Some("SUCCEEDED") => return Ok((accepted_s, resource)),
            other => bail!(
                "the import ended {}: {}",
                other.unwrap_or("in an unknown state"),
                resource["error"]
            ),
        }
        if posted.elapsed() > IMPORT_MAX {
            bail!(
                "the import was still running after {} s ({} of {} rows processed)",
                IMPORT_MAX.as_secs(),
                resource["processed"],
                resource["rows"]
            );
        }
        tokio::time::sleep(EVERY).await;
    }
}

/// The JSON body of a response with the `expected` status.
fn expect_json(status: u16, expected: u16, body: &[u8], what: &str) -> Result<Value> {
    if status != expected {
        bail!(
            "{what}: HTTP {status}: {}",
            String::from_utf8_lossy(&body[..body.len().min(500)])
        );
    }
    serde_json::from_slice(body).with_context(|| format!("{what}: the answer is no JSON"))
}

/// Every row of the file is a new lead: a refusal or duplicate means the file (or the clean-up)
/// is wrong, and the timing would not be the one of `rows` creates.
fn check_report(report: &Value, rows: u64, what: &str) -> Result<()> {
    let n = |k: &str| report[k].as_u64().unwrap_or(u64::MAX);
    if n("rows") != rows || n("created") != rows || n("refused") != 0 || n("duplicates") != 0 {
        bail!(
            "{what}: expected {rows} rows, all created; got rows {}, created {}, refused {}, \
             duplicates {}; first problems: {}",
            report["rows"],
            report["created"],
            report["refused"],
            report["duplicates"],
            serde_json::to_string(&report["problems"].as_array().map(|p| &p[..p.len().min(3)]))
                .unwrap_or_default()
        );
    }
    Ok(())
}

fn rfc3339(v: &Value) -> Option<time::OffsetDateTime> {
    v.as_str().and_then(|t| {
        time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).ok()
    })
}

/// Removes what imports added (the leads by their company-name prefix — seeded leads have the
/// source `IMPORT` too —, every import with its rows) and what `seed::cleanup` removes
/// (timeline, outbox, idempotency keys; vacuumed), and checks that the seeded leads are left.
async fn cleanup(db: &mut PgConnection, leads: u64) -> Result<()> {
    let started = Instant::now();
    let imported =
        sqlx::query("delete from leads where source = 'IMPORT' and company_name like $1")
            .bind(format!("{PREFIX}%"))
            .execute(&mut *db)
            .await?
            .rows_affected();
    let imports = sqlx::query("delete from lead_imports")
        .execute(&mut *db)
        .await?
        .rows_affected();
    db.execute("vacuum (analyze) lead_imports, lead_import_rows")
        .await?;
    println!(
        "xtask bench: removed {imported} imported leads and {imports} imports in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    seed::cleanup(db).await?;
    let left: i64 = sqlx::query_scalar("select count(*) from leads")
        .fetch_one(&mut *db)
        .await?;
    if u64::try_from(left).ok() != Some(leads) {
        println!(
            "xtask bench: WARNING: the database holds {left} leads, not the {leads} seeded ones"
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The file
// ---------------------------------------------------------------------------------------------

const HEADER: &str = "Firma;Ansprechpartner;E-Mail;Telefon;Straße;PLZ;Ort;Land;Betriebsart;\
                      Mitarbeiter;Volumen;Einwilligung";
const NAMES: [&str; 12] = [
    "Gasthof Zur Mühle",
    "Bäckerei Weißgerber",
    "Brauhaus Schönblick",
    "Café Königshof",
    "Betriebskantine Süd",
    "Hotel Bärenhöhle",
    "Wirtshaus \"Zum Löwen\"",
    "Metzgerei Größl; Partyservice",
    "Landgasthof Grünwald",
    "Pension Seeblick",
    "Mensa Am Schloß",
    "Brückenwirt",
];
const LEGAL_FORMS: [&str; 6] = [
    "GmbH",
    "GmbH & Co. KG",
    "e.K.",
    "OHG",
    "KG",
    "UG (haftungsbeschränkt)",
];
const FIRST_NAMES: [&str; 10] = [
    "Jürgen",
    "Günther",
    "Jörg",
    "Käthe",
    "Björn",
    "Sören",
    "Hannelore",
    "Uwe",
    "Agnieszka",
    "Mehmet",
];
const LAST_NAMES: [&str; 10] = [
    "Müller", "Schäfer", "Groß", "Weiß", "Köhler", "Bäcker", "Krüger", "Öztürk", "Hoffmann",
    "Schmidt",
];
const STREETS: [&str; 8] = [
    "Hauptstraße",
    "Bahnhofstraße",
    "Schloßallee",
    "Mühlenweg",
    "Königstraße",
    "Gartenstraße",
    "Am Bürgerpark",
    "Lindenstraße",
];
/// City and its area code.
const CITIES: [(&str, &str); 10] = [
    ("München", "089"),
    ("Köln", "0221"),
    ("Düsseldorf", "0211"),
    ("Nürnberg", "0911"),
    ("Würzburg", "0931"),
    ("Lübeck", "0451"),
    ("Göttingen", "0551"),
    ("Saarbrücken", "0681"),
    ("Fürth", "0911"),
    ("Osnabrück", "0541"),
];
const BUSINESS_TYPES: [&str; 8] = [
    "Gaststätte",
    "Hotel",
    "Kantine",
    "Catering",
    "Café",
    "Pension",
    "Mensa",
    "Partyservice",
];

/// The file of run `run`: `rows` rows, each a new DE lead, encoded as German Excel saves
/// "CSV (Trennzeichen-getrennt)".
fn csv_file(run: usize, rows: u32) -> Vec<u8> {
    let mut rng = Rng::new(0x1_5000 + run as u64);
    let mut text = String::with_capacity(rows as usize * 200);
    text.push_str(HEADER);
    text.push_str("\r\n");
    for n in 1..=u64::from(rows) {
        let pick = |rng: &mut Rng, len: usize| (rng.next() % len as u64) as usize;
        let key = format!("{run}-{n:05}");
        let company = format!(
            "{PREFIX}{key} {} {}",
            NAMES[pick(&mut rng, NAMES.len())],
            LEGAL_FORMS[pick(&mut rng, LEGAL_FORMS.len())]
        );
        let contact = format!(
            "{} {}",
            FIRST_NAMES[pick(&mut rng, FIRST_NAMES.len())],
            LAST_NAMES[pick(&mut rng, LAST_NAMES.len())]
        );
        let mailbox = ["info", "einkauf", "kueche", "buero"][pick(&mut rng, 4)];
        let email = format!("{mailbox}.{key}@betrieb-{key}.messe2026.de");
        let (city, area) = CITIES[pick(&mut rng, CITIES.len())];
        let phone = format!("{area} {}", 100_000 + rng.next() % 9_900_000);
        let street = format!(
            "{} {}",
            STREETS[pick(&mut rng, STREETS.len())],
            1 + rng.next() % 180
        );
        // Distinct within the file (37 and 89,999 are coprime, n < 89,999).
        let postal_code = format!("{:05}", 10_000 + (n * 37) % 89_999);
        let staff = if n % 97 == 0 {
            "1.200".to_owned()
        } else {
            (2 + rng.next() % 240).to_string()
        };
        let volume = german_amount(100_000 + rng.next() % 49_900_000);
        let volume = if n % 4 == 0 {
            format!("{volume} €")
        } else {
            volume
        };
        let consent = if rng.next() % 10 < 7 { "ja" } else { "nein" };
        let cells = [
            company.as_str(),
            &contact,
            &email,
            &phone,
            &street,
            &postal_code,
            city,
            "Deutschland",
            BUSINESS_TYPES[pick(&mut rng, BUSINESS_TYPES.len())],
            &staff,
            &volume,
            consent,
        ];
        for (i, cell) in cells.iter().enumerate() {
            if i > 0 {
                text.push(';');
            }
            if cell.contains([';', '"', '\r', '\n']) {
                text.push('"');
                text.push_str(&cell.replace('"', "\"\""));
                text.push('"');
            } else {
                text.push_str(cell);
            }
        }
        text.push_str("\r\n");
    }
    windows_1252(&text)
}

/// `cents` as German Excel writes an amount: `1.234,50`.
fn german_amount(cents: u64) -> String {
    let euros = (cents / 100).to_string();
    let mut out = String::with_capacity(euros.len() + 6);
    for (i, c) in euros.chars().enumerate() {
        if i > 0 && (euros.len() - i).is_multiple_of(3) {
            out.push('.');
        }
        out.push(c);
    }
    format!("{out},{:02}", cents % 100)
}

/// Windows-1252 bytes of `text`, which holds ASCII, Latin-1 letters (`ä`, `ß`, `é`, … are the
/// same numbers in both) and `€`.
fn windows_1252(text: &str) -> Vec<u8> {
    text.chars()
        .map(|c| match (c, u32::from(c)) {
            ('€', _) => 0x80,
            (_, n @ (0..=0x7f | 0xa0..=0xff)) => n as u8,
            _ => unreachable!("{c:?} is not in the file's alphabet"),
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Report
// ---------------------------------------------------------------------------------------------

fn mb(kib: u64) -> f64 {
    kib as f64 * 1024.0 / 1e6
}

/// `min–max` with `digits` decimals.
fn range(values: &[f64], digits: usize) -> String {
    let min = values.iter().copied().fold(f64::INFINITY, f64::min);
    let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if values.is_empty() {
        "–".to_owned()
    } else {
        format!("{min:.digits$}–{max:.digits$}")
    }
}

/// One figure over the runs.
struct Figure {
    what: String,
    unit: &'static str,
    digits: usize,
    values: Vec<f64>,
    /// `(text, bound)`: met when the median is at most `bound`.
    goal: Option<(String, f64)>,
}

fn figures(r: &Results) -> Vec<Figure> {
    let rows = thousands(u64::from(r.rows));
    let v = |f: &dyn Fn(&RunSample) -> f64| r.samples.iter().map(f).collect::<Vec<f64>>();
    let goal = |text: &str, bound: f64| Some((text.to_owned(), bound));
    vec![
        Figure {
            what: format!("dry run of {rows} rows (wall time of the POST, client side)"),
            unit: "s",
            digits: 2,
            values: v(&|s| s.dry_run_s),
            goal: goal("≤ 2 s", DRY_RUN_GOAL_S),
        },
        Figure {
            what: format!("import of {rows} rows (POST → GET says `SUCCEEDED`)"),
            unit: "s",
            digits: 2,
            values: v(&|s| s.import_s),
            goal: goal("≤ 15 s", IMPORT_GOAL_S),
        },
        Figure {
            what: format!(
                "GET by id p99 during the import (open loop at {}/s)",
                r.get_rate
            ),
            unit: "ms",
            digits: 2,
            values: v(&|s| s.during.p99_ms),
            goal: goal("≤ 10 ms", GET_P99_GOAL_MS),
        },
        Figure {
            what: "server peak RSS during the import (`VmRSS` every 100 ms)".into(),
            unit: "MB",
            digits: 1,
            values: v(&|s| mb(s.rss_peak_kib)),
            goal: goal("≤ 150 MB", RSS_GOAL_MB),
        },
        Figure {
            what: "… import throughput".into(),
            unit: "rows/s",
            digits: 0,
            values: v(&|s| f64::from(r.rows) / s.import_s),
            goal: None,
        },
        Figure {
            what: "… POST → `202` (upload, read, register)".into(),
            unit: "s",
            digits: 2,
            values: v(&|s| s.accepted_s),
            goal: None,
        },
        Figure {
            what: "… the import on the server's clock (`createdAt` → `finishedAt`)".into(),
            unit: "s",
            digits: 2,
            values: v(&|s| s.server_s),
            goal: None,
        },
        Figure {
            what: "… GET by id p50 during the import".into(),
            unit: "ms",
            digits: 2,
            values: v(&|s| s.during.p50_ms),
            goal: None,
        },
        Figure {
            what: "… GET by id p95 during the import".into(),
            unit: "ms",
            digits: 2,
            values: v(&|s| s.during.p95_ms),
            goal: None,
        },
        Figure {
            what: "… GET by id max during the import".into(),
            unit: "ms",
            digits: 2,
            values: v(&|s| s.during.max_ms),
            goal: None,
        },
        Figure {
            what: "… baseline: GET by id p50, same load and duration, no import".into(),
            unit: "ms",
            digits: 2,
            values: v(&|s| s.baseline.p50_ms),
            goal: None,
        },
        Figure {
            what: "… baseline: GET by id p95".into(),
            unit: "ms",
            digits: 2,
            values: v(&|s| s.baseline.p95_ms),
            goal: None,
        },
        Figure {
            what: "… baseline: GET by id p99".into(),
            unit: "ms",
            digits: 2,
            values: v(&|s| s.baseline.p99_ms),
            goal: None,
        },
        Figure {
            what: "… server RSS just before the import's POST (after warm-up and dry run)".into(),
            unit: "MB",
            digits: 1,
            values: v(&|s| mb(s.rss_before_kib)),
            goal: None,
        },
        Figure {
            what: "… server peak RSS until the import's events were delivered".into(),
            unit: "MB",
            digits: 1,
            values: v(&|s| mb(s.rss_peak_events_kib)),
            goal: None,
        },
        Figure {
            what: "… server `VmHWM` (whole life: warm-up, dry run, import, events)".into(),
            unit: "MB",
            digits: 1,
            values: v(&|s| mb(s.hwm_kib)),
            goal: None,
        },
        Figure {
            what: "… `SUCCEEDED` → the import's events delivered (`freshplan_outbox_pending` 0)"
                .into(),
            unit: "s",
            digits: 1,
            values: v(&|s| s.events_s),
            goal: None,
        },
    ]
}

fn section(r: &Results) -> String {
    let rows = thousands(u64::from(r.rows));
    let mut s = String::new();
    let _ = writeln!(s, "## Lead import benchmark (issue 15)\n");
    let _ = writeln!(
        s,
        "Generated by `cargo xtask bench import`; this section is replaced on the next run.\n"
    );
    let bytes: Vec<f64> = r
        .samples
        .iter()
        .map(|x| x.file_bytes as f64 / 1e6)
        .collect();
    let _ = write!(
        s,
        "{}",
        r.prov.bullets(
            "release build (pool of 16, one worker per core, info logging to a file), events, \
             metrics and the cockpit's counts on (the defaults), follow-up schedule and \
             protection sweep off; a fresh server per run",
            &format!(
                "{} run(s) on the API bench's {} seeded leads; each run imports a file of its \
                 own: {rows} new DE leads ({} MB), Windows-1252, `;`, CRLF, German titles and \
                 spellings (`ja`/`nein`, `1.234,50 €`, `Deutschland`, `Gaststätte`), sent as \
                 `text/csv` without a charset by a DE sales rep (`rep-0001`, owner of every \
                 lead). Per run: a dry run of the file, then its import while an open-loop \
                 generator sends `GET /api/leads/{{id}}` of random seeded leads (DE+CH \
                 manager) at {}/s on {GET_CONNECTIONS} connections of their own, from {} ms \
                 before the POST until `GET /api/leads/imports/{{id}}` (polled every {} ms) \
                 says `SUCCEEDED`; latency from each request's scheduled instant. Once the \
                 import's events are delivered, the same GET load for the same duration \
                 without an import (the baseline). The server's `VmRSS` is sampled every {} \
                 ms. After each run the imported leads and imports are removed and the tables \
                 vacuumed. Medians over the runs; the range is min–max.",
                r.runs,
                thousands(r.leads),
                per_run(&bytes, 1),
                r.get_rate,
                LEAD_IN.as_millis(),
                EVERY.as_millis(),
                EVERY.as_millis(),
            ),
        )
    );
    let _ = writeln!(s, "\n### Goals and figures\n");
    let _ = writeln!(s, "| figure | median | min–max | goal | verdict |");
    let _ = writeln!(s, "|---|---:|---:|---|---|");
    for f in figures(r) {
        let m = median(&f.values);
        let (goal, met) = match &f.goal {
            Some((text, bound)) => (text.as_str(), verdict(m <= *bound)),
            None => ("", ""),
        };
        let d = f.digits;
        let _ = writeln!(
            s,
            "| {} | {m:.d$} {} | {} | {goal} | {met} |",
            f.what,
            f.unit,
            range(&f.values, d),
        );
    }
    let _ = writeln!(s, "\n### Per run\n");
    let _ = writeln!(
        s,
        "| run | dry run s | import s | rows/s | GET p50 / p95 / p99 during, ms | requests (errors) | baseline p50 / p95 / p99, ms | RSS before → peak MB |"
    );
    let _ = writeln!(s, "|---:|---:|---:|---:|---|---:|---|---|");
    for (i, x) in r.samples.iter().enumerate() {
        let _ = writeln!(
            s,
            "| {} | {:.2} | {:.2} | {:.0} | {:.2} / {:.2} / {:.2} | {} ({}) | {:.2} / {:.2} / {:.2} | {:.1} → {:.1} |",
            i + 1,
            x.dry_run_s,
            x.import_s,
            f64::from(r.rows) / x.import_s,
            x.during.p50_ms,
            x.during.p95_ms,
            x.during.p99_ms,
            x.during.ok,
            x.during.errors,
            x.baseline.p50_ms,
            x.baseline.p95_ms,
            x.baseline.p99_ms,
            mb(x.rss_before_kib),
            mb(x.rss_peak_kib),
        );
    }
    s
}

/// The results as JSON (for before/after comparisons).
fn to_json(r: &Results) -> Value {
    json!({
        "rows": r.rows, "runs": r.runs, "get_rate": r.get_rate, "leads": r.leads,
        "started": r.prov.started, "command": r.prov.command, "git": r.prov.git,
        "machine": r.prov.machine, "postgres": r.prov.postgres,
        "figures": figures(r).iter().map(|f| json!({
            "figure": f.what, "unit": f.unit, "median": median(&f.values), "values": f.values,
            "goal": f.goal.as_ref().map(|g| &g.0),
            "met": f.goal.as_ref().map(|g| median(&f.values) <= g.1),
        })).collect::<Vec<_>>(),
        "runs_detail": r.samples.iter().map(|x| json!({
            "file_bytes": x.file_bytes, "dry_run_s": x.dry_run_s, "accepted_s": x.accepted_s,
            "import_s": x.import_s, "server_s": x.server_s, "created": x.created,
            "get_during": x.during.json(), "get_baseline": x.baseline.json(),
            "rss_before_kib": x.rss_before_kib, "rss_peak_kib": x.rss_peak_kib,
            "rss_samples": x.rss_samples, "rss_peak_until_events_kib": x.rss_peak_events_kib,
            "hwm_kib": x.hwm_kib, "events_s": x.events_s,
        })).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_is_german_excel_and_every_row_is_distinct() {
        let bytes = csv_file(2, 300);
        assert!(std::str::from_utf8(&bytes).is_err(), "not UTF-8");
        assert!(bytes.contains(&0xdf) && bytes.contains(&0xfc) && bytes.contains(&0x80));
        let text: String = bytes.iter().map(|&b| char::from(b)).collect();
        let lines: Vec<&str> = text.split_terminator("\r\n").collect();
        assert_eq!(lines.len(), 301);
        assert!(!text.replace("\r\n", "").contains('\n'));
        let mut emails = std::collections::BTreeSet::new();
        let mut postal = std::collections::BTreeSet::new();
        for line in &lines[1..] {
            assert!(line.starts_with(PREFIX) || line.starts_with(&format!("\"{PREFIX}")));
            let email = line
                .split(';')
                .find(|c| c.contains('@'))
                .expect("an e-mail");
            assert!(emails.insert(email.to_owned()));
            let plz = line
                .split(';')
                .find(|c| c.len() == 5 && c.bytes().all(|b| b.is_ascii_digit()))
                .expect("a postal code");
            assert!(postal.insert(plz.to_owned()));
        }
        assert_ne!(csv_file(1, 10), csv_file(2, 10));
    }

    #[test]
    fn amounts_are_spelled_the_german_way() {
        assert_eq!(german_amount(123_450), "1.234,50");
        assert_eq!(german_amount(5), "0,05");
        assert_eq!(german_amount(123_456_789), "1.234.567,89");
    }
}
