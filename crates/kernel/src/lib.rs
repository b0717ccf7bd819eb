//! Shared domain vocabulary of FreshPlan Leads.
//!
//! Everything here is pure: no I/O, no runtime. The other domain crates (`territory`, `leads`,
//! `followup`) and every adapter speak these types.
//!
//! ```
//! use freshplan_kernel::{Actor, Role, TerritoryId, UserId};
//!
//! let rep = Actor::new(UserId::parse("rep-1").unwrap(), [Role::Sales], [TerritoryId::De]);
//! assert!(rep.has_role(Role::Sales));
//! assert!(rep.works_in(TerritoryId::De));
//! assert!(!rep.works_in(TerritoryId::Ch));
//! ```

mod actor;
mod clock;

mod ids;
mod territory_id;
#[cfg(feature = "testing")]
pub mod testing;

pub use actor::{Actor, ActorError, Role, RoleSet, UserId};
pub use clock::{Clock, FixedClock, SystemClock};
/// CloudEvents envelope and idempotency keys (SPEC §7.1).
pub mod event;
pub use event::{CloudEvent, EventError, ExtensionName, KeyBasis, idempotency_key};
pub use ids::{IdGenerator, UuidV7Generator};
pub mod metrics;
pub use territory_id::{TerritoryId, UnknownTerritory};

#[cfg(feature = "mocks")]
pub use clock::MockClock;
#[cfg(feature = "mocks")]
pub use ids::MockIdGenerator;

/// A point in time, always UTC in the domain.
pub type Timestamp = time::OffsetDateTime;
