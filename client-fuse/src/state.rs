//! Per-inode state of open files: the handles, the cached layout and the size bookkeeping
//! of size-on-MDS. Pure data structures (no I/O, no locking), so they are unit tested.
//!
//! The MDS keeps the size that writers report. While a file is open for write, the size
//! applications see is the larger of the MDS size and the highest end this client wrote;
//! flush, fsync and release report it (with a new mtime) when writes made it stale.

use std::collections::HashMap;
use std::sync::Arc;

use sheen_client::{Layout, Timespec};

/// The size of one open inode as this client knows it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SizeState {
    /// The size the MDS last told us (or we last told it).
    mds_size: u64,
    /// The highest end of a write through this client since the inode was opened.
    written_end: u64,
    /// Written since the last report: the MDS mtime is stale.
    mtime_dirty: bool,
    /// The newest mtime this client's writes stamped on the objects, while writes are all
    /// it did to them (a fallocate or punch sets `objects_changed`).
    write_mtime: Option<Timespec>,
    /// This client changed the objects otherwise than by writes since the inode was opened.
    objects_changed: bool,
}

/// What a flush reports to the MDS.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlushUpdate {
    /// The new size, when writes went past the MDS size.
    pub size: Option<u64>,
    /// Whether the mtime must be set (to now).
    pub mtime: bool,
    /// The newest mtime this client's writes stamped on the objects, when writes are all it
    /// did to them: with nobody else writing, what a glimpse would find.
    pub write_mtime: Option<Timespec>,
}

impl SizeState {
    pub fn new(mds_size: u64) -> SizeState {
        SizeState {
            mds_size,
            written_end: 0,
            mtime_dirty: false,
            write_mtime: None,
            objects_changed: false,
        }
    }

    /// The size to show applications.
    pub fn size(&self) -> u64 {
        self.mds_size.max(self.written_end)
    }

    /// The MDS answered a getattr with `size`.
    pub fn observe_mds(&mut self, size: u64) {
        self.mds_size = size;
    }

    /// A write through this client ended at `end`; it stamped the objects with `mtime`.
    pub fn wrote(&mut self, end: u64, mtime: Timespec) {
        self.written_end = self.written_end.max(end);
        self.mtime_dirty = true;
        self.write_mtime = Some(self.write_mtime.map_or(mtime, |m| m.max(mtime)));
    }

    /// A fallocate through this client grew the file to `end` (the OSTs stamped the
    /// objects' mtime themselves).
    pub fn fallocated(&mut self, end: u64) {
        self.written_end = self.written_end.max(end);
        self.mtime_dirty = true;
        self.objects_changed = true;
    }

    /// The file was truncated (or extended) to `size`, objects and MDS both.
    pub fn truncated(&mut self, size: u64) {
        self.mds_size = size;
        self.written_end = self.written_end.min(size);
        self.objects_changed = true;
    }

    /// An explicit mtime was set: the writes no longer need to set it.
    pub fn mtime_set(&mut self) {
        self.mtime_dirty = false;
    }

    /// Takes what must be reported to the MDS, leaving the state clean; `None` if nothing.
    pub fn take_flush(&mut self) -> Option<FlushUpdate> {
        let size = (self.written_end > self.mds_size).then_some(self.written_end);
        if size.is_none() && !self.mtime_dirty {
            return None;
        }
        self.mtime_dirty = false;
        let write_mtime = self.write_mtime.filter(|_| !self.objects_changed);
        Some(FlushUpdate {
            size,
            mtime: true,
            write_mtime,
        })
    }

    /// The MDS recorded `update`.
    pub fn flushed(&mut self, update: FlushUpdate) {
        if let Some(size) = update.size {
            self.mds_size = self.mds_size.max(size);
        }
    }

    /// Reporting `update` failed: report again at the next flush.
    pub fn flush_failed(&mut self, update: FlushUpdate) {
        if update.mtime {
            self.mtime_dirty = true;
        }
    }
}

/// Whether a read through a handle owes the file an access-time update (relatime: atime
/// not newer than mtime or ctime, or more than a day old, when the handle was opened).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Atime {
    /// No update through this handle: opened with O_NOATIME, on a `noatime` or read-only
    /// mount, or the update was made.
    Off,
    /// The first read updates atime.
    Due,
    /// atime was current at open; a read updates it only after a write through this
    /// client moved mtime.
    Current,
}

/// Whether atime is due for an update by a read, by Linux's `relatime` rule: atime is not
/// newer than mtime or ctime, or is at least a day old at `now`.
pub fn relatime_due(atime: Timespec, mtime: Timespec, ctime: Timespec, now: Timespec) -> bool {
    const DAY_SECS: i64 = 24 * 60 * 60;
    mtime >= atime || ctime >= atime || now.sec.saturating_sub(atime.sec) >= DAY_SECS
}

/// One open file handle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Handle {
    pub ino: u64,
    pub write: bool,
    pub append: bool,
    pub atime: Atime,
}

/// An inode with at least one open handle.
#[derive(Debug)]
struct OpenInode {
    handles: u32,
    size: SizeState,
    layout: Option<Arc<Layout>>,
    /// Written through this client since it was opened: mtime moved past atime.
    written: bool,
}

/// All open files of a mount.
#[derive(Debug, Default)]
pub struct OpenFiles {
    next_fh: u64,
    handles: HashMap<u64, Handle>,
    inodes: HashMap<u64, OpenInode>,
}

impl OpenFiles {
    /// Registers a new handle on `ino`, whose MDS size and layout were just read; returns
    /// the handle number.
    pub fn open(&mut self, handle: Handle, mds_size: u64, layout: Option<Layout>) -> u64 {
        self.next_fh += 1;
        let fh = self.next_fh;
        self.handles.insert(fh, handle);
        let inode = self.inodes.entry(handle.ino).or_insert_with(|| OpenInode {
            handles: 0,
            size: SizeState::new(mds_size),
            layout: None,
            written: false,
        });
        inode.handles += 1;
        inode.size.observe_mds(mds_size);
        if let Some(l) = layout {
            inode.layout = Some(Arc::new(l));
        }
        fh
    }

    pub fn handle(&self, fh: u64) -> Option<Handle> {
        self.handles.get(&fh).copied()
    }

    /// Whether a read through `fh` is to update the file's atime; at most once per handle
    /// (the answer is `true` once, then the handle owes nothing more).
    pub fn take_atime(&mut self, fh: u64) -> bool {
        let Some(h) = self.handles.get_mut(&fh) else {
            return false;
        };
        let written = self.inodes.get(&h.ino).is_some_and(|i| i.written);
        let due = match h.atime {
            Atime::Off => false,
            Atime::Due => true,
            Atime::Current => written,
        };
        if due {
            h.atime = Atime::Off;
        }
        due
    }

    /// Drops a handle; the inode's state goes with its last handle.
    pub fn release(&mut self, fh: u64) -> Option<Handle> {
        let handle = self.handles.remove(&fh)?;
        if let Some(inode) = self.inodes.get_mut(&handle.ino) {
            inode.handles = inode.handles.saturating_sub(1);
            if inode.handles == 0 {
                self.inodes.remove(&handle.ino);
            }
        }
        Some(handle)
    }

    #[cfg(test)]
    pub fn is_open(&self, ino: u64) -> bool {
        self.inodes.contains_key(&ino)
    }

    /// The MDS answered with `mds_size` (and maybe a layout); returns the size to show.
    pub fn observe(&mut self, ino: u64, mds_size: u64, layout: Option<&Layout>) -> u64 {
        match self.inodes.get_mut(&ino) {
            Some(inode) => {
                inode.size.observe_mds(mds_size);
                if let Some(l) = layout {
                    let stale = inode.layout.as_deref() != Some(l);
                    if stale {
                        inode.layout = Some(Arc::new(l.clone()));
                    }
                }
                inode.size.size()
            }
            None => mds_size,
        }
    }

    /// The cached layout and the size to show, for I/O on an open inode.
    pub fn io_view(&self, ino: u64) -> Option<(Option<Arc<Layout>>, u64)> {
        self.inodes
            .get(&ino)
            .map(|i| (i.layout.clone(), i.size.size()))
    }

    pub fn invalidate_layout(&mut self, ino: u64) {
        if let Some(inode) = self.inodes.get_mut(&ino) {
            inode.layout = None;
        }
    }

    pub fn wrote(&mut self, ino: u64, end: u64, mtime: Timespec) {
        if let Some(inode) = self.inodes.get_mut(&ino) {
            inode.size.wrote(end, mtime);
            inode.written = true;
        }
    }

    pub fn fallocated(&mut self, ino: u64, end: u64) {
        if let Some(inode) = self.inodes.get_mut(&ino) {
            inode.size.fallocated(end);
            inode.written = true;
        }
    }

    pub fn truncated(&mut self, ino: u64, size: u64) {
        if let Some(inode) = self.inodes.get_mut(&ino) {
            inode.size.truncated(size);
        }
    }

    pub fn mtime_set(&mut self, ino: u64) {
        if let Some(inode) = self.inodes.get_mut(&ino) {
            inode.size.mtime_set();
        }
    }

    pub fn take_flush(&mut self, ino: u64) -> Option<FlushUpdate> {
        self.inodes.get_mut(&ino).and_then(|i| i.size.take_flush())
    }

    pub fn flushed(&mut self, ino: u64, update: FlushUpdate) {
        if let Some(inode) = self.inodes.get_mut(&ino) {
            inode.size.flushed(update);
        }
    }

    pub fn flush_failed(&mut self, ino: u64, update: FlushUpdate) {
        if let Some(inode) = self.inodes.get_mut(&ino) {
            inode.size.flush_failed(update);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sheen_client::Layout;
    use sheen_wire::msg::{pattern, StripeLayout};

    fn layout(gen: u32) -> Layout {
        let mut l = Layout::plain(StripeLayout {
            pattern: pattern::RAID0,
            stripe_size: 1 << 20,
            stripe_count: 1,
            stripe_offset: 0,
            pool: String::new(),
            objects: Vec::new(),
        });
        l.layout_gen = gen;
        l
    }

    #[test]
    fn size_is_max_of_mds_and_written_until_reported() {
        let mut s = SizeState::new(100);
        assert_eq!(s.size(), 100);
        assert_eq!(s.take_flush(), None);
        s.wrote(50, ts(7)); // Overwrite inside the file: only the mtime is stale.
        assert_eq!(s.size(), 100);
        assert_eq!(
            s.take_flush(),
            Some(FlushUpdate {
                size: None,
                mtime: true,
                write_mtime: Some(ts(7)),
            })
        );
        assert_eq!(s.take_flush(), None);
        s.wrote(4096, ts(9));
        s.wrote(2048, ts(8)); // Sent earlier, answered later: the newest mtime counts.
        s.observe_mds(100); // A getattr racing with the writes does not shrink the file.
        assert_eq!(s.size(), 4096);
        let update = s.take_flush().unwrap();
        assert_eq!(
            update,
            FlushUpdate {
                size: Some(4096),
                mtime: true,
                write_mtime: Some(ts(9)),
            }
        );
        s.flushed(update);
        assert_eq!(s.take_flush(), None);
        assert_eq!(s.size(), 4096);
    }

    #[test]
    fn the_write_mtime_is_known_only_while_writes_are_all_that_changed_the_objects() {
        let mut s = SizeState::new(0);
        s.wrote(10, ts(3));
        assert_eq!(s.take_flush().unwrap().write_mtime, Some(ts(3)));
        s.wrote(20, ts(4));
        s.fallocated(1 << 20);
        assert_eq!(s.take_flush().unwrap().write_mtime, None);
        let mut s = SizeState::new(0);
        s.wrote(10, ts(3));
        s.truncated(5);
        s.wrote(8, ts(5));
        assert_eq!(s.take_flush().unwrap().write_mtime, None);
    }

    #[test]
    fn failed_reports_are_retried_and_truncate_resets() {
        let mut s = SizeState::new(0);
        s.wrote(10, ts(1));
        let update = s.take_flush().unwrap();
        s.flush_failed(update);
        assert_eq!(
            s.take_flush(),
            Some(FlushUpdate {
                size: Some(10),
                mtime: true,
                write_mtime: Some(ts(1)),
            })
        );
        s.wrote(1000, ts(2));
        s.truncated(5);
        assert_eq!(s.size(), 5);
        s.mtime_set();
        assert_eq!(s.take_flush(), None);
        s.truncated(20); // Extending truncate.
        assert_eq!(s.size(), 20);
        assert_eq!(s.take_flush(), None);
    }

    #[test]
    fn open_files_track_handles_layouts_and_sizes() {
        let mut open = OpenFiles::default();
        let w = Handle {
            ino: 7,
            write: true,
            append: false,
            atime: Atime::Off,
        };
        let r = Handle {
            ino: 7,
            write: false,
            append: false,
            atime: Atime::Off,
        };
        let fh1 = open.open(w, 0, Some(layout(1)));
        let fh2 = open.open(r, 0, None);
        assert_ne!(fh1, fh2);
        assert_eq!(open.handle(fh1), Some(w));
        open.wrote(7, 300, ts(1));
        assert_eq!(open.observe(7, 0, None), 300);
        assert_eq!(open.observe(8, 42, None), 42); // Not open: the MDS size as is.
        let (l, size) = open.io_view(7).unwrap();
        assert_eq!((l.unwrap().layout_gen, size), (1, 300));
        open.observe(7, 0, Some(&layout(2)));
        assert_eq!(open.io_view(7).unwrap().0.unwrap().layout_gen, 2);
        open.invalidate_layout(7);
        assert!(open.io_view(7).unwrap().0.is_none());
        assert_eq!(open.release(fh1), Some(w));
        assert!(open.is_open(7));
        assert_eq!(open.release(fh1), None);
        assert_eq!(open.release(fh2), Some(r));
        assert!(!open.is_open(7));
        assert!(open.io_view(7).is_none());
    }

    fn ts(sec: i64) -> Timespec {
        Timespec { sec, nsec: 0 }
    }

    #[test]
    fn relatime_rule() {
        let now = ts(1_000_000);
        // atime not newer than mtime or ctime: due.
        assert!(relatime_due(ts(10), ts(10), ts(5), now));
        assert!(relatime_due(ts(10), ts(5), ts(11), now));
        // Newer than both and less than a day old: not due.
        assert!(!relatime_due(now, ts(10), ts(10), now));
        assert!(!relatime_due(ts(now.sec - 3600), ts(10), ts(10), now));
        // A day old: due.
        assert!(relatime_due(ts(now.sec - 86_400), ts(10), ts(10), now));
    }

    #[test]
    fn atime_is_updated_at_most_once_per_handle() {
        let mut open = OpenFiles::default();
        let handle = |atime| Handle {
            ino: 3,
            write: false,
            append: false,
            atime,
        };
        let due = open.open(handle(Atime::Due), 0, None);
        let current = open.open(handle(Atime::Current), 0, None);
        let off = open.open(handle(Atime::Off), 0, None);
        assert!(open.take_atime(due));
        assert!(!open.take_atime(due), "once per handle");
        assert!(!open.take_atime(current));
        assert!(!open.take_atime(off));
        // A write through this client moves mtime past atime.
        open.wrote(3, 10, ts(1));
        assert!(open.take_atime(current));
        assert!(!open.take_atime(current));
        assert!(!open.take_atime(off), "O_NOATIME and noatime stay off");
        assert!(!open.take_atime(99), "unknown handle");
    }
}
