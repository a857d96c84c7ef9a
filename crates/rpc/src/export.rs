//! Exports: the server's side of a client connection, and requests from server to client.
//!
//! Lustre's servers send lock callbacks (blocking, completion, glimpse) to their clients.
//! Sheen sends them on the connection the client opened, as requests with the server's own
//! xids; the client's import answers them (the client needs no listening socket, so it works
//! behind any firewall or in its own network namespace).
//!
//! An export is created by each CONNECT that names a client uuid and lives as long as that
//! connection: a new connection of the same client is a new export with a new id. Whatever a
//! service keeps per client (locks) is keyed by [`ExportId`] and dropped when the export
//! ends, which the service learns through [`Exports::set_gone_hook`]. [`Exports::evict`]
//! ends an export from the server's side (a client that does not answer its callbacks).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use sheen_transport::MsgSender;
use sheen_wire::{msg, Errno, Message, MsgHeader, Nid, Opcode};
use tokio::sync::{oneshot, Mutex};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, Instrument};

use crate::{Reply, RpcError};

/// The server's name for one client connection (one CONNECT).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ExportId(pub u64);

impl std::fmt::Display for ExportId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "export#{}", self.0)
    }
}

/// Called once for every export that ends (connection closed, evicted, or replaced).
pub type GoneHook = Arc<dyn Fn(ExportId) + Send + Sync>;

/// Called with the client uuid of every export the server evicts.
pub type EvictHook = Arc<dyn Fn(&str) + Send + Sync>;

/// Called with the client uuid of every export that ends, after the [`GoneHook`].
pub type ClientGoneHook = Arc<dyn Fn(&str) + Send + Sync>;

/// Every live export of one server.
pub struct Exports {
    next_id: AtomicU64,
    live: std::sync::Mutex<HashMap<ExportId, Arc<Export>>>,
    gone_hook: OnceLock<GoneHook>,
    evict_hook: OnceLock<EvictHook>,
    client_gone_hook: OnceLock<ClientGoneHook>,
}

/// One client connection as the server sees it.
pub(crate) struct Export {
    pub(crate) id: ExportId,
    pub(crate) uuid: Arc<str>,
    pub(crate) peer: Nid,
    sender: Arc<Mutex<Box<dyn MsgSender>>>,
    pending: std::sync::Mutex<HashMap<u64, oneshot::Sender<Message>>>,
    /// Cancelled to close the connection from the server's side.
    pub(crate) close: CancellationToken,
}

impl Default for Exports {
    fn default() -> Exports {
        Exports {
            next_id: AtomicU64::new(1),
            live: std::sync::Mutex::new(HashMap::new()),
            gone_hook: OnceLock::new(),
            evict_hook: OnceLock::new(),
            client_gone_hook: OnceLock::new(),
        }
    }
}

impl Exports {
    pub fn new() -> Arc<Exports> {
        Arc::new(Exports::default())
    }

    /// Sets what to call when an export ends; only the first call has an effect.
    pub fn set_gone_hook(&self, hook: GoneHook) {
        let _ = self.gone_hook.set(hook);
    }

    /// Sets what to call, with the client's uuid, when an export ends (for what a service
    /// keeps per client rather than per connection); only the first call has an effect.
    pub fn set_client_gone_hook(&self, hook: ClientGoneHook) {
        let _ = self.client_gone_hook.set(hook);
    }

    /// Sets what to call when an export is evicted; only the first call has an effect.
    pub fn set_evict_hook(&self, hook: EvictHook) {
        let _ = self.evict_hook.set(hook);
    }

    /// How many exports are live.
    pub fn len(&self) -> usize {
        self.live.lock().map(|l| l.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether client `uuid` has a live export (it is connected now).
    pub fn has_client(&self, uuid: &str) -> bool {
        self.live
            .lock()
            .map(|l| l.values().any(|e| &*e.uuid == uuid))
            .unwrap_or(false)
    }

    /// Sends a request to the client of export `id` on its connection and waits up to
    /// `timeout` for the answer. A non-zero status in the answer is [`RpcError::Remote`].
    pub async fn call(
        &self,
        id: ExportId,
        opcode: Opcode,
        body: Bytes,
        timeout: Duration,
    ) -> Result<Reply, RpcError> {
        let export = self.get(id).ok_or(RpcError::ConnectionLost {
            opcode: opcode.name(),
            nid: id.to_string(),
        })?;
        let span = tracing::debug_span!("callback", op = opcode.name(), client = %export.uuid);
        export.call(opcode, body, timeout).instrument(span).await
    }

    /// Ends export `id`: its connection is closed, and the gone hook runs (once the
    /// connection's reader has stopped). The client reconnects as a new export.
    pub fn evict(&self, id: ExportId, why: &str) {
        if let Some(e) = self.get(id) {
            info!(client = %e.uuid, peer = %e.peer, %id, "evicting client: {why}");
            e.close.cancel();
            if let Some(hook) = self.evict_hook.get() {
                hook(&e.uuid);
            }
        }
    }

    /// Evicts every export of client `uuid`.
    pub fn evict_uuid(&self, uuid: &str, why: &str) {
        let ids: Vec<ExportId> = match self.live.lock() {
            Ok(l) => l
                .values()
                .filter(|e| &*e.uuid == uuid)
                .map(|e| e.id)
                .collect(),
            Err(_) => Vec::new(),
        };
        for id in ids {
            self.evict(id, why);
        }
    }

    fn get(&self, id: ExportId) -> Option<Arc<Export>> {
        self.live.lock().ok().and_then(|l| l.get(&id).cloned())
    }

    /// A new export for a connection that sent CONNECT naming `uuid`.
    pub(crate) fn attach(
        &self,
        uuid: &str,
        peer: Nid,
        sender: Arc<Mutex<Box<dyn MsgSender>>>,
        close: CancellationToken,
    ) -> Arc<Export> {
        let id = ExportId(self.next_id.fetch_add(1, Ordering::Relaxed));
        let export = Arc::new(Export {
            id,
            uuid: Arc::from(uuid),
            peer,
            sender,
            pending: std::sync::Mutex::new(HashMap::new()),
            close,
        });
        if let Ok(mut l) = self.live.lock() {
            l.insert(id, Arc::clone(&export));
        }
        debug!(client = uuid, %peer, %id, "export attached");
        export
    }

    /// The export's connection ended.
    pub(crate) fn detach(&self, id: ExportId) {
        let removed = self.live.lock().ok().and_then(|mut l| l.remove(&id));
        if let Some(e) = removed {
            e.fail_pending();
            debug!(client = %e.uuid, %id, "export gone");
            if let Some(hook) = self.gone_hook.get() {
                hook(id);
            }
            if let Some(hook) = self.client_gone_hook.get() {
                hook(&e.uuid);
            }
        }
    }
}

/// Xids of server-to-client requests. Their own counter (the client matches them against
/// nothing of its own), starting high so that they are easy to tell apart in logs.
fn next_callback_xid() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1 << 62);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

impl Export {
    async fn call(
        &self,
        opcode: Opcode,
        body: Bytes,
        timeout: Duration,
    ) -> Result<Reply, RpcError> {
        let lost = || RpcError::ConnectionLost {
            opcode: opcode.name(),
            nid: self.peer.to_string(),
        };
        if self.close.is_cancelled() {
            return Err(lost());
        }
        let xid = next_callback_xid();
        let (tx, rx) = oneshot::channel();
        self.pending.lock().map_err(|_| lost())?.insert(xid, tx);
        let header = MsgHeader::request(opcode.as_u32(), xid, sheen_wire::frame::NO_TARGET);
        let sent = self
            .sender
            .lock()
            .await
            .send(Message {
                header,
                body,
                bulk: Bytes::new(),
                bulk_crcs: None,
            })
            .await;
        if let Err(e) = sent {
            self.forget(xid);
            debug!(xid, "callback send failed: {e}");
            return Err(lost());
        }
        let reply = match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(reply)) => reply,
            Ok(Err(_)) => return Err(lost()),
            Err(_) => {
                self.forget(xid);
                return Err(RpcError::Timeout {
                    opcode: opcode.name(),
                    nid: self.peer.to_string(),
                    timeout_ms: timeout.as_millis() as u64,
                });
            }
        };
        if let Some(errno) = Errno::from_status(reply.header.status) {
            let message = sheen_wire::decode::<msg::ErrorReply>(&reply.body)
                .map(|e| e.message)
                .unwrap_or_default();
            return Err(RpcError::Remote {
                opcode: opcode.name(),
                nid: self.peer.to_string(),
                errno,
                message,
            });
        }
        Ok(Reply {
            header: reply.header,
            body: reply.body,
            bulk: reply.bulk,
        })
    }

    /// A reply from the client to one of our requests.
    pub(crate) fn deliver(&self, reply: Message) {
        let waiter = self
            .pending
            .lock()
            .ok()
            .and_then(|mut p| p.remove(&reply.header.xid));
        match waiter {
            Some(w) => {
                let _ = w.send(reply);
            }
            None => debug!(xid = reply.header.xid, "callback reply nobody waits for"),
        }
    }

    fn forget(&self, xid: u64) {
        if let Ok(mut p) = self.pending.lock() {
            p.remove(&xid);
        }
    }

    fn fail_pending(&self) {
        if let Ok(mut p) = self.pending.lock() {
            p.clear();
        }
    }
}
