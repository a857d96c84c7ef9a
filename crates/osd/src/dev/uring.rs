//! The io_uring engine.
//!
//! A small pool of rings (created on demand, at most `RINGS_MAX`) sits behind a mutex; a request
//! takes one ring, pushes one SQE per run (split at `SQE_MAX_BYTES`), submits them all with one
//! `io_uring_enter`, waits for every completion and gives the ring back. Short transfers and
//! EINTR/EAGAIN completions are resubmitted. Buffers are borrowed, so the engine never returns
//! while an SQE that points at them may still be in flight.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::sync::{Condvar, Mutex};

use io_uring::{opcode, types, IoUring};

use super::uring_reads::ReadRing;
use super::{BlockDev, ReadIo, WriteIo};
use crate::codec::u64_of;
use crate::limits::{READ_RING_ENTRIES, RINGS_MAX, RING_ENTRIES, SQE_MAX_BYTES};
use crate::locks::{lock, wait};

/// Rings not in use, and how many exist.
struct Pool {
    idle: Vec<IoUring>,
    created: usize,
    /// Creating another ring failed once; stop trying and share the ones we have.
    max: usize,
    /// Requests waiting for a ring: a ring given back wakes one only if there is one (the
    /// wake-up is a syscall even with nobody to wake).
    waiting: usize,
}

pub(crate) struct UringDev {
    /// Declared before `file`, so it is dropped (waiting for its reads) before the file closes.
    reads: Option<ReadRing>,
    file: File,
    len: u64,
    pool: Mutex<Pool>,
    ring_free: Condvar,
}

/// One transfer of at most `SQE_MAX_BYTES`.
struct Op {
    write: bool,
    offset: u64,
    ptr: *mut u8,
    len: u32,
    done: u32,
}

impl UringDev {
    /// Creates the first ring, which proves the kernel allows io_uring, and the ring for
    /// reads that leave their caller free (without it, every read blocks its caller).
    pub fn new(file: File, len: u64) -> io::Result<UringDev> {
        let ring = IoUring::new(RING_ENTRIES)?;
        let reads = ReadRing::new(file.as_raw_fd(), READ_RING_ENTRIES)
            .inspect_err(|e| tracing::warn!("no io_uring for non-blocking reads: {e}"))
            .ok();
        Ok(UringDev {
            reads,
            file,
            len,
            pool: Mutex::new(Pool {
                idle: vec![ring],
                created: 1,
                max: RINGS_MAX,
                waiting: 0,
            }),
            ring_free: Condvar::new(),
        })
    }

    fn take_ring(&self) -> io::Result<IoUring> {
        let mut pool = lock(&self.pool);
        loop {
            if let Some(ring) = pool.idle.pop() {
                return Ok(ring);
            }
            if pool.created < pool.max {
                pool.created += 1;
                drop(pool);
                let made = IoUring::new(RING_ENTRIES);
                pool = lock(&self.pool);
                match made {
                    Ok(ring) => return Ok(ring),
                    Err(e) => {
                        pool.created -= 1;
                        pool.max = pool.created;
                        if pool.created == 0 {
                            return Err(e);
                        }
                        tracing::warn!(rings = pool.created, "cannot create another io_uring: {e}");
                    }
                }
                continue;
            }
            pool.waiting += 1;
            pool = wait(&self.ring_free, pool);
            pool.waiting -= 1;
        }
    }

    fn put_ring(&self, ring: IoUring) {
        let mut pool = lock(&self.pool);
        pool.idle.push(ring);
        let anyone_waiting = pool.waiting > 0;
        drop(pool);
        if anyone_waiting {
            self.ring_free.notify_one();
        }
    }

    fn run(&self, ops: &mut [Op]) -> io::Result<()> {
        if ops.is_empty() {
            return Ok(());
        }
        let mut ring = self.take_ring()?;
        let result = run_on(&mut ring, types::Fd(self.file.as_raw_fd()), ops);
        self.put_ring(ring);
        result
    }
}

/// Splits one buffer into SQE-sized ops.
fn push_ops(ops: &mut Vec<Op>, write: bool, offset: u64, ptr: *mut u8, len: usize) {
    let mut at = 0usize;
    while at < len {
        let n = (len - at).min(SQE_MAX_BYTES as usize);
        ops.push(Op {
            write,
            offset: offset + u64_of(at),
            // SAFETY: `at < len`, inside the caller's buffer.
            ptr: unsafe { ptr.add(at) },
            len: u32::try_from(n).expect("at most SQE_MAX_BYTES"),
            done: 0,
        });
        at += n;
    }
}

fn is_retryable(errno: i32) -> bool {
    errno == libc::EINTR || errno == libc::EAGAIN
}

/// Submits every op, resubmitting short or interrupted ones, and returns only once nothing is
/// in flight.
fn run_on(ring: &mut IoUring, fd: types::Fd, ops: &mut [Op]) -> io::Result<()> {
    let capacity = usize::try_from(ring.params().sq_entries())
        .unwrap_or(1)
        .max(1);
    let mut next = 0usize;
    let mut again: Vec<usize> = Vec::new();
    let mut in_flight = 0usize;
    let mut first_err: Option<io::Error> = None;
    let mut enter_failures = 0u32;
    loop {
        while first_err.is_none() && in_flight < capacity {
            let i = match again.pop() {
                Some(i) => i,
                None if next < ops.len() => {
                    next += 1;
                    next - 1
                }
                None => break,
            };
            let op = &ops[i];
            let done = op.done as usize;
            // SAFETY: `done < len`, inside the op's buffer.
            let ptr = unsafe { op.ptr.add(done) };
            let len = op.len - op.done;
            let offset = op.offset + u64::from(op.done);
            let entry = if op.write {
                opcode::Write::new(fd, ptr.cast_const(), len)
                    .offset(offset)
                    .build()
            } else {
                opcode::Read::new(fd, ptr, len).offset(offset).build()
            };
            let entry = entry.user_data(u64_of(i));
            // SAFETY: the buffer stays valid until this op's completion is reaped below; we
            // never leave this function with ops in flight.
            if unsafe { ring.submission().push(&entry) }.is_err() {
                again.push(i);
                break;
            }
            in_flight += 1;
        }
        if in_flight == 0 {
            break;
        }
        match ring.submit_and_wait(in_flight) {
            Ok(_) => enter_failures = 0,
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::EINTR | libc::EAGAIN | libc::EBUSY)
                ) => {}
            Err(e) => {
                // Buffers may still be referenced by the kernel; we must not return. This has
                // no known cause short of a kernel bug, so give it a bounded number of tries.
                enter_failures += 1;
                tracing::error!("io_uring_enter failed with {} in flight: {e}", in_flight);
                if enter_failures > 1000 {
                    tracing::error!("io_uring unusable with I/O in flight; aborting");
                    std::process::abort();
                }
                first_err.get_or_insert(e);
            }
        }
        for cqe in ring.completion() {
            in_flight -= 1;
            let Ok(i) = usize::try_from(cqe.user_data()) else {
                continue;
            };
            let Some(op) = ops.get_mut(i) else { continue };
            let res = cqe.result();
            if res < 0 {
                if is_retryable(-res) {
                    again.push(i);
                } else {
                    first_err.get_or_insert(io::Error::from_raw_os_error(-res));
                }
            } else if res == 0 {
                let kind = if op.write {
                    io::ErrorKind::WriteZero
                } else {
                    io::ErrorKind::UnexpectedEof
                };
                first_err.get_or_insert(io::Error::new(kind, "zero-length transfer"));
            } else {
                op.done += u32::try_from(res).unwrap_or(0);
                if op.done < op.len {
                    again.push(i);
                }
            }
        }
    }
    match first_err {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

impl BlockDev for UringDev {
    fn read_at(&self, ios: &mut [ReadIo<'_>]) -> io::Result<()> {
        let mut ops = Vec::with_capacity(ios.len());
        for io in ios.iter_mut() {
            push_ops(
                &mut ops,
                false,
                io.offset,
                io.buf.as_mut_ptr(),
                io.buf.len(),
            );
        }
        self.run(&mut ops)
    }

    fn write_at(&self, ios: &[WriteIo<'_>]) -> io::Result<()> {
        let mut ops = Vec::with_capacity(ios.len());
        for io in ios {
            // The kernel only reads through this pointer (IORING_OP_WRITE).
            push_ops(
                &mut ops,
                true,
                io.offset,
                io.buf.as_ptr().cast_mut(),
                io.buf.len(),
            );
        }
        self.run(&mut ops)
    }

    fn sync(&self) -> io::Result<()> {
        self.file.sync_data()
    }

    fn len(&self) -> u64 {
        self.len
    }

    fn engine(&self) -> &'static str {
        "io_uring"
    }

    fn read_ring(&self) -> Option<&ReadRing> {
        self.reads.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dev::AlignedBuf;

    /// An io_uring device over a temp file of `len` bytes; `None` where io_uring is refused
    /// (the sync engine covers such a machine).
    fn temp_dev(len: u64) -> Option<UringDev> {
        let file = tempfile::tempfile().ok()?;
        file.set_len(len).unwrap();
        UringDev::new(file, len).ok()
    }

    #[test]
    fn many_sqes_round_trip() {
        let Some(dev) = temp_dev(8 << 20) else {
            return;
        };
        // 300 separate 4 KiB writes: more SQEs than the ring holds, submitted in waves.
        let mut src = AlignedBuf::zeroed(300 * 4096);
        for (i, b) in src.iter_mut().enumerate() {
            *b = (i / 4096 % 251) as u8;
        }
        let ios: Vec<WriteIo<'_>> = src
            .chunks(4096)
            .enumerate()
            .map(|(i, c)| WriteIo {
                offset: (i as u64) * 8192,
                buf: c,
            })
            .collect();
        dev.write_at(&ios).unwrap();
        let mut dst = AlignedBuf::zeroed(300 * 4096);
        let mut rios: Vec<ReadIo<'_>> = dst
            .chunks_mut(4096)
            .enumerate()
            .map(|(i, c)| ReadIo {
                offset: (i as u64) * 8192,
                buf: c,
            })
            .collect();
        dev.read_at(&mut rios).unwrap();
        assert!(src[..] == dst[..]);
        // One 3 MiB read is split into SQE_MAX_BYTES pieces.
        let mut big = AlignedBuf::zeroed(3 << 20);
        dev.read_at(&mut [ReadIo {
            offset: 0,
            buf: &mut big,
        }])
        .unwrap();
        assert_eq!(big[8192], 1);
        // Reading past the end fails instead of returning garbage.
        let mut past = AlignedBuf::zeroed(4096);
        assert!(dev
            .read_at(&mut [ReadIo {
                offset: 8 << 20,
                buf: &mut past
            }])
            .is_err());
    }

    #[test]
    fn threads_share_one_ring_in_turn() {
        let Some(dev) = temp_dev(1 << 20) else {
            return;
        };
        // One ring for eight threads: each waits for it in turn and is woken when it is
        // given back (a lost wake-up would hang the test).
        lock(&dev.pool).max = 1;
        let dev = std::sync::Arc::new(dev);
        let threads: Vec<_> = (0..8u8)
            .map(|t| {
                let dev = std::sync::Arc::clone(&dev);
                std::thread::spawn(move || {
                    let mut buf = AlignedBuf::zeroed(4096);
                    for i in 0..200u64 {
                        buf.fill(t);
                        let offset = (u64::from(t) * 200 + i) % 256 * 4096;
                        dev.write_at(&[WriteIo { offset, buf: &buf }]).unwrap();
                        dev.read_at(&mut [ReadIo {
                            offset: 0,
                            buf: &mut buf,
                        }])
                        .unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let pool = lock(&dev.pool);
        assert_eq!((pool.created, pool.idle.len(), pool.waiting), (1, 1, 0));
    }
}
