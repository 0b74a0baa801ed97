//! The map phase's state: every work item and what became of it, what a map checkpoint and the
//! map log hold (storage-format §4.4, prodigy-storage(5) "Map log"). Built by a new run from
//! its input and by resume from the newest checkpoint, its log and git's history; advanced by
//! `mapreduce`'s wait loop, which also serializes it.

use crate::store::journal;
use crate::store::records::{CompletedWorkItem, FailedWorkItem, MapLogEntry, WorkItem};
use serde_json::{Map, Value};
use std::collections::VecDeque;

/// Map-phase bookkeeping, the content of a map checkpoint. `items` holds every work item with
/// its file id, in input order; the other lists refer to them.
#[derive(Default)]
pub(crate) struct MapState {
    pub items: Vec<(WorkItem, String)>,
    pub pending: VecDeque<usize>,
    pub completed: Vec<CompletedWorkItem>,
    pub failed: Vec<FailedWorkItem>,
    pub results: Map<String, Value>,
    pub skipped: u64,
    /// Ids of items in the job's DLQ; one that succeeds now (resume, `dlq retry`) leaves it.
    pub dlq: std::collections::BTreeSet<String>,
    /// Items that ended since the last append to the map log, in order.
    pub unlogged: Vec<MapLogEntry>,
    /// The job's map log, opened before this process's first map checkpoint.
    pub log: Option<journal::MapLogWriter>,
    /// Bytes of the map log the newest full map checkpoint holds.
    pub folded: u64,
    /// Size of the newest full map checkpoint, in bytes: the log may grow by this much before
    /// the next full one.
    pub full_bytes: u64,
}

impl MapState {
    /// Record a completed item, for the next checkpoint and the next append to the map log.
    pub fn push_completed(&mut self, c: CompletedWorkItem) {
        self.unlogged.push(MapLogEntry {
            completed: Some(c.clone()),
            ..Default::default()
        });
        self.completed.push(c);
    }

    /// Record a failed item (with its agent's result, when an agent ran), as
    /// [`MapState::push_completed`].
    pub fn push_failed(&mut self, f: FailedWorkItem, agent_result: Option<Value>) {
        self.unlogged.push(MapLogEntry {
            failed: Some(f.clone()),
            agent_result,
            ..Default::default()
        });
        self.failed.push(f);
    }

    /// Length of the map log so far (0 before it is opened).
    pub fn log_len(&self) -> u64 {
        self.log.as_ref().map_or(0, |l| l.len())
    }
}
