//! [`CommitSignal`]: the writer side's "something committed" poke.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use tokio::sync::Notify;

const EVENTS: u8 = 1;
const DASHBOARD: u8 = 2;

/// Handed to the writer side (the store, the follow-up run): call [`CommitSignal::committed`]
/// after a transaction that appended outbox events has **committed**. Cheap, never blocks,
/// never fails; cloning shares the signal.
///
/// It wakes this process's outbox reader at once and asks the notifier to issue a coalesced
/// `NOTIFY` (at most one per channel per window, outside any request transaction) so that the
/// other replicas' listeners wake too. Forgetting to call it delays delivery to the polling
/// interval; it never loses an event.
#[derive(Debug, Clone, Default)]
pub struct CommitSignal {
    inner: Arc<SignalInner>,
}

#[derive(Debug, Default)]
struct SignalInner {
    /// Bits of what committed since the notifier last looked.
    pending: AtomicU8,
    /// Wakes the notifier.
    notifier: Notify,
    /// Wakes this process's reader.
    reader: Notify,
}

impl CommitSignal {
    /// A signal nobody listens to yet (the pipeline creates its own; this is for tests and for
    /// wiring the writer before the pipeline starts).
    pub fn new() -> CommitSignal {
        CommitSignal::default()
    }

    /// Events committed; `dashboard` when one of them moves cockpit figures
    /// (`freshplan_leads::events::moves_dashboard`), which adds a `dashboard_updates` NOTIFY.
    pub fn committed(&self, dashboard: bool) {
        let bits = if dashboard {
            EVENTS | DASHBOARD
        } else {
            EVENTS
        };
        self.inner.pending.fetch_or(bits, Ordering::AcqRel);
        // `notify_one` stores a permit when nobody waits: a signal is never lost, and any number
        // of signals before the next wait collapse into one wake-up.
        self.inner.notifier.notify_one();
        self.inner.reader.notify_one();
    }

    /// Waits for the next signal (notifier side).
    pub(crate) async fn wait_notifier(&self) {
        self.inner.notifier.notified().await;
    }

    /// Waits for the next signal (reader side).
    pub(crate) async fn wait_reader(&self) {
        self.inner.reader.notified().await;
    }

    /// Wakes the reader without asking for a NOTIFY (e.g. shutdown, tests).
    pub(crate) fn wake_reader(&self) {
        self.inner.reader.notify_one();
    }

    /// Takes the pending bits: `(events, dashboard)`.
    pub(crate) fn take(&self) -> (bool, bool) {
        let bits = self.inner.pending.swap(0, Ordering::AcqRel);
        (bits & EVENTS != 0, bits & DASHBOARD != 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn signals_coalesce_and_are_never_lost() {
        let s = CommitSignal::new();
        s.committed(false);
        s.committed(true);
        s.committed(false);
        // One stored permit: the wait returns at once.
        tokio::time::timeout(std::time::Duration::from_secs(1), s.wait_notifier())
            .await
            .expect("a permit was stored");
        assert_eq!(s.take(), (true, true));
        assert_eq!(s.take(), (false, false));
        tokio::time::timeout(std::time::Duration::from_secs(1), s.wait_reader())
            .await
            .expect("the reader was woken too");
    }
}
