//! DLQ files in both shapes: the canonical `dlq-items.json` and 0.4.4's per-item files plus
//! `index.json`. Every input is tried as each of the three types; whatever parses re-serializes
//! and parses to the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prodigy::store::records::{DlqFile, LegacyDlqIndex, LegacyDlqItem};
use prodigy_fuzz::roundtrip;

fuzz_target!(|data: &[u8]| {
    roundtrip::<DlqFile>(data);
    roundtrip::<LegacyDlqItem>(data);
    roundtrip::<LegacyDlqIndex>(data);
});
