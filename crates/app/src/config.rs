//! Configuration from the environment (SPEC §11). The only place that reads it.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use time::OffsetDateTime;

use freshplan_kernel::{Clock, SystemClock};
use freshplan_leads::personal::RetentionPolicy;

/// Default of [`Config::events_retention`]: 7 days (SPEC §7.5).
pub const DEFAULT_EVENTS_RETENTION: Duration = Duration::from_secs(7 * 24 * 60 * 60);

/// Default of [`Config::sse_keep_alive`].
pub const DEFAULT_SSE_KEEP_ALIVE: Duration = crate::sse::KEEP_ALIVE;

/// Default of [`Config::sse_buffer`].
pub const DEFAULT_SSE_BUFFER: usize = 1024;

/// Default of [`Config::followup_cron`]: every 15 minutes (SPEC §11).
pub const DEFAULT_FOLLOWUP_CRON: &str = "0 */15 * * * *";

/// Default of [`Config::sweep_cron`]: every 5 minutes, at second 30 (off the follow-up run's
/// full minutes; docs/decisions/0007).
pub const DEFAULT_SWEEP_CRON: &str = "30 */5 * * * *";

/// Default of [`Config::mail_poll`].
pub const DEFAULT_MAIL_POLL: Duration = Duration::from_secs(10);

/// `FRESHPLAN_FOLLOWUP_CLOCK_OFFSET`: shifts the follow-up clock (development only).
pub const FOLLOWUP_CLOCK_OFFSET: &str = "FRESHPLAN_FOLLOWUP_CLOCK_OFFSET";

/// The largest [`FOLLOWUP_CLOCK_OFFSET`] either way: a year.
pub const MAX_FOLLOWUP_CLOCK_OFFSET: time::Duration = time::Duration::days(366);

/// The clock the follow-up side plans, records, counts "today" and delivers its mail with: the
/// wall clock unless an embedder or a test sets another ([`Config::followup_clock`]). Follow-ups
/// go out only inside business hours (SPEC §6), so a test that sends mail at any hour runs this
/// clock at a business hour. The environment can only shift the wall clock by a fixed offset,
/// and only in development ([`FOLLOWUP_CLOCK_OFFSET`], docs/decisions/0007).
#[derive(Clone, Default)]
pub struct FollowUpClock {
    clock: Option<Arc<dyn Clock>>,
    /// Set when `clock` is the wall clock shifted by this.
    offset: Option<time::Duration>,
}

impl FollowUpClock {
    /// A follow-up clock other than the wall clock.
    pub fn new(clock: Arc<dyn Clock>) -> FollowUpClock {
        FollowUpClock {
            clock: Some(clock),
            offset: None,
        }
    }

    /// The wall clock shifted by `offset` ([`FOLLOWUP_CLOCK_OFFSET`]).
    pub fn shifted(offset: time::Duration) -> FollowUpClock {
        FollowUpClock {
            clock: Some(Arc::new(ShiftedClock(offset))),
            offset: Some(offset),
        }
    }

    /// The offset from the wall clock, when the clock is [`FollowUpClock::shifted`].
    pub fn offset(&self) -> Option<time::Duration> {
        self.offset
    }

    /// The clock to use.
    pub fn clock(&self) -> Arc<dyn Clock> {
        self.clock.clone().unwrap_or_else(|| Arc::new(SystemClock))
    }
}

impl std::fmt::Debug for FollowUpClock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (&self.clock, self.offset) {
            (_, Some(offset)) => {
                let sign = if offset.is_negative() { "" } else { "+" };
                write!(f, "FollowUpClock(system {sign}{offset})")
            }
            (Some(_), None) => f.write_str("FollowUpClock(custom)"),
            (None, None) => f.write_str("FollowUpClock(system)"),
        }
    }
}

/// The wall clock shifted by a fixed offset.
#[derive(Debug, Clone, Copy)]
struct ShiftedClock(time::Duration);

impl Clock for ShiftedClock {
    fn now(&self) -> OffsetDateTime {
        SystemClock.now() + self.0
    }
}

/// The service configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// `DATABASE_URL`.
    pub database_url: String,
    /// `FRESHPLAN_DATABASE_READ_URL`: a hot standby of that database for the lead list, read
    /// once it has replayed the primary's position of the moment the read begins (read your
    /// writes); a lagging or unreachable standby leaves the read to the primary (ADR 0015).
    pub database_read_url: Option<String>,
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
    /// `FRESHPLAN_EVENTS` (default on): run the event pipeline on this replica — the after-commit
    /// wake-up, the coalesced NOTIFY, the listener connection, the in-process consumers, the SSE
    /// stream and outbox retention. Off does **not** stop writing events: the outbox row is part
    /// of every lead transaction (an event exists iff its change committed), and
    /// `GET /api/events` still serves it. Off is for measuring what delivery costs, or for a
    /// replica that must not hold a listener connection; `/api/events/stream` answers 503 there.
    pub events: bool,
    /// `FRESHPLAN_EVENTS_RETENTION` (default `7d`; `s`, `m`, `h` or `d`; `off`: this replica
    /// does not purge): how long outbox events stay readable by the feed (SPEC §7.5).
    pub events_retention: Option<Duration>,
    /// `FRESHPLAN_IMPORT_LEASE` (default `30s`): how long a replica's hold on a running import
    /// lasts without progress; when the replica dies, another takes the import over after it.
    pub import_lease: Duration,
    /// `FRESHPLAN_SSE_KEEPALIVE` (default `15s`): a comment line is sent on an SSE stream that
    /// has been quiet this long (below the usual proxy idle timeouts).
    pub sse_keep_alive: Duration,
    /// `FRESHPLAN_SSE_BUFFER` (default 1024): how many events an event-stream client may fall
    /// behind this replica's broadcast before it catches up from the outbox instead (memory per
    /// replica, not per client; catching up costs outbox reads).
    pub sse_buffer: usize,
    /// `FRESHPLAN_ENV` = `production` (default) | `development`. Development accepts any
    /// non-empty unsubscribe secret (and the published development one when none is set),
    /// defaults `FRESHPLAN_PUBLIC_URL` to `http://<FRESHPLAN_BIND>` and accepts
    /// `FRESHPLAN_FOLLOWUP_CLOCK_OFFSET`; production refuses all three.
    pub development: bool,
    /// `FRESHPLAN_PUBLIC_URL`: the externally visible base URL of this service (unsubscribe
    /// links are `<public>/unsubscribe?token=…`). Required outside development.
    pub public_url: Option<String>,
    /// `FRESHPLAN_UNSUBSCRIBE_SECRET`: the HMAC key of unsubscribe tokens. Outside development
    /// at least 32 bytes and not a published default, or the service does not start.
    pub unsubscribe_secret: Option<String>,
    /// `FRESHPLAN_FOLLOWUP_ENABLED` (default true): run follow-ups on [`Config::followup_cron`].
    /// Off stops only the schedule; `POST /api/followups/run` still works.
    pub followup_enabled: bool,
    /// `FRESHPLAN_FOLLOWUP_CRON` (six fields with seconds, UTC; default
    /// [`DEFAULT_FOLLOWUP_CRON`]).
    pub followup_cron: String,
    /// `FRESHPLAN_FOLLOWUP_CONCURRENCY` (1 to 16, default
    /// [`freshplan_followup::service::FollowUpConfig::DEFAULT_CONCURRENCY`]): batches of a run in
    /// flight at once, each on its own pool connection.
    pub followup_concurrency: usize,
    /// `FRESHPLAN_SWEEP_ENABLED` (default true): run the protection sweep on
    /// [`Config::sweep_cron`].
    pub sweep_enabled: bool,
    /// `FRESHPLAN_SWEEP_CRON` (six fields with seconds, UTC; default [`DEFAULT_SWEEP_CRON`]).
    pub sweep_cron: String,
    /// `FRESHPLAN_RETENTION_CLOSED_LEADS` (default `730d`, about 24 months; `off` keeps them) and
    /// `FRESHPLAN_RETENTION_MAIL_BODIES` (default `90d`; `off`): how long LOST, EXPIRED and
    /// DELETED leads and the bodies of sent or dead mails are kept after their last change
    /// before the sweep erases them (SPEC §13).
    pub retention: RetentionPolicy,
    /// `FRESHPLAN_SMTP_URL` (`smtp://host:port`, `smtp://host:587?tls=required`,
    /// `smtps://user:password@host:465`): start the mail dispatcher on this replica. Without it
    /// mails stay queued and visible (`GET /api/mails`).
    pub smtp_url: Option<String>,
    /// `FRESHPLAN_MAIL_FROM` (`Name <address>`): the sender; required with an SMTP URL.
    pub mail_from: Option<String>,
    /// `FRESHPLAN_MAIL_REPLY_TO` (optional `Reply-To`).
    pub mail_reply_to: Option<String>,
    /// `FRESHPLAN_MAIL_POLL` (default `10s`): how often the dispatcher looks for due mails
    /// (retries); a follow-up run or a requeue wakes it at once.
    pub mail_poll: Duration,
    /// The follow-up side's clock (default: the wall clock). `FRESHPLAN_FOLLOWUP_CLOCK_OFFSET`
    /// (development only; a signed whole number of `s`, `m`, `h` or `d`, such as `+38h`, `-90m`
    /// or `3600s`; at most [`MAX_FOLLOWUP_CLOCK_OFFSET`]) makes it the wall clock shifted by that
    /// much: follow-ups are planned, recorded and mailed as if it were that time, so they can be
    /// tried outside business hours. Outside development the service refuses to start with it.
    pub followup_clock: FollowUpClock,
}

fn var(name: &str) -> Option<String> {
    #[allow(clippy::disallowed_methods)] // app is where configuration is read
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// A duration such as `500ms`, `45s`, `30m`, `12h` or `7d` (a unit is required).
pub fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit())?;
    let (number, unit) = text.split_at(split);
    let n: u64 = number.parse().ok()?;
    let unit_ms: u64 = match unit {
        "ms" => 1,
        "s" => 1000,
        "m" => 60 * 1000,
        "h" => 60 * 60 * 1000,
        "d" => 24 * 60 * 60 * 1000,
        _ => return None,
    };
    n.checked_mul(unit_ms).map(Duration::from_millis)
}

/// A positive duration from the environment, or `default`.
fn duration(name: &str, default: Duration) -> anyhow::Result<Duration> {
    match var(name) {
        None => Ok(default),
        Some(v) => match parse_duration(&v) {
            Some(d) if !d.is_zero() => Ok(d),
            _ => anyhow::bail!(
                "{name}={v}: expected a positive duration such as 45s, 30m, 12h or 7d"
            ),
        },
    }
}

/// A retention period from the environment: a duration of at least a day (`730d`), `off`
/// (`None`: kept forever), or `default` when unset.
fn period(name: &str, default: Option<time::Duration>) -> anyhow::Result<Option<time::Duration>> {
    match var(name) {
        Some(v) if v.trim().eq_ignore_ascii_case("off") => Ok(None),
        Some(v) => {
            let d = duration(name, Duration::ZERO)?;
            // A typo such as `30s` would erase every closed lead at the next sweep.
            anyhow::ensure!(
                d >= Duration::from_secs(86_400),
                "{name}={v}: a retention period must be at least 1d (or `off`)"
            );
            Ok(Some(time::Duration::try_from(d).with_context(|| {
                format!("{name}: the period is too long")
            })?))
        }
        None => Ok(default),
    }
}

/// A signed offset such as `+38h`, `-90m` or `3600s`: an optional `+` or `-`, ASCII digits and
/// one unit, `s`, `m`, `h` or `d` (surrounding whitespace is ignored; nothing else is accepted),
/// at most [`MAX_FOLLOWUP_CLOCK_OFFSET`] either way.
pub fn parse_offset(text: &str) -> Option<time::Duration> {
    let text = text.trim();
    let (negative, magnitude) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    let split = magnitude.find(|c: char| !c.is_ascii_digit())?;
    let (number, unit) = magnitude.split_at(split);
    if number.is_empty() {
        return None;
    }
    let n: i64 = number.parse().ok()?;
    let unit_s: i64 = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 60 * 60,
        "d" => 24 * 60 * 60,
        _ => return None,
    };
    let seconds = n.checked_mul(unit_s)?;
    let offset = time::Duration::seconds(if negative { -seconds } else { seconds });
    (offset.abs() <= MAX_FOLLOWUP_CLOCK_OFFSET).then_some(offset)
}

/// The follow-up clock for `FRESHPLAN_FOLLOWUP_CLOCK_OFFSET` = `offset` (the wall clock when
/// unset); refused outside development.
fn followup_clock(offset: Option<&str>, development: bool) -> anyhow::Result<FollowUpClock> {
    let Some(offset) = offset else {
        return Ok(FollowUpClock::default());
    };
    anyhow::ensure!(
        development,
        "{FOLLOWUP_CLOCK_OFFSET}={offset} is refused outside development: it moves the follow-up \
         clock (business hours, due dates, records, mail) away from the real time (unset it, or \
         set FRESHPLAN_ENV=development)"
    );
    let shift = parse_offset(offset).with_context(|| {
        format!(
            "{FOLLOWUP_CLOCK_OFFSET}={offset}: expected a signed duration such as +38h, -90m or \
             3600s (whole s, m, h or d; at most 366d)"
        )
    })?;
    Ok(FollowUpClock::shifted(shift))
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
            database_read_url: None,
            bind: "127.0.0.1:8080".into(),
            hs256_secret: None,
            jwks: None,
            issuer: None,
            audience: None,
            pool_size: 16,
            log_json: false,
            workers: None,
            metrics: true,
            events: true,
            events_retention: Some(DEFAULT_EVENTS_RETENTION),
            import_lease: crate::imports::DEFAULT_LEASE,
            sse_keep_alive: DEFAULT_SSE_KEEP_ALIVE,
            sse_buffer: DEFAULT_SSE_BUFFER,
            development: false,
            public_url: None,
            unsubscribe_secret: None,
            followup_enabled: true,
            followup_cron: DEFAULT_FOLLOWUP_CRON.into(),
            followup_concurrency: freshplan_followup::service::FollowUpConfig::DEFAULT_CONCURRENCY,
            sweep_enabled: true,
            sweep_cron: DEFAULT_SWEEP_CRON.into(),
            retention: RetentionPolicy::default(),
            smtp_url: None,
            mail_from: None,
            mail_reply_to: None,
            mail_poll: DEFAULT_MAIL_POLL,
            followup_clock: FollowUpClock::default(),
        }
    }

    /// Reads the environment.
    pub fn from_env() -> anyhow::Result<Config> {
        let development = match var("FRESHPLAN_ENV").map(|v| v.trim().to_ascii_lowercase()) {
            None => false,
            Some(v) if v == "development" => true,
            Some(v) if v == "production" => false,
            Some(v) => anyhow::bail!("FRESHPLAN_ENV={v}: expected production or development"),
        };
        Ok(Config {
            database_url: var("DATABASE_URL").context(
                "DATABASE_URL is not set (cargo xtask demo starts a private PostgreSQL for you)",
            )?,
            database_read_url: var("FRESHPLAN_DATABASE_READ_URL").filter(|v| !v.is_empty()),
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
            events: flag("FRESHPLAN_EVENTS", true)?,
            events_retention: match var("FRESHPLAN_EVENTS_RETENTION") {
                Some(v) if v.trim().eq_ignore_ascii_case("off") => None,
                _ => Some(duration(
                    "FRESHPLAN_EVENTS_RETENTION",
                    DEFAULT_EVENTS_RETENTION,
                )?),
            },
            import_lease: duration("FRESHPLAN_IMPORT_LEASE", crate::imports::DEFAULT_LEASE)?,
            sse_keep_alive: duration("FRESHPLAN_SSE_KEEPALIVE", DEFAULT_SSE_KEEP_ALIVE)?,
            sse_buffer: match var("FRESHPLAN_SSE_BUFFER") {
                None => DEFAULT_SSE_BUFFER,
                Some(v) => v
                    .trim()
                    .parse()
                    .ok()
                    .filter(|n| (1..=1 << 20).contains(n))
                    .with_context(|| format!("FRESHPLAN_SSE_BUFFER={v}: expected 1 to 1048576"))?,
            },
            development,
            public_url: var("FRESHPLAN_PUBLIC_URL"),
            unsubscribe_secret: var("FRESHPLAN_UNSUBSCRIBE_SECRET"),
            followup_enabled: flag("FRESHPLAN_FOLLOWUP_ENABLED", true)?,
            followup_cron: var("FRESHPLAN_FOLLOWUP_CRON")
                .unwrap_or_else(|| DEFAULT_FOLLOWUP_CRON.into()),
            followup_concurrency: match var("FRESHPLAN_FOLLOWUP_CONCURRENCY") {
                None => freshplan_followup::service::FollowUpConfig::DEFAULT_CONCURRENCY,
                Some(v) => v
                    .trim()
                    .parse()
                    .ok()
                    .filter(|n| (1..=16).contains(n))
                    .with_context(|| {
                        format!("FRESHPLAN_FOLLOWUP_CONCURRENCY={v}: expected 1 to 16")
                    })?,
            },
            sweep_enabled: flag("FRESHPLAN_SWEEP_ENABLED", true)?,
            sweep_cron: var("FRESHPLAN_SWEEP_CRON").unwrap_or_else(|| DEFAULT_SWEEP_CRON.into()),
            retention: RetentionPolicy {
                closed_leads: period(
                    "FRESHPLAN_RETENTION_CLOSED_LEADS",
                    RetentionPolicy::default().closed_leads,
                )?,
                mail_bodies: period(
                    "FRESHPLAN_RETENTION_MAIL_BODIES",
                    RetentionPolicy::default().mail_bodies,
                )?,
            },
            smtp_url: var("FRESHPLAN_SMTP_URL"),
            mail_from: var("FRESHPLAN_MAIL_FROM"),
            mail_reply_to: var("FRESHPLAN_MAIL_REPLY_TO"),
            mail_poll: duration("FRESHPLAN_MAIL_POLL", DEFAULT_MAIL_POLL)?,
            followup_clock: followup_clock(var(FOLLOWUP_CLOCK_OFFSET).as_deref(), development)?,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_need_a_unit_and_a_number() {
        assert_eq!(parse_duration("7d"), Some(Duration::from_secs(7 * 86_400)));
        assert_eq!(parse_duration("12h"), Some(Duration::from_secs(12 * 3600)));
        assert_eq!(parse_duration("30m"), Some(Duration::from_secs(1800)));
        assert_eq!(parse_duration(" 45s "), Some(Duration::from_secs(45)));
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        for bad in [
            "",
            "7",
            "d",
            "7 d",
            "7days",
            "-1d",
            "1.5h",
            "99999999999999999999d",
        ] {
            assert_eq!(parse_duration(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn offsets_are_signed_whole_units() {
        let h = time::Duration::hours;
        assert_eq!(parse_offset("+38h"), Some(h(38)));
        assert_eq!(parse_offset("38h"), Some(h(38)));
        assert_eq!(parse_offset("-90m"), Some(time::Duration::minutes(-90)));
        assert_eq!(parse_offset("3600s"), Some(h(1)));
        assert_eq!(parse_offset(" -2d "), Some(time::Duration::days(-2)));
        assert_eq!(parse_offset("+0s"), Some(time::Duration::ZERO));
        assert_eq!(parse_offset("366d"), Some(MAX_FOLLOWUP_CLOCK_OFFSET));
        assert_eq!(parse_offset("-366d"), Some(-MAX_FOLLOWUP_CLOCK_OFFSET));
        for bad in [
            "",
            "+",
            "-",
            "h",
            "+h",
            "38",
            "+38",
            "38 h",
            "+ 38h",
            "--38h",
            "+-38h",
            "-+38h",
            "++38h",
            "38H",
            "38hours",
            "1h30m",
            "1.5h",
            "250ms",
            "38h ago",
            "+\u{0663}h",
            "367d",
            "-367d",
            "99999999999999999999s",
            "9223372036854775807d",
        ] {
            assert_eq!(parse_offset(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn the_clock_offset_is_development_only() {
        // Unset: the wall clock, in either environment.
        for development in [false, true] {
            let clock = followup_clock(None, development).unwrap();
            assert_eq!(clock.offset(), None);
            assert_eq!(format!("{clock:?}"), "FollowUpClock(system)");
        }
        // Set outside development: refused, whatever the value.
        for value in ["+38h", "0s", "nonsense"] {
            let refused = followup_clock(Some(value), false).unwrap_err().to_string();
            assert!(
                refused.contains(FOLLOWUP_CLOCK_OFFSET)
                    && refused.contains("refused outside development")
                    && refused.contains("FRESHPLAN_ENV=development"),
                "{refused}"
            );
        }
        // In development: parsed strictly, then the wall clock shifted by it.
        let bad = followup_clock(Some("38"), true).unwrap_err().to_string();
        assert!(bad.contains("expected a signed duration"), "{bad}");
        for (value, expected, debug) in [
            (
                "+38h",
                time::Duration::hours(38),
                "FollowUpClock(system +1d14h)",
            ),
            (
                "-90m",
                time::Duration::minutes(-90),
                "FollowUpClock(system -1h30m)",
            ),
        ] {
            let clock = followup_clock(Some(value), true).unwrap();
            assert_eq!(clock.offset(), Some(expected));
            assert_eq!(format!("{clock:?}"), debug);
            let shift = clock.clock().now() - SystemClock.now();
            assert!(
                (shift - expected).abs() < time::Duration::seconds(5),
                "{value}: {shift}"
            );
        }
    }
}
