//! The workflow file format (run.md §2): YAML text into typed [`Workflow`] values, plus
//! `${…}` interpolation ([`vars`]) and work-item extraction ([`items`]).
//!
//! Owns what a workflow file may say and every message about a file that says something else
//! (each one `` `{path}`:{line}:{col}: … ``, exit 2). It must not run anything, read or write
//! `$PRODIGY_HOME`, look at the environment, or print: [`check`] reports every problem of a
//! file and the caller decides what to do with them.
//!
//! The whole language Prodigy's users write is accepted (every key is in [`keys::KEYS`], with
//! how it differs from 0.4.4), with these deliberate differences from 0.4.4:
//! - MapReduce is chosen by the top-level key `mode: mapreduce`, not by a substring of the
//!   text (0.4.4 `src/cook/mod.rs:315` is switched by a comment).
//! - Unknown keys are warnings with a "did you mean" (0.4.4 ignores them silently, so a typo
//!   silently drops a step); invalid values, YAML syntax errors, steps without an action and
//!   the removed `analyze`/`goal_seek` are errors, every one of them reported.
//! - A step with `name:` beside an action is that action with a label (0.4.4 runs it as
//!   `claude /name`); a warning says so.
//! - An error-policy key given both at top level and inside `error_policy` is an error.
//! - `on_item_failure: retry` (and custom handlers) are refused.
//! - Keys that parse but that `prodigy run` does not run yet are listed in
//!   [`Workflow::features`]; `crate::run` refuses them before anything runs.
//!
//! Files: `keys.rs` the key table, `cx.rs` the message collector and value readers, `top.rs`
//! the top level and phases, `step.rs` steps and their modifiers, `parts.rs` the parts of a step
//! that are objects (`write_file`, `foreach`, `on_failure`, `validate`), `env.rs` environment
//! keys; the `map:` section is
//! here.

mod cx;
mod env;
pub mod expr;
pub mod items;
pub mod keys;
mod parts;
mod step;
mod top;
pub mod vars;
mod yaml;

pub use env::{EnvValue, Profile, Secret};
pub use step::{
    Action, Capture, Foreach, ForeachInput, Modifiers, OnFailure, OnIncomplete, Step, Streams,
    Validate, When, WriteFile,
};

use crate::error::{Error, Result};
use crate::store::names::printable;
use cx::{show, Cx};
use keys::Cx as K;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use yaml::{Key, Node, NodeKind, Scalar};

/// A parsed workflow file.
#[derive(Clone, Debug, PartialEq)]
pub struct Workflow {
    /// `name:`; for a bare list or a map without `name`, the file stem (`ci` for `ci.yml`).
    pub name: String,
    /// The path as given to [`load`] / [`parse`] (not canonicalized).
    pub path: PathBuf,
    /// 16 lowercase hex digits: FNV-1a 64 of the file's bytes ([`fnv1a64_hex`]). Stored in the
    /// session checkpoint (`workflow_hash`, run.md §5) so resume can refuse a changed file.
    pub hash: String,
    /// Top-level `env:`: variable name → value. Numbers and booleans are kept as written
    /// (`1.10` stays `1.10`); names match `[A-Za-z_][A-Za-z0-9_]*`.
    pub env: BTreeMap<String, String>,
    /// `merge:` steps that replace the default merge (a list, or `{commands, timeout?}`).
    pub merge: Option<Vec<Step>>,
    /// `merge.timeout` in seconds for the whole merge phase, when given in the map form.
    pub merge_timeout: Option<u64>,
    /// Standard or MapReduce.
    pub kind: Kind,
    /// Warnings (unknown keys, ignored keys, 0.4.4 differences), one message each in the same
    /// `` `{path}`:{line}:{col}: `` form as errors. The caller may print them; this module never
    /// does.
    pub warnings: Vec<String>,
    /// `description:`.
    pub description: Option<String>,
    /// Top-level `env:` with every value form, in file order ([`Workflow::env`] holds the
    /// plain ones).
    pub env_values: Vec<(String, EnvValue)>,
    /// `secrets:`.
    pub secrets: Vec<Secret>,
    /// `env_files:`.
    pub env_files: Vec<String>,
    /// `profiles:`.
    pub profiles: Vec<Profile>,
    /// `(feature, line, col)` of every use of a key `prodigy run` may not run yet (`validate`,
    /// `foreach`, …), in file order; `crate::run` decides which it refuses.
    pub features: Vec<(String, usize, usize)>,
}

/// The two workflow forms of run.md §2.
// One value per run; boxing the large variant would only change the agreed API.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq)]
pub enum Kind {
    /// Steps run in order in the session worktree (`commands:` or a bare list; never empty).
    Standard(Vec<Step>),
    /// `mode: mapreduce`.
    MapReduce(MapReduce),
}

/// A `mode: mapreduce` workflow (0.4.4 `src/config/mapreduce.rs:16-83`).
#[derive(Clone, Debug, PartialEq)]
pub struct MapReduce {
    /// `setup:` steps, run in the parent worktree before items are read (may be empty).
    pub setup: Vec<Step>,
    /// `setup.timeout` in seconds for the whole setup phase (map form only).
    pub setup_timeout: Option<u64>,
    /// `setup.capture_outputs`, in file order (map form only).
    pub capture_outputs: Vec<CaptureOutput>,
    /// `map:`.
    pub map: MapSpec,
    /// `reduce:` steps, run in the parent worktree after the map (may be empty).
    pub reduce: Vec<Step>,
    /// `error_policy:` and its top-level shorthands.
    pub error_policy: ErrorPolicy,
}

/// One entry of `setup.capture_outputs` (0.4.4 `CaptureConfig`): `NAME: INDEX` is
/// `{command_index: INDEX}` with every other field at its default.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CaptureOutput {
    /// The variable, `[A-Za-z_][A-Za-z0-9_]*`.
    pub name: String,
    /// Which setup step (0-based); checked against the number of setup steps when parsed.
    pub command_index: usize,
    /// `stdout` (default), `stderr` or `both` (stdout, a newline, stderr).
    pub source: String,
    /// A regex: the value is its first group (or the whole match).
    pub pattern: Option<String>,
    /// A JSONPath into the output parsed as JSON: the value is the first value selected.
    pub json_path: Option<String>,
    /// Most bytes kept (default 1 MiB).
    pub max_size: u64,
    /// The value when `pattern`/`json_path` select nothing (else setup fails).
    pub default: Option<String>,
    /// `preserve` (default), `join`, `first_line`, `last_line` or `array`.
    pub multiline: String,
}

/// The `map:` section.
#[derive(Clone, Debug, PartialEq)]
pub struct MapSpec {
    /// `input`: a JSON file relative to the session worktree, or else a shell command (run.md
    /// §2); kept exactly as written. Required, not empty.
    pub input: String,
    /// `json_path`, as written; checked by [`items::compile_path`] when parsed.
    pub json_path: Option<String>,
    /// `filter`, as written; compiled by [`expr::compile`] when parsed.
    pub filter: Option<String>,
    /// `sort_by`, as written; checked by [`items::compile_sort`] when parsed.
    pub sort_by: Option<String>,
    /// `max_items`: keep at most this many items (after `offset`).
    pub max_items: Option<usize>,
    /// `offset`: skip this many items first (0.4.4 parses it and ignores it; we apply it).
    pub offset: Option<usize>,
    /// `distinct`: a field; keep the first item of each of its values (after `sort_by`; 0.4.4
    /// parses it and ignores it). Checked by [`expr::compile_field`] when parsed.
    pub distinct: Option<String>,
    /// `max_parallel`: agents at once; default `Count(10)`.
    pub max_parallel: MaxParallel,
    /// `agent_template`: the steps each agent runs (a list or `{commands: [...]}`; never empty).
    pub agent_template: Vec<Step>,
}

/// `map.max_parallel`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MaxParallel {
    /// A positive number (`3` or `"3"`).
    Count(usize),
    /// `"$N"` or `"${N}"`: the name `N`, resolved by the executor from the workflow `env`, then
    /// the process environment (0.4.4 `mapreduce.rs:397`).
    Var(String),
}

/// `error_policy:` (run.md §2 and §3 "MapReduce").
#[derive(Clone, Debug, PartialEq)]
pub struct ErrorPolicy {
    /// What a failed item does; default [`OnItemFailure::Dlq`].
    pub on_item_failure: OnItemFailure,
    /// `continue_on_failure`; default true. False stops scheduling items after a failure.
    pub continue_on_failure: bool,
    /// `max_failures`: stop scheduling once this many items failed.
    pub max_failures: Option<usize>,
    /// `failure_threshold`: a **fraction** in `0.0..=1.0` (0.2 = 20 %) of failed items over
    /// items processed; values above 1 are refused rather than read as percent.
    pub failure_threshold: Option<f64>,
}

impl Default for ErrorPolicy {
    fn default() -> Self {
        ErrorPolicy {
            on_item_failure: OnItemFailure::Dlq,
            continue_on_failure: true,
            max_failures: None,
            failure_threshold: None,
        }
    }
}

/// `on_item_failure`. 0.4.4 also parses `retry` and custom handler names; we refuse them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnItemFailure {
    /// `dlq` (default): record the item in the dead letter queue and go on.
    Dlq,
    /// `skip`: go on without a DLQ entry.
    Skip,
    /// `stop`: start no new item.
    Stop,
}
impl Workflow {
    /// Every step in run order with its phase (`"step"`, `"setup"`, `"agent step"`, `"reduce"`,
    /// `"merge"`) and 0-based index within that phase.
    pub fn steps(&self) -> Vec<(&'static str, usize, &Step)> {
        let mut out = Vec::new();
        match &self.kind {
            Kind::Standard(s) => out.extend(s.iter().enumerate().map(|(i, x)| ("step", i, x))),
            Kind::MapReduce(m) => {
                out.extend(m.setup.iter().enumerate().map(|(i, x)| ("setup", i, x)));
                out.extend(
                    m.map
                        .agent_template
                        .iter()
                        .enumerate()
                        .map(|(i, x)| ("agent step", i, x)),
                );
                out.extend(m.reduce.iter().enumerate().map(|(i, x)| ("reduce", i, x)));
            }
        }
        if let Some(m) = &self.merge {
            out.extend(m.iter().enumerate().map(|(i, x)| ("merge", i, x)));
        }
        out
    }
}
/// Read and [`parse`] the workflow file at `path`. Errors: the file cannot be read (usage error
/// "cannot read workflow file `…`: …", exit 2), is not UTF-8, or does not parse.
pub fn load(path: &Path) -> Result<Workflow> {
    let bytes = std::fs::read(path).map_err(|e| {
        Error::usage(format!(
            "cannot read workflow file `{}`: {}",
            printable(path.as_os_str()),
            crate::error::describe_io(&e)
        ))
    })?;
    let text = String::from_utf8(bytes).map_err(|e| {
        Error::usage(format!(
            "`{}`: not UTF-8 text (invalid byte at offset {})",
            printable(path.as_os_str()),
            e.utf8_error().valid_up_to()
        ))
    })?;
    parse(&text, path)
}

/// Parse workflow `text`; `path` is only used in messages, for [`Workflow::path`] and for the
/// default name. Every error is [`Error::usage`] (exit 2) with a message
/// `` `{path}`:{line}:{col}: {what is wrong} `` that names the offending key.
pub fn parse(text: &str, path: &Path) -> Result<Workflow> {
    let c = check(text, path);
    let errors: Vec<&str> = c
        .problems
        .iter()
        .filter(|p| p.severity == Severity::Error)
        .map(|p| p.text.as_str())
        .collect();
    match c.workflow {
        Some(wf) if errors.is_empty() => Ok(wf),
        _ if errors.is_empty() => Err(Error::usage(format!(
            "`{}`: the workflow does not parse",
            printable(path.as_os_str())
        ))),
        _ => Err(Error::usage(errors.join("\n"))),
    }
}

/// How bad a [`Problem`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Severity {
    /// The file is invalid (exit 2).
    Error,
    /// The file runs; something in it is ignored or differs from 0.4.4.
    Warning,
}

/// One problem of a workflow file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// Error or warning.
    pub severity: Severity,
    /// 1-based line (1 when the problem is the whole file).
    pub line: usize,
    /// 1-based column.
    pub col: usize,
    /// The message without its position, escaped (`printable_str`).
    pub message: String,
    /// `` `{path}`:{line}:{col}: {message} ``, escaped.
    pub text: String,
}

/// What [`check`] found: the workflow when it has no error, and every problem in file order
/// of discovery.
#[derive(Clone, Debug)]
pub struct Checked {
    /// The parsed workflow; `None` when any problem is an error.
    pub workflow: Option<Workflow>,
    /// Every error and warning.
    pub problems: Vec<Problem>,
}

impl Checked {
    /// True when some problem is an error.
    pub fn has_errors(&self) -> bool {
        self.problems.iter().any(|p| p.severity == Severity::Error)
    }
}

/// Parse `text` and report every problem (`prodigy validate`); never fails.
pub fn check(text: &str, path: &Path) -> Checked {
    let cx = Cx::new(path);
    let wf = cx.workflow(text).ok();
    let mut problems = cx.problems.into_inner();
    crate::sort::sort_by_key(&mut problems, |p| (p.line, p.col));
    let errors = problems.iter().any(|p| p.severity == Severity::Error);
    let workflow = wf.filter(|_| !errors).map(|mut wf| {
        wf.warnings = problems
            .iter()
            .filter(|p| p.severity == Severity::Warning)
            .map(|p| p.text.clone())
            .collect();
        wf.features = cx
            .features
            .take()
            .into_iter()
            .map(|(f, p)| (f, p.line, p.col))
            .collect();
        crate::sort::sort_by_key(&mut wf.features, |f| (f.1, f.2));
        wf
    });
    Checked { workflow, problems }
}

/// Read and [`check`] the file at `path`; a file that cannot be read or is not UTF-8 is one
/// error at line 1.
pub fn check_file(path: &Path) -> Checked {
    let text = std::fs::read(path)
        .map_err(|e| {
            format!(
                "cannot read workflow file `{}`: {}",
                printable(path.as_os_str()),
                crate::error::describe_io(&e)
            )
        })
        .and_then(|b| {
            String::from_utf8(b).map_err(|e| {
                format!(
                    "`{}`: not UTF-8 text (invalid byte at offset {})",
                    printable(path.as_os_str()),
                    e.utf8_error().valid_up_to()
                )
            })
        });
    match text {
        Ok(t) => check(&t, path),
        Err(m) => Checked {
            workflow: None,
            problems: vec![Problem {
                severity: Severity::Error,
                line: 1,
                col: 1,
                message: m.clone(),
                text: m,
            }],
        },
    }
}

/// FNV-1a, 64 bit, of `bytes` as 16 lowercase hex digits (offset basis 0xcbf29ce484222325,
/// prime 0x100000001b3).
pub fn fnv1a64_hex(bytes: &[u8]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// True for `[A-Za-z_][A-Za-z0-9_]*`: capture names, env names, `$VAR` names.
pub fn is_identifier(s: &str) -> bool {
    let mut b = s.bytes();
    matches!(b.next(), Some(c) if c.is_ascii_alphabetic() || c == b'_')
        && b.all(|c| c.is_ascii_alphanumeric() || c == b'_')
}

impl Cx<'_> {
    fn map_spec(&self, mk: &Key, mv: &Node) -> Result<MapSpec> {
        let m = self.map_of(mk, mv, "`map`")?;
        // Every key read below is a key of `map` in the key table.
        let get = |_: &[(Key, Node)], key: &str| self.get(K::Map, m, key);
        self.check_keys(m, K::Map);
        let Some((ik, iv)) = get(m, "input") else {
            return Err(self.err(mk.pos, "`map.input` is required (a JSON file or a command)"));
        };
        let input = self.string(ik, iv, "map.input")?.to_string();
        if input.trim().is_empty() {
            return Err(self.err(iv.pos_or(ik), "`map.input` is empty"));
        }
        let mut spec = MapSpec {
            input,
            json_path: None,
            filter: None,
            sort_by: None,
            max_items: None,
            offset: None,
            distinct: None,
            max_parallel: MaxParallel::Count(10),
            agent_template: Vec::new(),
        };
        if let Some((k, v)) = get(m, "json_path") {
            let s = self.string(k, v, "map.json_path")?;
            items::compile_path(s)
                .map_err(|e| self.err(v.pos_or(k), format!("`map.json_path`: {e}")))?;
            spec.json_path = Some(s.to_string());
        }
        if let Some((k, v)) = get(m, "filter") {
            let s = self.string(k, v, "map.filter")?;
            expr::compile(s).map_err(|e| self.err(v.pos_or(k), format!("`map.filter`: {e}")))?;
            spec.filter = Some(s.to_string());
        }
        if let Some((k, v)) = get(m, "sort_by") {
            let s = self.string(k, v, "map.sort_by")?;
            items::compile_sort(s)
                .map_err(|e| self.err(v.pos_or(k), format!("`map.sort_by`: {e}")))?;
            spec.sort_by = Some(s.to_string());
        }
        if let Some((k, v)) = get(m, "distinct") {
            let s = self.string(k, v, "map.distinct")?;
            expr::compile_field(s)
                .map_err(|e| self.err(v.pos_or(k), format!("`map.distinct`: {e}")))?;
            spec.distinct = Some(s.to_string());
        }
        if let Some((k, v)) = get(m, "max_items") {
            spec.max_items = Some(self.uint(k, v, 0)? as usize);
        }
        if let Some((k, v)) = get(m, "offset") {
            spec.offset = Some(self.uint(k, v, 0)? as usize);
        }
        if let Some((k, v)) = get(m, "max_parallel") {
            spec.max_parallel = self.max_parallel(k, v)?;
        }
        if let Some((k, v)) = get(m, "timeout_config") {
            self.timeout_config(k, v)?;
        }
        for key in ["agent_timeout_secs", "timeout_config"] {
            if let Some((k, _)) = get(m, key) {
                self.warn(
                    k.pos,
                    format!(
                        "`map.{key}` is only advisory in Prodigy 0.4.4 and is ignored; use a \
                         step `timeout`"
                    ),
                );
            }
        }
        let Some((ak, av)) = get(m, "agent_template") else {
            return Err(self.err(
                mk.pos,
                "`map.agent_template` is required (the steps each agent runs)",
            ));
        };
        let (steps, _) = self.phase(ak, av, "agent_template", false)?;
        if steps.is_empty() {
            return Err(self.err(ak.pos, "`map.agent_template` has no steps"));
        }
        spec.agent_template = steps;
        Ok(spec)
    }

    fn max_parallel(&self, k: &Key, v: &Node) -> Result<MaxParallel> {
        let bad = || {
            self.err(
                v.pos_or(k),
                format!(
                    "`max_parallel` must be a positive number or `$NAME` / `${{NAME}}`, found {}",
                    show(v)
                ),
            )
        };
        match &v.kind {
            NodeKind::Scalar(Scalar::Int(_), _) => {
                Ok(MaxParallel::Count(self.uint(k, v, 1)? as usize))
            }
            NodeKind::Scalar(Scalar::Str(s), _) => {
                let s = s.trim();
                if let Ok(n) = s.parse::<usize>() {
                    return if n >= 1 {
                        Ok(MaxParallel::Count(n))
                    } else {
                        Err(bad())
                    };
                }
                let name = s
                    .strip_prefix("${")
                    .and_then(|r| r.strip_suffix('}'))
                    .or_else(|| s.strip_prefix('$'))
                    .ok_or_else(bad)?;
                if is_identifier(name) {
                    Ok(MaxParallel::Var(name.to_string()))
                } else {
                    Err(bad())
                }
            }
            _ => Err(bad()),
        }
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_lang;

/// [`check`], and every `(context, key)` the parser looked up (the key table's invariant test).
#[cfg(test)]
pub(crate) fn check_reading(
    text: &str,
) -> (Checked, std::collections::BTreeSet<(keys::Cx, String)>) {
    let cx = Cx::new(Path::new("wf/test.yml"));
    let _ = cx.workflow(text);
    let read = cx.read.take();
    (check(text, Path::new("wf/test.yml")), read)
}
