//! The orphaned-worktree registry, `orphaned_worktrees/{repo}/{job_id}.json` (storage-format.md
//! §4.7; seed 004 "Registry Format"; `man/prodigy-storage.5` "Orphaned-worktree registry"): a
//! JSON array ([`OrphanRegistry`]) of [`OrphanEntry`]. Written by
//! [`crate::store::journal::orphans`].

use super::{Extra, Timestamp};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// One entry of the orphaned-worktree registry `orphaned_worktrees/{repo}/{job_id}.json`, whose
/// content is a JSON array of these (storage-format.md §4.7; seed 004 "Registry Format").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrphanEntry {
    /// Absolute path of the worktree whose removal failed.
    pub path: PathBuf,
    /// Agent that created it.
    #[serde(default)]
    pub agent_id: String,
    /// Work item it processed.
    #[serde(default)]
    pub item_id: String,
    /// When the cleanup failed.
    pub failed_at: Timestamp,
    /// Error message of the failure.
    #[serde(default)]
    pub error: String,
    /// Unknown fields, kept on rewrite.
    #[serde(flatten)]
    pub extra: Extra,
}

/// The orphaned-worktree registry file: a JSON array (storage-format.md §4.7).
pub type OrphanRegistry = Vec<OrphanEntry>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::records::{parse, tests::round_trip};

    #[test]
    fn canonical_orphan_registry() {
        let orphans = br#"[{"path": "/Users/user/.prodigy/worktrees/prodigy/agent-1",
            "agent_id": "agent-1", "item_id": "item-1", "failed_at": "2025-01-11T12:00:00Z",
            "error": "Permission denied"}]"#;
        let o: OrphanRegistry = parse(orphans).unwrap();
        assert_eq!(
            o[0].path,
            PathBuf::from("/Users/user/.prodigy/worktrees/prodigy/agent-1")
        );
        round_trip::<OrphanRegistry>(orphans).unwrap();
        assert!(parse::<OrphanRegistry>(br#"{"path": "/x"}"#).is_err());
    }
}
