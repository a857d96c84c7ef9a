//! Behaviour tests of the whole OSD: round trips against a reference model, persistence,
//! space accounting, checksums, crash safety, checkpoints, locking and concurrency.
//!
//! Most run on an in-memory device (no fsync cost, so they stay fast); the ones about the real
//! block file (engines, flock, O_DIRECT fallback, bit flips in the file) use small files in
//! temporary directories.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use sheen_wire::msg::Timespec;
use sheen_wire::{Errno, ObjId};

use crate::cipher::{BlockCipher, IdentityCipher, XorCipher};
use crate::dev::mem::{CrashDev, MemDev, Survivors};
use crate::dev::BlockDev;
use crate::format::Geometry;
use crate::limits::*;
use crate::locks::lock;
use crate::{Osd, OsdError, OsdLabel};

const MIB: u64 = 1 << 20;

fn label() -> OsdLabel {
    OsdLabel {
        fsname: "sheen".into(),
        ost_index: 3,
    }
}

fn t(sec: i64) -> Timespec {
    Timespec { sec, nsec: 0 }
}

/// Deterministic pseudo-random bytes.
fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 32) as u8
        })
        .collect()
}

/// A small deterministic generator for randomized tests (seed printed on failure).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// A formatted in-memory device.
fn mem_dev(size: u64, log_bytes: Option<u64>) -> Arc<MemDev> {
    let dev = Arc::new(MemDev::new(size));
    let geo = Geometry::for_device(size, log_bytes).unwrap();
    Osd::format_dev(dev.as_ref(), &geo, &label()).unwrap();
    dev
}

fn open_mem(dev: &Arc<MemDev>) -> Osd {
    Osd::open_dev(Box::new(dev.clone()), Box::new(IdentityCipher)).unwrap()
}

fn open_with(dev: Arc<dyn BlockDev>, cipher: Box<dyn BlockCipher>) -> Osd {
    Osd::open_dev(Box::new(dev), cipher).unwrap()
}

fn block_file(dir: &tempfile::TempDir, size: u64) -> PathBuf {
    let path = dir.path().join("ost0.img");
    Osd::format(&path, size, &label()).unwrap();
    path
}

fn read_all(osd: &Osd, oid: ObjId) -> Vec<u8> {
    let size = osd.getattr(oid).unwrap().size;
    let mut out = Vec::new();
    while u64::try_from(out.len()).unwrap() < size {
        let chunk = osd.read(oid, out.len() as u64, MAX_IO_BYTES).unwrap();
        assert!(!chunk.is_empty());
        out.extend_from_slice(&chunk);
    }
    out
}

/// Free blocks + blocks held by objects + the reserve must account for every data block.
fn assert_no_leak(osd: &Osd) {
    let st = osd.statfs();
    let (attrs, done) = osd.list(0, u32::MAX);
    assert!(done);
    let held: u64 = attrs.iter().map(|a| a.allocated_bytes).sum();
    let reserve = RESERVED_BLOCKS * BLOCK_BYTES_U64;
    assert_eq!(
        st.free_bytes + held + reserve,
        st.total_bytes,
        "blocks leaked or double counted"
    );
}

/// Applies a write to the reference model of an object.
fn model_write(model: &mut Vec<u8>, offset: usize, data: &[u8]) {
    if model.len() < offset + data.len() {
        model.resize(offset + data.len(), 0);
    }
    model[offset..offset + data.len()].copy_from_slice(data);
}

#[test]
fn osd_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<Osd>();
    check::<OsdError>();
}

#[test]
fn random_ops_match_a_model_and_survive_reopen() {
    let dev = mem_dev(64 * MIB, None);
    let osd = open_mem(&dev);
    let first = osd.precreate(4).unwrap();
    let oids: Vec<ObjId> = (first..first + 4).collect();
    let mut models: Vec<Vec<u8>> = vec![Vec::new(); 4];
    let seed = 0x5eed_1234_u64;
    let mut rng = Rng(seed);
    for step in 0..400u64 {
        let k = usize::try_from(rng.below(4)).unwrap();
        let oid = oids[k];
        match rng.below(10) {
            0..=5 => {
                let offset = rng.below(300_000);
                let len = 1 + rng.below(40_000);
                let data = pattern(step, usize::try_from(len).unwrap());
                let size = osd.write(oid, offset, &data, t(1)).unwrap();
                model_write(&mut models[k], usize::try_from(offset).unwrap(), &data);
                assert_eq!(size, models[k].len() as u64, "seed {seed} step {step}");
            }
            6 => {
                let size = rng.below(320_000);
                osd.punch(oid, size).unwrap();
                models[k].resize(usize::try_from(size).unwrap(), 0);
            }
            _ => {
                let offset = rng.below(340_000);
                let len = u32::try_from(rng.below(70_000)).unwrap();
                let got = osd.read(oid, offset, len).unwrap();
                let m = &models[k];
                let start = usize::try_from(offset).unwrap().min(m.len());
                let end = (start + len as usize).min(m.len());
                assert_eq!(&got[..], &m[start..end], "seed {seed} step {step}");
            }
        }
        let attr = osd.getattr(oid).unwrap();
        assert_eq!(attr.size, models[k].len() as u64);
        assert!(attr.allocated_bytes <= attr.size.div_ceil(4096) * 4096);
    }
    assert_no_leak(&osd);
    drop(osd);
    let osd = open_mem(&dev);
    for (k, oid) in oids.iter().enumerate() {
        assert_eq!(read_all(&osd, *oid), models[k], "object {oid} after reopen");
    }
    assert_no_leak(&osd);
}

/// I/O buffers of 64 KiB and more are pooled and not zeroed when taken (reads and writes
/// fill every byte themselves): a buffer that held other data must never show it through a
/// hole, a preallocated block, or around a partial write.
#[test]
fn reused_buffers_never_show_old_bytes() {
    let dev = mem_dev(64 * MIB, None);
    let osd = open_mem(&dev);
    let junk_oid = osd.precreate(1).unwrap();
    // Leaves pooled buffers of the sizes used below full of 0xA5 (written, then read).
    let pollute = || {
        for len in [100_000, MIB as usize, MIB as usize + 4096] {
            osd.write(junk_oid, 0, &vec![0xA5u8; len], t(1)).unwrap();
            let back = osd.read(junk_oid, 0, len as u32).unwrap();
            assert!(back.iter().all(|&b| b == 0xA5));
        }
    };
    for round in 0..3 {
        let oid = osd.precreate(1).unwrap();
        // A hole, one written block, a hole to the end.
        osd.write(oid, 300_000, b"middle", t(2)).unwrap();
        osd.punch(oid, MIB).unwrap();
        pollute();
        let got = osd.read(oid, 0, MIB as u32).unwrap();
        let nonzero: Vec<usize> = (0..got.len()).filter(|&i| got[i] != 0).collect();
        assert_eq!(
            nonzero,
            (300_000..300_006).collect::<Vec<_>>(),
            "round {round}: hole"
        );

        // Preallocated blocks, one of them written partly in place.
        let oid = osd.precreate(1).unwrap();
        osd.fallocate(oid, 0, MIB, false, t(3)).unwrap();
        pollute();
        osd.write(oid, 4096 + 10, &[b'p'; 70_000], t(4)).unwrap();
        pollute();
        let got = osd.read(oid, 0, MIB as u32).unwrap();
        assert_eq!(got.len(), MIB as usize);
        for (i, &b) in got.iter().enumerate() {
            let want = if (4106..74_106).contains(&i) { b'p' } else { 0 };
            assert_eq!(b, want, "round {round}: preallocated, byte {i}");
        }

        // A write at an unaligned offset into nothing: zeros before it in its first block
        // and after it in its last.
        let oid = osd.precreate(1).unwrap();
        osd.punch(oid, 200_000).unwrap();
        pollute();
        osd.write(oid, 5000, &[b'x'; 70_000], t(5)).unwrap();
        pollute();
        let got = osd.read(oid, 0, 200_000).unwrap();
        assert_eq!(got.len(), 200_000);
        for (i, &b) in got.iter().enumerate() {
            let want = if (5000..75_000).contains(&i) { b'x' } else { 0 };
            assert_eq!(b, want, "round {round}: around a partial write, byte {i}");
        }
    }
}

#[test]
fn holes_read_as_zeros_and_reads_stop_at_the_end() {
    let dev = mem_dev(32 * MIB, None);
    let osd = open_mem(&dev);
    let oid = osd.precreate(1).unwrap();
    assert_eq!(osd.read(oid, 0, 100).unwrap().len(), 0, "empty object");
    let size = osd.write(oid, 100_000, b"tail", t(5)).unwrap();
    assert_eq!(size, 100_004);
    let head = osd.read(oid, 0, 100_000).unwrap();
    assert!(head.iter().all(|&b| b == 0));
    assert_eq!(&osd.read(oid, 99_998, 100).unwrap()[..], b"\0\0tail");
    assert_eq!(osd.read(oid, 100_004, 10).unwrap().len(), 0, "at the end");
    assert_eq!(
        osd.read(oid, 1 << 40, 10).unwrap().len(),
        0,
        "far past the end"
    );
    let attr = osd.getattr(oid).unwrap();
    assert_eq!(attr.allocated_bytes, 4096, "a hole holds no blocks");
    assert_eq!(attr.mtime, t(5));
    assert!(matches!(osd.read(999, 0, 1), Err(OsdError::NotFound(999))));
    assert_eq!(
        osd.write(oid, 5, b"", t(9)).unwrap(),
        100_004,
        "empty write changes nothing"
    );
}

#[test]
fn block_file_overwrite_then_reopen_shows_new_data() {
    let dir = tempfile::tempdir().unwrap();
    let path = block_file(&dir, 64 * MIB);
    let old = pattern(1, 300_000);
    let new = pattern(2, 70_001);
    {
        let osd = Osd::open(&path).unwrap();
        assert_eq!(osd.label(), &label());
        let oid = osd.precreate(1).unwrap();
        assert_eq!(oid, 1);
        osd.write(oid, 0, &old, t(1)).unwrap();
        osd.write(oid, 12_345, &new, t(2)).unwrap();
        osd.sync().unwrap();
    }
    let osd = Osd::open(&path).unwrap();
    let mut expect = old.clone();
    model_write(&mut expect, 12_345, &new);
    assert_eq!(read_all(&osd, 1), expect);
    assert_eq!(osd.getattr(1).unwrap().mtime, t(2));
    assert_no_leak(&osd);
}

#[test]
fn sequential_mib_writes_land_contiguously() {
    let dev = mem_dev(64 * MIB, None);
    let osd = open_mem(&dev);
    let oid = osd.precreate(1).unwrap();
    for i in 0..4u64 {
        osd.write(oid, i * MIB, &pattern(i, 1 << 20), t(1)).unwrap();
    }
    let first = osd.debug_block_offset(oid, 0).unwrap();
    for off in [MIB - 1, MIB, 3 * MIB + 5] {
        assert_eq!(
            osd.debug_block_offset(oid, off).unwrap(),
            first + off,
            "offset {off}"
        );
    }
    let idx = crate::locks::read(&osd.index);
    assert_eq!(
        idx.objects[&oid].map.n_extents(),
        1,
        "merged into one extent"
    );
}

#[test]
fn many_objects_persist_across_reopen() {
    let dev = mem_dev(64 * MIB, None);
    let osd = open_mem(&dev);
    let first = osd.precreate(300).unwrap();
    for oid in first..first + 300 {
        let len = usize::try_from(oid * 37 % 9000 + 1).unwrap();
        osd.write(
            oid,
            oid % 5000,
            &pattern(oid, len),
            t(i64::try_from(oid).unwrap()),
        )
        .unwrap();
    }
    for oid in (first..first + 300).step_by(3) {
        osd.destroy(oid).unwrap();
    }
    drop(osd);
    let osd = open_mem(&dev);
    let (attrs, done) = osd.list(0, 1000);
    assert!(done);
    assert_eq!(attrs.len(), 200);
    for a in &attrs {
        let oid = a.oid;
        assert_ne!((oid - first) % 3, 0, "destroyed object {oid} came back");
        let len = usize::try_from(oid * 37 % 9000 + 1).unwrap();
        let mut expect = vec![0; usize::try_from(oid % 5000).unwrap()];
        expect.extend(pattern(oid, len));
        assert_eq!(read_all(&osd, oid), expect);
        assert_eq!(a.mtime, t(i64::try_from(oid).unwrap()));
    }
    // Paging.
    let (page, done) = osd.list(first + 1, 10);
    assert_eq!(page.len(), 10);
    assert!(!done);
    assert_eq!(page[0].oid, first + 1);
    let (tail, done) = osd.list(first + 299, 10);
    assert_eq!(tail.len(), 1);
    assert!(done);
    assert_eq!(osd.statfs().objects, 200);
    assert_no_leak(&osd);
}

/// A whole-block write from memory aligned for O_DIRECT goes from the caller's buffer; the
/// same data from an unaligned buffer, or with a cipher, is copied first: all read back the
/// same, on the block file (O_DIRECT) as in memory.
#[test]
fn writes_from_aligned_buffers_go_without_a_copy_and_read_back() {
    let data = pattern(42, 256 << 10);
    let mut aligned = crate::dev::AlignedBuf::stale(data.len());
    aligned.copy_from_slice(&data);
    assert_eq!(aligned.as_ptr() as usize % IO_ALIGN_BYTES, 0);
    let mut unaligned = vec![0u8; data.len() + 1];
    unaligned[1..].copy_from_slice(&data);
    let unaligned = &unaligned[1..];
    let dir = tempfile::tempdir().unwrap();
    let path = block_file(&dir, 64 * MIB);
    let on_disk = Osd::open(&path).unwrap();
    let mem = open_mem(&mem_dev(64 * MIB, None));
    let ciphered_dev = mem_dev(64 * MIB, None);
    let shared: Arc<dyn BlockDev> = ciphered_dev.clone();
    let ciphered = open_with(shared, Box::new(XorCipher));
    let mut want = vec![0u8; 8192];
    want.extend_from_slice(&data);
    want.extend_from_slice(&data);
    want[100..4196].copy_from_slice(&data[..4096]);
    for osd in [&on_disk, &mem, &ciphered] {
        let oid = osd.precreate(1).unwrap();
        osd.write(oid, 8192, &aligned, t(1)).unwrap();
        osd.write(oid, 8192 + data.len() as u64, unaligned, t(1))
            .unwrap();
        // Aligned memory, unaligned offset: copied, with the edge block kept.
        osd.write(oid, 100, &aligned[..4096], t(1)).unwrap();
        assert!(read_all(osd, oid) == want, "{} differs", osd.engine());
    }
    // With a cipher, aligned data is encrypted all the same: no plain block on the device.
    let image = ciphered_dev.image();
    assert!(!image.chunks_exact(4096).any(|b| b == &data[4096..8192]));
    // Unchanged by a reopen (the checksums stored were those of the data written).
    drop(on_disk);
    let reopened = Osd::open(&path).unwrap();
    let oid = reopened.list(0, 1).0[0].oid;
    assert_eq!(read_all(&reopened, oid).len(), 8192 + 2 * data.len());
}

#[test]
fn destroy_frees_space() {
    let dev = mem_dev(64 * MIB, None);
    let osd = open_mem(&dev);
    let before = osd.statfs();
    let oid = osd.precreate(1).unwrap();
    osd.write(oid, 0, &pattern(1, 1 << 20), t(1)).unwrap();
    let during = osd.statfs();
    assert_eq!(during.free_bytes, before.free_bytes - MIB);
    assert_eq!(osd.getattr(oid).unwrap().allocated_bytes, MIB);
    osd.destroy(oid).unwrap();
    assert_eq!(osd.statfs().free_bytes, before.free_bytes);
    assert!(matches!(osd.destroy(oid), Err(OsdError::NotFound(_))));
    assert!(matches!(osd.getattr(oid), Err(OsdError::NotFound(_))));
    drop(osd);
    assert_eq!(open_mem(&dev).statfs().free_bytes, before.free_bytes);
}

#[test]
fn destroy_batch_is_one_commit_and_skips_what_is_gone() {
    let dev = mem_dev(64 * MIB, None);
    let crash = Arc::new(CrashDev::new(dev.image()));
    let osd = open_with(crash.clone(), Box::new(IdentityCipher));
    let before = osd.statfs();
    let first = osd.precreate(300).unwrap();
    for oid in first..first + 10 {
        osd.write(oid, 0, &pattern(oid, 64 << 10), t(1)).unwrap();
    }
    osd.destroy(first + 299).unwrap();
    // The ones to go: 200 objects, ten of them holding data, one named twice, one already
    // destroyed and one never created.
    let mut victims: Vec<ObjId> = (first..first + 200).collect();
    victims.extend([first + 5, first + 299, first + 1000]);
    let events = crash.events_done();
    assert_eq!(osd.destroy_batch(&victims).unwrap(), 200);
    // One log write and one flush, where one destroy after another would take 400.
    assert_eq!(crash.events_done() - events, 2);
    assert!(matches!(osd.getattr(first), Err(OsdError::NotFound(_))));
    assert!(matches!(
        osd.getattr(first + 199),
        Err(OsdError::NotFound(_))
    ));
    assert_eq!(read_all(&osd, first + 200), b"");
    assert_eq!(osd.statfs().objects, before.objects + 99);
    assert_eq!(osd.statfs().free_bytes, before.free_bytes);
    assert_eq!(osd.destroy_batch(&victims).unwrap(), 0);
    assert_no_leak(&osd);
    drop(osd);
    let image = crash.crash_image(Survivors::SyncedOnly);
    let osd = open_with(
        Arc::new(MemDev::from_image(image)),
        Box::new(IdentityCipher),
    );
    assert_eq!(osd.statfs().objects, before.objects + 99);
    assert_eq!(osd.statfs().free_bytes, before.free_bytes);
    assert!(matches!(osd.getattr(first + 7), Err(OsdError::NotFound(_))));
}

#[test]
fn full_ost_gives_nospace_and_leaves_the_object_unchanged() {
    let dev = mem_dev(32 * MIB, None);
    let osd = open_mem(&dev);
    let a = osd.precreate(2).unwrap();
    let b = a + 1;
    let mut written = 0u64;
    let err = loop {
        match osd.write(a, written, &pattern(written, 1 << 20), t(1)) {
            Ok(_) => written += MIB,
            Err(e) => break e,
        }
    };
    assert!(matches!(err, OsdError::NoSpace), "{err}");
    assert_eq!(err.errno(), Errno::ENOSPC);
    assert!(written > 0);
    let before = read_all(&osd, a);
    assert_eq!(before.len() as u64, written);
    // An overwrite needs fresh blocks too (copy-on-write), so it fails the same way.
    let free_blocks = osd.statfs().free_bytes / 4096;
    let too_big = vec![7u8; usize::try_from((free_blocks + 1) * 4096).unwrap()];
    assert!(matches!(
        osd.write(a, 0, &too_big, t(2)),
        Err(OsdError::NoSpace)
    ));
    assert_eq!(read_all(&osd, a), before);
    assert_eq!(osd.getattr(a).unwrap().mtime, t(1));
    // A shrinking punch still works on a full OST (it may use the reserve).
    osd.punch(a, written - 100).unwrap();
    assert_no_leak(&osd);
    osd.destroy(a).unwrap();
    osd.write(b, 0, &pattern(9, 1 << 20), t(3)).unwrap();
    assert_eq!(read_all(&osd, b), pattern(9, 1 << 20));
    assert_no_leak(&osd);
}

#[test]
fn flipped_byte_in_the_block_file_is_a_checksum_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = block_file(&dir, 32 * MIB);
    let data = pattern(3, 3 * 4096);
    let at = {
        let osd = Osd::open(&path).unwrap();
        let oid = osd.precreate(1).unwrap();
        osd.write(oid, 0, &data, t(1)).unwrap();
        osd.debug_block_offset(oid, 4096 + 10).unwrap()
    };
    flip_byte(&path, at);
    let osd = Osd::open(&path).unwrap();
    match osd.read(1, 0, 3 * 4096) {
        Err(OsdError::Checksum {
            oid,
            offset,
            stored,
            computed,
        }) => {
            assert_eq!((oid, offset), (1, 4096));
            assert_ne!(stored, computed);
        }
        other => panic!("expected a checksum error, got {other:?}"),
    }
    assert_eq!(osd.read(1, 4096, 1).unwrap_err().errno(), Errno::EIO);
    // Blocks around it still read, and a partial overwrite over it cannot merge bad data.
    assert_eq!(&osd.read(1, 0, 4096).unwrap()[..], &data[..4096]);
    assert_eq!(&osd.read(1, 8192, 4096).unwrap()[..], &data[8192..]);
    assert!(matches!(
        osd.write(1, 4097, b"x", t(2)),
        Err(OsdError::Checksum { .. })
    ));
    // A whole-block overwrite replaces the bad block.
    osd.write(1, 4096, &data[4096..8192], t(2)).unwrap();
    assert_eq!(read_all(&osd, 1), data);
}

fn flip_byte(path: &Path, at: u64) {
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, at).unwrap();
    b[0] ^= 0x01;
    f.write_all_at(&b, at).unwrap();
    f.sync_all().unwrap();
}

#[test]
fn second_open_is_busy_until_the_first_closes() {
    let dir = tempfile::tempdir().unwrap();
    let path = block_file(&dir, 32 * MIB);
    let osd = Osd::open(&path).unwrap();
    let err = Osd::open(&path).unwrap_err();
    assert!(matches!(err, OsdError::Busy), "{err}");
    assert_eq!(err.errno(), Errno::EBUSY);
    drop(osd);
    Osd::open(&path).unwrap();
}

#[test]
fn format_refuses_existing_files_and_bad_labels() {
    let dir = tempfile::tempdir().unwrap();
    let path = block_file(&dir, 32 * MIB);
    let err = Osd::format(&path, 32 * MIB, &label()).unwrap_err();
    assert!(matches!(err, OsdError::Exists));
    assert_eq!(err.errno(), Errno::EEXIST);
    let other = dir.path().join("bad.img");
    let bad = OsdLabel {
        fsname: "much-too-long".into(),
        ost_index: 0,
    };
    assert!(matches!(
        Osd::format(&other, 32 * MIB, &bad),
        Err(OsdError::Invalid(_))
    ));
    assert!(matches!(
        Osd::format(&other, MIB, &label()),
        Err(OsdError::Invalid(_))
    ));
    assert!(!other.exists());
    assert!(matches!(Osd::open(&other), Err(OsdError::Io(_))));
}

#[test]
fn damaged_superblock_is_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let path = block_file(&dir, 32 * MIB);
    flip_byte(&path, 40);
    assert!(matches!(Osd::open(&path), Err(OsdError::Corrupt(_))));
}

#[test]
fn precreate_ids_are_contiguous_and_never_reused() {
    let dev = mem_dev(32 * MIB, None);
    let osd = open_mem(&dev);
    assert_eq!(osd.precreate(10).unwrap(), 1);
    assert_eq!(osd.precreate(5).unwrap(), 11);
    osd.destroy(15).unwrap();
    osd.destroy(14).unwrap();
    assert!(matches!(osd.precreate(0), Err(OsdError::Invalid(_))));
    assert!(matches!(
        osd.precreate(PRECREATE_MAX_COUNT + 1),
        Err(OsdError::Invalid(_))
    ));
    drop(osd);
    let osd = open_mem(&dev);
    assert_eq!(osd.precreate(1).unwrap(), 16);
    let attr = osd.getattr(16).unwrap();
    assert_eq!(
        (attr.size, attr.allocated_bytes, attr.mtime),
        (0, 0, Timespec::default())
    );
}

#[test]
fn max_objects_is_enforced() {
    let dev = mem_dev(32 * MIB, None);
    let osd = open_mem(&dev);
    let max = osd.statfs().max_objects;
    let mut made = 0u64;
    while made + u64::from(PRECREATE_MAX_COUNT) <= max {
        osd.precreate(PRECREATE_MAX_COUNT).unwrap();
        made += u64::from(PRECREATE_MAX_COUNT);
    }
    let left = u32::try_from(max - made).unwrap();
    if left > 0 {
        osd.precreate(left).unwrap();
    }
    assert!(matches!(osd.precreate(1), Err(OsdError::NoSpace)));
    osd.destroy(1).unwrap();
    let next = osd.precreate(1).unwrap();
    assert_eq!(next, max + 1, "ids keep growing after a destroy");
    drop(osd);
    assert_eq!(open_mem(&dev).statfs().objects, max);
}

#[test]
fn punch_frees_blocks_and_zeroes_the_tail() {
    let dev = mem_dev(32 * MIB, None);
    let osd = open_mem(&dev);
    let oid = osd.precreate(1).unwrap();
    osd.write(oid, 0, &[0xff; 40_000], t(1)).unwrap();
    assert_eq!(osd.getattr(oid).unwrap().allocated_bytes, 10 * 4096);
    osd.punch(oid, 5000).unwrap();
    let attr = osd.getattr(oid).unwrap();
    assert_eq!((attr.size, attr.allocated_bytes), (5000, 2 * 4096));
    osd.punch(oid, 30_000).unwrap();
    let got = osd.read(oid, 0, 40_000).unwrap();
    assert_eq!(got.len(), 30_000);
    assert!(got[..5000].iter().all(|&b| b == 0xff));
    assert!(
        got[5000..].iter().all(|&b| b == 0),
        "old bytes must not reappear"
    );
    osd.punch(oid, 0).unwrap();
    assert_eq!(osd.getattr(oid).unwrap().allocated_bytes, 0);
    osd.punch(oid, 0).unwrap();
    assert!(matches!(osd.punch(77, 0), Err(OsdError::NotFound(77))));
    assert!(matches!(
        osd.punch(oid, MAX_OBJECT_BYTES + 1),
        Err(OsdError::TooBig { .. })
    ));
    assert_no_leak(&osd);
}

#[test]
fn mtime_rules() {
    let dev = mem_dev(32 * MIB, None);
    let osd = open_mem(&dev);
    let oid = osd.precreate(1).unwrap();
    osd.write(oid, 0, b"a", t(100)).unwrap();
    osd.write(oid, 1, b"b", t(50)).unwrap();
    assert_eq!(
        osd.getattr(oid).unwrap().mtime,
        t(100),
        "writes never move mtime back"
    );
    osd.set_mtime(oid, Timespec { sec: 7, nsec: 9 }).unwrap();
    assert_eq!(
        osd.getattr(oid).unwrap().mtime,
        Timespec { sec: 7, nsec: 9 }
    );
    let bad = Timespec {
        sec: 1,
        nsec: 1_000_000_000,
    };
    assert!(matches!(osd.set_mtime(oid, bad), Err(OsdError::Invalid(_))));
    assert!(matches!(
        osd.set_mtime(99, t(1)),
        Err(OsdError::NotFound(99))
    ));
    drop(osd);
    let osd = open_mem(&dev);
    assert_eq!(
        osd.getattr(oid).unwrap().mtime,
        Timespec { sec: 7, nsec: 9 }
    );
}

#[test]
fn bad_arguments_are_rejected() {
    let dev = mem_dev(32 * MIB, None);
    let osd = open_mem(&dev);
    let oid = osd.precreate(1).unwrap();
    assert!(matches!(
        osd.read(oid, 0, MAX_IO_BYTES + 1),
        Err(OsdError::Invalid(_))
    ));
    let big = vec![0u8; MAX_IO_BYTES as usize + 1];
    assert!(matches!(
        osd.write(oid, 0, &big, t(1)),
        Err(OsdError::Invalid(_))
    ));
    let err = osd.write(oid, MAX_OBJECT_BYTES, b"x", t(1)).unwrap_err();
    assert!(matches!(err, OsdError::TooBig { .. }));
    assert_eq!(err.errno(), Errno::EFBIG);
    assert!(matches!(
        osd.write(oid, u64::MAX, b"x", t(1)),
        Err(OsdError::TooBig { .. })
    ));
    // The last byte of the largest object is writable and readable.
    osd.write(oid, MAX_OBJECT_BYTES - 1, b"z", t(1)).unwrap();
    assert_eq!(&osd.read(oid, MAX_OBJECT_BYTES - 1, 10).unwrap()[..], b"z");
}

#[test]
fn log_full_checkpoints_and_reopens() {
    let dev = mem_dev(32 * MIB, Some(LOG_MIN_BYTES));
    let osd = open_mem(&dev);
    let gen0 = lock(&osd.log).generation;
    let first = osd.precreate(8).unwrap();
    let mut models = vec![Vec::new(); 8];
    // Each commit takes at least one 4 KiB log block: 1 MiB of log fills after ~250 commits.
    for i in 0..700u64 {
        let k = usize::try_from(i % 8).unwrap();
        let data = pattern(i, usize::try_from(i % 3000 + 1).unwrap());
        let offset = usize::try_from(i * 131 % 20_000).unwrap();
        osd.write(first + k as u64, offset as u64, &data, t(1))
            .unwrap();
        model_write(&mut models[k], offset, &data);
    }
    let gen1 = lock(&osd.log).generation;
    assert!(
        gen1 >= gen0 + 2,
        "log wrapped through checkpoints ({gen0} → {gen1})"
    );
    drop(osd);
    let osd = open_mem(&dev);
    for (k, m) in models.iter().enumerate() {
        assert_eq!(&read_all(&osd, first + k as u64), m);
    }
    assert_no_leak(&osd);
}

#[test]
fn the_cipher_hook_is_applied_on_every_path() {
    let dev = mem_dev(32 * MIB, None);
    let shared: Arc<dyn BlockDev> = dev.clone();
    let osd = open_with(shared.clone(), Box::new(XorCipher));
    let oid = osd.precreate(1).unwrap();
    let data = pattern(5, 20_000);
    osd.write(oid, 0, &data, t(1)).unwrap();
    osd.write(oid, 5000, b"partial", t(1)).unwrap();
    osd.punch(oid, 9000).unwrap();
    let mut expect = data.clone();
    expect[5000..5007].copy_from_slice(b"partial");
    expect.truncate(9000);
    assert_eq!(read_all(&osd, oid), expect);
    // What is on the device is not the plaintext.
    let at = usize::try_from(osd.debug_block_offset(oid, 0).unwrap()).unwrap();
    assert_ne!(&dev.image()[at..at + 4096], &expect[..4096]);
    drop(osd);
    let osd = open_with(shared.clone(), Box::new(XorCipher));
    assert_eq!(read_all(&osd, oid), expect);
    drop(osd);
    // Without the key every block fails its checksum instead of returning garbage.
    let osd = open_with(shared, Box::new(IdentityCipher));
    assert!(matches!(
        osd.read(oid, 0, 10),
        Err(OsdError::Checksum { .. })
    ));
}

#[test]
fn concurrent_writers_on_the_block_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = block_file(&dir, 64 * MIB);
    let osd = Arc::new(Osd::open(&path).unwrap());
    let first = osd.precreate(4).unwrap();
    let threads: Vec<_> = (0..4u64)
        .map(|k| {
            let osd = osd.clone();
            std::thread::spawn(move || {
                for i in 0..12u64 {
                    let data = pattern(k * 100 + i, 64 << 10);
                    osd.write(first + k, i * (64 << 10), &data, t(1)).unwrap();
                }
            })
        })
        .collect();
    for th in threads {
        th.join().unwrap();
    }
    drop(osd);
    let osd = Osd::open(&path).unwrap();
    for k in 0..4u64 {
        let got = read_all(&osd, first + k);
        let expect: Vec<u8> = (0..12)
            .flat_map(|i| pattern(k * 100 + i, 64 << 10))
            .collect();
        assert_eq!(got, expect, "object {}", first + k);
    }
    assert_no_leak(&osd);
}

#[test]
fn readers_never_see_torn_or_recycled_blocks_during_overwrites() {
    let dev = mem_dev(32 * MIB, None);
    let osd = Arc::new(open_mem(&dev));
    let first = osd.precreate(3).unwrap();
    let (hot, other, shared) = (first, first + 1, first + 2);
    let unit = 3 * 4096 + 100; // unaligned: every overwrite merges edge blocks
    osd.write(hot, 0, &vec![b'A'; unit], t(1)).unwrap();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (osd, stop) = (osd.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut i = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let byte = if i % 2 == 0 { b'B' } else { b'A' };
                osd.write(hot, 0, &vec![byte; unit], t(1)).unwrap();
                // Churn: another object reuses freed blocks as fast as possible.
                osd.write(other, 0, &pattern(i, 8 * 4096), t(1)).unwrap();
                i += 1;
            }
        })
    };
    // Writers on disjoint ranges of one object run concurrently and both land.
    let halves: Vec<_> = (0..2u64)
        .map(|h| {
            let osd = osd.clone();
            std::thread::spawn(move || {
                for i in 0..30u64 {
                    let off = h * 64 * 4096 + (i % 4) * 4096;
                    osd.write(shared, off, &[u8::try_from(h).unwrap() + 1; 4096], t(1))
                        .unwrap();
                }
            })
        })
        .collect();
    for _ in 0..300 {
        let got = osd.read(hot, 0, u32::try_from(unit).unwrap()).unwrap();
        assert_eq!(got.len(), unit);
        assert!(got.iter().all(|&b| b == got[0]), "torn read");
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    writer.join().unwrap();
    for h in halves {
        h.join().unwrap();
    }
    let s = read_all(&osd, shared);
    assert!(s[..4 * 4096].iter().all(|&b| b == 1));
    assert!(s[64 * 4096..68 * 4096].iter().all(|&b| b == 2));
    assert_no_leak(&osd);
}

#[test]
fn sync_engine_and_tmpfs_fallback_work() {
    // The pread/pwrite engine on a real file.
    let dir = tempfile::tempdir().unwrap();
    let path = block_file(&dir, 32 * MIB);
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .unwrap();
    let len = file.metadata().unwrap().len();
    let dev: Arc<dyn BlockDev> = Arc::new(crate::dev::sync::FileDev::new(file, len));
    let osd = open_with(dev.clone(), Box::new(IdentityCipher));
    assert_eq!(osd.engine(), "sync");
    let oid = osd.precreate(1).unwrap();
    osd.write(oid, 3, &pattern(1, 100_000), t(1)).unwrap();
    drop(osd);
    let osd = Osd::open(&path).unwrap();
    assert_eq!(&read_all(&osd, oid)[3..], &pattern(1, 100_000)[..]);
    drop(osd);
    // tmpfs refuses O_DIRECT: open falls back to buffered I/O.
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        let dir = tempfile::tempdir_in(shm).unwrap();
        let path = block_file(&dir, 32 * MIB);
        let osd = Osd::open(&path).unwrap();
        let oid = osd.precreate(1).unwrap();
        osd.write(oid, 0, b"on tmpfs", t(1)).unwrap();
        drop(osd);
        assert_eq!(
            &Osd::open(&path).unwrap().read(oid, 0, 100).unwrap()[..],
            b"on tmpfs"
        );
    }
}

#[test]
fn failed_metadata_write_halts_until_reopen() {
    let dev = mem_dev(32 * MIB, None);
    let crash = Arc::new(CrashDev::new(dev.image()));
    let osd = open_with(crash.clone(), Box::new(IdentityCipher));
    let oid = osd.precreate(1).unwrap();
    osd.write(oid, 0, b"before", t(1)).unwrap();
    crash.arm(2); // the data write and the data flush pass, the log write fails
    assert!(matches!(
        osd.write(oid, 0, b"after!", t(2)),
        Err(OsdError::Io(_))
    ));
    assert!(matches!(
        osd.write(oid, 0, b"again", t(2)),
        Err(OsdError::Halted)
    ));
    assert!(matches!(osd.precreate(1), Err(OsdError::Halted)));
    assert_eq!(OsdError::Halted.errno(), Errno::EIO);
    drop(osd);
    let image = crash.crash_image(Survivors::SyncedOnly);
    let osd = open_with(
        Arc::new(MemDev::from_image(image)),
        Box::new(IdentityCipher),
    );
    assert_eq!(&read_all(&osd, oid)[..], b"before");
}

// ---------------------------------------------------------------------------------------------
// Crash safety

/// One change of the crash workload and what the object holds before and after it.
struct Case {
    oid: ObjId,
    old: Option<Vec<u8>>,
    new: Option<Vec<u8>>,
}

/// Formats a device and writes the "old" state of the objects the workload changes.
fn crash_base() -> (Vec<u8>, Vec<Case>) {
    let dev = mem_dev(32 * MIB, Some(LOG_MIN_BYTES));
    let osd = open_mem(&dev);
    let first = osd.precreate(6).unwrap();
    // Object 7 is the filler the crash runs use to fill the log.
    assert_eq!(osd.precreate(1).unwrap(), 7);
    let olds = [
        pattern(10, 5 * 4096),
        pattern(11, 20_000),
        pattern(12, 100_000),
        pattern(13, 30_000),
        pattern(14, 9000),
        pattern(15, 4096),
    ];
    for (i, old) in olds.iter().enumerate() {
        osd.write(first + i as u64, 0, old, t(1)).unwrap();
    }
    let news = {
        let mut n0 = olds[0].clone();
        model_write(&mut n0, 1000, &pattern(20, 9000));
        let mut n1 = olds[1].clone();
        model_write(&mut n1, 50_000, &pattern(21, 5000));
        let n2 = pattern(22, 5_000_000);
        let mut n3 = olds[3].clone();
        n3.truncate(6000);
        vec![
            Some(n0),
            Some(n1),
            Some(n2),
            Some(n3),
            None,
            Some(olds[5].clone()),
        ]
    };
    let cases = olds
        .into_iter()
        .zip(news)
        .enumerate()
        .map(|(i, (old, new))| Case {
            oid: first + i as u64,
            old: Some(old),
            new,
        })
        .collect();
    drop(osd);
    (dev.image(), cases)
}

/// Runs the workload on `osd`; returns which cases were acknowledged.
fn crash_workload(osd: &Osd, cases: &[Case]) -> Vec<bool> {
    let mut acked = vec![false; cases.len() + 1];
    let ops: Vec<Box<dyn Fn() -> Result<(), OsdError> + '_>> = vec![
        Box::new(|| {
            osd.write(cases[0].oid, 1000, &pattern(20, 9000), t(2))
                .map(drop)
        }),
        Box::new(|| {
            osd.write(cases[1].oid, 50_000, &pattern(21, 5000), t(2))
                .map(drop)
        }),
        Box::new(|| {
            osd.write(cases[2].oid, 0, &pattern(22, 5_000_000), t(2))
                .map(drop)
        }),
        Box::new(|| osd.punch(cases[3].oid, 6000)),
        Box::new(|| osd.destroy(cases[4].oid)),
        Box::new(|| osd.set_mtime(cases[5].oid, t(99))),
        Box::new(|| osd.precreate(3).map(drop)),
    ];
    for (i, op) in ops.iter().enumerate() {
        if op().is_err() {
            break;
        }
        acked[i] = true;
    }
    acked
}

/// Checks a reopened OST: every object old or new, never mixed; acknowledged ones new.
fn check_after_crash(osd: &Osd, cases: &[Case], acked: &[bool], what: &str) {
    for (i, case) in cases.iter().enumerate() {
        let now = match osd.getattr(case.oid) {
            Ok(_) => Some(read_all(osd, case.oid)),
            Err(OsdError::NotFound(_)) => None,
            Err(e) => panic!("{what}: object {}: {e}", case.oid),
        };
        let is_old = now == case.old;
        let is_new = now == case.new;
        assert!(
            is_old || is_new,
            "{what}: object {} is neither old nor new",
            case.oid
        );
        if acked[i] {
            assert!(
                is_new,
                "{what}: acknowledged change to object {} was lost",
                case.oid
            );
        }
    }
    let mtime = osd.getattr(cases[5].oid).unwrap().mtime;
    assert!(mtime == t(1) || mtime == t(99), "{what}");
    if acked[5] {
        assert_eq!(mtime, t(99), "{what}");
    }
    let precreated = (8..11).filter(|oid| osd.getattr(*oid).is_ok()).count();
    assert!(
        precreated == 0 || precreated == 3,
        "{what}: precreate half applied"
    );
    if acked[6] {
        assert_eq!(precreated, 3, "{what}");
    }
    assert_eq!(
        osd.precreate(1).unwrap(),
        if precreated == 3 { 11 } else { 8 },
        "{what}"
    );
    assert_no_leak(osd);
}

#[test]
fn crash_at_every_write_or_flush_leaves_old_or_new_never_mixed() {
    let (base, cases) = crash_base();
    // Runs the workload with power failing at event `arm`, with the log nearly full so that a
    // checkpoint happens in the middle of the workload.
    let run = |arm: Option<u64>| {
        let crash = Arc::new(CrashDev::new(base.clone()));
        let osd = open_with(crash.clone(), Box::new(IdentityCipher));
        let filler = 7;
        let mut i = 0u64;
        while lock(&osd.log).tail < LOG_MIN_BYTES - 3 * 4096 {
            osd.write(filler, i % 8 * 4096, &[1; 10], t(1)).unwrap();
            i += 1;
        }
        let gen_before = lock(&osd.log).generation;
        let start = crash.events_done();
        if let Some(n) = arm {
            crash.arm(n);
        }
        let acked = crash_workload(&osd, &cases);
        let events = crash.events_done() - start;
        let checkpointed = lock(&osd.log).generation > gen_before;
        drop(osd);
        (crash, acked, events, checkpointed)
    };
    let check = |crash: &CrashDev, acked: &[bool], arm: Option<u64>, survivors: Survivors| {
        let image = crash.crash_image(survivors);
        let what = format!("crash at event {arm:?}, {survivors:?}");
        let osd = open_with(
            Arc::new(MemDev::from_image(image)),
            Box::new(IdentityCipher),
        );
        check_after_crash(&osd, &cases, acked, &what);
        // The OST is healthy afterwards.
        osd.write(cases[0].oid, 0, b"healthy", t(5)).unwrap();
    };
    let (crash, acked, total, checkpointed) = run(None);
    check(&crash, &acked, None, Survivors::SyncedOnly);
    assert!(checkpointed, "the workload must cross a checkpoint");
    assert!(acked[..7].iter().all(|a| *a));
    assert!(total > 10, "{total}");
    for n in 0..=total {
        let (crash, acked, _, _) = run(Some(n));
        check(&crash, &acked, Some(n), Survivors::SyncedOnly);
        for seed in 1..=5 {
            check(&crash, &acked, Some(n), Survivors::SomeUnsynced(seed));
        }
    }
}

#[test]
fn crash_during_concurrent_group_commits() {
    let (base, cases) = crash_base();
    for n in 0..24u64 {
        for survivors in [Survivors::SyncedOnly, Survivors::SomeUnsynced(n)] {
            let crash = Arc::new(CrashDev::new(base.clone()));
            let osd = Arc::new(open_with(crash.clone(), Box::new(IdentityCipher)));
            crash.arm(n);
            let writes: Vec<(usize, u64, Vec<u8>)> = vec![
                (0, 1000, pattern(20, 9000)),
                (1, 50_000, pattern(21, 5000)),
                (2, 0, pattern(22, 5_000_000)),
            ];
            let handles: Vec<_> = writes
                .into_iter()
                .map(|(k, off, data)| {
                    let (osd, oid) = (osd.clone(), cases[k].oid);
                    std::thread::spawn(move || osd.write(oid, off, &data, t(2)).is_ok())
                })
                .collect();
            let mut acked: Vec<bool> = handles.into_iter().map(|h| h.join().unwrap()).collect();
            acked.resize(cases.len() + 1, false);
            drop(osd);
            let image = crash.crash_image(survivors);
            let osd = open_with(
                Arc::new(MemDev::from_image(image)),
                Box::new(IdentityCipher),
            );
            let what = format!("concurrent, crash after {n} writes, {survivors:?}");
            // Objects 3..6 were not touched: they must be old.
            for case in &cases[..3] {
                let now = Some(read_all(&osd, case.oid));
                assert!(
                    now == case.old || now == case.new,
                    "{what}: object {}",
                    case.oid
                );
            }
            for (i, case) in cases.iter().enumerate().skip(3) {
                assert_eq!(
                    Some(read_all(&osd, case.oid)),
                    case.old,
                    "{what}: object {i}"
                );
            }
            for (i, a) in acked.iter().enumerate().take(3) {
                if *a {
                    assert_eq!(Some(read_all(&osd, cases[i].oid)), cases[i].new, "{what}");
                }
            }
            assert_no_leak(&osd);
        }
    }
}

#[test]
fn torn_newest_checkpoint_falls_back_to_the_older_one() {
    let dev = mem_dev(32 * MIB, None);
    let osd = open_mem(&dev);
    let oid = osd.precreate(1).unwrap();
    osd.write(oid, 0, b"kept", t(1)).unwrap();
    let log = *lock(&osd.log);
    drop(osd);
    // Simulate a crash while writing the next checkpoint: its header lands, its body is torn.
    let geo = Geometry::for_device(32 * MIB, None).unwrap();
    let next = log.generation + 1;
    let idx = crate::index::Index::default();
    let image = crate::checkpoint::encode(&idx, next, log.next_seq, &geo).unwrap();
    let slot = usize::try_from(geo.ckpt_slot_offset(next)).unwrap();
    let mut bytes = dev.image();
    bytes[slot..slot + 4096].copy_from_slice(&image[..4096]);
    bytes[slot + 4096] ^= 0xff;
    let osd = open_with(
        Arc::new(MemDev::from_image(bytes)),
        Box::new(IdentityCipher),
    );
    assert_eq!(&read_all(&osd, oid)[..], b"kept");
}

#[test]
fn damaged_complete_checkpoint_is_corrupt_not_a_silent_rollback() {
    let dev = mem_dev(32 * MIB, None);
    let osd = open_mem(&dev);
    let oid = osd.precreate(1).unwrap();
    osd.write(oid, 0, b"after the checkpoint", t(1)).unwrap();
    let generation = lock(&osd.log).generation;
    drop(osd);
    let geo = Geometry::for_device(32 * MIB, None).unwrap();
    // Bit rot in the body of the newest checkpoint, whose log already has groups.
    dev.corrupt_byte(geo.ckpt_slot_offset(generation) + 4096 + 3);
    let err = Osd::open_dev(Box::new(dev.clone()), Box::new(IdentityCipher)).unwrap_err();
    assert!(matches!(err, OsdError::Corrupt(_)), "{err}");
}

#[test]
fn corrupt_bytes_in_metadata_regions_never_panic() {
    let dev = mem_dev(32 * MIB, Some(LOG_MIN_BYTES));
    let osd = open_mem(&dev);
    let first = osd.precreate(20).unwrap();
    for oid in first..first + 20 {
        osd.write(oid, oid * 1000, &pattern(oid, 5000), t(1))
            .unwrap();
    }
    drop(osd);
    let geo = Geometry::for_device(32 * MIB, Some(LOG_MIN_BYTES)).unwrap();
    let image = dev.image();
    let mut rng = Rng(42);
    for _ in 0..60 {
        let mut bad = image.clone();
        let region = match rng.below(3) {
            0 => geo.ckpt_offset[0],
            1 => geo.ckpt_offset[1],
            _ => geo.log_offset,
        };
        for _ in 0..4 {
            let at = usize::try_from(region + rng.below(8192)).unwrap();
            bad[at] ^= u8::try_from(rng.below(255) + 1).unwrap();
        }
        let dev = Arc::new(MemDev::from_image(bad));
        // Either it opens (damage in unused bytes or a fallback) or it says what is wrong.
        if let Ok(osd) = Osd::open_dev(Box::new(dev), Box::new(IdentityCipher)) {
            let _ = osd.list(0, 100);
        }
    }
}

#[test]
fn data_region_corruption_in_memory_is_detected() {
    let dev = mem_dev(32 * MIB, None);
    let osd = open_mem(&dev);
    let oid = osd.precreate(1).unwrap();
    osd.write(oid, 0, &pattern(1, 50_000), t(1)).unwrap();
    let at = osd.debug_block_offset(oid, 40_000).unwrap();
    dev.corrupt_byte(at);
    let err = osd.read(oid, 39_000, 2000).unwrap_err();
    assert!(
        matches!(
            err,
            OsdError::Checksum {
                oid: 1,
                offset: 36_864,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(
        &osd.read(oid, 0, 100).unwrap()[..],
        &pattern(1, 50_000)[..100]
    );
}

// ---------------------------------------------------------------------------------------------
// fallocate: preallocated blocks, writes in place into them, punch hole

fn allocated(osd: &Osd, oid: ObjId) -> u64 {
    osd.getattr(oid).unwrap().allocated_bytes
}

#[test]
fn fallocate_allocates_ahead_and_reads_zeros() {
    let dev = mem_dev(32 * MIB, None);
    let osd = open_mem(&dev);
    // Stale bytes of a destroyed object are in the blocks the fallocate takes next.
    let old = osd.precreate(1).unwrap();
    osd.write(old, 0, &[0xee; 1 << 20], t(1)).unwrap();
    osd.destroy(old).unwrap();
    let oid = osd.precreate(1).unwrap();
    let free = osd.statfs().free_bytes;
    let size = osd.fallocate(oid, 100, MIB, false, t(5)).unwrap();
    assert_eq!(size, MIB + 100);
    let attr = osd.getattr(oid).unwrap();
    assert_eq!(attr.allocated_bytes, MIB + 4096, "blocks 0..=256");
    assert_eq!(attr.mtime, t(5), "the size grew: mtime moves");
    assert_eq!(osd.statfs().free_bytes, free - MIB - 4096);
    assert!(
        read_all(&osd, oid).iter().all(|&b| b == 0),
        "preallocated blocks read as zeros, never stale data"
    );
    // Again: nothing left to allocate, size and mtime stay.
    assert_eq!(osd.fallocate(oid, 0, 4096, false, t(9)).unwrap(), MIB + 100);
    assert_eq!(allocated(&osd, oid), MIB + 4096);
    assert_eq!(osd.getattr(oid).unwrap().mtime, t(5));
    assert_no_leak(&osd);
    drop(osd);
    let osd = open_mem(&dev);
    assert_eq!(osd.getattr(oid).unwrap().size, MIB + 100);
    assert_eq!(allocated(&osd, oid), MIB + 4096);
    assert!(read_all(&osd, oid).iter().all(|&b| b == 0));
    assert_no_leak(&osd);
}

#[test]
fn fallocate_keep_size_leaves_size_and_existing_blocks() {
    let dev = mem_dev(32 * MIB, None);
    let osd = open_mem(&dev);
    let oid = osd.precreate(1).unwrap();
    let data = pattern(1, 10_000);
    osd.write(oid, 0, &data, t(3)).unwrap();
    let block0 = osd.debug_block_offset(oid, 0).unwrap();
    let size = osd.fallocate(oid, 0, 64 * 4096, true, t(9)).unwrap();
    assert_eq!(size, 10_000, "FALLOC_FL_KEEP_SIZE");
    let attr = osd.getattr(oid).unwrap();
    assert_eq!((attr.allocated_bytes, attr.mtime), (64 * 4096, t(3)));
    assert_eq!(
        osd.debug_block_offset(oid, 0),
        Some(block0),
        "written blocks kept"
    );
    assert_eq!(read_all(&osd, oid), data);
    // Blocks past the size survive a reopen (a checkpoint) and a write past the size.
    drop(osd);
    let osd = open_mem(&dev);
    assert_eq!(allocated(&osd, oid), 64 * 4096);
    osd.write(oid, 100_000, b"far", t(4)).unwrap();
    assert_eq!(allocated(&osd, oid), 64 * 4096, "written in place");
    let mut model = data.clone();
    model_write(&mut model, 100_000, b"far");
    assert_eq!(read_all(&osd, oid), model);
    // A truncate frees the preallocated blocks past the new size.
    osd.punch(oid, 4096).unwrap();
    assert_eq!(allocated(&osd, oid), 4096);
    assert_no_leak(&osd);
}

#[test]
fn writes_into_preallocated_blocks_succeed_on_a_full_ost() {
    let dev = mem_dev(32 * MIB, None);
    let osd = open_mem(&dev);
    let a = osd.precreate(2).unwrap();
    let b = a + 1;
    osd.fallocate(a, 0, 4 * MIB, true, t(1)).unwrap();
    // Fill the OST with another object, to the last block writes may take.
    let mut at = 0u64;
    for len in [1 << 20, 4096] {
        while osd.write(b, at, &pattern(at, len), t(1)).is_ok() {
            at += len as u64;
        }
    }
    assert_eq!(osd.statfs().free_bytes, 0);
    assert!(matches!(
        osd.write(b, 0, b"x", t(1)),
        Err(OsdError::NoSpace)
    ));
    // Every first write into the preallocated range goes in place: partial blocks, whole
    // blocks, 1 MiB at once, at the end of the range.
    let mut model = Vec::new();
    let writes: [(u64, usize); 5] = [
        (10, 100),
        (4096, 8192),
        (MIB, 1 << 20),
        (40_000, 5000),
        (4 * MIB - 3, 3),
    ];
    for (i, (offset, len)) in writes.into_iter().enumerate() {
        let data = pattern(i as u64, len);
        osd.write(a, offset, &data, t(2)).unwrap();
        model_write(&mut model, usize::try_from(offset).unwrap(), &data);
    }
    assert_eq!(read_all(&osd, a), model);
    assert_eq!(allocated(&osd, a), 4 * MIB);
    // An overwrite of a written block is copy-on-write again: no space for it.
    assert!(matches!(
        osd.write(a, 10, b"again", t(3)),
        Err(OsdError::NoSpace)
    ));
    // Nor for writes outside the range.
    assert!(matches!(
        osd.write(a, 4 * MIB, b"x", t(3)),
        Err(OsdError::NoSpace)
    ));
    assert_no_leak(&osd);
    drop(osd);
    let osd = open_mem(&dev);
    assert_eq!(read_all(&osd, a), model);
    assert_no_leak(&osd);
}

#[test]
fn fallocate_without_enough_space_allocates_nothing() {
    let dev = mem_dev(32 * MIB, None);
    let osd = open_mem(&dev);
    let oid = osd.precreate(1).unwrap();
    osd.write(oid, 0, b"data", t(1)).unwrap();
    let before = (osd.statfs(), osd.getattr(oid).unwrap());
    // Block 0 is allocated already: one block more than the free ones past it.
    let too_big = before.0.free_bytes + 2 * 4096;
    for keep_size in [false, true] {
        let err = osd.fallocate(oid, 0, too_big, keep_size, t(2)).unwrap_err();
        assert!(matches!(err, OsdError::NoSpace), "{err}");
        assert_eq!(err.errno(), Errno::ENOSPC);
    }
    assert!(matches!(
        osd.fallocate_fits(oid, 0, too_big),
        Err(OsdError::NoSpace)
    ));
    assert_eq!((osd.statfs(), osd.getattr(oid).unwrap()), before);
    // What is already allocated does not count: the whole free space past block 0 fits.
    osd.fallocate_fits(oid, 0, before.0.free_bytes + 4096)
        .unwrap();
    osd.fallocate(oid, 0, before.0.free_bytes + 4096, true, t(2))
        .unwrap();
    assert_eq!(osd.statfs().free_bytes, 0);
    assert_eq!(
        osd.fallocate(oid, 0, 1, false, t(3)).unwrap(),
        4,
        "nothing to do"
    );
    // Bad arguments.
    assert!(matches!(
        osd.fallocate(oid, 0, 0, false, t(1)),
        Err(OsdError::Invalid(_))
    ));
    assert!(matches!(
        osd.fallocate(oid, MAX_OBJECT_BYTES, 1, false, t(1)),
        Err(OsdError::TooBig { .. })
    ));
    assert!(matches!(
        osd.fallocate(99, 0, 1, false, t(1)),
        Err(OsdError::NotFound(99))
    ));
    assert!(matches!(
        osd.punch_hole(oid, 0, 0, t(1)),
        Err(OsdError::Invalid(_))
    ));
    assert_no_leak(&osd);
}

#[test]
fn a_large_fragmented_fallocate_takes_several_records() {
    let dev = mem_dev(64 * MIB, None);
    let osd = open_mem(&dev);
    let oid = osd.precreate(1).unwrap();
    // Every other block written: the holes between are more extents than one record holds.
    let n = u64::from(PREALLOC_RECORD_MAX_EXTENTS) + 100;
    for i in 0..n {
        osd.write(oid, 2 * i * 4096, &[1], t(1)).unwrap();
    }
    let size = osd.fallocate(oid, 0, 2 * n * 4096, false, t(2)).unwrap();
    assert_eq!(size, 2 * n * 4096);
    assert_eq!(allocated(&osd, oid), 2 * n * 4096);
    drop(osd);
    let osd = open_mem(&dev);
    assert_eq!(allocated(&osd, oid), 2 * n * 4096);
    let got = read_all(&osd, oid);
    for (i, byte) in got.iter().enumerate() {
        let want = u8::from(i % 8192 == 0);
        assert_eq!(*byte, want, "byte {i}");
    }
    assert_no_leak(&osd);
}

#[test]
fn punch_hole_frees_whole_blocks_and_zeroes_the_edges() {
    let dev = mem_dev(32 * MIB, None);
    let osd = open_mem(&dev);
    let oid = osd.precreate(1).unwrap();
    let data = pattern(7, 6 * 4096);
    osd.write(oid, 0, &data, t(1)).unwrap();
    // Blocks 1 and 2 wholly inside; 0 and 3 partly.
    osd.punch_hole(oid, 1000, 3 * 4096 + 500, t(5)).unwrap();
    let mut model = data.clone();
    model[1000..1000 + 3 * 4096 + 500].fill(0);
    let attr = osd.getattr(oid).unwrap();
    assert_eq!((attr.size, attr.allocated_bytes), (6 * 4096, 4 * 4096));
    assert_eq!(attr.mtime, t(5));
    assert_eq!(read_all(&osd, oid), model);
    // Inside one block; past the size (preallocated blocks there are freed too).
    osd.punch_hole(oid, 5 * 4096 + 10, 20, t(6)).unwrap();
    model[5 * 4096 + 10..5 * 4096 + 30].fill(0);
    osd.fallocate(oid, 6 * 4096, 10 * 4096, true, t(6)).unwrap();
    assert_eq!(allocated(&osd, oid), 14 * 4096);
    osd.punch_hole(oid, 5 * 4096, 1 << 30, t(7)).unwrap();
    model[5 * 4096..].fill(0);
    let attr = osd.getattr(oid).unwrap();
    assert_eq!((attr.size, attr.allocated_bytes), (6 * 4096, 3 * 4096));
    assert_eq!(read_all(&osd, oid), model);
    // A hole over preallocated blocks, and over a hole.
    osd.fallocate(oid, 0, 6 * 4096, true, t(7)).unwrap();
    osd.punch_hole(oid, 4096, 4096, t(7)).unwrap();
    osd.punch_hole(oid, 4096, 4096, t(7)).unwrap();
    assert_eq!(allocated(&osd, oid), 5 * 4096);
    assert_no_leak(&osd);
    drop(osd);
    let osd = open_mem(&dev);
    assert_eq!(read_all(&osd, oid), model);
    assert_eq!(allocated(&osd, oid), 5 * 4096);
    assert_no_leak(&osd);
}

#[test]
fn crash_before_an_in_place_write_commits_reads_zeros() {
    // Base: the blocks hold stale bytes of a destroyed object, now preallocated by `oid`.
    let dev = mem_dev(32 * MIB, None);
    let osd = open_mem(&dev);
    let old = osd.precreate(1).unwrap();
    osd.write(old, 0, &[0xee; 1 << 20], t(1)).unwrap();
    osd.destroy(old).unwrap();
    let oid = osd.precreate(1).unwrap();
    osd.fallocate(oid, 0, 64 * 4096, false, t(1)).unwrap();
    drop(osd);
    let base = dev.image();
    let new = pattern(3, 10 * 4096 + 5);
    let run = |arm: Option<u64>| {
        let crash = Arc::new(CrashDev::new(base.clone()));
        let osd = open_with(crash.clone(), Box::new(IdentityCipher));
        let start = crash.events_done();
        if let Some(n) = arm {
            crash.arm(n);
        }
        let acked = osd.write(oid, 3000, &new, t(2)).is_ok();
        let events = crash.events_done() - start;
        drop(osd);
        (crash, acked, events)
    };
    let (_, acked, total) = run(None);
    assert!(acked && total >= 3, "{total} events");
    let mut written = vec![0u8; 64 * 4096];
    model_write(&mut written, 3000, &new);
    for n in 0..total {
        for survivors in [
            Survivors::SyncedOnly,
            Survivors::SomeUnsynced(n),
            Survivors::SomeUnsynced(n + 100),
        ] {
            let (crash, acked, _) = run(Some(n));
            let what = format!("crash at event {n}, {survivors:?}");
            let osd = open_with(
                Arc::new(MemDev::from_image(crash.crash_image(survivors))),
                Box::new(IdentityCipher),
            );
            let now = read_all(&osd, oid);
            let zeros = now.iter().all(|&b| b == 0);
            assert!(
                zeros || now == written,
                "{what}: neither zeros nor the write"
            );
            if acked {
                assert_eq!(now, written, "{what}: acknowledged write lost");
            }
            assert_eq!(allocated(&osd, oid), 64 * 4096, "{what}");
            assert_no_leak(&osd);
            // Still preallocated where the write did not commit: it goes in place again.
            let free = osd.statfs().free_bytes;
            osd.write(oid, 3000, &new, t(3)).unwrap();
            assert_eq!(osd.statfs().free_bytes, free, "{what}");
            assert_eq!(read_all(&osd, oid), written, "{what}");
        }
    }
}

#[test]
fn random_fallocates_match_a_model_and_survive_reopen() {
    let dev = mem_dev(64 * MIB, Some(LOG_MIN_BYTES));
    let osd = open_mem(&dev);
    let first = osd.precreate(3).unwrap();
    let oids: Vec<ObjId> = (first..first + 3).collect();
    let mut models: Vec<Vec<u8>> = vec![Vec::new(); 3];
    let seed = 0xfa11_0c8e_u64;
    let mut rng = Rng(seed);
    for step in 0..500u64 {
        let k = usize::try_from(rng.below(3)).unwrap();
        let (oid, m) = (oids[k], &mut models[k]);
        let offset = rng.below(400_000);
        let len = 1 + rng.below(100_000);
        let end = usize::try_from(offset + len).unwrap();
        let what = format!("seed {seed:#x} step {step}");
        match rng.below(10) {
            0..=3 => {
                let data = pattern(step, usize::try_from(len % 30_000 + 1).unwrap());
                osd.write(oid, offset, &data, t(1)).unwrap();
                model_write(m, usize::try_from(offset).unwrap(), &data);
            }
            4 | 5 => {
                let keep_size = rng.below(2) == 0;
                let size = osd.fallocate(oid, offset, len, keep_size, t(1)).unwrap();
                if !keep_size && m.len() < end {
                    m.resize(end, 0);
                }
                assert_eq!(size, m.len() as u64, "{what}");
                // Nothing in the range is left to allocate: a write inside takes no space.
                let free = osd.statfs().free_bytes;
                let inner = pattern(step + 1, usize::try_from(len.min(5000)).unwrap());
                osd.write(oid, offset, &inner, t(1)).unwrap();
                model_write(m, usize::try_from(offset).unwrap(), &inner);
                assert_eq!(osd.statfs().free_bytes, free, "{what}: in place");
            }
            6 => {
                osd.punch_hole(oid, offset, len, t(1)).unwrap();
                let stop = end.min(m.len());
                let start = usize::try_from(offset).unwrap().min(stop);
                m[start..stop].fill(0);
            }
            7 => {
                let size = rng.below(450_000);
                osd.punch(oid, size).unwrap();
                m.resize(usize::try_from(size).unwrap(), 0);
            }
            _ => {
                let len = u32::try_from(len).unwrap();
                let got = osd.read(oid, offset, len).unwrap();
                let start = usize::try_from(offset).unwrap().min(m.len());
                let stop = end.min(m.len());
                assert_eq!(&got[..], &m[start..stop], "{what}");
            }
        }
        assert_eq!(osd.getattr(oid).unwrap().size, m.len() as u64, "{what}");
    }
    assert_no_leak(&osd);
    drop(osd);
    let osd = open_mem(&dev);
    for (k, oid) in oids.iter().enumerate() {
        assert_eq!(read_all(&osd, *oid), models[k], "object {oid} after reopen");
    }
    assert_no_leak(&osd);
}

/// Runs a read started by `Osd::start_read` to completion on this thread, reaping whenever
/// the OSD's read eventfd fires.
fn finish_read(osd: &Osd, pending: crate::PendingRead<'_>) -> Result<bytes::Bytes, OsdError> {
    finish_read_data(osd, pending).map(|r| r.data)
}

/// [`finish_read`], with the piece crcs.
fn finish_read_data(
    osd: &Osd,
    pending: crate::PendingRead<'_>,
) -> Result<crate::ReadData, OsdError> {
    let fd = osd.read_event_fd().expect("started reads need a read ring");
    crate::dev::uring_reads::block_on_reaping(
        fd,
        || {
            osd.reap_reads();
        },
        pending,
    )
}

#[test]
fn reads_started_without_blocking_return_what_blocking_reads_do() {
    let dir = tempfile::tempdir().unwrap();
    let path = block_file(&dir, 32 * MIB);
    let osd = Osd::open(&path).unwrap();
    if osd.read_event_fd().is_none() {
        // No io_uring here: `start_read` never starts one (checked below too).
        assert!(osd.start_read(1, 0, 4096).unwrap().is_none());
        return;
    }
    // A fragmented object: data, a partial overwrite, a hole, preallocated blocks, and a
    // 2 MiB run (more than one SQE).
    let oid = osd.precreate(1).unwrap();
    osd.write(oid, 0, &pattern(1, 5 * 4096 + 100), t(1))
        .unwrap();
    osd.write(oid, 2 * 4096 + 5, &pattern(2, 10), t(2)).unwrap();
    osd.write(oid, 9 * 4096 + 7, &pattern(3, 3000), t(3))
        .unwrap();
    osd.fallocate(oid, 12 * 4096, 3 * 4096, false, t(4))
        .unwrap();
    osd.write(oid, 16 * 4096, &pattern(4, 2 << 20), t(5))
        .unwrap();
    let size = osd.getattr(oid).unwrap().size;
    let cases = [
        (0, 4096),
        (1, 10),
        (4096 * 2, 4096),
        (100, 5 * 4096),
        (5 * 4096, 4096 * 5),
        (11 * 4096, 6 * 4096),
        (0, u32::try_from(size).unwrap()),
        (16 * 4096 + 3, 1 << 20),
        (size - 1, 4096),
        (size, 4096),
        (size + 4096, 1),
        (7, 0),
    ];
    for (offset, len) in cases {
        let want = osd.read(oid, offset, len).unwrap();
        let pending = osd
            .start_read(oid, offset, len)
            .unwrap()
            .expect("ring has room");
        let got = finish_read_data(&osd, pending).unwrap();
        assert_eq!(got.data, want, "read of {len} bytes at {offset}");
        // Reads from a block boundary come with the crcs of their pieces (holes and
        // preallocated blocks included), the others without.
        let pieces =
            (offset % 4096 == 0 && !want.is_empty()).then(|| sheen_wire::piece_crc::pieces(&want));
        assert_eq!(got.piece_crcs, pieces, "crcs of {len} bytes at {offset}");
    }
    // Several in flight at once, completed out of order.
    let many: Vec<_> = (0..16u64)
        .map(|i| osd.start_read(oid, i * 4096, 8192).unwrap().unwrap())
        .collect();
    for (i, p) in many.into_iter().enumerate().rev() {
        let at = u64::try_from(i).unwrap() * 4096;
        assert_eq!(
            finish_read(&osd, p).unwrap(),
            osd.read(oid, at, 8192).unwrap()
        );
    }
    // What cannot start without blocking says so; a missing object is an error.
    let held = osd
        .ranges
        .lock(oid, 2, 3, crate::rangelock::Mode::Exclusive);
    assert!(
        osd.start_read(oid, 4096, 8192).unwrap().is_none(),
        "a write holds it"
    );
    assert!(
        osd.start_read(oid, 4 * 4096, 4096).unwrap().is_some(),
        "disjoint range"
    );
    drop(held);
    assert!(osd
        .start_read(oid, 0, ASYNC_READ_MAX_BYTES + 4096)
        .unwrap()
        .is_none());
    assert!(matches!(
        osd.start_read(999, 0, 4096),
        Err(OsdError::NotFound(999))
    ));
    // A started read that is dropped leaves nothing behind for the next ones.
    drop(osd.start_read(oid, 0, 1 << 20).unwrap().unwrap());
    let again = osd.start_read(oid, 0, 4096).unwrap().unwrap();
    assert_eq!(
        finish_read(&osd, again).unwrap(),
        osd.read(oid, 0, 4096).unwrap()
    );
    let at = osd.debug_block_offset(oid, 4096 + 10).unwrap();
    drop(osd);
    // A flipped bit on disk is a checksum error here too, never data.
    flip_byte(&path, at);
    let osd = Osd::open(&path).unwrap();
    let pending = osd.start_read(oid, 0, 3 * 4096).unwrap().unwrap();
    match finish_read(&osd, pending) {
        Err(OsdError::Checksum { oid: o, offset, .. }) => assert_eq!((o, offset), (oid, 4096)),
        other => panic!("expected a checksum error, got {other:?}"),
    }
    let pending = osd.start_read(oid, 2 * 4096, 4096).unwrap().unwrap();
    assert_eq!(
        finish_read(&osd, pending).unwrap(),
        osd.read(oid, 2 * 4096, 4096).unwrap()
    );
}

#[test]
fn writes_given_piece_crcs_store_them_for_whole_blocks() {
    let dev = mem_dev(32 * MIB, None);
    let osd = open_mem(&dev);
    let oid = osd.precreate(1).unwrap();
    let data = pattern(9, 3 * 4096);
    let crcs = sheen_wire::piece_crc::pieces(&data);
    osd.write_with_crcs(oid, 4096, &data, Some(&crcs), t(1))
        .unwrap();
    assert_eq!(&osd.read(oid, 4096, 3 * 4096).unwrap()[..], &data[..]);
    // The crcs given are what is stored: a wrong one makes its block a checksum error (so
    // they are used, and a bad one is caught on the first read, never served).
    let mut wrong = crcs.clone();
    wrong[1] ^= 1;
    osd.write_with_crcs(oid, 0, &data, Some(&wrong), t(2))
        .unwrap();
    assert_eq!(&osd.read(oid, 0, 4096).unwrap()[..], &data[..4096]);
    assert!(matches!(
        osd.read(oid, 4096, 4096),
        Err(OsdError::Checksum { offset: 4096, .. })
    ));
    // Not whole blocks, or crcs of another length: the OSD sums the data itself.
    let other = osd.precreate(1).unwrap();
    osd.write_with_crcs(other, 100, &data[..5000], Some(&wrong), t(3))
        .unwrap();
    osd.write_with_crcs(other, 8192, &data[..4096], Some(&wrong[..2]), t(3))
        .unwrap();
    let mut model = vec![0u8; 3 * 4096];
    model[100..5100].copy_from_slice(&data[..5000]);
    model[8192..].copy_from_slice(&data[..4096]);
    assert_eq!(read_all(&osd, other), model);
    assert_no_leak(&osd);
}
