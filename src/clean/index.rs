//! The index of the streaming engine (issue 15): what classification needs of every session,
//! in a few dozen bytes each, so that the items themselves can be streamed and dropped.
//!
//! Built by the first pass ([`super::inventory::Scanner::build_index`]) from the session records,
//! the job ↔ session relations (records' `mapreduce_data.job_id`, mappings, `job-state.json`,
//! 0.4.4 pseudo-repository names), the jobs' resumability (a checkpoint that parses) and the few
//! items kept whole (worktrees, resume locks). The second pass ([`super::stream`]) folds each
//! item's activity into its owner's row as items are measured, and asks for the owner's
//! [`Verdict`] once it is final.
//!
//! Ids are kept once, packed ([`ids`]: a 44-byte 0.4.4 session id in 18), in one byte arena;
//! an id of 48 bytes or more as the index of its stem (all but its last 16 bytes, kept once
//! for all the ids that share it) and its tail packed (issue 25: 128-character ids sharing
//! 120 in 21 bytes). Rows and jobs are vectors found through hash tables.
//! A row is 32 bytes: times are `u32` Unix seconds, the record's device an index into a short
//! table; an owner's pid and a count of checkpoints, which few records have, are a 12-byte
//! [`Side`]. What a minority of sessions have (an unreadable record's error, a job's checkpoint
//! that makes it resumable) is a 24-byte [`Note`] whose text is in the arena, a checkpoint's
//! evidence stored as (repository, job, file) and worded again when asked. What few sessions
//! have (a live lock, a process in a worktree, a kept worktree) is in a side map.

use super::classify::{classify_one, Class, Facts, Owned, OwnerFact, RecordFacts, Verdict};
use crate::store::records::SessionStatus;
use std::cell::RefCell;
use std::cmp::Ordering;
use std::collections::HashMap;

pub(crate) mod ids;
pub(crate) mod sip;

/// A slice of the arena.
#[derive(Clone, Copy, Debug)]
struct Span {
    off: u32,
    len: u32,
}

/// A time as packed in a [`Row`]: Unix seconds clamped to `1..=u32::MAX` (1970 to 2106); 0 is
/// "none". Clamping keeps every use on the safe side: a time before 1970 stays long past, one
/// after 2106 stays in the future, and a record whose mtime is after 2106 always looks changed
/// to the deletion-time check (so it is kept).
fn pack_time(t: Option<i64>) -> u32 {
    t.map_or(0, |t| t.clamp(1, u32::MAX as i64) as u32)
}

/// The time [`pack_time`] packed.
fn unpack_time(t: u32) -> Option<i64> {
    (t != 0).then_some(t as i64)
}

/// `Row::record` when the record could not be read.
const UNREADABLE: u8 = 7;
/// `Row::state` before the class is final.
const NO_CLASS: u8 = 7;
/// `Row::dev` when the record's device is not known.
const NO_DEV: u16 = u16::MAX;

/// One session, packed (32 bytes): what classification and the deletion-time checks need.
/// Its owner's pid and its count of checkpoints, which few records have, are a [`Side`].
#[derive(Debug)]
pub struct Row {
    /// Inode of `sessions/{id}.json` when it was read.
    rec_ino: u64,
    /// The id: `id_len` bytes at `id_off` in the arena (ids are at most 128 bytes).
    id_off: u32,
    /// The record's mtime when it was read ([`pack_time`]).
    rec_mtime: u32,
    /// Newest activity seen so far: the record file and every owned item measured.
    newest: u32,
    /// `updated_at`.
    updated_at: u32,
    /// Repository (index into [`Index::repos`]; `u16::MAX`: none), from `metadata.repo` or the
    /// first owned item.
    repo: u16,
    /// The record's device, as an index into `Index::devs` ([`NO_DEV`]: unknown).
    dev: u16,
    id_len: u8,
    /// Bits 0–2: `status` as [`STATUSES`] index ([`UNREADABLE`]: the record could not be
    /// read); bits 3–4: the owner (0: none, 1: on this host, its pid a [`Side`], 2:
    /// elsewhere); bit 5 ([`HAS_SIDE`]): it has a [`Side`].
    record: u8,
    /// Bits 0–2: the class once final ([`CLASSES`] index; [`NO_CLASS`]: not yet); bit 3: items
    /// of it waited for its class (see `clean::stream`), pass 3 takes them again.
    state: u8,
}

/// Session statuses by packed index.
const STATUSES: [SessionStatus; 6] = [
    SessionStatus::Initializing,
    SessionStatus::Running,
    SessionStatus::Paused,
    SessionStatus::Completed,
    SessionStatus::Failed,
    SessionStatus::Cancelled,
];

/// Classes by packed index.
const CLASSES: [Class; 7] = [
    Class::Active,
    Class::Resumable,
    Class::Stale,
    Class::Completed,
    Class::Failed,
    Class::Cancelled,
    Class::Unknown,
];

/// `Row::record`'s bit: the session has a [`Side`].
const HAS_SIDE: u8 = 1 << 5;

/// What a minority of records have, 12 bytes: an owner on this host (its pid) or checkpoints
/// listed (0.4.4). Sorted by row once sealed.
#[derive(Clone, Copy, Debug)]
struct Side {
    row: u32,
    pid: u32,
    /// Entries in `checkpoints` (saturating).
    checkpoints: u32,
}

impl Row {
    /// The record's status; `None`: unreadable (the error is a [`Note`]).
    pub fn status(&self) -> Option<SessionStatus> {
        STATUSES.get((self.record & 7) as usize).copied()
    }

    /// The record's mtime when pass 1 read it.
    pub fn rec_mtime(&self) -> Option<i64> {
        unpack_time(self.rec_mtime)
    }

    /// Newest activity seen so far.
    pub fn newest(&self) -> Option<i64> {
        unpack_time(self.newest)
    }

    /// Items of it waited for its class: pass 3 takes them again.
    pub fn waited(&self) -> bool {
        self.state & 8 != 0
    }

    /// Mark that items of it waited for its class.
    pub fn set_waited(&mut self) {
        self.state |= 8;
    }

    /// Repository, as an index into [`Index::repos`].
    pub fn repo(&self) -> Option<u16> {
        (self.repo != u16::MAX).then_some(self.repo)
    }

    /// Set the repository.
    pub fn set_repo(&mut self, r: u16) {
        self.repo = r;
    }

    fn class(&self) -> Option<Class> {
        CLASSES.get((self.state & 7) as usize).copied()
    }

    fn set_class(&mut self, k: u8) {
        self.state = (self.state & !7) | (k & 7);
    }
}

/// What a minority of sessions have, 24 bytes, texts in the arena.
#[derive(Clone, Copy, Debug)]
struct Note {
    row: u32,
    kind: NoteKind,
    /// Repository of a [`NoteKind::Checkpoint`] (index into [`Index::repos`]).
    repo: u16,
    /// The text; the job of a [`NoteKind::Checkpoint`].
    a: Span,
    /// The checkpoint file of a [`NoteKind::Checkpoint`].
    b: Span,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum NoteKind {
    /// Why the record could not be read.
    Error,
    /// Resumability evidence, as worded.
    Evidence,
    /// Resumability evidence [`checkpoint_evidence`] words.
    Checkpoint,
}

/// The evidence that checkpoint `file` of the canonical job directory `job_dir` (relative to
/// the root) parses: the one wording of `Scanner::job_state`, which the index stores as
/// (repository, job, file) and words again here.
pub(crate) fn checkpoint_evidence(job_dir: &str, file: &str) -> String {
    format!("{job_dir}/{file}{CHECKPOINT_TAIL}")
}

/// The directory of job `job` of repository `repo` (storage-format §4.4).
fn job_dir(repo: &str, job: &str) -> String {
    format!("state/{repo}/mapreduce/jobs/{job}")
}

const CHECKPOINT_TAIL: &str = " parses and the job is not complete";

/// What few sessions have.
#[derive(Debug, Default)]
pub struct RowRare {
    /// Evidence from owned items kept whole (resumability, live lock, process in a worktree).
    pub owned: Owned,
    /// One of its worktrees is kept: the detail for its record ("its worktree … is kept").
    pub worktree_kept: Option<String>,
}

/// An open-addressing hash table of indices into a sorted vector, keyed by the bytes of an id:
/// one hash and usually one comparison per lookup, where a binary search over 100,000 ids in
/// the arena costs 17 cache misses.
///
/// The hash is SipHash-1-3 (std's `HashMap` hash) keyed at random per table ([`sip::Key`]),
/// over the whole packed id. It was FNV-1a with the home slot taken from its high bits: a byte's effect on
/// those bits is mostly a multiple of 2^40, so ids differing only in their last bytes (a
/// counter after a shared prefix, as job ids started in one second have) got homes a few slots
/// apart, and linear probing turned that into one cluster: 19,504 probes a lookup at 40,000 such
/// ids, `stats` quadratic in sessions (issue 25). A keyed hash also leaves nothing to craft ids
/// against. The layout differs from run to run; what a lookup finds does not (keys are unique).
#[derive(Debug, Default)]
struct Table {
    /// Per slot: `u32::MAX` when empty; else the entry index, with (in a table of fewer than
    /// [`TAGGED`] entries) the hash's low 8 bits in the top 8 bits.
    slots: Vec<u32>,
    /// The hash's random key.
    seed: sip::Key,
    /// Whether the slots carry tags (fewer than [`TAGGED`] slots).
    tagged: bool,
}

/// Tables of fewer slots keep 8 bits of each entry's hash in its slot beside a 24-bit index,
/// so that a probe meeting another entry compares that tag, in the slot it has already loaded,
/// and reads the other entry's id (two more cache misses: its span, then its bytes) only
/// once in 256 times. Measured on `stats --all-repos` of 40,000 sessions with 128-character
/// ids: the probe loops were 8% of the samples, nearly all of it those misses (issue 25).
const TAGGED: usize = (1 << 24) - 1;

/// `v.partition_point(less)`, searched outward from `guess` (doubling the step) before the
/// binary search: O(log d) probes for an answer `d` entries from the guess, so a row's jobs or
/// notes (sorted by row, about as many a session) are found with a probe or two near where
/// they are instead of ~17 cache misses across the whole list (issue 25: `jobs_of` was 2% of
/// a dry run at 40,000 sessions). Any guess gives the right answer.
fn partition_near<T>(v: &[T], guess: usize, less: impl Fn(&T) -> bool) -> usize {
    let n = v.len();
    let g = guess.min(n);
    // Invariant: every entry before `lo` is less, none from `hi` on is.
    let (mut lo, mut hi) = (0, n);
    let mut step = 1;
    if g < n && less(&v[g]) {
        lo = g + 1;
        while let Some(p) = g.checked_add(step).filter(|&p| p < n) {
            if less(&v[p]) {
                lo = p + 1;
                step *= 2;
            } else {
                hi = p;
                break;
            }
        }
    } else {
        hi = g;
        while let Some(p) = g.checked_sub(step) {
            if less(&v[p]) {
                lo = p + 1;
                break;
            }
            hi = p;
            step *= 2;
        }
    }
    lo + v[lo..hi].partition_point(less)
}

/// `a == b`, the lengths and last bytes (where packed ids differ most: their random tails)
/// compared first: most probes of a lookup meet another id, and `==` on slices is a call to
/// `memcmp` (12% of the user time of `stats` at S2 before this, these probes and sorts together).
#[inline]
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.last() == b.last() && a == b
}

impl Table {
    /// A table of `n` entries whose key bytes `key(i)` gives.
    fn build<'k>(n: usize, key: impl Fn(u32) -> &'k [u8]) -> Table {
        // Two thirds full: short probes, 6 bytes an entry (a power-of-two size would cost up
        // to 10: 1 MiB at 100,000 sessions).
        Table::build_sized(n, n + n / 2, key)
    }

    /// [`Table::build`] with at least `size` slots.
    fn build_sized<'k>(n: usize, size: usize, key: impl Fn(u32) -> &'k [u8]) -> Table {
        let size = size.max(n + n / 2).max(16);
        let mut t = Table {
            slots: vec![u32::MAX; size],
            seed: sip::Key::default(),
            tagged: size < TAGGED,
        };
        for i in 0..n as u32 {
            t.place(i, key(i));
        }
        t
    }

    /// Put entry `i`, whose key is `k`, in its slot.
    fn place(&mut self, i: u32, k: &[u8]) {
        let size = self.slots.len();
        let (mut p, tag) = self.home(k, size);
        while self.slots[p] != u32::MAX {
            p = if p + 1 == size { 0 } else { p + 1 };
        }
        self.slots[p] = i | tag;
    }

    /// Add entry `n - 1` to a table of the `n - 1` entries before it (a table that grows as
    /// entries come: stems, owners found late); rebuilt twice as large when two thirds full,
    /// so each entry is placed twice on average.
    fn push<'k>(&mut self, n: usize, key: impl Fn(u32) -> &'k [u8]) {
        if n * 3 > self.slots.len() * 2 {
            *self = Table::build_sized(n, 3 * n, key);
        } else {
            let i = n as u32 - 1;
            self.place(i, key(i));
        }
    }

    /// The first slot to probe for `key` in a table of `size` slots (the hash scaled to the
    /// size by a multiplication: its high bits, not a division), and the tag its slot carries
    /// (the hash's low bits in the slot's top 8; 0 in an untagged table).
    fn home(&self, key: &[u8], size: usize) -> (usize, u32) {
        let h = self.seed.hash(key);
        let tag = if self.tagged { (h as u32) << 24 } else { 0 };
        (((h as u128 * size as u128) >> 64) as usize, tag)
    }

    /// Whether slot value `s` (not empty) may hold the entry whose tag is `tag`, and the
    /// entry's index.
    #[inline]
    fn entry(&self, s: u32, tag: u32) -> (bool, u32) {
        if self.tagged {
            (s & 0xFF00_0000 == tag, s & 0x00FF_FFFF)
        } else {
            (true, s)
        }
    }

    /// Slots probed to find `want` (1: its home slot), and how many of them read another
    /// entry's key, to test that probe sequences stay short.
    #[cfg(test)]
    fn probes<'k>(&self, want: &[u8], key: impl Fn(u32) -> &'k [u8]) -> (usize, usize) {
        let size = self.slots.len();
        let (mut p, tag) = self.home(want, size);
        let (mut n, mut read) = (1, 0);
        loop {
            let s = self.slots[p];
            assert_ne!(s, u32::MAX, "not found");
            let (may, i) = self.entry(s, tag);
            if may && same(key(i), want) {
                return (n, read);
            }
            read += may as usize;
            p = if p + 1 == size { 0 } else { p + 1 };
            n += 1;
        }
    }

    /// The entry whose key is `want`.
    fn find<'k>(&self, want: &[u8], key: impl Fn(u32) -> &'k [u8]) -> Option<u32> {
        let size = self.slots.len();
        if size == 0 {
            return None;
        }
        let (mut p, tag) = self.home(want, size);
        loop {
            let s = self.slots[p];
            if s == u32::MAX {
                return None;
            }
            let (may, i) = self.entry(s, tag);
            if may && same(key(i), want) {
                return Some(i);
            }
            p = if p + 1 == size { 0 } else { p + 1 };
        }
    }
}

/// The index: sessions, jobs, repositories.
#[derive(Debug, Default)]
pub struct Index {
    arena: Vec<u8>,
    rows: Vec<Row>,
    /// (job id, owner row), sorted by row, then job id ([`Index::seal_jobs`]); the first owner
    /// found keeps a job.
    jobs: Vec<(Span, u32)>,
    /// Repository names.
    pub repos: Vec<String>,
    /// Owners' pids and checkpoint counts of the rows that have them, by row once sealed.
    side: Vec<Side>,
    /// Rows by id (built by [`Index::seal`]).
    row_table: Table,
    /// Jobs by id (built by [`Index::seal_jobs`]).
    job_table: Table,
    /// Boxed: the map's slots stay small (a slot per bucket, most buckets empty).
    rare: HashMap<u32, Box<RowRare>>,
    /// Errors and resumability evidence, sorted by row once pass 1 is over ([`Index::compact`]).
    notes: Vec<Note>,
    notes_sorted: bool,
    /// Stems of long ids, packed ([`Index::with_key`]).
    stems: Vec<Span>,
    /// Stems by their packed bytes.
    stem_table: Table,
    /// The stems found, added or read last, with their bytes.
    recent_stems: RefCell<RecentStems>,
    /// Checkpoint file names already in the arena (a few names recur in every job).
    file_names: HashMap<Box<str>, Span>,
    /// Devices of the records (one, usually).
    devs: Vec<u64>,
    /// All items have been measured: classes that wait for activity are final.
    pub all_measured: bool,
    /// Owners that differ from the jobs table: `job-state.json` naming another session than
    /// the record, or a mapping naming a session without a record (yet, or unreadable: a
    /// tenth of the sessions in issue 25's trees). (job key, session key).
    extra_owner: Vec<(Span, Span)>,
    /// `extra_owner` by job key.
    extra_table: Table,
    /// Resumability evidence of job directories without an owning session (few).
    ownerless_evidence: HashMap<Box<str>, Box<str>>,
    /// Names in `sessions/` that are not records: temp files, invalid names (few).
    pub other_session_names: Vec<std::ffi::OsString>,
}

/// The stems ids were last looked up, added or read back by, with the stems' bytes as the
/// ids have them (unpacked). Ids that share a stem come together (issue 25's 40,000
/// 128-character job ids share one, their sessions' ids another): a lookup compares its id's
/// first bytes with these (a `memcmp` each) instead of packing them to find the stem, and
/// reading an id back copies them instead of unpacking its stem; packing and unpacking cost
/// about ten instructions a byte, and were a fifth of `clean --dry-run`'s instructions with
/// those ids.
#[derive(Debug, Default)]
struct RecentStems {
    /// (stem index in [`Index::stems`], the stem's bytes), at most [`RecentStems::LEN`].
    stems: Vec<(u32, Vec<u8>)>,
    /// The entry replaced next.
    next: usize,
}

impl RecentStems {
    /// Entries kept: a scan interleaves the ids of sessions and of jobs, and a few kinds of
    /// each (0.4.4's `session-{uuid}` are too short to have a stem).
    const LEN: usize = 4;

    /// Where stem `k` is.
    fn find(&self, k: u32) -> Option<&[u8]> {
        self.stems.iter().find(|e| e.0 == k).map(|e| &e.1[..])
    }

    /// Keep stem `k`, whose bytes `fill` appends to the (cleared) buffer it is given, in
    /// place of the entry kept longest.
    fn keep(&mut self, k: u32, fill: impl FnOnce(&mut Vec<u8>)) {
        if self.stems.len() < Self::LEN {
            self.stems.push((k, Vec::new()));
            self.next = self.stems.len() - 1;
        }
        let i = self.next;
        self.next = (i + 1) % Self::LEN;
        let e = &mut self.stems[i];
        e.0 = k;
        e.1.clear();
        fill(&mut e.1);
    }
}

/// Ids of at least this many bytes are kept as a stem and a tail ([`Index::with_key`]). Shorter
/// ids pack small enough (a 0.4.4 `session-{uuid}` in 18 bytes), and a stem of its own for
/// each of them would cost more than it saves.
const STEM_MIN: usize = 48;
/// The bytes of a long id after its stem: where ids started together differ (a counter, a
/// time), so that they share the stem (issue 25: 40,000 ids sharing their first 120
/// characters are kept in 21 bytes each instead of 70, with one stem).
const STEM_TAIL: usize = 16;
/// First byte of a stemmed key (never the first byte of a packed id).
const STEMMED: u8 = 0xC4;
/// The longest stemmed key: the marker, 4 bytes of stem index, a tail packed.
const STEMMED_MAX: u32 = 5 + 2 * STEM_TAIL as u32;

/// Id `id` split into its stem and tail, when it is long enough to have a stem.
fn split_stem(id: &[u8]) -> Option<(&[u8], &[u8])> {
    (id.len() >= STEM_MIN).then(|| id.split_at(id.len() - STEM_TAIL))
}

impl Index {
    fn put(&mut self, s: &str) -> Span {
        let off = self.arena.len() as u32;
        self.arena.extend_from_slice(s.as_bytes());
        Span {
            off,
            len: s.len() as u32,
        }
    }

    /// Put the key of id `s` ([`Index::with_key`]), adding its stem if it is new.
    fn put_id(&mut self, s: &str) -> Span {
        let id = s.as_bytes();
        let Some((stem, tail)) = split_stem(id) else {
            return self.put_packed(id);
        };
        let k = match self.stem_index(stem) {
            Some(k) => k,
            None => {
                let span = self.put_packed(stem);
                self.stems.push(span);
                let (arena, stems) = (&self.arena, &self.stems);
                self.stem_table.push(stems.len(), |i| {
                    let s = stems[i as usize];
                    &arena[s.off as usize..(s.off + s.len) as usize]
                });
                let k = stems.len() as u32 - 1;
                self.remember_stem(k, stem);
                k
            }
        };
        let off = self.arena.len() as u32;
        self.arena.push(STEMMED);
        self.arena.extend_from_slice(&k.to_le_bytes());
        ids::pack(tail, &mut self.arena);
        let len = self.arena.len() as u32 - off;
        debug_assert!(len <= STEMMED_MAX);
        Span { off, len }
    }

    /// Put the packed form of `b`.
    fn put_packed(&mut self, b: &[u8]) -> Span {
        let off = self.arena.len() as u32;
        ids::pack(b, &mut self.arena);
        Span {
            off,
            len: self.arena.len() as u32 - off,
        }
    }

    /// The index of stem `stem` (an id's first bytes, as [`split_stem`] cuts them), if the
    /// index has it: a recent stem's ([`RecentStems`]) when they are its bytes, else found by
    /// its packed form, and then kept as recent.
    fn stem_index(&self, stem: &[u8]) -> Option<u32> {
        if let Some(e) = self
            .recent_stems
            .borrow()
            .stems
            .iter()
            .find(|e| e.1 == stem)
        {
            return Some(e.0);
        }
        let k = ids::with_packed(stem, |p| self.find_stem(p))?;
        self.remember_stem(k, stem);
        Some(k)
    }

    /// Keep stem `k`, whose bytes are `raw`, as recent.
    fn remember_stem(&self, k: u32, raw: &[u8]) {
        self.recent_stems
            .borrow_mut()
            .keep(k, |v| v.extend_from_slice(raw));
    }

    /// The stem whose packed form is `p`, if the index has it.
    fn find_stem(&self, p: &[u8]) -> Option<u32> {
        self.stem_table
            .find(p, |i| self.bytes(self.stems[i as usize]))
    }

    /// Call `f` with the key of id `id`, what the tables hash and compare: its packed form
    /// ([`ids::pack`]) or, for an id of [`STEM_MIN`] bytes or more, [`STEMMED`], the index of
    /// its stem (all but its last [`STEM_TAIL`] bytes) in four bytes, then its tail packed.
    /// `None` when the index holds no id of that stem (so not this one). Two ids are equal
    /// exactly when their keys are.
    fn with_key<R>(&self, id: &[u8], f: impl FnOnce(Option<&[u8]>) -> R) -> R {
        let Some((stem, tail)) = split_stem(id) else {
            return ids::with_packed(id, |p| f(Some(p)));
        };
        let Some(k) = self.stem_index(stem) else {
            return f(None);
        };
        let mut buf = [0u8; STEMMED_MAX as usize];
        buf[0] = STEMMED;
        buf[1..5].copy_from_slice(&k.to_le_bytes());
        ids::with_packed(tail, |t| {
            buf[5..5 + t.len()].copy_from_slice(t);
            f(Some(&buf[..5 + t.len()]))
        })
    }

    /// The bytes of `s`: for an id its key ([`Index::with_key`]).
    fn bytes(&self, s: Span) -> &[u8] {
        &self.arena[s.off as usize..(s.off + s.len) as usize]
    }

    /// The stem index of key `k` if it has one.
    fn stem_of(k: &[u8]) -> Option<u32> {
        match k {
            [STEMMED, a, b, c, d, ..] => Some(u32::from_le_bytes([*a, *b, *c, *d])),
            _ => None,
        }
    }

    /// Call `f` with a packed form ([`ids`]) of the id whose key `s` holds: the key itself, or
    /// its stem's packed form followed by its packed tail (the tokens a packer working on
    /// the two halves makes; [`ids::unpack`] and [`ids::cmp_packed`] take any such sequence).
    fn with_packed_id<R>(&self, s: Span, f: impl FnOnce(&[u8]) -> R) -> R {
        let b = self.bytes(s);
        let Some(k) = Index::stem_of(b) else {
            return f(b);
        };
        let stem = self.bytes(self.stems[k as usize]);
        let tail = &b[5..];
        let n = stem.len() + tail.len();
        let mut buf = [0u8; 320];
        if n > buf.len() {
            return f(&[stem, tail].concat());
        }
        buf[..stem.len()].copy_from_slice(stem);
        buf[stem.len()..n].copy_from_slice(tail);
        f(&buf[..n])
    }

    /// Call `f` with the id whose key `s` holds, unpacked: a stemmed key's stem copied from
    /// [`RecentStems`] (unpacked there first unless it is recent), its tail unpacked after.
    fn with_id_bytes<R>(&self, s: Span, f: impl FnOnce(&[u8]) -> R) -> R {
        let b = self.bytes(s);
        let Some(k) = Index::stem_of(b) else {
            return ids::with_unpacked(b, f);
        };
        let mut buf = [0u8; 320];
        let n = {
            let mut recent = self.recent_stems.borrow_mut();
            if recent.find(k).is_none() {
                recent.keep(k, |v| ids::unpack(self.bytes(self.stems[k as usize]), v));
            }
            let stem = recent.find(k).expect("kept");
            match buf.get_mut(..stem.len()) {
                Some(head) => head.copy_from_slice(stem),
                None => {
                    let mut v = stem.to_vec();
                    drop(recent);
                    ids::unpack(&b[5..], &mut v);
                    return f(&v);
                }
            }
            stem.len()
        };
        // The borrow is over: `f` may look ids up.
        match ids::unpack_into(&b[5..], &mut buf[n..]) {
            Some(t) => f(&buf[..n + t]),
            None => {
                let mut v = buf[..n].to_vec();
                ids::unpack(&b[5..], &mut v);
                f(&v)
            }
        }
    }

    /// The id `s` holds, unpacked.
    fn id_of(&self, s: Span) -> String {
        self.with_id_bytes(s, ids::string_of)
    }

    /// Ids `a` and `b` in the order of their (unpacked) bytes: two tails of one stem compare
    /// as they are, without the stem.
    fn cmp_ids(&self, a: Span, b: Span) -> Ordering {
        let (x, y) = (self.bytes(a), self.bytes(b));
        match (Index::stem_of(x), Index::stem_of(y)) {
            (None, None) => ids::cmp_packed(x, y),
            (Some(i), Some(j)) if i == j => ids::cmp_packed(&x[5..], &y[5..]),
            _ => self.with_packed_id(a, |p| self.with_packed_id(b, |q| ids::cmp_packed(p, q))),
        }
    }

    /// A text (not an id).
    fn get(&self, s: Span) -> &str {
        // Only whole `&str`s are put in the arena, so every span is valid UTF-8.
        std::str::from_utf8(&self.arena[s.off as usize..(s.off + s.len) as usize])
            .expect("arena holds str")
    }

    /// Add a session (call [`Index::seal`] after the last).
    pub fn add_session(
        &mut self,
        id: &str,
        facts: Result<RecordFacts, String>,
        rec: Option<(u64, u64, i64)>,
        repo: Option<&str>,
    ) {
        let span = self.put_id(id);
        let repo = repo.map_or(u16::MAX, |r| self.repo_id(r));
        let row = self.rows.len() as u32;
        let (facts, error) = match facts {
            Ok(f) => (Some(f), None),
            Err(e) => (None, Some(e)),
        };
        let (dev, rec_ino, rec_mtime) = match rec {
            Some((d, i, m)) => (self.dev_id(d), i, pack_time(Some(m))),
            None => (NO_DEV, 0, 0),
        };
        let status = facts
            .and_then(|f| STATUSES.iter().position(|x| *x == f.status))
            .map_or(UNREADABLE, |k| k as u8);
        let owner = match facts.map(|f| f.owner) {
            Some(OwnerFact::Here(_)) => 1,
            Some(OwnerFact::Elsewhere) => 2,
            _ => 0,
        };
        self.rows.push(Row {
            rec_ino,
            id_off: span.off,
            rec_mtime,
            newest: rec_mtime,
            updated_at: pack_time(facts.and_then(|f| f.updated_at)),
            repo,
            dev,
            // Ids are valid ids: at most 128 bytes, packed at most 256.
            id_len: span.len.min(u8::MAX as u32) as u8,
            record: status | owner << 3,
            state: NO_CLASS,
        });
        let pid = match facts.map(|f| f.owner) {
            Some(OwnerFact::Here(p)) => p,
            _ => 0,
        };
        let checkpoints = facts.map_or(0, |f| f.checkpoints.min(u32::MAX as usize) as u32);
        if pid != 0 || checkpoints != 0 {
            self.side.push(Side {
                row,
                pid,
                checkpoints,
            });
            self.rows[row as usize].record |= HAS_SIDE;
        }
        if let Some(e) = error {
            let a = self.put(&e);
            self.push_note(Note {
                row,
                kind: NoteKind::Error,
                repo: 0,
                a,
                b: Span { off: 0, len: 0 },
            });
        }
    }

    /// The index of device `d` in `devs` ([`NO_DEV`] past 65,534 devices).
    fn dev_id(&mut self, d: u64) -> u16 {
        match self.devs.iter().position(|x| *x == d) {
            Some(i) => i as u16,
            None if self.devs.len() < NO_DEV as usize => {
                self.devs.push(d);
                (self.devs.len() - 1) as u16
            }
            None => NO_DEV,
        }
    }

    fn push_note(&mut self, n: Note) {
        if self.notes.last().is_some_and(|l| l.row > n.row) {
            self.notes_sorted = false;
        }
        self.notes.push(n);
    }

    /// The notes of row `r`, in the order they were added.
    fn notes_of(&self, r: u32) -> impl Iterator<Item = &Note> {
        let (start, all) = if self.notes_sorted || self.notes.is_empty() {
            let guess = self.near(r, self.notes.len());
            (partition_near(&self.notes, guess, |n| n.row < r), false)
        } else {
            (0, true)
        };
        self.notes[start..]
            .iter()
            .take_while(move |n| all || n.row == r)
            .filter(move |n| n.row == r)
    }

    /// Where row `r`'s entries would be in a list of `len` entries sorted by row if every
    /// session had as many: the guess [`partition_near`] starts from.
    fn near(&self, r: u32, len: usize) -> usize {
        (r as u64 * len as u64 / self.rows.len().max(1) as u64) as usize
    }

    /// The id span of row `r`.
    fn id_span(&self, r: u32) -> Span {
        let row = &self.rows[r as usize];
        Span {
            off: row.id_off,
            len: row.id_len as u32,
        }
    }

    /// Device and inode of the record of row `r` when pass 1 read it.
    pub fn rec_dev_ino(&self, r: u32) -> Option<(u64, u64)> {
        let row = &self.rows[r as usize];
        let dev = *self.devs.get(row.dev as usize)?;
        Some((dev, row.rec_ino))
    }

    /// Evidence that session row `r` can be resumed (`text`, as the scan worded it).
    pub fn add_evidence(&mut self, r: u32, text: &str) {
        let a = self.put(text);
        self.push_note(Note {
            row: r,
            kind: NoteKind::Evidence,
            repo: 0,
            a,
            b: Span { off: 0, len: 0 },
        });
    }

    /// Evidence that session row `r` can be resumed from its job `job` of repository `repo`
    /// (`text`, as `Scanner::job_state` worded it). A checkpoint's evidence is kept as
    /// (repository, job, file), 24 bytes, and worded again when asked; other text as it is.
    pub fn add_job_evidence(&mut self, r: u32, repo: &str, job: &str, text: &str) {
        let file = text
            .strip_prefix(job_dir(repo, job).as_str())
            .and_then(|t| t.strip_prefix('/'))
            .and_then(|t| t.strip_suffix(CHECKPOINT_TAIL))
            .filter(|f| !f.contains('/'));
        let repo_id = file.map(|_| self.repo_id(repo)).filter(|x| *x != u16::MAX);
        let note = match file.zip(repo_id) {
            Some((file, repo)) => {
                let a = match self.job_table_index(job) {
                    Some(i) => self.jobs[i as usize].0,
                    None => self.put_id(job),
                };
                let b = match self.file_names.get(file) {
                    Some(s) => *s,
                    None => {
                        let s = self.put(file);
                        if self.file_names.len() < 64 {
                            self.file_names.insert(file.into(), s);
                        }
                        s
                    }
                };
                Note {
                    row: r,
                    kind: NoteKind::Checkpoint,
                    repo,
                    a,
                    b,
                }
            }
            None => return self.add_evidence(r, text),
        };
        self.push_note(note);
    }

    /// The error and resumability evidence of row `r`, worded.
    fn worded_notes(&self, r: u32) -> (Option<String>, Vec<String>) {
        let (mut error, mut evidence) = (None, Vec::new());
        for n in self.notes_of(r) {
            match n.kind {
                NoteKind::Error => error = Some(self.get(n.a).to_string()),
                NoteKind::Evidence => evidence.push(self.get(n.a).to_string()),
                NoteKind::Checkpoint => evidence.push(checkpoint_evidence(
                    &job_dir(
                        self.repos.get(n.repo as usize).map_or("", |s| s.as_str()),
                        &self.id_of(n.a),
                    ),
                    self.get(n.b),
                )),
            }
        }
        (error, evidence)
    }

    /// Sort the sessions by id (rows are found by binary search from here on).
    pub fn seal(&mut self) {
        let mut order: Vec<u32> = (0..self.rows.len() as u32).collect();
        crate::sort::sort_unstable_by(&mut order, |&a, &b| {
            self.cmp_ids(self.id_span(a), self.id_span(b))
        });
        let mut new_of_old = vec![0u32; order.len()];
        for (new, &old) in order.iter().enumerate() {
            new_of_old[old as usize] = new as u32;
        }
        // Jobs added before sealing name rows by the order they were added in.
        for j in &mut self.jobs {
            j.1 = new_of_old[j.1 as usize];
        }
        // So do the rare parts and the notes (an unreadable record's error).
        self.rare = std::mem::take(&mut self.rare)
            .into_iter()
            .map(|(k, v)| (new_of_old[k as usize], v))
            .collect();
        for n in &mut self.notes {
            n.row = new_of_old[n.row as usize];
        }
        crate::sort::sort_by_key(&mut self.notes, |n| n.row);
        for x in &mut self.side {
            x.row = new_of_old[x.row as usize];
        }
        crate::sort::sort_unstable_by(&mut self.side, |a, b| a.row.cmp(&b.row));
        self.side.shrink_to_fit();
        self.notes_sorted = true;
        let mut rows = std::mem::take(&mut self.rows);
        // Apply the permutation in place (cycle by cycle).
        for i in 0..order.len() {
            let cur = i;
            while new_of_old[cur] as usize != cur {
                let to = new_of_old[cur] as usize;
                rows.swap(cur, to);
                new_of_old.swap(cur, to);
            }
        }
        rows.shrink_to_fit();
        self.rows = rows;
        self.arena.shrink_to_fit();
        let (arena, rows) = (&self.arena, &self.rows);
        self.row_table = Table::build(rows.len(), |i| {
            let r = &rows[i as usize];
            &arena[r.id_off as usize..r.id_off as usize + r.id_len as usize]
        });
    }

    /// Intern a repository name.
    pub fn repo_id(&mut self, r: &str) -> u16 {
        match self.repos.iter().position(|x| x == r) {
            Some(i) => i as u16,
            None => {
                self.repos.push(r.to_string());
                (self.repos.len() - 1).min(u16::MAX as usize) as u16
            }
        }
    }

    /// The row of session `id`.
    pub fn row(&self, id: &str) -> Option<u32> {
        self.with_key(id.as_bytes(), |want| self.row_of_key(want?))
    }

    /// The row of the session whose key is `want`.
    fn row_of_key(&self, want: &[u8]) -> Option<u32> {
        self.row_table.find(want, |i| self.bytes(self.id_span(i)))
    }

    /// The record facts of row `r`; `None`: unreadable (the error is a [`Note`]).
    pub fn facts(&self, r: u32) -> Option<RecordFacts> {
        let row = &self.rows[r as usize];
        let status = row.status()?;
        let side = (row.record & HAS_SIDE != 0)
            .then(|| {
                let guess = self.near(r, self.side.len());
                let k = partition_near(&self.side, guess, |x| x.row < r);
                self.side.get(k).filter(|x| x.row == r)
            })
            .flatten();
        Some(RecordFacts {
            status,
            updated_at: unpack_time(row.updated_at),
            checkpoints: side.map_or(0, |x| x.checkpoints as usize),
            owner: match row.record >> 3 & 3 {
                1 => OwnerFact::Here(side.map_or(0, |x| x.pid)),
                2 => OwnerFact::Elsewhere,
                _ => OwnerFact::None,
            },
        })
    }

    /// Row `r`.
    pub fn at(&self, r: u32) -> &Row {
        &self.rows[r as usize]
    }

    /// Row `r`, to change.
    pub fn at_mut(&mut self, r: u32) -> &mut Row {
        &mut self.rows[r as usize]
    }

    /// Session id of row `r`.
    pub fn id(&self, r: u32) -> String {
        self.id_of(self.id_span(r))
    }

    /// Number of sessions.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// True without sessions.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The rare part of row `r`, to change.
    pub fn rare_mut(&mut self, r: u32) -> &mut RowRare {
        self.rare.entry(r).or_default()
    }

    /// The rare part of row `r`.
    pub fn rare(&self, r: u32) -> Option<&RowRare> {
        self.rare.get(&r).map(|b| &**b)
    }

    /// Sort the notes by row and give back the slack of the vectors (after pass 1 filled them).
    pub fn compact(&mut self) {
        // Stable: a row's notes stay in the order they were added.
        crate::sort::sort_by_key(&mut self.notes, |n| n.row);
        self.notes_sorted = true;
        self.notes.shrink_to_fit();
        self.arena.shrink_to_fit();
        self.file_names = HashMap::new();
        self.rare.shrink_to_fit();
        self.extra_owner.shrink_to_fit();
    }

    /// Record that session row `r` owns job `job` (the first owner found keeps a job). Call
    /// [`Index::seal_jobs`] before looking jobs up. Before [`Index::seal`], `r` is the number of
    /// sessions added before the owner.
    pub fn add_job(&mut self, job: &str, r: u32) {
        let s = self.put_id(job);
        self.jobs.push((s, r));
    }

    /// Deduplicate the jobs (first owner wins) and sort them by owner, then id.
    pub fn seal_jobs(&mut self) {
        let mut jobs = std::mem::take(&mut self.jobs);
        // Stable: among equal job ids the first added stays first. Equal ids are equal packed.
        crate::sort::sort_by(&mut jobs, |a, b| self.bytes(a.0).cmp(self.bytes(b.0)));
        jobs.dedup_by(|b, a| self.bytes(a.0) == self.bytes(b.0));
        crate::sort::sort_by(&mut jobs, |a, b| {
            a.1.cmp(&b.1).then_with(|| self.cmp_ids(a.0, b.0))
        });
        jobs.shrink_to_fit();
        self.jobs = jobs;
        let (arena, jobs) = (&self.arena, &self.jobs);
        self.job_table = Table::build(jobs.len(), |i| {
            let s = jobs[i as usize].0;
            &arena[s.off as usize..(s.off + s.len) as usize]
        });
    }

    /// The owner row of job `job`.
    pub fn job_owner(&self, job: &str) -> Option<u32> {
        self.job_table_index(job).map(|i| self.jobs[i as usize].1)
    }

    /// A reference to job `job`, for [`Index::with_job_packed`] and [`Index::cmp_jobs`]: a
    /// job of the jobs table, or one whose owner was found late ([`Index::set_job_owner`]:
    /// the jobs of unreadable records, whose names would otherwise be packed again by every
    /// listing that holds them). Valid after [`Index::seal_jobs`], until it is called again.
    pub fn job_ref(&self, job: &str) -> Option<u32> {
        self.with_key(job.as_bytes(), |k| {
            let k = k?;
            self.job_of_key(k)
                .or_else(|| self.extra_of_key(k).map(|i| self.jobs.len() as u32 + i))
        })
    }

    /// The key of the job [`Index::job_ref`] gave `k` for.
    fn job_span(&self, k: u32) -> Span {
        match self.jobs.get(k as usize) {
            Some(j) => j.0,
            None => self.extra_owner[k as usize - self.jobs.len()].0,
        }
    }

    /// The jobs [`Index::job_ref`] gave `a` and `b` for, in the order of their ids' bytes (two
    /// tails of one stem compare without their 112-byte stem: issue 25's 128-character ids).
    pub fn cmp_jobs(&self, a: u32, b: u32) -> Ordering {
        self.cmp_ids(self.job_span(a), self.job_span(b))
    }

    /// Call `f` with a packed form ([`ids`]) of the job [`Index::job_ref`] gave `k` for.
    pub fn with_job_packed<R>(&self, k: u32, f: impl FnOnce(&[u8]) -> R) -> R {
        self.with_packed_id(self.job_span(k), f)
    }

    /// Call `f` with the id of the job [`Index::job_ref`] gave `k` for.
    pub fn with_job_bytes<R>(&self, k: u32, f: impl FnOnce(&[u8]) -> R) -> R {
        self.with_id_bytes(self.job_span(k), f)
    }

    /// Call `f` with the session id of row `r`.
    pub fn with_row_bytes<R>(&self, r: u32, f: impl FnOnce(&[u8]) -> R) -> R {
        self.with_id_bytes(self.id_span(r), f)
    }

    /// Call `f` with a packed form ([`ids`]) of the session id of row `r`.
    pub fn with_id_packed<R>(&self, r: u32, f: impl FnOnce(&[u8]) -> R) -> R {
        self.with_packed_id(self.id_span(r), f)
    }

    fn job_table_index(&self, job: &str) -> Option<u32> {
        self.with_key(job.as_bytes(), |want| self.job_of_key(want?))
    }

    /// The job whose key is `want` in the jobs table.
    fn job_of_key(&self, want: &[u8]) -> Option<u32> {
        self.job_table
            .find(want, |i| self.bytes(self.jobs[i as usize].0))
    }

    /// Where the job whose key is `want` is in `extra_owner`.
    fn extra_of_key(&self, want: &[u8]) -> Option<u32> {
        if self.extra_owner.is_empty() {
            return None;
        }
        self.extra_table
            .find(want, |i| self.bytes(self.extra_owner[i as usize].0))
    }

    /// The owner of `job`: the key of the session [`Index::set_job_owner`] gave it, else its
    /// owner row in the jobs table (its key made once for both tables).
    fn owner_key_or_row(&self, job: &str) -> Option<Result<Span, u32>> {
        self.with_key(job.as_bytes(), |k| {
            let k = k?;
            if let Some(i) = self.extra_of_key(k) {
                return Some(Ok(self.extra_owner[i as usize].1));
            }
            self.job_of_key(k).map(|i| Err(self.jobs[i as usize].1))
        })
    }

    /// Record that `job` belongs to session `sid`, overriding the jobs table (see `extra_owner`).
    pub fn set_job_owner(&mut self, job: &str, sid: &str) {
        let s = self.put_id(sid);
        if let Some(i) = self.extra_owner_index(job) {
            self.extra_owner[i as usize].1 = s;
            return;
        }
        let j = self.put_id(job);
        self.extra_owner.push((j, s));
        let (arena, extra) = (&self.arena, &self.extra_owner);
        self.extra_table.push(extra.len(), |i| {
            let s = extra[i as usize].0;
            &arena[s.off as usize..(s.off + s.len) as usize]
        });
    }

    /// The owning session of `job` (its id, and its row when it has a record).
    pub fn owner_of_job(&self, job: &str) -> Option<(String, Option<u32>)> {
        Some(match self.owner_key_or_row(job)? {
            Ok(s) => (self.id_of(s), self.row_of_key(self.bytes(s))),
            Err(r) => (self.id(r), Some(r)),
        })
    }

    /// The row of `job`'s owning session: `None` without an owner, `Some(None)` for an owner
    /// without a record. [`Index::owner_of_job`] without making the owner's id.
    pub fn owner_row_of_job(&self, job: &str) -> Option<Option<u32>> {
        Some(match self.owner_key_or_row(job)? {
            Ok(s) => self.row_of_key(self.bytes(s)),
            Err(r) => Some(r),
        })
    }

    /// Where `job` is in `extra_owner`.
    fn extra_owner_index(&self, job: &str) -> Option<u32> {
        if self.extra_owner.is_empty() {
            return None;
        }
        self.with_key(job.as_bytes(), |want| self.extra_of_key(want?))
    }

    /// Keep the evidence that ownerless job directory `job` can be resumed.
    pub fn set_ownerless_evidence(&mut self, job: &str, why: String) {
        self.ownerless_evidence.insert(job.into(), why.into());
    }

    /// The evidence that ownerless job directory `job` can be resumed.
    pub fn ownerless_evidence(&self, job: &str) -> Option<String> {
        self.ownerless_evidence.get(job).map(|s| s.to_string())
    }

    /// The jobs of session row `r`.
    pub fn jobs_of(&self, r: u32) -> Vec<String> {
        let guess = self.near(r, self.jobs.len());
        let start = partition_near(&self.jobs, guess, |(_, x)| *x < r);
        self.jobs[start..]
            .iter()
            .take_while(|(_, x)| *x == r)
            .map(|(s, _)| self.id_of(*s))
            .collect()
    }

    /// Fold an owned item's newest activity into row `r`.
    pub fn fold_newest(&mut self, r: u32, n: Option<i64>) {
        if let Some(n) = n {
            let row = &mut self.rows[r as usize];
            let newest = row.newest().map_or(n, |x| x.max(n));
            row.newest = pack_time(Some(newest));
        }
    }

    /// The verdict of session row `r`, or `None` while it is not final: its class depends on
    /// activity not all measured yet. Once final the class is kept, so a session is classified
    /// once; its evidence is worded again from the same facts when asked (not kept).
    pub fn verdict(&mut self, r: u32, f: &Facts<'_>) -> Option<Verdict> {
        let row = &self.rows[r as usize];
        let last = row.newest();
        let facts = self.facts(r);
        let cached = row.class();
        if let Some(class) = cached.filter(|c| !c.protected()) {
            // Only a protected class's evidence is ever printed (a kept item's detail).
            return Some(Verdict {
                class,
                evidence: String::new(),
                last_activity: last,
            });
        }
        let rare = self.rare.get(&r);
        let (error, mut resumable) = self.worded_notes(r);
        if let Some(x) = rare {
            resumable.extend(x.owned.resumable.iter().cloned());
        }
        let owned = Owned {
            resumable,
            live_lock: rare.and_then(|x| x.owned.live_lock.clone()),
            in_use: rare.and_then(|x| x.owned.in_use.clone()),
            last,
        };
        let waits = cached.is_none()
            && !self.all_measured
            && owned.live_lock.is_none()
            && owned.in_use.is_none()
            && facts.is_some_and(|fa| fa.needs_activity());
        let rec_rel = format!("sessions/{}.json", self.id(r));
        let mut v = classify_one(
            &rec_rel,
            facts.as_ref().ok_or(error.as_deref().unwrap_or("")),
            owned,
            f,
        );
        match cached {
            // The class stays what it was first found to be (a pid that died since, say).
            Some(c) if c != v.class => {
                v.class = c;
                v.evidence = format!("classified {} earlier in this run", c.word());
            }
            Some(_) => {}
            // Activity only grows: a class that activity made Active stays Active; any other
            // class of a session that waits for activity may still change.
            None if waits && v.class != Class::Active => return None,
            None => {
                let k = CLASSES.iter().position(|c| *c == v.class);
                self.rows[r as usize].set_class(k.map_or(NO_CLASS, |k| k as u8));
            }
        }
        Some(v)
    }

    /// Classes of every session, for the report (after the whole run).
    pub fn classes(
        &mut self,
        f: &Facts<'_>,
        in_scope: impl Fn(&Row, &Index) -> bool,
    ) -> std::collections::BTreeMap<&'static str, u64> {
        let mut out = std::collections::BTreeMap::new();
        for r in 0..self.rows.len() as u32 {
            if !in_scope(&self.rows[r as usize], self) {
                continue;
            }
            if let Some(v) = self.verdict(r, f) {
                *out.entry(v.class.word()).or_default() += 1;
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_near_agrees_with_partition_point_from_any_guess() {
        // Sorted lists with runs, gaps and repeats; every cut and every guess, past the end too.
        let lists: Vec<Vec<u32>> = vec![
            vec![],
            vec![5],
            (0..40).collect(),
            (0..40).map(|k| k / 7).collect(),
            std::iter::repeat(3).take(33).collect(),
            (0..50).map(|k| k * k).collect(),
        ];
        for v in &lists {
            for want in 0..(v.last().copied().unwrap_or(0) + 2) {
                let expect = v.partition_point(|&x| x < want);
                for guess in 0..v.len() + 3 {
                    assert_eq!(
                        partition_near(v, guess, |&x| x < want),
                        expect,
                        "{v:?} want {want} guess {guess}"
                    );
                }
            }
        }
    }

    fn facts(status: SessionStatus, owner: OwnerFact) -> RecordFacts {
        RecordFacts {
            status,
            updated_at: Some(1000),
            checkpoints: 0,
            owner,
        }
    }

    #[test]
    fn sessions_and_jobs_are_found_by_id_and_the_first_owner_keeps_a_job() {
        let mut x = Index::default();
        for id in ["s-b", "s-a", "s-c"] {
            x.add_session(
                id,
                Ok(facts(SessionStatus::Completed, OwnerFact::None)),
                None,
                None,
            );
        }
        x.seal();
        let (a, b) = (x.row("s-a").unwrap(), x.row("s-b").unwrap());
        assert_eq!(x.id(a), "s-a");
        assert!(x.row("s-z").is_none());
        x.add_job("j-2", b);
        x.add_job("j-1", a);
        x.add_job("j-2", a);
        x.add_job("j-3", a);
        x.seal_jobs();
        assert_eq!(x.job_owner("j-2"), Some(b));
        assert_eq!(x.job_owner("j-1"), Some(a));
        assert_eq!(x.job_owner("j-9"), None);
        assert_eq!(x.jobs_of(a), vec!["j-1", "j-3"]);
        assert_eq!(x.jobs_of(b), vec!["j-2"]);
        // The owner's row alone agrees with the owner, and an owner set later overrides both
        // (one with a record, one without).
        assert_eq!(x.owner_row_of_job("j-1"), Some(Some(a)));
        assert_eq!(x.owner_row_of_job("j-9"), None);
        x.set_job_owner("j-1", "s-c");
        x.set_job_owner("j-9", "s-gone");
        let c = x.row("s-c").unwrap();
        assert_eq!(x.owner_of_job("j-1"), Some(("s-c".to_string(), Some(c))));
        assert_eq!(x.owner_row_of_job("j-1"), Some(Some(c)));
        assert_eq!(x.owner_of_job("j-9"), Some(("s-gone".to_string(), None)));
        assert_eq!(x.owner_row_of_job("j-9"), Some(None));
        assert_eq!(x.owner_row_of_job("j-2"), Some(Some(b)));
    }

    #[test]
    fn owners_pids_and_checkpoint_counts_follow_their_rows_in_32_bytes_a_row() {
        assert_eq!(std::mem::size_of::<Row>(), 32);
        let mut x = Index::default();
        let ids = ["s-d", "s-a", "s-c", "s-b", "s-e"];
        let owners = [
            (OwnerFact::Here(41), 0),
            (OwnerFact::None, 3),
            (OwnerFact::Elsewhere, 0),
            (OwnerFact::Here(7), 2),
            (OwnerFact::None, 0),
        ];
        for (id, (owner, checkpoints)) in ids.iter().zip(owners) {
            let mut f = facts(SessionStatus::Running, owner);
            f.checkpoints = checkpoints;
            x.add_session(id, Ok(f), None, None);
        }
        x.add_session("s-0", Err("broken".into()), None, None);
        x.seal();
        assert_eq!(x.side.len(), 3, "only rows with a pid or checkpoints");
        for (id, (owner, checkpoints)) in ids.iter().zip(owners) {
            let f = x.facts(x.row(id).unwrap()).unwrap();
            assert_eq!((f.owner, f.checkpoints), (owner, checkpoints), "{id}");
        }
        assert!(x.facts(x.row("s-0").unwrap()).is_none());
    }

    #[test]
    fn jobs_added_before_sealing_follow_their_sessions() {
        let mut x = Index::default();
        for (k, id) in ["s-c", "s-a", "s-d", "s-b"].iter().enumerate() {
            x.add_session(
                id,
                Ok(facts(SessionStatus::Failed, OwnerFact::None)),
                Some((1, k as u64 + 10, 5)),
                None,
            );
            x.add_job(&format!("j-{id}"), k as u32);
        }
        x.seal();
        x.seal_jobs();
        for id in ["s-a", "s-b", "s-c", "s-d"] {
            let r = x.row(id).unwrap();
            assert_eq!(x.id(r), id);
            assert_eq!(x.job_owner(&format!("j-{id}")), Some(r));
        }
        let ino: Vec<u64> = (0..4).map(|r| x.rec_dev_ino(r).unwrap().1).collect();
        let mut y = Index::default();
        y.add_session("s-b", Err("broken".into()), None, None);
        y.add_session(
            "s-a",
            Ok(facts(SessionStatus::Failed, OwnerFact::None)),
            None,
            None,
        );
        y.seal();
        assert_eq!(
            y.worded_notes(y.row("s-b").unwrap()).0.as_deref(),
            Some("broken")
        );
        assert_eq!(y.worded_notes(y.row("s-a").unwrap()), (None, vec![]));
        assert_eq!(ino, vec![11, 13, 10, 12], "rows moved with their ids");
    }

    #[test]
    fn job_evidence_is_worded_again_exactly_as_the_scan_worded_it() {
        let mut x = Index::default();
        x.add_session(
            "session-a",
            Ok(facts(SessionStatus::Failed, OwnerFact::None)),
            None,
            None,
        );
        x.seal();
        x.add_job("mapreduce-0123abcd", 0);
        x.seal_jobs();
        let dir = "state/repo-1/mapreduce/jobs/mapreduce-0123abcd";
        let texts = [
            checkpoint_evidence(dir, "setup-checkpoint.json"),
            checkpoint_evidence("state/repo-1/mapreduce/jobs/mapreduce-9", "map.json"),
            format!("{dir}/setup-checkpoint.json says something else"),
        ];
        for t in &texts {
            x.add_job_evidence(0, "repo-1", "mapreduce-0123abcd", t);
        }
        x.add_evidence(0, "state/w/checkpoints/x has status Running");
        x.compact();
        assert_eq!(
            x.notes_of(0)
                .filter(|n| n.kind == NoteKind::Checkpoint)
                .count(),
            1
        );
        let (error, evidence) = x.worded_notes(0);
        assert_eq!(error, None);
        let mut want = texts.to_vec();
        want.push("state/w/checkpoints/x has status Running".into());
        assert_eq!(evidence, want);
    }

    /// A sealed index of completed sessions `ids`, each owning the job `job_of` names.
    fn completed_with_jobs(ids: &[String], job_of: impl Fn(&str) -> String) -> Index {
        let mut x = Index::default();
        for (k, id) in ids.iter().enumerate() {
            x.add_session(
                id,
                Ok(facts(SessionStatus::Completed, OwnerFact::None)),
                None,
                None,
            );
            x.add_job(&job_of(id), k as u32);
        }
        x.seal();
        x.seal_jobs();
        x
    }

    /// Ids of the shapes that made probe sequences long (issue 25): a long shared prefix and a
    /// counter at the end, as jobs started in one second have; 128-character ids sharing 120;
    /// and ids that differ only in their last byte or two, which FNV-1a's high bits (what the
    /// home slot was made of) hardly saw.
    fn adversarial_ids(n: usize) -> Vec<Vec<String>> {
        let body =
            ("-20260101T000000-".to_string() + &"0123456789abcdef".repeat(2) + "-run").repeat(4);
        let long = |p: &str, k: usize| format!("{}{k:08x}", &format!("{p}{body}")[..120]);
        let tail = |k: usize| {
            let a = b"0123456789abcdefghijklmnopqrstuvwxyz";
            format!(
                "mapreduce-x{}{}{}",
                a[k % 36] as char,
                a[k / 36 % 36] as char,
                a[k / 1296 % 36] as char
            )
        };
        vec![
            (0..n)
                .map(|k| format!("session-mapreduce-20260101T000000-{k:06x}"))
                .collect(),
            (0..n).map(|k| long("session", k)).collect(),
            (0..n).map(tail).collect(),
        ]
    }

    #[test]
    fn ids_sharing_long_prefixes_keep_probe_sequences_short() {
        let n = 40_000;
        for ids in adversarial_ids(n) {
            let x = completed_with_jobs(&ids, |id| format!("mapreduce-{}", &id[id.len() - 6..]));
            let mut total = 0;
            let mut longest = 0;
            let mut reads = 0;
            for id in &ids {
                let r = x.row(id).expect("found");
                assert_eq!(&x.id(r), id);
                let (p, read) = x.with_key(id.as_bytes(), |w| {
                    x.row_table.probes(w.unwrap(), |i| x.bytes(x.id_span(i)))
                });
                total += p;
                longest = longest.max(p);
                reads += read;
                let job = format!("mapreduce-{}", &id[id.len() - 6..]);
                assert_eq!(x.job_owner(&job), Some(r));
            }
            // Linear probing two thirds full expects 2 probes a successful lookup; a clustered
            // table took thousands here.
            let mean = total as f64 / n as f64;
            assert!(
                mean < 4.0,
                "{}: mean probes {mean}, longest {longest}",
                ids[0]
            );
            assert!(longest < 200, "{}: longest probe {longest}", ids[0]);
            // Tags: a probe reads another entry's id once in 256 times.
            assert!(
                reads < n / 50,
                "{}: {reads} reads of other ids in {n} lookups",
                ids[0]
            );
        }
    }

    /// Ids long enough to have a stem ([`STEM_MIN`]) and short ones, mixed: ids that share a
    /// stem, ids whose stem is a prefix of another id, ids one byte apart in length, and
    /// bytes on both sides of the split packed as hex runs and UUIDs.
    fn mixed_ids() -> Vec<String> {
        let stem = "session-20260101T000000-0123456789abcdef0123456789abcdef-run";
        let mut v: Vec<String> = Vec::new();
        for k in 0..300u32 {
            v.push(format!("{stem}-{k:08x}"));
            v.push(format!("{stem}-{k:08x}-x"));
            v.push(format!("mapreduce-{k:04x}"));
            v.push(format!("{}{k}", &stem[..STEM_MIN - 2]));
        }
        v.push(stem.to_string());
        v.push(format!("{stem}-"));
        v.push(format!("{stem}z"));
        v.push(format!("s-{}", "0".repeat(126)));
        v.push(format!("s-{}", "0".repeat(125)));
        v.push("session-daf6092e-da53-4cfd-9f92-3587d23bcaf0-and-a-tail-of-it".into());
        v.push("x".repeat(128));
        v
    }

    #[test]
    fn long_ids_keep_a_shared_stem_once_and_sort_find_and_read_back_as_ids() {
        let ids = mixed_ids();
        let mut x = completed_with_jobs(&ids, |id| format!("mapreduce-{id}"));
        let mut sorted = ids.clone();
        sorted.sort();
        let rows: Vec<String> = (0..x.len() as u32).map(|r| x.id(r)).collect();
        assert_eq!(rows, sorted, "rows are in the order of their ids' bytes");
        for id in &ids {
            let r = x.row(id).unwrap_or_else(|| panic!("{id} not found"));
            assert_eq!(&x.id(r), id);
            assert_eq!(x.jobs_of(r), vec![format!("mapreduce-{id}")]);
            assert_eq!(x.job_owner(&format!("mapreduce-{id}")), Some(r));
            for other in [format!("{id}0"), id[..id.len() - 1].to_string()] {
                assert_eq!(
                    x.row(&other).map(|r| x.id(r)).as_deref(),
                    ids.contains(&other).then_some(other.as_str()),
                    "{other}"
                );
            }
        }
        // Jobs compare, and read back, in the order of their ids.
        let mut jobs: Vec<u32> = (0..x.jobs.len() as u32).collect();
        jobs.sort_by(|&a, &b| x.cmp_jobs(a, b));
        let in_order: Vec<String> = jobs
            .iter()
            .map(|&k| x.with_job_packed(k, ids::unpacked))
            .collect();
        let mut want: Vec<String> = ids.iter().map(|i| format!("mapreduce-{i}")).collect();
        want.sort();
        assert_eq!(in_order, want);
        // An id of an unknown stem is not looked for in the table.
        let unknown = format!("{}{}", "q".repeat(60), "0".repeat(16));
        assert!(x.with_key(unknown.as_bytes(), |k| k.is_none()));
        assert!(x.row(&unknown).is_none());
        // Owners set late: long ids, a session without a record, an owner replaced.
        let long_job = format!("mapreduce-{}", ids[0]);
        x.set_job_owner(&long_job, &ids[4]);
        x.set_job_owner("mapreduce-zz", &format!("{}-gone-0123456789", ids[0]));
        let r4 = x.row(&ids[4]).unwrap();
        assert_eq!(x.owner_of_job(&long_job), Some((ids[4].clone(), Some(r4))));
        assert_eq!(
            x.owner_of_job("mapreduce-zz"),
            Some((format!("{}-gone-0123456789", ids[0]), None))
        );
        x.set_job_owner(&long_job, &ids[8]);
        assert_eq!(x.owner_row_of_job(&long_job), Some(x.row(&ids[8])));
        // A job known only by its late owner has a reference too, past the jobs table's.
        let zz = x.job_ref("mapreduce-zz").expect("a reference");
        assert_eq!(zz as usize, x.jobs.len() + 1, "the second owner set late");
        assert_eq!(x.with_job_packed(zz, ids::unpacked), "mapreduce-zz");
        let first = x.job_ref(&long_job).expect("in the table");
        assert_eq!(x.cmp_jobs(first, zz), Ordering::Less);
        assert_eq!(x.cmp_jobs(zz, first), Ordering::Greater);
        assert_eq!(x.job_ref("mapreduce-zy"), None);
    }

    #[test]
    fn ids_read_back_exactly_whichever_stems_were_looked_up_last() {
        // More stems than `RecentStems` keeps, taken in turn, and ids too long for the stack
        // buffers (no valid id is, but the index takes any text).
        let mut ids: Vec<String> = Vec::new();
        for len in [48, 49, 100, 128, 300, 336, 337, 700] {
            for stem in ["session-", "mapreduce-", "a-", "b-", "c-", "d-"] {
                for k in 0..3 {
                    let mut id = format!("{stem}{}", "0123456789abcdef-".repeat(50));
                    id.truncate(len - 2);
                    ids.push(format!("{id}{k:02}"));
                }
            }
        }
        let x = completed_with_jobs(&ids, |id| format!("mapreduce-{id}"));
        for round in 0..2 {
            for (i, id) in ids.iter().enumerate() {
                // In order, then scrambled (every seventh, from the end): other stems recent.
                let id = if round == 0 {
                    id
                } else {
                    &ids[(ids.len() - 1 - i) * 7 % ids.len()]
                };
                let r = x.row(id).unwrap_or_else(|| panic!("{id} not found"));
                assert_eq!(&x.id(r), id);
                assert!(x.with_row_bytes(r, |b| b == id.as_bytes()));
                let job = format!("mapreduce-{id}");
                let k = x.job_ref(&job).expect("a job");
                assert!(x.with_job_bytes(k, |b| b == job.as_bytes()), "{job}");
                assert_eq!(x.jobs_of(r), vec![job]);
            }
        }
    }

    #[test]
    fn ids_sharing_120_characters_cost_a_few_bytes_each_beyond_their_tails() {
        let body =
            ("-20260101T000000-".to_string() + &"0123456789abcdef".repeat(2) + "-run").repeat(4);
        let n = 10_000;
        let mut x = Index::default();
        for k in 0..n {
            let sid = format!("{}{k:08x}", &format!("session{body}")[..120]);
            let jid = format!("{}{k:08x}", &format!("mapreduce{body}")[..120]);
            x.add_session(
                &sid,
                Ok(facts(SessionStatus::Completed, OwnerFact::None)),
                None,
                None,
            );
            x.add_job(&jid, k as u32);
        }
        x.seal();
        x.seal_jobs();
        // Two stems; each key is the marker, the stem's index and 16 characters packed.
        assert_eq!(x.stems.len(), 2);
        let per_session = x.arena.len() / n;
        assert!(
            per_session <= 2 * 16,
            "{per_session} bytes of ids a session"
        );
        // The table that grows as stems come finds every one of many.
        let mut y = Index::default();
        for k in 0..5000 {
            y.put_id(&format!("{k:060}-0123456789abcdef"));
        }
        assert_eq!(y.stems.len(), 5000);
        for k in (0..5000).step_by(7) {
            let id = format!("{k:060}-0123456789abcdef");
            let p = ids::with_packed(&id.as_bytes()[..id.len() - STEM_TAIL], |p| p.to_vec());
            *y.recent_stems.borrow_mut() = RecentStems::default();
            assert_eq!(y.find_stem(&p), Some(k));
        }
    }

    #[test]
    fn a_running_session_without_a_checkable_owner_waits_for_all_activity() {
        let f = Facts {
            now: 100_000,
            host: "here",
            in_use: &[],
            root_path: std::path::Path::new("/r"),
        };
        let mut x = Index::default();
        x.add_session(
            "s",
            Ok(facts(SessionStatus::Running, OwnerFact::Elsewhere)),
            Some((1, 2, 1000)),
            None,
        );
        x.seal();
        let r = x.row("s").unwrap();
        assert!(x.verdict(r, &f).is_none(), "waits: an item may be recent");
        // A recent item makes it active at once, for good.
        x.fold_newest(r, Some(99_000));
        assert_eq!(x.verdict(r, &f).map(|v| v.class), Some(Class::Active));
        let mut y = Index::default();
        y.add_session(
            "s",
            Ok(facts(SessionStatus::Running, OwnerFact::Elsewhere)),
            Some((1, 2, 1000)),
            None,
        );
        y.seal();
        assert!(y.verdict(0, &f).is_none());
        y.all_measured = true;
        assert_eq!(y.verdict(0, &f).map(|v| v.class), Some(Class::Stale));
    }
}
