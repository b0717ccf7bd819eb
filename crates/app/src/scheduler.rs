//! Scheduled background work of one replica (SPEC §4.5, §6, §11): cron schedules, and the set
//! of background tasks that a stopping replica waits for.
//!
//! Every replica runs the same schedules; what makes that safe lives with the work, not here:
//! a follow-up run takes the cluster-wide advisory lock
//! ([`freshplan_store_postgres::PgFollowUpStore::run_exclusive`]; a replica that finds it taken
//! skips the tick), and the protection sweep claims its leads `FOR NO KEY UPDATE SKIP LOCKED`,
//! so concurrent sweeps split the due leads between them (docs/decisions/0007).
//!
//! A tick that comes while the previous job of the same schedule still runs on this replica is
//! skipped, not queued: the next instant is computed when the job has finished.

use std::future::Future;
use std::time::Duration;

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use cron::Schedule;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// How long a stopping replica waits for its background tasks (a follow-up run in flight, a
/// mail batch) before abandoning them. Abandoning is safe — every batch is one transaction, a
/// claimed mail is due again when its lease ends — it only costs a retry.
pub const STOP_GRACE: Duration = Duration::from_secs(30);

/// Parses a six-field cron expression (`sec min hour day-of-month month day-of-week`, evaluated
/// in UTC), as `FRESHPLAN_FOLLOWUP_CRON` and `FRESHPLAN_SWEEP_CRON` take it. `name` is the
/// variable, for the message.
///
/// ```
/// use freshplan_app::scheduler::parse_cron;
/// assert!(parse_cron("X", "0 */15 * * * *").is_ok());
/// assert!(parse_cron("X", "*/15 * * * *").is_err()); // five fields: no seconds
/// assert!(parse_cron("X", "0 61 * * * *").is_err());
/// ```
pub fn parse_cron(name: &str, expression: &str) -> anyhow::Result<Schedule> {
    let fields = expression.split_whitespace().count();
    anyhow::ensure!(
        fields == 6,
        "{name}={expression:?}: expected six fields (second minute hour day-of-month month \
         day-of-week), got {fields}"
    );
    let schedule: Schedule = expression
        .parse()
        .with_context(|| format!("{name}={expression:?}: not a valid cron expression"))?;
    anyhow::ensure!(
        schedule.upcoming(Utc).next().is_some(),
        "{name}={expression:?}: the schedule never fires"
    );
    Ok(schedule)
}

/// The schedule's next instant strictly after both `now` and `last` (the instant of the
/// previous tick: a timer that fires a hair early must not run the same tick twice).
pub fn next_tick(
    schedule: &Schedule,
    now: DateTime<Utc>,
    last: Option<DateTime<Utc>>,
) -> Option<DateTime<Utc>> {
    let from = last.map_or(now, |last| last.max(now));
    schedule.after(&from).next()
}

/// Resolves when `closing` says the replica stops (or its sender is gone).
pub async fn closed(closing: &mut watch::Receiver<bool>) {
    let _ = closing.wait_for(|c| *c).await;
}

/// Runs `job` at every instant of `schedule` until `closing` becomes true. A job in flight is
/// finished first (see [`Background::stop`] for the bound).
pub fn spawn_cron<F, Fut>(
    name: &'static str,
    schedule: Schedule,
    mut closing: watch::Receiver<bool>,
    mut job: F,
) -> JoinHandle<()>
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    tokio::spawn(async move {
        let mut last = None;
        loop {
            let Some(at) = next_tick(&schedule, Utc::now(), last) else {
                tracing::warn!(schedule = name, "the schedule has no further instants");
                return;
            };
            let delay = (at - Utc::now()).to_std().unwrap_or(Duration::ZERO);
            tokio::select! {
                biased;
                () = closed(&mut closing) => return,
                () = tokio::time::sleep(delay) => {}
            }
            last = Some(at);
            tracing::debug!(schedule = name, "scheduled job starts");
            job().await;
        }
    })
}

/// The background tasks of one replica (schedules, the mail dispatcher, the cockpit
/// refresher); each ends by itself once the replica's `closing` signal is set.
#[derive(Default)]
pub struct Background {
    tasks: Vec<(&'static str, JoinHandle<()>)>,
}

impl std::fmt::Debug for Background {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.tasks.iter().map(|(name, _)| name))
            .finish()
    }
}

impl Background {
    /// Adds a task.
    pub fn push(&mut self, name: &'static str, task: JoinHandle<()>) {
        self.tasks.push((name, task));
    }

    /// The names of the tasks, in start order.
    pub fn names(&self) -> Vec<&'static str> {
        self.tasks.iter().map(|(name, _)| *name).collect()
    }

    /// Waits for every task to end (call after setting `closing`), at most [`STOP_GRACE`] in
    /// all; tasks still running then are aborted.
    pub async fn stop(self) {
        let deadline = tokio::time::Instant::now() + STOP_GRACE;
        for (name, mut task) in self.tasks {
            if tokio::time::timeout_at(deadline, &mut task).await.is_err() {
                tracing::warn!(
                    task = name,
                    "background task did not stop in time; abandoning it"
                );
                task.abort();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone as _;

    #[test]
    fn six_fields_with_seconds() {
        assert!(parse_cron("X", crate::config::DEFAULT_FOLLOWUP_CRON).is_ok());
        assert!(parse_cron("X", crate::config::DEFAULT_SWEEP_CRON).is_ok());
        for bad in [
            "",
            "*/15 * * * *",
            "0 0 */15 * * * * *",
            "x */15 * * * *",
            "0 */15 * * * 9",
        ] {
            assert!(parse_cron("X", bad).is_err(), "{bad:?}");
        }
        let e = parse_cron("FRESHPLAN_FOLLOWUP_CRON", "*/15 * * * *").unwrap_err();
        assert!(e.to_string().contains("FRESHPLAN_FOLLOWUP_CRON"), "{e}");
    }

    #[test]
    fn ticks_follow_the_expression_in_utc() {
        let s = parse_cron("X", "0 */15 * * * *").unwrap();
        let now = Utc.with_ymd_and_hms(2026, 3, 5, 9, 7, 12).unwrap();
        let next = next_tick(&s, now, None).unwrap();
        assert_eq!(next, Utc.with_ymd_and_hms(2026, 3, 5, 9, 15, 0).unwrap());
        // On the tick itself, the next one is the following quarter.
        assert_eq!(
            next_tick(&s, next, None).unwrap(),
            Utc.with_ymd_and_hms(2026, 3, 5, 9, 30, 0).unwrap()
        );
    }

    #[test]
    fn an_early_timer_does_not_repeat_a_tick() {
        let s = parse_cron("X", "30 */5 * * * *").unwrap();
        let tick = Utc.with_ymd_and_hms(2026, 3, 5, 9, 5, 30).unwrap();
        let early = tick - chrono::Duration::milliseconds(3);
        assert_eq!(next_tick(&s, early, None), Some(tick));
        assert_eq!(
            next_tick(&s, early, Some(tick)),
            Some(Utc.with_ymd_and_hms(2026, 3, 5, 9, 10, 30).unwrap())
        );
    }
}
