//! Message bodies are rkyv archives, validated (bytecheck) on every decode and then
//! deserialized into owned types. Senders do not re-validate.

use rkyv::api::high::{HighDeserializer, HighSerializer, HighValidator};
use rkyv::rancor;
use rkyv::ser::allocator::ArenaHandle;
use rkyv::util::AlignedVec;

#[derive(Debug, thiserror::Error)]
#[error("malformed message body: {0}")]
pub struct DecodeError(pub String);

/// Encodes a body.
pub fn encode<T>(value: &T) -> bytes::Bytes
where
    T: for<'a> rkyv::Serialize<HighSerializer<AlignedVec, ArenaHandle<'a>, rancor::Error>>,
{
    match rkyv::to_bytes::<rancor::Error>(value) {
        Ok(v) => bytes::Bytes::from(v.into_vec()),
        // Serializing owned, well-formed Rust values into a growable buffer cannot fail
        // short of running out of memory.
        Err(e) => panic!("rkyv serialization failed: {e}"),
    }
}

/// Validates and decodes a body received from a peer. Never panics on bad input.
pub fn decode<T>(bytes: &[u8]) -> Result<T, DecodeError>
where
    T: rkyv::Archive,
    T::Archived: for<'a> rkyv::bytecheck::CheckBytes<HighValidator<'a, rancor::Error>>
        + rkyv::Deserialize<T, HighDeserializer<rancor::Error>>,
{
    // rkyv needs the archive aligned; a body sliced out of a socket buffer may not be.
    let mut aligned = AlignedVec::<16>::with_capacity(bytes.len());
    aligned.extend_from_slice(bytes);
    rkyv::from_bytes::<T, rancor::Error>(&aligned).map_err(|e| DecodeError(e.to_string()))
}

/// A type that can be sent as a message body. Implemented for every wire type; lets other
/// crates name the bound without depending on rkyv.
pub trait WireEncode {
    fn to_wire(&self) -> bytes::Bytes;
}

impl<T> WireEncode for T
where
    T: for<'a> rkyv::Serialize<HighSerializer<AlignedVec, ArenaHandle<'a>, rancor::Error>>,
{
    fn to_wire(&self) -> bytes::Bytes {
        encode(self)
    }
}

/// A type that can be received as a message body, validated.
pub trait WireDecode: Sized {
    fn from_wire(bytes: &[u8]) -> Result<Self, DecodeError>;
}

impl<T> WireDecode for T
where
    T: rkyv::Archive,
    T::Archived: for<'a> rkyv::bytecheck::CheckBytes<HighValidator<'a, rancor::Error>>
        + rkyv::Deserialize<T, HighDeserializer<rancor::Error>>,
{
    fn from_wire(bytes: &[u8]) -> Result<Self, DecodeError> {
        decode(bytes)
    }
}
