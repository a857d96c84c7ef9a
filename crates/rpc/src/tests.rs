//! RPC round trips against a real TCP server on loopback.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use sheen_wire::frame::FLAG_RESENT;
use sheen_wire::{msg, Errno, Message, MsgHeader, Nid, Opcode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::reply_cache::{CacheLimits, ReplyCache};
use crate::server::serve_with_cache;
use crate::{serve, Import, ImportConfig, Request, Response, Service, ServiceError};

struct Echo;

#[async_trait]
impl Service for Echo {
    fn name(&self) -> String {
        "echo".into()
    }
    fn instance(&self) -> u64 {
        7
    }
    fn last_committed(&self) -> u64 {
        42
    }
    async fn handle(&self, req: Request) -> Result<Response, ServiceError> {
        match req.opcode {
            Opcode::OstWrite => {
                let w: msg::OstWriteReq = req.decode()?;
                Ok(Response::new(&msg::OstWriteReply {
                    size: w.offset + req.bulk.len() as u64,
                })
                .with_bulk(req.bulk.clone())
                .with_transno(5))
            }
            Opcode::OstDestroy => Err(ServiceError::new(Errno::ENOENT, "no such object")),
            _ => Err(Errno::EOPNOTSUPP.into()),
        }
    }
}

async fn start() -> (Nid, CancellationToken) {
    let t = sheen_transport::TcpTransport::default();
    let listener = sheen_transport::Transport::listen(&t, &Nid::parse("127.0.0.1:0@tcp").unwrap())
        .await
        .unwrap();
    let nid = listener.local_nid();
    let stop = CancellationToken::new();
    tokio::spawn(serve(listener, Arc::new(Echo), stop.clone()));
    (nid, stop)
}

fn import(nid: Nid) -> Import {
    let mut cfg = ImportConfig::new("test-client", Opcode::OstConnect);
    cfg.retry_for = Duration::from_millis(300);
    cfg.timeout = Duration::from_secs(5);
    Import::new(sheen_transport::for_nid(&nid).unwrap(), nid, cfg)
}

#[tokio::test]
async fn calls_with_bulk_errors_and_pings() {
    let (nid, _stop) = start().await;
    let imp = import(nid);
    imp.ping().await.unwrap();
    assert_eq!(imp.server_instance(), 7);
    let data = Bytes::from(vec![3u8; 3 << 20]);
    let req = msg::OstWriteReq {
        oid: 1,
        offset: 10,
        mtime: msg::Timespec::default(),
    };
    let (rep, bulk): (msg::OstWriteReply, Bytes) = imp
        .call_bulk(Opcode::OstWrite, 0, &req, data.clone())
        .await
        .unwrap();
    assert_eq!(rep.size, 10 + (3 << 20));
    assert_eq!(bulk, data);
    assert_eq!(imp.last_committed(), 42);
    let err = imp
        .call::<_, msg::Empty>(Opcode::OstDestroy, 0, &msg::ObjReq { oid: 1 })
        .await;
    let err = err.unwrap_err();
    assert_eq!(err.errno(), Errno::ENOENT);
    assert!(err.to_string().contains("no such object"));
    // A malformed body gets EPROTO, not a dropped connection.
    let bad = imp
        .call_raw(Opcode::OstWrite, 0, Bytes::from_static(b"xx"), Bytes::new())
        .await;
    assert_eq!(bad.unwrap_err().errno(), Errno::EPROTO);
    imp.ping().await.unwrap();
    // Many requests in flight at once on one connection.
    let mut tasks = Vec::new();
    for i in 0..32u64 {
        let imp = imp.clone();
        tasks.push(tokio::spawn(async move {
            let req = msg::OstWriteReq {
                oid: i,
                offset: i,
                mtime: msg::Timespec::default(),
            };
            let (rep, _): (msg::OstWriteReply, Bytes) = imp
                .call_bulk(Opcode::OstWrite, 0, &req, Bytes::from(vec![0u8; 100]))
                .await
                .unwrap();
            assert_eq!(rep.size, i + 100);
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    imp.disconnect().await;
    imp.ping().await.unwrap();
}

#[tokio::test]
async fn garbage_client_does_not_hurt_others() {
    let (nid, _stop) = start().await;
    let good = import(nid);
    good.ping().await.unwrap();
    let mut bad = tokio::net::TcpStream::connect(nid.socket_addr())
        .await
        .unwrap();
    bad.write_all(&[0xAB; 4096]).await.unwrap();
    // The server closes the garbage connection...
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(Duration::from_secs(5), async { bad.read(&mut buf).await })
        .await
        .unwrap();
    assert!(matches!(n, Ok(0) | Err(_)));
    // ...and keeps serving the good one.
    good.ping().await.unwrap();
}

#[tokio::test]
async fn unreachable_server_is_an_error_in_bounded_time() {
    let (nid, stop) = start().await;
    stop.cancel();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let imp = import(Nid { port: 1, ..nid });
    let err = imp.ping().await.unwrap_err();
    assert_eq!(err.errno(), Errno::ENOTCONN);
}

// ---- Failover NIDs ----

/// Answers only what the RPC layer answers itself (connect, ping); told apart by `instance`.
struct Instance(u64);

#[async_trait]
impl Service for Instance {
    fn name(&self) -> String {
        format!("instance-{}", self.0)
    }
    fn instance(&self) -> u64 {
        self.0
    }
    async fn handle(&self, _req: Request) -> Result<Response, ServiceError> {
        Err(Errno::EOPNOTSUPP.into())
    }
}

async fn start_instance(at: Nid, instance: u64) -> (Nid, CancellationToken) {
    let t = sheen_transport::TcpTransport::default();
    let listener = sheen_transport::Transport::listen(&t, &at).await.unwrap();
    let nid = listener.local_nid();
    let stop = CancellationToken::new();
    tokio::spawn(serve(listener, Arc::new(Instance(instance)), stop.clone()));
    (nid, stop)
}

#[tokio::test]
async fn calls_go_to_the_next_nid_when_one_does_not_answer() {
    let any = Nid::parse("127.0.0.1:0@tcp").unwrap();
    let (a, stop_a) = start_instance(any, 1).await;
    let (b, stop_b) = start_instance(any, 2).await;
    let mut cfg = ImportConfig::new("failover-client", Opcode::OstConnect);
    cfg.retry_for = Duration::from_secs(10);
    cfg.timeout = Duration::from_secs(5);
    let imp = Import::with_nids(&[a, b, a], cfg).unwrap();
    assert_eq!(imp.nids(), vec![a, b], "repeated NIDs are dropped");
    assert_eq!(imp.nid(), a);
    imp.ping().await.unwrap();
    assert_eq!(imp.server_instance(), 1, "the first NID is preferred");
    // The first server stops (its connections break): calls go to the second.
    stop_a.cancel();
    tokio::time::sleep(Duration::from_millis(50)).await;
    imp.ping().await.unwrap();
    assert_eq!(imp.server_instance(), 2);
    assert_eq!(imp.nid(), b);
    imp.ping().await.unwrap();
    assert_eq!(imp.nid(), b, "the NID that works is kept");
    // Both down: a call keeps trying (within retry_for) until the first comes back.
    stop_b.cancel();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let call = tokio::spawn({
        let imp = imp.clone();
        async move { imp.ping().await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!call.is_finished(), "no server is up: the call waits");
    let (again, _stop_again) = start_instance(a, 3).await;
    assert_eq!(again, a);
    tokio::time::timeout(Duration::from_secs(10), call)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(imp.server_instance(), 3);
    assert_eq!(imp.nid(), a);
    // No NID at all is an error, not a panic.
    let cfg = ImportConfig::new("nobody", Opcode::OstConnect);
    assert!(matches!(
        Import::with_nids(&[], cfg),
        Err(crate::RpcError::NoNid)
    ));
}

/// A TCP proxy that can freeze: while frozen it moves no byte either way but keeps every
/// socket open, as a hung server does (no reply, no reset). New connections are accepted
/// and frozen too.
async fn freezer(upstream: Nid) -> (Nid, Arc<AtomicBool>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let frozen = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&frozen);
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let Ok(server) = tokio::net::TcpStream::connect(upstream.socket_addr()).await else {
                continue;
            };
            let (cr, cw) = client.into_split();
            let (sr, sw) = server.into_split();
            tokio::spawn(pump(cr, sw, Arc::clone(&flag)));
            tokio::spawn(pump(sr, cw, Arc::clone(&flag)));
        }
    });
    (Nid { port, ..upstream }, frozen)
}

/// Copies `from` to `to`, holding what it read while `frozen`.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    frozen: Arc<AtomicBool>,
) {
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        while frozen.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

fn impatient_config() -> ImportConfig {
    let mut cfg = ImportConfig::new("impatient-client", Opcode::OstConnect);
    cfg.timeout = Duration::from_millis(300);
    cfg.connect_timeout = Duration::from_millis(300);
    cfg.retry_for = Duration::from_secs(10);
    cfg
}

#[tokio::test]
async fn a_silent_server_times_out_and_calls_go_to_the_next_nid() {
    let any = Nid::parse("127.0.0.1:0@tcp").unwrap();
    let (a, _stop_a) = start_instance(any, 1).await;
    let (b, _stop_b) = start_instance(any, 2).await;
    let (hung, frozen) = freezer(a).await;
    let imp = Import::with_nids(&[hung, b], impatient_config()).unwrap();
    imp.ping().await.unwrap();
    assert_eq!(imp.server_instance(), 1);
    // The first server stops answering but its connection stays up.
    frozen.store(true, Ordering::SeqCst);
    let started = std::time::Instant::now();
    imp.ping().await.unwrap();
    assert_eq!(imp.server_instance(), 2, "answered by the failover NID");
    assert_eq!(imp.nid(), b);
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn a_silent_server_that_comes_back_answers_the_resend_without_executing_twice() {
    let service = Arc::new(Counter::default());
    let (nid, cache, _stop) = start_counter(Arc::clone(&service)).await;
    let (hung, frozen) = freezer(nid).await;
    let imp = Import::with_nids(&[hung], impatient_config()).unwrap();
    imp.ping().await.unwrap();
    let generation = imp.generation();
    frozen.store(true, Ordering::SeqCst);
    let call = tokio::spawn({
        let imp = imp.clone();
        async move {
            imp.call::<_, msg::OstWriteReply>(Opcode::OstCreate, 0, &msg::ObjReq { oid: 1 })
                .await
        }
    });
    // Past the request timeout and a reconnect attempt or two, all unanswered.
    tokio::time::sleep(Duration::from_millis(900)).await;
    assert!(!call.is_finished(), "the server is silent: the call waits");
    // The server wakes up: the copy it held executes once, the resend is answered from the
    // reply cache (or waits for that copy).
    frozen.store(false, Ordering::SeqCst);
    let rep = tokio::time::timeout(Duration::from_secs(10), call)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(rep.size, 1);
    assert_eq!(service.modifications.load(Ordering::SeqCst), 1);
    assert!(imp.generation() > generation, "the call reconnected");
    assert_eq!(cache.stats().saved.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn every_nid_down_is_an_error_in_bounded_time() {
    let (a, stop_a) = start().await;
    let (b, stop_b) = start().await;
    stop_a.cancel();
    stop_b.cancel();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut cfg = ImportConfig::new("failover-client", Opcode::OstConnect);
    cfg.retry_for = Duration::from_millis(300);
    let imp = Import::with_nids(&[a, b], cfg).unwrap();
    let started = std::time::Instant::now();
    let err = imp.ping().await.unwrap_err();
    assert_eq!(err.errno(), Errno::ENOTCONN);
    assert!(started.elapsed() < Duration::from_secs(5));
}

// ---- Resend and reply reconstruction ----

/// Counts executions. `OstCreate` and `MdsReint` modify (the first copy of either can be
/// held at a gate); `OstGetattr` reads. Every reply carries the count at its execution.
#[derive(Default)]
struct Counter {
    modifications: AtomicU64,
    reads: AtomicU64,
    hold_first: bool,
    entered: Notify,
    gate: Notify,
    seen: std::sync::Mutex<Vec<(u64, u8)>>,
}

#[async_trait]
impl Service for Counter {
    fn name(&self) -> String {
        "counter".into()
    }
    fn instance(&self) -> u64 {
        1
    }
    async fn handle(&self, req: Request) -> Result<Response, ServiceError> {
        if let Ok(mut seen) = self.seen.lock() {
            seen.push((req.header.xid, req.header.flags));
        }
        match req.opcode {
            Opcode::OstCreate | Opcode::MdsReint => {
                let n = self.modifications.fetch_add(1, Ordering::SeqCst) + 1;
                if self.hold_first && n == 1 {
                    self.entered.notify_one();
                    self.gate.notified().await;
                }
                Ok(Response::new(&msg::OstWriteReply { size: n }).with_transno(100 + n))
            }
            Opcode::OstGetattr => {
                let n = self.reads.fetch_add(1, Ordering::SeqCst) + 1;
                Ok(Response::new(&msg::OstWriteReply { size: n }))
            }
            _ => Err(Errno::EOPNOTSUPP.into()),
        }
    }
}

async fn start_counter(service: Arc<Counter>) -> (Nid, Arc<ReplyCache>, CancellationToken) {
    start_counter_with(service, CacheLimits::default()).await
}

async fn start_counter_with(
    service: Arc<Counter>,
    limits: CacheLimits,
) -> (Nid, Arc<ReplyCache>, CancellationToken) {
    let t = sheen_transport::TcpTransport::default();
    let listener = sheen_transport::Transport::listen(&t, &Nid::parse("127.0.0.1:0@tcp").unwrap())
        .await
        .unwrap();
    let nid = listener.local_nid();
    let stop = CancellationToken::new();
    let cache = Arc::new(ReplyCache::new(limits));
    tokio::spawn(serve_with_cache(
        listener,
        service,
        Arc::clone(&cache),
        crate::Exports::new(),
        stop.clone(),
    ));
    (nid, cache, stop)
}

/// A TCP proxy between the client and the server that can drop the next bytes the server
/// sends (then close that connection), or cut every connection at once.
struct Proxy {
    nid: Nid,
    drop_next_reply: Arc<AtomicBool>,
    cut: Arc<Notify>,
}

async fn proxy(upstream: Nid) -> Proxy {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let drop_next_reply = Arc::new(AtomicBool::new(false));
    let cut = Arc::new(Notify::new());
    let (dropping, cutting) = (Arc::clone(&drop_next_reply), Arc::clone(&cut));
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let Ok(server) = tokio::net::TcpStream::connect(upstream.socket_addr()).await else {
                continue;
            };
            let (dropping, cutting) = (Arc::clone(&dropping), Arc::clone(&cutting));
            tokio::spawn(async move {
                let (mut cr, mut cw) = client.into_split();
                let (mut sr, mut sw) = server.into_split();
                let up = tokio::io::copy(&mut cr, &mut sw);
                let down = async {
                    let mut buf = vec![0u8; 64 << 10];
                    loop {
                        let n = sr.read(&mut buf).await?;
                        if n == 0 || dropping.swap(false, Ordering::SeqCst) {
                            return Ok::<(), std::io::Error>(());
                        }
                        cw.write_all(&buf[..n]).await?;
                    }
                };
                tokio::select! {
                    _ = up => {}
                    _ = down => {}
                    _ = cutting.notified() => {}
                }
                // Dropping the halves closes both sockets.
            });
        }
    });
    Proxy {
        nid: Nid { port, ..upstream },
        drop_next_reply,
        cut,
    }
}

fn patient_import(nid: Nid) -> Import {
    let mut cfg = ImportConfig::new("resending-client", Opcode::OstConnect);
    cfg.retry_for = Duration::from_secs(5);
    cfg.timeout = Duration::from_secs(5);
    Import::new(sheen_transport::for_nid(&nid).unwrap(), nid, cfg)
}

async fn eventually(what: &str, cond: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting: {what}"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

#[tokio::test]
async fn lost_reply_is_resent_and_reconstructed_not_executed_twice() {
    let service = Arc::new(Counter::default());
    let (nid, cache, _stop) = start_counter(Arc::clone(&service)).await;
    let proxy = proxy(nid).await;
    let imp = patient_import(proxy.nid);
    imp.ping().await.unwrap();
    let instance = imp.server_instance();
    // The server executes the create and saves its reply before sending it; the proxy drops
    // the reply and closes the connection.
    proxy.drop_next_reply.store(true, Ordering::SeqCst);
    let rep: msg::OstWriteReply = imp
        .call(Opcode::OstCreate, 0, &msg::ObjReq { oid: 1 })
        .await
        .unwrap();
    assert_eq!(rep.size, 1, "the reply of the first (only) execution");
    assert_eq!(service.modifications.load(Ordering::SeqCst), 1);
    assert_eq!(cache.stats().reconstructed.load(Ordering::SeqCst), 1);
    assert!(!proxy.drop_next_reply.load(Ordering::SeqCst));
    assert_eq!(imp.server_instance(), instance);
    // The next modifying call is new: it executes.
    let rep: msg::OstWriteReply = imp
        .call(Opcode::OstCreate, 0, &msg::ObjReq { oid: 2 })
        .await
        .unwrap();
    assert_eq!(rep.size, 2);
    assert_eq!(cache.stats().saved.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn resend_while_the_first_copy_executes_waits_for_its_reply() {
    let service = Arc::new(Counter {
        hold_first: true,
        ..Counter::default()
    });
    let (nid, cache, _stop) = start_counter(Arc::clone(&service)).await;
    let proxy = proxy(nid).await;
    let imp = patient_import(proxy.nid);
    imp.ping().await.unwrap();
    let call = tokio::spawn({
        let imp = imp.clone();
        async move {
            imp.call::<_, msg::OstWriteReply>(Opcode::MdsReint, 0, &msg::ObjReq { oid: 1 })
                .await
        }
    });
    // The first copy is executing: cut the connection; the client reconnects and resends.
    tokio::time::timeout(Duration::from_secs(5), service.entered.notified())
        .await
        .unwrap();
    proxy.cut.notify_waiters();
    eventually("the resend waits for the first copy", || {
        cache.stats().waited.load(Ordering::SeqCst) == 1
    })
    .await;
    service.gate.notify_one();
    let rep = tokio::time::timeout(Duration::from_secs(5), call)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(rep.size, 1);
    assert_eq!(service.modifications.load(Ordering::SeqCst), 1);
    assert_eq!(cache.stats().reconstructed.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn lost_read_reply_is_executed_again_not_cached() {
    let service = Arc::new(Counter::default());
    let (nid, cache, _stop) = start_counter(Arc::clone(&service)).await;
    let proxy = proxy(nid).await;
    let imp = patient_import(proxy.nid);
    imp.ping().await.unwrap();
    proxy.drop_next_reply.store(true, Ordering::SeqCst);
    let rep: msg::OstWriteReply = imp
        .call(Opcode::OstGetattr, 0, &msg::ObjReq { oid: 1 })
        .await
        .unwrap();
    assert_eq!(rep.size, 2, "a read is executed again");
    assert_eq!(service.reads.load(Ordering::SeqCst), 2);
    let stats = cache.stats();
    assert_eq!(stats.saved.load(Ordering::SeqCst), 0);
    assert_eq!(stats.reconstructed.load(Ordering::SeqCst), 0);
    // Both copies carried the same xid; the second was marked RESENT.
    let seen = service.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].0, seen[1].0);
    assert_eq!(seen[0].1 & FLAG_RESENT, 0);
    assert_eq!(seen[1].1 & FLAG_RESENT, FLAG_RESENT);
}

/// A raw connection to the server, for requests with chosen xids and flags.
struct Raw {
    conn: sheen_transport::Connection,
}

impl Raw {
    async fn open(nid: Nid) -> Raw {
        let t = sheen_transport::TcpTransport::default();
        let conn = sheen_transport::Transport::connect(&t, &nid).await.unwrap();
        Raw { conn }
    }

    async fn call(&mut self, opcode: Opcode, xid: u64, flags: u8, body: Bytes) -> Message {
        let mut header = MsgHeader::request(opcode.as_u32(), xid, 0);
        header.flags = flags;
        let msg = Message {
            header,
            body,
            bulk: Bytes::new(),
            bulk_crcs: None,
        };
        self.conn.sender.send(msg).await.unwrap();
        let reply = tokio::time::timeout(Duration::from_secs(5), self.conn.receiver.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(reply.header.xid, xid);
        reply
    }

    async fn connect(&mut self, uuid: &str, xid: u64) {
        let req = msg::ConnectReq {
            client_uuid: uuid.into(),
            target: String::new(),
        };
        let reply = self
            .call(Opcode::OstConnect, xid, 0, sheen_wire::encode(&req))
            .await;
        assert_eq!(reply.header.status, 0);
    }

    /// An OST_CREATE; returns the execution count its reply carries.
    async fn create(&mut self, xid: u64, flags: u8) -> u64 {
        let body = sheen_wire::encode(&msg::ObjReq { oid: 1 });
        let reply = self.call(Opcode::OstCreate, xid, flags, body).await;
        assert_eq!(reply.header.status, 0);
        sheen_wire::decode::<msg::OstWriteReply>(&reply.body)
            .unwrap()
            .size
    }
}

#[tokio::test]
async fn reply_cache_is_bounded_and_shared_by_a_clients_connections() {
    let service = Arc::new(Counter::default());
    let limits = CacheLimits {
        replies_per_client: 2,
        ..CacheLimits::default()
    };
    let (nid, cache, _stop) = start_counter_with(Arc::clone(&service), limits).await;
    let mut first = Raw::open(nid).await;
    first.connect("bounded-client", 1).await;
    for xid in 10..13 {
        first.create(xid, 0).await;
    }
    assert_eq!(service.modifications.load(Ordering::SeqCst), 3);
    // Another connection of the same client sees its replies: xid 12 is reconstructed...
    let mut second = Raw::open(nid).await;
    second.connect("bounded-client", 2).await;
    assert_eq!(second.create(12, FLAG_RESENT).await, 3);
    // ...but xid 10 was dropped (two replies kept): it executes again.
    assert_eq!(second.create(10, FLAG_RESENT).await, 4);
    // Another client uuid has its own cache: its xid 12 is not client one's.
    let mut other = Raw::open(nid).await;
    other.connect("other-client", 3).await;
    assert_eq!(other.create(12, FLAG_RESENT).await, 5);
    assert_eq!(cache.stats().reconstructed.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn requests_before_connect_are_served_without_a_reply_cache() {
    let service = Arc::new(Counter::default());
    let (nid, cache, _stop) = start_counter(Arc::clone(&service)).await;
    let mut raw = Raw::open(nid).await;
    assert_eq!(raw.create(77, 0).await, 1);
    assert_eq!(raw.create(77, FLAG_RESENT).await, 2);
    // Anonymous: no cache, so both copies executed.
    assert_eq!(service.modifications.load(Ordering::SeqCst), 2);
    assert_eq!(cache.stats().saved.load(Ordering::SeqCst), 0);
}

/// A service that, when asked (OST_SETATTR), calls its client back (LDLM_BL_CALLBACK) on the
/// client's own connection and answers with what the client said.
struct CallsBack {
    exports: Arc<crate::Exports>,
}

#[async_trait]
impl Service for CallsBack {
    fn name(&self) -> String {
        "calls-back".into()
    }
    fn instance(&self) -> u64 {
        9
    }
    async fn handle(&self, req: Request) -> Result<Response, ServiceError> {
        let export = req
            .export
            .ok_or_else(|| ServiceError::new(Errno::ENOTCONN, "no export"))?;
        let rep = self
            .exports
            .call(
                export,
                Opcode::LdlmBlCallback,
                req.body.clone(),
                Duration::from_secs(5),
            )
            .await
            .map_err(|e| ServiceError::new(e.errno(), e.to_string()))?;
        Ok(Response {
            body: rep.body,
            bulk: Bytes::new(),
            bulk_crcs: None,
            transno: 0,
        })
    }
}

/// Answers callbacks by echoing the body, or fails with EINVAL when the body is empty.
struct Answers {
    ended: AtomicU64,
}

#[async_trait]
impl crate::CallbackHandler for Answers {
    async fn handle(&self, req: Request) -> Result<Response, ServiceError> {
        assert_eq!(req.opcode, Opcode::LdlmBlCallback);
        if req.body.is_empty() {
            return Err(ServiceError::new(Errno::EINVAL, "empty"));
        }
        Ok(Response {
            body: req.body,
            bulk: Bytes::new(),
            bulk_crcs: None,
            transno: 0,
        })
    }
    fn connection_ended(&self, _nid: Nid) {
        self.ended.fetch_add(1, Ordering::SeqCst);
    }
}

async fn start_calls_back() -> (Nid, Arc<crate::Exports>, CancellationToken) {
    let t = sheen_transport::TcpTransport::default();
    let listener = sheen_transport::Transport::listen(&t, &Nid::parse("127.0.0.1:0@tcp").unwrap())
        .await
        .unwrap();
    let nid = listener.local_nid();
    let stop = CancellationToken::new();
    let exports = crate::Exports::new();
    let service = Arc::new(CallsBack {
        exports: Arc::clone(&exports),
    });
    tokio::spawn(crate::serve_with_exports(
        listener,
        service,
        Arc::clone(&exports),
        stop.clone(),
    ));
    (nid, exports, stop)
}

#[tokio::test]
async fn server_calls_the_client_back_on_its_connection() {
    let (nid, exports, stop) = start_calls_back().await;
    let handler = Arc::new(Answers {
        ended: AtomicU64::new(0),
    });
    let mut cfg = ImportConfig::new("cb-client", Opcode::OstConnect);
    cfg.callbacks = Some(crate::Callbacks(handler.clone()));
    cfg.retry_for = Duration::from_secs(2);
    let imp = Import::new(Arc::new(sheen_transport::TcpTransport::default()), nid, cfg);
    let rep = imp
        .call_raw(
            Opcode::OstSetattr,
            0,
            Bytes::from_static(b"hello"),
            Bytes::new(),
        )
        .await
        .unwrap();
    assert_eq!(&rep.body[..], b"hello");
    assert_eq!(imp.generation(), 1);
    // The client's error comes back to the server as an errno.
    let err = imp
        .call_raw(Opcode::OstSetattr, 0, Bytes::new(), Bytes::new())
        .await
        .unwrap_err();
    assert_eq!(err.errno(), Errno::EINVAL, "{err}");
    assert_eq!(exports.len(), 1);

    // Evicting the export closes the connection; the client notices and reconnects as a new
    // export.
    let gone = Arc::new(AtomicU64::new(0));
    let g = Arc::clone(&gone);
    exports.set_gone_hook(Arc::new(move |_| {
        g.fetch_add(1, Ordering::SeqCst);
    }));
    exports.evict_uuid("cb-client", "test");
    for _ in 0..200 {
        if handler.ended.load(Ordering::SeqCst) == 1 && gone.load(Ordering::SeqCst) == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(handler.ended.load(Ordering::SeqCst), 1);
    assert_eq!(gone.load(Ordering::SeqCst), 1);
    let rep = imp
        .call_raw(
            Opcode::OstSetattr,
            0,
            Bytes::from_static(b"again"),
            Bytes::new(),
        )
        .await
        .unwrap();
    assert_eq!(&rep.body[..], b"again");
    assert_eq!(imp.generation(), 2);
    stop.cancel();
}

#[tokio::test]
async fn a_callback_to_a_client_without_a_handler_fails_and_drops_its_connection() {
    let (nid, _exports, stop) = start_calls_back().await;
    let mut cfg = ImportConfig::new("no-cb-client", Opcode::OstConnect);
    cfg.retry_for = Duration::from_millis(300);
    let imp = Import::new(Arc::new(sheen_transport::TcpTransport::default()), nid, cfg);
    let err = imp
        .call_raw(
            Opcode::OstSetattr,
            0,
            Bytes::from_static(b"x"),
            Bytes::new(),
        )
        .await
        .unwrap_err();
    assert!(matches!(err.errno(), Errno::EIO | Errno::ENOTCONN), "{err}");
    stop.cancel();
}

/// A service that numbers every OST_CREATE it executes and replies before "committing":
/// `last_committed` is whatever the test sets. It records what it saw, in order.
struct Journal {
    instance: u64,
    next_transno: AtomicU64,
    committed: AtomicU64,
    /// Replays with this transno are refused.
    refuse: u64,
    seen: std::sync::Mutex<Vec<Seen>>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Seen {
    Create {
        xid: u64,
        flags: u8,
        replay: Option<crate::ReplayInfo>,
        body: Bytes,
        bulk: Bytes,
    },
    ReplayDone(String),
}

impl Journal {
    fn new(instance: u64, first_transno: u64, refuse: u64) -> Arc<Journal> {
        Arc::new(Journal {
            instance,
            next_transno: AtomicU64::new(first_transno),
            committed: AtomicU64::new(0),
            refuse,
            seen: std::sync::Mutex::new(Vec::new()),
        })
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

#[async_trait]
impl Service for Journal {
    fn name(&self) -> String {
        "journal".into()
    }
    fn instance(&self) -> u64 {
        self.instance
    }
    fn last_committed(&self) -> u64 {
        self.committed.load(Ordering::SeqCst)
    }
    async fn handle(&self, req: Request) -> Result<Response, ServiceError> {
        if req.opcode != Opcode::OstCreate {
            return Err(Errno::EOPNOTSUPP.into());
        }
        self.seen.lock().unwrap().push(Seen::Create {
            xid: req.header.xid,
            flags: req.header.flags,
            replay: req.replay.clone(),
            body: req.body.clone(),
            bulk: req.bulk.clone(),
        });
        if let Some(r) = &req.replay {
            if r.transno == self.refuse {
                return Err(ServiceError::new(Errno::EEXIST, "refused replay"));
            }
            return Ok(Response {
                body: r.reply.clone(),
                bulk: Bytes::new(),
                bulk_crcs: None,
                transno: r.transno,
            });
        }
        let transno = self.next_transno.fetch_add(1, Ordering::SeqCst);
        Ok(Response::new(&msg::OstCreateReply {
            first_oid: transno * 100,
            count: 1,
        })
        .with_transno(transno))
    }
    async fn replay_done(&self, client: &str) {
        self.seen
            .lock()
            .unwrap()
            .push(Seen::ReplayDone(client.to_owned()));
    }
}

async fn start_journal(at: Nid, journal: Arc<Journal>) -> (Nid, CancellationToken) {
    let t = sheen_transport::TcpTransport::default();
    let listener = sheen_transport::Transport::listen(&t, &at).await.unwrap();
    let nid = listener.local_nid();
    let stop = CancellationToken::new();
    tokio::spawn(serve(listener, journal, stop.clone()));
    (nid, stop)
}

fn create_body(count: u32) -> Bytes {
    sheen_wire::encode(&msg::OstCreateReq { count })
}

#[tokio::test]
async fn kept_requests_are_dropped_once_committed() {
    let any = Nid::parse("127.0.0.1:0@tcp").unwrap();
    let journal = Journal::new(1, 1, 0);
    let (nid, _stop) = start_journal(any, Arc::clone(&journal)).await;
    let imp = patient_import(nid);
    for count in 1..=3 {
        let r = imp
            .call_raw(Opcode::OstCreate, 0, create_body(count), Bytes::new())
            .await
            .unwrap();
        assert_eq!(r.header.transno, u64::from(count));
    }
    assert_eq!(imp.replay_len(), 3, "nothing committed: all kept");
    journal.committed.store(2, Ordering::SeqCst);
    imp.ping().await.unwrap();
    assert_eq!(imp.last_committed(), 2);
    assert_eq!(imp.replay_len(), 1, "transnos 1 and 2 are committed");
    // A reply already committed when it comes is not kept.
    journal.committed.store(10, Ordering::SeqCst);
    imp.call_raw(Opcode::OstCreate, 0, create_body(9), Bytes::new())
        .await
        .unwrap();
    assert_eq!(imp.replay_len(), 0);
}

#[tokio::test]
async fn uncommitted_requests_are_replayed_in_order_to_a_restarted_server() {
    let any = Nid::parse("127.0.0.1:0@tcp").unwrap();
    let first = Journal::new(1, 5, 0);
    let (nid, stop_first) = start_journal(any, Arc::clone(&first)).await;
    let imp = patient_import(nid);
    let mut originals = Vec::new();
    for count in 1..=3u32 {
        // The second carries bulk: a replay brings it back as it was.
        let bulk = if count == 2 {
            Bytes::from(vec![9u8; 5000])
        } else {
            Bytes::new()
        };
        let body = create_body(count);
        let r = imp
            .call_raw(Opcode::OstCreate, 0, body.clone(), bulk.clone())
            .await
            .unwrap();
        originals.push((r.header.transno, body, bulk, r.body));
    }
    let xids: Vec<u64> = first
        .seen()
        .iter()
        .map(|s| match s {
            Seen::Create { xid, .. } => *xid,
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    // The server restarts (a new instance) and refuses the second replay.
    stop_first.cancel();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let second = Journal::new(2, 100, 6);
    let (again, _stop) = start_journal(nid, Arc::clone(&second)).await;
    assert_eq!(again, nid);
    let r = imp
        .call_raw(Opcode::OstCreate, 0, create_body(42), Bytes::new())
        .await
        .unwrap();
    assert_eq!(r.header.transno, 100);
    let seen = second.seen();
    assert_eq!(
        seen.len(),
        5,
        "three replays, done, the new request: {seen:?}"
    );
    for (i, (transno, body, bulk, reply)) in originals.iter().enumerate() {
        let expected = Seen::Create {
            xid: xids[i],
            flags: sheen_wire::frame::FLAG_REPLAY,
            replay: Some(crate::ReplayInfo {
                transno: *transno,
                reply: reply.clone(),
            }),
            body: body.clone(),
            bulk: bulk.clone(),
        };
        assert_eq!(seen[i], expected, "replay {i}");
    }
    assert_eq!(seen[3], Seen::ReplayDone("resending-client".into()));
    assert!(
        matches!(
            &seen[4],
            Seen::Create {
                replay: None,
                flags: 0,
                ..
            }
        ),
        "the new request comes after the replays: {:?}",
        seen[4]
    );
    // The refused replay was dropped; the others and the new one are kept (nothing is
    // committed at the new server yet).
    assert_eq!(imp.replay_len(), 3);
}

#[tokio::test]
async fn a_client_with_nothing_to_replay_still_says_it_is_done() {
    let any = Nid::parse("127.0.0.1:0@tcp").unwrap();
    let first = Journal::new(1, 1, 0);
    first.committed.store(u64::MAX, Ordering::SeqCst);
    let (nid, stop_first) = start_journal(any, Arc::clone(&first)).await;
    let imp = patient_import(nid);
    imp.call_raw(Opcode::OstCreate, 0, create_body(1), Bytes::new())
        .await
        .unwrap();
    assert_eq!(imp.replay_len(), 0);
    stop_first.cancel();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let second = Journal::new(2, 1, 0);
    let (_, _stop) = start_journal(nid, Arc::clone(&second)).await;
    imp.ping().await.unwrap();
    assert_eq!(second.seen(), [Seen::ReplayDone("resending-client".into())]);
}

#[tokio::test]
async fn an_idle_client_of_a_server_that_replies_early_reconnects_and_says_it_is_done() {
    let any = Nid::parse("127.0.0.1:0@tcp").unwrap();
    let first = Journal::new(1, 1, 0);
    let (nid, stop_first) = start_journal(any, Arc::clone(&first)).await;
    let imp = patient_import(nid);
    imp.call_raw(Opcode::OstCreate, 0, create_body(1), Bytes::new())
        .await
        .unwrap();
    first.committed.store(1, Ordering::SeqCst);
    imp.ping().await.unwrap();
    assert_eq!(imp.replay_len(), 0, "committed");
    stop_first.cancel();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let second = Journal::new(2, 1, 0);
    let (_, _stop) = start_journal(nid, Arc::clone(&second)).await;
    // No call: the import reconnects by itself, as the server waits for it.
    let done = Seen::ReplayDone("resending-client".into());
    eventually("the done ping", || second.seen() == [done.clone()]).await;
}
