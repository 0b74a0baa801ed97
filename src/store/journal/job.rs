//! A MapReduce job's state directory, `state/{repo}/mapreduce/jobs/{job_id}/`: `job-state.json`
//! and the setup, map and reduce checkpoints (storage-format §4.4).

use super::read_record;
use crate::error::Result;
use crate::store::fsops::Dir;
use crate::store::layout::{write_record, Layout};
use crate::store::records::{
    self, format_file_name_timestamp, to_json_bytes, CheckpointKind, JobState, MapCheckpoint,
    ReduceCheckpoint, SetupCheckpoint, Timestamp,
};
use std::ffi::OsStr;
use std::path::{Path, PathBuf};

/// Write `job-state.json` of the job (storage-format §4.4).
pub fn write_job_state(l: &Layout, j: &JobState) -> Result<()> {
    write_record(
        &l.job_dir(&j.job_id)?.join("job-state.json"),
        &to_json_bytes(j),
    )
}

/// Write `setup-checkpoint.json` of `job_id`.
pub fn write_setup_checkpoint(l: &Layout, job_id: &str, c: &SetupCheckpoint) -> Result<()> {
    write_record(
        &l.job_dir(job_id)?.join("setup-checkpoint.json"),
        &to_json_bytes(c),
    )
}

/// How many map and reduce checkpoints of a job are kept (run.md §5.3: the newest three).
pub const KEEP_CHECKPOINTS: usize = 3;

/// Write `map-checkpoint-{YYYYmmddHHMMSS}.json` (a second checkpoint within the same second
/// replaces the first, atomically), then unlink map checkpoints beyond the newest
/// [`KEEP_CHECKPOINTS`]. Returns the file's path.
pub fn write_map_checkpoint(l: &Layout, job_id: &str, c: &MapCheckpoint) -> Result<PathBuf> {
    let ts = c.timestamp.unwrap_or_else(Timestamp::now);
    write_map_checkpoint_bytes(l, job_id, &ts, &to_json_bytes(c))
}

/// [`write_map_checkpoint`] for a checkpoint already serialized (by a writer that serializes
/// from borrowed state instead of a [`MapCheckpoint`]); `ts` names the file.
pub fn write_map_checkpoint_bytes(
    l: &Layout,
    job_id: &str,
    ts: &Timestamp,
    bytes: &[u8],
) -> Result<PathBuf> {
    let dir = l.job_dir(job_id)?;
    let p = dir.join(format!(
        "map-checkpoint-{}.json",
        format_file_name_timestamp(ts)
    ));
    write_record(&p, bytes)?;
    prune_checkpoints(&dir, CheckpointKind::Map);
    Ok(p)
}

/// Write `reduce-checkpoint-v1-{YYYYmmddHHMMSS}.json`, keeping the newest [`KEEP_CHECKPOINTS`].
pub fn write_reduce_checkpoint(l: &Layout, job_id: &str, c: &ReduceCheckpoint) -> Result<PathBuf> {
    let ts = c.timestamp.unwrap_or_else(Timestamp::now);
    let dir = l.job_dir(job_id)?;
    let p = dir.join(format!(
        "reduce-checkpoint-v1-{}.json",
        format_file_name_timestamp(&ts)
    ));
    write_record(&p, &to_json_bytes(c))?;
    prune_checkpoints(&dir, CheckpointKind::Reduce);
    Ok(p)
}

/// File names of `kind`'s checkpoints in `dir`, oldest first (by the file-name timestamp, which
/// is what "newest" means in storage-format §4.4).
pub fn checkpoint_names(dir: &Path, kind: CheckpointKind) -> Vec<String> {
    let mut v: Vec<(String, String)> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let n = e.file_name().into_string().ok()?;
            match records::checkpoint_kind_of_file_name(&n) {
                Some((k, Some(ts))) if k == kind => Some((ts.replace('_', ""), n)),
                _ => None,
            }
        })
        .collect();
    v.sort();
    v.into_iter().map(|(_, n)| n).collect()
}

/// Unlink all but the newest [`KEEP_CHECKPOINTS`] checkpoints of `kind`, fd-relative. Failures
/// are ignored: an extra old checkpoint is harmless, and the newest is never touched.
fn prune_checkpoints(dir: &Path, kind: CheckpointKind) {
    let names = checkpoint_names(dir, kind);
    if names.len() <= KEEP_CHECKPOINTS {
        return;
    }
    let Ok(d) = Dir::open_root(dir) else { return };
    for n in &names[..names.len() - KEEP_CHECKPOINTS] {
        let _ = d.unlink(OsStr::new(n));
    }
}

/// The newest parseable checkpoint of `kind` in the job's directory, with its file name.
pub fn newest_checkpoint<T: serde::de::DeserializeOwned>(
    l: &Layout,
    job_id: &str,
    kind: CheckpointKind,
) -> Result<Option<(String, T)>> {
    let dir = l.job_dir(job_id)?;
    for n in checkpoint_names(&dir, kind).into_iter().rev() {
        if let Ok(Some(c)) = read_record::<T>(&dir.join(&n)) {
            return Ok(Some((n, c)));
        }
    }
    Ok(None)
}
