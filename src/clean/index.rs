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
//! Ids are kept once, in one byte arena; rows and jobs are sorted vectors searched by id. What
//! few sessions have (an unreadable record's error, resumability evidence, a live lock, a kept
//! worktree) is in a side map.

use super::classify::{classify_one, Class, Facts, Owned, OwnerFact, RecordFacts, Verdict};
use crate::store::records::SessionStatus;
use std::collections::HashMap;

/// A slice of the arena.
#[derive(Clone, Copy, Debug)]
struct Span {
    off: u32,
    len: u32,
}

/// "None" in the packed `i64` fields of [`Row`].
const NONE: i64 = i64::MIN;

/// One session, packed (64 bytes): what classification and the deletion-time checks need.
#[derive(Debug)]
pub struct Row {
    id: Span,
    /// Device and inode of `sessions/{id}.json` when it was read (0, 0: unknown).
    rec_dev: u64,
    rec_ino: u64,
    /// Its mtime then, Unix seconds ([`NONE`]: unknown).
    rec_mtime: i64,
    /// Newest activity seen so far: the record file and every owned item measured.
    newest: i64,
    /// `updated_at`, Unix seconds.
    updated_at: i64,
    /// `metadata.owner.pid` when the owner is on this host.
    pid: u32,
    /// Entries in `checkpoints` (saturating).
    checkpoints: u32,
    /// Repository (index into [`Index::repos`]; `u16::MAX`: none), from `metadata.repo` or the
    /// first owned item.
    repo: u16,
    /// `status` as [`STATUSES`] index; 255: the record could not be read.
    status: u8,
    /// 0: no owner, 1: on this host (`pid`), 2: elsewhere.
    owner: u8,
    /// The class once final ([`CLASSES`] index; 255: not yet).
    class: u8,
    /// Items of it waited for its class (see `clean::stream`): pass 3 takes them again.
    pub waited: bool,
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

fn opt(v: i64) -> Option<i64> {
    (v != NONE).then_some(v)
}

impl Row {
    /// The record's facts; `None`: unreadable (the error is in the side map).
    pub fn facts(&self) -> Option<RecordFacts> {
        let status = *STATUSES.get(self.status as usize)?;
        Some(RecordFacts {
            status,
            updated_at: opt(self.updated_at),
            checkpoints: self.checkpoints as usize,
            owner: match self.owner {
                1 => OwnerFact::Here(self.pid),
                2 => OwnerFact::Elsewhere,
                _ => OwnerFact::None,
            },
        })
    }

    /// Device and inode of the record when pass 1 read it.
    pub fn rec_dev_ino(&self) -> Option<(u64, u64)> {
        (self.rec_ino != 0 || self.rec_dev != 0).then_some((self.rec_dev, self.rec_ino))
    }

    /// The record's mtime when pass 1 read it.
    pub fn rec_mtime(&self) -> Option<i64> {
        opt(self.rec_mtime)
    }

    /// Newest activity seen so far.
    pub fn newest(&self) -> Option<i64> {
        opt(self.newest)
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
        CLASSES.get(self.class as usize).copied()
    }
}

/// What few sessions have.
#[derive(Debug, Default)]
pub struct RowRare {
    /// Why the record could not be read.
    pub error: Option<String>,
    /// Evidence from owned items (resumability, live lock, process in a worktree).
    pub owned: Owned,
    /// One of its worktrees is kept: the detail for its record ("its worktree … is kept").
    pub worktree_kept: Option<String>,
}

/// An open-addressing hash table of indices into a sorted vector, keyed by the bytes of an id:
/// one hash and usually one comparison per lookup, where a binary search over 100,000 ids in
/// the arena costs 17 cache misses.
#[derive(Debug, Default)]
struct Table {
    /// Entry index per slot; `u32::MAX`: empty.
    slots: Vec<u32>,
}

/// FNV-1a, 64 bits.
fn hash(b: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &x in b {
        h ^= x as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

impl Table {
    /// A table of `n` entries whose key bytes `key(i)` gives.
    fn build<'k>(n: usize, key: impl Fn(u32) -> &'k [u8]) -> Table {
        let size = (n * 2).next_power_of_two().max(16);
        let mut slots = vec![u32::MAX; size];
        for i in 0..n as u32 {
            let mut p = hash(key(i)) as usize & (size - 1);
            while slots[p] != u32::MAX {
                p = (p + 1) & (size - 1);
            }
            slots[p] = i;
        }
        Table { slots }
    }

    /// The entry whose key is `want`.
    fn find<'k>(&self, want: &[u8], key: impl Fn(u32) -> &'k [u8]) -> Option<u32> {
        if self.slots.is_empty() {
            return None;
        }
        let mask = self.slots.len() - 1;
        let mut p = hash(want) as usize & mask;
        loop {
            match self.slots[p] {
                u32::MAX => return None,
                i if key(i) == want => return Some(i),
                _ => p = (p + 1) & mask,
            }
        }
    }
}

/// The index: sessions, jobs, repositories.
#[derive(Debug, Default)]
pub struct Index {
    arena: Vec<u8>,
    rows: Vec<Row>,
    /// (job id, row), sorted by job id; the first owner found wins.
    jobs: Vec<(Span, u32)>,
    /// (row, job id), sorted by row: a session's jobs.
    jobs_of: Vec<(u32, Span)>,
    /// Repository names.
    pub repos: Vec<String>,
    /// Rows by id (built by [`Index::seal`]).
    row_table: Table,
    /// Jobs by id (built by [`Index::seal_jobs`]).
    job_table: Table,
    /// Boxed: the map's slots stay small (a slot per bucket, most buckets empty).
    rare: HashMap<u32, Box<RowRare>>,
    /// All items have been measured: classes that wait for activity are final.
    pub all_measured: bool,
    /// Owners that differ from the jobs table: `job-state.json` naming another session than
    /// the record, or a mapping naming a session without a record (yet). Few.
    extra_owner: HashMap<Box<str>, Box<str>>,
    /// Resumability evidence of job directories without an owning session (few).
    ownerless_evidence: HashMap<Box<str>, Box<str>>,
    /// Names in `sessions/` that are not records: temp files, invalid names (few).
    pub other_session_names: Vec<std::ffi::OsString>,
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

    /// The bytes of `s`: what searches and sorts compare (no UTF-8 check per comparison).
    fn bytes(&self, s: Span) -> &[u8] {
        &self.arena[s.off as usize..(s.off + s.len) as usize]
    }

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
        let span = self.put(id);
        let repo = repo.map_or(u16::MAX, |r| self.repo_id(r));
        let row = self.rows.len() as u32;
        let (facts, error) = match facts {
            Ok(f) => (Some(f), None),
            Err(e) => (None, Some(e)),
        };
        let (rec_dev, rec_ino, rec_mtime) = rec.unwrap_or((0, 0, NONE));
        self.rows.push(Row {
            id: span,
            rec_dev,
            rec_ino,
            rec_mtime,
            newest: rec_mtime,
            updated_at: facts.and_then(|f| f.updated_at).unwrap_or(NONE),
            pid: match facts.map(|f| f.owner) {
                Some(OwnerFact::Here(p)) => p,
                _ => 0,
            },
            checkpoints: facts.map_or(0, |f| f.checkpoints.min(u32::MAX as usize) as u32),
            repo,
            status: facts
                .and_then(|f| STATUSES.iter().position(|x| *x == f.status))
                .map_or(255, |k| k as u8),
            owner: match facts.map(|f| f.owner) {
                Some(OwnerFact::Here(_)) => 1,
                Some(OwnerFact::Elsewhere) => 2,
                _ => 0,
            },
            class: 255,
            waited: false,
        });
        if error.is_some() {
            self.rare.entry(row).or_default().error = error;
        }
    }

    /// Sort the sessions by id (rows are found by binary search from here on).
    pub fn seal(&mut self) {
        let mut order: Vec<u32> = (0..self.rows.len() as u32).collect();
        order.sort_unstable_by(|&a, &b| {
            self.bytes(self.rows[a as usize].id)
                .cmp(self.bytes(self.rows[b as usize].id))
        });
        let mut new_of_old = vec![0u32; order.len()];
        for (new, &old) in order.iter().enumerate() {
            new_of_old[old as usize] = new as u32;
        }
        // Jobs added before sealing name rows by the order they were added in.
        for j in &mut self.jobs {
            j.1 = new_of_old[j.1 as usize];
        }
        // So do the rare parts (an unreadable record's error).
        self.rare = std::mem::take(&mut self.rare)
            .into_iter()
            .map(|(k, v)| (new_of_old[k as usize], v))
            .collect();
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
            let s = rows[i as usize].id;
            &arena[s.off as usize..(s.off + s.len) as usize]
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
        self.row_table
            .find(id.as_bytes(), |i| self.bytes(self.rows[i as usize].id))
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
    pub fn id(&self, r: u32) -> &str {
        self.get(self.rows[r as usize].id)
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

    /// Give back the slack of the rare parts' strings and lists (after pass 1 filled them).
    pub fn compact(&mut self) {
        for x in self.rare.values_mut() {
            x.owned.resumable.shrink_to_fit();
            for e in &mut x.owned.resumable {
                e.shrink_to_fit();
            }
            if let Some(e) = &mut x.error {
                e.shrink_to_fit();
            }
        }
        self.rare.shrink_to_fit();
        self.extra_owner.shrink_to_fit();
    }

    /// Record that session row `r` owns job `job` (the first owner found keeps a job). Call
    /// [`Index::seal_jobs`] before looking jobs up. Before [`Index::seal`], `r` is the number of
    /// sessions added before the owner.
    pub fn add_job(&mut self, job: &str, r: u32) {
        let s = self.put(job);
        self.jobs.push((s, r));
    }

    /// Sort and deduplicate the jobs (first owner wins).
    pub fn seal_jobs(&mut self) {
        let mut jobs = std::mem::take(&mut self.jobs);
        // Stable: among equal job ids the first added stays first.
        jobs.sort_by(|a, b| self.bytes(a.0).cmp(self.bytes(b.0)));
        jobs.dedup_by(|b, a| self.bytes(a.0) == self.bytes(b.0));
        let mut of: Vec<(u32, Span)> = jobs.iter().map(|&(s, r)| (r, s)).collect();
        of.sort_by(|a, b| {
            a.0.cmp(&b.0)
                .then_with(|| self.bytes(a.1).cmp(self.bytes(b.1)))
        });
        self.jobs = jobs;
        self.jobs_of = of;
        let (arena, jobs) = (&self.arena, &self.jobs);
        self.job_table = Table::build(jobs.len(), |i| {
            let s = jobs[i as usize].0;
            &arena[s.off as usize..(s.off + s.len) as usize]
        });
    }

    /// The owner row of job `job`.
    pub fn job_owner(&self, job: &str) -> Option<u32> {
        self.job_table
            .find(job.as_bytes(), |i| self.bytes(self.jobs[i as usize].0))
            .map(|i| self.jobs[i as usize].1)
    }

    /// Record that `job` belongs to session `sid`, overriding the jobs table (see `extra_owner`).
    pub fn set_job_owner(&mut self, job: &str, sid: &str) {
        self.extra_owner.insert(job.into(), sid.into());
    }

    /// The owning session of `job` (its id, and its row when it has a record).
    pub fn owner_of_job(&self, job: &str) -> Option<(String, Option<u32>)> {
        if let Some(s) = (!self.extra_owner.is_empty())
            .then(|| self.extra_owner.get(job))
            .flatten()
        {
            return Some((s.to_string(), self.row(s)));
        }
        self.job_owner(job)
            .map(|r| (self.id(r).to_string(), Some(r)))
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
        let start = self.jobs_of.partition_point(|(x, _)| *x < r);
        self.jobs_of[start..]
            .iter()
            .take_while(|(x, _)| *x == r)
            .map(|(_, s)| self.get(*s).to_string())
            .collect()
    }

    /// Fold an owned item's newest activity into row `r`.
    pub fn fold_newest(&mut self, r: u32, n: Option<i64>) {
        if let Some(n) = n {
            let row = &mut self.rows[r as usize];
            row.newest = if row.newest == NONE {
                n
            } else {
                row.newest.max(n)
            };
        }
    }

    /// The verdict of session row `r`, or `None` while it is not final: its class depends on
    /// activity not all measured yet. Once final the class is kept, so a session is classified
    /// once; its evidence is worded again from the same facts when asked (not kept).
    pub fn verdict(&mut self, r: u32, f: &Facts<'_>) -> Option<Verdict> {
        let row = &self.rows[r as usize];
        let last = row.newest();
        let facts = row.facts();
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
        let owned = Owned {
            resumable: rare.map(|x| x.owned.resumable.clone()).unwrap_or_default(),
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
        let error = rare.and_then(|x| x.error.clone());
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
                let k = CLASSES.iter().position(|c| *c == v.class).unwrap_or(255);
                self.rows[r as usize].class = k as u8;
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
        let ino: Vec<u64> = (0..4).map(|r| x.at(r).rec_dev_ino().unwrap().1).collect();
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
            y.rare(y.row("s-b").unwrap())
                .and_then(|r| r.error.as_deref()),
            Some("broken")
        );
        assert!(y.rare(y.row("s-a").unwrap()).is_none());
        assert_eq!(ino, vec![11, 13, 10, 12], "rows moved with their ids");
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
