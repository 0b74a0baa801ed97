//! `prodigy validate FILE... [--strict] [--json] [--schema]` (run.md §2 "Checking without
//! running"): every error and warning of each file with file:line:col. Exit 0 valid, 1 warnings
//! under `--strict`, 2 invalid. Reads the files only.

use crate::cli::ValidateArgs;
use crate::error::{Exit, Result};
use crate::workflow::{self, Kind, Severity};
use serde_json::json;

/// Check every file and report.
pub fn run(a: &ValidateArgs) -> Result<Exit> {
    if a.schema {
        let s = serde_json::to_string_pretty(&workflow::keys::json_schema())
            .expect("a JSON value serializes");
        super::print(&format!("{s}\n"))?;
        return Ok(Exit::Ok);
    }
    let mut exit = Exit::Ok;
    let mut docs = Vec::new();
    let mut text = String::new();
    for path in &a.files {
        let c = workflow::check_file(path);
        let errors = c
            .problems
            .iter()
            .filter(|p| p.severity == Severity::Error)
            .count();
        let warnings = c.problems.len() - errors;
        if errors > 0 {
            exit = Exit::Usage;
        } else if warnings > 0 && a.strict && exit == Exit::Ok {
            exit = Exit::Failures;
        }
        let shown = crate::store::names::printable(path.as_os_str());
        for p in &c.problems {
            let sev = match p.severity {
                Severity::Error => "error",
                Severity::Warning => "warning",
            };
            text.push_str(&format!(
                "`{shown}`:{}:{}: {sev}: {}\n",
                p.line, p.col, p.message
            ));
        }
        let kind = c.workflow.as_ref().map(|w| match w.kind {
            Kind::Standard(_) => "standard",
            Kind::MapReduce(_) => "mapreduce",
        });
        let verdict = if errors > 0 { "invalid" } else { "valid" };
        text.push_str(&format!(
            "`{shown}`: {verdict}{} ({errors} error(s), {warnings} warning(s))\n",
            kind.map(|k| format!(", {k} workflow")).unwrap_or_default()
        ));
        docs.push(json!({
            "path": path.to_string_lossy(),
            "valid": errors == 0,
            "kind": kind,
            "errors": errors,
            "warnings": warnings,
            "problems": c.problems.iter().map(|p| json!({
                "severity": match p.severity { Severity::Error => "error", Severity::Warning => "warning" },
                "line": p.line,
                "col": p.col,
                "message": p.message,
            })).collect::<Vec<_>>(),
        }));
    }
    if a.json {
        let doc = json!({
            "valid": exit != Exit::Usage,
            "strict": a.strict,
            "exit": exit as u8,
            "files": docs,
        });
        super::print(&format!("{doc}\n"))?;
    } else {
        super::print(&text)?;
    }
    Ok(exit)
}
