//! Fuzzing entry points: the bodies of the cargo-fuzz targets in `fuzz/` for the decoders of
//! this crate, and a small deterministic driver ([`smoke`]) that the unit tests of every
//! decoding crate use to run their targets over pseudo-random and mutated inputs on stable.
//!
//! Property of every target: no panic on any input. Targets also check that what decodes
//! re-encodes to something that decodes to the same value. Inputs longer than
//! [`MAX_INPUT_BYTES`] are ignored, so an allocation can only follow a length that the
//! decoder itself checked (the fuzz command adds `-malloc_limit_mb` to catch the rest).
//!
//! Not part of the API: hidden from docs, kept public only so `fuzz/` and other crates' tests
//! can call it. Pure functions, no I/O (the crate's invariant).

use crate::frame::{BULK_HEADER_BYTES, MSG_HEADER_BYTES};
use crate::ids::Fid;
use crate::msg::*;
use crate::{encode, BulkFrameHeader, MsgHeader, Nid};

/// Inputs above this size are skipped by every target.
pub const MAX_INPUT_BYTES: usize = 1 << 20;

/// Message and bulk frame headers: [`MsgHeader::decode`] with [`MsgHeader::check_body`] on
/// the rest, and [`BulkFrameHeader::decode`] with its check. Each header is tried as given
/// and with its checksum fixed up, so the checks behind the checksum are reached too.
pub fn frame(data: &[u8]) {
    if data.len() > MAX_INPUT_BYTES {
        return;
    }
    if let Some(head) = data.get(..MSG_HEADER_BYTES) {
        let mut raw = [0u8; MSG_HEADER_BYTES];
        raw.copy_from_slice(head);
        let rest = &data[MSG_HEADER_BYTES..];
        for fix in [false, true] {
            if fix {
                let crc = crc32c::crc32c(&raw[..68]);
                raw[68..72].copy_from_slice(&crc.to_le_bytes());
            }
            if let Ok(h) = MsgHeader::decode(&raw) {
                assert!(h.body_len <= crate::limits::MAX_BODY_BYTES);
                assert!(h.bulk_len <= crate::limits::MAX_BULK_BYTES);
                if h.check_body(rest).is_ok() {
                    assert_eq!(rest.len(), h.body_len as usize);
                }
                assert_eq!(MsgHeader::decode(&h.encode()), Ok(h));
            }
        }
    }
    if let Some(head) = data.get(..BULK_HEADER_BYTES) {
        let mut raw = [0u8; BULK_HEADER_BYTES];
        raw.copy_from_slice(head);
        let mut xid = [0u8; 8];
        xid.copy_from_slice(&raw[8..16]);
        let xid = u64::from_le_bytes(xid);
        let remaining = data.len() as u64 * 4096;
        if let Ok(h) = BulkFrameHeader::decode(&raw, xid, remaining) {
            assert!(u64::from(h.len) <= remaining.min(u64::from(crate::limits::BULK_FRAME_BYTES)));
            let _ = h.check(&data[BULK_HEADER_BYTES..]);
        }
    }
}

/// Calls `$f::<T>` with the body type the first input byte picks.
macro_rules! body_types {
    ($pick:expr, $bytes:expr, [$($t:ty),* $(,)?]) => {{
        const FNS: &[fn(&[u8])] = &[$(round_trip::<$t>),*];
        FNS[usize::from($pick) % FNS.len()]($bytes)
    }};
}

/// Every message body type: the first byte picks the type ([`body_seed`] makes inputs for
/// a given type), the rest is decoded with [`crate::decode`].
pub fn body(data: &[u8]) {
    if data.len() > MAX_INPUT_BYTES {
        return;
    }
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    body_types!(
        pick,
        rest,
        [
            Timespec,
            Empty,
            ConnectReq,
            ConnectReply,
            StatfsReply,
            Attr,
            OstObject,
            StripeLayout,
            LayoutComponent,
            Layout,
            TimeSet,
            SetAttr,
            TargetRegReq,
            TargetRegReply,
            TargetInfo,
            ConfigReadReq,
            FsConfig,
            GetattrReq,
            LookupReq,
            AttrReply,
            Creds,
            ReintReq,
            ReintReply,
            ReaddirReq,
            DirEntry,
            ReaddirReply,
            XattrReq,
            XattrReply,
            OstCreateReq,
            OstCreateReply,
            ObjReq,
            ObjAttr,
            OstReadReq,
            OstWriteReq,
            OstWriteReply,
            OstPunchReq,
            OstSetattrReq,
            OstListReq,
            OstListReply,
            OstSyncReq,
            ErrorReply,
            Fid,
            LockMode,
            LockType,
            ResourceId,
            LockExtent,
            LockPolicy,
            LockDesc,
            LockHandle,
            Lvb,
            EnqueueReq,
            EnqueueReply,
            ConvertReq,
            CancelReq,
            BlockingAst,
            CompletionAst,
            GlimpseAst,
            OpenReq,
            CloseReq,
            GetattrLockReq,
            GetattrLockReply,
            ReintCancelReq,
            ReaddirPlusReq,
            DirEntryPlus,
            ReaddirPlusReply,
            OstFallocateReq,
            FlockReq,
            FlockConflict,
            FlockReply,
            OstDestroyBatchReq,
            OstDestroyBatchReply,
            DirVersion,
            GetattrBatchReq,
            GetattrBatchReply,
        ]
    )
}

fn round_trip<T>(bytes: &[u8])
where
    T: crate::WireDecode + PartialEq + std::fmt::Debug + crate::WireEncode,
{
    if let Ok(value) = T::from_wire(bytes) {
        let again = value.to_wire();
        assert_eq!(T::from_wire(&again).ok().as_ref(), Some(&value));
    }
}

/// Seed inputs for [`body`]: valid encodings of a few types, each behind its type byte.
pub fn body_seeds() -> Vec<Vec<u8>> {
    fn tagged(tag: u8, bytes: bytes::Bytes) -> Vec<u8> {
        let mut v = vec![tag];
        v.extend_from_slice(&bytes);
        v
    }
    vec![
        tagged(
            2,
            encode(&ConnectReq {
                client_uuid: "client-1".to_owned(),
                target: "sheen-OST0001".to_owned(),
            }),
        ),
        tagged(
            15,
            encode(&ConfigReadReq {
                fsname: "sheen".to_owned(),
            }),
        ),
        tagged(
            18,
            encode(&LookupReq {
                parent: Fid::ROOT,
                name: b"a-name".to_vec(),
            }),
        ),
        tagged(
            21,
            encode(&ReintReq::Rename {
                src_parent: Fid::ROOT,
                src_name: b"x".to_vec(),
                dst_parent: Fid::ROOT,
                dst_name: b"yy".to_vec(),
                flags: 1,
            }),
        ),
        tagged(
            32,
            encode(&OstReadReq {
                oid: 7,
                offset: 1 << 20,
                len: 4096,
            }),
        ),
        tagged(
            40,
            encode(&ErrorReply {
                message: "no".to_owned(),
            }),
        ),
        tagged(
            62,
            encode(&ReaddirPlusReq {
                fid: Fid::ROOT,
                cookie: 12,
                max_entries: 128,
                mode: LockMode::Pr,
                bits: vec![crate::ibits::LOOKUP, crate::ibits::UPDATE],
                lock_entries: 64,
            }),
        ),
        tagged(64, encode(&readdir_plus_reply_seed())),
        tagged(
            65,
            encode(&OstFallocateReq {
                oid: 7,
                offset: 1 << 20,
                len: 3 << 20,
                mode: falloc::KEEP_SIZE,
                mtime: Timespec { sec: 5, nsec: 6 },
                check_only: false,
            }),
        ),
        tagged(
            66,
            encode(&FlockReq {
                fid: Fid::ROOT,
                kind: FlockKind::Posix,
                op: FlockOp::SetLkWait,
                owner: 0x1234_5678_9abc,
                pid: 4242,
                typ: FlockType::Write,
                start: 100,
                end: 199,
            }),
        ),
        tagged(
            68,
            encode(&FlockReply {
                conflict: Some(FlockConflict {
                    typ: FlockType::Read,
                    start: 0,
                    end: u64::MAX,
                    pid: 7,
                }),
            }),
        ),
    ]
}

/// A readdirplus page of one regular file with a two-stripe layout and a lock.
fn readdir_plus_reply_seed() -> ReaddirPlusReply {
    let object = |ost_idx| OstObject {
        ost_idx,
        oid: 7,
        seq: 0,
    };
    let desc = LockDesc {
        resource: ResourceId::fid(Fid::ROOT),
        mode: LockMode::Pr,
        policy: LockPolicy::Ibits {
            bits: crate::ibits::LOOKUP,
        },
    };
    ReaddirPlusReply {
        entries: vec![DirEntryPlus {
            entry: DirEntry {
                name: b"file".to_vec(),
                fid: Fid::ROOT,
                file_type: 0o100000,
                next_cookie: 99,
            },
            attr: Attr {
                fid: Fid::ROOT,
                mode: 0o100644,
                nlink: 1,
                uid: 1,
                gid: 2,
                rdev: 0,
                size: 4096,
                blocks: 8,
                atime: Timespec::default(),
                mtime: Timespec::default(),
                ctime: Timespec::default(),
                btime: Timespec::default(),
                layout_gen: 1,
                hsm_state: 0,
                flags: 0,
            },
            layout: Some(Layout::plain(StripeLayout {
                pattern: pattern::RAID0,
                stripe_size: 1 << 20,
                stripe_count: 2,
                stripe_offset: 0,
                pool: String::new(),
                objects: vec![object(0), object(1)],
            })),
            writers: 1,
            locks: vec![EnqueueReply {
                handle: LockHandle { cookie: 5 },
                desc,
                granted: true,
                lvb: None,
            }],
            locked: true,
        }],
        eof: true,
    }
}

/// NID parsing, as done for every NID in a configuration or on a command line.
pub fn nid(data: &[u8]) {
    if data.len() > 4096 {
        return;
    }
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(n) = Nid::parse(text) {
            assert_eq!(Nid::parse(&n.to_string()), Ok(n));
        }
    }
}

/// A small deterministic generator (xorshift64*), so smoke runs are repeatable by seed.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }
}

/// Runs `target` over `iterations` inputs with a fixed `seed`: the seeds as given, then
/// random bytes, then seeds mutated (bit flips, byte sets, interesting values, truncation,
/// extension, splices). The bounded stable-toolchain stand-in for a fuzzer run, used by unit
/// tests beside each decoder; prints the seed so a failure can be replayed.
pub fn smoke(seed: u64, iterations: usize, seeds: &[Vec<u8>], mut target: impl FnMut(&[u8])) {
    eprintln!("fuzz smoke: seed {seed:#x}, {iterations} inputs");
    let mut rng = Rng::new(seed);
    for s in seeds {
        target(s);
    }
    let mut input = Vec::new();
    for i in 0..iterations {
        input.clear();
        if seeds.is_empty() || i % 4 == 0 {
            let max_len = if rng.below(8) == 0 { 4096 } else { 160 };
            let len = rng.below(max_len);
            input.extend((0..len).map(|_| rng.next_u64() as u8));
        } else {
            input.extend_from_slice(&seeds[rng.below(seeds.len())]);
            for _ in 0..=rng.below(4) {
                mutate(&mut rng, &mut input, seeds);
            }
        }
        target(&input);
    }
}

fn mutate(rng: &mut Rng, input: &mut Vec<u8>, seeds: &[Vec<u8>]) {
    const INTERESTING: [u64; 8] = [0, 1, 0x7f, 0xff, 0xffff, 0xffff_ffff, u64::MAX, 1 << 31];
    match rng.below(7) {
        0 if !input.is_empty() => {
            let at = rng.below(input.len());
            input[at] ^= 1 << rng.below(8);
        }
        1 if !input.is_empty() => {
            let at = rng.below(input.len());
            input[at] = rng.next_u64() as u8;
        }
        2 if input.len() >= 8 => {
            let at = rng.below(input.len() - 7);
            let width = [1usize, 2, 4, 8][rng.below(4)];
            let v = INTERESTING[rng.below(INTERESTING.len())].to_le_bytes();
            input[at..at + width].copy_from_slice(&v[..width]);
        }
        3 => {
            let keep = rng.below(input.len() + 1);
            input.truncate(keep);
        }
        4 => {
            let n = rng.below(64);
            input.extend((0..n).map(|_| rng.next_u64() as u8));
        }
        5 if !seeds.is_empty() => {
            let other = &seeds[rng.below(seeds.len())];
            let from = rng.below(other.len() + 1);
            let at = rng.below(input.len() + 1);
            input.truncate(at);
            input.extend_from_slice(&other[from..]);
        }
        _ => {
            if !input.is_empty() {
                let at = rng.below(input.len());
                input.remove(at);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode;

    fn frame_seeds() -> Vec<Vec<u8>> {
        let mut h = MsgHeader::request(4, 77, 3);
        h.seal_body(b"hello");
        let mut m = h.encode().to_vec();
        m.extend_from_slice(b"hello");
        let data = vec![9u8; 100];
        let mut b = BulkFrameHeader::for_data(5, &data).encode().to_vec();
        b.extend_from_slice(&data);
        vec![m, b]
    }

    #[test]
    fn fuzz_smoke_frames() {
        smoke(0x5eed_0001, 20_000, &frame_seeds(), frame);
    }

    #[test]
    fn fuzz_smoke_bodies() {
        smoke(0x5eed_0002, 20_000, &body_seeds(), body);
    }

    #[test]
    fn fuzz_smoke_nids() {
        let seeds: Vec<Vec<u8>> = ["127.0.0.1:7001@tcp", "10.0.0.1@o2ib1", "[::1]:5@rdma"]
            .iter()
            .map(|s| s.as_bytes().to_vec())
            .collect();
        smoke(0x5eed_0003, 20_000, &seeds, nid);
    }

    #[test]
    fn body_seeds_pick_their_types() {
        // Each seed decodes as the type its tag byte picks (so mutations start from valid
        // archives of many types).
        for seed in body_seeds() {
            body(&seed);
        }
        let s = &body_seeds()[0];
        assert!(decode::<ConnectReq>(&s[1..]).is_ok());
        let s = &body_seeds()[5];
        assert!(decode::<ErrorReply>(&s[1..]).is_ok());
        let s = &body_seeds()[6];
        assert!(decode::<ReaddirPlusReq>(&s[1..]).is_ok());
        let s = &body_seeds()[7];
        assert!(decode::<ReaddirPlusReply>(&s[1..]).is_ok());
        let seeds = body_seeds();
        assert!(decode::<OstFallocateReq>(&seeds[8][1..]).is_ok());
        assert!(decode::<FlockReq>(&seeds[9][1..]).is_ok());
        assert!(decode::<FlockReply>(&seeds[10][1..]).is_ok());
    }
}
