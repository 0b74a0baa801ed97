//! The writer side of a run's records (run.md §5), one module per record kind, each writing the
//! type its reader uses in [`super::records`], so what a run writes needs no special case in
//! `clean`, `sessions`, `events`, `dlq` or `checkpoints`:
//! [`session`] (session records), [`mapping`] (session↔job mappings), [`job`] (`job-state.json`,
//! setup/map/reduce checkpoints and the append-only map log `map-log.jsonl`), [`events`] (event lines), [`dlq`] (the dead letter queue)
//! and [`orphans`] (the orphaned-worktree registry).
//!
//! Every JSON file goes through [`super::layout::write_record`] (temp, fsync, rename, directory
//! fsync); event lines through one `write(2)` each on an `O_APPEND` descriptor. Old map and
//! reduce checkpoints beyond the newest three are unlinked through [`super::fsops`]. Never
//! prints.

pub mod dlq;
pub mod events;
pub mod job;
pub mod mapping;
pub mod orphans;
pub mod session;

pub use dlq::{dlq_add, dlq_remove, read_dlq};
pub use events::EventLog;
pub use job::{
    checkpoint_names, newest_checkpoint, newest_map_state, write_job_state, write_map_checkpoint,
    write_map_checkpoint_bytes, write_reduce_checkpoint, write_setup_checkpoint, MapLogWriter,
    MapStateRead, KEEP_CHECKPOINTS,
};
pub use mapping::write_mapping;
pub use orphans::register_orphan;
pub use session::write_session;

use super::records;
use crate::error::{Error, Result};
use std::path::Path;

/// Read and parse a record; `Ok(None)` when the file does not exist. Errors name the path.
pub fn read_record<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Option<T>> {
    match std::fs::read(path) {
        Ok(b) => records::parse(&b)
            .map(Some)
            .map_err(|e| Error::fatal(format!("`{}` does not parse: {e}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io("read", path, &e)),
    }
}
