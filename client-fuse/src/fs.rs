//! The FUSE filesystem: fuser callbacks mapped onto `sheen_client::Client` calls.
//!
//! Each callback moves its `reply` into a task on the tokio runtime, which calls the client
//! and replies, so that many requests run at once. The helpers on [`Inner`] return
//! `Result<_, fuser::Errno>` and each callback replies exactly once, at the end of its
//! task. Tasks are never cancelled (an RPC is not cancellation-safe).

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::future::Future;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Waker};
use std::time::{Duration, SystemTime};

use fuser::{
    AccessFlags, BsdFileFlags, CopyFileRangeFlags, Errno, FileAttr, FileHandle, Filesystem,
    FopenFlags, Generation, INodeNo, InitFlags, IoctlFlags, KernelConfig, LockOwner, OpenAccMode,
    OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyDirectoryPlus,
    ReplyEmpty, ReplyEntry, ReplyIoctl, ReplyLock, ReplyLseek, ReplyOpen, ReplyStatfs, ReplyWrite,
    ReplyXattr, Request, TimeOrNow, WriteFlags,
};
use sheen_client::{
    Attr, Bytes, CacheInvalidator, Client, Creds, DirEntry, Fid, Layout, ReaddirPlusEntry, SetAttr,
    TimeSet, Timespec,
};
use sheen_wire::{xattr_flags, FlockKind, FlockOp, FlockReq, FlockType};
use tracing::{debug, info, warn, Instrument};

use crate::behind::WritesInFlight;
use crate::convert::{self, errno, fid, file_attr};
use crate::limits;
use crate::state::{relatime_due, Atime, Handle, OpenFiles};

/// The xattr that carries a file's layout; setting it changes the layout.
const LOV_XATTR: &[u8] = b"lustre.lov";
/// The access ACL: setting it may clear the set-group-ID bit (see [`Inner::setxattr`]).
const ACL_ACCESS_XATTR: &[u8] = b"system.posix_acl_access";
/// Readdir offsets 1 and 2 are "." and ".."; an MDS cookie `c` is offset `c + 2`.
const DOT_ENTRIES: u64 = 2;

type FsResult<T> = Result<T, Errno>;

/// The mounted filesystem, as fuser sees it.
pub struct SheenFs {
    inner: Arc<Inner>,
    runtime: tokio::runtime::Handle,
    /// Ask the kernel for FUSE over io_uring when it offers it (`nouring` says no).
    uring: bool,
}

struct Inner {
    client: Client,
    read_only: bool,
    /// Reads never update atime (a `noatime` or read-only mount).
    no_atime: bool,
    open: Mutex<OpenFiles>,
    /// Work left running after its reply (the MDS side of a close).
    background: Arc<Background>,
    /// What this mount knows of the kernel's cache (shared with the invalidator).
    marks: Arc<CacheMarks>,
    dirs: Mutex<HashMap<u64, DirHandle>>,
    next_dir_fh: AtomicU64,
    /// (inode, kernel lock owner) pairs that may hold file locks on the MDS: a close
    /// (FLUSH, or RELEASE for flock locks) of another costs no RPC.
    lock_owners: Mutex<HashSet<(u64, u64)>>,
    /// Writes answered before they are on the OSTs (`crate::behind`).
    writes: Arc<WritesInFlight>,
}

/// An open directory: the entries last fetched, so that the kernel's successive readdir
/// calls (a few KiB each) do not each cost an MDS round trip.
#[derive(Default)]
struct DirHandle {
    /// The MDS cookie `entries` were fetched from.
    from_cookie: u64,
    entries: Vec<DirEntry>,
    eof: bool,
    /// The same entries with their attributes, when a readdirplus fetched them.
    plus: Option<Arc<[ReaddirPlusEntry]>>,
}

impl DirHandle {
    /// The buffered entries that follow MDS cookie `cookie`, and whether they end the
    /// directory; `None` when the buffer does not hold that point, or holds nothing after
    /// it short of the end (the MDS must be asked).
    fn after(&self, cookie: u64) -> Option<(Vec<DirEntry>, bool)> {
        let rest = self.rest(&self.entries, |e| e.next_cookie, cookie)?;
        Some((rest.to_vec(), self.eof))
    }

    /// [`DirHandle::after`] with attributes, as the buffer and the index of the first entry
    /// after `cookie` (no copy: a kernel request takes a few of the buffer's entries);
    /// `None` also when the buffer was filled by a plain readdir.
    fn after_plus(&self, cookie: u64) -> Option<(Arc<[ReaddirPlusEntry]>, usize, bool)> {
        let plus = self.plus.as_ref()?;
        let rest = self.rest(plus, |e| e.entry.next_cookie, cookie)?;
        Some((Arc::clone(plus), plus.len() - rest.len(), self.eof))
    }

    fn rest<'a, T>(&self, items: &'a [T], next: fn(&T) -> u64, cookie: u64) -> Option<&'a [T]> {
        let start = if cookie == self.from_cookie {
            0
        } else {
            items.iter().position(|e| next(e) == cookie)? + 1
        };
        let rest = items.get(start..)?;
        if rest.is_empty() && !self.eof {
            return None;
        }
        Some(rest)
    }
}

/// Attributes for the "." and ".." entries of a readdirplus reply. The kernel takes neither
/// attributes nor a lookup count from these two names: only the inode number and the type
/// show (in `d_ino` and `d_type`), as in a plain readdir.
fn dot_attr(ino: INodeNo) -> FileAttr {
    FileAttr {
        ino,
        size: 0,
        blocks: 0,
        atime: SystemTime::UNIX_EPOCH,
        mtime: SystemTime::UNIX_EPOCH,
        ctime: SystemTime::UNIX_EPOCH,
        crtime: SystemTime::UNIX_EPOCH,
        kind: fuser::FileType::Directory,
        perm: 0,
        nlink: 2,
        uid: 0,
        gid: 0,
        rdev: 0,
        blksize: limits::BLKSIZE,
        flags: 0,
    }
}

impl SheenFs {
    /// The filesystem of a mount; `noatime`: reads never update atime (`-o noatime`).
    pub fn new(
        client: Client,
        runtime: tokio::runtime::Handle,
        read_only: bool,
        noatime: bool,
        uring: bool,
    ) -> SheenFs {
        SheenFs {
            inner: Arc::new(Inner {
                client,
                read_only,
                no_atime: noatime || read_only,
                open: Mutex::new(OpenFiles::default()),
                marks: Arc::new(CacheMarks::default()),
                background: Arc::new(Background::default()),
                dirs: Mutex::new(HashMap::new()),
                next_dir_fh: AtomicU64::new(1),
                lock_owners: Mutex::new(HashSet::new()),
                writes: WritesInFlight::new(),
            }),
            runtime,
            uring,
        }
    }

    /// The work this mount left running after replying; wait for it before disconnecting.
    pub fn background(&self) -> Arc<Background> {
        Arc::clone(&self.inner.background)
    }

    /// What the mount knows of the kernel's cache, for [`invalidator`] (which needs the
    /// FUSE session, so it is made after the session took the filesystem).
    pub fn cache_marks(&self) -> Arc<CacheMarks> {
        Arc::clone(&self.inner.marks)
    }

    /// Runs one request's work, in a span naming the operation: first here, on the FUSE
    /// session thread, as far as it goes without waiting, and what is left as a task.
    ///
    /// Work that needs no round trip (attributes cached under a lock, a write taken into
    /// the write-behind window) is answered without waking a runtime worker, and work that
    /// does sends its RPCs from here; the reply then wakes the task on the worker that
    /// reads the connection. Polling once with a waker that does nothing and then handing
    /// the future to the runtime is sound: a future registers the waker of its latest poll,
    /// and the spawned task polls it again at once.
    fn dispatch<F>(&self, op: &'static str, ino: INodeNo, work: impl FnOnce(Arc<Inner>) -> F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let span = tracing::debug_span!("fuse", op, ino = ino.0);
        let mut work = Box::pin(work(Arc::clone(&self.inner)).instrument(span));
        // Timers, sockets and spawns inside the work need the runtime's context.
        let _runtime = self.runtime.enter();
        let mut cx = Context::from_waker(Waker::noop());
        if work.as_mut().poll(&mut cx).is_pending() {
            self.runtime.spawn(work);
        }
    }
}

/// A lock as the kernel describes it in GETLK and SETLK: inclusive byte range, F_RDLCK,
/// F_WRLCK or F_UNLCK, and the process asking.
#[derive(Clone, Copy, Debug)]
struct LockArgs {
    start: u64,
    end: u64,
    typ: i32,
    pid: u32,
}

/// The caller of a request, with the umask it creates with. With FUSE_DONT_MASK the kernel
/// leaves the umask to us and the MDS applies it unless the parent has a default ACL;
/// without, the kernel applied it already and applying it again changes nothing.
fn creds(req: &Request, umask: u32) -> Creds {
    Creds {
        uid: req.uid(),
        gid: req.gid(),
        umask,
    }
}

/// Whether process `pid` has `gid` among its supplementary groups (`/proc/PID/status`).
/// A process that is gone or unreadable is in no group.
fn in_supplementary_groups(pid: u32, gid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .is_ok_and(|status| supplementary_groups(&status).contains(&gid))
}

/// The `Groups:` line of a `/proc/PID/status`.
fn supplementary_groups(status: &str) -> Vec<u32> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("Groups:"))
        .map(|g| {
            g.split_whitespace()
                .filter_map(|n| n.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

fn name_bytes(name: &OsStr) -> Vec<u8> {
    name.as_bytes().to_vec()
}

/// How long the kernel may cache a name and the attributes it names.
struct Ttls {
    entry: Duration,
    attr: Duration,
}

fn reply_entry(reply: ReplyEntry, result: FsResult<FileAttr>) {
    match result {
        Ok(attr) => reply.entry(&limits::ATTR_TTL, &attr, Generation(0)),
        Err(e) => reply.error(e),
    }
}

fn reply_empty(reply: ReplyEmpty, result: FsResult<()>) {
    match result {
        Ok(()) => reply.ok(),
        Err(e) => reply.error(e),
    }
}

/// Answers an xattr query: the size for a size-0 probe, the data if it fits, else ERANGE.
fn reply_xattr(reply: ReplyXattr, size: u32, result: FsResult<Vec<u8>>) {
    match result {
        Ok(value) => {
            let Ok(len) = u32::try_from(value.len()) else {
                return reply.error(Errno::E2BIG);
            };
            if size == 0 {
                reply.size(len);
            } else if len > size {
                reply.error(Errno::ERANGE);
            } else {
                reply.data(&value);
            }
        }
        Err(e) => reply.error(e),
    }
}

/// Counts work that runs after its FUSE reply was sent.
#[derive(Default)]
pub struct Background {
    running: std::sync::atomic::AtomicUsize,
    idle: tokio::sync::Notify,
}

/// One piece of background work; dropping it ends it.
pub struct BackgroundGuard(Arc<Background>);

impl Background {
    fn start(self: &Arc<Self>) -> BackgroundGuard {
        self.running.fetch_add(1, Ordering::SeqCst);
        BackgroundGuard(Arc::clone(self))
    }

    /// Waits until no background work runs, for at most `limit`; false if some still does.
    pub async fn wait_idle(&self, limit: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let idle = self.idle.notified();
            if self.running.load(Ordering::SeqCst) == 0 {
                return true;
            }
            if tokio::time::timeout_at(deadline, idle).await.is_err() {
                return self.running.load(Ordering::SeqCst) == 0;
            }
        }
    }
}

impl Drop for BackgroundGuard {
    fn drop(&mut self) {
        if self.0.running.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

/// What a mount knows of the kernel's cache of its inodes.
#[derive(Default)]
pub struct CacheMarks {
    /// Inodes whose cache a lock callback dropped: the size this client knows may be stale
    /// (another client wrote or truncated), so the next read asks the OSTs.
    stale: Mutex<HashSet<u64>>,
    /// Inodes whose attributes the kernel may hold with a non-zero TTL.
    ///
    /// An attribute invalidation is sent only for these. The kernel discards the answer of
    /// every getattr that was in flight when an invalidation of the inode came, and then
    /// goes on with the size it had: a read past that old end of file returns nothing,
    /// although the getattr carried the new size. Invalidations that drop nothing (the
    /// kernel was given a TTL of zero) are exactly the ones that can do only that harm.
    attrs: Mutex<HashSet<u64>>,
}

impl CacheMarks {
    fn stale(&self) -> MutexGuard<'_, HashSet<u64>> {
        // A panic while holding the lock leaves plain data behind; keep using it.
        self.stale.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn attrs(&self) -> MutexGuard<'_, HashSet<u64>> {
        self.attrs.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// What drops a mount's cache of a file when a lock protecting it is called back: the
/// kernel's pages and attributes (through `notifier`) and the size the mount knows.
pub fn invalidator(notifier: fuser::Notifier, marks: Arc<CacheMarks>) -> Arc<dyn CacheInvalidator> {
    Arc::new(FuseInvalidator { notifier, marks })
}

/// Drops the kernel's cache of a file through FUSE notifications.
struct FuseInvalidator {
    notifier: fuser::Notifier,
    marks: Arc<CacheMarks>,
}

impl CacheInvalidator for FuseInvalidator {
    fn invalidate_attr(&self, fid: Fid) {
        if !self.marks.attrs().remove(&fid.to_ino()) {
            // The kernel holds them with a TTL of zero: it asks again anyway.
            return;
        }
        // A negative offset: the attributes only, no pages.
        if let Err(e) = self.notifier.inval_inode(convert::ino(fid), -1, 0) {
            if e.raw_os_error() != Some(libc::ENOENT) {
                debug!(%fid, "attribute invalidation failed: {e}");
            }
        }
    }

    fn invalidate_entry(&self, parent: Fid, name: &[u8]) {
        let name = OsStr::from_bytes(name);
        if let Err(e) = self.notifier.inval_entry(convert::ino(parent), name) {
            if e.raw_os_error() != Some(libc::ENOENT) {
                debug!(%parent, "entry invalidation failed: {e}");
            }
        }
    }

    fn invalidate_data(&self, fid: Fid) {
        let ino = fid.to_ino();
        self.marks.stale().insert(ino);
        // The pages' invalidation drops the attributes too.
        self.marks.attrs().remove(&ino);
        // Offset 0, length 0: every page, and the attributes. ENOENT: not cached at all.
        if let Err(e) = self.notifier.inval_inode(INodeNo(ino), 0, 0) {
            if e.raw_os_error() != Some(libc::ENOENT) {
                debug!(ino, "page cache invalidation failed: {e}");
            }
        }
    }
}

impl Inner {
    fn open_files(&self) -> MutexGuard<'_, OpenFiles> {
        // A panic while holding the lock leaves plain data behind; keep using it.
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn dir_handles(&self) -> MutexGuard<'_, HashMap<u64, DirHandle>> {
        self.dirs.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn check_writable(&self) -> FsResult<()> {
        if self.read_only {
            return Err(Errno::EROFS);
        }
        Ok(())
    }

    /// fuser attributes for an MDS answer, with the size this client knows of if open.
    fn attr_of(&self, attr: &Attr, layout: Option<&Layout>) -> FileAttr {
        let size = self
            .open_files()
            .observe(attr.fid.to_ino(), attr.size, layout);
        file_attr(attr, size)
    }

    /// Attributes, with the size of a regular file as its objects say (other clients write
    /// through to the OSTs; the MDS learns sizes only at close), and how long the kernel
    /// may cache them: as long as the locks that protect them are held, else not at all.
    async fn getattr(&self, ino: INodeNo) -> FsResult<(FileAttr, Duration)> {
        let fid = fid(ino)?;
        let (attr, layout, writers) = self
            .client
            .getattr_locked(fid, None)
            .await
            .map_err(|e| errno("getattr", &e))?;
        let shown = self.shown(&attr, layout.as_ref(), writers).await?;
        Ok((shown, self.attr_ttl(fid, layout.as_ref(), writers)))
    }

    /// The attributes to show for an MDS answer: the size is the largest of the MDS's,
    /// this client's writes and the objects'.
    ///
    /// The objects are asked only while the file has writers (`writers`, from the MDS) or
    /// a lock callback said another client changed it: otherwise the MDS's size stands.
    async fn shown(
        &self,
        attr: &Attr,
        layout: Option<&Layout>,
        writers: u32,
    ) -> FsResult<FileAttr> {
        let ino = attr.fid.to_ino();
        // This client's writes answered early are part of the size.
        self.writes.settle(ino).await;
        let stale = self.take_stale(ino);
        let (glimpsed, objects_mtime) = if writers > 0 || stale {
            self.glimpse(attr, layout).await?
        } else {
            (0, None)
        };
        if stale {
            // Someone else changed the file: what this client wrote may be cut short.
            self.open_files().truncated(ino, attr.size.max(glimpsed));
        }
        let mut shown = self.attr_of(attr, layout);
        if attr.is_reg() && layout.is_some() {
            // Writes go through to the objects, this client's own included: the size is
            // the MDS's (a truncate up leaves a hole past the objects) or the objects'.
            shown.size = attr.size.max(glimpsed);
            shown.blocks = shown.blocks.max(glimpsed.div_ceil(512));
            // Writes set mtime on the objects; the MDS hears of it at the last close.
            if let Some(m) = objects_mtime {
                let written = convert::system_time(m);
                shown.mtime = shown.mtime.max(written);
                shown.ctime = shown.ctime.max(written);
            }
        }
        Ok(shown)
    }

    /// Whether a lock callback dropped `ino`'s cache since the last look (and clears it).
    fn take_stale(&self, ino: u64) -> bool {
        self.marks.stale().remove(&ino)
    }

    /// How long the kernel may cache `fid`'s attributes. The locks are checked and the
    /// inode marked as cached in one step under the marks' mutex: a callback marks its lock
    /// called back first and then looks for the mark, so either this check sees the lock
    /// gone or the invalidation finds the mark.
    fn attr_ttl(&self, fid: Fid, layout: Option<&Layout>, writers: u32) -> Duration {
        self.marked_ttl(fid, || self.client.attr_cacheable(fid, layout, writers))
    }

    /// `LOCKED_TTL`, with `fid` marked as cached, when `cacheable` (asked under the marks'
    /// mutex, so that a callback either sees the mark or is seen by the check); else
    /// `ATTR_TTL`.
    fn marked_ttl(&self, fid: Fid, cacheable: impl FnOnce() -> bool) -> Duration {
        let mut cached = self.marks.attrs();
        if cacheable() {
            cached.insert(fid.to_ino());
            limits::LOCKED_TTL
        } else {
            limits::ATTR_TTL
        }
    }

    /// How long the kernel may cache a listed entry's name and attributes (one TTL for both
    /// in a readdirplus reply), marked as [`Inner::attr_ttl`] marks.
    fn listed_ttl(&self, e: &ReaddirPlusEntry) -> Duration {
        self.marked_ttl(e.attr.fid, || self.client.listed_cacheable(e))
    }

    /// The size a regular file's objects imply (0 for anything else).
    async fn glimpse(
        &self,
        attr: &Attr,
        layout: Option<&Layout>,
    ) -> FsResult<(u64, Option<sheen_client::Timespec>)> {
        match layout {
            Some(l) if attr.is_reg() => self
                .client
                .glimpse(attr.fid, l)
                .await
                .map_err(|e| errno("glimpse", &e)),
            _ => Ok((0, None)),
        }
    }

    /// A name's attributes, and how long the kernel may cache the name and the attributes.
    async fn lookup(&self, parent: INodeNo, name: &[u8]) -> FsResult<(FileAttr, Ttls)> {
        let (attr, layout, writers) = self
            .client
            .getattr_locked(fid(parent)?, Some(name))
            .await
            .map_err(|e| errno("lookup", &e))?;
        let shown = self.shown(&attr, layout.as_ref(), writers).await?;
        let entry = if self.client.entry_cacheable(attr.fid) {
            limits::LOCKED_TTL
        } else {
            limits::ATTR_TTL
        };
        let ttls = Ttls {
            entry,
            attr: self.attr_ttl(attr.fid, layout.as_ref(), writers),
        };
        Ok((shown, ttls))
    }

    async fn setattr(&self, ino: INodeNo, set: SetAttr) -> FsResult<FileAttr> {
        self.check_writable()?;
        self.writes.settle(ino.0).await;
        let fid = fid(ino)?;
        let size = set.size;
        let explicit_mtime = matches!(set.mtime, Some(TimeSet::At(_)));
        let attr = self
            .client
            .setattr(fid, set)
            .await
            .map_err(|e| errno("setattr", &e))?;
        {
            let mut open = self.open_files();
            if let Some(size) = size {
                open.truncated(ino.0, size);
            }
            if explicit_mtime {
                open.mtime_set(ino.0);
            }
        }
        Ok(self.attr_of(&attr, None))
    }

    async fn mknod(
        &self,
        parent: INodeNo,
        name: &[u8],
        mode: u32,
        rdev: u32,
        creds: Creds,
    ) -> FsResult<FileAttr> {
        self.check_writable()?;
        let parent = fid(parent)?;
        let attr = match mode & libc::S_IFMT {
            0 | libc::S_IFREG => self.client.create(parent, name, mode, creds, None).await,
            _ => self
                .client
                .mknod(parent, name, mode, rdev, creds)
                .await
                .map(|a| (a, None)),
        };
        let (attr, layout) = match attr {
            Ok((a, l)) => (a, l),
            Err(e) => return Err(errno("mknod", &e)),
        };
        Ok(self.attr_of(&attr, layout.as_ref()))
    }

    /// Whether reads through a handle opened with `flags` on a file with `attr` owe it an
    /// access-time update (relatime, decided with the attributes of the open so that a
    /// read costs no extra RPC when they say no).
    fn atime_at_open(&self, attr: &Attr, flags: i32) -> Atime {
        if self.no_atime || flags & libc::O_NOATIME != 0 {
            Atime::Off
        } else if relatime_due(attr.atime, attr.mtime, attr.ctime, Timespec::now()) {
            Atime::Due
        } else {
            Atime::Current
        }
    }

    /// Opens a file: registers the open with the MDS (which returns the attributes and
    /// layout, and keeps the file alive if it is unlinked while open), truncates for
    /// O_TRUNC, and registers the handle.
    async fn open(&self, ino: INodeNo, flags: i32) -> FsResult<u64> {
        let write = OpenFlags(flags).acc_mode() != OpenAccMode::O_RDONLY;
        if write {
            self.check_writable()?;
        }
        let fid = fid(ino)?;
        let (mut attr, layout) = self
            .client
            .open(fid, flags as u32)
            .await
            .map_err(|e| errno("open", &e))?;
        let truncate = write && flags & libc::O_TRUNC != 0 && attr.is_reg();
        if truncate {
            self.writes.settle(ino.0).await;
            let set = SetAttr {
                size: Some(0),
                mtime: Some(TimeSet::Now),
                ctime: Some(convert::timespec(SystemTime::now())),
                ..SetAttr::default()
            };
            match self.client.setattr(fid, set).await {
                Ok(a) => attr = a,
                Err(e) => {
                    // The open fails: end the MDS's count of it.
                    let _ = self.client.close(fid).await;
                    return Err(errno("open", &e));
                }
            }
        }
        let handle = Handle {
            ino: ino.0,
            write,
            append: flags & libc::O_APPEND != 0,
            atime: self.atime_at_open(&attr, flags),
        };
        let mut open = self.open_files();
        let fh = open.open(handle, attr.size, layout);
        if truncate {
            open.truncated(ino.0, 0);
        }
        Ok(fh)
    }

    async fn create(
        &self,
        parent: INodeNo,
        name: &[u8],
        mode: u32,
        flags: i32,
        creds: Creds,
    ) -> FsResult<(FileAttr, u64, Duration)> {
        self.check_writable()?;
        let created = self
            .client
            .create_open(fid(parent)?, name, mode, creds, None)
            .await
            .map_err(|e| errno("create", &e))?;
        let ttl = self.created_ttl(&created);
        let attr = created.attr;
        let write = OpenFlags(flags).acc_mode() != OpenAccMode::O_RDONLY;
        let handle = Handle {
            ino: attr.fid.to_ino(),
            write,
            append: flags & libc::O_APPEND != 0,
            atime: self.atime_at_open(&attr, flags),
        };
        let fh = self.open_files().open(handle, attr.size, created.layout);
        Ok((file_attr(&attr, attr.size), fh, ttl))
    }

    /// How long the kernel may cache the name and attributes of a file just created (one
    /// TTL for both in a create reply): as long as the locks granted with the create are
    /// held, marked as [`Inner::attr_ttl`] marks; else not at all.
    fn created_ttl(&self, created: &sheen_client::Created) -> Duration {
        self.marked_ttl(created.attr.fid, || self.client.created_cacheable(created))
    }

    /// The layout and size to do I/O with; the layout is fetched again when it is not
    /// cached (after a layout change, or on an inode not opened through us).
    async fn io_view(&self, ino: INodeNo) -> FsResult<(Arc<Layout>, u64)> {
        let cached = self.open_files().io_view(ino.0);
        if let Some((Some(layout), size)) = cached {
            return Ok((layout, size));
        }
        let (attr, layout) = self
            .client
            .getattr(fid(ino)?)
            .await
            .map_err(|e| errno("io", &e))?;
        let size = self.open_files().observe(ino.0, attr.size, layout.as_ref());
        match layout {
            Some(l) => Ok((Arc::new(l), size)),
            None => {
                warn!(ino = ino.0, "regular file without a layout");
                Err(Errno::EIO)
            }
        }
    }

    /// Reads, and with the first read of a handle that owes it (relatime, not O_NOATIME)
    /// records the access on the MDS at the same time.
    async fn read(
        &self,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        flags: i32,
    ) -> FsResult<Bytes> {
        // O_NOATIME may also have been set with fcntl after the open.
        let touch = flags & libc::O_NOATIME == 0 && self.open_files().take_atime(fh.0);
        if touch {
            let (data, ()) = tokio::join!(self.read_data(ino, offset, size), self.touch(ino));
            data
        } else {
            self.read_data(ino, offset, size).await
        }
    }

    /// Records a read's access on the MDS: atime only, ctime left alone (as Linux does).
    /// A failure is logged and forgotten: the read itself succeeded.
    async fn touch(&self, ino: INodeNo) {
        let Ok(fid) = fid(ino) else {
            return;
        };
        let set = SetAttr {
            atime: Some(TimeSet::Now),
            keep_ctime: true,
            ..SetAttr::default()
        };
        if let Err(e) = self.client.setattr_mds(fid, set).await {
            errno("atime", &e);
        }
    }

    async fn read_data(&self, ino: INodeNo, offset: u64, size: u32) -> FsResult<Bytes> {
        // What this client's writes answered early put there.
        self.writes.settle(ino.0).await;
        let (layout, mut file_size) = self.io_view(ino).await?;
        let stale = self.marks.stale().contains(&ino.0);
        if stale || offset.saturating_add(u64::from(size)) > file_size {
            // Another client may have changed the size: ask the MDS and the objects.
            let (attr, l) = self
                .client
                .getattr(fid(ino)?)
                .await
                .map_err(|e| errno("read", &e))?;
            // Whatever the writers count: this read wants the objects' word.
            file_size = self.shown(&attr, l.as_ref(), 1).await?.size;
        }
        self.client
            .read(fid(ino)?, &layout, file_size, offset, size)
            .await
            .map_err(|e| errno("read", &e))
    }

    /// Writes; answered before the data is on the OSTs when write-behind may (`behind`).
    async fn write(
        &self,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: Bytes,
        flags: i32,
    ) -> FsResult<u32> {
        let len = u32::try_from(data.len()).map_err(|_| Errno::EFBIG)?;
        if let Some(e) = self.writes.error(ino.0) {
            // An earlier write of this file failed after it was answered.
            return Err(e);
        }
        let append = self.open_files().handle(fh.0).is_some_and(|h| h.append);
        let synchronous = flags & (libc::O_SYNC | libc::O_DSYNC | libc::O_DIRECT) != 0;
        let room = if synchronous {
            None
        } else {
            self.writes.room(u64::from(len)).await
        };
        let (layout, file_size) = self.io_view(ino).await?;
        let offset = if append {
            offset.max(file_size)
        } else {
            offset
        };
        let end = offset.saturating_add(u64::from(len));
        let reservation = self.writes.reserve(ino.0, offset, end).await;
        // Only as the file's only writer: another writer's glimpses ask the OSTs.
        let behind = room.is_some()
            && self
                .writes
                .sole_writer(&self.client, ino.0, fid(ino)?)
                .await
            && self
                .writes
                .space_for(&self.client, &layout, offset, u64::from(len));
        let locked = self
            .client
            .lock_write(fid(ino)?, &layout, offset, data)
            .await
            .map_err(|e| errno("write", &e))?;
        let end = locked.end();
        let mtime = locked.mtime();
        match room {
            Some(room) if behind => {
                self.writes
                    .send_behind(reservation, locked, room, |e| errno("write", e));
            }
            _ => {
                locked.send().await.map_err(|e| errno("write", &e))?;
                drop(reservation);
            }
        }
        self.open_files().wrote(ino.0, end, mtime);
        Ok(len)
    }

    /// fallocate(2) through a handle open for writing: allocates a range ahead (mode 0,
    /// `FALLOC_FL_KEEP_SIZE`) or punches a hole (`FALLOC_FL_PUNCH_HOLE |
    /// FALLOC_FL_KEEP_SIZE`); other modes are EOPNOTSUPP. A size it grows is this client's
    /// to report at the last close or fsync, as a write's.
    async fn fallocate(
        &self,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        len: u64,
        mode: i32,
    ) -> FsResult<()> {
        self.check_writable()?;
        if !self.open_files().handle(fh.0).is_some_and(|h| h.write) {
            return Err(Errno::EBADF);
        }
        let mode = u32::try_from(mode)
            .ok()
            .filter(|m| sheen_wire::falloc::is_supported(*m))
            .ok_or(Errno::EOPNOTSUPP)?;
        self.writes.settle(ino.0).await;
        let (layout, file_size) = self.io_view(ino).await?;
        let grown = self
            .client
            .fallocate(fid(ino)?, &layout, file_size, offset, len, mode)
            .await
            .map_err(|e| errno("fallocate", &e))?;
        if let Some(end) = grown {
            self.open_files().fallocated(ino.0, end);
        }
        Ok(())
    }

    /// Reports a size or mtime made stale by writes to the MDS.
    /// Waits for the writes answered early first, and returns the error one of them left.
    async fn flush_size(&self, ino: INodeNo) -> FsResult<()> {
        let failed = self.writes.settle_and_take_error(ino.0).await;
        let reported = self.report_size(ino).await;
        match failed {
            Some(e) => Err(e),
            None => reported,
        }
    }

    async fn report_size(&self, ino: INodeNo) -> FsResult<()> {
        let Some(mut update) = self.open_files().take_flush(ino.0) else {
            return Ok(());
        };
        // Other clients write and truncate too: report the size the objects hold now and
        // the mtime the writes left on them (what a glimpse showed while the file was open),
        // as a writer's report that only grows the MDS's size and moves its mtime forward
        // (a truncate up leaves the MDS's size past the objects; another writer may have
        // reported more already; an explicit mtime may be newer).
        let mut size = update.size;
        let mut mtime = update.mtime.then_some(TimeSet::Now);
        let layout = self.open_files().io_view(ino.0).and_then(|(l, _)| l);
        // A file this client created and alone changed since holds only its writes: their
        // end and newest mtime are what a glimpse of the objects would find.
        let file = fid(ino)?;
        let only_ours = update
            .write_mtime
            .filter(|_| self.client.objects_only_ours(file));
        if let (Some(m), true) = (only_ours, update.mtime) {
            mtime = Some(TimeSet::At(m));
        }
        if let (Some(layout), None) = (layout, only_ours) {
            let (objects, objects_mtime) = self
                .client
                .glimpse(fid(ino)?, &layout)
                .await
                .map_err(|e| errno("flush", &e))?;
            size = update.size.map(|_| objects);
            if let (true, Some(m)) = (update.mtime, objects_mtime) {
                mtime = Some(TimeSet::At(m));
            }
        }
        // What the MDS will have heard from this client (`flushed` remembers it).
        update.size = size;
        if size.is_none() && mtime.is_none() {
            self.open_files().flushed(ino.0, update);
            return Ok(());
        }
        let set = SetAttr {
            size,
            mtime,
            grow_only: true,
            ..SetAttr::default()
        };
        match self.client.setattr_mds(fid(ino)?, set).await {
            Ok(_) => {
                self.open_files().flushed(ino.0, update);
                Ok(())
            }
            Err(e) => {
                self.open_files().flush_failed(ino.0, update);
                Err(errno("flush", &e))
            }
        }
    }

    async fn release(&self, ino: INodeNo, fh: FileHandle) -> FsResult<()> {
        let result = self.flush_size(ino).await;
        if result.is_err() {
            // Logged by flush_size; the state goes with the handle, so the MDS keeps the
            // size it had.
            warn!(
                ino = ino.0,
                "a write answered early or the size report at last close failed"
            );
        }
        self.open_files().release(fh.0);
        // Ends the MDS's count of this open (the last close of an unlinked file frees it).
        if let Err(e) = self.client.close(fid(ino)?).await {
            warn!(ino = ino.0, "close on the MDS failed: {e}");
        }
        result
    }

    fn lock_owners(&self) -> MutexGuard<'_, HashSet<(u64, u64)>> {
        self.lock_owners.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// An MDS_FLOCK body for a lock request of the kernel. fuser 0.18 does not pass the
    /// kernel's FUSE_LK_FLOCK flag, so a flock(2) lock (the whole file, owned by the open
    /// file) travels as a POSIX lock of its own owner (docs/POSIX.md says what that means).
    fn lock_req(ino: INodeNo, owner: LockOwner, lock: LockArgs, op: FlockOp) -> FsResult<FlockReq> {
        let typ = match lock.typ {
            libc::F_RDLCK => FlockType::Read,
            libc::F_WRLCK => FlockType::Write,
            libc::F_UNLCK => FlockType::Unlock,
            _ => return Err(Errno::EINVAL),
        };
        Ok(FlockReq {
            fid: fid(ino)?,
            kind: FlockKind::Posix,
            op,
            owner: owner.0,
            pid: lock.pid,
            typ,
            start: lock.start,
            end: lock.end,
        })
    }

    /// F_GETLK: the first conflicting lock as (start, end, type, pid), or the range asked
    /// about with F_UNLCK.
    async fn getlk(
        &self,
        ino: INodeNo,
        owner: LockOwner,
        lock: LockArgs,
    ) -> FsResult<(u64, u64, i32, u32)> {
        let req = Self::lock_req(ino, owner, lock, FlockOp::GetLk)?;
        let reply = self
            .client
            .file_lock(req)
            .await
            .map_err(|e| errno("getlk", &e))?;
        // The kernel's offsets are signed.
        let offset_max = i64::MAX as u64;
        Ok(match reply.conflict {
            Some(c) => {
                let typ = match c.typ {
                    FlockType::Read => libc::F_RDLCK,
                    _ => libc::F_WRLCK,
                };
                (c.start.min(offset_max), c.end.min(offset_max), typ, c.pid)
            }
            None => (lock.start, lock.end, libc::F_UNLCK, 0),
        })
    }

    /// F_SETLK and F_SETLKW (`wait`); an F_UNLCK drops the owner's locks on the range.
    async fn setlk(
        &self,
        ino: INodeNo,
        owner: LockOwner,
        lock: LockArgs,
        wait: bool,
    ) -> FsResult<()> {
        let op = match (lock.typ, wait) {
            (libc::F_UNLCK, _) => FlockOp::Unlock,
            (_, true) => FlockOp::SetLkWait,
            (_, false) => FlockOp::SetLk,
        };
        let req = Self::lock_req(ino, owner, lock, op)?;
        if op != FlockOp::Unlock {
            // Before asking: a lock granted whose reply is lost is still released at close.
            self.lock_owners().insert((ino.0, owner.0));
        }
        self.client
            .file_lock(req)
            .await
            .map_err(|e| errno("setlk", &e))?;
        if op != FlockOp::Unlock {
            // Again: a close by another thread while this one waited took the mark.
            self.lock_owners().insert((ino.0, owner.0));
        }
        Ok(())
    }

    /// Drops every lock `owner` may hold on `ino` (at close); no RPC if it never locked.
    async fn release_lock_owner(&self, ino: INodeNo, owner: LockOwner) -> FsResult<()> {
        if !self.lock_owners().remove(&(ino.0, owner.0)) {
            return Ok(());
        }
        let req = FlockReq {
            fid: fid(ino)?,
            kind: FlockKind::Posix,
            op: FlockOp::ReleaseOwner,
            owner: owner.0,
            pid: 0,
            typ: FlockType::Unlock,
            start: 0,
            end: u64::MAX,
        };
        self.client
            .file_lock(req)
            .await
            .map(|_| ())
            .map_err(|e| errno("release file locks", &e))
    }

    async fn fsync(&self, ino: INodeNo) -> FsResult<()> {
        self.flush_size(ino).await?;
        let layout = self.open_files().io_view(ino.0).and_then(|(l, _)| l);
        self.client
            .fsync(layout.as_deref())
            .await
            .map_err(|e| errno("fsync", &e))
    }

    /// Fills one readdir reply from offset `offset` on (see [`DOT_ENTRIES`]).
    async fn readdir(
        &self,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        reply: &mut ReplyDirectory,
    ) -> FsResult<()> {
        let dir = fid(ino)?;
        if offset == 0 && reply.add(ino, 1, fuser::FileType::Directory, ".") {
            return Ok(());
        }
        // Without a parent pointer, ".." names the directory itself (only `d_ino` shows it).
        if offset <= 1 && reply.add(ino, 2, fuser::FileType::Directory, "..") {
            return Ok(());
        }
        let mut cookie = offset.saturating_sub(DOT_ENTRIES);
        loop {
            let buffered = self.dir_handles().get(&fh.0).and_then(|d| d.after(cookie));
            let (entries, eof) = match buffered {
                Some(b) => b,
                None => {
                    let (entries, eof) = self
                        .client
                        .readdir(dir, cookie, limits::READDIR_BATCH)
                        .await
                        .map_err(|e| errno("readdir", &e))?;
                    let handle = DirHandle {
                        from_cookie: cookie,
                        entries: entries.clone(),
                        eof,
                        plus: None,
                    };
                    self.dir_handles().insert(fh.0, handle);
                    (entries, eof)
                }
            };
            for e in &entries {
                let offset = e
                    .next_cookie
                    .checked_add(DOT_ENTRIES)
                    .ok_or(Errno::EOVERFLOW)?;
                let name = OsStr::from_bytes(&e.name);
                if reply.add(
                    convert::ino(e.fid),
                    offset,
                    convert::file_type(e.file_type),
                    name,
                ) {
                    return Ok(());
                }
            }
            match entries.last() {
                Some(last) if !eof => cookie = last.next_cookie,
                _ => return Ok(()),
            }
        }
    }

    /// Fills one readdirplus reply from offset `offset` on, as [`Inner::readdir`] does, each
    /// entry with its attributes: every entry given to the kernel counts as a lookup of its
    /// inode (except "." and ".."), which `forget` takes back.
    ///
    /// FUSE gives one TTL for an entry's name and attributes: the locked one while the very
    /// locks the entry was read under are held (and, for a file with writers, the extent
    /// locks a lookup would need), else zero. Buffered attributes whose locks went (a change
    /// called them back, or none were granted) are never handed on: the page is fetched
    /// again from that entry, so what the kernel gets without a lock is as fresh as a
    /// lookup's answer. Sizes are shown as a lookup shows them (glimpsed while the file has
    /// writers).
    async fn readdirplus(
        &self,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        reply: &mut ReplyDirectoryPlus,
    ) -> FsResult<()> {
        let dir = fid(ino)?;
        let dot = dot_attr(ino);
        let zero = Duration::ZERO;
        if offset == 0 && reply.add(ino, 1, ".", &zero, &dot, Generation(0)) {
            return Ok(());
        }
        if offset <= 1 && reply.add(ino, 2, "..", &zero, &dot, Generation(0)) {
            return Ok(());
        }
        // The cookie that resumes at the next entry to add.
        let mut cookie = offset.saturating_sub(DOT_ENTRIES);
        let mut refetch = false;
        loop {
            let buffered = if refetch {
                None
            } else {
                self.dir_handles()
                    .get(&fh.0)
                    .and_then(|d| d.after_plus(cookie))
            };
            let (buffer, start, eof, fresh) = match buffered {
                Some((buffer, start, eof)) => (buffer, start, eof, false),
                None => {
                    let (buffer, eof) = self.fetch_plus(dir, fh, cookie).await?;
                    (buffer, 0, eof, true)
                }
            };
            let entries = buffer.get(start..).unwrap_or_default();
            refetch = false;
            for e in entries {
                if !fresh && !self.client.listed_locks_held(e) {
                    refetch = true;
                    break;
                }
                let offset = e
                    .entry
                    .next_cookie
                    .checked_add(DOT_ENTRIES)
                    .ok_or(Errno::EOVERFLOW)?;
                let child = e.attr.fid.to_ino();
                let was_stale = self.marks.stale().contains(&child);
                let (shown, ttl) = match self.shown(&e.attr, e.layout.as_ref(), e.writers).await {
                    Ok(shown) => (shown, self.listed_ttl(e)),
                    // A glimpse failed (logged): the listing goes on with the MDS's word,
                    // not cached, and the stat that follows asks again (and fails).
                    Err(_) => (self.attr_of(&e.attr, e.layout.as_ref()), limits::ATTR_TTL),
                };
                let name = OsStr::from_bytes(&e.entry.name);
                if reply.add(
                    convert::ino(e.attr.fid),
                    offset,
                    name,
                    &ttl,
                    &shown,
                    Generation(0),
                ) {
                    if was_stale {
                        // Not handed on: the next look still owes the objects a glimpse.
                        self.marks.stale().insert(child);
                    }
                    return Ok(());
                }
                cookie = e.entry.next_cookie;
            }
            if refetch {
                continue;
            }
            match entries.last() {
                Some(_) if !eof => {}
                _ => return Ok(()),
            }
        }
    }

    /// Fetches a page with attributes from MDS cookie `cookie` into the handle's buffer:
    /// with locks on as many entries as the client has room for, and smaller pages when it
    /// has none (their attributes are good for the request that fetched them only).
    async fn fetch_plus(
        &self,
        dir: Fid,
        fh: FileHandle,
        cookie: u64,
    ) -> FsResult<(Arc<[ReaddirPlusEntry]>, bool)> {
        let batch = self.client.listing_lock_room().clamp(
            limits::READDIRPLUS_UNLOCKED_BATCH,
            limits::READDIRPLUS_BATCH,
        );
        let (entries, eof) = self
            .client
            .readdir_plus(dir, cookie, batch, batch)
            .await
            .map_err(|e| errno("readdirplus", &e))?;
        // The fields are evaluated only when debug logging is on.
        debug!(
            %dir,
            cookie,
            entries = entries.len(),
            locked = entries
                .iter()
                .filter(|e| self.client.listed_locks_held(e))
                .count(),
            eof,
            "readdirplus page"
        );
        let entries: Arc<[ReaddirPlusEntry]> = entries.into();
        let handle = DirHandle {
            from_cookie: cookie,
            entries: entries.iter().map(|e| e.entry.clone()).collect(),
            eof,
            plus: Some(Arc::clone(&entries)),
        };
        self.dir_handles().insert(fh.0, handle);
        Ok((entries, eof))
    }

    async fn statfs(&self) -> FsResult<sheen_client::StatfsReply> {
        self.client.statfs().await.map_err(|e| errno("statfs", &e))
    }

    /// Sets an xattr. Setting an access ACL also sets the mode (the MDS does that), and
    /// clears the set-group-ID bit when the caller is neither in the file's group nor root,
    /// as Linux does (the kernel knows, but fuser cannot receive FUSE_SETXATTR_EXT's
    /// `FUSE_SETXATTR_ACL_KILL_SGID`, so we look at the caller ourselves).
    async fn setxattr(
        &self,
        ino: INodeNo,
        name: &[u8],
        value: &[u8],
        flags: i32,
        caller: (u32, u32, u32),
    ) -> FsResult<()> {
        self.check_writable()?;
        let mut flags = u32::try_from(flags).map_err(|_| Errno::EINVAL)?;
        if flags & !(xattr_flags::CREATE | xattr_flags::REPLACE) != 0 {
            return Err(Errno::EINVAL);
        }
        let fid = fid(ino)?;
        let (uid, gid, pid) = caller;
        if name == ACL_ACCESS_XATTR && uid != 0 {
            let (attr, _) = self
                .client
                .getattr(fid)
                .await
                .map_err(|e| errno("setxattr", &e))?;
            if attr.mode & libc::S_ISGID != 0
                && attr.gid != gid
                && !in_supplementary_groups(pid, attr.gid)
            {
                flags |= xattr_flags::ACL_KILL_SGID;
            }
        }
        self.client
            .setxattr(fid, name, value, flags)
            .await
            .map_err(|e| errno("setxattr", &e))?;
        if name == LOV_XATTR {
            self.open_files().invalidate_layout(ino.0);
        }
        Ok(())
    }

    /// `access(2)` when the kernel does not check permissions itself (it does with
    /// `default_permissions`, which we mount with).
    async fn access(&self, ino: INodeNo, mask: AccessFlags, uid: u32, gid: u32) -> FsResult<()> {
        let (attr, _) = self
            .client
            .getattr(fid(ino)?)
            .await
            .map_err(|e| errno("access", &e))?;
        if mask.contains(AccessFlags::W_OK) && self.read_only {
            return Err(Errno::EROFS);
        }
        let perm = attr.mode & 0o7777;
        let granted = if uid == 0 {
            // Root may read and write anything, and execute what anyone may execute.
            let any_x = perm & 0o111 != 0 || attr.is_dir();
            0o6 | if any_x { 0o1 } else { 0 }
        } else if uid == attr.uid {
            (perm >> 6) & 0o7
        } else if gid == attr.gid {
            (perm >> 3) & 0o7
        } else {
            perm & 0o7
        };
        let wanted = u32::try_from(mask.bits()).unwrap_or(0) & 0o7;
        if wanted & !granted != 0 {
            return Err(Errno::EACCES);
        }
        Ok(())
    }
}

impl Filesystem for SheenFs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> io::Result<()> {
        if let Err(max) = config.set_max_write(limits::MAX_WRITE_BYTES) {
            let _ = config.set_max_write(max);
        }
        if let Err(max) = config.set_max_readahead(limits::MAX_READAHEAD_BYTES) {
            let _ = config.set_max_readahead(max);
        }
        let _ = config.set_max_background(limits::MAX_BACKGROUND);
        let _ = config.set_congestion_threshold(limits::CONGESTION_THRESHOLD);
        // Each only if the kernel offers it: O_TRUNC handled in open, parallel lookups and
        // readdirs in one directory, cached symlinks, page cache dropped when the size or
        // mtime changes under us; POSIX ACLs evaluated by the kernel's permission checks
        // (the MDS keeps mode and ACLs in step and makes new inodes inherit default ACLs),
        // and the umask left to us (the MDS applies it unless a default ACL replaces it);
        // listings with attributes, which the kernel asks for when it sees them used (a
        // first page, and pages of directories whose entries were looked up since); O_DIRECT
        // requests sent without waiting for each other (so that an io_submit of many reads
        // keeps them all in flight, and a large O_DIRECT read goes out in parallel pieces).
        for cap in [
            InitFlags::FUSE_ATOMIC_O_TRUNC,
            InitFlags::FUSE_PARALLEL_DIROPS,
            InitFlags::FUSE_CACHE_SYMLINKS,
            InitFlags::FUSE_AUTO_INVAL_DATA,
            InitFlags::FUSE_POSIX_ACL,
            InitFlags::FUSE_DONT_MASK,
            InitFlags::FUSE_DO_READDIRPLUS,
            InitFlags::FUSE_READDIRPLUS_AUTO,
            InitFlags::FUSE_ASYNC_DIO,
            // fcntl and flock locks go to the MDS (setlk, getlk), so they hold across clients.
            InitFlags::FUSE_POSIX_LOCKS,
            InitFlags::FUSE_FLOCK_LOCKS,
        ] {
            if config.add_capabilities(cap).is_err() {
                debug!(?cap, "kernel does not offer a FUSE capability");
            }
        }
        // Requests through io_uring queues, one per CPU, instead of read and writev on
        // /dev/fuse: offered by kernels from 6.14 when the fuse module's `enable_uring`
        // parameter is set. fuser falls back to /dev/fuse if it cannot make the queues.
        if self.uring {
            match config.add_capabilities(InitFlags::FUSE_OVER_IO_URING) {
                Ok(()) => info!("FUSE over io_uring offered by the kernel: asking for it"),
                Err(_) => debug!("kernel does not offer FUSE over io_uring"),
            }
        }
        // Write-behind needs the OSTs' free space: asked now, not at the first write.
        let inner = Arc::clone(&self.inner);
        self.runtime
            .spawn(async move { inner.writes.look_at_space_if_old(&inner.client) });
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let name = name_bytes(name);
        self.dispatch("lookup", parent, |fs| async move {
            match fs.lookup(parent, &name).await {
                Ok((attr, ttls)) => {
                    reply.entry_with_ttls(&ttls.attr, &ttls.entry, &attr, Generation(0))
                }
                Err(e) => reply.error(e),
            }
        });
    }

    fn forget(&self, _req: &Request, _ino: INodeNo, _nlookup: u64) {
        // Nothing is kept per looked-up inode (lookups and readdirplus entries alike): open
        // files have their own state, released with their last handle.
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        self.dispatch("getattr", ino, |fs| async move {
            match fs.getattr(ino).await {
                Ok((attr, ttl)) => reply.attr(&ttl, &attr),
                Err(e) => reply.error(e),
            }
        });
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let set = SetAttr {
            mode,
            uid,
            gid,
            size,
            atime: atime.map(convert::time_set),
            mtime: mtime.map(convert::time_set),
            ctime: ctime.map(convert::timespec),
            keep_ctime: false,
            grow_only: false,
        };
        self.dispatch("setattr", ino, |fs| async move {
            match fs.setattr(ino, set).await {
                Ok(attr) => reply.attr(&limits::ATTR_TTL, &attr),
                Err(e) => reply.error(e),
            }
        });
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        self.dispatch("readlink", ino, |fs| async move {
            let target = match fid(ino) {
                Ok(f) => fs
                    .client
                    .readlink(f)
                    .await
                    .map_err(|e| errno("readlink", &e)),
                Err(e) => Err(e),
            };
            match target {
                Ok(t) => reply.data(&t),
                Err(e) => reply.error(e),
            }
        });
    }

    fn mknod(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        rdev: u32,
        reply: ReplyEntry,
    ) {
        let (name, creds) = (name_bytes(name), creds(req, umask));
        self.dispatch("mknod", parent, |fs| async move {
            reply_entry(reply, fs.mknod(parent, &name, mode, rdev, creds).await);
        });
    }

    fn mkdir(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        let (name, creds) = (name_bytes(name), creds(req, umask));
        self.dispatch("mkdir", parent, |fs| async move {
            let result = async {
                fs.check_writable()?;
                let attr = fs
                    .client
                    .mkdir(fid(parent)?, &name, mode, creds)
                    .await
                    .map_err(|e| errno("mkdir", &e))?;
                Ok(file_attr(&attr, attr.size))
            };
            reply_entry(reply, result.await);
        });
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let name = name_bytes(name);
        self.dispatch("unlink", parent, |fs| async move {
            let result = async {
                fs.check_writable()?;
                fs.client
                    .unlink(fid(parent)?, &name)
                    .await
                    .map_err(|e| errno("unlink", &e))
            };
            reply_empty(reply, result.await);
        });
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let name = name_bytes(name);
        self.dispatch("rmdir", parent, |fs| async move {
            let result = async {
                fs.check_writable()?;
                fs.client
                    .rmdir(fid(parent)?, &name)
                    .await
                    .map_err(|e| errno("rmdir", &e))
            };
            reply_empty(reply, result.await);
        });
    }

    fn symlink(
        &self,
        req: &Request,
        parent: INodeNo,
        link_name: &OsStr,
        target: &Path,
        reply: ReplyEntry,
    ) {
        // A symlink's mode is always 0777: no umask.
        let (name, creds) = (name_bytes(link_name), creds(req, 0));
        let target = target.as_os_str().as_bytes().to_vec();
        self.dispatch("symlink", parent, |fs| async move {
            let result = async {
                fs.check_writable()?;
                let attr = fs
                    .client
                    .symlink(fid(parent)?, &name, &target, creds)
                    .await
                    .map_err(|e| errno("symlink", &e))?;
                Ok(file_attr(&attr, attr.size))
            };
            reply_entry(reply, result.await);
        });
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        let (name, newname) = (name_bytes(name), name_bytes(newname));
        self.dispatch("rename", parent, |fs| async move {
            let result = async {
                fs.check_writable()?;
                fs.client
                    .rename(fid(parent)?, &name, fid(newparent)?, &newname, flags.bits())
                    .await
                    .map_err(|e| errno("rename", &e))
            };
            reply_empty(reply, result.await);
        });
    }

    fn link(
        &self,
        _req: &Request,
        ino: INodeNo,
        newparent: INodeNo,
        newname: &OsStr,
        reply: ReplyEntry,
    ) {
        let newname = name_bytes(newname);
        self.dispatch("link", ino, |fs| async move {
            let result = async {
                fs.check_writable()?;
                let attr = fs
                    .client
                    .link(fid(ino)?, fid(newparent)?, &newname)
                    .await
                    .map_err(|e| errno("link", &e))?;
                Ok(fs.attr_of(&attr, None))
            };
            reply_entry(reply, result.await);
        });
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        self.dispatch("open", ino, |fs| async move {
            match fs.open(ino, flags.0).await {
                Ok(fh) => reply.opened(FileHandle(fh), FopenFlags::empty()),
                Err(e) => reply.error(e),
            }
        });
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        self.dispatch("read", ino, |fs| async move {
            match fs.read(ino, fh, offset, size, flags.0).await {
                Ok(data) => reply.data(&data),
                Err(e) => reply.error(e),
            }
        });
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        // The one copy of the write path: out of fuser's request buffer.
        let data = Bytes::copy_from_slice(data);
        self.dispatch("write", ino, |fs| async move {
            match fs.write(ino, fh, offset, data, flags.0).await {
                Ok(n) => reply.written(n),
                Err(e) => reply.error(e),
            }
        });
    }

    fn flush(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        // Called on every close(2) of every descriptor, including the copies a fork inherits
        // and an exec closes: it must not wait for a server. Writes are on the OSTs when
        // they return, other clients glimpse the size of a file with writers, and the size
        // goes to the MDS at the last close (release) and at fsync. The one exception: a
        // close drops the POSIX locks of the closing owner (the kernel leaves that to
        // FLUSH), which the MDS must have done before close(2) returns.
        // Writes answered early are not waited for either (a close in a child that is
        // about to exec must not hang on an OSS that does not answer): the error one of them
        // already left is this close's, one that comes later is fsync's or the next write's.
        if let Some(e) = self.inner.writes.take_error(ino.0) {
            reply.error(e);
            return;
        }
        if !self.inner.lock_owners().contains(&(ino.0, lock_owner.0)) {
            reply.ok();
            return;
        }
        self.dispatch("flush", ino, |fs| async move {
            match fs.release_lock_owner(ino, lock_owner).await {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(e),
            }
        });
    }

    fn release(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        // Nothing the kernel waits for: answer at once (an unmount does not wait for
        // RELEASE replies), then report the size and the close to the MDS in the background.
        // The mount waits for that work before it disconnects (`Background::wait_idle`).
        // A flock lock goes with the last close of its open file (`lock_owner` is then the
        // open file's lock owner).
        reply.ok();
        let guard = self.inner.background.start();
        self.dispatch("release", ino, |fs| async move {
            if let Some(owner) = lock_owner {
                // Logged by `errno`; a lock the MDS could not be told to drop stays until
                // this client is gone for good.
                let _ = fs.release_lock_owner(ino, owner).await;
            }
            let _ = fs.release(ino, fh).await;
            drop(guard);
        });
    }

    fn getlk(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        lock_owner: LockOwner,
        start: u64,
        end: u64,
        typ: i32,
        pid: u32,
        reply: ReplyLock,
    ) {
        let lock = LockArgs {
            start,
            end,
            typ,
            pid,
        };
        self.dispatch("getlk", ino, |fs| async move {
            match fs.getlk(ino, lock_owner, lock).await {
                Ok((start, end, typ, pid)) => reply.locked(start, end, typ, pid),
                Err(e) => reply.error(e),
            }
        });
    }

    fn setlk(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        lock_owner: LockOwner,
        start: u64,
        end: u64,
        typ: i32,
        pid: u32,
        sleep: bool,
        reply: ReplyEmpty,
    ) {
        let lock = LockArgs {
            start,
            end,
            typ,
            pid,
        };
        self.dispatch("setlk", ino, |fs| async move {
            match fs.setlk(ino, lock_owner, lock, sleep).await {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(e),
            }
        });
    }

    fn fsync(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        self.dispatch("fsync", ino, |fs| async move {
            reply_empty(reply, fs.fsync(ino).await);
        });
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        let fh = self.inner.next_dir_fh.fetch_add(1, Ordering::Relaxed);
        self.inner.dir_handles().insert(fh, DirHandle::default());
        debug!(ino = ino.0, fh, "opendir");
        reply.opened(FileHandle(fh), FopenFlags::empty());
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        self.dispatch("readdir", ino, |fs| async move {
            match fs.readdir(ino, fh, offset, &mut reply).await {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(e),
            }
        });
    }

    fn readdirplus(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectoryPlus,
    ) {
        self.dispatch("readdirplus", ino, |fs| async move {
            match fs.readdirplus(ino, fh, offset, &mut reply).await {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(e),
            }
        });
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        self.inner.dir_handles().remove(&fh.0);
        reply.ok();
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        self.dispatch("fsyncdir", ino, |fs| async move {
            let result = fs
                .client
                .fsync(None)
                .await
                .map_err(|e| errno("fsyncdir", &e));
            reply_empty(reply, result);
        });
    }

    fn statfs(&self, _req: &Request, ino: INodeNo, reply: ReplyStatfs) {
        self.dispatch("statfs", ino, |fs| async move {
            match fs.statfs().await {
                Ok(s) => reply.statfs(
                    s.blocks, s.bfree, s.bavail, s.files, s.ffree, s.bsize, s.namelen, s.bsize,
                ),
                Err(e) => reply.error(e),
            }
        });
    }

    fn setxattr(
        &self,
        req: &Request,
        ino: INodeNo,
        name: &OsStr,
        value: &[u8],
        flags: i32,
        position: u32,
        reply: ReplyEmpty,
    ) {
        if position != 0 {
            return reply.error(Errno::EINVAL);
        }
        let (name, value) = (name_bytes(name), value.to_vec());
        let caller = (req.uid(), req.gid(), req.pid());
        self.dispatch("setxattr", ino, |fs| async move {
            reply_empty(reply, fs.setxattr(ino, &name, &value, flags, caller).await);
        });
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        let name = name_bytes(name);
        self.dispatch("getxattr", ino, |fs| async move {
            let value = match fid(ino) {
                Ok(f) => fs
                    .client
                    .getxattr(f, &name)
                    .await
                    .map_err(|e| errno("getxattr", &e)),
                Err(e) => Err(e),
            };
            reply_xattr(reply, size, value);
        });
    }

    fn listxattr(&self, req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        let privileged = req.uid() == 0;
        self.dispatch("listxattr", ino, |fs| async move {
            let value = match fid(ino) {
                Ok(f) => fs
                    .client
                    .listxattr(f)
                    .await
                    .map(|list| convert::visible_xattr_names(list, privileged))
                    .map_err(|e| errno("listxattr", &e)),
                Err(e) => Err(e),
            };
            reply_xattr(reply, size, value);
        });
    }

    fn removexattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let name = name_bytes(name);
        self.dispatch("removexattr", ino, |fs| async move {
            let result = async {
                fs.check_writable()?;
                fs.client
                    .removexattr(fid(ino)?, &name)
                    .await
                    .map_err(|e| errno("removexattr", &e))?;
                if name == LOV_XATTR {
                    fs.open_files().invalidate_layout(ino.0);
                }
                Ok(())
            };
            reply_empty(reply, result.await);
        });
    }

    fn access(&self, req: &Request, ino: INodeNo, mask: AccessFlags, reply: ReplyEmpty) {
        let (uid, gid) = (req.uid(), req.gid());
        self.dispatch("access", ino, |fs| async move {
            reply_empty(reply, fs.access(ino, mask, uid, gid).await);
        });
    }

    fn ioctl(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _flags: IoctlFlags,
        cmd: u32,
        _in_data: &[u8],
        _out_size: u32,
        reply: ReplyIoctl,
    ) {
        // No ioctls yet (Lustre's LL_IOC_* go through the client library's tools); tar and
        // friends probe FS_IOC_GETFLAGS on every file, so no warning.
        debug!(ino = ino.0, cmd, "ioctl not supported");
        reply.error(Errno::ENOTTY);
    }

    fn fallocate(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        // Never ENOSYS: the kernel would stop asking for every mode.
        self.dispatch("fallocate", ino, |fs| async move {
            reply_empty(reply, fs.fallocate(ino, fh, offset, length, mode).await);
        });
    }

    fn lseek(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _offset: i64,
        _whence: i32,
        reply: ReplyLseek,
    ) {
        // ENOSYS: the kernel stops asking and seeks itself (SEEK_DATA sees no holes).
        reply.error(Errno::ENOSYS);
    }

    fn copy_file_range(
        &self,
        _req: &Request,
        _ino_in: INodeNo,
        _fh_in: FileHandle,
        _offset_in: u64,
        _ino_out: INodeNo,
        _fh_out: FileHandle,
        _offset_out: u64,
        _len: u64,
        _flags: CopyFileRangeFlags,
        reply: ReplyWrite,
    ) {
        // ENOSYS: the kernel stops asking and copies through read and write.
        reply.error(Errno::ENOSYS);
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let (name, creds) = (name_bytes(name), creds(req, umask));
        self.dispatch("create", parent, |fs| async move {
            match fs.create(parent, &name, mode, flags, creds).await {
                Ok((attr, fh, ttl)) => reply.created(
                    &ttl,
                    &attr,
                    Generation(0),
                    FileHandle(fh),
                    FopenFlags::empty(),
                ),
                Err(e) => reply.error(e),
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sheen_client::Fid;

    fn entry(name: &str, next_cookie: u64) -> DirEntry {
        DirEntry {
            name: name.as_bytes().to_vec(),
            fid: Fid {
                seq: Fid::FIRST_NORMAL_SEQ,
                oid: next_cookie as u32,
                ver: 0,
            },
            file_type: libc::S_IFREG,
            next_cookie,
        }
    }

    #[test]
    fn supplementary_groups_from_proc_status() {
        let status = "Name:\tcat\nUid:\t0\t0\t0\t0\nGroups:\t4 24 1000 \nVmPeak:\t1 kB\n";
        assert_eq!(supplementary_groups(status), vec![4, 24, 1000]);
        assert!(supplementary_groups("Groups:\t\n").is_empty());
        assert!(supplementary_groups("Name:\tx\n").is_empty());
        // This test process is in the groups its status lists.
        let own = std::fs::read_to_string("/proc/self/status").unwrap();
        for g in supplementary_groups(&own) {
            assert!(in_supplementary_groups(std::process::id(), g));
        }
        assert!(!in_supplementary_groups(u32::MAX, 0));
    }

    #[test]
    fn dir_buffer_resumes_after_any_entry() {
        let d = DirHandle {
            from_cookie: 10,
            entries: vec![entry("a", 11), entry("b", 12), entry("c", 13)],
            eof: true,
            plus: None,
        };
        let names = |r: Option<(Vec<DirEntry>, bool)>| {
            r.map(|(e, eof)| (e.into_iter().map(|e| e.name).collect::<Vec<_>>(), eof))
        };
        assert_eq!(
            names(d.after(10)),
            Some((vec![b"a".to_vec(), b"b".to_vec(), b"c".to_vec()], true))
        );
        assert_eq!(names(d.after(12)), Some((vec![b"c".to_vec()], true)));
        assert_eq!(names(d.after(13)), Some((vec![], true)));
        assert_eq!(names(d.after(99)), None);
        assert_eq!(names(DirHandle::default().after(0)), None);
        let partial = DirHandle { eof: false, ..d };
        assert_eq!(names(partial.after(13)), None);
    }

    #[test]
    fn dir_buffer_with_attributes_resumes_like_names() {
        let plus = |e: DirEntry| {
            let attr = sheen_client::Attr {
                fid: e.fid,
                mode: libc::S_IFREG | 0o644,
                nlink: 1,
                uid: 0,
                gid: 0,
                rdev: 0,
                size: 0,
                blocks: 0,
                atime: Timespec::default(),
                mtime: Timespec::default(),
                ctime: Timespec::default(),
                btime: Timespec::default(),
                layout_gen: 0,
                hsm_state: 0,
                flags: 0,
            };
            ReaddirPlusEntry::without_locks(e, attr, None)
        };
        let entries = vec![entry("a", 11), entry("b", 12), entry("c", 13)];
        let d = DirHandle {
            from_cookie: 10,
            entries: entries.clone(),
            eof: false,
            plus: Some(entries.into_iter().map(plus).collect()),
        };
        let names = |r: Option<(Arc<[ReaddirPlusEntry]>, usize, bool)>| {
            r.map(|(e, start, eof)| {
                let names: Vec<Vec<u8>> = e[start..].iter().map(|e| e.entry.name.clone()).collect();
                (names, eof)
            })
        };
        assert_eq!(
            names(d.after_plus(10)),
            Some((vec![b"a".to_vec(), b"b".to_vec(), b"c".to_vec()], false))
        );
        assert_eq!(
            names(d.after_plus(11)),
            Some((vec![b"b".to_vec(), b"c".to_vec()], false))
        );
        // The end of a buffer that is not the end of the directory: ask the MDS.
        assert_eq!(names(d.after_plus(13)), None);
        assert_eq!(names(d.after_plus(5)), None);
        // Names fetched by a plain readdir serve a readdir, not a readdirplus.
        let plain = DirHandle { plus: None, ..d };
        assert!(plain.after(11).is_some());
        assert_eq!(names(plain.after_plus(11)), None);
    }
}
