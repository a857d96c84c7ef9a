//! A directory of 100,000 entries: filled through the native client (symlinks, many creates
//! in flight, so the MDS's group commit carries them), then listed through the FUSE mount, as
//! root and as nobody, completely and without duplicates; then listed again while another
//! thread removes and adds entries through the mount: every entry present throughout is
//! listed exactly once, no name twice, and the listing afterwards is exact.

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use sheen_client::{Client, ClientConfig, Creds, Fid, MountSpec};

use crate::sys::{ensure, nobody};
use crate::Mounted;

/// Entries in the directory.
const ENTRIES: usize = 100_000;
/// Creates in flight at once.
const IN_FLIGHT: usize = 64;
/// Entries removed and added while the directory is being listed.
const CHURN: usize = 500;

fn name(i: usize) -> String {
    format!("entry-{i:06}")
}

/// Lists `dir` with readdir(3), every name (without `.` and `..`), in the order returned.
fn list(dir: &Path) -> Vec<String> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

fn fill(m: &Mounted, dir_name: &str) -> Duration {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let spec: MountSpec = m.cluster.mount_spec().parse().unwrap();
    let started = Instant::now();
    rt.block_on(async {
        let client = Client::mount(&spec, ClientConfig::default()).await.unwrap();
        let root = client.root_fid();
        let (dir, _) = client
            .lookup(root, dir_name.as_bytes())
            .await
            .expect("the directory made through the mount");
        let dir: Fid = dir.fid;
        let creds = Creds::default();
        // IN_FLIGHT workers, each creating every IN_FLIGHT-th entry.
        let mut workers = tokio::task::JoinSet::new();
        for first in 0..IN_FLIGHT {
            let client = client.clone();
            workers.spawn(async move {
                for i in (first..ENTRIES).step_by(IN_FLIGHT) {
                    // Symlinks: entries without OST objects (the OSTs are small).
                    client
                        .symlink(dir, name(i).as_bytes(), b"target", creds)
                        .await
                        .map_err(|e| format!("symlink {}: {e}", name(i)))?;
                }
                Ok::<(), String>(())
            });
        }
        while let Some(done) = workers.join_next().await {
            done.unwrap().unwrap();
        }
        client.unmount().await;
    });
    started.elapsed()
}

#[test]
fn hundred_thousand_entries() {
    let m = Mounted::start();
    let dir = m.mnt.join("big");
    fs::create_dir(&dir).unwrap();
    fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    let took = fill(&m, "big");
    println!("posix big_dir: {ENTRIES} creates through the native client in {took:?}");

    let want: BTreeSet<String> = (0..ENTRIES).map(name).collect();
    let t = Instant::now();
    let got = list(&dir);
    let unique: BTreeSet<String> = got.iter().cloned().collect();
    assert_eq!(got.len(), unique.len(), "a name listed twice");
    assert!(
        unique == want,
        "{} listed, {ENTRIES} expected",
        unique.len()
    );
    println!("posix big_dir: listed as root in {:?}", t.elapsed());
    // The same as nobody (in a child process, which can only say yes or no).
    let d = dir.clone();
    let as_nobody = nobody(move || {
        let got = list(&d);
        let unique: BTreeSet<String> = got.iter().cloned().collect();
        ensure(got.len() == unique.len() && unique == want)
    });
    assert!(as_nobody.is_ok(), "the listing as nobody is not exact");

    // List while another thread removes the first CHURN entries and adds CHURN new ones.
    let churn = {
        let dir = dir.clone();
        std::thread::spawn(move || {
            for i in 0..CHURN {
                fs::remove_file(dir.join(name(i))).unwrap();
                std::os::unix::fs::symlink("target", dir.join(name(ENTRIES + i))).unwrap();
            }
        })
    };
    let mut listings = 0;
    while !churn.is_finished() {
        let got = list(&dir);
        let unique: BTreeSet<&String> = got.iter().collect();
        assert_eq!(
            got.len(),
            unique.len(),
            "a name listed twice while changing"
        );
        for i in CHURN..ENTRIES {
            assert!(
                unique.contains(&name(i)),
                "{} missing while changing",
                name(i)
            );
        }
        listings += 1;
    }
    churn.join().unwrap();
    let after: BTreeSet<String> = list(&dir).into_iter().collect();
    let want_after: BTreeSet<String> = (CHURN..ENTRIES + CHURN).map(name).collect();
    assert!(
        after == want_after,
        "the listing after the changes is not exact"
    );
    println!("posix big_dir: {listings} listings while {CHURN} entries were replaced");

    let errors = m.cluster.log_errors();
    m.cluster.stop().unwrap();
    assert!(
        errors.iter().all(|l| !l.contains(" ERROR ")),
        "errors in daemon logs: {errors:#?}"
    );
}
