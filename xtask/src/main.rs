//! Sheen's developer tasks, run as `cargo xtask TASK` (alias in `.cargo/config.toml`).
//!
//! - `cluster up|down`: a detached local cluster built in release mode, mounted with FUSE.
//! - `demo`: the README's main job; a striped file written, read back and checked.
//! - `test`: the README's test command; builds every binary, then `cargo test --workspace`.
//! - `ci`: formatting, clippy, then `test`.
//! - `bench`: the standard benchmark set through FUSE and the native client (docs/BENCHMARKS.md).
//!
//! xtask only builds with cargo and starts processes (through `sheen-cluster`), so it compiles
//! quickly and never links the daemons themselves (STYLE.md practice 14).

mod bench;
mod cluster_cmd;
mod demo;
mod util;

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "xtask",
    bin_name = "cargo xtask",
    about = "Sheen's developer tasks",
    arg_required_else_help = true
)]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Start or stop a detached local cluster (MGS, MDS, OSS) with a FUSE mount.
    Cluster {
        #[command(subcommand)]
        action: ClusterAction,
    },
    /// Start a cluster, write a 4-way striped file through FUSE, read it back, compare it,
    /// show `lfs getstripe` and `lfs df`, stop the cluster.
    Demo(DemoArgs),
    /// Install fuse3 if missing, build every binary, run `cargo test --workspace`.
    ///
    /// Extra arguments go to `cargo test`, as in `cargo xtask test -- --nocapture`.
    Test {
        /// Passed to `cargo test --workspace` unchanged.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        cargo_test_args: Vec<String>,
    },
    /// What CI checks: `cargo fmt --check`, clippy with `-D warnings`, then `test`.
    Ci,
    /// Build in release mode, start a cluster, run the standard benchmark set through FUSE
    /// and the native client (and a peer mount with --compare), print a comparison table,
    /// write JSON, stop the cluster.
    Bench(bench::BenchArgs),
}

#[derive(Subcommand)]
enum ClusterAction {
    /// Build in release mode, start a cluster in DIR, mount it at MNT, and return.
    Up(UpArgs),
    /// Unmount and stop exactly what `up` started in DIR.
    Down {
        /// The directory given to `up`.
        #[arg(long)]
        dir: PathBuf,
    },
}

#[derive(Args)]
struct UpArgs {
    /// Cluster directory: data, OST images, logs, cluster.json.
    #[arg(long)]
    dir: PathBuf,
    /// Mountpoint, created if missing.
    #[arg(long)]
    mount: PathBuf,
    /// Number of OSTs.
    #[arg(long, default_value_t = 4)]
    osts: u32,
    /// Size of each OST block file (binary units: 512MiB, 1GiB...).
    #[arg(long, default_value = "1GiB", value_parser = util::parse_size)]
    ost_size: u64,
    /// Use debug binaries (target/debug) instead of building in release mode.
    #[arg(long)]
    debug: bool,
    /// Network of every NID: `tcp`, or `rdma` (alias `o2ib`) for the RDMA-emulated transport.
    #[arg(long, default_value = "tcp", value_parser = util::parse_net)]
    net: String,
    /// The MDS's `--commit-interval-ms`: 0 commits every change before its reply; above 0
    /// the MDS replies first and clients replay what a crash lost.
    #[arg(long, default_value_t = 0)]
    mds_commit_interval_ms: u64,
}

#[derive(Args)]
struct DemoArgs {
    /// Work directory (kept afterwards); default: a fresh one under the system temp dir,
    /// removed after a successful run.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Size of the striped file in MiB.
    #[arg(long, default_value_t = 64)]
    size_mib: u64,
    /// Seed of the pseudo-random data; default: from the clock.
    #[arg(long)]
    seed: Option<u64>,
    /// Use debug binaries (target/debug) instead of building in release mode.
    #[arg(long)]
    debug: bool,
    /// Network of every NID: `tcp`, or `rdma` (alias `o2ib`) for the RDMA-emulated transport.
    #[arg(long, default_value = "tcp", value_parser = util::parse_net)]
    net: String,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let outcome = match cli.task {
        Task::Cluster {
            action: ClusterAction::Up(args),
        } => cluster_cmd::up(&args),
        Task::Cluster {
            action: ClusterAction::Down { dir },
        } => cluster_cmd::down(&dir),
        Task::Demo(args) => demo::run(&args),
        Task::Test { cargo_test_args } => test(&test_args(cargo_test_args)),
        Task::Ci => ci(),
        Task::Bench(args) => bench::run(&args),
    };
    match outcome {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// The arguments after `test` exactly as typed: clap swallows a leading `--`, which
/// `cargo test` needs to tell its own flags from the test harness's.
fn test_args(parsed: Vec<String>) -> Vec<String> {
    raw_args_after_test(std::env::args()).unwrap_or(parsed)
}

fn raw_args_after_test(args: impl Iterator<Item = String>) -> Option<Vec<String>> {
    let mut args = args.skip(1).skip_while(|arg| arg != "test");
    args.next()?;
    Some(args.collect())
}

/// `cargo xtask test`: the README's test command.
fn test(cargo_test_args: &[String]) -> Result<()> {
    util::step("ensure fuse3 is installed");
    util::ensure_fuse3()?;
    // The coherence suite puts clients in network namespaces of its own.
    util::step("ensure ip and nsenter are installed");
    util::ensure_command("ip", "iproute2")?;
    util::ensure_command("nsenter", "util-linux")?;
    util::step("build every binary (debug), for the tests that start real daemons");
    util::run(util::cargo().args(["build", "--workspace", "--bins"]))?;
    util::step("run the tests");
    util::run(
        util::cargo()
            .args(["test", "--workspace"])
            .args(cargo_test_args),
    )?;
    if cargo_test_args.is_empty() {
        vendored_tests()?;
        fuse_uring_pass()?;
    }
    util::step("all tests passed");
    Ok(())
}

/// The unit tests of the vendored fuser, which has code of ours (`vendor/fuser/SHEEN.md`).
/// `vendor/` is outside the workspace, so the package is tested on its own, with the
/// workspace's lockfile (copied next to its manifest for the run) and its own target dir.
fn vendored_tests() -> Result<()> {
    util::step("run the vendored fuser's unit tests (its FUSE-over-io_uring code is ours)");
    let root = util::project_root();
    let lock = root.join("vendor/fuser/Cargo.lock");
    std::fs::copy(root.join("Cargo.lock"), &lock).context("copying Cargo.lock for fuser")?;
    let result = util::run(
        util::cargo()
            .args(["test", "--offline", "--lib", "--manifest-path"])
            .arg(root.join("vendor/fuser/Cargo.toml"))
            .env("CARGO_TARGET_DIR", root.join("target/vendor-fuser")),
    );
    let removed = std::fs::remove_file(&lock).context("removing fuser's copied Cargo.lock");
    result.and(removed)
}

/// The kernel's switch for FUSE over io_uring (Linux 6.14 and later).
const FUSE_URING_PARAM: &str = "/sys/module/fuse/parameters/enable_uring";
/// Tells the suites this is the io_uring pass (`sheen_tests::FUSE_URING_ENV`; xtask does not
/// depend on the test crate).
const TEST_FUSE_URING_ENV: &str = "SHEEN_TEST_FUSE_URING";

/// The suites that mount run a second time with the kernel offering FUSE over io_uring, which
/// the mount then uses (the POSIX suite checks that every CPU's queue served it); the
/// parameter is put back as it was, pass or fail.
fn fuse_uring_pass() -> Result<()> {
    util::step("run the suites that mount again, over FUSE over io_uring");
    let Ok(before) = std::fs::read_to_string(FUSE_URING_PARAM) else {
        println!("this kernel has no FUSE over io_uring ({FUSE_URING_PARAM} is missing): skipped");
        return Ok(());
    };
    std::fs::write(FUSE_URING_PARAM, "Y")
        .with_context(|| format!("enabling FUSE over io_uring in {FUSE_URING_PARAM}"))?;
    let result = util::run(
        util::cargo()
            .args(["test", "-p", "sheen-tests"])
            .args(["--test", "posix", "--test", "coherence"])
            .args(["--test", "faults", "--test", "cluster"])
            .env(TEST_FUSE_URING_ENV, "1"),
    );
    let restored = std::fs::write(FUSE_URING_PARAM, before.trim())
        .with_context(|| format!("restoring {FUSE_URING_PARAM} to {}", before.trim()));
    result.and(restored)
}

/// `cargo xtask ci`.
fn ci() -> Result<()> {
    util::step("check formatting");
    util::run(util::cargo().args(["fmt", "--all", "--", "--check"]))?;
    util::step("clippy");
    util::run(util::cargo().args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))?;
    test(&[])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(args: &[&str]) -> Vec<String> {
        args.iter().map(|arg| (*arg).to_owned()).collect()
    }

    #[test]
    fn test_arguments_pass_through_verbatim() {
        for args in [
            &["xtask", "test"][..],
            &["xtask", "test", "--", "--nocapture"],
            &["xtask", "test", "--no-fail-fast", "--", "--nocapture"],
            &["xtask", "test", "-p", "sheen-wire"],
        ] {
            let cli = Cli::try_parse_from(args).unwrap();
            assert!(matches!(cli.task, Task::Test { .. }));
            let raw = raw_args_after_test(strings(args).into_iter()).unwrap();
            assert_eq!(raw, strings(&args[2..]));
        }
        assert_eq!(
            raw_args_after_test(strings(&["xtask", "ci"]).into_iter()),
            None
        );
    }

    #[test]
    fn cluster_up_parses_sizes() {
        let args = [
            "xtask",
            "cluster",
            "up",
            "--dir",
            "/d",
            "--mount",
            "/m",
            "--ost-size",
            "2G",
        ];
        let cli = Cli::try_parse_from(args).unwrap();
        match cli.task {
            Task::Cluster {
                action: ClusterAction::Up(up),
            } => {
                assert_eq!(up.ost_size, 2 << 30);
                assert_eq!(up.osts, 4);
                assert_eq!(up.net, "tcp");
            }
            _ => panic!("expected cluster up"),
        }
    }

    #[test]
    fn net_flag_selects_the_rdma_transport() {
        for (flag, net) in [("rdma", "o2ib"), ("o2ib", "o2ib"), ("tcp", "tcp")] {
            let args = [
                "xtask", "cluster", "up", "--dir", "/d", "--mount", "/m", "--net", flag,
            ];
            match Cli::try_parse_from(args).unwrap().task {
                Task::Cluster {
                    action: ClusterAction::Up(up),
                } => assert_eq!(up.net, net),
                _ => panic!("expected cluster up"),
            }
            let demo = Cli::try_parse_from(["xtask", "demo", "--net", flag]).unwrap();
            assert!(matches!(demo.task, Task::Demo(DemoArgs { ref net, .. }) if net == net));
        }
        assert!(Cli::try_parse_from(["xtask", "demo", "--net", "ib"]).is_err());
    }
}
