//! Write-behind [osc's dirty cache, without the cache]: a write(2) is answered once its PW
//! locks are held and its data is queued, and goes to the OSTs while the application writes
//! on, so one writer keeps several OST writes in flight instead of one.
//!
//! What makes answering early safe:
//! - **Other clients.** The write holds its PW locks from before the answer until the OSTs
//!   replied. Another client's read or write needs a conflicting lock, whose callback waits
//!   for those writes; another client's size (a glimpse) calls the writers' locks back too
//!   (`sheen_client`'s glimpse), so it counts every write answered.
//! - **This client.** Whatever reads the file's data or size, or changes it otherwise, first
//!   waits for the writes of that inode answered before it began ([`WritesInFlight::settle`]):
//!   reads, getattrs, setattrs, fallocate, and the size report at close and fsync. Writes to
//!   overlapping ranges go to the OSTs in the order they were answered.
//! - **Errors.** A write that fails after its answer leaves its error on the inode: the next
//!   write, fsync, or a close (FLUSH) after the failure returns it, as the kernel reports
//!   failed writeback. A close does not wait for writes in flight (every close of every
//!   descriptor sends FLUSH, also one in a child about to exec); fsync does.
//! - **Only writer.** Only while this mount is the file's only writer, as the MDS counted
//!   opens for writing under an attribute lock still held: another writer's glimpses ask
//!   the OSTs (it holds a lock of its own on the objects), which would miss writes in flight.
//! - **Space.** Only while every OST the write goes to has [`limits::BEHIND_SPACE_MARGIN`]
//!   free beyond its part, as the last look said (statfs at mount and then at most once a
//!   second) less what this mount sent it since; a look older than
//!   [`limits::BEHIND_SPACE_TOO_OLD`] does not count. Otherwise writes are synchronous, so
//!   ENOSPC reaches the write(2) that caused it.
//!   (Lustre reserves space per client instead, with grants; several clients filling the
//!   same OSTs to within the margin in the same second can still see ENOSPC one write late.)
//! - **Bounds.** At most [`limits::BEHIND_MAX_BYTES`] are in flight per mount; a write
//!   waits for room. O_SYNC, O_DSYNC and O_DIRECT writes are synchronous.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use fuser::Errno;
use sheen_client::{Client, ClientError, Fid, Layout, LockedWrite};
use sheen_layout::Geometry;
use sheen_wire::TargetKind;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tracing::warn;

use crate::limits;

/// The writes in flight of one mount, per inode.
pub(crate) struct WritesInFlight {
    state: Mutex<State>,
    /// Woken whenever a write ends or a reservation is dropped.
    changed: Notify,
    room: Arc<Semaphore>,
    space: Mutex<Space>,
    asked: Mutex<Asked>,
}

#[derive(Default)]
struct State {
    inodes: HashMap<u64, Inode>,
    next_seq: u64,
}

#[derive(Default)]
struct Inode {
    /// Writes reserved or in flight: sequence number → byte range.
    writes: BTreeMap<u64, (u64, u64)>,
    /// The first error of a write answered early, not yet reported by a close or fsync.
    error: Option<Errno>,
}

/// When the mount last asked the MDS whether it is a file's only writer, per inode (so
/// that a file whose answer cannot be had under a lock costs one question a second).
#[derive(Default)]
struct Asked {
    at: HashMap<u64, Instant>,
}

/// What the mount knows of its OSTs' free space.
#[derive(Default)]
struct Space {
    /// Free bytes per OST index at the last statfs.
    free: HashMap<u32, u64>,
    /// Bytes this mount answered early per OST since (each write's part on that OST).
    since: HashMap<u32, u64>,
    at: Option<Instant>,
    asking: bool,
}

/// A reserved byte range of an inode: writes overlapping it wait until it is dropped.
pub(crate) struct Reservation<'a> {
    writes: &'a WritesInFlight,
    ino: u64,
    seq: u64,
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        self.writes.finish(self.ino, self.seq, None);
    }
}

impl WritesInFlight {
    pub(crate) fn new() -> Arc<WritesInFlight> {
        Arc::new(WritesInFlight {
            state: Mutex::new(State::default()),
            changed: Notify::new(),
            room: Arc::new(Semaphore::new(limits::BEHIND_MAX_BYTES as usize)),
            space: Mutex::new(Space::default()),
            asked: Mutex::new(Asked::default()),
        })
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // Plain data, changed in whole steps: usable after a panic elsewhere.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn space(&self) -> MutexGuard<'_, Space> {
        self.space.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits until `done` holds for the state (checked again after every change).
    async fn wait_until(&self, mut done: impl FnMut(&State) -> bool) {
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if done(&self.state()) {
                return;
            }
            notified.await;
        }
    }

    /// Reserves `[start, end)` of `ino` for a write, once no write reserved before overlaps
    /// it: the write is ordered after those, before any that come later.
    pub(crate) async fn reserve(&self, ino: u64, start: u64, end: u64) -> Reservation<'_> {
        let end = end.max(start.saturating_add(1));
        let overlaps = |st: &State| {
            st.inodes
                .get(&ino)
                .is_some_and(|i| i.writes.values().any(|&(s, e)| s < end && start < e))
        };
        loop {
            {
                let mut st = self.state();
                if !overlaps(&st) {
                    let seq = st.next_seq;
                    st.next_seq += 1;
                    st.inodes
                        .entry(ino)
                        .or_default()
                        .writes
                        .insert(seq, (start, end));
                    return Reservation {
                        writes: self,
                        ino,
                        seq,
                    };
                }
            }
            self.wait_until(|st| !overlaps(st)).await;
        }
    }

    /// Ends write `seq` of `ino`, keeping `error` for the next close or fsync.
    fn finish(&self, ino: u64, seq: u64, error: Option<Errno>) {
        {
            let mut st = self.state();
            if let Some(inode) = st.inodes.get_mut(&ino) {
                inode.writes.remove(&seq);
                if inode.error.is_none() {
                    inode.error = error;
                }
                if inode.writes.is_empty() && inode.error.is_none() {
                    st.inodes.remove(&ino);
                }
            }
        }
        self.changed.notify_waiters();
    }

    /// Waits until every write of `ino` reserved before this call has ended.
    pub(crate) async fn settle(&self, ino: u64) {
        let before = {
            let st = self.state();
            match st.inodes.get(&ino) {
                Some(i) if !i.writes.is_empty() => st.next_seq,
                _ => return,
            }
        };
        self.wait_until(|st| {
            st.inodes
                .get(&ino)
                .and_then(|i| i.writes.keys().next())
                .is_none_or(|&first| first >= before)
        })
        .await;
    }

    /// The error a write answered early left on `ino`, kept for the next close or fsync.
    pub(crate) fn error(&self, ino: u64) -> Option<Errno> {
        self.state().inodes.get(&ino).and_then(|i| i.error)
    }

    /// Takes the error a write of `ino` answered early left, without waiting for the others.
    pub(crate) fn take_error(&self, ino: u64) -> Option<Errno> {
        let mut st = self.state();
        let inode = st.inodes.get_mut(&ino)?;
        let error = inode.error.take();
        if inode.writes.is_empty() {
            st.inodes.remove(&ino);
        }
        error
    }

    /// Settles `ino`'s writes and takes the error one of them left.
    pub(crate) async fn settle_and_take_error(&self, ino: u64) -> Option<Errno> {
        self.settle(ino).await;
        self.take_error(ino)
    }

    /// Whether `ino` has writes in flight or an error to report.
    #[cfg(test)]
    fn busy(&self, ino: u64) -> bool {
        self.state().inodes.contains_key(&ino)
    }

    /// Whether a write of `len` bytes at `offset` of a file of `layout` may be answered
    /// before it is on the OSTs: every OST it writes to has the margin free beyond its part
    /// (see the module doc). Counts the parts against the OSTs when it may; looks at the
    /// OSTs' space again when the last look is a second old (in the background).
    pub(crate) fn space_for(
        self: &Arc<Self>,
        client: &Client,
        layout: &Layout,
        offset: u64,
        len: u64,
    ) -> bool {
        let Some(stripe) = layout.as_plain() else {
            return false;
        };
        let Ok(geom) = Geometry::of(stripe) else {
            return false;
        };
        let mut parts: HashMap<u32, u64> = HashMap::new();
        for chunk in geom.split(offset, len) {
            let Some(obj) = stripe.objects.get(chunk.stripe_idx as usize) else {
                return false;
            };
            *parts.entry(obj.ost_idx).or_default() += chunk.len;
        }
        self.look_at_space_if_old(client);
        let mut space = self.space();
        // No answer yet, or none for long (the OSTs do not answer statfs): synchronous.
        if space
            .at
            .is_none_or(|at| at.elapsed() >= limits::BEHIND_SPACE_TOO_OLD)
        {
            return false;
        }
        let fits = !parts.is_empty()
            && parts.iter().all(|(ost, part)| {
                let free = space.free.get(ost).copied().unwrap_or(0);
                let used = space.since.get(ost).copied().unwrap_or(0);
                free.saturating_sub(used) >= limits::BEHIND_SPACE_MARGIN + part
            });
        if fits {
            for (ost, part) in parts {
                *space.since.entry(ost).or_default() += part;
            }
        }
        fits
    }

    /// Asks the OSTs for their free space in the background, unless the last answer is
    /// recent or a question is out (called at mount, so that the first writes may already
    /// be answered early, and before every write).
    pub(crate) fn look_at_space_if_old(self: &Arc<Self>, client: &Client) {
        let mut space = self.space();
        let fresh = space
            .at
            .is_some_and(|at| at.elapsed() < limits::BEHIND_SPACE_RECHECK);
        if !fresh && !space.asking {
            space.asking = true;
            let me = Arc::clone(self);
            let client = client.clone();
            tokio::spawn(async move { me.look_at_space(&client).await });
        }
    }

    async fn look_at_space(&self, client: &Client) {
        let mut free = HashMap::new();
        for (target, statfs) in client.target_statfs().await {
            if target.kind != TargetKind::Ost {
                continue;
            }
            match statfs {
                Ok(s) => {
                    free.insert(target.index, s.bavail.saturating_mul(u64::from(s.bsize)));
                }
                Err(e) => warn!(ost = target.index, "statfs for write-behind failed: {e}"),
            }
        }
        let mut space = self.space();
        space.free = free;
        space.since.clear();
        space.at = Some(Instant::now());
        space.asking = false;
    }

    /// Whether this mount is the only writer of `fid` (inode `ino`): what the client knows,
    /// or, at most once a second per inode, what the MDS says.
    pub(crate) async fn sole_writer(&self, client: &Client, ino: u64, fid: Fid) -> bool {
        if client.sole_writer(fid) {
            return true;
        }
        {
            let mut asked = self.asked.lock().unwrap_or_else(|p| p.into_inner());
            if asked
                .at
                .get(&ino)
                .is_some_and(|at| at.elapsed() < limits::BEHIND_SPACE_RECHECK)
            {
                return false;
            }
            if asked.at.len() >= limits::BEHIND_ASKED_MAX {
                asked.at.clear();
            }
            asked.at.insert(ino, Instant::now());
        }
        match client.learn_sole_writer(fid).await {
            Ok(sole) => sole,
            Err(e) => {
                warn!(
                    ino,
                    "cannot tell whether this mount is the only writer: {e}"
                );
                false
            }
        }
    }

    /// Room for `len` more bytes in flight (waits while the mount has its most in flight).
    pub(crate) async fn room(&self, len: u64) -> Option<OwnedSemaphorePermit> {
        let n = u32::try_from(len.min(limits::BEHIND_MAX_BYTES)).ok()?;
        Arc::clone(&self.room).acquire_many_owned(n).await.ok()
    }

    /// Sends `write` (whose range `reservation` holds) in the background; its error, if any,
    /// stays on the inode.
    pub(crate) fn send_behind(
        self: &Arc<Self>,
        reservation: Reservation<'_>,
        write: LockedWrite,
        room: OwnedSemaphorePermit,
        on_error: impl FnOnce(&ClientError) -> Errno + Send + 'static,
    ) {
        let (ino, seq) = (reservation.ino, reservation.seq);
        // The background task ends the reservation itself, with its outcome.
        std::mem::forget(reservation);
        let me = Arc::clone(self);
        tokio::spawn(async move {
            let error = write.send().await.err().map(|e| on_error(&e));
            drop(room);
            me.finish(ino, seq, error);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn overlapping_writes_wait_and_settle_waits_for_earlier_ones_only() {
        let w = WritesInFlight::new();
        let a = w.reserve(1, 0, 100).await;
        // A disjoint range and another inode go at once.
        let b = w.reserve(1, 100, 200).await;
        let c = w.reserve(2, 0, 100).await;
        // An overlapping one waits for `a`.
        let w2 = Arc::clone(&w);
        let overlapping = tokio::spawn(async move {
            let r = w2.reserve(1, 50, 60).await;
            let seq = r.seq;
            drop(r);
            seq
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!overlapping.is_finished());
        // settle(1) waits for `a` and `b` (reserved before it), not for `c` (another inode).
        let w3 = Arc::clone(&w);
        let settled = tokio::spawn(async move { w3.settle(1).await });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!settled.is_finished());
        drop(a);
        let seq = tokio::time::timeout(Duration::from_secs(5), overlapping)
            .await
            .expect("the overlapping write goes once `a` is done")
            .expect("task");
        assert!(seq > c.seq);
        assert!(!settled.is_finished(), "b is still in flight");
        drop(b);
        tokio::time::timeout(Duration::from_secs(5), settled)
            .await
            .expect("settled once a and b are done")
            .expect("task");
        assert!(w.busy(2));
        drop(c);
        assert!(!w.busy(2) && !w.busy(1));
    }

    #[tokio::test]
    async fn an_error_stays_until_a_close_takes_it() {
        let w = WritesInFlight::new();
        let r = w.reserve(7, 0, 10).await;
        let seq = r.seq;
        std::mem::forget(r);
        w.finish(7, seq, Some(Errno::ENOSPC));
        assert_eq!(w.error(7), Some(Errno::ENOSPC));
        assert!(w.busy(7));
        assert_eq!(w.settle_and_take_error(7).await, Some(Errno::ENOSPC));
        assert_eq!(w.error(7), None);
        assert!(!w.busy(7));
        assert_eq!(w.settle_and_take_error(7).await, None);
    }
}
