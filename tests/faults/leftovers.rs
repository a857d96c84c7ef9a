//! Objects the MDS precreated on the OSTs and never used are destroyed when the MDS starts
//! again; objects in use are kept.

use std::collections::BTreeSet;
use std::fs;
use std::time::{Duration, Instant};

use sheen_client::{Client, ClientConfig, MountSpec};
use sheen_tests::{parse_getstripe, pattern, run_ok};

#[test]
fn unused_precreated_objects_are_destroyed_at_mds_start() {
    let (_tmp, mut cluster, mnt) = crate::mounted(2);
    let lfs = cluster.bin("lfs");
    // A directory default, so no file's first layout is replaced (a replaced layout's
    // objects are destroyed in the background, which would race with the restart).
    let dir = mnt.join("d");
    fs::create_dir(&dir).unwrap();
    run_ok(
        &lfs,
        &["setstripe", "-c", "2", "-S", "1M", dir.to_str().unwrap()],
    );
    let mut used = BTreeSet::new();
    for i in 0..6u64 {
        let f = dir.join(format!("f{i}"));
        fs::write(&f, pattern(i, 3 << 20)).unwrap();
        let (_, _, objects) = parse_getstripe(&run_ok(&lfs, &["getstripe", f.to_str().unwrap()]));
        used.extend(objects);
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let spec: MountSpec = cluster.mount_spec().parse().unwrap();
    let listed = |client: &Client| {
        rt.block_on(async {
            let mut all = BTreeSet::new();
            for ost in 0..2u32 {
                let list = client.ost_list(ost, 0, 4096).await.unwrap();
                all.extend(list.objects.iter().map(|o| (ost, o.oid)));
            }
            all
        })
    };
    let client = rt
        .block_on(Client::mount(&spec, ClientConfig::default()))
        .unwrap();
    let before = listed(&client);
    assert!(
        before.len() > used.len(),
        "the MDS precreates ahead: {}",
        before.len()
    );

    cluster.restart_mds().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let now = listed(&client);
        if now == used {
            break;
        }
        assert!(used.is_subset(&now), "an object in use was destroyed");
        assert!(
            Instant::now() < deadline,
            "{} objects left, {} in use",
            now.len(),
            used.len()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    rt.block_on(client.unmount());
    for i in 0..6u64 {
        assert!(fs::read(dir.join(format!("f{i}"))).unwrap() == pattern(i, 3 << 20));
    }
    // New files after the restart get fresh objects.
    fs::write(mnt.join("new"), b"after").unwrap();
    assert_eq!(fs::read(mnt.join("new")).unwrap(), b"after");
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

#[test]
fn objects_of_files_removed_while_the_oss_was_down_are_destroyed_after_an_mds_restart() {
    let (_tmp, mut cluster, mnt) = crate::mounted(2);
    let lfs = cluster.bin("lfs");
    let dir = mnt.join("d");
    fs::create_dir(&dir).unwrap();
    run_ok(
        &lfs,
        &["setstripe", "-c", "2", "-S", "1M", dir.to_str().unwrap()],
    );
    let mut removed = BTreeSet::new();
    let mut kept = BTreeSet::new();
    for i in 0..4u64 {
        let f = dir.join(format!("f{i}"));
        let mut file = fs::File::create(&f).unwrap();
        std::io::Write::write_all(&mut file, &pattern(i, 3 << 20)).unwrap();
        file.sync_all().unwrap();
        drop(file);
        let (_, _, objects) = parse_getstripe(&run_ok(&lfs, &["getstripe", f.to_str().unwrap()]));
        assert_eq!(objects.len(), 2);
        if i < 3 {
            removed.extend(objects);
        } else {
            kept.extend(objects);
        }
    }

    // The OSS is down when the files go: the MDS cannot destroy their objects, and then
    // stops before the OSS is back.
    cluster.stop_oss().unwrap();
    for i in 0..3u64 {
        fs::remove_file(dir.join(format!("f{i}"))).unwrap();
    }
    cluster.stop_mds().unwrap();
    cluster.start_oss().unwrap();
    cluster.start_mds().unwrap();

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let spec: MountSpec = cluster.mount_spec().parse().unwrap();
    let client = rt
        .block_on(Client::mount(&spec, ClientConfig::default()))
        .unwrap();
    // The restarted MDS destroys them from its records (and the objects it precreated and
    // never used); the kept file's objects stay.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let now = ost_objects(&rt, &client);
        assert!(kept.is_subset(&now), "an object in use was destroyed");
        if now == kept {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "objects of removed files left: {:?}",
            now.intersection(&removed).collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    rt.block_on(client.unmount());
    assert!(fs::read(dir.join("f3")).unwrap() == pattern(3, 3 << 20));
}

#[test]
fn objects_of_files_removed_while_the_oss_was_down_are_destroyed_once_it_is_back() {
    let (_tmp, mut cluster, mnt) = crate::mounted_with(2, |spec| {
        spec.mds_ost_retry = Some(Duration::from_secs(1));
    });
    let lfs = cluster.bin("lfs");
    // A directory default: no file's layout is replaced (its objects would be destroyed
    // too, and their failures would be logged alike).
    let dir = mnt.join("d");
    fs::create_dir(&dir).unwrap();
    run_ok(&lfs, &["setstripe", "-c", "2", dir.to_str().unwrap()]);
    let mut removed = BTreeSet::new();
    for i in 0..2u64 {
        let f = dir.join(format!("f{i}"));
        let mut file = fs::File::create(&f).unwrap();
        std::io::Write::write_all(&mut file, &pattern(i, 3 << 20)).unwrap();
        file.sync_all().unwrap();
        drop(file);
        let (_, _, objects) = parse_getstripe(&run_ok(&lfs, &["getstripe", f.to_str().unwrap()]));
        removed.extend(objects);
    }
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
    let (rt, client) = crate::native_client(&cluster);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let now = ost_objects(&rt, &client);
        if now.is_disjoint(&removed) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "objects of removed files left: {:?}",
            now.intersection(&removed).collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    rt.block_on(client.unmount());
}
