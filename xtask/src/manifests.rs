//! Offline validation of the Kubernetes manifests under `deploy/` (`cargo xtask manifests`, and
//! a step of `cargo xtask test`; docs/ops/deploy.md, "Validation").
//!
//! The validators are Python packages pinned with hashes in `xtask/manifests/requirements.txt`
//! — the Kubernetes OpenAPI schemas (`kubernetes-validate`) and the KEDA and Prometheus Operator
//! models (`cloudcoil-models-*`) — installed into the project-local virtual environment
//! `.freshplan/venv-manifests` ([`crate::venv`]); `xtask/manifests/validate.py` renders every
//! kustomization (the real kustomize when the machine has one, and its own renderer of the
//! subset used), validates every document strictly and cross-checks the manifests against the
//! code, after a self-check that broken manifests are rejected. No network, no cluster.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail};

use crate::venv::Venv;

/// The validators' virtual environment.
const VENV: Venv = Venv {
    dir: ".freshplan/venv-manifests",
    requirements: "xtask/manifests/requirements.txt",
    purpose: "the manifest validators",
};
/// The validation script.
const SCRIPT: &str = "xtask/manifests/validate.py";

/// Validates `deploy/`: installs the validators when needed, then runs [`SCRIPT`], which prints
/// what it validated and every problem. Fails when it finds any.
pub(crate) fn check(workspace_root: &Path) -> Result<()> {
    let started = Instant::now();
    let bin = VENV.ensure(workspace_root, &[])?;
    let status = Command::new(bin.join("python"))
        .arg(workspace_root.join(SCRIPT))
        .arg(workspace_root)
        .current_dir(workspace_root)
        .stdin(Stdio::null())
        .status()
        .with_context(|| format!("running {SCRIPT}"))?;
    println!(
        "xtask: manifest validation took {:.1} s",
        started.elapsed().as_secs_f64()
    );
    if !status.success() {
        bail!("the manifests under deploy/ are not valid ({SCRIPT} {status})");
    }
    Ok(())
}
