//! Striping math [lov]: where each byte of a file lives among its stripe objects.
//!
//! RAID0 today: the file is cut into `stripe_size` pieces dealt round-robin to
//! `stripe_count` objects. Composite (PFL) and mirrored (FLR) layouts will select a component
//! first and then use the same functions. Pure functions, no I/O.

use sheen_wire::limits::{STRIPE_COUNT_MAX, STRIPE_SIZE_MAX_BYTES, STRIPE_SIZE_MIN_BYTES};
use sheen_wire::msg::{pattern, StripeLayout, STRIPE_COUNT_ALL, STRIPE_DEFAULT, STRIPE_OFFSET_ANY};

/// A RAID0 geometry: what the math needs of a stripe layout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
    pub stripe_size: u64,
    pub stripe_count: u32,
}

/// One piece of a file extent that lies in a single stripe object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StripeChunk {
    pub stripe_idx: u32,
    pub obj_offset: u64,
    pub file_offset: u64,
    pub len: u64,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LayoutError {
    #[error("stripe size {0} is not a multiple of 64 KiB in [64 KiB, 4 GiB)")]
    StripeSize(u64),
    #[error("stripe count {0} is out of range (1..={max})", max = STRIPE_COUNT_MAX)]
    StripeCount(u32),
    #[error("layout pattern {0:#x} is not supported")]
    Pattern(u32),
    #[error("layout has {objects} objects for stripe count {count}")]
    Objects { objects: usize, count: u32 },
    #[error("composite layouts are not supported yet")]
    Composite,
}

impl Geometry {
    pub fn new(stripe_size: u64, stripe_count: u32) -> Result<Geometry, LayoutError> {
        if !(STRIPE_SIZE_MIN_BYTES..=STRIPE_SIZE_MAX_BYTES).contains(&stripe_size)
            || !stripe_size.is_multiple_of(STRIPE_SIZE_MIN_BYTES)
        {
            return Err(LayoutError::StripeSize(stripe_size));
        }
        if stripe_count == 0 || stripe_count > STRIPE_COUNT_MAX {
            return Err(LayoutError::StripeCount(stripe_count));
        }
        Ok(Geometry {
            stripe_size,
            stripe_count,
        })
    }

    /// The geometry of an instantiated file layout (objects allocated).
    pub fn of(stripe: &StripeLayout) -> Result<Geometry, LayoutError> {
        if stripe.pattern & !pattern::OVERSTRIPING != pattern::RAID0 {
            return Err(LayoutError::Pattern(stripe.pattern));
        }
        let g = Geometry::new(stripe.stripe_size, stripe.stripe_count)?;
        if stripe.objects.len() != stripe.stripe_count as usize {
            return Err(LayoutError::Objects {
                objects: stripe.objects.len(),
                count: stripe.stripe_count,
            });
        }
        Ok(g)
    }

    /// Maps a file offset to (stripe index, offset in that stripe's object).
    pub fn file_to_object(&self, file_offset: u64) -> (u32, u64) {
        let unit = file_offset / self.stripe_size;
        let count = u64::from(self.stripe_count);
        let stripe_idx = (unit % count) as u32;
        let obj_offset = (unit / count) * self.stripe_size + file_offset % self.stripe_size;
        (stripe_idx, obj_offset)
    }

    /// Maps an offset in stripe `stripe_idx`'s object back to the file offset.
    pub fn object_to_file(&self, stripe_idx: u32, obj_offset: u64) -> u64 {
        let row = obj_offset / self.stripe_size;
        (row * u64::from(self.stripe_count) + u64::from(stripe_idx)) * self.stripe_size
            + obj_offset % self.stripe_size
    }

    /// Cuts the extent `[offset, offset + len)` into pieces that each lie in one object,
    /// in file order. Pieces never cross a stripe-size boundary.
    pub fn split(&self, offset: u64, len: u64) -> impl Iterator<Item = StripeChunk> + '_ {
        let end = offset.saturating_add(len);
        let mut pos = offset;
        std::iter::from_fn(move || {
            if pos >= end {
                return None;
            }
            let (stripe_idx, obj_offset) = self.file_to_object(pos);
            let unit_end = (pos / self.stripe_size + 1) * self.stripe_size;
            let piece_end = unit_end.min(end);
            let chunk = StripeChunk {
                stripe_idx,
                obj_offset,
                file_offset: pos,
                len: piece_end - pos,
            };
            pos = piece_end;
            Some(chunk)
        })
    }

    /// The size stripe `stripe_idx`'s object has when the file is `file_size` bytes long and
    /// fully written (what a truncate punches each object to).
    pub fn object_size(&self, stripe_idx: u32, file_size: u64) -> u64 {
        if file_size == 0 {
            return 0;
        }
        let ss = self.stripe_size;
        let count = u64::from(self.stripe_count);
        let last = file_size - 1;
        let last_unit = last / ss;
        let full_rows = last_unit / count;
        let idx = u64::from(stripe_idx);
        let last_stripe = last_unit % count;
        if idx < last_stripe {
            (full_rows + 1) * ss
        } else if idx == last_stripe {
            full_rows * ss + last % ss + 1
        } else {
            full_rows * ss
        }
    }

    /// The file size implied by the objects' sizes (the largest file offset any holds).
    pub fn file_size(&self, object_sizes: &[u64]) -> u64 {
        object_sizes
            .iter()
            .enumerate()
            .filter(|(_, &s)| s > 0)
            .map(|(i, &s)| self.object_to_file(i as u32, s - 1) + 1)
            .max()
            .unwrap_or(0)
    }
}

/// Fills in a layout template (from `setstripe` or a directory default) with the
/// filesystem's defaults, resolving "default" and "all OSTs" against `n_osts`.
pub fn resolve_template(
    template: Option<&StripeLayout>,
    default_count: u32,
    default_size: u64,
    n_osts: u32,
) -> Result<StripeLayout, LayoutError> {
    let mut s = template.cloned().unwrap_or(StripeLayout {
        pattern: pattern::RAID0,
        stripe_size: 0,
        stripe_count: STRIPE_DEFAULT,
        stripe_offset: STRIPE_OFFSET_ANY,
        pool: String::new(),
        objects: Vec::new(),
    });
    if s.pattern == 0 {
        s.pattern = pattern::RAID0;
    }
    if s.stripe_size == 0 {
        s.stripe_size = default_size;
    }
    if s.stripe_count == STRIPE_DEFAULT {
        s.stripe_count = default_count.max(1);
    }
    if s.stripe_count == STRIPE_COUNT_ALL {
        s.stripe_count = n_osts;
    }
    if s.pattern & pattern::OVERSTRIPING == 0 {
        s.stripe_count = s.stripe_count.min(n_osts);
    }
    s.objects.clear();
    Geometry::new(s.stripe_size, s.stripe_count)?;
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    fn check_round_trip(g: Geometry, offsets: &[u64]) {
        for &off in offsets {
            let (i, o) = g.file_to_object(off);
            assert!(i < g.stripe_count);
            assert_eq!(g.object_to_file(i, o), off, "offset {off}");
        }
    }

    #[test]
    fn maps_offsets_round_robin() {
        let g = Geometry::new(MIB, 4).unwrap();
        assert_eq!(g.file_to_object(0), (0, 0));
        assert_eq!(g.file_to_object(MIB), (1, 0));
        assert_eq!(g.file_to_object(4 * MIB + 5), (0, MIB + 5));
        assert_eq!(g.file_to_object(7 * MIB - 1), (2, 2 * MIB - 1));
        check_round_trip(g, &[0, 1, MIB - 1, MIB, 3 * MIB + 17, 1 << 40]);
        check_round_trip(
            Geometry::new(64 << 10, 3).unwrap(),
            &[0, 65535, 65536, 999_999],
        );
    }

    #[test]
    fn split_covers_extent_exactly() {
        let g = Geometry::new(MIB, 4).unwrap();
        let chunks: Vec<_> = g.split(MIB / 2, 3 * MIB).collect();
        assert_eq!(chunks.len(), 4);
        assert_eq!(
            chunks[0],
            StripeChunk {
                stripe_idx: 0,
                obj_offset: MIB / 2,
                file_offset: MIB / 2,
                len: MIB / 2
            }
        );
        assert_eq!(chunks[3].len, MIB / 2);
        assert_eq!(chunks.iter().map(|c| c.len).sum::<u64>(), 3 * MIB);
        let mut pos = MIB / 2;
        for c in &chunks {
            assert_eq!(c.file_offset, pos);
            pos += c.len;
        }
        assert_eq!(g.split(10, 0).count(), 0);
    }

    #[test]
    fn object_sizes_and_file_size_agree() {
        let g = Geometry::new(MIB, 4).unwrap();
        for size in [
            0,
            1,
            MIB,
            MIB + 1,
            4 * MIB,
            4 * MIB + 3,
            64 * MIB,
            9 * MIB - 7,
        ] {
            let sizes: Vec<u64> = (0..4).map(|i| g.object_size(i, size)).collect();
            assert_eq!(sizes.iter().sum::<u64>(), size, "size {size}");
            assert_eq!(g.file_size(&sizes), size, "size {size}");
        }
        assert_eq!(g.object_size(0, 64 * MIB), 16 * MIB);
    }

    #[test]
    fn rejects_bad_geometry() {
        assert_eq!(Geometry::new(4096, 1), Err(LayoutError::StripeSize(4096)));
        assert_eq!(
            Geometry::new(MIB + 1, 1),
            Err(LayoutError::StripeSize(MIB + 1))
        );
        assert_eq!(Geometry::new(MIB, 0), Err(LayoutError::StripeCount(0)));
        assert_eq!(
            Geometry::new(MIB, 2001),
            Err(LayoutError::StripeCount(2001))
        );
    }

    #[test]
    fn templates_resolve_defaults() {
        let s = resolve_template(None, 1, MIB, 4).unwrap();
        assert_eq!((s.stripe_count, s.stripe_size), (1, MIB));
        let t = StripeLayout {
            stripe_count: STRIPE_COUNT_ALL,
            ..s.clone()
        };
        assert_eq!(
            resolve_template(Some(&t), 1, MIB, 4).unwrap().stripe_count,
            4
        );
        let t = StripeLayout {
            stripe_count: 9,
            ..s
        };
        assert_eq!(
            resolve_template(Some(&t), 1, MIB, 4).unwrap().stripe_count,
            4
        );
    }
}
