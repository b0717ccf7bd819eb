//! The Lead aggregate's value types: validated newtypes and closed enums (SPEC §4.1).

use std::fmt;
use std::str::FromStr;

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
        FieldError { field, message: message.into() }
    }
}

macro_rules! closed_enum {
    ($(#[$meta:meta])* $name:ident, $field:literal { $($(#[$vmeta:meta])* $variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
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

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = FieldError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($text => Ok($name::$variant),)+
                    _ => Err(FieldError::new($field, format!(
                        "unknown value {s:?}; allowed: {}",
                        [$($text),+].join(", ")
                    ))),
                }
            }
        }
    };
}

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
