//! HTTP API tests: the real application on a real port against a fresh PostgreSQL database per
//! test (SPEC §2, §4, §5, §9), and the real `freshplan` binary where the process is the point.

mod api;
mod bad_input;
mod client;
mod clock;
mod cockpit_browser;
mod contract;
mod events;
#[cfg(unix)] // SIGKILL, runuser
mod failover;
#[cfg(unix)] // SIGKILL
mod followup_replicas;
mod followups;
mod helpers;
mod http_proxy;
mod imports;
mod jwks_url;
mod jwt;
mod keys;
mod observe;
mod openapi_schema;
mod outage;
mod personal_data;
#[cfg(unix)]
mod pg_pair;
mod pg_proxy;
#[cfg(unix)] // SIGTERM
mod process;
#[cfg(unix)] // runuser, PostgreSQL binaries
mod read_replica;
#[cfg(unix)] // SIGKILL
mod replicas;
mod robustness;
mod sse_client;
mod sse_expiry;
