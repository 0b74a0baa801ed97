//! Planning: the [`Engine`] scans, measures and classifies once, then decides every item
//! (safety §1–§3): age against retention, owner protection, worktree git state, "the owner
//! goes last", and the quota pass.

use super::inventory::{self, Inventory, Item, ItemKind};
use super::*;
use crate::git::Git;
use crate::store::fsops::Dir;
use classify::{Class, Verdict};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

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
    pub verdicts: Map<String, Verdict>,
    /// Directories in use by processes.
    pub in_use: Vec<PathBuf>,
    /// Scan-time status lines of worktrees (index → lines), to keep plan and run consistent.
    pub(super) status_cache: Map<usize, Result<Vec<String>, String>>,
    /// Worktree items by owner session, so an owner's check does not scan every item.
    pub(super) worktrees_of: Map<String, Vec<usize>>,
    /// Set while the quota pass decides items as if they had expired.
    ignore_age: bool,
    /// Items the quota pass added to the plan (removed though younger than their retention).
    pub quota_picked: BTreeSet<usize>,
    /// Items the quota pass could not add, with the reason: protected data in the way.
    pub quota_blocked: Vec<(usize, Reason, String)>,
    /// Sessions whose worktree a batch before this one kept (streaming engine): owner → the
    /// detail for its record.
    pub kept_worktrees: Map<String, String>,
    /// Whether [`execute`] handles the orphaned-worktree registries (once per run).
    pub registry: bool,
    /// Each item's outcome after [`execute`]: `Some(true)` removed, `Some(false)` kept or failed.
    pub outcome: Vec<Option<bool>>,
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
            index: None,
        };
        let mut inv = scanner.scan();
        let scope = opts.scope.clone();
        // Walk what is in scope, and everything owned by a session in scope (its activity
        // anywhere counts for its class), but not other repositories' worktrees.
        let owners_in_scope: Set<String> = inv
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
        Engine::from_parts(root, root_path, git, now, opts, inv, verdicts, in_use)
    }

    /// An engine over an inventory already scanned, measured and classified (a batch of the
    /// streaming engine, or [`Engine::new`]'s).
    #[allow(clippy::too_many_arguments)]
    pub fn from_parts(
        root: &'a Dir,
        root_path: &'a Path,
        git: &'a Git,
        now: i64,
        opts: &'a Options,
        inv: Inventory,
        verdicts: Map<String, Verdict>,
        in_use: Vec<PathBuf>,
    ) -> Engine<'a> {
        let mut worktrees_of: Map<String, Vec<usize>> = Map::default();
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
            status_cache: Map::default(),
            worktrees_of,
            ignore_age: false,
            quota_picked: BTreeSet::new(),
            quota_blocked: Vec::new(),
            kept_worktrees: Map::default(),
            registry: true,
            outcome: Vec::new(),
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

    pub(super) fn owner_verdict(&self, it: &Item) -> Option<&Verdict> {
        it.owner.as_ref().and_then(|o| self.verdicts.get(o))
    }

    /// Decide every item. Worktrees are decided children first; session records last.
    pub fn plan(&mut self) -> Vec<Decision> {
        let n = self.inv.items.len();
        let mut d = vec![Decision::OutOfScope; n];
        let mut order: Vec<usize> = (0..n).collect();
        // Children (nested agents) before parents; session records after everything.
        crate::sort::sort_by_key(&mut order, |&i| {
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

    /// Whether the files of item `i` (left `TooNew` by the plan) may be compressed
    /// (`Options::compress_after`): an event or log item that `decide` would remove if it were
    /// old enough, so nothing active, resumable, unknown, live-locked, unreadable or with a
    /// mount point inside is ever compressed, whatever its age.
    pub(super) fn compressible(&mut self, i: usize, so_far: &[Decision]) -> bool {
        let it = &self.inv.items[i];
        if self.opts.compress_after.is_none()
            || so_far[i] != Decision::TooNew
            || it.kind != ItemKind::Data
            || !matches!(it.ty, StorageType::Events | StorageType::Logs)
        {
            return false;
        }
        self.ignore_age = true;
        let d = self.decide(i, so_far);
        self.ignore_age = false;
        d == Decision::Remove
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
        crate::sort::sort_by_key(&mut pending, |&i| {
            let it = &self.inv.items[i];
            let rank = match it.kind {
                ItemKind::SessionRecord => 2,
                ItemKind::Worktree if it.git.as_ref().is_some_and(|g| !g.children.is_empty()) => 1,
                _ => 0,
            };
            (self.last_activity(it).unwrap_or(i64::MAX), rank, i)
        });
        self.ignore_age = true;
        let mut last: Map<usize, Decision> = Map::default();
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
        if !in_scope(&self.opts.scope, it) || it.kind == ItemKind::Reference {
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
        if let Some(why) = self.kept_worktrees.get(o) {
            return Decision::Keep(Reason::OwnerKept, why.clone());
        }
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
pub(super) fn uncommitted(lines: &[String]) -> String {
    format!(
        "uncommitted or untracked changes: {}",
        lines.iter().take(3).cloned().collect::<Vec<_>>().join(", ")
    )
}

/// True when a worktree of this repository under the root was moved by hand (see inventory).
pub(super) fn has_moved_worktree(eng: &Engine<'_>, common: &Path) -> bool {
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
