//! Thin libc wrappers that return the precise errno, and the fork-and-drop-privileges helper
//! the unprivileged cases run through.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// A call's result: the value, or the errno it failed with.
pub type Sys<T> = Result<T, i32>;

fn cs(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).unwrap()
}

fn cstr(s: &str) -> CString {
    CString::new(s).unwrap()
}

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

fn check(ret: libc::c_int) -> Sys<libc::c_int> {
    if ret < 0 {
        Err(errno())
    } else {
        Ok(ret)
    }
}

fn check_size(ret: libc::ssize_t) -> Sys<usize> {
    usize::try_from(ret).map_err(|_| errno())
}

/// Asserts that `r` failed with `want`, naming the case and both errnos on failure.
#[track_caller]
pub fn fails<T: std::fmt::Debug>(r: Sys<T>, want: i32, what: &str) {
    match r {
        Err(e) if e == want => {}
        Err(e) => panic!(
            "{what}: errno {} ({e}), want {} ({want})",
            name(e),
            name(want)
        ),
        Ok(v) => panic!("{what}: succeeded with {v:?}, want {} ({want})", name(want)),
    }
}

/// Unwraps `r`, naming the case and the errno on failure.
#[track_caller]
pub fn ok<T>(r: Sys<T>, what: &str) -> T {
    match r {
        Ok(v) => v,
        Err(e) => panic!("{what}: failed with {} ({e})", name(e)),
    }
}

/// The symbolic name of the errnos the suite expects.
pub fn name(e: i32) -> &'static str {
    match e {
        libc::EPERM => "EPERM",
        libc::ENOENT => "ENOENT",
        libc::EBADF => "EBADF",
        libc::EACCES => "EACCES",
        libc::EEXIST => "EEXIST",
        libc::EXDEV => "EXDEV",
        libc::ENOTDIR => "ENOTDIR",
        libc::EISDIR => "EISDIR",
        libc::EINVAL => "EINVAL",
        libc::EFBIG => "EFBIG",
        libc::ENOSPC => "ENOSPC",
        libc::EROFS => "EROFS",
        libc::EMLINK => "EMLINK",
        libc::ERANGE => "ERANGE",
        libc::ENAMETOOLONG => "ENAMETOOLONG",
        libc::ENOTEMPTY => "ENOTEMPTY",
        libc::ELOOP => "ELOOP",
        libc::ENODATA => "ENODATA",
        libc::EOPNOTSUPP => "EOPNOTSUPP",
        libc::E2BIG => "E2BIG",
        libc::ENOSYS => "ENOSYS",
        libc::EBUSY => "EBUSY",
        libc::ENXIO => "ENXIO",
        libc::ETXTBSY => "ETXTBSY",
        CHILD_CHECK_FAILED => "child check failed",
        _ => "?",
    }
}

/// What a forked child reports when a check other than an errno failed in it.
pub const CHILD_CHECK_FAILED: i32 = 255;

/// An open file descriptor, closed on drop.
#[derive(Debug)]
pub struct Fd(pub libc::c_int);

impl Drop for Fd {
    fn drop(&mut self) {
        // SAFETY: we own the descriptor.
        unsafe { libc::close(self.0) };
    }
}

impl Fd {
    /// close(2), with its result (dropping an `Fd` closes it and ignores the result).
    pub fn close(self) -> Sys<()> {
        let fd = self.0;
        std::mem::forget(self);
        // SAFETY: we own the descriptor, and `forget` keeps Drop from closing it again.
        check(unsafe { libc::close(fd) }).map(drop)
    }

    pub fn write(&self, data: &[u8]) -> Sys<usize> {
        // SAFETY: valid buffer of data.len() bytes.
        check_size(unsafe { libc::write(self.0, data.as_ptr().cast(), data.len()) })
    }

    pub fn pwrite(&self, data: &[u8], off: i64) -> Sys<usize> {
        // SAFETY: valid buffer of data.len() bytes.
        check_size(unsafe { libc::pwrite(self.0, data.as_ptr().cast(), data.len(), off) })
    }

    pub fn read(&self, len: usize) -> Sys<Vec<u8>> {
        let mut buf = vec![0u8; len];
        // SAFETY: valid buffer of len bytes.
        let n = check_size(unsafe { libc::read(self.0, buf.as_mut_ptr().cast(), len) })?;
        buf.truncate(n);
        Ok(buf)
    }

    pub fn pread(&self, len: usize, off: i64) -> Sys<Vec<u8>> {
        let mut buf = vec![0u8; len];
        // SAFETY: valid buffer of len bytes.
        let n = check_size(unsafe { libc::pread(self.0, buf.as_mut_ptr().cast(), len, off) })?;
        buf.truncate(n);
        Ok(buf)
    }

    /// pread into `buf` (which O_DIRECT wants aligned), returning how many bytes came.
    pub fn pread_into(&self, buf: &mut [u8], off: i64) -> Sys<usize> {
        // SAFETY: valid buffer of buf.len() bytes.
        check_size(unsafe { libc::pread(self.0, buf.as_mut_ptr().cast(), buf.len(), off) })
    }

    pub fn ftruncate(&self, len: i64) -> Sys<()> {
        // SAFETY: plain syscall.
        check(unsafe { libc::ftruncate(self.0, len) }).map(drop)
    }

    pub fn fsync(&self) -> Sys<()> {
        // SAFETY: plain syscall.
        check(unsafe { libc::fsync(self.0) }).map(drop)
    }

    pub fn fdatasync(&self) -> Sys<()> {
        // SAFETY: plain syscall.
        check(unsafe { libc::fdatasync(self.0) }).map(drop)
    }

    pub fn fstat(&self) -> Sys<libc::stat> {
        // SAFETY: an all-zero stat is valid; fstat fills it.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: valid out pointer.
        check(unsafe { libc::fstat(self.0, &mut st) })?;
        Ok(st)
    }

    pub fn fallocate(&self, mode: i32, off: i64, len: i64) -> Sys<()> {
        // SAFETY: plain syscall.
        check(unsafe { libc::fallocate(self.0, mode, off, len) }).map(drop)
    }

    pub fn lseek(&self, off: i64, whence: i32) -> Sys<i64> {
        // SAFETY: plain syscall.
        let r = unsafe { libc::lseek(self.0, off, whence) };
        if r < 0 {
            Err(errno())
        } else {
            Ok(r)
        }
    }
}

pub fn open(p: &Path, flags: i32, mode: u32) -> Sys<Fd> {
    let c = cs(p);
    // SAFETY: valid C string.
    check(unsafe { libc::open(c.as_ptr(), flags | libc::O_CLOEXEC, mode) }).map(Fd)
}

pub fn creat(p: &Path, mode: u32) -> Sys<Fd> {
    open(p, libc::O_CREAT | libc::O_EXCL | libc::O_RDWR, mode)
}

pub fn mkdir(p: &Path, mode: u32) -> Sys<()> {
    let c = cs(p);
    // SAFETY: valid C string.
    check(unsafe { libc::mkdir(c.as_ptr(), mode) }).map(drop)
}

pub fn rmdir(p: &Path) -> Sys<()> {
    let c = cs(p);
    // SAFETY: valid C string.
    check(unsafe { libc::rmdir(c.as_ptr()) }).map(drop)
}

pub fn unlink(p: &Path) -> Sys<()> {
    let c = cs(p);
    // SAFETY: valid C string.
    check(unsafe { libc::unlink(c.as_ptr()) }).map(drop)
}

pub fn rename(a: &Path, b: &Path) -> Sys<()> {
    let (a, b) = (cs(a), cs(b));
    // SAFETY: valid C strings.
    check(unsafe { libc::rename(a.as_ptr(), b.as_ptr()) }).map(drop)
}

/// renameat2 with flags (RENAME_NOREPLACE, RENAME_EXCHANGE).
pub fn rename2(a: &Path, b: &Path, flags: u32) -> Sys<()> {
    let (a, b) = (cs(a), cs(b));
    // SAFETY: valid C strings.
    let r = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            a.as_ptr(),
            libc::AT_FDCWD,
            b.as_ptr(),
            flags,
        )
    };
    check(r).map(drop)
}

pub fn link(a: &Path, b: &Path) -> Sys<()> {
    let (a, b) = (cs(a), cs(b));
    // SAFETY: valid C strings.
    check(unsafe { libc::link(a.as_ptr(), b.as_ptr()) }).map(drop)
}

pub fn symlink(target: &[u8], p: &Path) -> Sys<()> {
    let (t, c) = (CString::new(target).unwrap(), cs(p));
    // SAFETY: valid C strings.
    check(unsafe { libc::symlink(t.as_ptr(), c.as_ptr()) }).map(drop)
}

pub fn readlink(p: &Path) -> Sys<Vec<u8>> {
    let c = cs(p);
    let mut buf = vec![0u8; 8192];
    // SAFETY: valid C string and buffer.
    let n = check_size(unsafe { libc::readlink(c.as_ptr(), buf.as_mut_ptr().cast(), 8192) })?;
    buf.truncate(n);
    Ok(buf)
}

pub fn chmod(p: &Path, mode: u32) -> Sys<()> {
    let c = cs(p);
    // SAFETY: valid C string.
    check(unsafe { libc::chmod(c.as_ptr(), mode) }).map(drop)
}

/// chown; `u32::MAX` leaves the id unchanged.
pub fn chown(p: &Path, uid: u32, gid: u32) -> Sys<()> {
    let c = cs(p);
    // SAFETY: valid C string.
    check(unsafe { libc::chown(c.as_ptr(), uid, gid) }).map(drop)
}

pub fn lchown(p: &Path, uid: u32, gid: u32) -> Sys<()> {
    let c = cs(p);
    // SAFETY: valid C string.
    check(unsafe { libc::lchown(c.as_ptr(), uid, gid) }).map(drop)
}

pub fn truncate(p: &Path, len: i64) -> Sys<()> {
    let c = cs(p);
    // SAFETY: valid C string.
    check(unsafe { libc::truncate(c.as_ptr(), len) }).map(drop)
}

pub fn access(p: &Path, mode: i32) -> Sys<()> {
    let c = cs(p);
    // SAFETY: valid C string.
    check(unsafe { libc::access(c.as_ptr(), mode) }).map(drop)
}

pub fn stat(p: &Path) -> Sys<libc::stat> {
    let c = cs(p);
    // SAFETY: an all-zero stat is valid; stat fills it.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: valid C string and out pointer.
    check(unsafe { libc::stat(c.as_ptr(), &mut st) })?;
    Ok(st)
}

pub fn lstat(p: &Path) -> Sys<libc::stat> {
    let c = cs(p);
    // SAFETY: an all-zero stat is valid; lstat fills it.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: valid C string and out pointer.
    check(unsafe { libc::lstat(c.as_ptr(), &mut st) })?;
    Ok(st)
}

/// utimensat on `p` (following symlinks) with (atime, mtime) as (sec, nsec) pairs; nsec may be
/// `libc::UTIME_NOW` or `libc::UTIME_OMIT`. `None` for both is a NULL times pointer.
pub fn utimens(p: &Path, times: Option<[(i64, i64); 2]>) -> Sys<()> {
    let c = cs(p);
    let ts = times.map(|t| {
        t.map(|(s, n)| libc::timespec {
            tv_sec: s,
            tv_nsec: n,
        })
    });
    let ptr = ts.as_ref().map_or(std::ptr::null(), |t| t.as_ptr());
    // SAFETY: valid C string; ptr is NULL or two timespecs.
    check(unsafe { libc::utimensat(libc::AT_FDCWD, c.as_ptr(), ptr, 0) }).map(drop)
}

pub fn setxattr(p: &Path, name: &str, value: &[u8], flags: i32) -> Sys<()> {
    let (c, n) = (cs(p), cstr(name));
    // SAFETY: valid C strings and buffer.
    let r = unsafe {
        libc::setxattr(
            c.as_ptr(),
            n.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            flags,
        )
    };
    check(r).map(drop)
}

pub fn lsetxattr(p: &Path, name: &str, value: &[u8], flags: i32) -> Sys<()> {
    let (c, n) = (cs(p), cstr(name));
    // SAFETY: valid C strings and buffer.
    let r = unsafe {
        libc::lsetxattr(
            c.as_ptr(),
            n.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            flags,
        )
    };
    check(r).map(drop)
}

/// getxattr into a buffer of `size` bytes (0 asks for the size, returned as that many zeros).
pub fn getxattr_sized(p: &Path, name: &str, size: usize) -> Sys<Vec<u8>> {
    let (c, n) = (cs(p), cstr(name));
    let mut buf = vec![0u8; size];
    // SAFETY: valid C strings and buffer of `size` bytes (NULL-free when size is 0).
    let r = unsafe { libc::getxattr(c.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), size) };
    let len = check_size(r)?;
    buf.resize(len, 0);
    Ok(buf)
}

pub fn getxattr(p: &Path, name: &str) -> Sys<Vec<u8>> {
    getxattr_sized(p, name, 70_000)
}

/// The names listxattr returns.
pub fn listxattr(p: &Path) -> Sys<Vec<String>> {
    let c = cs(p);
    let mut buf = vec![0u8; 70_000];
    // SAFETY: valid C string and buffer.
    let r = unsafe { libc::listxattr(c.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    let n = check_size(r)?;
    Ok(buf[..n]
        .split(|b| *b == 0)
        .filter(|s| !s.is_empty())
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect())
}

/// listxattr with a buffer of `size` bytes: the length, or the errno.
pub fn listxattr_sized(p: &Path, size: usize) -> Sys<usize> {
    let c = cs(p);
    let mut buf = vec![0u8; size.max(1)];
    // SAFETY: valid C string and a buffer of at least `size` bytes.
    check_size(unsafe { libc::listxattr(c.as_ptr(), buf.as_mut_ptr().cast(), size) })
}

pub fn removexattr(p: &Path, name: &str) -> Sys<()> {
    let (c, n) = (cs(p), cstr(name));
    // SAFETY: valid C strings.
    check(unsafe { libc::removexattr(c.as_ptr(), n.as_ptr()) }).map(drop)
}

pub fn mknod(p: &Path, mode: u32, dev: u64) -> Sys<()> {
    let c = cs(p);
    // SAFETY: valid C string.
    check(unsafe { libc::mknod(c.as_ptr(), mode, dev) }).map(drop)
}

/// The names in a directory (without `.` and `..`), through opendir/readdir.
pub fn list(p: &Path) -> Sys<Vec<Vec<u8>>> {
    let rd = std::fs::read_dir(p).map_err(|e| e.raw_os_error().unwrap_or(0))?;
    let mut names = Vec::new();
    for e in rd {
        let e = e.map_err(|e| e.raw_os_error().unwrap_or(0))?;
        names.push(e.file_name().as_bytes().to_vec());
    }
    Ok(names)
}

/// The permission and type bits of `p` (lstat).
pub fn mode(p: &Path) -> u32 {
    ok(lstat(p), "lstat").st_mode
}

/// Runs `f` in a forked child whose supplementary groups are `groups`, gid `gid` and uid
/// `uid` (in that order, as a login does), and returns what it returned: `Ok(())` or the
/// errno. A panic in the child (a failed check) comes back as [`CHILD_CHECK_FAILED`].
pub fn as_user_groups(uid: u32, gid: u32, groups: &[u32], f: impl FnOnce() -> Sys<()>) -> Sys<()> {
    let groups: Vec<libc::gid_t> = groups.to_vec();
    // SAFETY: the child only makes syscalls and runs `f` (which allocates through glibc's
    // fork-safe malloc), then leaves with _exit, never returning into the test harness.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            // SAFETY: plain syscalls on valid buffers.
            unsafe {
                if libc::setgroups(groups.len(), groups.as_ptr()) != 0
                    || libc::setgid(gid) != 0
                    || libc::setuid(uid) != 0
                {
                    return CHILD_CHECK_FAILED;
                }
            }
            match f() {
                Ok(()) => 0,
                Err(e) => e,
            }
        }))
        .unwrap_or_else(|p| {
            // The harness's output capture does not reach a forked child: say it on fd 2.
            let msg = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_default();
            let line = format!("as uid {uid}: {msg}\n");
            // SAFETY: a valid buffer.
            unsafe { libc::write(2, line.as_ptr().cast(), line.len()) };
            CHILD_CHECK_FAILED
        });
        // SAFETY: leaving the child without running the parent's destructors.
        unsafe { libc::_exit(code) };
    }
    let mut status = 0;
    // SAFETY: waiting for our own child.
    let r = unsafe { libc::waitpid(pid, &mut status, 0) };
    assert_eq!(r, pid, "waitpid");
    assert!(libc::WIFEXITED(status), "child died: status {status:#x}");
    match libc::WEXITSTATUS(status) {
        0 => Ok(()),
        e => Err(e),
    }
}

/// [`as_user_groups`] with no supplementary groups and gid = uid.
pub fn as_user(uid: u32, f: impl FnOnce() -> Sys<()>) -> Sys<()> {
    as_user_groups(uid, uid, &[], f)
}

/// [`as_user`] for one call whose value is not needed.
pub fn nobody<T>(f: impl FnOnce() -> Sys<T>) -> Sys<()> {
    as_user(crate::NOBODY, || f().map(drop))
}

/// A check inside a child: `Ok(())` if `cond`, else [`CHILD_CHECK_FAILED`].
pub fn ensure(cond: bool) -> Sys<()> {
    if cond {
        Ok(())
    } else {
        Err(CHILD_CHECK_FAILED)
    }
}
