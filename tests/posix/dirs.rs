//! Directories: mkdir/rmdir and link counts, d_type, large listings (complete, no
//! duplicates, as root and nobody), rewinddir, readdir while entries are added and removed
//! (seeded; the seed is printed), and `ls -l` listings (readdir with a stat of each entry,
//! which the kernel serves from readdirplus) that show every change at once.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ffi::{CStr, CString};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::DirEntryExt;
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
    ("long_listing", long_listing),
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

/// What `ls -l` shows of an entry: type and permission bits, size, link count, owner.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Shown {
    mode: u32,
    size: i64,
    nlink: u64,
    uid: u32,
    gid: u32,
}

/// One entry of a long listing: `d_ino`, `st_ino` and what `ls -l` shows.
type Listed = (u64, u64, Shown);

/// Lists `d` as `ls -l` does: each entry is stat'ed (lstat) as soon as readdir returned it,
/// so the kernel reads the directory with readdirplus and answers the stats from what it
/// got. A name listed twice is a failed check.
fn ls_l(d: &Path) -> Sys<BTreeMap<Vec<u8>, Listed>> {
    let os = |e: std::io::Error| e.raw_os_error().unwrap_or(libc::EIO);
    let mut out = BTreeMap::new();
    for e in std::fs::read_dir(d).map_err(os)? {
        let e = e.map_err(os)?;
        let st = lstat(&d.join(e.file_name()))?;
        let shown = Shown {
            mode: st.st_mode,
            size: st.st_size,
            nlink: st.st_nlink,
            uid: st.st_uid,
            gid: st.st_gid,
        };
        let name = e.file_name().as_bytes().to_vec();
        assert!(
            out.insert(name, (e.ino(), st.st_ino, shown)).is_none(),
            "{:?} listed twice",
            e.file_name()
        );
    }
    Ok(out)
}

/// Checks a long listing of `d` against `want` (and inode numbers against `inos`, for the
/// names it has); returns the inode numbers seen.
fn check_ls_l(
    d: &Path,
    want: &BTreeMap<Vec<u8>, Shown>,
    inos: &BTreeMap<Vec<u8>, u64>,
    when: &str,
) -> BTreeMap<Vec<u8>, u64> {
    let got = ok(ls_l(d), "ls -l");
    let show = |n: &[u8]| String::from_utf8_lossy(n).into_owned();
    let names: Vec<String> = got.keys().map(|n| show(n)).collect();
    let want_names: Vec<String> = want.keys().map(|n| show(n)).collect();
    assert_eq!(names, want_names, "{when}: names listed");
    for (name, (d_ino, ino, shown)) in &got {
        let n = show(name);
        assert_eq!(d_ino, ino, "{when}: d_ino and st_ino of {n}");
        assert_eq!(Some(shown), want.get(name), "{when}: lstat of {n}");
        if let Some(before) = inos.get(name) {
            assert_eq!(ino, before, "{when}: inode of {n}");
        }
    }
    got.into_iter().map(|(n, (_, ino, _))| (n, ino)).collect()
}

fn write_file(p: &Path, len: usize, mode: u32) -> Sys<()> {
    let fd = open(p, libc::O_CREAT | libc::O_WRONLY | libc::O_TRUNC, mode)?;
    if len > 0 {
        fd.write(&vec![b'x'; len])?;
    }
    drop(fd);
    chmod(p, mode)
}

fn put(want: &mut BTreeMap<Vec<u8>, Shown>, name: &str, shown: Shown) {
    want.insert(name.as_bytes().to_vec(), shown);
}

fn long_listing(d: &Path) {
    const FILES: usize = 100;
    let reg = |mode, size, nlink| Shown {
        mode: libc::S_IFREG | mode,
        size,
        nlink,
        uid: 0,
        gid: 0,
    };
    let mut want: BTreeMap<Vec<u8>, Shown> = BTreeMap::new();
    ok(write_file(&d.join("small"), 100, 0o644), "small");
    ok(link(&d.join("small"), &d.join("small2")), "link small2");
    put(&mut want, "small", reg(0o644, 100, 2));
    put(&mut want, "small2", reg(0o644, 100, 2));
    ok(write_file(&d.join("big"), 200 << 10, 0o644), "big");
    put(&mut want, "big", reg(0o644, 200 << 10, 1));
    ok(write_file(&d.join("exec"), 0, 0o755), "exec");
    put(&mut want, "exec", reg(0o755, 0, 1));
    ok(mkdir(&d.join("sub"), 0o750), "sub");
    ok(chmod(&d.join("sub"), 0o750), "chmod sub");
    ok(mkdir(&d.join("sub/inner"), 0o755), "sub/inner");
    let dir_size = ok(lstat(&d.join("sub")), "lstat sub").st_size;
    let sub = |nlink| Shown {
        mode: libc::S_IFDIR | 0o750,
        size: dir_size,
        nlink,
        uid: 0,
        gid: 0,
    };
    put(&mut want, "sub", sub(3));
    ok(symlink(b"small", &d.join("link")), "symlink");
    put(
        &mut want,
        "link",
        Shown {
            mode: libc::S_IFLNK | 0o777,
            size: 5,
            nlink: 1,
            uid: 0,
            gid: 0,
        },
    );
    ok(mknod(&d.join("pipe"), libc::S_IFIFO | 0o600, 0), "mkfifo");
    ok(chmod(&d.join("pipe"), 0o600), "chmod pipe");
    put(
        &mut want,
        "pipe",
        Shown {
            mode: libc::S_IFIFO | 0o600,
            size: 0,
            nlink: 1,
            uid: 0,
            gid: 0,
        },
    );
    ok(write_file(&d.join("theirs"), 10, 0o640), "theirs");
    ok(
        chown(&d.join("theirs"), crate::OTHER, crate::OTHER),
        "chown theirs",
    );
    put(
        &mut want,
        "theirs",
        Shown {
            uid: crate::OTHER,
            gid: crate::OTHER,
            ..reg(0o640, 10, 1)
        },
    );
    // Enough entries for several kernel readdirplus replies.
    for i in 0..FILES {
        let name = format!("file-{i:03}-{}", "n".repeat(i % 40));
        ok(write_file(&d.join(&name), i * 7, 0o644), "create");
        put(&mut want, &name, reg(0o644, (i * 7) as i64, 1));
    }
    let file = |i: usize| format!("file-{i:03}-{}", "n".repeat(i % 40));

    let inos = check_ls_l(d, &want, &BTreeMap::new(), "first listing");
    // Again, now that the kernel has it all (names and attributes under locks).
    let inos = check_ls_l(d, &want, &inos, "second listing");
    let r = nobody(|| {
        let got = ls_l(d)?;
        let same = got.len() == want.len()
            && got
                .iter()
                .all(|(n, (_, ino, s))| want.get(n) == Some(s) && inos.get(n) == Some(ino));
        ensure(same)
    });
    ok(r, "ls -l as nobody");

    // Another process changes entries through the same mount; the next listing shows it.
    let r = as_user(0, || {
        chmod(&d.join("small"), 0o600)?;
        truncate(&d.join("big"), 10)?;
        let fd = open(&d.join("exec"), libc::O_WRONLY | libc::O_APPEND, 0)?;
        fd.write(&[b'y'; 5000])?;
        drop(fd);
        rename(&d.join(file(0)), &d.join("renamed"))?;
        unlink(&d.join(file(1)))?;
        chown(&d.join(file(2)), crate::OTHER, 0)?;
        mkdir(&d.join("sub/another"), 0o755)?;
        link(&d.join("small"), &d.join("small3"))
    });
    ok(r, "changes in another process");
    for (name, shown) in [
        ("small", reg(0o600, 100, 3)),
        ("small2", reg(0o600, 100, 3)),
        ("small3", reg(0o600, 100, 3)),
        ("big", reg(0o644, 10, 1)),
        ("exec", reg(0o755, 5000, 1)),
        ("renamed", reg(0o644, 0, 1)),
        ("sub", sub(4)),
    ] {
        put(&mut want, name, shown);
    }
    want.remove(file(0).as_bytes());
    want.remove(file(1).as_bytes());
    want.insert(
        file(2).into_bytes(),
        Shown {
            uid: crate::OTHER,
            ..reg(0o644, 14, 1)
        },
    );
    let mut inos = inos;
    if let Some(ino) = inos.remove(file(0).as_bytes()) {
        inos.insert(b"renamed".to_vec(), ino);
    }
    let inos = check_ls_l(d, &want, &inos, "after another process changed entries");

    // A file open for writing here: its size as written so far, at every listing.
    let growing = ok(
        open(&d.join("growing"), libc::O_CREAT | libc::O_WRONLY, 0o644),
        "open growing",
    );
    for (step, len) in [1000, 3000, 70_000].into_iter().enumerate() {
        ok(growing.write(&vec![b'g'; len]), "write growing");
        let size = [1000, 4000, 74_000][step];
        want.insert(b"growing".to_vec(), reg(0o644, size, 1));
        check_ls_l(d, &want, &inos, &format!("while growing, step {step}"));
        // The other process's view is the same.
        let r = as_user(0, || {
            let st = lstat(&d.join("growing"))?;
            ensure(st.st_size == size)
        });
        ok(r, "size of growing in another process");
    }
    drop(growing);
    check_ls_l(d, &want, &inos, "after growing was closed");
}
