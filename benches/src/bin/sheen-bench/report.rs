//! Results: per-phase numbers, the progress line, the final table and the JSON file.
//!
//! The JSON schema is documented in docs/BENCHMARKS.md; `schema` names its version, and
//! fields are only ever added.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use serde::Serialize;

/// Version tag of the JSON output.
pub const SCHEMA: &str = "sheen-bench/1";
/// How often the progress line is redrawn.
const PROGRESS_INTERVAL: Duration = Duration::from_millis(500);
const MIB: f64 = 1048576.0;

/// One timed phase (write, read, create, stat...).
#[derive(Clone, Debug, Serialize)]
pub struct PhaseResult {
    pub name: String,
    /// Data moved by the phase (0 for pure metadata phases).
    pub bytes: u64,
    /// Transfers (IOR) or files (mdtest) handled.
    pub ops: u64,
    /// Wall time from the start barrier until the last task finished.
    pub seconds: f64,
    pub mib_per_s: f64,
    /// Same as `ops_per_s`; the name IOR users look for.
    pub iops: f64,
    pub ops_per_s: f64,
    /// `Some(true)` when every byte read matched the pattern; `None` when not checked.
    pub verified: Option<bool>,
    /// Transfers or files whose data did not match (or came back short).
    pub verify_errors: u64,
}

impl PhaseResult {
    pub fn new(name: &str, bytes: u64, ops: u64, elapsed: Duration) -> PhaseResult {
        let seconds = elapsed.as_secs_f64().max(1e-9);
        let ops_per_s = ops as f64 / seconds;
        PhaseResult {
            name: name.to_owned(),
            bytes,
            ops,
            seconds,
            mib_per_s: bytes as f64 / MIB / seconds,
            iops: ops_per_s,
            ops_per_s,
            verified: None,
            verify_errors: 0,
        }
    }
}

/// A whole run, as written by `--json`.
#[derive(Debug, Serialize)]
pub struct Report {
    pub schema: &'static str,
    pub workload: &'static str,
    /// `mount` or `native`.
    pub backend: &'static str,
    /// The directory, or the mount spec and path for the native client.
    pub target: String,
    pub label: String,
    pub params: serde_json::Value,
    pub phases: Vec<PhaseResult>,
    /// UTC, RFC 3339.
    pub date: String,
    pub unix_time: u64,
    pub hostname: String,
    pub git_rev: Option<String>,
    pub command: Vec<String>,
}

impl Report {
    pub fn new(
        workload: &'static str,
        backend: &'static str,
        target: String,
        label: String,
        params: serde_json::Value,
    ) -> Report {
        let unix_time = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        Report {
            schema: SCHEMA,
            workload,
            backend,
            target,
            label,
            params,
            phases: Vec::new(),
            date: rfc3339(unix_time),
            unix_time,
            hostname: hostname(),
            git_rev: git_rev(),
            command: std::env::args().collect(),
        }
    }

    /// The final table, on stdout.
    pub fn print_table(&self) {
        println!(
            "{} {} [{}] {}  {}",
            self.workload, self.backend, self.label, self.target, self.params
        );
        println!(
            "{:<8} {:>14} {:>10} {:>10} {:>12} {:>12} {:>8}",
            "phase", "bytes", "ops", "seconds", "MiB/s", "ops/s", "verify"
        );
        for phase in &self.phases {
            let verify = match phase.verified {
                None => "-".to_owned(),
                Some(true) => "ok".to_owned(),
                Some(false) => format!("{} bad", phase.verify_errors),
            };
            println!(
                "{:<8} {:>14} {:>10} {:>10.3} {:>12.1} {:>12.1} {:>8}",
                phase.name,
                phase.bytes,
                phase.ops,
                phase.seconds,
                phase.mib_per_s,
                phase.ops_per_s,
                verify
            );
        }
    }

    pub fn write_json(&self, path: &Path) -> Result<()> {
        let text = serde_json::to_string_pretty(self)?;
        std::fs::write(path, text + "\n").with_context(|| format!("write {}", path.display()))
    }
}

/// Counts work done in the current phase, and redraws a progress line on stderr every
/// [`PROGRESS_INTERVAL`] when enabled (stderr a terminal, no `--quiet`).
pub struct Progress {
    enabled: bool,
    state: Arc<ProgressState>,
}

struct ProgressState {
    phase: Mutex<String>,
    done: AtomicU64,
    total: AtomicU64,
    started: Mutex<Instant>,
    running: AtomicBool,
}

/// The progress line's redraw thread, stopped on drop.
pub struct ProgressGuard {
    state: Arc<ProgressState>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Progress {
    pub fn new(quiet: bool) -> Progress {
        Progress {
            enabled: !quiet && std::io::stderr().is_terminal(),
            state: Arc::new(ProgressState {
                phase: Mutex::new(String::new()),
                done: AtomicU64::new(0),
                total: AtomicU64::new(0),
                started: Mutex::new(Instant::now()),
                running: AtomicBool::new(false),
            }),
        }
    }

    /// Starts counting a phase of `total` units (ops); returns the redraw guard.
    pub fn phase(&self, name: &str, total: u64) -> ProgressGuard {
        let state = &self.state;
        if let Ok(mut phase) = state.phase.lock() {
            name.clone_into(&mut phase);
        }
        if let Ok(mut started) = state.started.lock() {
            *started = Instant::now();
        }
        state.done.store(0, Ordering::Relaxed);
        state.total.store(total, Ordering::Relaxed);
        state.running.store(true, Ordering::Release);
        let thread = self.enabled.then(|| {
            let state = state.clone();
            std::thread::Builder::new()
                .name("progress".to_owned())
                .spawn(move || redraw_loop(&state))
                .ok()
        });
        ProgressGuard {
            state: state.clone(),
            thread: thread.flatten(),
        }
    }

    /// Called by the tasks after each op.
    pub fn add(&self, n: u64) {
        self.state.done.fetch_add(n, Ordering::Relaxed);
    }
}

fn redraw_loop(state: &ProgressState) {
    let mut last = Instant::now();
    while state.running.load(Ordering::Acquire) {
        std::thread::sleep(Duration::from_millis(50));
        if last.elapsed() < PROGRESS_INTERVAL {
            continue;
        }
        last = Instant::now();
        let done = state.done.load(Ordering::Relaxed);
        let total = state.total.load(Ordering::Relaxed).max(1);
        let seconds = state
            .started
            .lock()
            .map_or(0.0, |s| s.elapsed().as_secs_f64())
            .max(1e-9);
        let phase = state.phase.lock().map(|p| p.clone()).unwrap_or_default();
        let mut stderr = std::io::stderr().lock();
        let _ = write!(
            stderr,
            "\r\x1b[K{phase}: {:5.1}% ({done}/{total} ops, {:.0} ops/s, {seconds:.1} s)",
            100.0 * done as f64 / total as f64,
            done as f64 / seconds
        );
        let _ = stderr.flush();
    }
}

impl Drop for ProgressGuard {
    fn drop(&mut self) {
        self.state.running.store(false, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
            let mut stderr = std::io::stderr().lock();
            let _ = write!(stderr, "\r\x1b[K");
            let _ = stderr.flush();
        }
    }
}

/// `YYYY-MM-DDTHH:MM:SSZ` from seconds since the epoch (civil-from-days, proleptic
/// Gregorian), so no date crate is needed.
pub fn rfc3339(unix_time: u64) -> String {
    let days = (unix_time / 86400) as i64;
    let secs_of_day = unix_time % 86400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        secs_of_day / 3600,
        secs_of_day / 60 % 60,
        secs_of_day % 60
    )
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_default()
}

/// The commit checked out in the nearest `.git` above the working directory or this
/// executable, read from the files (no `git` process): `SHEEN_GIT_REV` wins when set.
fn git_rev() -> Option<String> {
    if let Ok(rev) = std::env::var("SHEEN_GIT_REV") {
        return Some(rev).filter(|r| !r.is_empty());
    }
    let starts: Vec<PathBuf> = [std::env::current_dir().ok(), std::env::current_exe().ok()]
        .into_iter()
        .flatten()
        .collect();
    starts.iter().find_map(|start| {
        let git_dir = start
            .ancestors()
            .map(|d| d.join(".git"))
            .find(|d| d.is_dir())?;
        head_rev(&git_dir)
    })
}

fn head_rev(git_dir: &Path) -> Option<String> {
    let head = std::fs::read_to_string(git_dir.join("HEAD")).ok()?;
    let head = head.trim();
    let Some(reference) = head.strip_prefix("ref: ") else {
        return Some(head.to_owned());
    };
    if let Ok(rev) = std::fs::read_to_string(git_dir.join(reference)) {
        return Some(rev.trim().to_owned());
    }
    let packed = std::fs::read_to_string(git_dir.join("packed-refs")).ok()?;
    packed.lines().find_map(|line| {
        let (rev, name) = line.split_once(' ')?;
        (name == reference).then(|| rev.to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_795_606_371), "2026-11-25T11:32:51Z");
    }

    #[test]
    fn rates() {
        let phase = PhaseResult::new("write", 4 << 20, 4, Duration::from_secs(2));
        assert_eq!(phase.mib_per_s, 2.0);
        assert_eq!(phase.iops, 2.0);
        assert_eq!(phase.ops_per_s, 2.0);
    }
}
