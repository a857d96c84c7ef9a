//! The place for encryption at rest: a per-block cipher applied between checksum and device.
//!
//! On write, a block's crc32c is computed over the plaintext, then the block is encrypted in
//! place and written; on read, the block is decrypted and then verified. So the checksum
//! proves the plaintext a reader receives, whatever the cipher.
//!
//! A cipher sees the object id, the logical block and the physical block. With copy-on-write
//! every new version of a block lands at a fresh physical block, so `(phys_block, generation)`
//! style tweaks never repeat for different data. One exception: the first write into a block
//! preallocated by fallocate goes in place, and a crash before its commit leaves the block
//! preallocated, so a retried write can put different data at the same tweak (the torn
//! attempt is never read back, but a stream-style cipher must take this into account). A
//! cipher that needs a stored nonce or tag would get room beside the crc in the block map (a
//! format version bump).
//! Today only [`IdentityCipher`] exists.

use sheen_wire::ObjId;

/// Encrypts and decrypts whole data blocks in place. The length never changes.
pub(crate) trait BlockCipher: Send + Sync {
    /// True if this cipher leaves bytes unchanged (the data path then skips it).
    fn is_identity(&self) -> bool {
        false
    }
    fn encrypt(&self, oid: ObjId, logical_block: u64, phys_block: u64, block: &mut [u8]);
    fn decrypt(&self, oid: ObjId, logical_block: u64, phys_block: u64, block: &mut [u8]);
}

/// No encryption.
pub(crate) struct IdentityCipher;

impl BlockCipher for IdentityCipher {
    fn is_identity(&self) -> bool {
        true
    }
    fn encrypt(&self, _oid: ObjId, _logical: u64, _phys: u64, _block: &mut [u8]) {}
    fn decrypt(&self, _oid: ObjId, _logical: u64, _phys: u64, _block: &mut [u8]) {}
}

/// A toy cipher for tests: XOR with a keystream derived from the block's identity. It proves
/// the hook is applied on every path (writes, read-modify-write, punch tails).
#[cfg(test)]
pub(crate) struct XorCipher;

#[cfg(test)]
impl XorCipher {
    fn apply(oid: ObjId, logical: u64, phys: u64, block: &mut [u8]) {
        let mut x = oid.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ logical.rotate_left(17) ^ phys ^ 1;
        for chunk in block.chunks_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            for (b, k) in chunk.iter_mut().zip(x.to_le_bytes()) {
                *b ^= k;
            }
        }
    }
}

#[cfg(test)]
impl BlockCipher for XorCipher {
    fn encrypt(&self, oid: ObjId, logical: u64, phys: u64, block: &mut [u8]) {
        XorCipher::apply(oid, logical, phys, block);
    }
    fn decrypt(&self, oid: ObjId, logical: u64, phys: u64, block: &mut [u8]) {
        XorCipher::apply(oid, logical, phys, block);
    }
}
