//! Requests and replies [ptlrpc].
//!
//! Client side: an [`Import`] is one client's connection to one service (an MGS, an MDS or
//! an OSS); it assigns xids, matches replies to requests by xid, enforces timeouts, connects
//! lazily and reconnects after a failure (to the service's next failover NID when the one in
//! use does not answer), and resends a request whose reply was lost with the same xid and
//! `FLAG_RESENT`.
//!
//! Server side: [`serve`] accepts connections and dispatches each request to a [`Service`]
//! in its own task (bounded per connection), inside a tracing span carrying the opcode, xid,
//! peer and target. Connect, disconnect and ping are answered here for every service. The
//! replies to modifying requests are kept per client uuid (the reply cache) so that a resend
//! gets the saved reply instead of executing twice (docs/RECOVERY.md).
//!
//! Servers send requests to their clients (lock callbacks) on the connection the client
//! opened: [`Exports`] on the server, a [`CallbackHandler`] in the client's import.
//!
//! Recovery: replies carry `transno` and `last_committed`; an import keeps the requests whose
//! change is not committed yet and replays them, in transno order, to a restarted server
//! before anything else ([`replay`], docs/RECOVERY.md).

mod client;
mod export;
pub mod replay;
mod reply_cache;
mod server;

pub use client::{CallbackHandler, Callbacks, Import, ImportConfig, Reply};
pub use export::{EvictHook, ExportId, Exports, GoneHook};
pub use replay::ReplayInfo;
pub use reply_cache::{
    MAX_CLIENTS, MAX_CLIENT_UUID_BYTES, MAX_IN_PROGRESS_PER_CLIENT, MAX_REPLIES_PER_CLIENT,
    MAX_SAVED_BYTES_PER_CLIENT,
};
pub use server::{serve, serve_with_exports, Request, Response, Service, ServiceError};

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
    #[error("no NID to connect to")]
    NoNid,
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
            RpcError::NoNid => Errno::ENOTCONN,
            RpcError::Transport(_) => Errno::EIO,
            RpcError::Decode(_) => Errno::EPROTO,
        }
    }
}

#[cfg(test)]
mod tests;
