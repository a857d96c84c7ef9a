//! The launcher driven against a fake daemon binary (`src/bin/fake_daemon.rs`): start-up,
//! readiness, restarts on the same port, crashes, clean-up on drop, detached mode and `down`.
//!
//! The real daemons are covered by the `sheen-tests` suites; these tests need no FUSE and no
//! Sheen daemon, so they pin down the process handling on its own.

// clippy.toml allows unwrap in `#[test]` functions only; the helpers here are test code too.
#![allow(clippy::unwrap_used)]

use std::fs;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use sheen_cluster::{down, Cluster, ClusterError, ClusterSpec, ClusterState, Daemon};

const FAKE: &str = env!("CARGO_BIN_EXE_sheen-cluster-fake-daemon");

struct Fixture {
    _tmp: tempfile::TempDir,
    spec: ClusterSpec,
}

/// A cluster dir and a bin dir whose `sheen-*` binaries are links to the fake.
fn fixture(control: &str) -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let bin_dir = tmp.path().join("bin");
    fs::create_dir(&bin_dir).unwrap();
    for name in ["sheen-mgs", "sheen-mds", "sheen-oss", "sheen-mount"] {
        std::os::unix::fs::symlink(FAKE, bin_dir.join(name)).unwrap();
    }
    let dir = tmp.path().join("cluster");
    fs::create_dir(&dir).unwrap();
    fs::write(dir.join("fake-control"), control).unwrap();
    let mut spec = ClusterSpec::new(&dir);
    spec.bin_dir = bin_dir;
    spec.n_osts = 2;
    Fixture { _tmp: tmp, spec }
}

fn alive(pid: u32) -> bool {
    let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.trim_start().chars().next());
    !matches!(state, Some('Z' | 'X') | None)
}

fn cmdline(pid: u32) -> Vec<String> {
    let bytes = fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    bytes
        .split(|&b| b == 0)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect()
}

fn all_pids(cluster: &Cluster) -> Vec<u32> {
    Daemon::ALL
        .iter()
        .map(|&daemon| cluster.pid(daemon).unwrap())
        .collect()
}

#[test]
fn starts_restarts_and_stops() {
    let fixture = fixture("");
    let mut cluster = Cluster::start(fixture.spec.clone()).unwrap();
    let pids = all_pids(&cluster);
    assert!(pids.iter().all(|&pid| alive(pid)), "{pids:?}");

    let mgs_nid = cluster.mgs_nid();
    assert!(
        mgs_nid.starts_with("127.0.0.1:") && mgs_nid.ends_with("@tcp"),
        "{mgs_nid}"
    );
    assert_eq!(cluster.mount_spec(), format!("{mgs_nid}:/sheen"));
    let oss_args = cmdline(cluster.pid(Daemon::Oss).unwrap());
    let dir = cluster.dir().to_owned();
    let ost1 = format!("1:{}", dir.join("ost1.img").display());
    assert!(oss_args.contains(&ost1), "{oss_args:?}");
    assert!(oss_args.contains(&mgs_nid), "{oss_args:?}");
    assert!(oss_args.contains(&cluster.nid(Daemon::Oss)), "{oss_args:?}");
    assert_eq!(cluster.bin("lfs"), fixture.spec.bin_dir.join("lfs"));
    for daemon in Daemon::ALL {
        assert!(cluster.log_path(daemon).is_file());
    }

    let oss_port = cluster.port(Daemon::Oss);
    cluster.restart_oss().unwrap();
    assert_eq!(cluster.port(Daemon::Oss), oss_port);
    assert_ne!(cluster.pid(Daemon::Oss), Some(pids[2]));
    assert!(!alive(pids[2]));

    let mds_pid = cluster.pid(Daemon::Mds).unwrap();
    cluster.kill_mds().unwrap();
    assert!(!alive(mds_pid));
    assert_eq!(cluster.pid(Daemon::Mds), None);
    assert!(matches!(
        cluster.stop_mds(),
        Err(ClusterError::State { .. })
    ));
    cluster.start_mds().unwrap();
    assert!(matches!(
        cluster.start_mds(),
        Err(ClusterError::State { .. })
    ));

    let pids = all_pids(&cluster);
    cluster.stop().unwrap();
    assert!(pids.iter().all(|&pid| !alive(pid)), "{pids:?}");
    let mgs_log = fs::read_to_string(dir.join("logs/mgs.log")).unwrap();
    assert!(mgs_log.contains("SIGTERM received"), "{mgs_log}");
}

#[test]
fn drop_kills_everything() {
    let fixture = fixture("");
    let cluster = Cluster::start(fixture.spec.clone()).unwrap();
    let pids = all_pids(&cluster);
    drop(cluster);
    assert!(pids.iter().all(|&pid| !alive(pid)), "{pids:?}");
}

#[test]
fn waits_for_a_slow_daemon() {
    let fixture = fixture("delay sheen-mds 300\n");
    let started = Instant::now();
    let cluster = Cluster::start(fixture.spec.clone()).unwrap();
    assert!(started.elapsed() >= Duration::from_millis(300));
    cluster.stop().unwrap();
}

#[test]
fn failed_start_reports_log_and_cleans_up() {
    let fixture = fixture("fail sheen-oss\n");
    let error = Cluster::start(fixture.spec.clone()).unwrap_err();
    match &error {
        ClusterError::Exited { name, log_tail, .. } => {
            assert_eq!(name, "sheen-oss");
            assert!(log_tail.contains("failing at start"), "{log_tail}");
        }
        other => panic!("expected Exited, got {other}"),
    }
    for binary in ["sheen-mgs", "sheen-mds"] {
        // The MDS starts beside the failing OSS and may be stopped before it wrote its pid
        // file: then it never ran far enough to be left running.
        let Ok(text) = fs::read_to_string(fixture.spec.dir.join(format!("{binary}.pid"))) else {
            assert_eq!(
                binary, "sheen-mds",
                "the MGS started first and wrote its pid"
            );
            continue;
        };
        let pid: u32 = text.trim().parse().unwrap();
        assert!(!alive(pid), "{binary} left running");
    }
}

#[test]
fn stop_escalates_to_sigkill() {
    let fixture = fixture("ignore-sigterm sheen-oss\n");
    let mut cluster = Cluster::start(fixture.spec.clone()).unwrap();
    let oss_pid = cluster.pid(Daemon::Oss).unwrap();
    let started = Instant::now();
    cluster.stop_oss().unwrap();
    assert!(started.elapsed() >= sheen_cluster::STOP_TIMEOUT);
    assert!(!alive(oss_pid));
    cluster.stop().unwrap();
}

#[test]
fn crash_is_reported_by_stop() {
    let fixture = fixture("");
    let mut cluster = Cluster::start(fixture.spec.clone()).unwrap();
    let mds_pid = cluster.pid(Daemon::Mds).unwrap();
    // SAFETY: kill has no memory-safety preconditions; the pid is our unreaped child.
    let rc = unsafe { libc::kill(libc::pid_t::try_from(mds_pid).unwrap(), libc::SIGKILL) };
    assert_eq!(rc, 0);
    // Dead once a zombie: the launcher has not reaped it yet.
    let deadline = Instant::now() + Duration::from_secs(10);
    while alive(mds_pid) {
        assert!(Instant::now() < deadline, "SIGKILL not delivered");
        std::thread::sleep(Duration::from_millis(20));
    }
    let reason = match cluster.stop_mds() {
        Err(ClusterError::State { reason, .. }) => reason,
        other => panic!("crash not reported: {other:?}"),
    };
    assert!(reason.contains("already exited"), "{reason}");
    assert!(reason.contains("signal: 9"), "{reason}");
    cluster.start_mds().unwrap();
    cluster.stop().unwrap();
}

#[test]
fn log_errors_sees_warnings() {
    let fixture = fixture("warn sheen-mds\n");
    let cluster = Cluster::start(fixture.spec.clone()).unwrap();
    let lines = cluster.log_errors();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].starts_with("mds.log: ") && lines[0].contains(" WARN "),
        "{lines:?}"
    );
}

#[test]
fn failed_mount_reports_log() {
    let fixture = fixture("");
    let mut cluster = Cluster::start(fixture.spec.clone()).unwrap();
    let mountpoint = fixture.spec.dir.join("mnt");
    let error = cluster.mount(&mountpoint).unwrap_err();
    match &error {
        ClusterError::Exited { log, log_tail, .. } => {
            assert!(log.ends_with("logs/mount-0.log"), "{}", log.display());
            assert!(log_tail.contains("cannot mount"), "{log_tail}");
        }
        other => panic!("expected Exited, got {other}"),
    }
    assert!(mountpoint.is_dir());
    assert!(cluster.mounts().is_empty());
    assert_eq!(cluster.mount_pid(&mountpoint), None);
    assert!(matches!(
        cluster.unmount(&mountpoint),
        Err(ClusterError::Mountpoint { .. })
    ));
}

#[test]
fn callback_timeout_goes_to_mds_and_oss() {
    let fixture = fixture("");
    let mut spec = fixture.spec.clone();
    spec.callback_timeout = Some(Duration::from_secs(3));
    let cluster = Cluster::start(spec).unwrap();
    let flag = |daemon| {
        let arguments = cmdline(cluster.pid(daemon).unwrap());
        let at = arguments.iter().position(|a| a == "--callback-timeout");
        at.map(|at| arguments[at + 1].clone())
    };
    assert_eq!(flag(Daemon::Mds).as_deref(), Some("3"));
    assert_eq!(flag(Daemon::Oss).as_deref(), Some("3"));
    assert_eq!(flag(Daemon::Mgs), None);
    drop(cluster);
    let cluster = Cluster::start(fixture.spec.clone()).unwrap();
    let oss_arguments = cmdline(cluster.pid(Daemon::Oss).unwrap());
    assert!(
        !oss_arguments.iter().any(|a| a == "--callback-timeout"),
        "{oss_arguments:?}"
    );
}

/// Runs `down` on drop, so a failing detached test leaves nothing running.
struct DownOnDrop(PathBuf);

impl Drop for DownOnDrop {
    fn drop(&mut self) {
        let _ = down(&self.0);
    }
}

#[test]
fn detached_cluster_survives_and_down_stops_it() {
    let fixture = fixture("");
    let dir = fixture.spec.dir.clone();
    let _guard = DownOnDrop(dir.clone());
    let cluster = Cluster::start_detached(fixture.spec.clone()).unwrap();
    let pids = all_pids(&cluster);
    let state_path = cluster.detach().unwrap();
    assert_eq!(state_path, dir.canonicalize().unwrap().join("cluster.json"));
    assert!(pids.iter().all(|&pid| alive(pid)), "{pids:?}");

    let state = ClusterState::load(&dir).unwrap();
    let recorded: Vec<u32> = state.daemons.iter().map(|record| record.pid).collect();
    assert_eq!(recorded, pids);
    assert_eq!(state.mount_spec, format!("{}:/sheen", state.mgs_nid));

    let again = Cluster::start_detached(fixture.spec.clone()).unwrap_err();
    assert!(
        matches!(again, ClusterError::AlreadyRunning { .. }),
        "{again}"
    );

    down(&dir).unwrap();
    assert!(pids.iter().all(|&pid| !alive(pid)), "{pids:?}");
    assert!(!state_path.exists());
}

#[test]
fn down_leaves_reused_pids_alone() {
    let fixture = fixture("");
    let dir = fixture.spec.dir.clone();
    let _guard = DownOnDrop(dir.clone());
    let cluster = Cluster::start_detached(fixture.spec.clone()).unwrap();
    cluster.detach().unwrap();
    let mut state = ClusterState::load(&dir).unwrap();
    let real = state.clone();
    // Pretend the MGS pid now belongs to an unrelated process: ours.
    state.daemons[0].pid = std::process::id();
    state.save().unwrap();
    down(&dir).unwrap();
    assert!(alive(std::process::id()));
    assert!(
        alive(real.daemons[0].pid),
        "the real MGS was not recorded, so not stopped"
    );
    real.save().unwrap();
    down(&dir).unwrap();
    assert!(!alive(real.daemons[0].pid));
}

#[test]
fn attached_cluster_cannot_detach() {
    let fixture = fixture("");
    let cluster = Cluster::start(fixture.spec.clone()).unwrap();
    let pids = all_pids(&cluster);
    assert!(matches!(cluster.detach(), Err(ClusterError::State { .. })));
    assert!(pids.iter().all(|&pid| !alive(pid)), "{pids:?}");
}
