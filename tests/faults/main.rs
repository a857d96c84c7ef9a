//! Fault suite: servers killed in the middle of a workload, and corrupt blocks on disk. Real
//! daemons as processes on 127.0.0.1 with a real FUSE mount; every test cleans up through
//! `Cluster`'s drop (unmount, kill by pid).

// Test code: a failed unwrap is a failed test, with its message.
#![allow(clippy::unwrap_used)]

mod async_commit;
mod corruption;
mod failover;
mod kill;
mod leftovers;
mod resend;
mod uring;

use sheen_client::{Client, ClientConfig, MountSpec};
use sheen_cluster::{Cluster, ClusterSpec};

/// A cluster of `n_osts` small OSTs in a fresh temp dir, mounted at `<tmp>/mnt`.
pub fn mounted(n_osts: u32) -> (tempfile::TempDir, Cluster, std::path::PathBuf) {
    mounted_with(n_osts, |_| {})
}

/// [`mounted`] with the spec adjusted by `tune` first.
pub fn mounted_with(
    n_osts: u32,
    tune: impl FnOnce(&mut ClusterSpec),
) -> (tempfile::TempDir, Cluster, std::path::PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut spec = ClusterSpec::new(dir.path().join("cluster"));
    spec.n_osts = n_osts;
    tune(&mut spec);
    spec.ost_size_bytes = 256 << 20;
    let mut cluster = Cluster::start(spec).expect("start cluster");
    let mnt = dir.path().join("mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    cluster.mount(&mnt).unwrap();
    (dir, cluster, mnt)
}

/// A native client of `cluster` (no FUSE), on a runtime of its own with one worker.
pub fn native_client(cluster: &Cluster) -> (tokio::runtime::Runtime, Client) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let spec: MountSpec = cluster.mount_spec().parse().unwrap();
    let client = rt
        .block_on(Client::mount(&spec, ClientConfig::default()))
        .unwrap();
    (rt, client)
}
