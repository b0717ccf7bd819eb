//! `cargo xtask bench instructions`: the server's CPU instructions per request, counted by
//! valgrind's callgrind, with the metrics on and off (issue 12, goal 4: the metrics cost < 1 %).
//!
//! Throughput with and without metrics differs by less than this machine's run-to-run noise, so
//! it cannot show a 1 % cost. Instructions can: callgrind counts every instruction the server
//! process executes and repeats to a fraction of a per cent. Per configuration the release
//! server starts under callgrind with instrumentation off (start-up is not counted), takes a
//! warm-up, then `callgrind_control -i on` counts exactly the measured requests (creates as a
//! sales rep, then GETs by id as a manager, one connection, one after another) until
//! `-i off`; the dump at exit gives the total. The configurations alternate (on, off, off, on),
//! and each figure is the mean of its two runs. Everything else runs as in production (event
//! pipeline on, request logging at info level); the database is the API bench's, seeded small.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use hyper::Method;

use super::load::Conn;

/// Options of `cargo xtask bench instructions`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct InstructionsArgs {
    /// Measured requests of each kind per run.
    #[arg(long, default_value_t = 300)]
    requests: u64,
    /// Benchmark this `freshplan` binary instead of building the workspace's.
    #[arg(long)]
    server_binary: Option<PathBuf>,
}

/// Seeded leads of the database the GETs read.
const LEADS: u64 = 10_000;

pub(crate) fn run(root: &Path, args: InstructionsArgs) -> Result<()> {
    let valgrind = crate::tools::ensure("valgrind", "valgrind")?;
    let control = valgrind.with_file_name("callgrind_control");
    if !control.is_file() {
        bail!("{} is missing (it comes with valgrind)", control.display());
    }
    let freshplan = match &args.server_binary {
        Some(path) => path.clone(),
        None => super::build_release(root)?,
    };
    let pg = crate::pg::ensure_postgres(root)?;
    let work = super::target_dir(root).join("bench").join("instructions");
    std::fs::create_dir_all(&work)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let url = runtime.block_on(super::seed::prepare(pg.url(), &freshplan, LEADS, false))?;
    let rep = super::mint(&freshplan, &super::seed::rep_id(1), "sales", "DE")?;
    let manager = super::mint(&freshplan, "bench-manager-all", "manager", "DE,CH")?;

    let mut results: Vec<(bool, f64, f64)> = Vec::new();
    for (i, metrics) in [true, false, false, true].into_iter().enumerate() {
        let (create, get) = runtime.block_on(measure(
            &valgrind, &control, &freshplan, &url, &work, metrics, &rep, &manager, &args, i,
        ))?;
        println!(
            "xtask bench: metrics {}: {create:.0} instructions per create, {get:.0} per GET",
            if metrics { "on " } else { "off" }
        );
        results.push((metrics, create, get));
    }
    let mean = |metrics: bool, pick: fn(&(bool, f64, f64)) -> f64| {
        let v: Vec<f64> = results
            .iter()
            .filter(|r| r.0 == metrics)
            .map(pick)
            .collect();
        v.iter().sum::<f64>() / v.len() as f64
    };
    println!("\nxtask bench: server instructions per request (callgrind, mean of two runs each)");
    println!("| request | metrics on | metrics off | cost of the metrics |");
    println!("|---|---:|---:|---:|");
    for (name, pick) in [
        (
            "create",
            (|r: &(bool, f64, f64)| r.1) as fn(&(bool, f64, f64)) -> f64,
        ),
        ("GET by id", |r: &(bool, f64, f64)| r.2),
    ] {
        let on = mean(true, pick);
        let off = mean(false, pick);
        println!(
            "| {name} | {on:.0} | {off:.0} | {:.2} % |",
            (on / off - 1.0) * 100.0
        );
    }
    let spread = |pick: fn(&(bool, f64, f64)) -> f64| {
        results
            .iter()
            .filter(|r| r.0)
            .map(pick)
            .fold((f64::MAX, f64::MIN), |(lo, hi), v| (lo.min(v), hi.max(v)))
    };
    let (lo, hi) = spread(|r| r.1);
    println!(
        "\nRepeatability: the two metrics-on runs of create differ by {:.2} %.",
        (hi / lo - 1.0) * 100.0
    );
    drop(pg);
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn measure(
    valgrind: &Path,
    control: &Path,
    freshplan: &Path,
    url: &str,
    work: &Path,
    metrics: bool,
    rep: &str,
    manager: &str,
    args: &InstructionsArgs,
    run: usize,
) -> Result<(f64, f64)> {
    let port = std::net::TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, 0))?
        .local_addr()?
        .port();
    let addr = std::net::SocketAddr::from((std::net::Ipv4Addr::LOCALHOST, port));
    let out = work.join(format!("callgrind.{run}.out"));
    let log = std::fs::File::create(work.join(format!("server.{run}.log")))?;
    let child = Command::new(valgrind)
        .arg("--tool=callgrind")
        .arg("--instr-atstart=no")
        .arg(format!("--callgrind-out-file={}", out.display()))
        .arg(freshplan)
        .args(["serve", "--no-migrate"])
        .current_dir(work)
        .env("DATABASE_URL", url)
        .env("FRESHPLAN_BIND", addr.to_string())
        .env("FRESHPLAN_AUTH_HS256_SECRET", super::SECRET)
        .env("FRESHPLAN_FOLLOWUP_ENABLED", "false")
        .env("FRESHPLAN_SWEEP_ENABLED", "false")
        .env("FRESHPLAN_METRICS", if metrics { "true" } else { "false" })
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .context("starting freshplan under valgrind")?;
    let server = Valgrinded(child);
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        if let Ok(mut conn) = Conn::open(addr).await
            && conn.get_status("/health/ready").await.ok() == Some(200)
        {
            break;
        }
        if Instant::now() > deadline {
            bail!("the server under valgrind did not become ready in 180 s");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let mut http = Conn::open(addr).await?;
    let pid = std::process::id();
    for i in 0..50 {
        create(&mut http, rep, format!("{pid}i{run}w{i}")).await?;
        let path = format!("/api/leads/{}", super::seed::lead_id(1 + i));
        http.call(Method::GET, &path, manager, None, false).await?;
    }
    let pid_server = server.0.id().to_string();
    let toggle = |on: &str| {
        let status = Command::new(control)
            .args(["-i", on, &pid_server])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        match status {
            Ok(s) if s.success() => Ok(()),
            other => Err(anyhow::anyhow!(
                "callgrind_control -i {on} failed: {other:?}"
            )),
        }
    };
    // Creates first, then GETs, each counted on its own.
    let mut counts = Vec::new();
    for kind in ["create", "get"] {
        // A dump zeroes the counters: the next one holds exactly the measured requests.
        dump_total(control, &pid_server, &out)?;
        toggle("on")?;
        for i in 0..args.requests {
            if kind == "create" {
                create(&mut http, rep, format!("{pid}i{run}m{i}")).await?;
            } else {
                let path = format!("/api/leads/{}", super::seed::lead_id(1 + (i * 31) % LEADS));
                let (status, _) = http.call(Method::GET, &path, manager, None, false).await?;
                if status != 200 {
                    bail!("GET answered {status}");
                }
            }
        }
        // Let the event pipeline finish what the requests set off (it is part of their cost).
        tokio::time::sleep(Duration::from_millis(500)).await;
        toggle("off")?;
        let counted = dump_total(control, &pid_server, &out)?;
        counts.push(counted as f64 / args.requests as f64);
    }
    drop(server);
    Ok((counts[0], counts[1]))
}

/// Creates a lead as the sales rep `rep` (`tag` makes it unique).
async fn create(http: &mut Conn, rep: &str, tag: String) -> Result<()> {
    let body = super::events::new_lead_body(&tag, "DE");
    let (status, bytes) = http
        .call(
            Method::POST,
            "/api/leads",
            rep,
            Some(("application/json", body)),
            false,
        )
        .await?;
    if status != 201 {
        bail!(
            "create answered {status}: {}",
            String::from_utf8_lossy(&bytes)
        );
    }
    Ok(())
}

/// Asks callgrind for a dump (which zeroes its counters) and returns the instructions it holds
/// (the `totals:` line of the new dump file `<out>.<n>`, once it is complete).
fn dump_total(control: &Path, pid: &str, out: &Path) -> Result<u64> {
    let dir = out.parent().context("no folder")?;
    let stem = out
        .file_name()
        .context("no name")?
        .to_string_lossy()
        .to_string();
    let newest = || -> Result<Option<(u32, PathBuf)>> {
        let mut newest: Option<(u32, PathBuf)> = None;
        for entry in std::fs::read_dir(dir)? {
            let path = entry?.path();
            let name = path
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .to_string();
            if let Some(n) = name
                .strip_prefix(&format!("{stem}."))
                .and_then(|n| n.parse::<u32>().ok())
                && newest.as_ref().is_none_or(|(m, _)| n > *m)
            {
                newest = Some((n, path));
            }
        }
        Ok(newest)
    };
    let previous = newest()?.map_or(0, |(n, _)| n);
    let status = Command::new(control)
        .args(["-d", pid])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()?;
    if !status.success() {
        bail!("callgrind_control -d failed");
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some((n, path)) = newest()?
            && n > previous
            && let Some(total) = std::fs::read_to_string(&path)?
                .lines()
                .find_map(|l| l.strip_prefix("totals:"))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse().ok())
        {
            return Ok(total);
        }
        if Instant::now() > deadline {
            bail!("callgrind wrote no dump after {previous} within 60 s");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The server under valgrind; stopped (and its dumps written) on drop.
struct Valgrinded(Child);

impl Drop for Valgrinded {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-INT", &self.0.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
