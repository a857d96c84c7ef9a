//! The client side of RPC: an import per (client, service) pair.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use sheen_transport::{MsgSender, Transport};
use sheen_wire::frame::{MsgKind, FLAG_REPLAY, FLAG_RESENT, NO_TARGET};
use sheen_wire::{msg, Errno, Message, MsgHeader, Nid, Opcode, WireDecode, WireEncode};
use tokio::sync::{oneshot, Mutex};
use tracing::{debug, info, warn, Instrument};

use crate::replay::{encode_envelope, Kept, ReplayList};
use crate::server::reply_to;
use crate::{Request, Response, RpcError, ServiceError};

/// What a client does with the requests a server sends it on the import's connection (lock
/// callbacks, see [`crate::Exports`]).
#[async_trait::async_trait]
pub trait CallbackHandler: Send + Sync + 'static {
    /// Answers one request from the server.
    async fn handle(&self, req: Request) -> Result<Response, ServiceError>;
    /// The connection ended: whatever the server kept for it (locks) is gone with it.
    fn connection_ended(&self, nid: Nid);
    /// A new connection was made (the first, or a reconnect): a new export at the server.
    fn connected(&self, _nid: Nid) {}
}

/// The callback handler of an import (a newtype so [`ImportConfig`] stays `Debug`).
#[derive(Clone)]
pub struct Callbacks(pub Arc<dyn CallbackHandler>);

impl std::fmt::Debug for Callbacks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Callbacks")
    }
}

/// Limits and identity of one import.
#[derive(Clone, Debug)]
pub struct ImportConfig {
    /// How long one request waits for its reply.
    pub timeout: Duration,
    /// How long one connection attempt may take.
    pub connect_timeout: Duration,
    /// How long a request keeps trying to reach a server that does not answer (restarts
    /// take this long at most before applications see an error).
    pub retry_for: Duration,
    /// Who we are, sent at connect.
    pub client_uuid: String,
    /// The target we connect to (`sheen-OST0001`), or empty.
    pub target: String,
    /// The service's CONNECT opcode.
    pub connect_opcode: Opcode,
    /// Who answers the server's requests; without one, a request from the server ends the
    /// connection.
    pub callbacks: Option<Callbacks>,
}

impl ImportConfig {
    pub fn new(client_uuid: impl Into<String>, connect_opcode: Opcode) -> ImportConfig {
        ImportConfig {
            timeout: Duration::from_secs(60),
            connect_timeout: Duration::from_secs(5),
            retry_for: Duration::from_secs(60),
            client_uuid: client_uuid.into(),
            target: String::new(),
            connect_opcode,
            callbacks: None,
        }
    }
}

/// A reply: its header (status 0), body and bulk.
#[derive(Debug)]
pub struct Reply {
    pub header: MsgHeader,
    pub body: Bytes,
    pub bulk: Bytes,
}

/// One client's connection to one service, reconnected as needed. Cheap to clone.
///
/// A service may be reachable at several NIDs (failover NIDs, in order of preference): when
/// connecting fails, the import tries the next NID in turn, starting from the one that last
/// worked, so a server that moved to its failover NID is found in the same reconnect pass.
#[derive(Clone)]
pub struct Import {
    inner: Arc<Inner>,
}

struct Inner {
    /// Every NID of the service with its transport; never empty.
    peers: Vec<(Nid, Arc<dyn Transport>)>,
    /// Index in `peers` of the NID that last worked (or is tried first).
    current: AtomicUsize,
    config: ImportConfig,
    live: Mutex<Option<Arc<Live>>>,
    last_committed: AtomicU64,
    /// The requests whose changes the server has not committed yet, replayed to a new
    /// instance of the server ([`crate::replay`]).
    replay: std::sync::Mutex<ReplayList>,
    /// Set once a reply came before its change was committed: the server commits
    /// asynchronously and waits for its clients after a restart, so a lost connection is
    /// made again at once (and the import says it is done replaying).
    server_replies_early: AtomicBool,
    server_instance: AtomicU64,
    /// Bumped on every successful connect: a new connection is a new export at the server,
    /// so what the server kept for the previous one (locks) is gone.
    generation: AtomicU64,
}

/// An established connection with its reader task.
struct Live {
    /// The NID this connection went to.
    nid: Nid,
    sender: Mutex<Box<dyn MsgSender>>,
    pending: std::sync::Mutex<HashMap<u64, oneshot::Sender<Message>>>,
    closed: AtomicBool,
    reader: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Live {
    fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        // Dropping the senders wakes every waiter with "connection lost".
        if let Ok(mut p) = self.pending.lock() {
            p.clear();
        }
    }

    /// Closes the connection and stops its reader task.
    fn abort_reader(&self) {
        self.close();
        if let Ok(mut r) = self.reader.lock() {
            if let Some(h) = r.take() {
                h.abort();
            }
        }
    }

    fn forget(&self, xid: u64) {
        if let Ok(mut p) = self.pending.lock() {
            p.remove(&xid);
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Ok(guard) = self.live.try_lock() {
            if let Some(live) = guard.as_ref() {
                if let Ok(mut r) = live.reader.lock() {
                    if let Some(h) = r.take() {
                        h.abort();
                    }
                }
            }
        }
    }
}

/// The next xid of this process. One counter for every import, so that the xids of one
/// client uuid never repeat across its imports (the server's reply cache is keyed by client
/// uuid and xid); seeded from the clock so that a restarted process starts above the xids
/// of its previous run.
fn next_xid() -> u64 {
    static NEXT: OnceLock<AtomicU64> = OnceLock::new();
    NEXT.get_or_init(|| {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_micros() as u64)
            .unwrap_or(1);
        AtomicU64::new(seed)
    })
    .fetch_add(1, Ordering::Relaxed)
}

impl Import {
    /// An import of a service at one NID.
    pub fn new(transport: Arc<dyn Transport>, nid: Nid, config: ImportConfig) -> Import {
        Import::with_peers(vec![(nid, transport)], config)
    }

    /// An import of a service at several NIDs, in order of preference (the first is tried
    /// first); each NID gets the transport [`sheen_transport::for_nid`] chooses. Repeated
    /// NIDs are dropped; an empty list is [`RpcError::NoNid`].
    pub fn with_nids(nids: &[Nid], config: ImportConfig) -> Result<Import, RpcError> {
        let mut peers: Vec<(Nid, Arc<dyn Transport>)> = Vec::with_capacity(nids.len());
        for nid in nids {
            if !peers.iter().any(|(n, _)| n == nid) {
                peers.push((*nid, sheen_transport::for_nid(nid)?));
            }
        }
        if peers.is_empty() {
            return Err(RpcError::NoNid);
        }
        Ok(Import::with_peers(peers, config))
    }

    fn with_peers(peers: Vec<(Nid, Arc<dyn Transport>)>, config: ImportConfig) -> Import {
        Import {
            inner: Arc::new(Inner {
                peers,
                current: AtomicUsize::new(0),
                config,
                live: Mutex::new(None),
                last_committed: AtomicU64::new(0),
                replay: std::sync::Mutex::new(ReplayList::default()),
                server_replies_early: AtomicBool::new(false),
                server_instance: AtomicU64::new(0),
                generation: AtomicU64::new(0),
            }),
        }
    }

    /// The NID in use: the one that last worked, or the one tried next.
    pub fn nid(&self) -> Nid {
        let current = self.inner.current.load(Ordering::Relaxed);
        self.inner.peers[current % self.inner.peers.len()].0
    }

    /// After `nid` failed to answer: the next connection starts with the NID after it
    /// (unless another call moved on already).
    fn move_past(&self, nid: Nid) {
        let n = self.inner.peers.len();
        if let Some(i) = self.inner.peers.iter().position(|(p, _)| *p == nid) {
            let _ = self.inner.current.compare_exchange(
                i,
                (i + 1) % n,
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
        }
    }

    /// Every NID of the service, in the order given.
    pub fn nids(&self) -> Vec<Nid> {
        self.inner.peers.iter().map(|(nid, _)| *nid).collect()
    }

    /// The highest transno the server has said is durable.
    pub fn last_committed(&self) -> u64 {
        self.inner.last_committed.load(Ordering::Relaxed)
    }

    /// How many requests are kept for replay (their changes are not committed yet).
    pub fn replay_len(&self) -> usize {
        self.inner.replay.lock().map(|l| l.len()).unwrap_or(0)
    }

    /// How many connections this import has made; changes on every reconnect.
    pub fn generation(&self) -> u64 {
        self.inner.generation.load(Ordering::SeqCst)
    }

    /// The server instance seen at the last connect (changes when the server restarts).
    pub fn server_instance(&self) -> u64 {
        self.inner.server_instance.load(Ordering::Relaxed)
    }

    /// Sends a request and waits for its reply. A non-zero status becomes
    /// [`RpcError::Remote`].
    ///
    /// Every attempt of one call carries the same xid. When the connection breaks after the
    /// request left, the request is sent again (after reconnecting) with `FLAG_RESENT`, and
    /// the server answers it from its reply cache if it executed it already; a request that
    /// never left is sent again as it was. A request with no reply within `timeout` drops
    /// the connection and is resent the same way, to the next NID first. All keep trying
    /// for `retry_for` (from the call, or from its first timeout).
    pub async fn call_raw(
        &self,
        opcode: Opcode,
        target_idx: u32,
        body: Bytes,
        bulk: Bytes,
    ) -> Result<Reply, RpcError> {
        let cfg = &self.inner.config;
        let mut give_up = Instant::now() + cfg.retry_for;
        // Set at the first request timeout: the time to keep trying starts over from there
        // (a timeout takes as long as the whole retry time by default).
        let mut timed_out = false;
        let mut backoff = Duration::from_millis(20);
        let xid = self.xid();
        // Set once an attempt may have reached the server, and kept for every later attempt.
        let mut resent = false;
        loop {
            let live = match self.live().await {
                Ok(l) => l,
                Err(e) if Instant::now() < give_up => {
                    debug!(nid = %self.nid(), "reconnect failed, retrying: {e}");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                    continue;
                }
                Err(e) => return Err(e),
            };
            let mut header = MsgHeader::request(opcode.as_u32(), xid, target_idx);
            if resent {
                header.flags |= FLAG_RESENT;
            }
            match self
                .round_trip(&live, header, body.clone(), bulk.clone(), opcode)
                .await
            {
                Ok(reply) => {
                    let reply = self.finish(live.nid, opcode, reply)?;
                    if reply.header.transno > self.last_committed() {
                        self.keep(Kept {
                            opcode,
                            target_idx,
                            xid,
                            body,
                            bulk,
                            reply: reply.body.clone(),
                            transno: reply.header.transno,
                        });
                    }
                    return Ok(reply);
                }
                Err(Attempt::NotSent) if Instant::now() < give_up => {
                    live.close();
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                }
                Err(Attempt::Lost) if Instant::now() < give_up => {
                    debug!(xid, op = opcode.name(), "reply lost: resending");
                    resent = true;
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                }
                Err(Attempt::TimedOut)
                    if !cfg.retry_for.is_zero() && (!timed_out || Instant::now() < give_up) =>
                {
                    if !timed_out {
                        timed_out = true;
                        give_up = Instant::now() + cfg.retry_for;
                    }
                    // A server that does not answer on a live connection is treated as a
                    // broken connection is (Lustre's request timeout): the connection is
                    // dropped, the next NID is tried first (a failover partner may serve the
                    // target now) and the request is resent, to be answered from the reply
                    // cache if the silent server did execute it and comes back.
                    live.abort_reader();
                    self.move_past(live.nid);
                    resent = true;
                }
                Err(Attempt::NotSent | Attempt::Lost) => {
                    return Err(RpcError::ConnectionLost {
                        opcode: opcode.name(),
                        nid: live.nid.to_string(),
                    })
                }
                Err(Attempt::TimedOut) => {
                    return Err(RpcError::Timeout {
                        opcode: opcode.name(),
                        nid: live.nid.to_string(),
                        timeout_ms: cfg.timeout.as_millis() as u64,
                    })
                }
            }
        }
    }

    /// Sends a typed request and decodes the typed reply.
    pub async fn call<Req, Rep>(
        &self,
        opcode: Opcode,
        target_idx: u32,
        req: &Req,
    ) -> Result<Rep, RpcError>
    where
        Req: WireEncode,
        Rep: WireDecode,
    {
        let (rep, _) = self
            .call_bulk(opcode, target_idx, req, Bytes::new())
            .await?;
        Ok(rep)
    }

    /// Like [`Import::call`], with bulk data sent and received.
    pub async fn call_bulk<Req, Rep>(
        &self,
        opcode: Opcode,
        target_idx: u32,
        req: &Req,
        bulk: Bytes,
    ) -> Result<(Rep, Bytes), RpcError>
    where
        Req: WireEncode,
        Rep: WireDecode,
    {
        let reply = self
            .call_raw(opcode, target_idx, req.to_wire(), bulk)
            .await?;
        let rep = Rep::from_wire(&reply.body)?;
        Ok((rep, reply.bulk))
    }

    /// OBD_PING: checks the server answers.
    pub async fn ping(&self) -> Result<(), RpcError> {
        self.call_raw(
            Opcode::ObdPing,
            sheen_wire::frame::NO_TARGET,
            Bytes::new(),
            Bytes::new(),
        )
        .await
        .map(|_| ())
    }

    /// Says goodbye to the server and drops the connection.
    pub async fn disconnect(&self) {
        let op = match self.inner.config.connect_opcode {
            Opcode::MdsConnect => Opcode::MdsDisconnect,
            Opcode::OstConnect => Opcode::OstDisconnect,
            _ => Opcode::MgsDisconnect,
        };
        let live = self.inner.live.lock().await.take();
        if let Some(live) = live {
            if !live.closed.load(Ordering::SeqCst) {
                let header =
                    MsgHeader::request(op.as_u32(), self.xid(), sheen_wire::frame::NO_TARGET);
                let body = sheen_wire::encode(&msg::Empty {});
                let _ = self.round_trip(&live, header, body, Bytes::new(), op).await;
            }
            live.close();
            if let Ok(mut r) = live.reader.lock() {
                if let Some(h) = r.take() {
                    h.abort();
                }
            }
        }
    }

    fn xid(&self) -> u64 {
        next_xid()
    }

    /// Keeps a request whose change is not committed yet, for replay.
    fn keep(&self, k: Kept) {
        self.inner
            .server_replies_early
            .store(true, Ordering::Relaxed);
        if let Ok(mut list) = self.inner.replay.lock() {
            // Read under the lock: a prune that raised it first has run already.
            let last_committed = self.last_committed();
            list.keep(k, last_committed);
        }
    }

    /// Notes the server's `last_committed` and drops the kept requests it covers.
    fn committed(&self, last_committed: u64) {
        let before = self
            .inner
            .last_committed
            .fetch_max(last_committed, Ordering::AcqRel);
        if last_committed > before {
            if let Ok(mut list) = self.inner.replay.lock() {
                list.prune(last_committed);
            }
        }
    }

    fn finish(&self, nid: Nid, opcode: Opcode, reply: Message) -> Result<Reply, RpcError> {
        self.committed(reply.header.last_committed);
        if let Some(errno) = Errno::from_status(reply.header.status) {
            let message = sheen_wire::decode::<msg::ErrorReply>(&reply.body)
                .map(|e| e.message)
                .unwrap_or_default();
            return Err(RpcError::Remote {
                opcode: opcode.name(),
                nid: nid.to_string(),
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

    async fn round_trip(
        &self,
        live: &Arc<Live>,
        header: MsgHeader,
        body: Bytes,
        bulk: Bytes,
        opcode: Opcode,
    ) -> Result<Message, Attempt> {
        let xid = header.xid;
        let (tx, rx) = oneshot::channel();
        match live.pending.lock() {
            Ok(mut p) => {
                p.insert(xid, tx);
            }
            Err(_) => return Err(Attempt::NotSent),
        }
        if live.closed.load(Ordering::SeqCst) {
            live.forget(xid);
            return Err(Attempt::NotSent);
        }
        let sent = live
            .sender
            .lock()
            .await
            .send(Message {
                header,
                body,
                bulk,
                bulk_crcs: None,
            })
            .await;
        if let Err(e) = sent {
            debug!(xid, op = opcode.name(), "send failed: {e}");
            live.forget(xid);
            live.close();
            return Err(Attempt::NotSent);
        }
        match tokio::time::timeout(self.inner.config.timeout, rx).await {
            Ok(Ok(reply)) => Ok(reply),
            Ok(Err(_)) => Err(Attempt::Lost),
            Err(_) => {
                live.forget(xid);
                warn!(xid, op = opcode.name(), nid = %live.nid, "request timed out");
                Err(Attempt::TimedOut)
            }
        }
    }

    /// The live connection, connecting (and sending CONNECT) when there is none: tries every
    /// NID once, starting from the one that last worked, and keeps the first that answers.
    async fn live(&self) -> Result<Arc<Live>, RpcError> {
        let mut guard = self.inner.live.lock().await;
        if let Some(l) = guard.as_ref() {
            if !l.closed.load(Ordering::SeqCst) {
                return Ok(Arc::clone(l));
            }
        }
        let n = self.inner.peers.len();
        let start = self.inner.current.load(Ordering::Relaxed) % n;
        let mut last_err = RpcError::NoNid;
        for k in 0..n {
            let i = (start + k) % n;
            match self.connect(i).await {
                Ok(live) => {
                    if i != start {
                        info!(
                            from = %self.inner.peers[start].0,
                            to = %live.nid,
                            "failed over to the next NID"
                        );
                    }
                    self.inner.current.store(i, Ordering::Relaxed);
                    *guard = Some(Arc::clone(&live));
                    return Ok(live);
                }
                Err(e) => {
                    if n > 1 {
                        debug!(nid = %self.inner.peers[i].0, "connect failed: {e}");
                    }
                    last_err = e;
                }
            }
        }
        Err(last_err)
    }

    /// Connects to the `i`th NID and sends CONNECT.
    async fn connect(&self, i: usize) -> Result<Arc<Live>, RpcError> {
        let (nid, transport) = match self.inner.peers.get(i) {
            Some((nid, transport)) => (*nid, transport),
            None => return Err(RpcError::NoNid),
        };
        let cfg = &self.inner.config;
        let conn = tokio::time::timeout(cfg.connect_timeout, transport.connect(&nid))
            .await
            .map_err(|_| RpcError::Timeout {
                opcode: "connect",
                nid: nid.to_string(),
                timeout_ms: cfg.connect_timeout.as_millis() as u64,
            })??;
        let live = Arc::new(Live {
            nid,
            sender: Mutex::new(conn.sender),
            pending: std::sync::Mutex::new(HashMap::new()),
            closed: AtomicBool::new(false),
            reader: std::sync::Mutex::new(None),
        });
        let mut receiver = conn.receiver;
        let weak = Arc::downgrade(&live);
        let weak_import = Arc::downgrade(&self.inner);
        let callbacks = cfg.callbacks.clone();
        let reader = tokio::spawn(async move {
            let ended = |live: &Live| {
                live.close();
                if let Some(cb) = &callbacks {
                    cb.0.connection_ended(nid);
                }
                // Uncommitted changes are replayed as soon as the server is back, not at
                // the next call: a server in recovery waits for its clients.
                if let Some(inner) = weak_import.upgrade() {
                    let kept = inner.replay.lock().map(|l| l.len()).unwrap_or(0);
                    if kept > 0 || inner.server_replies_early.load(Ordering::Relaxed) {
                        let span = tracing::info_span!("replay_reconnect", %nid, kept);
                        tokio::spawn(Import { inner }.reconnect_to_replay().instrument(span));
                    }
                }
            };
            loop {
                let msg = receiver.recv().await;
                let Some(live) = weak.upgrade() else {
                    if let Some(cb) = &callbacks {
                        cb.0.connection_ended(nid);
                    }
                    return;
                };
                match msg {
                    Ok(m) if m.header.kind == MsgKind::Reply => {
                        let waiter = live
                            .pending
                            .lock()
                            .ok()
                            .and_then(|mut p| p.remove(&m.header.xid));
                        match waiter {
                            Some(w) => {
                                let _ = w.send(m);
                            }
                            None => {
                                debug!(xid = m.header.xid, "reply for a request no longer waiting")
                            }
                        }
                    }
                    Ok(m) => match &callbacks {
                        Some(cb) => spawn_callback(Arc::clone(&cb.0), Arc::clone(&live), m),
                        None => {
                            let xid = m.header.xid;
                            warn!(%nid, xid, "a request from the server, no callback handler");
                            ended(&live);
                            return;
                        }
                    },
                    Err(e) => {
                        debug!(%nid, "connection ended: {e}");
                        ended(&live);
                        return;
                    }
                }
            }
        });
        if let Ok(mut r) = live.reader.lock() {
            *r = Some(reader);
        }
        // CONNECT handshake.
        let connect = msg::ConnectReq {
            client_uuid: cfg.client_uuid.clone(),
            target: cfg.target.clone(),
        };
        let header = MsgHeader::request(
            cfg.connect_opcode.as_u32(),
            self.xid(),
            sheen_wire::frame::NO_TARGET,
        );
        let reply = self
            .round_trip(
                &live,
                header,
                sheen_wire::encode(&connect),
                Bytes::new(),
                cfg.connect_opcode,
            )
            .await;
        let connected = match reply {
            Ok(reply) => self
                .finish(nid, cfg.connect_opcode, reply)
                .and_then(|r| Ok(sheen_wire::decode::<msg::ConnectReply>(&r.body)?)),
            Err(_) => Err(RpcError::ConnectionLost {
                opcode: cfg.connect_opcode.name(),
                nid: nid.to_string(),
            }),
        };
        let connected = match connected {
            Ok(c) => c,
            Err(e) => {
                live.abort_reader();
                return Err(e);
            }
        };
        let old = self.inner.server_instance.load(Ordering::Relaxed);
        if old != 0 && old != connected.instance {
            debug!(%nid, server = %connected.server_uuid, "server restarted");
            // Before anyone else uses the connection: the server recovers its uncommitted
            // state from the replays of its clients, in transno order.
            if let Err(e) = self.replay(&live).await {
                live.abort_reader();
                return Err(e);
            }
        }
        self.inner
            .server_instance
            .store(connected.instance, Ordering::Relaxed);
        self.inner.generation.fetch_add(1, Ordering::SeqCst);
        if let Some(cb) = &cfg.callbacks {
            cb.0.connected(nid);
        }
        Ok(live)
    }

    /// Reconnects (for `retry_for`) so that the kept requests are replayed. Boxed: it is
    /// spawned from the reader task that [`Import::connect`] itself spawns.
    fn reconnect_to_replay(self) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send>> {
        Box::pin(self.reconnect_to_replay_inner())
    }

    async fn reconnect_to_replay_inner(self) {
        let give_up = Instant::now() + self.inner.config.retry_for;
        let mut backoff = Duration::from_millis(20);
        loop {
            match self.live().await {
                Ok(_) => return,
                Err(e) if Instant::now() < give_up => {
                    debug!(nid = %self.nid(), "reconnect to replay failed, retrying: {e}");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                }
                Err(e) => {
                    warn!(
                        nid = %self.nid(),
                        kept = self.replay_len(),
                        "could not reconnect to replay uncommitted requests: {e}"
                    );
                    return;
                }
            }
        }
    }

    /// Sends every kept request again, in transno order, with `FLAG_REPLAY` (see
    /// [`crate::replay`]), then tells the server this client is done (OBD_PING with
    /// `FLAG_REPLAY`). A replay the server refuses is dropped with a warning; a connection
    /// that breaks fails the connect (it is retried, and replays everything still kept).
    async fn replay(&self, live: &Arc<Live>) -> Result<(), RpcError> {
        let lost = |opcode: Opcode| RpcError::ConnectionLost {
            opcode: opcode.name(),
            nid: live.nid.to_string(),
        };
        // A call whose reply came just before the connection broke may keep its request
        // while the first pass runs: passes go on until one finds nothing new.
        let mut replayed = std::collections::HashSet::new();
        loop {
            let kept: Vec<Kept> = match self.inner.replay.lock() {
                Ok(list) => list.snapshot(),
                Err(_) => Vec::new(),
            };
            let kept: Vec<Kept> = kept
                .into_iter()
                .filter(|k| !replayed.contains(&k.transno))
                .collect();
            if kept.is_empty() {
                break;
            }
            info!(nid = %live.nid, n = kept.len(), "replaying uncommitted requests");
            for k in kept {
                replayed.insert(k.transno);
                self.replay_one(live, k).await.map_err(lost)?;
            }
        }
        let mut header = MsgHeader::request(Opcode::ObdPing.as_u32(), self.xid(), NO_TARGET);
        header.flags |= FLAG_REPLAY;
        let body = sheen_wire::encode(&msg::Empty {});
        let reply = self
            .round_trip(live, header, body, Bytes::new(), Opcode::ObdPing)
            .await
            .map_err(|_| lost(Opcode::ObdPing))?;
        self.committed(reply.header.last_committed);
        Ok(())
    }

    /// Replays one kept request; a refused one is dropped. `Err(opcode)`: the connection
    /// broke.
    async fn replay_one(&self, live: &Arc<Live>, k: Kept) -> Result<(), Opcode> {
        let mut header = MsgHeader::request(k.opcode.as_u32(), k.xid, k.target_idx);
        header.flags |= FLAG_REPLAY;
        header.transno = k.transno;
        let bulk = encode_envelope(&k.bulk, &k.reply);
        let reply = self
            .round_trip(live, header, k.body.clone(), bulk, k.opcode)
            .await
            .map_err(|_| k.opcode)?;
        if let Some(errno) = Errno::from_status(reply.header.status) {
            let message = sheen_wire::decode::<msg::ErrorReply>(&reply.body)
                .map(|e| e.message)
                .unwrap_or_default();
            warn!(
                xid = k.xid,
                transno = k.transno,
                op = k.opcode.name(),
                %errno,
                "replay refused, its change is lost: {message}"
            );
            if let Ok(mut list) = self.inner.replay.lock() {
                list.remove(k.transno);
            }
        }
        self.committed(reply.header.last_committed);
        Ok(())
    }
}

/// Answers one request from the server in its own task, on the connection it came on.
fn spawn_callback(handler: Arc<dyn CallbackHandler>, live: Arc<Live>, m: Message) {
    let header = m.header;
    let span = tracing::debug_span!("callback", opcode = header.opcode, xid = header.xid);
    tokio::spawn(
        async move {
            let result = match Opcode::from_u32(header.opcode) {
                Some(opcode) => {
                    let req = Request {
                        header,
                        opcode,
                        body: m.body,
                        bulk: m.bulk,
                        bulk_crcs: m.bulk_crcs,
                        peer: live.nid,
                        export: None,
                        client: None,
                        replay: None,
                    };
                    handler.handle(req).await
                }
                None => Err(ServiceError::new(
                    Errno::EOPNOTSUPP,
                    format!("unknown callback opcode {}", header.opcode),
                )),
            };
            let reply = reply_to(header, 0, result);
            if let Err(e) = live.sender.lock().await.send(reply).await {
                debug!("failed to answer a callback: {e}");
            }
        }
        .instrument(span),
    );
}

enum Attempt {
    /// The request never fully left: safe to send again.
    NotSent,
    /// The connection broke while waiting for the reply: the server may have executed it.
    Lost,
    TimedOut,
}
