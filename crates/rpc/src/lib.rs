//! Requests and replies [ptlrpc].
//!
//! Client side: an [`Import`] is one client's connection to one service (an MGS, an MDS or
//! an OSS); it assigns xids, matches replies to requests by xid, enforces timeouts, connects
//! lazily and reconnects after a failure, and resends requests that are safe to resend.
//!
//! Server side: [`serve`] accepts connections and dispatches each request to a [`Service`]
//! in its own task (bounded per connection), inside a tracing span carrying the opcode, xid,
//! peer and target. Connect, disconnect and ping are answered here for every service.
//!
//! Room for recovery (a later issue): replies carry `transno` and `last_committed`; the
//! import keeps both so a replay queue can be added without changing callers.

mod client;
mod server;

pub use client::{Import, ImportConfig, Reply};
pub use server::{serve, Request, Response, Service, ServiceError};

use sheen_transport::TransportError;
use sheen_wire::{DecodeError, Errno};

#[derive(Debug, thiserror::Error)]
pub enum RpcError {
    #[error("{opcode} to {nid}: the server answered {errno}: {message}")]
    Remote {
        opcode: &'static str,
        nid: String,
        errno: Errno,
        message: String,
    },
    #[error("{opcode} to {nid}: no reply within {timeout_ms} ms")]
    Timeout {
        opcode: &'static str,
        nid: String,
        timeout_ms: u64,
    },
    #[error("{opcode} to {nid}: connection lost before the reply")]
    ConnectionLost { opcode: &'static str, nid: String },
    #[error("transport: {0}")]
    Transport(#[from] TransportError),
    #[error("bad reply: {0}")]
    Decode(#[from] DecodeError),
}

impl RpcError {
    /// The errno an application should see for this failure.
    pub fn errno(&self) -> Errno {
        match self {
            RpcError::Remote { errno, .. } => *errno,
            RpcError::Timeout { .. } => Errno::ETIMEDOUT,
            RpcError::ConnectionLost { .. } => Errno::EIO,
            RpcError::Transport(TransportError::Connect { .. }) => Errno::ENOTCONN,
            RpcError::Transport(_) => Errno::EIO,
            RpcError::Decode(_) => Errno::EPROTO,
        }
    }
}

#[cfg(test)]
mod tests;
