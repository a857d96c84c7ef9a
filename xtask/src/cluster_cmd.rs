//! `cargo xtask cluster up|down`: a local cluster that outlives the command.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use sheen_cluster::{Cluster, ClusterSpec, ClusterState};

use crate::util;
use crate::UpArgs;

/// Builds, starts detached, mounts, prints what runs, returns.
pub fn up(args: &UpArgs) -> Result<()> {
    util::step("ensure fuse3 is installed");
    util::ensure_fuse3()?;
    util::step(if args.debug {
        "build (debug)"
    } else {
        "build (release)"
    });
    let bin_dir = util::build_cluster_binaries(args.debug)?;
    let mut spec = ClusterSpec::new(&args.dir);
    spec.bin_dir = bin_dir;
    spec.net = args.net.clone();
    spec.n_osts = args.osts;
    spec.ost_size_bytes = args.ost_size;
    if args.mds_commit_interval_ms > 0 {
        spec.mds_commit_interval = Some(Duration::from_millis(args.mds_commit_interval_ms));
    }
    util::step(&format!("start the cluster in {}", args.dir.display()));
    let mut cluster = Cluster::start_detached(spec).context("cannot start the cluster")?;
    util::step(&format!("mount at {}", args.mount.display()));
    if let Err(error) = cluster.mount(&args.mount) {
        eprintln!("mount failed, stopping the cluster");
        if let Err(stop_error) = cluster.stop() {
            eprintln!("while stopping: {stop_error}");
        }
        return Err(error).context("cannot mount");
    }
    let state = cluster.state();
    let state_path = cluster.detach()?;
    print_state(&state);
    println!("state:  {}", state_path.display());
    println!(
        "stop:   cargo xtask cluster down --dir {}",
        args.dir.display()
    );
    Ok(())
}

/// Unmounts and stops what `up` recorded in `DIR/cluster.json`.
pub fn down(dir: &Path) -> Result<()> {
    let state = ClusterState::load(dir)?;
    util::step(&format!("stop the cluster in {}", state.dir.display()));
    print_state(&state);
    sheen_cluster::down(dir)?;
    util::step("stopped");
    Ok(())
}

fn print_state(state: &ClusterState) {
    for record in &state.daemons {
        println!(
            "{:<6} {:<24} pid {:<8} log {}",
            record.name,
            record.nid,
            record.pid,
            record.log.display()
        );
    }
    for mount in &state.mounts {
        println!(
            "mount  {} at {} (sheen-mount pid {}, log {})",
            state.mount_spec,
            mount.mountpoint.display(),
            mount.pid,
            mount.log.display()
        );
    }
    println!("logs:   {}", state.dir.join("logs").display());
    println!(
        "tools:  {}/lfs, {}/lctl",
        state.bin_dir.display(),
        state.bin_dir.display()
    );
}
