//! Configuration from the environment (SPEC §11). The only place that reads it.

use anyhow::Context;

/// The service configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// `DATABASE_URL`.
    pub database_url: String,
    /// `FRESHPLAN_BIND` (default `127.0.0.1:8080`).
    pub bind: String,
    /// `FRESHPLAN_AUTH_HS256_SECRET`.
    pub hs256_secret: Option<String>,
    /// `FRESHPLAN_AUTH_JWKS`: a JWKS file path, inline JSON starting with `{`, or an `http://` /
    /// `https://` URL (fetched at start, refetched when a token names an unknown key id).
    pub jwks: Option<String>,
    /// `FRESHPLAN_AUTH_ISSUER`.
    pub issuer: Option<String>,
    /// `FRESHPLAN_AUTH_AUDIENCE`.
    pub audience: Option<String>,
    /// `FRESHPLAN_POOL_SIZE` (default 16).
    pub pool_size: u32,
    /// `FRESHPLAN_LOG_FORMAT` = `text` | `json`.
    pub log_json: bool,
    /// `FRESHPLAN_WORKERS` (default: the number of cores).
    pub workers: Option<usize>,
    /// `FRESHPLAN_METRICS` (default on): record the SPEC §10 metrics and serve `/metrics`. Off
    /// only to measure what the metrics cost.
    pub metrics: bool,
}

fn var(name: &str) -> Option<String> {
    #[allow(clippy::disallowed_methods)] // app is where configuration is read
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn flag(name: &str, default: bool) -> anyhow::Result<bool> {
    match var(name).map(|v| v.trim().to_ascii_lowercase()) {
        None => Ok(default),
        Some(v) if ["1", "true", "on", "yes"].contains(&v.as_str()) => Ok(true),
        Some(v) if ["0", "false", "off", "no"].contains(&v.as_str()) => Ok(false),
        Some(v) => anyhow::bail!("{name}={v}: expected true or false"),
    }
}

impl Config {
    /// The defaults of SPEC §11 for `database_url`, with no authentication configured (an
    /// embedder or a test sets what it needs).
    pub fn with_defaults(database_url: impl Into<String>) -> Config {
        Config {
            database_url: database_url.into(),
            bind: "127.0.0.1:8080".into(),
            hs256_secret: None,
            jwks: None,
            issuer: None,
            audience: None,
            pool_size: 16,
            log_json: false,
            workers: None,
            metrics: true,
        }
    }

    /// Reads the environment.
    pub fn from_env() -> anyhow::Result<Config> {
        Ok(Config {
            database_url: var("DATABASE_URL").context(
                "DATABASE_URL is not set (cargo xtask demo starts a private PostgreSQL for you)",
            )?,
            bind: var("FRESHPLAN_BIND").unwrap_or_else(|| "127.0.0.1:8080".into()),
            hs256_secret: var("FRESHPLAN_AUTH_HS256_SECRET"),
            jwks: var("FRESHPLAN_AUTH_JWKS"),
            issuer: var("FRESHPLAN_AUTH_ISSUER"),
            audience: var("FRESHPLAN_AUTH_AUDIENCE"),
            pool_size: var("FRESHPLAN_POOL_SIZE")
                .map(|v| v.parse())
                .transpose()
                .context("FRESHPLAN_POOL_SIZE")?
                .unwrap_or(16),
            log_json: var("FRESHPLAN_LOG_FORMAT").is_some_and(|v| v.eq_ignore_ascii_case("json")),
            workers: var("FRESHPLAN_WORKERS")
                .map(|v| v.parse())
                .transpose()
                .context("FRESHPLAN_WORKERS")?,
            metrics: flag("FRESHPLAN_METRICS", true)?,
        })
    }

    /// The JWKS source for [`crate::auth::Authenticator::new`]: inline JSON as given, the file's
    /// text when a path was given, or the URL as given (the authenticator fetches it, and fetches
    /// it again on key rotation).
    pub fn jwks_document(&self) -> anyhow::Result<Option<String>> {
        match &self.jwks {
            None => Ok(None),
            Some(v) if v.trim_start().starts_with('{') => Ok(Some(v.clone())),
            Some(url) if crate::auth::is_jwks_url(url) => Ok(Some(url.trim().to_owned())),
            Some(path) => Ok(Some(
                std::fs::read_to_string(path)
                    .with_context(|| format!("reading JWKS file {path}"))?,
            )),
        }
    }
}
