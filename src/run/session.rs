//! One session of a run: its context ([`Ctx`], shared by the phases), what it ended with
//! ([`Summary`]), and its end when interrupted ([`pause`]). The phases (`standard`, `mapreduce`),
//! the steps (`lane`, `steps`) and the final merge (`merge`) sit above this module; it imports
//! none of them.

use super::exec;
use super::mapstate::MapState;
use super::worktrees::Repo;
use crate::error::{Exit, Result};
use crate::git::Git;
use crate::store::journal::{self, EventLog};
use crate::store::layout::Layout;
use crate::store::lock::ResumeLock;
use crate::store::records::{SessionOwner, SessionRecord, SessionStatus, Timestamp};
use crate::workflow::vars::Vars;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How often the session record's heartbeat is refreshed while a run is live (run.md §5.1: at
/// least every 60 s).
pub const HEARTBEAT: Duration = Duration::from_secs(30);

/// Parsed `prodigy run` options.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Options {
    /// The workflow file.
    pub workflow: PathBuf,
    /// `-y`: merge the session branch without asking.
    pub yes: bool,
    /// `--path REPO`: the repository (default: the current directory's).
    pub path: Option<PathBuf>,
    /// `--arg NAME=VALUE`, in order.
    pub args: Vec<(String, String)>,
    /// `--max-parallel N`: overrides `map.max_parallel`.
    pub max_parallel: Option<usize>,
    /// `-q`: errors only.
    pub quiet: bool,
    /// `--json`: one summary document on stdout.
    pub json: bool,
    /// `--dry-run`: print the plan, run and write nothing.
    pub dry_run: bool,
    /// `--profile NAME`.
    pub profile: Option<String>,
    /// `--param-file FILE`s, in order: each a JSON or YAML map of `--arg`s (`--arg` wins).
    pub param_files: Vec<PathBuf>,
}

/// What a run ended with (the `--json` document).
#[derive(Clone, Debug, Default)]
pub struct Summary {
    /// Session id.
    pub session_id: String,
    /// Job id (= session id for standard workflows).
    pub job_id: String,
    /// `"completed"`, `"failed"`, `"paused"`.
    pub status: String,
    /// Why it ended that way, one line.
    pub reason: String,
    /// Work items (MapReduce) or steps (standard) in all.
    pub total: u64,
    /// Completed work items or steps.
    pub completed: u64,
    /// Failed work items (in the DLQ) or steps.
    pub failed: u64,
    /// What happened to the session branch: merged, nothing-to-merge, not-merged, failed.
    pub merge: String,
    /// The process exit status.
    pub exit: u8,
}

/// The whole state of one run, shared by the phases.
pub(crate) struct Ctx {
    pub git: Git,
    pub layout: Layout,
    pub repo: Repo,
    pub session: SessionRecord,
    pub job_id: String,
    pub worktree: PathBuf,
    pub branch: String,
    pub logs: PathBuf,
    pub events: EventLog,
    pub env: Vec<(String, String)>,
    pub vars: Vars,
    pub opts: Options,
    pub last_heartbeat: Instant,
    pub started: Instant,
    pub tty: bool,
    pub claude_logs: std::cell::Cell<u32>,
    /// Held for the whole run (run.md §5); never read, dropped with the context.
    pub(super) _lock: ResumeLock,
}

impl Ctx {
    /// Progress on a terminal only (run.md §1), to stderr.
    pub fn progress(&self, msg: &str) {
        if self.tty && !self.opts.quiet && !self.opts.json {
            crate::error::eprint_line(&format!("[{:>4}s] {msg}", self.started.elapsed().as_secs()));
        }
    }

    /// A warning on stderr (not under `-q`).
    pub fn warn(&self, msg: &str) {
        if !self.opts.quiet {
            crate::error::eprint_line(&format!("prodigy: warning: {msg}"));
        }
    }

    /// Append an event; a failure to write one is a warning, not the end of the run.
    pub fn event(&mut self, kind: &str, fields: Value) {
        if let Err(e) = self.events.emit(kind, fields) {
            self.warn(&e.to_string());
        }
    }

    /// Rewrite the session record with a fresh `updated_at` and owner heartbeat.
    pub fn save_session(&mut self) -> Result<()> {
        let now = Timestamp::now();
        self.session.updated_at = Some(now);
        if self.session.owner().is_some() {
            self.session.set_owner(&owner(now));
        }
        self.last_heartbeat = Instant::now();
        journal::write_session(&self.layout, &self.session)
    }

    /// The record `metadata.worktree.{key}` of the session record (an interrupted merge's:
    /// `merging`, `final_merging`), if any.
    pub fn worktree_record(&self, key: &str) -> Option<Value> {
        self.session
            .metadata
            .get("worktree")
            .and_then(|w| w.get(key))
            .cloned()
    }

    /// Drop `metadata.worktree.{key}` from the session record, rewriting it only when it was
    /// there.
    pub fn forget_worktree_record(&mut self, key: &str) -> Result<()> {
        let had = match self.session.metadata.get_mut("worktree") {
            Some(Value::Object(w)) => w.remove(key).is_some(),
            _ => false,
        };
        if had {
            self.save_session()?;
        }
        Ok(())
    }

    /// Refresh the heartbeat when it is due.
    pub fn heartbeat(&mut self) -> Result<()> {
        if self.last_heartbeat.elapsed() >= HEARTBEAT {
            self.save_session()?;
        }
        Ok(())
    }

    /// Finish a session: final status, `completed_at`, owner removed (run.md §5.5).
    pub fn finish_session(&mut self, status: SessionStatus, error: Option<String>) -> Result<()> {
        self.session.status = status;
        if matches!(
            status,
            SessionStatus::Completed | SessionStatus::Failed | SessionStatus::Cancelled
        ) {
            self.session.completed_at = Some(Timestamp::now());
            self.session.metadata.remove("owner");
        }
        // A paused session keeps its owner: once this process is gone the dead pid is what
        // tells `clean` it is resumable now rather than active for another hour.
        self.session.error = error;
        self.save_session()
    }

    /// The log file of a phase or agent, `logs/{repo}/{job_id}/{name}`.
    pub fn log_path(&self, name: &str) -> PathBuf {
        self.logs.join(name)
    }
}

/// Pause after SIGINT/SIGTERM: session Paused (its checkpoint already says what completed).
pub(crate) fn pause(ctx: &mut Ctx, mut summary: Summary, sig: i32) -> Result<Summary> {
    summary.status = "paused".into();
    summary.reason = format!("interrupted by signal {sig}");
    summary.exit = signal_exit(sig);
    summary.merge = "not-merged".into();
    ctx.event("job_paused", json!({"signal": sig}));
    ctx.finish_session(SessionStatus::Paused, None)?;
    Ok(summary)
}

/// Where a run starts: all defaults for a new run.
#[derive(Default)]
pub struct Start {
    /// Standard: the first step to run. MapReduce: setup steps already completed.
    pub from_step: usize,
    /// Captured variables restored from the checkpoint (standard steps, setup outputs).
    pub vars: Vec<(String, Value)>,
    /// MapReduce: setup's checkpoint says completed.
    pub setup_complete: bool,
    /// MapReduce: the work items and their state, rebuilt from the checkpoint and git.
    pub(crate) map: Option<MapState>,
    /// MapReduce: reduce steps already completed.
    pub reduce_done: usize,
    /// Variables captured by completed reduce steps.
    pub reduce_vars: Vec<(String, Value)>,
    /// When the job was created.
    pub created: Option<Timestamp>,
    /// HEAD recorded when the last step of the phase being resumed completed (standard or
    /// setup), for [`super::lane::Lane::skip_if_committed`].
    pub head: Option<String>,
    /// The same for reduce.
    pub reduce_head: Option<String>,
}

/// The live owner of a session record (run.md §5.1): this process, this host, `now`.
pub(crate) fn owner(now: Timestamp) -> SessionOwner {
    SessionOwner {
        pid: std::process::id(),
        hostname: crate::procs::hostname(),
        heartbeat_at: now,
    }
}

/// Record a worktree whose removal failed (storage-format §4.7) and warn.
pub(crate) fn register_orphan(ctx: &mut Ctx, path: &Path, agent: &str, item: &str, error: &str) {
    let entry = crate::store::records::OrphanEntry {
        path: path.to_path_buf(),
        agent_id: agent.to_string(),
        item_id: item.to_string(),
        failed_at: Timestamp::now(),
        error: error.to_string(),
        extra: Default::default(),
    };
    if let Err(e) = journal::register_orphan(&ctx.layout, &ctx.job_id, entry) {
        ctx.warn(&e.to_string());
    }
    ctx.warn(&format!(
        "{error}; recorded for `prodigy worktree clean-orphaned`"
    ));
}

/// The exit status of a finished run.
pub fn exit_of(s: &Summary) -> Exit {
    match s.exit {
        0 => Exit::Ok,
        130 => Exit::Interrupted,
        143 => Exit::Terminated,
        _ => Exit::Failures,
    }
}

/// Exit status for an interrupting signal (130 for SIGINT, 143 for SIGTERM).
pub(crate) fn signal_exit(sig: i32) -> u8 {
    if sig == exec::SIGTERM {
        143
    } else {
        130
    }
}
