//! The running cluster: start, stop, restart, mount, unmount, and clean-up on drop.

use std::fs;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use crate::process::{self, Mode};
use crate::state::{ClusterState, DaemonRecord, MountRecord};
use crate::{
    mountinfo, pick_free_ports, ClusterError, ClusterSpec, LOG_TAIL_LINES, POLL_INTERVAL,
    READY_TIMEOUT, STOP_TIMEOUT, UNMOUNT_TIMEOUT,
};

/// Timeout of one readiness connection attempt.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(200);
/// The FUSE mount helper.
const MOUNT_BINARY: &str = "sheen-mount";

/// Where the MDS keeps its crash image (`--crash-image-dir`), under the cluster directory.
const MDS_CRASH_IMAGE: &str = "mdt0-crash-image";

/// One of the cluster's daemons.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Daemon {
    /// Management server: configuration and target registry.
    Mgs,
    /// Metadata server with MDT 0.
    Mds,
    /// Object storage server with every OST.
    Oss,
}

impl Daemon {
    /// In start order; stopped in the reverse order.
    pub const ALL: [Daemon; 3] = [Daemon::Mgs, Daemon::Mds, Daemon::Oss];

    /// Short name, also the log file's stem: `mgs`, `mds`, `oss`.
    pub fn name(self) -> &'static str {
        match self {
            Daemon::Mgs => "mgs",
            Daemon::Mds => "mds",
            Daemon::Oss => "oss",
        }
    }

    /// Binary file name.
    pub fn binary(self) -> &'static str {
        match self {
            Daemon::Mgs => "sheen-mgs",
            Daemon::Mds => "sheen-mds",
            Daemon::Oss => "sheen-oss",
        }
    }

    fn idx(self) -> usize {
        match self {
            Daemon::Mgs => 0,
            Daemon::Mds => 1,
            Daemon::Oss => 2,
        }
    }
}

#[derive(Debug)]
struct DaemonProcess {
    /// The port it listens on (its current NID).
    port: u16,
    /// Its failover port, given as `--failnode` (the OSS and the MDS, when the spec asks).
    failnode_port: Option<u16>,
    log: PathBuf,
    /// `None` while stopped.
    child: Option<Child>,
}

#[derive(Debug)]
struct MountProcess {
    mountpoint: PathBuf,
    log: PathBuf,
    child: Child,
}

/// A local cluster of real daemon processes; see the crate docs.
///
/// Dropping an attached cluster (from [`Cluster::start`]) unmounts and kills everything it
/// still runs; dropping a detached one (from [`Cluster::start_detached`]) leaves it running.
#[derive(Debug)]
pub struct Cluster {
    spec: ClusterSpec,
    mode: Mode,
    daemons: [DaemonProcess; 3],
    mounts: Vec<MountProcess>,
    /// Numbers the mount logs: `logs/mount-{n}.log`.
    n_mounts_started: usize,
    /// False once stopped or detached.
    clean_up_on_drop: bool,
}

impl Cluster {
    /// Starts MGS, then MDS and OSS, each waited for until it accepts connections.
    ///
    /// The processes are tied to this one: dropping the cluster, or this process dying, stops
    /// them. On error, whatever was started has been stopped again.
    pub fn start(spec: ClusterSpec) -> Result<Cluster, ClusterError> {
        Cluster::start_with_mode(spec, Mode::Attached)
    }

    /// Starts a cluster that outlives this process and records it in `DIR/cluster.json`
    /// (kept up to date by every later call); stop it with [`Cluster::stop`] or [`down`].
    ///
    /// Fails with [`ClusterError::AlreadyRunning`] if a cluster recorded in that file still
    /// runs.
    pub fn start_detached(spec: ClusterSpec) -> Result<Cluster, ClusterError> {
        if let Ok(state) = ClusterState::load(&spec.dir) {
            if let Some(pid) = first_running_pid(&state) {
                return Err(ClusterError::AlreadyRunning {
                    path: ClusterState::path(&spec.dir),
                    dir: spec.dir,
                    pid,
                });
            }
        }
        let cluster = Cluster::start_with_mode(spec, Mode::Detached)?;
        cluster.state().save()?;
        Ok(cluster)
    }

    fn start_with_mode(mut spec: ClusterSpec, mode: Mode) -> Result<Cluster, ClusterError> {
        spec.net = match spec.net.as_str() {
            "tcp" => "tcp",
            "o2ib" | "rdma" => "o2ib",
            other => {
                return Err(ClusterError::State {
                    name: "cluster spec".to_owned(),
                    reason: format!("unknown network type {other:?} (expected tcp, o2ib or rdma)"),
                })
            }
        }
        .to_owned();
        fs::create_dir_all(&spec.dir)
            .map_err(|e| ClusterError::io(format!("create {}", spec.dir.display()), e))?;
        spec.dir = fs::canonicalize(&spec.dir)
            .map_err(|e| ClusterError::io(format!("resolve {}", spec.dir.display()), e))?;
        spec.bin_dir = std::path::absolute(&spec.bin_dir)
            .map_err(|e| ClusterError::io(format!("resolve {}", spec.bin_dir.display()), e))?;
        for daemon in Daemon::ALL {
            let path = spec.bin_dir.join(daemon.binary());
            if !path.is_file() {
                return Err(ClusterError::MissingBinary { path });
            }
        }
        let logs_dir = spec.dir.join("logs");
        fs::create_dir_all(&logs_dir)
            .map_err(|e| ClusterError::io(format!("create {}", logs_dir.display()), e))?;
        let n_ports =
            Daemon::ALL.len() + usize::from(spec.oss_failnode) + usize::from(spec.mds_failnode);
        let ports = pick_free_ports(n_ports)
            .map_err(|e| ClusterError::io("pick free ports on 127.0.0.1", e))?;
        // The failover ports follow the daemons' own: the OSS's first, then the MDS's.
        let mut spare = ports[Daemon::ALL.len()..].iter().copied();
        let oss_failnode = spec.oss_failnode.then(|| spare.next()).flatten();
        let mds_failnode = spec.mds_failnode.then(|| spare.next()).flatten();
        let daemons = Daemon::ALL.map(|daemon| DaemonProcess {
            port: ports[daemon.idx()],
            failnode_port: match daemon {
                Daemon::Oss => oss_failnode,
                Daemon::Mds => mds_failnode,
                Daemon::Mgs => None,
            },
            log: logs_dir.join(format!("{}.log", daemon.name())),
            child: None,
        });
        // Cleans up on drop until fully started, whatever the mode, so an error leaves
        // nothing behind.
        let mut cluster = Cluster {
            spec,
            mode,
            daemons,
            mounts: Vec::new(),
            n_mounts_started: 0,
            clean_up_on_drop: true,
        };
        cluster.spawn_daemon(Daemon::Mgs)?;
        cluster.wait_ready(&[Daemon::Mgs])?;
        // MDS and OSS both need only the MGS; starting them together means neither order
        // of their own can deadlock the start-up, and it is faster.
        cluster.spawn_daemon(Daemon::Mds)?;
        cluster.spawn_daemon(Daemon::Oss)?;
        cluster.wait_ready(&[Daemon::Mds, Daemon::Oss])?;
        cluster.clean_up_on_drop = mode == Mode::Attached;
        Ok(cluster)
    }

    /// Writes the state file and lets go of the processes, which keep running.
    ///
    /// Only for a cluster from [`Cluster::start_detached`]: the children of an attached one
    /// die with this process. Returns the state file's path.
    pub fn detach(mut self) -> Result<PathBuf, ClusterError> {
        if self.mode != Mode::Detached {
            return Err(ClusterError::State {
                name: "cluster".to_owned(),
                reason: "started attached, its processes die with this one; \
                         use Cluster::start_detached"
                    .to_owned(),
            });
        }
        self.state().save()?;
        self.clean_up_on_drop = false;
        Ok(ClusterState::path(&self.spec.dir))
    }

    /// The spec it was started with (directories made absolute).
    pub fn spec(&self) -> &ClusterSpec {
        &self.spec
    }

    /// The cluster directory (absolute).
    pub fn dir(&self) -> &Path {
        &self.spec.dir
    }

    /// Directory of the log files.
    pub fn logs_dir(&self) -> PathBuf {
        self.spec.dir.join("logs")
    }

    /// Path of a Sheen binary, e.g. `bin("lfs")`.
    pub fn bin(&self, name: &str) -> PathBuf {
        self.spec.bin_dir.join(name)
    }

    /// NID of the MGS, e.g. `127.0.0.1:20001@tcp` (`@o2ib` when the spec's `net` says so).
    pub fn mgs_nid(&self) -> String {
        self.nid(Daemon::Mgs)
    }

    /// NID a daemon listens on; it keeps it across restarts (a failover swaps it with its
    /// failover NID).
    pub fn nid(&self, daemon: Daemon) -> String {
        nid(self.spec.host, self.port(daemon), &self.spec.net)
    }

    /// The failover NID a daemon was given as `--failnode`, if any (the OSS or the MDS, when
    /// the spec's `oss_failnode` or `mds_failnode` is set): where [`Cluster::failover_oss`]
    /// or [`Cluster::failover_mds`] moves it next.
    pub fn failnode(&self, daemon: Daemon) -> Option<String> {
        let port = self.daemons[daemon.idx()].failnode_port?;
        Some(nid(self.spec.host, port, &self.spec.net))
    }

    /// Port a daemon listens on.
    pub fn port(&self, daemon: Daemon) -> u16 {
        self.daemons[daemon.idx()].port
    }

    /// Pid of a daemon, while it is started.
    pub fn pid(&self, daemon: Daemon) -> Option<u32> {
        self.daemons[daemon.idx()].child.as_ref().map(Child::id)
    }

    /// Log file of a daemon.
    pub fn log_path(&self, daemon: Daemon) -> &Path {
        &self.daemons[daemon.idx()].log
    }

    /// What `sheen-mount` is given: `127.0.0.1:PORT@tcp:/FSNAME`.
    pub fn mount_spec(&self) -> String {
        format!("{}:/{}", self.mgs_nid(), self.spec.fsname)
    }

    /// Current mountpoints (absolute), oldest first.
    pub fn mounts(&self) -> Vec<PathBuf> {
        self.mounts
            .iter()
            .map(|mount| mount.mountpoint.clone())
            .collect()
    }

    /// Pid of the `sheen-mount` process serving `mountpoint`, while it is mounted by this
    /// cluster: for tests that stop it (SIGSTOP) to play a client that stopped answering.
    pub fn mount_pid(&self, mountpoint: &Path) -> Option<u32> {
        let key = lookup_path(mountpoint);
        self.mounts
            .iter()
            .find(|mount| mount.mountpoint == key)
            .map(|mount| mount.child.id())
    }

    /// What the state file records for this cluster.
    pub fn state(&self) -> ClusterState {
        let daemons = Daemon::ALL
            .iter()
            .filter_map(|&daemon| {
                let process = &self.daemons[daemon.idx()];
                Some(DaemonRecord {
                    name: daemon.name().to_owned(),
                    binary: daemon.binary().to_owned(),
                    pid: process.child.as_ref()?.id(),
                    port: process.port,
                    nid: nid(self.spec.host, process.port, &self.spec.net),
                    log: process.log.clone(),
                })
            })
            .collect();
        let mounts = self
            .mounts
            .iter()
            .map(|mount| MountRecord {
                mountpoint: mount.mountpoint.clone(),
                pid: mount.child.id(),
                log: mount.log.clone(),
            })
            .collect();
        ClusterState {
            dir: self.spec.dir.clone(),
            fsname: self.spec.fsname.clone(),
            bin_dir: self.spec.bin_dir.clone(),
            mgs_nid: self.mgs_nid(),
            mount_spec: self.mount_spec(),
            daemons,
            mounts,
        }
    }

    /// Mounts the filesystem at `mountpoint` (created if missing) with `sheen-mount -f`, and
    /// waits until the mount is listed in `/proc/self/mountinfo`.
    pub fn mount(&mut self, mountpoint: &Path) -> Result<(), ClusterError> {
        self.mount_with_options(mountpoint, None)
    }

    /// [`Cluster::mount`] with `-o OPTIONS`.
    pub fn mount_with_options(
        &mut self,
        mountpoint: &Path,
        options: Option<&str>,
    ) -> Result<(), ClusterError> {
        self.mount_in(mountpoint, options, None)
    }

    /// [`Cluster::mount`] with the client in the network namespace `netns` (one made with
    /// `ip netns add`, entered with `nsenter --net`, which keeps the mount namespace so the
    /// mount shows here): a client on another machine, as far as the network goes. The
    /// daemons must listen on an address the namespace reaches
    /// ([`ClusterSpec::host`](crate::ClusterSpec)).
    pub fn mount_in_netns(&mut self, mountpoint: &Path, netns: &str) -> Result<(), ClusterError> {
        self.mount_in(mountpoint, None, Some(netns))
    }

    fn mount_in(
        &mut self,
        mountpoint: &Path,
        options: Option<&str>,
        netns: Option<&str>,
    ) -> Result<(), ClusterError> {
        // Checked before touching the path: stat on a live or dead mount may fail.
        if let Some(entry) = find_mount(&lookup_path(mountpoint))? {
            return Err(ClusterError::Mountpoint {
                mountpoint: mountpoint.to_owned(),
                reason: format!("already mounted ({} from {})", entry.fs_type, entry.source),
            });
        }
        fs::create_dir_all(mountpoint)
            .map_err(|e| ClusterError::io(format!("create {}", mountpoint.display()), e))?;
        let mountpoint = fs::canonicalize(mountpoint)
            .map_err(|e| ClusterError::io(format!("resolve {}", mountpoint.display()), e))?;
        let binary = self.bin(MOUNT_BINARY);
        if !binary.is_file() {
            return Err(ClusterError::MissingBinary { path: binary });
        }
        let name = format!("{MOUNT_BINARY} {}", mountpoint.display());
        let log = self
            .logs_dir()
            .join(format!("mount-{}.log", self.n_mounts_started));
        self.n_mounts_started += 1;
        // `nsenter` enters the namespace and execs the binary: the pid stays the same.
        let mut command = match netns {
            Some(ns) => {
                let mut c = Command::new("nsenter");
                c.arg(format!("--net=/run/netns/{ns}")).arg(&binary);
                c
            }
            None => Command::new(&binary),
        };
        command.arg(self.mount_spec()).arg(&mountpoint);
        if let Some(options) = options {
            command.arg("-o").arg(options);
        }
        command.arg("-f").current_dir(&self.spec.dir);
        let mut child = process::spawn(command, self.mode, &name, &log)?;
        let started = Instant::now();
        let outcome = loop {
            match find_mount(&mountpoint) {
                Ok(Some(entry)) if entry.is_fuse() => break Ok(()),
                Ok(_) => {}
                Err(error) => break Err(error),
            }
            match child.try_wait() {
                Ok(Some(status)) => {
                    break Err(ClusterError::Exited {
                        name: name.clone(),
                        status: status.to_string(),
                        log_tail: process::log_tail(&log, LOG_TAIL_LINES),
                        log: log.clone(),
                    })
                }
                Ok(None) => {}
                Err(error) => break Err(ClusterError::io(format!("wait for {name}"), error)),
            }
            if started.elapsed() >= READY_TIMEOUT {
                break Err(ClusterError::NotReady {
                    name: name.clone(),
                    waited: started.elapsed(),
                    reason: "mount not listed in /proc/self/mountinfo".to_owned(),
                    log_tail: process::log_tail(&log, LOG_TAIL_LINES),
                    log: log.clone(),
                });
            }
            std::thread::sleep(POLL_INTERVAL);
        };
        let mount = MountProcess {
            mountpoint,
            log,
            child,
        };
        if let Err(error) = outcome {
            let _ = unmount_process(mount, &name);
            return Err(error);
        }
        self.mounts.push(mount);
        self.save_if_detached()
    }

    /// Unmounts (`umount` as root, else `fusermount3 -u`; lazily after [`UNMOUNT_TIMEOUT`])
    /// and waits for the `sheen-mount` process to exit, killing it if it does not.
    pub fn unmount(&mut self, mountpoint: &Path) -> Result<(), ClusterError> {
        let key = lookup_path(mountpoint);
        let Some(idx) = self.mounts.iter().position(|mount| mount.mountpoint == key) else {
            return Err(ClusterError::Mountpoint {
                mountpoint: mountpoint.to_owned(),
                reason: "not mounted by this cluster".to_owned(),
            });
        };
        let mount = self.mounts.remove(idx);
        let name = format!("{MOUNT_BINARY} {}", mount.mountpoint.display());
        let outcome = unmount_process(mount, &name);
        self.save_if_detached()?;
        outcome
    }

    /// Starts a stopped daemon again, on the same port and data, and waits until it is ready.
    pub fn start_daemon(&mut self, daemon: Daemon) -> Result<(), ClusterError> {
        if let Some(child) = &mut self.daemons[daemon.idx()].child {
            if matches!(child.try_wait(), Ok(None)) {
                return Err(ClusterError::State {
                    name: daemon.binary().to_owned(),
                    reason: format!("already running (pid {})", child.id()),
                });
            }
        }
        self.spawn_daemon(daemon)?;
        self.wait_ready(&[daemon])?;
        self.save_if_detached()
    }

    /// Gives a stopped daemon another free port on 127.0.0.1, as when a server comes back on
    /// another address (a NID not registered before, unlike a failover NID); start it again
    /// with [`Cluster::start_daemon`]. Fails while it runs.
    pub fn move_daemon(&mut self, daemon: Daemon) -> Result<(), ClusterError> {
        let process = &mut self.daemons[daemon.idx()];
        if let Some(child) = &mut process.child {
            if matches!(child.try_wait(), Ok(None)) {
                return Err(ClusterError::State {
                    name: daemon.binary().to_owned(),
                    reason: format!("still running (pid {}): stop it first", child.id()),
                });
            }
        }
        let ports =
            pick_free_ports(1).map_err(|e| ClusterError::io("pick a free port on 127.0.0.1", e))?;
        process.port = ports[0];
        self.save_if_detached()
    }

    /// SIGTERM, then SIGKILL after [`STOP_TIMEOUT`]. Fails if the daemon was not running,
    /// including when it had exited by itself (a crash the caller should hear about).
    pub fn stop_daemon(&mut self, daemon: Daemon) -> Result<(), ClusterError> {
        self.end_daemon(daemon, false)
    }

    /// SIGKILL, as in a crash; reaps it. Fails if it was not running.
    pub fn kill_daemon(&mut self, daemon: Daemon) -> Result<(), ClusterError> {
        self.end_daemon(daemon, true)
    }

    /// [`Cluster::stop_daemon`] then [`Cluster::start_daemon`].
    pub fn restart_daemon(&mut self, daemon: Daemon) -> Result<(), ClusterError> {
        self.stop_daemon(daemon)?;
        self.start_daemon(daemon)
    }

    /// Stops the OSS (SIGTERM, bounded wait, SIGKILL).
    pub fn stop_oss(&mut self) -> Result<(), ClusterError> {
        self.stop_daemon(Daemon::Oss)
    }

    /// Starts the OSS again on the same port and OSTs.
    pub fn start_oss(&mut self) -> Result<(), ClusterError> {
        self.start_daemon(Daemon::Oss)
    }

    /// Stops and starts the OSS.
    pub fn restart_oss(&mut self) -> Result<(), ClusterError> {
        self.restart_daemon(Daemon::Oss)
    }

    /// Kills the OSS with SIGKILL.
    pub fn kill_oss(&mut self) -> Result<(), ClusterError> {
        self.kill_daemon(Daemon::Oss)
    }

    /// Fails the OSS over to its failover NID: SIGKILL (as in a crash), then starts it again
    /// on the same block files listening on the failover NID, with the NID it left as its
    /// `--failnode` (so it registers `[new, old]`); waits until it is ready. Called again, it
    /// moves the OSS back. Needs a cluster started with `oss_failnode`.
    pub fn failover_oss(&mut self) -> Result<(), ClusterError> {
        self.failover(Daemon::Oss, "ClusterSpec::oss_failnode")
    }

    /// [`Cluster::failover_oss`] for the MDS (the same MDT directory, the other NID). Needs
    /// a cluster started with `mds_failnode`.
    pub fn failover_mds(&mut self) -> Result<(), ClusterError> {
        self.failover(Daemon::Mds, "ClusterSpec::mds_failnode")
    }

    fn failover(&mut self, daemon: Daemon, flag: &str) -> Result<(), ClusterError> {
        let process = &self.daemons[daemon.idx()];
        if process.failnode_port.is_none() {
            return Err(ClusterError::State {
                name: daemon.binary().to_owned(),
                reason: format!("started without a failover NID (set {flag})"),
            });
        }
        self.kill_daemon(daemon)?;
        let process = &mut self.daemons[daemon.idx()];
        if let Some(failnode) = process.failnode_port.replace(process.port) {
            process.port = failnode;
        }
        self.start_daemon(daemon)
    }

    /// Stops the MDS (SIGTERM, bounded wait, SIGKILL).
    pub fn stop_mds(&mut self) -> Result<(), ClusterError> {
        self.stop_daemon(Daemon::Mds)
    }

    /// Starts the MDS again on the same port and MDT.
    pub fn start_mds(&mut self) -> Result<(), ClusterError> {
        self.start_daemon(Daemon::Mds)
    }

    /// Stops and starts the MDS.
    pub fn restart_mds(&mut self) -> Result<(), ClusterError> {
        self.restart_daemon(Daemon::Mds)
    }

    /// Kills the MDS with SIGKILL.
    pub fn kill_mds(&mut self) -> Result<(), ClusterError> {
        self.kill_daemon(Daemon::Mds)
    }

    /// Kills the MDS with SIGKILL and leaves its MDT as a power loss at that moment would:
    /// only what it committed (the crash image it kept, see
    /// [`ClusterSpec::mds_crash_image`]). A SIGKILL alone loses nothing the MDS wrote, as
    /// the kernel keeps it.
    pub fn power_fail_mds(&mut self) -> Result<(), ClusterError> {
        self.kill_daemon(Daemon::Mds)?;
        let image = self.spec.dir.join(MDS_CRASH_IMAGE);
        let namespace = self.spec.dir.join("mdt0").join("namespace");
        let io = |what: String| move |source| ClusterError::Io { what, source };
        std::fs::remove_dir_all(&namespace)
            .map_err(io(format!("remove {}", namespace.display())))?;
        std::fs::rename(&image, &namespace).map_err(io(format!(
            "move {} to {}",
            image.display(),
            namespace.display()
        )))?;
        Ok(())
    }

    /// Unmounts every mount, then stops OSS, MDS and MGS; removes the state file of a
    /// detached cluster. Goes on after an error and returns the first one.
    pub fn stop(mut self) -> Result<(), ClusterError> {
        self.clean_up_on_drop = false;
        let mut first_error = None;
        for error in self.tear_down() {
            first_error.get_or_insert(error);
        }
        if self.mode == Mode::Detached {
            if let Err(error) = ClusterState::remove(&self.spec.dir) {
                first_error.get_or_insert(error);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Lines with ` ERROR ` or ` WARN ` in the logs (daemons and mounts), each prefixed with
    /// its log file's name, e.g. `oss.log: 2025-… WARN sheen_oss: …`.
    pub fn log_errors(&self) -> Vec<String> {
        log_errors_in(&self.logs_dir())
    }

    fn spawn_daemon(&mut self, daemon: Daemon) -> Result<(), ClusterError> {
        let mut command = Command::new(self.bin(daemon.binary()));
        command
            .args(self.daemon_args(daemon))
            .current_dir(&self.spec.dir);
        let process = &self.daemons[daemon.idx()];
        let child = process::spawn(command, self.mode, daemon.binary(), &process.log)?;
        self.daemons[daemon.idx()].child = Some(child);
        Ok(())
    }

    fn daemon_args(&self, daemon: Daemon) -> Vec<String> {
        let spec = &self.spec;
        let path = |name: &str| spec.dir.join(name).display().to_string();
        let mut args = vec!["--fsname".to_owned(), spec.fsname.clone()];
        match daemon {
            Daemon::Mgs => args.extend([
                "--data-dir".to_owned(),
                path("mgs"),
                "--listen".to_owned(),
                self.nid(Daemon::Mgs),
                "--default-stripe-count".to_owned(),
                spec.default_stripe_count.to_string(),
                "--default-stripe-size".to_owned(),
                spec.default_stripe_size.to_string(),
            ]),
            Daemon::Mds => {
                args.extend([
                    "--mgs".to_owned(),
                    self.mgs_nid(),
                    "--index".to_owned(),
                    "0".to_owned(),
                    "--data-dir".to_owned(),
                    path("mdt0"),
                    "--listen".to_owned(),
                    self.nid(Daemon::Mds),
                ]);
                if let Some(failnode) = self.failnode(Daemon::Mds) {
                    args.extend(["--failnode".to_owned(), failnode]);
                }
                args.extend(callback_timeout_args(spec.callback_timeout));
                if let Some(w) = spec.recovery_window {
                    args.extend(["--recovery-window".to_owned(), whole_secs(w).to_string()]);
                }
                if let Some(i) = spec.mds_commit_interval {
                    let ms = i.as_millis().max(1);
                    args.extend(["--commit-interval-ms".to_owned(), ms.to_string()]);
                }
                if let Some(r) = spec.mds_ost_retry {
                    let secs = whole_secs(r).max(1);
                    args.extend(["--ost-retry-secs".to_owned(), secs.to_string()]);
                }
                if spec.mds_crash_image {
                    args.extend(["--crash-image-dir".to_owned(), path(MDS_CRASH_IMAGE)]);
                }
            }
            Daemon::Oss => {
                args.extend(["--mgs".to_owned(), self.mgs_nid()]);
                args.extend(["--listen".to_owned(), self.nid(Daemon::Oss)]);
                if let Some(failnode) = self.failnode(Daemon::Oss) {
                    args.extend(["--failnode".to_owned(), failnode]);
                }
                for ost_idx in 0..spec.n_osts {
                    args.push("--ost".to_owned());
                    args.push(format!("{ost_idx}:{}", path(&format!("ost{ost_idx}.img"))));
                }
                args.extend(["--ost-size".to_owned(), spec.ost_size_bytes.to_string()]);
                args.extend(callback_timeout_args(spec.callback_timeout));
            }
        }
        args
    }

    /// Polls until every daemon accepts TCP connections; fails early if one exits.
    fn wait_ready(&mut self, daemons: &[Daemon]) -> Result<(), ClusterError> {
        let started = Instant::now();
        let mut waiting: Vec<Daemon> = daemons.to_vec();
        while !waiting.is_empty() {
            let mut still_waiting = Vec::with_capacity(waiting.len());
            for daemon in waiting {
                let process = &mut self.daemons[daemon.idx()];
                let Some(child) = process.child.as_mut() else {
                    return Err(ClusterError::State {
                        name: daemon.binary().to_owned(),
                        reason: "not started".to_owned(),
                    });
                };
                let exited = child
                    .try_wait()
                    .map_err(|e| ClusterError::io(format!("wait for {}", daemon.binary()), e))?;
                if let Some(status) = exited {
                    process.child = None;
                    return Err(ClusterError::Exited {
                        name: daemon.binary().to_owned(),
                        status: status.to_string(),
                        log_tail: process::log_tail(&process.log, LOG_TAIL_LINES),
                        log: process.log.clone(),
                    });
                }
                let address = SocketAddr::V4(SocketAddrV4::new(self.spec.host, process.port));
                if TcpStream::connect_timeout(&address, CONNECT_TIMEOUT).is_err() {
                    still_waiting.push(daemon);
                }
            }
            waiting = still_waiting;
            if let Some(&daemon) = waiting.first() {
                if started.elapsed() >= READY_TIMEOUT {
                    let process = &self.daemons[daemon.idx()];
                    return Err(ClusterError::NotReady {
                        name: daemon.binary().to_owned(),
                        waited: started.elapsed(),
                        reason: format!("no TCP listener on {}:{}", self.spec.host, process.port),
                        log_tail: process::log_tail(&process.log, LOG_TAIL_LINES),
                        log: process.log.clone(),
                    });
                }
                std::thread::sleep(POLL_INTERVAL);
            }
        }
        Ok(())
    }

    fn end_daemon(&mut self, daemon: Daemon, kill: bool) -> Result<(), ClusterError> {
        let process = &mut self.daemons[daemon.idx()];
        let Some(mut child) = process.child.take() else {
            return Err(ClusterError::State {
                name: daemon.binary().to_owned(),
                reason: "not running".to_owned(),
            });
        };
        let already_exited = child
            .try_wait()
            .map_err(|e| ClusterError::io(format!("wait for {}", daemon.binary()), e))?;
        if let Some(status) = already_exited {
            let log_tail = process::log_tail(&process.log, LOG_TAIL_LINES);
            self.save_if_detached()?;
            return Err(ClusterError::State {
                name: daemon.binary().to_owned(),
                reason: format!("had already exited by itself ({status}); log tail:\n{log_tail}"),
            });
        }
        let outcome = if kill {
            process::kill_child(&mut child, daemon.binary()).map(drop)
        } else {
            process::terminate_child(&mut child, daemon.binary(), STOP_TIMEOUT).map(drop)
        };
        self.save_if_detached()?;
        outcome
    }

    /// Unmounts everything and stops every daemon, newest first; returns the errors.
    fn tear_down(&mut self) -> Vec<ClusterError> {
        let mut errors = Vec::new();
        while let Some(mount) = self.mounts.pop() {
            let name = format!("{MOUNT_BINARY} {}", mount.mountpoint.display());
            if let Err(error) = unmount_process(mount, &name) {
                errors.push(error);
            }
        }
        for daemon in Daemon::ALL.into_iter().rev() {
            if let Some(mut child) = self.daemons[daemon.idx()].child.take() {
                let stopped = process::terminate_child(&mut child, daemon.binary(), STOP_TIMEOUT);
                if let Err(error) = stopped {
                    errors.push(error);
                }
            }
        }
        errors
    }

    fn save_if_detached(&self) -> Result<(), ClusterError> {
        match self.mode {
            Mode::Detached => self.state().save(),
            Mode::Attached => Ok(()),
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if !self.clean_up_on_drop {
            return;
        }
        for error in self.tear_down() {
            eprintln!(
                "sheen-cluster: while cleaning up {}: {error}",
                self.spec.dir.display()
            );
        }
        if self.mode == Mode::Detached {
            // Only reached when a detached start failed half-way.
            let _ = ClusterState::remove(&self.spec.dir);
        }
    }
}

/// Unmounts and stops exactly what the state file in `dir` records (mounts first, then OSS,
/// MDS, MGS), then removes the file.
///
/// A pid is signalled only if `/proc/PID/cmdline` still names the recorded binary and its
/// NID or mountpoint, so a pid reused by another program is left alone.
pub fn down(dir: &Path) -> Result<(), ClusterError> {
    let state = ClusterState::load(dir)?;
    let mut first_error = None;
    for mount in state.mounts.iter().rev() {
        let name = format!("{MOUNT_BINARY} {}", mount.mountpoint.display());
        if let Err(reason) = unmount_path(&mount.mountpoint) {
            first_error.get_or_insert(ClusterError::Unmount {
                mountpoint: mount.mountpoint.clone(),
                reason,
            });
        }
        let mountpoint_arg = mount.mountpoint.display().to_string();
        if process::runs(mount.pid, MOUNT_BINARY, &mountpoint_arg)
            && !process::wait_gone(mount.pid, STOP_TIMEOUT)
        {
            if let Err(error) = process::terminate_pid(mount.pid, &name, STOP_TIMEOUT) {
                first_error.get_or_insert(error);
            }
        }
    }
    for record in state.daemons.iter().rev() {
        if process::runs(record.pid, &record.binary, &record.nid) {
            if let Err(error) = process::terminate_pid(record.pid, &record.binary, STOP_TIMEOUT) {
                first_error.get_or_insert(error);
            }
        }
    }
    match first_error {
        Some(error) => Err(error),
        None => ClusterState::remove(dir),
    }
}

fn first_running_pid(state: &ClusterState) -> Option<u32> {
    let daemons = state
        .daemons
        .iter()
        .find(|record| process::runs(record.pid, &record.binary, &record.nid))
        .map(|record| record.pid);
    daemons.or_else(|| {
        state
            .mounts
            .iter()
            .find(|mount| {
                let mountpoint_arg = mount.mountpoint.display().to_string();
                process::runs(mount.pid, MOUNT_BINARY, &mountpoint_arg)
            })
            .map(|mount| mount.pid)
    })
}

/// `--callback-timeout SECS` for the MDS and the OSS when the spec sets one: whole seconds,
/// rounded up, at least 1.
fn callback_timeout_args(timeout: Option<Duration>) -> Vec<String> {
    let Some(timeout) = timeout else {
        return Vec::new();
    };
    vec![
        "--callback-timeout".to_owned(),
        whole_secs(timeout).max(1).to_string(),
    ]
}

/// `d` in whole seconds, rounded up: what the daemons' seconds options take.
fn whole_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

fn nid(host: Ipv4Addr, port: u16, net: &str) -> String {
    format!("{host}:{port}@{net}")
}

fn find_mount(mountpoint: &Path) -> Result<Option<mountinfo::MountEntry>, ClusterError> {
    mountinfo::find(mountpoint).map_err(|e| ClusterError::io("read /proc/self/mountinfo", e))
}

/// The absolute path a mount was recorded under, computed without touching the mountpoint
/// itself (a dead FUSE mount answers `stat` with ENOTCONN).
fn lookup_path(mountpoint: &Path) -> PathBuf {
    let absolute = std::path::absolute(mountpoint).unwrap_or_else(|_| mountpoint.to_owned());
    match (absolute.parent(), absolute.file_name()) {
        (Some(parent), Some(name)) => match fs::canonicalize(parent) {
            Ok(parent) => parent.join(name),
            Err(_) => absolute,
        },
        _ => absolute,
    }
}

/// Unmounts a mount of ours and reaps its `sheen-mount` process.
fn unmount_process(mut mount: MountProcess, name: &str) -> Result<(), ClusterError> {
    // A stopped `sheen-mount` (a test playing a silent client) would answer nothing and never
    // exit; SIGCONT to a running process does nothing. Our unreaped child: the pid is ours.
    let _ = process::send_signal(mount.child.id(), libc::SIGCONT);
    let unmounted = unmount_path(&mount.mountpoint);
    // After the unmount the FUSE session ends and `sheen-mount` exits by itself.
    let exited = process::wait_timeout(&mut mount.child, STOP_TIMEOUT)
        .map_err(|e| ClusterError::io(format!("wait for {name}"), e))?;
    if exited.is_none() {
        process::terminate_child(&mut mount.child, name, STOP_TIMEOUT)?;
    }
    unmounted.map_err(|reason| ClusterError::Unmount {
        mountpoint: mount.mountpoint,
        reason,
    })
}

/// Unmounts `mountpoint` if a FUSE filesystem is mounted there: normally first, then, after an
/// error or [`UNMOUNT_TIMEOUT`], by aborting the FUSE connection and unmounting lazily.
fn unmount_path(mountpoint: &Path) -> Result<(), String> {
    let mounted = |mountpoint: &Path| match mountinfo::find(mountpoint) {
        Ok(entry) => Ok(entry.filter(mountinfo::MountEntry::is_fuse)),
        Err(error) => Err(format!("read /proc/self/mountinfo: {error}")),
    };
    let Some(entry) = mounted(mountpoint)? else {
        return Ok(());
    };
    let first_error =
        match process::run_bounded(unmount_command(mountpoint, false), UNMOUNT_TIMEOUT) {
            Ok(()) if mounted(mountpoint)?.is_none() => return Ok(()),
            Ok(()) => "still mounted after unmount".to_owned(),
            Err(error) => error,
        };
    abort_fuse_connection(&entry);
    process::run_bounded(unmount_command(mountpoint, true), UNMOUNT_TIMEOUT)
        .map_err(|error| format!("{first_error}; lazy unmount: {error}"))?;
    match mounted(mountpoint)? {
        None => Ok(()),
        Some(_) => Err(format!("{first_error}; still mounted after lazy unmount")),
    }
}

fn unmount_command(mountpoint: &Path, lazy: bool) -> Command {
    // SAFETY: geteuid has no preconditions.
    let is_root = unsafe { libc::geteuid() } == 0;
    let mut command;
    if is_root {
        command = Command::new("umount");
        if lazy {
            command.arg("-l");
        }
    } else {
        command = Command::new(if in_path("fusermount3") {
            "fusermount3"
        } else {
            "fusermount"
        });
        command.arg("-u");
        if lazy {
            command.arg("-z");
        }
    }
    command.arg(mountpoint);
    command
}

/// Aborts a hung FUSE connection through fusectl, when it is mounted and we may write to it.
fn abort_fuse_connection(entry: &mountinfo::MountEntry) {
    if let Some((_, minor)) = entry.device.split_once(':') {
        let abort = Path::new("/sys/fs/fuse/connections")
            .join(minor)
            .join("abort");
        if abort.exists() {
            let _ = fs::write(abort, "1");
        }
    }
}

fn in_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
}

/// See [`Cluster::log_errors`].
fn log_errors_in(logs_dir: &Path) -> Vec<String> {
    let Ok(entries) = fs::read_dir(logs_dir) else {
        return Vec::new();
    };
    let mut logs: Vec<PathBuf> = entries
        .filter_map(|entry| Some(entry.ok()?.path()))
        .filter(|path| path.extension().is_some_and(|extension| extension == "log"))
        .collect();
    logs.sort();
    let mut lines = Vec::new();
    for log in logs {
        let Ok(bytes) = fs::read(&log) else {
            continue;
        };
        let file_name = log
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        for line in String::from_utf8_lossy(&bytes).lines() {
            let line = strip_ansi(line);
            if line.contains(" ERROR ") || line.contains(" WARN ") {
                lines.push(format!("{file_name}: {line}"));
            }
        }
    }
    lines
}

/// Removes ANSI colour sequences (`ESC [ ... m`), which would hide the level's spaces.
fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nids_carry_the_spec_network() {
        assert_eq!(ClusterSpec::new("/x").net, "tcp");
        let lo = Ipv4Addr::LOCALHOST;
        assert_eq!(nid(lo, 7001, "tcp"), "127.0.0.1:7001@tcp");
        assert_eq!(nid(lo, 7001, "o2ib"), "127.0.0.1:7001@o2ib");
        let bridge = Ipv4Addr::new(10, 213, 7, 1);
        assert_eq!(nid(bridge, 7001, "tcp"), "10.213.7.1:7001@tcp");
        let tmp = tempfile::tempdir().unwrap();
        let mut spec = ClusterSpec::new(tmp.path().join("c"));
        spec.net = "ib".to_owned();
        let err = Cluster::start(spec).err().unwrap();
        assert!(err.to_string().contains("unknown network type"), "{err}");
        assert!(!tmp.path().join("c").exists(), "a bad spec creates nothing");
    }

    #[test]
    fn callback_timeout_is_whole_seconds_rounded_up() {
        assert!(callback_timeout_args(None).is_empty());
        let args = |d| callback_timeout_args(Some(d));
        assert_eq!(args(Duration::from_secs(3)), ["--callback-timeout", "3"]);
        assert_eq!(
            args(Duration::from_millis(2500)),
            ["--callback-timeout", "3"]
        );
        assert_eq!(args(Duration::ZERO), ["--callback-timeout", "1"]);
    }

    #[test]
    fn log_errors_finds_levels_in_every_log() {
        let tmp = tempfile::tempdir().unwrap();
        fs::write(
            tmp.path().join("oss.log"),
            "2025-01-01T00:00:00Z  INFO sheen_oss: fine\n\
             2025-01-01T00:00:01Z  WARN sheen_oss: slow disk\n",
        )
        .unwrap();
        fs::write(
            tmp.path().join("mount-0.log"),
            "2025-01-01T00:00:02Z \u{1b}[31mERROR\u{1b}[0m sheen_client: lost\n",
        )
        .unwrap();
        fs::write(tmp.path().join("notes.txt"), "x ERROR y\n").unwrap();
        assert_eq!(
            log_errors_in(tmp.path()),
            vec![
                "mount-0.log: 2025-01-01T00:00:02Z ERROR sheen_client: lost".to_owned(),
                "oss.log: 2025-01-01T00:00:01Z  WARN sheen_oss: slow disk".to_owned(),
            ]
        );
        assert!(log_errors_in(&tmp.path().join("absent")).is_empty());
    }

    #[test]
    fn lookup_path_resolves_parent_only() {
        let tmp = tempfile::tempdir().unwrap();
        let real = fs::canonicalize(tmp.path()).unwrap();
        assert_eq!(lookup_path(&tmp.path().join("mnt")), real.join("mnt"));
        fs::create_dir(tmp.path().join("x")).unwrap();
        assert_eq!(lookup_path(&tmp.path().join("x/../mnt")), real.join("mnt"));
    }

    #[test]
    fn missing_binaries_are_named() {
        let tmp = tempfile::tempdir().unwrap();
        let mut spec = ClusterSpec::new(tmp.path().join("cluster"));
        spec.bin_dir = tmp.path().join("no-bin");
        let error = Cluster::start(spec).unwrap_err();
        assert!(
            matches!(&error, ClusterError::MissingBinary { path }
            if path.ends_with("no-bin/sheen-mgs")),
            "{error}"
        );
    }

    #[test]
    fn down_without_state_file_fails_clearly() {
        let tmp = tempfile::tempdir().unwrap();
        let message = down(tmp.path()).unwrap_err().to_string();
        assert!(message.contains("no detached cluster"), "{message}");
    }
}
