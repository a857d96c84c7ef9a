//! One namespace transaction: a view over the five trees inside a sled transaction, with
//! an inode cache so that an operation touching the same inode twice (rename within one
//! directory) sees its own changes and writes the inode once.
//!
//! sled 0.34 runs transactions one at a time under a process-wide lock, so every read here
//! sees the state the commit applies to. It cannot scan inside a transaction (a scan takes
//! the same lock and would deadlock), which is why directories count their entries and
//! inodes their xattrs: destroying an inode removes xattr keys scanned beforehand and checks
//! them against the count, asking the caller to rescan ([`TxAbort::Rescan`]) on a mismatch.

use std::collections::{BTreeMap, HashMap};

use sheen_wire::{Fid, Layout, OstObject, Timespec};
use sled::transaction::{ConflictableTransactionError, TransactionalTree};
use sled::IVec;

use crate::codec::{self, Inode};
use crate::NsError;

/// Why a transaction closure gave up.
#[derive(Debug)]
pub(crate) enum TxAbort {
    /// The operation failed; nothing it wrote is kept.
    Ns(NsError),
    /// The xattr names scanned for this inode before the transaction are stale.
    Rescan(Fid),
}

impl From<NsError> for TxAbort {
    fn from(e: NsError) -> Self {
        TxAbort::Ns(e)
    }
}

pub(crate) type TxResult<T> = Result<T, ConflictableTransactionError<TxAbort>>;

/// Aborts the transaction with `e`.
pub(crate) fn fail<T>(e: impl Into<TxAbort>) -> TxResult<T> {
    Err(ConflictableTransactionError::Abort(e.into()))
}

/// Lifts a plain result into a transaction result.
pub(crate) fn lift<T>(r: Result<T, NsError>) -> TxResult<T> {
    r.map_err(|e| ConflictableTransactionError::Abort(TxAbort::Ns(e)))
}

/// The views sled hands a transaction closure, in the order the trees are listed.
pub(crate) type Views = (
    TransactionalTree,
    TransactionalTree,
    TransactionalTree,
    TransactionalTree,
    TransactionalTree,
);

enum Slot {
    Clean(Inode),
    Dirty(Inode),
    Deleted,
}

pub(crate) struct Tx<'a> {
    inodes: &'a TransactionalTree,
    dirents: &'a TransactionalTree,
    layouts: &'a TransactionalTree,
    xattrs: &'a TransactionalTree,
    meta: &'a TransactionalTree,
    hash: fn(&[u8]) -> u64,
    /// The xattr keys of inodes this operation may destroy, scanned before it started.
    xattr_keys: &'a HashMap<Fid, Vec<IVec>>,
    cache: BTreeMap<Fid, Slot>,
    inode_delta: i64,
    /// The directories whose entries this operation changed, and those it created.
    pub dirs_changed: Vec<Fid>,
    /// The time every change of this operation is stamped with.
    pub now: Timespec,
}

impl<'a> Tx<'a> {
    pub fn new(
        views: &'a Views,
        hash: fn(&[u8]) -> u64,
        xattr_keys: &'a HashMap<Fid, Vec<IVec>>,
        now: Timespec,
    ) -> Self {
        let (inodes, dirents, layouts, xattrs, meta) = views;
        Tx {
            inodes,
            dirents,
            layouts,
            xattrs,
            meta,
            hash,
            xattr_keys,
            cache: BTreeMap::new(),
            inode_delta: 0,
            dirs_changed: Vec::new(),
            now,
        }
    }

    /// The inode `fid`, or `None` if there is none.
    pub fn inode_opt(&mut self, fid: Fid) -> TxResult<Option<Inode>> {
        match self.cache.get(&fid) {
            Some(Slot::Clean(i) | Slot::Dirty(i)) => return Ok(Some(i.clone())),
            Some(Slot::Deleted) => return Ok(None),
            None => {}
        }
        let Some(v) = self.inodes.get(codec::fid_key(fid))? else {
            return Ok(None);
        };
        let inode = lift(codec::decode_inode(fid, &v))?;
        self.cache.insert(fid, Slot::Clean(inode.clone()));
        Ok(Some(inode))
    }

    /// The inode `fid`; `NotFound` if there is none.
    pub fn inode(&mut self, fid: Fid) -> TxResult<Inode> {
        match self.inode_opt(fid)? {
            Some(i) => Ok(i),
            None => fail(NsError::NotFound),
        }
    }

    /// The directory `fid`; `NotFound` or `NotDir`.
    pub fn dir(&mut self, fid: Fid) -> TxResult<Inode> {
        let i = self.inode(fid)?;
        if !i.is_dir() {
            return fail(NsError::NotDir);
        }
        Ok(i)
    }

    /// Changes inode `fid` with `f` (which may refuse) and returns the new inode.
    pub fn modify(
        &mut self,
        fid: Fid,
        f: impl FnOnce(&mut Inode) -> Result<(), NsError>,
    ) -> TxResult<Inode> {
        let mut inode = self.inode(fid)?;
        lift(f(&mut inode))?;
        self.cache.insert(fid, Slot::Dirty(inode.clone()));
        Ok(inode)
    }

    /// Adds a new inode.
    pub fn create_inode(&mut self, inode: Inode) {
        self.inode_delta += 1;
        if inode.attr.is_dir() {
            self.note_dir(inode.attr.fid);
        }
        self.cache.insert(inode.attr.fid, Slot::Dirty(inode));
    }

    /// Deletes inode `fid` with its layout and xattrs; returns its layout.
    pub fn destroy(&mut self, fid: Fid) -> TxResult<Option<Layout>> {
        let inode = self.inode(fid)?;
        if inode.xattr_count > 0 {
            let Some(keys) = self.xattr_keys.get(&fid) else {
                return fail(TxAbort::Rescan(fid));
            };
            if keys.len() != usize::try_from(inode.xattr_count).unwrap_or(usize::MAX) {
                return fail(TxAbort::Rescan(fid));
            }
            // Every scanned key still exists and there are as many as the count says, so
            // these are exactly the inode's xattrs.
            for k in keys {
                if self.xattrs.remove(k.clone())?.is_none() {
                    return fail(TxAbort::Rescan(fid));
                }
            }
        }
        let layout = self.layout(fid)?;
        if let Some(l) = &layout {
            self.record_destroys(fid, l)?;
        }
        self.layouts.remove(&codec::fid_key(fid)[..])?;
        self.inode_delta -= 1;
        self.cache.insert(fid, Slot::Deleted);
        Ok(layout)
    }

    /// Takes `fid` for a new inode (a replayed create keeps the FID it first got): EEXIST if
    /// an inode has it; the allocator moves past it.
    pub fn take_fid(&mut self, fid: Fid) -> TxResult<Fid> {
        if self.inode_opt(fid)?.is_some() {
            return fail(NsError::Exists);
        }
        let Some(v) = self.meta.get(codec::META_NEXT_FID)? else {
            return fail(NsError::Corrupt("no fid counter".into()));
        };
        let next = lift(codec::decode_next_fid(&v))?;
        if (fid.seq, fid.oid) >= (next.seq, next.oid) {
            let Some(after) = fid_after(Fid { ver: 0, ..fid }) else {
                return fail(NsError::NoSpace);
            };
            self.meta
                .insert(codec::META_NEXT_FID, &codec::encode_next_fid(after)[..])?;
        }
        Ok(fid)
    }

    /// Allocates the next FID: oids count up from 1 within a sequence, then the next
    /// sequence starts.
    pub fn alloc_fid(&mut self) -> TxResult<Fid> {
        let Some(v) = self.meta.get(codec::META_NEXT_FID)? else {
            return fail(NsError::Corrupt("no fid counter".into()));
        };
        let fid = lift(codec::decode_next_fid(&v))?;
        let Some(next) = fid_after(fid) else {
            return fail(NsError::NoSpace);
        };
        self.meta
            .insert(codec::META_NEXT_FID, &codec::encode_next_fid(next)[..])?;
        Ok(fid)
    }

    /// The entry `name` of `parent`: (child fid, file type).
    pub fn entry(&self, parent: Fid, name: &[u8]) -> TxResult<Option<(Fid, u32)>> {
        let key = codec::dirent_key(parent, (self.hash)(name), name);
        match self.dirents.get(key)? {
            Some(v) => lift(codec::decode_dirent(&v)).map(Some),
            None => Ok(None),
        }
    }

    fn note_dir(&mut self, dir: Fid) {
        if !self.dirs_changed.contains(&dir) {
            self.dirs_changed.push(dir);
        }
    }

    fn touch_dir(&mut self, parent: Fid, delta: i64) -> TxResult<()> {
        self.note_dir(parent);
        let now = self.now;
        self.modify(parent, |p| {
            p.entries = p
                .entries
                .checked_add_signed(delta)
                .ok_or_else(|| NsError::Corrupt(format!("entry count of {}", p.attr.fid)))?;
            p.attr.mtime = now;
            p.attr.ctime = now;
            Ok(())
        })?;
        Ok(())
    }

    /// Adds entry `name` to `parent` (which must not have it), updating the parent's entry
    /// count and times.
    pub fn add_entry(
        &mut self,
        parent: Fid,
        name: &[u8],
        fid: Fid,
        file_type: u32,
    ) -> TxResult<()> {
        let key = codec::dirent_key(parent, (self.hash)(name), name);
        self.dirents
            .insert(key, &codec::encode_dirent(fid, file_type)[..])?;
        self.touch_dir(parent, 1)
    }

    /// Points the existing entry `name` of `parent` at another inode.
    pub fn replace_entry(
        &mut self,
        parent: Fid,
        name: &[u8],
        fid: Fid,
        file_type: u32,
    ) -> TxResult<()> {
        let key = codec::dirent_key(parent, (self.hash)(name), name);
        self.dirents
            .insert(key, &codec::encode_dirent(fid, file_type)[..])?;
        self.touch_dir(parent, 0)
    }

    /// Removes entry `name` of `parent`.
    pub fn remove_entry(&mut self, parent: Fid, name: &[u8]) -> TxResult<()> {
        let key = codec::dirent_key(parent, (self.hash)(name), name);
        if self.dirents.remove(key)?.is_none() {
            return fail(NsError::NotFound);
        }
        self.touch_dir(parent, -1)
    }

    pub fn layout(&self, fid: Fid) -> TxResult<Option<Layout>> {
        match self.layouts.get(codec::fid_key(fid))? {
            Some(v) => lift(codec::decode_layout(fid, &v)).map(Some),
            None => Ok(None),
        }
    }

    pub fn put_layout(&self, fid: Fid, layout: Option<&Layout>) -> TxResult<()> {
        let key = &codec::fid_key(fid)[..];
        match layout {
            Some(l) => {
                self.layouts.insert(key, codec::encode_layout(l))?;
                self.raise_ost_watermarks(l)?;
            }
            None => {
                self.layouts.remove(key)?;
            }
        };
        Ok(())
    }

    /// Records that the objects of `fid`'s `layout`, which this operation drops, are to be
    /// destroyed (one `destroy/` key in `meta`): written with the change, so that no object
    /// of a removed file outlives an MDS stop or an OST that did not answer.
    pub fn record_destroys(&self, fid: Fid, layout: &Layout) -> TxResult<()> {
        let objects: Vec<OstObject> = layout
            .components
            .iter()
            .flat_map(|c| c.stripe.objects.iter().cloned())
            .collect();
        if !objects.is_empty() {
            self.meta.insert(
                codec::destroy_key(fid, layout.layout_gen),
                codec::encode_destroy(&objects),
            )?;
        }
        Ok(())
    }

    /// Keeps, per OST, the highest object id a layout ever used (in the same transaction as
    /// the layout), so that objects above it are known to be unused.
    fn raise_ost_watermarks(&self, layout: &Layout) -> TxResult<()> {
        for obj in layout.components.iter().flat_map(|c| &c.stripe.objects) {
            let key = codec::ost_last_oid_key(obj.ost_idx);
            let last = match self.meta.get(&key)? {
                Some(v) => lift(codec::decode_u64("OST watermark", &v))?,
                None => 0,
            };
            if obj.oid > last {
                self.meta.insert(key, &obj.oid.to_le_bytes()[..])?;
            }
        }
        Ok(())
    }

    pub fn xattr(&self, fid: Fid, name: &[u8]) -> TxResult<Option<IVec>> {
        Ok(self.xattrs.get(codec::xattr_key(fid, name))?)
    }

    pub fn put_xattr(&self, fid: Fid, name: &[u8], value: &[u8]) -> TxResult<()> {
        self.xattrs.insert(codec::xattr_key(fid, name), value)?;
        Ok(())
    }

    pub fn remove_xattr(&self, fid: Fid, name: &[u8]) -> TxResult<Option<IVec>> {
        Ok(self.xattrs.remove(codec::xattr_key(fid, name))?)
    }

    /// Fails with `Invalid` if directory `dir` is `start` or one of its ancestors: moving
    /// `dir` under `start` would cut it off from the tree.
    pub fn check_not_ancestor(&mut self, dir: Fid, start: Fid) -> TxResult<()> {
        let mut cur = start;
        for _ in 0..crate::limits::DIR_DEPTH_MAX {
            if cur == dir {
                return fail(NsError::Invalid("cannot move a directory into itself"));
            }
            if cur == Fid::ROOT {
                return Ok(());
            }
            cur = self.inode(cur)?.parent;
        }
        fail(NsError::Corrupt(format!("directory loop above {start}")))
    }

    /// Writes the changed inodes, the inode count and the next transaction number (at least
    /// `at_least`: a replay keeps its original number); returns that number.
    pub fn finish(self, at_least: u64) -> TxResult<u64> {
        for (fid, slot) in &self.cache {
            let key = &codec::fid_key(*fid)[..];
            match slot {
                Slot::Clean(_) => {}
                Slot::Dirty(i) => {
                    self.inodes.insert(key, codec::encode_inode(i))?;
                }
                Slot::Deleted => {
                    self.inodes.remove(key)?;
                }
            }
        }
        if self.inode_delta != 0 {
            let count = match self.meta.get(codec::META_INODES)? {
                Some(v) => lift(codec::decode_u64("inode count", &v))?,
                None => 0,
            };
            let count = count.saturating_add_signed(self.inode_delta);
            self.meta
                .insert(codec::META_INODES, &count.to_le_bytes()[..])?;
        }
        let last = match self.meta.get(codec::META_TRANSNO)? {
            Some(v) => lift(codec::decode_u64("transno", &v))?,
            None => 0,
        };
        let Some(transno) = last.checked_add(1) else {
            return fail(NsError::Corrupt("transno counter exhausted".into()));
        };
        let transno = transno.max(at_least);
        self.meta
            .insert(codec::META_TRANSNO, &transno.to_le_bytes()[..])?;
        Ok(transno)
    }
}

/// Records, in the transaction of `meta`, that request `xid` of `client` made the change
/// numbered `transno`.
pub(crate) fn record_client(
    meta: &TransactionalTree,
    client: &[u8],
    xid: u64,
    transno: u64,
) -> TxResult<()> {
    meta.insert(codec::rcvd_key(client, xid), &transno.to_le_bytes()[..])?;
    Ok(())
}

/// The FID allocated after `fid`: oids count up from 1 within a sequence, then the next
/// sequence starts; `None` when the sequences are used up.
fn fid_after(fid: Fid) -> Option<Fid> {
    match fid.oid.checked_add(1) {
        Some(oid) => Some(Fid { oid, ..fid }),
        None => Some(Fid {
            seq: fid.seq.checked_add(1)?,
            oid: 1,
            ver: 0,
        }),
    }
}
