//! sheen-osd: one OST stored in one preallocated block file (Lustre: osd).
//!
//! The block file holds a superblock, two alternating checkpoint slots, a metadata log and the
//! data blocks (4 KiB each). Object data is written copy-on-write into fresh blocks; a change
//! becomes visible only when its log record is durable, and the blocks it replaced are freed
//! only after that. Every data block carries a crc32c in its object's block map, checked on
//! every read. fallocate preallocates blocks (flagged unwritten in the block map, reading as
//! zeros) that the first write into each fills in place, so that write needs no space. The
//! byte-level format, the commit protocol and what a crash at each step leaves behind are in
//! docs/osd-format.md.
//!
//! I/O goes through a small `BlockDev` trait: an io_uring engine (one submission per
//! request, O_DIRECT where the filesystem allows it) with a pread/pwrite fallback chosen
//! automatically, or forced with `SHEEN_OSD_ENGINE=sync`. Tests plug in in-memory and
//! power-loss-simulating devices. A `BlockCipher` hook (identity today) sits between
//! checksum and device for encryption at rest.
//!
//! Architecture invariants: no networking; the only dependency on Sheen crates is `sheen-wire`
//! for ids, attributes and errno; nothing read from disk is trusted before its crc32c matches,
//! and decoding never panics on bad bytes.
//!
//! Module map, outermost first: `osd` (the API and the data paths) → `commit` (group commit,
//! checkpoints) and `replay` (open) → `index` (objects and block maps), `alloc` (free space),
//! `record` / `checkpoint` / `format` (on-disk encodings over `codec`) → `dev` (engines).

mod alloc;
mod checkpoint;
mod cipher;
mod codec;
mod commit;
mod dev;
mod error;
mod format;
#[doc(hidden)]
pub mod fuzzing;
mod index;
pub mod limits;
mod locks;
mod osd;
mod rangelock;
mod record;
mod replay;

#[cfg(test)]
mod tests;

pub use error::OsdError;
pub use osd::{Osd, OsdLabel, OsdStatfs, PendingRead, ReadData};
