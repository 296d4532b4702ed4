//! What the server tells its operators: Prometheus metrics ([`metrics`]),
//! health and readiness ([`health`]), logs and the audit trail
//! ([`logging`], [`audit`]).
//!
//! None of it changes what the server does: a metric is an atomic add on a
//! handle registered once, an audit event is a `tracing` event that costs
//! nothing when its level is filtered out.

pub mod audit;
pub mod health;
pub mod logging;
pub mod metrics;
