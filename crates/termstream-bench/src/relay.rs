//! The bare relay: the least a WebSocket terminal server can do, as a
//! baseline for the echo scenarios.
//!
//! `termstream-bench --relay` runs it as its own process (so it has its own
//! runtime and threads, like the server under test): it accepts WebSocket
//! connections on loopback; the first text message of each is a shell
//! script, which it starts on a PTY of its own; from then on every message
//! is written to the PTY and every read of the PTY is sent back as one
//! binary message. No log, no ring, no screen, no protocol: what ttyd's or
//! gotty's core does. The gap between its figures and termstream's is what
//! termstream's own work costs.

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::baseline::drain_binary;

/// The relay's largest read of a PTY.
const READ_BUF: usize = 64 << 10;

/// The relay process's body: serves until its standard input closes (the
/// bench ended or dropped it), then kills the programs it started, with
/// their process groups, and exits.
pub async fn serve() -> anyhow::Result<()> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    println!("relay listening on {}", listener.local_addr()?);
    let groups = Groups::default();
    let serving = {
        let groups = groups.clone();
        async move {
            loop {
                let (tcp, _) = listener.accept().await?;
                let groups = groups.clone();
                tokio::spawn(async move {
                    if let Err(e) = relay_one(tcp, groups).await {
                        eprintln!("relay: {e:#}");
                    }
                });
            }
        }
    };
    let mut stdin = tokio::io::stdin();
    let mut sink = [0u8; 64];
    let stdin_closed = async { while stdin.read(&mut sink).await.is_ok_and(|n| n > 0) {} };
    let r: anyhow::Result<()> = tokio::select! {
        r = serving => r,
        () = stdin_closed => Ok(()),
    };
    groups.kill_all();
    r
}

/// Process groups (= leader pids) of the programs the relay runs now.
#[derive(Debug, Clone, Default)]
struct Groups(Arc<Mutex<Vec<u32>>>);

/// A held process group: killed and forgotten when dropped (its connection
/// ended), so that the list never names a pid that may be reused.
struct Held {
    groups: Groups,
    pgid: u32,
}

impl Groups {
    fn list(&self) -> std::sync::MutexGuard<'_, Vec<u32>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn hold(&self, pgid: u32) -> Held {
        self.list().push(pgid);
        Held {
            groups: self.clone(),
            pgid,
        }
    }

    fn kill_all(&self) {
        for &pgid in self.list().iter() {
            crate::baseline::kill_group(pgid);
        }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.groups.list().retain(|&p| p != self.pgid);
        crate::baseline::kill_group(self.pgid);
    }
}

async fn relay_one(tcp: TcpStream, groups: Groups) -> anyhow::Result<()> {
    tcp.set_nodelay(true)?;
    let ws = tokio_tungstenite::accept_async(tcp).await?;
    let (mut sink, mut stream) = ws.split();
    let script = match stream.next().await {
        Some(Ok(Message::Text(t))) => t.to_string(),
        _ => bail!("the first message must be the script"),
    };
    let (pty, child) = crate::baseline::spawn_on_pty(&script)?;
    // Killed when this connection ends, or by `serve` when the bench goes.
    let _group = groups.hold(child.id().unwrap_or(0));
    let (mut reader, mut writer) = pty.into_split();
    let mut buf = vec![0u8; READ_BUF];
    // Any end or failure on either side ends the connection: at the end of
    // a scenario the bench simply drops its sockets.
    loop {
        let ok = tokio::select! {
            msg = stream.next() => match msg {
                Some(Ok(Message::Text(t))) => writer.write_all(t.as_bytes()).await.is_ok(),
                Some(Ok(Message::Binary(b))) => writer.write_all(&b).await.is_ok(),
                Some(Ok(_)) => true,
                _ => false,
            },
            n = reader.read(&mut buf) => match n {
                Ok(n) if n > 0 => sink.send(Message::Binary(buf[..n].to_vec().into())).await.is_ok(),
                _ => false,
            },
        };
        if !ok {
            return Ok(());
        }
    }
}

/// A relay process. Dropping it closes its standard input, on which it
/// kills its programs and exits; [`Relay::stop`] also waits for that.
pub struct Relay {
    child: tokio::process::Child,
    url: String,
    /// What it did from its start until it went quiet (`crate::settle`).
    pub started: Option<crate::settle::Settled>,
}

impl Relay {
    /// Starts `termstream-bench --relay` and waits for its address.
    pub async fn start() -> anyhow::Result<Relay> {
        let exe = std::env::current_exe()?;
        let mut child = tokio::process::Command::new(exe)
            .arg("--relay")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .context("cannot start the relay")?;
        let stdout = child.stdout.take().context("no stdout")?;
        let mut line = String::new();
        tokio::time::timeout(Duration::from_secs(10), BufReader::new(stdout).read_line(&mut line))
            .await
            .context("the relay did not start")??;
        let addr = line
            .trim()
            .strip_prefix("relay listening on ")
            .context("the relay printed no address")?;
        let url = format!("ws://{addr}/");
        let started = crate::settle::settle(child.id()).await;
        Ok(Relay { child, url, started })
    }

    /// Closes the relay's input and waits (2 s at most, then kills it).
    pub async fn stop(mut self) {
        drop(self.child.stdin.take());
        if tokio::time::timeout(Duration::from_secs(2), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
    }

    /// The relay process's CPU use so far.
    pub fn cpu(&self) -> Option<crate::server::CpuUse> {
        crate::server::cpu_of(self.child.id()?)
    }

    /// The relay process's id.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// A connection running `script` on its own PTY.
    pub async fn open(&self, script: &str) -> anyhow::Result<RelayConn> {
        RelayConn::connect(&self.url, script).await
    }

    /// Where the relay listens, for [`RelayConn::connect`].
    pub fn url(&self) -> &str {
        &self.url
    }

    /// [`Relay::open`] with small client buffers, for thousands of them.
    pub async fn open_small(&self, script: &str) -> anyhow::Result<RelayConn> {
        let config = WebSocketConfig::default().read_buffer_size(4096).write_buffer_size(0);
        let (mut ws, _) = tokio_tungstenite::connect_async_with_config(&self.url, Some(config), true).await?;
        ws.send(Message::Text(script.into())).await?;
        Ok(RelayConn { ws })
    }
}

/// One connection to the relay.
pub struct RelayConn {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

impl RelayConn {
    /// A connection to the relay at `url` running `script` on its own PTY.
    pub async fn connect(url: &str, script: &str) -> anyhow::Result<RelayConn> {
        let (mut ws, _) = tokio_tungstenite::connect_async(url).await?;
        ws.send(Message::Text(script.into())).await?;
        Ok(RelayConn { ws })
    }

    /// Waits for output that ends like a shell prompt.
    pub async fn wait_prompt(&mut self, deadline: Instant) -> anyhow::Result<()> {
        loop {
            let msg = tokio::time::timeout_at(deadline.into(), self.ws.next())
                .await
                .context("no prompt from the relay")?
                .context("the relay closed")??;
            if matches!(&msg, Message::Binary(b) if crate::open::is_prompt(b)) {
                return Ok(());
            }
        }
    }

    /// Reads output until the relay closes (its program ended) or
    /// `deadline`; the bytes read.
    pub async fn read_to_close(&mut self, deadline: Instant) -> u64 {
        let mut bytes = 0;
        while let Ok(Some(Ok(msg))) = tokio::time::timeout_at(deadline.into(), self.ws.next()).await {
            if let Message::Binary(b) = msg {
                bytes += b.len() as u64;
            }
        }
        bytes
    }

    /// Reads and counts bytes until `stop` turns true.
    pub async fn drain(mut self, stop: watch::Receiver<bool>) -> u64 {
        drain_binary(&mut self.ws, stop, |b| b.len() as u64).await
    }
}

impl crate::paced::Echo for RelayConn {
    async fn key(&mut self, key: u8) -> anyhow::Result<()> {
        Ok(self.ws.send(Message::Text((key as char).to_string().into())).await?)
    }
    async fn output(&mut self) -> anyhow::Result<Option<Vec<u8>>> {
        loop {
            match self.ws.next().await {
                Some(Ok(Message::Binary(b))) => return Ok(Some(b.to_vec())),
                Some(Ok(Message::Close(_))) | None => return Ok(None),
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e.into()),
            }
        }
    }
}
