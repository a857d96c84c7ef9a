//! The superblock and the region geometry of a block file.
//!
//! Layout: `[superblock | checkpoint slot A | checkpoint slot B | log | data blocks]`, each
//! region aligned to `REGION_ALIGN_BYTES`. The superblock is written once, at format time,
//! after everything else is durable; `open` trusts nothing in it until its crc32c matches and
//! every region has been checked against the others and the file length.

use crate::codec::{align_up, Dec, Enc};
use crate::error::OsdError;
use crate::limits::*;
use crate::osd::OsdLabel;

/// Magic at byte 0 of a Sheen OST block file.
pub(crate) const SUPERBLOCK_MAGIC: [u8; 8] = *b"SHEENOST";
/// Bumped on any incompatible change of the on-disk format; `format` writes this one.
/// Version 2 added preallocated extents (fallocate): the prealloc and punch-hole log records,
/// and the flags in extent lengths (docs/osd-format.md).
pub(crate) const FORMAT_VERSION: u32 = 2;
/// The oldest version this build opens. A version-1 file is read exactly as before (it holds
/// no preallocated extents until this build makes some); a build that knows only version 1
/// refuses version 2 at open, and reports a version-1 file that has preallocated extents as
/// corrupt at the first one (the flags sit in bits it checks), never misreading it.
pub(crate) const MIN_FORMAT_VERSION: u32 = 1;
/// Encoded superblock length; the crc32c of bytes `[0, 508)` sits at 508.
pub(crate) const SUPERBLOCK_BYTES: usize = 512;
pub(crate) const SUPERBLOCK_CRC_AT: usize = SUPERBLOCK_BYTES - 4;
/// Bytes reserved for the fsname in the superblock.
const FSNAME_FIELD_BYTES: usize = 16;

const _: () = assert!(sheen_wire::limits::FSNAME_MAX_CHARS <= FSNAME_FIELD_BYTES);

/// Where each region of a block file lives. All offsets and sizes are bytes unless named
/// `_blocks`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Geometry {
    pub device_bytes: u64,
    pub ckpt_offset: [u64; 2],
    pub ckpt_slot_bytes: u64,
    pub log_offset: u64,
    pub log_bytes: u64,
    pub data_offset: u64,
    pub data_blocks: u64,
    pub max_objects: u64,
}

/// The largest checkpoint body an index within these bounds can need: every object header,
/// and for every data block one extent header plus one crc (the fully fragmented worst case).
pub(crate) fn checkpoint_bound_bytes(data_blocks: u64, max_objects: u64) -> Option<u64> {
    let objects = max_objects.checked_mul(CKPT_OBJECT_BYTES)?;
    let blocks = data_blocks.checked_mul(CKPT_EXTENT_BYTES + CKPT_CRC_BYTES)?;
    CKPT_BODY_FIXED_BYTES
        .checked_add(objects)?
        .checked_add(blocks)
}

impl Geometry {
    /// Lays out a device of `device_bytes` (rounded down to `REGION_ALIGN_BYTES`). `log_bytes`
    /// overrides the default log size (tests use small logs to reach checkpoints quickly).
    pub fn for_device(device_bytes: u64, log_bytes: Option<u64>) -> Result<Geometry, OsdError> {
        let device_bytes = device_bytes & !(REGION_ALIGN_BYTES - 1);
        if device_bytes < MIN_DEVICE_BYTES {
            return Err(OsdError::Invalid(
                "block file smaller than MIN_DEVICE_BYTES",
            ));
        }
        if device_bytes > MAX_DEVICE_BYTES {
            return Err(OsdError::Invalid("block file larger than MAX_DEVICE_BYTES"));
        }
        let max_objects = (device_bytes / BYTES_PER_OBJECT).clamp(OBJECTS_MIN, OBJECTS_MAX);
        // Sized for every block of the device being data: a slight overestimate.
        let too_big = OsdError::Invalid("block file too large for its metadata regions");
        let bound = checkpoint_bound_bytes(device_bytes / BLOCK_BYTES_U64, max_objects)
            .and_then(|b| b.checked_add(CKPT_HEADER_BYTES))
            .and_then(|b| align_up(b, REGION_ALIGN_BYTES))
            .ok_or(too_big)?;
        let log_bytes = match log_bytes {
            Some(b) => b,
            None => ((device_bytes / LOG_DEVICE_FRACTION) & !(REGION_ALIGN_BYTES - 1))
                .clamp(LOG_DEFAULT_MIN_BYTES, LOG_MAX_BYTES),
        };
        let ckpt_a = SUPERBLOCK_REGION_BYTES;
        let ckpt_b = ckpt_a + bound;
        let log_offset = ckpt_b + bound;
        let data_offset = log_offset + log_bytes;
        let data_blocks = device_bytes.saturating_sub(data_offset) / BLOCK_BYTES_U64;
        if data_blocks < MIN_DATA_BLOCKS {
            return Err(OsdError::Invalid(
                "block file too small for its metadata regions",
            ));
        }
        let geo = Geometry {
            device_bytes,
            ckpt_offset: [ckpt_a, ckpt_b],
            ckpt_slot_bytes: bound,
            log_offset,
            log_bytes,
            data_offset,
            data_blocks,
            max_objects,
        };
        geo.validate()?;
        Ok(geo)
    }

    /// Checks that the regions are aligned, ordered, non-overlapping, inside the device, and
    /// that a checkpoint slot can hold the largest index these bounds allow.
    pub fn validate(&self) -> Result<(), OsdError> {
        let bad = |what: &str| Err(OsdError::Corrupt(format!("superblock: {what}")));
        let aligned = |v: u64| v % BLOCK_BYTES_U64 == 0;
        let [a, b] = self.ckpt_offset;
        if !(aligned(a)
            && aligned(b)
            && aligned(self.ckpt_slot_bytes)
            && aligned(self.log_offset)
            && aligned(self.log_bytes)
            && aligned(self.data_offset))
        {
            return bad("region not block aligned");
        }
        let ordered = a >= SUPERBLOCK_BYTES as u64
            && a.checked_add(self.ckpt_slot_bytes)
                .is_some_and(|end| end <= b)
            && b.checked_add(self.ckpt_slot_bytes)
                .is_some_and(|end| end <= self.log_offset)
            && self
                .log_offset
                .checked_add(self.log_bytes)
                .is_some_and(|end| end <= self.data_offset);
        if !ordered {
            return bad("regions overlap or are out of order");
        }
        let data_end = self
            .data_blocks
            .checked_mul(BLOCK_BYTES_U64)
            .and_then(|n| n.checked_add(self.data_offset));
        if data_end.is_none_or(|end| end > self.device_bytes) {
            return bad("data region extends past the device");
        }
        if self.device_bytes > MAX_DEVICE_BYTES {
            return bad("device larger than MAX_DEVICE_BYTES");
        }
        if self.log_bytes < LOG_MIN_BYTES || self.log_bytes > LOG_MAX_BYTES {
            return bad("log size out of range");
        }
        if self.data_blocks < MIN_DATA_BLOCKS {
            return bad("too few data blocks");
        }
        if self.max_objects == 0 || self.max_objects > OBJECTS_MAX {
            return bad("max_objects out of range");
        }
        let need = checkpoint_bound_bytes(self.data_blocks, self.max_objects)
            .and_then(|b| b.checked_add(CKPT_HEADER_BYTES));
        if need.is_none_or(|need| need > self.ckpt_slot_bytes) {
            return bad("checkpoint slot too small for the index bound");
        }
        Ok(())
    }

    /// Byte offset of data block `phys` in the file.
    pub fn block_offset(&self, phys: u64) -> u64 {
        debug_assert!(phys < self.data_blocks);
        self.data_offset + phys * BLOCK_BYTES_U64
    }

    /// Byte offset of checkpoint slot `slot` (0 or 1).
    pub fn ckpt_slot_offset(&self, generation: u64) -> u64 {
        if generation % 2 == 0 {
            self.ckpt_offset[0]
        } else {
            self.ckpt_offset[1]
        }
    }
}

/// Everything the superblock records.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Superblock {
    pub geo: Geometry,
    pub label: OsdLabel,
}

/// Checks an fsname: 1 to `FSNAME_MAX_CHARS` ASCII letters, digits, `-` or `_`.
pub(crate) fn validate_fsname(fsname: &str) -> Result<(), OsdError> {
    let ok = !fsname.is_empty()
        && fsname.len() <= sheen_wire::limits::FSNAME_MAX_CHARS
        && fsname
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_');
    if ok {
        Ok(())
    } else {
        Err(OsdError::Invalid(
            "fsname must be 1-8 characters of [A-Za-z0-9_-]",
        ))
    }
}

impl Superblock {
    /// The 512-byte encoding; see docs/osd-format.md for the byte table.
    pub fn encode(&self) -> Vec<u8> {
        let g = &self.geo;
        let mut buf = Vec::with_capacity(SUPERBLOCK_BYTES);
        let mut e = Enc(&mut buf);
        e.bytes(&SUPERBLOCK_MAGIC);
        e.u32(FORMAT_VERSION);
        e.u32(BLOCK_BYTES);
        e.u64(g.device_bytes);
        e.u64(g.ckpt_offset[0]);
        e.u64(g.ckpt_offset[1]);
        e.u64(g.ckpt_slot_bytes);
        e.u64(g.log_offset);
        e.u64(g.log_bytes);
        e.u64(g.data_offset);
        e.u64(g.data_blocks);
        e.u64(g.max_objects);
        e.u32(self.label.ost_index);
        let name = self.label.fsname.as_bytes();
        let name_len = name.len().min(FSNAME_FIELD_BYTES);
        e.u32(u32::try_from(name_len).expect("fsname length is at most 16"));
        e.bytes(&name[..name_len]);
        e.zeros(FSNAME_FIELD_BYTES - name_len);
        let used = e.0.len();
        e.zeros(SUPERBLOCK_CRC_AT - used);
        let crc = crc32c::crc32c(&buf);
        Enc(&mut buf).u32(crc);
        debug_assert_eq!(buf.len(), SUPERBLOCK_BYTES);
        buf
    }

    pub fn decode(buf: &[u8]) -> Result<Superblock, OsdError> {
        let sb = buf
            .get(..SUPERBLOCK_BYTES)
            .ok_or_else(|| corrupt("short read"))?;
        let (body, crc_bytes) = sb.split_at(SUPERBLOCK_CRC_AT);
        let mut d = Dec::new(sb, "superblock", 0);
        if d.bytes(8)? != SUPERBLOCK_MAGIC {
            return Err(corrupt("bad magic (not a Sheen OST block file)"));
        }
        let stored = Dec::new(crc_bytes, "superblock crc", 508).u32()?;
        if stored != crc32c::crc32c(body) {
            return Err(corrupt("crc32c mismatch"));
        }
        let version = d.u32()?;
        if !(MIN_FORMAT_VERSION..=FORMAT_VERSION).contains(&version) {
            return Err(OsdError::Corrupt(format!(
                "superblock: format version {version}, this build reads \
                 {MIN_FORMAT_VERSION} to {FORMAT_VERSION}"
            )));
        }
        if d.u32()? != BLOCK_BYTES {
            return Err(corrupt("unsupported block size"));
        }
        let geo = Geometry {
            device_bytes: d.u64()?,
            ckpt_offset: [d.u64()?, d.u64()?],
            ckpt_slot_bytes: d.u64()?,
            log_offset: d.u64()?,
            log_bytes: d.u64()?,
            data_offset: d.u64()?,
            data_blocks: d.u64()?,
            max_objects: d.u64()?,
        };
        let ost_index = d.u32()?;
        let name_len = d.u32()?;
        let field = d.bytes(FSNAME_FIELD_BYTES)?;
        let name = usize::try_from(name_len)
            .ok()
            .and_then(|n| field.get(..n))
            .ok_or_else(|| corrupt("fsname length out of range"))?;
        let fsname = std::str::from_utf8(name)
            .map_err(|_| corrupt("fsname is not UTF-8"))?
            .to_string();
        validate_fsname(&fsname).map_err(|_| corrupt("invalid fsname"))?;
        geo.validate()?;
        Ok(Superblock {
            geo,
            label: OsdLabel { fsname, ost_index },
        })
    }
}

fn corrupt(what: &str) -> OsdError {
    OsdError::Corrupt(format!("superblock: {what}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn label() -> OsdLabel {
        OsdLabel {
            fsname: "sheen".into(),
            ost_index: 7,
        }
    }

    #[test]
    fn geometry_small_and_large() {
        for size in [32 << 20, 64 << 20, 256 << 20, 1 << 40, MAX_DEVICE_BYTES] {
            let g = Geometry::for_device(size, None).unwrap();
            g.validate().unwrap();
            assert!(g.data_blocks >= MIN_DATA_BLOCKS);
            assert!(g.log_bytes >= LOG_DEFAULT_MIN_BYTES);
        }
        assert!(Geometry::for_device(16 << 20, None).is_err());
        assert!(Geometry::for_device(MAX_DEVICE_BYTES * 2, None).is_err());
    }

    #[test]
    fn metadata_overhead_is_small_on_big_devices() {
        let g = Geometry::for_device(1 << 40, None).unwrap();
        let meta = g.data_offset;
        assert!(
            meta * 100 / g.device_bytes < 3,
            "metadata {meta} of {}",
            g.device_bytes
        );
    }

    #[test]
    fn superblock_round_trip() {
        let sb = Superblock {
            geo: Geometry::for_device(64 << 20, None).unwrap(),
            label: label(),
        };
        let buf = sb.encode();
        assert_eq!(buf.len(), SUPERBLOCK_BYTES);
        assert_eq!(&buf[..8], b"SHEENOST");
        assert_eq!(Superblock::decode(&buf).unwrap(), sb);
    }

    #[test]
    fn version_1_files_still_open_and_unknown_versions_do_not() {
        let sb = Superblock {
            geo: Geometry::for_device(64 << 20, None).unwrap(),
            label: label(),
        };
        let with_version = |v: u32| {
            let mut buf = sb.encode();
            buf[8..12].copy_from_slice(&v.to_le_bytes());
            let crc = crc32c::crc32c(&buf[..SUPERBLOCK_CRC_AT]);
            buf[SUPERBLOCK_CRC_AT..].copy_from_slice(&crc.to_le_bytes());
            Superblock::decode(&buf)
        };
        assert_eq!(with_version(1).unwrap(), sb);
        assert_eq!(with_version(FORMAT_VERSION).unwrap(), sb);
        for v in [0, FORMAT_VERSION + 1, u32::MAX] {
            assert!(matches!(with_version(v), Err(OsdError::Corrupt(_))), "{v}");
        }
    }

    #[test]
    fn superblock_damage_is_detected() {
        let sb = Superblock {
            geo: Geometry::for_device(64 << 20, None).unwrap(),
            label: label(),
        };
        let good = sb.encode();
        for at in [0, 9, 20, 100, 300, 508] {
            let mut bad = good.clone();
            bad[at] ^= 1;
            assert!(
                matches!(Superblock::decode(&bad), Err(OsdError::Corrupt(_))),
                "byte {at}"
            );
        }
        assert!(Superblock::decode(&good[..100]).is_err());
    }

    #[test]
    fn inconsistent_geometry_is_rejected() {
        let mut g = Geometry::for_device(64 << 20, None).unwrap();
        g.data_blocks += 1_000_000;
        assert!(g.validate().is_err());
        let mut g = Geometry::for_device(64 << 20, None).unwrap();
        g.ckpt_slot_bytes = BLOCK_BYTES_U64;
        assert!(g.validate().is_err());
        let mut g = Geometry::for_device(64 << 20, None).unwrap();
        g.log_offset += 1;
        assert!(g.validate().is_err());
    }

    #[test]
    fn fsname_rules() {
        validate_fsname("sheen").unwrap();
        validate_fsname("a-b_9").unwrap();
        assert!(validate_fsname("").is_err());
        assert!(validate_fsname("waytoolongname").is_err());
        assert!(validate_fsname("a b").is_err());
    }
}
