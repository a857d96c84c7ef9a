//! Writes a mount answers before they are on the OSTs (write-behind) are seen by the other
//! mount as soon as write(2) returned, like any write: their data (the other mount's read
//! lock waits for them) and the size they make (its glimpse calls the writer's locks back).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::time::Duration;

use sheen_tests::pattern;

use crate::{run, Env, Logs};

/// Time limit of each test here.
const LIMIT: Duration = Duration::from_secs(60);
const MIB: usize = 1 << 20;

#[test]
fn writes_answered_early_are_seen_at_once() {
    run(
        "writes_answered_early_are_seen_at_once",
        LIMIT,
        Logs::Clean,
        writes_answered_early_are_seen,
    );
}

fn writes_answered_early_are_seen(env: &Env) {
    let on_a = env.a.join("behind");
    let on_b = env.b.join("behind");
    let mut model = pattern(51, 24 * MIB);
    let mut writer = File::create(&on_a).expect("create on A");
    // Round 1 extends an empty file, round 2 extends it further and rewrites the start.
    for (round, upto) in [(1, 16 * MIB), (2, 24 * MIB)] {
        let from = if round == 1 { 0 } else { 16 * MIB };
        for chunk in model[from..upto].chunks(MIB) {
            writer.write_all(chunk).expect("write on A");
        }
        if round == 2 {
            // Overwrites what round 1 wrote first, maybe still in flight on A: the newer
            // write must win.
            model[..MIB].copy_from_slice(&pattern(52, MIB));
            writer.write_all_at(&model[..MIB], 0).expect("rewrite on A");
        }
        // Right after the last write(2) returned: A still has writes in flight.
        let size = std::fs::metadata(&on_b).expect("stat on B").len();
        assert_eq!(size, upto as u64, "round {round}: size seen by B");
        let reader = OpenOptions::new()
            .read(true)
            .open(&on_b)
            .expect("open on B");
        let mut back = vec![0u8; upto];
        reader.read_exact_at(&mut back, 0).expect("read on B");
        if let Some(i) = back.iter().zip(&model[..upto]).position(|(b, m)| b != m) {
            panic!("round {round}: B reads other bytes at {i}");
        }
    }
    drop(writer);
    assert_eq!(
        std::fs::metadata(&on_b).expect("stat").len(),
        24 * MIB as u64
    );
}
