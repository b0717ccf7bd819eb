//! The lead domain of FreshPlan Leads (SPEC §2, §4, §5, §7.2): the Lead aggregate with validated
//! fields, duplicate keys, the status machine, ownership and collaborators, protection 6/60/10 with
//! stop-the-clock, activities, the access policy, the events it emits, and `LeadService` over
//! ports. Pure: no I/O, no runtime.
//!
//! ```
//! # fn block_on<F: std::future::Future>(f: F) -> F::Output { freshplan_leads::memory::block_on(f) }
//! use freshplan_kernel::{Actor, FixedClock, Role, TerritoryId, UserId, testing::SequentialIds};
//! use freshplan_leads::{CreateLead, LeadData, LeadService, memory::InMemoryLeadStore, model::CompanyName};
//! use freshplan_leads::protection::ProtectionPolicy;
//! use time::macros::datetime;
//!
//! let store = InMemoryLeadStore::default();
//! let service = LeadService::new(store.clone(), FixedClock::new(datetime!(2026-03-02 09:00 UTC)),
//!                                SequentialIds::default(), ProtectionPolicy::default());
//! let rep = Actor::new(UserId::parse("rep-1").unwrap(), [Role::Sales], [TerritoryId::De]);
//! let data = LeadData::new(CompanyName::parse("Gasthaus Zur Post GmbH").unwrap(), "DE").unwrap();
//! let (lead, replayed) = block_on(service.create(&rep, CreateLead { data, registered_at: None, idempotency: None })).unwrap();
//! assert!(!replayed);
//! assert_eq!(lead.owner.as_ref(), Some(rep.user_id()));
//! assert_eq!(store.events().len(), 1); // lead.created.v1, written with the lead
//! ```

pub mod access;
pub mod activity;
pub mod duplicates;
pub mod events;
pub mod import;
pub mod lead;
#[cfg(any(test, feature = "testing"))]
pub mod memory;
pub mod model;
pub mod personal;
pub mod ports;
pub mod protection;
pub mod service;
pub mod status;
#[cfg(any(test, feature = "testing"))]
pub mod testing;

pub use lead::{Lead, LeadData, LeadPatch};
pub use service::{CreateLead, LeadError, LeadService, LogActivity};
#[cfg(test)]
mod tests;
