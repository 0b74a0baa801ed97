//! The report's lists of removed and kept items, with memory bounded by a spill file.
//!
//! A clean of a large root lists hundreds of thousands of entries (issue 15: at 100,000
//! sessions the two lists alone cost more than 70 MiB), but every output shape prints its totals
//! before the entries (`--json`: `before`, `after`, then `removed` and `kept`), so the entries must
//! be kept until the end. Up to [`SPILL_AT`] entries stay in memory; beyond that they are
//! appended, one length-prefixed record each ([`encode`]), to an unlinked temporary file in
//! `$TMPDIR` (never under
//! the storage root: a dry run creates nothing there) and read back in order by
//! [`EntryList::for_each`]. When no temporary file can be made the entries stay in memory, as
//! before. Counts and bytes are kept as they are pushed, so totals need no pass over the list.

use super::{Entry, Reason};
use crate::store::StorageType;
use std::io::{BufWriter, Read, Seek, Write};

/// Entries kept in memory before the list spills to its file (issue 25: it was 1,024; at 512
/// the peak RSS of a dry run of 40,000 sessions in one repository is about 1.5 MiB lower, and
/// its slope over 10,000 sessions' about 20 bytes a session lower, at no measurable cost in
/// time; the batches stay at `clean::stream::BATCH_ITEMS`, which sets how often a real run
/// fsyncs).
pub const SPILL_AT: usize = 512;

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
    /// Number and bytes of the entries of each reason (by [`reason_index`]; the last for none).
    by_reason: [(u64, u64); REASONS.len() + 1],
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
            by_reason: self.by_reason,
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

    /// Move every entry of `other` to the end of this list, in order, leaving `other` empty
    /// (a batch's report into the run's: the entries in memory are moved, not copied).
    pub fn append(&mut self, other: &mut EntryList) {
        if other.file.is_some() {
            for e in other.iter() {
                self.push(e);
            }
        } else {
            for e in other.mem.drain(..) {
                self.push(e);
            }
        }
        *other = EntryList::default();
    }

    /// Number and bytes of the entries of each reason (`None`: entries without one), for the
    /// reasons that have entries, without reading the entries back.
    pub fn by_reason(&self) -> impl Iterator<Item = (Option<Reason>, u64, u64)> + '_ {
        self.by_reason
            .iter()
            .enumerate()
            .filter(|(_, (n, _))| *n > 0)
            .map(|(k, &(n, b))| (REASONS.get(k).copied(), n, b))
    }

    /// Append one entry.
    pub fn push(&mut self, e: Entry) {
        self.count += 1;
        self.bytes += e.bytes;
        let k = e.reason.map_or(REASONS.len(), reason_index);
        self.by_reason[k].0 += 1;
        self.by_reason[k].1 += e.bytes;
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
        let mut rec = Vec::new();
        for e in &self.mem {
            rec.clear();
            encode(e, &mut rec);
            ok = ok && w.write_all(&rec).is_ok();
        }
        ok = ok && w.flush().is_ok();
        if ok {
            self.mem.clear();
        } else {
            // A full $TMPDIR: what was written stays valid only up to the failed record, so stop
            // spilling and keep the rest in memory. The file is read up to its last whole record.
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
    rec: Vec<u8>,
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
            rec: Vec::new(),
        })
    }

    /// The next whole record, or `None` at the end (a record cut short by a failed write ends
    /// the list there).
    fn next_entry(&mut self) -> std::io::Result<Option<Entry>> {
        if self.read + 4 > self.end {
            return Ok(None);
        }
        let mut len = [0u8; 4];
        self.r.read_exact(&mut len)?;
        let n = u32::from_le_bytes(len) as u64;
        if self.read + 4 + n > self.end {
            return Ok(None);
        }
        self.rec.resize(n as usize, 0);
        self.r.read_exact(&mut self.rec)?;
        self.read += 4 + n;
        decode(&self.rec)
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

/// No string: an optional string's length when it is `None`.
const NONE: u32 = u32::MAX;

/// `e` appended to `out` as one record: its length (u32, little-endian), then the type's and
/// the reason's index (u8 each, 255 for no reason), the bytes (u64), the number of `also`
/// paths (u32), then repository, path, owner, detail and the `also` paths, each a length (u32,
/// [`NONE`] for a missing one) and its UTF-8 bytes. Our own file, read back by [`decode`] in
/// the same run: a small fixed layout instead of JSON (issue 25: JSON through
/// `serde_json::Value` was a tenth of a dry run's time at 40,000 sessions).
fn encode(e: &Entry, out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&[0; 4]);
    let ty = StorageType::ALL
        .iter()
        .position(|t| *t == e.ty)
        .unwrap_or(0);
    out.push(ty as u8);
    out.push(e.reason.map_or(u8::MAX, |r| reason_index(r) as u8));
    out.extend_from_slice(&e.bytes.to_le_bytes());
    out.extend_from_slice(&(e.also.len() as u32).to_le_bytes());
    let mut put = |s: Option<&str>| match s {
        Some(s) => {
            out.extend_from_slice(&(s.len() as u32).to_le_bytes());
            out.extend_from_slice(s.as_bytes());
        }
        None => out.extend_from_slice(&NONE.to_le_bytes()),
    };
    put(e.repo.as_deref());
    put(Some(&e.path));
    put(e.owner.as_deref());
    put(Some(&e.detail));
    for a in &e.also {
        put(Some(a));
    }
    let len = (out.len() - start - 4) as u32;
    out[start..start + 4].copy_from_slice(&len.to_le_bytes());
}

/// The entry [`encode`] wrote as `rec` (without its length), or `None` if it is not one.
fn decode(rec: &[u8]) -> Option<Entry> {
    let mut at = 0usize;
    let mut take = |n: usize| {
        let s = rec.get(at..at.checked_add(n)?)?;
        at += n;
        Some(s)
    };
    let ty = *StorageType::ALL.get(take(1)?[0] as usize)?;
    let reason = match take(1)?[0] {
        u8::MAX => None,
        r => Some(*REASONS.get(r as usize)?),
    };
    let bytes = u64::from_le_bytes(take(8)?.try_into().ok()?);
    let n_also = u32::from_le_bytes(take(4)?.try_into().ok()?) as usize;
    let mut text = || -> Option<Option<String>> {
        let n = u32::from_le_bytes(take(4)?.try_into().ok()?);
        if n == NONE {
            return Some(None);
        }
        let s = std::str::from_utf8(take(n as usize)?).ok()?;
        Some(Some(s.to_string()))
    };
    let repo = text()?;
    let path = text()??;
    let owner = text()?;
    let detail = text()??;
    let mut also = Vec::with_capacity(n_also.min(rec.len()));
    for _ in 0..n_also {
        also.push(text()??);
    }
    Some(Entry {
        ty,
        repo,
        path,
        bytes,
        owner,
        reason,
        detail,
        also,
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
            let mut rec = Vec::new();
            encode(&e, &mut rec);
            let back = decode(&rec[4..]).expect("decodes");
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
        // The totals by reason, kept as entries are pushed, are those of the entries.
        let mut want: Vec<(Option<Reason>, u64, u64)> = Vec::new();
        for e in l.iter() {
            match want.iter_mut().find(|w| w.0 == e.reason) {
                Some(w) => (w.1, w.2) = (w.1 + 1, w.2 + e.bytes),
                None => want.push((e.reason, 1, e.bytes)),
            }
        }
        let mut got: Vec<_> = l.by_reason().collect();
        let key = |r: &(Option<Reason>, u64, u64)| r.0.map_or(usize::MAX, reason_index);
        want.sort_by_key(key);
        got.sort_by_key(key);
        assert_eq!(got, want);
        assert!(got.len() > 2 && got.iter().any(|g| g.0.is_none()));
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
        // Appended to another list (moved when in memory, read back when spilled).
        let mut all = EntryList::default();
        let mut small = EntryList::default();
        small.push(entry(1));
        all.append(&mut small);
        assert!(small.is_empty() && small.to_vec().is_empty());
        let mut copy = EntryList::default();
        for e in l.iter() {
            copy.push(e);
        }
        all.append(&mut copy);
        assert_eq!((all.len(), copy.len()), (n + 1, 0));
        let paths: Vec<String> = all.iter().map(|e| e.path).collect();
        let want: Vec<String> = std::iter::once(1)
            .chain(0..n)
            .map(|k| entry(k).path)
            .collect();
        assert_eq!(paths, want);
        l.push(entry(n));
        l.push(entry(n + 1));
        for _ in 0..SPILL_AT {
            l.push(entry(3));
        }
        assert_eq!(l.to_vec().len(), n + 2 + SPILL_AT);
    }

    #[test]
    fn a_record_cut_short_or_garbled_does_not_decode() {
        let mut rec = Vec::new();
        encode(&entry(5), &mut rec);
        let body = &rec[4..];
        assert_eq!(
            u32::from_le_bytes(rec[..4].try_into().unwrap()) as usize,
            body.len()
        );
        assert!(decode(body).is_some());
        for cut in 0..body.len() {
            assert!(decode(&body[..cut]).is_none(), "cut at {cut}");
        }
        let mut bad = body.to_vec();
        bad[0] = 200; // no such type
        assert!(decode(&bad).is_none());
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
