//! A MapReduce job's state directory, `state/{repo}/mapreduce/jobs/{job_id}/`: `job-state.json`
//! and the setup, map and reduce checkpoints (storage-format §4.4). Checkpoint file names are made
//! by [`CheckpointKind::file_name`] and listed through [`records::checkpoint_kind_of_file_name`],
//! the name grammar the readers use ([`records::checkpoint`]).

use super::read_record;
use crate::error::Result;
use crate::store::fsops::Dir;
use crate::store::layout::{write_record, Layout};
use crate::store::records::{
    self, to_json_bytes, CheckpointKind, JobState, MapCheckpoint, ReduceCheckpoint,
    SetupCheckpoint, Timestamp, SETUP_CHECKPOINT_FILE_NAME,
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
        &l.job_dir(job_id)?.join(SETUP_CHECKPOINT_FILE_NAME),
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
    let p = dir.join(CheckpointKind::Map.file_name(ts));
    write_record(&p, bytes)?;
    prune_checkpoints(&dir, CheckpointKind::Map);
    Ok(p)
}

/// Write `reduce-checkpoint-v1-{YYYYmmddHHMMSS}.json`, keeping the newest [`KEEP_CHECKPOINTS`].
pub fn write_reduce_checkpoint(l: &Layout, job_id: &str, c: &ReduceCheckpoint) -> Result<PathBuf> {
    let ts = c.timestamp.unwrap_or_else(Timestamp::now);
    let dir = l.job_dir(job_id)?;
    let p = dir.join(CheckpointKind::Reduce.file_name(&ts));
    write_record(&p, &to_json_bytes(c))?;
    prune_checkpoints(&dir, CheckpointKind::Reduce);
    Ok(p)
}

/// File names of `kind`'s checkpoints in `dir`, oldest first (by the file-name timestamp, which
/// is what "newest" means in storage-format §4.4; equal times by name).
pub fn checkpoint_names(dir: &Path, kind: CheckpointKind) -> Vec<String> {
    let mut v: Vec<(Timestamp, String)> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let n = e.file_name().into_string().ok()?;
            match records::checkpoint_kind_of_file_name(&n) {
                Some((k, Some(ts))) if k == kind => Some((records::file_name_timestamp(&ts)?, n)),
                _ => None,
            }
        })
        .collect();
    crate::sort::sort(&mut v);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::records::{
        checkpoint_kind_of_file_name, file_name_timestamp, parse, JobPhase, JobStatus,
    };

    /// A layout over a fresh directory, removed when dropped.
    struct TempLayout(PathBuf, Layout);

    impl TempLayout {
        fn new(test: &str) -> Self {
            let d = std::env::temp_dir()
                .join(format!("prodigy-journal-job-{test}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&d);
            std::fs::create_dir_all(&d).unwrap();
            let l = Layout::new(&d, "web").unwrap();
            TempLayout(d, l)
        }
    }

    impl Drop for TempLayout {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn at(ts: &str) -> Timestamp {
        file_name_timestamp(ts).unwrap()
    }

    #[test]
    fn checkpoints_are_named_as_readers_classify_them_and_pruned_to_the_newest() {
        let t = TempLayout::new("names");
        let l = &t.1;
        let job = "mapreduce-1";
        let dir = l.job_dir(job).unwrap();

        write_setup_checkpoint(l, job, &SetupCheckpoint::default()).unwrap();
        let setup = std::fs::read(dir.join("setup-checkpoint.json")).unwrap();
        parse::<SetupCheckpoint>(&setup).unwrap();

        let js = JobState {
            job_id: job.into(),
            session_id: None,
            workflow_name: None,
            phase: JobPhase::Map,
            status: JobStatus::Running,
            created_at: None,
            updated_at: None,
            total_items: 0,
            completed_items: 0,
            failed_items: 0,
            extra: Default::default(),
        };
        write_job_state(l, &js).unwrap();
        let back: JobState = parse(&std::fs::read(dir.join("job-state.json")).unwrap()).unwrap();
        assert_eq!(back, js);

        // 0.4.4-shaped names (`YYYYmmdd_HHMMSS`) written earlier sort by their time among the
        // canonical ones; a tie in time is broken by the name.
        for n in [
            "map-checkpoint-20250111_115959.json",
            "map-checkpoint-20250111_120000.json",
            "map-checkpoint-latest.json",
        ] {
            std::fs::write(dir.join(n), b"{\"phase\": \"map\"}\n").unwrap();
        }
        let p = write_map_checkpoint(
            l,
            job,
            &MapCheckpoint {
                timestamp: Some(at("20250111120000")),
                ..MapCheckpoint::default()
            },
        )
        .unwrap();
        assert_eq!(p, dir.join("map-checkpoint-20250111120000.json"));
        assert_eq!(
            checkpoint_kind_of_file_name("map-checkpoint-20250111120000.json"),
            Some((CheckpointKind::Map, Some("20250111120000".into())))
        );
        assert_eq!(
            checkpoint_names(&dir, CheckpointKind::Map),
            [
                "map-checkpoint-20250111_115959.json",
                "map-checkpoint-20250111120000.json",
                "map-checkpoint-20250111_120000.json",
            ]
        );
        // A fourth, newer one: the oldest is unlinked, the unclassified file is left alone.
        let p =
            write_map_checkpoint_bytes(l, job, &at("20250111120001"), b"{\"phase\": \"map\"}\n")
                .unwrap();
        assert_eq!(p, dir.join("map-checkpoint-20250111120001.json"));
        assert_eq!(
            checkpoint_names(&dir, CheckpointKind::Map),
            [
                "map-checkpoint-20250111120000.json",
                "map-checkpoint-20250111_120000.json",
                "map-checkpoint-20250111120001.json",
            ]
        );
        assert!(dir.join("map-checkpoint-latest.json").exists());

        for s in [
            "20250111120100",
            "20250111120200",
            "20250111120300",
            "20250111120400",
        ] {
            let c = ReduceCheckpoint {
                timestamp: Some(at(s)),
                ..ReduceCheckpoint::default()
            };
            let p = write_reduce_checkpoint(l, job, &c).unwrap();
            assert_eq!(p, dir.join(format!("reduce-checkpoint-v1-{s}.json")));
        }
        assert_eq!(
            checkpoint_names(&dir, CheckpointKind::Reduce),
            [
                "reduce-checkpoint-v1-20250111120200.json",
                "reduce-checkpoint-v1-20250111120300.json",
                "reduce-checkpoint-v1-20250111120400.json",
            ]
        );
        let (name, newest) = newest_checkpoint::<ReduceCheckpoint>(l, job, CheckpointKind::Reduce)
            .unwrap()
            .unwrap();
        assert_eq!(name, "reduce-checkpoint-v1-20250111120400.json");
        assert_eq!(newest.timestamp, Some(at("20250111120400")));
        assert_eq!(
            checkpoint_names(&dir, CheckpointKind::Setup),
            Vec::<String>::new()
        );
    }
}
