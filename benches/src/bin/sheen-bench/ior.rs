//! The IOR-like workload: N tasks each write, then read, their own file (file-per-process) or
//! their own segment of one shared file, in transfers of a fixed size at sequential or
//! random offsets.
//!
//! A phase is timed from the moment every task is ready until the last one is done, and
//! includes open, close and (with `--fsync`) the final fsync, as IOR does. The data is the
//! deterministic pattern of `pattern.rs`, so `--verify` checks every byte read.

use anyhow::{ensure, Result};
use serde_json::json;

use crate::backend::{Backend, Open};
use crate::pattern::{self, AlignedBuf, Rng};
use crate::report::{PhaseResult, Progress};
use crate::{drop_caches, run_tasks};

/// Smallest and largest transfer (`-t`).
pub const TRANSFER_MIN_BYTES: u64 = 4 << 10;
pub const TRANSFER_MAX_BYTES: u64 = 16 << 20;
/// Pattern file id of the shared file (per-process files use the task index).
const SHARED_FILE_ID: u64 = 1 << 32;

#[derive(Clone, Debug)]
pub struct IorParams {
    pub tasks: usize,
    pub transfer_bytes: u64,
    /// Bytes each task writes and reads (its file, or its segment of the shared file).
    pub block_bytes: u64,
    pub shared: bool,
    pub random: bool,
    pub fsync: bool,
    pub direct: bool,
    pub verify: bool,
    pub write: bool,
    pub read: bool,
    /// Keep the files afterwards (a later run can read them with `--phases read`).
    pub keep: bool,
    pub drop_caches: bool,
    pub seed: u64,
}

impl IorParams {
    pub fn validate(&self) -> Result<()> {
        ensure!(self.tasks >= 1, "at least one task (-n)");
        ensure!(
            (TRANSFER_MIN_BYTES..=TRANSFER_MAX_BYTES).contains(&self.transfer_bytes),
            "transfer size (-t) must be 4 KiB to 16 MiB"
        );
        ensure!(
            self.transfer_bytes.is_multiple_of(8),
            "transfer size must be a multiple of 8"
        );
        ensure!(
            self.block_bytes >= self.transfer_bytes
                && self.block_bytes.is_multiple_of(self.transfer_bytes),
            "block size (-b) must be a multiple of the transfer size (-t)"
        );
        ensure!(self.write || self.read, "no phase to run");
        Ok(())
    }

    pub fn to_json(&self) -> serde_json::Value {
        let phases: Vec<&str> = [self.write.then_some("write"), self.read.then_some("read")]
            .into_iter()
            .flatten()
            .collect();
        json!({
            "tasks": self.tasks,
            "transfer_bytes": self.transfer_bytes,
            "block_bytes": self.block_bytes,
            "shared": self.shared,
            "random": self.random,
            "fsync": self.fsync,
            "direct": self.direct,
            "verify": self.verify,
            "drop_caches": self.drop_caches,
            "seed": self.seed,
            "phases": phases,
        })
    }

    fn file_name(&self, task: usize) -> String {
        if self.shared {
            "ior.shared".to_owned()
        } else {
            format!("ior.{task}")
        }
    }

    fn file_id(&self, task: usize) -> u64 {
        if self.shared {
            SHARED_FILE_ID
        } else {
            task as u64
        }
    }

    /// Where task `task`'s data starts in its file.
    fn base_offset(&self, task: usize) -> u64 {
        if self.shared {
            task as u64 * self.block_bytes
        } else {
            0
        }
    }

    fn n_transfers(&self) -> u64 {
        self.block_bytes / self.transfer_bytes
    }

    /// Transfer indices in the order a task issues them.
    fn order(&self, task: usize, phase_salt: u64) -> Vec<u64> {
        if self.random {
            let seed = self.seed ^ ((task as u64) << 20) ^ phase_salt;
            Rng::new(seed).permutation(self.n_transfers())
        } else {
            (0..self.n_transfers()).collect()
        }
    }

    fn transfer_len(&self) -> Result<usize> {
        Ok(usize::try_from(self.transfer_bytes)?)
    }
}

pub fn run(backend: &Backend, params: &IorParams, progress: &Progress) -> Result<Vec<PhaseResult>> {
    params.validate()?;
    let dir = backend.root();
    let n_files = if params.shared { 1 } else { params.tasks };
    let total_ops = params.n_transfers() * params.tasks as u64;
    let total_bytes = params.block_bytes * params.tasks as u64;
    let mut phases = Vec::new();

    if params.write {
        for task in 0..n_files {
            backend.unlink(&dir, &params.file_name(task), true)?;
        }
        let _progress = progress.phase("ior write", total_ops);
        let (elapsed, _) = run_tasks(params.tasks, |task| {
            write_task(backend, params, task, progress)
        })?;
        let mut elapsed = elapsed;
        if params.shared {
            let started = std::time::Instant::now();
            backend.finish_shared(&dir, &params.file_name(0), total_bytes)?;
            elapsed += started.elapsed();
        }
        phases.push(PhaseResult::new("write", total_bytes, total_ops, elapsed));
    }

    if params.read {
        if params.drop_caches {
            drop_caches();
        }
        let _progress = progress.phase("ior read", total_ops);
        let (elapsed, verify_errors) = run_tasks(params.tasks, |task| {
            read_task(backend, params, task, progress)
        })?;
        let mut phase = PhaseResult::new("read", total_bytes, total_ops, elapsed);
        if params.verify {
            phase.verified = Some(verify_errors == 0);
        }
        phase.verify_errors = verify_errors;
        phases.push(phase);
    }

    if !params.keep {
        for task in 0..n_files {
            backend.unlink(&dir, &params.file_name(task), true)?;
        }
    }
    Ok(phases)
}

fn write_task(
    backend: &Backend,
    params: &IorParams,
    task: usize,
    progress: &Progress,
) -> Result<u64> {
    let dir = backend.root();
    let mut buf = AlignedBuf::new(params.transfer_len()?);
    let base = params.base_offset(task);
    let file_id = params.file_id(task);
    let handle = backend.open(&dir, &params.file_name(task), Open::Write)?;
    for idx in params.order(task, 0) {
        let offset = base + idx * params.transfer_bytes;
        pattern::fill(buf.as_mut_slice(), file_id, offset);
        backend.write_at(&handle, offset, buf.as_slice())?;
        progress.add(1);
    }
    if params.fsync {
        backend.fsync(&handle)?;
    }
    let written_end = (!params.shared).then_some(params.block_bytes);
    backend.close(handle, written_end)?;
    Ok(0)
}

/// Returns the number of transfers that came back short or different.
fn read_task(
    backend: &Backend,
    params: &IorParams,
    task: usize,
    progress: &Progress,
) -> Result<u64> {
    let dir = backend.root();
    let mut buf = AlignedBuf::new(params.transfer_len()?);
    let mut scratch = Vec::new();
    let base = params.base_offset(task);
    let file_id = params.file_id(task);
    let name = params.file_name(task);
    let handle = backend.open(&dir, &name, Open::Read)?;
    let mut bad = 0u64;
    for idx in params.order(task, 1) {
        let offset = base + idx * params.transfer_bytes;
        let n = backend.read_at(&handle, offset, buf.as_mut_slice())?;
        let data = &buf.as_slice()[..n];
        let short = n as u64 != params.transfer_bytes;
        if short || (params.verify && !pattern::matches(data, file_id, offset, &mut scratch)) {
            if bad == 0 {
                eprintln!(
                    "task {task}: {name} at offset {offset}: {}",
                    if short {
                        format!("read {n} of {} bytes", params.transfer_bytes)
                    } else {
                        "data differs from the pattern".to_owned()
                    }
                );
            }
            bad += 1;
        }
        progress.add(1);
    }
    backend.close(handle, None)?;
    Ok(bad)
}
