//! Follow-up automation of FreshPlan Leads (SPEC §6–§8): the T+3 sample offer and the T+7
//! bulk-order offer, planned, rendered and recorded exactly once per lead and stage.
//!
//! Pure domain: no I/O, no runtime. Adapters implement the ports in [`port`]; the app drives
//! [`FollowUpService`] from its scheduler.
//!
//! | module | what |
//! |---|---|
//! | [`stage`] | `Stage`, `FollowUpStatus`, `SkipReason`, `FollowUpRecord` |
//! | [`plan`](mod@plan) | `Candidate`, `due_at`, `send_at`, `plan`, `apply_outcome` (exactly-once) |
//! | [`offer`] | sample and bulk offers by business type, month and territory |
//! | [`template`] | strict templates, `render`, `personalise`, `default_templates` |
//! | [`unsubscribe`] | HMAC-signed unsubscribe tokens, secret checks |
//! | [`event`] | `lead.followup.*` CloudEvents, `RunReport` |
//! | [`cockpit`] | cockpit figures over a snapshot, `Scope` by actor |
//! | [`port`] | `FollowUpStore` / `FollowUpTx` unit of work |
//! | [`service`] | `FollowUpService`, `FollowUpConfig` |
//! | `testing` (feature) | in-memory store, proptest strategies, `block_on` |
//!
//! # Example
//!
//! A run on the in-memory store (feature `testing`): a lead registered on Monday gets its T+3
//! mail on Thursday; running again changes nothing.
//!
//! ```
//! # #[cfg(feature = "testing")] {
//! use freshplan_followup::plan::Candidate;
//! use freshplan_followup::service::{FollowUpConfig, FollowUpService};
//! use freshplan_followup::testing::{block_on, InMemoryFollowUpStore};
//! use freshplan_kernel::{testing::SequentialIds, FixedClock, TerritoryId};
//! use freshplan_leads::{model::BusinessType, status::LeadStatus};
//! use time::macros::datetime;
//! use uuid::Uuid;
//!
//! let lead = Candidate {
//!     lead_id: Uuid::from_u128(1),
//!     version: 1,
//!     territory: TerritoryId::De,
//!     status: LeadStatus::Registered,
//!     clock_stopped: false,
//!     registered_at: datetime!(2026-03-02 09:00 UTC), // Monday, 10:00 in Berlin
//!     email: Some("kueche@gasthaus-adler.de".into()),
//!     email_consent: true,
//!     last_meaningful_contact_at: None,
//!     business_type: Some(BusinessType::Restaurant),
//!     company_name: "Gasthaus Adler".into(),
//!     contact_person: Some("Anna Berger".into()),
//!     t3: None,
//!     t7: None,
//! };
//! let store = InMemoryFollowUpStore::with_candidates([lead]);
//! let clock = FixedClock::new(datetime!(2026-03-05 09:00 UTC)); // Thursday, 10:00 in Berlin
//! let config = FollowUpConfig::new("https://crm.example/unsubscribe", b"a-private-secret-of-32-bytes-or-more".to_vec());
//! let service = FollowUpService::new(store.clone(), clock, SequentialIds::default(), config).unwrap();
//!
//! let (report, processed) = block_on(service.run(Uuid::from_u128(99))).unwrap();
//! assert_eq!((report.t3_count, report.t7_count, report.skipped_count), (1, 0, 0));
//! assert_eq!(processed.event_type, "lead.followup.processed.v1");
//! store.append_event(processed); // the caller writes the run's event to the outbox
//!
//! let mail = &store.mails()[0];
//! assert_eq!(mail.to, "kueche@gasthaus-adler.de");
//! assert!(mail.text.starts_with("Guten Tag Anna Berger,"));
//! assert!(mail.text.contains("https://crm.example/unsubscribe?token="));
//!
//! let (again, _) = block_on(service.run(Uuid::from_u128(100))).unwrap();
//! assert_eq!(again.t3_count + again.t7_count + again.skipped_count, 0);
//! assert_eq!(store.mails().len(), 1);
//! # }
//! ```

pub mod cockpit;
pub mod event;
pub mod offer;
pub mod plan;
pub mod port;
pub mod service;
pub mod stage;
pub mod template;
pub mod unsubscribe;

#[cfg(any(test, feature = "testing"))]
pub mod testing;

#[cfg(test)]
mod service_tests;

pub use cockpit::{CockpitRow, FollowUpFigures, Scope, figures};
pub use event::{RunReport, processed_event};
pub use plan::{ApplyError, Candidate, Outcome, Plan, apply_outcome, due_at, plan, send_at};
pub use port::{FollowUpStore, FollowUpTx, OutgoingMail, ProcessedFollowUp, StoreError};
pub use service::{
    BatchError, BatchReport, ConfigError, FollowUpConfig, FollowUpService, RunError,
};
pub use stage::{FollowUpRecord, FollowUpStatus, SkipReason, Stage};
pub use template::{
    RenderError, RenderedMail, Template, Vars, default_templates, personalise, render,
};
pub use unsubscribe::{SecretError, TokenError, UnsubscribeToken, validate_secret};

#[cfg(feature = "mocks")]
pub use port::{MockFollowUpStore, MockFollowUpTx};
