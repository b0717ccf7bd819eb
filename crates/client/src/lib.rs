//! A typed async client of the FreshPlan Leads HTTP API (SPEC §9), on reqwest.
//!
//! - **One set of bodies.** Requests and responses are the [`freshplan_api`] types (re-exported
//!   as [`api`]) that the service itself parses and renders, so the client cannot drift from it.
//! - **Typed errors.** Every error response is an RFC 9457 problem, sorted into [`Error`]'s
//!   variants ([`Error::Duplicate`], [`Error::Validation`], [`Error::PreconditionFailed`], …)
//!   with helpers such as [`Error::is_duplicate`] and [`Error::field_errors`].
//! - **ETags.** Reads of a lead return it as [`Versioned`] (the value and its ETag); writes take
//!   the ETag for `If-Match`; [`leads::Leads::get_if_none_match`] answers
//!   [`Conditional::NotModified`] for an unchanged lead.
//! - **Lists** are awaited for one page or walked as a [`futures_util::Stream`] of pages or items
//!   ([`List::pages`], [`List::items`]).
//! - **The event feed** is read page by page ([`events::Events::page`]) or consumed with
//!   [`consumer::Consumer`]: catch-up, then the SSE stream, reconnecting and resuming from its
//!   position without loss or repetition.
//!
//! ```no_run
//! use freshplan_client::Client;
//! use freshplan_client::api::leads::{BusinessType, LeadCreate, LeadPatch, StatusChange};
//! use freshplan_client::leads::LeadQuery;
//!
//! # async fn run() -> freshplan_client::Result<()> {
//! let client = Client::new("http://localhost:8080")?.with_token("eyJhbGciOi…");
//! let created = client
//!     .leads()
//!     .create(&LeadCreate {
//!         city: Some("Berlin".into()),
//!         business_type: Some(BusinessType::Restaurant),
//!         ..LeadCreate::new("Gasthaus Zur Post GmbH")
//!     })
//!     .await?;
//! let qualified = client
//!     .leads()
//!     .patch(
//!         created.id,
//!         &created.etag,
//!         &LeadPatch { status: Some(StatusChange::Qualified), ..LeadPatch::default() },
//!     )
//!     .await?;
//! assert_eq!(qualified.version, 2);
//! let page = client.leads().list(LeadQuery::new().q("post").size(20)).await?;
//! println!("{} leads match", page.total);
//! # Ok(())
//! # }
//! ```
//!
//! Building a client does not touch the network:
//!
//! ```
//! let client = freshplan_client::Client::new("http://localhost:8080/")?.with_token("t-1");
//! assert_eq!(client.base_url().as_str(), "http://localhost:8080/");
//! client.set_token("t-2"); // e.g. a refreshed token: every clone of the client uses it
//! assert_eq!(client.token().as_deref(), Some("t-2"));
//! assert!(freshplan_client::Client::new("not a url").is_err());
//! # Ok::<(), freshplan_client::Error>(())
//! ```

use std::fmt;
use std::ops::Deref;
use std::sync::{Arc, RwLock};

use reqwest::header::{self, HeaderValue};
use reqwest::{Method, RequestBuilder, Response, StatusCode, Url};
use serde::de::DeserializeOwned;

pub use freshplan_api as api;

mod error;
mod list;

pub mod activities;
pub mod audit;
pub mod consumer;
pub mod dashboard;
pub mod events;
pub mod followups;
pub mod health;
pub mod imports;
pub mod leads;
pub mod mails;
pub mod sse;
pub mod territories;

pub use error::{BoxError, Error, Result};
pub use list::List;

/// The longest error body kept in [`Error::Status`].
const ERROR_BODY_LIMIT: usize = 2048;

/// A client of one FreshPlan Leads service. Cheap to clone; clones share the connection pool
/// and the bearer token, so [`Client::set_token`] on one is seen by all (and by the event
/// consumers made from them).
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    base: Url,
    token: RwLock<Option<String>>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("base", &self.inner.base.as_str())
            .field("token", &self.token().map(|_| "…"))
            .finish()
    }
}

impl Client {
    /// A client of the service at `base_url` (e.g. `http://localhost:8080`; a path prefix such
    /// as `https://crm.example/freshplan` is kept), without a token. The HTTP client is
    /// reqwest's default with rustls; use [`Client::with_http`] for timeouts or proxies.
    pub fn new(base_url: &str) -> Result<Client> {
        Client::with_http(reqwest::Client::new(), base_url)
    }

    /// [`Client::new`] with your own reqwest client. Don't give it a total request timeout if
    /// you consume the event stream: a stream stays open for as long as there are events.
    pub fn with_http(http: reqwest::Client, base_url: &str) -> Result<Client> {
        let invalid = |message: &str| Error::InvalidUrl {
            url: base_url.to_owned(),
            message: message.to_owned(),
        };
        let mut base = Url::parse(base_url).map_err(|e| invalid(&e.to_string()))?;
        if !matches!(base.scheme(), "http" | "https") {
            return Err(invalid("not http or https"));
        }
        if base.cannot_be_a_base() {
            return Err(invalid("cannot be a base"));
        }
        base.set_query(None);
        base.set_fragment(None);
        Ok(Client {
            inner: Arc::new(Inner {
                http,
                base,
                token: RwLock::new(None),
            }),
        })
    }

    /// This client with `token` as its bearer token (without the `Bearer ` prefix).
    pub fn with_token(self, token: impl Into<String>) -> Client {
        self.set_token(token);
        self
    }

    /// Replaces the bearer token (e.g. with a refreshed one), for this client and its clones.
    pub fn set_token(&self, token: impl Into<String>) {
        *self.inner.token.write().unwrap_or_else(|e| e.into_inner()) = Some(token.into());
    }

    /// Forgets the bearer token: requests go out without `Authorization`.
    pub fn clear_token(&self) {
        *self.inner.token.write().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// The current bearer token.
    pub fn token(&self) -> Option<String> {
        self.inner
            .token
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The service's base URL.
    pub fn base_url(&self) -> &Url {
        &self.inner.base
    }

    /// The audit log of personal-data processing (`/api/audit`).
    pub fn audit(&self) -> audit::Audit {
        audit::Audit::new(self.clone())
    }

    /// Territories (`/api/territories`).
    pub fn territories(&self) -> territories::Territories {
        territories::Territories::new(self.clone())
    }

    /// Leads (`/api/leads`).
    pub fn leads(&self) -> leads::Leads {
        leads::Leads::new(self.clone())
    }

    /// Lead-list imports (`/api/leads/imports`).
    pub fn imports(&self) -> imports::Imports {
        imports::Imports::new(self.clone())
    }

    /// A lead's timeline (`/api/leads/{id}/activities`).
    pub fn activities(&self) -> activities::Activities {
        activities::Activities::new(self.clone())
    }

    /// The event feed (`/api/events`, `/api/events/stream`) and its consumer.
    pub fn events(&self) -> events::Events {
        events::Events::new(self.clone())
    }

    /// Follow-up runs (`/api/followups`).
    pub fn followups(&self) -> followups::FollowUps {
        followups::FollowUps::new(self.clone())
    }

    /// The cockpit figures (`/api/dashboard/followup`).
    pub fn dashboard(&self) -> dashboard::Dashboard {
        dashboard::Dashboard::new(self.clone())
    }

    /// The mail outbox (`/api/mails`).
    pub fn mails(&self) -> mails::Mails {
        mails::Mails::new(self.clone())
    }

    /// Liveness and readiness (`/health`).
    pub fn health(&self) -> health::HealthChecks {
        health::HealthChecks::new(self.clone())
    }

    /// The OpenAPI 3.1 document (`GET /api/openapi.json`).
    pub async fn openapi(&self) -> Result<serde_json::Value> {
        let r = self
            .send(self.request(Method::GET, &["api", "openapi.json"]))
            .await?;
        json(r).await
    }

    // -- plumbing --------------------------------------------------------------------------

    /// The URL of `segments` below the base (each percent-encoded as one path segment).
    pub(crate) fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.inner.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        url
    }

    /// A request to `segments` with the bearer token (if any) and `Accept: application/json`.
    pub(crate) fn request(&self, method: Method, segments: &[&str]) -> RequestBuilder {
        self.request_url(method, self.url(segments))
    }

    pub(crate) fn request_url(&self, method: Method, url: Url) -> RequestBuilder {
        let mut rb = self
            .inner
            .http
            .request(method, url)
            .header(header::ACCEPT, "application/json, application/problem+json");
        if let Some(token) = self.token() {
            rb = rb.bearer_auth(token);
        }
        rb
    }

    /// Sends; an error status (400 and up) becomes an [`Error`].
    pub(crate) async fn send(&self, rb: RequestBuilder) -> Result<Response> {
        let r = rb.send().await?;
        if r.status().is_client_error() || r.status().is_server_error() {
            return Err(error_from(r).await);
        }
        Ok(r)
    }
}

/// Reads an error response: its problem, or its status and text.
pub(crate) async fn error_from(r: Response) -> Error {
    let status = r.status().as_u16();
    let bytes = match r.bytes().await {
        Ok(b) => b,
        Err(e) => return Error::Transport(e),
    };
    match serde_json::from_slice::<api::Problem>(&bytes) {
        Ok(problem) => Error::from_problem(status, problem),
        Err(_) => {
            let mut body = String::from_utf8_lossy(&bytes).into_owned();
            if body.len() > ERROR_BODY_LIMIT {
                let mut cut = ERROR_BODY_LIMIT;
                while !body.is_char_boundary(cut) {
                    cut -= 1;
                }
                body.truncate(cut);
            }
            Error::Status { status, body }
        }
    }
}

/// Reads a JSON body.
pub(crate) async fn json<T: DeserializeOwned>(r: Response) -> Result<T> {
    let status = r.status().as_u16();
    let bytes = r.bytes().await?;
    serde_json::from_slice(&bytes).map_err(|e| Error::Decode {
        what: "body",
        status,
        message: e.to_string(),
    })
}

/// The response's ETag.
pub(crate) fn etag_of(r: &Response) -> Result<ETag> {
    r.headers()
        .get(header::ETAG)
        .and_then(|v| v.to_str().ok())
        .map(ETag::new)
        .ok_or_else(|| Error::Decode {
            what: "ETag",
            status: r.status().as_u16(),
            message: "the response has no ETag header".into(),
        })
}

/// Reads a JSON body with the response's ETag.
pub(crate) async fn versioned<T: DeserializeOwned>(r: Response) -> Result<Versioned<T>> {
    let etag = etag_of(&r)?;
    Ok(Versioned {
        value: json(r).await?,
        etag,
    })
}

/// Reads a conditional GET: 304 is [`Conditional::NotModified`].
pub(crate) async fn conditional<T: DeserializeOwned>(r: Response) -> Result<Conditional<T>> {
    if r.status() == StatusCode::NOT_MODIFIED {
        return Ok(Conditional::NotModified(etag_of(&r)?));
    }
    Ok(Conditional::Modified(versioned(r).await?))
}

/// Adds `If-Match` when given.
pub(crate) fn if_match(rb: RequestBuilder, etag: Option<&ETag>) -> RequestBuilder {
    match etag {
        Some(etag) => rb.header(header::IF_MATCH, etag.header_value()),
        None => rb,
    }
}

/// The wire name of an API enum value (`BusinessType::Restaurant` → `RESTAURANT`): what serde
/// writes, so the names are the API crate's, not a copy.
pub(crate) fn wire_name<T: serde::Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(s)) => s,
        Ok(other) => other.to_string(),
        Err(_) => String::new(),
    }
}

/// An entity tag as the service sent it (strong `"…"` for a lead, weak `W/"…"` for a list
/// page). Opaque: send it back in `If-Match` or `If-None-Match`.
///
/// ```
/// use freshplan_client::ETag;
///
/// let etag = ETag::new("\"0190c2d4e5f67a8b9c0d1e2f3a4b5c6d-3\"");
/// assert_eq!(etag.as_str(), "\"0190c2d4e5f67a8b9c0d1e2f3a4b5c6d-3\"");
/// assert!(!etag.is_weak());
/// assert!(ETag::new("W/\"ab12\"").is_weak());
/// assert_eq!(ETag::any().as_str(), "*");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ETag(String);

impl ETag {
    /// An ETag from its header value (e.g. one you stored).
    pub fn new(value: impl Into<String>) -> ETag {
        ETag(value.into())
    }

    /// `*`: as `If-Match`, matches whatever the current version is (an unconditional write).
    pub fn any() -> ETag {
        ETag("*".into())
    }

    /// The header value.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// A weak ETag (`W/"…"`, list pages).
    pub fn is_weak(&self) -> bool {
        self.0.starts_with("W/")
    }

    fn header_value(&self) -> HeaderValue {
        // An ETag the service sent is a valid header value; one the caller made up may not be,
        // and then matches nothing (the service answers 412 for an unparsable If-Match).
        HeaderValue::from_str(&self.0).unwrap_or_else(|_| HeaderValue::from_static("\"\""))
    }
}

impl fmt::Display for ETag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<String> for ETag {
    fn from(s: String) -> ETag {
        ETag(s)
    }
}

impl From<&str> for ETag {
    fn from(s: &str) -> ETag {
        ETag(s.to_owned())
    }
}

/// A value with the ETag it was read or written at. Derefs to the value.
///
/// ```
/// use freshplan_client::{ETag, Versioned};
///
/// let v = Versioned { value: vec![1, 2, 3], etag: ETag::new("\"x-1\"") };
/// assert_eq!(v.len(), 3); // Deref
/// let (value, etag) = v.into_parts();
/// assert_eq!((value, etag.as_str()), (vec![1, 2, 3], "\"x-1\""));
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Versioned<T> {
    /// The value.
    pub value: T,
    /// Its ETag: pass it to the next write as `If-Match`.
    pub etag: ETag,
}

impl<T> Versioned<T> {
    /// The value without its ETag.
    pub fn into_inner(self) -> T {
        self.value
    }

    /// The value and its ETag.
    pub fn into_parts(self) -> (T, ETag) {
        (self.value, self.etag)
    }
}

impl<T> Deref for Versioned<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.value
    }
}

/// The answer to a conditional GET (`If-None-Match`).
#[derive(Debug, Clone, PartialEq)]
pub enum Conditional<T> {
    /// Changed (or no ETag was given): the current value and ETag.
    Modified(Versioned<T>),
    /// 304: still the version of this ETag.
    NotModified(ETag),
}

impl<T> Conditional<T> {
    /// The new value, if it changed.
    pub fn modified(self) -> Option<Versioned<T>> {
        match self {
            Conditional::Modified(v) => Some(v),
            Conditional::NotModified(_) => None,
        }
    }

    /// 304.
    pub fn is_not_modified(&self) -> bool {
        matches!(self, Conditional::NotModified(_))
    }

    /// The current ETag either way.
    pub fn etag(&self) -> &ETag {
        match self {
            Conditional::Modified(v) => &v.etag,
            Conditional::NotModified(e) => e,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_keep_the_base_path_and_encode_segments() {
        let c = Client::new("https://crm.example/freshplan/").unwrap();
        assert_eq!(
            c.url(&["api", "territories", "D/E"]).as_str(),
            "https://crm.example/freshplan/api/territories/D%2FE"
        );
        let c = Client::new("http://127.0.0.1:8080").unwrap();
        assert_eq!(
            c.url(&["api", "leads"]).as_str(),
            "http://127.0.0.1:8080/api/leads"
        );
        assert!(Client::new("ftp://x").is_err());
        assert!(Client::new("mailto:a@b").is_err());
    }

    #[test]
    fn the_token_is_shared_by_clones_and_not_printed() {
        let a = Client::new("http://x").unwrap().with_token("secret-1");
        let b = a.clone();
        b.set_token("secret-2");
        assert_eq!(a.token().as_deref(), Some("secret-2"));
        assert!(!format!("{a:?}").contains("secret"));
        a.clear_token();
        assert_eq!(b.token(), None);
    }
}
