//! A TCP proxy in front of a test Redis that can lose the answer to one
//! command: the command reaches Redis and takes effect, but its reply, and
//! every later one on that connection, never comes back, as when a network
//! drops it. Or hold one command back: it reaches Redis only when the test
//! says so ([`ReplyLosingProxy::release`]), long after its sender gave up
//! on it, as a command stalled in the network does; nothing else on that
//! connection is answered or passed on meanwhile. For the tests of a node
//! whose Redis answers went missing or whose commands came late.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

/// The proxy; it stops when dropped, and so does every connection through
/// it.
pub struct ReplyLosingProxy {
    port: u16,
    /// The words of the request whose reply is to be lost (lowercase),
    /// and whether the request is to be held back too; taken by the
    /// connection that meets it.
    armed: Arc<Mutex<Option<Armed>>>,
    /// The request held back, until [`ReplyLosingProxy::release`].
    held: Arc<Mutex<Option<Vec<u8>>>>,
    /// Where Redis listens.
    upstream: u16,
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
        let armed: Arc<Mutex<Option<Armed>>> = Arc::default();
        let held: Arc<Mutex<Option<Vec<u8>>>> = Arc::default();
        let lost = Arc::new(AtomicBool::new(false));
        let relays: Arc<Mutex<JoinSet<()>>> = Arc::default();
        let (a, h, l, r) = (armed.clone(), held.clone(), lost.clone(), relays.clone());
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)).await else {
                    continue;
                };
                let mut relays = r.lock().unwrap();
                // Relays that ended are let go of.
                while relays.try_join_next().is_some() {}
                relays.spawn(relay(client, server, a.clone(), h.clone(), l.clone()));
            }
        });
        ReplyLosingProxy {
            port,
            armed,
            held,
            upstream,
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
        self.arm(words, false);
    }

    /// Holds back the request holding every one of `words` (any case) that
    /// a connection next sends (the whole read it came in), and loses
    /// every reply on that connection from then on; the requests it sends
    /// after are dropped, as by a connection that stalled and was given
    /// up.
    pub fn hold(&self, words: &[&str]) {
        self.arm(words, true);
    }

    /// Arms the proxy for the next request holding every one of `words`.
    fn arm(&self, words: &[&str], hold: bool) {
        let words = words.iter().map(|w| w.to_lowercase()).collect();
        *self.armed.lock().unwrap() = Some(Armed { words, hold });
    }

    /// Disarms the proxy, if no request met it yet.
    pub fn disarm(&self) {
        *self.armed.lock().unwrap() = None;
    }

    /// Whether a request is held back now.
    pub fn holding(&self) -> bool {
        self.held.lock().unwrap().is_some()
    }

    /// Sends the request held back to Redis now, on a connection of its
    /// own (its sender's may be closed by now), and returns Redis's reply.
    pub async fn release(&self) -> Vec<u8> {
        let request = self.held.lock().unwrap().take().expect("a request held back");
        let mut redis = TcpStream::connect(("127.0.0.1", self.upstream))
            .await
            .expect("connect to Redis");
        redis.write_all(&request).await.expect("the held request sent");
        let mut reply = vec![0u8; 64 * 1024];
        let n = tokio::time::timeout(std::time::Duration::from_secs(10), redis.read(&mut reply))
            .await
            .expect("Redis answers the held request")
            .expect("read Redis's reply");
        reply.truncate(n);
        reply
    }

    /// Whether `replies` (what [`ReplyLosingProxy::release`] returned)
    /// holds a reply that starts with `head` (`":1"`, `"*2"`): the held
    /// read may carry other requests its connection sent with the one the
    /// proxy was armed for (a client that pipelines, such as a node's
    /// multiplexed connection, writing a heartbeat's command in the same
    /// moment), whose replies come before or after its own.
    pub fn has_reply(replies: &[u8], head: &str) -> bool {
        let text = String::from_utf8_lossy(replies);
        text.starts_with(&format!("{head}\r\n")) || text.contains(&format!("\r\n{head}\r\n"))
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

/// What the proxy is armed for.
struct Armed {
    /// The words a request must hold, lowercase.
    words: Vec<String>,
    /// Whether the request is held back, not only its reply lost.
    hold: bool,
}

/// Copies requests to Redis and replies back, until either side closes;
/// replies stop once a request matched the armed words, and requests too
/// if it was to be held.
async fn relay(
    client: TcpStream,
    server: TcpStream,
    armed: Arc<Mutex<Option<Armed>>>,
    held: Arc<Mutex<Option<Vec<u8>>>>,
    lost: Arc<AtomicBool>,
) {
    let (mut client_rd, mut client_wr) = client.into_split();
    let (mut server_rd, mut server_wr) = server.into_split();
    let deaf = Arc::new(AtomicBool::new(false));
    let d = deaf.clone();
    let requests = async move {
        let mut buf = vec![0u8; 64 * 1024];
        let mut stalled = false;
        loop {
            let n = match client_rd.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            if stalled {
                continue;
            }
            let text = String::from_utf8_lossy(&buf[..n]).to_lowercase();
            {
                let mut armed = armed.lock().unwrap();
                if armed.as_ref().is_some_and(|a| a.words.iter().all(|w| text.contains(w))) {
                    stalled = armed.take().is_some_and(|a| a.hold);
                    // Before the request goes: its reply is lost too.
                    d.store(true, Ordering::SeqCst);
                    lost.store(true, Ordering::SeqCst);
                }
            }
            if stalled {
                *held.lock().unwrap() = Some(buf[..n].to_vec());
                continue;
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
