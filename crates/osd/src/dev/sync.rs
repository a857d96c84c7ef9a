//! The pread/pwrite engine: used where io_uring is refused, or when `SHEEN_OSD_ENGINE=sync`.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

use super::{BlockDev, ReadIo, WriteIo};

/// Plain positional I/O on the block file.
pub(crate) struct FileDev {
    file: File,
    len: u64,
}

impl FileDev {
    pub fn new(file: File, len: u64) -> FileDev {
        FileDev { file, len }
    }
}

impl BlockDev for FileDev {
    fn read_at(&self, ios: &mut [ReadIo<'_>]) -> io::Result<()> {
        for io in ios {
            self.file.read_exact_at(io.buf, io.offset)?;
        }
        Ok(())
    }

    fn write_at(&self, ios: &[WriteIo<'_>]) -> io::Result<()> {
        for io in ios {
            self.file.write_all_at(io.buf, io.offset)?;
        }
        Ok(())
    }

    fn sync(&self) -> io::Result<()> {
        self.file.sync_data()
    }

    fn len(&self) -> u64 {
        self.len
    }

    fn engine(&self) -> &'static str {
        "sync"
    }
}
