//! The writer side of a run's records (run.md §5), one function per record kind, each beside the
//! type it writes in [`super::records`]: session records, session↔job mappings, `job-state.json`,
//! setup/map/reduce checkpoints, event lines, the dead letter queue and the orphaned-worktree
//! registry.
//!
//! Every JSON file goes through [`super::layout::write_record`] (temp, fsync, rename, directory
//! fsync); event lines through one `write(2)` each on an `O_APPEND` descriptor. Readers (`clean`,
//! `sessions`, `events`, `dlq`, `checkpoints`) read these files with the same types, so what a
//! run writes needs no special case anywhere. Old map and reduce checkpoints beyond the newest
//! three are unlinked through [`super::fsops`]. Never prints.

use super::atomic;
use super::fsops::Dir;
use super::layout::{ensure_dir, write_record, Layout};
use super::records::{
    self, format_file_name_timestamp, to_json_bytes, CheckpointKind, DlqFailure, DlqFile, DlqItem,
    JobState, MapCheckpoint, OrphanEntry, OrphanRegistry, ReduceCheckpoint, SessionJobMapping,
    SessionRecord, SetupCheckpoint, Timestamp,
};
use crate::error::{Error, Result};
use serde_json::{Map, Value};
use std::ffi::OsStr;
use std::fs::File;
use std::path::{Path, PathBuf};

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

/// Write a session record (storage-format §4.1) to `sessions/{id}.json`.
pub fn write_session(l: &Layout, s: &SessionRecord) -> Result<()> {
    write_record(&l.session(&s.id)?, &to_json_bytes(s))
}

/// Write the session↔job mapping to both `state/{repo}/mappings/{session_id}.json` and
/// `{job_id}.json`, same bytes (storage-format §4.5). When the two ids are equal (a standard
/// workflow), one file.
pub fn write_mapping(l: &Layout, m: &SessionJobMapping) -> Result<()> {
    let bytes = to_json_bytes(m);
    write_record(&l.mapping(&m.session_id)?, &bytes)?;
    if m.job_id != m.session_id {
        write_record(&l.mapping(&m.job_id)?, &bytes)?;
    }
    Ok(())
}

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

/// An open event file of one process start, `events/{repo}/{job_id}/events-{ts}.jsonl`
/// (run.md §5.4). Each event is one flat JSON object `{"timestamp", "event_type", "job_id",
/// "session_id", "correlation_id", …}` appended with one `write(2)`.
pub struct EventLog {
    file: File,
    path: PathBuf,
    job_id: String,
    session_id: String,
    correlation_id: String,
}

impl EventLog {
    /// Create (or append to) this process's event file of `job_id`. `correlation_id` ties the
    /// events of one process start together.
    pub fn open(l: &Layout, job_id: &str, session_id: &str, correlation_id: &str) -> Result<Self> {
        let dir = l.events_dir(job_id)?;
        ensure_dir(&dir)?;
        let path = dir.join(format!(
            "events-{}.jsonl",
            format_file_name_timestamp(&Timestamp::now())
        ));
        let file = atomic::open_append(&path).map_err(|e| Error::io("open", &path, &e))?;
        Ok(EventLog {
            file,
            path,
            job_id: job_id.to_string(),
            session_id: session_id.to_string(),
            correlation_id: correlation_id.to_string(),
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Append one event of `event_type` with the extra `fields`. Errors name the file.
    pub fn emit(&mut self, event_type: &str, fields: Value) -> Result<()> {
        let mut m = Map::new();
        m.insert(
            "timestamp".into(),
            Value::String(Timestamp::now().to_string()),
        );
        m.insert("event_type".into(), Value::String(event_type.into()));
        m.insert("job_id".into(), Value::String(self.job_id.clone()));
        m.insert("session_id".into(), Value::String(self.session_id.clone()));
        m.insert(
            "correlation_id".into(),
            Value::String(self.correlation_id.clone()),
        );
        if let Value::Object(f) = fields {
            for (k, v) in f {
                m.insert(k, v);
            }
        }
        let line = serde_json::to_vec(&Value::Object(m)).expect("JSON of a map");
        atomic::append_to(&mut self.file, &self.path, &line)
            .map_err(|e| Error::io("append to", &self.path, &e))
    }

    /// Make the events appended so far durable (called at checkpoints and at the end).
    pub fn sync(&self) -> Result<()> {
        self.file
            .sync_data()
            .map_err(|e| Error::io("sync", &self.path, &e))
    }
}

/// Read the job's DLQ (storage-format §4.3); an absent file is an empty queue.
pub fn read_dlq(l: &Layout, job_id: &str) -> Result<DlqFile> {
    Ok(read_record::<DlqFile>(&l.dlq(job_id)?)?.unwrap_or_default())
}

/// Record a failed attempt of a work item in the job's DLQ: the item is added, or its
/// `failure_history` gains one entry (run.md §5.3: merged with what is there).
pub fn dlq_add(
    l: &Layout,
    job_id: &str,
    item_id: &str,
    work_item: &Value,
    failure: DlqFailure,
    extra: Map<String, Value>,
) -> Result<()> {
    let mut f = read_dlq(l, job_id)?;
    match f.items.iter_mut().find(|i| i.item_id == item_id) {
        Some(i) => {
            i.work_item = work_item.clone();
            i.failure_history.push(failure);
            i.extra.extend(extra);
        }
        None => f.items.push(DlqItem {
            item_id: item_id.to_string(),
            work_item: work_item.clone(),
            failure_history: vec![failure],
            extra,
        }),
    }
    write_record(&l.dlq(job_id)?, &to_json_bytes(&f))
}

/// Remove a work item from the job's DLQ (it succeeded on a retry). Absent item: no change.
pub fn dlq_remove(l: &Layout, job_id: &str, item_id: &str) -> Result<bool> {
    let mut f = read_dlq(l, job_id)?;
    let before = f.items.len();
    f.items.retain(|i| i.item_id != item_id);
    if f.items.len() == before {
        return Ok(false);
    }
    write_record(&l.dlq(job_id)?, &to_json_bytes(&f))?;
    Ok(true)
}

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
