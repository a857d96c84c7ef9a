//! Fuzzing entry points for the RDMA-emulated transport: control frame (and so bulk
//! descriptor) decoding, and the one-sided access checks run against a region table a hostile
//! peer filled with arbitrary bytes. The bodies of the cargo-fuzz targets in `fuzz/`, also
//! run by a bounded smoke test below on stable. Not part of the API.
//!
//! Properties: no panic; a decoded frame re-encodes to the same bytes' meaning; a READ that
//! passes the checks lies inside the pool, so its allocation is bounded by the pool size.

use std::cell::RefCell;

use super::frame::{BulkDesc, Ctrl, CTRL_BYTES};
use super::verbs::{LocalPool, ACCESS_REMOTE_READ, CHUNK_BYTES, POOL_BYTES};

/// Control frames: the first 40 bytes as given, then with the checksum fixed up.
pub fn ctrl(data: &[u8]) {
    let Some(head) = data.get(..CTRL_BYTES) else {
        return;
    };
    let mut raw = [0u8; CTRL_BYTES];
    raw.copy_from_slice(head);
    for fix in [false, true] {
        if fix {
            let crc = crc32c::crc32c(&raw[..36]);
            raw[36..40].copy_from_slice(&crc.to_le_bytes());
        }
        if let Ok(c) = Ctrl::decode(&raw) {
            assert_eq!(Ctrl::decode(&c.encode()), Ok(c));
            if let Ctrl::Send {
                desc: Some(BulkDesc { len, .. }),
            } = c
            {
                assert!(len <= sheen_wire::limits::MAX_BULK_BYTES);
            }
        }
    }
}

thread_local! {
    static POOL: RefCell<Option<LocalPool>> = const { RefCell::new(None) };
}

/// A one-sided READ `(rkey, addr, len)` (bytes 32..56 of the input) against a pool whose
/// table entry for that key's slot holds bytes 0..32 of the input, as a peer's pool mapped
/// for shared-memory reads may.
pub fn one_sided(data: &[u8]) {
    let Some((entry, rest)) = data.split_first_chunk::<32>() else {
        return;
    };
    let Some((op, _)) = rest.split_first_chunk::<24>() else {
        return;
    };
    let word = |i: usize| {
        let mut w = [0u8; 8];
        w.copy_from_slice(&op[i * 8..i * 8 + 8]);
        u64::from_le_bytes(w)
    };
    let (rkey, addr, len) = (word(0), word(1), word(2) % (2 * POOL_BYTES));
    POOL.with(|cell| {
        let mut cell = cell.borrow_mut();
        if cell.is_none() {
            *cell = LocalPool::new(false).ok();
        }
        let Some(pool) = cell.as_ref() else { return };
        pool.map.write_raw_entry(rkey >> 32, entry);
        if let Ok(bytes) = pool.map.read(rkey, addr, len) {
            assert_eq!(bytes.len() as u64, len);
            assert!(addr >= CHUNK_BYTES && addr + len <= POOL_BYTES);
        }
        // The same slot through the allocator's own path: a real key still works.
        pool.map.write_raw_entry(rkey >> 32, &[0u8; 32]);
        if let Ok(Some(region)) = pool.try_register(len % CHUNK_BYTES, ACCESS_REMOTE_READ) {
            assert!(pool.map.read(region.rkey, region.addr, region.len).is_ok());
            let _ = pool.deregister(region.rkey);
        }
    });
}

/// Valid inputs to start mutating from.
pub fn seeds() -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
    let ctrl_seeds = [
        Ctrl::Send {
            desc: Some(BulkDesc {
                rkey: 3 << 32 | 9,
                addr: 4 * CHUNK_BYTES,
                len: 100,
                crc: 5,
            }),
        },
        Ctrl::Read {
            id: 1,
            rkey: 3 << 32 | 9,
            addr: 4 * CHUNK_BYTES,
            len: 100,
        },
        Ctrl::Credit { count: 16 },
        Ctrl::Hello {
            pid: 1,
            fd: 2,
            token: 3,
            pool_bytes: POOL_BYTES,
        },
    ]
    .iter()
    .map(|c| c.encode().to_vec())
    .collect();
    // A well-formed entry (rkey, addr, len, access) and a READ inside it.
    let rkey: u64 = 3 << 32 | 9;
    let mut ok = Vec::new();
    for w in [rkey, 4 * CHUNK_BYTES, 1000, u64::from(ACCESS_REMOTE_READ)] {
        ok.extend_from_slice(&w.to_ne_bytes());
    }
    for w in [rkey, 4 * CHUNK_BYTES + 10, 100] {
        ok.extend_from_slice(&w.to_le_bytes());
    }
    (ctrl_seeds, vec![ok])
}

#[cfg(test)]
mod tests {
    use super::*;
    use sheen_wire::fuzzing::smoke;

    #[test]
    fn fuzz_smoke_control_frames_and_one_sided_checks() {
        let (ctrl_seeds, one_sided_seeds) = seeds();
        smoke(0x7d3a_0001, 30_000, &ctrl_seeds, ctrl);
        smoke(0x7d3a_0002, 30_000, &one_sided_seeds, one_sided);
    }
}
