//! A lane: one sequence of steps run in one directory, one step at a time (a phase of a standard
//! workflow, setup, reduce, merge, or one MapReduce agent). The wait loop owns the lanes and calls
//! [`Lane::advance`] whenever something may have changed; a lane never blocks.
//!
//! Failure rules (run.md §3): a non-zero exit fails the step in every phase; `on_failure` then
//! runs (up to `max_attempts` times until it succeeds) and, unless `fail_workflow`, the step
//! counts as recovered; `commit_required` fails a step that left HEAD where it was; a timeout
//! kills the step's process group.
//!
//! Handlers are steps of their own, with every modifier (a handler may capture, have its own
//! `on_failure`, …): a step being handled is a frame on a stack, its handler the frame above it.
//! When a step's command ends:
//! 1. its capture is kept (so handlers see `${NAME.exit_code}`);
//! 2. when `on_exit_code` has an entry for the exit code, that step runs and decides: it
//!    succeeds → the step counts as succeeded (for code 0: then `commit_required` and
//!    `on_success` as below), it fails → the step fails and `on_failure` does not run (the
//!    code was handled). `on_failure` therefore runs only for codes without an entry, and the
//!    code looked up is always the step's own (0.4.4 looks up the code of the recovered step);
//! 3. a failure (non-zero exit, kill, timeout, output not fitting `capture_format`, no commit
//!    under `commit_required`) runs `on_failure`: `true` ignores it; a command, a step or a list
//!    of steps runs up to `max_attempts` times until every handler step succeeds (the
//!    handler's `commit_required` wants a commit made by the attempt); then the step is
//!    recovered, or fails anyway under `fail_workflow`;
//! 4. a success runs `on_success`; when it fails, the step fails (`on_failure` does not run:
//!    the step itself succeeded).

#[path = "steps/validate.rs"]
mod validate;

use super::exec::{self, Running, Spawn};
use super::session::{Ctx, HEARTBEAT};
use super::steps::capture::Pending;
use super::steps::{command, foreach, write_file as files};
use super::worktrees;
use crate::store::atomic::open_append;
use crate::workflow::vars::{interpolate, Vars};
use crate::workflow::{Action, Step};
use std::borrow::Cow;
use std::ffi::OsString;
use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

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

/// What a frame waits for while the frame above it (a handler) runs.
#[derive(Debug)]
enum Stage {
    /// Its own command (or nothing yet).
    Own,
    /// `on_exit_code` for this code.
    ExitCode(i32),
    /// `on_success`.
    Success,
    /// `on_failure`: attempt (1-based), the step's error, the handler step running (0-based),
    /// HEAD when the attempt started (for the handler's `commit_required`).
    Failure {
        attempt: u32,
        error: String,
        at: usize,
        head: Option<String>,
    },
    /// `validate` and its `on_incomplete` (steps/validate.rs).
    Validate(validate::Loop),
}

/// A step being run: a lane step, or a handler of the frame below it.
struct Frame {
    step: Step,
    /// `step 3 (shell: make)`, `on_failure (shell: fix)`: for messages.
    label: String,
    stage: Stage,
    run: Option<Running>,
    head_before: Option<String>,
    capture: Option<Pending>,
    /// The worktree before the step, when it has `id` + `outputs` (`steps::outputs`).
    outputs: Option<super::steps::outputs::Before>,
    /// `working_dir` in effect (relative to the lane's directory); a handler starts from its
    /// step's.
    dir: Option<String>,
    /// Step `env` in effect, interpolated; a handler starts from its step's.
    env: Vec<(String, String)>,
    /// A running `foreach` (instead of a command).
    each: Option<Box<foreach::Run>>,
}

/// What to do after a frame moved on.
enum Next {
    /// A command runs; come back when it ends.
    Wait,
    /// Run this handler step above the frame.
    Push(Step, String),
    /// The frame is done.
    Done(Result<(), String>),
}

/// What happened to the top frame.
enum Ev {
    Start,
    Ended(exec::Outcome),
    Child(Result<(), String>),
    /// The frame's `foreach` ended.
    Each(Result<(), String>),
    /// A resumed step: straight to its validation.
    Revalidate,
}

/// One sequence of steps.
pub struct Lane<'w> {
    steps: Cow<'w, [Step]>,
    /// Index of the next step to start.
    pub next: usize,
    cwd: PathBuf,
    log: PathBuf,
    /// Variables visible to the steps; captures are added here.
    pub vars: Vars,
    env: Vec<(String, String)>,
    streaming: bool,
    stack: Vec<Frame>,
    /// Prefix of capture-file tags (a `foreach` item's lane: `step2.i0.`).
    pub tag: String,
    /// A `foreach` item succeeded since the last look: its progress is in `vars`, to be
    /// checkpointed ([`super::session::Ctx::run_lane`]).
    pub progressed: bool,
    /// Set when the lane's variables changed inside a step in a way a resume needs (the
    /// validate loop's attempt count); see [`Lane::take_checkpoint`].
    checkpoint: bool,
    /// Warnings for the terminal (an unmet validation under `fail_workflow: false`), taken by
    /// the driver with [`Lane::take_warnings`].
    warnings: Vec<String>,
    /// Resume: step `next` made its commit before the kill and has `validate`: validate it
    /// again instead of running it again.
    revalidate: bool,
    /// The phase's own `timeout` (`setup.timeout`, `merge.timeout`): when it passes, what runs
    /// gets SIGTERM (SIGKILL 5 s later) and the lane fails ([`Ctx::run_lane`]).
    pub deadline: Option<(Instant, u64)>,
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
            steps: Cow::Borrowed(steps),
            next: 0,
            cwd,
            log,
            vars,
            env,
            streaming,
            stack: Vec::new(),
            tag: String::new(),
            progressed: false,
            checkpoint: false,
            warnings: Vec::new(),
            revalidate: false,
            deadline: None,
        }
    }

    /// A lane owning its steps (a `foreach` item's `do`).
    pub fn owned(
        steps: Vec<Step>,
        cwd: PathBuf,
        log: PathBuf,
        vars: Vars,
        env: Vec<(String, String)>,
        streaming: bool,
    ) -> Lane<'static> {
        let mut l = Lane::new(&[], cwd, log, vars, env, streaming);
        l.steps = Cow::Owned(steps);
        l
    }

    /// Whether the variables changed mid-step in a way the phase's checkpoint must keep (then
    /// the driver rewrites it: steps `0..next` done, the current variables); resets the flag.
    pub fn take_checkpoint(&mut self) -> bool {
        std::mem::take(&mut self.checkpoint)
    }

    /// The fields of a `foreach_item_completed` event after [`Lane::progressed`] was set
    /// (`step`: 0-based index of the lane's step running the `foreach`).
    pub fn foreach_progress(&self) -> Option<serde_json::Value> {
        let each = self.stack.iter().rev().find_map(|f| f.each.as_deref())?;
        let mut v = each.progress();
        v["step"] = self.next.into();
        Some(v)
    }

    /// Warnings to show on the terminal, once.
    pub fn take_warnings(&mut self) -> Vec<String> {
        std::mem::take(&mut self.warnings)
    }

    /// The lane's log file.
    pub fn log(&self) -> &PathBuf {
        &self.log
    }

    /// Start the next step, or reap the running one and move on (handlers included). `None`
    /// while a command runs.
    pub fn advance(&mut self, ctx: &Ctx) -> Option<LaneEnd> {
        let mut ev = match self.stack.last_mut() {
            None => {
                if self.next >= self.steps.len() {
                    return Some(LaneEnd::Finished);
                }
                let idx = self.next;
                let step = self.steps[idx].clone();
                let label = format!("step {} ({})", idx + 1, step.display());
                self.log_line(&format!("step {}: {}", idx + 1, step.display()));
                self.push(step, label);
                if std::mem::take(&mut self.revalidate) || self.validating_at_resume() {
                    self.log_line("resumed: the step made its commit; validating it again");
                    Ev::Revalidate
                } else {
                    Ev::Start
                }
            }
            Some(top) if top.each.is_some() => {
                let each = top.each.as_mut().expect("checked");
                let r = each.poll(
                    ctx,
                    &mut self.vars,
                    &mut self.progressed,
                    &mut self.warnings,
                )?;
                top.each = None;
                Ev::Each(r)
            }
            Some(top) => match top.run.as_mut() {
                Some(run) => {
                    let o = run.poll()?;
                    top.run = None;
                    Ev::Ended(o)
                }
                None => Ev::Start,
            },
        };
        loop {
            let next = match ev {
                Ev::Start => self.start(ctx),
                Ev::Ended(o) => self.ended(ctx, o),
                Ev::Child(r) => self.child_done(ctx, r),
                Ev::Each(Ok(())) => self.succeeded(ctx),
                Ev::Each(Err(e)) => {
                    let label = self.top().label.clone();
                    self.failed(ctx, format!("{label}: {e}"))
                }
                Ev::Revalidate => self.validate_begin(ctx),
            };
            ev = match next {
                Next::Wait => return None,
                Next::Push(step, label) => {
                    self.push(step, label);
                    if self.checkpoint {
                        // The checkpoint that names this handler's attempt (validate's
                        // on_incomplete) is written by the driver before the handler starts,
                        // so a kill cannot land between its start and its record; the frame
                        // starts at the next advance (see `wait_for`).
                        return None;
                    }
                    Ev::Start
                }
                Next::Done(r) => {
                    self.stack.pop();
                    if !self.stack.is_empty() {
                        Ev::Child(r)
                    } else {
                        let idx = self.next;
                        return Some(match r {
                            Ok(()) => {
                                self.next = idx + 1;
                                LaneEnd::StepDone(idx)
                            }
                            Err(error) => LaneEnd::Failed { step: idx, error },
                        });
                    }
                }
            };
        }
    }

    fn push(&mut self, step: Step, label: String) {
        let (dir, env) = match self.stack.last() {
            Some(p) => (p.dir.clone(), p.env.clone()),
            None => (None, Vec::new()),
        };
        self.stack.push(Frame {
            dir,
            env,
            step,
            label,
            stage: Stage::Own,
            run: None,
            head_before: None,
            capture: None,
            each: None,
            outputs: None,
        });
    }

    fn top(&mut self) -> &mut Frame {
        self.stack.last_mut().expect("a frame")
    }

    /// Start the top frame's command.
    fn start(&mut self, ctx: &Ctx) -> Next {
        let f = self.stack.last().expect("a frame");
        if let Some(w) = &f.step.more.when {
            // `${…}` first, then the expression (run.md §2 "Expressions"); false skips the
            // step and its handlers, and the step counts as done.
            let label = f.label.clone();
            let run = interpolate(&w.text, &self.vars)
                .map_err(|e| format!("`when` (line {}): {e}", w.line))
                .and_then(|t| {
                    crate::workflow::expr::eval_when(&t)
                        .map_err(|e| format!("`when` (line {}): `{t}`: {e}", w.line))
                });
            match run {
                Ok(true) => {}
                Ok(false) => {
                    self.log_line(&format!("{label} skipped: `when: {}` is false", w.text));
                    return Next::Done(Ok(()));
                }
                Err(e) => return self.failed(ctx, format!("{label}: {e}")),
            }
        }
        match self.start_command(ctx) {
            Ok(None) if self.stack.last().is_some_and(|f| f.each.is_some()) => {
                // Start the first items now rather than after the next wake-up.
                let Lane {
                    stack,
                    vars,
                    progressed,
                    warnings,
                    ..
                } = self;
                let top = stack.last_mut().expect("a frame");
                match top
                    .each
                    .as_mut()
                    .expect("checked")
                    .poll(ctx, vars, progressed, warnings)
                {
                    None => Next::Wait,
                    Some(r) => {
                        top.each = None;
                        let label = top.label.clone();
                        match r {
                            Ok(()) => self.succeeded(ctx),
                            Err(e) => self.failed(ctx, format!("{label}: {e}")),
                        }
                    }
                }
            }
            Ok(None) => Next::Wait,
            Ok(Some(done)) => self.ended(ctx, done),
            Err(e) => {
                let label = self.top().label.clone();
                self.failed(ctx, format!("{label}: {e}"))
            }
        }
    }

    /// Start the top frame's command; `Some` when it ran to its end at once (`write_file`).
    fn start_command(&mut self, ctx: &Ctx) -> Result<Option<exec::Outcome>, String> {
        let depth = self.stack.len();
        let f = self.stack.last().expect("a frame");
        let step = &f.step;
        let (mut dir, mut env) = (f.dir.clone(), f.env.clone());
        // Step `env` (every value form, run::env::step_env): later than the workflow's, and
        // `${NAME}` in the step's own text. A secret among them is masked wherever it is written.
        let mut scoped = None;
        for (k, v) in super::env::step_env(&step.more.env, &self.vars, &ctx.env, &self.cwd)? {
            scoped
                .get_or_insert_with(|| self.vars.clone())
                .set_str(&k, &v);
            env.retain(|(n, _)| *n != k);
            env.push((k, v));
        }
        if let Some(w) = &step.more.working_dir {
            let w = interpolate(w, &self.vars).map_err(|e| format!("`working_dir`: {e}"))?;
            // Relative to the worktree, not to the handled step's directory.
            dir = Some(w);
        }
        let text = interpolate(step.text(), scoped.as_ref().unwrap_or(&self.vars))?;
        let cwd = match &dir {
            // Checked at every start, handlers too: a step may have replaced it by a symlink.
            Some(d) => files::resolve_dir(&self.cwd, d, "working_dir")?,
            None => self.cwd.clone(),
        };
        let head_before = if step.commit_required {
            Some(worktrees::head(&ctx.git, &self.cwd).map_err(|e| e.to_string())?)
        } else {
            None
        };
        let outputs = match (&step.more.id, step.more.outputs.is_empty()) {
            (Some(_), false) => Some(super::steps::outputs::Before::take(&ctx.git, &self.cwd)?),
            _ => None,
        };
        let tag = format!(
            "{}step{}{}",
            self.tag,
            self.next + 1,
            ".h".repeat(depth - 1)
        );
        let output_file = match &step.more.output_file {
            Some(f) => Some(interpolate(f, &self.vars).map_err(|e| format!("`output_file`: {e}"))?),
            None => None,
        };
        let capture = Pending::for_step(step, &self.log, &tag, dir.as_deref(), output_file);
        if let Some(c) = &capture {
            c.clear_stale();
        }
        if let Action::WriteFile(w) = &step.action {
            // In prodigy itself, at once: `text` is the interpolated path.
            let vars = scoped.as_ref().unwrap_or(&self.vars);
            let content = interpolate(&w.content, vars)?;
            let rel = match &dir {
                Some(d) => format!("{d}/{text}"),
                None => text.clone(),
            };
            let n = files::write_file(&self.cwd, &rel, &content, &w.format, w.mode, w.create_dirs)?;
            let msg = format!("Wrote {n} bytes to {text}\n");
            let to = capture
                .as_ref()
                .and_then(|c| c.out.clone())
                .unwrap_or_else(|| self.log.clone());
            if let Ok(mut f) = open_append(&to) {
                let _ = f.write_all(msg.as_bytes());
            }
            let f = self.top();
            f.dir = dir;
            f.env = env;
            f.head_before = head_before;
            f.capture = capture;
            f.outputs = outputs;
            return Ok(Some(exec::Outcome::Exited(0)));
        }
        if let Action::Foreach(fe) = &step.action {
            let mut all = self.env.clone();
            all.extend(env.iter().cloned());
            let place = foreach::Place {
                cwd: &self.cwd,
                dir: &cwd,
                log: &self.log,
                tag: &tag,
                env: all,
                streaming: self.streaming,
                timeout: step.timeout,
            };
            let (run, note) =
                foreach::Run::start(fe, &text, ctx, place, scoped.as_ref().unwrap_or(&self.vars))?;
            if let Some(n) = note {
                self.log_line(&n);
            }
            let f = self.top();
            f.dir = dir;
            f.env = env;
            f.head_before = head_before;
            f.outputs = outputs;
            f.each = Some(Box::new(run));
            return Ok(None);
        }
        let run = self.spawn(
            ctx,
            (&step.action, &text, step.timeout),
            &cwd,
            &env,
            capture.as_ref(),
        )?;
        let f = self.top();
        f.dir = dir;
        f.env = env;
        f.run = Some(run);
        f.head_before = head_before;
        f.capture = capture;
        f.outputs = outputs;
        Ok(None)
    }

    /// The top frame's command ended with `o`.
    fn ended(&mut self, ctx: &Ctx, o: exec::Outcome) -> Next {
        let (log, cwd) = (self.log.clone(), self.cwd.clone());
        let captured = match self.top().capture.take() {
            Some(p) => p.finish(&o, &log, &cwd, &mut self.vars),
            None => Ok(()),
        };
        let f = self.stack.last().expect("a frame");
        let label = f.label.clone();
        if o.success() {
            if let Err(e) = captured {
                return self.failed(ctx, format!("{label}: {e}"));
            }
        }
        if let exec::Outcome::Exited(code) = o {
            if let Some((_, h)) = f
                .step
                .more
                .on_exit_code
                .iter()
                .find(|(c, _)| *c == code as i64)
            {
                let h = h.clone();
                self.log_line(&format!(
                    "{label} exited with {code}: on_exit_code {code} runs"
                ));
                self.top().stage = Stage::ExitCode(code);
                let l = format!("on_exit_code {code} ({})", h.display());
                return Next::Push(h, l);
            }
        }
        if !o.success() {
            return self.failed(ctx, format!("{label} failed: {}", o.describe()));
        }
        self.succeeded(ctx)
    }

    /// The top frame's command succeeded: `commit_required`, then `on_success`.
    fn succeeded(&mut self, ctx: &Ctx) -> Next {
        let f = self.stack.last().expect("a frame");
        if f.step.commit_required {
            let after = worktrees::head(&ctx.git, &self.cwd).ok();
            if after.is_none() || after == f.head_before {
                let e = format!("{} has commit_required: true but made no commit", f.label);
                return self.failed(ctx, e);
            }
        }
        // `id` + `outputs`: `${ID.OUT}` from the files the step created or changed.
        if let Some(before) = &f.outputs {
            match before.resolve(&ctx.git, &self.cwd, &f.step, &mut self.vars) {
                Ok(notes) => notes.iter().for_each(|n| self.log_line(n)),
                Err(e) => {
                    let e = format!("{}: {e}", f.label);
                    return self.failed(ctx, e);
                }
            }
        }
        if f.step.more.validate.is_some() {
            return self.validate_begin(ctx);
        }
        self.after_validate()
    }

    /// The top frame succeeded and its validation (if any) passed: `on_success`.
    fn after_validate(&mut self) -> Next {
        let f = self.stack.last().expect("a frame");
        if let Some(ok) = &f.step.more.on_success {
            let ok = ok.clone();
            let l = format!("on_success ({})", ok.display());
            self.top().stage = Stage::Success;
            return Next::Push(ok, l);
        }
        Next::Done(Ok(()))
    }

    /// The top frame failed with `error`: its `on_failure`, if any.
    fn failed(&mut self, ctx: &Ctx, error: String) -> Next {
        self.log_line(&error);
        let f = self.stack.last().expect("a frame");
        let Some(of) = &f.step.on_failure else {
            return Next::Done(Err(error));
        };
        if of.ignore {
            self.log_line(&format!("{}: failure ignored (on_failure: true)", f.label));
            return Next::Done(Ok(()));
        }
        self.handler(ctx, 1, 0, error)
    }

    /// Run handler step `at` of `on_failure` attempt `attempt`.
    fn handler(&mut self, ctx: &Ctx, attempt: u32, at: usize, error: String) -> Next {
        let f = self.stack.last().expect("a frame");
        let of = f.step.on_failure.as_ref().expect("caller checked");
        let step = match of.steps.get(at) {
            Some(s) => s.clone(),
            None => {
                let mut s = Step::new(of.action.clone(), f.step.line);
                s.timeout = f.step.timeout;
                s
            }
        };
        let head = if at == 0 {
            if of.commit_required {
                worktrees::head(&ctx.git, &self.cwd).ok()
            } else {
                None
            }
        } else {
            match &f.stage {
                Stage::Failure { head, .. } => head.clone(),
                _ => None,
            }
        };
        if at == 0 {
            self.log_line(&format!("on_failure of {} (attempt {attempt})", f.label));
        }
        let l = format!("on_failure ({})", step.display());
        self.top().stage = Stage::Failure {
            attempt,
            error,
            at,
            head,
        };
        Next::Push(step, l)
    }

    /// The handler above the top frame ended with `r`.
    fn child_done(&mut self, ctx: &Ctx, r: Result<(), String>) -> Next {
        let f = self.top();
        let stage = std::mem::replace(&mut f.stage, Stage::Own);
        let label = f.label.clone();
        match stage {
            Stage::Own => Next::Done(r),
            Stage::ExitCode(code) => match r {
                Ok(()) if code == 0 => self.succeeded(ctx),
                Ok(()) => {
                    self.log_line(&format!("{label} handled by on_exit_code {code}"));
                    Next::Done(Ok(()))
                }
                Err(e) => Next::Done(Err(format!(
                    "{label} exited with {code}; on_exit_code {code} failed: {e}"
                ))),
            },
            Stage::Success => Next::Done(r.map_err(|e| format!("{label}: on_success failed: {e}"))),
            Stage::Validate(l) => self.validate_child(ctx, l, r),
            Stage::Failure {
                attempt,
                error,
                at,
                head,
            } => {
                let of = f.step.on_failure.as_ref().expect("failure stage");
                let (n, max, fail_workflow, commit) = (
                    of.steps.len().max(1),
                    of.max_attempts.max(1),
                    of.fail_workflow,
                    of.commit_required,
                );
                let r = match r {
                    Ok(()) if at + 1 < n => {
                        f.stage = Stage::Failure {
                            attempt,
                            error: error.clone(),
                            at,
                            head,
                        };
                        return self.handler(ctx, attempt, at + 1, error);
                    }
                    Ok(()) if commit && worktrees::head(&ctx.git, &self.cwd).ok() == head => {
                        Err("on_failure has commit_required: true but made no commit".to_string())
                    }
                    r => r,
                };
                match r {
                    Ok(()) if fail_workflow => Next::Done(Err(format!(
                        "{error} (on_failure ran; fail_workflow is set)"
                    ))),
                    Ok(()) => {
                        self.log_line(&format!("{label} recovered by on_failure"));
                        Next::Done(Ok(()))
                    }
                    Err(e) if attempt < max => {
                        self.log_line(&format!("on_failure attempt {attempt} failed: {e}"));
                        self.handler(ctx, attempt + 1, 0, error)
                    }
                    Err(e) => Next::Done(Err(format!("{error}; on_failure also failed: {e}"))),
                }
            }
        }
    }

    /// The earliest time this lane needs [`Lane::advance`] again without a signal.
    pub fn wait_for(&self) -> Duration {
        self.stack
            .last()
            .and_then(|c| {
                if let Some(e) = &c.each {
                    return Some(e.wait_for());
                }
                match &c.run {
                    Some(r) => r
                        .next_deadline()
                        .map(|d| d.saturating_duration_since(Instant::now())),
                    // A frame pushed but not started (after a checkpoint): start it now.
                    None => Some(Duration::ZERO),
                }
            })
            .unwrap_or(Duration::from_secs(1))
            .min(self.deadline.map_or(Duration::MAX, |(d, _)| {
                d.saturating_duration_since(Instant::now())
            }))
            .max(Duration::from_millis(5))
    }

    /// Forward `sig` to the running step's group and wait for it to end (killing it after
    /// [`INTERRUPT_GRACE`]).
    pub fn interrupt(&mut self, sig: i32) {
        self.interrupt_until(sig, Instant::now() + INTERRUPT_GRACE);
    }

    /// [`Lane::interrupt`] with the grace ending at `until` (shared by `foreach` items).
    pub fn interrupt_until(&mut self, sig: i32, until: Instant) {
        let run = self.stack.last_mut().and_then(|f| f.run.take());
        if let Some(e) = self.stack.last_mut().and_then(|f| f.each.as_mut()) {
            e.interrupt(sig, until);
        }
        self.stack.clear();
        if let Some(mut run) = run {
            run.signal_group(sig);
            let o = run.finish(until.saturating_duration_since(Instant::now()));
            self.log_line(&format!("interrupted by signal {sig}: {}", o.describe()));
        }
    }

    /// Forward `sig` to what runs (the step's group, or every running `foreach` item's)
    /// without waiting: [`Lane::interrupt`] then waits for each.
    pub fn forward(&self, sig: i32) {
        match self.stack.last() {
            Some(Frame { each: Some(e), .. }) => e.forward(sig),
            Some(Frame { run: Some(r), .. }) => r.signal_group(sig),
            _ => {}
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
        let validated = step.more.validate.is_some();
        self.log_line(&format!(
            "step {} ({}) made its commit ({now}) before the run was interrupted: {}",
            i + 1,
            step.display(),
            if validated {
                "validated again, not run again"
            } else {
                "counted as done"
            }
        ));
        if step.more.id.is_some() && !step.more.outputs.is_empty() {
            // Its `${ID.OUT}` from the files of that commit (and of the worktree now).
            let before = super::steps::outputs::Before::at_head(recorded);
            match before.resolve(&ctx.git, &self.cwd, step, &mut self.vars) {
                Ok(notes) => notes.iter().for_each(|n| self.log_line(n)),
                // Not counted: the step runs again and finds its file then, or fails.
                Err(e) => {
                    self.log_line(&format!("step {}: {e}; it runs again", i + 1));
                    return None;
                }
            }
        }
        if validated {
            // steps/validate.rs: the step's validation runs again when the lane starts.
            self.revalidate = true;
            return None;
        }
        self.next += 1;
        Some(i)
    }

    /// HEAD of the lane's directory, for checkpoints (see [`Lane::skip_if_committed`]).
    pub fn head(&self, ctx: &Ctx) -> Option<String> {
        worktrees::head(&ctx.git, &self.cwd).ok()
    }

    /// Whether a step is running.
    pub fn busy(&self) -> bool {
        !self.stack.is_empty()
    }

    fn log_line(&self, msg: &str) {
        let msg = crate::mask::mask_str(msg);
        if let Ok(mut f) = open_append(&self.log) {
            let _ = writeln!(f, "==> [{}] {msg}", crate::store::records::Timestamp::now());
        }
    }

    fn spawn(
        &self,
        ctx: &Ctx,
        (action, text, timeout): (&Action, &str, Option<u64>),
        cwd: &std::path::Path,
        step_env: &[(String, String)],
        capture: Option<&Pending>,
    ) -> Result<Running, String> {
        let log = open_append(&self.log)
            .map_err(|e| format!("cannot open log `{}`: {e}", self.log.display()))?;
        let err = match capture.and_then(|c| c.err.as_ref()) {
            Some(p) => new_file(p)?,
            None => log.try_clone().map_err(|e| e.to_string())?,
        };
        let capture = capture.and_then(|c| c.out.as_ref());
        let mut env = ctx.env.clone();
        env.extend(self.env.iter().cloned());
        env.extend(step_env.iter().cloned());
        let (argv, out): (Vec<OsString>, std::fs::File) = match action {
            // `write_file` and `foreach` run in `start_command`. Never reached.
            Action::WriteFile(_) | Action::Foreach(_) => {
                return Err(format!(
                    "`{}` steps are not run by this version of prodigy run yet",
                    action.kind()
                ))
            }
            Action::Shell(_) => (
                command::shell_argv(text),
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
                (command::claude_argv(text, true), f)
            }
            Action::Claude(_) => {
                env.push(("PRODIGY_CLAUDE_STREAMING".into(), "false".into()));
                (
                    command::claude_argv(text, false),
                    match capture {
                        Some(p) => new_file(p)?,
                        None => log,
                    },
                )
            }
        };
        exec::spawn(Spawn {
            argv,
            cwd: cwd.to_path_buf(),
            env,
            stdout: out,
            stderr: err,
            timeout: timeout.map(Duration::from_secs),
        })
        .map_err(|e| e.to_string())
    }
}

impl Ctx {
    /// Run one sequential lane to its end, calling `on_step(ctx, lane, Some(i))` after step `i`
    /// completed, and `on_step(ctx, lane, None)` after progress inside the running step that a
    /// resume needs (a `foreach` item succeeded, [`Lane::progressed`]; the validate loop's
    /// attempt count, [`Lane::take_checkpoint`]). In both, steps `0..lane.next` are complete
    /// and `lane.vars` holds what to checkpoint. Warnings of the lane go to stderr.
    ///
    /// Each such mid-step progress is then an event (`man/prodigy-storage.5`):
    /// `foreach_item_completed` `{step, index, done, total}` and `validation_attempt`
    /// `{step, attempt, max_attempts, completion}` (an `on_incomplete` run about to start). Map
    /// agents are not driven here (an agent runs again whole on resume): they emit neither.
    pub fn run_lane(
        &mut self,
        lane: &mut Lane<'_>,
        mut on_step: impl FnMut(&mut Ctx, &Lane<'_>, Option<usize>) -> crate::error::Result<()>,
    ) -> crate::error::Result<LaneEnd> {
        loop {
            if let Some(sig) = exec::interrupted() {
                lane.interrupt(sig);
                return Ok(LaneEnd::Interrupted(sig));
            }
            if let Some((_, secs)) = lane.deadline.filter(|(d, _)| Instant::now() >= *d) {
                let step = lane.next;
                lane.interrupt_until(exec::SIGTERM, Instant::now() + Duration::from_secs(5));
                return Ok(LaneEnd::Failed {
                    step,
                    error: format!("the phase's timeout of {secs} s was reached"),
                });
            }
            match lane.advance(self) {
                Some(LaneEnd::StepDone(i)) => {
                    for w in lane.take_warnings() {
                        self.warn(&w);
                    }
                    on_step(self, lane, Some(i))?
                }
                Some(end) => return Ok(end),
                None if std::mem::take(&mut lane.progressed) => {
                    on_step(self, lane, None)?;
                    // After the checkpoint that records it: a kill from here on does not
                    // run the item again.
                    if let Some(fields) = lane.foreach_progress() {
                        self.event("foreach_item_completed", fields);
                    }
                }
                None => {
                    for w in lane.take_warnings() {
                        self.warn(&w);
                    }
                    if lane.take_checkpoint() {
                        on_step(self, lane, None)?;
                        // After the checkpoint that counts it, before its handler starts.
                        if let Some(fields) = lane.validation_attempt() {
                            self.event("validation_attempt", fields);
                        }
                    }
                    self.heartbeat()?;
                    exec::wait_event(lane.wait_for().min(HEARTBEAT));
                }
            }
        }
    }
}

fn new_file(p: &std::path::Path) -> Result<std::fs::File, String> {
    open_append(p).map_err(|e| format!("cannot open `{}`: {e}", p.display()))
}
