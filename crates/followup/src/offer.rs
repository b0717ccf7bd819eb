//! The offers the two follow-ups make (SPEC §6): the T+3 sample offer by business type and
//! month, and the T+7 bulk-order offer by business type in the territory's currency.
//!
//! A lead without a business type is treated as `OTHER` everywhere in this module: the offer
//! must not fail for an incomplete lead, and `OTHER` is the most generic (and most cautious)
//! selection and conditions.

use serde::Serialize;
use time::Month;

use freshplan_leads::model::BusinessType;
use freshplan_territory::Territory;

/// The T+3 sample offer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SampleOffer {
    /// The name of the starter box every sample offer contains.
    pub starter_box: &'static str,
    /// The type-specific product selection.
    pub products: Vec<&'static str>,
    /// The seasonal addition, if the month has one.
    pub seasonal: Option<&'static str>,
}

/// The T+7 bulk-order offer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BulkOffer {
    /// Discount on the first bulk order, in percent.
    pub discount_percent: u8,
    /// Minimum order value, in whole units of `currency`.
    pub minimum_order: u32,
    /// ISO 4217 code of the territory's currency (`EUR`, `CHF`).
    pub currency: &'static str,
}

/// The business type offers are computed for: the lead's, or `OTHER` when it has none.
pub fn offer_type(business_type: Option<BusinessType>) -> BusinessType {
    business_type.unwrap_or(BusinessType::Other)
}

/// The German label of a business type as used in mails: the name of the trade, so it reads
/// well after „für den Bereich …“ whatever the grammatical gender (e.g. `CANTEEN` →
/// „Gemeinschaftsverpflegung“).
pub const fn business_type_label(business_type: BusinessType) -> &'static str {
    match business_type {
        BusinessType::Restaurant => "Restaurant",
        BusinessType::Hotel => "Hotellerie",
        BusinessType::Canteen => "Gemeinschaftsverpflegung",
        BusinessType::Catering => "Catering",
        BusinessType::Other => "Gastronomie",
    }
}

/// The German name of the (meteorological) season of a month, for mail copy.
pub const fn season_label(month: Month) -> &'static str {
    match month {
        Month::March | Month::April | Month::May => "Frühling",
        Month::June | Month::July | Month::August => "Sommer",
        Month::September | Month::October | Month::November => "Herbst",
        Month::December | Month::January | Month::February => "Winter",
    }
}

/// The seasonal addition of a month: March–May asparagus, September–October Oktoberfest,
/// November–December Christmas catering, none otherwise.
pub const fn seasonal_addition(month: Month) -> Option<&'static str> {
    match month {
        Month::March | Month::April | Month::May => {
            Some("Spargel-Paket: frischer weißer und grüner Spargel mit Sauce hollandaise")
        }
        Month::September | Month::October => {
            Some("Oktoberfest-Paket: Weißwürste, Laugenbrezeln und Obazda")
        }
        Month::November | Month::December => {
            Some("Weihnachts-Catering: Gänsekeule, Apfelrotkohl und Lebkuchen-Dessert")
        }
        _ => None,
    }
}

/// The T+3 sample offer for a business type in a month (the month of the mail, in the
/// territory's local time).
///
/// ```
/// use freshplan_followup::offer::sample_offer;
/// use freshplan_leads::model::BusinessType;
/// use time::Month;
///
/// let offer = sample_offer(BusinessType::Hotel, Month::April);
/// assert!(offer.seasonal.unwrap().contains("Spargel"));
/// assert!(sample_offer(BusinessType::Hotel, Month::July).seasonal.is_none());
/// ```
pub fn sample_offer(business_type: BusinessType, month: Month) -> SampleOffer {
    let (starter_box, products): (&'static str, &[&'static str]) = match business_type {
        BusinessType::Restaurant => (
            "FreshPlan Starterbox Gastronomie",
            &[
                "Frische Küchenkräuter (Basilikum, Thymian, Rosmarin)",
                "Premium-Gemüsemix der Saison",
                "Frische Eierpasta aus eigener Herstellung",
                "Regionale Bergkäse-Auswahl",
            ],
        ),
        BusinessType::Hotel => (
            "FreshPlan Starterbox Hotel & Frühstück",
            &[
                "Frühstückssortiment mit Konfitüren und Blütenhonig",
                "Regionale Wurst- und Käseplatte",
                "Croissants und Brötchen zum Aufbacken",
                "Saisonales Obst für das Buffet",
            ],
        ),
        BusinessType::Canteen => (
            "FreshPlan Starterbox Gemeinschaftsverpflegung",
            &[
                "Geschälte Kartoffeln im Großgebinde",
                "Küchenfertige Salatmischungen",
                "Vegetarische Hauptkomponenten",
                "Suppen- und Saucenbasis",
            ],
        ),
        BusinessType::Catering => (
            "FreshPlan Starterbox Event-Catering",
            &[
                "Fingerfood-Auswahl",
                "Antipasti-Platte",
                "Dessertvariationen im Glas",
                "Canapé-Basis zum Belegen",
            ],
        ),
        BusinessType::Other => (
            "FreshPlan Starterbox Classic",
            &[
                "Premium-Gemüsemix der Saison",
                "Frische Küchenkräuter",
                "Regionale Käse-Auswahl",
            ],
        ),
    };
    SampleOffer {
        starter_box,
        products: products.to_vec(),
        seasonal: seasonal_addition(month),
    }
}

/// The T+7 bulk-order offer for a business type, in `territory`'s currency:
/// RESTAURANT 15 % / 500, HOTEL 20 % / 1000, CANTEEN 25 % / 2000, CATERING 10 % / 300,
/// OTHER 10 % / 250. Callers with a lead without a business type pass
/// [`offer_type`]`(None)`, i.e. `OTHER`.
///
/// ```
/// use freshplan_followup::offer::bulk_offer;
/// use freshplan_kernel::TerritoryId;
/// use freshplan_leads::model::BusinessType;
/// use freshplan_territory::Territory;
///
/// let offer = bulk_offer(BusinessType::Canteen, Territory::get(TerritoryId::Ch));
/// assert_eq!((offer.discount_percent, offer.minimum_order, offer.currency), (25, 2000, "CHF"));
/// ```
pub fn bulk_offer(business_type: BusinessType, territory: &Territory) -> BulkOffer {
    let (discount_percent, minimum_order) = match business_type {
        BusinessType::Restaurant => (15, 500),
        BusinessType::Hotel => (20, 1000),
        BusinessType::Canteen => (25, 2000),
        BusinessType::Catering => (10, 300),
        BusinessType::Other => (10, 250),
    };
    BulkOffer {
        discount_percent,
        minimum_order,
        currency: territory.currency_code,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use freshplan_kernel::TerritoryId;

    const MONTHS: [Month; 12] = [
        Month::January,
        Month::February,
        Month::March,
        Month::April,
        Month::May,
        Month::June,
        Month::July,
        Month::August,
        Month::September,
        Month::October,
        Month::November,
        Month::December,
    ];

    #[test]
    fn bulk_conditions_match_the_spec_table() {
        let de = Territory::get(TerritoryId::De);
        let table = [
            (BusinessType::Restaurant, 15, 500),
            (BusinessType::Hotel, 20, 1000),
            (BusinessType::Canteen, 25, 2000),
            (BusinessType::Catering, 10, 300),
            (BusinessType::Other, 10, 250),
        ];
        for (bt, discount, minimum) in table {
            assert_eq!(
                bulk_offer(bt, de),
                BulkOffer {
                    discount_percent: discount,
                    minimum_order: minimum,
                    currency: "EUR"
                },
                "{bt}"
            );
        }
        assert_eq!(table.len(), BusinessType::ALL.len());
    }

    #[test]
    fn bulk_offer_uses_the_territory_currency() {
        for bt in BusinessType::ALL {
            assert_eq!(
                bulk_offer(*bt, Territory::get(TerritoryId::De)).currency,
                "EUR"
            );
            assert_eq!(
                bulk_offer(*bt, Territory::get(TerritoryId::Ch)).currency,
                "CHF"
            );
        }
    }

    #[test]
    fn missing_business_type_counts_as_other() {
        assert_eq!(offer_type(None), BusinessType::Other);
        assert_eq!(offer_type(Some(BusinessType::Hotel)), BusinessType::Hotel);
    }

    #[test]
    fn seasonal_additions_by_month() {
        for m in MONTHS {
            let s = sample_offer(BusinessType::Restaurant, m).seasonal;
            match m {
                Month::March | Month::April | Month::May => {
                    assert!(s.unwrap().contains("Spargel"), "{m}")
                }
                Month::September | Month::October => {
                    assert!(s.unwrap().contains("Oktoberfest"), "{m}")
                }
                Month::November | Month::December => {
                    assert!(s.unwrap().contains("Weihnacht"), "{m}")
                }
                _ => assert_eq!(s, None, "{m}"),
            }
        }
    }

    #[test]
    fn every_type_has_a_starter_box_and_its_own_selection() {
        let offers: Vec<_> = BusinessType::ALL
            .iter()
            .map(|bt| sample_offer(*bt, Month::July))
            .collect();
        for (i, a) in offers.iter().enumerate() {
            assert!(a.starter_box.starts_with("FreshPlan Starterbox"));
            assert!(!a.products.is_empty());
            for b in &offers[i + 1..] {
                assert_ne!(a.products, b.products, "selections must be type-specific");
            }
        }
    }

    #[test]
    fn german_labels() {
        assert_eq!(
            business_type_label(BusinessType::Canteen),
            "Gemeinschaftsverpflegung"
        );
        assert_eq!(business_type_label(BusinessType::Other), "Gastronomie");
        assert_eq!(season_label(Month::April), "Frühling");
        assert_eq!(season_label(Month::January), "Winter");
    }
}
