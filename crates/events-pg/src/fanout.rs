//! Fan-out from the reader to the consumers' bounded channels.
//!
//! The reader never waits for a consumer: it `try_send`s. A consumer whose channel is full is
//! switched to *lagging*: the reader stops sending to it and wakes it; the consumer drains what
//! its channel holds, then reads the outbox itself from its own position (its durable
//! checkpoint, or its in-memory position) until it has reached the reader's, and switches back
//! to *live* under the same lock the reader dispatches under — so no event falls between the two
//! paths, and none is dropped.

use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::{Notify, mpsc};

use crate::cursor::Cursor;
use crate::outbox::OutboxEvent;

/// One event on its way to one consumer, with how the reader came to read it.
#[derive(Debug, Clone)]
pub(crate) struct Delivery {
    pub(crate) event: Arc<OutboxEvent>,
    /// A `freshplan_kernel::metrics::PATH_*` value.
    pub(crate) path: &'static str,
}

#[derive(Debug)]
struct Slot {
    tx: mpsc::Sender<Delivery>,
    live: bool,
    lagged: Arc<Notify>,
    lags: u64,
}

#[derive(Debug, Default)]
struct State {
    /// Everything at or before this has been handed to the live consumers (None until the
    /// reader has established where it starts).
    dispatched: Option<Cursor>,
    slots: Vec<Slot>,
}

/// The shared fan-out state.
#[derive(Debug, Default)]
pub(crate) struct Fanout {
    state: Mutex<State>,
}

impl Fanout {
    fn lock(&self) -> MutexGuard<'_, State> {
        // The lock guards plain data with no invariants a panicking holder could break halfway.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Registers a consumer; returns its slot number.
    pub(crate) fn add(&self, tx: mpsc::Sender<Delivery>, lagged: Arc<Notify>, live: bool) -> usize {
        let mut st = self.lock();
        st.slots.push(Slot {
            tx,
            live,
            lagged,
            lags: 0,
        });
        st.slots.len() - 1
    }

    /// Where the reader is; `None` before its first read.
    pub(crate) fn dispatched(&self) -> Option<Cursor> {
        self.lock().dispatched
    }

    /// Hands `events` (in order) to every live consumer and records that everything up to
    /// `position` has been dispatched.
    pub(crate) fn dispatch(
        &self,
        events: &[Arc<OutboxEvent>],
        path: &'static str,
        position: Cursor,
    ) {
        let mut st = self.lock();
        for event in events {
            for slot in st.slots.iter_mut().filter(|s| s.live) {
                match slot.tx.try_send(Delivery {
                    event: Arc::clone(event),
                    path,
                }) {
                    Ok(()) => {}
                    Err(mpsc::error::TrySendError::Full(_)) => {
                        slot.live = false;
                        slot.lags += 1;
                        slot.lagged.notify_one();
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => slot.live = false,
                }
            }
        }
        st.dispatched = Some(st.dispatched.map_or(position, |d| d.max(position)));
    }

    /// Switches slot `slot` back to live if its consumer has reached the reader (`position` at
    /// or beyond what has been dispatched). Returns whether it is live now.
    pub(crate) fn try_go_live(&self, slot: usize, position: Cursor) -> bool {
        let mut st = self.lock();
        let reached = st.dispatched.is_some_and(|d| position >= d);
        if reached && let Some(s) = st.slots.get_mut(slot) {
            s.live = true;
        }
        reached
    }

    /// Whether slot `slot` receives live deliveries.
    pub(crate) fn is_live(&self, slot: usize) -> bool {
        self.lock().slots.get(slot).is_some_and(|s| s.live)
    }

    /// How often slot `slot` fell behind and had to catch up.
    pub(crate) fn lags(&self, slot: usize) -> u64 {
        self.lock().slots.get(slot).map_or(0, |s| s.lags)
    }
}
