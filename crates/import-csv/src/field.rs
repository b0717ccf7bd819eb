//! The lead fields a column can fill, and how headers find them.

use crate::value;

/// A lead field a column can fill (the names are the API's JSON property names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[allow(missing_docs)] // the variants are the API's property names
pub enum Field {
    CompanyName,
    ContactPerson,
    Email,
    Phone,
    Website,
    Street,
    PostalCode,
    City,
    CountryCode,
    BusinessType,
    KitchenSize,
    EmployeeCount,
    EstimatedVolume,
    Industry,
    Source,
    SourceCampaign,
    EmailConsent,
    RegisteredAt,
    OwnerUserId,
}

/// Header aliases, space-separated, as [`normalise_key`] leaves them (a–z and 0–9 only).
#[rustfmt::skip] // one field a line, like the table in the crate doc
const ALIASES: &[(Field, &str)] = &[
    (Field::CompanyName, "firma firmenname unternehmen company name kunde betrieb organisation organization aussteller"),
    (Field::ContactPerson, "ansprechpartner ansprechperson kontakt kontaktperson contact contactname person"),
    (Field::Email, "mail emailadresse emailaddress"),
    (Field::Phone, "telefon tel telnr telefonnr telefonnummer phonenumber mobil mobiltelefon mobile handy"),
    (Field::Website, "webseite homepage internet url web"),
    (Field::Street, "strasse str adresse anschrift address streetaddress"),
    (Field::PostalCode, "plz postleitzahl zip zipcode postcode"),
    (Field::City, "ort stadt town wohnort"),
    (Field::CountryCode, "land country staat landeskennzeichen"),
    (Field::BusinessType, "betriebsart betriebstyp branchetyp type typ"),
    (Field::KitchenSize, "kuchengrosse kuechengroesse kuche kueche kitchen"),
    (Field::EmployeeCount, "mitarbeiter mitarbeiterzahl anzahlmitarbeiter beschaftigte beschaeftigte employees staff"),
    (Field::EstimatedVolume, "volumen umsatz jahresvolumen geschatztesvolumen geschaetztesvolumen volume potenzial potential"),
    (Field::Industry, "branche sector sektor"),
    (Field::Source, "quelle herkunft leadquelle"),
    (Field::SourceCampaign, "kampagne aktion messe campaign"),
    (Field::EmailConsent, "einwilligung emaileinwilligung werbeeinwilligung optin consent dsgvoeinwilligung newsletter"),
    (Field::RegisteredAt, "registriertam erfasstam datum registered createdat"),
    (Field::OwnerUserId, "besitzer inhaber vertriebler verantwortlich betreuer owner ownerid assignedto"),
];

impl Field {
    /// Every field, in the order of the API's lead body.
    pub const ALL: [Field; 19] = [
        Field::CompanyName,
        Field::ContactPerson,
        Field::Email,
        Field::Phone,
        Field::Website,
        Field::Street,
        Field::PostalCode,
        Field::City,
        Field::CountryCode,
        Field::BusinessType,
        Field::KitchenSize,
        Field::EmployeeCount,
        Field::EstimatedVolume,
        Field::Industry,
        Field::Source,
        Field::SourceCampaign,
        Field::EmailConsent,
        Field::RegisteredAt,
        Field::OwnerUserId,
    ];

    /// The field's JSON property name in the API (`"companyName"`, …).
    pub fn api_name(self) -> &'static str {
        match self {
            Field::CompanyName => "companyName",
            Field::ContactPerson => "contactPerson",
            Field::Email => "email",
            Field::Phone => "phone",
            Field::Website => "website",
            Field::Street => "street",
            Field::PostalCode => "postalCode",
            Field::City => "city",
            Field::CountryCode => "countryCode",
            Field::BusinessType => "businessType",
            Field::KitchenSize => "kitchenSize",
            Field::EmployeeCount => "employeeCount",
            Field::EstimatedVolume => "estimatedVolume",
            Field::Industry => "industry",
            Field::Source => "source",
            Field::SourceCampaign => "sourceCampaign",
            Field::EmailConsent => "emailConsent",
            Field::RegisteredAt => "registeredAt",
            Field::OwnerUserId => "ownerUserId",
        }
    }

    /// The field of an exact API property name (`"postalCode"`), for mappings sent as JSON.
    pub fn from_api_name(s: &str) -> Option<Field> {
        Field::ALL.into_iter().find(|f| f.api_name() == s)
    }

    /// The field a column header names: its API name or an alias of the crate's table, compared
    /// case-, accent- and punctuation-insensitively (`"E-Mail"`, `"Straße"`, `"PLZ"`).
    pub fn from_header(header: &str) -> Option<Field> {
        from_key(&normalise_key(header))
    }

    /// The API spelling of `raw` for this field (see the crate's value normalisers), or `raw`
    /// unchanged when the field has no normaliser or the normaliser does not recognise it — the
    /// lead validation then explains the refusal with the text the user wrote.
    ///
    /// ```
    /// use freshplan_import_csv::Field;
    /// assert_eq!(Field::CountryCode.normalise("Deutschland"), "DE");
    /// assert_eq!(Field::EmailConsent.normalise("ja"), "true");
    /// assert_eq!(Field::EstimatedVolume.normalise("1.200,50 €"), "1200.50");
    /// assert_eq!(Field::EmployeeCount.normalise("ca. 12"), "ca. 12");
    /// assert_eq!(Field::City.normalise("München"), "München");
    /// ```
    pub fn normalise(self, raw: &str) -> String {
        let normalised = match self {
            Field::CountryCode => value::country(raw),
            Field::EmailConsent => value::yes_no(raw).map(|b| b.to_string()),
            Field::EstimatedVolume => value::decimal(raw),
            Field::EmployeeCount => value::integer(raw),
            Field::BusinessType => value::business_type(raw).map(str::to_owned),
            Field::KitchenSize => value::kitchen_size(raw).map(str::to_owned),
            Field::Source => value::source(raw).map(str::to_owned),
            Field::RegisteredAt => value::timestamp(raw),
            _ => None,
        };
        normalised.unwrap_or_else(|| raw.to_owned())
    }
}

/// The field of a normalised header key: the normalised API name first, then the aliases.
pub(crate) fn from_key(key: &str) -> Option<Field> {
    Field::ALL
        .into_iter()
        .find(|f| normalise_key(f.api_name()) == key)
        .or_else(|| {
            ALIASES
                .iter()
                .find(|(_, aliases)| aliases.split(' ').any(|alias| alias == key))
                .map(|(field, _)| *field)
        })
}

/// The aliases of `field`, its API name aside.
#[cfg(test)]
pub(crate) fn aliases(field: Field) -> Vec<&'static str> {
    let aliases = ALIASES.iter().find(|(f, _)| *f == field);
    aliases.map_or(Vec::new(), |(_, aliases)| aliases.split(' ').collect())
}

/// Lower-cases `s`, folds the accented Latin-1 letters to ASCII (`ä` → `a`, `ß` → `ss`, `é` →
/// `e`) and drops everything but `a`–`z` and `0`–`9`: `"E-Mail"`, `"e_mail"` and `"E Mail"` are
/// all `"email"`, `"Straße"` is `"strasse"`.
pub(crate) fn normalise_key(s: &str) -> String {
    let mut key = String::with_capacity(s.len());
    for c in s.chars().flat_map(char::to_lowercase) {
        let folded = match c {
            'a'..='z' | '0'..='9' => {
                key.push(c);
                continue;
            }
            'à' | 'á' | 'â' | 'ã' | 'ä' | 'å' => "a",
            'æ' => "ae",
            'ç' => "c",
            'è' | 'é' | 'ê' | 'ë' => "e",
            'ì' | 'í' | 'î' | 'ï' => "i",
            'ñ' => "n",
            'ò' | 'ó' | 'ô' | 'õ' | 'ö' | 'ø' => "o",
            'œ' => "oe",
            'ß' => "ss",
            'ù' | 'ú' | 'û' | 'ü' => "u",
            'ý' | 'ÿ' => "y",
            _ => "",
        };
        key.push_str(folded);
    }
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_names_round_trip() {
        for field in Field::ALL {
            assert_eq!(Field::from_api_name(field.api_name()), Some(field));
            assert_eq!(Field::from_header(field.api_name()), Some(field));
        }
        assert_eq!(Field::from_api_name("companyname"), None);
    }

    #[test]
    fn headers_match_case_accent_and_punctuation_insensitively() {
        let cases = [
            ("Firma", Field::CompanyName),
            ("Company Name", Field::CompanyName),
            ("E-Mail", Field::Email),
            ("e_mail", Field::Email),
            ("E Mail-Adresse", Field::Email),
            ("Straße", Field::Street),
            ("Strasse", Field::Street),
            ("Str.", Field::Street),
            ("PLZ", Field::PostalCode),
            ("Küchengröße", Field::KitchenSize),
            ("Kuechengroesse", Field::KitchenSize),
            ("Geschätztes Volumen", Field::EstimatedVolume),
            ("Beschäftigte", Field::EmployeeCount),
            ("Business type", Field::BusinessType),
            ("DSGVO-Einwilligung", Field::EmailConsent),
            ("Opt-in", Field::EmailConsent),
            ("Registriert am", Field::RegisteredAt),
            ("Assigned to", Field::OwnerUserId),
            ("  Tel.  ", Field::Phone),
        ];
        for (header, field) in cases {
            assert_eq!(Field::from_header(header), Some(field), "{header}");
        }
        assert_eq!(Field::from_header("Notizen"), None);
        assert_eq!(Field::from_header(""), None);
    }

    #[test]
    fn no_alias_names_two_fields() {
        let mut seen = std::collections::BTreeMap::new();
        for field in Field::ALL {
            assert_eq!(seen.insert(normalise_key(field.api_name()), field), None);
        }
        for (field, aliases) in ALIASES {
            for alias in aliases.split(' ') {
                assert_eq!(normalise_key(alias), alias, "alias not normalised");
                let previous = seen.insert(alias.to_string(), *field);
                assert!(previous.is_none(), "{alias} listed twice");
            }
        }
    }

    #[test]
    fn keys_fold_latin1_letters() {
        assert_eq!(
            normalise_key("Ÿvonne Çà-Œuvre ÆØÅ ñ 42"),
            "yvonnecaoeuvreaeoan42"
        );
    }
}
