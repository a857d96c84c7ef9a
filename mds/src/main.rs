//! `sheen-mds`: the metadata server daemon. Parses flags and runs [`sheen_mds::run`].

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use sheen_wire::Nid;

/// Sheen metadata server: namespace, layouts and OST object allocation.
#[derive(Parser, Debug)]
#[command(name = "sheen-mds", version)]
struct Args {
    /// Filesystem name.
    #[arg(long, default_value = "sheen")]
    fsname: String,
    /// NID of the MGS.
    #[arg(long)]
    mgs: Nid,
    /// MDT index.
    #[arg(long, default_value_t = 0)]
    index: u32,
    /// Directory for the MDT's namespace store.
    #[arg(long)]
    data_dir: PathBuf,
    /// NID to listen on, e.g. 127.0.0.1:7001@tcp.
    #[arg(long)]
    listen: Nid,
    /// A failover NID of this MDT: another NID it may be served from (repeat for several).
    /// Registered with the MGS after `--listen`; clients try them in turn.
    #[arg(long = "failnode", value_name = "NID")]
    failnodes: Vec<Nid>,
    /// Seconds a client has to cancel a lock after a blocking callback before it is
    /// evicted.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3600))]
    callback_timeout: u64,
    /// Seconds clients have to reconnect and reopen their files (after this MDS starts, or
    /// after their connection ended) before what they held open is released.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(0..=3600))]
    recovery_window: u64,
    /// Milliseconds between background commits; 0 (default) commits every change before its
    /// reply. Above 0 the MDS replies once a change is applied and clients replay what a
    /// crash lost, within the recovery window.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u64).range(0..=3_600_000))]
    commit_interval_ms: u64,
    /// Seconds a request to an OST (precreate, destroy, listing) keeps retrying an OSS that
    /// does not answer before it fails. Objects whose destroy failed are sent again every
    /// 10 s.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=3600))]
    ost_retry_secs: u64,
    /// Fault injection for tests: after every commit, copy the namespace as it is on disk
    /// (what a power loss would leave) to this directory.
    #[arg(long, hide = true)]
    crash_image_dir: Option<PathBuf>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    sheen_daemon::init_tracing("sheen-mds");
    let _lock = sheen_daemon::DataDirLock::acquire(&args.data_dir)
        .with_context(|| format!("lock {}", args.data_dir.display()))?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let shutdown = sheen_daemon::shutdown_on_signals();
        let cfg = sheen_mds::MdsConfig {
            fsname: args.fsname,
            mgs: args.mgs,
            index: args.index,
            data_dir: args.data_dir,
            listen: args.listen,
            failnodes: args.failnodes,
            callback_timeout: std::time::Duration::from_secs(args.callback_timeout),
            recovery_window: std::time::Duration::from_secs(args.recovery_window),
            commit_interval: std::time::Duration::from_millis(args.commit_interval_ms),
            ost_retry: std::time::Duration::from_secs(args.ost_retry_secs),
            crash_image: args.crash_image_dir,
        };
        sheen_mds::run(cfg, shutdown).await.context("MDS failed")
    })
}
