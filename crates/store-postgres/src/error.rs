//! The one place where database errors become domain errors (STYLE.md "Types and errors"):
//! named constraints map to [`WriteError`] variants; everything else is a [`StoreError`] that
//! carries the database error as its source.

use freshplan_leads::duplicates::DuplicateKind;
use freshplan_leads::ports::{StoreError, WriteError};

/// Unique index: one non-deleted lead per normalised email (migrations/0001).
pub(crate) const LEADS_EMAIL_KEY_UQ: &str = "leads_email_key_uq";
/// Unique index: one non-deleted lead per normalised company + postal code + country.
pub(crate) const LEADS_COMPANY_KEY_UQ: &str = "leads_company_key_uq";
/// Primary key of the idempotency keys: (user_id, key).
pub(crate) const IDEMPOTENCY_KEYS_PKEY: &str = "idempotency_keys_pkey";

/// Maps a database error to the domain's write error, by constraint name.
pub(crate) fn classify(context: &'static str, error: sqlx::Error) -> WriteError {
    // lock_not_available: a `nowait` lock found the row held by another transaction.
    if let Some(db) = error.as_database_error()
        && db.code().as_deref() == Some("55P03")
    {
        return WriteError::Busy;
    }
    if let Some(db) = error.as_database_error()
        && db.is_unique_violation()
    {
        match db.constraint() {
            Some(LEADS_EMAIL_KEY_UQ) => return WriteError::Duplicate(DuplicateKind::Email),
            Some(LEADS_COMPANY_KEY_UQ) => return WriteError::Duplicate(DuplicateKind::Company),
            Some(IDEMPOTENCY_KEYS_PKEY) => return WriteError::IdempotencyKeyTaken,
            _ => {}
        }
    }
    WriteError::Store(StoreError {
        message: context.to_owned(),
        source: Some(Box::new(error)),
    })
}

/// For operations whose port returns a bare [`StoreError`]: a classified domain error (which
/// such an operation cannot produce unless the schema and the adapter disagree) is kept as the
/// source, so nothing is lost.
pub(crate) fn store_error(context: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
    move |error| match classify(context, error) {
        WriteError::Store(e) => e,
        other => StoreError {
            message: format!("{context}: {other}"),
            source: Some(Box::new(other)),
        },
    }
}

/// A stored value the domain does not accept (the schema and the domain disagree).
pub(crate) fn corrupt(
    field: &'static str,
    error: impl std::error::Error + Send + Sync + 'static,
) -> StoreError {
    StoreError {
        message: format!("stored {field} is invalid"),
        source: Some(Box::new(error)),
    }
}
