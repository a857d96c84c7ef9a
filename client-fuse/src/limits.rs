//! The FUSE client's limits and timings, in one place.

use std::time::Duration;

/// How long the kernel may cache attributes and names this client holds no lock for: not
/// at all, so that a rename, unlink, chmod or size change on another client is seen at once.
pub const ATTR_TTL: Duration = Duration::ZERO;
/// How long the kernel may cache attributes and names this client holds the locks for (MDT
/// inode-bits locks; OST extent locks on every object for a file's size): until a callback
/// drops them, which FUSE notifications do at once; the bound only limits what a lost
/// notification could leave behind.
pub const LOCKED_TTL: Duration = Duration::from_secs(600);
/// Largest FUSE write request; the kernel derives FUSE_MAX_PAGES from it. One OST RPC.
pub const MAX_WRITE_BYTES: u32 = 1 << 20;
/// Readahead of a mount. Asked for at INIT, where the kernel grants at most its default
/// (128 KiB); then set through the mount's BDI (`read_ahead_kb`), which root may raise.
pub const MAX_READAHEAD_BYTES: u32 = 4 << 20;
/// Asynchronous requests (readahead, async reads) the kernel may keep outstanding.
pub const MAX_BACKGROUND: u16 = 64;
/// Outstanding background requests at which the kernel considers us congested.
pub const CONGESTION_THRESHOLD: u16 = 48;
/// Directory entries fetched from the MDS per READPAGE when a readdir needs more.
pub const READDIR_BATCH: u32 = 512;
/// Directory entries fetched with their attributes per MDS_READDIR_PLUS, and locked when the
/// client's lock LRU has room (a kernel readdirplus request of 4 to 32 KiB holds 25 to 190).
pub const READDIRPLUS_BATCH: u32 = 256;
/// Entries fetched per MDS_READDIR_PLUS when the lock LRU has no room: their attributes come
/// without locks and serve only the request that fetched them.
pub const READDIRPLUS_UNLOCKED_BATCH: u32 = 64;
/// Most bytes of writes a mount answers before they are on the OSTs (write-behind), all
/// files together; a write waits for room beyond it.
pub const BEHIND_MAX_BYTES: u64 = 32 << 20;
/// Free space every OST of a file keeps beyond a write for it to be answered early (less
/// what the mount wrote since it last looked); nearer full, writes are synchronous.
pub const BEHIND_SPACE_MARGIN: u64 = 64 << 20;
/// How old the mount's view of its OSTs' free space may get before it looks again.
pub const BEHIND_SPACE_RECHECK: Duration = Duration::from_secs(1);
/// Most inodes the mount remembers having asked the MDS about (whether it is their only
/// writer); past it, it forgets them all.
pub const BEHIND_ASKED_MAX: usize = 4096;
/// How old that view may be and still allow write-behind (when statfs stops answering).
pub const BEHIND_SPACE_TOO_OLD: Duration = Duration::from_secs(10);
/// `st_blksize` reported to applications: the I/O size that fills one OST RPC.
pub const BLKSIZE: u32 = 1 << 20;
/// Threads reading requests from /dev/fuse by default (the work itself runs on tokio).
pub const FUSE_THREADS_DEFAULT: usize = 1;
/// Requests each CPU's FUSE-over-io_uring queue holds at once (`-o uring_depth=N`). The
/// kernel keeps a queue's further requests until an entry is free; each entry has a payload
/// buffer of the largest request (1 MiB), touched only as far as requests fill it.
pub const URING_DEPTH_DEFAULT: usize = 16;
/// Most ring entries `-o uring_depth=N` may ask for.
pub const URING_DEPTH_MAX: usize = 256;
/// Most threads `-o fuse_threads=N` may ask for.
pub const FUSE_THREADS_MAX: usize = 16;
/// How long the mount helper waits for the background process's mount to appear.
pub const MOUNT_WAIT: Duration = Duration::from_secs(30);
/// How often the mount helper looks at /proc/self/mountinfo while waiting.
pub const MOUNT_POLL_INTERVAL: Duration = Duration::from_millis(20);
/// How long an unmount waits for closes still being reported to the MDS.
pub const BACKGROUND_WAIT: Duration = Duration::from_secs(10);
/// How long the runtime may take to finish its tasks after the session ended.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

const _: () = assert!(MAX_WRITE_BYTES <= sheen_client::limits::MAX_RPC_BYTES);
const _: () = assert!(CONGESTION_THRESHOLD <= MAX_BACKGROUND);
const _: () = assert!(READDIR_BATCH <= sheen_wire::limits::READDIR_MAX_ENTRIES);
const _: () = assert!(READDIRPLUS_UNLOCKED_BATCH <= READDIRPLUS_BATCH);
const _: () = assert!(READDIRPLUS_BATCH <= sheen_wire::limits::READDIR_MAX_ENTRIES);

/// Largest `timeout=` mount option, in seconds.
pub const RPC_TIMEOUT_MAX_SECS: u64 = 3600;
