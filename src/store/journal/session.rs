//! Session records, `sessions/{session_id}.json` (storage-format §4.1).

use crate::error::Result;
use crate::store::layout::{write_record, Layout};
use crate::store::records::{to_json_bytes, SessionRecord};

/// Write a session record (storage-format §4.1) to `sessions/{id}.json`.
pub fn write_session(l: &Layout, s: &SessionRecord) -> Result<()> {
    write_record(&l.session(&s.id)?, &to_json_bytes(s))
}
