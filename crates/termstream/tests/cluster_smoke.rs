//! The scale-out harness works: a real `redis-server` starts, answers, is
//! stopped and comes back empty; a node started with `--cluster` serves.
//! (The cluster's behaviour is tested in `cluster*.rs`.)

mod common;

use common::TestServer;
use common::redis::TestRedis;

#[tokio::test]
async fn a_node_with_a_cluster_url_serves_and_redis_restarts_on_its_port() {
    let mut redis = TestRedis::start().await;
    let node = TestServer::start_with(&["--cluster", &redis.url()], &[]).await;
    let health = node.client.get(node.url("/healthz")).send().await.expect("healthz");
    assert!(health.status().is_success(), "healthz: {}", health.status());
    redis.stop();
    redis.start_again().await;
    assert!(redis.url().ends_with(&redis.port().to_string()));
}
