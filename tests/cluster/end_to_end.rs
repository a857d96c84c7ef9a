//! The whole path: striped write and read through FUSE, layouts through `lfs`, the OST
//! object index, namespace operations, restarts of the OSS and MDS.

use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use sheen_client::{Client, ClientConfig, MountSpec};
use sheen_tests::{parse_getstripe, pattern, run_ok};

const MIB: usize = 1 << 20;
const FILE_MIB: usize = 64;

fn write_file(path: &Path, seed: u64) {
    let mut f = fs::File::create(path).unwrap();
    for i in 0..FILE_MIB {
        f.write_all(&pattern(seed + i as u64, MIB)).unwrap();
    }
    f.sync_all().unwrap();
}

fn check_file(path: &Path, seed: u64) {
    let mut f = fs::File::open(path).unwrap();
    assert_eq!(f.metadata().unwrap().len(), (FILE_MIB * MIB) as u64);
    let mut buf = vec![0u8; MIB];
    for i in 0..FILE_MIB {
        f.read_exact(&mut buf).unwrap();
        assert!(
            buf == pattern(seed + i as u64, MIB),
            "MiB {i} of {} differs",
            path.display()
        );
    }
    assert_eq!(f.read(&mut buf).unwrap(), 0, "file longer than written");
}

#[test]
fn striped_io_namespace_and_restarts() {
    striped_io_namespace_and_restarts_on(crate::TCP);
}

#[test]
fn striped_io_namespace_and_restarts_on_rdma() {
    striped_io_namespace_and_restarts_on(crate::RDMA);
}

fn striped_io_namespace_and_restarts_on(net: &str) {
    let (tmp, mut cluster) = crate::cluster_on(4, net);
    assert!(cluster.mgs_nid().ends_with(&format!("@{net}")));
    let mnt = tmp.path().join("mnt");
    fs::create_dir_all(&mnt).unwrap();
    cluster.mount(&mnt).unwrap();
    let lfs = cluster.bin("lfs");

    // `lctl ping` sends OBD_PING to every daemon, over the cluster's transport.
    let lctl = cluster.bin("lctl");
    for daemon in sheen_cluster::Daemon::ALL {
        let nid = cluster.nid(daemon);
        let out = run_ok(&lctl, &["ping", &nid]);
        assert_eq!(out, format!("12345-{nid}\n"), "lctl ping {nid}");
    }

    // A 64 MiB file striped over 4 OSTs with 1 MiB stripes.
    let big = mnt.join("big.bin");
    run_ok(
        &lfs,
        &["setstripe", "-c", "4", "-S", "1M", big.to_str().unwrap()],
    );
    write_file(&big, 100);
    check_file(&big, 100);

    let out = run_ok(&lfs, &["getstripe", big.to_str().unwrap()]);
    let (count, size, objects) = parse_getstripe(&out);
    assert_eq!((count, size), (4, 1 << 20), "getstripe said:\n{out}");
    let mut osts: Vec<u32> = objects.iter().map(|o| o.0).collect();
    osts.sort();
    assert_eq!(osts, vec![0, 1, 2, 3], "getstripe said:\n{out}");

    // Each OST's object index holds a quarter of the file.
    let rt = crate::runtime();
    rt.block_on(async {
        let spec: MountSpec = cluster.mount_spec().parse().unwrap();
        let client = Client::mount(&spec, ClientConfig::default()).await.unwrap();
        for (ost_idx, oid) in &objects {
            let attr = client.ost_getattr(*ost_idx, *oid).await.unwrap();
            assert_eq!(
                attr.size,
                (FILE_MIB * MIB / 4) as u64,
                "OST {ost_idx} object {oid}"
            );
            let listed = client.ost_list(*ost_idx, *oid, 1).await.unwrap();
            assert_eq!(listed.objects.first().map(|o| o.oid), Some(*oid));
        }
        client.unmount().await;
    });

    // Namespace operations through the mount.
    let d = mnt.join("dir");
    fs::create_dir(&d).unwrap();
    fs::create_dir(d.join("sub")).unwrap();
    fs::write(d.join("a.txt"), b"hello sheen").unwrap();
    fs::rename(d.join("a.txt"), d.join("sub/b.txt")).unwrap();
    assert!(!d.join("a.txt").exists());
    assert_eq!(fs::read(d.join("sub/b.txt")).unwrap(), b"hello sheen");
    fs::write(d.join("victim"), b"old").unwrap();
    fs::write(d.join("winner"), b"new").unwrap();
    fs::rename(d.join("winner"), d.join("victim")).unwrap();
    assert_eq!(fs::read(d.join("victim")).unwrap(), b"new");
    std::os::unix::fs::symlink("sub/b.txt", d.join("link")).unwrap();
    assert_eq!(
        fs::read_link(d.join("link")).unwrap(),
        Path::new("sub/b.txt")
    );
    assert_eq!(fs::read(d.join("link")).unwrap(), b"hello sheen");
    fs::hard_link(d.join("sub/b.txt"), d.join("hard")).unwrap();
    assert_eq!(fs::metadata(d.join("hard")).unwrap().nlink(), 2);
    fs::remove_file(d.join("sub/b.txt")).unwrap();
    assert_eq!(fs::metadata(d.join("hard")).unwrap().nlink(), 1);
    assert_eq!(fs::read(d.join("hard")).unwrap(), b"hello sheen");
    let err = fs::remove_dir(&d).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::ENOTEMPTY));
    fs::remove_dir(d.join("sub")).unwrap();
    let mut names: Vec<String> = fs::read_dir(&d)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, vec!["hard", "link", "victim"]);

    // Restart the OSS and the MDS: the same mount carries on, and the data is all there.
    cluster.restart_oss().unwrap();
    cluster.restart_mds().unwrap();
    check_file(&big, 100);
    assert_eq!(fs::read(d.join("hard")).unwrap(), b"hello sheen");
    fs::write(d.join("after-restart"), b"still writable").unwrap();

    // A fresh mount (no kernel cache) reads everything back from the servers.
    cluster.unmount(&mnt).unwrap();
    cluster.mount(&mnt).unwrap();
    check_file(&big, 100);
    assert_eq!(fs::read(d.join("victim")).unwrap(), b"new");
    assert_eq!(
        fs::read(d.join("after-restart")).unwrap(),
        b"still writable"
    );

    // Removing the file destroys its objects on every OST (in the background, in batches).
    fs::remove_file(&big).unwrap();
    rt.block_on(async {
        let spec: MountSpec = cluster.mount_spec().parse().unwrap();
        let client = Client::mount(&spec, ClientConfig::default()).await.unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        for (ost_idx, oid) in &objects {
            loop {
                match client.ost_getattr(*ost_idx, *oid).await {
                    Err(e) if e.errno() == sheen_client::Errno::ENOENT => break,
                    other => assert!(
                        std::time::Instant::now() < deadline,
                        "OST {ost_idx} object {oid} after the unlink: {other:?}"
                    ),
                }
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        }
        client.unmount().await;
    });
    let errors = cluster.log_errors();
    cluster.stop().unwrap();
    assert!(
        errors.iter().all(|l| !l.contains(" ERROR ")),
        "errors in daemon logs: {errors:#?}"
    );
}
