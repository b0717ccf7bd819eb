//! Reading the outbox in commit order.
//!
//! Every read is one statement, so one snapshot: it returns the events after a cursor whose
//! writing transaction is older than the snapshot's `xmin` (`pg_snapshot_xmin(pg_current_snapshot())`,
//! the oldest transaction still running), ordered by `(txid, id)`.
//!
//! Why `xmin`: `id` (a sequence) and `txid` are both handed out *before* commit, so a transaction
//! can commit after others that got larger ids. A reader that remembers `id > last_id` reads the
//! later ones first and then never looks back at the late one. Bounding the read by `xmin` waits
//! instead: a row is delivered only once every transaction that could still commit a smaller
//! `(txid, id)` has finished, so the order of delivery is final and a cursor never has to move
//! back. The cost is that one long-running writing transaction anywhere in the cluster holds
//! delivery back until it ends (it does not lose anything).

use freshplan_kernel::{Actor, CloudEvent};
use sqlx::{PgPool, Row as _};

use crate::cursor::Cursor;

/// An event read from the outbox, with its position.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxEvent {
    /// Its position in the outbox (the SSE id and checkpoint value).
    pub cursor: Cursor,
    /// The CloudEvent as written.
    pub event: CloudEvent,
    /// Whether it can move cockpit figures (the writer's `dashboard_updates` flag).
    pub dashboard: bool,
}

/// Reading the outbox failed.
#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    /// The database refused or the connection failed.
    #[error("reading the event outbox: {0}")]
    Database(#[from] sqlx::Error),
    /// A row's payload is not a CloudEvent. The reader stops at it (an event is never skipped
    /// silently); the outbox is written only by `freshplan-store-postgres`, so this is a bug.
    #[error("outbox row {cursor} does not hold a CloudEvent: {source}")]
    Decode {
        /// The row.
        cursor: Cursor,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
    /// A number from the database is out of range (a txid that is not a u64).
    #[error("outbox row has an unexpected {0}")]
    Malformed(&'static str),
}

/// One read: the events, and how far the read has certainly seen.
#[derive(Debug)]
pub(crate) struct Batch {
    pub(crate) events: Vec<OutboxEvent>,
    /// The snapshot's xmin as a cursor: every event below it is final.
    pub(crate) horizon: Cursor,
    /// Committed events exist that the snapshot could not deliver yet (an older transaction
    /// was still running): read again soon even if no notification comes.
    pub(crate) blocked: bool,
}

impl Batch {
    /// The position after this batch: the last event, or, when the read returned fewer than
    /// `limit` events, the horizon (everything below it has been seen).
    pub(crate) fn next_position(&self, after: Cursor, limit: u32) -> Cursor {
        let last = self.events.last().map_or(after, |e| e.cursor);
        if self.events.len() < limit as usize {
            last.max(self.horizon)
        } else {
            last
        }
    }
}

/// The events after `after` (all types) and the snapshot's horizon, in one statement.
///
/// `blocked` is computed once per read, in the materialised CTE, as the first row at or above
/// the horizon in `(txid, id)` order (an index probe). As a correlated `exists` in the select
/// list it was a subplan run once per *returned row*, and the planner chose a sequential scan
/// for it (the horizon is unknown when planning): a read of 500 events after a follow-up run
/// cost 500 scans of 100k outbox rows, 16 s on one of the two cores (measured).
const READ_BATCH: &str = "\
with s as materialized (
    select x.xmin,
           (select b.txid from event_outbox b
             where b.txid >= x.xmin
             order by b.txid
             limit 1) is not null as blocked
      from (select pg_snapshot_xmin(pg_current_snapshot()) as xmin) x
)
select s.xmin::text as horizon,
       s.blocked,
       o.id, o.txid::text as txid, o.payload, o.dashboard
  from s
  left join lateral (
        select o.id, o.txid, o.payload, o.dashboard
          from event_outbox o
         where (o.txid, o.id) > ($1::text::xid8, $2::bigint)
           and o.txid < s.xmin
         order by o.txid, o.id
         limit $3
       ) o on true
 order by o.txid, o.id";

/// Reads up to `limit` deliverable events after `after`, on a connection whose context may read
/// the outbox (the system context).
pub(crate) async fn read_batch<'c>(
    conn: impl sqlx::Executor<'c, Database = sqlx::Postgres>,
    after: Cursor,
    limit: u32,
) -> Result<Batch, OutboxError> {
    let rows = sqlx::query(READ_BATCH)
        .bind(after.txid().to_string())
        .bind(after.id())
        .bind(i64::from(limit))
        .fetch_all(conn)
        .await?;
    let mut horizon = Cursor::START;
    let mut blocked = false;
    let mut events = Vec::with_capacity(rows.len());
    for row in &rows {
        horizon = Cursor::horizon(parse_txid(&row.try_get::<String, _>("horizon")?)?);
        blocked = row.try_get("blocked")?;
        if let Some(id) = row.try_get::<Option<i64>, _>("id")? {
            events.push(decode(
                id,
                &row.try_get::<String, _>("txid")?,
                row.try_get("payload")?,
                row.try_get("dashboard")?,
            )?);
        }
    }
    Ok(Batch {
        events,
        horizon,
        blocked,
    })
}

fn parse_txid(text: &str) -> Result<u64, OutboxError> {
    text.parse().map_err(|_| OutboxError::Malformed("txid"))
}

fn decode(
    id: i64,
    txid: &str,
    payload: serde_json::Value,
    dashboard: bool,
) -> Result<OutboxEvent, OutboxError> {
    let cursor = Cursor::new(parse_txid(txid)?, id);
    let event =
        serde_json::from_value(payload).map_err(|source| OutboxError::Decode { cursor, source })?;
    Ok(OutboxEvent {
        cursor,
        event,
        dashboard,
    })
}

/// A page of the event feed (SPEC §7.5).
#[derive(Debug, Clone, PartialEq)]
pub struct FeedPage {
    /// The events, in commit order.
    pub events: Vec<OutboxEvent>,
    /// What the next call passes as `after`: the last event's cursor, or the `after` of this
    /// call when there was nothing new (always present).
    pub next_cursor: Cursor,
}

/// Largest `limit` of [`read_page`] (SPEC §7.5: `1..=1000`).
pub const MAX_PAGE: u32 = 1000;

/// `GET /api/events?after=&limit=&type=`: up to `limit` events (clamped to `1..=1000`) after
/// `after` (`None`: from the oldest retained event), optionally of one `type`, in commit order.
///
/// Runs as `actor` under row-level security: the outbox is readable by admin, service and system
/// contexts only (others get an empty page; the app answers them 403 before calling this).
/// Events of transactions that have not finished yet, or that are younger than a transaction
/// still running, are not returned yet; a later call returns them after `next_cursor`.
pub async fn read_page(
    pool: &PgPool,
    actor: &Actor,
    after: Option<Cursor>,
    limit: u32,
    event_type: Option<&str>,
) -> Result<FeedPage, OutboxError> {
    let after = after.unwrap_or(Cursor::START);
    let limit = limit.clamp(1, MAX_PAGE);
    let mut tx = freshplan_store_postgres::begin_as(pool, actor).await?;
    let rows = sqlx::query(
        "select o.id, o.txid::text as txid, o.payload, o.dashboard
           from event_outbox o
          where (o.txid, o.id) > ($1::text::xid8, $2::bigint)
            and o.txid < pg_snapshot_xmin(pg_current_snapshot())
            and ($4::text is null or o.type = $4)
          order by o.txid, o.id
          limit $3",
    )
    .bind(after.txid().to_string())
    .bind(after.id())
    .bind(i64::from(limit))
    .bind(event_type)
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    let events = rows
        .iter()
        .map(|row| {
            decode(
                row.try_get("id")?,
                &row.try_get::<String, _>("txid")?,
                row.try_get("payload")?,
                row.try_get("dashboard")?,
            )
        })
        .collect::<Result<Vec<_>, OutboxError>>()?;
    let next_cursor = events.last().map_or(after, |e| e.cursor);
    Ok(FeedPage {
        events,
        next_cursor,
    })
}

/// The current end of the outbox: reading after it returns only events of transactions that
/// had not finished when this was called (what `GET /api/events/stream` without `Last-Event-ID`
/// starts from: new events only). Needs no particular context.
pub async fn head(pool: &PgPool) -> Result<Cursor, OutboxError> {
    let xmin: String = sqlx::query_scalar("select pg_snapshot_xmin(pg_current_snapshot())::text")
        .fetch_one(pool)
        .await?;
    Ok(Cursor::horizon(parse_txid(&xmin)?))
}
