//! The object index: every object's size, mtime and block map, held in memory.
//!
//! It is rebuilt at open from the newest checkpoint plus the log, and changed only by
//! [`Index::apply`], which validates a record completely before touching anything, so a bad
//! record (corruption at replay, or a bug at run time) leaves the index as it was.
//!
//! Invariant: an object maps no block at or past `ceil(size / BLOCK_BYTES)`, and the bytes of
//! its last mapped block past `size` are zero. Writes and punches keep it; reads and partial
//! writes rely on it.

use std::collections::BTreeMap;

use sheen_wire::msg::{ObjAttr, Timespec};
use sheen_wire::ObjId;

use crate::codec::{u64_of, usize_of};
use crate::error::OsdError;
use crate::format::Geometry;
use crate::limits::*;
use crate::record::Record;

/// Physically contiguous blocks holding logically contiguous data of one object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Extent {
    pub phys: u64,
    /// One crc32c per block; the extent's length is `crcs.len()`.
    pub crcs: Vec<u32>,
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
            });
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

    /// Maps `[logical, logical + crcs.len())` to `[phys, ...)`. The range must be unmapped.
    /// Merges with the preceding extent when both are contiguous, up to `MAX_EXTENT_BLOCKS`.
    pub fn insert(&mut self, logical: u64, phys: u64, crcs: &[u32]) {
        debug_assert!(self
            .lookup(logical, logical + u64_of(crcs.len()))
            .is_empty());
        if crcs.is_empty() {
            return;
        }
        self.n_blocks += u64_of(crcs.len());
        if let Some((k, prev)) = self.extents.range_mut(..logical).next_back() {
            let contiguous = *k + prev.len() == logical && prev.phys + prev.len() == phys;
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
            },
        );
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
                    if len == 0 || len > u64::from(MAX_EXTENT_BLOCKS) || !phys_ok(x.phys, len) {
                        return Err(bad("extent out of range"));
                    }
                    if x.logical.checked_add(len).is_none_or(|e| e > limit) {
                        return Err(bad("extent past the end of the write"));
                    }
                    if prev_end.is_some_and(|p| p > x.logical) {
                        return Err(bad("extents overlap or are out of order"));
                    }
                    prev_end = Some(x.logical + len);
                }
                for x in extents {
                    obj.map
                        .remove_range(x.logical, x.logical + x.len_blocks(), freed);
                    obj.map.insert(x.logical, x.phys, &x.crcs);
                }
                obj.size = obj.size.max(*end);
                obj.mtime = obj.mtime.max(*mtime);
                Ok(Applied::Size(obj.size))
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

impl crate::record::NewExtent {
    pub fn len_blocks(&self) -> u64 {
        u64_of(self.crcs.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{NewExtent, TailBlock};

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
