//! The mail outbox (admins; SPEC §6). The bodies are `serde_json::Value` until
//! `freshplan_api::mails` lands (see [`crate::interim`]).

use reqwest::Method;
use serde_json::Value;
use uuid::Uuid;

use crate::{Client, Result};

/// The query of `GET /api/mails`.
///
/// ```
/// use freshplan_client::mails::MailQuery;
///
/// let q = MailQuery::new().status("DEAD").limit(20);
/// assert_eq!(q.pairs(), vec![("status", "DEAD".to_owned()), ("limit", "20".to_owned())]);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MailQuery {
    status: Option<String>,
    lead_id: Option<Uuid>,
    limit: Option<u32>,
    after: Option<String>,
}

impl MailQuery {
    /// Every mail, newest first, 50 per page.
    pub fn new() -> MailQuery {
        MailQuery::default()
    }

    /// `QUEUED`, `SENT` or `DEAD`.
    pub fn status(mut self, status: impl Into<String>) -> MailQuery {
        self.status = Some(status.into());
        self
    }

    /// Only the mails of this lead.
    pub fn lead_id(mut self, lead_id: Uuid) -> MailQuery {
        self.lead_id = Some(lead_id);
        self
    }

    /// Mails per page (1–500).
    pub fn limit(mut self, limit: u32) -> MailQuery {
        self.limit = Some(limit);
        self
    }

    /// The `nextCursor` of the previous page.
    pub fn after(mut self, cursor: impl Into<String>) -> MailQuery {
        self.after = Some(cursor.into());
        self
    }

    /// The query parameters as sent.
    pub fn pairs(&self) -> Vec<(&'static str, String)> {
        let mut pairs = Vec::new();
        if let Some(s) = &self.status {
            pairs.push(("status", s.clone()));
        }
        if let Some(l) = self.lead_id {
            pairs.push(("leadId", l.to_string()));
        }
        if let Some(l) = self.limit {
            pairs.push(("limit", l.to_string()));
        }
        if let Some(a) = &self.after {
            pairs.push(("after", a.clone()));
        }
        pairs
    }
}

/// The mail endpoints: [`Client::mails`].
#[derive(Debug, Clone)]
pub struct Mails {
    client: Client,
}

impl Mails {
    pub(crate) fn new(client: Client) -> Mails {
        Mails { client }
    }

    /// `GET /api/mails`: `{mails: […], nextCursor}` (without bodies; `nextCursor` null on the
    /// last page).
    pub async fn list(&self, query: &MailQuery) -> Result<Value> {
        let rb = self
            .client
            .request(Method::GET, &["api", "mails"])
            .query(&query.pairs());
        crate::json(self.client.send(rb).await?).await
    }

    /// `GET /api/mails/{id}`: one mail with its bodies.
    pub async fn get(&self, id: Uuid) -> Result<Value> {
        let rb = self
            .client
            .request(Method::GET, &["api", "mails", &id.to_string()]);
        crate::json(self.client.send(rb).await?).await
    }

    /// `POST /api/mails/{id}/requeue`: a DEAD mail QUEUED again; [`crate::Error::Conflict`] when
    /// it is not DEAD or its lead withdrew consent.
    pub async fn requeue(&self, id: Uuid) -> Result<Value> {
        let rb = self
            .client
            .request(Method::POST, &["api", "mails", &id.to_string(), "requeue"]);
        crate::json(self.client.send(rb).await?).await
    }
}
