//! In-memory adapters of the lead ports (feature `testing`), for embedders' tests and the
//! domain's own. They mimic what the database guarantees: visibility by the access policy (row-level
//! security), the duplicate unique indexes over non-deleted rows, optimistic versions, and
//! all-or-nothing commits (a transaction works on a snapshot; a commit after another commit
//! fails like a serialisation failure).

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::pin::pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Wake, Waker};

use time::OffsetDateTime;
use uuid::Uuid;

use freshplan_kernel::{Actor, CloudEvent};

use crate::access::can_read;
use crate::activity::Activity;
use crate::duplicates::DuplicateKeys;
use crate::lead::Lead;
use crate::personal::{self, AuditEntry, ConsentChange, ErasureCounts, PersonalRecords};
use crate::ports::{
    IdempotencyRecord, LeadQuery, LeadStore, LeadTx, Page, SortField, StoreError, WriteError,
};
use crate::protection::{ProtectionPolicy, SweepFacts, next_due};
use crate::status::LeadStatus;

/// Runs a future to completion on the current thread (the ports' futures never wait on I/O in
/// memory, so a minimal executor suffices; no runtime dependency).
pub fn block_on<F: Future>(future: F) -> F::Output {
    struct ThreadWaker(std::thread::Thread);
    impl Wake for ThreadWaker {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(ThreadWaker(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut future = pin!(future);
    loop {
        match future.as_mut().poll(&mut cx) {
            Poll::Ready(v) => return v,
            Poll::Pending => std::thread::park(),
        }
    }
}

#[derive(Debug, Clone, Default)]
struct State {
    generation: u64,
    leads: BTreeMap<Uuid, Lead>,
    activities: Vec<Activity>,
    events: Vec<CloudEvent>,
    idempotency: HashMap<(String, String), IdempotencyRecord>,
    consent: Vec<ConsentChange>,
    audit: Vec<AuditEntry>,
}

/// An in-memory lead store. Cloning shares the data.
#[derive(Debug, Clone, Default)]
pub struct InMemoryLeadStore {
    state: Arc<Mutex<State>>,
    policy: ProtectionPolicy,
}

impl InMemoryLeadStore {
    /// A store whose sweep index uses `policy` (the default policy otherwise).
    pub fn with_policy(policy: ProtectionPolicy) -> Self {
        InMemoryLeadStore {
            state: Arc::default(),
            policy,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Every committed event, in commit order.
    pub fn events(&self) -> Vec<CloudEvent> {
        self.lock().events.clone()
    }

    /// Every committed activity.
    pub fn activities(&self) -> Vec<Activity> {
        self.lock().activities.clone()
    }

    /// The committed consent ledger.
    pub fn consent_changes(&self) -> Vec<ConsentChange> {
        self.lock().consent.clone()
    }

    /// Every committed lead, deleted ones included.
    pub fn leads(&self) -> Vec<Lead> {
        self.lock().leads.values().cloned().collect()
    }

    /// Puts a lead in directly (test set-up), bypassing the service.
    pub fn seed(&self, lead: Lead) {
        let mut s = self.lock();
        s.leads.insert(lead.id, lead);
        s.generation += 1;
    }
}

/// A transaction on an [`InMemoryLeadStore`].
#[derive(Debug)]
pub struct InMemoryTx {
    shared: Arc<Mutex<State>>,
    base: u64,
    work: State,
    actor: Actor,
    policy: ProtectionPolicy,
}

impl InMemoryTx {
    fn visible(&self, lead: &Lead) -> bool {
        can_read(
            &self.actor,
            &crate::access::LeadFacts {
                territory: lead.territory,
                owner: lead.owner.as_ref(),
                collaborators: &lead.collaborators,
            },
        )
    }

    fn collision(&self, lead: &Lead) -> Option<crate::duplicates::DuplicateKind> {
        let keys = lead.data.duplicate_keys();
        self.work
            .leads
            .values()
            .filter(|o| o.id != lead.id && !o.is_deleted())
            .find_map(|o| keys.collides_with(&o.data.duplicate_keys()))
    }

    fn idem_key(&self, key: &str) -> (String, String) {
        (self.actor.user_id().as_str().to_owned(), key.to_owned())
    }
}

impl LeadStore for InMemoryLeadStore {
    type Tx = InMemoryTx;

    async fn begin(&self, actor: &Actor) -> Result<InMemoryTx, StoreError> {
        let work = self.lock().clone();
        Ok(InMemoryTx {
            shared: self.state.clone(),
            base: work.generation,
            work,
            actor: actor.clone(),
            policy: self.policy,
        })
    }
}

/// The `page`-th page of `size` items of `all` (already in order), with the total.
fn page_of<T>(all: Vec<T>, page: u32, size: u32) -> Page<T> {
    let total = all.len() as u64;
    let items = all
        .into_iter()
        .skip((page as usize) * (size as usize))
        .take(size as usize)
        .collect();
    Page { items, total }
}

/// A lead's timeline entries, in no particular order.
fn timeline_of(work: &State, lead_id: Uuid) -> Vec<Activity> {
    work.activities
        .iter()
        .filter(|a| a.lead_id == lead_id)
        .cloned()
        .collect()
}

fn cmp_opt<T: Ord>(a: &Option<T>, b: &Option<T>) -> std::cmp::Ordering {
    // NULLs last, as the SQL adapter sorts them.
    match (a, b) {
        (Some(a), Some(b)) => a.cmp(b),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => std::cmp::Ordering::Equal,
    }
}

impl LeadTx for InMemoryTx {
    async fn get(&mut self, id: Uuid) -> Result<Option<Lead>, StoreError> {
        Ok(self
            .work
            .leads
            .get(&id)
            .filter(|l| self.visible(l))
            .cloned())
    }

    async fn find_duplicate(
        &mut self,
        keys: &DuplicateKeys,
        except: Option<Uuid>,
    ) -> Result<Option<Lead>, StoreError> {
        Ok(self
            .work
            .leads
            .values()
            .filter(|o| Some(o.id) != except && !o.is_deleted() && self.visible(o))
            .find(|o| keys.collides_with(&o.data.duplicate_keys()).is_some())
            .cloned())
    }

    async fn insert(&mut self, lead: &Lead) -> Result<(), WriteError> {
        if let Some(kind) = self.collision(lead) {
            return Err(WriteError::Duplicate(kind));
        }
        self.work.leads.insert(lead.id, lead.clone());
        Ok(())
    }

    async fn update(&mut self, lead: &Lead, expected_version: i64) -> Result<(), WriteError> {
        match self.work.leads.get(&lead.id) {
            Some(current) if current.version == expected_version => {}
            _ => return Err(WriteError::VersionConflict),
        }
        if !lead.is_deleted()
            && let Some(kind) = self.collision(lead)
        {
            return Err(WriteError::Duplicate(kind));
        }
        self.work.leads.insert(lead.id, lead.clone());
        Ok(())
    }

    async fn insert_activity(&mut self, activity: &Activity) -> Result<(), StoreError> {
        self.work.activities.push(activity.clone());
        Ok(())
    }

    async fn list_activities(
        &mut self,
        lead_id: Uuid,
        page: u32,
        size: u32,
    ) -> Result<Page<Activity>, StoreError> {
        let mut all = timeline_of(&self.work, lead_id);
        all.sort_by(|a, b| b.occurred_at.cmp(&a.occurred_at).then(b.id.cmp(&a.id)));
        Ok(page_of(all, page, size))
    }

    async fn list(&mut self, q: &LeadQuery) -> Result<Page<Lead>, StoreError> {
        let needle = q.q.as_ref().map(|s| s.to_lowercase());
        let mut rows: Vec<Lead> = self
            .work
            .leads
            .values()
            .filter(|l| self.visible(l))
            .filter(|l| q.include_deleted || !l.is_deleted())
            .filter(|l| q.statuses.is_empty() || q.statuses.contains(&l.status))
            .filter(|l| q.territory.is_none_or(|t| t == l.territory))
            .filter(|l| q.owner.as_ref().is_none_or(|o| l.owner.as_ref() == Some(o)))
            .filter(|l| {
                q.business_type
                    .is_none_or(|b| l.data.business_type == Some(b))
            })
            .filter(|l| {
                needle.as_ref().is_none_or(|n| {
                    [
                        Some(l.data.company_name.as_str()),
                        l.data.contact_person.as_deref(),
                        l.data.email.as_ref().map(|e| e.as_str()),
                        l.data.city.as_deref(),
                    ]
                    .into_iter()
                    .flatten()
                    .any(|f| f.to_lowercase().contains(n.as_str()))
                })
            })
            .cloned()
            .collect();
        rows.sort_by(|a, b| {
            let o = match q.sort {
                SortField::CreatedAt => a.created_at.cmp(&b.created_at),
                SortField::UpdatedAt => a.updated_at.cmp(&b.updated_at),
                SortField::CompanyName => a
                    .data
                    .company_name
                    .as_str()
                    .to_lowercase()
                    .cmp(&b.data.company_name.as_str().to_lowercase()),
                SortField::Status => a.status.as_str().cmp(b.status.as_str()),
                SortField::RegisteredAt => a.registered_at.cmp(&b.registered_at),
                SortField::LastActivityAt => cmp_opt(&a.last_activity_at, &b.last_activity_at),
                SortField::EstimatedVolume => {
                    cmp_opt(&a.data.estimated_volume, &b.data.estimated_volume)
                }
                SortField::City => cmp_opt(&a.data.city, &b.data.city),
            }
            .then(a.id.cmp(&b.id));
            if q.descending { o.reverse() } else { o }
        });
        Ok(page_of(rows, q.page, q.size))
    }

    async fn append_event(&mut self, event: &CloudEvent) -> Result<(), StoreError> {
        self.work.events.push(event.clone());
        Ok(())
    }

    async fn idempotency_get(
        &mut self,
        key: &str,
    ) -> Result<Option<IdempotencyRecord>, StoreError> {
        Ok(self.work.idempotency.get(&self.idem_key(key)).cloned())
    }

    async fn idempotency_put(
        &mut self,
        key: &str,
        record: &IdempotencyRecord,
    ) -> Result<(), WriteError> {
        let k = self.idem_key(key);
        self.work.idempotency.insert(k, record.clone());
        Ok(())
    }

    async fn due_for_sweep(
        &mut self,
        now: OffsetDateTime,
        limit: u32,
    ) -> Result<Vec<Lead>, StoreError> {
        let policy = self.policy;
        Ok(self
            .work
            .leads
            .values()
            .filter(|l| {
                next_due(
                    &SweepFacts {
                        status: l.status,
                        registered_at: l.registered_at,
                        last_meaningful_contact_at: l.last_meaningful_contact_at,
                        protection: &l.protection,
                    },
                    &policy,
                )
                .is_some_and(|d| d <= now)
            })
            .take(limit as usize)
            .cloned()
            .collect())
    }

    async fn get_nowait(&mut self, id: Uuid) -> Result<Option<Lead>, WriteError> {
        // Nothing holds rows here: a concurrent writer shows up at commit instead.
        Ok(self.get(id).await?)
    }

    async fn insert_consent_change(&mut self, change: &ConsentChange) -> Result<(), StoreError> {
        self.work.consent.push(change.clone());
        Ok(())
    }

    async fn personal_records(&mut self, lead_id: Uuid) -> Result<PersonalRecords, StoreError> {
        let mut activities = timeline_of(&self.work, lead_id);
        activities.sort_by(|a, b| a.occurred_at.cmp(&b.occurred_at).then(a.id.cmp(&b.id)));
        let subject = lead_id.to_string();
        let events = self
            .work
            .events
            .iter()
            .filter(|e| e.subject.as_deref() == Some(subject.as_str()))
            .filter(|e| {
                personal::PERSONAL_EVENT_DATA
                    .iter()
                    .any(|(t, _)| *t == e.event_type)
            })
            .map(|e| serde_json::to_value(e).map_err(|e| StoreError::msg(e.to_string())))
            .collect::<Result<_, _>>()?;
        Ok(PersonalRecords {
            activities,
            consent: self
                .work
                .consent
                .iter()
                .filter(|c| c.lead_id == lead_id)
                .cloned()
                .collect(),
            // Mails live in the follow-up module's outbox, which this store does not hold.
            mails: Vec::new(),
            events,
        })
    }

    async fn erase_related(
        &mut self,
        lead_id: Uuid,
        _now: OffsetDateTime,
    ) -> Result<ErasureCounts, StoreError> {
        let mut counts = ErasureCounts::default();
        for a in self
            .work
            .activities
            .iter_mut()
            .filter(|a| a.lead_id == lead_id)
        {
            if personal::redact_activity(a) {
                counts.activities += 1;
            }
        }
        let subject = lead_id.to_string();
        for e in self
            .work
            .events
            .iter_mut()
            .filter(|e| e.subject.as_deref() == Some(subject.as_str()))
        {
            let mut json = serde_json::to_value(&*e).map_err(|e| StoreError::msg(e.to_string()))?;
            if personal::redact_event(&mut json) {
                *e = serde_json::from_value(json).map_err(|e| StoreError::msg(e.to_string()))?;
                counts.events += 1;
            }
        }
        let before = self.work.idempotency.len();
        self.work.idempotency.retain(|_, r| r.lead_id != lead_id);
        counts.idempotency_keys = (before - self.work.idempotency.len()) as u64;
        Ok(counts)
    }

    async fn due_for_retention(
        &mut self,
        cutoff: OffsetDateTime,
        limit: u32,
    ) -> Result<Vec<Lead>, StoreError> {
        let mut due: Vec<Lead> = self
            .work
            .leads
            .values()
            .filter(|l| {
                matches!(
                    l.status,
                    LeadStatus::Lost | LeadStatus::Expired | LeadStatus::Deleted
                ) && l.erased_at.is_none()
                    && l.updated_at <= cutoff
            })
            .cloned()
            .collect();
        due.sort_by(|a, b| a.updated_at.cmp(&b.updated_at).then(a.id.cmp(&b.id)));
        due.truncate(limit as usize);
        Ok(due)
    }

    async fn erase_mail_bodies(
        &mut self,
        _cutoff: OffsetDateTime,
        _now: OffsetDateTime,
        _limit: u32,
    ) -> Result<u32, StoreError> {
        // No mails here (see `personal_records`).
        Ok(0)
    }

    async fn insert_audit(&mut self, entry: &AuditEntry) -> Result<(), StoreError> {
        self.work.audit.push(entry.clone());
        Ok(())
    }

    async fn list_audit(&mut self, page: u32, size: u32) -> Result<Page<AuditEntry>, StoreError> {
        let mut all = self.work.audit.clone();
        all.sort_by(|a, b| b.at.cmp(&a.at).then(b.id.cmp(&a.id)));
        Ok(page_of(all, page, size))
    }

    async fn taken_keys(
        &mut self,
        keys: &[DuplicateKeys],
    ) -> Result<Vec<Option<(Uuid, crate::duplicates::DuplicateKind)>>, StoreError> {
        Ok(keys
            .iter()
            .map(|k| {
                let live = || self.work.leads.values().filter(|o| !o.is_deleted());
                let by = |kind| {
                    live()
                        .filter(|o| k.collides_with(&o.data.duplicate_keys()) == Some(kind))
                        .map(|o| o.id)
                        .min()
                        .map(|id| (id, kind))
                };
                by(crate::duplicates::DuplicateKind::Email)
                    .or_else(|| by(crate::duplicates::DuplicateKind::Company))
            })
            .collect())
    }

    async fn commit(mut self) -> Result<(), StoreError> {
        let mut shared = self.shared.lock().unwrap_or_else(|e| e.into_inner());
        if shared.generation != self.base {
            return Err(StoreError::msg(
                "could not serialize access due to concurrent update",
            ));
        }
        self.work.generation = self.base + 1;
        *shared = std::mem::take(&mut self.work);
        Ok(())
    }
}
