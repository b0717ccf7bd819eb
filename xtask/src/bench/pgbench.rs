//! The PostgreSQL floor: the statements the store issues for a GET by id, including the
//! row-level-security context, run by pgbench at the same concurrency as the API scenario.
//!
//! The store opens a unit of work with one simple-protocol message (`begin; set local role …;
//! select set_config(…) ×3`), then runs the prepared lead query, then `commit`: three round
//! trips. pgbench's prepared mode refuses multi-statement messages, so the script sends the three
//! opening statements in one pipeline (`\startpipeline` … `\endpipeline`), which is one round
//! trip as well. The lead columns and joins are read from `crates/store-postgres/src/rows.rs`, so
//! the floor runs the store's exact text.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

/// What pgbench measured.
#[derive(Debug, Clone)]
pub(crate) struct Floor {
    pub(crate) tps: f64,
    pub(crate) p50_us: u64,
    pub(crate) p95_us: u64,
    pub(crate) p99_us: u64,
    pub(crate) failed: u64,
}

/// The pgbench binary: on PATH, else the highest `/usr/lib/postgresql/*/bin/pgbench`.
pub(crate) fn find() -> Result<PathBuf> {
    if Command::new("pgbench")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        return Ok(PathBuf::from("pgbench"));
    }
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let major = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin").join("pgbench");
            bin.is_file().then_some((major, bin))
        })
        .collect();
    found.sort();
    match found.pop() {
        Some((_, bin)) => Ok(bin),
        None => bail!(
            "pgbench is not installed; the bench needs it for the PostgreSQL floor.\n\
             On Debian 12 it ships with the server package: `apt-get install postgresql-15` \
             (PostgreSQL 16 and later: `apt-get install postgresql-client-<major>`)."
        ),
    }
}

/// A Rust string constant of `rows.rs`, with its line continuations undone.
fn rust_const(source: &str, name: &str) -> Result<String> {
    let start = source
        .find(&format!("const {name}: &str = \""))
        .with_context(|| format!("{name} not found in rows.rs"))?;
    let body = &source[start..];
    let body = &body[body.find('"').unwrap_or(0) + 1..];
    let end = body
        .find("\";")
        .with_context(|| format!("end of {name} not found"))?;
    let mut out = String::new();
    let mut chars = body[..end].chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\\' && chars.peek() == Some(&'\n') {
            while chars.peek().is_some_and(|c| c.is_whitespace()) {
                chars.next();
            }
        } else {
            out.push(c);
        }
    }
    Ok(out)
}

/// The store's GET-by-id statement for seeded lead `:n`. `locking` adds the row lock the store
/// took on every read before the read path existed (for the baseline).
pub(crate) fn get_statement(root: &Path, locking: bool) -> Result<String> {
    let rows = std::fs::read_to_string(root.join("crates/store-postgres/src/rows.rs"))
        .context("reading crates/store-postgres/src/rows.rs")?;
    let columns = rust_const(&rows, "LEAD_COLUMNS")?;
    let from = rust_const(&rows, "LEAD_FROM")?;
    Ok(format!(
        "select {columns} from {from} where l.id = ('00000000-0000-4000-8000-' || lpad(to_hex(:n::bigint), 12, '0'))::uuid{}",
        if locking {
            " for no key update of l"
        } else {
            ""
        }
    ))
}

/// The script: context as the store sets it (one round trip), the statement, commit.
pub(crate) fn script(statement: &str, user: &str, roles: &str, territories: &str) -> String {
    let mut hex = String::new();
    for b in user.bytes() {
        let _ = write!(hex, "{b:02x}");
    }
    format!(
        "\\set n random(1, :leads)\n\
         \\startpipeline\n\
         begin;\n\
         set local role freshplan_app;\n\
         select set_config('freshplan.user_id', convert_from(decode('{hex}', 'hex'), 'UTF8'), true), set_config('freshplan.roles', '{roles}', true), set_config('freshplan.territories', '{territories}', true);\n\
         \\endpipeline\n\
         {statement};\n\
         commit;\n"
    )
}

/// Runs `script` with `clients` connections on 2 threads for `secs` seconds (prepared mode),
/// percentiles from the per-transaction log.
#[allow(clippy::too_many_arguments)] // one call site; a struct would only rename them
pub(crate) fn run(
    pgbench: &Path,
    url: &str,
    work_dir: &Path,
    name: &str,
    script: &str,
    leads: u64,
    clients: usize,
    secs: u64,
) -> Result<Floor> {
    let script_path = work_dir.join(format!("{name}.sql"));
    std::fs::write(&script_path, script)?;
    let log_dir = work_dir.join(format!("{name}-log"));
    let _ = std::fs::remove_dir_all(&log_dir);
    std::fs::create_dir_all(&log_dir)?;
    let out = Command::new(pgbench)
        .args([
            "-n",
            "-M",
            "prepared",
            "-c",
            &clients.to_string(),
            "-j",
            "2",
        ])
        .args(["-T", &secs.to_string(), "-D", &format!("leads={leads}")])
        .arg("-l")
        .arg(format!("--log-prefix={}", log_dir.join("tx").display()))
        .arg("-f")
        .arg(&script_path)
        .arg(url)
        .current_dir(&log_dir)
        .output()
        .context("running pgbench")?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        bail!("pgbench failed: {}\n{stdout}\n{stderr}", out.status);
    }
    let tps = stdout
        .lines()
        .find_map(|l| l.strip_prefix("tps = "))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|v| v.parse::<f64>().ok())
        .with_context(|| format!("no tps in pgbench output:\n{stdout}"))?;
    let failed = stdout
        .lines()
        .find_map(|l| l.strip_prefix("number of failed transactions: "))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    let mut latencies = hdrhistogram::Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    for entry in std::fs::read_dir(&log_dir)? {
        let text = std::fs::read_to_string(entry?.path())?;
        for line in text.lines() {
            // client_id transaction_no time script_no time_epoch time_us
            if let Some(us) = line
                .split_whitespace()
                .nth(2)
                .and_then(|v| v.parse::<u64>().ok())
            {
                latencies.saturating_record(us.max(1));
            }
        }
    }
    let _ = std::fs::remove_dir_all(&log_dir);
    Ok(Floor {
        tps,
        p50_us: latencies.value_at_quantile(0.50),
        p95_us: latencies.value_at_quantile(0.95),
        p99_us: latencies.value_at_quantile(0.99),
        failed,
    })
}
