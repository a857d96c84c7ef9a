//! The client's lock cache [ldlm on the client, osc/mdc lock matching]: the locks this
//! client holds, keyed by server handle; matching a request against them; users per lock;
//! the LRU of unused locks; and what to do when a blocking callback arrives.
//!
//! A lock comes in with [`LockCache::insert`] holding one user (the caller that enqueued
//! it). Each operation under a lock holds a user ([`LockCache::match_lock`] takes one,
//! [`LockCache::release`] drops it). An unused lock stays cached in the LRU; when a blocking
//! callback arrives ([`LockCache::on_blocking`]) or the LRU overflows, the lock is marked
//! for cancel and no longer matched: the caller flushes what the lock protects, drops its
//! caches, sends the cancel and calls [`LockCache::remove`].

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

use sheen_wire::{LockDesc, LockHandle, ResourceId};

use crate::error::DlmError;
use crate::{limits, policy};

/// What to do about a blocking callback.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Blocked {
    /// The lock is unused: flush, drop caches and cancel it now.
    CancelNow,
    /// The lock is in use: [`LockCache::release`] returns it for cancel when the last user
    /// is done.
    WhenUnused,
    /// No such lock here: just answer the callback. It may be cancelled already, or its
    /// grant may not have been processed yet (the callback overtook the enqueue reply): the
    /// handle is remembered, and a lock inserted later under it comes in pending cancel.
    Unknown,
}

struct Cached {
    desc: LockDesc,
    users: u32,
    /// A blocking callback came, or the LRU chose it: cancel when unused, match no more.
    cancel_pending: bool,
    /// Position in the LRU while unused and not pending cancel.
    lru_seq: Option<u64>,
}

/// The locks one client holds from one target.
pub struct LockCache {
    max_unused: usize,
    max_locks: usize,
    locks: HashMap<LockHandle, Cached>,
    by_resource: HashMap<ResourceId, BTreeSet<LockHandle>>,
    /// Unused locks, least recently used first.
    lru: BTreeMap<u64, LockHandle>,
    next_seq: u64,
    /// Handles a blocking callback named before their lock was inserted, oldest first,
    /// at most [`limits::CLIENT_EARLY_BLOCKING_MAX`].
    early_blocking: VecDeque<LockHandle>,
}

impl Default for LockCache {
    fn default() -> LockCache {
        LockCache::new(limits::CLIENT_LRU_MAX_UNUSED)
    }
}

impl LockCache {
    /// A cache keeping at most `max_unused` unused locks.
    pub fn new(max_unused: usize) -> LockCache {
        LockCache {
            max_unused,
            max_locks: limits::MAX_LOCKS_PER_CLIENT,
            locks: HashMap::new(),
            by_resource: HashMap::new(),
            lru: BTreeMap::new(),
            next_seq: 0,
            early_blocking: VecDeque::new(),
        }
    }

    /// Adds a lock the server granted, with one user (the caller that enqueued it). If a
    /// blocking callback for it came first, it comes in pending cancel: usable by this one
    /// user, and [`LockCache::release`] returns it for cancel.
    pub fn insert(&mut self, handle: LockHandle, desc: LockDesc) -> Result<(), DlmError> {
        if self.locks.contains_key(&handle) {
            return Err(DlmError::DuplicateLock(handle));
        }
        if self.locks.len() >= self.max_locks {
            return Err(DlmError::CacheFull);
        }
        let early = self.early_blocking.iter().position(|h| *h == handle);
        if let Some(idx) = early {
            self.early_blocking.remove(idx);
        }
        self.locks.insert(
            handle,
            Cached {
                desc,
                users: 1,
                cancel_pending: early.is_some(),
                lru_seq: None,
            },
        );
        self.by_resource
            .entry(desc.resource)
            .or_default()
            .insert(handle);
        Ok(())
    }

    /// A held lock that covers `wanted` (same resource, a mode that covers the wanted one,
    /// a policy that contains it, not pending cancel), taking a user on it. Among several,
    /// the one with the lowest handle.
    pub fn match_lock(&mut self, wanted: &LockDesc) -> Option<LockHandle> {
        let handles = self.by_resource.get(&wanted.resource)?;
        let handle = handles.iter().copied().find(|h| {
            self.locks
                .get(h)
                .is_some_and(|c| !c.cancel_pending && policy::covers(&c.desc, wanted))
        })?;
        let cached = self.locks.get_mut(&handle)?;
        if let Some(seq) = cached.lru_seq.take() {
            self.lru.remove(&seq);
        }
        cached.users += 1;
        Some(handle)
    }

    /// Drops one user of `handle`. Returns the locks to cancel now: this one if it is pending
    /// cancel and now unused, or the least recently used ones beyond the LRU size.
    pub fn release(&mut self, handle: LockHandle) -> Result<Vec<LockHandle>, DlmError> {
        let cached = self
            .locks
            .get_mut(&handle)
            .ok_or(DlmError::UnknownLock(handle))?;
        if cached.users == 0 {
            return Err(DlmError::NotInUse(handle));
        }
        cached.users -= 1;
        if cached.users > 0 {
            return Ok(Vec::new());
        }
        if cached.cancel_pending {
            return Ok(vec![handle]);
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        cached.lru_seq = Some(seq);
        self.lru.insert(seq, handle);
        Ok(self.shrink_lru())
    }

    /// Takes out the unused locks that `handle`, just granted, makes redundant: on the same
    /// resource, covered by it (mode, inode bits or extent), not pending cancel. What they
    /// protect, it protects, so they go without dropping any cache. A client granted the
    /// same lock again (a name looked up again after the kernel forgot it, a write past the
    /// extent of an older lock) would otherwise fill its LRU with copies, and each copy
    /// pushed out a lock that still covered something. Returns them, for the caller to
    /// cancel at the server.
    pub fn take_superseded(&mut self, handle: LockHandle) -> Vec<LockHandle> {
        let Some(new) = self
            .locks
            .get(&handle)
            .filter(|c| !c.cancel_pending)
            .map(|c| c.desc)
        else {
            return Vec::new();
        };
        let Some(on_resource) = self.by_resource.get(&new.resource) else {
            return Vec::new();
        };
        let old: Vec<LockHandle> = on_resource
            .iter()
            .copied()
            .filter(|h| {
                *h != handle
                    && self.locks.get(h).is_some_and(|c| {
                        c.users == 0 && !c.cancel_pending && policy::covers(&new, &c.desc)
                    })
            })
            .collect();
        for h in &old {
            self.remove(*h);
        }
        old
    }

    /// A blocking callback for `handle` arrived: the lock is matched no more and must be
    /// cancelled once unused.
    pub fn on_blocking(&mut self, handle: LockHandle) -> Blocked {
        let Some(cached) = self.locks.get_mut(&handle) else {
            if !self.early_blocking.contains(&handle) {
                if self.early_blocking.len() >= limits::CLIENT_EARLY_BLOCKING_MAX {
                    self.early_blocking.pop_front();
                }
                self.early_blocking.push_back(handle);
            }
            return Blocked::Unknown;
        };
        cached.cancel_pending = true;
        if let Some(seq) = cached.lru_seq.take() {
            self.lru.remove(&seq);
        }
        if cached.users == 0 {
            Blocked::CancelNow
        } else {
            Blocked::WhenUnused
        }
    }

    /// Forgets a lock (its cancel was sent, or the server no longer has it). Returns what it
    /// covered, so the caller can drop the caches under it.
    pub fn remove(&mut self, handle: LockHandle) -> Option<LockDesc> {
        let cached = self.locks.remove(&handle)?;
        if let Some(seq) = cached.lru_seq {
            self.lru.remove(&seq);
        }
        if let Some(set) = self.by_resource.get_mut(&cached.desc.resource) {
            set.remove(&handle);
            if set.is_empty() {
                self.by_resource.remove(&cached.desc.resource);
            }
        }
        Some(cached.desc)
    }

    /// Changes the LRU size; returns the unused locks to cancel to fit.
    pub fn set_max_unused(&mut self, max_unused: usize) -> Vec<LockHandle> {
        self.max_unused = max_unused;
        self.shrink_lru()
    }

    fn shrink_lru(&mut self) -> Vec<LockHandle> {
        let mut out = Vec::new();
        while self.lru.len() > self.max_unused {
            let Some((_, handle)) = self.lru.pop_first() else {
                break;
            };
            if let Some(c) = self.locks.get_mut(&handle) {
                c.lru_seq = None;
                c.cancel_pending = true;
            }
            out.push(handle);
        }
        out
    }

    /// Every lock, in handle order, and forgets them all: the server evicted this client,
    /// so none is valid and every cache under them must go.
    pub fn clear(&mut self) -> Vec<(LockHandle, LockDesc)> {
        let mut all: Vec<(LockHandle, LockDesc)> =
            self.locks.iter().map(|(h, c)| (*h, c.desc)).collect();
        all.sort_by_key(|(h, _)| *h);
        self.locks.clear();
        self.by_resource.clear();
        self.lru.clear();
        all
    }

    /// The locks on `resource`, in handle order.
    pub fn locks_on(&self, resource: &ResourceId) -> Vec<(LockHandle, LockDesc)> {
        let Some(set) = self.by_resource.get(resource) else {
            return Vec::new();
        };
        set.iter()
            .filter_map(|h| self.locks.get(h).map(|c| (*h, c.desc)))
            .collect()
    }

    pub fn desc(&self, handle: LockHandle) -> Option<LockDesc> {
        self.locks.get(&handle).map(|c| c.desc)
    }

    /// Whether `handle` is to be cancelled once unused (and is matched no more).
    pub fn is_cancel_pending(&self, handle: LockHandle) -> bool {
        self.locks.get(&handle).is_some_and(|c| c.cancel_pending)
    }

    /// Users of `handle` (0 when unused or unknown).
    pub fn users(&self, handle: LockHandle) -> u32 {
        self.locks.get(&handle).map_or(0, |c| c.users)
    }

    pub fn len(&self) -> usize {
        self.locks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.locks.is_empty()
    }

    /// How many more locks fit before the LRU of unused locks overflows, counting every
    /// lock held (in use or not): what a client may ask for at once without pushing out
    /// the locks it caches.
    pub fn room(&self) -> usize {
        self.max_unused.saturating_sub(self.locks.len())
    }

    /// Unused locks in the LRU, least recently used first.
    pub fn lru(&self) -> Vec<LockHandle> {
        self.lru.values().copied().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_script::{desc, handle, show, show_handle};

    fn show_handles(handles: &[LockHandle]) -> String {
        let names: Vec<String> = handles.iter().map(|h| show_handle(*h)).collect();
        format!("[{}]", names.join(" "))
    }

    /// Runs the operations on the left of `expected` against a cache with room for
    /// `max_unused` unused locks and compares each result with the right side. Operations:
    /// `insert hN LOCK`, `match LOCK`, `release hN` (the locks to cancel), `blocking hN`,
    /// `remove hN`, `resize N`, `users hN`, `lru`, `room`, `on rN`, `clear`.
    fn check(max_unused: usize, expected: &str) {
        let mut cache = LockCache::new(max_unused);
        let mut got = Vec::new();
        let mut want = Vec::new();
        for line in expected.lines().map(str::trim).filter(|l| !l.is_empty()) {
            let (op, result) = line.split_once("=>").unwrap();
            let words: Vec<&str> = op.split_whitespace().collect();
            let shown = match words[0] {
                "insert" => match cache.insert(handle(words[1]), desc(&words[2..])) {
                    Ok(()) => "ok".to_owned(),
                    Err(e) => format!("error: {e}"),
                },
                "match" => cache
                    .match_lock(&desc(&words[1..]))
                    .map_or("none".to_owned(), show_handle),
                "release" => match cache.release(handle(words[1])) {
                    Ok(cancel) => format!("cancel {}", show_handles(&cancel)),
                    Err(e) => format!("error: {e}"),
                },
                "blocking" => format!("{:?}", cache.on_blocking(handle(words[1]))),
                "remove" => cache
                    .remove(handle(words[1]))
                    .map_or("none".to_owned(), |d| show(&d)),
                "resize" => {
                    let cancel = cache.set_max_unused(words[1].parse().unwrap());
                    format!("cancel {}", show_handles(&cancel))
                }
                "users" => cache.users(handle(words[1])).to_string(),
                "lru" => show_handles(&cache.lru()),
                "supersede" => show_handles(&cache.take_superseded(handle(words[1]))),
                "room" => cache.room().to_string(),
                "on" => {
                    let r = desc(&["NL", "plain", words[1]]).resource;
                    let locks: Vec<String> = cache
                        .locks_on(&r)
                        .iter()
                        .map(|(h, d)| format!("{} {}", show_handle(*h), show(d)))
                        .collect();
                    format!("[{}]", locks.join(", "))
                }
                "clear" => {
                    let all: Vec<LockHandle> = cache.clear().iter().map(|(h, _)| *h).collect();
                    show_handles(&all)
                }
                other => panic!("unknown operation {other}"),
            };
            got.push(format!("{:<24} => {shown}", op.trim()));
            want.push(format!("{:<24} => {}", op.trim(), result.trim()));
        }
        assert_eq!(got.join("\n"), want.join("\n"));
    }

    #[test]
    fn matching_rules() {
        check(
            10,
            "
            insert h1 PW 0-EOF          => ok
            insert h1 PW 0-EOF          => error: lock 0x1 is already cached
            match PR 4096-8191          => h1
            match PW 0-EOF              => h1
            match EX 0-9                => none
            match PR 0-9 r2             => none
            insert h2 PR 0-4095 r2      => ok
            match PR 0-9 r2             => h2
            match PR 0-4096 r2          => none
            match PW 0-9 r2             => none
            insert h3 GROUP:5 0-EOF r3  => ok
            match GROUP:5 100-200 r3    => h3
            match GROUP:6 100-200 r3    => none
            match PR 100-200 r3         => none
            insert h4 PR bits LOOKUP|UPDATE r4 => ok
            match CR bits UPDATE r4     => h4
            match PR bits UPDATE|PERM r4 => none
            users h1                    => 3
            on r2                       => [h2 PR 0-4095 r2]
            ",
        );
    }

    #[test]
    fn unused_locks_go_to_the_lru_and_overflow_in_lru_order() {
        check(
            2,
            "
            insert h1 PR 0-99    => ok
            insert h2 PR 0-99 r2 => ok
            insert h3 PR 0-99 r3 => ok
            release h2           => cancel []
            release h1           => cancel []
            lru                  => [h2 h1]
            match PR 0-9 r2      => h2
            lru                  => [h1]
            release h2           => cancel []
            lru                  => [h1 h2]
            release h3           => cancel [h1]
            lru                  => [h2 h3]
            match PR 0-9         => none
            remove h1            => PR 0-99
            resize 0             => cancel [h2 h3]
            lru                  => []
            release h3           => error: lock 0x3 has no users to release
            release h9           => error: no lock with handle 0x9
            ",
        );
    }

    #[test]
    fn a_new_lock_supersedes_the_unused_locks_it_covers() {
        check(
            10,
            "
            insert h1 PR bits LOOKUP          => ok
            release h1                        => cancel []
            insert h2 PR bits UPDATE          => ok
            release h2                        => cancel []
            insert h3 PR bits LOOKUP r2       => ok
            release h3                        => cancel []
            insert h4 PR bits LOOKUP|UPDATE   => ok
            supersede h4                      => [h1 h2]
            lru                               => [h3]
            on r1                             => [h4 PR bits 0x3]
            insert h5 PW 0-EOF r3             => ok
            insert h6 PR 0-4095 r3            => ok
            release h6                        => cancel []
            insert h7 PR 0-EOF r3             => ok
            supersede h7                      => [h6]
            on r3                             => [h5 PW 0-EOF r3, h7 PR 0-EOF r3]
            insert h8 PR 0-99 r4              => ok
            release h8                        => cancel []
            blocking h8                       => CancelNow
            insert h9 PR 0-EOF r4             => ok
            supersede h9                      => []
            supersede h8                      => []
            ",
        );
    }

    #[test]
    fn room_counts_every_lock_held() {
        check(
            3,
            "
            room                 => 3
            insert h1 PR 0-99    => ok
            room                 => 2
            insert h2 PR 0-99 r2 => ok
            release h2           => cancel []
            room                 => 1
            blocking h2          => CancelNow
            room                 => 1
            remove h2            => PR 0-99 r2
            room                 => 2
            resize 1             => cancel []
            room                 => 0
            ",
        );
    }

    #[test]
    fn blocking_callbacks_cancel_when_unused() {
        check(
            10,
            "
            insert h1 PW 0-EOF => ok
            insert h2 PR 0-EOF r2 => ok
            release h2         => cancel []
            blocking h2        => CancelNow
            lru                => []
            match PR 0-9 r2    => none
            remove h2          => PR 0-EOF r2
            match PR 0-9       => h1
            blocking h1        => WhenUnused
            match PR 0-9       => none
            release h1         => cancel []
            release h1         => cancel [h1]
            lru                => []
            remove h1          => PW 0-EOF
            blocking h1        => Unknown
            remove h1          => none
            ",
        );
    }

    #[test]
    fn a_blocking_callback_may_overtake_the_grant() {
        check(
            10,
            "
            blocking h7        => Unknown
            blocking h7        => Unknown
            insert h7 PW 0-EOF => ok
            match PR 0-9       => none
            users h7           => 1
            release h7         => cancel [h7]
            remove h7          => PW 0-EOF
            insert h8 PW 0-EOF => ok
            release h8         => cancel []
            ",
        );
    }

    #[test]
    fn clear_forgets_everything() {
        check(
            10,
            "
            insert h3 PR 0-99    => ok
            insert h1 PW 0-99 r2 => ok
            release h3           => cancel []
            clear                => [h1 h3]
            lru                  => []
            match PR 0-9         => none
            on r2                => []
            ",
        );
    }
}
