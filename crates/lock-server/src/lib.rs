//! The lock service of one server target [ldlm on the server]: `sheen-dlm`'s [`LockTable`]
//! behind RPC, as the MDS (inode-bits locks) and each OST (extent locks) run it.
//!
//! - LDLM_ENQUEUE from a client ([`LockServer::enqueue`]): the lock is granted at once or
//!   waits; the holders of conflicting locks (the asking client too: it cancels what it
//!   wants gone first, by name, so that client and server never disagree on what it holds)
//!   get a blocking callback (LDLM_BL_CALLBACK) on their own connection
//!   through [`Exports`], and the enqueue is answered when the lock is granted (the reply is
//!   the grant, so no completion callback is needed).
//! - [`LockServer::try_enqueue`] grants a lock at once or not at all (never queued, nobody
//!   called back), for the locks a server hands out with an answer (the MDS's readdirplus).
//! - LDLM_CANCEL ([`LockServer::cancel`]) releases locks and grants the waiters that can go.
//! - A holder that has not cancelled within the callback timeout is evicted: its connection
//!   is closed and every lock it held is dropped ([`LockServer::run_reaper`]); a client whose
//!   connection ends loses its locks the same way ([`LockServer::export_gone`]).
//! - The server takes locks for itself ([`LockServer::lock_for_server`]) around changes that
//!   make what clients cache stale (the MDS before a namespace change, an OST before a punch),
//!   so those clients are called back first.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use sheen_dlm::{
    policy, Blocking, ClientId, Config, DlmError, Enqueued, Grant, LockTable, Progress,
};
use sheen_rpc::{ExportId, Exports, RpcError};
use sheen_wire::msg::{BlockingAst, EnqueueReq};
use sheen_wire::{ldlm_flags, Errno, LockDesc, LockHandle, Opcode, WireEncode};
use tokio::sync::{oneshot, Notify};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

/// The lock owner the server itself uses ([`LockServer::lock_for_server`]). Export ids start
/// at 1, so it is nobody's.
pub const SERVER: ClientId = ClientId(0);

/// How much longer than the callback timeout a waiting enqueue may wait before it gives up
/// (the holders are evicted after the callback timeout, so the wait normally ends sooner).
const ENQUEUE_WAIT_SLACK: Duration = Duration::from_secs(5);

/// What [`LockServer::try_enqueue`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TryEnqueued {
    /// A new lock, granted.
    Granted { handle: LockHandle, desc: LockDesc },
    /// The client holds a granted lock that covers the one asked for and has not been
    /// called back: nothing new was taken.
    Held,
    /// A conflicting lock, granted or waiting, is in the way: nothing was queued and nobody
    /// was called back.
    Busy,
}

/// Why a lock request failed; [`LockError::errno`] is what the reply carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LockError {
    Dlm(DlmError),
    /// The lock was not granted within the wait bound (the table is left without it).
    TimedOut,
    /// The service is shutting down.
    Shutdown,
}

impl std::fmt::Display for LockError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LockError::Dlm(e) => write!(f, "{e}"),
            LockError::TimedOut => f.write_str("lock not granted in time"),
            LockError::Shutdown => f.write_str("lock service shutting down"),
        }
    }
}

impl std::error::Error for LockError {}

impl LockError {
    pub fn errno(&self) -> Errno {
        match self {
            LockError::Dlm(e) => e.errno(),
            LockError::TimedOut => Errno::ETIMEDOUT,
            LockError::Shutdown => Errno::EIO,
        }
    }
}

impl From<DlmError> for LockError {
    fn from(e: DlmError) -> LockError {
        LockError::Dlm(e)
    }
}

struct State {
    table: LockTable,
    /// Enqueues waiting for their grant, by handle.
    waiters: HashMap<LockHandle, oneshot::Sender<Grant>>,
}

/// The locks of one target, served.
pub struct LockServer {
    name: String,
    exports: Arc<Exports>,
    callback_timeout: Duration,
    state: Mutex<State>,
    /// Wakes the reaper when a new callback deadline starts.
    deadline_added: Notify,
}

impl LockServer {
    /// A lock service named `name` in logs (`sheen-OST0001`), calling clients back through
    /// `exports`. The daemon must call [`LockServer::export_gone`] from the exports' gone
    /// hook and run [`LockServer::run_reaper`].
    pub fn new(name: impl Into<String>, exports: Arc<Exports>, config: Config) -> Arc<LockServer> {
        let callback_timeout = config.callback_timeout;
        Arc::new(LockServer {
            name: name.into(),
            exports,
            callback_timeout,
            state: Mutex::new(State {
                table: LockTable::new(config),
                waiters: HashMap::new(),
            }),
            deadline_added: Notify::new(),
        })
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Locks held or waiting.
    pub fn len(&self) -> usize {
        self.state().table.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether `export` holds a granted lock that covers `wanted`.
    pub fn holds(&self, export: ExportId, wanted: &LockDesc) -> bool {
        let st = self.state();
        st.table
            .client_locks(ClientId(export.0))
            .into_iter()
            .filter_map(|h| st.table.get(h))
            .any(|l| l.granted && policy::covers(&l.desc, wanted))
    }

    /// LDLM_ENQUEUE from the client of `export`: returns the granted lock (its extent may
    /// have grown), waiting for the holders of conflicting locks to cancel or be evicted.
    pub async fn enqueue(
        self: &Arc<Self>,
        export: ExportId,
        req: &EnqueueReq,
    ) -> Result<(LockHandle, LockDesc), LockError> {
        let nowait = req.flags & ldlm_flags::BLOCK_NOWAIT != 0;
        self.acquire(ClientId(export.0), req.desc, nowait).await
    }

    /// A lock for the client of `export` only if it can be had at once: never waits,
    /// queues or calls anyone back (Lustre's BLOCK_NOWAIT, without the round trip). A lock
    /// the client holds already and that is not being called back is not taken twice.
    /// Errors are the table's limits (too many locks for this client) and bad requests.
    pub fn try_enqueue(&self, export: ExportId, desc: LockDesc) -> Result<TryEnqueued, LockError> {
        let client = ClientId(export.0);
        let mut st = self.state();
        if held_by(&st.table, client, &desc) {
            return Ok(TryEnqueued::Held);
        }
        match st.table.enqueue_nowait(client, desc) {
            Ok(Enqueued::Granted(g)) => Ok(TryEnqueued::Granted {
                handle: g.handle,
                desc: g.desc,
            }),
            Ok(Enqueued::Waiting { handle, .. }) => {
                // A nowait enqueue never waits; should the table say otherwise, undo it.
                warn!(target_name = %self.name, cookie = handle.cookie, "nowait lock queued");
                if let Ok(p) = st.table.cancel(handle) {
                    self.progress(&mut st, p);
                }
                Ok(TryEnqueued::Busy)
            }
            Err(DlmError::WouldBlock) => Ok(TryEnqueued::Busy),
            Err(e) => Err(e.into()),
        }
    }

    /// Whether the client of `export` holds a granted lock that covers `desc` and is not
    /// being called back (what [`LockServer::try_enqueue`] answers [`TryEnqueued::Held`]
    /// for), without taking anything.
    pub fn holds_uncalled(&self, export: ExportId, desc: &LockDesc) -> bool {
        held_by(&self.state().table, ClientId(export.0), desc)
    }

    /// Takes a lock for the server itself (dropped with the returned guard). Every holder of
    /// a conflicting lock is called back and waited for (or evicted), the client whose
    /// request causes this included: a client cancels its own locks first, naming them
    /// (LDLM_CANCEL, or the cancel list of its request), so that both sides agree on what it
    /// holds.
    pub async fn lock_for_server(
        self: &Arc<Self>,
        desc: LockDesc,
    ) -> Result<ServerLock, LockError> {
        let (handle, _) = self.acquire(SERVER, desc, false).await?;
        Ok(ServerLock {
            server: Arc::clone(self),
            handle,
        })
    }

    async fn acquire(
        self: &Arc<Self>,
        owner: ClientId,
        desc: LockDesc,
        nowait: bool,
    ) -> Result<(LockHandle, LockDesc), LockError> {
        let (handle, rx) = {
            let mut st = self.state();
            let mut progress = Progress::default();
            let enqueued = if nowait {
                st.table.enqueue_nowait(owner, desc)
            } else {
                st.table.enqueue(owner, desc)
            };
            let enqueued = match enqueued {
                Ok(e) => e,
                Err(e) => {
                    self.progress(&mut st, progress);
                    return Err(e.into());
                }
            };
            match enqueued {
                Enqueued::Granted(g) => {
                    self.progress(&mut st, progress);
                    return Ok((g.handle, g.desc));
                }
                Enqueued::Waiting { handle, blocking } => {
                    let (tx, rx) = oneshot::channel();
                    st.waiters.insert(handle, tx);
                    progress.blocking.extend(blocking);
                    self.progress(&mut st, progress);
                    (handle, rx)
                }
            }
        };
        debug!(target_name = %self.name, cookie = handle.cookie, "lock waits");
        let bound = self.callback_timeout + ENQUEUE_WAIT_SLACK;
        match tokio::time::timeout(bound, rx).await {
            Ok(Ok(g)) => Ok((g.handle, g.desc)),
            Ok(Err(_)) => Err(LockError::Shutdown),
            Err(_) => {
                let mut st = self.state();
                st.waiters.remove(&handle);
                if let Ok(p) = st.table.cancel(handle) {
                    self.progress(&mut st, p);
                }
                warn!(target_name = %self.name, cookie = handle.cookie, "lock wait timed out");
                Err(LockError::TimedOut)
            }
        }
    }

    /// LDLM_CANCEL from the client of `export`. Handles it does not hold are ignored (the
    /// lock may be gone with an eviction already).
    pub fn cancel(&self, export: ExportId, handles: &[LockHandle]) {
        let client = ClientId(export.0);
        let mut st = self.state();
        for h in handles {
            let mine = st.table.get(*h).is_some_and(|l| l.client == client);
            if !mine {
                debug!(
                    cookie = h.cookie,
                    "cancel of a lock the client does not hold"
                );
                continue;
            }
            if let Ok(p) = st.table.cancel(*h) {
                self.progress(&mut st, p);
            }
        }
    }

    /// The export's connection ended: its locks are dropped.
    pub fn export_gone(&self, export: ExportId) {
        let mut st = self.state();
        let p = st.table.evict(ClientId(export.0));
        self.progress(&mut st, p);
    }

    /// Evicts the holders of locks whose blocking callback went unanswered past the
    /// callback timeout, until `shutdown`.
    pub async fn run_reaper(self: Arc<Self>, shutdown: CancellationToken) {
        loop {
            let next = self.state().table.next_deadline();
            let sleep = match next {
                Some(d) => d.saturating_duration_since(Instant::now()),
                None => Duration::from_secs(3600),
            };
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = self.deadline_added.notified() => continue,
                _ = tokio::time::sleep(sleep) => {}
            }
            let late = self.state().table.expired(Instant::now());
            for client in late {
                if client == SERVER {
                    continue;
                }
                let export = ExportId(client.0);
                self.exports.evict(
                    export,
                    &format!("{}: lock callback not answered in time", self.name),
                );
                let mut st = self.state();
                let p = st.table.evict(client);
                self.progress(&mut st, p);
            }
        }
        // Waiters end with the service.
        self.state().waiters.clear();
    }

    /// Delivers grants to their waiting enqueues and sends the blocking callbacks owed.
    fn progress(self: &LockServer, st: &mut State, mut progress: Progress) {
        loop {
            let mut orphans = Vec::new();
            for g in progress.granted.drain(..) {
                match st.waiters.remove(&g.handle) {
                    Some(tx) => {
                        let handle = g.handle;
                        if tx.send(g).is_err() {
                            // The enqueue gave up: nobody will use this lock.
                            orphans.push(handle);
                        }
                    }
                    None => debug!(cookie = g.handle.cookie, "grant with nobody waiting"),
                }
            }
            let blocking = std::mem::take(&mut progress.blocking);
            self.send_blocking(st, blocking);
            if orphans.is_empty() {
                return;
            }
            for h in orphans {
                if let Ok(p) = st.table.cancel(h) {
                    progress.granted.extend(p.granted);
                    progress.blocking.extend(p.blocking);
                }
            }
        }
    }

    fn send_blocking(&self, st: &mut State, blocking: Vec<Blocking>) {
        if blocking.is_empty() {
            return;
        }
        let now = Instant::now();
        for b in blocking {
            if b.client == SERVER {
                // The server's own locks are short and released by their guard.
                continue;
            }
            if st.table.callback_sent(b.handle, now).is_err() {
                continue;
            }
            self.deadline_added.notify_one();
            let exports = Arc::clone(&self.exports);
            let timeout = self.callback_timeout;
            let name = self.name.clone();
            let body = BlockingAst {
                handle: b.handle,
                conflict: b.conflict,
            }
            .to_wire();
            let export = ExportId(b.client.0);
            let cookie = b.handle.cookie;
            tokio::spawn(async move {
                match exports
                    .call(export, Opcode::LdlmBlCallback, body, timeout)
                    .await
                {
                    Ok(_) => debug!(target_name = %name, cookie, "blocking callback answered"),
                    Err(RpcError::Remote { errno, .. }) => {
                        // The client does not know the lock (it cancelled it, or lost it with
                        // a reconnect): its cancel, if any, is on the way or the reaper
                        // evicts it. Nothing else to do here.
                        info!(target_name = %name, cookie, %errno, "blocking callback refused");
                    }
                    Err(e) => debug!(target_name = %name, cookie, "blocking callback: {e}"),
                }
            });
        }
    }
}

/// Whether `client` holds a granted lock covering `desc` that is not being called back. A
/// lock being called back has a deadline; one that is not has no conflicting waiter either
/// (a waiter owes callbacks to every granted lock it conflicts with, and `progress` sends
/// them at once, under the same mutex as this look).
fn held_by(table: &LockTable, client: ClientId, desc: &LockDesc) -> bool {
    table.granted_on(&desc.resource).into_iter().any(|h| {
        table.get(h).is_some_and(|l| {
            l.client == client && l.callback_deadline.is_none() && policy::covers(&l.desc, desc)
        })
    })
}

/// A lock the server holds for itself; released when dropped.
pub struct ServerLock {
    server: Arc<LockServer>,
    handle: LockHandle,
}

impl ServerLock {
    pub fn handle(&self) -> LockHandle {
        self.handle
    }
}

impl Drop for ServerLock {
    fn drop(&mut self) {
        let mut st = self.server.state();
        if let Ok(p) = st.table.cancel(self.handle) {
            self.server.progress(&mut st, p);
        }
    }
}

#[cfg(test)]
mod tests;
