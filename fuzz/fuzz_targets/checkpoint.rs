//! Every checkpoint kind: the first byte picks the kind (setup, map, reduce, job-state, 0.4.4
//! workflow checkpoint), the rest is the file. Properties: what parses re-serializes and parses
//! to the same value; `parse_checkpoint` agrees with `parse` for the three MapReduce kinds; the
//! classification helpers never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prodigy::store::records::{
    parse, parse_checkpoint, CheckpointKind, JobState, LegacyWorkflowCheckpoint, MapCheckpoint,
    ReduceCheckpoint, SetupCheckpoint,
};
use prodigy_fuzz::roundtrip;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, file)) = data.split_first() else {
        return;
    };
    match selector % 5 {
        0 => {
            let ok = roundtrip::<SetupCheckpoint>(file);
            assert_eq!(parse_checkpoint(CheckpointKind::Setup, file).is_ok(), ok);
        }
        1 => {
            let ok = roundtrip::<MapCheckpoint>(file);
            assert_eq!(parse_checkpoint(CheckpointKind::Map, file).is_ok(), ok);
        }
        2 => {
            let ok = roundtrip::<ReduceCheckpoint>(file);
            assert_eq!(parse_checkpoint(CheckpointKind::Reduce, file).is_ok(), ok);
        }
        3 => {
            if roundtrip::<JobState>(file) {
                let j: JobState = parse(file).expect("parsed once");
                let _ = j.is_terminal();
            }
        }
        _ => {
            if roundtrip::<LegacyWorkflowCheckpoint>(file) {
                let c: LegacyWorkflowCheckpoint = parse(file).expect("parsed once");
                assert_eq!(c.is_completed(), c.status_str() == "Completed");
            }
        }
    }
});
