//! [`PgLeadStore`] / [`PgLeadTx`]: the lead ports on PostgreSQL.

use std::fmt;
use std::sync::LazyLock;

use sqlx::postgres::{PgArguments, PgRow};
use sqlx::query::Query;
use sqlx::{PgConnection, PgPool, Postgres, QueryBuilder, Row as _, Transaction};
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

use freshplan_kernel::{Actor, CloudEvent, Role, TerritoryId, UserId};
use freshplan_leads::Lead;
use freshplan_leads::activity::Activity;
use freshplan_leads::activity::ActivityType;
use freshplan_leads::duplicates::{DuplicateKeys, DuplicateKind};
use freshplan_leads::personal::{self, AuditEntry, ConsentChange, ErasureCounts, PersonalRecords};
use freshplan_leads::ports::{
    IdempotencyRecord, LeadQuery, LeadStore, LeadTx, Page, SortField, StoreError, WriteError,
};
use freshplan_leads::protection::{ProtectionPolicy, SweepFacts, next_due};
use freshplan_leads::service::IDEMPOTENCY_WINDOW;

use crate::error::{classify, store_error};
use crate::rows::{self, ACTIVITY_COLUMNS, LEAD_COLUMNS, LEAD_FROM, LEAD_WRITE_COLUMNS};

/// The lead store on PostgreSQL. Cloning shares the pool.
///
/// * Every unit of work is one transaction in the caller's row-level-security context
///   ([`crate::begin_as`]); what the actor may not read does not exist for it.
/// * Duplicates (SPEC §4.2) are enforced by partial unique indexes over the domain's keys
///   ([`DuplicateKeys::of`]), so a race yields [`WriteError::Duplicate`].
/// * The sweep index `next_sweep_at` is the domain's [`next_due`] under the store's
///   [`ProtectionPolicy`]: use the same policy as the `LeadService`.
/// * Timestamps are stored with PostgreSQL's precision, microseconds: sub-microsecond parts are
///   truncated on write (a lead read back differs from the one written only there), except
///   `next_sweep_at`, which is rounded up so the sweep never sees a lead before it is due.
#[derive(Debug, Clone)]
pub struct PgLeadStore {
    pool: PgPool,
    policy: ProtectionPolicy,
    after_commit: Option<Hook>,
    /// Where [`LeadStore::begin_read`] may read, when a replica is configured.
    read: Option<ReadReplica>,
}

/// What [`PgLeadStore::with_after_commit`] installs: called with the events a unit of work
/// appended, right after its commit succeeded. It runs on the committing task, so it must be
/// cheap and must not block (e.g. poke the event pipeline's commit signal, count metrics).
pub type AfterCommit = std::sync::Arc<dyn Fn(&[CloudEvent]) + Send + Sync>;

/// An [`AfterCommit`] with a `Debug` impl (closures have none).
#[derive(Clone)]
struct Hook(AfterCommit);

impl fmt::Debug for Hook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AfterCommit(..)")
    }
}

impl PgLeadStore {
    /// A store on `pool` with the default protection policy. The pool should come from
    /// [`crate::connect`]; each transaction switches to the application role anyway.
    pub fn new(pool: PgPool) -> PgLeadStore {
        PgLeadStore::with_policy(pool, ProtectionPolicy::default())
    }

    /// A store whose sweep index uses `policy`.
    pub fn with_policy(pool: PgPool, policy: ProtectionPolicy) -> PgLeadStore {
        PgLeadStore {
            pool,
            policy,
            after_commit: None,
            read: None,
        }
    }

    /// This store, serving [`LeadStore::begin_read`] from `replica` (a hot standby of the
    /// primary, from [`crate::connect_replica`]) once it has replayed the primary's WAL position of
    /// the moment the read begins (read-your-writes, ADR 0015). A replica that has not caught up
    /// within `max_wait`, or cannot be reached, leaves the read to the primary.
    pub fn with_read_replica(mut self, replica: PgPool, max_wait: std::time::Duration) -> Self {
        self.read = Some(ReadReplica {
            pool: replica,
            max_wait,
        });
        self
    }

    /// This store, calling `hook` with the appended events after every unit of work that
    /// appended events **and committed** — never after a rollback, a drop or a failed commit.
    /// The app wakes the event pipeline with it (SPEC §7.3: NOTIFY never inside the request
    /// transaction).
    pub fn with_after_commit(mut self, hook: AfterCommit) -> PgLeadStore {
        self.after_commit = Some(Hook(hook));
        self
    }

    /// The pool.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

/// One unit of work of [`PgLeadStore`]: a transaction in the actor's context. Dropping it
/// without [`LeadTx::commit`] rolls back.
pub struct PgLeadTx {
    tx: Transaction<'static, Postgres>,
    user_id: UserId,
    /// Whether the actor reads leads only as their owner or a collaborator (see [`owned_only`]).
    owned_only: bool,
    policy: ProtectionPolicy,
    /// The store's after-commit hook, and the events appended so far (kept only when there is
    /// a hook).
    after_commit: Option<Hook>,
    appended: Vec<CloudEvent>,
    /// Rows written but not yet sent (see [`Pending`]).
    pending: Pending,
}

/// Rows the unit of work has written but not yet sent: timeline entries, consent-ledger rows and
/// outbox events. They go to PostgreSQL together in one statement ([`FLUSH`]) before the next
/// statement of the transaction or before `COMMIT`, so every later statement sees them as if each
/// had been inserted at once, and a create or a change sends one statement for its entry, its
/// ledger row and its event instead of one each (the write path's round trips, issue 12).
#[derive(Debug, Default)]
struct Pending {
    activities: Vec<Activity>,
    consents: Vec<ConsentChange>,
    events: Vec<PendingEvent>,
}

#[derive(Debug)]
struct PendingEvent {
    id: Uuid,
    source: String,
    event_type: String,
    subject: Option<String>,
    territory: Option<&'static str>,
    payload: serde_json::Value,
    dashboard: bool,
}

impl Pending {
    fn is_empty(&self) -> bool {
        self.activities.is_empty() && self.consents.is_empty() && self.events.is_empty()
    }
}

/// Inserts the pending rows, each kind in its order of writing: the timeline entries and ledger
/// rows take their territory from their lead (the composite foreign keys keep them equal; a lead
/// the caller cannot see yields no row, which [`PgLeadTx::flush`] reports), the events as given.
/// Foreign keys are checked at the end of the statement, after all three inserts.
const FLUSH: &str = "\
with a as (
    insert into activities
        (id, lead_id, territory_id, type, occurred_at, description, user_id, meaningful_contact,
         metadata, created_at)
    select a.id, l.id, l.territory_id, a.type, a.occurred_at, a.description, a.user_id,
           a.meaningful_contact, a.metadata, a.created_at
      from unnest($1::uuid[], $2::uuid[], $3::text[], $4::timestamptz[], $5::text[], $6::text[],
                  $7::bool[], $8::jsonb[], $9::timestamptz[]) with ordinality
               as a(id, lead_id, type, occurred_at, description, user_id, meaningful_contact,
                    metadata, created_at, ord)
      join leads l on l.id = a.lead_id
     order by a.ord
    returning 1
), c as (
    insert into consent_changes (id, lead_id, territory_id, consent, source, changed_at, changed_by)
    select c.id, l.id, l.territory_id, c.consent, c.source, c.changed_at, c.changed_by
      from unnest($10::uuid[], $11::uuid[], $12::bool[], $13::text[], $14::timestamptz[],
                  $15::text[]) with ordinality
               as c(id, lead_id, consent, source, changed_at, changed_by, ord)
      join leads l on l.id = c.lead_id
     order by c.ord
    returning 1
), e as (
    insert into event_outbox (event_id, source, type, subject, territory_id, payload, dashboard)
    select e.event_id, e.source, e.type, e.subject, e.territory_id, e.payload, e.dashboard
      from unnest($16::uuid[], $17::text[], $18::text[], $19::text[], $20::text[], $21::jsonb[],
                  $22::bool[]) with ordinality
               as e(event_id, source, type, subject, territory_id, payload, dashboard, ord)
     order by e.ord
    returning 1
)
select (select count(*) from a), (select count(*) from c), (select count(*) from e)";

/// Whether `actor` sees leads only through the sales arm of the leads policy (owned or
/// collaborating): a sales rep without admin, manager or viewer. The policy (migrations/0002)
/// decides visibility either way; the list statement restates this arm as an id set the planner
/// can take from the owner and collaborator indexes, because the policy's OR of all arms can only
/// be checked row by row (a scan of every lead in the territory).
fn owned_only(actor: &Actor) -> bool {
    !actor.is_system()
        && actor.has_role(Role::Sales)
        && ![Role::Admin, Role::Manager, Role::Viewer]
            .into_iter()
            .any(|r| actor.has_role(r))
}

impl fmt::Debug for PgLeadTx {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgLeadTx")
            .field("user_id", &self.user_id)
            .finish_non_exhaustive()
    }
}

impl PgLeadTx {
    /// The transaction's connection, for further statements in the same transaction and
    /// context (e.g. a read model, or tests issuing raw SQL under row-level security); what the
    /// unit of work wrote so far is sent first.
    pub async fn connection(&mut self) -> Result<&mut PgConnection, StoreError> {
        self.flush().await?;
        Ok(&mut self.tx)
    }

    /// Sends the pending rows ([`Pending`], [`FLUSH`]); nothing when there are none.
    async fn flush(&mut self) -> Result<(), StoreError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let Pending {
            activities: a,
            consents: c,
            events: e,
        } = std::mem::take(&mut self.pending);
        let (na, nc, ne): (i64, i64, i64) = sqlx::query_as(FLUSH)
            .bind(a.iter().map(|a| a.id).collect::<Vec<_>>())
            .bind(a.iter().map(|a| a.lead_id).collect::<Vec<_>>())
            .bind(
                a.iter()
                    .map(|a| a.activity_type.as_str())
                    .collect::<Vec<_>>(),
            )
            .bind(a.iter().map(|a| a.occurred_at).collect::<Vec<_>>())
            .bind(a.iter().map(|a| a.description.clone()).collect::<Vec<_>>())
            .bind(
                a.iter()
                    .map(|a| a.user_id.as_str().to_owned())
                    .collect::<Vec<_>>(),
            )
            .bind(a.iter().map(|a| a.meaningful_contact).collect::<Vec<_>>())
            .bind(a.iter().map(|a| a.metadata.clone()).collect::<Vec<_>>())
            .bind(a.iter().map(|a| a.created_at).collect::<Vec<_>>())
            .bind(c.iter().map(|c| c.id).collect::<Vec<_>>())
            .bind(c.iter().map(|c| c.lead_id).collect::<Vec<_>>())
            .bind(c.iter().map(|c| c.consent).collect::<Vec<_>>())
            .bind(c.iter().map(|c| c.source.as_str()).collect::<Vec<_>>())
            .bind(c.iter().map(|c| c.changed_at).collect::<Vec<_>>())
            .bind(
                c.iter()
                    .map(|c| c.changed_by.as_str().to_owned())
                    .collect::<Vec<_>>(),
            )
            .bind(e.iter().map(|e| e.id).collect::<Vec<_>>())
            .bind(e.iter().map(|e| e.source.clone()).collect::<Vec<_>>())
            .bind(e.iter().map(|e| e.event_type.clone()).collect::<Vec<_>>())
            .bind(e.iter().map(|e| e.subject.clone()).collect::<Vec<_>>())
            .bind(e.iter().map(|e| e.territory).collect::<Vec<_>>())
            .bind(e.iter().map(|e| e.payload.clone()).collect::<Vec<_>>())
            .bind(e.iter().map(|e| e.dashboard).collect::<Vec<_>>())
            .fetch_one(&mut *self.tx)
            .await
            .map_err(store_error(
                "insert timeline entries, consent changes and events",
            ))?;
        let missing = |n: i64, rows: Vec<Uuid>, what: &str| {
            (usize::try_from(n).ok() != Some(rows.len())).then(|| {
                StoreError::msg(format!(
                    "{what}: {} of {} rows were written (ids {rows:?}; no row is written for a \
                     lead the caller cannot see)",
                    n,
                    rows.len()
                ))
            })
        };
        if let Some(error) = missing(
            na,
            a.iter().map(|a| a.lead_id).collect(),
            "insert activities",
        )
        .or_else(|| {
            missing(
                nc,
                c.iter().map(|c| c.lead_id).collect(),
                "record consent changes",
            )
        })
        .or_else(|| missing(ne, e.iter().map(|e| e.id).collect(), "append events"))
        {
            return Err(error);
        }
        Ok(())
    }
}

/// A hot standby for reads, and how long a read waits for it to catch up.
#[derive(Debug, Clone)]
struct ReadReplica {
    pool: PgPool,
    max_wait: std::time::Duration,
}

impl PgLeadStore {
    fn unit_of_work(&self, tx: Transaction<'static, Postgres>, actor: &Actor) -> PgLeadTx {
        PgLeadTx {
            tx,
            user_id: actor.user_id().clone(),
            owned_only: owned_only(actor),
            policy: self.policy,
            after_commit: self.after_commit.clone(),
            appended: Vec::new(),
            pending: Pending::default(),
        }
    }

    /// A transaction on the replica once it has replayed `lsn` (checked with fresh snapshots,
    /// so the caller's next statement sees it), `None` when it has not within its `max_wait`.
    async fn on_replica(
        &self,
        replica: &ReadReplica,
        actor: &Actor,
        lsn: &str,
    ) -> Result<Option<Transaction<'static, Postgres>>, sqlx::Error> {
        let mut tx = crate::begin_as(&replica.pool, actor).await?;
        let deadline = tokio::time::Instant::now() + replica.max_wait;
        loop {
            let replayed: Option<bool> =
                sqlx::query_scalar("select pg_last_wal_replay_lsn() >= $1::text::pg_lsn")
                    .bind(lsn)
                    .fetch_one(&mut *tx)
                    .await?;
            if replayed == Some(true) {
                return Ok(Some(tx));
            }
            if replayed.is_none() || tokio::time::Instant::now() >= deadline {
                // Not a standby (no replay position), or too far behind.
                return Ok(None);
            }
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        }
    }
}

impl LeadStore for PgLeadStore {
    type Tx = PgLeadTx;

    async fn begin(&self, actor: &Actor) -> Result<PgLeadTx, StoreError> {
        let tx = crate::begin_as(&self.pool, actor)
            .await
            .map_err(store_error("begin a transaction"))?;
        Ok(self.unit_of_work(tx, actor))
    }

    async fn begin_read(&self, actor: &Actor) -> Result<PgLeadTx, StoreError> {
        let Some(replica) = &self.read else {
            return self.begin(actor).await;
        };
        // The primary's WAL position now: every commit that returned before this read began
        // lies at or before it.
        let lsn: String = sqlx::query_scalar("select pg_current_wal_lsn()::text")
            .fetch_one(&self.pool)
            .await
            .map_err(store_error("read the primary's WAL position"))?;
        match self.on_replica(replica, actor, &lsn).await {
            Ok(Some(tx)) => return Ok(self.unit_of_work(tx, actor)),
            Ok(None) => {
                tracing::debug!(%lsn, "the read replica lags; reading from the primary");
            }
            Err(error) => {
                tracing::warn!(%error, "the read replica cannot be reached; reading from the primary");
            }
        }
        self.begin(actor).await
    }
}

static INSERT_LEAD: LazyLock<String> = LazyLock::new(|| {
    let columns: Vec<&str> = LEAD_WRITE_COLUMNS.iter().map(|(c, _)| *c).collect();
    let values: Vec<String> = LEAD_WRITE_COLUMNS
        .iter()
        .enumerate()
        .map(|(i, (_, expr))| expr.replace("{}", &format!("${}", i + 2)))
        .collect();
    format!(
        "insert into leads (id, {}) values ($1, {})",
        columns.join(", "),
        values.join(", ")
    )
});

static UPDATE_LEAD: LazyLock<String> = LazyLock::new(|| {
    let columns: Vec<&str> = LEAD_WRITE_COLUMNS.iter().map(|(c, _)| *c).collect();
    let values: Vec<String> = LEAD_WRITE_COLUMNS
        .iter()
        .enumerate()
        .map(|(i, (_, expr))| expr.replace("{}", &format!("${}", i + 2)))
        .collect();
    format!(
        "update leads set ({}) = ({}) where id = $1 and version = ${}",
        columns.join(", "),
        values.join(", "),
        LEAD_WRITE_COLUMNS.len() + 2
    )
});

/// `insert into leads` with `rows` rows of parameters, each in the order of [`bind_lead`]: one
/// statement (and one firing of the statement triggers) for an import batch.
fn insert_leads_sql(rows: usize) -> String {
    let width = LEAD_WRITE_COLUMNS.len() + 1;
    let columns: Vec<&str> = LEAD_WRITE_COLUMNS.iter().map(|(c, _)| *c).collect();
    let values: Vec<String> = (0..rows)
        .map(|r| {
            let base = r * width;
            let exprs: Vec<String> = LEAD_WRITE_COLUMNS
                .iter()
                .enumerate()
                .map(|(i, (_, expr))| expr.replace("{}", &format!("${}", base + i + 2)))
                .collect();
            format!("(${}, {})", base + 1, exprs.join(", "))
        })
        .collect();
    format!(
        "insert into leads (id, {}) values {}",
        columns.join(", "),
        values.join(", ")
    )
}

/// Leads per multi-row insert: PostgreSQL takes at most 65,535 parameters per statement.
const INSERT_CHUNK: usize = 500;

/// Rounds up to whole microseconds (PostgreSQL's precision).
fn ceil_to_micros(t: OffsetDateTime) -> OffsetDateTime {
    match t.nanosecond() % 1_000 {
        0 => t,
        rest => t + Duration::nanoseconds(i64::from(1_000 - rest)),
    }
}

/// The company key as one text: the JSON array `[name, postal code or null, country]`, an
/// injective encoding of the domain's tuple (a missing postal code stays distinct from any
/// postal code, and equal tuples give equal texts).
fn company_key(keys: &DuplicateKeys) -> String {
    serde_json::to_string(&keys.company).unwrap_or_else(|e| unreachable!("strings encode: {e}"))
}

/// Binds `lead` in the order of `$1` (id) and [`LEAD_WRITE_COLUMNS`].
fn bind_lead<'q>(
    query: Query<'q, Postgres, PgArguments>,
    lead: &Lead,
    policy: &ProtectionPolicy,
) -> Query<'q, Postgres, PgArguments> {
    let d = &lead.data;
    let p = &lead.protection;
    let keys = d.duplicate_keys();
    let next_sweep_at = next_due(
        &SweepFacts {
            status: lead.status,
            registered_at: lead.registered_at,
            last_meaningful_contact_at: lead.last_meaningful_contact_at,
            protection: p,
        },
        policy,
    )
    .map(ceil_to_micros);
    query
        .bind(lead.id)
        .bind(lead.version)
        .bind(d.company_name.as_str().to_owned())
        .bind(d.contact_person.clone())
        .bind(d.email.as_ref().map(|e| e.as_str().to_owned()))
        .bind(d.phone.clone())
        .bind(d.website.clone())
        .bind(d.street.clone())
        .bind(d.postal_code.clone())
        .bind(d.city.clone())
        .bind(d.country_code.clone())
        .bind(d.business_type.map(|b| b.as_str()))
        .bind(d.kitchen_size.map(|k| k.as_str()))
        .bind(d.employee_count)
        .bind(d.estimated_volume.map(|v| v.cents()))
        .bind(d.industry.clone())
        .bind(d.source.as_str())
        .bind(d.source_campaign.clone())
        .bind(d.email_consent)
        .bind(lead.email_consent_at)
        .bind(lead.email_consent_source.map(|c| c.as_str()))
        .bind(lead.erased_at)
        .bind(lead.territory.as_str())
        .bind(lead.status.as_str())
        .bind(lead.owner.as_ref().map(|u| u.as_str().to_owned()))
        .bind(
            lead.collaborators
                .iter()
                .map(|u| u.as_str().to_owned())
                .collect::<Vec<_>>(),
        )
        .bind(lead.registered_at)
        .bind(lead.last_activity_at)
        .bind(lead.last_meaningful_contact_at)
        .bind(p.reminder_at)
        .bind(p.grace_until)
        .bind(p.clock_stopped_at)
        .bind(p.stop_reason.clone())
        .bind(p.paused_seconds)
        .bind(p.paused_seconds_at_contact)
        .bind(p.contact_while_stopped)
        .bind(lead.created_at)
        .bind(lead.created_by.as_str().to_owned())
        .bind(lead.updated_at)
        .bind(lead.updated_by.as_str().to_owned())
        .bind(keys.email.clone())
        .bind(company_key(&keys))
        .bind(next_sweep_at)
}

/// Escapes `\`, `%` and `_` so they match literally in `like … escape '\'`.
fn escape_like(needle: &str) -> String {
    let mut out = String::with_capacity(needle.len());
    for c in needle.chars() {
        if matches!(c, '\\' | '%' | '_') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The field separator of `freshplan_lead_search_text` (migrations/0001). No stored field can
/// contain it, so a needle containing it matches nothing.
const SEARCH_SEPARATOR: char = '\u{1f}';

fn sort_expression(field: SortField) -> &'static str {
    // Each matches an index of migrations/0001 (with `l.id` as the second key).
    match field {
        SortField::CreatedAt => "l.created_at",
        SortField::UpdatedAt => "l.updated_at",
        SortField::CompanyName => "lower(l.company_name collate freshplan_text) collate \"C\"",
        SortField::Status => "l.status",
        SortField::RegisteredAt => "l.registered_at",
        SortField::LastActivityAt => "l.last_activity_at",
        SortField::EstimatedVolume => "l.estimated_volume",
        SortField::City => "l.city collate \"C\"",
    }
}

/// A value of one of the domain's enums (a status, a territory, a business type, as `as_str`
/// spells it) as an SQL literal. The values are upper-case identifiers; anything else is a bug,
/// and would not reach the statement.
fn enum_literal(value: &'static str) -> String {
    assert!(
        !value.is_empty()
            && value
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_'),
        "not an enum value: {value:?}"
    );
    format!("'{value}'")
}

/// What a list statement returns.
#[derive(Clone, Copy, PartialEq, Eq)]
enum ListShape {
    /// One page of leads, each row carrying the total count.
    Page,
    /// Only the count.
    Count,
}

/// The list statement: the optional search CTE, then the page (each row carrying the total) or
/// the count alone. One round trip.
///
/// `owned_only`: the actor sees only leads it owns or collaborates on ([`owned_only`]); the
/// statement then restricts itself to the caller's leads and the ids in `lead_collaborators` (the
/// trigger-kept mirror of `collaborator_user_ids`), the same set the policy allows, found
/// through indexes instead of a scan. The caller is named by the transaction's context
/// (`freshplan_ctx_user()`, as the policies name it), not by a bind.
///
/// The total comes from the count read model (`lead_counts` + `lead_count_deltas`,
/// migrations/0005) when the actor sees whole territories and the filter uses only the columns
/// it is keyed by (territory, status, business type); otherwise by counting the matching rows
/// (a window count over the page's own scan), which the owner, collaborator and search filters
/// keep to small sets.
///
/// The enum filters (status, territory, business type) and the page size are spelled as
/// literals, the caller's own leads are found through the context, and the offset is left out
/// on the first page: the statement then has no parameter but the free-text filters (owner,
/// search), so PostgreSQL plans it once per connection with the filter values known and reuses
/// the plan, where a statement with those values bound was re-planned on every call (decision
/// 0016: 1.0–1.8 ms of planning for 0.3–1.2 ms of execution at 100,000 leads).
fn list_statement(
    q: &LeadQuery,
    shape: ListShape,
    owned_only: bool,
) -> QueryBuilder<'static, Postgres> {
    let counted = !owned_only && q.q.is_none() && q.owner.is_none();
    // Sorted and without repeats, so the same filter is always the same statement.
    let statuses = {
        let mut names: Vec<&'static str> = q.statuses.iter().map(|s| s.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        names
            .into_iter()
            .map(enum_literal)
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut qb = QueryBuilder::new("");
    let search = q.q.is_some();
    if let Some(needle) = &q.q {
        // The trigram search runs in a security-definer function (migrations/0002 explains
        // why); materialised so page and count share one search.
        qb.push("with hits as materialized (select id from freshplan_search_leads(");
        qb.push_bind(escape_like(needle));
        qb.push(") as s(id)) ");
    }
    let filters = |qb: &mut QueryBuilder<'static, Postgres>| {
        qb.push("true");
        if !q.include_deleted {
            qb.push(" and l.status <> 'DELETED'");
        }
        if !q.statuses.is_empty() {
            qb.push(" and l.status in (");
            qb.push(&statuses);
            qb.push(")");
        }
        if let Some(t) = q.territory {
            qb.push(" and l.territory_id = ");
            qb.push(enum_literal(t.as_str()));
        }
        if let Some(owner) = &q.owner {
            qb.push(" and l.owner_user_id = ");
            qb.push_bind(owner.as_str().to_owned());
        }
        if let Some(b) = q.business_type {
            qb.push(" and l.business_type = ");
            qb.push(enum_literal(b.as_str()));
        }
        if search {
            qb.push(" and l.id in (select id from hits)");
        }
        if owned_only {
            // Both arms are leakproof comparisons on indexed columns (the owner index, the
            // primary key), so the planner may combine them in a BitmapOr before the policy.
            qb.push(
                " and (l.owner_user_id = (select freshplan_ctx_user()) \
                 or l.id = any(array(select c.lead_id from lead_collaborators c \
                 where c.user_id = (select freshplan_ctx_user()))))",
            );
        }
    };
    // The scalar total: a sum over the read model's rows of the matching keys (its policy
    // admits exactly the territories the actor sees in full), or a count of the matching leads.
    let total = |qb: &mut QueryBuilder<'static, Postgres>| {
        if !counted {
            qb.push("(select count(*) from leads l where ");
            filters(qb);
            qb.push(")");
            return;
        }
        qb.push(
            "(select coalesce(sum(k.n), 0)::bigint from (\
             select c.territory_id, c.status, c.business_type, c.n from lead_counts c \
             union all \
             select d.territory_id, d.status, d.business_type, d.n from lead_count_deltas d\
             ) k where true",
        );
        if !q.include_deleted {
            qb.push(" and k.status <> 'DELETED'");
        }
        if !q.statuses.is_empty() {
            qb.push(" and k.status in (");
            qb.push(&statuses);
            qb.push(")");
        }
        if let Some(t) = q.territory {
            qb.push(" and k.territory_id = ");
            qb.push(enum_literal(t.as_str()));
        }
        if let Some(b) = q.business_type {
            qb.push(" and k.business_type = ");
            qb.push(enum_literal(b.as_str()));
        }
        qb.push(")");
    };
    match shape {
        ListShape::Count => {
            qb.push("select ");
            total(&mut qb);
            qb.push(" as total_count");
        }
        ListShape::Page => {
            let dir = if q.descending { "desc" } else { "asc" };
            qb.push("select ");
            qb.push(LEAD_COLUMNS);
            if counted {
                qb.push(", ");
                total(&mut qb);
                qb.push(" as total_count from ");
            } else {
                // The matching set is small here and is read whole for the sort anyway: count
                // it in the same pass instead of a second scan.
                qb.push(", count(*) over () as total_count from ");
            }
            qb.push(LEAD_FROM);
            qb.push(" where ");
            filters(&mut qb);
            qb.push(format_args!(
                " order by {} {dir}, l.id {dir} limit {}",
                sort_expression(q.sort),
                q.size
            ));
            if q.page > 0 {
                qb.push(" offset ");
                qb.push_bind(i64::from(q.page) * i64::from(q.size));
            }
        }
    }
    qb
}

fn lead_rows(rows: &[PgRow]) -> Result<Vec<Lead>, StoreError> {
    rows.iter().map(rows::lead).collect()
}

/// The lead by id, without a lock (reads).
static READ_LEAD: LazyLock<String> =
    LazyLock::new(|| format!("select {LEAD_COLUMNS} from {LEAD_FROM} where l.id = $1"));

/// What an erasure writes as `lastError` of a mail it withdrew before delivery.
pub(crate) const MAIL_WITHDRAWN_BY_ERASURE: &str = "withdrawn: the personal data was erased";

/// The stored events of a lead whose data carries personal data
/// ([`personal::PERSONAL_EVENT_DATA`]), oldest first. The types are spelled out as literals so
/// the planner can use the partial index `event_outbox_personal_idx` (migrations/0010), which
/// covers exactly these types.
static PERSONAL_EVENTS: LazyLock<String> = LazyLock::new(|| {
    let types: Vec<String> = personal::PERSONAL_EVENT_DATA
        .iter()
        .map(|(t, _)| format!("type = '{t}'"))
        .collect();
    format!(
        "select payload from event_outbox where subject = $1 and ({}) order by txid, id",
        types.join(" or ")
    )
});

/// One statement per personal field of [`personal::PERSONAL_EVENT_DATA`] that replaces it in the
/// lead's stored events (`$1` the subject, `$2` the placeholder). Type and field are spelled out
/// as literals (constants of the domain, without quotes) so that the partial index
/// `event_outbox_personal_idx` serves the statement under a generic plan too.
static REDACT_EVENTS: LazyLock<Vec<String>> = LazyLock::new(|| {
    personal::PERSONAL_EVENT_DATA
        .iter()
        .flat_map(|(event_type, fields)| {
            fields.iter().map(move |field| {
                assert!(
                    !event_type.contains('\'') && !field.contains('\''),
                    "literal-safe names"
                );
                format!(
                    "update event_outbox \
                        set payload = jsonb_set(payload, '{{data,{field}}}', to_jsonb($2::text)) \
                      where subject = $1 and type = '{event_type}' \
                        and payload -> 'data' ? '{field}' \
                        and payload -> 'data' ->> '{field}' is distinct from $2"
                )
            })
        })
        .collect()
});

impl LeadTx for PgLeadTx {
    async fn read(&mut self, id: Uuid) -> Result<Option<Lead>, StoreError> {
        self.flush().await?;
        // No row lock: a lock would make every read a writing transaction (a transaction id, a
        // WAL record for the lock and a WAL flush at commit) and queue it behind writers.
        let row = sqlx::query(&READ_LEAD)
            .bind(id)
            .fetch_optional(&mut *self.tx)
            .await
            .map_err(store_error("read a lead"))?;
        row.as_ref().map(rows::lead).transpose()
    }

    async fn get(&mut self, id: Uuid) -> Result<Option<Lead>, StoreError> {
        self.flush().await?;
        // `no key update`: serialises changes to the lead without blocking inserts that merely
        // reference it (activities, follow-ups). Plain reads use `read`, which does not lock.
        let row = sqlx::query(&format!(
            "select {LEAD_COLUMNS} from {LEAD_FROM} where l.id = $1 for no key update of l"
        ))
        .bind(id)
        .fetch_optional(&mut *self.tx)
        .await
        .map_err(store_error("read a lead"))?;
        row.as_ref().map(rows::lead).transpose()
    }

    async fn find_duplicate(
        &mut self,
        keys: &DuplicateKeys,
        except: Option<Uuid>,
    ) -> Result<Option<Lead>, StoreError> {
        self.flush().await?;
        let row = sqlx::query(&format!(
            "select {LEAD_COLUMNS} from {LEAD_FROM} \
             where l.status <> 'DELETED' and (l.email_key = $1 or l.company_key = $2) \
               and ($3::uuid is null or l.id <> $3) \
             order by l.id limit 1"
        ))
        .bind(keys.email.clone())
        .bind(company_key(keys))
        .bind(except)
        .fetch_optional(&mut *self.tx)
        .await
        .map_err(store_error("look for a duplicate"))?;
        row.as_ref().map(rows::lead).transpose()
    }

    async fn insert(&mut self, lead: &Lead) -> Result<(), WriteError> {
        self.flush().await?;
        bind_lead(sqlx::query(&INSERT_LEAD), lead, &self.policy)
            .execute(&mut *self.tx)
            .await
            .map_err(|e| classify("insert a lead", e))?;
        Ok(())
    }

    async fn insert_many(&mut self, leads: &[Lead]) -> Result<(), WriteError> {
        self.flush().await?;
        for chunk in leads.chunks(INSERT_CHUNK) {
            let sql = insert_leads_sql(chunk.len());
            let mut query = sqlx::query(&sql);
            for lead in chunk {
                query = bind_lead(query, lead, &self.policy);
            }
            query
                .execute(&mut *self.tx)
                .await
                .map_err(|e| classify("insert leads", e))?;
        }
        Ok(())
    }

    async fn taken_keys(
        &mut self,
        keys: &[DuplicateKeys],
    ) -> Result<Vec<Option<(Uuid, DuplicateKind)>>, StoreError> {
        self.flush().await?;
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let rows: Vec<(i32, Uuid, bool)> =
            sqlx::query_as("select ord, lead_id, by_email from freshplan_taken_keys($1, $2)")
                .bind(keys.iter().map(|k| k.email.clone()).collect::<Vec<_>>())
                .bind(keys.iter().map(company_key).collect::<Vec<_>>())
                .fetch_all(&mut *self.tx)
                .await
                .map_err(store_error("look for duplicates"))?;
        let mut taken = vec![None; keys.len()];
        for (ord, id, by_email) in rows {
            let kind = if by_email {
                DuplicateKind::Email
            } else {
                DuplicateKind::Company
            };
            if let Some(slot) = usize::try_from(ord - 1).ok().and_then(|i| taken.get_mut(i)) {
                *slot = Some((id, kind));
            }
        }
        Ok(taken)
    }

    async fn read_many(&mut self, ids: &[Uuid]) -> Result<Vec<Lead>, StoreError> {
        self.flush().await?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let rows = sqlx::query(&format!(
            "select {LEAD_COLUMNS} from {LEAD_FROM} where l.id = any($1)"
        ))
        .bind(ids)
        .fetch_all(&mut *self.tx)
        .await
        .map_err(store_error("read leads"))?;
        rows.iter().map(rows::lead).collect()
    }

    async fn update(&mut self, lead: &Lead, expected_version: i64) -> Result<(), WriteError> {
        self.flush().await?;
        let done = bind_lead(sqlx::query(&UPDATE_LEAD), lead, &self.policy)
            .bind(expected_version)
            .execute(&mut *self.tx)
            .await
            .map_err(|e| classify("update a lead", e))?;
        if done.rows_affected() == 0 {
            return Err(WriteError::VersionConflict);
        }
        Ok(())
    }

    async fn insert_activity(&mut self, activity: &Activity) -> Result<(), StoreError> {
        self.pending.activities.push(activity.clone());
        Ok(())
    }

    async fn list_activities(
        &mut self,
        lead_id: Uuid,
        page: u32,
        size: u32,
    ) -> Result<Page<Activity>, StoreError> {
        self.flush().await?;
        let rows = sqlx::query(&format!(
            "select {ACTIVITY_COLUMNS}, \
                    (select count(*) from activities where lead_id = $1) as total_count \
               from activities where lead_id = $1 \
              order by occurred_at desc, id desc limit $2 offset $3"
        ))
        .bind(lead_id)
        .bind(i64::from(size))
        .bind(i64::from(page) * i64::from(size))
        .fetch_all(&mut *self.tx)
        .await
        .map_err(store_error("list activities"))?;
        let total = match rows.first() {
            Some(row) => row
                .try_get::<i64, _>("total_count")
                .map_err(store_error("list activities"))?,
            None if page == 0 && size > 0 => 0,
            None => {
                sqlx::query_scalar::<_, i64>("select count(*) from activities where lead_id = $1")
                    .bind(lead_id)
                    .fetch_one(&mut *self.tx)
                    .await
                    .map_err(store_error("count activities"))?
            }
        };
        let items = rows.iter().map(rows::activity).collect::<Result<_, _>>()?;
        Ok(Page {
            items,
            total: u64::try_from(total).unwrap_or(0),
        })
    }

    async fn list(&mut self, query: &LeadQuery) -> Result<Page<Lead>, StoreError> {
        self.flush().await?;
        if query
            .q
            .as_deref()
            .is_some_and(|n| n.contains(SEARCH_SEPARATOR))
        {
            return Ok(Page {
                items: Vec::new(),
                total: 0,
            });
        }
        let rows = list_statement(query, ListShape::Page, self.owned_only)
            .build()
            .fetch_all(&mut *self.tx)
            .await
            .map_err(store_error("list leads"))?;
        let total = match rows.first() {
            Some(row) => row
                .try_get::<i64, _>("total_count")
                .map_err(store_error("list leads"))?,
            None if query.page == 0 && query.size > 0 => 0,
            // Past the last page (or an empty page size): no row carried the count.
            None => list_statement(query, ListShape::Count, self.owned_only)
                .build()
                .fetch_one(&mut *self.tx)
                .await
                .and_then(|row| row.try_get::<i64, _>("total_count"))
                .map_err(store_error("count leads"))?,
        };
        Ok(Page {
            items: lead_rows(&rows)?,
            total: u64::try_from(total).unwrap_or(0),
        })
    }

    async fn append_event(&mut self, event: &CloudEvent) -> Result<(), StoreError> {
        let territory = event
            .data
            .get("territory")
            .and_then(serde_json::Value::as_str)
            .and_then(|t| t.parse::<TerritoryId>().ok());
        let payload = serde_json::to_value(event).map_err(|e| StoreError {
            message: "encode an event".to_owned(),
            source: Some(Box::new(e)),
        })?;
        self.pending.events.push(PendingEvent {
            id: event.id,
            source: event.source.clone(),
            event_type: event.event_type.clone(),
            subject: event.subject.clone(),
            territory: territory.map(TerritoryId::as_str),
            payload,
            dashboard: freshplan_leads::events::moves_dashboard(event),
        });
        if self.after_commit.is_some() {
            self.appended.push(event.clone());
        }
        Ok(())
    }

    async fn idempotency_get(
        &mut self,
        key: &str,
    ) -> Result<Option<IdempotencyRecord>, StoreError> {
        self.flush().await?;
        let row = sqlx::query(
            "select request_hash, lead_id, created_at from idempotency_keys \
              where user_id = $1 and key = $2",
        )
        .bind(self.user_id.as_str().to_owned())
        .bind(key.to_owned())
        .fetch_optional(&mut *self.tx)
        .await
        .map_err(store_error("read an idempotency key"))?;
        row.map(|row| {
            Ok(IdempotencyRecord {
                request_hash: row.try_get("request_hash")?,
                lead_id: row.try_get("lead_id")?,
                created_at: row.try_get("created_at")?,
            })
        })
        .transpose()
        .map_err(store_error("read an idempotency key"))
    }

    async fn idempotency_put(
        &mut self,
        key: &str,
        record: &IdempotencyRecord,
    ) -> Result<(), WriteError> {
        self.flush().await?;
        // A key held by a live record (another request, possibly still in flight: ON CONFLICT
        // waits for it) stays; an expired one is taken over, as the domain's window says.
        let done = sqlx::query(
            "insert into idempotency_keys \
               (user_id, key, request_hash, lead_id, territory_id, created_at) \
             select $1, $2, $3, l.id, l.territory_id, $5 from leads l where l.id = $4 \
             on conflict (user_id, key) do update \
                set request_hash = excluded.request_hash, lead_id = excluded.lead_id, \
                    territory_id = excluded.territory_id, created_at = excluded.created_at \
              where idempotency_keys.created_at <= excluded.created_at - make_interval(secs => $6)",
        )
        .bind(self.user_id.as_str().to_owned())
        .bind(key.to_owned())
        .bind(record.request_hash.clone())
        .bind(record.lead_id)
        .bind(record.created_at)
        .bind(IDEMPOTENCY_WINDOW.as_seconds_f64())
        .execute(&mut *self.tx)
        .await
        .map_err(|e| classify("record an idempotency key", e))?;
        if done.rows_affected() == 1 {
            return Ok(());
        }
        let lead_exists: bool =
            sqlx::query_scalar("select exists (select 1 from leads where id = $1)")
                .bind(record.lead_id)
                .fetch_one(&mut *self.tx)
                .await
                .map_err(|e| classify("record an idempotency key", e))?;
        if lead_exists {
            Err(WriteError::IdempotencyKeyTaken)
        } else {
            Err(WriteError::Store(StoreError::msg(format!(
                "record an idempotency key: lead {} not found",
                record.lead_id
            ))))
        }
    }

    async fn due_for_sweep(
        &mut self,
        now: OffsetDateTime,
        limit: u32,
    ) -> Result<Vec<Lead>, StoreError> {
        self.flush().await?;
        // Rows another replica's sweep holds are skipped, never waited for.
        let rows = sqlx::query(&format!(
            "select {LEAD_COLUMNS} from {LEAD_FROM} \
              where l.next_sweep_at <= $1 \
              order by l.next_sweep_at, l.id limit $2 \
              for no key update of l skip locked"
        ))
        .bind(now)
        .bind(i64::from(limit))
        .fetch_all(&mut *self.tx)
        .await
        .map_err(store_error("read leads due for the sweep"))?;
        lead_rows(&rows)
    }

    async fn get_nowait(&mut self, id: Uuid) -> Result<Option<Lead>, WriteError> {
        self.flush().await?;
        let row = sqlx::query(&format!(
            "select {LEAD_COLUMNS} from {LEAD_FROM} where l.id = $1 for no key update of l nowait"
        ))
        .bind(id)
        .fetch_optional(&mut *self.tx)
        .await
        .map_err(|e| classify("lock a lead", e))?;
        Ok(row.as_ref().map(rows::lead).transpose()?)
    }

    async fn insert_consent_change(&mut self, change: &ConsentChange) -> Result<(), StoreError> {
        self.pending.consents.push(change.clone());
        Ok(())
    }

    async fn personal_records(&mut self, lead_id: Uuid) -> Result<PersonalRecords, StoreError> {
        self.flush().await?;
        let activities = sqlx::query(&format!(
            "select {ACTIVITY_COLUMNS} from activities where lead_id = $1 \
              order by occurred_at, id"
        ))
        .bind(lead_id)
        .fetch_all(&mut *self.tx)
        .await
        .map_err(store_error("export activities"))?
        .iter()
        .map(rows::activity)
        .collect::<Result<_, _>>()?;
        let consent = sqlx::query(
            "select id, lead_id, consent, source, changed_at, changed_by from consent_changes \
              where lead_id = $1 order by changed_at, id",
        )
        .bind(lead_id)
        .fetch_all(&mut *self.tx)
        .await
        .map_err(store_error("export the consent ledger"))?
        .iter()
        .map(rows::consent_change)
        .collect::<Result<_, _>>()?;
        let mails = sqlx::query(
            "select id, lead_id, stage, recipient, subject, html, text, unsubscribe_url, status, \
                    attempts, \
                    next_attempt_at, last_error, created_at, sent_at \
               from mail_outbox where lead_id = $1 order by created_at, id",
        )
        .bind(lead_id)
        .fetch_all(&mut *self.tx)
        .await
        .map_err(store_error("export mails"))?
        .iter()
        .map(rows::mail_record)
        .collect::<Result<_, _>>()?;
        let events = sqlx::query_scalar::<_, serde_json::Value>(&PERSONAL_EVENTS)
            .bind(lead_id.to_string())
            .fetch_all(&mut *self.tx)
            .await
            .map_err(store_error("export events"))?;
        Ok(PersonalRecords {
            activities,
            consent,
            mails,
            events,
        })
    }

    async fn erase_related(
        &mut self,
        lead_id: Uuid,
        now: OffsetDateTime,
    ) -> Result<ErasureCounts, StoreError> {
        self.flush().await?;
        let names = |types: Vec<ActivityType>| -> Vec<&'static str> {
            types.into_iter().map(ActivityType::as_str).collect()
        };
        let activities = sqlx::query(
            "update activities \
                set description = case when type = any($2) then null else description end, \
                    metadata = case when type = any($3) then '{}' else metadata end \
              where lead_id = $1 \
                and ((type = any($2) and description is not null) \
                     or (type = any($3) and metadata <> '{}'))",
        )
        .bind(lead_id)
        .bind(names(personal::personal_description_types()))
        .bind(names(personal::personal_metadata_types()))
        .execute(&mut *self.tx)
        .await
        .map_err(store_error("redact the timeline"))?
        .rows_affected();
        // Queued mails are withdrawn (the dispatcher only completes QUEUED rows); every mail
        // loses its recipient, subject, bodies, link and the last error (SMTP errors may quote
        // the address).
        let mails = sqlx::query(
            "update mail_outbox \
                set status = case when status = 'QUEUED' then 'DEAD' else status end, \
                    last_error = case when status = 'QUEUED' then $3 \
                                      when last_error is null then null else $4 end, \
                    recipient = '', subject = '', html = '', text = '', unsubscribe_url = '', \
                    erased_at = $2, body_erased_at = coalesce(body_erased_at, $2), \
                    updated_at = $2 \
              where lead_id = $1 and erased_at is null",
        )
        .bind(lead_id)
        .bind(now)
        .bind(MAIL_WITHDRAWN_BY_ERASURE)
        .bind(personal::REDACTED)
        .execute(&mut *self.tx)
        .await
        .map_err(store_error("erase mails"))?
        .rows_affected();
        let mut events = 0;
        for statement in REDACT_EVENTS.iter() {
            events += sqlx::query(statement)
                .bind(lead_id.to_string())
                .bind(personal::REDACTED)
                .execute(&mut *self.tx)
                .await
                .map_err(store_error("redact events"))?
                .rows_affected();
        }
        let idempotency_keys = sqlx::query("delete from idempotency_keys where lead_id = $1")
            .bind(lead_id)
            .execute(&mut *self.tx)
            .await
            .map_err(store_error("purge idempotency replays"))?
            .rows_affected();
        Ok(ErasureCounts {
            activities,
            mails,
            events,
            idempotency_keys,
        })
    }

    async fn due_for_retention(
        &mut self,
        cutoff: OffsetDateTime,
        limit: u32,
    ) -> Result<Vec<Lead>, StoreError> {
        self.flush().await?;
        // The partial index leads_retention_idx serves exactly this predicate; rows another
        // transaction holds are skipped, never waited for.
        let rows = sqlx::query(&format!(
            "select {LEAD_COLUMNS} from {LEAD_FROM} \
              where l.status in ('LOST', 'EXPIRED', 'DELETED') and l.erased_at is null \
                and l.updated_at <= $1 \
              order by l.updated_at, l.id limit $2 \
              for no key update of l skip locked"
        ))
        .bind(cutoff)
        .bind(i64::from(limit))
        .fetch_all(&mut *self.tx)
        .await
        .map_err(store_error("read leads due for retention"))?;
        lead_rows(&rows)
    }

    async fn erase_mail_bodies(
        &mut self,
        cutoff: OffsetDateTime,
        now: OffsetDateTime,
        limit: u32,
    ) -> Result<u32, StoreError> {
        self.flush().await?;
        let done = sqlx::query(
            "with due as ( \
                select id from mail_outbox \
                 where status <> 'QUEUED' and body_erased_at is null and updated_at <= $1 \
                 order by updated_at, id limit $3 \
                 for update skip locked) \
             update mail_outbox m set html = '', text = '', body_erased_at = $2 \
               from due where m.id = due.id",
        )
        .bind(cutoff)
        .bind(now)
        .bind(i64::from(limit))
        .execute(&mut *self.tx)
        .await
        .map_err(store_error("erase old mail bodies"))?;
        Ok(u32::try_from(done.rows_affected()).unwrap_or(u32::MAX))
    }

    async fn insert_audit(&mut self, entry: &AuditEntry) -> Result<(), StoreError> {
        self.flush().await?;
        sqlx::query(
            "insert into audit_log \
               (id, at, actor, action, lead_id, territory_id, reason, leads_erased, \
                mail_bodies_erased) \
             values ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(entry.id)
        .bind(entry.at)
        .bind(entry.actor.as_str().to_owned())
        .bind(entry.action.as_str())
        .bind(entry.lead_id)
        .bind(entry.territory.map(TerritoryId::as_str))
        .bind(entry.reason.map(|r| r.as_str()))
        .bind(i32::try_from(entry.leads_erased).unwrap_or(i32::MAX))
        .bind(i32::try_from(entry.mail_bodies_erased).unwrap_or(i32::MAX))
        .execute(&mut *self.tx)
        .await
        .map_err(store_error("write the audit log"))?;
        Ok(())
    }

    async fn list_audit(&mut self, page: u32, size: u32) -> Result<Page<AuditEntry>, StoreError> {
        self.flush().await?;
        let items = sqlx::query(
            "select id, at, actor, action, lead_id, territory_id, reason, leads_erased, \
                    mail_bodies_erased \
               from audit_log order by at desc, id desc limit $1 offset $2",
        )
        .bind(i64::from(size))
        .bind(i64::from(page) * i64::from(size))
        .fetch_all(&mut *self.tx)
        .await
        .map_err(store_error("read the audit log"))?
        .iter()
        .map(rows::audit_entry)
        .collect::<Result<_, _>>()?;
        let total: i64 = sqlx::query_scalar("select count(*) from audit_log")
            .fetch_one(&mut *self.tx)
            .await
            .map_err(store_error("count the audit log"))?;
        Ok(Page {
            items,
            total: u64::try_from(total).unwrap_or(0),
        })
    }

    async fn commit(mut self) -> Result<(), StoreError> {
        self.flush().await?;
        self.tx.commit().await.map_err(store_error("commit"))?;
        if let Some(Hook(hook)) = &self.after_commit
            && !self.appended.is_empty()
        {
            hook(&self.appended);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_escaping() {
        assert_eq!(escape_like(r"100%_a\b"), r"100\%\_a\\b");
        assert_eq!(escape_like("plain"), "plain");
    }

    #[test]
    fn write_statements_bind_every_column_once() {
        let n = LEAD_WRITE_COLUMNS.len();
        assert!(INSERT_LEAD.contains(&format!("${}", n + 1)));
        assert!(!INSERT_LEAD.contains(&format!("${}", n + 2)));
        assert!(UPDATE_LEAD.ends_with(&format!("version = ${}", n + 2)));
    }

    #[test]
    fn micro_rounding_is_upwards() {
        let t = OffsetDateTime::from_unix_timestamp_nanos(1_000_000_001_500).unwrap();
        assert_eq!(ceil_to_micros(t).unix_timestamp_nanos(), 1_000_000_002_000);
        let exact = OffsetDateTime::from_unix_timestamp_nanos(1_000_000_002_000).unwrap();
        assert_eq!(ceil_to_micros(exact), exact);
    }

    #[test]
    fn company_keys_keep_a_missing_postal_code_distinct() {
        let with = DuplicateKeys {
            email: None,
            company: ("a".into(), Some(String::new()), "DE".into()),
        };
        let without = DuplicateKeys {
            email: None,
            company: ("a".into(), None, "DE".into()),
        };
        assert_ne!(company_key(&with), company_key(&without));
        assert_eq!(company_key(&without), r#"["a",null,"DE"]"#);
    }

    /// Keys whose read-model sum differs from the count of the leads (either way).
    const COUNT_MISMATCHES: &str = "
        with model as (
            select territory_id, status, business_type, sum(n) as n
              from (select territory_id, status, business_type, n from lead_counts
                    union all
                    select territory_id, status, business_type, n from lead_count_deltas) k
             group by 1, 2, 3
            having sum(n) <> 0),
        actual as (
            select territory_id, status, coalesce(business_type, '') as business_type,
                   count(*)::numeric as n
              from leads group by 1, 2, 3)
        select count(*) from ((table model except table actual)
                              union all (table actual except table model)) x";

    /// The count read model of migrations/0005 follows bulk and single-row inserts, updates
    /// (folded or not), deletes and truncation, and the application role reads only what its
    /// context sees in full.
    #[sqlx::test(migrator = "crate::MIGRATOR")]
    async fn the_count_read_model_matches_the_leads(pool: PgPool) -> sqlx::Result<()> {
        let mismatches = |pool: &PgPool| {
            let pool = pool.clone();
            async move {
                sqlx::query_scalar::<_, i64>(COUNT_MISMATCHES)
                    .fetch_one(&pool)
                    .await
            }
        };
        sqlx::raw_sql(
            "insert into leads (id, version, company_name, country_code, source, email_consent, \
                                territory_id, status, business_type, registered_at, created_at, \
                                created_by, updated_at, updated_by, company_key) \
             select gen_random_uuid(), 1, 'Lead ' || n, 'DE', 'WEB', false, \
                    case when n % 4 = 0 then 'CH' else 'DE' end, \
                    (array['REGISTERED', 'ACTIVE', 'LOST'])[n % 3 + 1], \
                    (array['HOTEL', 'CANTEEN', null])[n % 3 + 1], now(), now(), 'u', now(), 'u', \
                    'key ' || n \
               from generate_series(1, 500) n",
        )
        .execute(&pool)
        .await?;
        assert_eq!(mismatches(&pool).await?, 0, "after a bulk insert");
        sqlx::raw_sql(
            "do $$ begin for i in 1..300 loop \
                 update leads set status = (array['ACTIVE', 'QUALIFIED', 'DELETED'])[i % 3 + 1], \
                                  territory_id = case when i % 7 = 0 then 'CH' else territory_id end \
                  where id = (select id from leads order by company_name offset i limit 1); \
             end loop; end $$; \
             update leads set business_type = 'OTHER' where company_name like 'Lead 1%'; \
             update leads set phone = '1' where company_name like 'Lead 2%'; \
             delete from leads where company_name like 'Lead 3%';",
        )
        .execute(&pool)
        .await?;
        assert_eq!(mismatches(&pool).await?, 0, "after updates and deletes");
        sqlx::raw_sql(
            "select freshplan_fold_lead_counts(territory_id, status, business_type) \
               from lead_counts",
        )
        .execute(&pool)
        .await?;
        let deltas: i64 = sqlx::query_scalar("select count(*) from lead_count_deltas")
            .fetch_one(&pool)
            .await?;
        assert_eq!(deltas, 0, "folding every key consumes every delta");
        assert_eq!(mismatches(&pool).await?, 0, "after folding");

        // As the application: a DE manager reads DE's total, a sales rep nothing, nobody writes.
        let app = crate::app_pool_options(sqlx::postgres::PgPoolOptions::new().max_connections(1))
            .connect_with(pool.connect_options().as_ref().clone())
            .await?;
        let total_as = |actor: Actor| {
            let app = app.clone();
            async move {
                let mut tx = crate::begin_as(&app, &actor).await?;
                let n: i64 = sqlx::query_scalar(
                    "select coalesce(sum(n), 0)::bigint from \
                     (select n from lead_counts union all select n from lead_count_deltas) k",
                )
                .fetch_one(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok::<_, sqlx::Error>(n)
            }
        };
        let de: i64 = sqlx::query_scalar("select count(*) from leads where territory_id = 'DE'")
            .fetch_one(&pool)
            .await?;
        let manager = Actor::new(
            UserId::parse("m").unwrap(),
            [Role::Manager],
            [TerritoryId::De],
        );
        assert_eq!(total_as(manager.clone()).await?, de);
        let sales = Actor::new(
            UserId::parse("s").unwrap(),
            [Role::Sales],
            [TerritoryId::De],
        );
        assert_eq!(total_as(sales).await?, 0);
        let mut tx = crate::begin_as(&app, &manager).await?;
        let denied = sqlx::query(
            "insert into lead_count_deltas (territory_id, status, business_type, n) \
             values ('DE', 'ACTIVE', '', 1000)",
        )
        .execute(&mut *tx)
        .await;
        assert!(
            denied.is_err(),
            "the application cannot write the read model"
        );
        drop(tx);

        sqlx::raw_sql("truncate leads cascade")
            .execute(&pool)
            .await?;
        assert_eq!(mismatches(&pool).await?, 0, "after truncate");
        Ok(())
    }
}
