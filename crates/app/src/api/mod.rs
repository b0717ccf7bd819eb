//! The HTTP API, one module per resource. Each owns its routes (`configure`), its handlers, the
//! conversion of its bodies (`freshplan-api`'s types) to and from the domain, and their OpenAPI
//! paths (`#[utoipa::path]`, listed in [`crate::openapi`]). The resource modules never import
//! each other — what several need lives in `common`, [`crate::http`] and [`crate::problem`] —
//! and the wiring they call (`crate::followups`, `crate::dashboard`, `crate::mails`,
//! `crate::events`) never imports them (`xtask` tidy checks both rules).

pub mod activities;
pub mod audit;
pub(crate) mod common;
pub mod dashboard;
pub mod events;
pub mod followups;
pub mod imports;
pub mod leads;
pub mod mails;
pub mod meta;
pub mod territories;
pub mod unsubscribe;

use actix_web::web;

/// Registers the routes of every resource module.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.configure(territories::configure)
        .configure(imports::configure)
        .configure(leads::configure)
        .configure(audit::configure)
        .configure(activities::configure)
        .configure(meta::configure)
        .configure(events::configure)
        .configure(followups::configure)
        .configure(dashboard::configure)
        .configure(mails::configure)
        .configure(unsubscribe::configure);
}
