//! SMTP adapter of FreshPlan Leads (SPEC §6): delivers the mail outbox that the follow-up run
//! fills (`mail_outbox`, migrations/0004) over SMTP with [`lettre`].
//!
//! | module | what |
//! |---|---|
//! | [`outbox`] | [`PgMailOutbox`]: claim, record results, admin listing, requeue |
//! | [`policy`] | [`RetryPolicy`]: exponential backoff, bounded attempts |
//! | [`message`] | [`Sender`] and [`build_message`]: multipart text + HTML, `List-Unsubscribe` + `List-Unsubscribe-Post` (RFC 8058 one-click), deterministic `Message-ID` |
//! | [`transport`] | [`MailTransport`], [`SmtpTransport`] (`smtp://host:port`, `smtps://…`, `?tls=required`) |
//! | [`dispatcher`] | [`Dispatcher`]: the delivery loop |
//!
//! # Delivery guarantee: at least once, never lost
//! For each batch the dispatcher
//! 1. **claims** due `QUEUED` mails (`FOR UPDATE SKIP LOCKED`, oldest due first), counts the
//!    attempt and pushes `next_attempt_at` out by a *lease*, and commits — a short transaction,
//!    no lock is held while talking SMTP;
//! 2. **sends** each mail;
//! 3. **records** the result: `SENT` (with `sent_at`), or the error in `last_error` with the next
//!    attempt after an exponential backoff, or `DEAD` once the attempts are used up (or the
//!    server rejected the mail permanently, 5xx).
//!
//! A crash before the result is recorded leaves the mail `QUEUED`; it is due again when the
//! lease ends, so no mail is ever lost. The price is the at-least-once window: a crash (or a lost
//! database connection) *between* a successful send and its `SENT` record sends the mail again
//! after the lease. SMTP has no idempotency, so every mail carries a deterministic `Message-ID`
//! (`<mail id@sender domain>`): the same on every attempt, receivers can recognise a repeat.
//! Within a process, a `SENT` record that failed to write is retried before the next claim, so
//! only a process crash opens the window. A database lost in the middle of a batch (a failover)
//! ends the batch; the mails it claimed but had not attempted are handed back to the queue before
//! the next claim ([`PgMailOutbox::release`]), so they wait for the next poll, not for the lease.
//!
//! Mails stay `QUEUED` and visible while no dispatcher runs (no SMTP configured).
//!
//! # Wiring (in `app`)
//! ```no_run
//! # async fn wire(pool: sqlx::PgPool) -> Result<(), Box<dyn std::error::Error>> {
//! use freshplan_kernel::SystemClock;
//! use freshplan_mail_smtp::{Dispatcher, DispatcherConfig, PgMailOutbox, Sender, SmtpTransport};
//!
//! let transport = SmtpTransport::from_url("smtp://127.0.0.1:2525", std::time::Duration::from_secs(30))?;
//! let sender = Sender::new("FreshPlan <noreply@freshplan.example>".parse()?, None);
//! let dispatcher = Dispatcher::new(
//!     PgMailOutbox::new(pool),
//!     transport,
//!     SystemClock,
//!     DispatcherConfig::new(sender),
//! );
//! dispatcher.run(async { let _ = tokio::signal::ctrl_c().await; }).await;
//! # Ok(()) }
//! ```

pub mod dispatcher;
mod error;
pub mod message;
pub mod outbox;
pub mod policy;
#[cfg(feature = "testing")]
pub mod testing;
pub mod transport;

pub use dispatcher::{DispatchReport, Dispatcher, DispatcherConfig};
pub use error::MailError;
pub use message::{Sender, build_message, message_id};
pub use outbox::{
    MailCursor, MailPage, MailQuery, MailRecord, MailStatus, MailSummary, PgMailOutbox, QueuedMail,
};
pub use policy::RetryPolicy;
pub use transport::{MailTransport, SendError, SmtpTransport};

/// Re-exported so the app can parse the sender address without depending on lettre.
pub use lettre::message::Mailbox;
