//! Failover NIDs: the OSS is killed on its NID and started again on its failover NID with the
//! same block files; the mounted client finds it there and carries on, and a fresh mount
//! finds it too. The same for the MDS with its MDT, while a file is held open (and unlinked)
//! across the move.

use std::fs;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use sheen_client::Creds;
use sheen_cluster::{Cluster, ClusterSpec, Daemon};
use sheen_tests::{pattern, run_ok};

const MIB: usize = 1 << 20;
/// The longest a failover may take as seen by the application (the import retries for 60 s).
const BOUND: Duration = Duration::from_secs(30);

fn expected(seeds: std::ops::Range<u64>) -> Vec<u8> {
    seeds.flat_map(|seed| pattern(seed, MIB)).collect()
}

/// Appends one MiB per seed and syncs.
fn append(path: &Path, seeds: std::ops::Range<u64>) -> std::io::Result<()> {
    let mut f = fs::OpenOptions::new().append(true).open(path)?;
    for seed in seeds {
        f.write_all(&pattern(seed, MIB))?;
    }
    f.sync_all()
}

fn striped(lfs: &Path, path: &Path) {
    run_ok(
        lfs,
        &["setstripe", "-c", "4", "-S", "1M", path.to_str().unwrap()],
    );
}

/// Reads the whole file (a fresh open, so the kernel asks the client, which asks the OSS).
fn check(path: &Path, want: &[u8]) {
    let data = fs::read(path).unwrap();
    assert_eq!(data.len(), want.len(), "size of {}", path.display());
    assert!(data == want, "{} differs", path.display());
}

#[test]
fn oss_failover_to_its_second_nid() {
    failover_on("tcp");
}

#[test]
fn oss_failover_to_its_second_nid_on_rdma() {
    failover_on("o2ib");
}

fn failover_on(net: &str) {
    let tmp = tempfile::tempdir().expect("temp dir");
    let mut spec = ClusterSpec::new(tmp.path().join("cluster"));
    spec.net = net.to_owned();
    spec.n_osts = 4;
    spec.ost_size_bytes = 256 << 20;
    spec.oss_failnode = true;
    let mut cluster = Cluster::start(spec).expect("start cluster");
    let mnt = tmp.path().join("mnt");
    cluster.mount(&mnt).unwrap();
    let lfs = cluster.bin("lfs");
    let (nid_a, nid_b) = (
        cluster.nid(Daemon::Oss),
        cluster.failnode(Daemon::Oss).unwrap(),
    );
    assert_ne!(nid_a, nid_b);

    let file = mnt.join("striped.bin");
    striped(&lfs, &file);
    fs::File::create(&file).unwrap();
    append(&file, 100..116).unwrap();
    check(&file, &expected(100..116));

    // SIGKILL on NID A, started again on NID B with the same block files.
    cluster.failover_oss().unwrap();
    assert_eq!(cluster.nid(Daemon::Oss), nid_b);
    assert_eq!(cluster.failnode(Daemon::Oss), Some(nid_a.clone()));
    let started = Instant::now();
    check(&file, &expected(100..116));
    append(&file, 116..124).unwrap();
    check(&file, &expected(100..124));
    assert!(started.elapsed() < BOUND, "took {:?}", started.elapsed());
    if std::env::var_os("RUST_LOG").is_none() {
        // At the default level the client logs where it went.
        let log = fs::read_to_string(cluster.logs_dir().join("mount-0.log")).unwrap();
        assert!(
            log.lines()
                .any(|l| l.contains("failed over to the next NID") && l.contains(&nid_b)),
            "the mount log does not show the failover:\n{log}"
        );
    }
    // A file created after the failover: the MDS precreates its objects on NID B too.
    let second = mnt.join("after-failover.bin");
    striped(&lfs, &second);
    append(&second, 200..208).unwrap();
    check(&second, &expected(200..208));

    // And back to NID A: the same mount follows.
    cluster.failover_oss().unwrap();
    assert_eq!(cluster.nid(Daemon::Oss), nid_a);
    let started = Instant::now();
    check(&file, &expected(100..124));
    append(&second, 208..212).unwrap();
    assert!(started.elapsed() < BOUND, "took {:?}", started.elapsed());

    // A fresh mount reads what the MGS now lists ([A, B]) and finds everything.
    cluster.unmount(&mnt).unwrap();
    cluster.mount(&mnt).unwrap();
    check(&file, &expected(100..124));
    check(&second, &expected(200..212));
    // Once more over to B, with the fresh mount.
    cluster.failover_oss().unwrap();
    check(&second, &expected(200..212));
    append(&file, 124..126).unwrap();
    check(&file, &expected(100..126));
}

/// An OSS that stops answering (SIGSTOP: its connections stay up, nothing is reset) is left
/// by the client at the request timeout (`-o timeout=2`): the write in flight waits while
/// the client drops the connection and tries the NIDs in turn; once the hung OSS is fenced
/// (SIGKILL) and the target started on its failover NID, the write goes through there.
#[test]
fn oss_that_stops_answering_is_left_at_the_request_timeout() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let mut spec = ClusterSpec::new(tmp.path().join("cluster"));
    spec.n_osts = 4;
    spec.ost_size_bytes = 256 << 20;
    spec.oss_failnode = true;
    let mut cluster = Cluster::start(spec).expect("start cluster");
    let mnt = tmp.path().join("mnt");
    cluster.mount_with_options(&mnt, Some("timeout=2")).unwrap();
    let lfs = cluster.bin("lfs");
    let file = mnt.join("striped.bin");
    striped(&lfs, &file);
    fs::File::create(&file).unwrap();
    append(&file, 100..104).unwrap();
    check(&file, &expected(100..104));

    let pid = cluster.pid(Daemon::Oss).expect("OSS pid");
    let pid = libc::pid_t::try_from(pid).expect("pid fits");
    // SAFETY: kill has no memory-safety preconditions; the pid is our child's.
    assert_eq!(
        unsafe { libc::kill(pid, libc::SIGSTOP) },
        0,
        "SIGSTOP the OSS"
    );
    let writer = std::thread::spawn({
        let file = file.clone();
        move || append(&file, 104..108)
    });
    // The client notices the silence at the request timeout, not at a broken connection.
    let log = cluster.logs_dir().join("mount-0.log");
    let deadline = Instant::now() + BOUND;
    while !fs::read_to_string(&log).is_ok_and(|l| l.contains("request timed out")) {
        assert!(
            Instant::now() < deadline,
            "no request timeout in the mount log"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!writer.is_finished(), "the OSS is silent: the write waits");
    // Fence the hung OSS and serve the target from its failover NID.
    let started = Instant::now();
    cluster.failover_oss().unwrap();
    while !writer.is_finished() {
        assert!(started.elapsed() < BOUND, "the write did not go through");
        std::thread::sleep(Duration::from_millis(50));
    }
    writer
        .join()
        .expect("writer thread")
        .expect("the write after failover");
    check(&file, &expected(100..108));
}

#[test]
fn mds_failover_to_its_second_nid() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let mut spec = ClusterSpec::new(tmp.path().join("cluster"));
    spec.n_osts = 2;
    spec.ost_size_bytes = 256 << 20;
    spec.mds_failnode = true;
    spec.recovery_window = Some(Duration::from_secs(2));
    let mut cluster = Cluster::start(spec).expect("start cluster");
    let mnt = tmp.path().join("mnt");
    cluster.mount(&mnt).unwrap();
    let (nid_a, nid_b) = (
        cluster.nid(Daemon::Mds),
        cluster.failnode(Daemon::Mds).unwrap(),
    );
    assert_ne!(nid_a, nid_b);
    let dir = mnt.join("d");
    fs::create_dir(&dir).unwrap();
    let file = dir.join("f.bin");
    fs::File::create(&file).unwrap();
    append(&file, 0..4).unwrap();
    // Held open and unlinked across the move: it must survive (the client reopens it).
    let held = dir.join("held.bin");
    fs::File::create(&held).unwrap();
    append(&held, 10..12).unwrap();
    let open_held = fs::File::open(&held).unwrap();
    fs::remove_file(&held).unwrap();

    // SIGKILL on NID A, started again on NID B with the same MDT.
    cluster.failover_mds().unwrap();
    assert_eq!(cluster.nid(Daemon::Mds), nid_b);
    let started = Instant::now();
    check(&file, &expected(0..4));
    append(&file, 4..6).unwrap();
    check(&file, &expected(0..6));
    fs::write(dir.join("new"), b"after the failover").unwrap();
    let mut names: Vec<String> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["f.bin", "new"]);
    assert!(started.elapsed() < BOUND, "took {:?}", started.elapsed());
    // Past the MDS's recovery window, the unlinked file held open is still there.
    std::thread::sleep(Duration::from_secs(3));
    let mut back = Vec::new();
    std::io::Read::read_to_end(&mut &open_held, &mut back).unwrap();
    assert!(back == expected(10..12), "the open unlinked file changed");
    drop(open_held);

    // A fresh mount finds the MDS at NID B (the MGS lists [B, A] now), then back at A.
    cluster.unmount(&mnt).unwrap();
    cluster.mount(&mnt).unwrap();
    check(&file, &expected(0..6));
    cluster.failover_mds().unwrap();
    assert_eq!(cluster.nid(Daemon::Mds), nid_a);
    check(&file, &expected(0..6));
    assert_eq!(fs::read(dir.join("new")).unwrap(), b"after the failover");
    cluster.stop().unwrap();
}

/// An OSS that comes back on a NID the MGS never listed for it (a cluster started again on
/// other ports, say), while the MDS, started meanwhile, is already precreating objects on the
/// old NID: once the OSS registers its new NID, the waiting precreate goes there, and the
/// create that waited for it succeeds well before the request timeout (60 s).
#[test]
fn mds_follows_an_oss_back_on_a_new_nid() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let mut spec = ClusterSpec::new(tmp.path().join("cluster"));
    spec.n_osts = 2;
    spec.ost_size_bytes = 256 << 20;
    spec.recovery_window = Some(Duration::from_secs(2));
    let mut cluster = Cluster::start(spec).expect("start cluster");
    let mnt = tmp.path().join("mnt");
    cluster.mount(&mnt).unwrap();
    let lfs = cluster.bin("lfs");
    striped(&lfs, &mnt);
    fs::write(mnt.join("before"), expected(0..2)).unwrap();
    // A client learns the OSS's NID when it mounts: this one would not follow the move.
    cluster.unmount(&mnt).unwrap();
    let old_nid = cluster.nid(Daemon::Oss);

    cluster.stop_daemon(Daemon::Mds).unwrap();
    cluster.stop_oss().unwrap();
    cluster.move_daemon(Daemon::Oss).unwrap();
    assert_ne!(cluster.nid(Daemon::Oss), old_nid);
    // The MDS starts while the MGS still lists the OSS's old NID; its first create must
    // precreate objects there. The create comes from a client of the MDS alone.
    cluster.start_daemon(Daemon::Mds).unwrap();
    let (rt, client) = crate::native_client(&cluster);
    let started = Instant::now();
    let created = {
        let client = client.clone();
        let root = client.root_fid();
        rt.spawn(async move {
            client
                .create(root, b"during", 0o644, Creds::default(), None)
                .await
        })
    };
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        !created.is_finished(),
        "the create did not wait for the OSS"
    );
    cluster.start_oss().unwrap();
    let (_, layout) = rt
        .block_on(created)
        .unwrap()
        .expect("the create while the OSS moved");
    assert!(started.elapsed() < BOUND, "took {:?}", started.elapsed());
    let objects = layout.map_or(0, |l| l.components[0].stripe.objects.len());
    assert_eq!(objects, 2, "a stripe on each OST");
    rt.block_on(client.unmount());

    // A fresh mount finds the OSS at its new NID and the objects of both files there.
    cluster.mount(&mnt).unwrap();
    check(&mnt.join("before"), &expected(0..2));
    let during = mnt.join("during");
    append(&during, 10..13).unwrap();
    check(&during, &expected(10..13));
    cluster.stop().unwrap();
}
