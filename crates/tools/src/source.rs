//! How the tools reach a filesystem's servers: a small trait over the native client, so the
//! commands can be tested against fake configurations and statfs replies.

use sheen_wire::msg::{FsConfig, StatfsReply, TargetInfo};

use crate::error::ToolError;

/// One target's statfs answer, or why there is none.
pub type TargetStatfs = (TargetInfo, Result<StatfsReply, String>);

/// A connection to one filesystem (a mounted client of its own).
pub trait Filesystem {
    /// The configuration the MGS handed out.
    fn config(&self) -> &FsConfig;
    /// The MGS NID the connection was made through, as written in the mount spec
    /// (`127.0.0.1:7000@tcp`).
    fn mgs_nid(&self) -> String;
    /// Asks every MDT and OST for its usage.
    fn target_statfs(&mut self) -> Vec<TargetStatfs>;
}

/// Opens connections from mount specs (`127.0.0.1:7000@tcp:/sheen`).
pub trait Connector {
    fn connect(&self, spec: &str) -> Result<Box<dyn Filesystem>, ToolError>;
}

/// The filesystem name of a mount spec (what follows the last `:/`), for messages.
pub fn spec_fsname(spec: &str) -> Option<&str> {
    spec.rsplit_once(":/")
        .map(|(_, name)| name.trim_end_matches('/'))
}

/// The first MGS NID of a mount spec, for the MGC device name.
pub fn spec_first_nid(spec: &str) -> Option<&str> {
    let (nids, _) = spec.rsplit_once(":/")?;
    let first = nids.split(',').next()?;
    // Failover NIDs are separated by ':' after an '@net' part; ports also use ':'.
    let at = first.find('@')?;
    let end = first[at..].find(':').map_or(first.len(), |i| at + i);
    Some(&first[..end])
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use sheen_wire::TargetKind;
    use std::collections::BTreeMap;

    /// A filesystem with a fixed configuration and fixed statfs answers.
    #[derive(Clone)]
    pub(crate) struct FakeFilesystem {
        pub config: FsConfig,
        pub mgs_nid: String,
        pub statfs: Vec<TargetStatfs>,
    }

    impl Filesystem for FakeFilesystem {
        fn config(&self) -> &FsConfig {
            &self.config
        }
        fn mgs_nid(&self) -> String {
            self.mgs_nid.clone()
        }
        fn target_statfs(&mut self) -> Vec<TargetStatfs> {
            self.statfs.clone()
        }
    }

    /// Connects to fake filesystems by spec; unknown specs fail to connect.
    #[derive(Default)]
    pub(crate) struct FakeConnector {
        pub filesystems: BTreeMap<String, FakeFilesystem>,
    }

    impl Connector for FakeConnector {
        fn connect(&self, spec: &str) -> Result<Box<dyn Filesystem>, ToolError> {
            match self.filesystems.get(spec) {
                Some(fs) => Ok(Box::new(fs.clone())),
                None => Err(ToolError::Connect {
                    spec: spec.to_string(),
                    reason: "connection refused".to_string(),
                }),
            }
        }
    }

    pub(crate) fn target(kind: TargetKind, index: u32) -> TargetInfo {
        TargetInfo {
            name: kind.target_name("sheen", index),
            kind,
            index,
            nids: vec![format!("127.0.0.1:{}@tcp", 7001 + index)],
        }
    }

    pub(crate) fn statfs(
        blocks: u64,
        bfree: u64,
        bavail: u64,
        files: u64,
        ffree: u64,
    ) -> StatfsReply {
        StatfsReply {
            bsize: 4096,
            blocks,
            bfree,
            bavail,
            files,
            ffree,
            namelen: 255,
        }
    }

    /// A filesystem `sheen` with one MDT and two OSTs.
    pub(crate) fn sample_fs() -> FakeFilesystem {
        let targets = vec![
            TargetInfo {
                name: "MGS".into(),
                kind: TargetKind::Mgs,
                index: 0,
                nids: vec!["127.0.0.1:7000@tcp".into()],
            },
            target(TargetKind::Mdt, 0),
            target(TargetKind::Ost, 0),
            target(TargetKind::Ost, 1),
        ];
        let statfs = vec![
            (
                target(TargetKind::Mdt, 0),
                Ok(statfs(262_144, 261_000, 261_000, 100_000, 99_000)),
            ),
            (
                target(TargetKind::Ost, 0),
                Ok(statfs(2_621_440, 2_000_000, 1_900_000, 50_000, 40_000)),
            ),
            (
                target(TargetKind::Ost, 1),
                Ok(statfs(2_621_440, 2_621_000, 2_600_000, 50_000, 49_990)),
            ),
        ];
        FakeFilesystem {
            config: FsConfig {
                fsname: "sheen".into(),
                default_stripe_count: 1,
                default_stripe_size: 1 << 20,
                targets,
                generation: 1,
            },
            mgs_nid: "127.0.0.1:7000@tcp".into(),
            statfs,
        }
    }

    #[test]
    fn spec_parts() {
        assert_eq!(spec_fsname("127.0.0.1:7000@tcp:/sheen"), Some("sheen"));
        assert_eq!(
            spec_first_nid("127.0.0.1:7000@tcp:/sheen"),
            Some("127.0.0.1:7000@tcp")
        );
        assert_eq!(
            spec_first_nid("10.0.0.1@tcp,10.0.0.2@tcp:/fs"),
            Some("10.0.0.1@tcp")
        );
        assert_eq!(
            spec_first_nid("10.0.0.1@tcp:10.0.0.2@tcp:/fs"),
            Some("10.0.0.1@tcp")
        );
        assert_eq!(spec_first_nid("nonsense"), None);
    }
}
