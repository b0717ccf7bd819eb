//! The ports the follow-up service drives: a unit of work over the follow-up tables, the mail
//! outbox and the event outbox.
//!
//! Everything a processed stage writes — its record, its timeline entry, its mail and its
//! event — goes through one [`FollowUpTx::record`] call inside one transaction, so a crash
//! leaves either all of it or none of it (SPEC §6, §7.3).

use std::error::Error as StdError;
use std::future::Future;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use freshplan_kernel::{CloudEvent, TerritoryId};
use freshplan_leads::activity::Activity;

use crate::plan::Candidate;
use crate::stage::{FollowUpRecord, Stage};

/// A rendered follow-up mail waiting in the outbox for the dispatcher.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OutgoingMail {
    /// The mail id.
    pub id: Uuid,
    /// The lead it was written to.
    pub lead_id: Uuid,
    /// The lead's territory (row-level security of the outbox).
    pub territory: TerritoryId,
    /// The stage it belongs to.
    pub stage: Stage,
    /// The recipient address.
    pub to: String,
    /// The subject line.
    pub subject: String,
    /// The HTML body.
    pub html: String,
    /// The plain-text body.
    pub text: String,
    /// The signed unsubscribe link the bodies contain, for the `List-Unsubscribe` header
    /// (RFC 2369) the dispatcher adds.
    pub unsubscribe_url: String,
    /// When it was queued.
    #[serde(with = "time::serde::rfc3339")]
    pub queued_at: OffsetDateTime,
}

/// Everything one processed stage writes, atomically.
#[derive(Debug, Clone, PartialEq)]
pub struct ProcessedFollowUp {
    /// The lead.
    pub lead_id: Uuid,
    /// The lead's territory (row-level security of every row written).
    pub territory: TerritoryId,
    /// The new record; unique per `(lead_id, record.stage)`.
    pub record: FollowUpRecord,
    /// The `FOLLOWUP_SENT` / `FOLLOWUP_SKIPPED` timeline entry.
    pub activity: Activity,
    /// The mail, exactly when the record is `SENT`.
    pub mail: Option<OutgoingMail>,
    /// The events for the event outbox (`lead.followup.sent.v1` / `…skipped.v1`).
    pub events: Vec<CloudEvent>,
}

/// A failure of the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The stage already has a record (the adapter maps the unique key on `(lead_id, stage)`
    /// here). With claimed rows this means another writer bypassed the claim; the transaction
    /// is rolled back.
    #[error("follow-up {stage} of lead {lead_id} is already recorded")]
    AlreadyRecorded {
        /// The lead.
        lead_id: Uuid,
        /// The stage.
        stage: Stage,
    },
    /// The store is unreachable or failed; the cause is attached.
    #[error("follow-up store failure")]
    Backend(#[source] Box<dyn StdError + Send + Sync + 'static>),
}

impl StoreError {
    /// Wraps an adapter error.
    pub fn backend(error: impl StdError + Send + Sync + 'static) -> StoreError {
        StoreError::Backend(Box::new(error))
    }
}

/// One transaction over the follow-up data. Dropping it without [`commit`](FollowUpTx::commit)
/// rolls everything back and releases the claimed rows.
#[cfg_attr(feature = "mocks", mockall::automock)]
pub trait FollowUpTx: Send + 'static {
    /// Claims up to `limit` candidates, ordered by `lead_id`, with `lead_id > after` (keyset
    /// pagination: the service walks through all due leads page by page, so leads that are due
    /// but still waiting — e.g. for Swiss business hours on a German working day — can never
    /// starve the ones behind them).
    ///
    /// A candidate is a lead that is open (`REGISTERED`/`ACTIVE`), not deleted, with a running
    /// clock, whose next unprocessed stage has `due_at ≤ now` (T+7 only once T+3 has a record).
    /// The adapter locks the rows (`FOR UPDATE SKIP LOCKED`): rows another transaction holds
    /// are skipped, never waited for. A candidate's records are read once its row is locked,
    /// so they include every record committed before (a stale snapshot would offer a stage
    /// that is already recorded). This pre-selection may be coarse; the service re-plans
    /// every candidate with [`crate::plan::plan`].
    fn claim_due(
        &mut self,
        now: OffsetDateTime,
        after: Option<Uuid>,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<Candidate>, StoreError>> + Send;

    /// Writes one processed stage: record, activity, mail (if any) and events, in this
    /// transaction. Fails with [`StoreError::AlreadyRecorded`] if the stage has a record. An
    /// adapter may defer the writes to [`FollowUpTx::commit`] (to write a batch at once); a
    /// record that turns out to exist only then fails the commit with the same error.
    fn record(
        &mut self,
        processed: ProcessedFollowUp,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Commits the transaction.
    fn commit(self) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// The follow-up store: a factory of [`FollowUpTx`] transactions.
#[cfg_attr(feature = "mocks", mockall::automock(type Tx = MockFollowUpTx;))]
pub trait FollowUpStore: Send + Sync + 'static {
    /// The transaction type.
    type Tx: FollowUpTx;

    /// Begins a transaction (as the `system` context, SPEC §3).
    fn begin(&self) -> impl Future<Output = Result<Self::Tx, StoreError>> + Send;
}

impl<T: FollowUpStore> FollowUpStore for Arc<T> {
    type Tx = T::Tx;

    fn begin(&self) -> impl Future<Output = Result<Self::Tx, StoreError>> + Send {
        (**self).begin()
    }
}
