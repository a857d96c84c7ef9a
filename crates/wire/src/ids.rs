//! Identifiers: FIDs for namespace objects, object ids for OST objects, target kinds.

use std::fmt;

/// A file identifier, printed as Lustre prints one: `[0x200000007:0x1:0x0]`.
#[derive(
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
)]
#[rkyv(derive(Debug))]
pub struct Fid {
    pub seq: u64,
    pub oid: u32,
    pub ver: u32,
}

impl Fid {
    /// The root directory's FID, as in Lustre.
    pub const ROOT: Fid = Fid {
        seq: 0x2_0000_0007,
        oid: 1,
        ver: 0,
    };
    /// The first sequence handed out to normal files.
    pub const FIRST_NORMAL_SEQ: u64 = 0x2_0000_0400;

    /// The 64-bit inode number a FUSE client uses. The root maps to 1; normal FIDs map
    /// one-to-one (sequence above the first normal one in the high half, oid in the low).
    pub fn to_ino(self) -> u64 {
        if self == Fid::ROOT {
            return 1;
        }
        let seq_rel = self.seq.wrapping_sub(Fid::FIRST_NORMAL_SEQ) + 1;
        (seq_rel << 32) | u64::from(self.oid)
    }

    /// The inverse of [`Fid::to_ino`]; `None` for numbers no FID maps to.
    pub fn from_ino(ino: u64) -> Option<Fid> {
        if ino == 1 {
            return Some(Fid::ROOT);
        }
        let seq_rel = ino >> 32;
        if seq_rel == 0 {
            return None;
        }
        let oid = (ino & 0xffff_ffff) as u32;
        Some(Fid {
            seq: Fid::FIRST_NORMAL_SEQ + seq_rel - 1,
            oid,
            ver: 0,
        })
    }

    /// Big-endian bytes, so that keys sort by FID.
    pub fn to_be_bytes(self) -> [u8; 16] {
        let mut out = [0u8; 16];
        out[..8].copy_from_slice(&self.seq.to_be_bytes());
        out[8..12].copy_from_slice(&self.oid.to_be_bytes());
        out[12..].copy_from_slice(&self.ver.to_be_bytes());
        out
    }

    pub fn from_be_bytes(b: &[u8]) -> Option<Fid> {
        if b.len() < 16 {
            return None;
        }
        Some(Fid {
            seq: u64::from_be_bytes(b[..8].try_into().ok()?),
            oid: u32::from_be_bytes(b[8..12].try_into().ok()?),
            ver: u32::from_be_bytes(b[12..16].try_into().ok()?),
        })
    }

    /// Parses `[0x200000400:0x1:0x0]` (brackets optional).
    pub fn parse(s: &str) -> Option<Fid> {
        let s = s.trim().trim_start_matches('[').trim_end_matches(']');
        let mut it = s.split(':');
        let hex = |x: &str| u64::from_str_radix(x.trim().trim_start_matches("0x"), 16).ok();
        let seq = hex(it.next()?)?;
        let oid = u32::try_from(hex(it.next()?)?).ok()?;
        let ver = u32::try_from(hex(it.next()?)?).ok()?;
        if it.next().is_some() {
            return None;
        }
        Some(Fid { seq, oid, ver })
    }
}

impl fmt::Display for Fid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{:#x}:{:#x}:{:#x}]", self.seq, self.oid, self.ver)
    }
}

impl fmt::Debug for Fid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// An object id inside one OST's object index.
pub type ObjId = u64;

/// What a target serves.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize,
)]
#[rkyv(derive(Debug))]
pub enum TargetKind {
    Mgs,
    Mdt,
    Ost,
}

impl TargetKind {
    /// Lustre's target name: `sheen-MDT0000`, `sheen-OST000a` (index in hex).
    pub fn target_name(self, fsname: &str, index: u32) -> String {
        match self {
            TargetKind::Mgs => "MGS".to_string(),
            TargetKind::Mdt => format!("{fsname}-MDT{index:04x}"),
            TargetKind::Ost => format!("{fsname}-OST{index:04x}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fid_prints_like_lustre() {
        assert_eq!(Fid::ROOT.to_string(), "[0x200000007:0x1:0x0]");
        assert_eq!(Fid::parse("[0x200000007:0x1:0x0]"), Some(Fid::ROOT));
        assert_eq!(Fid::parse("0x200000400:0x2a:0x0").map(|f| f.oid), Some(42));
        assert_eq!(Fid::parse("[1:2]"), None);
    }

    #[test]
    fn ino_round_trip() {
        assert_eq!(Fid::ROOT.to_ino(), 1);
        for fid in [
            Fid {
                seq: Fid::FIRST_NORMAL_SEQ,
                oid: 1,
                ver: 0,
            },
            Fid {
                seq: Fid::FIRST_NORMAL_SEQ + 7,
                oid: u32::MAX,
                ver: 0,
            },
        ] {
            assert_eq!(Fid::from_ino(fid.to_ino()), Some(fid));
        }
        assert_eq!(Fid::from_ino(5), None);
    }

    #[test]
    fn target_names() {
        assert_eq!(TargetKind::Ost.target_name("sheen", 10), "sheen-OST000a");
        assert_eq!(TargetKind::Mdt.target_name("sheen", 0), "sheen-MDT0000");
    }
}
