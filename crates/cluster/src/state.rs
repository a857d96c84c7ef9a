//! The state file of a detached cluster: `DIR/cluster.json`, every pid, port and mount.
//!
//! Written atomically (temporary file, then rename) after every change, so that a launcher
//! that dies half-way still leaves a file naming what it started.

use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::ClusterError;

/// Name of the state file inside the cluster directory.
pub const STATE_FILE_NAME: &str = "cluster.json";

/// Everything a detached cluster started.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterState {
    /// The cluster directory.
    pub dir: PathBuf,
    /// Filesystem name.
    pub fsname: String,
    /// Where the binaries came from.
    pub bin_dir: PathBuf,
    /// NID of the MGS, e.g. `127.0.0.1:7000@tcp`.
    pub mgs_nid: String,
    /// What `sheen-mount` is given, e.g. `127.0.0.1:7000@tcp:/sheen`.
    pub mount_spec: String,
    /// The daemons, in start order (MGS, MDS, OSS).
    pub daemons: Vec<DaemonRecord>,
    /// The FUSE mounts.
    pub mounts: Vec<MountRecord>,
}

/// One running daemon.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DaemonRecord {
    /// Short name: `mgs`, `mds` or `oss`.
    pub name: String,
    /// Binary file name, checked against `/proc/PID/cmdline` before any signal is sent.
    pub binary: String,
    /// Process id.
    pub pid: u32,
    /// Listening port on 127.0.0.1.
    pub port: u16,
    /// Listening NID, also checked against the command line.
    pub nid: String,
    /// Log file.
    pub log: PathBuf,
}

/// One `sheen-mount` process and its mountpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountRecord {
    /// Absolute mountpoint.
    pub mountpoint: PathBuf,
    /// Process id of `sheen-mount`.
    pub pid: u32,
    /// Log file.
    pub log: PathBuf,
}

impl ClusterState {
    /// The state file of the cluster in `dir`.
    pub fn path(dir: &Path) -> PathBuf {
        dir.join(STATE_FILE_NAME)
    }

    /// Reads `DIR/cluster.json`.
    pub fn load(dir: &Path) -> Result<ClusterState, ClusterError> {
        let path = ClusterState::path(dir);
        let text = fs::read_to_string(&path).map_err(|error| ClusterError::StateFile {
            path: path.clone(),
            reason: if error.kind() == std::io::ErrorKind::NotFound {
                "not found: no detached cluster was started in this directory".to_owned()
            } else {
                error.to_string()
            },
        })?;
        serde_json::from_str(&text).map_err(|error| ClusterError::StateFile {
            path,
            reason: error.to_string(),
        })
    }

    /// Writes `DIR/cluster.json` atomically.
    pub fn save(&self) -> Result<(), ClusterError> {
        let path = ClusterState::path(&self.dir);
        let temporary = path.with_extension("json.tmp");
        let state_error = |reason: String| ClusterError::StateFile {
            path: path.clone(),
            reason,
        };
        let text = serde_json::to_string_pretty(self).map_err(|e| state_error(e.to_string()))?;
        fs::write(&temporary, text + "\n").map_err(|e| state_error(e.to_string()))?;
        fs::rename(&temporary, &path).map_err(|e| state_error(e.to_string()))
    }

    /// Removes the state file; a missing one is fine.
    pub fn remove(dir: &Path) -> Result<(), ClusterError> {
        let path = ClusterState::path(dir);
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(error) => Err(ClusterError::StateFile {
                path,
                reason: error.to_string(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(dir: &Path) -> ClusterState {
        ClusterState {
            dir: dir.to_owned(),
            fsname: "sheen".to_owned(),
            bin_dir: PathBuf::from("/w/target/release"),
            mgs_nid: "127.0.0.1:20001@tcp".to_owned(),
            mount_spec: "127.0.0.1:20001@tcp:/sheen".to_owned(),
            daemons: vec![DaemonRecord {
                name: "mgs".to_owned(),
                binary: "sheen-mgs".to_owned(),
                pid: 4242,
                port: 20001,
                nid: "127.0.0.1:20001@tcp".to_owned(),
                log: dir.join("logs/mgs.log"),
            }],
            mounts: vec![MountRecord {
                mountpoint: PathBuf::from("/mnt/with space"),
                pid: 4343,
                log: dir.join("logs/mount-0.log"),
            }],
        }
    }

    #[test]
    fn round_trip() {
        let tmp = tempfile::tempdir().unwrap();
        let state = sample(tmp.path());
        state.save().unwrap();
        assert!(!tmp.path().join("cluster.json.tmp").exists());
        assert_eq!(ClusterState::load(tmp.path()).unwrap(), state);
        ClusterState::remove(tmp.path()).unwrap();
        ClusterState::remove(tmp.path()).unwrap();
        assert!(!ClusterState::path(tmp.path()).exists());
    }

    #[test]
    fn missing_file_is_explained() {
        let tmp = tempfile::tempdir().unwrap();
        let message = ClusterState::load(tmp.path()).unwrap_err().to_string();
        assert!(message.contains("no detached cluster"), "{message}");
    }

    #[test]
    fn corrupt_file_is_an_error() {
        let tmp = tempfile::tempdir().unwrap();
        fs::write(ClusterState::path(tmp.path()), "{\"dir\": 1").unwrap();
        assert!(matches!(
            ClusterState::load(tmp.path()),
            Err(ClusterError::StateFile { .. })
        ));
    }
}
