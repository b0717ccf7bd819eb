//! Importing lists of leads (CSV files from trade fairs, purchased lists, old spreadsheets).
//!
//! An import creates each lead exactly as a single create does ([`Lead::import`] is
//! [`Lead::register`] plus the importer's choice of owner and the import as the source of the
//! timeline entry and the consent), with the same access rules per row, and adds the one rule a
//! file brings: a row that collides with an earlier row of the same file is a duplicate of that
//! line ([`InFileKeys`]). The service's [`crate::LeadService::import_batch`] applies the rules to a
//! batch of rows inside one transaction; the adapter records its own bookkeeping (progress, the
//! row report) in the same transaction before committing it, so a batch and its report commit
//! together or not at all.

use std::collections::HashMap;

use serde_json::json;
use time::OffsetDateTime;
use uuid::Uuid;

use freshplan_kernel::event::KeyBasis;
use freshplan_kernel::{CloudEvent, UserId};

use crate::duplicates::{DuplicateKeys, DuplicateKind};
use crate::lead::LeadData;
use crate::model::FieldError;

/// Rows per batch (one transaction, one multi-row insert): large enough that the transaction
/// and statement overhead vanish per lead, small enough that a batch commits in well under a
/// second and the cockpit figures move while a large file is imported.
pub const BATCH_ROWS: usize = 100;

/// The most data rows a file may have (more is refused whole: 413).
pub const MAX_ROWS: usize = 50_000;

/// One data row of a file that the field rules accepted: a lead to create unless an access or
/// duplicate rule refuses it.
#[derive(Debug, Clone)]
pub struct ImportCandidate {
    /// The row's line in the file (1-based, the header is line 1).
    pub line: u64,
    /// The lead's data.
    pub data: LeadData,
    /// A backdated registration (admins only, as for single creates).
    pub registered_at: Option<OffsetDateTime>,
    /// The owner named by the file (managers and admins only); else the importer.
    pub owner: Option<UserId>,
}

/// What became of one row.
#[derive(Debug, Clone, PartialEq)]
pub enum RowOutcome {
    /// The lead was created (in a dry run: would be created) with this id.
    Created {
        /// The lead's id (in a dry run an id that was never stored).
        lead_id: Uuid,
    },
    /// The row breaks a rule; nothing was created.
    Refused {
        /// Every field that broke a rule, and why.
        errors: Vec<FieldError>,
    },
    /// The row duplicates an existing lead or an earlier row of the file (SPEC §4.2).
    Duplicate {
        /// Which key matched.
        kind: DuplicateKind,
        /// The existing lead, only when the importer may read it.
        existing: Option<Uuid>,
        /// The earlier line of the same file.
        other_line: Option<u64>,
    },
}

impl RowOutcome {
    /// The outcome's name in reports and metrics: `created`, `refused` or `duplicate`.
    pub fn name(&self) -> &'static str {
        match self {
            RowOutcome::Created { .. } => "created",
            RowOutcome::Refused { .. } => "refused",
            RowOutcome::Duplicate { .. } => "duplicate",
        }
    }
}

/// One row's outcome with its line.
#[derive(Debug, Clone, PartialEq)]
pub struct RowReport {
    /// The line in the file.
    pub line: u64,
    /// What became of it.
    pub outcome: RowOutcome,
}

/// The first line of the file holding each duplicate key, over the rows the field rules
/// accepted: a later row with the same key duplicates that line.
#[derive(Debug, Clone, Default)]
pub struct InFileKeys {
    email: HashMap<String, u64>,
    company: HashMap<(String, Option<String>, String), u64>,
}

impl InFileKeys {
    /// Indexes the rows' keys (in file order; the first line of each key wins).
    pub fn build(rows: impl IntoIterator<Item = (u64, DuplicateKeys)>) -> InFileKeys {
        let mut keys = InFileKeys::default();
        for (line, k) in rows {
            if let Some(email) = k.email {
                keys.email.entry(email).or_insert(line);
            }
            keys.company.entry(k.company).or_insert(line);
        }
        keys
    }

    /// The earlier line that `keys` (the row at `line`) duplicates, e-mail first.
    pub fn earlier(&self, line: u64, keys: &DuplicateKeys) -> Option<(u64, DuplicateKind)> {
        let email = keys
            .email
            .as_ref()
            .and_then(|e| self.email.get(e))
            .filter(|&&first| first < line)
            .map(|&first| (first, DuplicateKind::Email));
        email.or_else(|| {
            self.company
                .get(&keys.company)
                .filter(|&&first| first < line)
                .map(|&first| (first, DuplicateKind::Company))
        })
    }
}

/// Where an import stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ImportState {
    /// Rows are being created (in the background).
    Running,
    /// Every row was processed.
    Succeeded,
    /// The import stopped; the rows processed before are reported, the rest were not created.
    Failed,
}

impl ImportState {
    /// The stored and wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            ImportState::Running => "RUNNING",
            ImportState::Succeeded => "SUCCEEDED",
            ImportState::Failed => "FAILED",
        }
    }

    /// The state named `s`.
    pub fn parse(s: &str) -> Option<ImportState> {
        [
            ImportState::Running,
            ImportState::Succeeded,
            ImportState::Failed,
        ]
        .into_iter()
        .find(|state| state.as_str() == s)
    }
}

/// The counts of a finished import: what `lead.import.finished.v1` carries (no personal data).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImportSummary {
    /// The import.
    pub id: Uuid,
    /// `Succeeded` or `Failed`.
    pub state: ImportState,
    /// Data rows in the file.
    pub rows: u32,
    /// Leads created.
    pub created: u32,
    /// Rows refused by a field or access rule.
    pub refused: u32,
    /// Rows that duplicated an existing lead or an earlier row.
    pub duplicates: u32,
    /// When the import was accepted.
    pub started_at: OffsetDateTime,
}

/// The type of the event an import sends when it ends.
pub const IMPORT_FINISHED: &str = "lead.import.finished.v1";

impl ImportSummary {
    /// `lead.import.finished.v1`: subject the import id, keyed by the import (one per import).
    pub fn finished_event(&self, id: Uuid, finished_at: OffsetDateTime) -> CloudEvent {
        let data = json!({
            "importId": self.id,
            "state": self.state.as_str(),
            "rows": self.rows,
            "created": self.created,
            "refused": self.refused,
            "duplicates": self.duplicates,
            "startedAt": crate::events::rfc3339(self.started_at),
            "finishedAt": crate::events::rfc3339(finished_at),
        });
        CloudEvent::new(
            id,
            CloudEvent::SOURCE_LEADS,
            IMPORT_FINISHED,
            finished_at,
            Some(self.id.to_string()),
            KeyBasis::Run(self.id),
            data,
        )
        .unwrap_or_else(|e| unreachable!("static source and type are valid: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{CompanyName, Email};
    use time::macros::datetime;

    fn keys(name: &str, email: Option<&str>, plz: &str) -> DuplicateKeys {
        let mut d = LeadData::new(CompanyName::parse(name).unwrap(), "DE").unwrap();
        d.email = email.map(|e| Email::parse(e).unwrap());
        d.postal_code = Some(plz.to_owned());
        d.duplicate_keys()
    }

    #[test]
    fn a_row_duplicates_the_first_earlier_line_with_its_email_or_company_key() {
        let rows = [
            (2, keys("Gasthaus Post", Some("info@post.de"), "10115")),
            (3, keys("Hotel Adler", Some("info@adler.de"), "80331")),
            (5, keys("Anderer Name", Some("INFO@post.de"), "99999")),
            (7, keys("hotel  adler", None, "80331")),
            (9, keys("Kantine Nord", None, "20095")),
        ];
        let index = InFileKeys::build(rows.clone());
        assert_eq!(
            index.earlier(2, &rows[0].1),
            None,
            "the first line is no duplicate"
        );
        assert_eq!(index.earlier(3, &rows[1].1), None);
        assert_eq!(
            index.earlier(5, &rows[2].1),
            Some((2, DuplicateKind::Email))
        );
        assert_eq!(
            index.earlier(7, &rows[3].1),
            Some((3, DuplicateKind::Company))
        );
        assert_eq!(index.earlier(9, &rows[4].1), None);
    }

    #[test]
    fn the_email_key_wins_over_the_company_key() {
        let rows = [
            (2, keys("A", None, "1")),
            (3, keys("B", Some("x@y.de"), "2")),
            (4, keys("A", Some("x@y.de"), "1")),
        ];
        let index = InFileKeys::build(rows.clone());
        assert_eq!(
            index.earlier(4, &rows[2].1),
            Some((3, DuplicateKind::Email))
        );
    }

    #[test]
    fn states_round_trip_their_names() {
        for s in ["RUNNING", "SUCCEEDED", "FAILED"] {
            assert_eq!(ImportState::parse(s).map(ImportState::as_str), Some(s));
        }
        assert_eq!(ImportState::parse("running"), None);
    }

    #[test]
    fn the_finished_event_carries_counts_and_no_personal_data() {
        let summary = ImportSummary {
            id: Uuid::from_u128(7),
            state: ImportState::Succeeded,
            rows: 10,
            created: 7,
            refused: 2,
            duplicates: 1,
            started_at: datetime!(2026-12-06 10:00 UTC),
        };
        let ce = summary.finished_event(Uuid::from_u128(1), datetime!(2026-12-06 10:01 UTC));
        assert_eq!(ce.event_type, IMPORT_FINISHED);
        assert_eq!(ce.subject.as_deref(), Some(summary.id.to_string().as_str()));
        assert_eq!(ce.data["created"], 7);
        assert_eq!(ce.data["refused"], 2);
        assert_eq!(ce.data["duplicates"], 1);
        assert_eq!(ce.data["rows"], 10);
        assert_eq!(ce.data["state"], "SUCCEEDED");
        assert_eq!(ce.data["finishedAt"], "2026-12-06T10:01:00Z");
        let keys: Vec<&String> = ce.data.as_object().unwrap().keys().collect();
        assert_eq!(keys.len(), 8, "{keys:?}");
        let again = summary.finished_event(Uuid::from_u128(2), datetime!(2026-12-06 10:02 UTC));
        assert_eq!(
            ce.idempotencykey, again.idempotencykey,
            "one key per import"
        );
    }
}
