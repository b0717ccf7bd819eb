//! The bookkeeping of lead imports (migration 0012, ADR 0014): the import resource, its lease,
//! its progress and the outcome of every processed row. Every method runs in a [`PgLeadTx`], so
//! a batch's progress and row outcomes commit in the transaction that created its leads
//! ([`freshplan_leads::LeadService::import_batch`]), under the importer's row-level security.
//!
//! The lease: the replica running an import holds it (`worker`, `lease_until`) and renews it
//! with every batch; every write of a batch is fenced on holding it and on the position the batch
//! started at, so a replica that lost the lease (it stalled, another took over) cannot double a
//! batch. An expired lease is taken over by any replica ([`PgLeadTx::claim_import`]), which
//! resumes at the committed position.

use serde_json::{Value, json};
use sqlx::Row as _;
use time::OffsetDateTime;
use uuid::Uuid;

use freshplan_kernel::{Actor, Role, TerritoryId, UserId};
use freshplan_leads::import::{ImportState, ImportSummary, RowOutcome, RowReport};
use freshplan_leads::ports::{Page, StoreError};

use crate::error::store_error;
use crate::store::PgLeadTx;

/// A new import to record.
#[derive(Debug)]
pub struct NewImport<'a> {
    /// Its id.
    pub id: Uuid,
    /// The importer (a resumed import runs as them).
    pub actor: &'a Actor,
    /// `Idempotency-Key` and the request's hash.
    pub idempotency: Option<(&'a str, &'a str)>,
    /// The file as uploaded.
    pub file: &'a [u8],
    /// The `charset` of the request's Content-Type.
    pub charset: Option<&'a str>,
    /// The explicit column mapping sent with the request.
    pub mapping: Value,
    /// How the file was read: its encoding and delimiter, its columns and the unknown ones.
    pub encoding: &'a str,
    /// The delimiter.
    pub delimiter: char,
    /// `[{header, field}]`.
    pub columns: Value,
    /// `[header]`.
    pub unknown_columns: Value,
    /// Data rows in the file.
    pub total_rows: u32,
    /// The replica that starts it.
    pub worker: Uuid,
    /// How long the lease lasts without renewal.
    pub lease: std::time::Duration,
}

/// What recording a new import found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Registered {
    /// The import is new.
    New,
    /// The importer used the idempotency key before: that import, and its request's hash.
    Existing {
        /// The earlier import.
        id: Uuid,
        /// Its request's hash.
        request_hash: String,
    },
}

/// An import as stored (without its file).
#[derive(Debug, Clone, PartialEq)]
pub struct ImportRecord {
    /// The import.
    pub id: Uuid,
    /// Where it stands.
    pub state: ImportState,
    /// Data rows in the file.
    pub total_rows: u32,
    /// Rows processed (committed with their leads).
    pub processed: u32,
    /// Leads created.
    pub created: u32,
    /// Rows refused.
    pub refused: u32,
    /// Rows that were duplicates.
    pub duplicates: u32,
    /// The file's encoding.
    pub encoding: String,
    /// The file's delimiter.
    pub delimiter: String,
    /// `[{header, field}]`.
    pub columns: Value,
    /// `[header]`.
    pub unknown_columns: Value,
    /// Why it failed.
    pub error: Option<String>,
    /// When it was accepted.
    pub created_at: OffsetDateTime,
    /// Its last progress.
    pub updated_at: OffsetDateTime,
    /// When it ended.
    pub finished_at: Option<OffsetDateTime>,
}

/// One processed row as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredRow {
    /// The line in the file.
    pub line: u64,
    /// `CREATED`, `REFUSED` or `DUPLICATE`.
    pub outcome: String,
    /// The created lead, or the existing one it duplicates (when the importer may read it).
    pub lead_id: Option<Uuid>,
    /// The earlier line it duplicates.
    pub other_line: Option<u64>,
    /// The duplicate rule (`EMAIL`, `COMPANY`).
    pub kind: Option<String>,
    /// `(field, message)` of a refused row.
    pub errors: Vec<(String, String)>,
}

/// An import claimed to run on this replica.
#[derive(Debug, Clone)]
pub struct Claimed {
    /// The import.
    pub id: Uuid,
    /// The importer.
    pub actor: Actor,
    /// The file.
    pub file: Vec<u8>,
    /// The `charset` of the request.
    pub charset: Option<String>,
    /// The explicit mapping.
    pub mapping: Value,
    /// Rows already processed: the position to resume at.
    pub processed: u32,
}

fn actor_json(actor: &Actor) -> Value {
    json!({
        "userId": actor.user_id().as_str(),
        "roles": actor.roles().iter().map(Role::as_str).collect::<Vec<_>>(),
        "territories": actor.territories().iter().map(|t| t.as_str()).collect::<Vec<_>>(),
    })
}

fn actor_from(value: &Value) -> Result<Actor, StoreError> {
    let strings = |key: &str| -> Vec<&str> {
        value[key]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default()
    };
    let user = value["userId"]
        .as_str()
        .and_then(|u| UserId::parse(u).ok())
        .ok_or_else(|| StoreError::msg("a stored import names no importer"))?;
    Ok(Actor::new(
        user,
        strings("roles").into_iter().filter_map(Role::parse),
        strings("territories")
            .into_iter()
            .filter_map(|t| t.parse::<TerritoryId>().ok()),
    ))
}

fn count(n: i32) -> u32 {
    u32::try_from(n).unwrap_or(0)
}

const RECORD_COLUMNS: &str = "id, state, total_rows, next_record, created_count, refused_count, \
    duplicate_count, encoding, delimiter, columns, unknown_columns, error, created_at, \
    updated_at, finished_at";

fn record(row: &sqlx::postgres::PgRow) -> Result<ImportRecord, StoreError> {
    let get = store_error("read an import");
    let state: String = row.try_get("state").map_err(get)?;
    let fail = |e| store_error("read an import")(e);
    Ok(ImportRecord {
        id: row.try_get("id").map_err(fail)?,
        state: ImportState::parse(&state)
            .ok_or_else(|| StoreError::msg(format!("unknown import state {state}")))?,
        total_rows: count(row.try_get("total_rows").map_err(fail)?),
        processed: count(row.try_get("next_record").map_err(fail)?),
        created: count(row.try_get("created_count").map_err(fail)?),
        refused: count(row.try_get("refused_count").map_err(fail)?),
        duplicates: count(row.try_get("duplicate_count").map_err(fail)?),
        encoding: row.try_get("encoding").map_err(fail)?,
        delimiter: row.try_get("delimiter").map_err(fail)?,
        columns: row.try_get("columns").map_err(fail)?,
        unknown_columns: row.try_get("unknown_columns").map_err(fail)?,
        error: row.try_get("error").map_err(fail)?,
        created_at: row.try_get("created_at").map_err(fail)?,
        updated_at: row.try_get("updated_at").map_err(fail)?,
        finished_at: row.try_get("finished_at").map_err(fail)?,
    })
}

impl PgLeadTx {
    /// Records a new import (state RUNNING, leased to `new.worker`), unless the importer already
    /// used the idempotency key: then nothing is written and the earlier import is named.
    pub async fn register_import(&mut self, new: &NewImport<'_>) -> Result<Registered, StoreError> {
        let actor = actor_json(new.actor);
        let user = new.actor.user_id().as_str().to_owned();
        let conn = self.connection().await?;
        let inserted = sqlx::query(
            "insert into lead_imports (id, created_by, actor, state, idempotency_key, request_hash, \
                 file, charset, mapping, encoding, delimiter, columns, unknown_columns, total_rows, \
                 worker, lease_until, created_at, updated_at) \
             values ($1, $2, $3, 'RUNNING', $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, \
                     now() + make_interval(secs => $15), now(), now()) \
             on conflict (created_by, idempotency_key) do nothing",
        )
        .bind(new.id)
        .bind(&user)
        .bind(actor)
        .bind(new.idempotency.map(|(k, _)| k))
        .bind(new.idempotency.map(|(_, h)| h))
        .bind(new.file)
        .bind(new.charset)
        .bind(&new.mapping)
        .bind(new.encoding)
        .bind(new.delimiter.to_string())
        .bind(&new.columns)
        .bind(&new.unknown_columns)
        .bind(i32::try_from(new.total_rows).unwrap_or(i32::MAX))
        .bind(new.worker)
        .bind(new.lease.as_secs_f64())
        .execute(&mut *conn)
        .await
        .map_err(store_error("record an import"))?;
        if inserted.rows_affected() == 1 {
            return Ok(Registered::New);
        }
        let (id, request_hash): (Uuid, Option<String>) = sqlx::query_as(
            "select id, request_hash from lead_imports where created_by = $1 and idempotency_key = $2",
        )
        .bind(&user)
        .bind(new.idempotency.map(|(k, _)| k))
        .fetch_one(&mut *conn)
        .await
        .map_err(store_error("read an import"))?;
        Ok(Registered::Existing {
            id,
            request_hash: request_hash.unwrap_or_default(),
        })
    }

    /// Records a processed batch: its rows' outcomes and the import's new position and counts,
    /// renewing the lease. `false` (and nothing written) when `worker` no longer holds the
    /// import or it is no longer at `position`: the caller must roll back its batch.
    pub async fn record_import_batch(
        &mut self,
        id: Uuid,
        worker: Uuid,
        position: u32,
        processed: u32,
        reports: &[RowReport],
        lease: std::time::Duration,
    ) -> Result<bool, StoreError> {
        let mut lines = Vec::with_capacity(reports.len());
        let mut outcomes = Vec::with_capacity(reports.len());
        let mut leads = Vec::with_capacity(reports.len());
        let mut others = Vec::with_capacity(reports.len());
        let mut kinds = Vec::with_capacity(reports.len());
        let mut errors = Vec::with_capacity(reports.len());
        let (mut created, mut refused, mut duplicates) = (0_i32, 0_i32, 0_i32);
        for r in reports {
            lines.push(i64::try_from(r.line).unwrap_or(i64::MAX));
            match &r.outcome {
                RowOutcome::Created { lead_id } => {
                    created += 1;
                    outcomes.push("CREATED");
                    leads.push(Some(*lead_id));
                    others.push(None);
                    kinds.push(None);
                    errors.push(None);
                }
                RowOutcome::Refused { errors: e } => {
                    refused += 1;
                    outcomes.push("REFUSED");
                    leads.push(None);
                    others.push(None);
                    kinds.push(None);
                    errors.push(Some(Value::Array(
                        e.iter()
                            .map(|f| json!({"field": f.field, "message": f.message}))
                            .collect(),
                    )));
                }
                RowOutcome::Duplicate {
                    kind,
                    existing,
                    other_line,
                } => {
                    duplicates += 1;
                    outcomes.push("DUPLICATE");
                    leads.push(*existing);
                    others.push(other_line.map(|l| i64::try_from(l).unwrap_or(i64::MAX)));
                    kinds.push(Some(match kind {
                        freshplan_leads::duplicates::DuplicateKind::Email => "EMAIL",
                        freshplan_leads::duplicates::DuplicateKind::Company => "COMPANY",
                    }));
                    errors.push(None);
                }
            }
        }
        let conn = self.connection().await?;
        let moved = sqlx::query(
            "update lead_imports \
                set next_record = $4, created_count = created_count + $5, \
                    refused_count = refused_count + $6, duplicate_count = duplicate_count + $7, \
                    lease_until = now() + make_interval(secs => $8), updated_at = now() \
              where id = $1 and worker = $2 and state = 'RUNNING' and next_record = $3",
        )
        .bind(id)
        .bind(worker)
        .bind(i32::try_from(position).unwrap_or(i32::MAX))
        .bind(i32::try_from(processed).unwrap_or(i32::MAX))
        .bind(created)
        .bind(refused)
        .bind(duplicates)
        .bind(lease.as_secs_f64())
        .execute(&mut *conn)
        .await
        .map_err(store_error("record an import's progress"))?;
        if moved.rows_affected() != 1 {
            return Ok(false);
        }
        if !reports.is_empty() {
            sqlx::query(
                "insert into lead_import_rows (import_id, line, outcome, lead_id, other_line, kind, errors) \
                 select $1, r.* from unnest($2::bigint[], $3::text[], $4::uuid[], $5::bigint[], \
                                            $6::text[], $7::jsonb[]) as r",
            )
            .bind(id)
            .bind(lines)
            .bind(outcomes)
            .bind(leads)
            .bind(others)
            .bind(kinds)
            .bind(errors)
            .execute(&mut *conn)
            .await
            .map_err(store_error("record an import's rows"))?;
        }
        Ok(true)
    }

    /// Ends an import held by `worker` (SUCCEEDED or FAILED with `error`), drops its file and
    /// answers its summary for `lead.import.finished.v1`; `None` when `worker` no longer holds it.
    pub async fn finish_import(
        &mut self,
        id: Uuid,
        worker: Option<Uuid>,
        state: ImportState,
        error: Option<&str>,
    ) -> Result<Option<ImportSummary>, StoreError> {
        let conn = self.connection().await?;
        let row = sqlx::query(
            "update lead_imports \
                set state = $3, error = $4, file = null, worker = null, lease_until = null, \
                    finished_at = now(), updated_at = now() \
              where id = $1 and ($2::uuid is null or worker = $2) and state = 'RUNNING' \
             returning total_rows, created_count, refused_count, duplicate_count, created_at",
        )
        .bind(id)
        .bind(worker)
        .bind(state.as_str())
        .bind(error)
        .fetch_optional(&mut *conn)
        .await
        .map_err(store_error("finish an import"))?;
        let Some(row) = row else { return Ok(None) };
        let fail = |e| store_error("finish an import")(e);
        Ok(Some(ImportSummary {
            id,
            state,
            rows: count(row.try_get("total_rows").map_err(fail)?),
            created: count(row.try_get("created_count").map_err(fail)?),
            refused: count(row.try_get("refused_count").map_err(fail)?),
            duplicates: count(row.try_get("duplicate_count").map_err(fail)?),
            started_at: row.try_get("created_at").map_err(fail)?,
        }))
    }

    /// An import the actor may see.
    pub async fn import_record(&mut self, id: Uuid) -> Result<Option<ImportRecord>, StoreError> {
        let conn = self.connection().await?;
        let row = sqlx::query(&format!(
            "select {RECORD_COLUMNS} from lead_imports where id = $1"
        ))
        .bind(id)
        .fetch_optional(&mut *conn)
        .await
        .map_err(store_error("read an import"))?;
        row.as_ref().map(record).transpose()
    }

    /// The processed rows of an import in line order, a page of them; with `problems_only`
    /// only the refused and duplicate ones.
    pub async fn import_rows(
        &mut self,
        id: Uuid,
        problems_only: bool,
        page: u32,
        size: u32,
    ) -> Result<Page<StoredRow>, StoreError> {
        let conn = self.connection().await?;
        let rows = sqlx::query(
            "select line, outcome, lead_id, other_line, kind, errors, count(*) over () as total \
               from lead_import_rows \
              where import_id = $1 and (not $2 or outcome <> 'CREATED') \
              order by line limit $3 offset $4",
        )
        .bind(id)
        .bind(problems_only)
        .bind(i64::from(size))
        .bind(i64::from(page) * i64::from(size))
        .fetch_all(&mut *conn)
        .await
        .map_err(store_error("read an import's rows"))?;
        let fail = |e| store_error("read an import's rows")(e);
        let mut total = 0_u64;
        let mut items = Vec::with_capacity(rows.len());
        for row in &rows {
            total = u64::try_from(row.try_get::<i64, _>("total").map_err(fail)?).unwrap_or(0);
            let errors: Option<Value> = row.try_get("errors").map_err(fail)?;
            items.push(StoredRow {
                line: u64::try_from(row.try_get::<i64, _>("line").map_err(fail)?).unwrap_or(0),
                outcome: row.try_get("outcome").map_err(fail)?,
                lead_id: row.try_get("lead_id").map_err(fail)?,
                other_line: row
                    .try_get::<Option<i64>, _>("other_line")
                    .map_err(fail)?
                    .and_then(|l| u64::try_from(l).ok()),
                kind: row.try_get("kind").map_err(fail)?,
                errors: errors
                    .as_ref()
                    .and_then(Value::as_array)
                    .map(|a| {
                        a.iter()
                            .map(|e| {
                                let s = |k: &str| e[k].as_str().unwrap_or_default().to_owned();
                                (s("field"), s("message"))
                            })
                            .collect()
                    })
                    .unwrap_or_default(),
            });
        }
        if items.is_empty() && page > 0 {
            total = sqlx::query_scalar::<_, i64>(
                "select count(*) from lead_import_rows \
                  where import_id = $1 and (not $2 or outcome <> 'CREATED')",
            )
            .bind(id)
            .bind(problems_only)
            .fetch_one(&mut *conn)
            .await
            .map_err(store_error("read an import's rows"))
            .map(|n| u64::try_from(n).unwrap_or(0))?;
        }
        Ok(Page { items, total })
    }

    /// Takes over a RUNNING import whose lease expired (the oldest first; `only` one import),
    /// leasing it to `worker`. Run as the system actor, which sees every import.
    pub async fn claim_import(
        &mut self,
        worker: Uuid,
        lease: std::time::Duration,
        only: Option<Uuid>,
    ) -> Result<Option<Claimed>, StoreError> {
        let conn = self.connection().await?;
        let row = sqlx::query(
            "update lead_imports set worker = $1, lease_until = now() + make_interval(secs => $2), \
                    updated_at = now() \
              where id = (select id from lead_imports \
                           where state = 'RUNNING' and lease_until < now() \
                             and ($3::uuid is null or id = $3) \
                           order by created_at limit 1 for update skip locked) \
             returning id, actor, file, charset, mapping, next_record",
        )
        .bind(worker)
        .bind(lease.as_secs_f64())
        .bind(only)
        .fetch_optional(&mut *conn)
        .await
        .map_err(store_error("claim an import"))?;
        let Some(row) = row else { return Ok(None) };
        let fail = |e| store_error("claim an import")(e);
        let actor: Value = row.try_get("actor").map_err(fail)?;
        let file: Option<Vec<u8>> = row.try_get("file").map_err(fail)?;
        Ok(Some(Claimed {
            id: row.try_get("id").map_err(fail)?,
            actor: actor_from(&actor)?,
            file: file.ok_or_else(|| StoreError::msg("a running import has no file"))?,
            charset: row.try_get("charset").map_err(fail)?,
            mapping: row.try_get("mapping").map_err(fail)?,
            processed: count(row.try_get("next_record").map_err(fail)?),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_importer_round_trips_through_its_stored_form() {
        let actor = Actor::new(
            UserId::parse("manager-1").unwrap(),
            [Role::Manager, Role::Sales],
            [TerritoryId::Ch],
        );
        let back = actor_from(&actor_json(&actor)).unwrap();
        assert_eq!(back.user_id(), actor.user_id());
        assert_eq!(back.roles(), actor.roles());
        assert_eq!(back.territories(), actor.territories());
    }
}
