//! Reading a test server's `/metrics`.

use super::TestServer;

/// A metric of `server` (its name with any labels, as printed).
pub async fn metric(server: &TestServer, name: &str) -> Option<f64> {
    metric_in(&metrics_text(server).await?, name)
}

/// What `server`'s `/metrics` answers.
pub async fn metrics_text(server: &TestServer) -> Option<String> {
    let answer = server.client.get(server.url("/metrics")).send().await.ok()?;
    answer.text().await.ok()
}

/// A metric (its name with any labels) in `text`, a `/metrics` answer.
pub fn metric_in(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}
