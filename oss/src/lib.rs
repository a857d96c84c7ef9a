//! The object storage server [ofd]: serves one or more OSTs, each a [`sheen_osd::Osd`] in a
//! block file, over RPC. Registers every OST with the MGS at start.
//!
//! Each OST has its own extent-lock service (`sheen-lock-server`): clients lock byte ranges
//! of objects to cache them, and a punch calls back the clients caching what goes away.
//!
//! Architecture invariant: the OSS knows objects and byte ranges, never names or files.
//! OSD calls block (io_uring completion waits, fsync), so they run on the blocking pool; reads
//! the OSD can start without blocking are awaited on the runtime instead.

use std::collections::BTreeMap;
use std::os::fd::{AsRawFd, RawFd};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use sheen_lock_server::{LockServer, ServerLock};
use sheen_osd::{Osd, OsdError, OsdLabel};
use sheen_rpc::{
    serve_with_exports, ExportId, Exports, Import, ImportConfig, Request, Response, Service,
    ServiceError,
};
use sheen_wire::limits::{DESTROY_BATCH_MAX, MAX_BULK_BYTES, PRECREATE_MAX};
use sheen_wire::msg::{
    falloc, CancelReq, Empty, EnqueueReply, EnqueueReq, ObjReq, OstCreateReply, OstCreateReq,
    OstDestroyBatchReply, OstDestroyBatchReq, OstFallocateReq, OstListReply, OstListReq,
    OstPunchReq, OstReadReq, OstSetattrReq, OstSyncReq, OstWriteReply, OstWriteReq, StatfsReply,
    TargetRegReply, TargetRegReq,
};
use sheen_wire::{
    frame::NO_TARGET, Errno, LockDesc, LockExtent, LockMode, LockPolicy, Lvb, Nid, ObjId, Opcode,
    ResourceId, TargetKind, LOCK_EXTENT_EOF,
};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, Instrument};

/// How the OSS is started.
#[derive(Clone, Debug)]
pub struct OssConfig {
    pub fsname: String,
    pub mgs: Nid,
    pub listen: Nid,
    /// Failover NIDs: where else these OSTs may be served from (`--failnode`).
    pub failnodes: Vec<Nid>,
    /// (OST index, block file) pairs.
    pub osts: Vec<(u32, PathBuf)>,
    /// Size of block files formatted at start when missing.
    pub ost_size_bytes: u64,
    /// How long a client has to cancel a lock after a blocking callback before it is
    /// evicted (`--callback-timeout`).
    pub callback_timeout: std::time::Duration,
    /// Reads of at most this many bytes may run on the worker that received them, one at a
    /// time (`--inline-read-max`; 0: every read goes to the blocking pool). See
    /// [`Oss::read`].
    pub inline_read_max: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum OssError {
    #[error("OST {index} ({path}): {source}")]
    Osd {
        index: u32,
        path: PathBuf,
        source: OsdError,
    },
    #[error("block file {path} belongs to {found_fs}-OST{found_idx:04x}, not index {index}")]
    WrongLabel {
        path: PathBuf,
        index: u32,
        found_fs: String,
        found_idx: u32,
    },
    #[error("OST index {0} given twice")]
    DuplicateIndex(u32),
    #[error("no OST given")]
    NoOst,
    #[error("registration with the MGS failed: {0}")]
    Register(#[from] sheen_rpc::RpcError),
    #[error("transport: {0}")]
    Transport(#[from] sheen_transport::TransportError),
    #[error("blocking task failed: {0}")]
    Join(#[from] tokio::task::JoinError),
}

struct Oss {
    osts: BTreeMap<u32, Arc<Osd>>,
    /// The extent-lock service of each OST.
    locks: BTreeMap<u32, Arc<LockServer>>,
    instance: u64,
    inline_read_max: u32,
    /// A read is running on a runtime worker ([`Oss::read`]).
    inline_read_busy: AtomicBool,
}

fn osd_err(e: OsdError) -> ServiceError {
    if matches!(
        e,
        OsdError::Checksum { .. } | OsdError::Corrupt(_) | OsdError::Io(_)
    ) {
        error!("OSD failure: {e}");
    }
    ServiceError::new(e.errno(), e.to_string())
}

/// Runs a blocking OSD call on the blocking pool.
async fn blocking<T, F>(f: F) -> Result<T, ServiceError>
where
    F: FnOnce() -> Result<T, OsdError> + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ServiceError::new(Errno::EIO, format!("OSD task failed: {e}")))?
        .map_err(osd_err)
}

/// Marks the inline read slot free again when the read ends, however it ends.
struct InlineSlot<'a>(&'a AtomicBool);

impl Drop for InlineSlot<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

impl Oss {
    /// Reads `len` bytes of object `oid` on OST `ost`.
    ///
    /// Where the OST's engine can, the read is submitted right here and awaited without
    /// holding a thread ([`Osd::start_read`]; [`reap_reads`] collects the completions): no
    /// thread hand-off at all, and any number in flight. Otherwise (the pread engine, a write
    /// holding the range, a full ring) a small read runs on the runtime worker that received
    /// it, when no other read is running that way: a 4 KiB read from a fast device takes
    /// tens of microseconds, less than handing it to the blocking pool and back (two thread
    /// wake-ups, which on a small VM cost more than the read). The others go to the blocking
    /// pool, so reads in parallel still reach the device in parallel, and a slow device (or
    /// a write holding the range) holds up at most one worker at a time.
    ///
    /// Reads started on the ring come with the crc32c of each 4 KiB piece of what they
    /// return (the blocks' verified crcs), from which the transport derives the bulk frames'
    /// crcs without summing the data again.
    async fn read(
        &self,
        ost: Arc<Osd>,
        oid: ObjId,
        offset: u64,
        len: u32,
    ) -> Result<(Bytes, Option<Arc<[u32]>>), ServiceError> {
        if let Some(pending) = ost.start_read(oid, offset, len).map_err(osd_err)? {
            let read = pending.await.map_err(osd_err)?;
            return Ok((read.data, read.piece_crcs.map(Into::into)));
        }
        if len <= self.inline_read_max
            && self
                .inline_read_busy
                .compare_exchange(false, true, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
        {
            let _slot = InlineSlot(&self.inline_read_busy);
            return Ok((ost.read(oid, offset, len).map_err(osd_err)?, None));
        }
        Ok((blocking(move || ost.read(oid, offset, len)).await?, None))
    }

    fn ost(&self, idx: u32) -> Result<Arc<Osd>, ServiceError> {
        self.osts.get(&idx).cloned().ok_or_else(|| {
            ServiceError::new(Errno::ENODEV, format!("OST index {idx} is not served here"))
        })
    }

    fn lock_server(&self, idx: u32) -> Result<&Arc<LockServer>, ServiceError> {
        self.locks.get(&idx).ok_or_else(|| {
            ServiceError::new(Errno::ENODEV, format!("OST index {idx} is not served here"))
        })
    }

    /// A server-side lock `desc` on OST `idx` for a change made for the client of `export`,
    /// calling back whoever caches what it covers; `None` when that client holds such a lock
    /// itself (it has called the others back already).
    async fn lock_unless_held(
        &self,
        idx: u32,
        export: Option<ExportId>,
        desc: LockDesc,
    ) -> Result<Option<ServerLock>, ServiceError> {
        let locks = self.lock_server(idx)?;
        if export.is_some_and(|e| locks.holds(e, &desc)) {
            return Ok(None);
        }
        let lock = locks
            .lock_for_server(desc)
            .await
            .map_err(|e| ServiceError::new(e.errno(), e.to_string()))?;
        Ok(Some(lock))
    }

    /// LDLM_ENQUEUE of an extent lock on one object of OST `idx`; the reply carries the
    /// object's size and times (the lock value block) as of the grant.
    async fn enqueue(
        &self,
        idx: u32,
        ost: Arc<Osd>,
        export: ExportId,
        r: EnqueueReq,
    ) -> Result<EnqueueReply, ServiceError> {
        let LockPolicy::Extent(_) = r.desc.policy else {
            return Err(ServiceError::new(
                Errno::EINVAL,
                "OST locks are extent locks",
            ));
        };
        let [oid, _, ost_idx, _] = r.desc.resource.name;
        if ost_idx != u64::from(idx) {
            return Err(ServiceError::new(
                Errno::EINVAL,
                format!("lock resource names OST {ost_idx}, sent to OST {idx}"),
            ));
        }
        let locks = self.lock_server(idx)?;
        let (handle, desc) = locks
            .enqueue(export, &r)
            .await
            .map_err(|e| ServiceError::new(e.errno(), e.to_string()))?;
        // Writes go through to the OST, so the object itself has the current size.
        let lvb = match blocking(move || ost.getattr(oid)).await {
            Ok(a) => Some(Lvb {
                size: a.size,
                mtime: a.mtime,
                atime: a.mtime,
                ctime: a.mtime,
                blocks: a.allocated_bytes / 512,
            }),
            Err(_) => None,
        };
        Ok(EnqueueReply {
            handle,
            desc,
            granted: true,
            lvb,
        })
    }
}

impl Oss {
    /// OST_FALLOCATE: allocates ahead, or punches a hole in, a range of one object, under a
    /// PW lock on the range (the requester's own, or one the server takes, which calls back
    /// the clients caching the range first). With `check_only`, only checks the space.
    async fn fallocate(
        &self,
        idx: u32,
        ost: Arc<Osd>,
        export: Option<ExportId>,
        r: OstFallocateReq,
    ) -> Result<OstWriteReply, ServiceError> {
        if !falloc::is_supported(r.mode) {
            return Err(ServiceError::new(
                Errno::EOPNOTSUPP,
                format!("fallocate mode {:#x} is not supported", r.mode),
            ));
        }
        if r.len == 0 {
            return Err(ServiceError::new(Errno::EINVAL, "fallocate of 0 bytes"));
        }
        let oid = r.oid;
        if r.check_only {
            let (offset, len) = (r.offset, r.len);
            let size = blocking(move || {
                ost.fallocate_fits(oid, offset, len)?;
                Ok(ost.getattr(oid)?.size)
            })
            .await?;
            return Ok(OstWriteReply { size });
        }
        let desc = LockDesc {
            resource: ResourceId::object(idx, oid),
            mode: LockMode::Pw,
            policy: LockPolicy::Extent(LockExtent {
                start: r.offset,
                end: r.offset.saturating_add(r.len - 1),
                gid: 0,
            }),
        };
        let _lock = self.lock_unless_held(idx, export, desc).await?;
        let size = blocking(move || {
            if r.mode & falloc::PUNCH_HOLE != 0 {
                ost.punch_hole(oid, r.offset, r.len, r.mtime)?;
                return Ok(ost.getattr(oid)?.size);
            }
            let keep_size = r.mode & falloc::KEEP_SIZE != 0;
            ost.fallocate(oid, r.offset, r.len, keep_size, r.mtime)
        })
        .await?;
        Ok(OstWriteReply { size })
    }
}

#[async_trait]
impl Service for Oss {
    fn name(&self) -> String {
        "OSS".into()
    }

    fn instance(&self) -> u64 {
        self.instance
    }

    async fn handle(&self, req: Request) -> Result<Response, ServiceError> {
        let ost = self.ost(req.target_idx())?;
        match req.opcode {
            Opcode::LdlmEnqueue => {
                let r: EnqueueReq = req.decode()?;
                let export = req
                    .export
                    .ok_or_else(|| ServiceError::new(Errno::ENOTCONN, "enqueue before connect"))?;
                let reply = self.enqueue(req.target_idx(), ost, export, r).await?;
                Ok(Response::new(&reply))
            }
            Opcode::LdlmCancel => {
                let r: CancelReq = req.decode()?;
                if let Some(export) = req.export {
                    self.lock_server(req.target_idx())?
                        .cancel(export, &r.handles);
                }
                Ok(Response::empty())
            }
            Opcode::OstRead => {
                let r: OstReadReq = req.decode()?;
                if u64::from(r.len) > MAX_BULK_BYTES {
                    return Err(ServiceError::new(
                        Errno::EINVAL,
                        "read larger than the bulk limit",
                    ));
                }
                let (data, crcs) = self.read(ost, r.oid, r.offset, r.len).await?;
                Ok(Response::new(&Empty {}).with_bulk_and_crcs(data, crcs))
            }
            Opcode::OstWrite => {
                let r: OstWriteReq = req.decode()?;
                let data: Bytes = req.bulk;
                // The transport's crcs of the bulk's pieces are the blocks' when the write
                // covers whole blocks: the OSD stores them instead of summing the data again.
                let crcs = req.bulk_crcs;
                let size = blocking(move || {
                    ost.write_with_crcs(r.oid, r.offset, &data, crcs.as_deref(), r.mtime)
                })
                .await?;
                Ok(Response::new(&OstWriteReply { size }))
            }
            Opcode::OstCreate => {
                let r: OstCreateReq = req.decode()?;
                if r.count == 0 || r.count > PRECREATE_MAX {
                    return Err(ServiceError::new(
                        Errno::EINVAL,
                        "precreate count out of range",
                    ));
                }
                let count = r.count;
                let first_oid = blocking(move || ost.precreate(count)).await?;
                Ok(Response::new(&OstCreateReply { first_oid, count }))
            }
            Opcode::OstDestroy => {
                let r: ObjReq = req.decode()?;
                blocking(move || ost.destroy(r.oid)).await?;
                Ok(Response::empty())
            }
            Opcode::OstDestroyBatch => {
                let r: OstDestroyBatchReq = req.decode()?;
                if r.oids.len() > DESTROY_BATCH_MAX {
                    return Err(ServiceError::new(
                        Errno::EINVAL,
                        format!(
                            "{} objects to destroy in one request (at most {DESTROY_BATCH_MAX})",
                            r.oids.len()
                        ),
                    ));
                }
                let destroyed = blocking(move || ost.destroy_batch(&r.oids)).await?;
                Ok(Response::new(&OstDestroyBatchReply { destroyed }))
            }
            Opcode::OstPunch => {
                let r: OstPunchReq = req.decode()?;
                // Clients caching the part that goes away are called back first.
                let desc = LockDesc {
                    resource: ResourceId::object(req.target_idx(), r.oid),
                    mode: LockMode::Pw,
                    policy: LockPolicy::Extent(LockExtent {
                        start: r.size,
                        end: LOCK_EXTENT_EOF,
                        gid: 0,
                    }),
                };
                let _lock = self
                    .lock_unless_held(req.target_idx(), req.export, desc)
                    .await?;
                blocking(move || ost.punch(r.oid, r.size)).await?;
                Ok(Response::empty())
            }
            Opcode::OstFallocate => {
                let r: OstFallocateReq = req.decode()?;
                let span = tracing::debug_span!(
                    "ost_fallocate",
                    oid = r.oid,
                    offset = r.offset,
                    len = r.len,
                    mode = r.mode,
                    check_only = r.check_only,
                );
                let reply = self
                    .fallocate(req.target_idx(), ost, req.export, r)
                    .instrument(span)
                    .await?;
                Ok(Response::new(&reply))
            }
            Opcode::OstGetattr => {
                let r: ObjReq = req.decode()?;
                let attr = blocking(move || ost.getattr(r.oid)).await?;
                Ok(Response::new(&attr))
            }
            Opcode::OstSetattr => {
                let r: OstSetattrReq = req.decode()?;
                if let Some(mtime) = r.mtime {
                    blocking(move || ost.set_mtime(r.oid, mtime)).await?;
                }
                Ok(Response::empty())
            }
            Opcode::OstSync => {
                let _r: OstSyncReq = req.decode()?;
                blocking(move || ost.sync()).await?;
                Ok(Response::empty())
            }
            Opcode::OstStatfs => {
                let s = ost.statfs();
                let bsize = 4096u64;
                Ok(Response::new(&StatfsReply {
                    bsize: 4096,
                    blocks: s.total_bytes / bsize,
                    bfree: s.free_bytes / bsize,
                    bavail: s.free_bytes / bsize,
                    files: s.max_objects,
                    ffree: s.max_objects.saturating_sub(s.objects),
                    namelen: 255,
                }))
            }
            Opcode::OstGetInfo => {
                let r: OstListReq = req.decode()?;
                let max = r.max.min(4096);
                let (objects, eof) = ost.list(r.start, max);
                Ok(Response::new(&OstListReply { objects, eof }))
            }
            other => Err(ServiceError::new(
                Errno::EOPNOTSUPP,
                format!("{} is not an OST operation", other.name()),
            )),
        }
    }
}

/// An OST's read eventfd, for the runtime's reactor; the OSD owns the descriptor, so holding
/// the OSD keeps it open.
struct ReadEvents {
    osd: Arc<Osd>,
    fd: RawFd,
}

impl AsRawFd for ReadEvents {
    fn as_raw_fd(&self) -> RawFd {
        self.fd
    }
}

/// Collects the completions of an OST's reads started by [`Osd::start_read`] whenever its
/// eventfd becomes readable, until `shutdown`. Without an eventfd (no read ring) it returns
/// at once: no read starts that way then.
async fn reap_reads(index: u32, osd: Arc<Osd>, shutdown: CancellationToken) {
    let Some(fd) = osd.read_event_fd() else {
        return;
    };
    // SAFETY: the descriptor belongs to the OSD, which `ReadEvents` holds, and it stays open
    // and the same for the OSD's whole life.
    let registered =
        unsafe { AsyncFd::register_with_interest(ReadEvents { osd, fd }, Interest::READABLE) };
    let events = match registered {
        Ok(events) => events,
        Err(e) => {
            // Reads started on this OST would never complete; this cannot be served.
            error!(
                index,
                "cannot watch the OST's read completions: {e}; stopping the OSS"
            );
            shutdown.cancel();
            return;
        }
    };
    loop {
        let mut ready = tokio::select! {
            _ = shutdown.cancelled() => return,
            ready = events.readable() => match ready {
                Ok(ready) => ready,
                Err(e) => {
                    error!(index, "watching the OST's read completions failed: {e}");
                    shutdown.cancel();
                    return;
                }
            },
        };
        if !events.get_ref().osd.reap_reads() {
            ready.clear_ready();
        }
    }
}

/// Opens (formatting when missing) every OST block file.
fn open_osts(cfg: &OssConfig) -> Result<BTreeMap<u32, Arc<Osd>>, OssError> {
    let mut osts = BTreeMap::new();
    for (index, path) in &cfg.osts {
        let (index, path) = (*index, path.clone());
        if osts.contains_key(&index) {
            return Err(OssError::DuplicateIndex(index));
        }
        let wrap = |source| OssError::Osd {
            index,
            path: path.clone(),
            source,
        };
        if !path.exists() {
            let label = OsdLabel {
                fsname: cfg.fsname.clone(),
                ost_index: index,
            };
            Osd::format(&path, cfg.ost_size_bytes, &label).map_err(wrap)?;
            info!(index, path = %path.display(), size = cfg.ost_size_bytes, "formatted OST");
        }
        let osd = Osd::open(&path).map_err(wrap)?;
        let label = osd.label();
        if label.ost_index != index || label.fsname != cfg.fsname {
            return Err(OssError::WrongLabel {
                path,
                index,
                found_fs: label.fsname.clone(),
                found_idx: label.ost_index,
            });
        }
        osts.insert(index, Arc::new(osd));
    }
    if osts.is_empty() {
        return Err(OssError::NoOst);
    }
    Ok(osts)
}

/// Registers every OST with the MGS (retrying while the MGS is not up yet).
async fn register(
    cfg: &OssConfig,
    nid: Nid,
    osts: &BTreeMap<u32, Arc<Osd>>,
) -> Result<(), OssError> {
    let mut icfg = ImportConfig::new(format!("OSS@{nid}"), Opcode::MgsConnect);
    icfg.retry_for = Duration::from_secs(60);
    let mgs = Import::new(sheen_transport::for_nid(&cfg.mgs)?, cfg.mgs, icfg);
    for index in osts.keys() {
        let reg = TargetRegReq {
            fsname: cfg.fsname.clone(),
            kind: TargetKind::Ost,
            index: *index,
            nids: sheen_wire::nid::registration_nids(nid, &cfg.failnodes),
        };
        let reply: TargetRegReply = mgs.call(Opcode::MgsTargetReg, NO_TARGET, &reg).await?;
        info!(target = %reply.name, %nid, "registered with the MGS");
    }
    mgs.disconnect().await;
    Ok(())
}

/// Opens the OSTs, registers them, listens and serves until `shutdown`.
pub async fn run(cfg: OssConfig, shutdown: CancellationToken) -> Result<(), OssError> {
    let osts = {
        let cfg = cfg.clone();
        tokio::task::spawn_blocking(move || open_osts(&cfg)).await??
    };
    let transport = sheen_transport::for_nid(&cfg.listen)?;
    // With a fixed port, register before listening so that "accepts connections" means
    // "ready and known to the MGS"; with port 0 the port is known only after binding.
    let listener = if cfg.listen.port != 0 {
        register(&cfg, cfg.listen, &osts).await?;
        transport.listen(&cfg.listen).await?
    } else {
        let l = transport.listen(&cfg.listen).await?;
        register(&cfg, l.local_nid(), &osts).await?;
        l
    };
    for (index, osd) in &osts {
        tokio::spawn(reap_reads(*index, Arc::clone(osd), shutdown.clone()));
    }
    info!(nid = %listener.local_nid(), osts = osts.len(), "OSS ready");
    let instance = sheen_daemon::instance_id();
    let exports = Exports::new();
    let mut locks = BTreeMap::new();
    for index in osts.keys() {
        let config = sheen_dlm::Config {
            callback_timeout: cfg.callback_timeout,
            // Handles from before a restart must not name a lock of this run.
            first_cookie: instance << 16,
            ..sheen_dlm::Config::default()
        };
        let name = format!("{}-OST{index:04x}", cfg.fsname);
        let server = LockServer::new(name, Arc::clone(&exports), config);
        tokio::spawn(Arc::clone(&server).run_reaper(shutdown.clone()));
        locks.insert(*index, server);
    }
    let all: Vec<Arc<LockServer>> = locks.values().cloned().collect();
    exports.set_gone_hook(Arc::new(move |id| {
        for l in &all {
            l.export_gone(id);
        }
    }));
    let service = Arc::new(Oss {
        osts: osts.clone(),
        locks,
        instance,
        inline_read_max: cfg.inline_read_max,
        inline_read_busy: AtomicBool::new(false),
    });
    serve_with_exports(listener, service, exports, shutdown).await;
    for (index, osd) in osts {
        if let Err(e) = tokio::task::spawn_blocking(move || osd.sync()).await? {
            error!(index, "failed to sync OST at shutdown: {e}");
        }
    }
    Ok(())
}
