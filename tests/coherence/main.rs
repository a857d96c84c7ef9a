//! Coherence suite: two clients of one cluster must agree. Each test starts one cluster (one
//! MDS, one OSS with two OSTs, files striped over both in 64 KiB stripes so that a small file
//! spans both OSTs, a lock callback timeout of 3 s) and mounts it twice through FUSE, as two
//! `sheen-mount` processes: mount A and mount B, two clients with their own caches.
//!
//! What one client changes (data, size, names) the other must see as soon as the call that
//! made the change returns, whatever it has cached; two clients writing disjoint ranges of
//! one file must both survive; a client that stops answering lock callbacks is evicted, so
//! that the others are held up for the callback timeout at most.
//!
//! The `netns` tests run the same checks with each mount in a network namespace of its own
//! (two machines' worth of networking, made and removed by the test), and cut a client off.
//!
//! Every test body runs on its own thread under a time limit; whatever happens (failure,
//! timeout, panic) a stopped mount is continued, both mounts are unmounted and the daemons
//! stopped by pid.

// Test code: a failed unwrap is a failed test, with its message.
#![allow(clippy::unwrap_used)]

mod behind;
mod concurrent;
mod eviction;
mod locks;
mod model;
mod netns;
mod readahead;
mod visibility;

use std::any::Any;
use std::fs::{self, File};
use std::io;
use std::os::unix::fs::FileExt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use sheen_cluster::{Cluster, ClusterError, ClusterSpec};
use sheen_tests::{parse_getstripe, run_ok};

/// Lock callback timeout of the MDS and the OSS in this suite (`--callback-timeout`).
pub const CALLBACK_TIMEOUT: Duration = Duration::from_secs(3);
/// Default stripe size of the suite's filesystem.
pub const STRIPE_SIZE: usize = 64 << 10;
/// Default stripe count: every file is striped over both OSTs.
pub const STRIPE_COUNT: u32 = 2;
/// One KiB.
pub const KIB: usize = 1 << 10;

/// One of the two mounts (clients).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The first mount.
    A,
    /// The second mount.
    B,
}

impl Side {
    /// Both, A first.
    pub const BOTH: [Side; 2] = [Side::A, Side::B];

    /// The other mount.
    pub fn other(self) -> Side {
        match self {
            Side::A => Side::B,
            Side::B => Side::A,
        }
    }

    /// 0 for A, 1 for B.
    pub fn idx(self) -> usize {
        match self {
            Side::A => 0,
            Side::B => 1,
        }
    }
}

/// What a test body gets: where the two mounts are, and the pid of B's `sheen-mount`.
#[derive(Debug, Clone)]
pub struct Env {
    /// Mount A (absolute).
    pub a: PathBuf,
    /// Mount B (absolute).
    pub b: PathBuf,
    /// Pid of the `sheen-mount` process serving B.
    pub b_pid: u32,
    /// The `lfs` binary.
    pub lfs: PathBuf,
    /// The cluster's mount spec (`MGSNID:/FSNAME`), for a native client of the test's own.
    pub spec: String,
    /// The network the mounts live in, when each has a namespace of its own.
    pub net: Option<std::sync::Arc<netns::TestNet>>,
}

impl Env {
    /// The root of one mount.
    pub fn on(&self, side: Side) -> &Path {
        match side {
            Side::A => &self.a,
            Side::B => &self.b,
        }
    }

    /// Checks that `path` (a file on a mount) is striped over both OSTs in 64 KiB stripes.
    pub fn check_layout(&self, path: &Path) {
        let out = run_ok(&self.lfs, &["getstripe", &path.display().to_string()]);
        let (count, size, objects) = parse_getstripe(&out);
        let mut osts: Vec<u32> = objects.iter().map(|&(ost, _)| ost).collect();
        osts.sort_unstable();
        assert!(
            count == STRIPE_COUNT && size == STRIPE_SIZE as u64 && osts == [0, 1],
            "{} is not striped over both OSTs in {STRIPE_SIZE}-byte stripes:\n{out}",
            path.display()
        );
    }
}

/// Whether a test insists that the logs hold no ERROR line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Logs {
    /// No ` ERROR ` line in any daemon or mount log.
    Clean,
    /// Errors are expected (an eviction); they are printed, not checked.
    MayHoldErrors,
}

/// The cluster and its two mounts. Field order matters: the cluster (mounts) goes before
/// the temp dir holding the mount points.
struct TwoMounts {
    cluster: Option<Cluster>,
    env: Env,
    _tmp: tempfile::TempDir,
}

impl TwoMounts {
    /// A cluster and two mounts; with `net`, the daemons listen on its bridge and each mount
    /// runs in its own namespace.
    fn start(net: Option<std::sync::Arc<netns::TestNet>>, lnet: &str) -> TwoMounts {
        let tmp = tempfile::tempdir().expect("temp dir");
        let mut spec = ClusterSpec::new(tmp.path().join("cluster"));
        if let Some(net) = &net {
            spec.host = net.host;
        }
        spec.net = lnet.to_owned();
        spec.n_osts = 2;
        spec.ost_size_bytes = 256 << 20;
        spec.default_stripe_count = STRIPE_COUNT;
        spec.default_stripe_size = STRIPE_SIZE as u64;
        spec.callback_timeout = Some(CALLBACK_TIMEOUT);
        let mut cluster = Cluster::start(spec).unwrap_or_else(|e| panic!("start cluster: {e}"));
        let mut mount = |name: &str, side: Side| {
            let path = tmp.path().join(name);
            let mounted = match &net {
                Some(net) => cluster.mount_in_netns(&path, &net.namespaces[side.idx()]),
                None => cluster.mount(&path),
            };
            mounted.unwrap_or_else(|e| panic!("mount {name}: {e}"));
            fs::canonicalize(&path).expect("resolve mount point")
        };
        let a = mount("a", Side::A);
        let b = mount("b", Side::B);
        let b_pid = cluster.mount_pid(&b).expect("pid of B's sheen-mount");
        let env = Env {
            a,
            b,
            b_pid,
            lfs: cluster.bin("lfs"),
            spec: cluster.mount_spec(),
            net,
        };
        TwoMounts {
            cluster: Some(cluster),
            env,
            _tmp: tmp,
        }
    }

    /// Unmounts both mounts and stops the daemons, reporting the first error.
    fn stop(mut self) -> Result<(), ClusterError> {
        continue_mounts(self.cluster.as_ref());
        self.cluster.take().map_or(Ok(()), Cluster::stop)
    }
}

impl Drop for TwoMounts {
    fn drop(&mut self) {
        // A body that failed or timed out may have left B stopped: unmounting a stopped
        // FUSE server would wait for it.
        continue_mounts(self.cluster.as_ref());
    }
}

/// Sends SIGCONT to both `sheen-mount` processes (a no-op for running ones). They are the
/// cluster's unreaped children, so their pids cannot have been reused.
fn continue_mounts(cluster: Option<&Cluster>) {
    let Some(cluster) = cluster else {
        return;
    };
    for mountpoint in cluster.mounts() {
        if let Some(pid) = cluster.mount_pid(&mountpoint) {
            let _ = send_signal(pid, libc::SIGCONT);
        }
    }
}

/// Sends `signal` to `pid`.
pub fn send_signal(pid: u32, signal: libc::c_int) -> io::Result<()> {
    let pid = libc::pid_t::try_from(pid)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "pid out of range"))?;
    // SAFETY: kill has no memory-safety preconditions.
    if unsafe { libc::kill(pid, signal) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Starts a cluster with two mounts, runs `body` on its own thread for at most `limit`, then
/// stops everything; fails with the body's panic message, or on timeout, or (with
/// [`Logs::Clean`]) if a log holds an ERROR line.
pub fn run(name: &str, limit: Duration, logs: Logs, body: fn(&Env)) {
    run_on(name, limit, logs, body, None, "tcp");
}

/// [`run`] with every NID on the RDMA-emulated transport (`@o2ib`): lock callbacks travel
/// from the servers to the clients over it too.
pub fn run_rdma(name: &str, limit: Duration, logs: Logs, body: fn(&Env)) {
    run_on(name, limit, logs, body, None, "o2ib");
}

/// [`run`] with each mount in a network namespace of its own ([`netns::TestNet`]).
pub fn run_netns(name: &str, limit: Duration, logs: Logs, body: fn(&Env)) {
    let net = std::sync::Arc::new(netns::TestNet::create());
    run_on(name, limit, logs, body, Some(net), "tcp");
}

fn run_on(
    name: &str,
    limit: Duration,
    logs: Logs,
    body: fn(&Env),
    net: Option<std::sync::Arc<netns::TestNet>>,
    lnet: &str,
) {
    let two = TwoMounts::start(net, lnet);
    let env = two.env.clone();
    let (done, outcome) = mpsc::channel();
    let started = Instant::now();
    thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || {
            let result = catch_unwind(AssertUnwindSafe(|| body(&env)));
            let _ = done.send(result.err().map(panic_message));
        })
        .expect("spawn the test body");
    let failure = match outcome.recv_timeout(limit) {
        Ok(None) => None,
        Ok(Some(message)) => Some(message),
        Err(mpsc::RecvTimeoutError::Timeout) => Some(format!(
            "not finished after {limit:?}: a call hung (the mounts are torn down now)"
        )),
        Err(mpsc::RecvTimeoutError::Disconnected) => Some("the body thread vanished".to_owned()),
    };
    let elapsed = started.elapsed();
    let log_lines = two
        .cluster
        .as_ref()
        .map(Cluster::log_errors)
        .unwrap_or_default();
    let errors: Vec<String> = log_lines
        .iter()
        .filter(|line| line.contains(" ERROR "))
        .cloned()
        .collect();
    if let Some(message) = failure {
        println!("coherence {name}: FAILED after {elapsed:?}");
        // Dropping `two` on the way out continues B, unmounts and stops the daemons.
        panic!(
            "{name}: {message}\n--- warnings and errors in the logs:\n{}",
            log_lines.join("\n")
        );
    }
    println!("coherence {name}: ok ({elapsed:?})");
    if logs == Logs::MayHoldErrors && !log_lines.is_empty() {
        println!("warnings and errors in the logs:\n{}", log_lines.join("\n"));
    }
    two.stop()
        .unwrap_or_else(|e| panic!("{name}: stop the cluster: {e}"));
    assert!(
        logs == Logs::MayHoldErrors || errors.is_empty(),
        "{name}: errors in the logs: {errors:#?}"
    );
}

fn panic_message(payload: Box<dyn Any + Send>) -> String {
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_else(|| "(panic without a message)".to_owned())
}

/// Runs `f` on its own thread and waits at most `limit` for it: `Ok((value, time taken))`,
/// or `Err(time waited)` if it did not finish (the thread is left to finish on its own).
pub fn bounded<T: Send + 'static>(
    what: &str,
    limit: Duration,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<(T, Duration), Duration> {
    let (done, outcome) = mpsc::channel();
    let started = Instant::now();
    thread::Builder::new()
        .name(what.to_owned())
        .spawn(move || {
            let value = f();
            let _ = done.send((value, started.elapsed()));
        })
        .expect("spawn a bounded call");
    outcome.recv_timeout(limit).map_err(|_| started.elapsed())
}

/// Reads up to `len` bytes at `offset` (fewer at the end of the file) with `pread`.
pub fn read_at(file: &File, offset: usize, len: usize) -> io::Result<Vec<u8>> {
    let mut buf = vec![0; len];
    let mut done = 0;
    while done < len {
        match file.read_at(&mut buf[done..], (offset + done) as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    buf.truncate(done);
    Ok(buf)
}

/// Reads a whole file through an open descriptor: `pread` from 0 until end of file, never
/// trusting a cached size.
pub fn read_all(file: &File) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let chunk = read_at(file, out.len(), 256 * KIB)?;
        let last = chunk.len() < 256 * KIB;
        out.extend_from_slice(&chunk);
        if last {
            return Ok(out);
        }
    }
}

/// `truncate(2)` by path (a setattr without an open file, unlike `ftruncate`).
pub fn truncate_path(path: &Path, size: usize) -> io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes())?;
    let size = libc::off_t::try_from(size).map_err(io::Error::other)?;
    // SAFETY: a valid NUL-terminated path; truncate has no other preconditions.
    if unsafe { libc::truncate(c_path.as_ptr(), size) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// `None` if equal, else how `got` differs from `want`: lengths, the first and last
/// differing byte with their stripes (stripes alternate between the two OSTs), how many
/// bytes differ between them, and whether `got` holds zeros there.
pub fn difference(got: &[u8], want: &[u8]) -> Option<String> {
    if got == want {
        return None;
    }
    let lengths = format!("{} bytes, want {}", got.len(), want.len());
    let differs = |(g, w): (&u8, &u8)| g != w;
    let Some(first) = got.iter().zip(want).position(differs) else {
        return Some(format!("{lengths}; equal up to the shorter"));
    };
    let common = got.len().min(want.len());
    let last = got[..common]
        .iter()
        .zip(&want[..common])
        .rposition(differs)
        .unwrap_or(first);
    let n_differ = got[first..=last]
        .iter()
        .zip(&want[first..=last])
        .filter(|&pair| differs(pair))
        .count();
    let zeros = if got[first..=last].iter().all(|&b| b == 0) {
        " (got zeros there)"
    } else {
        ""
    };
    let show = |bytes: &[u8]| format!("{:02x?}", &bytes[first..(first + 8).min(bytes.len())]);
    Some(format!(
        "{lengths}; bytes {first} (stripe {}) to {last} (stripe {}) differ, {n_differ} of \
         them{zeros}: got {} want {} at {first}",
        first / STRIPE_SIZE,
        last / STRIPE_SIZE,
        show(got),
        show(want)
    ))
}

/// Failed checks gathered over one step, so that one report shows all of them.
#[derive(Debug, Default)]
pub struct Checks {
    problems: Vec<String>,
}

impl Checks {
    /// `got` must be `want`.
    pub fn same(&mut self, what: &str, got: io::Result<Vec<u8>>, want: &[u8]) {
        match got {
            Ok(got) => {
                if let Some(difference) = difference(&got, want) {
                    self.problems.push(format!("{what}: {difference}"));
                }
            }
            Err(e) => self.problems.push(format!("{what}: {e}")),
        }
    }

    /// `got` must be the metadata of a file of `want` bytes.
    pub fn size(&mut self, what: &str, got: io::Result<fs::Metadata>, want: usize) {
        match got {
            Ok(meta) if meta.len() == want as u64 => {}
            Ok(meta) => self
                .problems
                .push(format!("{what}: size {}, want {want}", meta.len())),
            Err(e) => self.problems.push(format!("{what}: {e}")),
        }
    }

    /// `got` must have failed with ENOENT.
    pub fn gone<T: std::fmt::Debug>(&mut self, what: &str, got: io::Result<T>) {
        match got {
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
            Err(e) => self.problems.push(format!("{what}: {e}, want ENOENT")),
            Ok(_) => self
                .problems
                .push(format!("{what}: still there, want ENOENT")),
        }
    }

    /// Records a problem unless `ok`.
    pub fn expect(&mut self, ok: bool, problem: impl FnOnce() -> String) {
        if !ok {
            self.problems.push(problem());
        }
    }

    /// Panics with every problem found, under `context`.
    #[track_caller]
    pub fn finish(self, context: &str) {
        assert!(
            self.problems.is_empty(),
            "{context}:\n  {}",
            self.problems.join("\n  ")
        );
    }
}
