//! The cockpit follow-up figures (SPEC §8): one cached snapshot per scope, recomputed when an
//! event that moves the figures arrives (the `dashboard` flag of the outbox), and pushed to every
//! stream subscriber of that scope.
//!
//! Cost model: a change costs one query per *scope that has subscribers* (not per client);
//! bursts of events are coalesced ([`COALESCE`]); a request for a scope nobody streams is served
//! from the cache until the next change. "Sent today" starts at midnight, Europe/Berlin, so the
//! snapshots are also refreshed every [`REFRESH`] even without events.
//!
//! Freshness: the hub learns of changes through the event pipeline ([`DashboardConsumer`]), so a
//! cached snapshot may lag a commit by the delivery latency (milliseconds). With
//! `FRESHPLAN_EVENTS=false` there is no pipeline; the figures then follow follow-up runs and the
//! [`REFRESH`] interval only.
//!
//! `followup_pending{type}` is set from the global scope, which the hub keeps live (refreshed on
//! every change) whenever metrics are on — stream clients or not.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use time::OffsetDateTime;
use tokio::sync::{Notify, watch};

use freshplan_events_pg::{BroadcastConsumer, EventConsumer, OutboxEvent};
use freshplan_followup::cockpit::{FollowUpFigures, Scope, ScopeKind};
use freshplan_kernel::{Actor, Clock, TerritoryId};
use freshplan_metrics_prometheus::Metrics;
use freshplan_store_postgres::PgFollowUpStore;
use tokio::sync::broadcast::{self, error::RecvError};

use crate::scheduler::closed;

/// How long the refresher waits after a wake-up to gather a burst of events into one query.
pub const COALESCE: Duration = Duration::from_millis(10);
/// Refresh interval without events (midnight rolls "sent today" over).
pub const REFRESH: Duration = Duration::from_secs(60);
/// Shortest interval between two refreshes of the global scope while only the
/// `followup_pending` gauge needs it (no stream client on it): a gauge is scraped every few
/// seconds at best, so a query per change would be waste.
pub const GAUGE_INTERVAL: Duration = Duration::from_secs(5);

/// The figures of one scope at one instant, as the hub caches and pushes them (the body of
/// `GET /api/dashboard/followup` and of each `followup-metrics` message is made from it:
/// `freshplan_api::followups::FollowUpFigures`).
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    /// The four figures.
    pub figures: FollowUpFigures,
    /// The basis of the scope.
    pub scope: ScopeKind,
    /// When the figures were computed.
    pub generated_at: OffsetDateTime,
}

impl Snapshot {
    fn same_figures(&self, other: &Snapshot) -> bool {
        self.figures == other.figures && self.scope == other.scope
    }
}

struct Entry {
    scope: Scope,
    tx: watch::Sender<Option<Arc<Snapshot>>>,
    /// Serialises computations of this scope (single flight).
    compute: tokio::sync::Mutex<()>,
    /// Set by an event, cleared by the computation that observed it.
    dirty: std::sync::atomic::AtomicBool,
}

/// Per-scope cache and fan-out of the cockpit figures.
pub struct DashboardHub {
    store: PgFollowUpStore,
    entries: Mutex<HashMap<String, Arc<Entry>>>,
    wake: Notify,
    metrics: Option<Metrics>,
    /// "Now" of the figures (local midnight starts "sent today"): the follow-up side's clock.
    clock: Arc<dyn Clock>,
    queries: std::sync::atomic::AtomicU64,
    /// Keeps the global scope live while metrics are on (its refresh sets `followup_pending`).
    pinned: Option<watch::Receiver<Option<Arc<Snapshot>>>>,
}

impl std::fmt::Debug for DashboardHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DashboardHub").finish_non_exhaustive()
    }
}

fn key(scope: &Scope) -> String {
    serde_json::to_string(scope).unwrap_or_default()
}

impl DashboardHub {
    /// A hub over `store`, computing at `clock`'s now; `metrics` receives `followup_pending`
    /// from the global scope.
    pub fn new(
        store: PgFollowUpStore,
        metrics: Option<Metrics>,
        clock: Arc<dyn Clock>,
    ) -> Arc<DashboardHub> {
        let mut hub = DashboardHub {
            store,
            entries: Mutex::new(HashMap::new()),
            wake: Notify::new(),
            metrics,
            clock,
            queries: std::sync::atomic::AtomicU64::new(0),
            pinned: None,
        };
        if hub.metrics.is_some() {
            hub.pinned = Some(hub.entry_with(Scope::all(), |e| e.tx.subscribe()).1);
        }
        Arc::new(hub)
    }

    /// Figure queries run so far (for tests and the bench: one per change per scope).
    pub fn queries(&self) -> u64 {
        self.queries.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn entry(&self, scope: Scope) -> Arc<Entry> {
        self.entry_with(scope, |_| ()).0
    }

    /// The scope's entry and `with` applied to it, under the map's lock: a receiver subscribed
    /// in `with` keeps the entry in the map (the refresher drops only entries without one).
    fn entry_with<T>(&self, scope: Scope, with: impl FnOnce(&Entry) -> T) -> (Arc<Entry>, T) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let entry = entries
            .entry(key(&scope))
            .or_insert_with(|| {
                Arc::new(Entry {
                    scope,
                    tx: watch::channel(None).0,
                    compute: tokio::sync::Mutex::new(()),
                    dirty: std::sync::atomic::AtomicBool::new(true),
                })
            })
            .clone();
        let out = with(&entry);
        (entry, out)
    }

    /// Computes the entry's snapshot if it is dirty (or absent) and publishes it when the
    /// figures changed. Returns the current snapshot.
    async fn refresh(&self, entry: &Entry) -> anyhow::Result<Arc<Snapshot>> {
        use std::sync::atomic::Ordering;
        let _flight = entry.compute.lock().await;
        if let Some(current) = entry.tx.borrow().clone()
            && !entry.dirty.load(Ordering::Acquire)
        {
            return Ok(current);
        }
        entry.dirty.store(false, Ordering::Release);
        let now = self.clock.now();
        let figures = match self
            .store
            .figures(&Actor::system(), &entry.scope, now)
            .await
        {
            Ok(f) => f,
            Err(e) => {
                entry.dirty.store(true, Ordering::Release);
                return Err(e.into());
            }
        };
        self.queries.fetch_add(1, Ordering::Relaxed);
        let snapshot = Arc::new(Snapshot {
            figures,
            scope: entry.scope.kind(),
            generated_at: now,
        });
        if entry.scope.kind() == ScopeKind::All
            && entry.scope.territories().len() == TerritoryId::ALL.len()
            && let Some(m) = &self.metrics
        {
            m.followup_pending(figures.pending_t3, figures.pending_t7);
        }
        entry.tx.send_if_modified(|current| match current {
            Some(old) if old.same_figures(&snapshot) => false,
            _ => {
                *current = Some(snapshot.clone());
                true
            }
        });
        Ok(entry.tx.borrow().clone().unwrap_or(snapshot))
    }

    /// The figures for `actor` (optionally one territory), from the cache when no event has
    /// moved them since.
    pub async fn current(
        &self,
        actor: &Actor,
        territory: Option<TerritoryId>,
    ) -> anyhow::Result<Arc<Snapshot>> {
        let entry = self.entry(Scope::for_actor(actor, territory));
        self.refresh(&entry).await
    }

    /// A receiver of the scope's snapshots, holding the current one.
    pub async fn subscribe(
        &self,
        actor: &Actor,
        territory: Option<TerritoryId>,
    ) -> anyhow::Result<watch::Receiver<Option<Arc<Snapshot>>>> {
        let (entry, rx) = self.entry_with(Scope::for_actor(actor, territory), |e| e.tx.subscribe());
        self.refresh(&entry).await?;
        Ok(rx)
    }

    /// Marks every scope stale and wakes the refresher.
    pub fn invalidate(&self) {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        for entry in entries.values() {
            entry
                .dirty
                .store(true, std::sync::atomic::Ordering::Release);
        }
        drop(entries);
        self.wake.notify_one();
    }

    /// Refreshes the global scope now if it is stale (sets `followup_pending`); a no-op when
    /// metrics are off. The follow-up run calls it, so the gauge follows every run at once.
    pub async fn refresh_global(&self) {
        if self.pinned.is_none() {
            return;
        }
        let entry = self.entry(Scope::all());
        if let Err(e) = self.refresh(&entry).await {
            tracing::warn!(error = %e, "refreshing the global cockpit figures");
        }
    }

    /// Whether `entry` is live only because of the `followup_pending` gauge (the global scope
    /// without a stream client).
    fn gauge_only(&self, entry: &Entry) -> bool {
        self.pinned.is_some() && entry.tx.receiver_count() == 1 && entry.scope == Scope::all()
    }

    /// The refresher: at once, then after each wake-up (coalesced) or every [`REFRESH`],
    /// recomputes the scopes that have subscribers and drops the others; the global scope kept
    /// live for the gauge alone at most every [`GAUGE_INTERVAL`]. Ends when `closing` becomes
    /// true.
    pub async fn run(self: Arc<Self>, mut closing: watch::Receiver<bool>) {
        let mut first = true;
        let mut last_full = Instant::now();
        let mut gauge_at: Option<Instant> = None;
        let mut gauge_deferred = false;
        loop {
            if !std::mem::take(&mut first) {
                let mut wait = REFRESH.saturating_sub(last_full.elapsed());
                if gauge_deferred {
                    let since = gauge_at.map_or(GAUGE_INTERVAL, |t| t.elapsed());
                    wait = wait.min(GAUGE_INTERVAL.saturating_sub(since));
                }
                let woken = tokio::select! {
                    biased;
                    () = closed(&mut closing) => return,
                    woken = tokio::time::timeout(wait, self.wake.notified()) => woken.is_ok(),
                };
                if woken {
                    tokio::time::sleep(COALESCE).await;
                }
                if last_full.elapsed() >= REFRESH {
                    self.invalidate_quietly();
                    last_full = Instant::now();
                }
            }
            gauge_deferred = false;
            let live: Vec<Arc<Entry>> = {
                let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
                entries.retain(|_, e| e.tx.receiver_count() > 0);
                entries.values().cloned().collect()
            };
            for entry in live {
                let gauge_only = self.gauge_only(&entry);
                if gauge_only && gauge_at.is_some_and(|t| t.elapsed() < GAUGE_INTERVAL) {
                    gauge_deferred = entry.dirty.load(std::sync::atomic::Ordering::Acquire);
                    continue;
                }
                if let Err(e) = self.refresh(&entry).await {
                    tracing::warn!(error = %e, "refreshing cockpit figures");
                }
                if gauge_only {
                    gauge_at = Some(Instant::now());
                }
            }
        }
    }

    fn invalidate_quietly(&self) {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        for entry in entries.values() {
            entry
                .dirty
                .store(true, std::sync::atomic::Ordering::Release);
        }
    }
}

/// The in-process event consumer of the cockpit (consumer name `dashboard`): invalidates the
/// hub on every event that moves figures (the outbox's `dashboard` flag).
///
/// It is an `events-pg` [`BroadcastConsumer`] plus a task that reads it
/// ([`DashboardConsumer::spawn`]), rather than an `EventConsumer` implemented here: the trait's
/// signature names a sqlx connection, and `app` does not depend on sqlx (the dependency rule,
/// `deny.toml`). A subscriber that falls behind (`Lagged`) invalidates too — it cannot miss a
/// change, only coalesce several.
pub struct DashboardConsumer {
    broadcast: BroadcastConsumer,
    rx: broadcast::Receiver<Arc<OutboxEvent>>,
}

impl std::fmt::Debug for DashboardConsumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DashboardConsumer").finish_non_exhaustive()
    }
}

impl Default for DashboardConsumer {
    fn default() -> Self {
        Self::new()
    }
}

impl DashboardConsumer {
    /// The consumer's name (its metrics label).
    pub const NAME: &'static str = "dashboard";

    /// A consumer, subscribed at once (nothing the pipeline delivers after this is missed).
    pub fn new() -> DashboardConsumer {
        // Only wake-ups travel here, and a lag invalidates anyway: a small buffer is enough.
        let broadcast = BroadcastConsumer::new(Self::NAME, 64);
        let rx = broadcast.subscribe();
        DashboardConsumer { broadcast, rx }
    }

    /// The consumer to register with the event pipeline.
    pub fn consumer(&self) -> Arc<dyn EventConsumer> {
        Arc::new(self.broadcast.clone())
    }

    /// Reads the deliveries until `closing`, invalidating `hub` on each that moves figures.
    pub fn spawn(
        self,
        hub: Arc<DashboardHub>,
        mut closing: watch::Receiver<bool>,
    ) -> tokio::task::JoinHandle<()> {
        let DashboardConsumer { broadcast, mut rx } = self;
        tokio::spawn(async move {
            // Keeps a sender alive, so `Closed` means nothing but a bug.
            let _broadcast = broadcast;
            loop {
                tokio::select! {
                    biased;
                    () = closed(&mut closing) => return,
                    received = rx.recv() => match received {
                        Ok(event) if event.dashboard => hub.invalidate(),
                        Ok(_) => {}
                        Err(RecvError::Lagged(_)) => hub.invalidate(),
                        Err(RecvError::Closed) => return,
                    },
                }
            }
        })
    }
}
