//! Helpers shared by the tasks: running commands, locating the workspace and binaries,
//! installing fuse3, parsing sizes.

use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// Packages whose binaries a cluster needs.
const BINARY_PACKAGES: [&str; 5] = [
    "sheen-mgs",
    "sheen-mds",
    "sheen-oss",
    "sheen-client-fuse",
    "sheen-tools",
];

/// Prints a step heading.
pub fn step(text: &str) {
    println!("==> {text}");
}

/// The workspace root.
pub fn project_root() -> PathBuf {
    let xtask_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    xtask_dir.parent().unwrap_or(xtask_dir).to_owned()
}

/// `cargo` (the one running us, when known) in the workspace root.
pub fn cargo() -> Command {
    let mut command = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    command.current_dir(project_root());
    command
}

/// Runs a command with inherited stdio, echoing it first; fails on a non-zero exit.
pub fn run(command: &mut Command) -> Result<()> {
    println!("$ {}", display(command));
    let status = command
        .status()
        .with_context(|| format!("cannot run {}", display(command)))?;
    if !status.success() {
        bail!("{} failed ({status})", display(command));
    }
    Ok(())
}

/// Runs a command, capturing its output, killed after `timeout`; fails on a non-zero exit
/// with its output in the error.
pub fn output(command: &mut Command, timeout: Duration) -> Result<String> {
    let text = display(command);
    println!("$ {text}");
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot run {text}"))?;
    let mut stdout_pipe = child.stdout.take().context("stdout pipe")?;
    let mut stderr_pipe = child.stderr.take().context("stderr pipe")?;
    let stdout_reader = std::thread::spawn(move || {
        let mut buffer = String::new();
        let _ = stdout_pipe.read_to_string(&mut buffer);
        buffer
    });
    let stderr_reader = std::thread::spawn(move || {
        let mut buffer = String::new();
        let _ = stderr_pipe.read_to_string(&mut buffer);
        buffer
    });
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if started.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            bail!("{text} did not finish within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let stdout = stdout_reader.join().unwrap_or_default();
    let stderr = stderr_reader.join().unwrap_or_default();
    if !status.success() {
        bail!("{text} failed ({status})\nstdout:\n{stdout}\nstderr:\n{stderr}");
    }
    if !stderr.trim().is_empty() {
        eprint!("{stderr}");
    }
    Ok(stdout)
}

fn display(command: &Command) -> String {
    let mut text = command.get_program().to_string_lossy().into_owned();
    for arg in command.get_args() {
        text.push(' ');
        text.push_str(&arg.to_string_lossy());
    }
    text
}

/// Whether `program` is an executable file in `PATH`.
pub fn in_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
}

/// Whether we run as root (the owner of `/proc/self` is our effective uid).
pub fn is_root() -> bool {
    std::fs::metadata("/proc/self").is_ok_and(|metadata| metadata.uid() == 0)
}

/// Makes sure `fusermount3` is there, installing Debian's `fuse3` when root.
pub fn ensure_fuse3() -> Result<()> {
    ensure_command("fusermount3", "fuse3")?;
    if !Path::new("/dev/fuse").exists() {
        eprintln!("warning: /dev/fuse is missing, FUSE mounts will fail (a container without it?)");
    }
    Ok(())
}

/// Installs the Debian package `package` (as root, with apt-get) when `command` is not in
/// PATH.
pub fn ensure_command(command: &str, package: &str) -> Result<()> {
    if in_path(command) {
        return Ok(());
    }
    if !is_root() {
        bail!("{command} not found: install {package} (`sudo apt-get install {package}`)");
    }
    println!("{command} not found, installing {package}");
    let install = || {
        let mut c = Command::new("apt-get");
        c.args(["install", "-y", package])
            .env("DEBIAN_FRONTEND", "noninteractive");
        c
    };
    if run(&mut install()).is_err() {
        run(Command::new("apt-get")
            .arg("update")
            .env("DEBIAN_FRONTEND", "noninteractive"))?;
        run(&mut install())?;
    }
    if !in_path(command) {
        bail!("{package} installed but {command} still not in PATH");
    }
    Ok(())
}

/// The cargo target directory: `CARGO_TARGET_DIR`, else the one this xtask binary was built
/// in (`TARGET/debug/xtask`), which also follows `build.target-dir` in cargo config.
pub fn target_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR").filter(|dir| !dir.is_empty()) {
        return project_root().join(dir);
    }
    let exe = std::env::current_exe().unwrap_or_default();
    match exe.parent().and_then(Path::parent) {
        Some(target)
            if exe
                .parent()
                .and_then(Path::file_name)
                .is_some_and(|n| n == "debug") =>
        {
            target.to_owned()
        }
        _ => project_root().join("target"),
    }
}

/// Builds the cluster's binaries and returns the directory holding them.
pub fn build_cluster_binaries(debug: bool) -> Result<PathBuf> {
    let mut command = cargo();
    command.arg("build");
    if !debug {
        command.arg("--release");
    }
    for package in BINARY_PACKAGES {
        command.args(["-p", package]);
    }
    run(&mut command)?;
    Ok(target_dir().join(if debug { "debug" } else { "release" }))
}

/// Parses `4096`, `64K`, `64KiB`, `1M`, `1GiB`... (binary units) for `--ost-size`.
///
/// `sheen-daemon` has the same parser; xtask may depend only on `sheen-cluster`.
/// Parses `--net`: `tcp`, or `rdma`/`o2ib` (the RDMA-emulated transport), as the NID suffix.
pub fn parse_net(text: &str) -> Result<String, String> {
    match text {
        "tcp" => Ok("tcp".to_owned()),
        "rdma" | "o2ib" => Ok("o2ib".to_owned()),
        other => Err(format!(
            "unknown network {other:?} (expected tcp, rdma or o2ib)"
        )),
    }
}

pub fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let digits_len = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(digits_len);
    let number: u64 = digits
        .parse()
        .map_err(|_| format!("invalid size {text:?}"))?;
    let shift = match unit.trim_start().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        _ => {
            return Err(format!(
                "invalid size {text:?}: unknown unit (K, M, G or T)"
            ))
        }
    };
    number
        .checked_mul(1 << shift)
        .ok_or_else(|| format!("size {text:?} too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("64K"), Ok(64 << 10));
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("512 MiB"), Ok(512 << 20));
        assert!(parse_size("1.5G").is_err());
        assert!(parse_size("G").is_err());
        assert!(parse_size("99999999999T").is_err());
    }

    #[test]
    fn output_captures_and_reports_failure() {
        let mut echo = Command::new("echo");
        echo.arg("hi");
        assert_eq!(output(&mut echo, Duration::from_secs(10)).unwrap(), "hi\n");
        assert!(output(&mut Command::new("false"), Duration::from_secs(10)).is_err());
        let mut sleep = Command::new("sleep");
        sleep.arg("100");
        let error = output(&mut sleep, Duration::from_millis(100)).unwrap_err();
        assert!(error.to_string().contains("did not finish"), "{error}");
    }
}
