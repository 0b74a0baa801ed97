//! 0.4.4 worktree metadata, `worktrees/{repo}/.metadata/{name}.json` (storage-format.md §5;
//! fixture; `man/prodigy-storage.5` "0.4.4 worktree metadata"): [`LegacyWorktreeMeta`]. Only
//! read: prodigy does not write these files.

use super::{Extra, Timestamp};
use serde::{Deserialize, Serialize};

/// 0.4.4 worktree metadata, `worktrees/{repo}/.metadata/{name}.json` (storage-format.md §5;
/// fixture: also `created_at`, `iterations`, `stats`, `merged`, `interrupted_at`, … kept in
/// `extra`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LegacyWorktreeMeta {
    /// Owning session id; for MapReduce agents 0.4.4 writes the agent worktree's own name here.
    #[serde(default)]
    pub session_id: Option<String>,
    /// Worktree directory name.
    #[serde(default)]
    pub worktree_name: Option<String>,
    /// Branch, `prodigy-{name}`.
    #[serde(default)]
    pub branch: Option<String>,
    /// Branch it was created from.
    #[serde(default)]
    pub original_branch: Option<String>,
    /// `"in_progress"`, `"interrupted"`, `"merged"`, … (kept as a string).
    #[serde(default)]
    pub status: Option<String>,
    /// 0.4.4 considers the worktree's session resumable (safety.md §1).
    #[serde(default)]
    pub resumable: bool,
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
    use crate::store::records::parse;

    #[test]
    fn legacy_worktree_meta() {
        let meta = br#"{"session_id": "workflow-1", "worktree_name": "workflow-1",
            "branch": "prodigy-workflow-1", "status": "interrupted", "resumable": true,
            "updated_at": "2026-11-21T05:14:52.156673561Z", "stats": {"commits": 0}}"#;
        let w: LegacyWorktreeMeta = parse(meta).unwrap();
        assert!(w.resumable);
        assert_eq!(w.status.as_deref(), Some("interrupted"));
        assert!(w.extra.contains_key("stats"));
        let w2: LegacyWorktreeMeta = parse(b"{}").unwrap();
        assert!(!w2.resumable);
    }
}
