//! POSIX suite: every call's success path and the error codes POSIX names for it, through a
//! real FUSE mount of a real cluster, as root and as an unprivileged user (a forked child that
//! drops to uid/gid 65534 before the call). One `#[test]` per area, each with its own cluster;
//! each case runs in a fresh directory and failures are gathered per area.
//!
//! What is not checked here (because Sheen does not do it yet) is listed in docs/POSIX.md.

// Test code: a failed unwrap is a failed test, with its message.
#![allow(clippy::unwrap_used)]
mod acls;
mod big_dir;
mod dirs;
mod files;
mod links;
mod names;
mod permissions;
mod sys;
mod xattrs;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::Instant;

use sheen_cluster::{Cluster, ClusterSpec};

/// The unprivileged user and group the non-root cases run as.
pub const NOBODY: u32 = 65534;
/// A second unprivileged user, for "someone else's file" cases.
pub const OTHER: u32 = 4242;

/// One case: a name and a body that gets a fresh empty directory (mode 0777, owned by root).
pub type Case = (&'static str, fn(&Path));

/// A running cluster with one mount, and the temp dir holding both.
pub struct Mounted {
    _tmp: tempfile::TempDir,
    pub cluster: Cluster,
    pub mnt: PathBuf,
}

impl Mounted {
    /// Two small OSTs on TCP, mounted; the path to the mount is searchable by everyone.
    pub fn start() -> Mounted {
        let tmp = tempfile::tempdir().expect("temp dir");
        // Unprivileged children must be able to walk down to the mount.
        fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o755)).unwrap();
        let mut spec = ClusterSpec::new(tmp.path().join("cluster"));
        spec.n_osts = 2;
        spec.ost_size_bytes = 256 << 20;
        let mut cluster = Cluster::start(spec).expect("start cluster");
        let mnt = tmp.path().join("mnt");
        cluster.mount(&mnt).unwrap();
        Mounted {
            _tmp: tmp,
            cluster,
            mnt,
        }
    }

    /// Runs every case in its own directory `mnt/<area>.<case>` and fails with the list of
    /// the cases that panicked; then checks the daemon logs hold no ERROR line.
    pub fn run(self, area: &str, cases: &[Case]) {
        let started = Instant::now();
        let mut failed = Vec::new();
        for (name, body) in cases {
            let dir = self.mnt.join(format!("{area}.{name}"));
            fs::create_dir(&dir).unwrap();
            fs::set_permissions(&dir, fs::Permissions::from_mode(0o777)).unwrap();
            let t = Instant::now();
            let outcome = catch_unwind(AssertUnwindSafe(|| body(&dir)));
            match outcome {
                Ok(()) => println!("posix {area}/{name}: ok ({:?})", t.elapsed()),
                Err(e) => {
                    let msg = e
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| e.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                        .unwrap_or_default();
                    println!("posix {area}/{name}: FAILED: {msg}");
                    failed.push(format!("{name}: {msg}"));
                }
            }
        }
        println!(
            "posix {area}: {} cases, {} failed, {:?}",
            cases.len(),
            failed.len(),
            started.elapsed()
        );
        if sheen_tests::fuse_uring_pass() {
            let pid = self.cluster.mount_pid(&self.mnt).expect("the mount's pid");
            sheen_tests::assert_fuse_uring_queues(pid);
        }
        let errors = self.cluster.log_errors();
        self.cluster.stop().unwrap();
        assert!(
            failed.is_empty(),
            "{area}: failed cases:\n{}",
            failed.join("\n")
        );
        assert!(
            errors.iter().all(|l| !l.contains(" ERROR ")),
            "errors in daemon logs: {errors:#?}"
        );
    }
}

#[test]
fn permissions() {
    Mounted::start().run("permissions", permissions::CASES);
}

#[test]
fn names() {
    Mounted::start().run("names", names::CASES);
}

#[test]
fn files() {
    Mounted::start().run("files", files::CASES);
}

#[test]
fn dirs() {
    Mounted::start().run("dirs", dirs::CASES);
}

#[test]
fn xattrs() {
    Mounted::start().run("xattrs", xattrs::CASES);
}

#[test]
fn links() {
    Mounted::start().run("links", links::CASES);
}

#[test]
fn acls() {
    Mounted::start().run("acls", acls::CASES);
}

#[test]
fn fsync_is_durable() {
    let mut m = Mounted::start();
    files::fsync_survives_crashes(&mut m);
    m.cluster.stop().unwrap();
}

#[test]
fn noatime_mount() {
    let mut m = Mounted::start();
    files::noatime_mount(&mut m);
    m.cluster.stop().unwrap();
}

#[test]
fn read_only_mount() {
    let mut m = Mounted::start();
    files::read_only_mount(&mut m);
    m.cluster.stop().unwrap();
}

#[test]
fn fallocate_across_mounts_and_osts() {
    let mut m = Mounted::start();
    files::fallocate_across_mounts_and_osts(&mut m);
    m.cluster.stop().unwrap();
}

#[test]
fn writes_until_the_ost_is_full() {
    let mut m = Mounted::start();
    files::writes_until_the_ost_is_full(&mut m);
    m.cluster.stop().unwrap();
}
