use time::{Date, Duration, Month, Weekday};

use crate::TerritoryId;

/// When a public holiday falls in a given year.
#[derive(Debug, Clone, Copy)]
enum When {
    /// The same calendar day every year.
    Fixed(Month, u8),
    /// Days after Easter Sunday (negative: before).
    Easter(i64),
}

/// A nationwide public holiday.
#[derive(Debug, Clone, Copy)]
struct Holiday {
    when: When,
    name: &'static str,
}

impl Holiday {
    const fn fixed(month: Month, day: u8, name: &'static str) -> Self {
        Holiday {
            when: When::Fixed(month, day),
            name,
        }
    }

    const fn easter(days: i64, name: &'static str) -> Self {
        Holiday {
            when: When::Easter(days),
            name,
        }
    }

    fn date(self, year: i32, easter: Date) -> Date {
        match self.when {
            When::Fixed(month, day) => Date::from_calendar_date(year, month, day)
                .expect("fixed holidays are valid dates in every representable year"),
            When::Easter(days) => easter + Duration::days(days),
        }
    }
}

/// Nationwide public holidays in Germany, in calendar order except where Easter moves them.
const DE_HOLIDAYS: [Holiday; 9] = [
    Holiday::fixed(Month::January, 1, "Neujahr"),
    Holiday::easter(-2, "Karfreitag"),
    Holiday::easter(1, "Ostermontag"),
    Holiday::fixed(Month::May, 1, "Tag der Arbeit"),
    Holiday::easter(39, "Christi Himmelfahrt"),
    Holiday::easter(50, "Pfingstmontag"),
    Holiday::fixed(Month::October, 3, "Tag der Deutschen Einheit"),
    Holiday::fixed(Month::December, 25, "1. Weihnachtstag"),
    Holiday::fixed(Month::December, 26, "2. Weihnachtstag"),
];

/// Nationwide public holidays in Switzerland, with their Swiss names.
const CH_HOLIDAYS: [Holiday; 8] = [
    Holiday::fixed(Month::January, 1, "Neujahr"),
    Holiday::easter(-2, "Karfreitag"),
    Holiday::easter(1, "Ostermontag"),
    Holiday::easter(39, "Auffahrt"),
    Holiday::easter(50, "Pfingstmontag"),
    Holiday::fixed(Month::August, 1, "Bundesfeiertag"),
    Holiday::fixed(Month::December, 25, "Weihnachtstag"),
    Holiday::fixed(Month::December, 26, "Stephanstag"),
];

fn rules(territory: TerritoryId) -> &'static [Holiday] {
    match territory {
        TerritoryId::De => &DE_HOLIDAYS,
        TerritoryId::Ch => &CH_HOLIDAYS,
    }
}

/// Easter Sunday of `year` by the Gregorian computus (the anonymous algorithm published by
/// Meeus, Jones and Butcher). Years before 1583 get the proleptic Gregorian answer.
///
/// ```
/// use freshplan_territory::easter_sunday;
/// use time::macros::date;
///
/// assert_eq!(easter_sunday(2026), date!(2026-04-05));
/// ```
///
/// # Panics
///
/// If `year` is outside the range of [`time::Date`] (±9999).
pub fn easter_sunday(year: i32) -> Date {
    // Euclidean division keeps the arithmetic well-defined for negative years.
    let a = year.rem_euclid(19);
    let b = year.div_euclid(100);
    let c = year.rem_euclid(100);
    let d = b.div_euclid(4);
    let e = b.rem_euclid(4);
    let f = (b + 8).div_euclid(25);
    let g = (b - f + 1).div_euclid(3);
    let h = (19 * a + b - d - g + 15).rem_euclid(30);
    let i = c / 4;
    let k = c % 4;
    let l = (32 + 2 * e + 2 * i - h - k).rem_euclid(7);
    let m = (a + 11 * h + 22 * l) / 451;
    let n = h + l - 7 * m + 114;
    let month = if n / 31 == 3 {
        Month::March
    } else {
        Month::April
    };
    let day = u8::try_from(n % 31 + 1).expect("the computus yields a day of month");
    Date::from_calendar_date(year, month, day).expect("year within the range of time::Date")
}

/// The nationwide public holidays of `territory` in `year`, sorted by date, with their German
/// (for `CH`: Swiss) names.
///
/// `DE`: Neujahr, Karfreitag, Ostermontag, Tag der Arbeit, Christi Himmelfahrt, Pfingstmontag,
/// Tag der Deutschen Einheit, 1. and 2. Weihnachtstag. `CH`: Neujahr, Karfreitag, Ostermontag,
/// Auffahrt, Pfingstmontag, Bundesfeiertag, Weihnachtstag, Stephanstag.
///
/// Two holidays can fall on one day (Christi Himmelfahrt on 1 May, as in 2008); both are listed.
///
/// ```
/// use freshplan_territory::{TerritoryId, holidays};
/// use time::macros::date;
///
/// let de = holidays(TerritoryId::De, 2026);
/// assert_eq!(de[0], (date!(2026-01-01), "Neujahr"));
/// assert_eq!(de[1], (date!(2026-04-03), "Karfreitag"));
/// ```
///
/// # Panics
///
/// If `year` is outside the range of [`time::Date`] (±9999).
pub fn holidays(territory: TerritoryId, year: i32) -> Vec<(Date, &'static str)> {
    let easter = easter_sunday(year);
    let mut days: Vec<_> = rules(territory)
        .iter()
        .map(|h| (h.date(year, easter), h.name))
        .collect();
    // Stable: holidays on the same day keep their rule order.
    days.sort_by_key(|&(date, _)| date);
    days
}

/// Whether `date` is a nationwide public holiday in `territory`.
pub fn is_holiday(territory: TerritoryId, date: Date) -> bool {
    let year = date.year();
    let easter = easter_sunday(year);
    rules(territory)
        .iter()
        .any(|h| h.date(year, easter) == date)
}

/// Whether `date` is a business day in `territory`: Monday to Friday and not a nationwide
/// public holiday.
pub fn is_business_day(territory: TerritoryId, date: Date) -> bool {
    !matches!(date.weekday(), Weekday::Saturday | Weekday::Sunday) && !is_holiday(territory, date)
}

/// The first business day strictly after `date`.
pub(crate) fn next_business_day_after(territory: TerritoryId, date: Date) -> Date {
    let mut day = date;
    loop {
        day = day
            .next_day()
            .expect("a business day exists before the end of time::Date's range");
        if is_business_day(territory, day) {
            return day;
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use time::macros::date;

    use super::*;

    /// Easter Sundays 2000–2050 as published (e.g. the tables of the Physikalisch-Technische
    /// Bundesanstalt); cross-checked with Gauss's algorithm and `dateutil.easter`, not with the
    /// code under test.
    const KNOWN_EASTER_SUNDAYS: [Date; 51] = [
        date!(2000 - 04 - 23),
        date!(2001 - 04 - 15),
        date!(2002 - 03 - 31),
        date!(2003 - 04 - 20),
        date!(2004 - 04 - 11),
        date!(2005 - 03 - 27),
        date!(2006 - 04 - 16),
        date!(2007 - 04 - 08),
        date!(2008 - 03 - 23),
        date!(2009 - 04 - 12),
        date!(2010 - 04 - 04),
        date!(2011 - 04 - 24),
        date!(2012 - 04 - 08),
        date!(2013 - 03 - 31),
        date!(2014 - 04 - 20),
        date!(2015 - 04 - 05),
        date!(2016 - 03 - 27),
        date!(2017 - 04 - 16),
        date!(2018 - 04 - 01),
        date!(2019 - 04 - 21),
        date!(2020 - 04 - 12),
        date!(2021 - 04 - 04),
        date!(2022 - 04 - 17),
        date!(2023 - 04 - 09),
        date!(2024 - 03 - 31),
        date!(2025 - 04 - 20),
        date!(2026 - 04 - 05),
        date!(2027 - 03 - 28),
        date!(2028 - 04 - 16),
        date!(2029 - 04 - 01),
        date!(2030 - 04 - 21),
        date!(2031 - 04 - 13),
        date!(2032 - 03 - 28),
        date!(2033 - 04 - 17),
        date!(2034 - 04 - 09),
        date!(2035 - 03 - 25),
        date!(2036 - 04 - 13),
        date!(2037 - 04 - 05),
        date!(2038 - 04 - 25),
        date!(2039 - 04 - 10),
        date!(2040 - 04 - 01),
        date!(2041 - 04 - 21),
        date!(2042 - 04 - 06),
        date!(2043 - 03 - 29),
        date!(2044 - 04 - 17),
        date!(2045 - 04 - 09),
        date!(2046 - 03 - 25),
        date!(2047 - 04 - 14),
        date!(2048 - 04 - 05),
        date!(2049 - 04 - 18),
        date!(2050 - 04 - 10),
    ];

    #[test]
    fn easter_matches_the_published_table_2000_to_2050() {
        for (year, expected) in (2000..=2050).zip(KNOWN_EASTER_SUNDAYS) {
            assert_eq!(expected.year(), year, "table out of order");
            assert_eq!(easter_sunday(year), expected, "{year}");
        }
    }

    #[test]
    fn easter_extremes_and_historic_dates() {
        // The earliest and latest possible dates, and the first Gregorian Easter.
        assert_eq!(easter_sunday(1818), date!(1818 - 03 - 22));
        assert_eq!(easter_sunday(2285), date!(2285 - 03 - 22));
        assert_eq!(easter_sunday(1943), date!(1943 - 04 - 25));
        assert_eq!(easter_sunday(1583), date!(1583 - 04 - 10));
        assert_eq!(easter_sunday(1954), date!(1954 - 04 - 18));
    }

    #[test]
    fn all_german_holidays_2026() {
        assert_eq!(
            holidays(TerritoryId::De, 2026),
            vec![
                (date!(2026 - 01 - 01), "Neujahr"),
                (date!(2026 - 04 - 03), "Karfreitag"),
                (date!(2026 - 04 - 06), "Ostermontag"),
                (date!(2026 - 05 - 01), "Tag der Arbeit"),
                (date!(2026 - 05 - 14), "Christi Himmelfahrt"),
                (date!(2026 - 05 - 25), "Pfingstmontag"),
                (date!(2026 - 10 - 03), "Tag der Deutschen Einheit"),
                (date!(2026 - 12 - 25), "1. Weihnachtstag"),
                (date!(2026 - 12 - 26), "2. Weihnachtstag"),
            ]
        );
    }

    #[test]
    fn all_swiss_holidays_2026() {
        assert_eq!(
            holidays(TerritoryId::Ch, 2026),
            vec![
                (date!(2026 - 01 - 01), "Neujahr"),
                (date!(2026 - 04 - 03), "Karfreitag"),
                (date!(2026 - 04 - 06), "Ostermontag"),
                (date!(2026 - 05 - 14), "Auffahrt"),
                (date!(2026 - 05 - 25), "Pfingstmontag"),
                (date!(2026 - 08 - 01), "Bundesfeiertag"),
                (date!(2026 - 12 - 25), "Weihnachtstag"),
                (date!(2026 - 12 - 26), "Stephanstag"),
            ]
        );
    }

    #[test]
    fn holidays_are_sorted_even_when_easter_is_late() {
        // 2038: Easter on 25 April, Ascension on 3 June, Whit Monday on 14 June.
        let de = holidays(TerritoryId::De, 2038);
        assert_eq!(de[3], (date!(2038 - 05 - 01), "Tag der Arbeit"));
        assert_eq!(de[4], (date!(2038 - 06 - 03), "Christi Himmelfahrt"));
        assert_eq!(de[5], (date!(2038 - 06 - 14), "Pfingstmontag"));
    }

    #[test]
    fn coinciding_holidays_are_both_listed() {
        // 2008: Easter on 23 March, Ascension on 1 May.
        let de = holidays(TerritoryId::De, 2008);
        assert_eq!(de.len(), 9);
        assert_eq!(
            &de[3..5],
            &[
                (date!(2008 - 05 - 01), "Tag der Arbeit"),
                (date!(2008 - 05 - 01), "Christi Himmelfahrt"),
            ]
        );
    }

    #[test]
    fn holidays_differ_between_the_territories() {
        assert!(is_holiday(TerritoryId::De, date!(2026 - 05 - 01)));
        assert!(!is_holiday(TerritoryId::Ch, date!(2026 - 05 - 01)));
        assert!(is_holiday(TerritoryId::De, date!(2025 - 10 - 03)));
        assert!(!is_holiday(TerritoryId::Ch, date!(2025 - 10 - 03)));
        assert!(is_holiday(TerritoryId::Ch, date!(2025 - 08 - 01)));
        assert!(!is_holiday(TerritoryId::De, date!(2025 - 08 - 01)));
        // Regional holidays are not nationwide.
        assert!(!is_holiday(TerritoryId::De, date!(2026 - 01 - 06)));
        assert!(!is_holiday(TerritoryId::De, date!(2026 - 06 - 04)));
        assert!(!is_holiday(TerritoryId::Ch, date!(2026 - 01 - 02)));
    }

    #[test]
    fn business_days() {
        // Thursday before Easter, Good Friday, Easter Saturday/Sunday/Monday, Tuesday.
        for territory in TerritoryId::ALL {
            assert!(is_business_day(territory, date!(2026 - 04 - 02)));
            assert!(!is_business_day(territory, date!(2026 - 04 - 03)));
            assert!(!is_business_day(territory, date!(2026 - 04 - 04)));
            assert!(!is_business_day(territory, date!(2026 - 04 - 05)));
            assert!(!is_business_day(territory, date!(2026 - 04 - 06)));
            assert!(is_business_day(territory, date!(2026 - 04 - 07)));
        }
        assert!(!is_business_day(TerritoryId::De, date!(2026 - 05 - 01)));
        assert!(is_business_day(TerritoryId::Ch, date!(2026 - 05 - 01)));
    }

    #[test]
    fn next_business_day_skips_weekends_and_holidays() {
        assert_eq!(
            next_business_day_after(TerritoryId::De, date!(2026 - 04 - 02)),
            date!(2026 - 04 - 07)
        );
        assert_eq!(
            next_business_day_after(TerritoryId::De, date!(2026 - 12 - 24)),
            date!(2026 - 12 - 28)
        );
        assert_eq!(
            next_business_day_after(TerritoryId::Ch, date!(2025 - 07 - 31)),
            date!(2025 - 08 - 04)
        );
    }

    proptest! {
        #[test]
        fn easter_is_a_sunday_between_22_march_and_25_april(year in 1583i32..=9999) {
            let easter = easter_sunday(year);
            prop_assert_eq!(easter.year(), year);
            prop_assert_eq!(easter.weekday(), Weekday::Sunday);
            prop_assert!(easter >= Date::from_calendar_date(year, Month::March, 22).unwrap());
            prop_assert!(easter <= Date::from_calendar_date(year, Month::April, 25).unwrap());
        }

        #[test]
        fn holiday_list_is_sorted_and_agrees_with_is_holiday(
            territory in crate::testing::territory_id(),
            year in 1583i32..=9999,
        ) {
            let days = holidays(territory, year);
            prop_assert_eq!(days.len(), rules(territory).len());
            prop_assert!(days.windows(2).all(|w| w[0].0 <= w[1].0));
            let easter = easter_sunday(year);
            for (date, _) in &days {
                prop_assert_eq!(date.year(), year);
                prop_assert!(is_holiday(territory, *date));
                prop_assert!(!is_business_day(territory, *date));
            }
            prop_assert!(days.contains(&(easter - Duration::days(2), "Karfreitag")));
            prop_assert!(days.contains(&(easter + Duration::days(1), "Ostermontag")));
            prop_assert!(!is_holiday(territory, easter - Duration::days(1)));
        }

        #[test]
        fn business_days_are_weekdays_that_are_not_holidays(
            territory in crate::testing::territory_id(),
            day in 0i64..(366 * 60),
        ) {
            let date = date!(2000 - 01 - 01) + Duration::days(day);
            let listed = holidays(territory, date.year()).iter().any(|(d, _)| *d == date);
            prop_assert_eq!(is_holiday(territory, date), listed);
            let weekend = matches!(date.weekday(), Weekday::Saturday | Weekday::Sunday);
            prop_assert_eq!(is_business_day(territory, date), !weekend && !listed);
            let next = next_business_day_after(territory, date);
            prop_assert!(next > date && is_business_day(territory, next));
            prop_assert!(next - date <= Duration::days(5));
        }
    }
}
