//! Test support for embedders (feature `testing`): an in-memory [`FollowUpStore`], proptest
//! strategies, and a tiny [`block_on`] executor so async services can be driven without a
//! runtime.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::pin::pin;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::task::{Context, Poll, Wake, Waker};

use proptest::prelude::*;
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

use freshplan_kernel::{CloudEvent, TerritoryId};
use freshplan_leads::activity::Activity;
use freshplan_leads::model::BusinessType;
use freshplan_leads::status::LeadStatus;

use crate::cockpit::CockpitRow;
use crate::plan::{Candidate, due_at};
use crate::port::{FollowUpStore, FollowUpTx, OutgoingMail, ProcessedFollowUp, StoreError};
use crate::stage::{FollowUpRecord, SkipReason, Stage};

// ---------------------------------------------------------------------------------------------
// block_on
// ---------------------------------------------------------------------------------------------

#[derive(Default)]
struct Signal {
    woken: Mutex<bool>,
    cond: Condvar,
}

impl Wake for Signal {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        *self.woken.lock().unwrap_or_else(|e| e.into_inner()) = true;
        self.cond.notify_one();
    }
}

/// Runs a future to completion on the current thread (a minimal executor for tests and doc
/// examples; the domain needs no runtime).
pub fn block_on<F: Future>(future: F) -> F::Output {
    let signal = Arc::new(Signal::default());
    let waker = Waker::from(Arc::clone(&signal));
    let mut cx = Context::from_waker(&waker);
    let mut future = pin!(future);
    loop {
        if let Poll::Ready(out) = future.as_mut().poll(&mut cx) {
            return out;
        }
        let mut woken = signal.woken.lock().unwrap_or_else(|e| e.into_inner());
        while !*woken {
            woken = signal.cond.wait(woken).unwrap_or_else(|e| e.into_inner());
        }
        *woken = false;
    }
}

/// Returns `Pending` once (waking itself), so that other futures polled by the same task — the
/// concurrent batches of a run — get their turn, as they would while a real store waits for the
/// database.
pub async fn yield_now() {
    let mut yielded = false;
    std::future::poll_fn(|cx| {
        if yielded {
            Poll::Ready(())
        } else {
            yielded = true;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// In-memory store
// ---------------------------------------------------------------------------------------------

/// A processed stage as the in-memory store keeps it.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredRecord {
    /// The lead.
    pub lead_id: Uuid,
    /// The lead's territory.
    pub territory: TerritoryId,
    /// The record.
    pub record: FollowUpRecord,
}

#[derive(Debug, Default)]
struct State {
    candidates: BTreeMap<Uuid, Candidate>,
    records: Vec<StoredRecord>,
    mails: Vec<OutgoingMail>,
    activities: Vec<Activity>,
    events: Vec<CloudEvent>,
    /// Leads claimed by an open transaction (the `FOR UPDATE` locks).
    locked: BTreeSet<Uuid>,
    /// The most leads locked at once (batches in flight overlap when it exceeds a batch).
    max_locked: usize,
    /// Commits that still succeed before `failing_commits` fail (to test rollback).
    commits_before_failure: usize,
    /// Commits that fail once `commits_before_failure` is used up.
    failing_commits: usize,
}

/// An in-memory [`FollowUpStore`] with the semantics the PostgreSQL adapter must have:
/// transactions buffer their writes and apply them atomically on commit; claimed leads are
/// locked until the transaction ends and skipped by other transactions (`SKIP LOCKED`); a
/// second record for the same `(lead, stage)` fails with [`StoreError::AlreadyRecorded`].
///
/// Cloning shares the data (like a connection pool).
#[derive(Debug, Clone, Default)]
pub struct InMemoryFollowUpStore {
    state: Arc<Mutex<State>>,
}

impl InMemoryFollowUpStore {
    /// An empty store.
    pub fn new() -> InMemoryFollowUpStore {
        InMemoryFollowUpStore::default()
    }

    /// A store holding `candidates`.
    pub fn with_candidates(
        candidates: impl IntoIterator<Item = Candidate>,
    ) -> InMemoryFollowUpStore {
        let store = InMemoryFollowUpStore::new();
        for c in candidates {
            store.insert(c);
        }
        store
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Inserts or replaces a lead.
    pub fn insert(&self, candidate: Candidate) {
        self.lock().candidates.insert(candidate.lead_id, candidate);
    }

    /// Changes a lead in place (e.g. a status change or a new contact between runs).
    pub fn update(&self, lead_id: Uuid, change: impl FnOnce(&mut Candidate)) {
        if let Some(c) = self.lock().candidates.get_mut(&lead_id) {
            change(c);
        }
    }

    /// The current state of a lead.
    pub fn candidate(&self, lead_id: Uuid) -> Option<Candidate> {
        self.lock().candidates.get(&lead_id).cloned()
    }

    /// Every lead, by id.
    pub fn candidates(&self) -> Vec<Candidate> {
        self.lock().candidates.values().cloned().collect()
    }

    /// Committed follow-up records, in commit order.
    pub fn records(&self) -> Vec<StoredRecord> {
        self.lock().records.clone()
    }

    /// The committed mail outbox, in commit order.
    pub fn mails(&self) -> Vec<OutgoingMail> {
        self.lock().mails.clone()
    }

    /// Committed timeline entries, in commit order.
    pub fn activities(&self) -> Vec<Activity> {
        self.lock().activities.clone()
    }

    /// The committed event outbox, in commit order.
    pub fn events(&self) -> Vec<CloudEvent> {
        self.lock().events.clone()
    }

    /// Appends an event to the outbox (e.g. the `lead.followup.processed.v1` a run returns).
    pub fn append_event(&self, event: CloudEvent) {
        self.lock().events.push(event);
    }

    /// The most leads held by open transactions at any one time so far.
    pub fn max_locked(&self) -> usize {
        self.lock().max_locked
    }

    /// Makes the next `n` commits fail (and roll back), to test crash safety.
    pub fn fail_next_commits(&self, n: usize) {
        self.fail_commits_after(0, n);
    }

    /// Lets `ok` more commits succeed, then makes `n` commits fail (and roll back).
    pub fn fail_commits_after(&self, ok: usize, n: usize) {
        let mut state = self.lock();
        state.commits_before_failure = ok;
        state.failing_commits = n;
    }

    /// The cockpit rows of every lead (owner unknown to this store: `None`).
    pub fn cockpit_rows(&self) -> Vec<CockpitRow> {
        self.lock()
            .candidates
            .values()
            .map(|c| CockpitRow {
                territory: c.territory,
                owner: None,
                status: c.status,
                clock_stopped: c.clock_stopped,
                t3: c.t3,
                t7: c.t7,
            })
            .collect()
    }
}

/// A transaction of [`InMemoryFollowUpStore`].
#[derive(Debug)]
pub struct InMemoryTx {
    store: InMemoryFollowUpStore,
    claimed: BTreeSet<Uuid>,
    pending: Vec<ProcessedFollowUp>,
    done: bool,
}

impl InMemoryTx {
    fn release(&mut self) {
        if !self.claimed.is_empty() {
            let mut state = self.store.lock();
            for id in &self.claimed {
                state.locked.remove(id);
            }
            self.claimed.clear();
        }
    }
}

impl Drop for InMemoryTx {
    fn drop(&mut self) {
        // Rollback: pending writes are discarded, locks released.
        if !self.done {
            self.release();
        }
    }
}

/// The adapter's coarse pre-selection (what the SQL `WHERE` does): open, clock running, next
/// stage due. Business hours are left to the domain's planner.
fn claimable(c: &Candidate, now: OffsetDateTime) -> bool {
    c.status.is_open()
        && !c.clock_stopped
        && c.next_stage()
            .is_some_and(|stage| due_at(c.registered_at, stage) <= now)
}

impl FollowUpTx for InMemoryTx {
    async fn claim_due(
        &mut self,
        now: OffsetDateTime,
        after: Option<Uuid>,
        limit: usize,
    ) -> Result<Vec<Candidate>, StoreError> {
        // Like a round trip to a database: lets other transactions of the same task run.
        yield_now().await;
        let mut state = self.store.lock();
        let State {
            candidates, locked, ..
        } = &mut *state;
        let mut out = Vec::new();
        for c in candidates.values() {
            if out.len() >= limit {
                break;
            }
            if after.is_some_and(|a| c.lead_id <= a) || !claimable(c, now) {
                continue;
            }
            if locked.contains(&c.lead_id) && !self.claimed.contains(&c.lead_id) {
                continue; // SKIP LOCKED
            }
            locked.insert(c.lead_id);
            self.claimed.insert(c.lead_id);
            out.push(c.clone());
        }
        state.max_locked = state.max_locked.max(state.locked.len());
        Ok(out)
    }

    async fn record(&mut self, processed: ProcessedFollowUp) -> Result<(), StoreError> {
        let stage = processed.record.stage;
        let duplicate = {
            let state = self.store.lock();
            state
                .records
                .iter()
                .any(|r| r.lead_id == processed.lead_id && r.record.stage == stage)
        } || self
            .pending
            .iter()
            .any(|p| p.lead_id == processed.lead_id && p.record.stage == stage);
        if duplicate {
            return Err(StoreError::AlreadyRecorded {
                lead_id: processed.lead_id,
                stage,
            });
        }
        self.pending.push(processed);
        Ok(())
    }

    async fn commit(mut self) -> Result<(), StoreError> {
        yield_now().await;
        {
            let mut state = self.store.lock();
            if state.commits_before_failure > 0 {
                state.commits_before_failure -= 1;
            } else if state.failing_commits > 0 {
                state.failing_commits -= 1;
                drop(state);
                return Err(StoreError::backend(std::io::Error::other(
                    "injected commit failure",
                )));
            }
            for p in self.pending.drain(..) {
                if let Some(c) = state.candidates.get_mut(&p.lead_id) {
                    match p.record.stage {
                        Stage::T3 => c.t3 = Some(p.record),
                        Stage::T7 => c.t7 = Some(p.record),
                    }
                }
                state.records.push(StoredRecord {
                    lead_id: p.lead_id,
                    territory: p.territory,
                    record: p.record,
                });
                state.activities.push(p.activity);
                state.mails.extend(p.mail);
                state.events.extend(p.events);
            }
        }
        self.release();
        self.done = true;
        Ok(())
    }
}

impl FollowUpStore for InMemoryFollowUpStore {
    type Tx = InMemoryTx;

    async fn begin(&self) -> Result<InMemoryTx, StoreError> {
        Ok(InMemoryTx {
            store: self.clone(),
            claimed: BTreeSet::new(),
            pending: Vec::new(),
            done: false,
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Strategies
// ---------------------------------------------------------------------------------------------

/// 1 January 2025, 00:00 UTC: the start of generated instants.
const EPOCH: i64 = 1_735_689_600;

/// An instant between 2025 and 2030 (UTC), to the minute.
pub fn instant() -> impl Strategy<Value = OffsetDateTime> {
    instant_between(
        OffsetDateTime::from_unix_timestamp(EPOCH).expect("in range"),
        OffsetDateTime::from_unix_timestamp(EPOCH + 6 * 365 * 24 * 60 * 60).expect("in range"),
    )
}

/// An instant in `[from, to)`, to the minute (`from` when the range is shorter than a minute).
pub fn instant_between(
    from: OffsetDateTime,
    to: OffsetDateTime,
) -> impl Strategy<Value = OffsetDateTime> {
    let minutes = ((to - from).whole_minutes()).max(1);
    (0..minutes).prop_map(move |m| from + Duration::minutes(m))
}

/// Either stage.
pub fn stage() -> impl Strategy<Value = Stage> {
    prop_oneof![Just(Stage::T3), Just(Stage::T7)]
}

/// Any skip reason.
pub fn skip_reason() -> impl Strategy<Value = SkipReason> {
    proptest::sample::select(SkipReason::ALL.to_vec())
}

/// Any lead status.
pub fn lead_status() -> impl Strategy<Value = LeadStatus> {
    proptest::sample::select(LeadStatus::ALL.to_vec())
}

/// Mostly open statuses (`REGISTERED`/`ACTIVE`), sometimes anything.
pub fn mostly_open_status() -> impl Strategy<Value = LeadStatus> {
    prop_oneof![
        3 => prop_oneof![Just(LeadStatus::Registered), Just(LeadStatus::Active)],
        1 => lead_status(),
    ]
}

/// A record of `stage`, sent or skipped, processed at `at`.
pub fn record(stage: Stage, at: OffsetDateTime) -> impl Strategy<Value = FollowUpRecord> {
    prop_oneof![
        Just(FollowUpRecord::sent(stage, at)),
        skip_reason().prop_map(move |r| FollowUpRecord::skipped(stage, r, at)),
    ]
}

/// Text that tries to break templates: placeholders, stray braces, markup, line breaks,
/// umlauts, and plain words.
pub fn template_value() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("{{".to_owned()),
        Just("}}".to_owned()),
        Just("{".to_owned()),
        Just("}".to_owned()),
        Just("{{company}}".to_owned()),
        Just("{{ nope }}".to_owned()),
        Just("<script>alert(1)</script>".to_owned()),
        Just("&amp;".to_owned()),
        Just("\"'".to_owned()),
        Just("\r\n".to_owned()),
        Just("Müller & Söhne".to_owned()),
        "[a-zA-Z0-9 äöüß.,-]{0,8}",
    ];
    proptest::collection::vec(piece, 0..6).prop_map(|pieces| pieces.concat())
}

/// Template source text: literals with single braces and placeholders (known and unknown),
/// sometimes malformed.
pub fn template_source() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        "[a-z <>/]{0,6}",
        Just("{".to_owned()),
        Just("}".to_owned()),
        Just("{{".to_owned()),
        Just("}}".to_owned()),
        Just(" {{company}} ".to_owned()),
        Just("{{company}}".to_owned()),
        Just(" {{ salutation }} ".to_owned()),
        Just(" {{unknown}} ".to_owned()),
    ];
    proptest::collection::vec(piece, 0..8).prop_map(|pieces| pieces.concat())
}

/// A lead snapshot registered at a random [`instant`], with the T+3/T+7 records (if any) after
/// their due dates and T+7 only after T+3 — the shapes a real store holds. Company names and
/// contact persons include hostile text ([`template_value`]).
pub fn candidate() -> impl Strategy<Value = Candidate> {
    candidate_with(instant())
}

/// Like [`candidate`], registered in `[from, to)`: use it to get leads around a given `now`
/// (e.g. registered 0–12 days before it, so some stages are due and some are not).
pub fn candidate_registered_between(
    from: OffsetDateTime,
    to: OffsetDateTime,
) -> impl Strategy<Value = Candidate> {
    candidate_with(instant_between(from, to))
}

fn candidate_with(
    registered: impl Strategy<Value = OffsetDateTime>,
) -> impl Strategy<Value = Candidate> {
    (
        (
            any::<u128>(),
            1i64..1000,
            freshplan_kernel::testing::territory_id(),
            mostly_open_status(),
            any::<bool>(),
        ),
        (
            registered,
            proptest::option::weighted(0.8, "[a-z]{1,8}@[a-z]{1,8}\\.(de|ch)|  "),
            any::<bool>(),
            proptest::option::of(-(20i64 * 24 * 60)..(20 * 24 * 60)),
        ),
        (
            proptest::option::of(proptest::sample::select(BusinessType::ALL.to_vec())),
            template_value(),
            proptest::option::of(template_value()),
            0u8..3,
            0i64..(3 * 24 * 60),
        ),
    )
        .prop_flat_map(|(head, contact, rest)| {
            let (id, version, territory, status, stopped) = head;
            let (registered_at, email, consent, contact_offset) = contact;
            let (business_type, company, person, done, delay) = rest;
            let base = Candidate {
                lead_id: Uuid::from_u128(id),
                version,
                territory,
                status,
                clock_stopped: stopped && id % 4 == 0,
                registered_at,
                email,
                email_consent: consent,
                last_meaningful_contact_at: contact_offset
                    .map(|m| registered_at + Duration::days(3) + Duration::minutes(m)),
                business_type,
                company_name: company,
                contact_person: person,
                t3: None,
                t7: None,
            };
            let t3_at = due_at(registered_at, Stage::T3) + Duration::minutes(delay);
            let t7_at = due_at(registered_at, Stage::T7) + Duration::minutes(delay);
            (
                Just(base),
                Just(done),
                record(Stage::T3, t3_at),
                record(Stage::T7, t7_at),
            )
                .prop_map(|(mut c, done, t3, t7)| {
                    if done >= 1 {
                        c.t3 = Some(t3);
                    }
                    if done >= 2 {
                        c.t7 = Some(t7);
                    }
                    c
                })
        })
}

/// Up to `max` candidates with distinct lead ids (see [`candidate`]).
pub fn candidates(max: usize) -> impl Strategy<Value = Vec<Candidate>> {
    proptest::collection::vec(candidate(), 0..=max).prop_map(dedupe)
}

fn dedupe(candidates: Vec<Candidate>) -> Vec<Candidate> {
    let mut seen = BTreeSet::new();
    candidates
        .into_iter()
        .filter(|c| seen.insert(c.lead_id))
        .collect()
}

/// Up to `max` candidates with distinct lead ids, registered in `[from, to)`.
pub fn candidates_registered_between(
    max: usize,
    from: OffsetDateTime,
    to: OffsetDateTime,
) -> impl Strategy<Value = Vec<Candidate>> {
    proptest::collection::vec(candidate_registered_between(from, to), 0..=max).prop_map(dedupe)
}

/// A cockpit row with an owner from the kernel's small user pool (so generated actors often
/// own generated rows).
pub fn cockpit_row() -> impl Strategy<Value = CockpitRow> {
    (
        freshplan_kernel::testing::territory_id(),
        proptest::option::weighted(0.9, freshplan_kernel::testing::user_id()),
        lead_status(),
        proptest::bool::weighted(0.2),
        instant(),
        0u8..3,
    )
        .prop_flat_map(|(territory, owner, status, clock_stopped, at, done)| {
            (
                record(Stage::T3, at),
                record(Stage::T7, at + Duration::days(4)),
            )
                .prop_map(move |(t3, t7)| CockpitRow {
                    territory,
                    owner: owner.clone(),
                    status,
                    clock_stopped,
                    t3: (done >= 1).then_some(t3),
                    t7: (done >= 2).then_some(t7),
                })
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use freshplan_leads::activity::ActivityType;
    use time::macros::datetime;

    fn lead(n: u128) -> Candidate {
        Candidate {
            lead_id: Uuid::from_u128(n),
            version: 1,
            territory: TerritoryId::De,
            status: LeadStatus::Registered,
            clock_stopped: false,
            registered_at: datetime!(2026-03-02 09:00 UTC),
            email: Some("a@b.de".into()),
            email_consent: true,
            last_meaningful_contact_at: None,
            business_type: None,
            company_name: "X".into(),
            contact_person: None,
            t3: None,
            t7: None,
        }
    }

    fn processed(n: u128, stage: Stage) -> ProcessedFollowUp {
        let at = datetime!(2026-03-05 09:00 UTC);
        ProcessedFollowUp {
            lead_id: Uuid::from_u128(n),
            territory: TerritoryId::De,
            record: FollowUpRecord::skipped(stage, SkipReason::NoEmail, at),
            activity: Activity::system(
                Uuid::from_u128(100 + n),
                Uuid::from_u128(n),
                ActivityType::FollowupSkipped,
                at,
                freshplan_kernel::Actor::system().user_id().clone(),
                None,
                serde_json::json!({}),
            ),
            mail: None,
            events: vec![],
        }
    }

    const NOW: OffsetDateTime = datetime!(2026-03-05 09:00 UTC);

    #[test]
    fn block_on_drives_a_future_that_yields() {
        struct YieldOnce(bool);
        impl Future for YieldOnce {
            type Output = u8;
            fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<u8> {
                if self.0 {
                    Poll::Ready(7)
                } else {
                    self.0 = true;
                    cx.waker().wake_by_ref();
                    Poll::Pending
                }
            }
        }
        assert_eq!(block_on(YieldOnce(false)), 7);
    }

    #[test]
    fn claims_skip_locked_rows_and_page_by_cursor() {
        let store = InMemoryFollowUpStore::with_candidates((1..=5).map(lead));
        block_on(async {
            let mut a = store.begin().await.unwrap();
            let first = a.claim_due(NOW, None, 2).await.unwrap();
            assert_eq!(
                first
                    .iter()
                    .map(|c| c.lead_id.as_u128())
                    .collect::<Vec<_>>(),
                [1, 2]
            );
            let mut b = store.begin().await.unwrap();
            let other = b.claim_due(NOW, None, 10).await.unwrap();
            assert_eq!(
                other
                    .iter()
                    .map(|c| c.lead_id.as_u128())
                    .collect::<Vec<_>>(),
                [3, 4, 5]
            );
            let next = a.claim_due(NOW, Some(Uuid::from_u128(2)), 2).await.unwrap();
            assert!(next.is_empty(), "3..5 are locked by b");
            drop(b);
            let next = a.claim_due(NOW, Some(Uuid::from_u128(2)), 2).await.unwrap();
            assert_eq!(
                next.iter().map(|c| c.lead_id.as_u128()).collect::<Vec<_>>(),
                [3, 4]
            );
        });
    }

    #[test]
    fn claims_only_open_running_due_leads() {
        let not_due = Candidate {
            registered_at: NOW,
            ..lead(1)
        };
        let stopped = Candidate {
            clock_stopped: true,
            ..lead(2)
        };
        let lost = Candidate {
            status: LeadStatus::Lost,
            ..lead(3)
        };
        let t3_done = Candidate {
            t3: Some(FollowUpRecord::sent(Stage::T3, NOW)),
            ..lead(4)
        };
        let due = lead(5);
        let store = InMemoryFollowUpStore::with_candidates([not_due, stopped, lost, t3_done, due]);
        let claimed = block_on(async {
            store
                .begin()
                .await
                .unwrap()
                .claim_due(NOW, None, 10)
                .await
                .unwrap()
        });
        assert_eq!(
            claimed
                .iter()
                .map(|c| c.lead_id.as_u128())
                .collect::<Vec<_>>(),
            [5]
        );
    }

    #[test]
    fn commit_applies_everything_and_drop_rolls_back() {
        let store = InMemoryFollowUpStore::with_candidates([lead(1), lead(2)]);
        block_on(async {
            let mut tx = store.begin().await.unwrap();
            tx.record(processed(1, Stage::T3)).await.unwrap();
            drop(tx);
            assert!(store.records().is_empty() && store.activities().is_empty());

            let mut tx = store.begin().await.unwrap();
            tx.record(processed(1, Stage::T3)).await.unwrap();
            tx.commit().await.unwrap();
            assert_eq!(store.records().len(), 1);
            assert_eq!(store.activities().len(), 1);
            assert!(store.candidate(Uuid::from_u128(1)).unwrap().t3.is_some());
        });
    }

    #[test]
    fn second_record_for_a_stage_is_refused() {
        let store = InMemoryFollowUpStore::with_candidates([lead(1)]);
        block_on(async {
            let mut tx = store.begin().await.unwrap();
            tx.record(processed(1, Stage::T3)).await.unwrap();
            assert!(matches!(
                tx.record(processed(1, Stage::T3)).await,
                Err(StoreError::AlreadyRecorded {
                    stage: Stage::T3,
                    ..
                })
            ));
            tx.commit().await.unwrap();
            let mut tx = store.begin().await.unwrap();
            assert!(matches!(
                tx.record(processed(1, Stage::T3)).await,
                Err(StoreError::AlreadyRecorded { .. })
            ));
            tx.record(processed(1, Stage::T7)).await.unwrap();
        });
    }

    #[test]
    fn failed_commit_writes_nothing_and_releases_locks() {
        let store = InMemoryFollowUpStore::with_candidates([lead(1)]);
        store.fail_next_commits(1);
        block_on(async {
            let mut tx = store.begin().await.unwrap();
            assert_eq!(tx.claim_due(NOW, None, 10).await.unwrap().len(), 1);
            tx.record(processed(1, Stage::T3)).await.unwrap();
            assert!(tx.commit().await.is_err());
            assert!(store.records().is_empty());
            let mut again = store.begin().await.unwrap();
            assert_eq!(again.claim_due(NOW, None, 10).await.unwrap().len(), 1);
        });
    }

    proptest! {
        #[test]
        fn generated_candidates_are_consistent(c in candidate()) {
            prop_assert!(c.t7.is_none() || c.t3.is_some());
            if let Some(r) = c.t3 {
                prop_assert_eq!(r.stage, Stage::T3);
                prop_assert!(r.processed_at >= due_at(c.registered_at, Stage::T3));
            }
            if let Some(r) = c.t7 {
                prop_assert_eq!(r.stage, Stage::T7);
            }
        }
    }
}
