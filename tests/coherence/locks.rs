//! File locks hold across clients: fcntl record locks and flock(2) locks taken through one
//! mount keep the other mount's processes out (EAGAIN, EWOULDBLOCK), F_GETLK on one mount
//! reports the other's lock, a waiting F_SETLKW is granted when the holder unlocks or closes,
//! and read locks are shared; the locks of a client that is gone for good are released after
//! the MDS's recovery window. The MDS keeps the locks (MDS_FLOCK).

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use crate::{run, send_signal, Env, Logs, CALLBACK_TIMEOUT};

/// Time limit of each test here.
const LIMIT: Duration = Duration::from_secs(60);
/// How long a waiting lock is watched to be still waiting.
const STILL_WAITING: Duration = Duration::from_millis(700);
/// How long a lock may take to be granted once it is free.
const GRANT_WITHIN: Duration = Duration::from_secs(10);
/// The MDS's recovery window (its default, `--recovery-window`): how long a client whose
/// connection ended keeps its file locks.
const RECOVERY_WINDOW: Duration = Duration::from_secs(20);
/// Time limit of the test of a client gone for good: eviction, then the recovery window.
const GONE_LIMIT: Duration = Duration::from_secs(90);

#[test]
fn fcntl_locks_hold_across_mounts() {
    run(
        "fcntl_locks_hold_across_mounts",
        LIMIT,
        Logs::Clean,
        fcntl_locks,
    );
}

#[test]
fn flock_locks_hold_across_mounts() {
    run(
        "flock_locks_hold_across_mounts",
        LIMIT,
        Logs::Clean,
        flock_locks,
    );
}

#[test]
fn locks_of_a_client_gone_for_good_are_released() {
    run(
        "locks_of_a_client_gone_for_good_are_released",
        GONE_LIMIT,
        // B's death is logged.
        Logs::MayHoldErrors,
        gone_client,
    );
}

fn open_rw(path: &Path) -> File {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .unwrap_or_else(|e| panic!("open {}: {e}", path.display()))
}

fn flock_struct(typ: i32, start: i64, len: i64) -> libc::flock {
    // SAFETY: `flock` is plain data; all-zero is a valid value.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = typ as libc::c_short;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    fl.l_start = start;
    fl.l_len = len;
    fl
}

/// fcntl `cmd` (F_SETLK, F_SETLKW, F_GETLK) with a lock of `typ` on `len` bytes from
/// `start`; the lock structure as the kernel left it.
fn fcntl_lock(fd: &File, cmd: i32, typ: i32, start: i64, len: i64) -> io::Result<libc::flock> {
    let mut fl = flock_struct(typ, start, len);
    // SAFETY: a valid descriptor and a valid `flock` for the duration of the call.
    if unsafe { libc::fcntl(fd.as_raw_fd(), cmd, &mut fl) } == 0 {
        Ok(fl)
    } else {
        Err(io::Error::last_os_error())
    }
}

fn flock(fd: &File, op: i32) -> io::Result<()> {
    // SAFETY: a valid descriptor.
    if unsafe { libc::flock(fd.as_raw_fd(), op) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn assert_errno(what: &str, r: io::Result<impl std::fmt::Debug>, errno: i32) {
    match r {
        Err(e) if e.raw_os_error() == Some(errno) => {}
        other => panic!("{what}: expected errno {errno}, got {other:?}"),
    }
}

/// Runs `f` on a thread; the receiver gets its result.
fn in_thread<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> mpsc::Receiver<T> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx
}

fn fcntl_locks(env: &Env) {
    let name = "locked";
    let a = open_rw(&env.a.join(name));
    let b = open_rw(&env.b.join(name));
    let me = std::process::id() as i32;

    // (1) A write-locks bytes 100..200.
    fcntl_lock(&a, libc::F_SETLK, libc::F_WRLCK, 100, 100).expect("A: F_SETLK write");
    assert_errno(
        "B: F_SETLK write on 150..250, overlapping A's lock",
        fcntl_lock(&b, libc::F_SETLK, libc::F_WRLCK, 150, 100),
        libc::EAGAIN,
    );
    assert_errno(
        "B: F_SETLK read on 199..200",
        fcntl_lock(&b, libc::F_SETLK, libc::F_RDLCK, 199, 1),
        libc::EAGAIN,
    );
    fcntl_lock(&b, libc::F_SETLK, libc::F_WRLCK, 200, 100).expect("B: F_SETLK on 200..300");
    let got = fcntl_lock(&b, libc::F_GETLK, libc::F_WRLCK, 0, 0).expect("B: F_GETLK");
    assert_eq!(
        (i32::from(got.l_type), got.l_start, got.l_len, got.l_pid),
        (libc::F_WRLCK, 100, 100, me),
        "B's F_GETLK reports A's lock (type, start, len, pid)"
    );
    let got = fcntl_lock(&a, libc::F_GETLK, libc::F_RDLCK, 0, 100).expect("A: F_GETLK");
    assert_eq!(
        i32::from(got.l_type),
        libc::F_UNLCK,
        "nothing conflicts on 0..100"
    );

    // (2) B waits for 150..160 until A unlocks.
    let b2 = b.try_clone().expect("dup B's descriptor");
    // The thread hands its descriptor back: closing any descriptor of the file would drop
    // all of the process's locks on it through that mount.
    let waiting = in_thread(move || {
        let r = fcntl_lock(&b2, libc::F_SETLKW, libc::F_WRLCK, 150, 10);
        (r, b2)
    });
    assert!(
        waiting.recv_timeout(STILL_WAITING).is_err(),
        "B's F_SETLKW returned while A holds the range"
    );
    let unlocked = Instant::now();
    fcntl_lock(&a, libc::F_SETLK, libc::F_UNLCK, 0, 0).expect("A: unlock");
    let (granted, b2) = waiting
        .recv_timeout(GRANT_WITHIN)
        .expect("B's F_SETLKW is granted once A unlocked");
    granted.expect("B's F_SETLKW");
    println!("B's wait ended {:?} after A's unlock", unlocked.elapsed());
    assert_errno(
        "A: F_SETLK on B's new lock",
        fcntl_lock(&a, libc::F_SETLK, libc::F_RDLCK, 155, 1),
        libc::EAGAIN,
    );
    // ...and A waits for it until B closes its descriptor (which drops B's locks).
    let a2 = a.try_clone().expect("dup A's descriptor");
    let waiting = in_thread(move || {
        let r = fcntl_lock(&a2, libc::F_SETLKW, libc::F_WRLCK, 150, 100);
        (r, a2)
    });
    assert!(
        waiting.recv_timeout(STILL_WAITING).is_err(),
        "A's F_SETLKW returned while B holds the range"
    );
    // One close of a descriptor drops them all (the other is closed after).
    drop(b);
    let (granted, a2) = waiting
        .recv_timeout(GRANT_WITHIN)
        .expect("A's F_SETLKW is granted once B closed");
    granted.expect("A's F_SETLKW");
    drop(b2);
    assert_errno(
        "B: F_SETLK on A's new lock",
        fcntl_lock(
            &open_rw(&env.b.join(name)),
            libc::F_SETLK,
            libc::F_RDLCK,
            240,
            1,
        ),
        libc::EAGAIN,
    );
    fcntl_lock(&a, libc::F_SETLK, libc::F_UNLCK, 0, 0).expect("A: unlock all");
    drop(a2);

    // (4) Read locks are shared across mounts; a write lock is not.
    let b = open_rw(&env.b.join(name));
    fcntl_lock(&a, libc::F_SETLK, libc::F_RDLCK, 0, 1000).expect("A: read lock");
    fcntl_lock(&b, libc::F_SETLK, libc::F_RDLCK, 500, 1000).expect("B: shared read lock");
    assert_errno(
        "B: write lock over A's read lock",
        fcntl_lock(&b, libc::F_SETLK, libc::F_WRLCK, 900, 10),
        libc::EAGAIN,
    );
    let got = fcntl_lock(&a, libc::F_GETLK, libc::F_WRLCK, 1200, 100).expect("A: F_GETLK");
    assert_eq!(
        (i32::from(got.l_type), got.l_start, got.l_len),
        (libc::F_RDLCK, 500, 1000),
        "A's F_GETLK reports B's read lock"
    );
    drop(a);
    // A's close dropped its read lock: B may now write-lock what only it reads.
    fcntl_lock(&b, libc::F_SETLK, libc::F_WRLCK, 0, 0).expect("B: write lock after A closed");
}

fn flock_locks(env: &Env) {
    let name = "flocked";
    let a = open_rw(&env.a.join(name));
    let b = open_rw(&env.b.join(name));

    // (3) An exclusive flock on A keeps B out until A closes.
    flock(&a, libc::LOCK_EX).expect("A: LOCK_EX");
    assert_errno(
        "B: LOCK_EX|LOCK_NB while A holds LOCK_EX",
        flock(&b, libc::LOCK_EX | libc::LOCK_NB),
        libc::EWOULDBLOCK,
    );
    assert_errno(
        "B: LOCK_SH|LOCK_NB while A holds LOCK_EX",
        flock(&b, libc::LOCK_SH | libc::LOCK_NB),
        libc::EWOULDBLOCK,
    );
    drop(a);
    // The kernel sends the release of A's open file after close(2) returned.
    let deadline = Instant::now() + GRANT_WITHIN;
    loop {
        match flock(&b, libc::LOCK_EX | libc::LOCK_NB) {
            Ok(()) => break,
            Err(e) if e.raw_os_error() == Some(libc::EWOULDBLOCK) => {
                assert!(
                    Instant::now() < deadline,
                    "B: LOCK_EX still refused {GRANT_WITHIN:?} after A closed"
                );
                thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("B: LOCK_EX|LOCK_NB after A closed: {e}"),
        }
    }
    flock(&b, libc::LOCK_UN).expect("B: LOCK_UN");

    // Shared flocks are shared across mounts; an exclusive one waits for them.
    let a = open_rw(&env.a.join(name));
    flock(&a, libc::LOCK_SH).expect("A: LOCK_SH");
    flock(&b, libc::LOCK_SH | libc::LOCK_NB).expect("B: LOCK_SH beside A's");
    flock(&b, libc::LOCK_UN).expect("B: LOCK_UN");
    let b2 = b.try_clone().expect("dup B's descriptor");
    let waiting = in_thread(move || flock(&b2, libc::LOCK_EX));
    assert!(
        waiting.recv_timeout(STILL_WAITING).is_err(),
        "B's LOCK_EX returned while A holds LOCK_SH"
    );
    flock(&a, libc::LOCK_UN).expect("A: LOCK_UN");
    waiting
        .recv_timeout(GRANT_WITHIN)
        .expect("B's LOCK_EX is granted once A unlocked")
        .expect("B's LOCK_EX");
    drop(b);
}

/// B holds a flock lock, then its `sheen-mount` dies (SIGKILL: its connections close). B's
/// lock outlives its connection for the recovery window (B could come back), then goes: A's
/// waiting flock is granted without A asking again. (A stopped mount would do too, but would
/// hold up every `umount` on the machine meanwhile, other tests' included.)
fn gone_client(env: &Env) {
    let name = "held-by-b";
    let a = open_rw(&env.a.join(name));
    let b = File::open(env.b.join(name)).expect("B: open read-only");
    flock(&b, libc::LOCK_EX).expect("B: LOCK_EX");
    assert_errno(
        "A: LOCK_EX|LOCK_NB while B holds LOCK_EX",
        flock(&a, libc::LOCK_EX | libc::LOCK_NB),
        libc::EWOULDBLOCK,
    );
    // A dup shares the open file, and so its flock lock.
    let a2 = a.try_clone().expect("dup A's descriptor");
    let waiting = in_thread(move || (flock(&a2, libc::LOCK_EX), a2));
    let killed = Instant::now();
    send_signal(env.b_pid, libc::SIGKILL).expect("kill B's sheen-mount");
    // B's descriptor is on a dead mount now: closing it reaches no one.
    drop(b);
    thread::sleep(CALLBACK_TIMEOUT);
    assert_errno(
        "A: LOCK_EX|LOCK_NB while B is gone but within its recovery window",
        flock(&a, libc::LOCK_EX | libc::LOCK_NB),
        libc::EWOULDBLOCK,
    );
    let (granted, a2) = waiting
        .recv_timeout(RECOVERY_WINDOW + GRANT_WITHIN)
        .expect("A's LOCK_EX is granted once B's lock is released");
    granted.expect("A's LOCK_EX");
    let waited = killed.elapsed();
    assert!(
        waited >= RECOVERY_WINDOW,
        "B's lock went after {waited:?}, before the recovery window"
    );
    flock(&a, libc::LOCK_EX | libc::LOCK_NB).expect("A: LOCK_EX, held already");
    drop((a, a2));
}
