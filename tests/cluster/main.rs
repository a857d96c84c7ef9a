//! End-to-end suite: real daemons as processes on 127.0.0.1, block files in a temp dir, a
//! real FUSE mount. Every test cleans up through `Cluster`'s drop (unmount, kill by pid).

// Test code: a failed unwrap is a failed test, with its message.
#![allow(clippy::unwrap_used)]
mod bad_input;
mod end_to_end;

use sheen_cluster::{Cluster, ClusterSpec};

/// The networks every end-to-end test body runs on: TCP, and the RDMA-emulated transport.
pub const TCP: &str = "tcp";
pub const RDMA: &str = "o2ib";

/// A cluster of `n_osts` small OSTs on TCP in a fresh temp dir (kept alive by the guard).
pub fn cluster(n_osts: u32) -> (tempfile::TempDir, Cluster) {
    cluster_on(n_osts, TCP)
}

/// A cluster of `n_osts` small OSTs whose NIDs are all on `net` (`tcp` or `o2ib`).
pub fn cluster_on(n_osts: u32, net: &str) -> (tempfile::TempDir, Cluster) {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut spec = ClusterSpec::new(dir.path().join("cluster"));
    spec.n_osts = n_osts;
    spec.net = net.to_owned();
    spec.ost_size_bytes = 256 << 20;
    let cluster = Cluster::start(spec).expect("start cluster");
    (dir, cluster)
}

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}
