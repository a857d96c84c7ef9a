//! Every name of a directory, known to this client while the directory's attribute lock is
//! held: a lookup of any other name is answered "no such file" without asking the MDS.
//!
//! The client learns a directory's names at one version of its entries (the transno of the
//! change that made that version, `sheen_wire::DirVersion`): empty, from the mkdir that made
//! it; then through each of its own changes in it, whose reply says which version the
//! change turned into which. The lock makes another client's change call it back first,
//! which forgets the names; a change of its own cancels the lock too, and the names come
//! back with the reply only when the directory was at the version they were known at, so
//! a change from elsewhere that slipped in between is never missed.
//!
//! A small directory's names are kept exactly. Past [`limits::DIR_NAMES_EXACT_MAX`] they go
//! into Bloom filters ([`NameFilter`]), about 10 bits a name: a filter may say a name is
//! there when it is not (that lookup then asks the MDS), never the reverse, so a directory
//! of a million files still answers the lookups before its creates, in a few MiB.

use std::collections::HashSet;
use std::hash::{Hash, Hasher};

use sheen_wire::DirVersion;

use crate::limits;

/// The names of one directory at one version of its entries.
#[derive(Debug)]
pub(crate) struct DirNames {
    version: u64,
    names: Names,
    /// About how much memory the names take ([`DirNames::bytes`]).
    bytes: usize,
}

#[derive(Debug)]
enum Names {
    /// Every name.
    Exact(HashSet<Vec<u8>>),
    /// Every name, and maybe some that are not (removed ones, false positives).
    Filtered(NameFilter),
}

/// What a change of this client does to the names of the directory it changes.
#[derive(Clone, Copy, Debug)]
pub(crate) enum NameChange<'a> {
    Add(&'a [u8]),
    Remove(&'a [u8]),
}

impl DirNames {
    /// A directory without entries at `version` (a mkdir's).
    pub(crate) fn empty(version: u64) -> DirNames {
        DirNames {
            version,
            names: Names::Exact(HashSet::new()),
            bytes: 0,
        }
    }

    /// The names after `change` moved the directory from `moved.before` to `moved.after`;
    /// `None` when they were not known at `moved.before` (something else changed it), or
    /// when they would be more than [`limits::DIR_NAMES_MAX`].
    pub(crate) fn after(mut self, change: NameChange<'_>, moved: DirVersion) -> Option<DirNames> {
        if moved.before != self.version || moved.after <= moved.before {
            return None;
        }
        match (&mut self.names, change) {
            (Names::Exact(names), NameChange::Add(name)) => {
                if names.len() < limits::DIR_NAMES_EXACT_MAX {
                    if names.insert(name.to_vec()) {
                        self.bytes += exact_bytes(name);
                    }
                } else {
                    let mut filter = NameFilter::with_capacity(2 * limits::DIR_NAMES_EXACT_MAX);
                    for n in names.iter() {
                        filter.insert(n);
                    }
                    filter.insert(name);
                    self.bytes = filter.bytes();
                    self.names = Names::Filtered(filter);
                }
            }
            (Names::Exact(names), NameChange::Remove(name)) => {
                if names.remove(name) {
                    self.bytes -= exact_bytes(name);
                }
            }
            (Names::Filtered(filter), NameChange::Add(name)) => {
                if filter.inserted >= limits::DIR_NAMES_MAX {
                    return None;
                }
                filter.insert(name);
                self.bytes = filter.bytes();
            }
            // A filter cannot take a name out: it may still say the name is there.
            (Names::Filtered(_), NameChange::Remove(_)) => {}
        }
        self.version = moved.after;
        Some(self)
    }

    /// About how many bytes of memory the names take.
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    /// Whether the directory may have entry `name`: `false` only when it has not.
    pub(crate) fn has(&self, name: &[u8]) -> bool {
        match &self.names {
            Names::Exact(names) => names.contains(name),
            Names::Filtered(filter) => filter.may_contain(name),
        }
    }
}

/// About what one name kept exactly costs: its bytes, the `Vec` and its allocation, and
/// its slot in the set.
fn exact_bytes(name: &[u8]) -> usize {
    name.len() + 64
}

/// Bits per name of a filter at capacity, and probes per name: about 0.8% false positives.
const FILTER_BITS_PER_NAME: usize = 10;
const FILTER_PROBES: u64 = 7;

/// Bloom filters in stages that double in size (a scalable Bloom filter): a name goes into
/// the newest stage, and a new stage starts when it holds its capacity, so the rate of
/// false positives stays near each stage's.
#[derive(Debug)]
pub(crate) struct NameFilter {
    stages: Vec<Stage>,
    /// Names inserted over all stages.
    inserted: usize,
}

#[derive(Debug)]
struct Stage {
    bits: Vec<u64>,
    capacity: usize,
    len: usize,
}

impl Stage {
    fn new(capacity: usize) -> Stage {
        let words = (capacity * FILTER_BITS_PER_NAME).div_ceil(64).max(1);
        Stage {
            bits: vec![0; words],
            capacity,
            len: 0,
        }
    }

    /// The bit positions of a name in a stage of `words` words: double hashing over two
    /// independent 64-bit hashes.
    fn probes(words: usize, (h1, h2): (u64, u64)) -> impl Iterator<Item = usize> {
        let m = (words * 64) as u64;
        (0..FILTER_PROBES).map(move |i| (h1.wrapping_add(i.wrapping_mul(h2)) % m) as usize)
    }

    fn insert(&mut self, h: (u64, u64)) {
        for b in Stage::probes(self.bits.len(), h) {
            self.bits[b / 64] |= 1 << (b % 64);
        }
        self.len += 1;
    }

    fn may_contain(&self, h: (u64, u64)) -> bool {
        Stage::probes(self.bits.len(), h).all(|b| self.bits[b / 64] & (1 << (b % 64)) != 0)
    }
}

/// Two independent hashes of a name (SipHash with fixed keys, so runs are reproducible);
/// the second is odd, so that its multiples cover every bit of a stage.
fn hashes(name: &[u8]) -> (u64, u64) {
    let hash = |seed: u64| {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        seed.hash(&mut h);
        name.hash(&mut h);
        h.finish()
    };
    (hash(0), hash(1) | 1)
}

impl NameFilter {
    fn with_capacity(capacity: usize) -> NameFilter {
        NameFilter {
            stages: vec![Stage::new(capacity)],
            inserted: 0,
        }
    }

    fn insert(&mut self, name: &[u8]) {
        let h = hashes(name);
        let full = self.stages.last().is_none_or(|s| s.len >= s.capacity);
        if full {
            let capacity = self.stages.last().map_or(1024, |s| 2 * s.capacity);
            self.stages.push(Stage::new(capacity));
        }
        if let Some(stage) = self.stages.last_mut() {
            stage.insert(h);
        }
        self.inserted += 1;
    }

    fn may_contain(&self, name: &[u8]) -> bool {
        let h = hashes(name);
        self.stages.iter().any(|s| s.may_contain(h))
    }

    fn bytes(&self) -> usize {
        self.stages.iter().map(|s| s.bits.len() * 8).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn moved(before: u64, after: u64) -> DirVersion {
        DirVersion { before, after }
    }

    #[test]
    fn names_follow_the_changes_made_from_their_version() {
        let d = DirNames::empty(10);
        assert!(!d.has(b"a"));
        let d = d.after(NameChange::Add(b"a"), moved(10, 12)).unwrap();
        let d = d.after(NameChange::Add(b"b"), moved(12, 13)).unwrap();
        assert!(d.has(b"a") && d.has(b"b"));
        let d = d.after(NameChange::Remove(b"a"), moved(13, 20)).unwrap();
        assert!(!d.has(b"a") && d.has(b"b"));
        assert_eq!(d.version, 20);
    }

    #[test]
    fn a_change_from_another_version_forgets_the_names() {
        // Another client's change came between version 12 and this client's own change.
        let d = DirNames::empty(10)
            .after(NameChange::Add(b"a"), moved(10, 12))
            .unwrap();
        assert!(d.after(NameChange::Add(b"b"), moved(14, 15)).is_none());
        // A reply that does not move the version forward is not believed either.
        let d = DirNames::empty(10);
        assert!(d.after(NameChange::Add(b"b"), moved(10, 10)).is_none());
    }

    /// A directory of `n` names `f0`.. made at version 1, one change each.
    fn made(n: u64) -> DirNames {
        let mut d = DirNames::empty(1);
        for i in 0..n {
            let name = format!("f{i}");
            d = d
                .after(NameChange::Add(name.as_bytes()), moved(i + 1, i + 2))
                .unwrap();
        }
        d
    }

    #[test]
    fn too_many_names_are_forgotten() {
        let n = limits::DIR_NAMES_MAX as u64;
        let d = made(n);
        assert!(d
            .after(NameChange::Add(b"one-more"), moved(n + 1, n + 2))
            .is_none());
    }

    #[test]
    fn past_the_exact_limit_no_name_is_missed_and_few_absent_ones_seem_there() {
        let n = 100_000;
        let d = made(n);
        assert!(matches!(d.names, Names::Filtered(_)));
        assert!((0..n).all(|i| d.has(format!("f{i}").as_bytes())));
        let absent = 20_000;
        let seem_there = (0..absent)
            .filter(|i| d.has(format!("g{i}").as_bytes()))
            .count();
        // About 0.8% per stage when full; the stages together stay within a few percent
        // (2.5% here, over four stages).
        assert!(
            seem_there < absent / 33,
            "{seem_there} of {absent} absent names seem there"
        );
    }

    #[test]
    fn the_memory_names_take_is_counted() {
        let d = made(100);
        let exact = d.bytes();
        assert_eq!(
            exact,
            (0..100)
                .map(|i| exact_bytes(format!("f{i}").as_bytes()))
                .sum()
        );
        let d = d.after(NameChange::Remove(b"f7"), moved(101, 102)).unwrap();
        assert_eq!(d.bytes(), exact - exact_bytes(b"f7"));
        // Past the exact limit: the filters' bits, about 10 a name, growing by stages.
        let n = limits::DIR_NAMES_EXACT_MAX as u64 + 1;
        let small = made(n).bytes();
        assert_eq!(
            small,
            2 * limits::DIR_NAMES_EXACT_MAX * FILTER_BITS_PER_NAME / 8
        );
        let large = made(100_000).bytes();
        assert!(large > small && large < 100_000 * 3 * FILTER_BITS_PER_NAME / 8);
    }

    #[test]
    fn a_name_removed_from_a_filter_may_still_seem_there() {
        let exact = made(10);
        let exact = exact
            .after(NameChange::Remove(b"f3"), moved(11, 12))
            .unwrap();
        assert!(!exact.has(b"f3"), "exact names forget a removed one");
        let n = limits::DIR_NAMES_EXACT_MAX as u64 + 1;
        let filtered = made(n)
            .after(NameChange::Remove(b"f3"), moved(n + 1, n + 2))
            .unwrap();
        assert!(
            filtered.has(b"f3"),
            "a filter keeps saying maybe: the MDS is asked"
        );
        assert!(filtered.has(format!("f{}", n - 1).as_bytes()));
    }
}
