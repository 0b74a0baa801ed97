//! Tests over every record file of the 0.4.4 fixture tree
//! (`tests/fixtures/real-0.4.4/tree.tar.gz`): each file parses with the type of its place, and
//! round-trips preserving unknown fields.

use super::tests::round_trip;
use super::*;
use std::io::Cursor;
use std::path::{Path, PathBuf};

/// A private copy of the 0.4.4 fixture (`tests/fixtures/real-0.4.4/tree.tar.gz`), extracted
/// for one test and removed when dropped. Private, not the fixed `/tmp/prodigy-corpus` that
/// the integration tests extract, clean and re-extract: these tests only read, and must not
/// see a tree another test is cleaning.
struct Corpus {
    dir: PathBuf,
}

impl Corpus {
    /// Extract the fixture; `None` (after a loud message) only when `tar` cannot run. A
    /// missing tarball fails: it is part of the repository.
    fn extract(test: &str) -> Option<Corpus> {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let tar =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/real-0.4.4/tree.tar.gz");
        assert!(tar.is_file(), "{} is missing", tar.display());
        let dir = std::env::temp_dir().join(format!(
            "prodigy-records-{test}-{}-{}",
            std::process::id(),
            N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let c = Corpus { dir };
        match std::process::Command::new("tar")
            .arg("-C")
            .arg(&c.dir)
            .arg("-xzf")
            .arg(&tar)
            .status()
        {
            Ok(st) => assert!(st.success(), "tar -xzf {} failed", tar.display()),
            Err(e) => {
                eprintln!("\n*** SKIPPED {test}: cannot run `tar` ({e}) ***\n");
                return None;
            }
        }
        Some(c)
    }

    /// The extracted `.prodigy` root.
    fn root(&self) -> PathBuf {
        self.dir.join("tmp/prodigy-corpus/home/.prodigy")
    }
}

impl Drop for Corpus {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

// ------------------------------------------------------------------ corpus

/// What a file of the 0.4.4 fixture tree is, decided by its place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    Session,
    LegacyWorkflowCheckpoint,
    LegacyWorktreeMeta,
    LegacyDlqItem,
    LegacyDlqIndex,
    DlqFile,
    ResumeLock,
    Events,
    Mapping,
    JobState,
    Checkpoint(CheckpointKind),
    Orphans,
    /// A `.json`/`.lock` file in no known place: the test fails on these.
    UnknownJson,
    /// Not a record (logs, `.gitignore`, `cleanup.log`, …).
    Other,
}

fn classify(rel: &Path) -> Place {
    let parts: Vec<&str> = rel
        .iter()
        .map(|c| c.to_str().unwrap_or("\u{fffd}"))
        .collect();
    let name = *parts.last().unwrap();
    let n = parts.len();
    match parts[0] {
        "sessions" if n == 2 && name.ends_with(".json") => Place::Session,
        "resume_locks" if n == 2 && name.ends_with(".lock") => Place::ResumeLock,
        "events" if name.ends_with(".jsonl") => Place::Events,
        "orphaned_worktrees" if n == 3 && name.ends_with(".json") => Place::Orphans,
        "worktrees" if n == 4 && parts[2] == ".metadata" && name.ends_with(".json") => {
            Place::LegacyWorktreeMeta
        }
        "dlq" if name == "dlq-items.json" => Place::DlqFile,
        "dlq" if n >= 2 && parts[n - 2] == "items" && name.ends_with(".json") => {
            Place::LegacyDlqItem
        }
        "dlq" if name == "index.json" => Place::LegacyDlqIndex,
        "state" if n == 4 && parts[2] == "checkpoints" && name.ends_with(".checkpoint.json") => {
            Place::LegacyWorkflowCheckpoint
        }
        "state" if n == 4 && parts[2] == "mappings" && name.ends_with(".json") => Place::Mapping,
        "state" if n == 6 && parts[2] == "mapreduce" && parts[3] == "jobs" => {
            if name == "job-state.json" {
                Place::JobState
            } else if let Some((k, _)) = checkpoint_kind_of_file_name(name) {
                Place::Checkpoint(k)
            } else if name.ends_with(".json") {
                Place::UnknownJson
            } else {
                Place::Other
            }
        }
        _ if name.ends_with(".json") || name.ends_with(".lock") => Place::UnknownJson,
        _ => Place::Other,
    }
}

/// Every file of the extracted 0.4.4 tree at `root` with its place, skipping the git
/// checkouts under `worktrees/*/` except `.metadata/`. Never follows symlinks; never writes.
fn corpus_files(root: &Path) -> Vec<(PathBuf, Place)> {
    let mut out = Vec::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let mut entries: Vec<_> = std::fs::read_dir(root.join(&rel))
            .unwrap()
            .map(|e| e.unwrap())
            .collect();
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let child = rel.join(e.file_name());
            let ft = e.file_type().unwrap();
            if ft.is_dir() {
                let depth = child.iter().count();
                let in_worktrees = child.starts_with("worktrees");
                // worktrees/{repo}/{x}: only descend into .metadata
                if in_worktrees && depth == 3 && e.file_name() != ".metadata" {
                    continue;
                }
                stack.push(child);
            } else if ft.is_file() {
                let place = classify(&child);
                out.push((root.join(&child), place));
            }
        }
    }
    out
}

fn parse_as(place: Place, bytes: &[u8]) -> Result<(), ParseError> {
    match place {
        Place::Session => parse::<SessionRecord>(bytes).map(drop),
        Place::LegacyWorkflowCheckpoint => parse::<LegacyWorkflowCheckpoint>(bytes).map(drop),
        Place::LegacyWorktreeMeta => parse::<LegacyWorktreeMeta>(bytes).map(drop),
        Place::LegacyDlqItem => parse::<LegacyDlqItem>(bytes).map(drop),
        Place::LegacyDlqIndex => parse::<LegacyDlqIndex>(bytes).map(drop),
        Place::DlqFile => parse::<DlqFile>(bytes).map(drop),
        Place::ResumeLock => parse::<ResumeLockInfo>(bytes).map(drop),
        Place::Mapping => parse::<SessionJobMapping>(bytes).map(drop),
        Place::JobState => parse::<JobState>(bytes).map(drop),
        Place::Checkpoint(CheckpointKind::Setup) => parse::<SetupCheckpoint>(bytes).map(drop),
        Place::Checkpoint(CheckpointKind::Map) => parse::<MapCheckpoint>(bytes).map(drop),
        Place::Checkpoint(CheckpointKind::Reduce) => parse::<ReduceCheckpoint>(bytes).map(drop),
        Place::Orphans => parse::<OrphanRegistry>(bytes).map(drop),
        Place::Events => {
            let st = read_jsonl(Cursor::new(bytes), |_, _| {}).unwrap();
            if st.bad == 0 && !st.torn_tail {
                Ok(())
            } else {
                Err(ParseError::no_position(format!("{st:?}")))
            }
        }
        Place::UnknownJson | Place::Other => Ok(()),
    }
}

fn round_trip_as(place: Place, bytes: &[u8]) -> Result<(), String> {
    match place {
        Place::Session => round_trip::<SessionRecord>(bytes),
        Place::LegacyWorkflowCheckpoint => round_trip::<LegacyWorkflowCheckpoint>(bytes),
        Place::LegacyWorktreeMeta => round_trip::<LegacyWorktreeMeta>(bytes),
        Place::LegacyDlqItem => round_trip::<LegacyDlqItem>(bytes),
        Place::LegacyDlqIndex => round_trip::<LegacyDlqIndex>(bytes),
        Place::ResumeLock => round_trip::<ResumeLockInfo>(bytes),
        _ => Ok(()),
    }
}

#[test]
fn corpus_every_file_parses_with_the_type_of_its_place() {
    let Some(c) = Corpus::extract("every-file-parses") else {
        return;
    };
    let files = corpus_files(&c.root());
    let mut counts = std::collections::BTreeMap::<String, usize>::new();
    let mut empty_sessions = Vec::new();
    let mut failures = Vec::new();
    for (path, place) in &files {
        *counts.entry(format!("{place:?}")).or_default() += 1;
        assert_ne!(
            *place,
            Place::UnknownJson,
            "unclassified file {}",
            path.display()
        );
        let bytes = std::fs::read(path).unwrap();
        if *place == Place::Session && bytes.is_empty() {
            let e = parse::<SessionRecord>(&bytes).unwrap_err();
            assert_eq!(e.message, "empty file");
            assert_eq!(e.to_string(), "line 0, column 0: empty file");
            empty_sessions.push(path.file_name().unwrap().to_owned());
            continue;
        }
        if let Err(e) = parse_as(*place, &bytes) {
            failures.push(format!("{} as {place:?}: {e}", path.display()));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
    assert_eq!(empty_sessions.len(), 4, "{empty_sessions:?}");
    // Sanity: the walk found the fixture's record files.
    assert_eq!(counts.get("Session"), Some(&19), "{counts:?}");
    assert_eq!(
        counts.get("LegacyWorkflowCheckpoint"),
        Some(&10),
        "{counts:?}"
    );
    assert_eq!(counts.get("LegacyWorktreeMeta"), Some(&24), "{counts:?}");
    assert_eq!(counts.get("LegacyDlqItem"), Some(&2), "{counts:?}");
    assert_eq!(counts.get("LegacyDlqIndex"), Some(&1), "{counts:?}");
    assert_eq!(counts.get("ResumeLock"), Some(&1), "{counts:?}");
    assert_eq!(counts.get("Events"), Some(&30), "{counts:?}");
}

#[test]
fn corpus_records_round_trip_preserving_unknown_fields() {
    let Some(c) = Corpus::extract("round-trip") else {
        return;
    };
    let files = corpus_files(&c.root());
    let mut n = 0;
    for (path, place) in &files {
        let bytes = std::fs::read(path).unwrap();
        if bytes.is_empty() {
            continue;
        }
        if let Err(e) = round_trip_as(*place, &bytes) {
            panic!("{}: {e}", path.display());
        }
        n += 1;
    }
    assert!(n >= 50, "only {n} files round-tripped");
}

#[test]
fn corpus_session_fields_and_timestamps() {
    let Some(c) = Corpus::extract("session-fields") else {
        return;
    };
    let p = c.root().join("sessions/workflow-1795238090597.json");
    let bytes = std::fs::read(p).unwrap();
    let s: SessionRecord = parse(&bytes).unwrap();
    assert_eq!(s.status, SessionStatus::Failed);
    assert_eq!(s.session_type, "Workflow");
    assert_eq!(s.checkpoints.len(), 1);
    assert!(s.owner().is_none());
    let started = s.started_at.unwrap();
    assert_eq!(started.to_string(), "2026-11-21T05:14:50.597527875Z");
    let out = String::from_utf8(to_json_bytes(&s)).unwrap();
    assert!(out.contains("\"started_at\": \"2026-11-21T05:14:50.597527875Z\""));
    // Legacy checkpoint status and lock content.
    let cp: LegacyWorkflowCheckpoint = parse(
        &std::fs::read(c.root().join(
            "state/workflow-1795238090597/checkpoints/workflow-1795238090611.checkpoint.json",
        ))
        .unwrap(),
    )
    .unwrap();
    assert_eq!(cp.execution_state.status, LegacyExecStatus::Failed);
    assert_eq!(cp.workflow_id, "workflow-1795238090611");
    let lock: ResumeLockInfo =
        parse(&std::fs::read(c.root().join("resume_locks/workflow-1795238178314.lock")).unwrap())
            .unwrap();
    assert_eq!(lock.process_id, 32498);
    assert_eq!(lock.hostname, "vm");
}
