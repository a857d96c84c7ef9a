//! Bad input on the wire: garbage bytes and frames with a wrong checksum get the connection
//! closed, and the daemon keeps serving everyone else.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use sheen_client::{Client, ClientConfig, MountSpec};
use sheen_wire::{msg, Nid, TargetKind};

/// Sends `bytes` on a fresh connection and checks the server closes it.
fn expect_closed(nid: &Nid, bytes: &[u8]) {
    let mut s = TcpStream::connect(nid.socket_addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(bytes).unwrap();
    let mut buf = [0u8; 64];
    match s.read(&mut buf) {
        Ok(0) => {}
        Ok(n) => panic!("server answered {n} bytes to garbage instead of closing"),
        Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}"),
    }
}

#[test]
fn garbage_and_bad_checksums_close_the_connection_only() {
    let (_tmp, cluster) = crate::cluster(2);
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
        expect_closed(nid, &bad_crc);
        expect_closed(nid, &huge);
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
