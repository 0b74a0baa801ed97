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
            self.uses("env (step)", k.pos);
            more.env = self.env_map(k, v, false)?.into_iter().collect();
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

    fn streams(&self, k: &Key, v: &Node) -> Result<Streams> {
        let mut s = Streams::default();
        match &v.kind {
            NodeKind::Scalar(Scalar::Str(w), _) => match w.as_str() {
                "stdout" => {}
                "stderr" => {
                    s.stdout = false;
                    s.stderr = true;
                }
                "both" => s.stderr = true,
                _ => {
                    return Err(self.err(
                        v.pos,
                        format!(
                        "`capture_streams` must be `stdout`, `stderr`, `both` or a map, found {}",
                        show(v)
                    ),
                    ))
                }
            },
            _ => {
                let m = self.map_of(k, v, "`capture_streams`")?;
                self.check_keys(m, K::CaptureStreams);
                for (name, field) in [
                    ("stdout", &mut s.stdout),
                    ("stderr", &mut s.stderr),
                    ("exit_code", &mut s.exit_code),
                    ("success", &mut s.success),
                    ("duration", &mut s.duration),
                ] {
                    if let Some((fk, fv)) = self.get(K::CaptureStreams, m, name) {
                        *field = self.bool(fk, fv)?;
                    }
                }
            }
        }
        Ok(s)
    }

    fn write_file(&self, k: &Key, v: &Node) -> Result<WriteFile> {
        let m = self.map_of(k, v, "`write_file`")?;
        self.check_keys(m, K::WriteFile);
        let Some((pk, pv)) = self.get(K::WriteFile, m, "path") else {
            return Err(self.err(k.pos, "`write_file` needs `path`"));
        };
        let path = self.command(pk, pv)?;
        self.relative_path(pk, pv, &path, "write_file.path")?;
        let content = match self.get(K::WriteFile, m, "content") {
            Some((ck, cv)) => match &cv.kind {
                NodeKind::Scalar(Scalar::Null, _) => String::new(),
                _ => self.text(ck, cv, "write_file.content")?,
            },
            None => return Err(self.err(k.pos, "`write_file` needs `content`")),
        };
        let mut w = WriteFile {
            path,
            content,
            format: "text".into(),
            mode: 0o644,
            create_dirs: false,
        };
        if let Some((fk, fv)) = self.get(K::WriteFile, m, "format") {
            w.format = self.word(fk, fv, &["text", "json", "yaml"])?;
        }
        if let Some((mk, mv)) = self.get(K::WriteFile, m, "mode") {
            let s = self.text(mk, mv, "write_file.mode")?;
            w.mode = u32::from_str_radix(s.trim_start_matches("0o"), 8)
                .ok()
                .filter(|m| *m <= 0o7777)
                .ok_or_else(|| {
                    self.err(
                        mv.pos_or(mk),
                        format!(
                            "`write_file.mode` must be octal permissions such as `0644`, found {}",
                            show(mv)
                        ),
                    )
                })?;
        }
        if let Some((ck, cv)) = self.get(K::WriteFile, m, "create_dirs") {
            w.create_dirs = self.bool(ck, cv)?;
        }
        if w.format == "json" && !w.content.contains("${") {
            if let Err(e) = serde_json::from_str::<serde_json::Value>(&w.content) {
                self.warn(
                    k.pos,
                    format!("`write_file.content` is not valid JSON ({e}); the step will fail"),
                );
            }
        }
        Ok(w)
    }

    fn foreach(&self, k: &Key, v: &Node) -> Result<Foreach> {
        let m = match &v.kind {
            NodeKind::Map(m) => m,
            _ => {
                return Err(self.err(
                    v.pos_or(k),
                    format!(
                        "`foreach` must be a map with `foreach:` (or `input:`) and `do:`, found {}",
                        v.describe()
                    ),
                ))
            }
        };
        self.check_keys(m, K::Foreach);
        let inputs: Vec<_> = ["foreach", "input"]
            .iter()
            .filter_map(|n| self.get(K::Foreach, m, n))
            .collect();
        let (ik, iv) = match inputs.as_slice() {
            [one] => *one,
            [] => {
                return Err(self.err(
                    k.pos,
                    "`foreach` needs its items: `foreach:` (a command or a list)",
                ))
            }
            [_, (k2, _)] => {
                return Err(self.err(
                    k2.pos,
                    "`foreach` has both `foreach` and `input`; they mean the same, keep one",
                ))
            }
            _ => unreachable!(),
        };
        let (input, shown) = match &iv.kind {
            NodeKind::Seq(items) => {
                let list = items
                    .iter()
                    .map(|i| self.text(ik, i, "foreach item"))
                    .collect::<Result<Vec<_>>>()?;
                let shown = serde_json::to_string(&list).unwrap_or_default();
                (ForeachInput::List(list), shown)
            }
            _ => {
                let c = self.command(ik, iv)?;
                (ForeachInput::Command(c.clone()), c)
            }
        };
        let Some((dk, dv)) = self.get(K::Foreach, m, "do") else {
            return Err(self.err(
                k.pos,
                "`foreach` needs `do:` (the steps run for each ${item})",
            ));
        };
        let steps = self.steps(dv, "do", dk.pos)?;
        if steps.is_empty() {
            return Err(self.err(dk.pos, "`foreach.do` has no steps"));
        }
        let mut f = Foreach {
            input,
            shown,
            steps,
            parallel: 1,
            continue_on_error: false,
            max_items: None,
        };
        if let Some((pk, pv)) = self.get(K::Foreach, m, "parallel") {
            f.parallel = match &pv.kind {
                NodeKind::Scalar(Scalar::Bool(false), _) => 1,
                NodeKind::Scalar(Scalar::Bool(true), _) => 10,
                _ => self.uint(pk, pv, 1)? as usize,
            };
        }
        if let Some((ck, cv)) = self.get(K::Foreach, m, "continue_on_error") {
            f.continue_on_error = self.bool(ck, cv)?;
        }
        if let Some((mk, mv)) = self.get(K::Foreach, m, "max_items") {
            f.max_items = Some(self.uint(mk, mv, 0)? as usize);
        }
        Ok(f)
    }

    /// `on_failure` in every form; `false` is `None`.
    fn on_failure(&self, k: &Key, v: &Node) -> Result<Option<OnFailure>> {
        let mut of = OnFailure {
            action: Action::Shell(String::new()),
            steps: Vec::new(),
            ignore: false,
            max_attempts: 1,
            fail_workflow: false,
            commit_required: false,
        };
        match &v.kind {
            NodeKind::Scalar(Scalar::Bool(false), _) => return Ok(None),
            NodeKind::Scalar(Scalar::Bool(true), _) => {
                self.uses("on_failure: true", k.pos);
                of.ignore = true;
            }
            NodeKind::Scalar(Scalar::Str(s), _) if !s.trim().is_empty() => {
                of.action = if s.trim_start().starts_with('/') {
                    Action::Claude(s.clone())
                } else {
                    Action::Shell(s.clone())
                };
            }
            NodeKind::Seq(_) => {
                self.uses("on_failure (a list of steps)", k.pos);
                of.steps = self.steps(v, "on_failure", k.pos)?;
                let first = of
                    .steps
                    .first()
                    .ok_or_else(|| self.err(k.pos, "`on_failure` has no steps"))?;
                of.action = first.action.clone();
            }
            NodeKind::Map(m) if !m.is_empty() => {
                // A step with modifiers (`on_failure: {shell: …, capture_output: …}`) is a step.
                let step_form = m.iter().any(|(mk, _)| {
                    !super::keys::known(K::OnFailure, &mk.name)
                        && super::keys::known(K::Step, &mk.name)
                });
                if step_form {
                    self.uses("on_failure (a step with modifiers)", k.pos);
                    let s = self.step(v, "on_failure")?;
                    of.action = s.action.clone();
                    of.steps = vec![s];
                    return Ok(Some(of));
                }
                self.check_keys(m, K::OnFailure);
                let shell = self.get(K::OnFailure, m, "shell");
                let claude = self.get(K::OnFailure, m, "claude");
                let commands = self.get(K::OnFailure, m, "commands");
                match (shell, claude, commands) {
                    (Some((sk, sv)), None, None) => {
                        of.action = Action::Shell(self.command(sk, sv)?)
                    }
                    (None, Some((ck, cv)), None) => {
                        of.action = Action::Claude(self.command(ck, cv)?)
                    }
                    (None, None, Some((ck, cv))) => {
                        self.uses("on_failure.commands", ck.pos);
                        of.steps = self.steps(cv, "on_failure.commands", ck.pos)?;
                        let first = of.steps.first().ok_or_else(|| {
                            self.err(ck.pos, "`on_failure.commands` has no steps")
                        })?;
                        of.action = first.action.clone();
                    }
                    (None, None, None) => {
                        return Err(self.err(
                            v.pos_or(k),
                            "`on_failure` needs `shell:`, `claude:` or `commands:`",
                        ))
                    }
                    _ => return Err(self.err(
                        k.pos,
                        "`on_failure` has more than one of `shell`, `claude`, `commands`; keep one",
                    )),
                }
                if let (Some((a, _)), Some((b, _))) = (
                    self.get(K::OnFailure, m, "max_attempts"),
                    self.get(K::OnFailure, m, "max_retries"),
                ) {
                    let later = if a.pos.line >= b.pos.line { a } else { b };
                    return Err(self.err(
                        later.pos,
                        "`max_attempts` and `max_retries` mean the same; keep one",
                    ));
                }
                for name in ["max_attempts", "max_retries"] {
                    if let Some((nk, nv)) = self.get(K::OnFailure, m, name) {
                        let n = self.uint(nk, nv, 1)?;
                        of.max_attempts = u32::try_from(n)
                            .map_err(|_| self.err(nv.pos, format!("`{name}` is too large")))?;
                    }
                }
                if let Some((fk, fv)) = self.get(K::OnFailure, m, "fail_workflow") {
                    of.fail_workflow = self.bool(fk, fv)?;
                }
                if let Some((ck, cv)) = self.get(K::OnFailure, m, "commit_required") {
                    of.commit_required = self.bool(ck, cv)?;
                }
            }
            _ => {
                return Err(self.err(
                    v.pos_or(k),
                    format!(
                        "`on_failure` must be true/false, a command string, a list of steps or a \
                         map with `shell:`, `claude:` or `commands:`, found {}",
                        show(v)
                    ),
                ))
            }
        }
        Ok(Some(of))
    }

    /// The handler of `validate` / `on_incomplete`: `shell`, `claude` or `commands` (at most
    /// one); none is an empty list.
    fn handler(&self, m: &Entries, cx: K, what: &str, at: Pos) -> Result<Vec<Step>> {
        let shell = self.get(cx, m, "shell");
        let claude = self.get(cx, m, "claude");
        let commands = self.get(cx, m, "commands");
        match (shell, claude, commands) {
            (Some((k, v)), None, None) => Ok(vec![Step::new(
                Action::Shell(self.command(k, v)?),
                k.pos.line,
            )]),
            (None, Some((k, v)), None) => Ok(vec![Step::new(
                Action::Claude(self.command(k, v)?),
                k.pos.line,
            )]),
            (None, None, Some((k, v))) => self.steps(v, &format!("{what}.commands"), k.pos),
            (None, None, None) => Ok(Vec::new()),
            _ => Err(self.err(
                at,
                format!("`{what}` has more than one of `shell`, `claude`, `commands`; keep one"),
            )),
        }
    }

    fn validate(&self, k: &Key, v: &Node) -> Result<Validate> {
        let mut val = Validate {
            steps: Vec::new(),
            threshold: 100.0,
            result_file: None,
            timeout: None,
            on_incomplete: None,
        };
        let m = match &v.kind {
            NodeKind::Seq(_) => {
                val.steps = self.steps(v, "validate", k.pos)?;
                return Ok(val);
            }
            _ => self.map_of(k, v, "`validate`")?,
        };
        self.check_keys(m, K::Validate);
        val.steps = self.handler(m, K::Validate, "validate", k.pos)?;
        if val.steps.is_empty() {
            self.warn(
                k.pos,
                "`validate` has no `shell`, `claude` or `commands`: it always counts as 0% complete",
            );
        }
        if let Some((tk, tv)) = self.get(K::Validate, m, "threshold") {
            let t = self.number(tk, tv)?;
            if !(0.0..=100.0).contains(&t) {
                return Err(self.err(
                    tv.pos_or(tk),
                    format!(
                        "`threshold` is a percentage from 0 to 100, found {}",
                        show(tv)
                    ),
                ));
            }
            val.threshold = t;
        }
        if let Some((rk, rv)) = self.get(K::Validate, m, "result_file") {
            val.result_file = Some(self.command(rk, rv)?);
        }
        if let Some((tk, tv)) = self.get(K::Validate, m, "timeout") {
            val.timeout = Some(self.uint(tk, tv, 1)?);
        }
        if let Some((ek, _)) = self.get(K::Validate, m, "expected_schema") {
            self.warn(
                ek.pos,
                "`expected_schema` is accepted for Prodigy 0.4.4 compatibility and ignored",
            );
        }
        if let Some((ik, iv)) = self.get(K::Validate, m, "on_incomplete") {
            let mut oi = OnIncomplete {
                steps: Vec::new(),
                max_attempts: 2,
                fail_workflow: true,
                commit_required: false,
                prompt: None,
            };
            match &iv.kind {
                NodeKind::Seq(_) => oi.steps = self.steps(iv, "on_incomplete", ik.pos)?,
                _ => {
                    let om = self.map_of(ik, iv, "`on_incomplete`")?;
                    self.check_keys(om, K::OnIncomplete);
                    oi.steps = self.handler(om, K::OnIncomplete, "on_incomplete", ik.pos)?;
                    if let Some((a, b)) = self.get(K::OnIncomplete, om, "max_attempts") {
                        oi.max_attempts = u32::try_from(self.uint(a, b, 1)?).unwrap_or(u32::MAX);
                    }
                    if let Some((a, b)) = self.get(K::OnIncomplete, om, "fail_workflow") {
                        oi.fail_workflow = self.bool(a, b)?;
                    }
                    if let Some((a, b)) = self.get(K::OnIncomplete, om, "commit_required") {
                        oi.commit_required = self.bool(a, b)?;
                    }
                    if let Some((a, b)) = self.get(K::OnIncomplete, om, "prompt") {
                        oi.prompt = Some(self.string(a, b, "prompt")?.to_string());
                    }
                    if oi.steps.is_empty() {
                        self.warn(ik.pos, "`on_incomplete` has no `shell`, `claude` or `commands`: nothing can complete the work");
                    }
                }
            }
            val.on_incomplete = Some(oi);
        }
        Ok(val)
    }
}
