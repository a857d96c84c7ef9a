//! Little-endian field encoding for everything the OSD puts on disk.
//!
//! Decoding never panics: every read is bounds-checked and a short or bad buffer becomes
//! `OsdError::Corrupt` naming the structure and the absolute byte offset.

use sheen_wire::msg::Timespec;

use crate::error::OsdError;

/// Appends little-endian fields to a byte vector.
pub(crate) struct Enc<'a>(pub &'a mut Vec<u8>);

impl Enc<'_> {
    pub fn u16(&mut self, v: u16) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    pub fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    pub fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    pub fn i64(&mut self, v: i64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    pub fn bytes(&mut self, b: &[u8]) {
        self.0.extend_from_slice(b);
    }
    pub fn zeros(&mut self, n: usize) {
        self.0.resize(self.0.len() + n, 0);
    }
    /// A timestamp: seconds (i64) then nanoseconds (u32), 12 bytes.
    pub fn timespec(&mut self, t: Timespec) {
        self.i64(t.sec);
        self.u32(t.nsec);
    }
}

/// Reads little-endian fields from a byte slice, failing with `Corrupt` instead of panicking.
pub(crate) struct Dec<'a> {
    buf: &'a [u8],
    pos: usize,
    what: &'static str,
    /// Absolute disk offset of `buf[0]`, for error messages.
    base: u64,
}

impl<'a> Dec<'a> {
    pub fn new(buf: &'a [u8], what: &'static str, base: u64) -> Dec<'a> {
        Dec {
            buf,
            pos: 0,
            what,
            base,
        }
    }

    pub fn pos(&self) -> usize {
        self.pos
    }

    pub fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    /// A `Corrupt` error naming this structure and the current position.
    pub fn corrupt(&self, problem: &str) -> OsdError {
        let at = self
            .base
            .saturating_add(u64::try_from(self.pos).unwrap_or(u64::MAX));
        OsdError::Corrupt(format!("{}: {} (at byte {})", self.what, problem, at))
    }

    fn take<const N: usize>(&mut self) -> Result<[u8; N], OsdError> {
        let bytes = self.bytes(N)?;
        bytes.try_into().map_err(|_| self.corrupt("truncated"))
    }

    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8], OsdError> {
        let end = self
            .pos
            .checked_add(n)
            .ok_or_else(|| self.corrupt("length overflow"))?;
        let out = self
            .buf
            .get(self.pos..end)
            .ok_or_else(|| self.corrupt("truncated"))?;
        self.pos = end;
        Ok(out)
    }

    pub fn u16(&mut self) -> Result<u16, OsdError> {
        Ok(u16::from_le_bytes(self.take()?))
    }
    pub fn u32(&mut self) -> Result<u32, OsdError> {
        Ok(u32::from_le_bytes(self.take()?))
    }
    pub fn u64(&mut self) -> Result<u64, OsdError> {
        Ok(u64::from_le_bytes(self.take()?))
    }
    pub fn i64(&mut self) -> Result<i64, OsdError> {
        Ok(i64::from_le_bytes(self.take()?))
    }

    pub fn timespec(&mut self) -> Result<Timespec, OsdError> {
        let sec = self.i64()?;
        let nsec = self.u32()?;
        if nsec >= 1_000_000_000 {
            return Err(self.corrupt("timestamp nanoseconds out of range"));
        }
        Ok(Timespec { sec, nsec })
    }

    /// Fails unless every byte has been consumed.
    pub fn finish(&self) -> Result<(), OsdError> {
        if self.remaining() != 0 {
            return Err(self.corrupt("trailing bytes"));
        }
        Ok(())
    }
}

/// Reads a little-endian u32 at `at` of a slice that is known to be long enough; `None`
/// otherwise (used for quick header probes).
pub(crate) fn le_u32_at(buf: &[u8], at: usize) -> Option<u32> {
    let bytes = buf.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes(bytes.try_into().ok()?))
}

/// Rounds `v` up to a multiple of `align` (a power of two); `None` on overflow.
pub(crate) fn align_up(v: u64, align: u64) -> Option<u64> {
    debug_assert!(align.is_power_of_two());
    Some(v.checked_add(align - 1)? & !(align - 1))
}

/// `usize` → `u64`, which cannot lose bits on the 64-bit targets Sheen supports.
pub(crate) fn u64_of(n: usize) -> u64 {
    u64::try_from(n).expect("usize fits in u64 on supported targets")
}

/// `u64` → `usize` for in-memory sizes that the limits keep far below `usize::MAX`.
pub(crate) fn usize_of(n: u64) -> usize {
    usize::try_from(n).expect("in-memory sizes are bounded by limits")
}

const _: () = assert!(usize::BITS == 64, "sheen-osd supports 64-bit targets only");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_fields() {
        let mut buf = Vec::new();
        let mut e = Enc(&mut buf);
        e.u16(0xbeef);
        e.u32(7);
        e.u64(u64::MAX - 1);
        e.i64(-5);
        e.timespec(Timespec {
            sec: -1,
            nsec: 999_999_999,
        });
        e.zeros(3);
        e.bytes(b"ab");
        assert_eq!(&buf[..2], &[0xef, 0xbe], "little-endian");
        let mut d = Dec::new(&buf, "test", 0);
        assert_eq!(d.u16().unwrap(), 0xbeef);
        assert_eq!(d.u32().unwrap(), 7);
        assert_eq!(d.u64().unwrap(), u64::MAX - 1);
        assert_eq!(d.i64().unwrap(), -5);
        assert_eq!(
            d.timespec().unwrap(),
            Timespec {
                sec: -1,
                nsec: 999_999_999
            }
        );
        assert_eq!(d.bytes(3).unwrap(), &[0, 0, 0]);
        assert_eq!(d.bytes(2).unwrap(), b"ab");
        d.finish().unwrap();
    }

    #[test]
    fn short_input_is_corrupt_not_panic() {
        let buf = [1u8, 2, 3];
        let mut d = Dec::new(&buf, "thing", 100);
        let err = d.u64().unwrap_err();
        assert!(matches!(&err, OsdError::Corrupt(s) if s.contains("thing") && s.contains("100")));
        assert!(d.bytes(usize::MAX).is_err());
        assert_eq!(le_u32_at(&buf, 0), None);
        let mut bad = Vec::new();
        Enc(&mut bad).timespec(Timespec { sec: 0, nsec: 0 });
        bad[8] = 0xff;
        bad[11] = 0xff;
        assert!(Dec::new(&bad, "t", 0).timespec().is_err());
    }

    #[test]
    fn align() {
        assert_eq!(align_up(0, 4096), Some(0));
        assert_eq!(align_up(1, 4096), Some(4096));
        assert_eq!(align_up(4096, 4096), Some(4096));
        assert_eq!(align_up(u64::MAX, 4096), None);
    }
}
