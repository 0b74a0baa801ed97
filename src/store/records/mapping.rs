//! Session↔job mappings, `state/{repo}/mappings/{session_id}.json` and `{job_id}.json`
//! (storage-format.md §4.5; seed 004 "Mapping Format"; `man/prodigy-storage.5` "Session↔job
//! mapping"): [`SessionJobMapping`]. Written by [`crate::store::journal::mapping`].

use super::{Extra, Timestamp};
use serde::{Deserialize, Serialize};

/// Session↔job mapping, `state/{repo}/mappings/{session_id}.json` and `{job_id}.json`, same bytes
/// in both (storage-format.md §4.5; seed 004 "Mapping Format").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionJobMapping {
    /// Session id.
    pub session_id: String,
    /// Job id.
    pub job_id: String,
    /// Workflow name.
    #[serde(default)]
    pub workflow_name: String,
    /// When the mapping was created.
    pub created_at: Timestamp,
    /// Unknown fields, kept on rewrite.
    #[serde(flatten)]
    pub extra: Extra,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::records::{parse, tests::round_trip};

    #[test]
    fn canonical_mapping() {
        // seed 004
        let mapping = br#"{"session_id": "session-mapreduce-xyz", "job_id": "mapreduce-123",
            "workflow_name": "my-workflow", "created_at": "2025-01-11T12:00:00Z"}"#;
        let m: SessionJobMapping = parse(mapping).unwrap();
        assert_eq!(m.job_id, "mapreduce-123");
        round_trip::<SessionJobMapping>(mapping).unwrap();
    }
}
