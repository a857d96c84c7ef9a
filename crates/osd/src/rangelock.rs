//! Per-object block-range locks, shared (reads) or exclusive (writes, punch, destroy).
//!
//! They give two guarantees. Writers to overlapping blocks are serialised, so two partial-block
//! writes cannot both merge into the same old block and lose one update. And a reader holds its
//! range while its I/O is in flight, so the blocks it looked up cannot be replaced, freed and
//! reused by another write under it (which would show up as a false checksum error).
//! Disjoint ranges of one object proceed in parallel. A waiting exclusive request holds back
//! later shared requests that overlap it, so a stream of readers cannot starve a writer.
//! The table is sharded by object id.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};

use sheen_wire::ObjId;

use crate::limits::RANGE_LOCK_SHARDS;
use crate::locks::{lock, wait};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    Shared,
    Exclusive,
}

#[derive(Clone, Copy, Debug)]
struct Held {
    id: u64,
    start: u64,
    end: u64,
    mode: Mode,
    granted: bool,
}

impl Held {
    /// Whether this entry keeps request `req` waiting.
    fn blocks(&self, req: &Held) -> bool {
        let overlap = self.start < req.end && req.start < self.end;
        if !overlap || self.id == req.id {
            return false;
        }
        if self.granted {
            self.mode == Mode::Exclusive || req.mode == Mode::Exclusive
        } else {
            // An earlier exclusive waiter goes before later shared requests.
            self.mode == Mode::Exclusive && req.mode == Mode::Shared && self.id < req.id
        }
    }
}

#[derive(Default)]
struct Shard {
    held: Mutex<HashMap<ObjId, Vec<Held>>>,
    released: Condvar,
    /// Requests waiting on `released`; changed and read only with `held` locked, so a
    /// release that finds none may skip the wake-up (a syscall even with nobody to wake).
    waiting: AtomicUsize,
}

pub(crate) struct RangeLocks {
    shards: Vec<Shard>,
    next_id: AtomicU64,
}

/// A held range; released on drop.
pub(crate) struct RangeGuard<'a> {
    locks: &'a RangeLocks,
    oid: ObjId,
    id: u64,
}

impl Default for RangeLocks {
    fn default() -> Self {
        RangeLocks {
            shards: (0..RANGE_LOCK_SHARDS).map(|_| Shard::default()).collect(),
            next_id: AtomicU64::new(1),
        }
    }
}

impl RangeLocks {
    fn shard(&self, oid: ObjId) -> &Shard {
        let n = u64::try_from(self.shards.len()).unwrap_or(1);
        let i = usize::try_from(oid % n).unwrap_or(0);
        &self.shards[i]
    }

    /// Blocks until blocks `[start, end)` of `oid` can be held in `mode`.
    pub fn lock(&self, oid: ObjId, start: u64, end: u64, mode: Mode) -> RangeGuard<'_> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let shard = self.shard(oid);
        let req = Held {
            id,
            start,
            end,
            mode,
            granted: false,
        };
        let mut held = lock(&shard.held);
        held.entry(oid).or_default().push(req);
        loop {
            let list = held.entry(oid).or_default();
            if !list.iter().any(|h| h.blocks(&req)) {
                if let Some(me) = list.iter_mut().find(|h| h.id == id) {
                    me.granted = true;
                }
                return RangeGuard {
                    locks: self,
                    oid,
                    id,
                };
            }
            shard.waiting.fetch_add(1, Ordering::Relaxed);
            held = wait(&shard.released, held);
            shard.waiting.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Blocks `[start, end)` of `oid` in `mode` if nothing holds them or waits for them in a
    /// conflicting way right now; `None` instead of waiting.
    pub fn try_lock(&self, oid: ObjId, start: u64, end: u64, mode: Mode) -> Option<RangeGuard<'_>> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let req = Held {
            id,
            start,
            end,
            mode,
            granted: true,
        };
        let mut held = lock(&self.shard(oid).held);
        let list = held.entry(oid).or_default();
        if list.iter().any(|h| h.blocks(&req)) {
            return None;
        }
        list.push(req);
        Some(RangeGuard {
            locks: self,
            oid,
            id,
        })
    }

    /// The whole object, exclusively (punch, destroy).
    pub fn lock_all(&self, oid: ObjId) -> RangeGuard<'_> {
        self.lock(oid, 0, u64::MAX, Mode::Exclusive)
    }
}

impl Drop for RangeGuard<'_> {
    fn drop(&mut self) {
        let shard = self.locks.shard(self.oid);
        let mut held = lock(&shard.held);
        if let Some(list) = held.get_mut(&self.oid) {
            list.retain(|h| h.id != self.id);
            if list.is_empty() {
                held.remove(&self.oid);
            }
        }
        let anyone_waiting = shard.waiting.load(Ordering::Relaxed) > 0;
        drop(held);
        if anyone_waiting {
            shard.released.notify_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;
    use std::time::Duration;

    #[test]
    fn shared_ranges_coexist_and_disjoint_writers_too() {
        let l = RangeLocks::default();
        let _a = l.lock(1, 0, 10, Mode::Shared);
        let _b = l.lock(1, 5, 15, Mode::Shared);
        let _c = l.lock(1, 15, 20, Mode::Exclusive);
        let _d = l.lock(2, 0, u64::MAX, Mode::Exclusive);
    }

    #[test]
    fn exclusive_waits_for_overlap() {
        let l = Arc::new(RangeLocks::default());
        let g = l.lock(7, 0, 10, Mode::Shared);
        let got = Arc::new(AtomicBool::new(false));
        let t = {
            let (l, got) = (l.clone(), got.clone());
            std::thread::spawn(move || {
                let _w = l.lock(7, 9, 12, Mode::Exclusive);
                got.store(true, Ordering::SeqCst);
            })
        };
        std::thread::sleep(Duration::from_millis(50));
        assert!(
            !got.load(Ordering::SeqCst),
            "writer must wait for the overlapping reader"
        );
        drop(g);
        t.join().unwrap();
        assert!(got.load(Ordering::SeqCst));
        assert!(lock(&l.shard(7).held).is_empty(), "entries are cleaned up");
    }

    #[test]
    fn try_lock_refuses_instead_of_waiting() {
        let l = RangeLocks::default();
        let w = l.lock(4, 10, 20, Mode::Exclusive);
        assert!(l.try_lock(4, 15, 16, Mode::Shared).is_none());
        let r = l.try_lock(4, 0, 10, Mode::Shared).expect("disjoint range");
        assert!(l.try_lock(4, 5, 6, Mode::Shared).is_some(), "readers share");
        assert!(l.try_lock(4, 5, 6, Mode::Exclusive).is_none());
        drop(w);
        assert!(l.try_lock(4, 15, 16, Mode::Shared).is_some());
        drop(r);
        assert!(
            lock(&l.shard(4).held).is_empty(),
            "refusals leave nothing behind"
        );
    }

    #[test]
    fn waiting_writer_holds_back_new_readers() {
        let l = Arc::new(RangeLocks::default());
        let r1 = l.lock(3, 0, 10, Mode::Shared);
        let writer = {
            let l = l.clone();
            std::thread::spawn(move || drop(l.lock(3, 0, 10, Mode::Exclusive)))
        };
        // Wait until the writer is queued.
        while lock(&l.shard(3).held).get(&3).map_or(0, Vec::len) < 2 {
            std::thread::yield_now();
        }
        let reader = {
            let l = l.clone();
            std::thread::spawn(move || drop(l.lock(3, 5, 6, Mode::Shared)))
        };
        while lock(&l.shard(3).held).get(&3).map_or(0, Vec::len) < 3 {
            std::thread::yield_now();
        }
        // A non-overlapping reader is not held back.
        drop(l.lock(3, 20, 30, Mode::Shared));
        drop(r1);
        writer.join().unwrap();
        reader.join().unwrap();
        assert!(lock(&l.shard(3).held).is_empty());
    }
}
