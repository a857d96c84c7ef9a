//! What the native client reads ahead (`sheen_client::FileReader`) is handed out only while
//! it is still what the file holds: a write through another client (which calls back the
//! lock the data was read under) and a write by the reading client itself (under a PW lock
//! it holds, which nothing calls back) are both seen by the next read, and a reader that
//! jumps around reads what is there. The reader here is a native client in the test process,
//! a third client beside mounts A and B.

use std::fs::{self, OpenOptions};
use std::os::unix::fs::FileExt;
use std::time::Duration;

use bytes::Bytes;
use sheen_client::{Client, ClientConfig, FileReader, MountSpec};
use sheen_tests::pattern;

use crate::{run, Env, Logs, KIB};

/// Time limit of each test here.
const LIMIT: Duration = Duration::from_secs(60);
const MIB: usize = 1 << 20;
/// The file: a few of the client's 1 MiB RPCs, all within one window (4 MiB at least).
const FILE: usize = 4 * MIB;
/// Each read of the reader.
const PIECE: usize = 64 * KIB;

#[test]
fn what_is_read_ahead_follows_writes() {
    run(
        "what_is_read_ahead_follows_writes",
        LIMIT,
        Logs::Clean,
        read_ahead_follows_writes,
    );
}

fn read_ahead_follows_writes(env: &Env) {
    let mut model = pattern(31, FILE);
    fs::write(env.a.join("ra"), &model).expect("write the file on A");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let spec: MountSpec = env.spec.parse().expect("mount spec");
        let client = Client::mount(&spec, ClientConfig::default())
            .await
            .expect("native mount");
        let (attr, layout) = client
            .lookup(client.root_fid(), b"ra")
            .await
            .expect("lookup ra");
        let layout = layout.expect("a layout");
        // A's close reports the size to the MDS behind the close: ask the objects too.
        let (glimpsed, _) = client.glimpse(attr.fid, &layout).await.expect("glimpse");
        assert_eq!(attr.size.max(glimpsed), FILE as u64);

        // Another client writes into what was read ahead: its PW lock calls ours back.
        let mut reader = client.reader(attr.fid, layout.clone(), FILE as u64);
        expect(&mut reader, &model, 0, PIECE, "first read").await;
        reader.wait_ahead().await;
        let theirs = pattern(32, 100 * KIB);
        let at = 2 * MIB + 5;
        OpenOptions::new()
            .write(true)
            .open(env.b.join("ra"))
            .and_then(|f| f.write_all_at(&theirs, at as u64))
            .expect("write on B");
        model[at..at + theirs.len()].copy_from_slice(&theirs);
        read_on(&mut reader, &model, PIECE, "after B wrote").await;

        // This client writes the whole file, so that it holds PW locks on all of it, reads
        // ahead under them, then writes again under the same locks: nothing is called back.
        model = pattern(33, FILE);
        client
            .write(attr.fid, &layout, 0, Bytes::from(model.clone()))
            .await
            .expect("native write of the whole file");
        let mut reader = client.reader(attr.fid, layout.clone(), FILE as u64);
        expect(
            &mut reader,
            &model,
            0,
            PIECE,
            "first read after the native write",
        )
        .await;
        reader.wait_ahead().await;
        let ours = pattern(34, 100 * KIB);
        let at = 3 * MIB + 7;
        client
            .write(attr.fid, &layout, at as u64, Bytes::from(ours.clone()))
            .await
            .expect("native write");
        model[at..at + ours.len()].copy_from_slice(&ours);
        read_on(&mut reader, &model, PIECE, "after this client wrote").await;

        // Jumps: back, forward, and sequential again from there.
        for (offset, len) in [
            (MIB, PIECE),
            (0, 3 * PIECE),
            (3 * PIECE, MIB),
            (FILE - 10, 100),
        ] {
            expect(&mut reader, &model, offset, len, "after a jump").await;
        }
        client.unmount().await;
    });
}

/// Reads the rest of the file from `from` in pieces, checking each against `model`.
async fn read_on(reader: &mut FileReader, model: &[u8], from: usize, when: &str) {
    for offset in (from..model.len()).step_by(PIECE) {
        expect(reader, model, offset, PIECE, when).await;
    }
}

async fn expect(reader: &mut FileReader, model: &[u8], offset: usize, len: usize, when: &str) {
    let got = reader
        .read(offset as u64, u32::try_from(len).expect("a short read"))
        .await
        .unwrap_or_else(|e| panic!("read of {len} at {offset} ({when}): {e}"));
    let want = &model[offset..(offset + len).min(model.len())];
    if got[..] != *want {
        let first = got.iter().zip(want).position(|(g, w)| g != w);
        panic!(
            "read of {len} at {offset} ({when}): {} bytes, first difference at {:?}",
            got.len(),
            first.map(|i| offset + i)
        );
    }
}
