//! The mount spec: `MGSNID[,MGSNID...]:/fsname`, as Lustre writes it.
//!
//! Lustre separates NIDs of one MGS node with `,` and failover MGS nodes with `:`. Sheen's
//! NIDs may carry a port (`127.0.0.1:7000@tcp`), so a `:` separates two NIDs only when the
//! text before it since the last separator holds an `@net` part. The fsname follows the last
//! `:/`.

use std::fmt;
use std::str::FromStr;

use sheen_wire::limits::FSNAME_MAX_CHARS;
use sheen_wire::{Nid, NidError};

/// Where a client mounts from: the MGS NIDs to try, in order, and the filesystem name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MountSpec {
    pub mgs_nids: Vec<Nid>,
    pub fsname: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MountSpecError {
    #[error("mount spec {0:?} has no ':/fsname' part (expected e.g. 127.0.0.1@tcp:/sheen)")]
    MissingFsname(String),
    #[error("mount spec {0:?} names no MGS NID (expected e.g. 127.0.0.1@tcp:/sheen)")]
    NoNids(String),
    #[error("mount spec {spec:?}: fsname {fsname:?} must be 1 to {max} characters of \
             [A-Za-z0-9_-]", max = FSNAME_MAX_CHARS)]
    BadFsname { spec: String, fsname: String },
    #[error("mount spec {spec:?}: {source}")]
    BadNid { spec: String, source: NidError },
}

impl MountSpec {
    pub fn parse(s: &str) -> Result<MountSpec, MountSpecError> {
        let spec = s.trim();
        let (nids_part, fsname) = spec
            .rsplit_once(":/")
            .ok_or_else(|| MountSpecError::MissingFsname(spec.to_string()))?;
        let fsname = fsname.trim_end_matches('/');
        let fsname_ok = !fsname.is_empty()
            && fsname.chars().count() <= FSNAME_MAX_CHARS
            && fsname
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if !fsname_ok {
            return Err(MountSpecError::BadFsname {
                spec: spec.to_string(),
                fsname: fsname.to_string(),
            });
        }
        let mut mgs_nids = Vec::new();
        for text in nids_part.split(',').flat_map(split_failover) {
            let text = text.trim();
            if text.is_empty() {
                continue;
            }
            let nid = Nid::parse(text).map_err(|source| MountSpecError::BadNid {
                spec: spec.to_string(),
                source,
            })?;
            if !mgs_nids.contains(&nid) {
                mgs_nids.push(nid);
            }
        }
        if mgs_nids.is_empty() {
            return Err(MountSpecError::NoNids(spec.to_string()));
        }
        Ok(MountSpec {
            mgs_nids,
            fsname: fsname.to_string(),
        })
    }
}

/// Splits `a@tcp:b@tcp` into NIDs at the colons that end a NID (the text since the last cut
/// holds an `@`), leaving the colons of `host:port` and of IPv6 addresses alone.
fn split_failover(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    for (i, c) in s.char_indices() {
        if c == ':' && s[start..i].contains('@') {
            out.push(&s[start..i]);
            start = i + 1;
        }
    }
    out.push(&s[start..]);
    out
}

impl FromStr for MountSpec {
    type Err = MountSpecError;
    fn from_str(s: &str) -> Result<MountSpec, MountSpecError> {
        MountSpec::parse(s)
    }
}

impl fmt::Display for MountSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, nid) in self.mgs_nids.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{nid}")?;
        }
        write!(f, ":/{}", self.fsname)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(spec: &str, nids: &[&str], fsname: &str) {
        let parsed = MountSpec::parse(spec).unwrap();
        let got: Vec<String> = parsed.mgs_nids.iter().map(|n| n.to_string()).collect();
        assert_eq!(got, nids, "spec {spec}");
        assert_eq!(parsed.fsname, fsname, "spec {spec}");
        // Printing and parsing again gives the same spec.
        assert_eq!(MountSpec::parse(&parsed.to_string()).unwrap(), parsed);
    }

    #[test]
    fn parses_lustre_specs() {
        check("127.0.0.1@tcp:/sheen", &["127.0.0.1@tcp"], "sheen");
        check(
            "127.0.0.1:7000@tcp:/sheen",
            &["127.0.0.1:7000@tcp"],
            "sheen",
        );
        check(
            "10.0.0.1@tcp,10.0.0.2@tcp:/fs",
            &["10.0.0.1@tcp", "10.0.0.2@tcp"],
            "fs",
        );
        check(
            "10.0.0.1@tcp:10.0.0.2@tcp:/fs",
            &["10.0.0.1@tcp", "10.0.0.2@tcp"],
            "fs",
        );
        check(
            "127.0.0.1:7000@tcp:127.0.0.1:7100@tcp:/fs",
            &["127.0.0.1:7000@tcp", "127.0.0.1:7100@tcp"],
            "fs",
        );
        check("[::1]:7000@tcp:/fs", &["[::1]:7000@tcp"], "fs");
        check(" 127.0.0.1@o2ib1:/lfs-2/ ", &["127.0.0.1@o2ib1"], "lfs-2");
    }

    #[test]
    fn rejects_bad_specs() {
        assert!(matches!(
            MountSpec::parse("127.0.0.1@tcp"),
            Err(MountSpecError::MissingFsname(_))
        ));
        assert!(matches!(
            MountSpec::parse(":/sheen"),
            Err(MountSpecError::NoNids(_))
        ));
        assert!(matches!(
            MountSpec::parse("127.0.0.1@tcp:/"),
            Err(MountSpecError::BadFsname { .. })
        ));
        assert!(matches!(
            MountSpec::parse("127.0.0.1@tcp:/waytoolongname"),
            Err(MountSpecError::BadFsname { .. })
        ));
        assert!(matches!(
            MountSpec::parse("127.0.0.1@tcp:/a b"),
            Err(MountSpecError::BadFsname { .. })
        ));
        assert!(matches!(
            MountSpec::parse("127.0.0.1:/sheen"),
            Err(MountSpecError::BadNid { .. })
        ));
        assert!(matches!(
            MountSpec::parse("host@tcp:/sheen"),
            Err(MountSpecError::BadNid { .. })
        ));
    }
}
