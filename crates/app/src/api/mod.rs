//! The HTTP API, one module per resource. Each owns its routes (`configure`), its handlers and
//! their OpenAPI paths (`#[utoipa::path]`, listed in [`crate::openapi`]); the bodies are
//! `freshplan-api`'s types. The resource modules never import each other — what several need
//! lives in `common` — and the wiring they call (`crate::followups`, `crate::dashboard`,
//! `crate::mails`, `crate::events`) never imports them (`xtask` tidy checks the first rule).

pub(crate) mod common;
pub mod dashboard;
pub mod events;
pub mod followups;
pub mod mails;
pub mod unsubscribe;

use actix_web::web;

/// Registers the routes of every resource module.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.configure(events::configure)
        .configure(followups::configure)
        .configure(dashboard::configure)
        .configure(mails::configure)
        .configure(unsubscribe::configure);
}
