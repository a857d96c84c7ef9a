//! Bad input on the wire: garbage bytes and frames with a wrong checksum get the connection
//! closed, and the daemon keeps serving everyone else.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use sheen_client::{Client, ClientConfig, MountSpec};
use sheen_transport::rdma::frame::{Ctrl, CTRL_BYTES};
use sheen_wire::{msg, NetType, Nid, TargetKind};

/// Sends `bytes` on a fresh connection and checks the server closes it. On an RDMA NID the
/// server first sends its handshake (HELLO, READY), which is all it may answer.
fn expect_closed(nid: &Nid, bytes: &[u8]) {
    let allowed = match nid.net {
        NetType::Tcp => 0,
        NetType::Rdma => 2 * CTRL_BYTES,
    };
    let mut s = TcpStream::connect(nid.socket_addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(bytes).unwrap();
    let mut buf = [0u8; 256];
    let mut answered = 0;
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                answered += n;
                assert!(
                    answered <= allowed,
                    "server answered {answered} bytes to garbage instead of closing"
                );
            }
            Err(e) => {
                assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}");
                break;
            }
        }
    }
}

/// Wraps a raw message frame for `net`: on RDMA, after a valid handshake (offering no shared
/// memory) and in a SEND control frame, so that the frame itself is what gets checked.
fn framed(net: NetType, frame: &[u8]) -> Vec<u8> {
    match net {
        NetType::Tcp => frame.to_vec(),
        NetType::Rdma => {
            let hello = Ctrl::Hello {
                pid: 0,
                fd: 0,
                token: 0,
                pool_bytes: 0,
            };
            let mut out = hello.encode().to_vec();
            out.extend_from_slice(&Ctrl::Ready { mapped: false }.encode());
            out.extend_from_slice(&Ctrl::Send { desc: None }.encode());
            out.extend_from_slice(frame);
            out
        }
    }
}

#[test]
fn garbage_and_bad_checksums_close_the_connection_only() {
    garbage_and_bad_checksums_on(crate::TCP);
}

#[test]
fn garbage_and_bad_checksums_close_the_connection_only_on_rdma() {
    garbage_and_bad_checksums_on(crate::RDMA);
}

fn garbage_and_bad_checksums_on(net: &str) {
    let (_tmp, cluster) = crate::cluster_on(2, net);
    let rt = crate::runtime();
    let spec: MountSpec = cluster.mount_spec().parse().unwrap();
    let client = rt
        .block_on(Client::mount(&spec, ClientConfig::default()))
        .unwrap();
    let targets: Vec<msg::TargetInfo> = client.fs_config().targets.clone();
    let mut nids: Vec<Nid> = targets
        .iter()
        .filter(|t| t.kind != TargetKind::Mgs)
        .map(|t| Nid::parse(&t.nids[0]).unwrap())
        .collect();
    nids.push(Nid::parse(&cluster.mgs_nid()).unwrap());
    nids.dedup();

    // A well-formed header whose body does not match its checksum.
    let mut header = sheen_wire::MsgHeader::request(
        sheen_wire::Opcode::ObdPing.as_u32(),
        1,
        sheen_wire::frame::NO_TARGET,
    );
    let body = b"the body that was checksummed".to_vec();
    header.seal_body(&body);
    let mut bad_crc = header.encode().to_vec();
    let mut evil = body;
    evil[0] ^= 0xff;
    bad_crc.extend_from_slice(&evil);
    // A header claiming a body far above the limit, with a correct header checksum.
    let mut huge = header;
    huge.body_len = u32::MAX;
    let huge = huge.encode().to_vec();

    for nid in &nids {
        expect_closed(nid, &[0x5a; 4096]);
        expect_closed(nid, &framed(nid.net, &bad_crc));
        expect_closed(nid, &framed(nid.net, &huge));
    }
    // Everyone else is still served.
    rt.block_on(async {
        let s = client.statfs().await.unwrap();
        assert!(s.blocks > 0);
        let root = client.root().await.unwrap();
        assert!(root.is_dir());
        client.unmount().await;
    });
}
