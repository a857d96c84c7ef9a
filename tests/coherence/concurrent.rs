//! Two clients writing disjoint ranges of one file at the same time, in many small writes:
//! 4 KiB blocks alternating between the writers (A the even blocks, B the odd ones), so that
//! every page, stripe and object holds both writers' data. Afterwards both clients must read
//! every block of both writers, and the size must be the end of the last block.

use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::{Arc, Barrier};
use std::time::Duration;

use sheen_tests::pattern;

use crate::{bounded, read_all, run, Checks, Env, Logs, Side, KIB};

/// One write.
const BLOCK: usize = 4 * KIB;
/// Blocks in the file: 1 MiB, sixteen 64 KiB stripes, eight on each OST.
const BLOCKS: usize = 256;
/// Time limit of the test.
const LIMIT: Duration = Duration::from_secs(90);
/// How long both writers together may take.
const WRITERS_LIMIT: Duration = Duration::from_secs(60);

fn block(i: usize) -> Vec<u8> {
    pattern(1000 + i as u64, BLOCK)
}

#[test]
fn disjoint_concurrent_writers_both_survive() {
    run(
        "disjoint_concurrent_writers_both_survive",
        LIMIT,
        Logs::Clean,
        disjoint_writers,
    );
}

/// Opens `path`, waits for the other writer, writes every block of `side`'s parity in order;
/// returns the descriptor, still open.
fn write_blocks(side: Side, path: PathBuf, start: Arc<Barrier>) -> Result<File, String> {
    let opened = OpenOptions::new().read(true).write(true).open(&path);
    // Waited for whatever happened, so that the other writer is never left waiting.
    start.wait();
    let file = opened.map_err(|e| format!("open on {side:?}: {e}"))?;
    for i in (side.idx()..BLOCKS).step_by(2) {
        file.write_all_at(&block(i), (i * BLOCK) as u64)
            .map_err(|e| format!("{side:?}'s write of block {i}: {e}"))?;
    }
    Ok(file)
}

fn disjoint_writers(env: &Env) {
    let on_a = env.a.join("shared");
    File::create(&on_a).expect("create the file on A");
    env.check_layout(&on_a);
    let start = Arc::new(Barrier::new(2));
    let writers = Side::BOTH.map(|side| {
        let path = env.on(side).join("shared");
        let start = Arc::clone(&start);
        std::thread::spawn(move || write_blocks(side, path, start))
    });
    let finished = bounded("join the writers", WRITERS_LIMIT, move || {
        writers.map(|writer| writer.join().map_err(|_| "a writer panicked".to_owned()))
    });
    let Ok(([a_fd, b_fd], took)) = finished else {
        panic!("the two writers did not finish within {WRITERS_LIMIT:?}");
    };
    println!("both writers done in {took:?}");
    let (a_fd, b_fd) = match (a_fd.and_then(|r| r), b_fd.and_then(|r| r)) {
        (Ok(a), Ok(b)) => (a, b),
        (a, b) => panic!("writers failed: A {:?}, B {:?}", a.err(), b.err()),
    };
    let want: Vec<u8> = (0..BLOCKS).flat_map(block).collect();
    let mut checks = Checks::default();
    checks.same("A's fd before closing", read_all(&a_fd), &want);
    checks.same("B's fd before closing", read_all(&b_fd), &want);
    // B wrote the last block: it closes first, so that a size recorded when A (whose last
    // block ends a block earlier) closes cannot cut B's off.
    drop(b_fd);
    drop(a_fd);
    for side in Side::BOTH {
        let path = env.on(side).join("shared");
        checks.size(
            &format!("stat on {side:?}"),
            fs::metadata(&path),
            want.len(),
        );
        checks.same(&format!("read back on {side:?}"), fs::read(&path), &want);
    }
    checks.finish(&format!(
        "after A wrote the even and B the odd {BLOCK}-byte blocks (block = byte / {BLOCK})"
    ));
}
