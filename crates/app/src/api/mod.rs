//! The HTTP API, one module per resource: each owns its routes (`configure`), handlers, the
//! conversion of its bodies (`freshplan_api`) to and from the domain, and its OpenAPI paths.
//! Resource modules do not import each other; what they share lives in [`crate::http`] and
//! [`crate::problem`].

pub mod activities;
pub mod leads;
pub mod meta;
pub mod territories;
