//! Receive buffers for bulk data, used again instead of given back to the allocator.
//!
//! A 1 MiB bulk (one OST read or write) freed to the allocator often goes back to the
//! kernel, and the next one faults its pages in again (and the kernel zeroes them): a tenth of
//! a reading client's CPU went to those page faults. A buffer handed out here comes back when
//! the last `Bytes` viewing it is dropped, and is kept while the idle ones stay under
//! [`POOL_IDLE_BYTES`] (so the pool never holds more than that).
//!
//! Buffers come in power-of-two classes from [`POOL_MIN_BYTES`] up to the largest bulk;
//! smaller bulks are allocations of their own. Every buffer starts on a
//! [`BUF_ALIGN_BYTES`] boundary, so that an OST can write a block-aligned bulk to its block
//! file with O_DIRECT straight from the receive buffer, without copying it.

use std::sync::Mutex;

use bytes::buf::UninitSlice;
use bytes::{BufMut, Bytes};
use sheen_wire::limits::MAX_BULK_BYTES;

/// Alignment of every receive buffer (what O_DIRECT asks of memory).
pub const BUF_ALIGN_BYTES: usize = 4096;

/// The unit receive buffers are allocated in: aligned, and never read before written.
#[derive(Clone, Copy)]
#[repr(C, align(4096))]
struct Page([u8; BUF_ALIGN_BYTES]);

const _: () = assert!(std::mem::align_of::<Page>() == BUF_ALIGN_BYTES);
const _: () = assert!(std::mem::size_of::<Page>() == BUF_ALIGN_BYTES);

/// Smallest pooled buffer; smaller bulks are not worth it.
pub const POOL_MIN_BYTES: usize = 64 << 10;
/// Most bytes of idle buffers kept, all classes together.
pub const POOL_IDLE_BYTES: usize = 64 << 20;

struct Idle {
    /// Idle buffers per class: class `c` holds `POOL_MIN_BYTES << c` bytes.
    classes: Vec<Vec<Vec<Page>>>,
    bytes: usize,
}

static IDLE: Mutex<Idle> = Mutex::new(Idle {
    classes: Vec::new(),
    bytes: 0,
});

fn idle() -> std::sync::MutexGuard<'static, Idle> {
    // Plain data: a panic elsewhere cannot leave it half-changed.
    IDLE.lock().unwrap_or_else(|p| p.into_inner())
}

/// The class of a buffer of `len` bytes, when pooled.
fn class_of(len: usize) -> Option<usize> {
    let max = usize::try_from(MAX_BULK_BYTES).unwrap_or(usize::MAX);
    if !(POOL_MIN_BYTES..=max).contains(&len) {
        return None;
    }
    let capacity = len.next_power_of_two();
    usize::try_from((capacity / POOL_MIN_BYTES).trailing_zeros()).ok()
}

/// Pages holding at least `bytes` bytes (none filled yet).
fn pages_for(bytes: usize) -> Vec<Page> {
    Vec::with_capacity(bytes.div_ceil(BUF_ALIGN_BYTES))
}

/// An empty buffer with room for `len` bytes: from the pool when one of its class is idle.
pub(crate) fn take(len: usize) -> PooledBuf {
    let Some(class) = class_of(len) else {
        return PooledBuf {
            pages: pages_for(len),
            len: 0,
            class: None,
        };
    };
    let spare = {
        let mut idle = idle();
        let spare = idle.classes.get_mut(class).and_then(Vec::pop);
        if let Some(b) = &spare {
            idle.bytes -= capacity_of(b);
        }
        spare
    };
    PooledBuf {
        pages: spare.unwrap_or_else(|| pages_for(POOL_MIN_BYTES << class)),
        len: 0,
        class: Some(class),
    }
}

fn capacity_of(pages: &Vec<Page>) -> usize {
    pages.capacity() * BUF_ALIGN_BYTES
}

/// A receive buffer, filled through [`BufMut`]; back to the pool when dropped (see the
/// module doc).
///
/// The bytes live in the spare capacity of `pages` (whose length stays 0): the first `len`
/// of them have been written, the rest not.
pub(crate) struct PooledBuf {
    pages: Vec<Page>,
    len: usize,
    class: Option<usize>,
}

impl PooledBuf {
    /// Bytes received so far.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The bytes received, as `Bytes` (no copy) that give the buffer back when all clones
    /// of it are gone.
    pub(crate) fn freeze(self) -> Bytes {
        Bytes::from_owner(self)
    }
}

impl AsRef<[u8]> for PooledBuf {
    fn as_ref(&self) -> &[u8] {
        // SAFETY: the allocation holds `capacity_of(pages) >= len` bytes, the first `len`
        // of which were written through `chunk_mut`/`advance_mut` (the `BufMut` contract).
        unsafe { std::slice::from_raw_parts(self.pages.as_ptr().cast::<u8>(), self.len) }
    }
}

// SAFETY: `remaining_mut` is what is left of the allocation; `chunk_mut` views exactly that
// part; `advance_mut` refuses to move past it, so `len` never exceeds what was written.
unsafe impl BufMut for PooledBuf {
    fn remaining_mut(&self) -> usize {
        capacity_of(&self.pages) - self.len
    }

    unsafe fn advance_mut(&mut self, cnt: usize) {
        assert!(
            cnt <= self.remaining_mut(),
            "advanced past the buffer's end"
        );
        self.len += cnt;
    }

    fn chunk_mut(&mut self) -> &mut UninitSlice {
        let room = self.remaining_mut();
        // SAFETY: `len <= capacity`, so the pointer and the `room` bytes after it are inside
        // the allocation, which `&mut self` borrows exclusively.
        unsafe {
            let start = self.pages.as_mut_ptr().cast::<u8>().add(self.len);
            UninitSlice::from_raw_parts_mut(start, room)
        }
    }
}

impl Drop for PooledBuf {
    fn drop(&mut self) {
        let Some(class) = self.class else {
            return;
        };
        let pages = std::mem::take(&mut self.pages);
        if capacity_of(&pages) != POOL_MIN_BYTES << class {
            return; // Not of its class (the allocator gave more): not ours to keep.
        }
        let mut idle = idle();
        if idle.bytes + capacity_of(&pages) > POOL_IDLE_BYTES {
            return;
        }
        if idle.classes.len() <= class {
            idle.classes.resize_with(class + 1, Vec::new);
        }
        idle.bytes += capacity_of(&pages);
        idle.classes[class].push(pages);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_are_powers_of_two_from_the_smallest() {
        assert_eq!(class_of(POOL_MIN_BYTES - 1), None);
        assert_eq!(class_of(POOL_MIN_BYTES), Some(0));
        assert_eq!(class_of(POOL_MIN_BYTES + 1), Some(1));
        assert_eq!(class_of(1 << 20), Some(4));
        assert_eq!(class_of(MAX_BULK_BYTES as usize), Some(8));
        assert_eq!(class_of(MAX_BULK_BYTES as usize + 1), None);
    }

    #[test]
    fn a_buffer_comes_back_once_every_view_of_it_is_gone() {
        // A class no other test uses, so that the counts below are this test's own.
        let len = (MAX_BULK_BYTES as usize) / 2 + 1;
        let class = class_of(len).unwrap_or_default();
        let idle_in_class = || idle().classes.get(class).map_or(0, Vec::len);
        let before = idle_in_class();
        let mut b = take(len);
        b.put_bytes(7, len);
        assert_eq!(b.remaining_mut(), (POOL_MIN_BYTES << class) - len);
        let bytes = b.freeze();
        assert_eq!(bytes.as_ptr() as usize % BUF_ALIGN_BYTES, 0);
        let part = bytes.slice(10..20);
        drop(bytes);
        assert_eq!(idle_in_class(), before, "a slice still views the buffer");
        assert_eq!(&part[..], &[7u8; 10]);
        drop(part);
        assert_eq!(idle_in_class(), before + 1);
        let again = take(len);
        assert!(again.len() == 0 && again.remaining_mut() >= len);
        assert_eq!(idle_in_class(), before);
    }
}
