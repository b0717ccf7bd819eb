//! Outbox retention: deleting delivered events older than the retention period (SPEC §7.5,
//! default 7 days), in bounded batches.
//!
//! Decision: time is the contract for the HTTP feed's clients (an event stays at least the
//! retention period), and the checkpoints are the contract for this process's durable consumers:
//! an event is deleted only when it is older than the retention period **and** at or before the
//! lowest checkpoint of the durable consumers that the running pipeline registers (a consumer
//! without a checkpoint yet protects everything). A stuck consumer therefore keeps its backlog,
//! visible as `freshplan_outbox_pending` and the backlog alert, instead of silently missing
//! events. A consumer removed from the code no longer protects anything (its checkpoint row
//! stays until someone drops it). Ephemeral consumers (SSE fan-out, metrics) protect nothing.
//!
//! Each batch is its own short transaction in the system context and first takes a
//! transaction-level advisory lock, so replicas do not purge at the same time (the one that does
//! not get the lock stops: the other is doing the work).

use std::time::Duration;

use freshplan_kernel::Actor;
use sqlx::PgPool;

use crate::cursor::Cursor;

/// Default retention period (SPEC §7.5).
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(7 * 24 * 60 * 60);

/// Advisory lock key of the purge: the bytes of "fp-rtnt" as an integer (a fixed, arbitrary
/// key; only this job uses it).
const PURGE_LOCK: i64 = 0x0066_702d_7274_6e74;

/// Deletes outbox events older than `retention` and at or before `protect` (when given), at
/// most `batch` rows per transaction, until a batch comes back short or `max_batches` have run.
/// Returns the number of rows deleted. Events of transactions that are not yet final for
/// delivery (`txid` not below the snapshot's xmin) are never deleted.
pub async fn purge_outbox(
    pool: &PgPool,
    retention: Duration,
    protect: Option<Cursor>,
    batch: u32,
    max_batches: u32,
) -> Result<u64, sqlx::Error> {
    let batch = batch.max(1);
    let mut deleted = 0;
    for _ in 0..max_batches {
        let mut tx = freshplan_store_postgres::begin_as(pool, &Actor::system()).await?;
        let locked: bool = sqlx::query_scalar("select pg_try_advisory_xact_lock($1)")
            .bind(PURGE_LOCK)
            .fetch_one(&mut *tx)
            .await?;
        if !locked {
            tx.rollback().await?;
            break;
        }
        let n = sqlx::query(
            "delete from event_outbox o
              where o.id in (
                    select d.id from event_outbox d
                     where d.created_at < now() - make_interval(secs => $1)
                       and d.txid < pg_snapshot_xmin(pg_current_snapshot())
                       and ($2::text is null or (d.txid, d.id) <= ($2::text::xid8, $3::bigint))
                     order by d.created_at
                     limit $4)",
        )
        .bind(retention.as_secs_f64())
        .bind(protect.map(|c| c.txid().to_string()))
        .bind(protect.map_or(0, Cursor::id))
        .bind(i64::from(batch))
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        deleted += n;
        if n < u64::from(batch) {
            break;
        }
    }
    Ok(deleted)
}
