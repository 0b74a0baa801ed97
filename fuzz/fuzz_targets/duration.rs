//! `--older-than` durations. Properties: never panics; what parses is within the documented
//! bound and formats to a string that parses back to the same number of seconds; every in-range
//! number of seconds formats to a string that parses back to it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prodigy::duration::{format_duration, parse_duration};

/// The largest accepted duration (seconds), see `parse_duration`.
const MAX: u64 = i64::MAX as u64 / 1_000;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        if let Ok(v) = parse_duration(s) {
            assert!(v <= MAX, "{s:?} parsed to {v}, over the bound");
            let f = format_duration(v);
            assert_eq!(parse_duration(&f), Ok(v), "{s:?} -> {v} -> {f:?}");
        } else if let Err(e) = parse_duration(s) {
            assert!(e.contains("expected a whole number"), "{s:?}: {e}");
        }
    }
    if data.len() >= 8 {
        let v = u64::from_le_bytes(data[..8].try_into().expect("8 bytes"));
        for v in [v, v % (MAX + 1)] {
            let f = format_duration(v);
            let back = parse_duration(&f);
            if v <= MAX {
                assert_eq!(back, Ok(v), "{v} -> {f:?}");
            } else {
                assert!(
                    back.is_err(),
                    "{v} over the bound, yet {f:?} parsed to {back:?}"
                );
            }
        }
    }
});
