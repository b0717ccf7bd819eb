//! Mail delivery of one replica (SPEC §6): the SMTP dispatcher built from the configuration and
//! its loop. The admin API over the outbox is `crate::api::mails`.
//!
//! Delivery is `freshplan-mail-smtp`'s (claim with a lease, send, record; retries with backoff,
//! `DEAD` after the last attempt); what this module adds is *when*: at start, whenever a follow-up
//! run queued mails or an admin requeued one (a wake-up), and every `FRESHPLAN_MAIL_POLL` for
//! retries. Every replica with `FRESHPLAN_SMTP_URL` runs one; claims skip each other's mails.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::sync::{Notify, watch};

use freshplan_kernel::Clock;
use freshplan_mail_smtp::{
    Dispatcher, DispatcherConfig, Mailbox, PgMailOutbox, Sender, SmtpTransport,
};

use crate::config::Config;
use crate::scheduler::closed;

/// The mail dispatcher as wired: on the follow-up clock, which queues the mails (a mail is due
/// at its queue time, so the dispatcher and a requeue must see the same "now").
pub type MailDispatcher = Dispatcher<SmtpTransport, Arc<dyn Clock>>;

/// The SMTP command timeout of the dispatcher.
pub const SMTP_TIMEOUT: Duration = Duration::from_secs(30);

/// Batches per drain (each up to the dispatcher's batch size).
const DRAIN_BATCHES: u32 = 100;

/// The mail dispatcher of a configuration; `None` without `FRESHPLAN_SMTP_URL`.
pub(crate) fn dispatcher(
    config: &Config,
    outbox: &PgMailOutbox,
    clock: Arc<dyn Clock>,
) -> anyhow::Result<Option<MailDispatcher>> {
    let Some(url) = &config.smtp_url else {
        return Ok(None);
    };
    let mailbox = |name: &str, value: &str| -> anyhow::Result<Mailbox> {
        value
            .parse::<Mailbox>()
            .with_context(|| format!("{name}={value:?}: expected `Name <address>` or an address"))
    };
    let from = config
        .mail_from
        .as_deref()
        .context("FRESHPLAN_SMTP_URL is set, so FRESHPLAN_MAIL_FROM (the sender) must be too")?;
    let sender = Sender::new(
        mailbox("FRESHPLAN_MAIL_FROM", from)?,
        config
            .mail_reply_to
            .as_deref()
            .map(|r| mailbox("FRESHPLAN_MAIL_REPLY_TO", r))
            .transpose()?,
    );
    // The URL may carry credentials: never repeat it in a message.
    let transport = SmtpTransport::from_url(url, SMTP_TIMEOUT)
        .context("FRESHPLAN_SMTP_URL is not a valid SMTP URL (smtp://host:port, smtps://…)")?;
    Ok(Some(Dispatcher::new(
        outbox.clone(),
        transport,
        clock,
        DispatcherConfig::new(sender),
    )))
}

/// The dispatcher loop of this replica: drains the outbox, then waits for a wake-up, the poll
/// interval or `closing` (a batch in flight finishes first).
pub async fn dispatch(
    dispatcher: MailDispatcher,
    wake: Arc<Notify>,
    poll: Duration,
    mut closing: watch::Receiver<bool>,
) {
    loop {
        if *closing.borrow() {
            return;
        }
        match dispatcher.drain(DRAIN_BATCHES).await {
            Ok(report) if report.claimed > 0 || report.dead > 0 => tracing::info!(
                claimed = report.claimed,
                sent = report.sent,
                retried = report.retried,
                dead = report.dead,
                "mail dispatch"
            ),
            Ok(_) => {}
            Err(e) => {
                tracing::error!(error = %e, "mail dispatch failed; retrying at the next poll")
            }
        }
        tokio::select! {
            biased;
            () = closed(&mut closing) => return,
            () = wake.notified() => {}
            () = tokio::time::sleep(poll) => {}
        }
    }
}
