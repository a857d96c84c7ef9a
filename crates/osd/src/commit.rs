//! Group commit: the only path by which the object index changes.
//!
//! A caller has already written its new data blocks (not yet flushed) and hands a record to
//! [`Osd::commit`]. Callers queue; the first one finds no leader and becomes it, takes the whole
//! queue as one batch and, for that batch:
//! 1. validates each record against the index plus the earlier records of the batch (objects
//!    destroyed or ids handed out), rejecting bad ones without logging them;
//! 2. if any record points at new data blocks, issues one fdatasync (the data barrier), so that
//!    data is durable before any record that references it;
//! 3. writes one log group (a checkpoint first, if the log is full) and issues one fdatasync;
//! 4. applies the records to the index, in log order, and only then frees the blocks they
//!    replaced, so no block is reused before the commit that stopped referencing it is durable.
//!
//! Waiters that arrived meanwhile form the next batch, so two flushes serve any number of
//! concurrent writers. See docs/osd-format.md for the crash analysis.
//!
//! If a flush or a log write fails, the on-disk state is unknown: the OSD halts (refuses every
//! further change) until it is reopened, which replays what did reach the disk.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::{Condvar, Mutex};

use sheen_wire::ObjId;

use crate::checkpoint;
use crate::codec::u64_of;
use crate::dev::{AlignedBuf, WriteIo};
use crate::error::OsdError;
use crate::index::Applied;
use crate::limits::*;
use crate::locks::{lock, read, wait, write};
use crate::osd::Osd;
use crate::record::{group_bytes, GroupHeader, Record};

/// A change waiting to be committed.
#[derive(Debug)]
pub(crate) enum Op {
    /// Object ids are assigned by the leader, in log order.
    Precreate {
        count: u32,
    },
    Record(Record),
}

/// The tail of the metadata log; touched only by the leader (and open).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct LogState {
    /// Generation of the newest checkpoint; every group written after it carries it.
    pub generation: u64,
    /// Sequence number of the next record.
    pub next_seq: u64,
    /// Bytes of the log region used since that checkpoint.
    pub tail: u64,
}

type Outcome = Result<Applied, OsdError>;
/// Records to log and ops rejected (with why), by ticket.
type Sorted = (Vec<(u64, Record)>, Vec<(u64, Op, OsdError)>);

#[derive(Default)]
struct QueueState {
    queue: Vec<(u64, Op)>,
    leader: bool,
    next_ticket: u64,
    done: HashMap<u64, Outcome>,
}

/// The commit queue.
#[derive(Default)]
pub(crate) struct CommitQueue {
    state: Mutex<QueueState>,
    changed: Condvar,
}

/// Hands the leader role back if a batch panics (a bug), so that waiters get an answer
/// instead of hanging. Disarmed on the normal path.
struct LeaderGuard<'a> {
    osd: &'a Osd,
    tickets: Vec<u64>,
    armed: bool,
}

impl Drop for LeaderGuard<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        self.osd.halted.store(true, Ordering::Release);
        tracing::error!("commit leader panicked; OST halted");
        let q = &self.osd.commit_queue;
        let mut st = lock(&q.state);
        for ticket in &self.tickets {
            st.done.insert(*ticket, Err(OsdError::Halted));
        }
        st.leader = false;
        q.changed.notify_all();
    }
}

impl Osd {
    /// Commits one change durably and returns what applying it produced.
    pub(crate) fn commit(&self, op: Op) -> Outcome {
        self.commit_all(vec![op])
            .pop()
            .unwrap_or(Err(OsdError::Invalid("a commit without an outcome")))
    }

    /// Commits several changes, each accepted or rejected on its own as if committed apart,
    /// in one batch (so with the same two flushes); the outcomes in the order of `ops`.
    pub(crate) fn commit_all(&self, ops: Vec<Op>) -> Vec<Outcome> {
        let q = &self.commit_queue;
        let mut st = lock(&q.state);
        let first = st.next_ticket;
        let n = u64_of(ops.len());
        st.next_ticket += n;
        st.queue.extend(
            ops.into_iter()
                .enumerate()
                .map(|(i, op)| (first + u64_of(i), op)),
        );
        let mut outcomes: Vec<Option<Outcome>> = (0..n).map(|_| None).collect();
        let mut waiting = outcomes.len();
        loop {
            for (ticket, slot) in (first..).zip(outcomes.iter_mut()) {
                if slot.is_none() {
                    if let Some(outcome) = st.done.remove(&ticket) {
                        *slot = Some(outcome);
                        waiting -= 1;
                    }
                }
            }
            if waiting == 0 {
                return outcomes.into_iter().flatten().collect();
            }
            if !st.leader {
                st.leader = true;
                let batch = std::mem::take(&mut st.queue);
                drop(st);
                let mut guard = LeaderGuard {
                    osd: self,
                    tickets: batch.iter().map(|(t, _)| *t).collect(),
                    armed: true,
                };
                let outcomes = self.run_batch(batch);
                guard.armed = false;
                drop(guard);
                st = lock(&q.state);
                st.done.extend(outcomes);
                st.leader = false;
                q.changed.notify_all();
                continue;
            }
            st = wait(&q.changed, st);
        }
    }

    fn run_batch(&self, batch: Vec<(u64, Op)>) -> Vec<(u64, Outcome)> {
        let mut out = Vec::with_capacity(batch.len());
        if self.halted.load(Ordering::Acquire) {
            self.release_rejected(
                batch.into_iter().map(|(t, op)| (t, op, OsdError::Halted)),
                &mut out,
            );
            return out;
        }
        let mut log = lock(&self.log);
        let (accepted, rejected) = self.prevalidate(batch);
        self.release_rejected(rejected.into_iter(), &mut out);
        // The data barrier: every block the records point at is durable before any record is.
        if accepted.iter().any(|(_, rec)| !rec.new_blocks().is_empty()) {
            if let Err(e) = self.dev.sync() {
                self.fail(&e.into(), &accepted, &mut out);
                return out;
            }
        }
        let encoded: Vec<Vec<u8>> = accepted
            .iter()
            .map(|(_, rec)| {
                let mut enc = Vec::new();
                rec.encode(&mut enc);
                enc
            })
            .collect();
        let mut start = 0usize;
        while start < accepted.len() {
            // As many records as fit in the log; checkpoint first if not even one does.
            let room = self.geo.log_bytes - log.tail;
            let mut body = 0u64;
            let mut end = start;
            while end < accepted.len() && group_bytes(body + u64_of(encoded[end].len())) <= room {
                body += u64_of(encoded[end].len());
                end += 1;
            }
            if end == start {
                if log.tail == 0 {
                    // Unreachable: limits make any record fit an empty log.
                    let e = OsdError::Invalid("log record larger than the log");
                    self.fail(&e, &accepted[start..], &mut out);
                    return out;
                }
                if let Err(e) = self.checkpoint(&mut log) {
                    self.fail(&e, &accepted[start..], &mut out);
                    return out;
                }
                continue;
            }
            let bodies = encoded[start..end].concat();
            if let Err(e) = self.write_group(&mut log, &accepted[start..end], &bodies, &mut out) {
                self.fail(&e, &accepted[start..], &mut out);
                return out;
            }
            start = end;
        }
        out
    }

    /// Splits a batch into records to log (precreates turned into id ranges) and rejections.
    fn prevalidate(&self, batch: Vec<(u64, Op)>) -> Sorted {
        let idx = read(&self.index);
        let mut n_objects = u64_of(idx.objects.len());
        let mut next_oid = idx.next_oid;
        let mut destroyed: HashSet<ObjId> = HashSet::new();
        let mut created: Vec<(ObjId, ObjId)> = Vec::new();
        let mut accepted = Vec::with_capacity(batch.len());
        let mut rejected = Vec::new();
        for (ticket, op) in batch {
            match op {
                Op::Precreate { count } => {
                    let end = next_oid.checked_add(u64::from(count));
                    match end {
                        Some(end) if n_objects + u64::from(count) <= self.geo.max_objects => {
                            accepted.push((
                                ticket,
                                Record::Precreate {
                                    first_oid: next_oid,
                                    count,
                                },
                            ));
                            created.push((next_oid, end));
                            n_objects += u64::from(count);
                            next_oid = end;
                        }
                        _ => rejected.push((ticket, op, OsdError::NoSpace)),
                    }
                }
                Op::Record(rec) => {
                    let Some(oid) = rec.oid() else {
                        rejected.push((ticket, Op::Record(rec), OsdError::Invalid("bad record")));
                        continue;
                    };
                    let exists = (idx.objects.contains_key(&oid)
                        || created.iter().any(|(a, b)| (*a..*b).contains(&oid)))
                        && !destroyed.contains(&oid);
                    if !exists {
                        rejected.push((ticket, Op::Record(rec), OsdError::NotFound(oid)));
                        continue;
                    }
                    if matches!(rec, Record::Destroy { .. }) {
                        destroyed.insert(oid);
                        n_objects -= 1;
                    }
                    accepted.push((ticket, rec));
                }
            }
        }
        (accepted, rejected)
    }

    /// Answers rejected ops, returning the blocks their writers had filled.
    fn release_rejected(
        &self,
        rejected: impl Iterator<Item = (u64, Op, OsdError)>,
        out: &mut Vec<(u64, Outcome)>,
    ) {
        let mut alloc = lock(&self.alloc);
        for (ticket, op, err) in rejected {
            if let Op::Record(rec) = &op {
                for (phys, len) in rec.allocated_runs() {
                    alloc.free(phys, len);
                }
            }
            out.push((ticket, Err(err)));
        }
    }

    /// Writes, flushes and applies one group.
    fn write_group(
        &self,
        log: &mut LogState,
        group: &[(u64, Record)],
        bodies: &[u8],
        out: &mut Vec<(u64, Outcome)>,
    ) -> Result<(), OsdError> {
        let n_records = u32::try_from(group.len()).map_err(|_| OsdError::Invalid("group"))?;
        let bytes = GroupHeader::encode_group(log.generation, log.next_seq, n_records, bodies);
        let len = u64_of(bytes.len());
        debug_assert!(log.tail + len <= self.geo.log_bytes);
        let buf = AlignedBuf::copy_of(&bytes, bytes.len());
        let offset = self.geo.log_offset + log.tail;
        self.dev.write_at(&[WriteIo { offset, buf: &buf }])?;
        self.dev.sync()?;
        log.tail += len;
        log.next_seq += u64_of(group.len());

        let mut freed = Vec::new();
        {
            let mut idx = write(&self.index);
            for (ticket, rec) in group {
                match idx.apply(rec, &self.geo, &mut freed) {
                    Ok(applied) => out.push((*ticket, Ok(applied))),
                    Err(e) => {
                        // Prevalidation makes this unreachable; the index is unchanged by a
                        // failed apply but now disagrees with the log.
                        self.halt(&e);
                        out.push((*ticket, Err(e)));
                    }
                }
            }
        }
        let mut alloc = lock(&self.alloc);
        for (phys, n) in freed {
            alloc.free(phys, n);
        }
        Ok(())
    }

    /// Halts and fails every record not yet answered.
    fn fail(&self, err: &OsdError, rest: &[(u64, Record)], out: &mut Vec<(u64, Outcome)>) {
        self.halt(err);
        let answered: HashSet<u64> = out.iter().map(|(t, _)| *t).collect();
        for (ticket, _) in rest {
            if !answered.contains(ticket) {
                out.push((*ticket, Err(err.duplicate())));
            }
        }
    }

    /// Refuses all further changes after a failed metadata write.
    pub(crate) fn halt(&self, why: &OsdError) {
        if !self.halted.swap(true, Ordering::AcqRel) {
            tracing::error!("halting OST after a failed metadata update: {why}");
        }
    }

    /// Writes the whole index as checkpoint `generation + 1` and starts a new, empty log.
    pub(crate) fn checkpoint(&self, log: &mut LogState) -> Result<(), OsdError> {
        let generation = log.generation + 1;
        let image = {
            let idx = read(&self.index);
            checkpoint::encode(&idx, generation, log.next_seq, &self.geo)?
        };
        let buf = AlignedBuf::copy_of(&image, image.len());
        let offset = self.geo.ckpt_slot_offset(generation);
        self.dev.write_at(&[WriteIo { offset, buf: &buf }])?;
        self.dev.sync()?;
        tracing::debug!(generation, bytes = image.len(), "wrote checkpoint");
        *log = LogState {
            generation,
            next_seq: log.next_seq,
            tail: 0,
        };
        Ok(())
    }
}

const _: () = assert!(GROUP_HEADER_BYTES <= BLOCK_BYTES_U64);
