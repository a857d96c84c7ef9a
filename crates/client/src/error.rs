//! The client's typed errors, and their errno for applications (the FUSE edge and tools).

use sheen_layout::LayoutError;
use sheen_rpc::RpcError;
use sheen_transport::TransportError;
use sheen_wire::Errno;

use crate::spec::MountSpecError;

/// Everything a client call can fail with. [`ClientError::errno`] is what an application
/// sees.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// An RPC failed: the server answered an error, or no answer came.
    #[error(transparent)]
    Rpc(#[from] RpcError),
    /// A file's layout cannot be used for I/O (bad geometry or object list).
    #[error("unusable layout: {0}")]
    Layout(#[from] LayoutError),
    /// The layout is composite (PFL/FLR): I/O supports plain layouts only for now.
    #[error("composite layouts are not supported for I/O yet")]
    CompositeLayout,
    /// A target index that the filesystem configuration does not list.
    #[error("no target {0} in the filesystem configuration")]
    NoTarget(String),
    /// The configuration from the MGS cannot be used.
    #[error("bad filesystem configuration: {0}")]
    BadConfig(String),
    /// The mount spec cannot be parsed.
    #[error(transparent)]
    BadSpec(#[from] MountSpecError),
    /// The transport for a NID cannot be created.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// A server reply is well-formed but lacks what the operation needs.
    #[error("bad reply to {op}: {what}")]
    Protocol { op: &'static str, what: String },
    /// A name (file, xattr) longer than the protocol allows.
    #[error("name of {len} bytes is longer than {max}")]
    NameTooLong { len: usize, max: usize },
    /// A value (symlink target, xattr value, I/O extent) larger than allowed.
    #[error("{what} of {len} bytes is larger than {max}")]
    TooLarge {
        what: &'static str,
        len: u64,
        max: u64,
    },
    /// A write that would make an object larger than an OST holds.
    #[error("a write to {end} bytes of an object is past the largest object ({max} bytes)")]
    FileTooBig { end: u64, max: u64 },
    /// An argument the operation cannot accept.
    #[error("invalid argument: {0}")]
    Invalid(String),
    /// `readlink` of something that is not a symlink.
    #[error("not a symbolic link")]
    NotSymlink,
    /// An operation or mode Sheen does not do (a fallocate mode, say).
    #[error("not supported: {0}")]
    Unsupported(String),
    /// The client was unmounted while the call waited.
    #[error("the client is unmounted")]
    Unmounted,
    /// The extended attribute does not exist (known without asking the MDS).
    #[error("no such extended attribute")]
    NoXattr,
    /// The directory has no such entry (known without asking the MDS).
    #[error("no such file or directory")]
    NoEntry,
}

impl ClientError {
    /// The errno an application should see for this failure.
    pub fn errno(&self) -> Errno {
        match self {
            ClientError::Rpc(e) => e.errno(),
            ClientError::Layout(_) => Errno::EIO,
            ClientError::CompositeLayout => Errno::EOPNOTSUPP,
            ClientError::NoTarget(_) => Errno::EIO,
            ClientError::BadConfig(_) => Errno::EINVAL,
            ClientError::BadSpec(_) => Errno::EINVAL,
            ClientError::Transport(TransportError::Unsupported(_)) => Errno::EOPNOTSUPP,
            ClientError::Transport(_) => Errno::EIO,
            ClientError::Protocol { .. } => Errno::EPROTO,
            ClientError::NameTooLong { .. } => Errno::ENAMETOOLONG,
            ClientError::TooLarge { .. } => Errno(libc::E2BIG),
            ClientError::FileTooBig { .. } => Errno::EFBIG,
            ClientError::Invalid(_) => Errno::EINVAL,
            ClientError::NotSymlink => Errno::EINVAL,
            ClientError::Unsupported(_) => Errno::EOPNOTSUPP,
            ClientError::Unmounted => Errno::ENOTCONN,
            ClientError::NoXattr => Errno::ENODATA,
            ClientError::NoEntry => Errno::ENOENT,
        }
    }

    /// Whether this is an ordinary answer an application expects now and then (no such
    /// file, exists, not empty, no such xattr...), as opposed to a failure worth a warning.
    pub fn is_expected(&self) -> bool {
        let e = self.errno();
        [
            Errno::ENOENT,
            Errno::EEXIST,
            Errno::ENOTEMPTY,
            Errno::ENODATA,
            Errno::ENOTDIR,
            Errno::EISDIR,
            Errno::EACCES,
            Errno::EPERM,
            Errno::ENAMETOOLONG,
            Errno::ERANGE,
            Errno::EINVAL,
            Errno::EXDEV,
            Errno::ENOSPC,
            Errno::EOPNOTSUPP,
            Errno::EMLINK,
            Errno::ELOOP,
            // A file lock held by another owner, or a wait that would deadlock.
            Errno::EAGAIN,
            Errno::EDEADLK,
        ]
        .contains(&e)
    }

    pub(crate) fn protocol(op: &'static str, what: impl Into<String>) -> ClientError {
        ClientError::Protocol {
            op,
            what: what.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errnos_at_the_edge() {
        let remote = ClientError::Rpc(RpcError::Remote {
            opcode: "mds_reint",
            nid: "127.0.0.1@tcp".into(),
            errno: Errno::EEXIST,
            message: String::new(),
        });
        assert_eq!(remote.errno(), Errno::EEXIST);
        assert!(remote.is_expected());
        assert_eq!(ClientError::CompositeLayout.errno(), Errno::EOPNOTSUPP);
        assert_eq!(
            ClientError::Unsupported("x".into()).errno(),
            Errno::EOPNOTSUPP
        );
        assert_eq!(
            ClientError::NameTooLong { len: 300, max: 255 }.errno(),
            Errno::ENAMETOOLONG
        );
        assert_eq!(
            ClientError::protocol("mds_getattr", "no attr").errno(),
            Errno::EPROTO
        );
        assert!(!ClientError::protocol("x", "y").is_expected());
    }
}
