//! Event lines, `events/{repo}/{job_id}/events-{ts}.jsonl` (storage-format.md §4.2;
//! `man/prodigy-storage.5` "Event lines"): [`EventLine`], read by [`parse_event_line`] from
//! either the seeds' flat shape (seed 001) or 0.4.4's `EventRecord` shape, and the bounded
//! streaming reader [`read_jsonl`] with its [`JsonlStats`]. Written by
//! [`crate::store::journal::events`] in the flat shape.

use super::{parse, ParseError, Timestamp};
use serde_json::{Map, Value};
use std::io::{self, BufRead};

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

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

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
