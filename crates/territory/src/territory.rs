use crate::TerritoryId;

/// The static data of one territory (SPEC §1).
///
/// | id | name | currency | VAT | language | time zone | payment terms |
/// |---|---|---|---|---|---|---|
/// | `DE` | Deutschland | EUR | 19.00 % | de-DE | Europe/Berlin | 30 days |
/// | `CH` | Schweiz | CHF | 8.10 % | de-CH | Europe/Zurich | 45 days |
///
/// The legal entities and VAT ids are **demo data**: plausible in form, not real registrations.
///
/// ```
/// use freshplan_territory::{Territory, TerritoryId};
///
/// let ch = Territory::get(TerritoryId::Ch);
/// assert_eq!(ch.name, "Schweiz");
/// assert_eq!(ch.vat_rate_percent(), 8.1);
/// assert!(ch.legal_footer().contains("8,10 %"));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Territory {
    /// The territory id (`DE`, `CH`).
    pub id: TerritoryId,
    /// The display name, in German: `"Deutschland"`, `"Schweiz"`.
    pub name: &'static str,
    /// The ISO 4217 currency code: `"EUR"`, `"CHF"`.
    pub currency_code: &'static str,
    /// The standard VAT rate in basis points (hundredths of a percent): `1900` is 19.00 %.
    pub vat_basis_points: u32,
    /// The BCP 47 language tag of customer-facing text: `"de-DE"`, `"de-CH"`.
    pub language_code: &'static str,
    /// The IANA time zone of the business calendar: `"Europe/Berlin"`, `"Europe/Zurich"`.
    pub time_zone: &'static str,
    /// The default payment terms, in days.
    pub payment_terms_days: u16,
    /// The contracting legal entity named in mail footers (demo data).
    pub legal_entity: &'static str,
    /// The VAT registration id of the legal entity (demo data).
    pub vat_id: &'static str,
}

/// Both territories, in the order of [`TerritoryId::ALL`]; [`Territory::get`] relies on it.
static TERRITORIES: [Territory; 2] = [
    Territory {
        id: TerritoryId::De,
        name: "Deutschland",
        currency_code: "EUR",
        vat_basis_points: 1900,
        language_code: "de-DE",
        time_zone: "Europe/Berlin",
        payment_terms_days: 30,
        legal_entity: "FreshPlan GmbH, Berlin",
        vat_id: "DE123456789",
    },
    Territory {
        id: TerritoryId::Ch,
        name: "Schweiz",
        currency_code: "CHF",
        vat_basis_points: 810,
        language_code: "de-CH",
        time_zone: "Europe/Zurich",
        payment_terms_days: 45,
        legal_entity: "FreshPlan AG, Zürich",
        vat_id: "CHE-123.456.789 MWST",
    },
];

impl Territory {
    /// The territory with the given id. Total: every [`TerritoryId`] has its data.
    pub fn get(id: TerritoryId) -> &'static Territory {
        match id {
            TerritoryId::De => &TERRITORIES[0],
            TerritoryId::Ch => &TERRITORIES[1],
        }
    }

    /// All territories: `DE`, then `CH`.
    pub fn all() -> &'static [Territory] {
        &TERRITORIES
    }

    /// The VAT rate in percent as a number, as the API shows it (`19.0`, `8.1`).
    pub fn vat_rate_percent(&self) -> f64 {
        f64::from(self.vat_basis_points) / 100.0
    }

    /// The legal footer of customer mails: legal entity, VAT id and VAT rate, the rate written
    /// the German way with two decimals (`"19,00 %"`, `"8,10 %"`).
    ///
    /// ```
    /// use freshplan_territory::{Territory, TerritoryId};
    ///
    /// assert_eq!(
    ///     Territory::get(TerritoryId::De).legal_footer(),
    ///     "FreshPlan GmbH, Berlin · USt-IdNr. DE123456789 · MwSt. 19,00 %"
    /// );
    /// ```
    pub fn legal_footer(&self) -> String {
        // Germany says "USt-IdNr."/"MwSt.", Switzerland "MWST-Nr."/"MWST".
        let (id_label, rate_label) = match self.id {
            TerritoryId::De => ("USt-IdNr.", "MwSt."),
            TerritoryId::Ch => ("MWST-Nr.", "MWST"),
        };
        format!(
            "{} · {id_label} {} · {rate_label} {}",
            self.legal_entity,
            self.vat_id,
            german_percent(self.vat_basis_points)
        )
    }
}

/// Basis points as a German percentage with two decimals: `810` → `"8,10 %"`.
fn german_percent(basis_points: u32) -> String {
    format!("{},{:02} %", basis_points / 100, basis_points % 100)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_spec_table() {
        let de = Territory::get(TerritoryId::De);
        assert_eq!(
            (
                de.id,
                de.name,
                de.currency_code,
                de.vat_basis_points,
                de.language_code,
                de.time_zone,
                de.payment_terms_days
            ),
            (
                TerritoryId::De,
                "Deutschland",
                "EUR",
                1900,
                "de-DE",
                "Europe/Berlin",
                30
            )
        );
        let ch = Territory::get(TerritoryId::Ch);
        assert_eq!(
            (
                ch.id,
                ch.name,
                ch.currency_code,
                ch.vat_basis_points,
                ch.language_code,
                ch.time_zone,
                ch.payment_terms_days
            ),
            (
                TerritoryId::Ch,
                "Schweiz",
                "CHF",
                810,
                "de-CH",
                "Europe/Zurich",
                45
            )
        );
    }

    #[test]
    fn get_and_all_agree_with_the_ids() {
        for id in TerritoryId::ALL {
            assert_eq!(Territory::get(id).id, id);
        }
        let ids: Vec<_> = Territory::all().iter().map(|t| t.id).collect();
        assert_eq!(ids, [TerritoryId::De, TerritoryId::Ch]);
    }

    #[test]
    fn vat_rate_in_percent() {
        assert_eq!(Territory::get(TerritoryId::De).vat_rate_percent(), 19.0);
        assert_eq!(Territory::get(TerritoryId::Ch).vat_rate_percent(), 8.1);
    }

    #[test]
    fn footer_names_entity_vat_id_and_german_rate() {
        let de = Territory::get(TerritoryId::De).legal_footer();
        assert_eq!(
            de,
            "FreshPlan GmbH, Berlin · USt-IdNr. DE123456789 · MwSt. 19,00 %"
        );
        let ch = Territory::get(TerritoryId::Ch).legal_footer();
        assert_eq!(
            ch,
            "FreshPlan AG, Zürich · MWST-Nr. CHE-123.456.789 MWST · MWST 8,10 %"
        );
    }

    #[test]
    fn german_percent_pads_the_decimals() {
        assert_eq!(german_percent(1900), "19,00 %");
        assert_eq!(german_percent(810), "8,10 %");
        assert_eq!(german_percent(705), "7,05 %");
        assert_eq!(german_percent(0), "0,00 %");
    }
}
