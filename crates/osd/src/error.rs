//! The OSD's typed errors and their errno at the edge.

use sheen_wire::{Errno, ObjId};

/// Every way an OSD operation can fail.
#[derive(Debug, thiserror::Error)]
pub enum OsdError {
    #[error("object {0} not found")]
    NotFound(ObjId),
    #[error("block file already exists")]
    Exists,
    #[error("block file is already open (locked by another handle or process)")]
    Busy,
    #[error("no space left on the OST")]
    NoSpace,
    #[error(
        "checksum mismatch in object {oid} at offset {offset}: \
         stored {stored:#010x}, computed {computed:#010x}"
    )]
    Checksum {
        oid: ObjId,
        offset: u64,
        stored: u32,
        computed: u32,
    },
    /// On-disk metadata is damaged or inconsistent; the text says what and where.
    #[error("corrupt OSD metadata: {0}")]
    Corrupt(String),
    #[error("invalid argument: {0}")]
    Invalid(&'static str),
    /// The request would make the object larger than `limits::MAX_OBJECT_BYTES`.
    #[error("object {oid} would grow past the largest object size (to byte {end})")]
    TooBig { oid: ObjId, end: u64 },
    /// An earlier metadata write or flush failed, so the on-disk state is uncertain; every
    /// further change is refused until the block file is reopened (which replays the log).
    #[error("OSD halted after a failed metadata write; reopen to recover")]
    Halted,
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
}

impl OsdError {
    /// The errno a server returns to its peer for this error.
    pub fn errno(&self) -> Errno {
        match self {
            OsdError::NotFound(_) => Errno::ENOENT,
            OsdError::Exists => Errno::EEXIST,
            OsdError::Busy => Errno::EBUSY,
            OsdError::NoSpace => Errno::ENOSPC,
            OsdError::Checksum { .. } | OsdError::Corrupt(_) => Errno::EIO,
            OsdError::Invalid(_) => Errno::EINVAL,
            OsdError::TooBig { .. } => Errno::EFBIG,
            OsdError::Halted | OsdError::Io(_) => Errno::EIO,
        }
    }

    /// A copy of this error for the other members of a failed commit group.
    pub(crate) fn duplicate(&self) -> OsdError {
        match self {
            OsdError::NotFound(oid) => OsdError::NotFound(*oid),
            OsdError::Exists => OsdError::Exists,
            OsdError::Busy => OsdError::Busy,
            OsdError::NoSpace => OsdError::NoSpace,
            OsdError::Checksum {
                oid,
                offset,
                stored,
                computed,
            } => OsdError::Checksum {
                oid: *oid,
                offset: *offset,
                stored: *stored,
                computed: *computed,
            },
            OsdError::Corrupt(what) => OsdError::Corrupt(what.clone()),
            OsdError::Invalid(what) => OsdError::Invalid(what),
            OsdError::TooBig { oid, end } => OsdError::TooBig {
                oid: *oid,
                end: *end,
            },
            OsdError::Halted => OsdError::Halted,
            OsdError::Io(e) => OsdError::Io(std::io::Error::new(e.kind(), e.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errno_mapping() {
        let cases = [
            (OsdError::NotFound(3), Errno::ENOENT),
            (OsdError::Exists, Errno::EEXIST),
            (OsdError::Busy, Errno::EBUSY),
            (OsdError::NoSpace, Errno::ENOSPC),
            (
                OsdError::Checksum {
                    oid: 1,
                    offset: 0,
                    stored: 1,
                    computed: 2,
                },
                Errno::EIO,
            ),
            (OsdError::Corrupt("x".into()), Errno::EIO),
            (OsdError::Invalid("x"), Errno::EINVAL),
            (OsdError::TooBig { oid: 1, end: 0 }, Errno::EFBIG),
            (OsdError::Halted, Errno::EIO),
            (OsdError::Io(std::io::Error::other("x")), Errno::EIO),
        ];
        for (err, errno) in cases {
            assert_eq!(err.errno(), errno, "{err}");
            assert_eq!(err.duplicate().errno(), errno);
        }
    }
}
