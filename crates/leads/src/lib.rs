//! Leads.
