//! The namespace's limits, in one place. Protocol limits (name and path length, xattr
//! value size) come from `sheen_wire::limits`.

/// Most hard links to one non-directory inode (ext4's and ldiskfs's limit).
pub const LINK_MAX: u32 = 65_000;
/// Most links to a directory (2 + its subdirectories). Directories are not held to
/// [`LINK_MAX`], as ldiskfs with `dir_nlink` is not; this only keeps the count from wrapping.
pub const DIR_NLINK_MAX: u32 = u32::MAX - 1;
/// Longest extended attribute name (Linux XATTR_NAME_MAX).
pub const XATTR_NAME_MAX_BYTES: usize = 255;
/// Most extended attributes on one inode.
pub const XATTRS_PER_INODE_MAX: u32 = 1024;
/// Most entries one readdir call returns, whatever the caller asks for.
pub const READDIR_MAX_ENTRIES: u32 = 4096;
/// Memory sled may use for its page cache. This bounds the MDS's memory whatever the number of
/// files (sled's default is 1 GiB); the rest of the namespace stays on disk.
pub const DB_CACHE_BYTES: u64 = 256 << 20;
/// sled's own periodic flush (its default), unless the caller flushes
/// ([`crate::Namespace::open_flushed_by_caller`]).
pub(crate) const SLED_FLUSH_EVERY_MS: u64 = 500;
/// Most directories whose version ([`crate::DirChange`]) the namespace keeps in memory;
/// past it, it forgets them all (clients then ask the MDS about names again).
pub const DIR_VERSIONS_MAX: usize = 1 << 16;
/// The inode count statfs reports as the maximum.
pub const INODES_MAX: u64 = u32::MAX as u64;
/// Deepest directory tree the rename loop check walks before it calls the tree corrupt.
pub(crate) const DIR_DEPTH_MAX: usize = 1 << 16;
/// How often an operation that destroys an inode re-reads its xattr names when they
/// change under it before it gives up.
pub(crate) const XATTR_RESCAN_MAX: usize = 16;

const _: () = assert!(LINK_MAX <= DIR_NLINK_MAX);
const _: () = assert!(READDIR_MAX_ENTRIES >= sheen_wire::limits::READDIR_MAX_ENTRIES);
