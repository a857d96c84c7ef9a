//! Errors of the lock manager, each with the errno a reply carries.

use sheen_wire::{Errno, LockHandle, LockMode, LockType, ResourceId};

use crate::server::ClientId;

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DlmError {
    #[error("no lock with handle {:#x}", .0.cookie)]
    UnknownLock(LockHandle),
    #[error("invalid lock policy: {0}")]
    InvalidPolicy(&'static str),
    #[error("resource {resource} holds {held:?} locks, asked for {asked:?}")]
    TypeMismatch {
        resource: ResourceId,
        held: LockType,
        asked: LockType,
    },
    #[error("client {} holds too many locks", .0.0)]
    TooManyLocks(ClientId),
    #[error("too many locks waiting on resource {0}")]
    TooManyWaiters(ResourceId),
    #[error("lock conflicts and the request asked not to wait")]
    WouldBlock,
    #[error("lock {:#x} is not granted", .0.cookie)]
    NotGranted(LockHandle),
    #[error("convert from {} to {} is not a downgrade", .from.name(), .to.name())]
    NotDowngrade { from: LockMode, to: LockMode },
    #[error("lock {:#x} is already cached", .0.cookie)]
    DuplicateLock(LockHandle),
    #[error("lock {:#x} has no users to release", .0.cookie)]
    NotInUse(LockHandle),
    #[error("the client lock cache is full")]
    CacheFull,
}

impl DlmError {
    /// The status a reply carries for this error.
    pub fn errno(&self) -> Errno {
        match self {
            DlmError::UnknownLock(_) => Errno::ESTALE,
            DlmError::InvalidPolicy(_)
            | DlmError::NotGranted(_)
            | DlmError::NotDowngrade { .. }
            | DlmError::NotInUse(_) => Errno::EINVAL,
            DlmError::TypeMismatch { .. } | DlmError::DuplicateLock(_) => Errno::EPROTO,
            DlmError::TooManyLocks(_)
            | DlmError::TooManyWaiters(_)
            | DlmError::WouldBlock
            | DlmError::CacheFull => Errno::EAGAIN,
        }
    }
}
