//! One daemon per data directory: an exclusive `flock` on `DIR/lock` holding the owner's pid.
//!
//! `flock` locks belong to the open file, so the kernel releases them when the daemon exits,
//! however it exits; a stale `lock` file left behind never blocks a restart.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use crate::DaemonError;

/// Name of the lock file inside the data directory.
const LOCK_FILE_NAME: &str = "lock";

/// Exclusive ownership of a data directory, held until dropped.
#[derive(Debug)]
pub struct DataDirLock {
    dir: PathBuf,
    /// Kept open: closing it releases the lock.
    _file: File,
}

impl DataDirLock {
    /// Creates `dir` if needed, locks `dir/lock` exclusively and writes our pid in it.
    ///
    /// Fails with [`DaemonError::DataDirLocked`] at once, without waiting, when another
    /// process holds the lock.
    pub fn acquire(dir: &Path) -> Result<DataDirLock, DaemonError> {
        let data_dir_error = |path: &Path, what, source| DaemonError::DataDir {
            path: path.to_owned(),
            what,
            source,
        };
        fs::create_dir_all(dir).map_err(|e| data_dir_error(dir, "create directory", e))?;
        let path = dir.join(LOCK_FILE_NAME);
        // Not truncated on open: the holder's pid must stay readable until we own the lock.
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| data_dir_error(&path, "open lock file", e))?;
        // SAFETY: flock on a descriptor we own and keep open for the call.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            let error = io::Error::last_os_error();
            if error.raw_os_error() == Some(libc::EWOULDBLOCK) {
                return Err(DaemonError::DataDirLocked {
                    dir: dir.to_owned(),
                    holder_pid: read_pid(&mut file),
                });
            }
            return Err(data_dir_error(&path, "lock", error));
        }
        let pid_line = format!("{}\n", std::process::id());
        file.set_len(0)
            .and_then(|()| file.seek(SeekFrom::Start(0)))
            .and_then(|_| file.write_all(pid_line.as_bytes()))
            .and_then(|()| file.sync_data())
            .map_err(|e| data_dir_error(&path, "write pid", e))?;
        Ok(DataDirLock {
            dir: dir.to_owned(),
            _file: file,
        })
    }

    /// The locked data directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

fn read_pid(file: &mut File) -> Option<u32> {
    let mut text = String::new();
    file.read_to_string(&mut text).ok()?;
    text.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_dir_and_writes_pid() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("a/b");
        let lock = DataDirLock::acquire(&dir).unwrap();
        assert_eq!(lock.dir(), dir);
        let text = fs::read_to_string(dir.join(LOCK_FILE_NAME)).unwrap();
        assert_eq!(text, format!("{}\n", std::process::id()));
    }

    #[test]
    fn second_holder_fails_until_first_drops() {
        let tmp = tempfile::tempdir().unwrap();
        let first = DataDirLock::acquire(tmp.path()).unwrap();
        let error = DataDirLock::acquire(tmp.path()).unwrap_err();
        match &error {
            DaemonError::DataDirLocked { dir, holder_pid } => {
                assert_eq!(dir, tmp.path());
                assert_eq!(*holder_pid, Some(std::process::id()));
            }
            other => panic!("expected DataDirLocked, got {other:?}"),
        }
        assert!(
            error.to_string().contains("in use by another daemon"),
            "{error}"
        );
        drop(first);
        DataDirLock::acquire(tmp.path()).unwrap();
    }

    #[test]
    fn stale_lock_file_does_not_block() {
        let tmp = tempfile::tempdir().unwrap();
        fs::write(tmp.path().join(LOCK_FILE_NAME), "999999999\n").unwrap();
        DataDirLock::acquire(tmp.path()).unwrap();
        let text = fs::read_to_string(tmp.path().join(LOCK_FILE_NAME)).unwrap();
        assert_eq!(text, format!("{}\n", std::process::id()));
    }
}
