//! `cargo xtask mutants`: mutation testing of the domain crates with cargo-mutants.
//!
//! cargo-mutants injects small faults into a crate (a `>=` becomes `>`, a function returns a
//! default, a match arm disappears) and runs the crate's own tests against each. A mutant the tests
//! fail on is *caught*; one they pass is *missed*: a rule that could be inverted unnoticed.
//!
//! 1. cargo-mutants at exactly [`VERSION`], installed with `cargo install --locked` when missing or
//!    at another version.
//! 2. One run per domain crate ([`CRATES`]), each mutant tested by that crate's own tests
//!    (cargo-mutants' default), configured by `.cargo/mutants.toml` (the exclusions and their
//!    reasons). cargo-mutants copies the workspace to a scratch directory and builds there; the
//!    build artifacts go to `target/mutants/build` (under `CARGO_TARGET_DIR` when set), so the
//!    dependencies stay compiled between runs.
//! 3. The results are read from each run's `outcomes.json` (under `target/mutants/<crate>/`), not
//!    from its console output: caught, missed, unviable and timed-out mutants per crate, the
//!    score, and every missed mutant.
//!
//! The score is `caught / (caught + missed + timeout)`: unviable mutants (the mutated code does not
//! compile) say nothing about the tests and are left out; a timeout counts against the score (it
//! usually means an infinite loop no test bounded). The whole run fails when a crate scores under
//! its threshold.
//!
//! `--changed` (the CI step) tests only the mutants in code changed since a base commit
//! ([`diff_base`]): cargo-mutants' `--in-diff` with a `git diff` of the domain crates' sources; it
//! fails when any of those mutants is missed or times out, and skips when no domain source changed.

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use serde_json::Value;

/// The cargo-mutants release this project is tested with (crates.io, `cargo install --locked`).
pub(crate) const VERSION: &str = "27.1.0";

/// proptest cases per property (without its own count) in a mutant's test run.
const PROPTEST_CASES: &str = "32";

/// A domain crate and the share of its viable mutants its tests must catch.
#[derive(Debug, Clone, Copy)]
pub(crate) struct DomainCrate {
    /// The directory under `crates/`.
    pub(crate) dir: &'static str,
    /// The Cargo package name.
    pub(crate) package: &'static str,
    /// The lowest acceptable score, in percent.
    pub(crate) threshold: f64,
}

/// The four domain crates: the rules (leads, follow-up) at 95 %, the vocabulary and calendar
/// (kernel, territory) at 90 %.
pub(crate) const CRATES: [DomainCrate; 4] = [
    DomainCrate {
        dir: "kernel",
        package: "freshplan-kernel",
        threshold: 90.0,
    },
    DomainCrate {
        dir: "territory",
        package: "freshplan-territory",
        threshold: 90.0,
    },
    DomainCrate {
        dir: "leads",
        package: "freshplan-leads",
        threshold: 95.0,
    },
    DomainCrate {
        dir: "followup",
        package: "freshplan-followup",
        threshold: 95.0,
    },
];

/// What one cargo-mutants run found, from its `outcomes.json`.
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct Tally {
    pub(crate) caught: usize,
    pub(crate) missed: usize,
    pub(crate) unviable: usize,
    pub(crate) timeout: usize,
    /// The names of the missed mutants (`file:line:col: replace … with …`).
    pub(crate) missed_names: Vec<String>,
    /// The names of the mutants that timed out.
    pub(crate) timeout_names: Vec<String>,
}

impl Tally {
    /// Caught mutants per viable mutant (caught + missed + timeout), in percent; `None` when no
    /// mutant was viable.
    pub(crate) fn score(&self) -> Option<f64> {
        let viable = self.caught + self.missed + self.timeout;
        (viable > 0).then(|| 100.0 * self.caught as f64 / viable as f64)
    }
}

/// Reads a cargo-mutants `outcomes.json`: one outcome per scenario, the baseline (unmutated tree)
/// first; a mutant's `summary` is `CaughtMutant`, `MissedMutant`, `Unviable` or `Timeout`.
pub(crate) fn parse_outcomes(json: &str) -> Result<Tally> {
    let root: Value = serde_json::from_str(json).context("outcomes.json is not JSON")?;
    let outcomes = root
        .get("outcomes")
        .and_then(Value::as_array)
        .context("outcomes.json has no `outcomes` array")?;
    let mut tally = Tally::default();
    for outcome in outcomes {
        let Some(mutant) = outcome.pointer("/scenario/Mutant") else {
            continue; // the baseline
        };
        let name = mutant
            .get("name")
            .and_then(Value::as_str)
            .context("a mutant without a name")?
            .to_owned();
        match outcome.get("summary").and_then(Value::as_str) {
            Some("CaughtMutant") => tally.caught += 1,
            Some("MissedMutant") => {
                tally.missed += 1;
                tally.missed_names.push(name);
            }
            Some("Unviable") => tally.unviable += 1,
            Some("Timeout") => {
                tally.timeout += 1;
                tally.timeout_names.push(name);
            }
            other => bail!("mutant {name}: unexpected outcome {other:?}"),
        }
    }
    Ok(tally)
}

/// `cargo xtask mutants [--changed] [-p CRATE…]`.
pub(crate) fn run(workspace_root: &Path, changed: bool, only: &[String]) -> Result<()> {
    let crates = selected(only)?;
    let out_root = target_dir(workspace_root).join("mutants");
    fs::create_dir_all(&out_root).with_context(|| format!("creating {}", out_root.display()))?;

    let diff = if changed {
        match changed_diff(workspace_root, &out_root)? {
            ChangedDiff::Diff { base, path, dirs } => {
                let touched: Vec<_> = crates
                    .iter()
                    .copied()
                    .filter(|c| dirs.iter().any(|d| d == c.dir))
                    .collect();
                if touched.is_empty() {
                    println!(
                        "xtask: mutants: no source file of a domain crate changed since {base}; \
                         nothing to mutate"
                    );
                    return Ok(());
                }
                println!(
                    "xtask: mutants: testing the mutants in code changed since {base} ({})",
                    path.display()
                );
                Some((path, touched))
            }
            ChangedDiff::NoBase => {
                println!(
                    "xtask: mutants: no commit to compare with (no upstream, no parent); \
                     testing every mutant"
                );
                None
            }
        }
    } else {
        None
    };
    let (diff_path, crates) = match diff {
        Some((path, touched)) => (Some(path), touched),
        None => (None, crates),
    };

    ensure_installed(workspace_root)?;
    let started = Instant::now();
    let mut report = String::new();
    let mut failures = Vec::new();
    for krate in &crates {
        let out = out_root.join(krate.dir);
        let crate_started = Instant::now();
        let tally = run_crate(workspace_root, krate, &out, diff_path.as_deref())?;
        let seconds = crate_started.elapsed().as_secs();
        let score = tally.score();
        let _ = writeln!(
            report,
            "{:<22} caught {:>4}  missed {:>3}  unviable {:>3}  timeout {:>2}  score {:>6}  \
             (threshold {}%, {}m{:02}s)",
            krate.package,
            tally.caught,
            tally.missed,
            tally.unviable,
            tally.timeout,
            score.map_or_else(|| "-".to_owned(), |s| format!("{s:.1}%")),
            krate.threshold,
            seconds / 60,
            seconds % 60,
        );
        for name in &tally.missed_names {
            let _ = writeln!(report, "    missed:  {name}");
        }
        for name in &tally.timeout_names {
            let _ = writeln!(report, "    timeout: {name}");
        }
        if diff_path.is_some() {
            if tally.missed + tally.timeout > 0 {
                failures.push(format!(
                    "{}: {} mutant(s) in the changed code survived",
                    krate.package,
                    tally.missed + tally.timeout
                ));
            }
        } else if score.is_some_and(|s| s < krate.threshold) {
            failures.push(format!(
                "{}: score {:.1}% is under {}%",
                krate.package,
                score.unwrap_or_default(),
                krate.threshold
            ));
        }
    }
    let seconds = started.elapsed().as_secs();
    println!(
        "\nxtask: mutants (cargo-mutants {VERSION}; score = caught / (caught + missed + timeout)); \
         {}m{:02}s; outcomes under {}\n{report}",
        seconds / 60,
        seconds % 60,
        out_root.display()
    );
    if failures.is_empty() {
        Ok(())
    } else {
        bail!(
            "mutation testing failed: {}.\nA missed mutant is a change to the code no test \
             noticed: add a test that states the rule it breaks (docs/TESTING.md), or, when the \
             mutant is equivalent by construction, exclude it in .cargo/mutants.toml with the \
             reason.",
            failures.join("; ")
        )
    }
}

/// The crates named in `only` (directory or package name), all of them when empty.
fn selected(only: &[String]) -> Result<Vec<DomainCrate>> {
    if only.is_empty() {
        return Ok(CRATES.to_vec());
    }
    only.iter()
        .map(|name| {
            CRATES
                .iter()
                .copied()
                .find(|c| c.dir == name || c.package == name)
                .with_context(|| {
                    format!("{name} is not a domain crate (kernel, territory, leads, followup)")
                })
        })
        .collect()
}

/// Runs cargo-mutants over one crate with `out` as its output directory and reads the tally.
fn run_crate(
    workspace_root: &Path,
    krate: &DomainCrate,
    out: &Path,
    in_diff: Option<&Path>,
) -> Result<Tally> {
    // A fresh directory, so a run that writes nothing is never read as an older run's result.
    if out.exists() {
        fs::remove_dir_all(out).with_context(|| format!("removing {}", out.display()))?;
    }
    fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let mut command = Command::new(cargo());
    command
        .current_dir(workspace_root)
        .arg("mutants")
        .args(["--package", krate.package, "--no-shuffle", "--output"])
        .arg(out);
    if let Some(diff) = in_diff {
        command.arg("--in-diff").arg(diff);
    }
    // Properties without their own case count run PROPTEST_CASES cases; 32 instead of 256 keeps
    // a mutant's test run short. Fewer cases can only catch fewer mutants, so the score is a
    // lower bound of the full suite's (which `cargo xtask test` runs); properties that set their
    // own count (the protection and status-machine ones) keep it.
    if std::env::var_os("PROPTEST_CASES").is_none() {
        command.env("PROPTEST_CASES", PROPTEST_CASES);
    }
    // A target directory of its own: the mutated builds would otherwise replace the domain
    // crates' artifacts of the normal build (cargo names them by relative path).
    command.env(
        "CARGO_TARGET_DIR",
        target_dir(workspace_root).join("mutants/build"),
    );
    println!("\nxtask: mutants: {}: running {command:?}", krate.package);
    let status = command
        .status()
        .with_context(|| format!("running {command:?}"))?;
    // cargo-mutants exits 2 when mutants were missed and 3 when some timed out; both are results
    // this command judges itself. 4 means the unmutated tree fails its tests; anything else
    // non-zero (a diff that does not match the tree, …) is an error of the run.
    if status.code() == Some(4) {
        bail!(
            "the tests of {} fail without any mutation (cargo-mutants' baseline run); its log is \
             {}",
            krate.package,
            out.join("mutants.out/log/baseline.log").display()
        );
    }
    if !matches!(status.code(), Some(0 | 2 | 3)) {
        bail!(
            "cargo-mutants failed for {} ({status}); its log is under {}",
            krate.package,
            out.join("mutants.out").display()
        );
    }
    let outcomes = out.join("mutants.out/outcomes.json");
    if !outcomes.exists() && in_diff.is_some() {
        return Ok(Tally::default()); // no mutant in the changed lines of this crate
    }
    let json =
        fs::read_to_string(&outcomes).with_context(|| format!("reading {}", outcomes.display()))?;
    parse_outcomes(&json).with_context(|| format!("reading {}", outcomes.display()))
}

/// The cargo target directory: `CARGO_TARGET_DIR` when set, else `target` in the workspace.
fn target_dir(workspace_root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map_or_else(
            || workspace_root.join("target"),
            |dir| workspace_root.join(dir),
        )
}

/// Cargo, to run `cargo mutants` (cargo finds the subcommand on PATH and in `$CARGO_HOME/bin`).
fn cargo() -> std::ffi::OsString {
    std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into())
}

/// Makes sure `cargo mutants` is cargo-mutants [`VERSION`]: installs it with
/// `cargo install --locked` when it is missing or at another version.
fn ensure_installed(workspace_root: &Path) -> Result<()> {
    let installed = Command::new(cargo())
        .args(["mutants", "--version"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned());
    if installed.as_deref() == Some(&format!("cargo-mutants {VERSION}")) {
        return Ok(());
    }
    match &installed {
        Some(other) => println!("xtask: {other} is installed; installing cargo-mutants {VERSION}"),
        None => println!("xtask: cargo-mutants is not installed; installing {VERSION}"),
    }
    let status = Command::new(cargo())
        .current_dir(workspace_root)
        .args(["install", "--locked", "cargo-mutants", "--version", VERSION])
        .status()
        .context("running cargo install cargo-mutants")?;
    anyhow::ensure!(
        status.success(),
        "cargo install --locked cargo-mutants --version {VERSION} failed: {status}"
    );
    Ok(())
}

/// The diff `--changed` tests, or why there is none.
#[derive(Debug)]
enum ChangedDiff {
    /// `git diff BASE` (to the working tree) of the domain crates' sources, written to `path`;
    /// `dirs` are the crate directories it touches.
    Diff {
        base: String,
        path: PathBuf,
        dirs: Vec<String>,
    },
    /// No commit to compare with.
    NoBase,
}

/// Writes the diff of the domain crates' sources against [`diff_base`] to `out_root/changed.diff`.
fn changed_diff(workspace_root: &Path, out_root: &Path) -> Result<ChangedDiff> {
    let Some(base) = diff_base(workspace_root)? else {
        return Ok(ChangedDiff::NoBase);
    };
    let mut args = vec![
        "diff".to_owned(),
        "--no-color".to_owned(),
        "--no-ext-diff".to_owned(),
        base.clone(),
        "--".to_owned(),
    ];
    args.extend(CRATES.iter().map(|c| format!("crates/{}/src", c.dir)));
    let diff = git(workspace_root, &args)?;
    let path = out_root.join("changed.diff");
    fs::write(&path, &diff).with_context(|| format!("writing {}", path.display()))?;
    Ok(ChangedDiff::Diff {
        dirs: touched_crates(&diff),
        base,
        path,
    })
}

/// The commit `--changed` compares with: the merge base with the upstream branch when there is one
/// and it is not HEAD itself (a feature branch), else HEAD's parent (the last commit on main);
/// `None` in a repository of one commit (or a shallow clone of depth 1).
fn diff_base(workspace_root: &Path) -> Result<Option<String>> {
    let head = git(workspace_root, &["rev-parse", "HEAD"])?;
    let head = head.trim();
    if let Ok(base) = git(workspace_root, &["merge-base", "HEAD", "@{upstream}"]) {
        let base = base.trim();
        if !base.is_empty() && base != head {
            return Ok(Some(base.to_owned()));
        }
    }
    Ok(git(
        workspace_root,
        &["rev-parse", "--verify", "--quiet", "HEAD~1"],
    )
    .ok()
    .map(|parent| parent.trim().to_owned())
    .filter(|parent| !parent.is_empty()))
}

/// The crate directories (`kernel`, …) whose files a unified diff changes.
pub(crate) fn touched_crates(diff: &str) -> Vec<String> {
    let mut dirs: Vec<String> = diff
        .lines()
        .filter_map(|line| {
            line.strip_prefix("+++ b/")
                .or_else(|| line.strip_prefix("--- a/"))
        })
        .filter_map(|path| path.strip_prefix("crates/")?.split('/').next())
        .map(str::to_owned)
        .collect();
    dirs.sort();
    dirs.dedup();
    dirs
}

/// Runs git in the workspace and returns its standard output; fails when git does.
fn git(workspace_root: &Path, args: &[impl AsRef<std::ffi::OsStr>]) -> Result<String> {
    let output = Command::new("git")
        .current_dir(workspace_root)
        .args(args)
        .output()
        .context("running git")?;
    if !output.status.success() {
        bail!(
            "git {:?} failed: {}",
            args.iter().map(AsRef::as_ref).collect::<Vec<_>>(),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    String::from_utf8(output.stdout).context("git printed non-UTF-8 output")
}

#[cfg(test)]
mod tests {
    use super::*;

    const OUTCOMES: &str = r#"{
      "outcomes": [
        {"scenario": "Baseline", "summary": "Success"},
        {"scenario": {"Mutant": {"name": "crates/leads/src/a.rs:1:1: replace f -> bool with true"}},
         "summary": "CaughtMutant"},
        {"scenario": {"Mutant": {"name": "crates/leads/src/a.rs:2:1: replace > with >="}},
         "summary": "MissedMutant"},
        {"scenario": {"Mutant": {"name": "crates/leads/src/a.rs:3:1: replace g -> u8 with 0"}},
         "summary": "Unviable"},
        {"scenario": {"Mutant": {"name": "crates/leads/src/a.rs:4:1: delete ! in h"}},
         "summary": "Timeout"},
        {"scenario": {"Mutant": {"name": "crates/leads/src/a.rs:5:1: replace + with -"}},
         "summary": "CaughtMutant"}
      ],
      "total_mutants": 5
    }"#;

    #[test]
    fn outcomes_are_tallied_by_summary_and_the_baseline_is_not_a_mutant() {
        let tally = parse_outcomes(OUTCOMES).unwrap();
        assert_eq!(
            (tally.caught, tally.missed, tally.unviable, tally.timeout),
            (2, 1, 1, 1)
        );
        assert_eq!(
            tally.missed_names,
            ["crates/leads/src/a.rs:2:1: replace > with >="]
        );
        assert_eq!(
            tally.timeout_names,
            ["crates/leads/src/a.rs:4:1: delete ! in h"]
        );
    }

    #[test]
    fn an_unknown_outcome_is_an_error_not_a_silent_pass() {
        let json = r#"{"outcomes": [{"scenario": {"Mutant": {"name": "m"}}, "summary": "Weird"}]}"#;
        assert!(parse_outcomes(json).is_err());
    }

    #[test]
    fn the_score_leaves_unviable_mutants_out_and_counts_timeouts_against() {
        let tally = Tally {
            caught: 18,
            missed: 1,
            unviable: 7,
            timeout: 1,
            ..Tally::default()
        };
        assert_eq!(tally.score(), Some(90.0));
        let none_viable = Tally {
            unviable: 3,
            ..Tally::default()
        };
        assert_eq!(none_viable.score(), None);
    }

    #[test]
    fn the_changed_crates_are_read_from_the_file_headers_of_the_diff() {
        let diff = "diff --git a/crates/leads/src/protection.rs b/crates/leads/src/protection.rs\n\
                    --- a/crates/leads/src/protection.rs\n\
                    +++ b/crates/leads/src/protection.rs\n\
                    @@ -1 +1 @@\n\
                    -+++ b/crates/kernel/src/x.rs\n\
                    ++++ b/crates/kernel/src/x.rs\n\
                    diff --git a/crates/followup/src/new.rs b/crates/followup/src/new.rs\n\
                    --- /dev/null\n\
                    +++ b/crates/followup/src/new.rs\n";
        // The lines inside the hunk start with `-+++`/`++++`, never with `+++ b/` or `--- a/`.
        assert_eq!(touched_crates(diff), ["followup", "leads"]);
        assert!(touched_crates("").is_empty());
    }

    #[test]
    fn every_domain_crate_has_its_threshold() {
        for krate in CRATES {
            let expected = match krate.dir {
                "leads" | "followup" => 95.0,
                _ => 90.0,
            };
            assert_eq!(krate.threshold, expected, "{}", krate.package);
            assert_eq!(krate.package, format!("freshplan-{}", krate.dir));
        }
    }
}
