//! What a step keeps of its output (run.md §2–§3): `capture_output: true|NAME`, `capture: NAME`
//! with `capture_format` and `capture_streams`, and `output_file`.
//!
//! The step's stdout (and its stderr when `capture_streams` asks for it) goes to a file of its
//! own beside the lane's log while it runs; when it ends, the file is appended to the log (so the
//! log stays complete), read back bounded by [`CAPTURE_LIMIT`], turned into variables, copied to
//! `output_file`, and removed.
//!
//! Variables of `capture: NAME` (stored flat, so they are in the checkpoint's `variables` and a
//! resumed run sees them): `NAME` — stdout (or stderr when only stderr is kept) by
//! `capture_format`: `string` as written minus one trailing newline, `number` a JSON number
//! (integers stay integers), `json` the parsed value (`${NAME.field}`, `${NAME[0]}`), `lines` an
//! array of lines, `boolean` `true`/`false` (empty output: whether the step succeeded); `NAME.stderr` (when kept), `NAME.exit_code` (null
//! when the step was killed), `NAME.success`, `NAME.duration` (seconds, measured; 0.4.4 always
//! says 0). Output that does not fit its format fails the step with a message naming the
//! capture — but only a step that otherwise succeeded: a failed step's output is kept as a string
//! so `on_failure` can read it.

use super::write_file as files;
use crate::run::exec::Outcome;
use crate::store::atomic::open_append;
use crate::workflow::vars::Vars;
use crate::workflow::{Capture, Step};
use serde_json::{json, Value};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Captured output is read back up to this many bytes (run.md §3: bounded).
pub const CAPTURE_LIMIT: u64 = 1 << 20;

/// A running step's capture: where its streams go and what to do with them at the end.
#[derive(Debug)]
pub struct Pending {
    /// `capture_output`'s variable (`shell.output`, `claude.output` or NAME).
    legacy: Option<String>,
    /// `capture: NAME` and its format and streams.
    typed: Option<Capture>,
    /// `output_file`, relative to the worktree (already joined with `working_dir`).
    output_file: Option<String>,
    /// The step's stdout while it runs.
    pub out: Option<PathBuf>,
    /// The step's stderr while it runs (only when kept).
    pub err: Option<PathBuf>,
    started: Instant,
}

impl Pending {
    /// What `step` keeps; `None` when nothing. Its stream files are `log` with the extension
    /// `{tag}.out` / `{tag}.err` (`steps.step3.out`; a handler adds `.h` per level). `dir` is
    /// the step's `working_dir` (relative to the worktree), if any: `output_file` is under it.
    /// `output_file` is the step's, interpolated.
    pub fn for_step(
        step: &Step,
        log: &Path,
        tag: &str,
        dir: Option<&str>,
        output_file: Option<String>,
    ) -> Option<Pending> {
        let legacy = step.capture.as_ref().map(|name| match name.as_str() {
            "shell" => "shell.output".to_string(),
            "claude" => "claude.output".to_string(),
            n => n.to_string(),
        });
        let typed = step.more.capture.clone();
        let output_file = output_file.map(|f| match dir {
            Some(d) => format!("{d}/{f}"),
            None => f,
        });
        if legacy.is_none() && typed.is_none() && output_file.is_none() {
            return None;
        }
        let wants_err = typed.as_ref().is_some_and(|c| c.streams.stderr);
        Some(Pending {
            legacy,
            typed,
            output_file,
            out: Some(log.with_extension(format!("{tag}.out"))),
            err: wants_err.then(|| log.with_extension(format!("{tag}.err"))),
            started: Instant::now(),
        })
    }

    /// Remove stream files a killed run left (they are opened for append): a resumed step
    /// starts them empty.
    pub fn clear_stale(&self) {
        for p in [&self.out, &self.err].into_iter().flatten() {
            remove_file(p);
        }
    }

    /// The step ended with `outcome`: append its streams to `log`, set the variables, write
    /// `output_file` under `root`, remove the files. `Err` (one line) fails the step: output
    /// that does not fit `capture_format` (of a step that succeeded), or `output_file` that
    /// cannot be written.
    pub fn finish(
        self,
        outcome: &Outcome,
        log: &Path,
        root: &Path,
        vars: &mut Vars,
    ) -> Result<(), String> {
        let secs = (self.started.elapsed().as_secs_f64() * 1000.0).round() / 1000.0;
        let (out, out_big) = self.out.as_deref().map(read_bounded).unwrap_or_default();
        let (err, err_big) = self.err.as_deref().map(read_bounded).unwrap_or_default();
        for p in [&self.out, &self.err].into_iter().flatten() {
            append_to_log(p, log);
        }
        let mut result = Ok(());
        if let (Some(rel), Some(p)) = (&self.output_file, &self.out) {
            let written = std::fs::File::open(p)
                .map_err(|e| crate::error::describe_io(&e))
                .and_then(|mut f| {
                    files::write_confined(root, rel, &mut f, 0o644, true, "output_file")
                });
            if let Err(e) = written {
                result = Err(e);
            }
        }
        for p in [&self.out, &self.err].into_iter().flatten() {
            remove_file(p);
        }
        if let Some(var) = &self.legacy {
            vars.set_str(var, trim_newline(&out));
        }
        if let Some(c) = &self.typed {
            let n = &c.name;
            for k in ["stderr", "exit_code", "success", "duration"] {
                vars.remove(&format!("{n}.{k}"));
            }
            let (main, big) = if c.streams.stdout || !c.streams.stderr {
                (&out, out_big)
            } else {
                (&err, err_big)
            };
            let value = if outcome.success() {
                match typed_value(main, &c.format, outcome) {
                    Ok(v) => v,
                    Err(why) => {
                        let more = if big {
                            format!(
                                " (the output is longer than {CAPTURE_LIMIT} bytes and was cut)"
                            )
                        } else {
                            String::new()
                        };
                        result = result.and(Err(format!(
                            "capture `{n}` (capture_format: {}): {why}{more}",
                            c.format
                        )));
                        Value::String(trim_newline(main).to_string())
                    }
                }
            } else {
                Value::String(trim_newline(main).to_string())
            };
            vars.set(n, value);
            if c.streams.stderr {
                vars.set_str(&format!("{n}.stderr"), trim_newline(&err));
            }
            if c.streams.exit_code {
                let code = match outcome {
                    Outcome::Exited(c) => json!(c),
                    _ => Value::Null,
                };
                vars.set(&format!("{n}.exit_code"), code);
            }
            if c.streams.success {
                vars.set(&format!("{n}.success"), json!(outcome.success()));
            }
            if c.streams.duration {
                vars.set(&format!("{n}.duration"), json!(secs));
            }
        }
        result
    }
}

fn trim_newline(s: &str) -> &str {
    let t = s.strip_suffix('\n').unwrap_or(s);
    t.strip_suffix('\r').unwrap_or(t)
}

/// `text` by `format`; `Err` says why it does not fit.
fn typed_value(text: &str, format: &str, outcome: &Outcome) -> Result<Value, String> {
    let t = text.trim();
    match format {
        "number" => {
            if let Ok(i) = t.parse::<i64>() {
                return Ok(json!(i));
            }
            t.parse::<f64>()
                .ok()
                .filter(|f| f.is_finite())
                .map(|f| json!(f))
                .ok_or_else(|| format!("the output `{}` is not a number", cut(t)))
        }
        "json" => serde_json::from_str::<Value>(t)
            .map_err(|e| format!("the output is not valid JSON ({e})")),
        "lines" => Ok(Value::Array(
            text.lines()
                .map(|l| Value::String(l.strip_suffix('\r').unwrap_or(l).to_string()))
                .collect(),
        )),
        "boolean" => match t {
            "true" => Ok(json!(true)),
            "false" => Ok(json!(false)),
            "" => Ok(json!(outcome.success())),
            _ => Err(format!("the output `{}` is not `true` or `false`", cut(t))),
        },
        _ => Ok(Value::String(trim_newline(text).to_string())),
    }
}

fn cut(s: &str) -> String {
    crate::store::names::printable_cut(s, 40)
}

/// The file's first [`CAPTURE_LIMIT`] bytes as text, and whether there was more.
fn read_bounded(p: &Path) -> (String, bool) {
    let mut buf = Vec::new();
    if let Ok(f) = std::fs::File::open(p) {
        let _ = f.take(CAPTURE_LIMIT + 1).read_to_end(&mut buf);
    }
    let big = buf.len() as u64 > CAPTURE_LIMIT;
    buf.truncate(CAPTURE_LIMIT as usize);
    (String::from_utf8_lossy(&buf).into_owned(), big)
}

/// Keep the log complete: the whole captured stream is appended to it.
fn append_to_log(p: &Path, log: &Path) {
    if let (Ok(mut from), Ok(mut to)) = (std::fs::File::open(p), open_append(log)) {
        let _ = std::io::copy(&mut from, &mut to);
    }
}

/// A file of ours under `logs/` (a capture file whose content is now in the log, a foreach
/// input's output): unlink it through fsops, the only code that deletes (safety R1).
pub(super) fn remove_file(p: &Path) {
    if let (Some(dir), Some(name)) = (p.parent(), p.file_name()) {
        if let Ok(d) = crate::store::fsops::Dir::open_root(dir) {
            let _ = d.unlink(name);
        }
    }
}
