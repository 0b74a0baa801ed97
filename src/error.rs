//! Errors and exit codes.
//!
//! Owns the one table of exit codes (printed by `--help` and the man page) and the small
//! [`Error`] type every fallible operation returns. Messages follow the house style: lowercase,
//! one line, the path in backticks, outermost context first, a hint where there is one.

use std::fmt;
use std::io;
use std::path::Path;

/// Process exit status. Defined once here; `--help` prints [`EXIT_TABLE`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// Success, or nothing to do (including "another clean is running").
    Ok = 0,
    /// The run finished, but some items failed; each failure was reported.
    Failures = 1,
    /// The command line or the environment (`PRODIGY_HOME`) is wrong.
    Usage = 2,
    /// Refused: confirmation needed (no terminal, no `--force`) or an unsafe root.
    Refused = 3,
    /// `run` interrupted by SIGINT (the session is Paused and resumable).
    Interrupted = 130,
    /// `run` stopped by SIGTERM (the session is Paused and resumable).
    Terminated = 143,
}

/// `(code, meaning)` rows, in order, for help text and man pages.
pub const EXIT_TABLE: &[(u8, &str)] = &[
    (
        0,
        "success, or nothing to do (also when another clean is already running)",
    ),
    (
        1,
        "finished, but some items, steps or merges failed (each is reported)",
    ),
    (
        2,
        "usage error: bad option or value, bad PRODIGY_HOME, invalid workflow",
    ),
    (
        3,
        "refused: no terminal and no --force, unsafe root, dirty repo, lock held",
    ),
    (
        130,
        "run interrupted by SIGINT (the session is Paused, resumable)",
    ),
    (
        143,
        "run stopped by SIGTERM (the session is Paused, resumable)",
    ),
];

/// What kind of failure an [`Error`] is; decides the exit code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// Bad arguments or environment.
    Usage,
    /// Refused for safety (unsafe root, confirmation needed).
    Refused,
    /// An I/O or subprocess failure that stops the command.
    Fatal,
}

/// A command-stopping error: a kind and a complete, user-facing message.
#[derive(Debug)]
pub struct Error {
    kind: ErrorKind,
    message: String,
}

impl Error {
    /// A usage error (exit 2).
    pub fn usage(message: impl Into<String>) -> Error {
        Error {
            kind: ErrorKind::Usage,
            message: message.into(),
        }
    }
    /// A refusal (exit 3).
    pub fn refused(message: impl Into<String>) -> Error {
        Error {
            kind: ErrorKind::Refused,
            message: message.into(),
        }
    }
    /// A fatal error (exit 1).
    pub fn fatal(message: impl Into<String>) -> Error {
        Error {
            kind: ErrorKind::Fatal,
            message: message.into(),
        }
    }
    /// "failed to {action} `{path}`: {io error}" as a fatal error.
    pub fn io(action: &str, path: &Path, err: &io::Error) -> Error {
        Error::fatal(format!(
            "failed to {action} `{}`: {}",
            path.display(),
            describe_io(err)
        ))
    }
    /// The error's kind.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }
    /// The exit code this error maps to.
    pub fn exit(&self) -> Exit {
        match self.kind {
            ErrorKind::Usage => Exit::Usage,
            ErrorKind::Refused => Exit::Refused,
            ErrorKind::Fatal => Exit::Failures,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

/// An I/O error as a short phrase without Rust's "(os error N)" suffix.
pub fn describe_io(err: &io::Error) -> String {
    let s = err.to_string();
    match s.find(" (os error") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

/// Crate-wide result.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Write one line to stderr: `line` made [`terminal_safe`](crate::store::names::terminal_safe)
/// (no control character of an input quoted in it reaches the terminal) plus `\n`, in one
/// write. A failed write is ignored: stderr is the last place to report anything.
pub fn eprint_line(line: &str) {
    let line = crate::mask::mask_str(line);
    let mut text = crate::store::names::terminal_safe(&line).into_owned();
    text.push('\n');
    let _ = io::Write::write_all(&mut io::stderr(), text.as_bytes());
}
