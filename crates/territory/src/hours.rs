use time::{Date, OffsetDateTime, PrimitiveDateTime, Time, UtcOffset};
use time_tz::timezones::db::europe::{BERLIN, ZURICH};
use time_tz::{Offset, OffsetDateTimeExt, OffsetResult, PrimitiveDateTimeExt, TimeZone, Tz};

use crate::TerritoryId;
use crate::calendar::{is_business_day, next_business_day_after};

/// Business hours start at 08:00 local time (inclusive) …
const OPENING: Time = time::macros::time!(08:00);
/// … and end at 18:00 local time (exclusive).
const CLOSING_HOUR: u8 = 18;

/// The IANA zone of a territory (the zone named by `Territory::time_zone`).
fn zone(territory: TerritoryId) -> &'static Tz {
    match territory {
        TerritoryId::De => BERLIN,
        TerritoryId::Ch => ZURICH,
    }
}

/// The zone's UTC offset at the instant `t`.
fn offset_at(zone: &Tz, t: OffsetDateTime) -> UtcOffset {
    zone.get_offset_utc(&t).to_utc()
}

/// `t` expressed in the territory's local time: the same instant, carrying the zone's UTC
/// offset at that instant (`+01:00`/`+02:00` for both territories).
///
/// ```
/// use freshplan_territory::{TerritoryId, to_local};
/// use time::macros::{datetime, offset};
///
/// let local = to_local(TerritoryId::Ch, datetime!(2026-07-01 10:00 UTC));
/// assert_eq!(local, datetime!(2026-07-01 10:00 UTC)); // the same instant …
/// assert_eq!(local.offset(), offset!(+2)); // … seen from Zurich in summer.
/// ```
///
/// # Panics
///
/// If the local time lies outside the range of [`time::OffsetDateTime`] (year ±9999).
pub fn to_local(territory: TerritoryId, t: OffsetDateTime) -> OffsetDateTime {
    t.to_timezone(zone(territory))
}

/// The calendar date in the territory's zone at the instant `t`.
///
/// # Panics
///
/// As [`to_local`].
pub fn local_date(territory: TerritoryId, t: OffsetDateTime) -> Date {
    to_local(territory, t).date()
}

/// Local midnight of the territory's day containing `t`, in UTC: the first instant whose local
/// date is [`local_date(territory, t)`](local_date).
///
/// If local midnight occurs twice (clocks turned back over midnight) the earlier is taken; if it
/// does not exist (clocks turned forward over midnight) the day starts at the transition. Neither
/// happens in Europe/Berlin or Europe/Zurich since 1950, where clocks change at 02:00/03:00.
///
/// ```
/// use freshplan_territory::{TerritoryId, start_of_local_day};
/// use time::macros::datetime;
///
/// // 23:30 UTC on 31 Dec is already 1 Jan in Berlin, which began at 23:00 UTC.
/// let t = datetime!(2025-12-31 23:30 UTC);
/// assert_eq!(start_of_local_day(TerritoryId::De, t), datetime!(2025-12-31 23:00 UTC));
/// ```
///
/// # Panics
///
/// As [`to_local`].
pub fn start_of_local_day(territory: TerritoryId, t: OffsetDateTime) -> OffsetDateTime {
    let zone = zone(territory);
    let midnight = PrimitiveDateTime::new(local_date(territory, t), Time::MIDNIGHT);
    earliest_instant_from(zone, midnight).to_offset(UtcOffset::UTC)
}

/// The earliest instant whose local wall-clock time in `zone` is `wall`, or, if `wall` falls in
/// a gap, the first instant after the gap (found to the minute; real transitions are on whole
/// minutes).
fn earliest_instant_from(zone: &Tz, wall: PrimitiveDateTime) -> OffsetDateTime {
    let mut candidate = wall;
    // Gaps are at most a few hours long; a day is far more than enough.
    for _ in 0..=24 * 60 {
        match candidate.assume_timezone(zone) {
            OffsetResult::Some(t) => return t,
            OffsetResult::Ambiguous(a, b) => return a.min(b),
            OffsetResult::None => candidate += time::Duration::MINUTE,
        }
    }
    unreachable!("no time zone skips a whole day of wall-clock time")
}

/// Whether `local` (an instant carrying its local offset) is within business hours.
fn within_hours(territory: TerritoryId, local: OffsetDateTime) -> bool {
    local.time() >= OPENING
        && local.hour() < CLOSING_HOUR
        && is_business_day(territory, local.date())
}

/// Whether `t` is within the territory's business hours: on a [business day](is_business_day)
/// and 08:00 ≤ local time < 18:00 in the territory's zone.
///
/// # Panics
///
/// As [`to_local`].
pub fn in_business_hours(territory: TerritoryId, t: OffsetDateTime) -> bool {
    within_hours(territory, to_local(territory, t))
}

/// The first instant at or after `t` that is [in business hours](in_business_hours), in UTC.
///
/// If `t` is in business hours that is `t` itself; otherwise it is 08:00 local time of the next
/// business day (today's if `t` is before 08:00 on a business day). Local time follows the
/// territory's zone, so across a daylight-saving change the UTC result moves by an hour.
///
/// ```
/// use freshplan_territory::{TerritoryId, next_business_slot};
/// use time::macros::datetime;
///
/// // Friday 18:30 in Berlin (CET). The clocks go forward on Sunday, so Monday 08:00 is CEST.
/// let friday_evening = datetime!(2026-03-27 18:30 +01:00);
/// assert_eq!(
///     next_business_slot(TerritoryId::De, friday_evening),
///     datetime!(2026-03-30 06:00 UTC)
/// );
///
/// // Within business hours nothing moves.
/// let tuesday_morning = datetime!(2026-03-31 09:15 UTC);
/// assert_eq!(next_business_slot(TerritoryId::Ch, tuesday_morning), tuesday_morning);
/// ```
///
/// # Panics
///
/// If the slot lies beyond the range of [`time::Date`] (year 9999).
pub fn next_business_slot(territory: TerritoryId, t: OffsetDateTime) -> OffsetDateTime {
    let zone = zone(territory);
    let mut now = t.to_offset(UtcOffset::UTC);
    // Each round either answers or advances `now` to the zone's next offset change, so this
    // terminates; in practice it runs once, twice when a DST change lies ahead.
    loop {
        let offset = offset_at(zone, now);
        let local = now.to_offset(offset);
        if within_hours(territory, local) {
            return now;
        }
        let opening_day = if local.time() < OPENING && is_business_day(territory, local.date()) {
            local.date()
        } else {
            next_business_day_after(territory, local.date())
        };
        let wall_now = PrimitiveDateTime::new(local.date(), local.time());
        let wall_opening = PrimitiveDateTime::new(opening_day, OPENING);
        // Wall-clock distance equals elapsed time as long as the offset does not change.
        let candidate = now + (wall_opening - wall_now);
        if offset_at(zone, candidate) == offset {
            // Assumes at most one offset change per few days, which holds for every real zone:
            // equal offsets at both ends then mean no change in between.
            return candidate;
        }
        now = first_offset_change(zone, now, candidate, offset);
    }
}

/// The first instant in `(from, to]` at which `zone`'s offset differs from `offset`, the offset
/// at `from`; the caller guarantees the offset at `to` differs. Offsets change on whole seconds.
fn first_offset_change(
    zone: &Tz,
    from: OffsetDateTime,
    to: OffsetDateTime,
    offset: UtcOffset,
) -> OffsetDateTime {
    let at = |seconds: i64| {
        OffsetDateTime::from_unix_timestamp(seconds).expect("between two representable instants")
    };
    // Invariant: the offset at second `lo` is `offset`, the offset at second `hi` is not.
    let mut lo = from.unix_timestamp();
    let mut hi = to.unix_timestamp();
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if offset_at(zone, at(mid)) == offset {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    at(hi)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use time::Duration;
    use time::macros::{date, datetime, offset};

    use super::*;
    use crate::Territory;
    use crate::testing::{instant, territory_id};

    const DE: TerritoryId = TerritoryId::De;
    const CH: TerritoryId = TerritoryId::Ch;

    fn slot(territory: TerritoryId, t: OffsetDateTime) -> OffsetDateTime {
        let s = next_business_slot(territory, t);
        assert_eq!(s.offset(), UtcOffset::UTC, "slots are returned in UTC");
        s
    }

    #[test]
    fn zones_match_the_territory_data() {
        for id in TerritoryId::ALL {
            assert_eq!(zone(id).name(), Territory::get(id).time_zone);
        }
    }

    #[test]
    fn local_time_follows_daylight_saving() {
        assert_eq!(
            to_local(DE, datetime!(2026-01-15 12:00 UTC)).offset(),
            offset!(+1)
        );
        assert_eq!(
            to_local(DE, datetime!(2026-07-15 12:00 UTC)).offset(),
            offset!(+2)
        );
        // The switch happens at 01:00 UTC on the last Sunday of March and October.
        assert_eq!(
            to_local(CH, datetime!(2026-03-29 00:59:59 UTC)).offset(),
            offset!(+1)
        );
        assert_eq!(
            to_local(CH, datetime!(2026-03-29 01:00 UTC)).offset(),
            offset!(+2)
        );
        assert_eq!(
            to_local(CH, datetime!(2026-10-25 00:59:59 UTC)).offset(),
            offset!(+2)
        );
        assert_eq!(
            to_local(CH, datetime!(2026-10-25 01:00 UTC)).offset(),
            offset!(+1)
        );
        // The zone database is used beyond 2037, too.
        assert_eq!(
            to_local(DE, datetime!(2049-07-01 12:00 UTC)).offset(),
            offset!(+2)
        );
    }

    #[test]
    fn to_local_keeps_the_instant_whatever_the_input_offset() {
        let t = datetime!(2026-05-01 03:00 -05:00);
        assert_eq!(to_local(DE, t), t);
        assert_eq!(to_local(DE, t).offset(), offset!(+2));
        assert_eq!(to_local(DE, t).hour(), 10);
    }

    #[test]
    fn local_dates_around_midnight() {
        assert_eq!(
            local_date(DE, datetime!(2026-01-31 22:59 UTC)),
            date!(2026 - 01 - 31)
        );
        assert_eq!(
            local_date(DE, datetime!(2026-01-31 23:00 UTC)),
            date!(2026 - 02 - 01)
        );
        assert_eq!(
            local_date(CH, datetime!(2026-07-31 22:00 UTC)),
            date!(2026 - 08 - 01)
        );
    }

    #[test]
    fn start_of_local_day_in_winter_summer_and_on_dst_days() {
        assert_eq!(
            start_of_local_day(DE, datetime!(2026-01-15 12:00 UTC)),
            datetime!(2026-01-14 23:00 UTC)
        );
        assert_eq!(
            start_of_local_day(DE, datetime!(2026-07-15 21:59 UTC)),
            datetime!(2026-07-14 22:00 UTC)
        );
        assert_eq!(
            start_of_local_day(DE, datetime!(2026-07-15 22:00 UTC)),
            datetime!(2026-07-15 22:00 UTC)
        );
        // 29 March 2026 is 23 hours long, 25 October 2026 is 25 hours long.
        assert_eq!(
            start_of_local_day(CH, datetime!(2026-03-29 21:59 UTC)),
            datetime!(2026-03-28 23:00 UTC)
        );
        assert_eq!(
            start_of_local_day(CH, datetime!(2026-10-25 22:59 UTC)),
            datetime!(2026-10-24 22:00 UTC)
        );
        assert_eq!(
            start_of_local_day(DE, datetime!(2026-10-25 02:30 +01:00)).offset(),
            UtcOffset::UTC
        );
    }

    #[test]
    fn earliest_instant_resolves_gaps_and_folds() {
        // 02:30 does not exist on 29 March 2026; the day resumes at 03:00 CEST = 01:00 UTC.
        assert_eq!(
            earliest_instant_from(BERLIN, datetime!(2026-03-29 02:30)),
            datetime!(2026-03-29 01:00 UTC)
        );
        // 02:30 happens twice on 25 October 2026; the first is 02:30 CEST = 00:30 UTC.
        assert_eq!(
            earliest_instant_from(BERLIN, datetime!(2026-10-25 02:30)),
            datetime!(2026-10-25 00:30 UTC)
        );
    }

    #[test]
    fn business_hours_boundaries() {
        // Friday 27 March 2026, CET (+01:00).
        assert!(!in_business_hours(
            DE,
            datetime!(2026-03-27 07:59:59 +01:00)
        ));
        assert!(in_business_hours(DE, datetime!(2026-03-27 08:00 +01:00)));
        assert!(in_business_hours(
            DE,
            datetime!(2026-03-27 17:59:59.999_999_999 +01:00)
        ));
        assert!(!in_business_hours(DE, datetime!(2026-03-27 18:00 +01:00)));
        // Saturday, and a holiday in one territory only.
        assert!(!in_business_hours(DE, datetime!(2026-03-28 10:00 +01:00)));
        assert!(!in_business_hours(DE, datetime!(2026-05-01 10:00 +02:00)));
        assert!(in_business_hours(CH, datetime!(2026-05-01 10:00 +02:00)));
        // The same instant is 07:30 in Berlin in winter but 08:30 when given as UTC+2 wall time.
        assert!(!in_business_hours(DE, datetime!(2026-01-15 08:30 +02:00)));
    }

    #[test]
    fn within_hours_is_unchanged() {
        for t in [
            datetime!(2026-03-27 07:00 UTC),            // Fri 08:00 CET exactly
            datetime!(2026-03-27 16:59:59 UTC),         // Fri 17:59:59 CET
            datetime!(2026-03-30 06:00 UTC),            // Mon 08:00 CEST exactly
            datetime!(2026-03-30 15:59:59.5 UTC),       // Mon 17:59:59.5 CEST
            datetime!(2026-06-10 09:41:17.123_456 UTC), // an ordinary Wednesday
        ] {
            assert_eq!(slot(DE, t), t, "{t}");
            assert_eq!(slot(CH, t), t, "{t}");
        }
    }

    #[test]
    fn before_opening_moves_to_opening_the_same_day() {
        assert_eq!(
            slot(DE, datetime!(2026-03-27 07:59:59 +01:00)),
            datetime!(2026-03-27 07:00 UTC)
        );
        assert_eq!(
            slot(DE, datetime!(2026-03-27 00:00 +01:00)),
            datetime!(2026-03-27 07:00 UTC)
        );
        // 23:30 UTC on Thursday is already Friday 00:30 in Zurich.
        assert_eq!(
            slot(CH, datetime!(2026-03-26 23:30 UTC)),
            datetime!(2026-03-27 07:00 UTC)
        );
    }

    #[test]
    fn friday_evening_moves_to_monday_morning() {
        // Ordinary weekend in June (CEST both days).
        assert_eq!(
            slot(DE, datetime!(2026-06-12 18:00 +02:00)),
            datetime!(2026-06-15 06:00 UTC)
        );
        assert_eq!(
            slot(CH, datetime!(2026-06-13 12:00 +02:00)),
            datetime!(2026-06-15 06:00 UTC)
        );
        // Weekday evening → next morning.
        assert_eq!(
            slot(DE, datetime!(2026-06-10 18:00 +02:00)),
            datetime!(2026-06-11 06:00 UTC)
        );
    }

    #[test]
    fn holiday_mondays_and_easter_are_skipped() {
        // Thu 2 April 2026 after closing → Good Friday, weekend, Easter Monday → Tue 7 April.
        for territory in TerritoryId::ALL {
            assert_eq!(
                slot(territory, datetime!(2026-04-02 18:00 +02:00)),
                datetime!(2026-04-07 06:00 UTC)
            );
        }
        // Whit Monday 25 May 2026.
        assert_eq!(
            slot(DE, datetime!(2026-05-22 19:00 +02:00)),
            datetime!(2026-05-26 06:00 UTC)
        );
        // Ascension Thursday 14 May 2026.
        assert_eq!(
            slot(CH, datetime!(2026-05-13 18:00 +02:00)),
            datetime!(2026-05-15 06:00 UTC)
        );
    }

    #[test]
    fn national_days_differ() {
        // Fri 1 Aug 2025: Swiss national day, a working day in Germany.
        assert_eq!(
            slot(CH, datetime!(2025-07-31 18:00 +02:00)),
            datetime!(2025-08-04 06:00 UTC)
        );
        assert_eq!(
            slot(DE, datetime!(2025-07-31 18:00 +02:00)),
            datetime!(2025-08-01 06:00 UTC)
        );
        // Fri 3 Oct 2025: German Unity Day, a working day in Switzerland.
        assert_eq!(
            slot(DE, datetime!(2025-10-02 18:00 +02:00)),
            datetime!(2025-10-06 06:00 UTC)
        );
        assert_eq!(
            slot(CH, datetime!(2025-10-02 18:00 +02:00)),
            datetime!(2025-10-03 06:00 UTC)
        );
        // Fri 1 May 2026: Labour Day in Germany only.
        assert_eq!(
            slot(DE, datetime!(2026-05-01 07:00 +02:00)),
            datetime!(2026-05-04 06:00 UTC)
        );
        assert_eq!(
            slot(CH, datetime!(2026-05-01 07:00 +02:00)),
            datetime!(2026-05-01 06:00 UTC)
        );
    }

    #[test]
    fn christmas_and_new_year() {
        // Thu 24 Dec 2026 → Fri 25, Sat 26, Sun 27 → Mon 28 Dec.
        assert_eq!(
            slot(DE, datetime!(2026-12-24 18:00 +01:00)),
            datetime!(2026-12-28 07:00 UTC)
        );
        // Thu 31 Dec 2026 → Fri 1 Jan 2027 (Neujahr), weekend → Mon 4 Jan 2027.
        for territory in TerritoryId::ALL {
            assert_eq!(
                slot(territory, datetime!(2026-12-31 18:00 +01:00)),
                datetime!(2027-01-04 07:00 UTC)
            );
        }
        // New Year's night in UTC is already 1 January locally.
        assert_eq!(
            slot(CH, datetime!(2026-12-31 23:30 UTC)),
            datetime!(2027-01-04 07:00 UTC)
        );
        // Tue 2 Jan 2024 is a working day in both (Berchtoldstag is cantonal).
        assert_eq!(
            slot(CH, datetime!(2023-12-31 12:00 +01:00)),
            datetime!(2024-01-02 07:00 UTC)
        );
    }

    #[test]
    fn spring_forward_weekend() {
        // Fri 27 March 2026 08:00 CET is 07:00 UTC; Mon 30 March 08:00 CEST is 06:00 UTC.
        for territory in TerritoryId::ALL {
            assert_eq!(
                slot(territory, datetime!(2026-03-27 05:00 UTC)),
                datetime!(2026-03-27 07:00 UTC)
            );
            assert_eq!(
                slot(territory, datetime!(2026-03-27 17:00 UTC)),
                datetime!(2026-03-30 06:00 UTC)
            );
            // Saturday, before, inside and after the Sunday gap (02:00–03:00 local).
            for t in [
                datetime!(2026-03-28 12:00 UTC),
                datetime!(2026-03-29 00:30 UTC),
                datetime!(2026-03-29 01:00 UTC),
                datetime!(2026-03-29 01:30 UTC),
                datetime!(2026-03-29 21:59:59 UTC),
                datetime!(2026-03-29 22:00 UTC),
                datetime!(2026-03-30 05:59:59 UTC),
            ] {
                assert_eq!(slot(territory, t), datetime!(2026-03-30 06:00 UTC), "{t}");
            }
            assert!(in_business_hours(
                territory,
                datetime!(2026-03-30 06:00 UTC)
            ));
            assert!(!in_business_hours(
                territory,
                datetime!(2026-03-30 05:59:59 UTC)
            ));
        }
    }

    #[test]
    fn fall_back_weekend() {
        // Fri 23 Oct 2026 18:00 CEST is 16:00 UTC; Mon 26 Oct 08:00 CET is 07:00 UTC.
        for territory in TerritoryId::ALL {
            assert_eq!(
                slot(territory, datetime!(2026-10-23 16:00 UTC)),
                datetime!(2026-10-26 07:00 UTC)
            );
            assert_eq!(
                slot(territory, datetime!(2026-10-23 15:59 UTC)),
                datetime!(2026-10-23 15:59 UTC)
            );
            // Both passes through 02:30 on Sunday (CEST, then CET).
            for t in [
                datetime!(2026-10-25 00:30 UTC),
                datetime!(2026-10-25 01:30 UTC),
                datetime!(2026-10-26 06:00 UTC), // 07:00 CET, an hour before opening
                datetime!(2026-10-26 06:59:59 UTC),
            ] {
                assert_eq!(slot(territory, t), datetime!(2026-10-26 07:00 UTC), "{t}");
            }
            assert!(!in_business_hours(
                territory,
                datetime!(2026-10-26 06:30 UTC)
            ));
        }
    }

    #[test]
    fn first_offset_change_finds_the_transition_second() {
        let from = datetime!(2026-03-27 17:00 UTC);
        let to = datetime!(2026-03-30 06:00 UTC);
        assert_eq!(
            first_offset_change(BERLIN, from, to, offset!(+1)),
            datetime!(2026-03-29 01:00 UTC)
        );
    }

    #[test]
    fn input_offset_does_not_matter() {
        let t = datetime!(2026-03-27 18:30 +01:00);
        for view in [offset!(UTC), offset!(+1), offset!(-7), offset!(+14)] {
            assert_eq!(slot(DE, t.to_offset(view)), datetime!(2026-03-30 06:00 UTC));
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn slot_is_the_first_business_instant(territory in territory_id(), t in instant()) {
            let s = next_business_slot(territory, t);
            prop_assert_eq!(s.offset(), UtcOffset::UTC);
            // Never before its input, always within business hours on a business day.
            prop_assert!(s >= t);
            prop_assert!(in_business_hours(territory, s));
            prop_assert!(is_business_day(territory, local_date(territory, s)));
            let local = to_local(territory, s);
            prop_assert!(local.time() >= OPENING && local.hour() < CLOSING_HOUR);
            // Idempotent.
            prop_assert_eq!(next_business_slot(territory, s), s);
            if in_business_hours(territory, t) {
                prop_assert_eq!(s, t);
            } else {
                // A moved slot is an opening: exactly 08:00 local, and the instant just before
                // it is outside business hours.
                prop_assert_eq!(local.time(), OPENING);
                prop_assert!(!in_business_hours(territory, s - Duration::NANOSECOND));
                // Nothing in between is in business hours (checked to the minute).
                prop_assert!(s - t <= Duration::days(6));
                let mut probe = t;
                while probe < s {
                    prop_assert!(!in_business_hours(territory, probe), "{} is in hours", probe);
                    probe += Duration::MINUTE;
                }
            }
        }

        #[test]
        fn slot_agrees_across_input_offsets(
            territory in territory_id(),
            t in instant(),
            hours in -12i8..=14,
        ) {
            let view = UtcOffset::from_hms(hours, 0, 0).unwrap();
            prop_assert_eq!(
                next_business_slot(territory, t.to_offset(view)),
                next_business_slot(territory, t)
            );
        }

        #[test]
        fn start_of_local_day_is_local_midnight(territory in territory_id(), t in instant()) {
            let start = start_of_local_day(territory, t);
            prop_assert_eq!(start.offset(), UtcOffset::UTC);
            prop_assert!(start <= t);
            prop_assert!(t - start < Duration::hours(25));
            prop_assert_eq!(local_date(territory, start), local_date(territory, t));
            prop_assert_eq!(to_local(territory, start).time(), Time::MIDNIGHT);
            prop_assert!(local_date(territory, start - Duration::NANOSECOND) < local_date(territory, t));
            prop_assert_eq!(start_of_local_day(territory, start), start);
        }

        #[test]
        fn to_local_is_the_same_instant_in_a_central_european_offset(
            territory in territory_id(),
            t in instant(),
        ) {
            let local = to_local(territory, t);
            prop_assert_eq!(local, t);
            prop_assert!(local.offset() == offset!(+1) || local.offset() == offset!(+2));
            prop_assert_eq!(local_date(territory, t), local.date());
        }
    }
}
