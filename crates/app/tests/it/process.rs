//! The real `freshplan serve` process (`CARGO_BIN_EXE_freshplan`) against a fresh database:
//! graceful shutdown on SIGTERM, and no start when the JWKS URL does not deliver keys.
//!
//! What "in flight" means for actix-web: actix-server counts every accepted connection. On
//! SIGTERM it closes the listening socket at once (new connections are refused), tells each
//! connection to finish its current request and then close (keep-alive off), and waits for the
//! count to reach zero — up to `shutdown_timeout` (30 s here) — before the server future, and so
//! `main`, returns. A request whose head has arrived is already being handled (actix dispatches on
//! the head and streams the body), so a request whose body is still arriving is in flight.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::helpers::*;

/// A `freshplan serve` child process; killed (SIGKILL, by its id) if a test fails midway.
pub(crate) struct Serve {
    pub(crate) child: Child,
    pub(crate) addr: SocketAddr,
    log: PathBuf,
}

impl Drop for Serve {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        // The log is kept only when the test failed (its assertions print it too).
        if !std::thread::panicking() {
            let _ = std::fs::remove_file(&self.log);
        }
    }
}

impl Serve {
    /// Starts `freshplan serve` on a free port; `env` adds to or overrides the defaults
    /// (the test database, the HS256 test secret, one worker).
    pub(crate) fn spawn(database_url: &str, env: &[(&str, &str)]) -> Serve {
        let addr = {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        let log =
            std::env::temp_dir().join(format!("freshplan-serve-{}.log", uuid::Uuid::now_v7()));
        let out = std::fs::File::create(&log).unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_freshplan"));
        cmd.arg("serve")
            .env("DATABASE_URL", database_url)
            .env("FRESHPLAN_BIND", addr.to_string())
            .env("FRESHPLAN_AUTH_HS256_SECRET", SECRET)
            .env("FRESHPLAN_WORKERS", "1")
            .env("FRESHPLAN_POOL_SIZE", "2")
            .env("RUST_LOG", "info")
            // Follow-ups as in production (a private secret, the public URL), their schedules
            // off so no run lands in the middle of a test's own events.
            .env("FRESHPLAN_UNSUBSCRIBE_SECRET", UNSUBSCRIBE_SECRET)
            .env("FRESHPLAN_PUBLIC_URL", PUBLIC_URL)
            .env("FRESHPLAN_FOLLOWUP_ENABLED", "false")
            .env("FRESHPLAN_SWEEP_ENABLED", "false")
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out);
        // Nothing from the developer's environment: only what this test sets.
        for name in [
            "FRESHPLAN_AUTH_JWKS",
            "FRESHPLAN_AUTH_ISSUER",
            "FRESHPLAN_AUTH_AUDIENCE",
            "FRESHPLAN_LOG_FORMAT",
            "FRESHPLAN_ENV",
            "FRESHPLAN_SMTP_URL",
        ] {
            cmd.env_remove(name);
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        Serve {
            child: cmd.spawn().expect("spawn freshplan serve"),
            addr,
            log,
        }
    }

    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub(crate) fn running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// Waits for the exit, at most `limit`.
    fn exit_within(&mut self, limit: Duration) -> Option<ExitStatus> {
        let started = Instant::now();
        while started.elapsed() < limit {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    pub(crate) async fn wait_ready(&mut self) {
        let url = format!("http://{}/health/ready", self.addr);
        let client = reqwest::Client::new();
        let started = Instant::now();
        loop {
            if let Ok(r) = client.get(&url).send().await
                && r.status() == 200
            {
                return;
            }
            assert!(self.running(), "freshplan serve exited:\n{}", self.log());
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "not ready after 60 s:\n{}",
                self.log()
            );
            actix_web::rt::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn sigterm(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
    }
}

fn connection_refused(addr: SocketAddr) -> bool {
    matches!(
        TcpStream::connect_timeout(&addr, Duration::from_secs(1)),
        Err(e) if e.kind() == ErrorKind::ConnectionRefused
    )
}

/// Splits a raw HTTP/1.1 response into the status code, the lower-cased head and the body.
fn parse_response(raw: &[u8]) -> (u16, String, Vec<u8>) {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no response head in {:?}", String::from_utf8_lossy(raw)));
    let head = String::from_utf8_lossy(&raw[..end]).to_ascii_lowercase();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap();
    (status, head, raw[end + 4..].to_vec())
}

#[actix_web::test]
async fn sigterm_lets_the_in_flight_request_finish_refuses_new_ones_and_exits_0() {
    let database_url = fresh_database().await;
    let mut serve = Serve::spawn(&database_url, &[]);
    serve.wait_ready().await;

    // An upload in flight: the request head and half of the body, over a raw socket.
    let body = serde_json::to_vec(&json!({
        "companyName": "Langsamer Upload GmbH",
        "city": "Berlin",
        "postalCode": "10115",
        "contactPerson": "Frau Geduld",
    }))
    .unwrap();
    let (first_half, second_half) = body.split_at(body.len() / 2);
    let mut upload = TcpStream::connect(serve.addr).unwrap();
    upload
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    write!(
        upload,
        "POST /api/leads HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        serve.addr,
        rep("rep-1"),
        body.len()
    )
    .unwrap();
    upload.write_all(first_half).unwrap();
    upload.flush().unwrap();
    // Give the server time to read the head and start the handler, which now awaits the rest
    // of the body.
    std::thread::sleep(Duration::from_millis(500));

    serve.sigterm();

    // The listener closes at once: new connections are refused while the upload is pending.
    let started = Instant::now();
    while !connection_refused(serve.addr) {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "still accepting connections 5 s after SIGTERM:\n{}",
            serve.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // The half-received request keeps the process alive — also past actix's shutdown checks
    // (once a second).
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        serve.running(),
        "exited while a request was in flight:\n{}",
        serve.log()
    );
    assert!(connection_refused(serve.addr));

    // The rest of the body arrives; the request completes normally.
    upload.write_all(second_half).unwrap();
    upload.flush().unwrap();
    let mut raw = Vec::new();
    // read_to_end returns because the server closes the connection after this response
    // (keep-alive is off during shutdown), instead of waiting for a next request.
    upload
        .read_to_end(&mut raw)
        .unwrap_or_else(|e| panic!("reading the response: {e}\n{}", serve.log()));
    let (status, head, body) = parse_response(&raw);
    assert_eq!(status, 201, "{head}\n{}", String::from_utf8_lossy(&body));
    assert!(head.contains("\r\nlocation: /api/leads/"), "{head}");
    let lead: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(lead["companyName"], "Langsamer Upload GmbH");
    assert_eq!(lead["ownerUserId"], "rep-1");

    // Then the process ends by itself, successfully.
    let exit = serve.exit_within(Duration::from_secs(15));
    assert!(
        exit.is_some_and(|s| s.success()),
        "exit status {exit:?}:\n{}",
        serve.log()
    );
    assert!(connection_refused(serve.addr));

    // The lead, its CREATED activity and its event were committed.
    let (leads, activities, events) = freshplan_store_postgres::testing::row_counts(&database_url)
        .await
        .unwrap();
    assert_eq!((leads, activities, events), (1, 1, 1));
}

#[actix_web::test]
async fn serve_does_not_start_when_the_jwks_url_is_unreachable() {
    let database_url = fresh_database().await;
    let jwks = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}/realms/freshplan/certs", l.local_addr().unwrap())
    };
    let mut serve = Serve::spawn(
        &database_url,
        &[
            ("FRESHPLAN_AUTH_JWKS", jwks.as_str()),
            ("FRESHPLAN_AUTH_HS256_SECRET", ""),
        ],
    );
    let exit = serve.exit_within(Duration::from_secs(60));
    let log = serve.log();
    assert!(
        exit.is_some_and(|s| s.code() == Some(1)),
        "exit status {exit:?}:\n{log}"
    );
    assert!(
        log.contains("FRESHPLAN_AUTH_JWKS")
            && log.contains(&format!("fetching the JWKS from {jwks}")),
        "{log}"
    );
    assert!(connection_refused(serve.addr), "it listened");
}
