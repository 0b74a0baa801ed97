//! A MapReduce job's state directory, `state/{repo}/mapreduce/jobs/{job_id}/`: `job-state.json`
//! and the setup, map and reduce checkpoints (storage-format §4.4). Checkpoint file names are made
//! by [`CheckpointKind::file_name`] and listed through [`records::checkpoint_kind_of_file_name`],
//! the name grammar the readers use ([`records::checkpoint`]).
//!
//! The map phase writes its state in two files (issue 25): full map checkpoints, rewritten only
//! geometrically, and the append-only `map-log.jsonl` of the items that ended since
//! ([`MapLogWriter`], read back by [`newest_map_state`]); see [`records::MAP_LOG_FILE_NAME`] for
//! why and `run::mapreduce` for when each is written.

use super::read_record;
use crate::error::{Error, Result};
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

/// A job's open map log, `map-log.jsonl` (storage-format §4.4 as amended by issue 25;
/// [`records::MAP_LOG_FILE_NAME`]): ended items appended one line each, made durable a batch at a
/// time. Opened once per process, before the first map checkpoint of a map pass, so the
/// checkpoint can record the log's length.
pub struct MapLogWriter {
    file: std::fs::File,
    path: PathBuf,
    len: u64,
}

impl MapLogWriter {
    /// Open (or create, mode 0600, never through a symlink) the job's map log. A torn last line
    /// that a kill left is cut off first (`ftruncate`, then `fsync`), so the next line starts on
    /// a line of its own; corrupt lines before it are left as they are (`checkpoints verify`
    /// reports them). A new file's directory entry is fsynced. Errors name the file.
    pub fn open(l: &Layout, job_id: &str) -> Result<Self> {
        use std::io::Read;
        let dir = l.job_dir(job_id)?;
        crate::store::layout::ensure_dir(&dir)?;
        let path = dir.join(records::MAP_LOG_FILE_NAME);
        let existed = std::fs::symlink_metadata(&path).is_ok();
        let mut opts = std::fs::OpenOptions::new();
        opts.read(true).append(true).create(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600)
                .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC);
        }
        let mut file = opts.open(&path).map_err(|e| Error::io("open", &path, &e))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)
            .map_err(|e| Error::io("read", &path, &e))?;
        let log = records::read_map_log(&bytes, 1);
        let mut len = bytes.len() as u64;
        if log.valid_len < len {
            file.set_len(log.valid_len)
                .and_then(|()| file.sync_data())
                .map_err(|e| Error::io("truncate the torn last line of", &path, &e))?;
            len = log.valid_len;
        }
        if !existed {
            std::fs::File::open(&dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| Error::io("sync", &dir, &e))?;
        }
        Ok(MapLogWriter { file, path, len })
    }

    /// The log's length in bytes: what a checkpoint written now holds of it.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the log is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The log's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Append `entries`, one line each (one `write(2)` a line, masked like every record), then
    /// `fdatasync` once. Returns the log's new length. Errors name the file; a failed append may
    /// leave a torn last line, which readers ignore and [`MapLogWriter::open`] cuts off.
    pub fn append(&mut self, entries: &[records::MapLogEntry]) -> Result<u64> {
        if entries.is_empty() {
            return Ok(self.len);
        }
        for e in entries {
            let line = one_line(&to_json_bytes(e));
            crate::store::atomic::append_to(&mut self.file, &self.path, &line)
                .map_err(|e| Error::io("append to", &self.path, &e))?;
        }
        self.file
            .sync_data()
            .map_err(|e| Error::io("sync", &self.path, &e))?;
        self.len = self
            .file
            .metadata()
            .map_err(|e| Error::io("stat", &self.path, &e))?
            .len();
        Ok(self.len)
    }
}

/// Pretty JSON (as [`to_json_bytes`] writes every record) folded onto one line: each newline
/// and the indentation after it go. A newline in pretty JSON is always structural (strings
/// escape theirs), so the result is the same JSON value. Map log lines are written this way,
/// not with a compact serializer, so that the code that serializes work items for checkpoints
/// serves the log too: a second (compact) serializer of every work-item type cost the static
/// x86_64 binary another 8 KiB, past its size limit (2,519,872 bytes against 2,516,582).
fn one_line(pretty: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(pretty.len());
    let mut indent = false;
    for &b in pretty {
        match b {
            b'\n' => indent = true,
            b' ' if indent => {}
            _ => {
                indent = false;
                out.push(b);
            }
        }
    }
    out
}

/// What [`newest_map_state`] found: the newest map checkpoint that parses, with the lines of the
/// map log written after it applied.
pub struct MapStateRead {
    /// The checkpoint's file name.
    pub file: String,
    /// The checkpoint with the log applied.
    pub checkpoint: MapCheckpoint,
    /// How many log lines were applied.
    pub applied: usize,
    /// Problems worth a warning (corrupt log lines, a log shorter than the checkpoint says), one
    /// line each, naming the file. A torn last line is not one of them.
    pub warnings: Vec<String>,
}

/// The job's map state for a resume: the newest map checkpoint that parses
/// ([`newest_checkpoint`]) and, when it records [`records::MAP_LOG_BYTES_KEY`], the lines of
/// `map-log.jsonl` after that offset applied to it ([`MapCheckpoint::apply_log`]). A torn last
/// line is ignored; corrupt lines are skipped and named in [`MapStateRead::warnings`] (the file
/// is kept as it is). Earlier full checkpoints and 0.4.4's have no offset and are read alone.
pub fn newest_map_state(l: &Layout, job_id: &str) -> Result<Option<MapStateRead>> {
    let Some((file, mut cp)) = newest_checkpoint::<MapCheckpoint>(l, job_id, CheckpointKind::Map)?
    else {
        return Ok(None);
    };
    let mut warnings = Vec::new();
    let mut applied = 0;
    if let Some(off) = cp.map_log_bytes() {
        let path = l.job_dir(job_id)?.join(records::MAP_LOG_FILE_NAME);
        match std::fs::read(&path) {
            Ok(bytes) if (bytes.len() as u64) < off => warnings.push(format!(
                "`{}` is shorter ({} bytes) than `{file}` says ({off}); its lines are not used",
                path.display(),
                bytes.len()
            )),
            Ok(bytes) => {
                let off = off as usize;
                let before = bytes[..off].iter().filter(|&&b| b == b'\n').count();
                let log = records::read_map_log(&bytes[off..], before + 1);
                for (n, e) in &log.corrupt {
                    warnings.push(format!(
                        "`{}` line {n} does not parse ({}); ignored, the file is kept",
                        path.display(),
                        e.message
                    ));
                }
                applied = log.entries.len();
                cp.apply_log(log.entries.iter().map(|(_, e)| e));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && off == 0 => {}
            Err(e) => warnings.push(format!(
                "cannot read `{}` ({}); the items it records run again unless git has their merges",
                path.display(),
                crate::error::describe_io(&e)
            )),
        }
    }
    Ok(Some(MapStateRead {
        file,
        checkpoint: cp,
        applied,
        warnings,
    }))
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

    fn completed(id: &str) -> records::MapLogEntry {
        records::MapLogEntry {
            completed: Some(records::CompletedWorkItem {
                work_item: records::WorkItem {
                    id: id.into(),
                    ..Default::default()
                },
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn map_cp(ts: &str, pending: &[&str], log_bytes: Option<u64>) -> MapCheckpoint {
        MapCheckpoint {
            pending_items: pending
                .iter()
                .map(|id| records::WorkItem {
                    id: id.to_string(),
                    ..Default::default()
                })
                .collect(),
            timestamp: Some(at(ts)),
            extra: log_bytes
                .map(|b| (records::MAP_LOG_BYTES_KEY.to_string(), serde_json::json!(b)))
                .into_iter()
                .collect(),
            ..Default::default()
        }
    }

    fn ids(cp: &MapCheckpoint) -> (Vec<&str>, Vec<&str>) {
        (
            cp.pending_items.iter().map(|w| w.id.as_str()).collect(),
            cp.completed_items
                .iter()
                .map(|c| c.work_item.id.as_str())
                .collect(),
        )
    }

    #[test]
    fn map_log_writer_cuts_a_torn_tail_and_resume_reads_checkpoint_plus_later_lines() {
        let t = TempLayout::new("maplog");
        let l = &t.1;
        let job = "mapreduce-2";
        let dir = l.job_dir(job).unwrap();
        let log_path = dir.join(records::MAP_LOG_FILE_NAME);

        // No checkpoint: nothing to resume from.
        assert!(newest_map_state(l, job).unwrap().is_none());

        let mut w = MapLogWriter::open(l, job).unwrap();
        assert!(w.is_empty());
        assert_eq!(w.path(), log_path);
        write_map_checkpoint(l, job, &map_cp("20250111120000", &["a", "b", "c"], Some(0))).unwrap();
        let after_a = w.append(&[completed("a")]).unwrap();
        assert_eq!(after_a, std::fs::metadata(&log_path).unwrap().len());
        // The checkpoint holds the log up to `a`; `b` ended after it.
        write_map_checkpoint(
            l,
            job,
            &MapCheckpoint {
                completed_items: vec![completed("a").completed.unwrap()],
                ..map_cp("20250111120001", &["b", "c"], Some(after_a))
            },
        )
        .unwrap();
        w.append(&[completed("b")]).unwrap();
        drop(w);
        // A kill mid-append leaves a torn line: ignored by the reader, not an error.
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&log_path)
            .unwrap();
        std::io::Write::write_all(&mut f, b"{\"completed\": {\"work_it").unwrap();
        let m = newest_map_state(l, job).unwrap().unwrap();
        assert_eq!(m.file, "map-checkpoint-20250111120001.json");
        assert_eq!(ids(&m.checkpoint), (vec!["c"], vec!["a", "b"]));
        assert_eq!(m.applied, 1);
        assert!(m.warnings.is_empty(), "{:?}", m.warnings);

        // The next writer cuts the torn tail off before appending, so the file reads whole.
        let torn_len = std::fs::metadata(&log_path).unwrap().len();
        let mut w = MapLogWriter::open(l, job).unwrap();
        assert!(w.len() < torn_len);
        w.append(&[completed("c")]).unwrap();
        let bytes = std::fs::read(&log_path).unwrap();
        let log = records::read_map_log(&bytes, 1);
        assert_eq!(
            (log.entries.len(), log.torn, log.corrupt.len()),
            (3, None, 0)
        );
        let m = newest_map_state(l, job).unwrap().unwrap();
        assert_eq!(ids(&m.checkpoint), (vec![], vec!["a", "b", "c"]));

        // A corrupt line in the middle (after the checkpoint's offset) is reported and skipped;
        // the file is kept as it is, and the writer does not touch it.
        let mut bad = bytes[..after_a as usize].to_vec();
        bad.extend_from_slice(b"{\"completed\": 1}\n");
        bad.extend_from_slice(&bytes[after_a as usize..]);
        std::fs::write(&log_path, &bad).unwrap();
        let m = newest_map_state(l, job).unwrap().unwrap();
        assert_eq!(ids(&m.checkpoint), (vec![], vec!["a", "b", "c"]));
        assert_eq!(m.warnings.len(), 1, "{:?}", m.warnings);
        assert!(
            m.warnings[0].contains("line 2 does not parse"),
            "{:?}",
            m.warnings
        );
        assert!(m.warnings[0].contains(records::MAP_LOG_FILE_NAME));
        let w = MapLogWriter::open(l, job).unwrap();
        assert_eq!(w.len(), bad.len() as u64);
        assert_eq!(std::fs::read(&log_path).unwrap(), bad);

        // A log shorter than the checkpoint says (cut by hand): the checkpoint alone, with a
        // warning.
        std::fs::write(&log_path, b"").unwrap();
        let m = newest_map_state(l, job).unwrap().unwrap();
        assert_eq!(ids(&m.checkpoint), (vec!["b", "c"], vec!["a"]));
        assert_eq!(m.warnings.len(), 1, "{:?}", m.warnings);
    }

    #[test]
    fn map_log_lines_are_pretty_json_folded_onto_one_line_with_the_same_value() {
        let mut e = completed("a \n  b");
        e.completed.as_mut().unwrap().work_item.data =
            serde_json::json!({"s": "x\n   y", "n": [1, {"k": "  "}], "e": {}});
        let line = one_line(&to_json_bytes(&e));
        assert!(!line.contains(&b'\n'));
        let back = records::parse_map_log_line(&line).unwrap();
        assert_eq!(back, e);
        assert_eq!(
            serde_json::from_slice::<serde_json::Value>(&line).unwrap(),
            serde_json::to_value(&e).unwrap()
        );
    }

    #[test]
    fn earlier_and_0_4_4_map_checkpoints_are_read_alone_whatever_a_log_says() {
        let t = TempLayout::new("maplog-old");
        let l = &t.1;
        let job = "mapreduce-3";
        let dir = l.job_dir(job).unwrap();
        std::fs::create_dir_all(&dir).unwrap();
        // 0.4.4's shapes: `YYYYmmdd_HHMMSS` name, `[secs, nanos]`, a status carrying data.
        std::fs::write(
            dir.join("map-checkpoint-20261121_051522.json"),
            br#"{"phase": "map", "completed_items": [{"work_item": {"id": "x", "data": 1},
                "result": {"item_id": "x", "status": {"Failed": "e"}, "commits": [],
                "duration": [1, 5]}, "completed_at": "2026-11-21T05:15:22Z"}],
                "in_progress_items": {}, "pending_items": [{"id": "y", "data": 2}],
                "failed_items": [], "agent_results": {}, "timestamp": "2026-11-21T05:15:22Z"}"#,
        )
        .unwrap();
        let mut w = MapLogWriter::open(l, job).unwrap();
        w.append(&[completed("y")]).unwrap();
        let m = newest_map_state(l, job).unwrap().unwrap();
        assert_eq!(m.file, "map-checkpoint-20261121_051522.json");
        assert_eq!(ids(&m.checkpoint), (vec!["y"], vec!["x"]));
        assert_eq!(m.applied, 0);
        // Our earlier full checkpoints (no `map_log_bytes`) likewise.
        write_map_checkpoint(l, job, &map_cp("20261121051600", &["y", "z"], None)).unwrap();
        let m = newest_map_state(l, job).unwrap().unwrap();
        assert_eq!(m.file, "map-checkpoint-20261121051600.json");
        assert_eq!(ids(&m.checkpoint), (vec!["y", "z"], vec![]));
        assert!(m.warnings.is_empty());
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
