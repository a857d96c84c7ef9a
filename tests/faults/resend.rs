//! A modifying request whose reply was lost, resent after the MDS restarted: the MDS finds
//! the request in its durable client records (written in the change's own transaction) and
//! answers with a reconstructed reply instead of executing it again. Spoken on the wire by
//! hand (a CONNECT, then MDS_REINT with a chosen xid, then the same request with RESENT), so
//! that the test decides which reply is "lost".

use std::time::Duration;

use bytes::Bytes;
use sheen_cluster::Daemon;
use sheen_transport::Connection;
use sheen_wire::frame::{FLAG_RESENT, NO_TARGET};
use sheen_wire::msg::{ConnectReq, Creds, ReintReply, ReintReq};
use sheen_wire::{Errno, Fid, Message, MsgHeader, Nid, Opcode};

const CLIENT: &str = "resend-test-client";

async fn connect(nid: Nid) -> Connection {
    let transport = sheen_transport::for_nid(&nid).unwrap();
    let mut conn = transport.connect(&nid).await.unwrap();
    let req = ConnectReq {
        client_uuid: CLIENT.to_owned(),
        target: String::new(),
    };
    let reply = call(
        &mut conn,
        Opcode::MdsConnect,
        1,
        0,
        sheen_wire::encode(&req),
    )
    .await;
    assert_eq!(reply.header.status, 0, "connect");
    conn
}

async fn call(conn: &mut Connection, op: Opcode, xid: u64, flags: u8, body: Bytes) -> Message {
    let mut header = MsgHeader::request(op.as_u32(), xid, NO_TARGET);
    header.flags = flags;
    conn.sender
        .send(Message {
            header,
            body,
            bulk: Bytes::new(),
            bulk_crcs: None,
        })
        .await
        .unwrap();
    let reply = tokio::time::timeout(Duration::from_secs(30), conn.receiver.recv())
        .await
        .expect("a reply within 30 s")
        .unwrap();
    assert_eq!(reply.header.xid, xid);
    reply
}

fn mkdir(name: &str) -> Bytes {
    sheen_wire::encode(&ReintReq::Create {
        parent: Fid::ROOT,
        name: name.as_bytes().to_vec(),
        mode: libc::S_IFDIR | 0o755,
        rdev: 0,
        creds: Creds::default(),
        symlink: None,
        layout: None,
        open: false,
    })
}

fn created(reply: &Message) -> Fid {
    assert_eq!(reply.header.status, 0, "status of the create");
    let r: ReintReply = sheen_wire::decode(&reply.body).unwrap();
    r.attr.expect("the created directory's attributes").fid
}

#[test]
fn resend_after_mds_restart_is_answered_not_executed_again() {
    let (_tmp, mut cluster, _mnt) = crate::mounted(1);
    let nid = Nid::parse(&cluster.nid(Daemon::Mds)).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // Xids above any this test's connects use, unique to this run.
    let xid = 1 << 40;
    let first = rt.block_on(async {
        let mut conn = connect(nid).await;
        created(&call(&mut conn, Opcode::MdsReint, xid, 0, mkdir("made-once")).await)
    });
    // "The reply was lost": the MDS restarts before the client hears anything.
    cluster.kill_mds().unwrap();
    cluster.start_mds().unwrap();
    rt.block_on(async {
        let mut conn = connect(nid).await;
        let resent = call(
            &mut conn,
            Opcode::MdsReint,
            xid,
            FLAG_RESENT,
            mkdir("made-once"),
        )
        .await;
        assert_eq!(
            created(&resent),
            first,
            "the reconstructed reply names the directory"
        );
        assert!(
            resent.header.transno > 0,
            "the reply carries the change's transno"
        );
        // A new request for the same name is a new request: EEXIST.
        let other = call(&mut conn, Opcode::MdsReint, xid + 1, 0, mkdir("made-once")).await;
        assert_eq!(Errno::from_status(other.header.status), Some(Errno::EEXIST));
        // So is a resend of a request the MDS never executed.
        let unknown = call(
            &mut conn,
            Opcode::MdsReint,
            xid + 2,
            FLAG_RESENT,
            mkdir("made-once"),
        )
        .await;
        assert_eq!(
            Errno::from_status(unknown.header.status),
            Some(Errno::EEXIST)
        );
    });
}
