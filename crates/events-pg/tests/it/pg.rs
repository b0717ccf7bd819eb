//! A throwaway private PostgreSQL server for the tests that restart the server: a cluster in a
//! temporary folder, on a free port, from the machine's own binaries (`/usr/lib/postgresql/*/bin`
//! or `PATH`, as `xtask/src/pg.rs` finds them), run as the `postgres` OS user when the tests run
//! as root (PostgreSQL refuses to run as root). Stopped and removed on drop.

use std::ffi::OsString;
use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

static SEQ: AtomicU32 = AtomicU32::new(0);

pub(crate) struct PrivatePg {
    bin: PathBuf,
    base: PathBuf,
    data: PathBuf,
    port: u16,
    as_postgres: bool,
}

fn find_bin() -> PathBuf {
    let complete = |dir: &Path| {
        ["initdb", "pg_ctl", "postgres"]
            .iter()
            .all(|b| dir.join(b).is_file())
    };
    #[allow(clippy::disallowed_methods)] // tests find the machine's PostgreSQL like xtask does
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            if let Ok(initdb) = std::fs::canonicalize(dir.join("initdb"))
                && let Some(bin) = initdb.parent()
                && complete(bin)
            {
                return bin.to_owned();
            }
        }
    }
    let mut versioned: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let major = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            complete(&bin).then_some((major, bin))
        })
        .collect();
    versioned.sort();
    versioned
        .pop()
        .map(|(_, b)| b)
        .expect("PostgreSQL server binaries (initdb, pg_ctl, postgres): apt-get install postgresql")
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .expect("a free port")
        .local_addr()
        .expect("address")
        .port()
}

impl PrivatePg {
    /// Initialises and starts a new cluster.
    pub(crate) fn start() -> PrivatePg {
        let bin = find_bin();
        let base = std::env::temp_dir().join(format!(
            "freshplan-events-pg-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&base);
        std::fs::create_dir_all(&base).expect("temp dir");
        let as_postgres = is_root();
        let pg = PrivatePg {
            data: base.join("data"),
            bin,
            base,
            port: free_port(),
            as_postgres,
        };
        if as_postgres {
            let ok = Command::new("chown")
                .arg("-R")
                .arg("postgres:")
                .arg(&pg.base)
                .status()
                .expect("chown")
                .success();
            assert!(ok, "chown the test cluster's folder to postgres");
        }
        let out = pg.run(
            "initdb",
            &[
                "-D".into(),
                pg.data.clone().into(),
                "-U".into(),
                "postgres".into(),
                "--auth=trust".into(),
                "--encoding=UTF8".into(),
                "--locale=C".into(),
                "--no-sync".into(),
            ],
        );
        assert!(
            out.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        pg.pg_ctl_start();
        pg
    }

    fn run(&self, program: &str, args: &[OsString]) -> Output {
        let program = self.bin.join(program);
        let mut command = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&program);
            c
        } else {
            Command::new(&program)
        };
        command
            .args(args)
            .current_dir("/")
            .stdin(Stdio::null())
            .output()
            .expect("run a PostgreSQL binary")
    }

    fn pg_ctl_start(&self) {
        let out = self.run(
            "pg_ctl",
            &[
                "start".into(),
                "-D".into(),
                self.data.clone().into(),
                "-l".into(),
                self.base.join("log").into(),
                "-w".into(),
                "-t".into(),
                "60".into(),
                "-o".into(),
                format!(
                    "-p {} -k '' -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=50",
                    self.port
                )
                .into(),
            ],
        );
        assert!(
            out.status.success(),
            "pg_ctl start: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(self.base.join("log")).unwrap_or_default()
        );
    }

    fn pg_ctl_stop(&self, mode: &str) {
        let _ = self.run(
            "pg_ctl",
            &[
                "stop".into(),
                "-D".into(),
                self.data.clone().into(),
                "-m".into(),
                mode.into(),
                "-w".into(),
            ],
        );
    }

    /// The superuser URL of its `postgres` database.
    pub(crate) fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Stops the server (fast: terminates every connection) and starts it again on the same port.
    pub(crate) fn restart(&self) {
        self.pg_ctl_stop("fast");
        self.pg_ctl_start();
    }
}

impl Drop for PrivatePg {
    fn drop(&mut self) {
        self.pg_ctl_stop("immediate");
        let _ = std::fs::remove_dir_all(&self.base);
    }
}
