//! Project-local Python virtual environments under `.freshplan/` (gitignored), each installed
//! from a requirements file pinned with hashes and reused while it holds exactly that file's
//! packages: schemathesis ([`crate::schemathesis`]) and the manifest validators
//! ([`crate::manifests`]). Only Python 3 with its `venv` module and PyPI are needed.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, ensure};

/// The copy of the requirements file an environment was installed from.
const STAMP: &str = "freshplan-requirements.txt";

/// A virtual environment and what it holds.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Venv {
    /// The environment's folder, relative to the workspace root.
    pub(crate) dir: &'static str,
    /// The pinned, hash-locked requirements (`pip-compile --generate-hashes`), relative to the
    /// workspace root.
    pub(crate) requirements: &'static str,
    /// What it is for, for the log line.
    pub(crate) purpose: &'static str,
}

impl Venv {
    /// The environment's `bin` folder, with `executables` in it, installing the pinned
    /// requirements first unless the environment already holds exactly them (rebuilt when the
    /// requirements file changes).
    pub(crate) fn ensure(&self, workspace_root: &Path, executables: &[&str]) -> Result<PathBuf> {
        let venv = workspace_root.join(self.dir);
        let bin = venv.join("bin");
        let requirements = workspace_root.join(self.requirements);
        let wanted = fs::read(&requirements)
            .with_context(|| format!("reading {}", requirements.display()))?;
        let stamp = venv.join(STAMP);
        let complete = || {
            std::iter::once("python")
                .chain(executables.iter().copied())
                .all(|name| bin.join(name).is_file())
        };
        if complete() && fs::read(&stamp).ok().as_deref() == Some(wanted.as_slice()) {
            return Ok(bin);
        }
        let python3 = crate::tools::ensure("python3", "python3")?;
        println!(
            "xtask: installing {} ({}) into {}",
            self.purpose,
            self.requirements,
            venv.display()
        );
        let _ = fs::remove_file(&stamp);
        let status = Command::new(&python3)
            .args(["-m", "venv", "--clear"])
            .arg(&venv)
            .stdin(Stdio::null())
            .status()
            .with_context(|| format!("running {} -m venv", python3.display()))?;
        ensure!(
            status.success(),
            "`python3 -m venv {}` failed: Python's venv module is needed (Debian package \
             `python3-venv`)",
            venv.display()
        );
        let status = Command::new(bin.join("python"))
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
            ])
            .args([
                "--require-hashes",
                "--no-deps",
                "--only-binary",
                ":all:",
                "-r",
            ])
            .arg(&requirements)
            .stdin(Stdio::null())
            .status()
            .context("running pip install")?;
        ensure!(
            status.success(),
            "pip could not install {} into {}",
            self.requirements,
            venv.display()
        );
        fs::write(&stamp, &wanted).with_context(|| format!("writing {}", stamp.display()))?;
        ensure!(
            complete(),
            "{} is incomplete after the install (expected python and {executables:?} in {})",
            venv.display(),
            bin.display()
        );
        Ok(bin)
    }
}
