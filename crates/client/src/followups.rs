//! Follow-up runs (SPEC §6, §9). The bodies are [`freshplan_api::followups`]' [`RunReport`]
//! and [`RunList`].

use freshplan_api::followups::{RunList, RunReport};
use reqwest::Method;

use crate::{Client, Result};

/// The follow-up endpoints: [`Client::followups`].
///
/// ```no_run
/// # async fn run(client: freshplan_client::Client) -> freshplan_client::Result<()> {
/// use freshplan_client::api::followups::RunOutcome;
///
/// let report = client.followups().run().await?;
/// println!("{} T+3, {} T+7, {} skipped", report.t3_count, report.t7_count, report.skipped_count);
/// let log = client.followups().runs(Some(10)).await?;
/// let failed = log.runs.iter().filter(|r| r.outcome == RunOutcome::Failed).count();
/// # let _ = failed;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct FollowUps {
    client: Client,
}

impl FollowUps {
    pub(crate) fn new(client: Client) -> FollowUps {
        FollowUps { client }
    }

    /// `POST /api/followups/run` (admins): the run's report; [`crate::Error::Conflict`] while
    /// another run holds the cluster-wide lock.
    pub async fn run(&self) -> Result<RunReport> {
        let rb = self
            .client
            .request(Method::POST, &["api", "followups", "run"]);
        crate::json(self.client.send(rb).await?).await
    }

    /// `GET /api/followups/runs` (admins, managers): the run log, newest first; `limit` 1–100
    /// (default 20).
    pub async fn runs(&self, limit: Option<u32>) -> Result<RunList> {
        let mut rb = self
            .client
            .request(Method::GET, &["api", "followups", "runs"]);
        if let Some(limit) = limit {
            rb = rb.query(&[("limit", limit)]);
        }
        crate::json(self.client.send(rb).await?).await
    }
}
