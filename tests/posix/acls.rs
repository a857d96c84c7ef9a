//! POSIX ACLs through the mount: the kernel evaluates `system.posix_acl_access` in its
//! permission checks (named users and groups, the mask), setting an access ACL sets the mode
//! (the group bits are the mask; an ACL of the base entries only is just the mode), chmod
//! rewrites the ACL, and new files and directories inherit their directory's default ACL
//! in place of the umask, as on a local Linux filesystem.
//!
//! The ACLs are built and read here in the xattr format (what `setfacl` and `getfacl` do
//! through libacl), so the suite needs no `acl` package: a header (version 2) and one entry
//! per line of `getfacl`, each tag (u16), permissions (u16) and id (u32), little endian.

use std::path::Path;

use crate::sys::*;
use crate::{NOBODY, OTHER};

pub const CASES: &[crate::Case] = &[
    ("deny_named_user", deny_named_user),
    ("grant_named_user_and_group", grant_named_user_and_group),
    ("mask_limits", mask_limits),
    ("setting_acl_sets_mode", setting_acl_sets_mode),
    ("chmod_updates_acl", chmod_updates_acl),
    ("set_acl_clears_setgid", set_acl_clears_setgid),
    ("default_acl_inheritance", default_acl_inheritance),
    ("default_acl_replaces_umask", default_acl_replaces_umask),
    ("read_back_and_errors", read_back_and_errors),
];

const ACCESS: &str = "system.posix_acl_access";
const DEFAULT: &str = "system.posix_acl_default";

/// Entry tags (`ACL_USER_OBJ` …).
mod tag {
    pub const USER_OBJ: u16 = 0x01;
    pub const USER: u16 = 0x02;
    pub const GROUP_OBJ: u16 = 0x04;
    pub const GROUP: u16 = 0x08;
    pub const MASK: u16 = 0x10;
    pub const OTHER: u16 = 0x20;
}

/// The id of entries that name nobody (`ACL_UNDEFINED_ID`).
const NO_ID: u32 = u32::MAX;

/// The xattr value of an ACL written as `setfacl` takes it in short form
/// (`u::rw-,u:65534:r--,g::r--,m::r--,o::---`), entries in the order given.
fn acl(text: &str) -> Vec<u8> {
    let mut out = 2u32.to_le_bytes().to_vec();
    for entry in text.split(',') {
        let parts: Vec<&str> = entry.split(':').collect();
        let [kind, id, perms] = parts[..] else {
            panic!("bad ACL entry {entry:?}");
        };
        let named = !id.is_empty();
        let t = match (kind, named) {
            ("u", false) => tag::USER_OBJ,
            ("u", true) => tag::USER,
            ("g", false) => tag::GROUP_OBJ,
            ("g", true) => tag::GROUP,
            ("m", false) => tag::MASK,
            ("o", false) => tag::OTHER,
            _ => panic!("bad ACL entry {entry:?}"),
        };
        let id: u32 = if named { id.parse().unwrap() } else { NO_ID };
        let mut perm = 0u16;
        for (bit, c) in [(4, 'r'), (2, 'w'), (1, 'x')] {
            if perms.contains(c) {
                perm |= bit;
            }
        }
        out.extend_from_slice(&t.to_le_bytes());
        out.extend_from_slice(&perm.to_le_bytes());
        out.extend_from_slice(&id.to_le_bytes());
    }
    out
}

/// An ACL xattr value in the short form [`acl`] takes (what `getfacl` shows).
fn text(value: &[u8]) -> String {
    assert!(
        value.len() >= 4 && (value.len() - 4).is_multiple_of(8),
        "ACL of {}",
        value.len()
    );
    assert_eq!(value[..4], 2u32.to_le_bytes(), "ACL version");
    let mut out = Vec::new();
    for e in value[4..].chunks_exact(8) {
        let t = u16::from_le_bytes([e[0], e[1]]);
        let perm = u16::from_le_bytes([e[2], e[3]]);
        let id = u32::from_le_bytes([e[4], e[5], e[6], e[7]]);
        let (kind, id) = match t {
            tag::USER_OBJ => ("u", String::new()),
            tag::USER => ("u", id.to_string()),
            tag::GROUP_OBJ => ("g", String::new()),
            tag::GROUP => ("g", id.to_string()),
            tag::MASK => ("m", String::new()),
            tag::OTHER => ("o", String::new()),
            _ => panic!("unknown ACL tag {t:#x}"),
        };
        let bit = |b: u16, c: char| if perm & b != 0 { c } else { '-' };
        out.push(format!(
            "{kind}:{id}:{}{}{}",
            bit(4, 'r'),
            bit(2, 'w'),
            bit(1, 'x')
        ));
    }
    out.join(",")
}

fn set_acl(p: &Path, which: &str, text: &str) -> Sys<()> {
    setxattr(p, which, &acl(text), 0)
}

/// The ACL of `p` as `getfacl` would show it, or the errno (ENODATA: none).
fn get_acl(p: &Path, which: &str) -> Sys<String> {
    getxattr(p, which).map(|v| text(&v))
}

#[track_caller]
fn assert_acl(p: &Path, which: &str, want: &str) {
    assert_eq!(
        ok(get_acl(p, which), "read the ACL"),
        want,
        "{which} of {p:?}"
    );
}

#[track_caller]
fn assert_perm(p: &Path, want: u32) {
    assert_eq!(mode(p) & 0o7777, want, "mode of {p:?}");
}

/// A file of root's with `mode` holding `data`.
fn root_file(p: &Path, mode: u32) {
    std::fs::write(p, b"data").unwrap();
    ok(chmod(p, mode), "chmod");
}

fn read_as(uid: u32, p: &Path) -> Sys<()> {
    as_user(uid, || open(p, libc::O_RDONLY, 0).map(drop))
}

fn write_as(uid: u32, p: &Path) -> Sys<()> {
    as_user(uid, || open(p, libc::O_WRONLY, 0).map(drop))
}

fn deny_named_user(d: &Path) {
    let f = d.join("f");
    root_file(&f, 0o644);
    ok(read_as(NOBODY, &f), "nobody reads 0644");
    ok(
        set_acl(&f, ACCESS, "u::rw-,u:65534:---,g::r--,m::r--,o::r--"),
        "setfacl",
    );
    fails(
        read_as(NOBODY, &f),
        libc::EACCES,
        "nobody denied by u:65534:---",
    );
    fails(
        nobody(|| access(&f, libc::R_OK)),
        libc::EACCES,
        "access(R_OK) for nobody",
    );
    ok(read_as(OTHER, &f), "another user reads through o::r--");
    ok(read_as(0, &f), "root reads");
    assert_perm(&f, 0o644);

    // On a directory: no listing, no search.
    let dir = d.join("dir");
    ok(mkdir(&dir, 0o755), "mkdir");
    std::fs::write(dir.join("x"), b"x").unwrap();
    ok(
        set_acl(&dir, ACCESS, "u::rwx,u:65534:---,g::r-x,m::r-x,o::r-x"),
        "setfacl dir",
    );
    fails(nobody(|| list(&dir)), libc::EACCES, "nobody lists");
    fails(
        nobody(|| stat(&dir.join("x"))),
        libc::EACCES,
        "nobody searches",
    );
    ok(
        as_user(OTHER, || list(&dir).map(drop)),
        "another user lists",
    );
}

fn grant_named_user_and_group(d: &Path) {
    let f = d.join("f");
    root_file(&f, 0o600);
    fails(read_as(NOBODY, &f), libc::EACCES, "nobody reads 0600");
    ok(
        set_acl(
            &f,
            ACCESS,
            "u::rw-,u:65534:rw-,g::---,g:4242:r--,m::rw-,o::---",
        ),
        "setfacl",
    );
    assert_perm(&f, 0o660);
    ok(read_as(NOBODY, &f), "nobody reads through u:65534:rw-");
    ok(write_as(NOBODY, &f), "nobody writes through u:65534:rw-");
    // OTHER's group (4242) is named.
    ok(read_as(OTHER, &f), "group 4242 reads");
    fails(write_as(OTHER, &f), libc::EACCES, "group 4242 writes");
    fails(
        as_user_groups(1234, 1234, &[], || open(&f, libc::O_RDONLY, 0).map(drop)),
        libc::EACCES,
        "a user named nowhere",
    );

    // Nobody shares its own file with another user.
    let mine = d.join("mine");
    let r = as_user(NOBODY, || {
        drop(creat(&mine, 0o600)?);
        set_acl(&mine, ACCESS, "u::rw-,u:4242:r--,g::---,m::r--,o::---")
    });
    ok(r, "nobody sets an ACL on its file");
    assert_perm(&mine, 0o640);
    ok(read_as(OTHER, &mine), "the named user reads");
    fails(
        write_as(OTHER, &mine),
        libc::EACCES,
        "the named user writes",
    );
    ok(
        as_user(NOBODY, || {
            let a = get_acl(&mine, ACCESS)?;
            ensure(a == "u::rw-,u:4242:r--,g::---,m::r--,o::---")
        }),
        "nobody reads its ACL back",
    );
}

fn mask_limits(d: &Path) {
    let f = d.join("f");
    root_file(&f, 0o644);
    ok(
        set_acl(&f, ACCESS, "u::rw-,u:65534:rwx,g::r--,m::r--,o::---"),
        "setfacl",
    );
    assert_perm(&f, 0o640);
    ok(read_as(NOBODY, &f), "read through the mask");
    fails(write_as(NOBODY, &f), libc::EACCES, "write beyond the mask");
    // chmod g-r takes the mask to nothing: the named entry gives nothing either.
    ok(chmod(&f, 0o600), "chmod 600");
    assert_acl(&f, ACCESS, "u::rw-,u:65534:rwx,g::r--,m::---,o::---");
    fails(read_as(NOBODY, &f), libc::EACCES, "read with mask ---");
    ok(chmod(&f, 0o660), "chmod 660");
    assert_acl(&f, ACCESS, "u::rw-,u:65534:rwx,g::r--,m::rw-,o::---");
    ok(write_as(NOBODY, &f), "write with mask rw-");
    fails(
        nobody(|| access(&f, libc::X_OK)),
        libc::EACCES,
        "no execute: the mask has none",
    );
}

fn setting_acl_sets_mode(d: &Path) {
    let f = d.join("f");
    root_file(&f, 0o644);
    // The base entries only: that is the mode, and no ACL is kept (as ext4 does).
    ok(set_acl(&f, ACCESS, "u::r--,g::rw-,o::--x"), "setfacl base");
    assert_perm(&f, 0o461);
    fails(get_acl(&f, ACCESS), libc::ENODATA, "no ACL kept");
    assert!(!ok(listxattr(&f), "listxattr").contains(&ACCESS.to_string()));
    // With a mask the group bits are the mask.
    let full = "u::rwx,u:65534:r--,g::r-x,m::rw-,o::r--";
    ok(set_acl(&f, ACCESS, full), "setfacl");
    assert_perm(&f, 0o764);
    assert_acl(&f, ACCESS, full);
    assert!(ok(listxattr(&f), "listxattr").contains(&ACCESS.to_string()));
    // The owner sets its own; nobody else may (not even with write permission).
    let mine = d.join("mine");
    let r = as_user(NOBODY, || {
        drop(creat(&mine, 0o644)?);
        set_acl(&mine, ACCESS, "u::rw-,g::---,o::---")?;
        ensure(mode(&mine) & 0o7777 == 0o600)
    });
    ok(r, "nobody sets the ACL of its file");
    ok(chmod(&f, 0o666), "chmod");
    fails(
        nobody(|| set_acl(&f, ACCESS, "u::rw-,u:65534:rwx,g::r--,m::rwx,o::r--")),
        libc::EPERM,
        "nobody sets root's ACL",
    );
    // Removing the ACL leaves the mode as it is.
    ok(set_acl(&f, ACCESS, full), "setfacl");
    ok(removexattr(&f, ACCESS), "setfacl -b");
    fails(get_acl(&f, ACCESS), libc::ENODATA, "ACL removed");
    assert_perm(&f, 0o764);
    ok(read_as(NOBODY, &f), "o::r-- only: nobody reads");
}

fn chmod_updates_acl(d: &Path) {
    let f = d.join("f");
    let r = as_user(NOBODY, || {
        drop(creat(&f, 0o600)?);
        set_acl(&f, ACCESS, "u::rw-,u:4242:rw-,g::r--,m::rw-,o::---")?;
        ensure(mode(&f) & 0o7777 == 0o660)?;
        chmod(&f, 0o640)
    });
    ok(r, "nobody sets an ACL and chmods");
    // chmod rewrote owner, mask and other; the named entry stays.
    assert_acl(&f, ACCESS, "u::rw-,u:4242:rw-,g::r--,m::r--,o::---");
    ok(read_as(OTHER, &f), "read through the named entry");
    fails(
        write_as(OTHER, &f),
        libc::EACCES,
        "the mask took write away",
    );
    ok(chmod(&f, 0o755), "chmod as root");
    assert_acl(&f, ACCESS, "u::rwx,u:4242:rw-,g::r--,m::r-x,o::r-x");
    assert_perm(&f, 0o755);
}

fn set_acl_clears_setgid(d: &Path) {
    let acl = "u::rw-,u:4242:r--,g::r--,m::r--,o::r--";
    // Nobody owns the file but is not in its group (0): setting an ACL drops S_ISGID.
    let (outside, inside) = (d.join("outside"), d.join("inside"));
    for (p, gid) in [(&outside, 0), (&inside, NOBODY)] {
        root_file(p, 0o644);
        ok(chown(p, NOBODY, gid), "chown");
        ok(chmod(p, 0o2644), "chmod g+s");
    }
    ok(nobody(|| set_acl(&outside, ACCESS, acl)), "setfacl outside");
    assert_perm(&outside, 0o644);
    ok(nobody(|| set_acl(&inside, ACCESS, acl)), "setfacl inside");
    assert_perm(&inside, 0o2644);
    // Root keeps it anywhere.
    let root_set = d.join("root");
    root_file(&root_set, 0o644);
    ok(chown(&root_set, NOBODY, NOBODY), "chown");
    ok(chmod(&root_set, 0o2644), "chmod g+s");
    ok(set_acl(&root_set, ACCESS, acl), "setfacl as root");
    assert_perm(&root_set, 0o2644);
}

fn default_acl_inheritance(d: &Path) {
    let shared = d.join("shared");
    ok(mkdir(&shared, 0o777), "mkdir");
    ok(chmod(&shared, 0o777), "chmod");
    let default = "u::rwx,u:65534:rwx,g::r-x,m::rwx,o::---";
    ok(set_acl(&shared, DEFAULT, default), "setfacl -d");
    assert_acl(&shared, DEFAULT, default);
    fails(
        get_acl(&shared, ACCESS),
        libc::ENODATA,
        "no access ACL on the dir",
    );
    assert_perm(&shared, 0o777);

    // A file: the default ACL masked by the mode it is created with; no umask.
    let f = shared.join("f");
    let r = as_user(0, || {
        // SAFETY: plain syscall in the forked child.
        unsafe { libc::umask(0o022) };
        drop(creat(&f, 0o666)?);
        mknod(&shared.join("fifo"), libc::S_IFIFO | 0o640, 0)
    });
    ok(r, "create under a default ACL");
    assert_perm(&f, 0o660);
    assert_acl(&f, ACCESS, "u::rw-,u:65534:rwx,g::r-x,m::rw-,o::---");
    fails(
        get_acl(&f, DEFAULT),
        libc::ENODATA,
        "files get no default ACL",
    );
    assert_perm(&shared.join("fifo"), 0o640);
    assert_acl(
        &shared.join("fifo"),
        ACCESS,
        "u::rw-,u:65534:rwx,g::r-x,m::r--,o::---",
    );
    ok(
        write_as(NOBODY, &f),
        "nobody writes through the inherited entry",
    );
    fails(read_as(OTHER, &f), libc::EACCES, "o::--- inherited");

    // A subdirectory: an access ACL from the default, and the default itself.
    let sub = shared.join("sub");
    ok(mkdir(&sub, 0o777), "mkdir sub");
    assert_perm(&sub, 0o770);
    assert_acl(&sub, ACCESS, "u::rwx,u:65534:rwx,g::r-x,m::rwx,o::---");
    assert_acl(&sub, DEFAULT, default);
    // Nobody may create in the root-owned 0770 directory only through the ACL, and what it
    // creates inherits too, its umask notwithstanding.
    let g = sub.join("g");
    let r = as_user(NOBODY, || {
        // SAFETY: plain syscall in the forked child.
        unsafe { libc::umask(0o077) };
        drop(creat(&g, 0o644)?);
        mkdir(&sub.join("deeper"), 0o750)
    });
    ok(r, "nobody creates in the subdirectory");
    assert_perm(&g, 0o640);
    assert_acl(&g, ACCESS, "u::rw-,u:65534:rwx,g::r-x,m::r--,o::---");
    let deeper = sub.join("deeper");
    assert_perm(&deeper, 0o750);
    assert_acl(&deeper, ACCESS, "u::rwx,u:65534:rwx,g::r-x,m::r-x,o::---");
    assert_acl(&deeper, DEFAULT, default);
    fails(read_as(OTHER, &g), libc::EACCES, "o::--- inherited below");
    fails(
        as_user(OTHER, || list(&sub).map(drop)),
        libc::EACCES,
        "others may not list the subdirectory",
    );
    // Symlinks take no ACL and no umask.
    ok(symlink(b"f", &shared.join("l")), "symlink");
    assert_eq!(mode(&shared.join("l")) & 0o777, 0o777);
}

fn default_acl_replaces_umask(d: &Path) {
    let (acl_dir, plain) = (d.join("acl"), d.join("plain"));
    for dir in [&acl_dir, &plain] {
        ok(mkdir(dir, 0o777), "mkdir");
        ok(chmod(dir, 0o777), "chmod");
    }
    // The base entries only: no access ACLs below, but the umask is not applied.
    ok(
        set_acl(&acl_dir, DEFAULT, "u::rwx,g::rwx,o::r-x"),
        "setfacl -d",
    );
    for uid in [0, NOBODY] {
        let r = as_user(uid, || {
            // SAFETY: plain syscall in the forked child.
            unsafe { libc::umask(0o077) };
            for dir in [&acl_dir, &plain] {
                drop(creat(&dir.join(format!("f{uid}")), 0o666)?);
                mkdir(&dir.join(format!("d{uid}")), 0o777)?;
                mknod(&dir.join(format!("p{uid}")), libc::S_IFIFO | 0o666, 0)?;
            }
            Ok(())
        });
        ok(r, "create under umask 077");
        for (name, with_acl, without) in [("f", 0o664, 0o600), ("d", 0o775, 0o700)] {
            let n = format!("{name}{uid}");
            assert_perm(&acl_dir.join(&n), with_acl);
            assert_perm(&plain.join(&n), without);
            fails(get_acl(&acl_dir.join(&n), ACCESS), libc::ENODATA, "no ACL");
        }
        assert_perm(&acl_dir.join(format!("p{uid}")), 0o664);
        assert_perm(&plain.join(format!("p{uid}")), 0o600);
        assert_acl(
            &acl_dir.join(format!("d{uid}")),
            DEFAULT,
            "u::rwx,g::rwx,o::r-x",
        );
        fails(
            get_acl(&plain.join(format!("d{uid}")), DEFAULT),
            libc::ENODATA,
            "no default ACL without one above",
        );
    }
}

fn read_back_and_errors(d: &Path) {
    let f = d.join("f");
    root_file(&f, 0o640);
    let full = "u::rw-,u:10:r--,u:65534:rwx,g::r--,g:20:-w-,g:4242:--x,m::rwx,o::---";
    ok(set_acl(&f, ACCESS, full), "setfacl");
    assert_acl(&f, ACCESS, full);
    // Size probe: header and eight entries.
    assert_eq!(ok(getxattr_sized(&f, ACCESS, 0), "size").len(), 4 + 8 * 8);
    fails(getxattr_sized(&f, ACCESS, 10), libc::ERANGE, "small buffer");
    ok(
        nobody(|| get_acl(&f, ACCESS).map(drop)),
        "anyone may read an ACL",
    );
    // What setfacl would refuse, the kernel refuses before it reaches the filesystem.
    fails(
        set_acl(&f, ACCESS, "u::rw-,u:10:r--,g::r--,o::---"),
        libc::EINVAL,
        "named entry without a mask",
    );
    fails(
        set_acl(&f, ACCESS, "g::r--,u::rw-,o::---"),
        libc::EINVAL,
        "entries out of order",
    );
    let mut v1 = acl("u::rw-,g::r--,o::---");
    v1[0] = 1;
    fails(setxattr(&f, ACCESS, &v1, 0), libc::EOPNOTSUPP, "version 1");
    fails(
        set_acl(&f, DEFAULT, "u::rwx,g::r-x,o::---"),
        libc::EACCES,
        "default ACL on a file",
    );
    assert_acl(&f, ACCESS, full);
    assert_perm(&f, 0o670);
    let dir = d.join("dir");
    ok(mkdir(&dir, 0o755), "mkdir");
    ok(set_acl(&dir, DEFAULT, "u::rwx,g::r-x,o::---"), "setfacl -d");
    let names = ok(listxattr(&dir), "listxattr");
    assert!(names.contains(&DEFAULT.to_string()), "{names:?}");
    ok(removexattr(&dir, DEFAULT), "setfacl -k");
    fails(get_acl(&dir, DEFAULT), libc::ENODATA, "default ACL removed");
    ok(creat(&dir.join("x"), 0o666).map(drop), "create");
    fails(
        get_acl(&dir.join("x"), ACCESS),
        libc::ENODATA,
        "nothing inherited",
    );
}
