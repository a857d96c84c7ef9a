//! Lustre's `lfs` and `lctl` for Sheen: Lustre's command syntax, Lustre's output formats.
//!
//! How each command reaches the filesystem:
//! - layouts (`lfs getstripe`, `lfs setstripe`) go through the FUSE mount as the xattr
//!   `lustre.lov`, as on Lustre ([`fsops`]);
//! - target usage and configuration (`lfs df`, `lfs osts`, `lfs mdts`, `lctl dl`,
//!   `lctl get_param`) come from a native client the tool mounts itself, from the spec of the
//!   FUSE mount found in `/proc/self/mountinfo` ([`mounts`], [`source`], [`native`]);
//! - `lctl ping` and `lctl list_nids` use the host's network ([`net`]).
//!
//! The binaries are thin: `src/bin/*.rs` build an [`cli::Env`] of real implementations and
//! call [`lfs::run`] or [`lctl::run`]; everything else is tested here against fakes.

pub mod cli;
pub mod devices;
pub mod df;
pub mod error;
pub mod fsops;
pub mod getstripe;
pub mod lctl;
pub mod lfs;
pub use sheen_client::mounts;
pub mod native;
pub mod net;
pub mod setstripe;
pub mod size;
pub mod source;

use std::ffi::OsString;

/// Runs a tool's `run` with the real filesystem, network, mounts and client, on this
/// process' arguments and standard streams; returns the exit status.
pub fn run_on_host(run: fn(&[OsString], &mut cli::Env<'_>) -> i32) -> i32 {
    let argv: Vec<OsString> = std::env::args_os().collect();
    let mountinfo = || std::fs::read_to_string("/proc/self/mountinfo");
    let (stdout, stderr) = (std::io::stdout(), std::io::stderr());
    let (mut out, mut err) = (stdout.lock(), stderr.lock());
    let mut env = cli::Env {
        fs: &fsops::LocalFs,
        connector: &native::NativeConnector,
        mountinfo: &mountinfo,
        net: &net::HostNet,
        out: &mut out,
        err: &mut err,
    };
    let code = run(&argv, &mut env);
    let _ignored = std::io::Write::flush(&mut out);
    code
}
