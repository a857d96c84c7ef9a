//! An MDS that commits asynchronously (`--commit-interval-ms`), killed with SIGKILL after a
//! metadata-heavy workload it answered but had not committed, its MDT put back to what it
//! had committed (a power loss): the mount replays its uncommitted changes to the restarted
//! MDS, and every operation that returned before the kill is there, exactly.

use std::collections::BTreeSet;
use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use sheen_cluster::Daemon;
use sheen_tests::pattern;

const N_FILES: u64 = 24;

fn names(dir: &Path) -> BTreeSet<String> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect()
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| s.to_string()).collect()
}

/// The `applied=N` of the MDS's last "recovery ended" line, which must have no failed
/// replay.
fn replays_applied(log: &str) -> u64 {
    let line = log
        .lines()
        .rfind(|l| l.contains("recovery ended"))
        .expect("the MDS logs the end of recovery");
    let applied = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("applied="))
        .expect("applied= in the recovery line");
    eprintln!("MDS: {line}");
    assert!(line.contains(" failed=0 "), "a replay failed: {line}");
    applied.parse().unwrap()
}

/// What the workload leaves: checked through the same mount after the restart, and from a
/// fresh mount (contents from the OSTs).
fn check(mnt: &Path) {
    let d = mnt.join("d");
    let mut expected: BTreeSet<String> = (0..N_FILES)
        .filter(|i| ![3, 4, 5, 7].contains(i))
        .map(|i| format!("f{i}"))
        .collect();
    expected.extend(["link".to_owned(), "sub".to_owned()]);
    assert_eq!(names(&d), expected, "names in d");
    assert_eq!(names(&d.join("sub")), set(&["moved3"]));
    assert!(
        !mnt.join("gone-dir").exists(),
        "a removed directory came back"
    );
    for i in (0..N_FILES).filter(|i| ![3, 4, 5, 7, 8].contains(i)) {
        let data = fs::read(d.join(format!("f{i}"))).unwrap();
        assert!(
            data == pattern(i, 1000 + i as usize * 10),
            "contents of f{i}"
        );
    }
    // f8 was replaced by f7 with a rename.
    assert!(
        fs::read(d.join("f8")).unwrap() == pattern(7, 1070),
        "f8 has f7's data"
    );
    assert!(
        fs::read(d.join("sub/moved3")).unwrap() == pattern(3, 1030),
        "moved3"
    );
    assert_eq!(fs::read_link(d.join("link")).unwrap(), Path::new("f0"));
    assert!(
        fs::read(d.join("link")).unwrap() == pattern(0, 1000),
        "through the link"
    );
    let mode = fs::metadata(d.join("f6")).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode, 0o600, "chmod of f6");
    let mode = fs::metadata(d.join("sub")).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode, 0o750, "mode of sub");
}

#[test]
fn uncommitted_changes_are_replayed_after_an_mds_crash() {
    let (_tmp, mut cluster, mnt) = crate::mounted_with(2, |spec| {
        // Nothing is committed by the interval during the test: only the first change of
        // the mount (its registration) is.
        spec.mds_commit_interval = Some(Duration::from_secs(600));
        spec.recovery_window = Some(Duration::from_secs(30));
        // A SIGKILL alone loses nothing the MDS wrote (the kernel keeps it): the MDT is put
        // back to what the MDS last committed, as a power loss would leave it.
        spec.mds_crash_image = true;
    });
    let d = mnt.join("d");
    fs::create_dir(&d).unwrap();
    fs::create_dir(d.join("sub")).unwrap();
    fs::set_permissions(d.join("sub"), fs::Permissions::from_mode(0o750)).unwrap();
    for i in 0..N_FILES {
        fs::write(d.join(format!("f{i}")), pattern(i, 1000 + i as usize * 10)).unwrap();
    }
    fs::rename(d.join("f3"), d.join("sub/moved3")).unwrap();
    fs::remove_file(d.join("f4")).unwrap();
    fs::remove_file(d.join("f5")).unwrap();
    fs::rename(d.join("f7"), d.join("f8")).unwrap();
    std::os::unix::fs::symlink("f0", d.join("link")).unwrap();
    fs::set_permissions(d.join("f6"), fs::Permissions::from_mode(0o600)).unwrap();
    fs::create_dir(mnt.join("gone-dir")).unwrap();
    fs::remove_dir(mnt.join("gone-dir")).unwrap();
    check(&mnt);

    cluster.power_fail_mds().unwrap();
    cluster.start_mds().unwrap();
    // The mount carries on: more changes and reads after the restart.
    if let Err(e) = fs::write(d.join("after"), pattern(99, 4321)) {
        let logs = cluster.logs_dir();
        for entry in fs::read_dir(&logs).unwrap() {
            let p = entry.unwrap().path();
            eprintln!("==== {}\n{}", p.display(), fs::read_to_string(&p).unwrap());
        }
        panic!("write after the restart: {e}");
    }
    fs::create_dir(d.join("after-dir")).unwrap();
    assert!(fs::read(d.join("after")).unwrap() == pattern(99, 4321));
    fs::remove_file(d.join("after")).unwrap();
    fs::remove_dir(d.join("after-dir")).unwrap();
    check(&mnt);
    let log = fs::read_to_string(cluster.log_path(Daemon::Mds)).unwrap();
    let applied = replays_applied(&log);
    assert!(applied > 0, "no replay was applied:\n{log}");

    // A fresh mount sees the same (attributes from the MDS, data from the OSTs).
    cluster.unmount(&mnt).unwrap();
    cluster.mount(&mnt).unwrap();
    check(&mnt);
}

/// A process stopped with SIGSTOP, continued when this is dropped (also on panic).
struct Stopped(u32);

impl Stopped {
    fn new(pid: u32) -> Stopped {
        let pid_t = libc::pid_t::try_from(pid).unwrap();
        // SAFETY: kill(2) with a pid this test started and a valid signal.
        assert_eq!(unsafe { libc::kill(pid_t, libc::SIGSTOP) }, 0);
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
            let state = stat.rsplit_once(')').unwrap().1.trim_start().chars().next();
            if state == Some('T') {
                return Stopped(pid);
            }
            assert!(Instant::now() < deadline, "pid {pid} did not stop");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        if let Ok(pid) = libc::pid_t::try_from(self.0) {
            // SAFETY: as in `new`.
            unsafe { libc::kill(pid, libc::SIGCONT) };
        }
    }
}

/// Waits (bounded) until the MDS log has `n` "recovery ended" lines.
fn wait_recovery_ended(log: &Path, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let text = fs::read_to_string(log).unwrap();
        if text.matches("recovery ended").count() >= n {
            return;
        }
        assert!(Instant::now() < deadline, "recovery did not end:\n{text}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A client that does not come back within the recovery window loses its uncommitted
/// changes, here an unlink of a committed (fsynced) file: the file is back after the crash,
/// and its data too, since the MDS destroys a removed file's OST objects only once the
/// removal is committed.
#[test]
fn a_client_that_does_not_come_back_loses_its_uncommitted_unlink_not_the_data() {
    let (tmp, mut cluster, mnt) = crate::mounted_with(2, |spec| {
        spec.mds_commit_interval = Some(Duration::from_secs(600));
        spec.recovery_window = Some(Duration::from_secs(3));
        spec.mds_crash_image = true;
        // The frozen client holds the file's extent locks on the OSTs: the fresh mount's
        // read waits for its eviction.
        spec.callback_timeout = Some(Duration::from_secs(2));
    });
    let path = mnt.join("kept.bin");
    let data = pattern(5, 300 << 10);
    let mut f = fs::File::create(&path).unwrap();
    f.write_all(&data).unwrap();
    // fsync ends with MDS_SYNC: the create and the size are committed.
    f.sync_all().unwrap();
    drop(f);
    fs::remove_file(&path).unwrap();
    // Time for the objects to be destroyed, were they not held back until the unlink
    // commits (the destroys run in the background).
    std::thread::sleep(Duration::from_secs(1));
    let mds_log = cluster.log_path(Daemon::Mds).to_path_buf();
    let ended_before = fs::read_to_string(&mds_log)
        .unwrap()
        .matches("recovery ended")
        .count();
    // The mount is frozen through the crash and the whole recovery window.
    let frozen = Stopped::new(cluster.mount_pid(&mnt).unwrap());
    cluster.power_fail_mds().unwrap();
    cluster.start_mds().unwrap();
    wait_recovery_ended(&mds_log, ended_before + 1);
    let log = fs::read_to_string(&mds_log).unwrap();
    let line = log.lines().rfind(|l| l.contains("recovery ended")).unwrap();
    assert!(line.contains("never_came=[\"sheen-client"), "{line}");
    // A fresh mount: the unlink was lost with its client, the file and its data were not.
    let other = tmp.path().join("other");
    fs::create_dir_all(&other).unwrap();
    cluster.mount(&other).unwrap();
    let back = fs::read(other.join("kept.bin")).unwrap();
    assert!(back == data, "the data of the file whose unlink was lost");
    // The frozen client comes back too late: its replay is refused, and it goes on.
    drop(frozen);
    assert!(names(&mnt).contains("kept.bin"));
    fs::remove_file(mnt.join("kept.bin")).unwrap();
    assert!(!other.join("kept.bin").exists());
}

/// Two mounts whose changes depend on each other (one creates in the other's new
/// directory, renames the other's file): their replays interleave in transno order.
#[test]
fn replays_of_two_mounts_interleave_in_transno_order() {
    let (tmp, mut cluster, a) = crate::mounted_with(2, |spec| {
        spec.mds_commit_interval = Some(Duration::from_secs(600));
        spec.recovery_window = Some(Duration::from_secs(30));
        spec.mds_crash_image = true;
    });
    let b = tmp.path().join("b");
    fs::create_dir_all(&b).unwrap();
    cluster.mount(&b).unwrap();
    fs::create_dir(a.join("shared")).unwrap();
    fs::write(b.join("shared/from-b"), pattern(1, 5000)).unwrap();
    fs::rename(a.join("shared/from-b"), a.join("shared/renamed-by-a")).unwrap();
    fs::create_dir(b.join("shared/dir-b")).unwrap();
    fs::write(a.join("shared/dir-b/from-a"), pattern(2, 7000)).unwrap();
    fs::remove_dir(b.join("shared/dir-b")).unwrap_err();
    fs::remove_file(b.join("shared/dir-b/from-a")).unwrap();
    fs::remove_dir(b.join("shared/dir-b")).unwrap();
    let mds_log = cluster.log_path(Daemon::Mds).to_path_buf();
    let ended_before = fs::read_to_string(&mds_log)
        .unwrap()
        .matches("recovery ended")
        .count();
    cluster.power_fail_mds().unwrap();
    cluster.start_mds().unwrap();
    wait_recovery_ended(&mds_log, ended_before + 1);
    let log = fs::read_to_string(&mds_log).unwrap();
    let line = log.lines().rfind(|l| l.contains("recovery ended")).unwrap();
    assert!(line.contains("never_came=[]"), "{line}");
    assert!(replays_applied(&log) >= 6, "{line}");
    for m in [&a, &b] {
        assert_eq!(names(&m.join("shared")), set(&["renamed-by-a"]));
        let data = fs::read(m.join("shared/renamed-by-a")).unwrap();
        assert!(data == pattern(1, 5000), "the renamed file's data");
    }
}
