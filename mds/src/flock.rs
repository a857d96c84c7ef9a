//! File locks taken by applications through their mounts: fcntl(2) record locks and
//! flock(2) locks [ldlm flock], kept by the MDS in memory so that they hold across clients.
//!
//! POSIX locks are byte ranges per owner (a client's kernel lock owner, scoped by the
//! client's uuid): a new lock of an owner replaces, merges with or splits that owner's
//! overlapping ranges; read locks are shared, a write lock conflicts with any other owner's
//! overlapping lock. flock locks cover the whole file, per owner, and never meet POSIX locks
//! (as on Linux). A waiting request (F_SETLKW) waits here at most a bounded time and then
//! answers "keep waiting" (the client asks again), so that no request sits on the server for
//! as long as the client's RPC timeout; a POSIX wait that would close a cycle of waiting
//! owners is EDEADLK.
//!
//! Locks are not kept across an MDS restart (Lustre replays them; Sheen does not yet).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use sheen_wire::{Errno, Fid, FlockConflict, FlockKind, FlockType};
use tokio::sync::Notify;

/// Who holds a lock: a lock owner of one client.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Owner {
    pub client: Arc<str>,
    pub owner: u64,
}

/// One lock asked for or held. `end` is inclusive.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Want {
    pub kind: FlockKind,
    pub typ: FlockType,
    pub start: u64,
    pub end: u64,
    pub pid: u32,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Held {
    owner: Owner,
    typ: FlockType,
    start: u64,
    end: u64,
    pid: u32,
}

impl Held {
    fn overlaps(&self, start: u64, end: u64) -> bool {
        self.start <= end && start <= self.end
    }

    /// Whether this lock keeps `typ` on an overlapping range from another owner.
    fn conflicts_with(&self, typ: FlockType) -> bool {
        typ == FlockType::Write || self.typ == FlockType::Write
    }

    fn as_conflict(&self) -> FlockConflict {
        FlockConflict {
            typ: self.typ,
            start: self.start,
            end: self.end,
            pid: self.pid,
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum FlockError {
    #[error("a conflicting lock is held")]
    Conflict,
    #[error("waiting would deadlock")]
    Deadlock,
    #[error("still waiting for a conflicting lock; ask again")]
    KeepWaiting,
    #[error("invalid lock range {start}..={end}")]
    InvalidRange { start: u64, end: u64 },
    #[error("unlock is not a lock type for this operation")]
    InvalidType,
    #[error("more than {max} file locks held by one client")]
    TooMany { max: usize },
}

impl FlockError {
    pub fn errno(&self) -> Errno {
        match self {
            FlockError::Conflict => Errno::EAGAIN,
            FlockError::Deadlock => Errno::EDEADLK,
            FlockError::KeepWaiting => Errno::EINPROGRESS,
            FlockError::InvalidRange { .. } | FlockError::InvalidType => Errno::EINVAL,
            FlockError::TooMany { .. } => Errno(libc::ENOLCK),
        }
    }
}

#[derive(Default)]
struct Table {
    /// Per file and kind, every lock held.
    files: HashMap<(Fid, FlockKind), Vec<Held>>,
    /// Locks held per client, against [`FileLocks::max_per_client`].
    counts: HashMap<Arc<str>, usize>,
    /// POSIX owners waiting, and the owners they wait for (deadlock detection).
    waiting: HashMap<Owner, Vec<Owner>>,
}

/// The MDS's table of file locks.
pub(crate) struct FileLocks {
    table: Mutex<Table>,
    /// Woken whenever locks go, so that waiters look again.
    changed: Notify,
    max_per_client: usize,
}

impl FileLocks {
    pub fn new(max_per_client: usize) -> FileLocks {
        FileLocks {
            table: Mutex::new(Table::default()),
            changed: Notify::new(),
            max_per_client,
        }
    }

    fn table(&self) -> MutexGuard<'_, Table> {
        // Every change below is made on a copy and then stored: a panic leaves no half.
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether `client` holds any lock.
    pub fn holds_any(&self, client: &str) -> bool {
        self.table().counts.contains_key(client)
    }

    /// F_GETLK: the first lock of another owner that conflicts with `want`.
    pub fn getlk(
        &self,
        fid: Fid,
        owner: &Owner,
        want: &Want,
    ) -> Result<Option<FlockConflict>, FlockError> {
        let (start, end) = range(want)?;
        if want.typ == FlockType::Unlock {
            return Err(FlockError::InvalidType);
        }
        let t = self.table();
        let held = t.files.get(&(fid, want.kind));
        Ok(held.and_then(|locks| {
            locks
                .iter()
                .find(|h| h.owner != *owner && h.overlaps(start, end) && h.conflicts_with(want.typ))
                .map(Held::as_conflict)
        }))
    }

    /// F_SETLK (or an unlock, with `FlockType::Unlock`): takes, changes or drops the lock
    /// without waiting.
    pub fn setlk(&self, fid: Fid, owner: &Owner, want: &Want) -> Result<(), FlockError> {
        let mut t = self.table();
        let result = t.try_set(fid, owner, want, self.max_per_client).map(|_| ());
        drop(t);
        if result.is_ok() {
            self.changed.notify_waiters();
        }
        result.map_err(|e| match e {
            SetError::Conflict(_) => FlockError::Conflict,
            SetError::Other(e) => e,
        })
    }

    /// F_SETLKW: as [`FileLocks::setlk`], waiting up to `bound` for conflicting locks to
    /// go; then [`FlockError::KeepWaiting`].
    pub async fn setlk_wait(
        &self,
        fid: Fid,
        owner: &Owner,
        want: &Want,
        bound: Duration,
    ) -> Result<(), FlockError> {
        let deadline = tokio::time::Instant::now() + bound;
        let _waiting = WaitEntry { locks: self, owner };
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            // Registered before the table is read, so no release between is missed.
            notified.as_mut().enable();
            {
                let mut t = self.table();
                match t.try_set(fid, owner, want, self.max_per_client) {
                    Ok(()) => {
                        t.waiting.remove(owner);
                        drop(t);
                        self.changed.notify_waiters();
                        return Ok(());
                    }
                    Err(SetError::Other(e)) => return Err(e),
                    Err(SetError::Conflict(blockers)) => {
                        if want.kind == FlockKind::Posix {
                            if t.waits_for(&blockers, owner) {
                                return Err(FlockError::Deadlock);
                            }
                            t.waiting.insert(owner.clone(), blockers);
                        }
                    }
                }
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return Err(FlockError::KeepWaiting);
            }
        }
    }

    /// Drops every lock of `kind` that `owner` holds on `fid` (a close).
    pub fn release_owner(&self, fid: Fid, kind: FlockKind, owner: &Owner) {
        let mut t = self.table();
        let mut dropped = 0;
        if let Some(locks) = t.files.get_mut(&(fid, kind)) {
            let before = locks.len();
            locks.retain(|h| h.owner != *owner);
            dropped = before - locks.len();
            if locks.is_empty() {
                t.files.remove(&(fid, kind));
            }
        }
        if dropped > 0 {
            t.count_sub(&owner.client, dropped);
            t.forget_waits_on(owner);
            drop(t);
            self.changed.notify_waiters();
        }
    }

    /// Drops every lock `client` holds (it is gone for good); how many went.
    pub fn release_client(&self, client: &str) -> usize {
        let mut t = self.table();
        let mut dropped = 0;
        t.files.retain(|_, locks| {
            let before = locks.len();
            locks.retain(|h| &*h.owner.client != client);
            dropped += before - locks.len();
            !locks.is_empty()
        });
        t.counts.remove(client);
        t.waiting.retain(|o, _| &*o.client != client);
        drop(t);
        self.changed.notify_waiters();
        dropped
    }

    /// Locks held by every client together.
    #[cfg(test)]
    fn n_locks(&self) -> usize {
        self.table().files.values().map(Vec::len).sum()
    }
}

/// Removes an owner's waiting entry when its wait ends, however it ends.
struct WaitEntry<'a> {
    locks: &'a FileLocks,
    owner: &'a Owner,
}

impl Drop for WaitEntry<'_> {
    fn drop(&mut self) {
        self.locks.table().waiting.remove(self.owner);
    }
}

enum SetError {
    /// The owners of the conflicting locks.
    Conflict(Vec<Owner>),
    Other(FlockError),
}

/// The inclusive byte range `want` covers (the whole file for a flock lock).
fn range(want: &Want) -> Result<(u64, u64), FlockError> {
    match want.kind {
        FlockKind::Flock => Ok((0, u64::MAX)),
        FlockKind::Posix if want.start <= want.end => Ok((want.start, want.end)),
        FlockKind::Posix => Err(FlockError::InvalidRange {
            start: want.start,
            end: want.end,
        }),
    }
}

impl Table {
    fn count_sub(&mut self, client: &Arc<str>, n: usize) {
        if let Some(c) = self.counts.get_mut(client) {
            *c = c.saturating_sub(n);
            if *c == 0 {
                self.counts.remove(client);
            }
        }
    }

    /// Whether one of `blockers` waits, directly or through other waiters, for `me`.
    fn waits_for(&self, blockers: &[Owner], me: &Owner) -> bool {
        let mut seen: HashSet<&Owner> = HashSet::new();
        let mut stack: Vec<&Owner> = blockers.iter().collect();
        while let Some(o) = stack.pop() {
            if o == me {
                return true;
            }
            if seen.insert(o) {
                if let Some(next) = self.waiting.get(o) {
                    stack.extend(next.iter());
                }
            }
        }
        false
    }

    fn try_set(
        &mut self,
        fid: Fid,
        owner: &Owner,
        want: &Want,
        max_per_client: usize,
    ) -> Result<(), SetError> {
        let (start, end) = range(want).map_err(SetError::Other)?;
        let key = (fid, want.kind);
        let empty = Vec::new();
        let held = self.files.get(&key).unwrap_or(&empty);
        if want.typ != FlockType::Unlock {
            let mut blockers: Vec<Owner> = Vec::new();
            for h in held {
                if h.owner != *owner
                    && h.overlaps(start, end)
                    && h.conflicts_with(want.typ)
                    && !blockers.contains(&h.owner)
                {
                    blockers.push(h.owner.clone());
                }
            }
            if !blockers.is_empty() {
                return Err(SetError::Conflict(blockers));
            }
        }
        let (mut next, mine_before) = apply(held, owner, want.typ, start, end, want.pid);
        let mine_after = next
            .iter()
            .filter(|h| h.owner.client == owner.client)
            .count();
        let total = self.counts.get(&owner.client).copied().unwrap_or(0);
        let total_after = (total + mine_after).saturating_sub(mine_before);
        if total_after > max_per_client && total_after > total {
            return Err(SetError::Other(FlockError::TooMany {
                max: max_per_client,
            }));
        }
        next.sort_by_key(|h| h.start);
        if next.is_empty() {
            self.files.remove(&key);
        } else {
            self.files.insert(key, next);
        }
        if total_after == 0 {
            self.counts.remove(&owner.client);
        } else {
            self.counts.insert(Arc::clone(&owner.client), total_after);
        }
        self.forget_waits_on(owner);
        Ok(())
    }

    /// `owner`'s locks changed: waiters that waited for it look again when woken, and until
    /// then do not count as waiting for it (so that a wait it asks for next is not taken for a
    /// deadlock on a stale edge; a real cycle is found when they look again).
    fn forget_waits_on(&mut self, owner: &Owner) {
        for blockers in self.waiting.values_mut() {
            blockers.retain(|o| o != owner);
        }
    }
}

/// `held` after `owner` set `typ` (or unlocked) on `start..=end`: the owner's ranges of the
/// same type that overlap or touch the new one merge with it, those of another type give
/// up the part it covers. Also returns how many locks `owner`'s client held before.
fn apply(
    held: &[Held],
    owner: &Owner,
    typ: FlockType,
    start: u64,
    end: u64,
    pid: u32,
) -> (Vec<Held>, usize) {
    let mine_before = held
        .iter()
        .filter(|h| h.owner.client == owner.client)
        .count();
    let mut new = Held {
        owner: owner.clone(),
        typ,
        start,
        end,
        pid,
    };
    let mut out = Vec::with_capacity(held.len() + 2);
    for h in held {
        if h.owner != *owner {
            out.push(h.clone());
            continue;
        }
        let touches = h.start <= end.saturating_add(1) && start <= h.end.saturating_add(1);
        if !touches {
            out.push(h.clone());
        } else if h.typ == typ && typ != FlockType::Unlock {
            new.start = new.start.min(h.start);
            new.end = new.end.max(h.end);
        } else if h.overlaps(start, end) {
            if h.start < start {
                out.push(Held {
                    end: start - 1,
                    ..h.clone()
                });
            }
            if h.end > end {
                out.push(Held {
                    start: end + 1,
                    ..h.clone()
                });
            }
        } else {
            out.push(h.clone());
        }
    }
    if typ != FlockType::Unlock {
        out.push(new);
    }
    (out, mine_before)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner(client: &str, owner: u64) -> Owner {
        Owner {
            client: Arc::from(client),
            owner,
        }
    }

    fn posix(typ: FlockType, start: u64, end: u64) -> Want {
        Want {
            kind: FlockKind::Posix,
            typ,
            start,
            end,
            pid: 100,
        }
    }

    fn flock(typ: FlockType) -> Want {
        Want {
            kind: FlockKind::Flock,
            typ,
            start: 0,
            end: u64::MAX,
            pid: 200,
        }
    }

    const F: Fid = Fid::ROOT;
    use FlockType::{Read, Unlock, Write};

    /// The ranges `o` holds on `F`, as (type, start, end), in order.
    fn ranges(l: &FileLocks, o: &Owner) -> Vec<(FlockType, u64, u64)> {
        let t = l.table();
        let mut v: Vec<_> = t
            .files
            .get(&(F, FlockKind::Posix))
            .map(|locks| {
                locks
                    .iter()
                    .filter(|h| h.owner == *o)
                    .map(|h| (h.typ, h.start, h.end))
                    .collect()
            })
            .unwrap_or_default();
        v.sort_by_key(|r| r.1);
        v
    }

    #[test]
    fn an_owner_s_ranges_merge_and_split() {
        let l = FileLocks::new(100);
        let a = owner("A", 1);
        l.setlk(F, &a, &posix(Write, 0, 9)).unwrap();
        l.setlk(F, &a, &posix(Write, 10, 19)).unwrap();
        assert_eq!(ranges(&l, &a), vec![(Write, 0, 19)]);
        l.setlk(F, &a, &posix(Write, 30, 39)).unwrap();
        l.setlk(F, &a, &posix(Write, 15, 32)).unwrap();
        assert_eq!(ranges(&l, &a), vec![(Write, 0, 39)]);
        // A read lock in the middle splits the write lock in three.
        l.setlk(F, &a, &posix(Read, 10, 19)).unwrap();
        assert_eq!(
            ranges(&l, &a),
            vec![(Write, 0, 9), (Read, 10, 19), (Write, 20, 39)]
        );
        // An unlock punches a hole.
        l.setlk(F, &a, &posix(Unlock, 5, 12)).unwrap();
        assert_eq!(
            ranges(&l, &a),
            vec![(Write, 0, 4), (Read, 13, 19), (Write, 20, 39)]
        );
        // A write over everything replaces all of it.
        l.setlk(F, &a, &posix(Write, 0, u64::MAX)).unwrap();
        assert_eq!(ranges(&l, &a), vec![(Write, 0, u64::MAX)]);
        l.setlk(F, &a, &posix(Unlock, 0, u64::MAX)).unwrap();
        assert_eq!(l.n_locks(), 0);
        assert!(l.table().counts.is_empty());
    }

    #[test]
    fn writes_conflict_and_reads_share() {
        let l = FileLocks::new(100);
        let (a, b, c) = (owner("A", 1), owner("B", 1), owner("A", 2));
        l.setlk(F, &a, &posix(Write, 100, 199)).unwrap();
        assert_eq!(
            l.setlk(F, &b, &posix(Write, 150, 250)),
            Err(FlockError::Conflict)
        );
        assert_eq!(
            l.setlk(F, &b, &posix(Read, 199, 199)),
            Err(FlockError::Conflict)
        );
        // Another owner of the same client conflicts too.
        assert_eq!(
            l.setlk(F, &c, &posix(Read, 0, 100)),
            Err(FlockError::Conflict)
        );
        l.setlk(F, &b, &posix(Write, 200, 299)).unwrap();
        l.setlk(F, &b, &posix(Write, 0, 99)).unwrap();
        l.setlk(F, &a, &posix(Unlock, 0, u64::MAX)).unwrap();
        l.setlk(F, &a, &posix(Read, 300, 399)).unwrap();
        l.setlk(F, &b, &posix(Read, 300, 350)).unwrap();
        l.setlk(F, &c, &posix(Read, 320, 330)).unwrap();
        assert_eq!(
            l.setlk(F, &b, &posix(Write, 300, 300)),
            Err(FlockError::Conflict)
        );
        assert_eq!(
            l.setlk(F, &a, &posix(Write, 5, 1)),
            Err(FlockError::InvalidRange { start: 5, end: 1 })
        );
    }

    #[test]
    fn getlk_reports_the_first_conflict() {
        let l = FileLocks::new(100);
        let (a, b) = (owner("A", 1), owner("B", 1));
        l.setlk(F, &a, &posix(Read, 10, 19)).unwrap();
        l.setlk(F, &a, &posix(Write, 20, 29)).unwrap();
        assert_eq!(
            l.getlk(F, &b, &posix(Read, 0, 100))
                .unwrap()
                .map(|c| c.start),
            Some(20)
        );
        let c = l.getlk(F, &b, &posix(Write, 0, 100)).unwrap().unwrap();
        assert_eq!((c.typ, c.start, c.end, c.pid), (Read, 10, 19, 100));
        assert_eq!(l.getlk(F, &b, &posix(Write, 30, 100)).unwrap(), None);
        // Its own locks never conflict.
        assert_eq!(l.getlk(F, &a, &posix(Write, 0, 100)).unwrap(), None);
        assert_eq!(
            l.getlk(F, &b, &posix(Unlock, 0, 1)),
            Err(FlockError::InvalidType)
        );
    }

    #[test]
    fn flock_and_posix_locks_are_independent() {
        let l = FileLocks::new(100);
        let (a, b) = (owner("A", 1), owner("B", 7));
        l.setlk(F, &a, &flock(Write)).unwrap();
        l.setlk(F, &b, &posix(Write, 0, u64::MAX)).unwrap();
        assert_eq!(l.setlk(F, &b, &flock(Read)), Err(FlockError::Conflict));
        // Converting one's own flock lock is allowed.
        l.setlk(F, &a, &flock(Read)).unwrap();
        l.setlk(F, &b, &flock(Read)).unwrap();
        assert_eq!(l.setlk(F, &a, &flock(Write)), Err(FlockError::Conflict));
        l.release_owner(F, FlockKind::Flock, &b);
        l.setlk(F, &a, &flock(Write)).unwrap();
        // The POSIX lock is untouched by all of this.
        assert_eq!(ranges(&l, &b), vec![(Write, 0, u64::MAX)]);
    }

    #[test]
    fn release_owner_and_client() {
        let l = FileLocks::new(100);
        let (a1, a2, b) = (owner("A", 1), owner("A", 2), owner("B", 1));
        l.setlk(F, &a1, &posix(Write, 0, 9)).unwrap();
        l.setlk(F, &a1, &posix(Write, 20, 29)).unwrap();
        l.setlk(F, &a2, &posix(Write, 40, 49)).unwrap();
        l.setlk(F, &b, &posix(Read, 60, 69)).unwrap();
        l.release_owner(F, FlockKind::Posix, &a1);
        assert_eq!(ranges(&l, &a1), vec![]);
        assert_eq!(ranges(&l, &a2), vec![(Write, 40, 49)]);
        l.setlk(F, &b, &posix(Write, 0, 29)).unwrap();
        l.setlk(F, &a1, &flock(Write)).unwrap();
        assert_eq!(l.release_client("A"), 2);
        assert_eq!(ranges(&l, &b), vec![(Write, 0, 29), (Read, 60, 69)]);
        assert!(!l.table().counts.contains_key("A"));
    }

    #[test]
    fn too_many_locks_is_enolck() {
        let l = FileLocks::new(2);
        let a = owner("A", 1);
        l.setlk(F, &a, &posix(Write, 0, 0)).unwrap();
        l.setlk(F, &a, &posix(Write, 2, 2)).unwrap();
        let e = l.setlk(F, &a, &posix(Write, 4, 4)).unwrap_err();
        assert_eq!(e.errno(), Errno(libc::ENOLCK));
        // Merging keeps the count down, so it is allowed.
        l.setlk(F, &a, &posix(Write, 1, 1)).unwrap();
        l.setlk(F, &a, &posix(Write, 4, 4)).unwrap();
    }

    #[tokio::test]
    async fn a_waiter_is_granted_when_the_holder_unlocks() {
        let l = Arc::new(FileLocks::new(100));
        let (a, b) = (owner("A", 1), owner("B", 1));
        l.setlk(F, &a, &posix(Write, 0, 99)).unwrap();
        let waiter = {
            let (l, b) = (Arc::clone(&l), b.clone());
            tokio::spawn(async move {
                l.setlk_wait(F, &b, &posix(Write, 50, 60), Duration::from_secs(10))
                    .await
            })
        };
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!waiter.is_finished());
        l.release_owner(F, FlockKind::Posix, &a);
        assert_eq!(waiter.await.unwrap(), Ok(()));
        assert_eq!(ranges(&l, &b), vec![(Write, 50, 60)]);
        assert!(l.table().waiting.is_empty());
    }

    #[tokio::test]
    async fn a_wait_ends_after_its_bound() {
        let l = FileLocks::new(100);
        let (a, b) = (owner("A", 1), owner("B", 1));
        l.setlk(F, &a, &flock(Write)).unwrap();
        let e = l
            .setlk_wait(F, &b, &flock(Read), Duration::from_millis(100))
            .await;
        assert_eq!(e, Err(FlockError::KeepWaiting));
        assert_eq!(FlockError::KeepWaiting.errno(), Errno::EINPROGRESS);
        assert!(l.table().waiting.is_empty());
    }

    #[tokio::test]
    async fn a_cycle_of_waiters_is_edeadlk() {
        let l = Arc::new(FileLocks::new(100));
        let (a, b) = (owner("A", 1), owner("B", 1));
        l.setlk(F, &a, &posix(Write, 0, 9)).unwrap();
        l.setlk(F, &b, &posix(Write, 10, 19)).unwrap();
        // A waits for B...
        let waiter = {
            let (l, a) = (Arc::clone(&l), a.clone());
            tokio::spawn(async move {
                l.setlk_wait(F, &a, &posix(Write, 10, 19), Duration::from_secs(10))
                    .await
            })
        };
        while !l.table().waiting.contains_key(&a) {
            tokio::task::yield_now().await;
        }
        // ...so B waiting for A would never end.
        let e = l
            .setlk_wait(F, &b, &posix(Write, 0, 9), Duration::from_secs(10))
            .await;
        assert_eq!(e, Err(FlockError::Deadlock));
        assert_eq!(e.unwrap_err().errno(), Errno::EDEADLK);
        // B gives up its lock instead: A gets it.
        l.release_owner(F, FlockKind::Posix, &b);
        assert_eq!(waiter.await.unwrap(), Ok(()));
        assert_eq!(ranges(&l, &a), vec![(Write, 0, 19)]);
    }

    #[tokio::test]
    async fn a_released_holder_is_not_waited_for() {
        let l = Arc::new(FileLocks::new(100));
        let (a, b) = (owner("A", 1), owner("B", 1));
        l.setlk(F, &a, &posix(Write, 0, 9)).unwrap();
        l.setlk(F, &b, &posix(Write, 10, 19)).unwrap();
        let waiter = {
            let (l, a) = (Arc::clone(&l), a.clone());
            tokio::spawn(async move {
                l.setlk_wait(F, &a, &posix(Write, 10, 19), Duration::from_secs(10))
                    .await
            })
        };
        while !l.table().waiting.contains_key(&a) {
            tokio::task::yield_now().await;
        }
        // B unlocks and at once waits for A's range, before A's waiter ran again: not a
        // deadlock, B waits until A (granted B's old range) unlocks everything.
        l.setlk(F, &b, &posix(Unlock, 0, u64::MAX)).unwrap();
        let b_waits = {
            let (l, b) = (Arc::clone(&l), b.clone());
            tokio::spawn(async move {
                l.setlk_wait(F, &b, &posix(Write, 0, 9), Duration::from_secs(10))
                    .await
            })
        };
        assert_eq!(waiter.await.unwrap(), Ok(()));
        l.release_owner(F, FlockKind::Posix, &a);
        assert_eq!(b_waits.await.unwrap(), Ok(()));
        assert_eq!(ranges(&l, &b), vec![(Write, 0, 9)]);
    }
}
