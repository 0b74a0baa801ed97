//! The repository stands alone and documents its storage: no tracked file points into the
//! shared directory that sits beside the project's own checkouts, every man page is groff-clean
//! and listed in `prodigy(1)`, and `man/prodigy-storage.5` names every record type of
//! `src/store`, every storage type and every file `clean` keeps at the root.

use prodigy::store::{StorageType, AUDIT_LOG, CLEAN_LOCK, TRASH_DIR};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The tracked files (`git ls-files`), or None after a loud message when git or `.git` is
/// missing (a source tarball has no history to ask).
fn tracked_files(test: &str) -> Option<Vec<PathBuf>> {
    if !repo().join(".git").exists() {
        eprintln!("SKIPPED {test}: {} has no .git", repo().display());
        return None;
    }
    let out = match Command::new("git")
        .arg("-C")
        .arg(repo())
        .args(["ls-files", "-z"])
        .env_remove("GIT_DIR")
        .env_remove("GIT_WORK_TREE")
        .env_remove("GIT_INDEX_FILE")
        .output()
    {
        Ok(o) if o.status.success() => o.stdout,
        Ok(o) => panic!(
            "git ls-files failed: {}",
            String::from_utf8_lossy(&o.stderr).trim()
        ),
        Err(e) => {
            eprintln!("SKIPPED {test}: cannot run git: {e}");
            return None;
        }
    };
    Some(
        out.split(|&b| b == 0)
            .filter(|p| !p.is_empty())
            .map(|p| PathBuf::from(String::from_utf8(p.to_vec()).unwrap()))
            .collect(),
    )
}

#[test]
fn no_tracked_file_outside_ci_names_the_shared_directory() {
    let Some(files) = tracked_files("no_tracked_file_outside_ci_names_the_shared_directory") else {
        return;
    };
    assert!(files.iter().any(|f| f == Path::new("Cargo.toml")));
    let needle = concat!("..", "/shared").as_bytes();
    let offenders: Vec<String> = files
        .iter()
        .filter(|f| !f.starts_with(".ci"))
        .filter(|f| {
            // A tracked file deleted in the work tree has nothing to say.
            fs::read(repo().join(f))
                .map(|b| b.windows(needle.len()).any(|w| w == needle))
                .unwrap_or(false)
        })
        .map(|f| f.display().to_string())
        .collect();
    assert!(
        offenders.is_empty(),
        "these tracked files name `{}`, which a clone of this repository does not have; \
         point them at man/prodigy-storage.5, man/prodigy-clean.1, DESIGN.md or \
         tests/fixtures/ instead: {offenders:#?}",
        String::from_utf8_lossy(needle)
    );
}

fn man_pages() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(repo().join("man"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.extension()
                .is_some_and(|e| e.to_str().is_some_and(|e| e.len() == 1))
        })
        .collect();
    v.sort();
    v
}

#[test]
fn every_man_page_is_groff_clean() {
    let pages = man_pages();
    assert!(pages.iter().any(|p| p.ends_with("prodigy-storage.5")));
    for page in pages {
        let out = match Command::new("groff")
            .args(["-ww", "-man", "-Tutf8", "-z"])
            .arg(&page)
            .output()
        {
            Ok(o) => o,
            Err(e) => {
                eprintln!("SKIPPED: groff missing ({e}); man pages not checked");
                return;
            }
        };
        assert!(
            out.status.success() && out.stderr.is_empty(),
            "groff -ww -man on {}: {}",
            page.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn every_man_page_is_in_the_see_also_of_prodigy_1() {
    let main = fs::read_to_string(repo().join("man/prodigy.1")).unwrap();
    let see_also = &main[main.find(".SH SEE ALSO").expect("SEE ALSO")..];
    for page in man_pages() {
        let name = page.file_stem().unwrap().to_str().unwrap();
        let section = page.extension().unwrap().to_str().unwrap();
        if name == "prodigy" {
            continue;
        }
        let cite = format!("\\fB{}\\fR({section})", name.replace('-', "\\-"));
        assert!(
            see_also.contains(&cite),
            "man/prodigy.1 SEE ALSO lacks {cite}: add it in src/cli/mod.rs and run scripts/gen-man.sh"
        );
    }
}

/// The text of a roff page with font changes and escapes removed and lines joined, so that a
/// phrase is found whatever its fonts and line breaks. Requests are dropped, except the
/// arguments of those that print text (headings, bold and italic lines).
fn page_text(roff: &str) -> String {
    let mut out = String::new();
    for line in roff.lines() {
        let text = if let Some(rest) = line.strip_prefix('.') {
            let (req, args) = rest.split_once(' ').unwrap_or((rest, ""));
            match req {
                "SH" | "SS" | "B" | "I" | "BR" | "IR" | "TP" => args.replace('"', ""),
                _ => continue,
            }
        } else {
            line.to_string()
        };
        out.push_str(&text);
        out.push(' ');
    }
    let out = out
        .replace("\\fB", "")
        .replace("\\fI", "")
        .replace("\\fR", "")
        .replace("\\-", "-")
        .replace("\\(en", "–")
        .replace("\\(bu", "")
        .replace("\\&", "")
        .replace("\\e", "\\");
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// What the page must say about each record type of `src/store`: phrases of its place and its
/// fields. A new record type fails [`storage_page_names_every_record_type_of_the_store`] until
/// it is documented in man/prodigy-storage.5 and listed here.
const RECORD_TYPES: &[(&str, &[&str])] = &[
    ("Extra", &["Fields a reader does not know are kept"]),
    ("Timestamp", &["RFC 3339", "UTC"]),
    ("DurationValue", &["{\"secs\": u64, \"nanos\": u32}", "[secs, nanos]"]),
    (
        "CheckpointKind",
        &[
            "setup-checkpoint.json",
            "map-checkpoint-{ts}.json",
            "reduce-checkpoint-v1-{ts}.json",
        ],
    ),
    (
        "SessionStatus",
        &["One of Initializing, Running, Paused, Completed, Failed, Cancelled"],
    ),
    ("SessionOwner", &["metadata.owner", "\"heartbeat_at\": time"]),
    (
        "MapReduceData",
        &["mapreduce_data", "processed_items", "agent_count"],
    ),
    ("SessionRecord", &["Session record sessions/{session_id}.json"]),
    (
        "EventLine",
        &[
            "Event lines events/{repo}/{job_id}/events-{ts}.jsonl",
            "\"correlation_id\"",
        ],
    ),
    (
        "DlqFile",
        &["Dead letter queue dlq/{repo}/{job_id}/dlq-items.json"],
    ),
    ("DlqItem", &["item_id string", "work_item any"]),
    ("DlqFailure", &["json_log_location"]),
    (
        "LegacyDlqItem",
        &[
            "0.4.4 DLQ item dlq/{repo}/{job_id}/mapreduce/dlq/{job_id}/items/{item_id}.json",
            "reprocess_eligible",
            "manual_review_required",
        ],
    ),
    ("LegacyDlqFailure", &["attempt_number", "error_message"]),
    (
        "LegacyDlqIndex",
        &["0.4.4 DLQ index dlq/{repo}/{job_id}/mapreduce/dlq/{job_id}/index.json"],
    ),
    (
        "SetupCheckpoint",
        &["Setup checkpoint", "{\"phase\": \"setup\""],
    ),
    (
        "MapCheckpoint",
        &["Map checkpoint", "in_progress_items", "pending_items"],
    ),
    (
        "MapLogEntry",
        &[
            "Map log state/{repo}/mapreduce/jobs/{job_id}/map-log.jsonl",
            "map_log_bytes",
            "\"agent_result\": object",
        ],
    ),
    (
        "ReduceCheckpoint",
        &["Reduce checkpoint", "\"completed_steps\":"],
    ),
    ("WorkItem", &["{\"id\": string, \"data\": any}"]),
    ("CompletedWorkItem", &["{work_item, result, completed_at}"]),
    ("FailedWorkItem", &["{work_item, error, failed_at, retry_count}"]),
    (
        "WorkItemProgress",
        &["{work_item, agent_id, started_at, last_update}"],
    ),
    (
        "AgentResult",
        &["{item_id, status, output, commits, duration, error, worktree_path, branch_name}"],
    ),
    ("JobPhase", &["setup, map, reduce or complete"]),
    ("JobStatus", &["running, completed, failed or cancelled"]),
    (
        "JobState",
        &["Job state state/{repo}/mapreduce/jobs/{job_id}/job-state.json"],
    ),
    (
        "LegacyExecStatus",
        &["Running, Paused, Completed, Failed or Interrupted"],
    ),
    ("LegacyExecutionState", &["execution_state"]),
    (
        "LegacyWorkflowCheckpoint",
        &["0.4.4 workflow checkpoint state/{session_id}/checkpoints/{workflow_id}.checkpoint.json"],
    ),
    (
        "SessionJobMapping",
        &["mapping state/{repo}/mappings/{session_id}.json and {job_id}.json"],
    ),
    (
        "ResumeLockInfo",
        &["Resume lock resume_locks/{job_id}.lock", "\"process_id\": u32"],
    ),
    (
        "OrphanEntry",
        &["{\"path\": string, \"agent_id\", \"item_id\", \"failed_at\": time, \"error\": string}"],
    ),
    (
        "OrphanRegistry",
        &["Orphaned-worktree registry orphaned_worktrees/{repo}/{job_id}.json"],
    ),
    (
        "LegacyWorktreeMeta",
        &["0.4.4 worktree metadata worktrees/{repo}/.metadata/{name}.json"],
    ),
];

/// Public types of `src/store` that are not stored: what a reader returns.
const NOT_STORED: &[(&str, &str)] = &[
    ("ParseError", "why a record could not be read"),
    (
        "JsonlStats",
        "counts of good and corrupt lines a reader saw",
    ),
    ("MapLog", "what a reader saw in a map log's lines"),
];

/// The record types of `src/store`: every public type of `records/` (the modules that own the
/// stored formats) and every public type elsewhere under `src/store` that derives
/// `Deserialize` (a record module added beside it).
fn store_record_types() -> Vec<(String, PathBuf)> {
    let mut files = Vec::new();
    let mut dirs = vec![repo().join("src/store")];
    while let Some(d) = dirs.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                dirs.push(p);
            } else if p.extension().is_some_and(|e| e == "rs") {
                files.push(p);
            }
        }
    }
    files.sort();
    let mut types = Vec::new();
    for f in files {
        let is_records = f.starts_with(repo().join("src/store/records"));
        let src = fs::read_to_string(&f).unwrap();
        let mut derives_deserialize = false;
        for line in src.lines() {
            let l = line.trim_start();
            if l.starts_with("#[cfg(test)]") && is_records {
                break; // the tests' own helper types
            }
            if l.starts_with("#[derive(") {
                derives_deserialize = l.contains("Deserialize");
                continue;
            }
            let rest = ["pub struct ", "pub enum ", "pub type "]
                .iter()
                .find_map(|k| l.strip_prefix(k));
            if let Some(rest) = rest {
                let name: String = rest
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                // `pub struct $name;` inside a macro: its expansions are the checkpoints' phase
                // tags, documented with their checkpoints.
                if !name.is_empty() && (is_records || derives_deserialize) {
                    types.push((name, f.clone()));
                }
            }
            if !l.starts_with("#[") && !l.starts_with("///") {
                derives_deserialize = false;
            }
        }
    }
    types
}

#[test]
fn storage_page_names_every_record_type_of_the_store() {
    let text = page_text(&fs::read_to_string(repo().join("man/prodigy-storage.5")).unwrap());
    let types = store_record_types();
    assert!(types.len() >= 30, "parser found only {types:?}");
    let mut problems = Vec::new();
    for (name, file) in &types {
        if NOT_STORED.iter().any(|(n, _)| n == name) {
            continue;
        }
        let Some((_, phrases)) = RECORD_TYPES.iter().find(|(n, _)| n == name) else {
            problems.push(format!(
                "{name} ({}) is not in RECORD_TYPES: document it in man/prodigy-storage.5 \
                 and list what the page says about it in tests/cli/repo.rs",
                file.strip_prefix(repo()).unwrap_or(file).display()
            ));
            continue;
        };
        for p in *phrases {
            if !text.contains(p) {
                problems.push(format!("{name}: man/prodigy-storage.5 does not say `{p}`"));
            }
        }
    }
    // A type listed here that the store no longer has is a stale entry.
    let listed = RECORD_TYPES.iter().map(|(n, _)| n);
    for n in listed.chain(NOT_STORED.iter().map(|(n, _)| n)) {
        if !types.iter().any(|(t, _)| t == n) {
            problems.push(format!(
                "{n} is listed in tests/cli/repo.rs but not in src/store"
            ));
        }
    }
    assert!(problems.is_empty(), "{problems:#?}");
}

#[test]
fn storage_page_names_every_storage_type_and_root_file() {
    let text = page_text(&fs::read_to_string(repo().join("man/prodigy-storage.5")).unwrap());
    let layout = &text[text.find("CANONICAL LAYOUT").unwrap()..];
    for t in StorageType::ALL {
        // In the layout, and as one of the types `stats` and `sessions show` count.
        assert!(layout.contains(&format!(" {}/", t.dir())), "{}/", t.dir());
        assert!(
            layout.contains(&format!("{} each", t.word()))
                || layout.contains(&format!("{} {}/", t.word(), t.dir())),
            "storage type {} is not described",
            t.word()
        );
    }
    for name in [
        AUDIT_LOG.to_string(),
        format!("{AUDIT_LOG}.1"),
        prodigy::clean::retention::FILE.to_string(),
        format!("{TRASH_DIR}/"),
        format!("resume_locks/{CLEAN_LOCK}"),
        "orphaned_worktrees/{repo}/{job_id}.json".to_string(),
        "worktrees/{repo}/{session_id}/agent-{item}/".to_string(),
        "logs/{repo}/".to_string(),
        "logs/claude-streaming/".to_string(),
        "state/reduce_checkpoints/".to_string(),
        ".{name}.tmp-{pid}-{nanos}-{counter}".to_string(),
    ] {
        assert!(
            text.contains(&name),
            "man/prodigy-storage.5 does not name {name}"
        );
    }
    for section in [
        "CRASH SAFETY",
        "LOCKS",
        "PROTECTION CLASSES",
        "RUN AND RESUME RECORDS",
        "LAYOUT WRITTEN BY PRODIGY 0.4.4",
        "NAMES",
        "ENCODINGS",
    ] {
        assert!(
            text.contains(&format!(" {section} ")),
            "no {section} section"
        );
    }
    // The run records of `prodigy run` (its session record fields).
    for field in [
        "metadata.worktree = {path, branch, base_commit, original_branch, repository}",
        "workflow_data = {workflow_name, workflow_path, workflow_hash, completed_steps, current_step, variables}",
    ] {
        assert!(text.contains(field), "run records: {field}");
    }
}
