//! Hard links, symbolic links and rename: exact link counts, the errors of link(2),
//! symlink targets up to PATH_MAX, rename over files and empty directories, the errors of
//! rename(2), renameat2 flags.

use std::path::Path;

use crate::sys::*;
use crate::NOBODY;

pub const CASES: &[crate::Case] = &[
    ("hard_link_counts", hard_link_counts),
    ("link_errors", link_errors),
    ("symlink_targets", symlink_targets),
    ("rename_files", rename_files),
    ("rename_dirs", rename_dirs),
    ("rename_errors", rename_errors),
    ("renameat2_flags", renameat2_flags),
];

fn nlink(p: &Path) -> u64 {
    ok(lstat(p), "lstat").st_nlink
}

fn hard_link_counts(d: &Path) {
    let f = d.join("f");
    std::fs::write(&f, b"shared").unwrap();
    let ino = ok(stat(&f), "stat").st_ino;
    for i in 0..5 {
        ok(link(&f, &d.join(format!("h{i}"))), "link");
        assert_eq!(nlink(&f), i + 2);
    }
    assert_eq!(ok(stat(&d.join("h3")), "stat").st_ino, ino, "same inode");
    assert_eq!(std::fs::read(d.join("h4")).unwrap(), b"shared");
    std::fs::write(d.join("h2"), b"changed").unwrap();
    assert_eq!(
        std::fs::read(&f).unwrap(),
        b"changed",
        "one file under two names"
    );
    ok(unlink(&f), "unlink the first name");
    assert_eq!(nlink(&d.join("h0")), 5);
    ok(
        rename(&d.join("h0"), &d.join("h1")),
        "rename one link over another",
    );
    // Two links of one file: rename does nothing, both names stay.
    assert_eq!(nlink(&d.join("h1")), 5, "rename between two links");
    ok(lstat(&d.join("h0")), "old name kept");
    for i in 0..5 {
        ok(unlink(&d.join(format!("h{i}"))), "unlink");
    }
    assert_eq!(ok(list(d), "list").len(), 0);
    // Renaming over one of two links of a file leaves the other with one link.
    std::fs::write(d.join("x"), b"x").unwrap();
    std::fs::write(d.join("y"), b"y").unwrap();
    ok(link(&d.join("y"), &d.join("y2")), "link");
    ok(
        rename(&d.join("x"), &d.join("y")),
        "rename over a linked file",
    );
    assert_eq!((nlink(&d.join("y")), nlink(&d.join("y2"))), (1, 1));
    assert_eq!(std::fs::read(d.join("y2")).unwrap(), b"y");
    for n in ["y", "y2"] {
        ok(unlink(&d.join(n)), "unlink");
    }
    // Links to a symlink link the symlink itself.
    ok(symlink(b"nowhere", &d.join("s")), "symlink");
    ok(link(&d.join("s"), &d.join("s2")), "link a symlink");
    assert_eq!(nlink(&d.join("s")), 2);
    assert_eq!(ok(readlink(&d.join("s2")), "readlink"), b"nowhere");
}

fn link_errors(d: &Path) {
    let (f, sub) = (d.join("f"), d.join("sub"));
    drop(ok(creat(&f, 0o644), "create"));
    ok(mkdir(&sub, 0o755), "mkdir");
    fails(link(&sub, &d.join("dl")), libc::EPERM, "link a directory");
    fails(link(&f, &sub), libc::EEXIST, "link over a dir");
    fails(link(&f, &f), libc::EEXIST, "link onto itself");
    fails(
        link(&d.join("missing"), &d.join("x")),
        libc::ENOENT,
        "link a missing file",
    );
    fails(
        link(&f, &d.join("missing/x")),
        libc::ENOENT,
        "link into a missing dir",
    );
    fails(link(&f, &f.join("x")), libc::ENOTDIR, "link under a file");
    // Unprivileged: own files yes; others' files as fs.protected_hardlinks says.
    ok(nobody(|| creat(&d.join("mine"), 0o644)), "nobody create");
    ok(
        nobody(|| link(&d.join("mine"), &d.join("mine2"))),
        "nobody links own",
    );
    let protected = std::fs::read_to_string("/proc/sys/fs/protected_hardlinks")
        .map(|s| s.trim() == "1")
        .unwrap_or(false);
    let r = nobody(|| link(&f, &d.join("roots")));
    if protected {
        fails(r, libc::EPERM, "link to root's file (protected_hardlinks)");
    } else {
        ok(r, "link to root's file");
    }
    ok(chmod(d, 0o755), "chmod 0755");
    fails(
        nobody(|| link(&d.join("mine"), &d.join("m3"))),
        libc::EACCES,
        "no write on dir",
    );
}

fn symlink_targets(d: &Path) {
    let targets: Vec<Vec<u8>> = vec![
        b"f".to_vec(),
        b"../../somewhere/else".to_vec(),
        b"/absolute/path".to_vec(),
        vec![b'x'; 255],
        [b"a/".repeat(2046), b"bcd".to_vec()].concat(),
        vec![b'y'; 4095],
    ];
    for (i, t) in targets.iter().enumerate() {
        let l = d.join(format!("l{i}"));
        ok(symlink(t, &l), "symlink");
        assert_eq!(&ok(readlink(&l), "readlink"), t, "target {i}");
        let st = ok(lstat(&l), "lstat");
        assert_eq!(st.st_mode & libc::S_IFMT, libc::S_IFLNK);
        assert_eq!(st.st_size as usize, t.len(), "symlink size");
    }
    fails(
        symlink(&[b'z'; 4096], &d.join("too")),
        libc::ENAMETOOLONG,
        "4096-byte target",
    );
    // Following a relative link, and the link's own mode and owner.
    std::fs::write(d.join("f"), b"through").unwrap();
    assert_eq!(std::fs::read(d.join("l0")).unwrap(), b"through");
    // The link's own times, with AT_SYMLINK_NOFOLLOW.
    let c = std::ffi::CString::new(d.join("l1").as_os_str().as_encoded_bytes()).unwrap();
    let ts = [libc::timespec {
        tv_sec: 1000,
        tv_nsec: 0,
    }; 2];
    let flags = libc::AT_SYMLINK_NOFOLLOW;
    // SAFETY: valid C string and two timespecs.
    let r = unsafe { libc::utimensat(libc::AT_FDCWD, c.as_ptr(), ts.as_ptr(), flags) };
    assert_eq!(r, 0, "utimensat AT_SYMLINK_NOFOLLOW");
    assert_eq!(ok(lstat(&d.join("l1")), "lstat").st_mtime, 1000);
    ok(nobody(|| symlink(b"f", &d.join("nl"))), "nobody symlink");
    let st = ok(lstat(&d.join("nl")), "lstat");
    assert_eq!((st.st_uid, st.st_mode & 0o777), (NOBODY, 0o777));
}

fn rename_files(d: &Path) {
    let (a, b) = (d.join("a"), d.join("b"));
    std::fs::write(&a, b"new").unwrap();
    std::fs::write(&b, b"old").unwrap();
    let ino = ok(stat(&a), "stat").st_ino;
    ok(rename(&a, &b), "rename over a file");
    assert_eq!(std::fs::read(&b).unwrap(), b"new");
    assert_eq!(ok(stat(&b), "stat").st_ino, ino);
    fails(stat(&a), libc::ENOENT, "old name gone");
    assert_eq!(ok(list(d), "list"), vec![b"b".to_vec()]);
    // Across directories, and onto the same name.
    ok(mkdir(&d.join("sub"), 0o755), "mkdir");
    ok(rename(&b, &d.join("sub/c")), "rename across dirs");
    ok(
        rename(&d.join("sub/c"), &d.join("sub/c")),
        "rename onto itself",
    );
    assert_eq!(std::fs::read(d.join("sub/c")).unwrap(), b"new");
    // A symlink is renamed, not its target.
    ok(symlink(b"sub/c", &d.join("l")), "symlink");
    ok(rename(&d.join("l"), &d.join("l2")), "rename a symlink");
    assert_eq!(ok(readlink(&d.join("l2")), "readlink"), b"sub/c");
    // As nobody in a directory nobody owns.
    ok(chown(&d.join("sub"), NOBODY, NOBODY), "chown");
    ok(
        nobody(|| std::fs::write(d.join("sub/n"), b"n").map_err(|_| CHILD_CHECK_FAILED)),
        "w",
    );
    ok(
        nobody(|| rename(&d.join("sub/n"), &d.join("sub/m"))),
        "nobody renames",
    );
    ok(
        nobody(|| rename(&d.join("sub/m"), &d.join("sub/c"))),
        "nobody replaces root's file",
    );
}

fn rename_dirs(d: &Path) {
    let (a, b, c) = (d.join("a"), d.join("b"), d.join("c"));
    for p in [&a, &b, &c] {
        ok(mkdir(p, 0o755), "mkdir");
    }
    drop(ok(creat(&a.join("inside"), 0o644), "create"));
    ok(rename(&a, &b), "rename dir over empty dir");
    assert!(ok(stat(&b.join("inside")), "contents moved").st_size == 0);
    fails(stat(&a), libc::ENOENT, "old name gone");
    // Moving a directory to another parent moves its ".." link count.
    ok(mkdir(&c.join("deep"), 0o755), "mkdir");
    let (nc, nd) = (nlink(&c), nlink(d));
    ok(rename(&b, &c.join("b")), "rename dir into another");
    assert_eq!(nlink(&c), nc + 1, "new parent's nlink");
    assert_eq!(nlink(d), nd - 1, "old parent's nlink");
    assert_eq!(ok(stat(&c.join("b/inside")), "stat").st_size, 0);
    // A directory over an empty one in another parent: the old parent loses a link, the
    // new one keeps its count.
    ok(mkdir(&d.join("x"), 0o755), "mkdir");
    ok(mkdir(&c.join("empty"), 0o755), "mkdir");
    let (nc, nd) = (nlink(&c), nlink(d));
    ok(
        rename(&d.join("x"), &c.join("empty")),
        "rename over an empty dir elsewhere",
    );
    assert_eq!((nlink(&c), nlink(d)), (nc, nd - 1), "parents' nlink");
    // Renaming a parent keeps its subtree.
    ok(rename(&c, &d.join("c2")), "rename a parent");
    ok(stat(&d.join("c2/b/inside")), "subtree followed");
}

fn rename_errors(d: &Path) {
    let (f, e, full, sub) = (d.join("f"), d.join("e"), d.join("full"), d.join("full/sub"));
    drop(ok(creat(&f, 0o644), "create"));
    ok(mkdir(&e, 0o755), "mkdir");
    ok(mkdir(&full, 0o755), "mkdir");
    ok(mkdir(&sub, 0o755), "mkdir");
    fails(rename(&f, &e), libc::EISDIR, "file over dir");
    fails(rename(&e, &f), libc::ENOTDIR, "dir over file");
    fails(rename(&e, &full), libc::ENOTEMPTY, "dir over non-empty dir");
    fails(
        rename(&full, &sub.join("x")),
        libc::EINVAL,
        "dir into its own subtree",
    );
    fails(
        rename(&d.join("missing"), &d.join("x")),
        libc::ENOENT,
        "missing source",
    );
    fails(
        rename(&f, &d.join("missing/x")),
        libc::ENOENT,
        "into a missing dir",
    );
    fails(rename(&f, &f.join("x")), libc::ENOTDIR, "under a file");
    fails(rename(&e.join("."), &d.join("x")), libc::EBUSY, "rename .");
    // Unprivileged, into a directory without write permission.
    ok(chmod(&e, 0o755), "chmod");
    let r = nobody(|| rename(&d.join("f"), &e.join("f")));
    fails(r, libc::EACCES, "nobody renames into a 0755 root dir");
}

fn renameat2_flags(d: &Path) {
    let (a, b) = (d.join("a"), d.join("b"));
    std::fs::write(&a, b"A").unwrap();
    std::fs::write(&b, b"B").unwrap();
    let noreplace = libc::RENAME_NOREPLACE;
    fails(
        rename2(&a, &b, noreplace),
        libc::EEXIST,
        "RENAME_NOREPLACE over existing",
    );
    ok(
        rename2(&a, &d.join("c"), noreplace),
        "RENAME_NOREPLACE to a new name",
    );
    assert_eq!(std::fs::read(d.join("c")).unwrap(), b"A");
    fails(
        rename2(&b, &d.join("c"), 0x80),
        libc::EINVAL,
        "unknown flag",
    );
}
