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
