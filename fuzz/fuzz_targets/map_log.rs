//! The map log `map-log.jsonl` (issue 25: the items that ended after a map checkpoint, one line
//! each). Properties: reading never panics; every non-blank line is exactly one of an entry, the
//! torn last line or a corrupt line, in order; only the last non-blank line can be torn, and
//! `valid_len` is where it starts (the whole input otherwise); reading the bytes up to
//! `valid_len` again gives the same entries; every entry round-trips through the writer's
//! serialization as one line; applying the entries to a checkpoint leaves each item they name
//! in exactly one list.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prodigy::store::records::{parse_map_log_line, read_map_log, MapCheckpoint};
use std::collections::BTreeSet;

fuzz_target!(|data: &[u8]| {
    let log = read_map_log(data, 1);
    let blank = |l: &[u8]| l.iter().all(u8::is_ascii_whitespace);
    let lines: Vec<usize> = data
        .split(|&b| b == b'\n')
        .enumerate()
        .filter(|(_, l)| !blank(l))
        .map(|(i, _)| i + 1)
        .collect();
    let mut seen: Vec<usize> = log.entries.iter().map(|(n, _)| *n).collect();
    seen.extend(log.corrupt.iter().map(|(n, _)| *n));
    seen.extend(log.torn);
    seen.sort_unstable();
    assert_eq!(seen, lines, "every non-blank line is read once");
    for (n, e) in &log.corrupt {
        assert_eq!(*n, e.line);
    }
    match log.torn {
        Some(n) => {
            assert_eq!(Some(&n), lines.last(), "only the last line is torn");
            assert!(log.valid_len < data.len() as u64);
            let start = data
                .split(|&b| b == b'\n')
                .take(n - 1)
                .map(|l| l.len() + 1)
                .sum::<usize>();
            assert_eq!(log.valid_len, start as u64);
        }
        None => assert_eq!(log.valid_len, data.len() as u64),
    }
    let again = read_map_log(&data[..log.valid_len as usize], 1);
    assert_eq!(
        again.entries, log.entries,
        "cutting the torn tail keeps the entries"
    );

    for (_, e) in &log.entries {
        let line = serde_json::to_vec(e).expect("an entry serializes");
        assert!(!line.contains(&b'\n'), "one line");
        let back = parse_map_log_line(&line).expect("prodigy reads back what it writes");
        assert_eq!(
            serde_json::to_value(&back).unwrap(),
            serde_json::to_value(e).unwrap()
        );
    }
    let mut cp = MapCheckpoint::default();
    cp.apply_log(log.entries.iter().map(|(_, e)| e));
    let ids: BTreeSet<&str> = log.entries.iter().map(|(_, e)| e.item_id()).collect();
    assert_eq!(cp.completed_items.len() + cp.failed_items.len(), ids.len());
    assert!(cp.pending_items.is_empty() && cp.in_progress_items.is_empty());
});
