//! The server side: accept loop, per-connection reader, a task per request with a span.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use sheen_transport::{Connection, Listener, MsgSender, TransportError};
use sheen_wire::frame::MsgKind;
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
    pub peer: Nid,
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
    /// The transaction number of a modifying request, 0 otherwise.
    pub transno: u64,
}

impl Response {
    pub fn new<T: WireEncode>(body: &T) -> Response {
        Response {
            body: body.to_wire(),
            bulk: Bytes::new(),
            transno: 0,
        }
    }

    pub fn empty() -> Response {
        Response::new(&msg::Empty {})
    }

    pub fn with_bulk(mut self, bulk: Bytes) -> Response {
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
    async fn handle(&self, req: Request) -> Result<Response, ServiceError>;
}

/// Accepts connections until `shutdown` is cancelled and serves each on its own task.
pub async fn serve(
    mut listener: Box<dyn Listener>,
    service: Arc<dyn Service>,
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
                let shutdown = shutdown.clone();
                let peer = conn.peer;
                tokio::spawn(
                    serve_connection(conn, service, shutdown)
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
    shutdown: CancellationToken,
) {
    let Connection {
        sender,
        mut receiver,
        peer,
    } = conn;
    let sender: Arc<Mutex<Box<dyn MsgSender>>> = Arc::new(Mutex::new(sender));
    let permits = Arc::new(Semaphore::new(MAX_REQUESTS_IN_FLIGHT_PER_CONNECTION));
    debug!("connection accepted");
    loop {
        let msg = tokio::select! {
            _ = shutdown.cancelled() => break,
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
            warn!(
                xid = msg.header.xid,
                "closing connection: peer sent a reply to a server"
            );
            break;
        }
        let Ok(permit) = Arc::clone(&permits).acquire_owned().await else {
            break;
        };
        let service = Arc::clone(&service);
        let sender = Arc::clone(&sender);
        let span = tracing::info_span!(
            "rpc",
            opcode = msg.header.opcode,
            xid = msg.header.xid,
            peer = %peer,
            target = msg.header.target_idx
        );
        tokio::spawn(
            async move {
                let reply = handle_one(&*service, msg, peer).await;
                if let Err(e) = sender.lock().await.send(reply).await {
                    debug!("failed to send reply: {e}");
                }
                drop(permit);
            }
            .instrument(span),
        );
    }
}

async fn handle_one(service: &dyn Service, msg: Message, peer: Nid) -> Message {
    let req_header = msg.header;
    let result = match Opcode::from_u32(req_header.opcode) {
        None => Err(ServiceError::new(
            Errno::EOPNOTSUPP,
            format!("unknown opcode {}", req_header.opcode),
        )),
        Some(op @ (Opcode::MgsConnect | Opcode::MdsConnect | Opcode::OstConnect)) => {
            match sheen_wire::decode::<msg::ConnectReq>(&msg.body) {
                Ok(c) => {
                    debug!(client = %c.client_uuid, target = %c.target, op = op.name(), "connect");
                    Ok(Response::new(&msg::ConnectReply {
                        server_uuid: service.name(),
                        instance: service.instance(),
                    }))
                }
                Err(e) => Err(ServiceError::new(Errno::EPROTO, format!("connect: {e}"))),
            }
        }
        Some(Opcode::MgsDisconnect | Opcode::MdsDisconnect | Opcode::OstDisconnect) => {
            Ok(Response::empty())
        }
        Some(Opcode::ObdPing) => Ok(Response::empty()),
        Some(opcode) => {
            let req = Request {
                header: req_header,
                opcode,
                body: msg.body,
                bulk: msg.bulk,
                peer,
            };
            service.handle(req).await
        }
    };
    let mut header = req_header;
    header.kind = MsgKind::Reply;
    header.flags = 0;
    header.last_committed = service.last_committed();
    match result {
        Ok(resp) => {
            header.status = 0;
            header.transno = resp.transno;
            Message {
                header,
                body: resp.body,
                bulk: resp.bulk,
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
            }
        }
    }
}
