//! The gzip-aware JSONL reader (`store::gz`, issue 26): event files compressed by
//! `clean --compress-after` are read through `gz::decoder`.
//! Properties, with the input taken as a gzip file: reading never panics; when the stream
//! decompresses, `read_jsonl` over the decoder gives exactly what it gives over the decompressed
//! bytes; when it does not, the error is `InvalidData` naming corrupt gzip data, and the events
//! seen before it are a prefix of what the bytes decompressed so far give. With the input taken
//! as a plain event file: gzipping it and reading it back through the decoder gives exactly what
//! reading it plain gives (compression is transparent).
#![no_main]

use libfuzzer_sys::fuzz_target;
use prodigy::store::gz;
use prodigy::store::records::{read_jsonl, EventLine, JsonlStats};
use std::io::{ErrorKind, Read};

fn run(r: impl std::io::BufRead) -> (std::io::Result<JsonlStats>, Vec<(u64, EventLine)>) {
    let mut seen = Vec::new();
    let st = read_jsonl(r, |n, ev| seen.push((n, ev)));
    (st, seen)
}

fuzz_target!(|data: &[u8]| {
    // The input as a gzip file.
    let mut plain = Vec::new();
    let whole = gz::decoder(data).read_to_end(&mut plain);
    let (st, seen) = run(gz::decoder(data));
    match whole {
        Ok(_) => {
            let (want_st, want_seen) = run(plain.as_slice());
            assert_eq!(st.expect("decompressed once"), want_st.expect("in memory"));
            assert_eq!(seen, want_seen);
        }
        Err(e) => {
            assert_eq!(e.kind(), ErrorKind::InvalidData, "{e}");
            assert!(
                e.to_string().contains("corrupt or truncated gzip data"),
                "{e}"
            );
            let err = st.expect_err("the same stream fails the same way");
            assert_eq!(err.kind(), ErrorKind::InvalidData, "{err}");
            // What was read before the damage is what the bytes decompressed so far say.
            let (_, upto) = run(plain.as_slice());
            assert!(seen.len() <= upto.len() + 1);
            for (a, b) in seen.iter().zip(&upto) {
                assert_eq!(a, b);
            }
        }
    }

    // The input as a plain event file: compression is transparent.
    let (st_plain, seen_plain) = run(data);
    let z = gz::gzip(data);
    let (st_gz, seen_gz) = run(gz::decoder(z.as_slice()));
    assert_eq!(st_gz.expect("our own gzip"), st_plain.expect("in memory"));
    assert_eq!(seen_gz, seen_plain);
});
