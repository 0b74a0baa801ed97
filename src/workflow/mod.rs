//! The workflow file format (run.md §2): YAML text into typed [`Workflow`] values, plus
//! `${…}` interpolation ([`vars`]), work-item extraction ([`items`]) and the expression language
//! of `when:` and `map.filter` ([`expr`]).
//!
//! Owns what a workflow file may say and every message about a file that says something else
//! (each one `` `{path}`:{line}:{col}: … ``, exit 2). It must not run anything, read or write
//! `$PRODIGY_HOME`, look at the environment, or print: [`load`] reads the one file it is
//! given and the caller decides what to do with [`Workflow::warnings`].
//!
//! Accepted: what Prodigy 0.4.4 accepts for shell and Claude workflows
//! (`prodigy-0.4.4-runner.md` §1.2–§1.4), with these deliberate differences:
//! - MapReduce is chosen by the top-level key `mode: mapreduce`, not by a substring of the
//!   text (0.4.4 `src/cook/mod.rs:315` is switched by a comment).
//! - Unknown keys are errors everywhere (0.4.4 ignores them, so a typo silently drops a step);
//!   keys 0.4.4 parses but `prodigy run` does not run ([`UNSUPPORTED_STEP_KEYS`] and a few
//!   others) are errors that say so. Keys 0.4.4 accepts but only logs about
//!   (`map.agent_timeout_secs`, `map.timeout_config`, `error_policy.error_collection`) are
//!   accepted, ignored, and reported in [`Workflow::warnings`].
//! - An error-policy key given both at top level and inside `error_policy` is an error.
//! - `on_item_failure: retry` (and custom handlers) are refused.
//!
//! Why about 1,100 lines: the workflow types, their serde shapes and the validation messages of
//! each key are one piece (its tests are in `tests.rs`, interpolation in `vars.rs`, work items in
//! `items.rs`).

pub mod expr;
pub mod items;
pub mod vars;
mod yaml;

use crate::error::{Error, Result};
use crate::store::names::{printable, printable_cut, printable_str};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use yaml::{Key, Node, NodeKind, Pos, Scalar};

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
    /// Keys that were accepted but are ignored, one message each in the same
    /// `` `{path}`:{line}:{col}: `` form as errors. The caller may print them; this module never
    /// does.
    pub warnings: Vec<String>,
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
    /// `map:`.
    pub map: MapSpec,
    /// `reduce:` steps, run in the parent worktree after the map (may be empty).
    pub reduce: Vec<Step>,
    /// `error_policy:` and its top-level shorthands.
    pub error_policy: ErrorPolicy,
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

/// One step.
#[derive(Clone, Debug, PartialEq)]
pub struct Step {
    /// What to run.
    pub action: Action,
    /// `commit_required`: the step fails when it leaves HEAD where it was. Default false.
    pub commit_required: bool,
    /// `timeout` in seconds (a positive integer).
    pub timeout: Option<u64>,
    /// The variable that receives the step's output: `capture_output: true` → `"shell"` or
    /// `"claude"` (read back as `${shell.output}` / `${claude.output}`), `capture_output: NAME`
    /// → `NAME` (`[A-Za-z_][A-Za-z0-9_]*`); false or absent → `None`.
    pub capture: Option<String>,
    /// `on_failure`.
    pub on_failure: Option<OnFailure>,
    /// 1-based line of the step in the file (its first key, or its string), for messages.
    pub line: usize,
}

/// A step's command. The text is not interpolated yet (see [`vars::interpolate`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// `shell: TEXT`, run as `sh -c TEXT`.
    Shell(String),
    /// `claude: TEXT`, or a bare string step (0.4.4 legacy slash command such as
    /// `"/prodigy-lint"`).
    Claude(String),
}

impl Action {
    /// `"shell"` or `"claude"`.
    pub fn kind(&self) -> &'static str {
        match self {
            Action::Shell(_) => "shell",
            Action::Claude(_) => "claude",
        }
    }
    /// The command text.
    pub fn text(&self) -> &str {
        match self {
            Action::Shell(t) | Action::Claude(t) => t,
        }
    }
}

impl Step {
    /// The command text (shell command or Claude prompt), not interpolated.
    pub fn text(&self) -> &str {
        self.action.text()
    }
    /// One line for progress and messages: `shell: echo hi`; only the first line of the text,
    /// cut to 60 characters with `…` when longer or when more lines follow; control characters
    /// escaped ([`printable_str`]).
    pub fn display(&self) -> String {
        let text = self.text().trim();
        let first = text.lines().next().unwrap_or("");
        let more = first.len() < text.len();
        let out = if more || first.chars().count() > 60 {
            let cut: String = first.chars().take(57).collect();
            format!("{}…", printable_str(&cut))
        } else {
            printable_str(first)
        };
        format!("{}: {}", self.action.kind(), out)
    }
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

/// `on_failure` of a step: a string (`/…` → Claude, else shell) or
/// `{shell|claude, max_attempts?, fail_workflow?, commit_required?}` (0.4.4 `TestDebugConfig`,
/// `src/config/command.rs:168`; `max_retries` is accepted as 0.4.4's other name for
/// `max_attempts`).
#[derive(Clone, Debug, PartialEq)]
pub struct OnFailure {
    /// The handler to run when the step fails.
    pub action: Action,
    /// How many times the handler may run; default 1, at least 1.
    pub max_attempts: u32,
    /// When true the workflow fails even if the handler succeeds. Default false.
    pub fail_workflow: bool,
    /// The handler must create a commit. Default false.
    pub commit_required: bool,
}

/// Keys 0.4.4 accepts in a step that `prodigy run` does not run (run.md §2); each is an error
/// naming file, line, column and key.
pub const UNSUPPORTED_STEP_KEYS: &[&str] = &[
    "foreach",
    "validate",
    "goal_seek",
    "write_file",
    "when",
    "on_success",
    "analyze",
    "test",
    "env",
    "capture",
    "capture_format",
    "capture_streams",
    "output_file",
    "working_dir",
    "cwd",
    "retry",
];

const STEP_KEYS: &[&str] = &[
    "shell",
    "claude",
    "commit_required",
    "timeout",
    "capture_output",
    "on_failure",
];
const ON_FAILURE_KEYS: &[&str] = &[
    "shell",
    "claude",
    "max_attempts",
    "max_retries",
    "fail_workflow",
    "commit_required",
];
const STANDARD_KEYS: &[&str] = &["name", "mode", "commands", "env", "merge"];
const MAPREDUCE_KEYS: &[&str] = &[
    "name",
    "mode",
    "env",
    "setup",
    "map",
    "reduce",
    "merge",
    "error_policy",
    "on_item_failure",
    "continue_on_failure",
    "max_failures",
    "failure_threshold",
    "error_collection",
];
const UNSUPPORTED_TOP_KEYS: &[&str] = &["secrets", "env_files", "profiles", "imports", "template"];
const MAP_KEYS: &[&str] = &[
    "input",
    "json_path",
    "filter",
    "sort_by",
    "max_items",
    "offset",
    "distinct",
    "max_parallel",
    "agent_template",
    "agent_timeout_secs",
    "timeout_config",
];
const POLICY_KEYS: &[&str] = &[
    "on_item_failure",
    "continue_on_failure",
    "max_failures",
    "failure_threshold",
    "error_collection",
];

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
    let cx = Cx {
        path,
        warnings: Vec::new(),
    };
    cx.workflow(text)
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

type Entries = [(Key, Node)];

struct Cx<'p> {
    path: &'p Path,
    warnings: Vec<String>,
}

impl Cx<'_> {
    fn err(&self, pos: Pos, msg: impl std::fmt::Display) -> Error {
        let pos = if pos == Pos::default() {
            Pos { line: 1, col: 1 }
        } else {
            pos
        };
        Error::usage(printable_str(&format!(
            "`{}`:{}:{}: {msg}",
            self.path.display(),
            pos.line,
            pos.col
        )))
    }

    fn warn(&mut self, pos: Pos, msg: impl std::fmt::Display) {
        self.warnings.push(printable_str(&format!(
            "`{}`:{}:{}: {msg}",
            self.path.display(),
            pos.line,
            pos.col
        )));
    }

    fn workflow(mut self, text: &str) -> Result<Workflow> {
        let root = yaml::parse(text).map_err(|e| {
            let mut msg = e.message;
            if msg.starts_with("mapping values are not allowed") {
                // The classic: `shell: echo "a: b"` (a plain value cannot contain `: `).
                msg.push_str(
                    "; a plain value cannot contain `: ` — quote the whole value \
                     (`shell: 'echo \"a: b\"'`) or use a block scalar (`shell: |`)",
                );
            }
            self.err(e.pos, msg)
        })?;
        let stem = self
            .path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "workflow".to_string());
        let mut wf = Workflow {
            name: stem,
            path: self.path.to_path_buf(),
            hash: fnv1a64_hex(text.as_bytes()),
            env: BTreeMap::new(),
            merge: None,
            merge_timeout: None,
            kind: Kind::Standard(Vec::new()),
            warnings: Vec::new(),
        };
        match &root.kind {
            NodeKind::Seq(_) => {
                let steps = self.steps(&root, "the workflow", root.pos)?;
                wf.kind = Kind::Standard(steps);
            }
            NodeKind::Map(m) => {
                let mapreduce = match get(m, "mode") {
                    None => false,
                    Some((k, v)) => match v.kind {
                        NodeKind::Scalar(Scalar::Str(ref s), _) if s == "mapreduce" => true,
                        NodeKind::Scalar(Scalar::Str(ref s), _) if s == "standard" => false,
                        _ => {
                            return Err(self.err(
                                v.pos_or(k),
                                format!(
                                    "`mode` must be `mapreduce` or `standard`, found {}",
                                    show(v)
                                ),
                            ))
                        }
                    },
                };
                if let Some((k, v)) = get(m, "name") {
                    wf.name = self.string(k, v, "name")?.to_string();
                }
                if let Some((k, v)) = get(m, "env") {
                    wf.env = self.env(k, v)?;
                }
                if let Some((k, v)) = get(m, "merge") {
                    let (steps, timeout) = self.phase(k, v, "merge", true)?;
                    wf.merge = Some(steps);
                    wf.merge_timeout = timeout;
                }
                if mapreduce {
                    wf.kind = Kind::MapReduce(self.mapreduce(&root, m)?);
                } else {
                    self.check_standard_keys(m)?;
                    let Some((k, v)) = get(m, "commands") else {
                        return Err(self.err(
                            root.pos,
                            "a workflow map needs `commands:` (the steps), or `mode: mapreduce` \
                             with `map:`",
                        ));
                    };
                    wf.kind = Kind::Standard(self.steps(v, "commands", k.pos)?);
                }
            }
            NodeKind::Scalar(Scalar::Null, _) => {
                return Err(self.err(
                    root.pos,
                    "the workflow file is empty; expected a list of steps, a map with \
                     `commands:`, or `mode: mapreduce`",
                ))
            }
            NodeKind::Scalar(..) => {
                return Err(self.err(
                    root.pos,
                    format!(
                        "expected a list of steps or a map, found {}",
                        root.describe()
                    ),
                ))
            }
        }
        if let Kind::Standard(steps) = &wf.kind {
            if steps.is_empty() {
                return Err(self.err(root.pos, "the workflow has no steps"));
            }
        }
        wf.warnings = self.warnings;
        Ok(wf)
    }

    fn check_standard_keys(&self, m: &Entries) -> Result<()> {
        for (k, _) in m {
            let name = k.name.as_str();
            if STANDARD_KEYS.contains(&name) {
                continue;
            }
            if MAPREDUCE_KEYS.contains(&name) {
                return Err(self.err(
                    k.pos,
                    format!(
                        "`{name}` belongs to MapReduce workflows; add `mode: mapreduce` at top \
                         level"
                    ),
                ));
            }
            self.check_key(k, "the workflow", STANDARD_KEYS, UNSUPPORTED_TOP_KEYS)?;
        }
        Ok(())
    }

    /// Refuse `k` unless it is in `allowed`; a key of `unsupported` gets its own message.
    fn check_key(&self, k: &Key, what: &str, allowed: &[&str], unsupported: &[&str]) -> Result<()> {
        let name = k.name.as_str();
        if allowed.contains(&name) {
            return Ok(());
        }
        if unsupported.contains(&name) {
            return Err(self.err(
                k.pos,
                format!("`{name}` in {what} is not supported by prodigy run"),
            ));
        }
        let hint = match closest(name, allowed) {
            Some(s) => format!("; did you mean `{s}`?"),
            None => format!("; expected one of: {}", allowed.join(", ")),
        };
        Err(self.err(k.pos, format!("unknown key `{name}` in {what}{hint}")))
    }

    fn check_keys(
        &self,
        m: &Entries,
        what: &str,
        allowed: &[&str],
        unsupported: &[&str],
    ) -> Result<()> {
        for (k, _) in m {
            self.check_key(k, what, allowed, unsupported)?;
        }
        Ok(())
    }

    fn mapreduce(&mut self, root: &Node, m: &Entries) -> Result<MapReduce> {
        self.check_keys(
            m,
            "a MapReduce workflow",
            MAPREDUCE_KEYS,
            UNSUPPORTED_TOP_KEYS,
        )?;
        let (setup, setup_timeout) = match get(m, "setup") {
            Some((k, v)) => self.phase(k, v, "setup", true)?,
            None => (Vec::new(), None),
        };
        let reduce = match get(m, "reduce") {
            Some((k, v)) => self.phase(k, v, "reduce", false)?.0,
            None => Vec::new(),
        };
        let Some((mk, mv)) = get(m, "map") else {
            return Err(self.err(
                root.pos,
                "a MapReduce workflow needs `map:` with `input` and `agent_template`",
            ));
        };
        let map = self.map_spec(mk, mv)?;
        let mut error_policy = ErrorPolicy::default();
        let nested = match get(m, "error_policy") {
            Some((k, v)) => {
                let pm = self.map_of(k, v, "`error_policy`")?;
                self.check_keys(pm, "`error_policy`", POLICY_KEYS, &[])?;
                pm
            }
            None => &[],
        };
        for key in POLICY_KEYS {
            let top = get(m, key);
            let inner = get(nested, key);
            let (k, v) = match (top, inner) {
                (Some((tk, _)), Some((ik, _))) => {
                    return Err(self.err(
                        tk.pos,
                        format!(
                            "`{key}` is given both at top level and in `error_policy` (line {}); \
                             keep one",
                            ik.pos.line
                        ),
                    ))
                }
                (Some(e), None) | (None, Some(e)) => e,
                (None, None) => continue,
            };
            self.policy_key(&mut error_policy, k, v)?;
        }
        Ok(MapReduce {
            setup,
            setup_timeout,
            map,
            reduce,
            error_policy,
        })
    }

    fn policy_key(&mut self, p: &mut ErrorPolicy, k: &Key, v: &Node) -> Result<()> {
        match k.name.as_str() {
            "on_item_failure" => {
                let s = self.string(k, v, "on_item_failure")?;
                p.on_item_failure =
                    match s {
                        "dlq" => OnItemFailure::Dlq,
                        "skip" => OnItemFailure::Skip,
                        "stop" => OnItemFailure::Stop,
                        "retry" => return Err(self.err(
                            v.pos,
                            "`on_item_failure: retry` is not supported by prodigy run; use `dlq` \
                             and `prodigy dlq retry JOB`",
                        )),
                        other => {
                            return Err(self.err(
                                v.pos,
                                format!(
                                    "`on_item_failure` must be `dlq`, `skip` or `stop`, found \
                                 `{other}`"
                                ),
                            ))
                        }
                    };
            }
            "continue_on_failure" => p.continue_on_failure = self.bool(k, v)?,
            "max_failures" => p.max_failures = Some(self.uint(k, v, 0)? as usize),
            "failure_threshold" => {
                let f = match v.kind {
                    NodeKind::Scalar(Scalar::Int(i), _) => i as f64,
                    NodeKind::Scalar(Scalar::Float(f), _) => f,
                    _ => f64::NAN,
                };
                if !(0.0..=1.0).contains(&f) {
                    return Err(self.err(
                        v.pos_or(k),
                        format!(
                            "`failure_threshold` must be a fraction from 0 to 1 (0.2 = 20%), \
                             found {}",
                            show(v)
                        ),
                    ));
                }
                p.failure_threshold = Some(f);
            }
            "error_collection" => self.warn(
                k.pos,
                "`error_collection` is accepted for Prodigy 0.4.4 compatibility and ignored",
            ),
            _ => unreachable!("POLICY_KEYS"),
        }
        Ok(())
    }

    fn map_spec(&mut self, mk: &Key, mv: &Node) -> Result<MapSpec> {
        let m = self.map_of(mk, mv, "`map`")?;
        self.check_keys(m, "`map`", MAP_KEYS, &[])?;
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

    /// `setup`, `reduce`, `merge`, `agent_template`: a list of steps or `{commands, timeout?}`.
    /// Null (all steps commented out) is an empty list.
    fn phase(
        &self,
        k: &Key,
        v: &Node,
        what: &str,
        timeout_allowed: bool,
    ) -> Result<(Vec<Step>, Option<u64>)> {
        match &v.kind {
            NodeKind::Map(m) => {
                let allowed: &[&str] = if timeout_allowed {
                    &["commands", "timeout"]
                } else {
                    &["commands"]
                };
                let unsupported: &[&str] = if what == "setup" {
                    &["capture_outputs"]
                } else {
                    &[]
                };
                self.check_keys(m, &format!("`{what}`"), allowed, unsupported)?;
                let timeout = match get(m, "timeout") {
                    Some((tk, tv)) => Some(self.uint(tk, tv, 1)?),
                    None => None,
                };
                let Some((ck, cv)) = get(m, "commands") else {
                    return Err(self.err(k.pos, format!("`{what}` needs `commands:` (the steps)")));
                };
                Ok((self.steps(cv, what, ck.pos)?, timeout))
            }
            NodeKind::Scalar(Scalar::Null, _) => Ok((Vec::new(), None)),
            _ => Ok((self.steps(v, what, k.pos)?, None)),
        }
    }

    /// A list of steps; `at` is where to point when `v` is not a list.
    fn steps(&self, v: &Node, what: &str, at: Pos) -> Result<Vec<Step>> {
        match &v.kind {
            NodeKind::Seq(items) => items.iter().map(|n| self.step(n, what)).collect(),
            NodeKind::Scalar(Scalar::Null, _) => Ok(Vec::new()),
            NodeKind::Scalar(..) if v.pos != Pos::default() => Err(self.err(
                v.pos,
                format!("`{what}` must be a list of steps, found {}", v.describe()),
            )),
            _ => Err(self.err(
                at,
                format!("`{what}` must be a list of steps, found {}", v.describe()),
            )),
        }
    }

    fn step(&self, n: &Node, what: &str) -> Result<Step> {
        let m = match &n.kind {
            NodeKind::Scalar(Scalar::Str(s), _) => {
                if s.trim().is_empty() {
                    return Err(self.err(n.pos, format!("empty step in `{what}`")));
                }
                return Ok(Step {
                    action: Action::Claude(s.clone()),
                    commit_required: false,
                    timeout: None,
                    capture: None,
                    on_failure: None,
                    line: n.pos.line,
                });
            }
            NodeKind::Map(m) if !m.is_empty() => m,
            _ => {
                return Err(self.err(
                    n.pos,
                    format!(
                        "a step in `{what}` must be a map with `shell:` or `claude:`, found {}",
                        n.describe()
                    ),
                ))
            }
        };
        self.check_keys(m, "a step", STEP_KEYS, UNSUPPORTED_STEP_KEYS)?;
        let action = self.action(n, m, "a step")?;
        let mut step = Step {
            action,
            commit_required: false,
            timeout: None,
            capture: None,
            on_failure: None,
            line: n.pos.line,
        };
        for (k, v) in m {
            match k.name.as_str() {
                "commit_required" => step.commit_required = self.bool(k, v)?,
                "timeout" => step.timeout = Some(self.uint(k, v, 1)?),
                "capture_output" => {
                    step.capture = match &v.kind {
                        NodeKind::Scalar(Scalar::Bool(true), _) => {
                            Some(step.action.kind().to_string())
                        }
                        NodeKind::Scalar(Scalar::Bool(false), _) => None,
                        NodeKind::Scalar(Scalar::Str(s), _) if is_identifier(s) => Some(s.clone()),
                        _ => {
                            return Err(self.err(
                                v.pos_or(k),
                                format!(
                                    "`capture_output` must be true, false or a variable name \
                                     ([A-Za-z_][A-Za-z0-9_]*), found {}",
                                    show(v)
                                ),
                            ))
                        }
                    }
                }
                "on_failure" => step.on_failure = Some(self.on_failure(k, v)?),
                _ => {}
            }
        }
        Ok(step)
    }

    /// Exactly one of `shell` / `claude` in `m`.
    fn action(&self, n: &Node, m: &Entries, what: &str) -> Result<Action> {
        let shell = get(m, "shell");
        let claude = get(m, "claude");
        match (shell, claude) {
            (Some((sk, _)), Some((ck, _))) => {
                let later = if sk.pos.line > ck.pos.line
                    || (sk.pos.line == ck.pos.line && sk.pos.col > ck.pos.col)
                {
                    sk
                } else {
                    ck
                };
                Err(self.err(
                    later.pos,
                    format!("{what} has both `shell` and `claude`; split it into two steps"),
                ))
            }
            (Some((k, v)), None) => Ok(Action::Shell(self.command(k, v)?)),
            (None, Some((k, v))) => Ok(Action::Claude(self.command(k, v)?)),
            (None, None) => Err(self.err(n.pos, format!("{what} needs `shell:` or `claude:`"))),
        }
    }

    fn command(&self, k: &Key, v: &Node) -> Result<String> {
        let s = self.string(k, v, &k.name)?;
        if s.trim().is_empty() {
            return Err(self.err(v.pos_or(k), format!("`{}` is empty", k.name)));
        }
        Ok(s.to_string())
    }

    fn on_failure(&self, k: &Key, v: &Node) -> Result<OnFailure> {
        let mut of = OnFailure {
            action: Action::Shell(String::new()),
            max_attempts: 1,
            fail_workflow: false,
            commit_required: false,
        };
        match &v.kind {
            NodeKind::Scalar(Scalar::Str(s), _) if !s.trim().is_empty() => {
                of.action = if s.trim_start().starts_with('/') {
                    Action::Claude(s.clone())
                } else {
                    Action::Shell(s.clone())
                };
            }
            NodeKind::Map(m) if !m.is_empty() => {
                self.check_keys(m, "`on_failure`", ON_FAILURE_KEYS, &["commands", "retry"])?;
                of.action = self.action(v, m, "`on_failure`")?;
                if let (Some((a, _)), Some((b, _))) =
                    (get(m, "max_attempts"), get(m, "max_retries"))
                {
                    let later = if a.pos.line >= b.pos.line { a } else { b };
                    return Err(self.err(
                        later.pos,
                        "`max_attempts` and `max_retries` mean the same; keep one",
                    ));
                }
                for (k, v) in m {
                    match k.name.as_str() {
                        "max_attempts" | "max_retries" => {
                            let n = self.uint(k, v, 1)?;
                            of.max_attempts = u32::try_from(n).map_err(|_| {
                                self.err(v.pos, format!("`{}` is too large", k.name))
                            })?;
                        }
                        "fail_workflow" => of.fail_workflow = self.bool(k, v)?,
                        "commit_required" => of.commit_required = self.bool(k, v)?,
                        _ => {}
                    }
                }
            }
            _ => {
                return Err(self.err(
                    v.pos_or(k),
                    format!(
                        "`on_failure` must be a command string or a map with `shell:` or \
                         `claude:`, found {}",
                        show(v)
                    ),
                ))
            }
        }
        Ok(of)
    }

    fn env(&self, k: &Key, v: &Node) -> Result<BTreeMap<String, String>> {
        let m = self.map_of(k, v, "`env`")?;
        let mut env = BTreeMap::new();
        for (ek, ev) in m {
            if !is_identifier(&ek.name) {
                return Err(self.err(
                    ek.pos,
                    format!(
                        "`env` name `{}` is not a variable name ([A-Za-z_][A-Za-z0-9_]*)",
                        ek.name
                    ),
                ));
            }
            let value = match &ev.kind {
                NodeKind::Scalar(Scalar::Str(s), _) => s.clone(),
                NodeKind::Scalar(
                    s @ (Scalar::Int(_) | Scalar::Float(_) | Scalar::Bool(_)),
                    raw,
                ) => raw.clone().unwrap_or_else(|| yaml::scalar_text(s)),
                _ => {
                    return Err(self.err(
                        ev.pos_or(ek),
                        format!(
                            "`env.{}` must be a string, number or boolean, found {}",
                            ek.name,
                            ev.describe()
                        ),
                    ))
                }
            };
            env.insert(ek.name.clone(), value);
        }
        Ok(env)
    }

    fn map_of<'n>(&self, k: &Key, v: &'n Node, what: &str) -> Result<&'n Entries> {
        match &v.kind {
            NodeKind::Map(m) => Ok(m),
            NodeKind::Scalar(Scalar::Null, _) => Ok(&[]),
            _ => Err(self.err(
                v.pos_or(k),
                format!("{what} must be a map, found {}", v.describe()),
            )),
        }
    }

    fn string<'n>(&self, k: &Key, v: &'n Node, what: &str) -> Result<&'n str> {
        match &v.kind {
            NodeKind::Scalar(Scalar::Str(s), _) => Ok(s),
            _ => Err(self.err(
                v.pos_or(k),
                format!("`{what}` must be a string, found {}", show(v)),
            )),
        }
    }

    fn bool(&self, k: &Key, v: &Node) -> Result<bool> {
        match &v.kind {
            NodeKind::Scalar(Scalar::Bool(b), _) => Ok(*b),
            _ => Err(self.err(
                v.pos_or(k),
                format!("`{}` must be true or false, found {}", k.name, show(v)),
            )),
        }
    }

    /// A whole number `>= min`.
    fn uint(&self, k: &Key, v: &Node, min: u64) -> Result<u64> {
        match &v.kind {
            NodeKind::Scalar(Scalar::Int(i), _) if *i >= i128::from(min) => {
                u64::try_from(*i).map_err(|_| self.err(v.pos, format!("`{}` is too large", k.name)))
            }
            _ => {
                let what = if min == 0 {
                    "a whole number (0 or more)"
                } else {
                    "a positive whole number"
                };
                let unit = if k.name == "timeout" {
                    " of seconds"
                } else {
                    ""
                };
                Err(self.err(
                    v.pos_or(k),
                    format!("`{}` must be {what}{unit}, found {}", k.name, show(v)),
                ))
            }
        }
    }
}

impl Node {
    /// Where to point for a bad value: a scalar's own position, else (a list, a map, an empty
    /// value) the key's, which is where a reader looks.
    fn pos_or(&self, k: &Key) -> Pos {
        match self.kind {
            NodeKind::Scalar(..) if self.pos != Pos::default() => self.pos,
            _ => k.pos,
        }
    }
}

fn get<'a>(m: &'a Entries, key: &str) -> Option<(&'a Key, &'a Node)> {
    m.iter().find(|(k, _)| k.name == key).map(|(k, v)| (k, v))
}

/// A short rendering of a value for messages: scalars as written (cut), else their kind.
fn show(v: &Node) -> String {
    match &v.kind {
        NodeKind::Scalar(Scalar::Str(s), _) => format!("`{}`", printable_cut(s, 40)),
        NodeKind::Scalar(Scalar::Null, _) => "nothing".to_string(),
        NodeKind::Scalar(s, raw) => {
            format!(
                "`{}`",
                printable_cut(&raw.clone().unwrap_or_else(|| yaml::scalar_text(s)), 40)
            )
        }
        _ => v.describe().to_string(),
    }
}

/// The candidate within edit distance 2 of `name` (for "did you mean").
fn closest<'a>(name: &str, candidates: &[&'a str]) -> Option<&'a str> {
    candidates
        .iter()
        .map(|c| (edit_distance(name, c), *c))
        .filter(|(d, _)| *d <= 2)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests;
