//! The event feed for other services (SPEC §7.5; admin and service roles): pages of
//! CloudEvents in commit order (`GET /api/events`), the live SSE stream
//! (`GET /api/events/stream`), and a [`Consumer`] that combines both.
//!
//! The bodies are [`freshplan_api::events`]' [`CloudEvent`] and [`EventPage`], re-exported
//! here:
//!
//! ```
//! use freshplan_client::events::CloudEvent;
//!
//! let json = r#"{"specversion":"1.0","id":"0190c2d4-e5f6-7a8b-9c0d-1e2f3a4b5c6d",
//!   "source":"freshplan.leads","type":"lead.created.v1","time":"2026-03-02T09:30:00Z",
//!   "subject":"0190c2d4-0000-7000-8000-000000000001","datacontenttype":"application/json",
//!   "idempotencykey":"5b0c2a1e-8f3d-5c6b-9a7e-1d2c3b4a5f6e","data":{"companyName":"Adler"}}"#;
//! let e: freshplan_client::api::events::CloudEvent = serde_json::from_str(json).unwrap();
//! let same: &CloudEvent = &e; // one type
//! assert_eq!(same.event_type, "lead.created.v1");
//! assert_eq!(same.data["companyName"], "Adler");
//! ```

use std::fmt;

use reqwest::Method;
use reqwest::header::HeaderValue;

use crate::consumer::Consumer;
use crate::sse::Connection;
use crate::{Client, Error, Result};

pub use freshplan_api::events::{CloudEvent, EventPage};

/// A position in the feed: a page's `nextCursor`, or an SSE message's `id:`. Opaque: store it,
/// and pass it back as `after` or `Last-Event-ID`.
///
/// ```
/// use freshplan_client::events::Cursor;
///
/// let c = Cursor::new("7341-42");
/// assert_eq!(c.as_str(), "7341-42");
/// assert_eq!(c.to_string(), "7341-42");
/// assert_eq!(Cursor::from("7341-42".to_owned()), c);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Cursor(String);

impl Cursor {
    /// A cursor the service gave (e.g. one you stored).
    pub fn new(cursor: impl Into<String>) -> Cursor {
        Cursor(cursor.into())
    }

    /// Its text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<String> for Cursor {
    fn from(s: String) -> Cursor {
        Cursor(s)
    }
}

impl From<&str> for Cursor {
    fn from(s: &str) -> Cursor {
        Cursor(s.to_owned())
    }
}

/// The query of `GET /api/events`.
///
/// ```
/// use freshplan_client::events::{Cursor, EventQuery};
///
/// let q = EventQuery::new().after(Cursor::new("7341-42")).limit(500).event_type("lead.created.v1");
/// assert_eq!(
///     q.pairs(),
///     vec![
///         ("after", "7341-42".to_owned()),
///         ("limit", "500".to_owned()),
///         ("type", "lead.created.v1".to_owned()),
///     ]
/// );
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventQuery {
    after: Option<Cursor>,
    limit: Option<u32>,
    event_type: Option<String>,
}

impl EventQuery {
    /// From the oldest retained event, 100 per page, every type.
    pub fn new() -> EventQuery {
        EventQuery::default()
    }

    /// Only events after this cursor.
    pub fn after(mut self, cursor: Cursor) -> EventQuery {
        self.after = Some(cursor);
        self
    }

    /// Events per page (1–1000).
    pub fn limit(mut self, limit: u32) -> EventQuery {
        self.limit = Some(limit);
        self
    }

    /// Only events of this catalog type (e.g. `lead.status.changed.v1`).
    pub fn event_type(mut self, event_type: impl Into<String>) -> EventQuery {
        self.event_type = Some(event_type.into());
        self
    }

    /// The query parameters as sent.
    pub fn pairs(&self) -> Vec<(&'static str, String)> {
        let mut pairs = Vec::new();
        if let Some(a) = &self.after {
            pairs.push(("after", a.0.clone()));
        }
        if let Some(l) = self.limit {
            pairs.push(("limit", l.to_string()));
        }
        if let Some(t) = &self.event_type {
            pairs.push(("type", t.clone()));
        }
        pairs
    }
}

/// The event feed: [`Client::events`].
#[derive(Debug, Clone)]
pub struct Events {
    client: Client,
}

impl Events {
    pub(crate) fn new(client: Client) -> Events {
        Events { client }
    }

    /// `GET /api/events`: up to `limit` events after `after`, in commit order, and the cursor to
    /// pass as `after` next (unchanged when there is nothing new).
    pub async fn page(&self, query: &EventQuery) -> Result<EventPage> {
        let rb = self
            .client
            .request(Method::GET, &["api", "events"])
            .query(&query.pairs());
        crate::json(self.client.send(rb).await?).await
    }

    /// `GET /api/events/stream`: the raw SSE connection, from `last_event_id` (sent as
    /// `Last-Event-ID`; `None`: new events only), optionally of one type. Each message's `data`
    /// is a [`CloudEvent`] and its `id` the event's cursor. The [`Consumer`] does the
    /// bookkeeping (catch-up, reconnects, dedupe) for you.
    pub async fn stream(
        &self,
        last_event_id: Option<&Cursor>,
        event_type: Option<&str>,
    ) -> Result<Connection> {
        let mut rb = self
            .client
            .request(Method::GET, &["api", "events", "stream"])
            .header(reqwest::header::ACCEPT, "text/event-stream");
        if let Some(t) = event_type {
            rb = rb.query(&[("type", t)]);
        }
        if let Some(c) = last_event_id {
            let value = HeaderValue::from_str(c.as_str()).map_err(|e| Error::InvalidHeader {
                name: "Last-Event-ID",
                message: e.to_string(),
            })?;
            rb = rb.header("Last-Event-ID", value);
        }
        Connection::new(self.client.send(rb).await?)
    }

    /// A [`Consumer`] of the feed, from the oldest retained event unless told where to resume
    /// ([`Consumer::resume_from`]).
    pub fn consumer(&self) -> Consumer {
        Consumer::new(self.client.clone())
    }
}
