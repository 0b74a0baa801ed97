//! `prodigy run`: execute a workflow file in a session worktree and write the whole storage tree
//! a run produces (run.md §3–§5).
//!
//! One thread. Steps are child processes ([`exec`]) advanced by one wait loop; MapReduce agents
//! are lanes of that loop, at most `max_parallel` at once. Git work goes through [`worktrees`];
//! every record through [`crate::store::journal`]. This module never deletes anything but
//! through `store::fsops`, and `clean` never learns about workflows: the two meet only in the
//! record formats.
//!
//! Write order (what a SIGKILL between two writes leaves): the resume lock is taken first and
//! held to the end; the session record (Running, `metadata.owner`) and the mappings come before
//! any worktree exists; an agent's merge commit (`Merge agent BRANCH (item ID)`) is the first
//! record that the item is done, so git's history is always the truth for what was merged: map
//! checkpoints are written in batches after it, and a failed item is in the DLQ before any
//! checkpoint says so.
//!
//! Layout (run.md §8), each module importing only those below it:
//!
//! | module | what |
//! |---|---|
//! | `mod.rs` (this) | `run()`: argv's options → a new session → `execute` |
//! | `resume` | `prodigy resume` and `dlq retry`: find, lock, repair, then `execute` from a `session::Start` |
//! | `standard`, `mapreduce` | the phases: a standard workflow's steps; setup, map, reduce |
//! | `merge` | the final merge (with `merge:` steps) and the session's end |
//! | `lane` | the step runner shared by every phase: one sequence of steps, every modifier |
//! | `steps/` | one file per action or modifier that runs (command lines, `write_file`, `foreach`, `validate`, `capture`, `outputs`) |
//! | `session`, `mapstate` | one run's context (`session::Ctx`, `session::Start`, `Summary`); the map phase's state |
//! | `exec`, `worktrees`, `env`, `dry` | child processes and the wait; git worktrees and merges; the environment; `--dry-run` |

pub mod dry;
pub mod env;
pub mod exec;
mod lane;
mod mapreduce;
mod mapstate;
mod merge;
pub mod resume;
mod session;
mod standard;
pub(crate) mod steps;
pub mod worktrees;

pub use session::{exit_of, Options, Summary};
use session::{owner, Ctx};

use crate::error::{Error, Result};
use crate::git::Git;
use crate::store::journal::{self, EventLog};
use crate::store::layout::{ensure_dir, Layout};
use crate::store::lock::{LockRefused, ResumeLock};
use crate::store::records::{SessionJobMapping, SessionRecord, SessionStatus, Timestamp};
use crate::workflow::vars::Vars;
use crate::workflow::{Action, Kind, Workflow};
use serde_json::{json, Value};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Instant;
use worktrees::Repo;

fn has_claude(wf: &Workflow) -> bool {
    wf.steps().into_iter().any(|(_, _, s)| {
        matches!(s.action, Action::Claude(_))
            || s.on_failure
                .as_ref()
                .is_some_and(|o| matches!(o.action, Action::Claude(_)))
    })
}

/// Every step of a workflow as `{"at": "setup 1", "hash": FNV-1a of its text, "shows": display}`,
/// stored in `workflow_data.steps` so that a resume of a changed file can say which steps changed.
pub(crate) fn step_digest(wf: &Workflow) -> Value {
    Value::Array(
        wf.steps()
            .into_iter()
            .map(|(phase, i, s)| {
                json!({
                    "at": format!("{phase} {}", i + 1),
                    "hash": crate::workflow::fnv1a64_hex(s.text().as_bytes()),
                    "shows": s.display(),
                })
            })
            .collect(),
    )
}

/// Ids of a new run (run.md §5): MapReduce job `mapreduce-{YYYYmmddTHHMMSS}-{6 hex}` with session
/// `session-{job_id}`; standard session `session-{uuid}` whose job id is its session id.
fn new_ids(mapreduce: bool) -> Result<(String, String)> {
    let rnd = |e: std::io::Error| Error::fatal(format!("cannot read random bytes: {e}"));
    if mapreduce {
        let hex: String = exec::random_bytes(3)
            .map_err(rnd)?
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let ts = crate::store::records::format_file_name_timestamp(&Timestamp::now());
        let job = format!("mapreduce-{}T{}-{hex}", &ts[..8], &ts[8..]);
        Ok((format!("session-{job}"), job))
    } else {
        let s = format!("session-{}", exec::uuid_v4().map_err(rnd)?);
        Ok((s.clone(), s))
    }
}

/// The storage root for writing: `$PRODIGY_HOME` (or `~/.prodigy`), created if missing and
/// checked like `clean` checks it (safety R1), and writable.
fn writable_root() -> Result<PathBuf> {
    let home = std::env::var_os("HOME");
    let wanted =
        crate::store::root_path(std::env::var_os("PRODIGY_HOME").as_deref(), home.as_deref())?;
    if let Err(e) = std::fs::create_dir_all(&wanted) {
        return Err(Error::usage(format!(
            "cannot create the storage root `{}`: {}; set PRODIGY_HOME to a writable directory",
            wanted.display(),
            crate::error::describe_io(&e)
        )));
    }
    let root = crate::store::resolve_root(&wanted, home.as_deref().map(Path::new))?
        .ok_or_else(|| Error::usage(format!("storage root `{}` vanished", wanted.display())))?;
    let probe = root.join(format!(".prodigy-write-test-{}", std::process::id()));
    match std::fs::File::create(&probe) {
        Ok(_) => {
            let _ = crate::store::fsops::Dir::open_root(&root)
                .and_then(|d| d.unlink(probe.file_name().unwrap_or_default()));
            Ok(root)
        }
        Err(e) => Err(Error::usage(format!(
            "the storage root `{}` is not writable: {}; set PRODIGY_HOME to a writable directory",
            root.display(),
            crate::error::describe_io(&e)
        ))),
    }
}

/// Features of the workflow language that parse (and that `prodigy validate` and `run
/// --dry-run` accept) but that `prodigy run` does not run yet, as the parser names them in
/// [`Workflow::features`]. A file that uses one is refused before anything runs, never run with
/// the feature dropped. Remove an entry when its feature runs.
pub const NOT_RUN_YET: &[&str] = &[];

/// Refuse (exit 2) a workflow that uses a feature of [`NOT_RUN_YET`], one line per use:
/// `` `FILE`:LINE:COL: `KEY` is not run by this version of prodigy run yet; … `` (none today).
pub fn refuse_not_run_yet(wf: &Workflow) -> Result<()> {
    let lines: Vec<String> = wf
        .features
        .iter()
        .filter(|(f, _, _)| NOT_RUN_YET.contains(&f.as_str()))
        .map(|(f, line, col)| {
            crate::store::names::printable_str(&format!(
                "`{}`:{line}:{col}: `{f}` is not run by this version of prodigy run yet; \
                 `prodigy validate` and `--dry-run` accept it",
                wf.path.display()
            ))
        })
        .collect();
    if lines.is_empty() {
        Ok(())
    } else {
        Err(Error::usage(lines.join("\n")))
    }
}

/// `--arg`s after the `--param-file`s: each file a JSON or YAML map whose entries become
/// `NAME=VALUE` (strings as they are, other values as JSON); a later file wins, `--arg` wins
/// over every file.
pub fn resolve_args(opts: &Options) -> Result<Vec<(String, String)>> {
    let mut out: Vec<(String, String)> = Vec::new();
    for f in &opts.param_files {
        let text = std::fs::read_to_string(f).map_err(|e| {
            Error::usage(format!(
                "--param-file `{}`: {}",
                f.display(),
                crate::error::describe_io(&e)
            ))
        })?;
        let map: serde_json::Map<String, Value> = serde_json::from_str(&text)
            .or_else(|_| serde_yaml_ng::from_str(&text))
            .map_err(|e| {
                Error::usage(format!(
                    "--param-file `{}`: not a JSON or YAML map of NAME: value ({e})",
                    f.display()
                ))
            })?;
        for (k, v) in map {
            let v = match v {
                Value::String(s) => s,
                other => other.to_string(),
            };
            out.retain(|(n, _)| *n != k);
            out.push((k, v));
        }
    }
    for (k, v) in &opts.args {
        out.retain(|(n, _)| n != k);
        out.push((k.clone(), v.clone()));
    }
    Ok(out)
}

/// Run a workflow (run.md §1–§5). Returns the summary; errors before the session exists (bad
/// workflow, repository refused) are returned as errors with their exit code.
pub fn run(opts: &Options) -> Result<Summary> {
    let wf = crate::workflow::load(&opts.workflow)?;
    if !opts.quiet {
        for w in &wf.warnings {
            crate::error::eprint_line(&format!("prodigy: warning: {w}"));
        }
    }
    refuse_not_run_yet(&wf)?;
    let args = resolve_args(opts)?;
    let opts = &Options {
        args,
        ..opts.clone()
    };
    let git = Git::default();
    let start_dir = match &opts.path {
        Some(p) => p.clone(),
        None => std::env::current_dir().map_err(|e| Error::io("read", Path::new("."), &e))?,
    };
    let repo = worktrees::find_repo(&git, &start_dir)?;
    // Secrets, env files and the profile are checked (exit 2) and every secret value is
    // registered for masking before anything is written.
    env::resolve(&wf, opts.profile.as_deref(), &repo.checkout)?.register_masks(opts.quiet);
    if let Some(op) = worktrees::operation_in_progress(&git, &repo.checkout) {
        return Err(Error::refused(format!(
            "`{}` has {op} in progress; finish or abort it first",
            repo.checkout.display()
        )));
    }
    match worktrees::tracked_changes(&git, &repo.checkout) {
        Ok(c) if !c.is_empty() => {
            return Err(Error::refused(format!(
                "`{}` has uncommitted changes ({}); commit or stash them first: the run starts from HEAD and would not see them",
                repo.checkout.display(),
                c.len()
            )))
        }
        Ok(_) => {}
        Err(e) => return Err(Error::fatal(e.to_string())),
    }
    let base_commit = worktrees::head(&git, &repo.checkout).map_err(|e| {
        Error::refused(format!(
            "`{}` has no commit to start from ({e}); commit something first",
            repo.checkout.display()
        ))
    })?;
    if has_claude(&wf) {
        let ok = std::process::Command::new("claude")
            .arg("--version")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            return Err(Error::usage(format!(
                "`{}` has Claude steps, but `claude --version` failed; install the Claude CLI or put it on PATH",
                wf.path.display()
            )));
        }
    }
    let root = writable_root()?;
    let layout = Layout::new(&root, &repo.name).map_err(|_| {
        Error::usage(format!(
            "the repository directory name `{}` is not a valid storage name",
            repo.name
        ))
    })?;
    exec::install_signals()
        .map_err(|e| Error::fatal(format!("cannot install signal handlers: {e}")))?;

    let mapreduce = matches!(wf.kind, Kind::MapReduce(_));
    let (session_id, job_id) = new_ids(mapreduce)?;
    let lock = ResumeLock::acquire(&root, &job_id).map_err(|e| match e {
        LockRefused::Held(_) => Error::refused(format!("resume lock of `{job_id}` is held")),
        LockRefused::Io(m) => Error::fatal(m),
    })?;
    let now = Timestamp::now();
    let mut session = SessionRecord::new(
        session_id.clone(),
        if mapreduce { "MapReduce" } else { "Workflow" },
        now,
    );
    session.status = SessionStatus::Running;
    session.set_owner(&owner(now));
    let worktree = layout.worktree(&session_id)?;
    let branch = format!("prodigy-{session_id}");
    session.metadata.insert(
        "worktree".into(),
        json!({
            "path": worktree.to_string_lossy(),
            "branch": branch,
            "base_commit": base_commit,
            "original_branch": worktrees::current_branch(&git, &repo.checkout),
            "repository": repo.main.to_string_lossy(),
        }),
    );
    session.metadata.insert(
        "workflow_type".into(),
        json!(if mapreduce { "mapreduce" } else { "standard" }),
    );
    session
        .metadata
        .insert("repository_name".into(), json!(repo.name));
    session.workflow_data = Some(json!({
        "workflow_name": wf.name,
        "workflow_path": absolute(&wf.path).to_string_lossy(),
        "workflow_hash": wf.hash,
        "completed_steps": [],
        "current_step": 0,
        "head": base_commit,
        "steps": step_digest(&wf),
        "variables": {},
        "args": crate::sort::collect_object(opts.args.iter().map(|(k, v)| (k.clone(), json!(v)))),
        "profile": opts.profile,
    }));
    if mapreduce {
        session.mapreduce_data = Some(crate::store::records::MapReduceData {
            job_id: Some(job_id.clone()),
            phase: Some("Setup".into()),
            ..Default::default()
        });
    }
    journal::write_session(&layout, &session)?;
    journal::write_mapping(
        &layout,
        &SessionJobMapping {
            session_id: session_id.clone(),
            job_id: job_id.clone(),
            workflow_name: wf.name.clone(),
            created_at: now,
            extra: Default::default(),
        },
    )?;
    let mut ctx = assemble(
        git, layout, repo, session, job_id, opts, lock, &wf, &opts.args,
    )?;
    ctx.event(
        "job_started",
        json!({"workflow_name": wf.name, "workflow_path": absolute(&wf.path).to_string_lossy(), "mode": if mapreduce {"mapreduce"} else {"standard"}}),
    );
    execute(ctx, &wf, |ctx| {
        ensure_dir(&ctx.layout.worktrees_dir())?;
        worktrees::add_worktree(
            &ctx.git,
            &ctx.repo.main,
            &ctx.worktree,
            &ctx.branch,
            &base_commit,
        )?;
        // Only now is the worktree whole: a resume re-creates one that lacks this mark (a kill
        // inside `git worktree add` can leave a `.git` file without a checkout or index).
        if let Some(Value::Object(w)) = ctx.session.metadata.get_mut("worktree") {
            w.insert("created".into(), json!(true));
        }
        ctx.save_session()?;
        ctx.event(
            "worktree_created",
            json!({"path": ctx.worktree.to_string_lossy(), "branch": ctx.branch}),
        );
        Ok(session::Start::default())
    })
}

/// Build the run's context around a session record that is already written: logs, a new event
/// file of this process, the environment and the variables every step sees.
#[allow(clippy::too_many_arguments)]
pub(crate) fn assemble(
    git: Git,
    layout: Layout,
    repo: Repo,
    session: SessionRecord,
    job_id: String,
    opts: &Options,
    lock: ResumeLock,
    wf: &Workflow,
    args: &[(String, String)],
) -> Result<Ctx> {
    let session_id = session.id.clone();
    // Marked like the steps, so a resume finds the git commands this run left behind.
    let git = git.with_env("PRODIGY_SESSION_ID", &session_id);
    let worktree = layout.worktree(&session_id)?;
    let branch = format!("prodigy-{session_id}");
    let logs = layout.logs_dir(&job_id)?;
    ensure_dir(&logs)?;
    let correlation = exec::uuid_v4().unwrap_or_default();
    let events = EventLog::open(&layout, &job_id, &session_id, &correlation)?;
    // Until the worktree exists (`execute`), the values that need it (`{command}`,
    // `{condition}`) are missing; nothing runs before then.
    let mut env = env::resolve(wf, opts.profile.as_deref(), &repo.checkout)?.ready();
    env::push_prodigy_vars(&mut env, &session_id, &job_id);
    let mut vars = Vars::new();
    for (k, v) in args {
        vars.set_str(k, v);
    }
    vars.set_str("workflow.name", &wf.name);
    vars.set_str("session.id", &session_id);
    vars.set_str("job.id", &job_id);
    vars.set_str("worktree", &worktree.to_string_lossy());
    Ok(Ctx {
        git,
        layout,
        repo,
        session,
        job_id,
        worktree,
        branch,
        logs,
        events,
        env,
        vars,
        opts: opts.clone(),
        last_heartbeat: Instant::now(),
        started: Instant::now(),
        tty: std::io::stderr().is_terminal(),
        claude_logs: std::cell::Cell::new(0),
        _lock: lock,
    })
}

/// Prepare (`prepare` creates or repairs the session worktree and says where to start), then run
/// the workflow's phases. Any error marks the session Failed with the message: nothing is left
/// Running by an error.
pub(crate) fn execute(
    mut ctx: Ctx,
    wf: &Workflow,
    prepare: impl FnOnce(&mut Ctx) -> Result<session::Start>,
) -> Result<Summary> {
    let summary = (|| -> Result<Summary> {
        let start = prepare(&mut ctx)?;
        env::install(&mut ctx, wf)?;
        match &wf.kind {
            Kind::Standard(steps) => standard::run(&mut ctx, wf, steps, start),
            Kind::MapReduce(m) => mapreduce::run(&mut ctx, wf, m, start),
        }
    })();
    let summary = match summary {
        Ok(s) => s,
        Err(e) => {
            let msg = e.to_string();
            let _ = ctx.finish_session(SessionStatus::Failed, Some(msg.clone()));
            ctx.event("job_failed", json!({"error": msg}));
            let _ = ctx.events.sync();
            return Err(e);
        }
    };
    let _ = ctx.events.sync();
    Ok(summary)
}

/// `path` made absolute against the current directory (for records).
pub fn absolute(path: &Path) -> PathBuf {
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()
            .map(|d| d.join(path))
            .unwrap_or_else(|_| path.to_path_buf())
    }
}
