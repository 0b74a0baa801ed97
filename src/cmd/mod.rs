//! One module per command. Commands print; the engine and the store never do.

/// `prodigy archive ls|restore`.
pub mod archive;
/// `prodigy checkpoints ls|verify`.
pub mod checkpoints;
/// `prodigy clean` and `prodigy worktree clean`.
pub mod clean;
/// `prodigy dlq ls|show`.
pub mod dlq;
/// `prodigy events ls|show|follow`.
pub mod events;
/// `prodigy run`.
pub mod run;
/// `prodigy sessions ls|show|rm`.
pub mod sessions;
/// `prodigy stats`.
pub mod stats;
/// Output helpers shared by the inspection commands: table on a terminal, TSV otherwise.
pub mod table;
/// `prodigy validate`.
pub mod validate;
/// `prodigy worktree ls|clean-orphaned`.
pub mod worktree;

use crate::clean::Scope;
use crate::cli::ScopeArg;
use crate::error::{Error, Result};
use crate::git::Git;
use crate::store::{self, fsops::Dir};
use std::ffi::OsStr;
use std::io::Write;
use std::path::PathBuf;

/// The storage root the environment names, and, when something is stored there and the root is
/// safe (safety R1), its canonical path and an open handle. `name` prefixes errors.
pub fn open_store(name: &str) -> Result<(PathBuf, Option<(PathBuf, Dir)>)> {
    let home = std::env::var_os("HOME");
    let wanted = store::root_path(std::env::var_os("PRODIGY_HOME").as_deref(), home.as_deref())?;
    let home_path = home.map(PathBuf::from);
    let Some(root_path) =
        store::resolve_root(&wanted, home_path.as_deref()).map_err(|e| prefix(name, e))?
    else {
        return Ok((wanted, None));
    };
    let root =
        Dir::open_root(&root_path).map_err(|e| Error::io("open storage root", &root_path, &e))?;
    Ok((wanted, Some((root_path, root))))
}

/// Dispatch an inspection subcommand.
pub fn inspect(sub: &'static crate::cli::Sub, a: &crate::cli::Args) -> Result<crate::error::Exit> {
    match sub.words {
        ["stats"] => stats::run(a),
        ["sessions", "ls"] => sessions::ls(a),
        ["sessions", "show"] => sessions::show(a),
        ["sessions", "rm"] => sessions::rm(a),
        ["events", "ls"] => events::ls(a),
        ["events", "show"] => events::show(a),
        ["events", "follow"] => events::follow(a),
        ["dlq", "ls"] => dlq::ls(a),
        ["dlq", "show"] => dlq::show(a),
        ["dlq", "retry"] => dlq::retry(a),
        ["checkpoints", "ls"] => checkpoints::ls(a),
        ["archive", "ls"] => archive::ls(a),
        ["archive", "restore"] => archive::restore(a),
        ["checkpoints", "verify"] => checkpoints::verify(a),
        _ => unreachable!("every entry of cli::SUBS is dispatched"),
    }
}

/// Prodigy 0.4.4's `$HOME/.prodigy` (where it keeps worktrees, logs and the orphan registry
/// whatever `PRODIGY_HOME` says), when it is a safe root and not `root`: its path and handle.
pub fn legacy_home(root: Option<&std::path::Path>) -> Option<(PathBuf, Dir)> {
    let home = std::env::var_os("HOME").map(PathBuf::from)?;
    let legacy = store::resolve_root(&home.join(".prodigy"), Some(&home)).ok()??;
    if root.is_some_and(|r| same_file::is_same_file(&legacy, r).unwrap_or(false)) {
        return None;
    }
    let dir = Dir::open_root(&legacy).ok()?;
    Some((legacy, dir))
}

/// Write `text` to stdout. A closed pipe or full disk is an error, never a panic.
pub fn print(text: &str) -> Result<()> {
    print_with(|o| o.write_str(text))
}

/// Write text produced by `f` to stdout as it is made, through a buffer (a long listing is
/// never held whole in memory). Errors as [`print`].
pub fn print_with(f: impl FnOnce(&mut dyn std::fmt::Write) -> std::fmt::Result) -> Result<()> {
    struct Out<W: Write> {
        w: W,
        err: Option<std::io::Error>,
    }
    impl<W: Write> std::fmt::Write for Out<W> {
        fn write_str(&mut self, s: &str) -> std::fmt::Result {
            let masked = match crate::mask::mask_record(s.as_bytes()) {
                std::borrow::Cow::Borrowed(_) => std::borrow::Cow::Borrowed(s),
                std::borrow::Cow::Owned(b) => String::from_utf8_lossy(&b).into_owned().into(),
            };
            let s = crate::store::names::terminal_safe(&masked);
            self.w.write_all(s.as_bytes()).map_err(|e| {
                self.err.get_or_insert(e);
                std::fmt::Error
            })
        }
    }
    let mut out = Out {
        // 64 KiB: a dry run's listing runs to tens of megabytes (issue 25).
        w: std::io::BufWriter::with_capacity(64 << 10, std::io::stdout().lock()),
        err: None,
    };
    let r = f(&mut out);
    let flushed = out.w.flush();
    match (out.err, r, flushed) {
        (Some(e), _, _) | (None, _, Err(e)) => Err(Error::fatal(format!(
            "cannot write output: {}",
            crate::error::describe_io(&e)
        ))),
        (None, Err(_), Ok(())) => Err(Error::fatal("cannot format output".to_string())),
        (None, Ok(()), Ok(())) => Ok(()),
    }
}

pub(crate) fn prefix(name: &str, e: Error) -> Error {
    let msg = format!("{name}: {e}");
    match e.kind() {
        crate::error::ErrorKind::Usage => Error::usage(msg),
        crate::error::ErrorKind::Refused => Error::refused(msg),
        crate::error::ErrorKind::Fatal => Error::fatal(msg),
    }
}

/// Scope from the flags; by default the repository around the current directory (its main
/// working tree's name, storage-format §2), else every repository.
pub(crate) fn resolve_scope(arg: &ScopeArg, git: &Git) -> (Scope, String) {
    match arg {
        ScopeArg::AllRepos => (Scope::All, "all repositories".into()),
        ScopeArg::Repo(r) => (Scope::Repo(r.clone()), format!("repository {r}")),
        ScopeArg::Default => match current_repo(git) {
            Some(r) => (
                Scope::Repo(r.clone()),
                format!("repository {r} (the current directory's; --all-repos for all)"),
            ),
            None => (
                Scope::All,
                "all repositories (not inside a git repository)".into(),
            ),
        },
    }
}

fn current_repo(git: &Git) -> Option<String> {
    let cwd = std::env::current_dir().ok()?;
    let out = git
        .run(
            Some(&cwd),
            &[
                OsStr::new("rev-parse"),
                OsStr::new("--path-format=absolute"),
                OsStr::new("--git-common-dir"),
            ],
        )
        .ok()?;
    let common = PathBuf::from(String::from_utf8_lossy(&out).trim());
    let main = if common.file_name() == Some(OsStr::new(".git")) {
        common.parent()?.to_path_buf()
    } else {
        common
    };
    let name = main.file_name()?.to_str()?;
    let name = name.strip_suffix(".git").unwrap_or(name);
    store::names::is_valid_id_bytes(name.as_bytes()).then(|| name.to_string())
}
