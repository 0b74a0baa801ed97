//! The dead letter queue (storage-format.md §4.3; `man/prodigy-storage.5` "Dead letter queue",
//! "0.4.4 DLQ item", "0.4.4 DLQ index"): the canonical `dlq/{repo}/{job_id}/dlq-items.json`
//! ([`DlqFile`], seed 001 "Dead Letter Queue Storage"), and 0.4.4's one file per item plus an
//! index under `dlq/{repo}/{job_id}/mapreduce/dlq/{job_id}/` ([`LegacyDlqItem`],
//! [`LegacyDlqIndex`]; fixture `items/item_3.json`). Written by [`crate::store::journal::dlq`]
//! (canonical form only).

use super::{Extra, Timestamp};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Canonical DLQ file `dlq/{repo}/{job_id}/dlq-items.json` (storage-format.md §4.3; seed 001
/// "Dead Letter Queue Storage").
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DlqFile {
    /// Failed work items of the job.
    #[serde(default)]
    pub items: Vec<DlqItem>,
    /// Unknown fields, kept on rewrite.
    #[serde(flatten)]
    pub extra: Extra,
}

/// One item of a canonical DLQ file (storage-format.md §4.3).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DlqItem {
    /// Work item id (e.g. `item-123`).
    pub item_id: String,
    /// The work item's data, opaque.
    #[serde(default)]
    pub work_item: Value,
    /// One entry per failed attempt, oldest first.
    #[serde(default)]
    pub failure_history: Vec<DlqFailure>,
    /// Unknown fields, kept on rewrite.
    #[serde(flatten)]
    pub extra: Extra,
}

/// One failed attempt in a canonical DLQ item (storage-format.md §4.3).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DlqFailure {
    /// When the attempt failed.
    #[serde(default)]
    pub timestamp: Option<Timestamp>,
    /// Error message.
    #[serde(default)]
    pub error: Option<String>,
    /// Path of the Claude JSON log of the attempt, if any.
    #[serde(default)]
    pub json_log_location: Option<String>,
    /// Unknown fields, kept on rewrite.
    #[serde(flatten)]
    pub extra: Extra,
}

/// 0.4.4 DLQ item, one file per item at
/// `dlq/{repo}/{job_id}/mapreduce/dlq/{job_id}/items/{item_id}.json` (storage-format.md §4.3,
/// fixture `items/item_3.json`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LegacyDlqItem {
    /// Work item id (`item_3`).
    pub item_id: String,
    /// The work item's data, opaque.
    #[serde(default)]
    pub item_data: Value,
    /// First failed attempt.
    #[serde(default)]
    pub first_attempt: Option<Timestamp>,
    /// Last failed attempt.
    #[serde(default)]
    pub last_attempt: Option<Timestamp>,
    /// Number of failed attempts.
    #[serde(default)]
    pub failure_count: u64,
    /// One entry per failed attempt.
    #[serde(default)]
    pub failure_history: Vec<LegacyDlqFailure>,
    /// Hash grouping similar failures (hex string).
    #[serde(default)]
    pub error_signature: Option<String>,
    /// Worktree left by the failed agent, opaque (`null` in the fixture).
    #[serde(default)]
    pub worktree_artifacts: Value,
    /// Whether 0.4.4 may reprocess the item.
    #[serde(default)]
    pub reprocess_eligible: bool,
    /// Whether a human must look at it.
    #[serde(default)]
    pub manual_review_required: bool,
    /// Unknown fields, kept on rewrite.
    #[serde(flatten)]
    pub extra: Extra,
}

/// One failed attempt of a 0.4.4 DLQ item (fixture: also has `stack_trace`, `agent_id`,
/// `step_failed`, `duration_ms`, kept in `extra`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LegacyDlqFailure {
    /// 1-based attempt number.
    #[serde(default)]
    pub attempt_number: u64,
    /// When the attempt failed.
    #[serde(default)]
    pub timestamp: Option<Timestamp>,
    /// 0.4.4 `ErrorType` enum, opaque (`"Unknown"` in the fixture; data-carrying variants are
    /// objects).
    #[serde(default)]
    pub error_type: Value,
    /// Error message.
    #[serde(default)]
    pub error_message: String,
    /// Unknown fields, kept on rewrite.
    #[serde(flatten)]
    pub extra: Extra,
}

/// 0.4.4 DLQ index, `dlq/{repo}/{job_id}/mapreduce/dlq/{job_id}/index.json` beside `items/`
/// (storage-format.md §4.3, fixture).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LegacyDlqIndex {
    /// Number of items.
    #[serde(default)]
    pub item_count: u64,
    /// Item ids (file stems under `items/`).
    #[serde(default)]
    pub item_ids: Vec<String>,
    /// Job id.
    #[serde(default)]
    pub job_id: Option<String>,
    /// Last update.
    #[serde(default)]
    pub updated_at: Option<Timestamp>,
    /// Unknown fields, kept on rewrite.
    #[serde(flatten)]
    pub extra: Extra,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::records::{parse, tests::round_trip, to_json_bytes};

    /// Found by the `dlq` and `checkpoint` fuzzers: numbers in unknown fields drifted a little on
    /// every rewrite until serde_json's `float_roundtrip` was enabled.
    #[test]
    fn numbers_in_unknown_fields_survive_rewrites_exactly() {
        let input = br#"{"item_count": 2, "item_ids": [], "job_id": "j", "updated_at": "2026-11-21T05:15:22.837082999Z", "x": 444444444444444444444444444444444444444444444.444444444444444444444444}"#;
        let once = to_json_bytes(&parse::<LegacyDlqIndex>(input).unwrap());
        let twice = to_json_bytes(&parse::<LegacyDlqIndex>(&once).unwrap());
        assert_eq!(
            String::from_utf8(once).unwrap(),
            String::from_utf8(twice).unwrap()
        );
    }

    #[test]
    fn canonical_dlq_file() {
        // seed 001
        let dlq = br#"{"items": [{"item_id": "item-123", "work_item": {"n": 1},
            "failure_history": [{"timestamp": "2025-11-11T12:00:00Z", "error": "Agent failed",
            "json_log_location": "/path/to/claude-log.jsonl"}]}]}"#;
        let d: DlqFile = parse(dlq).unwrap();
        assert_eq!(d.items[0].item_id, "item-123");
        assert_eq!(
            d.items[0].failure_history[0].error.as_deref(),
            Some("Agent failed")
        );
        round_trip::<DlqFile>(dlq).unwrap();
    }
}
