//! The parts of a step that are objects of their own (run.md §2): `write_file`, `foreach`,
//! `on_failure` in every form, `validate` with `on_incomplete`, `capture_streams`; their parser.

use super::cx::{show, Cx, Entries};
use super::keys::Cx as K;
use super::step::{
    Action, Foreach, ForeachInput, OnFailure, OnIncomplete, Step, Streams, Validate, WriteFile,
};
use super::yaml::{Key, Node, NodeKind, Pos, Scalar};
use crate::error::Result;

impl Cx<'_> {
    pub(crate) fn streams(&self, k: &Key, v: &Node) -> Result<Streams> {
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

    pub(crate) fn write_file(&self, k: &Key, v: &Node) -> Result<WriteFile> {
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

    pub(crate) fn foreach(&self, k: &Key, v: &Node) -> Result<Foreach> {
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
    pub(crate) fn on_failure(&self, k: &Key, v: &Node) -> Result<Option<OnFailure>> {
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
    pub(crate) fn handler(&self, m: &Entries, cx: K, what: &str, at: Pos) -> Result<Vec<Step>> {
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

    pub(crate) fn validate(&self, k: &Key, v: &Node) -> Result<Validate> {
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
