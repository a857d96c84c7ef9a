//! Starts and stops a local Sheen cluster of real daemon processes on 127.0.0.1.
//!
//! Used by the integration tests, the benchmarks and `cargo xtask cluster up|down|demo`.
//! A [`Cluster`] runs one MGS, one MDS and one OSS serving N OSTs (block files in the cluster
//! directory), each on its own free port, with stdout and stderr in `DIR/logs/*.log`; FUSE
//! mounts are `sheen-mount` children. Readiness is polled with a deadline, never slept for:
//! a daemon is ready once its port accepts a TCP connection, a mount once it is listed in
//! `/proc/self/mountinfo`.
//!
//! Clean-up is the point of this crate: an attached cluster unmounts and kills what it started
//! when dropped (also on panic), and its children get SIGTERM from the kernel if the test
//! process dies without unwinding. A detached cluster (for xtask) records every pid in
//! `DIR/cluster.json` so that [`down`] can stop exactly those processes later.
//!
//! Architecture invariant: this crate depends on no other Sheen crate; it only knows the
//! daemons' command lines.

mod cluster;
pub mod mountinfo;
mod ports;
mod process;
mod spec;
mod state;

use std::io;
use std::path::PathBuf;
use std::time::Duration;

pub use cluster::{down, Cluster, Daemon};
pub use ports::pick_free_ports;
pub use spec::{bin_dir, ClusterSpec};
pub use state::{ClusterState, DaemonRecord, MountRecord, STATE_FILE_NAME};

/// How long a daemon may take to accept connections, or a mount to appear.
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How often readiness and exit are polled.
pub const POLL_INTERVAL: Duration = Duration::from_millis(20);
/// How long a process may take to exit after SIGTERM before it gets SIGKILL.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// How long `umount`/`fusermount3 -u` may take before the lazy fallback.
pub const UNMOUNT_TIMEOUT: Duration = Duration::from_secs(10);
/// Lines of a log file quoted in an error.
const LOG_TAIL_LINES: usize = 40;

/// Errors of the cluster launcher; each names the process or path and, where a daemon failed,
/// quotes the tail of its log.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// A file system or process operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done, with the path or command.
        what: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A binary the cluster needs has not been built.
    #[error(
        "binary {path} not found: build it first (`cargo build --workspace --bins`), or point \
         SHEEN_BIN_DIR at the directory holding it"
    )]
    MissingBinary {
        /// Where it was looked for.
        path: PathBuf,
    },
    /// A process exited while we waited for it to become ready.
    #[error("{name} exited during start-up ({status}); last lines of {log}:\n{log_tail}")]
    Exited {
        /// The daemon or mount.
        name: String,
        /// Its exit status.
        status: String,
        /// Its log file.
        log: PathBuf,
        /// The last lines of the log file.
        log_tail: String,
    },
    /// A process did not become ready in time.
    #[error("{name} not ready after {waited:?}: {reason}; last lines of {log}:\n{log_tail}")]
    NotReady {
        /// The daemon or mount.
        name: String,
        /// How long we waited.
        waited: Duration,
        /// What we were waiting for.
        reason: String,
        /// Its log file.
        log: PathBuf,
        /// The last lines of the log file.
        log_tail: String,
    },
    /// The mountpoint is already in use, or is not one of this cluster's mounts.
    #[error("mountpoint {mountpoint}: {reason}")]
    Mountpoint {
        /// The mountpoint.
        mountpoint: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// Unmounting failed even lazily.
    #[error("cannot unmount {mountpoint}: {reason}")]
    Unmount {
        /// The mountpoint.
        mountpoint: PathBuf,
        /// The last error.
        reason: String,
    },
    /// The daemon is not running, or already running, when the call needs the opposite.
    #[error("{name}: {reason}")]
    State {
        /// The daemon.
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// The state file of a detached cluster is missing or unreadable.
    #[error("state file {path}: {reason}")]
    StateFile {
        /// The state file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A detached cluster is already running in this directory.
    #[error(
        "a cluster recorded in {path} is still running (pid {pid}); stop it first with \
         `cargo xtask cluster down --dir {}`",
        dir.display()
    )]
    AlreadyRunning {
        /// The cluster directory.
        dir: PathBuf,
        /// The state file.
        path: PathBuf,
        /// A pid from it that is still alive.
        pid: u32,
    },
    /// A process would not die even after SIGKILL.
    #[error("{name} (pid {pid}) still running after SIGKILL")]
    Unkillable {
        /// The daemon or mount.
        name: String,
        /// Its pid.
        pid: u32,
    },
}

impl ClusterError {
    fn io(what: impl Into<String>, source: io::Error) -> ClusterError {
        ClusterError::Io {
            what: what.into(),
            source,
        }
    }
}
