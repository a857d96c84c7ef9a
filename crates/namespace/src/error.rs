//! The namespace's typed errors and their errno mapping.

use sheen_wire::Errno;

/// Linux `E2BIG`, which `sheen_wire::Errno` has no constant for.
const E2BIG: Errno = Errno(7);

/// Everything a namespace operation can fail with. Each variant maps to one errno at the
/// edge ([`NsError::errno`]); the MDS puts that in its reply.
#[derive(Debug, thiserror::Error)]
pub enum NsError {
    #[error("no such file or directory")]
    NotFound,
    #[error("file exists")]
    Exists,
    #[error("not a directory")]
    NotDir,
    #[error("is a directory")]
    IsDir,
    #[error("directory not empty")]
    NotEmpty,
    #[error("name too long")]
    NameTooLong,
    #[error("invalid argument: {0}")]
    Invalid(&'static str),
    #[error("no such extended attribute")]
    NoData,
    #[error("operation not permitted")]
    Perm,
    #[error("too many links")]
    TooManyLinks,
    #[error("extended attribute name out of range")]
    Range,
    #[error("extended attribute value too large")]
    TooBig,
    #[error("no space left for this object")]
    NoSpace,
    #[error("resource busy")]
    Busy,
    #[error("operation not supported: {0}")]
    NotSupported(&'static str),
    #[error("namespace database is corrupt: {0}")]
    Corrupt(String),
    #[error("namespace database error: {0}")]
    Db(#[from] sled::Error),
}

impl NsError {
    /// The errno this error is reported as.
    pub fn errno(&self) -> Errno {
        match self {
            NsError::NotFound => Errno::ENOENT,
            NsError::Exists => Errno::EEXIST,
            NsError::NotDir => Errno::ENOTDIR,
            NsError::IsDir => Errno::EISDIR,
            NsError::NotEmpty => Errno::ENOTEMPTY,
            NsError::NameTooLong => Errno::ENAMETOOLONG,
            NsError::Invalid(_) => Errno::EINVAL,
            NsError::NoData => Errno::ENODATA,
            NsError::Perm => Errno::EPERM,
            NsError::TooManyLinks => Errno::EMLINK,
            NsError::Range => Errno::ERANGE,
            NsError::TooBig => E2BIG,
            NsError::NoSpace => Errno::ENOSPC,
            NsError::Busy => Errno::EBUSY,
            NsError::NotSupported(_) => Errno::EOPNOTSUPP,
            NsError::Corrupt(_) | NsError::Db(_) => Errno::EIO,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errno_mapping() {
        let cases = [
            (NsError::NotFound, Errno::ENOENT),
            (NsError::Exists, Errno::EEXIST),
            (NsError::NotEmpty, Errno::ENOTEMPTY),
            (NsError::Invalid("x"), Errno::EINVAL),
            (NsError::TooBig, Errno(7)),
            (NsError::Corrupt("x".into()), Errno::EIO),
        ];
        for (e, errno) in cases {
            assert_eq!(e.errno(), errno, "{e}");
        }
    }
}
