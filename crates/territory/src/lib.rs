//! Territories.
