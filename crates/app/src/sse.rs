//! Server-sent events (SPEC §7.5, §8): framing and a response that merges a message source
//! with keep-alive comments.

use std::time::Duration;

use actix_web::HttpResponse;
use actix_web::http::header;
use actix_web::web::Bytes;
use futures_util::Stream;

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
    }
}
