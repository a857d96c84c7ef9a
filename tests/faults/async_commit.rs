//! An MDS that commits asynchronously (`--commit-interval-ms`), killed with SIGKILL after a
//! metadata-heavy workload it answered but had not committed, its MDT put back to what it
//! had committed (a power loss): the mount replays its uncommitted changes to the restarted
//! MDS, and every operation that returned before the kill is there, exactly.

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

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

/// The `applied=N` of the MDS's last "recovery ended" line.
fn replays_applied(log: &str) -> u64 {
    let line = log
        .lines()
        .rfind(|l| l.contains("recovery ended"))
        .expect("the MDS logs the end of recovery");
    let applied = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("applied="))
        .expect("applied= in the recovery line");
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
