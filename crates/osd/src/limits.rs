//! Every limit of the OSD in one place, with compile-time checks that tie related ones together.
//!
//! Sizes that end up on disk are `u64`/`u32`; `usize` appears only for in-memory pools.

use sheen_wire::limits::MAX_BULK_BYTES;

/// The data block size: the unit of allocation, copy-on-write and checksumming.
/// 4 KiB keeps a 4 KiB random read at one block read, and is the O_DIRECT alignment unit.
pub const BLOCK_BYTES: u32 = 4096;
/// `BLOCK_BYTES` as a `u64`, for offset arithmetic.
pub const BLOCK_BYTES_U64: u64 = BLOCK_BYTES as u64;
/// Alignment of every buffer, offset and length handed to the device (O_DIRECT).
pub const IO_ALIGN_BYTES: usize = 4096;

/// Largest single read or write request (bytes). One RPC bulk never exceeds this.
pub const MAX_IO_BYTES: u32 = 16 << 20;
/// Most data blocks one request touches (a write may also read a head and a tail block).
pub const MAX_IO_BLOCKS: u64 = MAX_IO_BYTES as u64 / BLOCK_BYTES_U64 + 1;
/// Largest object size (16 TiB, as ldiskfs with 4 KiB blocks): the protocol's.
pub const MAX_OBJECT_BYTES: u64 = sheen_wire::limits::MAX_OBJECT_BYTES;
/// Most blocks in one extent of a block map (memory and record sizes stay bounded).
pub const MAX_EXTENT_BLOCKS: u32 = 8192;
/// Most objects one precreate call makes.
pub const PRECREATE_MAX_COUNT: u32 = 1 << 14;

/// Smallest block file `format` accepts.
pub const MIN_DEVICE_BYTES: u64 = 32 << 20;
/// Largest block file `format` accepts (1 PiB): keeps every region offset far from overflow.
pub const MAX_DEVICE_BYTES: u64 = 1 << 50;
/// Regions start on this boundary.
pub const REGION_ALIGN_BYTES: u64 = 1 << 20;
/// Space reserved at the start of the file for the superblock (which uses 512 bytes of it).
pub const SUPERBLOCK_REGION_BYTES: u64 = 1 << 20;
/// At least this many data blocks must remain after the metadata regions.
pub const MIN_DATA_BLOCKS: u64 = 1024;
/// Blocks kept back from plain writes so a punch (which copies its tail block) and the
/// metadata path can still make progress on a full OST.
pub const RESERVED_BLOCKS: u64 = 64;

/// The metadata log gets this fraction of the device by default...
pub const LOG_DEVICE_FRACTION: u64 = 64;
/// ...but at least this much...
pub const LOG_DEFAULT_MIN_BYTES: u64 = 4 << 20;
/// ...and at most this much.
pub const LOG_MAX_BYTES: u64 = 1 << 30;
/// Smallest log `open` accepts (tests format smaller logs than the default to hit checkpoints).
pub const LOG_MIN_BYTES: u64 = 1 << 20;

/// Objects per OST: one per this many bytes of device...
pub const BYTES_PER_OBJECT: u64 = 16 << 10;
/// ...but at least this many (a precreate batch of the MDS must always fit)...
pub const OBJECTS_MIN: u64 = 16384;
/// ...and at most this many.
pub const OBJECTS_MAX: u64 = 1 << 32;

/// Checkpoint body bytes per object (oid, size, mtime, extent count).
pub const CKPT_OBJECT_BYTES: u64 = 32;
/// Checkpoint body bytes per extent (logical block, physical block, length).
pub const CKPT_EXTENT_BYTES: u64 = 20;
/// Checkpoint body bytes per mapped block (its crc32c).
pub const CKPT_CRC_BYTES: u64 = 4;
/// Fixed part of a checkpoint body (next object id, object count).
pub const CKPT_BODY_FIXED_BYTES: u64 = 16;
/// The checkpoint header occupies the first block of a slot.
pub const CKPT_HEADER_BYTES: u64 = BLOCK_BYTES_U64;

/// Log group header bytes (at the start of a block).
pub const GROUP_HEADER_BYTES: u64 = 64;
/// Log record header bytes (kind, reserved, body length).
pub const RECORD_HEADER_BYTES: u64 = 8;
/// Fixed part of a write record body (oid, end, mtime, extent count).
pub const WRITE_RECORD_FIXED_BYTES: u64 = 40;
/// Largest log record: a write of `MAX_IO_BLOCKS` blocks, fragmented to one block per extent.
pub const MAX_RECORD_BYTES: u64 = RECORD_HEADER_BYTES
    + WRITE_RECORD_FIXED_BYTES
    + MAX_IO_BLOCKS * (CKPT_EXTENT_BYTES + CKPT_CRC_BYTES)
    + 8;
/// Most extents in one prealloc (fallocate) record; a fallocate needing more commits several
/// records. Each extent is 20 bytes (no crcs: preallocated blocks hold no data).
pub const PREALLOC_RECORD_MAX_EXTENTS: u32 = 4096;
/// Fixed part of a prealloc record body (oid, end, mtime, extent count).
pub const PREALLOC_RECORD_FIXED_BYTES: u64 = 40;
/// The log is read back at open in windows of this size.
pub const LOG_READ_WINDOW_BYTES: u64 = 1 << 20;

/// Submission queue entries of each io_uring.
pub const RING_ENTRIES: u32 = 128;
/// Submission queue entries of the ring for reads that leave their caller free: the most
/// such reads' SQEs in flight at once on one OST (more wait on the blocking engine).
pub const READ_RING_ENTRIES: u32 = 256;
/// Longest read that may be started without blocking: its blocks are then verified on the
/// caller's thread, which in a server is an event loop's (about 0.3 ms for 4 MiB).
pub const ASYNC_READ_MAX_BYTES: u32 = 4 << 20;
/// Most io_uring instances in an engine's pool (one is taken per request in flight).
pub const RINGS_MAX: usize = 16;
/// Largest single read or write SQE; longer runs are split so the device sees them in parallel.
pub const SQE_MAX_BYTES: u32 = 1 << 20;
/// I/O buffers of at least this size are pooled (smaller ones are cheap to allocate).
pub const POOL_MIN_BYTES: usize = 64 << 10;
/// Largest pooled buffer: a maximal request plus its two edge blocks, rounded up.
pub const POOL_MAX_BUF_BYTES: usize = 32 << 20;
/// Bytes of idle buffers kept per size class (at least one buffer per class).
pub const POOL_CLASS_BYTES: usize = 16 << 20;
/// Shards of the per-object range lock table.
pub const RANGE_LOCK_SHARDS: usize = 32;

const _: () = assert!(BLOCK_BYTES.is_power_of_two());
const _: () = assert!(BLOCK_BYTES as usize % IO_ALIGN_BYTES == 0);
const _: () = assert!(MAX_IO_BYTES as u64 >= MAX_BULK_BYTES);
const _: () = assert!(MAX_IO_BYTES % BLOCK_BYTES == 0);
const _: () = assert!(MAX_OBJECT_BYTES % BLOCK_BYTES_U64 == 0);
const _: () = assert!(PRECREATE_MAX_COUNT as u64 <= OBJECTS_MIN);
const _: () = assert!(PRECREATE_MAX_COUNT >= sheen_wire::limits::PRECREATE_MAX);
// A log must always hold at least two groups of the largest record, so that after a checkpoint
// any single record fits.
const _: () =
    assert!(LOG_MIN_BYTES >= 2 * (GROUP_HEADER_BYTES + MAX_RECORD_BYTES + BLOCK_BYTES_U64));
const _: () = assert!(
    RECORD_HEADER_BYTES
        + PREALLOC_RECORD_FIXED_BYTES
        + PREALLOC_RECORD_MAX_EXTENTS as u64 * CKPT_EXTENT_BYTES
        <= MAX_RECORD_BYTES
);
const _: () = assert!(LOG_MIN_BYTES <= LOG_DEFAULT_MIN_BYTES);
const _: () = assert!(LOG_DEFAULT_MIN_BYTES <= LOG_MAX_BYTES);
const _: () = assert!(LOG_MIN_BYTES % REGION_ALIGN_BYTES == 0);
const _: () = assert!(SUPERBLOCK_REGION_BYTES % REGION_ALIGN_BYTES == 0);
const _: () = assert!(REGION_ALIGN_BYTES % BLOCK_BYTES_U64 == 0);
const _: () = assert!(SQE_MAX_BYTES % BLOCK_BYTES == 0);
const _: () = assert!(POOL_MIN_BYTES.is_power_of_two() && POOL_MAX_BUF_BYTES.is_power_of_two());
const _: () = assert!(POOL_MAX_BUF_BYTES >= MAX_IO_BYTES as usize + 2 * BLOCK_BYTES as usize);
const _: () = assert!(RESERVED_BLOCKS < MIN_DATA_BLOCKS);
const _: () = assert!(MAX_EXTENT_BLOCKS as u64 * BLOCK_BYTES_U64 >= SQE_MAX_BYTES as u64);
