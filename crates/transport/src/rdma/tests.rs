//! Tests of the RDMA-emulated transport: both one-sided paths (shared memory and carrier),
//! bad keys from a forged peer, peer death, many messages in flight.

use super::*;
use sheen_wire::frame::NO_TARGET;

async fn pair(t: &RdmaTransport) -> (Connection, Connection) {
    let mut l = t
        .listen(&Nid::parse("127.0.0.1:0@o2ib").unwrap())
        .await
        .unwrap();
    let nid = l.local_nid();
    assert_eq!(nid.net, NetType::Rdma);
    let (c, s) = tokio::join!(t.connect(&nid), l.accept());
    (c.unwrap(), s.unwrap())
}

fn transports() -> [(&'static str, RdmaTransport); 2] {
    [
        ("shm", RdmaTransport { shm: true }),
        ("carrier", RdmaTransport::carrier_only()),
    ]
}

fn message(xid: u64, bulk: Bytes) -> Message {
    Message {
        header: MsgHeader::request(4, xid, NO_TARGET),
        body: Bytes::from(format!("body {xid}")),
        bulk,
        bulk_crcs: None,
    }
}

fn pattern(len: usize, seed: u8) -> Bytes {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

#[tokio::test]
async fn round_trips_with_bulk_on_both_paths() {
    for (name, t) in transports() {
        let (mut c, mut s) = pair(&t).await;
        let shm_reads_before = SHM_READS.load(Ordering::SeqCst);
        for (xid, len) in [
            (1u64, 0usize),
            (2, 1),
            (3, 4096),
            (4, (3 << 20) + 17),
            (5, 16 << 20),
        ] {
            let bulk = pattern(len, xid as u8);
            c.sender.send(message(xid, bulk.clone())).await.unwrap();
            let got = s.receiver.recv().await.unwrap();
            assert_eq!(got.header.xid, xid, "{name}");
            assert_eq!(got.body, Bytes::from(format!("body {xid}")), "{name}");
            assert_eq!(got.header.bulk_len, len as u64, "{name}");
            assert_eq!(got.bulk, bulk, "{name}: bulk of {len} bytes");
            // And the reply direction.
            let mut reply = message(xid, pattern(len / 2, 9));
            reply.header.kind = sheen_wire::MsgKind::Reply;
            s.sender.send(reply).await.unwrap();
            let back = c.receiver.recv().await.unwrap();
            assert_eq!(back.bulk, pattern(len / 2, 9), "{name}");
        }
        if name == "shm" {
            // Same host, memfd mappable: the one-sided reads went through shared memory.
            assert!(SHM_READS.load(Ordering::SeqCst) >= shm_reads_before + 7);
        }
        drop(c);
        assert!(matches!(
            s.receiver.recv().await,
            Err(TransportError::Closed)
        ));
    }
}

#[tokio::test]
async fn regions_are_deregistered_after_completion() {
    for (name, t) in transports() {
        let (mut c, mut s) = pair(&t).await;
        // Five times more bulk than the pool holds: sends would wait forever if the
        // regions were not deregistered on DONE.
        let all = async {
            for i in 0..40u64 {
                c.sender
                    .send(message(i, pattern(4 << 20, i as u8)))
                    .await
                    .unwrap();
                let got = s.receiver.recv().await.unwrap();
                assert_eq!(got.bulk.len(), 4 << 20, "{name}");
            }
        };
        tokio::time::timeout(Duration::from_secs(60), all)
            .await
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_messages_in_flight() {
    for (name, t) in transports() {
        let (c, mut s) = pair(&t).await;
        let mut sender = c.sender;
        const N: u64 = 2000;
        let send = tokio::spawn(async move {
            for xid in 0..N {
                let bulk = if xid % 3 == 0 {
                    pattern((xid as usize * 977) % 300_000, xid as u8)
                } else {
                    Bytes::new()
                };
                sender.send(message(xid, bulk)).await.unwrap();
            }
            sender
        });
        for xid in 0..N {
            let got = s.receiver.recv().await.unwrap();
            assert_eq!(got.header.xid, xid, "{name}");
            if xid % 3 == 0 {
                assert_eq!(
                    got.bulk,
                    pattern((xid as usize * 977) % 300_000, xid as u8),
                    "{name}"
                );
            }
        }
        let _sender = send.await.unwrap();
    }
}

#[tokio::test]
async fn concurrent_senders_share_one_connection() {
    for (name, t) in transports() {
        let (c, mut s) = pair(&t).await;
        let sender = Arc::new(tokio::sync::Mutex::new(c.sender));
        let mut tasks = Vec::new();
        for task in 0..8u64 {
            let sender = Arc::clone(&sender);
            tasks.push(tokio::spawn(async move {
                for i in 0..20u64 {
                    let xid = task * 1000 + i;
                    let msg = message(xid, pattern(1 << 20, xid as u8));
                    sender.lock().await.send(msg).await.unwrap();
                }
            }));
        }
        for _ in 0..160 {
            let got = s.receiver.recv().await.unwrap();
            assert_eq!(got.bulk, pattern(1 << 20, got.header.xid as u8), "{name}");
        }
        for t in tasks {
            t.await.unwrap();
        }
    }
}

#[tokio::test]
async fn peer_death_is_closed_not_a_hang() {
    for (name, t) in transports() {
        let (mut c, s) = pair(&t).await;
        // The peer dies with our bulk still registered and unread.
        c.sender
            .send(message(1, pattern(1 << 20, 1)))
            .await
            .unwrap();
        drop(s);
        let r = tokio::time::timeout(Duration::from_secs(10), c.receiver.recv())
            .await
            .unwrap();
        assert!(matches!(r, Err(TransportError::Closed)), "{name}: {r:?}");
        // Sending on a dead connection fails (at once, or after the carrier notices).
        let mut failed = false;
        for _ in 0..100 {
            if c.sender.send(message(2, pattern(10, 1))).await.is_err() {
                failed = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(failed, "{name}");
    }
}

/// A hand-written peer speaking raw carrier frames, for forged keys and garbage.
struct RawPeer {
    stream: TcpStream,
}

impl RawPeer {
    /// Connects to `nid` and completes the handshake without offering shared memory.
    async fn connect(nid: &Nid) -> RawPeer {
        let mut stream = TcpStream::connect(nid.socket_addr()).await.unwrap();
        let hello = Ctrl::Hello {
            pid: 0,
            fd: 0,
            token: 0,
            pool_bytes: POOL_BYTES,
        };
        stream.write_all(&hello.encode()).await.unwrap();
        stream
            .write_all(&Ctrl::Ready { mapped: false }.encode())
            .await
            .unwrap();
        let mut peer = RawPeer { stream };
        assert!(matches!(peer.read().await, Some(Ctrl::Hello { .. })));
        assert!(matches!(peer.read().await, Some(Ctrl::Ready { .. })));
        peer
    }

    async fn read(&mut self) -> Option<Ctrl> {
        read_ctrl(&mut self.stream).await.ok().flatten()
    }

    async fn send_msg(&mut self, desc: Option<BulkDesc>, bulk_len: u64) {
        let mut h = MsgHeader::request(4, 7, NO_TARGET);
        h.seal_body(b"x");
        h.bulk_len = bulk_len;
        self.stream
            .write_all(&Ctrl::Send { desc }.encode())
            .await
            .unwrap();
        self.stream.write_all(&h.encode()).await.unwrap();
        self.stream.write_all(b"x").await.unwrap();
    }
}

#[tokio::test]
async fn forged_descriptor_from_a_raw_peer_closes_the_connection() {
    let t = RdmaTransport::carrier_only();
    let mut l = t
        .listen(&Nid::parse("127.0.0.1:0@rdma").unwrap())
        .await
        .unwrap();
    let nid = l.local_nid();
    // The raw peer claims a bulk and answers our READ with a verbs error (bad key).
    let (mut peer, conn) = tokio::join!(RawPeer::connect(&nid), l.accept());
    let mut conn = conn.unwrap();
    let desc = BulkDesc {
        rkey: 0xdead_beef,
        addr: 1 << 16,
        len: 10,
        crc: 0,
    };
    peer.send_msg(Some(desc), 10).await;
    let recv = tokio::spawn(async move { conn.receiver.recv().await });
    let Some(Ctrl::Read { id, .. }) = peer.read().await else {
        panic!("expected a READ request");
    };
    let resp = Ctrl::ReadResp {
        id,
        status: VerbsError::BadKey(0).code(),
        crc: 0,
        len: 0,
    };
    peer.stream.write_all(&resp.encode()).await.unwrap();
    let r = recv.await.unwrap();
    assert!(matches!(r, Err(TransportError::Rdma(_))), "{r:?}");

    // The raw peer READs our memory with keys we never issued, and out of bounds.
    let (mut peer, conn) = tokio::join!(RawPeer::connect(&nid), l.accept());
    let mut conn = conn.unwrap();
    for (rkey, addr) in [
        (0u64, 0u64),
        (u64::MAX, 0),
        (1 << 32 | 5, 1 << 16),
        (5, u64::MAX),
    ] {
        let read = Ctrl::Read {
            id: 9,
            rkey,
            addr,
            len: 100,
        };
        peer.stream.write_all(&read.encode()).await.unwrap();
        let Some(Ctrl::ReadResp {
            id: 9,
            status,
            len: 0,
            ..
        }) = peer.read().await
        else {
            panic!("expected a refusal");
        };
        assert_ne!(status, 0);
    }
    // Our real region, read past its end, is refused too.
    conn.sender.send(message(1, pattern(100, 1))).await.unwrap();
    let Some(Ctrl::Send { desc: Some(d) }) = peer.read().await else {
        panic!("expected a SEND with bulk");
    };
    let mut hb = [0u8; MSG_HEADER_BYTES + 10];
    peer.stream
        .read_exact(&mut hb[..MSG_HEADER_BYTES])
        .await
        .unwrap();
    let h = MsgHeader::decode(hb[..MSG_HEADER_BYTES].try_into().unwrap()).unwrap();
    let mut body = vec![0u8; h.body_len as usize];
    peer.stream.read_exact(&mut body).await.unwrap();
    for (addr, len, ok) in [
        (d.addr, 100, true),
        (d.addr + 1, 100, false),
        (d.addr - 1, 2, false),
    ] {
        let read = Ctrl::Read {
            id: 10,
            rkey: d.rkey,
            addr,
            len,
        };
        peer.stream.write_all(&read.encode()).await.unwrap();
        let Some(Ctrl::ReadResp { status, len: n, .. }) = peer.read().await else {
            panic!("expected a READ response");
        };
        assert_eq!(status == 0, ok, "{addr:#x}+{len}");
        let mut data = vec![0u8; n as usize];
        peer.stream.read_exact(&mut data).await.unwrap();
        if ok {
            assert_eq!(&data[..], &pattern(100, 1)[..]);
        }
    }
    // A DONE for a key we never issued ends the connection.
    peer.stream
        .write_all(&Ctrl::Done { rkey: 12345 }.encode())
        .await
        .unwrap();
    let r = conn.receiver.recv().await;
    assert!(matches!(r, Err(TransportError::Rdma(_))), "{r:?}");

    // Garbage and a bulk length disagreeing with the descriptor end the connection.
    for raw in [0u8, 1] {
        let (mut peer, conn) = tokio::join!(RawPeer::connect(&nid), l.accept());
        let mut conn = conn.unwrap();
        if raw == 0 {
            peer.stream.write_all(&[0x42u8; 100]).await.unwrap();
        } else {
            peer.send_msg(None, 5).await;
        }
        assert!(conn.receiver.recv().await.is_err());
    }
    // The listener still serves a good client.
    let (c, s) = tokio::join!(t.connect(&nid), l.accept());
    let (mut c, mut s) = (c.unwrap(), s.unwrap());
    c.sender.send(message(1, pattern(5, 5))).await.unwrap();
    assert_eq!(s.receiver.recv().await.unwrap().bulk, pattern(5, 5));
}

#[tokio::test]
async fn silent_client_does_not_block_accept() {
    let t = RdmaTransport::default();
    let mut l = t
        .listen(&Nid::parse("127.0.0.1:0@o2ib").unwrap())
        .await
        .unwrap();
    let nid = l.local_nid();
    let _silent = TcpStream::connect(nid.socket_addr()).await.unwrap();
    let (c, s) = tokio::time::timeout(Duration::from_secs(5), async {
        tokio::join!(t.connect(&nid), l.accept())
    })
    .await
    .unwrap();
    let (mut c, mut s) = (c.unwrap(), s.unwrap());
    c.sender.send(message(1, Bytes::new())).await.unwrap();
    assert_eq!(s.receiver.recv().await.unwrap().header.xid, 1);
}

#[test]
fn for_nid_picks_rdma() {
    assert!(crate::for_nid(&Nid::parse("127.0.0.1:7001@o2ib").unwrap()).is_ok());
    assert!(crate::for_nid(&Nid::parse("127.0.0.1@rdma").unwrap()).is_ok());
}
