//! `cargo xtask demo`: the README's main job, end to end through FUSE.
//!
//! Starts a cluster of 4 OSTs, stripes a file over all of them with `lfs setstripe`, writes
//! pseudo-random data through the mount, unmounts and mounts again (so the read-back comes
//! from the servers, not the page cache), compares byte for byte, shows `lfs getstripe` and
//! `lfs df`, and stops the cluster, also on failure.

use std::fs::{self, File, OpenOptions};
use std::io::{BufReader, Read, Write};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, ensure, Context, Result};
use sheen_cluster::{Cluster, ClusterSpec};

use crate::util;
use crate::DemoArgs;

/// Stripe count asked of `lfs setstripe`, and OSTs started.
const STRIPE_COUNT: u32 = 4;
const MIB: u64 = 1 << 20;
/// Each OST's block file; sparse until written.
const OST_SIZE_BYTES_MIN: u64 = 256 * MIB;
/// Bound on each `lfs` command.
const LFS_TIMEOUT: Duration = Duration::from_secs(60);

pub fn run(args: &DemoArgs) -> Result<()> {
    ensure!(args.size_mib > 0, "--size-mib must be at least 1");
    util::step("ensure fuse3 is installed");
    util::ensure_fuse3()?;
    util::step(if args.debug {
        "build (debug)"
    } else {
        "build (release)"
    });
    let bin_dir = util::build_cluster_binaries(args.debug)?;
    let (dir, is_temporary) = match &args.dir {
        Some(dir) => (dir.clone(), false),
        None => {
            let dir = std::env::temp_dir().join(format!("sheen-demo-{}", std::process::id()));
            (dir, true)
        }
    };
    fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut spec = ClusterSpec::new(&dir);
    spec.bin_dir = bin_dir;
    spec.net = args.net.clone();
    spec.n_osts = STRIPE_COUNT;
    spec.ost_size_bytes = OST_SIZE_BYTES_MIN.max(args.size_mib * MIB);
    util::step(&format!("start the cluster in {}", dir.display()));
    // Attached: dropping it (also on error or panic) unmounts and stops everything.
    let mut cluster = Cluster::start(spec).context("cannot start the cluster")?;
    let outcome = demo(&mut cluster, &dir, args);
    if outcome.is_err() {
        let errors = cluster.log_errors();
        if !errors.is_empty() {
            eprintln!("ERROR and WARN lines in {}:", cluster.logs_dir().display());
            for line in errors {
                eprintln!("  {line}");
            }
        }
    }
    util::step("stop the cluster");
    let stopped = cluster.stop().context("cannot stop the cluster");
    outcome?;
    stopped?;
    if is_temporary {
        fs::remove_dir_all(&dir).with_context(|| format!("cannot remove {}", dir.display()))?;
    }
    util::step("demo passed");
    Ok(())
}

fn demo(cluster: &mut Cluster, dir: &Path, args: &DemoArgs) -> Result<()> {
    let mountpoint = dir.join("mnt");
    util::step(&format!(
        "mount {} at {}",
        cluster.mount_spec(),
        mountpoint.display()
    ));
    cluster.mount(&mountpoint)?;

    let demo_dir = mountpoint.join("demo");
    let striped = demo_dir.join("striped.bin");
    fs::create_dir(&demo_dir).with_context(|| format!("mkdir {}", demo_dir.display()))?;
    util::step("stripe a new file over 4 OSTs, 1 MiB stripes");
    let lfs = cluster.bin("lfs");
    let count = STRIPE_COUNT.to_string();
    util::output(
        Command::new(&lfs)
            .args(["setstripe", "-c", &count, "-S", "1M"])
            .arg(&striped),
        LFS_TIMEOUT,
    )?;

    let seed = args.seed.unwrap_or_else(|| {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        now.as_secs() ^ u64::from(now.subsec_nanos())
    });
    let source = dir.join("source.bin");
    util::step(&format!(
        "generate {} MiB of pseudo-random data (seed {seed})",
        args.size_mib
    ));
    write_random_file(&source, args.size_mib, seed)?;

    util::step(&format!("write it through FUSE to {}", striped.display()));
    let started = Instant::now();
    copy_and_sync(&source, &striped)?;
    print_rate("written", args.size_mib, started.elapsed());

    util::step("remount, so the read-back comes from the servers, not the page cache");
    cluster.unmount(&mountpoint)?;
    cluster.mount(&mountpoint)?;

    util::step("read it back and compare byte for byte");
    let started = Instant::now();
    compare_files(&source, &striped)?;
    print_rate("read and verified", args.size_mib, started.elapsed());

    util::step("lfs getstripe");
    let getstripe = util::output(
        Command::new(&lfs).arg("getstripe").arg(&striped),
        LFS_TIMEOUT,
    )?;
    print!("{getstripe}");
    check_stripe_count(&getstripe, STRIPE_COUNT)?;
    util::step("lfs df");
    let df = util::output(Command::new(&lfs).arg("df").arg(&mountpoint), LFS_TIMEOUT)?;
    print!("{df}");
    Ok(())
}

/// xorshift64*: fast, reproducible from the printed seed, good enough to catch misplaced
/// stripes (every 8-byte word differs).
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

fn write_random_file(path: &Path, size_mib: u64, seed: u64) -> Result<()> {
    // xorshift must not start at 0.
    let mut random = Random(seed | 1);
    let mut file = File::create(path).with_context(|| format!("create {}", path.display()))?;
    let mut chunk = vec![0u8; MIB as usize];
    for _ in 0..size_mib {
        for word in chunk.chunks_exact_mut(8) {
            word.copy_from_slice(&random.next().to_le_bytes());
        }
        file.write_all(&chunk)
            .with_context(|| format!("write {}", path.display()))?;
    }
    Ok(())
}

fn copy_and_sync(source: &Path, target: &Path) -> Result<()> {
    let mut input = File::open(source).with_context(|| format!("open {}", source.display()))?;
    // The file exists with its layout from `lfs setstripe`: truncate, never recreate.
    let mut output = OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(target)
        .with_context(|| format!("open {}", target.display()))?;
    let mut chunk = vec![0u8; MIB as usize];
    loop {
        let n_read = input
            .read(&mut chunk)
            .with_context(|| format!("read {}", source.display()))?;
        if n_read == 0 {
            break;
        }
        output
            .write_all(&chunk[..n_read])
            .with_context(|| format!("write {}", target.display()))?;
    }
    output
        .sync_all()
        .with_context(|| format!("fsync {}", target.display()))?;
    Ok(())
}

fn compare_files(expected_path: &Path, actual_path: &Path) -> Result<()> {
    let open = |path: &Path| -> Result<BufReader<File>> {
        let file = File::open(path).with_context(|| format!("open {}", path.display()))?;
        Ok(BufReader::with_capacity(MIB as usize, file))
    };
    let expected_len = fs::metadata(expected_path)?.len();
    let actual_len = fs::metadata(actual_path)
        .with_context(|| format!("stat {}", actual_path.display()))?
        .len();
    ensure!(
        actual_len == expected_len,
        "MISMATCH: {} is {actual_len} bytes, expected {expected_len}",
        actual_path.display()
    );
    let mut expected = open(expected_path)?;
    let mut actual = open(actual_path)?;
    let mut expected_chunk = vec![0u8; MIB as usize];
    let mut actual_chunk = vec![0u8; MIB as usize];
    let mut offset: u64 = 0;
    while offset < expected_len {
        let n = usize::try_from((expected_len - offset).min(MIB))?;
        expected.read_exact(&mut expected_chunk[..n])?;
        actual
            .read_exact(&mut actual_chunk[..n])
            .with_context(|| format!("read {} at offset {offset}", actual_path.display()))?;
        if expected_chunk[..n] != actual_chunk[..n] {
            let first = (0..n)
                .find(|&i| expected_chunk[i] != actual_chunk[i])
                .unwrap_or(0);
            let bad_offset = offset + first as u64;
            bail!(
                "MISMATCH at byte {bad_offset} (1 MiB chunk {}): read {:#04x}, expected {:#04x}",
                bad_offset / MIB,
                actual_chunk[first],
                expected_chunk[first]
            );
        }
        offset += n as u64;
    }
    Ok(())
}

/// Fails unless `lfs getstripe` reports `lmm_stripe_count: N` (Lustre's output format).
fn check_stripe_count(getstripe: &str, expected: u32) -> Result<()> {
    let reported = getstripe
        .lines()
        .find_map(|line| line.trim().strip_prefix("lmm_stripe_count:"))
        .map(str::trim);
    match reported {
        Some(count) if count == expected.to_string() => Ok(()),
        Some(count) => bail!("lfs getstripe reports stripe count {count}, expected {expected}"),
        None => bail!("lfs getstripe printed no `lmm_stripe_count:` line"),
    }
}

fn print_rate(what: &str, size_mib: u64, elapsed: Duration) {
    let seconds = elapsed.as_secs_f64().max(1e-9);
    println!(
        "{size_mib} MiB {what} in {seconds:.2} s ({:.1} MiB/s)",
        size_mib as f64 / seconds
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stripe_count_is_checked() {
        let output = "/mnt/demo/striped.bin\nlmm_stripe_count:  4\nlmm_stripe_size:   1048576\n";
        check_stripe_count(output, 4).unwrap();
        assert!(check_stripe_count(output, 2).is_err());
        assert!(check_stripe_count("nothing", 4).is_err());
    }

    #[test]
    fn compare_finds_the_first_difference() {
        let tmp = std::env::temp_dir().join(format!("xtask-compare-{}", std::process::id()));
        fs::create_dir_all(&tmp).unwrap();
        let a = tmp.join("a");
        let b = tmp.join("b");
        write_random_file(&a, 2, 7).unwrap();
        fs::copy(&a, &b).unwrap();
        compare_files(&a, &b).unwrap();
        let mut bytes = fs::read(&b).unwrap();
        bytes[MIB as usize + 5] ^= 0xff;
        fs::write(&b, &bytes).unwrap();
        let error = compare_files(&a, &b).unwrap_err().to_string();
        assert!(error.contains(&format!("byte {}", MIB + 5)), "{error}");
        fs::write(&b, &bytes[..10]).unwrap();
        assert!(compare_files(&a, &b).is_err());
        fs::remove_dir_all(&tmp).unwrap();
    }
}
