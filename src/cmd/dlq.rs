//! `prodigy dlq ls|show`: dead letter queues in both shapes (storage-format §4.3).
//!
//! * canonical: `dlq/{repo}/{job_id}/dlq-items.json` (`{"items": [{item_id, work_item,
//!   failure_history: [{timestamp, error, json_log_location}]}]}`);
//! * 0.4.4: `dlq/{repo-or-session}/{job_id}/mapreduce/dlq/{job_id}/items/{item_id}.json` plus
//!   `index.json` (items with `item_data`, `failure_count`, `failure_history[]` of
//!   `{attempt_number, timestamp, error_type, error_message, …}`).
//!
//! JSON shapes (stable):
//! * `dlq ls --json`: `{"command": "dlq ls", "root", "jobs": [{"repository", "session", "job",
//!   "path", "shape", "items", "newest_failure"}]}` (`shape` is `"canonical"` or `"0.4.4"`);
//! * `dlq show --json`: `{"command": "dlq show", "root", "job", "items": [{"repository",
//!   "session", "job", "path", "shape", "item_id", "failure_count", "work_item",
//!   "failure_history": [{"timestamp", "error", "error_type", "json_log_location", "log_path"}],
//!   "record"}]}`
//!   where both shapes are mapped onto the canonical field names (0.4.4 `item_data` →
//!   `work_item`, `error_message` → `error`), `error_type` is null for the canonical shape, and
//!   `record` is the item exactly as stored. `log_path` is where the log is now: the recorded
//!   `json_log_location`, or it with `.gz` once `clean --compress-after` compressed it (the table
//!   shows that path too).
//!
//! A DLQ file that does not parse is reported on stderr and skipped; it is not fatal.

use super::events::{
    cell, emit, files_where, job_dirs, json_doc, open_root, scope_of, sub_dirs, time_cell, warn,
    JobDir,
};
use crate::clean::inventory::MAX_RECORD;
use crate::clean::Scope;
use crate::cli::Args;
use crate::error::{Exit, Result};
use crate::store::fsops::{Dir, Kind};
use crate::store::records::{self, DlqFile, LegacyDlqItem, Timestamp};
use serde_json::{json, Value};
use std::ffi::OsStr;
use std::path::{Path, PathBuf};

/// One failed attempt, in either shape.
struct Failure {
    timestamp: Option<Timestamp>,
    error: Option<String>,
    error_type: Value,
    log: Option<String>,
}

/// Where a failure's log is now: the recorded path, or the same path with `.gz` when
/// `clean --compress-after` compressed it (the recorded file is gone, `PATH.gz` is a regular
/// file; nothing is followed or opened, only `lstat`ed).
fn log_now(log: Option<&str>) -> Option<String> {
    let p = log?;
    let path = std::path::Path::new(p);
    if !path.is_absolute() || std::fs::symlink_metadata(path).is_ok() {
        return Some(p.to_string());
    }
    let gz = format!("{p}{}", crate::store::gz::SUFFIX);
    match std::fs::symlink_metadata(&gz) {
        Ok(m) if m.is_file() => Some(gz),
        _ => Some(p.to_string()),
    }
}

/// One failed item, in either shape.
struct Item {
    item_id: String,
    failure_count: u64,
    data: Value,
    failures: Vec<Failure>,
    newest: Option<Timestamp>,
    path: PathBuf,
    record: Value,
}

/// The DLQ of one job in one place.
struct Queue {
    jd: JobDir,
    /// The job id (for 0.4.4, the directory under `mapreduce/dlq/`).
    job: String,
    shape: &'static str,
    path: PathBuf,
    items: Vec<Item>,
}

impl Queue {
    fn newest(&self) -> Option<Timestamp> {
        self.items.iter().filter_map(|i| i.newest).max()
    }
}

/// What went wrong while reading: a message for stderr; `io` when it was an I/O error.
struct Problem {
    message: String,
    io: bool,
}

fn read_json(d: &Dir, name: &str, path: &Path) -> std::result::Result<Value, Problem> {
    let bytes = d
        .read_file(OsStr::new(name), MAX_RECORD)
        .map_err(|e| Problem {
            message: format!(
                "cannot read `{}`: {}",
                path.display(),
                crate::error::describe_io(&e)
            ),
            io: true,
        })?;
    records::parse::<Value>(&bytes).map_err(|e| Problem {
        message: format!("`{}` does not parse: {e}", path.display()),
        io: false,
    })
}

fn shape_error(path: &Path, e: serde_json::Error) -> Problem {
    Problem {
        message: format!("`{}` is not a dead letter queue file: {e}", path.display()),
        io: false,
    }
}

/// Every DLQ in scope (both shapes), with the problems met.
fn queues(root: &Dir, root_path: &Path, scope: &Scope) -> (Vec<Queue>, Vec<Problem>) {
    let mut out = Vec::new();
    let mut problems = Vec::new();
    for jd in job_dirs(root, "dlq", scope) {
        let dir_path = root_path.join("dlq").join(&jd.dir_name).join(&jd.job);
        let Ok(d) = root.open_path(&jd.comps("dlq")) else {
            continue;
        };
        // Canonical.
        if d.stat(OsStr::new("dlq-items.json"))
            .is_ok_and(|m| m.kind == Kind::File)
        {
            let path = dir_path.join("dlq-items.json");
            match read_json(&d, "dlq-items.json", &path).and_then(|v| {
                serde_json::from_value::<DlqFile>(v.clone())
                    .map(|f| (f, v))
                    .map_err(|e| shape_error(&path, e))
            }) {
                Ok((f, v)) => {
                    let raw_items = v.get("items").and_then(Value::as_array);
                    let items = f
                        .items
                        .into_iter()
                        .enumerate()
                        .map(|(k, it)| {
                            let failures: Vec<Failure> = it
                                .failure_history
                                .into_iter()
                                .map(|f| Failure {
                                    timestamp: f.timestamp,
                                    error: f.error,
                                    error_type: Value::Null,
                                    log: f.json_log_location,
                                })
                                .collect();
                            Item {
                                item_id: it.item_id,
                                failure_count: failures.len() as u64,
                                data: it.work_item,
                                newest: failures.iter().filter_map(|f| f.timestamp).max(),
                                failures,
                                path: path.clone(),
                                record: raw_items
                                    .and_then(|a| a.get(k))
                                    .cloned()
                                    .unwrap_or(Value::Null),
                            }
                        })
                        .collect();
                    out.push(Queue {
                        jd: jd.clone(),
                        job: jd.job.clone(),
                        shape: "canonical",
                        path,
                        items,
                    });
                }
                Err(p) => problems.push(p),
            }
        }
        // 0.4.4: {job}/mapreduce/dlq/{job}/items/*.json
        let Ok(md) = d.open_path(&[OsStr::new("mapreduce"), OsStr::new("dlq")]) else {
            continue;
        };
        for inner in sub_dirs(&md) {
            let qpath = dir_path.join("mapreduce").join("dlq").join(&inner);
            let Ok(qd) = md.open_dir(OsStr::new(&inner)) else {
                continue;
            };
            let mut items = Vec::new();
            if let Ok(id) = qd.open_dir(OsStr::new("items")) {
                for f in files_where(&id, |n| n.ends_with(".json")) {
                    let path = qpath.join("items").join(&f);
                    match read_json(&id, &f, &path).and_then(|v| {
                        serde_json::from_value::<LegacyDlqItem>(v.clone())
                            .map(|i| (i, v))
                            .map_err(|e| shape_error(&path, e))
                    }) {
                        Ok((it, v)) => items.push(legacy_item(it, v, path)),
                        Err(p) => problems.push(p),
                    }
                }
            }
            crate::sort::sort_by(&mut items, |a, b| a.item_id.cmp(&b.item_id));
            out.push(Queue {
                jd: jd.clone(),
                job: inner,
                shape: "0.4.4",
                path: qpath,
                items,
            });
        }
    }
    (out, problems)
}

fn legacy_item(it: LegacyDlqItem, record: Value, path: PathBuf) -> Item {
    let failures: Vec<Failure> = it
        .failure_history
        .into_iter()
        .map(|f| {
            let log = ["json_log_location", "log_location"]
                .iter()
                .find_map(|k| f.extra.get(*k).and_then(Value::as_str))
                .map(str::to_string);
            Failure {
                timestamp: f.timestamp,
                error: Some(f.error_message),
                error_type: f.error_type,
                log,
            }
        })
        .collect();
    let newest = failures
        .iter()
        .filter_map(|f| f.timestamp)
        .chain(it.last_attempt)
        .max();
    Item {
        item_id: it.item_id,
        failure_count: it.failure_count.max(failures.len() as u64),
        data: it.item_data,
        failures,
        newest,
        path,
        record,
    }
}

/// Report problems on stderr; true if any was an I/O error.
fn report(name: &str, problems: &[Problem]) -> bool {
    for p in problems {
        warn(&format!("prodigy {name}: {}", p.message));
    }
    problems.iter().any(|p| p.io)
}

/// Run `prodigy dlq ls`.
pub fn ls(a: &Args) -> Result<Exit> {
    let name = "dlq ls";
    let Some((root_path, root)) = open_root(name, a.json)? else {
        return Ok(Exit::Ok);
    };
    let (qs, problems) = queues(&root, &root_path, &scope_of(a, false));
    let qs: Vec<&Queue> = qs.iter().filter(|q| !q.items.is_empty()).collect();
    let text = if a.json {
        let jobs: Vec<Value> = qs
            .iter()
            .map(|q| {
                json!({
                    "repository": q.jd.repository(),
                    "session": q.jd.session(),
                    "job": q.job,
                    "path": q.path,
                    "shape": q.shape,
                    "items": q.items.len(),
                    "newest_failure": q.newest().map(|t| t.to_string()),
                })
            })
            .collect();
        json_doc(&json!({"command": name, "root": root_path, "jobs": jobs}))
    } else {
        let rows: Vec<Vec<String>> = qs
            .iter()
            .map(|q| {
                vec![
                    q.jd.repository().unwrap_or("-").to_string(),
                    q.job.clone(),
                    q.items.len().to_string(),
                    time_cell(q.newest().as_ref()),
                    q.shape.to_string(),
                ]
            })
            .collect();
        super::table::render(
            &["REPOSITORY", "JOB", "ITEMS", "NEWEST FAILURE", "SHAPE"],
            &rows,
        )
    };
    emit(&text)?;
    let io_failed = report(name, &problems);
    Ok(if io_failed { Exit::Failures } else { Exit::Ok })
}

fn error_type_cell(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => cell(s),
        other => other.to_string(),
    }
}

/// Run `prodigy dlq show JOB_ID [ITEM_ID]`.
pub fn show(a: &Args) -> Result<Exit> {
    let name = "dlq show";
    let job = a.ids.first().map(String::as_str).unwrap_or_default();
    let item = a.ids.get(1).map(String::as_str);
    let Some((root_path, root)) = open_root(name, a.json)? else {
        return Ok(Exit::Ok);
    };
    let (qs, problems) = queues(&root, &root_path, &scope_of(a, true));
    let io_failed = report(name, &problems);
    let qs: Vec<&Queue> = qs
        .iter()
        .filter(|q| (q.job == job || q.jd.job == job) && !q.items.is_empty())
        .collect();
    if qs.is_empty() {
        warn(&format!(
            "prodigy {name}: no failed items for job `{}`; see `prodigy dlq ls`",
            cell(job)
        ));
        return Ok(Exit::Usage);
    }
    let selected: Vec<(&Queue, &Item)> = qs
        .iter()
        .flat_map(|q| q.items.iter().map(move |i| (*q, i)))
        .filter(|(_, i)| item.map_or(true, |want| i.item_id == want))
        .collect();
    if selected.is_empty() {
        let have: Vec<String> = qs
            .iter()
            .flat_map(|q| q.items.iter().map(|i| cell(&i.item_id)))
            .collect();
        warn(&format!(
            "prodigy {name}: job `{}` has no failed item `{}` (it has: {}); see `prodigy dlq ls`",
            cell(job),
            cell(item.unwrap_or_default()),
            have.join(", ")
        ));
        return Ok(Exit::Usage);
    }
    let text = if a.json {
        let items: Vec<Value> = selected
            .iter()
            .map(|(q, i)| {
                let history: Vec<Value> = i
                    .failures
                    .iter()
                    .map(|f| {
                        json!({
                            "timestamp": f.timestamp.map(|t| t.to_string()),
                            "error": f.error,
                            "error_type": f.error_type,
                            "json_log_location": f.log,
                            "log_path": log_now(f.log.as_deref()),
                        })
                    })
                    .collect();
                json!({
                    "repository": q.jd.repository(),
                    "session": q.jd.session(),
                    "job": q.job,
                    "path": i.path,
                    "shape": q.shape,
                    "item_id": i.item_id,
                    "failure_count": i.failure_count,
                    "work_item": i.data,
                    "failure_history": history,
                    "record": i.record,
                })
            })
            .collect();
        json_doc(&json!({"command": name, "root": root_path, "job": job, "items": items}))
    } else {
        let mut rows = Vec::new();
        for (_, i) in &selected {
            let base = |f: Option<&Failure>| {
                vec![
                    cell(&i.item_id),
                    i.failure_count.to_string(),
                    time_cell(f.and_then(|f| f.timestamp.as_ref())),
                    f.map_or("-".into(), |f| error_type_cell(&f.error_type)),
                    f.and_then(|f| f.error.as_deref()).map_or("-".into(), cell),
                    f.and_then(|f| log_now(f.log.as_deref()))
                        .map_or("-".into(), |l| cell(&l)),
                    i.data.to_string(),
                ]
            };
            if i.failures.is_empty() {
                rows.push(base(None));
            }
            for f in &i.failures {
                rows.push(base(Some(f)));
            }
        }
        super::table::render(
            &["ITEM", "FAILURES", "TIME", "TYPE", "ERROR", "LOG", "DATA"],
            &rows,
        )
    };
    emit(&text)?;
    Ok(if io_failed { Exit::Failures } else { Exit::Ok })
}

/// `prodigy dlq retry JOB [-y] [--max-parallel N] [-n] [--reduce]` (run.md §6): the failed items
/// run again as a new map pass of the job, through the resume code path; `-n` lists them.
pub fn retry(a: &Args) -> Result<Exit> {
    let job = &a.ids[0];
    if a.dry_run {
        let (job_id, items) = crate::run::resume::retry_plan(job)?;
        if a.json {
            let v: Vec<serde_json::Value> = items
                .iter()
                .map(|(i, e, w)| serde_json::json!({"item_id": i, "last_error": e, "worktree_path": w}))
                .collect();
            super::print(&format!(
                "{}\n",
                serde_json::json!({"job_id": job_id, "dry_run": true, "items": v})
            ))?;
        } else if items.is_empty() {
            super::print(&format!(
                "dead letter queue of {job_id} is empty: nothing to retry\n"
            ))?;
        } else {
            let mut out = String::new();
            for (i, e, w) in &items {
                out.push_str(&format!("would retry {i}\t{e}"));
                if let Some(w) = w {
                    // The worktree the failed attempt left; the retry replaces it.
                    out.push_str(&format!("\t{w}"));
                }
                out.push('\n');
            }
            super::print(&out)?;
        }
        return Ok(Exit::Ok);
    }
    let o = crate::run::resume::RetryOptions {
        job: job.clone(),
        yes: a.yes,
        max_parallel: a.max_parallel,
        dry_run: false,
        reduce: a.reduce,
        quiet: a.quiet,
        json: a.json,
    };
    let s = crate::run::resume::dlq_retry(&o)?;
    super::run::report(&s, a.json, a.quiet)
}
