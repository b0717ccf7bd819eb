//! Server-sent events (SPEC §7.5, §8): framing, a response that merges a message source with
//! keep-alive comments, and the end of an authenticated stream at its token's expiry.

use std::time::Duration;

use actix_web::http::header;
use actix_web::web::Bytes;
use actix_web::{HttpResponse, ResponseError};
use futures_util::Stream;
use futures_util::future::LocalBoxFuture;
use serde::Serialize;
use time::OffsetDateTime;

/// Keep-alive comment interval: below the usual 30–60 s idle timeouts of proxies.
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// One SSE message: optional `event:` name and `id:`, and `data:` lines (a JSON document has no
/// raw newlines, but any are split into several `data:` lines as the format requires).
pub fn frame(event: Option<&str>, id: Option<&str>, data: &str) -> Bytes {
    let mut out = String::with_capacity(data.len() + 64);
    if let Some(event) = event {
        out.push_str("event: ");
        out.push_str(event);
        out.push('\n');
    }
    if let Some(id) = id {
        out.push_str("id: ");
        out.push_str(id);
        out.push('\n');
    }
    for line in data.split('\n') {
        out.push_str("data: ");
        out.push_str(line);
        out.push('\n');
    }
    out.push('\n');
    Bytes::from(out)
}

/// A keep-alive comment line.
pub fn comment(text: &str) -> Bytes {
    Bytes::from(format!(": {text}\n\n"))
}

/// A `text/event-stream` response of `messages`, with a keep-alive comment whenever nothing was
/// sent for `keep_alive` (the configured [`crate::config::Config::sse_keep_alive`], default
/// [`KEEP_ALIVE`]). The stream ends when `messages` ends (the client then reconnects, resuming
/// with `Last-Event-ID` where the endpoint supports it). `messages` is polled again after a
/// keep-alive, so it must not lose what it was waiting for (streams built with
/// `futures_util::stream::unfold` keep their pending future).
pub fn response<S>(messages: S, keep_alive: Duration) -> HttpResponse
where
    S: Stream<Item = Bytes> + Unpin + 'static,
{
    use futures_util::StreamExt;
    let stream =
        futures_util::stream::unfold((messages, false), move |(mut messages, done)| async move {
            if done {
                return None;
            }
            match tokio::time::timeout(keep_alive, messages.next()).await {
                Ok(Some(bytes)) => Some((bytes, (messages, false))),
                Ok(None) => None,
                Err(_) => Some((comment("keep-alive"), (messages, false))),
            }
        })
        .map(Ok::<_, std::convert::Infallible>);
    HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, "text/event-stream"))
        .insert_header((header::CACHE_CONTROL, "no-cache, no-transform"))
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(stream)
}

/// The event name of the last message of a stream whose token expired (ADR 0010). Named, so an
/// `EventSource`'s `message` listeners and CloudEvent consumers do not take it for data, and
/// without an `id:`, so the client's `Last-Event-ID` stays at the last event it got.
pub const TOKEN_EXPIRED_EVENT: &str = "token-expired";

/// The `data:` of the [`TOKEN_EXPIRED_EVENT`] message.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct TokenExpired {
    /// Always `token expired`.
    reason: &'static str,
    /// The token's `exp`.
    #[serde(with = "time::serde::rfc3339")]
    expired_at: OffsetDateTime,
}

/// The [`TOKEN_EXPIRED_EVENT`] message.
pub fn token_expired(expired_at: OffsetDateTime) -> Bytes {
    let body = TokenExpired {
        reason: "token expired",
        expired_at,
    };
    // Cannot fail: a static string and a date within the years 0–9999.
    let json =
        serde_json::to_string(&body).unwrap_or_else(|_| r#"{"reason":"token expired"}"#.into());
    frame(Some(TOKEN_EXPIRED_EVENT), None, &json)
}

/// Longest single wait for a token's expiry before the wall clock is read again: the timer runs
/// on the monotonic clock, `exp` is wall-clock time, and the two part when the wall clock is
/// stepped (NTP) or the machine sleeps.
const EXPIRY_RECHECK: Duration = Duration::from_secs(30);

/// Resolves once the wall clock has reached `at` (never early).
async fn reached(at: OffsetDateTime) {
    loop {
        let left = at - OffsetDateTime::now_utc();
        if !left.is_positive() {
            return;
        }
        let left = Duration::try_from(left).unwrap_or(EXPIRY_RECHECK);
        tokio::time::sleep(left.min(EXPIRY_RECHECK)).await;
    }
}

/// [`response`] for a stream that acts on behalf of a caller whose token expires at
/// `expires_at` ([`crate::auth::Caller::expires_at`]): at that instant — not later by the
/// validation's leeway — the stream stops sending `messages`, sends a last
/// [`TOKEN_EXPIRED_EVENT`] message and ends. A token already past its `exp` (accepted only
/// within the leeway) gets the 401 of an expired token instead of a stream that ends at once, so
/// a client retrying with it is told why, the way every other endpoint tells it after the leeway.
pub fn response_until<S>(
    messages: S,
    keep_alive: Duration,
    expires_at: OffsetDateTime,
) -> HttpResponse
where
    S: Stream<Item = Bytes> + Unpin + 'static,
{
    if OffsetDateTime::now_utc() >= expires_at {
        return crate::auth::Unauthorized::token_expired(expires_at).error_response();
    }
    response(Box::pin(until(messages, expires_at)), keep_alive)
}

/// `messages` until the wall clock reaches `expires_at`, then the [`TOKEN_EXPIRED_EVENT`]
/// message, then the end. The expiry wins when both are ready: nothing is sent after it.
fn until<S>(messages: S, expires_at: OffsetDateTime) -> impl Stream<Item = Bytes>
where
    S: Stream<Item = Bytes> + Unpin + 'static,
{
    use futures_util::StreamExt;
    let expiry: LocalBoxFuture<'static, ()> = Box::pin(reached(expires_at));
    futures_util::stream::unfold(Some((messages, expiry)), move |state| async move {
        let (mut messages, mut expiry) = state?;
        tokio::select! {
            biased;
            () = &mut expiry => {
                tracing::debug!(%expires_at, "SSE stream: the token expired; ending it");
                Some((token_expired(expires_at), None))
            }
            next = messages.next() => next.map(|bytes| (bytes, Some((messages, expiry)))),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_follow_the_event_stream_format() {
        assert_eq!(
            frame(Some("followup-metrics"), Some("7"), r#"{"a":1}"#),
            Bytes::from("event: followup-metrics\nid: 7\ndata: {\"a\":1}\n\n")
        );
        assert_eq!(
            frame(None, None, "a\nb"),
            Bytes::from("data: a\ndata: b\n\n")
        );
        assert_eq!(comment("keep-alive"), Bytes::from(": keep-alive\n\n"));
        assert_eq!(
            token_expired(time::macros::datetime!(2026-03-01 12:00:05 UTC)),
            Bytes::from(
                "event: token-expired\ndata: {\"reason\":\"token expired\",\"expiredAt\":\"2026-03-01T12:00:05Z\"}\n\n"
            )
        );
    }

    #[tokio::test]
    async fn a_stream_ends_at_the_expiry_with_the_token_expired_message_and_nothing_after() {
        use futures_util::StreamExt;
        let a = Bytes::from_static(b"data: a\n\n");
        // Two messages, then a source that never ends by itself.
        let source = futures_util::stream::iter([a.clone(), a.clone()])
            .chain(futures_util::stream::pending());
        let expires_at = OffsetDateTime::now_utc() + time::Duration::milliseconds(300);
        let items: Vec<Bytes> = until(source, expires_at).collect().await;
        assert!(
            OffsetDateTime::now_utc() >= expires_at,
            "not before the expiry"
        );
        assert_eq!(items, [a.clone(), a, token_expired(expires_at)]);

        // A source that always has more: the expiry still ends it, and wins when both are ready.
        let source = futures_util::stream::repeat(Bytes::from_static(b"data: x\n\n"));
        let past = OffsetDateTime::now_utc() - time::Duration::seconds(1);
        let items: Vec<Bytes> = until(source, past).collect().await;
        assert_eq!(items, [token_expired(past)]);
    }
}
