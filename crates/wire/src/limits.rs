//! Protocol limits, in one place. A receiver checks every length against these before it
//! allocates anything.

/// Largest encoded message body.
pub const MAX_BODY_BYTES: u32 = 4 << 20;
/// Largest bulk transfer attached to one message (one RPC moves at most this much data).
pub const MAX_BULK_BYTES: u64 = 16 << 20;
/// Largest object an OST holds (16 TiB, as ldiskfs with 4 KiB blocks): a write past it is
/// EFBIG.
pub const MAX_OBJECT_BYTES: u64 = 1 << 44;
/// Bulk data is cut into frames of at most this size, each with its own crc32c.
pub const BULK_FRAME_BYTES: u32 = 1 << 20;
/// Longest name in a directory (POSIX NAME_MAX).
pub const NAME_MAX_BYTES: usize = 255;
/// Longest symlink target (PATH_MAX).
pub const PATH_MAX_BYTES: usize = 4096;
/// Longest extended attribute value.
pub const XATTR_VALUE_MAX_BYTES: usize = 64 << 10;
/// Largest stripe count of one file (Lustre: 2000).
pub const STRIPE_COUNT_MAX: u32 = 2000;
/// Smallest stripe size, and the unit every stripe size is a multiple of (Lustre: 64 KiB).
pub const STRIPE_SIZE_MIN_BYTES: u64 = 64 << 10;
/// Largest stripe size we accept (4 GiB - 64 KiB in Lustre; we take 4 GiB - 64 KiB too).
pub const STRIPE_SIZE_MAX_BYTES: u64 = (4 << 30) - (64 << 10);
/// Longest fsname (Lustre: 8 characters).
pub const FSNAME_MAX_CHARS: usize = 8;
/// Longest pool name (Lustre: 15 characters).
pub const POOL_NAME_MAX_CHARS: usize = 15;
/// Most directory entries returned by one readdir RPC.
pub const READDIR_MAX_ENTRIES: u32 = 1024;
/// Largest page of one MDS_READDIR_PLUS reply, its entries counted with
/// [`crate::msg::DirEntryPlus::wire_bytes_bound`]. A page ends before the entry that would
/// pass it (a group of entries sharing a cookie is never split, so one such group may).
pub const READDIRPLUS_MAX_BYTES: usize = 1 << 20;
/// Most entries of one MDS_READDIR_PLUS page that get locks.
pub const READDIRPLUS_LOCKED_ENTRIES_MAX: u32 = 1024;
/// Most sets of inode bits one request asks locks for, per inode (MDS_GETATTR_LOCK,
/// MDS_READDIR_PLUS).
pub const IBITS_SETS_MAX: usize = 4;
/// Most names one MDS_GETATTR_BATCH asks about.
pub const GETATTR_BATCH_MAX: usize = 64;
/// Most objects destroyed by one OST_DESTROY_BATCH.
pub const DESTROY_BATCH_MAX: usize = 1024;
/// Most objects created by one OST_CREATE (precreate batch).
pub const PRECREATE_MAX: u32 = 4096;
/// The TCP port Lustre's acceptor listens on; a NID without a port means this one.
pub const DEFAULT_PORT: u16 = 988;

const _: () = assert!(BULK_FRAME_BYTES as u64 <= MAX_BULK_BYTES);
const _: () = assert!(STRIPE_SIZE_MIN_BYTES.is_power_of_two());
const _: () = assert!(READDIRPLUS_MAX_BYTES * 2 <= MAX_BODY_BYTES as usize);
const _: () = assert!(READDIRPLUS_LOCKED_ENTRIES_MAX <= READDIR_MAX_ENTRIES);

/// The longest an MDS holds an MDS_FLOCK wait before answering EINPROGRESS (the client then
/// asks again): well under the client's RPC timeout, so a waiting lock never looks like a
/// lost reply.
pub const FLOCK_WAIT_MAX: std::time::Duration = std::time::Duration::from_secs(10);
/// File locks (ranges and flock locks) one client may hold on the MDS; more is ENOLCK.
pub const FLOCK_LOCKS_PER_CLIENT_MAX: usize = 65_536;
