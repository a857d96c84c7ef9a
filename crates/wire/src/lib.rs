//! Everything that crosses a socket between Sheen's daemons and clients [ptlrpc msg, lustre_idl].
//!
//! This crate holds the frame header and its codec (crc32c over header and body), opcodes,
//! status codes and their errno mapping, NIDs, FIDs and object ids, the rkyv message bodies
//! with validation on decode, and the protocol limits.
//!
//! Architecture invariant: no I/O, no tokio, no tracing. Only this crate derives the rkyv
//! traits for protocol types. Numbers on the wire (opcodes, field order, enum order) are
//! append-only: a retired number is never reused.

pub mod body;
pub mod errno;
pub mod frame;
#[doc(hidden)]
pub mod fuzzing;
pub mod ids;
pub mod limits;
pub mod msg;
pub mod nid;
pub mod opcode;
pub mod piece_crc;

pub use body::{decode, encode, DecodeError, WireDecode, WireEncode};
pub use errno::Errno;
pub use frame::{BulkFrameHeader, FrameError, MsgHeader, MsgKind};
pub use ids::{Fid, ObjId, TargetKind};
pub use msg::*;
pub use nid::{NetType, Nid, NidError};
pub use opcode::Opcode;

/// One message as the RPC layer sees it: a validated header, the encoded body and the bulk
/// data (empty when the message carries none). Bulk travels in its own frames after the
/// message frame; the transport reassembles it into one `Bytes`.
#[derive(Clone, Debug)]
pub struct Message {
    pub header: MsgHeader,
    pub body: bytes::Bytes,
    pub bulk: bytes::Bytes,
    /// The crc32c of each 4 KiB piece of `bulk` ([`piece_crc`]), where whoever made or
    /// received the message had them: a transport derives the bulk frames' crcs from them
    /// when it sends, and records them when it receives.
    pub bulk_crcs: Option<std::sync::Arc<[u32]>>,
}
