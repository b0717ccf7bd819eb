//! Value normalisers: the spellings real files use, turned into the API's.
//!
//! Each returns the API spelling, or `None` when it does not recognise the value; the caller then
//! passes the raw text on and the lead validation explains the refusal.

use crate::field::normalise_key;

/// A yes/no cell: `ja`, `j`, `yes`, `y`, `true`, `wahr`, `1`, `x`, `✓`, `ok`, `oui`, `si` are
/// `true`; `nein`, `n`, `no`, `false`, `falsch`, `0`, `-`, `non` are `false` (case-insensitive,
/// trimmed).
pub fn yes_no(s: &str) -> Option<bool> {
    match s.trim().to_lowercase().as_str() {
        "ja" | "j" | "yes" | "y" | "true" | "wahr" | "1" | "x" | "✓" | "✔" | "ok" | "oui"
        | "si" | "sí" => Some(true),
        "nein" | "n" | "no" | "false" | "falsch" | "0" | "-" | "non" => Some(false),
        _ => None,
    }
}

/// An ISO 3166-1 alpha-2 country code: the DACH countries by their German, English, French or
/// Italian name, alpha-3 code or vehicle letter (`Deutschland`, `D`, `DEU`, `BRD` → `DE`;
/// `Schweiz`, `Suisse`, `CHE` → `CH`; `Österreich`, `A`, `AUT` → `AT`); any other two letters
/// upper-cased.
pub fn country(s: &str) -> Option<String> {
    let t = s.trim();
    let code = match normalise_key(t).as_str() {
        "de"
        | "d"
        | "deu"
        | "deutschland"
        | "germany"
        | "allemagne"
        | "brd"
        | "bundesrepublikdeutschland" => "DE",
        "ch" | "che" | "schweiz" | "switzerland" | "suisse" | "svizzera" => "CH",
        "at" | "a" | "aut" | "osterreich" | "oesterreich" | "austria" => "AT",
        _ if t.len() == 2 && t.bytes().all(|b| b.is_ascii_alphabetic()) => {
            return Some(t.to_ascii_uppercase());
        }
        _ => return None,
    };
    Some(code.to_owned())
}

/// Currency words and symbols dropped before or after an amount (longest spelling first).
const CURRENCIES: &[&str] = &[
    "euro", "eur", "€", "sfr.", "sfr", "chf", "fr.", "usd", "$", "gbp", "£",
];

/// An amount in German or English spelling as a plain decimal with `.`: `1.234,56`, `1,234.56`
/// and `€ 1.234,56` are `1234.56`. A lone `.` before exactly three digits (after one to three
/// digits, not `0`) separates thousands, as German Excel writes them: `12.000` is `12000`. A
/// lone `,` is always the decimal comma: `1,234` is `1.234`. Spaces, non-breaking spaces and
/// apostrophes (Swiss `1'200`) between digits are dropped, and so is a trailing `,-` (`1.200,-`).
pub fn decimal(s: &str) -> Option<String> {
    let mut t = s.trim();
    if let Some(rest) = CURRENCIES.iter().find_map(|c| strip_prefix_ci(t, c)) {
        t = rest.trim_start();
    }
    if let Some(rest) = CURRENCIES.iter().find_map(|c| strip_suffix_ci(t, c)) {
        t = rest.trim_end();
    }
    // German prices: `1.200,-` is 1200.
    let t = [",--", ",-", ".-"]
        .iter()
        .find_map(|dash| t.strip_suffix(dash))
        .unwrap_or(t);
    let compact: String = t
        .chars()
        .filter(|c| !c.is_whitespace() && !matches!(c, '\'' | '’'))
        .collect();
    let (sign, body) = match compact.strip_prefix(['-', '+']) {
        Some(rest) if compact.starts_with('-') => ("-", rest),
        Some(rest) => ("", rest),
        None => ("", compact.as_str()),
    };
    let dots = body.matches('.').count();
    let commas = body.matches(',').count();
    let decimal_separator = match (dots, commas) {
        (0, 0) => None,
        (1, 0) => body.split_once('.').and_then(|(int, frac)| {
            let thousands = frac.len() == 3 && (1..=3).contains(&int.len()) && int != "0";
            (!thousands).then_some('.')
        }),
        (0, 1) => Some(','),
        (_, 0) | (0, _) => None,
        _ if body.rfind('.') > body.rfind(',') => Some('.'),
        _ => Some(','),
    };
    let (int, frac) = match decimal_separator {
        Some(sep) => body.rsplit_once(sep).map(|(int, frac)| (int, Some(frac)))?,
        None => (body, None),
    };
    let thousands = if commas > 0 && decimal_separator != Some(',') {
        ','
    } else {
        '.'
    };
    let int = without_thousands(int, thousands)?;
    match frac {
        Some(frac) if is_digits(frac) => Some(format!("{sign}{int}.{frac}")),
        Some(_) => None,
        None => Some(format!("{sign}{int}")),
    }
}

/// A whole number in the spellings [`decimal`] reads (`1.200` → `1200`, `1.200,00` → `1200`);
/// `None` for a fraction or anything that is not a number (`ca. 12`).
pub fn integer(s: &str) -> Option<String> {
    let number = decimal(s)?;
    match number.split_once('.') {
        None => Some(number),
        Some((int, frac)) if frac.bytes().all(|b| b == b'0') => Some(int.to_owned()),
        Some(_) => None,
    }
}

/// A business type: restaurant, Gaststätte, Gasthaus, Gasthof, Bistro, Café → `RESTAURANT`;
/// Hotel, Pension, "Gasthof mit Übernachtung" → `HOTEL`; Kantine, Betriebsrestaurant, Mensa,
/// canteen, Gemeinschaftsverpflegung → `CANTEEN`; Catering, Caterer, Partyservice → `CATERING`;
/// Sonstige, Andere, other → `OTHER`; the API names in any case.
pub fn business_type(s: &str) -> Option<&'static str> {
    Some(match normalise_key(s).as_str() {
        "restaurant" | "gaststatte" | "gaststaette" | "gasthaus" | "gasthof" | "bistro"
        | "cafe" | "wirtshaus" => "RESTAURANT",
        "hotel" | "pension" | "gasthofmitubernachtung" | "hotelgarni" => "HOTEL",
        "canteen"
        | "kantine"
        | "betriebskantine"
        | "betriebsrestaurant"
        | "mensa"
        | "gemeinschaftsverpflegung" => "CANTEEN",
        "catering" | "caterer" | "partyservice" => "CATERING",
        "other" | "sonstige" | "sonstiges" | "andere" | "anderes" => "OTHER",
        _ => return None,
    })
}

/// A kitchen size: klein, small, S → `SMALL`; mittel, medium, M → `MEDIUM`; groß, gross, large,
/// L → `LARGE`; the API names in any case.
pub fn kitchen_size(s: &str) -> Option<&'static str> {
    Some(match normalise_key(s).as_str() {
        "small" | "klein" | "s" => "SMALL",
        "medium" | "mittel" | "m" => "MEDIUM",
        "large" | "gross" | "l" => "LARGE",
        _ => return None,
    })
}

/// A lead source: web, Website, Internet → `WEB`; E-Mail, Mail → `EMAIL`; Telefon, phone, Anruf
/// → `PHONE`; Messe, event, Veranstaltung, fair → `EVENT`; Partner, Empfehlung → `PARTNER`;
/// Import, Liste, list → `IMPORT`; the API names in any case.
pub fn source(s: &str) -> Option<&'static str> {
    Some(match normalise_key(s).as_str() {
        "web" | "website" | "webseite" | "internet" => "WEB",
        "email" | "mail" => "EMAIL",
        "phone" | "telefon" | "anruf" => "PHONE",
        "event" | "messe" | "veranstaltung" | "fair" => "EVENT",
        "partner" | "empfehlung" => "PARTNER",
        "import" | "liste" | "list" => "IMPORT",
        _ => return None,
    })
}

/// An RFC 3339 timestamp. RFC 3339 text comes back as it was (with `T` and `Z` upper-cased);
/// a date — ISO `2026-12-06` or German `06.12.2026`/`6.12.2026` — with an optional time of day
/// (`14:30`, `14:30:15`, `14:30 Uhr`) and no offset is read as UTC: `06.12.2026 14:30` →
/// `2026-12-06T14:30:00Z`. Europe/Berlin would be more correct for a German list's local
/// dates, but the import states its dates as UTC (midnight for a bare date), the same on every
/// server; a file that needs the exact instant writes the offset.
pub fn timestamp(s: &str) -> Option<String> {
    let s = s.trim();
    let split = s.find(['T', 't', ' ']).unwrap_or(s.len());
    let (date, rest) = s.split_at(split);
    let (y, m, d) = iso_date(date).or_else(|| german_date(date))?;
    if !(1..=12).contains(&m) || d == 0 || d > days_in_month(y, m) {
        return None;
    }
    let rest = rest.get(1..).unwrap_or("").trim();
    let rest = rest.strip_suffix("Uhr").map_or(rest, str::trim_end);
    let (clock, offset) = split_offset(rest)?;
    let (h, min, sec) = match clock.split(':').collect::<Vec<_>>()[..] {
        [""] => ("0", "00", "00"),
        [h, min] => (h, min, "00"),
        [h, min, sec] => (h, min, sec),
        _ => return None,
    };
    let (whole_sec, fraction) = sec
        .split_once('.')
        .map_or((sec, None), |(w, f)| (w, Some(f)));
    let h = number(h, 1..=2).filter(|h| *h < 24)?;
    let min = number(min, 2..=2).filter(|m| *m < 60)?;
    let whole_sec = number(whole_sec, 2..=2).filter(|s| *s < 60)?;
    let fraction = match fraction {
        Some(f) if is_digits(f) => format!(".{f}"),
        Some(_) => return None,
        None => String::new(),
    };
    Some(format!(
        "{y:04}-{m:02}-{d:02}T{h:02}:{min:02}:{whole_sec:02}{fraction}{offset}"
    ))
}

/// `YYYY-MM-DD`.
fn iso_date(s: &str) -> Option<(u32, u32, u32)> {
    match s.split('-').collect::<Vec<_>>()[..] {
        [y, m, d] => Some((number(y, 4..=4)?, number(m, 2..=2)?, number(d, 2..=2)?)),
        _ => None,
    }
}

/// `D.M.YYYY` with one- or two-digit day and month.
fn german_date(s: &str) -> Option<(u32, u32, u32)> {
    match s.split('.').collect::<Vec<_>>()[..] {
        [d, m, y] => Some((number(y, 4..=4)?, number(m, 1..=2)?, number(d, 1..=2)?)),
        _ => None,
    }
}

/// The clock part of a time of day and its offset: `Z` for `Z`, `z` or none, else `±HH:MM`.
fn split_offset(s: &str) -> Option<(&str, String)> {
    if let Some(clock) = s.strip_suffix(['Z', 'z']) {
        return Some((clock, "Z".to_owned()));
    }
    let offset_at = s.len().checked_sub(6).filter(|at| {
        s.get(*at..)
            .is_some_and(|offset| offset.starts_with(['+', '-']))
    });
    let Some(at) = offset_at else {
        return Some((s, "Z".to_owned()));
    };
    let (clock, offset) = s.split_at(at);
    let (h, m) = offset[1..].split_once(':')?;
    number(h, 2..=2).filter(|h| *h < 24)?;
    number(m, 2..=2).filter(|m| *m < 60)?;
    Some((clock, offset.to_owned()))
}

fn days_in_month(y: u32, m: u32) -> u32 {
    match m {
        2 if y.is_multiple_of(4) && (!y.is_multiple_of(100) || y.is_multiple_of(400)) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// `s` as a number when it is all ASCII digits, as many as `len` allows.
fn number(s: &str, len: std::ops::RangeInclusive<usize>) -> Option<u32> {
    (len.contains(&s.len()) && is_digits(s))
        .then(|| s.parse().ok())
        .flatten()
}

fn is_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

/// The digits of `int` when `sep`, if present, separates groups of three after a first group of
/// one to three digits.
fn without_thousands(int: &str, sep: char) -> Option<String> {
    let mut groups = int.split(sep);
    let first = groups.next()?;
    let grouped = int.contains(sep);
    if !is_digits(first) || (grouped && first.len() > 3) {
        return None;
    }
    let mut digits = first.to_owned();
    for group in groups {
        if group.len() != 3 || !is_digits(group) {
            return None;
        }
        digits.push_str(group);
    }
    Some(digits)
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &s[prefix.len()..])
}

fn strip_suffix_ci<'a>(s: &'a str, suffix: &str) -> Option<&'a str> {
    let at = s.len().checked_sub(suffix.len())?;
    let tail = s.get(at..)?;
    tail.eq_ignore_ascii_case(suffix).then(|| &s[..at])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yes_no_reads_german_english_and_marks() {
        for yes in [
            "ja", "J", "yes", "Y", "TRUE", "wahr", "1", "x", "X", "✓", "ok", "oui", "Si", " ja ",
        ] {
            assert_eq!(yes_no(yes), Some(true), "{yes}");
        }
        for no in ["nein", "N", "no", "false", "Falsch", "0", "-", "non"] {
            assert_eq!(yes_no(no), Some(false), "{no}");
        }
        for other in ["vielleicht", "2", "jein"] {
            assert_eq!(yes_no(other), None, "{other}");
        }
    }

    #[test]
    fn country_reads_dach_names_and_codes() {
        let cases = [
            ("DE", "DE"),
            ("d", "DE"),
            ("DEU", "DE"),
            ("Deutschland", "DE"),
            ("Germany", "DE"),
            ("Allemagne", "DE"),
            ("BRD", "DE"),
            ("CH", "CH"),
            ("CHE", "CH"),
            ("Schweiz", "CH"),
            ("Switzerland", "CH"),
            ("Suisse", "CH"),
            ("Svizzera", "CH"),
            ("AT", "AT"),
            ("AUT", "AT"),
            ("Österreich", "AT"),
            ("Austria", "AT"),
            (" fr ", "FR"),
            ("it", "IT"),
        ];
        for (raw, code) in cases {
            assert_eq!(country(raw).as_deref(), Some(code), "{raw}");
        }
        for other in ["Frankreich", "F1", "123", "E"] {
            assert_eq!(country(other), None, "{other}");
        }
    }

    #[test]
    fn decimal_reads_german_english_and_swiss_spellings() {
        let cases = [
            ("1.234,56", "1234.56"),
            ("1234,5", "1234.5"),
            ("1,234.56", "1234.56"),
            ("1234.56", "1234.56"),
            ("12.000", "12000"),
            ("1.234.567", "1234567"),
            ("1,234,567", "1234567"),
            ("1,234", "1.234"),
            ("0.125", "0.125"),
            ("1234.567", "1234.567"),
            ("€ 1.200,00", "1200.00"),
            ("1.200,00 €", "1200.00"),
            ("1.200,- €", "1200"),
            ("CHF 900", "900"),
            ("EUR 5", "5"),
            ("5 Euro", "5"),
            ("1'200", "1200"),
            ("1’200.50 Fr.", "1200.50"),
            ("12\u{a0}000", "12000"),
            ("1 234,5", "1234.5"),
            ("-12,5", "-12.5"),
            ("+7", "7"),
            ("42", "42"),
        ];
        for (raw, plain) in cases {
            assert_eq!(decimal(raw).as_deref(), Some(plain), "{raw}");
        }
        for other in [
            "ca. 12",
            "12 Mitarbeiter",
            "",
            "€",
            "1.2.3",
            "1.234,5,6",
            "12,34.5.6",
            "1e5",
            ",5",
        ] {
            assert_eq!(decimal(other), None, "{other}");
        }
    }

    #[test]
    fn integer_wants_whole_numbers() {
        let cases = [
            ("1.200", "1200"),
            ("12", "12"),
            ("1.200,00", "1200"),
            ("1'500", "1500"),
        ];
        for (raw, plain) in cases {
            assert_eq!(integer(raw).as_deref(), Some(plain), "{raw}");
        }
        for other in ["ca. 12", "12,5", "1.5", "viele"] {
            assert_eq!(integer(other), None, "{other}");
        }
    }

    #[test]
    fn enums_read_their_german_and_english_names() {
        let types = [
            ("Restaurant", "RESTAURANT"),
            ("Gaststätte", "RESTAURANT"),
            ("Gasthaus", "RESTAURANT"),
            ("Gasthof", "RESTAURANT"),
            ("Bistro", "RESTAURANT"),
            ("Café", "RESTAURANT"),
            ("cafe", "RESTAURANT"),
            ("Hotel", "HOTEL"),
            ("Pension", "HOTEL"),
            ("Gasthof mit Übernachtung", "HOTEL"),
            ("Kantine", "CANTEEN"),
            ("Betriebsrestaurant", "CANTEEN"),
            ("Mensa", "CANTEEN"),
            ("canteen", "CANTEEN"),
            ("Gemeinschaftsverpflegung", "CANTEEN"),
            ("Catering", "CATERING"),
            ("Caterer", "CATERING"),
            ("Party-Service", "CATERING"),
            ("Sonstige", "OTHER"),
            ("Sonstiges", "OTHER"),
            ("andere", "OTHER"),
            ("OTHER", "OTHER"),
        ];
        for (raw, api) in types {
            assert_eq!(business_type(raw), Some(api), "{raw}");
        }
        assert_eq!(business_type("Imbiss"), None);

        let sizes = [
            ("klein", "SMALL"),
            ("small", "SMALL"),
            ("S", "SMALL"),
            ("mittel", "MEDIUM"),
            ("Medium", "MEDIUM"),
            ("m", "MEDIUM"),
            ("groß", "LARGE"),
            ("GROSS", "LARGE"),
            ("large", "LARGE"),
            ("L", "LARGE"),
        ];
        for (raw, api) in sizes {
            assert_eq!(kitchen_size(raw), Some(api), "{raw}");
        }
        assert_eq!(kitchen_size("XL"), None);

        let sources = [
            ("web", "WEB"),
            ("Website", "WEB"),
            ("Internet", "WEB"),
            ("E-Mail", "EMAIL"),
            ("mail", "EMAIL"),
            ("Telefon", "PHONE"),
            ("phone", "PHONE"),
            ("Anruf", "PHONE"),
            ("Messe", "EVENT"),
            ("EVENT", "EVENT"),
            ("Veranstaltung", "EVENT"),
            ("fair", "EVENT"),
            ("Partner", "PARTNER"),
            ("Empfehlung", "PARTNER"),
            ("Import", "IMPORT"),
            ("Liste", "IMPORT"),
            ("list", "IMPORT"),
        ];
        for (raw, api) in sources {
            assert_eq!(source(raw), Some(api), "{raw}");
        }
        assert_eq!(source("Zeitung"), None);
    }

    #[test]
    fn timestamp_reads_rfc3339_iso_and_german_dates() {
        let cases = [
            ("2026-12-06T14:30:00Z", "2026-12-06T14:30:00Z"),
            (
                "2026-12-06T14:30:00.123+01:00",
                "2026-12-06T14:30:00.123+01:00",
            ),
            ("2026-12-06t14:30:00-05:30", "2026-12-06T14:30:00-05:30"),
            ("2026-12-06", "2026-12-06T00:00:00Z"),
            ("2026-12-06 14:30", "2026-12-06T14:30:00Z"),
            ("06.12.2026", "2026-12-06T00:00:00Z"),
            ("6.12.2026", "2026-12-06T00:00:00Z"),
            ("6.2.2028", "2028-02-06T00:00:00Z"),
            ("06.12.2026 14:30", "2026-12-06T14:30:00Z"),
            ("06.12.2026 9:05:07", "2026-12-06T09:05:07Z"),
            ("06.12.2026 14:30 Uhr", "2026-12-06T14:30:00Z"),
            ("29.02.2028", "2028-02-29T00:00:00Z"),
        ];
        for (raw, rfc3339) in cases {
            assert_eq!(timestamp(raw).as_deref(), Some(rfc3339), "{raw}");
        }
        let others = [
            "06.12.26",
            "29.02.2027",
            "31.04.2026",
            "2026-13-01",
            "06.12.2026 24:00",
            "06.12.2026 14",
            "2026-12-06T14:30:00+1:00",
            "morgen",
            "",
        ];
        for other in others {
            assert_eq!(timestamp(other), None, "{other}");
        }
    }
}
