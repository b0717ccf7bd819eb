//! [`PgLeadStore`] / [`PgLeadTx`]: the lead ports on PostgreSQL.

use std::fmt;
use std::sync::LazyLock;

use sqlx::postgres::{PgArguments, PgRow};
use sqlx::query::Query;
use sqlx::{PgConnection, PgPool, Postgres, QueryBuilder, Row as _, Transaction};
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

use freshplan_kernel::{Actor, CloudEvent, TerritoryId, UserId};
use freshplan_leads::Lead;
use freshplan_leads::activity::Activity;
use freshplan_leads::duplicates::DuplicateKeys;
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
}

impl PgLeadStore {
    /// A store on `pool` with the default protection policy. The pool should come from
    /// [`crate::connect`]; each transaction switches to the application role anyway.
    pub fn new(pool: PgPool) -> PgLeadStore {
        PgLeadStore::with_policy(pool, ProtectionPolicy::default())
    }

    /// A store whose sweep index uses `policy`.
    pub fn with_policy(pool: PgPool, policy: ProtectionPolicy) -> PgLeadStore {
        PgLeadStore { pool, policy }
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
    policy: ProtectionPolicy,
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
    /// context (e.g. a read model, or tests issuing raw SQL under row-level security).
    pub fn connection(&mut self) -> &mut PgConnection {
        &mut self.tx
    }
}

impl LeadStore for PgLeadStore {
    type Tx = PgLeadTx;

    async fn begin(&self, actor: &Actor) -> Result<PgLeadTx, StoreError> {
        let tx = crate::begin_as(&self.pool, actor)
            .await
            .map_err(store_error("begin a transaction"))?;
        Ok(PgLeadTx {
            tx,
            user_id: actor.user_id().clone(),
            policy: self.policy,
        })
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

/// What a list statement returns.
#[derive(Clone, Copy, PartialEq, Eq)]
enum ListShape {
    /// One page of leads, each row carrying the total count.
    Page,
    /// Only the count.
    Count,
}

/// The list statement: the optional search CTE, then the page (with the total as an
/// uncorrelated scalar subquery, computed once) or the count alone. One round trip.
fn list_statement(q: &LeadQuery, shape: ListShape) -> QueryBuilder<'static, Postgres> {
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
            qb.push(" and l.status = any(");
            qb.push_bind(
                q.statuses
                    .iter()
                    .map(|s| s.as_str().to_owned())
                    .collect::<Vec<_>>(),
            );
            qb.push(")");
        }
        if let Some(t) = q.territory {
            qb.push(" and l.territory_id = ");
            qb.push_bind(t.as_str());
        }
        if let Some(owner) = &q.owner {
            qb.push(" and l.owner_user_id = ");
            qb.push_bind(owner.as_str().to_owned());
        }
        if let Some(b) = q.business_type {
            qb.push(" and l.business_type = ");
            qb.push_bind(b.as_str());
        }
        if search {
            qb.push(" and l.id in (select id from hits)");
        }
    };
    match shape {
        ListShape::Count => {
            qb.push("select count(*) as total_count from leads l where ");
            filters(&mut qb);
        }
        ListShape::Page => {
            let dir = if q.descending { "desc" } else { "asc" };
            qb.push("select ");
            qb.push(LEAD_COLUMNS);
            qb.push(", (select count(*) from leads l where ");
            filters(&mut qb);
            qb.push(") as total_count from ");
            qb.push(LEAD_FROM);
            qb.push(" where ");
            filters(&mut qb);
            qb.push(format_args!(
                " order by {} {dir}, l.id {dir} limit ",
                sort_expression(q.sort)
            ));
            qb.push_bind(i64::from(q.size));
            qb.push(" offset ");
            qb.push_bind(i64::from(q.page) * i64::from(q.size));
        }
    }
    qb
}

fn lead_rows(rows: &[PgRow]) -> Result<Vec<Lead>, StoreError> {
    rows.iter().map(rows::lead).collect()
}

impl LeadTx for PgLeadTx {
    async fn get(&mut self, id: Uuid) -> Result<Option<Lead>, StoreError> {
        // `no key update`: serialises changes to the lead without blocking inserts that merely
        // reference it (activities, follow-ups). Readers lock too: the lead is read for a change
        // more often than not, and a reader's lock lasts one short transaction.
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
        bind_lead(sqlx::query(&INSERT_LEAD), lead, &self.policy)
            .execute(&mut *self.tx)
            .await
            .map_err(|e| classify("insert a lead", e))?;
        Ok(())
    }

    async fn update(&mut self, lead: &Lead, expected_version: i64) -> Result<(), WriteError> {
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
        // The territory comes from the lead (the composite foreign key keeps them equal).
        let done = sqlx::query(
            "insert into activities \
               (id, lead_id, territory_id, type, occurred_at, description, user_id, \
                meaningful_contact, metadata, created_at) \
             select $1, l.id, l.territory_id, $3, $4, $5, $6, $7, $8, $9 \
               from leads l where l.id = $2",
        )
        .bind(activity.id)
        .bind(activity.lead_id)
        .bind(activity.activity_type.as_str())
        .bind(activity.occurred_at)
        .bind(activity.description.clone())
        .bind(activity.user_id.as_str().to_owned())
        .bind(activity.meaningful_contact)
        .bind(activity.metadata.clone())
        .bind(activity.created_at)
        .execute(&mut *self.tx)
        .await
        .map_err(store_error("insert an activity"))?;
        if done.rows_affected() == 0 {
            return Err(StoreError::msg(format!(
                "insert an activity: lead {} not found",
                activity.lead_id
            )));
        }
        Ok(())
    }

    async fn list_activities(
        &mut self,
        lead_id: Uuid,
        page: u32,
        size: u32,
    ) -> Result<Page<Activity>, StoreError> {
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
        let rows = list_statement(query, ListShape::Page)
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
            None => list_statement(query, ListShape::Count)
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
        sqlx::query(
            "insert into event_outbox \
               (event_id, source, type, subject, territory_id, payload, dashboard) \
             values ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(event.id)
        .bind(event.source.clone())
        .bind(event.event_type.clone())
        .bind(event.subject.clone())
        .bind(territory.map(TerritoryId::as_str))
        .bind(payload)
        .bind(freshplan_leads::events::moves_dashboard(event))
        .execute(&mut *self.tx)
        .await
        .map_err(store_error("append an event"))?;
        Ok(())
    }

    async fn idempotency_get(
        &mut self,
        key: &str,
    ) -> Result<Option<IdempotencyRecord>, StoreError> {
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

    async fn commit(self) -> Result<(), StoreError> {
        self.tx.commit().await.map_err(store_error("commit"))
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
}
