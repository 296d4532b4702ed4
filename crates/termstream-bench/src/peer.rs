//! A peer server measured beside termstream in the same run: ttyd, given
//! with `--peer ttyd=PATH` (built by hand from its public source; never part
//! of this repository).
//!
//! ttyd runs one command for every WebSocket connection to `/ws`
//! (subprotocol `tty`): the client's first message is JSON with the window
//! size, on which ttyd spawns the command on a PTY of its own; after it,
//! a client message `0…` is input, and a server message `0…` is output.
//! ttyd is started with `-a` (the URL's `arg=` is appended to the command),
//! so one ttyd can run different programs: `sh -c 'eval "$1"' sh SCRIPT`.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::Child;
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::baseline::drain_binary;
use crate::server::{ms_per_mb, stat_cpu_ms};

/// How long ttyd may take to print its port.
const START_WAIT: Duration = Duration::from_secs(10);
/// The longest a single message may take during a handshake.
const STEP_WAIT: Duration = Duration::from_secs(10);

/// A peer binary given on the command line.
#[derive(Debug, Clone)]
pub struct Peer {
    /// The peer's name (`ttyd`).
    pub name: String,
    pub path: PathBuf,
}

impl Peer {
    /// Parses `ttyd=PATH`; only ttyd's protocol is spoken.
    pub fn parse(s: &str) -> anyhow::Result<Peer> {
        let (name, path) = s
            .split_once('=')
            .context("--peer takes NAME=PATH, e.g. ttyd=/work/ttyd/build/ttyd")?;
        anyhow::ensure!(name == "ttyd", "only the peer `ttyd` is known, not {name:?}");
        let path = std::fs::canonicalize(path).with_context(|| format!("no peer binary at {path}"))?;
        Ok(Peer {
            name: name.into(),
            path,
        })
    }
}

/// A running ttyd. Dropping it kills it; [`Ttyd::stop`] ends it politely.
pub struct Ttyd {
    child: Child,
    /// What it did from its start until it went quiet (`crate::settle`).
    pub started: Option<crate::settle::Settled>,
    port: u16,
    /// Whether connections choose their program with `arg=`.
    scripted: bool,
}

impl Ttyd {
    /// Starts ttyd on loopback running `/bin/sh` for every connection.
    pub async fn shell(bin: &Path) -> anyhow::Result<Ttyd> {
        Self::launch(bin, &["/bin/sh"], false).await
    }

    /// Starts ttyd on loopback running each connection's script.
    pub async fn scripted(bin: &Path) -> anyhow::Result<Ttyd> {
        Self::launch(bin, &["-a", "sh", "-c", "eval \"$1\"", "sh"], true).await
    }

    async fn launch(bin: &Path, args: &[&str], scripted: bool) -> anyhow::Result<Ttyd> {
        let mut child = tokio::process::Command::new(bin)
            .args(["-p", "0", "-i", "127.0.0.1", "-W", "-P", "3600"])
            .args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_else(|_| "/usr/bin:/bin".into()))
            .env("HOME", std::env::var("HOME").unwrap_or_else(|_| "/".into()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start {}", bin.display()))?;
        let stderr = child.stderr.take().context("no stderr")?;
        let mut lines = BufReader::new(stderr).lines();
        let port = tokio::time::timeout(START_WAIT, async {
            while let Some(line) = lines.next_line().await? {
                if let Some(p) = line.split("Listening on port: ").nth(1) {
                    return anyhow::Ok(p.trim().parse::<u16>()?);
                }
            }
            bail!("ttyd exited before printing its port")
        })
        .await
        .context("ttyd did not print its port in time")??;
        // Keep draining its log (a line per connection) so it never blocks.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let started = crate::settle::settle(child.id()).await;
        Ok(Ttyd {
            child,
            started,
            port,
            scripted,
        })
    }

    /// ttyd's process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// A connection whose program has been started (`script` only with a
    /// scripted ttyd).
    pub async fn open(&self, script: Option<&str>, small: bool) -> anyhow::Result<TtydConn> {
        TtydConn::connect(self.url(script)?, small).await
    }

    /// The URL of a connection running `script` (only with a scripted ttyd).
    pub fn url(&self, script: Option<&str>) -> anyhow::Result<String> {
        let mut url = format!("ws://127.0.0.1:{}/ws", self.port);
        if let Some(s) = script {
            anyhow::ensure!(self.scripted, "this ttyd runs one program");
            url.push_str("?arg=");
            url.push_str(&percent_encode(s));
        }
        Ok(url)
    }

    /// SIGTERM (ttyd hangs up its programs), then SIGKILL after 5 s.
    pub async fn stop(mut self) {
        if let Some(pid) = self.child.id().and_then(|p| rustix::process::Pid::from_raw(p as i32)) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        }
        if tokio::time::timeout(Duration::from_secs(5), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
    }
}

/// Percent-encodes everything but unreserved characters.
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// One connection to ttyd.
pub struct TtydConn {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

impl TtydConn {
    /// Connects to `url` (see [`Ttyd::url`]), which starts its program.
    pub async fn connect(url: String, small: bool) -> anyhow::Result<TtydConn> {
        let mut req = url.into_client_request()?;
        req.headers_mut().insert("Sec-WebSocket-Protocol", "tty".parse()?);
        let config = small.then(|| WebSocketConfig::default().read_buffer_size(4096).write_buffer_size(0));
        let (mut ws, _) = tokio::time::timeout(
            STEP_WAIT,
            tokio_tungstenite::connect_async_with_config(req, config, true),
        )
        .await
        .context("ttyd did not accept in time")??;
        ws.send(Message::Text(r#"{"AuthToken":"","columns":80,"rows":24}"#.into()))
            .await?;
        Ok(TtydConn { ws })
    }

    /// The next output bytes; `None` when ttyd closed the connection.
    async fn next_output(&mut self, deadline: Instant) -> anyhow::Result<Option<Vec<u8>>> {
        loop {
            let msg = match tokio::time::timeout_at(deadline.into(), self.ws.next()).await {
                Err(_) => bail!("timed out waiting for ttyd"),
                Ok(None) | Ok(Some(Err(_))) => return Ok(None),
                Ok(Some(Ok(m))) => m,
            };
            match msg {
                Message::Binary(b) if b.first() == Some(&b'0') => return Ok(Some(b[1..].to_vec())),
                Message::Close(_) => return Ok(None),
                _ => {}
            }
        }
    }

    /// Waits for the first output that ends like a shell prompt.
    pub async fn wait_prompt(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + STEP_WAIT;
        loop {
            match self.next_output(deadline).await? {
                Some(out) if crate::open::is_prompt(&out) => return Ok(()),
                Some(_) => {}
                None => bail!("ttyd closed before the prompt"),
            }
        }
    }

    /// Sends input.
    pub async fn input(&mut self, data: &[u8]) -> anyhow::Result<()> {
        let mut msg = Vec::with_capacity(data.len() + 1);
        msg.push(b'0');
        msg.extend_from_slice(data);
        self.ws.send(Message::Binary(msg.into())).await?;
        Ok(())
    }

    /// Reads output until ttyd closes (the program ended) or `deadline`;
    /// the bytes read.
    pub async fn read_to_close(&mut self, deadline: Instant) -> anyhow::Result<u64> {
        let mut bytes = 0;
        while let Some(out) = self.next_output(deadline).await? {
            bytes += out.len() as u64;
        }
        Ok(bytes)
    }

    /// Reads and counts output until `stop` turns true or ttyd closes.
    pub async fn drain(mut self, stop: watch::Receiver<bool>) -> u64 {
        drain_binary(&mut self.ws, stop, |b| match b.first() {
            Some(b'0') => b.len() as u64 - 1,
            _ => 0,
        })
        .await
    }
}

impl crate::paced::Echo for TtydConn {
    async fn key(&mut self, key: u8) -> anyhow::Result<()> {
        self.input(&[key]).await
    }
    async fn output(&mut self) -> anyhow::Result<Option<Vec<u8>>> {
        self.next_output(Instant::now() + crate::paced::NO_DEADLINE).await
    }
}

/// `sh -c SCRIPT` through a fresh scripted ttyd, from connecting until ttyd
/// closes the connection (the program ended).
pub async fn stream(bin: &Path, script: &str, limit: Duration) -> anyhow::Result<crate::throughput::Streamed> {
    let ttyd = Ttyd::scripted(bin).await?;
    let pid = ttyd.pid();
    let before = pid.and_then(stat_cpu_ms);
    let t0 = Instant::now();
    let r = async {
        let mut conn = ttyd.open(Some(script), false).await?;
        conn.read_to_close(t0 + limit).await
    }
    .await;
    let elapsed = t0.elapsed();
    let after = pid.and_then(stat_cpu_ms);
    let start_cpu_ms = ttyd.started.map(|s| s.cpu_ms);
    ttyd.stop().await;
    let bytes = r?;
    Ok(crate::throughput::Streamed {
        transfer: crate::baseline::Transfer { bytes, elapsed },
        cpu_ms_per_mb: ms_per_mb(before, after, bytes),
        start_cpu_ms,
    })
}

/// Echo through ttyd, idle and (with `load`) while three more connections
/// stream the load script: the echo percentiles, and under load the MB/s
/// its readers got and ttyd's CPU per MB.
pub async fn echo(
    bin: &Path,
    (warmup, samples, pace): (usize, usize, Duration),
    load: Option<&str>,
    limit: Duration,
) -> anyhow::Result<(Vec<Duration>, Option<(Vec<Duration>, f64, Option<f64>)>)> {
    let ttyd = Ttyd::scripted(bin).await?;
    let r = async {
        let mut echo = ttyd.open(Some(crate::latency::ECHO), false).await?;
        tokio::time::sleep(crate::latency::STTY_WAIT).await;
        let idle = crate::paced::idle_samples(&mut echo, warmup, samples, limit).await?;
        let Some(script) = load else {
            return anyhow::Ok((idle, None));
        };
        // The probe under load is a client of its own (see `load`), on a
        // fresh echo program (ttyd runs one per connection), ready before
        // the load starts.
        drop(echo);
        let url = ttyd.url(Some(crate::latency::ECHO))?;
        let probe = crate::load::on_own_thread(
            move || async move {
                let echo = TtydConn::connect(url, false).await?;
                tokio::time::sleep(crate::latency::STTY_WAIT).await;
                Ok(echo)
            },
            move |mut echo| async move {
                crate::paced::echo_samples(&mut echo, warmup, samples, pace, Instant::now() + limit).await
            },
        )
        .await?;
        let before = ttyd.pid().and_then(stat_cpu_ms);
        let mut load = crate::load::Load::new();
        for _ in 0..crate::load::STREAMS {
            load.add(ttyd.open(Some(script), false).await?.drain(load.stop_signal()));
        }
        let (loaded, mbps, bytes) = load.during_counted("ttyd", probe.run()).await;
        let cpu = ms_per_mb(before, ttyd.pid().and_then(stat_cpu_ms), bytes);
        Ok((idle, Some((loaded?, mbps, cpu))))
    }
    .await;
    ttyd.stop().await;
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripts_are_percent_encoded() {
        assert_eq!(percent_encode("cat 'a b'; x"), "cat%20%27a%20b%27%3B%20x");
    }

    #[test]
    fn only_ttyd_is_a_known_peer() {
        assert!(Peer::parse("gotty=/bin/sh").is_err());
        assert!(Peer::parse("ttyd").is_err());
        assert!(Peer::parse("ttyd=/bin/sh").is_ok());
    }
}
