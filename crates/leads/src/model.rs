//! The Lead aggregate's value types: validated newtypes and closed enums (SPEC §4.1).

use serde::{Deserialize, Serialize};

/// A field-level validation failure: which field, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct FieldError {
    /// The API name of the field (camelCase).
    pub field: &'static str,
    /// A human-readable reason.
    pub message: String,
}

impl FieldError {
    /// A new field error.
    pub fn new(field: &'static str, message: impl Into<String>) -> FieldError {
        FieldError {
            field,
            message: message.into(),
        }
    }
}

macro_rules! closed_enum {
    ($(#[$meta:meta])* $name:ident, $field:literal { $($(#[$vmeta:meta])* $variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
        pub enum $name {
            $($(#[$vmeta])* #[serde(rename = $text)] $variant),+
        }

        impl $name {
            /// Every value, in a stable order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The API/database spelling.
            pub const fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl std::str::FromStr for $name {
            type Err = $crate::model::FieldError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($text => Ok($name::$variant),)+
                    _ => Err($crate::model::FieldError::new($field, format!(
                        "unknown value {s:?}; allowed: {}",
                        [$($text),+].join(", ")
                    ))),
                }
            }
        }
    };
}
pub(crate) use closed_enum;

closed_enum!(
    /// The kind of food-service business.
    BusinessType, "businessType" {
        /// A restaurant.
        Restaurant => "RESTAURANT",
        /// A hotel.
        Hotel => "HOTEL",
        /// A canteen.
        Canteen => "CANTEEN",
        /// A caterer.
        Catering => "CATERING",
        /// Anything else.
        Other => "OTHER",
    }
);

closed_enum!(
    /// The size of the prospect's kitchen.
    KitchenSize, "kitchenSize" {
        /// Small.
        Small => "SMALL",
        /// Medium.
        Medium => "MEDIUM",
        /// Large.
        Large => "LARGE",
    }
);

closed_enum!(
    /// Where the lead came from.
    LeadSource, "source" {
        /// Web form (the default).
        Web => "WEB",
        /// Email.
        Email => "EMAIL",
        /// Phone.
        Phone => "PHONE",
        /// A trade fair or event.
        Event => "EVENT",
        /// A partner.
        Partner => "PARTNER",
        /// A bulk import.
        Import => "IMPORT",
    }
);

/// Trims an optional text field and checks its length; empty becomes `None`. Control characters
/// are refused.
pub fn bounded_text(
    field: &'static str,
    value: Option<&str>,
    max_chars: usize,
) -> Result<Option<String>, FieldError> {
    checked_text(
        field,
        value,
        max_chars,
        |_| false,
        "must not contain control characters",
    )
}

/// Trims an optional free text that may span lines (an activity description, a stop reason) and
/// checks its length; empty becomes `None`. Line breaks and tabs are allowed, every other control
/// character is refused (SPEC §9: text never holds U+0000, which PostgreSQL cannot store).
pub fn multiline_text(
    field: &'static str,
    value: Option<&str>,
    max_chars: usize,
) -> Result<Option<String>, FieldError> {
    checked_text(
        field,
        value,
        max_chars,
        |c| matches!(c, '\n' | '\r' | '\t'),
        "must not contain control characters other than line breaks and tabs",
    )
}

/// The rule of both: trimmed, at most `max_chars`, no control character but the `allowed` ones.
fn checked_text(
    field: &'static str,
    value: Option<&str>,
    max_chars: usize,
    allowed: fn(char) -> bool,
    refusal: &'static str,
) -> Result<Option<String>, FieldError> {
    match value.map(str::trim) {
        None | Some("") => Ok(None),
        Some(v) if v.chars().count() > max_chars => Err(FieldError::new(
            field,
            format!("must be at most {max_chars} characters"),
        )),
        Some(v) if v.chars().any(|c| c.is_control() && !allowed(c)) => {
            Err(FieldError::new(field, refusal))
        }
        Some(v) => Ok(Some(v.to_owned())),
    }
}

/// The legal forms stripped from the end of a company name for duplicate detection (lower-case).
const LEGAL_FORMS: &[&str] = &[
    "gmbh & co. kg",
    "gmbh & co kg",
    "gmbh & co. kgaa",
    "ag & co. kg",
    "ggmbh",
    "gmbh",
    "mbh",
    "ag",
    "kgaa",
    "kg",
    "ohg",
    "gbr",
    "ug (haftungsbeschränkt)",
    "ug",
    "e.k.",
    "e.v.",
    "eg",
    "sàrl",
    "sarl",
    "sa",
    "se",
    "ltd.",
    "ltd",
    "inc.",
    "inc",
];

/// A company name: 1–255 characters after trimming (SPEC §4.1).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct CompanyName(String);

impl CompanyName {
    /// The longest accepted name, in characters.
    pub const MAX_LEN: usize = 255;

    /// Parses a company name.
    pub fn parse(raw: &str) -> Result<CompanyName, FieldError> {
        match bounded_text("companyName", Some(raw), Self::MAX_LEN)? {
            Some(v) => Ok(CompanyName(v)),
            None => Err(FieldError::new("companyName", "must not be empty")),
        }
    }

    /// The name as entered (trimmed).
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The duplicate-detection form: see [`normalise_company_name`].
    pub fn normalised(&self) -> String {
        normalise_company_name(&self.0)
    }
}

impl TryFrom<String> for CompanyName {
    type Error = FieldError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        CompanyName::parse(&value)
    }
}

impl From<CompanyName> for String {
    fn from(value: CompanyName) -> Self {
        value.0
    }
}

/// Normalises a company name for duplicate detection (SPEC §4.2): lower-cased, whitespace
/// collapsed, trailing legal forms (GmbH, AG, KG, UG, Sàrl, …) removed — repeatedly, so the
/// function is idempotent — and a trailing comma or dot dropped.
///
/// ```
/// use freshplan_leads::model::normalise_company_name;
/// assert_eq!(normalise_company_name("  Gasthaus  Zur Post GmbH "), "gasthaus zur post");
/// assert_eq!(normalise_company_name("Müller & Söhne GmbH & Co. KG"), "müller & söhne");
/// assert_eq!(normalise_company_name("Café du Lac Sàrl"), "café du lac");
/// ```
pub fn normalise_company_name(raw: &str) -> String {
    let mut s = raw
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase();
    loop {
        let before = s.len();
        for form in LEGAL_FORMS {
            if let Some(rest) = s.strip_suffix(form) {
                // Only a whole trailing word: "bag" must not lose its "ag".
                if rest.is_empty() || rest.ends_with(' ') || rest.ends_with(',') {
                    let trimmed = rest.trim_end_matches([' ', ',']);
                    if !trimmed.is_empty() {
                        s = trimmed.to_owned();
                        break;
                    }
                }
            }
        }
        let t = s.trim_end_matches([' ', ',', '.']).to_owned();
        if !t.is_empty() {
            s = t;
        }
        if s.len() == before {
            return s;
        }
    }
}

/// An email address: trimmed, ≤ 254 characters, one `@`, a plausible domain.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Email(String);

impl Email {
    /// The longest accepted address.
    pub const MAX_LEN: usize = 254;

    /// Parses an address. The stored form is trimmed; see [`Email::normalised`] for the
    /// duplicate key.
    pub fn parse(raw: &str) -> Result<Email, FieldError> {
        let v = raw.trim();
        let invalid = |m: &str| Err(FieldError::new("email", m.to_owned()));
        if v.is_empty() {
            return invalid("must not be empty");
        }
        if v.chars().count() > Self::MAX_LEN {
            return invalid("must be at most 254 characters");
        }
        let Some((local, domain)) = v.rsplit_once('@') else {
            return invalid("is not a valid email address");
        };
        let local_ok = !local.is_empty()
            && local.len() <= 64
            && !local.starts_with('.')
            && !local.ends_with('.')
            && !local.contains("..")
            && local
                .chars()
                .all(|c| c.is_alphanumeric() || "!#$%&'*+-/=?^_`{|}~.".contains(c));
        let labels: Vec<&str> = domain.split('.').collect();
        let domain_ok = labels.len() >= 2
            && labels.iter().all(|l| {
                !l.is_empty()
                    && l.len() <= 63
                    && !l.starts_with('-')
                    && !l.ends_with('-')
                    && l.chars().all(|c| c.is_alphanumeric() || c == '-')
            })
            && labels.last().is_some_and(|tld| {
                tld.chars().count() >= 2 && tld.chars().all(char::is_alphabetic)
            });
        if !local_ok || !domain_ok {
            return invalid("is not a valid email address");
        }
        Ok(Email(v.to_owned()))
    }

    /// The address as entered (trimmed).
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The duplicate key: trimmed and lower-cased.
    pub fn normalised(&self) -> String {
        normalise_email(&self.0)
    }
}

/// The duplicate key of an email address: trimmed, lower-cased (idempotent).
pub fn normalise_email(raw: &str) -> String {
    raw.trim().to_lowercase()
}

impl TryFrom<String> for Email {
    type Error = FieldError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Email::parse(&value)
    }
}

impl From<Email> for String {
    fn from(value: Email) -> Self {
        value.0
    }
}

/// A non-negative amount with two decimal places, held in cents (`estimatedVolume`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Volume(i64);

impl Volume {
    /// The largest accepted amount in cents (fits a `numeric(14,2)` column).
    pub const MAX_CENTS: i64 = 99_999_999_999_999;

    /// From cents; negative or too large is an error.
    pub fn from_cents(cents: i64) -> Result<Volume, FieldError> {
        if !(0..=Self::MAX_CENTS).contains(&cents) {
            return Err(FieldError::new(
                "estimatedVolume",
                "must be between 0 and 999999999999.99",
            ));
        }
        Ok(Volume(cents))
    }

    /// Parses a decimal such as `1234.5` or `10`: at most two decimal places, ≥ 0.
    ///
    /// ```
    /// use freshplan_leads::model::Volume;
    /// assert_eq!(Volume::parse_decimal("1234.5").unwrap().cents(), 123_450);
    /// assert!(Volume::parse_decimal("-1").is_err());
    /// assert!(Volume::parse_decimal("1.234").is_err());
    /// ```
    pub fn parse_decimal(s: &str) -> Result<Volume, FieldError> {
        let err = |m: &str| FieldError::new("estimatedVolume", m.to_owned());
        let s = s.trim();
        if s.starts_with('-') {
            return Err(err("must be greater than or equal to 0"));
        }
        // JSON may render small numbers in exponent form; accept only plain decimals.
        let (int, frac) = s.split_once('.').unwrap_or((s, ""));
        if int.is_empty()
            || !int.bytes().all(|b| b.is_ascii_digit())
            || !frac.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(err(
                "must be a decimal number with at most two decimal places",
            ));
        }
        let frac_trimmed = frac.trim_end_matches('0');
        if frac_trimmed.len() > 2 {
            return Err(err("must have at most two decimal places"));
        }
        let int_value: i64 = int.parse().map_err(|_| err("is too large"))?;
        let mut frac_cents = 0i64;
        for (i, b) in frac_trimmed.bytes().enumerate() {
            frac_cents += i64::from(b - b'0') * if i == 0 { 10 } else { 1 };
        }
        let cents = int_value
            .checked_mul(100)
            .and_then(|c| c.checked_add(frac_cents))
            .ok_or_else(|| err("is too large"))?;
        Volume::from_cents(cents)
    }

    /// The amount in cents.
    pub const fn cents(self) -> i64 {
        self.0
    }

    /// The amount as a decimal string with two places, e.g. `"1234.50"`.
    pub fn to_decimal_string(self) -> String {
        format!("{}.{:02}", self.0 / 100, self.0 % 100)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_company_name_is_written_as_entered_trimmed_and_read_back_the_same() {
        let name = CompanyName::parse("  Gasthaus Zur Post GmbH ").unwrap();
        let json = serde_json::to_string(&name).unwrap();
        assert_eq!(json, "\"Gasthaus Zur Post GmbH\"");
        assert_eq!(serde_json::from_str::<CompanyName>(&json).unwrap(), name);
        assert_eq!(String::from(name), "Gasthaus Zur Post GmbH");
    }

    #[test]
    fn company_name_bounds() {
        assert!(CompanyName::parse("   ").is_err());
        assert!(CompanyName::parse(&"a".repeat(255)).is_ok());
        assert!(CompanyName::parse(&"a".repeat(256)).is_err());
        assert_eq!(CompanyName::parse("  X ").unwrap().as_str(), "X");
    }

    #[test]
    fn legal_forms_are_stripped_only_as_whole_words() {
        assert_eq!(normalise_company_name("Hotel Adler AG"), "hotel adler");
        assert_eq!(normalise_company_name("Kantine Nord UG"), "kantine nord");
        assert_eq!(normalise_company_name("Schmidt KG"), "schmidt");
        assert_eq!(normalise_company_name("Bag"), "bag");
        assert_eq!(
            normalise_company_name("Catering-Werk gmbh"),
            "catering-werk"
        );
        assert_eq!(normalise_company_name("GmbH"), "gmbh");
        assert_eq!(normalise_company_name("Alpha, GmbH."), "alpha");
    }

    #[test]
    fn emails() {
        for ok in ["a@b.de", "first.last+tag@sub.example.ch", "ÄÖ@müller.de"] {
            assert!(Email::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "", "a", "a@", "@b.de", "a@b", "a b@c.de", "a@@b.de", "a@b..de", ".a@b.de", "a@-b.de",
            "a@b.d3",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(
            Email::parse(" Max@Example.DE ").unwrap().normalised(),
            "max@example.de"
        );
        let long = format!("{}@{}.de", "a".repeat(64), "b".repeat(63));
        assert!(Email::parse(&long).is_ok());
    }

    #[test]
    fn an_email_may_be_254_characters_long_not_255() {
        // 64 + 1 + (63 + 1 + 63 + 1 + n + 3): valid in every part, only the length differs.
        let address = |n: usize| {
            format!(
                "{}@{}.{}.{}.de",
                "a".repeat(64),
                "b".repeat(63),
                "c".repeat(63),
                "d".repeat(n)
            )
        };
        assert_eq!(address(58).chars().count(), Email::MAX_LEN);
        assert!(Email::parse(&address(58)).is_ok());
        assert_eq!(
            Email::parse(&address(59)).unwrap_err().message,
            "must be at most 254 characters"
        );
        // Surrounding whitespace is trimmed before the length is counted.
        assert!(Email::parse(&format!("  {}  ", address(58))).is_ok());
    }

    #[test]
    fn an_email_is_kept_as_entered_trimmed_and_written_so() {
        let email = Email::parse("  Max.Muster@Example-Gastro.DE ").unwrap();
        assert_eq!(email.as_str(), "Max.Muster@Example-Gastro.DE");
        let json = serde_json::to_string(&email).unwrap();
        assert_eq!(json, "\"Max.Muster@Example-Gastro.DE\"");
        assert_eq!(serde_json::from_str::<Email>(&json).unwrap(), email);
        assert_eq!(String::from(email), "Max.Muster@Example-Gastro.DE");
    }

    #[test]
    fn a_domain_label_holds_letters_digits_and_inner_hyphens_only() {
        for ok in ["a@my-kitchen.de", "a@hotel-1.example.ch", "a@küche24.de"] {
            assert!(Email::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "a@my_kitchen.de",
            "a@my kitchen.de",
            "a@my+kitchen.de",
            "a@kitchen!.de",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_volume_is_a_plain_decimal_with_at_most_two_places() {
        for (raw, cents) in [
            ("10", 1_000),
            ("10.", 1_000),
            ("0.05", 5),
            ("1.5", 150),
            ("1.500", 150),
            (" 7.25 ", 725),
        ] {
            assert_eq!(Volume::parse_decimal(raw).unwrap().cents(), cents, "{raw}");
        }
        for raw in ["", ".5", "1.5x", "1.x", "1e5", "1.0e2", "1,5", "0x10", "+1"] {
            assert_eq!(
                Volume::parse_decimal(raw).unwrap_err().message,
                "must be a decimal number with at most two decimal places",
                "{raw:?}"
            );
        }
    }

    #[test]
    fn volumes() {
        assert_eq!(Volume::parse_decimal("0").unwrap().cents(), 0);
        assert_eq!(
            Volume::parse_decimal("12.30").unwrap().to_decimal_string(),
            "12.30"
        );
        assert_eq!(Volume::parse_decimal("12.300").unwrap().cents(), 1230);
        assert!(Volume::parse_decimal("1e3").is_err());
        assert!(Volume::parse_decimal("1000000000000").is_err());
        assert!(Volume::parse_decimal("").is_err());
    }

    #[test]
    fn enums_parse_strictly() {
        assert_eq!(
            "HOTEL".parse::<BusinessType>().unwrap(),
            BusinessType::Hotel
        );
        let e = "hotel".parse::<BusinessType>().unwrap_err();
        assert_eq!(e.field, "businessType");
        assert!("FAX".parse::<LeadSource>().is_err());
    }

    #[test]
    fn bounded_text_rules() {
        assert_eq!(bounded_text("city", Some("  "), 5).unwrap(), None);
        assert!(bounded_text("city", Some("123456"), 5).is_err());
        assert!(bounded_text("city", Some("a\u{0}b"), 5).is_err());
    }

    proptest! {
        #[test]
        fn company_normalisation_is_idempotent(s in "\\PC{0,40}( (GmbH|AG|KG|UG|Sàrl|gmbh & co. kg))*") {
            let once = normalise_company_name(&s);
            prop_assert_eq!(normalise_company_name(&once), once);
        }

        #[test]
        fn email_normalisation_is_idempotent(s in "\\PC{0,40}") {
            let once = normalise_email(&s);
            prop_assert_eq!(normalise_email(&once), once);
        }

        #[test]
        fn volume_round_trips(c in 0i64..=Volume::MAX_CENTS) {
            let v = Volume::from_cents(c).unwrap();
            prop_assert_eq!(Volume::parse_decimal(&v.to_decimal_string()).unwrap(), v);
        }
    }
}
