//! The native Sheen client [llite minus the VFS, mdc, osc, lov].
//!
//! [`Client::mount`] reads the filesystem configuration from the MGS named by a
//! [`MountSpec`], then talks to MDT0 for the namespace and to the OSTs for data. File data
//! is striped RAID0 over OST objects: reads and writes are split by the file's layout and
//! the pieces go to their OSTs in parallel, each OST with a cap on RPCs in flight. The file
//! size lives on the MDS (size-on-MDS): writers report it with a setattr.
//!
//! Errors are typed ([`ClientError`]) and carry an errno for the application
//! ([`ClientError::errno`]). Limits are in [`limits`].
//!
//! Used by the FUSE client (`sheen-mount`) and the tools (`lfs`, `lctl`).

mod client;
mod dir_names;
mod error;
#[doc(hidden)]
pub mod fuzzing;
pub mod io_plan;
pub mod limits;
mod locks;
pub mod mounts;
mod opens;
mod readahead;
mod spec;
mod statahead;

pub use client::{ping_nid, Client, ClientConfig, Created, LockedWrite, ReaddirPlusEntry};
pub use error::ClientError;
pub use locks::{CacheInvalidator, ATTR_BITS, INVALIDATE_WAIT};
pub use readahead::FileReader;
pub use spec::{MountSpec, MountSpecError};

// Re-exported so users of the client need no direct dependency for the common types.
pub use bytes::Bytes;
pub use sheen_wire::msg::{
    Attr, Creds, DirEntry, FsConfig, Layout, ObjAttr, OstListReply, SetAttr, StatfsReply,
    TargetInfo, TimeSet, Timespec,
};
pub use sheen_wire::{Errno, Fid};
