//! `FRESHPLAN_AUTH_JWKS` as an http URL: fetched at start (a failure stops the start), fetched
//! again when a token names an unknown key id — at most once per `JWKS_REFRESH_INTERVAL` — so a
//! key rotation at the identity provider needs no restart.
//!
//! The identity provider is a tiny HTTP server on a std thread: `Authenticator::new` fetches at
//! start on a thread of its own and blocks its caller meanwhile, so a server on the test's own
//! (single-threaded) runtime could not answer.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::helpers::*;
use crate::keys::*;

/// Serves one configurable response to every request and counts the requests.
struct JwksServer {
    url: String,
    response: Arc<Mutex<(u16, String)>>,
    hits: Arc<AtomicUsize>,
}

impl JwksServer {
    fn start(status: u16, body: &str) -> JwksServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!(
            "http://{}/realms/freshplan/protocol/openid-connect/certs",
            listener.local_addr().unwrap()
        );
        let response = Arc::new(Mutex::new((status, body.to_owned())));
        let hits = Arc::new(AtomicUsize::new(0));
        let (r, h) = (response.clone(), hits.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                stream
                    .set_read_timeout(Some(Duration::from_secs(5)))
                    .unwrap();
                let mut request = Vec::new();
                let mut buf = [0u8; 1024];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                assert!(
                    request.starts_with(b"GET /realms/freshplan/protocol/openid-connect/certs "),
                    "{}",
                    String::from_utf8_lossy(&request)
                );
                h.fetch_add(1, Ordering::SeqCst);
                let (status, body) = r.lock().unwrap().clone();
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        JwksServer {
            url,
            response,
            hits,
        }
    }

    fn serve(&self, status: u16, body: &str) {
        *self.response.lock().unwrap() = (status, body.to_owned());
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

async fn status_of(app: &TestApp, token: &str) -> u16 {
    app.get(token, "/api/leads").await.status().as_u16()
}

#[actix_web::test]
async fn a_jwks_url_is_fetched_at_start_and_again_when_the_key_rotates() {
    let idp = JwksServer::start(200, &fixture("jwks.json"));
    let app = spawn_app_with(|c| {
        c.hs256_secret = None;
        c.jwks = Some(idp.url.clone());
    })
    .await
    .expect("start");
    assert_eq!(idp.hits(), 1, "the key set is fetched once at start");

    // Known keys are verified from the cache: no fetch per request.
    assert_eq!(
        status_of(&app, &signed_by("rsa-1", Some("rsa-1"))).await,
        200
    );
    assert_eq!(status_of(&app, &signed_by("ec-1", Some("ec-1"))).await, 200);
    assert_eq!(idp.hits(), 1);

    // The identity provider rotates: rsa-1 is withdrawn, rsa-2 signs from now on. The first
    // token naming rsa-2 makes the service fetch the set again, and it is accepted.
    idp.serve(200, &fixture("jwks-rotated.json"));
    let rotated = signed_by("rsa-2", Some("rsa-2"));
    assert_eq!(status_of(&app, &rotated).await, 200);
    assert_eq!(idp.hits(), 2, "an unknown kid refetches the key set");
    assert_eq!(status_of(&app, &rotated).await, 200);
    assert_eq!(idp.hits(), 2);
    // The refetched set replaced the old one: the withdrawn key and the EC key no longer verify.
    unauthorized(
        app.get(&signed_by("rsa-1", Some("rsa-1")), "/api/leads")
            .await,
    )
    .await;
    unauthorized(
        app.get(&signed_by("ec-1", Some("ec-1")), "/api/leads")
            .await,
    )
    .await;

    // More unknown kids within the refresh interval do not reach the identity provider, even
    // when it would by now know the key: at most one refetch per interval.
    idp.serve(200, &fixture("jwks.json"));
    for kid in ["rsa-1", "made-up-1", "made-up-2"] {
        unauthorized(app.get(&signed_by("rsa-1", Some(kid)), "/api/leads").await).await;
    }
    assert_eq!(idp.hits(), 2, "refetches are rate-limited");
    assert!(freshplan_app::auth::JWKS_REFRESH_INTERVAL >= Duration::from_secs(30));
    assert_eq!(status_of(&app, &rotated).await, 200);
}

#[actix_web::test]
async fn a_jwks_url_that_does_not_deliver_keys_stops_the_start() {
    // Nobody listens.
    let closed = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}/certs", l.local_addr().unwrap())
    };
    let idp = JwksServer::start(404, r#"{"error":"not found"}"#);
    // (the URL, what the identity provider serves meanwhile, what the error must say)
    type Case<'a> = (String, Box<dyn Fn() + 'a>, &'static str);
    let cases: Vec<Case<'_>> = vec![
        (
            closed.clone(),
            Box::new(|| {}),
            "fetching the JWKS from http://127.0.0.1:",
        ),
        (idp.url.clone(), Box::new(|| {}), "HTTP 404"),
        (
            idp.url.clone(),
            Box::new(|| idp.serve(200, "<html>login</html>")),
            "not a JWKS document",
        ),
        (
            idp.url.clone(),
            // Only a symmetric key: nothing that can verify RS256/ES256.
            Box::new(|| idp.serve(200, r#"{"keys":[{"kty":"oct","kid":"k","k":"c2VjcmV0"}]}"#)),
            "no RS256 or ES256",
        ),
    ];
    for (url, prepare, expected) in cases {
        prepare();
        let err = spawn_app_with(|c| {
            // Even with an HS256 secret to fall back on: a configured key source that fails is
            // a configuration error, not something to run without.
            c.jwks = Some(url.clone());
        })
        .await
        .err()
        .unwrap_or_else(|| panic!("started with a JWKS URL that fails ({expected})"));
        let message = format!("{err:#}");
        assert!(
            message.starts_with("FRESHPLAN_AUTH_JWKS: ") && message.contains(expected),
            "{message}"
        );
    }
}
