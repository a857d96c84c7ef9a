//! Statahead: names looked up in a numbered sequence (`f0000001`, `f0000002`, ..., as
//! mdtest, most benchmarks and many applications name their files) are looked up ahead of
//! the application, many per MDS_GETATTR_BATCH, with their LOOKUP and attribute locks
//! (Lustre's statahead guesses names the same way).
//!
//! This module only decides what to fetch and keeps what was fetched; the client sends the
//! batches, and uses a fetched answer only while the locks it came with are held (another
//! client's change of the name or the attributes calls them back first).

use std::collections::HashMap;

use sheen_wire::{Fid, GetattrLockReply, LockHandle};

use crate::limits;

/// A name ending in decimal digits: the prefix, the number, and how many digits it has
/// (numbers are written with at least that many, zero-padded).
#[derive(Clone, Debug, PartialEq, Eq)]
struct Numbered {
    prefix: Vec<u8>,
    n: u64,
    width: usize,
}

/// Most digits of a number statahead follows (`u64` holds 19).
const DIGITS_MAX: usize = 18;

impl Numbered {
    fn parse(name: &[u8]) -> Option<Numbered> {
        let digits = name.iter().rev().take_while(|b| b.is_ascii_digit()).count();
        if digits == 0 || digits > DIGITS_MAX {
            return None;
        }
        let (prefix, number) = name.split_at(name.len() - digits);
        let n = std::str::from_utf8(number).ok()?.parse().ok()?;
        Some(Numbered {
            prefix: prefix.to_vec(),
            n,
            width: digits,
        })
    }

    /// The name of number `n` in this sequence.
    fn name(&self, n: u64) -> Vec<u8> {
        let mut name = self.prefix.clone();
        name.extend_from_slice(format!("{n:0w$}", w = self.width).as_bytes());
        name
    }
}

/// An answer fetched ahead, and the locks it was read under (LOOKUP and attributes).
#[derive(Debug)]
pub(crate) struct Fetched {
    pub reply: GetattrLockReply,
    pub locks: Vec<LockHandle>,
}

#[derive(Debug, Default)]
struct DirAhead {
    /// The last name of the directory found.
    last: Option<Numbered>,
    /// Finds in a row whose name followed the one before in its sequence.
    streak: u32,
    /// The highest number of the sequence asked for ahead.
    ahead_to: u64,
    /// Batches on their way.
    in_flight: usize,
    /// The last batch found none of its names: none is asked for until the sequence
    /// starts again.
    dry: bool,
    /// Answers fetched ahead and not used yet.
    fetched: HashMap<Vec<u8>, Fetched>,
}

/// What the client looks up ahead, per directory.
#[derive(Debug, Default)]
pub(crate) struct Statahead {
    dirs: HashMap<Fid, DirAhead>,
}

impl Statahead {
    /// The answer fetched ahead for `name` in `dir`, taken out (it serves one lookup).
    pub(crate) fn take(&mut self, dir: Fid, name: &[u8]) -> Option<Fetched> {
        self.dirs.get_mut(&dir)?.fetched.remove(name)
    }

    /// `name` was found in `dir`. Returns the names to fetch ahead now, if any: the next
    /// [`limits::STATAHEAD_BATCH`] of its sequence past what was asked already, once the
    /// lookups follow a sequence and what was asked ahead of this one leaves room for a
    /// batch in [`limits::STATAHEAD_WINDOW`] (at most [`limits::STATAHEAD_IN_FLIGHT`]
    /// batches on their way at once).
    pub(crate) fn found(&mut self, dir: Fid, name: &[u8]) -> Option<Vec<Vec<u8>>> {
        if !self.dirs.contains_key(&dir) && self.dirs.len() >= limits::STATAHEAD_DIRS_MAX {
            self.dirs.clear();
        }
        let d = self.dirs.entry(dir).or_default();
        let Some(now) = Numbered::parse(name) else {
            *d = DirAhead::default();
            return None;
        };
        let follows = d
            .last
            .as_ref()
            .is_some_and(|last| last.n.checked_add(1).is_some_and(|n| last.name(n) == name));
        if follows {
            d.streak = d.streak.saturating_add(1);
        } else {
            let same_sequence = d
                .last
                .as_ref()
                .is_some_and(|l| l.prefix == now.prefix && l.width == now.width);
            if !same_sequence {
                d.fetched.clear();
            }
            // Wherever the sequence starts again, fetching starts from there.
            d.ahead_to = 0;
            d.streak = 0;
            d.dry = false;
        }
        d.last = Some(now.clone());
        let batch = limits::STATAHEAD_BATCH as u64;
        let busy = d.in_flight >= limits::STATAHEAD_IN_FLIGHT;
        if d.streak < limits::STATAHEAD_STREAK || busy || d.dry {
            return None;
        }
        let from = d.ahead_to.max(now.n);
        if from - now.n > limits::STATAHEAD_WINDOW as u64 - batch {
            return None;
        }
        let to = from.saturating_add(batch);
        let names: Vec<Vec<u8>> = (from + 1..=to).map(|n| now.name(n)).collect();
        d.ahead_to = to;
        d.in_flight += 1;
        Some(names)
    }

    /// The batch asked for in `dir` came back: each name with its answer, when found and
    /// locked.
    pub(crate) fn fetched(&mut self, dir: Fid, answers: Vec<(Vec<u8>, Option<Fetched>)>) {
        let Some(d) = self.dirs.get_mut(&dir) else {
            return;
        };
        d.in_flight = d.in_flight.saturating_sub(1);
        d.dry = answers.iter().all(|(_, a)| a.is_none());
        for (name, answer) in answers {
            if let Some(answer) = answer {
                if d.fetched.len() < limits::STATAHEAD_KEPT_MAX {
                    d.fetched.insert(name, answer);
                }
            }
        }
    }

    /// The batch asked for in `dir` failed.
    pub(crate) fn failed(&mut self, dir: Fid) {
        if let Some(d) = self.dirs.get_mut(&dir) {
            d.in_flight = d.in_flight.saturating_sub(1);
            d.dry = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir() -> Fid {
        Fid {
            seq: 1,
            oid: 2,
            ver: 0,
        }
    }

    fn answer() -> Option<Fetched> {
        let reply = GetattrLockReply {
            reply: sheen_wire::AttrReply {
                attr: sheen_wire::Attr {
                    fid: dir(),
                    mode: 0,
                    nlink: 1,
                    uid: 0,
                    gid: 0,
                    rdev: 0,
                    size: 0,
                    blocks: 0,
                    atime: Default::default(),
                    mtime: Default::default(),
                    ctime: Default::default(),
                    btime: Default::default(),
                    layout_gen: 0,
                    hsm_state: 0,
                    flags: 0,
                },
                layout: None,
                symlink: None,
            },
            locks: Vec::new(),
            writers: 0,
        };
        Some(Fetched {
            reply,
            locks: Vec::new(),
        })
    }

    #[test]
    fn numbered_names_keep_their_prefix_and_padding() {
        let n = Numbered::parse(b"file.0000041").unwrap();
        assert_eq!((n.prefix.as_slice(), n.n, n.width), (&b"file."[..], 41, 7));
        assert_eq!(n.name(42), b"file.0000042");
        assert_eq!(n.name(12_345_678), b"file.12345678");
        let n = Numbered::parse(b"9").unwrap();
        assert_eq!(n.name(10), b"10");
        assert!(Numbered::parse(b"file").is_none());
        assert!(Numbered::parse(b"x1234567890123456789").is_none());
    }

    #[test]
    fn a_sequence_of_lookups_fetches_the_next_names_ahead() {
        let batch = limits::STATAHEAD_BATCH;
        let name = |n: usize| format!("f{n:03}").into_bytes();
        let mut s = Statahead::default();
        assert_eq!(s.found(dir(), b"f007"), None);
        assert_eq!(s.found(dir(), b"f008"), None);
        let first = s
            .found(dir(), b"f009")
            .expect("third in a row fetches ahead");
        assert_eq!(first.len(), batch);
        assert_eq!(
            (&first[0], first.last().unwrap()),
            (&name(10), &name(9 + batch))
        );
        // The next lookup fills the window with a second batch.
        let second = s.found(dir(), b"f010").expect("a second batch");
        assert_eq!(second[0], name(10 + batch));
        // No more until one comes back, and the window has room.
        assert_eq!(s.found(dir(), b"f011"), None);
        s.fetched(dir(), first.iter().map(|n| (n.clone(), answer())).collect());
        assert!(s.take(dir(), &name(12)).is_some());
        assert!(s.take(dir(), &name(12)).is_none(), "an answer serves once");
        assert_eq!(s.found(dir(), &name(12)), None, "the window is full");
        let ahead_to = 9 + 2 * batch;
        let room_at = ahead_to - (limits::STATAHEAD_WINDOW - batch);
        let mut third = None;
        for n in 13..=room_at {
            third = third.or(s.found(dir(), &name(n)));
        }
        assert_eq!(third.expect("a third batch")[0], name(ahead_to + 1));
    }

    #[test]
    fn a_batch_that_finds_nothing_stops_the_sequence() {
        let mut s = Statahead::default();
        s.found(dir(), b"a1");
        s.found(dir(), b"a2");
        let ahead = s.found(dir(), b"a3").unwrap();
        s.fetched(dir(), ahead.into_iter().map(|n| (n, None)).collect());
        assert_eq!(s.found(dir(), b"a4"), None);
        // A lookup out of the sequence, then a new run, asks again.
        s.found(dir(), b"b1");
        s.found(dir(), b"b2");
        assert!(s.found(dir(), b"b3").is_some());
    }

    #[test]
    fn a_sequence_that_starts_over_is_fetched_again() {
        let mut s = Statahead::default();
        for round in 0..2 {
            let mut firsts = Vec::new();
            for n in 0..10 {
                if let Some(names) = s.found(dir(), format!("f{n:02}").as_bytes()) {
                    firsts.push(names[0].clone());
                    s.fetched(dir(), names.into_iter().map(|n| (n, answer())).collect());
                }
            }
            // From the third name on: the next one, then the batch after it.
            let batch = limits::STATAHEAD_BATCH;
            let want = vec![b"f03".to_vec(), format!("f{:02}", 3 + batch).into_bytes()];
            assert_eq!(firsts, want, "round {round}");
        }
    }

    #[test]
    fn names_out_of_sequence_fetch_nothing() {
        let mut s = Statahead::default();
        for name in ["f1", "f3", "f5", "g6", "f7", "x", "f8"] {
            assert_eq!(s.found(dir(), name.as_bytes()), None, "{name}");
        }
    }
}
