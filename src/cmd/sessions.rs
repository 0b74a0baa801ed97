//! `prodigy sessions ls|show|rm`: sessions with their class and evidence (safety §1), what each
//! owns, and the explicit way to delete one — resumable ones too, never an active one.

use super::table;
use crate::clean::classify::{Class, ACTIVITY_WINDOW};
use crate::clean::inventory::{ItemKind, MAX_RECORD};
use crate::clean::{in_scope, Engine, Options};
use crate::cli::{Args, CleanArgs, ScopeArg};
use crate::cmd::clean::human_bytes;
use crate::error::{Error, Exit, Result};
use crate::git::Git;
use crate::store::records::{self, SessionRecord};
use std::collections::BTreeSet;
use std::io::Write as _;

/// Build an engine over the root (all types, default retention) and hand it to `f`; a missing
/// root prints "nothing is stored" and exits 0. `estimate` as [`Options::estimate`].
pub(crate) fn with_engine(
    name: &str,
    scope: &ScopeArg,
    estimate: bool,
    f: impl FnOnce(&mut Engine<'_>, &str) -> Result<Exit>,
) -> Result<Exit> {
    let (wanted, opened) = super::open_store(name)?;
    let Some((root_path, root)) = opened else {
        super::print(&format!(
            "prodigy {name}: nothing is stored at `{}`\n",
            wanted.display()
        ))?;
        return Ok(Exit::Ok);
    };
    let git = Git::default();
    let (scope, note) = super::resolve_scope(scope, &git);
    let opts = Options {
        scope,
        estimate,
        ..Options::default()
    };
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let mut eng = Engine::new(&root, &root_path, &git, now, &opts);
    f(&mut eng, &note)
}

/// `3d` style age from seconds.
pub(crate) fn age_text(secs: Option<i64>) -> String {
    match secs {
        None => "-".into(),
        Some(s) if s < 3600 => format!("{}m", s.max(0) / 60),
        Some(s) if s < 86_400 => format!("{}h", s / 3600),
        Some(s) => format!("{}d", s / 86_400),
    }
}

/// One session's summary row.
struct Summary {
    id: String,
    session_type: String,
    status: String,
    class: Class,
    evidence: String,
    repo: Option<String>,
    age: Option<i64>,
    bytes: u64,
}

fn summaries(eng: &Engine<'_>) -> Vec<Summary> {
    let mut bytes: std::collections::HashMap<&str, u64> = Default::default();
    for it in &eng.inv.items {
        if let Some(o) = &it.owner {
            *bytes.entry(o.as_str()).or_default() += it.bytes;
        }
    }
    eng.inv
        .sessions
        .values()
        .filter(|s| in_scope(&eng.opts.scope, &eng.inv.items[s.item]))
        .map(|s| {
            let v = &eng.verdicts[&s.id];
            let (session_type, status) = match &s.record {
                Ok(r) => (r.session_type.to_string(), r.status.as_str().to_string()),
                Err(_) => ("-".into(), "-".into()),
            };
            Summary {
                id: s.id.clone(),
                session_type,
                status,
                class: v.class,
                evidence: v.evidence.clone(),
                repo: s.repo.clone(),
                age: v.last_activity.map(|l| (eng.now - l).max(0)),
                bytes: bytes.get(s.id.as_str()).copied().unwrap_or(0),
            }
        })
        .collect()
}

/// Run `prodigy sessions ls`.
pub fn ls(a: &Args) -> Result<Exit> {
    with_engine("sessions ls", &a.scope, false, |eng, note| {
        let mut rows = summaries(eng);
        if let Some(st) = &a.status {
            rows.retain(|r| r.status.eq_ignore_ascii_case(st));
        }
        if let Some(c) = &a.class {
            rows.retain(|r| r.class.word().eq_ignore_ascii_case(c));
        }
        // The exact command that continues each resumable session (its record is read again,
        // for those rows only).
        let resume: Vec<Option<String>> = rows
            .iter()
            .map(|r| {
                if matches!(r.class, Class::Resumable | Class::Stale) {
                    resume_hint(r.class, read_record(eng, &r.id).ok().as_ref(), &r.id)
                } else {
                    None
                }
            })
            .collect();
        if a.json {
            let v = serde_json::json!({
                "command": "sessions ls",
                "root": eng.root_path,
                "scope": note,
                "sessions": rows.iter().zip(&resume).map(|(r, res)| serde_json::json!({
                    "id": r.id, "session_type": r.session_type, "status": r.status,
                    "class": r.class.word(), "evidence": r.evidence, "repository": r.repo,
                    "age_seconds": r.age, "bytes": r.bytes, "resume": res,
                })).collect::<Vec<_>>(),
            });
            return super::print(&format!(
                "{}\n",
                serde_json::to_string_pretty(&v).expect("json")
            ))
            .map(|_| Exit::Ok);
        }
        let cells: Vec<Vec<String>> = rows
            .iter()
            .zip(&resume)
            .map(|(r, res)| {
                vec![
                    r.id.clone(),
                    r.session_type.clone(),
                    r.status.clone(),
                    r.class.word().to_string(),
                    r.repo.clone().unwrap_or_else(|| "-".into()),
                    age_text(r.age),
                    human_bytes(r.bytes),
                    r.evidence.replace(['\t', '\n'], " "),
                    match res {
                        Some(c) if c.starts_with("prodigy ") => c.clone(),
                        Some(_) => "0.4.4: not resumable here".into(),
                        None => "-".into(),
                    },
                ]
            })
            .collect();
        let text = table::render(
            &[
                "ID", "TYPE", "STATUS", "CLASS", "REPO", "AGE", "SIZE", "EVIDENCE", "RESUME",
            ],
            &cells,
        );
        super::print(&text).map(|_| Exit::Ok)
    })
}

/// The session an id names: a session id, or a job id through the mappings (seed 004).
fn resolve(eng: &Engine<'_>, id: &str) -> Result<String> {
    if eng.inv.sessions.contains_key(id) {
        return Ok(id.to_string());
    }
    if let Some(s) = eng
        .inv
        .job_owner
        .get(id)
        .filter(|s| eng.inv.sessions.contains_key(*s))
    {
        return Ok(s.clone());
    }
    if let Some(s) = eng
        .inv
        .sessions
        .values()
        .find(|s| s.jobs.iter().any(|j| j == id))
    {
        return Ok(s.id.clone());
    }
    Err(Error::usage(format!(
        "no session or job `{id}` under `{}`; see `prodigy sessions ls`",
        eng.root_path.display()
    )))
}

/// `sessions/{sid}.json` read again and parsed (storage-format §4.1), as a JSON value.
fn read_record(eng: &Engine<'_>, sid: &str) -> std::result::Result<serde_json::Value, String> {
    let name = format!("{sid}.json");
    let bytes = eng
        .root
        .open_dir(std::ffi::OsStr::new("sessions"))
        .and_then(|d| d.read_file(std::ffi::OsStr::new(&name), MAX_RECORD))
        .map_err(|e| crate::error::describe_io(&e))?;
    let r: SessionRecord = records::parse(&bytes).map_err(|e| e.to_string())?;
    Ok(serde_json::to_value(r).unwrap_or_default())
}

/// How a session is continued (run.md §6), for `sessions show`: the exact command for a
/// resumable or stale session that `prodigy run` wrote (its record names its repository), a note
/// for a Prodigy 0.4.4 one, nothing for the others.
fn resume_hint(class: Class, record: Option<&serde_json::Value>, sid: &str) -> Option<String> {
    if !matches!(class, Class::Resumable | Class::Stale) {
        return None;
    }
    let r = record?;
    let ours = r
        .pointer("/metadata/worktree/repository")
        .is_some_and(|v| v.is_string());
    if !ours {
        return Some(
            "written by Prodigy 0.4.4; prodigy cannot continue it (no repository or worktree recorded)"
                .into(),
        );
    }
    let id = r
        .pointer("/mapreduce_data/job_id")
        .and_then(|v| v.as_str())
        .unwrap_or(sid);
    Some(format!("prodigy resume {id}"))
}

/// Run `prodigy sessions show ID`.
pub fn show(a: &Args) -> Result<Exit> {
    with_engine("sessions show", &ScopeArg::AllRepos, false, |eng, _| {
        let sid =
            resolve(eng, &a.ids[0]).map_err(|e| Error::usage(format!("sessions show: {e}")))?;
        let s = &eng.inv.sessions[&sid];
        let v = eng.verdicts[&sid].clone();
        let jobs = s.jobs.clone();
        let repo = s.repo.clone();
        // The scan keeps only the facts it classifies by; show the whole record as it is now.
        let record = s
            .record
            .as_ref()
            .map_err(Clone::clone)
            .and_then(|_| read_record(eng, &sid));
        let owned: Vec<usize> = (0..eng.inv.items.len())
            .filter(|&i| eng.inv.items[i].owner.as_deref() == Some(sid.as_str()))
            .collect();
        let mut items = Vec::new();
        for i in owned {
            let mut note = String::new();
            let it = &eng.inv.items[i];
            let (ty, path, bytes, age) = (
                it.ty,
                it.rel(),
                it.bytes,
                it.newest.map(|n| (eng.now - n).max(0)),
            );
            let kind = it.kind.clone();
            if let Some(live) = &it.rare().lock_live {
                note = format!("live: {live}");
            } else if kind == ItemKind::Lock {
                note = "stale".into();
            }
            if let Some(r) = &it.rare().resumable {
                note = r.clone();
            }
            if kind == ItemKind::Worktree {
                let g = it.git.clone().unwrap_or_default();
                let mut parts = Vec::new();
                if let Some(b) = g.entry.as_ref().and_then(|e| e.branch.clone()) {
                    parts.push(format!("branch {b}"));
                }
                if g.entry.as_ref().is_some_and(|e| e.locked) {
                    parts.push("locked".into());
                }
                if g.entry.is_some() {
                    match eng.dirty(i) {
                        Ok(l) if !l.is_empty() => parts.push(format!("{} changed files", l.len())),
                        Ok(_) => parts.push("clean".into()),
                        Err(e) => parts.push(e),
                    }
                }
                if let Some(e) = g.error {
                    parts.push(e);
                }
                note = parts.join(", ");
            }
            items.push((ty, path, bytes, age, note));
        }
        let total: u64 = items.iter().map(|i| i.2).sum();
        let resume = resume_hint(v.class, record.as_ref().ok(), &sid);
        if a.json {
            let j = serde_json::json!({
                "command": "sessions show",
                "session": sid,
                "resume": resume,
                "record": record.as_ref().ok(),
                "record_error": record.as_ref().err(),
                "class": v.class.word(),
                "evidence": v.evidence,
                "repository": repo,
                "jobs": jobs,
                "last_activity_seconds": v.last_activity.map(|l| (eng.now - l).max(0)),
                "bytes": total,
                "items": items.iter().map(|(t, p, b, a, n)| serde_json::json!({
                    "type": t.word(), "path": p, "bytes": b, "age_seconds": a, "note": n,
                })).collect::<Vec<_>>(),
            });
            return super::print(&format!(
                "{}\n",
                serde_json::to_string_pretty(&j).expect("json")
            ))
            .map(|_| Exit::Ok);
        }
        let mut o = String::new();
        use std::fmt::Write as _;
        writeln!(o, "session {sid}").unwrap();
        match &record {
            Ok(r) => {
                for k in [
                    "session_type",
                    "status",
                    "started_at",
                    "updated_at",
                    "completed_at",
                    "error",
                ] {
                    if let Some(val) = r.get(k).filter(|v| !v.is_null()) {
                        writeln!(
                            o,
                            "  {:<14}{}",
                            format!("{k}:"),
                            val.as_str()
                                .map(str::to_string)
                                .unwrap_or_else(|| val.to_string())
                        )
                        .unwrap();
                    }
                }
            }
            Err(e) => writeln!(o, "  record:       unreadable ({e})").unwrap(),
        }
        writeln!(o, "  {:<14}{} — {}", "class:", v.class.word(), v.evidence).unwrap();
        if let Some(r) = &resume {
            writeln!(o, "  {:<14}{r}", "resume:").unwrap();
        }
        writeln!(
            o,
            "  {:<14}{}",
            "repository:",
            repo.as_deref().unwrap_or("-")
        )
        .unwrap();
        writeln!(
            o,
            "  {:<14}{}",
            "jobs:",
            if jobs.is_empty() {
                "-".to_string()
            } else {
                jobs.join(", ")
            }
        )
        .unwrap();
        writeln!(
            o,
            "  {:<14}{} ago; {} owned",
            "activity:",
            age_text(v.last_activity.map(|l| eng.now - l)),
            human_bytes(total)
        )
        .unwrap();
        let cells: Vec<Vec<String>> = items
            .iter()
            .map(|(t, p, b, a, n)| {
                vec![
                    t.word().to_string(),
                    p.clone(),
                    human_bytes(*b),
                    age_text(*a),
                    n.clone(),
                ]
            })
            .collect();
        o.push('\n');
        o.push_str(&table::render_for(
            true,
            &["TYPE", "PATH", "SIZE", "AGE", "NOTE"],
            &cells,
        ));
        super::print(&o).map(|_| Exit::Ok)
    })
}

/// Run `prodigy sessions rm ID...`: resolve the ids, refuse active sessions, then delete what
/// the others own through the clean engine (same safety rules, confirmation and audit log).
pub fn rm(a: &Args) -> Result<Exit> {
    let mut targets = BTreeSet::new();
    let mut refused = 0;
    let r = with_engine("sessions rm", &ScopeArg::AllRepos, false, |eng, _| {
        for id in &a.ids {
            let sid = resolve(eng, id).map_err(|e| Error::usage(format!("sessions rm: {e}")))?;
            let v = &eng.verdicts[&sid];
            let recent = v
                .last_activity
                .is_some_and(|l| eng.now - l < ACTIVITY_WINDOW);
            if v.class == Class::Active || (v.class == Class::Unknown && recent) {
                refused += 1;
                let _ = writeln!(
                    std::io::stderr(),
                    "prodigy sessions rm: session {sid} is {} ({}); not removed — stop it first",
                    if v.class == Class::Active {
                        "active"
                    } else {
                        "unreadable and recently active"
                    },
                    v.evidence
                );
                continue;
            }
            targets.insert(sid);
        }
        Ok(Exit::Ok)
    })?;
    if r != Exit::Ok || targets.is_empty() {
        return Ok(if refused > 0 { Exit::Failures } else { r });
    }
    let args = CleanArgs {
        older_than: Some(0),
        scope: ScopeArg::AllRepos,
        dry_run: a.dry_run,
        force: a.force,
        json: a.json,
        quiet: a.quiet,
        only_owners: Some(targets),
        explicit: true,
        ..CleanArgs::default()
    };
    let code = super::clean::run(&args, "sessions rm")?;
    Ok(if refused > 0 { Exit::Failures } else { code })
}
