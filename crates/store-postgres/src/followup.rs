//! [`PgFollowUpStore`] / [`PgFollowUpTx`]: the follow-up ports on PostgreSQL (SPEC §6, §8, §9),
//! plus what the app needs around a run: the mail templates, the cluster-wide run guard, the run
//! log with its `lead.followup.processed.v1` event, and the cockpit figures.
//!
//! # One transaction and one write statement per batch
//! [`FollowUpTx::claim_due`] locks the claimed leads (`FOR NO KEY UPDATE SKIP LOCKED`: another
//! run's rows are skipped, never waited for; inserts that merely reference a lead, like a rep's
//! activity, are not blocked). [`FollowUpTx::record`] checks a processed stage against the
//! claimed snapshot and buffers it; the buffered stages — their follow-up records, the leads'
//! follow-up progress, the timeline entries, the mails (into `mail_outbox`) and the events (into
//! `event_outbox`) — are written as *one* statement of data-modifying CTEs over column arrays
//! (`unnest`) when the buffer is full and at commit: a batch of the default size is one round
//! trip and one execution of each insert, not one per lead. The batch commits once; any failure
//! rolls the whole batch back. A record found to exist at that write is
//! [`StoreError::AlreadyRecorded`] of its lead and stage, so `commit` can fail with it too.
//!
//! # The follow-up progress on the lead
//! `leads.followup_next_stage` (the domain's [`Candidate::next_stage`]), `leads.followup_sent`
//! and the send times `leads.followup_t3_sent_at` / `followup_t7_sent_at` are written here, in
//! the statement that inserts the record. The claim reads the partial index of
//! migrations/0008 (only open leads with a pending stage, a few days' registrations); the
//! cockpit figures read the counts that triggers on `leads` derive from these columns
//! (migrations/0004, 0006 and 0007), never the leads themselves.
//!
//! # Errors
//! The follow-up port has its own [`StoreError`]; the one case it names,
//! [`StoreError::AlreadyRecorded`], is found here without a constraint error: the batch statement
//! inserts records and mails `on conflict (lead_id, stage) do nothing` and reports which leads it
//! wrote (see [`RECORD_BATCH`]; the lead store's constraint map is `error.rs`).

use std::collections::HashMap;
use std::fmt;
use std::sync::LazyLock;

use serde::Serialize;
use sqlx::pool::PoolConnection;
use sqlx::postgres::PgRow;
use sqlx::{Connection as _, PgConnection, PgPool, Postgres, Row as _, Transaction};
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
            buffered: Buffered::default(),
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
    /// The processed stages not written yet (written when the buffer is full and at commit).
    buffered: Buffered,
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
/// before the stage's cut-off), by id after the cursor, locked. The first three conditions are
/// the predicate of `leads_followup_open_idx` (migrations/0008) verbatim, so the planner walks
/// that index in id order from the cursor and stops at the page's last lead.
/// `$1` cursor, `$2`/`$3` the T+3/T+7 cut-offs (`now - offset`), `$4` limit.
///
/// It returns only ids; [`LOAD_CANDIDATES`] reads the candidates in a second statement. Reading
/// the records in the claim itself would read them at the claim's snapshot: a lead whose batch
/// committed a record while the claim ran is locked with its *new* row (the lock re-checks it),
/// but joined with the *old* records, and would be offered a stage that is already recorded.
/// The second statement's snapshot is younger than the locks, and nobody records a locked lead.
fn claim_statement(first_page: bool) -> String {
    let cursor = if first_page {
        "l.id >= $1"
    } else {
        "l.id > $1"
    };
    format!(
        "select l.id from leads l \
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
/// The claimed candidates (`$1` their ids), by id.
static LOAD_CANDIDATES: LazyLock<String> =
    LazyLock::new(|| format!("{CANDIDATE_SELECT} where l.id = any($1) order by l.id"));

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

/// Everything the buffered processed stages write, in one statement (see the module docs): one
/// row per stage in every column array. The lead's progress is the domain's, computed by
/// [`FollowUpTx::record`] (`$7`, `$8`); the mail columns hold only the stages with a mail, the
/// event columns every event. A record or mail that exists already for its lead and stage is
/// left out of `recorded` / `mailed` (`on conflict do nothing`: a unique violation's detail would
/// not name the lead, the tables have row-level security) and fails the batch as
/// [`StoreError::AlreadyRecorded`] of that lead and stage.
const RECORD_BATCH: &str = "\
    with f as ( \
        insert into followups (lead_id, territory_id, stage, status, reason, processed_at) \
        select * from unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], \
                             $6::timestamptz[]) \
        on conflict (lead_id, stage) do nothing \
        returning lead_id \
    ), l as ( \
        update leads set followup_next_stage = u.next_stage, followup_sent = u.sent, \
               followup_t3_sent_at = case when u.stage = 'T3' and u.status = 'SENT' then u.at \
                                          else leads.followup_t3_sent_at end, \
               followup_t7_sent_at = case when u.stage = 'T7' and u.status = 'SENT' then u.at \
                                          else leads.followup_t7_sent_at end \
          from unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $6::timestamptz[], \
                      $7::text[], $8::boolean[]) \
                 as u(id, territory_id, stage, status, at, next_stage, sent) \
         where leads.id = u.id and leads.territory_id = u.territory_id \
        returning leads.id \
    ), a as ( \
        insert into activities \
          (id, lead_id, territory_id, type, occurred_at, description, user_id, \
           meaningful_contact, metadata, created_at) \
        select a.id, a.lead_id, a.territory_id, a.type, a.occurred_at, a.description, \
               a.user_id, a.meaningful_contact, a.metadata, a.created_at \
          from unnest($9::uuid[], $1::uuid[], $2::text[], $10::text[], $11::timestamptz[], \
                      $12::text[], $13::text[], $14::boolean[], $15::jsonb[], \
                      $16::timestamptz[]) \
                 as a(id, lead_id, territory_id, type, occurred_at, description, user_id, \
                      meaningful_contact, metadata, created_at) \
    ), m as ( \
        insert into mail_outbox \
          (id, lead_id, territory_id, stage, recipient, subject, html, text, unsubscribe_url, \
           status, attempts, next_attempt_at, created_at, updated_at) \
        select m.id, m.lead_id, m.territory_id, m.stage, m.recipient, m.subject, m.html, \
               m.text, m.unsubscribe_url, 'QUEUED', 0, m.queued_at, m.queued_at, m.queued_at \
          from unnest($17::uuid[], $18::uuid[], $19::text[], $20::text[], $21::text[], \
                      $22::text[], $23::text[], $24::text[], $25::text[], $26::timestamptz[]) \
                 as m(id, lead_id, territory_id, stage, recipient, subject, html, text, \
                      unsubscribe_url, queued_at) \
        on conflict (lead_id, stage) do nothing \
        returning lead_id \
    ), e as ( \
        insert into event_outbox (event_id, source, type, subject, territory_id, payload, dashboard) \
        select * from unnest($27::uuid[], $28::text[], $29::text[], $30::text[], $31::text[], \
                             $32::jsonb[], $33::boolean[]) \
    ) \
    select (select count(*) from l) as leads_updated, array(select lead_id from f) as recorded, \
           array(select lead_id from m) as mailed";

/// How many processed stages [`PgFollowUpTx`] buffers before it writes them (it writes the rest
/// at commit): a batch of the default size is one statement.
const RECORD_BUFFER: usize = 256;

/// The processed stages a [`PgFollowUpTx`] has not written yet, as the column arrays of
/// [`RECORD_BATCH`]. At most one stage per lead (a second stage of a buffered lead flushes
/// first, so the lead's update sees the first).
#[derive(Default)]
struct Buffered {
    lead_ids: Vec<Uuid>,
    territories: Vec<&'static str>,
    stages: Vec<&'static str>,
    statuses: Vec<&'static str>,
    reasons: Vec<Option<&'static str>>,
    processed_at: Vec<OffsetDateTime>,
    next_stages: Vec<Option<&'static str>>,
    sent: Vec<bool>,
    activity_ids: Vec<Uuid>,
    activity_types: Vec<&'static str>,
    occurred_at: Vec<OffsetDateTime>,
    descriptions: Vec<Option<String>>,
    user_ids: Vec<String>,
    meaningful: Vec<bool>,
    metadata: Vec<serde_json::Value>,
    created_at: Vec<OffsetDateTime>,
    mail_ids: Vec<Uuid>,
    mail_leads: Vec<Uuid>,
    mail_territories: Vec<&'static str>,
    mail_stages: Vec<&'static str>,
    recipients: Vec<String>,
    subjects: Vec<String>,
    htmls: Vec<String>,
    texts: Vec<String>,
    unsubscribe_urls: Vec<String>,
    queued_at: Vec<OffsetDateTime>,
    events: EventColumns,
    /// The (lead, stage) of every buffered record, and of every buffered mail: what the write
    /// must report back as written.
    records: Vec<(Uuid, Stage)>,
    mails: Vec<(Uuid, Stage)>,
}

impl Buffered {
    fn len(&self) -> usize {
        self.lead_ids.len()
    }

    fn holds(&self, lead_id: Uuid) -> bool {
        self.lead_ids.contains(&lead_id)
    }

    fn push(
        &mut self,
        processed: ProcessedFollowUp,
        next_stage: Option<Stage>,
        any_sent: bool,
    ) -> Result<(), StoreError> {
        let ProcessedFollowUp {
            lead_id,
            territory,
            record,
            activity,
            mail,
            events,
        } = processed;
        self.events.extend(&events)?;
        self.records.push((lead_id, record.stage));
        self.lead_ids.push(lead_id);
        self.territories.push(territory.as_str());
        self.stages.push(record.stage.as_str());
        self.statuses.push(record.status.as_str());
        self.reasons.push(record.reason.map(SkipReason::as_str));
        self.processed_at.push(record.processed_at);
        self.next_stages.push(next_stage.map(Stage::as_str));
        self.sent.push(any_sent);
        self.activity_ids.push(activity.id);
        self.activity_types.push(activity.activity_type.as_str());
        self.occurred_at.push(activity.occurred_at);
        self.descriptions.push(activity.description);
        self.user_ids.push(activity.user_id.as_str().to_owned());
        self.meaningful.push(activity.meaningful_contact);
        self.metadata.push(activity.metadata);
        self.created_at.push(activity.created_at);
        if let Some(mail) = mail {
            self.mail_ids.push(mail.id);
            self.mails.push((lead_id, record.stage));
            self.mail_leads.push(lead_id);
            self.mail_territories.push(territory.as_str());
            self.mail_stages.push(record.stage.as_str());
            self.recipients.push(mail.to);
            self.subjects.push(mail.subject);
            self.htmls.push(mail.html);
            self.texts.push(mail.text);
            self.unsubscribe_urls.push(mail.unsubscribe_url);
            self.queued_at.push(mail.queued_at);
        }
        Ok(())
    }
}

/// The event outbox columns of `events`, as arrays for `unnest` (the same row shape as the lead
/// store's outbox writer: territory from `data.territory`, the dashboard flag from
/// [`freshplan_leads::events::moves_dashboard`]).
#[derive(Default)]
struct EventColumns {
    ids: Vec<Uuid>,
    sources: Vec<String>,
    types: Vec<String>,
    subjects: Vec<Option<String>>,
    territories: Vec<Option<String>>,
    payloads: Vec<serde_json::Value>,
    dashboard: Vec<bool>,
}

impl EventColumns {
    fn extend<'a>(
        &mut self,
        events: impl IntoIterator<Item = &'a CloudEvent>,
    ) -> Result<(), StoreError> {
        for event in events {
            let territory = event
                .data
                .get("territory")
                .and_then(serde_json::Value::as_str)
                .and_then(|t| t.parse::<TerritoryId>().ok());
            self.payloads
                .push(serde_json::to_value(event).map_err(StoreError::backend)?);
            self.ids.push(event.id);
            self.sources.push(event.source.clone());
            self.types.push(event.event_type.clone());
            self.subjects.push(event.subject.clone());
            self.territories
                .push(territory.map(|t| t.as_str().to_owned()));
            self.dashboard
                .push(freshplan_leads::events::moves_dashboard(event));
        }
        Ok(())
    }
}

fn event_columns<'a>(
    events: impl IntoIterator<Item = &'a CloudEvent>,
) -> Result<EventColumns, StoreError> {
    let mut columns = EventColumns::default();
    columns.extend(events)?;
    Ok(columns)
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

    /// Writes the buffered stages in one statement. A stage recorded meanwhile (by a writer
    /// that bypassed the claim) is [`StoreError::AlreadyRecorded`].
    async fn flush(&mut self) -> Result<(), StoreError> {
        if self.buffered.len() == 0 {
            return Ok(());
        }
        let b = std::mem::take(&mut self.buffered);
        let expected = i64::try_from(b.len()).unwrap_or(i64::MAX);
        let row = sqlx::query(RECORD_BATCH)
            .bind(b.lead_ids)
            .bind(b.territories)
            .bind(b.stages)
            .bind(b.statuses)
            .bind(b.reasons)
            .bind(b.processed_at)
            .bind(b.next_stages)
            .bind(b.sent)
            .bind(b.activity_ids)
            .bind(b.activity_types)
            .bind(b.occurred_at)
            .bind(b.descriptions)
            .bind(b.user_ids)
            .bind(b.meaningful)
            .bind(b.metadata)
            .bind(b.created_at)
            .bind(b.mail_ids)
            .bind(b.mail_leads)
            .bind(b.mail_territories)
            .bind(b.mail_stages)
            .bind(b.recipients)
            .bind(b.subjects)
            .bind(b.htmls)
            .bind(b.texts)
            .bind(b.unsubscribe_urls)
            .bind(b.queued_at)
            .bind(b.events.ids)
            .bind(b.events.sources)
            .bind(b.events.types)
            .bind(b.events.subjects)
            .bind(b.events.territories)
            .bind(b.events.payloads)
            .bind(b.events.dashboard)
            .fetch_one(&mut *self.tx)
            .await
            .map_err(backend("record follow-ups"))?;
        let recorded: Vec<Uuid> = get(&row, "recorded")?;
        let mailed: Vec<Uuid> = get(&row, "mailed")?;
        let existing = b
            .records
            .iter()
            .find(|(lead, _)| !recorded.contains(lead))
            .or_else(|| b.mails.iter().find(|(lead, _)| !mailed.contains(lead)));
        if let Some(&(lead_id, stage)) = existing {
            return Err(StoreError::AlreadyRecorded { lead_id, stage });
        }
        let updated: i64 = get(&row, "leads_updated")?;
        if updated != expected {
            // A record's territory is not its lead's (the foreign key would have said so too);
            // nothing of the statement may stay.
            return Err(corrupt(
                "followups.territory_id",
                format!("{updated} of {expected} leads matched their records' territory"),
            ));
        }
        Ok(())
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
        let ids: Vec<Uuid> = sqlx::query_scalar(statement)
            .bind(cursor)
            .bind(now - Stage::T3.due_offset())
            .bind(now - Stage::T7.due_offset())
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .fetch_all(&mut *self.tx)
            .await
            .map_err(backend("claim due follow-ups"))?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let rows = sqlx::query(&LOAD_CANDIDATES)
            .bind(ids)
            .fetch_all(&mut *self.tx)
            .await
            .map_err(backend("read the claimed follow-up candidates"))?;
        let candidates = rows.iter().map(candidate).collect::<Result<Vec<_>, _>>()?;
        for c in &candidates {
            self.claimed.insert(c.lead_id, c.clone());
        }
        Ok(candidates)
    }

    async fn record(&mut self, processed: ProcessedFollowUp) -> Result<(), StoreError> {
        let lead_id = processed.lead_id;
        let stage = processed.record.stage;
        if self.buffered.holds(lead_id) || self.buffered.len() >= RECORD_BUFFER {
            self.flush().await?;
        }
        let mut lead = match self.claimed.remove(&lead_id) {
            Some(c) => c,
            None => self.load_candidate(lead_id).await?,
        };
        if lead.record(stage).is_some() {
            return Err(StoreError::AlreadyRecorded { lead_id, stage });
        }
        match stage {
            Stage::T3 => lead.t3 = Some(processed.record),
            Stage::T7 => lead.t7 = Some(processed.record),
        }
        let next_stage = lead.next_stage();
        let any_sent = lead.t3.iter().chain(lead.t7.iter()).any(|r| r.is_sent());
        if self.after_commit.is_some() {
            self.appended.extend(processed.events.iter().cloned());
        }
        self.buffered.push(processed, next_stage, any_sent)?;
        self.claimed.insert(lead_id, lead);
        Ok(())
    }

    async fn commit(mut self) -> Result<(), StoreError> {
        if let Err(e) = self.flush().await {
            // Release the claimed leads now rather than when the pool takes the connection
            // back; the batch's error is what the caller needs, not the rollback's.
            let _ = self.tx.rollback().await;
            return Err(e);
        }
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
        // The counts' maintenance runs beside the run's batches (polled together, so neither
        // waits for the other) and is dropped when the run ends; the after-run compaction below
        // repeats it.
        let maintenance = async {
            loop {
                tokio::time::sleep(COUNTS_MAINTENANCE_INTERVAL).await;
                self.maintain_counts(service.clock().now()).await;
            }
        };
        let result = tokio::select! {
            result = service.run(run_id) => result,
            () = maintenance => unreachable!("the maintenance loop ends only when dropped"),
        };
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
        if compacted.is_ok() {
            self.vacuum_counts().await;
        }
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

/// How often a run compacts and vacuums the count tables while it runs
/// ([`PgFollowUpStore::maintain_counts`]).
const COUNTS_MAINTENANCE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);

impl PgFollowUpStore {
    /// What [`PgFollowUpStore::run_exclusive`] does every few seconds while a run is in flight:
    /// folds the count deltas the run's batches appended ([`PgFollowUpStore::compact_counts`];
    /// the batches' statements do not fold, migrations/0007) and vacuums the tables
    /// ([`PgFollowUpStore::vacuum_counts`]). A failure is logged: the counts stay exact without
    /// it, and the run must not fail for it.
    async fn maintain_counts(&self, now: OffsetDateTime) {
        if let Err(e) = self.compact_counts(now).await {
            tracing::warn!(error = %error_chain(&e), "compacting the follow-up counts failed");
        }
        self.vacuum_counts().await;
    }

    /// Vacuums the cockpit's count tables (`followup_figure_counts`, `followup_sent_counts`).
    ///
    /// A run appends two to three delta rows per processed lead and its folds delete them again:
    /// ≈ 300k dead rows per 100k leads in two small tables. Until they are vacuumed, every fold
    /// and every cockpit read walks them (a fold cost ≈ 3 ms instead of ≈ 0.1 ms after a 100k
    /// run, measured), and autovacuum may be off or busy with the large tables. So
    /// [`PgFollowUpStore::run_exclusive`] vacuums them every few seconds during a run (after a
    /// compaction) and once after the run's compaction (≈ 10–100 ms each; `VACUUM` blocks no reader or writer).
    ///
    /// Maintenance, not an application query: it runs on a plain connection of the pool's
    /// `DATABASE_URL` role, the role that migrated and owns the tables (like [`crate::migrate`];
    /// pooled connections are switched to the unprivileged application role, which may not
    /// vacuum). With another role the server skips the tables with a warning. Failures are
    /// logged, never raised: the counts stay exact without it.
    pub async fn vacuum_counts(&self) {
        let options = self.pool.connect_options();
        let vacuumed = async {
            let mut conn = PgConnection::connect_with(&options).await?;
            sqlx::Executor::execute(
                &mut conn,
                "vacuum followup_figure_counts, followup_sent_counts",
            )
            .await?;
            conn.close().await
        }
        .await;
        if let Err(e) = vacuumed {
            tracing::warn!(error = %e, "vacuuming the follow-up counts failed");
        }
    }

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
