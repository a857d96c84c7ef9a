//! `sheen-mount`: mounts a Sheen filesystem with FUSE.
//!
//! `sheen-mount SPEC MOUNTPOINT [-o opt,...] [-f]`. With `-f` it mounts and serves in the
//! foreground until the filesystem is unmounted or it gets SIGTERM/SIGINT (then it unmounts
//! itself). Without `-f` it acts as a mount helper: it starts itself again in the
//! background and returns once the mount is there.
//!
//! This binary is only the FUSE adapter: fuser callbacks (in `fs`) become
//! `sheen_client::Client` calls on a tokio runtime.

mod behind;
mod convert;
mod daemon;
mod fs;
mod limits;
mod options;
mod state;

use std::ffi::CString;
use std::io::{IsTerminal, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context};
use clap::Parser;
use sheen_client::{Client, ClientConfig, MountSpec};
use tokio::signal::unix::{signal, SignalKind};
use tracing::{debug, error, info, warn};

/// Mount a Sheen filesystem (FUSE, type fuse.sheen).
#[derive(Parser, Debug)]
#[command(name = "sheen-mount", version)]
#[command(after_help = "\
Mount options (-o, comma-separated):
  ro, rw, noatime, atime, nodev, dev, nosuid, suid, noexec, exec, sync, async, dirsync
                      kernel mount flags, passed through
  allow_other         let other users in (always on when mounted by root)
  log=PATH            where the background process writes its log
  debug               log at debug level (RUST_LOG overrides)
  fuse_threads=N      threads reading /dev/fuse (default 1; the work runs on tokio)
  uring, nouring      FUSE over io_uring when the kernel offers it (default uring; the
                      kernel offers it from 6.14 with the fuse module's enable_uring=Y)
  uring_depth=N       requests each CPU's io_uring queue holds at once (default 16)
fstab and Lustre options (defaults, _netdev, flock, user_xattr, x-*, ...) are ignored.

Example: sheen-mount 127.0.0.1:7000@tcp:/sheen /mnt/sheen -o noatime
")]
struct Cli {
    /// MGS NID(s) and filesystem name, as Lustre writes it: `127.0.0.1@tcp:/sheen`,
    /// `10.0.0.1@tcp,10.0.0.2@tcp:/fs`, `127.0.0.1:7000@tcp:/sheen`.
    spec: String,
    /// The directory to mount on.
    mountpoint: PathBuf,
    /// Mount options, comma-separated; may be given more than once.
    #[arg(short = 'o', value_name = "OPTIONS")]
    options: Vec<String>,
    /// Stay in the foreground: serve until unmounted, or until SIGTERM/SIGINT (which
    /// unmount).
    #[arg(short = 'f', long = "foreground")]
    foreground: bool,
    /// Ignored: mount(8) passes it to helpers (no /etc/mtab).
    #[arg(short = 'n', hide = true)]
    no_mtab: bool,
    /// Ignored: mount(8) passes it to helpers (sloppy options).
    #[arg(short = 's', hide = true)]
    sloppy: bool,
    /// Ignored: mount(8) passes it to helpers (verbose).
    #[arg(short = 'v', hide = true)]
    verbose: bool,
    /// Ignored: the filesystem type mount(8) may pass.
    #[arg(short = 't', hide = true)]
    fstype: Option<String>,
}

fn main() {
    let cli = Cli::parse();
    if let Err(e) = run(&cli) {
        // Before tracing is up, or for the mount helper's caller: plain stderr.
        // Not eprintln!: it panics when stderr is a closed pipe.
        let _ = writeln!(std::io::stderr(), "sheen-mount: {}", render(&e));
        std::process::exit(1);
    }
}

/// An error and its causes on one line, each cause said once: the typed errors below us
/// often quote their source in their own message already.
fn render(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

fn run(cli: &Cli) -> anyhow::Result<()> {
    let opts = options::parse(&cli.options)?;
    let spec: MountSpec = cli.spec.parse()?;
    if !cli.foreground {
        return daemon::spawn_and_wait(&cli.mountpoint, opts.log.as_deref());
    }
    init_tracing(opts.debug);
    let mountpoint = cli
        .mountpoint
        .canonicalize()
        .with_context(|| format!("mountpoint {}", cli.mountpoint.display()))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("sheen-io")
        .build()
        .context("starting the tokio runtime")?;
    let result = serve(cli, &spec, &opts, &mountpoint, &runtime);
    runtime.shutdown_timeout(limits::SHUTDOWN_GRACE);
    result
}

/// Mounts, serves until unmounted or signalled, then disconnects.
fn serve(
    cli: &Cli,
    spec: &MountSpec,
    opts: &options::MountOpts,
    mountpoint: &Path,
    runtime: &tokio::runtime::Runtime,
) -> anyhow::Result<()> {
    let (mut sigterm, mut sigint) = runtime.block_on(async {
        Ok::<_, std::io::Error>((
            signal(SignalKind::terminate())?,
            signal(SignalKind::interrupt())?,
        ))
    })?;
    let mut config = ClientConfig::default();
    if let Some(timeout) = opts.rpc_timeout {
        config.rpc_timeout = timeout;
    }
    let client = runtime
        .block_on(Client::mount(spec, config))
        .with_context(|| format!("mounting {spec}"))?;
    let fs = fs::SheenFs::new(
        client.clone(),
        runtime.handle().clone(),
        opts.read_only,
        opts.noatime(),
        opts.uring,
    );
    let marks = fs.cache_marks();
    let background = fs.background();
    // SAFETY: geteuid has no preconditions.
    let is_root = unsafe { libc::geteuid() } == 0;
    let config = options::fuse_config(&cli.spec, opts, is_root);
    let session = match fuser::Session::new(fs, mountpoint, &config) {
        Ok(s) => s,
        Err(e) => {
            runtime.block_on(client.unmount());
            return Err(anyhow!(e).context(format!("mounting FUSE on {}", mountpoint.display())));
        }
    };
    let mut session = session;
    let conn = abort_on_uring_queue_failure(&mut session, mountpoint);
    client.set_cache_invalidator(fs::invalidator(session.notifier(), marks));
    let mut unmounter = session.unmount_callable();
    let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
    let session_thread = std::thread::Builder::new()
        .name("fuse-session".into())
        .spawn(move || {
            let result = session.run();
            let _ = done_tx.send(());
            result
        })
        .context("starting the FUSE session thread")?;
    info!(%spec, mountpoint = %mountpoint.display(), "mounted");
    tune_readahead(mountpoint);

    let signalled = runtime.block_on(async {
        tokio::select! {
            _ = sigterm.recv() => true,
            _ = sigint.recv() => true,
            _ = done_rx => false,
        }
    });
    if signalled {
        info!(mountpoint = %mountpoint.display(), "signalled, unmounting");
        if let Err(e) = unmounter.unmount() {
            warn!("unmount failed ({e}); detaching the mount lazily");
            lazy_unmount(mountpoint);
        }
    }
    let served = match session_thread.join() {
        Ok(r) => r.context("serving FUSE"),
        Err(_) => Err(anyhow!("the FUSE session thread panicked")),
    };
    if !signalled {
        detach_if_still_mounted(mountpoint, conn);
    }
    // Closes reported to the MDS after their reply: finish them before disconnecting.
    if !runtime.block_on(background.wait_idle(limits::BACKGROUND_WAIT)) {
        warn!("closes still being reported to the MDS at unmount; giving up on them");
    }
    runtime.block_on(client.unmount());
    info!(mountpoint = %mountpoint.display(), "unmounted");
    served
}

/// If a FUSE-over-io_uring queue's thread stops while the mount is served, the kernel keeps
/// queueing that CPU's requests where nobody takes them: every process on that CPU would
/// hang in the filesystem for ever. The mount aborts its FUSE connection instead
/// (`/sys/fs/fuse/connections/N/abort`, mounting fusectl there if needed): the waiting
/// requests fail with ECONNABORTED and later ones with ENOTCONN, the session ends, and the
/// mount stops as after an unmount (writes it answered are still sent to the OSTs first).
/// Returns the connection's number, `None` when it cannot be found.
fn abort_on_uring_queue_failure<FS: fuser::Filesystem>(
    session: &mut fuser::Session<FS>,
    mountpoint: &Path,
) -> Option<u32> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let Some(conn) = sheen_client::mounts::fuse_connection(&mountinfo, mountpoint) else {
        warn!(
            "cannot find the FUSE connection of {}: a failed io_uring queue would not be \
             aborted",
            mountpoint.display()
        );
        return None;
    };
    session.on_uring_queue_failure(move |qid, e| {
        error!(
            qid,
            conn, "io_uring queue failed ({e}): aborting the FUSE connection"
        );
        match abort_fuse_connection(conn) {
            Ok(()) => info!(conn, "aborted the FUSE connection"),
            Err(e) => error!(
                conn,
                "cannot abort the FUSE connection ({e}): requests on CPU {qid} will wait \
                 until it is unmounted"
            ),
        }
    });
    Some(conn)
}

/// Writes to the connection's `abort` file, mounting the FUSE control filesystem first if
/// it is not mounted.
fn abort_fuse_connection(conn: u32) -> std::io::Result<()> {
    const CONNECTIONS: &str = "/sys/fs/fuse/connections";
    let abort = format!("{CONNECTIONS}/{conn}/abort");
    if !Path::new(&abort).exists() {
        let (source, target, fstype) = (c"fusectl", c"/sys/fs/fuse/connections", c"fusectl");
        // SAFETY: valid NUL-terminated strings; no data argument.
        let rc = unsafe {
            libc::mount(
                source.as_ptr(),
                target.as_ptr(),
                fstype.as_ptr(),
                0,
                std::ptr::null(),
            )
        };
        if rc != 0 {
            let e = std::io::Error::last_os_error();
            debug!("mounting fusectl on {CONNECTIONS}: {e}");
        }
    }
    std::fs::write(&abort, "1\n")
}

/// Raises the mount's readahead to [`limits::MAX_READAHEAD_BYTES`]. The kernel offers FUSE
/// at most its default (128 KiB) at INIT, far below what striped reads need; as root we can
/// raise it afterwards through the mount's BDI. Best effort: a failure only costs speed.
fn tune_readahead(mountpoint: &Path) {
    use std::os::unix::fs::MetadataExt;
    // The stat is answered by the session thread, which runs by now.
    let dev = match std::fs::metadata(mountpoint) {
        Ok(m) => m.dev(),
        Err(e) => {
            debug!(
                "cannot stat {} to tune readahead: {e}",
                mountpoint.display()
            );
            return;
        }
    };
    let bdi = format!(
        "/sys/class/bdi/{}:{}/read_ahead_kb",
        libc::major(dev),
        libc::minor(dev)
    );
    let kib = limits::MAX_READAHEAD_BYTES / 1024;
    match std::fs::write(&bdi, format!("{kib}\n")) {
        Ok(()) => debug!(read_ahead_kb = kib, "raised readahead"),
        Err(e) => debug!("cannot raise readahead through {bdi}: {e}"),
    }
}

/// After a session that ended by itself (its connection aborted, or the filesystem
/// unmounted from outside): fuser's own unmount fails while a request of some process is
/// still on its way through the mount (EBUSY), and the mount would stay listed, serving
/// nothing. If the mount of connection `conn` is still there, it is detached lazily.
fn detach_if_still_mounted(mountpoint: &Path, conn: Option<u32>) {
    let Some(conn) = conn else {
        return;
    };
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    if sheen_client::mounts::fuse_connection(&mountinfo, mountpoint) == Some(conn) {
        warn!(
            conn,
            "the session ended and the mount is still there: detaching it"
        );
        lazy_unmount(mountpoint);
    }
}

/// `umount -l`: the mount disappears now, the session ends when its last user goes.
fn lazy_unmount(mountpoint: &Path) {
    let Ok(path) = CString::new(mountpoint.as_os_str().as_bytes()) else {
        return;
    };
    // SAFETY: `path` is a valid NUL-terminated string that outlives the call.
    let rc = unsafe { libc::umount2(path.as_ptr(), libc::MNT_DETACH) };
    if rc != 0 {
        warn!(
            "lazy unmount of {} failed: {}",
            mountpoint.display(),
            std::io::Error::last_os_error()
        );
    }
}

fn init_tracing(debug: bool) {
    // fuser 0.18 warns "Failed to umount filesystem: Invalid argument" whenever the
    // filesystem was unmounted from outside (a plain `umount`), which is the normal way to
    // stop us: its session warnings are quieted unless RUST_LOG asks for them.
    let default = if debug {
        "debug,fuser::session=error"
    } else {
        "info,fuser::session=error"
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        // Our stderr may be the mount helper's pipe, closed once it returned: write errors
        // must be dropped, not reported with eprintln! (which panics on a closed pipe).
        .log_internal_errors(false)
        .try_init();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_line() {
        let cli = Cli::try_parse_from([
            "sheen-mount",
            "127.0.0.1@tcp:/sheen",
            "/mnt/x",
            "-o",
            "ro",
            "-o",
            "noatime,log=/tmp/l",
            "-f",
        ])
        .unwrap();
        assert!(cli.foreground);
        assert_eq!(cli.options, vec!["ro", "noatime,log=/tmp/l"]);
        assert_eq!(cli.mountpoint, PathBuf::from("/mnt/x"));
        // mount(8)'s helper flags are accepted.
        let cli = Cli::try_parse_from(["sheen-mount", "a@tcp:/s", "/m", "-n", "-v", "-o", "rw"]);
        assert!(cli.is_ok());
        assert!(Cli::try_parse_from(["sheen-mount", "a@tcp:/s"]).is_err());
    }

    #[test]
    fn errors_render_each_cause_once() {
        let inner = std::io::Error::other("connection refused");
        let e = anyhow::Error::new(inner)
            .context("cannot connect to x: connection refused")
            .context("mounting x:/s");
        assert_eq!(
            render(&e),
            "mounting x:/s: cannot connect to x: connection refused"
        );
    }
}
