//! Helpers shared by the integration suites: deterministic data, command runners.

use std::path::Path;
use std::process::Command;

/// Deterministic pseudo-random bytes (xorshift64*), so a failure can be reproduced.
pub fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        out.extend_from_slice(&x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Runs a binary from the cluster's bin dir and returns its stdout; panics with stderr on
/// failure (tests only).
pub fn run_ok(bin: &Path, args: &[&str]) -> String {
    let out = Command::new(bin).args(args).output().expect("spawn tool");
    assert!(
        out.status.success(),
        "{} {:?} failed: {}\n{}",
        bin.display(),
        args,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Parses `lfs getstripe` output: (stripe_count, stripe_size, [(obdidx, objid)]).
pub fn parse_getstripe(out: &str) -> (u32, u64, Vec<(u32, u64)>) {
    let mut count = 0;
    let mut size = 0;
    let mut rows = Vec::new();
    let mut in_table = false;
    for line in out.lines() {
        let t = line.trim();
        if let Some(v) = t.strip_prefix("lmm_stripe_count:") {
            count = v.trim().parse().unwrap_or(0);
        } else if let Some(v) = t.strip_prefix("lmm_stripe_size:") {
            size = v.trim().parse().unwrap_or(0);
        } else if t.starts_with("obdidx") {
            in_table = true;
        } else if in_table {
            let cols: Vec<&str> = t.split_whitespace().collect();
            if cols.len() >= 2 {
                if let (Ok(i), Ok(o)) = (cols[0].parse(), cols[1].parse()) {
                    rows.push((i, o));
                }
            }
        }
    }
    (count, size, rows)
}

/// Set by `cargo xtask test` for its second pass of the POSIX suite, over FUSE over io_uring.
pub const FUSE_URING_ENV: &str = "SHEEN_TEST_FUSE_URING";

/// Whether this run is the pass over FUSE over io_uring.
pub fn fuse_uring_pass() -> bool {
    std::env::var_os(FUSE_URING_ENV).is_some()
}

/// Panics unless the mount process `pid` serves every CPU's FUSE-over-io_uring queue: a
/// queue's thread (`fuser-uring-N`) runs while the kernel holds ring entries it registered,
/// and ends when all of them failed (the kernel then falls back to /dev/fuse).
pub fn assert_fuse_uring_queues(pid: u32) {
    let possible = std::fs::read_to_string("/sys/devices/system/cpu/possible")
        .expect("read the possible CPUs");
    let cpus = possible
        .trim()
        .split(',')
        .filter_map(|part| part.rsplit('-').next()?.parse::<usize>().ok())
        .max()
        .expect("parse the possible CPUs")
        + 1;
    let mut threads: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/task"))
        .expect("list the mount's threads")
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .map(|comm| comm.trim().to_string())
        .filter(|comm| comm.starts_with("fuser-uring-"))
        .collect();
    threads.sort();
    let mut expected: Vec<String> = (0..cpus).map(|q| format!("fuser-uring-{q}")).collect();
    expected.sort();
    assert_eq!(
        threads, expected,
        "the mount (pid {pid}) does not serve every CPU's io_uring queue"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pattern_is_deterministic() {
        assert_eq!(pattern(7, 100), pattern(7, 100));
        assert_ne!(pattern(7, 100), pattern(8, 100));
        assert_eq!(pattern(1, 13).len(), 13);
    }

    #[test]
    fn parses_getstripe() {
        let out = "f\nlmm_stripe_count:  2\nlmm_stripe_size:   1048576\n\
                   lmm_pattern:       raid0\nlmm_layout_gen:    0\nlmm_stripe_offset: 1\n\
                   \tobdidx\t\t objid\t\t objid\t\t group\n\
                   \t     1\t             5\t          0x5\t             0\n\
                   \t     2\t             9\t          0x9\t             0\n";
        assert_eq!(parse_getstripe(out), (2, 1 << 20, vec![(1, 5), (2, 9)]));
    }
}
