//! Regular files: read/write errors, truncate up and down across stripes, sparse files,
//! O_APPEND (also from two processes at once), O_EXCL, O_TRUNC, fsync/fdatasync, fallocate,
//! timestamps (atime/mtime/ctime per call, utimensat with UTIME_NOW/UTIME_OMIT), atime on
//! read (relatime, O_NOATIME, `noatime` and read-only mounts), mmap, O_DIRECT.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sheen_client::{Client, ClientConfig, MountSpec};
use sheen_tests::pattern;

use crate::sys::*;
use crate::NOBODY;

pub const CASES: &[crate::Case] = &[
    ("read_write_errors", read_write_errors),
    ("truncate_down_and_up", truncate_down_and_up),
    ("sparse", sparse),
    ("o_append", o_append),
    ("o_append_two_processes", o_append_two_processes),
    ("o_excl_o_trunc", o_excl_o_trunc),
    ("fsync", fsync),
    ("fallocate", fallocate),
    (
        "timestamps_on_create_and_write",
        timestamps_on_create_and_write,
    ),
    ("timestamps_on_metadata_calls", timestamps_on_metadata_calls),
    ("utimensat_now_omit", utimensat_now_omit),
    ("mmap_read_and_private", mmap_read_and_private),
    ("as_nobody", as_nobody),
    ("huge_offsets", huge_offsets),
    ("seek_data_hole", seek_data_hole),
    ("mmap_shared_write", mmap_shared_write),
    ("o_noatime", o_noatime),
    ("atime_on_read", atime_on_read),
    ("o_noatime_read", o_noatime_read),
    ("statfs", statfs),
    ("etxtbsy", etxtbsy),
    ("truncate_moves_mtime", truncate_moves_mtime),
    ("unlinked_while_open", unlinked_while_open),
    ("o_direct", o_direct),
];

const MIB: usize = 1 << 20;

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        .try_into()
        .unwrap()
}

/// (sec, nsec) of a stat's atime, mtime, ctime.
fn times(st: &libc::stat) -> [(i64, i64); 3] {
    [
        (st.st_atime, st.st_atime_nsec),
        (st.st_mtime, st.st_mtime_nsec),
        (st.st_ctime, st.st_ctime_nsec),
    ]
}

/// Waits long enough that a new timestamp differs from one taken before.
fn tick() {
    std::thread::sleep(Duration::from_millis(20));
}

fn read_write_errors(d: &Path) {
    let f = d.join("f");
    drop(ok(creat(&f, 0o644), "create"));
    let ro = ok(open(&f, libc::O_RDONLY, 0), "open ro");
    fails(ro.write(b"x"), libc::EBADF, "write on O_RDONLY");
    fails(ro.ftruncate(0), libc::EINVAL, "ftruncate on O_RDONLY");
    let wo = ok(open(&f, libc::O_WRONLY, 0), "open wo");
    fails(wo.read(1), libc::EBADF, "read on O_WRONLY");
    fails(
        wo.pwrite(b"x", -1),
        libc::EINVAL,
        "pwrite at negative offset",
    );
    fails(ro.pread(1, -1), libc::EINVAL, "pread at negative offset");
    assert_eq!(ok(wo.write(b"hello"), "write"), 5);
    assert_eq!(ok(ro.read(100), "read"), b"hello");
    assert_eq!(ok(ro.read(100), "read at EOF"), b"");
    assert_eq!(ok(ro.pread(100, 1000), "pread past EOF"), b"");
    fails(Fd(-1).read(1), libc::EBADF, "read on a bad fd");
    std::mem::forget(Fd(-1));
}

fn truncate_down_and_up(d: &Path) {
    let f = d.join("f");
    let fd = ok(creat(&f, 0o644), "create");
    // Stripes: two OSTs, default 1 MiB stripes; write 3.5 MiB so every object has data.
    let data = pattern(1, 3 * MIB + MIB / 2);
    assert_eq!(ok(fd.write(&data), "write"), data.len());
    ok(fd.ftruncate(MIB as i64 + 100), "ftruncate down");
    assert_eq!(ok(fd.fstat(), "fstat").st_size, MIB as i64 + 100);
    ok(truncate(&f, 3 * MIB as i64), "truncate up");
    assert_eq!(ok(stat(&f), "stat").st_size, 3 * MIB as i64);
    let back = ok(fd.pread(4 * MIB, 0), "read back");
    assert_eq!(back.len(), 3 * MIB);
    assert!(back[..MIB + 100] == data[..MIB + 100], "kept part differs");
    assert!(
        back[MIB + 100..].iter().all(|b| *b == 0),
        "grown part not zeros"
    );
    ok(fd.ftruncate(0), "truncate to 0");
    assert_eq!(ok(fd.pread(10, 0), "read empty"), b"");
    fails(fd.ftruncate(-1), libc::EINVAL, "negative length");
    drop(fd);
    // What a fresh open sees (size from the MDS).
    assert_eq!(ok(stat(&f), "stat").st_size, 0);
}

fn sparse(d: &Path) {
    let f = d.join("f");
    let fd = ok(creat(&f, 0o644), "create");
    let off = 10 * MIB as i64 + 7;
    ok(fd.pwrite(b"end", off), "write far");
    ok(fd.pwrite(b"mid", 3 * MIB as i64), "write middle");
    drop(fd);
    let fd = ok(open(&f, libc::O_RDONLY, 0), "reopen");
    assert_eq!(ok(fd.fstat(), "fstat").st_size, off + 3);
    let all = ok(fd.pread(11 * MIB, 0), "read all");
    assert_eq!(all.len() as i64, off + 3);
    let mid = 3 * MIB;
    assert_eq!(&all[mid..mid + 3], b"mid");
    assert_eq!(&all[all.len() - 3..], b"end");
    let zeros = all[..mid].iter().chain(&all[mid + 3..all.len() - 3]);
    assert!(zeros.copied().all(|b| b == 0), "holes do not read as zeros");
}

/// `len` bytes at a 4 KiB-aligned address inside `backing` (O_DIRECT wants aligned buffers).
fn aligned(backing: &mut Vec<u8>, len: usize) -> &mut [u8] {
    backing.resize(len + 4096, 0);
    let at = backing.as_ptr().align_offset(4096);
    &mut backing[at..at + len]
}

/// O_DIRECT writes and reads larger than one FUSE request (the kernel sends the pieces at
/// once, FUSE_ASYNC_DIO) and across stripes, overwrites in the middle, reads past the end,
/// and buffered reads of what O_DIRECT wrote.
fn o_direct(d: &Path) {
    let f = d.join("f");
    let flags = libc::O_CREAT | libc::O_RDWR | libc::O_DIRECT;
    let fd = match open(&f, flags, 0o644) {
        Ok(fd) => fd,
        Err(e) => panic!("open O_DIRECT: {}", name(e)),
    };
    let len = 6 * MIB;
    let want = pattern(7, len);
    let mut out = Vec::new();
    let buf = aligned(&mut out, len);
    buf.copy_from_slice(&want);
    assert_eq!(ok(fd.pwrite(buf, 0), "O_DIRECT write of 6 MiB"), len);
    // An overwrite across a stripe boundary, 4 KiB-aligned.
    let mid = MIB + 512 * 1024 - 8192;
    let patch = pattern(8, 64 * 1024);
    let mut out2 = Vec::new();
    let pbuf = aligned(&mut out2, patch.len());
    pbuf.copy_from_slice(&patch);
    ok(fd.pwrite(pbuf, mid as i64), "O_DIRECT overwrite");
    let mut model = want.clone();
    model[mid..mid + patch.len()].copy_from_slice(&patch);
    // One O_DIRECT read of everything and more: short at the end of file.
    let mut inb = Vec::new();
    let rbuf = aligned(&mut inb, len + MIB);
    let n = ok(fd.pread_into(rbuf, 0), "O_DIRECT read");
    assert_eq!(n, len, "O_DIRECT read past the end is short");
    assert!(rbuf[..n] == model[..], "O_DIRECT read back differs");
    assert_eq!(
        ok(fd.pread_into(&mut rbuf[..4096], len as i64), "read at end"),
        0
    );
    assert_eq!(ok(fd.fstat(), "fstat").st_size, len as i64);
    drop(fd);
    // Buffered, from another descriptor.
    let fd = ok(open(&f, libc::O_RDONLY, 0), "reopen");
    assert!(
        ok(fd.pread(len, 0), "buffered read") == model,
        "buffered read differs"
    );
}

fn o_append(d: &Path) {
    let f = d.join("f");
    let flags = libc::O_CREAT | libc::O_RDWR | libc::O_APPEND;
    let fd = ok(open(&f, flags, 0o644), "open");
    ok(fd.write(b"abc"), "write");
    ok(fd.lseek(0, libc::SEEK_SET), "seek");
    ok(fd.write(b"def"), "append after seek");
    // pwrite on an O_APPEND fd appends too (Linux).
    ok(fd.pwrite(b"ghi", 0), "pwrite");
    assert_eq!(ok(fd.pread(100, 0), "read"), b"abcdefghi");
    // Another descriptor's write in between is not overwritten.
    let other = ok(open(&f, libc::O_WRONLY, 0), "open");
    ok(other.pwrite(b"XYZ", 9), "write at end");
    ok(fd.write(b"jkl"), "append");
    assert_eq!(ok(fd.pread(100, 0), "read"), b"abcdefghiXYZjkl");
}

fn o_append_two_processes(d: &Path) {
    const N: usize = 100;
    const REC: usize = 64;
    let f = &d.join("log");
    drop(ok(creat(f, 0o666), "create"));
    ok(chmod(f, 0o666), "chmod");
    let writer = |tag: u8| {
        move || {
            let fd = open(f, libc::O_WRONLY | libc::O_APPEND, 0)?;
            for i in 0..N {
                let mut rec = format!("{}{i:05}", tag as char).into_bytes();
                rec.resize(REC - 1, tag);
                rec.push(b'\n');
                ensure(fd.write(&rec)? == REC)?;
            }
            Ok(())
        }
    };
    // Both writers at once: a child each.
    let (wa, wb) = (writer(b'a'), writer(b'b'));
    let (ra, rb) = std::thread::scope(|s| {
        let h = s.spawn(|| as_user(0, wa));
        let rb = as_user(NOBODY, wb);
        (h.join().unwrap(), rb)
    });
    ok(ra, "writer a");
    ok(rb, "writer b");
    let data = std::fs::read(f).unwrap();
    assert_eq!(data.len(), 2 * N * REC, "appends lost or overlapped");
    let (mut na, mut nb) = (0, 0);
    for rec in data.chunks(REC) {
        let tag = rec[0];
        assert!(
            rec[6..REC - 1].iter().all(|b| *b == tag),
            "torn record {rec:?}"
        );
        match tag {
            b'a' => na += 1,
            b'b' => nb += 1,
            _ => panic!("bad record {rec:?}"),
        }
    }
    assert_eq!((na, nb), (N, N));
}

fn o_excl_o_trunc(d: &Path) {
    let f = d.join("f");
    let excl = libc::O_CREAT | libc::O_EXCL | libc::O_WRONLY;
    let fd = ok(open(&f, excl, 0o640), "O_EXCL create");
    assert_eq!(ok(fd.fstat(), "fstat").st_mode & 0o7777, 0o640);
    ok(fd.write(&[7u8; 5000]), "write");
    drop(fd);
    fails(open(&f, excl, 0o640), libc::EEXIST, "O_EXCL again");
    let before = ok(stat(&f), "stat");
    tick();
    let fd = ok(open(&f, libc::O_WRONLY | libc::O_TRUNC, 0), "O_TRUNC");
    let after = ok(fd.fstat(), "fstat");
    assert_eq!(after.st_size, 0);
    assert!(
        times(&after)[1] > times(&before)[1],
        "O_TRUNC did not update mtime"
    );
    assert!(
        times(&after)[2] > times(&before)[2],
        "O_TRUNC did not update ctime"
    );
    drop(fd);
    assert_eq!(ok(stat(&f), "stat").st_size, 0);
    // O_TRUNC on an empty file leaves it alone; O_CREAT|O_TRUNC on a new one creates it.
    let g = d.join("g");
    let fd = ok(
        open(&g, libc::O_CREAT | libc::O_TRUNC | libc::O_RDWR, 0o600),
        "create",
    );
    assert_eq!(ok(fd.fstat(), "fstat").st_size, 0);
}

fn fsync(d: &Path) {
    let f = d.join("f");
    let fd = ok(creat(&f, 0o644), "create");
    ok(fd.write(&pattern(3, 2 * MIB)), "write");
    ok(fd.fsync(), "fsync");
    ok(fd.fdatasync(), "fdatasync");
    // After fsync the MDS knows the size, before any close.
    let other = ok(open(&f, libc::O_RDONLY, 0), "open");
    assert_eq!(ok(other.fstat(), "fstat").st_size, 2 * MIB as i64);
    ok(other.fsync(), "fsync on O_RDONLY");
    let dir = ok(open(d, libc::O_RDONLY | libc::O_DIRECTORY, 0), "open dir");
    ok(dir.fsync(), "fsync a directory");
    fails(Fd(-1).fsync(), libc::EBADF, "fsync a bad fd");
    std::mem::forget(Fd(-1));
}

/// statvfs of the filesystem holding `p`.
fn statvfs(p: &Path) -> libc::statvfs {
    let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: an all-zero statvfs is valid; statvfs fills it.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: valid C string and out pointer.
    let r = unsafe { libc::statvfs(c.as_ptr(), &mut st) };
    assert_eq!(r, 0, "statvfs");
    st
}

/// Creates `p` striped over both OSTs in 1 MiB stripes (`lfs setstripe -c 2 -S 1M`).
fn create_two_stripes(p: &Path) {
    let lfs = sheen_cluster::bin_dir().join("lfs");
    let path = p.to_str().unwrap();
    sheen_tests::run_ok(&lfs, &["setstripe", "-c", "2", "-S", "1M", path]);
    let out = sheen_tests::run_ok(&lfs, &["getstripe", path]);
    let (count, size, _) = sheen_tests::parse_getstripe(&out);
    assert_eq!((count, size), (2, 1 << 20), "getstripe said:\n{out}");
}

fn fallocate(d: &Path) {
    let keep = libc::FALLOC_FL_KEEP_SIZE;
    let punch = libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE;
    let f = d.join("f");
    create_two_stripes(&f);
    let fd = ok(open(&f, libc::O_RDWR, 0), "open");
    let created = ok(fd.fstat(), "fstat");
    tick();
    // Mode 0 past the end: 3.5 MiB over both OSTs (1 MiB stripes). The size and the blocks
    // grow, the range reads as zeros, mtime and ctime move (as on ext4).
    let len = 3 * MIB + MIB / 2;
    let free = statvfs(d).f_bfree;
    ok(fd.fallocate(0, 0, len as i64), "fallocate");
    let st = ok(fd.fstat(), "fstat");
    assert_eq!(st.st_size, len as i64);
    assert!(
        st.st_blocks * 512 >= len as i64,
        "st_blocks {}",
        st.st_blocks
    );
    assert!(
        times(&st)[1] > times(&created)[1],
        "fallocate past the end: mtime"
    );
    assert!(
        times(&st)[2] > times(&created)[2],
        "fallocate past the end: ctime"
    );
    let used = (free - statvfs(d).f_bfree) * statvfs(d).f_frsize;
    assert!(
        used >= len as u64,
        "{len} bytes allocated, free space fell by {used}"
    );
    let all = ok(fd.pread(len + 10, 0), "read");
    assert_eq!(all.len(), len);
    assert!(
        all.iter().all(|b| *b == 0),
        "allocated range reads as zeros"
    );
    // Writes into the allocated range (in place on the OSTs) read back.
    let mut model = vec![0u8; len];
    let data = pattern(31, 2 * MIB + 5);
    ok(fd.pwrite(&data, 1000), "write into the allocated range");
    model[1000..1000 + data.len()].copy_from_slice(&data);
    assert!(ok(fd.pread(len, 0), "read back") == model, "data differs");
    // KEEP_SIZE past the end: the size and mtime stay; ctime moves (ext4 does the same).
    let st = ok(fd.fstat(), "fstat");
    tick();
    ok(fd.fallocate(keep, len as i64, 4 * MIB as i64), "keep size");
    let kept = ok(fd.fstat(), "fstat");
    assert_eq!(
        kept.st_size, len as i64,
        "FALLOC_FL_KEEP_SIZE changed the size"
    );
    assert_eq!(times(&kept)[1], times(&st)[1], "keep size: mtime");
    assert!(times(&kept)[2] > times(&st)[2], "keep size: ctime");
    // Mode 0 inside the file changes no size and no mtime.
    ok(fd.fallocate(0, 0, MIB as i64), "fallocate inside");
    let inside = ok(fd.fstat(), "fstat");
    assert_eq!(inside.st_size, len as i64);
    assert_eq!(times(&inside)[1], times(&st)[1], "fallocate inside: mtime");
    // A hole across three stripes (both OSTs): zeros there, the rest kept, size unchanged,
    // mtime and ctime moved.
    tick();
    let (hole_at, hole_len) = (500_000, 2 * MIB);
    ok(
        fd.fallocate(punch, hole_at as i64, hole_len as i64),
        "punch hole",
    );
    model[hole_at..hole_at + hole_len].fill(0);
    let punched = ok(fd.fstat(), "fstat");
    assert_eq!(punched.st_size, len as i64, "punch hole changed the size");
    assert!(times(&punched)[1] > times(&kept)[1], "punch hole: mtime");
    assert!(times(&punched)[2] > times(&kept)[2], "punch hole: ctime");
    assert!(
        ok(fd.pread(len, 0), "read") == model,
        "punched range not zeros"
    );
    // Modes Sheen does not do, and the kernel's argument checks.
    for (mode, what) in [
        (libc::FALLOC_FL_ZERO_RANGE, "zero range"),
        (libc::FALLOC_FL_COLLAPSE_RANGE, "collapse range"),
        (libc::FALLOC_FL_INSERT_RANGE, "insert range"),
        (libc::FALLOC_FL_PUNCH_HOLE, "punch hole without keep size"),
    ] {
        fails(fd.fallocate(mode, 0, MIB as i64), libc::EOPNOTSUPP, what);
    }
    fails(fd.fallocate(0, 0, 0), libc::EINVAL, "zero length");
    fails(
        fd.fallocate(0, 0, i64::MAX),
        libc::EFBIG,
        "past the largest size",
    );
    fails(fd.fallocate(0, -1, 10), libc::EINVAL, "negative offset");
    let ro = ok(open(&f, libc::O_RDONLY, 0), "open ro");
    fails(ro.fallocate(0, 0, 10), libc::EBADF, "fallocate on O_RDONLY");
    drop(fd);
    // What a fresh open sees (the size reported to the MDS at the last close).
    assert_eq!(ok(stat(&f), "stat").st_size, len as i64);
    assert!(ok(ro.pread(len, 0), "read") == model, "after close");
    // More than the OSTs hold (two of 256 MiB): ENOSPC, and nothing changed.
    let g = d.join("g");
    create_two_stripes(&g);
    let fd = ok(open(&g, libc::O_WRONLY, 0), "open");
    let before = statvfs(d).f_bfree;
    for mode in [0, keep] {
        fails(fd.fallocate(mode, 0, 1 << 30), libc::ENOSPC, "1 GiB");
    }
    let st = ok(fd.fstat(), "fstat");
    assert_eq!(
        (st.st_size, st.st_blocks),
        (0, 0),
        "failed fallocate left a size"
    );
    assert!(
        statvfs(d).f_bfree >= before,
        "failed fallocate allocated space"
    );
    // As nobody, through a descriptor it may write.
    ok(chmod(&g, 0o666), "chmod");
    ok(
        nobody(|| {
            let fd = open(&g, libc::O_WRONLY, 0)?;
            fd.fallocate(0, 0, 10_000)?;
            ensure(fd.fstat()?.st_size == 10_000)
        }),
        "nobody fallocates",
    );
}

fn timestamps_on_create_and_write(d: &Path) {
    let t0 = now();
    let before = ok(stat(d), "stat dir");
    tick();
    let f = d.join("f");
    let fd = ok(creat(&f, 0o644), "create");
    let st = ok(fd.fstat(), "fstat");
    for (s, _) in times(&st) {
        assert!(
            s >= t0 && s <= now() + 1,
            "new file time {s} not now ({t0})"
        );
    }
    let dir = ok(stat(d), "stat dir");
    assert!(times(&dir)[1] > times(&before)[1], "create: parent mtime");
    assert!(times(&dir)[2] > times(&before)[2], "create: parent ctime");
    tick();
    ok(fd.write(b"data"), "write");
    drop(fd);
    let w = ok(stat(&f), "stat");
    assert!(times(&w)[1] > times(&st)[1], "write: mtime");
    assert!(times(&w)[2] > times(&st)[2], "write: ctime");
    assert_eq!(w.st_size, 4);
    tick();
    let fd = ok(open(&f, libc::O_WRONLY, 0), "open");
    ok(fd.ftruncate(1), "ftruncate");
    let t = ok(fd.fstat(), "fstat");
    // ctime only: the mtime a size change must bump is a gap (docs/POSIX.md).
    assert!(times(&t)[2] > times(&w)[2], "ftruncate: ctime");
    drop(fd);
    tick();
    ok(truncate(&f, 0), "truncate");
    let u = ok(stat(&f), "stat");
    assert!(times(&u)[2] > times(&t)[2], "truncate: ctime");
}

fn timestamps_on_metadata_calls(d: &Path) {
    let f = d.join("f");
    drop(ok(creat(&f, 0o644), "create"));
    let s0 = ok(stat(&f), "stat");
    tick();
    ok(chmod(&f, 0o600), "chmod");
    let s1 = ok(stat(&f), "stat");
    assert!(times(&s1)[2] > times(&s0)[2], "chmod: ctime");
    assert_eq!(times(&s1)[1], times(&s0)[1], "chmod: mtime unchanged");
    tick();
    ok(chown(&f, NOBODY, NOBODY), "chown");
    let s2 = ok(stat(&f), "stat");
    assert!(times(&s2)[2] > times(&s1)[2], "chown: ctime");
    tick();
    ok(link(&f, &d.join("h")), "link");
    let s3 = ok(stat(&f), "stat");
    assert!(times(&s3)[2] > times(&s2)[2], "link: ctime of the target");
    let p0 = ok(stat(d), "stat dir");
    tick();
    ok(unlink(&d.join("h")), "unlink");
    let p1 = ok(stat(d), "stat dir");
    assert!(times(&p1)[1] > times(&p0)[1], "unlink: parent mtime");
    assert!(times(&p1)[2] > times(&p0)[2], "unlink: parent ctime");
    tick();
    ok(rename(&f, &d.join("g")), "rename");
    let p2 = ok(stat(d), "stat dir");
    assert!(times(&p2)[1] > times(&p1)[1], "rename: parent mtime");
    tick();
    ok(mkdir(&d.join("sub"), 0o755), "mkdir");
    let p3 = ok(stat(d), "stat dir");
    assert!(times(&p3)[1] > times(&p2)[1], "mkdir: parent mtime");
}

fn utimensat_now_omit(d: &Path) {
    let f = d.join("f");
    drop(ok(creat(&f, 0o644), "create"));
    ok(utimens(&f, Some([(100, 1), (200, 2)])), "set both");
    let s = ok(stat(&f), "stat");
    assert_eq!(&times(&s)[..2], &[(100, 1), (200, 2)]);
    ok(
        utimens(&f, Some([(300, 3), (0, libc::UTIME_OMIT)])),
        "atime only",
    );
    let s = ok(stat(&f), "stat");
    assert_eq!(&times(&s)[..2], &[(300, 3), (200, 2)]);
    ok(
        utimens(&f, Some([(0, libc::UTIME_OMIT), (400, 4)])),
        "mtime only",
    );
    let s = ok(stat(&f), "stat");
    assert_eq!(&times(&s)[..2], &[(300, 3), (400, 4)]);
    let t0 = now();
    ok(
        utimens(&f, Some([(0, libc::UTIME_OMIT), (0, libc::UTIME_NOW)])),
        "mtime now",
    );
    let s = ok(stat(&f), "stat");
    assert_eq!(times(&s)[0], (300, 3), "UTIME_OMIT atime kept");
    assert!(s.st_mtime >= t0, "UTIME_NOW mtime");
    ok(utimens(&f, None), "both now");
    let s = ok(stat(&f), "stat");
    assert!(s.st_atime >= t0 && s.st_mtime >= t0);
    assert!(s.st_ctime >= t0, "ctime follows any utimensat");
    fails(
        utimens(&f, Some([(0, 1_000_000_000), (0, 0)])),
        libc::EINVAL,
        "bad nsec",
    );
    // Whole seconds before the epoch and times far in the future round-trip (a fraction
    // of a second before the epoch does not: docs/POSIX.md).
    ok(
        utimens(&f, Some([(-1000, 0), (4_000_000_000, 6)])),
        "odd times",
    );
    let s = ok(stat(&f), "stat");
    assert_eq!(&times(&s)[..2], &[(-1000, 0), (4_000_000_000, 6)]);
}

fn mmap_read_and_private(d: &Path) {
    let f = d.join("f");
    let data = pattern(9, 3 * 4096 + 10);
    std::fs::write(&f, &data).unwrap();
    let fd = ok(open(&f, libc::O_RDONLY, 0), "open");
    let len = data.len();
    // SAFETY: a fresh private mapping of an open file, unmapped below.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE,
            fd.0,
            0,
        )
    };
    assert_ne!(p, libc::MAP_FAILED, "mmap private");
    // SAFETY: the mapping is len bytes long.
    let mapped = unsafe { std::slice::from_raw_parts_mut(p.cast::<u8>(), len) };
    assert!(mapped[..] == data[..], "mapped bytes differ");
    mapped[0] ^= 0xff;
    // SAFETY: unmapping what we mapped.
    unsafe { libc::munmap(p, len) };
    assert_eq!(
        std::fs::read(&f).unwrap(),
        data,
        "a private mapping's write reached the file"
    );
    // A shared writable mapping of a read-only descriptor is refused.
    // SAFETY: fails without mapping.
    let q = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_WRITE,
            libc::MAP_SHARED,
            fd.0,
            0,
        )
    };
    assert_eq!(q, libc::MAP_FAILED);
    assert_eq!(
        std::io::Error::last_os_error().raw_os_error(),
        Some(libc::EACCES)
    );
}

fn as_nobody(d: &Path) {
    let f = d.join("f");
    let r = nobody(|| {
        let fd = creat(&f, 0o600)?;
        fd.write(&pattern(5, 100_000))?;
        fd.ftruncate(50_000)?;
        fd.fsync()?;
        ensure(fd.pread(200_000, 0)? == pattern(5, 50_000))?;
        truncate(&f, 60_000)?;
        ensure(fd.fstat()?.st_size == 60_000)
    });
    ok(r, "nobody writes, truncates, reads");
    let st = ok(stat(&f), "stat");
    assert_eq!((st.st_uid, st.st_size), (NOBODY, 60_000));
    fails(
        nobody(|| creat(&d.join("../x"), 0o644)),
        libc::EACCES,
        "create at the root",
    );
}

fn huge_offsets(d: &Path) {
    let fd = ok(creat(&d.join("f"), 0o644), "create");
    let tib = 1i64 << 40;
    ok(fd.pwrite(b"x", tib), "write at 1 TiB");
    assert_eq!(ok(fd.fstat(), "fstat").st_size, tib + 1);
    assert_eq!(ok(fd.pread(2, tib - 1), "read across"), b"\0x");
    fails(
        fd.pwrite(b"x", i64::MAX - 1),
        libc::EFBIG,
        "write past the maximum size",
    );
    ok(fd.ftruncate(0), "truncate");
}

fn seek_data_hole(d: &Path) {
    // No SEEK_DATA/SEEK_HOLE of our own: the kernel's generic answer (all data, a hole at
    // the end).
    let fd = ok(creat(&d.join("f"), 0o644), "create");
    ok(fd.pwrite(b"x", 2 * MIB as i64), "write");
    assert_eq!(ok(fd.lseek(5, libc::SEEK_DATA), "SEEK_DATA"), 5);
    let size = 2 * MIB as i64 + 1;
    assert_eq!(ok(fd.lseek(5, libc::SEEK_HOLE), "SEEK_HOLE"), size);
    fails(
        fd.lseek(size + 5, libc::SEEK_DATA),
        libc::ENXIO,
        "SEEK_DATA past EOF",
    );
    assert_eq!(ok(fd.lseek(-1, libc::SEEK_END), "SEEK_END"), size - 1);
    fails(
        fd.lseek(-1, libc::SEEK_SET),
        libc::EINVAL,
        "negative offset",
    );
}

fn mmap_shared_write(d: &Path) {
    // One client: a shared writable mapping reaches the file (coherence with other clients
    // needs the lock manager, docs/POSIX.md).
    let f = d.join("f");
    std::fs::write(&f, vec![b'a'; 8192]).unwrap();
    let fd = ok(open(&f, libc::O_RDWR, 0), "open");
    let prot = libc::PROT_READ | libc::PROT_WRITE;
    // SAFETY: a fresh shared mapping of 8192 bytes of an open file, unmapped below.
    let p = unsafe { libc::mmap(std::ptr::null_mut(), 8192, prot, libc::MAP_SHARED, fd.0, 0) };
    assert_ne!(p, libc::MAP_FAILED, "mmap shared");
    // SAFETY: the mapping is 8192 bytes long.
    let m = unsafe { std::slice::from_raw_parts_mut(p.cast::<u8>(), 8192) };
    m[..5].copy_from_slice(b"hello");
    m[8190..].copy_from_slice(b"zz");
    // SAFETY: our mapping.
    assert_eq!(unsafe { libc::msync(p, 8192, libc::MS_SYNC) }, 0, "msync");
    // SAFETY: unmapping what we mapped.
    unsafe { libc::munmap(p, 8192) };
    drop(fd);
    let back = std::fs::read(&f).unwrap();
    assert_eq!((&back[..5], &back[8190..]), (&b"hello"[..], &b"zz"[..]));
    assert_eq!(back.len(), 8192);
}

fn o_noatime(d: &Path) {
    let f = d.join("f");
    drop(ok(creat(&f, 0o644), "create"));
    ok(
        open(&f, libc::O_RDONLY | libc::O_NOATIME, 0),
        "root O_NOATIME",
    );
    let r = nobody(|| open(&f, libc::O_RDONLY | libc::O_NOATIME, 0));
    fails(r, libc::EPERM, "O_NOATIME on another's file");
    ok(nobody(|| open(&f, libc::O_RDONLY, 0)), "plain open");
}

/// An atime far older than any mtime or ctime the file has: the next read is to update it.
const OLD_ATIME: (i64, i64) = (1000, 0);

/// Reads `p` once through a new descriptor opened with `flags`.
fn read_once(p: &Path, flags: i32) -> Sys<()> {
    let fd = open(p, libc::O_RDONLY | flags, 0)?;
    fd.read(4096).map(drop)
}

fn atime_on_read(d: &Path) {
    let f = d.join("f");
    std::fs::write(&f, b"data").unwrap();
    ok(
        utimens(&f, Some([OLD_ATIME, (0, libc::UTIME_OMIT)])),
        "atime before mtime",
    );
    let before = ok(stat(&f), "stat");
    assert_eq!(times(&before)[0], OLD_ATIME);
    let t0 = now();
    let fd = ok(open(&f, libc::O_RDONLY, 0), "open");
    assert_eq!(ok(fd.read(100), "read"), b"data");
    let after = ok(stat(&f), "stat");
    assert!(
        after.st_atime >= t0,
        "relatime: a read moves an atime older than mtime"
    );
    assert_eq!(
        times(&after)[1..],
        times(&before)[1..],
        "a read changes neither mtime nor ctime"
    );
    // Right after, atime is newer than mtime and ctime: neither another read through the
    // same descriptor nor a read through a new one moves it again.
    assert_eq!(ok(fd.pread(100, 0), "pread"), b"data");
    drop(fd);
    ok(read_once(&f, 0), "read again");
    ok(nobody(|| read_once(&f, 0)), "nobody reads");
    let again = ok(stat(&f), "stat");
    assert_eq!(times(&again), times(&after), "a second read leaves atime");
    // A write moves mtime past atime: the next read updates atime again; any reader does.
    tick();
    let fd = ok(open(&f, libc::O_WRONLY, 0), "open");
    ok(fd.write(b"more"), "write");
    drop(fd);
    let written = ok(stat(&f), "stat");
    assert!(
        times(&written)[1] > times(&again)[0],
        "write: mtime past atime"
    );
    ok(nobody(|| read_once(&f, 0)), "nobody reads");
    let read = ok(stat(&f), "stat");
    assert!(
        times(&read)[0] > times(&written)[1],
        "read after write moves atime"
    );
    assert_eq!(times(&read)[1..], times(&written)[1..]);
    // A directory's atime is left to readdir, which does not touch it (docs/POSIX.md);
    // an open for writing only reads nothing.
    ok(
        utimens(&f, Some([OLD_ATIME, (0, libc::UTIME_OMIT)])),
        "old atime",
    );
    let fd = ok(open(&f, libc::O_WRONLY, 0), "open for writing");
    drop(fd);
    assert_eq!(
        times(&ok(stat(&f), "stat"))[0],
        OLD_ATIME,
        "no read, no update"
    );
}

fn o_noatime_read(d: &Path) {
    let f = d.join("f");
    std::fs::write(&f, b"data").unwrap();
    ok(
        utimens(&f, Some([OLD_ATIME, (0, libc::UTIME_OMIT)])),
        "old atime",
    );
    ok(read_once(&f, libc::O_NOATIME), "O_NOATIME read");
    let fd = ok(
        open(&f, libc::O_RDONLY | libc::O_NOATIME, 0),
        "open O_NOATIME",
    );
    ok(fd.pread(4, 0), "pread");
    // The owner's O_NOATIME also holds for a mapping's reads.
    // SAFETY: a fresh private read-only mapping of a 4-byte file, unmapped below.
    unsafe {
        let p = libc::mmap(
            std::ptr::null_mut(),
            4,
            libc::PROT_READ,
            libc::MAP_PRIVATE,
            fd.0,
            0,
        );
        assert_ne!(p, libc::MAP_FAILED, "mmap");
        assert_eq!(*p.cast::<u8>(), b'd');
        libc::munmap(p, 4);
    }
    drop(fd);
    let st = ok(stat(&f), "stat");
    assert_eq!(times(&st)[0], OLD_ATIME, "O_NOATIME reads leave atime");
    // Nobody's own file.
    let mine = d.join("mine");
    let r = as_user(NOBODY, || {
        let fd = creat(&mine, 0o644)?;
        fd.write(b"mine")?;
        drop(fd);
        utimens(&mine, Some([OLD_ATIME, (0, libc::UTIME_OMIT)]))?;
        read_once(&mine, libc::O_NOATIME)
    });
    ok(r, "nobody reads its file with O_NOATIME");
    assert_eq!(times(&ok(stat(&mine), "stat"))[0], OLD_ATIME);
    // Without O_NOATIME the same read updates it.
    ok(read_once(&f, 0), "plain read");
    assert!(ok(stat(&f), "stat").st_atime > OLD_ATIME.0);
}

/// A second mount with `-o noatime`: its reads never update atime; the first mount's do.
pub fn noatime_mount(m: &mut crate::Mounted) {
    let d = m.mnt.join("noatime");
    ok(mkdir(&d, 0o755), "mkdir");
    let f = d.join("f");
    std::fs::write(&f, b"data").unwrap();
    ok(
        utimens(&f, Some([OLD_ATIME, (0, libc::UTIME_OMIT)])),
        "old atime",
    );
    let other = m.mnt.with_file_name("noatime-mnt");
    m.cluster
        .mount_with_options(&other, Some("noatime"))
        .unwrap();
    let g = other.join("noatime/f");
    assert_eq!(std::fs::read(&g).unwrap(), b"data");
    ok(nobody(|| read_once(&g, 0)), "nobody reads");
    assert_eq!(times(&ok(stat(&f), "stat"))[0], OLD_ATIME, "noatime mount");
    assert_eq!(
        times(&ok(stat(&g), "stat"))[0],
        OLD_ATIME,
        "seen from there"
    );
    ok(read_once(&f, 0), "read through the first mount");
    assert!(
        ok(stat(&g), "stat").st_atime > OLD_ATIME.0,
        "relatime mount"
    );
    m.cluster.unmount(&other).unwrap();
}

fn statfs(d: &Path) {
    let s = |p: &Path| {
        let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: an all-zero statvfs is valid; statvfs fills it.
        let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
        // SAFETY: valid C string and out pointer.
        let r = unsafe { libc::statvfs(c.as_ptr(), &mut st) };
        assert_eq!(r, 0, "statvfs");
        st
    };
    let before = s(d);
    assert_eq!(before.f_namemax, 255);
    assert!(before.f_bsize > 0 && before.f_frsize > 0);
    // Two OSTs of 256 MiB: the sum, less what the OSD format takes.
    let total = before.f_blocks * before.f_frsize;
    assert!(
        total > 300 << 20 && total <= 512 << 20,
        "f_blocks * f_frsize = {total}"
    );
    assert!(before.f_bfree <= before.f_blocks && before.f_bavail <= before.f_bfree);
    assert!(before.f_files > 0 && before.f_ffree <= before.f_files);
    let fd = ok(creat(&d.join("f"), 0o644), "create");
    ok(fd.write(&pattern(2, 8 * MIB)), "write 8 MiB");
    ok(fd.fsync(), "fsync");
    let after = s(d);
    let used = (before.f_bfree - after.f_bfree) * after.f_frsize;
    assert!(used >= 8 << 20, "8 MiB written, free space fell by {used}");
    assert!(after.f_ffree < before.f_ffree, "free inodes after a create");
    ok(nobody(|| Ok(s(d))), "nobody statfs");
}

/// Data and size made durable by fsync survive a SIGKILL of the OSS and then of the MDS,
/// with no close in between.
pub fn fsync_survives_crashes(m: &mut crate::Mounted) {
    let f = m.mnt.join("durable");
    let data = pattern(11, 3 * MIB + 123);
    let fd = ok(creat(&f, 0o644), "create");
    ok(fd.write(&data), "write");
    ok(fd.fdatasync(), "fdatasync");
    m.cluster.kill_oss().unwrap();
    m.cluster.start_oss().unwrap();
    m.cluster.kill_mds().unwrap();
    m.cluster.start_mds().unwrap();
    // Before any close: the MDS has the size fsync reported (asked with the native client,
    // since this mount answers with its own view while the file is open).
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let size = rt.block_on(async {
        let spec: MountSpec = m.cluster.mount_spec().parse().unwrap();
        let client = Client::mount(&spec, ClientConfig::default()).await.unwrap();
        let (attr, _) = client.lookup(client.root_fid(), b"durable").await.unwrap();
        client.unmount().await;
        attr.size
    });
    assert_eq!(size, data.len() as u64, "MDS size after crashes");
    drop(fd);
    // A fresh mount: nothing from this client's caches.
    m.cluster.unmount(&m.mnt).unwrap();
    m.cluster.mount(&m.mnt).unwrap();
    assert_eq!(
        ok(stat(&f), "stat").st_size,
        data.len() as i64,
        "size after crashes"
    );
    assert!(std::fs::read(&f).unwrap() == data, "data after crashes");
}

fn etxtbsy(d: &Path) {
    // A program running from the mount cannot be opened for writing.
    let prog = d.join("sleep");
    std::fs::copy("/bin/sleep", &prog).unwrap();
    ok(chmod(&prog, 0o755), "chmod");
    let mut child = std::process::Command::new(&prog).arg("30").spawn().unwrap();
    // Wait until the program is mapped (its exe link names our copy).
    let exe = format!("/proc/{}/exe", child.id());
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::fs::read_link(&exe).ok().as_deref() != Some(prog.as_path()) {
        assert!(
            std::time::Instant::now() < deadline,
            "program did not start"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let r = open(&prog, libc::O_WRONLY, 0);
    child.kill().unwrap();
    child.wait().unwrap();
    fails(r, libc::ETXTBSY, "open a running program for writing");
    ok(open(&prog, libc::O_WRONLY, 0), "open after it exited");
}

/// A second mount with `-o ro`: every modifying call fails with EROFS, reads work.
pub fn read_only_mount(m: &mut crate::Mounted) {
    let d = m.mnt.join("ro");
    ok(mkdir(&d, 0o755), "mkdir");
    std::fs::write(d.join("f"), b"data").unwrap();
    ok(
        utimens(&d.join("f"), Some([OLD_ATIME, (0, libc::UTIME_OMIT)])),
        "old atime",
    );
    ok(mkdir(&d.join("sub"), 0o755), "mkdir");
    let ro_mnt = m.mnt.with_file_name("ro-mnt");
    m.cluster.mount_with_options(&ro_mnt, Some("ro")).unwrap();
    let (f, sub) = (ro_mnt.join("ro/f"), ro_mnt.join("ro/sub"));
    let e = libc::EROFS;
    assert_eq!(std::fs::read(&f).unwrap(), b"data");
    assert_eq!(
        times(&ok(stat(&f), "stat"))[0],
        OLD_ATIME,
        "reads leave atime"
    );
    ok(list(&sub), "list");
    ok(getxattr(&f, "lustre.lov"), "getxattr");
    fails(open(&f, libc::O_WRONLY, 0), e, "open for writing");
    fails(creat(&ro_mnt.join("ro/new"), 0o644), e, "create");
    fails(mkdir(&ro_mnt.join("ro/nd"), 0o755), e, "mkdir");
    fails(unlink(&f), e, "unlink");
    fails(rmdir(&sub), e, "rmdir");
    fails(rename(&f, &ro_mnt.join("ro/g")), e, "rename");
    fails(link(&f, &ro_mnt.join("ro/h")), e, "link");
    fails(symlink(b"f", &ro_mnt.join("ro/l")), e, "symlink");
    fails(chmod(&f, 0o600), e, "chmod");
    fails(chown(&f, 1, 1), e, "chown");
    fails(truncate(&f, 0), e, "truncate");
    fails(utimens(&f, None), e, "utimensat");
    fails(setxattr(&f, "user.x", b"1", 0), e, "setxattr");
    fails(removexattr(&f, "user.x"), e, "removexattr");
    fails(
        mknod(&ro_mnt.join("ro/p"), libc::S_IFIFO | 0o644, 0),
        e,
        "mknod",
    );
    // Linux checks the read-only mount before the mode bits.
    fails(
        nobody(|| open(&f, libc::O_RDWR, 0)),
        e,
        "nobody opens 0644 for writing",
    );
    m.cluster.unmount(&ro_mnt).unwrap();
    assert_eq!(std::fs::read(d.join("f")).unwrap(), b"data");
}

/// fallocate seen from a second mount while the file is open on the first, and ENOSPC
/// before anything is allocated when one OST cannot hold its part while the other could.
pub fn fallocate_across_mounts_and_osts(m: &mut crate::Mounted) {
    let d = m.mnt.join("falloc");
    ok(mkdir(&d, 0o755), "mkdir");
    let other = m.mnt.with_file_name("mnt2");
    m.cluster.mount(&other).unwrap();
    let f = d.join("f");
    let seen = other.join("falloc/f");
    create_two_stripes(&f);
    let fd = ok(open(&f, libc::O_WRONLY, 0), "open");
    ok(fd.write(b"head"), "write");
    let len = 5 * MIB as i64 + 7;
    ok(fd.fallocate(0, 0, len), "fallocate");
    assert_eq!(
        ok(stat(&seen), "stat on mount 2").st_size,
        len,
        "while open"
    );
    let mut want = vec![0u8; len as usize];
    want[..4].copy_from_slice(b"head");
    assert!(std::fs::read(&seen).unwrap() == want, "read on mount 2");
    drop(fd);
    assert_eq!(
        ok(stat(&seen), "stat on mount 2").st_size,
        len,
        "after close"
    );
    // OST 0 nearly full (a 180 MiB file on it alone); a file over both OSTs asks each for
    // 120 MiB: OST 1 could allocate its part, OST 0 cannot, so nothing is allocated.
    let lfs = m.cluster.bin("lfs");
    let filler = d.join("filler");
    let filler_s = filler.to_str().unwrap();
    sheen_tests::run_ok(&lfs, &["setstripe", "-c", "1", "-i", "0", filler_s]);
    let fd = ok(open(&filler, libc::O_WRONLY, 0), "open filler");
    let chunk = pattern(41, 4 * MIB);
    for _ in 0..45 {
        ok(fd.write(&chunk), "fill OST 0");
    }
    ok(fd.fsync(), "fsync");
    drop(fd);
    let g = d.join("g");
    create_two_stripes(&g);
    let fd = ok(open(&g, libc::O_WRONLY, 0), "open");
    let before = statvfs(&d).f_bfree;
    fails(
        fd.fallocate(0, 0, 240 << 20),
        libc::ENOSPC,
        "240 MiB over both",
    );
    assert!(statvfs(&d).f_bfree >= before, "space allocated on OST 1");
    assert_eq!(ok(fd.fstat(), "fstat").st_size, 0);
    // What fits on both goes through.
    ok(fd.fallocate(0, 0, 20 << 20), "20 MiB over both");
    assert_eq!(ok(stat(&other.join("falloc/g")), "stat").st_size, 20 << 20);
    drop(fd);
    m.cluster.unmount(&other).unwrap();
}

/// Writes through one descriptor until the OST is full: writes are answered before they are
/// on the OSTs only while the OSTs have room to spare, so the ENOSPC comes back from the
/// write(2) that did not fit, never later from a write already answered; close and fsync
/// then succeed, and every byte answered is there.
pub fn writes_until_the_ost_is_full(m: &mut crate::Mounted) {
    let f = m.mnt.join("full");
    let lfs = m.cluster.bin("lfs");
    sheen_tests::run_ok(
        &lfs,
        &["setstripe", "-c", "1", "-i", "0", f.to_str().unwrap()],
    );
    let fd = ok(open(&f, libc::O_WRONLY, 0), "open");
    let chunk = pattern(77, MIB);
    let mut written = 0usize;
    let error = loop {
        match fd.write(&chunk) {
            Ok(n) => {
                assert_eq!(n, MIB, "a short write at {written}");
                written += n;
            }
            Err(e) => break e,
        }
        assert!(written <= 256 * MIB, "more written than the OST holds");
    };
    assert_eq!(error, libc::ENOSPC, "after {written} bytes");
    assert!(
        written >= 128 * MIB,
        "only {written} bytes fit on a 256 MiB OST"
    );
    ok(fd.fsync(), "fsync after ENOSPC");
    ok(fd.close(), "close after ENOSPC");
    assert_eq!(ok(stat(&f), "stat").st_size as usize, written);
    let fd = ok(open(&f, libc::O_RDONLY, 0), "open to read");
    let mut back = vec![0u8; MIB];
    for at in (0..written).step_by(MIB) {
        assert_eq!(ok(fd.pread_into(&mut back, at as i64), "read"), MIB);
        assert!(back == chunk, "the MiB at {at} is not what was written");
    }
}

/// truncate and ftruncate change mtime and ctime (the kernel sends FUSE a size-only setattr;
/// the MDS moves mtime with the size).
fn truncate_moves_mtime(d: &Path) {
    let f = d.join("f");
    let fd = ok(creat(&f, 0o644), "create");
    ok(fd.write(b"0123456789"), "write");
    for (what, shrink) in [("truncate", true), ("ftruncate", false)] {
        ok(utimens(&f, Some([(1000, 0), (1000, 0)])), "set old times");
        if shrink {
            ok(truncate(&f, 4), what);
        } else {
            ok(fd.ftruncate(20), what);
        }
        let st = ok(stat(&f), "stat");
        assert!(st.st_mtime > 1000, "{what} left mtime at {}", st.st_mtime);
        assert!(st.st_ctime > 1000, "{what} left ctime at {}", st.st_ctime);
    }
}

/// A file unlinked (or renamed over) while open stays readable and writable through its
/// descriptors until the last close.
fn unlinked_while_open(d: &Path) {
    let f = d.join("f");
    let fd = ok(open(&f, libc::O_CREAT | libc::O_RDWR, 0o644), "create");
    ok(fd.write(b"written before unlink"), "write");
    let reader = ok(open(&f, libc::O_RDONLY, 0), "second open");
    ok(unlink(&f), "unlink");
    fails(stat(&f), libc::ENOENT, "stat after unlink");
    assert_eq!(ok(fd.fstat(), "fstat").st_nlink, 0);
    assert_eq!(
        ok(reader.pread(21, 0), "read after unlink"),
        b"written before unlink"
    );
    ok(fd.pwrite(b"and after", 22), "write after unlink");
    assert_eq!(ok(reader.pread(9, 22), "read new data"), b"and after");
    drop(fd);
    // The other descriptor still works after the first close.
    assert_eq!(ok(reader.pread(7, 0), "read after one close"), b"written");
    drop(reader);

    // Renaming a new file over an open one: the old contents stay readable through the old
    // descriptor, the name shows the new file.
    let old = d.join("old");
    let new = d.join("new");
    let fd = ok(creat(&old, 0o644), "create old");
    ok(fd.write(b"old contents"), "write old");
    let held = ok(open(&old, libc::O_RDONLY, 0), "open old");
    drop(fd);
    let fd = ok(creat(&new, 0o644), "create new");
    ok(fd.write(b"new"), "write new");
    drop(fd);
    ok(rename(&new, &old), "rename over the open file");
    assert_eq!(ok(held.pread(12, 0), "read replaced file"), b"old contents");
    let now = ok(open(&old, libc::O_RDONLY, 0), "open the name");
    assert_eq!(ok(now.pread(12, 0), "read the name"), b"new");
}
