//! `sheen-mgs`: the management server daemon. Parses flags and runs [`sheen_mgs::run`].

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use sheen_wire::Nid;

/// Sheen management server: filesystem configuration and target registry.
#[derive(Parser, Debug)]
#[command(name = "sheen-mgs", version)]
struct Args {
    /// Filesystem name (1 to 8 characters).
    #[arg(long, default_value = "sheen")]
    fsname: String,
    /// Directory for the configuration store.
    #[arg(long)]
    data_dir: PathBuf,
    /// NID to listen on, e.g. 127.0.0.1@tcp or 127.0.0.1:7000@tcp.
    #[arg(long, default_value = "127.0.0.1@tcp")]
    listen: Nid,
    /// Stripe count of files without a layout of their own.
    #[arg(long, default_value_t = 1)]
    default_stripe_count: u32,
    /// Stripe size of files without a layout of their own (bytes; K, M, G suffixes).
    #[arg(long, default_value = "1MiB", value_parser = sheen_daemon::parse_size)]
    default_stripe_size: u64,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    sheen_daemon::init_tracing("sheen-mgs");
    let _lock = sheen_daemon::DataDirLock::acquire(&args.data_dir)
        .with_context(|| format!("lock {}", args.data_dir.display()))?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let shutdown = sheen_daemon::shutdown_on_signals();
        let cfg = sheen_mgs::MgsConfig {
            fsname: args.fsname,
            data_dir: args.data_dir,
            listen: args.listen,
            default_stripe_count: args.default_stripe_count,
            default_stripe_size: args.default_stripe_size,
        };
        sheen_mgs::run(cfg, shutdown).await.context("MGS failed")
    })
}
