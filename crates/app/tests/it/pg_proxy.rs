//! A TCP proxy in front of PostgreSQL that can cut the event listener's connection (and refuse
//! new ones) while every other connection keeps working: a real listener outage with the
//! database up. The listener is recognised by its `application_name` in the startup message
//! (the proxied URL disables TLS so the message is readable). It can also cut every connection
//! and refuse new ones: a database outage as the service sees it. And it can be re-pointed to
//! another server, as a Kubernetes Service or HAProxy in front of a promoted standby is: new
//! connections go there.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use freshplan_events_pg::LISTENER_APPLICATION_NAME;

pub(crate) struct PgProxy {
    addr: SocketAddr,
    blocked: Arc<watch::Sender<bool>>,
    outage: Arc<watch::Sender<bool>>,
    upstream: Arc<watch::Sender<SocketAddr>>,
    accept: tokio::task::JoinHandle<()>,
}

impl Drop for PgProxy {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// `host:port` of a `postgres://` URL (default port 5432), and the URL split around it.
fn split_url(url: &str) -> (&str, &str, &str) {
    let scheme_end = url.find("://").expect("a postgres:// URL") + 3;
    let rest = &url[scheme_end..];
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    let host_start = authority.rfind('@').map_or(0, |i| i + 1);
    let prefix = &url[..scheme_end + host_start];
    let host = &authority[host_start..];
    let suffix = &rest[authority_end..];
    (prefix, host, suffix)
}

/// The application on a fresh database of the tests' server, with every database connection
/// (pool and event listener) through a new proxy.
pub(crate) async fn app_behind_proxy() -> (PgProxy, crate::helpers::TestApp) {
    #[allow(clippy::disallowed_methods)] // tests read where their database is
    let server = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let proxy = PgProxy::start(&server).await;
    let app = crate::helpers::spawn_app_with(|c| c.database_url = proxy.url(&c.database_url))
        .await
        .unwrap();
    (proxy, app)
}

impl PgProxy {
    /// A proxy to the server `database_url` points at, on a free local port.
    pub(crate) async fn start(database_url: &str) -> PgProxy {
        let (_, host, _) = split_url(database_url);
        let host = if host.contains(':') {
            host.to_owned()
        } else {
            format!("{host}:5432")
        };
        let upstream = tokio::net::lookup_host(host).await.unwrap().next().unwrap();
        PgProxy::start_to(upstream).await
    }

    /// A proxy to the server at `upstream`, on a free local port.
    pub(crate) async fn start_to(upstream: SocketAddr) -> PgProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (blocked, _) = watch::channel(false);
        let blocked = Arc::new(blocked);
        let (outage, _) = watch::channel(false);
        let outage = Arc::new(outage);
        let (upstream, _) = watch::channel(upstream);
        let upstream = Arc::new(upstream);
        let accept = {
            let blocked = Arc::clone(&blocked);
            let outage = Arc::clone(&outage);
            let upstream = Arc::clone(&upstream);
            tokio::spawn(async move {
                while let Ok((client, _)) = listener.accept().await {
                    if *outage.borrow() {
                        drop(client);
                        continue;
                    }
                    let to = *upstream.borrow();
                    tokio::spawn(relay(client, to, blocked.subscribe(), outage.subscribe()));
                }
            })
        };
        PgProxy {
            addr,
            blocked,
            outage,
            upstream,
            accept,
        }
    }

    /// New connections go to `upstream` from now on (the existing ones stay where they are).
    pub(crate) fn repoint(&self, upstream: SocketAddr) {
        self.upstream.send_replace(upstream);
    }

    /// `database_url` through this proxy, without TLS.
    pub(crate) fn url(&self, database_url: &str) -> String {
        let (prefix, _, suffix) = split_url(database_url);
        let sep = if suffix.contains('?') { '&' } else { '?' };
        format!("{prefix}{}{suffix}{sep}sslmode=disable", self.addr)
    }

    /// `true`: drops the listener's connection and refuses new ones; `false`: lets them through.
    pub(crate) fn block_listener(&self, blocked: bool) {
        self.blocked.send_replace(blocked);
    }

    /// `true`: cuts every connection and refuses new ones (the database is gone); `false`: the
    /// database is back.
    pub(crate) fn outage(&self, down: bool) {
        self.outage.send_replace(down);
    }
}

fn mentions_listener(bytes: &[u8]) -> bool {
    let needle = LISTENER_APPLICATION_NAME.as_bytes();
    bytes.windows(needle.len()).any(|w| w == needle)
}

async fn relay(
    client: TcpStream,
    upstream: SocketAddr,
    mut blocked: watch::Receiver<bool>,
    mut outage: watch::Receiver<bool>,
) {
    let Ok(server) = TcpStream::connect(upstream).await else {
        return;
    };
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let (is_listener_tx, mut is_listener) = watch::channel(false);
    let up = async move {
        let mut head = Vec::new();
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = client_read.read(&mut buf).await?;
            if n == 0 {
                return Ok::<(), std::io::Error>(());
            }
            if head.len() < 4096 {
                head.extend_from_slice(&buf[..n]);
                if mentions_listener(&head) {
                    is_listener_tx.send_replace(true);
                }
            }
            server_write.write_all(&buf[..n]).await?;
        }
    };
    let down = tokio::io::copy(&mut server_read, &mut client_write);
    // A listener connection is cut as soon as (or whenever) the proxy is blocked.
    let cut = async {
        let _ = is_listener.wait_for(|l| *l).await;
        let _ = blocked.wait_for(|b| *b).await;
    };
    tokio::select! {
        _ = up => {}
        _ = down => {}
        () = cut => {}
        _ = outage.wait_for(|o| *o) => {}
    }
}
