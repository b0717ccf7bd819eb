//! Follow-up runs (SPEC §6, §9). The bodies are `serde_json::Value` until
//! `freshplan_api::followups` lands (see [`crate::interim`]).

use reqwest::Method;
use serde_json::Value;

use crate::{Client, Result};

/// The follow-up endpoints: [`Client::followups`].
#[derive(Debug, Clone)]
pub struct FollowUps {
    client: Client,
}

impl FollowUps {
    pub(crate) fn new(client: Client) -> FollowUps {
        FollowUps { client }
    }

    /// `POST /api/followups/run` (admins): the run report `{runId, t3Count, t7Count,
    /// skippedCount, startedAt, finishedAt}`; [`crate::Error::Conflict`] while another run
    /// holds the cluster-wide lock.
    pub async fn run(&self) -> Result<Value> {
        let rb = self
            .client
            .request(Method::POST, &["api", "followups", "run"]);
        crate::json(self.client.send(rb).await?).await
    }

    /// `GET /api/followups/runs` (admins, managers): `{runs: […]}`, newest first; `limit`
    /// 1–100 (default 20).
    pub async fn runs(&self, limit: Option<u32>) -> Result<Value> {
        let mut rb = self
            .client
            .request(Method::GET, &["api", "followups", "runs"]);
        if let Some(limit) = limit {
            rb = rb.query(&[("limit", limit)]);
        }
        crate::json(self.client.send(rb).await?).await
    }
}
