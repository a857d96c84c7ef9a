//! The MDT's namespace store [mdd, osd-ldiskfs]: inodes, directory entries, layouts and
//! extended attributes in one sled database, with every change made in one transaction.
//!
//! An operation that changes several keys (a rename changes up to two entries and four
//! inodes) changes all of them or none: each modifying call runs as one sled transaction
//! over all trees, and also bumps the transaction number stored in the same transaction.
//! [`Namespace::flush`] makes everything committed so far durable. The key layout is
//! described in the `codec` module.
//!
//! Directory entries are ordered by a stable 63-bit hash of their name, and a readdir
//! cookie is the hash of the next entry, so a listing resumed from a cookie stays complete
//! and without duplicates while other entries come and go.
//! [`Namespace::readdir_plus`] pages the same way, each entry with its inode's attributes
//! (and a regular file's layout), names and inodes read as one state.
//!
//! Architecture invariant: no networking, no async. Calls are synchronous and take
//! `&self`; the MDS calls them from `spawn_blocking`.

pub mod acl;
mod codec;
mod error;
#[doc(hidden)]
pub mod fuzzing;
pub mod limits;
mod ops;
mod txn;

#[cfg(test)]
mod tests;

use std::cell::Cell;
use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::TryLockError;

use sheen_wire::{Attr, DirEntry, Fid, Layout, OstObject, Timespec};
use sled::transaction::TransactionError;
use sled::{IVec, Transactional};
use tracing::info;

use crate::codec::{mode, Inode};
use crate::limits::{READDIR_MAX_ENTRIES, XATTR_NAME_MAX_BYTES, XATTR_RESCAN_MAX};
use crate::txn::{Tx, TxAbort, TxResult, Views};

pub use crate::codec::COOKIE_EOF;
pub use crate::error::NsError;

/// `rename` flag: fail with `Exists` if the target exists (Linux RENAME_NOREPLACE).
pub const RENAME_NOREPLACE: u32 = 1;
/// `rename` flag: swap source and target, which must both exist (Linux RENAME_EXCHANGE).
pub const RENAME_EXCHANGE: u32 = 2;
/// `set_xattr` flag: fail with `Exists` if the attribute exists.
pub const XATTR_CREATE: u32 = sheen_wire::xattr_flags::CREATE;
/// `set_xattr` flag: fail with `NoData` if the attribute does not exist.
pub const XATTR_REPLACE: u32 = sheen_wire::xattr_flags::REPLACE;
/// `set_xattr` flag: setting an access ACL also clears the set-group-ID bit.
pub const XATTR_ACL_KILL_SGID: u32 = sheen_wire::xattr_flags::ACL_KILL_SGID;

/// What to create: a regular file, directory, symlink, FIFO, socket or device node,
/// chosen by the `S_IFMT` bits of `mode` (none means a regular file).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CreateArgs {
    pub parent: Fid,
    pub name: Vec<u8>,
    /// File type and permission bits.
    pub mode: u32,
    /// The device number of a character or block device; ignored for other types.
    pub rdev: u32,
    pub uid: u32,
    pub gid: u32,
    /// The creator's umask, applied to the permission bits unless `parent` has a default
    /// ACL (which then gives the new inode its ACLs and masks its mode instead).
    pub umask: u32,
    /// A symlink's target: required for symlinks, refused for anything else.
    pub symlink: Option<Vec<u8>>,
    /// A regular file's layout, or a directory's default layout. Refused for other types.
    pub layout: Option<Layout>,
}

/// The objects of a dropped layout still to destroy ([`Namespace::pending_destroys`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DestroyRecord {
    /// The file whose layout it was.
    pub fid: Fid,
    /// The layout's generation: with the fid, it names the record.
    pub layout_gen: u32,
    pub objects: Vec<OstObject>,
}

/// What an operation that drops a link left behind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Removed {
    /// The inode after the link drop (nlink 0 when destroyed).
    pub attr: Attr,
    /// The last link is gone and the inode was deleted.
    pub destroyed: bool,
    /// A destroyed regular file's layout, so that the MDS destroys its OST objects. Always
    /// `None` for directories (their default layout holds no objects).
    pub layout: Option<Layout>,
}

/// A directory entry with what a getattr of its inode returns ([`Namespace::readdir_plus`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EntryAttrs {
    pub entry: DirEntry,
    pub attr: Attr,
    /// A regular file's layout; `None` for anything else.
    pub layout: Option<Layout>,
}

/// One page of [`Namespace::readdir_plus`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlusPage {
    pub entries: Vec<EntryAttrs>,
    /// The listing reached the end of the directory.
    pub eof: bool,
    /// The last transaction the page reflects: a change committed after it has a higher
    /// number ([`Namespace::last_transno`]).
    pub transno: u64,
}

/// What [`Namespace::entry_attrs`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EntryAttrsNow {
    /// Per name asked: its inode's attributes and layout, or `None` if the name is gone or
    /// names another inode now.
    pub entries: Vec<Option<(Attr, Option<Layout>)>>,
    /// The last transaction these reflect.
    pub transno: u64,
}

/// The result of [`Namespace::flush`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Committed {
    /// Every transaction up to this number is on disk.
    pub transno: u64,
}

/// Space and inode usage of the namespace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NsStatfs {
    pub inodes_used: u64,
    pub inodes_max: u64,
    /// Bytes the database takes on disk.
    pub bytes_used: u64,
}

thread_local! {
    /// The transno the transactions of this thread take at least ([`Namespace::with_transno`]).
    static AT_LEAST_TRANSNO: Cell<u64> = const { Cell::new(0) };
    static LAST_OP_TRANSNO: Cell<u64> = const { Cell::new(0) };
    /// The directories the transactions of this thread changed since
    /// [`Namespace::clear_last_op_transno`] ([`Namespace::last_op_dirs`]).
    static LAST_OP_DIRS: std::cell::RefCell<Vec<DirChange>> =
        const { std::cell::RefCell::new(Vec::new()) };
    /// The client request the operations of this thread are executing for, if any
    /// ([`Namespace::with_client_record`]).
    static CLIENT_RECORD: std::cell::RefCell<Option<(Vec<u8>, u64)>> =
        const { std::cell::RefCell::new(None) };
}

/// Reply records kept per client: the newest by xid; older ones are dropped.
pub const CLIENT_RECORDS_KEPT: usize = 256;

/// One transaction's change of a directory's entries (or its creation): the directory's
/// version before it, if known, and after it (the transaction's transno).
///
/// A directory's version is the transno of the last transaction that added, removed or
/// replaced one of its entries, or created it. Versions live in memory only, for the
/// directories changed since the namespace was opened (a bounded number): an unknown one
/// is `None`, never a wrong number, and transnos never repeat, so two equal versions of
/// a directory mean that no entry of it changed in between.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DirChange {
    pub dir: Fid,
    pub before: Option<u64>,
    pub after: u64,
}

/// The namespace of one MDT.
pub struct Namespace {
    db: sled::Db,
    inodes: sled::Tree,
    dirents: sled::Tree,
    layouts: sled::Tree,
    xattrs: sled::Tree,
    meta: sled::Tree,
    /// The directory name hash; only tests replace it (to force collisions).
    hash: fn(&[u8]) -> u64,
    last_transno: AtomicU64,
    /// Serializes transactions. Every one writes the transno counter, so concurrent ones
    /// always conflict and sled would retry them in a loop (burning the CPU that the
    /// winner needs); taking turns costs no parallelism that could exist.
    writer: std::sync::Mutex<()>,
    /// Open counts of inodes that clients hold open ([`Namespace::pin`]). An unlink or a
    /// rename that drops the last link of a pinned inode keeps it as an orphan (nlink 0,
    /// no name) until the last unpin. Lock order: `writer`, then `pins`.
    pins: std::sync::Mutex<HashMap<Fid, u32>>,
    /// Calls of [`Namespace::with_client_record`], to prune the records now and then.
    record_calls: AtomicU64,
    /// The versions of the directories changed since the namespace was opened
    /// ([`DirChange`]), at most [`limits::DIR_VERSIONS_MAX`]: when full, all are forgotten.
    /// Written holding `writer`, after the transaction committed.
    dir_versions: std::sync::Mutex<HashMap<Fid, u64>>,
    /// The database directory.
    dir: std::path::PathBuf,
    /// Tests set this to make every transaction abort after it wrote everything.
    #[cfg(test)]
    inject_abort: std::sync::atomic::AtomicBool,
}

impl Namespace {
    /// Opens the namespace in `dir`, creating the database and the root directory on first
    /// open.
    pub fn open(dir: &Path) -> Result<Namespace, NsError> {
        Self::open_with_hash(dir, codec::name_hash)
    }

    /// Opens the namespace without sled's own periodic flush: only [`Namespace::flush`] makes
    /// changes durable (an MDS that commits on its own schedule, so that what it reports
    /// committed is what is on disk, and no more is flushed than it asked for).
    pub fn open_flushed_by_caller(dir: &Path) -> Result<Namespace, NsError> {
        Self::open_with(dir, codec::name_hash, None)
    }

    fn open_with_hash(dir: &Path, hash: fn(&[u8]) -> u64) -> Result<Namespace, NsError> {
        Self::open_with(dir, hash, Some(limits::SLED_FLUSH_EVERY_MS))
    }

    fn open_with(
        dir: &Path,
        hash: fn(&[u8]) -> u64,
        flush_every_ms: Option<u64>,
    ) -> Result<Namespace, NsError> {
        let db = sled::Config::new()
            .path(dir)
            .cache_capacity(limits::DB_CACHE_BYTES)
            .flush_every_ms(flush_every_ms)
            .open()?;
        let ns = Namespace {
            inodes: db.open_tree(codec::TREE_INODES)?,
            dirents: db.open_tree(codec::TREE_DIRENTS)?,
            layouts: db.open_tree(codec::TREE_LAYOUTS)?,
            xattrs: db.open_tree(codec::TREE_XATTRS)?,
            meta: db.open_tree(codec::TREE_META)?,
            db,
            hash,
            last_transno: AtomicU64::new(0),
            writer: std::sync::Mutex::new(()),
            pins: std::sync::Mutex::new(HashMap::new()),
            record_calls: AtomicU64::new(0),
            dir_versions: std::sync::Mutex::new(HashMap::new()),
            dir: dir.to_path_buf(),
            #[cfg(test)]
            inject_abort: std::sync::atomic::AtomicBool::new(false),
        };
        match ns.meta.get(codec::META_FORMAT)? {
            None => ns.format()?,
            Some(v) => {
                let format = codec::decode_u32("format", &v)?;
                if format != codec::FORMAT_VERSION {
                    return Err(NsError::Corrupt(format!(
                        "unsupported format version {format}"
                    )));
                }
            }
        }
        match ns.read_inode(Fid::ROOT) {
            Ok(root) if root.is_dir() => {}
            Ok(_) => return Err(NsError::Corrupt("root is not a directory".into())),
            Err(NsError::NotFound) => return Err(NsError::Corrupt("no root directory".into())),
            Err(e) => return Err(e),
        }
        let transno = match ns.meta.get(codec::META_TRANSNO)? {
            Some(v) => codec::decode_u64("transno", &v)?,
            None => return Err(NsError::Corrupt("no transno".into())),
        };
        ns.last_transno.store(transno, Ordering::SeqCst);
        info!(path = %dir.display(), transno, "opened namespace");
        Ok(ns)
    }

    /// Writes a new database: format version, counters and the root directory.
    fn format(&self) -> Result<(), NsError> {
        let now = Timespec::now();
        let root = Inode {
            attr: Attr {
                fid: Fid::ROOT,
                mode: mode::S_IFDIR | 0o755,
                nlink: 2,
                uid: 0,
                gid: 0,
                rdev: 0,
                size: ops::DIR_SIZE_BYTES,
                blocks: ops::DIR_SIZE_BYTES / 512,
                atime: now,
                mtime: now,
                ctime: now,
                btime: now,
                layout_gen: 0,
                hsm_state: 0,
                flags: 0,
            },
            parent: Fid::ROOT,
            entries: 0,
            xattr_count: 0,
            symlink: None,
        };
        let first = Fid {
            seq: Fid::FIRST_NORMAL_SEQ,
            oid: 1,
            ver: 0,
        };
        let trees = (&self.inodes, &self.meta);
        let res: Result<(), TransactionError<NsError>> = trees.transaction(|(inodes, meta)| {
            inodes.insert(&codec::fid_key(Fid::ROOT)[..], codec::encode_inode(&root))?;
            meta.insert(codec::META_NEXT_FID, &codec::encode_next_fid(first)[..])?;
            meta.insert(codec::META_TRANSNO, &0u64.to_le_bytes()[..])?;
            meta.insert(codec::META_INODES, &1u64.to_le_bytes()[..])?;
            meta.insert(codec::META_FORMAT, &codec::FORMAT_VERSION.to_le_bytes()[..])?;
            Ok(())
        });
        match res {
            Ok(()) => {}
            Err(TransactionError::Abort(e)) => return Err(e),
            Err(TransactionError::Storage(e)) => return Err(NsError::Db(e)),
        }
        self.db.flush()?;
        info!("formatted a new namespace");
        Ok(())
    }

    /// Whether a client holds `fid` open (see [`Namespace::pin`]).
    pub(crate) fn pinned(&self, fid: Fid) -> bool {
        let pins = self.pins.lock().unwrap_or_else(|p| p.into_inner());
        pins.get(&fid).is_some_and(|&n| n > 0)
    }

    /// Records that a client opened `fid`: while pinned, losing its last name makes it an
    /// orphan instead of destroying it. ENOENT if the inode does not exist (any more).
    pub fn pin(&self, fid: Fid) -> Result<Attr, NsError> {
        let _turn = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        self.pin_in_turn(fid)
    }

    /// [`Namespace::pin`] unless a change is being made now, which may take a while (its
    /// transaction can wait for sled's log): `None` then, for the caller to pin where it
    /// may wait. For a caller that must not block, such as an async runtime's worker.
    pub fn try_pin(&self, fid: Fid) -> Option<Result<Attr, NsError>> {
        let _turn = match self.writer.try_lock() {
            Ok(turn) => turn,
            Err(TryLockError::Poisoned(p)) => p.into_inner(),
            Err(TryLockError::WouldBlock) => return None,
        };
        Some(self.pin_in_turn(fid))
    }

    /// [`Namespace::pin`] with the writer's turn held: no change runs between the check
    /// that the inode exists and the pin.
    fn pin_in_turn(&self, fid: Fid) -> Result<Attr, NsError> {
        let attr = self.getattr(fid)?;
        let mut pins = self.pins.lock().unwrap_or_else(|p| p.into_inner());
        let n = pins.entry(fid).or_insert(0);
        *n = n.saturating_add(1);
        Ok(attr)
    }

    /// Records a close of `fid`. With the last close of an orphan the inode is destroyed,
    /// and the returned `Removed` carries its layout (for the OST objects).
    pub fn unpin(&self, fid: Fid) -> Result<Option<Removed>, NsError> {
        if self.unpin_leaves_orphan(fid)? {
            self.destroy_if_orphan(fid)
        } else {
            Ok(None)
        }
    }

    /// The first half of [`Namespace::unpin`], which changes nothing on disk (a caller may
    /// run it where it must not wait for a write): records the close, and says whether that
    /// was the last open of an inode with no name left, which
    /// [`Namespace::destroy_if_orphan`] then destroys.
    pub fn unpin_leaves_orphan(&self, fid: Fid) -> Result<bool, NsError> {
        {
            let mut pins = self.pins.lock().unwrap_or_else(|p| p.into_inner());
            match pins.get_mut(&fid) {
                Some(n) if *n > 1 => {
                    *n -= 1;
                    return Ok(false);
                }
                Some(_) => {
                    pins.remove(&fid);
                }
                None => return Ok(false),
            }
        }
        match self.getattr(fid) {
            Ok(a) => Ok(a.nlink == 0 && !a.is_dir()),
            Err(NsError::NotFound) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Destroys `fid` if it has no name left and nobody holds it open.
    pub fn destroy_if_orphan(&self, fid: Fid) -> Result<Option<Removed>, NsError> {
        match self.getattr(fid) {
            Ok(a) if a.nlink == 0 && !a.is_dir() => {}
            Ok(_) | Err(NsError::NotFound) => return Ok(None),
            Err(e) => return Err(e),
        }
        self.txn(|tx| {
            let inode = tx.inode(fid)?;
            if inode.attr.nlink > 0 || inode.is_dir() || self.pinned(fid) {
                return Ok(None);
            }
            let layout = tx.destroy(fid)?;
            Ok(Some(Removed {
                attr: inode.attr,
                destroyed: true,
                layout,
            }))
        })
    }

    /// The layouts of removed files (and replaced layouts) whose objects are not yet known
    /// destroyed, in fid order: what an MDS that stopped, or whose OSTs did not answer, left
    /// to destroy. Each is written with the change that dropped it.
    pub fn pending_destroys(&self) -> Result<Vec<DestroyRecord>, NsError> {
        let mut out = Vec::new();
        for kv in self.meta.scan_prefix(codec::META_DESTROY) {
            let (key, value) = kv?;
            out.push(codec::decode_destroy(&key, &value)?);
        }
        Ok(out)
    }

    /// Forgets the destroy record of `fid`'s layout generation `layout_gen`, whose objects
    /// the OSTs destroyed (or no longer have). Not committed by itself: a record that comes
    /// back after a crash only makes the next start destroy objects that are already gone.
    pub fn forget_destroy(&self, fid: Fid, layout_gen: u32) -> Result<(), NsError> {
        self.meta.remove(codec::destroy_key(fid, layout_gen))?;
        Ok(())
    }

    /// The highest object id any layout ever used, per OST index. Objects above it on that
    /// OST were precreated and never handed out (or handed out by a create that did not
    /// commit): the MDS destroys them at start.
    pub fn ost_watermarks(&self) -> Result<std::collections::BTreeMap<u32, u64>, NsError> {
        let mut out = std::collections::BTreeMap::new();
        for kv in self.meta.scan_prefix(codec::META_OST_LAST_OID) {
            let (k, v) = kv?;
            let idx = k
                .get(codec::META_OST_LAST_OID.len()..)
                .and_then(|b| <[u8; 4]>::try_from(b).ok())
                .map(u32::from_be_bytes)
                .ok_or_else(|| NsError::Corrupt(format!("OST watermark key {k:?}")))?;
            out.insert(idx, codec::decode_u64("OST watermark", &v)?);
        }
        Ok(out)
    }

    /// Destroys the orphans a previous run left (inodes whose last name went while they were
    /// open, when the server stopped before the last close). Call once at start, before
    /// serving; returns what was destroyed, for the OST objects.
    pub fn remove_orphans(&self) -> Result<Vec<Removed>, NsError> {
        let mut orphans = Vec::new();
        for kv in self.inodes.iter() {
            let (k, _) = kv?;
            let Some(fid) = Fid::from_be_bytes(&k) else {
                return Err(NsError::Corrupt(format!("inode key of {} bytes", k.len())));
            };
            let attr = self.getattr(fid)?;
            if attr.nlink == 0 && !attr.is_dir() {
                orphans.push(fid);
            }
        }
        let mut removed = Vec::new();
        for fid in orphans {
            if let Some(r) = self.destroy_if_orphan(fid)? {
                removed.push(r);
            }
        }
        Ok(removed)
    }

    /// Runs `op` as one transaction over all trees and commits it with the next
    /// transaction number. `op` may run several times (sled retries on conflicts, and an
    /// operation that destroys an inode with xattrs reruns after scanning their names).
    fn txn<T>(&self, op: impl Fn(&mut Tx<'_>) -> TxResult<T>) -> Result<T, NsError> {
        let mut xattr_keys: HashMap<Fid, Vec<IVec>> = HashMap::new();
        // A panic inside a transaction leaves sled consistent (it did not commit).
        let _turn = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        for _ in 0..XATTR_RESCAN_MAX {
            let now = Timespec::now();
            let trees = (
                &self.inodes,
                &self.dirents,
                &self.layouts,
                &self.xattrs,
                &self.meta,
            );
            let res = trees.transaction(|views: &Views| {
                let mut tx = Tx::new(views, self.hash, &xattr_keys, now);
                let out = op(&mut tx)?;
                let dirs = std::mem::take(&mut tx.dirs_changed);
                let transno = tx.finish(AT_LEAST_TRANSNO.with(Cell::get))?;
                let record = CLIENT_RECORD.with(|r| r.borrow().clone());
                if let Some((client, xid)) = record {
                    txn::record_client(&views.4, &client, xid, transno)?;
                }
                #[cfg(test)]
                if self.inject_abort.load(Ordering::SeqCst) {
                    return txn::fail(NsError::Invalid("injected fault"));
                }
                Ok((out, transno, dirs))
            });
            match res {
                Ok((out, transno, dirs)) => {
                    self.last_transno.fetch_max(transno, Ordering::SeqCst);
                    LAST_OP_TRANSNO.with(|t| t.set(transno));
                    self.note_dir_versions(&dirs, transno);
                    return Ok(out);
                }
                Err(TransactionError::Abort(TxAbort::Ns(e))) => return Err(e),
                Err(TransactionError::Abort(TxAbort::Rescan(fid))) => {
                    xattr_keys.insert(fid, self.xattr_keys(fid)?);
                }
                Err(TransactionError::Storage(e)) => return Err(NsError::Db(e)),
            }
        }
        Err(NsError::Corrupt(
            "xattr count does not match the stored xattrs".into(),
        ))
    }

    fn xattr_keys(&self, fid: Fid) -> Result<Vec<IVec>, NsError> {
        let mut keys = Vec::new();
        for k in self.xattrs.scan_prefix(codec::fid_key(fid)).keys() {
            keys.push(k?);
        }
        Ok(keys)
    }

    fn read_inode(&self, fid: Fid) -> Result<Inode, NsError> {
        match self.inodes.get(codec::fid_key(fid))? {
            Some(v) => codec::decode_inode(fid, &v),
            None => Err(NsError::NotFound),
        }
    }

    fn read_dir(&self, fid: Fid) -> Result<Inode, NsError> {
        let i = self.read_inode(fid)?;
        if !i.is_dir() {
            return Err(NsError::NotDir);
        }
        Ok(i)
    }

    fn read_layout(&self, fid: Fid) -> Result<Option<Layout>, NsError> {
        match self.layouts.get(codec::fid_key(fid))? {
            Some(v) => codec::decode_layout(fid, &v).map(Some),
            None => Ok(None),
        }
    }

    pub fn getattr(&self, fid: Fid) -> Result<Attr, NsError> {
        Ok(self.read_inode(fid)?.attr)
    }

    /// Looks `name` up in directory `parent`; `.` is the directory itself and `..` its
    /// parent (the root's parent is the root).
    pub fn lookup(&self, parent: Fid, name: &[u8]) -> Result<Attr, NsError> {
        let dir = self.read_dir(parent)?;
        match name {
            b"." => return Ok(dir.attr),
            b".." => return self.read_inode(dir.parent).map(|i| i.attr),
            _ => check_name(name)?,
        }
        let key = codec::dirent_key(parent, (self.hash)(name), name);
        let Some(v) = self.dirents.get(key)? else {
            return Err(NsError::NotFound);
        };
        let (child, _) = codec::decode_dirent(&v)?;
        // An unlink may remove the inode between the two reads; that is a miss too.
        Ok(self.read_inode(child)?.attr)
    }

    /// A regular file's layout, or a directory's own default layout.
    pub fn layout(&self, fid: Fid) -> Result<Option<Layout>, NsError> {
        self.read_inode(fid)?;
        self.read_layout(fid)
    }

    /// The layout template a new file in `dir` inherits: the directory's default layout,
    /// else the filesystem default (the root's default); `None` if neither is set.
    pub fn inherited_layout(&self, dir: Fid) -> Result<Option<Layout>, NsError> {
        self.read_dir(dir)?;
        if let Some(l) = self.read_layout(dir)? {
            return Ok(Some(l));
        }
        if dir == Fid::ROOT {
            return Ok(None);
        }
        self.read_layout(Fid::ROOT)
    }

    /// A symlink's target; `Invalid` for anything else.
    pub fn readlink(&self, fid: Fid) -> Result<Vec<u8>, NsError> {
        self.read_inode(fid)?
            .symlink
            .ok_or(NsError::Invalid("not a symlink"))
    }

    /// Lists directory `dir` from `cookie` (0 = the start), at most `max` entries (capped at
    /// [`READDIR_MAX_ENTRIES`]), without `.` and `..`. Returns the entries and whether the
    /// listing reached the end; each entry's `next_cookie` resumes after it, and the last
    /// entry of the directory has [`COOKIE_EOF`].
    ///
    /// Entries whose names hash alike share a cookie, so a page never ends inside such a
    /// group: it ends before the group, or, if the group fills the whole page, after it.
    /// Only then (a 63-bit hash collision, and `max` smaller than the group) does a page
    /// hold more than `max` entries.
    pub fn readdir(
        &self,
        dir: Fid,
        cookie: u64,
        max: u32,
    ) -> Result<(Vec<DirEntry>, bool), NsError> {
        let (entries, eof) = self.page(dir, cookie, max, usize::MAX, |_| Ok(((), 0)))?;
        Ok((entries.into_iter().map(|(e, ())| e).collect(), eof))
    }

    /// [`Namespace::readdir`] with, for every entry, what [`Namespace::getattr`] and
    /// [`Namespace::layout`] (regular files only) return, all read while no namespace change
    /// commits (the names and attributes of a page are one consistent state). The page also
    /// ends before the entry that would take its size past `max_bytes` (sizes as
    /// [`sheen_wire::DirEntryPlus::wire_bytes_bound`] counts them); the same rule keeps
    /// groups of entries that share a cookie together, and a page holds at least one entry
    /// (or group) whatever its size.
    pub fn readdir_plus(
        &self,
        dir: Fid,
        cookie: u64,
        max: u32,
        max_bytes: usize,
    ) -> Result<PlusPage, NsError> {
        // Every change commits holding `writer`: holding it gives a consistent view at the
        // price of delaying changes by one page's reads (sled 0.34 has no read snapshots).
        let _turn = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let transno = self.last_transno();
        let (entries, eof) = self.page(dir, cookie, max, max_bytes, |e| {
            let (attr, layout) = self.attrs_of_entry(&e.name, e.fid)?;
            let size = sheen_wire::DirEntryPlus::wire_bytes_bound(e.name.len(), layout.as_ref());
            Ok(((attr, layout), size))
        })?;
        let entries = entries
            .into_iter()
            .map(|(entry, (attr, layout))| EntryAttrs {
                entry,
                attr,
                layout,
            })
            .collect();
        Ok(PlusPage {
            entries,
            eof,
            transno,
        })
    }

    /// For each `(name, fid)`: the attributes (and regular file's layout) of `fid` if `name`
    /// in `dir` still names it, else `None`; all read while no namespace change commits.
    /// Used to read entries of a [`Namespace::readdir_plus`] page again once locks are held.
    pub fn entry_attrs(
        &self,
        dir: Fid,
        names: &[(Vec<u8>, Fid)],
    ) -> Result<EntryAttrsNow, NsError> {
        let _turn = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let transno = self.last_transno();
        let mut out = Vec::with_capacity(names.len());
        for (name, fid) in names {
            let key = codec::dirent_key(dir, (self.hash)(name), name);
            let now = match self.dirents.get(key)? {
                Some(v) => codec::decode_dirent(&v)?.0,
                None => {
                    out.push(None);
                    continue;
                }
            };
            if now == *fid {
                out.push(Some(self.attrs_of_entry(name, now)?));
            } else {
                out.push(None);
            }
        }
        Ok(EntryAttrsNow {
            entries: out,
            transno,
        })
    }

    /// The attributes and (regular files) layout of the inode a directory entry names.
    fn attrs_of_entry(&self, name: &[u8], fid: Fid) -> Result<(Attr, Option<Layout>), NsError> {
        let attr = match self.read_inode(fid) {
            Ok(i) => i.attr,
            Err(NsError::NotFound) => {
                return Err(NsError::Corrupt(format!(
                    "entry {:?} names inode {fid}, which does not exist",
                    String::from_utf8_lossy(name)
                )))
            }
            Err(e) => return Err(e),
        };
        let layout = if attr.is_reg() {
            self.read_layout(fid)?
        } else {
            None
        };
        Ok((attr, layout))
    }

    /// One page of `dir` from `cookie` on, each entry with what `extra` returns for it and
    /// that counts `size` bytes against `max_bytes` (see [`Namespace::readdir`] and
    /// [`Namespace::readdir_plus`] for the rules).
    fn page<X>(
        &self,
        dir: Fid,
        cookie: u64,
        max: u32,
        max_bytes: usize,
        mut extra: impl FnMut(&DirEntry) -> Result<(X, usize), NsError>,
    ) -> Result<(Vec<(DirEntry, X)>, bool), NsError> {
        self.read_dir(dir)?;
        if max == 0 {
            return Err(NsError::Invalid("readdir of zero entries"));
        }
        let max = usize::try_from(max.min(READDIR_MAX_ENTRIES)).unwrap_or(usize::MAX);
        let prefix = codec::dirent_prefix(dir);
        let mut out: Vec<(DirEntry, X)> = Vec::new();
        let mut hashes: Vec<u64> = Vec::new();
        let mut bytes = 0usize;
        let mut eof = true;
        for item in self.dirents.range(codec::dirent_start(dir, cookie)..) {
            let (k, v) = item?;
            if !k.starts_with(&prefix) {
                break;
            }
            let (hash, name) = codec::decode_dirent_key(&k)?;
            let mut full = out.len() >= max;
            let mut read = None;
            if !full {
                let e = entry_of(name, &v)?;
                let (x, size) = extra(&e)?;
                full = !out.is_empty() && bytes.saturating_add(size) > max_bytes;
                read = Some((e, x, size));
            }
            if full {
                let group_start = if hashes.last() == Some(&hash) {
                    hashes.iter().position(|&h| h == hash).unwrap_or(0)
                } else {
                    out.len()
                };
                if group_start > 0 {
                    out.truncate(group_start);
                    hashes.truncate(group_start);
                    if let Some((last, _)) = out.last_mut() {
                        last.next_cookie = hash;
                    }
                    eof = false;
                    break;
                }
                // The whole page shares one hash: finish the group.
            }
            let (e, x, size) = match read {
                Some(r) => r,
                None => {
                    let e = entry_of(name, &v)?;
                    let (x, size) = extra(&e)?;
                    (e, x, size)
                }
            };
            if let Some((last, _)) = out.last_mut() {
                last.next_cookie = hash;
            }
            out.push((e, x));
            bytes = bytes.saturating_add(size);
            hashes.push(hash);
        }
        Ok((out, eof))
    }

    /// The value of extended attribute `name`; `NoData` if there is none.
    pub fn get_xattr(&self, fid: Fid, name: &[u8]) -> Result<Vec<u8>, NsError> {
        check_xattr_name(name)?;
        ops::check_xattr_namespace(name)?;
        match self.xattrs.get(codec::xattr_key(fid, name))? {
            Some(v) => Ok(v.to_vec()),
            None => {
                self.read_inode(fid)?;
                Err(NsError::NoData)
            }
        }
    }

    /// The names of the extended attributes of `fid`, sorted.
    pub fn list_xattr(&self, fid: Fid) -> Result<Vec<Vec<u8>>, NsError> {
        self.read_inode(fid)?;
        let keys = self.xattr_keys(fid)?;
        let mut names = Vec::with_capacity(keys.len());
        for k in keys {
            match k.get(16..) {
                Some(name) if !name.is_empty() => names.push(name.to_vec()),
                _ => return Err(NsError::Corrupt(format!("xattr key of {fid}"))),
            }
        }
        Ok(names)
    }

    pub fn statfs(&self) -> Result<NsStatfs, NsError> {
        let inodes_used = match self.meta.get(codec::META_INODES)? {
            Some(v) => codec::decode_u64("inode count", &v)?,
            None => return Err(NsError::Corrupt("no inode count".into())),
        };
        Ok(NsStatfs {
            inodes_used,
            inodes_max: limits::INODES_MAX,
            bytes_used: self.db.size_on_disk()?,
        })
    }

    /// The number of the last committed transaction.
    pub fn last_transno(&self) -> u64 {
        self.last_transno.load(Ordering::SeqCst)
    }

    /// The transaction number of the last modifying call this thread made (on any
    /// namespace), 0 if none: what the MDS puts in its reply.
    pub fn last_op_transno(&self) -> u64 {
        LAST_OP_TRANSNO.with(Cell::get)
    }

    /// Forgets the transaction number [`Namespace::last_op_transno`] reports for this thread,
    /// so that a call making no transaction is seen as such, and the directory changes
    /// [`Namespace::last_op_dirs`] reports.
    pub fn clear_last_op_transno(&self) {
        LAST_OP_TRANSNO.with(|t| t.set(0));
        LAST_OP_DIRS.with(|d| d.borrow_mut().clear());
    }

    /// The changes of directory entries that the transactions of this thread made since
    /// [`Namespace::clear_last_op_transno`], in order.
    pub fn last_op_dirs(&self) -> Vec<DirChange> {
        LAST_OP_DIRS.with(|d| d.borrow().clone())
    }

    /// The version of directory `dir` ([`DirChange`]), if known.
    pub fn dir_version(&self, dir: Fid) -> Option<u64> {
        let versions = self.dir_versions.lock().unwrap_or_else(|p| p.into_inner());
        versions.get(&dir).copied()
    }

    /// Records that the transaction numbered `transno`, committed holding `writer`, changed
    /// the entries of `dirs` (or created them).
    fn note_dir_versions(&self, dirs: &[Fid], transno: u64) {
        if dirs.is_empty() {
            return;
        }
        let mut versions = self.dir_versions.lock().unwrap_or_else(|p| p.into_inner());
        if versions.len() + dirs.len() > limits::DIR_VERSIONS_MAX {
            versions.clear();
        }
        LAST_OP_DIRS.with(|d| {
            let mut d = d.borrow_mut();
            for &dir in dirs {
                let before = versions.insert(dir, transno);
                d.push(DirChange {
                    dir,
                    before,
                    after: transno,
                });
            }
        });
    }

    /// Runs `f` (the namespace change a client's request asks for) so that every transaction
    /// it makes also records, atomically with the change, that request `xid` of `client`
    /// was executed (Lustre's last_rcvd): after a restart, a resend of the request is
    /// recognised ([`Namespace::client_record`]) instead of being executed twice. Keeps the
    /// newest [`CLIENT_RECORDS_KEPT`] records of each client.
    pub fn with_client_record<T>(
        &self,
        client: &[u8],
        xid: u64,
        f: impl FnOnce(&Namespace) -> Result<T, NsError>,
    ) -> Result<T, NsError> {
        CLIENT_RECORD.with(|r| *r.borrow_mut() = Some((client.to_vec(), xid)));
        let out = f(self);
        CLIENT_RECORD.with(|r| *r.borrow_mut() = None);
        // Pruning scans the client's records: every 64th call is enough to bound them.
        let calls = self.record_calls.fetch_add(1, Ordering::Relaxed);
        if out.is_ok() && calls.is_multiple_of(64) {
            self.prune_client_records(client)?;
        }
        out
    }

    /// Runs `f` so that its transactions take transno `transno` (if it is above the last
    /// one): a replayed change keeps the number its first execution got.
    pub fn with_transno<T>(
        &self,
        transno: u64,
        f: impl FnOnce(&Namespace) -> Result<T, NsError>,
    ) -> Result<T, NsError> {
        AT_LEAST_TRANSNO.with(|t| t.set(transno));
        let out = f(self);
        AT_LEAST_TRANSNO.with(|t| t.set(0));
        out
    }

    /// Flushes everything and records that nothing is uncommitted: the next start needs no
    /// recovery ([`Namespace::take_clean_shutdown`]). Call last, at a clean shutdown.
    pub fn flush_clean_shutdown(&self) -> Result<Committed, NsError> {
        let _turn = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let transno = self.last_transno();
        self.meta
            .insert(codec::META_CLEAN_SHUTDOWN, &transno.to_le_bytes()[..])?;
        self.flush()
    }

    /// Whether the last run ended with [`Namespace::flush_clean_shutdown`] and nothing
    /// changed after it; removes the record (durably), so that a crash of this run is not
    /// taken for a clean shutdown.
    pub fn take_clean_shutdown(&self) -> Result<bool, NsError> {
        let Some(v) = self.meta.remove(codec::META_CLEAN_SHUTDOWN)? else {
            return Ok(false);
        };
        self.db.flush()?;
        Ok(codec::decode_u64("clean shutdown", &v)? == self.last_transno())
    }

    /// Records that `client` makes changes (it is waited for in recovery); durable with the
    /// next flush.
    pub fn register_client(&self, client: &[u8]) -> Result<(), NsError> {
        self.meta.insert(codec::client_key(client), &[][..])?;
        Ok(())
    }

    /// Forgets `client`: its registration and its reply records (it said goodbye or was
    /// evicted, and will not replay or resend).
    pub fn forget_client(&self, client: &[u8]) -> Result<(), NsError> {
        self.meta.remove(codec::client_key(client))?;
        let keys: Vec<IVec> = self
            .meta
            .scan_prefix(codec::rcvd_prefix(client))
            .keys()
            .collect::<Result<_, _>>()?;
        for k in keys {
            self.meta.remove(k)?;
        }
        Ok(())
    }

    /// The clients registered ([`Namespace::register_client`]) or with reply records.
    pub fn known_clients(&self) -> Result<Vec<Vec<u8>>, NsError> {
        let mut out = std::collections::BTreeSet::new();
        for k in self.meta.scan_prefix(codec::META_CLIENT).keys() {
            let k = k?;
            if let Some(uuid) = k.get(codec::META_CLIENT.len()..) {
                out.insert(uuid.to_vec());
            }
        }
        for k in self.meta.scan_prefix(codec::META_RCVD).keys() {
            let k = k?;
            if let Some(uuid) = codec::rcvd_client(&k) {
                out.insert(uuid.to_vec());
            }
        }
        Ok(out.into_iter().collect())
    }

    /// The transno of the change request `xid` of `client` made, if it was executed (and
    /// its record is still kept).
    pub fn client_record(&self, client: &[u8], xid: u64) -> Result<Option<u64>, NsError> {
        match self.meta.get(codec::rcvd_key(client, xid))? {
            Some(v) => Ok(Some(codec::decode_u64("client record", &v)?)),
            None => Ok(None),
        }
    }

    fn prune_client_records(&self, client: &[u8]) -> Result<(), NsError> {
        let prefix = codec::rcvd_prefix(client);
        // Cheap check first: most calls find fewer than the bound.
        let n = self
            .meta
            .scan_prefix(&prefix)
            .keys()
            .take(CLIENT_RECORDS_KEPT + 1)
            .count();
        if n <= CLIENT_RECORDS_KEPT {
            return Ok(());
        }
        let keys: Vec<IVec> = self
            .meta
            .scan_prefix(&prefix)
            .keys()
            .collect::<Result<_, _>>()?;
        // Keys sort by xid (big endian): the oldest first.
        for k in &keys[..keys.len().saturating_sub(CLIENT_RECORDS_KEPT)] {
            self.meta.remove(k)?;
        }
        Ok(())
    }

    /// Fault injection for tests: [`Namespace::flush`], then, with no transaction running,
    /// copies the database files as they are on disk to `to` (replacing it). Opening the
    /// copy gives what a power loss right after this flush would leave: everything up to the
    /// returned transno, nothing after it.
    pub fn flush_and_copy(&self, to: &Path) -> Result<Committed, NsError> {
        let _turn = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let committed = self.flush()?;
        let tmp = to.with_extension("tmp");
        let io = |e: std::io::Error| NsError::Db(sled::Error::Io(e));
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp).map_err(io)?;
        }
        copy_dir(&self.dir, &tmp).map_err(io)?;
        if to.exists() {
            std::fs::remove_dir_all(to).map_err(io)?;
        }
        std::fs::rename(&tmp, to).map_err(io)?;
        Ok(committed)
    }

    /// Makes everything committed so far durable and returns the last transaction number
    /// that is now on disk.
    pub fn flush(&self) -> Result<Committed, NsError> {
        let transno = self.last_transno();
        self.db.flush()?;
        Ok(Committed { transno })
    }
}

/// The entry a directory entry key's `name` and value describe (the cookie is set later).
fn entry_of(name: &[u8], value: &[u8]) -> Result<DirEntry, NsError> {
    let (fid, file_type) = codec::decode_dirent(value)?;
    Ok(DirEntry {
        name: name.to_vec(),
        fid,
        file_type,
        next_cookie: COOKIE_EOF,
    })
}

/// Copies the files under `from` to `to` (created), recursively.
fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

/// Checks a name a new entry would get: 1 to NAME_MAX bytes, not `.` or `..`, no `/` or
/// NUL.
fn check_name(name: &[u8]) -> Result<(), NsError> {
    if name.is_empty() {
        return Err(NsError::Invalid("empty name"));
    }
    if name.len() > sheen_wire::limits::NAME_MAX_BYTES {
        return Err(NsError::NameTooLong);
    }
    if name == b"." || name == b".." {
        return Err(NsError::Invalid("'.' or '..' as a name"));
    }
    if name.iter().any(|&b| b == b'/' || b == 0) {
        return Err(NsError::Invalid("'/' or NUL in a name"));
    }
    Ok(())
}

/// Checks an xattr name: 1 to XATTR_NAME_MAX bytes (else `Range`, as Linux), no NUL (the
/// list is NUL-separated on the wire).
fn check_xattr_name(name: &[u8]) -> Result<(), NsError> {
    if name.is_empty() || name.len() > XATTR_NAME_MAX_BYTES {
        return Err(NsError::Range);
    }
    if name.contains(&0) {
        return Err(NsError::Invalid("NUL in an xattr name"));
    }
    Ok(())
}
