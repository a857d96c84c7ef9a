//! Pure planning of striped I/O [lov]: which object extents to read or write for a file
//! extent, and how the pieces read come back together. No I/O here, so all of it is unit
//! tested.
//!
//! Reads go per object: for a contiguous file extent, the bytes of each stripe object are
//! themselves one contiguous object extent (whole stripe units in between), so a read sends
//! each object one extent cut into RPCs of at most `max_rpc_bytes`, and scatters the replies
//! into the caller's buffer. Writes go per stripe unit instead, because each RPC's bulk must
//! be one slice of the caller's `Bytes` (no copies); units contiguous in the object (a
//! single-stripe file) are merged first.

use std::collections::BTreeMap;

use bytes::{Bytes, BytesMut};
use sheen_layout::Geometry;

/// One RPC's worth of an object: `len` bytes at `obj_offset` of stripe `stripe_idx`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ObjExtent {
    pub stripe_idx: u32,
    pub obj_offset: u64,
    pub len: u64,
}

/// One write RPC: the bytes `[buf_offset, buf_offset + len)` of the caller's data go to
/// `obj_offset` of stripe `stripe_idx`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WritePiece {
    pub stripe_idx: u32,
    pub obj_offset: u64,
    pub buf_offset: u64,
    pub len: u64,
}

/// The RPCs that read the file extent `[offset, offset + len)`: per object one contiguous
/// extent, cut into pieces of at most `max_rpc_bytes`, in stripe order.
pub fn plan_read(geom: &Geometry, offset: u64, len: u64, max_rpc_bytes: u64) -> Vec<ObjExtent> {
    debug_assert!(max_rpc_bytes > 0);
    let max_rpc_bytes = max_rpc_bytes.max(1);
    let mut per_object: BTreeMap<u32, (u64, u64)> = BTreeMap::new();
    for chunk in geom.split(offset, len) {
        let end = chunk.obj_offset + chunk.len;
        per_object
            .entry(chunk.stripe_idx)
            .and_modify(|(s, e)| {
                *s = (*s).min(chunk.obj_offset);
                *e = (*e).max(end);
            })
            .or_insert((chunk.obj_offset, end));
    }
    let mut out = Vec::new();
    for (stripe_idx, (start, end)) in per_object {
        let mut pos = start;
        while pos < end {
            let n = (end - pos).min(max_rpc_bytes);
            out.push(ObjExtent {
                stripe_idx,
                obj_offset: pos,
                len: n,
            });
            pos += n;
        }
    }
    debug_assert_eq!(out.iter().map(|e| e.len).sum::<u64>(), len);
    out
}

/// Puts the replies of the RPCs of [`plan_read`] together into the file extent
/// `[offset, offset + len)`. `data[i]` answers `rpcs[i]` and may be shorter than asked (the
/// object ends there): what no reply covers reads as zeros (a sparse or short object inside
/// the file size). A single reply that covers the whole extent is returned as is, no copy.
pub fn assemble_read(
    geom: &Geometry,
    offset: u64,
    len: u64,
    rpcs: &[ObjExtent],
    mut data: Vec<Bytes>,
) -> Bytes {
    debug_assert_eq!(rpcs.len(), data.len());
    if rpcs.len() == 1 && data.len() == 1 && data[0].len() as u64 == len {
        if let Some(only) = data.pop() {
            return only;
        }
    }
    let Ok(len_usize) = usize::try_from(len) else {
        return Bytes::new();
    };
    let mut buf = BytesMut::zeroed(len_usize);
    let end = offset + len;
    for (rpc, piece) in rpcs.iter().zip(data.iter()) {
        let piece_len = (piece.len() as u64).min(rpc.len);
        let mut pos = 0u64;
        while pos < piece_len {
            let obj_offset = rpc.obj_offset + pos;
            let unit_left = geom.stripe_size - obj_offset % geom.stripe_size;
            let n = unit_left.min(piece_len - pos);
            let file_start = geom.object_to_file(rpc.stripe_idx, obj_offset);
            let file_end = file_start + n;
            // Clip to the extent asked for (a correct plan never needs it).
            let lo = file_start.max(offset);
            let hi = file_end.min(end);
            if lo < hi {
                let src = (pos + (lo - file_start)) as usize;
                let dst = (lo - offset) as usize;
                let count = (hi - lo) as usize;
                if let (Some(to), Some(from)) =
                    (buf.get_mut(dst..dst + count), piece.get(src..src + count))
                {
                    to.copy_from_slice(from);
                }
            }
            pos += n;
        }
    }
    buf.freeze()
}

/// The RPCs that write `len` bytes of the caller's buffer at file offset `offset`: one per
/// stripe unit (merged while contiguous in the object), each at most `max_rpc_bytes`.
pub fn plan_write(geom: &Geometry, offset: u64, len: u64, max_rpc_bytes: u64) -> Vec<WritePiece> {
    debug_assert!(max_rpc_bytes > 0);
    let max_rpc_bytes = max_rpc_bytes.max(1);
    let mut merged: Vec<WritePiece> = Vec::new();
    for chunk in geom.split(offset, len) {
        let buf_offset = chunk.file_offset - offset;
        if let Some(last) = merged.last_mut() {
            if last.stripe_idx == chunk.stripe_idx
                && last.obj_offset + last.len == chunk.obj_offset
                && last.buf_offset + last.len == buf_offset
            {
                last.len += chunk.len;
                continue;
            }
        }
        merged.push(WritePiece {
            stripe_idx: chunk.stripe_idx,
            obj_offset: chunk.obj_offset,
            buf_offset,
            len: chunk.len,
        });
    }
    let mut out = Vec::with_capacity(merged.len());
    for piece in merged {
        let mut done = 0;
        while done < piece.len {
            let n = (piece.len - done).min(max_rpc_bytes);
            out.push(WritePiece {
                stripe_idx: piece.stripe_idx,
                obj_offset: piece.obj_offset + done,
                buf_offset: piece.buf_offset + done,
                len: n,
            });
            done += n;
        }
    }
    debug_assert_eq!(out.iter().map(|p| p.len).sum::<u64>(), len);
    out
}

/// Each object's part of the file extent `[offset, offset + len)`, whole: the bytes the
/// object holds of the file below the end and not below the start, one contiguous object
/// extent per object that has any (in stripe order). Computed from the stripe geometry, not
/// enumerated unit by unit, so a fallocate of terabytes costs as little as one of a page.
pub fn plan_range(geom: &Geometry, offset: u64, len: u64) -> Vec<ObjExtent> {
    let end = offset.saturating_add(len);
    (0..geom.stripe_count)
        .filter_map(|stripe_idx| {
            let start = geom.object_size(stripe_idx, offset);
            let stop = geom.object_size(stripe_idx, end);
            (stop > start).then_some(ObjExtent {
                stripe_idx,
                obj_offset: start,
                len: stop - start,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const KIB: u64 = 1 << 10;
    const MIB: u64 = 1 << 20;

    /// Objects of a file held in memory, to check reads against writes.
    struct Objects {
        geom: Geometry,
        objects: Vec<Vec<u8>>,
    }

    impl Objects {
        fn new(geom: Geometry) -> Objects {
            Objects {
                geom,
                objects: vec![Vec::new(); geom.stripe_count as usize],
            }
        }

        fn write(&mut self, offset: u64, data: &[u8], max_rpc: u64) {
            for p in plan_write(&self.geom, offset, data.len() as u64, max_rpc) {
                assert!(p.len <= max_rpc);
                let obj = &mut self.objects[p.stripe_idx as usize];
                let end = (p.obj_offset + p.len) as usize;
                if obj.len() < end {
                    obj.resize(end, 0);
                }
                let src = &data[p.buf_offset as usize..(p.buf_offset + p.len) as usize];
                obj[p.obj_offset as usize..end].copy_from_slice(src);
            }
        }

        fn read(&self, offset: u64, len: u64, max_rpc: u64) -> Bytes {
            let rpcs = plan_read(&self.geom, offset, len, max_rpc);
            let data = rpcs
                .iter()
                .map(|r| {
                    assert!(r.len <= max_rpc);
                    let obj = &self.objects[r.stripe_idx as usize];
                    let start = (r.obj_offset as usize).min(obj.len());
                    let end = ((r.obj_offset + r.len) as usize).min(obj.len());
                    Bytes::copy_from_slice(&obj[start..end])
                })
                .collect();
            assemble_read(&self.geom, offset, len, &rpcs, data)
        }
    }

    fn pattern(len: usize, seed: u32) -> Vec<u8> {
        let mut x = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
        (0..len)
            .map(|_| {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                (x >> 16) as u8
            })
            .collect()
    }

    #[test]
    fn range_plan_matches_the_read_plan_and_scales() {
        for (stripe_size, count) in [(64 * KIB, 4), (MIB, 2), (64 * KIB, 1), (MIB, 3)] {
            let g = Geometry::new(stripe_size, count).unwrap();
            for (offset, len) in [(0, 1), (5, 3 * MIB), (MIB - 1, 2), (7 * KIB, 10 * MIB + 3)] {
                let whole = plan_range(&g, offset, len);
                assert_eq!(
                    whole,
                    plan_read(&g, offset, len, u64::MAX),
                    "{offset}+{len}"
                );
                assert_eq!(whole.iter().map(|e| e.len).sum::<u64>(), len);
            }
        }
        // Terabytes over four objects: one extent each, a quarter of the range.
        let g = Geometry::new(MIB, 4).unwrap();
        let whole = plan_range(&g, 0, 1 << 42);
        assert_eq!(whole.len(), 4);
        assert!(whole.iter().all(|e| e.obj_offset == 0 && e.len == 1 << 40));
        assert!(plan_range(&g, 9, 0).is_empty());
    }

    #[test]
    fn read_plan_is_one_extent_per_object() {
        let g = Geometry::new(64 * KIB, 4).unwrap();
        // 1 MiB from 0: 16 units, 4 per object, each object one 256 KiB extent.
        let rpcs = plan_read(&g, 0, MIB, MIB);
        assert_eq!(rpcs.len(), 4);
        for (i, r) in rpcs.iter().enumerate() {
            assert_eq!(
                *r,
                ObjExtent {
                    stripe_idx: i as u32,
                    obj_offset: 0,
                    len: 256 * KIB
                }
            );
        }
        // A single-stripe file read in 1 MiB RPCs.
        let g1 = Geometry::new(64 * KIB, 1).unwrap();
        let rpcs = plan_read(&g1, 10, 3 * MIB, MIB);
        assert_eq!(rpcs.len(), 3);
        assert_eq!(
            rpcs[2],
            ObjExtent {
                stripe_idx: 0,
                obj_offset: 10 + 2 * MIB,
                len: MIB
            }
        );
        assert!(plan_read(&g1, 5, 0, MIB).is_empty());
    }

    #[test]
    fn write_plan_slices_the_buffer_in_order() {
        let g = Geometry::new(MIB, 2).unwrap();
        let pieces = plan_write(&g, MIB / 2, 2 * MIB, MIB);
        assert_eq!(
            pieces,
            vec![
                WritePiece {
                    stripe_idx: 0,
                    obj_offset: MIB / 2,
                    buf_offset: 0,
                    len: MIB / 2
                },
                WritePiece {
                    stripe_idx: 1,
                    obj_offset: 0,
                    buf_offset: MIB / 2,
                    len: MIB
                },
                WritePiece {
                    stripe_idx: 0,
                    obj_offset: MIB,
                    buf_offset: 3 * MIB / 2,
                    len: MIB / 2
                },
            ]
        );
        // One stripe with small units: merged, then cut at the RPC size.
        let g1 = Geometry::new(64 * KIB, 1).unwrap();
        let pieces = plan_write(&g1, 0, 3 * MIB / 2, MIB);
        assert_eq!(pieces.len(), 2);
        assert_eq!(
            pieces[1],
            WritePiece {
                stripe_idx: 0,
                obj_offset: MIB,
                buf_offset: MIB,
                len: MIB / 2
            }
        );
    }

    #[test]
    fn single_piece_is_returned_without_copy() {
        let g = Geometry::new(MIB, 4).unwrap();
        let rpcs = plan_read(&g, MIB + 100, 4000, MIB);
        assert_eq!(rpcs.len(), 1);
        let piece = Bytes::from(pattern(4000, 1));
        let ptr = piece.as_ptr();
        let out = assemble_read(&g, MIB + 100, 4000, &rpcs, vec![piece]);
        assert_eq!(out.as_ptr(), ptr);
    }

    #[test]
    fn short_and_missing_pieces_read_as_zeros() {
        let g = Geometry::new(64 * KIB, 2).unwrap();
        // Object 1 is empty (a hole over its units); object 0 ends 1000 bytes into its
        // second unit.
        let rpcs = plan_read(&g, 0, 256 * KIB, MIB);
        assert_eq!(rpcs.len(), 2);
        let obj0 = pattern((64 * KIB + 1000) as usize, 7);
        let out = assemble_read(
            &g,
            0,
            256 * KIB,
            &rpcs,
            vec![Bytes::from(obj0.clone()), Bytes::new()],
        );
        assert_eq!(out.len() as u64, 256 * KIB);
        assert_eq!(&out[..64 * KIB as usize], &obj0[..64 * KIB as usize]);
        assert!(out[64 * KIB as usize..128 * KIB as usize]
            .iter()
            .all(|&b| b == 0));
        assert_eq!(
            &out[128 * KIB as usize..(128 * KIB + 1000) as usize],
            &obj0[64 * KIB as usize..]
        );
        assert!(out[(128 * KIB + 1000) as usize..].iter().all(|&b| b == 0));
        // A single short piece is padded with zeros.
        let rpcs = plan_read(&g, 0, 1000, MIB);
        let out = assemble_read(&g, 0, 1000, &rpcs, vec![Bytes::from_static(b"abc")]);
        assert_eq!(&out[..3], b"abc");
        assert!(out[3..].iter().all(|&b| b == 0));
        assert_eq!(out.len(), 1000);
    }

    #[test]
    fn reads_return_what_was_written() {
        let layouts = [(64 * KIB, 1), (64 * KIB, 3), (MIB, 4), (128 * KIB, 2)];
        for (case, &(stripe_size, count)) in layouts.iter().enumerate() {
            let g = Geometry::new(stripe_size, count).unwrap();
            let mut objs = Objects::new(g);
            let size = 3 * MIB + 12_345;
            let mut file = vec![0u8; size as usize];
            // Writes of odd sizes at odd offsets, with small and large RPC limits.
            let writes = [
                (0u64, 700_000u64),
                (650_000, 1_500_000),
                (2_900_000, size - 2_900_000),
            ];
            for (i, &(off, len)) in writes.iter().enumerate() {
                let data = pattern(len as usize, (case * 10 + i) as u32);
                let max_rpc = if i % 2 == 0 { 256 * KIB } else { MIB };
                objs.write(off, &data, max_rpc);
                file[off as usize..(off + len) as usize].copy_from_slice(&data);
            }
            for &(off, len) in &[
                (0, size),
                (1, 10),
                (64 * KIB - 1, 2),
                (MIB + 3, 2 * MIB),
                (size - 5, 5),
            ] {
                for max_rpc in [64 * KIB, MIB] {
                    let got = objs.read(off, len, max_rpc);
                    assert_eq!(
                        &got[..],
                        &file[off as usize..(off + len) as usize],
                        "layout {case} off {off} len {len} rpc {max_rpc}"
                    );
                }
            }
        }
    }
}
