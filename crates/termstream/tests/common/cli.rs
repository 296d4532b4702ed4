//! Runs the real `termstream` binary as a client of a test server, with a
//! bounded wait, a TCP proxy that cuts its connections on purpose, and one
//! that can be taken down and up (an outage).

use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The longest one CLI run may take in a test.
const RUN_LIMIT: Duration = Duration::from_secs(60);

/// What a CLI run left behind.
#[derive(Debug)]
pub struct CliOutput {
    pub code: i32,
    pub stdout: Vec<u8>,
    pub stderr: String,
}

impl CliOutput {
    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
}

/// A `termstream` client command aimed at `server` (a URL), with no token
/// from the test's own environment.
pub fn command(server: &str, args: &[&str]) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_termstream"));
    cmd.args(args)
        .env("TERMSTREAM_SERVER", server)
        .env_remove("TERMSTREAM_TOKEN")
        .env_remove("TERMSTREAM_CACERT")
        .kill_on_drop(true);
    cmd
}

/// Runs `termstream ARGS` against `server`, feeding it `stdin` (or an empty
/// stdin), and waits for it to end.
pub async fn run(server: &str, args: &[&str], stdin: &[u8]) -> CliOutput {
    run_cmd(command(server, args), stdin).await
}

/// Runs a prepared command to its end.
pub async fn run_cmd(mut cmd: tokio::process::Command, stdin: &[u8]) -> CliOutput {
    cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("cannot start termstream");
    let mut input = child.stdin.take().expect("stdin");
    let data = stdin.to_vec();
    tokio::spawn(async move {
        let _ = input.write_all(&data).await;
    });
    let out = tokio::time::timeout(RUN_LIMIT, child.wait_with_output())
        .await
        .expect("termstream did not end within the limit")
        .expect("termstream's output");
    CliOutput {
        code: out.status.code().unwrap_or(-1),
        stdout: out.stdout,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A TCP proxy in front of a server that cuts every connection after it
/// carried about `cut_after` bytes towards the client (the first `cuts`
/// connections that get that far; later ones are left alone).
pub struct CuttingProxy {
    pub addr: String,
    /// Where new connections go (changeable: a restarted server has a new port).
    pub upstream: Arc<std::sync::Mutex<String>>,
    /// Connections cut so far.
    pub cut: Arc<AtomicUsize>,
    listener: Option<TcpListener>,
}

impl CuttingProxy {
    /// Binds the proxy's port (so the server can be told to accept it as
    /// `Host`); [`CuttingProxy::start`] then serves it.
    pub async fn bind() -> CuttingProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        CuttingProxy {
            addr,
            upstream: Arc::default(),
            cut: Arc::new(AtomicUsize::new(0)),
            listener: Some(listener),
        }
    }

    pub fn start(&mut self, upstream: &str, cut_after: usize, cuts: usize) {
        let listener = self.listener.take().expect("started once");
        let cut = self.cut.clone();
        *self.upstream.lock().unwrap() = upstream.to_owned();
        let (upstream, counter) = (self.upstream.clone(), cut.clone());
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let (upstream, counter) = (upstream.lock().unwrap().clone(), counter.clone());
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(&upstream).await else {
                        return;
                    };
                    relay(client, server, cut_after, cuts, counter).await;
                });
            }
        });
    }
}

async fn relay(client: TcpStream, server: TcpStream, cut_after: usize, cuts: usize, counter: Arc<AtomicUsize>) {
    let (mut cr, mut cw) = client.into_split();
    let (mut sr, mut sw) = server.into_split();
    let up = tokio::spawn(async move {
        let _ = tokio::io::copy(&mut cr, &mut sw).await;
        let _ = sw.shutdown().await;
    });
    let mut carried = 0usize;
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match sr.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        // Cut in the middle of whatever is in flight (mid-frame).
        if carried + n > cut_after && counter.load(Ordering::SeqCst) < cuts {
            let part = cut_after.saturating_sub(carried).min(n);
            let _ = cw.write_all(&buf[..part]).await;
            counter.fetch_add(1, Ordering::SeqCst);
            up.abort();
            return;
        }
        carried += n;
        if cw.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = cw.shutdown().await;
    let _ = up.await;
}

/// A TCP proxy in front of a server that can be taken down: [`GateProxy::down`]
/// severs every connection it carries and then refuses new ones (after
/// reading their first line, kept for the test); [`GateProxy::up`] lets them
/// through again.
pub struct GateProxy {
    pub addr: String,
    open: Arc<std::sync::atomic::AtomicBool>,
    severed: tokio::sync::watch::Sender<u64>,
    /// The first line of each connection refused while down.
    pub refused: Arc<std::sync::Mutex<Vec<String>>>,
    listener: Option<TcpListener>,
}

impl GateProxy {
    /// Binds the proxy's port (for the server's `--allowed-host`);
    /// [`GateProxy::start`] then serves it, open.
    pub async fn bind() -> GateProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        GateProxy {
            addr: listener.local_addr().expect("addr").to_string(),
            open: Arc::new(std::sync::atomic::AtomicBool::new(true)),
            severed: tokio::sync::watch::channel(0u64).0,
            refused: Arc::default(),
            listener: Some(listener),
        }
    }

    pub fn start(&mut self, upstream: &str) {
        let listener = self.listener.take().expect("started once");
        let (upstream, gate, cut, said) = (
            upstream.to_owned(),
            self.open.clone(),
            self.severed.clone(),
            self.refused.clone(),
        );
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let (upstream, mut cut, said) = (upstream.clone(), cut.subscribe(), said.clone());
                let open = gate.load(Ordering::SeqCst);
                tokio::spawn(async move {
                    if !open {
                        let mut buf = vec![0u8; 4096];
                        let n = tokio::time::timeout(Duration::from_secs(5), client.read(&mut buf))
                            .await
                            .ok()
                            .and_then(|r| r.ok())
                            .unwrap_or(0);
                        let line = String::from_utf8_lossy(&buf[..n])
                            .lines()
                            .next()
                            .unwrap_or("")
                            .to_owned();
                        said.lock().unwrap().push(line);
                        return;
                    }
                    let Ok(mut server) = TcpStream::connect(&upstream).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = cut.changed() => {}
                    }
                });
            }
        });
    }

    /// Severs every connection and refuses new ones.
    pub fn down(&self) {
        self.open.store(false, Ordering::SeqCst);
        self.severed.send_modify(|n| *n += 1);
    }

    pub fn up(&self) {
        self.open.store(true, Ordering::SeqCst);
    }

    /// Whether a refused connection began with a line containing `needle`.
    pub fn refused_one(&self, needle: &str) -> bool {
        self.refused.lock().unwrap().iter().any(|l| l.contains(needle))
    }
}

/// What a CLI process prints on one stream, gathered by a task as it
/// comes (so that a process that prints a lot never blocks on a full pipe).
#[derive(Clone, Default)]
pub struct Gathered(Arc<std::sync::Mutex<Vec<u8>>>);

impl Gathered {
    /// Starts gathering `stream` (a child's stdout or stderr) to its end.
    pub fn gather(mut stream: impl tokio::io::AsyncRead + Unpin + Send + 'static) -> Gathered {
        let gathered = Gathered::default();
        let sink = gathered.0.clone();
        tokio::spawn(async move {
            let mut buf = [0u8; 16 * 1024];
            while let Ok(n) = stream.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        gathered
    }

    /// What was gathered so far, as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }

    /// Waits (15 s at most) until what was gathered holds `word`.
    pub async fn shows(&self, word: &str) -> bool {
        super::wait_until(Duration::from_secs(15), || async { self.text().contains(word) }).await
    }
}
