//! The metadata server [mdt + osp]: serves the namespace (a [`sheen_namespace::Namespace`]
//! on sled) over RPC, chooses layouts for new files and allocates their OST objects from
//! pools precreated on the OSSs in batches, as Lustre's MDS does.
//!
//! Clients cache attributes and names under inode-bits locks (`sheen-lock-server`): a
//! getattr or lookup may come with a lock (MDS_GETATTR_LOCK), and every namespace change
//! first takes an exclusive lock on the inodes it touches, which calls those clients back.
//!
//! Architecture invariant: the MDS never reads or writes file data; it talks to OSSs only
//! to precreate and destroy objects.

mod flock;
mod objects;
mod opens;
mod recovery;

use std::cell::{Cell, RefCell};
use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use sheen_lock_server::{LockServer, ServerLock, TryEnqueued};
use sheen_namespace::{CreateArgs, DirChange, Namespace, NsError, Removed};
use sheen_rpc::{
    serve_with_exports, ExportId, Exports, Import, ImportConfig, ReplayInfo, Request, Response,
    Service, ServiceError,
};
use sheen_wire::limits::{
    FLOCK_LOCKS_PER_CLIENT_MAX, FLOCK_WAIT_MAX, GETATTR_BATCH_MAX, IBITS_SETS_MAX,
    READDIRPLUS_LOCKED_ENTRIES_MAX, READDIRPLUS_MAX_BYTES, READDIR_MAX_ENTRIES,
};
use sheen_wire::msg::{
    AttrReply, CancelReq, CloseReq, DirEntryPlus, DirVersion, EnqueueReply, EnqueueReq, FlockOp,
    FlockReply, FlockReq, FlockType, GetattrBatchReply, GetattrBatchReq, GetattrLockReply,
    GetattrLockReq, GetattrReq, Layout, LookupReq, OpenReq, ReaddirPlusReply, ReaddirPlusReq,
    ReaddirReply, ReaddirReq, ReintCancelReq, ReintReply, ReintReq, SetAttr, StatfsReply,
    TargetRegReply, TargetRegReq, XattrReply, XattrReq,
};
use sheen_wire::{
    frame::NO_TARGET, ibits, ldlm_flags, Errno, Fid, LockDesc, LockMode, LockPolicy, Nid, Opcode,
    ResourceId, TargetKind, WireDecode, WireEncode,
};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn, Instrument};

pub use objects::ObjectAllocator;
use recovery::Recovery;

/// How often the MDS re-reads the configuration from the MGS (new OSTs, changed NIDs).
const CONFIG_REFRESH: Duration = Duration::from_secs(2);

/// The xattr through which layouts are read and set, as in Lustre.
pub const XATTR_LUSTRE_LOV: &[u8] = b"lustre.lov";

/// How the MDS is started.
#[derive(Clone, Debug)]
pub struct MdsConfig {
    pub fsname: String,
    pub mgs: Nid,
    pub index: u32,
    pub data_dir: PathBuf,
    pub listen: Nid,
    /// Failover NIDs: where else this MDT may be served from (`--failnode`).
    pub failnodes: Vec<Nid>,
    /// How long a client has to cancel a lock after a blocking callback before it is
    /// evicted (`--callback-timeout`).
    pub callback_timeout: Duration,
    /// How long clients have to reconnect and reopen their files, after an MDS start or
    /// after their connection ended, before what they held open is released
    /// (`--recovery-window`).
    pub recovery_window: Duration,
    /// Zero: every change is committed before its reply (the default). Otherwise the MDS
    /// replies once a change is applied, commits in the background at most this often, and
    /// recovers uncommitted changes from its clients' replays after a restart
    /// (`--commit-interval-ms`, docs/RECOVERY.md).
    pub commit_interval: Duration,
    /// How long a request to an OST keeps retrying an OSS that does not answer before it
    /// fails (`--ost-retry-secs`).
    pub ost_retry: Duration,
    /// Fault injection for tests (`--crash-image-dir`): after every commit, a copy of the
    /// namespace as it is on disk (what a power loss would leave) is kept here.
    pub crash_image: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum MdsError {
    #[error("namespace: {0}")]
    Namespace(#[from] NsError),
    #[error("registration with the MGS failed: {0}")]
    Register(#[from] sheen_rpc::RpcError),
    #[error("transport: {0}")]
    Transport(#[from] sheen_transport::TransportError),
    #[error("blocking task failed: {0}")]
    Join(#[from] tokio::task::JoinError),
}

struct Mds {
    ns: Arc<Namespace>,
    /// Who has which file open (the namespace keeps the pins).
    opens: opens::Opens,
    /// See [`MdsConfig::recovery_window`].
    recovery_window: Duration,
    /// Inode-bits locks: clients cache attributes and names under them.
    locks: Arc<LockServer>,
    /// File locks applications take (fcntl, flock), MDS_FLOCK.
    file_locks: flock::FileLocks,
    /// The client connections, to tell whether a client came back.
    exports: Arc<Exports>,
    objects: Arc<ObjectAllocator>,
    name: String,
    instance: u64,
    commits: Arc<GroupCommit>,
    data_dir: PathBuf,
    /// Commits asynchronously (see [`MdsConfig::commit_interval`]).
    async_commit: bool,
    /// Recovery after a start in asynchronous mode; `None` in the default mode.
    recovery: Option<Arc<Recovery>>,
    /// The clients whose registration ([`Namespace::register_client`]) is durable in this
    /// run (asynchronous mode).
    registered: Mutex<HashSet<Arc<str>>>,
}

/// Group commit of the namespace: one sled flush at a time, and a request whose changes a
/// finished flush already covers returns without flushing again, so that one flush serves
/// every request that finished its transaction while the previous flush ran.
struct GroupCommit {
    /// The last transno known durable.
    committed: AtomicU64,
    /// Held while a flush runs (by a thread of the blocking pool).
    flushing: Mutex<()>,
    /// The last transno known durable, for those waiting for a commit.
    watch: watch::Sender<u64>,
    /// See [`MdsConfig::crash_image`].
    crash_image: Option<PathBuf>,
}

impl GroupCommit {
    fn new(committed: u64) -> GroupCommit {
        GroupCommit {
            committed: AtomicU64::new(committed),
            flushing: Mutex::new(()),
            watch: watch::Sender::new(committed),
            crash_image: None,
        }
    }

    /// Waits until `transno` is durable; false if the MDS stops first.
    async fn wait_for(&self, transno: u64) -> bool {
        let mut rx = self.watch.subscribe();
        let reached = rx.wait_for(|c| *c >= transno).await.is_ok();
        reached
    }

    fn committed(&self) -> u64 {
        self.committed.load(Ordering::Acquire)
    }

    /// Makes every transaction up to `target` durable; returns the committed transno (at
    /// least `target`). Blocks: call on the blocking pool.
    fn commit(&self, ns: &Namespace, target: u64) -> Result<u64, NsError> {
        self.commit_inner(ns, target, false)
    }

    /// Flushes even when every transno is committed: for what is written outside
    /// transactions (client registrations). Blocks: call on the blocking pool.
    fn flush_now(&self, ns: &Namespace) -> Result<u64, NsError> {
        self.commit_inner(ns, ns.last_transno(), true)
    }

    fn commit_inner(&self, ns: &Namespace, target: u64, force: bool) -> Result<u64, NsError> {
        let done = self.committed();
        if done >= target && !force {
            return Ok(done);
        }
        // A panic while flushing leaves nothing behind that the next flush would not redo.
        let _turn = self.flushing.lock().unwrap_or_else(|p| p.into_inner());
        let done = self.committed();
        if done >= target && !force {
            return Ok(done);
        }
        // `flush` reads the last transno before flushing, so it covers `target`.
        let transno = match &self.crash_image {
            Some(dir) => ns.flush_and_copy(dir)?.transno,
            None => ns.flush()?.transno,
        };
        self.committed.fetch_max(transno, Ordering::AcqRel);
        self.watch.send_if_modified(|c| {
            let raised = transno > *c;
            *c = (*c).max(transno);
            raised
        });
        Ok(transno.max(target))
    }
}

/// (blocks, free, available) in 4 KiB units of the filesystem holding `dir`.
fn host_space(dir: &std::path::Path) -> (u64, u64, u64) {
    let Ok(c) = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()) else {
        return (0, 0, 0);
    };
    // SAFETY: statvfs writes into the zeroed struct we pass; the path is NUL-terminated.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return (0, 0, 0);
    }
    let frsize = st.f_frsize as u64;
    let to4k = |n: u64| n.saturating_mul(frsize) / 4096;
    (
        to4k(st.f_blocks as u64),
        to4k(st.f_bfree as u64),
        to4k(st.f_bavail as u64),
    )
}

/// `attr` with its layout (regular files) and symlink target (if wanted).
fn attr_reply(
    ns: &Namespace,
    attr: sheen_wire::msg::Attr,
    want_symlink: bool,
) -> Result<AttrReply, NsError> {
    let layout = if attr.is_reg() {
        ns.layout(attr.fid)?
    } else {
        None
    };
    let symlink = if want_symlink && attr.is_symlink() {
        Some(ns.readlink(attr.fid)?)
    } else {
        None
    };
    Ok(AttrReply {
        attr,
        layout,
        symlink,
    })
}

fn ns_err(e: NsError) -> ServiceError {
    if matches!(e, NsError::Corrupt(_) | NsError::Db(_)) {
        tracing::error!("namespace failure: {e}");
    }
    ServiceError::new(e.errno(), e.to_string())
}

tokio::task_local! {
    /// The client (uuid) and xid of the request a handler runs for: the namespace changes
    /// it makes are recorded with it (Lustre's last_rcvd), in the same transaction.
    static REQUEST: (Arc<str>, u64);
    /// The transno of the change the handler made (set by [`Mds::ns_commit`]).
    static OP_TRANSNO: Cell<u64>;
    /// The changes of directory entries the handler made (set by [`Mds::ns_commit`]).
    static OP_DIRS: RefCell<Vec<DirChange>>;
    /// Set while a replay executes: its original transno and reply.
    static REPLAY: (u64, Option<ReintReply>);
}

/// How many times a namespace change re-resolves its names when they changed while it was
/// waiting for its locks.
const LOCK_RESOLVE_TRIES: usize = 4;

/// The lock the MDS takes on `bits` of `fid` around a change: concurrent write (CW), which
/// conflicts with the PR locks clients cache under (so they are called back, and cannot
/// cache again until the change is done) but not with the MDS's own locks of other changes
/// (the namespace orders those itself), so that changes in one directory still commit
/// together.
fn change_lock(fid: Fid, bits: u64) -> LockDesc {
    LockDesc {
        resource: ResourceId::fid(fid),
        mode: LockMode::Cw,
        policy: LockPolicy::Ibits { bits },
    }
}

/// The versions of `dir` across the changes a request made (`changes`, in order), when
/// they follow one another with nothing between them and the last is still the
/// directory's version (`now`): no other change of its entries came since the first.
fn version_across(changes: &[DirChange], dir: Fid, now: Option<u64>) -> Option<DirVersion> {
    let mut mine = changes.iter().filter(|c| c.dir == dir);
    let first = mine.next()?;
    let before = first.before?;
    let mut after = first.after;
    for c in mine {
        if c.before != Some(after) {
            return None;
        }
        after = c.after;
    }
    (now == Some(after)).then_some(DirVersion { before, after })
}

/// The locks a getattr or a listing (`what`) may ask for: PR or CR, on at most 4 sets of
/// known inode bits.
fn check_getattr_locks(what: &str, mode: LockMode, bits: &[u64]) -> Result<(), ServiceError> {
    let bad_bits = bits.iter().any(|b| *b == 0 || b & !ibits::ALL != 0);
    if !matches!(mode, LockMode::Pr | LockMode::Cr) || bad_bits || bits.len() > IBITS_SETS_MAX {
        return Err(ServiceError::new(
            Errno::EINVAL,
            format!("{what} locks are PR or CR, on at most 4 sets of known inode bits"),
        ));
    }
    Ok(())
}

/// Whether a setattr changes only the access time (a read's relatime update).
fn atime_only(attr: &SetAttr) -> bool {
    attr.atime.is_some()
        && attr.keep_ctime
        && attr.mode.is_none()
        && attr.uid.is_none()
        && attr.gid.is_none()
        && attr.size.is_none()
        && attr.mtime.is_none()
        && attr.ctime.is_none()
}

fn lock_err(e: sheen_lock_server::LockError) -> ServiceError {
    ServiceError::new(e.errno(), e.to_string())
}

impl Mds {
    /// A client connection ended: its locks go at once; what it had open is released after
    /// the recovery window (the client, if it comes back, has reopened it by then on its
    /// new connection, so an unlinked file it still uses survives a network blip).
    fn export_gone(self: Arc<Self>, id: ExportId, shutdown: CancellationToken) {
        self.locks.export_gone(id);
        tokio::spawn(async move {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(self.recovery_window) => {}
            }
            for (fid, counts) in self.opens.take_export(id) {
                for _ in 0..counts.total() {
                    if let Err(e) = self.release_open(move |ns| ns.unpin(fid)).await {
                        warn!(%fid, "releasing an open of a gone client: {}", e.message);
                    }
                }
            }
        });
    }

    /// A connection of `client` ended. Its file locks are the client's, not the
    /// connection's: they go only when the client has not come back within the recovery
    /// window (and then the owners waiting for them are granted).
    fn client_gone(self: Arc<Self>, client: &str, shutdown: CancellationToken) {
        if !self.file_locks.holds_any(client) {
            return;
        }
        let client = client.to_owned();
        tokio::spawn(async move {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(self.recovery_window) => {}
            }
            if !self.exports.has_client(&client) {
                let n = self.file_locks.release_client(&client);
                info!(%client, n_locks = n, "released the file locks of a gone client");
            }
        });
    }

    /// MDS_FLOCK: an fcntl or flock lock operation, on the in-memory lock table.
    #[tracing::instrument(level = "debug", skip_all,
        fields(fid = %r.fid, kind = ?r.kind, op = ?r.op, typ = ?r.typ, owner = r.owner))]
    async fn file_lock(&self, req: &Request, r: FlockReq) -> Result<FlockReply, ServiceError> {
        let Some(client) = req.client.as_ref() else {
            return Err(ServiceError::new(
                Errno::ENOTCONN,
                "file lock before connect",
            ));
        };
        let owner = flock::Owner {
            client: Arc::clone(client),
            owner: r.owner,
        };
        let want = flock::Want {
            kind: r.kind,
            typ: r.typ,
            start: r.start,
            end: r.end,
            pid: r.pid,
        };
        let flock_err = |e: flock::FlockError| ServiceError::new(e.errno(), e.to_string());
        let conflict = match r.op {
            FlockOp::GetLk => self
                .file_locks
                .getlk(r.fid, &owner, &want)
                .map_err(flock_err)?,
            FlockOp::SetLk => {
                self.file_locks
                    .setlk(r.fid, &owner, &want)
                    .map_err(flock_err)?;
                None
            }
            FlockOp::SetLkWait => {
                self.file_locks
                    .setlk_wait(r.fid, &owner, &want, FLOCK_WAIT_MAX)
                    .await
                    .map_err(flock_err)?;
                None
            }
            FlockOp::Unlock => {
                let want = flock::Want {
                    typ: FlockType::Unlock,
                    ..want
                };
                self.file_locks
                    .setlk(r.fid, &owner, &want)
                    .map_err(flock_err)?;
                None
            }
            FlockOp::ReleaseOwner => {
                self.file_locks.release_owner(r.fid, r.kind, &owner);
                None
            }
        };
        Ok(FlockReply { conflict })
    }

    /// The inodes a change touches and the inode bits it changes on each: a directory's
    /// contents and times (UPDATE) when names come and go in it; a named inode whose name
    /// goes or moves, everything; attributes (UPDATE, PERM, XATTR) for a setattr or an
    /// xattr change. Named inodes are resolved now (a name that does not exist yet touches
    /// only its directory).
    fn touched(&self, req: &ReintReq) -> Result<Vec<(Fid, u64)>, ServiceError> {
        type Touched = (Vec<(Fid, u64)>, Vec<(Fid, Vec<u8>)>);
        let attrs = ibits::UPDATE | ibits::PERM | ibits::XATTR;
        let (mut out, names): Touched = match req {
            // A mode change rewrites the access ACL too.
            ReintReq::Setattr { fid, attr } if attr.mode.is_some() => (vec![(*fid, attrs)], vec![]),
            ReintReq::Setattr { fid, .. } => (vec![(*fid, ibits::UPDATE | ibits::PERM)], vec![]),
            ReintReq::Setxattr { fid, .. } | ReintReq::Removexattr { fid, .. } => {
                (vec![(*fid, attrs)], vec![])
            }
            ReintReq::Create { parent, .. } => (vec![(*parent, ibits::UPDATE)], vec![]),
            ReintReq::Link { fid, parent, .. } => (
                vec![(*fid, ibits::UPDATE), (*parent, ibits::UPDATE)],
                vec![],
            ),
            ReintReq::Unlink { parent, name } | ReintReq::Rmdir { parent, name } => (
                vec![(*parent, ibits::UPDATE)],
                vec![(*parent, name.clone())],
            ),
            ReintReq::Rename {
                src_parent,
                src_name,
                dst_parent,
                dst_name,
                ..
            } => (
                vec![(*src_parent, ibits::UPDATE), (*dst_parent, ibits::UPDATE)],
                vec![
                    (*src_parent, src_name.clone()),
                    (*dst_parent, dst_name.clone()),
                ],
            ),
        };
        if !names.is_empty() {
            // At most two point reads: on the worker (see `ns_now`).
            let children = self.ns_now(|ns| {
                let mut found = Vec::new();
                for (parent, name) in &names {
                    match ns.lookup(*parent, name) {
                        Ok(a) => found.push(a.fid),
                        Err(NsError::NotFound) => {}
                        Err(e) => return Err(e),
                    }
                }
                Ok(found)
            })?;
            out.extend(children.into_iter().map(|f| (f, ibits::ALL)));
        }
        // One lock per inode, with the union of its bits, in fid order.
        out.sort_by_key(|(f, _)| *f);
        let mut merged: Vec<(Fid, u64)> = Vec::with_capacity(out.len());
        for (fid, bits) in out {
            match merged.last_mut() {
                Some((f, b)) if *f == fid => *b |= bits,
                _ => merged.push((fid, bits)),
            }
        }
        Ok(merged)
    }

    /// Takes a change lock on the bits `req` changes of every inode it touches, in fid
    /// order (so two changes never wait for each other in a cycle), after the clients
    /// caching them were called back (the requester cancelled its own in the request).
    async fn lock_touched(&self, req: &ReintReq) -> Result<Vec<ServerLock>, ServiceError> {
        let mut touched = self.touched(req)?;
        for _ in 0..LOCK_RESOLVE_TRIES {
            let mut held = Vec::with_capacity(touched.len());
            for (fid, bits) in &touched {
                let l = self
                    .locks
                    .lock_for_server(change_lock(*fid, *bits))
                    .await
                    .map_err(lock_err)?;
                held.push(l);
            }
            // A name may have moved while we waited: lock what it names now.
            let now = self.touched(req)?;
            let covered = now
                .iter()
                .all(|(f, b)| touched.iter().any(|(g, c)| g == f && (b & !c) == 0));
            if covered {
                return Ok(held);
            }
            drop(held);
            touched = now;
        }
        Err(ServiceError::new(
            Errno::EAGAIN,
            "names kept changing while locking them",
        ))
    }

    /// MDS_GETATTR_LOCK: attributes, with the locks asked for that can be granted at once.
    async fn getattr_lock(
        &self,
        export: Option<ExportId>,
        r: GetattrLockReq,
    ) -> Result<GetattrLockReply, ServiceError> {
        check_getattr_locks("getattr", r.mode, &r.bits)?;
        let parent = r.fid;
        let want_symlink = r.want_symlink;
        let name = r.name.clone();
        let read = |name: Option<Vec<u8>>, fid: Fid| async move {
            match name {
                Some(name) => self.attr_now(|ns| ns.lookup(parent, &name), want_symlink),
                None => self.attr_now(|ns| ns.getattr(fid), want_symlink),
            }
        };
        let first = read(name.clone(), parent).await?;
        let Some(export) = export else {
            let writers = self.opens.writers(first.attr.fid);
            return Ok(GetattrLockReply {
                reply: first,
                locks: Vec::new(),
                writers,
            });
        };
        let fid = first.attr.fid;
        let mut locks = Vec::new();
        for bits in &r.bits {
            let req = EnqueueReq {
                desc: LockDesc {
                    resource: ResourceId::fid(fid),
                    mode: r.mode,
                    policy: LockPolicy::Ibits { bits: *bits },
                },
                flags: ldlm_flags::BLOCK_NOWAIT,
            };
            // Refused when someone is changing it: that part is good for now only.
            if let Ok((handle, desc)) = self.locks.enqueue(export, &req).await {
                locks.push(EnqueueReply {
                    handle,
                    desc,
                    granted: true,
                    lvb: None,
                });
            }
        }
        if locks.is_empty() {
            return Ok(GetattrLockReply {
                reply: first,
                locks,
                writers: self.opens.writers(fid),
            });
        }
        // Read again under the locks: a change that finished in between is in this answer,
        // and any later one calls the locks back first.
        match read(name, fid).await {
            Ok(reply) if reply.attr.fid == fid => Ok(GetattrLockReply {
                reply,
                locks,
                writers: self.opens.writers(fid),
            }),
            other => {
                self.cancel_grants(export, &locks);
                let reply = other?;
                let writers = self.opens.writers(reply.attr.fid);
                Ok(GetattrLockReply {
                    reply,
                    locks: Vec::new(),
                    writers,
                })
            }
        }
    }

    /// MDS_GETATTR_BATCH: [`Mds::getattr_lock`] for each name, in turn; a name that fails
    /// (no such entry) is answered `None`.
    #[tracing::instrument(level = "debug", skip_all, fields(parent = %r.parent, n = r.names.len()))]
    async fn getattr_batch(
        &self,
        export: Option<ExportId>,
        r: GetattrBatchReq,
    ) -> Result<GetattrBatchReply, ServiceError> {
        if r.names.len() > GETATTR_BATCH_MAX {
            return Err(ServiceError::new(
                Errno::EINVAL,
                format!(
                    "a getattr batch of {} names (at most {GETATTR_BATCH_MAX})",
                    r.names.len()
                ),
            ));
        }
        check_getattr_locks("getattr", r.mode, &r.bits)?;
        let mut entries = Vec::with_capacity(r.names.len());
        for name in r.names {
            let one = GetattrLockReq {
                fid: r.parent,
                name: Some(name),
                want_symlink: false,
                mode: r.mode,
                bits: r.bits.clone(),
            };
            entries.push(self.getattr_lock(export, one).await.ok());
        }
        Ok(GetattrBatchReply { entries })
    }

    /// MDS_READDIR_PLUS: a page of a directory, each entry with its attributes, and for at
    /// most `lock_entries` entries the locks asked for when they can be had without waiting
    /// (an entry whose inode another client is changing gets its attributes without locks);
    /// beyond those, entries whose locks the client holds already count as locked. The
    /// locked entries are read again under their locks when anything changed since the page
    /// was read, so that their attributes are as the locks protect them.
    #[tracing::instrument(level = "debug", skip_all, fields(dir = %r.fid, cookie = r.cookie))]
    async fn readdir_plus(
        &self,
        export: Option<ExportId>,
        r: ReaddirPlusReq,
    ) -> Result<ReaddirPlusReply, ServiceError> {
        check_getattr_locks("readdirplus", r.mode, &r.bits)?;
        let (dir, cookie) = (r.fid, r.cookie);
        let max = r.max_entries.clamp(1, READDIR_MAX_ENTRIES);
        let mut page = self
            .ns(move |ns| ns.readdir_plus(dir, cookie, max, READDIRPLUS_MAX_BYTES))
            .await?;
        let n = page.entries.len();
        // Per entry: the locks granted, when it is covered by locks.
        let mut covered: Vec<Option<Vec<EnqueueReply>>> = vec![None; n];
        let lock_entries = r.lock_entries.min(READDIRPLUS_LOCKED_ENTRIES_MAX) as usize;
        if let (Some(export), false) = (export, r.bits.is_empty()) {
            let mut newly_locked = 0;
            let mut may_grant = lock_entries > 0;
            for (e, cover) in page.entries.iter().zip(covered.iter_mut()) {
                let fid = e.attr.fid;
                if may_grant && newly_locked < lock_entries {
                    match self.try_lock_entry(export, fid, r.mode, &r.bits) {
                        Ok(Some(grants)) => {
                            newly_locked += usize::from(!grants.is_empty());
                            *cover = Some(grants);
                        }
                        Ok(None) => {}
                        Err(err) => {
                            debug!("readdirplus grants no more locks: {err}");
                            may_grant = false;
                        }
                    }
                } else {
                    // No new locks, but the ones the client holds already still count.
                    let held = r.bits.iter().all(|b| {
                        let desc = LockDesc {
                            resource: ResourceId::fid(fid),
                            mode: r.mode,
                            policy: LockPolicy::Ibits { bits: *b },
                        };
                        self.locks.holds_uncalled(export, &desc)
                    });
                    if held {
                        *cover = Some(Vec::new());
                    }
                }
            }
            let any = covered.iter().any(Option::is_some);
            if any && self.ns.last_transno() != page.transno {
                self.reread_covered(export, dir, &mut page.entries, &mut covered)
                    .await?;
            }
        }
        let entries = page
            .entries
            .into_iter()
            .zip(covered)
            .map(|(e, cover)| DirEntryPlus {
                writers: if e.attr.is_reg() {
                    self.opens.writers(e.attr.fid)
                } else {
                    0
                },
                entry: e.entry,
                attr: e.attr,
                layout: e.layout,
                locked: cover.is_some(),
                locks: cover.unwrap_or_default(),
            })
            .collect();
        Ok(ReaddirPlusReply {
            entries,
            eof: page.eof,
        })
    }

    /// The locks of one listed entry, one per set of `bits`, granted now or held already by
    /// the client: all of them (the new ones), or none (`None`: one is in the way of a
    /// change, and what was granted for the entry is cancelled again).
    fn try_lock_entry(
        &self,
        export: ExportId,
        fid: Fid,
        mode: LockMode,
        bits: &[u64],
    ) -> Result<Option<Vec<EnqueueReply>>, sheen_lock_server::LockError> {
        let mut grants = Vec::with_capacity(bits.len());
        for b in bits {
            let desc = LockDesc {
                resource: ResourceId::fid(fid),
                mode,
                policy: LockPolicy::Ibits { bits: *b },
            };
            let outcome = self.locks.try_enqueue(export, desc);
            match outcome {
                Ok(TryEnqueued::Granted { handle, desc }) => grants.push(EnqueueReply {
                    handle,
                    desc,
                    granted: true,
                    lvb: None,
                }),
                Ok(TryEnqueued::Held) => {}
                Ok(TryEnqueued::Busy) | Err(_) => {
                    self.cancel_grants(export, &grants);
                    return outcome.map(|_| None);
                }
            }
        }
        Ok(Some(grants))
    }

    /// Reads the covered entries of a readdirplus page again (a change committed since the
    /// page was read, maybe before their locks were granted): their attributes are replaced
    /// by the current ones; an entry whose name no longer names its inode loses its locks.
    async fn reread_covered(
        &self,
        export: ExportId,
        dir: Fid,
        entries: &mut [sheen_namespace::EntryAttrs],
        covered: &mut [Option<Vec<EnqueueReply>>],
    ) -> Result<(), ServiceError> {
        let asked: Vec<usize> = (0..entries.len())
            .filter(|&i| covered[i].is_some())
            .collect();
        let names: Vec<(Vec<u8>, Fid)> = asked
            .iter()
            .map(|&i| (entries[i].entry.name.clone(), entries[i].entry.fid))
            .collect();
        let now = match self.ns(move |ns| ns.entry_attrs(dir, &names)).await {
            Ok(now) => now,
            Err(e) => {
                let handles: Vec<_> = covered
                    .iter()
                    .flatten()
                    .flatten()
                    .map(|g| g.handle)
                    .collect();
                self.locks.cancel(export, &handles);
                return Err(e);
            }
        };
        for (i, found) in asked.into_iter().zip(now.entries) {
            match found {
                Some((attr, layout)) => {
                    entries[i].attr = attr;
                    entries[i].layout = layout;
                }
                None => {
                    if let Some(grants) = covered[i].take() {
                        self.cancel_grants(export, &grants);
                    }
                }
            }
        }
        Ok(())
    }

    /// Runs a namespace call on the blocking pool (sled may block on I/O).
    async fn ns<T, F>(&self, f: F) -> Result<T, ServiceError>
    where
        F: FnOnce(&Namespace) -> Result<T, NsError> + Send + 'static,
        T: Send + 'static,
    {
        let ns = Arc::clone(&self.ns);
        tokio::task::spawn_blocking(move || f(&ns))
            .await
            .map_err(|e| ServiceError::new(Errno::EIO, format!("namespace task failed: {e}")))?
            .map_err(ns_err)
    }

    /// Runs a short namespace read on the calling worker, without a trip to the blocking
    /// pool: sled reads take no lock, and a lookup or getattr is served from sled's cache in
    /// microseconds (a page not cached is one `pread`), less than the two thread handoffs
    /// of [`Mds::ns`]. Only for reads of an inode or two (a getattr, a lookup, the layout a
    /// new file inherits), never for changes or listings.
    fn ns_now<T>(
        &self,
        f: impl FnOnce(&Namespace) -> Result<T, NsError>,
    ) -> Result<T, ServiceError> {
        f(&self.ns).map_err(ns_err)
    }

    /// Runs a modifying namespace call and commits it (and everything finished before it)
    /// in the same trip to the blocking pool: the reply to a modifying request may leave
    /// only once its changes are durable.
    async fn ns_commit<T, F>(&self, f: F) -> Result<T, ServiceError>
    where
        F: FnOnce(&Namespace) -> Result<T, NsError> + Send + 'static,
        T: Send + 'static,
    {
        let commits = Arc::clone(&self.commits);
        let record = REQUEST.try_with(Clone::clone).ok();
        let replay_transno = REPLAY.try_with(|r| r.0).unwrap_or(0);
        let sync = !self.async_commit;
        let (out, transno, dirs) = self
            .ns(move |ns| {
                ns.clear_last_op_transno();
                let out = ns.with_transno(replay_transno, |ns| match record {
                    Some((client, xid)) => ns.with_client_record(client.as_bytes(), xid, f),
                    None => f(ns),
                })?;
                let transno = ns.last_op_transno();
                let dirs = ns.last_op_dirs();
                if sync {
                    commits.commit(ns, ns.last_transno())?;
                }
                Ok((out, transno, dirs))
            })
            .await?;
        let _ = OP_TRANSNO.try_with(|t| t.set(transno));
        let _ = OP_DIRS.try_with(|d| d.borrow_mut().extend(dirs));
        Ok(out)
    }

    /// The transno of the change made last by this handler ([`Mds::ns_commit`]).
    fn op_transno() -> u64 {
        OP_TRANSNO.try_with(Cell::get).unwrap_or(0)
    }

    /// The reply to a change this client's request already made (a resend after a restart,
    /// found in the durable client records): rebuilt from the namespace as it is now, as
    /// Lustre reconstructs replies.
    async fn reconstruct(&self, r: &ReintReq) -> Result<ReintReply, ServiceError> {
        let none = ReintReply {
            attr: None,
            layout: None,
            ..Default::default()
        };
        match r {
            ReintReq::Setattr { fid, .. } | ReintReq::Link { fid, .. } => {
                let fid = *fid;
                let attr = self.ns(move |ns| ns.getattr(fid)).await?;
                Ok(ReintReply {
                    attr: Some(attr),
                    layout: None,
                    ..Default::default()
                })
            }
            ReintReq::Create { parent, name, .. } => {
                let (parent, name) = (*parent, name.clone());
                let reply = self
                    .attr_of(move |ns| ns.lookup(parent, &name), false)
                    .await?;
                Ok(ReintReply {
                    attr: Some(reply.attr),
                    layout: reply.layout,
                    ..Default::default()
                })
            }
            ReintReq::Setxattr { fid, name, .. } if name == XATTR_LUSTRE_LOV => {
                let fid = *fid;
                let reply = self.attr_of(move |ns| ns.getattr(fid), false).await?;
                Ok(ReintReply {
                    attr: Some(reply.attr),
                    layout: reply.layout,
                    ..Default::default()
                })
            }
            _ => Ok(none),
        }
    }

    /// Makes every change so far durable; returns the committed transno.
    async fn commit(&self) -> Result<u64, ServiceError> {
        let commits = Arc::clone(&self.commits);
        self.ns(move |ns| commits.commit(ns, ns.last_transno()))
            .await
    }

    /// Reads an inode with `read` and answers with its layout (and symlink target), all in
    /// one trip to the blocking pool: getattr and lookup are the hottest requests.
    async fn attr_of<F>(&self, read: F, want_symlink: bool) -> Result<AttrReply, ServiceError>
    where
        F: FnOnce(&Namespace) -> Result<sheen_wire::msg::Attr, NsError> + Send + 'static,
    {
        self.ns(move |ns| attr_reply(ns, read(ns)?, want_symlink))
            .await
    }

    /// [`Mds::attr_of`] on the calling worker ([`Mds::ns_now`]).
    fn attr_now(
        &self,
        read: impl FnOnce(&Namespace) -> Result<sheen_wire::msg::Attr, NsError>,
        want_symlink: bool,
    ) -> Result<AttrReply, ServiceError> {
        self.ns_now(|ns| attr_reply(ns, read(ns)?, want_symlink))
    }

    /// Ends an open on the blocking pool with `release`, which removes the inode when that
    /// was the last open of an orphan, and destroys the orphan's objects once the removal is
    /// durable. With commit-before-reply the removal is committed here: no reply waits for
    /// it, but its objects would otherwise wait for the next change's commit, and be left on
    /// their OSTs, unreferenced, by a stop before one.
    async fn release_open(
        &self,
        release: impl FnOnce(&Namespace) -> Result<Option<Removed>, NsError> + Send + 'static,
    ) -> Result<(), ServiceError> {
        let commits = Arc::clone(&self.commits);
        let sync = !self.async_commit;
        let (removed, transno) = self
            .ns(move |ns| {
                let removed = release(ns)?;
                let transno = ns.last_transno();
                if sync && removed.as_ref().is_some_and(|r| r.destroyed) {
                    commits.commit(ns, transno)?;
                }
                Ok((removed, transno))
            })
            .await?;
        self.destroy_removed(removed.as_ref(), transno);
        Ok(())
    }

    /// Destroys the OST objects of inodes whose last link went away, once the change that
    /// removed them (numbered `transno` or below) is durable.
    fn destroy_removed(&self, removed: Option<&Removed>, transno: u64) {
        if let Some(
            removed @ Removed {
                destroyed: true,
                layout: Some(layout),
                ..
            },
        ) = removed
        {
            self.destroy_layout_after(transno, removed.attr.fid, layout.clone());
        }
    }

    /// Destroys the OST objects of `fid`'s dropped `layout` (which the namespace recorded
    /// with the change) once transno `transno` is durable: until then a crash could bring
    /// the file back.
    fn destroy_layout_after(&self, transno: u64, fid: Fid, layout: Layout) {
        if self.commits.committed() >= transno {
            self.objects.destroy_dropped_layout(fid, layout);
            return;
        }
        let commits = Arc::clone(&self.commits);
        let objects = Arc::clone(&self.objects);
        tokio::spawn(
            async move {
                if commits.wait_for(transno).await {
                    objects.destroy_dropped_layout(fid, layout);
                }
            }
            .instrument(tracing::debug_span!("destroy_after_commit", transno)),
        );
    }

    async fn reint(&self, req: ReintReq) -> Result<ReintReply, ServiceError> {
        match req {
            ReintReq::Setattr { fid, attr } => {
                // An access-time update by a read is made durable by the next commit, not
                // waited for (Linux's lazytime): a crash may lose it, nothing else.
                let a = if atime_only(&attr) {
                    self.ns(move |ns| ns.setattr(fid, &attr)).await?
                } else {
                    self.ns_commit(move |ns| ns.setattr(fid, &attr)).await?
                };
                Ok(ReintReply {
                    attr: Some(a),
                    layout: None,
                    ..Default::default()
                })
            }
            ReintReq::Create {
                parent,
                name,
                mode,
                rdev,
                creds,
                symlink,
                layout,
                open,
            } => {
                let is_reg = mode & libc::S_IFMT == libc::S_IFREG;
                // A replay creates what the original reply named: its FID, and for a regular
                // file its layout (the same OST objects, which hold its data).
                let original = REPLAY
                    .try_with(|r| r.1.clone())
                    .ok()
                    .flatten()
                    .and_then(|r| r.attr.map(|a| (a.fid, r.layout)));
                let replayed_fid = original.as_ref().map(|(fid, _)| *fid);
                let replayed_layout = original.and_then(|(_, l)| l);
                let file_layout = if let (true, Some(l)) = (is_reg, replayed_layout) {
                    Some(l)
                } else if is_reg {
                    let template = match layout {
                        Some(l) => Some(l),
                        None => self.ns_now(|ns| ns.inherited_layout(parent))?,
                    };
                    Some(self.objects.instantiate(template.as_ref()).await?)
                } else {
                    None
                };
                let args = CreateArgs {
                    parent,
                    name,
                    mode,
                    rdev,
                    uid: creds.uid,
                    gid: creds.gid,
                    umask: creds.umask,
                    symlink,
                    layout: file_layout.clone(),
                };
                let create = move |ns: &Namespace| {
                    let attr = match replayed_fid {
                        Some(fid) => ns.create_with_fid(args, fid)?,
                        None => ns.create(args)?,
                    };
                    // A replayed open is reopened by the client after its replays.
                    if open && is_reg && replayed_fid.is_none() {
                        ns.pin(attr.fid)?;
                    }
                    Ok(attr)
                };
                match self.ns_commit(create).await {
                    Ok(attr) => Ok(ReintReply {
                        attr: Some(attr),
                        layout: file_layout,
                        ..Default::default()
                    }),
                    Err(e) => {
                        // A replay's objects are the original's: left to the start-up cleanup.
                        if let (Some(l), None) = (file_layout, replayed_fid) {
                            self.objects.destroy_layout_later(l);
                        }
                        Err(e)
                    }
                }
            }
            ReintReq::Link { fid, parent, name } => {
                let a = self
                    .ns_commit(move |ns| ns.link(fid, parent, &name))
                    .await?;
                Ok(ReintReply {
                    attr: Some(a),
                    layout: None,
                    ..Default::default()
                })
            }
            ReintReq::Unlink { parent, name } => {
                let r = self.ns_commit(move |ns| ns.unlink(parent, &name)).await?;
                self.destroy_removed(Some(&r), Self::op_transno());
                Ok(ReintReply {
                    attr: Some(r.attr),
                    layout: None,
                    ..Default::default()
                })
            }
            ReintReq::Rmdir { parent, name } => {
                let r = self.ns_commit(move |ns| ns.rmdir(parent, &name)).await?;
                Ok(ReintReply {
                    attr: Some(r.attr),
                    layout: None,
                    ..Default::default()
                })
            }
            ReintReq::Rename {
                src_parent,
                src_name,
                dst_parent,
                dst_name,
                flags,
            } => {
                let r = self
                    .ns_commit(move |ns| {
                        ns.rename(src_parent, &src_name, dst_parent, &dst_name, flags)
                    })
                    .await?;
                self.destroy_removed(r.as_ref(), Self::op_transno());
                Ok(ReintReply {
                    attr: None,
                    layout: None,
                    ..Default::default()
                })
            }
            ReintReq::Setxattr {
                fid,
                name,
                value,
                flags,
            } => {
                if name == XATTR_LUSTRE_LOV {
                    return self.set_layout(fid, &value).await;
                }
                self.ns_commit(move |ns| ns.set_xattr(fid, &name, &value, flags))
                    .await?;
                Ok(ReintReply {
                    attr: None,
                    layout: None,
                    ..Default::default()
                })
            }
            ReintReq::Removexattr { fid, name } => {
                if name == XATTR_LUSTRE_LOV {
                    let attr = self.ns(move |ns| ns.getattr(fid)).await?;
                    if !attr.is_dir() {
                        return Err(ServiceError::new(
                            Errno::EPERM,
                            "a file's layout cannot be removed",
                        ));
                    }
                    let (attr, _) = self.ns_commit(move |ns| ns.set_layout(fid, None)).await?;
                    return Ok(ReintReply {
                        attr: Some(attr),
                        layout: None,
                        ..Default::default()
                    });
                }
                self.ns_commit(move |ns| ns.remove_xattr(fid, &name))
                    .await?;
                Ok(ReintReply {
                    attr: None,
                    layout: None,
                    ..Default::default()
                })
            }
        }
    }

    /// The change an MDS_REINT or MDS_REINT_CANCEL asks for (the cancels are done here).
    fn decode_reint(&self, req: &Request) -> Result<ReintReq, ServiceError> {
        if req.opcode == Opcode::MdsReint {
            return req.decode::<ReintReq>();
        }
        let rc: ReintCancelReq = req.decode()?;
        if let Some(export) = req.export {
            self.locks.cancel(export, &rc.cancels);
        }
        Ok(rc.reint)
    }

    /// Executes a namespace change a client asked for; the reply carries its transno.
    async fn reint_request(&self, req: &Request, r: ReintReq) -> Result<Response, ServiceError> {
        let resent = req.header.flags & sheen_wire::frame::FLAG_RESENT != 0;
        if let (true, Some(client)) = (resent, req.client.clone()) {
            // Executed before a restart (the reply cache went with the process)?
            let xid = req.header.xid;
            let done = self
                .ns(move |ns| ns.client_record(client.as_bytes(), xid))
                .await?;
            if let Some(transno) = done {
                info!(
                    xid,
                    "resent request already executed: reconstructing its reply"
                );
                let reply = self.reconstruct(&r).await?;
                return Ok(Response::new(&reply).with_transno(transno));
            }
        }
        if let (true, None, Some(client)) = (self.async_commit, &req.replay, &req.client) {
            self.register(client).await?;
        }
        // Clients caching what changes are called back first; the locks are held until the
        // change is applied (and, by default, committed).
        let locks = self.lock_touched(&r).await?;
        // The directory whose entries change: its attribute lock goes back to the client.
        let changed_dir = match &r {
            ReintReq::Create { parent, .. }
            | ReintReq::Unlink { parent, .. }
            | ReintReq::Rmdir { parent, .. }
                if req.replay.is_none() =>
            {
                Some(*parent)
            }
            _ => None,
        };
        // An access-time update: the file's attribute lock goes back to the client.
        let touched = match &r {
            ReintReq::Setattr { fid, attr } if atime_only(attr) && req.replay.is_none() => {
                Some(*fid)
            }
            _ => None,
        };
        // A mkdir: the new directory's attribute lock goes to the client (not for replays).
        let new_dir = matches!(&r, ReintReq::Create { mode, .. }
            if mode & libc::S_IFMT == libc::S_IFDIR && req.replay.is_none());
        // A create that opens a regular file: an open intent (not for replays).
        let intent = match &r {
            ReintReq::Create {
                parent,
                name,
                mode,
                open: true,
                ..
            } if mode & libc::S_IFMT == libc::S_IFREG && req.replay.is_none() => {
                Some((*parent, name.clone()))
            }
            _ => None,
        };
        // Each modifying step is recorded with the request (`ns_commit`) and, by default,
        // committed before it returns.
        let (reply, transno, dirs) = OP_TRANSNO
            .scope(Cell::new(0), async {
                OP_DIRS
                    .scope(RefCell::new(Vec::new()), async {
                        let reply = match req.client.clone() {
                            Some(client) => {
                                REQUEST
                                    .scope((client, req.header.xid), self.reint(r))
                                    .await?
                            }
                            None => self.reint(r).await?,
                        };
                        let dirs = OP_DIRS.with(|d| d.take());
                        Ok::<_, ServiceError>((reply, Self::op_transno(), dirs))
                    })
                    .await
            })
            .await?;
        drop(locks);
        let mut reply = reply;
        if let (Some(dir), Some(export)) = (changed_dir, req.export) {
            self.dir_after_change(export, dir, &dirs, &mut reply);
        }
        if let (Some((parent, name)), Some(export)) = (intent, req.export) {
            if let Some(attr) = &reply.attr {
                self.opens.open(export, attr.fid, true);
            }
            self.open_intent(export, parent, name, transno, &mut reply);
        }
        if let (true, Some(export)) = (new_dir, req.export) {
            self.new_dir_lock(export, &dirs, &mut reply);
        }
        if let (Some(fid), Some(export)) = (touched, req.export) {
            self.attr_after_touch(export, fid, &mut reply);
        }
        Ok(Response::new(&reply).with_transno(transno))
    }

    /// Gives back locks granted to `export` with an answer that ended up not carrying them.
    fn cancel_grants(&self, export: ExportId, grants: &[EnqueueReply]) {
        let handles: Vec<_> = grants.iter().map(|g| g.handle).collect();
        self.locks.cancel(export, &handles);
    }

    /// Grants the client that changed the entries of `dir` the directory's attribute lock
    /// (PR), when it can be had without waiting, and puts the directory's attributes, read
    /// under it, in the reply: the kernel asks for them before the next change in it. When
    /// nothing else changed the directory's entries between the change (`changes`) and the
    /// grant, the reply also says which version of them the change made of which.
    fn dir_after_change(
        &self,
        export: ExportId,
        dir: Fid,
        changes: &[DirChange],
        reply: &mut ReintReply,
    ) {
        let grants = match self.try_lock_entry(export, dir, LockMode::Pr, &[ibits::ATTR]) {
            Ok(Some(grants)) if !grants.is_empty() => grants,
            _ => return,
        };
        match self.ns_now(|ns| ns.getattr(dir)) {
            Ok(attr) => {
                reply.parent_attr = Some(attr);
                reply.parent_version = version_across(changes, dir, self.ns.dir_version(dir));
                reply.parent_locks = grants;
            }
            Err(_) => {
                self.cancel_grants(export, &grants);
            }
        }
    }

    /// Grants the client that moved a file's access time the file's attribute lock back
    /// (PR, when it can be had without waiting), with its attributes, layout and count of
    /// writers read under it: the client cancelled its own before the change, and the kernel
    /// asks for the attributes again at once (a read's relatime update, then the read that
    /// finds the end of the file).
    fn attr_after_touch(&self, export: ExportId, fid: Fid, reply: &mut ReintReply) {
        let grants = match self.try_lock_entry(export, fid, LockMode::Pr, &[ibits::ATTR]) {
            Ok(Some(grants)) if !grants.is_empty() => grants,
            _ => return,
        };
        match self.attr_now(|ns| ns.getattr(fid), false) {
            Ok(now) => {
                reply.attr = Some(now.attr);
                reply.layout = now.layout;
                reply.writers = self.opens.writers(fid);
                reply.locks = grants;
            }
            Err(_) => self.cancel_grants(export, &grants),
        }
    }

    /// Grants the client that made a directory (`changes` holds its creation) the new
    /// directory's attribute lock (PR), when it can be had without waiting and nothing was
    /// added to it since, with its version: the client knows it empty at that version.
    fn new_dir_lock(&self, export: ExportId, changes: &[DirChange], reply: &mut ReintReply) {
        let Some(dir) = reply.attr.as_ref().filter(|a| a.is_dir()).map(|a| a.fid) else {
            return;
        };
        let Some(made) = changes.iter().find(|c| c.dir == dir && c.before.is_none()) else {
            return;
        };
        let grants = match self.try_lock_entry(export, dir, LockMode::Pr, &[ibits::ATTR]) {
            Ok(Some(grants)) if !grants.is_empty() => grants,
            _ => return,
        };
        // The attributes too are read again under the lock: a chmod may have come between.
        let now = self.ns_now(|ns| ns.getattr(dir));
        match now {
            Ok(attr) if self.ns.dir_version(dir) == Some(made.after) => {
                reply.attr = Some(attr);
                reply.dir_version = Some(made.after);
                reply.locks = grants;
            }
            _ => self.cancel_grants(export, &grants),
        }
    }

    /// Grants the client that created and opened a file (an open intent) the new file's
    /// LOOKUP and attribute locks, PR, when they can be had without waiting, so that it may
    /// cache what it has just made. When anything changed since the create (numbered
    /// `transno`), the reply's attributes are read again under the locks; when the name no
    /// longer leads to the file, the locks are given back and none are granted.
    fn open_intent(
        &self,
        export: ExportId,
        parent: Fid,
        name: Vec<u8>,
        transno: u64,
        reply: &mut ReintReply,
    ) {
        let Some(fid) = reply.attr.as_ref().map(|a| a.fid) else {
            return;
        };
        let bits = [ibits::LOOKUP, ibits::ATTR];
        let grants = match self.try_lock_entry(export, fid, LockMode::Pr, &bits) {
            Ok(Some(grants)) if !grants.is_empty() => grants,
            _ => return,
        };
        if self.ns.last_transno() != transno {
            match self.attr_now(|ns| ns.lookup(parent, &name), false) {
                Ok(now) if now.attr.fid == fid => {
                    reply.attr = Some(now.attr);
                    reply.layout = now.layout;
                }
                _ => {
                    self.cancel_grants(export, &grants);
                    return;
                }
            }
        }
        reply.writers = self.opens.writers(fid);
        reply.locks = grants;
    }

    /// Makes `client` known durably before its first change of this run (asynchronous
    /// mode): after a crash, recovery waits for the clients the namespace knows.
    async fn register(&self, client: &Arc<str>) -> Result<(), ServiceError> {
        let known = self
            .registered
            .lock()
            .map(|r| r.contains(client))
            .unwrap_or(false);
        if known {
            return Ok(());
        }
        let c = Arc::clone(client);
        let commits = Arc::clone(&self.commits);
        self.ns(move |ns| {
            ns.register_client(c.as_bytes())?;
            commits.flush_now(ns)
        })
        .await?;
        if let Ok(mut r) = self.registered.lock() {
            r.insert(Arc::clone(client));
        }
        Ok(())
    }

    /// Forgets `client` (it said goodbye, was evicted, or never came back): recovery will
    /// not wait for it. With `commit_first`, what it changed is committed first (nobody
    /// would replay it).
    async fn forget_client(&self, client: &str, commit_first: bool) {
        if let Ok(mut r) = self.registered.lock() {
            r.remove(client);
        }
        if commit_first {
            if let Err(e) = self.commit().await {
                warn!(
                    client,
                    "commit before forgetting a client failed: {}", e.message
                );
            }
        }
        let c = client.to_owned();
        if let Err(e) = self.ns(move |ns| ns.forget_client(c.as_bytes())).await {
            warn!(
                client,
                "forgetting a client's records failed: {}", e.message
            );
        }
    }

    /// A replayed request (asynchronous mode, during recovery): answered with its original
    /// reply if its change is on disk, else executed again in transno order across clients,
    /// to the same effect as the first time.
    async fn replay(
        &self,
        recovery: &Arc<Recovery>,
        req: &Request,
        replay: ReplayInfo,
    ) -> Result<Response, ServiceError> {
        let original = Response {
            body: replay.reply.clone(),
            bulk: bytes::Bytes::new(),
            bulk_crcs: None,
            transno: replay.transno,
        };
        if replay.transno <= recovery.durable_at_start {
            recovery.note_skipped();
            return Ok(original);
        }
        let client = req
            .client
            .clone()
            .ok_or_else(|| ServiceError::new(Errno::ENOTCONN, "replay before connect"))?;
        if !matches!(req.opcode, Opcode::MdsReint | Opcode::MdsReintCancel) {
            return Err(ServiceError::new(
                Errno::EOPNOTSUPP,
                format!("{} is not replayed", req.opcode.name()),
            ));
        }
        let r = self.decode_reint(req)?;
        let original_reply = ReintReply::from_wire(&replay.reply).ok();
        let mut turn = recovery.turn(&client, replay.transno).await?;
        // A create whose very inode is there already has been redone (counts as done).
        if let (ReintReq::Create { parent, name, .. }, Some(ReintReply { attr: Some(a), .. })) =
            (&r, &original_reply)
        {
            let (parent, name, fid) = (*parent, name.clone(), a.fid);
            let found = self.ns(move |ns| Ok(ns.lookup(parent, &name).ok())).await?;
            if found.is_some_and(|f| f.fid == fid) {
                turn.succeeded();
                return Ok(original);
            }
        }
        info!(
            xid = req.header.xid,
            transno = replay.transno,
            client = %client,
            "replaying"
        );
        let out = REPLAY
            .scope((replay.transno, original_reply), self.reint_request(req, r))
            .await;
        match &out {
            Ok(_) => turn.succeeded(),
            Err(e) => warn!(
                xid = req.header.xid,
                transno = replay.transno,
                client = %client,
                "replay failed: {}",
                e.message
            ),
        }
        out
    }

    /// `setxattr lustre.lov`: a directory's default layout, or a new layout for an empty
    /// regular file (new objects are allocated, the old ones destroyed).
    async fn set_layout(&self, fid: Fid, value: &[u8]) -> Result<ReintReply, ServiceError> {
        let template = Layout::from_wire(value)
            .map_err(|e| ServiceError::new(Errno::EINVAL, format!("bad lustre.lov value: {e}")))?;
        let attr = self.ns(move |ns| ns.getattr(fid)).await?;
        if attr.is_dir() {
            let mut t = template;
            for c in &mut t.components {
                c.stripe.objects.clear();
            }
            // Validate now so a bad default fails here, not at every later create.
            self.objects.check_template(&t).await?;
            let (attr, _) = self
                .ns_commit(move |ns| ns.set_layout(fid, Some(t)))
                .await?;
            return Ok(ReintReply {
                attr: Some(attr),
                layout: None,
                ..Default::default()
            });
        }
        if !attr.is_reg() {
            return Err(ServiceError::new(
                Errno::EINVAL,
                "layouts apply to files and directories",
            ));
        }
        if attr.size != 0 {
            return Err(ServiceError::new(
                Errno::EEXIST,
                "stripe already set (file has data)",
            ));
        }
        let replayed = REPLAY
            .try_with(|r| r.1.as_ref().and_then(|r| r.layout.clone()))
            .ok()
            .flatten();
        let is_replay = replayed.is_some();
        let new = match replayed {
            Some(l) => l,
            None => self.objects.instantiate(Some(&template)).await?,
        };
        let stored = new.clone();
        match self
            .ns_commit(move |ns| ns.set_layout(fid, Some(stored)))
            .await
        {
            Ok((attr, old)) => {
                if let Some(old) = old {
                    self.destroy_layout_after(Self::op_transno(), fid, old);
                }
                let layout = self.ns(move |ns| ns.layout(fid)).await?;
                Ok(ReintReply {
                    attr: Some(attr),
                    layout,
                    ..Default::default()
                })
            }
            Err(e) => {
                if !is_replay {
                    self.objects.destroy_layout_later(new);
                }
                Err(e)
            }
        }
    }
}

#[async_trait]
impl Service for Mds {
    fn name(&self) -> String {
        self.name.clone()
    }

    fn instance(&self) -> u64 {
        self.instance
    }

    fn last_committed(&self) -> u64 {
        self.commits.committed()
    }

    async fn replay_done(&self, client: &str) {
        if let Some(recovery) = &self.recovery {
            recovery.done(client);
        }
    }

    async fn client_disconnected(&self, client: &str) {
        if self.async_commit {
            self.forget_client(client, true).await;
        }
    }

    async fn handle(&self, req: Request) -> Result<Response, ServiceError> {
        match (&self.recovery, req.replay.clone()) {
            (Some(recovery), Some(replay)) => return self.replay(recovery, &req, replay).await,
            (None, Some(_)) => {
                return Err(ServiceError::new(
                    Errno::ESTALE,
                    "this MDS commits before it replies: nothing to replay",
                ))
            }
            // Everything else waits until the changes replayed are back in place.
            (Some(recovery), None) if !recovery.is_over() => recovery.wait_end().await,
            (Some(_), None) => {}
            (None, None) => {}
        }
        match req.opcode {
            Opcode::MdsGetRoot => {
                let reply = self.attr_of(|ns| ns.getattr(Fid::ROOT), false).await?;
                Ok(Response::new(&reply))
            }
            Opcode::MdsGetattr => {
                let r: GetattrReq = req.decode()?;
                let fid = r.fid;
                let reply = self.attr_now(|ns| ns.getattr(fid), r.want_symlink)?;
                Ok(Response::new(&reply))
            }
            Opcode::MdsGetattrLock => {
                let r: GetattrLockReq = req.decode()?;
                let reply = self.getattr_lock(req.export, r).await?;
                Ok(Response::new(&reply))
            }
            Opcode::MdsGetattrBatch => {
                let r: GetattrBatchReq = req.decode()?;
                let reply = self.getattr_batch(req.export, r).await?;
                Ok(Response::new(&reply))
            }
            Opcode::LdlmEnqueue => {
                let r: EnqueueReq = req.decode()?;
                let export = req
                    .export
                    .ok_or_else(|| ServiceError::new(Errno::ENOTCONN, "enqueue before connect"))?;
                if !matches!(r.desc.policy, LockPolicy::Ibits { .. }) {
                    return Err(ServiceError::new(
                        Errno::EINVAL,
                        "MDT locks are inode-bits locks",
                    ));
                }
                let (handle, desc) = self.locks.enqueue(export, &r).await.map_err(lock_err)?;
                Ok(Response::new(&EnqueueReply {
                    handle,
                    desc,
                    granted: true,
                    lvb: None,
                }))
            }
            Opcode::LdlmCancel => {
                let r: CancelReq = req.decode()?;
                if let Some(export) = req.export {
                    self.locks.cancel(export, &r.handles);
                }
                Ok(Response::empty())
            }
            Opcode::MdsGetattrName => {
                let r: LookupReq = req.decode()?;
                let reply = self.attr_now(|ns| ns.lookup(r.parent, &r.name), false)?;
                Ok(Response::new(&reply))
            }
            Opcode::MdsReint | Opcode::MdsReintCancel => {
                let r = self.decode_reint(&req)?;
                self.reint_request(&req, r).await
            }
            Opcode::MdsReadpage => {
                let r: ReaddirReq = req.decode()?;
                let max = r.max_entries.clamp(1, READDIR_MAX_ENTRIES);
                let (entries, eof) = self.ns(move |ns| ns.readdir(r.fid, r.cookie, max)).await?;
                Ok(Response::new(&ReaddirReply { entries, eof }))
            }
            Opcode::MdsReaddirPlus => {
                let r: ReaddirPlusReq = req.decode()?;
                let reply = self.readdir_plus(req.export, r).await?;
                Ok(Response::new(&reply))
            }
            Opcode::MdsGetxattr => {
                let r: XattrReq = req.decode()?;
                let value = match r {
                    XattrReq::Get { fid, name } if name == XATTR_LUSTRE_LOV => {
                        match self.ns(move |ns| ns.layout(fid)).await? {
                            Some(l) => l.to_wire().to_vec(),
                            None => return Err(Errno::ENODATA.into()),
                        }
                    }
                    XattrReq::Get { fid, name } => {
                        self.ns(move |ns| ns.get_xattr(fid, &name)).await?
                    }
                    XattrReq::List { fid } => {
                        let (names, has_layout) = self
                            .ns(move |ns| Ok((ns.list_xattr(fid)?, ns.layout(fid)?.is_some())))
                            .await?;
                        let mut out = Vec::new();
                        if has_layout {
                            out.extend_from_slice(XATTR_LUSTRE_LOV);
                            out.push(0);
                        }
                        for n in names {
                            out.extend_from_slice(&n);
                            out.push(0);
                        }
                        out
                    }
                };
                Ok(Response::new(&XattrReply { value }))
            }
            Opcode::MdsStatfs => {
                let s = self.ns(|ns| ns.statfs()).await?;
                // The MDT's space is the space of the filesystem holding its store.
                let dir = self.data_dir.clone();
                let (blocks, bfree, bavail) = tokio::task::spawn_blocking(move || host_space(&dir))
                    .await
                    .unwrap_or_default();
                Ok(Response::new(&StatfsReply {
                    bsize: 4096,
                    blocks,
                    bfree,
                    bavail,
                    files: s.inodes_max,
                    ffree: s.inodes_max.saturating_sub(s.inodes_used),
                    namelen: 255,
                }))
            }
            Opcode::MdsSync => {
                let transno = self.commit().await?;
                Ok(Response::empty().with_transno(transno))
            }
            Opcode::MdsOpen => {
                let r: OpenReq = req.decode()?;
                let fid = r.fid;
                let write = r.flags & libc::O_ACCMODE as u32 != libc::O_RDONLY as u32;
                // A writer makes the size on the MDS stale: clients caching attributes are
                // called back first (they glimpse the objects while it writes).
                let _revoke = if write {
                    let l = self
                        .locks
                        .lock_for_server(change_lock(fid, ibits::UPDATE))
                        .await
                        .map_err(lock_err)?;
                    Some(l)
                } else {
                    None
                };
                // On the worker unless a change holds the namespace's turn (it may wait for
                // sled's log): then on the blocking pool.
                let now = self.ns_now(|ns| {
                    ns.try_pin(fid)
                        .map(|pinned| pinned.and_then(|attr| attr_reply(ns, attr, false)))
                        .transpose()
                })?;
                let reply = match now {
                    Some(reply) => reply,
                    None => self.attr_of(move |ns| ns.pin(fid), false).await?,
                };
                if let Some(export) = req.export {
                    self.opens.open(export, fid, write);
                }
                Ok(Response::new(&reply))
            }
            Opcode::MdsClose => {
                let r: CloseReq = req.decode()?;
                let fid = r.fid;
                // Only an open this connection made (or replayed) is closed here: the opens
                // of a connection that ended are released with it.
                let known = req.export.is_some_and(|e| self.opens.close(e, fid));
                // The close of a file that keeps a name changes nothing on disk: answered
                // here, without a trip to the blocking pool.
                if known && self.ns_now(|ns| ns.unpin_leaves_orphan(fid))? {
                    self.release_open(move |ns| ns.destroy_if_orphan(fid))
                        .await?;
                }
                Ok(Response::empty())
            }
            Opcode::MdsFlock => {
                let r: FlockReq = req.decode()?;
                let reply = self.file_lock(&req, r).await?;
                Ok(Response::new(&reply))
            }
            other => Err(ServiceError::new(
                Errno::EOPNOTSUPP,
                format!("{} is not an MDS operation", other.name()),
            )),
        }
    }
}

/// Asynchronous mode: commits (flushes) the namespace at most every `interval` when there is
/// something new, until `shutdown`.
fn spawn_committer(
    ns: Arc<Namespace>,
    commits: Arc<GroupCommit>,
    interval: Duration,
    shutdown: CancellationToken,
) {
    tokio::spawn(
        async move {
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(interval) => {}
                }
                if ns.last_transno() <= commits.committed() {
                    continue;
                }
                let (ns, commits) = (Arc::clone(&ns), Arc::clone(&commits));
                let done =
                    tokio::task::spawn_blocking(move || commits.commit(&ns, ns.last_transno()));
                match done.await {
                    Ok(Ok(transno)) => tracing::debug!(transno, "committed"),
                    Ok(Err(e)) => warn!("background commit failed: {e}"),
                    Err(e) => warn!("background commit failed: {e}"),
                }
            }
        }
        .instrument(tracing::info_span!("committer")),
    );
}

async fn register(cfg: &MdsConfig, nid: Nid, mgs: &Import) -> Result<(), MdsError> {
    let reg = TargetRegReq {
        fsname: cfg.fsname.clone(),
        kind: TargetKind::Mdt,
        index: cfg.index,
        nids: sheen_wire::nid::registration_nids(nid, &cfg.failnodes),
    };
    let reply: TargetRegReply = mgs.call(Opcode::MgsTargetReg, NO_TARGET, &reg).await?;
    info!(target = %reply.name, %nid, "registered with the MGS");
    Ok(())
}

/// Opens the namespace, registers with the MGS, listens and serves until `shutdown`.
pub async fn run(cfg: MdsConfig, shutdown: CancellationToken) -> Result<(), MdsError> {
    let async_commit = !cfg.commit_interval.is_zero();
    let ns = {
        let dir = cfg.data_dir.join("namespace");
        tokio::task::spawn_blocking(move || {
            if async_commit {
                // Only the MDS's commits flush, so what it reports committed is on disk.
                Namespace::open_flushed_by_caller(&dir)
            } else {
                Namespace::open(&dir)
            }
        })
        .await??
    };
    let ns = Arc::new(ns);
    // Asynchronous mode: the clients the namespace knows replay what it lost.
    let recovery = if async_commit {
        let (clean, known) = {
            let ns = Arc::clone(&ns);
            tokio::task::spawn_blocking(move || {
                Ok::<_, NsError>((ns.take_clean_shutdown()?, ns.known_clients()?))
            })
            .await??
        };
        // After a clean shutdown every reply was committed: nobody has anything to replay.
        let known = if clean { Vec::new() } else { known };
        let expected = known
            .iter()
            .map(|c| String::from_utf8_lossy(c).into_owned())
            .collect();
        Some(Recovery::start(
            expected,
            ns.last_transno(),
            cfg.recovery_window,
            shutdown.clone(),
        ))
    } else {
        None
    };
    let mut icfg = ImportConfig::new(format!("MDT{:04x}", cfg.index), Opcode::MgsConnect);
    icfg.retry_for = Duration::from_secs(60);
    let mgs = Import::new(sheen_transport::for_nid(&cfg.mgs)?, cfg.mgs, icfg);
    let transport = sheen_transport::for_nid(&cfg.listen)?;
    let listener = if cfg.listen.port != 0 {
        register(&cfg, cfg.listen, &mgs).await?;
        transport.listen(&cfg.listen).await?
    } else {
        let l = transport.listen(&cfg.listen).await?;
        register(&cfg, l.local_nid(), &mgs).await?;
        l
    };
    let objects = Arc::new(ObjectAllocator::new(
        cfg.fsname.clone(),
        mgs,
        Arc::clone(&ns),
        cfg.ost_retry,
    ));
    objects.spawn_destroy_retries(shutdown.clone());
    objects.refresh_config().await;
    // Files unlinked while open when the MDS last stopped: clients that still have them
    // open reopen them when they reconnect; the others are removed after the window (after
    // recovery: reopens come after the replays).
    {
        let ns = Arc::clone(&ns);
        let objects = Arc::clone(&objects);
        let shutdown = shutdown.clone();
        let window = cfg.recovery_window;
        let recovery = recovery.clone();
        tokio::spawn(async move {
            if let Some(r) = &recovery {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = r.wait_end() => {}
                }
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(window) => {}
            }
            let removing = Arc::clone(&ns);
            match tokio::task::spawn_blocking(move || removing.remove_orphans()).await {
                Ok(Ok(orphans)) => {
                    if !orphans.is_empty() {
                        // The objects go once the removals are durable.
                        match tokio::task::spawn_blocking(move || ns.flush()).await {
                            Ok(Ok(_)) => {}
                            Ok(Err(e)) => warn!("committing the orphan removals failed: {e}"),
                            Err(e) => warn!("committing the orphan removals failed: {e}"),
                        }
                    }
                    for removed in orphans {
                        info!(fid = %removed.attr.fid, "removed an orphan nobody reopened");
                        if let Some(layout) = removed.layout {
                            objects.destroy_dropped_layout(removed.attr.fid, layout);
                        }
                    }
                }
                Ok(Err(e)) => warn!("removing orphans failed: {e}"),
                Err(e) => warn!("removing orphans failed: {e}"),
            }
        });
    }
    // OST objects a previous run precreated (or handed to a create that never committed)
    // and no layout uses, and those of removed files it had not destroyed yet: destroyed in
    // the background, without holding up the start; after recovery, since replayed creates
    // use them.
    {
        let objects = Arc::clone(&objects);
        let ns = Arc::clone(&ns);
        let recovery = recovery.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            if let Some(r) = &recovery {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = r.wait_end() => {}
                }
            }
            // Objects of files removed before the stop that their OSTs did not destroy.
            objects.destroy_recorded().await;
            match tokio::task::spawn_blocking(move || ns.ost_watermarks()).await {
                Ok(Ok(watermarks)) => objects.destroy_unused(&watermarks).await,
                Ok(Err(e)) => warn!("reading the OST watermarks failed: {e}"),
                Err(e) => warn!("reading the OST watermarks failed: {e}"),
            }
        });
    }
    let refresher = {
        let objects = Arc::clone(&objects);
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(CONFIG_REFRESH) => objects.refresh_config().await,
                }
            }
        })
    };
    let name = TargetKind::Mdt.target_name(&cfg.fsname, cfg.index);
    info!(nid = %listener.local_nid(), target = %name, "MDS ready");
    let commits = {
        let mut c = GroupCommit::new(ns.last_transno());
        c.crash_image = cfg.crash_image.clone();
        if let Some(dir) = c.crash_image.clone() {
            warn!(dir = %dir.display(), "fault injection: keeping crash images of the MDT");
            let ns = Arc::clone(&ns);
            tokio::task::spawn_blocking(move || ns.flush_and_copy(&dir)).await??;
        }
        Arc::new(c)
    };
    info!(
        commit_interval_ms = cfg.commit_interval.as_millis() as u64,
        "commit mode: {}",
        if async_commit {
            "asynchronous (replies before commit, clients replay)"
        } else {
            "synchronous (commit before reply)"
        }
    );
    let instance = sheen_daemon::instance_id();
    let exports = Exports::new();
    let lock_config = sheen_dlm::Config {
        callback_timeout: cfg.callback_timeout,
        // Handles from before a restart must not name a lock of this run.
        first_cookie: instance << 16,
        ..sheen_dlm::Config::default()
    };
    let locks = LockServer::new(name.clone(), Arc::clone(&exports), lock_config);
    let reaper = tokio::spawn(Arc::clone(&locks).run_reaper(shutdown.clone()));
    let service = Arc::new(Mds {
        ns: Arc::clone(&ns),
        opens: opens::Opens::default(),
        recovery_window: cfg.recovery_window,
        locks,
        file_locks: flock::FileLocks::new(FLOCK_LOCKS_PER_CLIENT_MAX),
        exports: Arc::clone(&exports),
        objects,
        name,
        instance,
        commits: Arc::clone(&commits),
        data_dir: cfg.data_dir.clone(),
        async_commit,
        recovery: recovery.clone(),
        registered: Mutex::new(HashSet::new()),
    });
    {
        let mds = Arc::downgrade(&service);
        let shutdown = shutdown.clone();
        exports.set_gone_hook(Arc::new({
            let (mds, shutdown) = (mds.clone(), shutdown.clone());
            move |id| {
                if let Some(mds) = mds.upgrade() {
                    mds.export_gone(id, shutdown.clone());
                }
            }
        }));
        exports.set_client_gone_hook(Arc::new(move |client| {
            if let Some(mds) = mds.upgrade() {
                mds.client_gone(client, shutdown.clone());
            }
        }));
    }
    if async_commit {
        spawn_committer(
            Arc::clone(&ns),
            Arc::clone(&commits),
            cfg.commit_interval,
            shutdown.clone(),
        );
        // An evicted client is not waited for after a crash.
        let mds = Arc::downgrade(&service);
        exports.set_evict_hook(Arc::new(move |uuid| {
            if let Some(mds) = mds.upgrade() {
                let uuid = uuid.to_owned();
                tokio::spawn(async move { mds.forget_client(&uuid, true).await });
            }
        }));
    }
    // Clients that never came back are forgotten: the next recovery does not wait for them.
    if let Some(r) = recovery {
        let mds = Arc::downgrade(&service);
        tokio::spawn(async move {
            r.wait_end().await;
            let Some(mds) = mds.upgrade() else { return };
            for client in r.never_came() {
                mds.forget_client(&client, false).await;
            }
        });
    }
    serve_with_exports(listener, service, exports, shutdown).await;
    reaper.abort();
    refresher.abort();
    let flushed = tokio::task::spawn_blocking(move || {
        if async_commit {
            ns.flush_clean_shutdown()
        } else {
            ns.flush()
        }
    });
    if let Err(e) = flushed.await? {
        warn!("failed to flush the namespace at shutdown: {e}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_version_crosses_only_a_request_s_own_changes() {
        let d = Fid {
            seq: 1,
            oid: 7,
            ver: 0,
        };
        let other = Fid {
            seq: 1,
            oid: 8,
            ver: 0,
        };
        let c = |dir, before, after| DirChange { dir, before, after };
        let moved = |before, after| Some(DirVersion { before, after });
        // One change, still the directory's version.
        assert_eq!(version_across(&[c(d, Some(3), 5)], d, Some(5)), moved(3, 5));
        // Another change of the directory came since.
        assert_eq!(version_across(&[c(d, Some(3), 5)], d, Some(6)), None);
        assert_eq!(version_across(&[c(d, Some(3), 5)], d, None), None);
        // The version before is not known (the MDS restarted, or forgot it).
        assert_eq!(version_across(&[c(d, None, 5)], d, Some(5)), None);
        // Two changes by the request, one after the other; other directories don't count.
        let two = [c(d, Some(3), 5), c(other, Some(1), 5), c(d, Some(5), 6)];
        assert_eq!(version_across(&two, d, Some(6)), moved(3, 6));
        // Another change came between the request's two.
        let split = [c(d, Some(3), 5), c(d, Some(7), 8)];
        assert_eq!(version_across(&split, d, Some(8)), None);
        // The request did not change the directory.
        assert_eq!(version_across(&[c(other, Some(1), 2)], d, Some(2)), None);
    }

    fn subdir(name: &str) -> CreateArgs {
        CreateArgs {
            parent: Fid::ROOT,
            name: name.as_bytes().to_vec(),
            mode: libc::S_IFDIR | 0o755,
            rdev: 0,
            uid: 0,
            gid: 0,
            umask: 0,
            symlink: None,
            layout: None,
        }
    }

    #[test]
    fn group_commit_covers_what_finished_before_it() {
        let dir = tempfile::tempdir().unwrap();
        let ns = Namespace::open(dir.path()).unwrap();
        let commits = GroupCommit::new(ns.last_transno());
        ns.create(subdir("a")).unwrap();
        let a = ns.last_transno();
        ns.create(subdir("b")).unwrap();
        let b = ns.last_transno();
        assert!(b > a);
        // One flush for `a` also covers `b`, which finished before it started.
        assert_eq!(commits.commit(&ns, a).unwrap(), b);
        assert_eq!(commits.committed(), b);
        assert_eq!(commits.commit(&ns, b).unwrap(), b);
        assert_eq!(commits.commit(&ns, 0).unwrap(), b);
        ns.create(subdir("c")).unwrap();
        let c = ns.last_transno();
        assert_eq!(commits.commit(&ns, c).unwrap(), c);
        drop(ns);
        // Everything committed is there after a reopen.
        let ns = Namespace::open(dir.path()).unwrap();
        assert_eq!(ns.last_transno(), c);
        assert!(ns.lookup(Fid::ROOT, b"c").is_ok());
    }
}
