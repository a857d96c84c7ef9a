//! The benchmark harness works (no timing asserts): `sheen-bench ior` and `mdtest` with tiny
//! sizes against a real cluster, through the FUSE mount and through the native client; the
//! JSON they write must show every phase moving the expected bytes and ops, and every byte
//! read back matching the pattern written.

// Test code: a failed unwrap is a failed test, with its message.
#![allow(clippy::unwrap_used)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use sheen_cluster::{Cluster, ClusterSpec};
use sheen_tests::run_ok;

const KIB: u64 = 1 << 10;
const MIB: u64 = 1 << 20;

struct Bench {
    bin: PathBuf,
    json_dir: PathBuf,
    n_runs: usize,
}

impl Bench {
    /// Runs `sheen-bench ARGS --quiet --json FILE`, fails on a non-zero exit, returns the JSON.
    fn run(&mut self, args: &[&str]) -> Value {
        self.n_runs += 1;
        let json = self.json_dir.join(format!("run-{}.json", self.n_runs));
        let out = Command::new(&self.bin)
            .args(args)
            .arg("--quiet")
            .arg("--json")
            .arg(&json)
            .output()
            .expect("spawn sheen-bench");
        assert!(
            out.status.success(),
            "sheen-bench {args:?} failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_str(&fs::read_to_string(&json).unwrap()).unwrap()
    }
}

/// Checks the run's phases: names, bytes and ops of each, and that reads verified.
fn check(report: &Value, workload: &str, backend: &str, expected: &[(&str, u64, u64)]) {
    assert_eq!(report["schema"], "sheen-bench/1");
    assert_eq!(report["workload"], workload);
    assert_eq!(report["backend"], backend);
    assert!(report["date"].as_str().unwrap().ends_with('Z'), "{report}");
    let phases = report["phases"].as_array().unwrap();
    assert_eq!(phases.len(), expected.len(), "{report:#}");
    for (phase, &(name, bytes, ops)) in phases.iter().zip(expected) {
        assert_eq!(phase["name"], name, "{report:#}");
        assert_eq!(phase["bytes"].as_u64(), Some(bytes), "{name}: {report:#}");
        assert_eq!(phase["ops"].as_u64(), Some(ops), "{name}: {report:#}");
        assert_eq!(
            phase["verify_errors"].as_u64(),
            Some(0),
            "{name}: {report:#}"
        );
        assert!(phase["seconds"].as_f64().unwrap() > 0.0);
        assert!(phase["mib_per_s"].as_f64().is_some() && phase["iops"].as_f64().is_some());
        if name == "read" || name == "stat" {
            assert_eq!(phase["verified"], true, "{name} not verified: {report:#}");
        }
    }
}

fn ior_phases(bytes: u64, ops: u64) -> [(&'static str, u64, u64); 2] {
    [("write", bytes, ops), ("read", bytes, ops)]
}

/// `ior TARGET... EXTRA...`
fn ior<'a>(target: &[&'a str], extra: &[&'a str]) -> Vec<&'a str> {
    [&["ior"][..], target, extra].concat()
}

fn path_str(path: &Path) -> &str {
    path.to_str().unwrap()
}

#[test]
fn ior_and_mdtest_through_fuse_and_native() {
    let tmp = tempfile::tempdir().unwrap();
    let mut spec = ClusterSpec::new(tmp.path().join("cluster"));
    spec.n_osts = 4;
    spec.ost_size_bytes = 256 << 20;
    let mut cluster = Cluster::start(spec).unwrap();
    let mnt = tmp.path().join("mnt");
    cluster.mount(&mnt).unwrap();
    let bench_dir = mnt.join("bench");
    fs::create_dir(&bench_dir).unwrap();
    let lfs = cluster.bin("lfs");
    run_ok(
        &lfs,
        &["setstripe", "-c", "4", "-S", "1M", path_str(&bench_dir)],
    );
    let json_dir = tmp.path().join("json");
    fs::create_dir(&json_dir).unwrap();
    let bin = cluster.bin("sheen-bench");
    assert!(
        bin.is_file(),
        "{} missing: build it with `cargo build --workspace --bins`",
        bin.display()
    );
    let mut bench = Bench {
        bin,
        json_dir,
        n_runs: 0,
    };
    let dir = path_str(&bench_dir).to_owned();
    let spec = cluster.mount_spec();
    let mount = ["--dir", dir.as_str()];
    let native = ["--native", spec.as_str(), "--native-path", "/bench"];

    // Through FUSE: file per process, sequential, fsync; then a shared file at random
    // offsets, kept and read again with another task count and O_DIRECT.
    let fpp = ["-n", "2", "-t", "64K", "-b", "2M", "--fsync", "--verify"];
    let report = bench.run(&ior(&mount, &fpp));
    check(&report, "ior", "mount", &ior_phases(4 * MIB, 64));
    let shared = [
        "-n", "2", "-t", "4K", "-b", "256K", "--shared", "--random", "--verify", "--keep",
    ];
    let report = bench.run(&ior(&mount, &shared));
    check(&report, "ior", "mount", &ior_phases(512 * KIB, 128));
    assert_eq!(
        fs::metadata(bench_dir.join("ior.shared")).unwrap().len(),
        512 * KIB
    );
    let reread = [
        "-n", "4", "-t", "4K", "-b", "128K", "--shared", "--random", "--direct", "--verify",
        "--phases", "read",
    ];
    let report = bench.run(&ior(&mount, &reread));
    check(&report, "ior", "mount", &[("read", 512 * KIB, 128)]);
    assert!(!bench_dir.join("ior.shared").exists(), "not cleaned up");

    // Native client: the same file-per-process run; a shared file whose size (kept on the
    // MDS) and data are then checked through FUSE.
    let report = bench.run(&ior(&native, &fpp));
    check(&report, "ior", "native", &ior_phases(4 * MIB, 64));
    let shared_native = [
        "-n", "2", "-t", "256K", "-b", "3M", "--shared", "--random", "--verify", "--keep",
    ];
    let report = bench.run(&ior(&native, &shared_native));
    check(&report, "ior", "native", &ior_phases(6 * MIB, 24));
    assert_eq!(
        fs::metadata(bench_dir.join("ior.shared")).unwrap().len(),
        6 * MIB
    );
    let reread = [
        "-n", "1", "-t", "1M", "-b", "6M", "--shared", "--verify", "--phases", "read",
    ];
    let report = bench.run(&ior(&mount, &reread));
    check(&report, "ior", "mount", &[("read", 6 * MIB, 6)]);

    // mdtest: small files with data in per-task directories, empty files in a shared one.
    let md_phases = |files: u64, size: u64| {
        vec![
            ("create", files * size, files),
            ("stat", 0, files),
            ("read", files * size, files),
            ("remove", 0, files),
        ]
    };
    let empty_phases = |files: u64| {
        vec![
            ("create", 0, files),
            ("stat", 0, files),
            ("remove", 0, files),
        ]
    };
    for (target, backend) in [(&mount[..], "mount"), (&native[..], "native")] {
        let mut args = vec!["mdtest"];
        args.extend(target);
        args.extend([
            "-n",
            "2",
            "--files",
            "20",
            "--file-size",
            "5000",
            "--verify",
        ]);
        let report = bench.run(&args);
        check(&report, "mdtest", backend, &md_phases(40, 5000));
        let mut args = vec!["mdtest"];
        args.extend(target);
        args.extend(["-n", "3", "--files", "10", "--shared-dir"]);
        let report = bench.run(&args);
        check(&report, "mdtest", backend, &empty_phases(30));
    }

    let left: Vec<_> = fs::read_dir(&bench_dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "the harness left {left:?} behind");
    cluster.stop().unwrap();
}
