//! The bodies of the FreshPlan Leads HTTP API (SPEC §4.1, §5, §7.5, §8, §9).
//!
//! One type per JSON body: the service deserialises requests into them and serialises
//! responses from them, `utoipa` derives the OpenAPI document's schemas from them, and the
//! `freshplan-client` crate sends and receives them. The constraints the service enforces are
//! stated on the fields (`#[schema(...)]`), so the document, the service and the client cannot
//! drift apart.
//!
//! ```
//! use freshplan_api::leads::{BusinessType, LeadCreate};
//!
//! let body = LeadCreate {
//!     business_type: Some(BusinessType::Restaurant),
//!     city: Some("Berlin".into()),
//!     ..LeadCreate::new("Gasthaus Zur Post GmbH")
//! };
//! let json = serde_json::to_value(&body).unwrap();
//! assert_eq!(json["companyName"], "Gasthaus Zur Post GmbH");
//! assert_eq!(json["businessType"], "RESTAURANT");
//! assert!(json.get("email").is_none(), "absent fields are not sent");
//! ```

pub mod activities;
pub mod events;
pub mod followups;
pub mod leads;
pub mod mails;
pub mod problem;
pub mod territories;
pub mod wire;

pub use problem::{FieldProblem, Problem};

/// A page of a list (`GET /api/leads`, `GET /api/leads/{id}/activities`).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Page<T> {
    /// The items of this page.
    pub data: Vec<T>,
    /// 0-based page number.
    pub page: u32,
    /// Page size.
    #[schema(minimum = 1, maximum = 200)]
    pub size: u32,
    /// Matching items on all pages.
    pub total: u64,
    /// Number of pages.
    pub total_pages: u64,
}
