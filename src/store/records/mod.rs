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
//!
//! One submodule per record kind, named after its section of `man/prodigy-storage.5` "FILES";
//! everything is re-exported here, so `crate::store::records::X` names every type and function:
//! * [`session`]: session records, `sessions/{session_id}.json` (§4.1);
//! * [`events`]: event lines, `events/{repo}/{job_id}/events-*.jsonl` (§4.2);
//! * [`dlq`]: the dead letter queue, canonical and 0.4.4 (§4.3);
//! * [`job`]: `job-state.json` of a MapReduce job (§4.4);
//! * [`checkpoint`]: setup, map and reduce checkpoints and 0.4.4 workflow checkpoints (§4.4);
//! * [`mapping`]: session↔job mappings (§4.5);
//! * [`lock`]: resume lock content (§4.6);
//! * [`orphans`]: the orphaned-worktree registry (§4.7);
//! * [`worktree_meta`]: 0.4.4 worktree metadata (§5).
//!
//! This file keeps what they share: [`Extra`], [`ParseError`], [`parse`], [`to_json_bytes`],
//! [`Timestamp`], [`DurationValue`], the file-name timestamps and [`check_no_duplicate_keys`].
//! The writers of `prodigy run` ([`crate::store::journal`]) write these same types.

pub mod checkpoint;
pub mod dlq;
pub mod events;
pub mod job;
pub mod lock;
pub mod mapping;
pub mod orphans;
pub mod session;
pub mod worktree_meta;

pub use checkpoint::{
    checkpoint_kind_of_file_name, parse_checkpoint, parse_map_log_line, read_map_log, AgentResult,
    CheckpointKind, CompletedWorkItem, FailedWorkItem, LegacyExecStatus, LegacyExecutionState,
    LegacyWorkflowCheckpoint, MapCheckpoint, MapLog, MapLogEntry, MapPhase, ReduceCheckpoint,
    ReducePhase, SetupCheckpoint, SetupPhase, WorkItem, WorkItemProgress, MAP_LOG_BYTES_KEY,
    MAP_LOG_FILE_NAME, SETUP_CHECKPOINT_FILE_NAME,
};
pub use dlq::{DlqFailure, DlqFile, DlqItem, LegacyDlqFailure, LegacyDlqIndex, LegacyDlqItem};
pub use events::{
    normalize_event_type, parse_event_line, read_jsonl, EventLine, JsonlStats, MAX_JSONL_LINE,
};
pub use job::{JobPhase, JobState, JobStatus};
pub use lock::ResumeLockInfo;
pub use mapping::SessionJobMapping;
pub use orphans::{OrphanEntry, OrphanRegistry};
pub use session::{MapReduceData, SessionOwner, SessionRecord, SessionStatus};
pub use worktree_meta::LegacyWorktreeMeta;

use serde::de::{self, DeserializeOwned, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::ser::Serializer;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::fmt;
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
// File-name timestamps
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

// ---------------------------------------------------------------------------------------------
// Duplicate keys
// ---------------------------------------------------------------------------------------------

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
            // Keys borrowed from the input where they have no escapes, compared in a list while
            // few (a record's objects have a dozen keys) and hashed beyond: a `String` and a
            // hash a key made this check a sixth of the allocations of `stats`.
            let mut few: Vec<Cow<'de, str>> = Vec::new();
            let mut many = std::collections::HashSet::new();
            while let Some(Key(k)) = a.next_key::<Key<'de>>()? {
                if many.is_empty() && few.len() < 16 {
                    if few.contains(&k) {
                        return Err(duplicate(&k));
                    }
                    few.push(k);
                } else {
                    many.extend(few.drain(..));
                    if many.contains(&k) {
                        return Err(duplicate(&k));
                    }
                    many.insert(k);
                }
                a.next_value::<Strict>()?;
            }
            Ok(Strict)
        }
    }
    fn duplicate<E: serde::de::Error>(k: &str) -> E {
        E::custom(format!("duplicate key `{k}`"))
    }
    use std::borrow::Cow;
    /// An object key, borrowed from the input when it has no escapes.
    struct Key<'de>(Cow<'de, str>);
    impl<'de> Deserialize<'de> for Key<'de> {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            d.deserialize_str(KeyVisitor)
        }
    }
    struct KeyVisitor;
    impl<'de> Visitor<'de> for KeyVisitor {
        type Value = Key<'de>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an object key")
        }
        fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Key<'de>, E> {
            Ok(Key(Cow::Borrowed(s)))
        }
        fn visit_str<E>(self, s: &str) -> Result<Key<'de>, E> {
            Ok(Key(Cow::Owned(s.to_owned())))
        }
        fn visit_string<E>(self, s: String) -> Result<Key<'de>, E> {
            Ok(Key(Cow::Owned(s)))
        }
    }
    parse::<Strict>(bytes).map(drop)
}

#[cfg(test)]
mod corpus_tests;

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Parses, re-serializes, parses again: equal as `Value` to the original.
    pub(super) fn round_trip<T: DeserializeOwned + Serialize>(bytes: &[u8]) -> Result<(), String> {
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
    fn file_name_timestamps() {
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
    fn repeated_keys_are_found_in_small_and_large_objects_and_through_escapes() {
        let obj = |keys: &[String]| {
            let body: Vec<String> = keys.iter().map(|k| format!("\"{k}\":1")).collect();
            format!("{{\"a\":[{{{}}}]}}", body.join(","))
        };
        for n in [2, 15, 16, 17, 40] {
            let mut keys: Vec<String> = (0..n).map(|i| format!("k{i}")).collect();
            assert!(
                check_no_duplicate_keys(obj(&keys).as_bytes()).is_ok(),
                "{n}"
            );
            keys.push(format!("k{}", n / 2));
            let e = check_no_duplicate_keys(obj(&keys).as_bytes()).unwrap_err();
            assert!(
                e.message.contains(&format!("duplicate key `k{}`", n / 2)),
                "{n}: {e:?}"
            );
        }
        // An escaped key is the same key as its plain spelling.
        let e = check_no_duplicate_keys(br#"{"id":1,"\u0069d":2}"#).unwrap_err();
        assert!(e.message.contains("duplicate key `id`"), "{e:?}");
        // The same key in two objects is no repeat.
        assert!(check_no_duplicate_keys(br#"{"x":{"id":1},"y":{"id":2}}"#).is_ok());
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
}
