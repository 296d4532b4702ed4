//! Baselines without the server: the same programs read straight from a PTY
//! master or a pipe, and a bare loopback WebSocket echo.
//!
//! They run in the bench process on the same tokio runtime as the clients,
//! so the difference to a scenario's figure is what the server adds. The
//! draining of a socket ([`drain_binary`]) serves the other baselines too
//! (the relay, ttyd); their echoes, and the bare PTY's, go through
//! [`crate::paced`] (with no pace at idle: each key once the last came
//! back).

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::Context;
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message;

use crate::load::Load;

/// The largest read a baseline makes; a PTY gives at most ~4 KiB anyway.
const READ_BUF: usize = 64 << 10;

/// Bytes read and the time it took.
#[derive(Debug, Clone, Copy)]
pub struct Transfer {
    pub bytes: u64,
    pub elapsed: Duration,
}

impl Transfer {
    /// Megabytes (10^6) per second.
    pub fn mb_per_s(&self) -> f64 {
        self.bytes as f64 / self.elapsed.as_secs_f64() / 1e6
    }
}

/// Kills process group `pgid` (a PTY program and what it started).
pub(crate) fn kill_group(pgid: u32) {
    if let Some(pid) = rustix::process::Pid::from_raw(pgid as i32) {
        let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
    }
}

/// Kills a process group when dropped: a PTY program's `sh` and the `cat`
/// it runs, even where SIGHUP is ignored (under `nohup`) and a hung-up
/// loop would go on.
pub(crate) struct GroupGuard(pub u32);

impl Drop for GroupGuard {
    fn drop(&mut self) {
        kill_group(self.0);
    }
}

/// Opens a PTY of 80 × 24 and starts `sh -c SCRIPT` on it.
pub(crate) fn spawn_on_pty(script: &str) -> anyhow::Result<(pty_process::Pty, tokio::process::Child)> {
    let (pty, pts) = pty_process::open().context("cannot open a PTY")?;
    pty.resize(pty_process::Size::new(24, 80))?;
    let child = pty_process::Command::new("sh")
        .args(["-c", script])
        .kill_on_drop(true)
        .spawn(pts)?;
    Ok((pty, child))
}

/// `sh -c SCRIPT` on a PTY, read from the master until the end (EIO once
/// the program has exited and its output is drained).
pub async fn pty_read(script: &str, limit: Duration) -> anyhow::Result<Transfer> {
    let t0 = Instant::now();
    let (mut pty, mut child) = spawn_on_pty(script)?;
    let mut buf = vec![0u8; READ_BUF];
    let mut bytes = 0u64;
    let read_all = async {
        loop {
            match pty.read(&mut buf).await {
                Ok(0) => break,
                Ok(n) => bytes += n as u64,
                Err(e) if e.raw_os_error() == Some(rustix::io::Errno::IO.raw_os_error()) => break,
                Err(e) => return Err(anyhow::Error::from(e)),
            }
        }
        Ok(())
    };
    tokio::time::timeout(limit, read_all)
        .await
        .context("bare PTY read timed out")??;
    let elapsed = t0.elapsed();
    let _ = child.wait().await;
    Ok(Transfer { bytes, elapsed })
}

/// `sh -c SCRIPT` with stdout on a pipe, read until the end.
pub async fn pipe_read(script: &str, limit: Duration) -> anyhow::Result<Transfer> {
    let t0 = Instant::now();
    let mut child = tokio::process::Command::new("sh")
        .args(["-c", script])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let mut out = child.stdout.take().context("no stdout")?;
    let mut buf = vec![0u8; READ_BUF];
    let mut bytes = 0u64;
    let read_all = async {
        loop {
            let n = out.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            bytes += n as u64;
        }
        anyhow::Ok(())
    };
    tokio::time::timeout(limit, read_all)
        .await
        .context("bare pipe read timed out")??;
    let elapsed = t0.elapsed();
    let _ = child.wait().await;
    Ok(Transfer { bytes, elapsed })
}

/// `warmup + samples` round trips of one byte (`a` to `z`, in turn):
/// `round_trip` sends the byte and waits until it comes back. The times of
/// the last `samples`; the first error ends the rounds.
pub async fn echo_rounds(
    warmup: usize,
    samples: usize,
    mut round_trip: impl AsyncFnMut(u8) -> anyhow::Result<()>,
) -> anyhow::Result<Vec<Duration>> {
    let mut out = Vec::with_capacity(samples);
    for i in 0..warmup + samples {
        let want = b'a' + (i % 26) as u8;
        let t0 = Instant::now();
        round_trip(want).await?;
        if i >= warmup {
            out.push(t0.elapsed());
        }
    }
    Ok(out)
}

/// Reads `ws` until `stop` turns true or the socket ends; the output bytes
/// its binary messages held, as `output` counts them.
pub async fn drain_binary<S>(ws: &mut S, mut stop: watch::Receiver<bool>, output: impl Fn(&[u8]) -> u64) -> u64
where
    S: futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    let mut bytes = 0;
    loop {
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return bytes,
            msg = ws.next() => match msg {
                Some(Ok(Message::Binary(b))) => bytes += output(&b),
                Some(Ok(_)) => {}
                _ => return bytes,
            },
        }
    }
}

/// One-byte round trips through `stty raw -echo; cat` on a bare PTY.
pub async fn pty_echo(warmup: usize, samples: usize, limit: Duration) -> anyhow::Result<Vec<Duration>> {
    let mut echo = echo_pty().await?;
    crate::paced::idle_samples(&mut echo, warmup, samples, limit).await
}

/// A bare PTY running `stty raw -echo; exec cat`, once `stty` has taken
/// effect (so that the first byte comes back once).
pub(crate) async fn echo_pty() -> anyhow::Result<EchoPty> {
    pty_ready("stty raw -echo; printf R; exec cat").await
}

/// A bare PTY running `script`, once it printed `R` (and whatever came
/// before): a script prints it once its `stty` has taken effect.
pub(crate) async fn pty_ready(script: &str) -> anyhow::Result<EchoPty> {
    let (mut pty, child) = spawn_on_pty(script)?;
    let mut buf = [0u8; 256];
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let n = tokio::time::timeout_at(deadline.into(), pty.read(&mut buf))
            .await
            .context("the PTY's program did not start")??;
        anyhow::ensure!(n > 0, "the PTY's program ended before it started");
        if buf[..n].contains(&b'R') {
            return Ok((pty, child));
        }
    }
}

pub(crate) type EchoPty = (pty_process::Pty, tokio::process::Child);

impl crate::paced::Echo for EchoPty {
    async fn key(&mut self, key: u8) -> anyhow::Result<()> {
        Ok(self.0.write_all(&[key]).await?)
    }
    async fn output(&mut self) -> anyhow::Result<Option<Vec<u8>>> {
        let mut buf = [0u8; 4096];
        match self.0.read(&mut buf).await? {
            0 => Ok(None),
            n => Ok(Some(buf[..n].to_vec())),
        }
    }
}

/// The paced echo ([`crate::paced`]) of a bare PTY, keys `pace` apart,
/// while the bare PTYs of a [`Load`] each run `script` (the load's stream,
/// [`crate::load::script`]) and this process reads them all: what the
/// machine itself gives under the load of scenario 4 (or 14), with no
/// server. Also the MB/s the readers got.
pub async fn pty_echo_loaded(
    script: &str,
    warmup: usize,
    samples: usize,
    pace: Duration,
    limit: Duration,
) -> anyhow::Result<(Vec<Duration>, f64)> {
    // The probe is a thread of its own, as for the servers (see `load`),
    // ready before the load starts.
    let probe = crate::load::on_own_thread(echo_pty, move |mut echo| async move {
        crate::paced::echo_samples(&mut echo, warmup, samples, pace, Instant::now() + limit).await
    })
    .await?;
    let mut load = Load::new();
    for _ in 0..crate::load::STREAMS {
        let (mut pty, child) = spawn_on_pty(script)?;
        let group = GroupGuard(child.id().unwrap_or(0));
        let mut stop = load.stop_signal();
        load.add(async move {
            let _child = child;
            let _group = group;
            let mut buf = vec![0u8; READ_BUF];
            let mut bytes = 0u64;
            loop {
                tokio::select! {
                    _ = stop.wait_for(|s| *s) => return bytes,
                    r = pty.read(&mut buf) => match r {
                        Ok(n) if n > 0 => bytes += n as u64,
                        _ => return bytes,
                    },
                }
            }
        });
    }
    let (samples, mbps) = load.during("bare PTYs", probe.run()).await;
    Ok((samples?, mbps))
}

/// One-byte round trips through a bare tokio-tungstenite echo server on
/// loopback, in this process.
pub async fn ws_echo(warmup: usize, samples: usize, limit: Duration) -> anyhow::Result<Vec<Duration>> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await?;
        tcp.set_nodelay(true)?;
        let mut ws = tokio_tungstenite::accept_async(tcp).await?;
        while let Some(msg) = ws.next().await {
            match msg? {
                m @ (Message::Text(_) | Message::Binary(_)) => ws.send(m).await?,
                Message::Close(_) => break,
                _ => {}
            }
        }
        anyhow::Ok(())
    });
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/")).await?;
    let deadline = Instant::now() + limit;
    let out = echo_rounds(warmup, samples, async |want| {
        let want = want as char;
        ws.send(Message::Text(want.to_string().into())).await?;
        loop {
            let msg = tokio::time::timeout_at(deadline.into(), ws.next())
                .await
                .context("bare WebSocket echo timed out")?
                .context("the echo server closed")??;
            if matches!(&msg, Message::Text(t) if t.as_str().starts_with(want)) {
                return Ok(());
            }
        }
    })
    .await?;
    let _ = ws.close(None).await;
    let _ = tokio::time::timeout(Duration::from_secs(2), server).await;
    Ok(out)
}

/// Writes a text file of `size` bytes: numbered lines of 80 bytes.
pub fn write_text_file(path: &Path, size: usize) -> anyhow::Result<()> {
    use std::io::Write;
    let mut w = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(path)?);
    let filler = "the quick brown fox jumps over the lazy dog 0123456789 ABCDEFGHIJKLMNOPQRSTUVWXYZ";
    let mut written = 0;
    let mut line_no = 0u64;
    while written < size {
        let mut line = format!("{line_no:08} {filler}");
        line.truncate(79);
        line.push('\n');
        let take = line.len().min(size - written);
        w.write_all(&line.as_bytes()[..take])?;
        written += take;
        line_no += 1;
    }
    w.flush()?;
    Ok(())
}
