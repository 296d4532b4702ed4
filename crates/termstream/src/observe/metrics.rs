//! Prometheus metrics: what is recorded, and `GET /metrics`.
//!
//! The recorder is `metrics-exporter-prometheus`, installed once per
//! process as the global `metrics` recorder ([`install`]); `/metrics`
//! renders it as Prometheus text. Every metric the hot paths touch is
//! registered once and kept as a handle ([`get`]), so recording is an atomic
//! add (a histogram sample is a lock-free push, folded into its buckets by
//! the upkeep task every second), never a lookup by name.
//!
//! Gauges of sessions by kind and status, and a cluster node's pending
//! removals from Redis, are counted when `/metrics` is scraped, not kept up
//! to date on every change.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use metrics::{Counter, Gauge, Histogram, counter, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use termstream_proto::ErrorCode;
use termstream_proto::session::{SessionKind, SessionStatus};
use termstream_proto::ws::GapReason;

use crate::registry::Registry;

/// The name of the output delivery latency histogram.
const DELIVERY: &str = "termstream_output_delivery_seconds";

/// Bucket bounds of [`DELIVERY`], in seconds: 25 µs to 2.5 s.
const DELIVERY_BUCKETS: [f64; 16] = [
    0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// How often histogram samples are folded into their buckets. Samples wait
/// in a lock-free list until then (8 bytes each): at most one second of
/// delivered frames.
const UPKEEP: Duration = Duration::from_secs(1);

static RECORDER: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the Prometheus recorder as this process's `metrics` recorder
/// (once; later calls return the same handle) and starts its upkeep task
/// on the current runtime.
pub fn install() -> PrometheusHandle {
    RECORDER
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Full(DELIVERY.into()), &DELIVERY_BUCKETS)
                .expect("the bucket list is not empty")
                .build_recorder();
            let handle = recorder.handle();
            if ::metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!("another metrics recorder is installed; /metrics will be empty");
            }
            describe();
            let upkeep = handle.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(UPKEEP);
                loop {
                    tick.tick().await;
                    upkeep.run_upkeep();
                }
            });
            handle
        })
        .clone()
}

/// Every gauge, with its description.
const GAUGES: [(&str, &str); 7] = [
    ("termstream_sessions", "Sessions kept, by kind and status."),
    ("termstream_connections", "WebSocket connections open, by endpoint."),
    ("termstream_attachments", "Sessions attached to sockets, by endpoint."),
    (
        "termstream_outbox_queued_frames",
        "Frames waiting in sockets' outboxes for their writer, all sockets together.",
    ),
    (
        "termstream_bulk_lane_sessions",
        "Sessions whose actor runs on the bulk lane (flooding while someone types elsewhere).",
    ),
    (
        "termstream_bulk_lane_forwarders",
        "Viewers' forwarders on the bulk lane, with their flooding session.",
    ),
    (
        "termstream_cluster_forgets_pending",
        "Sessions deleted (or creates failed) on this node whose removal from the cluster's Redis has not gone through yet (cluster only).",
    ),
];

/// Every counter, with its description.
const COUNTERS: [(&str, &str); 11] = [
    ("termstream_sessions_created_total", "Sessions started, by kind."),
    ("termstream_spawn_failures_total", "Programs that could not be started."),
    (
        "termstream_connections_total",
        "WebSocket connections accepted, by endpoint.",
    ),
    (
        "termstream_attachments_total",
        "Attaches of a session to a socket, by endpoint.",
    ),
    (
        "termstream_bytes_total",
        "Bytes of input taken from clients (in) and of output sent to sockets (out).",
    ),
    ("termstream_output_frames_total", "Output frames sent to sockets."),
    (
        "termstream_catchups_total",
        "Slow clients caught up: by replay from the log (replay) or from a snapshot (snapshot).",
    ),
    ("termstream_gaps_total", "Gaps announced to clients, by reason."),
    (
        "termstream_input_busy_total",
        "Input answered busy (a program not reading).",
    ),
    (
        "termstream_auth_failures_total",
        "Requests refused by the guard, by reason.",
    ),
    (
        "termstream_errors_total",
        "Errors answered to clients (REST and WebSocket), by code.",
    ),
];

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    for (name, description) in GAUGES {
        describe_gauge!(name, description);
    }
    for (name, description) in COUNTERS {
        describe_counter!(name, description);
    }
    describe_histogram!(
        DELIVERY,
        metrics::Unit::Seconds,
        "Time from reading output from a program to writing it to a socket."
    );
}

/// The handles the hot paths record with.
pub struct Metrics {
    pub bytes_in: Counter,
    pub bytes_out: Counter,
    pub output_frames: Counter,
    pub outbox_queued: Gauge,
    /// Actors on the bulk lane (`session/lane.rs`).
    pub bulk_lane: Gauge,
    /// Forwarders on the bulk lane.
    pub bulk_lane_forwarders: Gauge,
    pub input_busy: Counter,
    pub spawn_failures: Counter,
    pub delivery: Histogram,
    /// Attachments open and made, `/ws` then the legacy endpoints.
    pub attachments: [(Gauge, Counter); 2],
}

/// The handles, registered on first use with whatever recorder is then
/// installed (none in unit tests: then they record nothing).
pub fn get() -> &'static Metrics {
    static HANDLES: OnceLock<Metrics> = OnceLock::new();
    HANDLES.get_or_init(|| Metrics {
        bytes_in: counter!("termstream_bytes_total", "direction" => "in"),
        bytes_out: counter!("termstream_bytes_total", "direction" => "out"),
        output_frames: counter!("termstream_output_frames_total"),
        outbox_queued: gauge!("termstream_outbox_queued_frames"),
        bulk_lane: gauge!("termstream_bulk_lane_sessions"),
        bulk_lane_forwarders: gauge!("termstream_bulk_lane_forwarders"),
        input_busy: counter!("termstream_input_busy_total"),
        spawn_failures: counter!("termstream_spawn_failures_total"),
        delivery: histogram!(DELIVERY),
        attachments: ["ws", "legacy"].map(|e| {
            (
                gauge!("termstream_attachments", "endpoint" => e),
                counter!("termstream_attachments_total", "endpoint" => e),
            )
        }),
    })
}

/// Records the delivery of output read at `read_at`, now.
pub fn delivered(read_at: Option<Instant>) {
    if let Some(t) = read_at {
        get().delivery.record(t.elapsed().as_secs_f64());
    }
}

/// A WebSocket connection on `endpoint` (`ws`, `legacy_one`,
/// `legacy_all`), counted while it lives.
#[derive(Debug)]
pub struct ConnectionGauge(Gauge);

impl ConnectionGauge {
    pub fn open(endpoint: &'static str) -> ConnectionGauge {
        counter!("termstream_connections_total", "endpoint" => endpoint).increment(1);
        let g = gauge!("termstream_connections", "endpoint" => endpoint);
        g.increment(1.0);
        ConnectionGauge(g)
    }
}

impl Drop for ConnectionGauge {
    fn drop(&mut self) {
        self.0.decrement(1.0);
    }
}

/// A session attached to a socket, counted while attached.
#[derive(Debug)]
pub struct AttachmentGauge(usize);

impl AttachmentGauge {
    /// `legacy`: attached through `/ws/terminal/...`, else `/ws`.
    pub fn open(legacy: bool) -> AttachmentGauge {
        let i = usize::from(legacy);
        let (g, c) = &get().attachments[i];
        g.increment(1.0);
        c.increment(1);
        AttachmentGauge(i)
    }
}

impl Drop for AttachmentGauge {
    fn drop(&mut self) {
        get().attachments[self.0].0.decrement(1.0);
    }
}

/// A session was started.
pub fn session_created(kind: SessionKind) {
    counter!("termstream_sessions_created_total", "kind" => snake(&kind)).increment(1);
}

/// A slow client was caught up: `replay` by reading the log, or `snapshot`.
pub fn catchup(how: &'static str) {
    counter!("termstream_catchups_total", "reason" => how).increment(1);
}

/// A gap was announced to a client.
pub fn gap(reason: GapReason) {
    counter!("termstream_gaps_total", "reason" => snake(&reason)).increment(1);
}

/// A request was refused by the guard, for `reason`.
pub fn auth_failure(reason: &'static str) {
    counter!("termstream_auth_failures_total", "reason" => reason).increment(1);
}

/// An error was answered to a client.
pub fn error(code: ErrorCode) {
    counter!("termstream_errors_total", "code" => snake(&code)).increment(1);
}

/// The snake_case name serde gives a unit variant.
pub fn snake<T: serde::Serialize>(v: &T) -> String {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => s,
        _ => "other".into(),
    }
}

#[utoipa::path(get, path = "/metrics", responses((status = 200, description = "Every metric, in Prometheus text format.", content_type = "text/plain")))]
/// `GET /metrics`: every metric, in Prometheus text format.
pub async fn render(State(registry): State<Arc<Registry>>) -> impl IntoResponse {
    let handle = install();
    count_sessions(&registry);
    if let Some(link) = registry.remote().link() {
        gauge!("termstream_cluster_forgets_pending").set(link.forgets_pending() as f64);
    }
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        handle.render(),
    )
}

/// Sets the sessions gauges from the registry.
fn count_sessions(registry: &Registry) {
    use SessionKind::*;
    use SessionStatus::*;
    const KINDS: [SessionKind; 2] = [Pty, Command];
    const STATUSES: [SessionStatus; 5] = [Running, Exited, Terminated, Failed, Lost];
    let mut counts = [[0u64; STATUSES.len()]; KINDS.len()];
    for h in registry.handles() {
        let info = h.info();
        let k = KINDS.iter().position(|k| *k == info.kind);
        let s = STATUSES.iter().position(|s| *s == info.status);
        if let (Some(k), Some(s)) = (k, s) {
            counts[k][s] += 1;
        }
    }
    for (k, kind) in KINDS.iter().enumerate() {
        for (s, status) in STATUSES.iter().enumerate() {
            gauge!("termstream_sessions", "kind" => snake(kind), "status" => snake(status)).set(counts[k][s] as f64);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_the_wire_names() {
        assert_eq!(snake(&ErrorCode::SessionNotFound), "session_not_found");
        assert_eq!(snake(&GapReason::SlowClient), "slow_client");
        assert_eq!(snake(&SessionStatus::Running), "running");
    }
}
