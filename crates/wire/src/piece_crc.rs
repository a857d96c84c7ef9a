//! crc32c of bulk data by 4 KiB pieces, and of any piece-aligned range from them.
//!
//! Whoever reads a bulk's bytes anyway (a transport checking a received frame, an OSD
//! verifying the blocks it read) can record the crc32c of each 4 KiB piece, counted from the
//! bulk's first byte (the last piece may be shorter). The next one that needs a crc of the
//! same bytes then derives it instead of reading them again: a frame's crc is its pieces'
//! crcs combined, a stored block's crc is its piece's. Combining costs four table lookups per
//! piece. A crc derived this way also covers the bytes as they were when first read, so a
//! later change to them in memory shows up as a mismatch instead of being summed anew.

use std::sync::OnceLock;

/// Bytes per piece: the OSD's block size, so that a block-aligned bulk's pieces are blocks.
pub const PIECE_BYTES: usize = 4096;

/// The crc32c of each piece of `data`.
pub fn pieces(data: &[u8]) -> Vec<u32> {
    data.chunks(PIECE_BYTES).map(crc32c::crc32c).collect()
}

/// Whether `crcs` holds one crc per piece of `len` bytes.
pub fn fits(crcs: &[u32], len: usize) -> bool {
    crcs.len() == len.div_ceil(PIECE_BYTES)
}

/// The crc32c of bytes `[start, end)` of data `len` bytes long whose piece crcs are `crcs`.
/// `None` unless `crcs` fits `len`, `start` is a piece boundary and `end` is one or `len`.
pub fn range(crcs: &[u32], len: usize, start: usize, end: usize) -> Option<u32> {
    let aligned_end = end.is_multiple_of(PIECE_BYTES) || end == len;
    if start >= end
        || end > len
        || !start.is_multiple_of(PIECE_BYTES)
        || !aligned_end
        || !fits(crcs, len)
    {
        return None;
    }
    let first = start / PIECE_BYTES;
    let mut acc = crcs[first];
    for (i, &crc) in crcs
        .iter()
        .enumerate()
        .take(end.div_ceil(PIECE_BYTES))
        .skip(first + 1)
    {
        let piece_len = end.min((i + 1) * PIECE_BYTES) - i * PIECE_BYTES;
        acc = if piece_len == PIECE_BYTES {
            shift_piece(acc) ^ crc
        } else {
            crc32c::crc32c_combine(acc, crc, piece_len)
        };
    }
    Some(acc)
}

/// `crc32c_combine(crc, 0, PIECE_BYTES)`: what a crc becomes when a whole piece follows its
/// bytes, less that piece's own crc. Linear over GF(2), so it is four lookups in tables of
/// the images of each byte of the crc.
fn shift_piece(crc: u32) -> u32 {
    static TABLES: OnceLock<[[u32; 256]; 4]> = OnceLock::new();
    let t = TABLES.get_or_init(|| {
        let basis: [u32; 32] =
            std::array::from_fn(|bit| crc32c::crc32c_combine(1 << bit, 0, PIECE_BYTES));
        std::array::from_fn(|k| {
            std::array::from_fn(|b| {
                (0..8)
                    .filter(|j| b >> j & 1 == 1)
                    .fold(0, |acc, j| acc ^ basis[8 * k + j])
            })
        })
    });
    let [b0, b1, b2, b3] = crc.to_le_bytes();
    t[0][usize::from(b0)] ^ t[1][usize::from(b1)] ^ t[2][usize::from(b2)] ^ t[3][usize::from(b3)]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(len: usize) -> Vec<u8> {
        let mut x = 0x2545_f491_u32;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect()
    }

    #[test]
    fn ranges_from_pieces_equal_the_crc_of_the_bytes() {
        for len in [
            1,
            100,
            4096,
            4097,
            8192,
            3 * 4096 + 5,
            300 * 4096,
            (1 << 20) + 17,
        ] {
            let d = data(len);
            let crcs = pieces(&d);
            assert!(fits(&crcs, len));
            assert_eq!(
                range(&crcs, len, 0, len),
                Some(crc32c::crc32c(&d)),
                "len {len}"
            );
            for (start, end) in [
                (0, 4096),
                (4096, len),
                (8192, 3 * 4096),
                (4096, 4096 + 4096),
            ] {
                let want = (start < end && end <= len).then(|| crc32c::crc32c(&d[start..end]));
                assert_eq!(
                    range(&crcs, len, start, end),
                    want,
                    "len {len} {start}..{end}"
                );
            }
        }
    }

    #[test]
    fn ranges_that_do_not_fall_on_pieces_are_refused() {
        let d = data(5 * 4096 + 10);
        let crcs = pieces(&d);
        let len = d.len();
        assert_eq!(range(&crcs, len, 1, 4096), None, "start inside a piece");
        assert_eq!(range(&crcs, len, 0, 4095), None, "end inside a piece");
        assert_eq!(range(&crcs, len, 0, len + 1), None, "past the end");
        assert_eq!(range(&crcs, len, 4096, 4096), None, "empty");
        assert_eq!(range(&crcs[1..], len, 0, 4096), None, "crcs of other data");
        assert!(
            range(&crcs, len, 5 * 4096, len).is_some(),
            "the short last piece"
        );
    }

    #[test]
    fn the_shift_tables_match_combine() {
        for crc in [0, 1, 0x8000_0000, 0xdead_beef, u32::MAX] {
            assert_eq!(
                shift_piece(crc),
                crc32c::crc32c_combine(crc, 0, PIECE_BYTES)
            );
        }
    }
}
