//! A small `text/event-stream` client on reqwest (read chunk by chunk), and the event feed read
//! page by page: what the event-stream tests compare.

use std::time::Duration;

use reqwest::{Client, Response};
use serde_json::Value;

/// One SSE message.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Message {
    pub(crate) id: Option<String>,
    pub(crate) event: Option<String>,
    /// The `data:` lines joined with `\n`.
    pub(crate) data: String,
}

impl Message {
    /// The data as JSON.
    pub(crate) fn json(&self) -> Value {
        serde_json::from_str(&self.data).unwrap_or_else(|e| panic!("{e}: {}", self.data))
    }
}

/// What the stream yields.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Item {
    Message(Message),
    /// A comment line (`: text`), e.g. a keep-alive.
    Comment(String),
    /// The server ended the response.
    End,
}

pub(crate) struct SseClient {
    response: Response,
    buf: Vec<u8>,
    ended: bool,
    /// The comments seen so far.
    pub(crate) comments: Vec<String>,
}

impl SseClient {
    /// Opens `url` (e.g. `http://…/api/events/stream`) with `token` and, when given,
    /// `Last-Event-ID`; asserts 200 `text/event-stream` and waits for the opening comment (the
    /// server has subscribed once it is there).
    pub(crate) async fn connect(
        client: &Client,
        url: &str,
        token: &str,
        last_event_id: Option<&str>,
    ) -> SseClient {
        SseClient::try_connect(client, url, token, last_event_id)
            .await
            .unwrap_or_else(|e| panic!("{url}: {e}"))
    }

    /// [`SseClient::connect`] that reports a failed connect or another status than 200 instead
    /// of panicking (a client that reconnects while the service is down).
    pub(crate) async fn try_connect(
        client: &Client,
        url: &str,
        token: &str,
        last_event_id: Option<&str>,
    ) -> Result<SseClient, String> {
        let mut request = client
            .get(url)
            .bearer_auth(token)
            .header("accept", "text/event-stream");
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id);
        }
        let response = request.send().await.map_err(|e| format!("connect: {e}"))?;
        if response.status() != 200 {
            return Err(format!("HTTP {}", response.status()));
        }
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        assert_eq!(
            response.headers()["cache-control"],
            "no-cache, no-transform"
        );
        let mut client = SseClient {
            response,
            buf: Vec::new(),
            ended: false,
            comments: Vec::new(),
        };
        match client.next_item(Duration::from_secs(30)).await {
            Some(Item::Comment(c)) if c == "open" => Ok(client),
            Some(Item::End) => Err("the stream ended before it opened".into()),
            other => panic!("expected the opening comment, got {other:?}"),
        }
    }

    /// The next item within `limit` (`None`: nothing arrived in time).
    pub(crate) async fn next_item(&mut self, limit: Duration) -> Option<Item> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if let Some(item) = self.parse_one() {
                if let Item::Comment(c) = &item {
                    self.comments.push(c.clone());
                }
                return Some(item);
            }
            if self.ended {
                return Some(Item::End);
            }
            match tokio::time::timeout_at(deadline, self.response.chunk()).await {
                Err(_) => return None,
                Ok(Ok(Some(bytes))) => self.buf.extend_from_slice(&bytes),
                Ok(Ok(None) | Err(_)) => self.ended = true,
            }
        }
    }

    /// The next message within `limit`, skipping (and recording) comments; `None` on timeout,
    /// panics when the stream ends.
    pub(crate) async fn next_message(&mut self, limit: Duration) -> Option<Message> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next_item(left).await? {
                Item::Message(m) => return Some(m),
                Item::Comment(_) => {}
                Item::End => panic!("the event stream ended"),
            }
        }
    }

    /// Like [`SseClient::next_message`], but `None` also when the stream ends (a killed server).
    pub(crate) async fn next_message_or_end(&mut self, limit: Duration) -> Option<Message> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next_item(left).await? {
                Item::Message(m) => return Some(m),
                Item::Comment(_) => {}
                Item::End => return None,
            }
        }
    }

    fn parse_one(&mut self) -> Option<Item> {
        let end = self.buf.windows(2).position(|w| w == b"\n\n")?;
        let frame: Vec<u8> = self.buf.drain(..end + 2).collect();
        let text = String::from_utf8(frame).expect("UTF-8 event stream");
        let mut message = Message {
            id: None,
            event: None,
            data: String::new(),
        };
        let mut data_lines = Vec::new();
        for line in text.lines().filter(|l| !l.is_empty()) {
            if let Some(comment) = line.strip_prefix(':') {
                return Some(Item::Comment(comment.trim_start().to_owned()));
            }
            let (field, value) = line.split_once(':').unwrap_or((line, ""));
            let value = value.strip_prefix(' ').unwrap_or(value);
            match field {
                "id" => message.id = Some(value.to_owned()),
                "event" => message.event = Some(value.to_owned()),
                "data" => data_lines.push(value.to_owned()),
                other => panic!("unexpected SSE field {other:?} in {text:?}"),
            }
        }
        message.data = data_lines.join("\n");
        Some(Item::Message(message))
    }
}

/// Every event of the feed (`GET /api/events`, pages of `limit`): the outbox contents in commit
/// order, and the last `nextCursor`. Checks that an empty page leaves the cursor unchanged.
pub(crate) async fn whole_feed(
    client: &Client,
    base: &str,
    token: &str,
    limit: u32,
) -> (Vec<Value>, String) {
    let mut all = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let mut url = format!("{base}/api/events?limit={limit}");
        if let Some(a) = &after {
            url.push_str(&format!("&after={a}"));
        }
        let r = client.get(&url).bearer_auth(token).send().await.unwrap();
        assert_eq!(r.status(), 200, "{url}");
        let page: Value = r.json().await.unwrap();
        let events = page["events"].as_array().unwrap();
        assert!(events.len() <= limit as usize);
        let next = page["nextCursor"].as_str().unwrap().to_owned();
        if events.is_empty() {
            assert_eq!(
                after.as_deref().unwrap_or("0-0"),
                next,
                "nextCursor unchanged"
            );
            return (all, next);
        }
        assert_ne!(after.as_deref(), Some(next.as_str()), "nextCursor moved");
        all.extend(events.iter().cloned());
        after = Some(next);
    }
}

/// The CloudEvent ids of `events`.
pub(crate) fn ids(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_owned())
        .collect()
}

/// [`whole_feed`] once it holds every committed outbox row. The feed returns an event only when
/// no older transaction can still commit before it (`docs/ARCHITECTURE.md`), so right after a
/// commit it may briefly lag behind — e.g. while another replica's NOTIFY transaction commits.
pub(crate) async fn settled_feed(
    client: &Client,
    base: &str,
    token: &str,
    database_url: &str,
) -> Vec<Value> {
    let started = std::time::Instant::now();
    loop {
        let (events, _) = whole_feed(client, base, token, 1000).await;
        let rows = freshplan_store_postgres::testing::row_counts(database_url)
            .await
            .unwrap()
            .2;
        if events.len() as i64 == rows {
            return events;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the feed shows {} of {rows} events after 10 s",
            events.len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
