//! Message bodies and the domain types they carry (attributes, layouts, configuration).
//!
//! Field and variant order is frozen once released: append only.

use crate::ids::{Fid, ObjId, TargetKind};

macro_rules! wire_type {
    ($(#[$m:meta])* $vis:vis struct $name:ident $($rest:tt)*) => {
        $(#[$m])*
        #[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
        $vis struct $name $($rest)*
    };
    ($(#[$m:meta])* $vis:vis enum $name:ident $($rest:tt)*) => {
        $(#[$m])*
        #[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
        $vis enum $name $($rest)*
    };
}

// ---------------------------------------------------------------------------------------------
// Common

wire_type! {
    /// A point in time, seconds and nanoseconds since the epoch.
    #[derive(Copy, Default, PartialOrd, Ord, Hash)]
    pub struct Timespec { pub sec: i64, pub nsec: u32 }
}

impl Timespec {
    pub fn now() -> Timespec {
        let d = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        Timespec {
            sec: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
            nsec: d.subsec_nanos(),
        }
    }
}

wire_type! {
    /// An empty body, for requests and replies that carry nothing but the header.
    #[derive(Default)]
    pub struct Empty {}
}

wire_type! {
    /// Sent with every CONNECT (MGS, MDS, OST): who is connecting to which target.
    pub struct ConnectReq {
        /// A UUID-like name of the client or server instance connecting.
        pub client_uuid: String,
        /// The target's name (`sheen-OST0001`), or empty for the service itself.
        pub target: String,
    }
}

wire_type! {
    pub struct ConnectReply {
        pub server_uuid: String,
        /// Changes on every server start, so a client sees that the server restarted.
        pub instance: u64,
    }
}

wire_type! {
    /// Space and inode usage of one target, as statfs reports it.
    #[derive(Default)]
    pub struct StatfsReply {
        pub bsize: u32,
        pub blocks: u64,
        pub bfree: u64,
        pub bavail: u64,
        pub files: u64,
        pub ffree: u64,
        pub namelen: u32,
    }
}

// ---------------------------------------------------------------------------------------------
// Attributes and layouts

/// `lmm_pattern` values (lustre_user.h).
pub mod pattern {
    pub const RAID0: u32 = 0x1;
    pub const MDT: u32 = 0x100;
    pub const OVERSTRIPING: u32 = 0x200;
    pub const F_RELEASED: u32 = 0x8000_0000;
}

/// HSM state bits (lustre_user.h), kept in every inode for the HSM work to come.
pub mod hsm_state {
    pub const NONE: u32 = 0;
    pub const EXISTS: u32 = 0x1;
    pub const DIRTY: u32 = 0x2;
    pub const RELEASED: u32 = 0x4;
    pub const ARCHIVED: u32 = 0x8;
}

wire_type! {
    /// The attributes of one inode.
    pub struct Attr {
        pub fid: Fid,
        /// File type and permission bits, as `st_mode`.
        pub mode: u32,
        pub nlink: u32,
        pub uid: u32,
        pub gid: u32,
        pub rdev: u32,
        pub size: u64,
        /// 512-byte blocks in use.
        pub blocks: u64,
        pub atime: Timespec,
        pub mtime: Timespec,
        pub ctime: Timespec,
        pub btime: Timespec,
        /// The generation of the file's layout, bumped on every layout change.
        pub layout_gen: u32,
        /// HSM state bits ([`hsm_state`]).
        pub hsm_state: u32,
        pub flags: u32,
    }
}

impl Attr {
    pub fn file_type(&self) -> u32 {
        self.mode & libc::S_IFMT
    }
    pub fn is_dir(&self) -> bool {
        self.file_type() == libc::S_IFDIR
    }
    pub fn is_reg(&self) -> bool {
        self.file_type() == libc::S_IFREG
    }
    pub fn is_symlink(&self) -> bool {
        self.file_type() == libc::S_IFLNK
    }
}

wire_type! {
    /// One OST object of a stripe: where it lives and its id there.
    #[derive(Copy, Hash)]
    pub struct OstObject {
        pub ost_idx: u32,
        pub oid: ObjId,
        /// The object's sequence (Lustre's `group` column); 0 for now.
        pub seq: u64,
    }
}

/// `stripe_count` meaning "as many stripes as there are OSTs" (Lustre's -1).
pub const STRIPE_COUNT_ALL: u32 = u32::MAX;
/// `stripe_count` or `stripe_size` meaning "inherit the default".
pub const STRIPE_DEFAULT: u32 = 0;
/// `stripe_offset` meaning "let the MDS choose the first OST" (Lustre's -1).
pub const STRIPE_OFFSET_ANY: u32 = u32::MAX;

wire_type! {
    /// A RAID0 stripe layout: the stripes of a file or of one component.
    pub struct StripeLayout {
        pub pattern: u32,
        pub stripe_size: u64,
        pub stripe_count: u32,
        /// The first OST index, or [`STRIPE_OFFSET_ANY`].
        pub stripe_offset: u32,
        /// OST pool name, empty for none.
        pub pool: String,
        /// One object per stripe, in stripe order. Empty in a template (a directory
        /// default, or a `setstripe` request).
        pub objects: Vec<OstObject>,
    }
}

/// `lcme_extent.e_end` meaning end of file.
pub const EXTENT_EOF: u64 = u64::MAX;

wire_type! {
    /// One component of a layout: a stripe layout over an extent of the file. Plain files
    /// have one component covering [0, EOF); composite (PFL) and mirrored (FLR) layouts have
    /// several.
    pub struct LayoutComponent {
        pub id: u32,
        pub mirror_id: u16,
        pub flags: u32,
        pub extent_start: u64,
        pub extent_end: u64,
        pub stripe: StripeLayout,
    }
}

wire_type! {
    /// A file's layout (or a directory's default layout when the objects are empty).
    pub struct Layout {
        pub layout_gen: u32,
        /// 0 for a plain layout; the number of mirrors for FLR.
        pub mirror_count: u16,
        pub components: Vec<LayoutComponent>,
    }
}

impl Layout {
    /// A plain (single-component) RAID0 layout.
    pub fn plain(stripe: StripeLayout) -> Layout {
        Layout {
            layout_gen: 0,
            mirror_count: 0,
            components: vec![LayoutComponent {
                id: 1,
                mirror_id: 0,
                flags: 0,
                extent_start: 0,
                extent_end: EXTENT_EOF,
                stripe,
            }],
        }
    }

    /// The stripe layout of a plain layout; `None` for composite ones.
    pub fn as_plain(&self) -> Option<&StripeLayout> {
        match self.components.as_slice() {
            [c] if c.extent_start == 0 && c.extent_end == EXTENT_EOF && self.mirror_count == 0 => {
                Some(&c.stripe)
            }
            _ => None,
        }
    }

    pub fn as_plain_mut(&mut self) -> Option<&mut StripeLayout> {
        let plain = self.as_plain().is_some();
        match self.components.as_mut_slice() {
            [c] if plain => Some(&mut c.stripe),
            _ => None,
        }
    }
}

wire_type! {
    /// How to set a time in setattr.
    #[derive(Copy)]
    pub enum TimeSet { Now, At(Timespec) }
}

wire_type! {
    /// The attributes a setattr changes; `None` leaves one alone.
    #[derive(Default)]
    pub struct SetAttr {
        pub mode: Option<u32>,
        pub uid: Option<u32>,
        pub gid: Option<u32>,
        pub size: Option<u64>,
        pub atime: Option<TimeSet>,
        pub mtime: Option<TimeSet>,
        /// The new ctime; `None` is the server's now (unless `keep_ctime`).
        pub ctime: Option<Timespec>,
        /// Leave ctime as it is: an access-time update by a read, which Linux does not
        /// count as a change of the inode.
        pub keep_ctime: bool,
        /// A writer's report of what its writes did (at the last close, at fsync): the size
        /// only grows and the mtime only moves forward (ctime with it); what is already past
        /// them on the MDS (another writer's report, a truncate up) stays.
        pub grow_only: bool,
    }
}

// ---------------------------------------------------------------------------------------------
// MGS

wire_type! {
    /// A target registering with the MGS at start (MGS_TARGET_REG).
    pub struct TargetRegReq {
        pub fsname: String,
        pub kind: TargetKind,
        pub index: u32,
        /// The NIDs the target is served on, as strings (`127.0.0.1:7001@tcp`).
        pub nids: Vec<String>,
    }
}

wire_type! {
    pub struct TargetRegReply {
        /// The target's name (`sheen-OST0001`).
        pub name: String,
    }
}

wire_type! {
    /// One registered target.
    pub struct TargetInfo {
        pub name: String,
        pub kind: TargetKind,
        pub index: u32,
        pub nids: Vec<String>,
    }
}

wire_type! {
    pub struct ConfigReadReq { pub fsname: String }
}

wire_type! {
    /// The filesystem's configuration, as clients and the MDS fetch it (MGS_CONFIG_READ).
    pub struct FsConfig {
        pub fsname: String,
        pub default_stripe_count: u32,
        pub default_stripe_size: u64,
        pub targets: Vec<TargetInfo>,
        /// Bumped on every change, so a reader can tell whether it is out of date.
        pub generation: u64,
    }
}

// ---------------------------------------------------------------------------------------------
// MDS

wire_type! {
    pub struct GetattrReq {
        pub fid: Fid,
        /// Also return the symlink target (readlink).
        pub want_symlink: bool,
    }
}

wire_type! {
    /// Lookup of `name` in `parent` (MDS_GETATTR_NAME).
    pub struct LookupReq { pub parent: Fid, pub name: Vec<u8> }
}

wire_type! {
    /// Attributes of one inode, with its layout for regular files and its target for
    /// symlinks when asked.
    pub struct AttrReply {
        pub attr: Attr,
        pub layout: Option<Layout>,
        pub symlink: Option<Vec<u8>>,
    }
}

wire_type! {
    /// The caller's identity for permission checks and new inodes' ownership, and its
    /// file-creation mask (Lustre's `cr_umask`): the MDS applies `umask` to a new inode's
    /// mode unless the parent directory has a default ACL, which takes its place (POSIX.1e).
    /// A umask of 0 masks nothing.
    #[derive(Copy, Default)]
    pub struct Creds { pub uid: u32, pub gid: u32, pub umask: u32 }
}

wire_type! {
    /// Namespace-changing operations (MDS_REINT), one variant per Lustre REINT sub-op.
    pub enum ReintReq {
        Setattr { fid: Fid, attr: SetAttr },
        /// Creates a regular file, directory, symlink or device node. For regular files the
        /// MDS allocates the OST objects; `layout` asks for stripe settings (a template).
        Create {
            parent: Fid,
            name: Vec<u8>,
            mode: u32,
            rdev: u32,
            creds: Creds,
            symlink: Option<Vec<u8>>,
            layout: Option<Layout>,
            /// Also open the new regular file (open(2) with O_CREAT); see `MdsOpen`.
            open: bool,
        },
        Link { fid: Fid, parent: Fid, name: Vec<u8> },
        Unlink { parent: Fid, name: Vec<u8> },
        Rmdir { parent: Fid, name: Vec<u8> },
        Rename {
            src_parent: Fid,
            src_name: Vec<u8>,
            dst_parent: Fid,
            dst_name: Vec<u8>,
            flags: u32,
        },
        /// `flags`: [`xattr_flags`].
        Setxattr { fid: Fid, name: Vec<u8>, value: Vec<u8>, flags: u32 },
        Removexattr { fid: Fid, name: Vec<u8> },
    }
}

/// Flags of a setxattr (`ReintReq::Setxattr`): Linux's, and Sheen's own above them.
pub mod xattr_flags {
    /// Fail if the attribute exists (Linux `XATTR_CREATE`).
    pub const CREATE: u32 = 1;
    /// Fail if the attribute does not exist (Linux `XATTR_REPLACE`).
    pub const REPLACE: u32 = 2;
    /// With `system.posix_acl_access`: also clear the set-group-ID bit, because the caller
    /// is neither in the file's group nor privileged (FUSE's `FUSE_SETXATTR_ACL_KILL_SGID`).
    pub const ACL_KILL_SGID: u32 = 1 << 16;
}

wire_type! {
    /// What a REINT changed: the attributes of the inode created or changed, and for
    /// regular files its layout.
    ///
    /// A create that opens (`ReintReq::Create { open: true, .. }`, Lustre's open intent)
    /// also grants the creator the new file's LOOKUP and attribute locks (`ibits::LOOKUP`,
    /// `ibits::ATTR`, PR) when they can be had without waiting, so that it may cache the
    /// name and attributes it has just made; `writers` then counts the file's opens for
    /// writing over all clients (the creator's own included).
    ///
    /// A change of one directory's entries (create, unlink, rmdir) also grants the client
    /// that made it the directory's attribute lock back (`ibits::ATTR`, PR, when it can be
    /// had without waiting), with the directory's attributes read under it: the client
    /// cancelled its own before the change, and the kernel asks for them again at once.
    /// `parent_version` then says which version of the directory's entries the change
    /// turned into which, when no other change came between it and the lock's grant:
    /// a client that knew every name of the directory at `before` knows them all again,
    /// with its own change applied, for as long as the lock is held.
    ///
    /// A mkdir likewise grants its client the new directory's attribute lock (in `locks`)
    /// with the directory's version (`dir_version`): it is empty at that version. A setattr
    /// of the access time alone (a read's relatime update) grants the file's attribute lock
    /// back (in `locks`), with its attributes, layout and `writers` read under it.
    #[derive(Default)]
    pub struct ReintReply {
        pub attr: Option<Attr>,
        pub layout: Option<Layout>,
        pub locks: Vec<EnqueueReply>,
        pub writers: u32,
        pub parent_attr: Option<Attr>,
        pub parent_locks: Vec<EnqueueReply>,
        pub parent_version: Option<DirVersion>,
        pub dir_version: Option<u64>,
    }
}

wire_type! {
    /// Two versions of a directory's entries, each the transno of the change that made it;
    /// no other change of its entries came between them but the one the reply is for.
    #[derive(Copy)]
    pub struct DirVersion { pub before: u64, pub after: u64 }
}

wire_type! {
    /// Directory listing from `cookie` on (0 = the start).
    pub struct ReaddirReq { pub fid: Fid, pub cookie: u64, pub max_entries: u32 }
}

wire_type! {
    pub struct DirEntry {
        pub name: Vec<u8>,
        pub fid: Fid,
        /// File type bits (`mode & S_IFMT`).
        pub file_type: u32,
        /// The cookie that resumes the listing after this entry.
        pub next_cookie: u64,
    }
}

wire_type! {
    pub struct ReaddirReply { pub entries: Vec<DirEntry>, pub eof: bool }
}

wire_type! {
    /// Extended attribute queries (MDS_GETXATTR): one value, or the list of names.
    pub enum XattrReq {
        Get { fid: Fid, name: Vec<u8> },
        List { fid: Fid },
    }
}

wire_type! {
    pub struct XattrReply {
        /// The value for `Get`; the NUL-separated names for `List`.
        pub value: Vec<u8>,
    }
}

// ---------------------------------------------------------------------------------------------
// OST

wire_type! {
    /// Precreate `count` objects (OST_CREATE); the OST answers with a contiguous range.
    pub struct OstCreateReq { pub count: u32 }
}

wire_type! {
    pub struct OstCreateReply { pub first_oid: ObjId, pub count: u32 }
}

wire_type! {
    /// Names one object (OST_GETATTR, OST_DESTROY, OST_SYNC).
    pub struct ObjReq { pub oid: ObjId }
}

wire_type! {
    /// Objects of one OST to destroy (OST_DESTROY_BATCH), at most
    /// [`crate::limits::DESTROY_BATCH_MAX`]; the reply is an [`OstDestroyBatchReply`].
    pub struct OstDestroyBatchReq { pub oids: Vec<ObjId> }
}

wire_type! {
    /// How many of the objects existed and are destroyed; the others were already gone.
    pub struct OstDestroyBatchReply { pub destroyed: u32 }
}

wire_type! {
    pub struct ObjAttr {
        pub oid: ObjId,
        pub size: u64,
        /// Bytes of OST space the object holds.
        pub allocated_bytes: u64,
        pub mtime: Timespec,
    }
}

wire_type! {
    /// Reads `len` bytes at `offset` of an object (OST_READ). The reply's bulk holds the
    /// data up to the object's end; a shorter bulk means end of object.
    pub struct OstReadReq { pub oid: ObjId, pub offset: u64, pub len: u32 }
}

wire_type! {
    /// Writes the request's bulk at `offset` of an object (OST_WRITE).
    pub struct OstWriteReq { pub oid: ObjId, pub offset: u64, pub mtime: Timespec }
}

wire_type! {
    pub struct OstWriteReply { pub size: u64 }
}

wire_type! {
    /// Truncates (or extends, sparse) an object to `size` (OST_PUNCH).
    pub struct OstPunchReq { pub oid: ObjId, pub size: u64 }
}

wire_type! {
    pub struct OstSetattrReq { pub oid: ObjId, pub mtime: Option<Timespec> }
}

wire_type! {
    /// fallocate(2) on `[offset, offset + len)` of an object (OST_FALLOCATE); `mode` is
    /// Linux's flags ([`falloc`]): 0 allocates the range ahead and extends the object to its
    /// end, `KEEP_SIZE` allocates without extending, `PUNCH_HOLE | KEEP_SIZE` frees it. The
    /// mtime is the client's time of the call, which the object takes (as for a write) when
    /// its size grows or a hole is punched. With `check_only` nothing changes: the OST only
    /// answers ENOSPC when it does not have the blocks the allocation needs, so that a client
    /// spreading one fallocate over several OSTs can fail before any of them allocates.
    /// The reply is an [`OstWriteReply`] with the object's size.
    pub struct OstFallocateReq {
        pub oid: ObjId,
        pub offset: u64,
        pub len: u64,
        pub mode: u32,
        pub mtime: Timespec,
        pub check_only: bool,
    }
}

/// Modes of fallocate (`OstFallocateReq::mode`): Linux's `FALLOC_FL_*` values.
pub mod falloc {
    /// Allocate without changing the size (`FALLOC_FL_KEEP_SIZE`).
    pub const KEEP_SIZE: u32 = 0x01;
    /// Free the range; only with `KEEP_SIZE` (`FALLOC_FL_PUNCH_HOLE`).
    pub const PUNCH_HOLE: u32 = 0x02;
    /// `FALLOC_FL_COLLAPSE_RANGE`: not supported.
    pub const COLLAPSE_RANGE: u32 = 0x08;
    /// `FALLOC_FL_ZERO_RANGE`: not supported.
    pub const ZERO_RANGE: u32 = 0x10;
    /// `FALLOC_FL_INSERT_RANGE`: not supported.
    pub const INSERT_RANGE: u32 = 0x20;
    /// `FALLOC_FL_UNSHARE_RANGE`: not supported.
    pub const UNSHARE_RANGE: u32 = 0x40;

    /// Whether Sheen does this mode: 0 (allocate, extending the size), `KEEP_SIZE`, and
    /// `PUNCH_HOLE | KEEP_SIZE`. Everything else is EOPNOTSUPP.
    pub fn is_supported(mode: u32) -> bool {
        matches!(mode, 0 | KEEP_SIZE) || mode == PUNCH_HOLE | KEEP_SIZE
    }
}

wire_type! {
    /// Lists the object index from `start` on (OST_GET_INFO).
    pub struct OstListReq { pub start: ObjId, pub max: u32 }
}

wire_type! {
    pub struct OstListReply { pub objects: Vec<ObjAttr>, pub eof: bool }
}

wire_type! {
    /// Sync one object (`Some`) or the whole OST (`None`).
    pub struct OstSyncReq { pub oid: Option<ObjId> }
}

wire_type! {
    /// Body of an error reply: the status is in the header, this says what happened.
    pub struct ErrorReply { pub message: String }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{decode, encode};

    fn layout() -> Layout {
        Layout::plain(StripeLayout {
            pattern: pattern::RAID0,
            stripe_size: 1 << 20,
            stripe_count: 2,
            stripe_offset: 1,
            pool: String::new(),
            objects: vec![
                OstObject {
                    ost_idx: 1,
                    oid: 5,
                    seq: 0,
                },
                OstObject {
                    ost_idx: 2,
                    oid: 9,
                    seq: 0,
                },
            ],
        })
    }

    #[test]
    fn bodies_round_trip() {
        let req = ReintReq::Create {
            parent: Fid::ROOT,
            name: b"f".to_vec(),
            mode: 0o100644,
            rdev: 0,
            creds: Creds {
                uid: 1,
                gid: 2,
                umask: 0o022,
            },
            symlink: None,
            layout: Some(layout()),
            open: true,
        };
        let b = encode(&req);
        assert_eq!(decode::<ReintReq>(&b).unwrap(), req);
        // Decoding from an unaligned slice works too.
        let mut shifted = vec![0u8];
        shifted.extend_from_slice(&b);
        assert_eq!(decode::<ReintReq>(&shifted[1..]).unwrap(), req);
    }

    #[test]
    fn fallocate_request_and_modes() {
        let req = OstFallocateReq {
            oid: 3,
            offset: 4096,
            len: 1 << 30,
            mode: falloc::PUNCH_HOLE | falloc::KEEP_SIZE,
            mtime: Timespec { sec: 1, nsec: 2 },
            check_only: true,
        };
        assert_eq!(decode::<OstFallocateReq>(&encode(&req)).unwrap(), req);
        // Linux's numbers (linux/falloc.h).
        assert_eq!(falloc::KEEP_SIZE, libc::FALLOC_FL_KEEP_SIZE as u32);
        assert_eq!(falloc::PUNCH_HOLE, libc::FALLOC_FL_PUNCH_HOLE as u32);
        assert_eq!(falloc::ZERO_RANGE, libc::FALLOC_FL_ZERO_RANGE as u32);
        assert_eq!(
            falloc::COLLAPSE_RANGE,
            libc::FALLOC_FL_COLLAPSE_RANGE as u32
        );
        assert_eq!(falloc::INSERT_RANGE, libc::FALLOC_FL_INSERT_RANGE as u32);
        assert_eq!(falloc::UNSHARE_RANGE, libc::FALLOC_FL_UNSHARE_RANGE as u32);
        let supported = [0, falloc::KEEP_SIZE, falloc::PUNCH_HOLE | falloc::KEEP_SIZE];
        for mode in 0..0x80 {
            assert_eq!(
                falloc::is_supported(mode),
                supported.contains(&mode),
                "{mode:#x}"
            );
        }
    }

    #[test]
    fn garbage_bodies_are_errors_not_panics() {
        let b = encode(&layout());
        for cut in 0..b.len() {
            let _ = decode::<Layout>(&b[..cut]);
        }
        let mut x: u32 = 1;
        for len in [0usize, 1, 7, 64, 300] {
            let junk: Vec<u8> = (0..len)
                .map(|_| {
                    x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                    (x >> 16) as u8
                })
                .collect();
            let _ = decode::<ReintReq>(&junk);
            let _ = decode::<FsConfig>(&junk);
        }
        assert!(decode::<Layout>(&[0xff; 3]).is_err());
    }

    #[test]
    fn plain_layout_accessors() {
        let mut l = layout();
        assert_eq!(l.as_plain().map(|s| s.stripe_count), Some(2));
        if let Some(s) = l.as_plain_mut() {
            s.stripe_count = 3;
        }
        assert_eq!(l.components[0].stripe.stripe_count, 3);
    }
}

// ---------------------------------------------------------------------------------------------
// LDLM: the lock protocol [ldlm, lustre_dlm.h]. Pure data; the compatibility rules and the
// lock tables live in `sheen-dlm`.

wire_type! {
    /// A lock mode, with Lustre's bit values (`enum ldlm_mode`), so masks of modes can be
    /// built as in Lustre (`LockMode::Pr.bits() | LockMode::Pw.bits()`).
    #[derive(Copy, Hash, PartialOrd, Ord)]
    #[repr(u32)]
    pub enum LockMode {
        /// Exclusive: no other holder at all (except NL).
        Ex = 1,
        /// Protected write: one writer, no readers (OST writes).
        Pw = 2,
        /// Protected read: many readers, no writers (OST reads, MDS lookups).
        Pr = 4,
        /// Concurrent write (MDS open for write).
        Cw = 8,
        /// Concurrent read (intermediate path components).
        Cr = 16,
        /// Null: compatible with everything, a placeholder.
        Nl = 32,
        /// Group lock: compatible only with group locks of the same group id.
        Group = 64,
    }
}

impl LockMode {
    /// Every mode, strongest first.
    pub const ALL: [LockMode; 7] = [
        LockMode::Ex,
        LockMode::Pw,
        LockMode::Pr,
        LockMode::Cw,
        LockMode::Cr,
        LockMode::Nl,
        LockMode::Group,
    ];

    /// Lustre's bit value.
    pub fn bits(self) -> u32 {
        self as u32
    }

    /// The mode with Lustre's bit value `bits`; `None` for anything else.
    pub fn from_bits(bits: u32) -> Option<LockMode> {
        LockMode::ALL.into_iter().find(|m| m.bits() == bits)
    }

    /// Lustre's short name (`PW`), as in `lctl` output and logs.
    pub fn name(self) -> &'static str {
        match self {
            LockMode::Ex => "EX",
            LockMode::Pw => "PW",
            LockMode::Pr => "PR",
            LockMode::Cw => "CW",
            LockMode::Cr => "CR",
            LockMode::Nl => "NL",
            LockMode::Group => "GROUP",
        }
    }
}

wire_type! {
    /// A lock type, with Lustre's numbers (`enum ldlm_type`).
    #[derive(Copy, Hash)]
    #[repr(u32)]
    pub enum LockType {
        /// No policy data (MGS configuration locks).
        Plain = 10,
        /// Byte ranges of an OST object, with a group id.
        Extent = 11,
        /// POSIX and BSD file locks.
        Flock = 12,
        /// MDT inode bits.
        Ibits = 13,
    }
}

/// Inode bits of MDT locks (`MDS_INODELOCK_*`): a lock covers only the parts it names.
pub mod ibits {
    /// The name → FID binding (dentry).
    pub const LOOKUP: u64 = 0x1;
    /// Attributes and directory contents.
    pub const UPDATE: u64 = 0x2;
    /// An open file (open-lock caching).
    pub const OPEN: u64 = 0x4;
    /// The file's layout.
    pub const LAYOUT: u64 = 0x8;
    /// Permissions and ownership.
    pub const PERM: u64 = 0x10;
    /// Extended attributes.
    pub const XATTR: u64 = 0x20;
    /// Data on MDT.
    pub const DOM: u64 = 0x40;
    /// The bits a client caches attributes under: attributes, permissions and ownership,
    /// extended attributes (what a getattr shows, less the name).
    pub const ATTR: u64 = UPDATE | PERM | XATTR;
    /// Every bit defined so far; a lock asking for others is refused.
    pub const ALL: u64 = LOOKUP | UPDATE | OPEN | LAYOUT | PERM | XATTR | DOM;
}

/// Enqueue flags (`LDLM_FL_*`), Lustre's values.
pub mod ldlm_flags {
    /// Do not wait: fail with EAGAIN instead of queueing behind a conflict.
    pub const BLOCK_NOWAIT: u64 = 0x40000;
    /// Only test whether the lock could be granted; take nothing.
    pub const TEST_LOCK: u64 = 0x800;
}

wire_type! {
    /// The name of a lock resource (`ldlm_res_id`: four 64-bit words). Build one with
    /// [`ResourceId::fid`] (MDT inode locks) or [`ResourceId::object`] (OST extent locks).
    #[derive(Copy, Hash, PartialOrd, Ord, Default)]
    pub struct ResourceId { pub name: [u64; 4] }
}

impl ResourceId {
    /// The resource of an MDT inode, as Lustre names it: sequence, then oid and version.
    pub fn fid(fid: Fid) -> ResourceId {
        ResourceId {
            name: [
                fid.seq,
                u64::from(fid.oid) | (u64::from(fid.ver) << 32),
                0,
                0,
            ],
        }
    }

    /// The resource of one OST object: object id, sequence, then the OST index (an OSS
    /// serves several OSTs; each OST has its own lock namespace, the index is there so a
    /// resource printed in a log says which).
    pub fn object(ost_idx: u32, oid: ObjId) -> ResourceId {
        ResourceId {
            name: [oid, 0, u64::from(ost_idx), 0],
        }
    }
}

impl std::fmt::Display for ResourceId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let [a, b, c, d] = self.name;
        write!(f, "[{a:#x}:{b:#x}:{c:#x}:{d:#x}]")
    }
}

/// Extent end meaning "to the end of the object" (Lustre's `OBD_OBJECT_EOF`).
pub const LOCK_EXTENT_EOF: u64 = u64::MAX;

wire_type! {
    /// A byte range of an extent lock, both ends inclusive as in Lustre (`[0, EOF]` is the
    /// whole object), and the group id of GROUP locks (0 otherwise).
    #[derive(Copy, Hash)]
    pub struct LockExtent { pub start: u64, pub end: u64, pub gid: u64 }
}

wire_type! {
    /// What part of a resource a lock covers (`ldlm_policy_data`); the variant is the lock
    /// type.
    #[derive(Copy, Hash)]
    pub enum LockPolicy {
        Plain,
        Extent(LockExtent),
        /// Inode bits ([`ibits`]).
        Ibits { bits: u64 },
    }
}

impl LockPolicy {
    pub fn lock_type(&self) -> LockType {
        match self {
            LockPolicy::Plain => LockType::Plain,
            LockPolicy::Extent(_) => LockType::Extent,
            LockPolicy::Ibits { .. } => LockType::Ibits,
        }
    }
}

wire_type! {
    /// One lock: what it covers and how (`ldlm_lock_desc`).
    #[derive(Copy, Hash)]
    pub struct LockDesc {
        pub resource: ResourceId,
        pub mode: LockMode,
        pub policy: LockPolicy,
    }
}

wire_type! {
    /// A lock handle (`lustre_handle`): the server's cookie naming one lock.
    #[derive(Copy, Hash, PartialOrd, Ord, Default)]
    pub struct LockHandle { pub cookie: u64 }
}

wire_type! {
    /// The lock value block of an OST object's resource (`ost_lvb`): what a glimpse returns
    /// so a client learns the size without taking the lock away from its holder.
    #[derive(Copy, Default)]
    pub struct Lvb {
        pub size: u64,
        pub mtime: Timespec,
        pub atime: Timespec,
        pub ctime: Timespec,
        /// 512-byte blocks in use.
        pub blocks: u64,
    }
}

wire_type! {
    /// Asks for a lock (LDLM_ENQUEUE).
    pub struct EnqueueReq {
        pub desc: LockDesc,
        /// [`ldlm_flags`].
        pub flags: u64,
    }
}

wire_type! {
    /// The answer to an enqueue. When `granted` is false the lock waits on the server and a
    /// completion callback (LDLM_CP_CALLBACK) follows once it is granted.
    pub struct EnqueueReply {
        pub handle: LockHandle,
        /// The lock as granted: an extent may have grown beyond the one asked for.
        pub desc: LockDesc,
        pub granted: bool,
        /// The resource's lock value block, for extent locks.
        pub lvb: Option<Lvb>,
    }
}

wire_type! {
    /// Changes a granted lock's mode (LDLM_CONVERT); only downgrades are accepted.
    pub struct ConvertReq { pub handle: LockHandle, pub mode: LockMode }
}

wire_type! {
    /// Releases locks (LDLM_CANCEL); a client batches several cancels into one request.
    pub struct CancelReq { pub handles: Vec<LockHandle> }
}

wire_type! {
    /// Server to holder (LDLM_BL_CALLBACK): another client wants `conflict`; flush what the
    /// lock protects and cancel it.
    pub struct BlockingAst { pub handle: LockHandle, pub conflict: LockDesc }
}

wire_type! {
    /// Server to waiter (LDLM_CP_CALLBACK): the lock is granted, as `desc` says.
    pub struct CompletionAst {
        pub handle: LockHandle,
        pub desc: LockDesc,
        pub lvb: Option<Lvb>,
    }
}

wire_type! {
    /// Server to holder (LDLM_GL_CALLBACK): report the object's size and times as you know
    /// them; the answer is an [`Lvb`].
    pub struct GlimpseAst { pub handle: LockHandle }
}

// ---------------------------------------------------------------------------------------------
// Getattr with a lock

wire_type! {
    /// MDS_GETATTR_LOCK: the attributes of `fid`, or of the entry `name` in directory `fid`
    /// when a name is given, and one lock on the inode in `mode` for each entry of `bits`
    /// (inode bits, [`ibits`]) that the MDS can grant without waiting.
    pub struct GetattrLockReq {
        pub fid: Fid,
        pub name: Option<Vec<u8>>,
        pub want_symlink: bool,
        pub mode: LockMode,
        pub bits: Vec<u64>,
    }
}

wire_type! {
    /// The answer: the attributes, and the locks granted (those another client's conflicting
    /// lock stood in the way of are missing: what they would cover is good for this answer
    /// only).
    pub struct GetattrLockReply {
        pub reply: AttrReply,
        pub locks: Vec<EnqueueReply>,
        /// Opens for writing of the file, over all clients: while there are none, the MDS's
        /// size is the file's (writers report theirs at close); else ask the objects.
        pub writers: u32,
    }
}

wire_type! {
    /// MDS_GETATTR_BATCH: what MDS_GETATTR_LOCK answers for each of `names` in directory
    /// `parent` (at most [`crate::limits::GETATTR_BATCH_MAX`]), with locks in `mode` on
    /// each set of `bits`.
    pub struct GetattrBatchReq {
        pub parent: Fid,
        pub names: Vec<Vec<u8>>,
        pub mode: LockMode,
        pub bits: Vec<u64>,
    }
}

wire_type! {
    /// The answers, one per name and in order; `None` for a name that has no entry (or
    /// whose lookup failed otherwise: the client asks on its own when it needs it).
    pub struct GetattrBatchReply { pub entries: Vec<Option<GetattrLockReply>> }
}

wire_type! {
    /// MDS_REINT_CANCEL: a namespace change, after cancelling the client's own locks named
    /// in `cancels` (those the change would call back). Replied with a `ReintReply`.
    pub struct ReintCancelReq {
        pub cancels: Vec<LockHandle>,
        pub reint: ReintReq,
    }
}

// ---------------------------------------------------------------------------------------------
// Open and close

wire_type! {
    /// MDS_OPEN: the client opened `fid` (`flags` as open(2)). The reply is an `AttrReply`.
    pub struct OpenReq { pub fid: Fid, pub flags: u32 }
}

wire_type! {
    /// MDS_CLOSE: the client's last use of an open of `fid` ended. Replied with `Empty`.
    pub struct CloseReq { pub fid: Fid }
}

// ---------------------------------------------------------------------------------------------
// File locks (fcntl record locks and flock)

wire_type! {
    /// Which family a file lock belongs to: the two do not conflict with each other, as on
    /// Linux.
    #[derive(Copy, Hash)]
    #[repr(u8)]
    pub enum FlockKind {
        /// fcntl(2) record locks: byte ranges, per owner (the kernel's lock owner).
        Posix = 0,
        /// flock(2) locks: the whole file, per open file description.
        Flock = 1,
    }
}

wire_type! {
    /// What an MDS_FLOCK request asks for.
    #[derive(Copy, Hash)]
    #[repr(u8)]
    pub enum FlockOp {
        /// F_GETLK: the first lock that would conflict with the one described.
        GetLk = 0,
        /// F_SETLK: take (or change, or with `FlockType::Unlock` drop) the lock, or EAGAIN.
        SetLk = 1,
        /// F_SETLKW: as `SetLk`, waiting for the conflicting locks to go; the MDS waits a
        /// bounded time ([`crate::limits::FLOCK_WAIT_MAX`]) and then answers EINPROGRESS, on
        /// which the client asks again. EDEADLK for a POSIX lock whose owner is waited for by
        /// an owner it would wait for.
        SetLkWait = 2,
        /// Drops the owner's locks on the range.
        Unlock = 3,
        /// Drops every lock of the owner on the file (close).
        ReleaseOwner = 4,
    }
}

wire_type! {
    #[derive(Copy, Hash)]
    #[repr(u8)]
    pub enum FlockType {
        Read = 0,
        Write = 1,
        Unlock = 2,
    }
}

wire_type! {
    /// MDS_FLOCK: a file lock operation on `fid` for `owner` (the client's kernel's lock
    /// owner, which the MDS scopes by the client's uuid). `start..=end` in bytes (`end` is
    /// `u64::MAX` or the largest offset for "to the end"); flock locks ignore the range.
    /// Replied with a [`FlockReply`].
    pub struct FlockReq {
        pub fid: Fid,
        pub kind: FlockKind,
        pub op: FlockOp,
        pub owner: u64,
        /// The process asking, as its client sees it: what F_GETLK reports to others.
        pub pid: u32,
        pub typ: FlockType,
        pub start: u64,
        pub end: u64,
    }
}

wire_type! {
    /// A lock that conflicts (F_GETLK's answer).
    pub struct FlockConflict {
        pub typ: FlockType,
        pub start: u64,
        pub end: u64,
        pub pid: u32,
    }
}

wire_type! {
    /// The answer to MDS_FLOCK: for `GetLk` the first conflicting lock, if any; `None` for
    /// every other operation (which fail with an errno instead).
    pub struct FlockReply { pub conflict: Option<FlockConflict> }
}

// ---------------------------------------------------------------------------------------------
// Readdir with attributes

wire_type! {
    /// MDS_READDIR_PLUS: a page of directory `fid` from `cookie` on, paged as MDS_READPAGE
    /// pages (same cookies), each entry with what a getattr of it returns, read together with
    /// the names. For at most `lock_entries` entries the MDS also grants, without waiting,
    /// one lock in `mode` on the entry's inode for each set of inode bits in `bits` (as
    /// MDS_GETATTR_LOCK does): an entry gets all of them or none. Entries whose locks the
    /// client holds already (and that are not being called back) are read under those,
    /// whatever `lock_entries` says.
    pub struct ReaddirPlusReq {
        pub fid: Fid,
        pub cookie: u64,
        pub max_entries: u32,
        pub mode: LockMode,
        pub bits: Vec<u64>,
        pub lock_entries: u32,
    }
}

wire_type! {
    /// One entry of an MDS_READDIR_PLUS page.
    pub struct DirEntryPlus {
        pub entry: DirEntry,
        pub attr: Attr,
        /// A regular file's layout.
        pub layout: Option<Layout>,
        /// Opens for writing of the file over all clients, as in `GetattrLockReply`.
        pub writers: u32,
        /// The locks granted for this entry; empty when `locked` is false.
        pub locks: Vec<EnqueueReply>,
        /// `attr`, and the name's binding to the inode, were read while the client held a
        /// lock for every set of bits asked for: granted in `locks`, or held already (the
        /// client finds those in its cache). When false, `attr` is good for this answer only.
        pub locked: bool,
    }
}

wire_type! {
    pub struct ReaddirPlusReply { pub entries: Vec<DirEntryPlus>, pub eof: bool }
}

/// Bytes an encoded [`DirEntryPlus`] takes besides its name, layout and locks (checked
/// against rkyv's encoding by a test).
const DIR_ENTRY_PLUS_FIXED_BYTES: usize = 256;
/// Bytes one [`EnqueueReply`] takes in an encoded [`DirEntryPlus`].
const ENQUEUE_REPLY_BYTES: usize = 192;
/// Bytes an encoded [`Layout`] takes besides its components.
const LAYOUT_FIXED_BYTES: usize = 32;
/// Bytes one [`LayoutComponent`] takes besides its pool name and objects.
const LAYOUT_COMPONENT_BYTES: usize = 96;
/// Bytes one [`OstObject`] takes in an encoded layout.
const OST_OBJECT_BYTES: usize = 24;

impl Layout {
    /// At least the bytes this layout takes encoded inside another body (alignment
    /// included).
    pub fn wire_bytes_bound(&self) -> usize {
        let components: usize = self
            .components
            .iter()
            .map(|c| {
                LAYOUT_COMPONENT_BYTES
                    + c.stripe.pool.len().next_multiple_of(8)
                    + c.stripe.objects.len() * OST_OBJECT_BYTES
            })
            .sum();
        LAYOUT_FIXED_BYTES + components
    }
}

impl DirEntryPlus {
    /// At least the bytes one entry named with `name_len` bytes, with `layout` and at most
    /// [`crate::limits::IBITS_SETS_MAX`] locks takes in an encoded [`ReaddirPlusReply`]:
    /// what a page is measured in against [`crate::limits::READDIRPLUS_MAX_BYTES`].
    pub fn wire_bytes_bound(name_len: usize, layout: Option<&Layout>) -> usize {
        DIR_ENTRY_PLUS_FIXED_BYTES
            + name_len.next_multiple_of(8)
            + crate::limits::IBITS_SETS_MAX * ENQUEUE_REPLY_BYTES
            + layout.map_or(0, Layout::wire_bytes_bound)
    }
}

#[cfg(test)]
mod readdir_plus_tests {
    use super::*;
    use crate::limits::{IBITS_SETS_MAX, NAME_MAX_BYTES, STRIPE_COUNT_MAX};
    use crate::{decode, encode};

    /// Bytes an encoded reply takes besides its entries.
    const REPLY_FIXED_BYTES: usize = 64;

    fn layout(components: usize, objects: u32, pool: &str) -> Layout {
        let stripe = StripeLayout {
            pattern: pattern::RAID0,
            stripe_size: 1 << 20,
            stripe_count: objects,
            stripe_offset: 0,
            pool: pool.to_owned(),
            objects: (0..objects)
                .map(|i| OstObject {
                    ost_idx: i,
                    oid: u64::MAX - u64::from(i),
                    seq: u64::MAX,
                })
                .collect(),
        };
        let mut l = Layout::plain(stripe);
        let first = l.components[0].clone();
        l.components = (0..components).map(|_| first.clone()).collect();
        l
    }

    fn entry(name_len: usize, layout: Option<Layout>, n_locks: usize) -> DirEntryPlus {
        let lock = EnqueueReply {
            handle: LockHandle { cookie: u64::MAX },
            desc: LockDesc {
                resource: ResourceId::fid(Fid::ROOT),
                mode: LockMode::Pr,
                policy: LockPolicy::Ibits { bits: ibits::ALL },
            },
            granted: true,
            lvb: Some(Lvb::default()),
        };
        let t = Timespec {
            sec: i64::MIN,
            nsec: u32::MAX,
        };
        DirEntryPlus {
            entry: DirEntry {
                name: vec![b'n'; name_len],
                fid: Fid::ROOT,
                file_type: libc::S_IFREG,
                next_cookie: u64::MAX,
            },
            attr: Attr {
                fid: Fid::ROOT,
                mode: u32::MAX,
                nlink: u32::MAX,
                uid: u32::MAX,
                gid: u32::MAX,
                rdev: u32::MAX,
                size: u64::MAX,
                blocks: u64::MAX,
                atime: t,
                mtime: t,
                ctime: t,
                btime: t,
                layout_gen: u32::MAX,
                hsm_state: u32::MAX,
                flags: u32::MAX,
            },
            layout,
            writers: u32::MAX,
            locks: vec![lock; n_locks],
            locked: true,
        }
    }

    #[test]
    fn entry_size_bound_covers_the_encoding() {
        let layouts = [
            None,
            Some(layout(1, 0, "")),
            Some(layout(1, 1, "")),
            Some(layout(1, 2, "pool")),
            Some(layout(3, 7, "fifteen-chars-p")),
            Some(layout(1, STRIPE_COUNT_MAX, "")),
        ];
        let mut page = Vec::new();
        for name_len in [1, 7, 8, 9, 100, NAME_MAX_BYTES] {
            for l in &layouts {
                for n_locks in [0, 1, IBITS_SETS_MAX] {
                    let e = entry(name_len, l.clone(), n_locks);
                    let bound = DirEntryPlus::wire_bytes_bound(name_len, l.as_ref());
                    let one = ReaddirPlusReply {
                        entries: vec![e.clone()],
                        eof: true,
                    };
                    let len = encode(&one).len();
                    assert!(
                        len <= bound + REPLY_FIXED_BYTES,
                        "name {name_len}, {n_locks} locks: {len} bytes, bound {bound}"
                    );
                    page.push((e, bound));
                }
            }
        }
        let bound: usize = page.iter().map(|(_, b)| b).sum();
        let reply = ReaddirPlusReply {
            entries: page.into_iter().map(|(e, _)| e).collect(),
            eof: false,
        };
        let encoded = encode(&reply);
        assert!(encoded.len() <= bound + REPLY_FIXED_BYTES);
        assert_eq!(decode::<ReaddirPlusReply>(&encoded).unwrap(), reply);
    }
}

#[cfg(test)]
mod ldlm_tests {
    use super::*;
    use crate::{decode, encode};

    #[test]
    fn lock_modes_keep_lustres_bits() {
        let bits: Vec<u32> = LockMode::ALL.iter().map(|m| m.bits()).collect();
        assert_eq!(bits, [1, 2, 4, 8, 16, 32, 64]);
        for m in LockMode::ALL {
            assert_eq!(LockMode::from_bits(m.bits()), Some(m));
        }
        assert_eq!(LockMode::from_bits(3), None);
        assert_eq!(LockType::Ibits as u32, 13);
        assert_eq!(LockMode::Pw.name(), "PW");
    }

    #[test]
    fn resource_names() {
        let fid = Fid {
            seq: 0x2_0000_0400,
            oid: 7,
            ver: 1,
        };
        assert_eq!(
            ResourceId::fid(fid).name,
            [0x2_0000_0400, 7 | 1 << 32, 0, 0]
        );
        assert_eq!(ResourceId::object(3, 9).to_string(), "[0x9:0x0:0x3:0x0]");
    }

    #[test]
    fn lock_bodies_round_trip() {
        let desc = LockDesc {
            resource: ResourceId::object(1, 5),
            mode: LockMode::Group,
            policy: LockPolicy::Extent(LockExtent {
                start: 0,
                end: LOCK_EXTENT_EOF,
                gid: 42,
            }),
        };
        let reply = EnqueueReply {
            handle: LockHandle { cookie: 9 },
            desc,
            granted: true,
            lvb: Some(Lvb {
                size: 4096,
                blocks: 8,
                ..Lvb::default()
            }),
        };
        assert_eq!(decode::<EnqueueReply>(&encode(&reply)).unwrap(), reply);
        let req = EnqueueReq {
            desc: LockDesc {
                policy: LockPolicy::Ibits {
                    bits: ibits::LOOKUP | ibits::UPDATE,
                },
                mode: LockMode::Pr,
                ..desc
            },
            flags: ldlm_flags::BLOCK_NOWAIT,
        };
        assert_eq!(decode::<EnqueueReq>(&encode(&req)).unwrap(), req);
    }
}
