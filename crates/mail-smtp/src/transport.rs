//! The transport port and its SMTP implementation.

use std::future::Future;
use std::time::Duration;

use lettre::{AsyncSmtpTransport, AsyncTransport as _, Message, Tokio1Executor};

use crate::error::MailError;

/// Why a send failed, as far as retrying is concerned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// The server refused this mail for good (SMTP 5xx): retrying cannot help; the mail is
    /// given up at once.
    #[error("rejected: {0}")]
    Rejected(String),
    /// The server refused this mail for now (SMTP 4xx): try it again later.
    #[error("deferred: {0}")]
    Deferred(String),
    /// The server could not be reached or the session broke (connection refused, timeout,
    /// TLS): try again later — and do not try the rest of the batch now.
    #[error("unavailable: {0}")]
    Unavailable(String),
}

/// Sends one message.
pub trait MailTransport: Send + Sync + 'static {
    /// Sends `message` to its envelope's recipients.
    fn send(&self, message: Message) -> impl Future<Output = Result<(), SendError>> + Send;
}

/// SMTP over lettre's tokio transport, with a connection pool.
#[derive(Clone)]
pub struct SmtpTransport {
    inner: AsyncSmtpTransport<Tokio1Executor>,
}

impl std::fmt::Debug for SmtpTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // lettre's Debug would show credentials from the URL.
        f.debug_struct("SmtpTransport").finish_non_exhaustive()
    }
}

impl SmtpTransport {
    /// A transport for `url` (`FRESHPLAN_SMTP_URL`), with `timeout` for each SMTP command:
    /// `smtp://host:port` (plain, e.g. a local relay or a test server),
    /// `smtp://host:587?tls=required` (STARTTLS), `smtps://host:465` (implicit TLS), each
    /// optionally with `user:password@`. TLS uses rustls with the webpki roots.
    pub fn from_url(url: &str, timeout: Duration) -> Result<SmtpTransport, MailError> {
        let inner = AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
            .map_err(MailError::Transport)?
            .timeout(Some(timeout))
            .build();
        Ok(SmtpTransport { inner })
    }
}

/// Classifies lettre's error: 5xx replies are final, 4xx temporary, everything else (no
/// connection, timeout, TLS, a broken session) means the server is unavailable.
fn classify(error: &lettre::transport::smtp::Error) -> SendError {
    let text = error_text(error);
    if error.is_permanent() {
        SendError::Rejected(text)
    } else if error.is_transient() {
        SendError::Deferred(text)
    } else {
        SendError::Unavailable(text)
    }
}

fn error_text(error: &(dyn std::error::Error + 'static)) -> String {
    let mut out = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        out.push_str(": ");
        out.push_str(&e.to_string());
        source = e.source();
    }
    out
}

impl MailTransport for SmtpTransport {
    async fn send(&self, message: Message) -> Result<(), SendError> {
        self.inner
            .send(message)
            .await
            .map(|_| ())
            .map_err(|e| classify(&e))
    }
}
