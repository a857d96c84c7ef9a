//! The server's lock table [ldlm_resource, ldlm_lock]: one per target (the MDT, each OST).
//! Resources with a granted list and a FIFO waiting queue; grant, cancel, convert, blocking
//! callbacks owed, callback deadlines and eviction.
//!
//! Every operation returns the work it creates: [`Grant`]s (a completion callback to send to
//! a waiter) and [`Blocking`]s (a blocking callback to send to a holder, at most once per
//! lock and mode). The caller sends them, calls [`LockTable::callback_sent`] for each
//! blocking callback, and polls [`LockTable::expired`] with the current time to find the
//! clients to [`LockTable::evict`].

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::time::{Duration, Instant};

use sheen_wire::{LockDesc, LockHandle, LockMode, LockPolicy, LockType, Lvb, ResourceId};

use crate::error::DlmError;
use crate::{limits, mode, policy};

/// Who holds a lock: the server's name for one client connection (its export). The RPC
/// glue maps connections to ids.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClientId(pub u64);

/// The numbers a lock table runs with; [`Config::default`] takes them from [`limits`].
#[derive(Clone, Debug)]
pub struct Config {
    pub callback_timeout: Duration,
    pub max_locks_per_client: usize,
    pub max_waiters_per_resource: usize,
    /// Grow extent locks to the widest conflict-free range ([`policy::grow_extent`]).
    pub grow_extents: bool,
    /// The first handle cookie. A server should start from a value that differs on every
    /// start (its instance number shifted up), so a handle from before a restart is stale.
    pub first_cookie: u64,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            callback_timeout: limits::CALLBACK_TIMEOUT,
            max_locks_per_client: limits::MAX_LOCKS_PER_CLIENT,
            max_waiters_per_resource: limits::MAX_WAITERS_PER_RESOURCE,
            grow_extents: true,
            first_cookie: 1,
        }
    }
}

/// A lock granted: send `client` the grant (the enqueue reply, or a completion callback if
/// the lock had waited). `desc` is the lock as granted (an extent may have grown).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    pub client: ClientId,
    pub handle: LockHandle,
    pub desc: LockDesc,
}

/// A blocking callback owed: `client` holds `handle`, which conflicts with the waiting lock
/// `conflict`; it must cancel or downgrade it within the callback timeout.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Blocking {
    pub client: ClientId,
    pub handle: LockHandle,
    pub conflict: LockDesc,
}

/// The result of an enqueue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Enqueued {
    Granted(Grant),
    /// The lock waits; a [`Grant`] for it comes out of a later cancel, convert or evict.
    /// `blocking` are the callbacks to send now.
    Waiting {
        handle: LockHandle,
        blocking: Vec<Blocking>,
    },
}

/// The work a cancel, convert or evict creates.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    /// Waiters granted, in grant order.
    pub granted: Vec<Grant>,
    /// Blocking callbacks owed to holders that now stand in a waiter's way.
    pub blocking: Vec<Blocking>,
}

impl Enqueued {
    /// The new lock's handle, granted or waiting.
    pub fn handle(&self) -> LockHandle {
        match self {
            Enqueued::Granted(g) => g.handle,
            Enqueued::Waiting { handle, .. } => *handle,
        }
    }
}

impl Progress {
    fn extend(&mut self, other: Progress) {
        self.granted.extend(other.granted);
        self.blocking.extend(other.blocking);
    }
}

/// What the table knows of one lock.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LockInfo {
    pub client: ClientId,
    pub desc: LockDesc,
    pub granted: bool,
    /// When the holder must have answered its blocking callback.
    pub callback_deadline: Option<Instant>,
}

struct Lock {
    client: ClientId,
    desc: LockDesc,
    granted: bool,
    /// A blocking callback has been handed out for this lock (in its current mode).
    blocking_owed: bool,
}

struct Resource {
    lock_type: LockType,
    granted: Vec<LockHandle>,
    waiting: VecDeque<LockHandle>,
    lvb: Option<Lvb>,
}

/// The locks of one target.
pub struct LockTable {
    config: Config,
    locks: HashMap<LockHandle, Lock>,
    resources: HashMap<ResourceId, Resource>,
    by_client: BTreeMap<ClientId, BTreeSet<LockHandle>>,
    /// Deadlines of blocking callbacks sent and not yet answered.
    deadlines: BTreeMap<LockHandle, Instant>,
    next_cookie: u64,
}

impl LockTable {
    pub fn new(config: Config) -> LockTable {
        let next_cookie = config.first_cookie.max(1);
        LockTable {
            config,
            locks: HashMap::new(),
            resources: HashMap::new(),
            by_client: BTreeMap::new(),
            deadlines: BTreeMap::new(),
            next_cookie,
        }
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Asks for a lock for `client`. It is granted at once when it conflicts with no granted
    /// lock and with no waiting one (FIFO fairness: a request never overtakes a waiter it
    /// conflicts with); otherwise it waits, and the holders of the conflicting granted
    /// locks that have not been called back yet are returned.
    pub fn enqueue(&mut self, client: ClientId, desc: LockDesc) -> Result<Enqueued, DlmError> {
        self.enqueue_inner(client, desc, true)
    }

    /// Like [`LockTable::enqueue`] with Lustre's BLOCK_NOWAIT: a request that would wait is
    /// refused with [`DlmError::WouldBlock`], and nothing is queued or called back.
    pub fn enqueue_nowait(
        &mut self,
        client: ClientId,
        desc: LockDesc,
    ) -> Result<Enqueued, DlmError> {
        self.enqueue_inner(client, desc, false)
    }

    fn enqueue_inner(
        &mut self,
        client: ClientId,
        desc: LockDesc,
        may_wait: bool,
    ) -> Result<Enqueued, DlmError> {
        policy::validate(desc.mode, &desc.policy)?;
        let held = self.by_client.get(&client).map_or(0, BTreeSet::len);
        if held >= self.config.max_locks_per_client {
            return Err(DlmError::TooManyLocks(client));
        }
        let asked = desc.policy.lock_type();
        if let Some(res) = self.resources.get(&desc.resource) {
            if res.lock_type != asked {
                return Err(DlmError::TypeMismatch {
                    resource: desc.resource,
                    held: res.lock_type,
                    asked,
                });
            }
            let in_the_way = res.granted.iter().chain(&res.waiting).any(|h| {
                self.locks
                    .get(h)
                    .is_some_and(|l| policy::conflicts(&l.desc, &desc))
            });
            if in_the_way {
                if !may_wait {
                    return Err(DlmError::WouldBlock);
                }
                if res.waiting.len() >= self.config.max_waiters_per_resource {
                    return Err(DlmError::TooManyWaiters(desc.resource));
                }
                return Ok(self.insert_waiting(client, desc));
            }
        }
        Ok(Enqueued::Granted(self.insert_granted(client, desc)))
    }

    fn new_handle(&mut self) -> LockHandle {
        let handle = LockHandle {
            cookie: self.next_cookie,
        };
        self.next_cookie = self.next_cookie.wrapping_add(1).max(1);
        handle
    }

    fn insert_granted(&mut self, client: ClientId, mut desc: LockDesc) -> Grant {
        let handle = self.new_handle();
        let res = self
            .resources
            .entry(desc.resource)
            .or_insert_with(|| Resource {
                lock_type: desc.policy.lock_type(),
                granted: Vec::new(),
                waiting: VecDeque::new(),
                lvb: None,
            });
        if self.config.grow_extents && matches!(desc.policy, LockPolicy::Extent(_)) {
            let contended = res.granted.len() >= limits::EXTENT_GROW_CONTENDED_LOCKS;
            let others = res.granted.iter().chain(&res.waiting);
            let others = others.filter_map(|h| self.locks.get(h)).map(|l| &l.desc);
            desc.policy = LockPolicy::Extent(policy::grow_extent(&desc, others, contended));
        }
        res.granted.push(handle);
        self.locks.insert(
            handle,
            Lock {
                client,
                desc,
                granted: true,
                blocking_owed: false,
            },
        );
        self.by_client.entry(client).or_default().insert(handle);
        tracing::debug!(cookie = handle.cookie, client = client.0, "lock granted");
        Grant {
            client,
            handle,
            desc,
        }
    }

    fn insert_waiting(&mut self, client: ClientId, desc: LockDesc) -> Enqueued {
        let handle = self.new_handle();
        self.locks.insert(
            handle,
            Lock {
                client,
                desc,
                granted: false,
                blocking_owed: false,
            },
        );
        self.by_client.entry(client).or_default().insert(handle);
        let mut blocking = Vec::new();
        if let Some(res) = self.resources.get_mut(&desc.resource) {
            res.waiting.push_back(handle);
            blocking = owe_blocking(&mut self.locks, &res.granted, handle);
        }
        Enqueued::Waiting { handle, blocking }
    }

    /// Releases a lock, granted or waiting, and grants the waiters that can now go, in queue
    /// order.
    pub fn cancel(&mut self, handle: LockHandle) -> Result<Progress, DlmError> {
        let resource = self.remove(handle)?;
        Ok(self.reprocess(resource))
    }

    /// Changes a granted lock to a weaker mode (PW → PR, EX → anything, anything → NL), as a
    /// holder does instead of cancelling when it still wants part of the access. The lock
    /// counts as a fresh one: an unanswered callback is answered, and if it still conflicts
    /// with a waiter a new blocking callback is owed.
    pub fn convert(&mut self, handle: LockHandle, to: LockMode) -> Result<Progress, DlmError> {
        let lock = self
            .locks
            .get_mut(&handle)
            .ok_or(DlmError::UnknownLock(handle))?;
        if !lock.granted {
            return Err(DlmError::NotGranted(handle));
        }
        let from = lock.desc.mode;
        if !mode::covers(from, to) {
            return Err(DlmError::NotDowngrade { from, to });
        }
        lock.desc.mode = to;
        lock.blocking_owed = false;
        let resource = lock.desc.resource;
        self.deadlines.remove(&handle);
        Ok(self.reprocess(resource))
    }

    /// Records that the blocking callback for `handle` went out at `now`: the holder must
    /// cancel or convert within the callback timeout. A second call keeps the first deadline.
    pub fn callback_sent(&mut self, handle: LockHandle, now: Instant) -> Result<(), DlmError> {
        let lock = self
            .locks
            .get(&handle)
            .ok_or(DlmError::UnknownLock(handle))?;
        if !lock.granted {
            return Err(DlmError::NotGranted(handle));
        }
        let deadline = now + self.config.callback_timeout;
        self.deadlines.entry(handle).or_insert(deadline);
        Ok(())
    }

    /// Pushes back the callback deadline of `handle` (Lustre's lock prolonging): the holder
    /// is still flushing data under the lock, so it is alive and working. No effect on a
    /// lock without a pending callback.
    pub fn prolong(&mut self, handle: LockHandle, now: Instant) {
        let timeout = self.config.callback_timeout;
        if let Some(d) = self.deadlines.get_mut(&handle) {
            *d = (*d).max(now + timeout);
        }
    }

    /// The clients holding a lock whose blocking callback deadline has passed at `now`, in
    /// id order, each once. The caller evicts them.
    pub fn expired(&self, now: Instant) -> Vec<ClientId> {
        let late: BTreeSet<ClientId> = self
            .deadlines
            .iter()
            .filter(|(_, d)| **d <= now)
            .filter_map(|(h, _)| self.locks.get(h).map(|l| l.client))
            .collect();
        late.into_iter().collect()
    }

    /// The earliest callback deadline, so the caller knows when to poll [`Self::expired`].
    pub fn next_deadline(&self) -> Option<Instant> {
        self.deadlines.values().min().copied()
    }

    /// Drops every lock of `client` (evicted, or disconnected) and grants what can now go.
    pub fn evict(&mut self, client: ClientId) -> Progress {
        let handles = self.by_client.remove(&client).unwrap_or_default();
        if !handles.is_empty() {
            tracing::info!(client = client.0, locks = handles.len(), "client evicted");
        }
        let mut resources = BTreeSet::new();
        for handle in handles {
            if let Ok(resource) = self.remove(handle) {
                resources.insert(resource);
            }
        }
        let mut progress = Progress::default();
        for resource in resources {
            progress.extend(self.reprocess(resource));
        }
        progress
    }

    /// Removes a lock from every index; returns its resource (dropped when empty).
    fn remove(&mut self, handle: LockHandle) -> Result<ResourceId, DlmError> {
        let lock = self
            .locks
            .remove(&handle)
            .ok_or(DlmError::UnknownLock(handle))?;
        self.deadlines.remove(&handle);
        if let Some(set) = self.by_client.get_mut(&lock.client) {
            set.remove(&handle);
            if set.is_empty() {
                self.by_client.remove(&lock.client);
            }
        }
        let resource = lock.desc.resource;
        if let Some(res) = self.resources.get_mut(&resource) {
            res.granted.retain(|h| *h != handle);
            res.waiting.retain(|h| *h != handle);
            if res.granted.is_empty() && res.waiting.is_empty() {
                self.resources.remove(&resource);
            }
        }
        Ok(resource)
    }

    /// Grants the waiters of `resource` that conflict with no granted lock and no earlier
    /// waiter, in queue order, then hands out the blocking callbacks the remaining waiters
    /// are owed.
    fn reprocess(&mut self, resource: ResourceId) -> Progress {
        let mut progress = Progress::default();
        let Some(res) = self.resources.get_mut(&resource) else {
            return progress;
        };
        let queue: Vec<LockHandle> = res.waiting.drain(..).collect();
        let mut still_waiting: Vec<LockHandle> = Vec::new();
        for (idx, handle) in queue.iter().enumerate() {
            let Some(desc) = self.locks.get(handle).map(|l| l.desc) else {
                continue;
            };
            let blocked = res.granted.iter().chain(&still_waiting).any(|h| {
                self.locks
                    .get(h)
                    .is_some_and(|l| policy::conflicts(&l.desc, &desc))
            });
            if blocked {
                still_waiting.push(*handle);
                continue;
            }
            let mut granted = desc;
            if self.config.grow_extents && matches!(desc.policy, LockPolicy::Extent(_)) {
                // It waited: contended, so it grows only a little, and not into anyone's way.
                let later = &queue[idx + 1..];
                let others = res.granted.iter().chain(&still_waiting).chain(later);
                let others = others.filter_map(|h| self.locks.get(h)).map(|l| &l.desc);
                granted.policy = LockPolicy::Extent(policy::grow_extent(&desc, others, true));
            }
            if let Some(lock) = self.locks.get_mut(handle) {
                lock.granted = true;
                lock.desc = granted;
                res.granted.push(*handle);
                progress.granted.push(Grant {
                    client: lock.client,
                    handle: *handle,
                    desc: granted,
                });
            }
        }
        res.waiting = still_waiting.into();
        for waiter in res.waiting.iter() {
            progress
                .blocking
                .extend(owe_blocking(&mut self.locks, &res.granted, *waiter));
        }
        progress
    }

    /// What the table knows of `handle`.
    pub fn get(&self, handle: LockHandle) -> Option<LockInfo> {
        self.locks.get(&handle).map(|l| LockInfo {
            client: l.client,
            desc: l.desc,
            granted: l.granted,
            callback_deadline: self.deadlines.get(&handle).copied(),
        })
    }

    /// The granted locks on `resource`, in grant order.
    pub fn granted_on(&self, resource: &ResourceId) -> Vec<LockHandle> {
        self.resources
            .get(resource)
            .map(|r| r.granted.clone())
            .unwrap_or_default()
    }

    /// The locks of `client`, in handle order.
    pub fn client_locks(&self, client: ClientId) -> Vec<LockHandle> {
        self.by_client
            .get(&client)
            .map(|s| s.iter().copied().collect())
            .unwrap_or_default()
    }

    /// Number of locks, granted and waiting.
    pub fn len(&self) -> usize {
        self.locks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.locks.is_empty()
    }

    /// The lock value block of a resource (kept while the resource has locks). `None` when
    /// the resource has no locks or nobody set it yet: the OSS fills it from the object.
    pub fn lvb(&self, resource: &ResourceId) -> Option<Lvb> {
        self.resources.get(resource).and_then(|r| r.lvb)
    }

    /// Sets the lock value block of a resource that has locks; returns false (and keeps
    /// nothing) when it has none.
    pub fn set_lvb(&mut self, resource: &ResourceId, lvb: Lvb) -> bool {
        match self.resources.get_mut(resource) {
            Some(r) => {
                r.lvb = Some(lvb);
                true
            }
            None => false,
        }
    }

    /// The holders of granted write locks (EX, PW, CW, GROUP) on `resource`, whose caches
    /// may know a size beyond the object's: the ones to send a glimpse callback to.
    pub fn glimpse_holders(&self, resource: &ResourceId) -> Vec<(ClientId, LockHandle)> {
        let Some(res) = self.resources.get(resource) else {
            return Vec::new();
        };
        res.granted
            .iter()
            .filter_map(|h| self.locks.get(h).map(|l| (l, *h)))
            .filter(|(l, _)| {
                matches!(
                    l.desc.mode,
                    LockMode::Ex | LockMode::Pw | LockMode::Cw | LockMode::Group
                )
            })
            .map(|(l, h)| (l.client, h))
            .collect()
    }
}

/// Marks the granted locks that conflict with `waiter` and have no blocking callback yet,
/// and returns those callbacks.
fn owe_blocking(
    locks: &mut HashMap<LockHandle, Lock>,
    granted: &[LockHandle],
    waiter: LockHandle,
) -> Vec<Blocking> {
    let Some(want) = locks.get(&waiter).map(|l| l.desc) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for handle in granted {
        if let Some(lock) = locks.get_mut(handle) {
            if !lock.blocking_owed && policy::conflicts(&lock.desc, &want) {
                lock.blocking_owed = true;
                out.push(Blocking {
                    client: lock.client,
                    handle: *handle,
                    conflict: want,
                });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_script::{desc, handle, mode, show, show_handle};

    fn client(word: &str) -> ClientId {
        ClientId(word.trim_start_matches('c').parse().unwrap())
    }

    fn at(base: Instant, word: &str) -> Instant {
        base + Duration::from_secs(word.trim_start_matches("t=").parse().unwrap())
    }

    fn show_progress(p: &Progress) -> String {
        let mut parts: Vec<String> = p
            .granted
            .iter()
            .map(|g| {
                format!(
                    "granted {} c{} {}",
                    show_handle(g.handle),
                    g.client.0,
                    show(&g.desc)
                )
            })
            .collect();
        if !p.blocking.is_empty() {
            parts.push(show_blocking(&p.blocking));
        }
        if parts.is_empty() {
            "-".to_owned()
        } else {
            parts.join("; ")
        }
    }

    fn show_blocking(b: &[Blocking]) -> String {
        let who: Vec<String> = b
            .iter()
            .map(|b| format!("c{}:{}", b.client.0, show_handle(b.handle)))
            .collect();
        format!("blocking {}", who.join(" "))
    }

    /// Runs a script against a table and compares the output, line by line. Operations:
    /// `cN LOCK` (enqueue), `nowait cN LOCK`, `cancel hN`, `convert hN MODE`, `sent hN t=S`,
    /// `prolong hN t=S`, `expired t=S`, `evict cN`; LOCK as in [`crate::test_script`].
    fn check_with(config: Config, script: &str, expected: &str) {
        let mut table = LockTable::new(config);
        let base = Instant::now();
        let mut out = Vec::new();
        for line in script.lines().map(str::trim).filter(|l| !l.is_empty()) {
            let words: Vec<&str> = line.split_whitespace().collect();
            let shown = match words[0] {
                "cancel" => table.cancel(handle(words[1])).map(|p| show_progress(&p)),
                "convert" => table
                    .convert(handle(words[1]), mode(words[2]).0)
                    .map(|p| show_progress(&p)),
                "sent" => table
                    .callback_sent(handle(words[1]), at(base, words[2]))
                    .map(|()| "ok".to_owned()),
                "prolong" => {
                    table.prolong(handle(words[1]), at(base, words[2]));
                    Ok("ok".to_owned())
                }
                "expired" => {
                    let late = table.expired(at(base, words[1]));
                    let late: Vec<String> = late.iter().map(|c| format!("c{}", c.0)).collect();
                    Ok(format!("expired [{}]", late.join(" ")))
                }
                "evict" => Ok(show_progress(&table.evict(client(words[1])))),
                "nowait" => table
                    .enqueue_nowait(client(words[1]), desc(&words[2..]))
                    .map(|e| show_enqueued(&e)),
                _ => table
                    .enqueue(client(words[0]), desc(&words[1..]))
                    .map(|e| show_enqueued(&e)),
            };
            let shown = shown.unwrap_or_else(|e| format!("error: {e}"));
            out.push(format!("{line:<24} => {shown}"));
        }
        let expected: Vec<String> = expected
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(|l| {
                let (op, result) = l.split_once("=>").unwrap();
                format!("{:<24} => {}", op.trim(), result.trim())
            })
            .collect();
        assert_eq!(out.join("\n"), expected.join("\n"));
    }

    fn show_enqueued(e: &Enqueued) -> String {
        match e {
            Enqueued::Granted(g) => format!("{} granted {}", show_handle(g.handle), show(&g.desc)),
            Enqueued::Waiting { handle, blocking } if blocking.is_empty() => {
                format!("{} waiting", show_handle(*handle))
            }
            Enqueued::Waiting { handle, blocking } => {
                format!(
                    "{} waiting; {}",
                    show_handle(*handle),
                    show_blocking(blocking)
                )
            }
        }
    }

    fn no_growth() -> Config {
        Config {
            grow_extents: false,
            ..Config::default()
        }
    }

    /// The script's operations are the left sides of `expected`.
    fn check(expected: &str) {
        check_config(no_growth(), expected);
    }

    fn check_config(config: Config, expected: &str) {
        let script: String = expected
            .lines()
            .filter_map(|l| l.split_once("=>").map(|(op, _)| format!("{}\n", op.trim())))
            .collect();
        check_with(config, &script, expected);
    }

    #[test]
    fn waiters_are_granted_in_fifo_order_after_cancel() {
        check(
            "
            c1 PW 0-99      => h1 granted PW 0-99
            c2 PW 0-99      => h2 waiting; blocking c1:h1
            c3 PR 50-60     => h3 waiting
            c4 PR 200-300   => h4 granted PR 200-300
            cancel h1       => granted h2 c2 PW 0-99; blocking c2:h2
            cancel h2       => granted h3 c3 PR 50-60
            cancel h3       => -
            cancel h4       => -
            cancel h4       => error: no lock with handle 0x4
            ",
        );
    }

    #[test]
    fn a_request_waits_behind_a_conflicting_waiter() {
        // c3's PR is compatible with the granted PR, but c2's PW came first.
        check(
            "
            c1 PR 0-99      => h1 granted PR 0-99
            c2 PW 0-99      => h2 waiting; blocking c1:h1
            c3 PR 0-99      => h3 waiting
            c4 PR 100-199   => h4 granted PR 100-199
            cancel h3       => -
            c3 PR 0-99      => h5 waiting
            cancel h1       => granted h2 c2 PW 0-99; blocking c2:h2
            cancel h2       => granted h5 c3 PR 0-99
            ",
        );
    }

    #[test]
    fn blocking_callbacks_go_to_exactly_the_conflicting_holders_once() {
        check(
            "
            c1 PR 0-99      => h1 granted PR 0-99
            c2 PR 50-149    => h2 granted PR 50-149
            c3 PR 500-599   => h3 granted PR 500-599
            c1 PR 600-699   => h4 granted PR 600-699
            c4 PW 60-80     => h5 waiting; blocking c1:h1 c2:h2
            c5 PW 0-599     => h6 waiting; blocking c3:h3
            c6 EX 0-EOF     => h7 waiting; blocking c1:h4
            cancel h1       => -
            cancel h2       => granted h5 c4 PW 60-80; blocking c4:h5
            ",
        );
    }

    #[test]
    fn callback_cancel_then_waiter_granted() {
        check(
            "
            c1 PW 0-EOF     => h1 granted PW 0-EOF
            c2 PR 0-4095    => h2 waiting; blocking c1:h1
            sent h1 t=0     => ok
            cancel h1       => granted h2 c2 PR 0-4095
            expired t=1000  => expired []
            ",
        );
    }

    #[test]
    fn eviction_after_timeout_releases_locks_and_grants_waiters() {
        check(
            "
            c1 PW 0-EOF     => h1 granted PW 0-EOF
            c1 PR 0-9 r2    => h2 granted PR 0-9 r2
            c2 PR 0-99      => h3 waiting; blocking c1:h1
            c3 PW 0-9 r2    => h4 waiting; blocking c1:h2
            c3 PR 0-99      => h5 waiting
            sent h1 t=0     => ok
            sent h2 t=5     => ok
            sent h2 t=20    => ok
            expired t=29    => expired []
            expired t=30    => expired [c1]
            evict c1        => granted h3 c2 PR 0-99; granted h5 c3 PR 0-99; \
                               granted h4 c3 PW 0-9 r2
            expired t=100   => expired []
            cancel h1       => error: no lock with handle 0x1
            ",
        );
    }

    #[test]
    fn prolonging_pushes_the_deadline() {
        check(
            "
            c1 PW 0-EOF     => h1 granted PW 0-EOF
            c2 PW 0-EOF     => h2 waiting; blocking c1:h1
            prolong h1 t=0  => ok
            expired t=1000  => expired []
            sent h1 t=0     => ok
            prolong h1 t=25 => ok
            expired t=30    => expired []
            expired t=55    => expired [c1]
            sent h9 t=0     => error: no lock with handle 0x9
            sent h2 t=0     => error: lock 0x2 is not granted
            ",
        );
    }

    #[test]
    fn convert_downgrades_and_grants() {
        check(
            "
            c1 PW 0-99      => h1 granted PW 0-99
            c2 PR 0-99      => h2 waiting; blocking c1:h1
            c3 PW 0-99      => h3 waiting
            convert h2 NL   => error: lock 0x2 is not granted
            convert h1 EX   => error: convert from PW to EX is not a downgrade
            sent h1 t=0     => ok
            convert h1 PR   => granted h2 c2 PR 0-99; blocking c1:h1 c2:h2
            expired t=30    => expired []
            convert h1 NL   => -
            cancel h2       => granted h3 c3 PW 0-99
            ",
        );
    }

    #[test]
    fn inodebits_conflict_only_on_common_bits() {
        check(
            "
            c1 PR bits LOOKUP|UPDATE  => h1 granted PR bits 0x3
            c2 EX bits LAYOUT         => h2 granted EX bits 0x8
            c3 EX bits UPDATE         => h3 waiting; blocking c1:h1
            c4 PR bits LAYOUT         => h4 waiting; blocking c2:h2
            c5 CR bits LOOKUP|LAYOUT  => h5 waiting
            c6 PR bits PERM           => h6 granted PR bits 0x10
            c7 CR bits LOOKUP|PERM    => h7 granted CR bits 0x11
            cancel h1                 => granted h3 c3 EX bits 0x2
            cancel h2                 => granted h4 c4 PR bits 0x8; granted h5 c5 CR bits 0x9
            c1 PW bits 128            => error: invalid lock policy: unknown inode bits
            c1 PW 0-9                 => error: resource [0x1:0x0:0x0:0x0] holds Ibits locks, \
                                         asked for Extent
            ",
        );
    }

    #[test]
    fn group_locks_share_by_group_id() {
        check(
            "
            c1 GROUP:7 0-EOF => h1 granted GROUP:7 0-EOF
            c2 GROUP:7 0-EOF => h2 granted GROUP:7 0-EOF
            c3 GROUP:8 0-EOF => h3 waiting; blocking c1:h1 c2:h2
            c4 PR 0-9        => h4 waiting
            cancel h1        => -
            cancel h2        => granted h3 c3 GROUP:8 0-EOF; blocking c3:h3
            c5 GROUP:8 0-EOF => h5 waiting
            cancel h3        => granted h4 c4 PR 0-9; blocking c4:h4
            cancel h4        => granted h5 c5 GROUP:8 0-EOF
            c1 GROUP:1 plain => error: invalid lock policy: GROUP locks are extent locks
            ",
        );
    }

    #[test]
    fn plain_locks() {
        check(
            "
            c1 CR plain     => h1 granted CR plain
            c2 CR plain     => h2 granted CR plain
            c3 EX plain     => h3 waiting; blocking c1:h1 c2:h2
            evict c1        => -
            evict c2        => granted h3 c3 EX plain
            evict c2        => -
            ",
        );
    }

    #[test]
    fn nowait_and_limits() {
        check(
            "
            c1 PW 0-99        => h1 granted PW 0-99
            nowait c2 PR 5-5  => error: lock conflicts and the request asked not to wait
            nowait c2 PR 100-100 => h2 granted PR 100-100
            c1 PW 10-0        => error: invalid lock policy: extent start past its end
            ",
        );
        let tight = Config {
            grow_extents: false,
            max_locks_per_client: 2,
            max_waiters_per_resource: 1,
            first_cookie: 40,
            ..Config::default()
        };
        check_config(
            tight,
            "
            c1 PW 0-99      => h40 granted PW 0-99
            c1 PW 100-199   => h41 granted PW 100-199
            c1 PW 200-299   => error: client 1 holds too many locks
            c2 PW 0-9       => h42 waiting; blocking c1:h40
            c3 PW 0-9       => error: too many locks waiting on resource [0x1:0x0:0x0:0x0]
            c3 PW 0-9 r2    => h43 granted PW 0-9 r2
            ",
        );
    }

    #[test]
    fn extents_grow_into_free_space() {
        check_config(
            Config::default(),
            "
            c1 PR 0-99          => h1 granted PR 0-EOF
            c2 PR 100-199       => h2 granted PR 0-EOF
            c3 PW 4096-8191     => h3 waiting; blocking c1:h1 c2:h2
            c4 PR 0-99          => h4 granted PR 0-4095
            c5 PR 0-5000        => h5 waiting
            cancel h1           => -
            cancel h2           => granted h3 c3 PW 4096-8191; blocking c3:h3
            c6 PR 1000000-1000000 => h6 granted PR 8192-EOF
            cancel h3           => granted h5 c5 PR 0-33559432
            ",
        );
    }

    #[test]
    fn growth_stops_short_of_conflicting_locks() {
        check_config(
            Config::default(),
            "
            c1 PW 0-99 r2        => h1 granted PW 0-EOF r2
            c2 GROUP:3 1000-1999 => h2 granted GROUP:3 1000-1999
            c3 PR 5000-5999      => h3 granted PR 2000-EOF
            c4 PW 0-9            => h4 granted PW 0-999
            ",
        );
    }

    #[test]
    fn lock_value_blocks_and_glimpse_holders() {
        let mut table = LockTable::new(no_growth());
        let r1 = desc(&["PW", "0-99"]).resource;
        let lvb = Lvb {
            size: 12345,
            blocks: 24,
            ..Lvb::default()
        };
        assert!(!table.set_lvb(&r1, lvb));
        let Ok(Enqueued::Granted(w)) = table.enqueue(ClientId(1), desc(&["PW", "0-99"])) else {
            panic!("not granted");
        };
        assert_eq!(table.lvb(&r1), None);
        assert!(table.set_lvb(&r1, lvb));
        assert_eq!(table.lvb(&r1), Some(lvb));
        table
            .enqueue(ClientId(2), desc(&["PR", "100-199"]))
            .unwrap();
        assert_eq!(table.glimpse_holders(&r1), vec![(ClientId(1), w.handle)]);
        assert_eq!(table.len(), 2);
        assert_eq!(table.client_locks(ClientId(1)), vec![w.handle]);
        table.evict(ClientId(1));
        table.evict(ClientId(2));
        assert!(table.is_empty());
        // The resource went with its last lock, and its value block with it.
        assert_eq!(table.lvb(&r1), None);
    }

    /// The table's invariants: granted locks never conflict; a waiter is blocked by a
    /// granted lock or an earlier waiter (no lost wakeup); every granted lock in a waiter's
    /// way owes a blocking callback (no waiter left waiting on a holder nobody called);
    /// callback deadlines only on granted locks; the indexes agree.
    fn check_invariants(table: &LockTable) {
        let conflict = |a: &LockHandle, b: &LockHandle| {
            policy::conflicts(&table.locks[a].desc, &table.locks[b].desc)
        };
        let mut n_locks = 0;
        for res in table.resources.values() {
            n_locks += res.granted.len() + res.waiting.len();
            for (i, a) in res.granted.iter().enumerate() {
                assert!(table.locks[a].granted);
                for b in &res.granted[i + 1..] {
                    assert!(!conflict(a, b), "granted {a:?} and {b:?} conflict");
                }
            }
            for (i, w) in res.waiting.iter().enumerate() {
                assert!(!table.locks[w].granted);
                let earlier = res.waiting.iter().take(i);
                let blocked = res.granted.iter().chain(earlier).any(|g| conflict(g, w));
                assert!(blocked, "waiter {w:?} could be granted");
                for g in res.granted.iter().filter(|g| conflict(g, w)) {
                    assert!(
                        table.locks[g].blocking_owed,
                        "{g:?} blocks {w:?}, not called"
                    );
                }
            }
        }
        assert_eq!(n_locks, table.locks.len());
        let indexed: usize = table.by_client.values().map(BTreeSet::len).sum();
        assert_eq!(indexed, table.locks.len());
        for h in table.deadlines.keys() {
            assert!(table.locks[h].granted);
        }
    }

    #[test]
    fn random_operations_keep_the_invariants() {
        use sheen_wire::fuzzing::Rng;
        use sheen_wire::{LockExtent, LOCK_EXTENT_EOF};
        let seed = 0xd1_0c4;
        eprintln!("seed {seed:#x}");
        let mut rng = Rng::new(seed);
        for grow_extents in [false, true] {
            let mut table = LockTable::new(Config {
                grow_extents,
                max_waiters_per_resource: 8,
                ..Config::default()
            });
            let base = Instant::now();
            let mut handles: Vec<LockHandle> = Vec::new();
            let (mut n_waited, mut n_woken) = (0, 0);
            for step in 0..5000u64 {
                let now = base + Duration::from_secs(step);
                let pick = |rng: &mut Rng, n: usize| rng.below(n);
                match pick(&mut rng, 10) {
                    0..=4 => {
                        let mode = LockMode::ALL[pick(&mut rng, 7)];
                        let start = pick(&mut rng, 8) as u64 * 100;
                        let end = if pick(&mut rng, 4) == 0 {
                            LOCK_EXTENT_EOF
                        } else {
                            start + pick(&mut rng, 300) as u64
                        };
                        let gid = pick(&mut rng, 2) as u64;
                        let d = LockDesc {
                            resource: ResourceId::object(0, pick(&mut rng, 3) as u64),
                            mode,
                            policy: LockPolicy::Extent(LockExtent { start, end, gid }),
                        };
                        let client = ClientId(pick(&mut rng, 4) as u64);
                        match table.enqueue(client, d) {
                            Ok(Enqueued::Granted(g)) => handles.push(g.handle),
                            Ok(Enqueued::Waiting { handle, blocking }) => {
                                n_waited += 1;
                                handles.push(handle);
                                for b in blocking {
                                    table.callback_sent(b.handle, now).unwrap();
                                }
                            }
                            Err(e) => assert_eq!(e, DlmError::TooManyWaiters(d.resource)),
                        }
                    }
                    5..=6 if !handles.is_empty() => {
                        let h = handles.swap_remove(pick(&mut rng, handles.len()));
                        if let Ok(p) = table.cancel(h) {
                            n_woken += p.granted.len();
                        }
                    }
                    7 if !handles.is_empty() => {
                        let h = handles[pick(&mut rng, handles.len())];
                        if let Ok(p) = table.convert(h, LockMode::ALL[pick(&mut rng, 7)]) {
                            n_woken += p.granted.len();
                        }
                    }
                    8 => {
                        for client in table.expired(now) {
                            n_woken += table.evict(client).granted.len();
                        }
                    }
                    _ => {
                        n_woken += table
                            .evict(ClientId(pick(&mut rng, 4) as u64))
                            .granted
                            .len();
                    }
                }
                check_invariants(&table);
            }
            eprintln!("grow {grow_extents}: {n_waited} waited, {n_woken} woken");
            // The run went through the interesting paths.
            assert!(
                n_waited > 100 && n_woken > 100,
                "{n_waited} waited, {n_woken} woken"
            );
        }
    }

    #[test]
    fn errors_map_to_errno() {
        use sheen_wire::Errno;
        let err = |e: DlmError| e.errno();
        assert_eq!(err(DlmError::WouldBlock), Errno::EAGAIN);
        assert_eq!(
            err(DlmError::UnknownLock(LockHandle { cookie: 1 })),
            Errno::ESTALE
        );
        assert_eq!(err(DlmError::InvalidPolicy("x")), Errno::EINVAL);
    }
}
