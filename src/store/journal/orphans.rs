//! The orphaned-worktree registry, `orphaned_worktrees/{repo}/{job_id}.json` (storage-format §4.7).

use super::read_record;
use crate::error::{Error, Result};
use crate::store::layout::{write_record, Layout};
use crate::store::records::{self, OrphanEntry, OrphanRegistry};

/// Add an entry to `orphaned_worktrees/{repo}/{job_id}.json` (storage-format §4.7), merged with
/// what is there (an entry for the same path is replaced).
pub fn register_orphan(l: &Layout, job_id: &str, e: OrphanEntry) -> Result<()> {
    let p = l.orphans(job_id)?;
    let mut reg: OrphanRegistry = read_record(&p)?.unwrap_or_default();
    reg.retain(|x| x.path != e.path);
    reg.push(e);
    let bytes = records::try_to_json_bytes(&reg)
        .map_err(|err| Error::fatal(format!("`{}`: {err}", p.display())))?;
    write_record(&p, &bytes)
}
