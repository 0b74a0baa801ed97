//! Workflow files (`prodigy run`): any text either parses, or fails with one line per problem,
//! each of the form `` `PATH`:LINE:COL: … `` (or `` `PATH`: … `` for file-level errors); never a
//! panic, never a hang (alias bombs are bounded), and no control character of the input in a
//! message (issue 27: a folded `mapreduce\nthe` and escape sequences reached the terminal). What
//! parses has a hash of 16 hex digits, every step's label is one safe line, and every `${…}` of
//! every step either interpolates or names the unknown variable.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prodigy::workflow::{parse, vars};
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match parse(text, Path::new("fuzz.yml")) {
        Ok(wf) => {
            assert_eq!(wf.hash.len(), 16);
            let v = vars::Vars::new();
            for (_, _, s) in wf.steps() {
                let label = s.display();
                assert!(!label.chars().any(char::is_control), "{label:?}");
                if let Err(e) = vars::interpolate(s.text(), &v) {
                    assert!(e.contains("${"), "{e}");
                }
            }
        }
        Err(e) => {
            let m = e.to_string();
            assert!(!m.is_empty() && !m.ends_with('\n'), "{m:?}");
            for line in m.split('\n') {
                assert!(line.starts_with("`fuzz.yml`"), "{m:?}");
                assert!(!line.chars().any(char::is_control), "{line:?}");
            }
        }
    }
});
