//! Owns `$PRODIGY_HOME`: where it is, whether it is safe to work on, and its layout.
//!
//! Never prints and never reads argv. Submodules: [`names`] (the id grammar), [`fsops`] (the only
//! code that deletes files), [`records`] (typed file formats), [`atomic`] (crash-safe writes),
//! [`lock`] (resume locks and the clean lock), [`layout`] (where a run's records go) and
//! [`journal`] (the writers of a run's records).

pub mod archive;
pub mod atomic;
pub mod fsops;
pub mod gz;
pub mod journal;
pub mod layout;
pub mod lock;
pub mod names;
pub mod records;

use crate::error::{Error, Result};
use std::path::{Path, PathBuf};

/// The six storage types of Spec 135 (seed 002), in the order a clean processes them, with the
/// session records last so that an owner goes after everything it owns (safety §1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum StorageType {
    /// `events/{repo}/{job_id}/events-*.jsonl`.
    Events,
    /// `logs/{repo}/…` and 0.4.4's `logs/claude-streaming/`.
    Logs,
    /// `dlq/{repo}/{job_id}/`.
    Dlq,
    /// `state/{repo}/mapreduce/jobs/{job_id}/`, mappings, resume locks, 0.4.4 `state/{session}/`.
    State,
    /// `worktrees/{repo}/{name}/`.
    Worktrees,
    /// `sessions/{session_id}.json`.
    Sessions,
}

impl StorageType {
    /// Every type, in processing order.
    pub const ALL: [StorageType; 6] = [
        StorageType::Events,
        StorageType::Logs,
        StorageType::Dlq,
        StorageType::State,
        StorageType::Worktrees,
        StorageType::Sessions,
    ];

    /// The flag / word naming the type (`--events`, `clean events`).
    pub fn word(self) -> &'static str {
        match self {
            StorageType::Events => "events",
            StorageType::Logs => "logs",
            StorageType::Dlq => "dlq",
            StorageType::State => "state",
            StorageType::Worktrees => "worktrees",
            StorageType::Sessions => "sessions",
        }
    }

    /// Inverse of [`StorageType::word`].
    pub fn from_word(w: &str) -> Option<StorageType> {
        StorageType::ALL.into_iter().find(|t| t.word() == w)
    }

    /// Default retention in seconds (Spec 135, "Default Retention Periods"): worktrees 7d,
    /// sessions 30d, logs 7d, state 30d, events 14d, dlq 30d.
    pub fn default_retention(self) -> u64 {
        const DAY: u64 = 86_400;
        match self {
            StorageType::Worktrees | StorageType::Logs => 7 * DAY,
            StorageType::Events => 14 * DAY,
            StorageType::Sessions | StorageType::State | StorageType::Dlq => 30 * DAY,
        }
    }

    /// The top-level directory holding this type.
    pub fn dir(self) -> &'static str {
        self.word()
    }
}

/// Name of the audit log at the root: one JSON line per removal or failure. `clean` never
/// deletes it; it is rotated to `clean-audit.jsonl.1` past [`AUDIT_LIMIT`] bytes.
pub const AUDIT_LOG: &str = "clean-audit.jsonl";
/// Size bound of the audit log, bytes.
pub const AUDIT_LIMIT: u64 = 4 << 20;
/// Directory at the root where items are renamed before they are deleted, so a crash mid-delete
/// leaves a state the next run finishes (safety R5).
pub const TRASH_DIR: &str = ".trash";
/// The global clean lock, inside `resume_locks/` (design card: lock files live there). Its name
/// starts with a dot so it can never be mistaken for a job's lock.
pub const CLEAN_LOCK: &str = ".clean.lock";

/// How long a resume lock written by another host counts as live, seconds (storage-format §4.6:
/// its process cannot be checked from here). 24 hours.
pub const LOCK_LEASE: i64 = 24 * 3600;

/// [`LOCK_LEASE`]; a function so tests and a future option can change it in one place.
pub fn lock_lease() -> i64 {
    LOCK_LEASE
}

/// Where the storage root is, before any safety check (storage-format §1): `$PRODIGY_HOME` if
/// set (must be non-empty and absolute), else `$HOME/.prodigy`.
///
/// Errors: usage error for an empty or relative `PRODIGY_HOME`, or when neither it nor an
/// absolute `HOME` is set.
pub fn root_path(
    prodigy_home: Option<&std::ffi::OsStr>,
    home: Option<&std::ffi::OsStr>,
) -> Result<PathBuf> {
    if let Some(p) = prodigy_home {
        if p.is_empty() {
            return Err(Error::usage(
                "PRODIGY_HOME is set but empty; set it to an absolute path or unset it",
            ));
        }
        let p = Path::new(p);
        if !p.is_absolute() {
            return Err(Error::usage(format!(
                "PRODIGY_HOME must be an absolute path, not `{}`",
                p.display()
            )));
        }
        return Ok(p.to_path_buf());
    }
    match home {
        Some(h) if Path::new(h).is_absolute() => Ok(Path::new(h).join(".prodigy")),
        _ => Err(Error::usage(
            "neither PRODIGY_HOME nor an absolute HOME is set; set PRODIGY_HOME",
        )),
    }
}

/// Resolve the root once and refuse unsafe ones (safety R1): `/`, `$HOME` itself, not a
/// directory, or not owned by the effective user. Returns `Ok(None)` when the root does not exist
/// (nothing is stored). The returned path is canonical; every later access goes fd-relative from
/// it.
pub fn resolve_root(path: &Path, home: Option<&Path>) -> Result<Option<PathBuf>> {
    let canon = match std::fs::canonicalize(path) {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io("resolve storage root", path, &e)),
    };
    let refuse = |why: &str| {
        Err(Error::refused(format!(
            "refusing to use `{}` (resolved to `{}`) as the storage root: {why}; set PRODIGY_HOME to Prodigy's own directory",
            path.display(),
            canon.display()
        )))
    };
    if canon.parent().is_none() {
        return refuse("it is the filesystem root");
    }
    let meta =
        std::fs::metadata(&canon).map_err(|e| Error::io("inspect storage root", &canon, &e))?;
    if !meta.is_dir() {
        return refuse("it is not a directory");
    }
    if let Some(h) = home {
        if same_file::is_same_file(&canon, h).unwrap_or(false) {
            return refuse("it is your home directory itself");
        }
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        // SAFETY: geteuid has no preconditions and cannot fail.
        let euid = unsafe { libc::geteuid() };
        if meta.uid() != euid {
            return refuse(&format!(
                "it is owned by uid {}, not by you (uid {euid})",
                meta.uid()
            ));
        }
    }
    Ok(Some(canon))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsStr;

    #[test]
    fn root_from_env_requires_absolute() {
        assert!(root_path(Some(OsStr::new("")), None).is_err());
        assert!(root_path(Some(OsStr::new("rel/dir")), None).is_err());
        assert_eq!(
            root_path(Some(OsStr::new("/x/y")), None).unwrap(),
            PathBuf::from("/x/y")
        );
        assert_eq!(
            root_path(None, Some(OsStr::new("/home/u"))).unwrap(),
            PathBuf::from("/home/u/.prodigy")
        );
        assert!(root_path(None, None).is_err());
    }

    #[test]
    fn resolve_refuses_filesystem_root_and_home() {
        assert_eq!(
            resolve_root(Path::new("/"), None).unwrap_err().exit(),
            crate::error::Exit::Refused
        );
        let d = std::env::temp_dir().join(format!("prodigy-root-test-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        assert_eq!(
            resolve_root(&d, Some(&d)).unwrap_err().exit(),
            crate::error::Exit::Refused
        );
        assert!(resolve_root(&d, None).unwrap().is_some());
        assert!(resolve_root(&d.join("missing"), None).unwrap().is_none());
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn retention_defaults_follow_spec_135() {
        assert_eq!(StorageType::Worktrees.default_retention(), 7 * 86_400);
        assert_eq!(StorageType::Events.default_retention(), 14 * 86_400);
        assert_eq!(StorageType::Dlq.default_retention(), 30 * 86_400);
    }
}
