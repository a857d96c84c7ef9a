//! Plumbing shared by every Sheen daemon (`sheen-mgs`, `sheen-mds`, `sheen-oss`).
//!
//! A daemon's `main.rs` stays thin (STYLE.md practice 2): it parses flags (sizes with
//! [`parse_size`]), calls [`init_tracing`], builds the tokio runtime, takes its
//! [`DataDirLock`], asks [`shutdown_on_signals`] for a cancellation token and hands both to
//! the library's `run`.
//!
//! Architecture invariant: this crate knows no Sheen domain types and depends on no other
//! Sheen crate.

mod lock;
mod signals;
mod size;
mod tracing_init;

use std::io;
use std::path::PathBuf;

pub use lock::DataDirLock;
pub use signals::shutdown_on_signals;
pub use size::parse_size;
pub use tracing_init::init_tracing;

/// A number that differs on every start of a server process (time and pid), sent in CONNECT
/// replies so that clients notice a restart.
pub fn instance_id() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1);
    nanos ^ (u64::from(std::process::id()) << 40)
}

/// Errors of the daemon plumbing; each carries what a person needs to fix the cause.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// A size flag or config value could not be parsed.
    #[error("invalid size {input:?}: {reason} (examples: 4096, 64K, 64KiB, 1M, 16G, 1GiB)")]
    InvalidSize {
        /// The text as given.
        input: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The data directory or its lock file could not be created, opened or written.
    #[error("data dir {path}: {what}: {source}")]
    DataDir {
        /// The file or directory concerned.
        path: PathBuf,
        /// The operation that failed.
        what: &'static str,
        /// The underlying I/O error.
        #[source]
        source: io::Error,
    },
    /// Another process already holds the data directory's lock.
    #[error(
        "data dir {dir} is in use by another daemon{}; stop it first or choose another \
         --data-dir",
        match holder_pid { Some(pid) => format!(" (pid {pid})"), None => String::new() }
    )]
    DataDirLocked {
        /// The data directory.
        dir: PathBuf,
        /// The pid written in the lock file by the holder, when readable.
        holder_pid: Option<u32>,
    },
}
