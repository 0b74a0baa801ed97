//! The report's lists of removed and kept items, with memory bounded by a spill file.
//!
//! A clean of a large root lists hundreds of thousands of entries (issue 15: at 100,000
//! sessions the two lists alone cost more than 70 MiB), but every output shape prints its totals
//! before the entries (`--json`: `before`, `after`, then `removed` and `kept`), so the entries must
//! be kept until the end. Up to [`SPILL_AT`] entries stay in memory; beyond that they are
//! appended, one JSON array per line, to an unlinked temporary file in `$TMPDIR` (never under
//! the storage root: a dry run creates nothing there) and read back in order by
//! [`EntryList::for_each`]. When no temporary file can be made the entries stay in memory, as
//! before. Counts and bytes are kept as they are pushed, so totals need no pass over the list.

use super::{Entry, Reason};
use crate::store::StorageType;
use std::io::{BufRead, BufWriter, Seek, Write};

/// Entries kept in memory before the list spills to its file.
pub const SPILL_AT: usize = 1024;

/// Every [`Reason`], in declaration order: the spill file stores a reason by its index here.
const REASONS: [Reason; 18] = [
    Reason::Active,
    Reason::Resumable,
    Reason::Unknown,
    Reason::OwnerKept,
    Reason::Uncommitted,
    Reason::Locked,
    Reason::Unreachable,
    Reason::NestedKept,
    Reason::InUse,
    Reason::LiveLock,
    Reason::OtherFilesystem,
    Reason::Git,
    Reason::InvalidName,
    Reason::Unrecognized,
    Reason::Unreadable,
    Reason::FutureTimestamp,
    Reason::Changed,
    Reason::Failed,
];

/// `r`'s index in [`REASONS`]; exhaustive, so a new reason cannot be forgotten there.
fn reason_index(r: Reason) -> usize {
    match r {
        Reason::Active => 0,
        Reason::Resumable => 1,
        Reason::Unknown => 2,
        Reason::OwnerKept => 3,
        Reason::Uncommitted => 4,
        Reason::Locked => 5,
        Reason::Unreachable => 6,
        Reason::NestedKept => 7,
        Reason::InUse => 8,
        Reason::LiveLock => 9,
        Reason::OtherFilesystem => 10,
        Reason::Git => 11,
        Reason::InvalidName => 12,
        Reason::Unrecognized => 13,
        Reason::Unreadable => 14,
        Reason::FutureTimestamp => 15,
        Reason::Changed => 16,
        Reason::Failed => 17,
    }
}

/// A list of report entries: in memory up to [`SPILL_AT`], then in an unlinked temporary file.
#[derive(Debug, Default)]
pub struct EntryList {
    /// Entries not written to the file (the newest ones).
    mem: Vec<Entry>,
    /// The spill file, once made, buffered for appending.
    file: Option<BufWriter<std::fs::File>>,
    /// False once making the spill file failed: the list then stays in memory.
    no_spill: bool,
    /// Number of entries.
    count: usize,
    /// Sum of their bytes.
    bytes: u64,
}

impl Clone for EntryList {
    /// A copy in memory (used for the quota's `blocked_by`, which is small or in memory anyway).
    fn clone(&self) -> Self {
        let mut mem = Vec::with_capacity(self.count);
        self.for_each(|e| mem.push(e));
        EntryList {
            mem,
            file: None,
            no_spill: true,
            count: self.count,
            bytes: self.bytes,
        }
    }
}

impl EntryList {
    /// Number of entries.
    pub fn len(&self) -> usize {
        self.count
    }

    /// True when there is none.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Sum of the entries' bytes.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Append one entry.
    pub fn push(&mut self, e: Entry) {
        self.count += 1;
        self.bytes += e.bytes;
        self.mem.push(e);
        if self.mem.len() >= SPILL_AT && !self.no_spill {
            self.spill();
        }
    }

    /// Write the in-memory entries to the spill file (made on first use).
    fn spill(&mut self) {
        if self.file.is_none() {
            match spill_file() {
                Some(f) => self.file = Some(BufWriter::with_capacity(64 << 10, f)),
                None => {
                    self.no_spill = true;
                    return;
                }
            }
        }
        let w = self.file.as_mut().expect("made above");
        let mut ok = true;
        for e in &self.mem {
            ok = ok
                && serde_json::to_writer(&mut *w, &encode(e)).is_ok()
                && w.write_all(b"\n").is_ok();
        }
        ok = ok && w.flush().is_ok();
        if ok {
            self.mem.clear();
        } else {
            // A full $TMPDIR: what was written stays valid only up to the failed line, so stop
            // spilling and keep the rest in memory. The file is read up to its last whole line.
            self.no_spill = true;
        }
    }

    /// Sort the entries by `key` when they are all in memory (a spilled list keeps the order
    /// it was made in: type by type, as items are handled).
    pub fn sort_in_memory_by<K: Ord>(&mut self, key: impl FnMut(&Entry) -> K) {
        if self.file.is_none() {
            crate::sort::sort_by_key(&mut self.mem, key);
        }
    }

    /// Call `f` with every entry, in order (see [`EntryList::iter`]).
    pub fn for_each(&self, f: impl FnMut(Entry)) {
        self.iter().for_each(f)
    }

    /// Every entry, in order (see [`EntryList::iter`]).
    pub fn to_vec(&self) -> Vec<Entry> {
        self.iter().collect()
    }

    /// The entries in order: the spilled ones read back from the file, then those in memory.
    /// A spill file that cannot be read back ends the spilled part early, with a warning on
    /// stderr (the totals, kept apart, stay right).
    pub fn iter(&self) -> Iter<'_> {
        let spilled = self
            .file
            .as_ref()
            .and_then(|w| match Spilled::open(w.get_ref()) {
                Ok(s) => Some(s),
                Err(e) => {
                    warn_unreadable(&e);
                    None
                }
            });
        Iter {
            spilled,
            mem: self.mem.iter(),
        }
    }
}

/// Iterator of [`EntryList::iter`].
pub struct Iter<'a> {
    spilled: Option<Spilled>,
    mem: std::slice::Iter<'a, Entry>,
}

impl Iterator for Iter<'_> {
    type Item = Entry;
    fn next(&mut self) -> Option<Entry> {
        if let Some(s) = &mut self.spilled {
            match s.next_entry() {
                Ok(Some(e)) => return Some(e),
                Ok(None) => {}
                Err(e) => warn_unreadable(&e),
            }
            self.spilled = None;
        }
        self.mem.next().cloned()
    }
}

fn warn_unreadable(e: &std::io::Error) {
    let _ = writeln!(
        std::io::stderr(),
        "prodigy: warning: cannot read back the report's temporary file ({e}); the list is incomplete"
    );
}

/// A reader of the spill file from its start. The handle shares the file offset with the
/// writer, so the end is remembered and restored when the reader goes (appending goes on there).
struct Spilled {
    r: std::io::BufReader<std::fs::File>,
    end: u64,
    read: u64,
    line: Vec<u8>,
}

impl Spilled {
    fn open(f: &std::fs::File) -> std::io::Result<Spilled> {
        let mut r = f.try_clone()?;
        let end = r.stream_position()?;
        r.seek(std::io::SeekFrom::Start(0))?;
        Ok(Spilled {
            r: std::io::BufReader::with_capacity(64 << 10, r),
            end,
            read: 0,
            line: Vec::new(),
        })
    }

    fn next_entry(&mut self) -> std::io::Result<Option<Entry>> {
        if self.read >= self.end {
            return Ok(None);
        }
        self.line.clear();
        let n = self.r.read_until(b'\n', &mut self.line)?;
        if n == 0 || self.line.last() != Some(&b'\n') {
            return Ok(None);
        }
        self.read += n as u64;
        let v: serde_json::Value = serde_json::from_slice(&self.line)?;
        decode(&v)
            .map(Some)
            .ok_or_else(|| std::io::Error::other("malformed entry"))
    }
}

impl Drop for Spilled {
    fn drop(&mut self) {
        let _ = self.r.get_mut().seek(std::io::SeekFrom::Start(self.end));
    }
}

/// An unlinked temporary file in `$TMPDIR`, or `None`.
fn spill_file() -> Option<std::fs::File> {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir();
    for _ in 0..8 {
        let p = dir.join(format!(
            ".prodigy-report-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let mut o = std::fs::OpenOptions::new();
        o.read(true).write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
        match o.open(&p) {
            Ok(f) => {
                // Unlinked at once: it vanishes with the process, however it ends.
                #[cfg(unix)]
                let _ = std::fs::remove_file(&p);
                #[cfg(not(unix))]
                let _ = &p;
                return Some(f);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(_) => return None,
        }
    }
    None
}

/// `[type, repository, path, bytes, owner, reason, detail, also]`.
fn encode(e: &Entry) -> serde_json::Value {
    serde_json::json!([
        e.ty.word(),
        e.repo,
        e.path,
        e.bytes,
        e.owner,
        e.reason.map(reason_index),
        e.detail,
        e.also,
    ])
}

fn decode(v: &serde_json::Value) -> Option<Entry> {
    let a = v.as_array()?;
    let s = |k: usize| a.get(k).and_then(|x| x.as_str()).map(str::to_string);
    Some(Entry {
        ty: StorageType::from_word(a.first()?.as_str()?)?,
        repo: s(1),
        path: s(2)?,
        bytes: a.get(3)?.as_u64()?,
        owner: s(4),
        reason: match a.get(5)? {
            serde_json::Value::Null => None,
            n => Some(*REASONS.get(n.as_u64()? as usize)?),
        },
        detail: s(6)?,
        also: a
            .get(7)?
            .as_array()?
            .iter()
            .map(|x| x.as_str().map(str::to_string))
            .collect::<Option<Vec<_>>>()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(k: usize) -> Entry {
        Entry {
            ty: StorageType::ALL[k % 6],
            repo: (k % 3 != 0).then(|| format!("repo-{k}")),
            path: format!("events/r/job-{k}\n\u{1b}"),
            bytes: k as u64 * 7,
            owner: (k % 2 == 0).then(|| format!("session-{k}")),
            reason: (k % 4 != 0).then(|| REASONS[k % REASONS.len()]),
            detail: format!("detail {k}"),
            also: (0..k % 3).map(|i| format!("also-{i}")).collect(),
        }
    }

    #[test]
    fn every_reason_round_trips() {
        for (i, r) in REASONS.iter().enumerate() {
            assert_eq!(reason_index(*r), i);
            let mut e = entry(1);
            e.reason = Some(*r);
            let back = decode(&encode(&e)).expect("decodes");
            assert_eq!(back.reason, Some(*r));
        }
    }

    #[test]
    fn a_spilled_list_reads_back_in_order_with_its_totals() {
        let mut l = EntryList::default();
        let n = SPILL_AT * 2 + 17;
        for k in 0..n {
            l.push(entry(k));
        }
        assert!(l.file.is_some(), "spilled to a temporary file");
        assert!(l.mem.len() < SPILL_AT);
        assert_eq!(l.len(), n);
        assert_eq!(l.bytes(), (0..n as u64).map(|k| k * 7).sum::<u64>());
        // Twice: reading back leaves the file ready for more.
        for _ in 0..2 {
            let v = l.to_vec();
            assert_eq!(v.len(), n);
            for (k, e) in v.iter().enumerate() {
                let want = entry(k);
                assert_eq!(
                    (&e.path, e.bytes, &e.owner, e.reason, &e.also, e.ty, &e.repo, &e.detail),
                    (
                        &want.path,
                        want.bytes,
                        &want.owner,
                        want.reason,
                        &want.also,
                        want.ty,
                        &want.repo,
                        &want.detail
                    )
                );
            }
        }
        l.push(entry(n));
        l.push(entry(n + 1));
        for _ in 0..SPILL_AT {
            l.push(entry(3));
        }
        assert_eq!(l.to_vec().len(), n + 2 + SPILL_AT);
    }

    #[test]
    fn a_small_list_stays_in_memory_and_sorts() {
        let mut l = EntryList::default();
        for k in [3, 1, 2] {
            l.push(entry(k));
        }
        l.sort_in_memory_by(|e| e.bytes);
        assert!(l.file.is_none());
        let v: Vec<u64> = l.to_vec().iter().map(|e| e.bytes).collect();
        assert_eq!(v, vec![7, 14, 21]);
    }
}
