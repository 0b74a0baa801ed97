//! `prodigy events ls|show|follow`: the event logs `events/{repo}/{job_id}/events-*.jsonl` in
//! both layouts (storage-format §3, §4.2, §5).
//!
//! Where jobs are found: every directory `events/{X}/{Y}/` whose names are valid ids is a job
//! `Y`; `X` is a repository, or a 0.4.4 pseudo-repository named after the session that owns it
//! (`session-{uuid}`, `workflow-{ms}`), shown as repository `-` with that session. With
//! `--repo NAME` only `events/NAME/*` is listed; `show` and `follow` take no scope flag and look
//! everywhere (the job id is explicit).
//!
//! Output shapes (stable):
//! * `events ls --json`: one object `{"command": "events ls", "root", "jobs": [{"repository",
//!   "session", "job", "path", "files", "events", "bad_lines", "first", "last"}]}`; `repository`
//!   and `session` are null when unknown, `first`/`last` are the oldest and newest event
//!   timestamps (RFC 3339) or null.
//! * `events show --json` and `events follow --json`: JSON Lines, one event per line, each the
//!   event exactly as stored (either shape), re-serialized compactly.
//! * Text: `TIMESTAMP  TYPE  agent=A job=J  {remaining fields as compact JSON}`, where the ids
//!   part is left out when the event names neither, and for the 0.4.4 shape the remaining fields
//!   are those of the inner `event` object (the envelope's `id`, `correlation_id` and `metadata`
//!   are only in `--json`).
//!
//! Corrupt lines never stop a command: `show` reports them once per file at the end, on stderr;
//! a torn last line (a write cut short) is not reported. `--since` keeps only events with a
//! timestamp at most that old; events without a valid timestamp are then left out.

use crate::clean::Scope;
use crate::cli::{Args, ScopeArg};
use crate::error::{Error, Exit, Result};
use crate::git::Git;
use crate::store::fsops::{Dir, Kind};
use crate::store::names::{is_legacy_session_id, printable, terminal_safe, valid_id_str};
use crate::store::records::{
    normalize_event_type, parse_event_line, read_jsonl, EventLine, Timestamp, MAX_JSONL_LINE,
};
use serde_json::{json, Map, Value};
use std::cell::Cell;
use std::collections::{BTreeMap, VecDeque};
use std::ffi::OsStr;
use std::io::{self, BufRead, Read, Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------------------------
// Helpers shared by `events`, `dlq` and `checkpoints`
// ---------------------------------------------------------------------------------------------

/// The opened root, or `None` after saying that nothing is stored (exit 0).
pub(crate) fn open_root(name: &str, json: bool) -> Result<Option<(PathBuf, Dir)>> {
    let (wanted, opened) = super::open_store(name)?;
    match opened {
        Some(o) => Ok(Some(o)),
        None => {
            if json {
                super::print(&format!(
                    "{}\n",
                    json!({"command": name, "root": wanted, "nothing_stored": true})
                ))?;
            } else {
                super::print(&format!(
                    "prodigy {name}: nothing is stored at `{}`\n",
                    wanted.display()
                ))?;
            }
            Ok(None)
        }
    }
}

/// The scope of an inspection command. An explicit id with no scope flag looks everywhere.
pub(crate) fn scope_of(a: &Args, explicit_id: bool) -> Scope {
    if explicit_id && a.scope == ScopeArg::Default {
        return Scope::All;
    }
    super::resolve_scope(&a.scope, &Git::default()).0
}

/// One `{top}/{X}/{Y}/` directory: repository (or 0.4.4 pseudo-repository) `X`, job `Y`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct JobDir {
    /// The directory name under `{top}/`.
    pub dir_name: String,
    /// The job id (directory name).
    pub job: String,
}

impl JobDir {
    /// The repository, unless the directory is a 0.4.4 pseudo-repository.
    pub fn repository(&self) -> Option<&str> {
        (!is_legacy_session_id(&self.dir_name)).then_some(self.dir_name.as_str())
    }

    /// The owning session of a 0.4.4 pseudo-repository.
    pub fn session(&self) -> Option<&str> {
        is_legacy_session_id(&self.dir_name).then_some(self.dir_name.as_str())
    }

    /// Path components below the root.
    pub fn comps<'a>(&'a self, top: &'a str) -> [&'a OsStr; 3] {
        [
            OsStr::new(top),
            OsStr::new(&self.dir_name),
            OsStr::new(&self.job),
        ]
    }
}

/// Valid-id subdirectory names of `d`, sorted. Symlinks and files are left out.
pub(crate) fn sub_dirs(d: &Dir) -> Vec<String> {
    let mut out: Vec<String> = d
        .names()
        .unwrap_or_default()
        .iter()
        .filter_map(|n| {
            let s = valid_id_str(n)?;
            (d.stat(n).ok()?.kind == Kind::Dir).then(|| s.to_string())
        })
        .collect();
    crate::sort::sort(&mut out);
    out
}

/// Regular files of `d` whose names satisfy `keep`, sorted by name.
pub(crate) fn files_where(d: &Dir, keep: impl Fn(&str) -> bool) -> Vec<String> {
    let mut out: Vec<String> = d
        .names()
        .unwrap_or_default()
        .iter()
        .filter_map(|n| {
            let s = n.to_str()?;
            (keep(s) && d.stat(n).ok()?.kind == Kind::File).then(|| s.to_string())
        })
        .collect();
    crate::sort::sort(&mut out);
    out
}

/// Every `{top}/{X}/{Y}/` directory in scope, sorted. `Scope::Repo(r)` keeps `X == r` only.
pub(crate) fn job_dirs(root: &Dir, top: &str, scope: &Scope) -> Vec<JobDir> {
    let Ok(td) = root.open_dir(OsStr::new(top)) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for x in sub_dirs(&td) {
        if let Scope::Repo(r) = scope {
            if *r != x {
                continue;
            }
        }
        let Ok(xd) = td.open_dir(OsStr::new(&x)) else {
            continue;
        };
        for job in sub_dirs(&xd) {
            out.push(JobDir {
                dir_name: x.clone(),
                job,
            });
        }
    }
    out
}

/// Printable form of a string from a file: control characters escaped, so a cell or line
/// cannot be split or forged.
pub(crate) fn cell(s: &str) -> String {
    printable(OsStr::new(s))
}

/// `2026-11-21T05:15:22Z`: a timestamp to the second, for tables.
pub(crate) fn short_time(t: &Timestamp) -> String {
    match t.0.replace_nanosecond(0) {
        Ok(x) => Timestamp(x).to_string(),
        Err(_) => t.to_string(),
    }
}

/// Optional timestamp as a table cell.
pub(crate) fn time_cell(t: Option<&Timestamp>) -> String {
    t.map(short_time).unwrap_or_else(|| "-".into())
}

/// Write an error message line to stderr, ignoring failures.
pub(crate) fn warn(msg: &str) {
    crate::error::eprint_line(msg);
}

/// Print `text`; a reader that went away (closed pipe) ends the command quietly.
pub(crate) fn emit(text: &str) -> Result<()> {
    let mut out = io::stdout().lock();
    let text = terminal_safe(text);
    match out.write_all(text.as_bytes()).and_then(|_| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(write_error(&e)),
    }
}

fn write_error(e: &io::Error) -> Error {
    Error::fatal(format!(
        "cannot write output: {}",
        crate::error::describe_io(e)
    ))
}

/// Pretty JSON document plus a newline.
pub(crate) fn json_doc(v: &Value) -> String {
    let mut s = serde_json::to_string_pretty(v).unwrap_or_else(|_| "null".into());
    s.push('\n');
    s
}

// ---------------------------------------------------------------------------------------------
// Reading event files
// ---------------------------------------------------------------------------------------------

/// True for an event file name, `events-*.jsonl`, or one compressed by `clean
/// --compress-after`, `events-*.jsonl.gz`.
fn is_event_file(name: &str) -> bool {
    let plain = name.strip_suffix(crate::store::gz::SUFFIX).unwrap_or(name);
    plain.starts_with("events-") && plain.ends_with(".jsonl")
}

/// The event files of `d`, sorted by name (a compressed file sorts where its original did). When
/// both `X` and `X.gz` are there (a compression was interrupted, or is under way), `X` is the
/// one read: the original is authoritative.
fn event_files(d: &Dir) -> Vec<String> {
    let all = files_where(d, is_event_file);
    let plain: std::collections::BTreeSet<&str> = all
        .iter()
        .map(String::as_str)
        .filter(|n| !n.ends_with(crate::store::gz::SUFFIX))
        .collect();
    all.iter()
        .filter(|n| {
            n.strip_suffix(crate::store::gz::SUFFIX)
                .map_or(true, |p| !plain.contains(p))
        })
        .cloned()
        .collect()
}

/// A `BufRead` that reports end of input once `stop` is set, so a callback of `read_jsonl` can
/// end the read (the output went away).
struct Stoppable<'a, R> {
    inner: R,
    stop: &'a Cell<bool>,
}

impl<R: Read> Read for Stoppable<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.stop.get() {
            return Ok(0);
        }
        self.inner.read(buf)
    }
}

impl<R: BufRead> BufRead for Stoppable<'_, R> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        if self.stop.get() {
            return Ok(&[]);
        }
        self.inner.fill_buf()
    }
    fn consume(&mut self, amt: usize) {
        self.inner.consume(amt)
    }
}

const READ_BUF: usize = 64 * 1024;

/// `events show` flushes its output at least this often while it finds events.
const FLUSH_EVERY: Duration = Duration::from_millis(100);

/// Everything in `raw` that the text line does not already show.
fn remaining_fields(raw: &Value) -> Map<String, Value> {
    const SHOWN: [&str; 4] = ["timestamp", "event_type", "agent_id", "job_id"];
    let strip = |m: &Map<String, Value>| -> Map<String, Value> {
        crate::sort::collect_object(
            m.iter()
                .filter(|(k, _)| !SHOWN.contains(&k.as_str()))
                .map(|(k, v)| (k.clone(), v.clone())),
        )
    };
    let Some(obj) = raw.as_object() else {
        return Map::new();
    };
    if obj.contains_key("event_type") {
        return strip(obj);
    }
    match obj.get("event") {
        Some(Value::Object(ev)) if ev.contains_key("event_type") => strip(ev),
        Some(Value::Object(ev)) if ev.len() == 1 => match ev.values().next() {
            Some(Value::Object(inner)) => strip(inner),
            Some(Value::Null) | None => Map::new(),
            Some(other) => {
                let mut m = Map::new();
                m.insert("value".into(), other.clone());
                m
            }
        },
        _ => Map::new(),
    }
}

/// One event as a text line (with its `\n`).
fn text_line(ev: &EventLine) -> String {
    let ts = ev
        .timestamp
        .map(|t| t.to_string())
        .unwrap_or_else(|| "-".into());
    let mut s = format!("{ts}  {}", cell(&ev.raw_type));
    let mut ids = Vec::new();
    if let Some(a) = &ev.agent_id {
        ids.push(format!("agent={}", cell(a)));
    }
    if let Some(j) = &ev.job_id {
        ids.push(format!("job={}", cell(j)));
    }
    if !ids.is_empty() {
        s.push_str("  ");
        s.push_str(&ids.join(" "));
    }
    let rest = remaining_fields(&ev.raw);
    if !rest.is_empty() {
        s.push_str("  ");
        s.push_str(&Value::Object(rest).to_string());
    }
    s.push('\n');
    s
}

/// One event as a JSON line (with its `\n`).
fn json_line(ev: &EventLine) -> String {
    let mut s = ev.raw.to_string();
    s.push('\n');
    s
}

/// Which events to print.
struct Filter {
    event_type: Option<String>,
    since: Option<Timestamp>,
    json: bool,
}

impl Filter {
    fn new(a: &Args) -> Filter {
        let since = a.since.map(|secs| {
            let now = time::OffsetDateTime::now_utc();
            let back = time::Duration::seconds(i64::try_from(secs).unwrap_or(i64::MAX));
            Timestamp(
                now.checked_sub(back)
                    .unwrap_or(time::OffsetDateTime::UNIX_EPOCH),
            )
        });
        Filter {
            event_type: a.event_type.as_deref().map(normalize_event_type),
            since,
            json: a.json,
        }
    }

    fn wants(&self, ev: &EventLine) -> bool {
        if let Some(t) = &self.event_type {
            if ev.event_type != *t {
                return false;
            }
        }
        match (&self.since, &ev.timestamp) {
            (None, _) => true,
            (Some(s), Some(t)) => t >= s,
            (Some(_), None) => false,
        }
    }

    fn render(&self, ev: &EventLine) -> String {
        if self.json {
            json_line(ev)
        } else {
            text_line(ev)
        }
    }
}

/// The job's event directories, or the "unknown job" message (exit 2).
fn find_job(root: &Dir, name: &str, job: &str) -> Option<Vec<JobDir>> {
    let dirs: Vec<JobDir> = job_dirs(root, "events", &Scope::All)
        .into_iter()
        .filter(|d| d.job == job)
        .collect();
    if dirs.is_empty() {
        warn(&format!(
            "prodigy {name}: no events for job `{}`; see `prodigy events ls`",
            cell(job)
        ));
        return None;
    }
    Some(dirs)
}

// ---------------------------------------------------------------------------------------------
// events ls
// ---------------------------------------------------------------------------------------------

/// Run `prodigy events ls`.
pub fn ls(a: &Args) -> Result<Exit> {
    let name = "events ls";
    let Some((root_path, root)) = open_root(name, a.json)? else {
        return Ok(Exit::Ok);
    };
    let scope = scope_of(a, false);
    let mut rows = Vec::new();
    let mut jobs = Vec::new();
    let mut failed = false;
    for jd in job_dirs(&root, "events", &scope) {
        let path = root_path.join("events").join(&jd.dir_name).join(&jd.job);
        let Ok(d) = root.open_path(&jd.comps("events")) else {
            continue;
        };
        let files = event_files(&d);
        if files.is_empty() {
            continue;
        }
        let (mut good, mut bad) = (0u64, 0u64);
        let mut first: Option<Timestamp> = None;
        let mut last: Option<Timestamp> = None;
        for f in &files {
            let res = crate::store::gz::open_read(&d, OsStr::new(f)).and_then(|file| {
                read_jsonl(file, |_, ev| {
                    if let Some(t) = ev.timestamp {
                        first = Some(first.map_or(t, |x| x.min(t)));
                        last = Some(last.map_or(t, |x| x.max(t)));
                    }
                })
            });
            match res {
                Ok(st) => {
                    good += st.good;
                    bad += st.bad;
                }
                Err(e) => {
                    failed = true;
                    warn(&format!(
                        "prodigy {name}: cannot read `{}`: {}",
                        path.join(f).display(),
                        crate::error::describe_io(&e)
                    ));
                }
            }
        }
        rows.push(vec![
            jd.repository().unwrap_or("-").to_string(),
            jd.job.clone(),
            files.len().to_string(),
            good.to_string(),
            bad.to_string(),
            time_cell(first.as_ref()),
            time_cell(last.as_ref()),
        ]);
        jobs.push(json!({
            "repository": jd.repository(),
            "session": jd.session(),
            "job": jd.job,
            "path": path,
            "files": files.len(),
            "events": good,
            "bad_lines": bad,
            "first": first.map(|t| t.to_string()),
            "last": last.map(|t| t.to_string()),
        }));
    }
    let text = if a.json {
        json_doc(&json!({"command": name, "root": root_path, "jobs": jobs}))
    } else {
        super::table::render(
            &[
                "REPOSITORY",
                "JOB",
                "FILES",
                "EVENTS",
                "BAD",
                "FIRST",
                "LAST",
            ],
            &rows,
        )
    };
    emit(&text)?;
    Ok(if failed { Exit::Failures } else { Exit::Ok })
}

// ---------------------------------------------------------------------------------------------
// events show
// ---------------------------------------------------------------------------------------------

/// Run `prodigy events show JOB_ID`.
///
/// Streams each event file of the job in file-name order, line by line (memory does not grow
/// with the file); `--limit N` keeps only the last N matching events in a bounded queue.
pub fn show(a: &Args) -> Result<Exit> {
    let name = "events show";
    let job = a.ids.first().map(String::as_str).unwrap_or_default();
    let Some((root_path, root)) = open_root(name, a.json)? else {
        return Ok(Exit::Ok);
    };
    let Some(dirs) = find_job(&root, name, job) else {
        return Ok(Exit::Usage);
    };
    let filter = Filter::new(a);
    let limit = a.limit.map(|n| usize::try_from(n).unwrap_or(usize::MAX));
    let mut tail: VecDeque<String> = VecDeque::new();
    let mut out = io::BufWriter::with_capacity(READ_BUF, io::stdout().lock());
    let stop = Cell::new(false);
    let mut write_err: Option<io::Error> = None;
    let mut corrupt: Vec<(PathBuf, u64, u64)> = Vec::new();
    let mut failed = false;
    let mut last_flush = Instant::now();
    'dirs: for jd in &dirs {
        let dir_path = root_path.join("events").join(&jd.dir_name).join(&jd.job);
        let d = match root.open_path(&jd.comps("events")) {
            Ok(d) => d,
            Err(e) => {
                failed = true;
                warn(&format!(
                    "prodigy {name}: cannot open `{}`: {}",
                    dir_path.display(),
                    crate::error::describe_io(&e)
                ));
                continue;
            }
        };
        for f in event_files(&d) {
            let path = dir_path.join(&f);
            let file = match crate::store::gz::open_read(&d, OsStr::new(&f)) {
                Ok(file) => file,
                Err(e) => {
                    failed = true;
                    warn(&format!(
                        "prodigy {name}: cannot read `{}`: {}",
                        path.display(),
                        crate::error::describe_io(&e)
                    ));
                    continue;
                }
            };
            let reader = Stoppable {
                inner: file,
                stop: &stop,
            };
            let res = read_jsonl(reader, |_, ev| {
                if !filter.wants(&ev) {
                    return;
                }
                match limit {
                    Some(0) => {}
                    Some(n) => {
                        if tail.len() == n {
                            tail.pop_front();
                        }
                        tail.push_back(terminal_safe(&filter.render(&ev)).into_owned());
                    }
                    None => {
                        let mut res = out.write_all(terminal_safe(&filter.render(&ev)).as_bytes());
                        // Sparse matches still show up promptly.
                        if res.is_ok() && last_flush.elapsed() >= FLUSH_EVERY {
                            res = out.flush();
                            last_flush = Instant::now();
                        }
                        if let Err(e) = res {
                            write_err = Some(e);
                            stop.set(true);
                        }
                    }
                }
            });
            match res {
                Ok(st) => {
                    if st.bad > 0 {
                        corrupt.push((path, st.bad, st.first_bad_line.unwrap_or(0)));
                    }
                }
                Err(e) => {
                    failed = true;
                    warn(&format!(
                        "prodigy {name}: cannot read `{}`: {}",
                        path.display(),
                        crate::error::describe_io(&e)
                    ));
                }
            }
            if stop.get() {
                break 'dirs;
            }
        }
    }
    if write_err.is_none() {
        for line in &tail {
            if let Err(e) = out.write_all(line.as_bytes()) {
                write_err = Some(e);
                break;
            }
        }
    }
    if write_err.is_none() {
        if let Err(e) = out.flush() {
            write_err = Some(e);
        }
    }
    // A BufWriter that failed would retry on drop; drop its buffer instead.
    let _ = out.into_parts();
    for (path, n, first) in &corrupt {
        let s = if *n == 1 { "" } else { "s" };
        warn(&format!(
            "prodigy {name}: {n} corrupt line{s} in `{}` (first at line {first})",
            path.display()
        ));
    }
    match write_err {
        Some(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(Exit::Ok),
        Some(e) => Err(write_error(&e)),
        None if failed => Ok(Exit::Failures),
        None => Ok(Exit::Ok),
    }
}

// ---------------------------------------------------------------------------------------------
// events follow
// ---------------------------------------------------------------------------------------------

/// How far one event file has been read.
#[derive(Default)]
struct FileTail {
    /// Bytes consumed from the file (complete lines plus the buffered partial line).
    offset: u64,
    /// The partial last line, not yet ended by `\n`: never printed until it is complete.
    partial: Vec<u8>,
    /// Skipping an overlong line up to its `\n`.
    skipping: bool,
    /// Complete lines seen.
    line_no: u64,
    /// A corrupt line of this file was reported already.
    reported: bool,
    /// A compressed file (`.gz`, which never changes) was read to its end.
    gz_done: bool,
}

/// Milliseconds between two looks at the files.
const POLL_MS: i32 = 200;

/// Run `prodigy events follow JOB_ID`: print the job's events, then new ones as they are
/// appended, until killed or until stdout is closed (exit 0).
///
/// Single-threaded polling every 200 ms. Each file is read from the offset where the last look
/// stopped, only up to its last `\n`; the rest is kept until its line is complete, so a line
/// written in pieces is printed once, whole. New `events-*.jsonl` files (and new directories of
/// the job) are picked up at the next look. A file that shrank is read again from its start.
pub fn follow(a: &Args) -> Result<Exit> {
    let name = "events follow";
    let job = a.ids.first().map(String::as_str).unwrap_or_default();
    let Some((root_path, root)) = open_root(name, a.json)? else {
        return Ok(Exit::Ok);
    };
    if find_job(&root, name, job).is_none() {
        return Ok(Exit::Usage);
    }
    let filter = Filter {
        since: None,
        ..Filter::new(a)
    };
    let mut tails: BTreeMap<(String, String), FileTail> = BTreeMap::new();
    let mut out = io::stdout().lock();
    loop {
        let dirs: Vec<JobDir> = job_dirs(&root, "events", &Scope::All)
            .into_iter()
            .filter(|d| d.job == job)
            .collect();
        for jd in &dirs {
            let Ok(d) = root.open_path(&jd.comps("events")) else {
                continue;
            };
            for f in event_files(&d) {
                // Keyed by the original's name: a file compressed while it is followed is
                // read on from where the original left off, not printed again.
                let key = f.strip_suffix(crate::store::gz::SUFFIX).unwrap_or(&f);
                let tail = tails
                    .entry((jd.dir_name.clone(), key.to_string()))
                    .or_default();
                let path = root_path.join("events").join(&jd.dir_name).join(&jd.job);
                let mut write_err: Option<io::Error> = None;
                let res = read_new(&d, &f, tail, |tail, line| {
                    handle_line(line, tail, &filter, &mut out, &path.join(&f), name).map_err(|e| {
                        write_err = Some(e);
                        io::Error::other("output failed")
                    })
                });
                match write_err {
                    Some(e) if e.kind() == io::ErrorKind::BrokenPipe => return Ok(Exit::Ok),
                    Some(e) => return Err(write_error(&e)),
                    // A compressed file that cannot be read is corrupt: said once, not retried.
                    None if f.ends_with(crate::store::gz::SUFFIX) => {
                        if let Err(e) = res {
                            warn(&format!(
                                "prodigy {name}: cannot read `{}`: {}",
                                path.join(&f).display(),
                                crate::error::describe_io(&e)
                            ));
                        }
                    }
                    // A read error: the file vanished or cannot be read now; try again at the
                    // next look.
                    None => {
                        let _ = res;
                    }
                }
            }
        }
        match out.flush() {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => return Ok(Exit::Ok),
            Err(e) => return Err(write_error(&e)),
        }
        if wait_or_stdout_closed(POLL_MS) {
            return Ok(Exit::Ok);
        }
    }
}

/// Read what was appended to `name` since `tail.offset` and hand each complete line to `each`
/// (an overlong line as a sentinel that does not parse). An error of `each` stops the read.
fn read_new(
    d: &Dir,
    name: &str,
    tail: &mut FileTail,
    each: impl FnMut(&mut FileTail, &[u8]) -> io::Result<()>,
) -> io::Result<()> {
    if crate::store::gz::is_gz(OsStr::new(name)) {
        // Compressed files never grow: read once, past what the original already gave.
        if tail.gz_done {
            return Ok(());
        }
        tail.gz_done = true;
        let mut r = crate::store::gz::open_read(d, OsStr::new(name))?;
        io::copy(&mut (&mut r).take(tail.offset), &mut io::sink())?;
        return read_lines(&mut r, tail, each);
    }
    let mut file = d.open_file(OsStr::new(name), false, false)?;
    let len = file.metadata()?.len();
    if len < tail.offset {
        // Truncated or replaced: start again.
        *tail = FileTail::default();
    }
    if len == tail.offset {
        return Ok(());
    }
    file.seek(SeekFrom::Start(tail.offset))?;
    read_lines(&mut file, tail, each)
}

/// Hand each complete line of `file` (read from `tail.offset` on) to `each`; see [`read_new`].
fn read_lines(
    file: &mut impl Read,
    tail: &mut FileTail,
    mut each: impl FnMut(&mut FileTail, &[u8]) -> io::Result<()>,
) -> io::Result<()> {
    let mut buf = vec![0u8; READ_BUF];
    loop {
        let n = match file.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        tail.offset += n as u64;
        let mut chunk = &buf[..n];
        while let Some(i) = chunk.iter().position(|&b| b == b'\n') {
            let (seg, rest) = (&chunk[..i], &chunk[i + 1..]);
            chunk = rest;
            tail.line_no += 1;
            if tail.skipping {
                tail.skipping = false;
                tail.partial.clear();
                each(tail, b"\0overlong")?;
                continue;
            }
            let line = if tail.partial.is_empty() {
                seg.to_vec()
            } else {
                let mut l = std::mem::take(&mut tail.partial);
                l.extend_from_slice(seg);
                l
            };
            if line.len() > MAX_JSONL_LINE {
                each(tail, b"\0overlong")?;
            } else {
                each(tail, &line)?;
            }
        }
        if !tail.skipping {
            if tail.partial.len() + chunk.len() > MAX_JSONL_LINE {
                tail.partial = Vec::new();
                tail.skipping = true;
            } else {
                tail.partial.extend_from_slice(chunk);
            }
        }
    }
}

/// Print one complete line if it is a wanted event; report the first corrupt line of a file.
fn handle_line(
    line: &[u8],
    tail: &mut FileTail,
    filter: &Filter,
    out: &mut impl Write,
    path: &std::path::Path,
    name: &str,
) -> io::Result<()> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if line.iter().all(u8::is_ascii_whitespace) {
        return Ok(());
    }
    match parse_event_line(line) {
        Ok(ev) => {
            if filter.wants(&ev) {
                out.write_all(terminal_safe(&filter.render(&ev)).as_bytes())?;
            }
        }
        Err(_) => {
            if !tail.reported {
                tail.reported = true;
                warn(&format!(
                    "prodigy {name}: corrupt line {} in `{}` skipped (later corrupt lines of this file are skipped silently)",
                    tail.line_no,
                    path.display()
                ));
            }
        }
    }
    Ok(())
}

/// Sleep `ms` milliseconds; true if stdout was closed meanwhile (or before).
#[cfg(unix)]
fn wait_or_stdout_closed(ms: i32) -> bool {
    let mut p = libc::pollfd {
        fd: libc::STDOUT_FILENO,
        events: 0,
        revents: 0,
    };
    // SAFETY: one valid pollfd for the duration of the call.
    let r = unsafe { libc::poll(&mut p, 1, ms) };
    if r < 0 {
        // EINTR or similar: just wait the interval.
        std::thread::sleep(std::time::Duration::from_millis(ms as u64));
        return false;
    }
    r > 0 && (p.revents & (libc::POLLERR | libc::POLLHUP | libc::POLLNVAL)) != 0
}

/// Sleep `ms` milliseconds; true if stdout was closed meanwhile (never known here).
#[cfg(not(unix))]
fn wait_or_stdout_closed(ms: i32) -> bool {
    std::thread::sleep(std::time::Duration::from_millis(ms as u64));
    false
}
