//! `lctl`: Lustre's control command, for what a Sheen client node can answer.
//!
//! - `dl` (`device_list`) and `get_param` mount a native client per Sheen mount (or the
//!   filesystem named by `--mgs NID --fsname NAME` / `--spec SPEC`) and derive Lustre's
//!   client devices and parameters from its configuration;
//! - `get_param version` needs no filesystem;
//! - `list_nids` lists this node's addresses; `ping` sends OBD_PING to the service at a NID
//!   (see [`net`]).
//!
//! [`net`]: crate::net

use std::ffi::OsString;
use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::cli::{all_mounts, emit, parse_args, report, status, Env};
use crate::devices::{devices, format_dl, format_params, param_matches, params};
use crate::devices::{MountedFs, Param, ParamStyle};
use crate::error::ToolError;
use crate::net::{format_nids, ping};

/// What `lctl get_param version` reports.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// `lctl ping` waits this long by default, as Lustre does.
const PING_TIMEOUT_DEFAULT_SECS: u64 = 1;
/// The longest `lctl ping` timeout accepted.
const PING_TIMEOUT_MAX_SECS: u64 = 300;

#[derive(Parser, Debug)]
#[command(
    name = "lctl",
    version,
    about = "Lustre's lctl for Sheen: client devices, parameters and network checks",
    subcommand_required = true,
    arg_required_else_help = true
)]
struct Lctl {
    /// Reach a filesystem that is not mounted here through this MGS NID (with --fsname).
    #[arg(long, value_name = "NID", requires = "fsname", global = true)]
    mgs: Option<String>,
    /// The filesystem name to use with --mgs.
    #[arg(long, value_name = "NAME", requires = "mgs", global = true)]
    fsname: Option<String>,
    /// Reach a filesystem that is not mounted here by its mount spec (NID:/fsname).
    #[arg(long, value_name = "SPEC", conflicts_with_all = ["mgs", "fsname"], global = true)]
    spec: Option<String>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Show the client devices of each Sheen mount.
    #[command(name = "dl", visible_alias = "device_list")]
    Dl,
    /// Check that a NID accepts connections.
    Ping {
        /// The NID, e.g. 192.168.1.2@tcp or 127.0.0.1:7000@tcp.
        nid: String,
        /// Seconds to wait.
        #[arg(value_parser = clap::value_parser!(u64).range(1..=PING_TIMEOUT_MAX_SECS))]
        timeout: Option<u64>,
    },
    /// Show this node's NIDs.
    #[command(name = "list_nids")]
    ListNids,
    /// Show parameters, e.g. `version`, `lov.*.stripesize`, `osc.*.ost_conn_uuid`.
    #[command(name = "get_param")]
    GetParam {
        /// Show values only.
        #[arg(short = 'n', conflicts_with = "names_only")]
        values_only: bool,
        /// Show names only.
        #[arg(short = 'N')]
        names_only: bool,
        #[arg(required = true, value_name = "PARAM")]
        params: Vec<String>,
    },
}

/// Runs `lctl` with `argv` (program name first) and returns the exit status.
pub fn run(argv: &[OsString], env: &mut Env<'_>) -> i32 {
    let args: Lctl = match parse_args(argv, env) {
        Ok(args) => args,
        Err(code) => return code,
    };
    let spec = match (&args.spec, &args.mgs, &args.fsname) {
        (Some(spec), _, _) => Some(spec.clone()),
        (None, Some(mgs), Some(fsname)) => Some(format!("{mgs}:/{fsname}")),
        _ => None,
    };
    let result = match &args.cmd {
        Cmd::Dl => run_dl(spec.as_deref(), env),
        Cmd::Ping { nid, timeout } => {
            let secs = timeout.unwrap_or(PING_TIMEOUT_DEFAULT_SECS);
            match ping(env.net, nid, Duration::from_secs(secs)) {
                Ok(text) => emit(env, &text).map(|()| status(false)),
                Err(msg) => Err(ToolError::Failed(msg)),
            }
        }
        Cmd::ListNids => env
            .net
            .interface_addrs()
            .map_err(|e| {
                ToolError::Failed(format!(
                    "cannot list interfaces: {}",
                    crate::error::describe(&e)
                ))
            })
            .and_then(|addrs| emit(env, &format_nids(&addrs)).map(|()| status(false))),
        Cmd::GetParam {
            values_only,
            names_only,
            params,
        } => {
            let style = match (values_only, names_only) {
                (true, _) => ParamStyle::ValueOnly,
                (false, true) => ParamStyle::NameOnly,
                (false, false) => ParamStyle::NameValue,
            };
            run_get_param(spec.as_deref(), params, style, env)
        }
    };
    match result {
        Ok(code) => code,
        Err(e) => report(env, "lctl", &e),
    }
}

/// Connects to the filesystems to describe: the one given by spec, or every Sheen mount.
/// Connection failures are reported and flagged; the others are still returned.
fn connect_all(spec: Option<&str>, env: &mut Env<'_>) -> Result<(Vec<MountedFs>, bool), ToolError> {
    let targets: Vec<(Option<std::path::PathBuf>, String)> = match spec {
        Some(spec) => vec![(None, spec.to_string())],
        None => all_mounts(env)?
            .into_iter()
            .map(|m| (Some(m.dir), m.spec))
            .collect(),
    };
    let mut out = Vec::new();
    let mut failed = false;
    for (mount_dir, spec) in targets {
        match env.connector.connect(&spec) {
            Ok(handle) => out.push(MountedFs {
                mount_dir,
                mgs_nid: handle.mgs_nid(),
                config: handle.config().clone(),
                spec,
            }),
            Err(e) => {
                failed = true;
                report(env, "lctl", &e);
            }
        }
    }
    Ok((out, failed))
}

fn run_dl(spec: Option<&str>, env: &mut Env<'_>) -> Result<i32, ToolError> {
    let (mounted, failed) = connect_all(spec, env)?;
    emit(env, &format_dl(&devices(&mounted)))?;
    Ok(status(failed))
}

fn run_get_param(
    spec: Option<&str>,
    patterns: &[String],
    style: ParamStyle,
    env: &mut Env<'_>,
) -> Result<i32, ToolError> {
    // `version` and friends need no filesystem: connect only when a pattern may name a
    // device parameter.
    let local = params(&[], VERSION);
    let needs_devices = patterns
        .iter()
        .any(|p| !local.iter().any(|param| param.name == p.replace('/', ".")));
    let (mounted, mut failed) = if needs_devices {
        connect_all(spec, env)?
    } else {
        (vec![], false)
    };
    let all = if needs_devices {
        params(&mounted, VERSION)
    } else {
        local
    };
    for pattern in patterns {
        let matched: Vec<&Param> = all
            .iter()
            .filter(|p| param_matches(pattern, &p.name))
            .collect();
        if matched.is_empty() {
            failed = true;
            let e = ToolError::Failed(format!(
                "get_param: param_path '{pattern}': No such file or directory"
            ));
            report(env, "error", &e);
            continue;
        }
        emit(env, &format_params(&matched, style))?;
    }
    Ok(status(failed))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::tests::run_with;
    use crate::devices::instance_id;
    use crate::error::{EXIT_FAILURE, EXIT_USAGE};
    use crate::setstripe::tests::FakeFs;
    use crate::source::tests::{sample_fs, FakeConnector};

    const MOUNTINFO: &str =
        "90 27 0:52 / /mnt/sheen rw,relatime shared:5 - fuse.sheen 127.0.0.1:7000@tcp:/sheen rw\n";

    fn lctl(connector: &FakeConnector, args: &[&str]) -> (i32, String, String) {
        let argv: Vec<OsString> = std::iter::once("lctl")
            .chain(args.iter().copied())
            .map(OsString::from)
            .collect();
        run_with(&FakeFs::default(), connector, MOUNTINFO, |env| {
            run(&argv, env)
        })
    }

    fn connector() -> FakeConnector {
        let mut c = FakeConnector::default();
        c.filesystems
            .insert("127.0.0.1:7000@tcp:/sheen".into(), sample_fs());
        c
    }

    #[test]
    fn device_list_of_the_mount() {
        let (code, out, err) = lctl(&connector(), &["dl"]);
        assert_eq!((code, err.as_str()), (0, ""));
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 6, "{out}");
        assert!(
            lines[0].starts_with("  0 UP mgc MGC127.0.0.1:7000@tcp "),
            "{out}"
        );
        assert!(
            lines[1].starts_with("  1 UP lov sheen-clilov-ffff"),
            "{out}"
        );
        assert!(
            lines[3].starts_with("  3 UP mdc sheen-MDT0000-mdc-ffff"),
            "{out}"
        );
        assert!(
            lines[5].starts_with("  5 UP osc sheen-OST0001-osc-ffff"),
            "{out}"
        );
        assert!(lines[5].ends_with(" 5"), "{out}");
        let (_, again, _) = lctl(&connector(), &["device_list"]);
        assert_eq!(again, out);
    }

    #[test]
    fn device_list_by_mgs_or_spec() {
        let (code, out, _) = lctl(
            &connector(),
            &["--mgs", "127.0.0.1:7000@tcp", "--fsname", "sheen", "dl"],
        );
        assert_eq!(code, 0);
        let m = MountedFs {
            mount_dir: None,
            spec: "127.0.0.1:7000@tcp:/sheen".into(),
            mgs_nid: "127.0.0.1:7000@tcp".into(),
            config: sample_fs().config,
        };
        assert!(
            out.contains(&format!("lov sheen-clilov-{} ", instance_id(&m))),
            "{out}"
        );
        let (code, by_spec, _) = lctl(&connector(), &["dl", "--spec", "127.0.0.1:7000@tcp:/sheen"]);
        assert_eq!((code, by_spec), (0, out));
        let (code, _, err) = lctl(&connector(), &["--spec", "10.9.9.9@tcp:/gone", "dl"]);
        assert_eq!(code, EXIT_FAILURE);
        assert!(
            err.starts_with("lctl: cannot reach filesystem 10.9.9.9@tcp:/gone"),
            "{err}"
        );
        let (code, _, _) = lctl(&connector(), &["--mgs", "127.0.0.1@tcp", "dl"]);
        assert_eq!(code, EXIT_USAGE, "--mgs needs --fsname");
    }

    #[test]
    fn get_param() {
        // `version` needs no filesystem: this connector knows none.
        let (code, out, err) = lctl(&FakeConnector::default(), &["get_param", "version"]);
        assert_eq!(
            (code, out, err),
            (0, format!("version={VERSION}\n"), String::new())
        );
        let (code, out, _) = lctl(&FakeConnector::default(), &["get_param", "-n", "version"]);
        assert_eq!((code, out), (0, format!("{VERSION}\n")));
        let (code, out, _) = lctl(
            &connector(),
            &["get_param", "-n", "lov.*.stripecount", "lmv.*.numobd"],
        );
        assert_eq!((code, out.as_str()), (0, "1\n1\n"));
        let (code, out, err) = lctl(&connector(), &["get_param", "no.such.param"]);
        assert_eq!((code, out.as_str()), (EXIT_FAILURE, ""));
        assert_eq!(
            err,
            "error: get_param: param_path 'no.such.param': No such file or directory\n"
        );
    }

    #[test]
    fn nids_and_ping() {
        let (code, out, _) = lctl(&connector(), &["list_nids"]);
        assert_eq!((code, out.as_str()), (0, "10.1.2.3@tcp\n"));
        let (code, out, err) = lctl(&connector(), &["ping", "127.0.0.1@tcp"]);
        assert_eq!((code, out.as_str()), (EXIT_FAILURE, ""));
        assert!(
            err.starts_with("lctl: failed to ping 127.0.0.1@tcp: "),
            "{err}"
        );
        let (code, _, _) = lctl(&connector(), &["ping", "127.0.0.1@tcp", "0"]);
        assert_eq!(code, EXIT_USAGE);
    }

    #[test]
    fn usage() {
        for args in [
            &[][..],
            &["frob"],
            &["get_param"],
            &["ping"],
            &["get_param", "-n", "-N", "x"],
        ] {
            let (code, _, err) = lctl(&connector(), args);
            assert_eq!(code, EXIT_USAGE, "{args:?}");
            assert!(!err.is_empty(), "{args:?} must explain itself");
        }
        let (code, out, _) = lctl(&connector(), &["--help"]);
        assert_eq!(code, 0);
        assert!(
            out.contains("get_param") && out.contains("list_nids"),
            "{out}"
        );
    }
}
