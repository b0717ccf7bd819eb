//! Follow-ups.
