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

use std::collections::HashSet;

use sheen_wire::DirVersion;

use crate::limits;

/// The names of one directory at one version of its entries.
#[derive(Debug)]
pub(crate) struct DirNames {
    version: u64,
    names: HashSet<Vec<u8>>,
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
            names: HashSet::new(),
        }
    }

    /// The names after `change` moved the directory from `moved.before` to `moved.after`;
    /// `None` when they were not known at `moved.before` (something else changed it), or
    /// when they would be more than [`limits::DIR_NAMES_MAX`].
    pub(crate) fn after(mut self, change: NameChange<'_>, moved: DirVersion) -> Option<DirNames> {
        if moved.before != self.version || moved.after <= moved.before {
            return None;
        }
        match change {
            NameChange::Add(name) => {
                if self.names.len() >= limits::DIR_NAMES_MAX {
                    return None;
                }
                self.names.insert(name.to_vec());
            }
            NameChange::Remove(name) => {
                self.names.remove(name);
            }
        }
        self.version = moved.after;
        Some(self)
    }

    /// Whether the directory has entry `name`.
    pub(crate) fn has(&self, name: &[u8]) -> bool {
        self.names.contains(name)
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

    #[test]
    fn too_many_names_are_forgotten() {
        let mut d = DirNames::empty(1);
        for i in 0..limits::DIR_NAMES_MAX as u64 {
            let name = format!("f{i}");
            d = d
                .after(NameChange::Add(name.as_bytes()), moved(i + 1, i + 2))
                .unwrap();
        }
        let last = limits::DIR_NAMES_MAX as u64 + 1;
        assert!(d
            .after(NameChange::Add(b"one-more"), moved(last, last + 1))
            .is_none());
    }
}
