//! Territories (SPEC §1).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A territory: `GET /api/territories`, `GET /api/territories/{id}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Territory {
    /// `DE` or `CH`.
    pub id: String,
    /// Display name.
    pub name: String,
    /// ISO 4217.
    pub currency_code: String,
    /// VAT in percent, e.g. 19.0.
    pub vat_rate: f64,
    /// BCP 47.
    pub language_code: String,
    /// IANA time zone.
    pub time_zone: String,
    /// Days.
    pub payment_terms_days: u16,
}

/// The territory of a lead (read-only, derived from `countryCode`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TerritoryRef {
    /// `DE` or `CH`.
    pub id: String,
    /// Display name.
    pub name: String,
    /// ISO 4217.
    pub currency_code: String,
}
