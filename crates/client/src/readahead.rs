//! Readahead for the native client [llite's readahead, without the page cache]: a
//! [`FileReader`] reads one file for one reader and, while the reads follow each other,
//! keeps the next few MiB in flight, so that a sequential reader keeps every OST busy instead
//! of waiting for one RPC at a time. (Through FUSE the kernel reads ahead itself.)
//!
//! What is read ahead is handed out only while it is still what the file holds: every lock
//! it was read under is still held and not called back (another client's write to it calls
//! the lock back first), and this client has not changed the file's data since
//! ([`Client::still_current`]). Otherwise the part is read again.
//!
//! The window is cut into aligned chunks of one RPC's size, each read by a task of its own
//! so that it goes on while the reader is elsewhere. A read that does not start where the
//! last one ended drops the window (the tasks finish and give their locks back on their
//! own: an RPC is never cancelled half-way) and is read directly; the next one that follows
//! it starts a new window. Tasks hold a slot each until their data is handed out or dropped,
//! so one reader never has more than twice its window (`max_readahead_bytes`) in memory,
//! however often it jumps.

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use sheen_wire::msg::Layout;
use sheen_wire::Fid;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;

use crate::client::ReadUnder;
use crate::{limits, Client, ClientError};

/// Reads one file of a known size for one reader, reading ahead of sequential reads. Made
/// by [`Client::reader`].
pub struct FileReader {
    client: Client,
    fid: Fid,
    layout: Arc<Layout>,
    size: u64,
    /// Where a read must start to follow the last one.
    next: u64,
    /// Chunks started, in file order and back to back.
    window: VecDeque<Chunk>,
    /// `None`: readahead is off, every read is direct.
    plan: Option<Plan>,
    slots: Arc<Semaphore>,
}

/// The sizes a reader's window is cut in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Plan {
    /// Bytes per chunk (one RPC's worth; chunks start at multiples of it).
    chunk: u64,
    /// Bytes read ahead of the end of the last read.
    ahead: u64,
}

impl Plan {
    /// Four chunks per stripe (each OST has the next RPCs queued behind the one it serves;
    /// on loopback, 4 stripes read alike with windows of 8 to 64 MiB), from
    /// [`limits::READAHEAD_MIN_BYTES`] up to `max` bytes, in whole chunks (one at least);
    /// `None` when `max` is 0 (no readahead).
    fn new(max_rpc_bytes: u64, stripe_count: u64, max: u64) -> Option<Plan> {
        if max == 0 {
            return None;
        }
        let chunk = max_rpc_bytes.max(1);
        let wanted = chunk.saturating_mul(4).saturating_mul(stripe_count.max(1));
        let ahead = wanted.clamp(limits::READAHEAD_MIN_BYTES.min(max), max);
        Some(Plan {
            chunk,
            ahead: (ahead / chunk * chunk).max(chunk),
        })
    }

    /// Most chunks started and not handed out at once.
    fn slots(self) -> usize {
        usize::try_from(2 * self.ahead / self.chunk).unwrap_or(usize::MAX)
    }

    /// The chunks `[start, end)` to start after a read ending at `read_end`, when the
    /// window already reaches `started_to` (or nothing is started): from the chunk holding
    /// `from` on, up to `ahead` bytes past `read_end`, none past `size`.
    fn to_start(
        self,
        from: u64,
        started_to: Option<u64>,
        read_end: u64,
        size: u64,
    ) -> Vec<(u64, u64)> {
        let mut at = started_to.unwrap_or(from / self.chunk * self.chunk);
        let stop = read_end.saturating_add(self.ahead).min(size);
        let mut chunks = Vec::new();
        while at < stop {
            let end = (at / self.chunk + 1).saturating_mul(self.chunk).min(size);
            chunks.push((at, end));
            at = end;
        }
        chunks
    }
}

/// One chunk of the window.
struct Chunk {
    start: u64,
    end: u64,
    state: ChunkState,
}

enum ChunkState {
    Reading(JoinHandle<Result<Fetched, ClientError>>),
    Done(Result<Fetched, ClientError>),
}

/// A chunk's data and the slot it holds until handed out.
struct Fetched {
    read: ReadUnder,
    _slot: OwnedSemaphorePermit,
}

impl Client {
    /// A reader of `fid` (of `layout`, `size` bytes as the caller knows it) that reads ahead
    /// while its reads are sequential.
    pub fn reader(&self, fid: Fid, layout: Layout, size: u64) -> FileReader {
        let stripe_count = layout
            .as_plain()
            .map_or(1, |s| u64::from(s.stripe_count).max(1));
        let config = self.config();
        let plan = Plan::new(
            u64::from(config.max_rpc_bytes),
            stripe_count,
            config.max_readahead_bytes,
        );
        FileReader {
            client: self.clone(),
            fid,
            layout: Arc::new(layout),
            size,
            next: 0,
            window: VecDeque::new(),
            plan,
            slots: Arc::new(Semaphore::new(plan.map_or(0, Plan::slots))),
        }
    }
}

impl FileReader {
    /// The file this reads.
    pub fn fid(&self) -> Fid {
        self.fid
    }

    /// Reads `[offset, offset + len)`, clamped to the file's size and to
    /// [`limits::MAX_IO_BYTES`] as [`Client::read`] is.
    pub async fn read(&mut self, offset: u64, len: u32) -> Result<Bytes, ClientError> {
        let end = offset
            .saturating_add(u64::from(len))
            .min(self.size)
            .min(offset.saturating_add(limits::MAX_IO_BYTES));
        if offset >= end {
            return Ok(Bytes::new());
        }
        let sequential = offset == self.next;
        self.next = end;
        if !sequential || self.plan.is_none() {
            self.window.clear();
            return self.direct(offset, end).await;
        }
        while self.window.front().is_some_and(|c| c.end <= offset) {
            self.window.pop_front();
        }
        if self.window.front().is_some_and(|c| c.start > offset) {
            self.window.clear();
        }
        self.start_chunks(offset, end);
        let mut parts = Vec::new();
        let mut at = offset;
        while at < end {
            let Some(chunk) = self.window.front_mut() else {
                parts.push(self.direct(at, end).await?);
                break;
            };
            let (upto, chunk_start) = (chunk.end.min(end), chunk.start);
            let ahead = chunk
                .take(&self.client, self.fid)
                .await
                .map(|data| slice(data, at - chunk_start, upto - chunk_start));
            let piece = match ahead {
                Some(data) => data,
                None => self.direct(at, upto).await?,
            };
            if upto == chunk_end(&self.window) {
                self.window.pop_front();
            }
            parts.push(piece);
            at = upto;
        }
        Ok(join(parts, end - offset))
    }

    /// Waits until every chunk read ahead has arrived (or failed): for a caller that wants
    /// the window full before it goes on, and for tests.
    pub async fn wait_ahead(&mut self) {
        for chunk in &mut self.window {
            chunk.settle().await;
        }
    }

    /// Starts the chunks a read of `[offset, end)` wants in the window, as far as slots
    /// allow.
    fn start_chunks(&mut self, offset: u64, end: u64) {
        let Some(plan) = self.plan else {
            return;
        };
        let started_to = self.window.back().map(|c| c.end);
        for (start, stop) in plan.to_start(offset, started_to, end, self.size) {
            let Ok(slot) = Arc::clone(&self.slots).try_acquire_owned() else {
                break;
            };
            let client = self.client.clone();
            let layout = Arc::clone(&self.layout);
            let (fid, size) = (self.fid, self.size);
            // Chunks are at most one RPC long, far below u32::MAX.
            let len = u32::try_from(stop - start).unwrap_or(u32::MAX);
            let task = tokio::spawn(async move {
                let read = client
                    .read_under_locks(fid, &layout, size, start, len)
                    .await?;
                Ok(Fetched { read, _slot: slot })
            });
            self.window.push_back(Chunk {
                start,
                end: stop,
                state: ChunkState::Reading(task),
            });
        }
    }

    async fn direct(&self, offset: u64, end: u64) -> Result<Bytes, ClientError> {
        let len = u32::try_from(end - offset).unwrap_or(u32::MAX);
        self.client
            .read(self.fid, &self.layout, self.size, offset, len)
            .await
    }
}

impl Chunk {
    /// The chunk's data when it is still current; `None` when it must be read again (its
    /// read failed: a direct read says why, or the file changed since).
    async fn take(&mut self, client: &Client, fid: Fid) -> Option<&Bytes> {
        self.settle().await;
        match &self.state {
            ChunkState::Done(Ok(f)) if client.still_current(fid, &f.read) => Some(&f.read.data),
            _ => None,
        }
    }
}

impl Chunk {
    /// Waits for the chunk's read.
    async fn settle(&mut self) {
        if let ChunkState::Reading(task) = &mut self.state {
            let done = match task.await {
                Ok(r) => r,
                Err(e) => Err(ClientError::Invalid(format!("readahead task: {e}"))),
            };
            self.state = ChunkState::Done(done);
        }
    }
}

/// The end of the window's first chunk.
fn chunk_end(window: &VecDeque<Chunk>) -> u64 {
    window.front().map_or(0, |c| c.end)
}

/// `[from, to)` of a chunk's data (a read returns all it was asked within the size, holes
/// as zeros; clamped all the same).
fn slice(data: &Bytes, from: u64, to: u64) -> Bytes {
    let len = data.len() as u64;
    data.slice(from.min(len) as usize..to.min(len) as usize)
}

/// The pieces of one read, in order: one without a copy, several into one buffer.
fn join(parts: Vec<Bytes>, want: u64) -> Bytes {
    if parts.len() == 1 {
        return parts.into_iter().next().unwrap_or_default();
    }
    let mut out = BytesMut::with_capacity(usize::try_from(want).unwrap_or(0));
    for p in parts {
        out.extend_from_slice(&p);
    }
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    #[test]
    fn the_window_is_four_rpcs_per_stripe_within_the_bounds() {
        let max = limits::READAHEAD_MAX_BYTES;
        let plan = |chunk, stripes, max| Plan::new(chunk, stripes, max).map(|p| p.ahead);
        assert_eq!(
            Plan::new(MIB, 2, max),
            Some(Plan {
                chunk: MIB,
                ahead: 8 * MIB
            })
        );
        assert_eq!(plan(MIB, 1, max), Some(limits::READAHEAD_MIN_BYTES));
        assert_eq!(plan(MIB, 4, max), Some(max));
        assert_eq!(Plan::new(MIB, 2, max).map(Plan::slots), Some(16));
        // The configured most wins over the least; a chunk larger than both is one chunk.
        assert_eq!(plan(MIB, 1, 2 * MIB), Some(2 * MIB));
        assert_eq!(plan(64 * MIB, 1, max), Some(64 * MIB));
        assert_eq!(plan(MIB, 64, 64 * MIB), Some(64 * MIB));
        // 0: no readahead.
        assert_eq!(Plan::new(MIB, 4, 0), None);
    }

    #[test]
    fn chunks_are_aligned_and_stop_at_the_window_and_the_size() {
        let plan = Plan {
            chunk: MIB,
            ahead: 4 * MIB,
        };
        // First read, unaligned: from its chunk on to 4 MiB past its end.
        let c = plan.to_start(MIB / 2, None, MIB, 100 * MIB);
        assert_eq!(c.first(), Some(&(0, MIB)));
        assert_eq!(c.last(), Some(&(4 * MIB, 5 * MIB)));
        assert_eq!(c.len(), 5);
        // Next read: only what the window lacks.
        assert_eq!(
            plan.to_start(MIB, Some(5 * MIB), 2 * MIB, 100 * MIB),
            vec![(5 * MIB, 6 * MIB)]
        );
        // Nothing past the size; the last chunk is short.
        let c = plan.to_start(0, None, MIB, 2 * MIB + 10);
        assert_eq!(c, vec![(0, MIB), (MIB, 2 * MIB), (2 * MIB, 2 * MIB + 10)]);
        assert!(plan
            .to_start(0, Some(2 * MIB + 10), MIB, 2 * MIB + 10)
            .is_empty());
    }

    #[test]
    fn pieces_join_in_order() {
        let a = Bytes::from_static(b"abc");
        let b = Bytes::from_static(b"def");
        assert_eq!(join(vec![a.clone()], 3), a);
        assert_eq!(&join(vec![a.clone(), b], 6)[..], b"abcdef");
        assert_eq!(&slice(&a, 1, 10)[..], b"bc");
        assert!(slice(&a, 5, 10).is_empty());
    }
}
