//! Status codes on the wire are negative Linux errno values, as in Lustre's `pb_status`.
//! `Errno` is the one type every layer maps its typed errors to at the edge.

use std::fmt;

/// A positive Linux errno value.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Errno(pub i32);

impl Errno {
    pub const EPERM: Errno = Errno(libc::EPERM);
    pub const ENOENT: Errno = Errno(libc::ENOENT);
    pub const EIO: Errno = Errno(libc::EIO);
    pub const ENXIO: Errno = Errno(libc::ENXIO);
    pub const EBADF: Errno = Errno(libc::EBADF);
    pub const EAGAIN: Errno = Errno(libc::EAGAIN);
    pub const ENOMEM: Errno = Errno(libc::ENOMEM);
    pub const EACCES: Errno = Errno(libc::EACCES);
    pub const EBUSY: Errno = Errno(libc::EBUSY);
    pub const EEXIST: Errno = Errno(libc::EEXIST);
    pub const EXDEV: Errno = Errno(libc::EXDEV);
    pub const ENOTDIR: Errno = Errno(libc::ENOTDIR);
    pub const EISDIR: Errno = Errno(libc::EISDIR);
    pub const EINVAL: Errno = Errno(libc::EINVAL);
    pub const EFBIG: Errno = Errno(libc::EFBIG);
    pub const ENOSPC: Errno = Errno(libc::ENOSPC);
    pub const EROFS: Errno = Errno(libc::EROFS);
    pub const EMLINK: Errno = Errno(libc::EMLINK);
    pub const ERANGE: Errno = Errno(libc::ERANGE);
    pub const ENAMETOOLONG: Errno = Errno(libc::ENAMETOOLONG);
    pub const ENOSYS: Errno = Errno(libc::ENOSYS);
    pub const ENOTEMPTY: Errno = Errno(libc::ENOTEMPTY);
    pub const ELOOP: Errno = Errno(libc::ELOOP);
    pub const ENODATA: Errno = Errno(libc::ENODATA);
    pub const EPROTO: Errno = Errno(libc::EPROTO);
    pub const EOVERFLOW: Errno = Errno(libc::EOVERFLOW);
    pub const EBADMSG: Errno = Errno(libc::EBADMSG);
    pub const EOPNOTSUPP: Errno = Errno(libc::EOPNOTSUPP);
    pub const ENOTCONN: Errno = Errno(libc::ENOTCONN);
    pub const ETIMEDOUT: Errno = Errno(libc::ETIMEDOUT);
    pub const ECONNREFUSED: Errno = Errno(libc::ECONNREFUSED);
    pub const ESTALE: Errno = Errno(libc::ESTALE);
    pub const ENODEV: Errno = Errno(libc::ENODEV);
    pub const EDEADLK: Errno = Errno(libc::EDEADLK);
    pub const EINPROGRESS: Errno = Errno(libc::EINPROGRESS);

    /// The value carried in a message header's status field (negative errno).
    pub fn to_status(self) -> i32 {
        -self.0
    }

    /// Reads a header status: 0 is success, a negative value an errno. A positive or absurd
    /// status from a peer is a protocol error, reported as EPROTO.
    pub fn from_status(status: i32) -> Option<Errno> {
        match status {
            0 => None,
            s if (-4095..0).contains(&s) => Some(Errno(-s)),
            _ => Some(Errno::EPROTO),
        }
    }

    pub fn raw(self) -> i32 {
        self.0
    }
}

impl fmt::Debug for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Errno({}: {})", self.0, self)
    }
}

impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = std::io::Error::from_raw_os_error(self.0);
        write!(f, "{}", s.kind()).and_then(|_| write!(f, " (errno {})", self.0))
    }
}

impl std::error::Error for Errno {}

impl From<Errno> for std::io::Error {
    fn from(e: Errno) -> Self {
        std::io::Error::from_raw_os_error(e.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_round_trip() {
        assert_eq!(Errno::from_status(0), None);
        assert_eq!(
            Errno::from_status(Errno::ENOENT.to_status()),
            Some(Errno::ENOENT)
        );
        assert_eq!(Errno::from_status(5), Some(Errno::EPROTO));
        assert_eq!(Errno::from_status(i32::MIN), Some(Errno::EPROTO));
    }
}
