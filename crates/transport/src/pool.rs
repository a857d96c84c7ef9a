//! Receive buffers for bulk data, used again instead of given back to the allocator.
//!
//! A 1 MiB bulk (one OST read or write) freed to the allocator often goes back to the
//! kernel, and the next one faults its pages in again (and the kernel zeroes them): a tenth of
//! a reading client's CPU went to those page faults. A buffer handed out here comes back when
//! the last `Bytes` viewing it is dropped, and is kept while the idle ones stay under
//! [`POOL_IDLE_BYTES`] (so the pool never holds more than that).
//!
//! Buffers come in power-of-two classes from [`POOL_MIN_BYTES`] up to the largest bulk;
//! smaller bulks are plain allocations.

use std::sync::Mutex;

use bytes::Bytes;
use sheen_wire::limits::MAX_BULK_BYTES;

/// Smallest pooled buffer; smaller bulks are not worth it.
pub const POOL_MIN_BYTES: usize = 64 << 10;
/// Most bytes of idle buffers kept, all classes together.
pub const POOL_IDLE_BYTES: usize = 64 << 20;

struct Idle {
    /// Idle buffers per class: class `c` holds capacity `POOL_MIN_BYTES << c`.
    classes: Vec<Vec<Vec<u8>>>,
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

/// An empty buffer with room for `len` bytes: from the pool when one of its class is idle.
pub(crate) fn take(len: usize) -> PooledBuf {
    let Some(class) = class_of(len) else {
        return PooledBuf {
            buf: Vec::with_capacity(len),
            class: None,
        };
    };
    let spare = {
        let mut idle = idle();
        let spare = idle.classes.get_mut(class).and_then(Vec::pop);
        if let Some(b) = &spare {
            idle.bytes -= b.capacity();
        }
        spare
    };
    let buf = spare.unwrap_or_else(|| Vec::with_capacity(POOL_MIN_BYTES << class));
    PooledBuf {
        buf,
        class: Some(class),
    }
}

/// A receive buffer; back to the pool when dropped (see the module doc).
pub(crate) struct PooledBuf {
    pub(crate) buf: Vec<u8>,
    class: Option<usize>,
}

impl PooledBuf {
    /// The bytes received, as `Bytes` (no copy) that give the buffer back when all clones
    /// of it are gone.
    pub(crate) fn freeze(self) -> Bytes {
        Bytes::from_owner(self)
    }
}

impl AsRef<[u8]> for PooledBuf {
    fn as_ref(&self) -> &[u8] {
        &self.buf
    }
}

impl Drop for PooledBuf {
    fn drop(&mut self) {
        let Some(class) = self.class else {
            return;
        };
        let mut buf = std::mem::take(&mut self.buf);
        if buf.capacity() != POOL_MIN_BYTES << class {
            return; // Grown past its class (not done here): not ours to keep.
        }
        buf.clear();
        let mut idle = idle();
        if idle.bytes + buf.capacity() > POOL_IDLE_BYTES {
            return;
        }
        if idle.classes.len() <= class {
            idle.classes.resize_with(class + 1, Vec::new);
        }
        idle.bytes += buf.capacity();
        idle.classes[class].push(buf);
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
        b.buf.extend(std::iter::repeat_n(7u8, len));
        let bytes = b.freeze();
        let part = bytes.slice(10..20);
        drop(bytes);
        assert_eq!(idle_in_class(), before, "a slice still views the buffer");
        assert_eq!(&part[..], &[7u8; 10]);
        drop(part);
        assert_eq!(idle_in_class(), before + 1);
        let again = take(len);
        assert!(again.buf.is_empty() && again.buf.capacity() >= len);
        assert_eq!(idle_in_class(), before);
    }
}
