//! Opening: pick the newest valid checkpoint, then replay the log groups written after it.
//!
//! A group is replayed only if its header and body crcs match and it continues the chain
//! (checkpoint generation, next sequence number); the first group that does not is the end of
//! the log, which is how a torn last group is ignored. The data a group references was made
//! durable before the group was written (the data barrier in [`crate::commit`]), so replay
//! trusts it and leaves checking it to the reads.

use crate::codec::{align_up, u64_of, usize_of};
use crate::dev::{AlignedBuf, BlockDev, ReadIo};
use crate::error::OsdError;
use crate::format::Geometry;
use crate::index::Index;
use crate::limits::*;
use crate::record::{decode_records, group_bytes, GroupHeader, Record};

/// What replay found.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct ReplayStats {
    pub groups: u64,
    pub records: u64,
    pub next_seq: u64,
}

/// Reads the log region through a window, so replay does few large reads.
struct LogReader<'a> {
    dev: &'a dyn BlockDev,
    geo: &'a Geometry,
    start: u64,
    window: AlignedBuf,
}

impl<'a> LogReader<'a> {
    fn new(dev: &'a dyn BlockDev, geo: &'a Geometry) -> LogReader<'a> {
        LogReader {
            dev,
            geo,
            start: 0,
            window: AlignedBuf::zeroed(0),
        }
    }

    /// Bytes `[pos, pos + len)` of the log region; the caller keeps them inside the region.
    fn get(&mut self, pos: u64, len: u64) -> Result<&[u8], OsdError> {
        let end = pos + len;
        debug_assert!(end <= self.geo.log_bytes);
        let have = self.start + u64_of(self.window.len());
        if pos < self.start || end > have {
            let start = pos & !(BLOCK_BYTES_U64 - 1);
            let need = align_up(end - start, BLOCK_BYTES_U64).unwrap_or(u64::MAX);
            let want = need
                .max(LOG_READ_WINDOW_BYTES)
                .min(self.geo.log_bytes - start);
            let mut window = AlignedBuf::zeroed(usize_of(want));
            let offset = self.geo.log_offset + start;
            self.dev.read_at(&mut [ReadIo {
                offset,
                buf: &mut window,
            }])?;
            self.start = start;
            self.window = window;
        }
        let at = usize_of(pos - self.start);
        Ok(&self.window[at..at + usize_of(len)])
    }
}

/// Reads the group at `pos` if it is valid and continues the chain.
fn next_group(
    reader: &mut LogReader<'_>,
    pos: u64,
    generation: u64,
    seq: u64,
) -> Result<Option<(GroupHeader, Vec<Record>)>, OsdError> {
    let log_bytes = reader.geo.log_bytes;
    if pos + GROUP_HEADER_BYTES > log_bytes {
        return Ok(None);
    }
    let Some(h) = GroupHeader::decode(reader.get(pos, GROUP_HEADER_BYTES)?) else {
        return Ok(None);
    };
    let fits = h.body_bytes <= log_bytes - pos - GROUP_HEADER_BYTES;
    if h.generation != generation || h.first_seq != seq || h.n_records == 0 || !fits {
        return Ok(None);
    }
    let base = reader.geo.log_offset + pos + GROUP_HEADER_BYTES;
    let body = reader.get(pos + GROUP_HEADER_BYTES, h.body_bytes)?;
    if crc32c::crc32c(body) != h.body_crc {
        return Ok(None);
    }
    // The crc matched: a body that does not decode is corruption or a bug, not a torn write.
    let records = decode_records(body, h.n_records, base)?;
    Ok(Some((h, records)))
}

/// Replays the log after checkpoint `generation` into `index`.
pub(crate) fn replay(
    dev: &dyn BlockDev,
    geo: &Geometry,
    index: &mut Index,
    generation: u64,
    next_seq: u64,
) -> Result<ReplayStats, OsdError> {
    let mut reader = LogReader::new(dev, geo);
    let mut stats = ReplayStats {
        next_seq,
        ..ReplayStats::default()
    };
    let mut pos = 0u64;
    // Groups of a newer generation exist only once that checkpoint was flushed: if the log
    // starts with one, the newest checkpoint was damaged after the fact, not torn, and falling
    // back to the older one would silently lose everything since.
    if let Some(h) = GroupHeader::decode(reader.get(0, GROUP_HEADER_BYTES)?) {
        if h.generation > generation {
            return Err(OsdError::Corrupt(format!(
                "checkpoint {} is damaged: the log already holds generation {}",
                generation + 1,
                h.generation
            )));
        }
    }
    let mut freed = Vec::new();
    while let Some((h, records)) = next_group(&mut reader, pos, generation, stats.next_seq)? {
        for rec in &records {
            index.apply(rec, geo, &mut freed)?;
        }
        stats.groups += 1;
        stats.records += u64::from(h.n_records);
        pos += group_bytes(h.body_bytes);
        stats.next_seq = h.first_seq + u64::from(h.n_records);
    }
    Ok(stats)
}
