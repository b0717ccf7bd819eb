//! `cargo xtask` — project automation (the alias lives in `.cargo/config.toml`).
//!
//! `cargo xtask --help` lists the commands.

// xtask is, with `app`, one of the two places allowed to read the environment (STYLE.md);
// clippy.toml forbids `std::env::var` everywhere else.
#![allow(clippy::disallowed_methods)]

mod bench;
mod clients;
mod demo;
mod manifests;
mod mutants;
mod pg;
mod schemathesis;
mod seed;
mod test;
mod tidy;
mod tools;
mod venv;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "cargo xtask",
    bin_name = "cargo xtask",
    about = "FreshPlan Leads project automation"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Check the architecture invariants: lint and dependency inheritance, and that the domain
    /// crates depend on pure crates only.
    Tidy,
    /// Provide PostgreSQL (DATABASE_URL, 127.0.0.1:5432 or a private server; FRESHPLAN_PG=private
    /// forces the latter) and run every test of the workspace, doctests included; then check the
    /// TypeScript client types and run schemathesis against the real server.
    Test {
        /// Skip the schemathesis step (a few minutes), e.g. while iterating on one test.
        #[arg(long)]
        skip_schemathesis: bool,
        /// Extra arguments for the test runner, e.g. a test name filter.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Mint a development HS256 JWT with the `freshplan` binary (secret from
    /// FRESHPLAN_AUTH_HS256_SECRET, else the development secret the README names).
    Token {
        /// The user id (`sub`).
        sub: String,
        /// Comma-separated roles, e.g. `sales` or `manager,viewer`.
        roles: String,
        /// Comma-separated territories, e.g. `DE` or `DE,CH` (may be empty for admins).
        #[arg(default_value = "")]
        territories: String,
    },
    /// Benchmarks (`cargo xtask bench api [--million]`, `bench events`, `bench followup`,
    /// `bench import`); results go to docs/BENCHMARKS.md.
    Bench {
        #[command(subcommand)]
        what: bench::BenchCmd,
    },
    /// The database work per API operation (statements, nested statements, rows, buffers, WAL
    /// bytes) on a private PostgreSQL with pg_stat_statements, checked against
    /// xtask/cost-budgets.toml (also a step of `test`).
    Cost {
        /// Write the measured figures to the budgets file (keeping each operation's reason).
        #[arg(long)]
        update: bool,
        /// Print every operation's statements, not only those over budget.
        #[arg(long)]
        verbose: bool,
        /// Measure this server binary instead of a debug build of the workspace.
        #[arg(long)]
        server_binary: Option<PathBuf>,
    },
    /// Run only the schemathesis step of `test`: a fresh seeded database, `freshplan serve`,
    /// `schemathesis run --checks all` with every phase as an admin and as a sales rep.
    Schemathesis {
        /// Extra arguments for `schemathesis run`, e.g. `--include-path-regex /api/leads`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Regenerate the TypeScript API types (clients/typescript/src/schema.d.ts) from the OpenAPI
    /// document and type-check the package.
    GenClients,
    /// Mutation testing of the domain crates (kernel, territory, leads, followup) with
    /// cargo-mutants (installed, pinned, when missing): per crate the caught, missed, unviable and
    /// timed-out mutants, the score and the missed mutants; fails under a crate's threshold (95 %
    /// leads and followup, 90 % kernel and territory). docs/TESTING.md has the figures.
    Mutants {
        /// Only the mutants in the domain code changed since the merge base with the upstream
        /// branch (else since HEAD's parent), working-tree changes included; fails when any of
        /// them survives; skips when no domain source changed. The CI step.
        #[arg(long)]
        changed: bool,
        /// Only these crates (`leads` or `freshplan-leads`; repeatable).
        #[arg(short = 'p', long = "package", value_name = "CRATE")]
        packages: Vec<String>,
    },
    /// Validate the Kubernetes manifests under deploy/ offline (also a step of `test`): render
    /// every kustomization, check each document strictly against the Kubernetes, KEDA,
    /// Prometheus Operator and CloudNativePG schemas, cross-check them with the code.
    Manifests,
    /// Run the service on realistic demo data: PostgreSQL from DATABASE_URL, else a private
    /// server under .freshplan/pg; migrate, seed (once), serve, print links and tokens.
    Demo(demo::DemoArgs),
}

/// The development secret used when FRESHPLAN_AUTH_HS256_SECRET is unset (never for production).
const DEV_SECRET: &str = "freshplan-development-secret-change-me";

fn token(root: &Path, sub: &str, roles: &str, territories: &str) -> anyhow::Result<()> {
    let secret =
        std::env::var("FRESHPLAN_AUTH_HS256_SECRET").unwrap_or_else(|_| DEV_SECRET.to_owned());
    let status =
        std::process::Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .current_dir(root)
            .args([
                "run",
                "--quiet",
                "-p",
                "freshplan-app",
                "--bin",
                "freshplan",
                "--",
                "token",
                sub,
                roles,
                territories,
            ])
            .env("FRESHPLAN_AUTH_HS256_SECRET", secret)
            .status()?;
    anyhow::ensure!(status.success(), "freshplan token failed: {status}");
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let root = workspace_root();
    let result = match cli.command {
        Cmd::Tidy => tidy::run(&root),
        Cmd::Test {
            skip_schemathesis,
            args,
        } => test::run(&root, &args, skip_schemathesis),
        Cmd::Schemathesis { args } => schemathesis::run(&root, &args),
        Cmd::GenClients => clients::generate_command(&root),
        Cmd::Token {
            sub,
            roles,
            territories,
        } => token(&root, &sub, &roles, &territories),
        Cmd::Bench { what } => bench::run(&root, what),
        Cmd::Cost {
            update,
            verbose,
            server_binary,
        } => server_binary
            .map_or_else(|| demo::build(&root, false), Ok)
            .and_then(|binary| bench::cost::check(&root, &binary, update, verbose)),
        Cmd::Demo(args) => demo::run(&root, &args),
        Cmd::Manifests => manifests::check(&root),
        Cmd::Mutants { changed, packages } => mutants::run(&root, changed, &packages),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("xtask: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// The workspace root: the parent of this crate's directory.
pub(crate) fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives one level below the workspace root")
        .to_owned()
}
