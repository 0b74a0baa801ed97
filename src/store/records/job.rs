//! MapReduce job state, `state/{repo}/mapreduce/jobs/{job_id}/job-state.json`
//! (storage-format.md §4.4, the seeds only name it; `man/prodigy-storage.5` "Job state"):
//! [`JobState`] with its [`JobPhase`] and [`JobStatus`]. Written by
//! [`crate::store::journal::job`]; the job's checkpoints beside it are in
//! [`super::checkpoint`].

use super::{Extra, Timestamp};
use serde::{Deserialize, Serialize};

/// `phase` of `job-state.json` (storage-format.md §4.4), lowercase. Unknown values are a parse
/// error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobPhase {
    /// `"setup"`.
    Setup,
    /// `"map"`.
    Map,
    /// `"reduce"`.
    Reduce,
    /// `"complete"`: the job is not resumable.
    Complete,
}

/// `status` of `job-state.json` (storage-format.md §4.4), lowercase. Unknown values are a parse
/// error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobStatus {
    /// `"running"`.
    Running,
    /// `"paused"`: interrupted by SIGINT/SIGTERM, checkpoint written, resumable (run.md §5.5).
    Paused,
    /// `"completed"`.
    Completed,
    /// `"failed"`.
    Failed,
    /// `"cancelled"`.
    Cancelled,
}

/// `state/{repo}/mapreduce/jobs/{job_id}/job-state.json` (storage-format.md §4.4; the seeds only
/// name it). `job_id`, `phase` and `status` are required. Counts are numbers of work items.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobState {
    /// Job id.
    pub job_id: String,
    /// Owning session.
    #[serde(default)]
    pub session_id: Option<String>,
    /// Workflow name.
    #[serde(default)]
    pub workflow_name: Option<String>,
    /// Current phase.
    pub phase: JobPhase,
    /// Current status.
    pub status: JobStatus,
    /// Creation time.
    #[serde(default)]
    pub created_at: Option<Timestamp>,
    /// Last update.
    #[serde(default)]
    pub updated_at: Option<Timestamp>,
    /// Number of work items.
    #[serde(default)]
    pub total_items: u64,
    /// Items completed.
    #[serde(default)]
    pub completed_items: u64,
    /// Items failed.
    #[serde(default)]
    pub failed_items: u64,
    /// Unknown fields, kept on rewrite.
    #[serde(flatten)]
    pub extra: Extra,
}

impl JobState {
    /// True when the job cannot be resumed: status completed or cancelled, or phase complete.
    pub fn is_terminal(&self) -> bool {
        matches!(self.status, JobStatus::Completed | JobStatus::Cancelled)
            || self.phase == JobPhase::Complete
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::records::{parse, tests::round_trip};
    use serde_json::{json, Value};

    #[test]
    fn canonical_job_state_parses() {
        let doc = br#"{"job_id": "mapreduce-123", "session_id": "session-mapreduce-xyz",
            "workflow_name": "my-workflow", "phase": "map", "status": "running",
            "created_at": "2025-01-11T12:00:00Z", "updated_at": "2025-01-11T12:05:00Z",
            "total_items": 10, "completed_items": 3, "failed_items": 1}"#;
        let j: JobState = parse(doc).unwrap();
        assert_eq!(j.phase, JobPhase::Map);
        assert_eq!(j.status, JobStatus::Running);
        round_trip::<JobState>(doc).unwrap();
        let v: Value = serde_json::from_slice(doc).unwrap();
        for (k, bad) in [
            ("phase", "Map"),
            ("phase", "done"),
            ("status", "Running"),
            ("status", "Paused"),
            ("status", "stopped"),
        ] {
            let mut w = v.clone();
            w[k] = json!(bad);
            assert!(
                parse::<JobState>(&serde_json::to_vec(&w).unwrap()).is_err(),
                "{k}={bad}"
            );
        }
        for st in ["running", "paused", "completed", "failed", "cancelled"] {
            let _: JobStatus = serde_json::from_value(json!(st)).unwrap();
        }
        for p in ["setup", "map", "reduce", "complete"] {
            let _: JobPhase = serde_json::from_value(json!(p)).unwrap();
        }
    }
}
