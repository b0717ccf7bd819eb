//! `LeadService`: the use cases of SPEC §4–§5 over the ports.

use time::OffsetDateTime;
use uuid::Uuid;

use freshplan_kernel::{Actor, Clock, IdGenerator, UserId};

use crate::access::{self, Action, Decision, LeadFacts};
use crate::activity::{Activity, ActivityType, validate_description};
use crate::duplicates::DuplicateKind;
use crate::events::LeadEvent;
use crate::import::{ImportCandidate, InFileKeys, RowOutcome, RowReport};
use crate::lead::{ChangeError, Changes, Lead, LeadData, LeadPatch};
use crate::model::FieldError;
use crate::personal::{
    AuditAction, AuditEntry, ConsentChange, ErasureReason, PersonalData, RetentionPolicy,
    RetentionReport,
};
use crate::ports::{IdempotencyRecord, LeadQuery, LeadStore, LeadTx, Page, StoreError, WriteError};
use crate::protection::ProtectionPolicy;
use crate::status::TransitionError;

/// Why a use case failed. The app maps each variant to one HTTP status.
#[derive(Debug, thiserror::Error)]
pub enum LeadError {
    /// Missing or not visible to the caller (404).
    #[error("lead not found")]
    NotFound,
    /// The caller's role never allows this (403).
    #[error("forbidden: {0}")]
    Forbidden(&'static str),
    /// Invalid values (422).
    #[error("validation failed")]
    Validation(Vec<FieldError>),
    /// A duplicate (409); `existing` names the other lead only when the caller may read it.
    #[error("duplicate lead")]
    Duplicate {
        /// Which rule matched.
        kind: DuplicateKind,
        /// The other lead, when visible.
        existing: Option<Box<Lead>>,
    },
    /// The status machine refused (422).
    #[error(transparent)]
    Transition(#[from] TransitionError),
    /// A state conflict such as stopping a stopped clock (409).
    #[error("{0}")]
    Conflict(&'static str),
    /// `If-Match` did not match (412).
    #[error("the lead has changed (current version {current})")]
    PreconditionFailed {
        /// The current version.
        current: i64,
    },
    /// The same idempotency key was used with another body (422).
    #[error("the idempotency key was already used with a different request")]
    IdempotencyMismatch,
    /// Infrastructure failure (500/503).
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<ChangeError> for LeadError {
    fn from(e: ChangeError) -> Self {
        match e {
            ChangeError::Validation(f) => LeadError::Validation(vec![f]),
            ChangeError::Transition(t) => LeadError::Transition(t),
            ChangeError::ReopenForbidden => {
                LeadError::Forbidden("only managers and admins may reopen an expired lead")
            }
            ChangeError::Clock(m) => LeadError::Conflict(m),
            ChangeError::Deleted => LeadError::NotFound,
        }
    }
}

/// A request to create a lead.
#[derive(Debug, Clone)]
pub struct CreateLead {
    /// The data.
    pub data: LeadData,
    /// Backdated registration (admins only).
    pub registered_at: Option<OffsetDateTime>,
    /// `Idempotency-Key` and a hash of the body.
    pub idempotency: Option<(String, String)>,
}

/// A request to log an activity.
#[derive(Debug, Clone)]
pub struct LogActivity {
    /// The type (users may log only the eight user types).
    pub activity_type: ActivityType,
    /// When it happened (default now; not in the future).
    pub occurred_at: Option<OffsetDateTime>,
    /// ≤ 2000 characters.
    pub description: Option<String>,
}

/// The outcome of a sweep batch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SweepReport {
    /// Leads examined.
    pub examined: u32,
    /// Automatic transitions applied.
    pub transitions: u32,
}

/// The conflict an erased lead answers to every change (it keeps only statistics now).
pub const ERASED_LEAD: &str = "the lead's personal data was erased; it can no longer change";

/// How long an idempotency key replays (SPEC §9).
pub const IDEMPOTENCY_WINDOW: time::Duration = time::Duration::hours(24);

/// The lead use cases over a store, a clock and an id generator.
#[derive(Debug, Clone)]
pub struct LeadService<S, C, I> {
    store: S,
    clock: C,
    ids: I,
    policy: ProtectionPolicy,
}

fn facts(lead: &Lead) -> LeadFacts<'_> {
    LeadFacts {
        territory: lead.territory,
        owner: lead.owner.as_ref(),
        collaborators: &lead.collaborators,
    }
}

fn check(actor: &Actor, lead: &Lead, action: Action, why: &'static str) -> Result<(), LeadError> {
    match access::decide(actor, &facts(lead), action) {
        Decision::Allow => Ok(()),
        Decision::NotFound => Err(LeadError::NotFound),
        Decision::Forbidden => Err(LeadError::Forbidden(why)),
    }
}

fn check_version(lead: &Lead, expected: Option<i64>) -> Result<(), LeadError> {
    match expected {
        Some(v) if v != lead.version => Err(LeadError::PreconditionFailed {
            current: lead.version,
        }),
        _ => Ok(()),
    }
}

impl<S: LeadStore, C: Clock, I: IdGenerator> LeadService<S, C, I> {
    /// A service with the given adapters and protection policy.
    pub fn new(store: S, clock: C, ids: I, policy: ProtectionPolicy) -> Self {
        LeadService {
            store,
            clock,
            ids,
            policy,
        }
    }

    /// The protection policy.
    pub fn policy(&self) -> &ProtectionPolicy {
        &self.policy
    }

    /// The store (for adapters that need it, e.g. read models).
    pub fn store(&self) -> &S {
        &self.store
    }

    /// Writes the timeline entries and events of a change into the transaction.
    async fn write_changes(
        &self,
        tx: &mut S::Tx,
        lead: &Lead,
        actor: &Actor,
        changes: Changes,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        for entry in changes.timeline {
            let activity = Activity::system(
                self.ids.new_id(),
                lead.id,
                entry.activity_type,
                now,
                actor.user_id().clone(),
                entry.description,
                entry.metadata,
            );
            tx.insert_activity(&activity).await?;
        }
        for (version, event) in changes.events {
            let ce = event.to_cloud_event(self.ids.new_id(), lead, version, now);
            tx.append_event(&ce).await?;
        }
        if let Some(source) = changes.consent {
            tx.insert_consent_change(&ConsentChange {
                id: self.ids.new_id(),
                lead_id: lead.id,
                consent: lead.data.email_consent,
                source,
                changed_at: now,
                changed_by: actor.user_id().clone(),
            })
            .await?;
        }
        Ok(())
    }

    async fn duplicate_error(
        &self,
        tx: &mut S::Tx,
        actor: &Actor,
        lead: &Lead,
        kind: Option<DuplicateKind>,
    ) -> Result<LeadError, StoreError> {
        let keys = lead.data.duplicate_keys();
        let visible = tx.find_duplicate(&keys, Some(lead.id)).await?;
        let visible = visible.filter(|other| access::can_read(actor, &facts(other)));
        let kind = kind
            .or_else(|| {
                visible
                    .as_ref()
                    .and_then(|o| keys.collides_with(&o.data.duplicate_keys()))
            })
            .unwrap_or(DuplicateKind::Company);
        Ok(LeadError::Duplicate {
            kind,
            existing: visible.map(Box::new),
        })
    }

    /// Creates a lead owned by the caller (SPEC §4.4, §9). Returns the lead and whether the
    /// response is a replay of an earlier request with the same idempotency key.
    #[must_use = "the created lead is the response"]
    pub async fn create(&self, actor: &Actor, cmd: CreateLead) -> Result<(Lead, bool), LeadError> {
        let now = self.clock.now();
        let territory = cmd
            .data
            .territory()
            .map_err(|f| LeadError::Validation(vec![f]))?;
        if !access::can_create(actor, territory) {
            return Err(LeadError::Forbidden(
                "you cannot create leads in this territory",
            ));
        }
        if cmd.registered_at.is_some() && !access::can_backdate(actor) {
            return Err(LeadError::Forbidden("only admins may set registeredAt"));
        }
        let mut tx = self.store.begin(actor).await?;
        if let Some((key, hash)) = &cmd.idempotency
            && let Some(rec) = tx.idempotency_get(key).await?
            && now - rec.created_at < IDEMPOTENCY_WINDOW
        {
            if &rec.request_hash != hash {
                return Err(LeadError::IdempotencyMismatch);
            }
            let lead = tx.get(rec.lead_id).await?.ok_or(LeadError::NotFound)?;
            return Ok((lead, true));
        }
        let (lead, changes) =
            Lead::register(self.ids.new_id(), cmd.data, actor, cmd.registered_at, now)?;
        if tx
            .find_duplicate(&lead.data.duplicate_keys(), None)
            .await?
            .is_some()
        {
            return Err(self.duplicate_error(&mut tx, actor, &lead, None).await?);
        }
        match tx.insert(&lead).await {
            Ok(()) => {}
            Err(WriteError::Duplicate(kind)) => {
                return Err(LeadError::Duplicate {
                    kind,
                    existing: None,
                });
            }
            Err(WriteError::Store(e)) => return Err(e.into()),
            Err(
                WriteError::VersionConflict | WriteError::IdempotencyKeyTaken | WriteError::Busy,
            ) => {
                return Err(LeadError::Conflict("concurrent change, retry"));
            }
        }
        if let Some((key, hash)) = &cmd.idempotency {
            let rec = IdempotencyRecord {
                request_hash: hash.clone(),
                lead_id: lead.id,
                created_at: now,
            };
            match tx.idempotency_put(key, &rec).await {
                Ok(()) => {}
                Err(WriteError::IdempotencyKeyTaken) => {
                    return Err(LeadError::Conflict(
                        "a request with this idempotency key is in progress; retry",
                    ));
                }
                Err(WriteError::Store(e)) => return Err(e.into()),
                Err(WriteError::Duplicate(kind)) => {
                    return Err(LeadError::Duplicate {
                        kind,
                        existing: None,
                    });
                }
                Err(WriteError::VersionConflict | WriteError::Busy) => {
                    return Err(LeadError::Conflict("concurrent change, retry"));
                }
            }
        }
        self.write_changes(&mut tx, &lead, actor, changes, now)
            .await?;
        tx.commit().await?;
        Ok((lead, false))
    }

    /// Applies the create rules to a batch of import rows in one transaction and returns it
    /// uncommitted with each row's outcome, so the caller records its own bookkeeping (progress,
    /// report) in the same transaction and commits both together. Each row is created exactly as
    /// [`LeadService::create`] would create it ([`Lead::import`]); per row: the territory must be
    /// one the importer may create in, only admins backdate, only managers and admins name an
    /// owner; a row whose keys an existing lead holds is a duplicate (naming the lead only when the
    /// importer may read it), else one whose keys an earlier row of the file holds
    /// (`in_file`). With `dry_run` nothing is written; the transaction only read.
    ///
    /// A lead that appeared between the duplicate check and the insert (a concurrent create)
    /// fails the whole batch with [`LeadError::Duplicate`]; the caller retries (the check then
    /// sees it).
    pub async fn import_batch(
        &self,
        actor: &Actor,
        import_id: Uuid,
        rows: Vec<ImportCandidate>,
        in_file: &InFileKeys,
        dry_run: bool,
    ) -> Result<(S::Tx, Vec<RowReport>), LeadError> {
        if !access::may_import(actor) {
            return Err(LeadError::Forbidden("your role cannot create leads"));
        }
        let now = self.clock.now();
        let mut tx = self.store.begin(actor).await?;
        let mut reports = Vec::with_capacity(rows.len());
        let mut accepted = Vec::with_capacity(rows.len());
        for row in rows {
            let mut errors = Vec::new();
            match row.data.territory() {
                Ok(t) if !access::can_create(actor, t) => errors.push(FieldError::new(
                    "countryCode",
                    "you cannot create leads in this territory",
                )),
                Ok(_) => {}
                Err(e) => errors.push(e),
            }
            if row.registered_at.is_some() && !access::can_backdate(actor) {
                errors.push(FieldError::new(
                    "registeredAt",
                    "only admins may set registeredAt",
                ));
            }
            if row.owner.is_some() && !access::can_assign_owner(actor) {
                errors.push(FieldError::new(
                    "ownerUserId",
                    "only managers and admins may name an owner",
                ));
            }
            if errors.is_empty() {
                match Lead::import(
                    self.ids.new_id(),
                    row.data,
                    actor,
                    row.owner,
                    row.registered_at,
                    now,
                    (import_id, row.line),
                ) {
                    Ok(created) => {
                        accepted.push((row.line, created));
                        continue;
                    }
                    Err(e) => match LeadError::from(e) {
                        LeadError::Validation(mut v) => errors.append(&mut v),
                        other => return Err(other),
                    },
                }
            }
            reports.push(RowReport {
                line: row.line,
                outcome: RowOutcome::Refused { errors },
            });
        }
        let keys: Vec<_> = accepted
            .iter()
            .map(|(_, (lead, _))| lead.data.duplicate_keys())
            .collect();
        let taken = tx.taken_keys(&keys).await?;
        let taken_ids: Vec<Uuid> = taken.iter().flatten().map(|(id, _)| *id).collect();
        let readable: std::collections::HashSet<Uuid> = tx
            .read_many(&taken_ids)
            .await?
            .iter()
            .filter(|other| access::can_read(actor, &facts(other)))
            .map(|other| other.id)
            .collect();
        let mut created = Vec::with_capacity(accepted.len());
        for (((line, (lead, changes)), keys), taken) in accepted.into_iter().zip(&keys).zip(taken) {
            let outcome = if let Some((id, kind)) = taken {
                RowOutcome::Duplicate {
                    kind,
                    existing: readable.contains(&id).then_some(id),
                    other_line: None,
                }
            } else if let Some((other, kind)) = in_file.earlier(line, keys) {
                RowOutcome::Duplicate {
                    kind,
                    existing: None,
                    other_line: Some(other),
                }
            } else {
                let outcome = RowOutcome::Created { lead_id: lead.id };
                created.push((lead, changes));
                outcome
            };
            reports.push(RowReport { line, outcome });
        }
        reports.sort_by_key(|r| r.line);
        if !dry_run && !created.is_empty() {
            let leads: Vec<Lead> = created.iter().map(|(lead, _)| lead.clone()).collect();
            match tx.insert_many(&leads).await {
                Ok(()) => {}
                Err(WriteError::Duplicate(kind)) => {
                    return Err(LeadError::Duplicate {
                        kind,
                        existing: None,
                    });
                }
                Err(WriteError::Store(e)) => return Err(e.into()),
                Err(
                    WriteError::VersionConflict
                    | WriteError::IdempotencyKeyTaken
                    | WriteError::Busy,
                ) => return Err(LeadError::Conflict("concurrent change, retry")),
            }
            for (lead, changes) in created {
                self.write_changes(&mut tx, &lead, actor, changes, now)
                    .await?;
            }
        }
        Ok((tx, reports))
    }

    /// A lead the caller may read; deleted leads answer `NotFound`.
    pub async fn get(&self, actor: &Actor, id: Uuid) -> Result<Lead, LeadError> {
        let mut tx = self.store.begin(actor).await?;
        let lead = tx
            .read(id)
            .await?
            .filter(|l| !l.is_deleted())
            .ok_or(LeadError::NotFound)?;
        check(actor, &lead, Action::Read, "")?;
        tx.commit().await?;
        Ok(lead)
    }

    /// The leads the caller may read that match the query.
    pub async fn list(&self, actor: &Actor, query: &LeadQuery) -> Result<Page<Lead>, LeadError> {
        if !access::may_list_leads(actor) {
            return Err(LeadError::Forbidden("your role cannot read leads"));
        }
        if query.include_deleted && !actor.has_role(freshplan_kernel::Role::Admin) {
            return Err(LeadError::Forbidden("only admins may list deleted leads"));
        }
        if !(1..=200).contains(&query.size) {
            return Err(LeadError::Validation(vec![FieldError::new(
                "size",
                "must be 1-200",
            )]));
        }
        let mut tx = self.store.begin_read(actor).await?;
        let page = tx.list(query).await?;
        tx.commit().await?;
        Ok(page)
    }

    /// Loads a lead for a change: visible, not deleted, allowed, and at the expected version.
    async fn load_for(
        &self,
        tx: &mut S::Tx,
        actor: &Actor,
        id: Uuid,
        action: Action,
        why: &'static str,
        expected: Option<i64>,
    ) -> Result<Lead, LeadError> {
        let lead = tx
            .get(id)
            .await?
            .filter(|l| !l.is_deleted())
            .ok_or(LeadError::NotFound)?;
        check(actor, &lead, action, why)?;
        if lead.erased_at.is_some() {
            return Err(LeadError::Conflict(ERASED_LEAD));
        }
        check_version(&lead, expected)?;
        Ok(lead)
    }

    /// Writes the lead's new state (a no-op when its version did not move).
    async fn update_row(tx: &mut S::Tx, lead: &Lead, old_version: i64) -> Result<(), LeadError> {
        if lead.version == old_version {
            return Ok(());
        }
        match tx.update(lead, old_version).await {
            Ok(()) => Ok(()),
            Err(WriteError::Duplicate(kind)) => Err(LeadError::Duplicate {
                kind,
                existing: None,
            }),
            Err(WriteError::VersionConflict) => Err(LeadError::PreconditionFailed {
                current: old_version + 1,
            }),
            Err(WriteError::IdempotencyKeyTaken | WriteError::Busy) => {
                Err(LeadError::Conflict("concurrent change, retry"))
            }
            Err(WriteError::Store(e)) => Err(e.into()),
        }
    }

    async fn save(
        &self,
        mut tx: S::Tx,
        actor: &Actor,
        lead: &Lead,
        old_version: i64,
        changes: Changes,
        now: OffsetDateTime,
    ) -> Result<(), LeadError> {
        Self::update_row(&mut tx, lead, old_version).await?;
        self.write_changes(&mut tx, lead, actor, changes, now)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Applies a merge patch (SPEC §9). `expected_version` is the `If-Match` version.
    pub async fn update(
        &self,
        actor: &Actor,
        id: Uuid,
        expected_version: Option<i64>,
        patch: LeadPatch,
    ) -> Result<Lead, LeadError> {
        let now = self.clock.now();
        let mut tx = self.store.begin(actor).await?;
        let mut lead = self
            .load_for(
                &mut tx,
                actor,
                id,
                Action::Update,
                "only the owner or a manager may change this lead",
                expected_version,
            )
            .await?;
        let old_version = lead.version;
        let old_keys = lead.data.duplicate_keys();
        if patch.collaborator_user_ids.is_some()
            && !(actor.has_role(freshplan_kernel::Role::Manager)
                || actor.has_role(freshplan_kernel::Role::Admin)
                || lead.owner.as_ref() == Some(actor.user_id()))
        {
            return Err(LeadError::Forbidden(
                "only the owner or a manager may change collaborators",
            ));
        }
        let changes = lead.apply_patch(patch, actor, now)?;
        if !actor.works_in(lead.territory) {
            return Err(LeadError::Forbidden(
                "you cannot move a lead into a territory you do not work in",
            ));
        }
        if lead.data.duplicate_keys() != old_keys
            && tx
                .find_duplicate(&lead.data.duplicate_keys(), Some(lead.id))
                .await?
                .is_some()
        {
            return Err(self.duplicate_error(&mut tx, actor, &lead, None).await?);
        }
        self.save(tx, actor, &lead, old_version, changes, now)
            .await?;
        Ok(lead)
    }

    /// The common shape of a single-lead command: load it as `actor` (visible, not deleted,
    /// allowed, at the expected version), apply `change`, and save the new state with its timeline
    /// entries and events in the same transaction.
    async fn change<F>(
        &self,
        actor: &Actor,
        id: Uuid,
        expected_version: Option<i64>,
        (action, why): (Action, &'static str),
        change: F,
    ) -> Result<Lead, LeadError>
    where
        F: FnOnce(&mut Lead, OffsetDateTime) -> Result<Changes, ChangeError> + Send,
    {
        let now = self.clock.now();
        let mut tx = self.store.begin(actor).await?;
        let mut lead = self
            .load_for(&mut tx, actor, id, action, why, expected_version)
            .await?;
        let old_version = lead.version;
        let changes = change(&mut lead, now)?;
        self.save(tx, actor, &lead, old_version, changes, now)
            .await?;
        Ok(lead)
    }

    /// Soft-deletes a lead (SPEC §4.6).
    pub async fn delete(
        &self,
        actor: &Actor,
        id: Uuid,
        expected_version: Option<i64>,
    ) -> Result<(), LeadError> {
        let why = (
            Action::Delete,
            "only the owner or a manager may delete this lead",
        );
        self.change(actor, id, expected_version, why, |lead, now| {
            lead.soft_delete(actor, now)
        })
        .await
        .map(|_| ())
    }

    /// Reassigns the owner (managers in their territories, admins).
    pub async fn reassign(
        &self,
        actor: &Actor,
        id: Uuid,
        expected_version: Option<i64>,
        new_owner: UserId,
    ) -> Result<Lead, LeadError> {
        let why = (
            Action::Reassign,
            "only managers and admins may reassign leads",
        );
        self.change(actor, id, expected_version, why, |lead, now| {
            lead.reassign(new_owner, actor, now)
        })
        .await
    }

    /// Stops the protection clock.
    pub async fn stop_clock(
        &self,
        actor: &Actor,
        id: Uuid,
        expected_version: Option<i64>,
        reason: &str,
    ) -> Result<Lead, LeadError> {
        let why = (
            Action::ManageProtection,
            "only managers and admins may stop the clock",
        );
        self.change(actor, id, expected_version, why, |lead, now| {
            lead.stop_clock(reason, actor, now)
        })
        .await
    }

    /// Resumes the protection clock.
    pub async fn resume_clock(
        &self,
        actor: &Actor,
        id: Uuid,
        expected_version: Option<i64>,
    ) -> Result<Lead, LeadError> {
        let why = (
            Action::ManageProtection,
            "only managers and admins may resume the clock",
        );
        self.change(actor, id, expected_version, why, |lead, now| {
            lead.resume_clock(actor, now)
        })
        .await
    }

    /// Logs a user activity (SPEC §5) and applies its effects.
    pub async fn log_activity(
        &self,
        actor: &Actor,
        id: Uuid,
        cmd: LogActivity,
    ) -> Result<(Activity, Lead), LeadError> {
        let now = self.clock.now();
        if !cmd.activity_type.is_user_loggable() {
            return Err(LeadError::Validation(vec![FieldError::new(
                "type",
                format!(
                    "{} is written by the system only",
                    cmd.activity_type.as_str()
                ),
            )]));
        }
        let occurred_at = cmd.occurred_at.unwrap_or(now);
        if occurred_at > now {
            return Err(LeadError::Validation(vec![FieldError::new(
                "occurredAt",
                "must not be in the future",
            )]));
        }
        let description = validate_description(cmd.description.as_deref())
            .map_err(|f| LeadError::Validation(vec![f]))?;
        let mut tx = self.store.begin(actor).await?;
        let mut lead = self
            .load_for(
                &mut tx,
                actor,
                id,
                Action::LogActivity,
                "your role cannot log activities on this lead",
                None,
            )
            .await?;
        let old_version = lead.version;
        let activity = Activity {
            id: self.ids.new_id(),
            lead_id: lead.id,
            activity_type: cmd.activity_type,
            occurred_at,
            description,
            user_id: actor.user_id().clone(),
            meaningful_contact: cmd.activity_type.is_meaningful_contact(),
            metadata: serde_json::json!({}),
            created_at: now,
        };
        let mut changes = lead.record_activity(cmd.activity_type, occurred_at, actor, now);
        tx.insert_activity(&activity).await?;
        changes.events.insert(
            0,
            (
                lead.version,
                LeadEvent::ActivityLogged(Box::new(activity.clone())),
            ),
        );
        self.save(tx, actor, &lead, old_version, changes, now)
            .await?;
        Ok((activity, lead))
    }

    /// A lead's timeline, newest first.
    pub async fn activities(
        &self,
        actor: &Actor,
        id: Uuid,
        page: u32,
        size: u32,
    ) -> Result<Page<Activity>, LeadError> {
        let mut tx = self.store.begin(actor).await?;
        let lead = tx
            .read(id)
            .await?
            .filter(|l| !l.is_deleted())
            .ok_or(LeadError::NotFound)?;
        check(actor, &lead, Action::Read, "")?;
        let page = tx.list_activities(id, page, size).await?;
        tx.commit().await?;
        Ok(page)
    }

    /// Withdraws a lead's email consent (the verified unsubscribe link), as the system.
    pub async fn withdraw_consent(&self, lead_id: Uuid) -> Result<Lead, LeadError> {
        let now = self.clock.now();
        let system = Actor::system();
        let mut tx = self.store.begin(&system).await?;
        let mut lead = tx.get(lead_id).await?.ok_or(LeadError::NotFound)?;
        let old_version = lead.version;
        let changes = lead.withdraw_consent(&system, now);
        self.save(tx, &system, &lead, old_version, changes, now)
            .await?;
        Ok(lead)
    }

    /// Everything stored about the lead's person (SPEC §13, DSGVO Art. 15/20): admins; managers
    /// for their territories. Deleted and erased leads too (what is stored is what counts). The
    /// export is recorded in the audit log in the same transaction, without personal data.
    pub async fn personal_data(&self, actor: &Actor, id: Uuid) -> Result<PersonalData, LeadError> {
        let now = self.clock.now();
        let mut tx = self.store.begin(actor).await?;
        let lead = tx.read(id).await?.ok_or(LeadError::NotFound)?;
        check(
            actor,
            &lead,
            Action::ExportPersonalData,
            "only admins, and managers for their territories, may export personal data",
        )?;
        let records = tx.personal_records(id).await?;
        tx.insert_audit(&AuditEntry {
            id: self.ids.new_id(),
            at: now,
            actor: actor.user_id().clone(),
            action: AuditAction::PersonalDataExported,
            lead_id: Some(lead.id),
            territory: Some(lead.territory),
            reason: None,
            leads_erased: 0,
            mail_bodies_erased: 0,
        })
        .await?;
        tx.commit().await?;
        Ok(PersonalData {
            exported_at: now,
            lead,
            records,
        })
    }

    /// Erases the lead's person everywhere in one transaction (SPEC §13, DSGVO Art. 17): admins
    /// only, at the expected version. Idempotent: an erased lead is answered as it is (no
    /// precondition applies, nothing changes). Refused with a conflict, never waited for and
    /// never half-done, while another transaction holds the lead (a follow-up run).
    pub async fn erase(
        &self,
        actor: &Actor,
        id: Uuid,
        expected_version: Option<i64>,
        reason: ErasureReason,
    ) -> Result<Lead, LeadError> {
        let now = self.clock.now();
        let mut tx = self.store.begin(actor).await?;
        // Allowed first (without a lock: a caller who may not erase never holds the row).
        let seen = tx.read(id).await?.ok_or(LeadError::NotFound)?;
        check(
            actor,
            &seen,
            Action::Erase,
            "only admins may erase personal data",
        )?;
        let mut lead = match tx.get_nowait(id).await {
            Ok(Some(lead)) => lead,
            Ok(None) => return Err(LeadError::NotFound),
            Err(WriteError::Busy) => {
                return Err(LeadError::Conflict(
                    "the lead is being processed (e.g. by a follow-up run); retry shortly",
                ));
            }
            Err(WriteError::Store(e)) => return Err(e.into()),
            Err(_) => return Err(LeadError::Conflict("concurrent change, retry")),
        };
        if lead.erased_at.is_some() {
            tx.commit().await?;
            return Ok(lead);
        }
        check_version(&lead, expected_version)?;
        self.erase_in(&mut tx, actor, &mut lead, reason, now)
            .await?;
        tx.insert_audit(&AuditEntry {
            id: self.ids.new_id(),
            at: now,
            actor: actor.user_id().clone(),
            action: AuditAction::LeadErased,
            lead_id: Some(lead.id),
            territory: Some(lead.territory),
            reason: Some(reason),
            leads_erased: 1,
            mail_bodies_erased: 0,
        })
        .await?;
        tx.commit().await?;
        Ok(lead)
    }

    /// The erasure of one locked lead inside a transaction: the lead row, the related records,
    /// the `ERASED` entry, the `lead.erased.v1` event and the consent change. Shared by
    /// [`LeadService::erase`] and retention.
    async fn erase_in(
        &self,
        tx: &mut S::Tx,
        actor: &Actor,
        lead: &mut Lead,
        reason: ErasureReason,
        now: OffsetDateTime,
    ) -> Result<(), LeadError> {
        let old_version = lead.version;
        let changes = lead.erase(reason, actor, now);
        Self::update_row(tx, lead, old_version).await?;
        tx.erase_related(lead.id, now).await?;
        self.write_changes(tx, lead, actor, changes, now).await?;
        Ok(())
    }

    /// One batch of retention as the system actor (SPEC §13): erases at most `limit` closed
    /// leads past `policy.closed_leads` (with the erasure's code path, reason `RETENTION`) and
    /// removes the bodies of at most `limit` old mails, in one short transaction that skips rows
    /// other transactions hold; records the batch in the audit log when it did anything.
    pub async fn retention_batch(
        &self,
        policy: &RetentionPolicy,
        limit: u32,
    ) -> Result<RetentionReport, LeadError> {
        let now = self.clock.now();
        let system = Actor::system();
        let mut tx = self.store.begin(&system).await?;
        let mut report = RetentionReport::default();
        if let Some(period) = policy.closed_leads {
            for mut lead in tx.due_for_retention(now - period, limit).await? {
                self.erase_in(&mut tx, &system, &mut lead, ErasureReason::Retention, now)
                    .await?;
                report.leads_erased += 1;
            }
        }
        if let Some(period) = policy.mail_bodies {
            report.mail_bodies_erased = tx.erase_mail_bodies(now - period, now, limit).await?;
        }
        if !report.is_empty() {
            tx.insert_audit(&AuditEntry {
                id: self.ids.new_id(),
                at: now,
                actor: system.user_id().clone(),
                action: AuditAction::RetentionRun,
                lead_id: None,
                territory: None,
                reason: Some(ErasureReason::Retention),
                leads_erased: report.leads_erased,
                mail_bodies_erased: report.mail_bodies_erased,
            })
            .await?;
        }
        tx.commit().await?;
        Ok(report)
    }

    /// Runs retention batches until one finds nothing more to do.
    pub async fn retention(
        &self,
        policy: &RetentionPolicy,
        batch: u32,
    ) -> Result<RetentionReport, LeadError> {
        let mut total = RetentionReport::default();
        loop {
            let r = self.retention_batch(policy, batch).await?;
            total.leads_erased += r.leads_erased;
            total.mail_bodies_erased += r.mail_bodies_erased;
            if r.leads_erased < batch && r.mail_bodies_erased < batch {
                return Ok(total);
            }
        }
    }

    /// The audit log of personal-data processing, newest first (admins).
    pub async fn audit_log(
        &self,
        actor: &Actor,
        page: u32,
        size: u32,
    ) -> Result<Page<AuditEntry>, LeadError> {
        if !actor.has_role(freshplan_kernel::Role::Admin) {
            return Err(LeadError::Forbidden("only admins may read the audit log"));
        }
        let mut tx = self.store.begin(actor).await?;
        let page = tx.list_audit(page, size).await?;
        tx.commit().await?;
        Ok(page)
    }

    /// One batch of the protection sweep as the system actor: every due lead gets all its due
    /// transitions, each with a timeline entry and an event, in one transaction.
    pub async fn sweep_batch(&self, limit: u32) -> Result<SweepReport, LeadError> {
        let now = self.clock.now();
        let system = Actor::system();
        let mut tx = self.store.begin(&system).await?;
        let due = tx.due_for_sweep(now, limit).await?;
        let mut report = SweepReport::default();
        for mut lead in due {
            report.examined += 1;
            let old_version = lead.version;
            let changes = lead.sweep(now, &self.policy);
            if changes.is_empty() {
                continue;
            }
            report.transitions += u32::try_from(lead.version - old_version).unwrap_or(0);
            match tx.update(&lead, old_version).await {
                Ok(()) => {}
                Err(WriteError::Store(e)) => return Err(e.into()),
                Err(_) => {
                    return Err(LeadError::Conflict(
                        "concurrent change during the sweep, retry",
                    ));
                }
            }
            self.write_changes(&mut tx, &lead, &system, changes, now)
                .await?;
        }
        tx.commit().await?;
        Ok(report)
    }

    /// Runs the sweep until no due lead is left.
    pub async fn sweep(&self, batch: u32) -> Result<SweepReport, LeadError> {
        let mut total = SweepReport::default();
        loop {
            let r = self.sweep_batch(batch).await?;
            total.examined += r.examined;
            total.transitions += r.transitions;
            if r.transitions == 0 || r.examined < batch {
                return Ok(total);
            }
        }
    }
}
