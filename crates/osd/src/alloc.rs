//! The free-space allocator: an in-memory set of free extents, rebuilt from the index at open
//! (it is never persisted, so it can never disagree with the committed metadata).
//!
//! Allocation is best fit: the smallest free extent that holds the whole request, so a 1 MiB
//! write lands in one contiguous run and large free extents stay large. When no single extent
//! is big enough the request is served from the largest extents, in pieces.

use std::collections::{BTreeMap, BTreeSet};

use crate::error::OsdError;

/// Free physical data blocks.
#[derive(Debug)]
pub(crate) struct Allocator {
    /// start → length.
    by_start: BTreeMap<u64, u64>,
    /// (length, start), for best fit.
    by_len: BTreeSet<(u64, u64)>,
    free_blocks: u64,
    total_blocks: u64,
}

impl Allocator {
    /// An allocator over `total_blocks` where the runs in `used` are taken. Overlapping or
    /// out-of-range runs mean two objects claim the same block: corruption.
    pub fn from_used(total_blocks: u64, mut used: Vec<(u64, u64)>) -> Result<Allocator, OsdError> {
        used.sort_unstable();
        let mut a = Allocator {
            by_start: BTreeMap::new(),
            by_len: BTreeSet::new(),
            free_blocks: 0,
            total_blocks,
        };
        let mut cursor = 0u64;
        for (start, len) in used {
            let end = start.checked_add(len).filter(|e| *e <= total_blocks);
            let Some(end) = end else {
                return Err(OsdError::Corrupt(format!(
                    "block map: run {start}+{len} past the {total_blocks} data blocks"
                )));
            };
            if start < cursor {
                return Err(OsdError::Corrupt(format!(
                    "block map: physical block {start} mapped twice"
                )));
            }
            a.insert_free(cursor, start - cursor);
            cursor = end;
        }
        a.insert_free(cursor, total_blocks - cursor);
        Ok(a)
    }

    pub fn free_blocks(&self) -> u64 {
        self.free_blocks
    }

    pub fn total_blocks(&self) -> u64 {
        self.total_blocks
    }

    fn insert_free(&mut self, start: u64, len: u64) {
        if len == 0 {
            return;
        }
        self.by_start.insert(start, len);
        self.by_len.insert((len, start));
        self.free_blocks += len;
    }

    fn remove_free(&mut self, start: u64, len: u64) {
        self.by_start.remove(&start);
        self.by_len.remove(&(len, start));
        self.free_blocks -= len;
    }

    /// Takes `n` blocks, keeping `reserve` blocks free, as one or more `(start, len)` runs.
    /// `None` (and nothing taken) if fewer than `n + reserve` are free.
    pub fn alloc(&mut self, n: u64, reserve: u64) -> Option<Vec<(u64, u64)>> {
        if n == 0 {
            return Some(Vec::new());
        }
        if self.free_blocks < n.checked_add(reserve)? {
            return None;
        }
        if let Some(&(len, start)) = self.by_len.range((n, 0)..).next() {
            self.remove_free(start, len);
            self.insert_free(start + n, len - n);
            return Some(vec![(start, n)]);
        }
        let mut runs = Vec::new();
        let mut left = n;
        while left > 0 {
            let &(len, start) = self.by_len.iter().next_back()?;
            let take = len.min(left);
            self.remove_free(start, len);
            self.insert_free(start + take, len - take);
            runs.push((start, take));
            left -= take;
        }
        runs.sort_unstable();
        Some(runs)
    }

    /// Returns a run, merging it with free neighbours.
    pub fn free(&mut self, start: u64, len: u64) {
        if len == 0 {
            return;
        }
        debug_assert!(start + len <= self.total_blocks);
        let mut start = start;
        let mut len = len;
        if let Some((&p_start, &p_len)) = self.by_start.range(..start).next_back() {
            debug_assert!(p_start + p_len <= start, "double free of block {start}");
            if p_start + p_len == start {
                self.remove_free(p_start, p_len);
                start = p_start;
                len += p_len;
            }
        }
        if let Some((&n_start, &n_len)) = self.by_start.range(start..).next() {
            debug_assert!(start + len <= n_start, "double free of block {n_start}");
            if start + len == n_start {
                self.remove_free(n_start, n_len);
                len += n_len;
            }
        }
        self.insert_free(start, len);
    }

    /// Whether every block of the run is free (tests and assertions).
    #[cfg(test)]
    pub fn is_free(&self, start: u64, len: u64) -> bool {
        match self.by_start.range(..=start).next_back() {
            Some((&s, &l)) => s + l >= start + len,
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rebuild_from_used() {
        let a = Allocator::from_used(100, vec![(10, 5), (0, 2), (50, 50)]).unwrap();
        assert_eq!(a.free_blocks(), 43);
        assert!(a.is_free(2, 8));
        assert!(!a.is_free(1, 2));
        assert!(a.is_free(15, 35));
        assert!(Allocator::from_used(100, vec![(0, 10), (9, 2)]).is_err());
        assert!(Allocator::from_used(100, vec![(95, 10)]).is_err());
        assert!(Allocator::from_used(100, vec![(u64::MAX, 2)]).is_err());
    }

    #[test]
    fn best_fit_and_contiguous() {
        let mut a = Allocator::from_used(1000, vec![(0, 10), (14, 986)]).unwrap();
        // The 4-block hole at 10 is the best fit for 4 blocks.
        assert_eq!(a.alloc(4, 0), Some(vec![(10, 4)]));
        let mut a = Allocator::from_used(1000, vec![]).unwrap();
        assert_eq!(a.alloc(256, 0), Some(vec![(0, 256)]));
        assert_eq!(a.alloc(256, 0), Some(vec![(256, 256)]));
        assert_eq!(a.free_blocks(), 488);
    }

    #[test]
    fn fragmented_and_full() {
        let mut a = Allocator::from_used(10, vec![(1, 1), (3, 1), (5, 1)]).unwrap();
        assert_eq!(a.free_blocks(), 7);
        let runs = a.alloc(5, 0).unwrap();
        assert_eq!(runs.iter().map(|r| r.1).sum::<u64>(), 5);
        assert_eq!(a.free_blocks(), 2);
        assert_eq!(a.alloc(3, 0), None);
        assert_eq!(a.alloc(2, 1), None, "reserve respected");
        assert_eq!(a.free_blocks(), 2, "failed alloc takes nothing");
        for (s, l) in runs {
            a.free(s, l);
        }
        assert_eq!(a.free_blocks(), 7);
    }

    #[test]
    fn free_coalesces() {
        let mut a = Allocator::from_used(30, vec![(0, 30)]).unwrap();
        a.free(10, 5);
        a.free(20, 5);
        a.free(15, 5);
        assert_eq!(a.by_start.len(), 1);
        assert_eq!(a.alloc(15, 0), Some(vec![(10, 15)]));
        assert_eq!(a.free_blocks(), 0);
        assert_eq!(a.total_blocks(), 30);
    }
}
