//! Fuzzing entry point for the mount spec parser (`MGSNID[,MGSNID...][:MGSNID]:/fsname`,
//! read from the command line, `/proc/self/mountinfo` and tools). The body of the cargo-fuzz
//! target in `fuzz/`, also run by a bounded smoke test below on stable. Not part of the API.
//!
//! Property: no panic, and a parsed spec prints to text that parses to the same spec.

use crate::MountSpec;

/// Parses the input as a mount spec (when it is UTF-8).
pub fn mount_spec(data: &[u8]) {
    if data.len() > 4096 {
        return;
    }
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(spec) = MountSpec::parse(text) {
        assert!(!spec.mgs_nids.is_empty());
        let printed = spec.to_string();
        assert_eq!(MountSpec::parse(&printed).as_ref(), Ok(&spec), "{printed}");
    }
}

/// Valid specs to start mutating from.
pub fn seeds() -> Vec<Vec<u8>> {
    [
        "127.0.0.1@tcp:/sheen",
        "127.0.0.1:7001@tcp,10.0.0.2@o2ib1:/fs-1/",
        "10.0.0.1@tcp:10.0.0.2@tcp:/sheen",
        "[::1]:7000@rdma:[fe80::1]@tcp:/x",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_parse() {
        for s in seeds() {
            let text = String::from_utf8(s).unwrap();
            assert!(MountSpec::parse(&text).is_ok(), "{text}");
        }
    }

    #[test]
    fn fuzz_smoke_mount_specs() {
        sheen_wire::fuzzing::smoke(0xc11_0001, 30_000, &seeds(), mount_spec);
    }
}
