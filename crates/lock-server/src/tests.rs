//! The lock service over real RPC on loopback: callbacks, cancels, eviction.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use sheen_dlm::Config;
use sheen_rpc::{
    CallbackHandler, Callbacks, Exports, Import, ImportConfig, Request, Response, Service,
    ServiceError,
};
use sheen_wire::msg::{BlockingAst, CancelReq, EnqueueReply, EnqueueReq};
use sheen_wire::{
    msg, LockDesc, LockExtent, LockMode, LockPolicy, Nid, Opcode, ResourceId, LOCK_EXTENT_EOF,
};
use tokio_util::sync::CancellationToken;

use crate::LockServer;

struct Ost {
    locks: Arc<LockServer>,
}

#[async_trait]
impl Service for Ost {
    fn name(&self) -> String {
        "OST0000".into()
    }
    fn instance(&self) -> u64 {
        1
    }
    async fn handle(&self, req: Request) -> Result<Response, ServiceError> {
        let export = req
            .export
            .ok_or_else(|| ServiceError::new(sheen_wire::Errno::ENOTCONN, "no export"))?;
        match req.opcode {
            Opcode::LdlmEnqueue => {
                let r: EnqueueReq = req.decode()?;
                let (handle, desc) = self
                    .locks
                    .enqueue(export, &r)
                    .await
                    .map_err(|e| ServiceError::new(e.errno(), e.to_string()))?;
                Ok(Response::new(&EnqueueReply {
                    handle,
                    desc,
                    granted: true,
                    lvb: None,
                }))
            }
            Opcode::LdlmCancel => {
                let r: CancelReq = req.decode()?;
                self.locks.cancel(export, &r.handles);
                Ok(Response::empty())
            }
            _ => Err(sheen_wire::Errno::EOPNOTSUPP.into()),
        }
    }
}

/// A client that cancels on a blocking callback, unless told to stay silent.
struct Holder {
    import: OnceLock<Import>,
    callbacks: AtomicU64,
    silent: AtomicBool,
}

#[async_trait]
impl CallbackHandler for Holder {
    async fn handle(&self, req: Request) -> Result<Response, ServiceError> {
        let ast: BlockingAst = req.decode()?;
        self.callbacks.fetch_add(1, Ordering::SeqCst);
        if !self.silent.load(Ordering::SeqCst) {
            if let Some(imp) = self.import.get().cloned() {
                tokio::spawn(async move {
                    let cancel = CancelReq {
                        handles: vec![ast.handle],
                    };
                    let _: Result<msg::Empty, _> = imp.call(Opcode::LdlmCancel, 0, &cancel).await;
                });
            }
        }
        Ok(Response::empty())
    }
    fn connection_ended(&self, _nid: Nid) {}
}

async fn start(callback_timeout: Duration) -> (Nid, Arc<LockServer>, CancellationToken) {
    let t = sheen_transport::TcpTransport::default();
    let nid = Nid::parse("127.0.0.1:0@tcp").unwrap();
    let listener = sheen_transport::Transport::listen(&t, &nid).await.unwrap();
    let nid = listener.local_nid();
    let stop = CancellationToken::new();
    let exports = Exports::new();
    let config = Config {
        callback_timeout,
        ..Config::default()
    };
    let locks = LockServer::new("OST0000", Arc::clone(&exports), config);
    let l = Arc::clone(&locks);
    exports.set_gone_hook(Arc::new(move |id| l.export_gone(id)));
    tokio::spawn(Arc::clone(&locks).run_reaper(stop.clone()));
    let service = Arc::new(Ost {
        locks: Arc::clone(&locks),
    });
    tokio::spawn(sheen_rpc::serve_with_exports(
        listener,
        service,
        exports,
        stop.clone(),
    ));
    (nid, locks, stop)
}

fn client(nid: Nid, uuid: &str) -> (Import, Arc<Holder>) {
    let holder = Arc::new(Holder {
        import: OnceLock::new(),
        callbacks: AtomicU64::new(0),
        silent: AtomicBool::new(false),
    });
    let mut cfg = ImportConfig::new(uuid, Opcode::OstConnect);
    cfg.callbacks = Some(Callbacks(holder.clone()));
    cfg.retry_for = Duration::from_secs(2);
    cfg.timeout = Duration::from_secs(20);
    let imp = Import::new(Arc::new(sheen_transport::TcpTransport::default()), nid, cfg);
    let _ = holder.import.set(imp.clone());
    (imp, holder)
}

fn extent(mode: LockMode, start: u64, end: u64) -> EnqueueReq {
    EnqueueReq {
        desc: LockDesc {
            resource: ResourceId::object(0, 42),
            mode,
            policy: LockPolicy::Extent(LockExtent { start, end, gid: 0 }),
        },
        flags: 0,
    }
}

async fn enqueue(imp: &Import, req: &EnqueueReq) -> EnqueueReply {
    imp.call(Opcode::LdlmEnqueue, 0, req).await.unwrap()
}

#[tokio::test]
async fn a_conflicting_enqueue_calls_the_holder_back_and_waits_for_its_cancel() {
    let (nid, locks, stop) = start(Duration::from_secs(10)).await;
    let (a, ha) = client(nid, "client-a");
    let (b, hb) = client(nid, "client-b");
    let pw = enqueue(&a, &extent(LockMode::Pw, 0, 4095)).await;
    assert!(pw.granted);
    // Uncontended, the lock grew to the whole object.
    assert_eq!(
        pw.desc.policy,
        LockPolicy::Extent(LockExtent {
            start: 0,
            end: LOCK_EXTENT_EOF,
            gid: 0
        })
    );
    let pr = enqueue(&b, &extent(LockMode::Pr, 0, 100)).await;
    assert!(pr.granted);
    assert_eq!(ha.callbacks.load(Ordering::SeqCst), 1);
    assert_eq!(hb.callbacks.load(Ordering::SeqCst), 0);
    assert_eq!(locks.len(), 1, "A's lock is gone, B's is held");
    // A reader does not call back another reader.
    let pr_a = enqueue(&a, &extent(LockMode::Pr, 0, 100)).await;
    assert!(pr_a.granted);
    assert_eq!(hb.callbacks.load(Ordering::SeqCst), 0);
    stop.cancel();
}

#[tokio::test]
async fn a_holder_that_does_not_answer_is_evicted_after_the_callback_timeout() {
    let (nid, locks, stop) = start(Duration::from_secs(1)).await;
    let (a, ha) = client(nid, "client-a");
    let (b, _hb) = client(nid, "client-b");
    ha.silent.store(true, Ordering::SeqCst);
    enqueue(&a, &extent(LockMode::Pr, 0, LOCK_EXTENT_EOF)).await;
    let generation = a.generation();
    let started = std::time::Instant::now();
    let pw = enqueue(&b, &extent(LockMode::Pw, 0, 10)).await;
    assert!(pw.granted);
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(900),
        "granted after {waited:?}"
    );
    assert_eq!(ha.callbacks.load(Ordering::SeqCst), 1);
    assert_eq!(locks.len(), 1, "only B's lock is left");
    // A's connection was closed; its next request reconnects as a new export.
    a.ping().await.unwrap();
    assert!(a.generation() > generation);
    stop.cancel();
}

#[tokio::test]
async fn a_client_that_disconnects_loses_its_locks_at_once() {
    let (nid, locks, stop) = start(Duration::from_secs(30)).await;
    let (a, ha) = client(nid, "client-a");
    let (b, _hb) = client(nid, "client-b");
    ha.silent.store(true, Ordering::SeqCst);
    enqueue(&a, &extent(LockMode::Pw, 0, LOCK_EXTENT_EOF)).await;
    let waiting = tokio::spawn(async move { enqueue(&b, &extent(LockMode::Pw, 0, 10)).await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!waiting.is_finished());
    a.disconnect().await;
    let pw = tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .unwrap()
        .unwrap();
    assert!(pw.granted);
    assert_eq!(locks.len(), 1);
    stop.cancel();
}

#[tokio::test]
async fn nowait_enqueue_is_refused_with_eagain_and_own_locks_are_called_back() {
    let (nid, _locks, stop) = start(Duration::from_secs(30)).await;
    let (a, ha) = client(nid, "client-a");
    let (b, hb) = client(nid, "client-b");
    enqueue(&a, &extent(LockMode::Pr, 0, LOCK_EXTENT_EOF)).await;
    // A asking for PW over its own PR: its PR is called back like anyone's (the server
    // never drops a lock the client did not name).
    enqueue(&a, &extent(LockMode::Pw, 0, LOCK_EXTENT_EOF)).await;
    assert_eq!(ha.callbacks.load(Ordering::SeqCst), 1);
    let mut req = extent(LockMode::Pr, 0, 10);
    req.flags = sheen_wire::ldlm_flags::BLOCK_NOWAIT;
    let err = b
        .call::<_, EnqueueReply>(Opcode::LdlmEnqueue, 0, &req)
        .await
        .unwrap_err();
    assert_eq!(err.errno(), sheen_wire::Errno::EAGAIN, "{err}");
    assert_eq!(hb.callbacks.load(Ordering::SeqCst), 0);
    stop.cancel();
}

#[tokio::test]
async fn a_conflict_calls_back_only_locks_on_the_same_resource() {
    let (nid, locks, stop) = start(Duration::from_secs(30)).await;
    let (a, ha) = client(nid, "client-a");
    let (b, _hb) = client(nid, "client-b");
    // A reads two objects, then B writes the first: only A's PR on the first goes.
    let mut other = extent(LockMode::Pr, 0, LOCK_EXTENT_EOF);
    other.desc.resource = ResourceId::object(0, 43);
    enqueue(&a, &extent(LockMode::Pr, 0, LOCK_EXTENT_EOF)).await;
    let kept = enqueue(&a, &other).await;
    enqueue(&b, &extent(LockMode::Pw, 0, 10)).await;
    assert_eq!(locks.len(), 2, "B's PW and A's PR on the other object");
    assert_eq!(ha.callbacks.load(Ordering::SeqCst), 1);
    assert_eq!(kept.desc.resource, ResourceId::object(0, 43));
    stop.cancel();
}

fn inode_lock(bits: u64) -> LockDesc {
    LockDesc {
        resource: ResourceId::fid(sheen_wire::Fid::ROOT),
        mode: LockMode::Pr,
        policy: LockPolicy::Ibits { bits },
    }
}

#[tokio::test]
async fn try_enqueue_grants_at_once_or_not_at_all() {
    use crate::TryEnqueued::{Busy, Granted, Held};
    use sheen_rpc::ExportId;
    use sheen_wire::ibits::{LOOKUP, UPDATE};

    let config = Config {
        max_locks_per_client: 4,
        ..Config::default()
    };
    let locks = LockServer::new("MDT0000", Exports::new(), config);
    let (e1, e2) = (ExportId(1), ExportId(2));
    let granted = |r| match r {
        Ok(Granted { handle, .. }) => handle,
        other => panic!("not granted: {other:?}"),
    };
    let lookup1 = granted(locks.try_enqueue(e1, inode_lock(LOOKUP)));
    // Held already: not taken twice; a lock covering more bits is a new one.
    assert_eq!(locks.try_enqueue(e1, inode_lock(LOOKUP)), Ok(Held));
    let both1 = granted(locks.try_enqueue(e1, inode_lock(LOOKUP | UPDATE)));
    assert_eq!(locks.try_enqueue(e1, inode_lock(UPDATE)), Ok(Held));
    granted(locks.try_enqueue(e2, inode_lock(LOOKUP)));
    assert_eq!(locks.len(), 3);

    // The server changes the attributes: its CW waits for E1's UPDATE lock to go.
    let change = {
        let locks = Arc::clone(&locks);
        tokio::spawn(async move {
            let desc = LockDesc {
                mode: LockMode::Cw,
                ..inode_lock(UPDATE)
            };
            let guard = locks.lock_for_server(desc).await.unwrap();
            tokio::time::sleep(Duration::from_millis(100)).await;
            drop(guard);
        })
    };
    while locks.len() < 4 {
        tokio::task::yield_now().await;
    }
    // In the change's way: refused, not queued, and E1's lock being called back does not
    // count as held. What does not conflict with the change is still granted or held.
    assert_eq!(locks.try_enqueue(e2, inode_lock(UPDATE)), Ok(Busy));
    assert_eq!(locks.try_enqueue(e1, inode_lock(UPDATE)), Ok(Busy));
    assert!(!locks.holds_uncalled(e1, &inode_lock(UPDATE)));
    assert!(locks.holds_uncalled(e1, &inode_lock(LOOKUP)));
    assert!(!locks.holds_uncalled(e2, &inode_lock(UPDATE)));
    assert_eq!(locks.try_enqueue(e2, inode_lock(LOOKUP)), Ok(Held));
    assert_eq!(locks.try_enqueue(e1, inode_lock(LOOKUP)), Ok(Held));
    assert_eq!(locks.len(), 4, "nothing queued");
    assert!(!change.is_finished());
    locks.cancel(e1, &[both1]);
    tokio::time::timeout(Duration::from_secs(5), change)
        .await
        .unwrap()
        .unwrap();
    let update2 = granted(locks.try_enqueue(e2, inode_lock(UPDATE)));
    assert_eq!(locks.len(), 3);

    // The per-client limit is an error, not a refusal.
    granted(locks.try_enqueue(e1, inode_lock(UPDATE)));
    let other = |bits| LockDesc {
        resource: ResourceId::object(0, bits),
        ..inode_lock(bits)
    };
    granted(locks.try_enqueue(e1, other(1)));
    granted(locks.try_enqueue(e1, other(2)));
    let err = locks.try_enqueue(e1, other(4)).unwrap_err();
    assert_eq!(err.errno(), sheen_wire::Errno::EAGAIN, "{err}");
    // A bad request is an error too: an extent lock on an inode with inode-bits locks.
    let bad = LockDesc {
        resource: ResourceId::fid(sheen_wire::Fid::ROOT),
        ..extent(LockMode::Pr, 0, 1).desc
    };
    assert!(locks.try_enqueue(e2, bad).is_err());
    locks.cancel(e1, &[lookup1]);
    locks.cancel(e2, &[update2]);
}
