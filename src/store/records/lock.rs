//! Resume lock content, `resume_locks/{job_id}.lock` (storage-format.md §4.6, the 0.4.4 shape;
//! fixture `resume_locks/workflow-1795238178314.lock`; `man/prodigy-storage.5` "Resume lock"):
//! [`ResumeLockInfo`]. Taking and probing the lock (`flock`) is [`crate::store::lock`]'s job.

use super::{Extra, Timestamp};
use serde::{Deserialize, Serialize};

/// Resume lock content, `resume_locks/{job_id}.lock` (storage-format.md §4.6, the 0.4.4 shape; fixture
/// `resume_locks/workflow-1795238178314.lock`). All four fields are required: an unparsable lock is
/// treated as live by the caller.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResumeLockInfo {
    /// Job (or, in 0.4.4, workflow session) id.
    pub job_id: String,
    /// Holder's process id on `hostname`.
    pub process_id: u32,
    /// Holder's host name.
    pub hostname: String,
    /// When the lock was taken.
    pub acquired_at: Timestamp,
    /// Unknown fields, kept on rewrite.
    #[serde(flatten)]
    pub extra: Extra,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::records::{parse, tests::round_trip};

    #[test]
    fn canonical_resume_lock() {
        // §4.6 / fixture
        let lock = br#"{"job_id": "workflow-1795238178314", "process_id": 32498,
            "hostname": "vm", "acquired_at": "2026-11-21T05:16:18.718743685Z"}"#;
        let l: ResumeLockInfo = parse(lock).unwrap();
        assert_eq!(l.process_id, 32498);
        round_trip::<ResumeLockInfo>(lock).unwrap();
        assert!(parse::<ResumeLockInfo>(
            br#"{"job_id": "j", "process_id": -5,
            "hostname": "vm", "acquired_at": "2026-11-21T05:16:18Z"}"#
        )
        .is_err());
    }
}
