//! The client proper [llite minus the VFS, mdc, osc, lov]: one MDC import to MDT0, one OSC
//! import per OSS (over all its NIDs, failover ones included) shared by the OSTs it serves,
//! each OST with its own cap on RPCs in flight, and striped I/O that sends every stripe's
//! pieces in parallel.
//!
//! Every fan-out waits for all of its RPCs (`join_all`), never dropping one half-way: an
//! RPC future is not cancellation-safe (a dropped send could leave half a frame behind).

use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::future::join_all;
use sheen_layout::Geometry;
use sheen_rpc::{Callbacks, Import, ImportConfig, RpcError};
use sheen_wire::frame::NO_TARGET;
use sheen_wire::limits::{
    NAME_MAX_BYTES, PATH_MAX_BYTES, READDIRPLUS_LOCKED_ENTRIES_MAX, READDIR_MAX_ENTRIES,
    XATTR_VALUE_MAX_BYTES,
};
use sheen_wire::msg::{falloc, OstFallocateReq};
use sheen_wire::msg::{
    Attr, AttrReply, CloseReq, ConfigReadReq, Creds, DirEntry, Empty, FlockOp, FlockReply,
    FlockReq, FsConfig, GetattrBatchReply, GetattrBatchReq, GetattrLockReply, GetattrLockReq,
    GetattrReq, Layout, LookupReq, ObjAttr, ObjReq, OpenReq, OstListReply, OstListReq, OstObject,
    OstPunchReq, OstReadReq, OstSetattrReq, OstSyncReq, OstWriteReply, OstWriteReq,
    ReaddirPlusReply, ReaddirPlusReq, ReaddirReply, ReaddirReq, ReintCancelReq, ReintReply,
    ReintReq, SetAttr, StatfsReply, StripeLayout, TargetInfo, Timespec, XattrReply, XattrReq,
};
use sheen_wire::{
    Errno, Fid, LockHandle, LockMode, Nid, Opcode, TargetKind, WireDecode, WireEncode,
    LOCK_EXTENT_EOF,
};
use tokio::sync::Semaphore;
use tracing::{debug, info, instrument, warn};

use crate::dir_names::{DirNames, NameChange};
use crate::io_plan::{assemble_read, plan_range, plan_read, plan_write, WritePiece};
use crate::limits;
use crate::locks::{
    CacheInvalidator, Held, Invalidation, Locks, Reopen, ServerCallbacks, Target, ATTR_BITS,
};
use crate::opens::OpenFiles;
use crate::statahead::{Fetched, Statahead};
use crate::{ClientError, MountSpec};

/// The MDT every metadata operation goes to (DNE comes later).
const MDT0_INDEX: u32 = 0;

/// The locks a listing takes per entry: the name's LOOKUP lock and the attribute lock, as a
/// lookup does.
const LISTED_LOCK_BITS: [u64; 2] = [sheen_wire::ibits::LOOKUP, ATTR_BITS];

/// The xattr the kernel reads before every write (to drop capabilities with set-user-ID
/// bits).
const XATTR_CAPABILITY: &[u8] = b"security.capability";

/// Data read by [`Client::read_under_locks`], with what keeps it good.
pub(crate) struct ReadUnder {
    pub(crate) data: Bytes,
    held: Vec<Held>,
    changes: u64,
}

/// A write holding its PW locks, not sent yet ([`Client::lock_write`]). Dropped unsent, it
/// gives its locks back and writes nothing.
pub struct LockedWrite {
    client: Client,
    fid: Fid,
    /// `None` for an empty write.
    stripe: Option<StripeLayout>,
    pieces: Vec<WritePiece>,
    data: Bytes,
    end: u64,
    mtime: Timespec,
    held: Vec<Held>,
}

impl LockedWrite {
    /// Where the write ends in the file (`offset + len`).
    pub fn end(&self) -> u64 {
        self.end
    }

    /// The mtime the write stamps on the objects it writes.
    pub fn mtime(&self) -> Timespec {
        self.mtime
    }

    /// Sends every piece to its OST in parallel, then gives the locks back; returns once
    /// every OST replied (the data is durable), with the write's end.
    pub async fn send(mut self) -> Result<u64, ClientError> {
        let Some(stripe) = self.stripe.take() else {
            return Ok(self.end);
        };
        let client = &self.client;
        let writes = self.pieces.iter().map(|p| {
            // The plan covers [0, len) of the buffer exactly.
            let bulk = self
                .data
                .slice(p.buf_offset as usize..(p.buf_offset + p.len) as usize);
            let stripe = &stripe;
            let mtime = self.mtime;
            async move {
                let obj = stripe_object(stripe, p.stripe_idx)?;
                let req = OstWriteReq {
                    oid: obj.oid,
                    offset: p.obj_offset,
                    mtime,
                };
                let (_, _): (OstWriteReply, Bytes) = client
                    .ost_call(obj.ost_idx, Opcode::OstWrite, &req, bulk)
                    .await?;
                Ok(())
            }
        });
        let written = join_all(writes).await;
        let held = std::mem::take(&mut self.held);
        self.client.unlock_changed(self.fid, held);
        all_ok(written)?;
        Ok(self.end)
    }
}

impl Drop for LockedWrite {
    fn drop(&mut self) {
        let held = std::mem::take(&mut self.held);
        if !held.is_empty() {
            self.client.unlock(held);
        }
    }
}

/// A file created and opened by [`Client::create_open`].
#[derive(Clone, Debug)]
pub struct Created {
    pub attr: Attr,
    pub layout: Option<Layout>,
    /// Opens for writing of the file over all clients when the MDS granted its locks with
    /// the create (this one's included), else 0.
    pub writers: u32,
}

/// One entry of a listing with attributes ([`Client::readdir_plus`]).
#[derive(Clone, Debug)]
pub struct ReaddirPlusEntry {
    pub entry: DirEntry,
    pub attr: Attr,
    /// A regular file's layout.
    pub layout: Option<Layout>,
    /// Opens for writing of the file over all clients: while there are none, the MDS's size
    /// is the file's (see [`Client::getattr_locked`]).
    pub writers: u32,
    /// The held MDT locks the entry was read under (LOOKUP and attributes); empty if none.
    locks: Vec<LockHandle>,
}

impl ReaddirPlusEntry {
    /// An entry read without locks: never cached by the kernel ([`Client::listed_cacheable`]).
    pub fn without_locks(entry: DirEntry, attr: Attr, layout: Option<Layout>) -> Self {
        ReaddirPlusEntry {
            entry,
            attr,
            layout,
            writers: 0,
            locks: Vec::new(),
        }
    }
}

/// Limits and identity of a client; [`Default`] takes them from [`crate::limits`].
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// How long one RPC waits for its reply.
    pub rpc_timeout: Duration,
    /// How long one connection attempt may take.
    pub connect_timeout: Duration,
    /// How long an RPC keeps retrying an unreachable server before failing.
    pub retry_for: Duration,
    /// How long mount tries one MGS NID before the next.
    pub mgs_retry_for: Duration,
    /// Largest data one OST RPC moves.
    pub max_rpc_bytes: u32,
    /// OST RPCs in flight per OST.
    pub max_rpcs_in_flight_per_ost: usize,
    /// Most a [`crate::FileReader`] reads ahead of a sequential reader (Lustre's
    /// `max_read_ahead_per_file_mb`); 0 turns readahead off.
    pub max_readahead_bytes: u64,
    /// The name this client gives itself at connect.
    pub client_uuid: String,
}

impl Default for ClientConfig {
    fn default() -> ClientConfig {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        ClientConfig {
            rpc_timeout: limits::RPC_TIMEOUT,
            connect_timeout: limits::CONNECT_TIMEOUT,
            retry_for: limits::RETRY_FOR,
            mgs_retry_for: limits::MGS_RETRY_FOR,
            max_rpc_bytes: limits::MAX_RPC_BYTES,
            max_rpcs_in_flight_per_ost: limits::MAX_RPCS_IN_FLIGHT_PER_OST,
            max_readahead_bytes: limits::READAHEAD_MAX_BYTES,
            client_uuid: format!(
                "sheen-client-{}-{:x}",
                std::process::id(),
                nanos & 0xffff_ffff
            ),
        }
    }
}

impl ClientConfig {
    fn validate(&self) -> Result<(), ClientError> {
        let max_bulk = sheen_wire::limits::MAX_BULK_BYTES;
        if self.max_rpc_bytes == 0 || u64::from(self.max_rpc_bytes) > max_bulk {
            return Err(ClientError::BadConfig(format!(
                "max_rpc_bytes {} must be in 1..={max_bulk}",
                self.max_rpc_bytes
            )));
        }
        if self.max_rpcs_in_flight_per_ost == 0
            || self.max_rpcs_in_flight_per_ost > Semaphore::MAX_PERMITS
        {
            return Err(ClientError::BadConfig(format!(
                "max_rpcs_in_flight_per_ost {} must be positive",
                self.max_rpcs_in_flight_per_ost
            )));
        }
        if self.max_readahead_bytes > limits::READAHEAD_LIMIT_BYTES {
            return Err(ClientError::BadConfig(format!(
                "max_readahead_bytes {} must be at most {}",
                self.max_readahead_bytes,
                limits::READAHEAD_LIMIT_BYTES
            )));
        }
        Ok(())
    }

    fn import_config(&self, connect_opcode: Opcode, target: &str) -> ImportConfig {
        let mut c = ImportConfig::new(self.client_uuid.clone(), connect_opcode);
        c.timeout = self.rpc_timeout;
        c.connect_timeout = self.connect_timeout;
        c.retry_for = self.retry_for;
        c.target = target.to_string();
        c
    }
}

/// A mounted Sheen filesystem. Cheap to clone; every clone shares the connections.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Mdt {
    info: TargetInfo,
    import: Import,
}

struct Ost {
    info: TargetInfo,
    import: Import,
    in_flight: Semaphore,
}

struct Inner {
    config: ClientConfig,
    fs_config: FsConfig,
    mgs: Import,
    mdts: BTreeMap<u32, Mdt>,
    osts: BTreeMap<u32, Ost>,
    /// One import per OSS (its list of NIDs), shared by the OSTs it serves (kept for unmount).
    oss_imports: Vec<Import>,
    /// Locks held on OST objects and MDT inodes.
    locks: Arc<Locks>,
    /// Files open through this client, reopened on every new MDS connection.
    opens: Arc<OpenFiles>,
    /// Attributes of directories this client changed the entries of, and of files it moved
    /// the access time of, as the MDS answered them with the change (with a file's layout
    /// and count of writers), good while the attribute lock granted with them is held.
    changed_attrs: std::sync::Mutex<UnderLock<ChangedAttr>>,
    /// Files known to have no `security.capability` extended attribute (the kernel asks
    /// before every write, to drop set-user-ID bits and capabilities): files this client
    /// created, and files the MDS said so of, while the attribute lock (XATTR bit) held
    /// before the question is still held.
    no_capability: std::sync::Mutex<UnderLock<()>>,
    /// Files this client created, while the attribute lock granted with the create is
    /// held: nobody else has opened them for writing or changed their size since
    /// ([`Client::objects_only_ours`]).
    created_here: std::sync::Mutex<UnderLock<()>>,
    /// Every name of directories this client made or changed ([`DirNames`]), good while
    /// the attribute lock they came with is held.
    dir_names: std::sync::Mutex<UnderLock<DirNames>>,
    /// Names looked up ahead of a sequence of lookups ([`Statahead`]).
    statahead: std::sync::Mutex<Statahead>,
    /// Opens for writing of files over all clients, as the MDS counted them under an
    /// attribute lock still held (an open for writing elsewhere calls it back): whether this
    /// client is a file's only writer ([`Client::sole_writer`]).
    writers_known: std::sync::Mutex<UnderLock<u32>>,
    /// What this client changed of files' data, for what it read ahead ([`DataChanges`]).
    data_changes: DataChanges,
    root: Fid,
}

/// Counts this client's own changes to file data (writes, truncates, fallocate), per slot of
/// files (a fid's hash picks its slot). Data read ahead under a lock stays good while the
/// lock is held, but this client's own writes under a PW lock it holds call nothing back;
/// a reader compares its slot's count before the read and when it uses the data.
struct DataChanges {
    slots: Vec<AtomicU64>,
}

impl DataChanges {
    fn new() -> DataChanges {
        DataChanges {
            slots: (0..limits::DATA_CHANGE_SLOTS)
                .map(|_| AtomicU64::new(0))
                .collect(),
        }
    }

    fn slot(&self, fid: Fid) -> Option<&AtomicU64> {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        fid.hash(&mut h);
        let n = self.slots.len() as u64;
        self.slots.get((h.finish() % n.max(1)) as usize)
    }

    fn count(&self, fid: Fid) -> u64 {
        self.slot(fid).map_or(0, |s| s.load(Ordering::Acquire))
    }

    fn changed(&self, fid: Fid) {
        if let Some(s) = self.slot(fid) {
            s.fetch_add(1, Ordering::AcqRel);
        }
    }
}

/// What a getattr with locks answers: attributes, a regular file's layout, and its count of
/// opens for writing over all clients.
type ChangedAttr = (Attr, Option<Layout>, u32);

/// Facts about inodes learnt under an MDT lock, each good while that very lock is held
/// (nobody changed what the lock protects since). Bounded: when
/// [`limits::UNDER_LOCK_MAX`] are kept, they are all forgotten (a forgotten fact costs one
/// RPC to learn again).
struct UnderLock<V> {
    facts: HashMap<Fid, (V, LockHandle)>,
}

impl<V> Default for UnderLock<V> {
    fn default() -> Self {
        UnderLock {
            facts: HashMap::new(),
        }
    }
}

impl<V> UnderLock<V> {
    fn insert(&mut self, fid: Fid, fact: V, lock: LockHandle) {
        self.insert_bounded(fid, fact, lock, limits::UNDER_LOCK_MAX);
    }

    fn insert_bounded(&mut self, fid: Fid, fact: V, lock: LockHandle, max: usize) {
        if self.facts.len() >= max && !self.facts.contains_key(&fid) {
            self.facts.clear();
        }
        self.facts.insert(fid, (fact, lock));
    }

    /// The fact about `fid`, if the lock it was learnt under is still held; a fact whose
    /// lock is gone is forgotten.
    fn held(&mut self, fid: Fid, locks: &Locks) -> Option<&V> {
        let lock = self.facts.get(&fid)?.1;
        if !locks.all_held(MDT0_INDEX, &[lock]) {
            self.facts.remove(&fid);
            return None;
        }
        self.facts.get(&fid).map(|(fact, _)| fact)
    }
}

fn new_import(nids: &[Nid], config: ImportConfig) -> Result<Import, ClientError> {
    Ok(Import::with_nids(nids, config)?)
}

/// Every NID of a target that parses, in the registered order (the first is the one it
/// was started on; the others are its failover NIDs, tried in turn when one does not answer).
fn target_nids(target: &TargetInfo) -> Result<Vec<Nid>, ClientError> {
    let nids: Vec<Nid> = target
        .nids
        .iter()
        .filter_map(|s| Nid::parse(s).ok())
        .collect();
    if nids.is_empty() {
        return Err(ClientError::BadConfig(format!(
            "target {} has no usable NID (got {:?})",
            target.name, target.nids
        )));
    }
    Ok(nids)
}

/// The grant of an attribute lock (`ATTR_BITS`) among `locks`.
fn attr_grant(locks: &[sheen_wire::EnqueueReply]) -> Option<&sheen_wire::EnqueueReply> {
    locks.iter().find(
        |g| matches!(g.desc.policy, sheen_wire::LockPolicy::Ibits { bits } if bits == ATTR_BITS),
    )
}

/// Locks `m`; a panic while it was held left plain data behind, which stays usable.
fn lock_ignoring_poison<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// `drops` less the invalidation of the dentry `name` in `parent`.
fn without_entry(drops: Vec<Invalidation>, parent: Fid, name: &[u8]) -> Vec<Invalidation> {
    drops
        .into_iter()
        .filter_map(|d| match d {
            Invalidation::Entries(mut names) => {
                names.retain(|(p, n)| !(*p == parent && n == name));
                (!names.is_empty()).then_some(Invalidation::Entries(names))
            }
            other => Some(other),
        })
        .collect()
}

/// The directory whose names a change adds to or removes from, and how; `None` for changes
/// whose reply does not carry the directory's versions (a link or rename cancels the
/// directory's lock, and with it what this client knew of its names).
fn name_change(req: &ReintReq) -> Option<(Fid, NameChange<'_>)> {
    match req {
        ReintReq::Create { parent, name, .. } => Some((*parent, NameChange::Add(name))),
        ReintReq::Unlink { parent, name } | ReintReq::Rmdir { parent, name } => {
            Some((*parent, NameChange::Remove(name)))
        }
        _ => None,
    }
}

fn check_name(name: &[u8]) -> Result<(), ClientError> {
    if name.len() > NAME_MAX_BYTES {
        return Err(ClientError::NameTooLong {
            len: name.len(),
            max: NAME_MAX_BYTES,
        });
    }
    if name.is_empty() || name.contains(&b'/') || name.contains(&0) {
        return Err(ClientError::Invalid(format!(
            "bad file name {:?}",
            String::from_utf8_lossy(name)
        )));
    }
    Ok(())
}

fn check_xattr_name(name: &[u8]) -> Result<(), ClientError> {
    if name.len() > limits::XATTR_NAME_MAX_BYTES {
        return Err(ClientError::NameTooLong {
            len: name.len(),
            max: limits::XATTR_NAME_MAX_BYTES,
        });
    }
    if name.is_empty() || name.contains(&0) {
        return Err(ClientError::Invalid(
            "empty or NUL-holding xattr name".into(),
        ));
    }
    Ok(())
}

/// The stripe layout and geometry of a plain layout; composite ones are not supported yet.
fn plain_geometry(layout: &Layout) -> Result<(&StripeLayout, Geometry), ClientError> {
    let stripe = layout.as_plain().ok_or(ClientError::CompositeLayout)?;
    let geom = Geometry::of(stripe)?;
    Ok((stripe, geom))
}

fn stripe_object(stripe: &StripeLayout, stripe_idx: u32) -> Result<OstObject, ClientError> {
    stripe
        .objects
        .get(stripe_idx as usize)
        .copied()
        .ok_or_else(|| {
            ClientError::protocol("layout", format!("no object for stripe {stripe_idx}"))
        })
}

/// Waits for all results and returns them, or the first error.
fn all_ok<T>(results: Vec<Result<T, ClientError>>) -> Result<Vec<T>, ClientError> {
    results.into_iter().collect()
}

impl Client {
    /// Mounts: reads the filesystem configuration from the first MGS that answers, sets up
    /// the imports of every MDT and OST (connections are made on first use), and checks the
    /// MDS answers with the root directory.
    #[instrument(level = "info", skip_all, fields(spec = %spec))]
    pub async fn mount(spec: &MountSpec, config: ClientConfig) -> Result<Client, ClientError> {
        config.validate()?;
        let (mgs, fs_config) = fetch_config(spec, &config).await?;
        if fs_config.fsname != spec.fsname {
            return Err(ClientError::BadConfig(format!(
                "MGS answered for filesystem {:?}, not {:?}",
                fs_config.fsname, spec.fsname
            )));
        }
        let mut mdts = BTreeMap::new();
        let mut osts = BTreeMap::new();
        // Keyed by the OSS's NIDs: the OSTs it serves register the same list.
        let mut oss_by_nid: HashMap<Vec<Nid>, (Import, Arc<ServerCallbacks>, Vec<u32>)> =
            HashMap::new();
        let locks = Locks::new();
        let opens = Arc::new(OpenFiles::default());
        for target in &fs_config.targets {
            let duplicate = match target.kind {
                TargetKind::Mgs => continue,
                TargetKind::Mdt => {
                    let nids = target_nids(target)?;
                    let callbacks = ServerCallbacks::new(&locks);
                    let _ = callbacks.targets.set(vec![Target::Mdt(target.index)]);
                    let mut icfg = config.import_config(Opcode::MdsConnect, &target.name);
                    icfg.callbacks = Some(Callbacks(callbacks.clone()));
                    let import = new_import(&nids, icfg)?;
                    let _ = callbacks.reopen.set(Arc::new(Reopen {
                        opens: Arc::clone(&opens),
                        import: import.clone(),
                        mdt: target.index,
                    }));
                    mdts.insert(
                        target.index,
                        Mdt {
                            info: target.clone(),
                            import,
                        },
                    )
                    .is_some()
                }
                TargetKind::Ost => {
                    let nids = target_nids(target)?;
                    let import = match oss_by_nid.get_mut(&nids) {
                        Some((i, _, osts)) => {
                            osts.push(target.index);
                            i.clone()
                        }
                        None => {
                            let callbacks = ServerCallbacks::new(&locks);
                            let mut icfg = config.import_config(Opcode::OstConnect, "");
                            icfg.callbacks = Some(Callbacks(callbacks.clone()));
                            let i = new_import(&nids, icfg)?;
                            oss_by_nid.insert(nids, (i.clone(), callbacks, vec![target.index]));
                            i
                        }
                    };
                    let ost = Ost {
                        info: target.clone(),
                        import,
                        in_flight: Semaphore::new(config.max_rpcs_in_flight_per_ost),
                    };
                    osts.insert(target.index, ost).is_some()
                }
            };
            if duplicate {
                return Err(ClientError::BadConfig(format!(
                    "target {} listed twice",
                    target.name
                )));
            }
        }
        let mdt0 = mdts
            .get(&MDT0_INDEX)
            .ok_or_else(|| ClientError::NoTarget(TargetKind::Mdt.target_name(&spec.fsname, 0)))?;
        let root: AttrReply = mdt0
            .import
            .call(Opcode::MdsGetRoot, MDT0_INDEX, &Empty {})
            .await?;
        info!(
            fsname = %fs_config.fsname,
            mdts = mdts.len(),
            osts = osts.len(),
            root = %root.attr.fid,
            "mounted"
        );
        let mut oss_imports = Vec::new();
        for (import, callbacks, ost_list) in oss_by_nid.into_values() {
            let _ = callbacks
                .targets
                .set(ost_list.into_iter().map(Target::Ost).collect());
            oss_imports.push(import);
        }
        let lock_imports = osts
            .iter()
            .map(|(idx, ost)| (Target::Ost(*idx), ost.import.clone()))
            .chain(
                mdts.iter()
                    .map(|(idx, mdt)| (Target::Mdt(*idx), mdt.import.clone())),
            )
            .collect();
        locks.set_imports(lock_imports);
        Ok(Client {
            inner: Arc::new(Inner {
                config,
                oss_imports,
                locks,
                opens,
                changed_attrs: Default::default(),
                no_capability: Default::default(),
                created_here: Default::default(),
                dir_names: Default::default(),
                statahead: Default::default(),
                writers_known: Default::default(),
                data_changes: DataChanges::new(),
                fs_config,
                mgs,
                mdts,
                osts,
                root: root.attr.fid,
            }),
        })
    }

    /// The filesystem configuration read at mount.
    pub fn fs_config(&self) -> &FsConfig {
        &self.inner.fs_config
    }

    /// The configuration this client was mounted with.
    pub fn config(&self) -> &ClientConfig {
        &self.inner.config
    }

    /// The root directory's FID.
    pub fn root_fid(&self) -> Fid {
        self.inner.root
    }

    async fn mds<Req: WireEncode, Rep: WireDecode>(
        &self,
        opcode: Opcode,
        req: &Req,
    ) -> Result<Rep, ClientError> {
        let mdt = self
            .inner
            .mdts
            .get(&MDT0_INDEX)
            .ok_or_else(|| ClientError::NoTarget("MDT0000".into()))?;
        Ok(mdt.import.call(opcode, MDT0_INDEX, req).await?)
    }

    async fn reint(&self, req: &ReintReq) -> Result<ReintReply, ClientError> {
        // The names of the directory the change adds a name to or removes one from, taken
        // out before the change cancels their lock; they come back with the reply if the
        // directory was still at their version.
        let change = name_change(req);
        let known = change.and_then(|(dir, _)| self.take_dir_names(dir));
        let (cancels, drops) = self.early_cancel(req);
        let reply = if cancels.is_empty() {
            self.mds(Opcode::MdsReint, req).await
        } else {
            let rc = ReintCancelReq {
                cancels,
                reint: req.clone(),
            };
            self.mds(Opcode::MdsReintCancel, &rc).await
        };
        let drops = match (&reply, req) {
            // A kernel whose unlink or rmdir succeeded deletes that dentry itself.
            (Ok(_), ReintReq::Unlink { parent, name } | ReintReq::Rmdir { parent, name }) => {
                without_entry(drops, *parent, name)
            }
            _ => drops,
        };
        self.inner.locks.drop_later(drops);
        let reply: ReintReply = reply?;
        if let (Some(dir), [grant]) = (&reply.parent_attr, reply.parent_locks.as_slice()) {
            self.inner
                .locks
                .add_inode_locks(MDT0_INDEX, dir.fid, None, &reply.parent_locks);
            self.changed_attrs()
                .insert(dir.fid, (dir.clone(), None, 0), grant.handle);
            if let (Some(names), Some((changed, how)), Some(moved)) =
                (known, change, reply.parent_version)
            {
                if changed == dir.fid {
                    if let Some(names) = names.after(how, moved) {
                        self.keep_dir_names(dir.fid, names, grant.handle);
                    }
                }
            }
        }
        Ok(reply)
    }

    fn dir_names(&self) -> std::sync::MutexGuard<'_, UnderLock<DirNames>> {
        lock_ignoring_poison(&self.inner.dir_names)
    }

    /// Keeps the names of `dir`, known under `lock`; forgets every directory's first when
    /// there would be more than [`limits::DIR_NAMES_DIRS_MAX`] of them or they would take
    /// more than [`limits::DIR_NAMES_BYTES_MAX`].
    fn keep_dir_names(&self, dir: Fid, names: DirNames, lock: LockHandle) {
        let mut known = self.dir_names();
        let others: usize = known
            .facts
            .iter()
            .filter(|(fid, _)| **fid != dir)
            .map(|(_, (n, _))| n.bytes())
            .sum();
        if others + names.bytes() > limits::DIR_NAMES_BYTES_MAX {
            known.facts.clear();
        }
        known.insert_bounded(dir, names, lock, limits::DIR_NAMES_DIRS_MAX);
    }

    /// Takes the names of `dir` out, if known under a lock still held.
    fn take_dir_names(&self, dir: Fid) -> Option<DirNames> {
        let (names, lock) = self.dir_names().facts.remove(&dir)?;
        self.inner
            .locks
            .all_held(MDT0_INDEX, &[lock])
            .then_some(names)
    }

    /// Whether directory `parent` is known to have no entry `name`: this client knows all
    /// its names, under its attribute lock still held (another client's change in it would
    /// have called the lock back first).
    pub fn known_absent(&self, parent: Fid, name: &[u8]) -> bool {
        let mut known = self.dir_names();
        known
            .held(parent, &self.inner.locks)
            .is_some_and(|names| !names.has(name))
    }

    fn changed_attrs(&self) -> std::sync::MutexGuard<'_, UnderLock<ChangedAttr>> {
        lock_ignoring_poison(&self.inner.changed_attrs)
    }

    fn writers_known(&self) -> std::sync::MutexGuard<'_, UnderLock<u32>> {
        lock_ignoring_poison(&self.inner.writers_known)
    }

    /// Whether this client is the only one with `fid` open for writing, as the MDS said under
    /// an attribute lock still held; `false` when not known. A mount answers writes before
    /// they reach the OSTs only then: another writer would not see them in its glimpses (it
    /// holds a lock of its own on the objects and asks the OSTs instead).
    pub fn sole_writer(&self, fid: Fid) -> bool {
        self.known_sole_writer(fid) == Some(true)
    }

    /// [`Client::sole_writer`], asking the MDS (a getattr with the attribute lock) when it is
    /// not known: after this client's own open for writing, which calls its attribute lock
    /// back, or once another client's did.
    pub async fn learn_sole_writer(&self, fid: Fid) -> Result<bool, ClientError> {
        if let Some(sole) = self.known_sole_writer(fid) {
            return Ok(sole);
        }
        self.getattr_locked(fid, None).await?;
        Ok(self.sole_writer(fid))
    }

    /// Whether this client is `fid`'s only writer, when the MDS's count of writers is known
    /// under an attribute lock still held (a count whose lock is gone is forgotten).
    fn known_sole_writer(&self, fid: Fid) -> Option<bool> {
        let writers = *self.writers_known().held(fid, &self.inner.locks)?;
        Some(writers <= self.inner.opens.writes(fid))
    }

    fn no_capability(&self) -> std::sync::MutexGuard<'_, UnderLock<()>> {
        lock_ignoring_poison(&self.inner.no_capability)
    }

    /// Whether `fid` is known to have no `security.capability` xattr: what made it known
    /// (a create, or the MDS's answer) happened under an attribute lock still held.
    fn known_without_capability(&self, fid: Fid) -> bool {
        self.no_capability().held(fid, &self.inner.locks).is_some()
    }

    /// The attributes of `fid` as this client's last change of it (or of its entries) left
    /// them, when the attribute lock they were granted with is still held (nobody changed it
    /// since); they are then handed out once, as the kernel asks once after a change.
    fn changed_attr(&self, fid: Fid) -> Option<ChangedAttr> {
        let (attr, lock) = self.changed_attrs().facts.remove(&fid)?;
        self.inner
            .locks
            .all_held(MDT0_INDEX, &[lock])
            .then_some(attr)
    }

    fn ost(&self, ost_idx: u32) -> Result<&Ost, ClientError> {
        self.inner.osts.get(&ost_idx).ok_or_else(|| {
            ClientError::NoTarget(
                TargetKind::Ost.target_name(&self.inner.fs_config.fsname, ost_idx),
            )
        })
    }

    /// One OST RPC, counted against that OST's cap on RPCs in flight.
    async fn ost_call<Req: WireEncode, Rep: WireDecode>(
        &self,
        ost_idx: u32,
        opcode: Opcode,
        req: &Req,
        bulk: Bytes,
    ) -> Result<(Rep, Bytes), ClientError> {
        let ost = self.ost(ost_idx)?;
        let _permit = ost
            .in_flight
            .acquire()
            .await
            .map_err(|_| ClientError::Unmounted)?;
        Ok(ost.import.call_bulk(opcode, ost_idx, req, bulk).await?)
    }

    /// The root directory's attributes.
    pub async fn root(&self) -> Result<Attr, ClientError> {
        let reply: AttrReply = self.mds(Opcode::MdsGetRoot, &Empty {}).await?;
        Ok(reply.attr)
    }

    /// Tells the MDS this client opened `fid` (open(2) `flags`) and returns its current
    /// attributes and layout. While any client holds it open, a file that loses its last
    /// name stays readable and writable; every `open` must be paired with a [`Client::close`].
    #[instrument(level = "debug", skip_all, fields(%fid))]
    pub async fn open(&self, fid: Fid, flags: u32) -> Result<(Attr, Option<Layout>), ClientError> {
        let reply: AttrReply = self.mds(Opcode::MdsOpen, &OpenReq { fid, flags }).await?;
        self.inner.opens.opened(fid, crate::opens::writes(flags));
        Ok((reply.attr, reply.layout))
    }

    /// An fcntl or flock lock operation on the MDS (MDS_FLOCK). A waiting one
    /// (`FlockOp::SetLkWait`) returns once the lock is granted, or with EDEADLK: the MDS
    /// answers EINPROGRESS after a bounded wait and the request is sent again.
    #[instrument(level = "debug", skip_all, fields(fid = %req.fid, op = ?req.op))]
    pub async fn file_lock(&self, req: FlockReq) -> Result<FlockReply, ClientError> {
        loop {
            match self.mds(Opcode::MdsFlock, &req).await {
                Err(ClientError::Rpc(RpcError::Remote { errno, .. }))
                    if errno == Errno::EINPROGRESS && req.op == FlockOp::SetLkWait =>
                {
                    debug!("file lock still waited for; asking again");
                }
                other => return other,
            }
        }
    }

    /// Ends one [`Client::open`] of `fid`; the last close of an unlinked file frees it.
    #[instrument(level = "debug", skip_all, fields(%fid))]
    pub async fn close(&self, fid: Fid) -> Result<(), ClientError> {
        let closing = self.inner.opens.closing(fid);
        let closed = self
            .mds::<_, Empty>(Opcode::MdsClose, &CloseReq { fid })
            .await;
        if let Some(write) = closing {
            self.inner.opens.close_done(fid, write);
        }
        closed?;
        Ok(())
    }

    #[instrument(level = "debug", skip_all, fields(%fid))]
    pub async fn getattr(&self, fid: Fid) -> Result<(Attr, Option<Layout>), ClientError> {
        let reply: AttrReply = self
            .mds(
                Opcode::MdsGetattr,
                &GetattrReq {
                    fid,
                    want_symlink: false,
                },
            )
            .await?;
        Ok((reply.attr, reply.layout))
    }

    #[instrument(level = "debug", skip_all, fields(%parent, name = %String::from_utf8_lossy(name)))]
    pub async fn lookup(
        &self,
        parent: Fid,
        name: &[u8],
    ) -> Result<(Attr, Option<Layout>), ClientError> {
        check_name(name)?;
        if self.known_absent(parent, name) {
            return Err(ClientError::NoEntry);
        }
        let req = LookupReq {
            parent,
            name: name.to_vec(),
        };
        let reply: AttrReply = self.mds(Opcode::MdsGetattrName, &req).await?;
        Ok((reply.attr, reply.layout))
    }

    #[instrument(level = "debug", skip_all, fields(%fid))]
    pub async fn readlink(&self, fid: Fid) -> Result<Vec<u8>, ClientError> {
        let reply: AttrReply = self
            .mds(
                Opcode::MdsGetattr,
                &GetattrReq {
                    fid,
                    want_symlink: true,
                },
            )
            .await?;
        match reply.symlink {
            Some(target) => Ok(target),
            None if !reply.attr.is_symlink() => Err(ClientError::NotSymlink),
            None => Err(ClientError::protocol(
                "mds_getattr",
                "symlink without a target",
            )),
        }
    }

    #[allow(clippy::too_many_arguments)] // One argument per field of the REINT_CREATE body.
    async fn create_inode(
        &self,
        parent: Fid,
        name: &[u8],
        mode: u32,
        rdev: u32,
        creds: Creds,
        symlink: Option<Vec<u8>>,
        layout: Option<Layout>,
    ) -> Result<(Attr, ReintReply), ClientError> {
        let req = ReintReq::Create {
            parent,
            name: name.to_vec(),
            mode,
            rdev,
            creds,
            symlink,
            layout,
            open: false,
        };
        self.create_with(name, req).await
    }

    /// Sends a REINT_CREATE; returns the new inode's attributes and the rest of the reply.
    async fn create_with(
        &self,
        name: &[u8],
        req: ReintReq,
    ) -> Result<(Attr, ReintReply), ClientError> {
        check_name(name)?;
        let mut reply = self.reint(&req).await?;
        let attr = reply
            .attr
            .take()
            .ok_or_else(|| ClientError::protocol("mds_reint", "create without attr"))?;
        Ok((attr, reply))
    }

    /// Creates a regular file; the MDS allocates its objects. `layout` is a template asking
    /// for stripe settings (`None`: the directory's or the filesystem's default).
    #[instrument(level = "debug", skip_all, fields(%parent, name = %String::from_utf8_lossy(name)))]
    pub async fn create(
        &self,
        parent: Fid,
        name: &[u8],
        mode: u32,
        creds: Creds,
        layout: Option<Layout>,
    ) -> Result<(Attr, Option<Layout>), ClientError> {
        let mode = (mode & 0o7777) | libc::S_IFREG;
        let (attr, reply) = self
            .create_inode(parent, name, mode, 0, creds, None, layout)
            .await?;
        Ok((attr, reply.layout))
    }

    /// Creates a regular file and opens it in one request (open(2) with O_CREAT): like
    /// [`Client::create`] followed by [`Client::open`]; pair it with [`Client::close`].
    #[instrument(level = "debug", skip_all, fields(%parent, name = %String::from_utf8_lossy(name)))]
    pub async fn create_open(
        &self,
        parent: Fid,
        name: &[u8],
        mode: u32,
        creds: Creds,
        layout: Option<Layout>,
    ) -> Result<Created, ClientError> {
        let req = ReintReq::Create {
            parent,
            name: name.to_vec(),
            mode: (mode & 0o7777) | libc::S_IFREG,
            rdev: 0,
            creds,
            symlink: None,
            layout,
            open: true,
        };
        let (attr, reply) = self.create_with(name, req).await?;
        // The MDS counts an open with create as one that may write.
        self.inner.opens.opened(attr.fid, true);
        // The new file's locks, granted with the create (an open intent).
        self.inner
            .locks
            .add_inode_locks(MDT0_INDEX, attr.fid, Some((parent, name)), &reply.locks);
        // A new file has no security xattrs, for as long as its attribute lock is held.
        if let Some(grant) = attr_grant(&reply.locks) {
            self.no_capability().insert(attr.fid, (), grant.handle);
            lock_ignoring_poison(&self.inner.created_here).insert(attr.fid, (), grant.handle);
            self.writers_known()
                .insert(attr.fid, reply.writers, grant.handle);
        }
        Ok(Created {
            attr,
            layout: reply.layout,
            writers: reply.writers,
        })
    }

    /// Whether the objects of `fid` hold nothing but what this client wrote: it created the
    /// file, still holds the attribute lock granted with the create (another client's open
    /// for writing, and any setattr, this client's own truncates included, call it back or
    /// cancel it), and is the file's only writer. Its writes then say the file's size and
    /// mtime, and the objects need not be asked.
    pub fn objects_only_ours(&self, fid: Fid) -> bool {
        let created = lock_ignoring_poison(&self.inner.created_here)
            .held(fid, &self.inner.locks)
            .is_some();
        created && self.sole_writer(fid)
    }

    /// Whether the name and attributes of a file this client has just created and opened
    /// (`created`) may be cached: its LOOKUP and attribute locks are held and not called
    /// back, and the only opens for writing are this client's. Another client's open for
    /// writing calls the attribute lock back first, and this client's own writes go through
    /// the kernel, which updates the size it caches itself.
    pub fn created_cacheable(&self, created: &Created) -> bool {
        let fid = created.attr.fid;
        self.inner
            .locks
            .holds_inode(MDT0_INDEX, fid, sheen_wire::ibits::LOOKUP)
            && self.inner.locks.holds_inode(MDT0_INDEX, fid, ATTR_BITS)
            && created.writers <= self.inner.opens.writes(fid)
    }

    #[instrument(level = "debug", skip_all, fields(%parent, name = %String::from_utf8_lossy(name)))]
    pub async fn mkdir(
        &self,
        parent: Fid,
        name: &[u8],
        mode: u32,
        creds: Creds,
    ) -> Result<Attr, ClientError> {
        let mode = (mode & 0o7777) | libc::S_IFDIR;
        let (attr, reply) = self
            .create_inode(parent, name, mode, 0, creds, None, None)
            .await?;
        // The new directory's attribute lock, granted with its version: it is empty then.
        if let Some(version) = reply.dir_version {
            let locks = &self.inner.locks;
            locks.add_inode_locks(MDT0_INDEX, attr.fid, None, &reply.locks);
            if let Some(grant) = attr_grant(&reply.locks) {
                self.keep_dir_names(attr.fid, DirNames::empty(version), grant.handle);
            }
        }
        Ok(attr)
    }

    /// Creates a device node, FIFO or socket (`mode` carries the type; none means a regular
    /// file).
    #[instrument(level = "debug", skip_all, fields(%parent, name = %String::from_utf8_lossy(name)))]
    pub async fn mknod(
        &self,
        parent: Fid,
        name: &[u8],
        mode: u32,
        rdev: u32,
        creds: Creds,
    ) -> Result<Attr, ClientError> {
        let file_type = match mode & libc::S_IFMT {
            0 => libc::S_IFREG,
            t
            @ (libc::S_IFREG | libc::S_IFCHR | libc::S_IFBLK | libc::S_IFIFO | libc::S_IFSOCK) => t,
            t => return Err(ClientError::Invalid(format!("mknod of file type {t:#o}"))),
        };
        let mode = (mode & 0o7777) | file_type;
        Ok(self
            .create_inode(parent, name, mode, rdev, creds, None, None)
            .await?
            .0)
    }

    #[instrument(level = "debug", skip_all, fields(%parent, name = %String::from_utf8_lossy(name)))]
    pub async fn symlink(
        &self,
        parent: Fid,
        name: &[u8],
        target: &[u8],
        creds: Creds,
    ) -> Result<Attr, ClientError> {
        if target.is_empty() || target.len() >= PATH_MAX_BYTES {
            return Err(ClientError::TooLarge {
                what: "symlink target",
                len: target.len() as u64,
                max: PATH_MAX_BYTES as u64 - 1,
            });
        }
        let mode = 0o777 | libc::S_IFLNK;
        let symlink = Some(target.to_vec());
        Ok(self
            .create_inode(parent, name, mode, 0, creds, symlink, None)
            .await?
            .0)
    }

    #[instrument(level = "debug", skip_all, fields(%fid, %parent))]
    pub async fn link(&self, fid: Fid, parent: Fid, name: &[u8]) -> Result<Attr, ClientError> {
        check_name(name)?;
        let reply = self
            .reint(&ReintReq::Link {
                fid,
                parent,
                name: name.to_vec(),
            })
            .await?;
        match reply.attr {
            Some(attr) => Ok(attr),
            None => Ok(self.getattr(fid).await?.0),
        }
    }

    #[instrument(level = "debug", skip_all, fields(%parent, name = %String::from_utf8_lossy(name)))]
    pub async fn unlink(&self, parent: Fid, name: &[u8]) -> Result<(), ClientError> {
        check_name(name)?;
        self.reint(&ReintReq::Unlink {
            parent,
            name: name.to_vec(),
        })
        .await?;
        Ok(())
    }

    #[instrument(level = "debug", skip_all, fields(%parent, name = %String::from_utf8_lossy(name)))]
    pub async fn rmdir(&self, parent: Fid, name: &[u8]) -> Result<(), ClientError> {
        check_name(name)?;
        self.reint(&ReintReq::Rmdir {
            parent,
            name: name.to_vec(),
        })
        .await?;
        Ok(())
    }

    /// Renames; `flags` are `renameat2`'s RENAME_NOREPLACE (1) and RENAME_EXCHANGE (2).
    #[instrument(level = "debug", skip_all, fields(%src_parent, %dst_parent, flags))]
    pub async fn rename(
        &self,
        src_parent: Fid,
        src_name: &[u8],
        dst_parent: Fid,
        dst_name: &[u8],
        flags: u32,
    ) -> Result<(), ClientError> {
        check_name(src_name)?;
        check_name(dst_name)?;
        const KNOWN: u32 = 1 | 2;
        if flags & !KNOWN != 0 || flags == KNOWN {
            return Err(ClientError::Invalid(format!("rename flags {flags:#x}")));
        }
        let req = ReintReq::Rename {
            src_parent,
            src_name: src_name.to_vec(),
            dst_parent,
            dst_name: dst_name.to_vec(),
            flags,
        };
        self.reint(&req).await?;
        Ok(())
    }

    /// Changes attributes. A size change of a regular file first punches every stripe
    /// object to its share of the new size, then records the size on the MDS (which keeps
    /// the file size).
    #[instrument(level = "debug", skip_all, fields(%fid, size = ?attr.size))]
    pub async fn setattr(&self, fid: Fid, attr: SetAttr) -> Result<Attr, ClientError> {
        let explicit_mtime = match attr.mtime {
            Some(sheen_wire::msg::TimeSet::At(t)) => Some(t),
            _ => None,
        };
        if attr.size.is_some() || explicit_mtime.is_some() {
            let (current, layout) = self.getattr(fid).await?;
            if let (true, Some(layout)) = (current.is_reg(), layout) {
                if let Some(size) = attr.size {
                    self.punch(fid, &layout, size).await?;
                }
                if let Some(mtime) = explicit_mtime {
                    // Writers' mtimes live on the objects until the last close: an explicit
                    // mtime goes there too, or a glimpse would show a newer one.
                    self.set_objects_mtime(&layout, mtime).await?;
                }
            }
        }
        self.setattr_mds(fid, attr).await
    }

    async fn set_objects_mtime(&self, layout: &Layout, mtime: Timespec) -> Result<(), ClientError> {
        let sets = layout
            .components
            .iter()
            .flat_map(|c| c.stripe.objects.iter())
            .map(|obj| async move {
                let req = OstSetattrReq {
                    oid: obj.oid,
                    mtime: Some(mtime),
                };
                match self
                    .ost_call::<_, Empty>(obj.ost_idx, Opcode::OstSetattr, &req, Bytes::new())
                    .await
                {
                    // A precreated object nobody wrote may not exist yet.
                    Err(e) if e.errno() == sheen_wire::Errno::ENOENT => Ok(()),
                    other => other.map(|_| ()),
                }
            });
        all_ok(join_all(sets).await)?;
        Ok(())
    }

    /// Records attributes on the MDS only, leaving the objects alone: how a writer reports
    /// the size it wrote and the new mtime (Lustre's size-on-MDS update at close).
    #[instrument(level = "debug", skip_all, fields(%fid, size = ?attr.size))]
    pub async fn setattr_mds(&self, fid: Fid, attr: SetAttr) -> Result<Attr, ClientError> {
        let reply = self.reint(&ReintReq::Setattr { fid, attr }).await?;
        // An access-time update is answered with the attribute lock back, and what the
        // kernel is about to ask for again read under it.
        if let (Some(grant), Some(attr)) = (attr_grant(&reply.locks), &reply.attr) {
            if attr.fid == fid {
                self.inner
                    .locks
                    .add_inode_locks(MDT0_INDEX, fid, None, &reply.locks);
                if attr.is_reg() {
                    self.writers_known()
                        .insert(fid, reply.writers, grant.handle);
                }
                let changed = (attr.clone(), reply.layout.clone(), reply.writers);
                self.changed_attrs().insert(fid, changed, grant.handle);
            }
        }
        match reply.attr {
            Some(a) => Ok(a),
            None => Ok(self.getattr(fid).await?.0),
        }
    }

    /// Punches every object of a file to what it holds of a file of `size` bytes, under a
    /// PW lock from there to the end of each object (so other clients drop what they cache
    /// of the part that goes away first).
    async fn punch(&self, fid: Fid, layout: &Layout, size: u64) -> Result<(), ClientError> {
        let stripe = layout.as_plain().ok_or(ClientError::CompositeLayout)?;
        if stripe.objects.is_empty() {
            return Ok(()); // Not instantiated: nothing stored yet.
        }
        let geom = Geometry::of(stripe)?;
        let extents: Vec<(u32, u64, u64)> = (0..stripe.objects.len() as u32)
            .map(|i| {
                let from = geom.object_size(i, size);
                (i, from, (LOCK_EXTENT_EOF - from).saturating_add(1))
            })
            .collect();
        let held = self
            .lock_objects(fid, stripe, LockMode::Pw, &extents)
            .await?;
        let result = self.punch_objects(stripe, &geom, size).await;
        self.unlock_changed(fid, held);
        result
    }

    async fn punch_objects(
        &self,
        stripe: &StripeLayout,
        geom: &Geometry,
        size: u64,
    ) -> Result<(), ClientError> {
        let punches = stripe.objects.iter().enumerate().map(|(i, obj)| {
            let req = OstPunchReq {
                oid: obj.oid,
                size: geom.object_size(i as u32, size),
            };
            async move {
                let (_, _): (Empty, Bytes) = self
                    .ost_call(obj.ost_idx, Opcode::OstPunch, &req, Bytes::new())
                    .await?;
                Ok(())
            }
        });
        all_ok(join_all(punches).await)?;
        Ok(())
    }

    /// Lists a directory from `cookie` (0 = the start): at most `max` entries, without "."
    /// and "..", and whether the listing is complete.
    #[instrument(level = "debug", skip_all, fields(%dir, cookie))]
    pub async fn readdir(
        &self,
        dir: Fid,
        cookie: u64,
        max: u32,
    ) -> Result<(Vec<DirEntry>, bool), ClientError> {
        let max_entries = max.clamp(1, READDIR_MAX_ENTRIES);
        let reply: ReaddirReply = self
            .mds(
                Opcode::MdsReadpage,
                &ReaddirReq {
                    fid: dir,
                    cookie,
                    max_entries,
                },
            )
            .await?;
        Ok((reply.entries, reply.eof))
    }

    /// How many entries of a listing this client may take MDT locks for now
    /// ([`Client::readdir_plus`]): two locks each (a LOOKUP and an attribute lock), within the
    /// room left in its LRU of MDT locks, so that listing a large directory never pushes out
    /// the locks it caches under (the entries beyond come without locks).
    pub fn listing_lock_room(&self) -> u32 {
        let room = self.inner.locks.room(MDT0_INDEX) / LISTED_LOCK_BITS.len();
        u32::try_from(room)
            .unwrap_or(u32::MAX)
            .min(READDIRPLUS_LOCKED_ENTRIES_MAX)
    }

    /// [`Client::readdir`] with each entry's attributes (and a regular file's layout), read
    /// together with the names, and the LOOKUP and attribute locks [`Client::getattr_locked`]
    /// takes for at most `lock_entries` entries (bounded by [`Client::listing_lock_room`]):
    /// those the MDT can grant without waiting. See [`Client::listed_cacheable`].
    #[instrument(level = "debug", skip_all, fields(%dir, cookie))]
    pub async fn readdir_plus(
        &self,
        dir: Fid,
        cookie: u64,
        max: u32,
        lock_entries: u32,
    ) -> Result<(Vec<ReaddirPlusEntry>, bool), ClientError> {
        let max_entries = max.clamp(1, READDIR_MAX_ENTRIES);
        let req = ReaddirPlusReq {
            fid: dir,
            cookie,
            max_entries,
            mode: LockMode::Pr,
            bits: LISTED_LOCK_BITS.to_vec(),
            lock_entries: lock_entries.min(self.listing_lock_room()),
        };
        let reply: ReaddirPlusReply = self.mds(Opcode::MdsReaddirPlus, &req).await?;
        let locks = &self.inner.locks;
        let entries = reply
            .entries
            .into_iter()
            .map(|e| {
                let held = locks.add_listed_locks(
                    MDT0_INDEX,
                    e.attr.fid,
                    (dir, &e.entry.name),
                    &e.locks,
                    e.locked,
                    &LISTED_LOCK_BITS,
                );
                ReaddirPlusEntry {
                    entry: e.entry,
                    attr: e.attr,
                    layout: e.layout,
                    writers: e.writers,
                    locks: held,
                }
            })
            .collect();
        Ok((entries, reply.eof))
    }

    /// Whether the kernel may cache a listed entry's name and attributes: the locks they were
    /// read under are still held and not called back (so nothing changed since), and, for a
    /// file with writers, the extent locks [`Client::attr_cacheable`] asks for are held.
    pub fn listed_cacheable(&self, e: &ReaddirPlusEntry) -> bool {
        self.listed_locks_held(e) && self.attr_cacheable(e.attr.fid, e.layout.as_ref(), e.writers)
    }

    /// Whether the locks a listed entry was read under are all still held and not called
    /// back, so that nothing it shows has changed on the MDS since (false for an entry read
    /// without locks).
    pub fn listed_locks_held(&self, e: &ReaddirPlusEntry) -> bool {
        !e.locks.is_empty() && self.inner.locks.all_held(MDT0_INDEX, &e.locks)
    }

    #[instrument(level = "debug", skip_all, fields(%fid, name = %String::from_utf8_lossy(name)))]
    pub async fn getxattr(&self, fid: Fid, name: &[u8]) -> Result<Vec<u8>, ClientError> {
        check_xattr_name(name)?;
        let capability = name == XATTR_CAPABILITY;
        if capability && self.known_without_capability(fid) {
            return Err(ClientError::NoXattr);
        }
        // Held before the question and still after the answer: nobody set it in between.
        // Without the attribute lock (an open for writing calls it back), one getattr takes
        // it first, so that the answer holds for every later write.
        let held = || {
            self.inner
                .locks
                .inode_lock_handle(MDT0_INDEX, fid, ATTR_BITS)
        };
        let mut lock = None;
        if capability {
            lock = held();
            if lock.is_none() && self.getattr_locked(fid, None).await.is_ok() {
                lock = held();
            }
        }
        let reply: Result<XattrReply, ClientError> = self
            .mds(
                Opcode::MdsGetxattr,
                &XattrReq::Get {
                    fid,
                    name: name.to_vec(),
                },
            )
            .await;
        match reply {
            Ok(reply) => Ok(reply.value),
            Err(e) => {
                if let (Errno::ENODATA, Some(lock)) = (e.errno(), lock) {
                    if self.inner.locks.all_held(MDT0_INDEX, &[lock]) {
                        self.no_capability().insert(fid, (), lock);
                    }
                }
                Err(e)
            }
        }
    }

    /// The names of a file's extended attributes, NUL-separated (as `listxattr(2)`).
    #[instrument(level = "debug", skip_all, fields(%fid))]
    pub async fn listxattr(&self, fid: Fid) -> Result<Vec<u8>, ClientError> {
        let reply: XattrReply = self
            .mds(Opcode::MdsGetxattr, &XattrReq::List { fid })
            .await?;
        Ok(reply.value)
    }

    /// Sets an extended attribute; `flags` are XATTR_CREATE (1) and XATTR_REPLACE (2).
    /// `lustre.lov` sets a layout (see the MDS).
    #[instrument(level = "debug", skip_all, fields(%fid, name = %String::from_utf8_lossy(name)))]
    pub async fn setxattr(
        &self,
        fid: Fid,
        name: &[u8],
        value: &[u8],
        flags: u32,
    ) -> Result<(), ClientError> {
        check_xattr_name(name)?;
        if value.len() > XATTR_VALUE_MAX_BYTES {
            return Err(ClientError::TooLarge {
                what: "xattr value",
                len: value.len() as u64,
                max: XATTR_VALUE_MAX_BYTES as u64,
            });
        }
        let req = ReintReq::Setxattr {
            fid,
            name: name.to_vec(),
            value: value.to_vec(),
            flags,
        };
        self.reint(&req).await?;
        Ok(())
    }

    #[instrument(level = "debug", skip_all, fields(%fid, name = %String::from_utf8_lossy(name)))]
    pub async fn removexattr(&self, fid: Fid, name: &[u8]) -> Result<(), ClientError> {
        check_xattr_name(name)?;
        self.reint(&ReintReq::Removexattr {
            fid,
            name: name.to_vec(),
        })
        .await?;
        Ok(())
    }

    /// Reads `[offset, offset + len)` of a file of `file_size` bytes (clamped to it, and to
    /// [`limits::MAX_IO_BYTES`]). Each object's part goes to its OST in parallel, in RPCs
    /// of at most `max_rpc_bytes`; what the objects do not hold inside the file size reads
    /// as zeros.
    #[instrument(level = "debug", skip_all, fields(%fid, offset, len))]
    pub async fn read(
        &self,
        fid: Fid,
        layout: &Layout,
        file_size: u64,
        offset: u64,
        len: u32,
    ) -> Result<Bytes, ClientError> {
        let read = self
            .read_under_locks(fid, layout, file_size, offset, len)
            .await?;
        Ok(read.data)
    }

    /// [`Client::read`], also saying what keeps the data good: the locks it was read under
    /// (given back, so cached or cancelled like any other) and this client's own count of
    /// changes to the file before it was read. The data is current while every lock is held
    /// and the count has not moved ([`Client::still_current`]).
    pub(crate) async fn read_under_locks(
        &self,
        fid: Fid,
        layout: &Layout,
        file_size: u64,
        offset: u64,
        len: u32,
    ) -> Result<ReadUnder, ClientError> {
        let changes = self.inner.data_changes.count(fid);
        let end = offset.saturating_add(u64::from(len)).min(file_size);
        if offset >= end {
            return Ok(ReadUnder {
                data: Bytes::new(),
                held: Vec::new(),
                changes,
            });
        }
        let len = (end - offset).min(limits::MAX_IO_BYTES);
        let (stripe, geom) = plain_geometry(layout)?;
        let rpcs = plan_read(
            &geom,
            offset,
            len,
            u64::from(self.inner.config.max_rpc_bytes),
        );
        let extents = rpcs
            .iter()
            .map(|r| (r.stripe_idx, r.obj_offset, r.len))
            .collect::<Vec<_>>();
        let held = self
            .lock_objects(fid, stripe, LockMode::Pr, &extents)
            .await?;
        let reads = rpcs.iter().map(|r| async move {
            let obj = stripe_object(stripe, r.stripe_idx)?;
            self.ost_read(obj, r.obj_offset, r.len).await
        });
        let data = join_all(reads).await;
        self.unlock(held.clone());
        Ok(ReadUnder {
            data: assemble_read(&geom, offset, len, &rpcs, all_ok(data)?),
            held,
            changes,
        })
    }

    /// Whether data [`Client::read_under_locks`] returned is still what the file holds.
    pub(crate) fn still_current(&self, fid: Fid, read: &ReadUnder) -> bool {
        self.inner.data_changes.count(fid) == read.changes
            && self.inner.locks.all_still_held(&read.held)
    }

    /// Takes a `mode` lock on the part of each object the extents `(stripe, object offset,
    /// length)` touch, all objects at once.
    async fn lock_objects(
        &self,
        fid: Fid,
        stripe: &StripeLayout,
        mode: LockMode,
        extents: &[(u32, u64, u64)],
    ) -> Result<Vec<Held>, ClientError> {
        let mut per_object: BTreeMap<u32, (u64, u64)> = BTreeMap::new();
        for &(stripe_idx, start, len) in extents {
            let last = start.saturating_add(len.max(1) - 1);
            let e = per_object.entry(stripe_idx).or_insert((start, last));
            e.0 = e.0.min(start);
            e.1 = e.1.max(last);
        }
        let locks = per_object
            .into_iter()
            .map(|(stripe_idx, (start, end))| async move {
                let obj = stripe_object(stripe, stripe_idx)?;
                self.inner
                    .locks
                    .lock_extent(fid, obj.ost_idx, obj.oid, mode, start, end)
                    .await
            });
        let results = join_all(locks).await;
        let mut held = Vec::new();
        let mut first_err = None;
        for r in results {
            match r {
                Ok(h) => held.push(h),
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        match first_err {
            Some(e) => {
                self.unlock(held);
                Err(e)
            }
            None => Ok(held),
        }
    }

    fn unlock(&self, held: Vec<Held>) {
        for h in held {
            self.inner.locks.release(h);
        }
    }

    /// Gives back the PW locks a change of `fid`'s data was made under, first counting the
    /// change (what this client read ahead of the file before it is stale now).
    fn unlock_changed(&self, fid: Fid, held: Vec<Held>) {
        self.inner.data_changes.changed(fid);
        self.unlock(held);
    }

    /// Installs what drops a mount's caches when a lock is called back.
    pub fn set_cache_invalidator(&self, inv: Arc<dyn CacheInvalidator>) {
        self.inner.locks.set_invalidator(inv);
    }

    /// Whether this client holds the locks under which the kernel may cache `fid`'s
    /// attributes: the attribute lock on the inode and, for a file with objects that has
    /// `writers` (opens for writing), a lock on the whole of every object (the size; with
    /// no writers the MDS's size stands, and a new writer's open calls the attribute lock
    /// back).
    pub fn attr_cacheable(&self, fid: Fid, layout: Option<&Layout>, writers: u32) -> bool {
        if !self.inner.locks.holds_inode(MDT0_INDEX, fid, ATTR_BITS) {
            return false;
        }
        if writers == 0 {
            return true;
        }
        let objects: Vec<(u32, u64)> = layout
            .iter()
            .flat_map(|l| l.components.iter())
            .flat_map(|c| c.stripe.objects.iter())
            .map(|o| (o.ost_idx, o.oid))
            .collect();
        self.inner.locks.covers_objects(&objects)
    }

    /// Whether this client holds the lock under which the kernel may cache the name of
    /// `fid` (its LOOKUP lock).
    pub fn entry_cacheable(&self, fid: Fid) -> bool {
        self.inner
            .locks
            .holds_inode(MDT0_INDEX, fid, sheen_wire::ibits::LOOKUP)
    }

    /// Getattr (or lookup of `name` in `fid`) asking for the inode locks not held yet: the
    /// name's LOOKUP lock (lookups) and the attribute lock, each granted unless another
    /// client's change is in the way.
    ///
    /// Also returns how many opens for writing the file has over all clients: while none,
    /// the MDS's size is the file's.
    #[instrument(level = "debug", skip_all, fields(%fid))]
    pub async fn getattr_locked(
        &self,
        fid: Fid,
        name: Option<&[u8]>,
    ) -> Result<(Attr, Option<Layout>, u32), ClientError> {
        if let Some(n) = name {
            check_name(n)?;
            if self.known_absent(fid, n) {
                return Err(ClientError::NoEntry);
            }
            if let Some(hit) = self.fetched_ahead(fid, n) {
                self.look_ahead(fid, n);
                return Ok(hit);
            }
        }
        // For a lookup, the child is not known before the answer: ask for both.
        let wanted: Vec<u64> = match name {
            Some(_) => vec![sheen_wire::ibits::LOOKUP, ATTR_BITS],
            None => self
                .inner
                .locks
                .missing_inode_bits(MDT0_INDEX, fid, &[ATTR_BITS]),
        };
        if name.is_none() {
            if let Some(changed) = self.changed_attr(fid) {
                return Ok(changed);
            }
        }
        let req = GetattrLockReq {
            fid,
            name: name.map(<[u8]>::to_vec),
            want_symlink: false,
            mode: sheen_wire::LockMode::Pr,
            bits: wanted,
        };
        let reply: GetattrLockReply = self.mds(Opcode::MdsGetattrLock, &req).await?;
        self.got_locked(fid, name, &reply);
        if let Some(n) = name {
            self.look_ahead(fid, n);
        }
        Ok((reply.reply.attr, reply.reply.layout, reply.writers))
    }

    /// Takes in the locks of a getattr with locks of `fid`, or of its entry `name`.
    fn got_locked(&self, fid: Fid, name: Option<&[u8]>, reply: &GetattrLockReply) {
        let child = reply.reply.attr.fid;
        self.inner
            .locks
            .add_inode_locks(MDT0_INDEX, child, name.map(|n| (fid, n)), &reply.locks);
        if reply.reply.attr.is_reg() {
            let held = self
                .inner
                .locks
                .inode_lock_handle(MDT0_INDEX, child, ATTR_BITS);
            if let Some(lock) = held {
                self.writers_known().insert(child, reply.writers, lock);
            }
        }
    }

    fn statahead(&self) -> std::sync::MutexGuard<'_, Statahead> {
        lock_ignoring_poison(&self.inner.statahead)
    }

    /// What statahead fetched for `name` in `dir`, if the locks it came with (LOOKUP and
    /// attributes; [`Client::getattr_batch`] keeps only answers with both) are still held:
    /// nobody renamed, unlinked or changed it since.
    fn fetched_ahead(&self, dir: Fid, name: &[u8]) -> Option<(Attr, Option<Layout>, u32)> {
        let fetched = self.statahead().take(dir, name)?;
        let held = self.inner.locks.all_held(MDT0_INDEX, &fetched.locks);
        held.then(|| {
            let r = fetched.reply;
            (r.reply.attr, r.reply.layout, r.writers)
        })
    }

    /// `name` was found in `dir`: when that continues a numbered sequence of lookups, looks
    /// the next names up ahead, in the background.
    fn look_ahead(&self, dir: Fid, name: &[u8]) {
        // Outside a runtime (a caller polling by hand) nothing is looked up ahead.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let Some(names) = self.statahead().found(dir, name) else {
            return;
        };
        let client = self.clone();
        runtime.spawn(async move {
            let answers = client.getattr_batch(dir, names).await;
            let mut statahead = client.statahead();
            match answers {
                Ok(answers) => statahead.fetched(dir, answers),
                Err(e) => {
                    debug!(%dir, "statahead: {e}");
                    statahead.failed(dir);
                }
            }
        });
    }

    /// Looks `names` of `dir` up in one MDS_GETATTR_BATCH, with their LOOKUP and attribute
    /// locks; an answer whose locks were not both granted is left out.
    async fn getattr_batch(
        &self,
        dir: Fid,
        names: Vec<Vec<u8>>,
    ) -> Result<Vec<(Vec<u8>, Option<Fetched>)>, ClientError> {
        let req = GetattrBatchReq {
            parent: dir,
            names,
            mode: sheen_wire::LockMode::Pr,
            bits: vec![sheen_wire::ibits::LOOKUP, ATTR_BITS],
        };
        let reply: GetattrBatchReply = self.mds(Opcode::MdsGetattrBatch, &req).await?;
        if reply.entries.len() != req.names.len() {
            return Err(ClientError::protocol(
                "mds_getattr_batch",
                format!(
                    "{} answers to {} names",
                    reply.entries.len(),
                    req.names.len()
                ),
            ));
        }
        let answers = req
            .names
            .into_iter()
            .zip(reply.entries)
            .map(|(name, entry)| {
                let fetched = entry.and_then(|reply| {
                    self.got_locked(dir, Some(&name), &reply);
                    let locks: Vec<LockHandle> = reply.locks.iter().map(|g| g.handle).collect();
                    (locks.len() == 2).then_some(Fetched { reply, locks })
                });
                (name, fetched)
            });
        Ok(answers.collect())
    }

    /// Takes this client's own locks on what a namespace change touches out of its cache,
    /// for the request to cancel (see [`crate::locks`]); returns their handles and what the
    /// kernel cached under them, to drop once the change is done.
    fn early_cancel(&self, req: &ReintReq) -> (Vec<LockHandle>, Vec<Invalidation>) {
        use sheen_wire::ibits;
        let locks = &self.inner.locks;
        let attrs = ibits::UPDATE | ibits::PERM | ibits::XATTR;
        let mut handles = Vec::new();
        let mut drops = Vec::new();
        let mut cancel = |fid: Fid, bits: u64| {
            let (h, d) = locks.early_cancel(MDT0_INDEX, fid, bits);
            handles.extend(h);
            drops.extend(d);
        };
        // The directories whose entries the change adds or removes: a kernel that sent the
        // change drops their attributes itself when the reply comes (FUSE's
        // `fuse_dir_changed`), so telling it again would only cost a notification.
        let mut dirs: Vec<Fid> = Vec::with_capacity(2);
        match req {
            ReintReq::Setattr { fid, .. } => cancel(*fid, ibits::UPDATE | ibits::PERM),
            ReintReq::Setxattr { fid, .. } | ReintReq::Removexattr { fid, .. } => {
                cancel(*fid, attrs)
            }
            ReintReq::Create { parent, .. } => {
                cancel(*parent, ibits::UPDATE);
                dirs.push(*parent);
            }
            ReintReq::Link { fid, parent, .. } => {
                cancel(*fid, ibits::UPDATE);
                cancel(*parent, ibits::UPDATE);
                dirs.push(*parent);
            }
            ReintReq::Unlink { parent, name } | ReintReq::Rmdir { parent, name } => {
                cancel(*parent, ibits::UPDATE);
                dirs.push(*parent);
                if let Some(child) = locks.child_named(*parent, name) {
                    cancel(child, ibits::ALL);
                }
            }
            ReintReq::Rename {
                src_parent,
                src_name,
                dst_parent,
                dst_name,
                ..
            } => {
                cancel(*src_parent, ibits::UPDATE);
                cancel(*dst_parent, ibits::UPDATE);
                dirs.extend([*src_parent, *dst_parent]);
                for (p, n) in [(src_parent, src_name), (dst_parent, dst_name)] {
                    if let Some(child) = locks.child_named(*p, n) {
                        cancel(child, ibits::ALL);
                    }
                }
                // The kernel keeps the moved dentry under its new name.
                drops.push(Invalidation::Entries(vec![(*dst_parent, dst_name.clone())]));
            }
        }
        drops.retain(|d| !matches!(d, Invalidation::Attr(f) if dirs.contains(f)));
        (handles, drops)
    }

    /// The file size as the objects say (each object's size on its OST, combined by the
    /// layout) and the newest mtime of the objects, for a file others may be writing: writes
    /// go through to the OSTs and set mtime on the objects they reach, so the objects hold
    /// the current size and mtime (the MDS learns them at close). The mtime is `None` for a
    /// file without objects.
    ///
    /// Each object is glimpsed with a PR lock on all of it when the OST can grant one at
    /// once (the grant carries the size, and the lock lets the mount cache the size and
    /// data until someone writes); else its size is asked for.
    #[instrument(level = "debug", skip_all, fields(%fid))]
    pub async fn glimpse(
        &self,
        fid: Fid,
        layout: &Layout,
    ) -> Result<(u64, Option<Timespec>), ClientError> {
        let (stripe, geom) = plain_geometry(layout)?;
        if stripe.objects.is_empty() {
            return Ok((0, None));
        }
        let objects = join_all(stripe.objects.iter().map(|obj| async move {
            match self.inner.locks.glimpse(fid, obj.ost_idx, obj.oid).await {
                Ok(Some(seen)) => return Ok(seen),
                Ok(None) => {}
                Err(e) => return Err(e),
            }
            match self.ost_getattr(obj.ost_idx, obj.oid).await {
                Ok(a) => Ok((a.size, a.mtime)),
                // A precreated object nobody wrote may not exist yet.
                Err(e) if e.errno() == sheen_wire::Errno::ENOENT => Ok((0, Timespec::default())),
                Err(e) => Err(e),
            }
        }))
        .await;
        let objects = all_ok(objects)?;
        let sizes: Vec<u64> = objects.iter().map(|(size, _)| *size).collect();
        let mtime = objects
            .iter()
            .map(|(_, m)| *m)
            .max_by_key(|m| (m.sec, m.nsec));
        Ok((geom.file_size(&sizes), mtime))
    }

    async fn ost_read(&self, obj: OstObject, offset: u64, len: u64) -> Result<Bytes, ClientError> {
        let len32 = u32::try_from(len)
            .map_err(|_| ClientError::Invalid(format!("read RPC of {len} bytes")))?;
        let req = OstReadReq {
            oid: obj.oid,
            offset,
            len: len32,
        };
        let (_, data): (Empty, Bytes) = self
            .ost_call(obj.ost_idx, Opcode::OstRead, &req, Bytes::new())
            .await?;
        if data.len() as u64 > len {
            return Err(ClientError::protocol(
                "ost_read",
                format!("{} bytes for a read of {len}", data.len()),
            ));
        }
        Ok(data)
    }

    /// Writes `data` at `offset`, each stripe's pieces (slices of `data`, no copies) to its
    /// OST in parallel. Returns once every OST replied (the data is durable), with
    /// `offset + data.len()`. The file size on the MDS is the caller's to update.
    #[instrument(level = "debug", skip_all, fields(%fid, offset, len = data.len()))]
    pub async fn write(
        &self,
        fid: Fid,
        layout: &Layout,
        offset: u64,
        data: Bytes,
    ) -> Result<u64, ClientError> {
        self.lock_write(fid, layout, offset, data)
            .await?
            .send()
            .await
    }

    /// The first half of [`Client::write`]: takes the PW locks the write needs and returns
    /// it, ready to [`LockedWrite::send`]. From here on the write is ordered before anything
    /// another client does to the range: a conflicting lock waits until it is sent and
    /// answered (a mount can answer the application at this point and send it behind).
    pub async fn lock_write(
        &self,
        fid: Fid,
        layout: &Layout,
        offset: u64,
        data: Bytes,
    ) -> Result<LockedWrite, ClientError> {
        let len = data.len() as u64;
        if len > limits::MAX_IO_BYTES {
            return Err(ClientError::TooLarge {
                what: "write",
                len,
                max: limits::MAX_IO_BYTES,
            });
        }
        let end = offset
            .checked_add(len)
            .ok_or_else(|| ClientError::Invalid(format!("write of {len} bytes at {offset}")))?;
        let mut write = LockedWrite {
            client: self.clone(),
            fid,
            stripe: None,
            pieces: Vec::new(),
            data,
            end,
            mtime: Timespec::now(),
            held: Vec::new(),
        };
        if len == 0 {
            return Ok(write);
        }
        let (stripe, geom) = plain_geometry(layout)?;
        write.pieces = plan_write(
            &geom,
            offset,
            len,
            u64::from(self.inner.config.max_rpc_bytes),
        );
        // Refused here, not by the OST once the write may have been answered.
        let max = sheen_wire::limits::MAX_OBJECT_BYTES;
        if let Some(p) = write.pieces.iter().find(|p| p.obj_offset + p.len > max) {
            return Err(ClientError::FileTooBig {
                end: p.obj_offset + p.len,
                max,
            });
        }
        let extents = write
            .pieces
            .iter()
            .map(|p| (p.stripe_idx, p.obj_offset, p.len))
            .collect::<Vec<_>>();
        write.held = self
            .lock_objects(fid, stripe, LockMode::Pw, &extents)
            .await?;
        write.stripe = Some(stripe.clone());
        Ok(write)
    }

    /// fallocate(2) on `[offset, offset + len)` of a file of `file_size` bytes (as the
    /// caller knows it); `mode` is Linux's flags ([`falloc`]). Each object's part of the
    /// range goes to its OST, all at once, under a PW lock on that part (so that the clients
    /// caching it drop it first).
    ///
    /// Mode 0 and `KEEP_SIZE` allocate the blocks the range lacks ahead, so that writes into
    /// it cannot fail with ENOSPC; they first ask every OST whether it has the blocks its
    /// part needs, and allocate only if all do, so a range larger than the OSTs hold fails
    /// with ENOSPC before anything is allocated (space a concurrent writer takes in between
    /// can still leave part of it allocated, as on ext4). `PUNCH_HOLE | KEEP_SIZE` frees the
    /// range: it reads as zeros, the size stays. Other modes are EOPNOTSUPP.
    ///
    /// Times as ext4 sets them: when mode 0 grows the file, the objects grow to the end of
    /// the range with a new mtime, as a write past the end does, and the new size is
    /// returned for the caller to report to the MDS like a write's ([`Client::write`]);
    /// otherwise the MDS gets a new ctime here (and mtime too for a punched hole).
    #[instrument(level = "debug", skip_all, fields(%fid, offset, len, mode))]
    pub async fn fallocate(
        &self,
        fid: Fid,
        layout: &Layout,
        file_size: u64,
        offset: u64,
        len: u64,
        mode: u32,
    ) -> Result<Option<u64>, ClientError> {
        if !falloc::is_supported(mode) {
            return Err(ClientError::Unsupported(format!(
                "fallocate mode {mode:#x}"
            )));
        }
        let end = offset
            .checked_add(len)
            .filter(|_| len > 0)
            .ok_or_else(|| ClientError::Invalid(format!("fallocate of {len} bytes at {offset}")))?;
        let (stripe, geom) = plain_geometry(layout)?;
        let punch = mode & falloc::PUNCH_HOLE != 0;
        let parts: Vec<(u32, u64, u64)> = plan_range(&geom, offset, len)
            .iter()
            .map(|e| (e.stripe_idx, e.obj_offset, e.len))
            .collect();
        if !(punch && stripe.objects.is_empty()) {
            let mtime = Timespec::now();
            let call = |(i, start, part_len): (u32, u64, u64), check_only: bool| async move {
                let obj = stripe_object(stripe, i)?;
                let req = OstFallocateReq {
                    oid: obj.oid,
                    offset: start,
                    len: part_len,
                    mode,
                    mtime,
                    check_only,
                };
                let (_, _): (OstWriteReply, Bytes) = self
                    .ost_call(obj.ost_idx, Opcode::OstFallocate, &req, Bytes::new())
                    .await?;
                Ok(())
            };
            if !punch && parts.len() > 1 {
                all_ok(join_all(parts.iter().map(|p| call(*p, true))).await)?;
            }
            let held = self.lock_objects(fid, stripe, LockMode::Pw, &parts).await?;
            let done = join_all(parts.iter().map(|p| call(*p, false))).await;
            self.unlock_changed(fid, held);
            all_ok(done)?;
        }
        if mode == 0 && end > file_size {
            return Ok(Some(end));
        }
        let set = SetAttr {
            mtime: punch.then_some(sheen_wire::msg::TimeSet::Now),
            ..SetAttr::default()
        };
        self.setattr_mds(fid, set).await?;
        Ok(None)
    }

    /// Makes a file's data durable on its OSTs (OST_SYNC of every object), then the
    /// metadata on the MDS.
    #[instrument(level = "debug", skip_all)]
    pub async fn fsync(&self, layout: Option<&Layout>) -> Result<(), ClientError> {
        if let Some(layout) = layout {
            let syncs = layout
                .components
                .iter()
                .flat_map(|c| c.stripe.objects.iter())
                .map(|obj| async move {
                    let req = OstSyncReq { oid: Some(obj.oid) };
                    let (_, _): (Empty, Bytes) = self
                        .ost_call(obj.ost_idx, Opcode::OstSync, &req, Bytes::new())
                        .await?;
                    Ok(())
                });
            all_ok(join_all(syncs).await)?;
        }
        let _: Empty = self.mds(Opcode::MdsSync, &Empty {}).await?;
        Ok(())
    }

    /// Filesystem usage: space summed over the OSTs that answer (in
    /// [`limits::STATFS_BSIZE`] blocks), inodes from MDT0.
    #[instrument(level = "debug", skip_all)]
    pub async fn statfs(&self) -> Result<StatfsReply, ClientError> {
        let mdt = self.mds::<Empty, StatfsReply>(Opcode::MdsStatfs, &Empty {});
        let osts = join_all(self.inner.osts.keys().map(|&idx| async move {
            let r: Result<(StatfsReply, Bytes), ClientError> = self
                .ost_call(idx, Opcode::OstStatfs, &Empty {}, Bytes::new())
                .await;
            (idx, r.map(|(s, _)| s))
        }));
        let (mdt, osts) = futures::join!(mdt, osts);
        let mdt = mdt?;
        let mut answered = Vec::new();
        let mut first_err = None;
        for (idx, r) in osts {
            match r {
                Ok(s) => answered.push(s),
                Err(e) => {
                    warn!(ost_idx = idx, "statfs skips an OST that failed: {e}");
                    first_err.get_or_insert(e);
                }
            }
        }
        if answered.is_empty() {
            if let Some(e) = first_err {
                return Err(e);
            }
        }
        Ok(sum_statfs(&mdt, &answered))
    }

    /// Usage of every MDT and OST, for `lfs df`.
    pub async fn target_statfs(&self) -> Vec<(TargetInfo, Result<StatfsReply, ClientError>)> {
        let mdts = self.inner.mdts.iter().map(|(&idx, mdt)| async move {
            let r = mdt.import.call(Opcode::MdsStatfs, idx, &Empty {}).await;
            (mdt.info.clone(), r.map_err(ClientError::from))
        });
        let osts = self.inner.osts.iter().map(|(&idx, ost)| async move {
            let r: Result<(StatfsReply, Bytes), ClientError> = self
                .ost_call(idx, Opcode::OstStatfs, &Empty {}, Bytes::new())
                .await;
            (ost.info.clone(), r.map(|(s, _)| s))
        });
        let (mut out, osts) = futures::join!(join_all(mdts), join_all(osts));
        out.extend(osts);
        out
    }

    /// Lists an OST's object index from `start` (for `lfs`/`lctl` tools and tests).
    pub async fn ost_list(
        &self,
        ost_idx: u32,
        start: u64,
        max: u32,
    ) -> Result<OstListReply, ClientError> {
        let req = OstListReq { start, max };
        let (reply, _) = self
            .ost_call(ost_idx, Opcode::OstGetInfo, &req, Bytes::new())
            .await?;
        Ok(reply)
    }

    /// One object's attributes on its OST.
    pub async fn ost_getattr(&self, ost_idx: u32, oid: u64) -> Result<ObjAttr, ClientError> {
        let (reply, _) = self
            .ost_call(ost_idx, Opcode::OstGetattr, &ObjReq { oid }, Bytes::new())
            .await?;
        Ok(reply)
    }

    /// Disconnects from every server. Calls made afterwards reconnect.
    pub async fn unmount(&self) {
        let inner = &self.inner;
        let imports = inner
            .mdts
            .values()
            .map(|m| &m.import)
            .chain(inner.oss_imports.iter())
            .chain(std::iter::once(&inner.mgs));
        join_all(imports.map(|i| i.disconnect())).await;
        info!(fsname = %inner.fs_config.fsname, "unmounted");
    }
}

/// OBD_PING to the service at `nid` (any Sheen daemon), over the transport its NID names:
/// connects, pings and disconnects, all within `timeout`. What `lctl ping` does.
pub async fn ping_nid(nid: Nid, timeout: Duration) -> Result<(), ClientError> {
    let uuid = format!("lctl-ping-{}", std::process::id());
    let mut cfg = ImportConfig::new(uuid, Opcode::MgsConnect);
    cfg.timeout = timeout;
    cfg.connect_timeout = timeout;
    cfg.retry_for = Duration::ZERO;
    let import = Import::with_nids(&[nid], cfg)?;
    let pinged = tokio::time::timeout(timeout, import.ping()).await;
    import.disconnect().await;
    match pinged {
        Ok(result) => Ok(result?),
        Err(_) => Err(ClientError::Rpc(RpcError::Timeout {
            opcode: "obd_ping",
            nid: nid.to_string(),
            timeout_ms: timeout.as_millis() as u64,
        })),
    }
}

/// Reads the configuration from the first MGS NID that answers. An MGS that answers with an
/// error (say, no such filesystem) ends the search: its failover partner would say the same.
async fn fetch_config(
    spec: &MountSpec,
    config: &ClientConfig,
) -> Result<(Import, FsConfig), ClientError> {
    let mut last_err = None;
    for &nid in &spec.mgs_nids {
        let mut import_config = config.import_config(Opcode::MgsConnect, "");
        import_config.retry_for = config.mgs_retry_for.min(config.retry_for);
        let mgs = new_import(&[nid], import_config)?;
        let req = ConfigReadReq {
            fsname: spec.fsname.clone(),
        };
        match mgs
            .call::<_, FsConfig>(Opcode::MgsConfigRead, NO_TARGET, &req)
            .await
        {
            Ok(fs_config) => {
                debug!(%nid, targets = fs_config.targets.len(), "read the configuration");
                return Ok((mgs, fs_config));
            }
            Err(e @ RpcError::Remote { .. }) => return Err(e.into()),
            Err(e) => {
                warn!(%nid, "MGS did not answer, trying the next one: {e}");
                last_err = Some(e);
            }
        }
    }
    Err(match last_err {
        Some(e) => e.into(),
        None => ClientError::BadSpec(crate::MountSpecError::NoNids(spec.to_string())),
    })
}

/// Sums OST space into [`limits::STATFS_BSIZE`] blocks; inodes come from the MDT.
pub(crate) fn sum_statfs(mdt: &StatfsReply, osts: &[StatfsReply]) -> StatfsReply {
    let bsize = u128::from(limits::STATFS_BSIZE);
    let bytes = |f: fn(&StatfsReply) -> u64| -> u64 {
        let total: u128 = osts
            .iter()
            .map(|s| u128::from(f(s)) * u128::from(s.bsize))
            .sum();
        u64::try_from(total / bsize).unwrap_or(u64::MAX)
    };
    StatfsReply {
        bsize: limits::STATFS_BSIZE,
        blocks: bytes(|s| s.blocks),
        bfree: bytes(|s| s.bfree),
        bavail: bytes(|s| s.bavail),
        files: mdt.files,
        ffree: mdt.ffree,
        namelen: if mdt.namelen == 0 {
            NAME_MAX_BYTES as u32
        } else {
            mdt.namelen
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statfs_sums_in_a_common_block_size() {
        let mdt = StatfsReply {
            files: 100,
            ffree: 90,
            namelen: 255,
            ..Default::default()
        };
        let a = StatfsReply {
            bsize: 4096,
            blocks: 1000,
            bfree: 500,
            bavail: 400,
            ..mdt.clone()
        };
        let b = StatfsReply {
            bsize: 65536,
            blocks: 10,
            bfree: 5,
            bavail: 5,
            ..mdt.clone()
        };
        let s = sum_statfs(&mdt, &[a, b]);
        assert_eq!(s.bsize, 4096);
        assert_eq!(s.blocks, 1000 + 160);
        assert_eq!(s.bfree, 500 + 80);
        assert_eq!(s.bavail, 400 + 80);
        assert_eq!((s.files, s.ffree, s.namelen), (100, 90, 255));
        assert_eq!(sum_statfs(&mdt, &[]).blocks, 0);
    }

    #[test]
    fn names_are_checked() {
        assert!(check_name(b"ok").is_ok());
        assert!(matches!(
            check_name(&[b'a'; 256]),
            Err(ClientError::NameTooLong { .. })
        ));
        assert!(matches!(check_name(b"a/b"), Err(ClientError::Invalid(_))));
        assert!(matches!(check_name(b""), Err(ClientError::Invalid(_))));
        assert!(check_xattr_name(b"user.x").is_ok());
        assert!(check_xattr_name(b"").is_err());
    }

    #[test]
    fn config_is_validated() {
        assert!(ClientConfig::default().validate().is_ok());
        let bad = ClientConfig {
            max_rpc_bytes: 0,
            ..ClientConfig::default()
        };
        assert!(matches!(bad.validate(), Err(ClientError::BadConfig(_))));
        let bad = ClientConfig {
            max_rpcs_in_flight_per_ost: 0,
            ..ClientConfig::default()
        };
        assert!(bad.validate().is_err());
    }
}
