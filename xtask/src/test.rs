//! `cargo xtask test`: every test of the workspace against a real PostgreSQL.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, Result, bail};

use crate::pg;

/// Provisions PostgreSQL, runs the doctests (nextest does not run them), then every other test
/// (nextest when installed, else `cargo test`), and stops a private server afterwards, also on
/// failure.
pub(crate) fn run(workspace_root: &Path, runner_args: &[String]) -> Result<()> {
    // Ctrl-C reaches the test runner too (same process group); xtask itself must survive it
    // long enough to stop the private server.
    let interrupted = Arc::new(AtomicBool::new(false));
    {
        let interrupted = Arc::clone(&interrupted);
        ctrlc::set_handler(move || interrupted.store(true, Ordering::SeqCst))
            .context("installing the Ctrl-C handler")?;
    }

    let pg = pg::ensure_postgres(workspace_root)?;
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());

    let nextest = Command::new(&cargo)
        .args(["nextest", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    let mut tests = Command::new(&cargo);
    if nextest {
        tests.args(["nextest", "run", "--workspace", "--all-features"]);
    } else {
        println!("xtask: cargo-nextest is not installed; using cargo test");
        tests.args(["test", "--workspace", "--all-features"]);
    }
    tests.args(runner_args);

    let mut doctests = Command::new(&cargo);
    doctests.args(["test", "--workspace", "--all-features", "--doc"]);

    let mut failed = Vec::new();
    if let Err(e) = check_ops_rules(workspace_root) {
        println!("xtask: alert rules: {e:#}");
        failed.push("alert rules");
    }
    // Doctests first, so the runner's summary of all the other tests is the last thing printed.
    for (name, mut command) in [("doctests", doctests), ("tests", tests)] {
        command
            .current_dir(workspace_root)
            .env("DATABASE_URL", pg.url());
        println!("xtask: running {command:?}");
        let status = command
            .status()
            .with_context(|| format!("running {command:?}"))?;
        if interrupted.load(Ordering::SeqCst) {
            bail!("interrupted");
        }
        if !status.success() {
            failed.push(name);
        }
    }
    drop(pg);
    if !failed.is_empty() {
        bail!("{} failed", failed.join(" and "));
    }
    Ok(())
}

/// `promtool check rules` and `promtool test rules` on `docs/ops/alerts.yml` (SPEC §10).
fn check_ops_rules(workspace_root: &Path) -> Result<()> {
    let promtool = crate::tools::ensure("promtool", "prometheus")?;
    let ops = workspace_root.join("docs/ops");
    for args in [
        ["check", "rules", "alerts.yml"],
        ["test", "rules", "alerts.test.yml"],
    ] {
        let status = Command::new(&promtool)
            .args(args)
            .current_dir(&ops)
            .status()
            .with_context(|| format!("running promtool {args:?}"))?;
        if !status.success() {
            bail!("promtool {} failed", args.join(" "));
        }
    }
    Ok(())
}
