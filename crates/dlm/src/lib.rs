//! The distributed lock manager [ldlm]: lock modes and their compatibility, extent and
//! inode-bits policies, the server's lock table (grant, queue, convert, cancel, blocking
//! callbacks owed, callback timeouts and eviction) and the client's lock cache (matching,
//! reference counts, the LRU of unused locks).
//!
//! Architecture invariant: pure state machines, no I/O. Nothing here sends a message or
//! reads a clock: operations return the work to do (callbacks to send, locks to cancel) and
//! take the current time as an argument, so tests are deterministic. The RPC glue (who is
//! `ClientId` 7, sending `BlockingAst`s, CP callbacks and glimpses) lives in the MDS, the
//! OSS and the client.
//!
//! Terms as in Lustre: a *resource* is what is locked (an inode, an OST object); a lock has a
//! *mode* and a *policy* (the part of the resource: a byte range or inode bits); two locks
//! *conflict* when their modes are incompatible and their policies intersect. A lock that
//! cannot be granted *waits* in FIFO order; holders of conflicting granted locks owe a
//! *blocking callback* answer (a cancel or a downgrade) within the callback timeout, or
//! are evicted.

pub mod client;
pub mod error;
pub mod limits;
pub mod mode;
pub mod policy;
pub mod server;
#[cfg(test)]
mod test_script;

pub use client::{Blocked, LockCache};
pub use error::DlmError;
pub use server::{Blocking, ClientId, Config, Enqueued, Grant, LockInfo, LockTable, Progress};
pub use sheen_wire::{
    ibits, LockDesc, LockExtent, LockHandle, LockMode, LockPolicy, LockType, Lvb, ResourceId,
    LOCK_EXTENT_EOF,
};
