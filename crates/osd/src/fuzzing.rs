//! Fuzzing entry points for the on-disk decoders: superblock, log groups and records,
//! checkpoint header and body. The bodies of the cargo-fuzz targets in `fuzz/`, also run by
//! a bounded smoke test below on stable. Not part of the API.
//!
//! Every structure on disk is checksummed, so random bytes rarely get past the crc. Each
//! target therefore tries the input as given and again with its checksum fixed up, which
//! reaches the field checks behind it. Property: no panic, and what decodes re-encodes to the
//! same value.

use sheen_wire::fuzzing::MAX_INPUT_BYTES;
use sheen_wire::msg::Timespec;

use crate::checkpoint::{self, CkptHeader, HEADER_USED_BYTES};
use crate::codec::usize_of;
use crate::format::{Geometry, Superblock, SUPERBLOCK_BYTES, SUPERBLOCK_CRC_AT};
use crate::index::Index;
use crate::limits::{BLOCK_BYTES_U64, GROUP_HEADER_BYTES};
use crate::record::{self, GroupHeader, NewExtent, PreallocExtent, Record, TailBlock};
use crate::OsdLabel;

/// The geometry checkpoint bodies are checked against: a 64 MiB device.
fn geometry() -> Option<Geometry> {
    Geometry::for_device(64 << 20, None).ok()
}

fn fix_crc(buf: &mut [u8], covered: std::ops::Range<usize>, at: usize) {
    let crc = crc32c::crc32c(&buf[covered]);
    buf[at..at + 4].copy_from_slice(&crc.to_le_bytes());
}

/// [`Superblock::decode`].
pub fn superblock(data: &[u8]) {
    if data.len() > MAX_INPUT_BYTES {
        return;
    }
    let _ = Superblock::decode(data);
    if let Some(head) = data.get(..SUPERBLOCK_BYTES) {
        let mut b = head.to_vec();
        fix_crc(&mut b, 0..SUPERBLOCK_CRC_AT, SUPERBLOCK_CRC_AT);
        if let Ok(sb) = Superblock::decode(&b) {
            assert_eq!(Superblock::decode(&sb.encode()).ok(), Some(sb));
        }
    }
}

/// [`GroupHeader::decode`], and [`record::decode_records`] over the input after a 4-byte
/// record count.
pub fn log(data: &[u8]) {
    if data.len() > MAX_INPUT_BYTES {
        return;
    }
    let _ = GroupHeader::decode(data);
    if let Some(head) = data.get(..usize_of(GROUP_HEADER_BYTES)) {
        let mut b = head.to_vec();
        let end = b.len();
        fix_crc(&mut b, 8..end, 4);
        let _ = GroupHeader::decode(&b);
    }
    let Some((count, body)) = data.split_first_chunk::<4>() else {
        return;
    };
    let n_records = u32::from_le_bytes(*count);
    if let Ok(records) = record::decode_records(body, n_records, 0) {
        let mut again = Vec::new();
        for r in &records {
            r.encode(&mut again);
        }
        let n = u32::try_from(records.len()).unwrap_or(u32::MAX);
        assert_eq!(record::decode_records(&again, n, 0).ok(), Some(records));
    }
}

/// [`CkptHeader::decode`] and the checkpoint body decoder, on the input and on what follows
/// its first block (the layout of a checkpoint slot).
pub fn checkpoint(data: &[u8]) {
    if data.len() > MAX_INPUT_BYTES {
        return;
    }
    let _ = CkptHeader::decode(data);
    if let Some(head) = data.get(..HEADER_USED_BYTES) {
        let mut b = head.to_vec();
        fix_crc(&mut b, 0..HEADER_USED_BYTES - 4, HEADER_USED_BYTES - 4);
        let _ = CkptHeader::decode(&b);
    }
    let Some(geo) = geometry() else { return };
    let _ = checkpoint::decode_body(data, &geo, 0);
    if let Some(body) = data.get(usize_of(BLOCK_BYTES_U64)..) {
        let _ = checkpoint::decode_body(body, &geo, 0);
    }
}

fn sample_records() -> Vec<Record> {
    vec![
        Record::Precreate {
            first_oid: 1,
            count: 64,
        },
        Record::Write {
            oid: 3,
            end: 12345,
            mtime: Timespec { sec: 17, nsec: 5 },
            extents: vec![NewExtent {
                logical: 0,
                phys: 100,
                crcs: vec![1, 2, 3, 4],
                in_place: false,
            }],
        },
        Record::Punch {
            oid: 3,
            size: 4097,
            tail: Some(TailBlock {
                logical: 1,
                phys: 8,
                crc: 5,
            }),
        },
        Record::Destroy { oid: 9 },
        // fallocate: blocks 0..3 within the new size, 10..12 past it (FALLOC_FL_KEEP_SIZE).
        Record::Prealloc {
            oid: 4,
            end: 3 * 4096,
            mtime: Timespec { sec: 18, nsec: 0 },
            extents: vec![
                PreallocExtent {
                    logical: 0,
                    phys: 200,
                    len: 3,
                },
                PreallocExtent {
                    logical: 10,
                    phys: 210,
                    len: 2,
                },
            ],
        },
        // The first write into a preallocated block, in place.
        Record::Write {
            oid: 4,
            end: 5000,
            mtime: Timespec { sec: 19, nsec: 0 },
            extents: vec![NewExtent {
                logical: 1,
                phys: 201,
                crcs: vec![7],
                in_place: true,
            }],
        },
        Record::PunchHole {
            oid: 3,
            first_block: 0,
            end_block: 1,
            mtime: Timespec { sec: 20, nsec: 0 },
            extents: vec![NewExtent {
                logical: 1,
                phys: 9,
                crcs: vec![6],
                in_place: false,
            }],
        },
    ]
}

/// Valid encodings to start mutating from, one list per target.
#[derive(Default)]
pub struct Seeds {
    pub superblock: Vec<Vec<u8>>,
    pub log: Vec<Vec<u8>>,
    pub checkpoint: Vec<Vec<u8>>,
}

/// Valid encodings to start mutating from.
pub fn seeds() -> Seeds {
    let Some(geo) = geometry() else {
        return Seeds::default();
    };
    let sb = Superblock {
        geo: geo.clone(),
        label: OsdLabel {
            fsname: "sheen".to_owned(),
            ost_index: 3,
        },
    }
    .encode();
    let records = sample_records();
    let mut body = Vec::new();
    for r in &records {
        r.encode(&mut body);
    }
    let n = records.len() as u32;
    let mut counted = n.to_le_bytes().to_vec();
    counted.extend_from_slice(&body);
    let group = GroupHeader::encode_group(2, 10, n, &body);
    let mut index = Index::default();
    let mut freed = Vec::new();
    for r in &records {
        let _ = index.apply(r, &geo, &mut freed);
    }
    let ckpt = checkpoint::encode(&index, 1, 5, &geo).unwrap_or_default();
    let mut ckpt_seeds = vec![ckpt.clone()];
    if let Some(h) = CkptHeader::decode(&ckpt) {
        let start = usize_of(BLOCK_BYTES_U64);
        if let Some(body) = ckpt.get(start..start + usize_of(h.body_bytes)) {
            ckpt_seeds.push(body.to_vec());
        }
    }
    Seeds {
        superblock: vec![sb],
        log: vec![counted, group],
        checkpoint: ckpt_seeds,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sheen_wire::fuzzing::smoke;

    #[test]
    fn seeds_are_valid() {
        let Seeds {
            superblock: sb,
            log: log_seeds,
            checkpoint: ckpt,
        } = seeds();
        assert!(Superblock::decode(&sb[0]).is_ok());
        let n = u32::from_le_bytes(log_seeds[0][..4].try_into().unwrap());
        assert_eq!(
            record::decode_records(&log_seeds[0][4..], n, 0).unwrap(),
            sample_records()
        );
        assert!(GroupHeader::decode(&log_seeds[1]).is_some());
        // The seed index holds every kind of extent (written, preallocated, in place).
        let geo = geometry().unwrap();
        let mut index = Index::default();
        for r in sample_records() {
            index.apply(&r, &geo, &mut Vec::new()).unwrap();
        }
        let header = CkptHeader::decode(&ckpt[0]).unwrap();
        let body = &ckpt[0][usize_of(BLOCK_BYTES_U64)..];
        let body = &body[..usize_of(header.body_bytes)];
        assert!(checkpoint::decode_body(body, &geometry().unwrap(), 0).is_ok());
    }

    #[test]
    fn fuzz_smoke_on_disk_decoders() {
        let Seeds {
            superblock: sb,
            log: log_seeds,
            checkpoint: ckpt,
        } = seeds();
        smoke(0x05d_0001, 5_000, &sb, superblock);
        smoke(0x05d_0002, 20_000, &log_seeds, log);
        smoke(0x05d_0003, 3_000, &ckpt, checkpoint);
    }
}
