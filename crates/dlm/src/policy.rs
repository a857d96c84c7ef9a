//! Lock policies: what part of a resource a lock covers (a byte range, inode bits), when two
//! locks conflict, when a held lock covers a request, and how far an extent lock may grow.

use sheen_wire::{ibits, LockDesc, LockExtent, LockMode, LockPolicy, LOCK_EXTENT_EOF};

use crate::error::DlmError;
use crate::limits;
use crate::mode;

/// Refuses a lock request that makes no sense: an extent whose start is past its end, no or
/// unknown inode bits, a GROUP lock that is not an extent lock.
pub fn validate(mode: LockMode, policy: &LockPolicy) -> Result<(), DlmError> {
    match policy {
        LockPolicy::Extent(e) if e.start > e.end => {
            Err(DlmError::InvalidPolicy("extent start past its end"))
        }
        LockPolicy::Ibits { bits: 0 } => Err(DlmError::InvalidPolicy("no inode bits")),
        LockPolicy::Ibits { bits } if bits & !ibits::ALL != 0 => {
            Err(DlmError::InvalidPolicy("unknown inode bits"))
        }
        LockPolicy::Plain | LockPolicy::Ibits { .. } if mode == LockMode::Group => {
            Err(DlmError::InvalidPolicy("GROUP locks are extent locks"))
        }
        _ => Ok(()),
    }
}

/// Whether two policies name a common part of the resource: extents that overlap, inode
/// bits that intersect. Plain locks cover the whole resource. Policies of different types
/// never meet on one resource (the lock table refuses that); they count as intersecting.
pub fn intersects(a: &LockPolicy, b: &LockPolicy) -> bool {
    match (a, b) {
        (LockPolicy::Extent(a), LockPolicy::Extent(b)) => a.start <= b.end && b.start <= a.end,
        (LockPolicy::Ibits { bits: a }, LockPolicy::Ibits { bits: b }) => a & b != 0,
        _ => true,
    }
}

/// Whether the modes alone forbid holding both locks: incompatible modes, or GROUP locks of
/// different group ids.
pub fn modes_conflict(a: &LockDesc, b: &LockDesc) -> bool {
    if a.mode == LockMode::Group && b.mode == LockMode::Group {
        return gid(&a.policy) != gid(&b.policy);
    }
    !mode::compatible(a.mode, b.mode)
}

/// Whether two locks on one resource conflict: their modes conflict and their policies
/// intersect.
pub fn conflicts(a: &LockDesc, b: &LockDesc) -> bool {
    modes_conflict(a, b) && intersects(&a.policy, &b.policy)
}

/// Whether a held lock `held` lets its owner do what `wanted` asks, on the same resource:
/// its mode covers the wanted one ([`mode::covers`]) and its policy contains the wanted one
/// (a containing extent of the same group, a superset of the inode bits).
pub fn covers(held: &LockDesc, wanted: &LockDesc) -> bool {
    if held.resource != wanted.resource || !mode::covers(held.mode, wanted.mode) {
        return false;
    }
    match (&held.policy, &wanted.policy) {
        (LockPolicy::Plain, LockPolicy::Plain) => true,
        (LockPolicy::Extent(h), LockPolicy::Extent(w)) => {
            let same_group = held.mode != LockMode::Group || h.gid == w.gid;
            same_group && h.start <= w.start && w.end <= h.end
        }
        (LockPolicy::Ibits { bits: h }, LockPolicy::Ibits { bits: w }) => h & w == *w,
        _ => false,
    }
}

fn gid(policy: &LockPolicy) -> u64 {
    match policy {
        LockPolicy::Extent(e) => e.gid,
        _ => 0,
    }
}

/// The widest extent containing `want` that conflicts with none of `others` (the other
/// locks on the resource, granted and waiting), as Lustre grows extent locks so that a
/// client streaming through a file takes one lock, not one per write. When `contended`, the
/// growth is bounded by [`limits::EXTENT_GROW_CONTENDED_BYTES`] on each side. A lock whose
/// own range conflicts is not grown (the caller grants only conflict-free locks).
pub fn grow_extent<'a>(
    want: &LockDesc,
    others: impl IntoIterator<Item = &'a LockDesc>,
    contended: bool,
) -> LockExtent {
    let LockPolicy::Extent(asked) = want.policy else {
        return LockExtent {
            start: 0,
            end: LOCK_EXTENT_EOF,
            gid: 0,
        };
    };
    if want.mode == LockMode::Group {
        return asked;
    }
    let (mut lo, mut hi) = (0, LOCK_EXTENT_EOF);
    if contended {
        lo = asked
            .start
            .saturating_sub(limits::EXTENT_GROW_CONTENDED_BYTES);
        hi = asked
            .end
            .saturating_add(limits::EXTENT_GROW_CONTENDED_BYTES);
    }
    for other in others {
        let LockPolicy::Extent(e) = other.policy else {
            continue;
        };
        if !modes_conflict(want, other) {
            continue;
        }
        if e.end < asked.start {
            lo = lo.max(e.end + 1);
        } else if e.start > asked.end {
            hi = hi.min(e.start - 1);
        } else {
            return asked;
        }
    }
    LockExtent {
        start: lo,
        end: hi,
        gid: asked.gid,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sheen_wire::ResourceId;
    use LockMode::*;

    const EOF: u64 = LOCK_EXTENT_EOF;

    fn ext(mode: LockMode, start: u64, end: u64) -> LockDesc {
        group(mode, start, end, 0)
    }

    fn group(mode: LockMode, start: u64, end: u64, gid: u64) -> LockDesc {
        LockDesc {
            resource: ResourceId::object(0, 1),
            mode,
            policy: LockPolicy::Extent(LockExtent { start, end, gid }),
        }
    }

    fn bits(mode: LockMode, bits: u64) -> LockDesc {
        LockDesc {
            resource: ResourceId::object(0, 1),
            mode,
            policy: LockPolicy::Ibits { bits },
        }
    }

    fn check_conflict(a: LockDesc, b: LockDesc, expected: bool) {
        assert_eq!(conflicts(&a, &b), expected, "{a:?} vs {b:?}");
        assert_eq!(conflicts(&b, &a), expected, "symmetry: {a:?} vs {b:?}");
    }

    #[test]
    fn extent_conflicts() {
        check_conflict(ext(Pw, 0, 99), ext(Pw, 100, 199), false);
        check_conflict(ext(Pw, 0, 100), ext(Pw, 100, 199), true);
        check_conflict(ext(Pw, 50, 60), ext(Pr, 0, EOF), true);
        check_conflict(ext(Pr, 0, EOF), ext(Pr, 0, EOF), false);
        check_conflict(ext(Pw, 0, 0), ext(Pr, 0, 0), true);
        check_conflict(ext(Pw, EOF, EOF), ext(Pw, 0, EOF - 1), false);
        check_conflict(ext(Pw, 0, EOF), ext(Cr, 0, EOF), false);
        check_conflict(ext(Ex, 0, EOF), ext(Nl, 0, EOF), false);
        check_conflict(group(Group, 0, EOF, 7), group(Group, 0, EOF, 7), false);
        check_conflict(group(Group, 0, EOF, 7), group(Group, 0, EOF, 8), true);
        check_conflict(group(Group, 0, 9, 7), group(Group, 10, 19, 8), false);
        check_conflict(group(Group, 0, EOF, 7), ext(Pr, 5, 5), true);
    }

    #[test]
    fn ibits_conflicts() {
        check_conflict(bits(Ex, ibits::LOOKUP), bits(Pr, ibits::UPDATE), false);
        check_conflict(
            bits(Ex, ibits::LOOKUP | ibits::UPDATE),
            bits(Pr, ibits::UPDATE),
            true,
        );
        check_conflict(bits(Pr, ibits::ALL), bits(Pr, ibits::ALL), false);
        check_conflict(bits(Pw, ibits::LAYOUT), bits(Cr, ibits::LAYOUT), false);
        check_conflict(bits(Cw, ibits::OPEN), bits(Pr, ibits::OPEN), true);
        check_conflict(bits(Ex, ibits::PERM), bits(Ex, ibits::XATTR), false);
    }

    fn check_covers(held: LockDesc, wanted: LockDesc, expected: bool) {
        assert_eq!(
            covers(&held, &wanted),
            expected,
            "{held:?} covers {wanted:?}"
        );
    }

    #[test]
    fn covering_locks() {
        check_covers(ext(Pw, 0, EOF), ext(Pr, 4096, 8191), true);
        check_covers(ext(Pr, 0, EOF), ext(Pw, 4096, 8191), false);
        check_covers(ext(Pw, 0, 4095), ext(Pw, 0, 4096), false);
        check_covers(ext(Pw, 10, 20), ext(Pw, 10, 20), true);
        check_covers(group(Group, 0, EOF, 3), group(Group, 0, 10, 3), true);
        check_covers(group(Group, 0, EOF, 3), group(Group, 0, 10, 4), false);
        check_covers(
            bits(Pr, ibits::LOOKUP | ibits::UPDATE),
            bits(Pr, ibits::UPDATE),
            true,
        );
        check_covers(
            bits(Pr, ibits::LOOKUP),
            bits(Pr, ibits::LOOKUP | ibits::PERM),
            false,
        );
        check_covers(bits(Ex, ibits::ALL), bits(Cr, ibits::LAYOUT), true);
        let mut other = ext(Pr, 0, 1);
        other.resource = ResourceId::object(0, 2);
        check_covers(ext(Pw, 0, EOF), other, false);
    }

    fn check_valid(mode: LockMode, policy: LockPolicy, expected: Result<(), &str>) {
        let got = validate(mode, &policy).map_err(|e| match e {
            DlmError::InvalidPolicy(why) => why,
            other => panic!("unexpected {other}"),
        });
        assert_eq!(got, expected, "{mode:?} {policy:?}");
    }

    #[test]
    fn validation() {
        let extent = |start, end| LockPolicy::Extent(LockExtent { start, end, gid: 0 });
        check_valid(Pw, extent(0, EOF), Ok(()));
        check_valid(Pw, extent(5, 5), Ok(()));
        check_valid(Pw, extent(6, 5), Err("extent start past its end"));
        check_valid(Pr, LockPolicy::Ibits { bits: 0 }, Err("no inode bits"));
        check_valid(
            Pr,
            LockPolicy::Ibits { bits: 0x80 },
            Err("unknown inode bits"),
        );
        check_valid(Pr, LockPolicy::Ibits { bits: ibits::ALL }, Ok(()));
        check_valid(
            Group,
            LockPolicy::Plain,
            Err("GROUP locks are extent locks"),
        );
        check_valid(Group, extent(0, EOF), Ok(()));
        check_valid(Ex, LockPolicy::Plain, Ok(()));
    }

    fn check_grow(want: LockDesc, others: &[LockDesc], contended: bool, expected: (u64, u64)) {
        let got = grow_extent(&want, others, contended);
        assert_eq!((got.start, got.end), expected, "{want:?} among {others:?}");
    }

    #[test]
    fn extent_growth() {
        const MIB32: u64 = limits::EXTENT_GROW_CONTENDED_BYTES;
        check_grow(ext(Pw, 100, 199), &[], false, (0, EOF));
        check_grow(
            ext(Pw, 100, 199),
            &[ext(Pr, 0, 49), ext(Pw, 500, 599)],
            false,
            (50, 499),
        );
        // Compatible locks do not stop growth.
        check_grow(
            ext(Pr, 100, 199),
            &[ext(Pr, 0, 49), ext(Cr, 500, 599)],
            false,
            (0, EOF),
        );
        check_grow(ext(Pw, 100, 199), &[ext(Pr, 150, 150)], false, (100, 199));
        check_grow(group(Group, 100, 199, 1), &[], false, (100, 199));
        check_grow(ext(Pw, 1 << 30, (1 << 30) + 9), &[], true, {
            ((1 << 30) - MIB32, (1 << 30) + 9 + MIB32)
        });
        check_grow(
            ext(Pw, 100, 199),
            &[ext(Pw, 0, 49)],
            true,
            (50, 199 + MIB32),
        );
        check_grow(ext(Pw, 0, EOF), &[], true, (0, EOF));
    }
}
