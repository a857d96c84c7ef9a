//! Test engines: an in-memory device, and one that simulates power loss.
//!
//! [`CrashDev`] keeps two images: what a reader sees now, and what has been made durable by a
//! `sync`. After a countdown of events (each single write and each sync is one) it "loses
//! power": the event that hits zero and every later call fail, and
//! [`CrashDev::crash_image`] returns what a restart would find: the durable image, optionally
//! with a pseudo-random subset of the unsynced 4 KiB sectors also landed (a device may persist
//! any of them, in any order, before the flush that never came).

use std::io;
use std::sync::Mutex;

use super::{BlockDev, ReadIo, WriteIo};
use crate::codec::{u64_of, usize_of};
use crate::locks::lock;

fn range(offset: u64, len: usize, dev_len: usize) -> io::Result<std::ops::Range<usize>> {
    let start = usize::try_from(offset).map_err(|_| io::Error::other("offset"))?;
    let end = start.checked_add(len).filter(|e| *e <= dev_len);
    let end = end.ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "past device end"))?;
    Ok(start..end)
}

/// A device in memory; every write is immediately "durable".
pub(crate) struct MemDev {
    bytes: Mutex<Vec<u8>>,
}

impl MemDev {
    pub fn new(len: u64) -> MemDev {
        MemDev {
            bytes: Mutex::new(vec![0; usize_of(len)]),
        }
    }

    pub fn from_image(image: Vec<u8>) -> MemDev {
        MemDev {
            bytes: Mutex::new(image),
        }
    }

    pub fn image(&self) -> Vec<u8> {
        lock(&self.bytes).clone()
    }

    /// Flips bits of one byte, as media corruption would.
    pub fn corrupt_byte(&self, offset: u64) {
        lock(&self.bytes)[usize_of(offset)] ^= 0x5a;
    }
}

impl BlockDev for MemDev {
    fn read_at(&self, ios: &mut [ReadIo<'_>]) -> io::Result<()> {
        let bytes = lock(&self.bytes);
        for io in ios {
            let r = range(io.offset, io.buf.len(), bytes.len())?;
            io.buf.copy_from_slice(&bytes[r]);
        }
        Ok(())
    }

    fn write_at(&self, ios: &[WriteIo<'_>]) -> io::Result<()> {
        let mut bytes = lock(&self.bytes);
        for io in ios {
            let r = range(io.offset, io.buf.len(), bytes.len())?;
            bytes[r].copy_from_slice(io.buf);
        }
        Ok(())
    }

    fn sync(&self) -> io::Result<()> {
        Ok(())
    }

    fn len(&self) -> u64 {
        u64_of(lock(&self.bytes).len())
    }

    fn engine(&self) -> &'static str {
        "mem"
    }
}

struct CrashState {
    current: Vec<u8>,
    durable: Vec<u8>,
    /// Writes since the last sync, oldest first.
    unsynced: Vec<(u64, Vec<u8>)>,
    /// Events (single writes and syncs) left before power is lost; `None` = never.
    events_left: Option<u64>,
    crashed: bool,
    events_done: u64,
}

/// The splitmix64 finaliser: a well-mixed coin for every sector.
fn splitmix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl CrashState {
    /// Counts one event; fails if power is (or now goes) out.
    fn event(&mut self) -> io::Result<()> {
        if self.crashed {
            return Err(power_lost());
        }
        if let Some(left) = self.events_left.as_mut() {
            if *left == 0 {
                self.crashed = true;
                return Err(power_lost());
            }
            *left -= 1;
        }
        self.events_done += 1;
        Ok(())
    }
}

/// A device that loses power after a countdown of writes.
pub(crate) struct CrashDev {
    state: Mutex<CrashState>,
}

fn power_lost() -> io::Error {
    io::Error::other("simulated power loss")
}

/// What survives a crash.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Survivors {
    /// Only bytes made durable by a completed sync.
    SyncedOnly,
    /// Synced bytes plus a pseudo-random subset (seeded) of the unsynced 4 KiB sectors.
    SomeUnsynced(u64),
}

impl CrashDev {
    pub fn new(image: Vec<u8>) -> CrashDev {
        CrashDev {
            state: Mutex::new(CrashState {
                durable: image.clone(),
                current: image,
                unsynced: Vec::new(),
                events_left: None,
                crashed: false,
                events_done: 0,
            }),
        }
    }

    /// Power fails at the `n`-th event from now (`n = 0`: the next write or sync fails).
    pub fn arm(&self, n: u64) {
        lock(&self.state).events_left = Some(n);
    }

    /// Writes and syncs done so far.
    pub fn events_done(&self) -> u64 {
        lock(&self.state).events_done
    }

    pub fn crash_image(&self, survivors: Survivors) -> Vec<u8> {
        let st = lock(&self.state);
        let mut image = st.durable.clone();
        if let Survivors::SomeUnsynced(seed) = survivors {
            let mut counter = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15);
            for (offset, data) in &st.unsynced {
                for (i, sector) in data.chunks(4096).enumerate() {
                    counter = counter.wrapping_add(0x9e37_79b9_7f4a_7c15);
                    if splitmix64(counter) & (1 << 40) != 0 {
                        let at = usize_of(*offset) + i * 4096;
                        image[at..at + sector.len()].copy_from_slice(sector);
                    }
                }
            }
        }
        image
    }
}

impl BlockDev for CrashDev {
    fn read_at(&self, ios: &mut [ReadIo<'_>]) -> io::Result<()> {
        let st = lock(&self.state);
        if st.crashed {
            return Err(power_lost());
        }
        for io in ios {
            let r = range(io.offset, io.buf.len(), st.current.len())?;
            io.buf.copy_from_slice(&st.current[r]);
        }
        Ok(())
    }

    fn write_at(&self, ios: &[WriteIo<'_>]) -> io::Result<()> {
        let mut st = lock(&self.state);
        for io in ios {
            st.event()?;
            let r = range(io.offset, io.buf.len(), st.current.len())?;
            st.current[r].copy_from_slice(io.buf);
            st.unsynced.push((io.offset, io.buf.to_vec()));
        }
        Ok(())
    }

    fn sync(&self) -> io::Result<()> {
        let mut st = lock(&self.state);
        st.event()?;
        let pending = std::mem::take(&mut st.unsynced);
        for (offset, data) in pending {
            let at = usize_of(offset);
            st.durable[at..at + data.len()].copy_from_slice(&data);
        }
        Ok(())
    }

    fn len(&self) -> u64 {
        u64_of(lock(&self.state).current.len())
    }

    fn engine(&self) -> &'static str {
        "crash"
    }
}
