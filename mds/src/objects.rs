//! OST object allocation for new files [osp/lod]: the MDS keeps, per OST, a pool of objects
//! precreated on the OSS in batches, picks the OSTs of a new file (round robin, or from the
//! requested starting index) and takes one object from each pool. Destroys objects of
//! removed files in the background, in batches per OST (OST_DESTROY_BATCH), and then forgets
//! the namespace's record of each dropped layout whose objects are all gone
//! ([`Namespace::forget_destroy`]): what the OSTs did not destroy (they did not answer, or
//! the MDS stopped first) is sent again, or destroyed at the next start.

use std::collections::btree_map::Entry;
use std::collections::hash_map::Entry as HashEntry;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sheen_layout::resolve_template;
use sheen_namespace::Namespace;
use sheen_rpc::{Import, ImportConfig, ServiceError};
use sheen_wire::limits::DESTROY_BATCH_MAX;
use sheen_wire::msg::{
    ConfigReadReq, FsConfig, Layout, OstCreateReply, OstCreateReq, OstDestroyBatchReply,
    OstDestroyBatchReq, OstListReply, OstListReq, OstObject, STRIPE_COUNT_ALL, STRIPE_DEFAULT,
    STRIPE_OFFSET_ANY,
};
use sheen_wire::{frame::NO_TARGET, Errno, Fid, Nid, ObjId, Opcode, TargetKind};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

/// How old a configuration may be when a file asks for a stripe on every OST.
const CONFIG_FRESH_FOR: Duration = Duration::from_secs(1);

/// Objects listed per OST_GET_INFO during the orphan cleanup, and how many pages at most.
const ORPHAN_LIST_PAGE: u32 = 4096;
const ORPHAN_LIST_PAGES_MAX: usize = 1024;

/// How long the first object queued for destruction on an OST waits for others, so that
/// they go in one request and one commit on the OST. Nobody waits for a destroy.
const DESTROY_GATHER: Duration = Duration::from_millis(20);
/// How long objects whose destroy failed (their OST did not answer) wait before they are
/// sent again; the wait doubles with each failure of the same OST in a row, up to
/// [`DESTROY_RETRY_MAX`], and starts over once a destroy on it succeeds. Also how often the
/// retry task looks for OSTs whose wait is over.
const DESTROY_RETRY_FIRST: Duration = Duration::from_secs(10);
/// The longest wait before a failed destroy is sent again.
const DESTROY_RETRY_MAX: Duration = Duration::from_secs(640);
/// Most objects kept in memory to send again; past it, the rest wait for the next start
/// (the namespace keeps their records either way).
const DESTROY_FAILED_MAX: usize = 1 << 20;

/// Objects precreated per OST per batch.
pub const PRECREATE_BATCH: u32 = 1024;

/// A pool of precreated object ids on one OST: `[next, end)`.
#[derive(Default)]
struct Pool {
    next: ObjId,
    end: ObjId,
    /// The first object this MDS run precreated on the OST (0: none yet). Objects below it
    /// and above the namespace's watermark are leftovers of a previous run.
    first_own: ObjId,
}

/// One OST as this MDS reaches it: an import to the NIDs the MGS lists for it.
struct Ost {
    import: Import,
    /// Handed on to the `Ost` that replaces this one when the target registers other NIDs:
    /// it is the same target, with the same objects.
    pool: Arc<tokio::sync::Mutex<Pool>>,
    /// Cancelled when the target is replaced: a request waiting on this import (retrying a
    /// NID nothing listens on any more) gives up and goes to the new one.
    retired: CancellationToken,
}

impl Ost {
    /// Runs `work` on this OST unless it is replaced first (`None`).
    async fn unless_retired<T>(&self, work: impl std::future::Future<Output = T>) -> Option<T> {
        tokio::select! {
            biased;
            _ = self.retired.cancelled() => None,
            out = work => Some(out),
        }
    }
}

#[derive(Default)]
struct State {
    config: Option<FsConfig>,
    osts: BTreeMap<u32, Arc<Ost>>,
    /// Imports by the set of their NIDs ([`nid_set`]).
    imports: HashMap<Vec<String>, Import>,
}

/// The configuration and the OSTs it names, by index.
type Snapshot = (FsConfig, Vec<(u32, Arc<Ost>)>);

/// Objects waiting to be destroyed, by OST index.
type Destroys = Mutex<BTreeMap<u32, Vec<ObjId>>>;

/// A destroy record of the namespace: the file and the generation of its dropped layout.
type RecordId = (Fid, u32);

/// Which record each object being destroyed belongs to, and how many objects of each record
/// are not destroyed yet: the record is forgotten when none is left.
#[derive(Default)]
struct Records {
    owner: HashMap<(u32, ObjId), RecordId>,
    remaining: HashMap<RecordId, usize>,
}

/// When the objects of an OST whose destroys keep failing are sent again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Backoff {
    wait: Duration,
    due: Instant,
}

impl Backoff {
    /// After a failure at `now`: the first wait, or twice the last one (at most
    /// [`DESTROY_RETRY_MAX`]) if the failure came after that wait was over. Failures of
    /// batches sent before then (several batches of one queue, say) do not count again.
    fn after_failure(last: Option<Backoff>, now: Instant) -> Backoff {
        match last {
            Some(b) if now < b.due => b,
            Some(b) => {
                let wait = (b.wait * 2).min(DESTROY_RETRY_MAX);
                Backoff {
                    wait,
                    due: now + wait,
                }
            }
            None => Backoff {
                wait: DESTROY_RETRY_FIRST,
                due: now + DESTROY_RETRY_FIRST,
            },
        }
    }
}

/// What the destroy tasks share.
struct DestroyQueue {
    /// Objects to send, by OST; an OST's key exists while its task runs.
    queued: Destroys,
    /// Objects whose destroy failed, sent again once their OST's [`Backoff`] is due.
    failed: Destroys,
    /// OSTs whose last destroy failed.
    backoff: Mutex<HashMap<u32, Backoff>>,
    records: Mutex<Records>,
    /// Where the records of objects to destroy are kept.
    ns: Arc<Namespace>,
}

impl DestroyQueue {
    /// Takes the failed objects of every OST whose wait is over at `now` (or that has no
    /// wait); `None` if a lock is poisoned.
    fn take_due(&self, now: Instant) -> Option<HashMap<u32, Vec<ObjId>>> {
        let mut failed = self.failed.lock().ok()?;
        let backoff = self.backoff.lock().ok()?;
        let due: Vec<u32> = failed
            .keys()
            .copied()
            .filter(|ost| backoff.get(ost).is_none_or(|b| b.due <= now))
            .collect();
        Some(
            due.into_iter()
                .filter_map(|ost| failed.remove_entry(&ost))
                .collect(),
        )
    }

    /// Notes that `objects` are the objects of record `id` still to destroy.
    fn track(&self, id: RecordId, objects: &[OstObject]) {
        let Ok(mut r) = self.records.lock() else {
            return;
        };
        let mut added = 0;
        for o in objects {
            if let HashEntry::Vacant(e) = r.owner.entry((o.ost_idx, o.oid)) {
                e.insert(id);
                added += 1;
            }
        }
        // A count of 0 would never reach the decrement that forgets the record.
        if added > 0 {
            *r.remaining.entry(id).or_default() += added;
        }
    }

    /// Notes that OST `ost_idx` destroyed `oids`, and forgets the records with nothing
    /// left to destroy. Not committed: a record that comes back after a crash only makes a
    /// later start ask again for objects already gone.
    fn destroyed(&self, ost_idx: u32, oids: &[ObjId]) {
        let done: Vec<RecordId> = {
            let Ok(mut r) = self.records.lock() else {
                return;
            };
            let mut done = Vec::new();
            for &oid in oids {
                let Some(id) = r.owner.remove(&(ost_idx, oid)) else {
                    continue;
                };
                if let Some(n) = r.remaining.get_mut(&id) {
                    *n = n.saturating_sub(1);
                    if *n == 0 {
                        r.remaining.remove(&id);
                        done.push(id);
                    }
                }
            }
            done
        };
        for (fid, gen) in done {
            if let Err(e) = self.ns.forget_destroy(fid, gen) {
                warn!(%fid, layout_gen = gen, "forgetting a destroyed layout failed: {e}");
            }
        }
    }
}

pub struct ObjectAllocator {
    fsname: String,
    mgs: Import,
    state: Arc<Mutex<State>>,
    destroys: Arc<DestroyQueue>,
    /// How long a request to an OST retries an OSS that does not answer.
    ost_retry: Duration,
    round_robin: AtomicU32,
    /// When the configuration was last read from the MGS.
    refreshed_at: Mutex<Option<Instant>>,
}

/// A set of NIDs in a canonical order, to compare lists registered in different orders.
fn nid_set(nids: &[Nid]) -> Vec<String> {
    let mut set: Vec<String> = nids.iter().map(Nid::to_string).collect();
    set.sort();
    set.dedup();
    set
}

fn err(errno: Errno, message: impl Into<String>) -> ServiceError {
    ServiceError::new(errno, message)
}

impl ObjectAllocator {
    pub fn new(
        fsname: String,
        mgs: Import,
        ns: Arc<Namespace>,
        ost_retry: Duration,
    ) -> ObjectAllocator {
        ObjectAllocator {
            fsname,
            mgs,
            state: Arc::default(),
            destroys: Arc::new(DestroyQueue {
                queued: Mutex::default(),
                failed: Mutex::default(),
                backoff: Mutex::default(),
                records: Mutex::default(),
                ns,
            }),
            ost_retry,
            round_robin: AtomicU32::new(0),
            refreshed_at: Mutex::new(None),
        }
    }

    fn refreshed_within(&self, age: Duration) -> bool {
        let at = self.refreshed_at.lock().ok().and_then(|t| *t);
        at.is_some_and(|t| t.elapsed() < age)
    }

    /// Fetches the configuration from the MGS and connects to OSTs not seen before.
    pub async fn refresh_config(&self) {
        let req = ConfigReadReq {
            fsname: self.fsname.clone(),
        };
        let cfg: FsConfig = match self.mgs.call(Opcode::MgsConfigRead, NO_TARGET, &req).await {
            Ok(c) => c,
            Err(e) => {
                warn!("failed to read the configuration from the MGS: {e}");
                return;
            }
        };
        if let Ok(mut at) = self.refreshed_at.lock() {
            *at = Some(Instant::now());
        }
        let Ok(mut st) = self.state.lock() else {
            return;
        };
        if st.config.as_ref().map(|c| c.generation) == Some(cfg.generation) {
            return;
        }
        for t in cfg.targets.iter().filter(|t| t.kind == TargetKind::Ost) {
            let nids: Vec<Nid> = t.nids.iter().filter_map(|s| Nid::parse(s).ok()).collect();
            if nids.len() != t.nids.len() {
                warn!(target = %t.name, nids = ?t.nids, "ignoring bad NIDs of a target");
            }
            if nids.is_empty() {
                continue;
            }
            // The same OSS may register its NIDs in another order when it starts on a
            // failover NID: the import (and the OST's precreated pool) is kept.
            let key = nid_set(&nids);
            let import = match st.imports.get(&key) {
                Some(i) => i.clone(),
                None => {
                    let mut icfg = ImportConfig::new(
                        format!("{}-MDT0000-osp", self.fsname),
                        Opcode::OstConnect,
                    );
                    icfg.retry_for = self.ost_retry;
                    let Ok(i) = Import::with_nids(&nids, icfg) else {
                        continue;
                    };
                    st.imports.insert(key.clone(), i.clone());
                    i
                }
            };
            let same = st
                .osts
                .get(&t.index)
                .map(|o| nid_set(&o.import.nids()) == key)
                .unwrap_or(false);
            if !same {
                info!(target = %t.name, nids = ?t.nids, "using OST");
                let pool = match st.osts.get(&t.index) {
                    Some(old) => {
                        old.retired.cancel();
                        Arc::clone(&old.pool)
                    }
                    None => Arc::default(),
                };
                let retired = CancellationToken::new();
                st.osts.insert(
                    t.index,
                    Arc::new(Ost {
                        import,
                        pool,
                        retired,
                    }),
                );
            }
        }
        st.config = Some(cfg);
    }

    fn snapshot(&self) -> Option<Snapshot> {
        let st = self.state.lock().ok()?;
        let cfg = st.config.clone()?;
        let osts = st.osts.iter().map(|(i, o)| (*i, Arc::clone(o))).collect();
        Some((cfg, osts))
    }

    async fn current(&self) -> Result<Snapshot, ServiceError> {
        if let Some((cfg, osts)) = self.snapshot() {
            if !osts.is_empty() {
                return Ok((cfg, osts));
            }
        }
        self.refresh_config().await;
        match self.snapshot() {
            Some((cfg, osts)) if !osts.is_empty() => Ok((cfg, osts)),
            _ => Err(err(Errno::ENOSPC, "no OST is registered with the MGS")),
        }
    }

    /// Checks a layout template without allocating anything.
    pub async fn check_template(&self, template: &Layout) -> Result<(), ServiceError> {
        let stripe = template
            .as_plain()
            .ok_or_else(|| err(Errno::EOPNOTSUPP, "composite layouts are not supported yet"))?;
        let (cfg, osts) = self.current().await?;
        resolve_template(
            Some(stripe),
            cfg.default_stripe_count,
            cfg.default_stripe_size,
            osts.len() as u32,
        )
        .map_err(|e| err(Errno::EINVAL, e.to_string()))?;
        if stripe.stripe_offset != STRIPE_OFFSET_ANY
            && !osts.iter().any(|(i, _)| *i == stripe.stripe_offset)
        {
            return Err(err(
                Errno::EINVAL,
                format!("no OST with index {}", stripe.stripe_offset),
            ));
        }
        Ok(())
    }

    /// Turns a template (or the filesystem default) into a file layout with objects.
    pub async fn instantiate(&self, template: Option<&Layout>) -> Result<Layout, ServiceError> {
        let stripe_template = match template {
            Some(t) => Some(t.as_plain().ok_or_else(|| {
                err(Errno::EOPNOTSUPP, "composite layouts are not supported yet")
            })?),
            None => None,
        };
        let (mut cfg, mut osts) = self.current().await?;
        // A request for more stripes than the OSTs known (or for all of them) may come just
        // after new OSTs registered: read the configuration again before settling for fewer.
        let wanted = match stripe_template.map(|s| s.stripe_count) {
            None | Some(STRIPE_DEFAULT) => cfg.default_stripe_count,
            Some(count) => count,
        };
        let fresh = self.refreshed_within(CONFIG_FRESH_FOR);
        let offset = stripe_template.map_or(STRIPE_OFFSET_ANY, |s| s.stripe_offset);
        let unknown_offset = offset != STRIPE_OFFSET_ANY && !osts.iter().any(|(i, _)| *i == offset);
        if (wanted == STRIPE_COUNT_ALL && !fresh)
            || (wanted != STRIPE_COUNT_ALL && wanted as usize > osts.len())
            || unknown_offset
        {
            self.refresh_config().await;
            (cfg, osts) = self.current().await?;
        }
        let n = osts.len() as u32;
        let mut stripe = resolve_template(
            stripe_template,
            cfg.default_stripe_count,
            cfg.default_stripe_size,
            n,
        )
        .map_err(|e| err(Errno::EINVAL, e.to_string()))?;
        let start = if stripe.stripe_offset == STRIPE_OFFSET_ANY {
            self.round_robin.fetch_add(1, Ordering::Relaxed) % n
        } else {
            osts.iter()
                .position(|(i, _)| *i == stripe.stripe_offset)
                .ok_or_else(|| {
                    err(
                        Errno::EINVAL,
                        format!("no OST with index {}", stripe.stripe_offset),
                    )
                })? as u32
        };
        let mut objects = Vec::with_capacity(stripe.stripe_count as usize);
        for k in 0..stripe.stripe_count {
            let (ost_idx, ost) = &osts[((start + k) % n) as usize];
            let oid = match self.take(*ost_idx, ost).await {
                Ok(oid) => oid,
                Err(e) => {
                    self.destroy_objects_later(objects);
                    return Err(e);
                }
            };
            objects.push(OstObject {
                ost_idx: *ost_idx,
                oid,
                seq: 0,
            });
        }
        stripe.stripe_offset = objects.first().map(|o| o.ost_idx).unwrap_or(0);
        stripe.objects = objects;
        Ok(Layout::plain(stripe))
    }

    /// The OST with this index as the last configuration names it.
    fn ost(&self, ost_idx: u32) -> Result<Arc<Ost>, ServiceError> {
        ost_in(&self.state, ost_idx)
            .ok_or_else(|| err(Errno::ENODEV, format!("OST{ost_idx:04x} is not configured")))
    }

    /// Takes one object from an OST's pool, precreating a batch when it is empty; follows the
    /// OST to its new NIDs when it registers other ones meanwhile.
    async fn take(&self, ost_idx: u32, ost: &Arc<Ost>) -> Result<ObjId, ServiceError> {
        let mut ost = Arc::clone(ost);
        loop {
            if let Some(taken) = self.take_from(ost_idx, &ost).await {
                return taken;
            }
            debug!(ost_idx, "the OST moved to other NIDs: precreating there");
            ost = self.ost(ost_idx)?;
        }
    }

    /// [`ObjectAllocator::take`] through one import; `None` when the OST is replaced first.
    async fn take_from(&self, ost_idx: u32, ost: &Ost) -> Option<Result<ObjId, ServiceError>> {
        let mut pool = ost.unless_retired(ost.pool.lock()).await?;
        if pool.next >= pool.end {
            let req = OstCreateReq {
                count: PRECREATE_BATCH,
            };
            let called = ost
                .unless_retired(ost.import.call(Opcode::OstCreate, ost_idx, &req))
                .await?;
            let reply: OstCreateReply = match called {
                Ok(r) => r,
                Err(e) => {
                    let message = format!("precreate on OST{ost_idx:04x}: {e}");
                    return Some(Err(err(e.errno(), message)));
                }
            };
            debug!(
                ost_idx,
                first = reply.first_oid,
                count = reply.count,
                "precreated objects"
            );
            pool.next = reply.first_oid;
            pool.end = reply.first_oid + u64::from(reply.count);
            if pool.first_own == 0 {
                pool.first_own = reply.first_oid;
            }
            if pool.next >= pool.end {
                return Some(Err(err(
                    Errno::EIO,
                    format!("OST{ost_idx:04x} precreated no objects"),
                )));
            }
        }
        let oid = pool.next;
        pool.next += 1;
        Some(Ok(oid))
    }

    /// Destroys in the background the objects of a layout no file uses (a create that
    /// failed): nothing records them.
    pub fn destroy_layout_later(&self, layout: Layout) {
        self.destroy_objects_later(objects_of(layout));
    }

    /// Destroys in the background the objects of `fid`'s dropped `layout`, which the
    /// namespace recorded with the change that dropped it, and then forgets the record.
    pub fn destroy_dropped_layout(&self, fid: Fid, layout: Layout) {
        let id = (fid, layout.layout_gen);
        let objects = objects_of(layout);
        self.destroys.track(id, &objects);
        self.destroy_objects_later(objects);
    }

    /// Destroys, on every OST, the objects a previous run of the MDS precreated and never
    /// used: empty objects above the namespace's watermark for that OST (the highest object
    /// id any committed layout used) and below what this run precreated. Holds each OST's
    /// pool while listing, so no object of this run can be taken for a leftover.
    pub async fn destroy_unused(&self, watermarks: &BTreeMap<u32, ObjId>) {
        let indices: Vec<u32> = match self.state.lock() {
            Ok(st) => st.osts.keys().copied().collect(),
            Err(_) => return,
        };
        for ost_idx in indices {
            let above = watermarks.get(&ost_idx).copied().unwrap_or(0);
            // Listed again from the start on the OST's new NIDs if it moves meanwhile.
            let victims = loop {
                let Ok(ost) = self.ost(ost_idx) else {
                    break Vec::new();
                };
                if let Some(victims) = self.unused_on(ost_idx, &ost, above).await {
                    break victims;
                }
            };
            if !victims.is_empty() {
                info!(
                    ost_idx,
                    count = victims.len(),
                    "destroying objects precreated and never used"
                );
                self.destroy_objects_later(victims);
            }
        }
    }

    /// The empty objects on one OST above `above` and below this run's first precreated
    /// object; `None` when the OST is replaced before the listing ends.
    async fn unused_on(&self, ost_idx: u32, ost: &Ost, above: ObjId) -> Option<Vec<OstObject>> {
        let pool = ost.unless_retired(ost.pool.lock()).await?;
        let below = if pool.first_own == 0 {
            ObjId::MAX
        } else {
            pool.first_own
        };
        let mut victims = Vec::new();
        let mut start = above.saturating_add(1);
        for _ in 0..ORPHAN_LIST_PAGES_MAX {
            let req = OstListReq {
                start,
                max: ORPHAN_LIST_PAGE,
            };
            let called = ost
                .unless_retired(ost.import.call(Opcode::OstGetInfo, ost_idx, &req))
                .await?;
            let list: OstListReply = match called {
                Ok(l) => l,
                Err(e) => {
                    warn!(ost_idx, "cannot list objects for the orphan cleanup: {e}");
                    break;
                }
            };
            for o in &list.objects {
                if o.oid >= below {
                    break;
                }
                if o.size == 0 && o.allocated_bytes == 0 {
                    victims.push(OstObject {
                        ost_idx,
                        oid: o.oid,
                        seq: 0,
                    });
                } else {
                    warn!(
                        ost_idx,
                        oid = o.oid,
                        "keeping an unreferenced object that holds data"
                    );
                }
            }
            match list.objects.last() {
                Some(last) if !list.eof && last.oid < below => start = last.oid + 1,
                _ => break,
            }
        }
        Some(victims)
    }

    /// Destroys the objects the namespace still records as dropped (a previous run stopped
    /// before their OSTs destroyed them, or an OST did not answer). Call after recovery:
    /// the records are those of committed changes.
    pub async fn destroy_recorded(&self) {
        let ns = Arc::clone(&self.destroys.ns);
        match tokio::task::spawn_blocking(move || ns.pending_destroys()).await {
            Ok(Ok(records)) if records.is_empty() => {}
            Ok(Ok(records)) => {
                info!(
                    layouts = records.len(),
                    "destroying objects of removed files left by a previous run"
                );
                for r in records {
                    self.destroys.track((r.fid, r.layout_gen), &r.objects);
                    self.destroy_objects_later(r.objects);
                }
            }
            Ok(Err(e)) => warn!("reading the objects left to destroy failed: {e}"),
            Err(e) => warn!("reading the objects left to destroy failed: {e}"),
        }
    }

    /// Queues objects for destruction; one task per OST sends what is queued for it in
    /// batches (one OST_DESTROY_BATCH, so one commit on the OST, per batch).
    fn destroy_objects_later(&self, objects: Vec<OstObject>) {
        let Ok(mut queued) = self.destroys.queued.lock() else {
            return;
        };
        for obj in objects {
            match queued.entry(obj.ost_idx) {
                Entry::Occupied(mut e) => e.get_mut().push(obj.oid),
                Entry::Vacant(e) => {
                    e.insert(vec![obj.oid]);
                    let (state, destroys) = (Arc::clone(&self.state), Arc::clone(&self.destroys));
                    tokio::spawn(drain_destroys(state, destroys, obj.ost_idx));
                }
            }
        }
    }

    /// Sends the objects whose destroy failed again once their OST's wait is over
    /// ([`Backoff`]), until `shutdown`: an OSS that was down longer than the requests retry
    /// frees the space of the files removed meanwhile once it is back, without waiting for
    /// an MDS restart, and one that stays away is asked less and less often.
    pub fn spawn_destroy_retries(self: &Arc<Self>, shutdown: CancellationToken) {
        let me = Arc::clone(self);
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(DESTROY_RETRY_FIRST) => {}
                }
                let Some(failed) = me.destroys.take_due(Instant::now()) else {
                    return;
                };
                let objects: Vec<OstObject> = failed
                    .into_iter()
                    .flat_map(|(ost_idx, oids)| {
                        oids.into_iter().map(move |oid| OstObject {
                            ost_idx,
                            oid,
                            seq: 0,
                        })
                    })
                    .collect();
                if !objects.is_empty() {
                    info!(count = objects.len(), "destroying objects again");
                    me.destroy_objects_later(objects);
                }
            }
        });
    }
}

/// Every object of `layout`.
fn objects_of(layout: Layout) -> Vec<OstObject> {
    layout
        .components
        .into_iter()
        .flat_map(|c| c.stripe.objects)
        .collect()
}

/// The OST with this index as the last configuration names it.
fn ost_in(state: &Mutex<State>, ost_idx: u32) -> Option<Arc<Ost>> {
    state.lock().ok()?.osts.get(&ost_idx).cloned()
}

/// Sends the objects queued for one OST in batches until none is left. The queue's key for
/// the OST exists while this runs; it is removed (by this task) only when found empty.
async fn drain_destroys(state: Arc<Mutex<State>>, destroys: Arc<DestroyQueue>, ost_idx: u32) {
    loop {
        let few = destroys
            .queued
            .lock()
            .map(|q| q.get(&ost_idx).map_or(0, Vec::len) < DESTROY_BATCH_MAX)
            .unwrap_or(false);
        if few {
            // Others removed meanwhile go in the same request.
            tokio::time::sleep(DESTROY_GATHER).await;
        }
        let oids: Vec<ObjId> = {
            let Ok(mut queued) = destroys.queued.lock() else {
                return;
            };
            let Some(list) = queued.get_mut(&ost_idx) else {
                return;
            };
            if list.is_empty() {
                queued.remove(&ost_idx);
                return;
            }
            let n = list.len().min(DESTROY_BATCH_MAX);
            list.drain(..n).collect()
        };
        if destroy_batch(&state, ost_idx, &oids).await {
            destroys.destroyed(ost_idx, &oids);
            if let Ok(mut backoff) = destroys.backoff.lock() {
                backoff.remove(&ost_idx);
            }
        } else if let Ok(mut failed) = destroys.failed.lock() {
            if let Ok(mut backoff) = destroys.backoff.lock() {
                let last = backoff.get(&ost_idx).copied();
                let next = Backoff::after_failure(last, Instant::now());
                if last != Some(next) {
                    info!(
                        ost_idx,
                        wait_secs = next.wait.as_secs(),
                        "objects whose destroy failed are sent again after a wait"
                    );
                }
                backoff.insert(ost_idx, next);
            }
            let kept: usize = failed.values().map(Vec::len).sum();
            if kept + oids.len() <= DESTROY_FAILED_MAX {
                failed.entry(ost_idx).or_default().extend(oids);
            } else {
                warn!(
                    ost_idx,
                    count = oids.len(),
                    "too many objects to destroy again: left for the next start"
                );
            }
        }
    }
}

/// Destroys objects of one OST in one request, following the OST to new NIDs; whether the
/// OST destroyed them (or no longer had them). A failure is logged; the caller sends the
/// objects again later, and the namespace's records keep them for the next start.
async fn destroy_batch(state: &Mutex<State>, ost_idx: u32, oids: &[ObjId]) -> bool {
    let count = oids.len();
    let req = OstDestroyBatchReq {
        oids: oids.to_vec(),
    };
    loop {
        let Some(ost) = ost_in(state, ost_idx) else {
            warn!(ost_idx, count, "cannot destroy objects on an unknown OST");
            return false;
        };
        let call =
            ost.import
                .call::<_, OstDestroyBatchReply>(Opcode::OstDestroyBatch, ost_idx, &req);
        match ost.unless_retired(call).await {
            None => continue,
            Some(Ok(r)) => {
                debug!(ost_idx, count, destroyed = r.destroyed, "destroyed objects");
                return true;
            }
            Some(Err(e)) => {
                let first = req.oids.first().copied().unwrap_or(0);
                warn!(
                    ost_idx,
                    count, first, "failed to destroy objects (to be sent again): {e}"
                );
                return false;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sheen_namespace::CreateArgs;
    use sheen_wire::msg::{pattern, StripeLayout};

    fn layout(objects: &[(u32, ObjId)]) -> Layout {
        Layout::plain(StripeLayout {
            pattern: pattern::RAID0,
            stripe_size: 1 << 20,
            stripe_count: u32::try_from(objects.len()).unwrap(),
            stripe_offset: 0,
            pool: String::new(),
            objects: objects
                .iter()
                .map(|&(ost_idx, oid)| OstObject {
                    ost_idx,
                    oid,
                    seq: 0,
                })
                .collect(),
        })
    }

    #[test]
    fn failed_destroys_wait_longer_after_each_failure_until_one_succeeds() {
        let t0 = Instant::now();
        let first = Backoff::after_failure(None, t0);
        assert_eq!(first.wait, DESTROY_RETRY_FIRST);
        // Another batch failing before the wait is over does not lengthen it.
        assert_eq!(
            Backoff::after_failure(Some(first), t0 + Duration::from_secs(1)),
            first
        );
        let mut b = first;
        let mut waits = Vec::new();
        for _ in 0..9 {
            b = Backoff::after_failure(Some(b), b.due);
            waits.push(b.wait.as_secs());
        }
        assert_eq!(waits, [20, 40, 80, 160, 320, 640, 640, 640, 640]);

        let dir = tempfile::tempdir().unwrap();
        let ns = Arc::new(Namespace::open(dir.path()).unwrap());
        let q = DestroyQueue {
            queued: Mutex::default(),
            failed: Mutex::default(),
            backoff: Mutex::default(),
            records: Mutex::default(),
            ns,
        };
        q.failed.lock().unwrap().insert(0, vec![1, 2]);
        q.failed.lock().unwrap().insert(1, vec![3]);
        q.backoff.lock().unwrap().insert(1, first);
        // OST 0 has no wait; OST 1's is not over yet, then it is.
        let now = q.take_due(t0).unwrap();
        assert_eq!(now, HashMap::from([(0, vec![1, 2])]));
        assert_eq!(q.take_due(t0).unwrap(), HashMap::new());
        let later = q.take_due(first.due).unwrap();
        assert_eq!(later, HashMap::from([(1, vec![3])]));
        assert!(q.failed.lock().unwrap().is_empty());
    }

    #[test]
    fn a_record_is_forgotten_once_every_object_of_it_is_destroyed() {
        let dir = tempfile::tempdir().unwrap();
        let ns = Arc::new(Namespace::open(dir.path()).unwrap());
        let mut fids = Vec::new();
        for (name, objects) in [("a", &[(0, 5), (1, 5)][..]), ("b", &[(0, 6)][..])] {
            let attr = ns
                .create(CreateArgs {
                    parent: Fid::ROOT,
                    name: name.as_bytes().to_vec(),
                    mode: 0o100_644,
                    rdev: 0,
                    uid: 0,
                    gid: 0,
                    umask: 0,
                    symlink: None,
                    layout: Some(layout(objects)),
                })
                .unwrap();
            ns.unlink(Fid::ROOT, name.as_bytes()).unwrap();
            fids.push(attr.fid);
        }
        let q = DestroyQueue {
            queued: Mutex::default(),
            failed: Mutex::default(),
            backoff: Mutex::default(),
            records: Mutex::default(),
            ns: Arc::clone(&ns),
        };
        let pending = || {
            let mut v: Vec<Fid> = ns
                .pending_destroys()
                .unwrap()
                .iter()
                .map(|r| r.fid)
                .collect();
            v.sort();
            v
        };
        for r in ns.pending_destroys().unwrap() {
            q.track((r.fid, r.layout_gen), &r.objects);
            // Tracked twice (a start-up listing and a removal racing): counted once.
            q.track((r.fid, r.layout_gen), &r.objects);
        }
        // OST 0 destroyed its objects: `b` is gone, `a` still has one on OST 1. Objects no
        // record owns (a failed create's) change nothing.
        q.destroyed(0, &[5, 6, 99]);
        assert_eq!(pending(), vec![fids[0]]);
        q.destroyed(1, &[5]);
        assert!(pending().is_empty());
        assert!(q.records.lock().unwrap().owner.is_empty());
        assert!(q.records.lock().unwrap().remaining.is_empty());
    }
}
