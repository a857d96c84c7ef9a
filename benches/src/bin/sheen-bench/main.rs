//! `sheen-bench`: IOR- and mdtest-like workloads against a directory (any mount, e.g. Sheen's
//! FUSE mount or a peer filesystem) or through Sheen's native client library, so the cost of
//! FUSE is visible. Prints a table, optionally writes JSON (`--json FILE`) for comparisons.
//!
//! ```text
//! sheen-bench ior    --dir /mnt/sheen/bench -n 4 -t 1M -b 256M --fsync
//! sheen-bench ior    --native 127.0.0.1:7000@tcp:/sheen --native-path /bench -n 1 -t 1M -b 1G
//! sheen-bench mdtest --dir /mnt/sheen/bench -n 4 --files 2500 --file-size 64K
//! ```
//!
//! Workloads and the JSON format are described in docs/BENCHMARKS.md.

mod backend;
mod ior;
mod mdtest;
mod pattern;
mod report;

use std::path::PathBuf;
use std::sync::Barrier;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use sheen_client::Layout;
use sheen_wire::msg::{pattern as layout_pattern, StripeLayout, STRIPE_OFFSET_ANY};

use crate::backend::Backend;
use crate::report::{Progress, Report};

#[derive(Parser)]
#[command(
    name = "sheen-bench",
    about = "IOR- and mdtest-like benchmarks, through a mount or Sheen's native client",
    arg_required_else_help = true
)]
struct Cli {
    #[command(subcommand)]
    workload: Workload,
}

#[derive(Subcommand)]
enum Workload {
    /// N tasks write then read their own file, or their segment of one shared file.
    Ior(IorArgs),
    /// N tasks create, stat, read (small files) and remove files.
    Mdtest(MdtestArgs),
}

#[derive(Args)]
struct Common {
    /// Work in this directory (created if missing): a FUSE mount, a peer filesystem, ...
    #[arg(long, conflicts_with = "native", required_unless_present = "native")]
    dir: Option<PathBuf>,
    /// Use Sheen's native client library with this mount spec (`MGSNID:/FSNAME`).
    #[arg(long, value_name = "SPEC")]
    native: Option<String>,
    /// With --native: the directory inside the filesystem (created if missing).
    #[arg(long, default_value = "/", requires = "native")]
    native_path: String,
    /// With --native: stripe count of new files (default: the directory's default layout).
    #[arg(long, requires = "native")]
    stripe_count: Option<u32>,
    /// With --native: stripe size of new files (e.g. 1M).
    #[arg(long, value_parser = parse_size, requires = "native")]
    stripe_size: Option<u64>,
    /// With --native: most read ahead of each sequential reader (e.g. 16M; 0: none).
    #[arg(long, value_parser = parse_size, requires = "native")]
    max_readahead: Option<u64>,
    /// Name of this run in the table and JSON (default: the backend's name).
    #[arg(long)]
    label: Option<String>,
    /// Also write the results as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// No progress line (it is also off when stderr is not a terminal).
    #[arg(long, short)]
    quiet: bool,
    /// Sync and drop the kernel's page, dentry and inode caches before every phase that
    /// reads (needs root; a warning otherwise).
    #[arg(long)]
    drop_caches: bool,
}

#[derive(Args)]
struct IorArgs {
    #[command(flatten)]
    common: Common,
    /// Tasks (threads).
    #[arg(short = 'n', long, default_value_t = 1)]
    tasks: usize,
    /// Transfer size, 4K to 16M.
    #[arg(short = 't', long, default_value = "1M", value_parser = parse_size)]
    transfer: u64,
    /// Bytes per task: its file, or its segment of the shared file.
    #[arg(short = 'b', long, default_value = "64M", value_parser = parse_size)]
    block: u64,
    /// One shared file, a segment per task, instead of a file per task.
    #[arg(long)]
    shared: bool,
    /// Random transfer order instead of sequential.
    #[arg(long)]
    random: bool,
    /// fsync at the end of the write phase (timed).
    #[arg(long)]
    fsync: bool,
    /// O_DIRECT (through a mount only).
    #[arg(long)]
    direct: bool,
    /// Check every byte read against the pattern written.
    #[arg(long)]
    verify: bool,
    /// Phases to run, comma-separated: write, read.
    #[arg(long, default_value = "write,read", value_delimiter = ',')]
    phases: Vec<String>,
    /// Keep the files afterwards (for a later `--phases read` run).
    #[arg(long)]
    keep: bool,
    /// Seed of the random order.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

#[derive(Args)]
struct MdtestArgs {
    #[command(flatten)]
    common: Common,
    /// Tasks (threads).
    #[arg(short = 'n', long, default_value_t = 1)]
    tasks: usize,
    /// Files per task.
    #[arg(short = 'f', long, default_value_t = 1000)]
    files: u64,
    /// Bytes written into each file at create and read back (0: metadata only).
    #[arg(long, default_value = "0", value_parser = parse_size)]
    file_size: u64,
    /// One directory shared by all tasks instead of one per task.
    #[arg(long)]
    shared_dir: bool,
    /// Check the data read back against the pattern written.
    #[arg(long)]
    verify: bool,
}

fn main() -> std::process::ExitCode {
    match run(Cli::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("sheen-bench: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.workload {
        Workload::Ior(args) => {
            let mut write = false;
            let mut read = false;
            for phase in &args.phases {
                match phase.trim() {
                    "write" => write = true,
                    "read" => read = true,
                    other => bail!("unknown ior phase {other:?} (write, read)"),
                }
            }
            if args.direct && args.common.native.is_some() {
                bail!("--direct applies to a mount; the native client has no page cache");
            }
            let params = ior::IorParams {
                tasks: args.tasks,
                transfer_bytes: args.transfer,
                block_bytes: args.block,
                shared: args.shared,
                random: args.random,
                fsync: args.fsync,
                direct: args.direct,
                verify: args.verify,
                write,
                read,
                keep: args.keep,
                drop_caches: args.common.drop_caches,
                seed: args.seed,
            };
            params.validate()?;
            let (backend, target) = open_backend(&args.common, args.direct)?;
            let mut report = new_report("ior", &backend, target, &args.common, params.to_json());
            let progress = Progress::new(args.common.quiet);
            report.phases = ior::run(&backend, &params, &progress)?;
            finish(&report, &args.common)
        }
        Workload::Mdtest(args) => {
            let params = mdtest::MdtestParams {
                tasks: args.tasks,
                files_per_task: args.files,
                file_size_bytes: args.file_size,
                shared_dir: args.shared_dir,
                verify: args.verify,
                drop_caches: args.common.drop_caches,
            };
            params.validate()?;
            let (backend, target) = open_backend(&args.common, false)?;
            let mut report = new_report("mdtest", &backend, target, &args.common, params.to_json());
            let progress = Progress::new(args.common.quiet);
            report.phases = mdtest::run(&backend, &params, &progress)?;
            finish(&report, &args.common)
        }
    }
}

fn open_backend(common: &Common, direct: bool) -> Result<(Backend, String)> {
    if let Some(spec) = &common.native {
        let template = match (common.stripe_count, common.stripe_size) {
            (None, None) => None,
            (count, size) => Some(Layout::plain(StripeLayout {
                pattern: layout_pattern::RAID0,
                stripe_size: size.unwrap_or(0),
                stripe_count: count.unwrap_or(0),
                stripe_offset: STRIPE_OFFSET_ANY,
                pool: String::new(),
                objects: Vec::new(),
            })),
        };
        let backend = Backend::native(spec, &common.native_path, template, common.max_readahead)?;
        Ok((backend, format!("{spec} {}", common.native_path)))
    } else if let Some(dir) = &common.dir {
        Ok((Backend::mount(dir, direct)?, dir.display().to_string()))
    } else {
        bail!("give --dir DIR or --native SPEC")
    }
}

fn new_report(
    workload: &'static str,
    backend: &Backend,
    target: String,
    common: &Common,
    params: serde_json::Value,
) -> Report {
    let label = common
        .label
        .clone()
        .unwrap_or_else(|| backend.name().to_owned());
    Report::new(workload, backend.name(), target, label, params)
}

/// Prints the table, writes the JSON, and fails if any data read back was wrong.
fn finish(report: &Report, common: &Common) -> Result<()> {
    report.print_table();
    if let Some(path) = &common.json {
        report.write_json(path)?;
    }
    let bad: u64 = report.phases.iter().map(|p| p.verify_errors).sum();
    if bad > 0 {
        bail!("{bad} transfers or files read back wrong (see above)");
    }
    Ok(())
}

/// Runs `work(task)` on `n_tasks` threads started together behind a barrier; returns the
/// wall time from the barrier to the last task's end, and the sum of what the tasks return.
/// Fails with the first task's error.
pub fn run_tasks<F>(n_tasks: usize, work: F) -> Result<(Duration, u64)>
where
    F: Fn(usize) -> Result<u64> + Sync,
{
    let barrier = Barrier::new(n_tasks + 1);
    let work = &work;
    let barrier = &barrier;
    std::thread::scope(|scope| {
        let threads: Vec<_> = (0..n_tasks)
            .map(|task| {
                std::thread::Builder::new()
                    .name(format!("task-{task}"))
                    .spawn_scoped(scope, move || {
                        barrier.wait();
                        work(task)
                    })
            })
            .collect::<Result<_, _>>()
            .context("cannot start the task threads")?;
        barrier.wait();
        let started = Instant::now();
        let mut sum = 0;
        let mut first_error = None;
        for thread in threads {
            match thread.join() {
                Ok(Ok(n)) => sum += n,
                Ok(Err(error)) => {
                    first_error.get_or_insert(error);
                }
                Err(_) => {
                    first_error.get_or_insert_with(|| anyhow::anyhow!("a task panicked"));
                }
            }
        }
        let elapsed = started.elapsed();
        match first_error {
            Some(error) => Err(error),
            None => Ok((elapsed, sum)),
        }
    })
}

/// Syncs and drops the page, dentry and inode caches, so reads come from the filesystem;
/// warns (once per call) when not allowed.
pub fn drop_caches() {
    // SAFETY: sync takes no arguments and cannot fail.
    unsafe { libc::sync() };
    if let Err(error) = std::fs::write("/proc/sys/vm/drop_caches", "3\n") {
        eprintln!("warning: cannot drop caches ({error}); reads may come from the page cache");
    }
}

/// Parses `4096`, `4K`, `64KiB`, `1M`, `16MiB`, `1G` (binary units), as the daemons do.
fn parse_size(text: &str) -> Result<u64, String> {
    sheen_daemon::parse_size(text).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("4K"), Ok(4096));
        assert_eq!(parse_size("1MiB"), Ok(1 << 20));
        assert!(parse_size("1.5M").is_err());
    }

    #[test]
    fn arguments_parse() {
        let cli = Cli::try_parse_from([
            "sheen-bench",
            "ior",
            "--dir",
            "/tmp/x",
            "-n",
            "4",
            "-t",
            "4K",
            "-b",
            "1M",
            "--random",
            "--phases",
            "read",
        ])
        .unwrap();
        let Workload::Ior(args) = cli.workload else {
            panic!("expected ior");
        };
        assert_eq!((args.tasks, args.transfer, args.block), (4, 4096, 1 << 20));
        assert_eq!(args.phases, vec!["read".to_owned()]);
        assert!(Cli::try_parse_from(["sheen-bench", "ior", "-n", "1"]).is_err());
        assert!(
            Cli::try_parse_from(["sheen-bench", "mdtest", "--dir", "/d", "--native", "x:/y"])
                .is_err()
        );
    }

    #[test]
    fn tasks_run_together_and_errors_surface() {
        let (_, sum) = run_tasks(4, |task| Ok(task as u64)).unwrap();
        assert_eq!(sum, 6);
        let error = run_tasks(3, |task| {
            if task == 1 {
                bail!("task one failed")
            }
            Ok(0)
        })
        .unwrap_err();
        assert!(error.to_string().contains("task one"), "{error}");
    }

    #[test]
    fn ior_through_a_directory_verifies() {
        let dir = tempfile::tempdir().unwrap();
        for shared in [false, true] {
            for random in [false, true] {
                let params = ior::IorParams {
                    tasks: 3,
                    transfer_bytes: 4096,
                    block_bytes: 64 << 10,
                    shared,
                    random,
                    fsync: true,
                    direct: false,
                    verify: true,
                    write: true,
                    read: true,
                    keep: false,
                    drop_caches: false,
                    seed: 5,
                };
                let backend = Backend::mount(dir.path(), false).unwrap();
                let phases = ior::run(&backend, &params, &Progress::new(true)).unwrap();
                assert_eq!(phases.len(), 2);
                for phase in &phases {
                    assert_eq!((phase.bytes, phase.ops), (3 * (64 << 10), 3 * 16));
                }
                assert_eq!(phases[1].verified, Some(true));
            }
        }
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            0,
            "files left behind"
        );
    }

    #[test]
    fn mdtest_through_a_directory_verifies() {
        let dir = tempfile::tempdir().unwrap();
        for shared_dir in [false, true] {
            let params = mdtest::MdtestParams {
                tasks: 2,
                files_per_task: 10,
                file_size_bytes: 5000,
                shared_dir,
                verify: true,
                drop_caches: false,
            };
            let backend = Backend::mount(dir.path(), false).unwrap();
            let phases = mdtest::run(&backend, &params, &Progress::new(true)).unwrap();
            let names: Vec<&str> = phases.iter().map(|p| p.name.as_str()).collect();
            assert_eq!(names, ["create", "stat", "read", "remove"]);
            assert!(phases.iter().all(|p| p.ops == 20 && p.verify_errors == 0));
            assert_eq!(phases[2].bytes, 20 * 5000);
            assert_eq!(phases[2].verified, Some(true));
        }
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            0,
            "files left behind"
        );
    }
}
