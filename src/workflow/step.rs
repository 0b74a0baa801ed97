//! Steps (run.md §2): the types of a step, its action and its modifiers, and their parser.
//!
//! A step is a map with one action (`shell`, `claude`, `write_file`, `foreach`, or a legacy
//! `{name, args}`), or a bare string (`claude /name args`), plus modifiers. Keys come from
//! [`super::keys`]; each modifier is read on its own, so one bad value does not hide the next.

use super::cx::{get, show, Cx, Entries};
use super::keys::Cx as K;
use super::yaml::{Key, Node, NodeKind, Pos, Scalar};
use super::{env::EnvValue, is_identifier};
use crate::error::Result;
use crate::store::names::printable_str;
use std::collections::BTreeMap;

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
    /// The other modifiers (all absent by default).
    pub more: Box<Modifiers>,
}

/// A step's modifiers beyond the ones every phase runs today.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Modifiers {
    /// `name:` beside an action: a label (0.4.4 turns the step into `claude /name`).
    pub name: Option<String>,
    /// `description:`: a label.
    pub description: Option<String>,
    /// `working_dir:`: relative to the worktree.
    pub working_dir: Option<String>,
    /// Step `env:`.
    pub env: BTreeMap<String, EnvValue>,
    /// `capture` with `capture_format` and `capture_streams`.
    pub capture: Option<Capture>,
    /// `output_file:`.
    pub output_file: Option<String>,
    /// `on_success:`.
    pub on_success: Option<Step>,
    /// `on_exit_code:` as `(code, step)`, in file order.
    pub on_exit_code: Vec<(i64, Step)>,
    /// `when:`, kept as text for the expression language (`src/workflow/expr.rs`).
    pub when: Option<When>,
    /// `validate:`.
    pub validate: Option<Validate>,
    /// `id:`.
    pub id: Option<String>,
    /// `outputs:` as `(NAME, file_pattern)`.
    pub outputs: Vec<(String, String)>,
}

/// A step's command. Text is not interpolated yet (see [`super::vars::interpolate`]).
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// `shell: TEXT`, run as `sh -c TEXT`.
    Shell(String),
    /// `claude: TEXT`, a bare string step, or a legacy `{name, args}` step (`/name args`).
    Claude(String),
    /// `write_file:`.
    WriteFile(Box<WriteFile>),
    /// `foreach:`.
    Foreach(Box<Foreach>),
}

impl Action {
    /// `"shell"`, `"claude"`, `"write_file"` or `"foreach"`.
    pub fn kind(&self) -> &'static str {
        match self {
            Action::Shell(_) => "shell",
            Action::Claude(_) => "claude",
            Action::WriteFile(_) => "write_file",
            Action::Foreach(_) => "foreach",
        }
    }
    /// The command text; a `write_file`'s path; a `foreach`'s input command or list as JSON.
    pub fn text(&self) -> &str {
        match self {
            Action::Shell(t) | Action::Claude(t) => t,
            Action::WriteFile(w) => &w.path,
            Action::Foreach(f) => &f.shown,
        }
    }
}

/// `write_file: {path, content, format, mode, create_dirs}`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WriteFile {
    /// Relative to the worktree; no `..` component, not absolute (checked when parsed).
    pub path: String,
    /// What to write (interpolated at run time).
    pub content: String,
    /// `text` (default), `json` or `yaml`.
    pub format: String,
    /// Permissions, default 0o644.
    pub mode: u32,
    /// Create missing parent directories. Default false.
    pub create_dirs: bool,
}

/// `foreach: {foreach|input, do, parallel, continue_on_error, max_items}`.
#[derive(Clone, Debug, PartialEq)]
pub struct Foreach {
    /// The items: a command whose stdout lines are items, or a list.
    pub input: ForeachInput,
    /// The input as shown (the command, or the list as JSON).
    pub shown: String,
    /// `do:` steps (not empty).
    pub steps: Vec<Step>,
    /// Items at once: `false` 1 (default), `true` 10, or N.
    pub parallel: usize,
    /// Go on after a failed item.
    pub continue_on_error: bool,
    /// Keep the first N items.
    pub max_items: Option<usize>,
}

/// Where a `foreach` gets its items.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ForeachInput {
    /// A shell command; each non-blank stdout line is an item.
    Command(String),
    /// Items as written (numbers and booleans as their text).
    List(Vec<String>),
}

/// `capture: NAME` and its `capture_format`, `capture_streams`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Capture {
    /// The variable.
    pub name: String,
    /// `string` (default), `number`, `json`, `lines`, `boolean`.
    pub format: String,
    /// Which streams and facts are kept.
    pub streams: Streams,
}

/// `capture_streams`: a string (`stdout`, `stderr`, `both`) or a map of flags.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Streams {
    /// Default true.
    pub stdout: bool,
    /// Default false.
    pub stderr: bool,
    /// Default true.
    pub exit_code: bool,
    /// Default true.
    pub success: bool,
    /// Default true.
    pub duration: bool,
}

impl Default for Streams {
    fn default() -> Self {
        Streams {
            stdout: true,
            stderr: false,
            exit_code: true,
            success: true,
            duration: true,
        }
    }
}

/// `when:` as written, and where.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct When {
    /// The expression text (`true`/`false` for a boolean).
    pub text: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub col: usize,
}

/// `on_failure` of a step: a string (`/…` → Claude, else shell), a map
/// `{shell|claude|commands, max_attempts|max_retries, fail_workflow, commit_required}`, a list
/// of steps, a step, or `true` (ignore the failure).
#[derive(Clone, Debug, PartialEq)]
pub struct OnFailure {
    /// The handler to run when the step fails (the first of [`OnFailure::steps`] when the
    /// handler is a list).
    pub action: Action,
    /// The whole handler when it is a list of steps or a step with modifiers (else empty).
    pub steps: Vec<Step>,
    /// `on_failure: true`: the failure is ignored and nothing runs.
    pub ignore: bool,
    /// How many times the handler may run; default 1, at least 1.
    pub max_attempts: u32,
    /// When true the workflow fails even if the handler succeeds. Default false.
    pub fail_workflow: bool,
    /// The handler must create a commit. Default false.
    pub commit_required: bool,
}

/// `validate:`.
#[derive(Clone, Debug, PartialEq)]
pub struct Validate {
    /// The validator: `shell`/`claude` as one step, or `commands` (may be empty: 0.4.4 then
    /// counts the validation as failed).
    pub steps: Vec<Step>,
    /// Percent complete needed, 0–100 (default 100).
    pub threshold: f64,
    /// Read the result JSON from this file instead of stdout.
    pub result_file: Option<String>,
    /// Seconds for the validator.
    pub timeout: Option<u64>,
    /// `on_incomplete`.
    pub on_incomplete: Option<OnIncomplete>,
}

/// `validate.on_incomplete`.
#[derive(Clone, Debug, PartialEq)]
pub struct OnIncomplete {
    /// The handler steps.
    pub steps: Vec<Step>,
    /// Default 2.
    pub max_attempts: u32,
    /// Default true.
    pub fail_workflow: bool,
    /// Default false.
    pub commit_required: bool,
    /// Shown when still unmet.
    pub prompt: Option<String>,
}

impl Step {
    /// A step running `action` at `line`, every modifier absent.
    pub fn new(action: Action, line: usize) -> Step {
        Step {
            action,
            commit_required: false,
            timeout: None,
            capture: None,
            on_failure: None,
            line,
            more: Box::default(),
        }
    }

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

/// Step keys that were removed from Prodigy: an error that says so.
const REMOVED: &[(&str, &str)] = &[
    (
        "analyze",
        "`analyze` was removed from Prodigy (0.4.4 fails such a step with `No command \
         specified`); run the analysis as a `shell` step",
    ),
    (
        "goal_seek",
        "`goal_seek` was removed from Prodigy in 0.4.1; loop with `validate` and \
         `on_incomplete` instead",
    ),
];

const ACTIONS: &[&str] = &["shell", "claude", "write_file", "foreach"];

impl Cx<'_> {
    /// A list of steps; `at` is where to point when `v` is not a list. A bad step is recorded
    /// and skipped, so every step's problems are reported.
    pub(crate) fn steps(&self, v: &Node, what: &str, at: Pos) -> Result<Vec<Step>> {
        match &v.kind {
            NodeKind::Seq(items) => {
                let mut out = Vec::new();
                let mut failed = None;
                for n in items {
                    match self.step(n, what) {
                        Ok(s) => out.push(s),
                        Err(e) => failed = Some(e),
                    }
                }
                match failed {
                    Some(e) => Err(e),
                    None => Ok(out),
                }
            }
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

    pub(crate) fn step(&self, n: &Node, what: &str) -> Result<Step> {
        let m = match &n.kind {
            NodeKind::Scalar(Scalar::Str(s), _) => {
                if s.trim().is_empty() {
                    return Err(self.err(n.pos, format!("empty step in `{what}`")));
                }
                return Ok(Step::new(Action::Claude(s.clone()), n.pos.line));
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
        let mut failed = None;
        let mut keep = |r: Result<()>| {
            if let Err(e) = r {
                failed = Some(e);
            }
        };
        let mut removed = false;
        for (k, _) in m.iter() {
            if let Some((_, why)) = REMOVED.iter().find(|(r, _)| *r == k.name) {
                keep(Err(self.err(k.pos, why)));
                removed = true;
            } else {
                self.check_key(k, K::Step);
            }
        }
        if removed && !ACTIONS.iter().any(|a| get(m, a).is_some()) && get(m, "name").is_none() {
            let _ = self.modifiers(m, &Action::Shell(String::new()));
            return Err(failed.expect("recorded above"));
        }
        let action = self.action(n, m);
        let action = match action {
            Ok(a) => a,
            Err(e) => {
                // Still read the modifiers, for their own problems.
                let _ = self.modifiers(m, &Action::Shell(String::new()));
                return Err(failed.unwrap_or(e));
            }
        };
        let step = self.modifiers(m, &action);
        if let Some(e) = failed {
            return Err(e);
        }
        let (mut step, more) = step?;
        step.action = action;
        step.line = n.pos.line;
        step.more = Box::new(more);
        Ok(step)
    }

    /// Exactly one action in `m` (or a legacy `name`).
    fn action(&self, n: &Node, m: &Entries) -> Result<Action> {
        let found: Vec<(&Key, &Node)> = ACTIONS
            .iter()
            .filter_map(|a| self.get(K::Step, m, a))
            .collect();
        if found.len() > 1 {
            let later = found
                .iter()
                .map(|(k, _)| *k)
                .max_by_key(|k| (k.pos.line, k.pos.col))
                .expect("two");
            return Err(self.err(
                later.pos,
                format!(
                    "a step has both `{}` and `{}`; split it into two steps",
                    found[0].0.name, found[1].0.name
                ),
            ));
        }
        let name = self.get(K::Step, m, "name");
        let args = self.get(K::Step, m, "args");
        let Some(&(k, v)) = found.first() else {
            // Legacy `{name, args, commit_required}`: `claude /name args`.
            if let Some((nk, nv)) = name {
                let name = self.command(nk, nv)?;
                let mut text = if name.starts_with('/') {
                    name
                } else {
                    format!("/{name}")
                };
                if let Some((ak, av)) = args {
                    for a in self.args(ak, av)? {
                        text.push(' ');
                        text.push_str(&a);
                    }
                }
                return Ok(Action::Claude(text));
            }
            return Err(self.err(
                n.pos,
                "a step needs an action: `shell:`, `claude:`, `write_file:` or `foreach:` \
                 (or a legacy `name:`)",
            ));
        };
        if let Some((nk, nv)) = name {
            if let NodeKind::Scalar(Scalar::Str(s), _) = &nv.kind {
                self.warn(
                    nk.pos,
                    format!(
                        "`name: {}` is a label here; Prodigy 0.4.4 would run this step as \
                         `claude /{}` instead of its `{}`",
                        crate::store::names::printable_cut(s, 40),
                        crate::store::names::printable_cut(s, 40),
                        k.name
                    ),
                );
            }
        }
        if let Some((ak, _)) = args {
            self.warn(
                ak.pos,
                format!(
                    "`args` only applies to a legacy `name:` step; it is ignored beside `{}`",
                    k.name
                ),
            );
        }
        match k.name.as_str() {
            "shell" => Ok(Action::Shell(self.command(k, v)?)),
            "claude" => Ok(Action::Claude(self.command(k, v)?)),
            "write_file" => {
                self.uses("write_file", k.pos);
                Ok(Action::WriteFile(Box::new(self.write_file(k, v)?)))
            }
            _ => {
                self.uses("foreach", k.pos);
                Ok(Action::Foreach(Box::new(self.foreach(k, v)?)))
            }
        }
    }

    fn args(&self, k: &Key, v: &Node) -> Result<Vec<String>> {
        match &v.kind {
            NodeKind::Seq(items) => items
                .iter()
                .map(|i| self.text(k, i, "args"))
                .collect::<Result<Vec<_>>>(),
            NodeKind::Scalar(Scalar::Null, _) => Ok(Vec::new()),
            _ => Ok(vec![self.text(k, v, "args")?]),
        }
    }

    /// Every modifier of a step; the action is filled in by the caller. Each modifier is read
    /// in a closure of its own so that its `?` stops that modifier only.
    #[allow(clippy::redundant_closure_call)]
    fn modifiers(&self, m: &Entries, action: &Action) -> Result<(Step, Modifiers)> {
        let mut step = Step::new(Action::Shell(String::new()), 0);
        let mut more = Modifiers::default();
        let mut failed = None;
        macro_rules! each {
            ($key:literal, |$k:ident, $v:ident| $body:expr) => {
                if let Some(($k, $v)) = self.get(K::Step, m, $key) {
                    let r: Result<()> = (|| {
                        $body;
                        Ok(())
                    })();
                    if let Err(e) = r {
                        failed = Some(e);
                    }
                }
            };
        }
        each!("commit_required", |k, v| step.commit_required =
            self.bool(k, v)?);
        each!("timeout", |k, v| step.timeout = Some(self.uint(k, v, 1)?));
        each!("capture_output", |k, v| {
            step.capture = match &v.kind {
                NodeKind::Scalar(Scalar::Bool(true), _) => Some(match action {
                    Action::Claude(_) => "claude".to_string(),
                    _ => "shell".to_string(),
                }),
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
        });
        each!("on_failure", |k, v| step.on_failure =
            self.on_failure(k, v)?);
        each!("name", |k, v| more.name =
            Some(self.string(k, v, "name")?.to_string()));
        each!("description", |k, v| more.description =
            Some(self.string(k, v, "description")?.to_string()));
        each!("working_dir", |k, v| {
            self.uses("working_dir", k.pos);
            let s = self.command(k, v)?;
            self.relative_path(k, v, &s, "working_dir")?;
            more.working_dir = Some(s);
        });
        each!("env", |k, v| {
            more.env = crate::sort::collect_map(self.env_map(k, v, false)?);
        });
        each!("output_file", |k, v| {
            self.uses("output_file", k.pos);
            let s = self.command(k, v)?;
            self.relative_path(k, v, &s, "output_file")?;
            more.output_file = Some(s);
        });
        each!("capture", |k, v| {
            self.uses("capture", k.pos);
            let name = self.string(k, v, "capture")?;
            if !name.split('.').all(is_identifier) {
                return Err(self.err(
                    v.pos_or(k),
                    format!(
                        "`capture` must be a variable name ([A-Za-z_][A-Za-z0-9_.]*), found {}",
                        show(v)
                    ),
                ));
            }
            more.capture = Some(Capture {
                name: name.to_string(),
                format: "string".into(),
                streams: Streams::default(),
            });
        });
        let mut format = None;
        each!("capture_format", |k, v| {
            self.uses("capture_format", k.pos);
            format = Some((
                k,
                self.word(k, v, &["string", "number", "json", "lines", "boolean"])?,
            ));
        });
        let mut streams = None;
        each!("capture_streams", |k, v| {
            self.uses("capture_streams", k.pos);
            streams = Some((k, self.streams(k, v)?));
        });
        match &mut more.capture {
            Some(c) => {
                if let Some((_, f)) = format {
                    c.format = f;
                }
                if let Some((_, s)) = streams {
                    c.streams = s;
                }
            }
            None => {
                for k in [format.map(|f| f.0), streams.map(|s| s.0)]
                    .into_iter()
                    .flatten()
                {
                    if step.capture.is_none() {
                        self.warn(
                            k.pos,
                            format!("`{}` has no effect without `capture: NAME`", k.name),
                        );
                    }
                }
            }
        }
        each!("on_success", |k, v| {
            self.uses("on_success", k.pos);
            more.on_success = Some(self.step(v, "on_success")?);
        });
        each!("on_exit_code", |k, v| {
            self.uses("on_exit_code", k.pos);
            let codes = self.map_of(k, v, "`on_exit_code`")?;
            let mut bad = None;
            for (ck, cv) in codes {
                let Ok(code) = ck.name.trim().parse::<i64>() else {
                    bad = Some(self.err(
                        ck.pos,
                        format!(
                            "`on_exit_code` keys are exit codes (numbers), found `{}`",
                            ck.name
                        ),
                    ));
                    continue;
                };
                match self.step(cv, "on_exit_code") {
                    Ok(s) => more.on_exit_code.push((code, s)),
                    Err(e) => bad = Some(e),
                }
            }
            if let Some(e) = bad {
                return Err(e);
            }
        });
        each!("when", |k, v| {
            self.uses("when", k.pos);
            let text = match &v.kind {
                NodeKind::Scalar(Scalar::Str(s), _) if !s.trim().is_empty() => s.clone(),
                NodeKind::Scalar(Scalar::Bool(b), _) => b.to_string(),
                _ => {
                    return Err(self.err(
                        v.pos_or(k),
                        format!(
                            "`when` must be an expression (a string) or a boolean, found {}",
                            show(v)
                        ),
                    ))
                }
            };
            let at = v.pos_or(k);
            more.when = Some(When {
                text,
                line: at.line,
                col: at.col,
            });
        });
        each!("validate", |k, v| {
            self.uses("validate", k.pos);
            more.validate = Some(self.validate(k, v)?);
        });
        each!("id", |k, v| {
            self.uses("id", k.pos);
            let s = self.string(k, v, "id")?;
            if !is_identifier(s) {
                return Err(self.err(
                    v.pos_or(k),
                    format!(
                        "`id` must be a name ([A-Za-z_][A-Za-z0-9_]*), found {}",
                        show(v)
                    ),
                ));
            }
            more.id = Some(s.to_string());
        });
        each!("outputs", |k, v| {
            self.uses("outputs", k.pos);
            for (ok, ov) in self.map_of(k, v, "`outputs`")? {
                let om = self.map_of(ok, ov, &format!("`outputs.{}`", ok.name))?;
                self.check_keys(om, K::Output);
                let Some((fk, fv)) = self.get(K::Output, om, "file_pattern") else {
                    return Err(self.err(
                        ok.pos,
                        format!("`outputs.{}` needs `file_pattern`", ok.name),
                    ));
                };
                more.outputs.push((ok.name.clone(), self.command(fk, fv)?));
            }
        });
        each!("commit_message", |k, _v| self.warn(
            k.pos,
            "`commit_message` is accepted for Prodigy 0.4.4 compatibility and ignored"
        ));
        if more.outputs.is_empty() {
            // nothing
        } else if more.id.is_none() {
            if let Some((k, _)) = get(m, "outputs") {
                self.warn(
                    k.pos,
                    "`outputs` without `id` cannot be referred to (${ID.NAME})",
                );
            }
        }
        match failed {
            Some(e) => Err(e),
            None => Ok((step, more)),
        }
    }

    /// A path that must stay inside the worktree: relative, no `..`.
    pub(crate) fn relative_path(&self, k: &Key, v: &Node, s: &str, what: &str) -> Result<()> {
        let p = std::path::Path::new(s);
        if p.is_absolute() || s.starts_with('~') {
            return Err(self.err(
                v.pos_or(k),
                format!("`{what}` must be relative to the worktree, found `{s}`"),
            ));
        }
        if p.components()
            .any(|c| matches!(c, std::path::Component::ParentDir))
        {
            return Err(self.err(
                v.pos_or(k),
                format!("`{what}` must stay inside the worktree (no `..`), found `{s}`"),
            ));
        }
        Ok(())
    }
}
