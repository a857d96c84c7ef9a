//! OST objects nothing uses any more are destroyed: those the MDS precreated and never used
//! when it starts again, and those of removed files even when the MDS stopped, or the OSS
//! did not answer, before they were; objects in use are kept.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sheen_client::Client;
use sheen_cluster::Cluster;
use sheen_tests::{parse_getstripe, pattern, run_ok};

/// Makes `d` under `mnt` with a default layout of 2 stripes (so no file's first layout is
/// replaced: a replaced layout's objects are destroyed in the background, which would race
/// with what the tests do), writes `n` files of 3 MiB in it, fsynced, and returns the
/// directory and each file's (OST, object) pairs.
fn striped_files(cluster: &Cluster, mnt: &Path, n: u64) -> (PathBuf, Vec<BTreeSet<(u32, u64)>>) {
    let lfs = cluster.bin("lfs");
    let dir = mnt.join("d");
    fs::create_dir(&dir).unwrap();
    run_ok(
        &lfs,
        &["setstripe", "-c", "2", "-S", "1M", dir.to_str().unwrap()],
    );
    let mut objects = Vec::new();
    for i in 0..n {
        let f = dir.join(format!("f{i}"));
        let mut file = fs::File::create(&f).unwrap();
        std::io::Write::write_all(&mut file, &pattern(i, 3 << 20)).unwrap();
        file.sync_all().unwrap();
        drop(file);
        let (_, _, of) = parse_getstripe(&run_ok(&lfs, &["getstripe", f.to_str().unwrap()]));
        assert_eq!(of.len(), 2);
        objects.push(of.into_iter().collect());
    }
    (dir, objects)
}

/// The objects on the two OSTs, as the OSS lists them.
fn ost_objects(rt: &tokio::runtime::Runtime, client: &Client) -> BTreeSet<(u32, u64)> {
    rt.block_on(async {
        let mut all = BTreeSet::new();
        for ost in 0..2u32 {
            let list = client.ost_list(ost, 0, 4096).await.unwrap();
            all.extend(list.objects.iter().map(|o| (ost, o.oid)));
        }
        all
    })
}

/// Waits (at most 30 s) until the OSTs hold none of `gone` and all of `kept`, which must
/// stay throughout; with `exactly`, nothing else either.
fn wait_for_objects(
    cluster: &Cluster,
    gone: &BTreeSet<(u32, u64)>,
    kept: &BTreeSet<(u32, u64)>,
    exactly: bool,
) {
    let (rt, client) = crate::native_client(cluster);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let now = ost_objects(&rt, &client);
        assert!(kept.is_subset(&now), "an object in use was destroyed");
        if now.is_disjoint(gone) && (!exactly || now == *kept) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{} objects left, {} in use; of those to go: {:?}",
            now.len(),
            kept.len(),
            now.intersection(gone).collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    rt.block_on(client.unmount());
}

#[test]
fn unused_precreated_objects_are_destroyed_at_mds_start() {
    let (_tmp, mut cluster, mnt) = crate::mounted(2);
    let (dir, objects) = striped_files(&cluster, &mnt, 6);
    let used: BTreeSet<_> = objects.into_iter().flatten().collect();
    let (rt, client) = crate::native_client(&cluster);
    let before = ost_objects(&rt, &client);
    rt.block_on(client.unmount());
    assert!(
        before.len() > used.len(),
        "the MDS precreates ahead: {}",
        before.len()
    );

    cluster.restart_mds().unwrap();
    wait_for_objects(&cluster, &BTreeSet::new(), &used, true);
    for i in 0..6u64 {
        assert!(fs::read(dir.join(format!("f{i}"))).unwrap() == pattern(i, 3 << 20));
    }
    // New files after the restart get fresh objects.
    fs::write(mnt.join("new"), b"after").unwrap();
    assert_eq!(fs::read(mnt.join("new")).unwrap(), b"after");
}

#[test]
fn objects_of_files_removed_while_the_oss_was_down_are_destroyed_after_an_mds_restart() {
    let (_tmp, mut cluster, mnt) = crate::mounted(2);
    let (dir, mut objects) = striped_files(&cluster, &mnt, 4);
    let kept = objects.pop().unwrap();
    let removed: BTreeSet<_> = objects.into_iter().flatten().collect();

    // The OSS is down when the files go: the MDS cannot destroy their objects, and then
    // stops before the OSS is back.
    cluster.stop_oss().unwrap();
    for i in 0..3u64 {
        fs::remove_file(dir.join(format!("f{i}"))).unwrap();
    }
    cluster.stop_mds().unwrap();
    cluster.start_oss().unwrap();
    cluster.start_mds().unwrap();

    // The restarted MDS destroys them from its records (and the objects it precreated and
    // never used); the kept file's objects stay.
    wait_for_objects(&cluster, &removed, &kept, true);
    assert!(fs::read(dir.join("f3")).unwrap() == pattern(3, 3 << 20));
}

#[test]
fn objects_of_files_removed_while_the_oss_was_down_are_destroyed_once_it_is_back() {
    let (_tmp, mut cluster, mnt) = crate::mounted_with(2, |spec| {
        spec.mds_ost_retry = Some(Duration::from_secs(1));
    });
    let (dir, objects) = striped_files(&cluster, &mnt, 2);
    let removed: BTreeSet<_> = objects.into_iter().flatten().collect();
    // The OSS is down for longer than the MDS's requests retry it.
    cluster.stop_oss().unwrap();
    for i in 0..2u64 {
        fs::remove_file(dir.join(format!("f{i}"))).unwrap();
    }
    // Both OSTs' destroys fail before the OSS is back.
    let log = cluster.log_path(sheen_cluster::Daemon::Mds).to_path_buf();
    let failed_on = |ost: u32| {
        fs::read_to_string(&log).unwrap().lines().any(|l| {
            l.contains("failed to destroy objects") && l.contains(&format!("ost_idx={ost} "))
        })
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while !(failed_on(0) && failed_on(1)) {
        assert!(Instant::now() < deadline, "the destroys never failed");
        std::thread::sleep(Duration::from_millis(50));
    }
    cluster.start_oss().unwrap();
    // Sent again within the MDS's retry period, without a restart of the MDS.
    wait_for_objects(&cluster, &removed, &BTreeSet::new(), false);
}
