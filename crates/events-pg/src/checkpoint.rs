//! Durable per-consumer checkpoints (`event_consumer_checkpoints`, migration 0003). All access
//! runs in the system context (row-level security lets only it write them).

use freshplan_kernel::Actor;
use sqlx::{PgConnection, PgPool};

use crate::cursor::Cursor;

fn cursor_of((txid, id): (String, i64)) -> Result<Cursor, sqlx::Error> {
    let txid = txid.parse().map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
    Ok(Cursor::new(txid, id))
}

/// The checkpoint of `consumer`, created at `start` if it has none yet.
pub(crate) async fn init(
    pool: &PgPool,
    consumer: &str,
    start: Cursor,
) -> Result<Cursor, sqlx::Error> {
    let mut tx = freshplan_store_postgres::begin_as(pool, &Actor::system()).await?;
    sqlx::query(
        "insert into event_consumer_checkpoints (consumer, cursor_txid, cursor_id)
         values ($1, $2::text::xid8, $3)
         on conflict (consumer) do nothing",
    )
    .bind(consumer)
    .bind(start.txid().to_string())
    .bind(start.id())
    .execute(&mut *tx)
    .await?;
    let row: (String, i64) = sqlx::query_as(
        "select cursor_txid::text, cursor_id from event_consumer_checkpoints where consumer = $1",
    )
    .bind(consumer)
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    cursor_of(row)
}

/// Advisory-lock class of the consumer locks (the first key of the two-key form; the second is
/// `hashtext(consumer)`). Two-key and one-key advisory locks never collide.
const CONSUMER_LOCK_CLASS: i32 = 0x6670_6563; // "fpec"

/// Serialises `consumer` across replicas for the rest of the transaction and returns its
/// checkpoint: a second replica running the same consumer waits here, then sees the advanced
/// checkpoint. A transaction-level advisory lock rather than `select … for update`: a row lock
/// would give the transaction an xid from the start, and a running xid holds back every
/// reader's horizon (`txid < xmin`) for as long as the consumer's effect takes — the xid now
/// comes only with the consumer's own writes or the final checkpoint update.
pub(crate) async fn lock(conn: &mut PgConnection, consumer: &str) -> Result<Cursor, sqlx::Error> {
    sqlx::query("select pg_advisory_xact_lock($1, hashtext($2))")
        .bind(CONSUMER_LOCK_CLASS)
        .bind(consumer)
        .execute(&mut *conn)
        .await?;
    let row: (String, i64) = sqlx::query_as(
        "select cursor_txid::text, cursor_id from event_consumer_checkpoints where consumer = $1",
    )
    .bind(consumer)
    .fetch_one(conn)
    .await?;
    cursor_of(row)
}

/// Moves the checkpoint of `consumer` forward to `cursor` (never back).
pub(crate) async fn advance(
    conn: &mut PgConnection,
    consumer: &str,
    cursor: Cursor,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "update event_consumer_checkpoints
            set cursor_txid = $2::text::xid8, cursor_id = $3, updated_at = now()
          where consumer = $1 and (cursor_txid, cursor_id) < ($2::text::xid8, $3)",
    )
    .bind(consumer)
    .bind(cursor.txid().to_string())
    .bind(cursor.id())
    .execute(conn)
    .await?;
    Ok(())
}

/// The durable checkpoint of `consumer`, if it has one (for operations and tests).
pub async fn checkpoint(pool: &PgPool, consumer: &str) -> Result<Option<Cursor>, sqlx::Error> {
    let mut tx = freshplan_store_postgres::begin_as(pool, &Actor::system()).await?;
    let row: Option<(String, i64)> = sqlx::query_as(
        "select cursor_txid::text, cursor_id from event_consumer_checkpoints where consumer = $1",
    )
    .bind(consumer)
    .fetch_optional(&mut *tx)
    .await?;
    tx.commit().await?;
    row.map(cursor_of).transpose()
}

/// The lowest checkpoint among `consumers`; [`Cursor::START`] when one of them has none yet
/// (it may still want everything retained), `None` when `consumers` is empty.
pub(crate) async fn lowest(
    pool: &PgPool,
    consumers: &[&str],
) -> Result<Option<Cursor>, sqlx::Error> {
    let mut lowest: Option<Cursor> = None;
    for name in consumers {
        let c = checkpoint(pool, name).await?.unwrap_or(Cursor::START);
        lowest = Some(lowest.map_or(c, |l| l.min(c)));
    }
    Ok(lowest)
}
