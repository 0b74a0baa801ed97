//! Session record, resume lock, session/job mapping and orphaned-worktree registry. Every input
//! is tried as each type; whatever parses re-serializes and parses to the same value. Also:
//! `check_no_duplicate_keys` never panics and rejects exactly the JSON texts that
//! `serde_json::Value` would read with a member lost to a repeated key.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prodigy::store::records::{
    parse, OrphanEntry, ResumeLockInfo, SessionJobMapping, SessionRecord,
};
use prodigy_fuzz::{check_duplicate_keys_property, roundtrip};

fuzz_target!(|data: &[u8]| {
    if roundtrip::<SessionRecord>(data) {
        let s: SessionRecord = parse(data).expect("parsed once");
        let _ = s.status.is_live_status();
        if let Some(owner) = s.owner() {
            // Writing the owner back and reading it gives the same owner.
            let mut t = s.clone();
            t.set_owner(&owner);
            assert_eq!(t.owner(), Some(owner));
        }
    }
    roundtrip::<ResumeLockInfo>(data);
    roundtrip::<SessionJobMapping>(data);
    roundtrip::<Vec<OrphanEntry>>(data);
    check_duplicate_keys_property(data);
});
