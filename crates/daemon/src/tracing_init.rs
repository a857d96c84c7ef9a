//! Logging set-up: one `tracing` subscriber writing timestamped lines to stderr.
//!
//! The launcher (`sheen-cluster`) redirects stderr to a log file and scans it for lines
//! containing ` ERROR ` or ` WARN `, so the format keeps the level as a plain word between
//! spaces and never adds colour codes when stderr is not a terminal.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// The filter used when `RUST_LOG` is unset or empty.
const DEFAULT_FILTER: &str = "info";

/// Installs the global subscriber: `RUST_LOG` filter (default `info`), stderr, timestamps.
///
/// Logs one line naming `service`, its version and pid. A second call keeps the first
/// subscriber, so tests may call it freely.
pub fn init_tracing(service: &'static str) {
    let filter = match std::env::var("RUST_LOG") {
        Ok(directives) if !directives.trim().is_empty() => EnvFilter::new(directives),
        _ => EnvFilter::new(DEFAULT_FILTER),
    };
    let installed = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init()
        .is_ok();
    if installed {
        tracing::info!(
            service,
            version = env!("CARGO_PKG_VERSION"),
            pid = std::process::id(),
            "starting"
        );
    }
}
