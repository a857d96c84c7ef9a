//! `sheen-oss`: the object storage server daemon. Parses flags and runs [`sheen_oss::run`].

use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::Parser;
use sheen_wire::limits::MAX_BULK_BYTES;
use sheen_wire::Nid;

/// Sheen object storage server: serves OSTs kept in block files.
#[derive(Parser, Debug)]
#[command(name = "sheen-oss", version)]
struct Args {
    /// Filesystem name.
    #[arg(long, default_value = "sheen")]
    fsname: String,
    /// NID of the MGS.
    #[arg(long)]
    mgs: Nid,
    /// NID to listen on, e.g. 127.0.0.1:7002@tcp.
    #[arg(long)]
    listen: Nid,
    /// A failover NID of these OSTs: another NID their block files may be served from (repeat
    /// for several). Registered with the MGS after `--listen`; clients try them in turn.
    #[arg(long = "failnode", value_name = "NID")]
    failnodes: Vec<Nid>,
    /// An OST to serve, as INDEX:BLOCKFILE (repeat for several).
    #[arg(long = "ost", value_name = "INDEX:PATH", required = true)]
    osts: Vec<String>,
    /// Seconds a client has to cancel a lock after a blocking callback before it is
    /// evicted.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3600))]
    callback_timeout: u64,
    /// Size of block files created when missing (K, M, G suffixes).
    #[arg(long, default_value = "1GiB", value_parser = sheen_daemon::parse_size)]
    ost_size: u64,
    /// Reads the OST's read ring cannot take (the pread engine, a write holding the range,
    /// a full ring) up to this size may run on the thread that received them, one at a
    /// time, instead of going to the I/O threads: lower latency on SSDs and NVMe (K, M
    /// suffixes; 0 for disks that seek, where a read takes milliseconds).
    #[arg(long, default_value = "64K", value_parser = parse_inline_read_max)]
    inline_read_max: u32,
}

fn parse_inline_read_max(s: &str) -> Result<u32, String> {
    let n = sheen_daemon::parse_size(s).map_err(|e| e.to_string())?;
    u32::try_from(n)
        .ok()
        .filter(|n| u64::from(*n) <= MAX_BULK_BYTES)
        .ok_or_else(|| format!("{s}: at most {MAX_BULK_BYTES} bytes"))
}

fn parse_ost(s: &str) -> anyhow::Result<(u32, PathBuf)> {
    let Some((idx, path)) = s.split_once(':') else {
        bail!("--ost {s:?}: expected INDEX:PATH");
    };
    let idx: u32 = idx
        .parse()
        .with_context(|| format!("--ost {s:?}: bad index"))?;
    if path.is_empty() {
        bail!("--ost {s:?}: empty path");
    }
    Ok((idx, PathBuf::from(path)))
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    sheen_daemon::init_tracing("sheen-oss");
    let osts = args
        .osts
        .iter()
        .map(|s| parse_ost(s))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let shutdown = sheen_daemon::shutdown_on_signals();
        let cfg = sheen_oss::OssConfig {
            fsname: args.fsname,
            mgs: args.mgs,
            listen: args.listen,
            failnodes: args.failnodes,
            osts,
            ost_size_bytes: args.ost_size,
            callback_timeout: std::time::Duration::from_secs(args.callback_timeout),
            inline_read_max: args.inline_read_max,
        };
        sheen_oss::run(cfg, shutdown).await.context("OSS failed")
    })
}
