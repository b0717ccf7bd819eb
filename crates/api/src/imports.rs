//! Imports of lead lists (`POST /api/leads/imports`, issue 15): the import resource, its report
//! and its rows.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::page;
use crate::wire::rfc3339;

/// Where an import stands. A dry run is `VALIDATED` at once; an import is `RUNNING` until every
/// row is processed (`SUCCEEDED`) or it stops (`FAILED`, with `error`; the rows processed
/// before are reported, the rest were not created).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[allow(missing_docs)] // the variants are their names
pub enum ImportState {
    Validated,
    Running,
    Succeeded,
    Failed,
}

/// One column of the file and the lead field it fills (`null`: ignored, see `unknownColumns`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ImportColumn {
    /// The header as written in the file.
    pub header: String,
    /// The API field name (`companyName`, …), or null.
    #[schema(required = true)]
    pub field: Option<String>,
}

/// What became of a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RowOutcome {
    /// The lead was created (a dry run: would be created).
    Created,
    /// A field or access rule refused the row (see `errors`).
    Refused,
    /// The row duplicates an existing lead (`existingLeadId` when you may read it) or an
    /// earlier line (`duplicateOfLine`).
    Duplicate,
}

/// A refused field of a row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RowError {
    /// The API field name.
    pub field: String,
    /// Why.
    pub message: String,
}

/// One processed row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ImportRow {
    /// The row's line in the file (the header is line 1; a quoted line break moves later rows).
    #[schema(minimum = 2)]
    pub line: u64,
    /// What became of it.
    pub outcome: RowOutcome,
    /// The created lead (null in a dry run and for other outcomes).
    #[schema(required = true)]
    pub lead_id: Option<Uuid>,
    /// The existing lead this row duplicates, when you may read it.
    #[schema(required = true)]
    pub existing_lead_id: Option<Uuid>,
    /// The earlier line of the file this row duplicates.
    #[schema(required = true)]
    pub duplicate_of_line: Option<u64>,
    /// The duplicate rule (`EMAIL` or `COMPANY`).
    #[schema(required = true)]
    pub duplicate_kind: Option<String>,
    /// The refused fields (empty unless `REFUSED`).
    pub errors: Vec<RowError>,
}

/// An import, or the report of a dry run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LeadImport {
    /// The import (absent from a dry run's report: a dry run stores nothing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<Uuid>,
    /// Whether this is a dry run's report.
    pub dry_run: bool,
    /// Where it stands.
    pub state: ImportState,
    /// How the file was read: `UTF-8` or `windows-1252`.
    pub encoding: String,
    /// The detected separator.
    pub delimiter: String,
    /// Every column of the header and its field.
    pub columns: Vec<ImportColumn>,
    /// Headers that fill no field (ignored).
    pub unknown_columns: Vec<String>,
    /// Data rows in the file.
    #[schema(minimum = 0)]
    pub rows: u32,
    /// Rows processed so far.
    #[schema(minimum = 0)]
    pub processed: u32,
    /// Leads created (a dry run: that would be created).
    #[schema(minimum = 0)]
    pub created: u32,
    /// Rows refused.
    #[schema(minimum = 0)]
    pub refused: u32,
    /// Duplicate rows.
    #[schema(minimum = 0)]
    pub duplicates: u32,
    /// The refused and duplicate rows, in line order (all of them for a dry run; for an import
    /// the first 1,000 — page through `/rows?problemsOnly=true` for more).
    pub problems: Vec<ImportRow>,
    /// Why a `FAILED` import stopped.
    #[schema(required = true)]
    pub error: Option<String>,
    /// When it was accepted.
    #[serde(with = "rfc3339")]
    pub created_at: OffsetDateTime,
    /// When it ended.
    #[serde(with = "rfc3339::option")]
    #[schema(required = true)]
    pub finished_at: Option<OffsetDateTime>,
}

page!(
    /// `GET /api/leads/imports/{id}/rows`: the processed rows in line order.
    ImportRowPage of ImportRow
);
