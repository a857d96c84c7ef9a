//! A stand-in for the Sheen binaries, so the launcher's own tests run without them.
//!
//! Linked as `sheen-mgs`, `sheen-mds`, `sheen-oss` or `sheen-mount`, it plays that role as far
//! as the launcher can see: it checks the command line the launcher built, writes its pid to
//! `ROLE.pid` in its working directory (the cluster directory), logs tracing-style lines to
//! stderr, binds `--listen` once "ready", and exits 0 on SIGTERM. As `sheen-mount` it fails,
//! since it cannot mount anything.
//!
//! A file `fake-control` in the working directory changes its behaviour, one directive a line:
//! `fail ROLE` (exit 1 at start), `delay ROLE MS` (wait before binding), `warn ROLE` (log a
//! warning), `ignore-sigterm ROLE` (only SIGKILL stops it).

use std::collections::HashMap;
use std::net::TcpListener;
use std::path::Path;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

static TERMINATE: AtomicBool = AtomicBool::new(false);

extern "C" fn on_sigterm(_signal: libc::c_int) {
    TERMINATE.store(true, Ordering::SeqCst);
}

fn log(level: &str, message: &str) {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    eprintln!(
        "{}.{:06}Z {level:>5} fake_daemon: {message}",
        now.as_secs(),
        now.subsec_micros()
    );
}

fn main() -> ExitCode {
    let arguments: Vec<String> = std::env::args().collect();
    let role = arguments
        .first()
        .and_then(|program| Path::new(program).file_name()?.to_str().map(str::to_owned))
        .unwrap_or_default();
    let control = std::fs::read_to_string("fake-control").unwrap_or_default();
    let directives: Vec<Vec<&str>> = control
        .lines()
        .map(|line| line.split_whitespace().collect())
        .collect();
    let directive = |name: &str| {
        directives
            .iter()
            .find(|words| words.first() == Some(&name) && words.get(1) == Some(&role.as_str()))
            .map(|words| words[2..].to_vec())
    };
    if let Err(error) = std::fs::write(format!("{role}.pid"), std::process::id().to_string()) {
        log("ERROR", &format!("cannot write pid file: {error}"));
        return ExitCode::FAILURE;
    }
    log("INFO", &format!("starting as {role}: {arguments:?}"));
    if role == "sheen-mount" {
        log("ERROR", "the fake sheen-mount cannot mount anything");
        return ExitCode::FAILURE;
    }
    let flags = match parse_flags(&arguments[1..]) {
        Ok(flags) => flags,
        Err(error) => {
            log("ERROR", &error);
            return ExitCode::FAILURE;
        }
    };
    let required: &[&str] = match role.as_str() {
        "sheen-mgs" => &[
            "--fsname",
            "--data-dir",
            "--listen",
            "--default-stripe-count",
            "--default-stripe-size",
        ],
        "sheen-mds" => &["--fsname", "--mgs", "--index", "--data-dir", "--listen"],
        "sheen-oss" => &["--fsname", "--mgs", "--listen", "--ost", "--ost-size"],
        other => {
            log("ERROR", &format!("unknown role {other:?}"));
            return ExitCode::FAILURE;
        }
    };
    if let Some(missing) = required.iter().find(|flag| !flags.contains_key(**flag)) {
        log("ERROR", &format!("missing required flag {missing}"));
        return ExitCode::FAILURE;
    }
    if directive("fail").is_some() {
        log("ERROR", "failing at start as told by fake-control");
        return ExitCode::FAILURE;
    }
    if directive("warn").is_some() {
        log("WARN", "warning as told by fake-control");
    }
    let handler = if directive("ignore-sigterm").is_some() {
        libc::SIG_IGN
    } else {
        on_sigterm as *const () as libc::sighandler_t
    };
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe {
        libc::signal(libc::SIGTERM, handler);
    }
    if let Some(delay_ms) = directive("delay").and_then(|words| words.first()?.parse().ok()) {
        std::thread::sleep(Duration::from_millis(delay_ms));
    }
    let listen = &flags["--listen"][0];
    let address = listen.strip_suffix("@tcp").unwrap_or(listen);
    let listener = match TcpListener::bind(address) {
        Ok(listener) => listener,
        Err(error) => {
            log("ERROR", &format!("cannot listen on {address}: {error}"));
            return ExitCode::FAILURE;
        }
    };
    if let Err(error) = listener.set_nonblocking(true) {
        log("ERROR", &format!("set_nonblocking: {error}"));
        return ExitCode::FAILURE;
    }
    log("INFO", &format!("ready on {listen}"));
    while !TERMINATE.load(Ordering::SeqCst) {
        // Connections are accepted and dropped: the launcher only checks that one succeeds.
        while listener.accept().is_ok() {}
        std::thread::sleep(Duration::from_millis(10));
    }
    log("INFO", "SIGTERM received, exiting");
    ExitCode::SUCCESS
}

/// `--flag value` pairs; a flag may repeat (`--ost`).
fn parse_flags(arguments: &[String]) -> Result<HashMap<String, Vec<String>>, String> {
    let mut flags: HashMap<String, Vec<String>> = HashMap::new();
    let mut arguments = arguments.iter();
    while let Some(flag) = arguments.next() {
        if !flag.starts_with("--") {
            return Err(format!("unexpected argument {flag:?}"));
        }
        let value = arguments
            .next()
            .ok_or_else(|| format!("{flag} needs a value"))?;
        flags.entry(flag.clone()).or_default().push(value.clone());
    }
    Ok(flags)
}
