//! Machine tools the project needs (promtool, Chromium, …), installed from Debian's packages
//! when missing, so a fresh machine needs no manual step.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, Result, bail};

/// The path of `binary` on PATH (or among `extra` absolute paths), installing the Debian
/// `package` with apt-get when it is missing. Fails with one clear message naming the package
/// when it cannot be installed (not root and no sudo, or no package source).
pub(crate) fn ensure(binary: &str, package: &str) -> Result<PathBuf> {
    if let Some(path) = which(binary) {
        return Ok(path);
    }
    println!("xtask: {binary} is missing; installing the Debian package `{package}`");
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.trim_ascii() == b"0");
    let apt = |args: &[&str]| -> Result<bool> {
        let mut command = if root {
            Command::new("apt-get")
        } else {
            let mut c = Command::new("sudo");
            c.args(["-n", "apt-get"]);
            c
        };
        command
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdin(std::process::Stdio::null());
        Ok(command
            .status()
            .with_context(|| format!("running apt-get {args:?}"))?
            .success())
    };
    let installed = apt(&["-qq", "update"])?
        && apt(&["-y", "-qq", "--no-install-recommends", "install", package])?;
    match which(binary) {
        Some(path) if installed => Ok(path),
        _ => bail!(
            "{binary} is needed and could not be installed: install the Debian package `{package}` \
             (apt-get install {package})"
        ),
    }
}

fn which(binary: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(binary))
        .find(|candidate| candidate.is_file())
}
