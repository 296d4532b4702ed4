//! A TCP proxy in front of the nodes of a test cluster, for the CLI's
//! tests: each connection goes where its first line says (a WebSocket,
//! `GET /ws`, to one node, any other request to another, as a load
//! balancer may spread them), and the server's side of the WebSockets
//! can be held back ([`RouteProxy::hold`]) while the client's side flows
//! on, as on a network that delays one direction; [`RouteProxy::flow`]
//! lets what was held through, in order.
//!
//! The nodes must take the proxy's address as `Host`: start them with
//! [`ALLOWED_HOST`].

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

/// The environment entry that has a node take the proxy as `Host` (any
/// port of 127.0.0.1).
pub const ALLOWED_HOST: (&str, &str) = ("TERMSTREAM_ALLOWED_HOSTS", "127.0.0.1");

/// The proxy; it stops when dropped, and so does every connection through
/// it.
pub struct RouteProxy {
    /// Where the proxy listens, `127.0.0.1:PORT`.
    pub addr: String,
    /// Whether the server's side of the WebSockets is held back; read by
    /// every relay of a WebSocket before it passes on what it read.
    held: watch::Sender<bool>,
    /// The accept loop, which owns one relay task per connection; aborted
    /// on drop, which drops (and aborts) the relays too.
    accept: JoinHandle<()>,
}

impl RouteProxy {
    /// Listens on a free loopback port; WebSockets go to `socket`, other
    /// requests to `rest` (addresses, `127.0.0.1:PORT`).
    pub async fn start(rest: &str, socket: &str) -> RouteProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the proxy");
        let addr = listener.local_addr().expect("the proxy's address").to_string();
        let held = watch::channel(false).0;
        let (rest, socket, gate) = (rest.to_owned(), socket.to_owned(), held.clone());
        let accept = tokio::spawn(async move {
            let mut relays = JoinSet::new();
            while let Ok((client, _)) = listener.accept().await {
                // Relays that ended are let go of.
                while relays.try_join_next().is_some() {}
                relays.spawn(relay(client, rest.clone(), socket.clone(), gate.subscribe()));
            }
        });
        RouteProxy { addr, held, accept }
    }

    /// The URL a CLI is pointed at.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Holds back what the servers send on WebSockets from now on (what
    /// a relay read before is passed on).
    pub fn hold(&self) {
        self.held.send_replace(true);
    }

    /// Lets what was held back through, and what follows.
    pub fn flow(&self) {
        self.held.send_replace(false);
    }
}

impl Drop for RouteProxy {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// Sends the connection where its first line says, and relays both ways
/// until either side closes; a WebSocket's server side waits while `held`.
async fn relay(mut client: TcpStream, rest: String, socket: String, mut held: watch::Receiver<bool>) {
    let mut first = Vec::new();
    let mut buf = vec![0u8; 16 * 1024];
    while !first.windows(2).any(|w| w == b"\r\n") {
        match client.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => first.extend_from_slice(&buf[..n]),
        }
    }
    let ws = first.starts_with(b"GET /ws");
    let Ok(mut server) = TcpStream::connect(if ws { &socket } else { &rest }).await else {
        return;
    };
    if server.write_all(&first).await.is_err() {
        return;
    }
    let (mut cr, mut cw) = client.into_split();
    let (mut sr, mut sw) = server.into_split();
    let up = async move {
        let _ = tokio::io::copy(&mut cr, &mut sw).await;
        let _ = sw.shutdown().await;
    };
    let down = async move {
        loop {
            let n = match sr.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            if ws && held.wait_for(|h| !*h).await.is_err() {
                break;
            }
            if cw.write_all(&buf[..n]).await.is_err() {
                break;
            }
        }
        let _ = cw.shutdown().await;
    };
    tokio::join!(up, down);
}
