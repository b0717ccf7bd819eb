//! Territories, country resolution and the business calendar of FreshPlan Leads (SPEC §1).
//!
//! A territory is a *data room*, not a sales area: it fixes currency, VAT, language, time zone
//! and legal footer, and it separates German from Swiss data. This crate is pure — no I/O, no
//! clock, no runtime — so every answer is a function of its arguments:
//!
//! - [`Territory`]: the static data of `DE` and `CH` ([`Territory::get`], [`Territory::all`]).
//! - Country resolution: [`normalise_country_code`], [`is_valid_country_code`] and
//!   [`territory_for_country`] (`CH`, `LI` → `CH`; every other ISO 3166-1 alpha-2 code → `DE`;
//!   anything else is an error, never a fallback).
//! - The business calendar: [`easter_sunday`], [`holidays`], [`is_holiday`],
//!   [`is_business_day`] (Monday–Friday without nationwide public holidays).
//! - Local time and business hours (08:00 inclusive to 18:00 exclusive, local time in the
//!   territory's zone): [`to_local`], [`local_date`], [`start_of_local_day`],
//!   [`in_business_hours`], [`next_business_slot`].
//!
//! ```
//! use freshplan_territory::{Territory, TerritoryId, territory_for_country};
//!
//! let id = territory_for_country("li").unwrap();
//! assert_eq!(id, TerritoryId::Ch);
//! assert_eq!(Territory::get(id).currency_code, "CHF");
//! assert!(territory_for_country("XX").is_err());
//! ```
//!
//! Time zones come from the IANA database compiled into `time-tz`, which holds the transitions
//! up to the year 2099; later instants keep the last offset (no DST).
//!
//! The `testing` feature exports proptest strategies in the module `testing`.

mod calendar;
mod country;
mod hours;
mod territory;
#[cfg(any(test, feature = "testing"))]
pub mod testing;

pub use calendar::{easter_sunday, holidays, is_business_day, is_holiday};
pub use country::{
    CountryError, country_codes, is_valid_country_code, normalise_country_code,
    territory_for_country,
};
pub use freshplan_kernel::TerritoryId;
pub use hours::{in_business_hours, local_date, next_business_slot, start_of_local_day, to_local};
pub use territory::Territory;
