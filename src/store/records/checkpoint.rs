//! Checkpoints (storage-format.md §4.4; `man/prodigy-storage.5` "Setup checkpoint", "Map
//! checkpoint", "Reduce checkpoint", "0.4.4 workflow checkpoint"): the three MapReduce checkpoint
//! kinds of `state/{repo}/mapreduce/jobs/{job_id}/` (seed 003 "Checkpoint Types") with their file
//! names and the work-item shapes inside them, and 0.4.4's workflow checkpoint
//! `state/{session_id}/checkpoints/{workflow_id}.checkpoint.json` (storage-format.md §4.4/§5,
//! fixture), and the map log `map-log.jsonl` ([`MAP_LOG_FILE_NAME`]: the items that ended
//! after a map checkpoint, one line each, issue 25). The MapReduce checkpoints and the map log
//! are written by [`crate::store::journal::job`].

use super::{
    file_name_timestamp, format_file_name_timestamp, parse, DurationValue, Extra, ParseError,
    Timestamp,
};
use serde::de::{self, Deserializer, Visitor};
use serde::ser::Serializer;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt;

// ---------------------------------------------------------------------------------------------
// Checkpoint kinds and file names
// ---------------------------------------------------------------------------------------------

/// The three MapReduce checkpoint kinds of `state/{repo}/mapreduce/jobs/{job_id}/`
/// (storage-format.md §4.4; seed 003 "Checkpoint Types").
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CheckpointKind {
    /// `setup-checkpoint.json`, `"phase": "setup"`.
    Setup,
    /// `map-checkpoint-{ts}.json`, `"phase": "map"`.
    Map,
    /// `reduce-checkpoint-v1-{ts}.json`, `"phase": "reduce"`.
    Reduce,
}

impl CheckpointKind {
    /// The value of the checkpoint's `phase` field: `"setup"`, `"map"` or `"reduce"`.
    pub fn as_str(self) -> &'static str {
        match self {
            CheckpointKind::Setup => "setup",
            CheckpointKind::Map => "map",
            CheckpointKind::Reduce => "reduce",
        }
    }

    /// The file name of a checkpoint of this kind taken at `ts` (storage-format.md §3/§4.4), the
    /// inverse of [`checkpoint_kind_of_file_name`]: [`SETUP_CHECKPOINT_FILE_NAME`] (one per job,
    /// `ts` is not part of it), `map-checkpoint-{ts}.json` or `reduce-checkpoint-v1-{ts}.json` with
    /// `ts` in the canonical `YYYYmmddHHMMSS` UTC form ([`format_file_name_timestamp`]), so two
    /// checkpoints within the same second have the same name.
    pub fn file_name(self, ts: &Timestamp) -> String {
        match self {
            CheckpointKind::Setup => SETUP_CHECKPOINT_FILE_NAME.to_string(),
            CheckpointKind::Map => {
                format!(
                    "{MAP_CHECKPOINT_PREFIX}{}.json",
                    format_file_name_timestamp(ts)
                )
            }
            CheckpointKind::Reduce => {
                format!(
                    "{REDUCE_CHECKPOINT_PREFIX}{}.json",
                    format_file_name_timestamp(ts)
                )
            }
        }
    }
}

/// The file name of a job's setup checkpoint, `setup-checkpoint.json` (storage-format.md §4.4).
pub const SETUP_CHECKPOINT_FILE_NAME: &str = "setup-checkpoint.json";
/// What a map checkpoint's file name starts with, before its `{ts}.json`.
const MAP_CHECKPOINT_PREFIX: &str = "map-checkpoint-";
/// What a reduce checkpoint's file name starts with, before its `{ts}.json`.
const REDUCE_CHECKPOINT_PREFIX: &str = "reduce-checkpoint-v1-";

/// Classifies a checkpoint file name (storage-format.md §3/§4.4): `setup-checkpoint.json` →
/// `(Setup, None)`, `map-checkpoint-{ts}.json` → `(Map, Some(ts))`,
/// `reduce-checkpoint-v1-{ts}.json` → `(Reduce, Some(ts))`, where `ts` is `YYYYmmddHHMMSS` or
/// 0.4.4's `YYYYmmdd_HHMMSS` and a valid UTC time ([`file_name_timestamp`]). Anything else (other
/// names, other timestamp shapes, temp files) is `None`. Matching is exact and case-sensitive.
pub fn checkpoint_kind_of_file_name(name: &str) -> Option<(CheckpointKind, Option<String>)> {
    if name == SETUP_CHECKPOINT_FILE_NAME {
        return Some((CheckpointKind::Setup, None));
    }
    let stem = name.strip_suffix(".json")?;
    let (kind, ts) = if let Some(ts) = stem.strip_prefix(MAP_CHECKPOINT_PREFIX) {
        (CheckpointKind::Map, ts)
    } else if let Some(ts) = stem.strip_prefix(REDUCE_CHECKPOINT_PREFIX) {
        (CheckpointKind::Reduce, ts)
    } else {
        return None;
    };
    file_name_timestamp(ts)?;
    Some((kind, Some(ts.to_string())))
}

// ---------------------------------------------------------------------------------------------
// MapReduce checkpoints
// ---------------------------------------------------------------------------------------------

/// Generates a zero-sized type that (de)serializes as exactly one string: the `phase` tag of a
/// checkpoint kind. Any other value is a parse error.
macro_rules! phase_tag {
    ($(#[$doc:meta])* $name:ident, $value:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
        pub struct $name;

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str($value)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V;
                impl<'de> Visitor<'de> for V {
                    type Value = $name;
                    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                        write!(f, "the phase {:?}", $value)
                    }
                    fn visit_str<E: de::Error>(self, s: &str) -> Result<$name, E> {
                        if s == $value {
                            Ok($name)
                        } else {
                            Err(E::invalid_value(de::Unexpected::Str(s), &self))
                        }
                    }
                }
                d.deserialize_str(V)
            }
        }
    };
}

phase_tag!(
    /// The `"phase": "setup"` tag of a [`SetupCheckpoint`] (storage-format.md §4.4).
    SetupPhase,
    "setup"
);
phase_tag!(
    /// The `"phase": "map"` tag of a [`MapCheckpoint`] (storage-format.md §4.4).
    MapPhase,
    "map"
);
phase_tag!(
    /// The `"phase": "reduce"` tag of a [`ReduceCheckpoint`] (storage-format.md §4.4).
    ReducePhase,
    "reduce"
);

/// `setup-checkpoint.json` (storage-format.md §4.4; seed 003 "Setup Phase"). `phase` must be
/// `"setup"`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SetupCheckpoint {
    /// Always `"setup"`.
    pub phase: SetupPhase,
    /// Whether the setup phase finished.
    #[serde(default)]
    pub completed: bool,
    /// Outputs captured by setup steps.
    #[serde(default)]
    pub outputs: Extra,
    /// When the checkpoint was taken.
    #[serde(default)]
    pub timestamp: Option<Timestamp>,
    /// Unknown fields, kept on rewrite.
    #[serde(flatten)]
    pub extra: Extra,
}

/// `map-checkpoint-{ts}.json` (storage-format.md §4.4; seed 003 "Map Phase"). `phase` must be
/// `"map"`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MapCheckpoint {
    /// Always `"map"`.
    pub phase: MapPhase,
    /// Items done, with their results.
    #[serde(default)]
    pub completed_items: Vec<CompletedWorkItem>,
    /// Work item id → progress of the agent working on it.
    #[serde(default)]
    pub in_progress_items: BTreeMap<String, WorkItemProgress>,
    /// Items not started yet.
    #[serde(default)]
    pub pending_items: Vec<WorkItem>,
    /// Items that failed.
    #[serde(default)]
    pub failed_items: Vec<FailedWorkItem>,
    /// Full results of completed agents, opaque.
    #[serde(default)]
    pub agent_results: Extra,
    /// When the checkpoint was taken.
    #[serde(default)]
    pub timestamp: Option<Timestamp>,
    /// Unknown fields, kept on rewrite.
    #[serde(flatten)]
    pub extra: Extra,
}

/// `reduce-checkpoint-v1-{ts}.json` (storage-format.md §4.4; seed 003 "Reduce Phase"). `phase`
/// must be `"reduce"`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ReduceCheckpoint {
    /// Always `"reduce"`.
    pub phase: ReducePhase,
    /// Indices of completed reduce commands.
    #[serde(default)]
    pub completed_steps: Vec<u32>,
    /// Index of the reduce command being executed.
    #[serde(default)]
    pub current_step: u32,
    /// Output of completed reduce steps, opaque.
    #[serde(default)]
    pub step_results: Extra,
    /// Aggregated map results, opaque.
    #[serde(default)]
    pub map_results: Extra,
    /// When the checkpoint was taken.
    #[serde(default)]
    pub timestamp: Option<Timestamp>,
    /// Unknown fields, kept on rewrite.
    #[serde(flatten)]
    pub extra: Extra,
}

/// A work item (storage-format.md §4.4 `WorkItem = {id: string, data: any}`; seed 003).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WorkItem {
    /// Work item id.
    pub id: String,
    /// Payload, opaque.
    #[serde(default)]
    pub data: Value,
    /// Unknown fields, kept on rewrite.
    #[serde(flatten)]
    pub extra: Extra,
}

/// A finished work item (storage-format.md §4.4 `CompletedWorkItem = {work_item, result:
/// AgentResult, completed_at}`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CompletedWorkItem {
    /// The item.
    pub work_item: WorkItem,
    /// What its agent produced.
    pub result: AgentResult,
    /// When it completed.
    #[serde(default)]
    pub completed_at: Option<Timestamp>,
    /// Unknown fields, kept on rewrite.
    #[serde(flatten)]
    pub extra: Extra,
}

/// A failed work item (storage-format.md §4.4 `FailedWorkItem = {work_item, error, failed_at,
/// retry_count}`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FailedWorkItem {
    /// The item.
    pub work_item: WorkItem,
    /// Error message.
    #[serde(default)]
    pub error: String,
    /// When it failed.
    #[serde(default)]
    pub failed_at: Option<Timestamp>,
    /// Retries so far.
    #[serde(default)]
    pub retry_count: u32,
    /// Unknown fields, kept on rewrite.
    #[serde(flatten)]
    pub extra: Extra,
}

/// Progress of an in-flight work item (storage-format.md §4.4 `WorkItemProgress = {work_item,
/// agent_id, started_at, last_update}`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WorkItemProgress {
    /// The item.
    pub work_item: WorkItem,
    /// Agent working on it.
    #[serde(default)]
    pub agent_id: String,
    /// When the agent started it.
    #[serde(default)]
    pub started_at: Option<Timestamp>,
    /// Last progress report.
    #[serde(default)]
    pub last_update: Option<Timestamp>,
    /// Unknown fields, kept on rewrite.
    #[serde(flatten)]
    pub extra: Extra,
}

/// Result of one agent (storage-format.md §4.4 `AgentResult = {item_id, status, output?, commits:
/// [string], duration, error?, worktree_path?, branch_name?}`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AgentResult {
    /// Work item id.
    pub item_id: String,
    /// Agent status, opaque: 0.4.4's `AgentStatus` is an enum whose variants may carry data
    /// (`"Success"`, `{"Failed": "…"}`), so it is kept as JSON.
    #[serde(default)]
    pub status: Value,
    /// Captured output.
    #[serde(default)]
    pub output: Option<String>,
    /// Commit hashes made by the agent.
    #[serde(default)]
    pub commits: Vec<String>,
    /// Wall time of the agent (`{"secs","nanos"}` or `[secs, nanos]`).
    #[serde(default)]
    pub duration: DurationValue,
    /// Error message.
    #[serde(default)]
    pub error: Option<String>,
    /// Agent worktree path.
    #[serde(default)]
    pub worktree_path: Option<String>,
    /// Agent branch.
    #[serde(default)]
    pub branch_name: Option<String>,
    /// Unknown fields, kept on rewrite.
    #[serde(flatten)]
    pub extra: Extra,
}

// ---------------------------------------------------------------------------------------------
// Map log: the items that ended since a map checkpoint (issue 25)
// ---------------------------------------------------------------------------------------------

/// The file name of a job's map log, `map-log.jsonl`, beside its map checkpoints in
/// `state/{repo}/mapreduce/jobs/{job_id}/` (`man/prodigy-storage.5` "Map log").
///
/// Why it exists: a map checkpoint holds every work item, so rewriting it after every batch of
/// ended agents made the bytes a job writes grow with the square of its items. The run now
/// appends each ended item once, as one line, to this log (fsynced per batch), and rewrites the
/// full map checkpoint only when the log has grown by more than the last full checkpoint's size
/// since it (and at the start of a map pass, at its end and on interruption). Every full
/// checkpoint records in [`MAP_LOG_BYTES_KEY`] how many bytes of the log it already holds; the
/// map state is that checkpoint with the log's later lines applied ([`MapCheckpoint::apply_log`]).
/// A checkpoint without the key (earlier versions, 0.4.4) is complete on its own and the log is
/// not read for it.
pub const MAP_LOG_FILE_NAME: &str = "map-log.jsonl";

/// The map checkpoint field that says how many bytes of [`MAP_LOG_FILE_NAME`] it holds:
/// `"map_log_bytes": u64`. Lines after that offset ended after the checkpoint was taken.
pub const MAP_LOG_BYTES_KEY: &str = "map_log_bytes";

/// One line of `map-log.jsonl`: one work item that ended, as `{"completed": CompletedWorkItem}`
/// or `{"failed": FailedWorkItem, "agent_result": AgentResult?}` (the failed agent's result,
/// when an agent ran). Exactly one of `completed` and `failed` is present. A later line about
/// the same item supersedes an earlier one (an item retried from the dead letter queue).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MapLogEntry {
    /// The item completed (merged), with its result.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed: Option<CompletedWorkItem>,
    /// The item failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed: Option<FailedWorkItem>,
    /// The failed agent's result (for `agent_results`), when an agent ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_result: Option<Value>,
    /// Unknown fields, kept on rewrite.
    #[serde(flatten)]
    pub extra: Extra,
}

impl MapLogEntry {
    /// The id of the item the line is about.
    pub fn item_id(&self) -> &str {
        match (&self.completed, &self.failed) {
            (Some(c), _) => &c.work_item.id,
            (None, Some(f)) => &f.work_item.id,
            (None, None) => "",
        }
    }
}

/// Parse one line of `map-log.jsonl`: a [`MapLogEntry`] with exactly one of `completed` and
/// `failed`. Positions in the error are within the line.
pub fn parse_map_log_line(line: &[u8]) -> Result<MapLogEntry, ParseError> {
    let e: MapLogEntry = parse(line)?;
    if e.completed.is_some() == e.failed.is_some() {
        return Err(ParseError::no_position(
            "a map log line holds exactly one of `completed` and `failed`",
        ));
    }
    Ok(e)
}

/// What [`read_map_log`] found in the bytes of a map log.
#[derive(Debug, Default)]
pub struct MapLog {
    /// The lines that parse, in file order, each with its 1-based line number.
    pub entries: Vec<(usize, MapLogEntry)>,
    /// The last line, when it does not parse (a kill or a full disk mid-append): its 1-based line
    /// number. It is ignored, not an error; a writer cuts it off before appending.
    pub torn: Option<usize>,
    /// Lines before the last that do not parse: 1-based line number (in the whole file) and why.
    /// A reader reports them and goes on with the other lines; nothing rewrites them.
    pub corrupt: Vec<(usize, ParseError)>,
    /// Bytes up to the end of the last line that is not torn: where the next line goes.
    pub valid_len: u64,
}

/// Read the lines of a map log (`map-log.jsonl`) from `bytes`, whose first line is line
/// `first_line` (1-based; a reader that starts at a checkpoint's offset passes the number of
/// lines before it plus one). Blank lines are skipped. The last non-blank line, terminated or
/// not, is [`MapLog::torn`] when it does not parse; any other line that does not parse is
/// [`MapLog::corrupt`]. Empty input is an empty log. Never fails.
pub fn read_map_log(bytes: &[u8], first_line: usize) -> MapLog {
    let mut log = MapLog::default();
    let mut lines: Vec<(usize, usize, usize)> = Vec::new(); // (line number, start, end)
    let mut start = 0usize;
    let mut n = first_line;
    while start < bytes.len() {
        let end = bytes[start..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(bytes.len(), |p| start + p);
        if !bytes[start..end].iter().all(u8::is_ascii_whitespace) {
            lines.push((n, start, end));
        }
        n += 1;
        start = end + 1;
    }
    log.valid_len = bytes.len() as u64;
    let last = lines.len().saturating_sub(1);
    for (k, &(n, s, e)) in lines.iter().enumerate() {
        match parse_map_log_line(&bytes[s..e]) {
            Ok(entry) => log.entries.push((n, entry)),
            Err(_) if k == last => {
                log.torn = Some(n);
                log.valid_len = s as u64;
            }
            Err(mut err) => {
                err.line = n;
                log.corrupt.push((n, err));
            }
        }
    }
    log
}

impl MapCheckpoint {
    /// How many bytes of the job's `map-log.jsonl` this checkpoint already holds
    /// ([`MAP_LOG_BYTES_KEY`]); `None` for a checkpoint written without a log (earlier versions,
    /// 0.4.4), which is complete on its own.
    pub fn map_log_bytes(&self) -> Option<u64> {
        self.extra.get(MAP_LOG_BYTES_KEY).and_then(Value::as_u64)
    }

    /// Apply map log lines written after this checkpoint, in order: each item a line names
    /// leaves the pending, in-progress, completed and failed lists and joins the completed or
    /// failed one (the last line about an item wins), and its agent result is updated. Items
    /// the checkpoint does not know are added (a reader keeps what the log says).
    pub fn apply_log<'a>(&mut self, entries: impl IntoIterator<Item = &'a MapLogEntry>) {
        let entries: Vec<&MapLogEntry> = entries.into_iter().collect();
        if entries.is_empty() {
            return;
        }
        // The last line of each item, by position.
        let mut last: BTreeMap<&str, usize> = BTreeMap::new();
        for (k, e) in entries.iter().enumerate() {
            last.insert(e.item_id(), k);
        }
        self.pending_items
            .retain(|w| !last.contains_key(w.id.as_str()));
        self.in_progress_items.retain(|id, p| {
            !last.contains_key(id.as_str()) && !last.contains_key(p.work_item.id.as_str())
        });
        self.completed_items
            .retain(|c| !last.contains_key(c.work_item.id.as_str()));
        self.failed_items
            .retain(|f| !last.contains_key(f.work_item.id.as_str()));
        for (k, e) in entries.iter().enumerate() {
            if last.get(e.item_id()) != Some(&k) {
                continue;
            }
            if let Some(c) = &e.completed {
                if let Ok(v) = serde_json::to_value(&c.result) {
                    self.agent_results.insert(c.work_item.id.clone(), v);
                }
                self.completed_items.push(c.clone());
            } else if let Some(f) = &e.failed {
                if let Some(r) = &e.agent_result {
                    self.agent_results.insert(f.work_item.id.clone(), r.clone());
                }
                self.failed_items.push(f.clone());
            }
        }
    }
}

/// Parse a checkpoint of the given kind (storage-format §4.4), discarding the value: `Ok` means
/// a resume could start from it.
pub fn parse_checkpoint(kind: CheckpointKind, bytes: &[u8]) -> Result<(), ParseError> {
    match kind {
        CheckpointKind::Setup => parse::<SetupCheckpoint>(bytes).map(drop),
        CheckpointKind::Map => parse::<MapCheckpoint>(bytes).map(drop),
        CheckpointKind::Reduce => parse::<ReduceCheckpoint>(bytes).map(drop),
    }
}

// ---------------------------------------------------------------------------------------------
// 0.4.4 workflow checkpoint
// ---------------------------------------------------------------------------------------------

/// `execution_state.status` of a 0.4.4 workflow checkpoint (storage-format.md §4.4). Unknown values
/// are a parse error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum LegacyExecStatus {
    /// `"Running"`.
    Running,
    /// `"Paused"`.
    Paused,
    /// `"Completed"`: the only status that is not evidence of resumability.
    Completed,
    /// `"Failed"`.
    Failed,
    /// `"Interrupted"`.
    Interrupted,
}

/// `execution_state` of a 0.4.4 workflow checkpoint (fixture: also `current_step_index`,
/// `total_steps`, `start_time`, `last_checkpoint`, … kept in `extra`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LegacyExecutionState {
    /// Execution status.
    pub status: LegacyExecStatus,
    /// Unknown fields, kept on rewrite.
    #[serde(flatten)]
    pub extra: Extra,
}

/// 0.4.4 workflow checkpoint, `state/{session_id}/checkpoints/{workflow_id}.checkpoint.json`
/// (storage-format.md §4.4/§5). Note: in the fixture `workflow_id` is *not* the session id (it is
/// a later `workflow-{ms}`); the owning session is the directory name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LegacyWorkflowCheckpoint {
    /// Workflow id (the file stem).
    pub workflow_id: String,
    /// Execution state; its `status` decides resumability.
    pub execution_state: LegacyExecutionState,
    /// When the checkpoint was written.
    #[serde(default)]
    pub timestamp: Option<Timestamp>,
    /// Unknown fields (`completed_steps`, `variable_state`, …), kept on rewrite.
    #[serde(flatten)]
    pub extra: Extra,
}

impl LegacyWorkflowCheckpoint {
    /// True when `execution_state.status` is `Completed`: the only status that is not evidence
    /// that the session can be resumed (storage-format §4.4).
    pub fn is_completed(&self) -> bool {
        self.execution_state.status == LegacyExecStatus::Completed
    }

    /// The status as 0.4.4 spells it.
    pub fn status_str(&self) -> &'static str {
        match self.execution_state.status {
            LegacyExecStatus::Running => "Running",
            LegacyExecStatus::Paused => "Paused",
            LegacyExecStatus::Completed => "Completed",
            LegacyExecStatus::Failed => "Failed",
            LegacyExecStatus::Interrupted => "Interrupted",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::records::{parse, tests::round_trip};
    use serde_json::json;

    #[test]
    fn checkpoint_file_names() {
        use CheckpointKind::*;
        assert_eq!(
            checkpoint_kind_of_file_name("setup-checkpoint.json"),
            Some((Setup, None))
        );
        assert_eq!(
            checkpoint_kind_of_file_name("map-checkpoint-20250111120500.json"),
            Some((Map, Some("20250111120500".into())))
        );
        assert_eq!(
            checkpoint_kind_of_file_name("map-checkpoint-20261121_051522.json"),
            Some((Map, Some("20261121_051522".into())))
        );
        assert_eq!(
            checkpoint_kind_of_file_name("reduce-checkpoint-v1-20250111121000.json"),
            Some((Reduce, Some("20250111121000".into())))
        );
        for bad in [
            "setup-checkpoint.json.tmp",
            ".setup-checkpoint.json.tmp-1-2-3",
            "map-checkpoint-.json",
            "map-checkpoint-latest.json",
            "map-checkpoint-20250111120500",
            "reduce-checkpoint-20250111121000.json",
            "reduce-checkpoint-v2-20250111121000.json",
            "Map-checkpoint-20250111120500.json",
            "map-checkpoint-20250111120500.JSON",
            "job-state.json",
        ] {
            assert_eq!(checkpoint_kind_of_file_name(bad), None, "{bad:?}");
        }
        assert_eq!(Map.as_str(), "map");

        // The names writers give are exactly what the classification above reads back.
        for ts in ["20250111120500", "19700101000000", "99991231235959"] {
            let t = crate::store::records::file_name_timestamp(ts).unwrap();
            assert_eq!(Setup.file_name(&t), "setup-checkpoint.json");
            assert_eq!(Map.file_name(&t), format!("map-checkpoint-{ts}.json"));
            assert_eq!(
                Reduce.file_name(&t),
                format!("reduce-checkpoint-v1-{ts}.json")
            );
            for k in [Setup, Map, Reduce] {
                let want = (k != Setup).then(|| ts.to_string());
                assert_eq!(
                    checkpoint_kind_of_file_name(&k.file_name(&t)),
                    Some((k, want))
                );
            }
        }
        // Sub-second parts and offsets do not reach the name: UTC, whole seconds.
        let t = Timestamp::parse_rfc3339("2025-01-11T14:05:00.999+02:00").unwrap();
        assert_eq!(Map.file_name(&t), "map-checkpoint-20250111120500.json");
    }

    #[test]
    fn canonical_checkpoints_parse_and_wrong_phase_is_rejected() {
        let setup = br#"{"phase": "setup", "completed": true, "outputs": {"X": "1"},
            "timestamp": "2025-01-11T12:00:00Z"}"#;
        let s: SetupCheckpoint = parse(setup).unwrap();
        assert!(s.completed);
        round_trip::<SetupCheckpoint>(setup).unwrap();

        let map = json!({
            "phase": "map",
            "completed_items": [{
                "work_item": {"id": "item-1", "data": {"file": "a.rs"}},
                "result": {"item_id": "item-1", "status": "Success", "output": "ok",
                    "commits": ["abc123"], "duration": {"secs": 12, "nanos": 5},
                    "error": null, "worktree_path": "/w/agent-1", "branch_name": "agent-1"},
                "completed_at": "2025-01-11T12:03:00Z"}],
            "in_progress_items": {"item-2": {
                "work_item": {"id": "item-2", "data": 2}, "agent_id": "agent-2",
                "started_at": "2025-01-11T12:04:00Z", "last_update": "2025-01-11T12:04:30Z"}},
            "pending_items": [{"id": "item-3", "data": null}],
            "failed_items": [{"work_item": {"id": "item-4", "data": [4]}, "error": "boom",
                "failed_at": "2025-01-11T12:02:00Z", "retry_count": 2}],
            "agent_results": {"item-1": {"status": "Success"}},
            "timestamp": "2025-01-11T12:05:00Z"
        });
        let mb = serde_json::to_vec(&map).unwrap();
        let m: MapCheckpoint = parse(&mb).unwrap();
        assert_eq!(m.completed_items[0].result.commits, vec!["abc123"]);
        assert_eq!(m.in_progress_items["item-2"].agent_id, "agent-2");
        assert_eq!(m.failed_items[0].retry_count, 2);
        round_trip::<MapCheckpoint>(&mb).unwrap();
        // 0.4.4-style AgentStatus with data, and [secs, nanos] duration
        let mut m2 = map.clone();
        m2["completed_items"][0]["result"]["status"] = json!({"Failed": "x"});
        m2["completed_items"][0]["result"]["duration"] = json!([1, 2]);
        parse::<MapCheckpoint>(&serde_json::to_vec(&m2).unwrap()).unwrap();

        let reduce = br#"{"phase": "reduce", "completed_steps": [0, 1], "current_step": 2,
            "step_results": {}, "map_results": {}, "timestamp": "2025-01-11T12:10:00Z"}"#;
        let r: ReduceCheckpoint = parse(reduce).unwrap();
        assert_eq!(r.completed_steps, vec![0, 1]);
        assert_eq!(r.current_step, 2);
        round_trip::<ReduceCheckpoint>(reduce).unwrap();

        // wrong / missing phase
        let setup_v: Value = serde_json::from_slice(setup).unwrap();
        for bad in [
            json!("map"),
            json!("Setup"),
            json!(""),
            json!(1),
            json!(null),
        ] {
            let mut v = setup_v.clone();
            v["phase"] = bad.clone();
            assert!(
                parse::<SetupCheckpoint>(&serde_json::to_vec(&v).unwrap()).is_err(),
                "{bad}"
            );
        }
        let mut v = setup_v.clone();
        v.as_object_mut().unwrap().remove("phase");
        assert!(parse::<SetupCheckpoint>(&serde_json::to_vec(&v).unwrap()).is_err());
        assert!(parse::<MapCheckpoint>(reduce).is_err());
        assert!(parse::<ReduceCheckpoint>(&mb).is_err());
        assert!(parse::<ReduceCheckpoint>(setup).is_err());
    }

    fn done(id: &str) -> Vec<u8> {
        let mut l = serde_json::to_vec(&json!({"completed": {
            "work_item": {"id": id, "data": {"n": 1}, "index": 0},
            "result": {"item_id": id, "status": "Success", "commits": ["c1"],
                "duration": {"secs": 1, "nanos": 0}},
            "completed_at": "2025-01-11T12:03:00Z"}}))
        .unwrap();
        l.push(b'\n');
        l
    }

    fn failed(id: &str) -> Vec<u8> {
        let mut l = serde_json::to_vec(&json!({"failed": {
            "work_item": {"id": id, "data": null}, "error": "boom",
            "failed_at": "2025-01-11T12:03:00Z", "retry_count": 0},
            "agent_result": {"item_id": id, "status": {"Failed": "boom"}}}))
        .unwrap();
        l.push(b'\n');
        l
    }

    #[test]
    fn map_log_empty_and_blank_is_an_empty_log() {
        for bytes in [&b""[..], b"\n", b"  \n\n"] {
            let log = read_map_log(bytes, 1);
            assert!(log.entries.is_empty(), "{bytes:?}");
            assert_eq!(log.torn, None);
            assert!(log.corrupt.is_empty());
            assert_eq!(log.valid_len, bytes.len() as u64);
        }
    }

    #[test]
    fn map_log_torn_last_line_is_ignored_not_an_error() {
        let mut b = [done("a"), failed("b")].concat();
        let good = b.len() as u64;
        let whole = done("c");
        // Cut anywhere inside the last line: every prefix is a torn tail.
        for cut in 1..whole.len() - 1 {
            let mut t = b.clone();
            t.extend_from_slice(&whole[..cut]);
            let log = read_map_log(&t, 1);
            assert_eq!(log.entries.len(), 2, "cut {cut}");
            assert_eq!(log.torn, Some(3), "cut {cut}");
            assert!(log.corrupt.is_empty(), "cut {cut}");
            assert_eq!(log.valid_len, good, "cut {cut}");
        }
        // Zeros a power loss can leave after the last synced line: torn too.
        let mut t = b.clone();
        t.extend_from_slice(&[0u8; 40]);
        let log = read_map_log(&t, 1);
        assert_eq!(
            (log.entries.len(), log.torn, log.valid_len),
            (2, Some(3), good)
        );
        // A whole last line without its newline parses.
        b.extend_from_slice(&whole[..whole.len() - 1]);
        let log = read_map_log(&b, 1);
        assert_eq!(log.entries.len(), 3);
        assert_eq!(log.torn, None);
        assert_eq!(log.valid_len, b.len() as u64);
        assert_eq!(log.entries[2].1.item_id(), "c");
        assert_eq!(log.entries[1].1.item_id(), "b");
    }

    #[test]
    fn map_log_corrupt_middle_is_reported_with_its_line_and_the_rest_read() {
        let b = [
            done("a"),
            b"{\"completed\": {\"work_item\": \n".to_vec(),
            b"{}\n".to_vec(),
            b"\n".to_vec(),
            failed("b"),
            done("c"),
        ]
        .concat();
        let log = read_map_log(&b, 10);
        let ids: Vec<(usize, &str)> = log.entries.iter().map(|(n, e)| (*n, e.item_id())).collect();
        assert_eq!(ids, [(10, "a"), (14, "b"), (15, "c")]);
        let bad: Vec<usize> = log.corrupt.iter().map(|(n, _)| *n).collect();
        assert_eq!(bad, [11, 12]);
        assert_eq!(log.corrupt[0].1.line, 11);
        assert!(
            log.corrupt[1].1.message.contains("exactly one of"),
            "{:?}",
            log.corrupt[1]
        );
        assert_eq!(log.torn, None);
        assert_eq!(log.valid_len, b.len() as u64);
        // Both fields at once is no entry either.
        let mut both: Value = serde_json::from_slice(&done("x")).unwrap();
        both["failed"] = serde_json::from_slice::<Value>(&failed("x")).unwrap()["failed"].clone();
        assert!(parse_map_log_line(&serde_json::to_vec(&both).unwrap()).is_err());
    }

    #[test]
    fn map_log_applied_to_a_checkpoint_moves_items_and_the_last_line_wins() {
        let w = |id: &str| WorkItem {
            id: id.into(),
            ..Default::default()
        };
        let mut cp = MapCheckpoint {
            pending_items: vec![w("a"), w("b"), w("d")],
            in_progress_items: [(
                "c".to_string(),
                WorkItemProgress {
                    work_item: w("c"),
                    ..Default::default()
                },
            )]
            .into_iter()
            .collect(),
            failed_items: vec![FailedWorkItem {
                work_item: w("e"),
                ..Default::default()
            }],
            extra: [(MAP_LOG_BYTES_KEY.to_string(), json!(120))]
                .into_iter()
                .collect(),
            ..Default::default()
        };
        assert_eq!(cp.map_log_bytes(), Some(120));
        assert_eq!(MapCheckpoint::default().map_log_bytes(), None);
        let b = [done("a"), failed("c"), failed("b"), done("b"), done("e")].concat();
        let log = read_map_log(&b, 1);
        cp.apply_log(log.entries.iter().map(|(_, e)| e));
        let ids = |v: Vec<&str>| v.join(",");
        assert_eq!(
            ids(cp
                .completed_items
                .iter()
                .map(|c| c.work_item.id.as_str())
                .collect()),
            "a,b,e"
        );
        assert_eq!(
            ids(cp
                .failed_items
                .iter()
                .map(|f| f.work_item.id.as_str())
                .collect()),
            "c"
        );
        assert_eq!(
            ids(cp.pending_items.iter().map(|p| p.id.as_str()).collect()),
            "d"
        );
        assert!(cp.in_progress_items.is_empty());
        assert_eq!(cp.agent_results["b"]["status"], "Success");
        assert_eq!(cp.agent_results["c"]["status"]["Failed"], "boom");
        assert_eq!(cp.completed_items[0].result.commits, ["c1"]);
    }

    #[test]
    fn legacy_workflow_checkpoint_status() {
        for (s, want) in [
            ("Running", LegacyExecStatus::Running),
            ("Paused", LegacyExecStatus::Paused),
            ("Completed", LegacyExecStatus::Completed),
            ("Failed", LegacyExecStatus::Failed),
            ("Interrupted", LegacyExecStatus::Interrupted),
        ] {
            let doc = format!(r#"{{"workflow_id":"w","execution_state":{{"status":"{s}"}}}}"#);
            let c: LegacyWorkflowCheckpoint = parse(doc.as_bytes()).unwrap();
            assert_eq!(c.execution_state.status, want);
        }
        assert!(parse::<LegacyWorkflowCheckpoint>(
            br#"{"workflow_id":"w","execution_state":{"status":"Resuming"}}"#
        )
        .is_err());
    }
}
