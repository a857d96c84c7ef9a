//! The locks a client holds [ldlm on the client, osc and mdc locks]: what lets a mount cache
//! file data, attributes and names, and what tells it to stop.
//!
//! - OST extent locks: every read takes a PR lock and every write a PW lock on the byte
//!   ranges of the objects it touches, matching a held lock first (the common case), else
//!   enqueueing one (the OST grows it to the widest free range). A getattr takes a PR lock on
//!   `[0, EOF]` of every object without waiting (a glimpse: the grant carries the object's
//!   size); while a client holds such locks on every object of a file, nobody else can
//!   change the file's data or size, so the mount may cache both.
//! - MDT inode-bits locks: a lookup or getattr asks for them with the attributes
//!   (MDS_GETATTR_LOCK): LOOKUP protects a name → inode binding (the kernel's dentry),
//!   UPDATE|PERM|XATTR an inode's attributes. Each is a lock of its own, so a create in a
//!   directory (which changes its UPDATE bits) leaves the directory's dentry cached.
//!   A listing with attributes (MDS_READDIR_PLUS) takes the same two locks on as many of
//!   its entries as the LRU has room for, each only if the MDS can grant it at once; the
//!   kernel caches a listed entry only while the very locks it was read under are held.
//!
//! Locks stay cached after use, in an LRU. When another client needs a conflicting lock, the
//! server sends a blocking callback: the mount drops what the lock protects (through the
//! [`CacheInvalidator`] the FUSE mount installs), then the lock is cancelled, so the other
//! client's change is made only once this mount can no longer serve what it replaces. A
//! lock in use is cancelled when its last user is done.
//!
//! Before a namespace change of its own, the client takes its locks on what the change
//! touches out of its cache and names them in the request (MDS_REINT_CANCEL, Lustre's early
//! lock cancel): the MDS cancels exactly those, and the kernel updates its own caches for
//! its own changes. Before upgrading an OST lock from PR to PW the client cancels its PR
//! (LDLM_CANCEL); the file's pages are dropped after the write, since another writer may
//! have slipped in between. A server never drops a lock the client did not name, so the two
//! never disagree on what the client holds.
//!
//! When the connection to a server ends, the server has dropped this client's locks there:
//! they are forgotten and everything cached under them is invalidated.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use sheen_dlm::{Blocked, LockCache};
use sheen_rpc::{CallbackHandler, Import, Request, Response, ServiceError};
use sheen_wire::msg::{BlockingAst, CancelReq, Empty, EnqueueReply, EnqueueReq};
use sheen_wire::{
    ibits, ldlm_flags, Errno, Fid, LockDesc, LockExtent, LockHandle, LockMode, LockPolicy, Nid,
    Opcode, ResourceId, LOCK_EXTENT_EOF,
};
use tracing::{debug, warn};

use crate::ClientError;

/// How long a blocking callback waits for the kernel to drop what a lock protects before the
/// lock is cancelled anyway (the invalidation can wait on a page or directory this client
/// holds locked while one of its requests waits for the server: bounded, so that never
/// deadlocks).
pub const INVALIDATE_WAIT: Duration = Duration::from_secs(1);

/// Most names remembered per inode for invalidating dentries (hard links beyond it lose
/// their LOOKUP caching: the lock is not taken for them).
const MAX_NAMES_PER_INODE: usize = 8;

/// Most locks named in one LDLM_CANCEL of locks pushed out of the LRU.
const LRU_CANCEL_BATCH: usize = 256;
/// How long LRU victims gather before they are dropped and cancelled together: a create
/// loop in a directory past the LRU pushes out a lock or two per file, and without the wait
/// each file cost a trip to a blocking thread and an LDLM_CANCEL of its own.
const LRU_CANCEL_GATHER: Duration = Duration::from_millis(10);
/// Most superseded locks remembered with the lock that took their place (oldest forgotten
/// first; what was recorded under a forgotten one is then fetched again).
const SUPERSEDED_MAX: usize = 32768;
/// Most steps followed from a superseded lock to the lock that now covers it.
const SUPERSEDED_HOPS: usize = 4;

/// The inode bits of the attribute lock a client takes.
pub const ATTR_BITS: u64 = ibits::ATTR;

/// Drops what a mount caches; installed by the FUSE client. Each call may block (the kernel
/// waits for pages or directories in use); it is made on a blocking thread.
pub trait CacheInvalidator: Send + Sync + 'static {
    /// The cached data pages and attributes of `fid`.
    fn invalidate_data(&self, fid: Fid);
    /// The cached attributes of `fid`.
    fn invalidate_attr(&self, fid: Fid);
    /// The cached name `name` in directory `parent`.
    fn invalidate_entry(&self, parent: Fid, name: &[u8]);
}

/// A lock server: an OST or an MDT, by index.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Target {
    Ost(u32),
    Mdt(u32),
}

impl Target {
    fn index(self) -> u32 {
        match self {
            Target::Ost(i) | Target::Mdt(i) => i,
        }
    }
}

/// One lock in use; give it back with [`Locks::release`].
#[derive(Clone, Copy, Debug)]
pub(crate) struct Held {
    target: Target,
    handle: LockHandle,
}

/// What a blocking callback must drop.
pub(crate) enum Invalidation {
    Data(Fid),
    Attr(Fid),
    Entries(Vec<(Fid, Vec<u8>)>),
    Nothing,
}

struct State {
    caches: HashMap<Target, LockCache>,
    /// The file each OST object belongs to, for invalidation.
    owners: HashMap<ResourceId, Fid>,
    /// The names under which each inode's LOOKUP lock was handed to the kernel.
    names: HashMap<Fid, Vec<(Fid, Vec<u8>)>>,
    /// Unused locks a new grant made redundant ([`LockCache::take_superseded`]), with the
    /// lock that covers what they did: what was recorded under one (statahead answers, the
    /// names of a directory, attributes) stays good while that lock is held.
    superseded: HashMap<(Target, LockHandle), LockHandle>,
    superseded_order: VecDeque<(Target, LockHandle)>,
}

/// Every lock of one client.
pub(crate) struct Locks {
    state: Mutex<State>,
    imports: OnceLock<HashMap<Target, Import>>,
    invalidator: OnceLock<Arc<dyn CacheInvalidator>>,
    /// Locks pushed out of the LRU, dropped here and waiting to be cancelled at their server
    /// together (nobody waits for these cancels).
    lru_cancels: Mutex<LruCancels>,
}

/// Cancels of LRU victims, sent in batches: while one batch is on the wire the next
/// gathers, so a steady stream of new locks (a listing, a stat of every file of a large
/// directory) costs one LDLM_CANCEL per batch instead of one per lock. The victims' caches
/// are dropped in batches too: one trip to a blocking thread per batch, not one per lock.
#[derive(Default)]
struct LruCancels {
    /// Locks pushed out of the LRU whose caches are still to be dropped.
    victims: HashMap<Target, Vec<LockHandle>>,
    /// Locks dropped here, to cancel at their server.
    pending: HashMap<Target, Vec<LockHandle>>,
    /// A task is sending them.
    sending: bool,
}

/// The inode a MDT lock resource names (the inverse of [`ResourceId::fid`]).
fn resource_fid(r: &ResourceId) -> Fid {
    Fid {
        seq: r.name[0],
        oid: r.name[1] as u32,
        ver: (r.name[1] >> 32) as u32,
    }
}

fn ibits_of(desc: &LockDesc) -> u64 {
    match desc.policy {
        LockPolicy::Ibits { bits } => bits,
        _ => 0,
    }
}

fn extent(mode: LockMode, ost_idx: u32, oid: u64, start: u64, end: u64) -> LockDesc {
    LockDesc {
        resource: ResourceId::object(ost_idx, oid),
        mode,
        policy: LockPolicy::Extent(LockExtent { start, end, gid: 0 }),
    }
}

fn inode_lock(fid: Fid, bits: u64) -> LockDesc {
    LockDesc {
        resource: ResourceId::fid(fid),
        mode: LockMode::Pr,
        policy: LockPolicy::Ibits { bits },
    }
}

impl Locks {
    pub(crate) fn new() -> Arc<Locks> {
        Arc::new(Locks {
            state: Mutex::new(State {
                caches: HashMap::new(),
                owners: HashMap::new(),
                names: HashMap::new(),
                superseded: HashMap::new(),
                superseded_order: VecDeque::new(),
            }),
            imports: OnceLock::new(),
            invalidator: OnceLock::new(),
            lru_cancels: Mutex::new(LruCancels::default()),
        })
    }

    pub(crate) fn set_imports(&self, imports: HashMap<Target, Import>) {
        let _ = self.imports.set(imports);
    }

    pub(crate) fn set_invalidator(&self, inv: Arc<dyn CacheInvalidator>) {
        let _ = self.invalidator.set(inv);
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn import(&self, target: Target) -> Result<Import, ClientError> {
        self.imports
            .get()
            .and_then(|m| m.get(&target).cloned())
            .ok_or_else(|| ClientError::NoTarget(format!("{target:?}")))
    }

    /// Takes a `mode` lock on `[start, end]` of object `oid` of OST `ost_idx` for file
    /// `fid`: a held one when it covers the range, else a new one from the OST.
    pub(crate) async fn lock_extent(
        self: &Arc<Self>,
        fid: Fid,
        ost_idx: u32,
        oid: u64,
        mode: LockMode,
        start: u64,
        end: u64,
    ) -> Result<Held, ClientError> {
        let target = Target::Ost(ost_idx);
        let wanted = extent(mode, ost_idx, oid, start, end);
        let own: Vec<LockHandle> = {
            let mut st = self.state();
            st.owners.insert(wanted.resource, fid);
            let cache = st.caches.entry(target).or_default();
            if let Some(handle) = cache.match_lock(&wanted) {
                return Ok(Held { target, handle });
            }
            // Our own unused conflicting locks (a PR before a write) are cancelled first,
            // by name; one in use is called back by the OST like anyone's.
            let mut own = Vec::new();
            for (h, desc) in cache.locks_on(&wanted.resource) {
                if sheen_dlm::policy::conflicts(&desc, &wanted) && cache.users(h) == 0 {
                    cache.remove(h);
                    own.push(h);
                }
            }
            own
        };
        let upgraded = !own.is_empty();
        if upgraded {
            self.send_cancels(target, own).await;
        }
        let reply = self.enqueue(target, wanted, 0).await?;
        let held = self.insert(target, &reply)?;
        if upgraded {
            // Another client may have written between our PR and this PW: drop the cache
            // once the write that asked for this lock is done (its pages are locked now).
            self.drop_later(vec![Invalidation::Data(fid)]);
        }
        Ok(held)
    }

    fn insert(self: &Arc<Self>, target: Target, reply: &EnqueueReply) -> Result<Held, ClientError> {
        if !reply.granted {
            return Err(ClientError::protocol(
                "ldlm_enqueue",
                "the server answered an enqueue without granting it",
            ));
        }
        let (inserted, superseded) = {
            let mut st = self.state();
            let cache = st.caches.entry(target).or_default();
            let inserted = cache.insert(reply.handle, reply.desc);
            let superseded = match inserted {
                Ok(()) => cache.take_superseded(reply.handle),
                Err(_) => Vec::new(),
            };
            for old in &superseded {
                if st.superseded_order.len() >= SUPERSEDED_MAX {
                    if let Some(gone) = st.superseded_order.pop_front() {
                        st.superseded.remove(&gone);
                    }
                }
                st.superseded.insert((target, *old), reply.handle);
                st.superseded_order.push_back((target, *old));
            }
            (inserted, superseded)
        };
        for handle in superseded {
            self.queue_lru_cancel(target, handle);
        }
        match inserted {
            Ok(()) => Ok(Held {
                target,
                handle: reply.handle,
            }),
            Err(e) => Err(ClientError::protocol("ldlm_enqueue", e.to_string())),
        }
    }

    /// A glimpse of object `oid` of OST `ost_idx` (file `fid`): unless a lock on the whole
    /// object is held already (`None`: ask the OST for the size), a PR lock on it, whose
    /// grant carries the object's size. Granted at once when nobody writes the object;
    /// otherwise the writers' PW locks are called back first, so that writes a writer's
    /// mount acknowledged and still sends (write-behind) are in the size (Lustre asks the
    /// writers for their size instead, with a glimpse callback). Not when this client holds
    /// a conflicting lock on the object itself: that would call its own lock back and drop
    /// its own pages while the kernel waits for the getattr this glimpse answers (the kernel
    /// then throws the answer away). It is a writer then, and a mount writes behind only as
    /// the file's only writer, so the OST's size is whole (`None`).
    pub(crate) async fn glimpse(
        self: &Arc<Self>,
        fid: Fid,
        ost_idx: u32,
        oid: u64,
    ) -> Result<Option<(u64, sheen_wire::msg::Timespec)>, ClientError> {
        let target = Target::Ost(ost_idx);
        let wanted = extent(LockMode::Pr, ost_idx, oid, 0, LOCK_EXTENT_EOF);
        let own_conflict = {
            let mut st = self.state();
            st.owners.insert(wanted.resource, fid);
            let cache = st.caches.entry(target).or_default();
            if let Some(handle) = cache.match_lock(&wanted) {
                drop(st);
                self.release_now(Held { target, handle });
                return Ok(None);
            }
            cache
                .locks_on(&wanted.resource)
                .iter()
                .any(|(_, d)| sheen_dlm::policy::conflicts(d, &wanted))
        };
        match self.enqueue(target, wanted, ldlm_flags::BLOCK_NOWAIT).await {
            Ok(reply) => self.glimpsed(target, &reply),
            Err(e) if e.errno() == Errno::EAGAIN && own_conflict => Ok(None),
            Err(e) if e.errno() == Errno::EAGAIN => {
                let reply = self.enqueue(target, wanted, 0).await?;
                self.glimpsed(target, &reply)
            }
            Err(e) => Err(e),
        }
    }

    /// Asks `target` for the lock `desc` (LDLM_ENQUEUE with `flags`).
    async fn enqueue(
        &self,
        target: Target,
        desc: LockDesc,
        flags: u64,
    ) -> Result<EnqueueReply, ClientError> {
        let req = EnqueueReq { desc, flags };
        Ok(self
            .import(target)?
            .call(Opcode::LdlmEnqueue, target.index(), &req)
            .await?)
    }

    /// The size and mtime a glimpse's grant carries; the lock stays cached, unused.
    fn glimpsed(
        self: &Arc<Self>,
        target: Target,
        reply: &EnqueueReply,
    ) -> Result<Option<(u64, sheen_wire::msg::Timespec)>, ClientError> {
        let held = self.insert(target, reply)?;
        self.release_now(held);
        Ok(reply.lvb.map(|l| (l.size, l.mtime)))
    }

    /// Whether every `(ost, oid)` has a held PR or PW lock on the whole object, not called
    /// back: nobody else can change these objects' data or size.
    pub(crate) fn covers_objects(&self, objects: &[(u32, u64)]) -> bool {
        let st = self.state();
        objects.iter().all(|&(ost_idx, oid)| {
            let wanted = extent(LockMode::Pr, ost_idx, oid, 0, LOCK_EXTENT_EOF);
            st.caches.get(&Target::Ost(ost_idx)).is_some_and(|c| {
                c.locks_on(&wanted.resource)
                    .iter()
                    .any(|(h, d)| !c.is_cancel_pending(*h) && sheen_dlm::policy::covers(d, &wanted))
            })
        })
    }

    /// Whether a MDT lock on `bits` of `fid` is held and not called back.
    pub(crate) fn holds_inode(&self, mdt: u32, fid: Fid, bits: u64) -> bool {
        let wanted = inode_lock(fid, bits);
        let st = self.state();
        st.caches.get(&Target::Mdt(mdt)).is_some_and(|c| {
            c.locks_on(&wanted.resource)
                .iter()
                .any(|(h, d)| !c.is_cancel_pending(*h) && sheen_dlm::policy::covers(d, &wanted))
        })
    }

    /// The handle of a held MDT lock on `bits` of `fid`, not called back.
    pub(crate) fn inode_lock_handle(&self, mdt: u32, fid: Fid, bits: u64) -> Option<LockHandle> {
        let wanted = inode_lock(fid, bits);
        let st = self.state();
        let c = st.caches.get(&Target::Mdt(mdt))?;
        c.locks_on(&wanted.resource)
            .into_iter()
            .find(|(h, d)| !c.is_cancel_pending(*h) && sheen_dlm::policy::covers(d, &wanted))
            .map(|(h, _)| h)
    }

    /// Which of `wanted` (sets of inode bits) are not held on `fid` yet.
    pub(crate) fn missing_inode_bits(&self, mdt: u32, fid: Fid, wanted: &[u64]) -> Vec<u64> {
        wanted
            .iter()
            .copied()
            .filter(|b| !self.holds_inode(mdt, fid, *b))
            .collect()
    }

    /// Adds the MDT locks granted with a getattr of `fid` (looked up as `name` in `parent`
    /// when given): they are cached unused, in the LRU.
    pub(crate) fn add_inode_locks(
        self: &Arc<Self>,
        mdt: u32,
        fid: Fid,
        name: Option<(Fid, &[u8])>,
        granted: &[EnqueueReply],
    ) {
        let target = Target::Mdt(mdt);
        for reply in granted {
            if reply.desc.resource != ResourceId::fid(fid) {
                continue;
            }
            if let Ok(held) = self.insert(target, reply) {
                self.release(held);
            }
        }
        if let Some((parent, name)) = name {
            if self.holds_inode(mdt, fid, ibits::LOOKUP) {
                let mut st = self.state();
                let names = st.names.entry(fid).or_default();
                let known = names.iter().any(|(p, n)| *p == parent && n == name);
                if !known && names.len() < MAX_NAMES_PER_INODE {
                    names.push((parent, name.to_vec()));
                }
            }
        }
    }

    /// How many more MDT locks of `mdt` fit before its LRU of unused locks overflows.
    pub(crate) fn room(&self, mdt: u32) -> usize {
        let st = self.state();
        match st.caches.get(&Target::Mdt(mdt)) {
            Some(cache) => cache.room(),
            None => LockCache::default().room(),
        }
    }

    /// Adds the MDT locks granted with a listed entry (MDS_READDIR_PLUS): inode `fid`, named
    /// `name.1` in directory `name.0`. When the MDS says the entry was read under locks for
    /// every set of `bits` (`locked`), returns the handles of held locks covering each set
    /// (granted now or held already), to check with [`Locks::all_held`] before the kernel
    /// caches what was read; empty when one is not held (any more).
    pub(crate) fn add_listed_locks(
        self: &Arc<Self>,
        mdt: u32,
        fid: Fid,
        name: (Fid, &[u8]),
        granted: &[EnqueueReply],
        locked: bool,
        bits: &[u64],
    ) -> Vec<LockHandle> {
        self.add_inode_locks(mdt, fid, locked.then_some(name), granted);
        if !locked {
            return Vec::new();
        }
        let st = self.state();
        let Some(cache) = st.caches.get(&Target::Mdt(mdt)) else {
            return Vec::new();
        };
        let mut handles = Vec::with_capacity(bits.len());
        for b in bits {
            let wanted = inode_lock(fid, *b);
            let held = cache.locks_on(&wanted.resource).into_iter().find(|(h, d)| {
                !cache.is_cancel_pending(*h) && sheen_dlm::policy::covers(d, &wanted)
            });
            match held {
                Some((h, _)) => handles.push(h),
                None => return Vec::new(),
            }
        }
        handles
    }

    /// Whether `handle` of `target`, or the lock that superseded it, is still held and not
    /// called back.
    fn live(st: &State, target: Target, handle: LockHandle) -> bool {
        let Some(cache) = st.caches.get(&target) else {
            return false;
        };
        let mut handle = handle;
        for _ in 0..=SUPERSEDED_HOPS {
            if cache.desc(handle).is_some() {
                return !cache.is_cancel_pending(handle);
            }
            match st.superseded.get(&(target, handle)) {
                Some(next) => handle = *next,
                None => return false,
            }
        }
        false
    }

    /// Whether every lock of `held` (given back since) is still held and not called back.
    pub(crate) fn all_still_held(&self, held: &[Held]) -> bool {
        let st = self.state();
        held.iter().all(|h| Self::live(&st, h.target, h.handle))
    }

    /// Whether every MDT lock of `handles` is still held and not called back.
    pub(crate) fn all_held(&self, mdt: u32, handles: &[LockHandle]) -> bool {
        let st = self.state();
        let target = Target::Mdt(mdt);
        st.caches.contains_key(&target) && handles.iter().all(|h| Self::live(&st, target, *h))
    }

    /// The names of `fid` this client handed to the kernel under a LOOKUP lock.
    pub(crate) fn child_named(&self, parent: Fid, name: &[u8]) -> Option<Fid> {
        let st = self.state();
        st.names.iter().find_map(|(fid, names)| {
            names
                .iter()
                .any(|(p, n)| *p == parent && n == name)
                .then_some(*fid)
        })
    }

    /// Takes this client's MDT locks on `fid` whose bits meet `bits` out of the cache, for
    /// the request about to be sent to cancel them (early cancel); returns their handles and
    /// what the kernel cached under them, to drop once the request is done (the kernel
    /// updates most of it for its own changes, not all: a renamed dentry stays).
    pub(crate) fn early_cancel(
        &self,
        mdt: u32,
        fid: Fid,
        bits: u64,
    ) -> (Vec<LockHandle>, Vec<Invalidation>) {
        let resource = ResourceId::fid(fid);
        let mut st = self.state();
        let mut handles = Vec::new();
        let mut drops = Vec::new();
        let mut lookup_gone = false;
        if let Some(cache) = st.caches.get_mut(&Target::Mdt(mdt)) {
            for (h, d) in cache.locks_on(&resource) {
                let held = ibits_of(&d);
                if held & bits != 0 {
                    cache.remove(h);
                    handles.push(h);
                    lookup_gone |= held & ibits::LOOKUP != 0;
                    if held & ATTR_BITS != 0 {
                        drops.push(Invalidation::Attr(fid));
                    }
                }
            }
        }
        if lookup_gone {
            if let Some(names) = st.names.remove(&fid) {
                drops.push(Invalidation::Entries(names));
            }
        }
        (handles, drops)
    }

    /// Drops what the mount caches, in the background (after the caller's request is done),
    /// in one trip to a blocking thread.
    pub(crate) fn drop_later(&self, drops: Vec<Invalidation>) {
        let _ = self.spawn_drops(drops);
    }

    /// Starts dropping what the mount caches, all in one trip to a blocking thread; `None`
    /// when there is nothing to drop or no invalidator.
    fn spawn_drops(&self, mut drops: Vec<Invalidation>) -> Option<tokio::task::JoinHandle<()>> {
        drops.retain(|d| !matches!(d, Invalidation::Nothing));
        let inv = self.invalidator.get().cloned()?;
        (!drops.is_empty()).then(|| {
            tokio::task::spawn_blocking(move || {
                for d in drops {
                    run_drop(&*inv, d);
                }
            })
        })
    }

    /// Drops what the mount caches, waiting at most [`INVALIDATE_WAIT`].
    async fn invalidate_all(&self, drops: Vec<Invalidation>) {
        if let Some(task) = self.spawn_drops(drops) {
            if tokio::time::timeout(INVALIDATE_WAIT, task).await.is_err() {
                warn!("cache invalidation still waiting; cancelling anyway");
            }
        }
    }

    /// Ends one use of a lock; cancels what became due (a lock called back while in use,
    /// locks beyond the LRU).
    pub(crate) fn release(self: &Arc<Self>, held: Held) {
        let due = {
            let mut st = self.state();
            match st.caches.get_mut(&held.target) {
                Some(c) => c.release(held.handle).unwrap_or_default(),
                None => Vec::new(),
            }
        };
        for handle in due {
            if handle != held.handle {
                // Pushed out of the LRU: dropped and cancelled in batches.
                self.queue_lru_victim(held.target, handle);
                continue;
            }
            // The lock just released was called back while in use: its server is waiting.
            let me = Arc::clone(self);
            tokio::spawn(async move {
                if me.invalidate_and_drop(held.target, handle).await {
                    me.send_cancel(held.target, handle).await;
                }
            });
        }
    }

    /// Queues an LRU victim, whose caches are still to be dropped; starts a sender unless
    /// one is running.
    fn queue_lru_victim(self: &Arc<Self>, target: Target, handle: LockHandle) {
        self.queue_lru(target, handle, true);
    }

    /// Queues the cancel of an LRU victim already dropped here; starts a sender unless one
    /// is running.
    fn queue_lru_cancel(self: &Arc<Self>, target: Target, handle: LockHandle) {
        self.queue_lru(target, handle, false);
    }

    fn queue_lru(self: &Arc<Self>, target: Target, handle: LockHandle, victim: bool) {
        // Outside a runtime (a caller polling by hand) the cancel waits for the next sender.
        let runtime = tokio::runtime::Handle::try_current().ok();
        let start = {
            let mut q = self.lru_cancels.lock().unwrap_or_else(|p| p.into_inner());
            let list = if victim {
                &mut q.victims
            } else {
                &mut q.pending
            };
            list.entry(target).or_default().push(handle);
            runtime.is_some() && !std::mem::replace(&mut q.sending, true)
        };
        if let (true, Some(runtime)) = (start, runtime) {
            let me = Arc::clone(self);
            runtime.spawn(async move { me.send_lru_cancels().await });
        }
    }

    /// Drops the queued LRU victims' caches and sends the queued LRU cancels, one trip to a
    /// blocking thread and one LDLM_CANCEL per target and batch, until none wait; each round
    /// first lets them gather for [`LRU_CANCEL_GATHER`].
    async fn send_lru_cancels(&self) {
        loop {
            tokio::time::sleep(LRU_CANCEL_GATHER).await;
            let (victims, batch) = {
                let mut q = self.lru_cancels.lock().unwrap_or_else(|p| p.into_inner());
                if q.pending.is_empty() && q.victims.is_empty() {
                    q.sending = false;
                    return;
                }
                (
                    std::mem::take(&mut q.victims),
                    std::mem::take(&mut q.pending),
                )
            };
            for (target, handles) in victims {
                for chunk in handles.chunks(LRU_CANCEL_BATCH) {
                    let dropped = self.drop_victims(target, chunk).await;
                    if !dropped.is_empty() {
                        self.send_cancels(target, dropped).await;
                    }
                }
            }
            for (target, handles) in batch {
                for chunk in handles.chunks(LRU_CANCEL_BATCH) {
                    self.send_cancels(target, chunk.to_vec()).await;
                }
            }
        }
    }

    /// [`Locks::release`] for callers without the `Arc` (the lock is not due for cancel
    /// unless called back, and then the callback path cancels it).
    fn release_now(&self, held: Held) {
        let mut st = self.state();
        if let Some(c) = st.caches.get_mut(&held.target) {
            let _ = c.release(held.handle);
        }
    }

    /// What dropping the lock `desc` of `target` must invalidate.
    fn what_to_drop(st: &State, target: Target, desc: &LockDesc) -> Invalidation {
        match target {
            Target::Ost(_) => match st.owners.get(&desc.resource) {
                Some(fid) => Invalidation::Data(*fid),
                None => Invalidation::Nothing,
            },
            Target::Mdt(_) => {
                let fid = resource_fid(&desc.resource);
                let bits = ibits_of(desc);
                if bits & ibits::LOOKUP != 0 {
                    Invalidation::Entries(st.names.get(&fid).cloned().unwrap_or_default())
                } else if bits & ATTR_BITS != 0 {
                    Invalidation::Attr(fid)
                } else {
                    Invalidation::Nothing
                }
            }
        }
    }

    /// Drops the cache under a lock, then cancels it at its server.
    async fn invalidate_and_cancel(&self, target: Target, handle: LockHandle) {
        if self.invalidate_and_drop(target, handle).await {
            self.send_cancel(target, handle).await;
        }
    }

    /// Drops the caches under LRU victims of `target`, all in one trip to a blocking
    /// thread, and forgets them here; the ones that were still known (to cancel).
    async fn drop_victims(&self, target: Target, handles: &[LockHandle]) -> Vec<LockHandle> {
        let whats: Vec<Invalidation> = {
            let st = self.state();
            handles
                .iter()
                .filter_map(|h| st.caches.get(&target).and_then(|c| c.desc(*h)))
                .map(|desc| Self::what_to_drop(&st, target, &desc))
                .collect()
        };
        self.invalidate_all(whats).await;
        handles
            .iter()
            .copied()
            .filter(|h| self.forget(target, *h))
            .collect()
    }

    /// Drops the cache under a lock and forgets the lock here; whether it was still known
    /// (and so is to be cancelled at its server).
    async fn invalidate_and_drop(&self, target: Target, handle: LockHandle) -> bool {
        let what = {
            let st = self.state();
            match st.caches.get(&target).and_then(|c| c.desc(handle)) {
                Some(desc) => Self::what_to_drop(&st, target, &desc),
                None => Invalidation::Nothing,
            }
        };
        self.invalidate_all(vec![what]).await;
        self.forget(target, handle)
    }

    /// Forgets a lock whose cache was dropped, and the names recorded under it unless
    /// another LOOKUP lock on the inode keeps them; whether it was still known.
    fn forget(&self, target: Target, handle: LockHandle) -> bool {
        let mut st = self.state();
        let cache = st.caches.get_mut(&target);
        let (desc, lookup_left) = match cache {
            Some(c) => {
                let desc = c.remove(handle);
                // Names recorded since `what` was taken stay with another LOOKUP lock
                // on the inode (a listing may have handed one to the kernel under it).
                let left = desc.is_some_and(|d| {
                    c.locks_on(&d.resource)
                        .iter()
                        .any(|(_, o)| ibits_of(o) & ibits::LOOKUP != 0)
                });
                (desc, left)
            }
            None => (None, false),
        };
        if let (Target::Mdt(_), Some(d)) = (target, desc) {
            if ibits_of(&d) & ibits::LOOKUP != 0 && !lookup_left {
                st.names.remove(&resource_fid(&d.resource));
            }
        }
        desc.is_some()
    }

    async fn send_cancel(&self, target: Target, handle: LockHandle) {
        self.send_cancels(target, vec![handle]).await;
    }

    async fn send_cancels(&self, target: Target, handles: Vec<LockHandle>) {
        let Ok(import) = self.import(target) else {
            return;
        };
        let cookies: Vec<u64> = handles.iter().map(|h| h.cookie).collect();
        let req = CancelReq { handles };
        if let Err(e) = import
            .call::<_, Empty>(Opcode::LdlmCancel, target.index(), &req)
            .await
        {
            // The server evicts or has evicted us; either way the lock is gone.
            debug!(?cookies, "lock cancel failed: {e}");
        }
    }

    /// A blocking callback from `target`.
    fn on_blocking(self: &Arc<Self>, target: Target, ast: &BlockingAst) {
        let what = {
            let mut st = self.state();
            st.caches.entry(target).or_default().on_blocking(ast.handle)
        };
        debug!(
            cookie = ast.handle.cookie,
            ?what,
            ?target,
            "blocking callback"
        );
        let me = Arc::clone(self);
        let handle = ast.handle;
        match what {
            Blocked::CancelNow => {
                tokio::spawn(async move { me.invalidate_and_cancel(target, handle).await });
            }
            // `release` cancels it when its last user is done.
            Blocked::WhenUnused => {}
            // Not known here: its grant was lost (a resent enqueue got another lock), or it
            // overtook its grant (the lock then comes in pending cancel). Cancel it either
            // way; a second cancel is ignored.
            Blocked::Unknown => {
                tokio::spawn(async move { me.send_cancel(target, handle).await });
            }
        }
    }

    /// The connection to a server of `targets` ended: the server dropped our locks there.
    fn forget_targets(&self, targets: &[Target]) {
        let drops: Vec<Invalidation> = {
            let mut st = self.state();
            let mut all = Vec::new();
            for t in targets {
                if let Some(cache) = st.caches.get_mut(t) {
                    all.extend(cache.clear().into_iter().map(|(_, d)| (*t, d)));
                }
            }
            let mut data: HashSet<Fid> = HashSet::new();
            let mut drops = Vec::new();
            for (t, d) in &all {
                match Self::what_to_drop(&st, *t, d) {
                    Invalidation::Data(fid) => {
                        data.insert(fid);
                    }
                    other => drops.push(other),
                }
            }
            for (t, d) in &all {
                if matches!(t, Target::Mdt(_)) && ibits_of(d) & ibits::LOOKUP != 0 {
                    st.names.remove(&resource_fid(&d.resource));
                }
            }
            drops.extend(data.into_iter().map(Invalidation::Data));
            drops
        };
        self.drop_later(drops);
    }
}

fn run_drop(inv: &dyn CacheInvalidator, what: Invalidation) {
    match what {
        Invalidation::Data(fid) => inv.invalidate_data(fid),
        Invalidation::Attr(fid) => inv.invalidate_attr(fid),
        Invalidation::Entries(names) => {
            for (parent, name) in names {
                inv.invalidate_entry(parent, &name);
            }
        }
        Invalidation::Nothing => {}
    }
}

/// What an MDT's callbacks reopen on a new connection.
pub(crate) struct Reopen {
    pub(crate) opens: Arc<crate::opens::OpenFiles>,
    pub(crate) import: Import,
    pub(crate) mdt: u32,
}

/// Answers the callbacks of one server (all the targets it serves).
pub(crate) struct ServerCallbacks {
    pub(crate) locks: Arc<Locks>,
    pub(crate) targets: OnceLock<Vec<Target>>,
    /// For an MDT: the files to reopen on every new connection.
    pub(crate) reopen: OnceLock<Arc<Reopen>>,
}

impl ServerCallbacks {
    pub(crate) fn new(locks: &Arc<Locks>) -> Arc<ServerCallbacks> {
        Arc::new(ServerCallbacks {
            locks: Arc::clone(locks),
            targets: OnceLock::new(),
            reopen: OnceLock::new(),
        })
    }

    /// The target a callback's lock belongs to: an MDT lock names an inode, an OST lock an
    /// object with the OST index in its third word.
    fn target_of(&self, conflict: &LockDesc) -> Option<Target> {
        let targets = self.targets.get()?;
        match conflict.policy {
            LockPolicy::Ibits { .. } => targets
                .iter()
                .copied()
                .find(|t| matches!(t, Target::Mdt(_))),
            _ => {
                let idx = u32::try_from(conflict.resource.name[2]).ok()?;
                targets.iter().copied().find(|t| *t == Target::Ost(idx))
            }
        }
    }
}

#[async_trait::async_trait]
impl CallbackHandler for ServerCallbacks {
    async fn handle(&self, req: Request) -> Result<Response, ServiceError> {
        match req.opcode {
            Opcode::LdlmBlCallback => {
                let ast: BlockingAst = req.decode()?;
                match self.target_of(&ast.conflict) {
                    Some(target) => self.locks.on_blocking(target, &ast),
                    None => debug!(cookie = ast.handle.cookie, "callback for no target of ours"),
                }
                Ok(Response::new(&Empty {}))
            }
            other => Err(ServiceError::new(
                Errno::EOPNOTSUPP,
                format!("{} is not a client callback", other.name()),
            )),
        }
    }

    fn connection_ended(&self, nid: Nid) {
        if let Some(targets) = self.targets.get() {
            debug!(%nid, "server connection ended: its locks are gone");
            self.locks.forget_targets(targets);
        }
    }

    fn connected(&self, _nid: Nid) {
        if let Some(r) = self.reopen.get() {
            let r = Arc::clone(r);
            tokio::spawn(async move { r.opens.replay(&r.import, r.mdt).await });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MDT: u32 = 0;

    fn fid(oid: u32) -> Fid {
        Fid {
            seq: Fid::FIRST_NORMAL_SEQ,
            oid,
            ver: 0,
        }
    }

    fn grant(cookie: u64, fid: Fid, bits: u64) -> EnqueueReply {
        EnqueueReply {
            handle: LockHandle { cookie },
            desc: inode_lock(fid, bits),
            granted: true,
            lvb: None,
        }
    }

    const BITS: [u64; 2] = [ibits::LOOKUP, ATTR_BITS];

    #[tokio::test]
    async fn listed_entries_keep_the_locks_they_were_read_under() {
        let locks = Locks::new();
        let (dir, f, g) = (fid(1), fid(2), fid(3));
        let room = locks.room(MDT);
        assert_eq!(room, LockCache::default().room());
        let granted = [grant(10, f, ibits::LOOKUP), grant(11, f, ATTR_BITS)];
        let held = locks.add_listed_locks(MDT, f, (dir, b"f"), &granted, true, &BITS);
        assert_eq!(held, [LockHandle { cookie: 10 }, LockHandle { cookie: 11 }]);
        assert!(locks.all_held(MDT, &held));
        assert_eq!(locks.room(MDT), room - 2);
        assert_eq!(locks.child_named(dir, b"f"), Some(f));
        // Another name of the same inode, whose locks the MDS found held already: the held
        // ones cover it, and its name is recorded for their callbacks.
        let again = locks.add_listed_locks(MDT, f, (dir, b"f2"), &[], true, &BITS);
        assert_eq!(again, held);
        assert_eq!(locks.child_named(dir, b"f2"), Some(f));
        // Read without locks, or under locks this client does not have: nothing to cache.
        assert!(locks
            .add_listed_locks(MDT, g, (dir, b"g"), &[], false, &BITS)
            .is_empty());
        assert!(locks
            .add_listed_locks(MDT, g, (dir, b"g"), &[], true, &BITS)
            .is_empty());
        assert_eq!(locks.child_named(dir, b"g"), None);
        // Locks granted for another inode than the entry's are not taken.
        let wrong = [grant(12, g, ibits::LOOKUP), grant(13, f, ATTR_BITS)];
        assert!(locks
            .add_listed_locks(MDT, g, (dir, b"g"), &wrong, true, &BITS)
            .is_empty());
        assert!(locks.all_held(MDT, &held));
        assert!(!locks.all_held(MDT, &[LockHandle { cookie: 99 }]));

        // A callback of the attribute lock: the entry is no longer cacheable at once.
        let ast = BlockingAst {
            handle: LockHandle { cookie: 11 },
            conflict: inode_lock(f, ATTR_BITS),
        };
        locks.on_blocking(Target::Mdt(MDT), &ast);
        assert!(!locks.all_held(MDT, &held));
        assert!(locks.all_held(MDT, &held[..1]));
    }

    /// Counts the LDLM_CANCEL requests it gets and the locks they name.
    #[derive(Default)]
    struct CancelCounter {
        requests: std::sync::atomic::AtomicUsize,
        handles: std::sync::atomic::AtomicUsize,
    }

    #[async_trait::async_trait]
    impl sheen_rpc::Service for CancelCounter {
        fn name(&self) -> String {
            "cancel-counter".into()
        }
        fn instance(&self) -> u64 {
            1
        }
        async fn handle(&self, req: Request) -> Result<Response, ServiceError> {
            use std::sync::atomic::Ordering::SeqCst;
            match req.opcode {
                Opcode::LdlmCancel => {
                    let c: CancelReq = req.decode()?;
                    self.requests.fetch_add(1, SeqCst);
                    self.handles.fetch_add(c.handles.len(), SeqCst);
                    Ok(Response::new(&Empty {}))
                }
                _ => Err(Errno::EOPNOTSUPP.into()),
            }
        }
    }

    /// A server on loopback that counts the cancels it gets, and an import to it.
    async fn cancel_server() -> (
        Import,
        Arc<CancelCounter>,
        tokio_util::sync::CancellationToken,
    ) {
        let t = sheen_transport::TcpTransport::default();
        let any = Nid::parse("127.0.0.1:0@tcp").unwrap();
        let listener = sheen_transport::Transport::listen(&t, &any).await.unwrap();
        let nid = listener.local_nid();
        let counter = Arc::new(CancelCounter::default());
        let stop = tokio_util::sync::CancellationToken::new();
        tokio::spawn(sheen_rpc::serve(listener, counter.clone(), stop.clone()));
        let cfg = sheen_rpc::ImportConfig::new("lock-client", Opcode::MdsConnect);
        let import = Import::new(sheen_transport::for_nid(&nid).unwrap(), nid, cfg);
        (import, counter, stop)
    }

    /// Counts what it is asked to drop.
    #[derive(Default)]
    struct DropCounter(std::sync::atomic::AtomicUsize);

    impl CacheInvalidator for DropCounter {
        fn invalidate_data(&self, _: Fid) {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
        fn invalidate_attr(&self, _: Fid) {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
        fn invalidate_entry(&self, _: Fid, _: &[u8]) {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    }

    #[tokio::test]
    async fn a_lock_granted_again_supersedes_its_unused_copy_without_dropping_caches() {
        use std::sync::atomic::Ordering::SeqCst;
        let (import, counter, stop) = cancel_server().await;
        let locks = Locks::new();
        locks.set_imports(HashMap::from([(Target::Mdt(MDT), import)]));
        let drops = Arc::new(DropCounter::default());
        locks.set_invalidator(drops.clone());
        let (dir, f) = (fid(1), fid(2));
        let first = [grant(30, f, ibits::LOOKUP), grant(31, f, ATTR_BITS)];
        locks.add_inode_locks(MDT, f, Some((dir, b"a")), &first);
        // What a statahead answer or a directory's names record: the handles granted.
        let recorded = [LockHandle { cookie: 30 }, LockHandle { cookie: 31 }];
        let room = locks.room(MDT);
        // The kernel forgot the name and looked it up again: the same locks, granted again.
        let again = [grant(40, f, ibits::LOOKUP), grant(41, f, ATTR_BITS)];
        locks.add_inode_locks(MDT, f, Some((dir, b"a")), &again);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while counter.handles.load(SeqCst) < 2 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "copies not cancelled"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // The copies went to the server; nothing the kernel cached was dropped.
        assert_eq!(locks.room(MDT), room);
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(drops.0.load(SeqCst), 0);
        assert_eq!(locks.child_named(dir, b"a"), Some(f));
        // What was recorded under them holds while the locks that took their place do.
        assert!(locks.all_held(MDT, &recorded));
        locks
            .invalidate_and_cancel(Target::Mdt(MDT), LockHandle { cookie: 41 })
            .await;
        assert!(locks.all_held(MDT, &recorded[..1]));
        assert!(!locks.all_held(MDT, &recorded));
        stop.cancel();
    }

    #[tokio::test]
    async fn locks_pushed_out_of_the_lru_are_cancelled_in_batches() {
        use std::sync::atomic::Ordering::SeqCst;
        let (import, counter, stop) = cancel_server().await;
        let locks = Locks::new();
        locks.set_imports(HashMap::from([(Target::Mdt(MDT), import)]));
        let drops = Arc::new(DropCounter::default());
        locks.set_invalidator(drops.clone());
        let keep = 2;
        let victims = {
            let mut st = locks.state();
            let cache = st.caches.entry(Target::Mdt(MDT)).or_default();
            cache.set_max_unused(keep)
        };
        assert!(victims.is_empty());
        // Fifty inodes looked up: every lock beyond the two the LRU keeps is cancelled.
        let n = 50u32;
        for i in 0..n {
            let f = fid(100 + i);
            locks.add_inode_locks(MDT, f, None, &[grant(1000 + u64::from(i), f, ATTR_BITS)]);
        }
        let want = usize::try_from(n).unwrap() - keep;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while counter.handles.load(SeqCst) < want || drops.0.load(SeqCst) < want {
            assert!(
                tokio::time::Instant::now() < deadline,
                "cancels not all sent"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(counter.handles.load(SeqCst), want);
        // Each victim's attributes were dropped from the kernel before its cancel.
        assert_eq!(drops.0.load(SeqCst), want);
        let requests = counter.requests.load(SeqCst);
        assert!(
            requests < want / 4,
            "{requests} LDLM_CANCEL requests for {want} locks"
        );
        assert_eq!(locks.room(MDT), 0);
        stop.cancel();
    }

    #[tokio::test]
    async fn names_stay_while_a_lookup_lock_on_the_inode_does() {
        let locks = Locks::new();
        let (dir, f) = (fid(1), fid(2));
        let first = [
            grant(20, f, ibits::LOOKUP | ibits::OPEN),
            grant(21, f, ATTR_BITS),
        ];
        locks.add_listed_locks(MDT, f, (dir, b"a"), &first, true, &BITS);
        // A second LOOKUP lock on the same inode, which does not cover the first (that one
        // would go as superseded).
        locks.add_inode_locks(MDT, f, Some((dir, b"b")), &[grant(22, f, ibits::LOOKUP)]);
        locks
            .invalidate_and_cancel(Target::Mdt(MDT), LockHandle { cookie: 20 })
            .await;
        // Lock 22 still protects the names handed to the kernel under it.
        assert_eq!(locks.child_named(dir, b"b"), Some(f));
        locks
            .invalidate_and_cancel(Target::Mdt(MDT), LockHandle { cookie: 22 })
            .await;
        assert_eq!(locks.child_named(dir, b"a"), None);
        assert_eq!(locks.child_named(dir, b"b"), None);
    }
}
