//! Bodies of the followups endpoints.
