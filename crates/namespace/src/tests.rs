//! Tests of the namespace operations: success paths, every error code, atomicity,
//! persistence and readdir under concurrent change.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;

use sheen_wire::{pattern, Errno, SetAttr, StripeLayout, TimeSet, Timespec};
use tempfile::TempDir;

use super::*;
use crate::codec::mode::*;
use crate::limits::{LINK_MAX, XATTRS_PER_INODE_MAX};

fn open() -> (TempDir, Namespace) {
    let dir = tempfile::tempdir().unwrap();
    let ns = Namespace::open(dir.path()).unwrap();
    (dir, ns)
}

/// Opens the namespace in `dir` again after a drop. sled's background flusher may hold the
/// database's file lock for a moment after the drop, so wait for it (bounded).
fn reopen_result(dir: &std::path::Path) -> Result<Namespace, NsError> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match Namespace::open(dir) {
            Err(NsError::Db(e))
                if e.to_string().contains("could not acquire lock")
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            other => return other,
        }
    }
}

fn reopen(dir: &std::path::Path) -> Namespace {
    reopen_result(dir).unwrap()
}

fn args(parent: Fid, name: &str, mode: u32) -> CreateArgs {
    CreateArgs {
        parent,
        name: name.as_bytes().to_vec(),
        mode,
        rdev: 0,
        uid: 1000,
        gid: 100,
        umask: 0,
        symlink: None,
        layout: None,
    }
}

fn mkfile(ns: &Namespace, parent: Fid, name: &str) -> Attr {
    ns.create(args(parent, name, S_IFREG | 0o644)).unwrap()
}

fn mkdir(ns: &Namespace, parent: Fid, name: &str) -> Attr {
    ns.create(args(parent, name, S_IFDIR | 0o755)).unwrap()
}

fn errno<T: std::fmt::Debug>(r: Result<T, NsError>) -> Errno {
    r.unwrap_err().errno()
}

fn lookup_fid(ns: &Namespace, parent: Fid, name: &str) -> Fid {
    ns.lookup(parent, name.as_bytes()).unwrap().fid
}

fn nlink(ns: &Namespace, fid: Fid) -> u32 {
    ns.getattr(fid).unwrap().nlink
}

/// Every entry of `dir`, read `max` at a time.
fn list(ns: &Namespace, dir: Fid, max: u32) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut cookie = 0;
    loop {
        let (entries, eof) = ns.readdir(dir, cookie, max).unwrap();
        if let Some(last) = entries.last() {
            cookie = last.next_cookie;
        }
        out.extend(entries.into_iter().map(|e| e.name));
        if eof {
            return out;
        }
    }
}

fn sorted(mut v: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
    v.sort();
    v
}

fn names(list: &[&str]) -> Vec<Vec<u8>> {
    sorted(list.iter().map(|s| s.as_bytes().to_vec()).collect())
}

fn layout(count: u32, objects: &[u64]) -> Layout {
    Layout::plain(StripeLayout {
        pattern: pattern::RAID0,
        stripe_size: 1 << 20,
        stripe_count: count,
        stripe_offset: 0,
        pool: String::new(),
        objects: objects
            .iter()
            .enumerate()
            .map(|(i, &oid)| sheen_wire::OstObject {
                ost_idx: u32::try_from(i).unwrap(),
                oid,
                seq: 0,
            })
            .collect(),
    })
}

/// The whole database, tree by tree.
fn snapshot(ns: &Namespace) -> Vec<Vec<(IVec, IVec)>> {
    [&ns.inodes, &ns.dirents, &ns.layouts, &ns.xattrs, &ns.meta]
        .iter()
        .map(|t| t.iter().map(|kv| kv.unwrap()).collect())
        .collect()
}

/// Sets an inode field directly, for limits that take too long to reach honestly.
fn poke(ns: &Namespace, fid: Fid, f: impl Fn(&mut Inode)) {
    ns.txn(|tx| {
        tx.modify(fid, |i| {
            f(i);
            Ok(())
        })
    })
    .unwrap();
}

const OLD: Timespec = Timespec { sec: 1, nsec: 0 };

fn age(ns: &Namespace, fid: Fid) {
    let sa = SetAttr {
        atime: Some(TimeSet::At(OLD)),
        mtime: Some(TimeSet::At(OLD)),
        ctime: Some(OLD),
        ..SetAttr::default()
    };
    ns.setattr(fid, &sa).unwrap();
}

#[test]
fn namespace_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<Namespace>();
}

#[test]
fn open_creates_the_root() {
    let (_d, ns) = open();
    let root = ns.getattr(Fid::ROOT).unwrap();
    assert_eq!(root.mode, S_IFDIR | 0o755);
    assert_eq!((root.nlink, root.uid, root.gid), (2, 0, 0));
    assert_eq!(ns.lookup(Fid::ROOT, b".").unwrap(), root);
    assert_eq!(ns.lookup(Fid::ROOT, b"..").unwrap(), root);
    assert_eq!(ns.last_transno(), 0);
    assert_eq!(ns.statfs().unwrap().inodes_used, 1);
    assert_eq!(ns.readdir(Fid::ROOT, 0, 10).unwrap(), (vec![], true));
}

#[test]
fn create_every_kind() {
    let (_d, ns) = open();
    age(&ns, Fid::ROOT);
    let f = mkfile(&ns, Fid::ROOT, "file");
    assert_eq!(
        (f.mode, f.nlink, f.size, f.uid, f.gid),
        (S_IFREG | 0o644, 1, 0, 1000, 100)
    );
    assert_eq!(
        f.fid,
        Fid {
            seq: Fid::FIRST_NORMAL_SEQ,
            oid: 1,
            ver: 0
        }
    );
    assert_eq!((f.atime, f.mtime, f.ctime), (f.btime, f.btime, f.btime));
    let root = ns.getattr(Fid::ROOT).unwrap();
    assert!(root.mtime > OLD && root.ctime > OLD);
    assert_eq!(root.atime, OLD);
    assert_eq!(root.nlink, 2);

    let d = mkdir(&ns, Fid::ROOT, "dir");
    assert_eq!((d.mode, d.nlink, d.size), (S_IFDIR | 0o755, 2, 4096));
    assert_eq!(nlink(&ns, Fid::ROOT), 3);
    assert_eq!(ns.lookup(d.fid, b"..").unwrap().fid, Fid::ROOT);
    assert_eq!(ns.lookup(d.fid, b".").unwrap().fid, d.fid);

    let mut a = args(d.fid, "link", S_IFLNK | 0o777);
    a.symlink = Some(b"../file".to_vec());
    let l = ns.create(a).unwrap();
    assert_eq!((l.mode, l.size), (S_IFLNK | 0o777, 7));
    assert_eq!(ns.readlink(l.fid).unwrap(), b"../file");
    assert_eq!(errno(ns.readlink(f.fid)), Errno::EINVAL);

    let mut a = args(d.fid, "chr", S_IFCHR | 0o600);
    a.rdev = 0x0103;
    assert_eq!(ns.create(a).unwrap().rdev, 0x0103);
    let mut a = args(d.fid, "fifo", S_IFIFO | 0o600);
    a.rdev = 7;
    assert_eq!(ns.create(a).unwrap().rdev, 0, "rdev only for devices");
    ns.create(args(d.fid, "sock", S_IFSOCK | 0o600)).unwrap();
    ns.create(args(d.fid, "blk", S_IFBLK | 0o600)).unwrap();
    // No type bits means a regular file, as mknod.
    assert_eq!(
        ns.create(args(d.fid, "plain", 0o600)).unwrap().mode,
        S_IFREG | 0o600
    );
    // Only permission bits are kept from the mode.
    assert_eq!(
        ns.create(args(d.fid, "suid", S_IFREG | 0o4755))
            .unwrap()
            .mode,
        S_IFREG | 0o4755
    );

    let by_name: HashMap<Vec<u8>, u32> = {
        let (entries, eof) = ns.readdir(d.fid, 0, 100).unwrap();
        assert!(eof);
        entries.into_iter().map(|e| (e.name, e.file_type)).collect()
    };
    assert_eq!(by_name.len(), 7);
    assert_eq!(by_name[&b"link"[..]], S_IFLNK);
    assert_eq!(by_name[&b"chr"[..]], S_IFCHR);
    assert_eq!(by_name[&b"sock"[..]], S_IFSOCK);
    assert_eq!(ns.lookup(Fid::ROOT, b"file").unwrap(), f);
    assert_eq!(ns.statfs().unwrap().inodes_used, 10);
}

#[test]
fn create_errors() {
    let (_d, ns) = open();
    let f = mkfile(&ns, Fid::ROOT, "f");
    let create = |parent, name: &[u8], mode| {
        let mut a = args(parent, "", mode);
        a.name = name.to_vec();
        errno(ns.create(a))
    };
    assert_eq!(create(Fid::ROOT, b"f", S_IFREG), Errno::EEXIST);
    assert_eq!(create(Fid::ROOT, b"f", S_IFDIR), Errno::EEXIST);
    assert_eq!(create(f.fid, b"x", S_IFREG), Errno::ENOTDIR);
    let missing = Fid {
        seq: Fid::FIRST_NORMAL_SEQ,
        oid: 999,
        ver: 0,
    };
    assert_eq!(create(missing, b"x", S_IFREG), Errno::ENOENT);
    assert_eq!(
        create(Fid::ROOT, &[b'a'; 256], S_IFREG),
        Errno::ENAMETOOLONG
    );
    for bad in [&b""[..], b".", b"..", b"a/b", b"a\0b"] {
        assert_eq!(create(Fid::ROOT, bad, S_IFREG), Errno::EINVAL, "{bad:?}");
    }
    assert_eq!(create(Fid::ROOT, b"t", 0o070_000), Errno::EINVAL);
    assert_eq!(create(Fid::ROOT, b"l", S_IFLNK | 0o777), Errno::EINVAL);
    let mut a = args(Fid::ROOT, "l", S_IFLNK);
    a.symlink = Some(vec![b'x'; 4097]);
    assert_eq!(errno(ns.create(a)), Errno::ENAMETOOLONG);
    let mut a = args(Fid::ROOT, "l", S_IFREG);
    a.symlink = Some(b"x".to_vec());
    assert_eq!(errno(ns.create(a)), Errno::EINVAL);
    let mut a = args(Fid::ROOT, "p", S_IFIFO);
    a.layout = Some(layout(1, &[]));
    assert_eq!(errno(ns.create(a)), Errno::EINVAL);
    // 255 bytes is fine.
    let long = "n".repeat(255);
    mkfile(&ns, Fid::ROOT, &long);
    assert_eq!(lookup_fid(&ns, Fid::ROOT, &long).oid, 2);
    // Failed creates used no FID and no transno.
    assert_eq!(ns.last_transno(), 2);
}

#[test]
fn lookup_errors() {
    let (_d, ns) = open();
    let f = mkfile(&ns, Fid::ROOT, "f");
    assert_eq!(errno(ns.lookup(Fid::ROOT, b"nope")), Errno::ENOENT);
    assert_eq!(errno(ns.lookup(f.fid, b"x")), Errno::ENOTDIR);
    assert_eq!(errno(ns.lookup(f.fid, b".")), Errno::ENOTDIR);
    assert_eq!(
        errno(ns.lookup(Fid::ROOT, &[b'a'; 256])),
        Errno::ENAMETOOLONG
    );
    assert_eq!(errno(ns.lookup(Fid::ROOT, b"a/b")), Errno::EINVAL);
    assert_eq!(errno(ns.getattr(Fid { oid: 77, ..f.fid })), Errno::ENOENT);
}

#[test]
fn setattr_changes_and_errors() {
    let (_d, ns) = open();
    let f = mkfile(&ns, Fid::ROOT, "f");
    let d = mkdir(&ns, Fid::ROOT, "d");
    let t = Timespec {
        sec: 1_000,
        nsec: 5,
    };
    let sa = SetAttr {
        mode: Some(S_IFDIR | 0o600),
        uid: Some(7),
        gid: Some(8),
        size: Some(1025),
        atime: Some(TimeSet::At(t)),
        mtime: Some(TimeSet::Now),
        ctime: None,
        keep_ctime: false,
        grow_only: false,
    };
    let a = ns.setattr(f.fid, &sa).unwrap();
    assert_eq!(
        (a.mode, a.uid, a.gid, a.size, a.blocks),
        (S_IFREG | 0o600, 7, 8, 1025, 3)
    );
    assert_eq!(a.atime, t);
    assert!(a.mtime >= f.mtime && a.ctime >= f.ctime);
    assert_eq!(ns.getattr(f.fid).unwrap(), a);
    let a = ns.setattr(
        f.fid,
        &SetAttr {
            size: Some(0),
            ctime: Some(t),
            ..SetAttr::default()
        },
    );
    assert_eq!(a.map(|a| (a.size, a.blocks, a.ctime)).unwrap(), (0, 0, t));

    let size = SetAttr {
        size: Some(1),
        ..SetAttr::default()
    };
    assert_eq!(errno(ns.setattr(d.fid, &size)), Errno::EISDIR);
    let mut a = args(Fid::ROOT, "l", S_IFLNK);
    a.symlink = Some(b"f".to_vec());
    let l = ns.create(a).unwrap();
    assert_eq!(errno(ns.setattr(l.fid, &size)), Errno::EINVAL);
    assert_eq!(
        errno(ns.setattr(Fid { oid: 99, ..f.fid }, &size)),
        Errno::ENOENT
    );
    // A dir's mode change keeps it a dir.
    let mode = SetAttr {
        mode: Some(0o700),
        ..SetAttr::default()
    };
    assert_eq!(ns.setattr(d.fid, &mode).unwrap().mode, S_IFDIR | 0o700);
}

#[test]
fn a_writers_report_only_grows_the_size_and_moves_mtime_forward() {
    let (_d, ns) = open();
    let f = mkfile(&ns, Fid::ROOT, "f");
    let at = |sec| Timespec { sec, nsec: 0 };
    let report = |size, mtime| SetAttr {
        size: Some(size),
        mtime: Some(TimeSet::At(mtime)),
        grow_only: true,
        ..SetAttr::default()
    };
    let set = |sa: &SetAttr| ns.setattr(f.fid, sa).unwrap();
    // An explicit size and mtime first (a truncate up, a utimes).
    let a = set(&SetAttr {
        size: Some(100),
        mtime: Some(TimeSet::At(at(2_000))),
        ctime: Some(at(2_000)),
        ..SetAttr::default()
    });
    assert_eq!((a.size, a.mtime, a.ctime), (100, at(2_000), at(2_000)));
    // A smaller size and an older mtime change nothing.
    let a = set(&report(50, at(1_500)));
    assert_eq!((a.size, a.mtime, a.ctime), (100, at(2_000), at(2_000)));
    // A larger size grows it; a later mtime moves mtime and ctime with it.
    let a = set(&report(4_096, at(3_000)));
    assert_eq!(
        (a.size, a.blocks, a.mtime, a.ctime),
        (4_096, 8, at(3_000), at(3_000))
    );
    // The mode and owners are not part of a report.
    let a = set(&SetAttr {
        mode: Some(0o600),
        uid: Some(9),
        ..report(10, at(1))
    });
    assert_eq!(
        (a.mode & 0o7777, a.uid, a.size),
        (f.mode & 0o7777, f.uid, 4_096)
    );
    // Only regular files have a writer's report.
    let d = mkdir(&ns, Fid::ROOT, "d");
    assert_eq!(errno(ns.setattr(d.fid, &report(1, at(1)))), Errno::EINVAL);
}

#[test]
fn hard_links_count() {
    let (_d, ns) = open();
    let d = mkdir(&ns, Fid::ROOT, "d");
    let f = mkfile(&ns, Fid::ROOT, "f");
    age(&ns, f.fid);
    age(&ns, d.fid);
    let a = ns.link(f.fid, d.fid, b"g").unwrap();
    assert_eq!(a.nlink, 2);
    assert!(a.ctime > OLD);
    assert_eq!(a.mtime, OLD, "link does not change the inode's mtime");
    assert!(ns.getattr(d.fid).unwrap().mtime > OLD);
    assert_eq!(ns.link(f.fid, Fid::ROOT, b"h").unwrap().nlink, 3);
    assert_eq!(lookup_fid(&ns, d.fid, "g"), f.fid);
    assert_eq!(lookup_fid(&ns, Fid::ROOT, "h"), f.fid);

    assert_eq!(errno(ns.link(d.fid, Fid::ROOT, b"d2")), Errno::EPERM);
    assert_eq!(errno(ns.link(f.fid, Fid::ROOT, b"h")), Errno::EEXIST);
    assert_eq!(errno(ns.link(f.fid, f.fid, b"x")), Errno::ENOTDIR);
    assert_eq!(
        errno(ns.link(Fid { oid: 99, ..f.fid }, Fid::ROOT, b"x")),
        Errno::ENOENT
    );
    assert_eq!(errno(ns.link(f.fid, Fid::ROOT, b".")), Errno::EINVAL);
    poke(&ns, f.fid, |i| i.attr.nlink = LINK_MAX);
    assert_eq!(errno(ns.link(f.fid, Fid::ROOT, b"x")), Errno::EMLINK);
    poke(&ns, f.fid, |i| i.attr.nlink = 3);

    let r = ns.unlink(Fid::ROOT, b"f").unwrap();
    assert_eq!((r.attr.nlink, r.destroyed, r.layout), (2, false, None));
    let r = ns.unlink(d.fid, b"g").unwrap();
    assert_eq!((r.attr.nlink, r.destroyed), (1, false));
    assert_eq!(nlink(&ns, f.fid), 1);
    let r = ns.unlink(Fid::ROOT, b"h").unwrap();
    assert_eq!((r.attr.nlink, r.destroyed), (0, true));
    assert_eq!(errno(ns.getattr(f.fid)), Errno::ENOENT);
    assert_eq!(ns.statfs().unwrap().inodes_used, 2);
}

#[test]
fn unlink_destroys_layout_and_xattrs() {
    let (_d, ns) = open();
    let mut a = args(Fid::ROOT, "f", S_IFREG | 0o644);
    a.layout = Some(layout(2, &[10, 11]));
    let f = ns.create(a).unwrap();
    for i in 0..5 {
        ns.set_xattr(f.fid, format!("user.{i}").as_bytes(), b"v", 0)
            .unwrap();
    }
    ns.remove_xattr(f.fid, b"user.3").unwrap();
    let keep = mkfile(&ns, Fid::ROOT, "keep");
    ns.set_xattr(keep.fid, b"user.k", b"v", 0).unwrap();

    let r = ns.unlink(Fid::ROOT, b"f").unwrap();
    assert!(r.destroyed);
    assert_eq!(r.layout, Some(layout(2, &[10, 11])));
    assert_eq!(ns.xattrs.scan_prefix(f.fid.to_be_bytes()).count(), 0);
    assert!(ns.layouts.get(f.fid.to_be_bytes()).unwrap().is_none());
    assert_eq!(ns.list_xattr(keep.fid).unwrap(), vec![b"user.k".to_vec()]);
    assert_eq!(errno(ns.list_xattr(f.fid)), Errno::ENOENT);
}

#[test]
fn unlink_errors() {
    let (_d, ns) = open();
    let d = mkdir(&ns, Fid::ROOT, "d");
    let f = mkfile(&ns, Fid::ROOT, "f");
    assert_eq!(errno(ns.unlink(Fid::ROOT, b"d")), Errno::EISDIR);
    assert_eq!(errno(ns.unlink(Fid::ROOT, b".")), Errno::EISDIR);
    assert_eq!(errno(ns.unlink(Fid::ROOT, b"nope")), Errno::ENOENT);
    assert_eq!(errno(ns.unlink(f.fid, b"x")), Errno::ENOTDIR);
    assert_eq!(errno(ns.unlink(d.fid, b"f")), Errno::ENOENT);
    assert_eq!(
        errno(ns.unlink(Fid::ROOT, &[b'a'; 256])),
        Errno::ENAMETOOLONG
    );
}

#[test]
fn rmdir_success_and_errors() {
    let (_d, ns) = open();
    let d = mkdir(&ns, Fid::ROOT, "d");
    let sub = mkdir(&ns, d.fid, "sub");
    mkfile(&ns, Fid::ROOT, "f");
    assert_eq!(nlink(&ns, d.fid), 3);
    assert_eq!(errno(ns.rmdir(Fid::ROOT, b"f")), Errno::ENOTDIR);
    assert_eq!(errno(ns.rmdir(Fid::ROOT, b"d")), Errno::ENOTEMPTY);
    assert_eq!(errno(ns.rmdir(Fid::ROOT, b".")), Errno::EINVAL);
    assert_eq!(errno(ns.rmdir(Fid::ROOT, b"..")), Errno::ENOTEMPTY);
    assert_eq!(errno(ns.rmdir(Fid::ROOT, b"nope")), Errno::ENOENT);
    let r = ns.rmdir(d.fid, b"sub").unwrap();
    assert_eq!((r.attr.fid, r.attr.nlink, r.destroyed), (sub.fid, 0, true));
    assert_eq!(nlink(&ns, d.fid), 2);
    assert_eq!(errno(ns.getattr(sub.fid)), Errno::ENOENT);
    // A directory with only files in it is not empty either.
    mkfile(&ns, d.fid, "x");
    assert_eq!(errno(ns.rmdir(Fid::ROOT, b"d")), Errno::ENOTEMPTY);
    ns.unlink(d.fid, b"x").unwrap();
    ns.rmdir(Fid::ROOT, b"d").unwrap();
    assert_eq!(nlink(&ns, Fid::ROOT), 2);
    assert_eq!(ns.statfs().unwrap().inodes_used, 2);
}

#[test]
fn rename_moves_files_and_dirs() {
    let (_d, ns) = open();
    let a = mkdir(&ns, Fid::ROOT, "a");
    let b = mkdir(&ns, Fid::ROOT, "b");
    let f = mkfile(&ns, a.fid, "f");
    age(&ns, a.fid);
    age(&ns, b.fid);
    age(&ns, f.fid);
    assert_eq!(ns.rename(a.fid, b"f", b.fid, b"g", 0).unwrap(), None);
    assert_eq!(errno(ns.lookup(a.fid, b"f")), Errno::ENOENT);
    assert_eq!(lookup_fid(&ns, b.fid, "g"), f.fid);
    let (aa, ba, fa) = (
        ns.getattr(a.fid).unwrap(),
        ns.getattr(b.fid).unwrap(),
        ns.getattr(f.fid).unwrap(),
    );
    assert!(aa.mtime > OLD && aa.ctime > OLD && ba.mtime > OLD && ba.ctime > OLD);
    assert!(fa.ctime > OLD && fa.mtime == OLD);
    // Within one directory.
    ns.rename(b.fid, b"g", b.fid, b"h", 0).unwrap();
    assert_eq!(sorted(list(&ns, b.fid, 10)), names(&["h"]));

    // A directory: parents' link counts and its "..".
    let sub = mkdir(&ns, a.fid, "sub");
    mkfile(&ns, sub.fid, "inner");
    assert_eq!((nlink(&ns, a.fid), nlink(&ns, b.fid)), (3, 2));
    ns.rename(a.fid, b"sub", b.fid, b"sub", 0).unwrap();
    assert_eq!((nlink(&ns, a.fid), nlink(&ns, b.fid)), (2, 3));
    assert_eq!(ns.lookup(sub.fid, b"..").unwrap().fid, b.fid);
    ns.lookup(sub.fid, b"inner").unwrap();
    ns.rmdir(Fid::ROOT, b"a").unwrap();
    assert_eq!(errno(ns.rmdir(Fid::ROOT, b"b")), Errno::ENOTEMPTY);
}

#[test]
fn rename_overwrite_is_consistent() {
    let (_d, ns) = open();
    let d = mkdir(&ns, Fid::ROOT, "d");
    let src = mkfile(&ns, Fid::ROOT, "src");
    let mut a = args(d.fid, "dst", S_IFREG);
    a.layout = Some(layout(1, &[42]));
    let dst = ns.create(a).unwrap();
    ns.set_xattr(dst.fid, b"user.x", b"1", 0).unwrap();
    let r = ns
        .rename(Fid::ROOT, b"src", d.fid, b"dst", 0)
        .unwrap()
        .unwrap();
    assert_eq!((r.attr.fid, r.attr.nlink, r.destroyed), (dst.fid, 0, true));
    assert_eq!(r.layout, Some(layout(1, &[42])));
    assert_eq!(lookup_fid(&ns, d.fid, "dst"), src.fid);
    assert_eq!(errno(ns.lookup(Fid::ROOT, b"src")), Errno::ENOENT);
    assert_eq!(errno(ns.getattr(dst.fid)), Errno::ENOENT);
    assert_eq!(sorted(list(&ns, d.fid, 10)), names(&["dst"]));
    assert_eq!(sorted(list(&ns, Fid::ROOT, 10)), names(&["d"]));
    assert_eq!(ns.statfs().unwrap().inodes_used, 3);
    // Entry counts stayed right: emptying d lets it go.
    ns.unlink(d.fid, b"dst").unwrap();
    ns.rmdir(Fid::ROOT, b"d").unwrap();
    assert_eq!(ns.statfs().unwrap().inodes_used, 1);

    // Overwriting a file that has another link only drops a link.
    let x = mkfile(&ns, Fid::ROOT, "x");
    let y = mkfile(&ns, Fid::ROOT, "y");
    ns.link(y.fid, Fid::ROOT, b"y2").unwrap();
    let r = ns
        .rename(Fid::ROOT, b"x", Fid::ROOT, b"y", 0)
        .unwrap()
        .unwrap();
    assert_eq!(
        (r.attr.fid, r.attr.nlink, r.destroyed, r.layout),
        (y.fid, 1, false, None)
    );
    assert_eq!(lookup_fid(&ns, Fid::ROOT, "y"), x.fid);
    assert_eq!(lookup_fid(&ns, Fid::ROOT, "y2"), y.fid);
    assert_eq!(sorted(list(&ns, Fid::ROOT, 10)), names(&["y", "y2"]));
}

#[test]
fn rename_dir_over_dir() {
    let (_d, ns) = open();
    let a = mkdir(&ns, Fid::ROOT, "a");
    let b = mkdir(&ns, Fid::ROOT, "b");
    let src = mkdir(&ns, a.fid, "src");
    let empty = mkdir(&ns, b.fid, "empty");
    let full = mkdir(&ns, b.fid, "full");
    mkfile(&ns, full.fid, "x");
    mkfile(&ns, b.fid, "file");
    mkfile(&ns, a.fid, "afile");
    assert_eq!(
        errno(ns.rename(a.fid, b"src", b.fid, b"full", 0)),
        Errno::ENOTEMPTY
    );
    assert_eq!(
        errno(ns.rename(a.fid, b"src", b.fid, b"file", 0)),
        Errno::ENOTDIR
    );
    assert_eq!(
        errno(ns.rename(a.fid, b"afile", b.fid, b"empty", 0)),
        Errno::EISDIR
    );
    assert_eq!(
        (nlink(&ns, a.fid), nlink(&ns, b.fid), nlink(&ns, Fid::ROOT)),
        (3, 4, 4)
    );
    let r = ns
        .rename(a.fid, b"src", b.fid, b"empty", 0)
        .unwrap()
        .unwrap();
    assert_eq!(
        (r.attr.fid, r.attr.nlink, r.destroyed),
        (empty.fid, 0, true)
    );
    assert_eq!((nlink(&ns, a.fid), nlink(&ns, b.fid)), (2, 4));
    assert_eq!(lookup_fid(&ns, b.fid, "empty"), src.fid);
    assert_eq!(ns.lookup(src.fid, b"..").unwrap().fid, b.fid);
    assert_eq!(errno(ns.getattr(empty.fid)), Errno::ENOENT);
    // Same directory, dir over empty dir: one subdirectory fewer.
    mkdir(&ns, b.fid, "e2");
    assert_eq!(nlink(&ns, b.fid), 5);
    ns.rename(b.fid, b"e2", b.fid, b"empty", 0).unwrap();
    assert_eq!(nlink(&ns, b.fid), 4);
    assert_eq!(
        sorted(list(&ns, b.fid, 10)),
        names(&["empty", "file", "full"])
    );
}

#[test]
fn rename_into_own_subtree_is_invalid() {
    let (_d, ns) = open();
    let a = mkdir(&ns, Fid::ROOT, "a");
    let b = mkdir(&ns, a.fid, "b");
    let c = mkdir(&ns, b.fid, "c");
    assert_eq!(
        errno(ns.rename(Fid::ROOT, b"a", c.fid, b"x", 0)),
        Errno::EINVAL
    );
    assert_eq!(
        errno(ns.rename(Fid::ROOT, b"a", a.fid, b"x", 0)),
        Errno::EINVAL
    );
    assert_eq!(errno(ns.rename(a.fid, b"b", b.fid, b"x", 0)), Errno::EINVAL);
    assert_eq!(
        errno(ns.rename(Fid::ROOT, b"a", c.fid, b"x", RENAME_NOREPLACE)),
        Errno::EINVAL
    );
    // Up the tree is fine.
    ns.rename(b.fid, b"c", Fid::ROOT, b"c", 0).unwrap();
    assert_eq!(ns.lookup(c.fid, b"..").unwrap().fid, Fid::ROOT);
    // The target being an ancestor: it is not empty.
    assert_eq!(
        errno(ns.rename(a.fid, b"b", Fid::ROOT, b"a", 0)),
        Errno::ENOTEMPTY
    );
}

#[test]
fn rename_flags_and_errors() {
    let (_d, ns) = open();
    let f = mkfile(&ns, Fid::ROOT, "f");
    let g = mkfile(&ns, Fid::ROOT, "g");
    ns.link(f.fid, Fid::ROOT, b"f2").unwrap();
    let t0 = ns.last_transno();
    // Two names of one inode: nothing happens.
    assert_eq!(
        ns.rename(Fid::ROOT, b"f", Fid::ROOT, b"f2", 0).unwrap(),
        None
    );
    assert_eq!(
        ns.rename(Fid::ROOT, b"f", Fid::ROOT, b"f", 0).unwrap(),
        None
    );
    assert_eq!(sorted(list(&ns, Fid::ROOT, 10)), names(&["f", "f2", "g"]));
    assert_eq!(nlink(&ns, f.fid), 2);
    assert!(ns.last_transno() > t0);

    assert_eq!(
        errno(ns.rename(Fid::ROOT, b"f", Fid::ROOT, b"g", RENAME_NOREPLACE)),
        Errno::EEXIST
    );
    ns.rename(Fid::ROOT, b"g", Fid::ROOT, b"h", RENAME_NOREPLACE)
        .unwrap();
    assert_eq!(lookup_fid(&ns, Fid::ROOT, "h"), g.fid);
    assert_eq!(
        errno(ns.rename(Fid::ROOT, b"h", Fid::ROOT, b"no", RENAME_EXCHANGE)),
        Errno::ENOENT
    );
    assert_eq!(
        errno(ns.rename(Fid::ROOT, b"f", Fid::ROOT, b"h", 3)),
        Errno::EINVAL
    );
    assert_eq!(
        errno(ns.rename(Fid::ROOT, b"f", Fid::ROOT, b"h", 4)),
        Errno::EINVAL
    );
    assert_eq!(
        errno(ns.rename(Fid::ROOT, b"no", Fid::ROOT, b"x", 0)),
        Errno::ENOENT
    );
    assert_eq!(
        errno(ns.rename(Fid::ROOT, b".", Fid::ROOT, b"x", 0)),
        Errno::EBUSY
    );
    assert_eq!(
        errno(ns.rename(Fid::ROOT, b"f", Fid::ROOT, b"..", 0)),
        Errno::EBUSY
    );
    assert_eq!(
        errno(ns.rename(Fid::ROOT, b"f", f.fid, b"x", 0)),
        Errno::ENOTDIR
    );
    assert_eq!(
        errno(ns.rename(Fid::ROOT, b"f", Fid::ROOT, b"a/b", 0)),
        Errno::EINVAL
    );
}

#[test]
fn rename_exchange_swaps() {
    let (_d, ns) = open();
    let a = mkdir(&ns, Fid::ROOT, "a");
    let b = mkdir(&ns, Fid::ROOT, "b");
    let f = mkfile(&ns, a.fid, "x");
    let d = mkdir(&ns, b.fid, "y");
    assert_eq!((nlink(&ns, a.fid), nlink(&ns, b.fid)), (2, 3));
    assert_eq!(
        ns.rename(a.fid, b"x", b.fid, b"y", RENAME_EXCHANGE)
            .unwrap(),
        None
    );
    assert_eq!(lookup_fid(&ns, a.fid, "x"), d.fid);
    assert_eq!(lookup_fid(&ns, b.fid, "y"), f.fid);
    assert_eq!((nlink(&ns, a.fid), nlink(&ns, b.fid)), (3, 2));
    assert_eq!(ns.lookup(d.fid, b"..").unwrap().fid, a.fid);
    let types: Vec<u32> = ns
        .readdir(a.fid, 0, 10)
        .unwrap()
        .0
        .iter()
        .map(|e| e.file_type)
        .collect();
    assert_eq!(types, vec![S_IFDIR]);
    // A dir cannot be swapped with something inside it.
    let inner = mkfile(&ns, d.fid, "inner");
    assert_eq!(
        errno(ns.rename(a.fid, b"x", d.fid, b"inner", RENAME_EXCHANGE)),
        Errno::EINVAL
    );
    assert_eq!(
        errno(ns.rename(d.fid, b"inner", a.fid, b"x", RENAME_EXCHANGE)),
        Errno::EINVAL
    );
    assert_eq!(lookup_fid(&ns, d.fid, "inner"), inner.fid);
    // Two dirs in one directory swap names only.
    mkdir(&ns, a.fid, "z");
    ns.rename(a.fid, b"x", a.fid, b"z", RENAME_EXCHANGE)
        .unwrap();
    assert_eq!(lookup_fid(&ns, a.fid, "z"), d.fid);
    assert_eq!(nlink(&ns, a.fid), 4);
}

#[test]
fn aborted_transactions_change_nothing() {
    let (_d, ns) = open();
    let d = mkdir(&ns, Fid::ROOT, "d");
    mkfile(&ns, Fid::ROOT, "src");
    let mut a = args(d.fid, "dst", S_IFREG);
    a.layout = Some(layout(1, &[1]));
    let dst = ns.create(a).unwrap();
    ns.set_xattr(dst.fid, b"user.a", b"1", 0).unwrap();
    mkdir(&ns, d.fid, "sub");

    let before = snapshot(&ns);
    let transno = ns.last_transno();
    ns.inject_abort.store(true, Ordering::SeqCst);
    let injected = |r: Result<_, NsError>| matches!(r, Err(NsError::Invalid("injected fault")));
    assert!(injected(
        ns.rename(Fid::ROOT, b"src", d.fid, b"dst", 0).map(|_| ())
    ));
    assert!(injected(ns.create(args(d.fid, "new", S_IFDIR)).map(|_| ())));
    assert!(injected(ns.unlink(d.fid, b"dst").map(|_| ())));
    assert!(injected(ns.rmdir(d.fid, b"sub").map(|_| ())));
    assert!(injected(
        ns.rename(d.fid, b"sub", Fid::ROOT, b"sub", 0).map(|_| ())
    ));
    assert!(injected(ns.set_xattr(dst.fid, b"user.b", b"2", 0)));
    assert!(injected(ns.set_layout(dst.fid, None).map(|_| ())));
    assert_eq!(snapshot(&ns), before);
    assert_eq!(ns.last_transno(), transno);

    // An operation failing half-way (the second entry check) leaves nothing either.
    ns.inject_abort.store(false, Ordering::SeqCst);
    let r = ns.txn(|tx| {
        tx.add_entry(Fid::ROOT, b"half", dst.fid, S_IFREG)?;
        tx.modify(dst.fid, |i| {
            i.attr.nlink += 1;
            Ok(())
        })?;
        txn::fail::<()>(NsError::Exists)
    });
    assert_eq!(errno(r), Errno::EEXIST);
    assert_eq!(snapshot(&ns), before);

    // And without the fault the rename happens as a whole.
    ns.rename(Fid::ROOT, b"src", d.fid, b"dst", 0).unwrap();
    assert_eq!(sorted(list(&ns, d.fid, 10)), names(&["dst", "sub"]));
    assert_eq!(ns.last_transno(), transno + 1);
}

#[test]
fn persists_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let (f, d, committed, all_fids) = {
        let ns = reopen(dir.path());
        let d = mkdir(&ns, Fid::ROOT, "d");
        let mut a = args(d.fid, "f", S_IFREG | 0o600);
        a.layout = Some(layout(1, &[5]));
        let f = ns.create(a).unwrap();
        ns.set_xattr(f.fid, b"user.k", b"value", 0).unwrap();
        ns.set_layout(d.fid, Some(layout(4, &[]))).unwrap();
        let mut a = args(d.fid, "l", S_IFLNK | 0o777);
        a.symlink = Some(b"f".to_vec());
        ns.create(a).unwrap();
        let tmp = mkfile(&ns, Fid::ROOT, "tmp");
        ns.unlink(Fid::ROOT, b"tmp").unwrap();
        let committed = ns.flush().unwrap();
        assert_eq!(committed.transno, 7);
        (
            ns.getattr(f.fid).unwrap(),
            ns.getattr(d.fid).unwrap(),
            committed,
            [d.fid, f.fid, tmp.fid],
        )
    };
    let ns = reopen(dir.path());
    assert_eq!(ns.last_transno(), committed.transno);
    assert_eq!(ns.getattr(f.fid).unwrap(), f);
    assert_eq!(ns.getattr(d.fid).unwrap(), d);
    assert_eq!(ns.lookup(d.fid, b"f").unwrap(), f);
    assert_eq!(ns.readlink(lookup_fid(&ns, d.fid, "l")).unwrap(), b"f");
    assert_eq!(ns.get_xattr(f.fid, b"user.k").unwrap(), b"value");
    assert_eq!(ns.layout(f.fid).unwrap(), Some(layout(1, &[5])));
    assert_eq!(ns.inherited_layout(d.fid).unwrap(), Some(layout(4, &[])));
    assert_eq!(ns.statfs().unwrap().inodes_used, 4);
    assert_eq!(sorted(list(&ns, Fid::ROOT, 10)), names(&["d"]));
    // New FIDs never reuse old ones, even the destroyed one's.
    let n = mkfile(&ns, Fid::ROOT, "new");
    assert!(!all_fids.contains(&n.fid));
    assert!(all_fids.iter().all(|f| f.oid < n.fid.oid));
    assert_eq!(ns.last_transno(), committed.transno + 1);
}

#[test]
fn fid_allocation_moves_to_the_next_sequence() {
    let dir = tempfile::tempdir().unwrap();
    let seq = Fid::FIRST_NORMAL_SEQ;
    {
        let ns = reopen(dir.path());
        assert_eq!(
            mkfile(&ns, Fid::ROOT, "a").fid,
            Fid {
                seq,
                oid: 1,
                ver: 0
            }
        );
        assert_eq!(
            mkfile(&ns, Fid::ROOT, "b").fid,
            Fid {
                seq,
                oid: 2,
                ver: 0
            }
        );
        let last = Fid {
            seq,
            oid: u32::MAX,
            ver: 0,
        };
        ns.meta
            .insert(codec::META_NEXT_FID, &codec::encode_next_fid(last)[..])
            .unwrap();
        assert_eq!(mkfile(&ns, Fid::ROOT, "c").fid, last);
        assert_eq!(
            mkfile(&ns, Fid::ROOT, "d").fid,
            Fid {
                seq: seq + 1,
                oid: 1,
                ver: 0
            }
        );
        ns.flush().unwrap();
    }
    let ns = reopen(dir.path());
    assert_eq!(
        mkfile(&ns, Fid::ROOT, "e").fid,
        Fid {
            seq: seq + 1,
            oid: 2,
            ver: 0
        }
    );
}

#[test]
fn readdir_pages_through_20000_entries() {
    let (_d, ns) = open();
    let d = mkdir(&ns, Fid::ROOT, "d");
    let n = 20_000;
    for i in 0..n {
        ns.create(args(d.fid, &format!("file-{i:05}"), S_IFREG | 0o644))
            .unwrap();
    }
    let expected: Vec<Vec<u8>> = (0..n)
        .map(|i| format!("file-{i:05}").into_bytes())
        .collect();
    for max in [1, 37, 1000, u32::MAX] {
        let got = list(&ns, d.fid, max);
        assert_eq!(got.len(), n, "max {max}");
        assert_eq!(sorted(got), expected, "max {max}");
    }
    // Cookies increase and each entry's cookie resumes right after it.
    let (page, eof) = ns.readdir(d.fid, 0, 10).unwrap();
    assert!(!eof);
    assert!(page.windows(2).all(|w| w[0].next_cookie < w[1].next_cookie));
    let (next, _) = ns.readdir(d.fid, page[4].next_cookie, 3).unwrap();
    assert_eq!(
        next.iter().map(|e| &e.name).collect::<Vec<_>>(),
        vec![&page[5].name, &page[6].name, &page[7].name]
    );
    let (rest, eof) = ns.readdir(d.fid, COOKIE_EOF, 10).unwrap();
    assert!(rest.is_empty() && eof);
    assert_eq!(errno(ns.readdir(d.fid, 0, 0)), Errno::EINVAL);
    let f = lookup_fid(&ns, d.fid, "file-00000");
    assert_eq!(errno(ns.readdir(f, 0, 1)), Errno::ENOTDIR);
}

#[test]
fn readdir_stays_complete_under_concurrent_change() {
    let (_d, ns) = open();
    let d = mkdir(&ns, Fid::ROOT, "d");
    let n = 20_000;
    for i in 0..n {
        let name = if i % 4 == 0 {
            format!("tmp-{i}")
        } else {
            format!("keep-{i}")
        };
        ns.create(args(d.fid, &name, S_IFREG)).unwrap();
    }
    let mut tmp: Vec<String> = (0..n).step_by(4).map(|i| format!("tmp-{i}")).collect();
    let mut seen: HashMap<Vec<u8>, usize> = HashMap::new();
    let mut cookie = 0;
    let mut added = 0;
    let mut pages = 0;
    loop {
        let (entries, eof) = ns.readdir(d.fid, cookie, 64).unwrap();
        pages += 1;
        for e in &entries {
            *seen.entry(e.name.clone()).or_default() += 1;
        }
        if let Some(last) = entries.last() {
            cookie = last.next_cookie;
        }
        if eof {
            break;
        }
        // Between pages: remove some entries and add others, anywhere in hash order.
        for _ in 0..5 {
            if let Some(name) = tmp.pop() {
                ns.unlink(d.fid, name.as_bytes()).unwrap();
            }
            let name = format!("new-{added}");
            ns.create(args(d.fid, &name, S_IFREG)).unwrap();
            tmp.push(name);
            added += 1;
        }
    }
    assert!(pages > 300);
    assert!(seen.values().all(|&c| c == 1), "duplicates in the listing");
    for i in (0..n).filter(|i| i % 4 != 0) {
        assert_eq!(
            seen.get(format!("keep-{i}").as_bytes()),
            Some(&1),
            "keep-{i}"
        );
    }
}

/// A hash with four values, so that names collide in groups.
fn tiny_hash(name: &[u8]) -> u64 {
    10 + u64::from(name.first().copied().unwrap_or(0) % 4)
}

#[test]
fn readdir_never_splits_a_hash_collision_group() {
    let dir = tempfile::tempdir().unwrap();
    let ns = Namespace::open_with_hash(dir.path(), tiny_hash).unwrap();
    // 'a' = 97 (hash 11), 'b' = 98 (hash 12), 'c' = 99 (hash 13).
    let all = ["a0", "a1", "a2", "a3", "a4", "b0", "b1", "c0"];
    for n in all {
        mkfile(&ns, Fid::ROOT, n);
    }
    let page = |cookie, max| {
        let (entries, eof) = ns.readdir(Fid::ROOT, cookie, max).unwrap();
        let got: Vec<String> = entries
            .iter()
            .map(|e| String::from_utf8(e.name.clone()).unwrap())
            .collect();
        (got, entries.last().map(|e| e.next_cookie), eof)
    };
    // The group fills the page: it is returned whole, beyond max.
    let (got, next, eof) = page(0, 2);
    assert_eq!((got.len(), next, eof), (5, Some(12), false));
    // A page that would end inside a group ends before it.
    let (got, next, eof) = page(0, 6);
    assert_eq!((got.len(), next, eof), (5, Some(12), false));
    let (got, next, eof) = page(12, 2);
    assert_eq!(
        (got, next, eof),
        (vec!["b0".to_string(), "b1".to_string()], Some(13), false)
    );
    let (got, next, eof) = page(13, 2);
    assert_eq!(
        (got, next, eof),
        (vec!["c0".to_string()], Some(COOKIE_EOF), true)
    );
    for max in 1..10 {
        assert_eq!(sorted(list(&ns, Fid::ROOT, max)), names(&all), "max {max}");
    }
    // Colliding names are still told apart.
    assert_ne!(
        lookup_fid(&ns, Fid::ROOT, "a1"),
        lookup_fid(&ns, Fid::ROOT, "a2")
    );
    ns.unlink(Fid::ROOT, b"a1").unwrap();
    assert_eq!(errno(ns.lookup(Fid::ROOT, b"a1")), Errno::ENOENT);
    ns.rename(Fid::ROOT, b"a2", Fid::ROOT, b"a1", 0).unwrap();
    assert_eq!(list(&ns, Fid::ROOT, 3).len(), 7);
}

#[test]
fn layouts_and_inheritance() {
    let (_d, ns) = open();
    let d = mkdir(&ns, Fid::ROOT, "d");
    let sub = mkdir(&ns, d.fid, "sub");
    assert_eq!(ns.inherited_layout(sub.fid).unwrap(), None);
    assert_eq!(ns.layout(d.fid).unwrap(), None);
    // The root's default is the filesystem default.
    let fs_default = layout(2, &[]);
    let (root, old) = ns.set_layout(Fid::ROOT, Some(fs_default.clone())).unwrap();
    assert_eq!((root.fid, old), (Fid::ROOT, None));
    assert_eq!(
        ns.inherited_layout(sub.fid).unwrap(),
        Some(fs_default.clone())
    );
    assert_eq!(
        ns.inherited_layout(Fid::ROOT).unwrap(),
        Some(fs_default.clone())
    );
    // A directory's own default wins; its subdirectories do not inherit it here (Lustre:
    // parent's default, else the filesystem default).
    let d_default = layout(4, &[]);
    ns.set_layout(d.fid, Some(d_default.clone())).unwrap();
    assert_eq!(ns.inherited_layout(d.fid).unwrap(), Some(d_default.clone()));
    assert_eq!(
        ns.inherited_layout(sub.fid).unwrap(),
        Some(fs_default.clone())
    );
    assert_eq!(ns.layout(d.fid).unwrap(), Some(d_default.clone()));
    let (_, old) = ns.set_layout(d.fid, None).unwrap();
    assert_eq!(old, Some(d_default));
    assert_eq!(ns.inherited_layout(d.fid).unwrap(), Some(fs_default));
    // mkdir with a layout sets the new directory's default.
    let mut a = args(d.fid, "striped", S_IFDIR | 0o755);
    a.layout = Some(layout(8, &[]));
    let striped = ns.create(a).unwrap();
    assert_eq!(
        ns.inherited_layout(striped.fid).unwrap(),
        Some(layout(8, &[]))
    );

    // A file's layout: stored with it, its generation in the attributes.
    let mut l = layout(1, &[100]);
    l.layout_gen = 3;
    let mut a = args(d.fid, "f", S_IFREG | 0o644);
    a.layout = Some(l.clone());
    let f = ns.create(a).unwrap();
    assert_eq!(f.layout_gen, 3);
    assert_eq!(ns.layout(f.fid).unwrap(), Some(l.clone()));
    let (attr, old) = ns.set_layout(f.fid, Some(layout(2, &[7, 8]))).unwrap();
    assert_eq!((attr.layout_gen, old), (4, Some(l)));
    let new = ns.layout(f.fid).unwrap().unwrap();
    assert_eq!((new.layout_gen, new.components.len()), (4, 1));
    assert_eq!(ns.getattr(f.fid).unwrap().layout_gen, 4);

    assert_eq!(errno(ns.inherited_layout(f.fid)), Errno::ENOTDIR);
    let fifo = ns.create(args(d.fid, "p", S_IFIFO)).unwrap();
    assert_eq!(
        errno(ns.set_layout(fifo.fid, Some(layout(1, &[])))),
        Errno::EINVAL
    );
    assert_eq!(errno(ns.layout(Fid { oid: 999, ..f.fid })), Errno::ENOENT);
    assert_eq!(ns.layout(fifo.fid).unwrap(), None);
}

#[test]
fn xattrs_and_flags() {
    let (_d, ns) = open();
    let f = mkfile(&ns, Fid::ROOT, "f");
    age(&ns, f.fid);
    assert_eq!(ns.list_xattr(f.fid).unwrap(), Vec::<Vec<u8>>::new());
    ns.set_xattr(f.fid, b"user.b", b"2", 0).unwrap();
    ns.set_xattr(f.fid, b"user.a", b"1", XATTR_CREATE).unwrap();
    ns.set_xattr(f.fid, b"trusted.empty", b"", 0).unwrap();
    assert!(ns.getattr(f.fid).unwrap().ctime > OLD);
    assert_eq!(ns.get_xattr(f.fid, b"user.a").unwrap(), b"1");
    assert_eq!(ns.get_xattr(f.fid, b"trusted.empty").unwrap(), b"");
    assert_eq!(
        ns.list_xattr(f.fid).unwrap(),
        names(&["trusted.empty", "user.a", "user.b"])
    );

    assert_eq!(
        errno(ns.set_xattr(f.fid, b"user.a", b"x", XATTR_CREATE)),
        Errno::EEXIST
    );
    assert_eq!(
        errno(ns.set_xattr(f.fid, b"user.c", b"x", XATTR_REPLACE)),
        Errno::ENODATA
    );
    assert_eq!(
        errno(ns.set_xattr(f.fid, b"user.a", b"x", 3)),
        Errno::EEXIST
    );
    assert_eq!(
        errno(ns.set_xattr(f.fid, b"user.a", b"x", 4)),
        Errno::EINVAL
    );
    ns.set_xattr(f.fid, b"user.a", b"replaced", XATTR_REPLACE)
        .unwrap();
    assert_eq!(ns.get_xattr(f.fid, b"user.a").unwrap(), b"replaced");
    ns.set_xattr(f.fid, b"user.a", b"again", 0).unwrap();
    assert_eq!(ns.get_xattr(f.fid, b"user.a").unwrap(), b"again");

    assert_eq!(errno(ns.get_xattr(f.fid, b"user.none")), Errno::ENODATA);
    let missing = Fid { oid: 999, ..f.fid };
    assert_eq!(errno(ns.get_xattr(missing, b"user.a")), Errno::ENOENT);
    assert_eq!(
        errno(ns.set_xattr(missing, b"user.a", b"", 0)),
        Errno::ENOENT
    );
    assert_eq!(errno(ns.list_xattr(missing)), Errno::ENOENT);
    assert_eq!(
        errno(ns.set_xattr(f.fid, &[b'n'; 256], b"", 0)),
        Errno::ERANGE
    );
    assert_eq!(errno(ns.set_xattr(f.fid, b"", b"", 0)), Errno::ERANGE);
    assert_eq!(errno(ns.get_xattr(f.fid, &[b'n'; 256])), Errno::ERANGE);
    assert_eq!(errno(ns.set_xattr(f.fid, b"a\0b", b"", 0)), Errno::EINVAL);
    let big = vec![0u8; sheen_wire::limits::XATTR_VALUE_MAX_BYTES + 1];
    assert_eq!(errno(ns.set_xattr(f.fid, b"user.big", &big, 0)), Errno(7));
    ns.set_xattr(f.fid, b"user.max", &big[1..], 0).unwrap();

    ns.remove_xattr(f.fid, b"user.b").unwrap();
    assert_eq!(errno(ns.remove_xattr(f.fid, b"user.b")), Errno::ENODATA);
    assert_eq!(errno(ns.remove_xattr(missing, b"user.b")), Errno::ENOENT);
    assert_eq!(
        ns.list_xattr(f.fid).unwrap(),
        names(&["trusted.empty", "user.a", "user.max"])
    );

    // Directories have xattrs too, and the per-inode limit holds.
    ns.set_xattr(Fid::ROOT, b"user.r", b"1", 0).unwrap();
    poke(&ns, Fid::ROOT, |i| i.xattr_count = XATTRS_PER_INODE_MAX);
    assert_eq!(
        errno(ns.set_xattr(Fid::ROOT, b"user.s", b"1", 0)),
        Errno::ENOSPC
    );
    ns.set_xattr(Fid::ROOT, b"user.r", b"2", 0).unwrap();
}

#[test]
fn transaction_numbers() {
    let (_d, ns) = open();
    assert_eq!(ns.last_transno(), 0);
    let f = mkfile(&ns, Fid::ROOT, "f");
    assert_eq!((ns.last_transno(), ns.last_op_transno()), (1, 1));
    ns.setattr(f.fid, &SetAttr::default()).unwrap();
    ns.set_xattr(f.fid, b"user.x", b"", 0).unwrap();
    ns.link(f.fid, Fid::ROOT, b"g").unwrap();
    assert_eq!(ns.last_transno(), 4);
    // Failures take no number.
    assert!(ns.link(f.fid, Fid::ROOT, b"g").is_err());
    assert!(ns.unlink(Fid::ROOT, b"none").is_err());
    assert_eq!(ns.last_transno(), 4);
    ns.unlink(Fid::ROOT, b"g").unwrap();
    assert_eq!(ns.flush().unwrap(), Committed { transno: 5 });
    // Reads take none either.
    ns.getattr(f.fid).unwrap();
    ns.readdir(Fid::ROOT, 0, 10).unwrap();
    assert_eq!(ns.flush().unwrap().transno, 5);
}

#[test]
fn statfs_counts_inodes() {
    let (_d, ns) = open();
    let s = ns.statfs().unwrap();
    assert_eq!((s.inodes_used, s.inodes_max), (1, limits::INODES_MAX));
    assert!(s.bytes_used > 0);
    mkdir(&ns, Fid::ROOT, "d");
    mkfile(&ns, Fid::ROOT, "f");
    assert_eq!(ns.statfs().unwrap().inodes_used, 3);
    ns.unlink(Fid::ROOT, b"f").unwrap();
    ns.rmdir(Fid::ROOT, b"d").unwrap();
    assert_eq!(ns.statfs().unwrap().inodes_used, 1);
}

#[test]
fn concurrent_operations_stay_consistent() {
    let (_d, ns) = open();
    let threads = 4;
    let per_thread: usize = 300;
    std::thread::scope(|s| {
        for t in 0..threads {
            let ns = &ns;
            s.spawn(move || {
                let d = mkdir(ns, Fid::ROOT, &format!("d{t}"));
                for i in 0..per_thread {
                    let name = format!("f{t}-{i}");
                    mkfile(ns, Fid::ROOT, &name);
                    ns.set_xattr(lookup_fid(ns, Fid::ROOT, &name), b"user.x", b"1", 0)
                        .unwrap();
                    if i % 2 == 0 {
                        ns.rename(Fid::ROOT, name.as_bytes(), d.fid, name.as_bytes(), 0)
                            .unwrap();
                    }
                    if i % 3 == 0 {
                        mkdir(ns, Fid::ROOT, &format!("s{t}-{i}"));
                    }
                }
            });
        }
    });
    let root_entries = list(&ns, Fid::ROOT, 100);
    let files = threads * per_thread / 2;
    let subdirs = threads * per_thread.div_ceil(3);
    assert_eq!(root_entries.len(), threads + files + subdirs);
    assert_eq!(
        nlink(&ns, Fid::ROOT),
        u32::try_from(2 + threads + subdirs).unwrap()
    );
    let fids: HashSet<Fid> = root_entries
        .iter()
        .map(|n| ns.lookup(Fid::ROOT, n).unwrap().fid)
        .collect();
    assert_eq!(fids.len(), root_entries.len(), "FIDs are unique");
    let total = 1 + threads + threads * per_thread + subdirs;
    assert_eq!(
        ns.statfs().unwrap().inodes_used,
        u64::try_from(total).unwrap()
    );
    // Every transaction got its own number.
    let ops = threads * (1 + 2 * per_thread + per_thread / 2 + per_thread.div_ceil(3));
    assert_eq!(ns.last_transno(), u64::try_from(ops).unwrap());
}

#[test]
fn corrupt_values_are_errors() {
    let (_d, ns) = open();
    let f = mkfile(&ns, Fid::ROOT, "f");
    let d = mkdir(&ns, Fid::ROOT, "d");
    mkfile(&ns, d.fid, "x");
    ns.inodes
        .insert(f.fid.to_be_bytes(), &b"\x01garbage"[..])
        .unwrap();
    assert!(matches!(ns.getattr(f.fid), Err(NsError::Corrupt(_))));
    assert!(matches!(
        ns.lookup(Fid::ROOT, b"f"),
        Err(NsError::Corrupt(_))
    ));
    assert!(matches!(
        ns.unlink(Fid::ROOT, b"f"),
        Err(NsError::Corrupt(_))
    ));
    assert_eq!(errno(ns.getattr(f.fid)), Errno::EIO);
    let key = codec::dirent_key(d.fid, codec::name_hash(b"x"), b"x");
    ns.dirents.insert(key, &b"short"[..]).unwrap();
    assert!(matches!(ns.readdir(d.fid, 0, 10), Err(NsError::Corrupt(_))));
    assert!(matches!(ns.lookup(d.fid, b"x"), Err(NsError::Corrupt(_))));
    ns.layouts
        .insert(d.fid.to_be_bytes(), &b"\x01\xff"[..])
        .unwrap();
    assert!(matches!(
        ns.inherited_layout(d.fid),
        Err(NsError::Corrupt(_))
    ));
}

#[test]
fn reopen_rejects_an_unknown_format() {
    let dir = tempfile::tempdir().unwrap();
    {
        let ns = reopen(dir.path());
        ns.meta
            .insert(codec::META_FORMAT, &99u32.to_le_bytes()[..])
            .unwrap();
        ns.flush().unwrap();
    }
    assert!(matches!(
        reopen_result(dir.path()),
        Err(NsError::Corrupt(_))
    ));
}

#[test]
fn setgid_directories_pass_on_their_group() {
    let (_d, ns) = open();
    let dir = ns.create(CreateArgs {
        gid: 500,
        ..args(Fid::ROOT, "shared", S_IFDIR | 0o2775)
    });
    let dir = dir.unwrap();
    assert_eq!(dir.mode & 0o7777, 0o2775);
    // The creator's group is 100 (see `args`); entries take the directory's group 500.
    let file = mkfile(&ns, dir.fid, "f");
    assert_eq!((file.gid, file.mode & 0o7777), (500, 0o644));
    let sub = mkdir(&ns, dir.fid, "sub");
    assert_eq!((sub.gid, sub.mode & 0o7777), (500, 0o2755));
    // Without the bit, the creator's group.
    let plain = mkdir(&ns, Fid::ROOT, "plain");
    assert_eq!(mkfile(&ns, plain.fid, "g").gid, 100);
}

#[test]
fn size_changes_move_mtime_unless_one_is_given() {
    let (_d, ns) = open();
    let f = mkfile(&ns, Fid::ROOT, "f");
    age(&ns, f.fid);
    let before = ns.getattr(f.fid).unwrap();
    let after = ns
        .setattr(
            f.fid,
            &SetAttr {
                size: Some(10),
                ..SetAttr::default()
            },
        )
        .unwrap();
    assert!(after.mtime > before.mtime && after.ctime > before.ctime);
    let at = Timespec { sec: 5, nsec: 6 };
    let set = SetAttr {
        size: Some(3),
        mtime: Some(TimeSet::At(at)),
        ..SetAttr::default()
    };
    assert_eq!(ns.setattr(f.fid, &set).unwrap().mtime, at);
    // A mode change alone leaves mtime alone.
    let chmod = SetAttr {
        mode: Some(0o600),
        ..SetAttr::default()
    };
    assert_eq!(ns.setattr(f.fid, &chmod).unwrap().mtime, at);
}

#[test]
fn unknown_xattr_namespaces_are_not_supported() {
    let (_d, ns) = open();
    let f = mkfile(&ns, Fid::ROOT, "f");
    for name in ["bogus.x", "user.", "userx", "lustre"] {
        assert_eq!(
            errno(ns.set_xattr(f.fid, name.as_bytes(), b"v", 0)),
            Errno::EOPNOTSUPP
        );
        let get = ns.get_xattr(f.fid, name.as_bytes());
        assert_eq!(errno(get), Errno::EOPNOTSUPP);
        let remove = ns.remove_xattr(f.fid, name.as_bytes());
        assert_eq!(errno(remove), Errno::EOPNOTSUPP);
    }
    for name in ["user.a", "trusted.b", "security.c", "system.d", "lustre.e"] {
        ns.set_xattr(f.fid, name.as_bytes(), b"v", 0).unwrap();
    }
}

#[test]
fn open_files_outlive_their_last_name() {
    let (d, ns) = open();
    let mut a = args(Fid::ROOT, "f", S_IFREG | 0o644);
    a.layout = Some(layout(1, &[7]));
    let f = ns.create(a).unwrap();
    ns.pin(f.fid).unwrap();
    ns.pin(f.fid).unwrap();
    let r = ns.unlink(Fid::ROOT, b"f").unwrap();
    assert!(!r.destroyed && r.layout.is_none());
    assert_eq!(errno(ns.lookup(Fid::ROOT, b"f")), Errno::ENOENT);
    // Still there for whoever holds it open.
    let orphan = ns.getattr(f.fid).unwrap();
    assert_eq!(orphan.nlink, 0);
    assert!(ns.layout(f.fid).unwrap().is_some());
    assert!(ns.unpin(f.fid).unwrap().is_none(), "one open left");
    let gone = ns
        .unpin(f.fid)
        .unwrap()
        .expect("last close destroys the orphan");
    assert!(gone.destroyed);
    assert_eq!(gone.layout.unwrap().components[0].stripe.objects[0].oid, 7);
    assert_eq!(errno(ns.getattr(f.fid)), Errno::ENOENT);
    // Pinning what does not exist fails; unpinning something never pinned does nothing.
    assert_eq!(errno(ns.pin(f.fid)), Errno::ENOENT);
    assert_eq!(
        errno(ns.try_pin(f.fid).expect("no change running")),
        Errno::ENOENT
    );
    assert!(ns.unpin(f.fid).unwrap().is_none());

    // Rename over an open file keeps it too; closing a file that still has a name does not
    // destroy it.
    let victim = mkfile(&ns, Fid::ROOT, "victim");
    mkfile(&ns, Fid::ROOT, "new");
    ns.pin(victim.fid).unwrap();
    let replaced = ns
        .rename(Fid::ROOT, b"new", Fid::ROOT, b"victim", 0)
        .unwrap()
        .unwrap();
    assert!(!replaced.destroyed);
    assert_eq!(ns.getattr(victim.fid).unwrap().nlink, 0);
    let named = mkfile(&ns, Fid::ROOT, "named");
    ns.pin(named.fid).unwrap();
    assert!(ns.unpin(named.fid).unwrap().is_none());
    assert_eq!(ns.getattr(named.fid).unwrap().nlink, 1);

    // A restart finds the orphan left open and removes it.
    ns.flush().unwrap();
    drop(ns);
    let ns = reopen(d.path());
    let removed = ns.remove_orphans().unwrap();
    assert_eq!(removed.len(), 1);
    assert_eq!(removed[0].attr.fid, victim.fid);
    assert_eq!(errno(ns.getattr(victim.fid)), Errno::ENOENT);
    assert!(ns.remove_orphans().unwrap().is_empty());
    assert_eq!(ns.getattr(named.fid).unwrap().nlink, 1);
}

#[test]
fn ost_watermarks_follow_every_layout_stored() {
    let (d, ns) = open();
    assert!(ns.ost_watermarks().unwrap().is_empty());
    let mut a = args(Fid::ROOT, "a", S_IFREG | 0o644);
    a.layout = Some(layout(2, &[10, 7]));
    let f = ns.create(a).unwrap();
    let mut b = args(Fid::ROOT, "b", S_IFREG | 0o644);
    b.layout = Some(layout(1, &[4]));
    ns.create(b).unwrap();
    let w = ns.ost_watermarks().unwrap();
    assert_eq!((w.get(&0), w.get(&1)), (Some(&10), Some(&7)));
    // A replaced layout raises them too; removing a file never lowers them.
    ns.set_layout(f.fid, Some(layout(2, &[12, 9]))).unwrap();
    ns.unlink(Fid::ROOT, b"a").unwrap();
    let w = ns.ost_watermarks().unwrap();
    assert_eq!((w.get(&0), w.get(&1)), (Some(&12), Some(&9)));
    // A failed create leaves them alone.
    let mut c = args(Fid::ROOT, "b", S_IFREG | 0o644);
    c.layout = Some(layout(1, &[99]));
    assert_eq!(errno(ns.create(c)), Errno::EEXIST);
    assert_eq!(ns.ost_watermarks().unwrap().get(&0), Some(&12));
    ns.flush().unwrap();
    drop(ns);
    let ns = reopen(d.path());
    assert_eq!(ns.ost_watermarks().unwrap().get(&1), Some(&9));
}

#[test]
fn client_records_are_written_with_the_change_and_survive_a_reopen() {
    let (dir, ns) = open();
    let client = b"client-a";
    let a = ns
        .with_client_record(client, 7, |ns| {
            ns.create(args(Fid::ROOT, "a", S_IFREG | 0o644))
        })
        .unwrap();
    let transno = ns.last_op_transno();
    assert_eq!(ns.client_record(client, 7).unwrap(), Some(transno));
    // A change that fails records nothing (it did not happen).
    let again = ns.with_client_record(client, 8, |ns| {
        ns.create(args(Fid::ROOT, "a", S_IFREG | 0o644))
    });
    assert_eq!(errno(again), Errno::EEXIST);
    assert_eq!(ns.client_record(client, 8).unwrap(), None);
    // Other clients and calls outside `with_client_record` are not recorded.
    assert_eq!(ns.client_record(b"client-b", 7).unwrap(), None);
    mkfile(&ns, Fid::ROOT, "b");
    assert_eq!(ns.client_record(client, 9).unwrap(), None);
    ns.flush().unwrap();
    drop(ns);
    let ns = reopen(dir.path());
    assert_eq!(ns.client_record(client, 7).unwrap(), Some(transno));
    assert_eq!(lookup_fid(&ns, Fid::ROOT, "a"), a.fid);
}

#[test]
fn client_records_are_bounded_oldest_first() {
    let (_dir, ns) = open();
    let client = b"busy";
    let n = crate::CLIENT_RECORDS_KEPT as u64 + 200;
    for xid in 1..=n {
        ns.with_client_record(client, xid, |ns| {
            ns.create(args(Fid::ROOT, &format!("f{xid}"), S_IFREG | 0o644))
        })
        .unwrap();
    }
    let kept = (1..=n)
        .filter(|x| ns.client_record(client, *x).unwrap().is_some())
        .count();
    assert!(
        (crate::CLIENT_RECORDS_KEPT..=crate::CLIENT_RECORDS_KEPT + 64).contains(&kept),
        "kept {kept}"
    );
    assert!(
        ns.client_record(client, n).unwrap().is_some(),
        "the newest is kept"
    );
    assert!(
        ns.client_record(client, 1).unwrap().is_none(),
        "the oldest is dropped"
    );
}

/// A POSIX ACL xattr value: version 2, then (tag, perm, id) entries, little endian.
fn acl_value(entries: &[(u16, u16, u32)]) -> Vec<u8> {
    let mut out = 2u32.to_le_bytes().to_vec();
    for &(tag, perm, id) in entries {
        out.extend_from_slice(&tag.to_le_bytes());
        out.extend_from_slice(&perm.to_le_bytes());
        out.extend_from_slice(&id.to_le_bytes());
    }
    out
}

#[test]
fn access_acls_set_the_mode_and_follow_chmod() {
    use crate::acl::{tag::*, ACCESS};
    let (_d, ns) = open();
    let f = mkfile(&ns, Fid::ROOT, "f");
    let u = u32::MAX;
    let acl = acl_value(&[
        (USER_OBJ, 7, u),
        (USER, 4, 65534),
        (GROUP_OBJ, 0, u),
        (MASK, 5, u),
        (OTHER, 1, u),
    ]);
    ns.set_xattr(f.fid, ACCESS, &acl, 0).unwrap();
    let a = ns.getattr(f.fid).unwrap();
    assert_eq!(a.mode, S_IFREG | 0o751, "group bits are the mask");
    assert_eq!(ns.get_xattr(f.fid, ACCESS).unwrap(), acl);
    // chmod rewrites the owner, mask and other entries.
    let chmod = SetAttr {
        mode: Some(0o640),
        ..SetAttr::default()
    };
    ns.setattr(f.fid, &chmod).unwrap();
    let back = crate::acl::Acl::parse(&ns.get_xattr(f.fid, ACCESS).unwrap()).unwrap();
    let perms: Vec<(u16, u16)> = back.entries().iter().map(|e| (e.tag, e.perm)).collect();
    assert_eq!(
        perms,
        vec![
            (USER_OBJ, 6),
            (USER, 4),
            (GROUP_OBJ, 0),
            (MASK, 4),
            (OTHER, 0)
        ]
    );
    // An ACL of the base entries only is the mode: it replaces the stored one, and the mode
    // takes its bits.
    let base = acl_value(&[(USER_OBJ, 6, u), (GROUP_OBJ, 4, u), (OTHER, 0, u)]);
    ns.set_xattr(f.fid, ACCESS, &base, 0).unwrap();
    assert_eq!(errno(ns.get_xattr(f.fid, ACCESS)), Errno::ENODATA);
    assert_eq!(ns.getattr(f.fid).unwrap().mode, S_IFREG | 0o640);
    assert!(ns.list_xattr(f.fid).unwrap().is_empty());
    // The set-group-ID bit goes when the caller is not in the group (the client says so).
    let sgid = SetAttr {
        mode: Some(0o2755),
        ..SetAttr::default()
    };
    ns.setattr(f.fid, &sgid).unwrap();
    ns.set_xattr(f.fid, ACCESS, &acl, 0).unwrap();
    assert_eq!(ns.getattr(f.fid).unwrap().mode, S_IFREG | 0o2751);
    ns.set_xattr(f.fid, ACCESS, &acl, XATTR_ACL_KILL_SGID)
        .unwrap();
    assert_eq!(ns.getattr(f.fid).unwrap().mode, S_IFREG | 0o751);
    // Malformed ACLs are refused and change nothing.
    let bad = acl_value(&[
        (USER_OBJ, 7, u),
        (USER, 4, 5),
        (GROUP_OBJ, 0, u),
        (OTHER, 1, u),
    ]);
    assert_eq!(errno(ns.set_xattr(f.fid, ACCESS, &bad, 0)), Errno::EINVAL);
    assert_eq!(
        errno(ns.set_xattr(f.fid, crate::acl::DEFAULT, &bad[..6], 0)),
        Errno::EINVAL
    );
    assert_eq!(ns.get_xattr(f.fid, ACCESS).unwrap(), acl);
    // Removing the ACL leaves the mode.
    ns.remove_xattr(f.fid, ACCESS).unwrap();
    assert_eq!(ns.getattr(f.fid).unwrap().mode, S_IFREG | 0o751);
}

#[test]
fn new_inodes_inherit_default_acls_or_take_the_umask() {
    use crate::acl::{tag::*, ACCESS, DEFAULT};
    let (_d, ns) = open();
    let u = u32::MAX;
    let plain = mkdir(&ns, Fid::ROOT, "plain");
    let umasked = |parent, name: &str, mode| {
        let a = CreateArgs {
            umask: 0o027,
            ..args(parent, name, mode)
        };
        ns.create(a).unwrap()
    };
    assert_eq!(
        umasked(plain.fid, "f", S_IFREG | 0o666).mode,
        S_IFREG | 0o640
    );
    assert_eq!(
        umasked(plain.fid, "d", S_IFDIR | 0o777).mode,
        S_IFDIR | 0o750
    );
    let link = CreateArgs {
        symlink: Some(b"f".to_vec()),
        umask: 0o027,
        ..args(plain.fid, "l", S_IFLNK | 0o777)
    };
    assert_eq!(ns.create(link).unwrap().mode, S_IFLNK | 0o777);

    let shared = mkdir(&ns, Fid::ROOT, "shared");
    let default = acl_value(&[
        (USER_OBJ, 7, u),
        (USER, 7, 65534),
        (GROUP_OBJ, 5, u),
        (MASK, 7, u),
        (OTHER, 0, u),
    ]);
    ns.set_xattr(shared.fid, DEFAULT, &default, 0).unwrap();
    // The umask is ignored; the default ACL masked by the mode becomes the access ACL.
    let f = umasked(shared.fid, "f", S_IFREG | 0o666);
    assert_eq!(f.mode, S_IFREG | 0o660);
    let access = acl_value(&[
        (USER_OBJ, 6, u),
        (USER, 7, 65534),
        (GROUP_OBJ, 5, u),
        (MASK, 6, u),
        (OTHER, 0, u),
    ]);
    assert_eq!(ns.get_xattr(f.fid, ACCESS).unwrap(), access);
    assert_eq!(errno(ns.get_xattr(f.fid, DEFAULT)), Errno::ENODATA);
    // A subdirectory also inherits the default ACL itself, and passes it on.
    let sub = umasked(shared.fid, "sub", S_IFDIR | 0o777);
    assert_eq!(sub.mode, S_IFDIR | 0o770);
    assert_eq!(ns.get_xattr(sub.fid, DEFAULT).unwrap(), default);
    assert_eq!(ns.list_xattr(sub.fid).unwrap().len(), 2);
    let deep = umasked(sub.fid, "g", S_IFIFO | 0o640);
    assert_eq!(deep.mode, S_IFIFO | 0o640);
    assert!(ns.get_xattr(deep.fid, ACCESS).is_ok());
    // Inherited xattrs go with the inode.
    ns.unlink(shared.fid, b"f").unwrap();
    ns.unlink(sub.fid, b"g").unwrap();
    ns.rmdir(shared.fid, b"sub").unwrap();
    // A default ACL of the base entries gives no access ACL, only the masked mode.
    let base = acl_value(&[(USER_OBJ, 7, u), (GROUP_OBJ, 5, u), (OTHER, 5, u)]);
    ns.set_xattr(shared.fid, DEFAULT, &base, 0).unwrap();
    let f = umasked(shared.fid, "h", S_IFREG | 0o666);
    assert_eq!(f.mode, S_IFREG | 0o644);
    assert!(ns.list_xattr(f.fid).unwrap().is_empty());
}

#[test]
fn atime_alone_can_leave_ctime() {
    let (_d, ns) = open();
    let f = mkfile(&ns, Fid::ROOT, "f");
    age(&ns, f.fid);
    let read = SetAttr {
        atime: Some(TimeSet::Now),
        keep_ctime: true,
        ..SetAttr::default()
    };
    let a = ns.setattr(f.fid, &read).unwrap();
    assert!(a.atime > OLD);
    assert_eq!((a.mtime, a.ctime), (OLD, OLD));
    // Without `keep_ctime` (utimensat), ctime moves.
    let utimes = SetAttr {
        atime: Some(TimeSet::Now),
        ..SetAttr::default()
    };
    assert!(ns.setattr(f.fid, &utimes).unwrap().ctime > OLD);
}

/// Every entry of `dir` with its attributes, read with `readdir_plus` `max` at a time and
/// at most `max_bytes` per page; also returns the pages' sizes as counted.
fn list_plus(ns: &Namespace, dir: Fid, max: u32, max_bytes: usize) -> (Vec<EntryAttrs>, usize) {
    let mut out = Vec::new();
    let mut cookie = 0;
    let mut pages = 0;
    loop {
        let page = ns.readdir_plus(dir, cookie, max, max_bytes).unwrap();
        pages += 1;
        if let Some(last) = page.entries.last() {
            cookie = last.entry.next_cookie;
        }
        out.extend(page.entries);
        if page.eof {
            return (out, pages);
        }
    }
}

fn entry_bytes(e: &EntryAttrs) -> usize {
    sheen_wire::DirEntryPlus::wire_bytes_bound(e.entry.name.len(), e.layout.as_ref())
}

#[test]
fn readdir_plus_pages_like_readdir_with_getattrs() {
    let (_d, ns) = open();
    let d = mkdir(&ns, Fid::ROOT, "d");
    for i in 0..300 {
        let name = format!("f{i:03}");
        match i % 5 {
            0 => drop(mkdir(&ns, d.fid, &name)),
            1 => {
                let mut a = args(d.fid, &name, S_IFLNK | 0o777);
                a.symlink = Some(b"target".to_vec());
                ns.create(a).unwrap();
            }
            2 => drop(ns.create(args(d.fid, &name, S_IFIFO | 0o600)).unwrap()),
            _ => {
                let mut a = args(d.fid, &name, S_IFREG | 0o640);
                a.layout = Some(layout(2, &[i, i + 1000]));
                ns.create(a).unwrap();
            }
        }
    }
    let some = lookup_fid(&ns, d.fid, "f003");
    ns.setattr(
        some,
        &SetAttr {
            size: Some(12345),
            ..SetAttr::default()
        },
    )
    .unwrap();
    for max in [1, 7, 64, 1000] {
        // The same entries, the same cookies, the same page ends as readdir.
        let mut cookie = 0;
        loop {
            let (plain, eof) = ns.readdir(d.fid, cookie, max).unwrap();
            let plus = ns.readdir_plus(d.fid, cookie, max, usize::MAX).unwrap();
            let entries: Vec<DirEntry> = plus.entries.iter().map(|e| e.entry.clone()).collect();
            assert_eq!(
                (&entries, plus.eof),
                (&plain, eof),
                "max {max} cookie {cookie}"
            );
            assert_eq!(plus.transno, ns.last_transno());
            for e in &plus.entries {
                assert_eq!(e.attr, ns.getattr(e.entry.fid).unwrap());
                assert_eq!(e.attr.file_type(), e.entry.file_type);
                let want = if e.attr.is_reg() {
                    ns.layout(e.entry.fid).unwrap()
                } else {
                    None
                };
                assert_eq!(e.layout, want, "layout of {:?}", e.entry.name);
                assert_eq!(e.attr.is_reg(), e.layout.is_some());
            }
            match plain.last() {
                Some(last) if !eof => cookie = last.next_cookie,
                _ => break,
            }
        }
    }
    let (all, _) = list_plus(&ns, d.fid, 64, usize::MAX);
    assert_eq!(all.len(), 300);
    let f003 = all.iter().find(|e| e.entry.name == b"f003").unwrap();
    assert_eq!(f003.attr.size, 12345);
    // Errors as readdir's.
    assert_eq!(errno(ns.readdir_plus(d.fid, 0, 0, 1 << 20)), Errno::EINVAL);
    assert_eq!(errno(ns.readdir_plus(some, 0, 1, 1 << 20)), Errno::ENOTDIR);
    let gone = Fid {
        oid: 99_999,
        ..some
    };
    assert_eq!(errno(ns.readdir_plus(gone, 0, 1, 1 << 20)), Errno::ENOENT);
    let (rest, eof) = (
        ns.readdir_plus(d.fid, COOKIE_EOF, 10, 1 << 20).unwrap(),
        true,
    );
    assert!(rest.entries.is_empty() && rest.eof == eof);
}

#[test]
fn readdir_plus_pages_are_bounded_by_bytes() {
    let (_d, ns) = open();
    let d = mkdir(&ns, Fid::ROOT, "d");
    let n = 200u64;
    for i in 0..n {
        // Layouts of 1 to 64 objects: entries of very different sizes.
        let objects: Vec<u64> = (0..=i % 64).map(|o| o + 10 * i).collect();
        let count = u32::try_from(objects.len()).unwrap();
        let mut a = args(d.fid, &format!("file-{i}"), S_IFREG | 0o644);
        a.layout = Some(layout(count, &objects));
        ns.create(a).unwrap();
    }
    let max_bytes = 8 << 10;
    let mut cookie = 0;
    let mut seen = HashSet::new();
    let mut pages = 0;
    loop {
        let page = ns.readdir_plus(d.fid, cookie, 1000, max_bytes).unwrap();
        pages += 1;
        let bytes: usize = page.entries.iter().map(entry_bytes).sum();
        assert!(!page.entries.is_empty());
        assert!(
            bytes <= max_bytes || page.entries.len() == 1,
            "a page of {bytes} bytes"
        );
        if !page.eof {
            // It ended because the next entry did not fit.
            let next = ns
                .readdir_plus(
                    d.fid,
                    page.entries.last().unwrap().entry.next_cookie,
                    1,
                    max_bytes,
                )
                .unwrap();
            assert!(bytes + entry_bytes(&next.entries[0]) > max_bytes);
        }
        for e in &page.entries {
            assert!(seen.insert(e.entry.name.clone()), "listed twice");
        }
        match page.entries.last() {
            Some(last) if !page.eof => cookie = last.entry.next_cookie,
            _ => break,
        }
    }
    assert_eq!(seen.len(), 200);
    assert!(pages > 10, "{pages} pages");
    // An entry larger than the bound still comes, alone.
    let (all, pages) = list_plus(&ns, d.fid, 1000, 1);
    assert_eq!((all.len(), pages), (200, 200));
}

#[test]
fn readdir_plus_never_splits_a_hash_collision_group() {
    let dir = tempfile::tempdir().unwrap();
    let ns = Namespace::open_with_hash(dir.path(), tiny_hash).unwrap();
    let all = ["a0", "a1", "a2", "a3", "a4", "b0", "b1", "c0"];
    for n in all {
        mkfile(&ns, Fid::ROOT, n);
    }
    let one = {
        let page = ns.readdir_plus(Fid::ROOT, 0, 1, usize::MAX).unwrap();
        entry_bytes(&page.entries[0])
    };
    let page = |cookie, max, max_bytes| {
        let p = ns.readdir_plus(Fid::ROOT, cookie, max, max_bytes).unwrap();
        let got: Vec<String> = p
            .entries
            .iter()
            .map(|e| String::from_utf8(e.entry.name.clone()).unwrap())
            .collect();
        (
            got.len(),
            p.entries.last().map(|e| e.entry.next_cookie),
            p.eof,
        )
    };
    // By count, as readdir; by bytes, the same: the group of five fills the page (room
    // for two) and comes whole; a page with room for six ends before the "b" group.
    assert_eq!(page(0, 2, usize::MAX), (5, Some(12), false));
    assert_eq!(page(0, 100, 2 * one), (5, Some(12), false));
    assert_eq!(page(0, 100, 6 * one), (5, Some(12), false));
    assert_eq!(page(12, 100, one), (2, Some(13), false));
    assert_eq!(page(13, 100, one), (1, Some(COOKIE_EOF), true));
    for max_bytes in (1..10).map(|k| k * one) {
        let (got, _) = list_plus(&ns, Fid::ROOT, 1000, max_bytes);
        let got = sorted(got.into_iter().map(|e| e.entry.name).collect());
        assert_eq!(got, names(&all), "{max_bytes} bytes");
    }
}

#[test]
fn readdir_plus_stays_complete_under_concurrent_change() {
    let (_d, ns) = open();
    let d = mkdir(&ns, Fid::ROOT, "d");
    let n = 5_000;
    for i in 0..n {
        let name = if i % 4 == 0 {
            format!("tmp-{i}")
        } else {
            format!("keep-{i}")
        };
        ns.create(args(d.fid, &name, S_IFREG | 0o600)).unwrap();
    }
    let mut tmp: Vec<String> = (0..n).step_by(4).map(|i| format!("tmp-{i}")).collect();
    let mut seen: HashMap<Vec<u8>, usize> = HashMap::new();
    let mut cookie = 0;
    let mut added = 0;
    let mut pages = 0;
    loop {
        let page = ns.readdir_plus(d.fid, cookie, 64, 1 << 20).unwrap();
        pages += 1;
        for e in &page.entries {
            *seen.entry(e.entry.name.clone()).or_default() += 1;
            // Nothing changed since the page was read: its attributes are current.
            assert_eq!(e.attr, ns.getattr(e.entry.fid).unwrap());
        }
        if let Some(last) = page.entries.last() {
            cookie = last.entry.next_cookie;
        }
        if page.eof {
            break;
        }
        // Between pages: remove, add and chmod entries anywhere in hash order.
        for _ in 0..5 {
            if let Some(name) = tmp.pop() {
                ns.unlink(d.fid, name.as_bytes()).unwrap();
            }
            let name = format!("new-{added}");
            let a = ns.create(args(d.fid, &name, S_IFREG)).unwrap();
            let chmod = SetAttr {
                mode: Some(0o755),
                ..SetAttr::default()
            };
            ns.setattr(a.fid, &chmod).unwrap();
            tmp.push(name);
            added += 1;
        }
    }
    assert!(pages > 70);
    assert!(seen.values().all(|&c| c == 1), "duplicates in the listing");
    for i in (0..n).filter(|i| i % 4 != 0) {
        assert_eq!(
            seen.get(format!("keep-{i}").as_bytes()),
            Some(&1),
            "keep-{i}"
        );
    }
}

#[test]
fn readdir_plus_pages_are_one_consistent_state() {
    let (_d, ns) = open();
    let ns = std::sync::Arc::new(ns);
    let d = mkdir(&ns, Fid::ROOT, "d");
    for i in 0..200 {
        mkfile(&ns, d.fid, &format!("file-{i}"));
    }
    let f = mkfile(&ns, d.fid, "x");
    // A writer adds and removes a second name of one file: each change moves a name and
    // the link count together, so a consistent page lists as many names of the file as
    // its link count says.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (ns, stop) = (std::sync::Arc::clone(&ns), std::sync::Arc::clone(&stop));
        std::thread::spawn(move || {
            let mut changes = 0;
            while !stop.load(Ordering::SeqCst) {
                ns.link(f.fid, d.fid, b"y").unwrap();
                ns.unlink(d.fid, b"y").unwrap();
                changes += 2;
            }
            changes
        })
    };
    let mut seen_two = false;
    for _ in 0..300 {
        let page = ns.readdir_plus(d.fid, 0, 1000, usize::MAX).unwrap();
        assert!(page.eof);
        let names: Vec<&EntryAttrs> = page
            .entries
            .iter()
            .filter(|e| e.entry.fid == f.fid)
            .collect();
        let listed = u32::try_from(names.len()).unwrap();
        for e in &names {
            assert_eq!(e.attr.nlink, listed, "names and link count disagree");
        }
        seen_two |= listed == 2;
        assert_eq!(page.entries.len(), 200 + names.len());
    }
    stop.store(true, Ordering::SeqCst);
    assert!(writer.join().unwrap() > 0);
    // Not a requirement, but the test is only worth something if both states were seen.
    println!("both names seen in one page: {seen_two}");
}

#[test]
fn entry_attrs_follow_names() {
    let (_d, ns) = open();
    let d = mkdir(&ns, Fid::ROOT, "d");
    let mut a = args(d.fid, "f", S_IFREG | 0o644);
    a.layout = Some(layout(1, &[42]));
    let f = ns.create(a).unwrap();
    let g = mkfile(&ns, d.fid, "g");
    let sub = mkdir(&ns, d.fid, "sub");
    let asked = |names: &[(&str, Fid)]| {
        let names: Vec<(Vec<u8>, Fid)> = names
            .iter()
            .map(|(n, f)| (n.as_bytes().to_vec(), *f))
            .collect();
        ns.entry_attrs(d.fid, &names).unwrap()
    };
    let now = asked(&[("f", f.fid), ("g", g.fid), ("sub", sub.fid)]);
    assert_eq!(now.transno, ns.last_transno());
    assert_eq!(
        now.entries,
        vec![
            Some((f.clone(), Some(layout(1, &[42])))),
            Some((g.clone(), None)),
            Some((sub.clone(), None)),
        ]
    );
    let chmod = SetAttr {
        mode: Some(0o600),
        ..SetAttr::default()
    };
    let f_now = ns.setattr(f.fid, &chmod).unwrap();
    ns.rename(d.fid, b"g", d.fid, b"g2", 0).unwrap();
    ns.rename(d.fid, b"sub", Fid::ROOT, b"sub", 0).unwrap();
    let h = mkfile(&ns, d.fid, "g");
    let now = asked(&[("f", f.fid), ("g", g.fid), ("sub", sub.fid), ("g", h.fid)]);
    assert_eq!(now.transno, ns.last_transno());
    assert_eq!(now.entries[0], Some((f_now, Some(layout(1, &[42])))));
    // "g" names another inode now, "sub" is gone from d.
    assert_eq!(now.entries[1], None);
    assert_eq!(now.entries[2], None);
    assert_eq!(now.entries[3], Some((h, None)));
    assert_eq!(asked(&[]).entries, vec![]);
}

#[test]
fn create_with_fid_keeps_the_fid_and_moves_the_allocator_past_it() {
    let (dir, ns) = open();
    let first = mkfile(&ns, Fid::ROOT, "first").fid;
    // A FID well ahead of the allocator, as a replayed create brings.
    let given = Fid {
        oid: first.oid + 10,
        ..first
    };
    let dir_fid = Fid {
        oid: first.oid + 5,
        ..first
    };
    let a = ns
        .create_with_fid(args(Fid::ROOT, "replayed", S_IFREG | 0o600), given)
        .unwrap();
    assert_eq!(a.fid, given);
    assert_eq!(lookup_fid(&ns, Fid::ROOT, "replayed"), given);
    let d = ns
        .create_with_fid(args(Fid::ROOT, "dir", S_IFDIR | 0o755), dir_fid)
        .unwrap();
    assert_eq!(d.fid, dir_fid);
    let mut link = args(d.fid, "link", S_IFLNK | 0o777);
    link.symlink = Some(b"../replayed".to_vec());
    let l_fid = Fid {
        oid: first.oid + 11,
        ..first
    };
    assert_eq!(ns.create_with_fid(link, l_fid).unwrap().fid, l_fid);
    assert_eq!(ns.readlink(l_fid).unwrap(), b"../replayed");
    // A FID some inode has is refused, and nothing changes.
    let dup = ns.create_with_fid(args(Fid::ROOT, "dup", S_IFREG | 0o600), given);
    assert_eq!(errno(dup), Errno::EEXIST);
    assert!(ns.lookup(Fid::ROOT, b"dup").is_err());
    // New creates come after the highest FID taken.
    let next = mkfile(&ns, Fid::ROOT, "next").fid;
    assert!(next > l_fid, "{next} after {l_fid}");
    ns.flush().unwrap();
    drop(ns);
    let ns = reopen(dir.path());
    assert_eq!(lookup_fid(&ns, d.fid, "link"), l_fid);
    assert!(mkfile(&ns, Fid::ROOT, "after-reopen").fid > next);
}

#[test]
fn with_transno_gives_a_change_its_original_number() {
    let (_dir, ns) = open();
    mkfile(&ns, Fid::ROOT, "a");
    let before = ns.last_transno();
    ns.with_transno(before + 7, |ns| {
        ns.create(args(Fid::ROOT, "b", S_IFREG | 0o644))
    })
    .unwrap();
    assert_eq!(ns.last_op_transno(), before + 7);
    assert_eq!(ns.last_transno(), before + 7);
    // A number at or below the last one is not reused; and the next change counts on.
    ns.with_transno(1, |ns| ns.create(args(Fid::ROOT, "c", S_IFREG | 0o644)))
        .unwrap();
    assert_eq!(ns.last_op_transno(), before + 8);
    mkfile(&ns, Fid::ROOT, "d");
    assert_eq!(ns.last_op_transno(), before + 9);
}

#[test]
fn known_clients_are_registered_or_recorded_and_forgotten() {
    let (dir, ns) = open();
    ns.register_client(b"quiet").unwrap();
    ns.with_client_record(b"busy", 3, |ns| {
        ns.create(args(Fid::ROOT, "a", S_IFREG | 0o644))
    })
    .unwrap();
    ns.register_client(b"busy").unwrap();
    assert_eq!(
        ns.known_clients().unwrap(),
        vec![b"busy".to_vec(), b"quiet".to_vec()]
    );
    ns.flush().unwrap();
    drop(ns);
    let ns = reopen(dir.path());
    assert_eq!(ns.known_clients().unwrap().len(), 2);
    ns.forget_client(b"busy").unwrap();
    assert_eq!(ns.client_record(b"busy", 3).unwrap(), None);
    assert_eq!(ns.known_clients().unwrap(), vec![b"quiet".to_vec()]);
}

#[test]
fn flush_and_copy_is_the_image_of_that_flush() {
    let (dir, ns) = open();
    mkfile(&ns, Fid::ROOT, "committed");
    let image = dir.path().with_extension("image");
    let committed = ns.flush_and_copy(&image).unwrap();
    assert_eq!(committed.transno, ns.last_transno());
    mkfile(&ns, Fid::ROOT, "after");
    let copy = Namespace::open(&image).unwrap();
    assert_eq!(copy.last_transno(), committed.transno);
    assert!(copy.lookup(Fid::ROOT, b"committed").is_ok());
    assert!(copy.lookup(Fid::ROOT, b"after").is_err());
    drop(copy);
    std::fs::remove_dir_all(&image).unwrap();
}

#[test]
fn clean_shutdown_is_seen_once_and_only_if_nothing_changed_after_it() {
    let (dir, ns) = open();
    assert!(!ns.take_clean_shutdown().unwrap());
    mkfile(&ns, Fid::ROOT, "a");
    ns.flush_clean_shutdown().unwrap();
    drop(ns);
    let ns = reopen(dir.path());
    assert!(ns.take_clean_shutdown().unwrap());
    assert!(!ns.take_clean_shutdown().unwrap(), "taken once");
    ns.flush_clean_shutdown().unwrap();
    mkfile(&ns, Fid::ROOT, "b");
    assert!(!ns.take_clean_shutdown().unwrap(), "a change after it");
}

#[test]
fn try_pin_pins_unless_a_change_is_running() {
    let (_dir, ns) = open();
    let f = mkfile(&ns, Fid::ROOT, "f");
    {
        // A change holds the writer's turn: the caller is told to pin elsewhere.
        let _turn = ns.writer.lock().unwrap();
        assert!(ns.try_pin(f.fid).is_none());
        assert!(!ns.pinned(f.fid));
    }
    assert_eq!(ns.try_pin(f.fid).unwrap().unwrap().fid, f.fid);
    assert!(ns.pinned(f.fid));
    // Pinned as by `pin`: the unlink leaves an orphan, the last close destroys it.
    assert!(!ns.unlink(Fid::ROOT, b"f").unwrap().destroyed);
    assert!(ns.unpin(f.fid).unwrap().is_some_and(|r| r.destroyed));
}

#[test]
fn directory_versions_follow_every_change_of_their_entries() {
    let (_dir, ns) = open();
    ns.clear_last_op_transno();
    let d = mkdir(&ns, Fid::ROOT, "d").fid;
    let made = ns.last_op_transno();
    // The mkdir changed the root's entries and made `d` (empty, at the mkdir's number).
    let mut changes = ns.last_op_dirs();
    changes.sort_by_key(|c| c.dir != d);
    assert_eq!(
        changes,
        vec![
            DirChange {
                dir: d,
                before: None,
                after: made
            },
            DirChange {
                dir: Fid::ROOT,
                before: None,
                after: made
            },
        ]
    );
    assert_eq!(ns.dir_version(d), Some(made));
    // Each change of `d`'s entries moves its version from the last one to its own number.
    let mut last = made;
    let changes: [&dyn Fn(&Namespace); 3] = [
        &|ns| {
            mkfile(ns, d, "a");
        },
        &|ns| ns.rename(d, b"a", d, b"b", 0).map(drop).unwrap(),
        &|ns| ns.unlink(d, b"b").map(drop).unwrap(),
    ];
    for change in changes {
        ns.clear_last_op_transno();
        change(&ns);
        let now = ns.last_op_transno();
        assert_eq!(
            ns.last_op_dirs(),
            vec![DirChange {
                dir: d,
                before: Some(last),
                after: now
            }]
        );
        assert_eq!(ns.dir_version(d), Some(now));
        last = now;
    }
    // A change of the directory's own attributes is not a change of its entries.
    ns.clear_last_op_transno();
    let set = SetAttr {
        mode: Some(0o700),
        ..Default::default()
    };
    ns.setattr(d, &set).unwrap();
    assert!(ns.last_op_dirs().is_empty());
    assert_eq!(ns.dir_version(d), Some(last));
}

/// What [`Namespace::pending_destroys`] lists: (fid, layout generation, object ids).
fn pending(ns: &Namespace) -> Vec<(Fid, u32, Vec<u64>)> {
    ns.pending_destroys()
        .unwrap()
        .into_iter()
        .map(|r| {
            (
                r.fid,
                r.layout_gen,
                r.objects.iter().map(|o| o.oid).collect(),
            )
        })
        .collect()
}

#[test]
fn dropped_layouts_are_recorded_until_forgotten() {
    let (d, ns) = open();
    let mut a = args(Fid::ROOT, "f", S_IFREG | 0o644);
    a.layout = Some(layout(2, &[7, 9]));
    let f = ns.create(a).unwrap();
    let mut a = args(Fid::ROOT, "g", S_IFREG | 0o644);
    a.layout = Some(layout(1, &[11]));
    let g = ns.create(a).unwrap();
    let mut a = args(Fid::ROOT, "h", S_IFREG | 0o644);
    a.layout = Some(layout(1, &[12]));
    let h = ns.create(a).unwrap();
    ns.create(args(Fid::ROOT, "empty", S_IFREG | 0o644))
        .unwrap();
    ns.link(g.fid, Fid::ROOT, b"g2").unwrap();
    assert!(pending(&ns).is_empty(), "nothing removed yet");

    // The last name of `f` goes: its layout is recorded, with the removal.
    assert!(ns.unlink(Fid::ROOT, b"f").unwrap().destroyed);
    assert_eq!(pending(&ns), vec![(f.fid, 0, vec![7, 9])]);
    // A name of `g` goes, not its last; a file without objects goes: nothing more.
    assert!(!ns.unlink(Fid::ROOT, b"g").unwrap().destroyed);
    assert!(ns.unlink(Fid::ROOT, b"empty").unwrap().destroyed);
    // A failed removal records nothing.
    assert_eq!(errno(ns.unlink(Fid::ROOT, b"f")), Errno::ENOENT);
    // A replaced layout is recorded under its own generation; the new one is not, and
    // when the file goes its layout is a record of its own.
    let (_, old) = ns.set_layout(h.fid, Some(layout(1, &[13]))).unwrap();
    assert_eq!(old.unwrap().components[0].stripe.objects[0].oid, 12);
    assert!(ns.unlink(Fid::ROOT, b"h").unwrap().destroyed);
    let mut want = vec![
        (f.fid, 0, vec![7, 9]),
        (h.fid, 0, vec![12]),
        (h.fid, 1, vec![13]),
    ];
    want.sort();
    assert_eq!(pending(&ns), want);
    // An open file keeps its layout until its last close.
    ns.pin(g.fid).unwrap();
    assert!(!ns.unlink(Fid::ROOT, b"g2").unwrap().destroyed);
    assert_eq!(pending(&ns).len(), 3);
    assert!(ns.unpin(g.fid).unwrap().unwrap().destroyed);
    want.push((g.fid, 0, vec![11]));
    want.sort();
    assert_eq!(pending(&ns), want);

    // The records survive a restart (an MDS that stopped before the OSTs answered).
    ns.flush().unwrap();
    drop(ns);
    let ns = reopen(d.path());
    assert_eq!(pending(&ns), want);
    // What the OSTs destroyed is forgotten, record by record; forgetting twice is harmless.
    ns.forget_destroy(h.fid, 0).unwrap();
    ns.forget_destroy(h.fid, 0).unwrap();
    ns.forget_destroy(f.fid, 0).unwrap();
    ns.forget_destroy(g.fid, 0).unwrap();
    assert_eq!(pending(&ns), vec![(h.fid, 1, vec![13])]);
    ns.forget_destroy(h.fid, 1).unwrap();
    assert!(pending(&ns).is_empty());
}
