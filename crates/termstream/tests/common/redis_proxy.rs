//! A TCP proxy in front of a test Redis that can lose the answer to one
//! command: the command reaches Redis and takes effect, but its reply, and
//! every later one on that connection, never comes back, as when a network
//! drops it. For the tests of a node whose Redis answers went missing.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

/// The proxy; it stops when dropped, and so does every connection through
/// it.
pub struct ReplyLosingProxy {
    port: u16,
    /// The words of the request whose reply is to be lost (lowercase);
    /// taken by the connection that meets it.
    armed: Arc<Mutex<Option<Vec<String>>>>,
    /// Set once a reply was lost.
    lost: Arc<AtomicBool>,
    /// The accept loop; aborted on drop.
    accept: JoinHandle<()>,
    /// One relay task per connection, spawned by the accept loop; aborted
    /// on drop, so no connection outlives the proxy.
    relays: Arc<Mutex<JoinSet<()>>>,
}

impl ReplyLosingProxy {
    /// Listens on a free loopback port and forwards to Redis on `upstream`.
    pub async fn start(upstream: u16) -> ReplyLosingProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the proxy");
        let port = listener.local_addr().expect("the proxy's address").port();
        let armed: Arc<Mutex<Option<Vec<String>>>> = Arc::default();
        let lost = Arc::new(AtomicBool::new(false));
        let relays: Arc<Mutex<JoinSet<()>>> = Arc::default();
        let (a, l, r) = (armed.clone(), lost.clone(), relays.clone());
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)).await else {
                    continue;
                };
                let mut relays = r.lock().unwrap();
                // Relays that ended are let go of.
                while relays.try_join_next().is_some() {}
                relays.spawn(relay(client, server, a.clone(), l.clone()));
            }
        });
        ReplyLosingProxy {
            port,
            armed,
            lost,
            accept,
            relays,
        }
    }

    /// The URL a node joins the cluster with through this proxy.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Loses the replies of the connection that next sends a request
    /// holding every one of `words` (any case), from that request's on.
    pub fn lose_reply_to(&self, words: &[&str]) {
        *self.armed.lock().unwrap() = Some(words.iter().map(|w| w.to_lowercase()).collect());
    }

    /// Whether a reply was lost.
    pub fn lost(&self) -> bool {
        self.lost.load(Ordering::SeqCst)
    }
}

impl Drop for ReplyLosingProxy {
    /// Stops accepting and ends every connection through the proxy.
    fn drop(&mut self) {
        self.accept.abort();
        self.relays.lock().unwrap_or_else(|p| p.into_inner()).abort_all();
    }
}

/// Copies requests to Redis and replies back, until either side closes;
/// replies stop once a request matched the armed words.
async fn relay(client: TcpStream, server: TcpStream, armed: Arc<Mutex<Option<Vec<String>>>>, lost: Arc<AtomicBool>) {
    let (mut client_rd, mut client_wr) = client.into_split();
    let (mut server_rd, mut server_wr) = server.into_split();
    let deaf = Arc::new(AtomicBool::new(false));
    let d = deaf.clone();
    let requests = async move {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match client_rd.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            let text = String::from_utf8_lossy(&buf[..n]).to_lowercase();
            {
                let mut armed = armed.lock().unwrap();
                if armed
                    .as_ref()
                    .is_some_and(|words| words.iter().all(|w| text.contains(w)))
                {
                    *armed = None;
                    // Before the request goes: its reply is lost too.
                    d.store(true, Ordering::SeqCst);
                    lost.store(true, Ordering::SeqCst);
                }
            }
            if server_wr.write_all(&buf[..n]).await.is_err() {
                return;
            }
        }
    };
    let replies = async move {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match server_rd.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            if !deaf.load(Ordering::SeqCst) && client_wr.write_all(&buf[..n]).await.is_err() {
                return;
            }
        }
    };
    tokio::select! {
        _ = requests => {}
        _ = replies => {}
    }
}
