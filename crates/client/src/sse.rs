//! Server-sent events (`text/event-stream`): an incremental parser of the format as the WHATWG
//! HTML standard defines it, and a connection that reads one response with it.
//!
//! The service's streams are `GET /api/events/stream` (one CloudEvent per message, `id:` = its
//! feed cursor, no `event:` name; a last `token-expired` message when the caller's token
//! expires) and `GET /api/dashboard/followup-stream` (`event: followup-metrics`). Both send
//! comments (`: open`, `: keep-alive`).
//!
//! ```
//! use freshplan_client::sse::{Item, Message, Parser};
//!
//! let mut parser = Parser::new();
//! // Bytes arrive in arbitrary pieces; a message is complete at its blank line.
//! assert!(parser.push(b": open\n\nid: 7-1\nda").len() == 1);
//! let items = parser.push(b"ta: {\"a\":1}\n\nevent: token-expired\r\ndata: {}\r\n\r\n");
//! assert_eq!(
//!     items,
//!     vec![
//!         Item::Message(Message { id: Some("7-1".into()), data: "{\"a\":1}".into(), ..Message::default() }),
//!         Item::Message(Message { event: Some("token-expired".into()), data: "{}".into(), ..Message::default() }),
//!     ]
//! );
//! assert_eq!(parser.last_event_id(), "7-1");
//! ```

use std::collections::VecDeque;
use std::time::Duration;

use reqwest::Response;

use crate::{Error, Result};

/// One dispatched message.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Message {
    /// The `event:` name (`None`: an unnamed message, `message` in `EventSource` terms).
    pub event: Option<String>,
    /// The `id:` this message set (`None`: it set none; see [`Parser::last_event_id`] for the
    /// id `EventSource` would report).
    pub id: Option<String>,
    /// The `data:` lines, joined with `\n`.
    pub data: String,
    /// A `retry:` reconnection time the message asked for.
    pub retry: Option<Duration>,
}

/// What the parser yields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    /// A message.
    Message(Message),
    /// A comment line (`: text`, without the colon and one leading space): e.g. `open`,
    /// `keep-alive`.
    Comment(String),
}

/// An incremental `text/event-stream` parser: push bytes as they arrive, take the complete
/// items. Lines may end in LF, CRLF or CR; a leading BOM is skipped; a message without `data:`
/// is not dispatched (as in `EventSource`), but its `id:` still counts.
#[derive(Debug, Default)]
pub struct Parser {
    buf: Vec<u8>,
    started: bool,
    /// The last line ended in a CR that was the last byte pushed.
    after_cr: bool,
    event: Option<String>,
    id: Option<String>,
    data: String,
    has_data: bool,
    retry: Option<Duration>,
    last_event_id: String,
}

impl Parser {
    /// A parser at the start of a stream.
    pub fn new() -> Parser {
        Parser::default()
    }

    /// The last event id the stream set (`EventSource.lastEventId`): what to send as
    /// `Last-Event-ID` when reconnecting.
    pub fn last_event_id(&self) -> &str {
        &self.last_event_id
    }

    /// Feeds `bytes`; the items completed by them, in order.
    pub fn push(&mut self, bytes: &[u8]) -> Vec<Item> {
        self.buf.extend_from_slice(bytes);
        let mut items = Vec::new();
        while let Some(line) = self.next_line() {
            if let Some(item) = self.line(&line) {
                items.push(item);
            }
        }
        items
    }

    /// The next complete line, without its terminator.
    fn next_line(&mut self) -> Option<String> {
        if !self.started {
            if self.buf.len() < 3 && b"\xEF\xBB\xBF".starts_with(&self.buf) {
                return None;
            }
            if self.buf.starts_with(b"\xEF\xBB\xBF") {
                self.buf.drain(..3);
            }
            self.started = true;
        }
        if self.after_cr && !self.buf.is_empty() {
            // The LF of a CRLF whose CR ended the previous piece.
            if self.buf[0] == b'\n' {
                self.buf.drain(..1);
            }
            self.after_cr = false;
        }
        let end = self.buf.iter().position(|b| *b == b'\n' || *b == b'\r')?;
        let terminator = match (self.buf[end], self.buf.get(end + 1)) {
            (b'\r', Some(b'\n')) => 2,
            (b'\r', None) => {
                // An LF may follow in the next piece: skip it then.
                self.after_cr = true;
                1
            }
            _ => 1,
        };
        let line = String::from_utf8_lossy(&self.buf[..end]).into_owned();
        self.buf.drain(..end + terminator);
        Some(line)
    }

    fn line(&mut self, line: &str) -> Option<Item> {
        if line.is_empty() {
            return self.dispatch();
        }
        if let Some(comment) = line.strip_prefix(':') {
            return Some(Item::Comment(
                comment.strip_prefix(' ').unwrap_or(comment).to_owned(),
            ));
        }
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line, ""),
        };
        match field {
            "event" => self.event = Some(value.to_owned()),
            "data" => {
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(value);
                self.has_data = true;
            }
            "id" if !value.contains('\0') => {
                self.id = Some(value.to_owned());
                value.clone_into(&mut self.last_event_id);
            }
            "retry" if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) => {
                self.retry = value.parse().ok().map(Duration::from_millis);
            }
            _ => {} // unknown fields are ignored
        }
        None
    }

    fn dispatch(&mut self) -> Option<Item> {
        let event = self.event.take();
        let id = self.id.take();
        let retry = self.retry.take();
        let data = std::mem::take(&mut self.data);
        if !std::mem::take(&mut self.has_data) {
            return None;
        }
        Some(Item::Message(Message {
            event: event.filter(|e| !e.is_empty()),
            id,
            data,
            retry,
        }))
    }
}

/// An open `text/event-stream` response, read item by item.
#[derive(Debug)]
pub struct Connection {
    response: Response,
    parser: Parser,
    ready: VecDeque<Item>,
    ended: bool,
}

impl Connection {
    /// Reads `response` (a 200 `text/event-stream`; anything else is an error).
    pub(crate) fn new(response: Response) -> Result<Connection> {
        let content_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if !content_type.starts_with("text/event-stream") {
            return Err(Error::Decode {
                what: "event stream",
                status: response.status().as_u16(),
                message: format!("content type {content_type:?}, not text/event-stream"),
            });
        }
        Ok(Connection {
            response,
            parser: Parser::new(),
            ready: VecDeque::new(),
            ended: false,
        })
    }

    /// The next item; `Ok(None)` when the server ended the response. A connection that breaks
    /// off is [`Error::Transport`].
    pub async fn next_item(&mut self) -> Result<Option<Item>> {
        loop {
            if let Some(item) = self.ready.pop_front() {
                return Ok(Some(item));
            }
            if self.ended {
                return Ok(None);
            }
            match self.response.chunk().await? {
                Some(bytes) => self.ready.extend(self.parser.push(&bytes)),
                None => self.ended = true,
            }
        }
    }

    /// The next message, skipping comments; `Ok(None)` when the server ended the response.
    pub async fn next_message(&mut self) -> Result<Option<Message>> {
        loop {
            match self.next_item().await? {
                Some(Item::Message(m)) => return Ok(Some(m)),
                Some(Item::Comment(_)) => {}
                None => return Ok(None),
            }
        }
    }

    /// The last event id the stream set.
    pub fn last_event_id(&self) -> &str {
        self.parser.last_event_id()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(chunks: &[&[u8]]) -> Vec<Item> {
        let mut p = Parser::new();
        chunks.iter().flat_map(|c| p.push(c)).collect()
    }

    fn msg(event: Option<&str>, id: Option<&str>, data: &str) -> Item {
        Item::Message(Message {
            event: event.map(str::to_owned),
            id: id.map(str::to_owned),
            data: data.to_owned(),
            retry: None,
        })
    }

    #[test]
    fn the_format_is_parsed_as_the_standard_says() {
        let stream = b"\xEF\xBB\xBF: open\n\nid: 1-1\ndata: a\ndata:b\ndata\n\nevent: x\nid\n\nretry: 1500\ndata:  two spaces\n\nfield-without-colon\nunknown: 1\ndata: z\r\r";
        let expected = vec![
            Item::Comment("open".into()),
            msg(None, Some("1-1"), "a\nb\n"),
            Item::Message(Message {
                event: None,
                id: None,
                data: " two spaces".into(),
                retry: Some(Duration::from_millis(1500)),
            }),
            msg(None, None, "z"),
        ];
        assert_eq!(all(&[stream]), expected);
        // The same bytes one at a time (an LF right after a CR in the next piece is skipped).
        let bytewise: Vec<&[u8]> = stream.chunks(1).collect();
        assert_eq!(all(&bytewise), expected);
        let mut p = Parser::new();
        p.push(stream);
        assert_eq!(p.last_event_id(), "", "an empty id: resets it");
    }

    #[test]
    fn a_message_without_data_is_not_dispatched_but_its_id_counts() {
        let mut p = Parser::new();
        assert!(p.push(b"id: 9-9\n\n").is_empty());
        assert_eq!(p.last_event_id(), "9-9");
        assert_eq!(
            p.push(b"event: e\ndata:\n\n"),
            vec![msg(Some("e"), None, "")]
        );
        assert!(p.push(b"data: unfinished").is_empty());
    }

    #[test]
    fn multibyte_characters_split_across_pieces_survive() {
        let text = "data: Köln ✓\n\n".as_bytes();
        let pieces: Vec<&[u8]> = text.chunks(1).collect();
        assert_eq!(all(&pieces), vec![msg(None, None, "Köln ✓")]);
    }
}
