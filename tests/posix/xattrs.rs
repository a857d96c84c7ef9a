//! Extended attributes: user.* (set/get/list/remove with XATTR_CREATE/REPLACE, ENODATA,
//! ERANGE, E2BIG, on files and directories, permission checks), trusted.* and security.*
//! (root only), what symlinks and FIFOs refuse, and the `lustre.lov` layout attribute.

use std::path::Path;

use crate::sys::*;

pub const CASES: &[crate::Case] = &[
    ("user_namespace", user_namespace),
    ("flags_and_errors", flags_and_errors),
    ("sizes", sizes),
    ("on_directories", on_directories),
    ("permissions", permissions),
    ("privileged_namespaces", privileged_namespaces),
    ("symlinks_and_specials", symlinks_and_specials),
    ("lustre_lov", lustre_lov),
    ("unknown_namespace", unknown_namespace),
];

fn user_namespace(d: &Path) {
    let f = d.join("f");
    drop(ok(creat(&f, 0o644), "create"));
    ok(setxattr(&f, "user.a", b"one", 0), "set");
    ok(setxattr(&f, "user.b", b"", 0), "set empty value");
    ok(
        setxattr(&f, "user.c", &[0, 1, 2, 255], 0),
        "set binary value",
    );
    assert_eq!(ok(getxattr(&f, "user.a"), "get"), b"one");
    assert_eq!(ok(getxattr(&f, "user.b"), "get empty"), b"");
    assert_eq!(ok(getxattr(&f, "user.c"), "get binary"), [0, 1, 2, 255]);
    ok(setxattr(&f, "user.a", b"two!", 0), "overwrite");
    assert_eq!(ok(getxattr(&f, "user.a"), "get"), b"two!");
    let names = ok(listxattr(&f), "list");
    for n in ["user.a", "user.b", "user.c"] {
        assert!(names.iter().any(|x| x == n), "{n} not listed: {names:?}");
    }
    ok(removexattr(&f, "user.b"), "remove");
    assert!(!ok(listxattr(&f), "list").iter().any(|x| x == "user.b"));
    fails(getxattr(&f, "user.b"), libc::ENODATA, "get removed");
    // The values survive a rename and are the file's, not the name's.
    ok(rename(&f, &d.join("g")), "rename");
    assert_eq!(
        ok(getxattr(&d.join("g"), "user.a"), "get after rename"),
        b"two!"
    );
}

fn flags_and_errors(d: &Path) {
    let f = d.join("f");
    drop(ok(creat(&f, 0o644), "create"));
    ok(
        setxattr(&f, "user.x", b"1", libc::XATTR_CREATE),
        "XATTR_CREATE new",
    );
    fails(
        setxattr(&f, "user.x", b"2", libc::XATTR_CREATE),
        libc::EEXIST,
        "CREATE exists",
    );
    ok(
        setxattr(&f, "user.x", b"3", libc::XATTR_REPLACE),
        "XATTR_REPLACE existing",
    );
    fails(
        setxattr(&f, "user.y", b"4", libc::XATTR_REPLACE),
        libc::ENODATA,
        "REPLACE new",
    );
    assert_eq!(ok(getxattr(&f, "user.x"), "get"), b"3");
    fails(getxattr(&f, "user.none"), libc::ENODATA, "get missing");
    fails(
        removexattr(&f, "user.none"),
        libc::ENODATA,
        "remove missing",
    );
    fails(
        setxattr(&f, "user.z", b"1", 0x100),
        libc::EINVAL,
        "unknown flag",
    );
    fails(setxattr(&f, "", b"1", 0), libc::ERANGE, "empty name");
    fails(
        getxattr(&d.join("missing"), "user.x"),
        libc::ENOENT,
        "missing file",
    );
}

fn sizes(d: &Path) {
    let f = d.join("f");
    drop(ok(creat(&f, 0o644), "create"));
    ok(setxattr(&f, "user.v", b"0123456789", 0), "set");
    assert_eq!(ok(getxattr_sized(&f, "user.v", 0), "size probe").len(), 10);
    fails(
        getxattr_sized(&f, "user.v", 4),
        libc::ERANGE,
        "buffer too small",
    );
    let want = ok(listxattr_sized(&f, 0), "list size probe");
    assert!(want > 0);
    fails(
        listxattr_sized(&f, 1),
        libc::ERANGE,
        "list buffer too small",
    );
    // Names up to 255 bytes, values up to 64 KiB.
    let long = format!("user.{}", "n".repeat(250));
    ok(setxattr(&f, &long, b"v", 0), "255-byte name");
    let too_long = format!("user.{}", "n".repeat(251));
    fails(
        setxattr(&f, &too_long, b"v", 0),
        libc::ERANGE,
        "256-byte name",
    );
    fails(getxattr(&f, &too_long), libc::ERANGE, "get 256-byte name");
    let big = vec![7u8; 65536];
    ok(setxattr(&f, "user.big", &big, 0), "64 KiB value");
    assert_eq!(ok(getxattr(&f, "user.big"), "get 64 KiB"), big);
    fails(
        setxattr(&f, "user.big2", &[7u8; 65537], 0),
        libc::E2BIG,
        "value over 64 KiB",
    );
}

fn on_directories(d: &Path) {
    let sub = d.join("sub");
    ok(mkdir(&sub, 0o755), "mkdir");
    ok(setxattr(&sub, "user.dir", b"yes", 0), "set on a dir");
    assert_eq!(ok(getxattr(&sub, "user.dir"), "get"), b"yes");
    ok(removexattr(&sub, "user.dir"), "remove");
    fails(getxattr(&sub, "user.dir"), libc::ENODATA, "get removed");
}

fn permissions(d: &Path) {
    let (pubf, secret, mine) = (d.join("pub"), d.join("secret"), d.join("mine"));
    for (p, m) in [(&pubf, 0o644), (&secret, 0o600)] {
        drop(ok(creat(p, m), "create"));
        ok(setxattr(p, "user.k", b"v", 0), "set");
    }
    ok(nobody(|| creat(&mine, 0o600)), "nobody create");
    ok(nobody(|| getxattr(&pubf, "user.k")), "nobody reads on 0644");
    ok(nobody(|| listxattr(&pubf)), "nobody lists on 0644");
    fails(
        nobody(|| getxattr(&secret, "user.k")),
        libc::EACCES,
        "nobody reads on 0600",
    );
    fails(
        nobody(|| setxattr(&pubf, "user.k", b"w", 0)),
        libc::EACCES,
        "nobody writes 0644",
    );
    fails(
        nobody(|| removexattr(&pubf, "user.k")),
        libc::EACCES,
        "nobody removes on 0644",
    );
    ok(
        nobody(|| setxattr(&mine, "user.m", b"own", 0)),
        "nobody sets on own",
    );
    ok(
        nobody(|| removexattr(&mine, "user.m")),
        "nobody removes on own",
    );
    // Root is not held to the mode.
    ok(chmod(&mine, 0), "chmod 0");
    ok(setxattr(&mine, "user.r", b"root", 0), "root sets on 0000");
}

fn privileged_namespaces(d: &Path) {
    let f = d.join("f");
    drop(ok(creat(&f, 0o666), "create"));
    ok(setxattr(&f, "trusted.t", b"1", 0), "root sets trusted");
    assert_eq!(ok(getxattr(&f, "trusted.t"), "root gets trusted"), b"1");
    ok(setxattr(&f, "security.s", b"2", 0), "root sets security");
    assert_eq!(ok(getxattr(&f, "security.s"), "root gets security"), b"2");
    let names = ok(listxattr(&f), "list");
    assert!(names.iter().any(|n| n == "trusted.t") && names.iter().any(|n| n == "security.s"));
    fails(
        nobody(|| setxattr(&f, "trusted.u", b"1", 0)),
        libc::EPERM,
        "nobody sets trusted",
    );
    // Linux answers ENODATA for trusted.* without CAP_SYS_ADMIN, present or not.
    fails(
        nobody(|| getxattr(&f, "trusted.t")),
        libc::ENODATA,
        "nobody gets trusted",
    );
    fails(
        nobody(|| removexattr(&f, "trusted.t")),
        libc::EPERM,
        "nobody removes trusted",
    );
    fails(
        nobody(|| setxattr(&f, "security.u", b"1", 0)),
        libc::EPERM,
        "nobody sets security",
    );
    ok(
        nobody(|| getxattr(&f, "security.s")),
        "nobody gets security",
    );
    // trusted.* names are listed to root only.
    let listed = nobody(|| {
        let names = listxattr(&f)?;
        ensure(!names.iter().any(|n| n.starts_with("trusted.")))?;
        ensure(names.iter().any(|n| n == "security.s"))
    });
    ok(listed, "nobody lists no trusted.* name");
    ok(removexattr(&f, "trusted.t"), "root removes trusted");
    ok(removexattr(&f, "security.s"), "root removes security");
}

fn symlinks_and_specials(d: &Path) {
    drop(ok(creat(&d.join("f"), 0o666), "create"));
    ok(symlink(b"f", &d.join("l")), "symlink");
    ok(mknod(&d.join("p"), libc::S_IFIFO | 0o666, 0), "fifo");
    // user.* is for regular files and directories only.
    fails(
        lsetxattr(&d.join("l"), "user.a", b"1", 0),
        libc::EPERM,
        "user.* on a symlink",
    );
    let r = nobody(|| setxattr(&d.join("p"), "user.a", b"1", 0));
    fails(r, libc::EPERM, "user.* on a fifo (not owner)");
    // Through the link: the target gets it.
    ok(
        setxattr(&d.join("l"), "user.via", b"1", 0),
        "set through a symlink",
    );
    assert_eq!(
        ok(getxattr(&d.join("f"), "user.via"), "get on target"),
        b"1"
    );
    ok(
        lsetxattr(&d.join("l"), "trusted.onlink", b"1", 0),
        "root trusted.* on a symlink",
    );
}

fn lustre_lov(d: &Path) {
    let f = d.join("f");
    drop(ok(creat(&f, 0o644), "create"));
    let lov = ok(getxattr(&f, "lustre.lov"), "get lustre.lov");
    assert!(lov.len() >= 32, "lustre.lov is {} bytes", lov.len());
    assert!(ok(listxattr(&f), "list").iter().any(|n| n == "lustre.lov"));
    ok(
        nobody(|| getxattr(&f, "lustre.lov")),
        "nobody reads the layout",
    );
}

/// Names outside the namespaces Linux knows are refused, as local filesystems refuse them.
fn unknown_namespace(d: &Path) {
    let f = d.join("f");
    drop(ok(creat(&f, 0o644), "create"));
    fails(
        setxattr(&f, "bogus.x", b"v", 0),
        libc::EOPNOTSUPP,
        "set bogus.x",
    );
    fails(getxattr(&f, "bogus.x"), libc::EOPNOTSUPP, "get bogus.x");
}
