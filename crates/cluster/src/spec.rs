//! What cluster to start, and where the binaries are.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The binary whose presence marks a directory as holding the Sheen binaries.
const MARKER_BINARY: &str = "sheen-mgs";
/// How many parent directories of the running executable are searched.
const BIN_DIR_SEARCH_DEPTH: usize = 4;

/// Everything needed to start a cluster. Start from [`ClusterSpec::new`] and change fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterSpec {
    /// Holds the data dirs (`mgs/`, `mdt0/`), OST block files (`ost{i}.img`), `logs/` and,
    /// for a detached cluster, `cluster.json`. Created if missing.
    pub dir: PathBuf,
    /// Filesystem name.
    pub fsname: String,
    /// Number of OSTs, all served by the one OSS.
    pub n_osts: u32,
    /// Size of each OST block file, when the OSS formats it.
    pub ost_size_bytes: u64,
    /// Directory holding `sheen-mgs`, `sheen-mds`, `sheen-oss`, `sheen-mount`, `lfs`, `lctl`.
    pub bin_dir: PathBuf,
    /// Filesystem-wide default stripe count, given to the MGS.
    pub default_stripe_count: u32,
    /// Filesystem-wide default stripe size in bytes, given to the MGS.
    pub default_stripe_size: u64,
    /// LNet network type of every NID the cluster uses: `"tcp"` (default) or `"o2ib"` (the
    /// RDMA-emulated transport; `"rdma"` is accepted as its other spelling).
    pub net: String,
    /// Reserve a second port for the OSS at start and give it as `--failnode`, so that
    /// [`Cluster::failover_oss`](crate::Cluster::failover_oss) can move the OSS there.
    pub oss_failnode: bool,
    /// Give the MDS a second NID as `--failnode`, so that
    /// [`Cluster::failover_mds`](crate::Cluster::failover_mds) can move it there.
    pub mds_failnode: bool,
    /// How long the MDS and the OSS wait for a client to answer a lock callback before they
    /// evict it: given to both as `--callback-timeout SECS` (whole seconds, rounded up, at
    /// least 1). `None` (default) passes nothing, so the daemons use their own default.
    pub callback_timeout: Option<Duration>,
    /// How long the MDS gives clients to reconnect and reopen their files before it
    /// releases what they held open: `--recovery-window SECS` (whole seconds, rounded up).
    /// `None` (default) passes nothing.
    pub recovery_window: Option<Duration>,
    /// The MDS commits asynchronously, at most this often, and clients replay what a crash
    /// lost: `--commit-interval-ms MS`. `None` (default) passes nothing (commit before
    /// every reply).
    pub mds_commit_interval: Option<Duration>,
    /// How long the MDS's requests to an OST retry an OSS that does not answer:
    /// `--ost-retry-secs SECS` (whole seconds, rounded up). `None` (default) passes nothing.
    pub mds_ost_retry: Option<Duration>,
    /// Fault injection: the MDS keeps, after every commit, the image of its MDT a power loss
    /// would leave (`--crash-image-dir`), for
    /// [`Cluster::power_fail_mds`](crate::Cluster::power_fail_mds).
    pub mds_crash_image: bool,
    /// The IPv4 address every daemon listens on (default `127.0.0.1`): a test that puts its
    /// clients in network namespaces gives the address of the bridge it made.
    pub host: std::net::Ipv4Addr,
}

impl ClusterSpec {
    /// Defaults: fsname `sheen`, 4 OSTs of 1 GiB, stripe count 1, stripe size 1 MiB, network
    /// `tcp`, no failover NID, the daemons' own lock callback timeout, binaries from
    /// [`bin_dir`].
    pub fn new(dir: impl Into<PathBuf>) -> ClusterSpec {
        ClusterSpec {
            dir: dir.into(),
            fsname: "sheen".to_owned(),
            n_osts: 4,
            ost_size_bytes: 1 << 30,
            bin_dir: bin_dir(),
            default_stripe_count: 1,
            default_stripe_size: 1 << 20,
            net: "tcp".to_owned(),
            oss_failnode: false,
            mds_failnode: false,
            callback_timeout: None,
            recovery_window: None,
            mds_commit_interval: None,
            mds_ost_retry: None,
            mds_crash_image: false,
            host: std::net::Ipv4Addr::LOCALHOST,
        }
    }
}

/// Where the Sheen binaries are: `$SHEEN_BIN_DIR` if set, else the nearest directory at or
/// above the running executable that holds `sheen-mgs` (a test binary lives in
/// `target/debug/deps/`, xtask in `target/debug/`).
///
/// When none is found, returns the cargo profile directory the executable belongs to, so that
/// [`Cluster::start`](crate::Cluster::start) can name the missing binary.
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_default();
    bin_dir_from(std::env::var_os("SHEEN_BIN_DIR"), &exe, |dir| {
        dir.join(MARKER_BINARY).is_file()
    })
}

fn bin_dir_from(
    env_dir: Option<OsString>,
    exe: &Path,
    has_binaries: impl Fn(&Path) -> bool,
) -> PathBuf {
    if let Some(dir) = env_dir.filter(|dir| !dir.is_empty()) {
        return PathBuf::from(dir);
    }
    let parents = exe.ancestors().skip(1).take(BIN_DIR_SEARCH_DEPTH);
    if let Some(dir) = parents.clone().find(|dir| has_binaries(dir)) {
        return dir.to_owned();
    }
    let exe_dir = exe.parent().unwrap_or(Path::new("."));
    match (exe_dir.file_name(), exe_dir.parent()) {
        (Some(name), Some(profile_dir)) if name == "deps" => profile_dir.to_owned(),
        _ => exe_dir.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(env_dir: Option<&str>, exe: &str, dirs_with_binaries: &[&str], expected: &str) {
        let actual = bin_dir_from(env_dir.map(OsString::from), Path::new(exe), |dir| {
            dirs_with_binaries.iter().any(|d| Path::new(d) == dir)
        });
        assert_eq!(actual, Path::new(expected), "exe {exe}");
    }

    #[test]
    fn env_wins() {
        check(
            Some("/opt/sheen/bin"),
            "/w/target/debug/deps/t-1",
            &["/w/target/debug"],
            "/opt/sheen/bin",
        );
    }

    #[test]
    fn empty_env_is_ignored() {
        check(
            Some(""),
            "/w/target/debug/deps/t-1",
            &["/w/target/debug"],
            "/w/target/debug",
        );
    }

    #[test]
    fn test_binary_finds_profile_dir() {
        check(
            None,
            "/w/target/debug/deps/t-1",
            &["/w/target/debug"],
            "/w/target/debug",
        );
    }

    #[test]
    fn xtask_finds_its_own_dir() {
        check(
            None,
            "/w/target/release/xtask",
            &["/w/target/release"],
            "/w/target/release",
        );
    }

    #[test]
    fn fallback_without_binaries() {
        check(None, "/w/target/debug/deps/t-1", &[], "/w/target/debug");
        check(None, "/w/target/debug/xtask", &[], "/w/target/debug");
    }

    #[test]
    fn defaults() {
        let spec = ClusterSpec::new("/tmp/c");
        assert_eq!(spec.dir, Path::new("/tmp/c"));
        assert_eq!(spec.fsname, "sheen");
        assert_eq!(spec.n_osts, 4);
        assert_eq!(spec.ost_size_bytes, 1 << 30);
        assert_eq!(spec.default_stripe_count, 1);
        assert_eq!(spec.default_stripe_size, 1 << 20);
        assert_eq!(spec.callback_timeout, None);
    }
}
