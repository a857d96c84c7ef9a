//! The RDMA-emulated transport [LNet o2iblnd], for `@o2ib` / `@rdma` NIDs.
//!
//! It follows verbs semantics on ordinary hosts:
//!
//! - **Connection (queue pair).** A TCP *carrier* connection to the NID's address and port.
//!   Both ends send HELLO (their registered pool: pid, memfd number, token) and READY.
//! - **Memory registration.** Each end owns a registered pool ([`verbs::LocalPool`]); a
//!   message's bulk is registered as a region with an rkey, address, length and access flags.
//! - **Send/receive.** Header and body go by SEND over the carrier, with the bulk descriptor
//!   (rkey, address, length, crc32c) in the control header. Sends are flow-controlled by
//!   receive credits, as with posted receive buffers: at most [`RECV_QUEUE_DEPTH`] messages
//!   are unconsumed at the receiver; it returns credits as it consumes them.
//! - **One-sided READ.** The receiver pulls the bulk from the sender's region. When the peer
//!   is on the same host, the receiver has mapped the peer's pool (sealed memfd opened through
//!   `/proc/PID/fd/FD` and checked against the token) and the READ is a memcpy from shared
//!   memory, checked against the region table exactly as an HCA would. Otherwise (another
//!   host, or forced by [`RdmaTransport::carrier_only`] / `SHEEN_RDMA_SHM=0`) the READ is a
//!   request/response on the carrier, in pieces of at most 1 MiB, each checksummed.
//! - **Completion.** After the READ the receiver sends DONE(rkey) and the sender
//!   deregisters the region.
//!
//! A bad rkey, an access outside a region, a checksum mismatch or any malformed control
//! frame ends the connection with an error; nothing here panics on peer input.

pub mod frame;
#[doc(hidden)]
pub mod fuzzing;
pub mod verbs;

use std::collections::HashMap;
use std::io::IoSlice;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use sheen_wire::frame::MSG_HEADER_BYTES;
use sheen_wire::limits::BULK_FRAME_BYTES;
use sheen_wire::{FrameError, Message, MsgHeader, NetType, Nid};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, Semaphore};
use tokio::task::JoinSet;

use self::frame::{BulkDesc, Ctrl, CtrlError, CTRL_BYTES};
use self::verbs::{LocalPool, Mapping, VerbsError, ACCESS_REMOTE_READ, POOL_BYTES};
use crate::{Connection, Listener, MsgReceiver, MsgSender, Transport, TransportError};

/// Messages a receiver holds unconsumed (its receive queue); a sender's credits. Bounds the
/// memory a peer can make us hold to this many bodies (bulk stays in the peer's pool until
/// the message is consumed).
pub const RECV_QUEUE_DEPTH: u32 = 128;
/// Credits are returned in batches of this many consumed messages.
const CREDIT_BATCH: u32 = 16;
/// READ requests from the peer being served at once; more is a protocol violation (an
/// honest peer has at most one message's pieces outstanding).
const MAX_SERVED_READS: usize = 64;
/// Connection handshakes (HELLO, READY) in progress on one listener.
const MAX_HANDSHAKES: usize = 64;
/// A peer that does not finish the handshake in this time is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Socket buffer for carrier reads.
const READ_BUFFER_BYTES: usize = 256 << 10;

const _: () = assert!(CREDIT_BATCH < RECV_QUEUE_DEPTH);
const _: () = assert!(
    (sheen_wire::limits::MAX_BULK_BYTES / BULK_FRAME_BYTES as u64) as usize <= MAX_SERVED_READS
);

/// One-sided reads done through shared memory, for tests to see which path ran.
#[cfg(test)]
static SHM_READS: AtomicU64 = AtomicU64::new(0);

/// Errors specific to the RDMA-emulated transport.
#[derive(Debug, thiserror::Error)]
pub enum RdmaError {
    #[error("bad control frame: {0}")]
    Ctrl(#[from] CtrlError),
    #[error("verbs: {0}")]
    Verbs(#[from] VerbsError),
    #[error("protocol violation: {0}")]
    Protocol(&'static str),
}

impl From<CtrlError> for TransportError {
    fn from(e: CtrlError) -> TransportError {
        TransportError::Rdma(RdmaError::Ctrl(e))
    }
}

impl From<VerbsError> for TransportError {
    fn from(e: VerbsError) -> TransportError {
        TransportError::Rdma(RdmaError::Verbs(e))
    }
}

fn protocol(what: &'static str) -> TransportError {
    TransportError::Rdma(RdmaError::Protocol(what))
}

/// The RDMA-emulated transport. Same-host peers use shared memory for one-sided reads unless
/// `SHEEN_RDMA_SHM=0` is set in the environment.
pub struct RdmaTransport {
    shm: bool,
}

impl Default for RdmaTransport {
    fn default() -> RdmaTransport {
        let shm = std::env::var("SHEEN_RDMA_SHM").map_or(true, |v| v != "0");
        RdmaTransport { shm }
    }
}

impl RdmaTransport {
    /// Every one-sided operation goes over the carrier, as between two hosts.
    pub fn carrier_only() -> RdmaTransport {
        RdmaTransport { shm: false }
    }
}

#[async_trait]
impl Transport for RdmaTransport {
    async fn connect(&self, nid: &Nid) -> Result<Connection, TransportError> {
        let stream = TcpStream::connect(nid.socket_addr())
            .await
            .map_err(|source| TransportError::Connect { nid: *nid, source })?;
        let shm = self.shm;
        let nid = *nid;
        match tokio::time::timeout(HANDSHAKE_TIMEOUT, establish(stream, nid, shm)).await {
            Ok(r) => r,
            Err(_) => Err(TransportError::Connect {
                nid,
                source: std::io::Error::new(std::io::ErrorKind::TimedOut, "RDMA handshake"),
            }),
        }
    }

    async fn listen(&self, nid: &Nid) -> Result<Box<dyn Listener>, TransportError> {
        let listener = TcpListener::bind(nid.socket_addr())
            .await
            .map_err(|source| TransportError::Listen { nid: *nid, source })?;
        let local = listener.local_addr()?;
        let nid = Nid {
            port: local.port(),
            net: NetType::Rdma,
            ..*nid
        };
        Ok(Box::new(RdmaListener {
            listener,
            nid,
            shm: self.shm,
            handshakes: JoinSet::new(),
        }))
    }
}

struct RdmaListener {
    listener: TcpListener,
    nid: Nid,
    shm: bool,
    handshakes: JoinSet<Result<Connection, TransportError>>,
}

#[async_trait]
impl Listener for RdmaListener {
    async fn accept(&mut self) -> Result<Connection, TransportError> {
        // Handshakes run beside the accept loop so a slow or silent peer delays nobody.
        loop {
            let room = self.handshakes.len() < MAX_HANDSHAKES;
            tokio::select! {
                accepted = self.listener.accept(), if room => {
                    let (stream, addr) = accepted?;
                    let peer = Nid { addr: addr.ip(), port: addr.port(), ..self.nid };
                    let shm = self.shm;
                    self.handshakes.spawn(handshake_with_timeout(stream, peer, shm));
                }
                Some(done) = self.handshakes.join_next() => {
                    match done {
                        Ok(Ok(conn)) => return Ok(conn),
                        Ok(Err(e)) => tracing::debug!("RDMA handshake failed: {e}"),
                        Err(e) => tracing::debug!("RDMA handshake task failed: {e}"),
                    }
                }
            }
        }
    }

    fn local_nid(&self) -> Nid {
        self.nid
    }
}

async fn handshake_with_timeout(
    stream: TcpStream,
    peer: Nid,
    shm: bool,
) -> Result<Connection, TransportError> {
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, establish(stream, peer, shm)).await {
        Ok(r) => r,
        Err(_) => Err(protocol("handshake timed out")),
    }
}

/// State shared by the two halves of a connection and its carrier reader task.
struct Shared {
    pool: LocalPool,
    /// The peer's pool, mapped read-only, when it is on this host.
    peer_pool: Option<Mapping>,
    writer: tokio::sync::Mutex<OwnedWriteHalf>,
    /// Our READ requests waiting for their response, by request id.
    reads: Mutex<HashMap<u64, oneshot::Sender<Result<Bytes, VerbsError>>>>,
    next_read_id: AtomicU64,
    /// Our send credits (free receive slots at the peer).
    credits: Semaphore,
    /// READ requests of the peer being answered now.
    served_reads: AtomicUsize,
    closed: AtomicBool,
}

impl Shared {
    async fn write(&self, parts: &[&[u8]]) -> Result<(), TransportError> {
        let mut slices: Vec<IoSlice<'_>> = parts.iter().map(|p| IoSlice::new(p)).collect();
        let mut w = self.writer.lock().await;
        crate::write_all_vectored(&mut *w, &mut slices).await?;
        Ok(())
    }

    fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        self.credits.close();
        self.pool.close();
        if let Ok(mut reads) = self.reads.lock() {
            reads.clear();
        }
    }
}

/// Aborts the carrier reader when both halves of the connection are gone, which drops the
/// carrier and so tells the peer.
struct Handle {
    shared: Arc<Shared>,
    reader: tokio::task::AbortHandle,
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.reader.abort();
        self.shared.close();
    }
}

async fn read_ctrl<R: AsyncRead + Unpin>(r: &mut R) -> Result<Option<Ctrl>, TransportError> {
    let mut b = [0u8; CTRL_BYTES];
    match r.read_exact(&mut b).await {
        Ok(_) => Ok(Some(Ctrl::decode(&b)?)),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Connection set-up, the same on both ends: exchange HELLO, map the peer's pool if it is
/// on this host, exchange READY, stop sharing our memfd, start the carrier reader.
async fn establish(stream: TcpStream, peer: Nid, shm: bool) -> Result<Connection, TransportError> {
    let _ = stream.set_nodelay(true);
    let pool = LocalPool::new(shm)?;
    let (pid, fd) = pool.map.share_info().unwrap_or((0, 0));
    let (r, mut w) = stream.into_split();
    let mut r = BufReader::with_capacity(READ_BUFFER_BYTES, r);
    let hello = Ctrl::Hello {
        pid,
        fd,
        token: pool.map.token(),
        pool_bytes: POOL_BYTES,
    };
    w.write_all(&hello.encode()).await?;
    let Some(Ctrl::Hello {
        pid: peer_pid,
        fd: peer_fd,
        token,
        pool_bytes,
    }) = read_ctrl(&mut r).await?
    else {
        return Err(protocol("expected HELLO"));
    };
    let peer_pool = if shm && peer_pid != 0 {
        match Mapping::open_peer(peer_pid, peer_fd, pool_bytes, token) {
            Ok(m) => Some(m),
            Err(e) => {
                tracing::debug!(%peer, "peer pool not mappable, using the carrier: {e}");
                None
            }
        }
    } else {
        None
    };
    w.write_all(
        &Ctrl::Ready {
            mapped: peer_pool.is_some(),
        }
        .encode(),
    )
    .await?;
    let Some(Ctrl::Ready { .. }) = read_ctrl(&mut r).await? else {
        return Err(protocol("expected READY"));
    };
    pool.map.stop_sharing();
    tracing::debug!(%peer, shared_memory = peer_pool.is_some(), "RDMA connection established");
    let shared = Arc::new(Shared {
        pool,
        peer_pool,
        writer: tokio::sync::Mutex::new(w),
        reads: Mutex::new(HashMap::new()),
        next_read_id: AtomicU64::new(1),
        credits: Semaphore::new(RECV_QUEUE_DEPTH as usize),
        served_reads: AtomicUsize::new(0),
        closed: AtomicBool::new(false),
    });
    let (tx, rx) = mpsc::channel(RECV_QUEUE_DEPTH as usize + 1);
    let reader = tokio::spawn(carrier_reader(r, Arc::clone(&shared), tx)).abort_handle();
    let handle = Arc::new(Handle {
        shared: Arc::clone(&shared),
        reader,
    });
    Ok(Connection {
        sender: Box::new(RdmaSender {
            handle: Arc::clone(&handle),
        }),
        receiver: Box::new(RdmaReceiver {
            handle,
            rx,
            consumed: 0,
        }),
        peer,
    })
}

/// A message received by SEND, its bulk not yet read.
type Incoming = Result<(MsgHeader, Bytes, Option<BulkDesc>), TransportError>;

/// Reads the carrier: SENDs go to the receive queue; READ requests are served from our pool;
/// READ responses complete our reads; DONE deregisters; CREDIT refills our credits. Never
/// waits on the receive queue (the peer's credits bound it), so it always keeps serving.
async fn carrier_reader(
    mut r: BufReader<OwnedReadHalf>,
    shared: Arc<Shared>,
    tx: mpsc::Sender<Incoming>,
) {
    let result = carrier_loop(&mut r, &shared, &tx).await;
    shared.close();
    if let Err(e) = result {
        let _ = tx.try_send(Err(e));
    }
}

async fn carrier_loop(
    r: &mut BufReader<OwnedReadHalf>,
    shared: &Arc<Shared>,
    tx: &mpsc::Sender<Incoming>,
) -> Result<(), TransportError> {
    loop {
        let Some(ctrl) = read_ctrl(r).await? else {
            return Ok(());
        };
        match ctrl {
            Ctrl::Send { desc } => {
                let mut hb = [0u8; MSG_HEADER_BYTES];
                r.read_exact(&mut hb).await?;
                let header = MsgHeader::decode(&hb)?;
                if header.bulk_len != desc.map_or(0, |d| d.len) {
                    return Err(protocol("bulk length differs from the descriptor"));
                }
                // body_len was checked against MAX_BODY_BYTES by decode.
                let mut body = BytesMut::zeroed(header.body_len as usize);
                r.read_exact(&mut body).await?;
                header.check_body(&body)?;
                if tx.try_send(Ok((header, body.freeze(), desc))).is_err() {
                    return Err(protocol("peer sent beyond its receive credits"));
                }
            }
            Ctrl::Read {
                id,
                rkey,
                addr,
                len,
            } => {
                if shared.served_reads.fetch_add(1, Ordering::SeqCst) >= MAX_SERVED_READS {
                    return Err(protocol("too many READ requests in flight"));
                }
                // Answered by its own task: the carrier reader never waits on a write.
                let shared = Arc::clone(shared);
                tokio::spawn(async move {
                    let resp = shared.pool.map.read(rkey, addr, u64::from(len));
                    let result = match resp {
                        Ok(data) => {
                            let ctrl = Ctrl::ReadResp {
                                id,
                                status: 0,
                                crc: crc32c::crc32c(&data),
                                len,
                            };
                            shared.write(&[&ctrl.encode(), &data]).await
                        }
                        Err(e) => {
                            tracing::debug!("refusing a one-sided READ: {e}");
                            let ctrl = Ctrl::ReadResp {
                                id,
                                status: e.code(),
                                crc: 0,
                                len: 0,
                            };
                            shared.write(&[&ctrl.encode()]).await
                        }
                    };
                    shared.served_reads.fetch_sub(1, Ordering::SeqCst);
                    if let Err(e) = result {
                        tracing::debug!("failed to answer a READ: {e}");
                    }
                });
            }
            Ctrl::ReadResp {
                id,
                status,
                crc,
                len,
            } => {
                let waiter = shared.reads.lock().ok().and_then(|mut m| m.remove(&id));
                let Some(waiter) = waiter else {
                    return Err(protocol("READ response for no request"));
                };
                let result = if status == 0 {
                    // len was checked against BULK_FRAME_BYTES by decode.
                    let mut data = BytesMut::zeroed(len as usize);
                    r.read_exact(&mut data).await?;
                    let computed = crc32c::crc32c(&data);
                    if computed != crc {
                        return Err(FrameError::BulkChecksum {
                            stored: crc,
                            computed,
                        }
                        .into());
                    }
                    Ok(data.freeze())
                } else {
                    Err(VerbsError::Remote(status))
                };
                let _ = waiter.send(result);
            }
            Ctrl::Done { rkey } => shared.pool.deregister(rkey)?,
            Ctrl::Credit { count } => {
                let held = shared.credits.available_permits() as u64 + u64::from(count);
                if held > u64::from(RECV_QUEUE_DEPTH) {
                    return Err(protocol("peer returned more credits than it had"));
                }
                shared.credits.add_permits(count as usize);
            }
            Ctrl::Hello { .. } | Ctrl::Ready { .. } => {
                return Err(protocol("handshake frame on an established connection"))
            }
        }
    }
}

struct RdmaSender {
    handle: Arc<Handle>,
}

#[async_trait]
impl MsgSender for RdmaSender {
    async fn send(&mut self, msg: Message) -> Result<(), TransportError> {
        let shared = &self.handle.shared;
        if shared.closed.load(Ordering::SeqCst) {
            return Err(TransportError::Closed);
        }
        let permit = shared
            .credits
            .acquire()
            .await
            .map_err(|_| TransportError::Closed)?;
        permit.forget();
        let mut header = msg.header;
        header.seal_body(&msg.body);
        header.bulk_len = msg.bulk.len() as u64;
        let desc = if msg.bulk.is_empty() {
            None
        } else {
            let region = shared
                .pool
                .register(header.bulk_len, ACCESS_REMOTE_READ)
                .await
                .map_err(|_| TransportError::Closed)?;
            shared.pool.write(&region, &msg.bulk)?;
            Some(BulkDesc {
                rkey: region.rkey,
                addr: region.addr,
                len: region.len,
                crc: crc32c::crc32c(&msg.bulk),
            })
        };
        let ctrl = Ctrl::Send { desc }.encode();
        let result = shared.write(&[&ctrl, &header.encode(), &msg.body]).await;
        if result.is_err() {
            if let Some(d) = desc {
                let _ = shared.pool.deregister(d.rkey);
            }
        }
        result
    }
}

struct RdmaReceiver {
    handle: Arc<Handle>,
    rx: mpsc::Receiver<Incoming>,
    consumed: u32,
}

impl RdmaReceiver {
    /// One-sided READ of a whole bulk: a memcpy from the peer's mapped pool, or READ
    /// requests over the carrier in pieces of at most one bulk frame, all in flight at once.
    async fn read_bulk(&self, desc: &BulkDesc) -> Result<Bytes, TransportError> {
        let shared = &self.handle.shared;
        let data = match &shared.peer_pool {
            Some(peer) => {
                #[cfg(test)]
                SHM_READS.fetch_add(1, Ordering::SeqCst);
                peer.read(desc.rkey, desc.addr, desc.len)?.freeze()
            }
            None => {
                let mut waits = Vec::new();
                let mut offset = 0u64;
                while offset < desc.len {
                    let piece = (desc.len - offset).min(u64::from(BULK_FRAME_BYTES));
                    let id = shared.next_read_id.fetch_add(1, Ordering::Relaxed);
                    let (tx, rx) = oneshot::channel();
                    match shared.reads.lock() {
                        Ok(mut m) => {
                            m.insert(id, tx);
                        }
                        Err(_) => return Err(TransportError::Closed),
                    }
                    let addr = desc
                        .addr
                        .checked_add(offset)
                        .ok_or(protocol("bulk address overflows"))?;
                    let ctrl = Ctrl::Read {
                        id,
                        rkey: desc.rkey,
                        addr,
                        len: piece as u32,
                    };
                    shared.write(&[&ctrl.encode()]).await?;
                    waits.push(rx);
                    offset += piece;
                }
                if shared.closed.load(Ordering::SeqCst) {
                    return Err(TransportError::Closed);
                }
                // desc.len was checked against MAX_BULK_BYTES when the SEND was decoded.
                let mut all = BytesMut::with_capacity(desc.len as usize);
                for w in waits {
                    let piece = w.await.map_err(|_| TransportError::Closed)??;
                    all.extend_from_slice(&piece);
                }
                all.freeze()
            }
        };
        let computed = crc32c::crc32c(&data);
        if computed != desc.crc || data.len() as u64 != desc.len {
            return Err(FrameError::BulkChecksum {
                stored: desc.crc,
                computed,
            }
            .into());
        }
        Ok(data)
    }
}

#[async_trait]
impl MsgReceiver for RdmaReceiver {
    async fn recv(&mut self) -> Result<Message, TransportError> {
        let (header, body, desc) = match self.rx.recv().await {
            Some(item) => item?,
            None => return Err(TransportError::Closed),
        };
        let shared = Arc::clone(&self.handle.shared);
        let bulk = match desc {
            None => Bytes::new(),
            Some(d) => {
                let data = self.read_bulk(&d).await?;
                shared
                    .write(&[&Ctrl::Done { rkey: d.rkey }.encode()])
                    .await?;
                data
            }
        };
        self.consumed += 1;
        if self.consumed >= CREDIT_BATCH {
            let count = std::mem::take(&mut self.consumed);
            shared.write(&[&Ctrl::Credit { count }.encode()]).await?;
        }
        Ok(Message {
            header,
            body,
            bulk,
            bulk_crcs: None,
        })
    }
}

#[cfg(test)]
mod tests;
