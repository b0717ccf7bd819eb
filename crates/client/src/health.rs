//! Liveness and readiness (no token needed).

use freshplan_api::health::{Health, State};
use reqwest::Method;

use crate::{Client, Error, Result};

/// The health endpoints: [`Client::health`].
#[derive(Debug, Clone)]
pub struct HealthChecks {
    client: Client,
}

impl HealthChecks {
    pub(crate) fn new(client: Client) -> HealthChecks {
        HealthChecks { client }
    }

    /// `GET /health/live`. A 503 problem `event-history-diverged` (an error here) means the
    /// process must be restarted: the database lost events it had delivered (ADR 0015).
    pub async fn live(&self) -> Result<Health> {
        let rb = self.client.request(Method::GET, &["health", "live"]);
        crate::json(self.client.send(rb).await?).await
    }

    /// `GET /health/ready`. A not-ready service (503, a problem naming `database` and
    /// `eventListener`) is `Ok` with `status: DOWN`, so a probe can tell which part is down;
    /// other errors are errors.
    pub async fn ready(&self) -> Result<Health> {
        let rb = self.client.request(Method::GET, &["health", "ready"]);
        match self.client.send(rb).await {
            Ok(r) => crate::json(r).await,
            Err(Error::Problem(p)) if p.status == 503 => {
                let state = |name: &str| {
                    p.extra(name)
                        .and_then(|v| serde_json::from_value::<State>(v.clone()).ok())
                };
                Ok(Health {
                    status: State::Down,
                    database: state("database"),
                    event_listener: state("eventListener"),
                })
            }
            Err(e) => Err(e),
        }
    }
}
