//! Session↔job mappings, `state/{repo}/mappings/{id}.json` (storage-format §4.5).

use crate::error::Result;
use crate::store::layout::{write_record, Layout};
use crate::store::records::{to_json_bytes, SessionJobMapping};

/// Write the session↔job mapping to both `state/{repo}/mappings/{session_id}.json` and
/// `{job_id}.json`, same bytes (storage-format §4.5). When the two ids are equal (a standard
/// workflow), one file.
pub fn write_mapping(l: &Layout, m: &SessionJobMapping) -> Result<()> {
    let bytes = to_json_bytes(m);
    write_record(&l.mapping(&m.session_id)?, &bytes)?;
    if m.job_id != m.session_id {
        write_record(&l.mapping(&m.job_id)?, &bytes)?;
    }
    Ok(())
}
