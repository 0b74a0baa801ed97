//! `prodigy checkpoints ls|verify`: MapReduce job state and checkpoints (storage-format §4.4) and
//! 0.4.4 workflow checkpoints (§4.4, §5).
//!
//! Read from `state/{X}/mapreduce/jobs/{job_id}/` (`job-state.json`, `setup-checkpoint.json`,
//! `map-checkpoint-{ts}.json`, `reduce-checkpoint-v1-{ts}.json`; the newest of a phase is the one
//! with the greatest file-name timestamp; `map-log.jsonl`, the items that ended after the newest
//! map checkpoint, whose counts `ls` includes and whose lines `verify` checks: a torn last line
//! is valid, a corrupt line before it is reported as the file's error) and
//! `state/{X}/checkpoints/*.checkpoint.json`, where `X` is a repository or a 0.4.4 session id
//! (`workflow-{ms}`, `session-{uuid}`).
//!
//! JSON shapes (stable):
//! * `checkpoints ls --json`: `{"command": "checkpoints ls", "root", "jobs": [{"repository",
//!   "session", "job", "path", "job_state": null | {"file", "valid", "error", "status", "phase",
//!   "total_items", "completed_items", "failed_items", "updated_at"}, "setup": null | {"file",
//!   "valid", "error", "completed", "timestamp"}, "map": null | {"file", "valid", "error",
//!   "pending_items", "in_progress_items", "completed_items", "failed_items", "timestamp"},
//!   "reduce": null | {"file", "valid", "error", "completed_steps", "current_step",
//!   "timestamp"}}], "workflow_checkpoints": [{"repository", "session", "workflow_id", "path",
//!   "valid", "error", "status", "current_step_index", "total_steps", "timestamp"}]}`; counts
//!   are numbers of work items, `completed_steps` is the list of step indices;
//! * `checkpoints verify --json`: `{"command": "checkpoints verify", "root", "checked", "valid",
//!   "invalid": [{"path", "kind", "line", "column", "message"}]}` (`line`/`column` are null when
//!   the file could not be read at all).

use super::events::{
    cell, emit, files_where, json_doc, open_root, scope_of, sub_dirs, time_cell, warn,
};
use crate::clean::inventory::MAX_RECORD;
use crate::clean::Scope;
use crate::cli::Args;
use crate::error::{Exit, Result};
use crate::store::fsops::Dir;
use crate::store::names::{is_legacy_session_id, strip_valid};
use crate::store::records::{
    self, checkpoint_kind_of_file_name, file_name_timestamp, read_map_log, CheckpointKind,
    JobState, LegacyWorkflowCheckpoint, MapCheckpoint, ParseError, ReduceCheckpoint,
    SetupCheckpoint, Timestamp, MAP_LOG_FILE_NAME,
};
use serde::de::DeserializeOwned;
use serde_json::{json, Value};
use std::ffi::OsStr;
use std::path::{Path, PathBuf};

/// Why a checkpoint is invalid.
enum Bad {
    /// It could not be read (symlink, not a regular file, too large, I/O error).
    Io(String),
    /// It does not parse as its kind.
    Parse(ParseError),
}

impl std::fmt::Display for Bad {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Bad::Io(m) => write!(f, "cannot read: {m}"),
            Bad::Parse(e) => write!(f, "{e}"),
        }
    }
}

fn load<T: DeserializeOwned>(d: &Dir, name: &str) -> std::result::Result<T, Bad> {
    let bytes = d
        .read_file(OsStr::new(name), MAX_RECORD)
        .map_err(|e| Bad::Io(crate::error::describe_io(&e)))?;
    records::parse::<T>(&bytes).map_err(Bad::Parse)
}

/// One checkpoint file and what it holds.
struct Ck<T> {
    file: String,
    parsed: std::result::Result<T, Bad>,
}

impl<T> Ck<T> {
    fn base(&self) -> serde_json::Map<String, Value> {
        let mut m = serde_json::Map::new();
        m.insert("file".into(), json!(self.file));
        m.insert("valid".into(), json!(self.parsed.is_ok()));
        m.insert(
            "error".into(),
            json!(self.parsed.as_ref().err().map(|e| e.to_string())),
        );
        m
    }
}

/// A canonical job directory.
struct Job {
    dir_name: String,
    job: String,
    path: PathBuf,
    state: Option<Ck<JobState>>,
    setup: Option<Ck<SetupCheckpoint>>,
    map: Option<Ck<MapCheckpoint>>,
    reduce: Option<Ck<ReduceCheckpoint>>,
}

impl Job {
    fn repository(&self) -> Option<&str> {
        (!is_legacy_session_id(&self.dir_name)).then_some(self.dir_name.as_str())
    }
    fn session(&self) -> Option<String> {
        if let Some(Ck { parsed: Ok(js), .. }) = &self.state {
            if let Some(s) = &js.session_id {
                return Some(s.clone());
            }
        }
        is_legacy_session_id(&self.dir_name).then(|| self.dir_name.clone())
    }
}

/// A 0.4.4 workflow checkpoint.
struct Workflow {
    dir_name: String,
    file: String,
    path: PathBuf,
    parsed: std::result::Result<LegacyWorkflowCheckpoint, Bad>,
}

impl Workflow {
    fn repository(&self) -> Option<&str> {
        (!is_legacy_session_id(&self.dir_name)).then_some(self.dir_name.as_str())
    }
    fn session(&self) -> Option<&str> {
        is_legacy_session_id(&self.dir_name).then_some(self.dir_name.as_str())
    }
    fn workflow_id(&self) -> String {
        match &self.parsed {
            Ok(c) => c.workflow_id.clone(),
            Err(_) => self
                .file
                .strip_suffix(".checkpoint.json")
                .unwrap_or(&self.file)
                .to_string(),
        }
    }
    fn step(&self, key: &str) -> Option<u64> {
        self.parsed
            .as_ref()
            .ok()?
            .execution_state
            .extra
            .get(key)
            .and_then(Value::as_u64)
    }
}

/// The `state/{X}` directories in scope (not `state/reduce_checkpoints`, which is no repository).
fn state_dirs(root: &Dir, scope: &Scope) -> Vec<(String, Dir)> {
    let Ok(sd) = root.open_dir(OsStr::new("state")) else {
        return Vec::new();
    };
    sub_dirs(&sd)
        .into_iter()
        .filter(|x| x != "reduce_checkpoints")
        .filter(|x| match scope {
            Scope::All => true,
            Scope::Repo(r) => r == x,
        })
        .filter_map(|x| sd.open_dir(OsStr::new(&x)).ok().map(|d| (x, d)))
        .collect()
}

/// Checkpoint files of a job directory by kind, oldest first (file-name timestamp order).
fn checkpoint_files(d: &Dir) -> Vec<(CheckpointKind, String)> {
    let mut v: Vec<(CheckpointKind, Option<Timestamp>, String)> =
        files_where(d, |n| checkpoint_kind_of_file_name(n).is_some())
            .into_iter()
            .filter_map(|n| {
                let (kind, ts) = checkpoint_kind_of_file_name(&n)?;
                Some((kind, ts.as_deref().and_then(file_name_timestamp), n))
            })
            .collect();
    crate::sort::sort(&mut v);
    v.into_iter().map(|(k, _, n)| (k, n)).collect()
}

/// Largest map log read: four times the largest record, since a log holds about what the full
/// checkpoint it extends holds.
const MAX_MAP_LOG: u64 = 4 * MAX_RECORD;

/// The job's map log, read whole, when it has one.
fn map_log(d: &Dir) -> Option<std::result::Result<Vec<u8>, Bad>> {
    if files_where(d, |n| n == MAP_LOG_FILE_NAME).is_empty() {
        return None;
    }
    Some(
        d.read_file(OsStr::new(MAP_LOG_FILE_NAME), MAX_MAP_LOG)
            .map_err(|e| Bad::Io(crate::error::describe_io(&e))),
    )
}

/// The newest map checkpoint with the map log's lines after its `map_log_bytes` applied (the
/// state a resume would start from); a log that cannot be read, or is shorter than the
/// checkpoint says, leaves the checkpoint as it is.
fn newest_map(d: &Dir, files: &[(CheckpointKind, String)]) -> Option<Ck<MapCheckpoint>> {
    let mut ck = newest::<MapCheckpoint>(d, files, CheckpointKind::Map)?;
    if let Ok(cp) = &mut ck.parsed {
        if let (Some(off), Some(Ok(bytes))) = (cp.map_log_bytes(), map_log(d)) {
            if let Some(rest) = bytes.get(off as usize..) {
                let log = read_map_log(rest, 1);
                cp.apply_log(log.entries.iter().map(|(_, e)| e));
            }
        }
    }
    Some(ck)
}

fn newest<T: DeserializeOwned>(
    d: &Dir,
    files: &[(CheckpointKind, String)],
    kind: CheckpointKind,
) -> Option<Ck<T>> {
    let file = files.iter().rev().find(|(k, _)| *k == kind)?.1.clone();
    let parsed = load::<T>(d, &file);
    Some(Ck { file, parsed })
}

/// Every canonical job and 0.4.4 workflow checkpoint in scope.
fn scan(root: &Dir, root_path: &Path, scope: &Scope) -> (Vec<Job>, Vec<Workflow>) {
    let mut jobs = Vec::new();
    let mut wfs = Vec::new();
    for (x, xd) in state_dirs(root, scope) {
        let xpath = root_path.join("state").join(&x);
        if let Ok(jd) = xd.open_path(&[OsStr::new("mapreduce"), OsStr::new("jobs")]) {
            for job in sub_dirs(&jd) {
                let Ok(d) = jd.open_dir(OsStr::new(&job)) else {
                    continue;
                };
                let files = checkpoint_files(&d);
                let state = files_where(&d, |n| n == "job-state.json")
                    .first()
                    .map(|f| Ck {
                        file: f.clone(),
                        parsed: load::<JobState>(&d, f),
                    });
                jobs.push(Job {
                    path: xpath.join("mapreduce").join("jobs").join(&job),
                    dir_name: x.clone(),
                    job,
                    state,
                    setup: newest(&d, &files, CheckpointKind::Setup),
                    map: newest_map(&d, &files),
                    reduce: newest(&d, &files, CheckpointKind::Reduce),
                });
            }
        }
        if let Ok(cd) = xd.open_dir(OsStr::new("checkpoints")) {
            for f in files_where(&cd, |n| {
                strip_valid(OsStr::new(n), ".checkpoint.json").is_some()
            }) {
                let parsed = load::<LegacyWorkflowCheckpoint>(&cd, &f);
                wfs.push(Workflow {
                    path: xpath.join("checkpoints").join(&f),
                    dir_name: x.clone(),
                    file: f,
                    parsed,
                });
            }
        }
    }
    (jobs, wfs)
}

fn ts_json(t: Option<&Timestamp>) -> Value {
    json!(t.map(|t| t.to_string()))
}

fn job_json(j: &Job) -> Value {
    let state = j.state.as_ref().map(|c| {
        let mut m = c.base();
        if let Ok(s) = &c.parsed {
            m.insert("status".into(), json!(s.status));
            m.insert("phase".into(), json!(s.phase));
            m.insert("total_items".into(), json!(s.total_items));
            m.insert("completed_items".into(), json!(s.completed_items));
            m.insert("failed_items".into(), json!(s.failed_items));
            m.insert("updated_at".into(), ts_json(s.updated_at.as_ref()));
        }
        Value::Object(m)
    });
    let setup = j.setup.as_ref().map(|c| {
        let mut m = c.base();
        if let Ok(s) = &c.parsed {
            m.insert("completed".into(), json!(s.completed));
            m.insert("timestamp".into(), ts_json(s.timestamp.as_ref()));
        }
        Value::Object(m)
    });
    let map = j.map.as_ref().map(|c| {
        let mut m = c.base();
        if let Ok(s) = &c.parsed {
            m.insert("pending_items".into(), json!(s.pending_items.len()));
            m.insert("in_progress_items".into(), json!(s.in_progress_items.len()));
            m.insert("completed_items".into(), json!(s.completed_items.len()));
            m.insert("failed_items".into(), json!(s.failed_items.len()));
            m.insert("timestamp".into(), ts_json(s.timestamp.as_ref()));
        }
        Value::Object(m)
    });
    let reduce = j.reduce.as_ref().map(|c| {
        let mut m = c.base();
        if let Ok(s) = &c.parsed {
            m.insert("completed_steps".into(), json!(s.completed_steps));
            m.insert("current_step".into(), json!(s.current_step));
            m.insert("timestamp".into(), ts_json(s.timestamp.as_ref()));
        }
        Value::Object(m)
    });
    json!({
        "repository": j.repository(),
        "session": j.session(),
        "job": j.job,
        "path": j.path,
        "job_state": state,
        "setup": setup,
        "map": map,
        "reduce": reduce,
    })
}

fn workflow_json(w: &Workflow) -> Value {
    let ok = w.parsed.as_ref().ok();
    json!({
        "repository": w.repository(),
        "session": w.session(),
        "workflow_id": w.workflow_id(),
        "path": w.path,
        "valid": ok.is_some(),
        "error": w.parsed.as_ref().err().map(|e| e.to_string()),
        "status": ok.map(|c| c.status_str()),
        "current_step_index": w.step("current_step_index"),
        "total_steps": w.step("total_steps"),
        "timestamp": ts_json(ok.and_then(|c| c.timestamp.as_ref())),
    })
}

/// Table rows of one job: one per file shown.
fn job_rows(j: &Job, rows: &mut Vec<Vec<String>>) {
    let repo = j.repository().unwrap_or("-").to_string();
    let session = j.session().map_or("-".into(), |s| cell(&s));
    let row = |phase: &str, file: &str, status: String, progress: String, t: Option<&Timestamp>| {
        vec![
            repo.clone(),
            session.clone(),
            j.job.clone(),
            phase.to_string(),
            file.to_string(),
            status,
            progress,
            time_cell(t),
        ]
    };
    let invalid = |e: &Bad| ("invalid".to_string(), cell(&e.to_string()));
    if let Some(c) = &j.state {
        rows.push(match &c.parsed {
            Ok(s) => row(
                "job",
                &c.file,
                format!(
                    "{} ({})",
                    enum_str(&json!(s.status)),
                    enum_str(&json!(s.phase))
                ),
                format!(
                    "items {}: completed {}, failed {}",
                    s.total_items, s.completed_items, s.failed_items
                ),
                s.updated_at.as_ref(),
            ),
            Err(e) => {
                let (st, pr) = invalid(e);
                row("job", &c.file, st, pr, None)
            }
        });
    }
    if let Some(c) = &j.setup {
        rows.push(match &c.parsed {
            Ok(s) => row(
                "setup",
                &c.file,
                if s.completed {
                    "completed".into()
                } else {
                    "not completed".into()
                },
                format!("outputs {}", s.outputs.len()),
                s.timestamp.as_ref(),
            ),
            Err(e) => {
                let (st, pr) = invalid(e);
                row("setup", &c.file, st, pr, None)
            }
        });
    }
    if let Some(c) = &j.map {
        rows.push(match &c.parsed {
            Ok(m) => row(
                "map",
                &c.file,
                "-".into(),
                format!(
                    "pending {}, in progress {}, completed {}, failed {}",
                    m.pending_items.len(),
                    m.in_progress_items.len(),
                    m.completed_items.len(),
                    m.failed_items.len()
                ),
                m.timestamp.as_ref(),
            ),
            Err(e) => {
                let (st, pr) = invalid(e);
                row("map", &c.file, st, pr, None)
            }
        });
    }
    if let Some(c) = &j.reduce {
        rows.push(match &c.parsed {
            Ok(r) => row(
                "reduce",
                &c.file,
                "-".into(),
                format!(
                    "completed steps {}, current step {}",
                    r.completed_steps.len(),
                    r.current_step
                ),
                r.timestamp.as_ref(),
            ),
            Err(e) => {
                let (st, pr) = invalid(e);
                row("reduce", &c.file, st, pr, None)
            }
        });
    }
}

fn workflow_row(w: &Workflow) -> Vec<String> {
    let (status, progress, t) = match &w.parsed {
        Ok(c) => {
            let step = match (w.step("current_step_index"), w.step("total_steps")) {
                (Some(i), Some(n)) if n > 0 => format!("step {i} of {n}"),
                (Some(i), _) => format!("step {i}"),
                _ => "-".into(),
            };
            (c.status_str().to_string(), step, c.timestamp.as_ref())
        }
        Err(e) => ("invalid".to_string(), cell(&e.to_string()), None),
    };
    vec![
        w.repository().unwrap_or("-").to_string(),
        w.session().unwrap_or("-").to_string(),
        cell(&w.workflow_id()),
        "workflow".into(),
        w.file.clone(),
        status,
        progress,
        time_cell(t),
    ]
}

/// A serialized unit enum as its bare string.
fn enum_str(v: &Value) -> String {
    v.as_str().unwrap_or("?").to_string()
}

/// Run `prodigy checkpoints ls [JOB_ID]`.
pub fn ls(a: &Args) -> Result<Exit> {
    let name = "checkpoints ls";
    let want = a.ids.first().map(String::as_str);
    let Some((root_path, root)) = open_root(name, a.json)? else {
        return Ok(Exit::Ok);
    };
    let (mut jobs, mut wfs) = scan(&root, &root_path, &scope_of(a, want.is_some()));
    jobs.retain(|j| {
        j.state.is_some() || j.setup.is_some() || j.map.is_some() || j.reduce.is_some()
    });
    if let Some(id) = want {
        jobs.retain(|j| j.job == id || j.session().as_deref() == Some(id));
        wfs.retain(|w| w.dir_name == id || w.workflow_id() == id);
        if jobs.is_empty() && wfs.is_empty() {
            warn(&format!(
                "prodigy {name}: no checkpoints for job `{}`; see `prodigy checkpoints ls`",
                cell(id)
            ));
            return Ok(Exit::Usage);
        }
    }
    let text = if a.json {
        let j: Vec<Value> = jobs.iter().map(job_json).collect();
        let w: Vec<Value> = wfs.iter().map(workflow_json).collect();
        json_doc(&json!({
            "command": name,
            "root": root_path,
            "jobs": j,
            "workflow_checkpoints": w,
        }))
    } else {
        let mut rows = Vec::new();
        for j in &jobs {
            job_rows(j, &mut rows);
        }
        rows.extend(wfs.iter().map(workflow_row));
        super::table::render(
            &[
                "REPOSITORY",
                "SESSION",
                "JOB",
                "PHASE",
                "CHECKPOINT",
                "STATUS",
                "PROGRESS",
                "TIME",
            ],
            &rows,
        )
    };
    emit(&text)?;
    Ok(Exit::Ok)
}

/// Run `prodigy checkpoints verify`: parse every checkpoint in scope, report each invalid one
/// with its path and position; exit 1 if any is invalid.
pub fn verify(a: &Args) -> Result<Exit> {
    let name = "checkpoints verify";
    let Some((root_path, root)) = open_root(name, a.json)? else {
        return Ok(Exit::Ok);
    };
    let mut checked = 0usize;
    let mut invalid: Vec<(PathBuf, &'static str, Bad)> = Vec::new();
    let mut check = |path: PathBuf, kind: &'static str, r: std::result::Result<(), Bad>| {
        checked += 1;
        if let Err(e) = r {
            invalid.push((path, kind, e));
        }
    };
    for (x, xd) in state_dirs(&root, &scope_of(a, false)) {
        let xpath = root_path.join("state").join(&x);
        if let Ok(jd) = xd.open_path(&[OsStr::new("mapreduce"), OsStr::new("jobs")]) {
            for job in sub_dirs(&jd) {
                let Ok(d) = jd.open_dir(OsStr::new(&job)) else {
                    continue;
                };
                let jpath = xpath.join("mapreduce").join("jobs").join(&job);
                if !files_where(&d, |n| n == "job-state.json").is_empty() {
                    check(
                        jpath.join("job-state.json"),
                        "job-state",
                        load::<JobState>(&d, "job-state.json").map(drop),
                    );
                }
                for (kind, f) in checkpoint_files(&d) {
                    let r = d
                        .read_file(OsStr::new(&f), MAX_RECORD)
                        .map_err(|e| Bad::Io(crate::error::describe_io(&e)))
                        .and_then(|b| records::parse_checkpoint(kind, &b).map_err(Bad::Parse));
                    check(jpath.join(&f), kind.as_str(), r);
                }
                if let Some(bytes) = map_log(&d) {
                    let r =
                        bytes.and_then(|b| match read_map_log(&b, 1).corrupt.into_iter().next() {
                            Some((_, e)) => Err(Bad::Parse(e)),
                            None => Ok(()),
                        });
                    check(jpath.join(MAP_LOG_FILE_NAME), "map-log", r);
                }
            }
        }
        if let Ok(cd) = xd.open_dir(OsStr::new("checkpoints")) {
            for f in files_where(&cd, |n| {
                strip_valid(OsStr::new(n), ".checkpoint.json").is_some()
            }) {
                check(
                    xpath.join("checkpoints").join(&f),
                    "workflow",
                    load::<LegacyWorkflowCheckpoint>(&cd, &f).map(drop),
                );
            }
        }
    }
    let text = if a.json {
        let bad: Vec<Value> = invalid
            .iter()
            .map(|(p, kind, e)| match e {
                Bad::Parse(pe) => json!({
                    "path": p, "kind": kind, "line": pe.line, "column": pe.column,
                    "message": pe.message,
                }),
                Bad::Io(m) => json!({
                    "path": p, "kind": kind, "line": null, "column": null,
                    "message": format!("cannot read: {m}"),
                }),
            })
            .collect();
        json_doc(&json!({
            "command": name,
            "root": root_path,
            "checked": checked,
            "valid": checked - invalid.len(),
            "invalid": bad,
        }))
    } else if invalid.is_empty() {
        let s = if checked == 1 { "" } else { "s" };
        format!("{checked} checkpoint{s} verified\n")
    } else {
        let rows: Vec<Vec<String>> = invalid
            .iter()
            .map(|(p, _, e)| vec![cell(&p.display().to_string()), cell(&e.to_string())])
            .collect();
        super::table::render(&["CHECKPOINT", "ERROR"], &rows)
    };
    emit(&text)?;
    if invalid.is_empty() {
        Ok(Exit::Ok)
    } else {
        warn(&format!(
            "prodigy {name}: {} of {checked} checkpoints invalid",
            invalid.len()
        ));
        Ok(Exit::Failures)
    }
}
