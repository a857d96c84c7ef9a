//! A FUSE-over-io_uring queue whose thread stops: the mount aborts its FUSE connection and
//! ends, instead of leaving every request of that CPU waiting for ever. Runs in the io_uring
//! pass of `cargo xtask test` (the kernel offers the queues only with `enable_uring`).

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

/// Whether mountinfo lists a mount on `dir`.
fn mounted(dir: &Path) -> bool {
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap();
    sheen_client::mounts::count_fuse_mounts(&mountinfo, dir) > 0
}

#[test]
fn a_stopped_io_uring_queue_aborts_the_mount_instead_of_hanging_its_cpu() {
    if !sheen_tests::fuse_uring_pass() {
        eprintln!("skipped: needs FUSE over io_uring (the second pass of `cargo xtask test`)");
        return;
    }
    let (tmp, mut cluster, mnt) = crate::mounted(1);
    let second = tmp.path().join("second");
    // The thread of CPU 0's queue stops once its entries are registered. Whether the
    // cluster saw the mount appear before it went depends on timing; either way it must go.
    let _ = cluster.mount_with_options(&second, Some("fault_uring_stop=0"));
    let second = fs::canonicalize(&second).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while mounted(&second) {
        assert!(
            Instant::now() < deadline,
            "the mount with a stopped queue is still there"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let logs: String = fs::read_dir(cluster.logs_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with("mount-")
        })
        .map(|p| fs::read_to_string(p).unwrap())
        .collect();
    assert!(
        logs.contains("aborted the FUSE connection"),
        "no abort in the mount logs:\n{logs}"
    );
    // The first mount, whose queues all run, still serves.
    fs::write(mnt.join("f"), b"still here").unwrap();
    assert_eq!(fs::read(mnt.join("f")).unwrap(), b"still here");
}
