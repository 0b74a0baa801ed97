//! Execution of a plan (safety R5): the deletion-time re-check of every item under its owner's
//! resume locks, staging into the trash, batched durability, the report and the audit log.
//! A dry run runs the same code with the mutating calls skipped, and the checks that compare
//! an item with what the scan saw (they guard a deletion against a racing writer; see `recheck`).

use super::branches::finish_worktrees;
use super::inventory::{self, Item, ItemKind};
use super::orphans::{prune_orphan_registry, record_orphan};
use super::plan::uncommitted;
use super::*;
use crate::store::fsops::{self, Dir, Kind};
use crate::store::lock::{self, TryLock};
use std::collections::{BTreeMap, BTreeSet};
use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};

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
    crate::sort::sort_by_key(&mut order, |&i| {
        let it = &eng.inv.items[i];
        let parent = it.git.as_ref().is_some_and(|g| !g.children.is_empty());
        (it.ty, parent, i)
    });
    if let Some(dir) = eng.opts.archive.clone().filter(|_| !eng.opts.estimate) {
        // Complete and durable before the first removal (issue 26).
        super::archive::archive_items(eng, &dir, &order, mode, &mut done.outcome, &mut rep, audit);
    }
    let mut worktrees_done = false;
    // Parent directories of the items, `sessions/` and `resume_locks/`, opened once for the
    // run. Every check and deletion below goes through these handles, fd-relative: an item is
    // removed only if its device and inode under the handle are what the scan saw.
    let mut parents = if mode == Mode::DryRun {
        inventory::ParentCache::remembering_missing()
    } else {
        inventory::ParentCache::default()
    };
    // Items renamed into the trash whose contents are not deleted yet (see `flush`).
    let mut pending: Vec<(usize, Vec<Staged>)> = Vec::new();
    let total = order.len();
    for (n, &i) in order.iter().enumerate() {
        progress(eng.inv.items[i].ty, n, total);
        if done.outcome[i].is_some() {
            continue; // kept: it could not be archived
        }
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
    if eng.registry && eng.opts.types.contains(&StorageType::Worktrees) {
        prune_orphan_registry(eng, mode, &mut rep);
    }
    if eng.opts.compress_after.is_some() && !eng.opts.estimate {
        compress_items(eng, plan, &outcome, mode, &mut parents, &mut rep, audit);
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
    rep.kept.sort_in_memory_by(|e| (e.ty, e.path.clone()));
    rep.quota = quota_outcome(eng, &outcome, &mut rep);
    eng.outcome = outcome;
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
        q.blocked_by = rep.kept.to_vec();
        for (i, r, why) in &eng.quota_blocked {
            q.blocked_by
                .push(entry_of(&eng.inv.items[*i], Some(*r), why.clone()));
        }
        crate::sort::sort_by(&mut q.blocked_by, |a, b| {
            b.bytes.cmp(&a.bytes).then_with(|| a.path.cmp(&b.path))
        });
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

pub(super) fn entry_of(it: &Item, reason: Option<Reason>, detail: String) -> Entry {
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

pub(super) fn removal_reason(eng: &Engine<'_>, i: usize) -> String {
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
///
/// A dry run makes every check but the two that compare the item and its owner's record with
/// what the scan saw moments ago: they guard a deletion against a writer that raced it, and a
/// dry run deletes nothing (a real run, later, scans again and makes them). They were a
/// `fstatat` for every item and another for its record: 107,570 calls, about 0.2 s of the 2.5 s
/// of system time of a dry run at 40,002 sessions (issue 25).
fn recheck(
    eng: &mut Engine<'_>,
    i: usize,
    outcome: &[Option<bool>],
    mode: Mode,
    parents: &mut inventory::ParentCache,
) -> Result<Vec<lock::Held>, (Reason, String)> {
    let it = &eng.inv.items[i];
    let real = mode == Mode::Real;
    if let Some((dev, ino)) = it.dev_ino.filter(|_| real) {
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
            if real && rec.dev_ino.is_some() && i != s.item {
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

/// A file name that `--compress-after` compresses in an item of type `ty`: an event file
/// (`events-*.jsonl`) in an events item; any file but a temp file in a logs item. Already
/// compressed files (`.gz`) never.
fn compress_name(ty: StorageType, name: &OsStr) -> bool {
    if crate::store::gz::is_gz(name) || crate::store::atomic::is_temp_name(name) {
        return false;
    }
    match ty {
        StorageType::Events => name
            .to_str()
            .is_some_and(|n| n.starts_with("events-") && n.ends_with(".jsonl")),
        StorageType::Logs => true,
        _ => false,
    }
}

/// Compress the old files of every item the plan left `TooNew` whose files may be compressed
/// (`Engine::compressible`), each after the item's deletion-time re-check and under its owner's
/// resume locks (safety R5), fd-relative through `store::gz`. Leftover temp files of an
/// interrupted compression are removed first. A dry run compresses into a counter to tell the
/// saving. The directory's own mtime is put back, so the item's age is unchanged.
#[allow(clippy::too_many_arguments)]
fn compress_items(
    eng: &mut Engine<'_>,
    plan: &[Decision],
    outcome: &[Option<bool>],
    mode: Mode,
    parents: &mut inventory::ParentCache,
    rep: &mut Report,
    audit: &mut dyn Audit,
) {
    let Some(after) = eng.opts.compress_after else {
        return;
    };
    let cutoff = eng
        .now
        .saturating_sub(i64::try_from(after).unwrap_or(i64::MAX));
    let real = mode == Mode::Real;
    let mut hook = |_: &str| {};
    for i in 0..plan.len() {
        if !eng.compressible(i, plan) {
            continue;
        }
        let locks = match recheck(eng, i, outcome, mode, parents) {
            Ok(l) => l,
            Err(_) => continue,
        };
        let it = &eng.inv.items[i];
        let Ok(parent) = parents.get(eng.root, it.comps.parent()) else {
            continue;
        };
        let name = it.comps.name();
        let Ok(m) = parent.stat(name) else {
            continue;
        };
        if it.dev_ino.is_some_and(|di| di != (m.dev, m.ino)) {
            continue;
        }
        // The directory to work in and the names to look at.
        let owned;
        let (dir, names, prefix): (&Dir, Vec<OsString>, String) = match m.kind {
            Kind::Dir => {
                let Ok(d) = parent.open_dir(name) else {
                    continue;
                };
                if (d.dev(), d.ino()) != (m.dev, m.ino) {
                    continue;
                }
                owned = d;
                let mut names = owned.names().unwrap_or_default();
                crate::sort::sort(&mut names);
                (&owned, names, format!("{}/", it.rel()))
            }
            Kind::File => {
                let parent_rel = inventory::rel_of_parts(it.comps.parent().iter());
                (parent, vec![name.to_os_string()], format!("{parent_rel}/"))
            }
            _ => continue,
        };
        let mut changed = false;
        for n in &names {
            let path = format!("{prefix}{}", crate::store::names::printable(n));
            if crate::store::gz::is_leftover(n) {
                if real {
                    match dir.unlink(n) {
                        Ok(()) => changed = true,
                        Err(e) => rep.warnings.push(format!(
                            "{path}: cannot remove a leftover temp file: {}",
                            crate::error::describe_io(&e)
                        )),
                    }
                }
                continue;
            }
            if !compress_name(it.ty, n) {
                continue;
            }
            let Ok(fm) = dir.stat(n) else { continue };
            if fm.kind != Kind::File || fm.len == 0 || fm.mtime_secs > cutoff {
                continue;
            }
            match crate::store::gz::compress(dir, n, real, &mut hook) {
                Ok(crate::store::gz::Outcome::Done { before, after }) => {
                    changed |= real;
                    rep.after
                        .shrink(it.ty, it.repo.as_deref(), before.saturating_sub(after));
                    rep.compressed_count.0.add(before);
                    rep.compressed_count.1 += after;
                    if real {
                        audit.record(&serde_json::json!({
                            "time": crate::store::records::Timestamp::now(),
                            "action": "compress", "type": it.ty.word(), "repository": it.repo,
                            "path": path, "bytes": before, "gz_bytes": after, "owner": it.owner,
                        }));
                    }
                    rep.compressed.push(Compressed {
                        ty: it.ty,
                        repo: it.repo.clone(),
                        path,
                        owner: it.owner.clone(),
                        before,
                        after,
                    });
                }
                Ok(crate::store::gz::Outcome::Kept(why)) => {
                    changed |= real;
                    rep.warnings.push(format!("{path}: not compressed: {why}"));
                }
                Err(cause) => {
                    changed |= real;
                    audit.record(&serde_json::json!({
                        "time": crate::store::records::Timestamp::now(),
                        "action": "fail", "type": it.ty.word(), "repository": it.repo,
                        "path": path, "reason": format!("compress: {cause}"),
                    }));
                    rep.errors.push(Failure {
                        path,
                        cause: format!("cannot compress: {cause}"),
                        hint: "the original is kept; fix the cause (permissions, disk space) and run clean again".into(),
                    });
                }
            }
        }
        if changed && m.kind == Kind::Dir {
            // Creating, renaming and unlinking inside changed the directory's mtime, which
            // counts for the item's age (safety §2): put it back.
            let _ = dir.set_mtime(m.mtime_secs, m.mtime_nanos);
        }
        drop(locks);
    }
    audit.sync();
}
