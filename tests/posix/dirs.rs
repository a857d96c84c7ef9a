//! Directories: mkdir/rmdir and link counts, d_type, large listings (complete, no
//! duplicates, as root and nobody), rewinddir, and readdir while entries are added and
//! removed (seeded; the seed is printed).

use std::collections::{BTreeSet, HashMap};
use std::ffi::{CStr, CString};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use crate::sys::*;

pub const CASES: &[crate::Case] = &[
    ("mkdir_rmdir_nlink", mkdir_rmdir_nlink),
    ("d_type", d_type),
    ("large_listing", large_listing),
    ("rewind", rewind),
    ("readdir_while_changing", readdir_while_changing),
    ("mknod_kinds", mknod_kinds),
    ("removed_cwd", removed_cwd),
];

/// Entries in the large listing (each create is an MDS commit, ~3 ms here).
const LARGE: usize = 1500;

/// A directory stream read entry by entry, so that it can be changed in between.
struct Stream(*mut libc::DIR);

impl Stream {
    fn open(p: &Path) -> Stream {
        let c = CString::new(p.as_os_str().as_bytes()).unwrap();
        // SAFETY: valid C string.
        let dir = unsafe { libc::opendir(c.as_ptr()) };
        assert!(!dir.is_null(), "opendir {}", p.display());
        Stream(dir)
    }

    /// The next (name, d_type), skipping `.` and `..`.
    fn next(&mut self) -> Option<(Vec<u8>, u8)> {
        loop {
            // SAFETY: an open stream; the entry is valid until the next readdir.
            let e = unsafe { libc::readdir(self.0) };
            if e.is_null() {
                return None;
            }
            // SAFETY: d_name is NUL-terminated.
            let (name, ty) = unsafe { (CStr::from_ptr((*e).d_name.as_ptr()), (*e).d_type) };
            let name = name.to_bytes().to_vec();
            if name != b"." && name != b".." {
                return Some((name, ty));
            }
        }
    }

    fn rewind(&mut self) {
        // SAFETY: an open stream.
        unsafe { libc::rewinddir(self.0) };
    }

    fn all(&mut self) -> Vec<Vec<u8>> {
        std::iter::from_fn(|| self.next().map(|(n, _)| n)).collect()
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        // SAFETY: closing our stream once.
        unsafe { libc::closedir(self.0) };
    }
}

fn mkdir_rmdir_nlink(d: &Path) {
    let p = d.join("p");
    ok(mkdir(&p, 0o755), "mkdir");
    assert_eq!(ok(stat(&p), "stat").st_nlink, 2, "empty dir nlink");
    for i in 0..3 {
        ok(mkdir(&p.join(format!("s{i}")), 0o755), "mkdir sub");
    }
    drop(ok(creat(&p.join("f"), 0o644), "create"));
    assert_eq!(ok(stat(&p), "stat").st_nlink, 5, "2 + one per subdirectory");
    fails(rmdir(&p), libc::ENOTEMPTY, "rmdir non-empty");
    ok(rename(&p.join("s0"), &d.join("s0")), "move a subdir out");
    assert_eq!(ok(stat(&p), "stat").st_nlink, 4, "after moving one out");
    ok(rmdir(&p.join("s1")), "rmdir");
    assert_eq!(ok(stat(&p), "stat").st_nlink, 3, "after rmdir");
    fails(rmdir(&p.join("s1")), libc::ENOENT, "rmdir again");
    ok(nobody(|| mkdir(&d.join("mine"), 0o700)), "nobody mkdir");
    ok(nobody(|| rmdir(&d.join("mine"))), "nobody rmdir");
}

fn d_type(d: &Path) {
    drop(ok(creat(&d.join("f"), 0o644), "create"));
    ok(mkdir(&d.join("d"), 0o755), "mkdir");
    ok(symlink(b"f", &d.join("l")), "symlink");
    ok(mknod(&d.join("p"), libc::S_IFIFO | 0o644, 0), "mkfifo");
    let mut s = Stream::open(d);
    let got: HashMap<Vec<u8>, u8> = std::iter::from_fn(|| s.next()).collect();
    let want = [
        ("f", libc::DT_REG),
        ("d", libc::DT_DIR),
        ("l", libc::DT_LNK),
        ("p", libc::DT_FIFO),
    ];
    assert_eq!(got.len(), want.len(), "entries: {got:?}");
    for (n, t) in want {
        assert_eq!(got.get(n.as_bytes()), Some(&t), "d_type of {n}");
    }
}

fn large_listing(d: &Path) {
    // Names of varying length so entries straddle the kernel's readdir buffers.
    let names: BTreeSet<Vec<u8>> = (0..LARGE)
        .map(|i| format!("{i:05}-{}", "x".repeat(i % 60)).into_bytes())
        .collect();
    for n in &names {
        let p = d.join(std::ffi::OsStr::from_bytes(n));
        drop(ok(
            open(&p, libc::O_CREAT | libc::O_WRONLY, 0o644),
            "create",
        ));
    }
    let listed = ok(list(d), "list");
    assert_eq!(listed.len(), LARGE, "entry count (duplicates or losses)");
    assert_eq!(listed.into_iter().collect::<BTreeSet<_>>(), names);
    let r = nobody(|| {
        let l = list(d)?;
        ensure(l.len() == LARGE && l.into_iter().collect::<BTreeSet<_>>() == names)
    });
    ok(r, "nobody lists");
    assert_eq!(ok(stat(d), "stat").st_nlink, 2);
}

fn rewind(d: &Path) {
    for i in 0..50 {
        drop(ok(creat(&d.join(format!("f{i}")), 0o644), "create"));
    }
    let mut s = Stream::open(d);
    let first = s.all();
    assert_eq!(first.len(), 50);
    s.rewind();
    assert_eq!(s.all(), first, "a second pass after rewinddir");
}

fn readdir_while_changing(d: &Path) {
    const N: usize = 400;
    // Fixed unless SHEEN_POSIX_SEED says otherwise, so that a run can be repeated.
    let seed = std::env::var("SHEEN_POSIX_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_u64);
    println!("readdir_while_changing: seed {seed}");
    let mut rng = seed | 1;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let name = |i: usize| format!("e{i:04}").into_bytes();
    for i in 0..N {
        drop(ok(creat(&d.join(format!("e{i:04}")), 0o644), "create"));
    }
    // Half the entries stay; of the others, a random half is removed while listing, and
    // new ones are added.
    let stable: BTreeSet<Vec<u8>> = (0..N).filter(|i| i % 2 == 0).map(name).collect();
    let mut s = Stream::open(d);
    let mut seen: Vec<Vec<u8>> = Vec::new();
    let mut added = 0;
    while let Some((n, _)) = s.next() {
        seen.push(n);
        if seen.len().is_multiple_of(10) {
            for _ in 0..3 {
                let victim = (next() as usize % (N / 2)) * 2 + 1;
                let _ = unlink(&d.join(format!("e{victim:04}")));
            }
            let p = d.join(format!("new{added:04}"));
            drop(ok(creat(&p, 0o644), "create while listing"));
            added += 1;
        }
    }
    let mut uniq = BTreeSet::new();
    for n in &seen {
        assert!(uniq.insert(n.clone()), "seed {seed}: {n:?} listed twice");
        let known = n.starts_with(b"e") || n.starts_with(b"new");
        assert!(known, "seed {seed}: unknown name {n:?}");
    }
    let missing: Vec<_> = stable.difference(&uniq).collect();
    assert!(
        missing.is_empty(),
        "seed {seed}: unchanged entries not listed: {missing:?}"
    );
    // Once quiet, a new listing is exact.
    let after: BTreeSet<Vec<u8>> = ok(list(d), "list").into_iter().collect();
    let mut want = stable.clone();
    for i in (1..N).step_by(2) {
        if lstat(&d.join(format!("e{i:04}"))).is_ok() {
            want.insert(name(i));
        }
    }
    want.extend((0..added).map(|i| format!("new{i:04}").into_bytes()));
    assert_eq!(after, want, "seed {seed}: listing after the changes");
}

fn mknod_kinds(d: &Path) {
    ok(mknod(&d.join("fifo"), libc::S_IFIFO | 0o600, 0), "fifo");
    ok(mknod(&d.join("sock"), libc::S_IFSOCK | 0o600, 0), "socket");
    ok(mknod(&d.join("reg"), libc::S_IFREG | 0o600, 0), "regular");
    let dev = libc::makedev(1, 3);
    ok(
        mknod(&d.join("chr"), libc::S_IFCHR | 0o600, dev),
        "char device as root",
    );
    let st = ok(lstat(&d.join("chr")), "lstat");
    assert_eq!(st.st_mode & libc::S_IFMT, libc::S_IFCHR);
    assert_eq!(st.st_rdev, dev, "rdev");
    let kinds = [
        ("fifo", libc::S_IFIFO),
        ("sock", libc::S_IFSOCK),
        ("reg", libc::S_IFREG),
    ];
    for (n, k) in kinds {
        assert_eq!(
            ok(lstat(&d.join(n)), n).st_mode & libc::S_IFMT,
            k,
            "type of {n}"
        );
    }
    let r = nobody(|| mknod(&d.join("chr2"), libc::S_IFCHR | 0o600, dev));
    fails(r, libc::EPERM, "char device as nobody");
    ok(
        nobody(|| mknod(&d.join("fifo2"), libc::S_IFIFO | 0o600, 0)),
        "fifo as nobody",
    );
}

fn removed_cwd(d: &Path) {
    // An open directory that is removed: listing it and creating in it fail with ENOENT.
    let gone = d.join("gone");
    ok(mkdir(&gone, 0o755), "mkdir");
    let dirfd = ok(
        open(&gone, libc::O_RDONLY | libc::O_DIRECTORY, 0),
        "open dir",
    );
    ok(rmdir(&gone), "rmdir");
    let name = std::ffi::CString::new("x").unwrap();
    let flags = libc::O_CREAT | libc::O_WRONLY | libc::O_CLOEXEC;
    // SAFETY: valid descriptor and C string.
    let r = unsafe { libc::openat(dirfd.0, name.as_ptr(), flags, 0o644) };
    assert_eq!(r, -1, "create in a removed directory");
    assert_eq!(
        std::io::Error::last_os_error().raw_os_error(),
        Some(libc::ENOENT)
    );
    let mut buf = [0u8; 4096];
    // SAFETY: valid descriptor and buffer.
    let n = unsafe { libc::syscall(libc::SYS_getdents64, dirfd.0, buf.as_mut_ptr(), 4096) };
    assert_eq!(n, -1, "getdents on a removed directory");
    assert_eq!(
        std::io::Error::last_os_error().raw_os_error(),
        Some(libc::ENOENT)
    );
}
