//! Running as a mount helper: without `-f`, `sheen-mount` starts itself again with `-f` as a
//! detached process (its own session, stdio to /dev/null or the `log=` file) and returns
//! once the mount shows in /proc/self/mountinfo, so that `mount -t fuse.sheen` and scripts
//! can use it like any mount command.

use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
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

/// How many FUSE mounts /proc/self/mountinfo lists on `mountpoint`.
pub fn count_fuse_mounts(mountinfo: &str, mountpoint: &Path) -> usize {
    mountinfo
        .lines()
        .filter_map(parse_mountinfo_line)
        .filter(|(point, fstype)| point == mountpoint && fstype.starts_with("fuse"))
        .count()
}

/// The mount point and filesystem type of one mountinfo line.
fn parse_mountinfo_line(line: &str) -> Option<(PathBuf, String)> {
    let (left, right) = line.split_once(" - ")?;
    let point = left.split(' ').nth(4)?;
    let fstype = right.split(' ').next()?;
    Some((PathBuf::from(unescape(point)), fstype.to_string()))
}

/// Undoes the kernel's octal escapes (`\040` for a space) in mountinfo fields.
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match (bytes[i], octal) {
            (b'\\', Some(d)) => {
                let v = (u32::from(d[0] - b'0') << 6)
                    | (u32::from(d[1] - b'0') << 3)
                    | u32::from(d[2] - b'0');
                out.push(u8::try_from(v).unwrap_or(b'?'));
                i += 4;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
98 22 0:50 / /mnt/sheen rw,nosuid shared:60 - fuse.sheen 127.0.0.1:7000@tcp:/sheen rw,user_id=0
99 22 0:51 / /mnt/with\\040space rw,relatime - fuse.sheen x@tcp:/s rw
100 22 0:52 / /mnt/other rw,relatime - tmpfs tmpfs rw
";

    #[test]
    fn finds_fuse_mounts() {
        assert_eq!(count_fuse_mounts(SAMPLE, Path::new("/mnt/sheen")), 1);
        assert_eq!(count_fuse_mounts(SAMPLE, Path::new("/mnt/with space")), 1);
        assert_eq!(count_fuse_mounts(SAMPLE, Path::new("/mnt/other")), 0);
        assert_eq!(count_fuse_mounts(SAMPLE, Path::new("/mnt")), 0);
        assert_eq!(count_fuse_mounts("garbage\n\n - \n", Path::new("/")), 0);
    }

    #[test]
    fn unescapes_octal() {
        assert_eq!(unescape("a\\040b\\134c"), "a b\\c");
        assert_eq!(unescape("trailing\\04"), "trailing\\04");
        assert_eq!(unescape("\\999"), "\\999");
    }
}
