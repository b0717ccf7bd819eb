//! The HTTP load generator: one HTTP/1.1 keep-alive connection per worker (hyper's low-level
//! client, so a worker is exactly one connection), closed-loop for saturation and latency without
//! load, open-loop at a fixed rate for latency under load.
//!
//! Open loop avoids coordinated omission: a pacing thread releases request slots at their
//! scheduled instants (`start + i / rate`, with `std::thread::sleep`, whose lateness is tens of
//! microseconds, not tokio's millisecond timer), idle workers take them, and each latency is
//! measured from the slot's *scheduled* instant to the end of the response. A server that
//! stalls therefore shows its stall in every request scheduled during it, not only in the one
//! request it held up.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1;
use hyper::{Method, Request, header};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::sync::Mutex;

/// Tokens and data shape the request generator needs.
#[derive(Debug)]
pub(crate) struct Target {
    pub(crate) addr: SocketAddr,
    /// Seeded leads are numbered 1..=n (see `seed::lead_id`).
    pub(crate) leads: u64,
    /// A manager of DE and CH: reads and patches any seeded lead.
    pub(crate) manager_all: String,
    /// A manager of DE only.
    pub(crate) manager_de: String,
    /// Sales reps `(user id, token, territory)`: they create leads and list their own.
    pub(crate) reps: Vec<(String, String, &'static str)>,
    /// Makes created company names and emails unique across runs.
    pub(crate) tag: String,
}

/// What a scenario sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Workload {
    /// `GET /api/leads/{id}` of a random seeded lead, as the DE+CH manager.
    Get,
    /// A filtered, sorted page of 50 (three shapes in turn, see [`list_path`]).
    List,
    /// 9 GETs : 1 list.
    ReadMix,
    /// `POST /api/leads` of a new lead by one of the reps (one rep per connection).
    Create,
    /// `PATCH /api/leads/{id}` (`If-Match: *`, a new phone number) as the DE+CH manager.
    Patch,
}

/// The kind of one request, for per-kind histograms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Kind {
    Get,
    List,
    Create,
    Patch,
}

impl Kind {
    fn expected_status(self) -> u16 {
        match self {
            Kind::Create => 201,
            _ => 200,
        }
    }
}

/// The three list shapes, in turn:
/// 1. a DE manager: open leads of DE (`status=REGISTERED,ACTIVE`), newest change first;
/// 2. a sales rep: own active leads by company name (the OR policy: owned or collaborating);
/// 3. the DE+CH manager: hotels by estimated volume, largest first.
pub(crate) const LIST_SHAPES: [&str; 3] = [
    "manager DE: `status=REGISTERED&status=ACTIVE&territory=DE&sort=updatedAt,desc&size=50`",
    "sales rep: `status=ACTIVE&sort=companyName,asc&size=50`",
    "manager DE+CH: `businessType=HOTEL&sort=estimatedVolume,desc&size=50`",
];

pub(crate) fn list_path(shape: u64) -> &'static str {
    match shape % 3 {
        0 => "/api/leads?status=REGISTERED&status=ACTIVE&territory=DE&sort=updatedAt,desc&size=50",
        1 => "/api/leads?status=ACTIVE&sort=companyName,asc&size=50",
        _ => "/api/leads?businessType=HOTEL&sort=estimatedVolume,desc&size=50",
    }
}

/// A small, fast PRNG (splitmix64); the load generator needs no crate for it.
#[derive(Debug, Clone)]
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x9e37_79b9_7f4a_7c15)
    }

    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `1..=n`.
    pub(crate) fn one_to(&mut self, n: u64) -> u64 {
        self.next() % n.max(1) + 1
    }
}

struct Req {
    kind: Kind,
    method: Method,
    path: String,
    token: String,
    body: Option<(&'static str, Bytes)>,
    if_match: bool,
}

fn request(t: &Target, w: Workload, worker: usize, seq: u64, rng: &mut Rng) -> Req {
    let get = |rng: &mut Rng| Req {
        kind: Kind::Get,
        method: Method::GET,
        path: format!("/api/leads/{}", super::seed::lead_id(rng.one_to(t.leads))),
        token: t.manager_all.clone(),
        body: None,
        if_match: false,
    };
    let list = |shape: u64| {
        let token = match shape % 3 {
            0 => t.manager_de.clone(),
            1 => t.reps[(shape as usize / 3 + worker) % t.reps.len()]
                .1
                .clone(),
            _ => t.manager_all.clone(),
        };
        Req {
            kind: Kind::List,
            method: Method::GET,
            path: list_path(shape).to_owned(),
            token,
            body: None,
            if_match: false,
        }
    };
    match w {
        Workload::Get => get(rng),
        Workload::List => list(seq + worker as u64),
        Workload::ReadMix => {
            if seq % 10 == 9 {
                list(seq / 10)
            } else {
                get(rng)
            }
        }
        Workload::Create => {
            let (_, token, territory) = &t.reps[worker % t.reps.len()];
            let n = format!("{}-{worker}-{seq}", t.tag);
            let body = serde_json::json!({
                "companyName": format!("Bench New {n} GmbH"),
                "contactPerson": "Erika Mustermann",
                "email": format!("new.{n}@bench-new.de"),
                "phone": "+49 30 1234567",
                "street": "Hauptstrasse 1",
                "postalCode": if *territory == "CH" { "8001" } else { "10115" },
                "city": if *territory == "CH" { "Zürich" } else { "Berlin" },
                "countryCode": territory,
                "businessType": "RESTAURANT",
                "kitchenSize": "MEDIUM",
                "employeeCount": 12,
                "estimatedVolume": 2500.5,
                "source": "WEB",
                "emailConsent": true,
            });
            Req {
                kind: Kind::Create,
                method: Method::POST,
                path: "/api/leads".to_owned(),
                token: token.clone(),
                body: Some(("application/json", Bytes::from(body.to_string()))),
                if_match: false,
            }
        }
        Workload::Patch => {
            let body =
                serde_json::json!({ "phone": format!("+49 30 {}", rng.next() % 10_000_000) });
            Req {
                kind: Kind::Patch,
                method: Method::PATCH,
                path: format!("/api/leads/{}", super::seed::lead_id(rng.one_to(t.leads))),
                token: t.manager_all.clone(),
                body: Some((
                    "application/merge-patch+json",
                    Bytes::from(body.to_string()),
                )),
                if_match: true,
            }
        }
    }
}

/// One keep-alive HTTP/1.1 connection.
pub(crate) struct Conn {
    addr: SocketAddr,
    host: String,
    sender: http1::SendRequest<Full<Bytes>>,
}

impl Conn {
    pub(crate) async fn open(addr: SocketAddr) -> Result<Conn> {
        let stream = TcpStream::connect(addr)
            .await
            .with_context(|| format!("connecting to {addr}"))?;
        stream.set_nodelay(true)?;
        let (sender, connection) = http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(Conn {
            addr,
            host: addr.to_string(),
            sender,
        })
    }

    /// Sends a GET without a token (health checks); returns the status.
    pub(crate) async fn get_status(&mut self, path: &str) -> Result<u16> {
        let req = Request::get(path)
            .header(header::HOST, &self.host)
            .body(Full::new(Bytes::new()))?;
        self.sender.ready().await?;
        let resp = self.sender.send_request(req).await?;
        let status = resp.status().as_u16();
        resp.into_body().collect().await?;
        Ok(status)
    }

    /// Sends one request with a bearer token (a JSON or merge-patch body, `If-Match: *` when
    /// `if_match`); returns the status and the body.
    pub(crate) async fn call(
        &mut self,
        method: Method,
        path: &str,
        token: &str,
        body: Option<(&'static str, String)>,
        if_match: bool,
    ) -> Result<(u16, Bytes)> {
        self.send(&Req {
            kind: Kind::Get,
            method,
            path: path.to_owned(),
            token: token.to_owned(),
            body: body.map(|(ct, b)| (ct, Bytes::from(b))),
            if_match,
        })
        .await
    }

    async fn send(&mut self, r: &Req) -> Result<(u16, Bytes)> {
        if self.sender.is_closed() {
            *self = Conn::open(self.addr).await?;
        }
        let mut b = Request::builder()
            .method(r.method.clone())
            .uri(&r.path)
            .header(header::HOST, &self.host)
            .header(header::AUTHORIZATION, format!("Bearer {}", r.token));
        if r.if_match {
            b = b.header(header::IF_MATCH, "*");
        }
        let body = match &r.body {
            Some((ct, bytes)) => {
                b = b.header(header::CONTENT_TYPE, *ct);
                Full::new(bytes.clone())
            }
            None => Full::new(Bytes::new()),
        };
        self.sender.ready().await?;
        let resp = self.sender.send_request(b.body(body)?).await?;
        let status = resp.status().as_u16();
        let bytes = resp.into_body().collect().await?.to_bytes();
        Ok((status, bytes))
    }
}

/// What one scenario measured.
#[derive(Debug, Clone)]
pub(crate) struct Outcome {
    /// Latencies in microseconds, all kinds.
    pub(crate) all: Histogram<u64>,
    /// Latencies per kind (the read mix has two).
    pub(crate) by_kind: BTreeMap<Kind, Histogram<u64>>,
    /// Completed requests with the expected status.
    pub(crate) ok: u64,
    /// Requests that failed or answered another status.
    pub(crate) errors: u64,
    /// One example of an error, for the log.
    pub(crate) first_error: Option<String>,
    pub(crate) elapsed: Duration,
}

fn histogram() -> Histogram<u64> {
    // 1 µs .. 60 s at 3 significant digits.
    Histogram::new_with_bounds(1, 60_000_000, 3).unwrap_or_else(|e| unreachable!("bounds: {e}"))
}

impl Outcome {
    fn new() -> Outcome {
        Outcome {
            all: histogram(),
            by_kind: BTreeMap::new(),
            ok: 0,
            errors: 0,
            first_error: None,
            elapsed: Duration::ZERO,
        }
    }

    fn record_latency(&mut self, kind: Kind, latency: Duration) {
        let us = u64::try_from(latency.as_micros())
            .unwrap_or(u64::MAX)
            .max(1);
        self.all.saturating_record(us);
        self.by_kind
            .entry(kind)
            .or_insert_with(histogram)
            .saturating_record(us);
    }

    fn record(&mut self, kind: Kind, latency: Duration, result: Result<(u16, Bytes)>) {
        self.record_latency(kind, latency);
        match result {
            Ok((status, _)) if status == kind.expected_status() => self.ok += 1,
            Ok((status, body)) => {
                self.errors += 1;
                self.first_error.get_or_insert_with(|| {
                    format!(
                        "{kind:?}: HTTP {status}: {}",
                        String::from_utf8_lossy(&body[..body.len().min(300)])
                    )
                });
            }
            Err(e) => {
                self.errors += 1;
                self.first_error
                    .get_or_insert_with(|| format!("{kind:?}: {e:#}"));
            }
        }
    }

    fn merge(&mut self, other: &Outcome) {
        self.all
            .add(&other.all)
            .unwrap_or_else(|e| unreachable!("same bounds: {e}"));
        for (k, h) in &other.by_kind {
            self.by_kind
                .entry(*k)
                .or_insert_with(histogram)
                .add(h)
                .unwrap_or_else(|e| unreachable!("same bounds: {e}"));
        }
        self.ok += other.ok;
        self.errors += other.errors;
        if self.first_error.is_none() {
            self.first_error.clone_from(&other.first_error);
        }
    }

    /// Successful requests per second.
    pub(crate) fn rps(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// `connections` workers, each sending its next request as soon as the previous one answered,
/// for `duration`.
pub(crate) async fn closed_loop(
    target: Arc<Target>,
    workload: Workload,
    connections: usize,
    duration: Duration,
    seed: u64,
) -> Result<Outcome> {
    let mut conns = Vec::with_capacity(connections);
    for _ in 0..connections {
        conns.push(Conn::open(target.addr).await?);
    }
    let start = Instant::now();
    let deadline = start + duration;
    let mut tasks = Vec::with_capacity(connections);
    for (worker, mut conn) in conns.into_iter().enumerate() {
        let target = Arc::clone(&target);
        tasks.push(tokio::spawn(async move {
            let mut rng = Rng::new(seed.wrapping_mul(1_000_003).wrapping_add(worker as u64));
            let mut out = Outcome::new();
            let mut seq = 0u64;
            while Instant::now() < deadline {
                let r = request(&target, workload, worker, seq, &mut rng);
                seq += 1;
                let t0 = Instant::now();
                let result = conn.send(&r).await;
                out.record(r.kind, t0.elapsed(), result);
            }
            out
        }));
    }
    let mut total = Outcome::new();
    for t in tasks {
        total.merge(&t.await?);
    }
    total.elapsed = start.elapsed();
    Ok(total)
}

/// `rate` requests per second for `duration`, spread over up to `max_connections` connections,
/// latency from each request's scheduled instant.
pub(crate) async fn open_loop(
    target: Arc<Target>,
    workload: Workload,
    rate: u32,
    duration: Duration,
    max_connections: usize,
    seed: u64,
) -> Result<Outcome> {
    open_loop_until(
        target,
        workload,
        rate,
        duration,
        max_connections,
        seed,
        None,
    )
    .await
}

/// [`open_loop`] that also ends when `stop` is set (no slot is released after it): the load of
/// a window whose length is known only at its end (e.g. while an import runs).
pub(crate) async fn open_loop_until(
    target: Arc<Target>,
    workload: Workload,
    rate: u32,
    duration: Duration,
    max_connections: usize,
    seed: u64,
    stop: Option<Arc<AtomicBool>>,
) -> Result<Outcome> {
    if rate == 0 {
        bail!("the rate must be positive");
    }
    let total = (duration.as_secs_f64() * f64::from(rate)).round() as u64;
    let mut conns = Vec::with_capacity(max_connections);
    for _ in 0..max_connections {
        conns.push(Conn::open(target.addr).await?);
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
            if stop.as_ref().is_some_and(|s| s.load(Ordering::Relaxed)) || tx.send((i, at)).is_err()
            {
                return i;
            }
        }
        total
    });
    let late = Arc::new(AtomicU64::new(0));
    let unsent = Arc::new(AtomicU64::new(0));
    // An overloaded server would let the backlog grow without end: after this instant the
    // remaining slots are not sent, but recorded with the time they have waited so far (a lower
    // bound of their latency), so the run stays bounded in time and still shows the overload.
    let give_up = start + duration + Duration::from_secs(10);
    let mut tasks = Vec::with_capacity(max_connections);
    for (worker, mut conn) in conns.into_iter().enumerate() {
        let target = Arc::clone(&target);
        let rx = Arc::clone(&rx);
        let late = Arc::clone(&late);
        let unsent = Arc::clone(&unsent);
        tasks.push(tokio::spawn(async move {
            let mut rng = Rng::new(seed.wrapping_mul(1_000_003).wrapping_add(worker as u64));
            let mut out = Outcome::new();
            loop {
                let slot = rx.lock().await.recv().await;
                let Some((i, at)) = slot else { break };
                let r = request(&target, workload, worker, i, &mut rng);
                if Instant::now() > give_up {
                    unsent.fetch_add(1, Ordering::Relaxed);
                    out.record_latency(r.kind, Instant::now().duration_since(at));
                    continue;
                }
                if Instant::now().duration_since(at) > Duration::from_millis(1) {
                    late.fetch_add(1, Ordering::Relaxed);
                }
                let result = conn.send(&r).await;
                out.record(r.kind, Instant::now().duration_since(at), result);
            }
            out
        }));
    }
    let mut out = Outcome::new();
    for t in tasks {
        out.merge(&t.await?);
    }
    // Slots released: all of them, or those before `stop`.
    let total = pacer
        .join()
        .map_err(|_| anyhow::anyhow!("the pacing thread panicked"))?;
    out.elapsed = start.elapsed();
    let unsent = unsent.load(Ordering::Relaxed);
    if unsent > 0 {
        println!(
            "xtask bench:   overloaded: {unsent} of {total} requests were still waiting 10 s after \
             the last slot; they were not sent and count with their wait so far"
        );
    }
    let late = late.load(Ordering::Relaxed);
    if late > 0 {
        println!(
            "xtask bench:   {late} of {total} requests started more than 1 ms after their slot \
             (all connections busy or the load generator starved); their wait is counted"
        );
    }
    Ok(out)
}
