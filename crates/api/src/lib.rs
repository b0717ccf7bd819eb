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
pub mod health;
pub mod imports;
pub mod leads;
pub mod mails;
pub mod privacy;
pub mod problem;
pub mod territories;
pub mod wire;

pub use problem::{FieldProblem, Problem};

/// A page of a list (`GET /api/leads`, `GET /api/leads/{id}/activities`): what a client needs
/// to walk all pages.
pub trait Paged {
    /// The items.
    type Item;
    /// The items of this page.
    fn items(&self) -> &[Self::Item];
    /// Takes the items of this page.
    fn into_items(self) -> Vec<Self::Item>;
    /// This page's number (0-based).
    fn page(&self) -> u32;
    /// The number of pages.
    fn total_pages(&self) -> u64;
}

/// Declares a page type of `$item` (one concrete schema per list, named in the document).
macro_rules! page {
    ($(#[$doc:meta])* $name:ident of $item:ty) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
        #[serde(rename_all = "camelCase")]
        pub struct $name {
            /// The items of this page.
            pub data: Vec<$item>,
            /// 0-based page number.
            #[schema(minimum = 0, maximum = 1000000)]
            pub page: u32,
            /// Page size.
            #[schema(minimum = 1, maximum = 200)]
            pub size: u32,
            /// Matching items on all pages.
            pub total: u64,
            /// Number of pages.
            pub total_pages: u64,
        }

        impl $crate::Paged for $name {
            type Item = $item;
            fn items(&self) -> &[$item] {
                &self.data
            }
            fn into_items(self) -> Vec<$item> {
                self.data
            }
            fn page(&self) -> u32 {
                self.page
            }
            fn total_pages(&self) -> u64 {
                self.total_pages
            }
        }
    };
}
pub(crate) use page;
