//! Conversions between Sheen's wire types and fuser's: attributes, file types, times and
//! errnos. Errors are logged here, at the edge where they are handled.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{FileAttr, FileType, INodeNo, TimeOrNow};
use sheen_client::{Attr, ClientError, Fid, TimeSet, Timespec};
use tracing::{debug, warn};

use crate::limits::BLKSIZE;

/// The FID of an inode number; numbers no FID maps to are stale handles.
pub fn fid(ino: INodeNo) -> Result<Fid, fuser::Errno> {
    Fid::from_ino(ino.0).ok_or(fuser::Errno::from_i32(libc::ESTALE))
}

pub fn ino(fid: Fid) -> INodeNo {
    INodeNo(fid.to_ino())
}

/// The errno of a failed client call, logged: expected answers (ENOENT...) at debug, the
/// rest as warnings.
pub fn errno(op: &'static str, e: &ClientError) -> fuser::Errno {
    if e.is_expected() {
        debug!(op, "{e}");
    } else {
        warn!(op, "failed: {e}");
    }
    fuser::Errno::from_i32(e.errno().raw())
}

pub fn file_type(mode: u32) -> FileType {
    match mode & libc::S_IFMT {
        libc::S_IFDIR => FileType::Directory,
        libc::S_IFLNK => FileType::Symlink,
        libc::S_IFIFO => FileType::NamedPipe,
        libc::S_IFCHR => FileType::CharDevice,
        libc::S_IFBLK => FileType::BlockDevice,
        libc::S_IFSOCK => FileType::Socket,
        _ => FileType::RegularFile,
    }
}

pub fn system_time(t: Timespec) -> SystemTime {
    let nanos = Duration::from_nanos(u64::from(t.nsec.min(999_999_999)));
    let secs = Duration::from_secs(t.sec.unsigned_abs());
    let base = if t.sec >= 0 {
        UNIX_EPOCH.checked_add(secs)
    } else {
        UNIX_EPOCH.checked_sub(secs)
    };
    base.and_then(|b| b.checked_add(nanos))
        .unwrap_or(UNIX_EPOCH)
}

pub fn timespec(t: SystemTime) -> Timespec {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => Timespec {
            sec: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
            nsec: d.subsec_nanos(),
        },
        Err(e) => {
            // Before the epoch: whole seconds down, nanoseconds up.
            let d = e.duration();
            let mut sec = -i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
            let mut nsec = d.subsec_nanos();
            if nsec > 0 {
                sec -= 1;
                nsec = 1_000_000_000 - nsec;
            }
            Timespec { sec, nsec }
        }
    }
}

pub fn time_set(t: TimeOrNow) -> TimeSet {
    match t {
        TimeOrNow::Now => TimeSet::Now,
        TimeOrNow::SpecificTime(t) => TimeSet::At(timespec(t)),
    }
}

/// fuser's attributes for `attr`, showing `size` (which may be ahead of the MDS while the
/// file is written).
pub fn file_attr(attr: &Attr, size: u64) -> FileAttr {
    // The MDS may not know the space used yet; count the size then, so `du` sees the data.
    let blocks = if attr.blocks == 0 && attr.is_reg() {
        size.div_ceil(512)
    } else {
        attr.blocks
    };
    FileAttr {
        ino: ino(attr.fid),
        size,
        blocks,
        atime: system_time(attr.atime),
        mtime: system_time(attr.mtime),
        ctime: system_time(attr.ctime),
        crtime: system_time(attr.btime),
        kind: file_type(attr.mode),
        perm: (attr.mode & 0o7777) as u16,
        nlink: attr.nlink,
        uid: attr.uid,
        gid: attr.gid,
        rdev: attr.rdev,
        blksize: BLKSIZE,
        flags: 0,
    }
}

/// The NUL-separated xattr names a caller may see: `trusted.*` only for root, as Linux
/// filesystems list them only to a process with CAP_SYS_ADMIN.
pub fn visible_xattr_names(list: Vec<u8>, privileged: bool) -> Vec<u8> {
    if privileged {
        return list;
    }
    let mut out = Vec::with_capacity(list.len());
    for name in list.split(|&b| b == 0).filter(|n| !n.is_empty()) {
        if !name.starts_with(b"trusted.") {
            out.extend_from_slice(name);
            out.push(0);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_round_trip() {
        for t in [
            Timespec { sec: 0, nsec: 0 },
            Timespec {
                sec: 1_700_000_000,
                nsec: 123_456_789,
            },
            Timespec {
                sec: -5,
                nsec: 250_000_000,
            },
        ] {
            assert_eq!(timespec(system_time(t)), t);
        }
        assert_eq!(time_set(TimeOrNow::Now), TimeSet::Now);
    }

    #[test]
    fn modes_and_inodes() {
        assert_eq!(file_type(libc::S_IFDIR | 0o755), FileType::Directory);
        assert_eq!(file_type(libc::S_IFLNK), FileType::Symlink);
        assert_eq!(file_type(libc::S_IFREG | 0o644), FileType::RegularFile);
        assert_eq!(fid(INodeNo(1)), Ok(Fid::ROOT));
        assert!(fid(INodeNo(5)).is_err());
        let f = Fid {
            seq: Fid::FIRST_NORMAL_SEQ,
            oid: 9,
            ver: 0,
        };
        assert_eq!(fid(ino(f)), Ok(f));
    }

    #[test]
    fn trusted_names_only_for_root() {
        let list = b"user.a\0trusted.b\0security.c\0".to_vec();
        assert_eq!(visible_xattr_names(list.clone(), true), list);
        assert_eq!(
            visible_xattr_names(list, false),
            b"user.a\0security.c\0".to_vec()
        );
        assert!(visible_xattr_names(Vec::new(), false).is_empty());
    }
}
