//! Checkpoints (storage-format.md §4.4; `man/prodigy-storage.5` "Setup checkpoint", "Map
//! checkpoint", "Reduce checkpoint", "0.4.4 workflow checkpoint"): the three MapReduce checkpoint
//! kinds of `state/{repo}/mapreduce/jobs/{job_id}/` (seed 003 "Checkpoint Types") with their file
//! names and the work-item shapes inside them, and 0.4.4's workflow checkpoint
//! `state/{session_id}/checkpoints/{workflow_id}.checkpoint.json` (storage-format.md §4.4/§5,
//! fixture). The MapReduce checkpoints are written by [`crate::store::journal::job`].

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
