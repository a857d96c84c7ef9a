//! The modifying operations: create, setattr, link, unlink, rmdir, rename, layouts and
//! xattrs. Each is one transaction ([`Namespace::txn`]).
//!
//! Times follow POSIX: adding or removing an entry sets the directory's mtime and ctime;
//! any change to an inode (link count, attributes, layout, xattrs) sets its ctime.

use sheen_wire::limits::{PATH_MAX_BYTES, XATTR_VALUE_MAX_BYTES};
use sheen_wire::{Attr, Fid, Layout, SetAttr, TimeSet, Timespec};

use crate::acl::{self, Acl};
use crate::codec::{mode, Inode, NO_FID};
use crate::limits::{DIR_NLINK_MAX, LINK_MAX, XATTRS_PER_INODE_MAX};
use crate::txn::{fail, Tx, TxResult};
use crate::{
    check_name, check_xattr_name, CreateArgs, Namespace, NsError, Removed, RENAME_EXCHANGE,
    RENAME_NOREPLACE, XATTR_ACL_KILL_SGID, XATTR_CREATE, XATTR_REPLACE,
};

/// The size a directory reports, as on ext4.
pub(crate) const DIR_SIZE_BYTES: u64 = 4096;

/// 512-byte blocks for `size` bytes.
fn blocks_for(size: u64) -> u64 {
    size.div_ceil(512)
}

/// Drops one link of non-directory `fid`, destroying it when it was the last, unless a
/// client holds it open (`keep`): then it stays, nameless, as an orphan until the last close.
fn drop_link(tx: &mut Tx<'_>, fid: Fid, keep: bool) -> TxResult<Removed> {
    let now = tx.now;
    let inode = tx.modify(fid, |i| {
        i.attr.nlink = i.attr.nlink.saturating_sub(1);
        i.attr.ctime = now;
        Ok(())
    })?;
    if inode.attr.nlink > 0 || keep {
        return Ok(Removed {
            attr: inode.attr,
            destroyed: false,
            layout: None,
        });
    }
    let layout = tx.destroy(fid)?;
    Ok(Removed {
        attr: inode.attr,
        destroyed: true,
        layout,
    })
}

/// Destroys empty directory `fid`, which lost its entry in `parent`.
fn destroy_dir(tx: &mut Tx<'_>, parent: Fid, fid: Fid) -> TxResult<Removed> {
    let now = tx.now;
    tx.modify(parent, |p| {
        p.attr.nlink = p.attr.nlink.saturating_sub(1);
        Ok(())
    })?;
    let inode = tx.modify(fid, |i| {
        i.attr.nlink = 0;
        i.attr.ctime = now;
        Ok(())
    })?;
    tx.destroy(fid)?;
    Ok(Removed {
        attr: inode.attr,
        destroyed: true,
        layout: None,
    })
}

/// Moves directory `dir` from `from` to `to`: its `..` and both parents' link counts.
fn move_dir(tx: &mut Tx<'_>, dir: Fid, from: Fid, to: Fid) -> TxResult<()> {
    if from == to {
        return Ok(());
    }
    tx.modify(to, |p| {
        if p.attr.nlink >= DIR_NLINK_MAX {
            return Err(NsError::TooManyLinks);
        }
        p.attr.nlink += 1;
        Ok(())
    })?;
    tx.modify(from, |p| {
        p.attr.nlink = p.attr.nlink.saturating_sub(1);
        Ok(())
    })?;
    tx.modify(dir, |d| {
        d.parent = to;
        Ok(())
    })?;
    Ok(())
}

/// Rewrites the access ACL of `fid`, if it has one, after a chmod to `mode`. An ACL that
/// does not parse (stored before ACLs were checked) is left alone.
fn chmod_acl(tx: &mut Tx<'_>, fid: Fid, mode: u32) -> TxResult<()> {
    let Some(value) = tx.xattr(fid, acl::ACCESS)? else {
        return Ok(());
    };
    if let Ok(mut a) = Acl::parse(&value) {
        a.chmod(mode);
        tx.put_xattr(fid, acl::ACCESS, &a.to_bytes())?;
    }
    Ok(())
}

/// Extended attribute namespaces Linux knows; others are EOPNOTSUPP, as on local filesystems.
const XATTR_NAMESPACES: [&[u8]; 5] = [b"user.", b"trusted.", b"security.", b"system.", b"lustre."];

pub(crate) fn check_xattr_namespace(name: &[u8]) -> Result<(), NsError> {
    if XATTR_NAMESPACES
        .iter()
        .any(|ns| name.starts_with(ns) && name.len() > ns.len())
    {
        Ok(())
    } else {
        Err(NsError::NotSupported(
            "unknown extended attribute namespace",
        ))
    }
}

/// The xattrs a new inode is created with: (name, value).
type NewXattrs = Vec<(&'static [u8], Vec<u8>)>;

/// The permission bits and ACLs of a new inode in `parent` (`posix_acl_create`): with a
/// default ACL on `parent`, the new inode's access ACL is that ACL masked by `perm` (kept
/// only when it says more than the mode), a directory also inherits the default ACL, and
/// the umask is not applied; without one, `perm` loses the umask's bits. Symlinks keep
/// `perm` and get no ACL.
fn new_inode_perm(
    tx: &Tx<'_>,
    parent: Fid,
    perm: u32,
    umask: u32,
    file_type: u32,
) -> TxResult<(u32, NewXattrs)> {
    if file_type == mode::S_IFLNK {
        return Ok((perm, Vec::new()));
    }
    // A default ACL that does not parse (stored before ACLs were checked) counts as none.
    let default = tx
        .xattr(parent, acl::DEFAULT)?
        .and_then(|v| Acl::parse(&v).ok().map(|a| (a, v)));
    let Some((mut access, default)) = default else {
        return Ok((perm & !(umask & mode::S_IRWXUGO), Vec::new()));
    };
    let (perm, extended) = access.create_masq(perm);
    let mut xattrs = Vec::new();
    if extended {
        xattrs.push((acl::ACCESS, access.to_bytes()));
    }
    if file_type == mode::S_IFDIR {
        xattrs.push((acl::DEFAULT, default.to_vec()));
    }
    Ok((perm, xattrs))
}

/// A writer's report (`SetAttr::grow_only`): the size only grows, the mtime only moves
/// forward and the ctime with it; other fields are not part of a report and stay.
fn grow(i: &mut Inode, attr: &SetAttr, now: Timespec) -> Result<(), NsError> {
    if i.file_type() != mode::S_IFREG {
        return Err(NsError::Invalid("a writer's report on a non-regular file"));
    }
    if let Some(size) = attr.size.filter(|s| *s > i.attr.size) {
        i.attr.size = size;
        i.attr.blocks = blocks_for(size);
    }
    let mtime = match attr.mtime {
        Some(TimeSet::At(t)) => Some(t),
        Some(TimeSet::Now) => Some(now),
        None => None,
    };
    if let Some(m) = mtime.filter(|m| *m > i.attr.mtime) {
        i.attr.mtime = m;
        i.attr.ctime = i.attr.ctime.max(attr.ctime.unwrap_or(m)).max(m);
    }
    Ok(())
}

fn touch_ctime(tx: &mut Tx<'_>, fid: Fid) -> TxResult<Inode> {
    let now = tx.now;
    tx.modify(fid, |i| {
        i.attr.ctime = now;
        Ok(())
    })
}

impl Namespace {
    /// Creates a file, directory, symlink, FIFO, socket or device node in `args.parent`.
    pub fn create(&self, args: CreateArgs) -> Result<Attr, NsError> {
        self.create_as(args, None)
    }

    /// [`Namespace::create`] giving the new inode `fid` (a replayed create keeps the FID it
    /// first got); EEXIST if an inode has that FID. The FID allocator moves past it.
    pub fn create_with_fid(&self, args: CreateArgs, fid: Fid) -> Result<Attr, NsError> {
        self.create_as(args, Some(fid))
    }

    fn create_as(&self, args: CreateArgs, given: Option<Fid>) -> Result<Attr, NsError> {
        check_name(&args.name)?;
        let file_type = match args.mode & mode::S_IFMT {
            0 => mode::S_IFREG,
            t @ (mode::S_IFREG
            | mode::S_IFDIR
            | mode::S_IFLNK
            | mode::S_IFIFO
            | mode::S_IFSOCK
            | mode::S_IFCHR
            | mode::S_IFBLK) => t,
            _ => return Err(NsError::Invalid("unknown file type")),
        };
        let is_dir = file_type == mode::S_IFDIR;
        match (&args.symlink, file_type == mode::S_IFLNK) {
            (Some(t), true) if t.is_empty() => return Err(NsError::Invalid("empty symlink")),
            (Some(t), true) if t.len() > PATH_MAX_BYTES => return Err(NsError::NameTooLong),
            (Some(t), true) if t.contains(&0) => return Err(NsError::Invalid("NUL in symlink")),
            (Some(_), true) | (None, false) => {}
            (None, true) => return Err(NsError::Invalid("symlink without a target")),
            (Some(_), false) => return Err(NsError::Invalid("symlink target for a non-symlink")),
        }
        if args.layout.is_some() && !(is_dir || file_type == mode::S_IFREG) {
            return Err(NsError::Invalid("layout for a special file"));
        }
        let size = match (&args.symlink, is_dir) {
            (_, true) => DIR_SIZE_BYTES,
            (Some(t), _) => u64::try_from(t.len()).unwrap_or(u64::MAX),
            (None, _) => 0,
        };
        let is_dev = file_type == mode::S_IFCHR || file_type == mode::S_IFBLK;
        self.txn(|tx| {
            let parent = tx.dir(args.parent)?;
            // A set-group-ID directory gives new entries its group, and new directories its
            // set-group-ID bit (BSD group semantics, as Linux filesystems do).
            let sgid_parent = parent.attr.mode & mode::S_ISGID != 0;
            let gid = if sgid_parent {
                parent.attr.gid
            } else {
                args.gid
            };
            let mut perm = args.mode & mode::S_IPERM;
            if sgid_parent && is_dir {
                perm |= mode::S_ISGID;
            }
            let (perm, xattrs) = new_inode_perm(tx, args.parent, perm, args.umask, file_type)?;
            if tx.entry(args.parent, &args.name)?.is_some() {
                return fail(NsError::Exists);
            }
            if is_dir && parent.attr.nlink >= DIR_NLINK_MAX {
                return fail(NsError::TooManyLinks);
            }
            let fid = match given {
                Some(fid) => tx.take_fid(fid)?,
                None => tx.alloc_fid()?,
            };
            let now = tx.now;
            let layout_gen = match &args.layout {
                Some(l) if !is_dir => l.layout_gen,
                _ => 0,
            };
            let attr = Attr {
                fid,
                mode: file_type | perm,
                nlink: if is_dir { 2 } else { 1 },
                uid: args.uid,
                gid,
                rdev: if is_dev { args.rdev } else { 0 },
                size,
                blocks: if is_dir { blocks_for(size) } else { 0 },
                atime: now,
                mtime: now,
                ctime: now,
                btime: now,
                layout_gen,
                hsm_state: 0,
                flags: 0,
            };
            for (name, value) in &xattrs {
                tx.put_xattr(fid, name, value)?;
            }
            tx.create_inode(Inode {
                attr: attr.clone(),
                parent: if is_dir { args.parent } else { NO_FID },
                entries: 0,
                // At most the two ACLs.
                xattr_count: u32::try_from(xattrs.len()).unwrap_or(u32::MAX),
                symlink: args.symlink.clone(),
            });
            tx.put_layout(fid, args.layout.as_ref())?;
            tx.add_entry(args.parent, &args.name, fid, file_type)?;
            if is_dir {
                tx.modify(args.parent, |p| {
                    p.attr.nlink += 1;
                    Ok(())
                })?;
            }
            Ok(attr)
        })
    }

    /// Changes attributes of `fid` and sets its ctime (to `attr.ctime` if given, else now;
    /// not at all with `attr.keep_ctime`). A size is accepted for regular files only
    /// (`IsDir` for directories). A mode change rewrites the access ACL to match
    /// (`posix_acl_chmod`).
    pub fn setattr(&self, fid: Fid, attr: &SetAttr) -> Result<Attr, NsError> {
        self.txn(|tx| {
            let now = tx.now;
            let inode = tx.modify(fid, |i| {
                if attr.grow_only {
                    return grow(i, attr, now);
                }
                if let Some(size) = attr.size {
                    match i.file_type() {
                        mode::S_IFREG => {}
                        mode::S_IFDIR => return Err(NsError::IsDir),
                        _ => return Err(NsError::Invalid("size of a special file")),
                    }
                    i.attr.size = size;
                    i.attr.blocks = blocks_for(size);
                }
                if let Some(m) = attr.mode {
                    i.attr.mode = (i.attr.mode & mode::S_IFMT) | (m & mode::S_IPERM);
                }
                if let Some(uid) = attr.uid {
                    i.attr.uid = uid;
                }
                if let Some(gid) = attr.gid {
                    i.attr.gid = gid;
                }
                let resolve = |t: TimeSet| match t {
                    TimeSet::Now => now,
                    TimeSet::At(t) => t,
                };
                if let Some(t) = attr.atime {
                    i.attr.atime = resolve(t);
                }
                match (attr.mtime, attr.size) {
                    (Some(t), _) => i.attr.mtime = resolve(t),
                    // truncate and ftruncate change the data: mtime moves with ctime.
                    (None, Some(_)) => i.attr.mtime = attr.ctime.unwrap_or(now),
                    (None, None) => {}
                }
                if !attr.keep_ctime {
                    i.attr.ctime = attr.ctime.unwrap_or(now);
                }
                Ok(())
            })?;
            if attr.mode.is_some() {
                chmod_acl(tx, fid, inode.attr.mode)?;
            }
            Ok(inode.attr)
        })
    }

    /// Adds a hard link `parent/name` to non-directory `fid`.
    pub fn link(&self, fid: Fid, parent: Fid, name: &[u8]) -> Result<Attr, NsError> {
        check_name(name)?;
        self.txn(|tx| {
            let inode = tx.inode(fid)?;
            if inode.is_dir() {
                return fail(NsError::Perm);
            }
            tx.dir(parent)?;
            if tx.entry(parent, name)?.is_some() {
                return fail(NsError::Exists);
            }
            let now = tx.now;
            let inode = tx.modify(fid, |i| {
                if i.attr.nlink >= LINK_MAX {
                    return Err(NsError::TooManyLinks);
                }
                i.attr.nlink += 1;
                i.attr.ctime = now;
                Ok(())
            })?;
            tx.add_entry(parent, name, fid, inode.file_type())?;
            Ok(inode.attr)
        })
    }

    /// Removes the entry `parent/name` of a non-directory, destroying the inode with its
    /// last link.
    pub fn unlink(&self, parent: Fid, name: &[u8]) -> Result<Removed, NsError> {
        if name == b"." || name == b".." {
            return Err(NsError::IsDir);
        }
        check_name(name)?;
        self.txn(|tx| {
            tx.dir(parent)?;
            let Some((child, _)) = tx.entry(parent, name)? else {
                return fail(NsError::NotFound);
            };
            if tx.inode(child)?.is_dir() {
                return fail(NsError::IsDir);
            }
            tx.remove_entry(parent, name)?;
            drop_link(tx, child, self.pinned(child))
        })
    }

    /// Removes the empty directory `parent/name`.
    pub fn rmdir(&self, parent: Fid, name: &[u8]) -> Result<Removed, NsError> {
        match name {
            b"." => return Err(NsError::Invalid("rmdir of '.'")),
            b".." => return Err(NsError::NotEmpty),
            _ => check_name(name)?,
        }
        self.txn(|tx| {
            tx.dir(parent)?;
            let Some((child, _)) = tx.entry(parent, name)? else {
                return fail(NsError::NotFound);
            };
            let inode = tx.inode(child)?;
            if !inode.is_dir() {
                return fail(NsError::NotDir);
            }
            if child == Fid::ROOT {
                return fail(NsError::Busy);
            }
            if inode.entries > 0 {
                return fail(NsError::NotEmpty);
            }
            tx.remove_entry(parent, name)?;
            destroy_dir(tx, parent, child)
        })
    }

    /// Renames `src_parent/src_name` to `dst_parent/dst_name` with POSIX semantics, or swaps
    /// the two with [`RENAME_EXCHANGE`]. Returns the inode an overwrite replaced.
    pub fn rename(
        &self,
        src_parent: Fid,
        src_name: &[u8],
        dst_parent: Fid,
        dst_name: &[u8],
        flags: u32,
    ) -> Result<Option<Removed>, NsError> {
        if flags & !(RENAME_NOREPLACE | RENAME_EXCHANGE) != 0
            || flags == RENAME_NOREPLACE | RENAME_EXCHANGE
        {
            return Err(NsError::Invalid("rename flags"));
        }
        for name in [src_name, dst_name] {
            if name == b"." || name == b".." {
                return Err(NsError::Busy);
            }
            check_name(name)?;
        }
        let (sp, sn, dp, dn) = (src_parent, src_name, dst_parent, dst_name);
        self.txn(|tx| {
            tx.dir(sp)?;
            tx.dir(dp)?;
            let Some((src, src_type)) = tx.entry(sp, sn)? else {
                return fail(NsError::NotFound);
            };
            let src_is_dir = tx.inode(src)?.is_dir();
            let dst = tx.entry(dp, dn)?;
            if let Some((d, _)) = dst {
                if d == src {
                    // Two names of one inode (or the same name): POSIX says do nothing.
                    return Ok(None);
                }
                if flags & RENAME_NOREPLACE != 0 {
                    return fail(NsError::Exists);
                }
            }
            if src_is_dir {
                tx.check_not_ancestor(src, dp)?;
            }
            let removed = match dst {
                None if flags & RENAME_EXCHANGE != 0 => return fail(NsError::NotFound),
                Some((d, d_type)) if flags & RENAME_EXCHANGE != 0 => {
                    let d_is_dir = tx.inode(d)?.is_dir();
                    if d_is_dir {
                        tx.check_not_ancestor(d, sp)?;
                    }
                    tx.replace_entry(sp, sn, d, d_type)?;
                    tx.replace_entry(dp, dn, src, src_type)?;
                    if src_is_dir {
                        move_dir(tx, src, sp, dp)?;
                    }
                    if d_is_dir {
                        move_dir(tx, d, dp, sp)?;
                    }
                    touch_ctime(tx, d)?;
                    None
                }
                Some((d, _)) => {
                    let victim = tx.inode(d)?;
                    match (src_is_dir, victim.is_dir()) {
                        (true, false) => return fail(NsError::NotDir),
                        (false, true) => return fail(NsError::IsDir),
                        (true, true) if victim.entries > 0 => return fail(NsError::NotEmpty),
                        _ => {}
                    }
                    tx.remove_entry(sp, sn)?;
                    tx.replace_entry(dp, dn, src, src_type)?;
                    let removed = if src_is_dir {
                        destroy_dir(tx, dp, d)?
                    } else {
                        drop_link(tx, d, self.pinned(d))?
                    };
                    if src_is_dir {
                        move_dir(tx, src, sp, dp)?;
                    }
                    Some(removed)
                }
                None => {
                    tx.remove_entry(sp, sn)?;
                    tx.add_entry(dp, dn, src, src_type)?;
                    if src_is_dir {
                        move_dir(tx, src, sp, dp)?;
                    }
                    None
                }
            };
            touch_ctime(tx, src)?;
            Ok(removed)
        })
    }

    /// Replaces a regular file's layout, bumping its layout generation, or sets (`None`:
    /// clears) a directory's default layout. Returns the new attributes and the old layout.
    pub fn set_layout(
        &self,
        fid: Fid,
        layout: Option<Layout>,
    ) -> Result<(Attr, Option<Layout>), NsError> {
        self.txn(|tx| {
            let inode = tx.inode(fid)?;
            let old = tx.layout(fid)?;
            let now = tx.now;
            let inode = match inode.file_type() {
                mode::S_IFREG => {
                    let gen = inode.attr.layout_gen.wrapping_add(1);
                    let new = layout.clone().map(|mut l| {
                        l.layout_gen = gen;
                        l
                    });
                    tx.put_layout(fid, new.as_ref())?;
                    if let Some(old) = &old {
                        tx.record_destroys(fid, old)?;
                    }
                    tx.modify(fid, |i| {
                        i.attr.layout_gen = gen;
                        i.attr.ctime = now;
                        Ok(())
                    })?
                }
                mode::S_IFDIR => {
                    tx.put_layout(fid, layout.as_ref())?;
                    touch_ctime(tx, fid)?
                }
                _ => return fail(NsError::Invalid("layout for a special file")),
            };
            Ok((inode.attr, old))
        })
    }

    /// Sets extended attribute `name`; [`XATTR_CREATE`] and [`XATTR_REPLACE`] as Linux.
    ///
    /// POSIX ACLs are checked (`Invalid` when malformed). An access ACL also sets the mode's
    /// permission bits (the group bits are its mask), and clears the set-group-ID bit with
    /// [`XATTR_ACL_KILL_SGID`]; one that says no more than the mode is not stored, as
    /// Linux does (`posix_acl_update_mode`).
    pub fn set_xattr(
        &self,
        fid: Fid,
        name: &[u8],
        value: &[u8],
        flags: u32,
    ) -> Result<(), NsError> {
        check_xattr_name(name)?;
        check_xattr_namespace(name)?;
        if flags & !(XATTR_CREATE | XATTR_REPLACE | XATTR_ACL_KILL_SGID) != 0 {
            return Err(NsError::Invalid("xattr flags"));
        }
        if value.len() > XATTR_VALUE_MAX_BYTES {
            return Err(NsError::TooBig);
        }
        let access = match name {
            acl::ACCESS => Some(Acl::parse(value)?),
            acl::DEFAULT => {
                Acl::parse(value)?;
                None
            }
            _ => None,
        };
        self.txn(|tx| {
            let inode = tx.inode(fid)?;
            let exists = tx.xattr(fid, name)?.is_some();
            if exists && flags & XATTR_CREATE != 0 {
                return fail(NsError::Exists);
            }
            if !exists && flags & XATTR_REPLACE != 0 {
                return fail(NsError::NoData);
            }
            let mut new_mode = None;
            let mut store = true;
            if let Some(a) = &access {
                let (mut m, extended) = a.equiv_mode(inode.attr.mode);
                if flags & XATTR_ACL_KILL_SGID != 0 {
                    m &= !mode::S_ISGID;
                }
                new_mode = Some(m);
                store = extended;
            }
            let count = match (exists, store) {
                (false, true) if inode.xattr_count >= XATTRS_PER_INODE_MAX => {
                    return fail(NsError::NoSpace)
                }
                (false, true) => {
                    tx.put_xattr(fid, name, value)?;
                    1
                }
                (true, true) => {
                    tx.put_xattr(fid, name, value)?;
                    0
                }
                (true, false) => {
                    tx.remove_xattr(fid, name)?;
                    -1
                }
                (false, false) => 0,
            };
            let now = tx.now;
            tx.modify(fid, |i| {
                i.xattr_count = i
                    .xattr_count
                    .checked_add_signed(count)
                    .ok_or_else(|| NsError::Corrupt(format!("xattr count of {}", i.attr.fid)))?;
                if let Some(m) = new_mode {
                    i.attr.mode = m;
                }
                i.attr.ctime = now;
                Ok(())
            })?;
            Ok(())
        })
    }

    /// Removes extended attribute `name`; `NoData` if there is none.
    pub fn remove_xattr(&self, fid: Fid, name: &[u8]) -> Result<(), NsError> {
        check_xattr_name(name)?;
        check_xattr_namespace(name)?;
        self.txn(|tx| {
            tx.inode(fid)?;
            if tx.remove_xattr(fid, name)?.is_none() {
                return fail(NsError::NoData);
            }
            let now = tx.now;
            tx.modify(fid, |i| {
                i.xattr_count = i
                    .xattr_count
                    .checked_sub(1)
                    .ok_or_else(|| NsError::Corrupt(format!("xattr count of {}", i.attr.fid)))?;
                i.attr.ctime = now;
                Ok(())
            })?;
            Ok(())
        })
    }
}
