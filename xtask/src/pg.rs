//! PostgreSQL for `cargo xtask test`, `demo` and `bench`.
//!
//! [`ensure_postgres`] finds a server in this order (`demo` skips 2: it uses `DATABASE_URL` or
//! calls [`start_private`] directly, so it never fills a shared server with demo data):
//! 1. `DATABASE_URL`, when set;
//! 2. a server accepting connections on 127.0.0.1:5432 (`postgres://postgres@127.0.0.1:5432/postgres`);
//! 3. a private server started from the machine's own PostgreSQL binaries, with its cluster in
//!    `<workspace>/.freshplan/pg` (gitignored), trust authentication, listening on 127.0.0.1 only.
//!
//! `FRESHPLAN_PG=private` skips 1 and 2. The private server is stopped when the [`PgHandle`] is
//! dropped. When xtask runs as root, the cluster belongs to the `postgres` OS user (PostgreSQL
//! refuses to run as root) and every PostgreSQL binary runs through `runuser`/`su`.

use std::ffi::OsString;
use std::fs;
use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};

/// Port of the private server unless it is taken.
const PRIVATE_PORT: u16 = 55432;
/// The OS user that owns the private cluster when xtask runs as root.
const PG_OS_USER: &str = "postgres";
/// Longest unix socket path the kernel accepts (`sun_path` is 108 bytes including the NUL).
const MAX_SOCKET_PATH: usize = 107;

/// A PostgreSQL server to use; a private one started by [`ensure_postgres`] stops on drop.
#[derive(Debug)]
pub(crate) struct PgHandle {
    url: String,
    private: Option<PrivateServer>,
}

impl PgHandle {
    /// Connection URL of a database on the server (superuser, no password).
    pub(crate) fn url(&self) -> &str {
        &self.url
    }

    /// Whether dropping the handle stops the server (it was started here, not reused).
    pub(crate) fn stops_on_drop(&self) -> bool {
        self.private.is_some()
    }
}

impl Drop for PgHandle {
    fn drop(&mut self) {
        if let Some(server) = &self.private {
            server.stop();
        }
    }
}

/// Which server [`ensure_postgres`] may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// `DATABASE_URL`, then 127.0.0.1:5432, then a private server.
    Auto,
    /// Always the private server.
    Private,
}

/// Returns a running PostgreSQL server (see the module docs for the order of choices).
pub(crate) fn ensure_postgres(workspace_root: &Path) -> Result<PgHandle> {
    let mode = match std::env::var("FRESHPLAN_PG").as_deref() {
        Err(_) | Ok("" | "auto") => Mode::Auto,
        Ok("private") => Mode::Private,
        Ok(other) => bail!("FRESHPLAN_PG must be `auto` or `private`, not `{other}`"),
    };
    if mode == Mode::Auto {
        if let Ok(url) = std::env::var("DATABASE_URL")
            && !url.is_empty()
        {
            println!("xtask: using PostgreSQL from DATABASE_URL");
            return Ok(PgHandle { url, private: None });
        }
        if accepts_connections(5432) {
            println!("xtask: using the PostgreSQL server on 127.0.0.1:5432");
            return Ok(PgHandle {
                url: "postgres://postgres@127.0.0.1:5432/postgres".to_owned(),
                private: None,
            });
        }
    }
    start_private(workspace_root)
}

/// Whether a PostgreSQL server (or at least something) accepts connections on 127.0.0.1:`port`.
fn accepts_connections(port: u16) -> bool {
    let pg_isready = Command::new("pg_isready")
        .args(["-q", "-h", "127.0.0.1", "-p", &port.to_string(), "-t", "3"])
        .stdin(Stdio::null())
        .status();
    match pg_isready {
        Ok(status) => status.success(),
        // No client tools: a TCP connect is the next best thing.
        Err(_) => TcpStream::connect_timeout(
            &SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
            Duration::from_secs(2),
        )
        .is_ok(),
    }
}

/// A server started from `<workspace>/.freshplan/pg`.
#[derive(Debug)]
struct PrivateServer {
    runner: Runner,
    pg_ctl: PathBuf,
    data_dir: PathBuf,
}

impl PrivateServer {
    fn stop(&self) {
        println!("xtask: stopping the private PostgreSQL server");
        let result = self.runner.output(
            &self.pg_ctl,
            &[
                "stop".into(),
                "-D".into(),
                self.data_dir.clone().into(),
                "-m".into(),
                "fast".into(),
                "-w".into(),
            ],
        );
        match result {
            Ok(out) if out.status.success() => {}
            Ok(out) => eprintln!(
                "xtask: stopping PostgreSQL failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ),
            Err(err) => eprintln!("xtask: stopping PostgreSQL failed: {err:#}"),
        }
    }
}

/// Starts (or reuses, when one already runs there) the private server of `<workspace>/.freshplan/pg`.
pub(crate) fn start_private(workspace_root: &Path) -> Result<PgHandle> {
    start_cluster(workspace_root, "pg", "")
}

/// Starts (or reuses) the private server of `<workspace>/.freshplan/<name>` with further server
/// options (`-c name=value …`, given to `postgres` at start, so the cluster's files stay as
/// `initdb` made them).
pub(crate) fn start_cluster(workspace_root: &Path, name: &str, options: &str) -> Result<PgHandle> {
    let bin = find_pg_bin()?;
    let initdb = bin.join("initdb");
    let pg_ctl = bin.join("pg_ctl");
    let runner = Runner::detect()?;

    let base = cluster_base(workspace_root, name, &runner)?;
    let data_dir = base.join("data");
    let socket_dir = base.join("run");
    let log_file = base.join("postgres.log");
    fs::create_dir_all(&socket_dir)
        .with_context(|| format!("creating {}", socket_dir.display()))?;
    runner.hand_over(&base)?;

    let binary_major = major_version(&runner.output(&initdb, &["--version".into()])?)?;
    let version_file = data_dir.join("PG_VERSION");
    if version_file.exists() {
        let cluster_major = fs::read_to_string(&version_file)?.trim().to_owned();
        if cluster_major != binary_major {
            println!(
                "xtask: the private cluster is PostgreSQL {cluster_major} but the binaries are \
                 {binary_major}; recreating {}",
                data_dir.display()
            );
            fs::remove_dir_all(&data_dir)?;
        }
    }
    if !version_file.exists() {
        init_cluster(&runner, &initdb, &data_dir)?;
    }

    // A server left running from this folder (an earlier xtask that was killed, or a `demo`
    // running next to this command) is reused and left running: it is not ours to stop.
    let status = runner.output(
        &pg_ctl,
        &["status".into(), "-D".into(), data_dir.clone().into()],
    )?;
    if status.status.success()
        && let Some(port) = running_port(&data_dir)
    {
        println!(
            "xtask: reusing the private PostgreSQL server already running on port {port} \
             (stop it with `{} stop -D {}`)",
            pg_ctl.display(),
            data_dir.display()
        );
        return Ok(PgHandle {
            url: private_url(port),
            private: None,
        });
    }

    let port = free_port()?;
    let socket_probe = socket_dir.join(format!(".s.PGSQL.{port}"));
    // Unix sockets are a convenience for `psql -h <dir>`; clients connect over TCP.
    let socket_dir_option = if socket_probe.as_os_str().len() <= MAX_SOCKET_PATH {
        shell_quote(&socket_dir.to_string_lossy())
    } else {
        "''".to_owned()
    };
    println!(
        "xtask: starting a private PostgreSQL {binary_major} on 127.0.0.1:{port} (cluster {}, log {})",
        data_dir.display(),
        log_file.display()
    );
    let started = runner.output(
        &pg_ctl,
        &[
            "start".into(),
            "-D".into(),
            data_dir.clone().into(),
            "-l".into(),
            log_file.clone().into(),
            "-w".into(),
            "-t".into(),
            "60".into(),
            "-o".into(),
            format!("-p {port} -k {socket_dir_option} {options}").into(),
        ],
    )?;
    if !started.status.success() {
        let log = fs::read_to_string(&log_file).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(20).collect();
        bail!(
            "pg_ctl start failed: {}\n{}\nlast lines of {}:\n{}",
            String::from_utf8_lossy(&started.stdout).trim(),
            String::from_utf8_lossy(&started.stderr).trim(),
            log_file.display(),
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        );
    }
    let handle = PgHandle {
        url: private_url(port),
        private: Some(PrivateServer {
            runner,
            pg_ctl,
            data_dir,
        }),
    };
    if !accepts_connections(port) {
        bail!(
            "the private PostgreSQL server started but does not accept connections on port {port}"
        );
    }
    Ok(handle)
}

fn private_url(port: u16) -> String {
    format!("postgres://postgres@127.0.0.1:{port}/postgres")
}

fn init_cluster(runner: &Runner, initdb: &Path, data_dir: &Path) -> Result<()> {
    println!(
        "xtask: creating a private PostgreSQL cluster in {}",
        data_dir.display()
    );
    let out = runner.output(
        initdb,
        &[
            "-D".into(),
            data_dir.into(),
            "-U".into(),
            "postgres".into(),
            "--auth=trust".into(),
            "--encoding=UTF8".into(),
            "--locale=C".into(),
            "--no-sync".into(),
        ],
    )?;
    if !out.status.success() {
        bail!(
            "initdb failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout).trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    // A throwaway cluster for development and tests: durability is not worth the time, and
    // nextest runs many `#[sqlx::test]`s at once, each with its own pool.
    let mut conf = fs::OpenOptions::new()
        .append(true)
        .open(data_dir.join("postgresql.conf"))
        .context("opening postgresql.conf")?;
    conf.write_all(
        b"\n# added by cargo xtask: a throwaway development/test cluster\n\
          listen_addresses = '127.0.0.1'\n\
          max_connections = 300\n\
          fsync = off\n\
          synchronous_commit = off\n\
          full_page_writes = off\n",
    )?;
    Ok(())
}

/// `<workspace>/.freshplan/<name>`, or a folder under the temporary directory when the `postgres`
/// OS user cannot reach the workspace (a checkout under `/root`, say).
fn cluster_base(workspace_root: &Path, name: &str, runner: &Runner) -> Result<PathBuf> {
    let base = workspace_root.join(".freshplan").join(name);
    fs::create_dir_all(&base).with_context(|| format!("creating {}", base.display()))?;
    if runner.can_reach(&workspace_root.join(".freshplan"))? {
        return Ok(base);
    }
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    workspace_root.hash(&mut hasher);
    let fallback = std::env::temp_dir().join(format!("freshplan-{name}-{:016x}", hasher.finish()));
    println!(
        "xtask: the `{PG_OS_USER}` user cannot reach {}; keeping the private cluster in {}",
        base.display(),
        fallback.display()
    );
    fs::create_dir_all(&fallback).with_context(|| format!("creating {}", fallback.display()))?;
    Ok(fallback)
}

/// The port of the server running on `data_dir`, from line 4 of `postmaster.pid`.
fn running_port(data_dir: &Path) -> Option<u16> {
    fs::read_to_string(data_dir.join("postmaster.pid"))
        .ok()?
        .lines()
        .nth(3)?
        .trim()
        .parse()
        .ok()
}

/// 55432 when it is free, else a port the kernel hands out.
fn free_port() -> Result<u16> {
    if TcpListener::bind((Ipv4Addr::LOCALHOST, PRIVATE_PORT)).is_ok() {
        return Ok(PRIVATE_PORT);
    }
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("finding a free port")?;
    Ok(listener.local_addr()?.port())
}

/// `15` from `initdb (PostgreSQL) 15.19 (Debian 15.19-0+deb12u1)`.
fn major_version(output: &Output) -> Result<String> {
    let text = String::from_utf8_lossy(&output.stdout);
    let version = text
        .split_whitespace()
        .find(|word| word.starts_with(|c: char| c.is_ascii_digit()))
        .with_context(|| format!("no version in `initdb --version` output: {text}"))?;
    Ok(version
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .unwrap_or(version)
        .to_owned())
}

/// The directory holding `initdb`, `pg_ctl` and `postgres`: from `PATH` (symlinks resolved,
/// since Debian links them from elsewhere), else the highest `/usr/lib/postgresql/*/bin`.
fn find_pg_bin() -> Result<PathBuf> {
    find_pg_bin_in(std::env::var_os("PATH"), Path::new("/usr/lib/postgresql"))
}

fn find_pg_bin_in(path: Option<OsString>, versioned_root: &Path) -> Result<PathBuf> {
    let complete = |dir: &Path| {
        ["initdb", "pg_ctl", "postgres"]
            .iter()
            .all(|b| dir.join(b).is_file())
    };
    if let Some(path) = path {
        for dir in std::env::split_paths(&path) {
            let Ok(initdb) = fs::canonicalize(dir.join("initdb")) else {
                continue;
            };
            if let Some(bin) = initdb.parent()
                && complete(bin)
            {
                return Ok(bin.to_owned());
            }
        }
    }
    let mut versioned: Vec<(u32, PathBuf)> = fs::read_dir(versioned_root)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let major = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            complete(&bin).then_some((major, bin))
        })
        .collect();
    versioned.sort();
    match versioned.pop() {
        Some((_, bin)) => Ok(bin),
        None => bail!(
            "no PostgreSQL server binaries (initdb, pg_ctl, postgres) on PATH or under \
             {}/*/bin to start a private server.\n\
             Install the Debian package `postgresql` (`apt-get install postgresql`), or set \
             DATABASE_URL to a PostgreSQL server.",
            versioned_root.display()
        ),
    }
}

/// Runs PostgreSQL binaries, as the `postgres` OS user when xtask runs as root.
#[derive(Debug, Clone, Copy)]
enum Runner {
    /// Not root: run directly.
    Direct,
    /// Root: `runuser -u postgres -- …`.
    Runuser,
    /// Root without `runuser`: `su -s /bin/sh postgres -c '…'`.
    Su,
}

impl Runner {
    fn detect() -> Result<Runner> {
        let uid = Command::new("id")
            .arg("-u")
            .stdin(Stdio::null())
            .output()
            .context("running `id -u`")?;
        if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
            return Ok(Runner::Direct);
        }
        let user = Command::new("id")
            .arg("-u")
            .arg(PG_OS_USER)
            .stdin(Stdio::null())
            .output()
            .context("running `id -u postgres`")?;
        if !user.status.success() {
            bail!(
                "running as root, and PostgreSQL refuses to run as root, but there is no \
                 `{PG_OS_USER}` OS user to run it as. Install the Debian package `postgresql` \
                 (which creates it) or run as an ordinary user."
            );
        }
        let has_runuser = Command::new("runuser")
            .arg("--version")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        Ok(if has_runuser {
            Runner::Runuser
        } else {
            Runner::Su
        })
    }

    fn command(self, program: &Path, args: &[OsString]) -> Command {
        let mut command = match self {
            Runner::Direct => {
                let mut command = Command::new(program);
                command.args(args);
                command
            }
            Runner::Runuser => {
                let mut command = Command::new("runuser");
                command
                    .args(["-u", PG_OS_USER, "--"])
                    .arg(program)
                    .args(args);
                command
            }
            Runner::Su => {
                let line = std::iter::once(program.as_os_str())
                    .chain(args.iter().map(OsString::as_os_str))
                    .map(|a| shell_quote(&a.to_string_lossy()))
                    .collect::<Vec<_>>()
                    .join(" ");
                let mut command = Command::new("su");
                command.args(["-s", "/bin/sh", PG_OS_USER, "-c", &line]);
                command
            }
        };
        // The postgres user may not be able to enter the caller's working directory.
        command.current_dir("/").stdin(Stdio::null());
        command
    }

    fn output(self, program: &Path, args: &[OsString]) -> Result<Output> {
        self.command(program, args)
            .output()
            .with_context(|| format!("running {}", program.display()))
    }

    /// Gives `dir` (recursively) to the `postgres` user when running as root.
    fn hand_over(self, dir: &Path) -> Result<()> {
        if matches!(self, Runner::Direct) {
            return Ok(());
        }
        let status = Command::new("chown")
            .arg("-R")
            .arg(format!("{PG_OS_USER}:"))
            .arg(dir)
            .stdin(Stdio::null())
            .status()
            .context("running chown")?;
        if !status.success() {
            bail!("chown -R {PG_OS_USER}: {} failed", dir.display());
        }
        Ok(())
    }

    /// Whether the user that runs PostgreSQL can enter `dir` (it gets write access by `hand_over`).
    fn can_reach(self, dir: &Path) -> Result<bool> {
        if matches!(self, Runner::Direct) {
            return Ok(true);
        }
        Ok(self
            .command(Path::new("/usr/bin/test"), &["-x".into(), dir.into()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .context("running test -x as the postgres user")?
            .success())
    }
}

/// Quotes `s` for a POSIX shell.
fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn major_version_of_debian_and_upstream_builds() {
        let output = |text: &str| Output {
            status: Command::new("true").status().expect("`true` runs"),
            stdout: text.as_bytes().to_vec(),
            stderr: Vec::new(),
        };
        assert_eq!(
            major_version(&output(
                "initdb (PostgreSQL) 15.19 (Debian 15.19-0+deb12u1)\n"
            ))
            .expect("a version"),
            "15"
        );
        assert_eq!(
            major_version(&output("initdb (PostgreSQL) 17devel\n")).expect("a version"),
            "17"
        );
        assert!(major_version(&output("nothing here")).is_err());
    }

    #[test]
    fn missing_binaries_name_the_debian_package() {
        let empty = std::env::temp_dir().join(format!("xtask-pg-empty-{}", std::process::id()));
        fs::create_dir_all(&empty).expect("temp dir");
        let err = find_pg_bin_in(Some(empty.clone().into()), &empty)
            .expect_err("no binaries in an empty folder");
        fs::remove_dir_all(&empty).expect("cleanup");
        let message = err.to_string();
        assert!(message.contains("`postgresql`"), "{message}");
        assert!(message.contains("apt-get install postgresql"), "{message}");
    }

    #[test]
    fn binaries_from_the_highest_versioned_folder() {
        let root = std::env::temp_dir().join(format!("xtask-pg-versions-{}", std::process::id()));
        for major in ["9", "13", "16"] {
            let bin = root.join(major).join("bin");
            fs::create_dir_all(&bin).expect("temp dir");
            for name in ["initdb", "pg_ctl", "postgres"] {
                fs::write(bin.join(name), "").expect("fake binary");
            }
        }
        fs::create_dir_all(root.join("17").join("bin")).expect("incomplete version");
        let found = find_pg_bin_in(None, &root).expect("a complete version");
        assert_eq!(found, root.join("16").join("bin"));
        fs::remove_dir_all(&root).expect("cleanup");
    }

    #[test]
    fn shell_quoting() {
        assert_eq!(shell_quote("/a b/c"), "'/a b/c'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
    }

    #[test]
    fn port_from_postmaster_pid() {
        let dir = std::env::temp_dir().join(format!("xtask-pg-test-{}", std::process::id()));
        fs::create_dir_all(&dir).expect("temp dir");
        fs::write(
            dir.join("postmaster.pid"),
            "4242\n/data\n1700000000\n55432\n/run\n127.0.0.1\n",
        )
        .expect("write pid file");
        assert_eq!(running_port(&dir), Some(55432));
        fs::remove_dir_all(&dir).expect("cleanup");
        assert_eq!(running_port(&dir), None);
    }
}
