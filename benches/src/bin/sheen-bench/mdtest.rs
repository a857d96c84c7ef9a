//! The mdtest-like workload: N tasks each create F files (writing `--file-size` bytes into
//! each, 0 for pure metadata), stat them, read them back (when they hold data) and remove
//! them, in a directory of their own or in one shared directory.
//!
//! Each phase is timed from the start barrier to the last task's end; the directories are
//! made before and removed after, untimed.

use anyhow::{ensure, Result};
use serde_json::json;

use crate::backend::{Backend, Dir};
use crate::pattern;
use crate::report::{PhaseResult, Progress};
use crate::{drop_caches, run_tasks};

#[derive(Clone, Debug)]
pub struct MdtestParams {
    pub tasks: usize,
    pub files_per_task: u64,
    pub file_size_bytes: u64,
    pub shared_dir: bool,
    pub verify: bool,
    pub drop_caches: bool,
}

impl MdtestParams {
    pub fn validate(&self) -> Result<()> {
        ensure!(self.tasks >= 1, "at least one task (-n)");
        ensure!(self.files_per_task >= 1, "at least one file per task");
        ensure!(
            self.file_size_bytes <= 64 << 20,
            "--file-size is for small files (at most 64 MiB)"
        );
        Ok(())
    }

    pub fn to_json(&self) -> serde_json::Value {
        json!({
            "tasks": self.tasks,
            "files_per_task": self.files_per_task,
            "file_size_bytes": self.file_size_bytes,
            "shared_dir": self.shared_dir,
            "verify": self.verify,
            "drop_caches": self.drop_caches,
        })
    }

    fn dir_name(&self, task: usize) -> String {
        if self.shared_dir {
            "mdtest.shared".to_owned()
        } else {
            format!("mdtest.{task}")
        }
    }
}

fn file_name(task: usize, file_idx: u64) -> String {
    format!("f.{task}.{file_idx}")
}

fn file_id(task: usize, file_idx: u64) -> u64 {
    ((task as u64) << 32) | file_idx
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    Create,
    Stat,
    Read,
    Remove,
}

impl Phase {
    fn name(self) -> &'static str {
        match self {
            Phase::Create => "create",
            Phase::Stat => "stat",
            Phase::Read => "read",
            Phase::Remove => "remove",
        }
    }
}

pub fn run(
    backend: &Backend,
    params: &MdtestParams,
    progress: &Progress,
) -> Result<Vec<PhaseResult>> {
    params.validate()?;
    let root = backend.root();
    let n_dirs = if params.shared_dir { 1 } else { params.tasks };
    let dirs: Vec<Dir> = (0..n_dirs)
        .map(|task| backend.mkdir(&root, &params.dir_name(task)))
        .collect::<Result<_>>()?;
    let dir_of = |task: usize| &dirs[if params.shared_dir { 0 } else { task }];
    let total_files = params.files_per_task * params.tasks as u64;
    let mut phases = Vec::new();
    let mut list = vec![Phase::Create, Phase::Stat];
    if params.file_size_bytes > 0 {
        list.push(Phase::Read);
    }
    list.push(Phase::Remove);
    for phase in list {
        if params.drop_caches && phase != Phase::Create {
            drop_caches();
        }
        let _progress = progress.phase(&format!("mdtest {}", phase.name()), total_files);
        let (elapsed, errors) = run_tasks(params.tasks, |task| {
            md_task(backend, params, phase, dir_of(task), task, progress)
        })?;
        let bytes = match phase {
            Phase::Create | Phase::Read => params.file_size_bytes * total_files,
            Phase::Stat | Phase::Remove => 0,
        };
        let mut result = PhaseResult::new(phase.name(), bytes, total_files, elapsed);
        result.verify_errors = errors;
        if phase == Phase::Stat || (phase == Phase::Read && params.verify) {
            result.verified = Some(errors == 0);
        }
        phases.push(result);
    }
    for task in 0..n_dirs {
        backend.rmdir(&root, &params.dir_name(task))?;
    }
    Ok(phases)
}

/// One task's share of a phase; returns the files whose size or data was wrong.
fn md_task(
    backend: &Backend,
    params: &MdtestParams,
    phase: Phase,
    dir: &Dir,
    task: usize,
    progress: &Progress,
) -> Result<u64> {
    let size = usize::try_from(params.file_size_bytes)?;
    let mut data = vec![0u8; size];
    let mut scratch = Vec::new();
    let mut bad = 0u64;
    for file_idx in 0..params.files_per_task {
        let name = file_name(task, file_idx);
        let id = file_id(task, file_idx);
        match phase {
            Phase::Create => {
                pattern::fill(&mut data, id, 0);
                backend.create_file(dir, &name, &data)?;
            }
            Phase::Stat => {
                let found = backend.stat(dir, &name)?;
                if found != params.file_size_bytes {
                    if bad == 0 {
                        eprintln!("{name}: size {found}, expected {}", params.file_size_bytes);
                    }
                    bad += 1;
                }
            }
            Phase::Read => {
                let n = backend.read_file(dir, &name, &mut data)?;
                let wrong =
                    n != size || (params.verify && !pattern::matches(&data, id, 0, &mut scratch));
                if wrong {
                    if bad == 0 {
                        if n == size {
                            eprintln!("{name}: data differs from the pattern");
                        } else {
                            eprintln!("{name}: read {n} bytes, not the {size} written");
                        }
                    }
                    bad += 1;
                }
            }
            Phase::Remove => backend.unlink(dir, &name, false)?,
        }
        progress.add(1);
    }
    Ok(bad)
}
