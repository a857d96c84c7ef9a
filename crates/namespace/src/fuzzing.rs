//! Fuzzing entry point for the stored-value codec (`codec.rs`): every decoder of a key or
//! value read back from sled. The body of the cargo-fuzz target in `fuzz/`, also run by a
//! bounded smoke test below on stable. Not part of the API.
//!
//! Property: no panic on any stored bytes, and what decodes re-encodes to the same value.

use sheen_wire::fuzzing::MAX_INPUT_BYTES;
use sheen_wire::{Attr, Fid, Timespec};

use crate::codec::{self, Inode};

const FID: Fid = Fid {
    seq: 0x2_0000_0400,
    oid: 7,
    ver: 0,
};

/// The first byte picks the decoder, the rest is the stored key or value.
pub fn stored_value(data: &[u8]) {
    if data.len() > MAX_INPUT_BYTES {
        return;
    }
    let Some((&pick, value)) = data.split_first() else {
        return;
    };
    match pick % 7 {
        0 => {
            if let Ok(inode) = codec::decode_inode(FID, value) {
                let again = codec::encode_inode(&inode);
                assert_eq!(codec::decode_inode(FID, &again).ok(), Some(inode));
            }
        }
        1 => {
            let _ = codec::decode_dirent_key(value);
        }
        2 => {
            if let Ok((fid, file_type)) = codec::decode_dirent(value) {
                let again = codec::encode_dirent(fid, file_type);
                assert_eq!(codec::decode_dirent(&again).ok(), Some((fid, file_type)));
            }
        }
        3 => {
            if let Ok(layout) = codec::decode_layout(FID, value) {
                let again = codec::encode_layout(&layout);
                assert_eq!(codec::decode_layout(FID, &again).ok(), Some(layout));
            }
        }
        4 => {
            let _ = codec::decode_u64("fuzz", value);
        }
        5 => {
            let _ = codec::decode_u32("fuzz", value);
        }
        _ => {
            if let Ok(fid) = codec::decode_next_fid(value) {
                let again = codec::encode_next_fid(fid);
                assert_eq!(codec::decode_next_fid(&again).ok(), Some(fid));
            }
        }
    }
}

/// Valid encodings, each behind the byte that picks its decoder.
pub fn seeds() -> Vec<Vec<u8>> {
    fn tagged(tag: u8, bytes: &[u8]) -> Vec<u8> {
        let mut v = vec![tag];
        v.extend_from_slice(bytes);
        v
    }
    let inode = Inode {
        attr: Attr {
            fid: FID,
            mode: codec::mode::S_IFLNK | 0o777,
            nlink: 1,
            uid: 1,
            gid: 2,
            rdev: 0,
            size: 14,
            blocks: 0,
            atime: Timespec { sec: 1, nsec: 2 },
            mtime: Timespec { sec: 3, nsec: 4 },
            ctime: Timespec { sec: 5, nsec: 6 },
            btime: Timespec { sec: 7, nsec: 8 },
            layout_gen: 0,
            hsm_state: 0,
            flags: 0,
        },
        parent: Fid::ROOT,
        entries: 0,
        xattr_count: 2,
        symlink: Some(b"target/of/link".to_vec()),
    };
    vec![
        tagged(0, &codec::encode_inode(&inode)),
        tagged(
            1,
            &codec::dirent_key(Fid::ROOT, codec::name_hash(b"f"), b"f"),
        ),
        tagged(2, &codec::encode_dirent(FID, codec::mode::S_IFREG)),
        tagged(4, &7u64.to_le_bytes()),
        tagged(6, &codec::encode_next_fid(FID)),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_decode() {
        let s = seeds();
        assert!(codec::decode_inode(FID, &s[0][1..]).is_ok());
        assert!(codec::decode_dirent_key(&s[1][1..]).is_ok());
        assert!(codec::decode_dirent(&s[2][1..]).is_ok());
        assert!(codec::decode_next_fid(&s[4][1..]).is_ok());
    }

    #[test]
    fn fuzz_smoke_stored_values() {
        sheen_wire::fuzzing::smoke(0x4e5_0001, 30_000, &seeds(), stored_value);
    }
}
