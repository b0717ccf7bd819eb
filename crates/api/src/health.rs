//! Health (`/health/live`, `/health/ready`).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The state of the service or of one of its dependencies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum State {
    /// Working.
    Up,
    /// Not working.
    Down,
    /// Switched off (the event listener when `FRESHPLAN_EVENTS=false`).
    Off,
}

/// `GET /health/live` (`status` only) and `GET /health/ready`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Health {
    /// The service.
    pub status: State,
    /// The database (readiness only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<State>,
    /// This replica's event listener connection (readiness only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_listener: Option<State>,
}
