//! `cargo xtask demo`: the service on realistic demo data, in one command (SPEC §11).
//!
//! 1. PostgreSQL: `DATABASE_URL` when set; otherwise the private server of
//!    `<workspace>/.freshplan/pg` (started from the machine's own binaries, see [`crate::pg`];
//!    missing binaries end the command with one message naming the package to install) with its
//!    own database `freshplan_demo`, kept across runs.
//! 2. Builds the `freshplan` binary.
//! 3. Migrates, and seeds the demo data ([`crate::seed`]) when the database has no leads yet
//!    (`--reset` drops the private demo database first).
//! 4. Mints development tokens for the demo personas with `freshplan token` (the code behind
//!    `cargo xtask token`), starts `freshplan serve`, waits for `/health/ready`, checks what each
//!    persona sees through the API, and prints links, tokens and curl examples.
//! 5. Ctrl-C (or SIGTERM) stops the server gracefully, then the private PostgreSQL server if this
//!    command started it; the data stays in the cluster folder for the next run.

use std::io::{BufReader, Read, Write};
use std::net::{TcpListener, TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use cargo_metadata::Message;
use sqlx::{Connection as _, PgConnection};

use crate::pg;
use crate::seed::{self, PERSONAS, Persona, Stats};

/// The private server's database for the demo (the server's `postgres` database stays free for
/// `cargo xtask test`, which creates its own databases next to it).
const DEMO_DATABASE: &str = "freshplan_demo";
/// The default listen address (SPEC §11).
const DEFAULT_BIND: &str = "127.0.0.1:8080";
/// Unsubscribe-link signing secret for the demo when none is configured (development only).
const DEMO_UNSUBSCRIBE_SECRET: &str = "freshplan-demo-unsubscribe-secret-not-for-production";
/// How long the server may take to become ready.
const READY_TIMEOUT: Duration = Duration::from_secs(90);
/// How long a graceful stop may take before the server is killed (actix waits up to 30 s).
const STOP_TIMEOUT: Duration = Duration::from_secs(35);

/// Options of `cargo xtask demo`.
#[derive(Debug, clap::Args)]
pub(crate) struct DemoArgs {
    /// Address to serve on [default: FRESHPLAN_BIND, else 127.0.0.1:8080].
    #[arg(long, value_name = "HOST:PORT")]
    bind: Option<String>,
    /// Build and run the release profile (slower build, faster server).
    #[arg(long)]
    release: bool,
    /// Drop the private demo database and seed it afresh, relative to today.
    #[arg(long)]
    reset: bool,
}

/// Runs the demo until Ctrl-C.
pub(crate) fn run(workspace_root: &Path, args: &DemoArgs) -> Result<()> {
    let bind = args
        .bind
        .clone()
        .or_else(|| env("FRESHPLAN_BIND"))
        .unwrap_or_else(|| DEFAULT_BIND.to_owned());
    let address = local_address(&bind)?;
    let database_url = env("DATABASE_URL");
    if args.reset && database_url.is_some() {
        bail!(
            "--reset drops the private demo database; with DATABASE_URL set, point it at an \
             empty database instead (the demo seeds a database that has no leads)"
        );
    }
    let secret = env("FRESHPLAN_AUTH_HS256_SECRET").unwrap_or_else(|| crate::DEV_SECRET.to_owned());

    // From here on Ctrl-C must not kill xtask before it has stopped what it started (the
    // build and the server get the signal themselves: same process group).
    let interrupted = Arc::new(AtomicBool::new(false));
    {
        let interrupted = Arc::clone(&interrupted);
        ctrlc::set_handler(move || interrupted.store(true, Ordering::SeqCst))
            .context("installing the Ctrl-C handler")?;
    }

    // PostgreSQL first: missing binaries are reported before a long build, not after it.
    let (pg, url) = match database_url {
        Some(url) => {
            println!("xtask: using PostgreSQL from DATABASE_URL");
            (None, url)
        }
        None => {
            let handle = pg::start_private(workspace_root)?;
            let url = with_database(handle.url(), DEMO_DATABASE);
            (Some(handle), url)
        }
    };
    let binary = build(workspace_root, args.release)?;
    if interrupted.load(Ordering::SeqCst) {
        bail!("interrupted");
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let (stats, seeded) = runtime.block_on(prepare_database(
        pg.as_ref().map(pg::PgHandle::url),
        &url,
        args.reset,
    ))?;
    drop(runtime);
    if interrupted.load(Ordering::SeqCst) {
        bail!("interrupted");
    }

    let tokens = PERSONAS
        .iter()
        .map(|p| mint_token(&binary, &secret, p).map(|t| (*p, t)))
        .collect::<Result<Vec<_>>>()?;

    let base = format!("http://{address}");
    println!("xtask: starting {} serve on {bind}", binary.display());
    let mut command = Command::new(&binary);
    command
        .arg("serve")
        .current_dir(workspace_root)
        .stdin(Stdio::null())
        .env("DATABASE_URL", &url)
        .env("FRESHPLAN_BIND", &bind)
        .env("FRESHPLAN_AUTH_HS256_SECRET", &secret);
    // SPEC §11 settings a later server reads; the user's own values win.
    for (name, value) in [
        ("FRESHPLAN_PUBLIC_URL", base.as_str()),
        ("FRESHPLAN_UNSUBSCRIBE_SECRET", DEMO_UNSUBSCRIBE_SECRET),
        // The demo is development: its unsubscribe secret is published in this file.
        ("FRESHPLAN_ENV", "development"),
        // Warnings only, so the links below stay readable; RUST_LOG=info shows every request.
        ("RUST_LOG", "warn"),
    ] {
        if env(name).is_none() {
            command.env(name, value);
        }
    }
    let mut server = Server {
        child: command
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?,
    };
    server.wait_ready(&address, &interrupted)?;

    let visible = tokens
        .iter()
        .map(|(persona, token)| visible_leads(&address, token).map(|n| (persona.sub, n)))
        .collect::<Result<Vec<_>>>()
        .context("reading leads through the API with the demo tokens")?;
    print_banner(&Banner {
        base: &base,
        url: &url,
        private: pg.as_ref().map(pg::PgHandle::stops_on_drop),
        stats,
        seeded,
        tokens: &tokens,
        visible: &visible,
    });

    loop {
        if interrupted.load(Ordering::SeqCst) {
            println!("\nxtask: stopping the demo server");
            server.stop();
            break;
        }
        if let Some(status) = server.child.try_wait()? {
            bail!("the server exited unexpectedly ({status}); see its log above");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    drop(pg);
    println!("xtask: demo stopped");
    Ok(())
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// The address to reach the server at, checked free. An unspecified host (0.0.0.0, ::) is
/// reached on the loopback address.
fn local_address(bind: &str) -> Result<String> {
    let socket = bind
        .to_socket_addrs()
        .with_context(|| format!("`{bind}` is not a HOST:PORT address"))?
        .next()
        .with_context(|| format!("`{bind}` resolves to no address"))?;
    ensure!(socket.port() != 0, "--bind needs a fixed port, not 0");
    if let Err(err) = TcpListener::bind(socket) {
        bail!(
            "cannot listen on {bind}: {err}. Is another server running there? Choose another \
             address with `cargo xtask demo --bind 127.0.0.1:8081`."
        );
    }
    let host = if socket.ip().is_unspecified() {
        if socket.is_ipv4() {
            "127.0.0.1".to_owned()
        } else {
            "[::1]".to_owned()
        }
    } else if socket.is_ipv6() {
        format!("[{}]", socket.ip())
    } else {
        socket.ip().to_string()
    };
    Ok(format!("{host}:{}", socket.port()))
}

/// `postgres://u@h:p/postgres?x` → `postgres://u@h:p/<name>?x`.
pub(crate) fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, format!("?{q}")),
        None => (url, String::new()),
    };
    let prefix = base.rsplit_once('/').map_or(base, |(p, _)| p);
    format!("{prefix}/{name}{query}")
}

/// Builds the `freshplan` binary and returns its path (from cargo's own build messages, so the
/// target directory and profile are whatever cargo used).
pub(crate) fn build(workspace_root: &Path, release: bool) -> Result<PathBuf> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .current_dir(workspace_root)
        .args(["build", "-p", "freshplan-app", "--bin", "freshplan"])
        .arg("--message-format=json-render-diagnostics")
        .stdin(Stdio::null())
        .stdout(Stdio::piped());
    if release {
        command.arg("--release");
    }
    println!("xtask: building the freshplan binary");
    let mut child = command.spawn().context("running cargo build")?;
    let stdout = child.stdout.take().context("cargo build has no stdout")?;
    let mut binary = None;
    for message in Message::parse_stream(BufReader::new(stdout)) {
        if let Message::CompilerArtifact(artifact) = message.context("reading cargo's output")?
            && artifact.target.name == "freshplan"
            && let Some(executable) = artifact.executable
        {
            binary = Some(PathBuf::from(executable));
        }
    }
    let status = child.wait()?;
    ensure!(status.success(), "cargo build failed: {status}");
    binary.context("cargo build reported no freshplan executable")
}

/// Creates (or with `reset`, recreates) the private demo database, migrates, seeds when empty.
/// Returns the database's row counts and whether it was seeded now.
async fn prepare_database(
    private_admin_url: Option<&str>,
    url: &str,
    reset: bool,
) -> Result<(Stats, bool)> {
    if let Some(admin_url) = private_admin_url {
        let mut conn = PgConnection::connect(admin_url)
            .await
            .context("connecting to the private PostgreSQL server")?;
        if reset {
            println!("xtask: dropping the demo database {DEMO_DATABASE}");
            sqlx::query(&format!(
                "drop database if exists {DEMO_DATABASE} with (force)"
            ))
            .execute(&mut conn)
            .await?;
        }
        let exists: bool =
            sqlx::query_scalar("select exists (select 1 from pg_database where datname = $1)")
                .bind(DEMO_DATABASE)
                .fetch_one(&mut conn)
                .await?;
        if !exists {
            sqlx::query(&format!("create database {DEMO_DATABASE}"))
                .execute(&mut conn)
                .await?;
        }
        conn.close().await?;
    }
    println!("xtask: migrating");
    freshplan_store_postgres::migrate(url)
        .await
        .context("migrating the demo database")?;
    let pool = freshplan_store_postgres::connect(url, 2)
        .await
        .context("connecting to the demo database")?;
    let started = Instant::now();
    let now = time::OffsetDateTime::now_utc();
    let result = match seed::seed_if_empty(&pool, now).await? {
        Some(stats) => {
            println!(
                "xtask: seeded {} leads, {} activities and {} follow-up records in {:.1} s",
                stats.leads,
                stats.activities,
                stats.followups,
                started.elapsed().as_secs_f64()
            );
            (stats, true)
        }
        None => {
            let stats = seed::stats(&pool).await?;
            println!(
                "xtask: the database already has {} leads; not seeding (`--reset` starts afresh)",
                stats.leads
            );
            (stats, false)
        }
    };
    pool.close().await;
    Ok(result)
}

/// A development token for `persona`, minted by `freshplan token` (as `cargo xtask token` does).
pub(crate) fn mint_token(binary: &Path, secret: &str, persona: &Persona) -> Result<String> {
    let out = Command::new(binary)
        .args(["token", persona.sub, persona.roles, persona.territories])
        .env("FRESHPLAN_AUTH_HS256_SECRET", secret)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {} token", binary.display()))?;
    ensure!(
        out.status.success(),
        "freshplan token failed: {}",
        String::from_utf8_lossy(&out.stderr).trim()
    );
    let token = String::from_utf8(out.stdout)?.trim().to_owned();
    ensure!(!token.is_empty(), "freshplan token printed nothing");
    Ok(token)
}

/// The running `freshplan serve`; stopped (gracefully, then forcibly) when dropped.
pub(crate) struct Server {
    pub(crate) child: Child,
}

impl Server {
    pub(crate) fn wait_ready(&mut self, address: &str, interrupted: &AtomicBool) -> Result<()> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!("the server exited before it was ready ({status}); see its log above");
            }
            if interrupted.load(Ordering::SeqCst) {
                bail!("interrupted");
            }
            if matches!(http_get(address, "/health/ready", None), Ok((200, _))) {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "the server did not answer GET /health/ready with 200 within {} s",
                    READY_TIMEOUT.as_secs()
                );
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// SIGTERM (graceful: in-flight requests finish), then SIGKILL after [`STOP_TIMEOUT`].
    /// Ctrl-C in a terminal reaches the server directly too (same process group); forwarding
    /// covers a SIGTERM sent to xtask alone.
    pub(crate) fn stop(&mut self) {
        if matches!(self.child.try_wait(), Ok(Some(_))) {
            return;
        }
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .stdin(Stdio::null())
            .status();
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline {
            if !matches!(self.child.try_wait(), Ok(None)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        eprintln!("xtask: the server did not stop in time; killing it");
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A minimal HTTP/1.1 GET: `(status, body)`. Enough for the readiness probe and the API check,
/// without an HTTP client dependency.
pub(crate) fn http_get(address: &str, path: &str, token: Option<&str>) -> Result<(u16, String)> {
    let mut stream = TcpStream::connect(address)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.set_write_timeout(Some(Duration::from_secs(10)))?;
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {address}\r\nAccept: application/json\r\n{auth}\
         Connection: close\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    parse_response(&raw)
}

fn parse_response(raw: &[u8]) -> Result<(u16, String)> {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .context("an HTTP response without a header end")?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .context("an HTTP response without a status")?;
    let chunked = head.lines().any(|l| {
        l.to_ascii_lowercase()
            .replace(' ', "")
            .starts_with("transfer-encoding:chunked")
    });
    let body = if chunked {
        dechunk(body)?
    } else {
        body.to_owned()
    };
    Ok((status, body))
}

fn dechunk(mut body: &str) -> Result<String> {
    let mut out = String::new();
    loop {
        let (size, rest) = body.split_once("\r\n").context("a truncated chunk")?;
        let size = usize::from_str_radix(size.split(';').next().unwrap_or("").trim(), 16)
            .context("a malformed chunk size")?;
        if size == 0 {
            return Ok(out);
        }
        ensure!(rest.len() >= size, "a truncated chunk");
        out.push_str(&rest[..size]);
        body = rest[size..].trim_start_matches("\r\n");
    }
}

/// How many leads `token`'s user sees through `GET /api/leads` (the `total`).
fn visible_leads(address: &str, token: &str) -> Result<u64> {
    let (status, body) = http_get(address, "/api/leads?size=1", Some(token))?;
    ensure!(status == 200, "GET /api/leads answered {status}: {body}");
    let json: serde_json::Value = serde_json::from_str(&body)?;
    json["total"]
        .as_u64()
        .with_context(|| format!("no total in {body}"))
}

struct Banner<'a> {
    base: &'a str,
    url: &'a str,
    /// `None`: DATABASE_URL; `Some(stops)`: the private server, stopped on exit when `stops`.
    private: Option<bool>,
    stats: Stats,
    seeded: bool,
    tokens: &'a [(Persona, String)],
    visible: &'a [(&'a str, u64)],
}

fn print_banner(b: &Banner<'_>) {
    let base = b.base;
    let line = "─".repeat(78);
    println!("\n{line}");
    println!("FreshPlan Leads demo is running at {base}\n");
    println!(
        "  Data      {} leads (DE {}, CH {}), {} activities, {} follow-up records{}",
        b.stats.leads,
        b.stats.leads_de,
        b.stats.leads_ch,
        b.stats.activities,
        b.stats.followups,
        if b.seeded {
            " — seeded just now"
        } else {
            " — from an earlier run (`--reset` re-seeds)"
        }
    );
    println!("  Database  {}", b.url);
    println!("  API       {base}/api/leads   (every endpoint needs a token)");
    println!("  OpenAPI   {base}/api/openapi.json");
    println!("  Health    {base}/health/ready   Metrics {base}/metrics");

    println!("\nCockpit, one link per persona (the token is in the link; valid 12 h):");
    for (persona, token) in b.tokens {
        let sees = b
            .visible
            .iter()
            .find(|(sub, _)| *sub == persona.sub)
            .map_or(0, |(_, n)| *n);
        println!(
            "  {:<13} {:<15} sees {sees:>4} leads   {base}/cockpit#token={token}",
            persona.label, persona.sub
        );
    }

    println!("\nTokens for your shell (paste these lines):");
    for (persona, token) in b.tokens {
        println!("  export {}={token}", persona.var);
    }

    println!("\nTry:");
    for (persona, _) in b.tokens {
        let example = match persona.var {
            "ADMIN_TOKEN" => "/api/leads?status=EXPIRED&sort=registeredAt,desc&size=5",
            "MANAGER_DE_TOKEN" => "/api/leads?status=REMINDER&status=GRACE_PERIOD&size=5",
            "MANAGER_CH_TOKEN" => "/api/leads?q=hotel&sort=companyName,asc&size=5",
            "REP_DE_TOKEN" => "/api/leads?status=REGISTERED&sort=registeredAt,desc&size=5",
            _ => "/api/leads?sort=lastActivityAt,desc&size=5",
        };
        println!(
            "  curl -s '{base}{example}' -H \"Authorization: Bearer ${}\"",
            persona.var
        );
    }
    println!(
        "  curl -s {base}/api/leads/$ID/activities -H \"Authorization: Bearer $REP_DE_TOKEN\"   \
         # a lead's timeline"
    );
    println!("  curl -s {base}/api/territories -H \"Authorization: Bearer $MANAGER_CH_TOKEN\"");

    let database = match b.private {
        None => "; the database of DATABASE_URL keeps its data",
        Some(true) => {
            ", then the private PostgreSQL server; the data stays in .freshplan/pg and the next \
             `cargo xtask demo` reuses it"
        }
        Some(false) => {
            "; the private PostgreSQL server was already running and keeps running (its data \
             stays for the next `cargo xtask demo`)"
        }
    };
    println!("\nCtrl-C stops the server{database}.");
    println!("{line}\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_name_in_urls() {
        assert_eq!(
            with_database(
                "postgres://postgres@127.0.0.1:55432/postgres",
                "freshplan_demo"
            ),
            "postgres://postgres@127.0.0.1:55432/freshplan_demo"
        );
        assert_eq!(
            with_database("postgres://u:p@h/db?sslmode=disable", "x"),
            "postgres://u:p@h/x?sslmode=disable"
        );
    }

    #[test]
    fn http_responses_plain_and_chunked() {
        let plain = b"HTTP/1.1 200 OK\r\ncontent-length: 11\r\n\r\n{\"total\":3}";
        assert_eq!(
            parse_response(plain).unwrap(),
            (200, "{\"total\":3}".to_owned())
        );
        let chunked = b"HTTP/1.1 503 Service Unavailable\r\nTransfer-Encoding: chunked\r\n\r\n\
                        4\r\n{\"a\"\r\n3\r\n:1}\r\n0\r\n\r\n";
        assert_eq!(
            parse_response(chunked).unwrap(),
            (503, "{\"a\":1}".to_owned())
        );
        assert!(parse_response(b"garbage").is_err());
    }

    #[test]
    fn bind_addresses() {
        // Port 0 would leave the links without a port.
        assert!(local_address("127.0.0.1:0").is_err());
        assert!(local_address("not an address").is_err());
        // A port that is taken is refused with a hint.
        let taken = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = taken.local_addr().unwrap().to_string();
        let err = local_address(&addr).unwrap_err().to_string();
        assert!(err.contains("--bind"), "{err}");
        drop(taken);
        assert_eq!(local_address(&addr).unwrap(), addr);
    }

    #[test]
    fn every_persona_is_a_user_of_the_demo_data() {
        let subs: Vec<&str> = PERSONAS.iter().map(|p| p.sub).collect();
        assert!(subs.contains(&seed::ADMIN));
        assert!(subs.contains(&seed::MANAGER_DE) && subs.contains(&seed::MANAGER_CH));
        assert!(subs.contains(&seed::REPS_DE[0]) && subs.contains(&seed::REPS_CH[0]));
    }
}
