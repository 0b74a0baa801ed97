//! The environment of a run's steps (run.md §2 "Environment"): `env_files`, `env` values of every
//! form, `secrets`, the profile chosen with `--profile`, and step `env`.
//!
//! **Precedence**, later wins: prodigy's own environment < `env_files` (in file order) <
//! workflow `env` and `secrets` (a name in both: the secret) < the `--profile`'s values < step
//! `env`. `PRODIGY_AUTOMATION`, `PRODIGY_SESSION_ID`, `PRODIGY_JOB_ID` (and for agents
//! `PRODIGY_ITEM_ID`) are set last and cannot be overridden.
//!
//! **Value forms.** A string, number or boolean is the text as written. `{secret: true, value}`
//! is a secret. `{command, cache}` is the trimmed stdout of `sh -c COMMAND`, run in the session
//! worktree with the other values (and the commands before it) in its environment, once when
//! the run (or a resume of it) starts
//! and before the first step; a failing command fails the run. Values are never re-evaluated
//! during a run, so `cache` (0.4.4: "run once and reuse") changes nothing: every value is
//! cached for the run, and evaluated afresh by a resume. `{condition, when_true, when_false}`:
//! `condition` is `$NAME`/`${NAME}`-interpolated from the environment resolved so far, then is
//! `A == B` or `A != B` (sides trimmed, surrounding quotes dropped, compared as text), or else
//! one word: the name of a variable (then its value) or a value, true unless empty, `false`,
//! `0`, `no` or `off` (any case). So `condition: CI` and `condition: "${DEPLOY_ENV} ==
//! production"` both work.
//!
//! **Secrets** (`secrets:` entries and `{secret: true}` values, also in step `env`) are read when
//! the run starts: `NAME: "VAR"` and `{provider: env, key: VAR}` from prodigy's environment,
//! `{provider: file, key: PATH}` from the file (relative to the repository's checkout; trimmed).
//! A missing one is an error before anything runs (exit 2, naming the secret, never a value).
//! They are never stored: a resume reads them again. Every secret value is registered with
//! [`crate::mask`] before anything is written.
//!
//! **`env_files`**: dotenv files, relative to the repository's checkout (where untracked `.env`
//! files live; the worktree has only tracked files). `KEY=VALUE` lines; `#` comments and blank
//! lines skipped; an `export ` prefix allowed; a value in single quotes is literal, in double
//! quotes `\n`, `\t`, `\"` and `\\` are unescaped, unquoted values lose a trailing ` # comment`
//! and surrounding blanks. A missing file or a malformed line is an error naming it.
//!
//! `$NAME` and `${NAME}` of the resolved environment (not prodigy's own) are also workflow
//! variables: they are interpolated in claude and shell text alike.

use crate::error::{Error, Result};
use crate::workflow::vars::{interpolate, Vars};
use crate::workflow::{EnvValue, Workflow};
use std::path::Path;

/// The variables prodigy sets for every step, after the workflow's (they win).
pub fn push_prodigy_vars(env: &mut Vec<(String, String)>, session_id: &str, job_id: &str) {
    env.push(("PRODIGY_AUTOMATION".into(), "true".into()));
    env.push(("PRODIGY_SESSION_ID".into(), session_id.into()));
    env.push(("PRODIGY_JOB_ID".into(), job_id.into()));
}

/// Once the session worktree exists: evaluate `{command}` and `{condition}` values there and
/// make the whole environment the run's (`ctx.env`) and its names workflow variables (an
/// `--arg` of the same name wins).
pub(crate) fn install(ctx: &mut super::session::Ctx, wf: &Workflow) -> Result<()> {
    let r = resolve(wf, ctx.opts.profile.as_deref(), &ctx.repo.checkout)?;
    let mut env = r.finish(&ctx.worktree)?;
    for (k, v) in &env {
        if ctx.opts.args.iter().all(|(a, _)| a != k) {
            ctx.vars.set_str(k, v);
        }
    }
    let (sid, jid) = (ctx.session.id.clone(), ctx.job_id.clone());
    push_prodigy_vars(&mut env, &sid, &jid);
    ctx.env = env;
    Ok(())
}

/// For `--dry-run`: register what secrets can be read, without failing.
pub fn register_best_effort(wf: &Workflow, profile: Option<&str>, checkout: &Path) {
    match resolve(wf, profile, checkout) {
        Ok(r) => r.register_masks(true),
        Err(_) => {
            let mut vals: Vec<String> = step_secrets(wf).into_iter().map(|(_, v)| v).collect();
            for (_, v) in &wf.env_values {
                if let EnvValue::Secret(s) = v {
                    vals.push(s.clone());
                }
            }
            for s in &wf.secrets {
                if s.provider == "env" {
                    if let Ok(v) = std::env::var(&s.key) {
                        vals.push(v);
                    }
                }
            }
            crate::mask::set(vals.iter().map(String::as_str));
        }
    }
}

/// A value resolved when the run starts, or one that needs the worktree.
#[derive(Clone, Debug)]
enum Pending {
    Ready(String),
    Command(String),
    Conditional {
        condition: String,
        when_true: String,
        when_false: String,
    },
}

/// The run's environment as far as it is known before the worktree exists.
#[derive(Clone, Debug, Default)]
pub struct Resolved {
    vals: Vec<(String, Pending)>,
    /// Every secret value (of `secrets:` and of `{secret: true}` values anywhere).
    pub secrets: Vec<String>,
    /// Names of the secrets, for the short-value warning.
    pub secret_names: Vec<String>,
}

/// Resolve what can be resolved before anything runs: `env_files`, secrets, plain values and the
/// profile. Errors (exit 2): an unknown profile, a missing env file or secret.
pub fn resolve(wf: &Workflow, profile: Option<&str>, checkout: &Path) -> Result<Resolved> {
    let mut r = Resolved::default();
    let profile = match profile {
        None => None,
        Some(p) => Some(wf.profiles.iter().find(|x| x.name == p).ok_or_else(|| {
            let known: Vec<String> = wf
                .profiles
                .iter()
                .map(|x| format!("`{}`", x.name))
                .collect();
            Error::usage(if known.is_empty() {
                format!(
                    "`{}` has no `profiles:`; --profile selects one of a workflow's profiles",
                    wf.path.display()
                )
            } else {
                format!(
                    "unknown profile `{p}` in `{}`; known: {}",
                    wf.path.display(),
                    known.join(", ")
                )
            })
        })?),
    };
    for f in &wf.env_files {
        let p = checkout.join(f);
        let text = std::fs::read_to_string(&p).map_err(|e| {
            Error::usage(format!(
                "env file `{}` of `{}`: {}; create it or remove it from `env_files`",
                p.display(),
                wf.path.display(),
                crate::error::describe_io(&e)
            ))
        })?;
        for (k, v) in parse_dotenv(&text)
            .map_err(|(line, m)| Error::usage(format!("env file `{}`:{line}: {m}", p.display())))?
        {
            r.set(&k, Pending::Ready(v));
        }
    }
    for (k, v) in &wf.env_values {
        let p = match v {
            EnvValue::Plain(s) => Pending::Ready(s.clone()),
            EnvValue::Secret(s) => {
                r.secrets.push(s.clone());
                r.secret_names.push(k.clone());
                Pending::Ready(s.clone())
            }
            EnvValue::Command { command, .. } => Pending::Command(command.clone()),
            EnvValue::Conditional {
                condition,
                when_true,
                when_false,
            } => Pending::Conditional {
                condition: condition.clone(),
                when_true: when_true.clone(),
                when_false: when_false.clone(),
            },
        };
        r.set(k, p);
    }
    for s in &wf.secrets {
        let value = match s.provider.as_str() {
            "env" => std::env::var(&s.key).map_err(|_| {
                Error::usage(format!(
                    "secret `{}` reads the environment variable `{}`, which is not set (or not \
                     UTF-8); export it before running",
                    s.name, s.key
                ))
            })?,
            "file" => {
                let p = checkout.join(&s.key);
                let text = std::fs::read_to_string(&p).map_err(|e| {
                    Error::usage(format!(
                        "secret `{}` reads `{}`: {}; create the file or change `secrets.{}`",
                        s.name,
                        p.display(),
                        crate::error::describe_io(&e),
                        s.name
                    ))
                })?;
                text.trim().to_string()
            }
            other => {
                return Err(Error::usage(format!(
                    "secret `{}` has provider `{other}`, which prodigy does not read; use `env` \
                     or `file`",
                    s.name
                )))
            }
        };
        r.secrets.push(value.clone());
        r.secret_names.push(s.name.clone());
        r.set(&s.name, Pending::Ready(value));
    }
    if let Some(p) = profile {
        for (k, v) in &p.env {
            r.set(k, Pending::Ready(v.clone()));
        }
    }
    // Step-level `{secret: true}` values are masked from the start too.
    for (name, v) in step_secrets(wf) {
        r.secrets.push(v);
        r.secret_names.push(name);
    }
    Ok(r)
}

/// `{secret: true, value}` in any step's `env`, with its name.
fn step_secrets(wf: &Workflow) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (_, _, s) in wf.steps() {
        for (k, v) in &s.more.env {
            if let EnvValue::Secret(x) = v {
                out.push((k.clone(), x.clone()));
            }
        }
    }
    out
}

impl Resolved {
    /// A later source replaces a value in place, so a `{command}` or `{condition}` after it
    /// sees the winning value.
    fn set(&mut self, k: &str, v: Pending) {
        match self.vals.iter_mut().find(|(n, _)| n == k) {
            Some(slot) => slot.1 = v,
            None => self.vals.push((k.to_string(), v)),
        }
    }

    /// Register the secrets with [`crate::mask`]; warn (unless `quiet`) about each one too
    /// short to be masked.
    pub fn register_masks(&self, quiet: bool) {
        let short = crate::mask::set(self.secrets.iter().map(String::as_str));
        if quiet {
            return;
        }
        for (name, v) in self.secret_names.iter().zip(&self.secrets) {
            if short.contains(&v.as_str()) {
                crate::error::eprint_line(&format!(
                    "prodigy: warning: secret `{name}` is shorter than {} characters (or {} when \
                     all digits) and is not masked in output; use a longer value",
                    crate::mask::MIN_LEN,
                    crate::mask::MIN_DIGITS_LEN
                ));
            }
        }
    }

    /// The values known before the worktree exists (commands and conditions not yet).
    pub fn ready(&self) -> Vec<(String, String)> {
        self.vals
            .iter()
            .filter_map(|(k, v)| match v {
                Pending::Ready(s) => Some((k.clone(), s.clone())),
                _ => None,
            })
            .collect()
    }

    /// Evaluate `{command}` and `{condition}` values in `cwd` (the session worktree), in file
    /// order, each seeing every plain value, secret and env-file value, and the commands and
    /// conditions before it. Returns the whole environment, in order.
    pub fn finish(&self, cwd: &Path) -> Result<Vec<(String, String)>> {
        let mut out: Vec<(String, String)> = Vec::new();
        let mut seen = self.ready();
        for (k, v) in &self.vals {
            let val = match v {
                Pending::Ready(s) => s.clone(),
                Pending::Command(c) => run_command(k, c, cwd, &seen)?,
                Pending::Conditional {
                    condition,
                    when_true,
                    when_false,
                } => {
                    if condition_holds(condition, &seen) {
                        when_true.clone()
                    } else {
                        when_false.clone()
                    }
                }
            };
            seen.push((k.clone(), val.clone()));
            out.push((k.clone(), val));
        }
        Ok(out)
    }
}

fn run_command(name: &str, command: &str, cwd: &Path, env: &[(String, String)]) -> Result<String> {
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(command)
        .current_dir(cwd)
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .output()
        .map_err(|e| Error::fatal(format!("env `{name}`: cannot start `sh`: {e}")))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        return Err(Error::fatal(format!(
            "env `{name}`: command `{command}` failed ({}): {}",
            out.status,
            err.lines().next().unwrap_or("no output on stderr")
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn lookup(name: &str, env: &[(String, String)]) -> Option<String> {
    env.iter()
        .rev()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.clone())
        .or_else(|| std::env::var(name).ok())
}

fn truthy(s: &str) -> bool {
    let s = s.trim();
    !(s.is_empty()
        || ["false", "0", "no", "off"]
            .iter()
            .any(|f| s.eq_ignore_ascii_case(f)))
}

/// `condition` of a `{condition, when_true, when_false}` value (see the module docs).
pub fn condition_holds(condition: &str, env: &[(String, String)]) -> bool {
    let mut vars = Vars::new();
    let mut names: Vec<String> = env.iter().map(|(k, _)| k.clone()).collect();
    // Names of prodigy's environment the condition mentions are variables too.
    for w in condition.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
        if !w.is_empty() && !names.iter().any(|n| n == w) && std::env::var(w).is_ok() {
            names.push(w.to_string());
        }
    }
    for n in &names {
        if let Some(v) = lookup(n, env) {
            vars.set_str(n, &v);
        }
    }
    let text = interpolate(condition, &vars).unwrap_or_else(|_| condition.to_string());
    let unq = |s: &str| {
        let s = s.trim();
        for q in ['"', '\''] {
            if s.len() >= 2 && s.starts_with(q) && s.ends_with(q) {
                return s[1..s.len() - 1].to_string();
            }
        }
        s.to_string()
    };
    if let Some((a, b)) = text.split_once("!=") {
        return unq(a) != unq(b);
    }
    if let Some((a, b)) = text.split_once("==") {
        return unq(a) == unq(b);
    }
    let t = unq(&text);
    if crate::workflow::is_identifier(&t) {
        if let Some(v) = lookup(&t, env) {
            return truthy(&v);
        }
        if !["true", "false", "yes", "no", "on", "off"].contains(&t.to_ascii_lowercase().as_str()) {
            // The name of a variable that is not set.
            return false;
        }
    }
    truthy(&t)
}

/// Step `env`: values interpolated with the lane's variables; `{command}` runs in `cwd` now;
/// `{condition}` sees the run's environment.
pub fn step_env(
    env: &std::collections::BTreeMap<String, EnvValue>,
    vars: &Vars,
    run_env: &[(String, String)],
    cwd: &Path,
) -> std::result::Result<Vec<(String, String)>, String> {
    let mut out: Vec<(String, String)> = Vec::new();
    for (k, v) in env {
        let val = match v {
            EnvValue::Plain(s) => interpolate(s, vars).map_err(|e| format!("env `{k}`: {e}"))?,
            EnvValue::Secret(s) => s.clone(),
            EnvValue::Command { command, .. } => {
                let mut all = run_env.to_vec();
                all.extend(out.iter().cloned());
                let c = interpolate(command, vars).map_err(|e| format!("env `{k}`: {e}"))?;
                run_command(k, &c, cwd, &all).map_err(|e| e.to_string())?
            }
            EnvValue::Conditional {
                condition,
                when_true,
                when_false,
            } => {
                let mut all = run_env.to_vec();
                all.extend(out.iter().cloned());
                if condition_holds(condition, &all) {
                    when_true.clone()
                } else {
                    when_false.clone()
                }
            }
        };
        out.push((k.clone(), val));
    }
    Ok(out)
}

/// Parse a dotenv file: `(name, value)` in order, or `(line number, message)`.
pub fn parse_dotenv(text: &str) -> std::result::Result<Vec<(String, String)>, (usize, String)> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line
            .strip_prefix("export ")
            .map(str::trim_start)
            .unwrap_or(line);
        let Some((k, v)) = line.split_once('=') else {
            return Err((i + 1, "expected `NAME=VALUE`".into()));
        };
        let k = k.trim();
        if !crate::workflow::is_identifier(k) {
            return Err((i + 1, format!("`{k}` is not a variable name")));
        }
        let v = v.trim();
        let value = if let Some(rest) = v.strip_prefix('\'') {
            match rest.find('\'') {
                Some(end) => rest[..end].to_string(),
                None => return Err((i + 1, "unterminated single quote".into())),
            }
        } else if let Some(rest) = v.strip_prefix('"') {
            let mut s = String::new();
            let mut chars = rest.chars();
            let mut closed = false;
            while let Some(c) = chars.next() {
                match c {
                    '"' => {
                        closed = true;
                        break;
                    }
                    '\\' => match chars.next() {
                        Some('n') => s.push('\n'),
                        Some('t') => s.push('\t'),
                        Some(o) => s.push(o),
                        None => s.push('\\'),
                    },
                    o => s.push(o),
                }
            }
            if !closed {
                return Err((i + 1, "unterminated double quote".into()));
            }
            s
        } else {
            match v.find(" #") {
                Some(p) => v[..p].trim_end().to_string(),
                None => v.to_string(),
            }
        };
        out.push((k.to_string(), value));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dotenv_forms() {
        let text = "# c\n\nA=1\nexport B = 'x # y'\nC=\"a\\\"b\\nc\"\nD=plain # note\nE=\n";
        assert_eq!(
            parse_dotenv(text).unwrap(),
            vec![
                ("A".into(), "1".into()),
                ("B".into(), "x # y".into()),
                ("C".into(), "a\"b\nc".into()),
                ("D".into(), "plain".into()),
                ("E".into(), "".into()),
            ]
        );
        assert_eq!(parse_dotenv("oops\n").unwrap_err().0, 1);
        assert_eq!(parse_dotenv("A=1\nB='x\n").unwrap_err().0, 2);
    }

    #[test]
    fn conditions() {
        let env = vec![
            ("DEPLOY".to_string(), "production".to_string()),
            ("OFF".to_string(), "false".to_string()),
        ];
        assert!(condition_holds("DEPLOY", &env));
        assert!(!condition_holds("OFF", &env));
        assert!(!condition_holds("PRODIGY_SURELY_UNSET_VAR", &env));
        assert!(condition_holds("${DEPLOY} == production", &env));
        assert!(condition_holds("$DEPLOY == 'production'", &env));
        assert!(!condition_holds("${DEPLOY} != production", &env));
        assert!(condition_holds("true", &env));
        assert!(!condition_holds("no", &env));
    }
}
