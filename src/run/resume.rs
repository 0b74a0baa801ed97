//! `prodigy resume ID` and `prodigy dlq retry JOB` (run.md §6): continue a run that was
//! interrupted, failed, or left items in the dead letter queue, so that it finishes with nothing
//! lost and nothing done twice.
//!
//! Order of work: resolve the id (mappings, session records, job directories); take the job's
//! resume lock (a held lock refuses; a stale one of a dead process is taken over and reported);
//! refuse Completed and Cancelled sessions and a changed workflow file; make sure no process of
//! the killed run still works in the session worktree (waited for, then its process group
//! killed); repair what a kill leaves (a missing worktree re-created from its branch, a parent
//! left mid-merge, an agent's merge cut short before its commit, a worktree record git left
//! half written, `index.lock` files, leftover agent worktrees); then decide where to start.
//!
//! **Git is the truth for merges**: a work item whose merge commit (`Merge agent BRANCH (item
//! ID)`, written by the map phase) is in the parent's history is completed, whatever the
//! checkpoint says; an item recorded as completed with commits but whose merge is not in the
//! parent's history runs again. Pending and in-progress items run again from fresh agent
//! worktrees; failed items stay in the DLQ until `dlq retry`.
//!
//! The map's state is the newest map checkpoint that parses with the job's `map-log.jsonl`
//! lines after its `map_log_bytes` applied ([`journal::newest_map_state`], issue 25); our
//! earlier checkpoints and 0.4.4's carry no offset and are read alone. A torn last log line is
//! ignored; a corrupt one before it is a warning and the rest is used (git's history still
//! finds the merges its line recorded).
//!
//! Why about 1,100 lines: resolving the id, the resume lock, the refusals, the repairs and the
//! plan of a resume run in this order and share their state; they read top to bottom as the run
//! does.

use super::mapstate::MapState;
use super::session::{owner, Ctx, Start, Summary};
use super::worktrees::{self, git_out};
use super::{assemble, exec, execute, Options};
use crate::error::{Error, Result};
use crate::git::Git;
use crate::store::journal;
use crate::store::layout::Layout;
use crate::store::lock::{LockRefused, ResumeLock};
use crate::store::names::is_valid_id_bytes;
use crate::store::records::{
    CheckpointKind, CompletedWorkItem, JobPhase, JobState, ReduceCheckpoint, ResumeLockInfo,
    SessionJobMapping, SessionRecord, SessionStatus, SetupCheckpoint, Timestamp, WorkItem,
};
use crate::workflow::{items, Kind, Workflow};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// `prodigy resume` options.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ResumeOptions {
    /// Session id or job id.
    pub id: String,
    /// `-y`: merge at the end without asking.
    pub yes: bool,
    /// `--force`: run a workflow file that changed since the run started.
    pub force: bool,
    /// `-q`.
    pub quiet: bool,
    /// `--json`.
    pub json: bool,
}

/// What an id resolved to.
struct Found {
    root: PathBuf,
    session: SessionRecord,
    job_id: String,
    repo_name: Option<String>,
}

fn say(quiet: bool, msg: &str) {
    if !quiet {
        crate::error::eprint_line(&format!("prodigy: {msg}"));
    }
}

/// The storage root that must already hold the run (resume never creates one).
fn existing_root() -> Result<PathBuf> {
    let home = std::env::var_os("HOME");
    let wanted =
        crate::store::root_path(std::env::var_os("PRODIGY_HOME").as_deref(), home.as_deref())?;
    crate::store::resolve_root(&wanted, home.as_deref().map(Path::new))?.ok_or_else(|| {
        Error::usage(format!(
            "nothing is stored at `{}`; check PRODIGY_HOME",
            wanted.display()
        ))
    })
}

/// Resolve a session or job id (run.md §6): the mappings of every repository, then
/// `sessions/{ID}.json`, then a job directory `state/*/mapreduce/jobs/{ID}/`.
fn resolve(root: &Path, id: &str) -> Result<Found> {
    if !is_valid_id_bytes(id.as_bytes()) {
        return Err(Error::usage(format!(
            "invalid id `{id}`: ids match [A-Za-z0-9][A-Za-z0-9._-]* (at most 128 characters)"
        )));
    }
    let repos: Vec<String> = std::fs::read_dir(root.join("state"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| is_valid_id_bytes(n.as_bytes()))
        .collect();
    let mut session_id = None;
    let mut job_id = None;
    let mut repo_name = None;
    for r in &repos {
        let p = root
            .join("state")
            .join(r)
            .join("mappings")
            .join(format!("{id}.json"));
        if let Ok(Some(m)) = journal::read_record::<SessionJobMapping>(&p) {
            session_id = Some(m.session_id);
            job_id = Some(m.job_id);
            repo_name = Some(r.clone());
            break;
        }
    }
    if session_id.is_none() {
        for r in &repos {
            let p = root
                .join("state")
                .join(r)
                .join("mapreduce/jobs")
                .join(id)
                .join("job-state.json");
            if let Ok(Some(j)) = journal::read_record::<JobState>(&p) {
                session_id = j.session_id.clone();
                job_id = Some(j.job_id);
                repo_name = Some(r.clone());
                break;
            }
        }
    }
    let sid = session_id.unwrap_or_else(|| id.to_string());
    // Ids read from mappings and job states are checked like the command line's (safety R3).
    for (what, v) in [("session id", Some(&sid)), ("job id", job_id.as_ref())] {
        if let Some(v) = v {
            if !is_valid_id_bytes(v.as_bytes()) {
                return Err(Error::refused(format!(
                    "`{id}` resolves to the invalid {what} `{}`; the records that name it are kept",
                    crate::store::names::printable(std::ffi::OsStr::new(v))
                )));
            }
        }
    }
    let sp = root.join("sessions").join(format!("{sid}.json"));
    let session = match std::fs::read(&sp) {
        Ok(b) => crate::store::records::parse::<SessionRecord>(&b).map_err(|e| {
            Error::refused(format!(
                "session record `{}` does not parse ({e}); it cannot be resumed, and it is kept",
                sp.display()
            ))
        })?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Error::usage(format!(
                "no session or job `{id}` under `{}`; `prodigy sessions ls` lists them",
                root.display()
            )))
        }
        Err(e) => return Err(Error::io("read", &sp, &e)),
    };
    let job_id = job_id
        .or_else(|| {
            session
                .mapreduce_data
                .as_ref()
                .and_then(|m| m.job_id.clone())
        })
        .unwrap_or_else(|| sid.clone());
    if !is_valid_id_bytes(job_id.as_bytes()) {
        return Err(Error::refused(format!(
            "session `{sid}` names the invalid job id `{}`; it is kept",
            crate::store::names::printable(std::ffi::OsStr::new(&job_id))
        )));
    }
    Ok(Found {
        root: root.to_path_buf(),
        session,
        job_id,
        repo_name,
    })
}

/// Take the job's resume lock; a held one refuses (exit 3) naming its holder, a stale file left
/// by a dead process is taken over and reported.
fn take_lock(root: &Path, job_id: &str, quiet: bool) -> Result<ResumeLock> {
    let path = root.join("resume_locks").join(format!("{job_id}.lock"));
    let before: Option<ResumeLockInfo> = std::fs::read(&path)
        .ok()
        .and_then(|b| crate::store::records::parse(&b).ok());
    // `clean` holds a job's lock for a moment while it re-checks an item: retry briefly.
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        match ResumeLock::acquire(root, job_id) {
            Ok(l) => {
                if let Some(b) = before {
                    if b.process_id != std::process::id() {
                        say(
                            quiet,
                            &format!(
                                "took over the stale resume lock of `{job_id}` (pid {} on {}, since {}; that process is gone)",
                                b.process_id, b.hostname, b.acquired_at
                            ),
                        );
                    }
                }
                return Ok(l);
            }
            Err(LockRefused::Held(info)) => {
                if Instant::now() < deadline && info.is_none() {
                    std::thread::sleep(Duration::from_millis(50));
                    continue;
                }
                let who = match info {
                    Some(i) => format!(
                        "pid {} on {} since {}",
                        i.process_id, i.hostname, i.acquired_at
                    ),
                    None => "another process".into(),
                };
                return Err(Error::refused(format!(
                    "`{job_id}` is being run or resumed by {who} (resume lock `{}` is held); wait for it, or stop that process first",
                    path.display()
                )));
            }
            Err(LockRefused::Io(m)) => return Err(Error::fatal(m)),
        }
    }
}

/// Processes whose working directory is inside `dir` (Linux `/proc/*/cwd`), other than us, each
/// with whether it belongs to session `sid`'s run: every step prodigy starts, and everything
/// those steps start, has `PRODIGY_SESSION_ID={sid}` in its environment.
fn pids_in(dir: &Path, sid: &str) -> Vec<(i32, bool)> {
    #[cfg_attr(not(target_os = "linux"), allow(unused_mut))]
    let mut out = Vec::new();
    #[cfg(target_os = "linux")]
    if let Ok(rd) = std::fs::read_dir("/proc") {
        let me = std::process::id() as i32;
        let marker = format!("PRODIGY_SESSION_ID={sid}");
        for e in rd.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
                continue;
            };
            if pid == me {
                continue;
            }
            if let Ok(p) = std::fs::read_link(e.path().join("cwd")) {
                if p.starts_with(dir) {
                    let ours = std::fs::read(e.path().join("environ"))
                        .map(|env| env.split(|b| *b == 0).any(|v| v == marker.as_bytes()))
                        .unwrap_or(false);
                    out.push((pid, ours));
                }
            }
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (dir, sid);
    out
}

/// Wait up to 10 s for leftover processes of the killed run working in `dir`, then kill their
/// process groups (run.md §6). Only processes of session `sid`'s run are waited for and killed;
/// another process working there (a user's shell) is left alone, and named in a warning when
/// `warn_others` (not for the user's checkout, where their shell is expected).
/// Returns how many of the run's processes were found.
fn stop_leftovers(dir: &Path, sid: &str, quiet: bool, warn_others: bool) -> usize {
    let all = pids_in(dir, sid);
    let list = |v: &[i32]| {
        v.iter()
            .map(|p| p.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let others: Vec<i32> = all.iter().filter(|(_, o)| !o).map(|(p, _)| *p).collect();
    if warn_others && !others.is_empty() {
        say(
            quiet,
            &format!(
                "warning: process(es) {} work in `{}` but are not part of the run; they are left alone",
                list(&others),
                dir.display()
            ),
        );
    }
    let ours = |d: &Path| -> Vec<i32> {
        pids_in(d, sid)
            .into_iter()
            .filter(|(_, o)| *o)
            .map(|(p, _)| p)
            .collect()
    };
    let found = ours(dir);
    if found.is_empty() {
        return 0;
    }
    say(
        quiet,
        &format!(
            "{} process(es) of the interrupted run still work in `{}` (pid {}); waiting up to 10s",
            found.len(),
            dir.display(),
            list(&found)
        ),
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline && !ours(dir).is_empty() {
        std::thread::sleep(Duration::from_millis(100));
    }
    #[cfg(unix)]
    {
        // SAFETY: getpgid/kill on pids we just read; a vanished pid only makes them fail. A
        // step's group is its own (prodigy starts every step in a new process group).
        let own = unsafe { libc::getpgid(0) };
        for pid in ours(dir) {
            let pg = unsafe { libc::getpgid(pid) };
            if pg > 0 && pg != own {
                unsafe { libc::kill(-pg, libc::SIGKILL) };
            } else {
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline && !ours(dir).is_empty() {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    found.len()
}

/// A 0.4.4 session (no `metadata.worktree` written by this tool) cannot be continued: report
/// what it has and refuse (exit 3). Never touches the user's checkout.
fn legacy_report(f: &Found) -> Error {
    let s = &f.session;
    let mut what = vec![format!("status {}", s.status.as_str())];
    if !s.checkpoints.is_empty() {
        what.push(format!(
            "{} checkpoint(s) in its record",
            s.checkpoints.len()
        ));
    }
    let cps = f.root.join("state").join(&s.id).join("checkpoints");
    if let Ok(rd) = std::fs::read_dir(&cps) {
        let n = rd.flatten().count();
        if n > 0 {
            what.push(format!("{n} file(s) in `{}`", cps.display()));
        }
    }
    Error::refused(format!(
        "session `{}` was written by Prodigy 0.4.4 ({}), which records neither the repository nor the worktree it ran in, so prodigy cannot continue it; inspect it with `prodigy sessions show {}`, or run its workflow again with `prodigy run`",
        s.id,
        what.join(", "),
        s.id
    ))
}

/// Resume a session or job (run.md §6).
pub fn resume(o: &ResumeOptions) -> Result<Summary> {
    let root = existing_root()?;
    let found = resolve(&root, &o.id)?;
    let session_id = found.session.id.clone();
    let job_id = found.job_id.clone();
    match found.session.status {
        SessionStatus::Completed => {
            return Err(Error::refused(format!(
                "session `{session_id}` is Completed; nothing to resume{}",
                if found.session.mapreduce_data.is_some() {
                    format!(" (failed work items, if any, are retried with `prodigy dlq retry {job_id}`)")
                } else {
                    String::new()
                }
            )))
        }
        SessionStatus::Cancelled => {
            return Err(Error::refused(format!(
                "session `{session_id}` was Cancelled; it cannot be resumed"
            )))
        }
        _ => {}
    }
    let meta = found.session.metadata.get("worktree").cloned();
    let Some(meta) = meta.filter(|m| m.get("repository").is_some()) else {
        return Err(legacy_report(&found));
    };
    continue_job(found, meta, o, None)
}

/// Options for `dlq retry`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RetryOptions {
    /// Job id (or session id).
    pub job: String,
    /// `-y`.
    pub yes: bool,
    /// `--max-parallel N`.
    pub max_parallel: Option<usize>,
    /// `-n`: list what would run.
    pub dry_run: bool,
    /// `--reduce`: run reduce again after the retried items.
    pub reduce: bool,
    /// `-q`.
    pub quiet: bool,
    /// `--json`.
    pub json: bool,
}

/// One item `dlq retry` would run: item id, last error, and the worktree its failed attempt
/// left when the DLQ names one.
pub type RetryItem = (String, String, Option<String>);

/// What `dlq retry -n` would run: the job id and its items.
pub fn retry_plan(job: &str) -> Result<(String, Vec<RetryItem>)> {
    let root = existing_root()?;
    let found = resolve(&root, job)?;
    let repo = repo_name_of(&found)?;
    let layout = Layout::new(&root, &repo)?;
    let dlq = journal::read_dlq(&layout, &found.job_id)?;
    Ok((
        found.job_id,
        dlq.items
            .iter()
            .map(|i| {
                (
                    i.item_id.clone(),
                    i.failure_history
                        .last()
                        .and_then(|f| f.error.clone())
                        .unwrap_or_default(),
                    i.extra
                        .get("worktree_path")
                        .and_then(Value::as_str)
                        .map(str::to_string),
                )
            })
            .collect(),
    ))
}

/// `prodigy dlq retry JOB` (run.md §6): the DLQ's items as a new map pass of the same job, in
/// its session worktree, through the resume code path.
pub fn dlq_retry(o: &RetryOptions) -> Result<Summary> {
    let root = existing_root()?;
    let found = resolve(&root, &o.job)?;
    if found.session.mapreduce_data.is_none() {
        return Err(Error::usage(format!(
            "`{}` is not a MapReduce job; only MapReduce jobs have a dead letter queue",
            o.job
        )));
    }
    let meta = found.session.metadata.get("worktree").cloned();
    let Some(meta) = meta.filter(|m| m.get("repository").is_some()) else {
        return Err(legacy_report(&found));
    };
    if matches!(
        found.session.status,
        SessionStatus::Running | SessionStatus::Initializing | SessionStatus::Paused
    ) {
        // A live or interrupted run is continued by resume, which keeps failed items queued.
        if !matches!(found.session.status, SessionStatus::Paused) {
            if let Some(ow) = found.session.owner() {
                if ow.hostname == crate::procs::hostname() && crate::procs::pid_alive(ow.pid as u64)
                {
                    return Err(Error::refused(format!(
                        "job `{}` is running (pid {}); retry its dead letter queue when it ends",
                        found.job_id, ow.pid
                    )));
                }
            }
        }
    }
    let ro = ResumeOptions {
        id: o.job.clone(),
        yes: o.yes,
        force: true,
        quiet: o.quiet,
        json: o.json,
    };
    continue_job(found, meta, &ro, Some(o))
}

fn repo_name_of(found: &Found) -> Result<String> {
    if let Some(r) = &found.repo_name {
        return Ok(r.clone());
    }
    if let Some(r) = found
        .session
        .metadata
        .get("repository_name")
        .and_then(Value::as_str)
    {
        return Ok(r.to_string());
    }
    found
        .session
        .metadata
        .get("worktree")
        .and_then(|w| w.get("repository"))
        .and_then(Value::as_str)
        .and_then(|p| Path::new(p).file_name())
        .and_then(|n| n.to_str())
        .map(str::to_string)
        .ok_or_else(|| {
            Error::refused(format!(
                "cannot tell which repository `{}` belongs to",
                found.session.id
            ))
        })
}

fn continue_job(
    found: Found,
    meta: Value,
    o: &ResumeOptions,
    retry: Option<&RetryOptions>,
) -> Result<Summary> {
    let root = found.root.clone();
    let job_id = found.job_id.clone();
    let lock = take_lock(&root, &job_id, o.quiet)?;
    // Re-read the record under the lock: the run we saw may have finished meanwhile.
    let found = resolve(&root, &o.id)?;
    if retry.is_none()
        && matches!(
            found.session.status,
            SessionStatus::Completed | SessionStatus::Cancelled
        )
    {
        return Err(Error::refused(format!(
            "session `{}` is {}; nothing to resume",
            found.session.id,
            found.session.status.as_str()
        )));
    }
    let wd = found.session.workflow_data.clone().unwrap_or(Value::Null);
    let wf_path = wd
        .get("workflow_path")
        .and_then(Value::as_str)
        .map(PathBuf::from)
        .ok_or_else(|| {
            Error::refused(format!(
                "session `{}` does not name its workflow file",
                found.session.id
            ))
        })?;
    let wf = crate::workflow::load(&wf_path).map_err(|e| {
        Error::refused(format!(
            "cannot read the workflow of session `{}`: {e}",
            found.session.id
        ))
    })?;
    super::refuse_not_run_yet(&wf)?;
    let old_hash = wd
        .get("workflow_hash")
        .and_then(Value::as_str)
        .unwrap_or("");
    if old_hash != wf.hash && !o.force {
        return Err(Error::refused(format!(
            "workflow file `{}` changed since the run started ({}); resume with --force to run the changed file",
            wf_path.display(),
            what_changed(wd.get("steps"), &super::step_digest(&wf))
        )));
    }
    let repo_path = meta
        .get("repository")
        .and_then(Value::as_str)
        .map(PathBuf::from)
        .unwrap_or_default();
    let git = Git::default();
    let repo = worktrees::find_repo(&git, &repo_path).map_err(|_| {
        Error::refused(format!(
            "the repository of session `{}`, `{}`, is not a git repository any more",
            found.session.id,
            repo_path.display()
        ))
    })?;
    // The environment and secrets are read again (they are never stored), with the profile
    // the run was started with; a secret that is gone now is an error before anything changes.
    let profile = wd
        .get("profile")
        .and_then(Value::as_str)
        .map(str::to_string);
    super::env::resolve(&wf, profile.as_deref(), &repo.checkout)?.register_masks(o.quiet);
    let repo_name = repo_name_of(&found)?;
    let layout = Layout::new(&root, &repo_name)?;
    exec::install_signals()
        .map_err(|e| Error::fatal(format!("cannot install signal handlers: {e}")))?;

    let mut session = found.session;
    let now = Timestamp::now();
    session.status = SessionStatus::Running;
    session.completed_at = None;
    session.error = None;
    session.set_owner(&owner(now));
    session.updated_at = Some(now);
    let args: Vec<(String, String)> = wd
        .get("args")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect()
        })
        .unwrap_or_default();
    if old_hash != wf.hash {
        if let Some(Value::Object(w)) = session.workflow_data.as_mut() {
            w.insert("workflow_hash".into(), json!(wf.hash));
        }
    }
    journal::write_session(&layout, &session)?;
    let opts = Options {
        workflow: wf_path.clone(),
        yes: o.yes,
        path: None,
        args: args.clone(),
        max_parallel: retry.and_then(|r| r.max_parallel),
        quiet: o.quiet,
        json: o.json,
        profile,
        ..Default::default()
    };
    let mut ctx = assemble(git, layout, repo, session, job_id, &opts, lock, &wf, &args)?;
    ctx.event(
        if retry.is_some() {
            "dlq_items_reprocessed"
        } else {
            "job_resumed"
        },
        json!({"workflow_path": wf_path.to_string_lossy()}),
    );
    let quiet = o.quiet;
    let retry_reduce = retry.map(|r| r.reduce);
    execute(ctx, &wf, |ctx| {
        prepare(ctx, &wf, &meta, quiet, retry_reduce)
    })
}

/// Which steps differ between the digest recorded at the start of the run and the file now.
fn what_changed(old: Option<&Value>, new: &Value) -> String {
    let Some(Value::Array(old)) = old else {
        return "the run recorded no step list to compare with".into();
    };
    let new = new.as_array().cloned().unwrap_or_default();
    let key = |v: &Value| {
        v.get("at")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let mut diffs = Vec::new();
    for o in old {
        match new.iter().find(|n| key(n) == key(o)) {
            Some(n) if n.get("hash") == o.get("hash") => {}
            Some(n) => diffs.push(format!(
                "{} was `{}`, is `{}`",
                key(o),
                o.get("shows").and_then(Value::as_str).unwrap_or(""),
                n.get("shows").and_then(Value::as_str).unwrap_or("")
            )),
            None => diffs.push(format!("{} was removed", key(o))),
        }
    }
    for n in &new {
        if !old.iter().any(|o| key(o) == key(n)) {
            diffs.push(format!("{} was added", key(n)));
        }
    }
    if diffs.is_empty() {
        return "the steps are the same; its name, env, map or policy changed".into();
    }
    let more = diffs.len().saturating_sub(3);
    diffs.truncate(3);
    let mut s = diffs.join("; ");
    if more > 0 {
        s.push_str(&format!("; and {more} more"));
    }
    s
}

/// Repair the session worktree and decide where to start.
fn prepare(
    ctx: &mut Ctx,
    wf: &Workflow,
    meta: &Value,
    quiet: bool,
    retry_reduce: Option<bool>,
) -> Result<Start> {
    let wt = ctx.worktree.clone();
    let sid = ctx.session.id.clone();
    stop_leftovers(&wt, &sid, quiet, true);
    // The killed run's own git commands in the user's checkout (its final merge) carry the same
    // marker: a resume that merged beside one failed with "Unable to write index".
    let checkout = ctx.repo.checkout.clone();
    if !checkout.starts_with(&wt) {
        stop_leftovers(&checkout, &sid, quiet, false);
    }
    repair_worktree(ctx, meta, quiet)?;
    let wd = ctx.session.workflow_data.clone().unwrap_or(Value::Null);
    match &wf.kind {
        Kind::Standard(steps) => {
            let from = wd.get("current_step").and_then(Value::as_u64).unwrap_or(0) as usize;
            let vars = wd
                .get("variables")
                .and_then(Value::as_object)
                .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
                .unwrap_or_default();
            let at = if from < steps.len() {
                format!("step {}", from + 1)
            } else {
                "its final merge".to_string()
            };
            say(
                quiet || ctx.opts.json,
                &format!("resuming session {} at {at}", ctx.session.id),
            );
            Ok(Start {
                from_step: from,
                vars,
                head: wd.get("head").and_then(Value::as_str).map(str::to_string),
                ..Default::default()
            })
        }
        Kind::MapReduce(_) => mapreduce_start(ctx, retry_reduce, quiet),
    }
}

/// Make the session worktree usable again: re-create it from its branch when its directory is
/// gone, finish a merge a kill left half done, undo an agent's merge a kill cut short before
/// it wrote `MERGE_HEAD` or its commit, complete git's record of a worktree whose `git
/// worktree add` a kill cut short, and remove a stale `index.lock`.
fn repair_worktree(ctx: &mut Ctx, meta: &Value, quiet: bool) -> Result<()> {
    let wt = ctx.worktree.clone();
    let branch = ctx.branch.clone();
    let created = meta.get("created").and_then(Value::as_bool) == Some(true);
    // First, as every git call below may need them: the lock files a git killed with the run
    // left behind (no git of the run runs now; one still held is left).
    remove_stale_git_locks(ctx, quiet);
    // As early: with an empty `commondir` in one of our worktree records, every git call that
    // lists worktrees dies (`git worktree add` of every item that runs again).
    for (d, r) in worktrees::complete_half_written_records(&ctx.repo.common, &wt) {
        match r {
            Ok(()) => say(
                quiet,
                &format!(
                    "completed git's record `{}` of a worktree whose `git worktree add` was killed (its `commondir` was empty)",
                    d.display()
                ),
            ),
            Err(why) => say(
                quiet,
                &format!(
                    "warning: git's record `{}` has an empty `commondir` that could not be written ({why}); git commands that list worktrees fail until `../..` is written there",
                    d.display()
                ),
            ),
        }
    }
    // Before anything below prunes git's worktree records: a failed agent's worktree whose move
    // a kill interrupted is at its new place while git's record still names the old one, and a
    // prune would drop that record.
    repair_moved_agents(ctx, quiet);
    let base = meta
        .get("base_commit")
        .and_then(Value::as_str)
        .unwrap_or("HEAD")
        .to_string();
    // After a final merge the session branch was deleted; a `dlq retry` makes it again where it
    // ended, so the items merged then are in its history.
    let start_at = meta
        .get("merged_tip")
        .and_then(Value::as_str)
        .filter(|t| {
            git_out(
                &ctx.git,
                &ctx.repo.main,
                &["cat-file", "-e", &format!("{t}^{{commit}}")],
            )
            .is_ok()
        })
        .unwrap_or(&base)
        .to_string();
    // Not marked created: killed inside `git worktree add` (the mark is written right after it
    // returns), so nothing ran there and a half-made checkout could commit a tree without the
    // user's files: it is made again. No `.git`: the directory was deleted or never finished.
    if !created || !wt.join(".git").exists() {
        if wt.exists() {
            worktrees::remove_worktree(
                &ctx.git,
                ctx.layout.root(),
                &ctx.repo.common,
                &ctx.layout.worktrees_dir(),
                &ctx.session.id,
            )
            .map_err(Error::fatal)?;
            say(
                quiet,
                &format!("removed the half-made session worktree `{}`", wt.display()),
            );
        }
        worktrees::forget_worktree(&ctx.git, &ctx.repo.common, &ctx.repo.main, &wt);
        if !created {
            if let Some(tip) = worktrees::branch_tip(&ctx.git, &ctx.repo.main, &branch) {
                if tip == base {
                    let _ =
                        worktrees::delete_merged_branch(&ctx.git, &ctx.repo.common, &branch, &tip);
                }
            }
        }
        crate::store::layout::ensure_dir(&ctx.layout.worktrees_dir())?;
        let p = wt.to_string_lossy().into_owned();
        if worktrees::branch_tip(&ctx.git, &ctx.repo.main, &branch).is_some() {
            git_out(
                &ctx.git,
                &ctx.repo.main,
                &["worktree", "add", "--quiet", &p, &branch],
            )
            .map_err(|e| Error::fatal(format!("cannot re-create worktree `{p}`: {e}")))?;
            say(
                quiet,
                &format!("re-created the session worktree `{p}` from `{branch}`"),
            );
        } else {
            worktrees::add_worktree(&ctx.git, &ctx.repo.main, &wt, &branch, &start_at)?;
            say(
                quiet,
                &format!("re-created the session worktree `{p}` and its branch from {start_at}"),
            );
        }
        ctx.event(
            "worktree_created",
            json!({"path": p, "branch": branch, "repaired": true}),
        );
    }
    if !created {
        if let Some(Value::Object(w)) = ctx.session.metadata.get_mut("worktree") {
            w.insert("created".into(), json!(true));
        }
        ctx.save_session()?;
    }
    if let Some(op) = worktrees::operation_in_progress(&ctx.git, &wt) {
        let _ = git_out(&ctx.git, &wt, &["merge", "--abort"]);
        if worktrees::operation_in_progress(&ctx.git, &wt).is_some() {
            let _ = git_out(&ctx.git, &wt, &["reset", "--merge"]);
        }
        say(
            quiet,
            &format!(
                "aborted {op} that the interrupted run left in `{}`",
                wt.display()
            ),
        );
    }
    // An agent's merge killed before it wrote MERGE_HEAD or its commit (its `index.lock` is
    // gone already, above).
    if let Some(m) = super::mapreduce::undo_interrupted_merge(ctx)? {
        say(quiet, &m);
    }
    Ok(())
}

/// Ask git to repair its records of this session's failed agent worktrees beside the session
/// worktree (`{session_id}.agent-{fid}`, run.md §4): one whose `git worktree move` a kill
/// interrupted has been renamed while git's record names its old place inside the session
/// worktree. A record that is right is left as it is.
fn repair_moved_agents(ctx: &Ctx, quiet: bool) {
    let dir = ctx.layout.worktrees_dir();
    let sid = ctx.session.id.as_str();
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| crate::store::layout::failed_agent_owners(n).contains(&sid))
        })
        .map(|e| e.path())
        .filter(|p| {
            p.join(".git")
                .symlink_metadata()
                .is_ok_and(|m| m.file_type().is_file())
        })
        .collect();
    crate::sort::sort(&mut paths);
    if let Err(e) = worktrees::repair_worktrees(&ctx.git, &ctx.repo.main, &paths) {
        say(
            quiet,
            &format!(
                "warning: git's records of the failed agents' worktrees beside `{}` could not be repaired ({e}); run `git worktree repair` there",
                ctx.worktree.display()
            ),
        );
    }
}

/// How long a git lock file must stay unchanged, and open nowhere, to count as left by a killed
/// git (see [`worktrees::remove_stale_locks`]).
const LOCK_SETTLE: Duration = Duration::from_secs(1);

/// Remove the lock files a git killed with the run left (run.md §6): `packed-refs.lock`, the
/// locks of the run's own branches, and those of the session worktree's git directory
/// (`index.lock`, `HEAD.lock`, …). While `packed-refs.lock` is there no branch can be deleted:
/// an item that runs again would find its old branch, fail to create its worktree and end in
/// the DLQ, and every merged branch would be left behind. A lock still in use is named and kept.
fn remove_stale_git_locks(ctx: &Ctx, quiet: bool) {
    let wt = &ctx.worktree;
    let private = if wt.join(".git").exists() {
        git_out(
            &ctx.git,
            wt,
            &["rev-parse", "--path-format=absolute", "--git-dir"],
        )
        .ok()
        .map(PathBuf::from)
    } else {
        None
    };
    let agents = format!("prodigy-agent-{}-", ctx.job_id);
    let locks = worktrees::git_lock_files(&ctx.repo.common, private.as_deref(), |b| {
        b == ctx.branch || b.starts_with(&agents)
    });
    for (p, r) in worktrees::remove_stale_locks(locks, LOCK_SETTLE) {
        match r {
            Ok(()) => say(
                quiet,
                &format!("removed the stale `{}` of a killed git", p.display()),
            ),
            Err(why) => say(
                quiet,
                &format!(
                    "warning: `{}` is left ({why}); git commands that need it fail while it is there",
                    p.display()
                ),
            ),
        }
    }
}

/// Items whose merge commit is in the parent's history: `Merge agent BRANCH (item ID)` subjects
/// since the run's base commit.
fn merged_items(ctx: &Ctx) -> BTreeSet<String> {
    let base = ctx
        .session
        .metadata
        .get("worktree")
        .and_then(|w| w.get("base_commit"))
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let range = if base.is_empty() {
        "HEAD".to_string()
    } else {
        format!("{base}..HEAD")
    };
    let prefix = format!("Merge agent prodigy-agent-{}-", ctx.job_id);
    git_out(
        &ctx.git,
        &ctx.worktree,
        &["log", "--merges", "--format=%s", &range],
    )
    .unwrap_or_default()
    .lines()
    .filter_map(|l| l.strip_prefix(&prefix))
    .filter_map(|rest| {
        let (_fid, item) = rest.split_once(" (item ")?;
        Some(item.strip_suffix(')')?.to_string())
    })
    .collect()
}

fn mapreduce_start(ctx: &mut Ctx, retry_reduce: Option<bool>, quiet: bool) -> Result<Start> {
    let layout = ctx.layout.clone();
    let job = ctx.job_id.clone();
    let state: Option<JobState> =
        journal::read_record(&layout.job_dir(&job)?.join("job-state.json"))?;
    let mut start = Start {
        created: state.as_ref().and_then(|s| s.created_at),
        ..Default::default()
    };
    let setup: Option<SetupCheckpoint> =
        journal::read_record(&layout.job_dir(&job)?.join("setup-checkpoint.json"))?;
    start.head = ctx
        .session
        .metadata
        .get("worktree")
        .and_then(|w| w.get("base_commit"))
        .and_then(Value::as_str)
        .map(str::to_string);
    if let Some(s) = &setup {
        start.setup_complete = s.completed;
        if let Some(h) = s.extra.get("head").and_then(Value::as_str) {
            start.head = Some(h.to_string());
        }
        start.from_step = s
            .extra
            .get("completed_steps")
            .and_then(Value::as_u64)
            .unwrap_or(0) as usize;
        start.vars = s
            .outputs
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
    }
    if !start.setup_complete {
        say(
            quiet || ctx.opts.json,
            &format!(
                "resuming job {job} in setup, at step {}",
                start.from_step + 1
            ),
        );
        return Ok(start);
    }
    // The newest full map checkpoint with the map log's later lines applied (issue 25); our
    // earlier checkpoints and 0.4.4's have no log and are read alone.
    let map = journal::newest_map_state(&layout, &job)?;
    if let Some(m) = &map {
        for w in &m.warnings {
            ctx.warn(&format!("map log: {w}"));
        }
    }
    let Some(journal::MapStateRead { checkpoint: cp, .. }) = map else {
        // Killed between setup and the first map checkpoint: the items are read again.
        say(
            quiet || ctx.opts.json,
            &format!("resuming job {job} at the start of map"),
        );
        return Ok(start);
    };
    let merged = merged_items(ctx);
    let mut all: Vec<(usize, WorkItem, &str)> = Vec::new();
    let index_of = |w: &WorkItem, n: usize| {
        w.extra
            .get("index")
            .and_then(Value::as_u64)
            .map(|i| i as usize)
            .unwrap_or(n)
    };
    let mut n = 0usize;
    for c in &cp.completed_items {
        all.push((index_of(&c.work_item, n), c.work_item.clone(), "completed"));
        n += 1;
    }
    for p in cp.in_progress_items.values() {
        all.push((index_of(&p.work_item, n), p.work_item.clone(), "pending"));
        n += 1;
    }
    for p in &cp.pending_items {
        all.push((index_of(p, n), p.clone(), "pending"));
        n += 1;
    }
    for f in &cp.failed_items {
        all.push((index_of(&f.work_item, n), f.work_item.clone(), "failed"));
        n += 1;
    }
    crate::sort::sort_by_key(&mut all, |(i, _, _)| *i);
    let completed_by_id: BTreeMap<&str, &CompletedWorkItem> = crate::sort::collect_map(
        cp.completed_items
            .iter()
            .map(|c| (c.work_item.id.as_str(), c)),
    );
    let dlq_ids: BTreeSet<String> = journal::read_dlq(&layout, &job)?
        .items
        .into_iter()
        .map(|i| i.item_id)
        .collect();
    let mut st = MapState::default();
    let mut rerun = 0;
    let mut from_git = 0;
    for (k, (i, w, what)) in all.into_iter().enumerate() {
        let fid = items::file_id(&w.id, i);
        let in_git = merged.contains(&w.id);
        let recorded = completed_by_id.get(w.id.as_str());
        let state = match (what, in_git) {
            (_, true) => "completed",
            ("completed", false) if recorded.is_some_and(|c| !c.result.commits.is_empty()) => {
                // The checkpoint says merged, the parent's history does not: git wins.
                "pending"
            }
            ("failed", _) if retry_reduce.is_some() && dlq_ids.contains(&w.id) => "pending",
            (w, _) => w,
        };
        match state {
            "completed" => {
                let c = match recorded {
                    Some(c) => (*c).clone(),
                    None => {
                        from_git += 1;
                        CompletedWorkItem {
                            work_item: w.clone(),
                            result: crate::store::records::AgentResult {
                                item_id: w.id.clone(),
                                status: json!("Success"),
                                extra: [("recovered_from".to_string(), json!("git history"))]
                                    .into_iter()
                                    .collect(),
                                ..Default::default()
                            },
                            completed_at: Some(Timestamp::now()),
                            extra: Default::default(),
                        }
                    }
                };
                if let Ok(v) = serde_json::to_value(&c.result) {
                    st.results.insert(w.id.clone(), v);
                }
                st.completed.push(c);
            }
            "failed" => {
                if let Some(f) = cp.failed_items.iter().find(|f| f.work_item.id == w.id) {
                    st.failed.push(f.clone());
                    if let Some(r) = cp.agent_results.get(&w.id) {
                        st.results.insert(w.id.clone(), r.clone());
                    }
                }
            }
            _ => {
                st.pending.push_back(k);
                rerun += 1;
            }
        }
        st.items.push((w, fid));
    }
    // Leftover agent worktrees of items that are done (killed after their checkpoint, before
    // their removal) go now; those of items that run again are replaced when they start.
    let done: BTreeSet<String> = st
        .completed
        .iter()
        .map(|c| c.work_item.id.clone())
        .collect();
    for (w, fid) in &st.items {
        if !done.contains(&w.id) {
            continue;
        }
        let name = format!("agent-{fid}");
        if ctx.worktree.join(&name).exists() {
            match worktrees::remove_worktree(
                &ctx.git,
                ctx.layout.root(),
                &ctx.repo.common,
                &ctx.worktree,
                &name,
            ) {
                Ok(()) => say(
                    quiet,
                    &format!("removed the leftover worktree of merged item {}", w.id),
                ),
                Err(e) => super::session::register_orphan(
                    ctx,
                    &ctx.worktree.join(&name),
                    &name,
                    &w.id,
                    &e,
                ),
            }
        }
        let branch = format!("prodigy-agent-{job}-{fid}");
        if let Some(tip) = worktrees::branch_tip(&ctx.git, &ctx.repo.main, &branch) {
            let head = worktrees::head(&ctx.git, &ctx.worktree).unwrap_or_default();
            if worktrees::is_ancestor(&ctx.git, &ctx.repo.main, &tip, &head) {
                let _ = worktrees::delete_merged_branch(&ctx.git, &ctx.repo.common, &branch, &tip);
            }
        }
    }
    // An item merged by a run killed before it could leave the DLQ (dlq retry) leaves it now.
    for c in &st.completed {
        if dlq_ids.contains(&c.work_item.id) && journal::dlq_remove(&layout, &job, &c.work_item.id)?
        {
            ctx.event(
                "dlq_item_removed",
                json!({"item_id": c.work_item.id, "reason": "merged before the interruption"}),
            );
        }
    }
    st.dlq = dlq_ids;
    st.dlq
        .retain(|id| !st.completed.iter().any(|c| &c.work_item.id == id));
    // Retried DLQ items leave the failed list; they go back to it if they fail again.
    if retry_reduce.is_some() {
        let pend: BTreeSet<String> = st
            .pending
            .iter()
            .map(|&i| st.items[i].0.id.clone())
            .collect();
        st.failed.retain(|f| !pend.contains(&f.work_item.id));
    }
    say(
        quiet || ctx.opts.json,
        &format!(
            "resuming job {job}: {} item(s) merged{}, {} to run, {} failed in the DLQ",
            st.completed.len(),
            if from_git > 0 {
                format!(" ({from_git} found in git history only)")
            } else {
                String::new()
            },
            rerun,
            st.failed.len()
        ),
    );
    let reduce: Option<(String, ReduceCheckpoint)> =
        journal::newest_checkpoint(&layout, &job, CheckpointKind::Reduce)?;
    let rerun_reduce = retry_reduce.unwrap_or(false) || (retry_reduce.is_none() && rerun > 0);
    if let (Some((_, r)), false) = (reduce, rerun_reduce) {
        let phase_reduce = state.as_ref().is_some_and(|s| s.phase != JobPhase::Setup);
        if phase_reduce {
            start.reduce_done = r
                .completed_steps
                .iter()
                .map(|&s| s as usize + 1)
                .max()
                .unwrap_or(0);
            start.reduce_vars = r
                .step_results
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            start.reduce_head = r
                .extra
                .get("head")
                .and_then(Value::as_str)
                .map(str::to_string);
        }
    }
    if retry_reduce == Some(false) {
        // `dlq retry` without --reduce: the reduce phase is not run again.
        start.reduce_done = usize::MAX;
    }
    start.map = Some(st);
    Ok(start)
}
