//! Extent locks on OST objects, as the client holds them [osc locks]: what lets a client
//! (the FUSE mount's page cache) cache file data, and what tells it to stop.
//!
//! Every read takes a PR lock and every write a PW lock on the byte ranges of the objects it
//! touches, first matching a lock already held (the common case: one enqueue per object,
//! then none), else enqueueing one (the OST grows it to the widest free range). A lock stays
//! cached after its I/O, in an LRU. When another client needs a conflicting lock, the OST
//! sends a blocking callback: the client drops what it caches of that file (through the
//! [`CacheInvalidator`] the FUSE mount installs), then cancels the lock, so the other
//! client's write starts only once this client can no longer serve stale data. A lock in
//! use is cancelled when its last I/O ends.
//!
//! Upgrading from PR to PW drops the client's own PR at the OST inside the enqueue (early
//! cancel); the file's cache is then dropped after the write, since another writer may have
//! slipped in while the PW waited.
//!
//! When the connection to an OSS ends, the OSS has dropped this client's locks: every lock
//! of its OSTs is forgotten and every file cached under them invalidated.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use sheen_dlm::{Blocked, LockCache};
use sheen_rpc::{CallbackHandler, Import, Request, Response, ServiceError};
use sheen_wire::msg::{BlockingAst, CancelReq, Empty, EnqueueReply, EnqueueReq};
use sheen_wire::{
    Errno, Fid, LockDesc, LockExtent, LockHandle, LockMode, LockPolicy, Nid, Opcode, ResourceId,
};
use tracing::{debug, warn};

use crate::ClientError;

/// How long a blocking callback waits for the kernel to drop a file's cached pages before
/// the lock is cancelled anyway (the invalidation can wait on a page an I/O of this client
/// holds locked while that I/O waits for a lock: bounded, so that never deadlocks).
pub const INVALIDATE_WAIT: Duration = Duration::from_secs(1);

/// Drops what a mount caches of a file; installed by the FUSE client.
pub trait CacheInvalidator: Send + Sync + 'static {
    /// Drops the cached data pages and attributes of `fid`. May block (it waits for pages in
    /// use); called on a blocking thread.
    fn invalidate_data(&self, fid: Fid);
}

/// One lock in use by an I/O; give it back with [`DataLocks::release`].
#[derive(Clone, Copy, Debug)]
pub(crate) struct Held {
    ost_idx: u32,
    handle: LockHandle,
}

struct State {
    /// Per OST (handles are per OST lock service).
    caches: HashMap<u32, LockCache>,
    /// The file each object resource belongs to, for invalidation.
    owners: HashMap<ResourceId, Fid>,
}

/// The client's extent locks on every OST.
pub(crate) struct DataLocks {
    state: Mutex<State>,
    /// The import of each OST, set once at mount.
    imports: OnceLock<HashMap<u32, Import>>,
    invalidator: OnceLock<Arc<dyn CacheInvalidator>>,
}

impl DataLocks {
    pub(crate) fn new() -> Arc<DataLocks> {
        Arc::new(DataLocks {
            state: Mutex::new(State {
                caches: HashMap::new(),
                owners: HashMap::new(),
            }),
            imports: OnceLock::new(),
            invalidator: OnceLock::new(),
        })
    }

    pub(crate) fn set_imports(&self, imports: HashMap<u32, Import>) {
        let _ = self.imports.set(imports);
    }

    pub(crate) fn set_invalidator(&self, inv: Arc<dyn CacheInvalidator>) {
        let _ = self.invalidator.set(inv);
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn import(&self, ost_idx: u32) -> Result<Import, ClientError> {
        self.imports
            .get()
            .and_then(|m| m.get(&ost_idx).cloned())
            .ok_or_else(|| ClientError::NoTarget(format!("OST{ost_idx:04x}")))
    }

    /// Takes a `mode` lock on `[start, end]` of object `oid` of OST `ost_idx` for file
    /// `fid`: a held one when it covers the range, else a new one from the OST.
    pub(crate) async fn lock(
        &self,
        fid: Fid,
        ost_idx: u32,
        oid: u64,
        mode: LockMode,
        start: u64,
        end: u64,
    ) -> Result<Held, ClientError> {
        let wanted = LockDesc {
            resource: ResourceId::object(ost_idx, oid),
            mode,
            policy: LockPolicy::Extent(LockExtent { start, end, gid: 0 }),
        };
        let mut upgraded = false;
        {
            let mut st = self.state();
            st.owners.insert(wanted.resource, fid);
            let cache = st.caches.entry(ost_idx).or_default();
            if let Some(handle) = cache.match_lock(&wanted) {
                return Ok(Held { ost_idx, handle });
            }
            // Our own conflicting locks are cancelled by the OST inside the enqueue.
            for (h, desc) in cache.locks_on(&wanted.resource) {
                if sheen_dlm::policy::conflicts(&desc, &wanted) && cache.users(h) == 0 {
                    cache.remove(h);
                    upgraded = true;
                }
            }
        }
        let import = self.import(ost_idx)?;
        let req = EnqueueReq {
            desc: wanted,
            flags: 0,
        };
        let reply: EnqueueReply = import.call(Opcode::LdlmEnqueue, ost_idx, &req).await?;
        if !reply.granted {
            return Err(ClientError::protocol(
                "ldlm_enqueue",
                "the OST answered an enqueue without granting it",
            ));
        }
        let inserted = self
            .state()
            .caches
            .entry(ost_idx)
            .or_default()
            .insert(reply.handle, reply.desc);
        if let Err(e) = inserted {
            return Err(ClientError::protocol("ldlm_enqueue", e.to_string()));
        }
        if upgraded {
            // Another client may have written between our PR and this PW: drop the cache
            // once the write that asked for this lock is done (its pages are locked now).
            self.invalidate_later(fid);
        }
        Ok(Held {
            ost_idx,
            handle: reply.handle,
        })
    }

    /// Ends one I/O's use of a lock; cancels what became due (a lock called back while in
    /// use, locks beyond the LRU).
    pub(crate) fn release(self: &Arc<Self>, held: Held) {
        let due = {
            let mut st = self.state();
            match st.caches.get_mut(&held.ost_idx) {
                Some(c) => c.release(held.handle).unwrap_or_default(),
                None => Vec::new(),
            }
        };
        for handle in due {
            let me = Arc::clone(self);
            tokio::spawn(async move { me.invalidate_and_cancel(held.ost_idx, handle).await });
        }
    }

    /// Drops the cache under a lock, then cancels it at the OST.
    async fn invalidate_and_cancel(&self, ost_idx: u32, handle: LockHandle) {
        let fid = {
            let st = self.state();
            st.caches
                .get(&ost_idx)
                .and_then(|c| c.desc(handle))
                .and_then(|d| st.owners.get(&d.resource).copied())
        };
        if let Some(fid) = fid {
            self.invalidate(fid).await;
        }
        let desc = {
            let mut st = self.state();
            st.caches.get_mut(&ost_idx).and_then(|c| c.remove(handle))
        };
        if desc.is_none() {
            return; // Gone with a reconnect already.
        }
        let Ok(import) = self.import(ost_idx) else {
            return;
        };
        let req = CancelReq {
            handles: vec![handle],
        };
        if let Err(e) = import
            .call::<_, Empty>(Opcode::LdlmCancel, ost_idx, &req)
            .await
        {
            // The OST evicts or has evicted us; either way the lock is gone.
            debug!(cookie = handle.cookie, "lock cancel failed: {e}");
        }
    }

    /// Drops what the mount caches of `fid`, waiting at most [`INVALIDATE_WAIT`].
    async fn invalidate(&self, fid: Fid) {
        let Some(inv) = self.invalidator.get().cloned() else {
            return;
        };
        let task = tokio::task::spawn_blocking(move || inv.invalidate_data(fid));
        if tokio::time::timeout(INVALIDATE_WAIT, task).await.is_err() {
            warn!(%fid, "cache invalidation still waiting; cancelling the lock anyway");
        }
    }

    fn invalidate_later(&self, fid: Fid) {
        if let Some(inv) = self.invalidator.get().cloned() {
            tokio::spawn(async move {
                let _ = tokio::task::spawn_blocking(move || inv.invalidate_data(fid)).await;
            });
        }
    }

    /// A blocking callback from OST `ost_idx`.
    fn on_blocking(self: &Arc<Self>, ast: &BlockingAst) {
        let ost_idx = match u32::try_from(ast.conflict.resource.name[2]) {
            Ok(i) => i,
            Err(_) => return,
        };
        let what = {
            let mut st = self.state();
            st.caches
                .entry(ost_idx)
                .or_default()
                .on_blocking(ast.handle)
        };
        debug!(cookie = ast.handle.cookie, ?what, "blocking callback");
        if what == Blocked::CancelNow {
            let me = Arc::clone(self);
            let handle = ast.handle;
            tokio::spawn(async move { me.invalidate_and_cancel(ost_idx, handle).await });
        }
        // WhenUnused: `release` cancels it. Unknown: the lock comes in pending cancel.
    }

    /// The connection to the OSS serving `osts` ended: the OSS dropped our locks there.
    fn forget_osts(&self, osts: &[u32]) {
        let fids: HashSet<Fid> = {
            let mut st = self.state();
            let mut fids = HashSet::new();
            for idx in osts {
                if let Some(cache) = st.caches.get_mut(idx) {
                    for (_, desc) in cache.clear() {
                        if let Some(fid) = st.owners.get(&desc.resource) {
                            fids.insert(*fid);
                        }
                    }
                }
            }
            st.owners.retain(|r, _| {
                u32::try_from(r.name[2])
                    .map(|i| !osts.contains(&i))
                    .unwrap_or(true)
            });
            fids
        };
        for fid in fids {
            self.invalidate_later(fid);
        }
    }

    /// Locks held, over every OST.
    pub(crate) fn len(&self) -> usize {
        self.state().caches.values().map(LockCache::len).sum()
    }
}

/// Answers the callbacks of one OSS (all the OSTs it serves).
pub(crate) struct OssCallbacks {
    pub(crate) locks: Arc<DataLocks>,
    pub(crate) osts: OnceLock<Vec<u32>>,
}

#[async_trait::async_trait]
impl CallbackHandler for OssCallbacks {
    async fn handle(&self, req: Request) -> Result<Response, ServiceError> {
        match req.opcode {
            Opcode::LdlmBlCallback => {
                let ast: BlockingAst = req.decode()?;
                self.locks.on_blocking(&ast);
                Ok(Response::new(&Empty {}))
            }
            other => Err(ServiceError::new(
                Errno::EOPNOTSUPP,
                format!("{} is not a client callback", other.name()),
            )),
        }
    }

    fn connection_ended(&self, nid: Nid) {
        if let Some(osts) = self.osts.get() {
            debug!(%nid, "OSS connection ended: its locks are gone");
            self.locks.forget_osts(osts);
        }
    }
}
