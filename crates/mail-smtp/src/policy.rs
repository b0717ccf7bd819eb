//! When a failed mail is tried again, and when the dispatcher gives up.

use time::{Duration, OffsetDateTime};

/// Exponential backoff with a bounded number of attempts.
///
/// After the `n`-th failed attempt the next one is due `backoff_base · 2ⁿ⁻¹` later, capped at
/// `backoff_max`; after `max_attempts` failed attempts the mail is `DEAD`. With the defaults
/// (8 attempts, 2 minutes, capped at 4 hours) a mail is retried after 2, 4, 8, 16, 32, 64 and
/// 128 minutes: an SMTP outage of about four hours is bridged.
///
/// ```
/// use freshplan_mail_smtp::RetryPolicy;
/// use time::Duration;
///
/// let p = RetryPolicy::default();
/// assert_eq!(p.backoff(1), Duration::minutes(2));
/// assert_eq!(p.backoff(3), Duration::minutes(8));
/// assert!(p.gives_up_after(8) && !p.gives_up_after(7));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts before a mail is `DEAD` (at least 1).
    pub max_attempts: u32,
    /// The delay after the first failed attempt.
    pub backoff_base: Duration,
    /// The longest delay.
    pub backoff_max: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 8,
            backoff_base: Duration::minutes(2),
            backoff_max: Duration::hours(4),
        }
    }
}

impl RetryPolicy {
    /// The delay after the `attempts`-th failed attempt (`attempts ≥ 1`; 0 counts as 1).
    pub fn backoff(&self, attempts: u32) -> Duration {
        let doublings = attempts.saturating_sub(1).min(62);
        let factor = 1i64 << doublings;
        let base = self.backoff_base.max(Duration::ZERO);
        base.checked_mul(i32::try_from(factor).unwrap_or(i32::MAX))
            .unwrap_or(Duration::MAX)
            .min(self.backoff_max.max(base))
    }

    /// Whether a mail that failed its `attempts`-th attempt is given up.
    pub fn gives_up_after(&self, attempts: u32) -> bool {
        attempts >= self.max_attempts.max(1)
    }

    /// When to try again after the `attempts`-th attempt failed at `now`: `None` = give up.
    pub fn next_attempt(&self, attempts: u32, now: OffsetDateTime) -> Option<OffsetDateTime> {
        (!self.gives_up_after(attempts)).then(|| now + self.backoff(attempts))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use time::macros::datetime;

    #[test]
    fn default_schedule() {
        let p = RetryPolicy::default();
        let delays: Vec<i64> = (1..8).map(|n| p.backoff(n).whole_minutes()).collect();
        assert_eq!(delays, [2, 4, 8, 16, 32, 64, 128]);
        assert_eq!(p.backoff(20), Duration::hours(4));
        assert_eq!(p.backoff(u32::MAX), Duration::hours(4));
        let now = datetime!(2026-03-05 09:00 UTC);
        assert_eq!(p.next_attempt(1, now), Some(now + Duration::minutes(2)));
        assert_eq!(p.next_attempt(8, now), None);
    }

    #[test]
    fn zero_attempts_allowed_means_one() {
        let p = RetryPolicy {
            max_attempts: 0,
            ..RetryPolicy::default()
        };
        assert!(p.gives_up_after(1));
    }

    proptest! {
        #[test]
        fn backoff_grows_and_stays_bounded(
            base in 1i64..600,
            max in 1i64..100_000,
            n in 1u32..100,
        ) {
            let p = RetryPolicy {
                max_attempts: 8,
                backoff_base: Duration::seconds(base),
                backoff_max: Duration::seconds(max),
            };
            let (a, b) = (p.backoff(n), p.backoff(n + 1));
            prop_assert!(a <= b);
            prop_assert!(a >= Duration::seconds(base.min(max)));
            prop_assert!(a <= Duration::seconds(max.max(base)));
        }
    }
}
