//! The server side: accept loop, per-connection reader, a task per request with a span.
//!
//! A connection belongs to the client uuid it named in its CONNECT; the replies to that
//! client's modifying requests are kept in a reply cache shared by all its connections, so a
//! resend (same xid, `FLAG_RESENT`) is answered without executing twice. A connection that
//! sends requests before CONNECT is served anonymously, without a reply cache.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use sheen_transport::{Connection, Listener, MsgSender, TransportError};
use sheen_wire::frame::{MsgKind, FLAG_REPLAY};

use crate::export::{Export, ExportId, Exports};
use crate::replay::{decode_envelope, ReplayInfo};
use crate::reply_cache::{CacheLimits, ClientReplies, Lookup, ReplyCache, MAX_CLIENT_UUID_BYTES};
use sheen_wire::{msg, Errno, Message, MsgHeader, Nid, Opcode, WireDecode, WireEncode};
use tokio::sync::{Mutex, Semaphore};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn, Instrument};

/// Requests one connection may have in flight at the server at once.
pub const MAX_REQUESTS_IN_FLIGHT_PER_CONNECTION: usize = 64;

/// One received request.
pub struct Request {
    pub header: MsgHeader,
    pub opcode: Opcode,
    pub body: Bytes,
    pub bulk: Bytes,
    /// The crc32c of each 4 KiB piece of `bulk` (`sheen_wire::piece_crc`), checked against
    /// the bulk frames' crcs by the transport that received it, when it recorded them.
    pub bulk_crcs: Option<Arc<[u32]>>,
    pub peer: Nid,
    /// The export (client connection) the request came on; `None` before CONNECT.
    pub export: Option<ExportId>,
    /// The uuid the client named at CONNECT; `None` before CONNECT.
    pub client: Option<Arc<str>>,
    /// Set for a replay (`FLAG_REPLAY`): the original transno and reply; `bulk` is then the
    /// original bulk (see [`crate::replay`]).
    pub replay: Option<ReplayInfo>,
}

impl Request {
    /// Decodes the body, validating it; a malformed body becomes an EPROTO error reply.
    pub fn decode<T: WireDecode>(&self) -> Result<T, ServiceError> {
        T::from_wire(&self.body)
            .map_err(|e| ServiceError::new(Errno::EPROTO, format!("{}: {e}", self.opcode.name())))
    }

    pub fn target_idx(&self) -> u32 {
        self.header.target_idx
    }
}

/// A successful reply.
pub struct Response {
    pub body: Bytes,
    pub bulk: Bytes,
    /// The crc32c of each 4 KiB piece of `bulk`, where the service has them (it verified
    /// the bytes against them), so that the transport need not sum the bulk again.
    pub bulk_crcs: Option<Arc<[u32]>>,
    /// The transaction number of a modifying request, 0 otherwise.
    pub transno: u64,
}

impl Response {
    pub fn new<T: WireEncode>(body: &T) -> Response {
        Response {
            body: body.to_wire(),
            bulk: Bytes::new(),
            bulk_crcs: None,
            transno: 0,
        }
    }

    pub fn empty() -> Response {
        Response::new(&msg::Empty {})
    }

    pub fn with_bulk(mut self, bulk: Bytes) -> Response {
        self.bulk = bulk;
        self.bulk_crcs = None;
        self
    }

    /// The bulk with the crc32c of each of its 4 KiB pieces; crcs that do not fit it are
    /// dropped (the transport then sums the bulk itself).
    pub fn with_bulk_and_crcs(mut self, bulk: Bytes, crcs: Option<Arc<[u32]>>) -> Response {
        self.bulk_crcs = crcs.filter(|c| sheen_wire::piece_crc::fits(c, bulk.len()));
        self.bulk = bulk;
        self
    }

    pub fn with_transno(mut self, transno: u64) -> Response {
        self.transno = transno;
        self
    }
}

/// A failed request: the errno goes in the header status, the message in the body.
#[derive(Debug)]
pub struct ServiceError {
    pub errno: Errno,
    pub message: String,
}

impl ServiceError {
    pub fn new(errno: Errno, message: impl Into<String>) -> ServiceError {
        ServiceError {
            errno,
            message: message.into(),
        }
    }
}

impl From<Errno> for ServiceError {
    fn from(errno: Errno) -> ServiceError {
        ServiceError {
            errno,
            message: String::new(),
        }
    }
}

/// What a daemon implements: the handling of its opcodes.
#[async_trait]
pub trait Service: Send + Sync + 'static {
    /// The service's name in logs and connect replies (`sheen-MDT0000`, `MGS`, `OSS`).
    fn name(&self) -> String;
    /// Changes on every start of the server, so clients notice restarts.
    fn instance(&self) -> u64;
    /// The highest transaction number known durable, sent with every reply.
    fn last_committed(&self) -> u64 {
        0
    }
    /// Whether a request changes state, so that executing it twice differs from once: the
    /// replies to these are saved and a resend gets the saved reply. Reads are executed
    /// again. The default names the opcodes that modify something.
    fn is_modifying(&self, opcode: Opcode) -> bool {
        matches!(
            opcode,
            Opcode::MdsReint
                | Opcode::MdsReintCancel
                | Opcode::MdsOpen
                | Opcode::MdsClose
                | Opcode::OstCreate
                | Opcode::OstDestroy
                | Opcode::OstDestroyBatch
                | Opcode::OstWrite
                | Opcode::OstPunch
                | Opcode::OstFallocate
                | Opcode::OstSetattr
                | Opcode::MgsTargetReg
        )
    }
    async fn handle(&self, req: Request) -> Result<Response, ServiceError>;
    /// Client `client` has replayed everything it kept (an OBD_PING with `FLAG_REPLAY`
    /// after its replays, see [`crate::replay`]).
    async fn replay_done(&self, _client: &str) {}
    /// Client `client` said goodbye (a DISCONNECT): it will not replay anything.
    async fn client_disconnected(&self, _client: &str) {}
}

/// Accepts connections until `shutdown` is cancelled and serves each on its own task.
pub async fn serve(
    listener: Box<dyn Listener>,
    service: Arc<dyn Service>,
    shutdown: CancellationToken,
) {
    serve_with_exports(listener, service, Exports::new(), shutdown).await;
}

/// [`serve`] keeping its exports in `exports`, through which the service sends requests to
/// its clients (lock callbacks) and learns when a client's connection ends.
pub async fn serve_with_exports(
    listener: Box<dyn Listener>,
    service: Arc<dyn Service>,
    exports: Arc<Exports>,
    shutdown: CancellationToken,
) {
    let cache = Arc::new(ReplyCache::new(CacheLimits::default()));
    serve_with_cache(listener, service, cache, exports, shutdown).await;
}

/// [`serve`] with a given reply cache (tests look at it).
pub(crate) async fn serve_with_cache(
    mut listener: Box<dyn Listener>,
    service: Arc<dyn Service>,
    cache: Arc<ReplyCache>,
    exports: Arc<Exports>,
    shutdown: CancellationToken,
) {
    let local = listener.local_nid();
    info!(nid = %local, service = %service.name(), "serving");
    loop {
        let conn = tokio::select! {
            _ = shutdown.cancelled() => break,
            c = listener.accept() => c,
        };
        match conn {
            Ok(conn) => {
                let service = Arc::clone(&service);
                let cache = Arc::clone(&cache);
                let exports = Arc::clone(&exports);
                let shutdown = shutdown.clone();
                let peer = conn.peer;
                tokio::spawn(
                    serve_connection(conn, service, cache, exports, shutdown)
                        .instrument(tracing::info_span!("conn", peer = %peer)),
                );
            }
            Err(e) => {
                warn!("failed to accept a connection: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
        }
    }
    info!(nid = %local, "stopped serving");
}

async fn serve_connection(
    conn: Connection,
    service: Arc<dyn Service>,
    cache: Arc<ReplyCache>,
    exports: Arc<Exports>,
    shutdown: CancellationToken,
) {
    let Connection {
        sender,
        mut receiver,
        peer,
    } = conn;
    let sender: Arc<Mutex<Box<dyn MsgSender>>> = Arc::new(Mutex::new(sender));
    let permits = Arc::new(Semaphore::new(MAX_REQUESTS_IN_FLIGHT_PER_CONNECTION));
    // The reply cache of the client this connection belongs to, known after CONNECT.
    let mut client: Option<Arc<ClientReplies>> = None;
    // The export this connection is, after CONNECT; closed by the server through `close`.
    let close = shutdown.child_token();
    let mut export: Option<Arc<Export>> = None;
    debug!("connection accepted");
    loop {
        let msg = tokio::select! {
            _ = close.cancelled() => break,
            m = receiver.recv() => m,
        };
        let msg = match msg {
            Ok(m) => m,
            Err(TransportError::Closed) => {
                debug!("connection closed by peer");
                break;
            }
            Err(e) => {
                warn!("closing connection after a bad frame: {e}");
                break;
            }
        };
        if msg.header.kind != MsgKind::Request {
            // The answer to one of our callbacks.
            match export.as_ref() {
                Some(e) => {
                    e.deliver(msg);
                    continue;
                }
                None => {
                    warn!(
                        xid = msg.header.xid,
                        "closing connection: a reply before CONNECT"
                    );
                    break;
                }
            }
        }
        let Ok(permit) = Arc::clone(&permits).acquire_owned().await else {
            break;
        };
        // CONNECT is handled here, before the next request is read, so that the requests
        // that follow it on this connection see the client's reply cache.
        let connected = match Opcode::from_u32(msg.header.opcode) {
            Some(op @ (Opcode::MgsConnect | Opcode::MdsConnect | Opcode::OstConnect)) => {
                let (reply, uuid) = connect(&*service, &msg, op);
                if let Some(uuid) = uuid {
                    client = Some(cache.client(&uuid));
                    if let Some(old) = export.take() {
                        exports.detach(old.id);
                    }
                    let e = exports.attach(&uuid, peer, Arc::clone(&sender), close.clone());
                    export = Some(e);
                }
                Some(reply)
            }
            _ => None,
        };
        let service = Arc::clone(&service);
        let sender = Arc::clone(&sender);
        let client = client.clone();
        let export_id = export.as_ref().map(|e| (e.id, Arc::clone(&e.uuid)));
        // The peer is on the connection's span, this span's parent.
        let span = tracing::info_span!(
            "rpc",
            opcode = msg.header.opcode,
            xid = msg.header.xid,
            target = msg.header.target_idx
        );
        tokio::spawn(
            async move {
                let reply = match connected {
                    Some(reply) => reply,
                    None => dispatch(&*service, client, msg, peer, export_id).await,
                };
                if let Err(e) = sender.lock().await.send(reply).await {
                    debug!("failed to send reply: {e}");
                }
                drop(permit);
            }
            .instrument(span),
        );
    }
    if let Some(e) = export.take() {
        exports.detach(e.id);
    }
}

/// Answers a CONNECT; returns the reply and the client uuid it names, if valid.
fn connect(service: &dyn Service, msg: &Message, op: Opcode) -> (Message, Option<String>) {
    let (result, uuid) = match sheen_wire::decode::<msg::ConnectReq>(&msg.body) {
        Ok(c) if c.client_uuid.len() > MAX_CLIENT_UUID_BYTES => (
            Err(ServiceError::new(
                Errno::EPROTO,
                format!(
                    "connect: client uuid of {} bytes (at most {MAX_CLIENT_UUID_BYTES})",
                    c.client_uuid.len()
                ),
            )),
            None,
        ),
        Ok(c) => {
            debug!(client = %c.client_uuid, target = %c.target, op = op.name(), "connect");
            let reply = Response::new(&msg::ConnectReply {
                server_uuid: service.name(),
                instance: service.instance(),
            });
            (Ok(reply), Some(c.client_uuid))
        }
        Err(e) => (
            Err(ServiceError::new(Errno::EPROTO, format!("connect: {e}"))),
            None,
        ),
    };
    (reply_message(service, msg.header, result), uuid)
}

/// Executes one request, or, for a resend of a modifying request of a known client, answers
/// it from the reply cache (waiting for the first copy when it is still executing).
async fn dispatch(
    service: &dyn Service,
    client: Option<Arc<ClientReplies>>,
    msg: Message,
    peer: Nid,
    export: Option<(ExportId, Arc<str>)>,
) -> Message {
    let modifying = Opcode::from_u32(msg.header.opcode).is_some_and(|op| {
        !matches!(
            op,
            Opcode::MgsConnect
                | Opcode::MdsConnect
                | Opcode::OstConnect
                | Opcode::MgsDisconnect
                | Opcode::MdsDisconnect
                | Opcode::OstDisconnect
                | Opcode::ObdPing
        ) && service.is_modifying(op)
    });
    let lookup = match client {
        Some(c) if modifying => c.begin(&msg.header),
        _ => return handle_one(service, msg, peer, export).await,
    };
    let req_header = msg.header;
    match lookup {
        Lookup::Execute(ticket) => {
            let reply = handle_one(service, msg, peer, export).await;
            if let Some(t) = ticket {
                t.finish(&reply);
            }
            reply
        }
        Lookup::Saved(reply) => reconstructed(service, reply),
        Lookup::Wait(mut done) => match done.wait_for(Option::is_some).await {
            Ok(reply) => match reply.as_ref() {
                Some(reply) => reconstructed(service, reply.clone()),
                None => first_copy_failed(service, req_header),
            },
            Err(_) => first_copy_failed(service, req_header),
        },
    }
}

/// A saved reply sent again, with the current `last_committed`.
fn reconstructed(service: &dyn Service, mut reply: Message) -> Message {
    reply.header.last_committed = service.last_committed();
    reply
}

fn first_copy_failed(service: &dyn Service, req_header: MsgHeader) -> Message {
    let err = ServiceError::new(
        Errno::EIO,
        "the first copy of this resent request ended without a reply",
    );
    reply_message(service, req_header, Err(err))
}

async fn handle_one(
    service: &dyn Service,
    msg: Message,
    peer: Nid,
    export: Option<(ExportId, Arc<str>)>,
) -> Message {
    let req_header = msg.header;
    let result = match Opcode::from_u32(req_header.opcode) {
        None => Err(ServiceError::new(
            Errno::EOPNOTSUPP,
            format!("unknown opcode {}", req_header.opcode),
        )),
        Some(op @ (Opcode::MgsConnect | Opcode::MdsConnect | Opcode::OstConnect)) => {
            return connect(service, &msg, op).0;
        }
        Some(Opcode::MgsDisconnect | Opcode::MdsDisconnect | Opcode::OstDisconnect) => {
            if let Some((_, uuid)) = &export {
                service.client_disconnected(uuid).await;
            }
            Ok(Response::empty())
        }
        Some(Opcode::ObdPing) => {
            if let (true, Some((_, uuid))) = (req_header.flags & FLAG_REPLAY != 0, &export) {
                debug!(client = %uuid, "client finished replaying");
                service.replay_done(uuid).await;
            }
            Ok(Response::empty())
        }
        Some(opcode) if req_header.flags & FLAG_REPLAY != 0 => match decode_envelope(&msg.bulk) {
            Ok((bulk, reply)) => {
                let req = Request {
                    header: req_header,
                    opcode,
                    body: msg.body,
                    bulk,
                    bulk_crcs: None,
                    peer,
                    export: export.as_ref().map(|(id, _)| *id),
                    client: export.map(|(_, uuid)| uuid),
                    replay: Some(ReplayInfo {
                        transno: req_header.transno,
                        reply,
                    }),
                };
                service.handle(req).await
            }
            Err(e) => Err(ServiceError::new(Errno::EPROTO, e)),
        },
        Some(opcode) => {
            let req = Request {
                header: req_header,
                opcode,
                body: msg.body,
                bulk: msg.bulk,
                bulk_crcs: msg.bulk_crcs,
                peer,
                export: export.as_ref().map(|(id, _)| *id),
                client: export.map(|(_, uuid)| uuid),
                replay: None,
            };
            service.handle(req).await
        }
    };
    reply_message(service, req_header, result)
}

/// The reply to a request with header `req_header`.
fn reply_message(
    service: &dyn Service,
    req_header: MsgHeader,
    result: Result<Response, ServiceError>,
) -> Message {
    reply_to(req_header, service.last_committed(), result)
}

/// The reply to a request with header `req_header`, carrying `last_committed`.
pub(crate) fn reply_to(
    req_header: MsgHeader,
    last_committed: u64,
    result: Result<Response, ServiceError>,
) -> Message {
    let mut header = req_header;
    header.kind = MsgKind::Reply;
    header.flags = 0;
    header.last_committed = last_committed;
    match result {
        Ok(resp) => {
            header.status = 0;
            header.transno = resp.transno;
            Message {
                header,
                body: resp.body,
                bulk: resp.bulk,
                bulk_crcs: resp.bulk_crcs,
            }
        }
        Err(e) => {
            debug!(errno = e.errno.raw(), "request failed: {}", e.message);
            header.status = e.errno.to_status();
            header.transno = 0;
            let body = sheen_wire::encode(&msg::ErrorReply { message: e.message });
            Message {
                header,
                body,
                bulk: Bytes::new(),
                bulk_crcs: None,
            }
        }
    }
}
