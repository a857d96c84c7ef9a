//! Emulated RDMA verbs: memory registration with keys, and bounds-checked one-sided reads.
//!
//! Each end of a connection owns one *registered memory pool*: a sealed memfd mapping
//! (anonymous shared memory when memfd is unavailable). The pool starts with a header chunk
//! holding a magic, a random token and the *region table*; the rest is cut into 64 KiB chunks
//! from which memory regions are registered. A region is one table entry:
//!
//! | off | size | field |
//! |----:|----:|---|
//! | 0 | 8 | rkey (0 = free slot) |
//! | 8 | 8 | address (byte offset of the region in the pool) |
//! | 16 | 8 | length in bytes |
//! | 24 | 4 | access flags ([`ACCESS_REMOTE_READ`], ...) |
//! | 28 | 4 | reserved |
//!
//! The slot of a region is the index of its first chunk and lives in the high 32 bits of the
//! rkey; the low 32 bits are a per-registration nonce, so a stale or forged key does not
//! match. As in soft-RDMA implementations, the lkey equals the rkey.
//!
//! A one-sided READ names `(rkey, address, length)` and is checked the way an HCA checks it:
//! the key must match the table entry, the region must grant the access, and the range must
//! lie inside the region, which must lie inside the pool. The same check serves the peer's
//! mapping (same-host path: the read is a memcpy from the peer's pool) and our own pool
//! (carrier path: we answer a READ request that arrived over the TCP carrier). Table entries
//! written by a peer are never trusted: every value is bounds-checked before it is used, and
//! the pool is sealed against shrinking so a mapping can never fault.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Mutex;

use bytes::BytesMut;
use tokio::sync::Notify;

/// The peer may read the region with a one-sided READ.
pub const ACCESS_REMOTE_READ: u32 = 0x1;
/// The peer may write the region with a one-sided WRITE (not used by the message path yet).
pub const ACCESS_REMOTE_WRITE: u32 = 0x2;
const ACCESS_ALL: u32 = ACCESS_REMOTE_READ | ACCESS_REMOTE_WRITE;

/// Registration granularity.
pub const CHUNK_BYTES: u64 = 64 << 10;
/// Data chunks per pool: 32 MiB, twice the largest bulk of one message.
pub const POOL_CHUNKS: u64 = 512;
/// Whole pool: the header chunk plus the data chunks.
pub const POOL_BYTES: u64 = (POOL_CHUNKS + 1) * CHUNK_BYTES;
const POOL_MAGIC: u64 = 0x4d44_5252_4e45_4548; // "HEENRRDM", little-endian
const TOKEN_OFFSET: u64 = 8;
const TABLE_OFFSET: u64 = 64;
const ENTRY_BYTES: u64 = 32;

const _: () = assert!(TABLE_OFFSET + POOL_CHUNKS * ENTRY_BYTES <= CHUNK_BYTES);
const _: () = assert!(POOL_CHUNKS * CHUNK_BYTES >= 2 * sheen_wire::limits::MAX_BULK_BYTES);

/// Why a verb was refused. Each has a stable code carried in READ responses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum VerbsError {
    #[error("unknown or stale rkey {0:#018x}")]
    BadKey(u64),
    #[error("region of rkey {0:#018x} does not grant the access")]
    Access(u64),
    #[error("range {addr:#x}+{len} is outside the region of rkey {rkey:#018x}")]
    OutOfBounds { rkey: u64, addr: u64, len: u64 },
    #[error("remote operation failed with code {0}")]
    Remote(u32),
    #[error("cannot register {0} bytes: pool closed or request larger than the pool")]
    NoMemory(u64),
}

impl VerbsError {
    pub fn code(&self) -> u32 {
        match self {
            VerbsError::BadKey(_) => 1,
            VerbsError::Access(_) => 2,
            VerbsError::OutOfBounds { .. } => 3,
            VerbsError::NoMemory(_) => 4,
            VerbsError::Remote(c) => *c,
        }
    }
}

/// A registered memory region, as `ibv_reg_mr` returns it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryRegion {
    pub lkey: u64,
    pub rkey: u64,
    /// Byte offset of the region in its pool (the "virtual address" of verbs).
    pub addr: u64,
    pub len: u64,
    pub access: u32,
}

/// A shared memory mapping of one pool, ours (read-write) or a peer's (read-only).
pub struct Mapping {
    ptr: *mut u8,
    len: u64,
    /// The memfd, kept open until the peer has mapped it.
    fd: Mutex<Option<OwnedFd>>,
}

// SAFETY: the mapping is plain shared memory; all access goes through bounds-checked copies
// and atomics, never through references that assume exclusive access.
unsafe impl Send for Mapping {}
// SAFETY: as above.
unsafe impl Sync for Mapping {}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: ptr/len come from a successful mmap and are unmapped exactly once.
        unsafe {
            libc::munmap(self.ptr.cast(), self.len as usize);
        }
    }
}

fn last_os_error() -> std::io::Error {
    std::io::Error::last_os_error()
}

impl Mapping {
    /// A new pool of [`POOL_BYTES`]: a sealed memfd when `shareable` (so a peer on the same
    /// host can map it), anonymous shared memory otherwise or when memfd is refused.
    pub fn create(shareable: bool) -> std::io::Result<Mapping> {
        let fd = if shareable { memfd_pool().ok() } else { None };
        let (flags, raw) = match &fd {
            Some(fd) => (libc::MAP_SHARED, fd.as_raw_fd()),
            None => (libc::MAP_SHARED | libc::MAP_ANONYMOUS, -1),
        };
        // SAFETY: a fresh mapping of a file we sized to POOL_BYTES (or anonymous memory).
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                POOL_BYTES as usize,
                libc::PROT_READ | libc::PROT_WRITE,
                flags,
                raw,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(last_os_error());
        }
        let map = Mapping {
            ptr: ptr.cast(),
            len: POOL_BYTES,
            fd: Mutex::new(fd),
        };
        map.atomic_u64(0).store(POOL_MAGIC, Ordering::Relaxed);
        map.atomic_u64(TOKEN_OFFSET)
            .store(random_u64() | 1, Ordering::Release);
        Ok(map)
    }

    /// Maps a peer's pool, read-only, through `/proc/PID/fd/FD`; checks the size, the seals
    /// (so the peer cannot shrink it under us) and the token from its hello.
    pub fn open_peer(pid: u32, fd: u32, len: u64, token: u64) -> std::io::Result<Mapping> {
        let bad =
            |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_owned());
        if len != POOL_BYTES || pid == 0 {
            return Err(bad("peer pool has an unexpected size"));
        }
        let path =
            std::ffi::CString::new(format!("/proc/{pid}/fd/{fd}")).map_err(|_| bad("bad path"))?;
        // The path comes from the peer: it must name a regular file of the pool's size before
        // we open it (opening a FIFO or a device could block or have side effects), and the
        // open is non-blocking all the same.
        // SAFETY: zeroed plain struct, filled by stat.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: a NUL-terminated path and a valid out pointer.
        if unsafe { libc::stat(path.as_ptr(), &mut st) } != 0 {
            return Err(last_os_error());
        }
        let is_pool = |st: &libc::stat| {
            st.st_mode & libc::S_IFMT == libc::S_IFREG && st.st_size as u64 == POOL_BYTES
        };
        if !is_pool(&st) {
            return Err(bad("peer pool is not a regular file of the pool size"));
        }
        let flags = libc::O_RDONLY | libc::O_CLOEXEC | libc::O_NONBLOCK | libc::O_NOCTTY;
        // SAFETY: a NUL-terminated path; the fd returned is owned below.
        let raw = unsafe { libc::open(path.as_ptr(), flags) };
        if raw < 0 {
            return Err(last_os_error());
        }
        // SAFETY: raw is a fresh fd we own.
        let file = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: zeroed plain struct, filled by fstat.
        let mut opened: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: valid fd and out pointer.
        if unsafe { libc::fstat(file.as_raw_fd(), &mut opened) } != 0 {
            return Err(last_os_error());
        }
        if !is_pool(&opened) || opened.st_ino != st.st_ino || opened.st_dev != st.st_dev {
            return Err(bad("peer pool changed while being opened"));
        }
        // SAFETY: plain fcntl query.
        let seals = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_GET_SEALS) };
        if seals < 0 || seals & libc::F_SEAL_SHRINK == 0 {
            return Err(bad("peer pool is not sealed against shrinking"));
        }
        // SAFETY: read-only shared mapping of a file at least POOL_BYTES long that cannot shrink.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                POOL_BYTES as usize,
                libc::PROT_READ,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(last_os_error());
        }
        let map = Mapping {
            ptr: ptr.cast(),
            len: POOL_BYTES,
            fd: Mutex::new(None),
        };
        if map.atomic_u64(0).load(Ordering::Relaxed) != POOL_MAGIC
            || map.atomic_u64(TOKEN_OFFSET).load(Ordering::Acquire) != token
        {
            return Err(bad("peer pool token mismatch (not the same host?)"));
        }
        Ok(map)
    }

    /// The pid and fd a same-host peer opens to map this pool, if it is shareable.
    pub fn share_info(&self) -> Option<(u32, u32)> {
        let fd = self.fd.lock().ok()?;
        let raw = fd.as_ref()?.as_raw_fd();
        Some((std::process::id(), u32::try_from(raw).ok()?))
    }

    /// Closes the memfd once the peer has mapped it (or given up); the mapping stays.
    pub fn stop_sharing(&self) {
        if let Ok(mut fd) = self.fd.lock() {
            fd.take();
        }
    }

    pub fn token(&self) -> u64 {
        self.atomic_u64(TOKEN_OFFSET).load(Ordering::Acquire)
    }

    /// An 8-byte aligned word of the header. Only called with constant or table offsets
    /// computed from a checked slot, all inside the header chunk.
    fn atomic_u64(&self, off: u64) -> &AtomicU64 {
        assert!(
            off.is_multiple_of(8) && off + 8 <= CHUNK_BYTES,
            "header offset {off}"
        );
        // SAFETY: in bounds and aligned (mmap is page aligned); AtomicU64 tolerates
        // concurrent access from the other process.
        unsafe { &*(self.ptr.add(off as usize) as *const AtomicU64) }
    }

    fn atomic_u32(&self, off: u64) -> &AtomicU32 {
        assert!(
            off.is_multiple_of(4) && off + 4 <= CHUNK_BYTES,
            "header offset {off}"
        );
        // SAFETY: as for atomic_u64.
        unsafe { &*(self.ptr.add(off as usize) as *const AtomicU32) }
    }

    /// Overwrites a region table entry with raw bytes, as a hostile peer could in its own
    /// pool; only for fuzzing the checks that read peer tables.
    pub(crate) fn write_raw_entry(&self, slot: u64, entry: &[u8; ENTRY_BYTES as usize]) {
        let at = TABLE_OFFSET + (slot % POOL_CHUNKS) * ENTRY_BYTES;
        for (i, word) in entry.chunks_exact(8).enumerate() {
            let mut w = [0u8; 8];
            w.copy_from_slice(word);
            self.atomic_u64(at + 8 * i as u64)
                .store(u64::from_ne_bytes(w), Ordering::Release);
        }
    }

    /// Checks a one-sided access the way an HCA does and returns the pool offset to use.
    pub fn check(&self, rkey: u64, addr: u64, len: u64, need: u32) -> Result<u64, VerbsError> {
        let slot = rkey >> 32;
        if rkey == 0 || slot >= POOL_CHUNKS {
            return Err(VerbsError::BadKey(rkey));
        }
        let entry = TABLE_OFFSET + slot * ENTRY_BYTES;
        if self.atomic_u64(entry).load(Ordering::Acquire) != rkey {
            return Err(VerbsError::BadKey(rkey));
        }
        let region_addr = self.atomic_u64(entry + 8).load(Ordering::Relaxed);
        let region_len = self.atomic_u64(entry + 16).load(Ordering::Relaxed);
        let access = self.atomic_u32(entry + 24).load(Ordering::Relaxed);
        if access & need != need {
            return Err(VerbsError::Access(rkey));
        }
        let oob = VerbsError::OutOfBounds { rkey, addr, len };
        let region_end = region_addr.checked_add(region_len).ok_or(oob)?;
        let end = addr.checked_add(len).ok_or(oob)?;
        if region_addr < CHUNK_BYTES
            || region_end > self.len
            || addr < region_addr
            || end > region_end
        {
            return Err(oob);
        }
        Ok(addr)
    }

    /// One-sided READ: copies `len` bytes of the region `rkey` at `addr` out of this pool.
    pub fn read(&self, rkey: u64, addr: u64, len: u64) -> Result<BytesMut, VerbsError> {
        let at = self.check(rkey, addr, len, ACCESS_REMOTE_READ)?;
        let mut out = BytesMut::with_capacity(len as usize);
        // SAFETY: `check` proved at..at+len lies inside the mapping; the destination has
        // capacity len; the regions cannot overlap (one is heap memory).
        unsafe {
            std::ptr::copy_nonoverlapping(
                self.ptr.add(at as usize),
                out.as_mut_ptr(),
                len as usize,
            );
            out.set_len(len as usize);
        }
        Ok(out)
    }
}

fn memfd_pool() -> std::io::Result<OwnedFd> {
    // SAFETY: a static NUL-terminated name.
    let raw = unsafe {
        libc::memfd_create(
            c"sheen-rdma-pool".as_ptr(),
            libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING,
        )
    };
    if raw < 0 {
        return Err(last_os_error());
    }
    // SAFETY: raw is a fresh fd we own.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    // SAFETY: valid fd.
    if unsafe { libc::ftruncate(fd.as_raw_fd(), POOL_BYTES as libc::off_t) } != 0 {
        return Err(last_os_error());
    }
    let seals = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_SEAL;
    // SAFETY: valid fd.
    if unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_ADD_SEALS, seals) } != 0 {
        return Err(last_os_error());
    }
    Ok(fd)
}

/// Random bits from the kernel, for pool tokens and key nonces.
pub fn random_u64() -> u64 {
    let mut b = [0u8; 8];
    // SAFETY: writes at most 8 bytes into b.
    let n = unsafe { libc::getrandom(b.as_mut_ptr().cast(), b.len(), 0) };
    if n != 8 {
        // Not a security boundary (same-host peers share a uid); time is good enough.
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        return t ^ u64::from(std::process::id()).rotate_left(32);
    }
    u64::from_le_bytes(b)
}

/// Our own pool with its chunk allocator: registration and deregistration.
pub struct LocalPool {
    pub map: Mapping,
    used: Mutex<PoolState>,
    freed: Notify,
}

struct PoolState {
    used: Vec<bool>,
    nonce: u32,
    closed: bool,
}

impl LocalPool {
    pub fn new(shareable: bool) -> std::io::Result<LocalPool> {
        let map = Mapping::create(shareable)?;
        let nonce = random_u64() as u32;
        Ok(LocalPool {
            map,
            used: Mutex::new(PoolState {
                used: vec![false; POOL_CHUNKS as usize],
                nonce,
                closed: false,
            }),
            freed: Notify::new(),
        })
    }

    /// Registers `len` bytes (`ibv_reg_mr`), or `None` when the pool has no room now.
    pub fn try_register(&self, len: u64, access: u32) -> Result<Option<MemoryRegion>, VerbsError> {
        let n_chunks = len.div_ceil(CHUNK_BYTES).max(1);
        let Ok(mut st) = self.used.lock() else {
            return Err(VerbsError::NoMemory(len));
        };
        if st.closed || n_chunks > POOL_CHUNKS {
            return Err(VerbsError::NoMemory(len));
        }
        let mut run = 0u64;
        let mut first = None;
        for (i, &u) in st.used.iter().enumerate() {
            run = if u { 0 } else { run + 1 };
            if run == n_chunks {
                first = Some(i as u64 + 1 - n_chunks);
                break;
            }
        }
        let Some(slot) = first else { return Ok(None) };
        for u in &mut st.used[slot as usize..(slot + n_chunks) as usize] {
            *u = true;
        }
        st.nonce = st.nonce.wrapping_add(0x9e37_79b9);
        let rkey = (slot << 32) | u64::from(st.nonce | 1);
        let addr = CHUNK_BYTES * (slot + 1);
        let entry = TABLE_OFFSET + slot * ENTRY_BYTES;
        self.map
            .atomic_u64(entry + 8)
            .store(addr, Ordering::Relaxed);
        self.map
            .atomic_u64(entry + 16)
            .store(len, Ordering::Relaxed);
        self.map
            .atomic_u32(entry + 24)
            .store(access & ACCESS_ALL, Ordering::Relaxed);
        self.map.atomic_u64(entry).store(rkey, Ordering::Release);
        Ok(Some(MemoryRegion {
            lkey: rkey,
            rkey,
            addr,
            len,
            access,
        }))
    }

    /// Registers `len` bytes, waiting for room; `Err` once the pool is closed.
    pub async fn register(&self, len: u64, access: u32) -> Result<MemoryRegion, VerbsError> {
        loop {
            let freed = self.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            if let Some(r) = self.try_register(len, access)? {
                return Ok(r);
            }
            freed.await;
        }
    }

    /// Copies `data` into a region we registered (a local write through the lkey).
    pub fn write(&self, region: &MemoryRegion, data: &[u8]) -> Result<(), VerbsError> {
        let len = data.len() as u64;
        let at = self.map.check(region.lkey, region.addr, len, 0)?;
        // SAFETY: checked in bounds; the source is heap memory, so no overlap.
        unsafe {
            std::ptr::copy_nonoverlapping(data.as_ptr(), self.map.ptr.add(at as usize), data.len());
        }
        Ok(())
    }

    /// Deregisters a region (`ibv_dereg_mr`) so its chunks can be reused; a key that is not
    /// registered is an error (a peer signalling completion for something it never got).
    pub fn deregister(&self, rkey: u64) -> Result<(), VerbsError> {
        let Ok(mut st) = self.used.lock() else {
            return Err(VerbsError::BadKey(rkey));
        };
        // The entry is ours, so its length is trusted once the key matches.
        let slot = rkey >> 32;
        if rkey == 0 || slot >= POOL_CHUNKS {
            return Err(VerbsError::BadKey(rkey));
        }
        let entry = TABLE_OFFSET + slot * ENTRY_BYTES;
        if self.map.atomic_u64(entry).load(Ordering::Acquire) != rkey {
            return Err(VerbsError::BadKey(rkey));
        }
        let len = self.map.atomic_u64(entry + 16).load(Ordering::Relaxed);
        self.map.atomic_u64(entry).store(0, Ordering::Release);
        let n_chunks = len.div_ceil(CHUNK_BYTES).max(1);
        let end = (slot + n_chunks).min(POOL_CHUNKS);
        for u in &mut st.used[slot as usize..end as usize] {
            *u = false;
        }
        drop(st);
        self.freed.notify_waiters();
        Ok(())
    }

    /// Regions currently registered (for tests and leak checks).
    pub fn n_registered(&self) -> usize {
        (0..POOL_CHUNKS)
            .filter(|slot| {
                self.map
                    .atomic_u64(TABLE_OFFSET + slot * ENTRY_BYTES)
                    .load(Ordering::Acquire)
                    != 0
            })
            .count()
    }

    /// Wakes every waiter and refuses further registrations (connection ended).
    pub fn close(&self) {
        if let Ok(mut st) = self.used.lock() {
            st.closed = true;
        }
        self.freed.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn register_read_deregister() {
        let pool = LocalPool::new(true).unwrap();
        let r = pool
            .try_register(100_000, ACCESS_REMOTE_READ)
            .unwrap()
            .unwrap();
        let data: Vec<u8> = (0..100_000u32).map(|i| i as u8).collect();
        pool.write(&r, &data).unwrap();
        assert_eq!(
            &pool.map.read(r.rkey, r.addr, 100_000).unwrap()[..],
            &data[..]
        );
        assert_eq!(
            &pool.map.read(r.rkey, r.addr + 10, 5).unwrap()[..],
            &data[10..15]
        );
        // Out of bounds, bad keys, overflow.
        assert!(matches!(
            pool.map.read(r.rkey, r.addr + 1, 100_000),
            Err(VerbsError::OutOfBounds { .. })
        ));
        assert!(matches!(
            pool.map.read(r.rkey, r.addr - 1, 1),
            Err(VerbsError::OutOfBounds { .. })
        ));
        assert!(matches!(
            pool.map.read(r.rkey, u64::MAX, 2),
            Err(VerbsError::OutOfBounds { .. })
        ));
        assert!(matches!(
            pool.map.read(r.rkey ^ 4, r.addr, 1),
            Err(VerbsError::BadKey(_))
        ));
        assert!(matches!(
            pool.map.read(u64::MAX, r.addr, 1),
            Err(VerbsError::BadKey(_))
        ));
        assert!(matches!(pool.map.read(0, 0, 0), Err(VerbsError::BadKey(_))));
        assert_eq!(pool.n_registered(), 1);
        pool.deregister(r.rkey).unwrap();
        assert_eq!(pool.n_registered(), 0);
        assert!(matches!(
            pool.map.read(r.rkey, r.addr, 1),
            Err(VerbsError::BadKey(_))
        ));
        assert!(pool.deregister(r.rkey).is_err());
        // A key reissued for the same slot differs from the stale one.
        let r2 = pool.try_register(10, ACCESS_REMOTE_READ).unwrap().unwrap();
        assert_eq!(r2.addr, r.addr);
        assert_ne!(r2.rkey, r.rkey);
    }

    #[test]
    fn access_flags_are_enforced_and_pool_fills() {
        let pool = LocalPool::new(false).unwrap();
        let r = pool.try_register(10, 0).unwrap().unwrap();
        assert!(matches!(
            pool.map.read(r.rkey, r.addr, 1),
            Err(VerbsError::Access(_))
        ));
        let big = (POOL_CHUNKS - 1) * CHUNK_BYTES;
        let b = pool.try_register(big, ACCESS_REMOTE_READ).unwrap().unwrap();
        assert_eq!(pool.try_register(1, ACCESS_REMOTE_READ).unwrap(), None);
        pool.deregister(b.rkey).unwrap();
        assert!(pool.try_register(1, ACCESS_REMOTE_READ).unwrap().is_some());
        pool.close();
        assert!(pool.try_register(1, ACCESS_REMOTE_READ).is_err());
    }

    #[test]
    fn peer_maps_our_pool_by_pid_and_fd() {
        let pool = LocalPool::new(true).unwrap();
        let Some((pid, fd)) = pool.map.share_info() else {
            // memfd refused by this kernel: nothing to map.
            return;
        };
        let r = pool.try_register(4, ACCESS_REMOTE_READ).unwrap().unwrap();
        pool.write(&r, b"abcd").unwrap();
        match Mapping::open_peer(pid, fd, POOL_BYTES, pool.map.token()) {
            Ok(peer) => {
                assert_eq!(&peer.read(r.rkey, r.addr, 4).unwrap()[..], b"abcd");
                pool.deregister(r.rkey).unwrap();
                assert!(peer.read(r.rkey, r.addr, 4).is_err());
            }
            Err(e) => eprintln!("cannot map through /proc here ({e}); carrier path only"),
        }
        assert!(Mapping::open_peer(pid, fd, POOL_BYTES, pool.map.token() ^ 2).is_err());
        // A peer naming some other file of ours (stdin, a pipe, a missing fd) maps nothing.
        let (read_end, _write_end) = {
            let mut fds = [0i32; 2];
            // SAFETY: a valid two-int array.
            assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
            // SAFETY: fresh fds we own.
            unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
        };
        let token = pool.map.token();
        for other in [0, read_end.as_raw_fd() as u32, 999_999] {
            assert!(Mapping::open_peer(pid, other, POOL_BYTES, token).is_err());
        }
    }
}
