//! git through `std::process` (safety §4).
//!
//! Every call runs with all `GIT_*` variables removed (a leaked `GIT_DIR` must not redirect us),
//! `GIT_TERMINAL_PROMPT=0`, `GIT_OPTIONAL_LOCKS=0` (a status check must not rewrite the index),
//! stdin closed, and a timeout. Errors carry argv, status and the first stderr line. A failure
//! always means "keep" to callers; nothing here deletes files: worktree directories are removed
//! by `store::fsops`, and git is only asked to prune its bookkeeping and delete merged branches.

use std::ffi::{OsStr, OsString};
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;
#[cfg(unix)]
use std::time::Instant;

/// Variables kept in git's environment: the committer and author identity of merge commits.
const IDENTITY: &[&str] = &[
    "GIT_AUTHOR_NAME",
    "GIT_AUTHOR_EMAIL",
    "GIT_COMMITTER_NAME",
    "GIT_COMMITTER_EMAIL",
];

/// Default time limit for one git call. Override with `PRODIGY_GIT_TIMEOUT` (seconds).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);

/// Why a git call failed.
#[derive(Debug)]
pub struct GitError {
    /// The arguments (after `git`), for the message.
    pub args: String,
    /// What went wrong: "not found", "timed out after 120s", "exit status 128: fatal: …".
    pub what: String,
}

impl std::fmt::Display for GitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "`git {}` {}", self.args, self.what)
    }
}

/// The first line of git's stderr, with the names of the list it introduces when it ends in
/// `:` (git's "The following untracked working tree files would be overwritten by merge:"
/// followed by one tab-indented path a line): at most five, then how many more.
fn first_message(errout: &[u8]) -> String {
    let text = String::from_utf8_lossy(errout);
    let mut lines = text.lines();
    let mut first = lines.next().unwrap_or("").trim().to_string();
    if first.ends_with(':') {
        let listed: Vec<&str> = lines
            .take_while(|l| l.starts_with(['\t', ' ']))
            .map(str::trim)
            .collect();
        if !listed.is_empty() {
            first.push(' ');
            first.push_str(&listed[..listed.len().min(5)].join(", "));
            if listed.len() > 5 {
                first.push_str(&format!(" and {} more", listed.len() - 5));
            }
        }
    }
    first
}

/// A git runner with a fixed timeout.
#[derive(Clone, Debug)]
pub struct Git {
    program: OsString,
    /// Arguments before every call's own (`-c core.fsmonitor=false` for git).
    prefix: Vec<OsString>,
    timeout: Duration,
    /// Variables set for every call (a run's `PRODIGY_SESSION_ID`, by which a resume finds the
    /// git commands a killed run left running).
    env: Vec<(OsString, OsString)>,
}

impl Default for Git {
    fn default() -> Self {
        let timeout = std::env::var("PRODIGY_GIT_TIMEOUT")
            .ok()
            .and_then(|s| s.parse::<u64>().ok())
            .map(Duration::from_secs)
            .unwrap_or(DEFAULT_TIMEOUT);
        // Neutralize a repository-configured fsmonitor hook that `status` could otherwise start.
        Git {
            program: "git".into(),
            prefix: vec!["-c".into(), "core.fsmonitor=false".into()],
            timeout,
            env: Vec::new(),
        }
    }
}

/// One entry of `git worktree list --porcelain`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WorktreeEntry {
    /// Absolute path git records for the worktree.
    pub path: PathBuf,
    /// Commit checked out (None for a bare entry).
    pub head: Option<String>,
    /// Branch short name (`refs/heads/` stripped), None when detached.
    pub branch: Option<String>,
    /// `git worktree lock`ed.
    pub locked: bool,
    /// git considers it prunable (its directory is gone).
    pub prunable: bool,
    /// The bare repository entry.
    pub bare: bool,
}

impl Git {
    /// The same runner, setting `name=value` in every git command's environment.
    pub fn with_env(mut self, name: &str, value: &str) -> Git {
        self.env.push((name.into(), value.into()));
        self
    }

    /// Run `git ARGS` (in `cwd` if given) and return stdout. Non-zero exit, spawn failure and
    /// timeout are errors.
    pub fn run(&self, cwd: Option<&Path>, args: &[&OsStr]) -> Result<Vec<u8>, GitError> {
        let shown = args
            .iter()
            .map(|a| a.to_string_lossy())
            .collect::<Vec<_>>()
            .join(" ");
        let err = |what: String| GitError {
            args: shown.clone(),
            what,
        };
        let mut cmd = Command::new(&self.program);
        cmd.args(&self.prefix).args(args);
        if let Some(d) = cwd {
            cmd.current_dir(d);
        }
        for (k, _) in std::env::vars_os() {
            let name = k.to_string_lossy();
            // Identity variables cannot redirect git anywhere; merges made for a run need them
            // when the user sets their identity through the environment.
            if name.starts_with("GIT_") && !IDENTITY.contains(&name.as_ref()) {
                cmd.env_remove(&k);
            }
        }
        cmd.env("GIT_TERMINAL_PROMPT", "0")
            .env("GIT_OPTIONAL_LOCKS", "0")
            .env("LC_ALL", "C")
            .envs(self.env.iter().map(|(k, v)| (k, v)));
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(err("failed: git is not installed or not on PATH".into()))
            }
            Err(e) => return Err(err(format!("failed to start: {e}"))),
        };
        let (out, errout, timed_out) = collect(&mut child, self.timeout);
        if timed_out {
            let _ = child.kill();
            let _ = child.wait();
            return Err(err(format!("timed out after {}s", self.timeout.as_secs())));
        }
        let status = child.wait().map_err(|e| err(format!("failed: {e}")))?;
        if !status.success() {
            return Err(err(format!(
                "failed ({status}): {}",
                first_message(&errout)
            )));
        }
        Ok(out)
    }

    /// `git --git-dir=COMMON worktree list --porcelain`.
    pub fn worktree_list(&self, common: &Path) -> Result<Vec<WorktreeEntry>, GitError> {
        let gd = git_dir_arg(common);
        let out = self.run(
            None,
            &[
                gd.as_os_str(),
                OsStr::new("worktree"),
                OsStr::new("list"),
                OsStr::new("--porcelain"),
            ],
        )?;
        Ok(parse_worktree_list(&out))
    }

    /// Uncommitted or untracked changes in the worktree at `path`: the `git status --porcelain`
    /// lines (ignored files are not changes). Empty means clean.
    pub fn status(&self, path: &Path) -> Result<Vec<String>, GitError> {
        let out = self.run(
            Some(path),
            &[
                OsStr::new("status"),
                OsStr::new("--porcelain=v1"),
                OsStr::new("--untracked-files=all"),
                OsStr::new("--ignore-submodules=none"),
            ],
        )?;
        Ok(String::from_utf8_lossy(&out)
            .lines()
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect())
    }

    /// `git worktree prune` for the repository whose common git directory is `common`.
    pub fn prune(&self, common: &Path) -> Result<(), GitError> {
        let gd = git_dir_arg(common);
        self.run(
            None,
            &[gd.as_os_str(), OsStr::new("worktree"), OsStr::new("prune")],
        )
        .map(|_| ())
    }

    /// Local branches (short names) whose history contains `commit`.
    pub fn branches_containing(
        &self,
        common: &Path,
        commit: &str,
    ) -> Result<Vec<String>, GitError> {
        let gd = git_dir_arg(common);
        let out = self.run(
            None,
            &[
                gd.as_os_str(),
                OsStr::new("for-each-ref"),
                OsStr::new("--format=%(refname:short)"),
                OsStr::new("--contains"),
                OsStr::new(commit),
                OsStr::new("refs/heads/"),
            ],
        )?;
        Ok(String::from_utf8_lossy(&out)
            .lines()
            .map(str::to_string)
            .collect())
    }

    /// Every local branch of the repository and its tip: `(name without refs/heads/, commit)`,
    /// from one `git for-each-ref refs/heads/`.
    ///
    /// Errors: git could not run or failed ([`GitError`]).
    pub fn branches(&self, common: &Path) -> Result<Vec<(String, String)>, GitError> {
        let gd = git_dir_arg(common);
        let out = self.run(
            None,
            &[
                gd.as_os_str(),
                OsStr::new("for-each-ref"),
                OsStr::new("--format=%(objectname) %(refname)"),
                OsStr::new("refs/heads/"),
            ],
        )?;
        Ok(String::from_utf8_lossy(&out)
            .lines()
            .filter_map(|l| {
                let (c, r) = l.split_once(' ')?;
                Some((r.strip_prefix("refs/heads/")?.to_string(), c.to_string()))
            })
            .collect())
    }
    /// Delete `refs/heads/BRANCH` only if it still points at `commit` (compare-and-delete).
    pub fn delete_branch(&self, common: &Path, branch: &str, commit: &str) -> Result<(), GitError> {
        let gd = git_dir_arg(common);
        let r = format!("refs/heads/{branch}");
        self.run(
            None,
            &[
                gd.as_os_str(),
                OsStr::new("update-ref"),
                OsStr::new("-d"),
                OsStr::new(&r),
                OsStr::new(commit),
            ],
        )
        .map(|_| ())
    }
}

fn git_dir_arg(common: &Path) -> OsString {
    let mut s = OsString::from("--git-dir=");
    s.push(common.as_os_str());
    s
}

/// Parse `git worktree list --porcelain` output.
pub fn parse_worktree_list(out: &[u8]) -> Vec<WorktreeEntry> {
    let text = String::from_utf8_lossy(out);
    let mut v = Vec::new();
    let mut cur: Option<WorktreeEntry> = None;
    for line in text.lines() {
        if let Some(p) = line.strip_prefix("worktree ") {
            v.extend(cur.take());
            cur = Some(WorktreeEntry {
                path: PathBuf::from(p),
                ..Default::default()
            });
            continue;
        }
        let Some(e) = cur.as_mut() else { continue };
        if let Some(h) = line.strip_prefix("HEAD ") {
            e.head = Some(h.to_string());
        } else if let Some(b) = line.strip_prefix("branch ") {
            e.branch = Some(b.strip_prefix("refs/heads/").unwrap_or(b).to_string());
        } else if line == "locked" || line.starts_with("locked ") {
            e.locked = true;
        } else if line == "prunable" || line.starts_with("prunable ") {
            e.prunable = true;
        } else if line == "bare" {
            e.bare = true;
        }
    }
    v.extend(cur);
    v
}

/// Read the child's stdout and stderr until both close or the deadline passes, without threads:
/// poll(2) on both pipes (a child that fills a pipe we are not reading would hang forever).
#[cfg(unix)]
fn collect(child: &mut std::process::Child, timeout: Duration) -> (Vec<u8>, Vec<u8>, bool) {
    use std::io::Read;
    use std::os::unix::io::AsRawFd;
    let deadline = Instant::now() + timeout;
    let mut out = child.stdout.take();
    let mut err = child.stderr.take();
    let (mut obuf, mut ebuf) = (Vec::new(), Vec::new());
    while out.is_some() || err.is_some() {
        let now = Instant::now();
        if now >= deadline {
            return (obuf, ebuf, true);
        }
        let ms = (deadline - now).as_millis().min(i32::MAX as u128) as i32;
        let mut fds = Vec::new();
        if let Some(o) = &out {
            fds.push(libc::pollfd {
                fd: o.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            });
        }
        if let Some(e) = &err {
            fds.push(libc::pollfd {
                fd: e.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            });
        }
        // SAFETY: fds is a valid array of pollfd for its length.
        let r = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) };
        if r < 0 {
            if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return (obuf, ebuf, true);
        }
        let mut buf = [0u8; 65536];
        for pfd in fds.iter().filter(|p| p.revents != 0) {
            let is_out = out.as_ref().is_some_and(|o| o.as_raw_fd() == pfd.fd);
            let (slot_done, n) = if is_out {
                let n = out.as_mut().map(|o| o.read(&mut buf)).unwrap_or(Ok(0));
                (matches!(n, Ok(0) | Err(_)), n.unwrap_or(0))
            } else {
                let n = err.as_mut().map(|e| e.read(&mut buf)).unwrap_or(Ok(0));
                (matches!(n, Ok(0) | Err(_)), n.unwrap_or(0))
            };
            if is_out {
                obuf.extend_from_slice(&buf[..n]);
                if slot_done {
                    out = None;
                }
            } else {
                // Keep stderr bounded: only its first line is ever shown.
                if ebuf.len() < 65536 {
                    ebuf.extend_from_slice(&buf[..n]);
                }
                if slot_done {
                    err = None;
                }
            }
        }
    }
    // Pipes closed; wait for exit within what is left of the deadline. The child closes its
    // pipes as it exits, so it is usually a zombie within microseconds: sleep 50 µs, doubling up
    // to 5 ms, rather than a fixed 5 ms (which cost a run 2 sleeps in 5 of its git calls,
    // about 9 ms a work item; scripts/README.md "Run benchmark").
    let mut nap = Duration::from_micros(50);
    loop {
        match child.try_wait() {
            Ok(Some(_)) | Err(_) => return (obuf, ebuf, false),
            Ok(None) if Instant::now() >= deadline => return (obuf, ebuf, true),
            Ok(None) => {
                std::thread::sleep(nap);
                nap = (nap * 2).min(Duration::from_millis(5));
            }
        }
    }
}

#[cfg(not(unix))]
fn collect(child: &mut std::process::Child, _timeout: Duration) -> (Vec<u8>, Vec<u8>, bool) {
    use std::io::Read;
    let (mut o, mut e) = (Vec::new(), Vec::new());
    if let Some(mut s) = child.stdout.take() {
        let _ = s.read_to_end(&mut o);
    }
    if let Some(mut s) = child.stderr.take() {
        let _ = s.read_to_end(&mut e);
    }
    (o, e, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_message_names_the_files_a_refused_merge_lists() {
        let e = b"error: The following untracked working tree files would be overwritten by merge:\n\ta.txt\n\tb.txt\nPlease move or remove them before you merge.\nAborting\n";
        assert_eq!(
            first_message(e),
            "error: The following untracked working tree files would be overwritten by merge: a.txt, b.txt"
        );
        let many: String = (0..7).map(|i| format!("\tf{i}\n")).collect();
        assert_eq!(
            first_message(format!("error: x:\n{many}Aborting\n").as_bytes()),
            "error: x: f0, f1, f2, f3, f4 and 2 more"
        );
        assert_eq!(first_message(b"fatal: bad\nmore\n"), "fatal: bad");
        assert_eq!(first_message(b""), "");
    }

    #[test]
    fn parses_porcelain_worktree_list() {
        let out = b"worktree /r\nHEAD abc\nbranch refs/heads/main\n\nworktree /w/a\nHEAD def\nbranch refs/heads/prodigy-a\nlocked corpus-g2\n\nworktree /w/b\nHEAD 123\ndetached\nprunable gitdir file points to non-existent location\n\n";
        let v = parse_worktree_list(out);
        assert_eq!(v.len(), 3);
        assert_eq!(v[0].branch.as_deref(), Some("main"));
        assert!(v[1].locked && !v[1].prunable);
        assert_eq!(v[1].branch.as_deref(), Some("prodigy-a"));
        assert!(v[2].prunable && v[2].branch.is_none());
    }

    #[cfg(unix)]
    #[test]
    fn a_hanging_program_times_out() {
        let g = Git {
            program: "sh".into(),
            prefix: vec![],
            timeout: Duration::from_millis(300),
            env: vec![],
        };
        let t = Instant::now();
        let e = g
            .run(None, &[OsStr::new("-c"), OsStr::new("sleep 5")])
            .unwrap_err();
        assert!(t.elapsed() < Duration::from_secs(3), "{e}");
        assert!(e.to_string().contains("timed out"), "{e}");
    }

    #[test]
    fn missing_program_is_an_error_not_a_panic() {
        let g = Git {
            program: "prodigy-no-such-git".into(),
            prefix: vec![],
            timeout: Duration::from_secs(5),
            env: vec![],
        };
        let e = g.run(None, &[OsStr::new("status")]).unwrap_err();
        assert!(e.to_string().contains("not installed"), "{e}");
    }
}
