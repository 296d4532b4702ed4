//! A real `redis-server` for the scale-out tests, on a free loopback port.
//!
//! Each [`TestRedis`] runs its own server with nothing kept on disk
//! (`--save '' --appendonly no`), as the cluster must expect: a restarted
//! Redis is empty. [`TestRedis::stop`] and [`TestRedis::start_again`] take it
//! down and bring it back on the same port, for the outage tests; it is
//! killed when dropped.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::wait_until;

/// A `redis-server` child process on `127.0.0.1:port`.
pub struct TestRedis {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
}

impl TestRedis {
    /// Starts a Redis on a free loopback port and waits until it answers.
    pub async fn start() -> TestRedis {
        let port = free_port();
        let dir = tempfile::Builder::new()
            .prefix("termstream-redis-")
            .tempdir()
            .expect("tempdir");
        let mut redis = TestRedis { child: None, port, dir };
        redis.start_again().await;
        redis
    }

    /// The URL nodes are given with `--cluster`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Kills the server (SIGKILL): everything it held is gone.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts a server again on the same port (empty) and waits until it
    /// answers. Does nothing if it is running.
    pub async fn start_again(&mut self) {
        if self.child.is_some() {
            return;
        }
        self.child = Some(spawn(self.port, self.dir.path()));
        let port = self.port;
        let up = wait_until(Duration::from_secs(10), || async move { ping(port) }).await;
        assert!(up, "redis-server on port {port} did not answer PING within 10 s");
    }
}

impl Drop for TestRedis {
    fn drop(&mut self) {
        self.stop();
    }
}

fn spawn(port: u16, dir: &Path) -> Child {
    Command::new("redis-server")
        .args(["--port", &port.to_string()])
        .args(["--bind", "127.0.0.1"])
        .args(["--save", ""])
        .args(["--appendonly", "no"])
        .arg("--dir")
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server (apt-get install redis-server; .ci/run installs it)")
}

/// Whether a Redis on `port` answers `PING` with `+PONG`.
fn ping(port: u16) -> bool {
    use std::io::{Read, Write};
    let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
    if stream.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut answer = [0u8; 7];
    stream.read_exact(&mut answer).is_ok() && &answer == b"+PONG\r\n"
}

/// A loopback port nothing listens on (the kernel's pick, released).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}
