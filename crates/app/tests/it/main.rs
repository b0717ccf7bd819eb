//! HTTP API tests: the real application on a real port against a fresh PostgreSQL database per
//! test (SPEC §2, §4, §5, §9).

mod api;
mod helpers;
mod robustness;
