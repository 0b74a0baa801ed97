//! Where each record of one repository's runs lives under `$PRODIGY_HOME` (storage-format §3),
//! for the writers of `prodigy run`.
//!
//! Owns path construction only: every id joined onto a path is checked against the id grammar
//! ([`super::names`], safety R3) first, so no writer can be pointed outside its directory by a
//! hostile id. Never deletes, never prints.

use super::names::is_valid_id_bytes;
use crate::error::{Error, Result};
use std::path::{Path, PathBuf};

/// The storage root plus the repository name data is filed under (storage-format §2).
#[derive(Clone, Debug)]
pub struct Layout {
    root: PathBuf,
    repo: String,
}

/// `Ok(s)` when `s` fits the id grammar `^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`, else a fatal error
/// naming `what`.
pub fn checked<'a>(what: &str, s: &'a str) -> Result<&'a str> {
    if is_valid_id_bytes(s.as_bytes()) {
        Ok(s)
    } else {
        Err(Error::fatal(format!(
            "{what} `{s}` is not a valid id ([A-Za-z0-9][A-Za-z0-9._-]*, at most 128 characters)"
        )))
    }
}

impl Layout {
    /// A layout for `repo` under `root` (an absolute, existing directory). Errors: `repo` does not
    /// fit the id grammar.
    pub fn new(root: &Path, repo: &str) -> Result<Layout> {
        checked("repository name", repo)?;
        Ok(Layout {
            root: root.to_path_buf(),
            repo: repo.to_string(),
        })
    }

    /// The storage root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The repository name.
    pub fn repo(&self) -> &str {
        &self.repo
    }

    /// `sessions/{session_id}.json`.
    pub fn session(&self, session_id: &str) -> Result<PathBuf> {
        Ok(self
            .root
            .join("sessions")
            .join(format!("{}.json", checked("session id", session_id)?)))
    }

    /// `state/{repo}/mapreduce/jobs/{job_id}/`.
    pub fn job_dir(&self, job_id: &str) -> Result<PathBuf> {
        Ok(self
            .root
            .join("state")
            .join(&self.repo)
            .join("mapreduce")
            .join("jobs")
            .join(checked("job id", job_id)?))
    }

    /// `state/{repo}/mappings/{id}.json`.
    pub fn mapping(&self, id: &str) -> Result<PathBuf> {
        Ok(self
            .root
            .join("state")
            .join(&self.repo)
            .join("mappings")
            .join(format!("{}.json", checked("id", id)?)))
    }

    /// `events/{repo}/{job_id}/`.
    pub fn events_dir(&self, job_id: &str) -> Result<PathBuf> {
        Ok(self
            .root
            .join("events")
            .join(&self.repo)
            .join(checked("job id", job_id)?))
    }

    /// `dlq/{repo}/{job_id}/dlq-items.json`.
    pub fn dlq(&self, job_id: &str) -> Result<PathBuf> {
        Ok(self
            .root
            .join("dlq")
            .join(&self.repo)
            .join(checked("job id", job_id)?)
            .join("dlq-items.json"))
    }

    /// `logs/{repo}/{job_id}/`.
    pub fn logs_dir(&self, job_id: &str) -> Result<PathBuf> {
        Ok(self
            .root
            .join("logs")
            .join(&self.repo)
            .join(checked("job id", job_id)?))
    }

    /// `worktrees/{repo}/`.
    pub fn worktrees_dir(&self) -> PathBuf {
        self.root.join("worktrees").join(&self.repo)
    }

    /// `worktrees/{repo}/{session_id}/`.
    pub fn worktree(&self, session_id: &str) -> Result<PathBuf> {
        Ok(self
            .worktrees_dir()
            .join(checked("session id", session_id)?))
    }

    /// `worktrees/{repo}/{session_id}.agent-{fid}/`: where the worktree of a failed MapReduce
    /// agent is kept, beside its session's worktree and never inside it (run.md §4), so that no
    /// step in the session worktree can commit it as an embedded repository. See
    /// [`failed_agent_name`].
    pub fn failed_agent_worktree(&self, session_id: &str, fid: &str) -> Result<PathBuf> {
        checked("session id", session_id)?;
        Ok(self.worktrees_dir().join(checked(
            "worktree name",
            &failed_agent_name(session_id, fid),
        )?))
    }

    /// `resume_locks/{job_id}.lock`'s directory, `resume_locks/`.
    pub fn locks_dir(&self) -> PathBuf {
        self.root.join("resume_locks")
    }

    /// `orphaned_worktrees/{repo}/{job_id}.json`.
    pub fn orphans(&self, job_id: &str) -> Result<PathBuf> {
        Ok(self
            .root
            .join("orphaned_worktrees")
            .join(&self.repo)
            .join(format!("{}.json", checked("job id", job_id)?)))
    }
}

/// Open the directory `path`, which lies under the storage root `root` (canonical), by walking
/// down from the root one component at a time without following a symlink (safety R1): what a
/// run deletes below it cannot be redirected outside the root by a symlink planted on the way.
///
/// Errors: `InvalidInput` when `path` is not below `root` or has a `..`/`.` component; the
/// errors of [`super::fsops::Dir::open_path`] (a symlink on the way is `ELOOP`/`ENOTDIR`).
pub fn open_beneath(root: &Path, path: &Path) -> std::io::Result<super::fsops::Dir> {
    use std::path::Component;
    let bad = || {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not below the storage root",
        )
    };
    let rel = path.strip_prefix(root).map_err(|_| bad())?;
    let mut comps = Vec::new();
    for c in rel.components() {
        match c {
            Component::Normal(s) => comps.push(s),
            _ => return Err(bad()),
        }
    }
    super::fsops::Dir::open_root(root)?.open_path(&comps)
}

/// `create_dir_all` with the path in the error.
pub fn ensure_dir(p: &Path) -> Result<()> {
    std::fs::create_dir_all(p).map_err(|e| Error::io("create directory", p, &e))
}

/// Write `bytes` to `path` crash-safely ([`super::atomic::write_atomic`]), creating the parent
/// directory first. Errors name the path.
pub fn write_record(path: &Path, bytes: &[u8]) -> Result<()> {
    if let Some(d) = path.parent() {
        ensure_dir(d)?;
    }
    super::atomic::write_atomic(path, bytes).map_err(|e| Error::io("write", path, &e))
}

/// What joins a session id and an agent's name in the name of a failed agent's worktree.
pub const FAILED_AGENT_SEP: &str = ".agent-";

/// The directory name of a failed agent's worktree: `{session_id}.agent-{fid}` (`fid` is the
/// item's file id, the `agent-{fid}` of its nested worktree), or, when that would not fit the
/// 128-byte name grammar, `{session_id}.agent-h{16 hex}` (FNV-1a 64 of `fid`).
pub fn failed_agent_name(session_id: &str, fid: &str) -> String {
    let name = format!("{session_id}{FAILED_AGENT_SEP}{fid}");
    if super::names::is_valid_id_bytes(name.as_bytes()) {
        return name;
    }
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in fid.as_bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{session_id}{FAILED_AGENT_SEP}h{h:016x}")
}

/// The session ids a worktree directory `name` may be the failed agent worktree of (see
/// [`failed_agent_name`]): the part before each `.agent-` in it, longest first. A caller takes
/// the first that is a session it knows, matched exactly (safety R3).
pub fn failed_agent_owners(name: &str) -> Vec<&str> {
    let mut v: Vec<&str> = name
        .match_indices(FAILED_AGENT_SEP)
        .map(|(i, _)| &name[..i])
        .filter(|s| super::names::is_valid_id_bytes(s.as_bytes()))
        .collect();
    v.reverse();
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_outside_the_grammar_are_refused_before_any_path_is_built() {
        let l = Layout::new(Path::new("/r"), "web").unwrap();
        assert_eq!(
            l.session("session-1").unwrap(),
            PathBuf::from("/r/sessions/session-1.json")
        );
        assert_eq!(
            l.job_dir("mapreduce-1").unwrap(),
            PathBuf::from("/r/state/web/mapreduce/jobs/mapreduce-1")
        );
        for bad in ["", "..", "../x", "a/b", ".hidden"] {
            assert!(l.session(bad).is_err(), "{bad}");
            assert!(l.dlq(bad).is_err(), "{bad}");
        }
        assert!(Layout::new(Path::new("/r"), "a/b").is_err());
    }

    #[test]
    fn a_failed_agent_worktree_is_named_beside_its_session_and_leads_back_to_it() {
        let l = Layout::new(Path::new("/r"), "web").unwrap();
        let sid = "session-mapreduce-20261206T200702-abcdef";
        assert_eq!(
            l.failed_agent_worktree(sid, "it3").unwrap(),
            PathBuf::from(format!("/r/worktrees/web/{sid}.agent-it3"))
        );
        let long = "x".repeat(100);
        let n = failed_agent_name(sid, &long);
        assert!(crate::store::names::is_valid_id_bytes(n.as_bytes()), "{n}");
        assert_eq!(n.len(), sid.len() + ".agent-h".len() + 16);
        assert_ne!(n, failed_agent_name(sid, &"y".repeat(100)));
        assert_eq!(failed_agent_owners(&n), [sid]);
        assert_eq!(
            failed_agent_owners("s.agent-a.agent-b"),
            ["s.agent-a", "s"],
            "longest first"
        );
        assert!(failed_agent_owners(sid).is_empty());
        assert!(failed_agent_owners(".agent-x").is_empty());
        assert!(l.failed_agent_worktree("../x", "a").is_err());
    }

    #[cfg(unix)]
    #[test]
    fn open_beneath_walks_down_and_refuses_a_symlink_on_the_way() {
        let d = std::env::temp_dir().join(format!("prodigy-beneath-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(d.join("worktrees/web")).unwrap();
        std::fs::create_dir_all(d.join("elsewhere")).unwrap();
        std::os::unix::fs::symlink(d.join("elsewhere"), d.join("worktrees/link")).unwrap();
        let root = d.canonicalize().unwrap();
        assert!(open_beneath(&root, &root.join("worktrees/web")).is_ok());
        assert!(open_beneath(&root, &root.join("worktrees/link")).is_err());
        assert!(open_beneath(&root, &root.join("worktrees/../elsewhere")).is_err());
        assert!(open_beneath(&root, Path::new("/tmp")).is_err());
        std::fs::remove_dir_all(&d).unwrap();
    }
}
