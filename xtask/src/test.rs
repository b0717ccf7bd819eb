//! `cargo xtask test`: every test of the workspace against a real PostgreSQL.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, Result, bail};

use crate::pg;

/// Provisions PostgreSQL, checks the alert rules ([`check_ops_rules`]) and the Kubernetes
/// manifests ([`crate::manifests::check`]), runs the doctests (nextest does not run them), then
/// every other test (nextest when installed, else `cargo test`), then the API contract steps:
/// the TypeScript client types ([`crate::clients::check`]) and schemathesis against the real
/// server ([`crate::schemathesis::check`], unless `skip_schemathesis`); stops a private server
/// afterwards, also on failure.
pub(crate) fn run(
    workspace_root: &Path,
    runner_args: &[String],
    skip_schemathesis: bool,
) -> Result<()> {
    // Ctrl-C reaches the test runner too (same process group); xtask itself must survive it
    // long enough to stop the private server.
    let interrupted = Arc::new(AtomicBool::new(false));
    {
        let interrupted = Arc::clone(&interrupted);
        ctrlc::set_handler(move || interrupted.store(true, Ordering::SeqCst))
            .context("installing the Ctrl-C handler")?;
    }

    let pg = pg::ensure_postgres(workspace_root)?;
    match drop_stale_test_databases(pg.url()) {
        Ok(0) => {}
        Ok(n) => println!("xtask: dropped {n} test databases left by earlier runs"),
        Err(e) => println!("xtask: could not drop old test databases: {e:#}"),
    }
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
    println!("xtask: validating the Kubernetes manifests (deploy/)");
    if let Err(e) = crate::manifests::check(workspace_root) {
        println!("xtask: manifests: {e:#}");
        failed.push("the manifest validation");
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

    // The API contract: the binary the steps below run (the tests above built their own).
    match crate::demo::build(workspace_root, false) {
        Err(e) => {
            println!("xtask: building the freshplan binary: {e:#}");
            failed.push("the freshplan build");
        }
        Ok(binary) => {
            println!("\nxtask: checking the TypeScript client types");
            if let Err(e) = crate::clients::check(workspace_root, &binary) {
                println!("xtask: TypeScript client: {e:#}");
                failed.push("the TypeScript client check");
            }
            println!("\nxtask: the database work per operation against its budgets");
            if let Err(e) = crate::bench::cost::check(workspace_root, &binary, false, false) {
                println!("xtask: cost guard: {e:#}");
                failed.push("the cost guard");
            }
            if skip_schemathesis {
                println!("xtask: skipping schemathesis (--skip-schemathesis)");
            } else {
                println!("\nxtask: schemathesis against the real server");
                if let Err(e) =
                    crate::schemathesis::check(workspace_root, pg.url(), &binary, &interrupted, &[])
                {
                    println!("xtask: schemathesis: {e:#}");
                    failed.push("schemathesis");
                }
            }
        }
    }
    if interrupted.load(Ordering::SeqCst) {
        bail!("interrupted");
    }
    drop(pg);
    if !failed.is_empty() {
        bail!("{} failed", failed.join(" and "));
    }
    Ok(())
}

/// How old a test database must be before [`drop_stale_test_databases`] drops it: older than
/// any test run that could still be using it.
const STALE_TEST_DATABASE: std::time::Duration = std::time::Duration::from_secs(2 * 3600);

/// Drops the `freshplan_test_<uuid v7>` databases of earlier runs
/// (`freshplan_store_postgres::testing::fresh_database`; the HTTP tests do not drop theirs, and a
/// failed test keeps its database for a look): those whose name's UUIDv7 time is more than
/// [`STALE_TEST_DATABASE`] ago and that nobody is connected to. Returns how many it dropped.
fn drop_stale_test_databases(admin_url: &str) -> Result<usize> {
    use sqlx::Connection as _;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let mut conn = sqlx::PgConnection::connect(admin_url).await?;
        let names: Vec<String> = sqlx::query_scalar(
            "select datname from pg_database where datname like 'freshplan\\_test\\_%'",
        )
        .fetch_all(&mut conn)
        .await?;
        let now = std::time::SystemTime::now();
        let mut dropped = 0;
        for name in names {
            let stale = test_database_created(&name)
                .and_then(|created| now.duration_since(created).ok())
                .is_some_and(|age| age > STALE_TEST_DATABASE);
            // `drop database` refuses a database in use; such a one is left alone.
            if stale
                && sqlx::query(&format!("drop database if exists \"{name}\""))
                    .execute(&mut conn)
                    .await
                    .is_ok()
            {
                dropped += 1;
            }
        }
        conn.close().await?;
        Ok(dropped)
    })
}

/// When `freshplan_test_<uuid v7, simple form>` was created: the UUID's timestamp.
fn test_database_created(name: &str) -> Option<std::time::SystemTime> {
    let id = uuid::Uuid::try_parse(name.strip_prefix("freshplan_test_")?).ok()?;
    let (secs, nanos) = id.get_timestamp()?.to_unix();
    Some(std::time::UNIX_EPOCH + std::time::Duration::new(secs, nanos))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_database_names_carry_their_creation_time() {
        let before = std::time::SystemTime::now() - std::time::Duration::from_millis(1);
        let name = format!("freshplan_test_{}", uuid::Uuid::now_v7().simple());
        let created = test_database_created(&name).expect("a v7 name");
        assert!(created >= before && created <= std::time::SystemTime::now());
        assert_eq!(test_database_created("freshplan_test_notauuid"), None);
        assert_eq!(
            test_database_created(&format!("freshplan_test_{}", uuid::Uuid::new_v4().simple())),
            None,
            "a v4 UUID carries no time"
        );
        assert_eq!(test_database_created("freshplan_bench_followup_1m"), None);
    }
}
