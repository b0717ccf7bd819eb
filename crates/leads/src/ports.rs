//! The ports `LeadService` needs: a store that opens a unit of work (repository + outbox on one
//! transaction). Adapters implement them; `freshplan-store-postgres` is the production one and
//! `crate::memory` (feature `testing`) the in-memory one.

use std::future::Future;

use time::OffsetDateTime;
use uuid::Uuid;

use freshplan_kernel::{Actor, CloudEvent, TerritoryId, UserId};

use crate::activity::Activity;
use crate::duplicates::{DuplicateKeys, DuplicateKind};
use crate::lead::Lead;
use crate::model::BusinessType;
use crate::personal::{AuditEntry, ConsentChange, ErasureCounts, PersonalRecords};
use crate::status::LeadStatus;

/// An infrastructure failure (the database is down, a query failed). Never a client's fault.
#[derive(Debug, thiserror::Error)]
#[error("store failure: {message}")]
pub struct StoreError {
    /// What failed.
    pub message: String,
    /// The underlying cause.
    #[source]
    pub source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl StoreError {
    /// A store error with a message only.
    pub fn msg(message: impl Into<String>) -> StoreError {
        StoreError {
            message: message.into(),
            source: None,
        }
    }
}

/// Why a write failed.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// A uniqueness rule of SPEC §4.2 (enforced by the store too, so races are caught).
    #[error("duplicate lead ({0:?})")]
    Duplicate(DuplicateKind),
    /// The row changed since it was read (optimistic concurrency).
    #[error("the lead was changed concurrently")]
    VersionConflict,
    /// The idempotency key was stored concurrently by another request.
    #[error("the idempotency key is in use")]
    IdempotencyKeyTaken,
    /// The row is locked by another transaction (e.g. a follow-up run holds the lead) and the
    /// operation does not wait.
    #[error("the lead is locked by another transaction")]
    Busy,
    /// Anything else.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The sort fields of `GET /api/leads`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SortField {
    /// `createdAt` (default).
    #[default]
    CreatedAt,
    /// `updatedAt`.
    UpdatedAt,
    /// `companyName`.
    CompanyName,
    /// `status`.
    Status,
    /// `registeredAt`.
    RegisteredAt,
    /// `lastActivityAt`.
    LastActivityAt,
    /// `estimatedVolume`.
    EstimatedVolume,
    /// `city`.
    City,
}

impl SortField {
    /// Parses an API sort field name.
    pub fn parse(s: &str) -> Option<SortField> {
        Some(match s {
            "createdAt" => SortField::CreatedAt,
            "updatedAt" => SortField::UpdatedAt,
            "companyName" => SortField::CompanyName,
            "status" => SortField::Status,
            "registeredAt" => SortField::RegisteredAt,
            "lastActivityAt" => SortField::LastActivityAt,
            "estimatedVolume" => SortField::EstimatedVolume,
            "city" => SortField::City,
            _ => return None,
        })
    }
}

/// A list query (SPEC §9). Sorting ties break on the id, so pages are stable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeadQuery {
    /// 0-based page.
    pub page: u32,
    /// 1–200.
    pub size: u32,
    /// Sort field.
    pub sort: SortField,
    /// Descending?
    pub descending: bool,
    /// Status filter (any of).
    pub statuses: Vec<LeadStatus>,
    /// Territory filter.
    pub territory: Option<TerritoryId>,
    /// Owner filter.
    pub owner: Option<UserId>,
    /// Business type filter.
    pub business_type: Option<BusinessType>,
    /// Case-insensitive substring of company, contact, email, city; `%`/`_` are literal.
    pub q: Option<String>,
    /// Include soft-deleted leads (admins only).
    pub include_deleted: bool,
}

impl Default for LeadQuery {
    fn default() -> Self {
        LeadQuery {
            page: 0,
            size: 20,
            sort: SortField::CreatedAt,
            descending: true,
            statuses: Vec::new(),
            territory: None,
            owner: None,
            business_type: None,
            q: None,
            include_deleted: false,
        }
    }
}

/// A page of results with the total count.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    /// The items of this page.
    pub items: Vec<T>,
    /// Total matching items.
    pub total: u64,
}

/// What an idempotency key recorded: the hash of the first request body and the lead it created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyRecord {
    /// A hash of the request body.
    pub request_hash: String,
    /// The created lead.
    pub lead_id: Uuid,
    /// When it was recorded (keys live 24 h).
    pub created_at: OffsetDateTime,
}

/// Opens units of work. The actor's context is bound to the transaction (the Postgres adapter
/// sets it with `set_config(…, true)` so row-level security applies).
#[cfg_attr(feature = "mocks", mockall::automock(type Tx = MockLeadTx;))]
pub trait LeadStore: Send + Sync + 'static {
    /// The unit of work.
    type Tx: LeadTx;

    /// Begins a transaction as `actor`.
    fn begin(&self, actor: &Actor) -> impl Future<Output = Result<Self::Tx, StoreError>> + Send;

    /// Begins a transaction as `actor` for reads only, which a replica of the database may serve
    /// (the lead list): it sees at least every write committed before it began — a caller reads
    /// its own writes — and is not used to write. Defaults to [`LeadStore::begin`].
    fn begin_read(
        &self,
        actor: &Actor,
    ) -> impl Future<Output = Result<Self::Tx, StoreError>> + Send {
        self.begin(actor)
    }
}

/// One transaction: repository, timeline and outbox. Dropping it without `commit` rolls back.
#[cfg_attr(feature = "mocks", mockall::automock)]
pub trait LeadTx: Send {
    /// A lead by id, locked for update, including soft-deleted ones; `None` when missing or not
    /// visible to the actor.
    fn get(&mut self, id: Uuid) -> impl Future<Output = Result<Option<Lead>, StoreError>> + Send;

    /// A lead by id for reading only: like [`LeadTx::get`] (soft-deleted leads included, `None`
    /// when missing or not visible to the actor) but without the lock, so plain reads neither
    /// wait for writers nor make the transaction a writer. Use `get` for a lead about to change.
    /// The default delegates to `get`, which is correct for stores that do not lock.
    fn read(&mut self, id: Uuid) -> impl Future<Output = Result<Option<Lead>, StoreError>> + Send {
        self.get(id)
    }

    /// A visible, non-deleted lead colliding with `keys` (other than `except`).
    fn find_duplicate(
        &mut self,
        keys: &DuplicateKeys,
        except: Option<Uuid>,
    ) -> impl Future<Output = Result<Option<Lead>, StoreError>> + Send;

    /// Inserts a new lead.
    fn insert(&mut self, lead: &Lead) -> impl Future<Output = Result<(), WriteError>> + Send;

    /// Updates a lead whose stored version is `expected_version`.
    fn update(
        &mut self,
        lead: &Lead,
        expected_version: i64,
    ) -> impl Future<Output = Result<(), WriteError>> + Send;

    /// Appends a timeline entry. A store may send it with the transaction's next statement or at
    /// commit (the PostgreSQL store does): a refused entry (a lead the caller cannot see) then
    /// fails that statement or the commit, and nothing of the transaction is written.
    fn insert_activity(
        &mut self,
        activity: &Activity,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// A lead's timeline, newest first.
    fn list_activities(
        &mut self,
        lead_id: Uuid,
        page: u32,
        size: u32,
    ) -> impl Future<Output = Result<Page<Activity>, StoreError>> + Send;

    /// Visible leads matching the query.
    fn list(
        &mut self,
        query: &LeadQuery,
    ) -> impl Future<Output = Result<Page<Lead>, StoreError>> + Send;

    /// Writes an event to the outbox in this transaction (sent at the latest with the commit, as
    /// [`LeadTx::insert_activity`]).
    fn append_event(
        &mut self,
        event: &CloudEvent,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The record of an idempotency key of this actor.
    fn idempotency_get(
        &mut self,
        key: &str,
    ) -> impl Future<Output = Result<Option<IdempotencyRecord>, StoreError>> + Send;

    /// Records an idempotency key of this actor.
    fn idempotency_put(
        &mut self,
        key: &str,
        record: &IdempotencyRecord,
    ) -> impl Future<Output = Result<(), WriteError>> + Send;

    /// Leads that may have a protection transition due at `now` (at most `limit`; the Postgres
    /// adapter skips rows locked by another replica).
    fn due_for_sweep(
        &mut self,
        now: OffsetDateTime,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<Lead>, StoreError>> + Send;

    /// A lead by id, locked for update **without waiting**: [`WriteError::Busy`] when another
    /// transaction holds it (a follow-up run, a concurrent change). Soft-deleted leads included;
    /// `Ok(None)` when missing or not visible to the actor.
    fn get_nowait(
        &mut self,
        id: Uuid,
    ) -> impl Future<Output = Result<Option<Lead>, WriteError>> + Send;

    /// Records a change of a lead's email consent in the ledger (sent at the latest with the
    /// commit, as [`LeadTx::insert_activity`]).
    fn insert_consent_change(
        &mut self,
        change: &ConsentChange,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Everything stored about the lead's person besides the lead row
    /// ([`crate::personal`]): the whole timeline, the consent ledger, the mails and the outbox
    /// events that carry personal data.
    fn personal_records(
        &mut self,
        lead_id: Uuid,
    ) -> impl Future<Output = Result<PersonalRecords, StoreError>> + Send;

    /// Redacts the personal data of everything hanging off the lead, as [`crate::personal`]
    /// names it: timeline texts, mails (queued ones withdrawn), outbox event data, idempotency
    /// replays. The lead row itself is written by [`LeadTx::update`].
    fn erase_related(
        &mut self,
        lead_id: Uuid,
        now: OffsetDateTime,
    ) -> impl Future<Output = Result<ErasureCounts, StoreError>> + Send;

    /// Closed leads (LOST, EXPIRED, DELETED) not erased yet whose last change is at or before
    /// `cutoff`, oldest first, at most `limit`, locked (rows another transaction holds are
    /// skipped).
    fn due_for_retention(
        &mut self,
        cutoff: OffsetDateTime,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<Lead>, StoreError>> + Send;

    /// Removes the bodies of at most `limit` SENT or DEAD mails whose last change is at or
    /// before `cutoff`; how many.
    fn erase_mail_bodies(
        &mut self,
        cutoff: OffsetDateTime,
        now: OffsetDateTime,
        limit: u32,
    ) -> impl Future<Output = Result<u32, StoreError>> + Send;

    /// Appends an audit-log entry.
    fn insert_audit(
        &mut self,
        entry: &AuditEntry,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The audit log, newest first.
    fn list_audit(
        &mut self,
        page: u32,
        size: u32,
    ) -> impl Future<Output = Result<Page<AuditEntry>, StoreError>> + Send;

    /// For each of `keys` (in order), the non-deleted lead already holding one of them — whether
    /// or not the actor may read it, exactly as [`LeadTx::insert`] would refuse the lead — with
    /// the rule that matched (e-mail first). Imports ask this for a whole batch at once.
    fn taken_keys(
        &mut self,
        keys: &[DuplicateKeys],
    ) -> impl Future<Output = Result<Vec<Option<(Uuid, DuplicateKind)>>, StoreError>> + Send;

    /// The leads among `ids` that the actor may read, unlocked (missing and invisible ones are
    /// left out). The default reads them one by one.
    fn read_many(
        &mut self,
        ids: &[Uuid],
    ) -> impl Future<Output = Result<Vec<Lead>, StoreError>> + Send {
        async move {
            let mut leads = Vec::with_capacity(ids.len());
            for &id in ids {
                if let Some(lead) = self.read(id).await? {
                    leads.push(lead);
                }
            }
            Ok(leads)
        }
    }

    /// Inserts new leads; all or (with the error of the first refused one) none. The default
    /// inserts them one by one; the Postgres adapter sends one statement.
    fn insert_many(
        &mut self,
        leads: &[Lead],
    ) -> impl Future<Output = Result<(), WriteError>> + Send {
        async move {
            for lead in leads {
                self.insert(lead).await?;
            }
            Ok(())
        }
    }

    /// Commits.
    fn commit(self) -> impl Future<Output = Result<(), StoreError>> + Send;
}
