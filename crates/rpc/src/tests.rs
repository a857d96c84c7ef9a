//! RPC round trips against a real TCP server on loopback.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use sheen_wire::{msg, Errno, Nid, Opcode};
use tokio::io::AsyncWriteExt;
use tokio_util::sync::CancellationToken;

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
    let n = tokio::time::timeout(Duration::from_secs(5), async {
        use tokio::io::AsyncReadExt;
        bad.read(&mut buf).await
    })
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
