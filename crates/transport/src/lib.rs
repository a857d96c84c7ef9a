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

#[cfg(test)]
mod tests {
    use std::pin::Pin;
    use std::task::{Context, Poll};

    use super::*;

    /// A writer that takes at most `step` bytes per call, as a full socket does.
    struct Trickle {
        got: Vec<u8>,
        step: usize,
        calls: usize,
    }

    impl AsyncWrite for Trickle {
        fn poll_write(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<std::io::Result<usize>> {
            let me = self.get_mut();
            me.calls += 1;
            let n = buf.len().min(me.step);
            me.got.extend_from_slice(&buf[..n]);
            Poll::Ready(Ok(n))
        }

        fn poll_write_vectored(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            bufs: &[IoSlice<'_>],
        ) -> Poll<std::io::Result<usize>> {
            let me = self.get_mut();
            me.calls += 1;
            let mut left = me.step;
            for b in bufs {
                let n = b.len().min(left);
                me.got.extend_from_slice(&b[..n]);
                left -= n;
                if left == 0 {
                    break;
                }
            }
            Poll::Ready(Ok(me.step - left))
        }

        fn is_write_vectored(&self) -> bool {
            true
        }

        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Poll::Ready(Ok(()))
        }

        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn gathered_writes_resume_where_a_short_write_stopped() {
        let parts: [&[u8]; 4] = [b"header", b"", b"0123456789", b"tail"];
        for step in [1, 3, 7, 100] {
            let mut w = Trickle {
                got: Vec::new(),
                step,
                calls: 0,
            };
            let mut slices: Vec<IoSlice<'_>> = parts.iter().map(|p| IoSlice::new(p)).collect();
            write_all_vectored(&mut w, &mut slices).await.unwrap();
            assert_eq!(w.got, b"header0123456789tail", "step {step}");
            assert_eq!(w.calls, 20usize.div_ceil(step), "step {step}");
        }
    }

    #[tokio::test]
    async fn a_writer_that_takes_nothing_is_an_error() {
        let mut w = Trickle {
            got: Vec::new(),
            step: 0,
            calls: 0,
        };
        let mut slices = [IoSlice::new(b"x")];
        let e = write_all_vectored(&mut w, &mut slices).await.unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::WriteZero);
    }
}
