//! FUSE over io_uring (Linux 6.14 and later, with the `fuse` module's `enable_uring`
//! parameter set). Added for Sheen; see `SHEEN.md` at the crate's root.
//!
//! With it, requests do not pass through `read(2)` and `writev(2)` on `/dev/fuse`: the kernel
//! keeps one queue per possible CPU, and each queue holds *ring entries* this process
//! registered, each a header buffer and a payload buffer. A request the kernel queues on a
//! CPU is copied into a free entry of that CPU's queue and completes the entry's pending
//! `IORING_OP_URING_CMD`; the reply is written into the same buffers and handed back with
//! a `COMMIT_AND_FETCH` command, which also makes the entry wait for the next request.
//! Forgets, interrupts and notifications still go through `/dev/fuse`.
//!
//! Each queue has its own ring and thread here. A request is parsed and dispatched as one
//! read from `/dev/fuse` would be, from a contiguous copy of its header and per-operation
//! struct placed just before its payload, so nothing but those few bytes is copied. The
//! reply may come from any thread: it is written straight into the entry once the
//! dispatch returned (the request's bytes are not used after that), and staged until then
//! otherwise; whichever of the two comes second submits the commit.

use std::cell::Cell;
use std::io;
use std::io::IoSlice;
use std::os::fd::AsFd;
use std::os::fd::AsRawFd;
use std::os::fd::FromRawFd;
use std::os::fd::OwnedFd;
use std::os::fd::RawFd;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::AtomicU8;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering;
use std::time::Duration;

use io_uring::IoUring;
use io_uring::cqueue;
use io_uring::opcode;
use io_uring::squeue;
use io_uring::types;
use log::debug;
use log::error;
use log::warn;
use parking_lot::Mutex;

use crate::Filesystem;
use crate::ReplyEmpty;
use crate::channel::Channel;
use crate::channel::ChannelSender;
use crate::ll::Operation;
use crate::reply::ReplySender;
use crate::request::RequestWithSender;
use crate::session::SessionEventLoop;

/// `sizeof(struct fuse_in_header)`.
const IN_HEADER: usize = 40;
/// `sizeof(struct fuse_out_header)`.
const OUT_HEADER: usize = 16;
/// `struct fuse_uring_req_header`: `in_out[128]`, `op_in[128]`, then
/// `struct fuse_uring_ent_in_out { u64 flags; u64 commit_id; u32 payload_sz; u32 padding;
/// u64 reserved; }`.
const HEADER_LEN: usize = 288;
const OP_IN_AT: usize = 128;
const OP_IN_MAX: usize = 128;
const PAYLOAD_SZ_AT: usize = 256 + 16;
/// Where the payload starts in an entry's request buffer: room before it for the in header
/// and the largest per-operation struct, so a request is contiguous as `/dev/fuse` gives it.
const REQUEST_AT: usize = 256;
/// `enum fuse_uring_cmd`.
const CMD_REGISTER: u32 = 1;
const CMD_COMMIT_AND_FETCH: u32 = 2;
/// How often a queue's thread looks whether the session ended.
const STOP_POLL: Duration = Duration::from_millis(200);

thread_local! {
    /// The queue whose thread this is, if it is one.
    static QUEUE_THREAD: Cell<Option<u16>> = const { Cell::new(None) };
}

/// User data of the wake eventfd's read.
const WAKE: u64 = u64::MAX;

/// Called when a queue's thread stops while the session still runs (with the queue's id and
/// why): the kernel keeps queueing that CPU's requests on entries nobody serves, so they
/// would wait for ever. Set with `Session::on_uring_queue_failure`; the filesystem should
/// abort the connection, so that they fail instead.
pub(crate) type QueueFailureHook = Arc<dyn Fn(u16, &io::Error) + Send + Sync>;

/// The dispatch of an entry's request returned.
const DISPATCHED: u8 = 1;
/// The reply of an entry's request is staged.
const REPLIED: u8 = 2;

/// What each queue is made of.
#[derive(Debug, Clone, Copy)]
pub(crate) struct UringSizes {
    /// Ring entries per queue: requests of one CPU's queue that can be in userspace at once.
    pub(crate) depth: usize,
    /// Bytes of each entry's payload buffer; the kernel wants at least the larger of
    /// `max_write` and `max_pages` pages.
    pub(crate) payload: usize,
}

/// How many queues the kernel keeps: one per possible CPU (`nr_cpu_ids`).
pub(crate) fn queue_count() -> io::Result<usize> {
    let possible = std::fs::read_to_string("/sys/devices/system/cpu/possible")?;
    highest_cpu(&possible)
        .map(|cpu| cpu + 1)
        .ok_or_else(|| io::Error::other(format!("cannot parse possible CPUs {possible:?}")))
}

/// The highest CPU number in a kernel CPU list (`0-3,8,10-11`).
fn highest_cpu(list: &str) -> Option<usize> {
    let mut highest = None;
    for part in list.trim().split(',') {
        let last = part.rsplit('-').next()?;
        let cpu: usize = last.trim().parse().ok()?;
        highest = Some(highest.map_or(cpu, |h: usize| h.max(cpu)));
    }
    highest
}

/// A zeroed, 8-byte aligned buffer the kernel reads and writes through raw pointers.
struct RawBuf {
    words: Box<[u64]>,
}

impl RawBuf {
    fn new(bytes: usize) -> Self {
        RawBuf {
            words: vec![0u64; bytes.div_ceil(8)].into_boxed_slice(),
        }
    }

    fn ptr(&self) -> *mut u8 {
        self.words.as_ptr().cast::<u8>().cast_mut()
    }
}

/// One queue's ring, shared by its thread (which waits for completions) and every thread
/// that replies (which submits commits).
struct Queue {
    ring: IoUring<squeue::Entry128, cqueue::Entry>,
    submit: Mutex<()>,
    fuse_fd: RawFd,
    qid: u16,
    /// Wakes the queue's thread to submit commits other threads queued: io_uring runs a
    /// command's later completion as task work of the thread that *submitted* it, so only
    /// the queue's thread submits, or a tokio worker would be interrupted for each request
    /// that arrives on an entry it committed.
    wake: OwnedFd,
    /// A wake is on its way (`wake` written, the thread not yet past its next submit).
    wake_pending: AtomicBool,
    /// Where the thread's read of `wake` lands.
    wake_count: RawBuf,
}

impl std::fmt::Debug for Queue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queue").field("qid", &self.qid).finish()
    }
}

impl Queue {
    /// Queues a command, and submits it unless this is the queue's own thread, whose next
    /// wait submits it (a commit and the wait for the next request in one system call).
    fn push(&self, sqe: &squeue::Entry128) -> io::Result<()> {
        {
            let _pushing = self.submit.lock();
            // SAFETY: pushes are serialised by `submit`; the queue's thread only reads the
            // completion queue. The SQE's buffers outlive the command (they are the entry's).
            unsafe {
                let mut sq = self.ring.submission_shared();
                sq.push(sqe)
                    .map_err(|_| io::Error::other("io_uring submission queue full"))?;
                sq.sync();
            }
        }
        if QUEUE_THREAD.with(Cell::get) == Some(self.qid)
            || self.wake_pending.swap(true, Ordering::SeqCst)
        {
            return Ok(());
        }
        let one = 1u64.to_ne_bytes();
        loop {
            // SAFETY: writes 8 bytes from a live buffer to an fd this queue owns.
            let n = unsafe { libc::write(self.wake.as_raw_fd(), one.as_ptr().cast(), one.len()) };
            if n == 8 {
                return Ok(());
            }
            let e = io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EINTR) => continue,
                // The counter is full: the thread has wakes enough to come.
                Some(libc::EAGAIN) => return Ok(()),
                _ => return Err(e),
            }
        }
    }

    /// Reads the wake eventfd, completing with [`WAKE`] as user data.
    fn arm_wake(&self) -> io::Result<()> {
        let sqe = opcode::Read::new(types::Fd(self.wake.as_raw_fd()), self.wake_count.ptr(), 8)
            .build()
            .user_data(WAKE);
        self.push(&squeue::Entry128::from(sqe))
    }

    /// A uring command on `/dev/fuse` carrying `struct fuse_uring_cmd_req`.
    fn command(&self, op: u32, index: usize, commit_id: u64, iovecs: Option<u64>) -> squeue::Entry128 {
        let mut cmd = [0u8; 80];
        cmd[8..16].copy_from_slice(&commit_id.to_ne_bytes());
        cmd[16..18].copy_from_slice(&self.qid.to_ne_bytes());
        let mut builder = opcode::UringCmd80::new(types::Fd(self.fuse_fd), op).cmd(cmd);
        if let Some(addr) = iovecs {
            builder = builder.addr(Some(addr));
        }
        let sqe = builder.build().user_data(index as u64);
        match iovecs {
            // REGISTER wants the iovec count in `sqe->len`, which the builder does not set.
            Some(_) => with_len(sqe, 2),
            None => sqe,
        }
    }
}

/// Sets `len` (bytes 24..28 of the SQE) of a built 128-byte SQE.
fn with_len(sqe: squeue::Entry128, len: u32) -> squeue::Entry128 {
    // SAFETY: `Entry128` is `repr(C)` over `io_uring_sqe` and 64 more bytes of plain data,
    // 128 bytes (checked by io-uring's own tests and below); every bit pattern is valid.
    let mut bytes: [u8; 128] = unsafe { std::mem::transmute(sqe) };
    bytes[24..28].copy_from_slice(&len.to_ne_bytes());
    unsafe { std::mem::transmute::<[u8; 128], squeue::Entry128>(bytes) }
}

/// A ring entry: its buffers, and the state of the request it holds.
pub(crate) struct RingEntry {
    index: usize,
    queue: Arc<Queue>,
    header: RawBuf,
    request: RawBuf,
    payload: usize,
    /// `iov[0]` the header, `iov[1]` the payload, as REGISTER gives them to the kernel.
    iovecs: Box<[libc::iovec; 2]>,
    state: AtomicU8,
    staged: Mutex<Vec<u8>>,
    /// The `unique` of the request the entry holds, for an error reply.
    unique: AtomicU64,
}

// SAFETY: the raw buffers are written by one party at a time: the kernel until the entry's
// command completes, then the request's dispatch and its reply (ordered by `state`), then
// the kernel again after the commit.
unsafe impl Send for RingEntry {}
unsafe impl Sync for RingEntry {}

impl std::fmt::Debug for RingEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RingEntry")
            .field("qid", &self.queue.qid)
            .field("index", &self.index)
            .finish()
    }
}

impl RingEntry {
    fn new(index: usize, queue: Arc<Queue>, payload: usize) -> Self {
        let header = RawBuf::new(HEADER_LEN);
        let request = RawBuf::new(REQUEST_AT + payload);
        let iovecs = Box::new([
            libc::iovec {
                iov_base: header.ptr().cast(),
                iov_len: HEADER_LEN,
            },
            libc::iovec {
                // SAFETY: within the allocation of REQUEST_AT + payload bytes.
                iov_base: unsafe { request.ptr().add(REQUEST_AT) }.cast(),
                iov_len: payload,
            },
        ]);
        RingEntry {
            index,
            queue,
            header,
            request,
            payload,
            iovecs,
            state: AtomicU8::new(0),
            staged: Mutex::new(Vec::new()),
            unique: AtomicU64::new(0),
        }
    }

    fn register(&self) -> io::Result<()> {
        let sqe = self.queue.command(
            CMD_REGISTER,
            self.index,
            0,
            Some(self.iovecs.as_ptr() as u64),
        );
        self.queue.push(&sqe)
    }

    fn header_bytes(&self, at: usize, len: usize) -> &[u8] {
        debug_assert!(at + len <= HEADER_LEN);
        // SAFETY: in bounds; called only while the entry's request is ours.
        unsafe { std::slice::from_raw_parts(self.header.ptr().add(at), len) }
    }

    /// The request the kernel put in this entry, made contiguous (in header, per-operation
    /// struct, payload), or why it cannot be.
    fn request(&self) -> Result<(&[u8], u64), (u64, &'static str)> {
        let head = self.header_bytes(0, IN_HEADER);
        let len = u32::from_ne_bytes([head[0], head[1], head[2], head[3]]) as usize;
        let mut unique = [0u8; 8];
        unique.copy_from_slice(&head[8..16]);
        let unique = u64::from_ne_bytes(unique);
        self.unique.store(unique, Ordering::Release);
        let sz = self.header_bytes(PAYLOAD_SZ_AT, 4);
        let payload = u32::from_ne_bytes([sz[0], sz[1], sz[2], sz[3]]) as usize;
        if payload > self.payload {
            return Err((unique, "payload larger than the entry's buffer"));
        }
        let Some(op_len) = len
            .checked_sub(IN_HEADER)
            .and_then(|l| l.checked_sub(payload))
            .filter(|l| *l <= OP_IN_MAX && l % 8 == 0)
        else {
            return Err((unique, "request length does not match its parts"));
        };
        let start = REQUEST_AT - op_len - IN_HEADER;
        // SAFETY: `start..REQUEST_AT + payload` is inside the request buffer; nothing else
        // touches it while the request is ours. The copies do not overlap (different buffers).
        unsafe {
            let base = self.request.ptr();
            std::ptr::copy_nonoverlapping(self.header.ptr(), base.add(start), IN_HEADER);
            std::ptr::copy_nonoverlapping(
                self.header.ptr().add(OP_IN_AT),
                base.add(start + IN_HEADER),
                op_len,
            );
            Ok((
                std::slice::from_raw_parts(base.add(start), REQUEST_AT + payload - start),
                unique,
            ))
        }
    }

    /// Writes a reply (out header, then what follows) into the entry and commits it.
    fn commit(&self, reply: &[&[u8]]) -> io::Result<()> {
        let total: usize = reply.iter().map(|s| s.len()).sum();
        let mut header = [0u8; OUT_HEADER];
        let mut at = 0;
        let payload_len = total.saturating_sub(OUT_HEADER);
        if total < OUT_HEADER || payload_len > self.payload {
            // Never left unanswered: the caller would wait for ever.
            error!(
                "queue {}: a FUSE reply of {total} bytes does not fit a ring entry; EIO instead",
                self.queue.qid
            );
            let unique = self.unique.load(Ordering::Acquire);
            return self.commit_error(unique, libc::EIO);
        }
        // SAFETY: the request is ours until the commit below; bounds checked above.
        unsafe {
            let payload = self.request.ptr().add(REQUEST_AT);
            for slice in reply {
                for (i, b) in slice.iter().enumerate() {
                    // Header bytes one by one (16 at most), the rest as one copy.
                    if at + i < OUT_HEADER {
                        header[at + i] = *b;
                    } else {
                        let rest = &slice[i..];
                        std::ptr::copy_nonoverlapping(
                            rest.as_ptr(),
                            payload.add(at + i - OUT_HEADER),
                            rest.len(),
                        );
                        break;
                    }
                }
                at += slice.len();
            }
            std::ptr::copy_nonoverlapping(header.as_ptr(), self.header.ptr(), OUT_HEADER);
            std::ptr::copy_nonoverlapping(
                (payload_len as u32).to_ne_bytes().as_ptr(),
                self.header.ptr().add(PAYLOAD_SZ_AT),
                4,
            );
        }
        let mut unique = [0u8; 8];
        unique.copy_from_slice(&header[8..16]);
        let sqe = self.queue.command(
            CMD_COMMIT_AND_FETCH,
            self.index,
            u64::from_ne_bytes(unique),
            None,
        );
        self.queue.push(&sqe)
    }

    /// Commits an error reply for a request that could not be dispatched.
    fn commit_error(&self, unique: u64, errno: i32) -> io::Result<()> {
        let mut header = [0u8; OUT_HEADER];
        header[0..4].copy_from_slice(&(OUT_HEADER as u32).to_ne_bytes());
        header[4..8].copy_from_slice(&(-errno).to_ne_bytes());
        header[8..16].copy_from_slice(&unique.to_ne_bytes());
        self.commit(&[&header])
    }

    fn commit_staged(&self) -> io::Result<()> {
        let staged = self.staged.lock();
        self.commit(&[&staged])
    }

    /// The reply of the entry's request.
    fn reply(&self, data: &[IoSlice<'_>]) -> io::Result<()> {
        if self.state.load(Ordering::Acquire) & DISPATCHED != 0 {
            let slices: Vec<&[u8]> = data.iter().map(|s| &s[..]).collect();
            return self.commit(&slices);
        }
        {
            let mut staged = self.staged.lock();
            staged.clear();
            for s in data {
                staged.extend_from_slice(s);
            }
        }
        if self.state.fetch_or(REPLIED, Ordering::AcqRel) & DISPATCHED != 0 {
            self.commit_staged()
        } else {
            Ok(())
        }
    }

    /// The dispatch of the entry's request returned: its bytes are no longer read.
    fn dispatched(&self) {
        if self.state.fetch_or(DISPATCHED, Ordering::AcqRel) & REPLIED != 0 {
            if let Err(e) = self.commit_staged() {
                error!("committing a FUSE reply on queue {}: {e}", self.queue.qid);
            }
        }
    }
}

/// Replies to a request that came through a ring entry.
#[derive(Debug, Clone)]
pub(crate) struct UringReply {
    entry: Arc<RingEntry>,
    /// `/dev/fuse`, for what only it offers (backing files for passthrough).
    pub(crate) channel: ChannelSender,
}

impl UringReply {
    pub(crate) fn send(&self, data: &[IoSlice<'_>]) -> io::Result<()> {
        self.entry.reply(data)
    }
}

/// The rings of a session, made before the INIT reply so that a failure can still leave
/// io_uring out of it; started (entries registered, threads running) after it.
#[derive(Debug)]
pub(crate) struct UringSetup {
    queues: Vec<(Arc<Queue>, Vec<Arc<RingEntry>>)>,
}

impl UringSetup {
    pub(crate) fn new(channel: &Channel, sizes: UringSizes) -> io::Result<Self> {
        let count = queue_count()?;
        let depth = sizes.depth.max(1);
        let mut queues = Vec::with_capacity(count);
        for qid in 0..count {
            let ring = IoUring::<squeue::Entry128, cqueue::Entry>::builder()
                .build(u32::try_from((depth + 1).next_power_of_two()).unwrap_or(u32::MAX))?;
            // SAFETY: eventfd has no preconditions; the fd is owned from here on.
            let wake = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
            if wake < 0 {
                return Err(io::Error::last_os_error());
            }
            // SAFETY: a new fd nothing else owns.
            let wake = unsafe { OwnedFd::from_raw_fd(wake) };
            let queue = Arc::new(Queue {
                ring,
                submit: Mutex::new(()),
                fuse_fd: channel.as_fd().as_raw_fd(),
                qid: u16::try_from(qid).map_err(|_| io::Error::other("too many CPUs"))?,
                wake,
                wake_pending: AtomicBool::new(false),
                wake_count: RawBuf::new(8),
            });
            let entries = (0..depth)
                .map(|i| Arc::new(RingEntry::new(i, Arc::clone(&queue), sizes.payload)))
                .collect();
            queues.push((queue, entries));
        }
        Ok(UringSetup { queues })
    }

    /// Registers every entry and starts one thread per queue. `fault_stop` (fault injection
    /// for tests) makes that queue's thread stop with an error once its entries are
    /// registered.
    pub(crate) fn start<FS: Filesystem>(
        self,
        event_loop: impl Fn(String) -> SessionEventLoop<FS>,
        stop: &Arc<AtomicBool>,
        on_failure: Option<QueueFailureHook>,
        fault_stop: Option<u16>,
    ) -> io::Result<Vec<std::thread::JoinHandle<io::Result<()>>>> {
        let mut threads = Vec::with_capacity(self.queues.len());
        for (queue, entries) in self.queues {
            let name = format!("fuser-uring-{}", queue.qid);
            let se = event_loop(name.clone());
            let stop = Arc::clone(stop);
            let on_failure = on_failure.clone();
            let fault = fault_stop == Some(queue.qid);
            threads.push(
                std::thread::Builder::new()
                    .name(name)
                    .spawn(move || {
                        let served = serve_queue(&queue, entries, &se, &stop, fault);
                        if let Err(e) = &served {
                            // Its CPU's requests now wait for a queue nobody serves: say so
                            // at once, and let the filesystem end the connection.
                            error!("FUSE io_uring queue {} stopped: {e}", queue.qid);
                            if !stop.load(Ordering::Acquire) {
                                if let Some(hook) = &on_failure {
                                    hook(queue.qid, e);
                                }
                            }
                        }
                        served
                    })?,
            );
        }
        Ok(threads)
    }
}

/// One queue's thread: registers its entries, then dispatches each request that completes
/// one, until every entry ended (the connection went, or the kernel refused them and fell
/// back to `/dev/fuse`) or the session stopped.
fn serve_queue<FS: Filesystem>(
    queue: &Arc<Queue>,
    entries: Vec<Arc<RingEntry>>,
    se: &SessionEventLoop<FS>,
    stop: &AtomicBool,
    fault: bool,
) -> io::Result<()> {
    QUEUE_THREAD.with(|q| q.set(Some(queue.qid)));
    pin_to_cpu(usize::from(queue.qid));
    let mut live = vec![false; entries.len()];
    let served = serve_entries(queue, &entries, &mut live, se, stop, fault);
    if live.iter().any(|&l| l) {
        // The kernel may still hold these entries' buffers: leave them allocated.
        std::mem::forget(entries);
    }
    served
}

fn serve_entries<FS: Filesystem>(
    queue: &Arc<Queue>,
    entries: &[Arc<RingEntry>],
    live: &mut [bool],
    se: &SessionEventLoop<FS>,
    stop: &AtomicBool,
    fault: bool,
) -> io::Result<()> {
    for entry in entries {
        entry.register()?;
        live[entry.index] = true;
    }
    if fault {
        return Err(io::Error::other("fault injection: the queue's thread stops"));
    }
    let mut remaining = entries.len();
    let timeout = types::Timespec::from(STOP_POLL);
    let args = types::SubmitArgs::new().timespec(&timeout);
    let mut done = Vec::new();
    queue.arm_wake()?;
    while remaining > 0 && !stop.load(Ordering::Acquire) {
        // Commits other threads queued before this are submitted now; later ones wake us.
        queue.wake_pending.store(false, Ordering::SeqCst);
        match queue.ring.submitter().submit_with_args(1, &args) {
            Ok(_) => {}
            // A timeout, a signal, or completions to reap first (the completion queue has
            // room for twice the commands this queue can have pending, so it does not
            // overflow): reap and wait again.
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::ETIME | libc::EINTR | libc::EAGAIN | libc::EBUSY)
                ) => {}
            Err(e) => return Err(e),
        }
        // SAFETY: only this thread reads the completion queue.
        unsafe {
            done.extend(
                queue
                    .ring
                    .completion_shared()
                    .map(|cqe| (cqe.user_data(), cqe.result())),
            );
        }
        for (user_data, result) in done.drain(..) {
            if user_data == WAKE {
                queue.arm_wake()?;
                continue;
            }
            let index = user_data as usize;
            let Some(entry) = entries.get(index) else {
                warn!("queue {}: completion for unknown entry {index}", queue.qid);
                continue;
            };
            if result < 0 {
                if live[index] {
                    live[index] = false;
                    remaining -= 1;
                }
                let errno = -result;
                if matches!(errno, libc::ENOTCONN | libc::ECONNABORTED | libc::ECANCELED | libc::ENODEV) {
                    debug!("queue {} entry {index} ended: errno {errno}", queue.qid);
                } else {
                    error!(
                        "queue {} entry {index} failed: {}",
                        queue.qid,
                        io::Error::from_raw_os_error(errno)
                    );
                }
                continue;
            }
            serve_request(entry, se);
        }
    }
    Ok(())
}

/// Runs this thread on `cpu` only: the kernel queues a request on the queue of the CPU that
/// issued it, so the queue's thread is woken where the request and its caller are, without
/// an interrupt to another CPU. Where the CPU is not ours to use (a cpuset), the thread
/// stays where the scheduler puts it.
fn pin_to_cpu(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; CPU_SET stays within it (it ignores
    // CPUs beyond the set's size).
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            debug!("cannot pin queue {cpu} to its CPU: {}", io::Error::last_os_error());
        }
    }
}

fn serve_request<FS: Filesystem>(entry: &Arc<RingEntry>, se: &SessionEventLoop<FS>) {
    entry.state.store(0, Ordering::Release);
    let sender = || {
        ReplySender::Uring(UringReply {
            entry: Arc::clone(entry),
            channel: se.ch.sender(),
        })
    };
    match entry.request() {
        Ok((bytes, unique)) => match RequestWithSender::with_sender(sender(), bytes) {
            Some(req) => {
                if let Ok(Operation::Destroy(_)) = req.request.operation() {
                    req.reply::<ReplyEmpty>().ok();
                } else {
                    req.dispatch(se);
                }
            }
            None => {
                entry.state.fetch_or(DISPATCHED, Ordering::AcqRel);
                if let Err(e) = entry.commit_error(unique, libc::EIO) {
                    error!("replying to an unreadable FUSE request: {e}");
                }
                return;
            }
        },
        Err((unique, why)) => {
            error!("queue {}: {why}", entry.queue.qid);
            entry.state.fetch_or(DISPATCHED, Ordering::AcqRel);
            if let Err(e) = entry.commit_error(unique, libc::EIO) {
                error!("replying to a malformed FUSE request: {e}");
            }
            return;
        }
    }
    entry.dispatched();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_highest_possible_cpu_is_read_from_the_kernel_s_list() {
        assert_eq!(highest_cpu("0-1\n"), Some(1));
        assert_eq!(highest_cpu("0"), Some(0));
        assert_eq!(highest_cpu("0-3,8,10-11"), Some(11));
        assert_eq!(highest_cpu("x"), None);
    }

    #[test]
    fn register_commands_carry_their_iovec_count() {
        let sqe = opcode::UringCmd80::new(types::Fd(3), CMD_REGISTER)
            .addr(Some(0x1000))
            .build()
            .user_data(7);
        let bytes: [u8; 128] = unsafe { std::mem::transmute(with_len(sqe, 2)) };
        assert_eq!(bytes[0], io_uring::opcode::UringCmd80::CODE);
        assert_eq!(u32::from_ne_bytes(bytes[24..28].try_into().unwrap()), 2);
        assert_eq!(u64::from_ne_bytes(bytes[16..24].try_into().unwrap()), 0x1000);
        assert_eq!(u64::from_ne_bytes(bytes[32..40].try_into().unwrap()), 7);
    }
}
