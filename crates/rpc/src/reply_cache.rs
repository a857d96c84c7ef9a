//! The server's reply cache [ptlrpc reply reconstruction, in memory].
//!
//! A client whose reply was lost sends the request again with the same xid and
//! `FLAG_RESENT`. For requests the service marks as modifying, the server keeps, per client
//! uuid, the replies it sent (keyed by xid) and the requests still executing, so that a
//! resend gets the saved reply, or waits for the first copy's reply, instead of executing
//! twice; so does a first copy that arrives after its resend (xids never repeat). The cache
//! is shared by all connections of one client uuid (a reconnect is a new connection with the
//! same uuid) and lives as long as the server process: durable last_rcvd records come with
//! replay.
//!
//! Everything is bounded: clients, replies and bytes per client, requests tracked in flight
//! per client. The oldest entry goes first.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use sheen_wire::frame::FLAG_RESENT;
use sheen_wire::{Message, MsgHeader};
use tokio::sync::watch;
use tracing::{debug, warn};

/// Most client uuids with a reply cache; the least recently seen is dropped first.
pub const MAX_CLIENTS: usize = 1024;
/// Most saved replies per client; the oldest is dropped first.
pub const MAX_REPLIES_PER_CLIENT: usize = 1024;
/// Most bytes (body and bulk) of saved replies per client; a larger reply is not saved.
pub const MAX_SAVED_BYTES_PER_CLIENT: usize = 1 << 20;
/// Most modifying requests of one client tracked while they execute; beyond it a request
/// runs untracked (a resend of it could execute twice) and a warning is logged.
pub const MAX_IN_PROGRESS_PER_CLIENT: usize = 4096;
/// Longest client uuid accepted at CONNECT (Lustre's are 40 bytes).
pub const MAX_CLIENT_UUID_BYTES: usize = 128;

/// The bounds of one cache (the constants above in production, smaller in tests).
#[derive(Clone, Copy, Debug)]
pub(crate) struct CacheLimits {
    pub clients: usize,
    pub replies_per_client: usize,
    pub bytes_per_client: usize,
    pub in_progress_per_client: usize,
}

impl Default for CacheLimits {
    fn default() -> CacheLimits {
        CacheLimits {
            clients: MAX_CLIENTS,
            replies_per_client: MAX_REPLIES_PER_CLIENT,
            bytes_per_client: MAX_SAVED_BYTES_PER_CLIENT,
            in_progress_per_client: MAX_IN_PROGRESS_PER_CLIENT,
        }
    }
}

/// Counters, for logs and tests.
#[derive(Default, Debug)]
pub(crate) struct CacheStats {
    /// Replies saved.
    pub saved: AtomicU64,
    /// Resends answered from a saved reply.
    pub reconstructed: AtomicU64,
    /// Resends that waited for the first copy still executing.
    pub waited: AtomicU64,
}

/// All clients' caches of one server.
pub(crate) struct ReplyCache {
    limits: CacheLimits,
    stats: Arc<CacheStats>,
    table: Mutex<Table>,
}

#[derive(Default)]
struct Table {
    clients: HashMap<String, (Arc<ClientReplies>, u64)>,
    tick: u64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock leaves consistent maps (no multi-step invariant is
    // broken half-way that matters more than losing the cache), so keep going.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl ReplyCache {
    pub fn new(limits: CacheLimits) -> ReplyCache {
        ReplyCache {
            limits,
            stats: Arc::default(),
            table: Mutex::new(Table::default()),
        }
    }

    #[cfg(test)]
    pub fn stats(&self) -> &CacheStats {
        &self.stats
    }

    /// The cache of `uuid`, made (dropping the least recently seen client when full) if new.
    pub fn client(&self, uuid: &str) -> Arc<ClientReplies> {
        let mut t = lock(&self.table);
        t.tick += 1;
        let tick = t.tick;
        if let Some((c, seen)) = t.clients.get_mut(uuid) {
            *seen = tick;
            return Arc::clone(c);
        }
        while t.clients.len() >= self.limits.clients.max(1) {
            let oldest = t
                .clients
                .iter()
                .min_by_key(|(_, (_, seen))| *seen)
                .map(|(k, _)| k.clone());
            match oldest {
                Some(k) => {
                    debug!(client = %k, "reply cache full: dropping the oldest client");
                    t.clients.remove(&k);
                }
                None => break,
            }
        }
        let c = Arc::new(ClientReplies {
            limits: self.limits,
            stats: Arc::clone(&self.stats),
            state: Mutex::new(ClientState::default()),
        });
        t.clients.insert(uuid.to_owned(), (Arc::clone(&c), tick));
        c
    }

    #[cfg(test)]
    pub fn has_client(&self, uuid: &str) -> bool {
        lock(&self.table).clients.contains_key(uuid)
    }
}

/// One client's saved replies and requests in progress.
pub(crate) struct ClientReplies {
    limits: CacheLimits,
    stats: Arc<CacheStats>,
    state: Mutex<ClientState>,
}

#[derive(Default)]
struct ClientState {
    saved: HashMap<u64, Saved>,
    /// Saved xids, oldest first.
    order: VecDeque<u64>,
    bytes: usize,
    running: HashMap<u64, Running>,
}

struct Saved {
    opcode: u32,
    target_idx: u32,
    reply: Message,
}

struct Running {
    opcode: u32,
    target_idx: u32,
    done: watch::Receiver<Option<Message>>,
}

/// What to do with an incoming modifying request.
pub(crate) enum Lookup {
    /// Execute it; the ticket (none when untracked) saves the reply.
    Execute(Option<Ticket>),
    /// A resend of a request already answered: send this again.
    Saved(Message),
    /// A resend of a request still executing: wait for its reply (`None` until then; the
    /// sender dropped without a value means the first copy never produced one).
    Wait(watch::Receiver<Option<Message>>),
}

impl ClientReplies {
    /// Looks a modifying request up and, when it is to be executed, marks it in progress.
    pub fn begin(self: &Arc<Self>, h: &MsgHeader) -> Lookup {
        let mut st = lock(&self.state);
        let same = |opcode: u32, target_idx: u32| opcode == h.opcode && target_idx == h.target_idx;
        // A client's xids never repeat, so a known xid is a copy of a request seen before,
        // with or without `FLAG_RESENT`: the first copy can also come last (it sat in a
        // server that stopped answering, and the client resent on a new connection).
        let resent = h.flags & FLAG_RESENT != 0;
        if let Some(s) = st.saved.get(&h.xid) {
            if same(s.opcode, s.target_idx) {
                self.stats.reconstructed.fetch_add(1, Ordering::Relaxed);
                debug!(xid = h.xid, resent, "answered from the reply cache");
                return Lookup::Saved(s.reply.clone());
            }
        }
        if let Some(r) = st.running.get(&h.xid) {
            if same(r.opcode, r.target_idx) {
                self.stats.waited.fetch_add(1, Ordering::Relaxed);
                debug!(xid = h.xid, resent, "waits for the copy in progress");
                return Lookup::Wait(r.done.clone());
            }
        }
        if st.running.contains_key(&h.xid) {
            warn!(
                xid = h.xid,
                "a second request with the xid of one in progress: executing it untracked"
            );
            return Lookup::Execute(None);
        }
        if st.running.len() >= self.limits.in_progress_per_client {
            warn!(
                xid = h.xid,
                "too many requests in progress: executing untracked"
            );
            return Lookup::Execute(None);
        }
        let (tx, rx) = watch::channel(None);
        st.running.insert(
            h.xid,
            Running {
                opcode: h.opcode,
                target_idx: h.target_idx,
                done: rx,
            },
        );
        Lookup::Execute(Some(Ticket {
            client: Arc::clone(self),
            xid: h.xid,
            opcode: h.opcode,
            target_idx: h.target_idx,
            tx,
            finished: false,
        }))
    }

    fn save(&self, st: &mut ClientState, xid: u64, opcode: u32, target_idx: u32, reply: &Message) {
        if let Some(old) = st.saved.remove(&xid) {
            st.bytes -= saved_bytes(&old.reply);
            st.order.retain(|x| *x != xid);
        }
        let size = saved_bytes(reply);
        if size > self.limits.bytes_per_client {
            warn!(xid, size, "reply too large to save for a resend");
            return;
        }
        st.saved.insert(
            xid,
            Saved {
                opcode,
                target_idx,
                reply: reply.clone(),
            },
        );
        st.order.push_back(xid);
        st.bytes += size;
        while st.saved.len() > self.limits.replies_per_client
            || st.bytes > self.limits.bytes_per_client
        {
            let Some(oldest) = st.order.pop_front() else {
                break;
            };
            if let Some(s) = st.saved.remove(&oldest) {
                st.bytes -= saved_bytes(&s.reply);
            }
        }
        self.stats.saved.fetch_add(1, Ordering::Relaxed);
    }

    #[cfg(test)]
    pub fn saved_xids(&self) -> Vec<u64> {
        lock(&self.state).order.iter().copied().collect()
    }
}

fn saved_bytes(m: &Message) -> usize {
    m.body.len() + m.bulk.len()
}

/// A modifying request being executed: [`Ticket::finish`] saves its reply and wakes the
/// resends waiting for it; dropped unfinished, it forgets the request.
pub(crate) struct Ticket {
    client: Arc<ClientReplies>,
    xid: u64,
    opcode: u32,
    target_idx: u32,
    tx: watch::Sender<Option<Message>>,
    finished: bool,
}

impl Ticket {
    pub fn finish(mut self, reply: &Message) {
        {
            let mut st = lock(&self.client.state);
            st.running.remove(&self.xid);
            self.client
                .save(&mut st, self.xid, self.opcode, self.target_idx, reply);
        }
        self.tx.send_replace(Some(reply.clone()));
        self.finished = true;
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if !self.finished {
            lock(&self.client.state).running.remove(&self.xid);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use sheen_wire::frame::MsgKind;

    fn request(xid: u64, resent: bool) -> MsgHeader {
        let mut h = MsgHeader::request(36, xid, 0);
        if resent {
            h.flags |= FLAG_RESENT;
        }
        h
    }

    fn reply(xid: u64, body: &'static [u8]) -> Message {
        let mut header = request(xid, false);
        header.kind = MsgKind::Reply;
        header.transno = xid;
        Message {
            header,
            body: Bytes::from_static(body),
            bulk: Bytes::new(),
            bulk_crcs: None,
        }
    }

    fn run(c: &Arc<ClientReplies>, xid: u64) {
        match c.begin(&request(xid, false)) {
            Lookup::Execute(Some(t)) => t.finish(&reply(xid, b"ok")),
            _ => panic!("xid {xid} should execute tracked"),
        }
    }

    #[test]
    fn replies_per_client_are_bounded_oldest_first() {
        let limits = CacheLimits {
            replies_per_client: 4,
            ..CacheLimits::default()
        };
        let cache = ReplyCache::new(limits);
        let c = cache.client("a");
        for xid in 1..=6 {
            run(&c, xid);
        }
        assert_eq!(c.saved_xids(), vec![3, 4, 5, 6]);
        // An evicted xid executes again; a kept one is reconstructed.
        assert!(matches!(
            c.begin(&request(1, true)),
            Lookup::Execute(Some(_))
        ));
        match c.begin(&request(6, true)) {
            Lookup::Saved(m) => assert_eq!(m.header.transno, 6),
            _ => panic!("xid 6 should be answered from the cache"),
        }
    }

    #[test]
    fn bytes_per_client_are_bounded() {
        let limits = CacheLimits {
            bytes_per_client: 5,
            ..CacheLimits::default()
        };
        let cache = ReplyCache::new(limits);
        let c = cache.client("a");
        for xid in 1..=4 {
            run(&c, xid); // 2 bytes each: at most two fit.
        }
        assert_eq!(c.saved_xids(), vec![3, 4]);
        match c.begin(&request(9, false)) {
            Lookup::Execute(Some(t)) => t.finish(&reply(9, b"far too long")),
            _ => panic!("should execute"),
        }
        assert_eq!(c.saved_xids(), vec![3, 4]);
    }

    #[test]
    fn clients_are_bounded_least_recently_seen_first() {
        let limits = CacheLimits {
            clients: 2,
            ..CacheLimits::default()
        };
        let cache = ReplyCache::new(limits);
        let a = cache.client("a");
        run(&a, 1);
        cache.client("b");
        cache.client("a"); // Seen again: now b is the oldest.
        cache.client("c");
        assert!(cache.has_client("a") && cache.has_client("c") && !cache.has_client("b"));
        assert_eq!(cache.client("a").saved_xids(), vec![1]);
    }

    #[test]
    fn a_first_copy_that_comes_after_its_resend_is_not_executed_again() {
        let cache = ReplyCache::new(CacheLimits::default());
        let c = cache.client("a");
        // The resend overtook the first copy and executed.
        let Lookup::Execute(Some(t)) = c.begin(&request(5, true)) else {
            panic!("an unknown resend executes");
        };
        // The first copy arrives while the resend runs: it waits for that reply.
        assert!(matches!(c.begin(&request(5, false)), Lookup::Wait(_)));
        t.finish(&reply(5, b"ok"));
        // Or after: it gets the saved reply.
        match c.begin(&request(5, false)) {
            Lookup::Saved(m) => assert_eq!(m.header.xid, 5),
            _ => panic!("the late first copy should be answered from the cache"),
        }
        assert_eq!(cache.stats().reconstructed.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn in_progress_resend_waits_and_mismatch_executes() {
        let cache = ReplyCache::new(CacheLimits::default());
        let c = cache.client("a");
        let Lookup::Execute(Some(t)) = c.begin(&request(7, false)) else {
            panic!("should execute tracked");
        };
        let Lookup::Wait(rx) = c.begin(&request(7, true)) else {
            panic!("resend should wait");
        };
        assert!(rx.borrow().is_none());
        t.finish(&reply(7, b"ok"));
        assert_eq!(rx.borrow().as_ref().map(|m| m.header.xid), Some(7));
        // Same xid, other opcode: not the same request.
        let mut other = request(7, true);
        other.opcode = 4;
        assert!(matches!(c.begin(&other), Lookup::Execute(Some(_))));
        // A ticket dropped unfinished wakes waiters with nothing and forgets the xid.
        let Lookup::Execute(Some(t)) = c.begin(&request(8, false)) else {
            panic!("should execute tracked");
        };
        let Lookup::Wait(rx) = c.begin(&request(8, true)) else {
            panic!("resend should wait");
        };
        drop(t);
        assert!(rx.has_changed().is_err());
        assert!(matches!(
            c.begin(&request(8, true)),
            Lookup::Execute(Some(_))
        ));
    }
}
