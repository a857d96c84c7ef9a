//! Block devices: the small trait the OSD does all its I/O through, aligned buffers, and the
//! choice of engine for a block file.
//!
//! Engines: [`uring::UringDev`] (io_uring, every request's reads or writes in one submission)
//! and [`sync::FileDev`] (pread/pwrite), chosen at open: io_uring unless `SHEEN_OSD_ENGINE=sync`
//! or the kernel refuses it (ENOSYS, EPERM from seccomp, ...). The file is opened with O_DIRECT
//! and falls back to buffered I/O where O_DIRECT gives EINVAL (tmpfs). Tests add in-memory and
//! crash-simulating engines in [`mem`].

use std::alloc::{alloc_zeroed, dealloc, handle_alloc_error, Layout};
use std::fs::File;
use std::io;
use std::ops::{Deref, DerefMut};
use std::os::fd::AsRawFd;
use std::ptr::NonNull;

use std::sync::Mutex;

use crate::limits::{IO_ALIGN_BYTES, POOL_CLASS_BYTES, POOL_MAX_BUF_BYTES, POOL_MIN_BYTES};
use crate::locks::lock;

#[cfg(test)]
pub(crate) mod mem;
pub(crate) mod sync;
pub(crate) mod uring;
pub(crate) mod uring_reads;

use uring_reads::ReadRing;

/// One read: fill `buf` from `offset`.
pub(crate) struct ReadIo<'a> {
    pub offset: u64,
    pub buf: &'a mut [u8],
}

/// One write: store `buf` at `offset`.
pub(crate) struct WriteIo<'a> {
    pub offset: u64,
    pub buf: &'a [u8],
}

/// What the OSD needs from storage. Offsets, lengths and buffers are `IO_ALIGN_BYTES`
/// aligned. A call transfers every byte or fails; an engine submits a whole slice at once.
pub(crate) trait BlockDev: Send + Sync {
    fn read_at(&self, ios: &mut [ReadIo<'_>]) -> io::Result<()>;
    fn write_at(&self, ios: &[WriteIo<'_>]) -> io::Result<()>;
    /// Makes every completed write durable (fdatasync).
    fn sync(&self) -> io::Result<()>;
    /// Device length in bytes.
    fn len(&self) -> u64;
    /// Engine name for logs.
    fn engine(&self) -> &'static str;
    /// The engine's ring for reads that leave the caller's thread free, if it has one.
    fn read_ring(&self) -> Option<&ReadRing> {
        None
    }
}

#[cfg(test)]
impl<T: BlockDev + ?Sized> BlockDev for std::sync::Arc<T> {
    fn read_at(&self, ios: &mut [ReadIo<'_>]) -> io::Result<()> {
        (**self).read_at(ios)
    }
    fn write_at(&self, ios: &[WriteIo<'_>]) -> io::Result<()> {
        (**self).write_at(ios)
    }
    fn sync(&self) -> io::Result<()> {
        (**self).sync()
    }
    fn len(&self) -> u64 {
        (**self).len()
    }
    fn engine(&self) -> &'static str {
        (**self).engine()
    }
    fn read_ring(&self) -> Option<&ReadRing> {
        (**self).read_ring()
    }
}

/// A zero-initialised heap buffer aligned to `IO_ALIGN_BYTES`, as O_DIRECT requires.
///
/// Buffers of 64 KiB and more come from a small process-wide pool and go back to it on drop
/// (also when a caller drops the `Bytes` a read returned): fresh large allocations are mapped
/// anew by the allocator each time, and the page faults cost more than the I/O itself.
pub(crate) struct AlignedBuf {
    ptr: NonNull<u8>,
    len: usize,
    layout: Layout,
}

// SAFETY: the buffer is uniquely owned heap memory, like a `Vec<u8>`.
unsafe impl Send for AlignedBuf {}
// SAFETY: shared access only hands out `&[u8]`.
unsafe impl Sync for AlignedBuf {}

/// A pooled allocation, by size class.
struct Spare(NonNull<u8>);

// SAFETY: an unused, uniquely owned allocation.
unsafe impl Send for Spare {}

/// Idle buffers per size class: class `c` holds allocations of `POOL_MIN_BYTES << c`.
static POOL: Mutex<Vec<Vec<Spare>>> = Mutex::new(Vec::new());

/// The pool size class for an allocation of `size` bytes, if it is pooled.
fn pool_class(size: usize) -> Option<usize> {
    if !(POOL_MIN_BYTES..=POOL_MAX_BUF_BYTES).contains(&size) {
        return None;
    }
    let rounded = size.next_power_of_two();
    usize::try_from((rounded / POOL_MIN_BYTES).trailing_zeros()).ok()
}

impl AlignedBuf {
    /// `len` zero bytes (the allocation is rounded up to the alignment, or the pool class).
    pub fn zeroed(len: usize) -> AlignedBuf {
        AlignedBuf::take(len, true)
    }

    /// `len` bytes holding whatever the buffer last held (zeros when it is fresh; pooled
    /// memory was zeroed when allocated and holds only bytes written since): for callers
    /// that write every byte they will read, so that no time goes into zeroing first.
    pub fn stale(len: usize) -> AlignedBuf {
        AlignedBuf::take(len, false)
    }

    fn take(len: usize, zero: bool) -> AlignedBuf {
        let size = len.max(1).next_multiple_of(IO_ALIGN_BYTES);
        if let Some(class) = pool_class(size) {
            let size = POOL_MIN_BYTES << class;
            let layout = Layout::from_size_align(size, IO_ALIGN_BYTES)
                .expect("pool classes are small powers of two");
            let spare = lock(&POOL).get_mut(class).and_then(Vec::pop);
            if let Some(Spare(ptr)) = spare {
                if zero {
                    // SAFETY: a pooled allocation of `size >= len` bytes nobody else uses.
                    unsafe { std::ptr::write_bytes(ptr.as_ptr(), 0, len) };
                }
                return AlignedBuf { ptr, len, layout };
            }
            return AlignedBuf::fresh(len, layout);
        }
        let layout = Layout::from_size_align(size, IO_ALIGN_BYTES)
            .expect("I/O buffers are bounded by MAX_IO_BYTES or a region size");
        AlignedBuf::fresh(len, layout)
    }

    fn fresh(len: usize, layout: Layout) -> AlignedBuf {
        // SAFETY: `layout` has a non-zero size.
        let raw = unsafe { alloc_zeroed(layout) };
        let ptr = NonNull::new(raw).unwrap_or_else(|| handle_alloc_error(layout));
        AlignedBuf { ptr, len, layout }
    }

    /// A buffer holding a copy of `data`, zero-padded to `len` (≥ `data.len()`).
    pub fn copy_of(data: &[u8], len: usize) -> AlignedBuf {
        let mut buf = AlignedBuf::zeroed(len.max(data.len()));
        buf[..data.len()].copy_from_slice(data);
        buf
    }
}

impl Deref for AlignedBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: `ptr` points to at least `len` initialised bytes owned by `self`.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl DerefMut for AlignedBuf {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `deref`, and `&mut self` guarantees exclusive access.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl AsRef<[u8]> for AlignedBuf {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        if let Some(class) = pool_class(self.layout.size()) {
            let mut pool = lock(&POOL);
            if pool.len() <= class {
                pool.resize_with(class + 1, Vec::new);
            }
            let budget = POOL_CLASS_BYTES / self.layout.size();
            if pool[class].len() < budget.max(1) {
                pool[class].push(Spare(self.ptr));
                return;
            }
        }
        // SAFETY: allocated in `fresh` with exactly this layout.
        unsafe { dealloc(self.ptr.as_ptr(), self.layout) }
    }
}

/// Which engine `SHEEN_OSD_ENGINE` asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum EngineChoice {
    /// io_uring if the kernel allows it, else pread/pwrite.
    Auto,
    Sync,
    /// io_uring or fail.
    Uring,
}

fn engine_choice() -> EngineChoice {
    match std::env::var("SHEEN_OSD_ENGINE").as_deref() {
        Ok("sync") => EngineChoice::Sync,
        Ok("uring") | Ok("io_uring") => EngineChoice::Uring,
        Ok("auto") | Err(_) => EngineChoice::Auto,
        Ok(other) => {
            tracing::warn!(
                value = other,
                "unknown SHEEN_OSD_ENGINE; choosing automatically"
            );
            EngineChoice::Auto
        }
    }
}

fn is_einval(e: &io::Error) -> bool {
    e.raw_os_error() == Some(libc::EINVAL)
}

/// Turns O_DIRECT off on an open file (after the filesystem rejected direct I/O).
fn clear_o_direct(file: &File) -> io::Result<()> {
    let fd = file.as_raw_fd();
    // SAFETY: fcntl on a file descriptor we own, with integer arguments only.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: as above.
    if unsafe { libc::fcntl(fd, libc::F_SETFL, flags & !libc::O_DIRECT) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Wraps an open block file (opened with O_DIRECT if `direct`) in the best engine that works,
/// proven by reading its first block. Engines get a duplicate of the descriptor, which shares
/// the open file description, hence its flock and its O_DIRECT flag.
pub(crate) fn engine_for(file: File, direct: bool, len: u64) -> io::Result<Box<dyn BlockDev>> {
    let choice = engine_choice();
    let mut direct = direct;
    let mut use_uring = choice != EngineChoice::Sync;
    let mut probe = AlignedBuf::zeroed(IO_ALIGN_BYTES);
    loop {
        let dev: io::Result<Box<dyn BlockDev>> = if use_uring {
            file.try_clone()
                .and_then(|f| uring::UringDev::new(f, len))
                .map(|d| Box::new(d) as Box<dyn BlockDev>)
        } else {
            file.try_clone()
                .map(|f| Box::new(sync::FileDev::new(f, len)) as Box<dyn BlockDev>)
        };
        let attempt = dev.and_then(|dev| {
            dev.read_at(&mut [ReadIo {
                offset: 0,
                buf: &mut probe,
            }])?;
            Ok(dev)
        });
        match attempt {
            Ok(dev) => {
                tracing::info!(engine = dev.engine(), direct, "opened OST block file");
                return Ok(dev);
            }
            Err(e) if direct && is_einval(&e) => {
                tracing::warn!("O_DIRECT rejected by the filesystem ({e}); using buffered I/O");
                clear_o_direct(&file)?;
                direct = false;
            }
            Err(e) if use_uring && choice == EngineChoice::Auto => {
                tracing::warn!("io_uring unavailable ({e}); using the pread/pwrite engine");
                use_uring = false;
            }
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligned_buf_is_aligned_and_zeroed() {
        for len in [0, 1, 4096, 10_000, 1 << 20] {
            let mut b = AlignedBuf::zeroed(len);
            assert_eq!(b.len(), len);
            assert_eq!(b.as_ptr() as usize % IO_ALIGN_BYTES, 0);
            assert!(b.iter().all(|&x| x == 0));
            if len > 0 {
                b[len - 1] = 7;
                assert_eq!(b.as_ref()[len - 1], 7);
            }
        }
        let c = AlignedBuf::copy_of(b"abc", 8);
        assert_eq!(&c[..], b"abc\0\0\0\0\0");
    }

    #[test]
    fn pooled_buffers_come_back_zeroed() {
        assert_eq!(pool_class(4096), None);
        assert_eq!(pool_class(64 << 10), Some(0));
        assert_eq!(pool_class((1 << 20) + 4096), Some(5));
        for _ in 0..3 {
            let mut b = AlignedBuf::zeroed(1 << 20);
            assert!(b.iter().all(|&x| x == 0), "reused buffer not zeroed");
            assert_eq!(b.as_ptr() as usize % IO_ALIGN_BYTES, 0);
            b.fill(0xaa);
        }
        let b = AlignedBuf::zeroed(100 << 10);
        assert_eq!(b.len(), 100 << 10);
        assert!(b.iter().all(|&x| x == 0));
    }
}
