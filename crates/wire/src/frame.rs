//! The frame format. Every message is one fixed 72-byte header followed by its body; bulk
//! data follows the message as its own frames (24-byte header + data), each checksummed.
//!
//! Message header, little-endian (offsets in bytes):
//!
//! | off | size | field |
//! |----:|----:|---|
//! | 0 | 4 | magic `0x0BD00BD5` |
//! | 4 | 2 | version (1) |
//! | 6 | 1 | kind (1 request, 2 reply) |
//! | 7 | 1 | flags (RESENT 0x2, REPLAY 0x4, as Lustre) |
//! | 8 | 4 | opcode |
//! | 12 | 4 | status (0 or negative errno) |
//! | 16 | 8 | xid |
//! | 24 | 8 | transno |
//! | 32 | 8 | last_committed |
//! | 40 | 4 | target index (`u32::MAX` = the service itself) |
//! | 44 | 4 | body length |
//! | 48 | 8 | bulk length (bytes in the bulk frames that follow) |
//! | 56 | 8 | reserved (zero; a future encryption nonce) |
//! | 64 | 4 | crc32c of the body |
//! | 68 | 4 | crc32c of bytes 0..68 |
//!
//! Bulk frame header: magic `0x0BD0B0C5` (4), reserved (4), xid (8), length (4), crc32c of
//! the data (4). The header of a message can be trusted before its body is read: its own
//! checksum is checked first, then every length against [`crate::limits`].

use crate::limits::{BULK_FRAME_BYTES, MAX_BODY_BYTES, MAX_BULK_BYTES};

pub const MSG_MAGIC: u32 = 0x0BD0_0BD5;
pub const BULK_MAGIC: u32 = 0x0BD0_B0C5;
pub const PROTOCOL_VERSION: u16 = 1;
pub const MSG_HEADER_BYTES: usize = 72;
pub const BULK_HEADER_BYTES: usize = 24;
/// Target index of a message meant for the service, not one of its targets.
pub const NO_TARGET: u32 = u32::MAX;

pub const FLAG_RESENT: u8 = 0x2;
pub const FLAG_REPLAY: u8 = 0x4;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MsgKind {
    Request = 1,
    Reply = 2,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MsgHeader {
    pub kind: MsgKind,
    pub flags: u8,
    pub opcode: u32,
    pub status: i32,
    pub xid: u64,
    pub transno: u64,
    pub last_committed: u64,
    pub target_idx: u32,
    pub body_len: u32,
    pub bulk_len: u64,
    pub body_crc: u32,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    #[error("bad magic {0:#010x}")]
    BadMagic(u32),
    #[error("unsupported protocol version {0}")]
    BadVersion(u16),
    #[error("unknown message kind {0}")]
    BadKind(u8),
    #[error("header checksum mismatch (stored {stored:#010x}, computed {computed:#010x})")]
    HeaderChecksum { stored: u32, computed: u32 },
    #[error("body checksum mismatch (stored {stored:#010x}, computed {computed:#010x})")]
    BodyChecksum { stored: u32, computed: u32 },
    #[error("bulk checksum mismatch (stored {stored:#010x}, computed {computed:#010x})")]
    BulkChecksum { stored: u32, computed: u32 },
    #[error("{what} length {len} exceeds the limit {max}")]
    TooLong {
        what: &'static str,
        len: u64,
        max: u64,
    },
    #[error("bulk frame for xid {got} where xid {expected} was expected")]
    BulkXid { expected: u64, got: u64 },
    #[error("reserved header bytes are not zero")]
    Reserved,
}

impl MsgHeader {
    pub fn request(opcode: u32, xid: u64, target_idx: u32) -> MsgHeader {
        MsgHeader {
            kind: MsgKind::Request,
            flags: 0,
            opcode,
            status: 0,
            xid,
            transno: 0,
            last_committed: 0,
            target_idx,
            body_len: 0,
            bulk_len: 0,
            body_crc: 0,
        }
    }

    /// Encodes the header; `body_len`, `bulk_len` and `body_crc` must already be set.
    pub fn encode(&self) -> [u8; MSG_HEADER_BYTES] {
        let mut b = [0u8; MSG_HEADER_BYTES];
        b[0..4].copy_from_slice(&MSG_MAGIC.to_le_bytes());
        b[4..6].copy_from_slice(&PROTOCOL_VERSION.to_le_bytes());
        b[6] = self.kind as u8;
        b[7] = self.flags;
        b[8..12].copy_from_slice(&self.opcode.to_le_bytes());
        b[12..16].copy_from_slice(&self.status.to_le_bytes());
        b[16..24].copy_from_slice(&self.xid.to_le_bytes());
        b[24..32].copy_from_slice(&self.transno.to_le_bytes());
        b[32..40].copy_from_slice(&self.last_committed.to_le_bytes());
        b[40..44].copy_from_slice(&self.target_idx.to_le_bytes());
        b[44..48].copy_from_slice(&self.body_len.to_le_bytes());
        b[48..56].copy_from_slice(&self.bulk_len.to_le_bytes());
        // 56..64 reserved, zero.
        b[64..68].copy_from_slice(&self.body_crc.to_le_bytes());
        let crc = crc32c::crc32c(&b[..68]);
        b[68..72].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// Decodes and validates a header: magic, version, its own checksum, and the lengths
    /// against the protocol limits. The body checksum is checked by [`MsgHeader::check_body`].
    pub fn decode(b: &[u8; MSG_HEADER_BYTES]) -> Result<MsgHeader, FrameError> {
        let magic = le_u32(b, 0);
        if magic != MSG_MAGIC {
            return Err(FrameError::BadMagic(magic));
        }
        let stored = le_u32(b, 68);
        let computed = crc32c::crc32c(&b[..68]);
        if stored != computed {
            return Err(FrameError::HeaderChecksum { stored, computed });
        }
        let version = u16::from_le_bytes([b[4], b[5]]);
        if version != PROTOCOL_VERSION {
            return Err(FrameError::BadVersion(version));
        }
        let kind = match b[6] {
            1 => MsgKind::Request,
            2 => MsgKind::Reply,
            k => return Err(FrameError::BadKind(k)),
        };
        if b[56..64].iter().any(|&x| x != 0) {
            return Err(FrameError::Reserved);
        }
        let h = MsgHeader {
            kind,
            flags: b[7],
            opcode: le_u32(b, 8),
            status: le_u32(b, 12) as i32,
            xid: le_u64(b, 16),
            transno: le_u64(b, 24),
            last_committed: le_u64(b, 32),
            target_idx: le_u32(b, 40),
            body_len: le_u32(b, 44),
            bulk_len: le_u64(b, 48),
            body_crc: le_u32(b, 64),
        };
        if h.body_len > MAX_BODY_BYTES {
            return Err(FrameError::TooLong {
                what: "body",
                len: u64::from(h.body_len),
                max: u64::from(MAX_BODY_BYTES),
            });
        }
        if h.bulk_len > MAX_BULK_BYTES {
            return Err(FrameError::TooLong {
                what: "bulk",
                len: h.bulk_len,
                max: MAX_BULK_BYTES,
            });
        }
        Ok(h)
    }

    /// Checks a received body against the header's length and checksum.
    pub fn check_body(&self, body: &[u8]) -> Result<(), FrameError> {
        let computed = crc32c::crc32c(body);
        if computed != self.body_crc || body.len() != self.body_len as usize {
            return Err(FrameError::BodyChecksum {
                stored: self.body_crc,
                computed,
            });
        }
        Ok(())
    }

    /// Sets the body length and checksum from the body about to be sent.
    pub fn seal_body(&mut self, body: &[u8]) {
        self.body_len = u32::try_from(body.len()).unwrap_or(u32::MAX);
        self.body_crc = crc32c::crc32c(body);
    }
}

/// The header of one bulk frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BulkFrameHeader {
    pub xid: u64,
    pub len: u32,
    pub crc: u32,
}

impl BulkFrameHeader {
    pub fn for_data(xid: u64, data: &[u8]) -> BulkFrameHeader {
        BulkFrameHeader {
            xid,
            len: u32::try_from(data.len()).unwrap_or(u32::MAX),
            crc: crc32c::crc32c(data),
        }
    }

    pub fn encode(&self) -> [u8; BULK_HEADER_BYTES] {
        let mut b = [0u8; BULK_HEADER_BYTES];
        b[0..4].copy_from_slice(&BULK_MAGIC.to_le_bytes());
        b[8..16].copy_from_slice(&self.xid.to_le_bytes());
        b[16..20].copy_from_slice(&self.len.to_le_bytes());
        b[20..24].copy_from_slice(&self.crc.to_le_bytes());
        b
    }

    /// Decodes a bulk frame header expected for `xid` with at most `remaining` bytes left.
    pub fn decode(
        b: &[u8; BULK_HEADER_BYTES],
        xid: u64,
        remaining: u64,
    ) -> Result<BulkFrameHeader, FrameError> {
        let magic = le_u32(b, 0);
        if magic != BULK_MAGIC {
            return Err(FrameError::BadMagic(magic));
        }
        let h = BulkFrameHeader {
            xid: le_u64(b, 8),
            len: le_u32(b, 16),
            crc: le_u32(b, 20),
        };
        if h.xid != xid {
            return Err(FrameError::BulkXid {
                expected: xid,
                got: h.xid,
            });
        }
        let max = remaining.min(u64::from(BULK_FRAME_BYTES));
        if u64::from(h.len) > max || h.len == 0 {
            return Err(FrameError::TooLong {
                what: "bulk frame",
                len: u64::from(h.len),
                max,
            });
        }
        Ok(h)
    }

    pub fn check(&self, data: &[u8]) -> Result<(), FrameError> {
        self.check_crc(crc32c::crc32c(data))
    }

    /// Checks the frame against the crc32c of its data, summed by the caller.
    pub fn check_crc(&self, computed: u32) -> Result<(), FrameError> {
        if computed != self.crc {
            return Err(FrameError::BulkChecksum {
                stored: self.crc,
                computed,
            });
        }
        Ok(())
    }
}

fn le_u32(b: &[u8], at: usize) -> u32 {
    let mut x = [0u8; 4];
    x.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(x)
}

fn le_u64(b: &[u8], at: usize) -> u64 {
    let mut x = [0u8; 8];
    x.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(x)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> MsgHeader {
        let mut h = MsgHeader::request(4, 77, 3);
        h.transno = 9;
        h.last_committed = 8;
        h.bulk_len = 1 << 20;
        h.seal_body(b"hello");
        h
    }

    #[test]
    fn header_round_trip() {
        let h = sample();
        let b = h.encode();
        assert_eq!(MsgHeader::decode(&b), Ok(h));
        assert!(h.check_body(b"hello").is_ok());
        assert!(matches!(
            h.check_body(b"hellp"),
            Err(FrameError::BodyChecksum { .. })
        ));
    }

    #[test]
    fn golden_header_bytes() {
        let b = sample().encode();
        assert_eq!(&b[0..4], &[0xd5, 0x0b, 0xd0, 0x0b]);
        assert_eq!(b[6], 1);
        assert_eq!(&b[8..12], &4u32.to_le_bytes());
        assert_eq!(&b[16..24], &77u64.to_le_bytes());
        assert_eq!(&b[40..44], &3u32.to_le_bytes());
        assert_eq!(&b[44..48], &5u32.to_le_bytes());
    }

    #[test]
    fn rejects_malformed_headers() {
        let good = sample().encode();
        let mut b = good;
        b[0] ^= 1;
        assert!(matches!(
            MsgHeader::decode(&b),
            Err(FrameError::BadMagic(_))
        ));
        let mut b = good;
        b[20] ^= 1;
        assert!(matches!(
            MsgHeader::decode(&b),
            Err(FrameError::HeaderChecksum { .. })
        ));
        // A huge body length with a valid checksum is refused before any allocation.
        let mut h = sample();
        h.body_len = MAX_BODY_BYTES + 1;
        let b = h.encode();
        assert!(matches!(
            MsgHeader::decode(&b),
            Err(FrameError::TooLong { .. })
        ));
        let mut h = sample();
        h.bulk_len = MAX_BULK_BYTES + 1;
        assert!(matches!(
            MsgHeader::decode(&h.encode()),
            Err(FrameError::TooLong { .. })
        ));
        let garbage = [0xffu8; MSG_HEADER_BYTES];
        assert!(MsgHeader::decode(&garbage).is_err());
    }

    #[test]
    fn bulk_frames() {
        let data = vec![7u8; 4096];
        let h = BulkFrameHeader::for_data(5, &data);
        let b = h.encode();
        let d = BulkFrameHeader::decode(&b, 5, 4096).unwrap();
        assert!(d.check(&data).is_ok());
        assert!(matches!(
            BulkFrameHeader::decode(&b, 6, 4096),
            Err(FrameError::BulkXid { .. })
        ));
        assert!(matches!(
            BulkFrameHeader::decode(&b, 5, 100),
            Err(FrameError::TooLong { .. })
        ));
        let mut bad = data.clone();
        bad[0] = 0;
        assert!(matches!(
            d.check(&bad),
            Err(FrameError::BulkChecksum { .. })
        ));
    }
}
