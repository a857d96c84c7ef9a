//! Reads that leave the calling thread free: an io_uring whose completions signal an eventfd.
//!
//! [`super::uring::UringDev`] blocks its caller until the I/O completes, so a server has to
//! hand each read to a thread that may block: two thread wake-ups per read, which on a small
//! VM cost more than a 4 KiB read from a fast device. A [`ReadRing`] instead submits a read
//! and returns at once with a [`Ticket`], a future that resolves when the read has completed.
//! Completions are collected by [`ReadRing::reap`], which the caller's event loop runs
//! whenever the ring's eventfd ([`ReadRing::event_fd`]) becomes readable. The OSD knows no
//! async runtime: the ticket wakes whatever `Waker` polled it.
//!
//! The buffer moves into the ring's slot while the kernel may write into it and comes back
//! with the result. A ticket dropped before its read completes leaves the buffer in the slot,
//! which is freed at the last completion; dropping the ring waits for every read in flight.
//! So no buffer is ever freed under the kernel.

use std::future::Future;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::pin::Pin;
use std::sync::{Mutex, PoisonError};
use std::task::{Context, Poll, Waker};

use io_uring::{opcode, types, IoUring};

use super::AlignedBuf;
use crate::codec::{u64_of, usize_of};
use crate::limits::SQE_MAX_BYTES;
use crate::locks::lock;

/// One SQE's worth of a read: `len` bytes from device offset `offset` into the slot's buffer
/// at `at`; `done` bytes of it have arrived.
struct ReadOp {
    offset: u64,
    at: usize,
    len: u32,
    done: u32,
}

/// One read in flight (or a free slot, all fields at their defaults).
#[derive(Default)]
struct Slot {
    ops: Vec<ReadOp>,
    buf: Option<AlignedBuf>,
    /// Ops whose last completion has not been reaped yet.
    left: usize,
    error: Option<io::Error>,
    waker: Option<Waker>,
    /// The ticket is gone: the slot is freed at its last completion.
    abandoned: bool,
}

struct State {
    ring: IoUring,
    slots: Vec<Slot>,
    free: Vec<usize>,
    /// SQEs pushed and not reaped yet (at most `ReadRing::limit`).
    in_flight: usize,
}

/// An io_uring for reads of one block file, with an eventfd for its completions.
pub(crate) struct ReadRing {
    /// The block file; owned by the engine that owns this ring, and closed after it.
    fd: RawFd,
    event: OwnedFd,
    state: Mutex<State>,
    /// Most SQEs in flight: the submission queue's size, so a push never finds it full,
    /// and half the completion queue's, so completions never overflow.
    limit: usize,
}

/// A read started by [`ReadRing::start`]: resolves to the read's result and its buffer.
pub(crate) struct Ticket<'a> {
    ring: &'a ReadRing,
    id: usize,
    finished: bool,
}

fn user_data(id: usize, op: usize) -> u64 {
    (u64_of(id) << 32) | u64_of(op)
}

fn slot_and_op(data: u64) -> (usize, usize) {
    (usize_of(data >> 32), usize_of(data & 0xffff_ffff))
}

fn is_retryable(errno: i32) -> bool {
    errno == libc::EINTR || errno == libc::EAGAIN
}

/// Pushes the rest of op `i` of slot `id`; false if it could not be queued.
fn push(ring: &mut IoUring, fd: RawFd, id: usize, i: usize, slot: &mut Slot) -> bool {
    let (Some(buf), Some(op)) = (slot.buf.as_mut(), slot.ops.get(i)) else {
        return false;
    };
    let start = op.at + op.done as usize;
    let len = op.len - op.done;
    let Some(dst) = buf.get_mut(start..start + len as usize) else {
        return false;
    };
    let entry = opcode::Read::new(types::Fd(fd), dst.as_mut_ptr(), len)
        .offset(op.offset + u64::from(op.done))
        .build()
        .user_data(user_data(id, i));
    // SAFETY: the buffer stays in the slot, untouched, until the slot's last completion is
    // reaped: neither the ticket nor `reap` frees or reads it before `left` reaches zero, and
    // dropping the ring waits for every SQE in flight.
    unsafe { ring.submission().push(&entry) }.is_ok()
}

/// Marks one op of `slot` finished; wakes or frees the slot at its last one.
fn finish_op(slot: &mut Slot, id: usize, free: &mut Vec<usize>, wakers: &mut Vec<Waker>) {
    slot.left -= 1;
    if slot.left > 0 {
        return;
    }
    if slot.abandoned {
        *slot = Slot::default();
        free.push(id);
    } else if let Some(w) = slot.waker.take() {
        wakers.push(w);
    }
}

/// Reaps every completion in the queue: short and interrupted reads are pushed again, the
/// rest finish their op.
fn drain(st: &mut State, fd: RawFd, wakers: &mut Vec<Waker>) {
    let State {
        ring,
        slots,
        free,
        in_flight,
    } = st;
    let mut again = Vec::new();
    for cqe in ring.completion() {
        *in_flight = in_flight.saturating_sub(1);
        let (id, i) = slot_and_op(cqe.user_data());
        let Some(slot) = slots.get_mut(id) else {
            continue;
        };
        let Some(op) = slot.ops.get_mut(i) else {
            continue;
        };
        let res = cqe.result();
        if res < 0 {
            if is_retryable(-res) {
                again.push((id, i));
                continue;
            }
            slot.error.get_or_insert(io::Error::from_raw_os_error(-res));
        } else if res == 0 {
            slot.error.get_or_insert(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "zero-length read",
            ));
        } else {
            let got = u32::try_from(res).unwrap_or(u32::MAX);
            op.done = op.len.min(op.done.saturating_add(got));
            if op.done < op.len {
                again.push((id, i));
                continue;
            }
        }
        finish_op(slot, id, free, wakers);
    }
    for (id, i) in again {
        if push(ring, fd, id, i, &mut slots[id]) {
            *in_flight += 1;
        } else {
            let slot = &mut slots[id];
            slot.error
                .get_or_insert(io::Error::other("io_uring submission queue full"));
            finish_op(slot, id, free, wakers);
        }
    }
}

/// Hands every pushed SQE to the kernel. Transient refusals are retried after reaping what
/// has completed; SQEs that point into buffers may not stay unsubmitted, so an error that
/// persists (no known cause short of a kernel bug) aborts the process, as the blocking engine
/// does.
fn flush(st: &mut State, fd: RawFd, wakers: &mut Vec<Waker>) {
    let mut failures = 0u32;
    while !st.ring.submission().is_empty() {
        let result = st.ring.submit();
        let stuck = match result {
            Ok(n) => n == 0,
            Err(ref e) if matches!(e.raw_os_error(), Some(libc::EINTR)) => false,
            Err(ref e) => {
                if !matches!(e.raw_os_error(), Some(libc::EAGAIN | libc::EBUSY)) {
                    tracing::error!("io_uring_enter failed submitting reads: {e}");
                }
                true
            }
        };
        if stuck {
            failures += 1;
            if failures > 1000 {
                tracing::error!("io_uring refuses reads with buffers queued; aborting");
                std::process::abort();
            }
            drain(st, fd, wakers);
            std::thread::yield_now();
        } else {
            failures = 0;
        }
    }
}

impl ReadRing {
    /// A ring of `entries` SQEs reading from `fd`, which must stay open as long as the ring.
    pub fn new(fd: RawFd, entries: u32) -> io::Result<ReadRing> {
        let ring = IoUring::new(entries)?;
        // SAFETY: eventfd takes integer arguments and returns a new descriptor or -1.
        let raw = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a fresh descriptor nobody else owns.
        let event = unsafe { OwnedFd::from_raw_fd(raw) };
        ring.submitter().register_eventfd(event.as_raw_fd())?;
        let sq = usize::try_from(ring.params().sq_entries()).unwrap_or(1);
        let cq = usize::try_from(ring.params().cq_entries()).unwrap_or(1);
        Ok(ReadRing {
            fd,
            event,
            state: Mutex::new(State {
                ring,
                slots: Vec::new(),
                free: Vec::new(),
                in_flight: 0,
            }),
            limit: sq.min(cq / 2).max(1),
        })
    }

    /// Becomes readable when reads complete; then call [`ReadRing::reap`].
    pub fn event_fd(&self) -> RawFd {
        self.event.as_raw_fd()
    }

    /// Starts reading each `(device offset, offset in buf, length)` of `ios` into `buf`.
    /// Gives the buffer back if the ring has no room for them now.
    pub fn start(
        &self,
        buf: AlignedBuf,
        ios: &[(u64, usize, usize)],
    ) -> Result<Ticket<'_>, AlignedBuf> {
        let mut ops = Vec::with_capacity(ios.len());
        for &(offset, at, len) in ios {
            let mut piece = 0usize;
            while piece < len {
                let n = (len - piece).min(SQE_MAX_BYTES as usize);
                ops.push(ReadOp {
                    offset: offset + u64_of(piece),
                    at: at + piece,
                    len: u32::try_from(n).unwrap_or(SQE_MAX_BYTES),
                    done: 0,
                });
                piece += n;
            }
        }
        let fits = ops.iter().all(|op| {
            op.at
                .checked_add(op.len as usize)
                .is_some_and(|e| e <= buf.len())
        });
        let mut wakers = Vec::new();
        let mut st = lock(&self.state);
        if ops.is_empty() || !fits || st.in_flight + ops.len() > self.limit {
            return Err(buf);
        }
        let id = match st.free.pop() {
            Some(id) => id,
            None => {
                st.slots.push(Slot::default());
                st.slots.len() - 1
            }
        };
        let State {
            ring,
            slots,
            free,
            in_flight,
        } = &mut *st;
        let slot = &mut slots[id];
        let n = ops.len();
        *slot = Slot {
            ops,
            buf: Some(buf),
            left: n,
            ..Slot::default()
        };
        for i in 0..n {
            if push(ring, self.fd, id, i, slot) {
                *in_flight += 1;
            } else {
                slot.error
                    .get_or_insert(io::Error::other("io_uring submission queue full"));
                finish_op(slot, id, free, &mut wakers);
            }
        }
        flush(&mut st, self.fd, &mut wakers);
        drop(st);
        wakers.into_iter().for_each(Waker::wake);
        Ok(Ticket {
            ring: self,
            id,
            finished: false,
        })
    }

    /// Collects the completed reads and wakes their tickets. Returns whether the eventfd had
    /// been signalled since the last call (false: the caller may wait for it again).
    pub fn reap(&self) -> bool {
        let mut count = [0u8; 8];
        // SAFETY: reads 8 bytes into a local array from a descriptor we own.
        let n = unsafe { libc::read(self.event.as_raw_fd(), count.as_mut_ptr().cast(), 8) };
        let mut wakers = Vec::new();
        {
            let mut st = lock(&self.state);
            drain(&mut st, self.fd, &mut wakers);
            flush(&mut st, self.fd, &mut wakers);
        }
        wakers.into_iter().for_each(Waker::wake);
        n == 8
    }
}

impl Drop for ReadRing {
    fn drop(&mut self) {
        let fd = self.fd;
        let st = self.state.get_mut().unwrap_or_else(PoisonError::into_inner);
        let mut wakers = Vec::new();
        let mut failures = 0u32;
        while st.in_flight > 0 {
            match st.ring.submit_and_wait(1) {
                Ok(_) => {}
                Err(e) if matches!(e.raw_os_error(), Some(libc::EINTR | libc::EAGAIN)) => {}
                Err(e) => {
                    failures += 1;
                    if failures > 1000 {
                        tracing::error!("io_uring unusable with reads in flight: {e}; aborting");
                        std::process::abort();
                    }
                }
            }
            drain(st, fd, &mut wakers);
        }
    }
}

impl Future for Ticket<'_> {
    type Output = (io::Result<()>, AlignedBuf);

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        assert!(!this.finished, "read ticket polled after it completed");
        let mut st = lock(&this.ring.state);
        let State { slots, free, .. } = &mut *st;
        let slot = &mut slots[this.id];
        if slot.left > 0 {
            match &slot.waker {
                Some(w) if w.will_wake(cx.waker()) => {}
                _ => slot.waker = Some(cx.waker().clone()),
            }
            return Poll::Pending;
        }
        let taken = std::mem::take(slot);
        free.push(this.id);
        this.finished = true;
        let buf = taken
            .buf
            .expect("a busy slot holds its buffer until its ticket takes it");
        Poll::Ready((taken.error.map_or(Ok(()), Err), buf))
    }
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        let mut st = lock(&self.ring.state);
        let State { slots, free, .. } = &mut *st;
        let slot = &mut slots[self.id];
        if slot.left == 0 {
            *slot = Slot::default();
            free.push(self.id);
        } else {
            slot.abandoned = true;
            slot.waker = None;
        }
    }
}

/// For tests: runs `fut` to completion on this thread, calling `reap` whenever `event_fd`
/// (a read ring's) becomes readable.
#[cfg(test)]
pub(crate) fn block_on_reaping<F: Future>(event_fd: RawFd, reap: impl Fn(), fut: F) -> F::Output {
    let mut fut = std::pin::pin!(fut);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(out) = fut.as_mut().poll(&mut cx) {
            return out;
        }
        let mut pfd = libc::pollfd {
            fd: event_fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one pollfd on the stack.
        unsafe { libc::poll(&mut pfd, 1, 1000) };
        reap();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::FileExt;

    fn block_on<F: Future>(ring: &ReadRing, fut: F) -> F::Output {
        block_on_reaping(
            ring.event_fd(),
            || {
                ring.reap();
            },
            fut,
        )
    }

    fn temp_file(len: usize) -> std::fs::File {
        let file = tempfile::tempfile().unwrap();
        let data: Vec<u8> = (0..len).map(|i| (i / 4096 % 251) as u8).collect();
        file.write_all_at(&data, 0).unwrap();
        file
    }

    fn ring_over(file: &std::fs::File, entries: u32) -> Option<ReadRing> {
        ReadRing::new(file.as_raw_fd(), entries).ok()
    }

    #[test]
    fn scattered_reads_land_where_asked() {
        let file = temp_file(8 << 20);
        let Some(ring) = ring_over(&file, 64) else {
            return;
        };
        // Two runs, the second larger than one SQE, into one buffer with a gap.
        let buf = AlignedBuf::zeroed((3 << 20) + 3 * 4096);
        let ios = [(4096 * 7, 0, 4096), (1 << 20, 2 * 4096, (3 << 20) + 4096)];
        let t = ring.start(buf, &ios).ok().unwrap();
        let (res, buf) = block_on(&ring, t);
        res.unwrap();
        assert!(buf[..4096].iter().all(|&b| b == 7));
        assert!(buf[4096..2 * 4096].iter().all(|&b| b == 0), "gap untouched");
        for (i, block) in buf[2 * 4096..].chunks(4096).enumerate() {
            let want = ((1 << 20) / 4096 + i) % 251;
            assert!(block.iter().all(|&b| usize::from(b) == want), "block {i}");
        }
        let st = lock(&ring.state);
        assert_eq!((st.in_flight, st.free.len(), st.slots.len()), (0, 1, 1));
    }

    #[test]
    fn many_reads_in_flight_complete_and_a_full_ring_says_so() {
        let file = temp_file(4 << 20);
        let Some(ring) = ring_over(&file, 8) else {
            return;
        };
        let limit = ring.limit;
        let mut tickets = Vec::new();
        for i in 0..limit {
            let buf = AlignedBuf::zeroed(4096);
            let t = ring
                .start(buf, &[(u64_of(i) * 4096, 0, 4096)])
                .ok()
                .unwrap();
            tickets.push((i, t));
        }
        // No room for one more until some are reaped.
        let back = ring.start(AlignedBuf::zeroed(4096), &[(0, 0, 4096)]);
        assert!(back.is_err(), "a full ring takes no more reads");
        for (i, t) in tickets {
            let (res, buf) = block_on(&ring, t);
            res.unwrap();
            assert!(buf.iter().all(|&b| usize::from(b) == i % 251), "read {i}");
        }
        assert_eq!(lock(&ring.state).in_flight, 0);
    }

    #[test]
    fn reading_past_the_end_is_an_error_not_garbage() {
        let file = temp_file(1 << 20);
        let Some(ring) = ring_over(&file, 8) else {
            return;
        };
        let t = ring
            .start(AlignedBuf::zeroed(4096), &[(4 << 20, 0, 4096)])
            .ok()
            .unwrap();
        let (res, _) = block_on(&ring, t);
        assert_eq!(res.unwrap_err().kind(), io::ErrorKind::UnexpectedEof);
        // A range outside the buffer is refused before anything is submitted.
        assert!(ring
            .start(AlignedBuf::zeroed(4096), &[(0, 4096, 4096)])
            .is_err());
    }

    #[test]
    fn dropped_tickets_keep_their_buffers_until_the_kernel_is_done() {
        let file = temp_file(4 << 20);
        let Some(ring) = ring_over(&file, 8) else {
            return;
        };
        for round in 0..50 {
            let t = ring
                .start(AlignedBuf::zeroed(1 << 20), &[(0, 0, 1 << 20)])
                .ok()
                .unwrap();
            drop(t);
            if round % 2 == 0 {
                // Let the abandoned read finish and be freed by the reaper.
                let t = ring
                    .start(AlignedBuf::zeroed(4096), &[(0, 0, 4096)])
                    .ok()
                    .unwrap();
                block_on(&ring, t).0.unwrap();
            }
        }
        // The rest are still in flight, or done and not reaped: dropping the ring waits.
        drop(ring);
    }
}
