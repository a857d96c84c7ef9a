//! The tools' error type and how each error maps to an exit status.
//!
//! Usage errors exit with 2 (as clap does); everything else that fails exits with 1.

use std::io;
use std::path::{Path, PathBuf};

/// Exit status of a command that succeeded.
pub const EXIT_OK: i32 = 0;
/// Exit status of a command that ran and failed.
pub const EXIT_FAILURE: i32 = 1;
/// Exit status of a command line that could not be understood.
pub const EXIT_USAGE: i32 = 2;

#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    /// The command line is wrong in a way the parser could not catch.
    #[error("{0}")]
    Usage(String),
    /// A system call on `path` failed.
    #[error("{op} '{path}': {message}", path = path.display(), message = describe(source))]
    Io {
        op: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    /// The path is not inside a Sheen mount (no `lustre.lov` xattr there).
    #[error("'{}' is not on a Sheen filesystem", .0.display())]
    NotSheen(PathBuf),
    /// The `lustre.lov` value could not be decoded.
    #[error("'{path}': invalid layout: {reason}", path = path.display())]
    BadLayout { path: PathBuf, reason: String },
    /// `setstripe` on a file that already has its objects.
    #[error("setstripe error for '{}': stripe already set", .0.display())]
    StripeAlreadySet(PathBuf),
    /// No Sheen mount matches the path (or there is none at all).
    #[error("{0}")]
    NoMount(String),
    /// Reaching the filesystem's servers failed.
    #[error("cannot reach filesystem {spec}: {reason}")]
    Connect { spec: String, reason: String },
    /// Anything else, already phrased for the user.
    #[error("{0}")]
    Failed(String),
}

impl ToolError {
    pub fn io(op: &'static str, path: &Path, source: io::Error) -> ToolError {
        ToolError::Io {
            op,
            path: path.to_path_buf(),
            source,
        }
    }

    /// The process exit status for this error.
    pub fn exit_code(&self) -> i32 {
        match self {
            ToolError::Usage(_) => EXIT_USAGE,
            _ => EXIT_FAILURE,
        }
    }
}

/// An I/O error as C's `strerror` would say it: without Rust's ` (os error N)` suffix.
pub fn describe(e: &io::Error) -> String {
    let text = e.to_string();
    match (e.raw_os_error(), text.rfind(" (os error ")) {
        (Some(_), Some(cut)) => text[..cut].to_string(),
        _ => text,
    }
}

/// Whether an I/O error says "this filesystem has no such xattr namespace".
pub fn is_not_supported(e: &io::Error) -> bool {
    e.raw_os_error() == Some(libc::ENOTSUP) || e.raw_os_error() == Some(libc::EOPNOTSUPP)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes() {
        assert_eq!(ToolError::Usage("x".into()).exit_code(), EXIT_USAGE);
        assert_eq!(ToolError::Failed("x".into()).exit_code(), EXIT_FAILURE);
    }

    #[test]
    fn messages() {
        let e = ToolError::StripeAlreadySet(PathBuf::from("/mnt/f"));
        assert_eq!(
            e.to_string(),
            "setstripe error for '/mnt/f': stripe already set"
        );
        let e = ToolError::io(
            "cannot open",
            Path::new("/x"),
            io::Error::from_raw_os_error(2),
        );
        assert!(e
            .to_string()
            .starts_with("cannot open '/x': No such file or directory"));
        let e = ToolError::NotSheen(PathBuf::from("/tmp"));
        assert_eq!(e.to_string(), "'/tmp' is not on a Sheen filesystem");
    }
}
