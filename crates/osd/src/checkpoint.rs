//! Checkpoints: the whole object index, written into one of two alternating slots.
//!
//! Generation `g` goes to slot `g % 2`, so the previous checkpoint stays intact while the new
//! one is written. A slot holds a header block (magic, generation, the first log sequence
//! number after it, body length and crc32c, header crc32c) and then the body. `open` takes the
//! valid slot with the higher generation; a torn checkpoint fails its crc and is ignored.

use std::collections::BTreeMap;

use sheen_wire::ObjId;

use crate::codec::{u64_of, usize_of, Dec, Enc};
use crate::error::OsdError;
use crate::format::{checkpoint_bound_bytes, Geometry};
use crate::index::{blocks_for, Extent, Index, Object};
use crate::limits::*;

/// Magic at the start of a checkpoint slot.
pub(crate) const CKPT_MAGIC: [u8; 8] = *b"SHEENCKP";
/// Encoded header length; its crc32c covers bytes `[0, 60)` and sits at 60.
pub(crate) const HEADER_USED_BYTES: usize = 64;

/// Set in an extent's length field: the extent is preallocated (fallocate) and no crcs
/// follow it. Lengths are at most `MAX_EXTENT_BLOCKS`, so a decoder from before this flag
/// rejects such an extent as corrupt rather than misreading it.
const EXTENT_PREALLOC: u32 = 1 << 31;

const _: () = assert!(MAX_EXTENT_BLOCKS < EXTENT_PREALLOC);

/// A checkpoint's header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct CkptHeader {
    pub generation: u64,
    /// Sequence number of the first log record written after this checkpoint.
    pub next_seq: u64,
    pub body_bytes: u64,
    pub body_crc: u32,
}

impl CkptHeader {
    fn encode(&self, out: &mut Vec<u8>) {
        let start = out.len();
        let mut e = Enc(out);
        e.bytes(&CKPT_MAGIC);
        e.u64(self.generation);
        e.u64(self.next_seq);
        e.u64(self.body_bytes);
        e.u32(self.body_crc);
        e.zeros(HEADER_USED_BYTES - 4 - 36);
        let crc = crc32c::crc32c(&out[start..start + HEADER_USED_BYTES - 4]);
        Enc(out).u32(crc);
    }

    /// Reads a header; `None` if the magic or crc is wrong (never written, or torn).
    pub fn decode(buf: &[u8]) -> Option<CkptHeader> {
        let header = buf.get(..HEADER_USED_BYTES)?;
        let (covered, crc) = header.split_at(HEADER_USED_BYTES - 4);
        if u32::from_le_bytes(crc.try_into().ok()?) != crc32c::crc32c(covered) {
            return None;
        }
        let mut d = Dec::new(covered, "checkpoint header", 0);
        if d.bytes(8).ok()? != CKPT_MAGIC {
            return None;
        }
        Some(CkptHeader {
            generation: d.u64().ok()?,
            next_seq: d.u64().ok()?,
            body_bytes: d.u64().ok()?,
            body_crc: d.u32().ok()?,
        })
    }
}

/// Encodes a full slot image (header block, then body), padded to whole blocks.
pub(crate) fn encode(
    index: &Index,
    generation: u64,
    next_seq: u64,
    geo: &Geometry,
) -> Result<Vec<u8>, OsdError> {
    let mut body = Vec::new();
    let mut e = Enc(&mut body);
    e.u64(index.next_oid);
    e.u64(u64_of(index.objects.len()));
    for (oid, obj) in &index.objects {
        e.u64(*oid);
        e.u64(obj.size);
        e.timespec(obj.mtime);
        e.u32(u32::try_from(obj.map.n_extents()).map_err(|_| too_big())?);
        for (logical, x) in obj.map.extents() {
            let len = u32::try_from(x.crcs.len()).map_err(|_| too_big())?;
            e.u64(logical);
            e.u64(x.phys);
            if x.prealloc {
                // No crcs: preallocated blocks hold no data.
                e.u32(len | EXTENT_PREALLOC);
                continue;
            }
            e.u32(len);
            for crc in &x.crcs {
                e.u32(*crc);
            }
        }
    }
    // The bound is an invariant (max_objects, data blocks); exceeding it would be our bug.
    if u64_of(body.len()) + CKPT_HEADER_BYTES > geo.ckpt_slot_bytes {
        return Err(too_big());
    }
    let header = CkptHeader {
        generation,
        next_seq,
        body_bytes: u64_of(body.len()),
        body_crc: crc32c::crc32c(&body),
    };
    let mut out = Vec::with_capacity(usize_of(CKPT_HEADER_BYTES) + body.len());
    header.encode(&mut out);
    out.resize(usize_of(CKPT_HEADER_BYTES), 0);
    out.extend_from_slice(&body);
    let total = u64_of(out.len()).div_ceil(BLOCK_BYTES_U64) * BLOCK_BYTES_U64;
    out.resize(usize_of(total), 0);
    Ok(out)
}

fn too_big() -> OsdError {
    OsdError::Corrupt("checkpoint: index larger than its slot (bound violated)".into())
}

/// Decodes and validates a checkpoint body. `base` is its disk offset, for messages.
pub(crate) fn decode_body(body: &[u8], geo: &Geometry, base: u64) -> Result<Index, OsdError> {
    let mut d = Dec::new(body, "checkpoint body", base);
    let next_oid = d.u64()?;
    let n_objects = d.u64()?;
    if next_oid == 0 || n_objects > geo.max_objects {
        return Err(d.corrupt("object count or next id out of range"));
    }
    let mut objects = BTreeMap::new();
    let mut prev: ObjId = 0;
    let limit_blocks = blocks_for(MAX_OBJECT_BYTES);
    let mut mapped_blocks = 0u64;
    for _ in 0..n_objects {
        let oid = d.u64()?;
        if oid <= prev || oid >= next_oid {
            return Err(d.corrupt("object ids out of order or not below next id"));
        }
        prev = oid;
        let size = d.u64()?;
        if size > MAX_OBJECT_BYTES {
            return Err(d.corrupt("object size too large"));
        }
        let mtime = d.timespec()?;
        let n_extents = d.u32()?;
        let mut obj = Object {
            size,
            mtime,
            ..Object::default()
        };
        for _ in 0..n_extents {
            let logical = d.u64()?;
            let phys = d.u64()?;
            let raw = d.u32()?;
            let prealloc = raw & EXTENT_PREALLOC != 0;
            let len = raw & !EXTENT_PREALLOC;
            if len == 0 || len > MAX_EXTENT_BLOCKS {
                return Err(d.corrupt("extent length out of range"));
            }
            let len64 = u64::from(len);
            let in_device = phys
                .checked_add(len64)
                .is_some_and(|e| e <= geo.data_blocks);
            // Preallocated blocks may lie past the size (FALLOC_FL_KEEP_SIZE).
            let object_blocks = if prealloc {
                limit_blocks
            } else {
                blocks_for(size)
            };
            let in_object = logical
                .checked_add(len64)
                .is_some_and(|e| e <= object_blocks);
            if !in_device || !in_object || logical >= limit_blocks {
                return Err(d.corrupt("extent outside the device or past the object's size"));
            }
            // Every mapped block is a distinct data block; this also bounds what the crcs of
            // preallocated extents (which take no bytes here) make us allocate.
            mapped_blocks += len64;
            if mapped_blocks > geo.data_blocks {
                return Err(d.corrupt("more blocks mapped than the device holds"));
            }
            let crcs = if prealloc {
                vec![0; usize_of(len64)]
            } else {
                // Each crc needs 4 bytes: check before allocating.
                if d.remaining() < usize_of(len64 * 4) {
                    return Err(d.corrupt("truncated extent"));
                }
                let mut crcs = Vec::with_capacity(usize_of(len64));
                for _ in 0..len {
                    crcs.push(d.u32()?);
                }
                crcs
            };
            let x = Extent {
                phys,
                crcs,
                prealloc,
            };
            obj.map.push_checked(logical, x).map_err(|e| d.corrupt(e))?;
        }
        objects.insert(oid, obj);
    }
    d.finish()?;
    debug_assert!(checkpoint_bound_bytes(geo.data_blocks, geo.max_objects)
        .is_some_and(|b| b >= u64_of(body.len())));
    Ok(Index { objects, next_oid })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{NewExtent, Record};
    use sheen_wire::msg::Timespec;

    fn sample(geo: &Geometry) -> Index {
        let mut idx = Index::default();
        let mut freed = Vec::new();
        idx.apply(
            &Record::Precreate {
                first_oid: 1,
                count: 5,
            },
            geo,
            &mut freed,
        )
        .unwrap();
        let rec = Record::Write {
            oid: 3,
            end: 5 * 4096,
            mtime: Timespec { sec: 9, nsec: 8 },
            extents: vec![
                NewExtent {
                    logical: 0,
                    phys: 10,
                    crcs: vec![1, 2],
                    in_place: false,
                },
                NewExtent {
                    logical: 4,
                    phys: 20,
                    crcs: vec![3],
                    in_place: false,
                },
            ],
        };
        idx.apply(&rec, geo, &mut freed).unwrap();
        idx.apply(&Record::Destroy { oid: 2 }, geo, &mut freed)
            .unwrap();
        idx
    }

    #[test]
    fn round_trip() {
        let geo = Geometry::for_device(64 << 20, None).unwrap();
        let idx = sample(&geo);
        let slot = encode(&idx, 7, 99, &geo).unwrap();
        assert_eq!(u64_of(slot.len()) % BLOCK_BYTES_U64, 0);
        let h = CkptHeader::decode(&slot).unwrap();
        assert_eq!((h.generation, h.next_seq), (7, 99));
        let body = &slot[4096..4096 + usize_of(h.body_bytes)];
        assert_eq!(crc32c::crc32c(body), h.body_crc);
        assert_eq!(decode_body(body, &geo, 0).unwrap(), idx);
    }

    #[test]
    fn damage_is_detected() {
        let geo = Geometry::for_device(64 << 20, None).unwrap();
        let slot = encode(&sample(&geo), 7, 99, &geo).unwrap();
        for at in [0, 8, 16, 24, 32, 61] {
            let mut bad = slot.clone();
            bad[at] ^= 4;
            assert_eq!(CkptHeader::decode(&bad), None, "byte {at}");
        }
        let h = CkptHeader::decode(&slot).unwrap();
        let body = &slot[4096..4096 + usize_of(h.body_bytes)];
        for cut in 0..body.len() {
            assert!(decode_body(&body[..cut], &geo, 0).is_err(), "cut {cut}");
        }
        // A crc-valid body with an extent past the device is still rejected.
        let mut idx = sample(&geo);
        let mut freed = Vec::new();
        let far = Record::Write {
            oid: 1,
            end: 4096,
            mtime: Timespec::default(),
            extents: vec![NewExtent {
                logical: 0,
                phys: geo.data_blocks - 1,
                crcs: vec![0],
                in_place: false,
            }],
        };
        idx.apply(&far, &geo, &mut freed).unwrap();
        let mut small = geo.clone();
        small.data_blocks -= 1;
        let slot = encode(&idx, 1, 1, &geo).unwrap();
        let h = CkptHeader::decode(&slot).unwrap();
        let body = &slot[4096..4096 + usize_of(h.body_bytes)];
        assert!(matches!(
            decode_body(body, &small, 0),
            Err(OsdError::Corrupt(_))
        ));
    }
}
