//! Record formats of the storage tree under `$PRODIGY_HOME`.
//!
//! This module owns the serde types of every file prodigy reads or writes there, and the shared
//! scalar encodings (timestamps, durations, file-name timestamps). The formats come from the
//! project's storage-format spec (§3–§5, cited below by section), the seeds (001, 003, 004), and
//! the files that Prodigy 0.4.4 really writes (`tests/fixtures/real-0.4.4/tree.tar.gz`). They are
//! documented for users in `man/prodigy-storage.5`; `tests/cli/repo.rs` fails when a public type
//! here is not named there.
//!
//! Conventions:
//! * Readers are lenient where 0.4.4 or the seeds omit fields (`#[serde(default)]`), and strict on
//!   what classification depends on (a session's `id` and `status`, a checkpoint's `phase`, a job's
//!   `phase`/`status`, a lock's holder). A strict failure surfaces as [`ParseError`], which the
//!   caller must treat as "unknown: keep" (safety.md R4).
//! * Every record struct keeps unknown fields in `extra` (`#[serde(flatten)]`), so a rewrite
//!   preserves whatever a newer or older writer added (storage-format.md §4.1 "Unknown fields are
//!   kept on rewrite", §4.3 "extra fields are kept").
//! * Timestamps inside files are RFC 3339 and written in UTC with `Z` ([`Timestamp`]); durations
//!   are `{"secs", "nanos"}` ([`DurationValue`]).
//! * Nothing here touches the filesystem except through the `std::io::BufRead` given to
//!   [`read_jsonl`]; writing is [`crate::store::atomic`]'s job (serialize with [`to_json_bytes`]).

use serde::de::{self, DeserializeOwned, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::ser::Serializer;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::fmt;
use std::io::{self, BufRead};
use std::path::PathBuf;
use time::format_description::well_known::Rfc3339;
use time::{Date, Month, OffsetDateTime, PrimitiveDateTime, Time, UtcOffset};

/// Unknown JSON fields of a record, kept verbatim so that a rewrite preserves them.
pub type Extra = Map<String, Value>;

// ---------------------------------------------------------------------------------------------
// Errors and generic parse / serialize
// ---------------------------------------------------------------------------------------------

/// Why a file or line could not be read as the expected record.
///
/// `line` and `column` are 1-based positions from `serde_json` when it has one; `0, 0` means the
/// error has no position (an empty file, or a well-formed JSON value of the wrong shape detected
/// after parsing, e.g. an event line that is not an object).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// 1-based line of the error, 0 if none.
    pub line: usize,
    /// 1-based column (byte) of the error, 0 if none.
    pub column: usize,
    /// What went wrong, without the position.
    pub message: String,
}

impl ParseError {
    fn no_position(message: impl Into<String>) -> Self {
        ParseError {
            line: 0,
            column: 0,
            message: message.into(),
        }
    }

    fn from_json(e: &serde_json::Error) -> Self {
        let line = e.line();
        let column = e.column();
        let mut message = e.to_string();
        let suffix = format!(" at line {line} column {column}");
        if message.ends_with(&suffix) {
            message.truncate(message.len() - suffix.len());
        }
        ParseError {
            line,
            column,
            message,
        }
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "line {}, column {}: {}",
            self.line, self.column, self.message
        )
    }
}

impl std::error::Error for ParseError {}

/// Parses one whole JSON file (any record type of this module) from its bytes.
///
/// An empty or whitespace-only input gives `ParseError { line: 0, column: 0, message: "empty
/// file" }` (0.4.4 leaves 0-byte `sessions/{id}.json` after Ctrl-C: storage-format.md §5,
/// `fixtures/real-0.4.4/README.md`). Other errors keep `serde_json`'s line and column. Nesting is
/// limited by `serde_json`'s recursion limit (128), so hostile deeply nested files fail cleanly.
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ParseError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ParseError::no_position("empty file"));
    }
    serde_json::from_slice(bytes).map_err(|e| ParseError::from_json(&e))
}

/// Serializes a record as pretty JSON (two-space indent, like 0.4.4's `to_string_pretty`) followed
/// by a trailing newline, ready for [`crate::store::atomic::write_atomic`].
///
/// # Panics
/// Only if `T`'s `Serialize` fails, which the types of this module never do except
/// [`OrphanEntry::path`] holding a non-UTF-8 path; use [`try_to_json_bytes`] where that can happen.
pub fn to_json_bytes<T: Serialize>(v: &T) -> Vec<u8> {
    try_to_json_bytes(v).expect("record serialization failed")
}

/// Fallible form of [`to_json_bytes`] (fails for non-string map keys or non-UTF-8 paths).
pub fn try_to_json_bytes<T: Serialize>(v: &T) -> Result<Vec<u8>, serde_json::Error> {
    let mut out = serde_json::to_vec_pretty(v)?;
    out.push(b'\n');
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Timestamp
// ---------------------------------------------------------------------------------------------

/// A point in time inside a file (storage-format.md §3: "RFC 3339 in UTC with `Z` (fractional
/// seconds allowed)").
///
/// Deserializes from any RFC 3339 string (any offset, 0–9 fractional digits). Serializes in UTC
/// with `Z` and the fraction printed the way 0.4.4 (chrono) prints it: none when the nanoseconds
/// are 0, else 3, 6 or 9 digits, the fewest that are exact. So a 0.4.4 value such as
/// `2026-11-21T05:14:50.597527875Z` or `2026-11-21T05:15:42.674403920Z` round-trips byte for
/// byte; a non-UTC input is rewritten in UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub OffsetDateTime);

impl Timestamp {
    /// The current wall-clock time, in UTC.
    pub fn now() -> Self {
        Timestamp(OffsetDateTime::now_utc())
    }

    /// Whole seconds since the Unix epoch (floor; negative before 1970).
    pub fn unix_seconds(&self) -> i64 {
        self.0.unix_timestamp()
    }

    /// Parses an RFC 3339 string (any offset, fractional seconds allowed).
    pub fn parse_rfc3339(s: &str) -> Option<Self> {
        OffsetDateTime::parse(s, &Rfc3339).ok().map(Timestamp)
    }
}

impl fmt::Display for Timestamp {
    /// RFC 3339 in UTC with `Z`, fraction as 0, 3, 6 or 9 digits (see [`Timestamp`]).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = self.0.to_offset(UtcOffset::UTC);
        let year = t.year();
        if (0..=9999).contains(&year) {
            write!(f, "{year:04}")?;
        } else if year < 0 {
            write!(f, "-{:04}", year.unsigned_abs())?;
        } else {
            write!(f, "+{year}")?;
        }
        write!(
            f,
            "-{:02}-{:02}T{:02}:{:02}:{:02}",
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second()
        )?;
        let n = t.nanosecond();
        if n == 0 {
        } else if n % 1_000_000 == 0 {
            write!(f, ".{:03}", n / 1_000_000)?;
        } else if n % 1_000 == 0 {
            write!(f, ".{:06}", n / 1_000)?;
        } else {
            write!(f, ".{n:09}")?;
        }
        f.write_str("Z")
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Timestamp;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an RFC 3339 timestamp string")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Timestamp, E> {
                OffsetDateTime::parse(s, &Rfc3339)
                    .map(Timestamp)
                    .map_err(|e| E::custom(format!("invalid RFC 3339 timestamp {s:?}: {e}")))
            }
        }
        d.deserialize_str(V)
    }
}

// ---------------------------------------------------------------------------------------------
// Duration
// ---------------------------------------------------------------------------------------------

/// A duration inside a file (storage-format.md §3: `{"secs": u64, "nanos": u32}`; readers also
/// accept 0.4.4's `[secs, nanos]` arrays). Units: whole seconds plus nanoseconds.
///
/// Deserialization normalizes `nanos >= 1e9` into `secs` (as serde does for `std::time::Duration`)
/// and fails on overflow. Serializes as the object form.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct DurationValue {
    /// Whole seconds.
    pub secs: u64,
    /// Nanoseconds, `< 1_000_000_000` after deserialization.
    pub nanos: u32,
}

impl DurationValue {
    fn normalized<E: de::Error>(secs: u64, nanos: u32) -> Result<Self, E> {
        let extra = u64::from(nanos / 1_000_000_000);
        let secs = secs
            .checked_add(extra)
            .ok_or_else(|| E::custom("duration overflows u64 seconds"))?;
        Ok(DurationValue {
            secs,
            nanos: nanos % 1_000_000_000,
        })
    }
}

impl From<DurationValue> for std::time::Duration {
    fn from(d: DurationValue) -> Self {
        std::time::Duration::new(d.secs, d.nanos)
    }
}

impl From<std::time::Duration> for DurationValue {
    fn from(d: std::time::Duration) -> Self {
        DurationValue {
            secs: d.as_secs(),
            nanos: d.subsec_nanos(),
        }
    }
}

impl<'de> Deserialize<'de> for DurationValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = DurationValue;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration as {\"secs\": u64, \"nanos\": u32} or [secs, nanos]")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<DurationValue, A::Error> {
                let secs: u64 = seq
                    .next_element()?
                    .ok_or_else(|| de::Error::invalid_length(0, &self))?;
                let nanos: u32 = seq
                    .next_element()?
                    .ok_or_else(|| de::Error::invalid_length(1, &self))?;
                if seq.next_element::<de::IgnoredAny>()?.is_some() {
                    return Err(de::Error::invalid_length(3, &self));
                }
                DurationValue::normalized(secs, nanos)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<DurationValue, A::Error> {
                let mut secs: Option<u64> = None;
                let mut nanos: Option<u32> = None;
                while let Some(k) = map.next_key::<String>()? {
                    match k.as_str() {
                        "secs" if secs.is_some() => return Err(de::Error::duplicate_field("secs")),
                        "nanos" if nanos.is_some() => {
                            return Err(de::Error::duplicate_field("nanos"))
                        }
                        "secs" => secs = Some(map.next_value()?),
                        "nanos" => nanos = Some(map.next_value()?),
                        _ => {
                            map.next_value::<de::IgnoredAny>()?;
                        }
                    }
                }
                let secs = secs.ok_or_else(|| de::Error::missing_field("secs"))?;
                let nanos = nanos.ok_or_else(|| de::Error::missing_field("nanos"))?;
                DurationValue::normalized(secs, nanos)
            }
        }
        d.deserialize_any(V)
    }
}

// ---------------------------------------------------------------------------------------------
// File-name timestamps and checkpoint file names
// ---------------------------------------------------------------------------------------------

/// Parses a timestamp from a file name (storage-format.md §3: `YYYYmmddHHMMSS` UTC; readers also
/// accept 0.4.4's `YYYYmmdd_HHMMSS`, as in `events-20261121_051450.jsonl`). Exactly those shapes,
/// ASCII digits only, a real calendar date and time; anything else is `None`.
pub fn file_name_timestamp(ts: &str) -> Option<Timestamp> {
    let b = ts.as_bytes();
    let digits: Vec<u8> = match b.len() {
        14 => b.to_vec(),
        15 if b[8] == b'_' => b[..8].iter().chain(&b[9..]).copied().collect(),
        _ => return None,
    };
    if !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> u32 {
        digits[r]
            .iter()
            .fold(0u32, |acc, d| acc * 10 + u32::from(d - b'0'))
    };
    let year = i32::try_from(num(0..4)).ok()?;
    let month = Month::try_from(u8::try_from(num(4..6)).ok()?).ok()?;
    let day = u8::try_from(num(6..8)).ok()?;
    let date = Date::from_calendar_date(year, month, day).ok()?;
    let time = Time::from_hms(
        u8::try_from(num(8..10)).ok()?,
        u8::try_from(num(10..12)).ok()?,
        u8::try_from(num(12..14)).ok()?,
    )
    .ok()?;
    Some(Timestamp(PrimitiveDateTime::new(date, time).assume_utc()))
}

/// Formats a timestamp for a file name in the canonical `YYYYmmddHHMMSS` UTC form
/// (storage-format.md §3), e.g. for `map-checkpoint-{ts}.json` or `events-{ts}.jsonl`.
pub fn format_file_name_timestamp(t: &Timestamp) -> String {
    let t = t.0.to_offset(UtcOffset::UTC);
    format!(
        "{:04}{:02}{:02}{:02}{:02}{:02}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// The three MapReduce checkpoint kinds of `state/{repo}/mapreduce/jobs/{job_id}/`
/// (storage-format.md §4.4; seed 003 "Checkpoint Types").
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CheckpointKind {
    /// `setup-checkpoint.json`, `"phase": "setup"`.
    Setup,
    /// `map-checkpoint-{ts}.json`, `"phase": "map"`.
    Map,
    /// `reduce-checkpoint-v1-{ts}.json`, `"phase": "reduce"`.
    Reduce,
}

impl CheckpointKind {
    /// The value of the checkpoint's `phase` field: `"setup"`, `"map"` or `"reduce"`.
    pub fn as_str(self) -> &'static str {
        match self {
            CheckpointKind::Setup => "setup",
            CheckpointKind::Map => "map",
            CheckpointKind::Reduce => "reduce",
        }
    }
}

/// Classifies a checkpoint file name (storage-format.md §3/§4.4): `setup-checkpoint.json` →
/// `(Setup, None)`, `map-checkpoint-{ts}.json` → `(Map, Some(ts))`,
/// `reduce-checkpoint-v1-{ts}.json` → `(Reduce, Some(ts))`, where `ts` is `YYYYmmddHHMMSS` or
/// 0.4.4's `YYYYmmdd_HHMMSS` and a valid UTC time ([`file_name_timestamp`]). Anything else (other
/// names, other timestamp shapes, temp files) is `None`. Matching is exact and case-sensitive.
pub fn checkpoint_kind_of_file_name(name: &str) -> Option<(CheckpointKind, Option<String>)> {
    if name == "setup-checkpoint.json" {
        return Some((CheckpointKind::Setup, None));
    }
    let stem = name.strip_suffix(".json")?;
    let (kind, ts) = if let Some(ts) = stem.strip_prefix("map-checkpoint-") {
        (CheckpointKind::Map, ts)
    } else if let Some(ts) = stem.strip_prefix("reduce-checkpoint-v1-") {
        (CheckpointKind::Reduce, ts)
    } else {
        return None;
    };
    file_name_timestamp(ts)?;
    Some((kind, Some(ts.to_string())))
}

// ---------------------------------------------------------------------------------------------
// §4.1 Session record
// ---------------------------------------------------------------------------------------------

/// `status` of a session record (storage-format.md §4.1; 0.4.4 `SessionStatus`). Exactly these six
/// strings; any other value is a parse error (safety.md §1: unknown status → Unknown, keep).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SessionStatus {
    /// `"Initializing"`.
    Initializing,
    /// `"Running"` (0.4.4 leaves killed runs `Running` forever: storage-format.md §5).
    Running,
    /// `"Paused"`.
    Paused,
    /// `"Completed"`.
    Completed,
    /// `"Failed"` (0.4.4 can resume these: safety.md §1).
    Failed,
    /// `"Cancelled"`.
    Cancelled,
}

impl SessionStatus {
    /// The JSON spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            SessionStatus::Initializing => "Initializing",
            SessionStatus::Running => "Running",
            SessionStatus::Paused => "Paused",
            SessionStatus::Completed => "Completed",
            SessionStatus::Failed => "Failed",
            SessionStatus::Cancelled => "Cancelled",
        }
    }

    /// Initializing, Running or Paused: the statuses an Active session has (safety.md §1).
    pub fn is_live_status(self) -> bool {
        matches!(
            self,
            SessionStatus::Initializing | SessionStatus::Running | SessionStatus::Paused
        )
    }
}

/// Liveness of the writer that owns a session, stored at `metadata.owner` of the session record
/// (storage-format.md §4.1: `{"pid": u32, "hostname": string, "heartbeat_at": time}`; 0.4.4
/// records none).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionOwner {
    /// Process id of the owner on `hostname`.
    pub pid: u32,
    /// Host name of the owner's machine.
    pub hostname: String,
    /// Last time the owner proved it was alive.
    pub heartbeat_at: Timestamp,
}

/// `mapreduce_data` of a session record (storage-format.md §4.1; 0.4.4 `MapReduceSession`, which
/// also has `reduce_results`, kept in `extra`). Counts are numbers of work items; all fields are
/// optional because the seeds define none of them. 0.4.4 writes `null` here in practice,
/// even for MapReduce runs (see the fixture's `session-*.json`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MapReduceData {
    /// MapReduce job id (e.g. `mapreduce-20261121_051522`).
    #[serde(default)]
    pub job_id: Option<String>,
    /// Number of work items in the job.
    #[serde(default)]
    pub total_items: Option<u64>,
    /// Work items processed so far.
    #[serde(default)]
    pub processed_items: Option<u64>,
    /// Work items that failed.
    #[serde(default)]
    pub failed_items: Option<u64>,
    /// Number of agents.
    #[serde(default)]
    pub agent_count: Option<u64>,
    /// `"Setup" | "Map" | "Reduce" | "Complete"` (kept as a string: not needed to classify).
    #[serde(default)]
    pub phase: Option<String>,
    /// Unknown fields, kept on rewrite.
    #[serde(flatten)]
    pub extra: Extra,
}

/// A session record, `sessions/{session_id}.json` (storage-format.md §4.1, the 0.4.4
/// `UnifiedSession` shape). `id` and `status` are required; everything else defaults when absent.
///
/// Note for writers: 0.4.4 itself cannot read a record whose `started_at`/`updated_at` are null or
/// whose `timings` is not an object of durations; use [`SessionRecord::new`] for new records.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionRecord {
    /// Session id: `workflow-{unix_ms}` or `session-{uuid}` in 0.4.4 (storage-format.md §5).
    pub id: String,
    /// `"Workflow"` or `"MapReduce"` (0.4.4 writes `"Workflow"` even for MapReduce runs).
    #[serde(default)]
    pub session_type: String,
    /// Lifecycle status; unknown values are a parse error.
    pub status: SessionStatus,
    /// When the session started.
    #[serde(default)]
    pub started_at: Option<Timestamp>,
    /// Last update written by the session's owner.
    #[serde(default)]
    pub updated_at: Option<Timestamp>,
    /// When it reached a terminal status (`null` before).
    #[serde(default)]
    pub completed_at: Option<Timestamp>,
    /// Free-form metadata; prodigy's own writers add `owner` ([`SessionOwner`]).
    #[serde(default)]
    pub metadata: Extra,
    /// 0.4.4 session checkpoints (`{id, created_at, state, metadata}`); non-empty means
    /// "something to resume from" (safety.md §1).
    #[serde(default)]
    pub checkpoints: Vec<Value>,
    /// Step name → duration in 0.4.4 (`{"secs","nanos"}` values). `null` when absent; a present
    /// value is kept as is.
    #[serde(default)]
    pub timings: Value,
    /// Error message of a failed session.
    #[serde(default)]
    pub error: Option<String>,
    /// 0.4.4 `WorkflowSession` object, kept opaque.
    #[serde(default)]
    pub workflow_data: Option<Value>,
    /// MapReduce progress, `null` in every 0.4.4 file seen.
    #[serde(default)]
    pub mapreduce_data: Option<MapReduceData>,
    /// Unknown fields, kept on rewrite.
    #[serde(flatten)]
    pub extra: Extra,
}

impl SessionRecord {
    /// A new record in the shape 0.4.4 can read back: `started_at = updated_at = now`,
    /// `completed_at = null`, empty `metadata`/`checkpoints`, `timings = {}`, no data objects.
    pub fn new(id: impl Into<String>, session_type: impl Into<String>, now: Timestamp) -> Self {
        SessionRecord {
            id: id.into(),
            session_type: session_type.into(),
            status: SessionStatus::Initializing,
            started_at: Some(now),
            updated_at: Some(now),
            completed_at: None,
            metadata: Extra::new(),
            checkpoints: Vec::new(),
            timings: Value::Object(Map::new()),
            error: None,
            workflow_data: None,
            mapreduce_data: None,
            extra: Extra::new(),
        }
    }

    /// The owner recorded at `metadata.owner` (storage-format.md §4.1); `None` when absent or not
    /// exactly the `{pid, hostname, heartbeat_at}` shape (a malformed owner is "owner unknown").
    pub fn owner(&self) -> Option<SessionOwner> {
        self.metadata
            .get("owner")
            .and_then(|v| SessionOwner::deserialize(v).ok())
    }

    /// Records `o` at `metadata.owner`, replacing any previous owner.
    pub fn set_owner(&mut self, o: &SessionOwner) {
        let v = serde_json::json!({
            "pid": o.pid,
            "hostname": o.hostname,
            "heartbeat_at": o.heartbeat_at.to_string(),
        });
        self.metadata.insert("owner".to_string(), v);
    }
}

// ---------------------------------------------------------------------------------------------
// §4.2 Event lines
// ---------------------------------------------------------------------------------------------

/// Longest JSONL line [`read_jsonl`] buffers: 16 MiB. Longer lines are skipped and counted bad.
pub const MAX_JSONL_LINE: usize = 16 * 1024 * 1024;

/// One line of `events/{repo}/{job_id}/events-*.jsonl` (storage-format.md §4.2), in either shape:
/// the seeds' flat `{"timestamp", "event_type", "agent_id", …}` (seed 001) or 0.4.4's
/// `{"id", "timestamp", "correlation_id", "event": {"event_type": "agent_started", "job_id", …},
/// "metadata"}` (0.4.4 `EventRecord`, `MapReduceEvent` is `#[serde(tag = "event_type",
/// rename_all = "snake_case")]`).
#[derive(Debug, Clone, PartialEq)]
pub struct EventLine {
    /// The line's top-level `timestamp` (or, failing that, the inner event's), if it is a valid
    /// RFC 3339 string; an invalid one is `None`, not an error.
    pub timestamp: Option<Timestamp>,
    /// [`normalize_event_type`] of `raw_type`.
    pub event_type: String,
    /// The type as written (`"AgentStarted"`, `"agent_started"`, `"d_l_q_item_added"`, …).
    pub raw_type: String,
    /// `job_id` from the top level, else from the inner event object.
    pub job_id: Option<String>,
    /// `agent_id` from the top level, else from the inner event object.
    pub agent_id: Option<String>,
    /// The whole line as parsed.
    pub raw: Value,
}

/// Canonical form of an event type for comparison (storage-format.md §4.2: names compare case- and
/// underscore-insensitively): lowercase with every `_` removed, so `AgentStarted`,
/// `agent_started` and `AGENT_STARTED` give `agentstarted`, and 0.4.4's `d_l_q_item_added` equals
/// `DlqItemAdded`.
pub fn normalize_event_type(s: &str) -> String {
    s.chars()
        .filter(|&c| c != '_')
        .flat_map(char::to_lowercase)
        .collect()
}

/// Parses one event line (without or with its trailing `\n`/`\r\n`) in either shape of
/// storage-format.md §4.2.
///
/// The type is found, in order: a top-level string `event_type` (flat shape); else `event`: an
/// object with a string `event_type` (0.4.4's internally tagged enum), an object with exactly one
/// key (an externally tagged enum, `{"AgentStarted": {…}}`), or a string (a unit variant). Unknown
/// types are fine. Errors: invalid JSON (with position), a value that is not an object, or no
/// event type found (no position).
pub fn parse_event_line(line: &[u8]) -> Result<EventLine, ParseError> {
    let raw: Value = parse(line)?;
    let obj = raw
        .as_object()
        .ok_or_else(|| ParseError::no_position("event line is not a JSON object"))?;

    let mut inner: Option<&Map<String, Value>> = None;
    let raw_type: String = if let Some(t) = obj.get("event_type") {
        t.as_str()
            .ok_or_else(|| ParseError::no_position("event_type is not a string"))?
            .to_string()
    } else {
        match obj.get("event") {
            Some(Value::Object(ev)) => {
                if let Some(t) = ev.get("event_type") {
                    inner = Some(ev);
                    t.as_str()
                        .ok_or_else(|| ParseError::no_position("event.event_type is not a string"))?
                        .to_string()
                } else if ev.len() == 1 {
                    let (k, v) = ev.iter().next().expect("one key");
                    inner = v.as_object();
                    k.clone()
                } else {
                    return Err(ParseError::no_position(
                        "event object has no event_type and is not a single-key variant",
                    ));
                }
            }
            Some(Value::String(s)) => s.clone(),
            Some(_) => return Err(ParseError::no_position("event is not an object or string")),
            None => return Err(ParseError::no_position("no event_type and no event")),
        }
    };

    let get_str = |key: &str| -> Option<String> {
        obj.get(key)
            .and_then(Value::as_str)
            .or_else(|| inner.and_then(|m| m.get(key)).and_then(Value::as_str))
            .map(str::to_string)
    };
    let timestamp = obj
        .get("timestamp")
        .and_then(Value::as_str)
        .and_then(Timestamp::parse_rfc3339)
        .or_else(|| {
            inner
                .and_then(|m| m.get("timestamp"))
                .and_then(Value::as_str)
                .and_then(Timestamp::parse_rfc3339)
        });
    let job_id = get_str("job_id");
    let agent_id = get_str("agent_id");
    Ok(EventLine {
        timestamp,
        event_type: normalize_event_type(&raw_type),
        raw_type,
        job_id,
        agent_id,
        raw,
    })
}

/// What [`read_jsonl`] saw in one JSONL file.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JsonlStats {
    /// Lines accepted by [`parse_event_line`] (and handed to the callback).
    pub good: u64,
    /// Non-blank lines that were rejected (including lines over [`MAX_JSONL_LINE`]), except a
    /// torn tail.
    pub bad: u64,
    /// The file ends in a line without `\n` that does not parse: a write cut short by a crash
    /// (storage-format.md §3: "a reader tolerates a torn last line (counts it, does not fail on
    /// it)"). Not counted in `bad`.
    pub torn_tail: bool,
    /// 1-based line number of the first bad line, if any.
    pub first_bad_line: Option<u64>,
}

/// Streams the event lines of a JSONL file (storage-format.md §4.2), calling `each(line_no, event)`
/// for every good line; `line_no` is the 1-based physical line number (blank lines count).
///
/// Memory is bounded by the longest line, capped at [`MAX_JSONL_LINE`] (16 MiB): a longer line is
/// skipped up to the next `\n` and counted bad. Lines end at `\n`; a trailing `\r` is dropped.
/// Blank (whitespace-only) lines are ignored. A final line without `\n` that parses is good; one
/// that does not (or is over the cap) is a torn tail, not counted bad. Good lines are exactly the
/// non-overlong lines that [`parse_event_line`] accepts. Only I/O errors are returned as errors
/// (`Interrupted` is retried).
pub fn read_jsonl<R: BufRead>(r: R, each: impl FnMut(u64, EventLine)) -> io::Result<JsonlStats> {
    read_jsonl_capped(r, MAX_JSONL_LINE, each)
}

fn read_jsonl_capped<R: BufRead>(
    mut r: R,
    cap: usize,
    mut each: impl FnMut(u64, EventLine),
) -> io::Result<JsonlStats> {
    let mut stats = JsonlStats::default();
    let mut buf = Vec::new();
    let mut line_no: u64 = 0;
    loop {
        buf.clear();
        let Some((overlong, has_newline)) = read_capped_line(&mut r, &mut buf, cap)? else {
            break;
        };
        line_no += 1;
        let mut bad = || {
            if has_newline {
                stats.bad += 1;
                stats.first_bad_line.get_or_insert(line_no);
            } else {
                stats.torn_tail = true;
            }
        };
        if overlong {
            bad();
            continue;
        }
        if buf.last() == Some(&b'\r') {
            buf.pop();
        }
        if buf.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match parse_event_line(&buf) {
            Ok(ev) => {
                stats.good += 1;
                each(line_no, ev);
            }
            Err(_) => bad(),
        }
    }
    Ok(stats)
}

/// Reads one line (without its `\n`) into `buf`, keeping at most `cap` bytes. Returns `None` at
/// end of input, else `(overlong, ended_with_newline)`; an overlong line is consumed entirely but
/// `buf` is left empty.
fn read_capped_line<R: BufRead>(
    r: &mut R,
    buf: &mut Vec<u8>,
    cap: usize,
) -> io::Result<Option<(bool, bool)>> {
    let mut consumed_any = false;
    let mut overlong = false;
    loop {
        let available = match r.fill_buf() {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if available.is_empty() {
            return Ok(consumed_any.then_some((overlong, false)));
        }
        consumed_any = true;
        let (chunk, used, done) = match available.iter().position(|&b| b == b'\n') {
            Some(i) => (&available[..i], i + 1, true),
            None => (available, available.len(), false),
        };
        if !overlong {
            if buf.len() + chunk.len() > cap {
                overlong = true;
                buf.clear();
                buf.shrink_to(cap.min(64 * 1024));
            } else {
                buf.extend_from_slice(chunk);
            }
        }
        r.consume(used);
        if done {
            return Ok(Some((overlong, true)));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// §4.3 Dead letter queue
// ---------------------------------------------------------------------------------------------

/// Canonical DLQ file `dlq/{repo}/{job_id}/dlq-items.json` (storage-format.md §4.3; seed 001
/// "Dead Letter Queue Storage").
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DlqFile {
    /// Failed work items of the job.
    #[serde(default)]
    pub items: Vec<DlqItem>,
    /// Unknown fields, kept on rewrite.
    #[serde(flatten)]
    pub extra: Extra,
}

/// One item of a canonical DLQ file (storage-format.md §4.3).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DlqItem {
    /// Work item id (e.g. `item-123`).
    pub item_id: String,
    /// The work item's data, opaque.
    #[serde(default)]
    pub work_item: Value,
    /// One entry per failed attempt, oldest first.
    #[serde(default)]
    pub failure_history: Vec<DlqFailure>,
    /// Unknown fields, kept on rewrite.
    #[serde(flatten)]
    pub extra: Extra,
}

/// One failed attempt in a canonical DLQ item (storage-format.md §4.3).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DlqFailure {
    /// When the attempt failed.
    #[serde(default)]
    pub timestamp: Option<Timestamp>,
    /// Error message.
    #[serde(default)]
    pub error: Option<String>,
    /// Path of the Claude JSON log of the attempt, if any.
    #[serde(default)]
    pub json_log_location: Option<String>,
    /// Unknown fields, kept on rewrite.
    #[serde(flatten)]
    pub extra: Extra,
}

/// 0.4.4 DLQ item, one file per item at
/// `dlq/{repo}/{job_id}/mapreduce/dlq/{job_id}/items/{item_id}.json` (storage-format.md §4.3,
/// fixture `items/item_3.json`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LegacyDlqItem {
    /// Work item id (`item_3`).
    pub item_id: String,
    /// The work item's data, opaque.
    #[serde(default)]
    pub item_data: Value,
    /// First failed attempt.
    #[serde(default)]
    pub first_attempt: Option<Timestamp>,
    /// Last failed attempt.
    #[serde(default)]
    pub last_attempt: Option<Timestamp>,
    /// Number of failed attempts.
    #[serde(default)]
    pub failure_count: u64,
    /// One entry per failed attempt.
    #[serde(default)]
    pub failure_history: Vec<LegacyDlqFailure>,
    /// Hash grouping similar failures (hex string).
    #[serde(default)]
    pub error_signature: Option<String>,
    /// Worktree left by the failed agent, opaque (`null` in the fixture).
    #[serde(default)]
    pub worktree_artifacts: Value,
    /// Whether 0.4.4 may reprocess the item.
    #[serde(default)]
    pub reprocess_eligible: bool,
    /// Whether a human must look at it.
    #[serde(default)]
    pub manual_review_required: bool,
    /// Unknown fields, kept on rewrite.
    #[serde(flatten)]
    pub extra: Extra,
}

/// One failed attempt of a 0.4.4 DLQ item (fixture: also has `stack_trace`, `agent_id`,
/// `step_failed`, `duration_ms`, kept in `extra`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LegacyDlqFailure {
    /// 1-based attempt number.
    #[serde(default)]
    pub attempt_number: u64,
    /// When the attempt failed.
    #[serde(default)]
    pub timestamp: Option<Timestamp>,
    /// 0.4.4 `ErrorType` enum, opaque (`"Unknown"` in the fixture; data-carrying variants are
    /// objects).
    #[serde(default)]
    pub error_type: Value,
    /// Error message.
    #[serde(default)]
    pub error_message: String,
    /// Unknown fields, kept on rewrite.
    #[serde(flatten)]
    pub extra: Extra,
}

/// 0.4.4 DLQ index, `dlq/{repo}/{job_id}/mapreduce/dlq/{job_id}/index.json` beside `items/`
/// (storage-format.md §4.3, fixture).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LegacyDlqIndex {
    /// Number of items.
    #[serde(default)]
    pub item_count: u64,
    /// Item ids (file stems under `items/`).
    #[serde(default)]
    pub item_ids: Vec<String>,
    /// Job id.
    #[serde(default)]
    pub job_id: Option<String>,
    /// Last update.
    #[serde(default)]
    pub updated_at: Option<Timestamp>,
    /// Unknown fields, kept on rewrite.
    #[serde(flatten)]
    pub extra: Extra,
}

// ---------------------------------------------------------------------------------------------
// §4.4 MapReduce job state
// ---------------------------------------------------------------------------------------------

/// Generates a zero-sized type that (de)serializes as exactly one string: the `phase` tag of a
/// checkpoint kind. Any other value is a parse error.
macro_rules! phase_tag {
    ($(#[$doc:meta])* $name:ident, $value:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
        pub struct $name;

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str($value)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V;
                impl<'de> Visitor<'de> for V {
                    type Value = $name;
                    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                        write!(f, "the phase {:?}", $value)
                    }
                    fn visit_str<E: de::Error>(self, s: &str) -> Result<$name, E> {
                        if s == $value {
                            Ok($name)
                        } else {
                            Err(E::invalid_value(de::Unexpected::Str(s), &self))
                        }
                    }
                }
                d.deserialize_str(V)
            }
        }
    };
}

phase_tag!(
    /// The `"phase": "setup"` tag of a [`SetupCheckpoint`] (storage-format.md §4.4).
    SetupPhase,
    "setup"
);
phase_tag!(
    /// The `"phase": "map"` tag of a [`MapCheckpoint`] (storage-format.md §4.4).
    MapPhase,
    "map"
);
phase_tag!(
    /// The `"phase": "reduce"` tag of a [`ReduceCheckpoint`] (storage-format.md §4.4).
    ReducePhase,
    "reduce"
);

/// `setup-checkpoint.json` (storage-format.md §4.4; seed 003 "Setup Phase"). `phase` must be
/// `"setup"`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SetupCheckpoint {
    /// Always `"setup"`.
    pub phase: SetupPhase,
    /// Whether the setup phase finished.
    #[serde(default)]
    pub completed: bool,
    /// Outputs captured by setup steps.
    #[serde(default)]
    pub outputs: Extra,
    /// When the checkpoint was taken.
    #[serde(default)]
    pub timestamp: Option<Timestamp>,
    /// Unknown fields, kept on rewrite.
    #[serde(flatten)]
    pub extra: Extra,
}

/// `map-checkpoint-{ts}.json` (storage-format.md §4.4; seed 003 "Map Phase"). `phase` must be
/// `"map"`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MapCheckpoint {
    /// Always `"map"`.
    pub phase: MapPhase,
    /// Items done, with their results.
    #[serde(default)]
    pub completed_items: Vec<CompletedWorkItem>,
    /// Work item id → progress of the agent working on it.
    #[serde(default)]
    pub in_progress_items: BTreeMap<String, WorkItemProgress>,
    /// Items not started yet.
    #[serde(default)]
    pub pending_items: Vec<WorkItem>,
    /// Items that failed.
    #[serde(default)]
    pub failed_items: Vec<FailedWorkItem>,
    /// Full results of completed agents, opaque.
    #[serde(default)]
    pub agent_results: Extra,
    /// When the checkpoint was taken.
    #[serde(default)]
    pub timestamp: Option<Timestamp>,
    /// Unknown fields, kept on rewrite.
    #[serde(flatten)]
    pub extra: Extra,
}

/// `reduce-checkpoint-v1-{ts}.json` (storage-format.md §4.4; seed 003 "Reduce Phase"). `phase`
/// must be `"reduce"`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ReduceCheckpoint {
    /// Always `"reduce"`.
    pub phase: ReducePhase,
    /// Indices of completed reduce commands.
    #[serde(default)]
    pub completed_steps: Vec<u32>,
    /// Index of the reduce command being executed.
    #[serde(default)]
    pub current_step: u32,
    /// Output of completed reduce steps, opaque.
    #[serde(default)]
    pub step_results: Extra,
    /// Aggregated map results, opaque.
    #[serde(default)]
    pub map_results: Extra,
    /// When the checkpoint was taken.
    #[serde(default)]
    pub timestamp: Option<Timestamp>,
    /// Unknown fields, kept on rewrite.
    #[serde(flatten)]
    pub extra: Extra,
}

/// A work item (storage-format.md §4.4 `WorkItem = {id: string, data: any}`; seed 003).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WorkItem {
    /// Work item id.
    pub id: String,
    /// Payload, opaque.
    #[serde(default)]
    pub data: Value,
    /// Unknown fields, kept on rewrite.
    #[serde(flatten)]
    pub extra: Extra,
}

/// A finished work item (storage-format.md §4.4 `CompletedWorkItem = {work_item, result:
/// AgentResult, completed_at}`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CompletedWorkItem {
    /// The item.
    pub work_item: WorkItem,
    /// What its agent produced.
    pub result: AgentResult,
    /// When it completed.
    #[serde(default)]
    pub completed_at: Option<Timestamp>,
    /// Unknown fields, kept on rewrite.
    #[serde(flatten)]
    pub extra: Extra,
}

/// A failed work item (storage-format.md §4.4 `FailedWorkItem = {work_item, error, failed_at,
/// retry_count}`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FailedWorkItem {
    /// The item.
    pub work_item: WorkItem,
    /// Error message.
    #[serde(default)]
    pub error: String,
    /// When it failed.
    #[serde(default)]
    pub failed_at: Option<Timestamp>,
    /// Retries so far.
    #[serde(default)]
    pub retry_count: u32,
    /// Unknown fields, kept on rewrite.
    #[serde(flatten)]
    pub extra: Extra,
}

/// Progress of an in-flight work item (storage-format.md §4.4 `WorkItemProgress = {work_item,
/// agent_id, started_at, last_update}`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WorkItemProgress {
    /// The item.
    pub work_item: WorkItem,
    /// Agent working on it.
    #[serde(default)]
    pub agent_id: String,
    /// When the agent started it.
    #[serde(default)]
    pub started_at: Option<Timestamp>,
    /// Last progress report.
    #[serde(default)]
    pub last_update: Option<Timestamp>,
    /// Unknown fields, kept on rewrite.
    #[serde(flatten)]
    pub extra: Extra,
}

/// Result of one agent (storage-format.md §4.4 `AgentResult = {item_id, status, output?, commits:
/// [string], duration, error?, worktree_path?, branch_name?}`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AgentResult {
    /// Work item id.
    pub item_id: String,
    /// Agent status, opaque: 0.4.4's `AgentStatus` is an enum whose variants may carry data
    /// (`"Success"`, `{"Failed": "…"}`), so it is kept as JSON.
    #[serde(default)]
    pub status: Value,
    /// Captured output.
    #[serde(default)]
    pub output: Option<String>,
    /// Commit hashes made by the agent.
    #[serde(default)]
    pub commits: Vec<String>,
    /// Wall time of the agent (`{"secs","nanos"}` or `[secs, nanos]`).
    #[serde(default)]
    pub duration: DurationValue,
    /// Error message.
    #[serde(default)]
    pub error: Option<String>,
    /// Agent worktree path.
    #[serde(default)]
    pub worktree_path: Option<String>,
    /// Agent branch.
    #[serde(default)]
    pub branch_name: Option<String>,
    /// Unknown fields, kept on rewrite.
    #[serde(flatten)]
    pub extra: Extra,
}

/// `phase` of `job-state.json` (storage-format.md §4.4), lowercase. Unknown values are a parse
/// error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobPhase {
    /// `"setup"`.
    Setup,
    /// `"map"`.
    Map,
    /// `"reduce"`.
    Reduce,
    /// `"complete"`: the job is not resumable.
    Complete,
}

/// `status` of `job-state.json` (storage-format.md §4.4), lowercase. Unknown values are a parse
/// error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobStatus {
    /// `"running"`.
    Running,
    /// `"paused"`: interrupted by SIGINT/SIGTERM, checkpoint written, resumable (run.md §5.5).
    Paused,
    /// `"completed"`.
    Completed,
    /// `"failed"`.
    Failed,
    /// `"cancelled"`.
    Cancelled,
}

/// `state/{repo}/mapreduce/jobs/{job_id}/job-state.json` (storage-format.md §4.4; the seeds only
/// name it). `job_id`, `phase` and `status` are required. Counts are numbers of work items.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobState {
    /// Job id.
    pub job_id: String,
    /// Owning session.
    #[serde(default)]
    pub session_id: Option<String>,
    /// Workflow name.
    #[serde(default)]
    pub workflow_name: Option<String>,
    /// Current phase.
    pub phase: JobPhase,
    /// Current status.
    pub status: JobStatus,
    /// Creation time.
    #[serde(default)]
    pub created_at: Option<Timestamp>,
    /// Last update.
    #[serde(default)]
    pub updated_at: Option<Timestamp>,
    /// Number of work items.
    #[serde(default)]
    pub total_items: u64,
    /// Items completed.
    #[serde(default)]
    pub completed_items: u64,
    /// Items failed.
    #[serde(default)]
    pub failed_items: u64,
    /// Unknown fields, kept on rewrite.
    #[serde(flatten)]
    pub extra: Extra,
}

/// `execution_state.status` of a 0.4.4 workflow checkpoint (storage-format.md §4.4). Unknown values
/// are a parse error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum LegacyExecStatus {
    /// `"Running"`.
    Running,
    /// `"Paused"`.
    Paused,
    /// `"Completed"`: the only status that is not evidence of resumability.
    Completed,
    /// `"Failed"`.
    Failed,
    /// `"Interrupted"`.
    Interrupted,
}

/// `execution_state` of a 0.4.4 workflow checkpoint (fixture: also `current_step_index`,
/// `total_steps`, `start_time`, `last_checkpoint`, … kept in `extra`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LegacyExecutionState {
    /// Execution status.
    pub status: LegacyExecStatus,
    /// Unknown fields, kept on rewrite.
    #[serde(flatten)]
    pub extra: Extra,
}

/// 0.4.4 workflow checkpoint, `state/{session_id}/checkpoints/{workflow_id}.checkpoint.json`
/// (storage-format.md §4.4/§5). Note: in the fixture `workflow_id` is *not* the session id (it is
/// a later `workflow-{ms}`); the owning session is the directory name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LegacyWorkflowCheckpoint {
    /// Workflow id (the file stem).
    pub workflow_id: String,
    /// Execution state; its `status` decides resumability.
    pub execution_state: LegacyExecutionState,
    /// When the checkpoint was written.
    #[serde(default)]
    pub timestamp: Option<Timestamp>,
    /// Unknown fields (`completed_steps`, `variable_state`, …), kept on rewrite.
    #[serde(flatten)]
    pub extra: Extra,
}

// ---------------------------------------------------------------------------------------------
// §4.5 – §4.7 and 0.4.4 worktree metadata
// ---------------------------------------------------------------------------------------------

/// Session↔job mapping, `state/{repo}/mappings/{session_id}.json` and `{job_id}.json`, same bytes
/// in both (storage-format.md §4.5; seed 004 "Mapping Format").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionJobMapping {
    /// Session id.
    pub session_id: String,
    /// Job id.
    pub job_id: String,
    /// Workflow name.
    #[serde(default)]
    pub workflow_name: String,
    /// When the mapping was created.
    pub created_at: Timestamp,
    /// Unknown fields, kept on rewrite.
    #[serde(flatten)]
    pub extra: Extra,
}

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

/// One entry of the orphaned-worktree registry `orphaned_worktrees/{repo}/{job_id}.json`, whose
/// content is a JSON array of these (storage-format.md §4.7; seed 004 "Registry Format").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrphanEntry {
    /// Absolute path of the worktree whose removal failed.
    pub path: PathBuf,
    /// Agent that created it.
    #[serde(default)]
    pub agent_id: String,
    /// Work item it processed.
    #[serde(default)]
    pub item_id: String,
    /// When the cleanup failed.
    pub failed_at: Timestamp,
    /// Error message of the failure.
    #[serde(default)]
    pub error: String,
    /// Unknown fields, kept on rewrite.
    #[serde(flatten)]
    pub extra: Extra,
}

/// The orphaned-worktree registry file: a JSON array (storage-format.md §4.7).
pub type OrphanRegistry = Vec<OrphanEntry>;

/// 0.4.4 worktree metadata, `worktrees/{repo}/.metadata/{name}.json` (storage-format.md §5;
/// fixture: also `created_at`, `iterations`, `stats`, `merged`, `interrupted_at`, … kept in
/// `extra`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LegacyWorktreeMeta {
    /// Owning session id; for MapReduce agents 0.4.4 writes the agent worktree's own name here.
    #[serde(default)]
    pub session_id: Option<String>,
    /// Worktree directory name.
    #[serde(default)]
    pub worktree_name: Option<String>,
    /// Branch, `prodigy-{name}`.
    #[serde(default)]
    pub branch: Option<String>,
    /// Branch it was created from.
    #[serde(default)]
    pub original_branch: Option<String>,
    /// `"in_progress"`, `"interrupted"`, `"merged"`, … (kept as a string).
    #[serde(default)]
    pub status: Option<String>,
    /// 0.4.4 considers the worktree's session resumable (safety.md §1).
    #[serde(default)]
    pub resumable: bool,
    /// Last update.
    #[serde(default)]
    pub updated_at: Option<Timestamp>,
    /// Unknown fields, kept on rewrite.
    #[serde(flatten)]
    pub extra: Extra,
}

impl LegacyWorkflowCheckpoint {
    /// True when `execution_state.status` is `Completed`: the only status that is not evidence
    /// that the session can be resumed (storage-format §4.4).
    pub fn is_completed(&self) -> bool {
        self.execution_state.status == LegacyExecStatus::Completed
    }

    /// The status as 0.4.4 spells it.
    pub fn status_str(&self) -> &'static str {
        match self.execution_state.status {
            LegacyExecStatus::Running => "Running",
            LegacyExecStatus::Paused => "Paused",
            LegacyExecStatus::Completed => "Completed",
            LegacyExecStatus::Failed => "Failed",
            LegacyExecStatus::Interrupted => "Interrupted",
        }
    }
}

impl JobState {
    /// True when the job cannot be resumed: status completed or cancelled, or phase complete.
    pub fn is_terminal(&self) -> bool {
        matches!(self.status, JobStatus::Completed | JobStatus::Cancelled)
            || self.phase == JobPhase::Complete
    }
}

/// Parse a checkpoint of the given kind (storage-format §4.4), discarding the value: `Ok` means
/// a resume could start from it.
pub fn parse_checkpoint(kind: CheckpointKind, bytes: &[u8]) -> Result<(), ParseError> {
    match kind {
        CheckpointKind::Setup => parse::<SetupCheckpoint>(bytes).map(drop),
        CheckpointKind::Map => parse::<MapCheckpoint>(bytes).map(drop),
        CheckpointKind::Reduce => parse::<ReduceCheckpoint>(bytes).map(drop),
    }
}

/// Reject JSON with a repeated key in any object, at any depth. serde_json keeps the last of
/// repeated keys in maps, so a record with two `owner` entries would silently mean the second;
/// safety R4 says such an ambiguous record is kept as unknown instead.
pub fn check_no_duplicate_keys(bytes: &[u8]) -> Result<(), ParseError> {
    use serde::de::{Deserializer, MapAccess, SeqAccess, Visitor};
    struct Strict;
    impl<'de> Deserialize<'de> for Strict {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            d.deserialize_any(StrictVisitor)
        }
    }
    struct StrictVisitor;
    impl<'de> Visitor<'de> for StrictVisitor {
        type Value = Strict;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("any JSON value")
        }
        fn visit_bool<E>(self, _: bool) -> Result<Strict, E> {
            Ok(Strict)
        }
        fn visit_i64<E>(self, _: i64) -> Result<Strict, E> {
            Ok(Strict)
        }
        fn visit_u64<E>(self, _: u64) -> Result<Strict, E> {
            Ok(Strict)
        }
        fn visit_f64<E>(self, _: f64) -> Result<Strict, E> {
            Ok(Strict)
        }
        fn visit_str<E>(self, _: &str) -> Result<Strict, E> {
            Ok(Strict)
        }
        fn visit_unit<E>(self) -> Result<Strict, E> {
            Ok(Strict)
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<Strict, A::Error> {
            while a.next_element::<Strict>()?.is_some() {}
            Ok(Strict)
        }
        fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<Strict, A::Error> {
            let mut seen = std::collections::HashSet::new();
            while let Some(k) = a.next_key::<String>()? {
                if !seen.insert(k.clone()) {
                    return Err(serde::de::Error::custom(format!("duplicate key `{k}`")));
                }
                a.next_value::<Strict>()?;
            }
            Ok(Strict)
        }
    }
    parse::<Strict>(bytes).map(drop)
}

#[cfg(test)]
mod tests {

    /// Found by the `dlq` and `checkpoint` fuzzers: numbers in unknown fields drifted a little on
    /// every rewrite until serde_json's `float_roundtrip` was enabled.
    #[test]
    fn numbers_in_unknown_fields_survive_rewrites_exactly() {
        let input = br#"{"item_count": 2, "item_ids": [], "job_id": "j", "updated_at": "2026-11-21T05:15:22.837082999Z", "x": 444444444444444444444444444444444444444444444.444444444444444444444444}"#;
        let once = to_json_bytes(&parse::<LegacyDlqIndex>(input).unwrap());
        let twice = to_json_bytes(&parse::<LegacyDlqIndex>(&once).unwrap());
        assert_eq!(
            String::from_utf8(once).unwrap(),
            String::from_utf8(twice).unwrap()
        );
    }

    use super::*;
    use serde_json::json;
    use std::io::Cursor;
    use std::path::{Path, PathBuf};

    /// A private copy of the 0.4.4 fixture (`tests/fixtures/real-0.4.4/tree.tar.gz`), extracted
    /// for one test and removed when dropped. Private, not the fixed `/tmp/prodigy-corpus` that
    /// the integration tests extract, clean and re-extract: these tests only read, and must not
    /// see a tree another test is cleaning.
    struct Corpus {
        dir: PathBuf,
    }

    impl Corpus {
        /// Extract the fixture; `None` (after a loud message) only when `tar` cannot run. A
        /// missing tarball fails: it is part of the repository.
        fn extract(test: &str) -> Option<Corpus> {
            static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
            let tar =
                Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/real-0.4.4/tree.tar.gz");
            assert!(tar.is_file(), "{} is missing", tar.display());
            let dir = std::env::temp_dir().join(format!(
                "prodigy-records-{test}-{}-{}",
                std::process::id(),
                N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            ));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            let c = Corpus { dir };
            match std::process::Command::new("tar")
                .arg("-C")
                .arg(&c.dir)
                .arg("-xzf")
                .arg(&tar)
                .status()
            {
                Ok(st) => assert!(st.success(), "tar -xzf {} failed", tar.display()),
                Err(e) => {
                    eprintln!("\n*** SKIPPED {test}: cannot run `tar` ({e}) ***\n");
                    return None;
                }
            }
            Some(c)
        }

        /// The extracted `.prodigy` root.
        fn root(&self) -> PathBuf {
            self.dir.join("tmp/prodigy-corpus/home/.prodigy")
        }
    }

    impl Drop for Corpus {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    // ------------------------------------------------------------------ corpus

    /// What a file of the 0.4.4 fixture tree is, decided by its place.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Place {
        Session,
        LegacyWorkflowCheckpoint,
        LegacyWorktreeMeta,
        LegacyDlqItem,
        LegacyDlqIndex,
        DlqFile,
        ResumeLock,
        Events,
        Mapping,
        JobState,
        Checkpoint(CheckpointKind),
        Orphans,
        /// A `.json`/`.lock` file in no known place: the test fails on these.
        UnknownJson,
        /// Not a record (logs, `.gitignore`, `cleanup.log`, …).
        Other,
    }

    fn classify(rel: &Path) -> Place {
        let parts: Vec<&str> = rel
            .iter()
            .map(|c| c.to_str().unwrap_or("\u{fffd}"))
            .collect();
        let name = *parts.last().unwrap();
        let n = parts.len();
        match parts[0] {
            "sessions" if n == 2 && name.ends_with(".json") => Place::Session,
            "resume_locks" if n == 2 && name.ends_with(".lock") => Place::ResumeLock,
            "events" if name.ends_with(".jsonl") => Place::Events,
            "orphaned_worktrees" if n == 3 && name.ends_with(".json") => Place::Orphans,
            "worktrees" if n == 4 && parts[2] == ".metadata" && name.ends_with(".json") => {
                Place::LegacyWorktreeMeta
            }
            "dlq" if name == "dlq-items.json" => Place::DlqFile,
            "dlq" if n >= 2 && parts[n - 2] == "items" && name.ends_with(".json") => {
                Place::LegacyDlqItem
            }
            "dlq" if name == "index.json" => Place::LegacyDlqIndex,
            "state"
                if n == 4 && parts[2] == "checkpoints" && name.ends_with(".checkpoint.json") =>
            {
                Place::LegacyWorkflowCheckpoint
            }
            "state" if n == 4 && parts[2] == "mappings" && name.ends_with(".json") => {
                Place::Mapping
            }
            "state" if n == 6 && parts[2] == "mapreduce" && parts[3] == "jobs" => {
                if name == "job-state.json" {
                    Place::JobState
                } else if let Some((k, _)) = checkpoint_kind_of_file_name(name) {
                    Place::Checkpoint(k)
                } else if name.ends_with(".json") {
                    Place::UnknownJson
                } else {
                    Place::Other
                }
            }
            _ if name.ends_with(".json") || name.ends_with(".lock") => Place::UnknownJson,
            _ => Place::Other,
        }
    }

    /// Every file of the extracted 0.4.4 tree at `root` with its place, skipping the git
    /// checkouts under `worktrees/*/` except `.metadata/`. Never follows symlinks; never writes.
    fn corpus_files(root: &Path) -> Vec<(PathBuf, Place)> {
        let mut out = Vec::new();
        let mut stack = vec![PathBuf::new()];
        while let Some(rel) = stack.pop() {
            let mut entries: Vec<_> = std::fs::read_dir(root.join(&rel))
                .unwrap()
                .map(|e| e.unwrap())
                .collect();
            entries.sort_by_key(|e| e.file_name());
            for e in entries {
                let child = rel.join(e.file_name());
                let ft = e.file_type().unwrap();
                if ft.is_dir() {
                    let depth = child.iter().count();
                    let in_worktrees = child.starts_with("worktrees");
                    // worktrees/{repo}/{x}: only descend into .metadata
                    if in_worktrees && depth == 3 && e.file_name() != ".metadata" {
                        continue;
                    }
                    stack.push(child);
                } else if ft.is_file() {
                    let place = classify(&child);
                    out.push((root.join(&child), place));
                }
            }
        }
        out
    }

    fn parse_as(place: Place, bytes: &[u8]) -> Result<(), ParseError> {
        match place {
            Place::Session => parse::<SessionRecord>(bytes).map(drop),
            Place::LegacyWorkflowCheckpoint => parse::<LegacyWorkflowCheckpoint>(bytes).map(drop),
            Place::LegacyWorktreeMeta => parse::<LegacyWorktreeMeta>(bytes).map(drop),
            Place::LegacyDlqItem => parse::<LegacyDlqItem>(bytes).map(drop),
            Place::LegacyDlqIndex => parse::<LegacyDlqIndex>(bytes).map(drop),
            Place::DlqFile => parse::<DlqFile>(bytes).map(drop),
            Place::ResumeLock => parse::<ResumeLockInfo>(bytes).map(drop),
            Place::Mapping => parse::<SessionJobMapping>(bytes).map(drop),
            Place::JobState => parse::<JobState>(bytes).map(drop),
            Place::Checkpoint(CheckpointKind::Setup) => parse::<SetupCheckpoint>(bytes).map(drop),
            Place::Checkpoint(CheckpointKind::Map) => parse::<MapCheckpoint>(bytes).map(drop),
            Place::Checkpoint(CheckpointKind::Reduce) => parse::<ReduceCheckpoint>(bytes).map(drop),
            Place::Orphans => parse::<OrphanRegistry>(bytes).map(drop),
            Place::Events => {
                let st = read_jsonl(Cursor::new(bytes), |_, _| {}).unwrap();
                if st.bad == 0 && !st.torn_tail {
                    Ok(())
                } else {
                    Err(ParseError::no_position(format!("{st:?}")))
                }
            }
            Place::UnknownJson | Place::Other => Ok(()),
        }
    }

    /// Parses, re-serializes, parses again: equal as `Value` to the original.
    fn round_trip<T: DeserializeOwned + Serialize>(bytes: &[u8]) -> Result<(), String> {
        let original: Value = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        let rec: T = parse(bytes).map_err(|e| e.to_string())?;
        let out = to_json_bytes(&rec);
        assert!(out.ends_with(b"}\n") || out.ends_with(b"]\n"));
        let again: Value = serde_json::from_slice(&out).map_err(|e| e.to_string())?;
        if again != original {
            return Err(format!(
                "round trip changed the value:\n{}\n---\n{}",
                String::from_utf8_lossy(bytes),
                String::from_utf8_lossy(&out)
            ));
        }
        // And the typed value is stable too.
        let rec2: T = parse(&out).map_err(|e| e.to_string())?;
        assert_eq!(to_json_bytes(&rec2), out);
        Ok(())
    }

    fn round_trip_as(place: Place, bytes: &[u8]) -> Result<(), String> {
        match place {
            Place::Session => round_trip::<SessionRecord>(bytes),
            Place::LegacyWorkflowCheckpoint => round_trip::<LegacyWorkflowCheckpoint>(bytes),
            Place::LegacyWorktreeMeta => round_trip::<LegacyWorktreeMeta>(bytes),
            Place::LegacyDlqItem => round_trip::<LegacyDlqItem>(bytes),
            Place::LegacyDlqIndex => round_trip::<LegacyDlqIndex>(bytes),
            Place::ResumeLock => round_trip::<ResumeLockInfo>(bytes),
            _ => Ok(()),
        }
    }

    #[test]
    fn corpus_every_file_parses_with_the_type_of_its_place() {
        let Some(c) = Corpus::extract("every-file-parses") else {
            return;
        };
        let files = corpus_files(&c.root());
        let mut counts = std::collections::BTreeMap::<String, usize>::new();
        let mut empty_sessions = Vec::new();
        let mut failures = Vec::new();
        for (path, place) in &files {
            *counts.entry(format!("{place:?}")).or_default() += 1;
            assert_ne!(
                *place,
                Place::UnknownJson,
                "unclassified file {}",
                path.display()
            );
            let bytes = std::fs::read(path).unwrap();
            if *place == Place::Session && bytes.is_empty() {
                let e = parse::<SessionRecord>(&bytes).unwrap_err();
                assert_eq!(e.message, "empty file");
                assert_eq!(e.to_string(), "line 0, column 0: empty file");
                empty_sessions.push(path.file_name().unwrap().to_owned());
                continue;
            }
            if let Err(e) = parse_as(*place, &bytes) {
                failures.push(format!("{} as {place:?}: {e}", path.display()));
            }
        }
        assert!(failures.is_empty(), "{failures:#?}");
        assert_eq!(empty_sessions.len(), 4, "{empty_sessions:?}");
        // Sanity: the walk found the fixture's record files.
        assert_eq!(counts.get("Session"), Some(&19), "{counts:?}");
        assert_eq!(
            counts.get("LegacyWorkflowCheckpoint"),
            Some(&10),
            "{counts:?}"
        );
        assert_eq!(counts.get("LegacyWorktreeMeta"), Some(&24), "{counts:?}");
        assert_eq!(counts.get("LegacyDlqItem"), Some(&2), "{counts:?}");
        assert_eq!(counts.get("LegacyDlqIndex"), Some(&1), "{counts:?}");
        assert_eq!(counts.get("ResumeLock"), Some(&1), "{counts:?}");
        assert_eq!(counts.get("Events"), Some(&30), "{counts:?}");
    }

    #[test]
    fn corpus_records_round_trip_preserving_unknown_fields() {
        let Some(c) = Corpus::extract("round-trip") else {
            return;
        };
        let files = corpus_files(&c.root());
        let mut n = 0;
        for (path, place) in &files {
            let bytes = std::fs::read(path).unwrap();
            if bytes.is_empty() {
                continue;
            }
            if let Err(e) = round_trip_as(*place, &bytes) {
                panic!("{}: {e}", path.display());
            }
            n += 1;
        }
        assert!(n >= 50, "only {n} files round-tripped");
    }

    #[test]
    fn corpus_session_fields_and_timestamps() {
        let Some(c) = Corpus::extract("session-fields") else {
            return;
        };
        let p = c.root().join("sessions/workflow-1795238090597.json");
        let bytes = std::fs::read(p).unwrap();
        let s: SessionRecord = parse(&bytes).unwrap();
        assert_eq!(s.status, SessionStatus::Failed);
        assert_eq!(s.session_type, "Workflow");
        assert_eq!(s.checkpoints.len(), 1);
        assert!(s.owner().is_none());
        let started = s.started_at.unwrap();
        assert_eq!(started.to_string(), "2026-11-21T05:14:50.597527875Z");
        let out = String::from_utf8(to_json_bytes(&s)).unwrap();
        assert!(out.contains("\"started_at\": \"2026-11-21T05:14:50.597527875Z\""));
        // Legacy checkpoint status and lock content.
        let cp: LegacyWorkflowCheckpoint = parse(
            &std::fs::read(c.root().join(
                "state/workflow-1795238090597/checkpoints/workflow-1795238090611.checkpoint.json",
            ))
            .unwrap(),
        )
        .unwrap();
        assert_eq!(cp.execution_state.status, LegacyExecStatus::Failed);
        assert_eq!(cp.workflow_id, "workflow-1795238090611");
        let lock: ResumeLockInfo = parse(
            &std::fs::read(c.root().join("resume_locks/workflow-1795238178314.lock")).unwrap(),
        )
        .unwrap();
        assert_eq!(lock.process_id, 32498);
        assert_eq!(lock.hostname, "vm");
    }

    // ------------------------------------------------------------------ timestamps, durations

    #[test]
    fn timestamp_formats_like_chrono_and_round_trips() {
        for s in [
            "2026-11-21T05:14:50.597527875Z",
            "2026-11-21T05:15:42.674403920Z",
            "2025-01-11T12:00:00Z",
            "2025-01-11T12:00:00.100Z",
            "2025-01-11T12:00:00.123456Z",
            "2025-01-11T12:00:00.000000001Z",
        ] {
            let t: Timestamp = serde_json::from_value(json!(s)).unwrap();
            assert_eq!(serde_json::to_value(t).unwrap(), json!(s));
        }
        let t: Timestamp =
            serde_json::from_value(json!("2026-11-21T05:14:50.597517710+02:00")).unwrap();
        assert_eq!(t.to_string(), "2026-11-21T03:14:50.597517710Z");
        let t: Timestamp = serde_json::from_value(json!("1970-01-01T00:00:10.5Z")).unwrap();
        assert_eq!(t.unix_seconds(), 10);
        assert_eq!(t.to_string(), "1970-01-01T00:00:10.500Z");
        assert!(serde_json::from_value::<Timestamp>(json!("yesterday")).is_err());
        assert!(serde_json::from_value::<Timestamp>(json!(12)).is_err());
        let now = Timestamp::now();
        assert!(now.unix_seconds() > 1_700_000_000);
        let back: Timestamp = serde_json::from_value(serde_json::to_value(now).unwrap()).unwrap();
        assert_eq!(back, now);
    }

    #[test]
    fn duration_both_forms() {
        let a: DurationValue =
            serde_json::from_value(json!({"secs": 3, "nanos": 9265910})).unwrap();
        let b: DurationValue = serde_json::from_value(json!([3, 9265910])).unwrap();
        assert_eq!(a, b);
        assert_eq!(
            a,
            DurationValue {
                secs: 3,
                nanos: 9265910
            }
        );
        assert_eq!(
            serde_json::to_value(a).unwrap(),
            json!({"secs": 3, "nanos": 9265910})
        );
        let n: DurationValue = serde_json::from_value(json!([1, 2_500_000_000u32])).unwrap();
        assert_eq!(
            n,
            DurationValue {
                secs: 3,
                nanos: 500_000_000
            }
        );
        assert!(serde_json::from_value::<DurationValue>(json!([1])).is_err());
        assert!(serde_json::from_value::<DurationValue>(json!([1, 2, 3])).is_err());
        assert!(serde_json::from_value::<DurationValue>(json!({"secs": 1})).is_err());
        assert!(serde_json::from_value::<DurationValue>(json!("1s")).is_err());
        assert!(
            serde_json::from_value::<DurationValue>(json!([u64::MAX, 1_000_000_000u32])).is_err()
        );
        // Inside a flattened record (the AgentResult path goes through serde's buffering).
        let r: AgentResult =
            parse(br#"{"item_id":"i","status":"Success","commits":[],"duration":[2,5]}"#).unwrap();
        assert_eq!(r.duration, DurationValue { secs: 2, nanos: 5 });
        let std: std::time::Duration = r.duration.into();
        assert_eq!(std, std::time::Duration::new(2, 5));
    }

    #[test]
    fn file_name_timestamps_and_checkpoint_names() {
        let a = file_name_timestamp("20250111120000").unwrap();
        let b = file_name_timestamp("20250111_120000").unwrap();
        assert_eq!(a, b);
        assert_eq!(a.to_string(), "2025-01-11T12:00:00Z");
        assert_eq!(format_file_name_timestamp(&a), "20250111120000");
        for bad in [
            "",
            "2025011112000",
            "202501111200000",
            "20250111-120000",
            "2025011_1120000",
            "20251311120000",
            "20250132120000",
            "20250111250000",
            "2025O111120000",
            "+0250111120000",
            "２０２５0111120000",
        ] {
            assert!(file_name_timestamp(bad).is_none(), "{bad:?}");
        }
        use CheckpointKind::*;
        assert_eq!(
            checkpoint_kind_of_file_name("setup-checkpoint.json"),
            Some((Setup, None))
        );
        assert_eq!(
            checkpoint_kind_of_file_name("map-checkpoint-20250111120500.json"),
            Some((Map, Some("20250111120500".into())))
        );
        assert_eq!(
            checkpoint_kind_of_file_name("map-checkpoint-20261121_051522.json"),
            Some((Map, Some("20261121_051522".into())))
        );
        assert_eq!(
            checkpoint_kind_of_file_name("reduce-checkpoint-v1-20250111121000.json"),
            Some((Reduce, Some("20250111121000".into())))
        );
        for bad in [
            "setup-checkpoint.json.tmp",
            ".setup-checkpoint.json.tmp-1-2-3",
            "map-checkpoint-.json",
            "map-checkpoint-latest.json",
            "map-checkpoint-20250111120500",
            "reduce-checkpoint-20250111121000.json",
            "reduce-checkpoint-v2-20250111121000.json",
            "Map-checkpoint-20250111120500.json",
            "map-checkpoint-20250111120500.JSON",
            "job-state.json",
        ] {
            assert_eq!(checkpoint_kind_of_file_name(bad), None, "{bad:?}");
        }
        assert_eq!(Map.as_str(), "map");
    }

    // ------------------------------------------------------------------ canonical examples

    #[test]
    fn canonical_session_parses_and_unknown_status_is_rejected() {
        let doc = json!({
            "id": "session-abc123", "session_type": "MapReduce", "status": "Paused",
            "started_at": "2025-01-11T12:00:00Z", "updated_at": "2025-01-11T12:05:00Z",
            "completed_at": null, "metadata": {}, "checkpoints": [], "timings": {},
            "error": null, "workflow_data": null,
            "mapreduce_data": {"job_id": "mapreduce-123", "total_items": 10, "processed_items": 4,
                "failed_items": 1, "agent_count": 2, "phase": "Map", "reduce_results": null},
            "future_field": [1, 2]
        });
        let bytes = serde_json::to_vec(&doc).unwrap();
        let s: SessionRecord = parse(&bytes).unwrap();
        assert_eq!(s.status, SessionStatus::Paused);
        let mr = s.mapreduce_data.as_ref().unwrap();
        assert_eq!(mr.job_id.as_deref(), Some("mapreduce-123"));
        assert_eq!(mr.processed_items, Some(4));
        assert_eq!(mr.phase.as_deref(), Some("Map"));
        assert!(mr.extra.contains_key("reduce_results"));
        assert_eq!(s.extra["future_field"], json!([1, 2]));
        round_trip::<SessionRecord>(&bytes).unwrap();

        for bad in ["Active", "running", "", "Unknown"] {
            let mut d = doc.clone();
            d["status"] = json!(bad);
            let e = parse::<SessionRecord>(&serde_json::to_vec(&d).unwrap()).unwrap_err();
            assert!(e.message.contains("unknown variant"), "{e}");
        }
        // id and status are required
        for key in ["id", "status"] {
            let mut d = doc.clone();
            d.as_object_mut().unwrap().remove(key);
            assert!(parse::<SessionRecord>(&serde_json::to_vec(&d).unwrap()).is_err());
        }
        // minimal record: everything else defaults
        let m: SessionRecord = parse(br#"{"id":"s","status":"Running"}"#).unwrap();
        assert!(m.started_at.is_none() && m.timings.is_null() && m.checkpoints.is_empty());
    }

    #[test]
    fn session_owner_get_and_set() {
        let mut s = SessionRecord::new("session-1", "Workflow", Timestamp::now());
        assert_eq!(s.owner(), None);
        let t: Timestamp = serde_json::from_value(json!("2025-01-11T12:00:00.5Z")).unwrap();
        let o = SessionOwner {
            pid: 4242,
            hostname: "host-a".into(),
            heartbeat_at: t,
        };
        s.set_owner(&o);
        assert_eq!(s.owner(), Some(o.clone()));
        assert_eq!(
            s.metadata["owner"],
            json!({"pid": 4242, "hostname": "host-a", "heartbeat_at": "2025-01-11T12:00:00.500Z"})
        );
        let again: SessionRecord = parse(&to_json_bytes(&s)).unwrap();
        assert_eq!(again.owner(), Some(o));
        assert_eq!(again.timings, json!({}));
        for bad in [
            json!("me"),
            json!({"pid": -1, "hostname": "h", "heartbeat_at": "2025-01-11T12:00:00Z"}),
            json!({"pid": 5000000000u64, "hostname": "h", "heartbeat_at": "2025-01-11T12:00:00Z"}),
            json!({"pid": 1, "hostname": "h"}),
            json!({"pid": 1, "hostname": "h", "heartbeat_at": "soon"}),
        ] {
            s.metadata.insert("owner".into(), bad.clone());
            assert_eq!(s.owner(), None, "{bad}");
        }
    }

    #[test]
    fn canonical_checkpoints_parse_and_wrong_phase_is_rejected() {
        let setup = br#"{"phase": "setup", "completed": true, "outputs": {"X": "1"},
            "timestamp": "2025-01-11T12:00:00Z"}"#;
        let s: SetupCheckpoint = parse(setup).unwrap();
        assert!(s.completed);
        round_trip::<SetupCheckpoint>(setup).unwrap();

        let map = json!({
            "phase": "map",
            "completed_items": [{
                "work_item": {"id": "item-1", "data": {"file": "a.rs"}},
                "result": {"item_id": "item-1", "status": "Success", "output": "ok",
                    "commits": ["abc123"], "duration": {"secs": 12, "nanos": 5},
                    "error": null, "worktree_path": "/w/agent-1", "branch_name": "agent-1"},
                "completed_at": "2025-01-11T12:03:00Z"}],
            "in_progress_items": {"item-2": {
                "work_item": {"id": "item-2", "data": 2}, "agent_id": "agent-2",
                "started_at": "2025-01-11T12:04:00Z", "last_update": "2025-01-11T12:04:30Z"}},
            "pending_items": [{"id": "item-3", "data": null}],
            "failed_items": [{"work_item": {"id": "item-4", "data": [4]}, "error": "boom",
                "failed_at": "2025-01-11T12:02:00Z", "retry_count": 2}],
            "agent_results": {"item-1": {"status": "Success"}},
            "timestamp": "2025-01-11T12:05:00Z"
        });
        let mb = serde_json::to_vec(&map).unwrap();
        let m: MapCheckpoint = parse(&mb).unwrap();
        assert_eq!(m.completed_items[0].result.commits, vec!["abc123"]);
        assert_eq!(m.in_progress_items["item-2"].agent_id, "agent-2");
        assert_eq!(m.failed_items[0].retry_count, 2);
        round_trip::<MapCheckpoint>(&mb).unwrap();
        // 0.4.4-style AgentStatus with data, and [secs, nanos] duration
        let mut m2 = map.clone();
        m2["completed_items"][0]["result"]["status"] = json!({"Failed": "x"});
        m2["completed_items"][0]["result"]["duration"] = json!([1, 2]);
        parse::<MapCheckpoint>(&serde_json::to_vec(&m2).unwrap()).unwrap();

        let reduce = br#"{"phase": "reduce", "completed_steps": [0, 1], "current_step": 2,
            "step_results": {}, "map_results": {}, "timestamp": "2025-01-11T12:10:00Z"}"#;
        let r: ReduceCheckpoint = parse(reduce).unwrap();
        assert_eq!(r.completed_steps, vec![0, 1]);
        assert_eq!(r.current_step, 2);
        round_trip::<ReduceCheckpoint>(reduce).unwrap();

        // wrong / missing phase
        let setup_v: Value = serde_json::from_slice(setup).unwrap();
        for bad in [
            json!("map"),
            json!("Setup"),
            json!(""),
            json!(1),
            json!(null),
        ] {
            let mut v = setup_v.clone();
            v["phase"] = bad.clone();
            assert!(
                parse::<SetupCheckpoint>(&serde_json::to_vec(&v).unwrap()).is_err(),
                "{bad}"
            );
        }
        let mut v = setup_v.clone();
        v.as_object_mut().unwrap().remove("phase");
        assert!(parse::<SetupCheckpoint>(&serde_json::to_vec(&v).unwrap()).is_err());
        assert!(parse::<MapCheckpoint>(reduce).is_err());
        assert!(parse::<ReduceCheckpoint>(&mb).is_err());
        assert!(parse::<ReduceCheckpoint>(setup).is_err());
    }

    #[test]
    fn canonical_job_state_parses() {
        let doc = br#"{"job_id": "mapreduce-123", "session_id": "session-mapreduce-xyz",
            "workflow_name": "my-workflow", "phase": "map", "status": "running",
            "created_at": "2025-01-11T12:00:00Z", "updated_at": "2025-01-11T12:05:00Z",
            "total_items": 10, "completed_items": 3, "failed_items": 1}"#;
        let j: JobState = parse(doc).unwrap();
        assert_eq!(j.phase, JobPhase::Map);
        assert_eq!(j.status, JobStatus::Running);
        round_trip::<JobState>(doc).unwrap();
        let v: Value = serde_json::from_slice(doc).unwrap();
        for (k, bad) in [
            ("phase", "Map"),
            ("phase", "done"),
            ("status", "Running"),
            ("status", "Paused"),
            ("status", "stopped"),
        ] {
            let mut w = v.clone();
            w[k] = json!(bad);
            assert!(
                parse::<JobState>(&serde_json::to_vec(&w).unwrap()).is_err(),
                "{k}={bad}"
            );
        }
        for st in ["running", "paused", "completed", "failed", "cancelled"] {
            let _: JobStatus = serde_json::from_value(json!(st)).unwrap();
        }
        for p in ["setup", "map", "reduce", "complete"] {
            let _: JobPhase = serde_json::from_value(json!(p)).unwrap();
        }
    }

    #[test]
    fn canonical_dlq_mapping_lock_orphans_worktree_meta() {
        // seed 001
        let dlq = br#"{"items": [{"item_id": "item-123", "work_item": {"n": 1},
            "failure_history": [{"timestamp": "2025-11-11T12:00:00Z", "error": "Agent failed",
            "json_log_location": "/path/to/claude-log.jsonl"}]}]}"#;
        let d: DlqFile = parse(dlq).unwrap();
        assert_eq!(d.items[0].item_id, "item-123");
        assert_eq!(
            d.items[0].failure_history[0].error.as_deref(),
            Some("Agent failed")
        );
        round_trip::<DlqFile>(dlq).unwrap();

        // seed 004
        let mapping = br#"{"session_id": "session-mapreduce-xyz", "job_id": "mapreduce-123",
            "workflow_name": "my-workflow", "created_at": "2025-01-11T12:00:00Z"}"#;
        let m: SessionJobMapping = parse(mapping).unwrap();
        assert_eq!(m.job_id, "mapreduce-123");
        round_trip::<SessionJobMapping>(mapping).unwrap();

        let orphans = br#"[{"path": "/Users/user/.prodigy/worktrees/prodigy/agent-1",
            "agent_id": "agent-1", "item_id": "item-1", "failed_at": "2025-01-11T12:00:00Z",
            "error": "Permission denied"}]"#;
        let o: OrphanRegistry = parse(orphans).unwrap();
        assert_eq!(
            o[0].path,
            PathBuf::from("/Users/user/.prodigy/worktrees/prodigy/agent-1")
        );
        round_trip::<OrphanRegistry>(orphans).unwrap();
        assert!(parse::<OrphanRegistry>(br#"{"path": "/x"}"#).is_err());

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

        let meta = br#"{"session_id": "workflow-1", "worktree_name": "workflow-1",
            "branch": "prodigy-workflow-1", "status": "interrupted", "resumable": true,
            "updated_at": "2026-11-21T05:14:52.156673561Z", "stats": {"commits": 0}}"#;
        let w: LegacyWorktreeMeta = parse(meta).unwrap();
        assert!(w.resumable);
        assert_eq!(w.status.as_deref(), Some("interrupted"));
        assert!(w.extra.contains_key("stats"));
        let w2: LegacyWorktreeMeta = parse(b"{}").unwrap();
        assert!(!w2.resumable);

        // legacy workflow checkpoint status
        for (s, want) in [
            ("Running", LegacyExecStatus::Running),
            ("Paused", LegacyExecStatus::Paused),
            ("Completed", LegacyExecStatus::Completed),
            ("Failed", LegacyExecStatus::Failed),
            ("Interrupted", LegacyExecStatus::Interrupted),
        ] {
            let doc = format!(r#"{{"workflow_id":"w","execution_state":{{"status":"{s}"}}}}"#);
            let c: LegacyWorkflowCheckpoint = parse(doc.as_bytes()).unwrap();
            assert_eq!(c.execution_state.status, want);
        }
        assert!(parse::<LegacyWorkflowCheckpoint>(
            br#"{"workflow_id":"w","execution_state":{"status":"Resuming"}}"#
        )
        .is_err());
    }

    // ------------------------------------------------------------------ parse errors

    #[test]
    fn parse_errors_carry_positions() {
        let e = parse::<SessionRecord>(b"").unwrap_err();
        assert_eq!((e.line, e.column, e.message.as_str()), (0, 0, "empty file"));
        assert_eq!(e.to_string(), "line 0, column 0: empty file");
        assert_eq!(
            parse::<SessionRecord>(b" \n\t").unwrap_err().message,
            "empty file"
        );
        let e = parse::<SessionRecord>(b"{\n  \"id\": \"x\",\n  \"status\": \"Run").unwrap_err();
        assert_eq!(e.line, 3);
        assert!(!e.message.contains(" at line "), "{}", e.message);
        assert!(e.to_string().starts_with("line 3, column "), "{e}");
        let e = parse::<SessionRecord>(b"[1,2]").unwrap_err();
        assert!(e.line >= 1);
        // deeply nested input fails cleanly (recursion limit)
        let deep = "[".repeat(100_000);
        assert!(parse::<Value>(deep.as_bytes()).is_err());
        let deep_meta = format!(
            r#"{{"id":"s","status":"Running","metadata":{{"x":{}1{}}}}}"#,
            "[".repeat(5000),
            "]".repeat(5000)
        );
        assert!(parse::<SessionRecord>(deep_meta.as_bytes()).is_err());
        // duplicate keys of a classification field are rejected, not last-wins
        let dup = br#"{"id":"s","status":"Completed","status":"Running"}"#;
        assert!(parse::<SessionRecord>(dup).is_err());
    }

    #[test]
    fn to_json_bytes_is_pretty_with_newline() {
        let l = ResumeLockInfo {
            job_id: "j".into(),
            process_id: 1,
            hostname: "h".into(),
            acquired_at: file_name_timestamp("20250111120000").unwrap(),
            extra: Extra::new(),
        };
        let out = String::from_utf8(to_json_bytes(&l)).unwrap();
        assert_eq!(
            out,
            "{\n  \"job_id\": \"j\",\n  \"process_id\": 1,\n  \"hostname\": \"h\",\n  \
             \"acquired_at\": \"2025-01-11T12:00:00Z\"\n}\n"
        );
    }

    // ------------------------------------------------------------------ events

    #[test]
    fn event_lines_both_shapes() {
        // seed 001, flat
        let e = parse_event_line(
            br#"{"timestamp":"2025-11-11T12:00:00Z","event_type":"AgentStarted","agent_id":"agent-1"}"#,
        )
        .unwrap();
        assert_eq!(e.raw_type, "AgentStarted");
        assert_eq!(e.event_type, "agentstarted");
        assert_eq!(e.agent_id.as_deref(), Some("agent-1"));
        assert_eq!(e.job_id, None);
        assert_eq!(e.timestamp.unwrap().to_string(), "2025-11-11T12:00:00Z");

        // 0.4.4 EventRecord, internally tagged event
        let e = parse_event_line(
            br#"{"id":"0b9c3a5e-4d3c-4f7e-9a57-0d8b8a1b9a11","timestamp":"2026-11-21T05:15:22.8Z","correlation_id":"c","event":{"event_type":"agent_started","job_id":"mapreduce-1","agent_id":"a-1","item_id":"item_0","worktree":"w","attempt":1},"metadata":{"host":"localhost","pid":7}}"#,
        )
        .unwrap();
        assert_eq!(e.raw_type, "agent_started");
        assert_eq!(e.event_type, normalize_event_type("AgentStarted"));
        assert_eq!(e.job_id.as_deref(), Some("mapreduce-1"));
        assert_eq!(e.agent_id.as_deref(), Some("a-1"));
        assert!(e.timestamp.is_some());

        // externally tagged variant
        let e = parse_event_line(
            br#"{"timestamp":"2025-11-11T12:00:00Z","event":{"DLQItemAdded":{"job_id":"j","item_id":"i"}}}"#,
        )
        .unwrap();
        assert_eq!(e.raw_type, "DLQItemAdded");
        assert_eq!(e.event_type, normalize_event_type("d_l_q_item_added"));
        assert_eq!(e.job_id.as_deref(), Some("j"));

        // unit variant as a string; unknown type is fine
        let e = parse_event_line(br#"{"event":"SomethingNew"}"#).unwrap();
        assert_eq!(e.event_type, "somethingnew");
        assert!(e.timestamp.is_none());

        // an invalid timestamp is not an error
        let e = parse_event_line(br#"{"event_type":"x","timestamp":"later"}"#).unwrap();
        assert!(e.timestamp.is_none());

        // CRLF and surrounding whitespace
        assert!(parse_event_line(b"{\"event_type\":\"job_started\"}\r\n").is_ok());

        for bad in [
            &b"[1]"[..],
            b"\"AgentStarted\"",
            b"42",
            b"null",
            b"{}",
            b"{\"event_type\":7}",
            b"{\"event\":{\"a\":1,\"b\":2}}",
            b"{\"event\":[\"AgentStarted\"]}",
            b"{\"event_type\":\"x\"",
            b"",
        ] {
            assert!(
                parse_event_line(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        let e = parse_event_line(b"[1]").unwrap_err();
        assert_eq!((e.line, e.column), (0, 0));
    }

    #[test]
    fn event_type_normalization() {
        let n = normalize_event_type;
        assert_eq!(n("AgentStarted"), n("agent_started"));
        assert_eq!(n("d_l_q_item_added"), n("DlqItemAdded"));
        assert_eq!(n("DLQItemAdded"), n("dlq_item_added"));
        assert_eq!(n("claude_tool_invoked"), "claudetoolinvoked");
        assert_ne!(n("agent_started"), n("agent_completed"));
        assert_eq!(n(""), "");
    }

    fn collect(input: &[u8], cap: usize) -> (JsonlStats, Vec<(u64, String)>) {
        let mut seen = Vec::new();
        let st =
            read_jsonl_capped(Cursor::new(input), cap, |n, e| seen.push((n, e.raw_type))).unwrap();
        (st, seen)
    }

    #[test]
    fn jsonl_torn_tail_garbage_blank_and_crlf() {
        let input = b"{\"event_type\":\"A\"}\n\
                      \n   \n\
                      garbage\n\
                      {\"event_type\":\"B\"}\r\n\
                      [1,2]\n\
                      {\"event_type\":\"C\"}\n\
                      {\"event_type\":\"D";
        let (st, seen) = collect(input, MAX_JSONL_LINE);
        assert_eq!(
            seen,
            vec![(1, "A".into()), (5, "B".into()), (7, "C".into())]
        );
        assert_eq!(
            st,
            JsonlStats {
                good: 3,
                bad: 2,
                torn_tail: true,
                first_bad_line: Some(4)
            }
        );

        // last line without newline that parses is good
        let (st, seen) = collect(
            b"{\"event_type\":\"A\"}\n{\"event_type\":\"B\"}",
            MAX_JSONL_LINE,
        );
        assert_eq!(seen.len(), 2);
        assert_eq!((st.good, st.bad, st.torn_tail), (2, 0, false));

        // empty file, only blanks, only a torn line
        assert_eq!(collect(b"", MAX_JSONL_LINE).0, JsonlStats::default());
        assert_eq!(
            collect(b"\n\r\n  \n", MAX_JSONL_LINE).0,
            JsonlStats::default()
        );
        let (st, _) = collect(b"{\"event_ty", MAX_JSONL_LINE);
        assert_eq!((st.good, st.bad, st.torn_tail), (0, 0, true));
        // garbage mid-file then good lines
        let (st, _) = collect(b"\x00\xff\n{\"event_type\":\"A\"}\n", MAX_JSONL_LINE);
        assert_eq!((st.good, st.bad, st.first_bad_line), (1, 1, Some(1)));
    }

    #[test]
    fn jsonl_overlong_lines_are_skipped_and_bounded() {
        let long = format!("{{\"event_type\":\"{}\"}}", "x".repeat(200));
        let input = format!("{long}\n{{\"event_type\":\"ok\"}}\n{long}");
        let (st, seen) = collect(input.as_bytes(), 64);
        assert_eq!(seen, vec![(2, "ok".into())]);
        assert_eq!(st.bad, 1);
        assert_eq!(st.first_bad_line, Some(1));
        assert!(st.torn_tail);
        // With a tiny BufReader the line still assembles across many fill_buf calls.
        let input = format!("{long}\n{long}\n");
        let mut n = 0;
        let st = read_jsonl(
            std::io::BufReader::with_capacity(7, input.as_bytes()),
            |_, _| n += 1,
        )
        .unwrap();
        assert_eq!((st.good, n), (2, 2));
    }

    #[test]
    fn jsonl_good_lines_are_exactly_what_parse_event_line_accepts() {
        let lines: Vec<&[u8]> = vec![
            br#"{"event_type":"A"}"#,
            b"not json",
            br#"{"event":{"event_type":"b"}}"#,
            b"[]",
            br#"{"event":{"X":{}}}"#,
            br#"{"x":1}"#,
            b"{\"event_type\":\"\xff\"}",
            br#"{"event_type":"A","event_type":"B"}"#,
            b"   ",
            br#""str""#,
        ];
        let mut input = Vec::new();
        for l in &lines {
            input.extend_from_slice(l);
            input.push(b'\n');
        }
        let (st, seen) = collect(&input, MAX_JSONL_LINE);
        let expected: Vec<u64> = lines
            .iter()
            .enumerate()
            .filter(|(_, l)| parse_event_line(l).is_ok())
            .map(|(i, _)| i as u64 + 1)
            .collect();
        assert_eq!(seen.iter().map(|(n, _)| *n).collect::<Vec<_>>(), expected);
        let non_blank = lines
            .iter()
            .filter(|l| !l.iter().all(u8::is_ascii_whitespace))
            .count() as u64;
        assert_eq!(st.good + st.bad, non_blank);
    }
}
