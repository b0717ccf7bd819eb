//! The adapter's error.

/// A failure of the mail adapter.
#[derive(Debug, thiserror::Error)]
pub enum MailError {
    /// The database failed; `context` says what the adapter was doing.
    #[error("mail outbox: {context}")]
    Database {
        /// What the adapter was doing.
        context: &'static str,
        /// The cause.
        #[source]
        source: sqlx::Error,
    },
    /// A stored value the adapter does not accept (the schema and the adapter disagree).
    #[error("mail outbox: stored {field} is invalid: {value:?}")]
    Corrupt {
        /// The column.
        field: &'static str,
        /// The value.
        value: String,
    },
    /// The SMTP transport could not be configured (bad `FRESHPLAN_SMTP_URL`).
    #[error("invalid SMTP configuration")]
    Transport(#[source] lettre::transport::smtp::Error),
}

pub(crate) fn db(context: &'static str) -> impl FnOnce(sqlx::Error) -> MailError {
    move |source| MailError::Database { context, source }
}
