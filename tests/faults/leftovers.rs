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
