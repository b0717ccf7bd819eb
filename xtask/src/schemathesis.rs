//! The API contract check: schemathesis against a real `freshplan serve` on seeded data
//! (`cargo xtask schemathesis`, and a step of `cargo xtask test`).
//!
//! 1. schemathesis, pinned with hashes in `xtask/schemathesis/requirements.txt`, in the
//!    project-local virtual environment `.freshplan/venv` (reused while it holds exactly that
//!    file's packages; rebuilt when the file changes).
//! 2. A fresh database `freshplan_test_<uuid v7>` on the test PostgreSQL (so the test command's
//!    clean-up drops it should this command die before it does), migrated and seeded with
//!    [`SEED_LEADS`] leads of the demo data ([`crate::seed`]).
//! 3. `freshplan serve` on a free loopback port (development settings; schedules off so
//!    nothing changes the data behind schemathesis' back), its log in
//!    `.freshplan/schemathesis/server.log`.
//! 4. `schemathesis run …/api/openapi.json --checks all` with every phase (examples, coverage,
//!    fuzzing, stateful), once per persona in [`PERSONAS`]; the configuration, bounds and any
//!    per-operation allowances are in `xtask/schemathesis/schemathesis.toml`.

use std::fs;
use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use sqlx::{Connection as _, PgConnection};

use crate::demo::{self, Server};
use crate::seed::{self, Persona};
use crate::venv::Venv;

/// schemathesis, pinned with hashes (`pip-compile --generate-hashes` of `requirements.in`), in
/// the project's virtual environment.
const VENV: Venv = Venv {
    dir: ".freshplan/venv",
    requirements: "xtask/schemathesis/requirements.txt",
    purpose: "schemathesis",
};
/// The schemathesis configuration file.
const CONFIG: &str = "xtask/schemathesis/schemathesis.toml";
/// Working folder of the runs (server log; schemathesis' reports when asked for), gitignored.
const WORK_DIR: &str = ".freshplan/schemathesis";
/// Leads seeded for the run: every status and protection state, small enough to seed in a
/// second or two.
const SEED_LEADS: usize = 300;
/// The environment variable the configuration file reads the bearer token from.
const TOKEN_VAR: &str = "FRESHPLAN_SCHEMATHESIS_TOKEN";
/// Unsubscribe-link secret of the server under test (development only).
const UNSUBSCRIBE_SECRET: &str = "freshplan-schemathesis-unsubscribe-secret-not-for-production";
/// The personas schemathesis runs as: the one who may do everything, and a sales rep whose
/// view is limited to their own leads (SPEC §5). Looked up in [`seed::PERSONAS`] by variable.
const PERSONAS: [&str; 2] = ["ADMIN_TOKEN", "REP_DE_TOKEN"];

/// `cargo xtask schemathesis [ARGS…]`: PostgreSQL, the binary, then [`check`]. `args` go to
/// `schemathesis run` after the command's own (e.g. `--include-path-regex /api/leads --seed 1`).
pub(crate) fn run(workspace_root: &Path, args: &[String]) -> Result<()> {
    let interrupted = Arc::new(AtomicBool::new(false));
    {
        let interrupted = Arc::clone(&interrupted);
        ctrlc::set_handler(move || interrupted.store(true, Ordering::SeqCst))
            .context("installing the Ctrl-C handler")?;
    }
    let pg = crate::pg::ensure_postgres(workspace_root)?;
    let binary = demo::build(workspace_root, false)?;
    let result = check(workspace_root, pg.url(), &binary, &interrupted, args);
    drop(pg);
    result
}

/// Runs schemathesis against a freshly seeded server, once per persona. `admin_url` is a
/// superuser connection to the test PostgreSQL (its database is not touched). Fails when
/// schemathesis reports any failure (after every persona ran).
pub(crate) fn check(
    workspace_root: &Path,
    admin_url: &str,
    binary: &Path,
    interrupted: &AtomicBool,
    extra_args: &[String],
) -> Result<()> {
    let started = Instant::now();
    let schemathesis = ensure_installed(workspace_root)?;
    let work = workspace_root.join(WORK_DIR);
    fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let (url, database) = runtime.block_on(fresh_seeded_database(admin_url))?;
    let result = serve_and_check(
        workspace_root,
        &schemathesis,
        binary,
        &url,
        &work,
        interrupted,
        extra_args,
    );
    if let Err(e) = runtime.block_on(drop_database(admin_url, &database)) {
        println!("xtask: could not drop the schemathesis database {database}: {e:#}");
    }
    println!(
        "xtask: schemathesis step took {:.0} s",
        started.elapsed().as_secs_f64()
    );
    result
}

fn serve_and_check(
    workspace_root: &Path,
    schemathesis: &Path,
    binary: &Path,
    database_url: &str,
    work: &Path,
    interrupted: &AtomicBool,
    extra_args: &[String],
) -> Result<()> {
    let secret = crate::DEV_SECRET;
    let personas = PERSONAS
        .iter()
        .map(|var| {
            let persona = seed::PERSONAS
                .iter()
                .find(|p| p.var == *var)
                .with_context(|| format!("no demo persona {var}"))?;
            Ok((*persona, demo::mint_token(binary, secret, persona)?))
        })
        .collect::<Result<Vec<(Persona, String)>>>()?;

    let log_path = work.join("server.log");
    let (mut server, address) = start_server(binary, database_url, secret, &log_path)?;
    if let Err(e) = server.wait_ready(&address, interrupted) {
        print_log_tail(&log_path);
        return Err(e);
    }
    let location = format!("http://{address}/api/openapi.json");
    let config = workspace_root.join(CONFIG);

    let mut failed = Vec::new();
    for (persona, token) in &personas {
        let mut command = Command::new(schemathesis);
        command
            .current_dir(work)
            .stdin(Stdio::null())
            .env(TOKEN_VAR, token)
            .arg("--config-file")
            .arg(&config)
            .args(["run", &location, "--checks", "all"])
            .args(["--phases", "examples,coverage,fuzzing,stateful"])
            .args(extra_args);
        println!(
            "\nxtask: schemathesis as {} ({}, roles {}{}): {TOKEN_VAR}=<token> {}",
            persona.label,
            persona.sub,
            persona.roles,
            if persona.territories.is_empty() {
                String::new()
            } else {
                format!(", territories {}", persona.territories)
            },
            shown(&command),
        );
        let run_started = Instant::now();
        let status = command
            .status()
            .with_context(|| format!("running {}", schemathesis.display()))?;
        println!(
            "xtask: schemathesis as {} took {:.0} s",
            persona.label,
            run_started.elapsed().as_secs_f64()
        );
        if interrupted.load(Ordering::SeqCst) {
            bail!("interrupted");
        }
        if let Some(exit) = server.child.try_wait()? {
            print_log_tail(&log_path);
            bail!("the server under test exited ({exit}) during the schemathesis run");
        }
        if !status.success() {
            failed.push(persona.label);
        }
    }
    server.stop();
    if !failed.is_empty() {
        bail!(
            "schemathesis reported failures as {} (server log: {})",
            failed.join(" and as "),
            log_path.display()
        );
    }
    Ok(())
}

/// The schemathesis executable of the project's virtual environment, installing the pinned
/// requirements first unless the environment already holds exactly them.
pub(crate) fn ensure_installed(workspace_root: &Path) -> Result<PathBuf> {
    Ok(VENV
        .ensure(workspace_root, &["schemathesis"])?
        .join("schemathesis"))
}

/// Creates `freshplan_test_<uuid v7>`, migrates it and seeds the demo data. Returns its URL and
/// name.
async fn fresh_seeded_database(admin_url: &str) -> Result<(String, String)> {
    let name = format!("freshplan_test_{}", uuid::Uuid::now_v7().simple());
    let mut conn = PgConnection::connect(admin_url)
        .await
        .context("connecting to the test PostgreSQL")?;
    sqlx::query(&format!("create database {name}"))
        .execute(&mut conn)
        .await
        .with_context(|| format!("creating the database {name}"))?;
    conn.close().await?;
    let url = demo::with_database(admin_url, &name);
    let started = Instant::now();
    freshplan_store_postgres::migrate(&url)
        .await
        .context("migrating the schemathesis database")?;
    let pool = freshplan_store_postgres::connect(&url, 2)
        .await
        .context("connecting to the schemathesis database")?;
    let data = seed::generate(time::OffsetDateTime::now_utc(), SEED_LEADS, seed::DEMO_SEED);
    seed::load(&pool, &data).await?;
    let stats = seed::stats(&pool).await?;
    pool.close().await;
    println!(
        "xtask: database {name}: migrated and seeded {} leads, {} activities, {} follow-up \
         records in {:.1} s",
        stats.leads,
        stats.activities,
        stats.followups,
        started.elapsed().as_secs_f64()
    );
    Ok((url, name))
}

async fn drop_database(admin_url: &str, name: &str) -> Result<()> {
    let mut conn = PgConnection::connect(admin_url).await?;
    sqlx::query(&format!("drop database if exists {name} with (force)"))
        .execute(&mut conn)
        .await?;
    conn.close().await?;
    Ok(())
}

/// Starts `freshplan serve` on a free loopback port with development settings, logging to
/// `log_path`. Returns the server and its address.
fn start_server(
    binary: &Path,
    database_url: &str,
    secret: &str,
    log_path: &Path,
) -> Result<(Server, String)> {
    let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .context("finding a free port")?
        .port();
    let address = format!("127.0.0.1:{port}");
    let log =
        fs::File::create(log_path).with_context(|| format!("creating {}", log_path.display()))?;
    let mut command = Command::new(binary);
    command
        .arg("serve")
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    // Only the settings below: nothing of the caller's own configuration (a JWKS, an SMTP
    // server, an issuer) changes what is tested.
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("FRESHPLAN_") {
            command.env_remove(name);
        }
    }
    command
        .env("DATABASE_URL", database_url)
        .env("FRESHPLAN_BIND", &address)
        .env("FRESHPLAN_AUTH_HS256_SECRET", secret)
        .env("FRESHPLAN_ENV", "development")
        .env("FRESHPLAN_PUBLIC_URL", format!("http://{address}"))
        .env("FRESHPLAN_UNSUBSCRIBE_SECRET", UNSUBSCRIBE_SECRET)
        // The schedules would change leads and follow-ups while schemathesis compares
        // responses; `POST /api/followups/run` still runs on request.
        .env("FRESHPLAN_FOLLOWUP_ENABLED", "false")
        .env("FRESHPLAN_SWEEP_ENABLED", "false")
        .env("RUST_LOG", "warn")
        // A log file, not a terminal: no colour codes.
        .env("NO_COLOR", "1");
    println!(
        "xtask: starting {} serve on {address} (log {})",
        binary.display(),
        log_path.display()
    );
    let child = command
        .spawn()
        .with_context(|| format!("starting {}", binary.display()))?;
    Ok((Server { child }, address))
}

fn print_log_tail(log_path: &Path) {
    let log = fs::read_to_string(log_path).unwrap_or_default();
    let tail: Vec<&str> = log.lines().rev().take(30).collect();
    println!("xtask: last lines of {}:", log_path.display());
    for line in tail.into_iter().rev() {
        println!("  {line}");
    }
}

/// The command line, for the log.
fn shown(command: &Command) -> String {
    std::iter::once(command.get_program())
        .chain(command.get_args())
        .map(|a| {
            let a = a.to_string_lossy();
            if a.contains(' ') {
                format!("'{a}'")
            } else {
                a.into_owned()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}
