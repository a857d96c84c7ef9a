//! Who has which file open, per client connection (export): how many opens, and how many
//! of them may write.
//!
//! The namespace pins an open inode (so an unlinked one lives on as an orphan); this table
//! adds who holds the pins, so that a client that goes away has them released, and how many
//! writers a file has, so that a getattr can tell a client whether the MDS's size is the
//! file's size (no writers: the last writer reported its size at close) or the objects must
//! be asked (writes go straight to the OSTs).
//!
//! A close does not say which of a client's opens of a file it ends; it is counted against
//! the read-only opens first, so the writers of a file are never undercounted.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use sheen_rpc::ExportId;
use sheen_wire::Fid;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Counts {
    pub reads: u32,
    pub writes: u32,
}

impl Counts {
    pub fn total(&self) -> u32 {
        self.reads + self.writes
    }
}

#[derive(Default)]
struct Table {
    by_export: HashMap<ExportId, HashMap<Fid, Counts>>,
    writers: HashMap<Fid, u32>,
}

#[derive(Default)]
pub(crate) struct Opens {
    table: Mutex<Table>,
}

impl Opens {
    fn table(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `export` opened `fid`, for writing if `write`.
    pub fn open(&self, export: ExportId, fid: Fid, write: bool) {
        let mut t = self.table();
        let c = t
            .by_export
            .entry(export)
            .or_default()
            .entry(fid)
            .or_default();
        if write {
            c.writes += 1;
            *t.writers.entry(fid).or_default() += 1;
        } else {
            c.reads += 1;
        }
    }

    /// `export` closed one open of `fid`; false if it had none.
    pub fn close(&self, export: ExportId, fid: Fid) -> bool {
        let mut t = self.table();
        let Some(files) = t.by_export.get_mut(&export) else {
            return false;
        };
        let Some(c) = files.get_mut(&fid) else {
            return false;
        };
        let was_write = if c.reads > 0 {
            c.reads -= 1;
            false
        } else {
            c.writes = c.writes.saturating_sub(1);
            true
        };
        if c.total() == 0 {
            files.remove(&fid);
            if files.is_empty() {
                t.by_export.remove(&export);
            }
        }
        if was_write {
            Self::drop_writer(&mut t, fid, 1);
        }
        true
    }

    fn drop_writer(t: &mut Table, fid: Fid, n: u32) {
        if let Some(w) = t.writers.get_mut(&fid) {
            *w = w.saturating_sub(n);
            if *w == 0 {
                t.writers.remove(&fid);
            }
        }
    }

    /// Everything `export` had open, forgotten; the caller releases the pins.
    pub fn take_export(&self, export: ExportId) -> HashMap<Fid, Counts> {
        let mut t = self.table();
        let files = t.by_export.remove(&export).unwrap_or_default();
        for (fid, c) in &files {
            Self::drop_writer(&mut t, *fid, c.writes);
        }
        files
    }

    /// Opens for writing of `fid`, over all clients.
    pub fn writers(&self, fid: Fid) -> u32 {
        self.table().writers.get(&fid).copied().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fid(oid: u32) -> Fid {
        Fid {
            seq: Fid::FIRST_NORMAL_SEQ,
            oid,
            ver: 0,
        }
    }

    #[test]
    fn writers_are_counted_per_file_and_never_undercounted() {
        let o = Opens::default();
        let (a, b) = (ExportId(1), ExportId(2));
        o.open(a, fid(1), true);
        o.open(a, fid(1), false);
        o.open(b, fid(1), true);
        assert_eq!(o.writers(fid(1)), 2);
        // A's close counts against its read-only open first.
        assert!(o.close(a, fid(1)));
        assert_eq!(o.writers(fid(1)), 2);
        assert!(o.close(a, fid(1)));
        assert_eq!(o.writers(fid(1)), 1);
        assert!(!o.close(a, fid(1)), "A has nothing open any more");
        assert_eq!(o.writers(fid(2)), 0);
        let gone = o.take_export(b);
        assert_eq!(
            gone.get(&fid(1)),
            Some(&Counts {
                reads: 0,
                writes: 1
            })
        );
        assert_eq!(o.writers(fid(1)), 0);
        assert!(o.take_export(b).is_empty());
    }
}
