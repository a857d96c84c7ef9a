//! Permissions and ownership: mode bits on files and directories, sticky directories,
//! chmod/chown rules, set-id bits cleared on write and chown, umask, ownership of new files.
//! The mount uses `default_permissions`, so most of these are the kernel's checks over the
//! attributes Sheen returns; they prove the attributes are right and reach the kernel.

use std::path::Path;

use crate::sys::*;
use crate::{NOBODY, OTHER};

pub const CASES: &[crate::Case] = &[
    ("file_mode_bits", file_mode_bits),
    ("dir_search_and_list", dir_search_and_list),
    ("dir_write_bits", dir_write_bits),
    ("sticky_dir", sticky_dir),
    ("chmod_rules", chmod_rules),
    ("chown_rules", chown_rules),
    ("setid_cleared_on_write", setid_cleared_on_write),
    ("setid_cleared_on_chown", setid_cleared_on_chown),
    ("umask", umask),
    ("new_file_ownership", new_file_ownership),
    ("utimens_rules", utimens_rules),
    ("truncate_rules", truncate_rules),
    ("setgid_directory", setgid_directory),
];

fn file(p: &Path, mode: u32, uid: u32) {
    drop(ok(creat(p, 0o600), "create"));
    ok(chown(p, uid, uid), "chown");
    ok(chmod(p, mode), "chmod");
}

fn file_mode_bits(d: &Path) {
    let (f600, f644, f666, f755, f000) = (
        d.join("600"),
        d.join("644"),
        d.join("666"),
        d.join("755"),
        d.join("000"),
    );
    for (p, m) in [
        (&f600, 0o600),
        (&f644, 0o644),
        (&f666, 0o666),
        (&f755, 0o755),
    ] {
        file(p, m, 0);
    }
    file(&f000, 0, NOBODY);
    fails(
        nobody(|| open(&f600, libc::O_RDONLY, 0)),
        libc::EACCES,
        "nobody read 0600",
    );
    ok(
        nobody(|| open(&f644, libc::O_RDONLY, 0)),
        "nobody read 0644",
    );
    fails(
        nobody(|| open(&f644, libc::O_WRONLY, 0)),
        libc::EACCES,
        "nobody write 0644",
    );
    ok(nobody(|| open(&f666, libc::O_RDWR, 0)), "nobody rw 0666");
    fails(
        nobody(|| access(&f644, libc::X_OK)),
        libc::EACCES,
        "nobody exec 0644",
    );
    ok(nobody(|| access(&f755, libc::X_OK)), "nobody exec 0755");
    // The owner is held to the owner bits, even when others' bits would allow more.
    fails(
        nobody(|| open(&f000, libc::O_RDONLY, 0)),
        libc::EACCES,
        "owner read 0000",
    );
    // Root reads and writes anything, but executes only what someone may execute.
    ok(open(&f000, libc::O_RDWR, 0), "root rw 0000");
    fails(access(&f644, libc::X_OK), libc::EACCES, "root exec 0644");
    ok(access(&f755, libc::X_OK), "root exec 0755");
}

fn dir_search_and_list(d: &Path) {
    let (priv_, xonly, open_) = (d.join("priv"), d.join("xonly"), d.join("open"));
    for (p, m) in [(&priv_, 0o700), (&xonly, 0o711), (&open_, 0o755)] {
        ok(mkdir(p, 0o700), "mkdir");
        drop(ok(creat(&p.join("f"), 0o644), "create"));
        ok(chmod(p, m), "chmod");
    }
    fails(
        nobody(|| stat(&priv_.join("f"))),
        libc::EACCES,
        "lookup in 0700",
    );
    fails(nobody(|| list(&priv_)), libc::EACCES, "list 0700");
    fails(nobody(|| list(&xonly)), libc::EACCES, "list 0711");
    ok(nobody(|| stat(&xonly.join("f"))), "lookup in 0711");
    ok(nobody(|| list(&open_)), "list 0755");
    // Root ignores directory bits.
    ok(chmod(&priv_, 0), "chmod 0");
    ok(stat(&priv_.join("f")), "root lookup in 0000");
    assert_eq!(ok(list(&priv_), "root list 0000"), vec![b"f".to_vec()]);
}

fn dir_write_bits(d: &Path) {
    let ro = d.join("ro");
    ok(mkdir(&ro, 0o755), "mkdir");
    drop(ok(creat(&ro.join("f"), 0o666), "create"));
    ok(chmod(&ro.join("f"), 0o666), "chmod");
    ok(mkdir(&ro.join("sub"), 0o777), "mkdir sub");
    ok(chmod(&ro.join("sub"), 0o777), "chmod sub");
    fails(
        nobody(|| creat(&ro.join("new"), 0o644)),
        libc::EACCES,
        "create in 0755",
    );
    fails(
        nobody(|| mkdir(&ro.join("nd"), 0o755)),
        libc::EACCES,
        "mkdir in 0755",
    );
    fails(
        nobody(|| unlink(&ro.join("f"))),
        libc::EACCES,
        "unlink in 0755",
    );
    fails(
        nobody(|| rmdir(&ro.join("sub"))),
        libc::EACCES,
        "rmdir in 0755",
    );
    let to = d.join("moved");
    fails(
        nobody(|| rename(&ro.join("f"), &to)),
        libc::EACCES,
        "rename out of 0755",
    );
    fails(
        nobody(|| symlink(b"f", &ro.join("l"))),
        libc::EACCES,
        "symlink in 0755",
    );
    // A writable file in a read-only directory may still be written.
    ok(
        nobody(|| open(&ro.join("f"), libc::O_WRONLY, 0)),
        "write 0666 file",
    );
    // Creating through a writable subdirectory of a read-only one works.
    ok(
        nobody(|| creat(&ro.join("sub/mine"), 0o644)),
        "create in 0777 sub",
    );
}

fn sticky_dir(d: &Path) {
    let s = d.join("sticky");
    ok(mkdir(&s, 0o777), "mkdir");
    ok(chmod(&s, 0o1777), "chmod 1777");
    assert_eq!(mode(&s) & 0o7777, 0o1777);
    let (rootf, mine) = (s.join("rootfile"), s.join("mine"));
    file(&rootf, 0o666, 0);
    ok(nobody(|| creat(&mine, 0o666)), "nobody create in sticky");
    fails(
        nobody(|| unlink(&rootf)),
        libc::EPERM,
        "unlink other's in sticky",
    );
    fails(
        nobody(|| rename(&rootf, &s.join("x"))),
        libc::EPERM,
        "rename other's in sticky",
    );
    fails(
        as_user(OTHER, || unlink(&mine)),
        libc::EPERM,
        "other unlinks nobody's",
    );
    ok(
        nobody(|| rename(&mine, &s.join("mine2"))),
        "rename own in sticky",
    );
    ok(nobody(|| unlink(&s.join("mine2"))), "unlink own in sticky");
    // The directory's owner may remove anyone's entry.
    ok(nobody(|| creat(&mine, 0o666)), "recreate");
    ok(chown(&s, OTHER, OTHER), "chown dir");
    ok(as_user(OTHER, || unlink(&mine)), "dir owner unlinks");
    ok(unlink(&rootf), "root unlinks");
}

fn chmod_rules(d: &Path) {
    let (rootf, mine, nogrp) = (d.join("root"), d.join("mine"), d.join("nogrp"));
    file(&rootf, 0o644, 0);
    file(&mine, 0o644, NOBODY);
    file(&nogrp, 0o644, NOBODY);
    ok(chown(&nogrp, NOBODY, 0), "chgrp 0");
    fails(
        nobody(|| chmod(&rootf, 0o777)),
        libc::EPERM,
        "chmod other's",
    );
    ok(nobody(|| chmod(&mine, 0o4750)), "chmod own");
    assert_eq!(mode(&mine) & 0o7777, 0o4750);
    // Setting S_ISGID on a file whose group the caller is not in silently drops it.
    ok(nobody(|| chmod(&nogrp, 0o2755)), "chmod g+s outside group");
    assert_eq!(mode(&nogrp) & 0o7777, 0o755);
    ok(chmod(&rootf, 0o7777), "root chmod");
    assert_eq!(mode(&rootf) & 0o7777, 0o7777);
    fails(
        chmod(&d.join("missing"), 0o644),
        libc::ENOENT,
        "chmod missing",
    );
    fails(
        nobody(|| chmod(&d.join("missing"), 0o644)),
        libc::ENOENT,
        "nobody chmod missing",
    );
}

fn chown_rules(d: &Path) {
    let mine = d.join("mine");
    file(&mine, 0o644, NOBODY);
    fails(
        nobody(|| chown(&mine, 0, u32::MAX)),
        libc::EPERM,
        "give away",
    );
    fails(
        nobody(|| chown(&mine, u32::MAX, 0)),
        libc::EPERM,
        "chgrp outside groups",
    );
    ok(nobody(|| chown(&mine, u32::MAX, u32::MAX)), "chown -1 -1");
    ok(nobody(|| chown(&mine, NOBODY, NOBODY)), "chown to self");
    // A member of a supplementary group may give the file to it.
    let r = as_user_groups(NOBODY, NOBODY, &[100], || chown(&mine, u32::MAX, 100));
    ok(r, "chgrp to supplementary group");
    assert_eq!(ok(stat(&mine), "stat").st_gid, 100);
    fails(
        as_user(OTHER, || chown(&mine, OTHER, OTHER)),
        libc::EPERM,
        "chown other's",
    );
    ok(chown(&mine, OTHER, 7), "root chown");
    let st = ok(stat(&mine), "stat");
    assert_eq!((st.st_uid, st.st_gid), (OTHER, 7));
    fails(
        chown(&d.join("missing"), 0, 0),
        libc::ENOENT,
        "chown missing",
    );
    // lchown changes the link, not its target.
    ok(symlink(b"mine", &d.join("l")), "symlink");
    ok(lchown(&d.join("l"), NOBODY, NOBODY), "lchown");
    assert_eq!(ok(lstat(&d.join("l")), "lstat").st_uid, NOBODY);
    assert_eq!(ok(stat(&mine), "stat").st_uid, OTHER);
}

fn setid_cleared_on_write(d: &Path) {
    let (mine, rootf) = (d.join("mine"), d.join("root"));
    file(&mine, 0o6777, NOBODY);
    file(&rootf, 0o6777, NOBODY);
    let r = nobody(|| open(&mine, libc::O_WRONLY, 0)?.write(b"x"));
    ok(r, "nobody writes");
    assert_eq!(
        mode(&mine) & 0o7777,
        0o777,
        "set-id bits after an unprivileged write"
    );
    // Root (CAP_FSETID) keeps them.
    ok(
        ok(open(&rootf, libc::O_WRONLY, 0), "open").write(b"x"),
        "root writes",
    );
    assert_eq!(
        mode(&rootf) & 0o7777,
        0o6777,
        "set-id bits after root's write"
    );
    // Truncation by the owner clears them too.
    ok(nobody(|| truncate(&rootf, 0)), "nobody truncates");
    assert_eq!(mode(&rootf) & 0o7777, 0o777, "set-id bits after truncate");
}

fn setid_cleared_on_chown(d: &Path) {
    let f = d.join("f");
    file(&f, 0o6755, 0);
    ok(chown(&f, NOBODY, NOBODY), "root chown");
    assert_eq!(mode(&f) & 0o7777, 0o755, "set-id bits after chown");
    // Directories keep theirs.
    let sub = d.join("sub");
    ok(mkdir(&sub, 0o755), "mkdir");
    ok(chmod(&sub, 0o2755), "chmod g+s");
    ok(chown(&sub, NOBODY, NOBODY), "chown dir");
    assert_eq!(mode(&sub) & 0o7777, 0o2755, "directory set-gid after chown");
}

fn umask(d: &Path) {
    for uid in [0, NOBODY] {
        let r = as_user(uid, || {
            // SAFETY: plain syscall in the forked child.
            unsafe { libc::umask(0o027) };
            mkdir(&d.join(format!("dir{uid}")), 0o777)?;
            creat(&d.join(format!("file{uid}")), 0o666)?;
            mknod(&d.join(format!("fifo{uid}")), libc::S_IFIFO | 0o666, 0)?;
            Ok(())
        });
        ok(r, "create under umask 027");
        assert_eq!(mode(&d.join(format!("dir{uid}"))) & 0o7777, 0o750);
        assert_eq!(mode(&d.join(format!("file{uid}"))) & 0o7777, 0o640);
        assert_eq!(mode(&d.join(format!("fifo{uid}"))) & 0o7777, 0o640);
    }
}

fn new_file_ownership(d: &Path) {
    let r = as_user_groups(NOBODY, 1234, &[], || {
        creat(&d.join("f"), 0o644)?;
        mkdir(&d.join("d"), 0o755)?;
        symlink(b"f", &d.join("l"))?;
        mknod(&d.join("p"), libc::S_IFIFO | 0o644, 0)?;
        Ok(())
    });
    ok(r, "create as nobody:1234");
    for n in ["f", "d", "l", "p"] {
        let st = ok(lstat(&d.join(n)), n);
        assert_eq!((st.st_uid, st.st_gid), (NOBODY, 1234), "owner of {n}");
    }
    let st = ok(lstat(d), "lstat dir");
    assert_eq!((st.st_uid, st.st_gid), (0, 0), "owner of the root-made dir");
}

fn utimens_rules(d: &Path) {
    let (rw, ro, mine) = (d.join("rw"), d.join("ro"), d.join("mine"));
    file(&rw, 0o666, 0);
    file(&ro, 0o644, 0);
    file(&mine, 0o400, NOBODY);
    let now = [(0, libc::UTIME_NOW), (0, libc::UTIME_NOW)];
    ok(nobody(|| utimens(&rw, None)), "touch writable other's");
    ok(
        nobody(|| utimens(&rw, Some(now))),
        "UTIME_NOW writable other's",
    );
    fails(
        nobody(|| utimens(&rw, Some([(1, 0), (1, 0)]))),
        libc::EPERM,
        "set other's",
    );
    fails(
        nobody(|| utimens(&ro, None)),
        libc::EACCES,
        "touch read-only other's",
    );
    ok(
        nobody(|| utimens(&mine, Some([(5, 6), (7, 8)]))),
        "owner sets",
    );
    let st = ok(stat(&mine), "stat");
    assert_eq!((st.st_atime, st.st_atime_nsec), (5, 6));
    assert_eq!((st.st_mtime, st.st_mtime_nsec), (7, 8));
    ok(utimens(&ro, Some([(9, 0), (9, 0)])), "root sets");
    fails(
        utimens(&d.join("missing"), None),
        libc::ENOENT,
        "touch missing",
    );
}

fn truncate_rules(d: &Path) {
    let (ro, mine) = (d.join("ro"), d.join("mine"));
    file(&ro, 0o644, 0);
    file(&mine, 0o644, NOBODY);
    fails(
        nobody(|| truncate(&ro, 0)),
        libc::EACCES,
        "truncate other's 0644",
    );
    fails(
        nobody(|| open(&ro, libc::O_WRONLY | libc::O_TRUNC, 0)),
        libc::EACCES,
        "O_TRUNC",
    );
    ok(nobody(|| truncate(&mine, 10)), "truncate own");
    assert_eq!(ok(stat(&mine), "stat").st_size, 10);
    fails(
        nobody(|| truncate(&mine, -1)),
        libc::EINVAL,
        "negative length",
    );
}

/// A set-group-ID directory gives new entries its group, and new directories its bit.
fn setgid_directory(d: &Path) {
    let s = d.join("shared");
    ok(mkdir(&s, 0o775), "mkdir");
    ok(chown(&s, 0, 500), "chgrp");
    ok(chmod(&s, 0o2775), "chmod g+s");
    drop(ok(creat(&s.join("f"), 0o644), "create in setgid dir"));
    ok(mkdir(&s.join("sub"), 0o755), "mkdir in setgid dir");
    let f = ok(stat(&s.join("f")), "stat f");
    assert_eq!(f.st_gid, 500, "file group");
    let sub = ok(stat(&s.join("sub")), "stat sub");
    assert_eq!(sub.st_gid, 500, "subdirectory group");
    assert_eq!(
        sub.st_mode & 0o2000,
        0o2000,
        "subdirectory inherits S_ISGID"
    );
    // Without the bit, entries get the creator's group.
    ok(chmod(&s, 0o775), "chmod g-s");
    drop(ok(creat(&s.join("g"), 0o644), "create in plain dir"));
    assert_eq!(
        ok(stat(&s.join("g")), "stat g").st_gid,
        0,
        "creator's group"
    );
}
