//! Proptest strategies for embedders (feature `testing`).
//!
//! ```
//! use freshplan_territory::testing::{instant, territory_id};
//! use freshplan_territory::{in_business_hours, next_business_slot};
//! use proptest::prelude::*;
//!
//! proptest!(|(territory in territory_id(), t in instant())| {
//!     prop_assert!(in_business_hours(territory, next_business_slot(territory, t)));
//! });
//! ```

use proptest::prelude::*;
use time::{Date, Duration, Month, OffsetDateTime, PrimitiveDateTime, Time, UtcOffset};

use crate::TerritoryId;
use crate::country::COUNTRY_CODES;

/// Any territory id (`DE`, `CH`).
pub fn territory_id() -> impl Strategy<Value = TerritoryId> {
    freshplan_kernel::testing::territory_id()
}

/// A valid, normalised ISO 3166-1 alpha-2 code. `CH`, `LI`, `DE` and `AT` are drawn often, so
/// both territories show up in small samples; every other assigned code is possible.
pub fn country_code() -> impl Strategy<Value = String> {
    prop_oneof![
        1 => proptest::sample::select(&["CH", "LI", "DE", "AT"][..]),
        2 => proptest::sample::select(&COUNTRY_CODES[..]),
    ]
    .prop_map(str::to_owned)
}

/// An instant in UTC between 2000-01-01 and 2050-01-01 (exclusive).
///
/// Half are uniform to the nanosecond; the other half sit near the edges of the business
/// calendar: on whole minutes at and around 08:00 and 18:00 local time, on the weekends of
/// daylight-saving changes, around Easter, and in the days around Christmas and New Year.
pub fn instant() -> impl Strategy<Value = OffsetDateTime> {
    prop_oneof![uniform_instant(), edge_instant()]
}

const START: i64 = 946_684_800; // 2000-01-01T00:00:00Z
const END: i64 = 2_524_608_000; // 2050-01-01T00:00:00Z

fn uniform_instant() -> impl Strategy<Value = OffsetDateTime> {
    (START..END, 0u32..1_000_000_000).prop_map(|(seconds, nanos)| {
        OffsetDateTime::from_unix_timestamp(seconds).expect("in range")
            + Duration::nanoseconds(i64::from(nanos))
    })
}

fn edge_instant() -> impl Strategy<Value = OffsetDateTime> {
    // Days of interest: (month, first day, number of days).
    let periods = proptest::sample::select(vec![
        (Month::March, 20, 12),   // last weekend of March
        (Month::October, 20, 12), // last weekend of October
        (Month::April, 1, 25),    // Easter (or its weeks after)
        (Month::May, 1, 31),      // Labour Day, Ascension, Whitsun
        (Month::December, 20, 12),
        (Month::January, 1, 5),
        (Month::August, 1, 1),
    ]);
    let clock = proptest::sample::select(vec![
        (0u8, 0u8),
        (1, 0),
        (2, 30),
        (3, 0),
        (5, 59),
        (6, 0),
        (7, 0),
        (7, 59),
        (8, 0),
        (12, 0),
        (16, 59),
        (17, 0),
        (17, 59),
        (18, 0),
        (22, 0),
        (23, 59),
    ]);
    (2000i32..2050, periods, 0u8..31, clock, 0u8..2).prop_map(
        |(year, (month, first, len), pick, (hour, minute), shift)| {
            let day = first + pick % len;
            let date = Date::from_calendar_date(year, month, day).expect("valid day");
            let time = Time::from_hms(hour, minute, 0).expect("valid time");
            // Reading the wall-clock time as UTC+1 or UTC+2 lands on the local edges of CET/CEST.
            let offset = UtcOffset::from_hms(1 + i8::try_from(shift).expect("0 or 1"), 0, 0)
                .expect("valid offset");
            let t = PrimitiveDateTime::new(date, time)
                .assume_offset(offset)
                .to_offset(UtcOffset::UTC);
            t.clamp(
                OffsetDateTime::from_unix_timestamp(START).expect("in range"),
                OffsetDateTime::from_unix_timestamp(END - 1).expect("in range"),
            )
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::is_valid_country_code;

    proptest! {
        #[test]
        fn country_codes_are_valid_and_normalised(code in country_code()) {
            prop_assert!(is_valid_country_code(&code));
            prop_assert_eq!(code.len(), 2);
            prop_assert_eq!(code.to_ascii_uppercase(), code);
        }

        #[test]
        fn instants_are_utc_within_2000_to_2050(t in instant()) {
            prop_assert_eq!(t.offset(), UtcOffset::UTC);
            prop_assert!((2000..2050).contains(&t.year()));
        }
    }
}
