//! The JSONL reader over a whole buffer (torn tails, mid-file garbage, blank lines, CRLF).
//! Properties: the reader's good lines are exactly the lines `parse_event_line` accepts, with
//! the same events and 1-based line numbers; every other non-blank line is bad, except an
//! unterminated last line, which is a torn tail; good + bad + torn + blank = lines; the result
//! does not depend on how the input is split into reads.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prodigy::store::records::{parse_event_line, read_jsonl, EventLine, JsonlStats};
use std::io::{BufReader, Cursor};

fn run(r: impl std::io::BufRead) -> (JsonlStats, Vec<(u64, EventLine)>) {
    let mut seen = Vec::new();
    let stats = read_jsonl(r, |n, ev| seen.push((n, ev))).expect("in-memory reads cannot fail");
    (stats, seen)
}

fuzz_target!(|data: &[u8]| {
    // The model: split on `\n`; a final piece after the last `\n` is an unterminated line (none
    // if the buffer ends with `\n` or is empty); one trailing `\r` is dropped.
    let mut pieces: Vec<&[u8]> = data.split(|&b| b == b'\n').collect();
    let last_terminated = pieces.last().is_some_and(|p| p.is_empty());
    if last_terminated {
        pieces.pop();
    }
    let lines = pieces.len() as u64;
    let (mut good, mut bad, mut blank, mut torn) = (Vec::new(), 0u64, 0u64, false);
    let mut first_bad = None;
    for (i, piece) in pieces.iter().enumerate() {
        let n = i as u64 + 1;
        let terminated = i + 1 < pieces.len() || last_terminated;
        let line = piece.strip_suffix(b"\r").unwrap_or(piece);
        if line.iter().all(u8::is_ascii_whitespace) {
            blank += 1;
            continue;
        }
        match parse_event_line(line) {
            Ok(ev) => good.push((n, ev)),
            Err(_) if terminated => {
                bad += 1;
                first_bad.get_or_insert(n);
            }
            Err(_) => torn = true,
        }
    }

    let (stats, seen) = run(data);
    assert_eq!(
        seen, good,
        "good lines differ from the lines parse_event_line accepts"
    );
    assert_eq!(stats.good, good.len() as u64);
    assert_eq!(stats.bad, bad);
    assert_eq!(stats.torn_tail, torn);
    assert_eq!(stats.first_bad_line, first_bad);
    assert_eq!(
        stats.good + stats.bad + u64::from(stats.torn_tail) + blank,
        lines,
        "lines unaccounted for"
    );

    // Same result whatever the read sizes (lines split across buffer refills).
    let cap = 1 + data.len() % 7;
    let (stats2, seen2) = run(BufReader::with_capacity(cap, Cursor::new(data)));
    assert_eq!(stats2, stats);
    assert_eq!(seen2, seen);
});
