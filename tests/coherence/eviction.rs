//! A client that stops answering is evicted: B reads a file (and so holds read locks on its
//! objects), then B's `sheen-mount` is stopped with SIGSTOP; A's write to the same file must
//! still complete, within the lock callback timeout plus some slack, because the servers
//! evict B when it does not answer their callback. Once continued, B reconnects and reads
//! the new data, never the old.
//!
//! While B is stopped nothing may touch mount B (the call would wait for it): the descriptor
//! B opened stays open, and a guard continues B before anything else is dropped.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::time::{Duration, Instant};

use sheen_tests::pattern;

use crate::{bounded, read_all, run, send_signal, Checks, Env, Logs, CALLBACK_TIMEOUT, KIB};

/// What A's blocked call may take beyond the callback timeout (the eviction itself, the
/// retry of A's request, a loaded machine).
const SLACK: Duration = Duration::from_secs(7);
/// How long B may take, once continued, to notice its eviction, reconnect and read.
const RECONNECT_LIMIT: Duration = Duration::from_secs(30);
/// How long a SIGSTOP may take to show in /proc.
const STOP_WAIT: Duration = Duration::from_secs(5);
/// Time limit of the test.
const LIMIT: Duration = Duration::from_secs(100);
/// Size of the file.
const SIZE: usize = 200 * KIB;

#[test]
fn silent_client_is_evicted() {
    run(
        "silent_client_is_evicted",
        LIMIT,
        Logs::MayHoldErrors,
        silent_client,
    );
}

/// A process stopped with SIGSTOP, continued (SIGCONT) when this is dropped, also on panic.
pub(crate) struct Stopped {
    pid: u32,
}

impl Stopped {
    pub(crate) fn new(pid: u32) -> io::Result<Stopped> {
        send_signal(pid, libc::SIGSTOP)?;
        let stopped = Stopped { pid };
        let deadline = Instant::now() + STOP_WAIT;
        while process_state(pid) != Some('T') {
            if Instant::now() >= deadline {
                return Err(io::Error::other(format!(
                    "pid {pid} not stopped after {STOP_WAIT:?} (state {:?})",
                    process_state(pid)
                )));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(stopped)
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        let _ = send_signal(self.pid, libc::SIGCONT);
    }
}

/// The state letter of a process in /proc/PID/stat (`R`, `S`, `T`...).
fn process_state(pid: u32) -> Option<char> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

fn silent_client(env: &Env) {
    let on_a = env.a.join("e");
    let on_b = env.b.join("e");
    let old = pattern(600, SIZE);
    let new = pattern(601, SIZE);
    fs::write(&on_a, &old).expect("create the file on A");
    env.check_layout(&on_a);
    // B reads the whole file: it now holds read locks on both objects, and cached pages.
    let b_fd = File::open(&on_b).expect("open on B");
    let mut first = Checks::default();
    first.same("B's first read", read_all(&b_fd), &old);
    first.size("stat on B", fs::metadata(&on_b), SIZE);
    first.finish("before B was stopped");

    // Declared after `b_fd`, so dropped (B continued) before `b_fd` is closed.
    let stopped = Stopped::new(env.b_pid).expect("SIGSTOP B's sheen-mount");
    let limit = CALLBACK_TIMEOUT + SLACK;
    let a_path = on_a.clone();
    let opened = bounded("open on A", limit, move || {
        OpenOptions::new().read(true).write(true).open(a_path)
    });
    let a_fd = match opened {
        Ok((Ok(file), took)) => {
            println!("open on A with B stopped: {took:?}");
            file
        }
        Ok((Err(e), _)) => panic!("open on A with B stopped: {e}"),
        Err(waited) => panic!(
            "open on A did not return within {waited:?} while B was stopped (callback \
             timeout {CALLBACK_TIMEOUT:?}): B was not evicted"
        ),
    };
    let data = new.clone();
    let written = bounded("write on A", limit, move || {
        let result = a_fd.write_all_at(&data, 0);
        (a_fd, result)
    });
    let a_fd = match written {
        Ok(((file, Ok(())), took)) => {
            println!("write on A with B stopped: {took:?}");
            file
        }
        Ok(((_, Err(e)), _)) => panic!("write on A with B stopped: {e}"),
        Err(waited) => panic!(
            "write on A did not return within {waited:?} while B was stopped (callback \
             timeout {CALLBACK_TIMEOUT:?}): B was not evicted"
        ),
    };
    let closed = bounded("fsync and close on A", limit, move || a_fd.sync_all());
    match closed {
        Ok((Ok(()), took)) => println!("fsync and close on A with B stopped: {took:?}"),
        Ok((Err(e), _)) => panic!("fsync on A with B stopped: {e}"),
        Err(waited) => {
            panic!("fsync and close on A did not return within {waited:?} while B was stopped")
        }
    }
    let mut on_a_now = Checks::default();
    on_a_now.same("read back on A", fs::read(&on_a), &new);
    on_a_now.finish("A's own view while B is stopped");

    drop(stopped);
    // B, evicted while stopped, must notice, reconnect and then read the new data.
    let started = Instant::now();
    let mut seen = Vec::new();
    loop {
        let observed = match File::open(&on_b).and_then(|file| read_all(&file)) {
            Ok(got) => match crate::difference(&got, &new) {
                None => break,
                Some(difference) if got == old => format!("the old data ({difference})"),
                Some(difference) => difference,
            },
            Err(e) => e.to_string(),
        };
        if seen.last() != Some(&observed) {
            seen.push(observed);
        }
        if started.elapsed() >= RECONNECT_LIMIT {
            panic!(
                "B, continued after its eviction, did not read the new data within \
                 {RECONNECT_LIMIT:?}; a fresh open and read on B gave, in turn:\n  {}",
                seen.join("\n  ")
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    println!(
        "B read the new data {:?} after SIGCONT (before that: {seen:?})",
        started.elapsed()
    );
    let mut after = Checks::default();
    // The descriptor B held across its eviction may fail (EIO, as Lustre's do), but it must
    // not give the old data.
    match read_all(&b_fd) {
        Ok(got) => after.same("B's old descriptor after the eviction", Ok(got), &new),
        Err(e) => println!("B's old descriptor after the eviction: {e} (allowed)"),
    }
    after.size("stat on B", fs::metadata(&on_b), SIZE);
    after.finish("after B was continued and read the new data");
}
