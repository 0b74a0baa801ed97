//! The clean engine: inventory → classification → plan → execution.
//!
//! The dry run and the real run execute the same code ([`execute`]); only the mutating calls are
//! skipped in a dry run, so the dry run lists exactly what a real run removes (issue: "the dry
//! run runs the same code with deletion disabled"). Every deletion goes through
//! `store::fsops` after the item was renamed into the root's trash (safety R5).

pub mod classify;
pub mod inventory;
pub mod retention;

use crate::git::Git;
use crate::store::fsops::{self, Dir, Kind};
use crate::store::lock::{self, TryLock};
use crate::store::StorageType;
use classify::{Class, Verdict};
use inventory::{Inventory, Item, ItemKind};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};

/// Where [`execute`] records what it did: one JSON object per removal, failure and branch
/// deletion (the audit log, `clean-audit.jsonl`: Spec 135 "log all cleanup operations for
/// audit"). Lines may be buffered until [`Audit::sync`], which `execute` calls after every batch
/// of deletions and at its end.
pub trait Audit {
    /// Record one event.
    fn record(&mut self, event: &serde_json::Value);
    /// Make every event recorded so far durable.
    fn sync(&mut self);
}

/// No audit: dry runs and estimates record nothing.
impl Audit for () {
    fn record(&mut self, _: &serde_json::Value) {}
    fn sync(&mut self) {}
}

/// Directory items renamed into the trash before their contents are deleted together: one fsync
/// of the trash (and one sync of the audit log) per batch instead of one per item.
const BATCH: usize = 512;

/// Slack before an mtime counts as "in the future", seconds (clock skew between hosts).
pub const FUTURE_SLACK: i64 = 60;
/// Temp files of interrupted crash-safe writes are swept once this old, seconds.
pub const TEMP_AGE: u64 = 3600;

/// Which repositories a run covers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Every repository (and data of no repository, such as 0.4.4's Claude logs).
    All,
    /// One repository by name.
    Repo(String),
}

/// What the user asked for. `Default` is every type, every repository, default retention.
#[derive(Clone, Debug)]
pub struct Options {
    /// Types to clean (never empty).
    pub types: Vec<StorageType>,
    /// `--older-than` seconds; None = per-type default retention.
    pub older_than: Option<u64>,
    /// Retention per type, seconds, winning over `older_than` (`clean` resolves the retention
    /// file, `--older-than` and `--retention` into this map; see `cmd::clean`).
    pub retention: BTreeMap<StorageType, u64>,
    /// The quota (`--max-size` or the retention file's `max-size`), bytes: after the normal
    /// plan, unprotected items younger than their retention are removed too, oldest first,
    /// until the scope fits (only when every repository is in scope).
    pub max_size: Option<u64>,
    /// Scope.
    pub scope: Scope,
    /// Remove worktrees with uncommitted or untracked changes too.
    pub discard_changes: bool,
    /// Only the worktree with this name (`prodigy worktree clean NAME`).
    pub only_name: Option<String>,
    /// Only items at these paths relative to the root (`prodigy worktree clean-orphaned`).
    pub only_paths: Option<BTreeSet<String>>,
    /// Only items owned by these sessions (`prodigy sessions rm`).
    pub only_owners: Option<BTreeSet<String>>,
    /// An explicit deletion (`sessions rm`): resumable and unknown owners do not protect their
    /// data; active ones (and unknown ones with recent activity) still do.
    pub explicit: bool,
    /// Run `git status` of expired worktrees while planning (true), or only in the re-check
    /// right before each deletion (false: `clean --force`, where the plan is never shown, so
    /// each worktree is asked once instead of twice).
    pub status_at_plan: bool,
    /// An estimate (`prodigy stats`): the plan alone. No `git status` (worktrees count as
    /// reclaimable by age and ownership), no branch or prune work (no git process runs but
    /// `git worktree list`), and none of the deletion-time re-checks; nothing is changed.
    pub estimate: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            types: StorageType::ALL.to_vec(),
            older_than: None,
            retention: BTreeMap::new(),
            max_size: None,
            scope: Scope::All,
            discard_changes: false,
            only_name: None,
            only_paths: None,
            only_owners: None,
            explicit: false,
            status_at_plan: true,
            estimate: false,
        }
    }
}

/// Why an old-enough item is kept. The word is stable (JSON `reason`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Reason {
    /// Its owner session is active.
    Active,
    /// Its owner session (or its own checkpoint) can be resumed.
    Resumable,
    /// Its owner session's record is unreadable or unknown.
    Unknown,
    /// A session kept because one of its worktrees is kept.
    OwnerKept,
    /// Worktree with uncommitted or untracked changes.
    Uncommitted,
    /// `git worktree lock`ed.
    Locked,
    /// A detached worktree whose commits are on no branch: removing it would lose them.
    Unreachable,
    /// A nested agent worktree inside it is kept.
    NestedKept,
    /// A process works inside it.
    InUse,
    /// A resume lock is live.
    LiveLock,
    /// It contains a mount point (safety R2).
    OtherFilesystem,
    /// git failed or gave an odd answer; or it is a main working tree.
    Git,
    /// Name outside the grammar of its place (safety R3).
    InvalidName,
    /// Data this version does not understand.
    Unrecognized,
    /// Something inside could not be read.
    Unreadable,
    /// An mtime or timestamp in the future.
    FutureTimestamp,
    /// It changed between the scan and the deletion (safety R5).
    Changed,
    /// Removal failed (reported as an error too).
    Failed,
}

impl Reason {
    /// The stable word.
    pub fn word(self) -> &'static str {
        match self {
            Reason::Active => "active",
            Reason::Resumable => "resumable",
            Reason::Unknown => "unknown",
            Reason::OwnerKept => "owner-kept",
            Reason::Uncommitted => "uncommitted",
            Reason::Locked => "locked",
            Reason::Unreachable => "unreachable-commits",
            Reason::NestedKept => "nested-kept",
            Reason::InUse => "in-use",
            Reason::LiveLock => "live-lock",
            Reason::OtherFilesystem => "other-filesystem",
            Reason::Git => "git",
            Reason::InvalidName => "invalid-name",
            Reason::Unrecognized => "unrecognized",
            Reason::Unreadable => "unreadable",
            Reason::FutureTimestamp => "future-timestamp",
            Reason::Changed => "changed",
            Reason::Failed => "failed",
        }
    }
}

/// What to do with one item.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Outside the repository scope: not counted anywhere.
    OutOfScope,
    /// In scope, but its type (or name) was not asked for: counted in statistics only.
    NotSelected,
    /// Not old enough: kept silently.
    TooNew,
    /// Gone since the scan.
    Gone,
    /// Remove it.
    Remove,
    /// Old enough but kept, with the reason and a detail.
    Keep(Reason, String),
}

/// One line of the report.
#[derive(Clone, Debug)]
pub struct Entry {
    /// Storage type.
    pub ty: StorageType,
    /// Repository, if known.
    pub repo: Option<String>,
    /// Path relative to the root.
    pub path: String,
    /// Bytes on disk at scan time.
    pub bytes: u64,
    /// Owning session.
    pub owner: Option<String>,
    /// Reason (kept entries).
    pub reason: Option<Reason>,
    /// Detail (kept entries, errors).
    pub detail: String,
    /// Other files that go (or stay) with it: a job's mappings, a worktree's 0.4.4 metadata.
    pub also: Vec<String>,
}

/// A branch decision.
#[derive(Clone, Debug)]
pub struct BranchEntry {
    /// Repository name.
    pub repo: String,
    /// Branch short name.
    pub branch: String,
    /// Why deleted (merged into …) or kept.
    pub detail: String,
}

/// A per-item failure: the path, the cause, what to do.
#[derive(Clone, Debug)]
pub struct Failure {
    /// Path relative to the root (or a repository path for git failures).
    pub path: String,
    /// What went wrong.
    pub cause: String,
    /// What the user can do.
    pub hint: String,
}

/// Items and bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Count {
    /// Number of items.
    pub items: u64,
    /// Bytes on disk.
    pub bytes: u64,
}

impl Count {
    fn add(&mut self, bytes: u64) {
        self.items += 1;
        self.bytes += bytes;
    }
}

/// Storage statistics per type and per repository.
#[derive(Clone, Debug, Default)]
pub struct Stats {
    /// Per type word.
    pub by_type: BTreeMap<&'static str, Count>,
    /// Per repository (`-` for data of no repository).
    pub by_repo: BTreeMap<String, Count>,
    /// Everything.
    pub total: Count,
}

impl Stats {
    fn add(&mut self, ty: StorageType, repo: Option<&str>, bytes: u64) {
        self.by_type.entry(ty.word()).or_default().add(bytes);
        self.by_repo
            .entry(repo.unwrap_or("-").to_string())
            .or_default()
            .add(bytes);
        self.total.add(bytes);
    }
    fn sub(&mut self, ty: StorageType, repo: Option<&str>, bytes: u64) {
        for c in [
            self.by_type.entry(ty.word()).or_default(),
            self.by_repo
                .entry(repo.unwrap_or("-").to_string())
                .or_default(),
            &mut self.total,
        ] {
            c.items = c.items.saturating_sub(1);
            c.bytes = c.bytes.saturating_sub(bytes);
        }
    }
}

/// The outcome of a run (dry or real).
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// True for a dry run.
    pub dry_run: bool,
    /// Statistics before.
    pub before: Stats,
    /// Statistics after (predicted for a dry run).
    pub after: Stats,
    /// Removed (or would be removed). Empty for an estimate ([`Options::estimate`]): see
    /// `removed_count`.
    pub removed: Vec<Entry>,
    /// Items and bytes removed (or that would be), and how many of the items are worktrees.
    pub removed_count: (Count, u64),
    /// Kept though old enough. Empty for an estimate.
    pub kept: Vec<Entry>,
    /// Branches deleted (or would be).
    pub branches_deleted: Vec<BranchEntry>,
    /// Branches kept.
    pub branches_kept: Vec<BranchEntry>,
    /// Failures.
    pub errors: Vec<Failure>,
    /// Warnings (unreadable containers, future timestamps …).
    pub warnings: Vec<String>,
    /// Sessions by class (in scope), for the summary.
    pub classes: BTreeMap<&'static str, u64>,
    /// The quota's outcome, when one was set and every repository is in scope.
    pub quota: Option<Quota>,
}

/// How a run met its quota (`Options::max_size`).
#[derive(Clone, Debug, Default)]
pub struct Quota {
    /// The quota, bytes.
    pub max_bytes: u64,
    /// Bytes in scope before the run.
    pub before_bytes: u64,
    /// Bytes in scope after it (predicted for a dry run).
    pub after_bytes: u64,
    /// Items removed (or that would be) for the quota alone, and their bytes.
    pub picked: Count,
    /// Protected data in the way when the quota is not met: every item kept though it could
    /// otherwise have gone (for its age or for the quota), largest first. Empty when met.
    pub blocked_by: Vec<Entry>,
}

impl Quota {
    /// True when what stays fits.
    pub fn met(&self) -> bool {
        self.after_bytes <= self.max_bytes
    }

    /// Bytes still over the quota (0 when met).
    pub fn shortfall(&self) -> u64 {
        self.after_bytes.saturating_sub(self.max_bytes)
    }
}

/// Everything needed to plan and execute, built once per run.
pub struct Engine<'a> {
    /// Root handle.
    pub root: &'a Dir,
    /// Canonical root path.
    pub root_path: &'a Path,
    /// git.
    pub git: &'a Git,
    /// Now, Unix seconds.
    pub now: i64,
    /// Options.
    pub opts: &'a Options,
    /// Inventory.
    pub inv: Inventory,
    /// Session verdicts.
    pub verdicts: HashMap<String, Verdict>,
    /// Directories in use by processes.
    pub in_use: Vec<PathBuf>,
    /// Scan-time status lines of worktrees (index → lines), to keep plan and run consistent.
    status_cache: HashMap<usize, Result<Vec<String>, String>>,
    /// Worktree items by owner session, so an owner's check does not scan every item.
    worktrees_of: HashMap<String, Vec<usize>>,
    /// Set while the quota pass decides items as if they had expired.
    ignore_age: bool,
    /// Items the quota pass added to the plan (removed though younger than their retention).
    pub quota_picked: BTreeSet<usize>,
    /// Items the quota pass could not add, with the reason: protected data in the way.
    pub quota_blocked: Vec<(usize, Reason, String)>,
}

impl<'a> Engine<'a> {
    /// Scan, measure and classify.
    pub fn new(
        root: &'a Dir,
        root_path: &'a Path,
        git: &'a Git,
        now: i64,
        opts: &'a Options,
    ) -> Engine<'a> {
        let host = crate::procs::hostname();
        let scanner = inventory::Scanner {
            root,
            root_path,
            git,
            host: host.clone(),
            now,
            lock_lease: crate::store::lock_lease(),
        };
        let mut inv = scanner.scan();
        let scope = opts.scope.clone();
        // Walk what is in scope, and everything owned by a session in scope (its activity
        // anywhere counts for its class), but not other repositories' worktrees.
        let owners_in_scope: std::collections::HashSet<String> = inv
            .sessions
            .values()
            .filter(|s| in_scope(&scope, &inv.items[s.item]))
            .map(|s| s.id.clone())
            .collect();
        inventory::measure(root, &mut inv, |it| {
            in_scope(&scope, it)
                || it
                    .owner
                    .as_ref()
                    .is_some_and(|o| owners_in_scope.contains(o))
        });
        let in_use = crate::procs::dirs_in_use();
        let facts = classify::Facts {
            now,
            host: &host,
            in_use: &in_use,
            root_path,
        };
        let verdicts = classify::classify_all(&mut inv, &facts);
        let mut worktrees_of: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, it) in inv.items.iter().enumerate() {
            if let (ItemKind::Worktree, Some(o)) = (&it.kind, &it.owner) {
                worktrees_of.entry(o.clone()).or_default().push(i);
            }
        }
        Engine {
            root,
            root_path,
            git,
            now,
            opts,
            inv,
            verdicts,
            in_use,
            status_cache: HashMap::new(),
            worktrees_of,
            ignore_age: false,
            quota_picked: BTreeSet::new(),
            quota_blocked: Vec::new(),
        }
    }

    fn retention(&self, it: &Item) -> u64 {
        let r = self
            .opts
            .retention
            .get(&it.ty)
            .copied()
            .or(self.opts.older_than)
            .unwrap_or_else(|| it.ty.default_retention());
        if it.kind == ItemKind::Temp {
            r.max(TEMP_AGE)
        } else {
            r
        }
    }

    /// An item's last activity (safety §2): for a session record, the newest activity of
    /// everything its session owns.
    fn last_activity(&self, it: &Item) -> Option<i64> {
        if it.kind == ItemKind::SessionRecord {
            it.owner
                .as_ref()
                .and_then(|o| self.verdicts.get(o))
                .and_then(|v| v.last_activity)
                .or(it.newest)
        } else {
            it.newest
        }
    }

    fn owner_verdict(&self, it: &Item) -> Option<&Verdict> {
        it.owner.as_ref().and_then(|o| self.verdicts.get(o))
    }

    /// Decide every item. Worktrees are decided children first; session records last.
    pub fn plan(&mut self) -> Vec<Decision> {
        let n = self.inv.items.len();
        let mut d = vec![Decision::OutOfScope; n];
        let mut order: Vec<usize> = (0..n).collect();
        // Children (nested agents) before parents; session records after everything.
        order.sort_by_key(|&i| {
            let it = &self.inv.items[i];
            let rank = match it.kind {
                ItemKind::SessionRecord => 2,
                ItemKind::Worktree if it.git.as_ref().is_some_and(|g| !g.children.is_empty()) => 1,
                _ => 0,
            };
            (rank, i)
        });
        for i in order {
            d[i] = self.decide(i, &d);
        }
        self.quota_pass(&mut d);
        d
    }

    /// Bytes in the scope (what `Report::before` counts) and what stays after `plan`.
    pub fn projected(&self, plan: &[Decision]) -> (u64, u64) {
        let (mut total, mut gone) = (0u64, 0u64);
        for (it, d) in self.inv.items.iter().zip(plan) {
            match d {
                Decision::OutOfScope | Decision::Gone => {}
                Decision::Remove => {
                    total += it.bytes;
                    gone += it.bytes;
                }
                _ => total += it.bytes,
            }
        }
        (total, total - gone)
    }

    /// The quota (`Options::max_size`): when what stays after the plan is over it, decide the
    /// items the plan keeps only for their age as if they had expired, oldest last activity
    /// first, and remove those the ordinary rules would remove (never one whose owner is
    /// active, resumable or unknown, nor a locked, dirty, in-use or live-locked one) until the
    /// projection fits. Nothing kept for another reason is reconsidered. A pick can unblock
    /// another (a session record whose last worktree was picked; a worktree whose nested agents
    /// were), so the candidates are gone through again until a round picks nothing. What could
    /// not be picked is remembered in `quota_blocked`.
    fn quota_pass(&mut self, d: &mut [Decision]) {
        let Some(max) = self.opts.max_size else {
            return;
        };
        if self.opts.scope != Scope::All {
            return;
        }
        let (_, mut left) = self.projected(d);
        if left <= max {
            return;
        }
        let mut pending: Vec<usize> = (0..d.len()).filter(|&i| d[i] == Decision::TooNew).collect();
        pending.sort_by_key(|&i| {
            let it = &self.inv.items[i];
            let rank = match it.kind {
                ItemKind::SessionRecord => 2,
                ItemKind::Worktree if it.git.as_ref().is_some_and(|g| !g.children.is_empty()) => 1,
                _ => 0,
            };
            (self.last_activity(it).unwrap_or(i64::MAX), rank, i)
        });
        self.ignore_age = true;
        let mut last: HashMap<usize, Decision> = HashMap::new();
        loop {
            let mut picked = false;
            let mut still = Vec::new();
            for i in pending {
                if left <= max {
                    still.push(i);
                    continue;
                }
                match self.decide(i, d) {
                    Decision::Remove => {
                        d[i] = Decision::Remove;
                        self.quota_picked.insert(i);
                        left = left.saturating_sub(self.inv.items[i].bytes);
                        last.remove(&i);
                        picked = true;
                    }
                    other => {
                        last.insert(i, other);
                        still.push(i);
                    }
                }
            }
            pending = still;
            if !picked || left <= max {
                break;
            }
        }
        self.ignore_age = false;
        if left > max {
            for i in pending {
                if let Some(Decision::Keep(r, why)) = last.remove(&i) {
                    self.quota_blocked.push((i, r, why));
                }
            }
        }
    }

    fn decide(&mut self, i: usize, so_far: &[Decision]) -> Decision {
        let it = &self.inv.items[i];
        if !in_scope(&self.opts.scope, it) {
            return Decision::OutOfScope;
        }
        if !self.opts.types.contains(&it.ty) {
            return Decision::NotSelected;
        }
        if let Some(owners) = &self.opts.only_owners {
            if !it.owner.as_ref().is_some_and(|o| owners.contains(o)) {
                return Decision::NotSelected;
            }
        }
        if let Some(paths) = &self.opts.only_paths {
            if !paths.contains(&it.rel()) {
                return Decision::NotSelected;
            }
        }
        if let Some(name) = &self.opts.only_name {
            if it.kind != ItemKind::Worktree || &it.name() != name {
                return Decision::NotSelected;
            }
        }
        let keep = |r: Reason, s: String| Decision::Keep(r, s);
        // Age (safety §2).
        let Some(newest) = self.last_activity(it) else {
            return if it.rare().problems.is_empty() {
                Decision::Gone
            } else {
                keep(Reason::Unreadable, it.rare().problems.join("; "))
            };
        };
        if newest > self.now + FUTURE_SLACK {
            return keep(
                Reason::FutureTimestamp,
                format!("last activity is {}s in the future", newest - self.now),
            );
        }
        if !self.ignore_age && ((self.now - newest).max(0) as u64) < self.retention(it) {
            return Decision::TooNew;
        }
        match it.kind {
            ItemKind::Invalid => {
                return keep(
                    Reason::InvalidName,
                    it.rare().note.clone().unwrap_or_default(),
                )
            }
            ItemKind::Unrecognized => {
                return keep(
                    Reason::Unrecognized,
                    it.rare().note.clone().unwrap_or_default(),
                )
            }
            _ => {}
        }
        if let Some(v) = self.owner_verdict(it) {
            let recent = v
                .last_activity
                .is_some_and(|l| self.now - l < classify::ACTIVITY_WINDOW);
            let protected = if self.opts.explicit {
                // `sessions rm`: never an active session, nor an unreadable one that may be running.
                v.class == Class::Active || (v.class == Class::Unknown && recent)
            } else {
                v.class.protected()
            };
            if protected {
                let r = match v.class {
                    Class::Active => Reason::Active,
                    Class::Resumable => Reason::Resumable,
                    _ => Reason::Unknown,
                };
                let owner = it.owner.as_deref().unwrap_or("");
                return keep(
                    r,
                    format!("session {owner} is {}: {}", v.class.word(), v.evidence),
                );
            }
        }
        if let Some(why) = &it.rare().lock_live {
            return keep(Reason::LiveLock, why.clone());
        }
        if !it.rare().mounts.is_empty() {
            let m: Vec<String> = it
                .rare()
                .mounts
                .iter()
                .map(|p| p.display().to_string())
                .collect();
            return keep(
                Reason::OtherFilesystem,
                format!("mount point inside: {}", m.join(", ")),
            );
        }
        if !it.rare().problems.is_empty() {
            return keep(Reason::Unreadable, it.rare().problems.join("; "));
        }
        if it
            .owner
            .as_ref()
            .map_or(true, |o| !self.verdicts.contains_key(o))
        {
            if let Some(r) = &it.rare().resumable {
                return keep(Reason::Resumable, r.clone());
            }
        }
        match it.kind {
            ItemKind::Worktree => self.decide_worktree(i, so_far),
            ItemKind::SessionRecord => self.decide_session(i, so_far),
            _ => Decision::Remove,
        }
    }

    /// A directory in use by a process inside the item, if any (Linux `/proc/*/cwd`).
    pub fn in_use_by(&self, it: &Item) -> Option<&PathBuf> {
        let p = self.root_path.join(it.rel());
        self.in_use.iter().find(|u| u.starts_with(&p))
    }

    fn decide_worktree(&mut self, i: usize, so_far: &[Decision]) -> Decision {
        let it = &self.inv.items[i];
        let g = it.git.clone().unwrap_or_default();
        if let Some(u) = self.in_use_by(it) {
            return Decision::Keep(
                Reason::InUse,
                format!("a process works in `{}`", u.display()),
            );
        }
        for &c in &g.children {
            if so_far[c] != Decision::Remove {
                let why = match &so_far[c] {
                    Decision::Keep(r, _) => r.word().to_string(),
                    Decision::TooNew => "too new".into(),
                    _ => "not selected".into(),
                };
                return Decision::Keep(
                    Reason::NestedKept,
                    format!(
                        "nested worktree {} is kept ({why})",
                        self.inv.items[c].rel()
                    ),
                );
            }
        }
        if let Some(e) = &g.error {
            return Decision::Keep(Reason::Git, e.clone());
        }
        let Some(entry) = &g.entry else {
            // Not a registered worktree: plain data under worktrees/, judged by age alone.
            return Decision::Remove;
        };
        if entry.locked {
            return Decision::Keep(Reason::Locked, "`git worktree lock`ed".into());
        }
        if let (None, Some(head), Some(common)) = (&entry.branch, &entry.head, &g.common) {
            match self.git.branches_containing(common, head) {
                Ok(b) if b.is_empty() => {
                    return Decision::Keep(
                        Reason::Unreachable,
                        format!("detached at {head}, which is on no branch; create a branch for it or remove the worktree by hand"),
                    )
                }
                Ok(_) => {}
                Err(e) => return Decision::Keep(Reason::Git, e.to_string()),
            }
        }
        // The quota pass asks git now: a dirty worktree picked for the quota and kept at
        // deletion would leave the quota unmet when another item could have gone instead.
        if (!self.opts.status_at_plan && !self.ignore_age) || self.opts.estimate {
            // Asked once, right before deletion (recheck), or not at all for an estimate.
            return Decision::Remove;
        }
        match self.dirty(i) {
            Err(e) => Decision::Keep(Reason::Git, e),
            Ok(lines) if !lines.is_empty() && !self.opts.discard_changes => {
                Decision::Keep(Reason::Uncommitted, uncommitted(&lines))
            }
            Ok(_) => Decision::Remove,
        }
    }

    /// `git status --porcelain` lines of worktree item `i`, minus its nested agent worktrees
    /// (which are removed before it). Cached for the run; an error means git could not tell.
    pub fn dirty(&mut self, i: usize) -> Result<Vec<String>, String> {
        if let Some(r) = self.status_cache.get(&i) {
            return r.clone();
        }
        let it = &self.inv.items[i];
        let path = self.root_path.join(it.rel());
        let kids: Vec<String> = it
            .git
            .as_ref()
            .map(|g| {
                g.children
                    .iter()
                    .map(|&c| format!("?? {}/", self.inv.items[c].name()))
                    .collect()
            })
            .unwrap_or_default();
        let r = self
            .git
            .status(&path)
            .map(|lines| lines.into_iter().filter(|l| !kids.contains(l)).collect())
            .map_err(|e| e.to_string());
        self.status_cache.insert(i, r.clone());
        r
    }

    fn decide_session(&self, i: usize, so_far: &[Decision]) -> Decision {
        let it = &self.inv.items[i];
        let Some(o) = &it.owner else {
            return Decision::Remove;
        };
        for &j in self
            .worktrees_of
            .get(o)
            .map(Vec::as_slice)
            .unwrap_or_default()
        {
            let w = &self.inv.items[j];
            if so_far[j] != Decision::Remove && so_far[j] != Decision::Gone {
                let why = match &so_far[j] {
                    Decision::Keep(r, _) => r.word().to_string(),
                    Decision::TooNew => "too new".into(),
                    Decision::NotSelected | Decision::OutOfScope => "not being cleaned".into(),
                    _ => "kept".into(),
                };
                return Decision::Keep(
                    Reason::OwnerKept,
                    format!("its worktree {} is kept ({why})", w.rel()),
                );
            }
        }
        Decision::Remove
    }
}

/// The detail of a worktree kept for its changes: the first three `git status` lines.
fn uncommitted(lines: &[String]) -> String {
    format!(
        "uncommitted or untracked changes: {}",
        lines.iter().take(3).cloned().collect::<Vec<_>>().join(", ")
    )
}

/// True when a worktree of this repository under the root was moved by hand (see inventory).
fn has_moved_worktree(eng: &Engine<'_>, common: &Path) -> bool {
    eng.inv.items.iter().any(|it| {
        it.git
            .as_ref()
            .is_some_and(|g| g.moved && g.common.as_deref() == Some(common))
    })
}

/// git's records, in repositories in scope, of worktrees under the root whose directory is gone
/// (deleted by hand, or by an older tool): per repository, its common directory, its name and
/// those entries. Locked entries are included; git never prunes them.
pub fn vanished_records<'e>(
    eng: &'e Engine<'_>,
) -> Vec<(
    &'e PathBuf,
    &'e inventory::RepoWorktrees,
    Vec<&'e crate::git::WorktreeEntry>,
)> {
    eng.inv
        .repos
        .iter()
        .filter(|(_, rw)| match &eng.opts.scope {
            Scope::Repo(want) => rw.name.as_deref() == Some(want.as_str()),
            Scope::All => true,
        })
        .map(|(common, rw)| {
            let gone = rw
                .entries
                .iter()
                .skip(1)
                .filter(|e| {
                    e.path.starts_with(eng.root_path) && std::fs::symlink_metadata(&e.path).is_err()
                })
                .collect();
            (common, rw, gone)
        })
        .filter(|(_, _, gone): &(_, _, Vec<_>)| !gone.is_empty())
        .collect()
}

/// Records a real run prunes (not locked, repository has no hand-moved worktree): they count as
/// work even when nothing else is removed.
pub fn stale_git_records(eng: &Engine<'_>) -> usize {
    if !eng.opts.types.contains(&StorageType::Worktrees) || eng.opts.only_name.is_some() {
        return 0;
    }
    vanished_records(eng)
        .iter()
        .filter(|(common, _, _)| !has_moved_worktree(eng, common))
        .map(|(_, _, gone)| gone.iter().filter(|e| !e.locked).count())
        .sum()
}

/// Entries an interrupted run left in the trash (they were already committed to deletion).
pub fn trash_pending(root: &Dir) -> usize {
    root.open_dir(OsStr::new(crate::store::TRASH_DIR))
        .and_then(|t| t.names())
        .map(|n| n.len())
        .unwrap_or(0)
}

/// True when the item belongs to the scope.
pub fn in_scope(scope: &Scope, it: &Item) -> bool {
    match scope {
        Scope::All => true,
        Scope::Repo(r) => it.repo.as_deref() == Some(r.as_str()),
    }
}

/// Whether [`execute`] may change anything.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Decide and report only.
    DryRun,
    /// Delete.
    Real,
}

/// Execute a plan. In [`Mode::DryRun`] every check runs and nothing is changed.
///
/// `progress(type, done, total)` is called as items are handled (for a terminal display).
pub fn execute(
    eng: &mut Engine<'_>,
    plan: &[Decision],
    mode: Mode,
    audit: &mut dyn Audit,
    progress: &mut dyn FnMut(StorageType, usize, usize),
) -> Report {
    let mut rep = Report {
        dry_run: mode == Mode::DryRun,
        warnings: eng.inv.warnings.clone(),
        ..Report::default()
    };
    for (i, it) in eng.inv.items.iter().enumerate() {
        if plan[i] != Decision::OutOfScope && plan[i] != Decision::Gone {
            rep.before.add(it.ty, it.repo.as_deref(), it.bytes);
        }
    }
    for s in eng.inv.sessions.values() {
        if in_scope(&eng.opts.scope, &eng.inv.items[s.item]) {
            if let Some(v) = eng.verdicts.get(&s.id) {
                *rep.classes.entry(v.class.word()).or_default() += 1;
            }
        }
    }
    rep.after = rep.before.clone();
    let trash = if mode == Mode::Real {
        open_trash(eng.root, &mut rep)
    } else {
        None
    };
    let mut done = Done {
        outcome: vec![None; plan.len()], // Some(true) = removed
        pruned_repos: BTreeMap::new(),
    };
    let mut order: Vec<usize> = (0..plan.len())
        .filter(|&i| plan[i] == Decision::Remove)
        .collect();
    order.sort_by_key(|&i| {
        let it = &eng.inv.items[i];
        let parent = it.git.as_ref().is_some_and(|g| !g.children.is_empty());
        (it.ty, parent, i)
    });
    let mut worktrees_done = false;
    // Parent directories of the items, `sessions/` and `resume_locks/`, opened once for the
    // run. Every check and deletion below goes through these handles, fd-relative: an item is
    // removed only if its device and inode under the handle are what the scan saw.
    let mut parents = inventory::ParentCache::default();
    // Items renamed into the trash whose contents are not deleted yet (see `flush`).
    let mut pending: Vec<(usize, Vec<Staged>)> = Vec::new();
    let total = order.len();
    for (n, &i) in order.iter().enumerate() {
        progress(eng.inv.items[i].ty, n, total);
        if eng.inv.items[i].ty == StorageType::Sessions && !worktrees_done {
            worktrees_done = true;
            if !eng.opts.estimate {
                finish_worktrees(
                    eng,
                    &done.outcome,
                    &mut done.pruned_repos,
                    mode,
                    &mut rep,
                    audit,
                );
            }
        }
        let verdict = if eng.opts.estimate {
            Ok(Vec::new())
        } else {
            recheck(eng, i, &done.outcome, mode, &mut parents)
        };
        let it = &eng.inv.items[i];
        let locks = match verdict {
            Err((r, why)) => {
                rep.kept.push(entry_of(it, Some(r), why));
                done.outcome[i] = Some(false);
                continue;
            }
            Ok(locks) => locks,
        };
        let staged = if mode == Mode::Real {
            stage_item(eng.root, &mut parents, trash.as_ref(), it)
        } else {
            Ok(Vec::new())
        };
        // The item is gone from its place (unlinked, or renamed into the trash): writers that
        // take these locks can no longer find it.
        drop(locks);
        match staged {
            Ok(st) if st.is_empty() => done.removed(eng, i, mode, &mut rep, audit),
            Ok(st) => {
                pending.push((i, st));
                // A worktree is finished at once: a nested worktree's parent, and the session
                // record that owns it, are re-checked against its outcome.
                if it.ty == StorageType::Worktrees || pending.len() >= BATCH {
                    flush(
                        eng,
                        &mut parents,
                        trash.as_ref(),
                        &mut pending,
                        &mut done,
                        &mut rep,
                        audit,
                    );
                }
            }
            Err(cause) => done.failed(eng, i, cause, mode, &mut rep, audit),
        }
    }
    flush(
        eng,
        &mut parents,
        trash.as_ref(),
        &mut pending,
        &mut done,
        &mut rep,
        audit,
    );
    let Done {
        outcome,
        mut pruned_repos,
    } = done;
    if !worktrees_done && !eng.opts.estimate {
        finish_worktrees(eng, &outcome, &mut pruned_repos, mode, &mut rep, audit);
    }
    if eng.opts.types.contains(&StorageType::Worktrees) {
        prune_orphan_registry(eng, mode, &mut rep);
    }
    for (i, d) in plan.iter().enumerate() {
        if let Decision::Keep(r, why) = d {
            if *r == Reason::FutureTimestamp {
                rep.warnings.push(format!(
                    "{}: {why}; kept (check the clock of the host that wrote it)",
                    eng.inv.items[i].rel()
                ));
            }
            if !eng.opts.estimate {
                rep.kept
                    .push(entry_of(&eng.inv.items[i], Some(*r), why.clone()));
            }
        }
    }
    rep.kept
        .sort_by(|a, b| (a.ty, &a.path).cmp(&(b.ty, &b.path)));
    rep.quota = quota_outcome(eng, &outcome, &mut rep);
    audit.sync();
    rep
}

/// The quota's outcome after execution (see [`Engine::quota_pass`]): what stays is measured on
/// the report, so an item the deletion-time re-check kept counts against the quota and is
/// named among what stands in the way.
fn quota_outcome(eng: &Engine<'_>, outcome: &[Option<bool>], rep: &mut Report) -> Option<Quota> {
    let max = eng.opts.max_size?;
    if eng.opts.scope != Scope::All {
        rep.warnings.push(format!(
            "the quota ({max} bytes) is checked only when every repository is in scope; add --all-repos"
        ));
        return None;
    }
    let mut q = Quota {
        max_bytes: max,
        before_bytes: rep.before.total.bytes,
        after_bytes: rep.after.total.bytes,
        ..Quota::default()
    };
    for &i in &eng.quota_picked {
        if outcome[i] == Some(true) {
            q.picked.add(eng.inv.items[i].bytes);
        }
    }
    if !q.met() {
        q.blocked_by = rep.kept.clone();
        for (i, r, why) in &eng.quota_blocked {
            q.blocked_by
                .push(entry_of(&eng.inv.items[*i], Some(*r), why.clone()));
        }
        q.blocked_by
            .sort_by(|a, b| b.bytes.cmp(&a.bytes).then_with(|| a.path.cmp(&b.path)));
    }
    Some(q)
}

/// What [`execute`] has done so far: each item's outcome, and the repositories whose git
/// bookkeeping must be pruned because a worktree of theirs was removed.
struct Done {
    /// Per item: `Some(true)` removed, `Some(false)` kept or failed, `None` not handled (yet).
    outcome: Vec<Option<bool>>,
    pruned_repos: BTreeMap<PathBuf, String>,
}

impl Done {
    /// Item `i` is gone: count it, audit it, list it.
    fn removed(
        &mut self,
        eng: &Engine<'_>,
        i: usize,
        mode: Mode,
        rep: &mut Report,
        audit: &mut dyn Audit,
    ) {
        let it = &eng.inv.items[i];
        self.outcome[i] = Some(true);
        rep.after.sub(it.ty, it.repo.as_deref(), it.bytes);
        if mode == Mode::Real {
            audit.record(&serde_json::json!({
                "time": crate::store::records::Timestamp::now(),
                "action": "remove", "type": it.ty.word(), "repository": it.repo,
                "path": it.rel(), "bytes": it.bytes, "owner": it.owner,
                "reason": removal_reason(eng, i),
                "also": entry_of(it, None, String::new()).also,
            }));
        }
        rep.removed_count.0.add(it.bytes);
        if it.ty == StorageType::Worktrees {
            rep.removed_count.1 += 1;
        }
        if !eng.opts.estimate {
            rep.removed.push(entry_of(it, None, removal_reason(eng, i)));
        }
        if let Some(g) = it.git.as_ref().and_then(|g| g.common.clone()) {
            self.pruned_repos
                .insert(g, it.repo.clone().unwrap_or_default());
        }
    }

    /// Removing item `i` failed with `cause`: keep it in the report as failed, audit it, and
    /// record a worktree in the orphaned-worktree registry.
    fn failed(
        &mut self,
        eng: &Engine<'_>,
        i: usize,
        cause: String,
        mode: Mode,
        rep: &mut Report,
        audit: &mut dyn Audit,
    ) {
        let it = &eng.inv.items[i];
        self.outcome[i] = Some(false);
        audit.record(&serde_json::json!({
            "time": crate::store::records::Timestamp::now(),
            "action": "fail", "type": it.ty.word(), "repository": it.repo,
            "path": it.rel(), "bytes": it.bytes, "reason": cause,
        }));
        let hint = if it.kind == ItemKind::Worktree {
            "recorded in orphaned_worktrees/; fix the cause (permissions, immutable files) and run clean again"
        } else {
            "fix the cause (permissions, immutable files, read-only filesystem) and run clean again"
        };
        rep.errors.push(Failure {
            path: it.rel(),
            cause: cause.clone(),
            hint: hint.into(),
        });
        if it.kind == ItemKind::Worktree && mode == Mode::Real {
            record_orphan(eng, it, &cause, rep);
        }
        rep.kept.push(entry_of(it, Some(Reason::Failed), cause));
    }
}

/// Delete the contents of the `pending` items, which are already in the trash: one fsync of the
/// trash first makes all their renames durable (after a crash each item is either in place,
/// whole, or in the trash for the next run to finish, never half-deleted in place), then each is
/// deleted and accounted. The audit log is synced at the end of the batch.
fn flush(
    eng: &Engine<'_>,
    parents: &mut inventory::ParentCache,
    trash: Option<&Dir>,
    pending: &mut Vec<(usize, Vec<Staged>)>,
    done: &mut Done,
    rep: &mut Report,
    audit: &mut dyn Audit,
) {
    if pending.is_empty() {
        return;
    }
    let Some(t) = trash else {
        unreachable!("only items renamed into the trash are pending");
    };
    let _ = t.sync();
    for (i, staged) in pending.drain(..) {
        match finish_staged(eng.root, parents, t, staged) {
            Ok(()) => done.removed(eng, i, Mode::Real, rep, audit),
            Err(cause) => done.failed(eng, i, cause, Mode::Real, rep, audit),
        }
    }
    audit.sync();
}

fn entry_of(it: &Item, reason: Option<Reason>, detail: String) -> Entry {
    let mut also: Vec<String> = it.rare().extra.iter().map(inventory::rel_of).collect();
    if let Some((m, _)) = it.git.as_ref().and_then(|g| g.legacy_meta.as_ref()) {
        also.push(inventory::rel_of(m));
    }
    Entry {
        ty: it.ty,
        repo: it.repo.clone(),
        path: it.rel(),
        bytes: it.bytes,
        owner: it.owner.clone(),
        reason,
        detail,
        also,
    }
}

fn removal_reason(eng: &Engine<'_>, i: usize) -> String {
    let it = &eng.inv.items[i];
    if eng.quota_picked.contains(&i) {
        let owner = match eng.owner_verdict(it) {
            Some(v) => format!(
                "session {} is {}; ",
                it.owner.as_deref().unwrap_or(""),
                v.class.word()
            ),
            None => String::new(),
        };
        return format!("{owner}over the quota: younger than its retention, oldest first");
    }
    match eng.owner_verdict(it) {
        Some(v) => format!(
            "session {} is {}",
            it.owner.as_deref().unwrap_or(""),
            v.class.word()
        ),
        None if it.kind == ItemKind::Temp => "leftover temp file".into(),
        None => "no owner; expired".into(),
    }
}

/// Deletion-time checks (safety R5): the item and its owner's record are what the scan saw, no
/// resume lock of the owner is held by someone else (we hold them while deleting), and a
/// worktree is still clean. Returns the held locks.
fn recheck(
    eng: &mut Engine<'_>,
    i: usize,
    outcome: &[Option<bool>],
    mode: Mode,
    parents: &mut inventory::ParentCache,
) -> Result<Vec<lock::Held>, (Reason, String)> {
    let it = &eng.inv.items[i];
    if let Some((dev, ino)) = it.dev_ino {
        match stat_comps(eng.root, parents, &it.comps) {
            Ok(m) if (m.dev, m.ino) != (dev, ino) => {
                return Err((Reason::Changed, "replaced since the scan".into()));
            }
            _ => {}
        }
    }
    // An item without a known owner may have gained one since the scan: a writer that created
    // a session record after we read `sessions/` (its mapping or its id names it). Keep it then.
    let owner_known = it
        .owner
        .as_ref()
        .is_some_and(|o| eng.inv.sessions.contains_key(o));
    if !owner_known {
        let mut cands: Vec<&String> = it.owner.iter().chain(it.job.iter()).collect();
        if let Some(s) = it.job.as_ref().and_then(|j| eng.inv.job_owner.get(j)) {
            cands.push(s);
        }
        if let Ok(sd) = parents.get(eng.root, Path::new("sessions")) {
            for c in cands {
                if sd.stat(OsStr::new(&format!("{c}.json"))).is_ok() {
                    return Err((
                        Reason::Changed,
                        format!("session {c} appeared since the scan"),
                    ));
                }
            }
        }
    }
    let mut held = Vec::new();
    if let Some(o) = it.owner.clone() {
        if let Some(s) = eng.inv.sessions.get(&o) {
            let rec = &eng.inv.items[s.item];
            if rec.dev_ino.is_some() && i != s.item {
                if let Ok(m) = stat_comps(eng.root, parents, &rec.comps) {
                    if Some((m.dev, m.ino)) != rec.dev_ino || Some(m.mtime_secs) > rec.newest {
                        return Err((
                            Reason::Changed,
                            format!("session record {} changed since the scan", rec.rel()),
                        ));
                    }
                }
            }
            // Hold every existing resume lock of the owner and its jobs while deleting.
            let mut ids: BTreeSet<String> = s.jobs.iter().cloned().collect();
            ids.insert(o.clone());
            // A lock item is locked once, below (flocks on two descriptors of one file conflict
            // even within one process).
            if it.kind == ItemKind::Lock {
                if let Some(j) = &it.job {
                    ids.remove(j);
                }
            }
            if let Ok(ld) = parents.get(eng.root, Path::new("resume_locks")) {
                for id in ids {
                    let name = OsString::from(format!("{id}.lock"));
                    match lock::try_lock(ld, &name, false) {
                        Ok(TryLock::Acquired(h)) => held.push(h),
                        Ok(TryLock::Busy) => {
                            return Err((
                                Reason::LiveLock,
                                format!("resume_locks/{id}.lock is held by another process"),
                            ))
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                        Err(e) => {
                            return Err((
                                Reason::LiveLock,
                                format!("cannot check resume_locks/{id}.lock: {e}"),
                            ));
                        }
                    }
                }
            }
        }
    }
    if it.kind == ItemKind::Lock {
        // R6: a lock file is removed only while we hold its flock.
        let name = it.comps.name().to_os_string();
        if let Ok(ld) = parents.get(eng.root, Path::new("resume_locks")) {
            match lock::try_lock(ld, &name, false) {
                Ok(TryLock::Acquired(h)) => held.push(h),
                Ok(TryLock::Busy) => return Err((Reason::LiveLock, "its flock is held".into())),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err((Reason::LiveLock, format!("cannot lock it: {e}"))),
            }
        }
    }
    let kind = it.kind.clone();
    let registered = it.git.as_ref().is_some_and(|g| g.entry.is_some());
    let kids = it
        .git
        .as_ref()
        .map(|g| g.children.clone())
        .unwrap_or_default();
    let owner = it.owner.clone();
    if kind == ItemKind::Worktree && registered {
        let planned = eng.status_cache.contains_key(&i);
        if mode == Mode::Real {
            eng.status_cache.remove(&i);
        }
        match eng.dirty(i) {
            Err(e) => return Err((Reason::Git, e)),
            Ok(l) if !l.is_empty() && !eng.opts.discard_changes => {
                return Err((
                    Reason::Uncommitted,
                    if planned {
                        format!("changed since the scan: {}", l.join(", "))
                    } else {
                        uncommitted(&l)
                    },
                ))
            }
            Ok(_) => {}
        }
    }
    if kind == ItemKind::Worktree && kids.iter().any(|&c| outcome[c] != Some(true)) {
        return Err((
            Reason::NestedKept,
            "a nested worktree could not be removed".into(),
        ));
    }
    if kind == ItemKind::SessionRecord {
        let wts = owner
            .as_ref()
            .and_then(|o| eng.worktrees_of.get(o))
            .cloned()
            .unwrap_or_default();
        if let Some(&j) = wts.iter().find(|&&j| outcome[j] == Some(false)) {
            return Err((
                Reason::OwnerKept,
                format!("its worktree {} is kept", eng.inv.items[j].rel()),
            ));
        }
    }
    Ok(held)
}

fn stat_comps(
    root: &Dir,
    parents: &mut inventory::ParentCache,
    comps: &inventory::RelPath,
) -> std::io::Result<fsops::Meta> {
    parents.get(root, comps.parent())?.stat(comps.name())
}

/// Prune git's bookkeeping in every repository that lost a worktree, then delete the removed
/// worktrees' own `prodigy-*`/`agent-*` branches that are fully merged into another branch.
fn finish_worktrees(
    eng: &mut Engine<'_>,
    outcome: &[Option<bool>],
    repos: &mut BTreeMap<PathBuf, String>,
    mode: Mode,
    rep: &mut Report,
    audit: &mut dyn Audit,
) {
    // Repositories whose bookkeeping lists a worktree under the root whose directory is gone
    // (deleted by hand, or by an older tool) are pruned too (safety §5 case 29), whether the
    // inventory found them through a worktree or through a session record.
    if eng.opts.types.contains(&StorageType::Worktrees) && eng.opts.only_name.is_none() {
        for (common, rw, entries) in vanished_records(eng) {
            let name = rw.name.clone().unwrap_or_default();
            let gone: Vec<String> = entries
                .iter()
                .filter(|e| !e.locked)
                .map(|e| {
                    e.path
                        .strip_prefix(eng.root_path)
                        .unwrap_or(&e.path)
                        .display()
                        .to_string()
                })
                .collect();
            if !gone.is_empty() {
                let verb = if mode == Mode::Real {
                    "pruned"
                } else {
                    "would prune"
                };
                rep.warnings.push(format!(
                    "repository {name}: {verb} git's record of worktrees whose directory is gone: {}",
                    gone.join(", ")
                ));
                repos.insert(common.clone(), name);
            }
        }
    }
    // Pruning would delete a moved worktree's administrative directory (its index and HEAD),
    // which `git worktree repair` needs: leave such repositories alone and say why.
    repos.retain(|common, repo| {
        let moved = has_moved_worktree(eng, common);
        if moved {
            rep.warnings.push(format!(
                "repository {repo}: not pruning git's worktree records, a worktree under the root was moved by hand; run `git worktree repair` there"
            ));
        }
        !moved
    });
    if mode == Mode::Real {
        for (common, repo) in repos.iter() {
            if let Err(e) = eng.git.prune(common) {
                rep.errors.push(Failure {
                    path: common.display().to_string(),
                    cause: e.to_string(),
                    hint: format!("run `git worktree prune` in repository {repo}"),
                });
            }
        }
    }
    repos.clear();
    let mut bc = BranchCleaner {
        git: eng.git,
        mode,
        deleted: BTreeSet::new(),
        tips: HashMap::new(),
    };
    // The removed worktrees' own branches, then the MapReduce agent branches of their jobs.
    let mut jobs: BTreeMap<(PathBuf, String), String> = BTreeMap::new();
    for (i, it) in eng.inv.items.iter().enumerate() {
        if outcome[i] != Some(true) || it.kind != ItemKind::Worktree {
            continue;
        }
        let Some(g) = &it.git else { continue };
        let (Some(common), Some(entry)) = (&g.common, &g.entry) else {
            continue;
        };
        let repo = g
            .repo_name
            .clone()
            .or_else(|| it.repo.clone())
            .unwrap_or_default();
        for j in job_ids_of(eng, it) {
            jobs.insert((common.clone(), j), repo.clone());
        }
        let (Some(branch), Some(head)) = (&entry.branch, &entry.head) else {
            continue;
        };
        if branch.starts_with("prodigy-") || branch.starts_with("agent-") {
            bc.consider(common, &repo, branch, head, rep, audit);
        }
    }
    for ((common, job), repo) in jobs {
        let checked_out: BTreeSet<String> = eng
            .inv
            .repos
            .get(&common)
            .map(|r| r.entries.iter().filter_map(|e| e.branch.clone()).collect())
            .unwrap_or_default();
        // `refs/heads/agent-{job}_*` as git's glob would match it: `*` stops at a `/`.
        let prefix = format!("agent-{job}_");
        let branches: Vec<(String, String)> = match bc.tips(&common) {
            Ok(t) => t
                .iter()
                .filter(|(b, _)| b.strip_prefix(&prefix).is_some_and(|r| !r.contains('/')))
                .map(|(b, c)| (b.clone(), c.clone()))
                .collect(),
            Err(e) => {
                rep.warnings.push(format!(
                    "repository {repo}: cannot list agent branches of job {job}: {e}"
                ));
                continue;
            }
        };
        for (branch, head) in branches {
            // A branch still checked out in a kept worktree belongs to that worktree.
            if !checked_out.contains(&branch) {
                bc.consider(&common, &repo, &branch, &head, rep, audit);
            }
        }
    }
}

/// Job ids a worktree belongs to: its owner's jobs, and for a 0.4.4 agent worktree
/// (`mapreduce-agent-{job}_agent_{n}`) the job in its name.
fn job_ids_of(eng: &Engine<'_>, it: &Item) -> Vec<String> {
    let mut v: Vec<String> = it
        .owner
        .as_ref()
        .and_then(|o| eng.inv.sessions.get(o))
        .map(|s| s.jobs.clone())
        .unwrap_or_default();
    let name = it.name();
    if let Some(rest) = name.strip_prefix("mapreduce-agent-") {
        if let Some((job, _)) = rest.rsplit_once("_agent_") {
            if crate::store::names::is_valid_id_bytes(job.as_bytes()) && !v.iter().any(|j| j == job)
            {
                v.push(job.to_string());
            }
        }
    }
    v
}

/// Deletes branches that another remaining branch contains, remembering what it deleted (or, in
/// a dry run, would delete) so that two branches containing each other are never both deleted.
struct BranchCleaner<'g> {
    git: &'g Git,
    mode: Mode,
    deleted: BTreeSet<(PathBuf, String)>,
    /// Each repository's branches and tips, listed once (after its worktrees were removed).
    tips: HashMap<PathBuf, Result<BTreeMap<String, String>, String>>,
}

impl BranchCleaner<'_> {
    /// The repository's branches → tips, from one `git for-each-ref` per run.
    fn tips(&mut self, common: &Path) -> Result<&BTreeMap<String, String>, String> {
        let git = self.git;
        self.tips
            .entry(common.to_path_buf())
            .or_insert_with(|| {
                git.branches(common)
                    .map(|v| v.into_iter().collect())
                    .map_err(|e| e.to_string())
            })
            .as_ref()
            .map_err(Clone::clone)
    }

    fn consider(
        &mut self,
        common: &Path,
        repo: &str,
        branch: &str,
        head: &str,
        rep: &mut Report,
        audit: &mut dyn Audit,
    ) {
        let key = (common.to_path_buf(), branch.to_string());
        if self.deleted.contains(&key) {
            return;
        }
        let keep = |rep: &mut Report, detail: String| {
            rep.branches_kept.push(BranchEntry {
                repo: repo.to_string(),
                branch: branch.to_string(),
                detail,
            })
        };
        match self.tips(common).map(|t| t.get(branch).cloned()) {
            Ok(Some(c)) if c == head => {}
            Ok(Some(_)) => return keep(rep, "moved since it was scanned".into()),
            Ok(None) => return,
            Err(e) => return keep(rep, e),
        }
        let containing = match self.git.branches_containing(common, head) {
            Ok(v) => v,
            Err(e) => return keep(rep, e.to_string()),
        };
        let mut others: Vec<&String> = containing
            .iter()
            .filter(|b| {
                *b != branch && !self.deleted.contains(&(common.to_path_buf(), (*b).clone()))
            })
            .collect();
        // Name the user's branch (main) rather than another Prodigy branch when both contain it.
        others.sort_by_key(|b| {
            (
                b.starts_with("prodigy-") || b.starts_with("agent-"),
                (*b).clone(),
            )
        });
        let Some(into) = others.first() else {
            return keep(rep, "has commits that are on no other branch".into());
        };
        let detail = format!("merged into {into}");
        if self.mode == Mode::Real {
            if let Err(e) = self.git.delete_branch(common, branch, head) {
                rep.errors.push(Failure {
                    path: format!("{repo}: {branch}"),
                    cause: e.to_string(),
                    hint: "delete the branch by hand once it is merged".into(),
                });
                return;
            }
            audit.record(&serde_json::json!({
                "time": crate::store::records::Timestamp::now(), "action": "delete-branch",
                "type": "worktrees", "repository": repo, "path": branch, "bytes": 0, "reason": detail,
            }));
        }
        self.deleted.insert(key);
        rep.branches_deleted.push(BranchEntry {
            repo: repo.to_string(),
            branch: branch.to_string(),
            detail,
        });
    }
}

/// Open (creating it) the trash directory and empty what a crashed run left there: those items
/// were already committed to deletion.
fn open_trash(root: &Dir, rep: &mut Report) -> Option<Dir> {
    let name = OsStr::new(crate::store::TRASH_DIR);
    match root.create_dir(name) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => {
            rep.warnings.push(format!(
                "cannot create `{}`: {}; removing in place",
                crate::store::TRASH_DIR,
                e
            ));
            return None;
        }
    }
    let t = match root.open_dir(name) {
        Ok(t) => t,
        Err(e) => {
            rep.warnings.push(format!(
                "cannot open `{}`: {}; removing in place",
                crate::store::TRASH_DIR,
                e
            ));
            return None;
        }
    };
    let leftovers = t.names().unwrap_or_default();
    if !leftovers.is_empty() {
        rep.warnings.push(format!(
            "finished removing {} items an interrupted clean left in {}",
            leftovers.len(),
            crate::store::TRASH_DIR
        ));
    }
    for n in leftovers {
        let r = fsops::remove_tree(&t, &n);
        for p in r.problems {
            rep.errors.push(Failure {
                path: format!(
                    "{}/{}/{}",
                    crate::store::TRASH_DIR,
                    crate::store::names::printable(&n),
                    p.rel.display()
                ),
                cause: crate::error::describe_io(&p.error),
                hint: "fix the cause and run clean again".into(),
            });
        }
    }
    Some(t)
}

/// A directory of an item, renamed into the trash: its name there, and where it was.
struct Staged {
    in_trash: OsString,
    from: inventory::RelPath,
}

/// Take an item and the files that go with it out of place: a single file is unlinked (one
/// atomic step, no trash needed); a directory is renamed into the trash (atomic too) and returned,
/// for [`finish_staged`] to delete once the rename is durable. Without a trash, or across
/// filesystems, a directory is deleted in place at once. Errors name the path that failed; what
/// was staged before the failure is finished first.
fn stage_item(
    root: &Dir,
    parents: &mut inventory::ParentCache,
    trash: Option<&Dir>,
    it: &Item,
) -> Result<Vec<Staged>, String> {
    let mut paths = vec![&it.comps];
    paths.extend(it.rare().extra.iter());
    if let Some((m, _)) = it.git.as_ref().and_then(|g| g.legacy_meta.as_ref()) {
        paths.push(m);
    }
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let mut staged = Vec::new();
    for p in paths {
        let (parent, name) = (p.parent(), p.name());
        let pd = match parents.get(root, parent) {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => {
                let cause = format!(
                    "cannot open `{}`: {}",
                    inventory::rel_of_parts(parent.iter()),
                    crate::error::describe_io(&e)
                );
                return Err(finish_after_failure(root, parents, trash, staged, cause));
            }
        };
        let is_dir = pd.stat(name).map(|m| m.kind == Kind::Dir).unwrap_or(false);
        if let Some(t) = trash.filter(|_| is_dir) {
            let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let tmp = OsString::from(format!("{}-{}", std::process::id(), n));
            match pd.rename(name, t, &tmp) {
                Ok(()) => {
                    staged.push(Staged {
                        in_trash: tmp,
                        from: p.clone(),
                    });
                    continue;
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                // Another filesystem (EXDEV) or no rename support: delete in place.
                Err(_) => {}
            }
        }
        let r = fsops::remove_tree(pd, name);
        if !r.complete {
            let cause = removal_failure(p, &r);
            return Err(finish_after_failure(root, parents, trash, staged, cause));
        }
    }
    Ok(staged)
}

/// `stage_item` failed at one path after staging others: finish those (the item is reported
/// failed either way, as it was when each path was deleted in turn) and return `cause`.
fn finish_after_failure(
    root: &Dir,
    parents: &mut inventory::ParentCache,
    trash: Option<&Dir>,
    staged: Vec<Staged>,
    cause: String,
) -> String {
    if let (Some(t), false) = (trash, staged.is_empty()) {
        let _ = t.sync();
        let _ = finish_staged(root, parents, t, staged);
    }
    cause
}

/// Delete the staged directories of one item from the trash (their renames must be durable
/// already). A directory that cannot be deleted completely is moved back to where it was, so
/// nothing is left half-hidden; the first such failure is returned, the others still finished.
fn finish_staged(
    root: &Dir,
    parents: &mut inventory::ParentCache,
    trash: &Dir,
    staged: Vec<Staged>,
) -> Result<(), String> {
    let mut first = Ok(());
    for st in staged {
        let r = fsops::remove_tree(trash, &st.in_trash);
        if !r.complete {
            if let Ok(pd) = parents.get(root, st.from.parent()) {
                let _ = trash.rename(&st.in_trash, pd, st.from.name());
            }
            if first.is_ok() {
                first = Err(removal_failure(&st.from, &r));
            }
        }
    }
    first
}

/// Why removing `p` stopped short, for the report: its first three problems and mounts.
fn removal_failure(p: &inventory::RelPath, r: &fsops::RemoveSummary) -> String {
    let mut why: Vec<String> = r
        .problems
        .iter()
        .take(3)
        .map(|p| {
            format!(
                "{}: {}",
                p.rel.display(),
                crate::error::describe_io(&p.error)
            )
        })
        .collect();
    if !r.mounts.is_empty() {
        why.push("a mount point inside".into());
    }
    format!(
        "failed to remove `{}`: {}",
        inventory::rel_of(p),
        why.join("; ")
    )
}

/// Storage-format §4.7: a worktree whose removal failed goes into
/// `orphaned_worktrees/{repo}/{job_id}.json`, merged with what is there, written crash-safely.
fn record_orphan(eng: &Engine<'_>, it: &Item, cause: &str, rep: &mut Report) {
    use crate::store::records::{OrphanEntry, Timestamp};
    let repo = it.repo.clone().unwrap_or_else(|| "unknown".into());
    let job = it
        .owner
        .as_ref()
        .and_then(|o| eng.inv.sessions.get(o))
        .and_then(|s| s.jobs.first().cloned())
        .or_else(|| it.owner.clone())
        .unwrap_or_else(|| "unowned".into());
    let dir = eng.root_path.join("orphaned_worktrees").join(&repo);
    let name = format!("{job}.json");
    let file = dir.join(&name);
    // Create and open the directory chain fd-relative: no component may be a symlink, so the
    // path-based crash-safe write below stays inside the root.
    let mut d = eng.root.open_path(&[]).ok();
    for c in [OsStr::new("orphaned_worktrees"), OsStr::new(&repo)] {
        d = d.and_then(|p| {
            let _ = p.create_dir(c);
            p.open_dir(c).ok()
        });
    }
    let Some(d) = d else {
        rep.warnings.push(format!(
            "cannot record orphaned worktree: `{}` is not a plain directory",
            dir.display()
        ));
        return;
    };
    let mut entries: Vec<OrphanEntry> = d
        .read_file(OsStr::new(&name), inventory::MAX_RECORD)
        .ok()
        .and_then(|b| crate::store::records::parse(&b).ok())
        .unwrap_or_default();
    let path = eng.root_path.join(it.rel());
    entries.retain(|e| e.path != path);
    entries.push(OrphanEntry {
        path,
        agent_id: it.name(),
        item_id: String::new(),
        failed_at: Timestamp::now(),
        error: cause.to_string(),
        extra: Default::default(),
    });
    let res = crate::store::records::try_to_json_bytes(&entries)
        .map_err(std::io::Error::other)
        .and_then(|b| crate::store::atomic::write_atomic(&file, &b));
    if let Err(e) = res {
        rep.warnings.push(format!(
            "cannot record orphaned worktree in `{}`: {}",
            file.display(),
            e
        ));
    }
}

/// One orphaned-worktree registry `orphaned_worktrees/{repo}/{job_id}.json` (storage-format §4.7).
#[derive(Debug, Clone)]
pub struct Registry {
    /// Repository directory name.
    pub repo: String,
    /// Job id (the file stem).
    pub job: String,
    /// Path relative to the root.
    pub rel: String,
    /// Its entries, or why it could not be read (it is then kept as is).
    pub entries: Result<Vec<crate::store::records::OrphanEntry>, String>,
}

impl Registry {
    /// Entries whose worktree path still exists.
    pub fn live(&self) -> Vec<crate::store::records::OrphanEntry> {
        self.entries
            .as_ref()
            .map(|v| {
                v.iter()
                    .filter(|e| std::fs::symlink_metadata(&e.path).is_ok())
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Entries that would be dropped now (their worktree is gone).
    pub fn gone(&self) -> usize {
        self.entries
            .as_ref()
            .map(|v| v.len() - self.live().len())
            .unwrap_or(0)
    }
}

/// Every registry of the repositories in `scope`, read fd-relative (names fit the id grammar).
pub fn orphan_registries(root: &Dir, scope: &Scope) -> Vec<Registry> {
    let mut out = Vec::new();
    let Ok(d) = root.open_dir(OsStr::new("orphaned_worktrees")) else {
        return out;
    };
    let mut repos = d.names().unwrap_or_default();
    repos.sort();
    for repo in repos {
        let Some(r) = crate::store::names::valid_id_str(&repo) else {
            continue;
        };
        if matches!(scope, Scope::Repo(want) if want != r) {
            continue;
        }
        let Ok(rd) = d.open_dir(&repo) else { continue };
        let mut files = rd.names().unwrap_or_default();
        files.sort();
        for f in files {
            let Some(job) = crate::store::names::strip_valid(&f, ".json") else {
                continue;
            };
            let entries = rd
                .read_file(&f, inventory::MAX_RECORD)
                .map_err(|e| crate::error::describe_io(&e))
                .and_then(|b| crate::store::records::parse(&b).map_err(|e| e.to_string()));
            out.push(Registry {
                repo: r.to_string(),
                job: job.to_string(),
                rel: format!("orphaned_worktrees/{r}/{job}.json"),
                entries,
            });
        }
    }
    out
}

/// Registries in scope with entries to drop: a real run rewrites them, so they count as work.
pub fn stale_registry_entries(eng: &Engine<'_>) -> usize {
    if !eng.opts.types.contains(&StorageType::Worktrees) {
        return 0;
    }
    orphan_registries(eng.root, &eng.opts.scope)
        .iter()
        .map(Registry::gone)
        .sum()
}

/// Storage-format §4.7: registry entries whose path is gone are dropped; a registry left empty is
/// removed. Only registries of repositories in scope, only in a real run (a dry run reports).
fn prune_orphan_registry(eng: &Engine<'_>, mode: Mode, rep: &mut Report) {
    for reg in orphan_registries(eng.root, &eng.opts.scope) {
        if let Err(e) = &reg.entries {
            rep.warnings
                .push(format!("{} does not parse ({e}); kept as is", reg.rel));
            continue;
        }
        let dropped = reg.gone();
        if dropped == 0 {
            continue;
        }
        let verb = if mode == Mode::Real {
            "dropped"
        } else {
            "would drop"
        };
        rep.warnings.push(format!(
            "{}: {verb} {dropped} entries whose worktree is gone",
            reg.rel
        ));
        if mode == Mode::DryRun {
            continue;
        }
        let live = reg.live();
        let res = if live.is_empty() {
            let parts = [OsStr::new("orphaned_worktrees"), OsStr::new(&reg.repo)];
            match eng.root.open_path(&parts) {
                Ok(rd) => {
                    let r = fsops::remove_tree(&rd, OsStr::new(&format!("{}.json", reg.job)));
                    if r.complete {
                        Ok(())
                    } else {
                        Err(r
                            .problems
                            .first()
                            .map(|p| crate::error::describe_io(&p.error))
                            .unwrap_or_default())
                    }
                }
                Err(e) => Err(crate::error::describe_io(&e)),
            }
        } else {
            crate::store::records::try_to_json_bytes(&live)
                .map_err(|e| e.to_string())
                .and_then(|b| {
                    crate::store::atomic::write_atomic(&eng.root_path.join(&reg.rel), &b)
                        .map_err(|e| e.to_string())
                })
        };
        if let Err(cause) = res {
            rep.errors.push(Failure {
                path: reg.rel,
                cause,
                hint: "check permissions and run clean again".into(),
            });
        }
    }
}
