//! A TCP proxy in front of the HTTP service that can cut every open connection (a network
//! drop, as the client sees it) and be re-pointed at another replica (a load balancer).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

pub(crate) struct HttpProxy {
    addr: SocketAddr,
    upstream: Arc<Mutex<SocketAddr>>,
    /// Bumped to cut every connection open at that moment.
    generation: Arc<watch::Sender<u64>>,
    accepted: Arc<AtomicUsize>,
    accept: tokio::task::JoinHandle<()>,
}

impl Drop for HttpProxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.generation.send_modify(|g| *g += 1);
    }
}

/// `host:port` of an `http://host:port` base URL.
fn socket_of(base: &str) -> SocketAddr {
    base.trim_start_matches("http://").parse().unwrap()
}

impl HttpProxy {
    /// A proxy to the service at `base` (`http://127.0.0.1:port`) on a free local port.
    pub(crate) async fn start(base: &str) -> HttpProxy {
        let upstream = Arc::new(Mutex::new(socket_of(base)));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (generation, _) = watch::channel(0u64);
        let generation = Arc::new(generation);
        let accepted = Arc::new(AtomicUsize::new(0));
        let accept = {
            let upstream = Arc::clone(&upstream);
            let generation = Arc::clone(&generation);
            let accepted = Arc::clone(&accepted);
            tokio::spawn(async move {
                while let Ok((client, _)) = listener.accept().await {
                    accepted.fetch_add(1, Ordering::SeqCst);
                    let to = *upstream.lock().unwrap();
                    tokio::spawn(relay(client, to, generation.subscribe()));
                }
            })
        };
        HttpProxy {
            addr,
            upstream,
            generation,
            accepted,
            accept,
        }
    }

    /// The base URL through the proxy.
    pub(crate) fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Drops every connection open now (new ones go through).
    pub(crate) fn cut(&self) {
        self.generation.send_modify(|g| *g += 1);
    }

    /// New connections go to the service at `base`.
    pub(crate) fn point_to(&self, base: &str) {
        *self.upstream.lock().unwrap() = socket_of(base);
    }

    /// Connections accepted so far.
    pub(crate) fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

async fn relay(mut client: TcpStream, upstream: SocketAddr, mut generation: watch::Receiver<u64>) {
    let Ok(mut server) = TcpStream::connect(upstream).await else {
        return;
    };
    generation.borrow_and_update();
    tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
        _ = generation.changed() => {}
    }
    // Dropping both sockets closes them: the client sees its connection end.
}
