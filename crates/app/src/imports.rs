//! Imports of lead lists (issue 15, ADR 0014): reading a file's rows into create bodies, dry
//! runs, and running imports in the background on any replica.
//!
//! A row goes through exactly the path of `POST /api/leads`: its cells become an
//! [`api::LeadCreate`] (after the spelling normalisation of [`freshplan_import_csv`]: `ja`,
//! `Deutschland`, `1.234,50`), then [`crate::api::leads::lead_data`] applies the field rules and
//! [`freshplan_leads::LeadService::import_batch`] the create rules.
//!
//! An import runs in batches of [`BATCH_ROWS`]; each batch's leads, its rows' outcomes and the
//! import's new position commit in one transaction, fenced on this replica's lease. The replica
//! that accepted the file runs it at once; when a replica dies, any replica takes the import
//! over once its lease has expired ([`Importer::resume`]) and continues at the committed
//! position: nothing is lost, nothing doubled.

use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;
use tokio::sync::watch;
use uuid::Uuid;

use freshplan_api::imports as wire;
use freshplan_import_csv::{Field, Options, Record, Sheet, SheetError};
use freshplan_kernel::Actor;
use freshplan_leads::LeadError;
use freshplan_leads::import::{
    BATCH_ROWS, ImportCandidate, ImportState, InFileKeys, MAX_ROWS, RowOutcome, RowReport,
};
use freshplan_leads::model::FieldError;
use freshplan_leads::ports::{LeadStore, LeadTx};
use freshplan_metrics_prometheus::Metrics;
use freshplan_store_postgres::imports::Claimed;

use crate::Leads;

/// How long a replica's hold on a running import lasts without progress (renewed by every
/// batch); after it, another replica takes the import over.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(30);

/// A row's cells through the field rules of a single create (`crate::api::imports` provides it:
/// the HTTP layer owns the create body's rules).
pub type Convert = fn(&Record) -> Result<ImportCandidate, Vec<FieldError>>;

/// A file read and indexed for its in-file duplicates.
pub struct Prepared {
    /// The file's rows.
    pub sheet: Sheet,
    /// The first line of each duplicate key among the rows the field rules accept.
    pub in_file: InFileKeys,
    /// The field rules.
    pub convert: Convert,
}

/// Reads a file (at most [`MAX_ROWS`] data rows) and indexes its rows' duplicate keys.
pub fn prepare(
    file: &[u8],
    charset: Option<String>,
    mapping: Vec<(String, Field)>,
    convert: Convert,
) -> Result<Prepared, SheetError> {
    let sheet = Sheet::parse(
        file,
        &Options {
            charset,
            mapping,
            max_rows: MAX_ROWS,
        },
    )?;
    sheet.count_records()?;
    let mut keys = Vec::new();
    for record in sheet.records() {
        if let Ok(c) = convert(&record?) {
            keys.push((c.line, c.data.duplicate_keys()));
        }
    }
    Ok(Prepared {
        in_file: InFileKeys::build(keys),
        sheet,
        convert,
    })
}

/// The explicit mapping as stored (`[[header, field], …]`) and back.
pub fn mapping_json(mapping: &[(String, Field)]) -> serde_json::Value {
    serde_json::Value::Array(
        mapping
            .iter()
            .map(|(h, f)| serde_json::json!([h, f.api_name()]))
            .collect(),
    )
}

fn mapping_from(value: &serde_json::Value) -> Vec<(String, Field)> {
    value
        .as_array()
        .map(|pairs| {
            pairs
                .iter()
                .filter_map(|p| {
                    let header = p.get(0)?.as_str()?;
                    let field = Field::from_api_name(p.get(1)?.as_str()?)?;
                    Some((header.to_owned(), field))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Why a batch could not be applied.
#[derive(Debug)]
enum BatchError {
    /// The file could not be read further (cannot happen for a file that was read whole before).
    Sheet(SheetError),
    /// A use-case or store failure.
    Lead(LeadError),
    /// Another replica holds the import now.
    LostLease,
}

impl From<LeadError> for BatchError {
    fn from(e: LeadError) -> Self {
        BatchError::Lead(e)
    }
}

impl From<freshplan_leads::ports::StoreError> for BatchError {
    fn from(e: freshplan_leads::ports::StoreError) -> Self {
        BatchError::Lead(LeadError::Store(e))
    }
}

/// The reports of the rows `records` holds: the field rules first, then the create rules of
/// [`freshplan_leads::LeadService::import_batch`]; the transaction comes back uncommitted.
async fn apply(
    leads: &Leads,
    actor: &Actor,
    import_id: Uuid,
    records: &[Record],
    prepared: &Prepared,
    dry_run: bool,
) -> Result<
    (
        <freshplan_store_postgres::PgLeadStore as LeadStore>::Tx,
        Vec<RowReport>,
    ),
    LeadError,
> {
    let mut refused = Vec::new();
    let mut rows = Vec::with_capacity(records.len());
    for record in records {
        match (prepared.convert)(record) {
            Ok(c) => rows.push(c),
            Err(errors) => refused.push(RowReport {
                line: record.line,
                outcome: RowOutcome::Refused { errors },
            }),
        }
    }
    let (tx, mut reports) = leads
        .import_batch(actor, import_id, rows, &prepared.in_file, dry_run)
        .await?;
    reports.append(&mut refused);
    reports.sort_by_key(|r| r.line);
    Ok((tx, reports))
}

/// A dry run: every row through the rules, nothing written.
pub async fn dry_run(
    leads: &Leads,
    actor: &Actor,
    prepared: &Prepared,
) -> Result<Vec<RowReport>, crate::problem::Problem> {
    let mut all = Vec::new();
    let mut batch = Vec::with_capacity(BATCH_ROWS);
    let mut records = prepared.sheet.records().peekable();
    while records.peek().is_some() {
        batch.clear();
        for record in records.by_ref().take(BATCH_ROWS) {
            batch.push(record.map_err(|e| crate::problem::Problem::bad_request(e.to_string()))?);
        }
        let (tx, mut reports) = apply(leads, actor, Uuid::nil(), &batch, prepared, true).await?;
        drop(tx);
        all.append(&mut reports);
    }
    Ok(all)
}

/// Runs imports on this replica: the ones it accepted, and the ones whose replica died.
pub struct Importer {
    leads: Leads,
    /// This replica's identity as a lease holder.
    worker: Uuid,
    lease: Duration,
    metrics: Option<Metrics>,
    convert: Convert,
    runtime: tokio::runtime::Handle,
}

impl std::fmt::Debug for Importer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Importer")
            .field("worker", &self.worker)
            .field("lease", &self.lease)
            .finish_non_exhaustive()
    }
}

impl Importer {
    /// An importer over the lead service, holding leases for `lease`, reading rows with
    /// `convert`. Its imports run on the runtime it is created on (the service's, not an HTTP
    /// worker's).
    pub fn new(
        leads: Leads,
        lease: Duration,
        metrics: Option<Metrics>,
        convert: Convert,
    ) -> Importer {
        Importer {
            leads,
            worker: Uuid::now_v7(),
            lease,
            metrics,
            convert,
            runtime: tokio::runtime::Handle::current(),
        }
    }

    /// The field rules rows are read with.
    pub fn convert(&self) -> Convert {
        self.convert
    }

    /// This replica's lease-holder id.
    pub fn worker(&self) -> Uuid {
        self.worker
    }

    /// How long a lease lasts.
    pub fn lease(&self) -> Duration {
        self.lease
    }

    /// Runs a claimed import to its end in the background.
    pub fn spawn(self: &Arc<Self>, claimed: Claimed) {
        let me = self.clone();
        self.runtime.spawn(async move { me.run(claimed).await });
    }

    /// Takes over every running import whose lease expired, one after the other, until `closing`.
    pub async fn resume(self: Arc<Self>, mut closing: watch::Receiver<bool>) {
        let every = (self.lease / 3).max(Duration::from_millis(200));
        loop {
            tokio::select! {
                () = tokio::time::sleep(every) => {}
                () = crate::scheduler::closed(&mut closing) => return,
            }
            loop {
                match self.claim(None).await {
                    Ok(Some(claimed)) => {
                        tracing::info!(import = %claimed.id, at = claimed.processed, "resuming an import");
                        self.run(claimed).await;
                    }
                    Ok(None) => break,
                    Err(e) => {
                        tracing::warn!(error = %e, "could not look for imports to resume");
                        break;
                    }
                }
            }
        }
    }

    async fn claim(
        &self,
        only: Option<Uuid>,
    ) -> Result<Option<Claimed>, freshplan_leads::ports::StoreError> {
        let mut tx = self.leads.store().begin(&Actor::system()).await?;
        let claimed = tx.claim_import(self.worker, self.lease, only).await?;
        tx.commit().await?;
        Ok(claimed)
    }

    /// Processes the import from its committed position to its end (or until this replica loses
    /// its lease, or the database stays unreachable: then another replica resumes it later).
    async fn run(&self, claimed: Claimed) {
        let id = claimed.id;
        let outcome = self.process(&claimed).await;
        let failure = match outcome {
            Ok(()) => None,
            Err(BatchError::LostLease) => {
                tracing::warn!(import = %id, "another replica took the import over");
                return;
            }
            Err(BatchError::Lead(LeadError::Store(e)))
                if freshplan_store_postgres::is_unavailable(&e) =>
            {
                tracing::warn!(import = %id, error = %e, "database unavailable; the import resumes when its lease expires");
                return;
            }
            Err(BatchError::Sheet(e)) => Some(e.to_string()),
            Err(BatchError::Lead(e)) => Some(e.to_string()),
        };
        if let Err(e) = self.finish(&claimed, failure.as_deref()).await {
            tracing::warn!(import = %id, error = %e, "could not finish the import; it resumes when its lease expires");
        }
    }

    async fn process(&self, claimed: &Claimed) -> Result<(), BatchError> {
        let prepared = {
            let (file, charset, mapping, convert) = (
                claimed.file.clone(),
                claimed.charset.clone(),
                mapping_from(&claimed.mapping),
                self.convert,
            );
            tokio::task::spawn_blocking(move || prepare(&file, charset, mapping, convert))
                .await
                .map_err(|e| {
                    BatchError::Lead(LeadError::Store(freshplan_leads::ports::StoreError::msg(
                        format!("reading the file: {e}"),
                    )))
                })?
                .map_err(BatchError::Sheet)?
        };
        let mut position = claimed.processed;
        let mut records = prepared
            .sheet
            .records()
            .skip(usize::try_from(position).unwrap_or(usize::MAX))
            .peekable();
        let mut batch = Vec::with_capacity(BATCH_ROWS);
        while records.peek().is_some() {
            batch.clear();
            for record in records.by_ref().take(BATCH_ROWS) {
                batch.push(record.map_err(BatchError::Sheet)?);
            }
            let processed = position + u32::try_from(batch.len()).unwrap_or(u32::MAX);
            let started = std::time::Instant::now();
            self.commit_batch(claimed, &batch, &prepared, position, processed)
                .await?;
            position = processed;
            // Background work yields to interactive requests: after each batch, a pause of
            // half its time (the import runs at most two thirds of the time; ADR 0014).
            tokio::time::sleep(started.elapsed() / 2).await;
        }
        Ok(())
    }

    /// One batch, committed with its bookkeeping. A lead created concurrently with the same
    /// keys (the batch's duplicate check missed it) fails the batch; it is retried, and after
    /// three failures applied row by row so that only the racing row becomes a duplicate.
    async fn commit_batch(
        &self,
        claimed: &Claimed,
        batch: &[Record],
        prepared: &Prepared,
        position: u32,
        processed: u32,
    ) -> Result<(), BatchError> {
        for _ in 0..3 {
            match self
                .try_batch(claimed, batch, prepared, position, processed)
                .await
            {
                Err(BatchError::Lead(LeadError::Duplicate { .. })) => continue,
                other => return other,
            }
        }
        for (at, record) in (position..).zip(batch) {
            let one = std::slice::from_ref(record);
            match self.try_batch(claimed, one, prepared, at, at + 1).await {
                Err(BatchError::Lead(LeadError::Duplicate { kind, .. })) => {
                    let report = RowReport {
                        line: record.line,
                        outcome: RowOutcome::Duplicate {
                            kind,
                            existing: None,
                            other_line: None,
                        },
                    };
                    let mut tx = self.leads.store().begin(&claimed.actor).await?;
                    if !tx
                        .record_import_batch(
                            claimed.id,
                            self.worker,
                            at,
                            at + 1,
                            &[report],
                            self.lease,
                        )
                        .await?
                    {
                        return Err(BatchError::LostLease);
                    }
                    tx.commit().await?;
                    self.count("duplicate", 1);
                }
                other => other?,
            }
        }
        Ok(())
    }

    async fn try_batch(
        &self,
        claimed: &Claimed,
        batch: &[Record],
        prepared: &Prepared,
        position: u32,
        processed: u32,
    ) -> Result<(), BatchError> {
        let (mut tx, reports) = apply(
            &self.leads,
            &claimed.actor,
            claimed.id,
            batch,
            prepared,
            false,
        )
        .await?;
        if !tx
            .record_import_batch(
                claimed.id,
                self.worker,
                position,
                processed,
                &reports,
                self.lease,
            )
            .await?
        {
            return Err(BatchError::LostLease);
        }
        tx.commit().await?;
        for name in ["created", "refused", "duplicate"] {
            let n = reports.iter().filter(|r| r.outcome.name() == name).count();
            self.count(name, n as u64);
        }
        Ok(())
    }

    fn count(&self, result: &str, n: u64) {
        if let Some(m) = &self.metrics
            && n > 0
        {
            m.import_rows(result, n);
        }
    }

    /// Ends the import (SUCCEEDED, or FAILED with `error`) with its `lead.import.finished.v1`.
    async fn finish(
        &self,
        claimed: &Claimed,
        error: Option<&str>,
    ) -> Result<(), freshplan_leads::ports::StoreError> {
        let state = if error.is_some() {
            ImportState::Failed
        } else {
            ImportState::Succeeded
        };
        let mut tx = self.leads.store().begin(&claimed.actor).await?;
        let Some(summary) = tx
            .finish_import(claimed.id, Some(self.worker), state, error)
            .await?
        else {
            return Ok(());
        };
        let now = OffsetDateTime::now_utc();
        tx.append_event(&summary.finished_event(Uuid::now_v7(), now))
            .await?;
        tx.commit().await?;
        tracing::info!(import = %claimed.id, state = state.as_str(), created = summary.created, refused = summary.refused, duplicates = summary.duplicates, "import finished");
        Ok(())
    }
}

/// The wire form of a row's report.
pub fn row_to_wire(report: &RowReport, dry_run: bool) -> wire::ImportRow {
    let mut row = wire::ImportRow {
        line: report.line,
        outcome: wire::RowOutcome::Created,
        lead_id: None,
        existing_lead_id: None,
        duplicate_of_line: None,
        duplicate_kind: None,
        errors: Vec::new(),
    };
    match &report.outcome {
        RowOutcome::Created { lead_id } => {
            row.lead_id = (!dry_run).then_some(*lead_id);
        }
        RowOutcome::Refused { errors } => {
            row.outcome = wire::RowOutcome::Refused;
            row.errors = errors
                .iter()
                .map(|e| wire::RowError {
                    field: e.field.to_owned(),
                    message: e.message.clone(),
                })
                .collect();
        }
        RowOutcome::Duplicate {
            kind,
            existing,
            other_line,
        } => {
            row.outcome = wire::RowOutcome::Duplicate;
            row.existing_lead_id = *existing;
            row.duplicate_of_line = *other_line;
            row.duplicate_kind = Some(
                match kind {
                    freshplan_leads::duplicates::DuplicateKind::Email => "EMAIL",
                    freshplan_leads::duplicates::DuplicateKind::Company => "COMPANY",
                }
                .to_owned(),
            );
        }
    }
    row
}
