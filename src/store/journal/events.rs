//! Event lines, `events/{repo}/{job_id}/events-{ts}.jsonl` (storage-format §4.2, run.md §5.4).

use crate::error::{Error, Result};
use crate::store::atomic;
use crate::store::layout::{ensure_dir, Layout};
use crate::store::records::{format_file_name_timestamp, Timestamp};
use serde_json::{Map, Value};
use std::fs::File;
use std::path::{Path, PathBuf};

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::records::{file_name_timestamp, normalize_event_type, read_jsonl};
    use serde_json::json;

    /// What the run writes is what the readers of storage-format §4.2 read: every line is a good
    /// flat event line, with the log's job id, and the file name carries a file-name timestamp.
    #[test]
    fn emitted_lines_are_flat_event_lines_the_reader_accepts() {
        let d = std::env::temp_dir().join(format!("prodigy-journal-events-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        let l = Layout::new(&d, "web").unwrap();
        let mut log = EventLog::open(&l, "mapreduce-1", "session-1", "corr-1").unwrap();
        let name = log
            .path()
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .to_string();
        let ts = name
            .strip_prefix("events-")
            .and_then(|n| n.strip_suffix(".jsonl"))
            .unwrap();
        assert!(file_name_timestamp(ts).is_some(), "{name}");
        log.emit(
            "agent_started",
            json!({"agent_id": "agent-1", "item_id": "item-0"}),
        )
        .unwrap();
        log.emit("JobCompleted", json!({"job_id": "other"}))
            .unwrap();
        log.emit("checkpoint_created", Value::Null).unwrap();
        log.sync().unwrap();

        let bytes = std::fs::read(log.path()).unwrap();
        let mut seen = Vec::new();
        let st = read_jsonl(bytes.as_slice(), |n, e| seen.push((n, e))).unwrap();
        assert_eq!((st.good, st.bad, st.torn_tail), (3, 0, false), "{st:?}");
        let (n, e) = &seen[0];
        assert_eq!(*n, 1);
        assert_eq!(e.event_type, normalize_event_type("AgentStarted"));
        assert_eq!(e.job_id.as_deref(), Some("mapreduce-1"));
        assert_eq!(e.agent_id.as_deref(), Some("agent-1"));
        assert!(e.timestamp.is_some());
        assert_eq!(e.raw["session_id"], json!("session-1"));
        assert_eq!(e.raw["correlation_id"], json!("corr-1"));
        assert_eq!(e.raw["item_id"], json!("item-0"));
        // Fields are added last: they win over the log's own keys.
        assert_eq!(seen[1].1.job_id.as_deref(), Some("other"));
        assert_eq!(seen[2].1.raw["job_id"], json!("mapreduce-1"));
        std::fs::remove_dir_all(&d).unwrap();
    }
}
