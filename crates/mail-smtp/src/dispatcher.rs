//! The delivery loop (see the [crate docs](crate) for the guarantee).

use std::future::Future;
use std::sync::Mutex;
use std::time::{Instant, SystemTime};

use time::{Duration, OffsetDateTime};
use uuid::Uuid;

use freshplan_kernel::Clock;

use crate::error::MailError;
use crate::message::{Sender, build_message};
use crate::outbox::{PgMailOutbox, QueuedMail};
use crate::policy::RetryPolicy;
use crate::transport::{MailTransport, SendError};

/// The dispatcher's settings.
#[derive(Debug, Clone)]
pub struct DispatcherConfig {
    /// `From` / `Reply-To`.
    pub sender: Sender,
    /// Mails claimed per batch.
    pub batch_size: u32,
    /// Backoff and the bounded number of attempts.
    pub retry: RetryPolicy,
    /// How long a claimed mail stays hidden from other dispatchers while this one sends it.
    /// A batch stops sending once half of it has passed, so a slow batch never sends a mail
    /// whose lease another dispatcher may already have taken over. Choose it well above
    /// `batch_size` × the SMTP timeout.
    pub lease: Duration,
    /// The pause between polls when the outbox is empty.
    pub poll_interval: std::time::Duration,
}

impl DispatcherConfig {
    /// Defaults: batches of 20, [`RetryPolicy::default`] (8 attempts), a 15-minute lease,
    /// polling every 10 seconds.
    pub fn new(sender: Sender) -> DispatcherConfig {
        DispatcherConfig {
            sender,
            batch_size: 20,
            retry: RetryPolicy::default(),
            lease: Duration::minutes(15),
            poll_interval: std::time::Duration::from_secs(10),
        }
    }
}

/// What one batch (or a drain) did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DispatchReport {
    /// Mails claimed.
    pub claimed: u32,
    /// Mails handed to the SMTP server and recorded `SENT`.
    pub sent: u32,
    /// Failed attempts that will be retried.
    pub retried: u32,
    /// Mails given up (`DEAD`), including ones whose last attempt never reported back.
    pub dead: u32,
    /// Claimed mails not attempted because the batch ran out of lease time; they are due
    /// again when the lease ends.
    pub deferred: u32,
}

impl DispatchReport {
    fn add(&mut self, other: DispatchReport) {
        self.claimed += other.claimed;
        self.sent += other.sent;
        self.retried += other.retried;
        self.dead += other.dead;
        self.deferred += other.deferred;
    }
}

/// Delivers the mail outbox: claim, send, record (see the [crate docs](crate)). Several
/// dispatchers (replicas) may run at once: claims skip each other's mails.
pub struct Dispatcher<T, C> {
    outbox: PgMailOutbox,
    transport: T,
    clock: C,
    config: DispatcherConfig,
    /// Sends whose `SENT` record failed to write, retried before the next claim.
    unrecorded: Mutex<Vec<(Uuid, OffsetDateTime)>>,
    /// Claimed mails a batch did not attempt because the database went away (with the lease
    /// their claim set): handed back to the queue before the next claim, so a database failover
    /// delays them by a poll, not by a lease.
    unattempted: Mutex<Vec<(Uuid, OffsetDateTime)>>,
}

impl<T, C> std::fmt::Debug for Dispatcher<T, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dispatcher")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl<T: MailTransport, C: Clock> Dispatcher<T, C> {
    /// A dispatcher over `outbox`, sending with `transport`.
    pub fn new(
        outbox: PgMailOutbox,
        transport: T,
        clock: C,
        config: DispatcherConfig,
    ) -> Dispatcher<T, C> {
        Dispatcher {
            outbox,
            transport,
            clock,
            config,
            unrecorded: Mutex::new(Vec::new()),
            unattempted: Mutex::new(Vec::new()),
        }
    }

    /// The outbox.
    pub fn outbox(&self) -> &PgMailOutbox {
        &self.outbox
    }

    fn take_unrecorded(&self) -> Vec<(Uuid, OffsetDateTime)> {
        std::mem::take(&mut *self.unrecorded.lock().unwrap_or_else(|e| e.into_inner()))
    }

    fn keep_unrecorded(&self, id: Uuid, at: OffsetDateTime) {
        self.unrecorded
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((id, at));
    }

    fn keep_unattempted(&self, mails: &[QueuedMail], lease_until: OffsetDateTime) {
        self.unattempted
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(mails.iter().map(|m| (m.id, lease_until)));
    }

    /// Hands the claimed mails of an interrupted batch back to the queue; keeps them when the
    /// database is still away.
    async fn release_unattempted(&self) -> Result<(), MailError> {
        let mails =
            std::mem::take(&mut *self.unattempted.lock().unwrap_or_else(|e| e.into_inner()));
        if mails.is_empty() {
            return Ok(());
        }
        if let Err(e) = self.outbox.release(&mails, self.clock.now()).await {
            self.unattempted
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .extend(mails);
            return Err(e);
        }
        Ok(())
    }

    /// Records a failed attempt of `mail`: retry after the backoff, or give up.
    async fn fail(
        &self,
        mail: &QueuedMail,
        error: &str,
        give_up: bool,
        report: &mut DispatchReport,
    ) -> Result<(), MailError> {
        let now = self.clock.now();
        let retry_at = if give_up {
            None
        } else {
            self.config.retry.next_attempt(mail.attempts, now)
        };
        tracing::warn!(
            mail_id = %mail.id,
            attempts = mail.attempts,
            dead = retry_at.is_none(),
            error,
            "mail delivery failed"
        );
        self.outbox
            .mark_failed(mail.id, now, error, retry_at)
            .await?;
        match retry_at {
            Some(_) => report.retried += 1,
            None => report.dead += 1,
        }
        Ok(())
    }

    /// One batch: records earlier unrecorded sends, hands back the mails an interrupted batch
    /// did not attempt, gives up mails whose last attempt never reported back, claims up to
    /// `batch_size` due mails and sends them.
    ///
    /// An unreachable server fails the attempt of every mail left in the batch without trying
    /// them (each backs off); a permanent rejection gives the mail up at once; a database error
    /// ends the batch: the mails it did not attempt go back to the queue at the next batch (a
    /// mail whose attempt could not be recorded is due again when its lease ends).
    pub async fn dispatch_batch(&self) -> Result<DispatchReport, MailError> {
        let mut report = DispatchReport::default();
        let mut pending = self.take_unrecorded().into_iter();
        while let Some((id, at)) = pending.next() {
            if let Err(e) = self.outbox.mark_sent(id, at).await {
                // Still no database: keep this one and the rest for the next batch.
                self.keep_unrecorded(id, at);
                for (id, at) in pending {
                    self.keep_unrecorded(id, at);
                }
                return Err(e);
            }
        }
        self.release_unattempted().await?;
        let now = self.clock.now();
        let expired = self
            .outbox
            .expire(now, self.config.retry.max_attempts)
            .await?;
        report.dead += u32::try_from(expired).unwrap_or(u32::MAX);
        let started = Instant::now();
        let lease_until = now + self.config.lease;
        let mails = self
            .outbox
            .claim(now, self.config.batch_size, lease_until)
            .await?;
        report.claimed = u32::try_from(mails.len()).unwrap_or(u32::MAX);
        let budget = std::time::Duration::try_from(self.config.lease / 2).unwrap_or_default();
        let mut unavailable: Option<String> = None;
        for (i, mail) in mails.iter().enumerate() {
            if let Err(e) = self
                .attempt(mail, started, budget, &mut unavailable, &mut report)
                .await
            {
                self.keep_unattempted(&mails[i + 1..], lease_until);
                return Err(e);
            }
        }
        Ok(report)
    }

    /// Sends one claimed mail of a batch and records the result; a database error is returned
    /// (a sent mail whose record failed is kept for the next batch).
    async fn attempt(
        &self,
        mail: &QueuedMail,
        started: Instant,
        budget: std::time::Duration,
        unavailable: &mut Option<String>,
        report: &mut DispatchReport,
    ) -> Result<(), MailError> {
        if let Some(error) = unavailable {
            return self.fail(mail, error, false, report).await;
        }
        if started.elapsed() > budget {
            // The lease is half gone: leave the rest to whoever claims them next.
            report.deferred += 1;
            return Ok(());
        }
        let now = self.clock.now();
        let message = match build_message(mail, &self.config.sender, SystemTime::from(now)) {
            Ok(message) => message,
            Err(e) => return self.fail(mail, &e.to_string(), true, report).await,
        };
        match self.transport.send(message).await {
            Ok(()) => {
                let at = self.clock.now();
                if let Err(e) = self.outbox.mark_sent(mail.id, at).await {
                    // Sent but not recorded: remember it; without a database the batch cannot
                    // go on.
                    self.keep_unrecorded(mail.id, at);
                    return Err(e);
                }
                report.sent += 1;
                tracing::debug!(mail_id = %mail.id, "mail sent");
            }
            Err(SendError::Rejected(error)) => {
                self.fail(mail, &format!("rejected: {error}"), true, report)
                    .await?;
            }
            Err(SendError::Deferred(error)) => {
                let give_up = self.config.retry.gives_up_after(mail.attempts);
                self.fail(mail, &format!("deferred: {error}"), give_up, report)
                    .await?;
            }
            Err(SendError::Unavailable(error)) => {
                let error = format!("unavailable: {error}");
                let give_up = self.config.retry.gives_up_after(mail.attempts);
                self.fail(mail, &error, give_up, report).await?;
                *unavailable = Some(error);
            }
        }
        Ok(())
    }

    /// Runs batches until one claims nothing, the server is unavailable, or `max_batches`
    /// ran. For tests and a manual "send now".
    pub async fn drain(&self, max_batches: u32) -> Result<DispatchReport, MailError> {
        let mut total = DispatchReport::default();
        for _ in 0..max_batches {
            let batch = self.dispatch_batch().await?;
            total.add(batch);
            let full = batch.claimed >= self.config.batch_size;
            if !full || batch.retried > 0 || batch.deferred > 0 {
                break;
            }
        }
        Ok(total)
    }

    /// The dispatcher's life: drains the outbox, waits `poll_interval`, again, until
    /// `shutdown` completes (a batch in flight finishes first). Errors are logged and retried
    /// on the next poll.
    pub async fn run(&self, shutdown: impl Future<Output = ()>) {
        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            match self.drain(100).await {
                Ok(report) if report.claimed > 0 || report.dead > 0 => {
                    tracing::info!(
                        claimed = report.claimed,
                        sent = report.sent,
                        retried = report.retried,
                        dead = report.dead,
                        "mail dispatch"
                    );
                }
                Ok(_) => {}
                Err(e) => tracing::error!(error = %e, "mail dispatch failed"),
            }
            tokio::select! {
                () = &mut shutdown => return,
                () = tokio::time::sleep(self.config.poll_interval) => {}
            }
        }
    }
}
