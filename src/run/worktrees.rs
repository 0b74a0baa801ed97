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

/// Put back to HEAD what an interrupted `git merge` of `tip` left in the work tree at `wt`
/// (below the storage root `root`) while HEAD stayed at `head` and no `MERGE_HEAD` was written:
/// git writes the merged files, then the index, then the commit, so a kill in between leaves
/// the branch's changes as local changes that every later merge refuses.
///
/// Only the paths the branch changed since it forked (`git diff --name-only --no-renames
/// HEAD...TIP`) are looked at, and of those only the ones `git status` shows as changed: a
/// path in `head` is checked out from it (index and work tree), a path `head` does not have is
/// dropped from the index and its file unlinked through `fsops` (no symlink followed). Every
/// other path, such as a setup step's uncommitted output, is left as it is.
///
/// With `only_tip: Some(since)` (the user's own checkout, whose uncommitted work must never be
/// lost) a changed path is put back only when the killed merge itself can have left it so:
/// - its work-tree content is exactly the blob `tip` has there (`git hash-object` against
///   `git ls-tree`), or there is no file where `tip` has none;
/// - a regular file modified at or after `since` (unix seconds: when the merge started) whose
///   content is a strict prefix of `tip`'s blob, empty included: git creates a file, then
///   writes it, so a kill in between leaves it empty or cut short (about one kill in a hundred
///   inside a merge of a few small files does; it made the loop crash sweep fail in CI);
/// - a path `head` has whose file is missing: git unlinks a file it rewrites before it creates
///   the new one, and the merge only starts on a checkout without tracked changes, so checking
///   it out from `head` loses nothing.
///
/// Any other content is left as it is. Returns the paths put back. Errors (a git call failed, a
/// file could not be removed) name what failed.
pub fn undo_unfinished_merge(
    git: &Git,
    root: &Path,
    wt: &Path,
    head: &str,
    tip: &str,
    only_tip: Option<i64>,
) -> std::result::Result<Vec<PathBuf>, String> {
    let nul_list = |args: &[&OsStr]| -> std::result::Result<Vec<Vec<u8>>, String> {
        let out = git.run(Some(wt), args).map_err(|e| e.to_string())?;
        Ok(out
            .split(|&b| b == 0)
            .filter(|p| !p.is_empty())
            .map(<[u8]>::to_vec)
            .collect())
    };
    let range = format!("{head}...{tip}");
    let touched: Vec<std::ffi::OsString> = nul_list(&[
        s("diff"),
        s("--name-only"),
        s("--no-renames"),
        s("-z"),
        s(&range),
        s("--"),
    ])?
    .iter()
    .map(|p| os_from_bytes(p))
    .collect();
    // Chunks keep each argv short whatever the branch touched.
    let with_paths = |pre: &[&str], paths: &[std::ffi::OsString]| -> Vec<Vec<std::ffi::OsString>> {
        paths
            .chunks(500)
            .map(|c| {
                let mut a: Vec<std::ffi::OsString> = vec!["--literal-pathspecs".into()];
                a.extend(pre.iter().map(|x| x.into()));
                a.push("--".into());
                a.extend(c.iter().cloned());
                a
            })
            .collect()
    };
    // `XY PATH` entries; `--no-renames` keeps them one path each.
    let mut changed = Vec::new();
    for args in with_paths(
        &[
            "status",
            "--porcelain=v1",
            "-z",
            "--untracked-files=all",
            "--no-renames",
        ],
        &touched,
    ) {
        changed.extend(nul_list(&os_refs(&args))?);
    }
    let (mut in_head, mut staged_new, mut new) = (Vec::new(), Vec::new(), Vec::new());
    for e in changed {
        let Some(path) = e.get(3..).map(os_from_bytes) else {
            continue;
        };
        match e.first() {
            Some(b'?') => new.push(path),
            Some(b'A') => {
                staged_new.push(path.clone());
                new.push(path);
            }
            _ => in_head.push(path),
        }
    }
    if let Some(since) = only_tip {
        let all: Vec<std::ffi::OsString> = in_head.iter().chain(&new).cloned().collect();
        let mut same = std::collections::HashSet::new();
        // The blobs `tip` has at those paths and their sizes: `MODE TYPE OID SIZE\tPATH`.
        let mut at_tip = std::collections::HashMap::new();
        for args in with_paths(&["ls-tree", "-r", "-z", "-l", "--full-tree", tip], &all) {
            for e in nul_list(&os_refs(&args))? {
                let Some(tab) = e.iter().position(|&b| b == b'\t') else {
                    continue;
                };
                let meta = String::from_utf8_lossy(&e[..tab]).into_owned();
                let f: Vec<&str> = meta.split_whitespace().collect();
                let (Some(mode), Some(oid), Some(Ok(size))) =
                    (f.first(), f.get(2), f.get(3).map(|x| x.parse::<u64>()))
                else {
                    continue;
                };
                if *mode == "100644" || *mode == "100755" {
                    at_tip.insert(os_from_bytes(&e[tab + 1..]), (oid.to_string(), size));
                }
            }
        }
        let mut files = Vec::new();
        let paths = in_head.iter().map(|p| (p, true));
        for (p, in_head) in paths.chain(new.iter().map(|p| (p, false))) {
            match std::fs::symlink_metadata(wt.join(p)) {
                Ok(m) if m.file_type().is_file() && at_tip.contains_key(p) => files.push(p.clone()),
                Err(e)
                    if e.kind() == std::io::ErrorKind::NotFound
                        && (in_head || !at_tip.contains_key(p)) =>
                {
                    same.insert(p.clone());
                }
                _ => {}
            }
        }
        for chunk in files.chunks(500) {
            let mut args: Vec<std::ffi::OsString> = vec!["hash-object".into(), "--".into()];
            args.extend(chunk.iter().cloned());
            let out = git
                .run(Some(wt), &os_refs(&args))
                .map_err(|e| e.to_string())?;
            let hashes: Vec<&str> = std::str::from_utf8(&out)
                .map_err(|e| e.to_string())?
                .lines()
                .collect();
            for (p, h) in chunk.iter().zip(hashes) {
                if at_tip.get(p).map(|t| t.0.as_str()) == Some(h.trim()) {
                    same.insert(p.clone());
                }
            }
        }
        for p in &files {
            let (oid, size) = &at_tip[p];
            if !same.contains(p) && cut_short_since(git, wt, p, (oid, *size), since)? {
                same.insert(p.clone());
            }
        }
        in_head.retain(|p| same.contains(p));
        staged_new.retain(|p| same.contains(p));
        new.retain(|p| same.contains(p));
    }
    let run = |args: &[std::ffi::OsString]| {
        git.run(Some(wt), &os_refs(args))
            .map(|_| ())
            .map_err(|e| e.to_string())
    };
    for args in with_paths(&["checkout", "-q", head], &in_head) {
        run(&args)?;
    }
    for args in with_paths(&["rm", "-q", "--cached", "--ignore-unmatch"], &staged_new) {
        run(&args)?;
    }
    for p in &new {
        let file = wt.join(p);
        let (Some(dir), Some(name)) = (file.parent(), file.file_name()) else {
            continue;
        };
        crate::store::layout::open_beneath(root, dir)
            .and_then(|d| d.unlink(name))
            .or_else(|e| match e.kind() {
                std::io::ErrorKind::NotFound => Ok(()),
                _ => Err(e),
            })
            .map_err(|e| {
                format!(
                    "cannot remove `{}`: {}",
                    file.display(),
                    crate::error::describe_io(&e)
                )
            })?;
    }
    Ok(in_head.into_iter().chain(new).map(PathBuf::from).collect())
}

/// Whether the regular file `wt/p`, modified at or after `since` (unix seconds), holds a strict
/// prefix of the blob `oid` of `size` bytes (empty included): what a `git merge` killed while it
/// wrote the file leaves. The blob is read (`git cat-file`) only for a file shorter than it.
/// Errors: `git cat-file` failed.
fn cut_short_since(
    git: &Git,
    wt: &Path,
    p: &OsStr,
    (oid, size): (&str, u64),
    since: i64,
) -> std::result::Result<bool, String> {
    use std::io::Read;
    let file = wt.join(p);
    let Ok(m) = std::fs::symlink_metadata(&file) else {
        return Ok(false);
    };
    let modified = m
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(-1, |d| d.as_secs() as i64);
    if !m.file_type().is_file() || modified < since || m.len() >= size {
        return Ok(false);
    }
    let blob = git
        .run(Some(wt), &[s("cat-file"), s("blob"), s(oid)])
        .map_err(|e| e.to_string())?;
    // Opened without following a symlink or blocking on a FIFO put there meanwhile, and read
    // only while still a regular file; at most the blob's length is read: a file that grew
    // meanwhile is not a prefix.
    let mut open = std::fs::OpenOptions::new();
    open.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        open.custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK);
    }
    let mut have = Vec::with_capacity(m.len() as usize);
    let read = open.open(&file).and_then(|f| {
        if !f.metadata()?.is_file() {
            return Err(std::io::ErrorKind::InvalidInput.into());
        }
        f.take(blob.len() as u64).read_to_end(&mut have)
    });
    Ok(read.is_ok() && have.len() < blob.len() && blob.starts_with(&have))
}

fn os_refs(a: &[std::ffi::OsString]) -> Vec<&OsStr> {
    a.iter().map(|x| x.as_os_str()).collect()
}

/// A path as git prints it under `-z`: raw bytes on Unix.
fn os_from_bytes(b: &[u8]) -> std::ffi::OsString {
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStrExt;
        OsStr::from_bytes(b).to_os_string()
    }
    #[cfg(not(unix))]
    {
        String::from_utf8_lossy(b).into_owned().into()
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

/// `git worktree move FROM TO` run in `repo_dir`: the directory is renamed, then git's record
/// of it (`$GIT_COMMON_DIR/worktrees/{id}/gitdir`) is rewritten. A kill between the two leaves
/// the directory at `to` with a record naming `from`, which [`repair_worktrees`] puts right and
/// which `git worktree prune` must not see first (it would drop the record). git refuses a
/// locked worktree and one with submodules; the error says so.
pub fn move_worktree(
    git: &Git,
    repo_dir: &Path,
    from: &Path,
    to: &Path,
) -> std::result::Result<(), String> {
    let (f, t) = (from.to_string_lossy(), to.to_string_lossy());
    git_out(git, repo_dir, &["worktree", "move", &f, &t])
        .map(|_| ())
        .map_err(|e| format!("cannot move worktree `{f}` to `{t}`: {e}"))
}

/// `git worktree repair PATH…` run in `repo_dir`: git's records of the worktrees at `paths` are
/// made to name them where they are (after a move that a kill interrupted). A no-op for a
/// record that is right.
pub fn repair_worktrees(
    git: &Git,
    repo_dir: &Path,
    paths: &[PathBuf],
) -> std::result::Result<(), GitError> {
    if paths.is_empty() {
        return Ok(());
    }
    let ps: Vec<String> = paths
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    let mut args = vec!["worktree", "repair"];
    args.extend(ps.iter().map(String::as_str));
    git_out(git, repo_dir, &args).map(|_| ())
}

/// Forget git's record of a worktree at `path` that a killed `git worktree add` left locked
/// ("initializing"): unlock it, then prune. A locked entry survives `prune`, and a new worktree
/// at its path is refused. Only called for prodigy's own worktree paths.
pub fn forget_worktree(git: &Git, common: &Path, repo_dir: &Path, path: &Path) {
    let p = path.to_string_lossy();
    let _ = git_out(git, repo_dir, &["worktree", "unlock", &p]);
    let _ = git.prune(common);
}

/// Complete git's records (`$GIT_COMMON_DIR/worktrees/{id}/`) of worktrees below `within`
/// whose `commondir` a killed `git worktree add` left empty. git writes a new record's
/// `locked` ("initializing"), `gitdir`, the worktree's `.git`, `HEAD`, then `commondir`; a kill
/// between creating `commondir` and writing it leaves an empty file on which every later git
/// command that lists worktrees dies ("failed to read …/commondir: Success"), `git worktree
/// add` and `unlock` among them, so no item could get a worktree again. Each such record gets
/// the `../..` git writes there (crash-safely); it is still locked "initializing", so the
/// removal of a stale worktree that follows ([`forget_worktree`]) unlocks and prunes it. Only
/// records whose `gitdir` names a path below `within` (the session worktree: itself and its
/// agents) are touched. Returns each record's directory with `Ok(())` or why it was left.
pub fn complete_half_written_records(
    common: &Path,
    within: &Path,
) -> Vec<(PathBuf, std::result::Result<(), String>)> {
    let real = std::fs::canonicalize(within).ok();
    let ours =
        |p: &Path| p.starts_with(within) || real.as_deref().is_some_and(|r| p.starts_with(r));
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(common.join("worktrees"))
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.path())
        .filter(|d| {
            d.join("commondir")
                .symlink_metadata()
                .is_ok_and(|m| m.file_type().is_file() && m.len() == 0)
        })
        .filter(|d| {
            std::fs::read_to_string(d.join("gitdir")).is_ok_and(|g| ours(Path::new(g.trim_end())))
        })
        .collect();
    crate::sort::sort(&mut dirs);
    dirs.into_iter()
        .map(|d| {
            let r = crate::store::atomic::write_atomic(&d.join("commondir"), b"../..\n")
                .map_err(|e| crate::error::describe_io(&e));
            (d, r)
        })
        .collect()
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

/// Lock files that a git killed mid-operation (SIGKILL to prodigy's process group) can leave in
/// the repository, and that make later git calls fail with "Unable to create '….lock': File
/// exists" until they go: `packed-refs.lock` in the common git directory (taken by every branch
/// creation and deletion, so a stale one makes every branch deletion fail, and an item that runs
/// again finds its old branch still there), the loose-ref locks `refs/heads/{name}.lock` of the
/// run's own branches (`ours(name)`), and every `*.lock` directly in `private`, the session
/// worktree's own git directory (`index.lock`, `HEAD.lock`, `ORIG_HEAD.lock`).
pub fn git_lock_files(
    common: &Path,
    private: Option<&Path>,
    ours: impl Fn(&str) -> bool,
) -> Vec<PathBuf> {
    let mut v = Vec::new();
    let packed = common.join("packed-refs.lock");
    if packed.symlink_metadata().is_ok() {
        v.push(packed);
    }
    let locks_in = |dir: &Path, keep: &dyn Fn(&str) -> bool| -> Vec<PathBuf> {
        let mut names: Vec<PathBuf> = std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
            .filter(|e| {
                e.file_name()
                    .to_str()
                    .and_then(|n| n.strip_suffix(".lock"))
                    .is_some_and(keep)
            })
            .map(|e| e.path())
            .collect();
        crate::sort::sort(&mut names);
        names
    };
    v.extend(locks_in(&common.join("refs/heads"), &ours));
    if let Some(p) = private {
        // The main worktree's own files (index, HEAD) live in the common directory itself.
        v.extend(locks_in(p, &|n| n != "packed-refs"));
    }
    v
}

/// Is `path` open in some process? Linux only (`/proc/*/fd`); elsewhere, and for processes
/// whose descriptors we may not read, `false`.
fn open_anywhere(path: &Path) -> bool {
    #[cfg(target_os = "linux")]
    if let Ok(rd) = std::fs::read_dir("/proc") {
        // The kernel names an open file by its resolved path.
        let path = match (path.parent().map(std::fs::canonicalize), path.file_name()) {
            (Some(Ok(d)), Some(n)) => d.join(n),
            _ => path.to_path_buf(),
        };
        for e in rd.flatten() {
            if !e
                .file_name()
                .to_str()
                .is_some_and(|n| n.parse::<u32>().is_ok())
            {
                continue;
            }
            let Ok(fds) = std::fs::read_dir(e.path().join("fd")) else {
                continue;
            };
            for fd in fds.flatten() {
                if std::fs::read_link(fd.path()).is_ok_and(|t| t == path) {
                    return true;
                }
            }
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = path;
    false
}

/// Remove those of `candidates` that are stale: still there and unchanged (same inode, size and
/// modification time) after `settle`, and open in no process. A live git holds its lock open
/// for the moment its update takes (git itself waits 1 s for `packed-refs.lock`); one that is
/// held, or changes, is left. Returns each lock found with `Ok(())` when it was removed or why
/// it was left.
pub fn remove_stale_locks(
    candidates: Vec<PathBuf>,
    settle: std::time::Duration,
) -> Vec<(PathBuf, std::result::Result<(), String>)> {
    use crate::store::fsops::Dir;
    let id = |p: &Path| {
        let (d, n) = (p.parent()?, p.file_name()?);
        let m = Dir::open_root(d).ok()?.stat(n).ok()?;
        Some((m.dev, m.ino, m.len, m.mtime_secs, m.mtime_nanos))
    };
    let before: Vec<_> = candidates
        .into_iter()
        .filter_map(|p| id(&p).map(|i| (p, i)))
        .collect();
    if before.is_empty() {
        return Vec::new();
    }
    std::thread::sleep(settle);
    let mut out = Vec::new();
    for (p, was) in before {
        let Some(now) = id(&p) else {
            continue; // its git finished and removed it
        };
        let r = if now != was {
            Err("it changed while we waited: a git process is using it".to_string())
        } else if open_anywhere(&p) {
            Err("a running process has it open".to_string())
        } else {
            match (p.parent(), p.file_name()) {
                (Some(d), Some(n)) => Dir::open_root(d)
                    .and_then(|dir| dir.unlink(n))
                    .map_err(|e| crate::error::describe_io(&e)),
                _ => Err("not a file name".to_string()),
            }
        };
        out.push((p, r));
    }
    out
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_lock_open_somewhere_is_kept_a_forgotten_one_is_removed() {
        let d = std::env::temp_dir().join(format!("prodigy-git-locks-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(d.join("refs/heads")).unwrap();
        let d = std::fs::canonicalize(&d).unwrap();
        let private = d.join("worktrees/s");
        std::fs::create_dir_all(&private).unwrap();
        let packed = d.join("packed-refs.lock");
        let ours = d.join("refs/heads/prodigy-agent-j-w1.lock");
        let theirs = d.join("refs/heads/feature.lock");
        let head = private.join("HEAD.lock");
        for p in [&packed, &ours, &theirs, &head] {
            std::fs::write(p, "").unwrap();
        }
        let found = git_lock_files(&d, Some(&private), |b| b.starts_with("prodigy-agent-j-"));
        assert_eq!(found, vec![packed.clone(), ours.clone(), head.clone()]);
        // A live git holds its lock open.
        let held = std::fs::File::open(&head).unwrap();
        let out = remove_stale_locks(found, Duration::from_millis(50));
        drop(held);
        assert_eq!(out.len(), 3);
        for (p, r) in &out {
            if *p == head {
                assert_eq!(r, &Err("a running process has it open".to_string()));
            } else {
                assert_eq!(r, &Ok(()), "{}", p.display());
            }
        }
        assert!(!packed.exists() && !ours.exists());
        assert!(head.exists() && theirs.exists(), "not ours, or held: kept");
        std::fs::remove_dir_all(&d).unwrap();
    }
}
