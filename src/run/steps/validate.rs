//! `validate:` with `on_incomplete` (run.md §2; 0.4.4 in `prodigy-0.4.4-steps.md` §1), as frames
//! on the lane's stack. After a step succeeded (its `commit_required` met), its frame enters
//! [`Stage::Validate`](super::Stage): each validator step is pushed above it; then the result
//! decides; while the completion is below `threshold`, each `on_incomplete` step is pushed, and
//! the validator runs again, up to `on_incomplete.max_attempts` handler runs.
//!
//! The result: the JSON object `{completion_percentage, status, missing, implemented, gaps, …}`
//! read from `result_file` (relative to the worktree, no `..`, no symlink followed) when given,
//! else from the last validator step's stdout (kept in the hidden variable `validation_output`,
//! removed once read; a last validator step with its own `capture_output` keeps its stdout and
//! then counts by exit status). A Claude validator in streaming mode prints a stream-json
//! transcript: the `result` text of its last `{"type": "result"}` line is read instead (the JSON,
//! or the JSON in a ```` ```json ```` fence). A validator step that fails counts as 0 %, whatever
//! it printed; output that is not that JSON counts by exit status (0 → 100 %); a missing or
//! refused `result_file` is 0 %. 0.4.4 counts unparsable output as complete, so a Claude
//! validator without `result_file` always passed there.
//!
//! `${validation.completion|missing|missing_count|status|implemented|gaps|attempt_number}` are
//! set after each validation and stay for the later steps. `missing` and `implemented` are
//! joined with `, ` (as 0.4.4), `gaps` is the object (compact JSON as text), `attempt_number`
//! is the number of `on_incomplete` runs started for the step (0 after the first validation,
//! 1 in the first run; 0.4.4 has no such variable).
//!
//! Unmet after the attempts (or with no `on_incomplete`; 0.4.4 only warns there): the step
//! fails when `fail_workflow` (default true), else a warning and the step succeeds; the step's
//! own `on_failure` does not run for an unmet validation. A failing `on_incomplete` step (or a
//! run without a commit under its `commit_required`) ends the attempts. In an agent the failed
//! step fails the item (→ DLQ).
//!
//! Resume (run.md §6): while the loop runs, `validation.at` names the step it belongs to (its
//! capture tag, `step3`), and whenever an `on_incomplete` run starts the lane asks its driver
//! for a mid-step checkpoint ([`Lane::take_checkpoint`](super::Lane::take_checkpoint): standard
//! session record `workflow_data.variables`, setup and reduce checkpoints; agents are re-run
//! whole). A resumed lane whose next step is that step **validates it again without running
//! it again** (its command had succeeded and its commit, if any, is in the worktree), and the
//! loop continues from the recorded `attempt_number`: the run killed counts once, the next is
//! one more. A run killed before the first `on_incomplete` started has no mid-step checkpoint:
//! the step runs again, except a `commit_required` step whose commit is there
//! ([`Lane::skip_if_committed`](super::Lane::skip_if_committed)), which is validated again.

use super::{Frame, Lane, Next, Stage};
use crate::run::session::Ctx;
use crate::run::steps::write_file as files;
use crate::run::worktrees;
use crate::workflow::{Step, Validate};
use serde_json::{json, Map, Value};

/// The hidden variable receiving the validator's stdout (removed once read).
const OUT: &str = "validation_output";

/// Where a frame's validate loop is.
#[derive(Debug)]
pub(super) struct Loop {
    /// `on_incomplete` runs started (the checkpointed count included).
    attempts: u32,
    /// True while `on_incomplete` runs, false while the validator runs.
    fixing: bool,
    /// The step of the validator / handler running (0-based).
    at: usize,
    /// HEAD when the handler run started (its `commit_required`).
    head: Option<String>,
}

/// The frame's capture tag, naming the step a `validation` variable belongs to.
fn tag(lane: &Lane<'_>) -> String {
    format!("step{}{}", lane.next + 1, ".h".repeat(lane.stack.len() - 1))
}

impl Lane<'_> {
    /// Resume: the lane's variables say the step at `next` was inside its validate loop when
    /// the run stopped (its own command had succeeded): validate it again, do not run it again.
    pub(super) fn validating_at_resume(&self) -> bool {
        let Some(step) = self.steps.get(self.next) else {
            return false;
        };
        step.more.validate.is_some()
            && self.stack.len() == 1
            && self
                .vars
                .get("validation.at")
                .and_then(|v| v.as_str().map(str::to_string))
                == Some(tag(self))
    }

    /// The fields of a `validation_attempt` event, after the validate loop asked for the
    /// checkpoint of an `on_incomplete` run about to start: `step` (0-based), `attempt`
    /// (`${validation.attempt_number}` of that run), `max_attempts` and the `completion` that
    /// made it run. `None` outside a validate loop.
    pub fn validation_attempt(&self) -> Option<Value> {
        let f = self
            .stack
            .iter()
            .rev()
            .find(|f| matches!(f.stage, Stage::Validate(_)))?;
        let max = f
            .step
            .more
            .validate
            .as_ref()?
            .on_incomplete
            .as_ref()?
            .max_attempts;
        let Some(Value::Object(v)) = self.vars.get("validation") else {
            return None;
        };
        Some(json!({
            "step": self.next,
            "attempt": v.get("attempt_number"),
            "max_attempts": max,
            "completion": v.get("completion"),
        }))
    }

    /// The top frame succeeded and has `validate`: run the validator.
    pub(super) fn validate_begin(&mut self, ctx: &Ctx) -> Next {
        let t = tag(self);
        // A resumed step: the attempts its interrupted run started still count.
        let attempts = match self.vars.get("validation") {
            Some(Value::Object(o)) if o.get("at").and_then(Value::as_str) == Some(t.as_str()) => {
                o.get("attempt_number").and_then(Value::as_u64).unwrap_or(0) as u32
            }
            _ => 0,
        };
        let label = self.top().label.clone();
        self.log_line(&format!("{label}: validating"));
        self.check(
            ctx,
            Loop {
                attempts,
                fixing: false,
                at: 0,
                head: None,
            },
        )
    }

    fn spec(&self) -> Validate {
        let f: &Frame = self.stack.last().expect("a frame");
        f.step.more.validate.clone().expect("a validate stage")
    }

    /// Push validator step `l.at`, or decide when there is none.
    fn check(&mut self, ctx: &Ctx, l: Loop) -> Next {
        let v = self.spec();
        let Some(s) = v.steps.get(l.at) else {
            // No validator at all: 0 % (0.4.4 too).
            return self.decide(ctx, l, Some(false));
        };
        let mut s: Step = s.clone();
        if v.steps.len() == 1 && s.timeout.is_none() {
            s.timeout = v.timeout;
        }
        if l.at + 1 == v.steps.len() && s.capture.is_none() {
            s.capture = Some(OUT.to_string());
        }
        self.vars.remove(OUT);
        let label = format!("validate ({})", s.display());
        self.top().stage = Stage::Validate(l);
        Next::Push(s, label)
    }

    /// A frame above the validating one ended with `r`.
    pub(super) fn validate_child(&mut self, ctx: &Ctx, mut l: Loop, r: Result<(), String>) -> Next {
        let v = self.spec();
        if !l.fixing {
            match r {
                Ok(()) if l.at + 1 < v.steps.len() => {
                    l.at += 1;
                    self.check(ctx, l)
                }
                Ok(()) => self.decide(ctx, l, Some(true)),
                Err(_) => self.decide(ctx, l, Some(false)),
            }
        } else {
            let oi = v.on_incomplete.clone().expect("fixing");
            let r = match r {
                Ok(()) if l.at + 1 < oi.steps.len() => {
                    l.at += 1;
                    return self.fix_step(ctx, l);
                }
                Ok(())
                    if oi.commit_required
                        && worktrees::head(&ctx.git, &self.cwd).ok() == l.head =>
                {
                    Err("on_incomplete has commit_required: true but made no commit".to_string())
                }
                r => r,
            };
            match r {
                Ok(()) => self.check(
                    ctx,
                    Loop {
                        fixing: false,
                        at: 0,
                        ..l
                    },
                ),
                Err(e) => {
                    self.log_line(&format!("on_incomplete attempt {} failed: {e}", l.attempts));
                    self.decide(
                        ctx,
                        Loop {
                            attempts: u32::MAX,
                            ..l
                        },
                        None,
                    )
                }
            }
        }
    }

    /// The validator ended (`ok`: its steps succeeded; `None`: the handler failed, keep the
    /// last result): read the result, then pass, fix, or give up.
    fn decide(&mut self, ctx: &Ctx, l: Loop, ok: Option<bool>) -> Next {
        let v = self.spec();
        let t = tag(self);
        let label = self.top().label.clone();
        let shown = l
            .attempts
            .min(v.on_incomplete.as_ref().map_or(0, |o| o.max_attempts));
        if let Some(ok) = ok {
            let out = self
                .vars
                .get(OUT)
                .map(|v| crate::workflow::vars::to_text(&v));
            self.vars.remove(OUT);
            let text = match (&v.result_file, ok) {
                (_, false) => None,
                (Some(rf), true) => match crate::workflow::vars::interpolate(rf, &self.vars)
                    .and_then(|p| files::read_confined(&self.cwd, &p, "result_file"))
                {
                    Ok(s) => Some(Ok(s)),
                    Err(e) => Some(Err(e)),
                },
                (None, true) => out.map(Ok),
            };
            let result = result(ok, text);
            let mut o = result.clone();
            o.insert("at".into(), json!(t));
            o.insert("attempt_number".into(), json!(shown));
            self.vars.set("validation", Value::Object(o));
            let c = result["completion"].as_f64().unwrap_or(0.0);
            if c >= v.threshold {
                self.log_line(&format!(
                    "{label}: validation passed: {c}% complete (threshold: {}%)",
                    v.threshold
                ));
                self.end_loop();
                return self.after_validate();
            }
            self.log_line(&format!(
                "{label}: validation incomplete: {c}% complete (threshold: {}%){}",
                v.threshold,
                match result.get("missing").and_then(Value::as_str) {
                    Some(m) if !m.is_empty() => format!("; missing: {m}"),
                    _ => String::new(),
                }
            ));
        }
        let max = v.on_incomplete.as_ref().map_or(0, |o| o.max_attempts);
        if l.attempts < max && !v.on_incomplete.as_ref().is_some_and(|o| o.steps.is_empty()) {
            let attempts = l.attempts + 1;
            if let Some(Value::Object(o)) = self.vars.get("validation") {
                let mut o = o;
                o.insert("attempt_number".into(), json!(attempts));
                self.vars.set("validation", Value::Object(o));
            }
            self.checkpoint = true;
            self.log_line(&format!(
                "{label}: on_incomplete (attempt {attempts}/{max})"
            ));
            return self.fix_step(
                ctx,
                Loop {
                    attempts,
                    fixing: true,
                    at: 0,
                    head: None,
                },
            );
        }
        let c = self
            .vars
            .get("validation.completion")
            .and_then(|c| c.as_f64())
            .unwrap_or(0.0);
        let runs = shown;
        let msg = format!(
            "{label}: validation unmet after {runs} on_incomplete attempt(s): {c}% complete (threshold: {}%)",
            v.threshold
        );
        let fail = v.on_incomplete.as_ref().map_or(true, |o| o.fail_workflow);
        if let Some(p) = v.on_incomplete.as_ref().and_then(|o| o.prompt.as_ref()) {
            self.log_line(&format!("on_incomplete prompt: {p}"));
        }
        self.end_loop();
        if fail {
            Next::Done(Err(msg))
        } else {
            self.log_line(&format!("{msg}; continuing (fail_workflow: false)"));
            self.warnings
                .push(format!("{msg}; continuing (fail_workflow: false)"));
            self.after_validate()
        }
    }

    /// The loop ended: the `validation` variable no longer marks a loop in progress.
    fn end_loop(&mut self) {
        if let Some(Value::Object(mut o)) = self.vars.get("validation") {
            o.remove("at");
            self.vars.set("validation", Value::Object(o));
        }
    }

    /// Push `on_incomplete` step `l.at`.
    fn fix_step(&mut self, ctx: &Ctx, mut l: Loop) -> Next {
        let v = self.spec();
        let oi = v.on_incomplete.expect("fixing");
        let s = oi.steps[l.at].clone();
        if l.at == 0 && oi.commit_required {
            l.head = worktrees::head(&ctx.git, &self.cwd).ok();
        }
        let label = format!("on_incomplete ({})", s.display());
        self.top().stage = Stage::Validate(l);
        Next::Push(s, label)
    }
}

/// The `validation` variable from the validator's text (`None`: no text; `Err`: a result file
/// that cannot be read).
fn result(ok: bool, text: Option<Result<String, String>>) -> Map<String, Value> {
    let mut o = Map::new();
    let by_exit = |o: &mut Map<String, Value>, ok: bool| {
        o.insert("completion".into(), json!(if ok { 100.0 } else { 0.0 }));
        o.insert(
            "status".into(),
            json!(if ok { "complete" } else { "failed" }),
        );
    };
    match text {
        // A validator that failed is 0 %, whatever it printed.
        Some(Ok(t)) if ok => match parse(&t) {
            Some(j) => {
                let c = j["completion_percentage"].as_f64().unwrap_or(0.0);
                o.insert("completion".into(), json!(c));
                let status = j.get("status").and_then(Value::as_str).map_or_else(
                    || if c >= 100.0 { "complete" } else { "incomplete" }.to_string(),
                    str::to_lowercase,
                );
                o.insert("status".into(), json!(status));
                let list = |k: &str| -> Vec<String> {
                    j.get(k)
                        .and_then(Value::as_array)
                        .map(|a| a.iter().map(crate::workflow::vars::to_text).collect())
                        .unwrap_or_default()
                };
                let missing = list("missing");
                o.insert("missing_count".into(), json!(missing.len()));
                o.insert("missing".into(), json!(missing.join(", ")));
                o.insert("implemented".into(), json!(list("implemented").join(", ")));
                o.insert(
                    "gaps".into(),
                    j.get("gaps").cloned().unwrap_or_else(|| json!({})),
                );
            }
            None => by_exit(&mut o, ok),
        },
        Some(_) => by_exit(&mut o, false),
        None => by_exit(&mut o, ok),
    }
    for (k, d) in [
        ("missing", json!("")),
        ("missing_count", json!(0)),
        ("implemented", json!("")),
        ("gaps", json!({})),
    ] {
        o.entry(k).or_insert(d);
    }
    o
}

/// The result JSON in a validator's text: the whole text, or (a Claude validator in streaming
/// mode) the `result` of the transcript's last `{"type": "result"}` line, itself the JSON or
/// the JSON in a fenced block. `None` when there is no object with a numeric
/// `completion_percentage`.
fn parse(text: &str) -> Option<Map<String, Value>> {
    let whole = |t: &str| -> Option<Map<String, Value>> {
        let mut t = t.trim();
        if let Some(rest) = t.strip_prefix("```") {
            let rest = rest.strip_prefix("json").unwrap_or(rest);
            t = rest.trim().strip_suffix("```")?.trim();
        }
        match serde_json::from_str::<Value>(t).ok()? {
            Value::Object(j) if j.get("completion_percentage").is_some_and(Value::is_number) => {
                Some(j)
            }
            _ => None,
        }
    };
    if let Some(j) = whole(text) {
        return Some(j);
    }
    let last =
        text.lines()
            .rev()
            .find_map(|l| match serde_json::from_str::<Value>(l.trim()).ok()? {
                Value::Object(e) if e.get("type").and_then(Value::as_str) == Some("result") => {
                    Some(e)
                }
                _ => None,
            })?;
    whole(last.get("result")?.as_str()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_result_is_the_whole_text_or_the_stream_result() {
        let j = parse(" {\"completion_percentage\": 40, \"missing\": [\"x\"]}\n").unwrap();
        assert_eq!(j["completion_percentage"], 40);
        let stream = "{\"type\":\"system\"}\n{\"type\":\"result\",\"result\":\"```json\\n{\\\"completion_percentage\\\": 70}\\n```\"}\n";
        assert_eq!(parse(stream).unwrap()["completion_percentage"], 70);
        assert!(parse("{\"type\":\"result\",\"result\":\"done\"}").is_none());
        assert!(parse("{\"completion_percentage\": \"40\"}").is_none());
        assert!(parse("all good").is_none());
    }

    #[test]
    fn text_that_is_not_the_json_counts_by_exit_status() {
        let r = result(true, Some(Ok("fine".into())));
        assert_eq!(
            (r["completion"].clone(), r["status"].clone()),
            (json!(100.0), json!("complete"))
        );
        let r = result(false, Some(Ok("{\"completion_percentage\": 100}".into())));
        assert_eq!(r["completion"], json!(0.0));
        let r = result(true, Some(Err("missing".into())));
        assert_eq!(r["status"], "failed");
        let r = result(true, Some(Ok("{\"completion_percentage\": 50, \"status\": \"INCOMPLETE\", \"implemented\": [\"a\", \"b\"], \"gaps\": {\"g\": {\"severity\": \"high\"}}}".into())));
        assert_eq!(r["status"], "incomplete");
        assert_eq!(r["implemented"], "a, b");
        assert_eq!(r["missing_count"], 0);
        assert_eq!(r["gaps"]["g"]["severity"], "high");
    }
}
