//! Session records, `sessions/{session_id}.json` (storage-format.md §4.1, the 0.4.4
//! `UnifiedSession` shape; `man/prodigy-storage.5` "Session record"): [`SessionRecord`], its
//! [`SessionStatus`], the [`SessionOwner`] that prodigy's own writers keep at `metadata.owner`,
//! and [`MapReduceData`]. Written by [`crate::store::journal::session`].

use super::{Extra, Timestamp};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// `status` of a session record (storage-format.md §4.1; 0.4.4 `SessionStatus`). Exactly these six
/// strings; any other value is a parse error (safety.md §1: unknown status → Unknown, keep).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SessionStatus {
    /// `"Initializing"`.
    Initializing,
    /// `"Running"` (0.4.4 leaves killed runs `Running` forever: storage-format.md §5).
    Running,
    /// `"Paused"`.
    Paused,
    /// `"Completed"`.
    Completed,
    /// `"Failed"` (0.4.4 can resume these: safety.md §1).
    Failed,
    /// `"Cancelled"`.
    Cancelled,
}

impl SessionStatus {
    /// The JSON spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            SessionStatus::Initializing => "Initializing",
            SessionStatus::Running => "Running",
            SessionStatus::Paused => "Paused",
            SessionStatus::Completed => "Completed",
            SessionStatus::Failed => "Failed",
            SessionStatus::Cancelled => "Cancelled",
        }
    }

    /// Initializing, Running or Paused: the statuses an Active session has (safety.md §1).
    pub fn is_live_status(self) -> bool {
        matches!(
            self,
            SessionStatus::Initializing | SessionStatus::Running | SessionStatus::Paused
        )
    }
}

/// Liveness of the writer that owns a session, stored at `metadata.owner` of the session record
/// (storage-format.md §4.1: `{"pid": u32, "hostname": string, "heartbeat_at": time}`; 0.4.4
/// records none).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionOwner {
    /// Process id of the owner on `hostname`.
    pub pid: u32,
    /// Host name of the owner's machine.
    pub hostname: String,
    /// Last time the owner proved it was alive.
    pub heartbeat_at: Timestamp,
}

/// `mapreduce_data` of a session record (storage-format.md §4.1; 0.4.4 `MapReduceSession`, which
/// also has `reduce_results`, kept in `extra`). Counts are numbers of work items; all fields are
/// optional because the seeds define none of them. 0.4.4 writes `null` here in practice,
/// even for MapReduce runs (see the fixture's `session-*.json`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MapReduceData {
    /// MapReduce job id (e.g. `mapreduce-20261121_051522`).
    #[serde(default)]
    pub job_id: Option<String>,
    /// Number of work items in the job.
    #[serde(default)]
    pub total_items: Option<u64>,
    /// Work items processed so far.
    #[serde(default)]
    pub processed_items: Option<u64>,
    /// Work items that failed.
    #[serde(default)]
    pub failed_items: Option<u64>,
    /// Number of agents.
    #[serde(default)]
    pub agent_count: Option<u64>,
    /// `"Setup" | "Map" | "Reduce" | "Complete"` (kept as a string: not needed to classify).
    #[serde(default)]
    pub phase: Option<String>,
    /// Unknown fields, kept on rewrite.
    #[serde(flatten)]
    pub extra: Extra,
}

/// A session record, `sessions/{session_id}.json` (storage-format.md §4.1, the 0.4.4
/// `UnifiedSession` shape). `id` and `status` are required; everything else defaults when absent.
///
/// Note for writers: 0.4.4 itself cannot read a record whose `started_at`/`updated_at` are null or
/// whose `timings` is not an object of durations; use [`SessionRecord::new`] for new records.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionRecord {
    /// Session id: `workflow-{unix_ms}` or `session-{uuid}` in 0.4.4 (storage-format.md §5).
    pub id: String,
    /// `"Workflow"` or `"MapReduce"` (0.4.4 writes `"Workflow"` even for MapReduce runs).
    #[serde(default)]
    pub session_type: String,
    /// Lifecycle status; unknown values are a parse error.
    pub status: SessionStatus,
    /// When the session started.
    #[serde(default)]
    pub started_at: Option<Timestamp>,
    /// Last update written by the session's owner.
    #[serde(default)]
    pub updated_at: Option<Timestamp>,
    /// When it reached a terminal status (`null` before).
    #[serde(default)]
    pub completed_at: Option<Timestamp>,
    /// Free-form metadata; prodigy's own writers add `owner` ([`SessionOwner`]).
    #[serde(default)]
    pub metadata: Extra,
    /// 0.4.4 session checkpoints (`{id, created_at, state, metadata}`); non-empty means
    /// "something to resume from" (safety.md §1).
    #[serde(default)]
    pub checkpoints: Vec<Value>,
    /// Step name → duration in 0.4.4 (`{"secs","nanos"}` values). `null` when absent; a present
    /// value is kept as is.
    #[serde(default)]
    pub timings: Value,
    /// Error message of a failed session.
    #[serde(default)]
    pub error: Option<String>,
    /// 0.4.4 `WorkflowSession` object, kept opaque.
    #[serde(default)]
    pub workflow_data: Option<Value>,
    /// MapReduce progress, `null` in every 0.4.4 file seen.
    #[serde(default)]
    pub mapreduce_data: Option<MapReduceData>,
    /// Unknown fields, kept on rewrite.
    #[serde(flatten)]
    pub extra: Extra,
}

impl SessionRecord {
    /// A new record in the shape 0.4.4 can read back: `started_at = updated_at = now`,
    /// `completed_at = null`, empty `metadata`/`checkpoints`, `timings = {}`, no data objects.
    pub fn new(id: impl Into<String>, session_type: impl Into<String>, now: Timestamp) -> Self {
        SessionRecord {
            id: id.into(),
            session_type: session_type.into(),
            status: SessionStatus::Initializing,
            started_at: Some(now),
            updated_at: Some(now),
            completed_at: None,
            metadata: Extra::new(),
            checkpoints: Vec::new(),
            timings: Value::Object(Map::new()),
            error: None,
            workflow_data: None,
            mapreduce_data: None,
            extra: Extra::new(),
        }
    }

    /// The owner recorded at `metadata.owner` (storage-format.md §4.1); `None` when absent or not
    /// exactly the `{pid, hostname, heartbeat_at}` shape (a malformed owner is "owner unknown").
    pub fn owner(&self) -> Option<SessionOwner> {
        self.metadata
            .get("owner")
            .and_then(|v| SessionOwner::deserialize(v).ok())
    }

    /// Records `o` at `metadata.owner`, replacing any previous owner.
    pub fn set_owner(&mut self, o: &SessionOwner) {
        let v = serde_json::json!({
            "pid": o.pid,
            "hostname": o.hostname,
            "heartbeat_at": o.heartbeat_at.to_string(),
        });
        self.metadata.insert("owner".to_string(), v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::records::{parse, tests::round_trip, to_json_bytes};
    use serde_json::json;

    #[test]
    fn canonical_session_parses_and_unknown_status_is_rejected() {
        let doc = json!({
            "id": "session-abc123", "session_type": "MapReduce", "status": "Paused",
            "started_at": "2025-01-11T12:00:00Z", "updated_at": "2025-01-11T12:05:00Z",
            "completed_at": null, "metadata": {}, "checkpoints": [], "timings": {},
            "error": null, "workflow_data": null,
            "mapreduce_data": {"job_id": "mapreduce-123", "total_items": 10, "processed_items": 4,
                "failed_items": 1, "agent_count": 2, "phase": "Map", "reduce_results": null},
            "future_field": [1, 2]
        });
        let bytes = serde_json::to_vec(&doc).unwrap();
        let s: SessionRecord = parse(&bytes).unwrap();
        assert_eq!(s.status, SessionStatus::Paused);
        let mr = s.mapreduce_data.as_ref().unwrap();
        assert_eq!(mr.job_id.as_deref(), Some("mapreduce-123"));
        assert_eq!(mr.processed_items, Some(4));
        assert_eq!(mr.phase.as_deref(), Some("Map"));
        assert!(mr.extra.contains_key("reduce_results"));
        assert_eq!(s.extra["future_field"], json!([1, 2]));
        round_trip::<SessionRecord>(&bytes).unwrap();

        for bad in ["Active", "running", "", "Unknown"] {
            let mut d = doc.clone();
            d["status"] = json!(bad);
            let e = parse::<SessionRecord>(&serde_json::to_vec(&d).unwrap()).unwrap_err();
            assert!(e.message.contains("unknown variant"), "{e}");
        }
        // id and status are required
        for key in ["id", "status"] {
            let mut d = doc.clone();
            d.as_object_mut().unwrap().remove(key);
            assert!(parse::<SessionRecord>(&serde_json::to_vec(&d).unwrap()).is_err());
        }
        // minimal record: everything else defaults
        let m: SessionRecord = parse(br#"{"id":"s","status":"Running"}"#).unwrap();
        assert!(m.started_at.is_none() && m.timings.is_null() && m.checkpoints.is_empty());
    }

    #[test]
    fn session_owner_get_and_set() {
        let mut s = SessionRecord::new("session-1", "Workflow", Timestamp::now());
        assert_eq!(s.owner(), None);
        let t: Timestamp = serde_json::from_value(json!("2025-01-11T12:00:00.5Z")).unwrap();
        let o = SessionOwner {
            pid: 4242,
            hostname: "host-a".into(),
            heartbeat_at: t,
        };
        s.set_owner(&o);
        assert_eq!(s.owner(), Some(o.clone()));
        assert_eq!(
            s.metadata["owner"],
            json!({"pid": 4242, "hostname": "host-a", "heartbeat_at": "2025-01-11T12:00:00.500Z"})
        );
        let again: SessionRecord = parse(&to_json_bytes(&s)).unwrap();
        assert_eq!(again.owner(), Some(o));
        assert_eq!(again.timings, json!({}));
        for bad in [
            json!("me"),
            json!({"pid": -1, "hostname": "h", "heartbeat_at": "2025-01-11T12:00:00Z"}),
            json!({"pid": 5000000000u64, "hostname": "h", "heartbeat_at": "2025-01-11T12:00:00Z"}),
            json!({"pid": 1, "hostname": "h"}),
            json!({"pid": 1, "hostname": "h", "heartbeat_at": "soon"}),
        ] {
            s.metadata.insert("owner".into(), bad.clone());
            assert_eq!(s.owner(), None, "{bad}");
        }
    }
}
