//! [`PgMailOutbox`]: the `mail_outbox` table (migrations/0004) as the dispatcher and the admin
//! API use it.
//!
//! Dispatcher operations run as [`Actor::system`]; the admin operations run as the caller, so
//! row-level security applies (a mail is visible with its lead; only admins and the system
//! change mails).

use std::fmt;
use std::str::FromStr;

use serde::Serialize;
use sqlx::postgres::PgRow;
use sqlx::{PgPool, Postgres, QueryBuilder, Row as _};
use time::OffsetDateTime;
use uuid::Uuid;

use freshplan_followup::Stage;
use freshplan_kernel::{Actor, TerritoryId};

use crate::error::{MailError, db};

/// The delivery state of a mail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum MailStatus {
    /// Waiting for (another) attempt.
    Queued,
    /// Handed to the SMTP server.
    Sent,
    /// Given up; `last_error` says why.
    Dead,
}

impl MailStatus {
    /// The database/API spelling.
    pub const fn as_str(self) -> &'static str {
        match self {
            MailStatus::Queued => "QUEUED",
            MailStatus::Sent => "SENT",
            MailStatus::Dead => "DEAD",
        }
    }
}

/// A string that is no [`MailStatus`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown mail status {0:?} (QUEUED, SENT or DEAD)")]
pub struct UnknownStatus(pub String);

impl FromStr for MailStatus {
    type Err = UnknownStatus;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "QUEUED" => Ok(MailStatus::Queued),
            "SENT" => Ok(MailStatus::Sent),
            "DEAD" => Ok(MailStatus::Dead),
            _ => Err(UnknownStatus(s.to_owned())),
        }
    }
}

impl fmt::Display for MailStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A claimed mail, ready to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedMail {
    /// The mail id (also the basis of its `Message-ID`).
    pub id: Uuid,
    /// The lead it was written to.
    pub lead_id: Uuid,
    /// The recipient address.
    pub recipient: String,
    /// The subject line.
    pub subject: String,
    /// The HTML body.
    pub html: String,
    /// The plain-text body.
    pub text: String,
    /// The signed unsubscribe link (`List-Unsubscribe`).
    pub unsubscribe_url: String,
    /// Attempts so far, including the one this claim started.
    pub attempts: u32,
}

/// A mail as the admin listing shows it (without bodies).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MailSummary {
    /// The mail id.
    pub id: Uuid,
    /// The lead.
    pub lead_id: Uuid,
    /// The lead's territory.
    pub territory: TerritoryId,
    /// The follow-up stage.
    pub stage: Stage,
    /// The recipient.
    pub recipient: String,
    /// The subject line.
    pub subject: String,
    /// The delivery state.
    pub status: MailStatus,
    /// Attempts so far.
    pub attempts: u32,
    /// When the next attempt is due (for `QUEUED`).
    #[serde(with = "time::serde::rfc3339")]
    pub next_attempt_at: OffsetDateTime,
    /// The last failure, if any.
    pub last_error: Option<String>,
    /// When it was queued.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// When it was sent.
    #[serde(with = "time::serde::rfc3339::option")]
    pub sent_at: Option<OffsetDateTime>,
}

/// One mail with its bodies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MailRecord {
    /// Everything the listing shows.
    #[serde(flatten)]
    pub summary: MailSummary,
    /// The HTML body.
    pub html: String,
    /// The plain-text body.
    pub text: String,
    /// The signed unsubscribe link.
    pub unsubscribe_url: String,
}

/// A position in the admin listing (newest first): the last mail of a page. As text
/// `<created_at in µs since the epoch>.<id>`, for a query parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MailCursor {
    /// The mail's `created_at`.
    pub created_at: OffsetDateTime,
    /// The mail's id.
    pub id: Uuid,
}

impl fmt::Display for MailCursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let micros = self.created_at.unix_timestamp_nanos() / 1_000;
        write!(f, "{micros}.{}", self.id.simple())
    }
}

/// A cursor that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid mail cursor")]
pub struct InvalidCursor;

impl FromStr for MailCursor {
    type Err = InvalidCursor;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (micros, id) = s.split_once('.').ok_or(InvalidCursor)?;
        let micros: i128 = micros.parse().map_err(|_| InvalidCursor)?;
        let created_at =
            OffsetDateTime::from_unix_timestamp_nanos(micros * 1_000).map_err(|_| InvalidCursor)?;
        let id = Uuid::try_parse(id).map_err(|_| InvalidCursor)?;
        Ok(MailCursor { created_at, id })
    }
}

/// The admin listing's filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MailQuery {
    /// Only mails in this state.
    pub status: Option<MailStatus>,
    /// Only mails of this lead.
    pub lead_id: Option<Uuid>,
    /// At most this many (1–500; clamped).
    pub limit: u32,
    /// Continue after this mail (from [`MailPage::next`]).
    pub after: Option<MailCursor>,
}

impl Default for MailQuery {
    fn default() -> Self {
        MailQuery {
            status: None,
            lead_id: None,
            limit: 50,
            after: None,
        }
    }
}

/// A page of the admin listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailPage {
    /// Newest first.
    pub mails: Vec<MailSummary>,
    /// The cursor of the next page; `None` on the last.
    pub next: Option<MailCursor>,
}

/// The mail outbox on PostgreSQL. Cloning shares the pool.
#[derive(Debug, Clone)]
pub struct PgMailOutbox {
    pool: PgPool,
}

const SUMMARY_COLUMNS: &str = "id, lead_id, territory_id, stage, recipient, subject, status, \
     attempts, next_attempt_at, last_error, created_at, sent_at";

fn get<'r, T>(row: &'r PgRow, column: &'static str) -> Result<T, MailError>
where
    T: sqlx::Decode<'r, Postgres> + sqlx::Type<Postgres>,
{
    row.try_get(column).map_err(db("decode a mail"))
}

fn parse<T: FromStr>(row: &PgRow, column: &'static str) -> Result<T, MailError> {
    let value: String = get(row, column)?;
    value.parse().map_err(|_| MailError::Corrupt {
        field: column,
        value,
    })
}

fn attempts(row: &PgRow) -> Result<u32, MailError> {
    let n: i32 = get(row, "attempts")?;
    u32::try_from(n).map_err(|_| MailError::Corrupt {
        field: "attempts",
        value: n.to_string(),
    })
}

fn summary(row: &PgRow) -> Result<MailSummary, MailError> {
    Ok(MailSummary {
        id: get(row, "id")?,
        lead_id: get(row, "lead_id")?,
        territory: parse(row, "territory_id")?,
        stage: parse(row, "stage")?,
        recipient: get(row, "recipient")?,
        subject: get(row, "subject")?,
        status: parse(row, "status")?,
        attempts: attempts(row)?,
        next_attempt_at: get(row, "next_attempt_at")?,
        last_error: get(row, "last_error")?,
        created_at: get(row, "created_at")?,
        sent_at: get(row, "sent_at")?,
    })
}

/// Cuts an error text to what a column should hold (SMTP replies can be long).
fn clip(error: &str) -> &str {
    const MAX: usize = 2000;
    if error.len() <= MAX {
        return error;
    }
    let mut end = MAX;
    while !error.is_char_boundary(end) {
        end -= 1;
    }
    &error[..end]
}

impl PgMailOutbox {
    /// The outbox on `pool` (from `freshplan_store_postgres::connect`).
    pub fn new(pool: PgPool) -> PgMailOutbox {
        PgMailOutbox { pool }
    }

    /// The pool.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Claims up to `limit` due `QUEUED` mails, oldest due first, skipping mails another
    /// dispatcher holds: counts the attempt and hides each claimed mail until `lease_until`,
    /// in one committed statement. The caller sends them and records each result; a claimed
    /// mail whose result is never recorded is due again at `lease_until`.
    pub async fn claim(
        &self,
        now: OffsetDateTime,
        limit: u32,
        lease_until: OffsetDateTime,
    ) -> Result<Vec<QueuedMail>, MailError> {
        let mut tx = freshplan_store_postgres::begin_as(&self.pool, &Actor::system())
            .await
            .map_err(db("begin a claim"))?;
        let rows = sqlx::query(
            "with due as ( \
                 select id, next_attempt_at from mail_outbox \
                  where status = 'QUEUED' and next_attempt_at <= $1 \
                  order by next_attempt_at, id \
                  limit $2 \
                  for update skip locked \
             ) \
             update mail_outbox m \
                set attempts = m.attempts + 1, next_attempt_at = $3, updated_at = $1 \
               from due where m.id = due.id \
             returning m.id, m.lead_id, m.recipient, m.subject, m.html, m.text, \
                       m.unsubscribe_url, m.attempts, due.next_attempt_at as due_at",
        )
        .bind(now)
        .bind(i64::from(limit))
        .bind(lease_until)
        .fetch_all(&mut *tx)
        .await
        .map_err(db("claim mails"))?;
        tx.commit().await.map_err(db("commit a claim"))?;
        let mut mails = rows
            .iter()
            .map(|row| {
                let due_at: OffsetDateTime = get(row, "due_at")?;
                let mail = QueuedMail {
                    id: get(row, "id")?,
                    lead_id: get(row, "lead_id")?,
                    recipient: get(row, "recipient")?,
                    subject: get(row, "subject")?,
                    html: get(row, "html")?,
                    text: get(row, "text")?,
                    unsubscribe_url: get(row, "unsubscribe_url")?,
                    attempts: attempts(row)?,
                };
                Ok((due_at, mail))
            })
            .collect::<Result<Vec<_>, MailError>>()?;
        // `update … returning` does not keep the claim's order: oldest due first again.
        mails.sort_by_key(|(due_at, mail)| (*due_at, mail.id));
        let mails = mails.into_iter().map(|(_, mail)| mail).collect();
        Ok(mails)
    }

    /// Hands claimed mails that were never attempted back to the queue, due at `now`, their
    /// claim's attempt uncounted: `mails` are `(id, the lease their claim set)`. A mail whose
    /// lease is no longer the one given (it ran out and another dispatcher claimed it) or that is
    /// no longer `QUEUED` is left alone. Returns how many went back.
    pub async fn release(
        &self,
        mails: &[(Uuid, OffsetDateTime)],
        now: OffsetDateTime,
    ) -> Result<u64, MailError> {
        let (ids, leases): (Vec<Uuid>, Vec<OffsetDateTime>) = mails.iter().copied().unzip();
        let mut tx = freshplan_store_postgres::begin_as(&self.pool, &Actor::system())
            .await
            .map_err(db("begin a release"))?;
        let done = sqlx::query(
            "update mail_outbox m \
                set attempts = greatest(m.attempts - 1, 0), next_attempt_at = $3, updated_at = $3 \
               from unnest($1::uuid[], $2::timestamptz[]) as c(id, lease_until) \
              where m.id = c.id and m.status = 'QUEUED' and m.next_attempt_at = c.lease_until",
        )
        .bind(&ids)
        .bind(&leases)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(db("release mails"))?;
        tx.commit().await.map_err(db("commit a release"))?;
        Ok(done.rows_affected())
    }

    /// Records a successful send: `SENT` at `at`. `false` if the mail was no longer `QUEUED`
    /// (another dispatcher recorded it after its lease ran out).
    pub async fn mark_sent(&self, id: Uuid, at: OffsetDateTime) -> Result<bool, MailError> {
        self.system_update(
            "update mail_outbox set status = 'SENT', sent_at = $2, updated_at = $2 \
              where id = $1 and status = 'QUEUED'",
            id,
            at,
            None,
            None,
        )
        .await
    }

    /// Records a failed attempt: `QUEUED` again, due at `retry_at`, or `DEAD` when `retry_at` is
    /// `None`; `error` becomes `last_error`.
    pub async fn mark_failed(
        &self,
        id: Uuid,
        at: OffsetDateTime,
        error: &str,
        retry_at: Option<OffsetDateTime>,
    ) -> Result<bool, MailError> {
        let statement = match retry_at {
            Some(_) => {
                "update mail_outbox set next_attempt_at = $4, last_error = $3, updated_at = $2 \
                  where id = $1 and status = 'QUEUED'"
            }
            None => {
                "update mail_outbox set status = 'DEAD', last_error = $3, updated_at = $2 \
                  where id = $1 and status = 'QUEUED'"
            }
        };
        self.system_update(statement, id, at, Some(clip(error)), retry_at)
            .await
    }

    async fn system_update(
        &self,
        statement: &'static str,
        id: Uuid,
        at: OffsetDateTime,
        error: Option<&str>,
        retry_at: Option<OffsetDateTime>,
    ) -> Result<bool, MailError> {
        let mut tx = freshplan_store_postgres::begin_as(&self.pool, &Actor::system())
            .await
            .map_err(db("begin an update"))?;
        let mut query = sqlx::query(statement).bind(id).bind(at);
        if let Some(error) = error {
            query = query.bind(error.to_owned());
        }
        if let Some(retry_at) = retry_at {
            query = query.bind(retry_at);
        }
        let done = query
            .execute(&mut *tx)
            .await
            .map_err(db("record a delivery result"))?;
        tx.commit().await.map_err(db("commit a delivery result"))?;
        Ok(done.rows_affected() == 1)
    }

    /// Gives up mails whose last permitted attempt never reported back (its lease ran out:
    /// the dispatcher died while sending): `DEAD` instead of claimed once more. Returns how
    /// many.
    pub async fn expire(&self, now: OffsetDateTime, max_attempts: u32) -> Result<u64, MailError> {
        let mut tx = freshplan_store_postgres::begin_as(&self.pool, &Actor::system())
            .await
            .map_err(db("begin an expiry"))?;
        let done = sqlx::query(
            "update mail_outbox \
                set status = 'DEAD', updated_at = $1, \
                    last_error = coalesce(last_error || '; ', '') \
                                 || 'the last attempt did not report back before its lease ended' \
              where status = 'QUEUED' and next_attempt_at <= $1 and attempts >= $2",
        )
        .bind(now)
        .bind(i64::from(max_attempts.max(1)))
        .execute(&mut *tx)
        .await
        .map_err(db("expire mails"))?;
        tx.commit().await.map_err(db("commit an expiry"))?;
        Ok(done.rows_affected())
    }

    /// The admin listing (newest first), as `actor` sees it.
    pub async fn list(&self, actor: &Actor, query: &MailQuery) -> Result<MailPage, MailError> {
        let limit = query.limit.clamp(1, 500);
        let mut qb: QueryBuilder<'_, Postgres> = QueryBuilder::new(format!(
            "select {SUMMARY_COLUMNS} from mail_outbox where true"
        ));
        if let Some(status) = query.status {
            qb.push(" and status = ").push_bind(status.as_str());
        }
        if let Some(lead_id) = query.lead_id {
            qb.push(" and lead_id = ").push_bind(lead_id);
        }
        if let Some(after) = query.after {
            qb.push(" and (created_at, id) < (")
                .push_bind(after.created_at)
                .push(", ")
                .push_bind(after.id)
                .push(")");
        }
        qb.push(" order by created_at desc, id desc limit ")
            .push_bind(i64::from(limit) + 1);
        let mut tx = freshplan_store_postgres::begin_as(&self.pool, actor)
            .await
            .map_err(db("begin a listing"))?;
        let rows = qb
            .build()
            .fetch_all(&mut *tx)
            .await
            .map_err(db("list mails"))?;
        tx.commit().await.map_err(db("commit a listing"))?;
        let mut mails = rows.iter().map(summary).collect::<Result<Vec<_>, _>>()?;
        let more = mails.len() > limit as usize;
        mails.truncate(limit as usize);
        let next = more.then(|| mails.last()).flatten().map(|m| MailCursor {
            created_at: m.created_at,
            id: m.id,
        });
        Ok(MailPage { mails, next })
    }

    /// One mail with its bodies, if `actor` may see it.
    pub async fn get(&self, actor: &Actor, id: Uuid) -> Result<Option<MailRecord>, MailError> {
        let mut tx = freshplan_store_postgres::begin_as(&self.pool, actor)
            .await
            .map_err(db("begin a read"))?;
        let row = sqlx::query(&format!(
            "select {SUMMARY_COLUMNS}, html, text, unsubscribe_url from mail_outbox where id = $1"
        ))
        .bind(id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db("read a mail"))?;
        tx.commit().await.map_err(db("commit a read"))?;
        row.map(|row| {
            Ok(MailRecord {
                summary: summary(&row)?,
                html: get(&row, "html")?,
                text: get(&row, "text")?,
                unsubscribe_url: get(&row, "unsubscribe_url")?,
            })
        })
        .transpose()
    }

    /// Withdraws the lead's mails that have not gone out yet (`QUEUED` → `DEAD`, `last_error` =
    /// `reason`), as the system: call it with the unsubscribe (SPEC §6), so a mail queued
    /// before the consent was withdrawn is not delivered after it. A mail a dispatcher is
    /// sending at this very moment may still go out. Returns how many were withdrawn.
    pub async fn withdraw_for_lead(
        &self,
        lead_id: Uuid,
        now: OffsetDateTime,
        reason: &str,
    ) -> Result<u64, MailError> {
        let mut tx = freshplan_store_postgres::begin_as(&self.pool, &Actor::system())
            .await
            .map_err(db("begin a withdrawal"))?;
        let done = sqlx::query(
            "update mail_outbox set status = 'DEAD', last_error = $3, updated_at = $2 \
              where lead_id = $1 and status = 'QUEUED'",
        )
        .bind(lead_id)
        .bind(now)
        .bind(clip(reason).to_owned())
        .execute(&mut *tx)
        .await
        .map_err(db("withdraw mails"))?;
        tx.commit().await.map_err(db("commit a withdrawal"))?;
        Ok(done.rows_affected())
    }

    /// Puts a `DEAD` mail back in the queue (attempts reset, due at `now`), as `actor` (an
    /// admin; row-level security refuses everyone else). `false` if there is no such dead
    /// mail the actor may change, or its bodies were removed (retention, erasure: SPEC §13).
    pub async fn requeue(
        &self,
        actor: &Actor,
        id: Uuid,
        now: OffsetDateTime,
    ) -> Result<bool, MailError> {
        let mut tx = freshplan_store_postgres::begin_as(&self.pool, actor)
            .await
            .map_err(db("begin a requeue"))?;
        let done = sqlx::query(
            "update mail_outbox set status = 'QUEUED', attempts = 0, next_attempt_at = $2, \
                    updated_at = $2 \
              where id = $1 and status = 'DEAD' and body_erased_at is null",
        )
        .bind(id)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(db("requeue a mail"))?;
        tx.commit().await.map_err(db("commit a requeue"))?;
        Ok(done.rows_affected() == 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn cursor_round_trip() {
        let c = MailCursor {
            created_at: datetime!(2026-03-05 09:00:00.123456 UTC),
            id: Uuid::from_u128(42),
        };
        let text = c.to_string();
        assert_eq!(text.parse::<MailCursor>(), Ok(c));
        for bad in ["", "1", "x.y", "1.not-a-uuid", ".0000"] {
            assert_eq!(bad.parse::<MailCursor>(), Err(InvalidCursor), "{bad}");
        }
    }

    #[test]
    fn statuses_round_trip() {
        for s in [MailStatus::Queued, MailStatus::Sent, MailStatus::Dead] {
            assert_eq!(s.as_str().parse::<MailStatus>(), Ok(s));
        }
        assert!("sent".parse::<MailStatus>().is_err());
    }

    #[test]
    fn long_errors_are_clipped_on_a_char_boundary() {
        let long = "ä".repeat(3000);
        let clipped = clip(&long);
        assert!(clipped.len() <= 2000 && clipped.chars().all(|c| c == 'ä'));
        assert_eq!(clip("short"), "short");
    }
}
