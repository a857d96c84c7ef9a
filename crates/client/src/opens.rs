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

/// Open counts of one file: read-only opens and opens that may write.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Counts {
    reads: u32,
    writes: u32,
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

    /// One open of `fid` ended; counted against the read-only opens first, as the MDS does.
    pub(crate) fn closed(&self, fid: Fid) {
        let mut f = self.files();
        if let Some(c) = f.get_mut(&fid) {
            if c.reads > 0 {
                c.reads -= 1;
            } else {
                c.writes = c.writes.saturating_sub(1);
            }
            if c.reads == 0 && c.writes == 0 {
                f.remove(&fid);
            }
        }
    }

    /// Reopens every open file on `mds` (a new connection).
    pub(crate) async fn replay(&self, mds: &Import, mdt_idx: u32) {
        let files: Vec<(Fid, Counts)> = self.files().iter().map(|(f, c)| (*f, *c)).collect();
        if files.is_empty() {
            return;
        }
        info!(
            files = files.len(),
            "reopening open files on the new MDS connection"
        );
        for (fid, c) in files {
            let flags = std::iter::repeat_n(libc::O_RDONLY as u32, c.reads as usize)
                .chain(std::iter::repeat_n(libc::O_RDWR as u32, c.writes as usize));
            for flags in flags {
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
