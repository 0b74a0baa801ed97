//! Worktrees and merges of a run (run.md §4), through [`crate::git`].
//!
//! The session worktree is `worktrees/{repo}/{session_id}/` on `prodigy-{session_id}`, from the
//! user's HEAD; MapReduce agents are nested in it, `agent-{item}/` on
//! `prodigy-agent-{job_id}-{item}`, from the parent's HEAD when the agent starts. Merges are
//! `git merge --no-ff`, one at a time; a failed merge is aborted so the parent is never left
//! mid-merge. Worktree directories are removed through [`crate::store::fsops`] (never
//! `git worktree remove`), then git's bookkeeping is pruned. Nothing here touches the user's
//! checkout except the final merge, and only when it is on the original branch and clean.

use crate::error::{Error, Result};
use crate::git::{Git, GitError};
use std::ffi::OsStr;
use std::path::{Path, PathBuf};

/// The repository a run works in.
#[derive(Clone, Debug)]
pub struct Repo {
    /// Absolute path of the main working tree (storage-format §2).
    pub main: PathBuf,
    /// The common git directory.
    pub common: PathBuf,
    /// The repository name data is filed under: the main working tree's directory name.
    pub name: String,
    /// The working tree the command was started in (main or linked).
    pub checkout: PathBuf,
}

fn s(x: &str) -> &OsStr {
    OsStr::new(x)
}

/// Run git in `cwd` and return trimmed stdout.
pub fn git_out(git: &Git, cwd: &Path, args: &[&str]) -> std::result::Result<String, GitError> {
    let a: Vec<&OsStr> = args.iter().map(|x| s(x)).collect();
    git.run(Some(cwd), &a)
        .map(|o| String::from_utf8_lossy(&o).trim().to_string())
}

fn fatal(e: GitError) -> Error {
    Error::fatal(e.to_string())
}

/// Find the repository holding `dir` (run.md §1). Errors: not inside a git work tree (exit 2,
/// with the hint to use `--path`); a bare repository.
pub fn find_repo(git: &Git, dir: &Path) -> Result<Repo> {
    let top = git_out(git, dir, &["rev-parse", "--show-toplevel"]).map_err(|_| {
        Error::usage(format!(
            "`{}` is not inside a git work tree; run prodigy from your repository or give --path REPO",
            dir.display()
        ))
    })?;
    let common = git_out(
        git,
        dir,
        &["rev-parse", "--path-format=absolute", "--git-common-dir"],
    )
    .map_err(fatal)?;
    let common = PathBuf::from(common);
    let main = if common.file_name() == Some(OsStr::new(".git")) {
        common.parent().map(Path::to_path_buf).unwrap_or_default()
    } else {
        PathBuf::from(&top)
    };
    let name = main
        .file_name()
        .and_then(OsStr::to_str)
        .unwrap_or("")
        .to_string();
    Ok(Repo {
        main,
        common,
        name,
        checkout: PathBuf::from(top),
    })
}

/// Is a merge, rebase, cherry-pick or revert in progress in the working tree at `wt`?
/// Returns the name of the operation.
pub fn operation_in_progress(git: &Git, wt: &Path) -> Option<&'static str> {
    for (file, what) in [
        ("MERGE_HEAD", "a merge"),
        ("rebase-merge", "a rebase"),
        ("rebase-apply", "a rebase"),
        ("CHERRY_PICK_HEAD", "a cherry-pick"),
        ("REVERT_HEAD", "a revert"),
    ] {
        if let Ok(p) = git_out(
            git,
            wt,
            &["rev-parse", "--path-format=absolute", "--git-path", file],
        ) {
            if Path::new(&p).exists() {
                return Some(what);
            }
        }
    }
    None
}

/// Tracked changes in `wt` (`git status --porcelain --untracked-files=no`), leaving out nested
/// `agent-*` worktrees (they show as untracked in their parent, run.md §4).
pub fn tracked_changes(git: &Git, wt: &Path) -> std::result::Result<Vec<String>, GitError> {
    let out = git_out(git, wt, &["status", "--porcelain", "--untracked-files=no"])?;
    Ok(out
        .lines()
        .filter(|l| !l.is_empty() && !l.get(3..).is_some_and(|p| p.starts_with("agent-")))
        .map(str::to_string)
        .collect())
}

/// The checked-out branch's short name in `wt`, `None` when HEAD is detached.
pub fn current_branch(git: &Git, wt: &Path) -> Option<String> {
    git_out(git, wt, &["symbolic-ref", "--quiet", "--short", "HEAD"])
        .ok()
        .filter(|b| !b.is_empty())
}

/// `git rev-parse HEAD` in `wt`.
pub fn head(git: &Git, wt: &Path) -> std::result::Result<String, GitError> {
    git_out(git, wt, &["rev-parse", "HEAD"])
}

/// The commit a branch points at, if it exists.
pub fn branch_tip(git: &Git, repo: &Path, branch: &str) -> Option<String> {
    git_out(
        git,
        repo,
        &[
            "rev-parse",
            "--verify",
            "--quiet",
            &format!("refs/heads/{branch}"),
        ],
    )
    .ok()
    .filter(|c| !c.is_empty())
}

/// Is `commit` an ancestor of (contained in) `of`?
pub fn is_ancestor(git: &Git, repo: &Path, commit: &str, of: &str) -> bool {
    git_out(git, repo, &["merge-base", "--is-ancestor", commit, of]).is_ok()
}

/// `git worktree add -b BRANCH PATH START` run in `repo_dir`. Errors name the path.
pub fn add_worktree(
    git: &Git,
    repo_dir: &Path,
    path: &Path,
    branch: &str,
    start: &str,
) -> Result<()> {
    let p = path.to_string_lossy();
    git_out(
        git,
        repo_dir,
        &["worktree", "add", "--quiet", "-b", branch, &p, start],
    )
    .map(|_| ())
    .map_err(|e| Error::fatal(format!("cannot create worktree `{p}`: {e}")))
}

/// Commits on `branch` that `into` does not have.
pub fn commits_ahead(git: &Git, wt: &Path, into: &str, branch: &str) -> Result<Vec<String>> {
    let out = git_out(
        git,
        wt,
        &["rev-list", "--reverse", &format!("{into}..{branch}")],
    )
    .map_err(fatal)?;
    Ok(out.lines().map(str::to_string).collect())
}

/// `git merge --no-ff -m MESSAGE BRANCH` in `wt`. On failure the merge is aborted (the working
/// tree is never left mid-merge) and the error says why.
pub fn merge_no_ff(
    git: &Git,
    wt: &Path,
    branch: &str,
    message: &str,
) -> std::result::Result<(), String> {
    match git_out(
        git,
        wt,
        &["merge", "--no-ff", "--no-edit", "-m", message, branch],
    ) {
        Ok(_) => Ok(()),
        Err(e) => {
            let _ = git_out(git, wt, &["merge", "--abort"]);
            if operation_in_progress(git, wt).is_some() {
                let _ = git_out(git, wt, &["reset", "--merge"]);
            }
            Err(format!("merge of `{branch}` failed: {e}"))
        }
    }
}

/// Remove the worktree directory `name` inside `parent` (under the storage root `root`) through `fsops` (fd-relative, no
/// symlink followed), then prune git's record of it. Returns an error message when something of
/// it is left (the caller registers it as an orphan).
pub fn remove_worktree(
    git: &Git,
    root: &Path,
    common: &Path,
    parent: &Path,
    name: &str,
) -> std::result::Result<(), String> {
    use crate::store::fsops::remove_tree;
    // `parent` is reached from the storage root without following a symlink (safety R1).
    let d = crate::store::layout::open_beneath(root, parent).map_err(|e| {
        format!(
            "cannot open `{}`: {}",
            parent.display(),
            crate::error::describe_io(&e)
        )
    })?;
    let sum = remove_tree(&d, OsStr::new(name));
    let _ = git.prune(common);
    if sum.complete {
        Ok(())
    } else {
        let why = sum
            .problems
            .first()
            .map(|p| {
                format!(
                    "`{}`: {}",
                    p.rel.display(),
                    crate::error::describe_io(&p.error)
                )
            })
            .unwrap_or_else(|| "a mount point or a file could not be removed".into());
        Err(format!(
            "could not remove worktree `{}`: {why}",
            parent.join(name).display()
        ))
    }
}

/// Forget git's record of a worktree at `path` that a killed `git worktree add` left locked
/// ("initializing"): unlock it, then prune. A locked entry survives `prune`, and a new worktree
/// at its path is refused. Only called for prodigy's own worktree paths.
pub fn forget_worktree(git: &Git, common: &Path, repo_dir: &Path, path: &Path) {
    let p = path.to_string_lossy();
    let _ = git_out(git, repo_dir, &["worktree", "unlock", &p]);
    let _ = git.prune(common);
}

/// Delete `branch` if it still points at `tip` and `tip` is contained in `keeper`'s HEAD.
pub fn delete_merged_branch(
    git: &Git,
    common: &Path,
    branch: &str,
    tip: &str,
) -> std::result::Result<(), GitError> {
    git.delete_branch(common, branch, tip)
}
