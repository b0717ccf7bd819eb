//! The mail outbox (admins; SPEC §6). The bodies are [`freshplan_api::mails`]' [`MailPage`]
//! (summaries without bodies) and [`Mail`].

use freshplan_api::mails::{Mail, MailPage, MailStatus};
use reqwest::Method;
use uuid::Uuid;

use crate::{Client, Result, wire_name};

/// The query of `GET /api/mails`.
///
/// ```
/// use freshplan_client::api::mails::MailStatus;
/// use freshplan_client::mails::MailQuery;
///
/// let lead = uuid::Uuid::nil();
/// let q = MailQuery::new().status(MailStatus::Dead).lead_id(lead).limit(20).after("c-1");
/// assert_eq!(
///     q.pairs(),
///     vec![
///         ("status", "DEAD".to_owned()),
///         ("leadId", lead.to_string()),
///         ("limit", "20".to_owned()),
///         ("after", "c-1".to_owned()),
///     ]
/// );
/// assert!(MailQuery::new().pairs().is_empty());
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MailQuery {
    status: Option<MailStatus>,
    lead_id: Option<Uuid>,
    limit: Option<u32>,
    after: Option<String>,
}

impl MailQuery {
    /// Every mail, newest first, 50 per page.
    pub fn new() -> MailQuery {
        MailQuery::default()
    }

    /// Only mails in this state.
    pub fn status(mut self, status: MailStatus) -> MailQuery {
        self.status = Some(status);
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
            pairs.push(("status", wire_name(s)));
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

    /// `GET /api/mails`: a page of mails without their bodies, newest first; its `next_cursor`
    /// (`None` on the last page) goes into [`MailQuery::after`] for the next.
    pub async fn list(&self, query: &MailQuery) -> Result<MailPage> {
        let rb = self
            .client
            .request(Method::GET, &["api", "mails"])
            .query(&query.pairs());
        crate::json(self.client.send(rb).await?).await
    }

    /// `GET /api/mails/{id}`: one mail with its bodies.
    pub async fn get(&self, id: Uuid) -> Result<Mail> {
        let rb = self
            .client
            .request(Method::GET, &["api", "mails", &id.to_string()]);
        crate::json(self.client.send(rb).await?).await
    }

    /// `POST /api/mails/{id}/requeue`: a DEAD mail QUEUED again, as it is now;
    /// [`crate::Error::Conflict`] when it is not DEAD or its lead withdrew consent.
    pub async fn requeue(&self, id: Uuid) -> Result<Mail> {
        let rb = self
            .client
            .request(Method::POST, &["api", "mails", &id.to_string(), "requeue"]);
        crate::json(self.client.send(rb).await?).await
    }
}
