//! What one client changes, the other sees as soon as the call returns, although it has the
//! old state cached: data written in place and past the end through a descriptor that stays
//! open (seen through the other client's open descriptor, and its size through `fstat` and
//! `stat`), truncation down and up (zeros past the old end), renames and unlinks of names
//! the other client has looked up, and chmod, write, truncate and rename of entries the other
//! client listed with attributes (readdirplus) and so caches without having looked them up,
//! and writes, chmods, renames and unlinks of files the other client created (and caches
//! under the locks granted with the create).

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirEntryExt, FileExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use sheen_tests::pattern;
use sheen_tools::fsops::{FsOps, LocalFs};

use crate::eviction::Stopped;
use crate::{bounded, read_all, read_at, run, truncate_path, Checks, Env, Logs, KIB, STRIPE_SIZE};

/// Time limit of each test here.
const LIMIT: Duration = Duration::from_secs(60);

#[test]
fn write_is_visible_on_the_other_mount_when_write_returns() {
    run(
        "write_is_visible_on_the_other_mount_when_write_returns",
        LIMIT,
        Logs::Clean,
        write_is_visible,
    );
}

pub(crate) fn write_is_visible(env: &Env) {
    let on_a = env.a.join("f");
    let on_b = env.b.join("f");
    let mut model = pattern(100, 200 * KIB);
    fs::write(&on_a, &model).expect("create the file on A");
    env.check_layout(&on_a);
    // B reads the whole file: its client now caches pages of both objects, and the size.
    let b_fd = File::open(&on_b).expect("open on B");
    let mut first = Checks::default();
    first.same("B's first read", read_all(&b_fd), &model);
    first.finish("before any write on A");
    // A writes through one descriptor it keeps open; no close, no fsync.
    let a_fd = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&on_a)
        .expect("open on A");
    let writes = [
        // In place, across the boundary between the first two stripes (OST to OST).
        (STRIPE_SIZE - 6 * KIB, 10 * KIB),
        // In place, unaligned, in the third stripe.
        (130 * KIB + 7, 3000),
        // Straddling the end: in place, then extending the file.
        (190 * KIB, 40 * KIB),
        // Past the end, leaving a hole of a stripe and more.
        (300 * KIB + 123, 5 * KIB),
        // One byte in place at the start.
        (0, 1),
        // Extending by one byte.
        (300 * KIB + 123 + 5 * KIB, 1),
    ];
    for (step, (offset, len)) in writes.into_iter().enumerate() {
        let data = pattern(200 + step as u64, len);
        a_fd.write_all_at(&data, offset as u64)
            .unwrap_or_else(|e| panic!("step {step}: write of {len} bytes at {offset} on A: {e}"));
        if model.len() < offset + len {
            model.resize(offset + len, 0);
        }
        model[offset..offset + len].copy_from_slice(&data);
        // At once on B, through the descriptor it kept open and by name.
        let mut checks = Checks::default();
        checks.same(
            "pread of the written range on B's open fd",
            read_at(&b_fd, offset, len),
            &data,
        );
        checks.size("fstat on B's open fd", b_fd.metadata(), model.len());
        checks.size("stat by name on B", fs::metadata(&on_b), model.len());
        checks.same("whole file through B's open fd", read_all(&b_fd), &model);
        checks.same("whole file through A's fd", read_all(&a_fd), &model);
        checks.finish(&format!(
            "step {step}: right after A's write of {len} bytes at {offset} returned \
             (file size now {})",
            model.len()
        ));
    }
    drop(a_fd);
    let mut last = Checks::default();
    last.same("B's fd after A closed", read_all(&b_fd), &model);
    last.same("fresh read on B", fs::read(&on_b), &model);
    last.finish("after A closed its descriptor");
}

#[test]
fn size_change_is_seen_by_both() {
    run(
        "size_change_is_seen_by_both",
        LIMIT,
        Logs::Clean,
        size_change_is_seen,
    );
}

fn size_change_is_seen(env: &Env) {
    let on_a = env.a.join("t");
    let on_b = env.b.join("t");
    let mut model = pattern(400, 300 * KIB);
    fs::write(&on_a, &model).expect("create the file on A");
    env.check_layout(&on_a);
    let b_fd = File::open(&on_b).expect("open on B");
    let mut first = Checks::default();
    first.same("B's first read", read_all(&b_fd), &model);
    first.finish("before any truncate on A");
    let a_fd = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&on_a)
        .expect("open on A");
    let sizes = [
        // Down to the middle of the second stripe (the second OST).
        100_000,
        // Up past the old end: B cached data in 100000..300K, which must now read as zeros.
        400 * KIB,
        // Down to just past the first stripe boundary.
        STRIPE_SIZE + 5,
        // Up within what B read before.
        140_000,
        // Empty.
        0,
        // Up into the fourth stripe, unaligned.
        3 * STRIPE_SIZE + 4097,
    ];
    for (step, size) in sizes.into_iter().enumerate() {
        let old = model.len();
        a_fd.set_len(size as u64)
            .unwrap_or_else(|e| panic!("step {step}: ftruncate to {size} on A: {e}"));
        model.resize(size, 0);
        let mut checks = Checks::default();
        checks.size("fstat on B's open fd", b_fd.metadata(), size);
        checks.size("stat by name on B", fs::metadata(&on_b), size);
        checks.same(
            "pread on B's open fd of everything up to the old and new end",
            read_at(&b_fd, 0, old.max(size) + 4 * KIB),
            &model,
        );
        if size > old {
            checks.same(
                "pread on B past the old end (zeros)",
                read_at(&b_fd, old, size - old),
                &vec![0; size - old],
            );
        }
        checks.size("fstat on A's fd", a_fd.metadata(), size);
        checks.same("whole file through A's fd", read_all(&a_fd), &model);
        checks.finish(&format!(
            "step {step}: right after A's ftruncate from {old} to {size} returned"
        ));
    }
    // The other way round: B extends the file through a descriptor of its own (so its
    // client knows where its own writes end), then A truncates below that end, once with
    // ftruncate and once by name: B must see A's size, not the end of its own writes.
    let b_rw = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&on_b)
        .expect("open read-write on B");
    for (round, by_name) in [false, true].into_iter().enumerate() {
        let tail = pattern(500 + round as u64, 10 * KIB);
        let end = model.len() + 30 * KIB;
        b_rw.write_all_at(&tail, (end - tail.len()) as u64)
            .unwrap_or_else(|e| panic!("write of {} bytes at {} on B: {e}", tail.len(), end));
        model.resize(end - tail.len(), 0);
        model.extend_from_slice(&tail);
        let mut checks = Checks::default();
        checks.size("fstat on A's fd", a_fd.metadata(), end);
        checks.same("whole file through A's fd", read_all(&a_fd), &model);
        checks.finish(&format!(
            "right after B's write extending the file to {end}"
        ));
        let size = STRIPE_SIZE / 2 + round * 1000;
        let how = if by_name {
            "truncate by name"
        } else {
            "ftruncate"
        };
        let truncated = if by_name {
            truncate_path(&on_a, size)
        } else {
            a_fd.set_len(size as u64)
        };
        truncated.unwrap_or_else(|e| panic!("{how} to {size} on A: {e}"));
        model.truncate(size);
        let mut checks = Checks::default();
        checks.size("fstat on B's read-write fd", b_rw.metadata(), size);
        checks.size("fstat on B's read-only fd", b_fd.metadata(), size);
        checks.size("stat by name on B", fs::metadata(&on_b), size);
        checks.same(
            "whole file through B's read-write fd",
            read_all(&b_rw),
            &model,
        );
        checks.size("fstat on A's fd", a_fd.metadata(), size);
        checks.finish(&format!(
            "right after A's {how} from {end} (where B's own writes end) to {size} returned"
        ));
    }
}

#[test]
fn rename_and_unlink_are_visible_at_once() {
    run(
        "rename_and_unlink_are_visible_at_once",
        LIMIT,
        Logs::Clean,
        rename_and_unlink_are_visible,
    );
}

pub(crate) fn rename_and_unlink_are_visible(env: &Env) {
    let d_a = env.a.join("d");
    let d2_a = env.a.join("d2");
    fs::create_dir(&d_a).expect("mkdir d on A");
    fs::create_dir(&d2_a).expect("mkdir d2 on A");
    for name in ["old", "victim", "src", "dst", "mover"] {
        fs::write(d_a.join(name), format!("contents of {name}")).expect("create on A");
    }
    let d_b = env.b.join("d");
    let d2_b = env.b.join("d2");
    // B looks up every name, and the names that do not exist yet, so that its client and
    // the kernel cache the entries (positive and negative) and the listing.
    let ino = |name: &str| {
        fs::metadata(d_b.join(name))
            .unwrap_or_else(|e| panic!("stat d/{name} on B: {e}"))
            .ino()
    };
    let (old_ino, src_ino, mover_ino) = (ino("old"), ino("src"), ino("mover"));
    let _ = ino("victim");
    let _ = ino("dst");
    let mut first = Checks::default();
    first.gone(
        "stat d/new on B before the rename",
        fs::metadata(d_b.join("new")),
    );
    first.gone(
        "stat d2/mover on B before",
        fs::metadata(d2_b.join("mover")),
    );
    first.expect(listing(&d_b).len() == 5, || {
        format!("listing of d on B: {:?}", listing(&d_b))
    });
    first.finish("before any change on A");

    let mut checks = Checks::default();
    fs::rename(d_a.join("old"), d_a.join("new")).expect("rename old -> new on A");
    checks.gone("stat d/old on B", fs::metadata(d_b.join("old")));
    checks.gone("open d/old on B", File::open(d_b.join("old")));
    match fs::metadata(d_b.join("new")) {
        Ok(meta) => checks.expect(meta.ino() == old_ino, || {
            format!("d/new on B is inode {}, want {old_ino} (old's)", meta.ino())
        }),
        Err(e) => checks.expect(false, || format!("stat d/new on B: {e}")),
    }
    checks.same(
        "read d/new on B",
        fs::read(d_b.join("new")),
        b"contents of old",
    );
    checks.finish("right after A renamed d/old to d/new");

    let mut checks = Checks::default();
    fs::remove_file(d_a.join("victim")).expect("unlink victim on A");
    checks.gone("stat d/victim on B", fs::metadata(d_b.join("victim")));
    checks.gone("open d/victim on B", File::open(d_b.join("victim")));
    checks.finish("right after A unlinked d/victim");

    let mut checks = Checks::default();
    fs::rename(d_a.join("src"), d_a.join("dst")).expect("rename src over dst on A");
    checks.gone("stat d/src on B", fs::metadata(d_b.join("src")));
    match fs::metadata(d_b.join("dst")) {
        Ok(meta) => checks.expect(meta.ino() == src_ino, || {
            format!("d/dst on B is inode {}, want {src_ino} (src's)", meta.ino())
        }),
        Err(e) => checks.expect(false, || format!("stat d/dst on B: {e}")),
    }
    checks.same(
        "read d/dst on B",
        fs::read(d_b.join("dst")),
        b"contents of src",
    );
    checks.finish("right after A renamed d/src over d/dst");

    let mut checks = Checks::default();
    fs::rename(d_a.join("mover"), d2_a.join("mover")).expect("rename d/mover to d2 on A");
    checks.gone("stat d/mover on B", fs::metadata(d_b.join("mover")));
    match fs::metadata(d2_b.join("mover")) {
        Ok(meta) => checks.expect(meta.ino() == mover_ino, || {
            format!("d2/mover on B is inode {}, want {mover_ino}", meta.ino())
        }),
        Err(e) => checks.expect(false, || format!("stat d2/mover on B: {e}")),
    }
    checks.finish("right after A renamed d/mover to d2/mover");

    let mut checks = Checks::default();
    let (d_now, d2_now) = (listing(&d_b), listing(&d2_b));
    checks.expect(d_now == ["dst", "new"], || {
        format!("listing of d on B: {d_now:?}, want [\"dst\", \"new\"]")
    });
    checks.expect(d2_now == ["mover"], || {
        format!("listing of d2 on B: {d2_now:?}, want [\"mover\"]")
    });
    checks.finish("listings on B at the end");
}

#[test]
fn what_a_client_created_follows_changes_elsewhere() {
    run(
        "what_a_client_created_follows_changes_elsewhere",
        LIMIT,
        Logs::Clean,
        created_follows_changes,
    );
}

/// A creates files (and caches their names and attributes under the locks granted with the
/// create); B then writes, chmods, renames and unlinks them, and A sees each change at once.
/// Likewise for the directory A creates and unlinks in (whose attributes come back to A
/// with each change): B's chmod and rmdir in it show on A at once; and for a capability B
/// sets on a file A created and writes (A's next write drops it, as Linux does).
pub(crate) fn created_follows_changes(env: &Env) {
    let dir_a = env.a.join("made");
    fs::create_dir(&dir_a).expect("mkdir made on A");
    let dir_b = env.b.join("made");
    let mode_of = |m: io::Result<fs::Metadata>| m.map(|m| m.permissions().mode() & 0o7777);

    // Created and kept open for writing on A; B opens it for writing too and writes.
    let kept = File::create(dir_a.join("kept")).expect("create kept on A");
    let mut checks = Checks::default();
    checks.size(
        "stat kept on A after create",
        fs::metadata(dir_a.join("kept")),
        0,
    );
    checks.finish("right after A created kept");
    let b_kept = OpenOptions::new()
        .write(true)
        .open(dir_b.join("kept"))
        .expect("open kept for writing on B");
    b_kept
        .write_all_at(&[7u8; 100], 0)
        .expect("write kept on B");
    let mut checks = Checks::default();
    checks.size("stat kept on A", fs::metadata(dir_a.join("kept")), 100);
    checks.size("fstat kept on A", kept.metadata(), 100);
    checks.finish("right after B wrote 100 bytes into the file A created and holds open");
    drop(b_kept);
    drop(kept);

    // Created and closed on A, then chmod on B.
    fs::write(dir_a.join("moded"), b"x").expect("create moded on A");
    let mut checks = Checks::default();
    checks.expect(
        matches!(mode_of(fs::metadata(dir_a.join("moded"))), Ok(m) if m != 0o600),
        || "moded on A starts with another mode than 0600".into(),
    );
    fs::set_permissions(dir_b.join("moded"), fs::Permissions::from_mode(0o600))
        .expect("chmod moded on B");
    let got = mode_of(fs::metadata(dir_a.join("moded")));
    checks.expect(matches!(got, Ok(0o600)), || {
        format!("mode of moded on A after B's chmod 0600: {got:?}")
    });
    checks.finish("right after B chmodded the file A created");

    // Created on A, renamed and unlinked on B.
    let renamed_ino = File::create(dir_a.join("renamed"))
        .and_then(|f| f.metadata())
        .expect("create renamed on A")
        .ino();
    let doomed = File::create(dir_a.join("doomed")).expect("create doomed on A");
    fs::rename(dir_b.join("renamed"), dir_b.join("moved")).expect("rename on B");
    fs::remove_file(dir_b.join("doomed")).expect("unlink doomed on B");
    let mut checks = Checks::default();
    checks.gone("stat renamed on A", fs::metadata(dir_a.join("renamed")));
    match fs::metadata(dir_a.join("moved")) {
        Ok(meta) => checks.expect(meta.ino() == renamed_ino, || {
            format!("moved on A is inode {}, want {renamed_ino}", meta.ino())
        }),
        Err(e) => checks.expect(false, || format!("stat moved on A: {e}")),
    }
    checks.gone("stat doomed on A", fs::metadata(dir_a.join("doomed")));
    match doomed.metadata() {
        Ok(meta) => checks.expect(meta.nlink() == 0, || {
            format!("fstat of doomed on A: nlink {}, want 0", meta.nlink())
        }),
        Err(e) => checks.expect(false, || format!("fstat doomed on A: {e}")),
    }
    checks.finish("right after B renamed and unlinked files A created");

    // The directory A changes: its attributes come back to A with each change, and follow
    // B's changes of it all the same.
    File::create(dir_a.join("one")).expect("create one on A");
    fs::set_permissions(&dir_b, fs::Permissions::from_mode(0o700)).expect("chmod made on B");
    let got = mode_of(fs::metadata(&dir_a));
    let mut checks = Checks::default();
    checks.expect(matches!(got, Ok(0o700)), || {
        format!("mode of made on A after B's chmod 0700: {got:?}")
    });
    checks.finish("right after A created a file in made and B chmodded made");
    fs::create_dir(dir_a.join("sub")).expect("mkdir made/sub on A");
    let links = fs::metadata(&dir_b)
        .map(|m| m.nlink())
        .expect("stat made on B");
    fs::remove_dir(dir_b.join("sub")).expect("rmdir made/sub on B");
    let got = fs::metadata(&dir_a).map(|m| m.nlink());
    let mut checks = Checks::default();
    checks.expect(matches!(got, Ok(n) if n + 1 == links), || {
        format!(
            "links of made on A after B's rmdir: {got:?}, want {}",
            links - 1
        )
    });
    checks.finish("right after A made made/sub and B removed it");
    fs::remove_file(dir_a.join("one")).expect("unlink one on A");
    fs::set_permissions(&dir_b, fs::Permissions::from_mode(0o755)).expect("chmod made on B");
    let got = mode_of(fs::metadata(&dir_a));
    let mut checks = Checks::default();
    checks.expect(matches!(got, Ok(0o755)), || {
        format!("mode of made on A after B's chmod 0755: {got:?}")
    });
    checks.finish("right after A unlinked a file in made and B chmodded made");

    // A file A created has no capability xattr as far as A knows (the kernel asks before
    // every write, to drop it): B sets one, and A's next write must find and drop it.
    let capable = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(dir_a.join("capable"))
        .expect("create capable on A");
    capable
        .write_all_at(b"x", 0)
        .expect("first write of capable on A");
    set_capability(&dir_b.join("capable")).expect("set security.capability on B");
    let mut checks = Checks::default();
    let seen = capability_len(&dir_a.join("capable"));
    checks.expect(matches!(seen, Ok(Some(CAPABILITY_V2_LEN))), || {
        format!("security.capability on A after B set it: {seen:?}")
    });
    capable
        .write_all_at(b"y", 1)
        .expect("second write of capable on A");
    let left = capability_len(&dir_b.join("capable"));
    checks.expect(matches!(left, Ok(None)), || {
        format!("security.capability on B after A wrote (the write drops it): {left:?}")
    });
    checks.finish("right after B set a capability on a file A created and writes");
    drop(capable);

    // A's own writes into a file it created show in its own stat.
    let own = File::create(dir_a.join("own")).expect("create own on A");
    own.write_all_at(&[1u8; 4000], 0).expect("write own on A");
    let mut checks = Checks::default();
    checks.size("stat own on A", fs::metadata(dir_a.join("own")), 4000);
    checks.size("stat own on B", fs::metadata(dir_b.join("own")), 4000);
    checks.finish("right after A wrote into the file it created and holds open");
}

#[test]
fn names_a_client_knows_absent_follow_changes_elsewhere() {
    run(
        "names_a_client_knows_absent_follow_changes_elsewhere",
        LIMIT,
        Logs::Clean,
        absent_names_follow_changes,
    );
}

#[test]
fn names_a_client_knows_absent_in_a_large_directory_follow_changes_elsewhere() {
    run(
        "names_a_client_knows_absent_in_a_large_directory_follow_changes_elsewhere",
        LIMIT,
        Logs::Clean,
        absent_names_in_a_large_directory_follow_changes,
    );
}

#[test]
fn what_a_client_read_follows_changes_elsewhere() {
    run(
        "what_a_client_read_follows_changes_elsewhere",
        LIMIT,
        Logs::Clean,
        read_follows_changes,
    );
}

/// B writes a file and A reads it: the read moves the access time (relatime), and A gets
/// the file's attribute lock back with that change, so that it answers the kernel's next
/// getattr itself and lets it cache the attributes. B's appends, chmods and truncates must
/// all show on A at once, and A's access time on B.
fn read_follows_changes(env: &Env) {
    let on_a = env.a.join("read");
    let on_b = env.b.join("read");
    fs::write(&on_b, [5u8; 3000]).expect("write on B");
    // Caught up on A before the read, so that the read's access time is A's own.
    let before = fs::metadata(&on_a).expect("stat on A before the read");
    std::thread::sleep(Duration::from_millis(20));
    let data = fs::read(&on_a).expect("read on A");
    assert_eq!(data.len(), 3000, "A read {} bytes, want 3000", data.len());
    let mut checks = Checks::default();
    let after = fs::metadata(&on_a).expect("stat on A after the read");
    checks.expect(
        after.atime_nsec() != before.atime_nsec() || after.atime() != before.atime(),
        || {
            format!(
                "A's read did not move the access time on A: {:?}",
                after.accessed()
            )
        },
    );
    let seen = fs::metadata(&on_b).map(|m| (m.atime(), m.atime_nsec()));
    checks.expect(
        matches!(seen, Ok(t) if t == (after.atime(), after.atime_nsec())),
        || {
            format!(
                "access time on B after A's read: {seen:?}, A shows {:?}",
                after.accessed()
            )
        },
    );
    checks.finish("right after A read the file B wrote");

    let mut b_file = OpenOptions::new()
        .append(true)
        .open(&on_b)
        .expect("open for append on B");
    io::Write::write_all(&mut b_file, &[6u8; 1000]).expect("append on B");
    let mut checks = Checks::default();
    checks.size("stat on A after B appended", fs::metadata(&on_a), 4000);
    drop(b_file);
    checks.size("stat on A after B closed", fs::metadata(&on_a), 4000);
    checks.finish("right after B appended to the file A read");

    fs::read(&on_a).expect("read on A again");
    fs::set_permissions(&on_b, fs::Permissions::from_mode(0o600)).expect("chmod on B");
    let mode = fs::metadata(&on_a).map(|m| m.permissions().mode() & 0o7777);
    let mut checks = Checks::default();
    checks.expect(matches!(mode, Ok(0o600)), || {
        format!("mode on A after B's chmod 0600: {mode:?}")
    });
    checks.finish("right after B chmodded the file A read");

    fs::read(&on_a).expect("read on A once more");
    truncate_path(&on_b, 10).expect("truncate on B");
    let mut checks = Checks::default();
    checks.size("stat on A after B truncated", fs::metadata(&on_a), 10);
    checks.finish("right after B truncated the file A read");
}

#[test]
fn names_looked_up_ahead_follow_changes_elsewhere() {
    run(
        "names_looked_up_ahead_follow_changes_elsewhere",
        LIMIT,
        Logs::Clean,
        looked_up_ahead_follow_changes,
    );
}

/// A stats numbered names in order, so that it looks the next ones up ahead (with their
/// locks); B then unlinks, renames, chmods and writes some of those, and A's stats of them
/// show each change at once.
fn looked_up_ahead_follow_changes(env: &Env) {
    let dir_a = env.a.join("ahead");
    let dir_b = env.b.join("ahead");
    fs::create_dir(&dir_b).expect("mkdir on B");
    let name = |n: usize| format!("f{n:04}");
    for n in 0..40 {
        fs::write(dir_b.join(name(n)), b"x").expect("create on B");
    }
    for n in 0..3 {
        fs::metadata(dir_a.join(name(n))).expect("stat on A");
    }
    // The batch looked up ahead comes back in the background.
    std::thread::sleep(Duration::from_millis(300));
    fs::remove_file(dir_b.join(name(10))).expect("unlink on B");
    fs::rename(dir_b.join(name(11)), dir_b.join("moved")).expect("rename on B");
    fs::set_permissions(dir_b.join(name(12)), fs::Permissions::from_mode(0o600))
        .expect("chmod on B");
    fs::write(dir_b.join(name(13)), [1u8; 100]).expect("rewrite on B");
    let mut checks = Checks::default();
    for n in 3..10 {
        checks.size(
            &format!("stat {} on A", name(n)),
            fs::metadata(dir_a.join(name(n))),
            1,
        );
    }
    checks.gone(
        "stat of the name B unlinked, on A",
        fs::metadata(dir_a.join(name(10))),
    );
    checks.gone(
        "stat of the name B renamed, on A",
        fs::metadata(dir_a.join(name(11))),
    );
    let mode = fs::metadata(dir_a.join(name(12))).map(|m| m.permissions().mode() & 0o7777);
    checks.expect(matches!(mode, Ok(0o600)), || {
        format!("mode on A of the file B chmodded 0600: {mode:?}")
    });
    checks.size(
        "stat on A of the file B rewrote",
        fs::metadata(dir_a.join(name(13))),
        100,
    );
    checks.size("stat f0014 on A", fs::metadata(dir_a.join(name(14))), 1);
    checks.finish("right after B changed names A had looked up ahead");
}

/// Makes one name in the directory it is given.
type MakeName<'a> = dyn Fn(&Path) -> io::Result<()> + 'a;

/// A makes a directory and creates and unlinks in it, so that it knows every name in it
/// and answers lookups of other names itself. Each way B adds a name to such a directory
/// (create, mkdir, symlink, hard link, rename into it, and a name A had unlinked) A must
/// see at once: by stat, by an exclusive create that fails, and in a listing.
fn absent_names_follow_changes(env: &Env) {
    let outside = env.b.join("outside");
    File::create(&outside).expect("create outside on B");
    let steps: [(&str, &MakeName<'_>); 6] = [
        ("b-file", &|d| File::create(d.join("b-file")).map(drop)),
        ("b-dir", &|d| fs::create_dir(d.join("b-dir"))),
        ("b-link", &|d| {
            std::os::unix::fs::symlink("f1", d.join("b-link"))
        }),
        ("b-hard", &|d| fs::hard_link(d.join("f1"), d.join("b-hard"))),
        ("b-moved", &|d| fs::rename(&outside, d.join("b-moved"))),
        ("f2", &|d| File::create(d.join("f2")).map(drop)),
    ];
    for (i, (name, make)) in steps.into_iter().enumerate() {
        let dir_a = env.a.join(format!("known{i}"));
        let dir_b = env.b.join(format!("known{i}"));
        fs::create_dir(&dir_a).expect("mkdir on A");
        for n in ["f1", "f2", "f3"] {
            File::create(dir_a.join(n)).expect("create on A");
        }
        fs::remove_file(dir_a.join("f2")).expect("unlink f2 on A");
        let mut checks = Checks::default();
        checks.gone(
            "stat before B made it, on A",
            fs::metadata(dir_a.join(name)),
        );
        checks.expect(fs::metadata(dir_a.join("f3")).is_ok(), || {
            "f3, created on A, is not seen on A".into()
        });
        make(&dir_b).unwrap_or_else(|e| panic!("make {name} on B: {e}"));
        seen_and_taken(&mut checks, &dir_a, name);
        let names = listing(&dir_a);
        checks.expect(names.iter().any(|n| n == name), || {
            format!("{name} is not in A's listing of known{i}: {names:?}")
        });
        checks.finish(&format!("right after B made known{i}/{name}"));
    }
}

/// `name`, just made on B in the directory A knows as `dir_a`: A sees it, and A's exclusive
/// create of it fails with EEXIST.
fn seen_and_taken(checks: &mut Checks, dir_a: &Path, name: &str) {
    checks.expect(fs::symlink_metadata(dir_a.join(name)).is_ok(), || {
        format!("{name}, made on B, is not seen on A")
    });
    let excl = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(dir_a.join(name));
    checks.expect(
        matches!(&excl, Err(e) if e.kind() == io::ErrorKind::AlreadyExists),
        || format!("exclusive create of {name} on A after B made it: {excl:?}"),
    );
}

/// Past the names a client keeps exactly, A knows its directory's names through Bloom
/// filters: they must hide no name it made, answer for one it unlinked only through the
/// MDS, and be forgotten like exact names when B changes the directory.
fn absent_names_in_a_large_directory_follow_changes(env: &Env) {
    let files = sheen_client::limits::DIR_NAMES_EXACT_MAX + 100;
    let dir_a = env.a.join("large");
    let dir_b = env.b.join("large");
    fs::create_dir(&dir_a).expect("mkdir on A");
    for i in 0..files {
        File::create(dir_a.join(format!("f{i}"))).expect("create on A");
    }
    fs::remove_file(dir_a.join("f2")).expect("unlink f2 on A");
    let last = format!("f{}", files - 1);
    let mut checks = Checks::default();
    checks.gone(
        "f2 after A unlinked it, on A",
        fs::metadata(dir_a.join("f2")),
    );
    checks.gone(
        "b-file before B made it, on A",
        fs::metadata(dir_a.join("b-file")),
    );
    checks.expect(fs::metadata(dir_a.join(&last)).is_ok(), || {
        format!("{last}, the last name A created, is not seen on A")
    });
    checks.finish(&format!("after A made {files} files and unlinked one"));

    File::create(dir_b.join("b-file")).expect("create b-file on B");
    File::create(dir_b.join("f2")).expect("create f2 on B");
    let mut checks = Checks::default();
    for name in ["b-file", "f2"] {
        seen_and_taken(&mut checks, &dir_a, name);
    }
    checks.finish("right after B made b-file and f2 in A's large directory");
}

/// The xattr holding a file's capabilities.
const CAPABILITY_XATTR: &str = "security.capability";
/// Size of a version 2 `security.capability` value (`struct vfs_cap_data`).
const CAPABILITY_V2_LEN: usize = 20;

/// Sets a valid version 2 file capability (CAP_NET_BIND_SERVICE permitted and effective) on
/// `path`, as `setcap cap_net_bind_service+ep` would.
fn set_capability(path: &Path) -> io::Result<()> {
    let mut value = [0u8; CAPABILITY_V2_LEN];
    // VFS_CAP_REVISION_2 | VFS_CAP_FLAGS_EFFECTIVE, then permitted (bit 10), inheritable.
    value[..4].copy_from_slice(&0x0200_0001u32.to_le_bytes());
    value[4..8].copy_from_slice(&(1u32 << 10).to_le_bytes());
    LocalFs.set_xattr(path, CAPABILITY_XATTR, &value)
}

/// The length of `path`'s `security.capability`, `None` when it has none.
fn capability_len(path: &Path) -> io::Result<Option<usize>> {
    Ok(LocalFs.get_xattr(path, CAPABILITY_XATTR)?.map(|v| v.len()))
}

/// Sorted names in a directory; a failure to list is a failed test.
fn listing(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("list {}: {e}", dir.display()))
        .map(|entry| {
            let entry = entry.unwrap_or_else(|e| panic!("list {}: {e}", dir.display()));
            entry.file_name().to_string_lossy().into_owned()
        })
        .collect();
    names.sort();
    names
}

#[test]
fn write_is_visible_on_rdma() {
    crate::run_rdma(
        "write_is_visible_on_rdma",
        LIMIT,
        Logs::Clean,
        write_is_visible,
    );
}

#[test]
fn rename_and_unlink_are_visible_on_rdma() {
    crate::run_rdma(
        "rename_and_unlink_are_visible_on_rdma",
        LIMIT,
        Logs::Clean,
        rename_and_unlink_are_visible,
    );
}

#[test]
fn listed_entries_follow_changes_on_the_other_mount() {
    run(
        "listed_entries_follow_changes_on_the_other_mount",
        LIMIT,
        Logs::Clean,
        listed_entries_follow_changes,
    );
}

/// How long a stat answered from the kernel's cache may take (it needs no process at all).
const CACHED_STAT_LIMIT: Duration = Duration::from_secs(2);

/// What `ls -l` shows of an entry (and its inode).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Long {
    ino: u64,
    mode: u32,
    size: u64,
    nlink: u64,
}

impl Long {
    fn of(m: &fs::Metadata) -> Long {
        Long {
            ino: m.ino(),
            mode: m.mode(),
            size: m.len(),
            nlink: m.nlink(),
        }
    }
}

/// `ls -l` of `dir`: each entry stat'ed (lstat) as soon as readdir returned it, so that the
/// kernel lists with readdirplus and answers the stats from what that gave it.
fn ls_l(dir: &Path) -> BTreeMap<String, Long> {
    let mut out = BTreeMap::new();
    for entry in fs::read_dir(dir).unwrap_or_else(|e| panic!("list {}: {e}", dir.display())) {
        let entry = entry.unwrap_or_else(|e| panic!("list {}: {e}", dir.display()));
        let meta = fs::symlink_metadata(entry.path())
            .unwrap_or_else(|e| panic!("lstat {}: {e}", entry.path().display()));
        assert_eq!(entry.ino(), meta.ino(), "d_ino of {:?}", entry.file_name());
        out.insert(
            entry.file_name().to_string_lossy().into_owned(),
            Long::of(&meta),
        );
    }
    out
}

/// Stats `dir/NAME` for each of `names` on B with B's `sheen-mount` stopped, so that only
/// B's kernel can answer: fails (naming `when`) if a stat had to wait for the mount, that is
/// if the listing before did not let the kernel cache the entry.
fn cached_on_b(env: &Env, dir: &Path, names: &[&str], when: &str) -> BTreeMap<String, Long> {
    let paths: Vec<(String, PathBuf)> = names
        .iter()
        .map(|n| ((*n).to_owned(), dir.join(n)))
        .collect();
    let stopped = Stopped::new(env.b_pid).expect("SIGSTOP B's sheen-mount");
    let stats = bounded(
        "stat on B while it is stopped",
        CACHED_STAT_LIMIT,
        move || {
            paths
                .into_iter()
                .map(|(n, p)| (n, fs::symlink_metadata(p).map(|m| Long::of(&m))))
                .collect::<Vec<_>>()
        },
    );
    drop(stopped);
    match stats {
        Ok((stats, _)) => stats
            .into_iter()
            .map(|(n, m)| {
                let m = m.unwrap_or_else(|e| panic!("{when}: lstat {n} on stopped B: {e}"));
                (n, m)
            })
            .collect(),
        Err(waited) => panic!(
            "{when}: a stat on B waited {waited:?} for B's stopped sheen-mount: the listing \
             did not leave the entries {names:?} cached"
        ),
    }
}

/// Creates an empty regular file without opening it (no writer, nothing left to report to
/// the MDS at a close).
fn mknod_file(path: &Path, mode: u32) {
    use std::os::unix::ffi::OsStrExt;
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes()).expect("path");
    // SAFETY: a valid NUL-terminated path.
    let r = unsafe { libc::mknod(c_path.as_ptr(), libc::S_IFREG | mode, 0) };
    assert_eq!(
        r,
        0,
        "mknod {}: {}",
        path.display(),
        std::io::Error::last_os_error()
    );
}

pub(crate) fn listed_entries_follow_changes(env: &Env) {
    let d_a = env.a.join("ls");
    let d_b = env.b.join("ls");
    fs::create_dir(&d_a).expect("mkdir ls on A");
    // Made without opening them, so that no close is still being reported when B lists.
    for (name, size) in [
        ("chmod", 10),
        ("write", 100),
        ("truncate", 3 * STRIPE_SIZE / 2),
    ] {
        mknod_file(&d_a.join(name), 0o644);
        truncate_path(&d_a.join(name), size).expect("truncate on A");
    }
    mknod_file(&d_a.join("rename"), 0o644);
    fs::create_dir(d_a.join("sub")).expect("mkdir sub on A");
    let names = ["chmod", "write", "truncate", "rename", "sub"];
    let on_a: BTreeMap<String, Long> = names
        .iter()
        .map(|n| {
            let m = fs::symlink_metadata(d_a.join(n)).expect("lstat on A");
            ((*n).to_owned(), Long::of(&m))
        })
        .collect();

    // B lists the names only: its kernel gets the attributes with them (readdirplus) and
    // keeps them, so that with B stopped the stats are answered, and right.
    let mut first = Checks::default();
    let listed = listing(&d_b);
    first.expect(
        listed == ["chmod", "rename", "sub", "truncate", "write"],
        || format!("listing on B: {listed:?}"),
    );
    let cached = cached_on_b(env, &d_b, &names, "after B listed");
    first.expect(cached == on_a, || {
        format!("cached on B: {cached:?}, A says {on_a:?}")
    });
    first.finish("B's first listing");

    // A changes the mode: B sees it at once.
    fs::set_permissions(d_a.join("chmod"), fs::Permissions::from_mode(0o600)).expect("chmod on A");
    let mut checks = Checks::default();
    match fs::symlink_metadata(d_b.join("chmod")) {
        Ok(m) => checks.expect(m.mode() & 0o7777 == 0o600, || {
            format!("mode on B {:o}, want 600", m.mode() & 0o7777)
        }),
        Err(e) => checks.expect(false, || format!("lstat chmod on B: {e}")),
    }
    checks.finish("right after A's chmod of a file B listed");

    // B lists again (the entry it looked up since is cached anew, the others still are); A
    // writes through a descriptor it keeps open.
    listing(&d_b);
    cached_on_b(env, &d_b, &["write"], "before A's write");
    let a_fd = OpenOptions::new()
        .write(true)
        .open(d_a.join("write"))
        .expect("open on A");
    a_fd.write_all_at(&pattern(7, 1000), 50)
        .expect("write on A");
    let mut checks = Checks::default();
    checks.size(
        "lstat on B while A writes",
        fs::symlink_metadata(d_b.join("write")),
        1050,
    );
    checks.same(
        "read on B",
        fs::read(d_b.join("write")).map(|d| d[50..].to_vec()),
        &pattern(7, 1000),
    );
    checks.finish("right after A's write to a file B listed");
    drop(a_fd);

    // A truncates by path.
    listing(&d_b);
    cached_on_b(env, &d_b, &["truncate"], "before A's truncate");
    truncate_path(&d_a.join("truncate"), 10).expect("truncate on A");
    let mut checks = Checks::default();
    checks.size("lstat on B", fs::symlink_metadata(d_b.join("truncate")), 10);
    checks.finish("right after A truncated a file B listed");

    // A renames.
    listing(&d_b);
    cached_on_b(env, &d_b, &["rename"], "before A's rename");
    fs::rename(d_a.join("rename"), d_a.join("renamed")).expect("rename on A");
    let mut checks = Checks::default();
    checks.gone(
        "lstat the old name on B",
        fs::symlink_metadata(d_b.join("rename")),
    );
    match fs::symlink_metadata(d_b.join("renamed")) {
        Ok(m) => checks.expect(m.ino() == on_a["rename"].ino, || {
            format!(
                "renamed on B is inode {}, want {}",
                m.ino(),
                on_a["rename"].ino
            )
        }),
        Err(e) => checks.expect(false, || format!("lstat renamed on B: {e}")),
    }
    checks.finish("right after A renamed a file B listed");

    // `ls -l` on B shows what A shows.
    let on_a: BTreeMap<String, Long> = ["chmod", "renamed", "sub", "truncate", "write"]
        .iter()
        .map(|n| {
            let m = fs::symlink_metadata(d_a.join(n)).expect("lstat on A");
            ((*n).to_owned(), Long::of(&m))
        })
        .collect();
    let mut last = Checks::default();
    let on_b = ls_l(&d_b);
    last.expect(on_b == on_a, || {
        format!("ls -l on B: {on_b:?}, A says {on_a:?}")
    });
    last.finish("at the end");
}
