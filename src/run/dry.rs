//! `prodigy run --dry-run` (run.md §2 "Checking without running"): the plan of a workflow,
//! each phase's steps as they would run with what is known interpolated (`--arg`, the
//! workflow's plain `env`, the chosen profile; never secrets), and for MapReduce the work items
//! after json_path/filter/sort/offset/max_items when `map.input` is a file of the repository,
//! or the command when it is one.
//!
//! Writes nothing anywhere (no `$PRODIGY_HOME`, no worktree), starts no step and no `claude`;
//! the only processes are git's reads that find the repository.

use super::Options;
use crate::error::{Error, Result};
use crate::git::Git;
use crate::store::names::printable_str;
use crate::workflow::{items, Action, EnvValue, Kind, Step, Workflow};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

/// Most work items listed one by one.
const SHOWN_ITEMS: usize = 20;

/// The plan of `wf` as text (every line escaped).
pub fn plan(opts: &Options, wf: &Workflow) -> Result<String> {
    let args = super::resolve_args(opts)?;
    let mut known: BTreeMap<String, String> = BTreeMap::new();
    for (k, v) in &wf.env_values {
        match v {
            EnvValue::Plain(s) => {
                known.insert(k.clone(), s.clone());
            }
            EnvValue::Secret(_) => {
                known.insert(k.clone(), "***".into());
            }
            _ => {}
        }
    }
    if let Some(name) = &opts.profile {
        let p = wf
            .profiles
            .iter()
            .find(|p| &p.name == name)
            .ok_or_else(|| {
                Error::usage(format!(
                    "`{}`: no profile `{}`; profiles: {}",
                    wf.path.display(),
                    printable_str(name),
                    if wf.profiles.is_empty() {
                        "none".to_string()
                    } else {
                        wf.profiles
                            .iter()
                            .map(|p| p.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    }
                ))
            })?;
        for (k, v) in &p.env {
            known.insert(k.clone(), v.clone());
        }
    }
    for (k, v) in &args {
        known.insert(k.clone(), v.clone());
    }
    known.insert("workflow.name".into(), wf.name.clone());
    let mut o = String::new();
    let kind = match wf.kind {
        Kind::Standard(_) => "standard",
        Kind::MapReduce(_) => "MapReduce",
    };
    writeln!(
        o,
        "dry run of `{}`: {kind} workflow `{}`; nothing is run or written",
        wf.path.display(),
        wf.name
    )
    .unwrap();
    if let Some(d) = &wf.description {
        writeln!(o, "description: {}", one_line(d)).unwrap();
    }
    if !wf.env_values.is_empty() {
        writeln!(o, "env:").unwrap();
        for (k, v) in &wf.env_values {
            let shown = match v {
                EnvValue::Plain(s) => one_line(s),
                EnvValue::Secret(_) => "*** (secret)".into(),
                EnvValue::Command { command, cache } => format!(
                    "output of `{}`{}",
                    one_line(command),
                    if *cache { " (cached)" } else { "" }
                ),
                EnvValue::Conditional {
                    condition,
                    when_true,
                    when_false,
                } => format!(
                    "`{}` if {} else `{}`",
                    one_line(when_true),
                    one_line(condition),
                    one_line(when_false)
                ),
            };
            writeln!(o, "  {k} = {shown}").unwrap();
        }
    }
    for s in &wf.secrets {
        writeln!(
            o,
            "secret {}: from {} `{}` (masked as ***)",
            s.name, s.provider, s.key
        )
        .unwrap();
    }
    for f in &wf.env_files {
        writeln!(o, "env file: `{f}`").unwrap();
    }
    if let Some(p) = &opts.profile {
        writeln!(o, "profile: {p}").unwrap();
    }
    match &wf.kind {
        Kind::Standard(steps) => phase(&mut o, "steps", steps, &known),
        Kind::MapReduce(m) => {
            phase(&mut o, "setup", &m.setup, &known);
            if let Some(t) = m.setup_timeout {
                writeln!(o, "  (setup timeout {t}s)").unwrap();
            }
            for c in &m.capture_outputs {
                let mut how = vec![format!("{} of step {}", c.source, c.command_index + 1)];
                if let Some(p) = &c.pattern {
                    how.push(format!("pattern `{p}`"));
                }
                if let Some(p) = &c.json_path {
                    how.push(format!("json_path `{p}`"));
                }
                if c.multiline != "preserve" {
                    how.push(c.multiline.clone());
                }
                if let Some(d) = &c.default {
                    how.push(format!("default `{d}`"));
                }
                writeln!(o, "  capture_outputs: ${{{}}} = {}", c.name, how.join(", ")).unwrap();
            }
            writeln!(o, "map:").unwrap();
            map_items(&mut o, opts, m);
            let mp = match &m.map.max_parallel {
                crate::workflow::MaxParallel::Count(n) => n.to_string(),
                crate::workflow::MaxParallel::Var(v) => match known.get(v) {
                    Some(val) => format!("{val} (${{{v}}})"),
                    None => format!("${{{v}}} (from the environment at run time)"),
                },
            };
            let mp = opts
                .max_parallel
                .map(|n| format!("{n} (--max-parallel)"))
                .unwrap_or(mp);
            writeln!(o, "  max_parallel: {mp}").unwrap();
            phase(&mut o, "agent_template", &m.map.agent_template, &known);
            phase(&mut o, "reduce", &m.reduce, &known);
        }
    }
    if let Some(merge) = &wf.merge {
        phase(&mut o, "merge", merge, &known);
    }
    let refused: Vec<String> = wf
        .features
        .iter()
        .filter(|(f, _, _)| super::NOT_RUN_YET.contains(&f.as_str()))
        .map(|(f, l, c)| format!("`{f}` ({l}:{c})"))
        .collect();
    if !refused.is_empty() {
        writeln!(
            o,
            "note: this version of prodigy run does not run {} yet and refuses this file",
            refused.join(", ")
        )
        .unwrap();
    }
    Ok(o.lines().map(|l| printable_str(l) + "\n").collect())
}

fn one_line(s: &str) -> String {
    let t = s.trim();
    let first = t.lines().next().unwrap_or("");
    if first.len() < t.len() || first.chars().count() > 70 {
        let cut: String = first.chars().take(67).collect();
        format!("{cut}…")
    } else {
        first.to_string()
    }
}

fn phase(o: &mut String, name: &str, steps: &[Step], known: &BTreeMap<String, String>) {
    if steps.is_empty() {
        return;
    }
    writeln!(o, "{name}:").unwrap();
    for (i, s) in steps.iter().enumerate() {
        step(o, 1, &format!("{}.", i + 1), s, known);
    }
}

fn step(o: &mut String, depth: usize, label: &str, s: &Step, known: &BTreeMap<String, String>) {
    let pad = "  ".repeat(depth);
    let shown = match &s.action {
        Action::WriteFile(w) => format!(
            "write_file: {} ({}, mode {:o}{})",
            substitute(&w.path, known),
            w.format,
            w.mode,
            if w.create_dirs { ", create_dirs" } else { "" }
        ),
        Action::Foreach(f) => format!(
            "foreach: {} (parallel {}{}{})",
            one_line(&substitute(&f.shown, known)),
            f.parallel,
            if f.continue_on_error {
                ", continue_on_error"
            } else {
                ""
            },
            f.max_items
                .map(|n| format!(", max_items {n}"))
                .unwrap_or_default()
        ),
        a => format!("{}: {}", a.kind(), one_line(&substitute(a.text(), known))),
    };
    let mut mods = Vec::new();
    if let Some(n) = &s.more.name {
        mods.push(format!("name `{}`", one_line(n)));
    }
    if let Some(w) = &s.more.when {
        mods.push(format!("when `{}`", one_line(&w.text)));
    }
    if s.commit_required {
        mods.push("commit_required".into());
    }
    if let Some(t) = s.timeout {
        mods.push(format!("timeout {t}s"));
    }
    if let Some(d) = &s.more.working_dir {
        mods.push(format!("in `{d}`"));
    }
    if !s.more.env.is_empty() {
        let names: Vec<&str> = s.more.env.keys().map(String::as_str).collect();
        mods.push(format!("env {}", names.join(",")));
    }
    if let Some(c) = &s.capture {
        mods.push(format!("capture_output → {c}"));
    }
    if let Some(c) = &s.more.capture {
        let st = &c.streams;
        let kept: Vec<&str> = [
            (st.stdout, "stdout"),
            (st.stderr, "stderr"),
            (st.exit_code, "exit_code"),
            (st.success, "success"),
            (st.duration, "duration"),
        ]
        .iter()
        .filter(|(on, _)| *on)
        .map(|(_, n)| *n)
        .collect();
        mods.push(format!(
            "capture → {} ({}; {})",
            c.name,
            c.format,
            kept.join("+")
        ));
    }
    if let Some(f) = &s.more.output_file {
        mods.push(format!("output_file `{f}`"));
    }
    if let Some(id) = &s.more.id {
        mods.push(format!("id {id}"));
        for (out, pat) in &s.more.outputs {
            mods.push(format!(
                "${{{id}.{out}}} = the file matching `{pat}` it creates or changes"
            ));
        }
    }
    let mods = if mods.is_empty() {
        String::new()
    } else {
        format!("  [{}]", mods.join("; "))
    };
    writeln!(o, "{pad}{label} {shown}{mods}").unwrap();
    let inner = depth + 2;
    if let Action::Foreach(f) = &s.action {
        for (i, d) in f.steps.iter().enumerate() {
            step(o, inner, &format!("do {}.", i + 1), d, known);
        }
    }
    if let Some(v) = &s.more.validate {
        writeln!(
            o,
            "{pad}    validate (threshold {}%{}{}{}):",
            v.threshold,
            v.result_file
                .as_ref()
                .map(|f| format!(", result_file `{f}`"))
                .unwrap_or_default(),
            v.timeout
                .map(|t| format!(", timeout {t}s"))
                .unwrap_or_default(),
            if v.on_incomplete.is_none() {
                "; unmet fails the step"
            } else {
                ""
            }
        )
        .unwrap();
        for (i, d) in v.steps.iter().enumerate() {
            step(o, inner + 1, &format!("{}.", i + 1), d, known);
        }
        if let Some(oi) = &v.on_incomplete {
            writeln!(
                o,
                "{pad}    on_incomplete (at most {} attempts{}):",
                oi.max_attempts,
                if oi.fail_workflow {
                    ", then fail"
                } else {
                    ", then go on"
                }
            )
            .unwrap();
            for (i, d) in oi.steps.iter().enumerate() {
                step(o, inner + 1, &format!("{}.", i + 1), d, known);
            }
        }
    }
    if let Some(of) = &s.on_failure {
        if of.ignore {
            writeln!(o, "{pad}    on_failure: ignore the failure").unwrap();
        } else if of.steps.is_empty() {
            writeln!(
                o,
                "{pad}    on_failure: {}: {} (at most {} attempts{}{})",
                of.action.kind(),
                one_line(&substitute(of.action.text(), known)),
                of.max_attempts,
                if of.fail_workflow { ", then fail" } else { "" },
                if of.commit_required {
                    ", commit_required"
                } else {
                    ""
                }
            )
            .unwrap();
        } else {
            writeln!(
                o,
                "{pad}    on_failure (at most {} attempts{}{}):",
                of.max_attempts,
                if of.fail_workflow { ", then fail" } else { "" },
                if of.commit_required {
                    ", commit_required"
                } else {
                    ""
                }
            )
            .unwrap();
            for (i, d) in of.steps.iter().enumerate() {
                step(o, inner + 1, &format!("{}.", i + 1), d, known);
            }
        }
    }
    if let Some(ok) = &s.more.on_success {
        step(o, inner, "on_success:", ok, known);
    }
    for (code, st) in &s.more.on_exit_code {
        step(o, inner, &format!("on_exit_code {code}:"), st, known);
    }
}

/// `${NAME}` and `$NAME` replaced where NAME is known; everything else as written.
fn substitute(text: &str, known: &BTreeMap<String, String>) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(body) = after.strip_prefix('{') {
            if let Some(end) = body.find('}') {
                let name = &body[..end];
                let (name, default) = match name.split_once(":-") {
                    Some((n, d)) => (n, Some(d)),
                    None => (name, None),
                };
                if let Some(v) = known.get(name).map(String::as_str).or(default) {
                    out.push_str(v);
                    rest = &body[end + 1..];
                    continue;
                }
            }
        } else {
            let n = after
                .char_indices()
                .find(|(_, c)| !(c.is_ascii_alphanumeric() || *c == '_'))
                .map_or(after.len(), |(j, _)| j);
            if n > 0 {
                if let Some(v) = known.get(&after[..n]) {
                    out.push_str(v);
                    rest = &after[n..];
                    continue;
                }
            }
        }
        out.push('$');
        rest = after;
    }
    out.push_str(rest);
    out
}

fn map_items(o: &mut String, opts: &Options, m: &crate::workflow::MapReduce) {
    let git = Git::default();
    let start = opts
        .path
        .clone()
        .or_else(|| std::env::current_dir().ok())
        .unwrap_or_default();
    let base = match super::worktrees::find_repo(&git, &start) {
        Ok(r) => r.checkout,
        Err(_) => start.clone(),
    };
    let input = &m.map.input;
    let file = base.join(input);
    let is_file = !input.contains('\n') && Path::new(input).is_relative() && file.is_file();
    let setup_writes = !m.setup.is_empty();
    if !is_file {
        writeln!(
            o,
            "  input: `{}` is not a file of the repository{}; at run time it is read from the \
             session worktree after setup, or else run there as a command whose output lists \
             the items",
            one_line(input),
            if setup_writes {
                " (setup may create it)"
            } else {
                ""
            }
        )
        .unwrap();
        return;
    }
    writeln!(
        o,
        "  input: `{input}` (a file of the repository; setup may change it)"
    )
    .unwrap();
    let text = match std::fs::read_to_string(&file) {
        Ok(t) => t,
        Err(e) => {
            writeln!(o, "  cannot read it: {}", crate::error::describe_io(&e)).unwrap();
            return;
        }
    };
    let value: serde_json::Value = match serde_json::from_str(&text) {
        Ok(v) => v,
        Err(e) => {
            writeln!(o, "  it is not JSON ({e}); the run will fail to read it").unwrap();
            return;
        }
    };
    match items::select(&value, &m.map) {
        Err(e) => writeln!(o, "  selecting items fails: {e}").unwrap(),
        Ok(sel) => {
            writeln!(
                o,
                "  {} work item(s) after json_path, filter, sort_by, offset, max_items",
                sel.len()
            )
            .unwrap();
            let ids = items::item_ids(&sel);
            if let Err(e) = &ids {
                writeln!(o, "  {e}").unwrap();
            }
            for (i, it) in sel.iter().enumerate().take(SHOWN_ITEMS) {
                let id = ids
                    .as_ref()
                    .ok()
                    .map(|v| v[i].clone())
                    .unwrap_or_else(|| i.to_string());
                let mut json = it.to_string();
                if json.chars().count() > 100 {
                    json = json.chars().take(99).collect::<String>() + "…";
                }
                writeln!(o, "  item {id}: {json}").unwrap();
            }
            if sel.len() > SHOWN_ITEMS {
                writeln!(o, "  … and {} more", sel.len() - SHOWN_ITEMS).unwrap();
            }
        }
    }
}
