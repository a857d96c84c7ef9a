//! Running as a mount helper: without `-f`, `sheen-mount` starts itself again with `-f` as a
//! detached process (its own session, stdio to /dev/null or the `log=` file) and returns
//! once the mount shows in /proc/self/mountinfo, so that `mount -t fuse.sheen` and scripts
//! can use it like any mount command.

use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::{bail, Context};

use crate::limits::{MOUNT_POLL_INTERVAL, MOUNT_WAIT};

/// Most of the background process's output kept to explain a failed mount.
const CAPTURE_MAX_BYTES: usize = 64 << 10;

/// Starts the foreground process detached and waits (bounded) for its mount.
pub fn spawn_and_wait(mountpoint: &Path, log: Option<&Path>) -> anyhow::Result<()> {
    let mountpoint = mountpoint
        .canonicalize()
        .with_context(|| format!("mountpoint {}", mountpoint.display()))?;
    if !mountpoint.is_dir() {
        bail!("mountpoint {} is not a directory", mountpoint.display());
    }
    let before = count_fuse_mounts(&read_mountinfo()?, &mountpoint);
    let exe = std::env::current_exe().context("finding our own executable")?;
    // Without a log file, the child's stderr comes to us until it mounts, so that a failure
    // can be shown; once we are gone its writes fail quietly (EPIPE).
    let stderr = match log {
        Some(path) => Stdio::from(
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .with_context(|| format!("opening log file {}", path.display()))?,
        ),
        None => Stdio::piped(),
    };
    let mut command = Command::new(exe);
    command
        .args(std::env::args_os().skip(1))
        .arg("-f")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr);
    // SAFETY: setsid is async-signal-safe and touches no memory of the parent; it detaches
    // the child from our session and terminal so that it outlives us.
    unsafe {
        command.pre_exec(|| {
            if libc::setsid() < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = command
        .spawn()
        .context("starting the background sheen-mount")?;
    let captured = Arc::new(Mutex::new(Vec::new()));
    if let Some(mut pipe) = child.stderr.take() {
        let captured = Arc::clone(&captured);
        // Reads until the child exits; dies with us when the mount succeeds first.
        let _ = std::thread::Builder::new()
            .name("child-stderr".into())
            .spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n @ 1..) = pipe.read(&mut buf) {
                    if let Ok(mut c) = captured.lock() {
                        if c.len() < CAPTURE_MAX_BYTES {
                            c.extend_from_slice(buf.get(..n).unwrap_or_default());
                        }
                    }
                }
            });
    }
    let why = |captured: &Mutex<Vec<u8>>| match log {
        Some(p) => format!("see {}", p.display()),
        None => {
            let text = captured
                .lock()
                .map(|c| String::from_utf8_lossy(&c).into_owned());
            match text {
                Ok(t) if !t.trim().is_empty() => format!("its output:\n{}", t.trim_end()),
                _ => "run with -f, or -o log=PATH, to see why".to_string(),
            }
        }
    };
    let deadline = Instant::now() + MOUNT_WAIT;
    loop {
        if count_fuse_mounts(&read_mountinfo()?, &mountpoint) > before {
            return Ok(());
        }
        if let Some(status) = child
            .try_wait()
            .context("waiting for the background process")?
        {
            // Let the reader drain what the child wrote last.
            std::thread::sleep(MOUNT_POLL_INTERVAL);
            bail!(
                "background sheen-mount failed ({status}) before mounting {}; {}",
                mountpoint.display(),
                why(&captured)
            );
        }
        if Instant::now() > deadline {
            // Our own child, stopped by its pid.
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "{} did not show up as mounted within {} s; {}",
                mountpoint.display(),
                MOUNT_WAIT.as_secs(),
                why(&captured)
            );
        }
        std::thread::sleep(MOUNT_POLL_INTERVAL);
    }
}

fn read_mountinfo() -> anyhow::Result<String> {
    let mut text = String::new();
    io::Read::read_to_string(
        &mut File::open("/proc/self/mountinfo").context("opening /proc/self/mountinfo")?,
        &mut text,
    )
    .context("reading /proc/self/mountinfo")?;
    Ok(text)
}

pub use sheen_client::mounts::count_fuse_mounts;
