//! Log output: `tracing` events to stderr, as text or as one JSON object
//! per line (`--log-format`), filtered by `RUST_LOG`.
//!
//! `RUST_LOG` takes `tracing-subscriber`'s `EnvFilter` directives: a level
//! (`debug`), a target and a level (`termstream=debug`), several separated
//! by commas (`termstream=info,termstream::gateway=debug`). Without it the
//! server logs `termstream=info`, which includes the audit trail
//! (`termstream::audit`). Colours only when stderr is a terminal.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// How log lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line, fields at the top level.
    Json,
}

/// The filter used when `RUST_LOG` is unset or empty.
pub const DEFAULT_FILTER: &str = "termstream=info";

/// Installs the global subscriber. A `RUST_LOG` that does not parse is
/// reported and the default used.
pub fn init(format: LogFormat) {
    let (filter, bad) = match std::env::var("RUST_LOG") {
        Ok(s) if !s.trim().is_empty() => match EnvFilter::try_new(&s) {
            Ok(f) => (f, None),
            Err(e) => (
                EnvFilter::new(DEFAULT_FILTER),
                Some(format!("RUST_LOG={s:?} is not valid ({e})")),
            ),
        },
        _ => (EnvFilter::new(DEFAULT_FILTER), None),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
    if let Some(bad) = bad {
        tracing::warn!("{bad}; using {DEFAULT_FILTER}");
    }
}
