//! One JSONL event line, in both shapes (flat seeds shape, 0.4.4 `EventRecord`). Properties:
//! the normalized type is `normalize_event_type(raw_type)`, normalizing is idempotent, the raw
//! value is the line's JSON, a trailing `\n`/`\r\n` changes nothing, the type comes from where
//! the documentation says, and the line re-encoded compactly parses to the same event.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prodigy::store::records::{normalize_event_type, parse_event_line, Timestamp};
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        let n = normalize_event_type(s);
        assert_eq!(normalize_event_type(&n), n, "not idempotent on {s:?}");
        assert!(!n.contains('_'));
    }

    let parsed = parse_event_line(data);
    for suffix in [&b"\n"[..], b"\r\n"] {
        let mut line = data.to_vec();
        line.extend_from_slice(suffix);
        // Error positions may move; acceptance and the event may not.
        assert_eq!(
            parse_event_line(&line).ok(),
            parsed.as_ref().ok().cloned(),
            "suffix {suffix:?} changed the result"
        );
    }
    let Ok(ev) = parsed else {
        return;
    };
    assert_eq!(ev.event_type, normalize_event_type(&ev.raw_type));
    assert_eq!(normalize_event_type(&ev.event_type), ev.event_type);

    let value: Value = serde_json::from_slice(data).expect("an accepted line is JSON");
    assert_eq!(ev.raw, value);
    let obj = value.as_object().expect("an accepted line is an object");
    match obj.get("event_type") {
        Some(t) => assert_eq!(t.as_str(), Some(ev.raw_type.as_str())),
        None => match obj.get("event") {
            Some(Value::String(t)) => assert_eq!(t, &ev.raw_type),
            Some(Value::Object(inner)) => match inner.get("event_type") {
                Some(t) => assert_eq!(t.as_str(), Some(ev.raw_type.as_str())),
                None => {
                    assert_eq!(inner.len(), 1);
                    assert!(inner.contains_key(&ev.raw_type));
                }
            },
            other => panic!("accepted a line whose event is {other:?}"),
        },
    }
    if let Some(t) = obj
        .get("timestamp")
        .and_then(Value::as_str)
        .and_then(Timestamp::parse_rfc3339)
    {
        assert_eq!(ev.timestamp, Some(t));
    }
    if let Some(j) = obj.get("job_id").and_then(Value::as_str) {
        assert_eq!(ev.job_id.as_deref(), Some(j));
    }

    // The same event written as one compact line reads back the same.
    let compact = serde_json::to_vec(&ev.raw).expect("Value serializes");
    assert!(!compact.contains(&b'\n'));
    assert_eq!(parse_event_line(&compact).as_ref(), Ok(&ev));
});
