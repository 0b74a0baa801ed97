//! `id: NAME` + `outputs: {OUT: {file_pattern: GLOB}}` and `setup.capture_outputs` (run.md §2).
//!
//! **Step outputs.** Before a step with `id` and `outputs` starts, [`Before::take`] notes HEAD and
//! the worktree's changed and untracked files (`git status --porcelain`, with each file's size and
//! mtime). After the step succeeded, [`Before::resolve`] lists the files the step created or
//! changed: the files of the commits it made (`git diff --name-only BEFORE..AFTER`) and the files
//! whose status appeared or whose size or mtime changed while it ran, minus files that no longer
//! exist. `${ID.OUT}` is the one of them matching `file_pattern` (see [`glob_match`]), as a path
//! relative to the worktree. Several match: the newest by mtime (ties: the last path in byte
//! order), and the others are named in the lane's log. None match: the step fails with a message
//! naming the pattern. The values are lane variables (`ID.OUT`, stored flat), so they are in the
//! checkpoint and a resumed run sees them. 0.4.4 drops `id` and `outputs`, so `${ID.OUT}` reaches
//! its command verbatim.
//!
//! **`setup.capture_outputs`.** [`setup_steps`] gives every setup step that an entry names a
//! hidden capture (`_setup_output_N`, stdout and stderr, as a string) unless it has a `capture:`
//! of its own, which is then read instead; when setup ends, [`apply_capture_outputs`] turns
//! the hidden captures into the entries' `${NAME}` (`source`, `pattern`, `json_path`,
//! `max_size`, `multiline`, `default`) and removes the hidden variables. The setup lane's
//! variables go to the setup checkpoint's `outputs` and to agents, reduce and merge.

use crate::git::Git;
use crate::workflow::vars::{to_text, Vars};
use crate::workflow::{Capture, CaptureOutput, Step, Streams};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsStr;
use std::path::Path;
use std::time::SystemTime;

/// Size and mtime of a file, `None` when it does not exist (or is not a regular file).
type Stamp = Option<(u64, SystemTime)>;

fn stamp(root: &Path, rel: &str) -> Stamp {
    let m = std::fs::symlink_metadata(root.join(rel)).ok()?;
    if !m.is_file() {
        return None;
    }
    Some((m.len(), m.modified().ok()?))
}

/// What the worktree looked like before a step with `outputs` started.
#[derive(Debug, Clone)]
pub struct Before {
    head: Option<String>,
    dirty: BTreeMap<String, Stamp>,
}

/// Paths of `git status --porcelain=v1 -z --untracked-files=all` (rename sources skipped).
fn status_paths(git: &Git, root: &Path) -> Result<Vec<String>, String> {
    let out = git
        .run(
            Some(root),
            &[
                OsStr::new("status"),
                OsStr::new("--porcelain=v1"),
                OsStr::new("-z"),
                OsStr::new("--untracked-files=all"),
            ],
        )
        .map_err(|e| e.to_string())?;
    let mut paths = Vec::new();
    let mut it = out.split(|b| *b == 0).filter(|c| !c.is_empty());
    while let Some(entry) = it.next() {
        if entry.len() < 4 {
            continue;
        }
        let (x, y) = (entry[0], entry[1]);
        paths.push(String::from_utf8_lossy(&entry[3..]).into_owned());
        if matches!(x, b'R' | b'C') || matches!(y, b'R' | b'C') {
            it.next();
        }
    }
    Ok(paths)
}

fn head(git: &Git, root: &Path) -> Option<String> {
    git.run(Some(root), &[OsStr::new("rev-parse"), OsStr::new("HEAD")])
        .ok()
        .map(|o| String::from_utf8_lossy(&o).trim().to_string())
}

impl Before {
    /// Note HEAD and the dirty files of the worktree at `root`.
    pub fn take(git: &Git, root: &Path) -> Result<Before, String> {
        let dirty = crate::sort::collect_map(status_paths(git, root)?.into_iter().map(|p| {
            let s = stamp(root, &p);
            (p, s)
        }));
        Ok(Before {
            head: head(git, root),
            dirty,
        })
    }

    /// The worktree as it was when HEAD was `head` and nothing was dirty: for a step whose
    /// commit was made before the run was interrupted (resume counts it as done).
    pub fn at_head(head: &str) -> Before {
        Before {
            head: Some(head.to_string()),
            dirty: BTreeMap::new(),
        }
    }

    /// The files (relative to `root`, existing) the step created or changed since [`take`].
    ///
    /// [`take`]: Before::take
    pub fn changed(&self, git: &Git, root: &Path) -> Result<BTreeSet<String>, String> {
        let mut out = BTreeSet::new();
        let now = head(git, root);
        if let (Some(a), Some(b)) = (&self.head, &now) {
            if a != b {
                let o = git
                    .run(
                        Some(root),
                        &[
                            OsStr::new("diff"),
                            OsStr::new("--name-only"),
                            OsStr::new("-z"),
                            OsStr::new(&format!("{a}..{b}")),
                        ],
                    )
                    .map_err(|e| e.to_string())?;
                for p in o.split(|b| *b == 0).filter(|c| !c.is_empty()) {
                    out.insert(String::from_utf8_lossy(p).into_owned());
                }
            }
        }
        for p in status_paths(git, root)? {
            match self.dirty.get(&p) {
                Some(s) if *s == stamp(root, &p) => {}
                _ => {
                    out.insert(p);
                }
            }
        }
        out.retain(|p| stamp(root, p).is_some());
        Ok(out)
    }

    /// Set `${ID.OUT}` for every `outputs` entry of `step` (which has an `id`). `Err` (one line)
    /// when a pattern matches none of the files the step created or changed. `Ok` carries log
    /// lines (what was chosen when several matched).
    pub fn resolve(
        &self,
        git: &Git,
        root: &Path,
        step: &Step,
        vars: &mut Vars,
    ) -> Result<Vec<String>, String> {
        let Some(id) = &step.more.id else {
            return Ok(Vec::new());
        };
        let changed = self.changed(git, root)?;
        let mut notes = Vec::new();
        for (out, pattern) in &step.more.outputs {
            let found: Vec<&String> = changed.iter().filter(|p| glob_match(pattern, p)).collect();
            let Some(pick) = found
                .iter()
                .max_by_key(|p| (stamp(root, p).map(|s| s.1), **p))
            else {
                let seen = if changed.is_empty() {
                    "it created or changed no file".to_string()
                } else {
                    format!(
                        "it created or changed: {}",
                        changed
                            .iter()
                            .take(5)
                            .map(|p| format!("`{p}`"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ) + if changed.len() > 5 { ", …" } else { "" }
                };
                return Err(format!(
                    "`outputs.{out}`: no file the step created or changed matches \
                     `file_pattern: {pattern}` ({seen}); a pattern without `/` matches file \
                     names in any directory"
                ));
            };
            if found.len() > 1 {
                notes.push(format!(
                    "`outputs.{out}`: {} files match `{pattern}`; ${{{id}.{out}}} is the newest, `{pick}`",
                    found.len()
                ));
            }
            vars.set_str(&format!("{id}.{out}"), pick);
        }
        Ok(notes)
    }
}

/// Whether `path` (relative, `/`-separated) matches `pattern`: `*` any run of characters but
/// `/`, `?` one character but `/`, `**` any run including `/` (`**/` also nothing), `[abc]`,
/// `[a-z]`, `[!a-z]`/`[^a-z]` one character of (not of) a class, `\x` the character `x`. A
/// pattern without `/` is matched against the file name alone (in any directory), like
/// `.gitignore`; a leading `./` or `/` is dropped.
pub fn glob_match(pattern: &str, path: &str) -> bool {
    let p = pattern.trim_start_matches("./").trim_start_matches('/');
    let p: Vec<char> = p.chars().collect();
    if !p.contains(&'/') {
        let name = path.rsplit('/').next().unwrap_or(path);
        return glob(&p, &name.chars().collect::<Vec<_>>());
    }
    glob(&p, &path.chars().collect::<Vec<_>>())
}

fn glob(p: &[char], s: &[char]) -> bool {
    match p.first() {
        None => s.is_empty(),
        Some('*') if p.get(1) == Some(&'*') => {
            // `**/` also matches nothing; `**` matches any run, `/` included.
            let rest = &p[2..];
            if rest.first() == Some(&'/') && glob(&rest[1..], s) {
                return true;
            }
            (0..=s.len()).any(|i| glob(rest, &s[i..]))
        }
        Some('*') => {
            let rest = &p[1..];
            for i in 0..=s.len() {
                if glob(rest, &s[i..]) {
                    return true;
                }
                if i < s.len() && s[i] == '/' {
                    break;
                }
            }
            false
        }
        Some('?') => !s.is_empty() && s[0] != '/' && glob(&p[1..], &s[1..]),
        Some('[') => match class(&p[1..]) {
            Some((len, set)) => {
                !s.is_empty() && s[0] != '/' && set(s[0]) && glob(&p[1 + len..], &s[1..])
            }
            None => !s.is_empty() && s[0] == '[' && glob(&p[1..], &s[1..]),
        },
        Some('\\') if p.len() > 1 => !s.is_empty() && s[0] == p[1] && glob(&p[2..], &s[1..]),
        Some(c) => !s.is_empty() && s[0] == *c && glob(&p[1..], &s[1..]),
    }
}

/// A character class after its `[`: how many pattern characters it takes (through `]`) and
/// its test. `None` when there is no closing `]` (the `[` is then literal).
fn class(p: &[char]) -> Option<(usize, impl Fn(char) -> bool)> {
    let mut i = 0;
    let neg = matches!(p.first(), Some('!' | '^'));
    if neg {
        i += 1;
    }
    let mut ranges = Vec::new();
    let start = i;
    while i < p.len() {
        if p[i] == ']' && i > start {
            let r = ranges;
            return Some((i + 1, move |c: char| {
                r.iter().any(|&(a, b)| a <= c && c <= b) != neg
            }));
        }
        if i + 2 < p.len() && p[i + 1] == '-' && p[i + 2] != ']' {
            ranges.push((p[i], p[i + 2]));
            i += 3;
        } else {
            ranges.push((p[i], p[i]));
            i += 1;
        }
    }
    None
}

/// The hidden variable of setup step `i`'s output.
fn hidden(i: usize) -> String {
    format!("_setup_output_{i}")
}

/// The setup steps to run: `steps` with a hidden capture (stdout and stderr, as a string) on
/// every step a `capture_outputs` entry names and that has no `capture:` of its own.
pub fn setup_steps(steps: &[Step], cos: &[CaptureOutput]) -> Vec<Step> {
    let mut out = steps.to_vec();
    for c in cos {
        if let Some(s) = out.get_mut(c.command_index) {
            if s.more.capture.is_none() {
                s.more.capture = Some(Capture {
                    name: hidden(c.command_index),
                    format: "string".into(),
                    streams: Streams {
                        stdout: true,
                        stderr: true,
                        exit_code: false,
                        success: false,
                        duration: false,
                    },
                });
            }
        }
    }
    out
}

/// When setup ended, for setup step `done` (0-based): set `${NAME}` of every entry naming it, then
/// remove the hidden captures. `Err` (one line) when `pattern`/`json_path` select nothing and
/// there is no `default`.
pub fn apply_capture_outputs(
    steps: &[Step],
    cos: &[CaptureOutput],
    done: usize,
    vars: &mut Vars,
) -> Result<(), String> {
    for c in cos.iter().filter(|c| c.command_index == done) {
        let var = steps
            .get(done)
            .and_then(|s| s.more.capture.as_ref())
            .map(|cap| cap.name.clone())
            .unwrap_or_else(|| hidden(done));
        let out = vars.get(&var).map(|v| to_text(&v)).unwrap_or_default();
        let err = vars
            .get(&format!("{var}.stderr"))
            .map(|v| to_text(&v))
            .unwrap_or_default();
        let v = capture_value(c, &out, &err)?;
        vars.set(&c.name, v);
    }
    let h = hidden(done);
    vars.remove(&h);
    vars.remove(&format!("{h}.stderr"));
    Ok(())
}

/// The value of entry `c` from a step's `stdout` and `stderr`.
pub fn capture_value(c: &CaptureOutput, stdout: &str, stderr: &str) -> Result<Value, String> {
    let mut text = match c.source.as_str() {
        "stderr" => stderr.to_string(),
        "both" if !stderr.is_empty() => format!("{stdout}\n{stderr}"),
        _ => stdout.to_string(),
    };
    let none = |what: String| match &c.default {
        Some(d) => Ok(Value::String(d.clone())),
        None => Err(format!(
            "`capture_outputs.{}`: {what} in the output of setup step {} and there is no `default`",
            c.name, c.command_index
        )),
    };
    if let Some(p) = &c.pattern {
        let re = regex_lite::Regex::new(p).map_err(|e| format!("`pattern`: {e}"))?;
        match re.captures(&text) {
            Some(m) => {
                text = m
                    .get(1)
                    .or(m.get(0))
                    .map(|g| g.as_str())
                    .unwrap_or("")
                    .into()
            }
            None => return none(format!("`pattern: {p}` matches nothing")),
        }
    }
    if let Some(jp) = &c.json_path {
        let doc: Value = match serde_json::from_str(text.trim()) {
            Ok(d) => d,
            Err(_) => return none(format!("`json_path: {jp}` needs JSON and there is none")),
        };
        let path = crate::workflow::items::compile_path(jp)?;
        match path.select(&doc).into_iter().next() {
            Some(v) => text = to_text(v),
            None => return none(format!("`json_path: {jp}` selects nothing")),
        }
    }
    let max = c.max_size as usize;
    if text.len() > max {
        let mut cut = max;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
    }
    let text = text.strip_suffix('\n').unwrap_or(&text).to_string();
    Ok(match c.multiline.as_str() {
        "join" => Value::String(text.lines().collect::<Vec<_>>().join(" ")),
        "first_line" => Value::String(text.lines().next().unwrap_or("").into()),
        "last_line" => Value::String(text.lines().last().unwrap_or("").into()),
        "array" => Value::Array(text.lines().map(|l| Value::String(l.into())).collect()),
        _ => Value::String(text),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        let yes = [
            ("*-x.md", "specs/123-x.md"),
            ("specs/*.md", "specs/123-x.md"),
            ("**/*.md", "a.md"),
            ("**/*.md", "a/b/c.md"),
            ("specs/**", "specs/a/b"),
            ("s?ecs/[0-9]*-[!y].md", "specs/1-x.md"),
            (
                "*-coverage-improvements.md",
                "specs/temp/9-coverage-improvements.md",
            ),
            ("./specs/*.md", "specs/a.md"),
        ];
        for (p, s) in yes {
            assert!(glob_match(p, s), "{p} {s}");
        }
        let no = [
            ("specs/*.md", "specs/a/b.md"),
            ("*.md", "a.txt"),
            ("s?ecs/[0-9]*.md", "specs/x.md"),
            ("[!a]*", "a.md"),
            ("a/*.md", "b/a/x.md"),
            ("[", "x"),
        ];
        for (p, s) in no {
            assert!(!glob_match(p, s), "{p} {s}");
        }
        assert!(glob_match("[", "["));
    }

    fn co(name: &str) -> CaptureOutput {
        CaptureOutput {
            name: name.into(),
            command_index: 0,
            source: "stdout".into(),
            pattern: None,
            json_path: None,
            max_size: 1 << 20,
            default: None,
            multiline: "preserve".into(),
        }
    }

    #[test]
    fn capture_values() {
        let c = co("A");
        assert_eq!(capture_value(&c, "a\nb\n", "e").unwrap(), "a\nb");
        let mut c = co("A");
        c.source = "both".into();
        c.multiline = "array".into();
        assert_eq!(
            capture_value(&c, "a\n", "e").unwrap(),
            serde_json::json!(["a", "", "e"])
        );
        let mut c = co("A");
        c.pattern = Some("count=(\\d+)".into());
        assert_eq!(capture_value(&c, "x count=42 y", "").unwrap(), "42");
        assert!(capture_value(&c, "nothing", "")
            .unwrap_err()
            .contains("matches nothing"));
        c.default = Some("0".into());
        assert_eq!(capture_value(&c, "nothing", "").unwrap(), "0");
        let mut c = co("A");
        c.json_path = Some("$.files[0]".into());
        assert_eq!(
            capture_value(&c, "{\"files\": [\"a.rs\"]}", "").unwrap(),
            "a.rs"
        );
        let mut c = co("A");
        c.max_size = 4;
        c.multiline = "last_line".into();
        assert_eq!(capture_value(&c, "ab\ncd", "").unwrap(), "c");
    }
}
