//! Mount options (`-o a,b,c`): the kernel flags passed through, Sheen's own options, and
//! the fstab-only or Lustre-only ones that are accepted and ignored. Pure parsing, tested.

use std::path::PathBuf;

use fuser::{Config, MountOption, SessionACL};

use crate::limits::{
    FUSE_THREADS_DEFAULT, FUSE_THREADS_MAX, RPC_TIMEOUT_MAX_SECS, URING_DEPTH_DEFAULT,
    URING_DEPTH_MAX,
};

/// Options fstab or Lustre's mount.lustre use that mean nothing to this client.
const IGNORED: &[&str] = &[
    "defaults",
    "auto",
    "noauto",
    "user",
    "nouser",
    "users",
    "owner",
    "_netdev",
    "nofail",
    "relatime",
    "norelatime",
    "strictatime",
    "lazytime",
    "nolazytime",
    "flock",
    "localflock",
    "noflock",
    "user_xattr",
    "nouser_xattr",
    "lazystatfs",
    "nolazystatfs",
    "acl",
    "noacl",
    "default_permissions",
];
/// Prefixes of `key=value` options ignored for the same reason.
const IGNORED_PREFIXES: &[&str] = &["x-", "comment=", "fsname=", "subtype=", "context="];

/// Parsed mount options.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MountOpts {
    /// Kernel mount flags passed through (`ro`, `noatime`, `nodev`...).
    pub flags: Vec<MountOption>,
    /// Read-only mount: also refuse changes before they reach the servers.
    pub read_only: bool,
    /// Where the background process writes its log (`log=PATH`).
    pub log: Option<PathBuf>,
    /// Debug logging (`debug`).
    pub debug: bool,
    /// Threads reading /dev/fuse (`fuse_threads=N`).
    pub fuse_threads: usize,
    /// `allow_other` asked for explicitly (root mounts always allow others).
    pub allow_other: bool,
    /// How long an RPC waits for its reply before the client drops the connection and
    /// resends, to the next NID first (`timeout=SECONDS`; keep it above the servers'
    /// callback timeout, which a lock enqueue may wait out).
    pub rpc_timeout: Option<std::time::Duration>,
    /// FUSE over io_uring when the kernel offers it (`uring`, the default; `nouring`).
    pub uring: bool,
    /// Ring entries of each CPU's io_uring queue (`uring_depth=N`).
    pub uring_depth: usize,
    /// Fault injection for tests (`fault_uring_stop=N`, not in the help): the thread of
    /// CPU N's io_uring queue stops once its entries are registered.
    pub fault_uring_stop: Option<u16>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum OptionError {
    #[error("unknown mount option {0:?}")]
    Unknown(String),
    #[error("mount option {0:?} needs a value")]
    MissingValue(String),
    #[error("mount option {name}={value:?}: {reason}")]
    BadValue {
        name: String,
        value: String,
        reason: String,
    },
}

impl MountOpts {
    /// `noatime`: reads never update atime (else relatime, Linux's default).
    pub fn noatime(&self) -> bool {
        self.flags.contains(&MountOption::NoAtime)
    }
}

/// Parses the `-o` arguments (each a comma-separated list).
pub fn parse(lists: &[String]) -> Result<MountOpts, OptionError> {
    let mut opts = MountOpts {
        fuse_threads: FUSE_THREADS_DEFAULT,
        uring: true,
        uring_depth: URING_DEPTH_DEFAULT,
        ..MountOpts::default()
    };
    for opt in lists.iter().flat_map(|l| l.split(',')).map(str::trim) {
        if opt.is_empty() {
            continue;
        }
        let (name, value) = match opt.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (opt, None),
        };
        let flag = match name {
            "ro" => Some(MountOption::RO),
            "rw" => Some(MountOption::RW),
            "noatime" => Some(MountOption::NoAtime),
            "atime" => Some(MountOption::Atime),
            "nodev" => Some(MountOption::NoDev),
            "dev" => Some(MountOption::Dev),
            "nosuid" => Some(MountOption::NoSuid),
            "suid" => Some(MountOption::Suid),
            "noexec" => Some(MountOption::NoExec),
            "exec" => Some(MountOption::Exec),
            "sync" => Some(MountOption::Sync),
            "async" => Some(MountOption::Async),
            "dirsync" => Some(MountOption::DirSync),
            _ => None,
        };
        if let Some(flag) = flag {
            if value.is_some() {
                return Err(OptionError::Unknown(opt.to_string()));
            }
            match flag {
                MountOption::RO => opts.read_only = true,
                MountOption::RW => opts.read_only = false,
                _ => {}
            }
            // The last of two conflicting flags wins, as with mount(8).
            opts.flags.retain(|f| !conflicts(f, &flag));
            opts.flags.push(flag);
            continue;
        }
        match (name, value) {
            ("log", Some(v)) if !v.is_empty() => opts.log = Some(PathBuf::from(v)),
            ("log", _) => return Err(OptionError::MissingValue(name.to_string())),
            ("debug", None) => opts.debug = true,
            ("allow_other", None) => opts.allow_other = true,
            ("fuse_threads", Some(v)) => opts.fuse_threads = count(name, v, FUSE_THREADS_MAX)?,
            ("fuse_threads", None) => return Err(OptionError::MissingValue(name.to_string())),
            ("uring", None) => opts.uring = true,
            ("nouring", None) => opts.uring = false,
            ("uring_depth", Some(v)) => opts.uring_depth = count(name, v, URING_DEPTH_MAX)?,
            ("uring_depth", None) => return Err(OptionError::MissingValue(name.to_string())),
            ("fault_uring_stop", Some(v)) => {
                opts.fault_uring_stop = Some(v.parse().map_err(|_| OptionError::BadValue {
                    name: name.to_string(),
                    value: v.to_string(),
                    reason: "not a CPU number".to_string(),
                })?);
            }
            ("timeout", Some(v)) => {
                opts.rpc_timeout = match v.parse::<u64>() {
                    Ok(secs) if (1..=RPC_TIMEOUT_MAX_SECS).contains(&secs) => {
                        Some(std::time::Duration::from_secs(secs))
                    }
                    _ => {
                        return Err(OptionError::BadValue {
                            name: name.to_string(),
                            value: v.to_string(),
                            reason: format!("expected 1 to {RPC_TIMEOUT_MAX_SECS} seconds"),
                        })
                    }
                }
            }
            ("timeout", None) => return Err(OptionError::MissingValue(name.to_string())),
            _ if IGNORED.contains(&opt) => {}
            _ if IGNORED_PREFIXES.iter().any(|p| opt.starts_with(p)) => {}
            _ => return Err(OptionError::Unknown(opt.to_string())),
        }
    }
    Ok(opts)
}

/// The value of option `name`: a count from 1 to `max`.
fn count(name: &str, value: &str, max: usize) -> Result<usize, OptionError> {
    match value.parse::<usize>() {
        Ok(n) if (1..=max).contains(&n) => Ok(n),
        _ => Err(OptionError::BadValue {
            name: name.to_string(),
            value: value.to_string(),
            reason: format!("expected 1 to {max}"),
        }),
    }
}

fn conflicts(a: &MountOption, b: &MountOption) -> bool {
    use MountOption::*;
    let pair = |x: &MountOption, y: &MountOption| {
        matches!(
            (x, y),
            (RO, RW)
                | (NoAtime, Atime)
                | (NoDev, Dev)
                | (NoSuid, Suid)
                | (NoExec, Exec)
                | (Sync, Async)
        )
    };
    a == b || pair(a, b) || pair(b, a)
}

/// The fuser configuration of a mount of `spec`: fsname = the spec, type `fuse.sheen`,
/// kernel permission checks, others allowed in when root mounts.
pub fn fuse_config(spec: &str, opts: &MountOpts, is_root: bool) -> Config {
    let mut config = Config::default();
    let mut mount_options = vec![MountOption::FSName(spec.to_string())];
    if is_root {
        // mount(2) directly: fuser passes only kernel options in the mount data, where the
        // kernel takes `subtype` to name the type `fuse.sheen`.
        mount_options.push(MountOption::CUSTOM("subtype=sheen".to_string()));
    } else {
        // Through fusermount3, which takes `subtype` itself.
        mount_options.push(MountOption::Subtype("sheen".to_string()));
    }
    mount_options.push(MountOption::DefaultPermissions);
    mount_options.extend(opts.flags.iter().cloned());
    config.mount_options = mount_options;
    config.acl = if is_root || opts.allow_other {
        SessionACL::All
    } else {
        SessionACL::Owner
    };
    config.n_threads = Some(opts.fuse_threads);
    config.clone_fd = opts.fuse_threads > 1;
    config.uring_depth = Some(opts.uring_depth);
    config.uring_fault_stop_queue = opts.fault_uring_stop;
    config
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(lists: &[&str], expected: Result<MountOpts, OptionError>) {
        let lists: Vec<String> = lists.iter().map(|s| s.to_string()).collect();
        assert_eq!(parse(&lists), expected, "options {lists:?}");
    }

    fn opts(f: impl FnOnce(&mut MountOpts)) -> Result<MountOpts, OptionError> {
        let mut o = MountOpts {
            fuse_threads: FUSE_THREADS_DEFAULT,
            uring: true,
            uring_depth: URING_DEPTH_DEFAULT,
            ..MountOpts::default()
        };
        f(&mut o);
        Ok(o)
    }

    #[test]
    fn parses_options() {
        check(&[], opts(|_| {}));
        check(&[""], opts(|_| {}));
        check(
            &["ro,noatime", "log=/tmp/x.log"],
            opts(|o| {
                o.flags = vec![MountOption::RO, MountOption::NoAtime];
                o.read_only = true;
                o.log = Some("/tmp/x.log".into());
            }),
        );
        check(
            &["ro,rw,debug,fuse_threads=4"],
            opts(|o| {
                o.flags = vec![MountOption::RW];
                o.debug = true;
                o.fuse_threads = 4;
            }),
        );
        check(
            &["defaults,_netdev,flock,x-systemd.automount,user_xattr"],
            opts(|_| {}),
        );
        check(&["allow_other"], opts(|o| o.allow_other = true));
        check(
            &["timeout=7"],
            opts(|o| o.rpc_timeout = Some(std::time::Duration::from_secs(7))),
        );
        check(&["nouring"], opts(|o| o.uring = false));
        check(&["nouring,uring"], opts(|_| {}));
        check(&["uring_depth=4"], opts(|o| o.uring_depth = 4));
        check(
            &["fault_uring_stop=1"],
            opts(|o| o.fault_uring_stop = Some(1)),
        );
    }

    #[test]
    fn rejects_bad_options() {
        check(&["bogus"], Err(OptionError::Unknown("bogus".into())));
        check(&["ro=1"], Err(OptionError::Unknown("ro=1".into())));
        check(&["log"], Err(OptionError::MissingValue("log".into())));
        check(&["log="], Err(OptionError::MissingValue("log".into())));
        assert!(matches!(
            parse(&["fuse_threads=0".into()]),
            Err(OptionError::BadValue { .. })
        ));
        assert!(matches!(
            parse(&["fuse_threads=x".into()]),
            Err(OptionError::BadValue { .. })
        ));
        for bad in [
            "timeout=0",
            "timeout=-1",
            "timeout=1.5",
            "timeout=99999",
            "uring_depth=0",
            "uring_depth=257",
            "uring_depth=x",
            "fault_uring_stop=x",
            "fault_uring_stop=-1",
        ] {
            assert!(
                matches!(parse(&[bad.into()]), Err(OptionError::BadValue { .. })),
                "{bad}"
            );
        }
        check(
            &["timeout"],
            Err(OptionError::MissingValue("timeout".into())),
        );
        check(
            &["nouring=1"],
            Err(OptionError::Unknown("nouring=1".into())),
        );
        check(
            &["uring_depth"],
            Err(OptionError::MissingValue("uring_depth".into())),
        );
    }

    #[test]
    fn builds_the_fuse_config() {
        let o = parse(&["ro,noatime".into()]).unwrap();
        assert!(o.noatime());
        assert!(!parse(&["noatime,atime".into()]).unwrap().noatime());
        let c = fuse_config("127.0.0.1@tcp:/sheen", &o, true);
        assert_eq!(c.acl, SessionACL::All);
        assert_eq!(
            c.mount_options,
            vec![
                MountOption::FSName("127.0.0.1@tcp:/sheen".into()),
                MountOption::CUSTOM("subtype=sheen".into()),
                MountOption::DefaultPermissions,
                MountOption::RO,
                MountOption::NoAtime,
            ]
        );
        let c = fuse_config("x@tcp:/s", &o, false);
        assert_eq!(c.acl, SessionACL::Owner);
        assert!(c
            .mount_options
            .contains(&MountOption::Subtype("sheen".into())));
    }
}
