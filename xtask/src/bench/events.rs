//! `cargo xtask bench events`: the event-delivery benchmark of issue 4.
//!
//! Two release replicas (`freshplan serve`, A and B) on one database (the API bench's 100k
//! database, reused). An SSE client streams `GET /api/events/stream` from B as an admin while an
//! open-loop writer creates leads on A at fixed offered rates (100, 500, 2,000 per second; one
//! lead create commits one `lead.created.v1` event). Per event it measures the time until the
//! client on B has it, two ways:
//!
//! - from the event's `time` attribute, stamped by the lead service *before* its transaction
//!   began — so this includes the whole write transaction and is an upper bound of
//!   commit → SSE;
//! - from the moment the writer had the `201` of the create, which comes after the commit — a
//!   lower bound (it can be negative when the event overtakes the response).
//!
//! Both replicas' `freshplan_event_latency_seconds` (event `time` → applied by an in-process
//! consumer: the SSE broadcaster and the cockpit consumer) are scraped before and after each rate
//! and differenced, giving commit → consumer percentiles per replica (from the buckets,
//! interpolated like PromQL's `histogram_quantile`).
//!
//! In the same run: lead-create throughput at 32 connections on one replica with the default
//! configuration, with `FRESHPLAN_EVENTS=false` and with `FRESHPLAN_METRICS=false` (two passes in
//! mirrored order so drift hits all alike; ratios per run, median reported), and pgbench
//! at 64 clients for a plain `INSERT` into a scratch table against the same `INSERT` with a
//! `pg_notify` in its transaction — the cost the coalesced, out-of-transaction NOTIFY avoids.
//!
//! Also home of the small HTTP, SSE, Prometheus and report helpers the follow-up bench shares.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result, bail};
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::client::conn::http1;
use hyper::{Method, Request, header};
use hyper_util::rt::TokioIo;
use sqlx::{Connection as _, Executor as _};
use tokio::net::TcpStream;
use tokio::sync::Mutex;

use super::load::{self, Target, Workload};
use super::server::Server;
use super::{SECRET, pgbench, seed};

/// Options of `cargo xtask bench events`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct EventsArgs {
    /// Repetitions of every measurement; the report gives medians.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Seconds per measurement (each offered rate, each throughput configuration, each pgbench
    /// script).
    #[arg(long, default_value_t = 10)]
    secs: u64,
    /// Offered write rates of the latency measurement, events (lead creates) per second.
    #[arg(long, value_delimiter = ',', default_value = "100,500,1000,2000")]
    rates: Vec<u32>,
    /// Connections of the create-throughput measurement.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Clients of the pgbench INSERT vs INSERT + pg_notify comparison.
    #[arg(long, default_value_t = 64)]
    pgbench_clients: usize,
    /// The seeded leads of the database (the API bench's; seeded if missing).
    #[arg(long, default_value_t = 100_000)]
    leads: u64,
    /// Do not touch docs/BENCHMARKS.md (results still go to target/bench/).
    #[arg(long)]
    no_report: bool,
    /// Benchmark this `freshplan` binary instead of building the workspace's.
    #[arg(long)]
    server_binary: Option<PathBuf>,
}

/// The latency goals (issue 12): offered events/s, the percentile, its bound in ms.
const LATENCY_GOALS: [(u32, f64, f64); 3] =
    [(500, 0.5, 10.0), (500, 0.99, 50.0), (1000, 0.99, 100.0)];
/// Under saturation (the highest offered rate, at least this): p99 bound, and the bound on the
/// last event's arrival after the last write's `201`.
const SATURATION_RATE: u32 = 2000;
const SATURATION_P99_MS: f64 = 250.0;
const SATURATION_TAIL_MS: f64 = 1000.0;
/// Connections of the open-loop writer.
const WRITER_CONNECTIONS: usize = 64;
/// How long to wait for the last events on B after the writes ended; events still missing then
/// count with their wait so far (a lower bound).
const DRAIN_MAX: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------------------------
// Shared helpers (also used by the follow-up bench)
// ---------------------------------------------------------------------------------------------

/// One keep-alive HTTP/1.1 connection (hyper's connection-level client).
pub(crate) struct Http {
    addr: SocketAddr,
    host: String,
    sender: http1::SendRequest<Full<Bytes>>,
}

impl Http {
    pub(crate) async fn open(addr: SocketAddr) -> Result<Http> {
        let stream = TcpStream::connect(addr)
            .await
            .with_context(|| format!("connecting to {addr}"))?;
        stream.set_nodelay(true)?;
        let (sender, connection) = http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(Http {
            addr,
            host: addr.to_string(),
            sender,
        })
    }

    fn request(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<(&str, Bytes)>,
    ) -> Result<Request<Full<Bytes>>> {
        let mut b = Request::builder()
            .method(method)
            .uri(path)
            .header(header::HOST, &self.host);
        if let Some(token) = token {
            b = b.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        Ok(match body {
            Some((content_type, body)) => b
                .header(header::CONTENT_TYPE, content_type)
                .body(Full::new(body))?,
            None => b.body(Full::new(Bytes::new()))?,
        })
    }

    /// Sends one request and reads the whole response: `(status, body)`.
    pub(crate) async fn call(
        &mut self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<(&str, String)>,
    ) -> Result<(u16, Bytes)> {
        self.call_bytes(
            method,
            path,
            token,
            body.map(|(ct, b)| (ct, Bytes::from(b))),
        )
        .await
    }

    /// [`Http::call`] with a body of bytes (e.g. a file that is not UTF-8).
    pub(crate) async fn call_bytes(
        &mut self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<(&str, Bytes)>,
    ) -> Result<(u16, Bytes)> {
        if self.sender.is_closed() {
            *self = Http::open(self.addr).await?;
        }
        let req = self.request(method, path, token, body)?;
        self.sender.ready().await?;
        let resp = self.sender.send_request(req).await?;
        let status = resp.status().as_u16();
        let bytes = resp.into_body().collect().await?.to_bytes();
        Ok((status, bytes))
    }

    /// `GET path` (optionally with a token); the body as text, failing on another status than
    /// 200.
    pub(crate) async fn get_text(&mut self, path: &str, token: Option<&str>) -> Result<String> {
        let (status, body) = self.call(Method::GET, path, token, None).await?;
        if status != 200 {
            bail!(
                "GET {path}: HTTP {status}: {}",
                String::from_utf8_lossy(&body[..body.len().min(300)])
            );
        }
        Ok(String::from_utf8_lossy(&body).into_owned())
    }
}

/// One SSE message (comments are skipped).
#[derive(Debug, Clone)]
pub(crate) struct SseMessage {
    pub(crate) event: Option<String>,
    pub(crate) data: String,
}

/// A `text/event-stream` response being read, frame by frame.
pub(crate) struct SseStream {
    body: Incoming,
    buf: Vec<u8>,
    /// Kept for the life of the response: dropping it would let the connection close.
    _sender: http1::SendRequest<Full<Bytes>>,
}

impl SseStream {
    /// Opens `path` on its own connection with `token`, checks 200 and waits for the server's
    /// opening comment (from then on the server has subscribed).
    pub(crate) async fn connect(addr: SocketAddr, path: &str, token: &str) -> Result<SseStream> {
        let http = Http::open(addr).await?;
        let req = http.request(Method::GET, path, Some(token), None)?;
        let mut sender = http.sender;
        sender.ready().await?;
        let resp = sender.send_request(req).await?;
        let status = resp.status().as_u16();
        if status != 200 {
            let body = resp.into_body().collect().await?.to_bytes();
            bail!(
                "GET {path}: HTTP {status}: {}",
                String::from_utf8_lossy(&body[..body.len().min(300)])
            );
        }
        let mut stream = SseStream {
            body: resp.into_body(),
            buf: Vec::new(),
            _sender: sender,
        };
        loop {
            match stream.next_frame().await? {
                Some(Frame::Comment(c)) if c == "open" => return Ok(stream),
                Some(_) => {}
                None => bail!("GET {path}: the stream ended before it opened"),
            }
        }
    }

    /// The next message; `None` when the stream ended.
    pub(crate) async fn next(&mut self) -> Result<Option<SseMessage>> {
        loop {
            match self.next_frame().await? {
                Some(Frame::Message(m)) => return Ok(Some(m)),
                Some(Frame::Comment(_)) => {}
                None => return Ok(None),
            }
        }
    }

    async fn next_frame(&mut self) -> Result<Option<Frame>> {
        loop {
            if let Some(end) = self.buf.windows(2).position(|w| w == b"\n\n") {
                let frame: Vec<u8> = self.buf.drain(..end + 2).collect();
                return Ok(Some(parse_frame(&String::from_utf8_lossy(&frame))));
            }
            match self.body.frame().await {
                None => return Ok(None),
                Some(frame) => {
                    if let Ok(data) = frame?.into_data() {
                        self.buf.extend_from_slice(&data);
                    }
                }
            }
        }
    }
}

enum Frame {
    Message(SseMessage),
    Comment(String),
}

fn parse_frame(text: &str) -> Frame {
    let mut event = None;
    let mut data = Vec::new();
    for line in text.lines().filter(|l| !l.is_empty()) {
        if let Some(comment) = line.strip_prefix(':') {
            return Frame::Comment(comment.trim().to_owned());
        }
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "event" => event = Some(value.to_owned()),
            "data" => data.push(value),
            _ => {}
        }
    }
    Frame::Message(SseMessage {
        event,
        data: data.join("\n"),
    })
}

/// Mints a token with the `freshplan` binary, with extra environment (e.g. a shifted clock, so
/// the token's `iat`/`exp` match the server's clock).
pub(crate) fn mint_with_env(
    freshplan: &Path,
    env: &[(&str, String)],
    sub: &str,
    roles: &str,
    territories: &str,
) -> Result<String> {
    let out = std::process::Command::new(freshplan)
        .args(["token", sub, roles, territories])
        .env("FRESHPLAN_AUTH_HS256_SECRET", SECRET)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
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

/// A Prometheus histogram: `(upper bound, cumulative count)`, ascending, `+Inf` last.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Buckets(pub(crate) Vec<(f64, f64)>);

impl Buckets {
    /// The sum over every series of `metric` whose label text (without `le`) satisfies `keep`.
    pub(crate) fn parse(text: &str, metric: &str, keep: impl Fn(&str) -> bool) -> Buckets {
        let prefix = format!("{metric}_bucket{{");
        let mut by_le: BTreeMap<u64, (f64, f64)> = BTreeMap::new();
        for line in text.lines() {
            let Some(rest) = line.strip_prefix(&prefix) else {
                continue;
            };
            let Some((labels, value)) = rest.rsplit_once("} ") else {
                continue;
            };
            let Some(le_at) = labels.find("le=\"") else {
                continue;
            };
            let le_text = &labels[le_at + 4..];
            let le_text = &le_text[..le_text.find('"').unwrap_or(le_text.len())];
            let le = if le_text == "+Inf" {
                f64::INFINITY
            } else {
                match le_text.parse::<f64>() {
                    Ok(v) => v,
                    Err(_) => continue,
                }
            };
            if !keep(&labels[..le_at]) {
                continue;
            }
            let count: f64 = value.trim().parse().unwrap_or(0.0);
            // Order by the bound; the bit pattern of a non-negative float sorts like the float.
            let e = by_le.entry(le.to_bits()).or_insert((le, 0.0));
            e.1 += count;
        }
        Buckets(by_le.into_values().collect())
    }

    /// `self - before`, bucket by bucket (the observations in between two scrapes).
    pub(crate) fn since(&self, before: &Buckets) -> Buckets {
        Buckets(
            self.0
                .iter()
                .map(|(le, n)| {
                    let earlier = before
                        .0
                        .iter()
                        .find(|(l, _)| l == le)
                        .map_or(0.0, |(_, c)| *c);
                    (*le, n - earlier)
                })
                .collect(),
        )
    }

    /// Observations counted.
    pub(crate) fn count(&self) -> f64 {
        self.0.last().map_or(0.0, |(_, n)| *n)
    }

    /// The `q` quantile in the metric's unit, interpolated linearly inside its bucket as
    /// PromQL's `histogram_quantile` does (in the `+Inf` bucket: the largest finite bound, a
    /// lower bound). `None` without observations.
    pub(crate) fn quantile(&self, q: f64) -> Option<f64> {
        let total = self.count();
        if total <= 0.0 {
            return None;
        }
        let rank = q * total;
        let mut lower = 0.0;
        let mut below = 0.0;
        for (le, n) in &self.0 {
            if *n >= rank {
                if le.is_infinite() {
                    return Some(lower);
                }
                let inside = n - below;
                let frac = if inside > 0.0 {
                    (rank - below) / inside
                } else {
                    1.0
                };
                return Some(lower + (le - lower) * frac);
            }
            lower = *le;
            below = *n;
        }
        Some(lower)
    }
}

/// The `q` quantile (nearest rank) of `values`; NaN when empty.
pub(crate) fn percentile(values: &[f64], q: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
    v[rank - 1]
}

/// The median of `values`; NaN when empty.
pub(crate) fn median(values: &[f64]) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// `a / b / c` with `digits` decimals.
pub(crate) fn per_run(values: &[f64], digits: usize) -> String {
    values
        .iter()
        .map(|x| format!("{x:.digits$}"))
        .collect::<Vec<_>>()
        .join(" / ")
}

/// `met` / `**not met**`.
pub(crate) fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "**not met**" }
}

/// Where, when, on what and with which command a bench ran (the report's header lines).
#[derive(Debug, Clone, Default)]
pub(crate) struct Provenance {
    pub(crate) started: String,
    pub(crate) elapsed_secs: u64,
    pub(crate) command: String,
    pub(crate) git: String,
    pub(crate) machine: String,
    pub(crate) postgres: String,
}

impl Provenance {
    /// Date, command, commit and machine now; PostgreSQL from [`Provenance::postgres_of`].
    pub(crate) fn now(root: &Path) -> Provenance {
        let root_s = root.to_string_lossy();
        let head = super::capture("git", &["-C", &root_s, "rev-parse", "--short", "HEAD"]);
        let dirty = !super::capture(
            "git",
            &[
                "-C",
                &root_s,
                "status",
                "--porcelain",
                "--untracked-files=no",
            ],
        )
        .is_empty();
        Provenance {
            started: super::capture("date", &["-u", "+%Y-%m-%d %H:%M UTC"]),
            elapsed_secs: 0,
            command: super::command_line(),
            git: if dirty {
                format!("{head} + uncommitted changes")
            } else {
                head
            },
            machine: machine(),
            postgres: String::new(),
        }
    }

    /// The server's version and the settings that matter for commit latency.
    pub(crate) async fn postgres_of(db: &mut sqlx::PgConnection) -> Result<String> {
        let version: String = sqlx::query_scalar("select version()")
            .fetch_one(&mut *db)
            .await?;
        let mut settings = Vec::new();
        for name in [
            "shared_buffers",
            "max_connections",
            "fsync",
            "synchronous_commit",
        ] {
            let v: String = sqlx::query_scalar("select current_setting($1)")
                .bind(name)
                .fetch_one(&mut *db)
                .await?;
            settings.push(format!("`{name}={v}`"));
        }
        Ok(format!(
            "{}; {}",
            version.split(" on ").next().unwrap_or(&version),
            settings.join(", ")
        ))
    }

    /// The header bullet list of a generated section.
    pub(crate) fn bullets(&self, server: &str, method: &str) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "- **Date:** {} (the run took {} min)",
            self.started,
            self.elapsed_secs.div_ceil(60)
        );
        let _ = writeln!(s, "- **Command:** `{}`", self.command);
        let _ = writeln!(s, "- **Code:** `{}`", self.git);
        let _ = writeln!(
            s,
            "- **Machine:** {}; servers, PostgreSQL and load generator share it",
            self.machine
        );
        let _ = writeln!(s, "- **PostgreSQL:** {}", self.postgres);
        let _ = writeln!(s, "- **Server:** {server}");
        let _ = writeln!(s, "- **Method:** {method}");
        s
    }
}

fn machine() -> String {
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    let cpuinfo = read("/proc/cpuinfo");
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|l| l.trim_start_matches([' ', '\t', ':']).trim().to_owned())
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mem_kib = read("/proc/meminfo")
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    format!(
        "{cores} cores (nproc), {model}, {:.1} GiB RAM, Linux {}",
        mem_kib as f64 / 1024.0 / 1024.0,
        read("/proc/sys/kernel/osrelease").trim()
    )
}

/// `n` with thousands separators.
pub(crate) fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Replaces (or appends) the generated section `key` of `docs/BENCHMARKS.md`, between
/// `<!-- bench:<key>:begin -->` and `<!-- bench:<key>:end -->`; the rest of the file is kept.
pub(crate) fn write_section(root: &Path, key: &str, section: &str) -> Result<PathBuf> {
    let path = root.join("docs").join("BENCHMARKS.md");
    let begin = format!("<!-- bench:{key}:begin -->");
    let end = format!("<!-- bench:{key}:end -->");
    let current = std::fs::read_to_string(&path).unwrap_or_else(|_| "# Benchmarks\n".to_owned());
    let block = format!("{begin}\n{section}{end}");
    let updated = match (current.find(&begin), current.find(&end)) {
        (Some(b), Some(e)) if b < e => {
            format!("{}{block}{}", &current[..b], &current[e + end.len()..])
        }
        _ => format!("{}\n{block}\n", current.trim_end()),
    };
    std::fs::write(&path, updated)?;
    Ok(path)
}

/// Warns when another benchmark seems to be running (its servers or pgbench would share the
/// cores and spoil both).
pub(crate) fn warn_if_busy() {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return;
    };
    let me = std::process::id();
    let mut busy = Vec::new();
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == me {
            continue;
        }
        let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
        let name = args
            .first()
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .unwrap_or_default();
        let serve = name.ends_with("freshplan") && args.get(1) == Some(&&b"serve"[..]);
        if serve || name.ends_with("pgbench") {
            busy.push(format!("{pid} ({name})"));
        }
    }
    if !busy.is_empty() {
        println!(
            "xtask bench: WARNING: other servers or pgbench are running ({}); they share the \
             cores and spoil the figures",
            busy.join(", ")
        );
    }
}

// ---------------------------------------------------------------------------------------------
// The events bench
// ---------------------------------------------------------------------------------------------

/// What one offered rate measured in one run.
#[derive(Debug, Clone, Default)]
struct RateSample {
    offered: u32,
    achieved: f64,
    write_p50_ms: f64,
    write_p99_ms: f64,
    write_errors: u64,
    expected: usize,
    received: usize,
    /// Event `time` → SSE client on B.
    sse_time_ms: Vec<f64>,
    /// `201` received → SSE client on B.
    sse_ack_ms: Vec<f64>,
    consumer_a: Buckets,
    consumer_b: Buckets,
    /// Deliveries on B by path (`notify`, `poll`, …), from the histogram's counts.
    paths_b: BTreeMap<String, f64>,
    /// The last write's `201` → the last of the writes' events on B (a missing event counts
    /// until the collection stopped).
    tail_ms: f64,
}

/// A server configuration of the throughput comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Config {
    Default,
    EventsOff,
    MetricsOff,
}

impl Config {
    fn env(self) -> Vec<(&'static str, String)> {
        let mut env = vec![("FRESHPLAN_SWEEP_ENABLED", "false".to_owned())];
        match self {
            Config::Default => {}
            Config::EventsOff => env.push(("FRESHPLAN_EVENTS", "false".into())),
            Config::MetricsOff => env.push(("FRESHPLAN_METRICS", "false".into())),
        }
        env
    }

    fn name(self) -> &'static str {
        match self {
            Config::Default => "default (events on, metrics on)",
            Config::EventsOff => "`FRESHPLAN_EVENTS=false`",
            Config::MetricsOff => "`FRESHPLAN_METRICS=false`",
        }
    }
}

#[derive(Debug, Clone, Default)]
struct Floor {
    tps: f64,
    p50_ms: f64,
    p99_ms: f64,
}

#[derive(Debug, Default)]
struct Results {
    prov: Provenance,
    args_runs: usize,
    secs: u64,
    concurrency: usize,
    pgbench_clients: usize,
    leads: u64,
    /// Per run, per rate.
    rates: Vec<Vec<RateSample>>,
    /// Per configuration: creates per second, per run.
    throughput: BTreeMap<Config, Vec<f64>>,
    create_p99_ms: BTreeMap<Config, Vec<f64>>,
    plain: Vec<Floor>,
    notify: Vec<Floor>,
}

pub(crate) fn run(root: &Path, args: EventsArgs) -> Result<()> {
    if args.runs == 0 || args.secs == 0 || args.concurrency == 0 || args.rates.is_empty() {
        bail!("--runs, --secs, --concurrency and --rates must be positive");
    }
    warn_if_busy();
    let pgbench = pgbench::find()?;
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
    let mut results = runtime.block_on(measure(&args, &freshplan, &pgbench, pg.url(), &work))?;
    drop(pg);
    prov.postgres = std::mem::take(&mut results.prov.postgres);
    prov.elapsed_secs = clock.elapsed().as_secs();
    results.prov = prov;
    let section = section(&results);
    println!("\n{section}");
    let saved = work.join("events-latest.md");
    std::fs::write(&saved, &section)?;
    println!("xtask bench: results saved to {}", saved.display());
    if !args.no_report {
        let path = write_section(root, "events", &section)?;
        println!("xtask bench: updated {}", path.display());
    }
    Ok(())
}

async fn measure(
    args: &EventsArgs,
    freshplan: &Path,
    pgbench_bin: &Path,
    admin_url: &str,
    work: &Path,
) -> Result<Results> {
    let url = seed::prepare(admin_url, freshplan, args.leads, false).await?;
    let mut db = sqlx::PgConnection::connect(&url).await?;
    let postgres = Provenance::postgres_of(&mut db).await?;
    db.execute(
        "create table if not exists bench_notify_scratch (id bigserial primary key, \
         payload text not null, created_at timestamptz not null default now())",
    )
    .await?;

    println!("xtask bench: minting tokens");
    let mut reps = Vec::new();
    for i in 1..=(args.concurrency.max(8) as u64).min(seed::rep_count(args.leads)) {
        let user = seed::rep_id(i);
        let territory = seed::rep_territory(i);
        reps.push((
            user.clone(),
            super::mint(freshplan, &user, "sales", territory)?,
            territory,
        ));
    }
    let admin = super::mint(freshplan, "bench-admin", "admin", "")?;
    let manager_all = super::mint(freshplan, "bench-manager-all", "manager", "DE,CH")?;
    let manager_de = super::mint(freshplan, "bench-manager-de", "manager", "DE")?;
    let reps = Arc::new(reps);

    let secs = Duration::from_secs(args.secs);
    let mut results = Results {
        args_runs: args.runs,
        secs: args.secs,
        concurrency: args.concurrency,
        pgbench_clients: args.pgbench_clients,
        leads: args.leads,
        ..Results::default()
    };
    results.prov.postgres = postgres;
    let pid = std::process::id();
    for r in 0..args.runs {
        println!("xtask bench: run {} of {}", r + 1, args.runs);

        // 1. Latency: A takes the writes, B streams them.
        let env = Config::Default.env();
        let a = Server::start_with_env(freshplan, &url, SECRET, &work.join("events-a.log"), &env)
            .await?;
        let b = Server::start_with_env(freshplan, &url, SECRET, &work.join("events-b.log"), &env)
            .await?;
        println!(
            "xtask bench:   replicas A on {} (writes), B on {} (SSE)",
            a.addr, b.addr
        );
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Received>();
        let mut sse = SseStream::connect(b.addr, "/api/events/stream", &admin).await?;
        let reader = tokio::spawn(async move {
            while let Ok(Some(m)) = sse.next().await {
                let at = SystemTime::now();
                if tx.send(Received { data: m.data, at }).is_err() {
                    return;
                }
            }
        });
        // Warm-up: every pooled connection of A prepares its statements; B's listener is up.
        let warm = open_loop_creates(
            a.addr,
            Arc::clone(&reps),
            100,
            Duration::from_secs(2),
            format!("{pid}w{r}"),
        )
        .await?;
        drain(&mut rx, &warm.ids(), Duration::from_secs(10)).await;
        let mut per_rate = Vec::new();
        let mut scrape_a = Http::open(a.addr).await?;
        let mut scrape_b = Http::open(b.addr).await?;
        for &rate in &args.rates {
            let before_a = scrape_a.get_text("/metrics", None).await?;
            let before_b = scrape_b.get_text("/metrics", None).await?;
            let writes = open_loop_creates(
                a.addr,
                Arc::clone(&reps),
                rate,
                secs,
                format!("{pid}r{r}x{rate}"),
            )
            .await?;
            let ids = writes.ids();
            let received = drain(&mut rx, &ids, DRAIN_MAX).await;
            let after_a = scrape_a.get_text("/metrics", None).await?;
            let after_b = scrape_b.get_text("/metrics", None).await?;
            let sample = rate_sample(
                rate,
                &writes,
                &received,
                [&before_a, &after_a, &before_b, &after_b],
            );
            println!(
                "xtask bench:   {rate:>5}/s offered: {:.0}/s written (p99 {:.1} ms, {} errors); \
                 SSE on B {}/{}: p50 {:.1} / p99 {:.1} ms from event time, p50 {:.1} / p99 {:.1} \
                 ms from the 201; consumer on B p50 {:.1} / p99 {:.1} ms",
                sample.achieved,
                sample.write_p99_ms,
                sample.write_errors,
                sample.received,
                sample.expected,
                percentile(&sample.sse_time_ms, 0.5),
                percentile(&sample.sse_time_ms, 0.99),
                percentile(&sample.sse_ack_ms, 0.5),
                percentile(&sample.sse_ack_ms, 0.99),
                sample.consumer_b.quantile(0.5).unwrap_or(f64::NAN) * 1000.0,
                sample.consumer_b.quantile(0.99).unwrap_or(f64::NAN) * 1000.0,
            );
            per_rate.push(sample);
        }
        reader.abort();
        drop(a);
        drop(b);
        results.rates.push(per_rate);

        // 2. Create throughput, one replica, three configurations.
        // Two passes in mirrored order (A B C C B A): a linear drift within the run (the table
        // grows with every create) hits every configuration alike.
        let configs = [
            Config::Default,
            Config::EventsOff,
            Config::MetricsOff,
            Config::MetricsOff,
            Config::EventsOff,
            Config::Default,
        ];
        let mut passes: BTreeMap<Config, (Vec<f64>, Vec<f64>)> = BTreeMap::new();
        for (i, config) in configs.into_iter().enumerate() {
            let server = Server::start_with_env(
                freshplan,
                &url,
                SECRET,
                &work.join("events-throughput.log"),
                &config.env(),
            )
            .await?;
            let target = |tag: String| {
                Arc::new(Target {
                    addr: server.addr,
                    leads: args.leads,
                    manager_all: manager_all.clone(),
                    manager_de: manager_de.clone(),
                    reps: reps.as_ref().clone(),
                    tag,
                })
            };
            super::check(
                load::closed_loop(
                    target(format!("{pid}t{r}w{i}")),
                    Workload::Create,
                    args.concurrency,
                    Duration::from_secs(3),
                    1,
                )
                .await?,
                "warm-up create",
            )?;
            let o = super::check(
                load::closed_loop(
                    target(format!("{pid}t{r}m{i}")),
                    Workload::Create,
                    args.concurrency,
                    secs,
                    2,
                )
                .await?,
                "create throughput",
            )?;
            println!(
                "xtask bench:   create, {} connections, {:<34} {:>6.0}/s  p99 {:.1} ms",
                args.concurrency,
                config.name(),
                o.rps(),
                super::ms(o.all.value_at_quantile(0.99))
            );
            let pass = passes.entry(config).or_default();
            pass.0.push(o.rps());
            pass.1.push(super::ms(o.all.value_at_quantile(0.99)));
        }
        for (config, (rps, p99)) in passes {
            let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
            results
                .throughput
                .entry(config)
                .or_default()
                .push(mean(&rps));
            results
                .create_p99_ms
                .entry(config)
                .or_default()
                .push(mean(&p99));
        }

        // 3. pgbench: INSERT vs INSERT + pg_notify in the same transaction (no server running).
        for (name, script, into) in [
            ("events-insert", PLAIN_INSERT, &mut results.plain),
            ("events-insert-notify", NOTIFY_INSERT, &mut results.notify),
        ] {
            db.execute("truncate bench_notify_scratch").await?;
            let f = pgbench::run(
                pgbench_bin,
                &url,
                work,
                name,
                script,
                args.leads,
                args.pgbench_clients,
                args.secs,
            )?;
            println!(
                "xtask bench:   pgbench {name:<22} {:>8.0} tx/s  p50 {:.2} ms  p99 {:.2} ms  failed {}",
                f.tps,
                super::ms(f.p50_us),
                super::ms(f.p99_us),
                f.failed
            );
            into.push(Floor {
                tps: f.tps,
                p50_ms: super::ms(f.p50_us),
                p99_ms: super::ms(f.p99_us),
            });
        }
        db.execute("truncate bench_notify_scratch").await?;
        seed::cleanup(&mut db).await?;
    }
    db.execute("drop table if exists bench_notify_scratch")
        .await?;
    db.close().await?;
    Ok(results)
}

/// The plain write: one row, autocommit (one round trip).
const PLAIN_INSERT: &str =
    "insert into bench_notify_scratch (payload) values ('lead.created.v1');\n";
/// The same write with a NOTIFY in its transaction, still one statement and one round trip: the
/// only difference is the notification queue's cluster-wide lock at commit.
const NOTIFY_INSERT: &str = "with i as (insert into bench_notify_scratch (payload) \
     values ('lead.created.v1') returning id) \
     select pg_notify('bench_notify_scratch', i.id::text) from i;\n";

/// An SSE message as the client got it.
struct Received {
    data: String,
    at: SystemTime,
}

/// A write of the open-loop writer.
#[derive(Debug, Clone)]
struct Write {
    lead_id: Option<String>,
    /// When the `201` was complete.
    acked: SystemTime,
    /// From the scheduled instant to the response.
    latency: Duration,
    ok: bool,
}

#[derive(Debug, Default)]
struct Writes {
    writes: Vec<Write>,
    elapsed: Duration,
    first_error: Option<String>,
}

impl Writes {
    fn ids(&self) -> Vec<String> {
        self.writes
            .iter()
            .filter_map(|w| w.lead_id.clone())
            .collect()
    }
}

/// What the SSE client on B had of the writes: by lead id (first arrival), and when the
/// collection stopped.
struct Drained {
    got: HashMap<String, (String, SystemTime)>,
    ended: SystemTime,
}

/// Collects SSE messages until every id in `ids` has its `lead.created.v1`, or `limit` has
/// passed.
async fn drain(
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<Received>,
    ids: &[String],
    limit: Duration,
) -> Drained {
    let wanted: std::collections::HashSet<&str> = ids.iter().map(String::as_str).collect();
    let mut got: HashMap<String, (String, SystemTime)> = HashMap::new();
    let deadline = tokio::time::Instant::now() + limit;
    while got.len() < wanted.len() {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(m)) => {
                let Ok(v) = serde_json::from_str::<serde_json::Value>(&m.data) else {
                    continue;
                };
                if v["type"] != "lead.created.v1" {
                    continue;
                }
                let Some(subject) = v["subject"].as_str() else {
                    continue;
                };
                if wanted.contains(subject) && !got.contains_key(subject) {
                    let time = v["time"].as_str().unwrap_or_default().to_owned();
                    got.insert(subject.to_owned(), (time, m.at));
                }
            }
            Ok(None) | Err(_) => break,
        }
    }
    Drained {
        got,
        ended: SystemTime::now(),
    }
}

fn since_ms(later: SystemTime, earlier: SystemTime) -> f64 {
    match later.duration_since(earlier) {
        Ok(d) => d.as_secs_f64() * 1000.0,
        Err(e) => -e.duration().as_secs_f64() * 1000.0,
    }
}

fn rate_sample(
    rate: u32,
    writes: &Writes,
    drained: &Drained,
    [before_a, after_a, before_b, after_b]: [&str; 4],
) -> RateSample {
    let metric = "freshplan_event_latency_seconds";
    let created = |l: &str| l.contains("event_type=\"lead.created.v1\"");
    let a =
        Buckets::parse(after_a, metric, created).since(&Buckets::parse(before_a, metric, created));
    let b =
        Buckets::parse(after_b, metric, created).since(&Buckets::parse(before_b, metric, created));
    let mut paths_b = BTreeMap::new();
    for path in ["local", "notify", "poll", "reconnect", "catch_up"] {
        let this = |l: &str| created(l) && l.contains(&format!("path=\"{path}\""));
        let n = Buckets::parse(after_b, metric, this)
            .since(&Buckets::parse(before_b, metric, this))
            .count();
        if n > 0.0 {
            paths_b.insert(path.to_owned(), n);
        }
    }
    let mut lat: Vec<f64> = writes
        .writes
        .iter()
        .map(|w| w.latency.as_secs_f64() * 1000.0)
        .collect();
    lat.sort_by(f64::total_cmp);
    let ok: Vec<&Write> = writes.writes.iter().filter(|w| w.ok).collect();
    let mut sse_time_ms = Vec::new();
    let mut sse_ack_ms = Vec::new();
    let received = &drained.got;
    for w in &ok {
        let Some(id) = &w.lead_id else { continue };
        let Some((time, at)) = received.get(id) else {
            // Not delivered in time: its wait so far, a lower bound of both measures.
            let waited = since_ms(drained.ended, w.acked);
            sse_time_ms.push(waited);
            sse_ack_ms.push(waited);
            continue;
        };
        if let Ok(t) =
            time::OffsetDateTime::parse(time, &time::format_description::well_known::Rfc3339)
        {
            sse_time_ms.push(since_ms(*at, SystemTime::from(t)));
        }
        sse_ack_ms.push(since_ms(*at, w.acked));
    }
    if let Some(e) = &writes.first_error {
        println!("xtask bench:   first write error: {e}");
    }
    let last_ack = ok.iter().map(|w| w.acked).max();
    let last_arrival = ok
        .iter()
        .map(|w| {
            w.lead_id
                .as_ref()
                .and_then(|id| received.get(id))
                .map_or(drained.ended, |(_, at)| *at)
        })
        .max();
    let tail_ms = match (last_ack, last_arrival) {
        (Some(ack), Some(at)) => since_ms(at, ack).max(0.0),
        _ => 0.0,
    };
    RateSample {
        tail_ms,
        offered: rate,
        achieved: ok.len() as f64 / writes.elapsed.as_secs_f64().max(1e-9),
        write_p50_ms: percentile(&lat, 0.5),
        write_p99_ms: percentile(&lat, 0.99),
        write_errors: (writes.writes.len() - ok.len()) as u64,
        expected: ok.len(),
        received: received.len(),
        sse_time_ms,
        sse_ack_ms,
        consumer_a: a,
        consumer_b: b,
        paths_b,
    }
}

/// The request body of a new lead by a rep of `territory`; `n` makes name and email unique
/// (the `Bench New` prefix is what `seed::cleanup` removes).
pub(crate) fn new_lead_body(n: &str, territory: &str) -> String {
    serde_json::json!({
        "companyName": format!("Bench New {n} GmbH"),
        "contactPerson": "Erika Mustermann",
        "email": format!("new.{n}@bench-new.de"),
        "phone": "+49 30 1234567",
        "street": "Hauptstrasse 1",
        "postalCode": if territory == "CH" { "8001" } else { "10115" },
        "city": if territory == "CH" { "Zürich" } else { "Berlin" },
        "countryCode": territory,
        "businessType": "RESTAURANT",
        "kitchenSize": "MEDIUM",
        "employeeCount": 12,
        "estimatedVolume": 2500.5,
        "source": "WEB",
        "emailConsent": true,
    })
    .to_string()
}

/// Lead creates at `rate` per second for `duration` over [`WRITER_CONNECTIONS`] connections,
/// open loop (a pacing thread releases each slot at its instant; latency from that instant, as
/// in `load::open_loop`). Slots still unsent 10 s after the last one are dropped (counted as
/// errors).
async fn open_loop_creates(
    addr: SocketAddr,
    reps: Arc<Vec<(String, String, &'static str)>>,
    rate: u32,
    duration: Duration,
    tag: String,
) -> Result<Writes> {
    let total = (duration.as_secs_f64() * f64::from(rate)).round() as u64;
    let mut conns = Vec::new();
    for _ in 0..WRITER_CONNECTIONS {
        conns.push(Http::open(addr).await?);
    }
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<(u64, Instant)>();
    let rx = Arc::new(Mutex::new(rx));
    let start = Instant::now() + Duration::from_millis(20);
    let pacer = std::thread::spawn(move || {
        for i in 0..total {
            let at = start + Duration::from_secs_f64(i as f64 / f64::from(rate));
            let now = Instant::now();
            if at > now {
                std::thread::sleep(at - now);
            }
            if tx.send((i, at)).is_err() {
                return;
            }
        }
    });
    let give_up = start + duration + Duration::from_secs(10);
    let late = Arc::new(AtomicU64::new(0));
    let tag = Arc::new(tag);
    let mut tasks = Vec::new();
    for (worker, mut conn) in conns.into_iter().enumerate() {
        let rx = Arc::clone(&rx);
        let reps = Arc::clone(&reps);
        let late = Arc::clone(&late);
        let tag = Arc::clone(&tag);
        tasks.push(tokio::spawn(async move {
            let mut out: Vec<Write> = Vec::new();
            let mut first_error = None;
            loop {
                let slot = rx.lock().await.recv().await;
                let Some((i, at)) = slot else { break };
                if Instant::now() > give_up {
                    out.push(Write {
                        lead_id: None,
                        acked: SystemTime::now(),
                        latency: Instant::now().duration_since(at),
                        ok: false,
                    });
                    continue;
                }
                if Instant::now().duration_since(at) > Duration::from_millis(1) {
                    late.fetch_add(1, Ordering::Relaxed);
                }
                let (_, token, territory) = &reps[worker % reps.len()];
                let body = new_lead_body(&format!("{tag}-{i}"), territory);
                let result = conn
                    .call(
                        Method::POST,
                        "/api/leads",
                        Some(token),
                        Some(("application/json", body)),
                    )
                    .await;
                let acked = SystemTime::now();
                let latency = Instant::now().duration_since(at);
                let (ok, lead_id) = match result {
                    Ok((201, bytes)) => (
                        true,
                        serde_json::from_slice::<serde_json::Value>(&bytes)
                            .ok()
                            .and_then(|v| v["id"].as_str().map(str::to_owned)),
                    ),
                    Ok((status, bytes)) => {
                        first_error.get_or_insert_with(|| {
                            format!(
                                "HTTP {status}: {}",
                                String::from_utf8_lossy(&bytes[..bytes.len().min(300)])
                            )
                        });
                        (false, None)
                    }
                    Err(e) => {
                        first_error.get_or_insert_with(|| format!("{e:#}"));
                        (false, None)
                    }
                };
                out.push(Write {
                    lead_id,
                    acked,
                    latency,
                    ok,
                });
            }
            (out, first_error)
        }));
    }
    let mut writes = Writes::default();
    for t in tasks {
        let (w, e) = t.await?;
        writes.writes.extend(w);
        if writes.first_error.is_none() {
            writes.first_error = e;
        }
    }
    pacer
        .join()
        .map_err(|_| anyhow::anyhow!("the pacing thread panicked"))?;
    writes.elapsed = start.elapsed();
    let late = late.load(Ordering::Relaxed);
    if late > total / 100 {
        println!(
            "xtask bench:   {late} of {total} writes started more than 1 ms after their slot \
             (connections busy or the load generator starved); their wait is counted"
        );
    }
    Ok(writes)
}

// ---------------------------------------------------------------------------------------------
// Report
// ---------------------------------------------------------------------------------------------

/// Medians over runs of a per-run figure of `rate`.
fn over_runs(r: &Results, rate_index: usize, f: impl Fn(&RateSample) -> f64) -> (f64, Vec<f64>) {
    let v: Vec<f64> = r
        .rates
        .iter()
        .filter_map(|run| run.get(rate_index))
        .map(f)
        .collect();
    (median(&v), v)
}

fn ratios(r: &Results, num: Config, den: Config) -> Vec<f64> {
    let n = r.throughput.get(&num).cloned().unwrap_or_default();
    let d = r.throughput.get(&den).cloned().unwrap_or_default();
    n.iter().zip(&d).map(|(a, b)| a / b).collect()
}

fn q_ms(b: &Buckets, q: f64) -> f64 {
    b.quantile(q).map_or(f64::NAN, |s| s * 1000.0)
}

/// A histogram quantile in ms; at the largest finite bucket (30 s) it lies beyond it.
fn hist(ms: f64) -> String {
    if ms >= 30_000.0 {
        "≥ 30000".to_owned()
    } else {
        format!("{ms:.1}")
    }
}

fn section(r: &Results) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "## Event delivery benchmark (issues 4 and 12)\n");
    let _ = writeln!(
        s,
        "Generated by `cargo xtask bench events`; this section is replaced on the next run.\n"
    );
    let _ = write!(
        s,
        "{}",
        r.prov.bullets(
            "release build, default configuration unless named (pool of 16, one worker per \
             core, info logging to a file), follow-up schedule and protection sweep off; two \
             replicas on one database for the latency, one replica for the throughput",
            &format!(
                "{} run(s); in each, {} s per offered rate, per throughput configuration and per \
                 pgbench script; figures are medians over the runs (per-run values after the \
                 `·`). Database: the API bench's {} leads (`freshplan_bench_…`), created leads \
                 removed after every run.",
                r.args_runs,
                r.secs,
                thousands(r.leads)
            ),
        )
    );
    let _ = writeln!(s);

    // Goals.
    let rate_index = |rate: u32| {
        r.rates
            .first()
            .and_then(|run| run.iter().position(|x| x.offered == rate))
    };
    let _ = writeln!(s, "### Goals\n");
    let _ = writeln!(s, "| goal | target | measured (median) | verdict |");
    let _ = writeln!(s, "|---|---|---|---|");
    for (rate, q, bound) in LATENCY_GOALS {
        let name = format!(
            "commit → SSE client on the other replica, p{:.0} at {rate} events/s",
            q * 100.0
        );
        let Some(i) = rate_index(rate) else {
            let _ = writeln!(
                s,
                "| {name} | ≤ {bound:.0} ms | not measured (`--rates` lacks {rate}) | **not met** |"
            );
            continue;
        };
        let (v, vs) = over_runs(r, i, |x| percentile(&x.sse_time_ms, q));
        let (a, _) = over_runs(r, i, |x| percentile(&x.sse_ack_ms, q));
        let _ = writeln!(
            s,
            "| {name} | ≤ {bound:.0} ms | {v:.1} ms from the event's `time` (upper bound; {a:.1} \
             ms from the `201`, lower bound) · {} | {} |",
            per_run(&vs, 1),
            verdict(v <= bound)
        );
    }
    let top = r
        .rates
        .first()
        .and_then(|run| run.iter().enumerate().max_by_key(|(_, x)| x.offered))
        .filter(|(_, x)| x.offered >= SATURATION_RATE);
    match top {
        Some((i, x)) => {
            let (p99, p99s) = over_runs(r, i, |x| percentile(&x.sse_time_ms, 0.99));
            let (a99, _) = over_runs(r, i, |x| percentile(&x.sse_ack_ms, 0.99));
            let (achieved, _) = over_runs(r, i, |x| x.achieved);
            let (tail, tails) = over_runs(r, i, |x| x.tail_ms);
            let (worst_tail, _) = over_runs(r, i, |x| x.tail_ms);
            let worst_tail = tails.iter().copied().fold(worst_tail, f64::max);
            let _ = writeln!(
                s,
                "| commit → SSE client on the other replica, p99 under saturation ({} events/s \
                 offered, {achieved:.0}/s written) | ≤ {SATURATION_P99_MS:.0} ms | {p99:.1} ms \
                 from the event's `time` ({a99:.1} ms from the `201`) · {} | {} |",
                x.offered,
                per_run(&p99s, 1),
                verdict(p99 <= SATURATION_P99_MS)
            );
            let _ = writeln!(
                s,
                "| … every event on the other replica after the last write's `201` | within \
                 {SATURATION_TAIL_MS:.0} ms | {tail:.1} ms (slowest run {worst_tail:.1} ms) · {} \
                 | {} |",
                per_run(&tails, 1),
                verdict(worst_tail <= SATURATION_TAIL_MS)
            );
        }
        None => {
            let _ = writeln!(
                s,
                "| commit → SSE under saturation | p99 ≤ {SATURATION_P99_MS:.0} ms | not \
                 measured (`--rates` lacks a rate of {SATURATION_RATE} or more) | **not met** |"
            );
        }
    }
    let ev = ratios(r, Config::Default, Config::EventsOff);
    let evm = median(&ev);
    let tp = |c: Config| median(r.throughput.get(&c).map_or(&[][..], |v| v.as_slice()));
    let _ = writeln!(
        s,
        "| lead creation with event delivery vs without, {} connections | ≥ 90 % | {:.1} % ({:.0}/s \
         vs {:.0}/s) · {} % | {} |",
        r.concurrency,
        evm * 100.0,
        tp(Config::Default),
        tp(Config::EventsOff),
        per_run(&ev.iter().map(|x| x * 100.0).collect::<Vec<_>>(), 1),
        verdict(evm >= 0.9)
    );
    let spread = |v: &[f64]| {
        let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        hi - lo
    };
    let mt = ratios(r, Config::Default, Config::MetricsOff);
    let cost: Vec<f64> = mt.iter().map(|x| (1.0 - x) * 100.0).collect();
    let costm = median(&cost);
    let _ = writeln!(
        s,
        "| cost of the metrics on lead creation, {} connections | < 1 % | {costm:.1} % ({:.0}/s \
         with vs {:.0}/s without) · {} % — the runs spread over {:.1} points | {}{} |",
        r.concurrency,
        tp(Config::Default),
        tp(Config::MetricsOff),
        per_run(&cost, 1),
        spread(&cost),
        verdict(costm < 1.0),
        if spread(&cost) > 1.0 {
            " (within noise)"
        } else {
            ""
        }
    );
    let _ = writeln!(
        s,
        "\nThroughput: each configuration measured twice per run, in mirrored order (default, \
         events off, metrics off, metrics off, events off, default; a new server each time, 3 s \
         warm-up), its rate the mean of the two; ratios are taken per run and the median \
         reported. Run-to-run spread of the ratios here: \
         {:.1} points (events), {:.1} points (metrics) — a difference smaller than that is \
         within this machine's noise, whatever the verdict says.\n",
        spread(&ev) * 100.0,
        spread(&mt) * 100.0
    );

    // Latency table.
    let _ = writeln!(s, "### Delivery latency by offered load\n");
    let _ = writeln!(
        s,
        "Writer: lead creates on replica A, open loop over {WRITER_CONNECTIONS} connections (a \
         create commits one `lead.created.v1`). SSE: one admin client on replica B, \
         `GET /api/events/stream`. *From `time`*: the event's `time` attribute (stamped before \
         the write transaction begins) to the client's receipt — an upper bound of commit → \
         client. *From 201*: the writer's receipt of the `201` (after the commit) to the client's \
         receipt — a lower bound. *Consumer*: `freshplan_event_latency_seconds` of the replica \
         (event `time` → applied by its in-process consumers, the SSE broadcaster and the cockpit \
         consumer), differenced over the interval, quantiles interpolated in the buckets. All in \
         ms; medians over runs.\n"
    );
    let _ = writeln!(
        s,
        "| offered/s | written/s | write p50 / p99 | SSE on B from `time` p50 / p95 / p99 | SSE on B from 201 p50 / p99 | consumer on B p50 / p99 | consumer on A p50 / p99 | events at B / written | last event on B after the last `201` | B's delivery paths |"
    );
    let _ = writeln!(s, "|---:|---:|---|---|---|---|---|---|---:|---|");
    let rates = r.rates.first().map_or(0, Vec::len);
    for i in 0..rates {
        let offered = r.rates[0][i].offered;
        let m = |f: &dyn Fn(&RateSample) -> f64| over_runs(r, i, f).0;
        let received: usize = r
            .rates
            .iter()
            .filter_map(|x| x.get(i))
            .map(|x| x.received)
            .sum();
        let expected: usize = r
            .rates
            .iter()
            .filter_map(|x| x.get(i))
            .map(|x| x.expected)
            .sum();
        let errors: u64 = r
            .rates
            .iter()
            .filter_map(|x| x.get(i))
            .map(|x| x.write_errors)
            .sum();
        let mut paths: BTreeMap<String, f64> = BTreeMap::new();
        for x in r.rates.iter().filter_map(|x| x.get(i)) {
            for (k, v) in &x.paths_b {
                *paths.entry(k.clone()).or_default() += v;
            }
        }
        let total_paths: f64 = paths.values().sum();
        let paths = paths
            .iter()
            .filter(|(_, v)| **v / total_paths.max(1.0) >= 0.005)
            .map(|(k, v)| format!("{k} {:.0} %", v / total_paths.max(1.0) * 100.0))
            .collect::<Vec<_>>()
            .join(", ");
        let _ = writeln!(
            s,
            "| {offered} | {:.0}{} | {:.1} / {:.1} | {:.1} / {:.1} / {:.1} | {:.1} / {:.1} | {} / {} | {} / {} | {received} / {expected} | {:.1} | {paths} |",
            m(&|x| x.achieved),
            if errors > 0 {
                format!(" ({errors} failed)")
            } else {
                String::new()
            },
            m(&|x| x.write_p50_ms),
            m(&|x| x.write_p99_ms),
            m(&|x| percentile(&x.sse_time_ms, 0.5)),
            m(&|x| percentile(&x.sse_time_ms, 0.95)),
            m(&|x| percentile(&x.sse_time_ms, 0.99)),
            m(&|x| percentile(&x.sse_ack_ms, 0.5)),
            m(&|x| percentile(&x.sse_ack_ms, 0.99)),
            hist(m(&|x| q_ms(&x.consumer_b, 0.5))),
            hist(m(&|x| q_ms(&x.consumer_b, 0.99))),
            hist(m(&|x| q_ms(&x.consumer_a, 0.5))),
            hist(m(&|x| q_ms(&x.consumer_a, 0.99))),
            m(&|x| x.tail_ms),
        );
    }
    let _ = writeln!(
        s,
        "\nEvents the client on B did not have {} s after the last write count with their wait \
         so far (a lower bound); *events at B / written* sums the runs.",
        DRAIN_MAX.as_secs()
    );
    let _ = writeln!(
        s,
        "\nThe histogram's buckets are 1, 2.5, 5, 10, 20, 50, 100, 250 ms …: its quantiles are \
         interpolations inside those bounds, not exact values. Replica B learns of A's commits \
         through A's notifier: the first commit after a quiet window is announced at once, \
         commits inside a window (`PipelineConfig::notify_window`) share one NOTIFY at its end, so \
         under steady load an event waits on average half a window before B reads the outbox; \
         replica A's own consumers are woken in-process at once (path `local`).\n"
    );

    // Throughput table.
    let _ = writeln!(
        s,
        "### Lead-create throughput, {} connections, one replica\n",
        r.concurrency
    );
    let _ = writeln!(
        s,
        "| configuration | creates/s | p99 ms | per run (creates/s) |"
    );
    let _ = writeln!(s, "|---|---:|---:|---|");
    for (c, v) in &r.throughput {
        let p99 = median(r.create_p99_ms.get(c).map_or(&[][..], |v| v.as_slice()));
        let _ = writeln!(
            s,
            "| {} | {:.0} | {p99:.1} | {} |",
            c.name(),
            median(v),
            per_run(v, 0)
        );
    }

    // pgbench.
    let _ = writeln!(
        s,
        "\n### What an in-transaction NOTIFY costs (pgbench, {} clients, 2 threads, prepared)\n",
        r.pgbench_clients
    );
    let _ = writeln!(
        s,
        "A scratch table (`bench_notify_scratch`, bigserial key, logged). *INSERT*: `insert … \
         values (…)`, autocommit. *INSERT + pg_notify*: the same insert and \
         `pg_notify('bench_notify_scratch', id)` in one statement, so in the same transaction \
         and the same single round trip — the only difference is the notification queue's \
         cluster-wide lock at commit, which serialises every committer. The event pipeline \
         avoids it: requests only append the outbox row; the notifier sends at most one NOTIFY \
         per channel per 50 ms in its own statement.\n"
    );
    let _ = writeln!(s, "| script | tx/s | p50 ms | p99 ms | per run (tx/s) |");
    let _ = writeln!(s, "|---|---:|---:|---:|---|");
    for (name, v) in [("INSERT", &r.plain), ("INSERT + pg_notify", &r.notify)] {
        let tps: Vec<f64> = v.iter().map(|f| f.tps).collect();
        let _ = writeln!(
            s,
            "| {name} | {:.0} | {:.2} | {:.2} | {} |",
            median(&tps),
            median(&v.iter().map(|f| f.p50_ms).collect::<Vec<_>>()),
            median(&v.iter().map(|f| f.p99_ms).collect::<Vec<_>>()),
            per_run(&tps, 0)
        );
    }
    let per: Vec<f64> = r
        .notify
        .iter()
        .zip(&r.plain)
        .map(|(n, p)| n.tps / p.tps * 100.0)
        .collect();
    let _ = writeln!(
        s,
        "\nINSERT + pg_notify reaches {:.0} % of the plain INSERT's rate (per run: {} %).",
        median(&per),
        per_run(&per, 0)
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_quantiles_interpolate_inside_buckets() {
        let text = "\
# TYPE freshplan_event_latency_seconds histogram
freshplan_event_latency_seconds_bucket{event_type=\"lead.created.v1\",path=\"local\",le=\"0.001\"} 0
freshplan_event_latency_seconds_bucket{event_type=\"lead.created.v1\",path=\"local\",le=\"0.01\"} 50
freshplan_event_latency_seconds_bucket{event_type=\"lead.created.v1\",path=\"local\",le=\"0.1\"} 100
freshplan_event_latency_seconds_bucket{event_type=\"lead.created.v1\",path=\"local\",le=\"+Inf\"} 100
freshplan_event_latency_seconds_bucket{event_type=\"lead.updated.v1\",path=\"local\",le=\"0.001\"} 7
freshplan_event_latency_seconds_bucket{event_type=\"lead.updated.v1\",path=\"local\",le=\"0.01\"} 7
freshplan_event_latency_seconds_bucket{event_type=\"lead.updated.v1\",path=\"local\",le=\"0.1\"} 7
freshplan_event_latency_seconds_bucket{event_type=\"lead.updated.v1\",path=\"local\",le=\"+Inf\"} 7
";
        let b = Buckets::parse(text, "freshplan_event_latency_seconds", |l| {
            l.contains("lead.created.v1")
        });
        assert_eq!(b.count(), 100.0);
        assert!((b.quantile(0.5).unwrap() - 0.01).abs() < 1e-12);
        assert!((b.quantile(0.25).unwrap() - 0.0055).abs() < 1e-12);
        assert!((b.quantile(0.75).unwrap() - 0.055).abs() < 1e-12);
        let zero = b.since(&b);
        assert_eq!(zero.quantile(0.5), None);
        let all = Buckets::parse(text, "freshplan_event_latency_seconds", |_| true);
        assert_eq!(all.count(), 107.0);
    }

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 0.5), 50.0);
        assert_eq!(percentile(&v, 0.99), 99.0);
        assert_eq!(percentile(&v, 1.0), 100.0);
        assert_eq!(median(&[3.0, 1.0, 2.0, 4.0]), 2.5);
        assert!(percentile(&[], 0.5).is_nan());
    }

    #[test]
    fn frames_parse_messages_and_comments() {
        match parse_frame("event: followup-metrics\ndata: {\"a\":1}\n\n") {
            Frame::Message(m) => {
                assert_eq!(m.event.as_deref(), Some("followup-metrics"));
                assert_eq!(m.data, "{\"a\":1}");
            }
            Frame::Comment(_) => panic!("a message"),
        }
        assert!(matches!(parse_frame(": open\n\n"), Frame::Comment(c) if c == "open"));
    }
}
