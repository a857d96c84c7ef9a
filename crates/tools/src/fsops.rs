//! The few local filesystem calls the tools make, behind a trait so the command logic can be
//! tested against an in-memory fake.
//!
//! Layouts travel through the mount as the xattr [`LOV_XATTR`], as on Lustre: a Sheen
//! [`Layout`](sheen_wire::msg::Layout) encoded with `sheen_wire::encode`.

use std::ffi::{CString, OsString};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use sheen_wire::limits::XATTR_VALUE_MAX_BYTES;

/// The xattr a file's layout (or a directory's default layout) is read and written through.
pub const LOV_XATTR: &str = "lustre.lov";
/// The xattr holding a file's FID, when the mount exposes it.
pub const FID_XATTR: &str = "trusted.fid";

/// What kind of inode a path names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileKind {
    Dir,
    Regular,
    /// Symlinks (when not followed), devices, FIFOs, sockets.
    Other,
}

pub trait FsOps {
    /// The kind of `path` (following symlinks when `follow`), `None` when it does not exist.
    fn kind(&self, path: &Path, follow: bool) -> io::Result<Option<FileKind>>;
    /// An absolute path with symlinks resolved.
    fn canonicalize(&self, path: &Path) -> io::Result<PathBuf>;
    /// The value of xattr `name`, `None` when the inode has no such xattr (ENODATA).
    fn get_xattr(&self, path: &Path, name: &str) -> io::Result<Option<Vec<u8>>>;
    fn set_xattr(&self, path: &Path, name: &str, value: &[u8]) -> io::Result<()>;
    /// Removes xattr `name`; `Ok(false)` when there was none.
    fn remove_xattr(&self, path: &Path, name: &str) -> io::Result<bool>;
    /// Creates `path` as a new regular file (mode 0666 less the umask, failing if it
    /// exists) and sets xattr `name` on it through the open descriptor. When setting the
    /// xattr fails the file is removed again, so a failed `setstripe` leaves nothing behind.
    fn create_with_xattr(&self, path: &Path, name: &str, value: &[u8]) -> io::Result<()>;
    /// The names in a directory, in the order the filesystem returns them.
    fn read_dir(&self, path: &Path) -> io::Result<Vec<OsString>>;
}

/// The real filesystem, through libc.
#[derive(Clone, Copy, Debug, Default)]
pub struct LocalFs;

fn c_path(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"))
}

fn c_name(name: &str) -> io::Result<CString> {
    CString::new(name)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "xattr name contains NUL"))
}

/// Converts a `-1` return into the errno it set.
fn check(rc: libc::ssize_t) -> io::Result<usize> {
    usize::try_from(rc).map_err(|_| io::Error::last_os_error())
}

impl FsOps for LocalFs {
    fn kind(&self, path: &Path, follow: bool) -> io::Result<Option<FileKind>> {
        let meta = if follow {
            std::fs::metadata(path)
        } else {
            std::fs::symlink_metadata(path)
        };
        match meta {
            Ok(m) => {
                let t = m.file_type();
                Ok(Some(if t.is_dir() {
                    FileKind::Dir
                } else if t.is_file() {
                    FileKind::Regular
                } else {
                    FileKind::Other
                }))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn canonicalize(&self, path: &Path) -> io::Result<PathBuf> {
        std::fs::canonicalize(path)
    }

    fn get_xattr(&self, path: &Path, name: &str) -> io::Result<Option<Vec<u8>>> {
        let (cpath, cname) = (c_path(path)?, c_name(name)?);
        // The value may grow between the size query and the read; retry a few times.
        for _ in 0..4 {
            // SAFETY: both strings are NUL-terminated; a null buffer of size 0 asks for the size.
            let size =
                unsafe { libc::getxattr(cpath.as_ptr(), cname.as_ptr(), std::ptr::null_mut(), 0) };
            let size = match check(size) {
                Ok(size) => size.min(XATTR_VALUE_MAX_BYTES),
                Err(e) if e.raw_os_error() == Some(libc::ENODATA) => return Ok(None),
                Err(e) => return Err(e),
            };
            let mut buf = vec![0u8; size];
            // SAFETY: `buf` is valid for writes of `buf.len()` bytes.
            let got = unsafe {
                libc::getxattr(
                    cpath.as_ptr(),
                    cname.as_ptr(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                )
            };
            match check(got) {
                Ok(n) => {
                    buf.truncate(n);
                    return Ok(Some(buf));
                }
                Err(e) if e.raw_os_error() == Some(libc::ERANGE) => continue,
                Err(e) if e.raw_os_error() == Some(libc::ENODATA) => return Ok(None),
                Err(e) => return Err(e),
            }
        }
        Err(io::Error::from_raw_os_error(libc::ERANGE))
    }

    fn set_xattr(&self, path: &Path, name: &str, value: &[u8]) -> io::Result<()> {
        let (cpath, cname) = (c_path(path)?, c_name(name)?);
        // SAFETY: NUL-terminated strings; `value` is valid for reads of its length.
        let rc = unsafe {
            libc::setxattr(
                cpath.as_ptr(),
                cname.as_ptr(),
                value.as_ptr().cast(),
                value.len(),
                0,
            )
        };
        if rc == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }

    fn remove_xattr(&self, path: &Path, name: &str) -> io::Result<bool> {
        let (cpath, cname) = (c_path(path)?, c_name(name)?);
        // SAFETY: NUL-terminated strings.
        let rc = unsafe { libc::removexattr(cpath.as_ptr(), cname.as_ptr()) };
        if rc == 0 {
            return Ok(true);
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::ENODATA) {
            Ok(false)
        } else {
            Err(e)
        }
    }

    fn create_with_xattr(&self, path: &Path, name: &str, value: &[u8]) -> io::Result<()> {
        use std::os::fd::AsRawFd;
        use std::os::unix::fs::OpenOptionsExt;

        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o666)
            .open(path)?;
        let cname = c_name(name)?;
        // SAFETY: the descriptor is open for the duration of the call; NUL-terminated name;
        // `value` is valid for reads of its length.
        let rc = unsafe {
            libc::fsetxattr(
                file.as_raw_fd(),
                cname.as_ptr(),
                value.as_ptr().cast(),
                value.len(),
                0,
            )
        };
        if rc == 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        drop(file);
        // We created the file (O_EXCL), so removing it cannot hurt anyone else's data.
        let _ignored = std::fs::remove_file(path);
        Err(e)
    }

    fn read_dir(&self, path: &Path) -> io::Result<Vec<OsString>> {
        std::fs::read_dir(path)?
            .map(|entry| entry.map(|e| e.file_name()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_and_listing() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, b"x").unwrap();
        let link = dir.path().join("l");
        std::os::unix::fs::symlink(&file, &link).unwrap();
        let fs = LocalFs;
        assert_eq!(fs.kind(dir.path(), true).unwrap(), Some(FileKind::Dir));
        assert_eq!(fs.kind(&file, true).unwrap(), Some(FileKind::Regular));
        assert_eq!(fs.kind(&link, true).unwrap(), Some(FileKind::Regular));
        assert_eq!(fs.kind(&link, false).unwrap(), Some(FileKind::Other));
        assert_eq!(fs.kind(&dir.path().join("none"), true).unwrap(), None);
        let mut names = fs.read_dir(dir.path()).unwrap();
        names.sort();
        assert_eq!(names, [OsString::from("f"), OsString::from("l")]);
    }

    #[test]
    fn lustre_xattrs_are_refused_by_local_filesystems() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, b"").unwrap();
        // A local filesystem has no `lustre.` namespace: the error must say "not supported"
        // (or "no data"), never succeed.
        match LocalFs.get_xattr(&file, LOV_XATTR) {
            Ok(None) => {}
            Ok(Some(v)) => panic!("unexpected value {v:?}"),
            Err(e) => assert!(crate::error::is_not_supported(&e), "{e}"),
        }
        let err = LocalFs.create_with_xattr(&dir.path().join("new"), LOV_XATTR, b"x");
        assert!(err.is_err());
        assert!(
            !dir.path().join("new").exists(),
            "a failed create must leave nothing behind"
        );
        let err = LocalFs
            .create_with_xattr(&file, LOV_XATTR, b"x")
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
    }
}
