//! The follow-up service: runs the planner over the store, one transaction per batch.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use time::OffsetDateTime;
use uuid::Uuid;

use freshplan_kernel::{Actor, Clock, CloudEvent, IdGenerator};
use freshplan_leads::activity::Activity;
use freshplan_territory::Territory;

use crate::event::{RunReport, processed_event, stage_event};
use crate::plan::{ApplyError, Candidate, Outcome, Plan, apply_outcome, plan};
use crate::port::{FollowUpStore, FollowUpTx, OutgoingMail, ProcessedFollowUp, StoreError};
use crate::stage::{FollowUpRecord, Stage};
use crate::template::{RenderError, Template, default_templates, personalise, render};
use crate::unsubscribe::UnsubscribeToken;

/// The service's configuration.
#[derive(Clone)]
pub struct FollowUpConfig {
    /// Candidates claimed per batch (one transaction each); at least 1.
    pub batch_size: usize,
    /// Batches in flight at once within a run (each its own transaction); at least 1. The
    /// batches' claims skip each other's locked rows, so they never wait for each other.
    pub concurrency: usize,
    /// The public URL of `GET /unsubscribe`, e.g. `https://crm.example/unsubscribe`.
    pub unsubscribe_base_url: String,
    /// The HMAC key of unsubscribe tokens. The app checks it with
    /// [`crate::unsubscribe::validate_secret`] at start-up.
    pub unsubscribe_secret: Vec<u8>,
    /// Exactly one template per stage.
    pub templates: Vec<Template>,
}

impl FollowUpConfig {
    /// The default batch size.
    pub const DEFAULT_BATCH_SIZE: usize = 250;
    /// The default number of batches in flight.
    pub const DEFAULT_CONCURRENCY: usize = 4;

    /// A configuration with the default batch size and the [`default_templates`].
    pub fn new(
        unsubscribe_base_url: impl Into<String>,
        unsubscribe_secret: impl Into<Vec<u8>>,
    ) -> FollowUpConfig {
        FollowUpConfig {
            batch_size: Self::DEFAULT_BATCH_SIZE,
            concurrency: Self::DEFAULT_CONCURRENCY,
            unsubscribe_base_url: unsubscribe_base_url.into(),
            unsubscribe_secret: unsubscribe_secret.into(),
            templates: default_templates().into(),
        }
    }
}

impl fmt::Debug for FollowUpConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FollowUpConfig")
            .field("batch_size", &self.batch_size)
            .field("concurrency", &self.concurrency)
            .field("unsubscribe_base_url", &self.unsubscribe_base_url)
            .field("unsubscribe_secret", &"<redacted>")
            .field("templates", &self.templates)
            .finish()
    }
}

/// Why a configuration was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// `batch_size` is 0.
    #[error("the follow-up batch size must be at least 1")]
    ZeroBatchSize,
    /// `concurrency` is 0.
    #[error("the follow-up concurrency must be at least 1")]
    ZeroConcurrency,
    /// The unsubscribe base URL is blank.
    #[error("the unsubscribe base URL must not be empty")]
    MissingUnsubscribeUrl,
    /// The unsubscribe secret is empty.
    #[error("the unsubscribe secret must not be empty")]
    MissingSecret,
    /// A stage has no template, or more than one.
    #[error("stage {stage} needs exactly one template (found {found})")]
    TemplateCount {
        /// The stage.
        stage: Stage,
        /// How many were configured.
        found: usize,
    },
    /// A template does not validate.
    #[error("the template of stage {stage} is invalid")]
    InvalidTemplate {
        /// The stage.
        stage: Stage,
        /// Why.
        #[source]
        source: RenderError,
    },
}

/// What one batch did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BatchReport {
    /// Candidates the store handed out.
    pub claimed: usize,
    /// T+3 follow-ups sent.
    pub t3_sent: u32,
    /// T+7 follow-ups sent.
    pub t7_sent: u32,
    /// Follow-ups skipped.
    pub skipped: u32,
    /// The greatest lead id claimed: the cursor of the next page.
    pub last_lead_id: Option<Uuid>,
}

impl BatchReport {
    /// Follow-ups processed (sent or skipped) in the batch.
    pub const fn processed(&self) -> u32 {
        self.t3_sent + self.t7_sent + self.skipped
    }
}

/// Why a batch failed. The batch's transaction was not committed: nothing of it was written.
#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    /// The store failed.
    #[error("follow-up store failed")]
    Store(#[from] StoreError),
    /// The planner offered a stage the exactly-once rule refuses (a store returned an
    /// inconsistent candidate).
    #[error("inconsistent follow-up candidate")]
    Apply(#[from] ApplyError),
    /// A mail could not be rendered. Configured templates are validated up front, so this
    /// indicates a bug rather than bad data.
    #[error("follow-up {stage} of lead {lead_id} could not be rendered")]
    Render {
        /// The lead.
        lead_id: Uuid,
        /// The stage.
        stage: Stage,
        /// Why.
        #[source]
        source: RenderError,
    },
}

/// Why a run stopped early. Batches committed before the failure stay committed; `report`
/// counts them, so the caller can still publish `lead.followup.processed.v1` for the partial
/// run (SPEC §6: after *every* run) with [`processed_event`].
#[derive(Debug, thiserror::Error)]
#[error("follow-up run {} failed after {} processed follow-ups", report.run_id, report.processed())]
pub struct RunError {
    /// What the run did before it failed (`finished_at` = time of the failure).
    pub report: RunReport,
    /// The failing batch's error.
    #[source]
    pub source: BatchError,
}

/// The follow-up service (SPEC §6).
///
/// `run` is the scheduler's entry point. Decision: it *returns* the
/// `lead.followup.processed.v1` event instead of writing it, because the caller (the app)
/// persists the run report for `GET /api/followups/runs` anyway and writes both in one
/// transaction through its outbox; the follow-up store stays about leads.
pub struct FollowUpService<S, C, I> {
    store: S,
    clock: C,
    ids: I,
    config: FollowUpConfig,
    t3: Template,
    t7: Template,
}

impl<S, C, I> fmt::Debug for FollowUpService<S, C, I> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FollowUpService")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl<S: FollowUpStore, C: Clock, I: IdGenerator> FollowUpService<S, C, I> {
    /// A service over `store`, validating the configuration (batch size, URL, secret present,
    /// exactly one valid template per stage).
    pub fn new(store: S, clock: C, ids: I, config: FollowUpConfig) -> Result<Self, ConfigError> {
        if config.batch_size == 0 {
            return Err(ConfigError::ZeroBatchSize);
        }
        if config.concurrency == 0 {
            return Err(ConfigError::ZeroConcurrency);
        }
        if config.unsubscribe_base_url.trim().is_empty() {
            return Err(ConfigError::MissingUnsubscribeUrl);
        }
        if config.unsubscribe_secret.is_empty() {
            return Err(ConfigError::MissingSecret);
        }
        let pick = |stage: Stage| -> Result<Template, ConfigError> {
            let found: Vec<&Template> = config
                .templates
                .iter()
                .filter(|t| t.stage == stage)
                .collect();
            let [template] = found.as_slice() else {
                return Err(ConfigError::TemplateCount {
                    stage,
                    found: found.len(),
                });
            };
            template
                .validate()
                .map_err(|source| ConfigError::InvalidTemplate { stage, source })?;
            Ok((*template).clone())
        };
        let t3 = pick(Stage::T3)?;
        let t7 = pick(Stage::T7)?;
        Ok(FollowUpService {
            store,
            clock,
            ids,
            config,
            t3,
            t7,
        })
    }

    /// The store.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// The clock.
    pub fn clock(&self) -> &C {
        &self.clock
    }

    /// The configuration.
    pub fn config(&self) -> &FollowUpConfig {
        &self.config
    }

    fn template(&self, stage: Stage) -> &Template {
        match stage {
            Stage::T3 => &self.t3,
            Stage::T7 => &self.t7,
        }
    }

    /// Processes one page of candidates in one transaction: claims up to `limit` candidates
    /// after the cursor `after`, re-plans each at the clock's current time, writes every
    /// processable stage, commits. Any error rolls the whole batch back.
    pub async fn run_batch(
        &self,
        run_id: Uuid,
        after: Option<Uuid>,
        limit: usize,
    ) -> Result<BatchReport, BatchError> {
        self.batch(run_id, || after, limit, |_| {}).await
    }

    /// [`FollowUpService::run_batch`] with the cursor read right before the claim (`after`)
    /// and the claim reported right after it (`claimed`), before the batch is processed: how
    /// concurrent batches of one pass share a cursor.
    async fn batch(
        &self,
        run_id: Uuid,
        after: impl FnOnce() -> Option<Uuid>,
        limit: usize,
        claimed: impl FnOnce(&BatchReport),
    ) -> Result<BatchReport, BatchError> {
        let now = self.clock.now();
        let mut tx = self.store.begin().await?;
        let candidates = tx.claim_due(now, after(), limit).await?;
        let mut report = BatchReport {
            claimed: candidates.len(),
            last_lead_id: candidates.iter().map(|c| c.lead_id).max(),
            ..BatchReport::default()
        };
        claimed(&report);
        for candidate in candidates {
            let Plan::Process { stage, outcome } = plan(&candidate, now) else {
                continue;
            };
            let processed = self.process(run_id, candidate, stage, outcome, now)?;
            match (processed.record.is_sent(), stage) {
                (true, Stage::T3) => report.t3_sent += 1,
                (true, Stage::T7) => report.t7_sent += 1,
                (false, _) => report.skipped += 1,
            }
            tx.record(processed).await?;
        }
        tx.commit().await?;
        Ok(report)
    }

    /// Builds everything one processed stage writes.
    fn process(
        &self,
        run_id: Uuid,
        mut candidate: Candidate,
        stage: Stage,
        outcome: Outcome,
        now: OffsetDateTime,
    ) -> Result<ProcessedFollowUp, BatchError> {
        let snapshot = candidate.clone();
        let record = apply_outcome(&mut candidate, stage, outcome, now)?;
        let mail = match outcome {
            Outcome::Send => Some(self.mail(&snapshot, stage, now)?),
            Outcome::Skip(_) => None,
        };
        let activity = activity(self.ids.new_id(), run_id, &snapshot, &record, mail.as_ref());
        let event = stage_event(
            self.ids.new_id(),
            snapshot.lead_id,
            snapshot.version,
            snapshot.territory,
            &record,
        );
        Ok(ProcessedFollowUp {
            lead_id: snapshot.lead_id,
            territory: snapshot.territory,
            record,
            activity,
            mail,
            events: vec![event],
        })
    }

    fn mail(
        &self,
        candidate: &Candidate,
        stage: Stage,
        now: OffsetDateTime,
    ) -> Result<OutgoingMail, BatchError> {
        let territory = Territory::get(candidate.territory);
        let url = UnsubscribeToken::url(
            self.config.unsubscribe_base_url.trim(),
            candidate.lead_id,
            &self.config.unsubscribe_secret,
        );
        let vars = personalise(candidate, stage, territory, now, &url);
        let rendered =
            render(self.template(stage), &vars).map_err(|source| BatchError::Render {
                lead_id: candidate.lead_id,
                stage,
                source,
            })?;
        Ok(OutgoingMail {
            id: self.ids.new_id(),
            lead_id: candidate.lead_id,
            territory: candidate.territory,
            stage,
            // `plan` only sends when there is an address.
            to: candidate.mail_address().unwrap_or_default().to_owned(),
            subject: rendered.subject,
            html: rendered.html,
            text: rendered.text,
            unsubscribe_url: url,
            queued_at: now,
        })
    }

    /// Runs until nothing is processable: walks all candidates page by page (one transaction
    /// per page, up to [`FollowUpConfig::concurrency`] pages in flight), and repeats the walk
    /// while it processed anything — a lead whose T+3 was processed may have its T+7 due as
    /// well. Running again right after changes nothing.
    ///
    /// The pages in flight share one cursor: a page's claim starts after the greatest lead id
    /// claimed so far and skips the rows other pages hold (`SKIP LOCKED`), so pages are disjoint
    /// and nobody waits. A failed page stops the walk: the pages in flight still commit (and
    /// count), no new page starts.
    ///
    /// Returns the run report and its `lead.followup.processed.v1` event, which the caller
    /// writes to the outbox (see the type's docs).
    pub async fn run(&self, run_id: Uuid) -> Result<(RunReport, CloudEvent), RunError> {
        let report = Mutex::new(RunReport::new(run_id, self.clock.now()));
        let failure: Mutex<Option<BatchError>> = Mutex::new(None);
        loop {
            let pass = Pass::default();
            let walkers =
                (0..self.config.concurrency).map(|_| self.walk(run_id, &pass, &report, &failure));
            futures_util::future::join_all(walkers).await;
            let mut report = *lock(&report);
            report.finished_at = self.clock.now();
            if let Some(source) = lock(&failure).take() {
                return Err(RunError { report, source });
            }
            if pass.processed.load(Ordering::Relaxed) == 0 {
                let event = processed_event(&report, self.ids.new_id());
                return Ok((report, event));
            }
        }
    }

    /// One walker of a pass: pages from the shared cursor until the pass is exhausted or a
    /// page failed.
    async fn walk(
        &self,
        run_id: Uuid,
        pass: &Pass,
        report: &Mutex<RunReport>,
        failure: &Mutex<Option<BatchError>>,
    ) {
        let limit = self.config.batch_size;
        while !pass.exhausted.load(Ordering::Relaxed) && lock(failure).is_none() {
            let batch = self
                .batch(
                    run_id,
                    || *lock(&pass.cursor),
                    limit,
                    |claimed| {
                        let mut cursor = lock(&pass.cursor);
                        *cursor = (*cursor).max(claimed.last_lead_id);
                        if claimed.claimed < limit {
                            pass.exhausted.store(true, Ordering::Relaxed);
                        }
                    },
                )
                .await;
            match batch {
                Ok(batch) => {
                    let mut report = lock(report);
                    report.t3_count += batch.t3_sent;
                    report.t7_count += batch.t7_sent;
                    report.skipped_count += batch.skipped;
                    pass.processed
                        .fetch_add(u64::from(batch.processed()), Ordering::Relaxed);
                }
                Err(error) => {
                    lock(failure).get_or_insert(error);
                    return;
                }
            }
        }
    }
}

/// The shared state of one walk over the candidates.
#[derive(Default)]
struct Pass {
    /// The greatest lead id claimed so far (the next page's claim starts after it).
    cursor: Mutex<Option<Uuid>>,
    /// A claim came back short: no unclaimed candidate is left after the cursor.
    exhausted: AtomicBool,
    /// Follow-ups processed in this pass.
    processed: AtomicU64,
}

/// Locks a mutex that is never held across an await nor while panicking code runs.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The timeline entry of a processed stage (written by the `system` user).
fn activity(
    id: Uuid,
    run_id: Uuid,
    candidate: &Candidate,
    record: &FollowUpRecord,
    mail: Option<&OutgoingMail>,
) -> Activity {
    let description = match record.reason {
        None => format!(
            "Follow-up {} gesendet an {}",
            record.stage.label(),
            mail.map_or("", |m| m.to.as_str())
        ),
        Some(reason) => format!(
            "Follow-up {} übersprungen: {}",
            record.stage.label(),
            reason.label()
        ),
    };
    let mut metadata = serde_json::json!({
        "stage": record.stage.as_str(),
        "status": record.status.as_str(),
        "runId": run_id,
    });
    if let Some(reason) = record.reason {
        metadata["reason"] = reason.as_str().into();
    }
    if let Some(mail) = mail {
        metadata["mailId"] = mail.id.to_string().into();
    }
    Activity::system(
        id,
        candidate.lead_id,
        record.status.activity_type(),
        record.processed_at,
        Actor::system().user_id().clone(),
        Some(description),
        metadata,
    )
}
