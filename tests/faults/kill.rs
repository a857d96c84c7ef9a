//! An OSS killed with SIGKILL while an application writes: the application carries on after
//! the restart without an error, and every byte it wrote is there. The same for the MDS
//! during fsyncs, and a file unlinked while open that outlives an MDS restart, also when
//! another open of it was being closed as the MDS went away.

use std::fs;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use sheen_client::{Bytes, Creds};
use sheen_tests::{pattern, run_ok};

const MIB: usize = 1 << 20;
const FILE_MIB: usize = 160;

fn write_all(path: &Path) -> std::io::Result<()> {
    let mut f = fs::OpenOptions::new().write(true).open(path)?;
    for i in 0..FILE_MIB {
        f.write_all(&pattern(7000 + i as u64, MIB))?;
        if i % 8 == 7 {
            f.sync_data()?;
        }
    }
    f.sync_all()
}

fn check(path: &Path) {
    let data = fs::read(path).unwrap();
    assert_eq!(data.len(), FILE_MIB * MIB);
    for (i, chunk) in data.chunks(MIB).enumerate() {
        assert!(chunk == pattern(7000 + i as u64, MIB), "MiB {i} differs");
    }
}

#[test]
fn oss_killed_during_writes() {
    let (_tmp, mut cluster, mnt) = crate::mounted(4);
    let file = mnt.join("during-kill.bin");
    let lfs = cluster.bin("lfs");
    run_ok(
        &lfs,
        &["setstripe", "-c", "4", "-S", "1M", file.to_str().unwrap()],
    );
    let writer = {
        let file = file.clone();
        std::thread::spawn(move || write_all(&file))
    };
    // Kill the OSS once the writer is well under way (bounded wait), then start it again.
    let deadline = Instant::now() + Duration::from_secs(60);
    while fs::metadata(&file).map(|m| m.len()).unwrap_or(0) < (8 * MIB) as u64 {
        assert!(Instant::now() < deadline, "the writer did not start");
        assert!(!writer.is_finished(), "the writer ended before the kill");
        std::thread::sleep(Duration::from_millis(5));
    }
    cluster.kill_oss().unwrap();
    // The kill must land in the middle of the workload, or this test tests nothing.
    assert!(
        !writer.is_finished(),
        "the writer finished before the OSS was killed"
    );
    cluster.start_oss().unwrap();
    let result = writer.join().unwrap();
    assert!(result.is_ok(), "the application saw {result:?}");
    check(&file);
    // And again from a fresh mount, so the data comes from the OSTs, not the page cache.
    cluster.unmount(&mnt).unwrap();
    cluster.mount(&mnt).unwrap();
    check(&file);
}

/// Writes `n` MiB one at a time, each followed by fsync (which also records the size on the
/// MDS), so that an MDS death lands on a size update in flight.
fn write_fsync_each(path: &Path, n: usize) -> std::io::Result<()> {
    let mut f = fs::OpenOptions::new().write(true).open(path)?;
    for i in 0..n {
        f.write_all(&pattern(9000 + i as u64, MIB))?;
        f.sync_all()?;
    }
    Ok(())
}

#[test]
fn mds_killed_during_fsyncs() {
    const N: usize = 64;
    let (_tmp, mut cluster, mnt) = crate::mounted(2);
    let file = mnt.join("mds-kill.bin");
    let lfs = cluster.bin("lfs");
    run_ok(
        &lfs,
        &["setstripe", "-c", "2", "-S", "1M", file.to_str().unwrap()],
    );
    let writer = {
        let file = file.clone();
        std::thread::spawn(move || write_fsync_each(&file, N))
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while fs::metadata(&file).map(|m| m.len()).unwrap_or(0) < (4 * MIB) as u64 {
        assert!(Instant::now() < deadline, "the writer did not start");
        assert!(!writer.is_finished(), "the writer ended before the kill");
        std::thread::sleep(Duration::from_millis(2));
    }
    cluster.kill_mds().unwrap();
    assert!(
        !writer.is_finished(),
        "the writer finished before the MDS was killed"
    );
    cluster.start_mds().unwrap();
    let result = writer.join().unwrap();
    assert!(result.is_ok(), "the application saw {result:?}");
    cluster.unmount(&mnt).unwrap();
    cluster.mount(&mnt).unwrap();
    let data = fs::read(&file).unwrap();
    assert_eq!(data.len(), N * MIB, "size on the MDS after the restart");
    for (i, chunk) in data.chunks(MIB).enumerate() {
        assert!(chunk == pattern(9000 + i as u64, MIB), "MiB {i} differs");
    }
}

/// A file unlinked while open stays usable through its descriptor across an MDS restart:
/// the client reopens it on its new connection, within the MDS's recovery window, so the
/// MDS keeps the orphan; the last close then frees it.
#[test]
fn unlinked_open_file_survives_an_mds_restart() {
    let window = Duration::from_secs(2);
    let (_tmp, mut cluster, mnt) =
        crate::mounted_with(2, |spec| spec.recovery_window = Some(window));
    let path = mnt.join("orphan.bin");
    let data = pattern(77, 3 * MIB);
    fs::write(&path, &data).unwrap();
    let mut f = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .unwrap();
    fs::remove_file(&path).unwrap();
    cluster.kill_mds().unwrap();
    cluster.start_mds().unwrap();
    // A listing goes to the MDS: the client reconnects and reopens its open files.
    let names: Vec<_> = fs::read_dir(&mnt).unwrap().collect();
    assert!(names.is_empty(), "the unlinked name is back: {names:?}");
    // Past the window, orphans nobody reopened are gone; this one must not be.
    std::thread::sleep(window + Duration::from_secs(2));
    use std::io::{Read, Seek, SeekFrom};
    let mut back = Vec::new();
    f.seek(SeekFrom::Start(0)).unwrap();
    f.read_to_end(&mut back).unwrap();
    assert_eq!(back.len(), data.len(), "size of the open orphan");
    assert!(back == data, "the open orphan's data changed");
    f.seek(SeekFrom::End(0)).unwrap();
    f.write_all(b"still writable").unwrap();
    f.sync_all().unwrap();
    drop(f);
}

/// A close the MDS did not answer before it restarted is sent again on the new connection,
/// here after the client reopened its files there (the close waits out its retry backoff
/// while another call reconnects): it must end the open it closes, not the file's other
/// open, or the file, unlinked, would be freed under that open. (Were the close to reconnect
/// first, the new MDS would ignore it and the test would pass either way.) The last close
/// then destroys the orphan's objects at once.
#[test]
fn a_close_resent_after_the_reopens_leaves_the_other_open() {
    let (_tmp, mut cluster, _mnt) = crate::mounted_with(2, |spec| {
        spec.recovery_window = Some(Duration::from_secs(2));
    });
    let (rt, client) = crate::native_client(&cluster);
    let root = client.root_fid();
    let data = Bytes::from(pattern(78, MIB));
    let (fid, layout) = rt.block_on(async {
        let created = client
            .create_open(root, b"twice", 0o644, Creds::default(), None)
            .await
            .unwrap();
        let layout = created.layout.expect("a regular file's layout");
        let fid = created.attr.fid;
        client.write(fid, &layout, 0, data.clone()).await.unwrap();
        client.open(fid, libc::O_RDWR as u32).await.unwrap();
        client.unlink(root, b"twice").await.unwrap();
        (fid, layout)
    });
    cluster.kill_mds().unwrap();
    // The first open's close finds no MDS and retries, its backoff growing to a second.
    let closing = {
        let client = client.clone();
        rt.spawn(async move { client.close(fid).await })
    };
    std::thread::sleep(Duration::from_millis(2500));
    cluster.start_mds().unwrap();
    // Another call reconnects; the reopens go out at once, the close at its next retry.
    rt.block_on(client.getattr(root)).unwrap();
    rt.block_on(closing).unwrap().unwrap();
    // Past the recovery window too: the open left keeps the orphan and its data.
    std::thread::sleep(Duration::from_secs(3));
    let (orphan, _) = rt
        .block_on(client.getattr(fid))
        .expect("the orphan, still open once, is on the MDS");
    assert_eq!(orphan.nlink, 0);
    let back = rt
        .block_on(client.read(fid, &layout, MIB as u64, 0, MIB as u32))
        .expect("the orphan, still open once, is readable");
    assert!(back == data, "the open orphan's data changed");
    // The last close frees the orphan, and its objects go without waiting for another change.
    rt.block_on(client.close(fid)).unwrap();
    let objects = &layout.components[0].stripe.objects;
    let deadline = Instant::now() + Duration::from_secs(10);
    for o in objects {
        loop {
            match rt.block_on(client.ost_getattr(o.ost_idx, o.oid)) {
                Err(e) if e.errno() == sheen_client::Errno::ENOENT => break,
                other => assert!(
                    Instant::now() < deadline,
                    "OST {} object {} after the last close: {other:?}",
                    o.ost_idx,
                    o.oid
                ),
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    rt.block_on(client.unmount());
}
