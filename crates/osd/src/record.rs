//! Metadata log records and the commit groups that carry them.
//!
//! A group is what one fdatasync makes durable: a 64-byte header at a block boundary (magic,
//! its own crc32c, generation, first sequence number, record count, body length and body
//! crc32c) followed by the records, padded with zeros to a whole block. A group is valid only
//! if both crcs match and its generation and sequence number continue the chain, so a torn
//! group reads as the end of the log. Records describe one change each and are applied in log
//! order by [`crate::index::Index::apply`], at run time and at replay alike.

use sheen_wire::msg::Timespec;
use sheen_wire::ObjId;

use crate::codec::{le_u32_at, u64_of, usize_of, Dec, Enc};
use crate::error::OsdError;
use crate::limits::*;

/// Magic at the start of every log group ("SGRP" little-endian).
pub(crate) const GROUP_MAGIC: u32 = u32::from_le_bytes(*b"SGRP");

const KIND_PRECREATE: u16 = 1;
const KIND_DESTROY: u16 = 2;
const KIND_WRITE: u16 = 3;
const KIND_PUNCH: u16 = 4;
const KIND_SET_MTIME: u16 = 5;
const KIND_PREALLOC: u16 = 6;
const KIND_PUNCH_HOLE: u16 = 7;

/// Set in the length field of a write record's extent: the extent was written in place into
/// preallocated blocks of the object (no allocation), and applying it clears their flag.
/// Lengths are at most `MAX_EXTENT_BLOCKS`, so a decoder from before this flag rejects such
/// an extent as corrupt rather than misreading it.
const EXTENT_IN_PLACE: u32 = 1 << 31;

const _: () = assert!(MAX_EXTENT_BLOCKS < EXTENT_IN_PLACE);

/// A run of freshly written blocks mapped into an object: logical blocks
/// `[logical, logical + crcs.len())` now live at physical blocks `[phys, ...)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct NewExtent {
    pub logical: u64,
    pub phys: u64,
    pub crcs: Vec<u32>,
    /// Written in place into blocks the object had preallocated at these logical blocks
    /// (rather than into freshly allocated ones).
    pub in_place: bool,
}

/// A run of blocks allocated ahead (fallocate): logical blocks `[logical, logical + len)`,
/// unmapped until now, are backed by physical blocks `[phys, ...)` that hold no data yet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct PreallocExtent {
    pub logical: u64,
    pub phys: u64,
    pub len: u32,
}

/// The block a shrinking punch rewrote: the old last block with its tail zeroed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct TailBlock {
    pub logical: u64,
    pub phys: u64,
    pub crc: u32,
}

/// One committed change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Record {
    /// Objects `first_oid..first_oid + count` now exist, empty, with mtime 0.
    Precreate {
        first_oid: ObjId,
        count: u32,
    },
    Destroy {
        oid: ObjId,
    },
    /// The extents replace whatever was mapped at their logical blocks; the size becomes
    /// `max(size, end)` and the mtime `max(mtime, mtime_of_write)`.
    Write {
        oid: ObjId,
        end: u64,
        mtime: Timespec,
        extents: Vec<NewExtent>,
    },
    /// The size becomes `size`; blocks wholly past it are unmapped; `tail` replaces the block
    /// holding the new end when the object shrank into a mapped block.
    Punch {
        oid: ObjId,
        size: u64,
        tail: Option<TailBlock>,
    },
    SetMtime {
        oid: ObjId,
        mtime: Timespec,
    },
    /// fallocate: the extents map unmapped blocks to preallocated ones (reading as zeros);
    /// the size becomes `max(size, end)` and, when that grows it, the mtime
    /// `max(mtime, mtime_of_fallocate)`.
    Prealloc {
        oid: ObjId,
        end: u64,
        mtime: Timespec,
        extents: Vec<PreallocExtent>,
    },
    /// fallocate's punch hole: logical blocks `[first_block, end_block)` are unmapped, then
    /// `extents` (the partly punched edge blocks, rewritten with zeros) replace what was
    /// mapped at theirs; the size stays, the mtime becomes `max(mtime, mtime_of_punch)`.
    PunchHole {
        oid: ObjId,
        first_block: u64,
        end_block: u64,
        mtime: Timespec,
        extents: Vec<NewExtent>,
    },
}

impl Record {
    /// The object a record changes (`None` for precreate).
    pub fn oid(&self) -> Option<ObjId> {
        match self {
            Record::Precreate { .. } => None,
            Record::Destroy { oid }
            | Record::Write { oid, .. }
            | Record::Punch { oid, .. }
            | Record::SetMtime { oid, .. }
            | Record::Prealloc { oid, .. }
            | Record::PunchHole { oid, .. } => Some(*oid),
        }
    }

    /// Every physical run of new data this record points at, with its crcs: what must be
    /// durable before the record is.
    pub fn new_blocks(&self) -> Vec<(u64, u64, &[u32])> {
        match self {
            Record::Write { extents, .. } | Record::PunchHole { extents, .. } => extents
                .iter()
                .map(|x| (x.logical, x.phys, x.crcs.as_slice()))
                .collect(),
            Record::Punch { tail: Some(t), .. } => {
                vec![(t.logical, t.phys, std::slice::from_ref(&t.crc))]
            }
            _ => Vec::new(),
        }
    }

    /// Every physical run `(start, length)` this record's maker took from the allocator:
    /// what goes back to it if the record is rejected. Blocks written in place are not
    /// among them (they stay the object's, still preallocated).
    pub fn allocated_runs(&self) -> Vec<(u64, u64)> {
        match self {
            Record::Write { extents, .. } | Record::PunchHole { extents, .. } => extents
                .iter()
                .filter(|x| !x.in_place)
                .map(|x| (x.phys, x.len_blocks()))
                .collect(),
            Record::Punch { tail: Some(t), .. } => vec![(t.phys, 1)],
            Record::Prealloc { extents, .. } => {
                extents.iter().map(|x| (x.phys, u64::from(x.len))).collect()
            }
            _ => Vec::new(),
        }
    }

    /// Appends the record (header, body, zero padding to 8 bytes) to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let start = out.len();
        let mut body = Vec::new();
        let mut e = Enc(&mut body);
        let kind = match self {
            Record::Precreate { first_oid, count } => {
                e.u64(*first_oid);
                e.u32(*count);
                e.u32(0);
                KIND_PRECREATE
            }
            Record::Destroy { oid } => {
                e.u64(*oid);
                KIND_DESTROY
            }
            Record::Write {
                oid,
                end,
                mtime,
                extents,
            } => {
                e.u64(*oid);
                e.u64(*end);
                e.timespec(*mtime);
                e.u32(0);
                e.u32(u32::try_from(extents.len()).expect("a write has at most MAX_IO_BLOCKS"));
                e.u32(0);
                encode_extents(&mut e, extents);
                KIND_WRITE
            }
            Record::Punch { oid, size, tail } => {
                e.u64(*oid);
                e.u64(*size);
                match tail {
                    Some(t) => {
                        e.u32(1);
                        e.u32(t.crc);
                        e.u64(t.logical);
                        e.u64(t.phys);
                    }
                    None => {
                        e.u32(0);
                        e.zeros(20);
                    }
                }
                KIND_PUNCH
            }
            Record::SetMtime { oid, mtime } => {
                e.u64(*oid);
                e.timespec(*mtime);
                e.u32(0);
                KIND_SET_MTIME
            }
            Record::Prealloc {
                oid,
                end,
                mtime,
                extents,
            } => {
                e.u64(*oid);
                e.u64(*end);
                e.timespec(*mtime);
                e.u32(0);
                e.u32(u32::try_from(extents.len()).expect("at most PREALLOC_RECORD_MAX_EXTENTS"));
                e.u32(0);
                for x in extents {
                    e.u64(x.logical);
                    e.u64(x.phys);
                    e.u32(x.len);
                }
                KIND_PREALLOC
            }
            Record::PunchHole {
                oid,
                first_block,
                end_block,
                mtime,
                extents,
            } => {
                e.u64(*oid);
                e.u64(*first_block);
                e.u64(*end_block);
                e.timespec(*mtime);
                e.u32(0);
                e.u32(u32::try_from(extents.len()).expect("a punch rewrites at most 2 blocks"));
                e.u32(0);
                encode_extents(&mut e, extents);
                KIND_PUNCH_HOLE
            }
        };
        let mut e = Enc(out);
        e.u16(kind);
        e.u16(0);
        e.u32(u32::try_from(body.len()).expect("records are bounded by MAX_RECORD_BYTES"));
        e.bytes(&body);
        let pad = (8 - (out.len() - start) % 8) % 8;
        Enc(out).zeros(pad);
        debug_assert!(u64_of(out.len() - start) <= MAX_RECORD_BYTES);
    }

    /// Decodes one record; `d` is left at the next record.
    pub fn decode(d: &mut Dec<'_>) -> Result<Record, OsdError> {
        let start = d.pos();
        let kind = d.u16()?;
        let _reserved = d.u16()?;
        let body_len = d.u32()?;
        if u64::from(body_len) > MAX_RECORD_BYTES {
            return Err(d.corrupt("record longer than MAX_RECORD_BYTES"));
        }
        let body = d.bytes(usize_of(u64::from(body_len)))?;
        let mut b = Dec::new(body, "log record body", 0);
        let rec = match kind {
            KIND_PRECREATE => {
                let first_oid = b.u64()?;
                let count = b.u32()?;
                b.u32()?;
                Record::Precreate { first_oid, count }
            }
            KIND_DESTROY => Record::Destroy { oid: b.u64()? },
            KIND_WRITE => {
                let oid = b.u64()?;
                let end = b.u64()?;
                let mtime = b.timespec()?;
                b.u32()?;
                let n_extents = b.u32()?;
                b.u32()?;
                if u64::from(n_extents) > MAX_IO_BLOCKS {
                    return Err(b.corrupt("too many extents in a write record"));
                }
                let extents = decode_extents(&mut b, n_extents)?;
                Record::Write {
                    oid,
                    end,
                    mtime,
                    extents,
                }
            }
            KIND_PUNCH => {
                let oid = b.u64()?;
                let size = b.u64()?;
                let has_tail = b.u32()?;
                let crc = b.u32()?;
                let logical = b.u64()?;
                let phys = b.u64()?;
                let tail = match has_tail {
                    0 => None,
                    1 => Some(TailBlock { logical, phys, crc }),
                    _ => return Err(b.corrupt("bad punch tail flag")),
                };
                Record::Punch { oid, size, tail }
            }
            KIND_SET_MTIME => {
                let oid = b.u64()?;
                let mtime = b.timespec()?;
                b.u32()?;
                Record::SetMtime { oid, mtime }
            }
            KIND_PREALLOC => {
                let oid = b.u64()?;
                let end = b.u64()?;
                let mtime = b.timespec()?;
                b.u32()?;
                let n_extents = b.u32()?;
                b.u32()?;
                if n_extents > PREALLOC_RECORD_MAX_EXTENTS {
                    return Err(b.corrupt("too many extents in a prealloc record"));
                }
                let mut extents = Vec::with_capacity(usize_of(u64::from(n_extents)));
                for _ in 0..n_extents {
                    let logical = b.u64()?;
                    let phys = b.u64()?;
                    let len = b.u32()?;
                    if len == 0 || len > MAX_EXTENT_BLOCKS {
                        return Err(b.corrupt("extent length out of range"));
                    }
                    extents.push(PreallocExtent { logical, phys, len });
                }
                Record::Prealloc {
                    oid,
                    end,
                    mtime,
                    extents,
                }
            }
            KIND_PUNCH_HOLE => {
                let oid = b.u64()?;
                let first_block = b.u64()?;
                let end_block = b.u64()?;
                let mtime = b.timespec()?;
                b.u32()?;
                let n_extents = b.u32()?;
                b.u32()?;
                if n_extents > 2 {
                    return Err(b.corrupt("too many extents in a punch-hole record"));
                }
                let extents = decode_extents(&mut b, n_extents)?;
                Record::PunchHole {
                    oid,
                    first_block,
                    end_block,
                    mtime,
                    extents,
                }
            }
            _ => return Err(d.corrupt("unknown record kind")),
        };
        b.finish()?;
        let used = d.pos() - start;
        d.bytes((8 - used % 8) % 8)?;
        Ok(rec)
    }
}

/// Extents of new data: logical block u64, physical block u64, length u32 (with
/// [`EXTENT_IN_PLACE`]), then one crc32c per block.
fn encode_extents(e: &mut Enc<'_>, extents: &[NewExtent]) {
    for x in extents {
        let len = u32::try_from(x.crcs.len()).expect("extents are at most 8192 blocks");
        e.u64(x.logical);
        e.u64(x.phys);
        e.u32(if x.in_place {
            len | EXTENT_IN_PLACE
        } else {
            len
        });
        for crc in &x.crcs {
            e.u32(*crc);
        }
    }
}

fn decode_extents(b: &mut Dec<'_>, n_extents: u32) -> Result<Vec<NewExtent>, OsdError> {
    let mut extents = Vec::with_capacity(usize_of(u64::from(n_extents)));
    for _ in 0..n_extents {
        let logical = b.u64()?;
        let phys = b.u64()?;
        let raw = b.u32()?;
        let in_place = raw & EXTENT_IN_PLACE != 0;
        let len = raw & !EXTENT_IN_PLACE;
        if len == 0 || len > MAX_EXTENT_BLOCKS {
            return Err(b.corrupt("extent length out of range"));
        }
        let mut crcs = Vec::with_capacity(usize_of(u64::from(len)));
        for _ in 0..len {
            crcs.push(b.u32()?);
        }
        extents.push(NewExtent {
            logical,
            phys,
            crcs,
            in_place,
        });
    }
    Ok(extents)
}

/// A decoded group header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct GroupHeader {
    pub generation: u64,
    pub first_seq: u64,
    pub n_records: u32,
    pub body_bytes: u64,
    pub body_crc: u32,
}

impl GroupHeader {
    /// Encodes a whole group: header, the `n_records` encoded records in `body`, zero padding
    /// to a block multiple.
    pub fn encode_group(generation: u64, first_seq: u64, n_records: u32, body: &[u8]) -> Vec<u8> {
        let header = GroupHeader {
            generation,
            first_seq,
            n_records,
            body_bytes: u64_of(body.len()),
            body_crc: crc32c::crc32c(body),
        };
        let mut out = Vec::with_capacity(usize_of(GROUP_HEADER_BYTES) + body.len());
        header.encode(&mut out);
        out.extend_from_slice(body);
        let total = group_bytes(u64_of(body.len()));
        out.resize(usize_of(total), 0);
        out
    }

    fn encode(&self, out: &mut Vec<u8>) {
        let start = out.len();
        let mut e = Enc(out);
        e.u32(GROUP_MAGIC);
        e.u32(0); // crc, filled in below
        e.u64(self.generation);
        e.u64(self.first_seq);
        e.u32(self.n_records);
        e.u32(0);
        e.u64(self.body_bytes);
        e.u32(self.body_crc);
        e.zeros(usize_of(GROUP_HEADER_BYTES) - 44);
        let crc = crc32c::crc32c(&out[start + 8..start + usize_of(GROUP_HEADER_BYTES)]);
        out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    }

    /// Reads a group header; `None` when the bytes are not a valid header (end of log).
    pub fn decode(buf: &[u8]) -> Option<GroupHeader> {
        let header = buf.get(..usize_of(GROUP_HEADER_BYTES))?;
        if le_u32_at(header, 0)? != GROUP_MAGIC {
            return None;
        }
        if le_u32_at(header, 4)? != crc32c::crc32c(header.get(8..)?) {
            return None;
        }
        let mut d = Dec::new(header.get(8..)?, "log group header", 8);
        let generation = d.u64().ok()?;
        let first_seq = d.u64().ok()?;
        let n_records = d.u32().ok()?;
        d.u32().ok()?;
        let body_bytes = d.u64().ok()?;
        let body_crc = d.u32().ok()?;
        Some(GroupHeader {
            generation,
            first_seq,
            n_records,
            body_bytes,
            body_crc,
        })
    }
}

/// Bytes a group with `body_bytes` of records occupies in the log (a block multiple).
pub(crate) fn group_bytes(body_bytes: u64) -> u64 {
    let raw = GROUP_HEADER_BYTES + body_bytes;
    raw.div_ceil(BLOCK_BYTES_U64) * BLOCK_BYTES_U64
}

/// Decodes the records of a group body whose crc has been checked.
pub(crate) fn decode_records(
    body: &[u8],
    n_records: u32,
    base: u64,
) -> Result<Vec<Record>, OsdError> {
    let mut d = Dec::new(body, "log group body", base);
    let mut out = Vec::new();
    for _ in 0..n_records {
        out.push(Record::decode(&mut d)?);
    }
    d.finish()?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples() -> Vec<Record> {
        vec![
            Record::Precreate {
                first_oid: 1,
                count: 64,
            },
            Record::Destroy { oid: 9 },
            Record::Write {
                oid: 3,
                end: 12345,
                mtime: Timespec { sec: 17, nsec: 5 },
                extents: vec![
                    NewExtent {
                        logical: 0,
                        phys: 100,
                        crcs: vec![1, 2, 3],
                        in_place: false,
                    },
                    NewExtent {
                        logical: 3,
                        phys: 7,
                        crcs: vec![4],
                        in_place: false,
                    },
                ],
            },
            Record::Punch {
                oid: 3,
                size: 4097,
                tail: Some(TailBlock {
                    logical: 1,
                    phys: 8,
                    crc: 5,
                }),
            },
            Record::Punch {
                oid: 3,
                size: 0,
                tail: None,
            },
            Record::SetMtime {
                oid: 3,
                mtime: Timespec { sec: -4, nsec: 999 },
            },
            Record::Prealloc {
                oid: 4,
                end: 0,
                mtime: Timespec { sec: 2, nsec: 1 },
                extents: vec![
                    PreallocExtent {
                        logical: 0,
                        phys: 50,
                        len: MAX_EXTENT_BLOCKS,
                    },
                    PreallocExtent {
                        logical: 9000,
                        phys: 7,
                        len: 1,
                    },
                ],
            },
            Record::Write {
                oid: 4,
                end: 10,
                mtime: Timespec { sec: 3, nsec: 0 },
                extents: vec![NewExtent {
                    logical: 0,
                    phys: 50,
                    crcs: vec![9],
                    in_place: true,
                }],
            },
            Record::PunchHole {
                oid: 4,
                first_block: 1,
                end_block: u64::MAX,
                mtime: Timespec { sec: 3, nsec: 0 },
                extents: Vec::new(),
            },
        ]
    }

    #[test]
    fn records_round_trip() {
        for rec in samples() {
            let mut buf = Vec::new();
            rec.encode(&mut buf);
            assert_eq!(buf.len() % 8, 0);
            let mut d = Dec::new(&buf, "t", 0);
            assert_eq!(Record::decode(&mut d).unwrap(), rec);
            d.finish().unwrap();
        }
    }

    #[test]
    fn group_round_trip_and_torn_group() {
        let recs = samples();
        let mut body = Vec::new();
        for rec in &recs {
            rec.encode(&mut body);
        }
        let n = u32::try_from(recs.len()).unwrap();
        let group = GroupHeader::encode_group(5, 100, n, &body);
        assert_eq!(u64_of(group.len()) % BLOCK_BYTES_U64, 0);
        let h = GroupHeader::decode(&group).unwrap();
        assert_eq!((h.generation, h.first_seq, h.n_records), (5, 100, n));
        let body = &group[64..64 + usize_of(h.body_bytes)];
        assert_eq!(crc32c::crc32c(body), h.body_crc);
        assert_eq!(decode_records(body, h.n_records, 64).unwrap(), recs);
        // Any flipped header byte invalidates the header.
        for at in [0, 5, 9, 20, 30, 40] {
            let mut bad = group.clone();
            bad[at] ^= 0x10;
            assert_eq!(GroupHeader::decode(&bad), None, "byte {at}");
        }
        assert_eq!(GroupHeader::decode(&[0u8; 64]), None);
        assert_eq!(GroupHeader::decode(&group[..10]), None);
    }

    #[test]
    fn garbage_records_are_errors_not_panics() {
        let mut buf = Vec::new();
        samples()[2].encode(&mut buf);
        for cut in 0..buf.len() {
            let mut d = Dec::new(&buf[..cut], "t", 0);
            assert!(Record::decode(&mut d).is_err(), "cut {cut}");
        }
        let mut bad = buf.clone();
        bad[0] = 99;
        assert!(Record::decode(&mut Dec::new(&bad, "t", 0)).is_err());
        // The in-place flag is the top bit of an extent length; other high bits are corrupt.
        let mut buf = Vec::new();
        samples()[7].encode(&mut buf);
        let len_at = 8 + 40 + 16;
        assert_eq!(buf[len_at + 3], 0x80, "in-place flag");
        let mut bad = buf.clone();
        bad[len_at + 3] = 0x40;
        assert!(Record::decode(&mut Dec::new(&bad, "t", 0)).is_err());
        let mut buf = Vec::new();
        samples()[6].encode(&mut buf);
        for cut in 0..buf.len() {
            let mut d = Dec::new(&buf[..cut], "t", 0);
            assert!(Record::decode(&mut d).is_err(), "cut {cut}");
        }
    }

    #[test]
    fn largest_record_fits_the_bound() {
        let extents = (0..MAX_IO_BLOCKS)
            .map(|i| NewExtent {
                logical: i,
                phys: i * 2,
                crcs: vec![0],
                in_place: false,
            })
            .collect();
        let rec = Record::Write {
            oid: 1,
            end: 1,
            mtime: Timespec::default(),
            extents,
        };
        let mut buf = Vec::new();
        rec.encode(&mut buf);
        assert!(u64_of(buf.len()) <= MAX_RECORD_BYTES);
    }
}
