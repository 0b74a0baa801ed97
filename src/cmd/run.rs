//! `prodigy run`: argv → [`crate::run::run`] → a summary on stdout and the exit status.

use crate::error::{Exit, Result};
use crate::run::{self, Options};
use serde_json::json;

struct Flags {
    json: bool,
    quiet: bool,
}

/// Run the workflow and report. Errors before the session exists keep their own exit code;
/// afterwards the summary decides it (run.md §1).
/// The dry run starts nothing, so it works on every platform.
pub fn run(o: &Options) -> Result<Exit> {
    if o.dry_run {
        return dry_run(o);
    }
    #[cfg(not(unix))]
    {
        Err(unsupported("run"))
    }
    #[cfg(unix)]
    {
        let s = run::run(o)?;
        report(&s, o.json, o.quiet)
    }
}

/// `prodigy run --dry-run`: warnings on stderr, the plan on stdout (one JSON document with
/// `--json`); writes nothing.
fn dry_run(o: &Options) -> Result<Exit> {
    let wf = crate::workflow::load(&o.workflow)?;
    if !o.quiet {
        for w in &wf.warnings {
            crate::error::eprint_line(&format!("prodigy: warning: {w}"));
        }
    }
    let checkout = o
        .path
        .clone()
        .or_else(|| std::env::current_dir().ok())
        .unwrap_or_default();
    run::env::register_best_effort(&wf, o.profile.as_deref(), &checkout);
    let plan = run::dry::plan(o, &wf)?;
    if o.json {
        // One document: the plan's lines, and the uses `prodigy run` would refuse.
        let refused: Vec<_> = wf
            .features
            .iter()
            .filter(|(f, _, _)| run::NOT_RUN_YET.contains(&f.as_str()))
            .map(|(f, line, col)| json!({"feature": f, "line": line, "col": col}))
            .collect();
        let doc = json!({
            "dry_run": true,
            "workflow": wf.path.to_string_lossy(),
            "name": wf.name,
            "plan": plan.lines().collect::<Vec<_>>(),
            "warnings": wf.warnings,
            "not_run_yet": refused,
        });
        super::print(&format!("{doc}\n"))?;
    } else {
        super::print(&plan)?;
    }
    Ok(Exit::Ok)
}

/// `prodigy resume ID`.
pub fn resume(o: &crate::run::resume::ResumeOptions) -> Result<Exit> {
    #[cfg(not(unix))]
    {
        let _ = o;
        Err(unsupported("resume"))
    }
    #[cfg(unix)]
    {
        let s = run::resume::resume(o)?;
        report(&s, o.json, o.quiet)
    }
}

/// Off Unix, `run` and `resume` refuse (exit 3): steps run in their own process groups, a
/// timeout or an interruption reaches them by signal, and a finished run's worktree is removed
/// through `store::fsops`, which deletes on Unix only.
#[cfg(not(unix))]
fn unsupported(cmd: &str) -> crate::error::Error {
    crate::error::Error::refused(format!(
        "{cmd}: not supported on this platform (Unix only: steps run in process groups and are \
         stopped by signals); stats, sessions, events, dlq, checkpoints, worktree ls and \
         clean --dry-run work here"
    ))
}

/// Print a run's summary: one JSON document with `--json`, else one line (on stderr under
/// `-q`, and only when the run did not succeed).
pub fn report(s: &run::Summary, json: bool, quiet: bool) -> Result<Exit> {
    let o = Flags { json, quiet };
    if o.json {
        let doc = json!({
            "session_id": s.session_id,
            "job_id": s.job_id,
            "status": s.status,
            "reason": s.reason,
            "total": s.total,
            "completed": s.completed,
            "failed": s.failed,
            "merge": s.merge,
            "exit": s.exit,
        });
        super::print(&format!("{doc}\n"))?;
    } else if !o.quiet || s.exit != 0 {
        let mut line = format!(
            "{} {}: {} ({})",
            if s.session_id == s.job_id {
                "session"
            } else {
                "job"
            },
            s.job_id,
            s.status,
            s.reason
        );
        if s.total > 0 && s.session_id != s.job_id {
            line.push_str(&format!(
                "; items: {} total, {} merged, {} failed",
                s.total, s.completed, s.failed
            ));
        }
        line.push_str(&format!("; branch: {}", s.merge));
        if s.status == "paused" || (s.status == "failed" && s.exit == 1) {
            line.push_str(&format!("; session {}", s.session_id));
        }
        if o.quiet {
            crate::error::eprint_line(&format!("prodigy: {line}"));
        } else {
            super::print(&format!("{line}\n"))?;
        }
    }
    Ok(run::exit_of(s))
}
