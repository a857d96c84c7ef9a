//! `cargo xtask bench`: the standard benchmark set, through FUSE and the native client, and
//! optionally against a peer filesystem's mount in the same run.
//!
//! Builds (release unless `--debug`), starts a cluster of 4 OSTs, mounts it, gives the bench
//! directory a 4-stripe 1 MiB default layout with `lfs setstripe`, then runs `sheen-bench`
//! (benches/src/bin/sheen-bench) once per workload and target, each writing its JSON into
//! the results directory. Prints one comparison table (Markdown, ready for
//! docs/BENCHMARKS.md) with ratios, writes it as `summary.json` too, and always stops the
//! cluster.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use serde_json::{json, Value};
use sheen_cluster::{Cluster, ClusterSpec};

use crate::util;

/// Packages built for a run: the cluster's binaries and the harness.
const PACKAGES: [&str; 6] = [
    "sheen-mgs",
    "sheen-mds",
    "sheen-oss",
    "sheen-client-fuse",
    "sheen-tools",
    "sheen-benches",
];
const MIB: u64 = 1 << 20;
const STRIPE_COUNT: u32 = 4;
/// Bound on each `lfs` command.
const LFS_TIMEOUT: Duration = Duration::from_secs(60);
/// Tasks of the 4 KiB random read: as many synchronous streams as fio's queue depth 16.
const RANDOM_READ_TASKS: u64 = 16;

/// How much each workload moves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Size {
    /// About a minute: 128 MiB sequential, 2,000 metadata files, 500 small files.
    Small,
    /// fsbench.sh's sizes: 1 GiB sequential (4 x 256 MiB), 10,000 files, 5,000 small files.
    Medium,
    /// 4 GiB sequential (4 x 1 GiB), 20,000 files, 10,000 small files.
    Large,
}

/// The sizes of one `--size`.
#[derive(Clone, Copy, Debug)]
struct Sizes {
    /// The one-task sequential file; also the file the random reads read.
    seq1_bytes: u64,
    /// Each task's file in the four-task sequential run.
    seq4_bytes: u64,
    /// Files of the metadata runs, in total (split over the tasks).
    md_files: u64,
    /// Files of the small-file run.
    small_files: u64,
    small_file_bytes: u64,
}

impl Size {
    fn sizes(self) -> Sizes {
        match self {
            Size::Small => Sizes {
                seq1_bytes: 128 * MIB,
                seq4_bytes: 32 * MIB,
                md_files: 2000,
                small_files: 500,
                small_file_bytes: 64 << 10,
            },
            Size::Medium => Sizes {
                seq1_bytes: 1024 * MIB,
                seq4_bytes: 256 * MIB,
                md_files: 10_000,
                small_files: 5000,
                small_file_bytes: 64 << 10,
            },
            Size::Large => Sizes {
                seq1_bytes: 4096 * MIB,
                seq4_bytes: 1024 * MIB,
                md_files: 20_000,
                small_files: 10_000,
                small_file_bytes: 64 << 10,
            },
        }
    }

    fn name(self) -> &'static str {
        match self {
            Size::Small => "small",
            Size::Medium => "medium",
            Size::Large => "large",
        }
    }
}

impl Sizes {
    /// Each OST's block file: twice its share of the most data alive at once, plus room.
    fn ost_size_bytes(&self) -> u64 {
        let most_data = self.seq1_bytes.max(4 * self.seq4_bytes);
        (2 * most_data / u64::from(STRIPE_COUNT) + 256 * MIB).max(512 * MIB)
    }
}

#[derive(Args)]
pub struct BenchArgs {
    /// How much each workload moves: small (about a minute), medium (fsbench.sh's sizes),
    /// large.
    #[arg(long, value_enum, default_value = "small")]
    pub size: Size,
    /// Also run the mount-path workloads in a new subdirectory of this mount (a peer
    /// filesystem, e.g. from ../shared/bench/peer_*.sh) and print Sheen/peer ratios.
    #[arg(long, value_name = "MNT")]
    pub compare: Option<PathBuf>,
    /// The peer's name in the table and JSON.
    #[arg(
        long,
        value_name = "NAME",
        default_value = "peer",
        requires = "compare"
    )]
    pub compare_label: String,
    /// Directory for the JSON results (default: target/bench/SIZE-UNIXTIME).
    #[arg(long, value_name = "DIR")]
    pub json: Option<PathBuf>,
    /// Repeat the whole set this many times (targets interleaved); the table shows medians.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pub runs: u32,
    /// Use debug binaries instead of building in release mode.
    #[arg(long)]
    pub debug: bool,
    /// The MDS's `--commit-interval-ms` (0: commit before every reply).
    #[arg(long, default_value_t = 0)]
    pub mds_commit_interval_ms: u64,
}

/// Where a workload runs.
#[derive(Clone, Debug)]
enum Target {
    Mount(PathBuf),
    Native { spec: String, path: String },
}

impl Target {
    fn args(&self) -> Vec<String> {
        match self {
            Target::Mount(dir) => vec!["--dir".to_owned(), dir.display().to_string()],
            Target::Native { spec, path } => vec![
                "--native".to_owned(),
                spec.clone(),
                "--native-path".to_owned(),
                path.clone(),
            ],
        }
    }

    fn is_mount(&self) -> bool {
        matches!(self, Target::Mount(_))
    }
}

/// One workload of the standard set: `sheen-bench` arguments and the rows it gives.
struct Workload {
    /// File stem of its JSON, e.g. `seq-1t`.
    key: &'static str,
    args: Vec<String>,
    /// (phase, row name, unit); the unit picks the metric.
    rows: Vec<(&'static str, String, &'static str)>,
    /// Retried without `--direct` (and the rows marked) if it fails with it.
    direct: bool,
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|arg| (*arg).to_owned()).collect()
}

fn mib(bytes: u64) -> String {
    format!("{}M", bytes / MIB)
}

/// The standard set, in run order (the random reads read the file `seq-1t` kept).
fn standard_set(sizes: &Sizes) -> Vec<Workload> {
    let rand_block = sizes.seq1_bytes / RANDOM_READ_TASKS;
    let md_args = |tasks: u64, files: u64, file_size: u64| {
        let mut args = strings(&["mdtest", "-n", &tasks.to_string()]);
        args.extend(strings(&["--files", &(files / tasks).to_string()]));
        args.extend(strings(&["--file-size", &file_size.to_string()]));
        args
    };
    let md_rows = |prefix: &str, phases: &[&'static str]| {
        phases
            .iter()
            .map(|&phase| (phase, format!("{prefix} {phase}"), "ops/s"))
            .collect::<Vec<_>>()
    };
    let md_tag = format!("N={}", sizes.md_files);
    let small_tag = format!("{}K N={}", sizes.small_file_bytes >> 10, sizes.small_files);
    vec![
        Workload {
            key: "seq-1t",
            args: strings(&[
                "ior",
                "-n",
                "1",
                "--shared",
                "-t",
                "1M",
                "-b",
                &mib(sizes.seq1_bytes),
                "--fsync",
                "--keep",
            ]),
            rows: vec![
                ("write", "seq write 1M 1 task (fsync)".to_owned(), "MiB/s"),
                ("read", "seq read 1M 1 task".to_owned(), "MiB/s"),
            ],
            direct: false,
        },
        Workload {
            key: "rand-4k",
            args: strings(&[
                "ior",
                "-n",
                &RANDOM_READ_TASKS.to_string(),
                "--shared",
                "-t",
                "4K",
                "-b",
                &mib(rand_block),
                "--random",
                "--phases",
                "read",
            ]),
            rows: vec![(
                "read",
                format!("rand read 4K {RANDOM_READ_TASKS} tasks O_DIRECT"),
                "IOPS",
            )],
            direct: true,
        },
        Workload {
            key: "seq-4t",
            args: strings(&[
                "ior",
                "-n",
                "4",
                "-t",
                "1M",
                "-b",
                &mib(sizes.seq4_bytes),
                "--fsync",
            ]),
            rows: vec![
                ("write", "seq write 1M 4 tasks (fsync)".to_owned(), "MiB/s"),
                ("read", "seq read 1M 4 tasks".to_owned(), "MiB/s"),
            ],
            direct: false,
        },
        Workload {
            key: "md-1t",
            args: md_args(1, sizes.md_files, 0),
            rows: md_rows(
                &format!("md 1 task {md_tag}"),
                &["create", "stat", "remove"],
            ),
            direct: false,
        },
        Workload {
            key: "md-4t",
            args: md_args(4, sizes.md_files, 0),
            rows: md_rows(
                &format!("md 4 tasks {md_tag}"),
                &["create", "stat", "remove"],
            ),
            direct: false,
        },
        Workload {
            key: "small-1t",
            args: md_args(1, sizes.small_files, sizes.small_file_bytes),
            rows: md_rows(
                &format!("small {small_tag}"),
                &["create", "stat", "read", "remove"],
            ),
            direct: false,
        },
    ]
}

/// One row of the final table: a value per target label (the median of its runs).
#[derive(Default)]
struct Row {
    unit: &'static str,
    values: BTreeMap<String, f64>,
    /// Every run's value, in run order.
    samples: BTreeMap<String, Vec<f64>>,
    notes: Vec<String>,
}

/// The median (the mean of the middle two for an even count); `None` when empty.
fn median(values: &[f64]) -> Option<f64> {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(sorted[n / 2]),
        _ => Some((sorted[n / 2 - 1] + sorted[n / 2]) / 2.0),
    }
}

pub fn run(args: &BenchArgs) -> Result<()> {
    if let Some(peer) = &args.compare {
        if !peer.is_dir() {
            bail!("--compare {}: not a directory", peer.display());
        }
    }
    util::step("ensure fuse3 is installed");
    util::ensure_fuse3()?;
    util::step(if args.debug {
        "build (debug)"
    } else {
        "build (release)"
    });
    let mut build = util::cargo();
    build.arg("build");
    if !args.debug {
        build.arg("--release");
    }
    for package in PACKAGES {
        build.args(["-p", package]);
    }
    util::run(&mut build)?;
    let bin_dir = util::target_dir().join(if args.debug { "debug" } else { "release" });
    let unix_time = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let json_dir = match &args.json {
        Some(dir) => dir.clone(),
        None => util::target_dir()
            .join("bench")
            .join(format!("{}-{unix_time}", args.size.name())),
    };
    fs::create_dir_all(&json_dir).with_context(|| format!("mkdir {}", json_dir.display()))?;
    let work_dir = std::env::temp_dir().join(format!("sheen-bench-{}", std::process::id()));
    fs::create_dir_all(&work_dir).with_context(|| format!("mkdir {}", work_dir.display()))?;
    let sizes = args.size.sizes();
    let mut spec = ClusterSpec::new(&work_dir);
    spec.bin_dir = bin_dir.clone();
    spec.n_osts = STRIPE_COUNT;
    spec.ost_size_bytes = sizes.ost_size_bytes();
    if args.mds_commit_interval_ms > 0 {
        spec.mds_commit_interval = Some(std::time::Duration::from_millis(
            args.mds_commit_interval_ms,
        ));
    }
    util::step(&format!(
        "start a cluster of {STRIPE_COUNT} OSTs of {} MiB in {}",
        spec.ost_size_bytes / MIB,
        work_dir.display()
    ));
    // Attached: dropping it (also on error or panic) unmounts and stops everything.
    let mut cluster = Cluster::start(spec).context("cannot start the cluster")?;
    let outcome = bench(&mut cluster, args, &sizes, &bin_dir, &json_dir);
    if outcome.is_err() {
        for line in cluster.log_errors() {
            eprintln!("  {line}");
        }
    }
    util::step("stop the cluster");
    let stopped = cluster.stop().context("cannot stop the cluster");
    outcome?;
    stopped?;
    fs::remove_dir_all(&work_dir).with_context(|| format!("rm -r {}", work_dir.display()))?;
    util::step(&format!("results in {}", json_dir.display()));
    Ok(())
}

fn bench(
    cluster: &mut Cluster,
    args: &BenchArgs,
    sizes: &Sizes,
    bin_dir: &Path,
    json_dir: &Path,
) -> Result<()> {
    let mountpoint = cluster.dir().join("mnt");
    util::step(&format!("mount at {}", mountpoint.display()));
    cluster.mount(&mountpoint)?;
    let bench_dir = mountpoint.join("bench");
    fs::create_dir(&bench_dir).with_context(|| format!("mkdir {}", bench_dir.display()))?;
    util::step("default layout of the bench directory: 4 stripes of 1 MiB");
    util::output(
        Command::new(cluster.bin("lfs"))
            .args(["setstripe", "-c", &STRIPE_COUNT.to_string(), "-S", "1M"])
            .arg(&bench_dir),
        LFS_TIMEOUT,
    )?;

    let mut targets = vec![
        ("sheen-fuse".to_owned(), Target::Mount(bench_dir.clone())),
        (
            "sheen-native".to_owned(),
            Target::Native {
                spec: cluster.mount_spec(),
                path: "/bench".to_owned(),
            },
        ),
    ];
    let peer_dir = args
        .compare
        .as_ref()
        .map(|peer| peer.join(format!("sheen-bench.{}", std::process::id())));
    if let Some(dir) = &peer_dir {
        fs::create_dir_all(dir).with_context(|| format!("mkdir {}", dir.display()))?;
        targets.push((args.compare_label.clone(), Target::Mount(dir.clone())));
    }

    let sheen_bench = bin_dir.join("sheen-bench");
    let workloads = standard_set(sizes);
    let mut rows: Vec<(String, Row)> = Vec::new();
    let mut runs = Vec::new();
    let mut date = None;
    for (run, label, target) in (1..=args.runs).flat_map(|run| {
        targets
            .iter()
            .map(move |(label, target)| (run, label, target))
    }) {
        for workload in &workloads {
            let json_path = json_dir.join(format!("{label}-{}-r{run}.json", workload.key));
            util::step(&format!(
                "run {run}/{}, {label}: {}",
                args.runs, workload.key
            ));
            let mut bench_args = workload.args.clone();
            bench_args.extend(target.args());
            bench_args.extend(strings(&["--label", label, "--drop-caches", "--json"]));
            bench_args.push(json_path.display().to_string());
            let mut note = None;
            let status = if workload.direct && target.is_mount() {
                let with_direct = run_bench(&sheen_bench, &bench_args, Some("--direct"));
                if with_direct.is_err() {
                    eprintln!("{label}: O_DIRECT failed, measuring buffered reads instead");
                    note = Some(format!("{label}: buffered, O_DIRECT refused"));
                    run_bench(&sheen_bench, &bench_args, None)
                } else {
                    with_direct
                }
            } else {
                run_bench(&sheen_bench, &bench_args, None)
            };
            status.with_context(|| format!("{label}: {} failed", workload.key))?;
            let report: Value = serde_json::from_str(
                &fs::read_to_string(&json_path)
                    .with_context(|| format!("read {}", json_path.display()))?,
            )
            .with_context(|| format!("parse {}", json_path.display()))?;
            date.get_or_insert_with(|| report["date"].as_str().unwrap_or("").to_owned());
            for (phase, row_name, unit) in &workload.rows {
                let value = phase_metric(&report, phase, unit)
                    .with_context(|| format!("{}: no phase {phase}", json_path.display()))?;
                let idx = match rows.iter().position(|(name, _)| name == row_name) {
                    Some(idx) => idx,
                    None => {
                        rows.push((row_name.clone(), Row::default()));
                        rows.len() - 1
                    }
                };
                let row = &mut rows[idx].1;
                row.unit = unit;
                row.samples.entry(label.clone()).or_default().push(value);
                if let Some(note) = &note {
                    if !row.notes.contains(note) {
                        row.notes.push(note.clone());
                    }
                }
            }
            runs.push(
                json_path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned()),
            );
        }
    }
    if let Some(dir) = &peer_dir {
        fs::remove_dir_all(dir).with_context(|| format!("rm -r {}", dir.display()))?;
    }

    for (_, row) in &mut rows {
        row.values = row
            .samples
            .iter()
            .filter_map(|(label, samples)| Some((label.clone(), median(samples)?)))
            .collect();
    }
    let labels: Vec<String> = targets.iter().map(|(label, _)| label.clone()).collect();
    let peer = args.compare.as_ref().map(|_| args.compare_label.as_str());
    let table = markdown_table(&rows, &labels, peer);
    util::step("results");
    println!(
        "sheen-bench standard set, size {}, {} (median of {} run(s))",
        args.size.name(),
        date.as_deref().unwrap_or(""),
        args.runs
    );
    print!("{table}");
    let summary = json!({
        "schema": "sheen-xtask-bench/1",
        "size": args.size.name(),
        "runs": args.runs,
        "date": date,
        "command": std::env::args().collect::<Vec<_>>(),
        "targets": labels,
        "compare": args.compare.as_ref().map(|p| p.display().to_string()),
        "rows": rows.iter().map(|(name, row)| json!({
            "test": name,
            "unit": row.unit,
            "values": row.values,
            "samples": row.samples,
            "notes": row.notes,
        })).collect::<Vec<_>>(),
        "run_files": runs,
        "table_markdown": table,
    });
    let summary_path = json_dir.join("summary.json");
    fs::write(
        &summary_path,
        serde_json::to_string_pretty(&summary)? + "\n",
    )
    .with_context(|| format!("write {}", summary_path.display()))?;
    Ok(())
}

fn run_bench(binary: &Path, args: &[String], extra: Option<&str>) -> Result<()> {
    let mut command = Command::new(binary);
    command.args(args);
    if let Some(extra) = extra {
        command.arg(extra);
    }
    util::run(&mut command)
}

/// A phase's MiB/s, IOPS or ops/s from a `sheen-bench` JSON report.
fn phase_metric(report: &Value, phase: &str, unit: &str) -> Option<f64> {
    let phase = report["phases"]
        .as_array()?
        .iter()
        .find(|p| p["name"] == phase)?;
    let field = match unit {
        "MiB/s" => "mib_per_s",
        "IOPS" => "iops",
        _ => "ops_per_s",
    };
    phase[field].as_f64()
}

/// The comparison table: a column per target, then FUSE/native (the cost of FUSE) and,
/// with a peer, Sheen/peer ratios.
fn markdown_table(rows: &[(String, Row)], labels: &[String], peer: Option<&str>) -> String {
    let mut header = vec!["test".to_owned(), "unit".to_owned()];
    header.extend(labels.iter().cloned());
    header.push("fuse/native".to_owned());
    if let Some(peer) = peer {
        header.push(format!("fuse/{peer}"));
        header.push(format!("native/{peer}"));
    }
    let mut out = format!("| {} |\n", header.join(" | "));
    out += &format!("|{}\n", " --- |".repeat(header.len()));
    let ratio = |a: Option<&f64>, b: Option<&f64>| match (a, b) {
        (Some(a), Some(b)) if *b > 0.0 && a / b < 0.1 => format!("{:.3}x", a / b),
        (Some(a), Some(b)) if *b > 0.0 => format!("{:.2}x", a / b),
        _ => "-".to_owned(),
    };
    for (name, row) in rows {
        let mut cells = vec![name.clone(), row.unit.to_owned()];
        for label in labels {
            cells.push(
                row.values
                    .get(label)
                    .map_or("-".to_owned(), |v| format!("{v:.1}")),
            );
        }
        let fuse = row.values.get("sheen-fuse");
        let native = row.values.get("sheen-native");
        cells.push(ratio(fuse, native));
        if let Some(peer) = peer {
            let peer_value = row.values.get(peer);
            cells.push(ratio(fuse, peer_value));
            cells.push(ratio(native, peer_value));
        }
        out += &format!("| {} |\n", cells.join(" | "));
        for note in &row.notes {
            out += &format!("|   note: {note} |\n");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_standard_set_is_consistent() {
        for size in [Size::Small, Size::Medium, Size::Large] {
            let sizes = size.sizes();
            assert_eq!(sizes.seq1_bytes % (RANDOM_READ_TASKS * MIB), 0);
            let set = standard_set(&sizes);
            assert_eq!(set[0].key, "seq-1t");
            assert_eq!(set[1].key, "rand-4k");
            assert!(set.iter().all(|w| !w.rows.is_empty()));
            assert!(sizes.ost_size_bytes() * u64::from(STRIPE_COUNT) > 2 * sizes.seq1_bytes);
        }
    }

    #[test]
    fn arguments_parse() {
        use clap::Parser;
        let args = ["xtask", "bench", "--size", "medium", "--compare", "/mnt/g"];
        let cli = crate::Cli::try_parse_from(args).unwrap();
        let crate::Task::Bench(bench) = cli.task else {
            panic!("expected bench");
        };
        assert_eq!(bench.size, Size::Medium);
        assert_eq!(bench.compare_label, "peer");
        let cli = crate::Cli::try_parse_from(["xtask", "bench"]).unwrap();
        assert!(matches!(
            cli.task,
            crate::Task::Bench(BenchArgs {
                size: Size::Small,
                ..
            })
        ));
        // A label without a peer is a mistake.
        assert!(crate::Cli::try_parse_from(["xtask", "bench", "--compare-label", "x"]).is_err());
    }

    #[test]
    fn medians() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), Some(2.5));
    }

    #[test]
    fn table_has_ratios() {
        let mut row = Row {
            unit: "MiB/s",
            ..Row::default()
        };
        row.values.insert("sheen-fuse".to_owned(), 200.0);
        row.values.insert("sheen-native".to_owned(), 400.0);
        row.values.insert("gluster".to_owned(), 100.0);
        let labels = strings(&["sheen-fuse", "sheen-native", "gluster"]);
        let table = markdown_table(&[("seq".to_owned(), row)], &labels, Some("gluster"));
        assert!(
            table.contains("| seq | MiB/s | 200.0 | 400.0 | 100.0 | 0.50x | 2.00x | 4.00x |"),
            "{table}"
        );
        let report = json!({"phases": [{"name": "read", "mib_per_s": 3.5, "iops": 7.0}]});
        assert_eq!(phase_metric(&report, "read", "MiB/s"), Some(3.5));
        assert_eq!(phase_metric(&report, "read", "IOPS"), Some(7.0));
        assert_eq!(phase_metric(&report, "write", "IOPS"), None);
    }
}
