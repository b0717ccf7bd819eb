//! A PostgreSQL primary and a hot standby of its own, from the machine's PostgreSQL binaries (the
//! failover test, issue 13): `initdb`, `pg_basebackup -R` (streaming replication, the standby's
//! `primary_conninfo` and `standby.signal` written by the tool), replication synchronous
//! (`synchronous_standby_names = '*'`, `synchronous_commit = on`) or asynchronous. The primary can
//! be killed like a machine that dies (SIGKILL to the postmaster and every backend at once) and
//! the standby promoted.
//!
//! The standby inherits the primary's `postgresql.conf` — including `synchronous_standby_names`,
//! which on a promoted server without standbys blocks every commit. [`PgPair::promote`] clears it
//! (`ALTER SYSTEM`), as Patroni and CloudNativePG do.
//!
//! When the tests run as root, the clusters belong to the `postgres` OS user (PostgreSQL refuses
//! to run as root) and the server binaries run through `runuser`. The clusters live in a
//! temporary folder that is removed on drop (kept when the test failed, for its logs).

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A primary and its standby; both stopped (immediately) on drop.
pub(crate) struct PgPair {
    bin: PgBin,
    base: PathBuf,
    pub(crate) primary: Node,
    pub(crate) standby: Node,
}

/// One server of the pair.
pub(crate) struct Node {
    pub(crate) port: u16,
    data: PathBuf,
    log: PathBuf,
}

impl Node {
    pub(crate) fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// `postgres://postgres@127.0.0.1:<port>/<database>`.
    pub(crate) fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// The server's log (the last lines, for a failure message).
    pub(crate) fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().rev().take(30).collect();
        lines.into_iter().rev().collect::<Vec<_>>().join("\n")
    }
}

/// The PostgreSQL binaries and who runs them.
struct PgBin {
    dir: PathBuf,
    as_postgres: bool,
}

impl PgBin {
    fn find() -> PgBin {
        #[allow(clippy::disallowed_methods)] // where the machine keeps its PostgreSQL binaries
        let path = std::env::var_os("PATH").unwrap_or_default();
        let from_path = std::env::split_paths(&path)
            .filter_map(|d| std::fs::canonicalize(d.join("initdb")).ok())
            .filter_map(|p| p.parent().map(Path::to_path_buf))
            .find(|d| d.join("pg_ctl").is_file() && d.join("postgres").is_file());
        let dir = from_path
            .or_else(|| {
                let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
                    .into_iter()
                    .flatten()
                    .flatten()
                    .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path())))
                    .collect();
                versions.sort();
                versions.pop().map(|(_, p)| p.join("bin"))
            })
            .expect(
                "PostgreSQL server binaries (initdb, pg_ctl) on PATH or in /usr/lib/postgresql",
            );
        let uid = Command::new("id").arg("-u").output().expect("id -u");
        PgBin {
            dir,
            as_postgres: String::from_utf8_lossy(&uid.stdout).trim() == "0",
        }
    }

    /// A PostgreSQL binary as a command (as the `postgres` OS user when root).
    fn command(&self, name: &str, args: &[&str]) -> Command {
        let program = self.dir.join(name);
        let mut cmd = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&program);
            c
        } else {
            Command::new(&program)
        };
        cmd.args(args).current_dir("/").stdin(Stdio::null());
        cmd
    }

    /// Runs a PostgreSQL binary; panics unless it succeeds.
    fn run(&self, name: &str, args: &[&str]) -> Output {
        let out = self
            .command(name, args)
            .output()
            .unwrap_or_else(|e| panic!("running {name}: {e}"));
        assert!(
            out.status.success(),
            "{name} {args:?}: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    fn start(&self, node: &Node) {
        let port = format!("-p {}", node.port);
        self.run(
            "pg_ctl",
            &[
                "start",
                "-D",
                path(&node.data),
                "-l",
                path(&node.log),
                "-w",
                "-t",
                "60",
                "-o",
                &port,
            ],
        );
    }
}

fn path(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 path")
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// How the standby replicates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Replication {
    /// A commit returns once the standby has its WAL (`synchronous_standby_names = '*'`).
    Synchronous,
    /// A commit returns at once; the standby follows as fast as it can.
    Asynchronous,
}

impl PgPair {
    /// Creates and starts both servers and waits until the standby streams (as the synchronous
    /// standby, when synchronous).
    pub(crate) fn start(replication: Replication) -> PgPair {
        let bin = PgBin::find();
        let base = std::env::temp_dir().join(format!("freshplan-pair-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir_all(&base).unwrap();
        if bin.as_postgres {
            let status = Command::new("chown")
                .arg("postgres:")
                .arg(&base)
                .status()
                .unwrap();
            assert!(status.success(), "chown {}", base.display());
        }
        let node = |name: &str| Node {
            port: free_port(),
            data: base.join(name),
            log: base.join(format!("{name}.log")),
        };
        let pair = PgPair {
            primary: node("primary"),
            standby: node("standby"),
            bin,
            base,
        };
        pair.bin.run(
            "initdb",
            &[
                "-D",
                path(&pair.primary.data),
                "-U",
                "postgres",
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
            ],
        );
        // A throwaway pair: the WAL reaches the standby before a commit returns (synchronous),
        // but neither server waits for its disk (a killed process loses nothing the kernel has).
        let sync_names = match replication {
            Replication::Synchronous => "'*'",
            Replication::Asynchronous => "''",
        };
        let conf = "\n# the failover test's pair\n\
             listen_addresses = '127.0.0.1'\n\
             unix_socket_directories = ''\n\
             max_connections = 100\n\
             fsync = off\n\
             full_page_writes = off\n\
             wal_level = replica\n\
             max_wal_senders = 4\n\
             hot_standby = on\n\
             synchronous_commit = on\n\
             autovacuum = off\n\
             shared_preload_libraries = 'pg_stat_statements'\n";
        let conf_file = pair.primary.data.join("postgresql.conf");
        let mut text = std::fs::read_to_string(&conf_file).unwrap();
        text.push_str(conf);
        text.push_str(&format!("synchronous_standby_names = {sync_names}\n"));
        write_as(&pair.bin, &conf_file, &text);
        pair.bin.start(&pair.primary);
        let primary_port = pair.primary.port.to_string();
        pair.bin.run(
            "pg_basebackup",
            &[
                "-h",
                "127.0.0.1",
                "-p",
                &primary_port,
                "-U",
                "postgres",
                "-D",
                path(&pair.standby.data),
                "-R",
                "-X",
                "stream",
                "-c",
                "fast",
                "--no-sync",
            ],
        );
        pair.bin.start(&pair.standby);
        let started = Instant::now();
        loop {
            let state = pair.sql(
                &pair.primary,
                "select coalesce(string_agg(state || '/' || sync_state, ','), '') \
                 from pg_stat_replication",
            );
            let expected = match replication {
                Replication::Synchronous => "streaming/sync",
                Replication::Asynchronous => "streaming/async",
            };
            if state == expected {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "the standby does not stream ({replication:?}) after 30 s: {state:?}\n{}",
                pair.standby.log_tail()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        pair
    }

    /// One SQL statement through `psql` on `node` (database `postgres` unless the statement
    /// names another with `\c`); its output unaligned, trimmed.
    pub(crate) fn sql(&self, node: &Node, statement: &str) -> String {
        self.sql_in(node, "postgres", statement)
    }

    /// [`PgPair::sql`] in `database`.
    pub(crate) fn sql_in(&self, node: &Node, database: &str, statement: &str) -> String {
        let psql = if self.bin.dir.join("psql").is_file() {
            self.bin.dir.join("psql")
        } else {
            PathBuf::from("psql")
        };
        let out = Command::new(psql)
            .args([
                "-X",
                "-q",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                "127.0.0.1",
            ])
            .args([
                "-p",
                &node.port.to_string(),
                "-U",
                "postgres",
                "-d",
                database,
            ])
            .args(["-c", statement])
            .stdin(Stdio::null())
            .output()
            .expect("psql");
        assert!(
            out.status.success(),
            "psql {statement}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// Waits until the standby has replayed everything the primary has written so far.
    pub(crate) fn wait_caught_up(&self) {
        let lsn = self.sql(&self.primary, "select pg_current_wal_lsn()::text");
        let started = Instant::now();
        loop {
            let behind = self.sql(
                &self.standby,
                &format!("select pg_wal_lsn_diff('{lsn}', pg_last_wal_replay_lsn()) > 0"),
            );
            if behind == "f" {
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "the standby lags"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Pauses (`true`) or resumes the standby's replay of the WAL it receives.
    pub(crate) fn pause_replay(&self, paused: bool) {
        let f = if paused {
            "pg_wal_replay_pause"
        } else {
            "pg_wal_replay_resume"
        };
        self.sql(&self.standby, &format!("select {f}()"));
    }

    /// Stops the standby (fast shutdown): from now on the primary's commits reach no standby.
    pub(crate) fn stop_standby(&self) {
        self.bin.run(
            "pg_ctl",
            &["stop", "-D", path(&self.standby.data), "-m", "fast", "-w"],
        );
    }

    /// Starts the standby again (after [`PgPair::stop_standby`]).
    pub(crate) fn start_standby(&self) {
        self.bin.start(&self.standby);
    }

    /// Kills the primary like a machine that dies: SIGKILL to the postmaster and every one of
    /// its processes at once (no shutdown, no last WAL sent).
    pub(crate) fn kill_primary(&self) {
        let pid_file = std::fs::read_to_string(self.primary.data.join("postmaster.pid"))
            .expect("the primary's postmaster.pid");
        let postmaster = pid_file.lines().next().unwrap().trim().to_owned();
        let mut pids = vec![postmaster.clone()];
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
                continue;
            };
            // `pid (comm) state ppid …`; comm may hold spaces, so read after the last `)`.
            let ppid = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1));
            if ppid == Some(postmaster.as_str()) {
                pids.push(entry.file_name().to_string_lossy().into_owned());
            }
        }
        // A short-lived backend may be gone already (kill then fails for it); the postmaster
        // must die.
        let _ = Command::new("kill")
            .arg("-KILL")
            .args(&pids)
            .stderr(Stdio::null())
            .status()
            .expect("kill");
        let gone = Instant::now();
        while std::path::Path::new(&format!("/proc/{postmaster}")).exists() {
            assert!(
                gone.elapsed() < Duration::from_secs(10),
                "the primary lives"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Promotes the standby (waits until it accepts writes) and clears the inherited
    /// `synchronous_standby_names`, so its commits do not wait for a standby it does not have.
    pub(crate) fn promote(&self) {
        self.bin.run(
            "pg_ctl",
            &["promote", "-D", path(&self.standby.data), "-w", "-t", "60"],
        );
        self.sql(
            &self.standby,
            "alter system set synchronous_standby_names = ''",
        );
        self.sql(&self.standby, "select pg_reload_conf()");
        assert_eq!(self.sql(&self.standby, "select pg_is_in_recovery()"), "f");
    }
}

/// Writes `path` (a file of the cluster) so that its owner stays the cluster's.
fn write_as(bin: &PgBin, file: &Path, text: &str) {
    std::fs::write(file, text).unwrap();
    if bin.as_postgres {
        let status = Command::new("chown")
            .arg("postgres:")
            .arg(file)
            .status()
            .unwrap();
        assert!(status.success());
    }
}

impl Drop for PgPair {
    fn drop(&mut self) {
        for node in [&self.primary, &self.standby] {
            if node.data.join("postmaster.pid").exists() {
                let _ = self
                    .bin
                    .command(
                        "pg_ctl",
                        &["stop", "-D", path(&node.data), "-m", "immediate", "-w"],
                    )
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status();
            }
        }
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.base);
        } else {
            eprintln!(
                "the pair's clusters and logs are kept in {}",
                self.base.display()
            );
        }
    }
}
