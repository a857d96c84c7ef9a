//! The [`Osd`] handle: format, open, and the object operations of one OST.
//!
//! Write path: lock the object's block range, read and verify the partially overwritten edge
//! blocks, allocate fresh blocks (copy-on-write, never in place over data; only the blocks
//! fallocate preallocated, which hold none, are written in place), checksum and write them in
//! one submission, then commit a record through the group committer (a data flush, the log
//! group, a log flush; each shared by every writer in the group).
//! Read path: lock the range shared, look the blocks up, read every run in one submission,
//! verify every block's crc32c before returning anything.

use std::fs::{File, OpenOptions};
use std::future::Future;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, RwLock};
use std::task::{Context, Poll};

use bytes::Bytes;
use sheen_wire::msg::{ObjAttr, Timespec};
use sheen_wire::ObjId;

use crate::alloc::Allocator;
use crate::checkpoint::{self, CkptHeader};
use crate::cipher::{BlockCipher, IdentityCipher};
use crate::codec::{align_up, u64_of, usize_of};
use crate::commit::{CommitQueue, LogState, Op};
use crate::dev::uring_reads::{ReadRing, Ticket};
use crate::dev::{engine_for, AlignedBuf, BlockDev, ReadIo, WriteIo};
use crate::error::OsdError;
use crate::format::{validate_fsname, Geometry, Superblock};
use crate::index::{blocks_for, Applied, Index, MappedRun};
use crate::limits::*;
use crate::locks::{lock, read};
use crate::rangelock::{Mode, RangeGuard, RangeLocks};
use crate::record::{NewExtent, PreallocExtent, Record, TailBlock};
use crate::replay::replay;

/// Whole blocks to write, logical blocks from some `b0` on.
enum Blocks<'a> {
    /// The OSD's own aligned buffer, which it may encrypt in place.
    Own(&'a mut [u8]),
    /// The caller's data, aligned for O_DIRECT; only with the identity cipher.
    Caller(&'a [u8]),
}

impl Blocks<'_> {
    fn bytes(&self) -> &[u8] {
        match self {
            Blocks::Own(b) => b,
            Blocks::Caller(b) => b,
        }
    }
}

/// Which filesystem and OST index a block file belongs to (kept in the superblock).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OsdLabel {
    pub fsname: String,
    pub ost_index: u32,
}

/// Space and object counts, for statfs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OsdStatfs {
    /// Bytes of the data region.
    pub total_bytes: u64,
    /// Bytes a writer can still allocate (the small reserve for punches is not counted).
    pub free_bytes: u64,
    pub objects: u64,
    pub max_objects: u64,
    pub block_size: u32,
}

/// One open OST. `Send + Sync`: every method takes `&self` and may run on many threads.
pub struct Osd {
    label: OsdLabel,
    pub(crate) geo: Geometry,
    pub(crate) dev: Box<dyn BlockDev>,
    cipher: Box<dyn BlockCipher>,
    pub(crate) index: RwLock<Index>,
    pub(crate) alloc: Mutex<Allocator>,
    pub(crate) ranges: RangeLocks,
    pub(crate) commit_queue: CommitQueue,
    pub(crate) log: Mutex<LogState>,
    pub(crate) halted: AtomicBool,
}

impl std::fmt::Debug for Osd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Osd")
            .field("label", &self.label)
            .field("engine", &self.dev.engine())
            .field("data_blocks", &self.geo.data_blocks)
            .finish_non_exhaustive()
    }
}

fn open_flags(direct: bool) -> i32 {
    libc::O_CLOEXEC | if direct { libc::O_DIRECT } else { 0 }
}

/// Takes the exclusive lock that keeps a second `open` (any process) off the file.
fn flock_exclusive(file: &File) -> Result<(), OsdError> {
    // SAFETY: flock on a descriptor we own.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
        return Ok(());
    }
    let e = io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
        Err(OsdError::Busy)
    } else {
        Err(e.into())
    }
}

fn fallocate(file: &File, len: u64) -> Result<(), OsdError> {
    let len_off = libc::off_t::try_from(len).map_err(|_| OsdError::Invalid("size too large"))?;
    // SAFETY: fallocate on a descriptor we own, with integer arguments only.
    if unsafe { libc::fallocate(file.as_raw_fd(), 0, 0, len_off) } == 0 {
        return Ok(());
    }
    let e = io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::ENOSPC) => Err(OsdError::NoSpace),
        Some(libc::EOPNOTSUPP) => {
            tracing::warn!("fallocate not supported here; the block file will be sparse");
            file.set_len(len)?;
            Ok(())
        }
        _ => Err(e.into()),
    }
}

fn fsync_parent(path: &Path) -> io::Result<()> {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    File::open(parent)?.sync_all()
}

impl Osd {
    /// Creates `path` (which must not exist) preallocated to `size_bytes` and formats it.
    pub fn format(path: &Path, size_bytes: u64, label: &OsdLabel) -> Result<(), OsdError> {
        validate_fsname(&label.fsname)?;
        let geo = Geometry::for_device(size_bytes, None)?;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .custom_flags(open_flags(false))
            .open(path)
            .map_err(|e| match e.kind() {
                io::ErrorKind::AlreadyExists => OsdError::Exists,
                _ => OsdError::Io(e),
            })?;
        let made = (|| {
            flock_exclusive(&file)?;
            fallocate(&file, geo.device_bytes)?;
            let dev = crate::dev::sync::FileDev::new(file, geo.device_bytes);
            Osd::format_dev(&dev, &geo, label)?;
            fsync_parent(path)?;
            Ok(())
        })();
        if made.is_err() {
            if let Err(e) = std::fs::remove_file(path) {
                let path = path.display();
                tracing::warn!(%path, "failed to remove a half-formatted block file: {e}");
            }
        }
        made
    }

    /// Writes an empty checkpoint (generation 1), then the superblock, each made durable.
    pub(crate) fn format_dev(
        dev: &dyn BlockDev,
        geo: &Geometry,
        label: &OsdLabel,
    ) -> Result<(), OsdError> {
        validate_fsname(&label.fsname)?;
        let image = checkpoint::encode(&Index::default(), 1, 1, geo)?;
        let ckpt = AlignedBuf::copy_of(&image, image.len());
        let zero = AlignedBuf::zeroed(BLOCK_BYTES as usize);
        dev.write_at(&[
            WriteIo {
                offset: geo.ckpt_slot_offset(1),
                buf: &ckpt,
            },
            WriteIo {
                offset: geo.ckpt_slot_offset(0),
                buf: &zero,
            },
            WriteIo {
                offset: geo.log_offset,
                buf: &zero,
            },
        ])?;
        dev.sync()?;
        let sb = Superblock {
            geo: geo.clone(),
            label: label.clone(),
        }
        .encode();
        let block = AlignedBuf::copy_of(&sb, BLOCK_BYTES as usize);
        dev.write_at(&[WriteIo {
            offset: 0,
            buf: &block,
        }])?;
        dev.sync()?;
        Ok(())
    }

    /// Opens a formatted block file: locks it, replays committed metadata, rebuilds the
    /// allocator, and writes a fresh checkpoint.
    pub fn open(path: &Path) -> Result<Osd, OsdError> {
        let open = |direct: bool| {
            OpenOptions::new()
                .read(true)
                .write(true)
                .custom_flags(open_flags(direct))
                .open(path)
        };
        let (file, direct) = match open(true) {
            Ok(f) => (f, true),
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => (open(false)?, false),
            Err(e) => return Err(e.into()),
        };
        flock_exclusive(&file)?;
        let len = file.metadata()?.len();
        let dev = engine_for(file, direct, len)?;
        Osd::open_dev(dev, Box::new(IdentityCipher))
    }

    /// Opens an OST on any block device (tests use in-memory and crashing ones).
    pub(crate) fn open_dev(
        dev: Box<dyn BlockDev>,
        cipher: Box<dyn BlockCipher>,
    ) -> Result<Osd, OsdError> {
        let mut block = AlignedBuf::zeroed(BLOCK_BYTES as usize);
        dev.read_at(&mut [ReadIo {
            offset: 0,
            buf: &mut block,
        }])?;
        let sb = Superblock::decode(&block)?;
        let geo = sb.geo;
        if geo.device_bytes > dev.len() {
            return Err(OsdError::Corrupt(format!(
                "superblock: device is {} bytes but the block file has only {}",
                geo.device_bytes,
                dev.len()
            )));
        }
        let (header, mut index) = load_checkpoint(dev.as_ref(), &geo)?;
        let stats = replay(
            dev.as_ref(),
            &geo,
            &mut index,
            header.generation,
            header.next_seq,
        )?;
        let alloc = Allocator::from_used(geo.data_blocks, index.used_runs())?;
        let log = LogState {
            generation: header.generation,
            next_seq: stats.next_seq,
            tail: 0,
        };
        let osd = Osd {
            label: sb.label,
            geo,
            dev,
            cipher,
            index: RwLock::new(index),
            alloc: Mutex::new(alloc),
            ranges: RangeLocks::default(),
            commit_queue: CommitQueue::default(),
            log: Mutex::new(log),
            halted: AtomicBool::new(false),
        };
        // Makes the replayed state durable and starts a new log generation, so that no stale
        // group past the old end of the log can ever be taken for a new one.
        osd.checkpoint(&mut lock(&osd.log))?;
        tracing::info!(
            fsname = %osd.label.fsname,
            ost_index = osd.label.ost_index,
            generation = header.generation,
            groups = stats.groups,
            records = stats.records,
            objects = read(&osd.index).objects.len(),
            "OST opened"
        );
        Ok(osd)
    }

    pub fn label(&self) -> &OsdLabel {
        &self.label
    }

    fn check_running(&self) -> Result<(), OsdError> {
        if self.halted.load(Ordering::Acquire) {
            Err(OsdError::Halted)
        } else {
            Ok(())
        }
    }

    /// Allocates `count` new empty objects with contiguous ids (never reused, starting at 1),
    /// durable before return. Returns the first id. New objects have size 0 and mtime 0, as in
    /// Lustre, so any client timestamp is newer.
    pub fn precreate(&self, count: u32) -> Result<ObjId, OsdError> {
        if count == 0 || count > PRECREATE_MAX_COUNT {
            return Err(OsdError::Invalid(
                "precreate count must be 1..=PRECREATE_MAX_COUNT",
            ));
        }
        self.check_running()?;
        match self.commit(Op::Precreate { count })? {
            Applied::FirstOid(first) => Ok(first),
            _ => Err(OsdError::Invalid("precreate produced no ids")),
        }
    }

    /// Removes an object and frees its space.
    pub fn destroy(&self, oid: ObjId) -> Result<(), OsdError> {
        self.check_running()?;
        let _range = self.ranges.lock_all(oid);
        self.require(oid)?;
        self.commit(Op::Record(Record::Destroy { oid }))?;
        Ok(())
    }

    /// Removes several objects in one commit (so with one log write and one flush, where
    /// destroying them one by one flushes once each). Objects that do not exist are skipped;
    /// returns how many were destroyed. On an error, some may have been destroyed: calling
    /// again with the same ids finishes the job.
    pub fn destroy_batch(&self, oids: &[ObjId]) -> Result<u32, OsdError> {
        self.check_running()?;
        let mut oids = oids.to_vec();
        oids.sort_unstable();
        oids.dedup();
        // In ascending order, as every holder of several objects takes them.
        let _ranges: Vec<_> = oids.iter().map(|&oid| self.ranges.lock_all(oid)).collect();
        let ops = oids
            .iter()
            .map(|&oid| Op::Record(Record::Destroy { oid }))
            .collect();
        let mut destroyed = 0u32;
        for outcome in self.commit_all(ops) {
            match outcome {
                Ok(_) => destroyed += 1,
                Err(OsdError::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(destroyed)
    }

    fn require(&self, oid: ObjId) -> Result<(), OsdError> {
        if read(&self.index).objects.contains_key(&oid) {
            Ok(())
        } else {
            Err(OsdError::NotFound(oid))
        }
    }

    /// Reads up to `len` bytes at `offset`; shorter only at the object's end; holes read as
    /// zeros. Every block read is verified against its crc32c; a mismatch is
    /// `OsdError::Checksum` (never bad data), logged at error level.
    pub fn read(&self, oid: ObjId, offset: u64, len: u32) -> Result<Bytes, OsdError> {
        if len > MAX_IO_BYTES {
            return Err(OsdError::Invalid("read longer than MAX_IO_BYTES"));
        }
        let (b0, b1) = read_blocks(offset, len);
        let _range = self.ranges.lock(oid, b0, b1, Mode::Shared);
        let Some(mut plan) = self.plan_read(oid, offset, len)? else {
            return Ok(Bytes::new());
        };
        self.fetch(oid, plan.b0, &plan.runs, &mut plan.buf)?;
        Ok(Bytes::from_owner(plan.buf).slice(plan.start..plan.stop))
    }

    /// What a read needs once its block range is held: the object's runs over the bytes
    /// that exist, a buffer for their blocks (the unmapped ones zeroed), and where the bytes
    /// asked for lie in it; `None` when nothing is there to read.
    fn plan_read(&self, oid: ObjId, offset: u64, len: u32) -> Result<Option<ReadPlan>, OsdError> {
        let req_end = offset.saturating_add(u64::from(len));
        let b0 = offset / BLOCK_BYTES_U64;
        let (end, runs) = {
            let idx = read(&self.index);
            let obj = idx.objects.get(&oid).ok_or(OsdError::NotFound(oid))?;
            let end = req_end.min(obj.size);
            if end <= offset {
                return Ok(None);
            }
            (end, obj.map.lookup(b0, blocks_for(end)))
        };
        let n_blocks = blocks_for(end) - b0;
        let mut buf = AlignedBuf::stale(usize_of(n_blocks * BLOCK_BYTES_U64));
        zero_unread(&mut buf, b0, &runs);
        let start = usize_of(offset - b0 * BLOCK_BYTES_U64);
        Ok(Some(ReadPlan {
            b0,
            runs,
            buf,
            start,
            stop: start + usize_of(end - offset),
        }))
    }

    /// Starts the read [`Osd::read`] does without blocking the calling thread: the I/O is
    /// submitted here and the returned future resolves to what `read` would return, once
    /// [`Osd::reap_reads`] has collected its completion. Meant for an event loop, which
    /// calls `reap_reads` whenever [`Osd::read_event_fd`] becomes readable.
    ///
    /// `Ok(None)`: this read cannot start that way now (the engine has no read ring, a write
    /// holds or waits for the range, the ring is full, or `len` is over
    /// `ASYNC_READ_MAX_BYTES`); call `read` on a thread that may block instead.
    pub fn start_read(
        &self,
        oid: ObjId,
        offset: u64,
        len: u32,
    ) -> Result<Option<PendingRead<'_>>, OsdError> {
        let Some(ring) = self.dev.read_ring() else {
            return Ok(None);
        };
        if len > ASYNC_READ_MAX_BYTES {
            return Ok(None);
        }
        let (b0, b1) = read_blocks(offset, len);
        let Some(range) = self.ranges.try_lock(oid, b0, b1, Mode::Shared) else {
            return Ok(None);
        };
        let Some(ReadPlan {
            b0,
            runs,
            buf,
            start,
            stop,
        }) = self.plan_read(oid, offset, len)?
        else {
            return Ok(Some(PendingRead::ready(Ok(Bytes::new()))));
        };
        let runs: Vec<MappedRun> = runs.into_iter().filter(|r| !r.prealloc).collect();
        if runs.is_empty() {
            return Ok(Some(PendingRead::ready(Ok(
                Bytes::from_owner(buf).slice(start..stop)
            ))));
        }
        let ios: Vec<(u64, usize, usize)> = runs
            .iter()
            .map(|run| {
                (
                    self.geo.block_offset(run.phys),
                    usize_of((run.logical - b0) * BLOCK_BYTES_U64),
                    run.crcs.len() * BLOCK_BYTES as usize,
                )
            })
            .collect();
        let Ok(ticket) = ring.start(buf, &ios) else {
            return Ok(None);
        };
        Ok(Some(PendingRead(Pending::InFlight {
            osd: self,
            oid,
            b0,
            runs,
            start,
            stop,
            ticket,
            _range: range,
        })))
    }

    /// Becomes readable when reads started by [`Osd::start_read`] complete (then call
    /// [`Osd::reap_reads`]); `None` when the engine has no read ring, so that `start_read`
    /// never starts one.
    pub fn read_event_fd(&self) -> Option<RawFd> {
        self.dev.read_ring().map(ReadRing::event_fd)
    }

    /// Collects the reads started by [`Osd::start_read`] that have completed and wakes their
    /// futures. Returns whether the event descriptor had been signalled since the last call
    /// (false: wait for it to become readable again).
    pub fn reap_reads(&self) -> bool {
        self.dev.read_ring().is_some_and(ReadRing::reap)
    }

    /// Reads the mapped `runs` into `buf` (which holds logical blocks from `b0` on) with one
    /// submission, then decrypts and verifies each block. Unmapped blocks are left as they are.
    fn fetch(
        &self,
        oid: ObjId,
        b0: u64,
        runs: &[MappedRun],
        buf: &mut [u8],
    ) -> Result<(), OsdError> {
        // Preallocated blocks hold no data: they read as the zeros already in `buf`.
        let runs: Vec<&MappedRun> = runs.iter().filter(|r| !r.prealloc).collect();
        if runs.is_empty() {
            return Ok(());
        }
        {
            let mut ios = Vec::with_capacity(runs.len());
            let mut rest: &mut [u8] = buf;
            let mut rest_block = b0;
            for run in &runs {
                let skip = usize_of((run.logical - rest_block) * BLOCK_BYTES_U64);
                let len = usize_of(u64_of(run.crcs.len()) * BLOCK_BYTES_U64);
                let (_, tail) = std::mem::take(&mut rest).split_at_mut(skip);
                let (this, after) = tail.split_at_mut(len);
                ios.push(ReadIo {
                    offset: self.geo.block_offset(run.phys),
                    buf: this,
                });
                rest = after;
                rest_block = run.logical + u64_of(run.crcs.len());
            }
            self.dev.read_at(&mut ios)?;
        }
        self.verify(oid, b0, runs, buf)
    }

    /// Decrypts and verifies every block of the mapped `runs` in `buf` (which holds logical
    /// blocks from `b0` on): a mismatch is `OsdError::Checksum`, logged at error level.
    fn verify<'r>(
        &self,
        oid: ObjId,
        b0: u64,
        runs: impl IntoIterator<Item = &'r MappedRun>,
        buf: &mut [u8],
    ) -> Result<(), OsdError> {
        for run in runs {
            for (i, stored) in run.crcs.iter().enumerate() {
                let logical = run.logical + u64_of(i);
                let at = usize_of((logical - b0) * BLOCK_BYTES_U64);
                let block = &mut buf[at..at + BLOCK_BYTES as usize];
                if !self.cipher.is_identity() {
                    self.cipher
                        .decrypt(oid, logical, run.phys + u64_of(i), block);
                }
                let computed = crc32c::crc32c(block);
                if computed != *stored {
                    let offset = logical * BLOCK_BYTES_U64;
                    tracing::error!(
                        oid,
                        offset,
                        phys_block = run.phys + u64_of(i),
                        stored = format_args!("{stored:#010x}"),
                        computed = format_args!("{computed:#010x}"),
                        "checksum mismatch reading data block"
                    );
                    return Err(OsdError::Checksum {
                        oid,
                        offset,
                        stored: *stored,
                        computed,
                    });
                }
            }
        }
        Ok(())
    }

    /// Writes `buf` (whole blocks: logical blocks from `b0` on): in place into the object's
    /// preallocated blocks `in_place` (runs inside the range, in logical order), and into
    /// newly allocated blocks everywhere else (dipping into the reserve only if `reserve` is
    /// 0). Checksums and encrypts every block and writes them all in one submission. On
    /// failure the new blocks go back to the allocator.
    fn write_blocks(
        &self,
        oid: ObjId,
        b0: u64,
        mut blocks: Blocks<'_>,
        reserve: u64,
        in_place: &[MappedRun],
        known_crcs: Option<&[u32]>,
    ) -> Result<Vec<NewExtent>, OsdError> {
        if !self.cipher.is_identity() && matches!(blocks, Blocks::Caller(_)) {
            return Err(OsdError::Invalid(
                "a caller's buffer cannot be encrypted in place",
            ));
        }
        let n = u64_of(blocks.bytes().len()) / BLOCK_BYTES_U64;
        let n_in_place: u64 = in_place.iter().map(|r| u64_of(r.crcs.len())).sum();
        debug_assert!(in_place
            .iter()
            .all(|r| r.prealloc && r.logical >= b0 && r.logical + u64_of(r.crcs.len()) <= b0 + n));
        let n_fresh = n
            .checked_sub(n_in_place)
            .ok_or(OsdError::Invalid("in-place runs outside the write"))?;
        let runs = lock(&self.alloc)
            .alloc(n_fresh, reserve)
            .ok_or(OsdError::NoSpace)?;
        let crcs: Vec<u32> = match known_crcs.filter(|c| u64_of(c.len()) == n) {
            Some(known) => known.to_vec(),
            None => blocks
                .bytes()
                .chunks_exact(BLOCK_BYTES as usize)
                .map(crc32c::crc32c)
                .collect(),
        };
        // Where each logical block goes, in logical order: the preallocated runs where they
        // are, the fresh runs, in order, in the gaps between them.
        let mut places = Vec::new();
        let mut fresh: std::collections::VecDeque<(u64, u64)> = runs.iter().copied().collect();
        let mut cursor = b0;
        for run in in_place {
            place_fresh(&mut fresh, cursor, run.logical, &mut places);
            let len = u64_of(run.crcs.len());
            places.push(Place {
                logical: run.logical,
                phys: run.phys,
                len,
                in_place: true,
            });
            cursor = run.logical + len;
        }
        place_fresh(&mut fresh, cursor, b0 + n, &mut places);
        debug_assert!(fresh.is_empty());
        debug_assert_eq!(places.iter().map(|p| p.len).sum::<u64>(), n);
        let mut extents = Vec::new();
        for p in &places {
            let mut done = 0u64;
            while done < p.len {
                let take = (p.len - done).min(u64::from(MAX_EXTENT_BLOCKS));
                let first = usize_of(p.logical + done - b0);
                extents.push(NewExtent {
                    logical: p.logical + done,
                    phys: p.phys + done,
                    crcs: crcs[first..first + usize_of(take)].to_vec(),
                    in_place: p.in_place,
                });
                done += take;
            }
        }
        if let (false, Blocks::Own(buf)) = (self.cipher.is_identity(), &mut blocks) {
            for x in &extents {
                for i in 0..x.len_blocks() {
                    let at = usize_of((x.logical + i - b0) * BLOCK_BYTES_U64);
                    let block = &mut buf[at..at + BLOCK_BYTES as usize];
                    self.cipher.encrypt(oid, x.logical + i, x.phys + i, block);
                }
            }
        }
        // One I/O per physically contiguous stretch (places are logically contiguous).
        let mut stretches: Vec<(u64, u64, u64)> = Vec::with_capacity(places.len());
        for p in &places {
            match stretches.last_mut() {
                Some((_, phys, len)) if *phys + *len == p.phys => *len += p.len,
                _ => stretches.push((p.logical, p.phys, p.len)),
            }
        }
        let buf = blocks.bytes();
        let ios: Vec<WriteIo<'_>> = stretches
            .iter()
            .map(|&(logical, phys, len)| {
                let at = usize_of((logical - b0) * BLOCK_BYTES_U64);
                WriteIo {
                    offset: self.geo.block_offset(phys),
                    buf: &buf[at..at + usize_of(len * BLOCK_BYTES_U64)],
                }
            })
            .collect();
        if let Err(e) = self.dev.write_at(&ios) {
            let mut alloc = lock(&self.alloc);
            for (phys, len) in runs {
                alloc.free(phys, len);
            }
            return Err(e.into());
        }
        Ok(extents)
    }

    /// Writes `data` at `offset` (may extend the object, leaving holes); durable on return.
    /// Returns the object's size after the write. The mtime becomes the later of the current
    /// one and `mtime`. On a full OST: `NoSpace`, object unchanged.
    pub fn write(
        &self,
        oid: ObjId,
        offset: u64,
        data: &[u8],
        mtime: Timespec,
    ) -> Result<u64, OsdError> {
        self.write_with_crcs(oid, offset, data, None, mtime)
    }

    /// [`Osd::write`], given the crc32c of each 4 KiB piece of `data`
    /// (`sheen_wire::piece_crc`, as a transport that checked the bytes recorded them). When
    /// the write covers whole blocks, those are the blocks' crcs and are stored as they are,
    /// without summing the data again; otherwise they are not used. They must be the crcs
    /// of these bytes: a wrong one makes its block read as a checksum error.
    pub fn write_with_crcs(
        &self,
        oid: ObjId,
        offset: u64,
        data: &[u8],
        piece_crcs: Option<&[u32]>,
        mtime: Timespec,
    ) -> Result<u64, OsdError> {
        self.check_running()?;
        let len = u64_of(data.len());
        if len > u64::from(MAX_IO_BYTES) {
            return Err(OsdError::Invalid("write longer than MAX_IO_BYTES"));
        }
        if mtime.nsec >= 1_000_000_000 {
            return Err(OsdError::Invalid("mtime nanoseconds out of range"));
        }
        let end = offset
            .checked_add(len)
            .filter(|e| *e <= MAX_OBJECT_BYTES)
            .ok_or(OsdError::TooBig {
                oid,
                end: offset.saturating_add(len),
            })?;
        if len == 0 {
            return self.getattr(oid).map(|a| a.size);
        }
        let b0 = offset / BLOCK_BYTES_U64;
        let b1 = blocks_for(end);
        let _range = self.ranges.lock(oid, b0, b1, Mode::Exclusive);
        let head_partial = offset % BLOCK_BYTES_U64 != 0;
        let tail_partial = end % BLOCK_BYTES_U64 != 0 && !(head_partial && b1 - 1 == b0);
        let (edges, in_place) = {
            let idx = read(&self.index);
            let obj = idx.objects.get(&oid).ok_or(OsdError::NotFound(oid))?;
            let mut runs = Vec::new();
            if head_partial {
                runs.extend(obj.map.lookup(b0, b0 + 1));
            }
            if tail_partial {
                runs.extend(obj.map.lookup(b1 - 1, b1));
            }
            // The first write into preallocated blocks goes in place: no allocation, so it
            // cannot fail for lack of space (what fallocate promised).
            let in_place: Vec<MappedRun> = obj
                .map
                .lookup(b0, b1)
                .into_iter()
                .filter(|r| r.prealloc)
                .collect();
            (runs, in_place)
        };
        // Whole blocks in memory O_DIRECT can use, with nothing to encrypt: written from
        // the caller's buffer (a bulk received into an aligned buffer, say) without a copy.
        let whole_blocks = !head_partial && end % BLOCK_BYTES_U64 == 0;
        let direct = whole_blocks
            && data.as_ptr() as usize % IO_ALIGN_BYTES == 0
            && self.cipher.is_identity();
        // The blocks are the data's pieces exactly (their crcs are of plaintext, taken before
        // any encryption, as the OSD's own).
        let known =
            piece_crcs.filter(|c| whole_blocks && c.len() == data.len() / BLOCK_BYTES as usize);
        let extents = if direct {
            self.write_blocks(
                oid,
                b0,
                Blocks::Caller(data),
                RESERVED_BLOCKS,
                &in_place,
                known,
            )?
        } else {
            // Every byte is written below: the data, and around it zeros or the edge blocks.
            let mut buf = AlignedBuf::stale(usize_of((b1 - b0) * BLOCK_BYTES_U64));
            let at = usize_of(offset - b0 * BLOCK_BYTES_U64);
            buf[..at].fill(0);
            buf[at + data.len()..].fill(0);
            self.fetch(oid, b0, &edges, &mut buf)?;
            buf[at..at + data.len()].copy_from_slice(data);
            self.write_blocks(
                oid,
                b0,
                Blocks::Own(&mut buf),
                RESERVED_BLOCKS,
                &in_place,
                known,
            )?
        };
        match self.commit(Op::Record(Record::Write {
            oid,
            end,
            mtime,
            extents,
        }))? {
            Applied::Size(size) => Ok(size),
            _ => Err(OsdError::Invalid("write produced no size")),
        }
    }

    /// Truncates (or sparsely extends) the object to `size`: frees whole blocks past it and
    /// zeroes the tail of a partial last block (by copy-on-write). Durable on return.
    pub fn punch(&self, oid: ObjId, size: u64) -> Result<(), OsdError> {
        self.check_running()?;
        if size > MAX_OBJECT_BYTES {
            return Err(OsdError::TooBig { oid, end: size });
        }
        let _range = self.ranges.lock_all(oid);
        let last = size / BLOCK_BYTES_U64;
        let (old_size, tail_run) = {
            let idx = read(&self.index);
            let obj = idx.objects.get(&oid).ok_or(OsdError::NotFound(oid))?;
            let shrinks_into_block = size < obj.size && size % BLOCK_BYTES_U64 != 0;
            // A preallocated block needs no zeroing: it reads as zeros.
            let run = if shrinks_into_block {
                obj.map
                    .lookup(last, last + 1)
                    .into_iter()
                    .filter(|r| !r.prealloc)
                    .collect()
            } else {
                Vec::new()
            };
            (obj.size, run)
        };
        if size == old_size {
            return Ok(());
        }
        let mut tail = None;
        if !tail_run.is_empty() {
            let mut buf = AlignedBuf::zeroed(BLOCK_BYTES as usize);
            self.fetch(oid, last, &tail_run, &mut buf)?;
            buf[usize_of(size % BLOCK_BYTES_U64)..].fill(0);
            let extents = self.write_blocks(oid, last, Blocks::Own(&mut buf), 0, &[], None)?;
            let (phys, crc) = extents
                .first()
                .and_then(|x| Some((x.phys, *x.crcs.first()?)))
                .ok_or(OsdError::Invalid("punch tail produced no block"))?;
            tail = Some(TailBlock {
                logical: last,
                phys,
                crc,
            });
        }
        self.commit(Op::Record(Record::Punch { oid, size, tail }))?;
        Ok(())
    }

    /// Checks a fallocate or punch-hole range: non-empty, inside the largest object.
    /// Returns its end.
    fn falloc_end(oid: ObjId, offset: u64, len: u64, mtime: Timespec) -> Result<u64, OsdError> {
        if len == 0 {
            return Err(OsdError::Invalid("fallocate of an empty range"));
        }
        if mtime.nsec >= 1_000_000_000 {
            return Err(OsdError::Invalid("mtime nanoseconds out of range"));
        }
        offset
            .checked_add(len)
            .filter(|e| *e <= MAX_OBJECT_BYTES)
            .ok_or(OsdError::TooBig {
                oid,
                end: offset.saturating_add(len),
            })
    }

    /// Allocates ahead the blocks of `[offset, offset + len)` that have none (fallocate(2)
    /// mode 0, or `FALLOC_FL_KEEP_SIZE` with `keep_size`). They are recorded as preallocated:
    /// they read as zeros, and the first write into each goes in place into it, so a write
    /// into the range cannot fail for lack of space. Blocks already allocated are left alone.
    /// Without `keep_size` the size becomes at least `offset + len`, and when it grows the
    /// mtime becomes the later of the current one and `mtime` (as for a write).
    /// All or nothing: when the free blocks do not suffice, `NoSpace` and nothing allocated.
    /// Durable on return; returns the object's size.
    pub fn fallocate(
        &self,
        oid: ObjId,
        offset: u64,
        len: u64,
        keep_size: bool,
        mtime: Timespec,
    ) -> Result<u64, OsdError> {
        self.check_running()?;
        let end = Self::falloc_end(oid, offset, len, mtime)?;
        let (b0, b1) = (offset / BLOCK_BYTES_U64, blocks_for(end));
        let _range = self.ranges.lock(oid, b0, b1, Mode::Exclusive);
        let (holes, size) = {
            let idx = read(&self.index);
            let obj = idx.objects.get(&oid).ok_or(OsdError::NotFound(oid))?;
            (obj.map.holes(b0, b1), obj.size)
        };
        let new_end = if keep_size { 0 } else { end };
        let n: u64 = holes.iter().map(|(_, len)| len).sum();
        if n == 0 && new_end <= size {
            return Ok(size);
        }
        // Every block at once, before anything is logged: all or nothing.
        let runs = lock(&self.alloc)
            .alloc(n, RESERVED_BLOCKS)
            .ok_or(OsdError::NoSpace)?;
        let mut extents = Vec::new();
        let mut fresh: std::collections::VecDeque<(u64, u64)> = runs.into_iter().collect();
        let mut places = Vec::new();
        for (logical, len) in holes {
            place_fresh(&mut fresh, logical, logical + len, &mut places);
        }
        for p in places {
            let mut done = 0u64;
            while done < p.len {
                let take = (p.len - done).min(u64::from(MAX_EXTENT_BLOCKS));
                extents.push(PreallocExtent {
                    logical: p.logical + done,
                    phys: p.phys + done,
                    len: u32::try_from(take).unwrap_or(MAX_EXTENT_BLOCKS),
                });
                done += take;
            }
        }
        // Records are bounded: a large, fragmented range takes several, the size moving with
        // the last. A crash in between leaves the first ones (blocks allocated, size as it
        // was), as ext4 leaves the blocks it allocated before an interruption.
        let per_record = usize_of(u64::from(PREALLOC_RECORD_MAX_EXTENTS));
        let chunks: Vec<&[PreallocExtent]> = if extents.is_empty() {
            vec![&[]]
        } else {
            extents.chunks(per_record).collect()
        };
        let mut size = size;
        for (i, chunk) in chunks.iter().enumerate() {
            let last = i + 1 == chunks.len();
            let rec = Record::Prealloc {
                oid,
                end: if last { new_end } else { 0 },
                mtime,
                extents: chunk.to_vec(),
            };
            match self.commit(Op::Record(rec)) {
                Ok(Applied::Size(s)) => size = s,
                outcome => {
                    // This record's blocks were returned (rejected) or the OST halted; the
                    // later records were never logged: their blocks go back.
                    let mut alloc = lock(&self.alloc);
                    for x in chunks[i + 1..].iter().flat_map(|c| c.iter()) {
                        alloc.free(x.phys, u64::from(x.len));
                    }
                    return match outcome {
                        Err(e) => Err(e),
                        Ok(_) => Err(OsdError::Invalid("fallocate produced no size")),
                    };
                }
            }
        }
        Ok(size)
    }

    /// Whether a [`Osd::fallocate`] of the range would find the free blocks it needs now
    /// (`NoSpace` if not). Allocates nothing: a client spreading one fallocate over several
    /// OSTs asks each first, so that a range too large fails before any OST allocates.
    pub fn fallocate_fits(&self, oid: ObjId, offset: u64, len: u64) -> Result<(), OsdError> {
        let end = Self::falloc_end(oid, offset, len, Timespec::default())?;
        let (b0, b1) = (offset / BLOCK_BYTES_U64, blocks_for(end));
        let _range = self.ranges.lock(oid, b0, b1, Mode::Shared);
        let n: u64 = {
            let idx = read(&self.index);
            let obj = idx.objects.get(&oid).ok_or(OsdError::NotFound(oid))?;
            obj.map.holes(b0, b1).iter().map(|(_, len)| len).sum()
        };
        let free = lock(&self.alloc).free_blocks();
        if free < n.saturating_add(RESERVED_BLOCKS) {
            return Err(OsdError::NoSpace);
        }
        Ok(())
    }

    /// Frees the blocks of `[offset, offset + len)` (fallocate(2) `FALLOC_FL_PUNCH_HOLE |
    /// FALLOC_FL_KEEP_SIZE`): blocks wholly inside are unmapped (written or preallocated), and
    /// a written block the range covers only partly, at either edge, is rewritten with the
    /// punched bytes zeroed (copy-on-write). The range reads as zeros afterwards; the size
    /// stays; the mtime becomes the later of the current one and `mtime`. Durable on return.
    pub fn punch_hole(
        &self,
        oid: ObjId,
        offset: u64,
        len: u64,
        mtime: Timespec,
    ) -> Result<(), OsdError> {
        self.check_running()?;
        let end = Self::falloc_end(oid, offset, len, mtime)?;
        let (b_lo, b_hi) = (offset / BLOCK_BYTES_U64, blocks_for(end));
        let _range = self.ranges.lock(oid, b_lo, b_hi, Mode::Exclusive);
        // Blocks wholly inside the range; the edge blocks are the others in [b_lo, b_hi).
        let first_block = blocks_for(offset);
        let end_block = (end / BLOCK_BYTES_U64).max(first_block);
        let mut edges: Vec<u64> = Vec::new();
        for b in [b_lo, b_hi - 1] {
            if !(first_block..end_block).contains(&b) && !edges.contains(&b) {
                edges.push(b);
            }
        }
        let edge_runs: Vec<(u64, Vec<MappedRun>)> = {
            let idx = read(&self.index);
            let obj = idx.objects.get(&oid).ok_or(OsdError::NotFound(oid))?;
            edges
                .iter()
                .map(|&b| {
                    let runs: Vec<MappedRun> = obj
                        .map
                        .lookup(b, b + 1)
                        .into_iter()
                        .filter(|r| !r.prealloc)
                        .collect();
                    (b, runs)
                })
                .filter(|(_, runs)| !runs.is_empty())
                .collect()
        };
        let mut extents: Vec<NewExtent> = Vec::new();
        for (b, runs) in edge_runs {
            let mut buf = AlignedBuf::zeroed(BLOCK_BYTES as usize);
            let written = self.fetch(oid, b, &runs, &mut buf).and_then(|()| {
                let block_start = b * BLOCK_BYTES_U64;
                let from = usize_of(offset.max(block_start) - block_start);
                let to = usize_of(end.min(block_start + BLOCK_BYTES_U64) - block_start);
                buf[from..to].fill(0);
                self.write_blocks(oid, b, Blocks::Own(&mut buf), 0, &[], None)
            });
            match written {
                Ok(x) => extents.extend(x),
                Err(e) => {
                    let mut alloc = lock(&self.alloc);
                    for x in &extents {
                        alloc.free(x.phys, x.len_blocks());
                    }
                    return Err(e);
                }
            }
        }
        self.commit(Op::Record(Record::PunchHole {
            oid,
            first_block,
            end_block,
            mtime,
            extents,
        }))?;
        Ok(())
    }

    pub fn getattr(&self, oid: ObjId) -> Result<ObjAttr, OsdError> {
        let idx = read(&self.index);
        let obj = idx.objects.get(&oid).ok_or(OsdError::NotFound(oid))?;
        Ok(obj.attr(oid))
    }

    /// Sets the object's mtime (exactly, even backwards, as utimes does). Durable on return.
    pub fn set_mtime(&self, oid: ObjId, mtime: Timespec) -> Result<(), OsdError> {
        self.check_running()?;
        if mtime.nsec >= 1_000_000_000 {
            return Err(OsdError::Invalid("mtime nanoseconds out of range"));
        }
        self.require(oid)?;
        self.commit(Op::Record(Record::SetMtime { oid, mtime }))?;
        Ok(())
    }

    /// Flushes the device. Every change is already durable when its call returns, so this only
    /// matters to callers that want a barrier of their own.
    pub fn sync(&self) -> Result<(), OsdError> {
        self.check_running()?;
        self.dev.sync()?;
        Ok(())
    }

    pub fn statfs(&self) -> OsdStatfs {
        let (free, total) = {
            let alloc = lock(&self.alloc);
            (
                alloc.free_blocks().saturating_sub(RESERVED_BLOCKS),
                alloc.total_blocks(),
            )
        };
        OsdStatfs {
            total_bytes: total * BLOCK_BYTES_U64,
            free_bytes: free * BLOCK_BYTES_U64,
            objects: u64_of(read(&self.index).objects.len()),
            max_objects: self.geo.max_objects,
            block_size: BLOCK_BYTES,
        }
    }

    /// Objects with id ≥ `start`, in id order, at most `max`; the flag is true when no object
    /// follows the ones returned.
    pub fn list(&self, start: ObjId, max: u32) -> (Vec<ObjAttr>, bool) {
        let idx = read(&self.index);
        let mut it = idx.objects.range(start..);
        let max = usize::try_from(max).unwrap_or(usize::MAX);
        let attrs: Vec<ObjAttr> = it.by_ref().take(max).map(|(oid, o)| o.attr(*oid)).collect();
        let done = it.next().is_none();
        (attrs, done)
    }

    /// The byte offset in the block file of the data at `offset` of `oid`, if that block is
    /// mapped. For fault-injection tests (flipping bits under a live object); not an API.
    #[doc(hidden)]
    pub fn debug_block_offset(&self, oid: ObjId, offset: u64) -> Option<u64> {
        let (phys, _) = read(&self.index).mapping(oid, offset / BLOCK_BYTES_U64)?;
        Some(self.geo.block_offset(phys) + offset % BLOCK_BYTES_U64)
    }

    /// Which I/O engine this OST uses ("io_uring" or "sync"), for logs and benchmarks.
    pub fn engine(&self) -> &'static str {
        self.dev.engine()
    }
}

/// Logical blocks `[logical, logical + len)` placed at physical blocks `[phys, ...)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Place {
    logical: u64,
    phys: u64,
    len: u64,
    in_place: bool,
}

/// Places logical blocks `[from, to)` on the front of the `fresh` runs `(phys, len)`,
/// splitting and consuming them in order.
/// What a read started by [`Osd::start_read`] gives: the bytes [`Osd::read`] would return,
/// and, when the read began at a block boundary, the crc32c of each 4 KiB piece of them
/// (`sheen_wire::piece_crc`): the verified crcs of the blocks read, zeros' for holes, and a
/// short last piece summed anew.
#[derive(Debug)]
pub struct ReadData {
    pub data: Bytes,
    pub piece_crcs: Option<Vec<u32>>,
}

/// [`Osd::plan_read`]'s answer.
struct ReadPlan {
    b0: u64,
    runs: Vec<MappedRun>,
    buf: AlignedBuf,
    start: usize,
    stop: usize,
}

/// The blocks a read of `len` bytes at `offset` locks: at least the one `offset` is in.
fn read_blocks(offset: u64, len: u32) -> (u64, u64) {
    let b0 = offset / BLOCK_BYTES_U64;
    (
        b0,
        blocks_for(offset.saturating_add(u64::from(len))).max(b0 + 1),
    )
}

/// A read started by [`Osd::start_read`]: resolves to [`ReadData`].
pub struct PendingRead<'a>(Pending<'a>);

enum Pending<'a> {
    Ready(Option<Result<ReadData, OsdError>>),
    InFlight {
        osd: &'a Osd,
        oid: ObjId,
        b0: u64,
        runs: Vec<MappedRun>,
        /// The requested bytes within the buffer.
        start: usize,
        stop: usize,
        ticket: Ticket<'a>,
        /// Keeps the blocks read from being replaced and reused until the read is done.
        _range: RangeGuard<'a>,
    },
}

impl PendingRead<'_> {
    fn ready(result: Result<Bytes, OsdError>) -> Self {
        let data = result.map(|data| ReadData {
            data,
            piece_crcs: None,
        });
        PendingRead(Pending::Ready(Some(data)))
    }
}

impl std::fmt::Debug for PendingRead<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = match &self.0 {
            Pending::Ready(_) => "ready",
            Pending::InFlight { .. } => "in flight",
        };
        f.debug_tuple("PendingRead").field(&state).finish()
    }
}

impl Future for PendingRead<'_> {
    type Output = Result<ReadData, OsdError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let (io, mut buf) = match &mut this.0 {
            Pending::Ready(result) => {
                return Poll::Ready(result.take().expect("read polled after it completed"));
            }
            Pending::InFlight { ticket, .. } => match Pin::new(ticket).poll(cx) {
                Poll::Ready(out) => out,
                Poll::Pending => return Poll::Pending,
            },
        };
        let Pending::InFlight {
            osd,
            oid,
            b0,
            runs,
            start,
            stop,
            ..
        } = std::mem::replace(&mut this.0, Pending::Ready(None))
        else {
            unreachable!("matched as in flight above");
        };
        let result = io
            .map_err(OsdError::from)
            .and_then(|()| osd.verify(oid, b0, &runs, &mut buf))
            .map(|()| {
                let piece_crcs = (start == 0).then(|| piece_crcs(b0, &runs, &buf[..stop]));
                ReadData {
                    data: Bytes::from_owner(buf).slice(start..stop),
                    piece_crcs,
                }
            });
        Poll::Ready(result)
    }
}

/// The crc32c of each 4 KiB piece of `data`, which starts at block `b0` and whose mapped
/// blocks (`runs`, verified) hold their stored crcs; the other blocks read as zeros. A short
/// last piece is summed.
fn piece_crcs(b0: u64, runs: &[MappedRun], data: &[u8]) -> Vec<u32> {
    static ZERO_BLOCK: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    let zero = *ZERO_BLOCK.get_or_init(|| crc32c::crc32c(&[0u8; BLOCK_BYTES as usize]));
    let block = BLOCK_BYTES as usize;
    let n = data.len().div_ceil(block);
    let mut crcs = vec![zero; n];
    for run in runs {
        for (i, &crc) in run.crcs.iter().enumerate() {
            if let Some(slot) = (run.logical + u64_of(i))
                .checked_sub(b0)
                .and_then(|at| usize::try_from(at).ok())
                .and_then(|at| crcs.get_mut(at))
            {
                *slot = crc;
            }
        }
    }
    if data.len() % block != 0 {
        if let Some(last) = crcs.last_mut() {
            *last = crc32c::crc32c(&data[(n - 1) * block..]);
        }
    }
    crcs
}

fn place_fresh(
    fresh: &mut std::collections::VecDeque<(u64, u64)>,
    from: u64,
    to: u64,
    places: &mut Vec<Place>,
) {
    let mut logical = from;
    while logical < to {
        let Some((phys, len)) = fresh.pop_front() else {
            debug_assert!(false, "fewer fresh blocks than gaps");
            return;
        };
        let take = len.min(to - logical);
        places.push(Place {
            logical,
            phys,
            len: take,
            in_place: false,
        });
        if take < len {
            fresh.push_front((phys + take, len - take));
        }
        logical += take;
    }
}

/// Reads both checkpoint slots and decodes the newest one whose crcs match.
fn load_checkpoint(dev: &dyn BlockDev, geo: &Geometry) -> Result<(CkptHeader, Index), OsdError> {
    let mut headers = Vec::new();
    for slot_offset in geo.ckpt_offset {
        let mut block = AlignedBuf::zeroed(BLOCK_BYTES as usize);
        dev.read_at(&mut [ReadIo {
            offset: slot_offset,
            buf: &mut block,
        }])?;
        let Some(h) = CkptHeader::decode(&block) else {
            continue;
        };
        if geo.ckpt_slot_offset(h.generation) != slot_offset {
            tracing::warn!(
                generation = h.generation,
                slot_offset,
                "checkpoint in the wrong slot; ignored"
            );
            continue;
        }
        headers.push((h, slot_offset));
    }
    headers.sort_by_key(|(h, _)| std::cmp::Reverse(h.generation));
    for (h, slot_offset) in headers {
        let max_body = geo.ckpt_slot_bytes - CKPT_HEADER_BYTES;
        if h.body_bytes > max_body {
            tracing::warn!(
                generation = h.generation,
                "checkpoint body longer than its slot; ignored"
            );
            continue;
        }
        let aligned = align_up(h.body_bytes, BLOCK_BYTES_U64).unwrap_or(max_body);
        let mut body = AlignedBuf::zeroed(usize_of(aligned));
        let body_offset = slot_offset + CKPT_HEADER_BYTES;
        dev.read_at(&mut [ReadIo {
            offset: body_offset,
            buf: &mut body,
        }])?;
        let body = &body[..usize_of(h.body_bytes)];
        if crc32c::crc32c(body) != h.body_crc {
            tracing::warn!(
                generation = h.generation,
                "checkpoint body fails its crc (torn write); using the older checkpoint"
            );
            continue;
        }
        let index = checkpoint::decode_body(body, geo, body_offset)?;
        return Ok((h, index));
    }
    Err(OsdError::Corrupt(
        "no valid checkpoint in either slot".into(),
    ))
}

/// Zeroes the blocks of `buf` (logical blocks from `b0` on) that `runs` do not fill when
/// fetched: holes, and preallocated blocks, which read as zeros.
fn zero_unread(buf: &mut [u8], b0: u64, runs: &[MappedRun]) {
    let block = BLOCK_BYTES as usize;
    let mut filled_to = 0usize;
    for run in runs.iter().filter(|r| !r.prealloc) {
        let start = usize_of(run.logical.saturating_sub(b0)) * block;
        let stop = start + run.crcs.len() * block;
        if let Some(gap) = buf.get_mut(filled_to..start.min(buf.len())) {
            gap.fill(0);
        }
        filled_to = filled_to.max(stop);
    }
    if let Some(rest) = buf.get_mut(filled_to.min(buf.len())..) {
        rest.fill(0);
    }
}
