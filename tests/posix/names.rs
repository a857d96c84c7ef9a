//! Names and the errors of path resolution: NAME_MAX and PATH_MAX, ENOENT, ENOTDIR, EISDIR,
//! EEXIST, EINVAL, ELOOP, for every call that takes a path, as root and as nobody.

use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::sys::*;
use crate::NOBODY;

pub const CASES: &[crate::Case] = &[
    ("name_max", name_max),
    ("path_max", path_max),
    ("enoent", enoent),
    ("enotdir", enotdir),
    ("eisdir", eisdir),
    ("eexist", eexist),
    ("einval", einval),
    ("eloop", eloop),
    ("odd_bytes_round_trip", odd_bytes_round_trip),
];

/// Runs `check` as root and as nobody (in a directory nobody owns).
fn both(d: &Path, check: impl Fn(&Path)) {
    let r = d.join("root");
    ok(mkdir(&r, 0o755), "mkdir");
    check(&r);
    let n = d.join("nobody");
    ok(mkdir(&n, 0o755), "mkdir");
    ok(chown(&n, NOBODY, NOBODY), "chown");
    let r = as_user(NOBODY, || {
        check(&n);
        Ok(())
    });
    ok(r, "the same checks as nobody");
}

fn name_max(d: &Path) {
    both(d, |d| {
        let ok255 = d.join("a".repeat(255));
        let long = d.join("b".repeat(256));
        drop(ok(creat(&ok255, 0o644), "create 255"));
        ok(stat(&ok255), "stat 255");
        let names = ok(list(d), "list");
        assert!(names.iter().any(|n| n.len() == 255), "255-byte name listed");
        let l255 = d.join("l".repeat(255));
        ok(symlink(b"x", &l255), "symlink 255");
        let e = libc::ENAMETOOLONG;
        fails(creat(&long, 0o644), e, "create 256");
        fails(mkdir(&long, 0o755), e, "mkdir 256");
        fails(stat(&long), e, "stat 256");
        fails(unlink(&long), e, "unlink 256");
        fails(rmdir(&long), e, "rmdir 256");
        fails(symlink(b"x", &long), e, "symlink 256");
        fails(link(&ok255, &long), e, "link 256");
        fails(rename(&ok255, &long), e, "rename to 256");
        fails(mknod(&long, libc::S_IFIFO | 0o644, 0), e, "mknod 256");
        let d255 = d.join("c".repeat(255));
        ok(mkdir(&d255, 0o755), "mkdir 255");
        ok(rename(&ok255, &d255.join("d".repeat(255))), "rename to 255");
    });
}

fn path_max(d: &Path) {
    // A path of more than PATH_MAX (4096) bytes is refused before reaching the filesystem;
    // a deep path just under it works.
    let comp = "p".repeat(200);
    let mut deep: PathBuf = d.to_owned();
    while deep.as_os_str().len() + 201 < 4000 {
        deep.push(&comp);
        ok(mkdir(&deep, 0o755), "mkdir deep");
    }
    drop(ok(creat(&deep.join("f"), 0o644), "create at depth"));
    let mut too_long = deep.clone();
    while too_long.as_os_str().len() <= 4096 {
        too_long.push(&comp);
    }
    fails(stat(&too_long), libc::ENAMETOOLONG, "stat > PATH_MAX");
    fails(
        creat(&too_long, 0o644),
        libc::ENAMETOOLONG,
        "create > PATH_MAX",
    );
}

fn enoent(d: &Path) {
    both(d, |d| {
        let (m, f) = (d.join("missing"), d.join("f"));
        drop(ok(creat(&f, 0o644), "create"));
        let e = libc::ENOENT;
        fails(open(&m, libc::O_RDONLY, 0), e, "open");
        fails(stat(&m), e, "stat");
        fails(lstat(&m), e, "lstat");
        fails(access(&m, libc::F_OK), e, "access");
        fails(unlink(&m), e, "unlink");
        fails(rmdir(&m), e, "rmdir");
        fails(rename(&m, &d.join("x")), e, "rename from");
        fails(link(&m, &d.join("x")), e, "link from");
        fails(readlink(&m), e, "readlink");
        fails(truncate(&m, 0), e, "truncate");
        fails(chmod(&m, 0o644), e, "chmod");
        fails(utimens(&m, None), e, "utimensat");
        fails(getxattr(&m, "user.x"), e, "getxattr");
        fails(creat(&m.join("f"), 0o644), e, "create in missing dir");
        fails(mkdir(&m.join("d"), 0o755), e, "mkdir in missing dir");
        fails(link(&f, &m.join("f")), e, "link into missing dir");
        fails(rename(&f, &m.join("f")), e, "rename into missing dir");
        fails(symlink(b"x", &m.join("l")), e, "symlink in missing dir");
        ok(symlink(b"nowhere", &d.join("dangling")), "dangling symlink");
        fails(stat(&d.join("dangling")), e, "stat through dangling");
        fails(
            open(&d.join("dangling"), libc::O_RDONLY, 0),
            e,
            "open through dangling",
        );
        ok(lstat(&d.join("dangling")), "lstat dangling");
        fails(
            symlink(b"", &d.join("empty")),
            e,
            "symlink with empty target",
        );
    });
}

fn enotdir(d: &Path) {
    both(d, |d| {
        let (f, sub) = (d.join("f"), d.join("sub"));
        drop(ok(creat(&f, 0o644), "create"));
        ok(mkdir(&sub, 0o755), "mkdir");
        let e = libc::ENOTDIR;
        fails(open(&f.join("x"), libc::O_RDONLY, 0), e, "open f/x");
        fails(creat(&f.join("x"), 0o644), e, "create f/x");
        fails(mkdir(&f.join("x"), 0o755), e, "mkdir f/x");
        fails(stat(&f.join("x")), e, "stat f/x");
        fails(
            open(&f, libc::O_RDONLY | libc::O_DIRECTORY, 0),
            e,
            "O_DIRECTORY on a file",
        );
        fails(rmdir(&f), e, "rmdir a file");
        fails(rename(&sub, &f), e, "rename dir over file");
        fails(list(&f), e, "opendir a file");
        let st = ok(stat(&sub), "stat");
        assert_eq!(st.st_mode & libc::S_IFMT, libc::S_IFDIR);
    });
}

fn eisdir(d: &Path) {
    both(d, |d| {
        let (f, sub) = (d.join("f"), d.join("sub"));
        drop(ok(creat(&f, 0o644), "create"));
        ok(mkdir(&sub, 0o755), "mkdir");
        let e = libc::EISDIR;
        fails(open(&sub, libc::O_WRONLY, 0), e, "open dir O_WRONLY");
        fails(open(&sub, libc::O_RDWR, 0), e, "open dir O_RDWR");
        fails(
            open(&sub, libc::O_RDONLY | libc::O_TRUNC, 0),
            e,
            "open dir O_TRUNC",
        );
        fails(unlink(&sub), e, "unlink a dir");
        fails(rename(&f, &sub), e, "rename file over dir");
        fails(truncate(&sub, 0), e, "truncate a dir");
        let fd = ok(
            open(&sub, libc::O_RDONLY | libc::O_DIRECTORY, 0),
            "open dir",
        );
        fails(fd.read(10), e, "read a dir");
    });
}

fn eexist(d: &Path) {
    both(d, |d| {
        let (f, sub, l) = (d.join("f"), d.join("sub"), d.join("l"));
        drop(ok(creat(&f, 0o644), "create"));
        ok(mkdir(&sub, 0o755), "mkdir");
        ok(symlink(b"nowhere", &l), "symlink");
        let e = libc::EEXIST;
        let excl = libc::O_CREAT | libc::O_EXCL | libc::O_WRONLY;
        fails(open(&f, excl, 0o644), e, "O_EXCL on a file");
        fails(open(&sub, excl, 0o644), e, "O_EXCL on a dir");
        fails(open(&l, excl, 0o644), e, "O_EXCL on a dangling symlink");
        fails(mkdir(&f, 0o755), e, "mkdir over a file");
        fails(mkdir(&sub, 0o755), e, "mkdir over a dir");
        fails(symlink(b"x", &f), e, "symlink over a file");
        fails(link(&f, &sub), e, "link over a dir");
        fails(link(&f, &l), e, "link over a symlink");
        fails(mknod(&f, libc::S_IFIFO | 0o644, 0), e, "mknod over a file");
        // O_CREAT without O_EXCL opens the existing file.
        ok(
            open(&f, libc::O_CREAT | libc::O_WRONLY, 0o644),
            "O_CREAT on existing",
        );
    });
}

fn einval(d: &Path) {
    both(d, |d| {
        let (sub, f) = (d.join("sub"), d.join("f"));
        ok(mkdir(&sub, 0o755), "mkdir");
        ok(mkdir(&sub.join("inner"), 0o755), "mkdir inner");
        drop(ok(creat(&f, 0o644), "create"));
        let e = libc::EINVAL;
        fails(rmdir(&sub.join(".")), e, "rmdir .");
        fails(
            rename(&sub, &sub.join("inner/x")),
            e,
            "rename dir into its own subtree",
        );
        fails(rename(&sub, &sub.join("x")), e, "rename dir into itself");
        fails(readlink(&f), e, "readlink a file");
        fails(readlink(&sub), e, "readlink a dir");
        fails(rmdir(&sub.join("..")), libc::ENOTEMPTY, "rmdir ..");
    });
}

fn eloop(d: &Path) {
    both(d, |d| {
        ok(symlink(b"l2", &d.join("l1")), "symlink l1");
        ok(symlink(b"l1", &d.join("l2")), "symlink l2");
        let e = libc::ELOOP;
        fails(open(&d.join("l1"), libc::O_RDONLY, 0), e, "open a loop");
        fails(stat(&d.join("l1")), e, "stat a loop");
        fails(creat(&d.join("l1/x"), 0o644), e, "create under a loop");
        drop(ok(creat(&d.join("f"), 0o644), "create"));
        ok(symlink(b"f", &d.join("s")), "symlink");
        let nofollow = libc::O_RDONLY | libc::O_NOFOLLOW;
        fails(
            open(&d.join("s"), nofollow, 0),
            e,
            "O_NOFOLLOW on a symlink",
        );
        // A chain of 40 links resolves; 41 is too many.
        let mut prev = b"f".to_vec();
        for i in 0..41 {
            let name = format!("c{i}");
            ok(symlink(&prev, &d.join(&name)), "chain");
            prev = name.into_bytes();
        }
        ok(stat(&d.join("c39")), "40 links");
        fails(stat(&d.join("c40")), e, "41 links");
    });
}

fn odd_bytes_round_trip(d: &Path) {
    let names: Vec<Vec<u8>> = vec![
        b"with space".to_vec(),
        b"new\nline".to_vec(),
        "\u{e9}t\u{e9} \u{65e5}\u{672c}".as_bytes().to_vec(),
        vec![0xff, 0xfe, 0x80, b'x'],
        b"-leading-dash".to_vec(),
        b".hidden".to_vec(),
        b"...".to_vec(),
    ];
    for n in &names {
        let p = d.join(std::ffi::OsStr::from_bytes(n));
        drop(ok(creat(&p, 0o644), "create odd name"));
        ok(stat(&p), "stat odd name");
    }
    let mut listed = ok(list(d), "list");
    listed.sort();
    let mut want = names.clone();
    want.sort();
    assert_eq!(listed, want);
}
