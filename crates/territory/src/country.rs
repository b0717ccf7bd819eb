use crate::TerritoryId;

/// A country code that is not an officially assigned ISO 3166-1 alpha-2 code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CountryError {
    /// The code as given (before trimming and upper-casing) is not a valid country code.
    #[error("invalid country code {0:?}: expected an ISO 3166-1 alpha-2 code such as \"DE\"")]
    Invalid(String),
}

/// The 249 officially assigned ISO 3166-1 alpha-2 codes, sorted (checked against the
/// `iso3166.tab` of the IANA time zone database and Debian's `iso-codes`).
pub(crate) const COUNTRY_CODES: [&str; 249] = [
    "AD", "AE", "AF", "AG", "AI", "AL", "AM", "AO", "AQ", "AR", "AS", "AT", "AU", "AW", "AX", "AZ",
    "BA", "BB", "BD", "BE", "BF", "BG", "BH", "BI", "BJ", "BL", "BM", "BN", "BO", "BQ", "BR", "BS",
    "BT", "BV", "BW", "BY", "BZ", "CA", "CC", "CD", "CF", "CG", "CH", "CI", "CK", "CL", "CM", "CN",
    "CO", "CR", "CU", "CV", "CW", "CX", "CY", "CZ", "DE", "DJ", "DK", "DM", "DO", "DZ", "EC", "EE",
    "EG", "EH", "ER", "ES", "ET", "FI", "FJ", "FK", "FM", "FO", "FR", "GA", "GB", "GD", "GE", "GF",
    "GG", "GH", "GI", "GL", "GM", "GN", "GP", "GQ", "GR", "GS", "GT", "GU", "GW", "GY", "HK", "HM",
    "HN", "HR", "HT", "HU", "ID", "IE", "IL", "IM", "IN", "IO", "IQ", "IR", "IS", "IT", "JE", "JM",
    "JO", "JP", "KE", "KG", "KH", "KI", "KM", "KN", "KP", "KR", "KW", "KY", "KZ", "LA", "LB", "LC",
    "LI", "LK", "LR", "LS", "LT", "LU", "LV", "LY", "MA", "MC", "MD", "ME", "MF", "MG", "MH", "MK",
    "ML", "MM", "MN", "MO", "MP", "MQ", "MR", "MS", "MT", "MU", "MV", "MW", "MX", "MY", "MZ", "NA",
    "NC", "NE", "NF", "NG", "NI", "NL", "NO", "NP", "NR", "NU", "NZ", "OM", "PA", "PE", "PF", "PG",
    "PH", "PK", "PL", "PM", "PN", "PR", "PS", "PT", "PW", "PY", "QA", "RE", "RO", "RS", "RU", "RW",
    "SA", "SB", "SC", "SD", "SE", "SG", "SH", "SI", "SJ", "SK", "SL", "SM", "SN", "SO", "SR", "SS",
    "ST", "SV", "SX", "SY", "SZ", "TC", "TD", "TF", "TG", "TH", "TJ", "TK", "TL", "TM", "TN", "TO",
    "TR", "TT", "TV", "TW", "TZ", "UA", "UG", "UM", "US", "UY", "UZ", "VA", "VC", "VE", "VG", "VI",
    "VN", "VU", "WF", "WS", "YE", "YT", "ZA", "ZM", "ZW",
];

/// Whether `code` is an officially assigned ISO 3166-1 alpha-2 code once trimmed and
/// upper-cased (so `" de "` is valid; `"DEU"`, `"D"`, `"XX"` and `""` are not).
///
/// Exactly when [`normalise_country_code`] succeeds.
pub fn is_valid_country_code(code: &str) -> bool {
    normalise_country_code(code).is_ok()
}

/// Every ISO 3166-1 alpha-2 code [`normalise_country_code`] accepts, upper case and sorted.
///
/// ```
/// assert!(freshplan_territory::country_codes().contains(&"LI"));
/// ```
pub fn country_codes() -> &'static [&'static str] {
    &COUNTRY_CODES
}

/// Trims `code`, upper-cases it (ASCII only) and checks it against the officially assigned
/// ISO 3166-1 alpha-2 codes.
///
/// ```
/// use freshplan_territory::{CountryError, normalise_country_code};
///
/// assert_eq!(normalise_country_code(" at "), Ok("AT".to_owned()));
/// assert_eq!(normalise_country_code("DEU"), Err(CountryError::Invalid("DEU".to_owned())));
/// ```
///
/// # Errors
///
/// [`CountryError::Invalid`] with the code as given when it is not an assigned code.
pub fn normalise_country_code(code: &str) -> Result<String, CountryError> {
    // ASCII upper-casing only: Unicode upper-casing would turn e.g. the ligature "ﬅ" into "ST".
    let normalised = code.trim().to_ascii_uppercase();
    if COUNTRY_CODES.binary_search(&normalised.as_str()).is_ok() {
        Ok(normalised)
    } else {
        Err(CountryError::Invalid(code.to_owned()))
    }
}

/// The territory whose data room holds customers of the given country (SPEC §1): `CH` and `LI`
/// belong to `CH`, every other valid country code to `DE`.
///
/// ```
/// use freshplan_territory::{TerritoryId, territory_for_country};
///
/// assert_eq!(territory_for_country("LI"), Ok(TerritoryId::Ch));
/// assert_eq!(territory_for_country("fr"), Ok(TerritoryId::De));
/// ```
///
/// # Errors
///
/// [`CountryError::Invalid`] when `code` is not a valid country code — an invalid code never
/// falls back to `DE`.
pub fn territory_for_country(code: &str) -> Result<TerritoryId, CountryError> {
    match normalise_country_code(code)?.as_str() {
        "CH" | "LI" => Ok(TerritoryId::Ch),
        _ => Ok(TerritoryId::De),
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn the_code_list_is_sorted_unique_and_complete() {
        assert_eq!(COUNTRY_CODES.len(), 249);
        assert!(COUNTRY_CODES.windows(2).all(|w| w[0] < w[1]));
        assert!(
            COUNTRY_CODES
                .iter()
                .all(|c| c.len() == 2 && c.bytes().all(|b| b.is_ascii_uppercase()))
        );
    }

    #[test]
    fn assigned_codes_are_valid() {
        for code in ["DE", "CH", "LI", "AT", "FR", "US", "GB", "SS", "XK"] {
            // XK (Kosovo) is a user-assigned code, not an official one.
            assert_eq!(is_valid_country_code(code), code != "XK", "{code}");
        }
    }

    #[test]
    fn reserved_and_withdrawn_codes_are_invalid() {
        // Exceptionally reserved (UK, EU), transitionally reserved (AN, YU), withdrawn (DD, CS),
        // user-assigned (XX, ZZ, AA).
        for code in ["UK", "EU", "AN", "YU", "DD", "CS", "XX", "ZZ", "AA", "QM"] {
            assert!(!is_valid_country_code(code), "{code}");
        }
    }

    #[test]
    fn normalisation_trims_and_upper_cases() {
        assert_eq!(normalise_country_code("ch"), Ok("CH".to_owned()));
        assert_eq!(normalise_country_code("  De\t"), Ok("DE".to_owned()));
        assert_eq!(normalise_country_code("uS"), Ok("US".to_owned()));
        assert!(is_valid_country_code(" li "));
    }

    #[test]
    fn malformed_codes_are_errors_carrying_the_input() {
        for code in ["", "  ", "D", "DEU", "D E", "DE1", "ﬅ", "Ä"] {
            assert_eq!(
                normalise_country_code(code),
                Err(CountryError::Invalid(code.to_owned())),
                "{code:?}"
            );
            assert!(!is_valid_country_code(code), "{code:?}");
        }
    }

    #[test]
    fn country_resolution() {
        assert_eq!(territory_for_country("CH"), Ok(TerritoryId::Ch));
        assert_eq!(territory_for_country("LI"), Ok(TerritoryId::Ch));
        assert_eq!(territory_for_country("li"), Ok(TerritoryId::Ch));
        assert_eq!(territory_for_country("DE"), Ok(TerritoryId::De));
        assert_eq!(territory_for_country("AT"), Ok(TerritoryId::De));
        assert_eq!(territory_for_country("FR"), Ok(TerritoryId::De));
        assert_eq!(territory_for_country("us"), Ok(TerritoryId::De));
        for bad in ["XX", "", "DEU", "D"] {
            assert_eq!(
                territory_for_country(bad),
                Err(CountryError::Invalid(bad.to_owned())),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn error_message_names_the_code() {
        let message = CountryError::Invalid("XX".to_owned()).to_string();
        assert!(message.contains("\"XX\""), "{message}");
    }

    proptest! {
        #[test]
        fn only_ch_and_li_resolve_to_ch(code in crate::testing::country_code()) {
            let expected = if code == "CH" || code == "LI" { TerritoryId::Ch } else { TerritoryId::De };
            prop_assert_eq!(territory_for_country(&code), Ok(expected));
        }

        #[test]
        fn normalisation_is_case_and_space_insensitive(
            code in crate::testing::country_code(),
            lower in proptest::sample::select(vec![0b00, 0b01, 0b10, 0b11]),
            pad in "[ \t]{0,2}",
        ) {
            let mut chars: Vec<char> = code.chars().collect();
            for (i, c) in chars.iter_mut().enumerate() {
                if lower & (1 << i) != 0 {
                    *c = c.to_ascii_lowercase();
                }
            }
            let messy: String = format!("{pad}{}{pad}", chars.into_iter().collect::<String>());
            prop_assert_eq!(normalise_country_code(&messy), Ok(code.clone()));
            prop_assert_eq!(territory_for_country(&messy), territory_for_country(&code));
        }

        #[test]
        fn anything_not_in_the_list_is_rejected(code in "\\PC{0,4}") {
            let listed = COUNTRY_CODES.contains(&code.trim().to_ascii_uppercase().as_str());
            prop_assert_eq!(is_valid_country_code(&code), listed);
            prop_assert_eq!(territory_for_country(&code).is_ok(), listed);
        }
    }
}
