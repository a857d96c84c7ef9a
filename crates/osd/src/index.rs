//! The object index: every object's size, mtime and block map, held in memory.
//!
//! It is rebuilt at open from the newest checkpoint plus the log, and changed only by
//! [`Index::apply`], which validates a record completely before touching anything, so a bad
//! record (corruption at replay, or a bug at run time) leaves the index as it was.
//!
//! Invariant: an object maps no written block at or past `ceil(size / BLOCK_BYTES)`, and the
//! bytes of its last written block past `size` are zero. Writes and punches keep it; reads and
//! partial writes rely on it. Preallocated blocks (fallocate) may lie past the size (with
//! `FALLOC_FL_KEEP_SIZE`): their contents are not data, they read as zeros wherever they are.

use std::collections::BTreeMap;

use sheen_wire::msg::{ObjAttr, Timespec};
use sheen_wire::ObjId;

use crate::codec::{u64_of, usize_of};
use crate::error::OsdError;
use crate::format::Geometry;
use crate::limits::*;
use crate::record::{NewExtent, Record};

/// Physically contiguous blocks holding logically contiguous data of one object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Extent {
    pub phys: u64,
    /// One crc32c per block; the extent's length is `crcs.len()`. Zeros when `prealloc`.
    pub crcs: Vec<u32>,
    /// Preallocated (unwritten): the blocks are the object's, but hold no data yet; they read
    /// as zeros, and the first write into one writes in place and clears the flag.
    pub prealloc: bool,
}

impl Extent {
    pub fn len(&self) -> u64 {
        u64_of(self.crcs.len())
    }
}

/// A mapped run found by [`BlockMap::lookup`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct MappedRun {
    pub logical: u64,
    pub phys: u64,
    pub crcs: Vec<u32>,
    /// Preallocated blocks: nothing to read, they are zeros.
    pub prealloc: bool,
}

/// Logical block → physical block and crc, as extents keyed by first logical block.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct BlockMap {
    extents: BTreeMap<u64, Extent>,
    n_blocks: u64,
}

impl BlockMap {
    pub fn n_blocks(&self) -> u64 {
        self.n_blocks
    }

    pub fn extents(&self) -> impl Iterator<Item = (u64, &Extent)> {
        self.extents.iter().map(|(k, v)| (*k, v))
    }

    pub fn n_extents(&self) -> usize {
        self.extents.len()
    }

    /// Key of the first extent that may overlap `[b0, ...)`.
    fn first_key(&self, b0: u64) -> u64 {
        match self.extents.range(..=b0).next_back() {
            Some((k, x)) if k + x.len() > b0 => *k,
            _ => b0,
        }
    }

    /// The mapped parts of logical blocks `[b0, b1)`, in logical order. Holes are absent.
    pub fn lookup(&self, b0: u64, b1: u64) -> Vec<MappedRun> {
        let mut out = Vec::new();
        if b0 >= b1 {
            return out;
        }
        for (k, x) in self.extents.range(self.first_key(b0)..b1) {
            let start = (*k).max(b0);
            let end = (k + x.len()).min(b1);
            if start >= end {
                continue;
            }
            let skip = usize_of(start - k);
            out.push(MappedRun {
                logical: start,
                phys: x.phys + (start - k),
                crcs: x.crcs[skip..skip + usize_of(end - start)].to_vec(),
                prealloc: x.prealloc,
            });
        }
        out
    }

    /// The unmapped runs `(first logical block, length)` of `[b0, b1)`, in logical order.
    pub fn holes(&self, b0: u64, b1: u64) -> Vec<(u64, u64)> {
        let mut out = Vec::new();
        let mut cursor = b0;
        for run in self.lookup(b0, b1) {
            if run.logical > cursor {
                out.push((cursor, run.logical - cursor));
            }
            cursor = run.logical + u64_of(run.crcs.len());
        }
        if cursor < b1 {
            out.push((cursor, b1 - cursor));
        }
        out
    }

    /// Unmaps logical blocks `[b0, b1)`, appending the freed physical runs to `freed`.
    pub fn remove_range(&mut self, b0: u64, b1: u64, freed: &mut Vec<(u64, u64)>) {
        if b0 >= b1 {
            return;
        }
        let keys: Vec<u64> = self
            .extents
            .range(self.first_key(b0)..b1)
            .map(|(k, _)| *k)
            .collect();
        for k in keys {
            let Some(mut x) = self.extents.remove(&k) else {
                continue;
            };
            let end = k + x.len();
            if end <= b0 {
                self.extents.insert(k, x);
                continue;
            }
            let cut_start = k.max(b0);
            let cut_end = end.min(b1);
            if end > b1 {
                let right = x.crcs.split_off(usize_of(b1 - k));
                self.extents.insert(
                    b1,
                    Extent {
                        phys: x.phys + (b1 - k),
                        crcs: right,
                        prealloc: x.prealloc,
                    },
                );
            }
            x.crcs.truncate(usize_of(cut_start - k));
            freed.push((x.phys + (cut_start - k), cut_end - cut_start));
            self.n_blocks -= cut_end - cut_start;
            if !x.crcs.is_empty() {
                self.extents.insert(k, x);
            }
        }
    }

    /// Maps `[logical, logical + crcs.len())` to `[phys, ...)` as written data. The range
    /// must be unmapped.
    pub fn insert(&mut self, logical: u64, phys: u64, crcs: &[u32]) {
        self.insert_extent(logical, phys, crcs, false);
    }

    /// Maps `[logical, logical + len)` to `[phys, ...)` as preallocated blocks. The range must
    /// be unmapped.
    pub fn insert_prealloc(&mut self, logical: u64, phys: u64, len: u64) {
        self.insert_extent(logical, phys, &vec![0; usize_of(len)], true);
    }

    /// Merges with the preceding extent when both are contiguous and of the same kind, up to
    /// `MAX_EXTENT_BLOCKS`.
    fn insert_extent(&mut self, logical: u64, phys: u64, crcs: &[u32], prealloc: bool) {
        debug_assert!(self
            .lookup(logical, logical + u64_of(crcs.len()))
            .is_empty());
        if crcs.is_empty() {
            return;
        }
        self.n_blocks += u64_of(crcs.len());
        if let Some((k, prev)) = self.extents.range_mut(..logical).next_back() {
            let contiguous = *k + prev.len() == logical
                && prev.phys + prev.len() == phys
                && prev.prealloc == prealloc;
            if contiguous && prev.crcs.len() + crcs.len() <= usize_of(MAX_EXTENT_BLOCKS.into()) {
                prev.crcs.extend_from_slice(crcs);
                return;
            }
        }
        self.extents.insert(
            logical,
            Extent {
                phys,
                crcs: crcs.to_vec(),
                prealloc,
            },
        );
    }

    /// Whether `[logical, logical + len)` is mapped, all of it, to preallocated blocks
    /// `[phys, phys + len)`: what a write in place into them requires.
    pub fn is_prealloc_at(&self, logical: u64, phys: u64, len: u64) -> bool {
        let mut cursor = logical;
        for run in self.lookup(logical, logical + len) {
            if run.logical != cursor || !run.prealloc || run.phys != phys + (cursor - logical) {
                return false;
            }
            cursor += u64_of(run.crcs.len());
        }
        cursor == logical + len
    }

    /// Inserts an extent read from a checkpoint, checking it against the previous one.
    pub fn push_checked(&mut self, logical: u64, x: Extent) -> Result<(), &'static str> {
        if x.crcs.is_empty() || x.len() > u64::from(MAX_EXTENT_BLOCKS) {
            return Err("extent length out of range");
        }
        if let Some((k, prev)) = self.extents.iter().next_back() {
            if k + prev.len() > logical {
                return Err("extents overlap or are out of order");
            }
        }
        self.n_blocks += x.len();
        self.extents.insert(logical, x);
        Ok(())
    }
}

/// One object.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Object {
    pub size: u64,
    pub mtime: Timespec,
    pub map: BlockMap,
}

impl Object {
    pub fn attr(&self, oid: ObjId) -> ObjAttr {
        ObjAttr {
            oid,
            size: self.size,
            allocated_bytes: self.map.n_blocks() * BLOCK_BYTES_U64,
            mtime: self.mtime,
        }
    }
}

/// What applying a record produced, handed back to the caller that committed it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Applied {
    FirstOid(ObjId),
    Size(u64),
    Done,
}

/// All objects of the OST.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Index {
    pub objects: BTreeMap<ObjId, Object>,
    /// The id the next precreate hands out; ids are never reused.
    pub next_oid: ObjId,
}

impl Default for Index {
    fn default() -> Self {
        Index {
            objects: BTreeMap::new(),
            next_oid: 1,
        }
    }
}

/// Blocks needed to hold `bytes`.
pub(crate) fn blocks_for(bytes: u64) -> u64 {
    bytes.div_ceil(BLOCK_BYTES_U64)
}

impl Index {
    /// Applies one record. Validates first, so on error nothing has changed. Physical runs no
    /// longer referenced are appended to `freed`.
    pub fn apply(
        &mut self,
        rec: &Record,
        geo: &Geometry,
        freed: &mut Vec<(u64, u64)>,
    ) -> Result<Applied, OsdError> {
        let bad = |what: &str| OsdError::Corrupt(format!("log record {rec:?}: {what}"));
        let phys_ok =
            |phys: u64, len: u64| phys.checked_add(len).is_some_and(|e| e <= geo.data_blocks);
        // One extent of a record's list, in logical order: not empty, no longer than an
        // extent may be, on data blocks, ending by logical block `limit` (`past` otherwise),
        // after the previous one (`prev_end`).
        let check_run = |(logical, phys, len): (u64, u64, u64),
                         limit: u64,
                         past: &'static str,
                         prev_end: &mut Option<u64>|
         -> Result<(), OsdError> {
            if len == 0 || len > u64::from(MAX_EXTENT_BLOCKS) || !phys_ok(phys, len) {
                return Err(bad("extent out of range"));
            }
            if logical.checked_add(len).is_none_or(|e| e > limit) {
                return Err(bad(past));
            }
            if prev_end.is_some_and(|p| p > logical) {
                return Err(bad("extents overlap or are out of order"));
            }
            *prev_end = Some(logical + len);
            Ok(())
        };
        match rec {
            Record::Precreate { first_oid, count } => {
                let end = first_oid
                    .checked_add(u64::from(*count))
                    .ok_or_else(|| bad("oid overflow"))?;
                if *count == 0 || *first_oid < self.next_oid {
                    return Err(bad("precreate reuses object ids"));
                }
                if u64_of(self.objects.len()) + u64::from(*count) > geo.max_objects {
                    return Err(bad("more objects than max_objects"));
                }
                for oid in *first_oid..end {
                    self.objects.insert(oid, Object::default());
                }
                self.next_oid = end;
                Ok(Applied::FirstOid(*first_oid))
            }
            Record::Destroy { oid } => {
                let obj = self
                    .objects
                    .remove(oid)
                    .ok_or_else(|| bad("object does not exist"))?;
                freed.extend(obj.map.extents().map(|(_, x)| (x.phys, x.len())));
                Ok(Applied::Done)
            }
            Record::Write {
                oid,
                end,
                mtime,
                extents,
            } => {
                let obj = self
                    .objects
                    .get_mut(oid)
                    .ok_or_else(|| bad("object does not exist"))?;
                if *end > MAX_OBJECT_BYTES {
                    return Err(bad("write past the largest object size"));
                }
                let limit = blocks_for(*end);
                let mut prev_end = None;
                for x in extents {
                    let len = x.len_blocks();
                    let past = "extent past the end of the write";
                    check_run((x.logical, x.phys, len), limit, past, &mut prev_end)?;
                    if x.in_place && !obj.map.is_prealloc_at(x.logical, x.phys, len) {
                        return Err(bad("in-place extent over blocks not preallocated there"));
                    }
                }
                map_new_extents(&mut obj.map, extents, freed);
                obj.size = obj.size.max(*end);
                obj.mtime = obj.mtime.max(*mtime);
                Ok(Applied::Size(obj.size))
            }
            Record::Prealloc {
                oid,
                end,
                mtime,
                extents,
            } => {
                let obj = self
                    .objects
                    .get_mut(oid)
                    .ok_or_else(|| bad("object does not exist"))?;
                if *end > MAX_OBJECT_BYTES {
                    return Err(bad("fallocate past the largest object size"));
                }
                let limit = blocks_for(MAX_OBJECT_BYTES);
                let mut prev_end = None;
                for x in extents {
                    let len = u64::from(x.len);
                    let past = "extent past the largest object size";
                    check_run((x.logical, x.phys, len), limit, past, &mut prev_end)?;
                    if !obj.map.lookup(x.logical, x.logical + len).is_empty() {
                        return Err(bad("preallocated extent over mapped blocks"));
                    }
                }
                for x in extents {
                    obj.map.insert_prealloc(x.logical, x.phys, u64::from(x.len));
                }
                if *end > obj.size {
                    obj.size = *end;
                    obj.mtime = obj.mtime.max(*mtime);
                }
                Ok(Applied::Size(obj.size))
            }
            Record::PunchHole {
                oid,
                first_block,
                end_block,
                mtime,
                extents,
            } => {
                let obj = self
                    .objects
                    .get_mut(oid)
                    .ok_or_else(|| bad("object does not exist"))?;
                if first_block > end_block || *end_block > blocks_for(MAX_OBJECT_BYTES) {
                    return Err(bad("punched range out of order or too large"));
                }
                let limit = blocks_for(obj.size);
                for x in extents {
                    let len = x.len_blocks();
                    if len != 1 || x.in_place || !phys_ok(x.phys, len) {
                        return Err(bad("edge block out of range"));
                    }
                    let inside = (*first_block..*end_block).contains(&x.logical);
                    if inside || x.logical >= limit {
                        return Err(bad("edge block inside the hole or past the size"));
                    }
                }
                obj.map.remove_range(*first_block, *end_block, freed);
                map_new_extents(&mut obj.map, extents, freed);
                obj.mtime = obj.mtime.max(*mtime);
                Ok(Applied::Done)
            }
            Record::Punch { oid, size, tail } => {
                let obj = self
                    .objects
                    .get_mut(oid)
                    .ok_or_else(|| bad("object does not exist"))?;
                if *size > MAX_OBJECT_BYTES {
                    return Err(bad("punch past the largest object size"));
                }
                if let Some(t) = tail {
                    let fits = t.logical == size / BLOCK_BYTES_U64 && size % BLOCK_BYTES_U64 != 0;
                    if !fits || !phys_ok(t.phys, 1) {
                        return Err(bad("tail block out of range"));
                    }
                }
                obj.map.remove_range(blocks_for(*size), u64::MAX, freed);
                if let Some(t) = tail {
                    obj.map.remove_range(t.logical, t.logical + 1, freed);
                    obj.map.insert(t.logical, t.phys, &[t.crc]);
                }
                obj.size = *size;
                Ok(Applied::Done)
            }
            Record::SetMtime { oid, mtime } => {
                let obj = self
                    .objects
                    .get_mut(oid)
                    .ok_or_else(|| bad("object does not exist"))?;
                obj.mtime = *mtime;
                Ok(Applied::Done)
            }
        }
    }

    /// Every mapped physical run, for rebuilding the allocator.
    pub fn used_runs(&self) -> Vec<(u64, u64)> {
        let mut out = Vec::new();
        for obj in self.objects.values() {
            out.extend(obj.map.extents().map(|(_, x)| (x.phys, x.len())));
        }
        out
    }

    /// The physical block and crc holding logical block `block` of `oid`, if mapped.
    pub fn mapping(&self, oid: ObjId, block: u64) -> Option<(u64, u32)> {
        let run = self.objects.get(&oid)?.map.lookup(block, block + 1).pop()?;
        Some((run.phys, *run.crcs.first()?))
    }
}

/// Maps the extents of new data over whatever was at their logical blocks, appending what
/// they replaced to `freed`, except blocks written in place (which stay mapped, written now).
fn map_new_extents(map: &mut BlockMap, extents: &[NewExtent], freed: &mut Vec<(u64, u64)>) {
    for x in extents {
        let (b0, b1) = (x.logical, x.logical + x.len_blocks());
        if x.in_place {
            // Validated: exactly [x.phys, ...) was there, preallocated.
            map.remove_range(b0, b1, &mut Vec::new());
        } else {
            map.remove_range(b0, b1, freed);
        }
        map.insert(x.logical, x.phys, &x.crcs);
    }
}

impl crate::record::NewExtent {
    pub fn len_blocks(&self) -> u64 {
        u64_of(self.crcs.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{PreallocExtent, TailBlock};

    fn geo() -> Geometry {
        Geometry::for_device(64 << 20, None).unwrap()
    }

    fn map_of(runs: &[(u64, u64, u32)]) -> BlockMap {
        let mut m = BlockMap::default();
        for &(l, p, n) in runs {
            m.insert(
                l,
                p,
                &(0..n)
                    .map(|i| u32::try_from(l).unwrap() * 100 + i)
                    .collect::<Vec<_>>(),
            );
        }
        m
    }

    fn runs(m: &BlockMap) -> Vec<(u64, u64, u64)> {
        m.extents().map(|(k, x)| (k, x.phys, x.len())).collect()
    }

    #[test]
    fn insert_merges_contiguous() {
        let m = map_of(&[(0, 10, 4), (4, 14, 4), (8, 30, 2)]);
        assert_eq!(runs(&m), vec![(0, 10, 8), (8, 30, 2)]);
        assert_eq!(m.n_blocks(), 10);
    }

    #[test]
    fn lookup_clips_and_skips_holes() {
        let m = map_of(&[(2, 10, 4), (10, 50, 2)]);
        let got = m.lookup(3, 11);
        assert_eq!(got.len(), 2);
        assert_eq!((got[0].logical, got[0].phys, got[0].crcs.len()), (3, 11, 3));
        assert_eq!(got[0].crcs[0], 201);
        assert_eq!(
            (got[1].logical, got[1].phys, got[1].crcs.len()),
            (10, 50, 1)
        );
        assert!(m.lookup(6, 10).is_empty());
        assert!(m.lookup(5, 5).is_empty());
    }

    #[test]
    fn remove_range_splits() {
        let mut m = map_of(&[(0, 100, 10)]);
        let mut freed = Vec::new();
        m.remove_range(3, 5, &mut freed);
        assert_eq!(freed, vec![(103, 2)]);
        assert_eq!(runs(&m), vec![(0, 100, 3), (5, 105, 5)]);
        assert_eq!(m.lookup(5, 6)[0].crcs, vec![5]);
        freed.clear();
        m.remove_range(2, u64::MAX, &mut freed);
        freed.sort_unstable();
        assert_eq!(freed, vec![(102, 1), (105, 5)]);
        assert_eq!(runs(&m), vec![(0, 100, 2)]);
        assert_eq!(m.n_blocks(), 2);
        freed.clear();
        m.remove_range(0, 2, &mut freed);
        assert_eq!(m.n_blocks(), 0);
        assert_eq!(m.n_extents(), 0);
    }

    #[test]
    fn apply_write_punch_destroy() {
        let g = geo();
        let mut idx = Index::default();
        let mut freed = Vec::new();
        let first = idx.apply(
            &Record::Precreate {
                first_oid: 1,
                count: 3,
            },
            &g,
            &mut freed,
        );
        assert_eq!(first.unwrap(), Applied::FirstOid(1));
        assert_eq!(idx.next_oid, 4);
        let write = Record::Write {
            oid: 2,
            end: 3 * 4096 + 10,
            mtime: Timespec { sec: 5, nsec: 0 },
            extents: vec![NewExtent {
                logical: 0,
                phys: 40,
                crcs: vec![1, 2, 3, 4],
                in_place: false,
            }],
        };
        assert_eq!(
            idx.apply(&write, &g, &mut freed).unwrap(),
            Applied::Size(3 * 4096 + 10)
        );
        let over = Record::Write {
            oid: 2,
            end: 2 * 4096,
            mtime: Timespec { sec: 1, nsec: 0 },
            extents: vec![NewExtent {
                logical: 1,
                phys: 60,
                crcs: vec![9],
                in_place: false,
            }],
        };
        assert_eq!(
            idx.apply(&over, &g, &mut freed).unwrap(),
            Applied::Size(3 * 4096 + 10)
        );
        assert_eq!(freed, vec![(41, 1)]);
        assert_eq!(
            idx.objects[&2].mtime.sec, 5,
            "mtime never goes back on write"
        );
        assert_eq!(idx.mapping(2, 1), Some((60, 9)));
        freed.clear();
        let punch = Record::Punch {
            oid: 2,
            size: 4096 + 1,
            tail: Some(TailBlock {
                logical: 1,
                phys: 61,
                crc: 7,
            }),
        };
        idx.apply(&punch, &g, &mut freed).unwrap();
        freed.sort_unstable();
        assert_eq!(freed, vec![(42, 2), (60, 1)]);
        assert_eq!(idx.objects[&2].attr(2).allocated_bytes, 2 * 4096);
        freed.clear();
        idx.apply(&Record::Destroy { oid: 2 }, &g, &mut freed)
            .unwrap();
        freed.sort_unstable();
        assert_eq!(freed, vec![(40, 1), (61, 1)]);
        assert!(!idx.objects.contains_key(&2));
    }

    #[test]
    fn prealloc_then_write_in_place_then_punch_hole() {
        let g = geo();
        let mut idx = Index::default();
        let mut freed = Vec::new();
        let precreate = Record::Precreate {
            first_oid: 1,
            count: 1,
        };
        idx.apply(&precreate, &g, &mut freed).unwrap();
        let prealloc = Record::Prealloc {
            oid: 1,
            end: 4096 + 1,
            mtime: Timespec { sec: 4, nsec: 0 },
            extents: vec![PreallocExtent {
                logical: 0,
                phys: 100,
                len: 4,
            }],
        };
        assert_eq!(
            idx.apply(&prealloc, &g, &mut freed).unwrap(),
            Applied::Size(4097)
        );
        let obj = &idx.objects[&1];
        assert_eq!((obj.mtime.sec, obj.map.n_blocks()), (4, 4));
        assert!(obj.map.is_prealloc_at(1, 101, 3));
        assert!(!obj.map.is_prealloc_at(1, 100, 3));
        // A second prealloc over mapped blocks is refused.
        assert!(idx.apply(&prealloc, &g, &mut freed).is_err());
        let in_place = Record::Write {
            oid: 1,
            end: 3 * 4096,
            mtime: Timespec { sec: 5, nsec: 0 },
            extents: vec![NewExtent {
                logical: 1,
                phys: 101,
                crcs: vec![7, 8],
                in_place: true,
            }],
        };
        idx.apply(&in_place, &g, &mut freed).unwrap();
        assert!(freed.is_empty(), "blocks written in place stay mapped");
        let runs = idx.objects[&1].map.lookup(0, 4);
        let kinds: Vec<(u64, u64, bool)> = runs
            .iter()
            .map(|r| (r.logical, r.crcs.len() as u64, r.prealloc))
            .collect();
        assert_eq!(kinds, vec![(0, 1, true), (1, 2, false), (3, 1, true)]);
        assert_eq!(idx.mapping(1, 2), Some((102, 8)));
        // Written now: another in-place write over them is refused.
        assert!(idx.apply(&in_place, &g, &mut freed).is_err());
        let hole = Record::PunchHole {
            oid: 1,
            first_block: 0,
            end_block: 2,
            mtime: Timespec { sec: 6, nsec: 0 },
            extents: vec![NewExtent {
                logical: 2,
                phys: 200,
                crcs: vec![9],
                in_place: false,
            }],
        };
        idx.apply(&hole, &g, &mut freed).unwrap();
        freed.sort_unstable();
        assert_eq!(freed, vec![(100, 1), (101, 1), (102, 1)]);
        let obj = &idx.objects[&1];
        assert_eq!(
            (obj.size, obj.mtime.sec, obj.map.n_blocks()),
            (3 * 4096, 6, 2)
        );
        assert_eq!(idx.used_runs().len(), 2);
    }

    #[test]
    fn bad_records_change_nothing() {
        let g = geo();
        let mut idx = Index::default();
        let mut freed = Vec::new();
        idx.apply(
            &Record::Precreate {
                first_oid: 1,
                count: 1,
            },
            &g,
            &mut freed,
        )
        .unwrap();
        let before = idx.clone();
        let bad = [
            Record::Precreate {
                first_oid: 1,
                count: 1,
            },
            Record::Precreate {
                first_oid: 5,
                count: 0,
            },
            Record::Destroy { oid: 9 },
            Record::Write {
                oid: 1,
                end: 4096,
                mtime: Timespec::default(),
                extents: vec![NewExtent {
                    logical: 0,
                    phys: g.data_blocks,
                    crcs: vec![1],
                    in_place: false,
                }],
            },
            Record::Write {
                oid: 1,
                end: 4096,
                mtime: Timespec::default(),
                extents: vec![NewExtent {
                    logical: 1,
                    phys: 0,
                    crcs: vec![1],
                    in_place: false,
                }],
            },
            Record::Punch {
                oid: 1,
                size: 8192,
                tail: Some(TailBlock {
                    logical: 2,
                    phys: 0,
                    crc: 0,
                }),
            },
            Record::SetMtime {
                oid: 2,
                mtime: Timespec::default(),
            },
            // Written in place over blocks that are not preallocated.
            Record::Write {
                oid: 1,
                end: 4096,
                mtime: Timespec::default(),
                extents: vec![NewExtent {
                    logical: 0,
                    phys: 3,
                    crcs: vec![1],
                    in_place: true,
                }],
            },
            Record::Prealloc {
                oid: 1,
                end: 0,
                mtime: Timespec::default(),
                extents: vec![PreallocExtent {
                    logical: 0,
                    phys: g.data_blocks,
                    len: 1,
                }],
            },
            Record::PunchHole {
                oid: 1,
                first_block: 2,
                end_block: 1,
                mtime: Timespec::default(),
                extents: Vec::new(),
            },
        ];
        for rec in bad {
            assert!(
                matches!(idx.apply(&rec, &g, &mut freed), Err(OsdError::Corrupt(_))),
                "{rec:?}"
            );
            assert_eq!(idx, before);
        }
    }
}
