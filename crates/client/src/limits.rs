//! The client's limits, in one place: RPC sizes, concurrency, timeouts.
//!
//! Protocol limits (largest bulk, name lengths) live in `sheen_wire::limits`; these are the
//! client's own choices, used as the defaults of [`crate::ClientConfig`].

use std::time::Duration;

use sheen_wire::limits::MAX_BULK_BYTES;

/// Largest data one OST_READ or OST_WRITE moves (Lustre's default `max_pages_per_rpc`).
pub const MAX_RPC_BYTES: u32 = 1 << 20;
/// OST RPCs one client keeps in flight to one OST (Lustre's `max_rpcs_in_flight`).
pub const MAX_RPCS_IN_FLIGHT_PER_OST: usize = 8;
/// Largest extent one `Client::read` or `Client::write` call handles; longer reads are cut
/// short (as POSIX allows), longer writes are refused.
pub const MAX_IO_BYTES: u64 = 64 << 20;
/// Most facts the client keeps about inodes under their locks (a directory's attributes
/// from its own change in it, a file known to have no `security.capability`), per kind;
/// past it they are all forgotten.
pub const UNDER_LOCK_MAX: usize = 1024;
/// Most directories whose every name the client keeps (for lookups of absent names
/// answered without the MDS); past it, it forgets them all.
pub const DIR_NAMES_DIRS_MAX: usize = 1024;
/// Most memory the names of those directories take, about; past it, they are all forgotten.
pub const DIR_NAMES_BYTES_MAX: usize = 32 << 20;
/// Most names the client keeps of one directory exactly; past it they go into Bloom filters
/// (about 10 bits a name, `dir_names.rs`).
pub const DIR_NAMES_EXACT_MAX: usize = 4096;
/// Most names the client keeps of one directory (in Bloom filters of at most about 2.6 MB
/// in all); a directory with more is forgotten.
pub const DIR_NAMES_MAX: usize = 1 << 20;
/// Names one statahead batch asks the MDS about (MDS_GETATTR_BATCH).
pub const STATAHEAD_BATCH: usize = 32;
/// How far ahead of the last lookup statahead asks, in names of the sequence.
pub const STATAHEAD_WINDOW: usize = 2 * STATAHEAD_BATCH;
/// Statahead batches on their way at once, per directory.
pub const STATAHEAD_IN_FLIGHT: usize = 2;
/// Lookups in a row, each of the name after the last in a numbered sequence, before the
/// names after them are looked up ahead.
pub const STATAHEAD_STREAK: u32 = 2;
/// Most directories statahead follows at once; past it, it starts over.
pub const STATAHEAD_DIRS_MAX: usize = 16;
/// Most answers fetched ahead and not used yet, per directory.
pub const STATAHEAD_KEPT_MAX: usize = 2 * STATAHEAD_WINDOW;
/// Slots of the client's count of its own changes to file data (files share a slot by
/// hash; a change to one drops what was read ahead of the others in its slot).
pub const DATA_CHANGE_SLOTS: usize = 256;
/// Most a [`crate::FileReader`] reads ahead of a sequential reader, in bytes, by default
/// (`ClientConfig::max_readahead_bytes`); with the reads it has started and not yet
/// handed out, it holds at most twice this.
pub const READAHEAD_MAX_BYTES: u64 = 16 << 20;
/// The largest `ClientConfig::max_readahead_bytes` accepted.
pub const READAHEAD_LIMIT_BYTES: u64 = 1 << 30;
/// Least it reads ahead once reads are sequential (when the stripes allow less).
pub const READAHEAD_MIN_BYTES: u64 = 4 << 20;
/// How long one RPC waits for its reply.
pub const RPC_TIMEOUT: Duration = Duration::from_secs(60);
/// How long one connection attempt may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long an RPC keeps retrying a server that does not answer before the caller sees an
/// error.
pub const RETRY_FOR: Duration = Duration::from_secs(60);
/// How long mount keeps trying one MGS NID before trying the next one (or giving up).
pub const MGS_RETRY_FOR: Duration = Duration::from_secs(10);
/// The block size `Client::statfs` reports space in, whatever the OSTs use.
pub const STATFS_BSIZE: u32 = 4096;
/// Longest name of an extended attribute (Linux XATTR_NAME_MAX).
pub const XATTR_NAME_MAX_BYTES: usize = 255;

const _: () = assert!(MAX_RPC_BYTES as u64 <= MAX_BULK_BYTES);
const _: () = assert!(MAX_RPC_BYTES as u64 <= MAX_IO_BYTES);
const _: () = assert!(MAX_RPCS_IN_FLIGHT_PER_OST > 0);
const _: () = assert!(STATAHEAD_BATCH <= sheen_wire::limits::GETATTR_BATCH_MAX);
const _: () = assert!(STATAHEAD_BATCH <= STATAHEAD_WINDOW);
