//! Deterministic data: what every byte of a benchmark file holds, so reads can be verified
//! whatever order, task count or run wrote them, and buffers aligned for O_DIRECT.
//!
//! The 8-byte word at absolute file offset `8 * k` of file `file_id` is a function of
//! `(file_id, k)` only. Filling costs one multiply per word, cheap next to any I/O path.

/// Alignment of I/O buffers: enough for O_DIRECT on 4 KiB-sector devices and FUSE.
pub const BUFFER_ALIGN: usize = 4096;

const MIX: u64 = 0x9e37_79b9_7f4a_7c15;

fn word(file_seed: u64, word_idx: u64) -> u64 {
    let x = (word_idx ^ file_seed).wrapping_mul(MIX);
    x ^ (x >> 29)
}

fn file_seed(file_id: u64) -> u64 {
    file_id.wrapping_mul(0xff51_afd7_ed55_8ccd) | 1
}

/// Fills `buf` with file `file_id`'s bytes at `offset` (a multiple of 8).
pub fn fill(buf: &mut [u8], file_id: u64, offset: u64) {
    assert_eq!(offset % 8, 0, "pattern offsets are multiples of 8");
    let seed = file_seed(file_id);
    let first_word = offset / 8;
    let mut chunks = buf.chunks_exact_mut(8);
    let mut word_idx = first_word;
    for chunk in &mut chunks {
        chunk.copy_from_slice(&word(seed, word_idx).to_le_bytes());
        word_idx += 1;
    }
    let tail = chunks.into_remainder();
    let n_tail = tail.len();
    tail.copy_from_slice(&word(seed, word_idx).to_le_bytes()[..n_tail]);
}

/// Whether `data` holds file `file_id`'s bytes at `offset`; `scratch` is reused.
pub fn matches(data: &[u8], file_id: u64, offset: u64, scratch: &mut Vec<u8>) -> bool {
    scratch.resize(data.len(), 0);
    fill(scratch, file_id, offset);
    scratch[..] == *data
}

/// A zeroed buffer whose usable part starts at a [`BUFFER_ALIGN`] boundary, without unsafe:
/// the vector is over-allocated and the slice starts at the first aligned byte.
pub struct AlignedBuf {
    storage: Vec<u8>,
    start: usize,
    len: usize,
}

impl AlignedBuf {
    pub fn new(len: usize) -> AlignedBuf {
        let storage = vec![0u8; len + BUFFER_ALIGN];
        let misalignment = storage.as_ptr() as usize % BUFFER_ALIGN;
        let start = (BUFFER_ALIGN - misalignment) % BUFFER_ALIGN;
        AlignedBuf {
            storage,
            start,
            len,
        }
    }

    pub fn as_slice(&self) -> &[u8] {
        &self.storage[self.start..self.start + self.len]
    }

    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        &mut self.storage[self.start..self.start + self.len]
    }
}

/// xorshift64*: the random offsets of `--random`, reproducible from the seed.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(MIX) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A random permutation of `0..n` (Fisher-Yates).
    pub fn permutation(&mut self, n: u64) -> Vec<u64> {
        let mut order: Vec<u64> = (0..n).collect();
        for i in (1..order.len()).rev() {
            let j = (self.next_u64() % (i as u64 + 1)) as usize;
            order.swap(i, j);
        }
        order
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pattern_depends_on_file_and_offset_only() {
        let mut whole = vec![0u8; 64 << 10];
        fill(&mut whole, 3, 0);
        // Any split of the file gives the same bytes.
        let mut piece = vec![0u8; 4096];
        fill(&mut piece, 3, 8192);
        assert_eq!(&whole[8192..12288], &piece[..]);
        let mut scratch = Vec::new();
        assert!(matches(&whole[4096..8192], 3, 4096, &mut scratch));
        assert!(!matches(&whole[4096..8192], 4, 4096, &mut scratch));
        assert!(!matches(&whole[4096..8192], 3, 0, &mut scratch));
        // Odd lengths: the tail is the start of the next word.
        let mut odd = vec![0u8; 13];
        fill(&mut odd, 3, 0);
        assert_eq!(&odd[..], &whole[..13]);
    }

    #[test]
    fn aligned_buffers_are_aligned() {
        for len in [1, 4096, 1 << 20] {
            let mut buf = AlignedBuf::new(len);
            assert_eq!(buf.as_slice().as_ptr() as usize % BUFFER_ALIGN, 0);
            assert_eq!(buf.as_mut_slice().len(), len);
        }
    }

    #[test]
    fn permutation_is_a_permutation() {
        let mut order = Rng::new(9).permutation(1000);
        assert_ne!(order, (0..1000).collect::<Vec<u64>>());
        order.sort_unstable();
        assert_eq!(order, (0..1000).collect::<Vec<u64>>());
    }
}
