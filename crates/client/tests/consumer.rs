//! The event consumer against a scripted feed server: catch-up over pages, the stream with
//! `Last-Event-ID`, dropped connections, a server that repeats events, `token-expired`, 401s,
//! and resuming from a mid-page checkpoint — what the real service cannot be made to do on
//! demand. (The consumer against the real service: `crates/app/tests/it/client.rs`.)

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{StreamExt, TryStreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use uuid::Uuid;

use freshplan_client::consumer::Checkpoint;
use freshplan_client::events::{CloudEvent, Cursor};
use freshplan_client::{BoxError, Client, Error};

/// What one stream connection does, step by step.
#[derive(Debug, Clone)]
enum Step {
    /// Sends the stored events after this index (1-based; 0: all).
    SendFrom(usize),
    /// Sends the stored events after the request's `Last-Event-ID`.
    SendMissed,
    /// Stores `n` new events and sends them.
    Append(usize),
    /// Sends the `token-expired` message.
    TokenExpired,
    /// Waits this long, sending nothing.
    Pause(Duration),
    /// Sends a comment.
    Comment,
}

#[derive(Default)]
struct State {
    events: Vec<Value>,
    valid_tokens: HashSet<String>,
    /// One script per stream connection, in order; past the last, connections send the missed
    /// events and stay open.
    scripts: VecDeque<Vec<Step>>,
    /// Every request: (path and query, token, Last-Event-ID).
    requests: Vec<(String, Option<String>, Option<String>)>,
}

fn cursor_of(i: usize) -> String {
    format!("9-{i}")
}

fn index_of(cursor: &str) -> usize {
    cursor.strip_prefix("9-").unwrap().parse().unwrap()
}

fn make_event(i: usize) -> Value {
    json!({
        "specversion": "1.0", "id": Uuid::from_u128(i as u128), "source": "freshplan.leads",
        "type": "lead.created.v1", "time": "2026-03-02T09:30:00Z",
        "subject": format!("lead-{i}"), "datacontenttype": "application/json",
        "idempotencykey": Uuid::from_u128(1000 + i as u128), "data": {"n": i}
    })
}

struct Server {
    base: String,
    state: Arc<Mutex<State>>,
    accept: tokio::task::JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

impl Server {
    async fn start(events: usize, token: &str, scripts: Vec<Vec<Step>>) -> Server {
        let state = Arc::new(Mutex::new(State {
            events: (1..=events).map(make_event).collect(),
            valid_tokens: HashSet::from([token.to_owned()]),
            scripts: scripts.into(),
            ..State::default()
        }));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let accept = {
            let state = Arc::clone(&state);
            tokio::spawn(async move {
                while let Ok((socket, _)) = listener.accept().await {
                    tokio::spawn(serve(socket, Arc::clone(&state)));
                }
            })
        };
        Server {
            base,
            state,
            accept,
        }
    }

    fn client(&self, token: &str) -> Client {
        Client::new(&self.base).unwrap().with_token(token)
    }

    fn requests(&self) -> Vec<(String, Option<String>, Option<String>)> {
        self.state.lock().unwrap().requests.clone()
    }

    fn stream_requests(&self) -> Vec<(Option<String>, Option<String>)> {
        self.requests()
            .into_iter()
            .filter(|(p, _, _)| p.starts_with("/api/events/stream"))
            .map(|(_, t, l)| (t, l))
            .collect()
    }
}

async fn serve(mut socket: TcpStream, state: Arc<Mutex<State>>) {
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match socket.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let mut lines = head.lines();
    let target = lines.next().unwrap().split(' ').nth(1).unwrap().to_owned();
    let mut token = None;
    let mut last_event_id = None;
    for line in lines {
        if let Some((k, v)) = line.split_once(':') {
            match k.to_ascii_lowercase().as_str() {
                "authorization" => token = v.trim().strip_prefix("Bearer ").map(str::to_owned),
                "last-event-id" => last_event_id = Some(v.trim().to_owned()),
                _ => {}
            }
        }
    }
    let (authorized, script) = {
        let mut s = state.lock().unwrap();
        s.requests
            .push((target.clone(), token.clone(), last_event_id.clone()));
        let authorized = token.as_ref().is_some_and(|t| s.valid_tokens.contains(t));
        let script = if authorized && target.starts_with("/api/events/stream") {
            s.scripts.pop_front()
        } else {
            None
        };
        (authorized, script)
    };
    if !authorized {
        let body = json!({"type": "https://freshplan.example/problems/unauthorized",
            "title": "Unauthorized", "status": 401, "detail": "Invalid token."})
        .to_string();
        let _ = socket
            .write_all(
                format!(
                    "HTTP/1.1 401 Unauthorized\r\ncontent-type: application/problem+json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                )
                .as_bytes(),
            )
            .await;
        return;
    }
    if let Some(query) = target
        .strip_prefix("/api/events?")
        .or_else(|| (target == "/api/events").then_some(""))
    {
        let (mut after, mut limit) = (0, 100);
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap();
            match k {
                "after" => after = index_of(v),
                "limit" => limit = v.parse().unwrap(),
                _ => panic!("unexpected parameter {k}"),
            }
        }
        let events: Vec<Value> = {
            let s = state.lock().unwrap();
            s.events.iter().skip(after).take(limit).cloned().collect()
        };
        let next = cursor_of(after + events.len());
        let body = json!({"events": events, "nextCursor": next}).to_string();
        let _ = socket
            .write_all(
                format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                )
                .as_bytes(),
            )
            .await;
        return;
    }
    assert!(target.starts_with("/api/events/stream"), "{target}");
    let missed = last_event_id.as_deref().map_or(0, index_of);
    let script =
        script.unwrap_or_else(|| vec![Step::SendMissed, Step::Pause(Duration::from_secs(3600))]);
    let mut out = String::from(
        "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n: open\n\n",
    );
    let frame = |i: usize, e: &Value| format!("id: {}\ndata: {e}\n\n", cursor_of(i));
    for step in script {
        match step {
            Step::SendFrom(from) => {
                let s = state.lock().unwrap();
                for (i, e) in s.events.iter().enumerate().skip(from) {
                    out.push_str(&frame(i + 1, e));
                }
            }
            Step::SendMissed => {
                let s = state.lock().unwrap();
                for (i, e) in s.events.iter().enumerate().skip(missed) {
                    out.push_str(&frame(i + 1, e));
                }
            }
            Step::Append(n) => {
                let mut s = state.lock().unwrap();
                for _ in 0..n {
                    let i = s.events.len() + 1;
                    let e = make_event(i);
                    out.push_str(&frame(i, &e));
                    s.events.push(e);
                }
            }
            Step::TokenExpired => out.push_str(
                "event: token-expired\ndata: {\"reason\":\"token expired\",\"expiredAt\":\"2026-03-02T10:00:00Z\"}\n\n",
            ),
            Step::Comment => out.push_str(": keep-alive\n\n"),
            Step::Pause(d) => {
                if socket.write_all(out.as_bytes()).await.is_err() {
                    return;
                }
                out.clear();
                tokio::time::sleep(d).await;
            }
        }
    }
    let _ = socket.write_all(out.as_bytes()).await;
    // Dropping the socket ends the response (a server-side end, or a dropped connection).
}

fn subjects(items: &[(Checkpoint, CloudEvent)]) -> Vec<String> {
    items
        .iter()
        .map(|(_, e)| e.subject.clone().unwrap())
        .collect()
}

fn leads(range: std::ops::RangeInclusive<usize>) -> Vec<String> {
    range.map(|i| format!("lead-{i}")).collect()
}

/// Takes `n` items within 10 s.
async fn take(
    stream: &mut futures_util::stream::BoxStream<
        'static,
        freshplan_client::Result<(Checkpoint, CloudEvent)>,
    >,
    n: usize,
) -> Vec<(Checkpoint, CloudEvent)> {
    let mut out = Vec::new();
    while out.len() < n {
        let item = tokio::time::timeout(Duration::from_secs(10), stream.try_next())
            .await
            .unwrap_or_else(|_| panic!("only {} of {n} events within 10 s", out.len()))
            .unwrap()
            .expect("the stream ended");
        out.push(item);
    }
    out
}

/// Nothing more within `d`.
async fn quiet(
    stream: &mut futures_util::stream::BoxStream<
        'static,
        freshplan_client::Result<(Checkpoint, CloudEvent)>,
    >,
    d: Duration,
) {
    if let Ok(item) = tokio::time::timeout(d, stream.next()).await {
        panic!("expected nothing more, got {item:?}");
    }
}

#[tokio::test]
async fn catches_up_over_pages_then_streams_and_survives_drops_and_repeats() {
    let server = Server::start(
        7,
        "t1",
        vec![
            // Two live events, then the connection drops.
            vec![Step::SendMissed, Step::Append(2)],
            // A server that repeats the last two events it sent before, then one new event,
            // then ends the stream.
            vec![Step::SendFrom(7), Step::Append(1)],
            // Keep-alives, then one more.
            vec![
                Step::SendMissed,
                Step::Comment,
                Step::Append(1),
                Step::Pause(Duration::from_secs(3600)),
            ],
        ],
    )
    .await;
    let mut events = server
        .client("t1")
        .events()
        .consumer()
        .page_limit(3)
        .backoff(Duration::from_millis(10), Duration::from_millis(50))
        .into_stream();
    let got = take(&mut events, 11).await;
    assert_eq!(subjects(&got), leads(1..=11), "each once, in order");
    quiet(&mut events, Duration::from_millis(300)).await;

    // The catch-up read pages of 3 until one came back empty, then the stream resumed at each
    // reconnect from the last event handed out.
    let pages: Vec<String> = server
        .requests()
        .into_iter()
        .map(|(p, _, _)| p)
        .filter(|p| p.starts_with("/api/events?"))
        .collect();
    assert_eq!(
        &pages[..4],
        [
            "/api/events?limit=3",
            "/api/events?after=9-3&limit=3",
            "/api/events?after=9-6&limit=3",
            "/api/events?after=9-7&limit=3",
        ]
    );
    let resumed: Vec<Option<String>> = server
        .stream_requests()
        .into_iter()
        .map(|(_, l)| l)
        .collect();
    assert_eq!(
        resumed,
        [Some("9-7".into()), Some("9-9".into()), Some("9-10".into())]
    );
    // Checkpoints: exact where the feed names a cursor (a page's last event, every streamed
    // one), mid-page positions elsewhere.
    assert_eq!(
        got[0].0.to_string(),
        "through=00000000-0000-0000-0000-000000000001"
    );
    assert!(!got[0].0.is_exact() && got[0].0.cursor().is_none());
    assert_eq!(got[2].0, Checkpoint::after(Cursor::new("9-3")));
    assert!(!got[3].0.is_exact());
    assert_eq!(got[3].0.cursor(), Some(&Cursor::new("9-3")));
    for (i, (checkpoint, _)) in got.iter().enumerate().skip(6) {
        assert_eq!(
            checkpoint,
            &Checkpoint::after(Cursor::new(cursor_of(i + 1)))
        );
    }
}

#[tokio::test]
async fn a_mid_page_checkpoint_resumes_exactly_after_its_event() {
    let server = Server::start(8, "t1", Vec::new()).await;
    let client = server.client("t1");
    let mut first = client.events().consumer().page_limit(3).into_stream();
    let got = take(&mut first, 5).await;
    drop(first);
    let checkpoint = got[4].0.clone();
    assert!(
        !checkpoint.is_exact(),
        "event 5 is in the middle of page 4-6"
    );
    // Stored and read back as text.
    let checkpoint: Checkpoint = checkpoint.to_string().parse().unwrap();
    let mut second = client
        .events()
        .consumer()
        .page_limit(3)
        .resume_from(checkpoint)
        .into_stream();
    let rest = take(&mut second, 3).await;
    assert_eq!(subjects(&rest), leads(6..=8));
    quiet(&mut second, Duration::from_millis(300)).await;
}

#[tokio::test]
async fn token_expired_asks_the_provider_and_resumes_with_the_fresh_token() {
    let server = Server::start(
        2,
        "old",
        vec![vec![Step::SendMissed, Step::Append(1), Step::TokenExpired]],
    )
    .await;
    let asked = Arc::new(Mutex::new(0));
    let provider = {
        let asked = Arc::clone(&asked);
        let state = Arc::clone(&server.state);
        move || {
            let asked = Arc::clone(&asked);
            let state = Arc::clone(&state);
            async move {
                *asked.lock().unwrap() += 1;
                // The identity provider issues a new token; the old one is refused from now on.
                let mut s = state.lock().unwrap();
                s.valid_tokens = HashSet::from(["new".to_owned()]);
                s.events.push(make_event(4));
                Ok::<_, BoxError>("new".to_owned())
            }
        }
    };
    let client = server.client("old");
    let mut events = client
        .events()
        .consumer()
        .token_provider(provider)
        .into_stream();
    let got = take(&mut events, 4).await;
    assert_eq!(subjects(&got), leads(1..=4));
    assert_eq!(*asked.lock().unwrap(), 1);
    assert_eq!(client.token().as_deref(), Some("new"), "set on the client");
    // (A stream moves only when polled: let it connect again.)
    quiet(&mut events, Duration::from_millis(300)).await;
    let streams = server.stream_requests();
    assert_eq!(streams[0], (Some("old".into()), Some("9-2".into())));
    assert_eq!(streams[1], (Some("new".into()), Some("9-4".into())));
}

#[tokio::test]
async fn a_401_ends_the_stream_unless_a_fresh_token_is_accepted() {
    // No provider: the first 401 is final.
    let server = Server::start(1, "good", Vec::new()).await;
    let mut events = server.client("bad").events().consumer().into_stream();
    let e = events.next().await.unwrap().unwrap_err();
    assert!(e.is_unauthorized(), "{e}");
    assert!(events.next().await.is_none());

    // A provider whose token is refused too: asked once, then the 401 is final.
    let asked = Arc::new(Mutex::new(0));
    let provider = {
        let asked = Arc::clone(&asked);
        move || {
            *asked.lock().unwrap() += 1;
            async { Ok::<_, BoxError>("also-bad".to_owned()) }
        }
    };
    let mut events = server
        .client("bad")
        .events()
        .consumer()
        .token_provider(provider)
        .into_stream();
    let e = events.next().await.unwrap().unwrap_err();
    assert!(e.is_unauthorized(), "{e}");
    assert!(events.next().await.is_none());
    assert_eq!(*asked.lock().unwrap(), 1);

    // A provider whose token works: the consumer goes on.
    let mut events = server
        .client("bad")
        .events()
        .consumer()
        .token_provider(|| async { Ok::<_, BoxError>("good".to_owned()) })
        .into_stream();
    assert_eq!(subjects(&take(&mut events, 1).await), leads(1..=1));

    // A failing provider counts as a failure: with max_failures it ends the stream.
    let mut events = server
        .client("bad")
        .events()
        .consumer()
        .backoff(Duration::from_millis(1), Duration::from_millis(5))
        .max_failures(2)
        .token_provider(|| async {
            Err::<String, BoxError>("the identity provider is down".into())
        })
        .into_stream();
    let e = events.next().await.unwrap().unwrap_err();
    assert!(matches!(e, Error::Token(_)), "{e}");
    assert!(events.next().await.is_none());
}

#[tokio::test]
async fn a_silent_connection_is_replaced_and_unreachable_servers_end_after_max_failures() {
    let server = Server::start(
        1,
        "t1",
        vec![vec![
            Step::SendMissed,
            Step::Pause(Duration::from_secs(3600)),
        ]],
    )
    .await;
    let mut events = server
        .client("t1")
        .events()
        .consumer()
        .idle_timeout(Some(Duration::from_millis(300)))
        .backoff(Duration::from_millis(10), Duration::from_millis(20))
        .into_stream();
    take(&mut events, 1).await;
    // Once the consumer is on the (silent) stream, an event is stored without being sent on
    // it: it arrives once the consumer gave up on the connection.
    let state = Arc::clone(&server.state);
    let stored = tokio::spawn(async move {
        loop {
            {
                let mut s = state.lock().unwrap();
                if s.requests
                    .iter()
                    .any(|(p, _, _)| p.starts_with("/api/events/stream"))
                {
                    s.events.push(make_event(2));
                    return tokio::time::Instant::now();
                }
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });
    assert_eq!(subjects(&take(&mut events, 1).await), leads(2..=2));
    assert!(stored.await.unwrap().elapsed() >= Duration::from_millis(250));
    // (It came with the catch-up after the silent connection was given up.)
    assert_eq!(server.stream_requests().len(), 1);
    quiet(&mut events, Duration::from_millis(200)).await;
    assert_eq!(server.stream_requests().len(), 2, "and then a new stream");

    // Nobody listens: transport errors, retried, then final.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let mut events = Client::new(&base)
        .unwrap()
        .events()
        .consumer()
        .backoff(Duration::from_millis(1), Duration::from_millis(5))
        .max_failures(3)
        .into_stream();
    let e = events.next().await.unwrap().unwrap_err();
    assert!(e.is_transport(), "{e}");
    assert!(events.next().await.is_none());
}
