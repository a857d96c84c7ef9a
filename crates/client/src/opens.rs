//! The files this client has open, so that they can be reopened on a new connection to the
//! MDS: the MDS releases what a connection held open when the connection ends (after its
//! recovery window), and forgets everything when it restarts; the client reopens its files
//! on every reconnect, so a file unlinked while open keeps living across a restart of the
//! MDS or a network blip.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use sheen_rpc::Import;
use sheen_wire::msg::{AttrReply, OpenReq};
use sheen_wire::{Fid, Opcode};
use tracing::{debug, info, warn};

/// Open counts of one file: read-only opens and opens that may write, and of each the
/// opens being closed (their MDS_CLOSE sent and not yet answered).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Counts {
    reads: u32,
    writes: u32,
    closing_reads: u32,
    closing_writes: u32,
}

impl Counts {
    fn is_empty(&self) -> bool {
        *self == Counts::default()
    }
}

#[derive(Default)]
pub(crate) struct OpenFiles {
    files: Mutex<HashMap<Fid, Counts>>,
}

/// open(2) flags of an open that may write.
pub(crate) fn writes(flags: u32) -> bool {
    flags & libc::O_ACCMODE as u32 != libc::O_RDONLY as u32
}

impl OpenFiles {
    fn files(&self) -> MutexGuard<'_, HashMap<Fid, Counts>> {
        self.files.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn opened(&self, fid: Fid, write: bool) {
        let mut f = self.files();
        let c = f.entry(fid).or_default();
        if write {
            c.writes += 1;
        } else {
            c.reads += 1;
        }
    }

    /// How many of this client's opens of `fid` may write. Counted up after the MDS's
    /// reply and down before the MDS hears of the close, so never above the MDS's count of
    /// this client's.
    pub(crate) fn writes(&self, fid: Fid) -> u32 {
        self.files().get(&fid).map_or(0, |c| c.writes)
    }

    /// One open of `fid` ends: its MDS_CLOSE is about to be sent. Counted against the
    /// read-only opens first, as the MDS does; returns whether the open could write (for
    /// [`OpenFiles::close_done`]), `None` when `fid` was not open.
    ///
    /// The open stays among those reopened on a new connection until the close is
    /// answered: a close the MDS did not answer before it restarted is sent again on the new
    /// connection, maybe after the reopens, and must find its open reopened there. (Left
    /// out, the resent close would end another open of the file, and a file unlinked while
    /// open would be freed under its last descriptor.)
    pub(crate) fn closing(&self, fid: Fid) -> Option<bool> {
        let mut f = self.files();
        let c = f.get_mut(&fid)?;
        if c.reads > 0 {
            c.reads -= 1;
            c.closing_reads += 1;
            Some(false)
        } else if c.writes > 0 {
            c.writes -= 1;
            c.closing_writes += 1;
            Some(true)
        } else {
            None
        }
    }

    /// The MDS answered the close [`OpenFiles::closing`] started (or it failed for good).
    pub(crate) fn close_done(&self, fid: Fid, write: bool) {
        let mut f = self.files();
        if let Some(c) = f.get_mut(&fid) {
            if write {
                c.closing_writes = c.closing_writes.saturating_sub(1);
            } else {
                c.closing_reads = c.closing_reads.saturating_sub(1);
            }
            if c.is_empty() {
                f.remove(&fid);
            }
        }
    }

    /// The opens to make again on a new connection: per file, the flags of each open,
    /// those being closed included (see [`OpenFiles::closing`]).
    fn to_reopen(&self) -> Vec<(Fid, Vec<u32>)> {
        self.files()
            .iter()
            .map(|(fid, c)| {
                let (reads, writes) = (c.reads + c.closing_reads, c.writes + c.closing_writes);
                let flags = std::iter::repeat_n(libc::O_RDONLY as u32, reads as usize)
                    .chain(std::iter::repeat_n(libc::O_RDWR as u32, writes as usize));
                (*fid, flags.collect())
            })
            .collect()
    }

    /// Reopens every open file on `mds` (a new connection).
    pub(crate) async fn replay(&self, mds: &Import, mdt_idx: u32) {
        let files = self.to_reopen();
        if files.is_empty() {
            return;
        }
        info!(
            files = files.len(),
            "reopening open files on the new MDS connection"
        );
        for (fid, all_flags) in files {
            for flags in all_flags {
                let req = OpenReq { fid, flags };
                match mds
                    .call::<_, AttrReply>(Opcode::MdsOpen, mdt_idx, &req)
                    .await
                {
                    Ok(_) => {}
                    Err(e) if e.errno() == sheen_wire::Errno::ENOENT => {
                        debug!(%fid, "open file gone while disconnected");
                        break;
                    }
                    Err(e) => {
                        warn!(%fid, "reopening failed: {e}");
                        break;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fid(oid: u32) -> Fid {
        Fid {
            seq: 0x200000400,
            oid,
            ver: 0,
        }
    }

    #[test]
    fn an_open_being_closed_is_reopened_until_the_close_is_answered() {
        let opens = OpenFiles::default();
        let (a, b) = (fid(1), fid(2));
        opens.opened(a, true);
        opens.opened(a, false);
        opens.opened(b, true);
        let rdonly = libc::O_RDONLY as u32;
        let rdwr = libc::O_RDWR as u32;
        // The read-only open goes first, as on the MDS.
        assert_eq!(opens.closing(a), Some(false));
        assert_eq!(opens.closing(a), Some(true));
        assert_eq!(opens.closing(a), None, "nothing left to close");
        assert_eq!(
            opens.writes(a),
            0,
            "a closing writer no longer counts as one"
        );
        let mut reopen = opens.to_reopen();
        reopen.sort_by_key(|(f, _)| f.oid);
        assert_eq!(reopen, vec![(a, vec![rdonly, rdwr]), (b, vec![rdwr])]);
        opens.close_done(a, false);
        opens.close_done(a, true);
        assert_eq!(opens.to_reopen(), vec![(b, vec![rdwr])]);
        assert_eq!(opens.writes(b), 1);
    }
}
