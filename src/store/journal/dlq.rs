//! The dead letter queue of a job, `dlq/{repo}/{job_id}/dlq-items.json` (storage-format §4.3).

use super::read_record;
use crate::error::Result;
use crate::store::layout::{write_record, Layout};
use crate::store::records::{to_json_bytes, DlqFailure, DlqFile, DlqItem};
use serde_json::{Map, Value};

/// Read the job's DLQ (storage-format §4.3); an absent file is an empty queue.
pub fn read_dlq(l: &Layout, job_id: &str) -> Result<DlqFile> {
    Ok(read_record::<DlqFile>(&l.dlq(job_id)?)?.unwrap_or_default())
}

/// Record a failed attempt of a work item in the job's DLQ: the item is added, or its
/// `failure_history` gains one entry (run.md §5.3: merged with what is there).
pub fn dlq_add(
    l: &Layout,
    job_id: &str,
    item_id: &str,
    work_item: &Value,
    failure: DlqFailure,
    extra: Map<String, Value>,
) -> Result<()> {
    let mut f = read_dlq(l, job_id)?;
    match f.items.iter_mut().find(|i| i.item_id == item_id) {
        Some(i) => {
            i.work_item = work_item.clone();
            i.failure_history.push(failure);
            i.extra.extend(extra);
        }
        None => f.items.push(DlqItem {
            item_id: item_id.to_string(),
            work_item: work_item.clone(),
            failure_history: vec![failure],
            extra,
        }),
    }
    write_record(&l.dlq(job_id)?, &to_json_bytes(&f))
}

/// Remove a work item from the job's DLQ (it succeeded on a retry). Absent item: no change.
pub fn dlq_remove(l: &Layout, job_id: &str, item_id: &str) -> Result<bool> {
    let mut f = read_dlq(l, job_id)?;
    let before = f.items.len();
    f.items.retain(|i| i.item_id != item_id);
    if f.items.len() == before {
        return Ok(false);
    }
    write_record(&l.dlq(job_id)?, &to_json_bytes(&f))?;
    Ok(true)
}
