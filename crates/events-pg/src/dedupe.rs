//! The dedupe window: the `source`+`id` of the events a consumer applied recently, in front of
//! its durable checkpoint.
//!
//! `quick_cache` evicts with S3-FIFO: a new key enters the small "cold" queue and is promoted to
//! the "hot" queue only when it is read again before it reaches the queue's end; the hot queue
//! gets `hot_allocation` of the capacity (default 97 %). A dedupe key is written once and read
//! only if a duplicate arrives, so with the defaults, once the cache has filled, a new key lives
//! for about 3 % of the capacity in inserts — the dedupe window would be a thirtieth of what the
//! capacity suggests (a test below shows it). So the cache is configured as a FIFO window:
//!
//! * `hot_allocation(0.0)`: (almost) everything is "cold", first in, first out;
//! * `ghost_allocation(0.0)`: no memory for evicted keys (a key seen again after the window is
//!   not a duplicate the cache can know about anyway: the checkpoint decides then);
//! * one shard (`unsync::Cache`, owned by the consumer's task): the window is exact, not split
//!   per shard by hash.
//!
//! With capacity `C`, a key inserted and never read stays while fewer than `C - 1` other keys
//! are inserted after it.

use std::hash::{DefaultHasher, Hash, Hasher};

use quick_cache::unsync::Cache;
use quick_cache::{DefaultHashBuilder, OptionsBuilder, UnitWeighter};
use uuid::Uuid;

/// Default window: keys remembered per consumer. Duplicates inside one process come from a
/// retried batch (at most a page) or the overlap of a lagging consumer's catch-up (at most its
/// channel), both far below this; ~40 bytes a key.
pub const DEFAULT_DEDUPE_WINDOW: usize = 65_536;

type Key = (u64, Uuid);

/// A FIFO window of recently applied `(source, id)` pairs.
pub(crate) struct DedupeWindow {
    cache: Cache<Key, (), UnitWeighter, DefaultHashBuilder>,
    hits: u64,
    lookups: u64,
}

impl std::fmt::Debug for DedupeWindow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DedupeWindow")
            .field("len", &self.cache.len())
            .field("capacity", &self.cache.capacity())
            .finish()
    }
}

/// The key of an event: the source (hashed with a fixed-key hasher: there are two sources, and
/// only equal `(source, id)` pairs need to meet) and the event id.
fn key(source: &str, id: Uuid) -> Key {
    let mut h = DefaultHasher::new();
    source.hash(&mut h);
    (h.finish(), id)
}

/// The quick_cache options of a window of `capacity` keys (see the module docs).
fn options(capacity: usize) -> quick_cache::Options {
    let capacity = capacity.max(2);
    OptionsBuilder::new()
        .estimated_items_capacity(capacity)
        .weight_capacity(capacity as u64)
        .hot_allocation(0.0)
        .ghost_allocation(0.0)
        .build()
        .expect("estimated_items_capacity and weight_capacity are set")
}

impl DedupeWindow {
    /// A window remembering about `capacity` keys.
    pub(crate) fn new(capacity: usize) -> DedupeWindow {
        DedupeWindow {
            cache: Cache::with_options(
                options(capacity),
                UnitWeighter,
                DefaultHashBuilder::default(),
                Default::default(),
            ),
            hits: 0,
            lookups: 0,
        }
    }

    /// Whether `(source, id)` was applied within the window (counts a lookup, and a hit).
    pub(crate) fn seen(&mut self, source: &str, id: Uuid) -> bool {
        self.lookups += 1;
        let hit = self.cache.peek(&key(source, id)).is_some();
        if hit {
            self.hits += 1;
        }
        hit
    }

    /// Whether `(source, id)` is in the window, without counting a lookup.
    pub(crate) fn contains(&self, source: &str, id: Uuid) -> bool {
        self.cache.peek(&key(source, id)).is_some()
    }

    /// Remembers `(source, id)` as applied.
    pub(crate) fn insert(&mut self, source: &str, id: Uuid) {
        self.cache.insert(key(source, id), ());
    }

    /// Keys held.
    pub(crate) fn len(&self) -> usize {
        self.cache.len()
    }

    /// `(hits, lookups)` since creation.
    pub(crate) fn stats(&self) -> (u64, u64) {
        (self.hits, self.lookups)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u128) -> Uuid {
        Uuid::from_u128(n)
    }

    /// The point of the configuration: a key inserted once and never read survives a window's
    /// worth of later inserts.
    #[test]
    fn a_never_read_key_survives_the_window() {
        const CAPACITY: usize = 10_000;
        let mut w = DedupeWindow::new(CAPACITY);
        // A full cache first, so the key does not profit from a warm-up phase.
        for n in 0..CAPACITY as u128 {
            w.insert("freshplan.leads", id(1_000_000 + n));
        }
        w.insert("freshplan.leads", id(1));
        for n in 0..(CAPACITY as u128 - 2) {
            w.insert("freshplan.leads", id(2_000_000 + n));
        }
        assert!(
            w.seen("freshplan.leads", id(1)),
            "evicted inside the window"
        );
        assert!(w.len() <= CAPACITY);
        // Past the window it goes (FIFO), and the hit counter counted the one hit.
        for n in 0..(CAPACITY as u128) {
            w.insert("freshplan.leads", id(3_000_000 + n));
        }
        assert!(!w.seen("freshplan.leads", id(1)));
        assert_eq!(w.stats(), (1, 2));
    }

    /// Why the options matter: with quick_cache's defaults the same key is gone after a few
    /// percent of the capacity.
    #[test]
    fn the_default_policy_would_evict_it_early() {
        const CAPACITY: usize = 10_000;
        let mut cache: Cache<Key, (), UnitWeighter, DefaultHashBuilder> = Cache::with_options(
            OptionsBuilder::new()
                .estimated_items_capacity(CAPACITY)
                .weight_capacity(CAPACITY as u64)
                .build()
                .expect("options"),
            UnitWeighter,
            DefaultHashBuilder::default(),
            Default::default(),
        );
        for n in 0..CAPACITY as u128 {
            cache.insert(key("s", id(1_000_000 + n)), ());
        }
        cache.insert(key("s", id(1)), ());
        for n in 0..(CAPACITY as u128 / 10) {
            cache.insert(key("s", id(2_000_000 + n)), ());
        }
        assert!(cache.peek(&key("s", id(1))).is_none());
    }

    #[test]
    fn source_is_part_of_the_key() {
        let mut w = DedupeWindow::new(100);
        w.insert("freshplan.leads", id(7));
        assert!(w.seen("freshplan.leads", id(7)));
        assert!(!w.seen("freshplan.leads.followup", id(7)));
    }
}
