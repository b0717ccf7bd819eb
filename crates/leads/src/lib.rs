//! The lead domain of FreshPlan Leads.
pub mod activity;
pub mod model;
pub mod status;
