//! A real `redis-server` for the cluster's unit tests: on a free loopback
//! port, nothing kept on disk, killed when dropped; and [`node`], a node's
//! cluster on it.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::Cluster;
use crate::config::Config;
use crate::registry::Registry;

/// A node's cluster on the Redis at `url`, with `config` but its data in a
/// new folder (kept while the returned one lives) and no spare sessions.
pub fn node(url: &str, config: Config) -> (tempfile::TempDir, Arc<Cluster>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = Config {
        data_dir: dir.path().to_owned(),
        spare_sessions: 0,
        ..config
    };
    let registry = Registry::load(Arc::new(config)).expect("registry");
    (dir, Cluster::start(url, registry).expect("cluster"))
}

/// A `redis-server` child process, killed when dropped.
pub struct TestRedis(Child, u16);

impl TestRedis {
    /// Starts one on a free port and waits (at most 10 s) until it answers.
    pub async fn start() -> TestRedis {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", ""])
            .args(["--appendonly", "no"])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server runs (CI installs it)");
        let redis = TestRedis(child, port);
        let deadline = Instant::now() + Duration::from_secs(10);
        while redis.query::<String>(&mut redis::cmd("PING")).await.is_err() {
            assert!(Instant::now() < deadline, "redis-server did not answer within 10 s");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        redis
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.1)
    }

    pub async fn query<T: redis::FromRedisValue>(&self, cmd: &mut redis::Cmd) -> redis::RedisResult<T> {
        let client = redis::Client::open(self.url())?;
        let mut conn = client.get_multiplexed_async_connection().await?;
        cmd.query_async(&mut conn).await
    }
}

impl Drop for TestRedis {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
