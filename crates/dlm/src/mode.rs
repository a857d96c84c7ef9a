//! Lock modes: Lustre's compatibility matrix, and which held mode covers a wanted one.

use sheen_wire::LockMode;

/// The modes compatible with `mode`, as a mask of mode bits (Lustre's `LCK_COMPAT_*`).
/// GROUP is compatible with GROUP only for the same group id, which the policy carries:
/// [`crate::policy::conflicts`] checks it.
pub fn compat_mask(mode: LockMode) -> u32 {
    use LockMode::*;
    let ex = Nl.bits();
    let pw = ex | Cr.bits();
    let pr = pw | Pr.bits();
    let cw = pw | Cw.bits();
    let cr = cw | Pr.bits() | Pw.bits();
    let nl = cr | Ex.bits() | Group.bits();
    match mode {
        Ex => ex,
        Pw => pw,
        Pr => pr,
        Cw => cw,
        Cr => cr,
        Nl => nl,
        Group => Group.bits() | Nl.bits(),
    }
}

/// Whether locks in modes `a` and `b` may be held at once on overlapping parts of one
/// resource (by any clients, the same one included).
pub fn compatible(a: LockMode, b: LockMode) -> bool {
    compat_mask(a) & b.bits() != 0
}

/// Whether a held lock in mode `held` lets its owner do what a lock in mode `wanted`
/// allows, so a client can reuse it instead of enqueueing: PW covers PR (a writer may read),
/// EX covers every mode but GROUP, every mode covers NL. GROUP covers GROUP only (same
/// group id, checked with the policy).
pub fn covers(held: LockMode, wanted: LockMode) -> bool {
    use LockMode::*;
    let mask = match held {
        Ex => Ex.bits() | Pw.bits() | Pr.bits() | Cw.bits() | Cr.bits(),
        Pw => Pw.bits() | Pr.bits() | Cw.bits() | Cr.bits(),
        Pr => Pr.bits() | Cr.bits(),
        Cw => Cw.bits() | Cr.bits(),
        Cr => Cr.bits(),
        Nl => 0,
        Group => Group.bits(),
    };
    (mask | Nl.bits()) & wanted.bits() != 0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Lustre's matrix (lustre_dlm.h, LUSTRE.md 3.3), rows and columns in the
    /// same order; 1 = compatible. GROUP/GROUP means "same group id".
    const MATRIX: &str = "
              NL CR CW PR PW EX GROUP
        NL     1  1  1  1  1  1  1
        CR     1  1  1  1  1  0  0
        CW     1  1  1  0  0  0  0
        PR     1  1  0  1  0  0  0
        PW     1  1  0  0  0  0  0
        EX     1  0  0  0  0  0  0
        GROUP  1  0  0  0  0  0  1
    ";

    fn parse(name: &str) -> LockMode {
        LockMode::ALL
            .into_iter()
            .find(|m| m.name() == name)
            .unwrap_or_else(|| panic!("no mode {name}"))
    }

    #[test]
    fn compatibility_is_lustres_matrix() {
        let mut lines = MATRIX.lines().map(str::trim).filter(|l| !l.is_empty());
        let cols: Vec<LockMode> = lines
            .next()
            .unwrap()
            .split_whitespace()
            .map(parse)
            .collect();
        let mut n_pairs = 0;
        for line in lines {
            let mut words = line.split_whitespace();
            let row = parse(words.next().unwrap());
            for (col, cell) in cols.iter().zip(words) {
                let expected = cell == "1";
                assert_eq!(
                    compatible(row, *col),
                    expected,
                    "{} vs {}",
                    row.name(),
                    col.name()
                );
                assert_eq!(compatible(*col, row), expected, "symmetry {}", row.name());
                n_pairs += 1;
            }
        }
        assert_eq!(n_pairs, 49);
    }

    fn check(held: LockMode, wanted: &[LockMode]) {
        for m in LockMode::ALL {
            let expected = wanted.contains(&m);
            assert_eq!(
                covers(held, m),
                expected,
                "{} covers {}",
                held.name(),
                m.name()
            );
        }
    }

    #[test]
    fn covering_modes() {
        use LockMode::*;
        check(Ex, &[Ex, Pw, Pr, Cw, Cr, Nl]);
        check(Pw, &[Pw, Pr, Cw, Cr, Nl]);
        check(Pr, &[Pr, Cr, Nl]);
        check(Cw, &[Cw, Cr, Nl]);
        check(Cr, &[Cr, Nl]);
        check(Nl, &[Nl]);
        check(Group, &[Group, Nl]);
    }

    #[test]
    fn a_covering_mode_conflicts_with_at_least_what_it_covers() {
        // Reusing a held lock must never give more sharing than enqueueing would have.
        for held in LockMode::ALL {
            for wanted in LockMode::ALL.into_iter().filter(|w| covers(held, *w)) {
                assert_eq!(
                    compat_mask(held) & !compat_mask(wanted),
                    0,
                    "{}",
                    held.name()
                );
            }
        }
    }
}
