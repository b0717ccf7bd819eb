//! The cockpit figures (SPEC §8): [`freshplan_api::followups`]' [`FollowUpFigures`], from
//! `GET /api/dashboard/followup` and from each `followup-metrics` message of its stream.
//!
//! ```no_run
//! # async fn run(client: freshplan_client::Client) -> freshplan_client::Result<()> {
//! use futures_util::TryStreamExt;
//!
//! let figures = client.dashboard().followup(Some("DE")).await?;
//! println!("{} leads wait for T+3 ({:?})", figures.pending_t3, figures.scope);
//! let mut changes = client.dashboard().followup_stream(None).await?;
//! while let Some(figures) = changes.try_next().await? {
//!     println!("{} sent today, {} % converted", figures.sent_today, figures.conversion_rate);
//! }
//! # Ok(())
//! # }
//! ```

use freshplan_api::followups::FollowUpFigures;
use futures_util::StreamExt;
use futures_util::stream::{self, BoxStream};
use reqwest::Method;

use crate::sse::{Connection, Item};
use crate::{Client, Error, Result};

/// The event name of the figures stream's messages.
pub const FIGURES_EVENT: &str = "followup-metrics";

/// The dashboard endpoints: [`Client::dashboard`].
#[derive(Debug, Clone)]
pub struct Dashboard {
    client: Client,
}

impl Dashboard {
    pub(crate) fn new(client: Client) -> Dashboard {
        Dashboard { client }
    }

    /// `GET /api/dashboard/followup`: the figures of the caller's scope, optionally narrowed to
    /// one territory (`DE`, `CH`).
    pub async fn followup(&self, territory: Option<&str>) -> Result<FollowUpFigures> {
        let mut rb = self
            .client
            .request(Method::GET, &["api", "dashboard", "followup"]);
        if let Some(t) = territory {
            rb = rb.query(&[("territory", t)]);
        }
        crate::json(self.client.send(rb).await?).await
    }

    /// `GET /api/dashboard/followup-stream`: the figures once on connect, then whenever they
    /// change. The stream ends when the server ends it (it does not reconnect).
    pub async fn followup_stream(
        &self,
        territory: Option<&str>,
    ) -> Result<BoxStream<'static, Result<FollowUpFigures>>> {
        let mut rb = self
            .client
            .request(Method::GET, &["api", "dashboard", "followup-stream"])
            .header(reqwest::header::ACCEPT, "text/event-stream");
        if let Some(t) = territory {
            rb = rb.query(&[("territory", t)]);
        }
        let conn = Connection::new(self.client.send(rb).await?)?;
        Ok(stream::try_unfold(conn, |mut conn| async move {
            loop {
                match conn.next_item().await? {
                    None => return Ok(None),
                    Some(Item::Message(m)) if m.event.as_deref() == Some(FIGURES_EVENT) => {
                        let figures = serde_json::from_str(&m.data).map_err(|e| Error::Decode {
                            what: "figures",
                            status: 200,
                            message: e.to_string(),
                        })?;
                        return Ok(Some((figures, conn)));
                    }
                    Some(_) => {}
                }
            }
        })
        .boxed())
    }
}
