//! Control frames of the RDMA-emulated transport, as they cross the carrier connection.
//!
//! Every carrier frame starts with one fixed 40-byte control header, little-endian:
//!
//! | off | size | field |
//! |----:|----:|---|
//! | 0 | 4 | magic `0x0BD0_1BDA` |
//! | 4 | 1 | kind |
//! | 5 | 3 | reserved (zero) |
//! | 8 | 8 | a |
//! | 16 | 8 | b |
//! | 24 | 8 | c |
//! | 32 | 4 | d |
//! | 36 | 4 | crc32c of bytes 0..36 |
//!
//! | kind | a | b | c | d | followed by |
//! |---|---|---|---|---|---|
//! | 1 HELLO | pid << 32 \| memfd | pool token | pool bytes | version | — |
//! | 2 READY | 1 if we mapped the peer's pool | 0 | 0 | 0 | — |
//! | 3 SEND | rkey | address | bulk bytes | bulk crc32c | message header + body |
//! | 4 READ | request id | rkey | address | bytes | — |
//! | 5 READ_RESP | request id | status (0 or a verbs error code) | data crc32c | bytes | data |
//! | 6 DONE | rkey | 0 | 0 | 0 | — |
//! | 7 CREDIT | 0 | 0 | 0 | receive credits returned | — |
//!
//! A SEND's (rkey, address, bulk bytes, crc) is the *bulk descriptor*: the region the
//! receiver READs the bulk from. Every length is checked against the protocol limits here,
//! before anything is allocated.

use sheen_wire::limits::{BULK_FRAME_BYTES, MAX_BULK_BYTES};

use super::verbs::POOL_BYTES;
use super::RECV_QUEUE_DEPTH;

pub const CTRL_MAGIC: u32 = 0x0BD0_1BDA;
pub const CTRL_BYTES: usize = 40;
pub const VERSION: u32 = 1;

/// Where a message's bulk lies in the sender's registered memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BulkDesc {
    pub rkey: u64,
    pub addr: u64,
    pub len: u64,
    pub crc: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ctrl {
    Hello {
        pid: u32,
        fd: u32,
        token: u64,
        pool_bytes: u64,
    },
    Ready {
        mapped: bool,
    },
    Send {
        desc: Option<BulkDesc>,
    },
    Read {
        id: u64,
        rkey: u64,
        addr: u64,
        len: u32,
    },
    ReadResp {
        id: u64,
        status: u32,
        crc: u32,
        len: u32,
    },
    Done {
        rkey: u64,
    },
    Credit {
        count: u32,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CtrlError {
    #[error("bad control magic {0:#010x}")]
    BadMagic(u32),
    #[error("control header checksum mismatch")]
    Checksum,
    #[error("unknown control frame kind {0}")]
    BadKind(u8),
    #[error("malformed {0} control frame")]
    Malformed(&'static str),
}

impl Ctrl {
    pub fn encode(&self) -> [u8; CTRL_BYTES] {
        let (kind, a, b, c, d): (u8, u64, u64, u64, u32) = match *self {
            Ctrl::Hello {
                pid,
                fd,
                token,
                pool_bytes,
            } => (
                1,
                (u64::from(pid) << 32) | u64::from(fd),
                token,
                pool_bytes,
                VERSION,
            ),
            Ctrl::Ready { mapped } => (2, u64::from(mapped), 0, 0, 0),
            Ctrl::Send { desc: None } => (3, 0, 0, 0, 0),
            Ctrl::Send { desc: Some(d) } => (3, d.rkey, d.addr, d.len, d.crc),
            Ctrl::Read {
                id,
                rkey,
                addr,
                len,
            } => (4, id, rkey, addr, len),
            Ctrl::ReadResp {
                id,
                status,
                crc,
                len,
            } => (5, id, u64::from(status), u64::from(crc), len),
            Ctrl::Done { rkey } => (6, rkey, 0, 0, 0),
            Ctrl::Credit { count } => (7, 0, 0, 0, count),
        };
        let mut out = [0u8; CTRL_BYTES];
        out[0..4].copy_from_slice(&CTRL_MAGIC.to_le_bytes());
        out[4] = kind;
        out[8..16].copy_from_slice(&a.to_le_bytes());
        out[16..24].copy_from_slice(&b.to_le_bytes());
        out[24..32].copy_from_slice(&c.to_le_bytes());
        out[32..36].copy_from_slice(&d.to_le_bytes());
        let crc = crc32c::crc32c(&out[..36]);
        out[36..40].copy_from_slice(&crc.to_le_bytes());
        out
    }

    /// Decodes and validates one control header. Never panics; every length it returns is
    /// within the protocol limits.
    pub fn decode(buf: &[u8; CTRL_BYTES]) -> Result<Ctrl, CtrlError> {
        let u32_at = |at: usize| {
            let mut x = [0u8; 4];
            x.copy_from_slice(&buf[at..at + 4]);
            u32::from_le_bytes(x)
        };
        let u64_at = |at: usize| {
            let mut x = [0u8; 8];
            x.copy_from_slice(&buf[at..at + 8]);
            u64::from_le_bytes(x)
        };
        let magic = u32_at(0);
        if magic != CTRL_MAGIC {
            return Err(CtrlError::BadMagic(magic));
        }
        if u32_at(36) != crc32c::crc32c(&buf[..36]) {
            return Err(CtrlError::Checksum);
        }
        let kind = buf[4];
        if buf[5..8] != [0, 0, 0] {
            return Err(CtrlError::Malformed("reserved"));
        }
        let (a, b, c, d) = (u64_at(8), u64_at(16), u64_at(24), u32_at(32));
        let zero = |what| {
            move |ok: bool| {
                if ok {
                    Ok(())
                } else {
                    Err(CtrlError::Malformed(what))
                }
            }
        };
        match kind {
            1 => {
                zero("hello")(d == VERSION && c <= 4 * POOL_BYTES)?;
                Ok(Ctrl::Hello {
                    pid: (a >> 32) as u32,
                    fd: a as u32,
                    token: b,
                    pool_bytes: c,
                })
            }
            2 => {
                zero("ready")(a <= 1 && b == 0 && c == 0 && d == 0)?;
                Ok(Ctrl::Ready { mapped: a == 1 })
            }
            3 if c == 0 => {
                zero("send")(a == 0 && b == 0 && d == 0)?;
                Ok(Ctrl::Send { desc: None })
            }
            3 => {
                zero("send")(c <= MAX_BULK_BYTES && a != 0)?;
                Ok(Ctrl::Send {
                    desc: Some(BulkDesc {
                        rkey: a,
                        addr: b,
                        len: c,
                        crc: d,
                    }),
                })
            }
            4 => {
                zero("read")(d > 0 && d <= BULK_FRAME_BYTES)?;
                Ok(Ctrl::Read {
                    id: a,
                    rkey: b,
                    addr: c,
                    len: d,
                })
            }
            5 => {
                let status = u32::try_from(b).map_err(|_| CtrlError::Malformed("read response"))?;
                let crc = u32::try_from(c).map_err(|_| CtrlError::Malformed("read response"))?;
                zero("read response")(d <= BULK_FRAME_BYTES && (status == 0 || d == 0))?;
                Ok(Ctrl::ReadResp {
                    id: a,
                    status,
                    crc,
                    len: d,
                })
            }
            6 => {
                zero("done")(b == 0 && c == 0 && d == 0)?;
                Ok(Ctrl::Done { rkey: a })
            }
            7 => {
                zero("credit")(a == 0 && b == 0 && c == 0 && d > 0 && d <= RECV_QUEUE_DEPTH)?;
                Ok(Ctrl::Credit { count: d })
            }
            k => Err(CtrlError::BadKind(k)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects() {
        let frames = [
            Ctrl::Hello {
                pid: 7,
                fd: 9,
                token: 11,
                pool_bytes: POOL_BYTES,
            },
            Ctrl::Ready { mapped: true },
            Ctrl::Send { desc: None },
            Ctrl::Send {
                desc: Some(BulkDesc {
                    rkey: 5 << 32 | 3,
                    addr: 1 << 16,
                    len: 4096,
                    crc: 77,
                }),
            },
            Ctrl::Read {
                id: 1,
                rkey: 2,
                addr: 3,
                len: 4,
            },
            Ctrl::ReadResp {
                id: 1,
                status: 0,
                crc: 5,
                len: 4,
            },
            Ctrl::Done { rkey: 9 },
            Ctrl::Credit { count: 16 },
        ];
        for f in frames {
            let b = f.encode();
            assert_eq!(Ctrl::decode(&b), Ok(f));
            let mut bad = b;
            bad[9] ^= 1;
            assert_eq!(Ctrl::decode(&bad), Err(CtrlError::Checksum));
        }
        let too_long = Ctrl::Read {
            id: 1,
            rkey: 2,
            addr: 3,
            len: BULK_FRAME_BYTES + 1,
        };
        assert!(Ctrl::decode(&too_long.encode()).is_err());
        let huge_bulk = Ctrl::Send {
            desc: Some(BulkDesc {
                rkey: 1,
                addr: 0,
                len: MAX_BULK_BYTES + 1,
                crc: 0,
            }),
        };
        assert!(Ctrl::decode(&huge_bulk.encode()).is_err());
        let too_many_credits = Ctrl::Credit {
            count: RECV_QUEUE_DEPTH + 1,
        };
        assert!(Ctrl::decode(&too_many_credits.encode()).is_err());
        assert!(Ctrl::decode(&[0u8; CTRL_BYTES]).is_err());
    }
}
