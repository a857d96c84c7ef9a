//! The transport [LNet]: moves whole messages (header, body, bulk) between NIDs.
//!
//! The RPC layer sees only the traits here; it never knows whether a message crossed TCP or
//! the RDMA-emulated transport ([`rdma`]) behind the same traits. [`for_nid`] picks the
//! implementation from the NID's network type.
//!
//! Architecture invariant: no knowledge of opcodes or bodies; a transport checks frames
//! (checksums, lengths) and nothing else.

mod pool;
pub mod rdma;
mod tcp;

use std::io::IoSlice;
use std::sync::Arc;

use async_trait::async_trait;
use sheen_wire::{FrameError, Message, NetType, Nid};
use tokio::io::{AsyncWrite, AsyncWriteExt};

pub use rdma::RdmaTransport;
pub use tcp::TcpTransport;

#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("connection closed by peer")]
    Closed,
    #[error("malformed frame: {0}")]
    Frame(#[from] FrameError),
    #[error("cannot connect to {nid}: {source}")]
    Connect { nid: Nid, source: std::io::Error },
    #[error("cannot listen on {nid}: {source}")]
    Listen { nid: Nid, source: std::io::Error },
    #[error("network type of {0} is not supported by this build")]
    Unsupported(Nid),
    #[error("RDMA: {0}")]
    Rdma(#[from] rdma::RdmaError),
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
}

/// The sending half of a connection.
#[async_trait]
pub trait MsgSender: Send + Sync {
    /// Sends one message and its bulk. The header's body length, checksum and bulk length
    /// are filled in here.
    async fn send(&mut self, msg: Message) -> Result<(), TransportError>;
}

/// The receiving half of a connection.
#[async_trait]
pub trait MsgReceiver: Send {
    /// Receives the next whole message (bulk reassembled), validated. After an error the
    /// connection is unusable and must be dropped.
    async fn recv(&mut self) -> Result<Message, TransportError>;
}

/// An established connection, split so that one task reads while others send.
pub struct Connection {
    pub sender: Box<dyn MsgSender>,
    pub receiver: Box<dyn MsgReceiver>,
    pub peer: Nid,
}

#[async_trait]
pub trait Listener: Send {
    async fn accept(&mut self) -> Result<Connection, TransportError>;
    fn local_nid(&self) -> Nid;
}

#[async_trait]
pub trait Transport: Send + Sync {
    async fn connect(&self, nid: &Nid) -> Result<Connection, TransportError>;
    async fn listen(&self, nid: &Nid) -> Result<Box<dyn Listener>, TransportError>;
}

/// The transport that serves a NID's network type.
pub fn for_nid(nid: &Nid) -> Result<Arc<dyn Transport>, TransportError> {
    match nid.net {
        NetType::Tcp => Ok(Arc::new(TcpTransport::default())),
        NetType::Rdma => Ok(Arc::new(RdmaTransport::default())),
    }
}

/// Writes every byte of `slices`, gathering as many of them per syscall as the stream takes.
/// With TCP_NODELAY a write per piece would cost a segment, and a wake-up of the peer's
/// reader, per piece.
pub(crate) async fn write_all_vectored<W: AsyncWrite + Unpin + ?Sized>(
    w: &mut W,
    mut slices: &mut [IoSlice<'_>],
) -> std::io::Result<()> {
    while !slices.is_empty() {
        let n = w.write_vectored(slices).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        IoSlice::advance_slices(&mut slices, n);
    }
    Ok(())
}
