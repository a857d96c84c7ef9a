//! Spawning, signalling and waiting for the cluster's processes.
//!
//! Attached children (tests, demo) are forked by one long-lived thread and get
//! `PR_SET_PDEATHSIG = SIGTERM`: the kernel sends it when the forking *thread* exits, so that
//! thread must live as long as the process, and a test process that dies without running
//! destructors still takes its daemons (and, as `sheen-mount` unmounts on SIGTERM, its mounts)
//! along. Detached children (`cargo xtask cluster up`) start their own session with `setsid`
//! so they outlive the launcher and no terminal signal reaches them.

use std::fs::OpenOptions;
use std::io::{self, Write};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::{ClusterError, POLL_INTERVAL};

/// How long to wait for a process to disappear after SIGKILL.
const KILL_WAIT: Duration = Duration::from_secs(5);

/// How a child is tied to the launcher.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Dies with the launching process.
    Attached,
    /// Outlives it, in its own session.
    Detached,
}

type SpawnRequest = (Command, mpsc::Sender<io::Result<Child>>);

/// Starts `command` with stdin from /dev/null and stdout and stderr appended to `log`.
pub(crate) fn spawn(
    mut command: Command,
    mode: Mode,
    name: &str,
    log: &Path,
) -> Result<Child, ClusterError> {
    let mut log_file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(|e| ClusterError::io(format!("open log {}", log.display()), e))?;
    let header = format!(
        "=== sheen-cluster: starting {name} at unix time {}: {command:?}\n",
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs()
    );
    log_file
        .write_all(header.as_bytes())
        .map_err(|e| ClusterError::io(format!("write log {}", log.display()), e))?;
    let stdout = log_file
        .try_clone()
        .map_err(|e| ClusterError::io(format!("duplicate log {}", log.display()), e))?;
    command.stdin(Stdio::null()).stdout(stdout).stderr(log_file);
    if std::env::var_os("RUST_BACKTRACE").is_none() {
        command.env("RUST_BACKTRACE", "1");
    }
    let program = command.get_program().to_string_lossy().into_owned();
    let spawned = match mode {
        Mode::Attached => {
            let parent_pid = std::process::id();
            // SAFETY: only async-signal-safe calls (prctl, getppid, _exit) run between fork
            // and exec.
            unsafe {
                command.pre_exec(move || {
                    if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                        return Err(io::Error::last_os_error());
                    }
                    // The launcher may have died before prctl took effect.
                    if libc::getppid() as u32 != parent_pid {
                        libc::_exit(1);
                    }
                    Ok(())
                });
            }
            spawn_on_spawner_thread(command)
        }
        Mode::Detached => {
            // SAFETY: setsid is async-signal-safe.
            unsafe {
                command.pre_exec(|| {
                    if libc::setsid() == -1 {
                        return Err(io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
            command.spawn()
        }
    };
    spawned.map_err(|e| ClusterError::io(format!("start {name} ({program})"), e))
}

/// Forks on a thread that lives until the process exits (see the module docs).
fn spawn_on_spawner_thread(command: Command) -> io::Result<Child> {
    static SPAWNER: OnceLock<Option<mpsc::Sender<SpawnRequest>>> = OnceLock::new();
    let spawner = SPAWNER.get_or_init(|| {
        let (sender, receiver) = mpsc::channel::<SpawnRequest>();
        let started = thread::Builder::new()
            .name("sheen-cluster-spawner".to_owned())
            .spawn(move || {
                for (mut command, reply) in receiver {
                    // The requester may have given up; nothing to do then.
                    let _ = reply.send(command.spawn());
                }
            });
        started.ok().map(|_| sender)
    });
    let Some(spawner) = spawner else {
        return Err(io::Error::other(
            "the sheen-cluster spawner thread could not be started",
        ));
    };
    let (reply_sender, reply_receiver) = mpsc::channel();
    spawner
        .send((command, reply_sender))
        .map_err(|_| io::Error::other("the sheen-cluster spawner thread has stopped"))?;
    reply_receiver
        .recv()
        .map_err(|_| io::Error::other("the sheen-cluster spawner thread has stopped"))?
}

/// Waits up to `timeout` for `child` to exit.
pub(crate) fn wait_timeout(child: &mut Child, timeout: Duration) -> io::Result<Option<ExitStatus>> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        if Instant::now() >= deadline {
            return Ok(None);
        }
        thread::sleep(POLL_INTERVAL);
    }
}

/// Sends `signal` to a process.
pub(crate) fn send_signal(pid: u32, signal: libc::c_int) -> io::Result<()> {
    let pid = libc::pid_t::try_from(pid)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "pid out of range"))?;
    // SAFETY: kill has no memory-safety preconditions.
    if unsafe { libc::kill(pid, signal) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// SIGTERM, wait up to `timeout`, then SIGKILL: stops a child and reaps it.
pub(crate) fn terminate_child(
    child: &mut Child,
    name: &str,
    timeout: Duration,
) -> Result<ExitStatus, ClusterError> {
    let pid = child.id();
    let io_error = |e| ClusterError::io(format!("stop {name} (pid {pid})"), e);
    if let Some(status) = child.try_wait().map_err(io_error)? {
        return Ok(status);
    }
    // ESRCH cannot happen for an unreaped child; any other error falls through to SIGKILL.
    let _ = send_signal(pid, libc::SIGTERM);
    // A stopped process (SIGSTOP in a test) handles SIGTERM only once continued.
    let _ = send_signal(pid, libc::SIGCONT);
    if let Some(status) = wait_timeout(child, timeout).map_err(io_error)? {
        return Ok(status);
    }
    kill_child(child, name)
}

/// SIGKILL a child and reap it.
pub(crate) fn kill_child(child: &mut Child, name: &str) -> Result<ExitStatus, ClusterError> {
    let pid = child.id();
    let io_error = |e| ClusterError::io(format!("kill {name} (pid {pid})"), e);
    if let Some(status) = child.try_wait().map_err(io_error)? {
        return Ok(status);
    }
    child.kill().map_err(io_error)?;
    wait_timeout(child, KILL_WAIT)
        .map_err(io_error)?
        .ok_or_else(|| ClusterError::Unkillable {
            name: name.to_owned(),
            pid,
        })
}

/// Whether a process (not necessarily our child) exists and is not a zombie.
pub(crate) fn is_alive(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // `pid (comm) state ...`; comm may hold spaces and parentheses, so split at the last ')'.
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.trim_start().chars().next());
    !matches!(state, Some('Z' | 'X' | 'x') | None)
}

/// The arguments of a running process, from `/proc/PID/cmdline`.
pub(crate) fn cmdline(pid: u32) -> Option<Vec<String>> {
    let bytes = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let arguments: Vec<String> = bytes
        .split(|&b| b == 0)
        .filter(|argument| !argument.is_empty())
        .map(|argument| String::from_utf8_lossy(argument).into_owned())
        .collect();
    (!arguments.is_empty()).then_some(arguments)
}

/// Whether `pid` still runs `binary` with `expected_argument` among its arguments.
pub(crate) fn runs(pid: u32, binary: &str, expected_argument: &str) -> bool {
    let Some(arguments) = cmdline(pid) else {
        return false;
    };
    let program = Path::new(&arguments[0])
        .file_name()
        .and_then(|name| name.to_str());
    program == Some(binary)
        && arguments[1..]
            .iter()
            .any(|argument| argument == expected_argument)
}

/// SIGTERM, wait, SIGKILL for a process that is not our child (a detached cluster's).
pub(crate) fn terminate_pid(pid: u32, name: &str, timeout: Duration) -> Result<(), ClusterError> {
    if !is_alive(pid) {
        return Ok(());
    }
    let _ = send_signal(pid, libc::SIGTERM);
    let _ = send_signal(pid, libc::SIGCONT);
    if wait_gone(pid, timeout) {
        return Ok(());
    }
    let _ = send_signal(pid, libc::SIGKILL);
    if wait_gone(pid, KILL_WAIT) {
        return Ok(());
    }
    Err(ClusterError::Unkillable {
        name: name.to_owned(),
        pid,
    })
}

/// Waits up to `timeout` for a process to be gone (or a zombie).
pub(crate) fn wait_gone(pid: u32, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while is_alive(pid) {
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(POLL_INTERVAL);
    }
    true
}

/// Runs a short command (umount and friends) with a timeout; returns an error message on
/// failure.
pub(crate) fn run_bounded(mut command: Command, timeout: Duration) -> Result<(), String> {
    let text = format!("{command:?}");
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{text}: {e}"))?;
    match wait_timeout(&mut child, timeout) {
        Ok(Some(status)) if status.success() => Ok(()),
        Ok(Some(status)) => {
            let mut stderr = String::new();
            if let Some(mut pipe) = child.stderr.take() {
                let _ = io::Read::read_to_string(&mut pipe, &mut stderr);
            }
            Err(format!("{text} failed ({status}): {}", stderr.trim()))
        }
        Ok(None) => {
            let _ = child.kill();
            let _ = child.wait();
            Err(format!("{text} did not finish within {timeout:?}"))
        }
        Err(e) => Err(format!("{text}: {e}")),
    }
}

/// The last `n_lines` lines of a log file, for error messages.
pub(crate) fn log_tail(path: &Path, n_lines: usize) -> String {
    match std::fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            // A daemon that fails prints its error and then a backtrace (RUST_BACKTRACE=1):
            // the frames would push the error out of the tail, so they are left out.
            let lines: Vec<&str> = text.lines().filter(|l| !is_backtrace_line(l)).collect();
            lines[lines.len().saturating_sub(n_lines)..].join("\n")
        }
        Err(error) => format!("(cannot read log: {error})"),
    }
}

/// A frame of a Rust backtrace (`  12: name` or `             at path:line:col`).
fn is_backtrace_line(line: &str) -> bool {
    let trimmed = line.trim_start();
    if trimmed.len() == line.len() {
        return false;
    }
    if trimmed.starts_with("at ") {
        return true;
    }
    trimmed
        .split_once(": ")
        .is_some_and(|(n, _)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_tail_leaves_backtrace_frames_out() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("oss.log");
        std::fs::write(
            &log,
            "2026-11-25T00:00:00Z  INFO sheen_oss: starting\n\
             Error: cannot listen on 127.0.0.1:7001: Address already in use\n\
             \n\
             Stack backtrace:\n\
             \x20  0: anyhow::error::<impl anyhow::Error>::msg\n\
             \x20            at /src/anyhow/error.rs:83:36\n\
             \x20 11: sheen_oss::main\n\
             \x20            at oss/src/main.rs:62:8\n",
        )
        .unwrap();
        let tail = log_tail(&log, 3);
        assert_eq!(
            tail,
            "Error: cannot listen on 127.0.0.1:7001: Address already in use\n\nStack backtrace:"
        );
    }

    #[test]
    fn own_process_is_alive_and_named() {
        let pid = std::process::id();
        assert!(is_alive(pid));
        let arguments = cmdline(pid).unwrap();
        assert!(!arguments.is_empty());
    }

    #[test]
    fn absent_process_is_not_alive() {
        // Above the kernel's pid_max limit (4194304), so never a real process.
        assert!(!is_alive(4_194_305));
        assert!(cmdline(4_194_305).is_none());
        assert!(!runs(4_194_305, "sheen-mgs", "x"));
    }

    #[test]
    fn spawned_child_is_logged_and_terminated() {
        let tmp = tempfile::tempdir().unwrap();
        let log = tmp.path().join("sleep.log");
        let mut command = Command::new("sleep");
        command.arg("1000");
        let mut child = spawn(command, Mode::Attached, "sleeper", &log).unwrap();
        assert!(is_alive(child.id()));
        // Right after fork the child may not have exec'd yet: wait (bounded) for `sleep`.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while !runs(child.id(), "sleep", "1000") && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(runs(child.id(), "sleep", "1000"));
        assert!(!runs(child.id(), "sleep", "999"));
        let status = terminate_child(&mut child, "sleeper", Duration::from_secs(5)).unwrap();
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(libc::SIGTERM)
        );
        let text = std::fs::read_to_string(&log).unwrap();
        assert!(
            text.starts_with("=== sheen-cluster: starting sleeper"),
            "{text}"
        );
    }

    #[test]
    fn stopped_child_is_terminated_without_sigkill() {
        let tmp = tempfile::tempdir().unwrap();
        let mut command = Command::new("sleep");
        command.arg("1000");
        let log = tmp.path().join("sleep.log");
        let mut child = spawn(command, Mode::Attached, "sleeper", &log).unwrap();
        send_signal(child.id(), libc::SIGSTOP).unwrap();
        let started = Instant::now();
        let status = terminate_child(&mut child, "sleeper", Duration::from_secs(5)).unwrap();
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(libc::SIGTERM),
            "a stopped child must be continued so that SIGTERM ends it"
        );
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn bounded_command_reports_failure_and_timeout() {
        assert_eq!(
            run_bounded(Command::new("true"), Duration::from_secs(5)),
            Ok(())
        );
        let error = run_bounded(Command::new("false"), Duration::from_secs(5)).unwrap_err();
        assert!(error.contains("failed"), "{error}");
        let mut sleeper = Command::new("sleep");
        sleeper.arg("1000");
        let error = run_bounded(sleeper, Duration::from_millis(100)).unwrap_err();
        assert!(error.contains("did not finish"), "{error}");
    }

    #[test]
    fn log_tail_keeps_last_lines() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("x.log");
        std::fs::write(&path, "a\nb\nc\n").unwrap();
        assert_eq!(log_tail(&path, 2), "b\nc");
        assert_eq!(log_tail(&path, 10), "a\nb\nc");
        assert!(log_tail(&tmp.path().join("none"), 2).starts_with("(cannot read log"));
    }
}
