//! `foreach: {foreach|input, do, parallel, continue_on_error, max_items}` (run.md §2).
//!
//! Design: a `foreach` step is a frame of its lane like any other step; instead of a child
//! process it holds a [`Run`]: one sub-lane ([`Lane`] over the `do` steps, owning a copy of
//! them) per running item. The lane's `advance` polls the `Run`, which advances each sub-lane;
//! so iterations are children of the one wait loop that already drives the lane (no threads),
//! `parallel: N` is simply N sub-lanes at once, and every `do` step has every modifier.
//!
//! * Items: a list (each item interpolated, `${VAR}` of the lane), or a shell command run in the step's directory (the worktree),
//!   whose stdout is a JSON array (strings as they are, other values as JSON) or else one item
//!   per non-blank line; a non-zero exit fails the step. The command runs to its end before the
//!   first item starts (the lane waits for it; other lanes wait with it). `max_items` keeps the
//!   first N.
//! * `do` runs in the lane's directory (the worktree; 0.4.4 runs it in its own cwd: a bug), with
//!   the lane's variables and environment plus `${item}`, `${index}` (0-based, as 0.4.4) and
//!   `${total}`; captures made inside an iteration stay in it. In a map agent `${item}` inside
//!   `do` is the foreach item (the work item's fields are not reachable there; `${item_id}` is).
//! * `parallel`: `false` 1, `true` 10 (0.4.4's value), N.
//! * Failure: without `continue_on_error`, the first failed item stops new items from starting
//!   (running ones end) and fails the step (0.4.4 runs every item first). With it, every item
//!   runs and the step still fails at the end when any item failed (`N of M foreach items
//!   failed`), as in 0.4.4: the step's own `on_failure` (e.g. `true`) decides whether the
//!   workflow goes on.
//! * Progress: the items and the indices that succeeded are the lane variable
//!   `_foreach.TAG` (a JSON object), written to the checkpoint after each item (like captures),
//!   and removed when the step succeeds; a resumed step (after a kill, or after the step failed)
//!   keeps the recorded items and runs only those that did not succeed. Only a lane's own `foreach` steps are checkpointed (a `foreach` nested inside a
//!   `do`, or in a map agent, which restarts as a whole, starts over).

use super::super::exec::{self, Spawn};
use crate::run::lane::{Lane, LaneEnd};
use crate::run::session::Ctx;
use crate::workflow::vars::{interpolate, Vars};
use crate::workflow::{Foreach, ForeachInput, Step};
use serde_json::{json, Value};
use std::collections::{BTreeSet, VecDeque};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A running `foreach` step.
pub(crate) struct Run {
    key: String,
    items: Vec<String>,
    steps: Vec<Step>,
    parallel: usize,
    continue_on_error: bool,
    pending: VecDeque<usize>,
    running: Vec<(usize, Lane<'static>)>,
    done: BTreeSet<usize>,
    /// The item that succeeded last (for the `foreach_item_completed` event).
    last_done: Option<usize>,
    failed: Vec<(usize, String)>,
    stop: bool,
    // For the sub-lanes.
    cwd: PathBuf,
    log: PathBuf,
    tag: String,
    env: Vec<(String, String)>,
    streaming: bool,
}

/// Where a `foreach` runs and what its sub-lanes inherit.
pub(crate) struct Place<'a> {
    /// The lane's directory (the worktree).
    pub cwd: &'a Path,
    /// The step's directory (`working_dir` resolved), for the input command.
    pub dir: &'a Path,
    /// The lane's log.
    pub log: &'a Path,
    /// Capture-file tag of the step (`step3`, `step2.i0.step1`).
    pub tag: &'a str,
    /// Lane and step environment.
    pub env: Vec<(String, String)>,
    /// Claude mode of the lane.
    pub streaming: bool,
    /// The step timeout (for the input command).
    pub timeout: Option<u64>,
}

impl Run {
    /// Get the items (from the checkpointed progress in `vars` when there is one) and prepare.
    /// `text` is the interpolated input command.
    pub(crate) fn start(
        f: &Foreach,
        text: &str,
        ctx: &Ctx,
        p: Place<'_>,
        vars: &Vars,
    ) -> Result<(Run, Option<String>), String> {
        let key = format!("_foreach.{}", p.tag);
        let mut done = BTreeSet::new();
        let mut note = None;
        let items = match vars.get(&key) {
            Some(Value::Object(o)) => {
                let items: Vec<String> = o
                    .get("items")
                    .and_then(Value::as_array)
                    .map(|a| a.iter().map(item_text).collect())
                    .unwrap_or_default();
                if let Some(d) = o.get("done").and_then(Value::as_array) {
                    done.extend(
                        d.iter()
                            .filter_map(Value::as_u64)
                            .map(|i| i as usize)
                            .filter(|i| *i < items.len()),
                    );
                }
                note = Some(format!(
                    "foreach resumed: {} of {} items already done",
                    done.len(),
                    items.len()
                ));
                items
            }
            _ => {
                let mut items = match &f.input {
                    ForeachInput::List(l) => l
                        .iter()
                        .map(|i| {
                            interpolate(i, vars).map_err(|e| format!("foreach item `{i}`: {e}"))
                        })
                        .collect::<Result<_, _>>()?,
                    ForeachInput::Command(_) => list_command(text, ctx, &p)?,
                };
                if let Some(m) = f.max_items {
                    items.truncate(m);
                }
                items
            }
        };
        let pending = (0..items.len()).filter(|i| !done.contains(i)).collect();
        Ok((
            Run {
                key,
                items,
                steps: f.steps.clone(),
                parallel: f.parallel.max(1),
                continue_on_error: f.continue_on_error,
                pending,
                running: Vec::new(),
                done,
                last_done: None,
                failed: Vec::new(),
                stop: false,
                cwd: p.cwd.to_path_buf(),
                log: p.log.to_path_buf(),
                tag: p.tag.to_string(),
                env: p.env,
                streaming: p.streaming,
            },
            note,
        ))
    }

    /// Start items up to `parallel`, advance the running ones; `Some` when the step ended.
    /// Sets `*progressed` when an item succeeded (its progress is in `vars`: checkpoint it);
    /// then returns without starting another item, which the next call starts.
    /// Warnings of the items' steps go to `warnings`, naming the item.
    pub(crate) fn poll(
        &mut self,
        ctx: &Ctx,
        vars: &mut Vars,
        progressed: &mut bool,
        warnings: &mut Vec<String>,
    ) -> Option<Result<(), String>> {
        loop {
            while !self.stop && self.running.len() < self.parallel {
                let Some(i) = self.pending.pop_front() else {
                    break;
                };
                let mut v = vars.clone();
                v.remove(&self.key);
                v.set_str("item", &self.items[i]);
                v.set("index", json!(i));
                v.set("total", json!(self.items.len()));
                let mut lane = Lane::owned(
                    self.steps.clone(),
                    self.cwd.clone(),
                    self.log.clone(),
                    v,
                    self.env.clone(),
                    self.streaming,
                );
                lane.tag = format!("{}.i{i}.", self.tag);
                self.running.push((i, lane));
            }
            let (mut ended, mut succeeded) = (false, false);
            let mut k = 0;
            while k < self.running.len() {
                let end = loop {
                    match self.running[k].1.advance(ctx) {
                        Some(LaneEnd::StepDone(_)) => continue,
                        e => break e,
                    }
                };
                let (i, lane) = &mut self.running[k];
                for w in lane.take_warnings() {
                    warnings.push(format!(
                        "foreach item {} (`{}`): {w}",
                        *i + 1,
                        self.items[*i]
                    ));
                }
                let Some(end) = end else {
                    k += 1;
                    continue;
                };
                let (i, _) = self.running.remove(k);
                ended = true;
                match end {
                    LaneEnd::Finished => {
                        self.done.insert(i);
                        self.last_done = Some(i);
                        vars.set(
                            &self.key,
                            json!({"items": self.items, "done": self.done.iter().collect::<Vec<_>>()}),
                        );
                        *progressed = true;
                        succeeded = true;
                    }
                    LaneEnd::Failed { error, .. } => {
                        self.failed.push((i, error));
                        if !self.continue_on_error {
                            self.stop = true;
                        }
                    }
                    LaneEnd::Interrupted(_) | LaneEnd::StepDone(_) => {}
                }
            }
            // After a success, the next items start (or the step ends) at the next call: the
            // caller checkpoints the progress first, so neither a kill from now on nor a
            // resume after the step failed repeats the finished item.
            if succeeded {
                return None;
            }
            if self.running.is_empty() && (self.stop || self.pending.is_empty()) {
                let r = self.result();
                if r.is_ok() {
                    vars.remove(&self.key);
                }
                return Some(r);
            }
            if !ended {
                return None;
            }
        }
    }

    /// The `foreach_item_completed` event's fields: the item that succeeded last (0-based
    /// `index`), how many are `done` (those of earlier runs included) of `total`.
    pub(crate) fn progress(&self) -> Value {
        json!({"index": self.last_done, "done": self.done.len(), "total": self.items.len()})
    }

    fn result(&self) -> Result<(), String> {
        let n = self.items.len();
        let Some((i, e)) = self.failed.first() else {
            return Ok(());
        };
        let first = format!("item {} of {n} (`{}`): {e}", i + 1, self.items[*i]);
        if self.continue_on_error {
            Err(format!(
                "{} of {n} foreach items failed; first: {first}",
                self.failed.len()
            ))
        } else {
            Err(format!("foreach {first}"))
        }
    }

    /// The earliest time a running item needs polling.
    pub(crate) fn wait_for(&self) -> Duration {
        if !self.stop && self.running.len() < self.parallel && !self.pending.is_empty() {
            return Duration::ZERO;
        }
        self.running
            .iter()
            .map(|(_, l)| l.wait_for())
            .min()
            .unwrap_or(Duration::from_millis(5))
    }

    /// Forward `sig` to every running item without waiting.
    pub(crate) fn forward(&self, sig: i32) {
        for (_, l) in &self.running {
            l.forward(sig);
        }
    }

    /// Forward `sig` to every running item (all first) and wait for each until `until`, when
    /// the ones left are killed: one grace period for all.
    pub(crate) fn interrupt(&mut self, sig: i32, until: std::time::Instant) {
        self.forward(sig);
        for (_, l) in &mut self.running {
            l.interrupt_until(sig, until);
        }
    }
}

fn item_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        v => v.to_string(),
    }
}

/// Run the input command to its end; its stdout as items.
fn list_command(text: &str, ctx: &Ctx, p: &Place<'_>) -> Result<Vec<String>, String> {
    let out = p.log.with_extension(format!("{}.items", p.tag));
    super::capture::remove_file(&out);
    let open = |path: &Path| {
        crate::store::atomic::open_append(path)
            .map_err(|e| format!("cannot open `{}`: {e}", path.display()))
    };
    let mut env = ctx.env.clone();
    env.extend(p.env.iter().cloned());
    let mut run = exec::spawn(Spawn {
        argv: vec!["sh".into(), "-c".into(), text.into()],
        cwd: p.dir.to_path_buf(),
        env,
        stdout: open(&out)?,
        stderr: open(p.log)?,
        timeout: p.timeout.map(Duration::from_secs),
    })
    .map_err(|e| format!("foreach input `{text}`: {e}"))?;
    let o = loop {
        if let Some(o) = run.poll() {
            break o;
        }
        if let Some(sig) = exec::interrupted() {
            run.signal_group(sig);
            break run.finish(super::super::lane::INTERRUPT_GRACE);
        }
        exec::wait_event(Duration::from_millis(50));
    };
    let stdout = std::fs::read_to_string(&out).unwrap_or_default();
    super::capture::remove_file(&out);
    if !o.success() {
        return Err(format!("foreach input `{text}` failed: {}", o.describe()));
    }
    Ok(parse_items(&stdout))
}

/// A JSON array (strings as they are, other values as JSON), else one item per non-blank line.
pub(crate) fn parse_items(stdout: &str) -> Vec<String> {
    let t = stdout.trim();
    if t.starts_with('[') {
        if let Ok(Value::Array(a)) = serde_json::from_str::<Value>(t) {
            return a.iter().map(item_text).collect();
        }
    }
    stdout
        .lines()
        .map(|l| l.trim_end_matches('\r'))
        .filter(|l| !l.trim().is_empty())
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::parse_items;

    #[test]
    fn items_from_lines_or_json() {
        assert_eq!(parse_items("a\n\n b\r\n"), vec!["a", " b"]);
        assert_eq!(
            parse_items("[\"x y\", 3, {\"k\":1}]\n"),
            vec!["x y", "3", "{\"k\":1}"]
        );
        assert_eq!(parse_items("[not json\n"), vec!["[not json"]);
        assert!(parse_items("").is_empty());
    }
}
