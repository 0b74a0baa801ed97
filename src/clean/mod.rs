//! The clean engine: inventory → classification → plan → execution.
//!
//! The dry run and the real run execute the same code ([`execute`]); only the mutating calls are
//! skipped in a dry run, so the dry run lists exactly what a real run removes (issue: "the dry
//! run runs the same code with deletion disabled"). Every deletion goes through
//! `store::fsops` after the item was renamed into the root's trash (safety R5).

mod archive;
mod branches;
pub mod classify;
pub mod entries;
mod execute;
pub mod index;
pub mod inventory;
mod orphans;
mod plan;
pub mod retention;
pub mod stream;

pub use archive::Archived;
pub use execute::execute;
pub use orphans::{orphan_registries, stale_registry_entries, Registry};
pub use plan::{stale_git_records, vanished_records, Engine};

use crate::git::Git;
use crate::store::fsops::Dir;
use crate::store::StorageType;
use inventory::Item;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ffi::OsStr;

/// The clean engine's hash maps, keyed by session and job ids (or row and item numbers):
/// std's `HashMap` with [`index::sip::IdHash`], SipHash-1-3 keyed at random like std's, in one
/// call a key.
pub type Map<K, V> = HashMap<K, V, index::sip::IdHash>;
/// [`Map`]'s set.
pub type Set<K> = std::collections::HashSet<K, index::sip::IdHash>;

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
    /// `--compress-after` (or the retention file's `compress-after`), seconds: event files
    /// (`events-*.jsonl`) and log files older than this, of items that would be removed if they
    /// were old enough (so never of an active, resumable or unknown session), become `NAME.gz`
    /// (`store::gz`). Not in an estimate.
    pub compress_after: Option<u64>,
    /// `--archive DIR` (or the retention file's `archive`): every item the run removes except
    /// worktrees is first written to an archive in this directory (`clean::archive`). Not in
    /// an estimate; the whole root is planned at once (one archive per run).
    pub archive: Option<std::path::PathBuf>,
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
            compress_after: None,
            archive: None,
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
    /// Add `o`'s counts to these.
    pub fn merge(&mut self, o: &Stats) {
        for (k, c) in &o.by_type {
            let e = self.by_type.entry(*k).or_default();
            e.items += c.items;
            e.bytes += c.bytes;
        }
        for (k, c) in &o.by_repo {
            let e = self.by_repo.entry(k.clone()).or_default();
            e.items += c.items;
            e.bytes += c.bytes;
        }
        self.total.items += o.total.items;
        self.total.bytes += o.total.bytes;
    }
    fn add(&mut self, ty: StorageType, repo: Option<&str>, bytes: u64) {
        self.by_type.entry(ty.word()).or_default().add(bytes);
        self.by_repo
            .entry(repo.unwrap_or("-").to_string())
            .or_default()
            .add(bytes);
        self.total.add(bytes);
    }
    /// `bytes` fewer in these counts, the items unchanged (a file compressed).
    fn shrink(&mut self, ty: StorageType, repo: Option<&str>, bytes: u64) {
        for c in [
            self.by_type.entry(ty.word()).or_default(),
            self.by_repo
                .entry(repo.unwrap_or("-").to_string())
                .or_default(),
            &mut self.total,
        ] {
            c.bytes = c.bytes.saturating_sub(bytes);
        }
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
    pub removed: entries::EntryList,
    /// Items and bytes removed (or that would be), and how many of the items are worktrees.
    pub removed_count: (Count, u64),
    /// Kept though old enough. Empty for an estimate.
    pub kept: entries::EntryList,
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
    /// Files compressed (or that would be) by `Options::compress_after`.
    pub compressed: Vec<Compressed>,
    /// Their number and bytes on disk before, and the bytes they take (or would take) after.
    pub compressed_count: (Count, u64),
    /// The archive written (or that would be) before the removals, with `Options::archive`.
    pub archive: Option<Archived>,
}

/// One file compressed in place (`NAME` → `NAME.gz`).
#[derive(Clone, Debug)]
pub struct Compressed {
    /// Storage type (events or logs).
    pub ty: StorageType,
    /// Repository, if known.
    pub repo: Option<String>,
    /// Path of the original relative to the root.
    pub path: String,
    /// Owning session.
    pub owner: Option<String>,
    /// Bytes on disk before.
    pub before: u64,
    /// Bytes on disk of the `.gz` (its length in a dry run).
    pub after: u64,
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
