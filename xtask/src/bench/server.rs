//! The server under test: the release `freshplan serve` binary on a free loopback port.

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::load::Conn;

/// A running server; killed on drop.
#[derive(Debug)]
pub(crate) struct Server {
    child: Child,
    pub(crate) addr: SocketAddr,
}

impl Server {
    /// Starts `freshplan serve --no-migrate` against `database_url`, logging to `log`, and waits
    /// until `/health/ready` answers 200.
    pub(crate) async fn start(
        freshplan: &Path,
        database_url: &str,
        secret: &str,
        log: &Path,
    ) -> Result<Server> {
        Server::start_with_env(freshplan, database_url, secret, log, &[]).await
    }

    /// [`Server::start`] with further environment variables (set last, so they may override
    /// the defaults above, e.g. `FRESHPLAN_EVENTS=false`).
    pub(crate) async fn start_with_env(
        freshplan: &Path,
        database_url: &str,
        secret: &str,
        log: &Path,
        env: &[(&str, String)],
    ) -> Result<Server> {
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
            .local_addr()?
            .port();
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let log_file =
            std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let child = Command::new(freshplan)
            .args(["serve", "--no-migrate"])
            .env("DATABASE_URL", database_url)
            .env("FRESHPLAN_BIND", addr.to_string())
            .env("FRESHPLAN_AUTH_HS256_SECRET", secret)
            // Background jobs would compete for the cores with the scenarios.
            .env("FRESHPLAN_FOLLOWUP_ENABLED", "false")
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file)
            .spawn()
            .context("starting freshplan serve")?;
        let mut server = Server { child, addr };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = server.child.try_wait()? {
                bail!(
                    "the server exited during start-up ({status}); see {}",
                    log.display()
                );
            }
            if let Ok(mut conn) = Conn::open(addr).await
                && conn.get_status("/health/ready").await.ok() == Some(200)
            {
                return Ok(server);
            }
            if Instant::now() > deadline {
                bail!(
                    "the server did not become ready in 60 s; see {}",
                    log.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// `(VmHWM, VmRSS)` in KiB: the peak and the current resident set.
    pub(crate) fn memory_kib(&self) -> Result<(u64, u64)> {
        memory_kib_of(self.child.id())
    }

    /// The server's process id (e.g. for sampling its memory from another thread).
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }
}

/// `(VmHWM, VmRSS)` in KiB of process `pid`.
pub(crate) fn memory_kib_of(pid: u32) -> Result<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    Ok((field("VmHWM:"), field("VmRSS:")))
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
