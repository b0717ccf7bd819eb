//! [`PgFollowUpStore`] / [`PgFollowUpTx`]: the follow-up ports on PostgreSQL (SPEC §6, §8, §9),
//! plus what the app needs around a run: the mail templates, the cluster-wide run guard, the run
//! log with its `lead.followup.processed.v1` event, and the cockpit figures.
//!
//! # One transaction per batch, one statement per lead
//! [`FollowUpTx::claim_due`] locks the claimed leads (`FOR NO KEY UPDATE SKIP LOCKED`: another
//! run's rows are skipped, never waited for; inserts that merely reference a lead, like a rep's
//! activity, are not blocked). [`FollowUpTx::record`] writes a processed stage — the follow-up
//! record, the lead's follow-up progress, the timeline entry, the mail (into `mail_outbox`) and
//! the events (into `event_outbox`) — as *one* statement of data-modifying CTEs: all of it or
//! none of it, in one round trip. The batch commits once; any failure rolls the whole batch back.
//!
//! # The follow-up progress on the lead
//! `leads.followup_next_stage` (the domain's [`Candidate::next_stage`]), `leads.followup_sent`
//! and the send times `leads.followup_t3_sent_at` / `followup_t7_sent_at` are written here, in
//! the statement that inserts the record. The claim reads the partial index of
//! migrations/0004 (only open leads with a pending stage, a few days' registrations); the
//! cockpit figures read the counts that triggers on `leads` derive from these columns
//! (migrations/0004 and 0006), never the leads themselves.
//!
//! # Errors
//! The follow-up port has its own [`StoreError`]; the one constraint it names,
//! [`StoreError::AlreadyRecorded`], is mapped here, in [`classify`] (the lead store's map is
//! `error.rs`).

use std::collections::HashMap;
use std::fmt;
use std::sync::LazyLock;

use serde::Serialize;
use sqlx::pool::PoolConnection;
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, PgPool, Postgres, Row as _, Transaction};
use time::OffsetDateTime;
use uuid::Uuid;

use freshplan_followup::cockpit::ScopeKind;
use freshplan_followup::event::processed_event;
use freshplan_followup::plan::Candidate;
use freshplan_followup::port::{FollowUpStore, FollowUpTx, ProcessedFollowUp, StoreError};
use freshplan_followup::service::{FollowUpService, RunError};
use freshplan_followup::stage::{FollowUpRecord, FollowUpStatus, SkipReason, Stage};
use freshplan_followup::template::Template;
use freshplan_followup::{FollowUpFigures, RunReport, Scope};
use freshplan_kernel::{Actor, Clock, CloudEvent, IdGenerator, TerritoryId};
use freshplan_leads::model::BusinessType;
use freshplan_leads::status::LeadStatus;

use crate::AfterCommit;

/// The key of the cluster-wide follow-up run lock (`pg_try_advisory_lock`): "FPFOLLUP" in ASCII.
pub const FOLLOWUP_RUN_LOCK_KEY: i64 = 0x4650_464F_4C4C_5550;

/// Unique key: one follow-up record per (lead, stage) (migrations/0001).
const FOLLOWUPS_LEAD_STAGE_UQ: &str = "followups_lead_stage_uq";
/// Unique key: one mail per (lead, stage) (migrations/0004).
const MAIL_OUTBOX_LEAD_STAGE_UQ: &str = "mail_outbox_lead_stage_uq";

/// A database failure with what the adapter was doing.
#[derive(Debug, thiserror::Error)]
#[error("{context}")]
struct PgError {
    context: &'static str,
    #[source]
    source: sqlx::Error,
}

/// A stored value the domain does not accept (the schema and the domain disagree).
#[derive(Debug, thiserror::Error)]
#[error("stored {field} is invalid: {value:?}")]
struct Corrupt {
    field: &'static str,
    value: String,
}

fn backend(context: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
    move |source| StoreError::backend(PgError { context, source })
}

fn corrupt(field: &'static str, value: impl Into<String>) -> StoreError {
    StoreError::backend(Corrupt {
        field,
        value: value.into(),
    })
}

/// The follow-up store's error map: the unique keys on (lead, stage) are
/// [`StoreError::AlreadyRecorded`]; everything else is a backend failure.
fn classify(
    context: &'static str,
    lead_id: Uuid,
    stage: Stage,
) -> impl FnOnce(sqlx::Error) -> StoreError {
    move |source| {
        if let Some(db) = source.as_database_error()
            && db.is_unique_violation()
            && matches!(
                db.constraint(),
                Some(FOLLOWUPS_LEAD_STAGE_UQ | MAIL_OUTBOX_LEAD_STAGE_UQ)
            )
        {
            return StoreError::AlreadyRecorded { lead_id, stage };
        }
        StoreError::backend(PgError { context, source })
    }
}

fn get<'r, T>(row: &'r PgRow, column: &'static str) -> Result<T, StoreError>
where
    T: sqlx::Decode<'r, Postgres> + sqlx::Type<Postgres>,
{
    row.try_get(column).map_err(backend("decode a row"))
}

fn parse<T: std::str::FromStr>(field: &'static str, value: &str) -> Result<T, StoreError> {
    value.parse::<T>().map_err(|_| corrupt(field, value))
}

// ---------------------------------------------------------------------------------------------
// The store
// ---------------------------------------------------------------------------------------------

/// The follow-up store on PostgreSQL. Cloning shares the pool.
///
/// Units of work run as [`Actor::system`] (SPEC §3: background work is an explicit `system`
/// context, not a bypass); the cockpit and run-log reads run as the caller.
#[derive(Debug, Clone)]
pub struct PgFollowUpStore {
    pool: PgPool,
    after_commit: Option<Hook>,
}

/// An [`AfterCommit`] with a `Debug` impl (closures have none).
#[derive(Clone)]
struct Hook(AfterCommit);

impl fmt::Debug for Hook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AfterCommit(..)")
    }
}

impl PgFollowUpStore {
    /// A store on `pool` (from [`crate::connect`]; each transaction switches to the application
    /// role anyway).
    pub fn new(pool: PgPool) -> PgFollowUpStore {
        PgFollowUpStore {
            pool,
            after_commit: None,
        }
    }

    /// This store, calling `hook` with the events a follow-up batch or a run record wrote, right
    /// after their transaction **committed** (as [`crate::PgLeadStore::with_after_commit`]).
    pub fn with_after_commit(mut self, hook: AfterCommit) -> PgFollowUpStore {
        self.after_commit = Some(Hook(hook));
        self
    }

    /// The pool.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

impl FollowUpStore for PgFollowUpStore {
    type Tx = PgFollowUpTx;

    async fn begin(&self) -> Result<PgFollowUpTx, StoreError> {
        let tx = crate::begin_as(&self.pool, &Actor::system())
            .await
            .map_err(backend("begin a follow-up transaction"))?;
        Ok(PgFollowUpTx {
            tx,
            claimed: HashMap::new(),
            after_commit: self.after_commit.clone(),
            appended: Vec::new(),
        })
    }
}

/// One follow-up unit of work: a transaction in the `system` context. Dropping it without
/// [`FollowUpTx::commit`] rolls everything back and releases the claimed leads.
pub struct PgFollowUpTx {
    tx: Transaction<'static, Postgres>,
    /// The snapshots handed out by `claim_due`, to derive the lead's follow-up progress after a
    /// record with the domain's rule.
    claimed: HashMap<Uuid, Candidate>,
    /// The store's after-commit hook, and the events written so far (kept only with a hook).
    after_commit: Option<Hook>,
    appended: Vec<CloudEvent>,
}

impl fmt::Debug for PgFollowUpTx {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgFollowUpTx")
            .field("claimed", &self.claimed.len())
            .finish_non_exhaustive()
    }
}

impl PgFollowUpTx {
    /// The transaction's connection (e.g. for tests issuing raw SQL in the same transaction).
    pub fn connection(&mut self) -> &mut PgConnection {
        &mut self.tx
    }

    /// Rolls back now. Dropping the transaction rolls back too, but lazily: the connection
    /// sends the `ROLLBACK` (and so releases the claimed leads) when the pool takes it back, a
    /// moment later.
    pub async fn rollback(self) -> Result<(), StoreError> {
        self.tx
            .rollback()
            .await
            .map_err(backend("roll back follow-ups"))
    }
}

/// The candidate columns (alias `l`, records `f3`/`f7`).
const CANDIDATE_SELECT: &str = "\
    select l.id, l.version, l.territory_id, l.status, l.clock_stopped_at is not null as clock_stopped, \
           l.registered_at, l.email, l.email_consent, l.last_meaningful_contact_at, l.business_type, \
           l.company_name, l.contact_person, \
           f3.status as t3_status, f3.reason as t3_reason, f3.processed_at as t3_processed_at, \
           f7.status as t7_status, f7.reason as t7_reason, f7.processed_at as t7_processed_at \
      from leads l \
      left join followups f3 on f3.lead_id = l.id and f3.stage = 'T3' \
      left join followups f7 on f7.lead_id = l.id and f7.stage = 'T7'";

/// The claim: open leads with a running clock whose next stage is due (`registered_at` at or
/// before the stage's cut-off), by id after the cursor. The first three conditions are the
/// predicate of `leads_followup_due_idx` verbatim, so the planner scans that small index (one
/// `registered_at` range per stage).
/// `$1` cursor, `$2`/`$3` the T+3/T+7 cut-offs (`now - offset`), `$4` limit.
fn claim_statement(first_page: bool) -> String {
    let cursor = if first_page {
        "l.id >= $1"
    } else {
        "l.id > $1"
    };
    format!(
        "{CANDIDATE_SELECT} \
          where l.status in ('REGISTERED', 'ACTIVE') and l.clock_stopped_at is null \
            and l.followup_next_stage is not null \
            and {cursor} \
            and ((l.followup_next_stage = 'T3' and l.registered_at <= $2) \
              or (l.followup_next_stage = 'T7' and l.registered_at <= $3)) \
          order by l.id \
          limit $4 \
          for no key update of l skip locked"
    )
}

static CLAIM_FIRST: LazyLock<String> = LazyLock::new(|| claim_statement(true));
static CLAIM_NEXT: LazyLock<String> = LazyLock::new(|| claim_statement(false));
static LOAD_CANDIDATE: LazyLock<String> =
    LazyLock::new(|| format!("{CANDIDATE_SELECT} where l.id = $1"));

fn record_of(row: &PgRow, stage: Stage) -> Result<Option<FollowUpRecord>, StoreError> {
    let (status, reason, at) = match stage {
        Stage::T3 => ("t3_status", "t3_reason", "t3_processed_at"),
        Stage::T7 => ("t7_status", "t7_reason", "t7_processed_at"),
    };
    let Some(status) = get::<Option<String>>(row, status)? else {
        return Ok(None);
    };
    let reason = get::<Option<String>>(row, reason)?
        .map(|r| parse::<SkipReason>("followups.reason", &r))
        .transpose()?;
    Ok(Some(FollowUpRecord {
        stage,
        status: parse::<FollowUpStatus>("followups.status", &status)?,
        reason,
        processed_at: get(row, at)?,
    }))
}

fn candidate(row: &PgRow) -> Result<Candidate, StoreError> {
    let territory: String = get(row, "territory_id")?;
    let status: String = get(row, "status")?;
    Ok(Candidate {
        lead_id: get(row, "id")?,
        version: get(row, "version")?,
        territory: parse::<TerritoryId>("leads.territory_id", &territory)?,
        status: parse::<LeadStatus>("leads.status", &status)?,
        clock_stopped: get(row, "clock_stopped")?,
        registered_at: get(row, "registered_at")?,
        email: get(row, "email")?,
        email_consent: get(row, "email_consent")?,
        last_meaningful_contact_at: get(row, "last_meaningful_contact_at")?,
        business_type: get::<Option<String>>(row, "business_type")?
            .map(|b| parse::<BusinessType>("leads.business_type", &b))
            .transpose()?,
        company_name: get(row, "company_name")?,
        contact_person: get(row, "contact_person")?,
        t3: record_of(row, Stage::T3)?,
        t7: record_of(row, Stage::T7)?,
    })
}

/// Everything one processed stage writes, in one statement (see the module docs). The lead's
/// progress is the domain's, computed by the caller (`$7`, `$8`).
const RECORD: &str = "\
    with f as ( \
        insert into followups (lead_id, territory_id, stage, status, reason, processed_at) \
        values ($1, $2, $3, $4, $5, $6) \
        returning lead_id \
    ), l as ( \
        update leads set followup_next_stage = $7, followup_sent = $8, \
               followup_t3_sent_at = case when $3 = 'T3' and $4 = 'SENT' then $6 \
                                          else followup_t3_sent_at end, \
               followup_t7_sent_at = case when $3 = 'T7' and $4 = 'SENT' then $6 \
                                          else followup_t7_sent_at end \
         where id = $1 and territory_id = $2 \
        returning id \
    ), a as ( \
        insert into activities \
          (id, lead_id, territory_id, type, occurred_at, description, user_id, \
           meaningful_contact, metadata, created_at) \
        values ($9, $1, $2, $10, $11, $12, $13, $14, $15, $16) \
    ), m as ( \
        insert into mail_outbox \
          (id, lead_id, territory_id, stage, recipient, subject, html, text, unsubscribe_url, \
           status, attempts, next_attempt_at, created_at, updated_at) \
        select $17, $1, $2, $3, $18, $19, $20, $21, $22, 'QUEUED', 0, $23, $23, $23 \
         where $17::uuid is not null \
    ), e as ( \
        insert into event_outbox (event_id, source, type, subject, territory_id, payload, dashboard) \
        select * from unnest($24::uuid[], $25::text[], $26::text[], $27::text[], $28::text[], \
                             $29::jsonb[], $30::boolean[]) \
    ) \
    select (select count(*) from l) as leads_updated, (select count(*) from f) as records";

/// The event outbox columns of `events`, as arrays for `unnest` (the same row shape as the lead
/// store's outbox writer: territory from `data.territory`, the dashboard flag from
/// [`freshplan_leads::events::moves_dashboard`]).
struct EventColumns {
    ids: Vec<Uuid>,
    sources: Vec<String>,
    types: Vec<String>,
    subjects: Vec<Option<String>>,
    territories: Vec<Option<String>>,
    payloads: Vec<serde_json::Value>,
    dashboard: Vec<bool>,
}

fn event_columns<'a>(
    events: impl IntoIterator<Item = &'a CloudEvent>,
) -> Result<EventColumns, StoreError> {
    let mut c = EventColumns {
        ids: Vec::new(),
        sources: Vec::new(),
        types: Vec::new(),
        subjects: Vec::new(),
        territories: Vec::new(),
        payloads: Vec::new(),
        dashboard: Vec::new(),
    };
    for event in events {
        let territory = event
            .data
            .get("territory")
            .and_then(serde_json::Value::as_str)
            .and_then(|t| t.parse::<TerritoryId>().ok());
        c.ids.push(event.id);
        c.sources.push(event.source.clone());
        c.types.push(event.event_type.clone());
        c.subjects.push(event.subject.clone());
        c.territories.push(territory.map(|t| t.as_str().to_owned()));
        c.payloads
            .push(serde_json::to_value(event).map_err(StoreError::backend)?);
        c.dashboard
            .push(freshplan_leads::events::moves_dashboard(event));
    }
    Ok(c)
}

impl PgFollowUpTx {
    /// The snapshot of `lead_id` as the claim would return it (for records written without a
    /// claim in this transaction).
    async fn load_candidate(&mut self, lead_id: Uuid) -> Result<Candidate, StoreError> {
        let row = sqlx::query(&LOAD_CANDIDATE)
            .bind(lead_id)
            .fetch_optional(&mut *self.tx)
            .await
            .map_err(backend("read a follow-up candidate"))?;
        match row {
            Some(row) => candidate(&row),
            None => Err(corrupt("followups.lead_id", lead_id.to_string())),
        }
    }
}

impl FollowUpTx for PgFollowUpTx {
    async fn claim_due(
        &mut self,
        now: OffsetDateTime,
        after: Option<Uuid>,
        limit: usize,
    ) -> Result<Vec<Candidate>, StoreError> {
        let (statement, cursor) = match after {
            None => (&*CLAIM_FIRST, Uuid::nil()),
            Some(after) => (&*CLAIM_NEXT, after),
        };
        let rows = sqlx::query(statement)
            .bind(cursor)
            .bind(now - Stage::T3.due_offset())
            .bind(now - Stage::T7.due_offset())
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .fetch_all(&mut *self.tx)
            .await
            .map_err(backend("claim due follow-ups"))?;
        let candidates = rows.iter().map(candidate).collect::<Result<Vec<_>, _>>()?;
        for c in &candidates {
            self.claimed.insert(c.lead_id, c.clone());
        }
        Ok(candidates)
    }

    async fn record(&mut self, processed: ProcessedFollowUp) -> Result<(), StoreError> {
        let ProcessedFollowUp {
            lead_id,
            territory,
            record,
            activity,
            mail,
            events,
        } = processed;
        let stage = record.stage;
        let mut lead = match self.claimed.remove(&lead_id) {
            Some(c) => c,
            None => self.load_candidate(lead_id).await?,
        };
        if lead.record(stage).is_some() {
            return Err(StoreError::AlreadyRecorded { lead_id, stage });
        }
        match stage {
            Stage::T3 => lead.t3 = Some(record),
            Stage::T7 => lead.t7 = Some(record),
        }
        let next_stage = lead.next_stage().map(Stage::as_str);
        let any_sent = lead.t3.iter().chain(lead.t7.iter()).any(|r| r.is_sent());
        let ev = event_columns(&events)?;
        if self.after_commit.is_some() {
            self.appended.extend(events);
        }
        let row = sqlx::query(RECORD)
            .bind(lead_id)
            .bind(territory.as_str())
            .bind(stage.as_str())
            .bind(record.status.as_str())
            .bind(record.reason.map(SkipReason::as_str))
            .bind(record.processed_at)
            .bind(next_stage)
            .bind(any_sent)
            .bind(activity.id)
            .bind(activity.activity_type.as_str())
            .bind(activity.occurred_at)
            .bind(activity.description.clone())
            .bind(activity.user_id.as_str().to_owned())
            .bind(activity.meaningful_contact)
            .bind(activity.metadata.clone())
            .bind(activity.created_at)
            .bind(mail.as_ref().map(|m| m.id))
            .bind(mail.as_ref().map(|m| m.to.clone()))
            .bind(mail.as_ref().map(|m| m.subject.clone()))
            .bind(mail.as_ref().map(|m| m.html.clone()))
            .bind(mail.as_ref().map(|m| m.text.clone()))
            .bind(mail.as_ref().map(|m| m.unsubscribe_url.clone()))
            .bind(mail.as_ref().map(|m| m.queued_at))
            .bind(ev.ids)
            .bind(ev.sources)
            .bind(ev.types)
            .bind(ev.subjects)
            .bind(ev.territories)
            .bind(ev.payloads)
            .bind(ev.dashboard)
            .fetch_one(&mut *self.tx)
            .await
            .map_err(classify("record a follow-up", lead_id, stage))?;
        let updated: i64 = get(&row, "leads_updated")?;
        if updated != 1 {
            // The territory of the record is not the lead's (the foreign key would have said so
            // too); nothing of the statement may stay.
            return Err(corrupt("followups.territory_id", territory.as_str()));
        }
        self.claimed.insert(lead_id, lead);
        Ok(())
    }

    async fn commit(self) -> Result<(), StoreError> {
        self.tx
            .commit()
            .await
            .map_err(backend("commit follow-ups"))?;
        if let Some(Hook(hook)) = &self.after_commit
            && !self.appended.is_empty()
        {
            hook(&self.appended);
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Templates
// ---------------------------------------------------------------------------------------------

impl PgFollowUpStore {
    /// The active templates of `language` (`"de"`), T+3 then T+7: what
    /// [`freshplan_followup::FollowUpConfig::templates`] takes. At most one per stage is active
    /// (`mail_templates_active_uq`); a missing stage is left out, and the service refuses the
    /// configuration.
    pub async fn active_templates(&self, language: &str) -> Result<Vec<Template>, StoreError> {
        let mut tx = crate::begin_as(&self.pool, &Actor::system())
            .await
            .map_err(backend("begin a transaction"))?;
        let rows = sqlx::query(
            "select stage, subject, html, text from mail_templates \
              where active and language = $1 order by stage",
        )
        .bind(language)
        .fetch_all(&mut *tx)
        .await
        .map_err(backend("read mail templates"))?;
        tx.commit().await.map_err(backend("commit"))?;
        rows.iter()
            .map(|row| {
                let stage: String = get(row, "stage")?;
                Ok(Template {
                    stage: parse::<Stage>("mail_templates.stage", &stage)?,
                    subject: get(row, "subject")?,
                    html: get(row, "html")?,
                    text: get(row, "text")?,
                })
            })
            .collect()
    }
}

// ---------------------------------------------------------------------------------------------
// The run guard and the run log
// ---------------------------------------------------------------------------------------------

/// Holds the cluster-wide follow-up run lock (a session-level `pg_try_advisory_lock` on a
/// connection of its own) until [`RunGuard::release`].
///
/// Dropping it without `release` closes that connection instead of returning it to the pool, so
/// the lock can never stay behind on a pooled connection: the server releases a session's
/// advisory locks when the session ends. If the connection breaks during a run, the lock is gone
/// and another replica may start a run; that is safe too (claims skip locked rows, records are
/// unique per lead and stage), the lock only keeps runs from competing.
pub struct RunGuard {
    conn: Option<PoolConnection<Postgres>>,
}

impl fmt::Debug for RunGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RunGuard")
            .field("held", &self.conn.is_some())
            .finish()
    }
}

impl RunGuard {
    /// Releases the lock and returns the connection to the pool.
    pub async fn release(mut self) -> Result<(), StoreError> {
        let Some(mut conn) = self.conn.take() else {
            return Ok(());
        };
        let unlocked: Result<bool, sqlx::Error> =
            sqlx::query_scalar("select pg_advisory_unlock($1)")
                .bind(FOLLOWUP_RUN_LOCK_KEY)
                .fetch_one(&mut *conn)
                .await;
        match unlocked {
            Ok(true) => Ok(()),
            Ok(false) => {
                // Not held by this session (cannot happen while we own the connection); close
                // it rather than trust it.
                drop(conn.detach());
                Ok(())
            }
            Err(e) => {
                drop(conn.detach());
                Err(backend("release the follow-up run lock")(e))
            }
        }
    }
}

impl Drop for RunGuard {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            // Closing the session releases its advisory locks.
            drop(conn.detach());
        }
    }
}

/// How a recorded run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RunOutcome {
    /// Nothing processable was left.
    Completed,
    /// A batch failed; the counts are what committed before.
    Failed,
}

impl RunOutcome {
    const fn as_str(self) -> &'static str {
        match self {
            RunOutcome::Completed => "COMPLETED",
            RunOutcome::Failed => "FAILED",
        }
    }
}

/// A row of the run log (`GET /api/followups/runs`): the run report, how it ended and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RunRecord {
    /// `{runId, t3Count, t7Count, skippedCount, startedAt, finishedAt}`.
    #[serde(flatten)]
    pub report: RunReport,
    /// Completed or failed.
    pub outcome: RunOutcome,
    /// The failure's cause chain, for a failed run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// What [`PgFollowUpStore::run_exclusive`] did.
#[derive(Debug)]
pub enum ExclusiveRun {
    /// Another run holds the cluster-wide lock (the API answers 409); nothing was done.
    Busy,
    /// The run happened and is recorded, with its `lead.followup.processed.v1` event.
    Finished(Result<RunReport, RunError>),
}

/// `error` and its sources, joined with ": ".
fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut out = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        out.push_str(": ");
        out.push_str(&e.to_string());
        source = e.source();
    }
    out
}

impl PgFollowUpStore {
    /// Takes the cluster-wide follow-up run lock if it is free: `None` while another run (on any
    /// replica) holds it. The lock lives on a pooled connection of its own until the guard is
    /// released or dropped.
    pub async fn try_begin_run(&self) -> Result<Option<RunGuard>, StoreError> {
        let mut conn = self
            .pool
            .acquire()
            .await
            .map_err(backend("acquire a connection for the run lock"))?;
        let locked: bool = sqlx::query_scalar("select pg_try_advisory_lock($1)")
            .bind(FOLLOWUP_RUN_LOCK_KEY)
            .fetch_one(&mut *conn)
            .await
            .map_err(backend("take the follow-up run lock"))?;
        Ok(locked.then_some(RunGuard { conn: Some(conn) }))
    }

    /// Records a run and writes its `lead.followup.processed.v1` event to the outbox, in one
    /// transaction as the system. `error` marks the run as failed.
    pub async fn record_run(
        &self,
        report: &RunReport,
        event: &CloudEvent,
        error: Option<&str>,
    ) -> Result<(), StoreError> {
        let outcome = if error.is_some() {
            RunOutcome::Failed
        } else {
            RunOutcome::Completed
        };
        let ev = event_columns([event])?;
        let mut tx = crate::begin_as(&self.pool, &Actor::system())
            .await
            .map_err(backend("begin a transaction"))?;
        sqlx::query(
            "with r as ( \
                insert into followup_runs \
                  (run_id, t3_count, t7_count, skipped_count, started_at, finished_at, outcome, error) \
                values ($1, $2, $3, $4, $5, $6, $7, $8) \
             ) \
             insert into event_outbox (event_id, source, type, subject, territory_id, payload, dashboard) \
             select * from unnest($9::uuid[], $10::text[], $11::text[], $12::text[], $13::text[], \
                                  $14::jsonb[], $15::boolean[])",
        )
        .bind(report.run_id)
        .bind(i64::from(report.t3_count))
        .bind(i64::from(report.t7_count))
        .bind(i64::from(report.skipped_count))
        .bind(report.started_at)
        .bind(report.finished_at)
        .bind(outcome.as_str())
        .bind(error)
        .bind(ev.ids)
        .bind(ev.sources)
        .bind(ev.types)
        .bind(ev.subjects)
        .bind(ev.territories)
        .bind(ev.payloads)
        .bind(ev.dashboard)
        .execute(&mut *tx)
        .await
        .map_err(backend("record a follow-up run"))?;
        tx.commit()
            .await
            .map_err(backend("commit a follow-up run"))?;
        if let Some(Hook(hook)) = &self.after_commit {
            hook(std::slice::from_ref(event));
        }
        Ok(())
    }

    /// The latest `limit` runs, newest first, as `actor` sees them (admins and managers see
    /// every run; other callers none).
    pub async fn runs(&self, actor: &Actor, limit: u32) -> Result<Vec<RunRecord>, StoreError> {
        let mut tx = crate::begin_as(&self.pool, actor)
            .await
            .map_err(backend("begin a transaction"))?;
        let rows = sqlx::query(
            "select run_id, t3_count, t7_count, skipped_count, started_at, finished_at, outcome, error \
               from followup_runs order by started_at desc, run_id desc limit $1",
        )
        .bind(i64::from(limit))
        .fetch_all(&mut *tx)
        .await
        .map_err(backend("list follow-up runs"))?;
        tx.commit().await.map_err(backend("commit"))?;
        let count = |row: &PgRow, column: &'static str| -> Result<u32, StoreError> {
            let n: i32 = get(row, column)?;
            u32::try_from(n).map_err(|_| corrupt(column, n.to_string()))
        };
        rows.iter()
            .map(|row| {
                let outcome: String = get(row, "outcome")?;
                Ok(RunRecord {
                    report: RunReport {
                        run_id: get(row, "run_id")?,
                        t3_count: count(row, "t3_count")?,
                        t7_count: count(row, "t7_count")?,
                        skipped_count: count(row, "skipped_count")?,
                        started_at: get(row, "started_at")?,
                        finished_at: get(row, "finished_at")?,
                    },
                    outcome: match outcome.as_str() {
                        "COMPLETED" => RunOutcome::Completed,
                        "FAILED" => RunOutcome::Failed,
                        _ => return Err(corrupt("followup_runs.outcome", outcome)),
                    },
                    error: get(row, "error")?,
                })
            })
            .collect()
    }

    /// One scheduled or manual run, exclusively: takes the cluster-wide lock (or answers
    /// [`ExclusiveRun::Busy`]), runs `service` with `run_id`, records the run and its
    /// `lead.followup.processed.v1` event (also after a failed run, with what committed before
    /// the failure; `ids` names that event), then releases the lock.
    ///
    /// The `Err` of the returned result is a failure to take the lock or to record the run; a
    /// failed *run* is `Ok(Finished(Err(..)))`.
    pub async fn run_exclusive<S, C, I>(
        &self,
        service: &FollowUpService<S, C, I>,
        run_id: Uuid,
        ids: &impl IdGenerator,
    ) -> Result<ExclusiveRun, StoreError>
    where
        S: FollowUpStore,
        C: Clock,
        I: IdGenerator,
    {
        let Some(guard) = self.try_begin_run().await? else {
            return Ok(ExclusiveRun::Busy);
        };
        let result = service.run(run_id).await;
        let recorded = match &result {
            Ok((report, event)) => self.record_run(report, event, None).await,
            Err(failure) => {
                let event = processed_event(&failure.report, ids.new_id());
                self.record_run(&failure.report, &event, Some(&error_chain(failure)))
                    .await
            }
        };
        // Fold the conversion counts' deltas while nobody else runs; a failure here costs
        // only speed (the counts stay exact), so it does not fail the run.
        let compacted = match recorded {
            Ok(()) => self.compact_counts(service.clock().now()).await.map(|_| ()),
            Err(_) => Ok(()),
        };
        // Release only after the run is recorded: the next run must see it.
        let released = guard.release().await;
        recorded?;
        if let Err(e) = compacted {
            tracing::warn!(error = %error_chain(&e), "compacting the follow-up counts failed");
        }
        released?;
        Ok(ExclusiveRun::Finished(result.map(|(report, _)| report)))
    }
}

// ---------------------------------------------------------------------------------------------
// Cockpit figures
// ---------------------------------------------------------------------------------------------

/// The five counts behind [`FollowUpFigures`] in one round trip, from the read models of
/// migrations/0006 (`followup_figure_counts`: pending per stage, SENT per day) and 0004
/// (`followup_sent_counts`: the conversion rate's counts) — a few rows per territory and owner,
/// however many leads there are. `$1` territories, `$2` today (Europe/Berlin), `$3` the owner
/// (sales scope only).
fn figures_statement(owner: bool) -> String {
    let own = if owner {
        " and c.owner_user_id = $3"
    } else {
        ""
    };
    format!(
        "select f.pending_t3, f.pending_t7, f.sent_today, s.with_sent, s.converted \
           from (select coalesce(sum(c.n) filter (where c.metric = 'T3'), 0)::bigint as pending_t3, \
                        coalesce(sum(c.n) filter (where c.metric = 'T7'), 0)::bigint as pending_t7, \
                        coalesce(sum(c.n) filter (where c.metric = 'SENT'), 0)::bigint as sent_today \
                   from followup_figure_counts c \
                  where c.territory_id = any($1){own} \
                    and (c.day is null or c.day = $2)) f, \
                (select coalesce(sum(c.n) filter (where c.status <> 'DELETED'), 0)::bigint as with_sent, \
                        coalesce(sum(c.n) filter (where c.status = 'CONVERTED'), 0)::bigint as converted \
                   from followup_sent_counts c \
                  where c.territory_id = any($1){own}) s"
    )
}

static FIGURES_ALL: LazyLock<String> = LazyLock::new(|| figures_statement(false));
static FIGURES_OWN: LazyLock<String> = LazyLock::new(|| figures_statement(true));

impl PgFollowUpStore {
    /// Folds the delta rows of the cockpit's counts (`followup_sent_counts`,
    /// `followup_figure_counts`) into one row per key and drops the sent-per-day counts of days
    /// before yesterday (`now`'s day in Berlin); returns how many rows were folded or dropped.
    /// [`PgFollowUpStore::run_exclusive`] calls it after every run; the figures are exact with
    /// or without it, it only keeps the counts small.
    pub async fn compact_counts(&self, now: OffsetDateTime) -> Result<u64, StoreError> {
        let mut tx = crate::begin_as(&self.pool, &Actor::system())
            .await
            .map_err(backend("begin a transaction"))?;
        let folded: i64 = sqlx::query_scalar(
            "select freshplan_compact_followup_sent_counts() \
                    + freshplan_compact_followup_figure_counts($1)",
        )
        .bind(freshplan_territory::local_date(TerritoryId::De, now))
        .fetch_one(&mut *tx)
        .await
        .map_err(backend("compact the follow-up counts"))?;
        tx.commit().await.map_err(backend("commit"))?;
        Ok(u64::try_from(folded).unwrap_or(0))
    }

    /// The cockpit figures (SPEC §8) of `scope` at `now`, read as `actor` (so row-level security
    /// applies on top of the scope: build the scope with [`Scope::for_actor`] of the same
    /// actor). The same numbers as [`freshplan_followup::figures`] over the scope's rows:
    /// "today" starts at local midnight in Europe/Berlin, deleted leads count nowhere, the
    /// conversion rate is the domain's rounding.
    pub async fn figures(
        &self,
        actor: &Actor,
        scope: &Scope,
        now: OffsetDateTime,
    ) -> Result<FollowUpFigures, StoreError> {
        let zero = FollowUpFigures {
            pending_t3: 0,
            pending_t7: 0,
            sent_today: 0,
            conversion_rate: 0.0,
        };
        let owner = match scope.kind() {
            ScopeKind::None => return Ok(zero),
            ScopeKind::OwnLeads => match scope.owner() {
                Some(owner) => Some(owner.as_str().to_owned()),
                None => return Ok(zero),
            },
            ScopeKind::All | ScopeKind::Territories => None,
        };
        let territories: Vec<&str> = scope.territories().iter().map(|t| t.as_str()).collect();
        if territories.is_empty() {
            return Ok(zero);
        }
        // The day of migrations/0006's SENT counts: the Europe/Berlin date (SPEC §8).
        let today = freshplan_territory::local_date(TerritoryId::De, now);
        let mut tx = crate::begin_as(&self.pool, actor)
            .await
            .map_err(backend("begin a transaction"))?;
        let statement = if owner.is_some() {
            &*FIGURES_OWN
        } else {
            &*FIGURES_ALL
        };
        let mut query = sqlx::query(statement).bind(territories).bind(today);
        if let Some(owner) = owner {
            query = query.bind(owner);
        }
        let row = query
            .fetch_one(&mut *tx)
            .await
            .map_err(backend("compute the cockpit figures"))?;
        tx.commit().await.map_err(backend("commit"))?;
        let n = |column: &'static str| -> Result<u64, StoreError> {
            let v: i64 = get(&row, column)?;
            Ok(u64::try_from(v).unwrap_or(0))
        };
        Ok(FollowUpFigures {
            pending_t3: n("pending_t3")?,
            pending_t7: n("pending_t7")?,
            sent_today: n("sent_today")?,
            conversion_rate: freshplan_followup::cockpit::percent_one_decimal(
                n("converted")?,
                n("with_sent")?,
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claim_statements_differ_only_in_the_cursor() {
        assert!(CLAIM_FIRST.contains("l.id >= $1"));
        assert!(CLAIM_NEXT.contains("l.id > $1"));
        assert!(CLAIM_FIRST.ends_with("for no key update of l skip locked"));
    }

    #[test]
    fn figures_statements_bind_the_owner_only_for_own_leads() {
        assert!(FIGURES_OWN.contains("$3"));
        assert!(!FIGURES_ALL.contains("$3"));
    }

    #[test]
    fn lock_key_spells_its_name() {
        assert_eq!(&FOLLOWUP_RUN_LOCK_KEY.to_be_bytes(), b"FPFOLLUP");
    }

    #[test]
    fn error_chain_joins_sources() {
        let e = PgError {
            context: "outer",
            source: sqlx::Error::Protocol("inner".into()),
        };
        assert_eq!(
            error_chain(&e),
            "outer: encountered unexpected or invalid data: inner"
        );
    }
}
