//! The event feed for other services (SPEC §7.5): `GET /api/events` pages through the outbox in
//! commit order; `GET /api/events/stream` pushes the same events over SSE, resumable.
//!
//! Both speak the outbox cursor (`freshplan_events_pg::Cursor`, opaque text `<txid>-<id>`): the
//! page's `nextCursor` and `after`, the SSE `id:` and `Last-Event-ID`. Admin and service roles
//! only (SPEC §2); the outbox's row-level security says the same in the database.
//!
//! The stream never sends an event twice and never skips one: it subscribes to this replica's
//! broadcast *first*, then reads the outbox from its start position until it has caught up, and
//! from then on forwards broadcast events whose cursor is beyond the last one it sent. A
//! subscriber that falls behind the broadcast (`Lagged`) catches up from the outbox the same
//! way. Every event the broadcast has not delivered yet is either still coming from it (in
//! cursor order) or was final before the catch-up read (a later snapshot's horizon is never
//! behind an earlier one's), so the two paths leave no gap; the cursor comparison drops the
//! overlap.

use std::collections::VecDeque;
use std::sync::Arc;

use actix_web::http::{StatusCode, header};
use actix_web::web::Bytes;
use actix_web::{HttpRequest, HttpResponse, web};
use tokio::sync::broadcast::{self, error::RecvError};
use tokio::sync::watch;

use freshplan_api::events::{CloudEvent, EventPage};
use freshplan_events_pg::{Cursor, MAX_PAGE, OutboxEvent, head, read_page};
use freshplan_kernel::{Actor, Role};

use crate::AppState;
use crate::api::common::Result;
use crate::auth::Caller;
use crate::problem::Problem;
use crate::sse;

/// `limit` of `GET /api/events` when none is given.
pub const DEFAULT_LIMIT: u32 = 100;

/// Events per outbox read while a stream catches up.
const CATCH_UP_PAGE: u32 = 500;

/// Registers `GET /api/events` and `GET /api/events/stream`.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/api/events", web::get().to(list))
        .route("/api/events/stream", web::get().to(stream));
}

/// The body of an event of the outbox.
fn body(e: freshplan_kernel::CloudEvent) -> CloudEvent {
    CloudEvent {
        specversion: e.specversion,
        id: e.id,
        source: e.source,
        event_type: e.event_type,
        time: e.time,
        subject: e.subject,
        datacontenttype: e.datacontenttype,
        idempotencykey: e.idempotencykey,
        extensions: e.extensions,
        data: e.data,
    }
}

/// Every event type of the catalog (`docs/events/catalog.json`): the values `type` accepts.
pub fn event_types() -> impl Iterator<Item = &'static str> {
    freshplan_leads::events::LEAD_EVENT_TYPES
        .into_iter()
        .chain([
            freshplan_followup::event::FOLLOWUP_SENT,
            freshplan_followup::event::FOLLOWUP_SKIPPED,
            freshplan_followup::event::FOLLOWUP_PROCESSED,
        ])
}

/// The parsed query of the feed endpoints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedQuery {
    /// `after`: start after this cursor (`None`: the page starts at the oldest retained event,
    /// the stream with new events only).
    pub after: Option<Cursor>,
    /// `limit` (1–1000, default [`DEFAULT_LIMIT`]; the page only).
    pub limit: u32,
    /// `type`: only events of this catalog type.
    pub event_type: Option<&'static str>,
}

/// Parses `after`, `limit` (unless `stream`) and `type`; anything unparsable, out of range,
/// repeated or unknown is 400 (SPEC §9).
pub fn feed_query(query: &str, stream: bool) -> Result<FeedQuery> {
    let mut q = FeedQuery {
        after: None,
        limit: DEFAULT_LIMIT,
        event_type: None,
    };
    let mut seen = Vec::new();
    for (k, v) in form_urlencoded::parse(query.as_bytes()) {
        if seen.contains(&k) {
            return Err(Problem::bad_field(&k, "given more than once"));
        }
        match k.as_ref() {
            "after" => {
                q.after =
                    Some(Cursor::parse(&v).map_err(|_| {
                        Problem::bad_field("after", "not a cursor this API returned")
                    })?);
            }
            "limit" if !stream => {
                q.limit = v
                    .parse::<u32>()
                    .ok()
                    .filter(|n| (1..=MAX_PAGE).contains(n))
                    .ok_or_else(|| {
                        Problem::bad_field("limit", format!("must be between 1 and {MAX_PAGE}"))
                    })?;
            }
            "type" => {
                q.event_type = Some(event_types().find(|t| *t == v).ok_or_else(|| {
                    Problem::bad_field("type", format!("unknown event type {v:?}"))
                })?);
            }
            other => return Err(Problem::bad_field(other, "unknown query parameter")),
        }
        seen.push(k);
    }
    Ok(q)
}

/// The feed is for admins and machine clients (SPEC §2); other roles are 403.
fn require_feed_role(actor: &Actor) -> Result<()> {
    if actor.has_role(Role::Admin) || actor.has_role(Role::Service) {
        Ok(())
    } else {
        Err(Problem::forbidden(
            "The event feed is for the admin and service roles.",
        ))
    }
}

/// `GET /api/events`
#[utoipa::path(get, path = "/api/events", operation_id = "list_events", tag = "events", security(("bearer" = [])),
    params(
        ("after" = Option<String>, Query, pattern = "^(0|[1-9][0-9]{0,18})-(0|[1-9][0-9]{0,17})$", description = "A cursor from `nextCursor` or an SSE `id:`; without it the page starts at the oldest retained event"),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 1000, description = "Events per page (default 100)"),
        ("type" = Option<String>, Query, description = "Only events of this catalog type, e.g. `lead.created.v1`")),
    responses(
        (status = 200, description = "Events in commit order and the cursor to pass as `after` next (unchanged when there is nothing new)", body = EventPage),
        (status = 400, response = crate::openapi::BadRequest), (status = 401, response = crate::openapi::Unauthorized), (status = 403, response = crate::openapi::Forbidden)))]
pub async fn list(
    req: HttpRequest,
    state: web::Data<AppState>,
    caller: Caller,
) -> Result<HttpResponse> {
    require_feed_role(&caller.0)?;
    let q = feed_query(req.query_string(), false)?;
    let page = read_page(
        state.leads.store().pool(),
        &caller.0,
        q.after,
        q.limit,
        q.event_type,
    )
    .await
    .map_err(|e| Problem::internal(&e))?;
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(EventPage {
            events: page.events.into_iter().map(|e| body(e.event)).collect(),
            next_cursor: page.next_cursor.encode(),
        }))
}

/// `GET /api/events/stream`
#[utoipa::path(get, path = "/api/events/stream", operation_id = "stream_events", tag = "events", security(("bearer" = [])),
    params(
        ("Last-Event-ID" = Option<String>, Header, pattern = "^[ \t]*((0|[1-9][0-9]{0,18})-(0|[1-9][0-9]{0,17}))?[ \t]*$", description = "Resume after this cursor (sent by EventSource on reconnect); wins over `after`"),
        ("after" = Option<String>, Query, pattern = "^(0|[1-9][0-9]{0,18})-(0|[1-9][0-9]{0,17})$", description = "Start after this cursor; without it (and without Last-Event-ID) the stream starts with new events only"),
        ("type" = Option<String>, Query, description = "Only events of this catalog type")),
    responses(
        (status = 200, description = "`text/event-stream`: first a `: open` comment (subscribed), then one CloudEvent (JSON) per message in its `data:` line with `id:` = its cursor and no `event:` name (EventSource `message` events), in commit order, each once; a `: keep-alive` comment after 15 s of quiet. The stream ends when the server stops (reconnect with the same token and `Last-Event-ID`), and at the bearer token's `exp`: a last message `event: token-expired` with `data: {\"reason\":\"token expired\",\"expiredAt\":\"<exp, RFC 3339>\"}` and no `id:` line (so `Last-Event-ID` stays at the last event), then the response closes; reconnect with a new token and `Last-Event-ID`.", content_type = "text/event-stream", body = CloudEvent),
        (status = 400, response = crate::openapi::BadRequest), (status = 401, response = crate::openapi::Unauthorized), (status = 403, response = crate::openapi::Forbidden),
        (status = 503, response = crate::openapi::Unavailable)))]
pub async fn stream(
    req: HttpRequest,
    state: web::Data<AppState>,
    caller: Caller,
) -> Result<HttpResponse> {
    require_feed_role(&caller.0)?;
    let expires_at = caller.expires_at();
    let q = feed_query(req.query_string(), true)?;
    // An empty Last-Event-ID is none (EventSource sends none while its last id is empty).
    let last_event_id = match req.headers().get("last-event-id") {
        None => None,
        Some(v) if v.as_bytes().iter().all(|b| matches!(b, b' ' | b'\t')) => None,
        Some(v) => Some(
            v.to_str()
                .ok()
                .and_then(|v| Cursor::parse(v.trim()).ok())
                .ok_or_else(|| {
                    Problem::bad_field("Last-Event-ID", "not a cursor this API returned")
                })?,
        ),
    };
    let Some(events) = state.events.as_ref() else {
        return Err(Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "events-off",
            "The event stream is switched off on this replica; use GET /api/events.",
        ));
    };
    // Subscribe before fixing the start position and reading the outbox: see the module doc.
    // The broadcast carries every event unfiltered; that is right because the feed roles read
    // the whole outbox under row-level security too (a role with a narrower view would need the
    // same filter here).
    let rx = events.subscribe();
    let start = match last_event_id.or(q.after) {
        Some(c) => c,
        None => head(state.leads.store().pool())
            .await
            .map_err(|e| Problem::internal(&e))?,
    };
    let feed = Feed {
        state: state.clone(),
        actor: caller.0,
        event_type: q.event_type,
        rx,
        closing: state.closing.clone(),
        last: start,
        catching_up: true,
        read_from: start,
        backlog: VecDeque::new(),
    };
    // A first comment flushes the response head: from then on the client knows it is subscribed.
    let opened = futures_util::stream::once(std::future::ready(sse::comment("open")));
    let messages = futures_util::stream::unfold(feed, |mut feed| async move {
        let message = feed.next().await?;
        Some((message, feed))
    });
    let body = futures_util::StreamExt::chain(opened, messages);
    // Ends at the token's expiry (ADR 0010); the client resumes with a new one and Last-Event-ID.
    Ok(sse::response_until(
        Box::pin(body),
        state.sse_keep_alive,
        expires_at,
    ))
}

/// One SSE client's position and sources.
struct Feed {
    state: web::Data<AppState>,
    actor: Actor,
    event_type: Option<&'static str>,
    rx: broadcast::Receiver<Arc<OutboxEvent>>,
    /// Becomes true when the server stops: the stream ends so the graceful stop need not wait.
    closing: watch::Receiver<bool>,
    /// The cursor of the last event sent (at first the start position): nothing at or before it
    /// is sent.
    last: Cursor,
    /// Reading the outbox (at the start, and after lagging) until a short page.
    catching_up: bool,
    read_from: Cursor,
    backlog: VecDeque<OutboxEvent>,
}

impl Feed {
    fn wanted(&self, e: &OutboxEvent) -> bool {
        e.cursor > self.last && self.event_type.is_none_or(|t| e.event.event_type == t)
    }

    /// Marks the event at `cursor` sent and frames it.
    fn send(&mut self, cursor: Cursor, event: freshplan_kernel::CloudEvent) -> Option<Bytes> {
        self.last = cursor;
        match serde_json::to_string(&body(event)) {
            Ok(json) => Some(sse::frame(None, Some(&cursor.encode()), &json)),
            Err(error) => {
                // Cannot happen for an event that was decoded from JSON; end the stream rather
                // than skip it (the client resumes before it).
                tracing::error!(%error, %cursor, "encoding an event for SSE");
                None
            }
        }
    }

    /// The next message; `None` ends the stream (server stopping, pipeline gone, or the outbox
    /// unreadable — the client reconnects with `Last-Event-ID`).
    async fn next(&mut self) -> Option<Bytes> {
        loop {
            if let Some(e) = self.backlog.pop_front() {
                if self.wanted(&e) {
                    return self.send(e.cursor, e.event);
                }
                continue;
            }
            if *self.closing.borrow() {
                return None;
            }
            if self.catching_up {
                if let Some(events) = &self.state.events {
                    tokio::select! {
                        biased;
                        _ = self.closing.changed() => return None,
                        () = events.started() => {}
                    }
                }
                let page = read_page(
                    self.state.leads.store().pool(),
                    &self.actor,
                    Some(self.read_from),
                    CATCH_UP_PAGE,
                    self.event_type,
                )
                .await;
                match page {
                    Ok(page) => {
                        self.catching_up = page.events.len() == CATCH_UP_PAGE as usize;
                        self.read_from = page.next_cursor;
                        self.backlog.extend(page.events);
                        continue;
                    }
                    Err(error) => {
                        tracing::warn!(%error, "event stream: reading the outbox failed; closing the stream");
                        return None;
                    }
                }
            }
            tokio::select! {
                biased;
                _ = self.closing.changed() => return None,
                received = self.rx.recv() => match received {
                    Ok(e) => {
                        if self.wanted(&e) {
                            // Shared with the other subscribers: this one encodes a copy.
                            return self.send(e.cursor, e.event.clone());
                        }
                    }
                    Err(RecvError::Lagged(missed)) => {
                        tracing::debug!(missed, "event stream lagged; catching up from the outbox");
                        if let Some(events) = &self.state.events {
                            events.stream_lagged();
                        }
                        self.catching_up = true;
                        self.read_from = self.last;
                    }
                    Err(RecvError::Closed) => return None,
                },
            }
        }
    }
}
