//! A lane: one sequence of steps run in one directory, one step at a time (a phase of a standard
//! workflow, setup, reduce, merge, or one MapReduce agent). The wait loop owns the lanes and calls
//! [`Lane::advance`] whenever something may have changed; a lane never blocks.
//!
//! Failure rules (run.md §3): a non-zero exit fails the step in every phase; `on_failure` then
//! runs (up to `max_attempts` times until it succeeds) and, unless `fail_workflow`, the step
//! counts as recovered; `commit_required` fails a step that left HEAD where it was; a timeout
//! kills the step's process group.

use super::exec::{self, Running, Spawn};
use super::{worktrees, Ctx};
use crate::store::atomic::open_append;
use crate::workflow::vars::{interpolate, Vars};
use crate::workflow::{Action, Step};
use std::ffi::OsString;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Captured output is read back up to this many bytes (run.md §3: bounded).
pub const CAPTURE_LIMIT: u64 = 1 << 20;

/// How long running steps get to end after a forwarded SIGINT/SIGTERM (run.md §5.5: 10 s).
pub const INTERRUPT_GRACE: Duration = Duration::from_secs(10);

/// What a lane reports.
#[derive(Debug)]
pub enum LaneEnd {
    /// Step `i` (0-based) completed (or was recovered by `on_failure`).
    StepDone(usize),
    /// Every step completed.
    Finished,
    /// Step `step` failed for good.
    Failed {
        /// 0-based index of the failed step.
        step: usize,
        /// Why, one line.
        error: String,
    },
    /// Stopped by SIGINT/SIGTERM; the running step was stopped with it.
    Interrupted(i32),
}

struct Current {
    idx: usize,
    run: Running,
    head_before: Option<String>,
    capture: Option<(String, PathBuf)>,
    /// `Some((attempt, error of the step))` while the `on_failure` handler runs.
    handler: Option<(u32, String)>,
}

/// One sequence of steps.
pub struct Lane<'w> {
    steps: &'w [Step],
    /// Index of the next step to start.
    pub next: usize,
    cwd: PathBuf,
    log: PathBuf,
    /// Variables visible to the steps; captures are added here.
    pub vars: Vars,
    env: Vec<(String, String)>,
    /// The running step's own `env` (run::env::step_env).
    step_env: Vec<(String, String)>,
    streaming: bool,
    cur: Option<Current>,
}

impl<'w> Lane<'w> {
    /// A lane over `steps`, run in `cwd`, logging to `log`, with extra environment `env`.
    /// `streaming`: Claude steps run in 0.4.4's streaming mode (standard, setup, merge) rather
    /// than print mode (map agents, reduce), reference §3.2.
    pub fn new(
        steps: &'w [Step],
        cwd: PathBuf,
        log: PathBuf,
        vars: Vars,
        env: Vec<(String, String)>,
        streaming: bool,
    ) -> Self {
        Lane {
            steps,
            next: 0,
            cwd,
            log,
            vars,
            env,
            step_env: Vec::new(),
            streaming,
            cur: None,
        }
    }

    /// The lane's log file.
    pub fn log(&self) -> &PathBuf {
        &self.log
    }

    /// Start the next step, or reap the running one. `None` while a step runs.
    pub fn advance(&mut self, ctx: &Ctx) -> Option<LaneEnd> {
        if self.cur.is_none() {
            if self.next >= self.steps.len() {
                return Some(LaneEnd::Finished);
            }
            let idx = self.next;
            return match self.start_step(ctx, idx) {
                Ok(()) => None,
                Err(e) => self.step_failed(ctx, idx, e),
            };
        }
        let cur = self.cur.as_mut().expect("checked");
        let outcome = cur.run.poll()?;
        let cur = self.cur.take().expect("checked");
        let idx = cur.idx;
        if let Some((attempt, main_err)) = cur.handler {
            let step = &self.steps[idx];
            let of = step
                .on_failure
                .as_ref()
                .expect("handler runs only with on_failure");
            if outcome.success() {
                if of.fail_workflow {
                    return Some(LaneEnd::Failed {
                        step: idx,
                        error: format!("{main_err} (on_failure ran; fail_workflow is set)"),
                    });
                }
                self.log_line(&format!("step {} recovered by on_failure", idx + 1));
                self.next = idx + 1;
                return Some(LaneEnd::StepDone(idx));
            }
            if attempt < of.max_attempts.max(1) {
                return match self.start_handler(ctx, idx, attempt + 1, main_err.clone()) {
                    Ok(()) => None,
                    Err(e) => Some(LaneEnd::Failed {
                        step: idx,
                        error: format!("{main_err}; on_failure: {e}"),
                    }),
                };
            }
            return Some(LaneEnd::Failed {
                step: idx,
                error: format!(
                    "{main_err}; on_failure also failed ({})",
                    outcome.describe()
                ),
            });
        }
        let step = &self.steps[idx];
        if !outcome.success() {
            return self.step_failed(
                ctx,
                idx,
                format!(
                    "step {} ({}) failed: {}",
                    idx + 1,
                    step.display(),
                    outcome.describe()
                ),
            );
        }
        if step.commit_required {
            let after = worktrees::head(&ctx.git, &self.cwd).ok();
            if after.is_none() || after == cur.head_before {
                return self.step_failed(
                    ctx,
                    idx,
                    format!(
                        "step {} ({}) has commit_required: true but made no commit",
                        idx + 1,
                        step.display()
                    ),
                );
            }
        }
        if let Some((name, file)) = &cur.capture {
            let text = read_capture(file);
            // Keep the log complete: the captured stdout is appended to it.
            if let Ok(mut f) = open_append(&self.log) {
                let _ = f.write_all(text.as_bytes());
            }
            remove_capture_file(file);
            let trimmed = text.strip_suffix('\n').unwrap_or(&text);
            let trimmed = trimmed.strip_suffix('\r').unwrap_or(trimmed);
            self.vars.set_str(name, trimmed);
        }
        self.next = idx + 1;
        Some(LaneEnd::StepDone(idx))
    }

    /// The earliest time this lane needs [`Lane::advance`] again without a signal.
    pub fn wait_for(&self) -> Duration {
        self.cur
            .as_ref()
            .and_then(|c| c.run.next_deadline())
            .map(|d| d.saturating_duration_since(Instant::now()))
            .unwrap_or(Duration::from_secs(1))
            .max(Duration::from_millis(5))
    }

    /// Forward `sig` to the running step's group and wait for it to end (killing it after
    /// [`INTERRUPT_GRACE`]).
    pub fn interrupt(&mut self, sig: i32) {
        if let Some(mut c) = self.cur.take() {
            c.run.signal_group(sig);
            let o = c.run.finish(INTERRUPT_GRACE);
            self.log_line(&format!("interrupted by signal {sig}: {}", o.describe()));
        }
    }

    /// Resume rule (run.md §6, git is the truth): when the step at `next` has
    /// `commit_required` and HEAD has moved from `recorded` (HEAD when the step before it
    /// completed), the interrupted run's step made its commit before the kill; it counts as
    /// done instead of running twice. Returns the index of the step counted.
    pub fn skip_if_committed(&mut self, ctx: &Ctx, recorded: Option<&str>) -> Option<usize> {
        let recorded = recorded?;
        let step = self.steps.get(self.next)?;
        if !step.commit_required {
            return None;
        }
        let now = worktrees::head(&ctx.git, &self.cwd).ok()?;
        if now == recorded {
            return None;
        }
        let i = self.next;
        self.log_line(&format!(
            "step {} ({}) made its commit ({now}) before the run was interrupted: counted as done",
            i + 1,
            step.display()
        ));
        self.next += 1;
        Some(i)
    }

    /// HEAD of the lane's directory, for checkpoints (see [`Lane::skip_if_committed`]).
    pub fn head(&self, ctx: &Ctx) -> Option<String> {
        worktrees::head(&ctx.git, &self.cwd).ok()
    }

    /// Whether a step is running.
    pub fn busy(&self) -> bool {
        self.cur.is_some()
    }

    fn step_failed(&mut self, ctx: &Ctx, idx: usize, error: String) -> Option<LaneEnd> {
        self.log_line(&error);
        if self.steps[idx].on_failure.is_some() {
            match self.start_handler(ctx, idx, 1, error.clone()) {
                Ok(()) => return None,
                Err(e) => {
                    return Some(LaneEnd::Failed {
                        step: idx,
                        error: format!("{error}; on_failure: {e}"),
                    })
                }
            }
        }
        Some(LaneEnd::Failed { step: idx, error })
    }

    fn log_line(&self, msg: &str) {
        let msg = crate::mask::mask_str(msg);
        if let Ok(mut f) = open_append(&self.log) {
            let _ = writeln!(f, "==> [{}] {msg}", crate::store::records::Timestamp::now());
        }
    }

    fn start_step(&mut self, ctx: &Ctx, idx: usize) -> Result<(), String> {
        let step = &self.steps[idx];
        let text = interpolate(step.text(), &self.vars)
            .map_err(|e| format!("step {} ({}): {e}", idx + 1, step.display()))?;
        self.log_line(&format!("step {}: {}", idx + 1, step.display()));
        self.step_env = super::env::step_env(&step.more.env, &self.vars, &ctx.env, &self.cwd)
            .map_err(|e| format!("step {} ({}): {e}", idx + 1, step.display()))?;
        let head_before = if step.commit_required {
            Some(worktrees::head(&ctx.git, &self.cwd).map_err(|e| e.to_string())?)
        } else {
            None
        };
        let capture = step.capture.as_ref().map(|name| {
            let var = match name.as_str() {
                "shell" => "shell.output".to_string(),
                "claude" => "claude.output".to_string(),
                n => n.to_string(),
            };
            let file = self.log.with_extension(format!("step{}.out", idx + 1));
            (var, file)
        });
        let run = self.spawn(
            ctx,
            &step.action,
            &text,
            step.timeout,
            capture.as_ref().map(|c| &c.1),
        )?;
        self.cur = Some(Current {
            idx,
            run,
            head_before,
            capture,
            handler: None,
        });
        Ok(())
    }

    fn start_handler(
        &mut self,
        ctx: &Ctx,
        idx: usize,
        attempt: u32,
        main_err: String,
    ) -> Result<(), String> {
        let of = self.steps[idx].on_failure.as_ref().expect("caller checked");
        let raw = of.action.text();
        let text = interpolate(raw, &self.vars)
            .map_err(|e| format!("on_failure of step {}: {e}", idx + 1))?;
        self.log_line(&format!(
            "on_failure of step {} (attempt {attempt})",
            idx + 1
        ));
        let run = self.spawn(ctx, &of.action, &text, self.steps[idx].timeout, None)?;
        self.cur = Some(Current {
            idx,
            run,
            head_before: None,
            capture: None,
            handler: Some((attempt, main_err)),
        });
        Ok(())
    }

    fn spawn(
        &self,
        ctx: &Ctx,
        action: &Action,
        text: &str,
        timeout: Option<u64>,
        capture: Option<&PathBuf>,
    ) -> Result<Running, String> {
        let log = open_append(&self.log)
            .map_err(|e| format!("cannot open log `{}`: {e}", self.log.display()))?;
        let err = log.try_clone().map_err(|e| e.to_string())?;
        let mut env = ctx.env.clone();
        env.extend(self.step_env.iter().cloned());
        env.extend(self.env.iter().cloned());
        let (argv, out): (Vec<OsString>, std::fs::File) = match action {
            // Refused before the run starts (`run::not_run_yet`); never reached.
            Action::WriteFile(_) | Action::Foreach(_) => {
                return Err(format!(
                    "`{}` steps are not run by this version of prodigy run yet",
                    action.kind()
                ))
            }
            Action::Shell(_) => (
                vec!["sh".into(), "-c".into(), text.into()],
                match capture {
                    Some(p) => new_file(p)?,
                    None => log,
                },
            ),
            Action::Claude(_) if self.streaming => {
                // reference §3.2 streaming mode; the stream goes to its own JSONL log.
                let n = ctx.claude_logs.get() + 1;
                ctx.claude_logs.set(n);
                let p = ctx.log_path(&format!(
                    "claude-{}-{n}.jsonl",
                    crate::store::records::format_file_name_timestamp(
                        &crate::store::records::Timestamp::now()
                    )
                ));
                self.log_line(&format!("claude stream: {}", p.display()));
                let f = match capture {
                    Some(c) => new_file(c)?,
                    None => new_file(&p)?,
                };
                (
                    vec![
                        "claude".into(),
                        "--output-format".into(),
                        "stream-json".into(),
                        "--verbose".into(),
                        "--dangerously-skip-permissions".into(),
                        text.into(),
                    ],
                    f,
                )
            }
            Action::Claude(_) => {
                env.push(("PRODIGY_CLAUDE_STREAMING".into(), "false".into()));
                (
                    vec![
                        "claude".into(),
                        "--print".into(),
                        "--dangerously-skip-permissions".into(),
                        text.into(),
                    ],
                    match capture {
                        Some(p) => new_file(p)?,
                        None => log,
                    },
                )
            }
        };
        exec::spawn(Spawn {
            argv,
            cwd: self.cwd.clone(),
            env,
            stdout: out,
            stderr: err,
            timeout: timeout.map(Duration::from_secs),
        })
        .map_err(|e| e.to_string())
    }
}

fn new_file(p: &std::path::Path) -> Result<std::fs::File, String> {
    open_append(p).map_err(|e| format!("cannot open `{}`: {e}", p.display()))
}

fn read_capture(p: &std::path::Path) -> String {
    let mut buf = Vec::new();
    if let Ok(f) = std::fs::File::open(p) {
        let _ = f.take(CAPTURE_LIMIT).read_to_end(&mut buf);
    }
    String::from_utf8_lossy(&buf).into_owned()
}

/// The capture file is ours and its content is now in the log: unlink it through fsops.
fn remove_capture_file(p: &std::path::Path) {
    if let (Some(dir), Some(name)) = (p.parent(), p.file_name()) {
        if let Ok(d) = crate::store::fsops::Dir::open_root(dir) {
            let _ = d.unlink(name);
        }
    }
}
