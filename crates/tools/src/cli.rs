//! What the commands run against, and the pieces `lfs` and `lctl` share: parsing the
//! command line with clap (usage errors exit 2), finding mounts, connecting.

use std::ffi::OsString;
use std::io::{self, Write};
use std::path::Path;

use crate::error::{ToolError, EXIT_FAILURE, EXIT_OK};
use crate::fsops::FsOps;
use crate::mounts::{mount_for, sheen_mounts, SheenMount};
use crate::net::NetOps;
use crate::source::Connector;

/// Everything a command touches outside itself; tests pass fakes.
pub struct Env<'a> {
    pub fs: &'a dyn FsOps,
    pub connector: &'a dyn Connector,
    /// Returns the text of `/proc/self/mountinfo`.
    pub mountinfo: &'a dyn Fn() -> io::Result<String>,
    pub net: &'a dyn NetOps,
    pub out: &'a mut dyn Write,
    pub err: &'a mut dyn Write,
}

/// Parses `argv` (program name first). On `--help`/`--version` or a usage error, prints
/// clap's text and returns the exit status to use (0, or 2 for usage errors).
pub fn parse_args<T: clap::Parser>(argv: &[OsString], env: &mut Env<'_>) -> Result<T, i32> {
    match T::try_parse_from(argv) {
        Ok(args) => Ok(args),
        Err(e) => {
            let text = e.render().to_string();
            let sink: &mut dyn Write = if e.use_stderr() {
                &mut *env.err
            } else {
                &mut *env.out
            };
            // Nothing more useful to do when even stderr cannot be written.
            let _ignored = sink.write_all(text.as_bytes());
            Err(e.exit_code())
        }
    }
}

/// Prints `prog: error` to stderr and returns the error's exit status.
pub fn report(env: &mut Env<'_>, prog: &str, e: &ToolError) -> i32 {
    let _ignored = writeln!(env.err, "{prog}: {e}");
    e.exit_code()
}

/// Exit status for a run that reported its own errors along the way.
pub fn status(failed: bool) -> i32 {
    if failed {
        EXIT_FAILURE
    } else {
        EXIT_OK
    }
}

/// Writes command output; a closed stdout (say `| head`) ends the command quietly.
pub fn emit(env: &mut Env<'_>, text: &str) -> Result<(), ToolError> {
    env.out.write_all(text.as_bytes()).map_err(|e| {
        ToolError::Failed(format!(
            "cannot write output: {}",
            crate::error::describe(&e)
        ))
    })
}

/// The Sheen mounts of this process' mount namespace.
pub fn all_mounts(env: &Env<'_>) -> Result<Vec<SheenMount>, ToolError> {
    let text =
        (env.mountinfo)().map_err(|e| ToolError::io("cannot read", Path::new("mountinfo"), e))?;
    Ok(sheen_mounts(&text))
}

/// The mounts a command about "PATH, or every mount" works on.
pub fn select_mounts(env: &Env<'_>, path: Option<&Path>) -> Result<Vec<SheenMount>, ToolError> {
    let mounts = all_mounts(env)?;
    match path {
        Some(p) => {
            let real = env
                .fs
                .canonicalize(p)
                .map_err(|e| ToolError::io("invalid path", p, e))?;
            mount_for(&mounts, &real)
                .cloned()
                .map(|m| vec![m])
                .ok_or_else(|| {
                    ToolError::NoMount(format!("{} isn't mounted on Sheen", p.display()))
                })
        }
        None if mounts.is_empty() => {
            Err(ToolError::NoMount("no Sheen filesystem is mounted".into()))
        }
        None => Ok(mounts),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::net::NetOps;
    use crate::setstripe::tests::FakeFs;
    use crate::source::tests::FakeConnector;
    use std::net::IpAddr;
    use std::time::Duration;

    pub(crate) struct NoNet;

    impl NetOps for NoNet {
        fn interface_addrs(&self) -> io::Result<Vec<(IpAddr, bool)>> {
            Ok(vec![
                ("127.0.0.1".parse().expect("ip"), true),
                ("10.1.2.3".parse().expect("ip"), false),
            ])
        }
        fn obd_ping(&self, _nid: &sheen_wire::Nid, _timeout: Duration) -> io::Result<()> {
            Err(io::Error::from_raw_os_error(libc::ECONNREFUSED))
        }
    }

    /// Runs one command against fakes and returns (exit status, stdout, stderr).
    pub(crate) fn run_with(
        fs: &FakeFs,
        connector: &FakeConnector,
        mountinfo: &str,
        run: impl FnOnce(&mut Env<'_>) -> i32,
    ) -> (i32, String, String) {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let text = mountinfo.to_string();
        let mountinfo_fn = move || Ok(text.clone());
        let mut env = Env {
            fs,
            connector,
            mountinfo: &mountinfo_fn,
            net: &NoNet,
            out: &mut out,
            err: &mut err,
        };
        let code = run(&mut env);
        (
            code,
            String::from_utf8(out).expect("utf8"),
            String::from_utf8(err).expect("utf8"),
        )
    }
}
