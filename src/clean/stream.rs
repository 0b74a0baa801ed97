//! The streaming clean engine (issue 15): memory bounded by a compact per-session index and one
//! batch of items, whatever the number of sessions.
//!
//! Pass 1 ([`inventory::Scanner::build_index`]) learns, per session, what classification needs
//! and keeps whole only the few items that relate to each other (worktrees, resume locks).
//! Pass 2 streams the rest type by type and repository by repository, in batches of at most
//! [`BATCH_ITEMS`]: each batch is measured, its activity and evidence are folded into the index,
//! and it is planned, re-checked, executed and reported by the same [`Engine`] as a whole-root
//! run, before the next batch is read. The order keeps every relation of safety §1–§3:
//!
//! 1. Pass 1 read what classification needs (records, owners, checkpoints): a session's class
//!    is known before anything it owns is decided. Pass 2 streams `events/`, `logs/`, `dlq/` and
//!    `state/`, in the order of a whole-root run.
//! 2. A running session whose owner cannot be checked from here is active only if something it
//!    owns changed within the hour (safety §1): its items wait until everything is measured
//!    (they are measured, folded and dropped), and pass 3 lists the same directories again and
//!    takes only them. Nothing waits in memory.
//! 3. The items kept whole: worktrees (nested agents before their parent), locks, temp files;
//!    git's bookkeeping is pruned and branches deleted once, here.
//! 4. Session records last ("the owner goes last"), each with its session's whole activity, and
//!    kept while one of its worktrees is.
//!
//! A dry run runs the same passes with deletion disabled. Runs that must see the whole plan at
//! once (a quota, an interactive confirmation, `sessions rm`, `worktree clean`) use
//! [`Engine::new`] instead.

use super::classify::{Facts, Verdict};
use super::index::Index;
use super::inventory::{self, Inventory, Item, ItemKind, RelPath, Scanner, Session};
use super::*;
use crate::git::Git;
use std::path::{Path, PathBuf};

/// Items per batch, at most.
pub const BATCH_ITEMS: usize = 1024;

/// Called after each batch is executed, with its engine and plan (`stats` sums them).
pub type OnBatch<'c> = dyn FnMut(&Engine<'_>, &[Decision]) + 'c;

/// One streaming run.
struct Run<'a, 'c> {
    root: &'a Dir,
    root_path: &'a Path,
    git: &'a Git,
    now: i64,
    opts: &'a Options,
    mode: Mode,
    host: String,
    in_use: Vec<PathBuf>,
    idx: Index,
    total: Report,
    audit: &'c mut dyn Audit,
    on_batch: &'c mut OnBatch<'c>,
}

/// True when a run with these options can stream: no quota and no narrowed selection (those
/// need the whole plan at once; see the module doc).
pub fn eligible(opts: &Options) -> bool {
    opts.max_size.is_none()
        && opts.archive.is_none()
        && opts.only_name.is_none()
        && opts.only_paths.is_none()
        && opts.only_owners.is_none()
        && !opts.explicit
}

/// Clean (or, in [`Mode::DryRun`], report) the root in a streaming run; see the module doc.
/// The arguments are those of [`Engine::new`] and [`execute`], which it stands for.
#[allow(clippy::too_many_arguments)]
pub fn run<'c>(
    root: &Dir,
    root_path: &Path,
    git: &Git,
    now: i64,
    opts: &Options,
    mode: Mode,
    audit: &'c mut dyn Audit,
    on_batch: &'c mut OnBatch<'c>,
) -> Report {
    let host = crate::procs::hostname();
    let in_use = crate::procs::dirs_in_use();
    let scanner = Scanner {
        root,
        root_path,
        git,
        host: host.clone(),
        now,
        lock_lease: crate::store::lock_lease(),
        index: None,
    };
    let facts = Facts {
        now,
        host: &host,
        in_use: &in_use,
        root_path,
    };
    let (idx, core) = scanner.build_index(&facts);
    let mut r = Run {
        root,
        root_path,
        git,
        now,
        opts,
        mode,
        host: host.clone(),
        in_use: in_use.clone(),
        idx,
        total: Report {
            dry_run: mode == Mode::DryRun,
            ..Report::default()
        },
        audit,
        on_batch,
    };
    // 1. events/, logs/, dlq/, state/.
    r.stream(&scanner, false);
    r.idx.all_measured = true;
    // 2. The items whose owner's class waited for all activity, found again.
    if (0..r.idx.len() as u32).any(|k| r.idx.at(k).waited()) {
        r.stream(&scanner, true);
    }
    // 3. Items kept whole.
    r.batch(core, true, Role::Core, false);
    // 4. Session records.
    // The records pass 1 read, in id order (no second listing of `sessions/`), then the other
    // names there.
    let mut k = 0;
    while k < r.idx.len() {
        let names: Vec<std::ffi::OsString> = (k..(k + BATCH_ITEMS).min(r.idx.len()))
            .map(|i| format!("{}.json", r.idx.id(i as u32)).into())
            .collect();
        k += names.len();
        let inv = scanner.with_index(&r.idx).session_items(&names);
        r.batch(inv, false, Role::Sessions, false);
    }
    let others = std::mem::take(&mut r.idx.other_session_names);
    let inv = scanner.with_index(&r.idx).session_items(&others);
    r.batch(inv, false, Role::Sessions, false);
    drop(scanner);
    let host = r.host.clone();
    let in_use = r.in_use.clone();
    let facts = Facts {
        now,
        host: &host,
        in_use: &in_use,
        root_path,
    };
    let scope = r.opts.scope.clone();
    let classes = r.idx.classes(&facts, |row, idx| match &scope {
        Scope::All => true,
        Scope::Repo(want) => row.repo().is_some_and(|x| idx.repos[x as usize] == *want),
    });
    r.total.classes = classes;
    r.audit.sync();
    r.total
}

/// What a batch is, for what it does once.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    /// Items of the streamed types.
    Bulk,
    /// The items kept whole: git's bookkeeping and the registries are handled with them.
    Core,
    /// Session records.
    Sessions,
}

/// The next items of `scan` (a `state/{repo}`) into `inv`, until it holds `limit` or the
/// repository is done (then false), with nothing read that pass 1 read.
fn scanner_state_repo(
    scanner: &Scanner<'_>,
    idx: &Index,
    scan: &mut inventory::StateRepoScan,
    inv: &mut Inventory,
    limit: usize,
    again: bool,
) -> bool {
    let named = |j: &str| {
        let (id, r) = idx.owner_of_job(j)?;
        let done = r.and_then(|r| idx.facts(r)).is_some_and(|f| {
            matches!(
                f.status,
                crate::store::records::SessionStatus::Completed
                    | crate::store::records::SessionStatus::Cancelled
            )
        });
        Some((id, done))
    };
    let single = |s: &str| {
        let r = idx.row(s)?;
        idx.at(r).status()?;
        match idx.jobs_of(r).as_slice() {
            [j] => Some(j.clone()),
            _ => None,
        }
    };
    let evidence = |j: &str| idx.ownerless_evidence(j);
    let skip = |j: &str| !may_have_waited(idx, j);
    let waited = |s: &str| idx.row(s).is_some_and(|r| idx.at(r).waited());
    let known = inventory::Known {
        named: &named,
        single_job: &single,
        indexed: Some(&evidence),
        skip_job: again.then_some(&skip),
        waited: again.then_some(&waited),
    };
    scan.next(scanner, inv, &known, limit)
}

/// Pass 3: whether the items of job `j`'s directories (`events/`, `dlq/`, `state/`) may belong
/// to a session whose class waited. False only when the index gives the job an owner that did
/// not wait, or one without a record: then [`Run::owner_row`] finds that owner too (a job
/// directory's item names its job, and its owner, when the scan gives one, is the index's) and
/// [`Run::batch`] drops the item. Pass 3 listed every directory of pass 2 again and made and
/// looked up every item to keep those few (issue 25: 30% of `stats`' time at 40,000 sessions).
fn may_have_waited(idx: &Index, j: &str) -> bool {
    match idx.owner_row_of_job(j) {
        Some(Some(r)) => idx.at(r).waited(),
        Some(None) => false,
        None => true,
    }
}

impl Run<'_, '_> {
    /// Stream `events/`, `logs/`, `dlq/` and `state/` in batches; `again`: only the items of
    /// sessions whose class waited (pass 3).
    fn stream(&mut self, scanner: &Scanner<'_>, again: bool) {
        for ty in [
            StorageType::Events,
            StorageType::Logs,
            StorageType::Dlq,
            StorageType::State,
        ] {
            let (top, repos) = if ty == StorageType::State {
                scanner.with_index(&self.idx).stream_state_top()
            } else {
                scanner.with_index(&self.idx).stream_top(ty)
            };
            self.batch(top, false, Role::Bulk, again);
            for repo in repos {
                let mut inv = Inventory::default();
                if ty == StorageType::State {
                    let Some(mut scan) = scanner
                        .with_index(&self.idx)
                        .stream_state_repo(&repo, &mut inv)
                    else {
                        self.batch(inv, false, Role::Bulk, again);
                        continue;
                    };
                    // A batch of BATCH_ITEMS is cut as soon as one more item is made, and the
                    // last batch takes the warnings.
                    let mut done = false;
                    loop {
                        if !done {
                            done = !scanner_state_repo(
                                &scanner.with_index(&self.idx),
                                &self.idx,
                                &mut scan,
                                &mut inv,
                                BATCH_ITEMS + 1,
                                again,
                            );
                        }
                        if done && inv.items.len() <= BATCH_ITEMS {
                            break;
                        }
                        let rest = inv.items.split_off(BATCH_ITEMS);
                        let items = std::mem::replace(&mut inv.items, rest);
                        let part = Inventory {
                            items,
                            ..Inventory::default()
                        };
                        self.batch(part, false, Role::Bulk, again);
                    }
                    self.batch(inv, false, Role::Bulk, again);
                    continue;
                }
                // Items are made a batch at a time from the repository's listing.
                let names = scanner
                    .with_index(&self.idx)
                    .stream_repo_names(ty, &repo, &mut inv);
                self.batch(inv, false, Role::Bulk, again);
                for k in (0..names.len()).step_by(BATCH_ITEMS) {
                    let mut part =
                        names.slice(Some(&self.idx), k..(k + BATCH_ITEMS).min(names.len()));
                    if again && ty != StorageType::Logs {
                        // Pass 3 takes only what waited: no item is made of a job directory
                        // whose owner did not wait (`batch` would drop it).
                        part.retain(|n| n.to_str().map_or(true, |j| may_have_waited(&self.idx, j)));
                    }
                    let mut inv = Inventory::default();
                    scanner
                        .with_index(&self.idx)
                        .stream_repo_items(ty, &repo, &part, &mut inv);
                    self.batch(inv, false, Role::Bulk, again);
                }
            }
        }
    }

    fn facts_owned(&self) -> (String, Vec<PathBuf>) {
        (self.host.clone(), self.in_use.clone())
    }

    /// The row of an item's owner, resolving it by its job first when the scan did not.
    fn owner_row(&self, it: &mut Item) -> Option<u32> {
        if it.owner.is_none() && it.kind != ItemKind::Invalid {
            if let Some(j) = &it.job {
                if let Some((id, row)) = self.idx.owner_of_job(j) {
                    it.owner = Some(id);
                    return row;
                }
                if let Some(r) = self.idx.row(j) {
                    it.owner = Some(j.clone());
                    return Some(r);
                }
                it.owner = self.mapped_now(it.repo.as_deref()?, j);
            }
        }
        self.idx.row(it.owner.as_deref()?)
    }

    /// The session a mapping written since pass 1 gives job `job` of repository `repo`
    /// (`state/{repo}/mappings/{job}.json`): a writer that started after pass 1 read the mappings
    /// writes its record, then its mapping, then its data. The deletion-time check then finds
    /// its record (safety R5), as a whole-root scan, which reads the mappings after listing the
    /// job directories, would.
    fn mapped_now(&self, repo: &str, job: &str) -> Option<String> {
        let d = self
            .root
            .open_path(&[
                std::ffi::OsStr::new("state"),
                std::ffi::OsStr::new(repo),
                std::ffi::OsStr::new("mappings"),
            ])
            .ok()?;
        let b = d
            .read_file(std::ffi::OsStr::new(&format!("{job}.json")), 1 << 20)
            .ok()?;
        let m: crate::store::records::SessionJobMapping = crate::store::records::parse(&b).ok()?;
        (m.job_id == job && crate::store::names::is_valid_id(std::ffi::OsStr::new(&m.session_id)))
            .then_some(m.session_id)
    }

    /// Measure (unless `measured`), fold, classify, plan, execute and report one batch.
    fn batch(&mut self, mut inv: Inventory, measured: bool, role: Role, again: bool) {
        let (host, in_use) = self.facts_owned();
        let facts = Facts {
            now: self.now,
            host: &host,
            in_use: &in_use,
            root_path: self.root_path,
        };
        if inv.items.is_empty() && inv.warnings.is_empty() && role != Role::Core {
            return;
        }
        let mut rows: Vec<Option<u32>> =
            inv.items.iter_mut().map(|it| self.owner_row(it)).collect();
        if again {
            // Pass 3: only what waited (everything else is done).
            let waited: Vec<bool> = rows
                .iter()
                .map(|r| r.is_some_and(|r| self.idx.at(r).waited()))
                .collect();
            let mut k = 0;
            inv.items.retain(|_| {
                k += 1;
                waited[k - 1]
            });
            rows.retain(|r| r.is_some_and(|r| self.idx.at(r).waited()));
            inv.warnings.clear();
        }
        if !measured {
            inventory::measure(self.root, &mut inv, |_| true);
            for (it, r) in inv.items.iter_mut().zip(&rows) {
                let Some(r) = *r else { continue };
                self.idx.fold_newest(r, it.newest);
                let row = self.idx.at(r).repo();
                match (&it.repo, row) {
                    (Some(repo), None) => {
                        let id = self.idx.repo_id(repo);
                        self.idx.at_mut(r).set_repo(id);
                    }
                    (None, Some(x)) if it.kind != ItemKind::Invalid => {
                        it.repo = Some(self.idx.repos[x as usize].clone());
                    }
                    _ => {}
                }
            }
        }
        // Items whose owner's class is not final wait (see the module doc). The maps are sized
        // for the batch: grown from empty, they hashed every key again at each doubling (a
        // third of the maps' hashing in a dry run of 10,000 sessions; issue 25, ninth round).
        let n = inv.items.len();
        let mut verdicts: Map<String, Verdict> =
            Map::with_capacity_and_hasher(n, Default::default());
        // The rows and ids of `verdicts`' sessions, in the order they were decided.
        let mut decided_rows: Vec<(u32, String)> = Vec::new();
        let mut waiting: Set<u32> = Default::default();
        let mut decided: Set<u32> = Set::with_capacity_and_hasher(n, Default::default());
        let mut keep = Vec::with_capacity(inv.items.len());
        for (it, r) in std::mem::take(&mut inv.items).into_iter().zip(rows) {
            let Some(r) = r else {
                keep.push(it);
                continue;
            };
            // Once an item of a session waited, all its items wait (pass 3 takes each once).
            if !again && role == Role::Bulk && self.idx.at(r).waited() {
                waiting.insert(r);
            }
            if !waiting.contains(&r) && decided.insert(r) {
                match self.idx.verdict(r, &facts) {
                    Some(v) => {
                        let id = self.idx.id(r);
                        verdicts.insert(id.clone(), v);
                        decided_rows.push((r, id));
                    }
                    None => {
                        waiting.insert(r);
                    }
                }
            }
            if waiting.contains(&r) {
                // Measured and folded already; pass 3 takes it again (memory stays flat).
                self.idx.at_mut(r).set_waited();
            } else {
                keep.push(it);
            }
        }
        inv.items = keep;
        if inv.items.is_empty() && inv.warnings.is_empty() && role != Role::Core {
            return;
        }
        // The owners' records, for the deletion-time checks (their jobs' resume locks, and that
        // the record is still what pass 1 read).
        let mut kept_worktrees = Map::default();
        // An estimate (`stats`) makes no deletion-time check: no records beside its items.
        let beside = !self.opts.estimate || role != Role::Bulk;
        // Inserted last first: the rows come in id order, and a B-tree search stops at the
        // first key of each node that is larger, so each insertion compares with about one key
        // a level instead of a dozen (with ids that share 120 characters, 18% of a dry run's
        // instructions under musl's memcmp, 5% under ours; issue 25). A bulk build
        // (`collect`) saves as much but its sort added 12 KB to the static binary.
        let mut sessions = Vec::with_capacity(if beside { decided_rows.len() } else { 0 });
        for (r, o) in decided_rows.iter().filter(|_| beside) {
            let r = *r;
            let row = self.idx.at(r);
            let mut it = Item::new(
                StorageType::Sessions,
                ItemKind::Reference,
                RelPath::new(&[
                    std::ffi::OsStr::new("sessions"),
                    std::ffi::OsStr::new(&format!("{o}.json")),
                ]),
            );
            it.owner = Some(o.clone());
            it.dev_ino = self.idx.rec_dev_ino(r);
            it.newest = row.rec_mtime();
            let item = inv.push(it);
            sessions.push((
                o.clone(),
                Session {
                    id: o.clone(),
                    record: Err(String::new()),
                    item,
                    jobs: self.idx.jobs_of(r),
                    repo: None,
                },
            ));
            if let Some(w) = self.idx.rare(r).and_then(|x| x.worktree_kept.clone()) {
                kept_worktrees.insert(o.clone(), w);
            }
        }
        for (id, s) in sessions.into_iter().rev() {
            inv.sessions.insert(id, s);
        }
        let mut eng = Engine::from_parts(
            self.root,
            self.root_path,
            self.git,
            self.now,
            self.opts,
            inv,
            verdicts,
            self.in_use.clone(),
        );
        eng.registry = role == Role::Core;
        eng.kept_worktrees = kept_worktrees;
        let plan = eng.plan();
        let real = self.mode == Mode::Real
            && (plan.contains(&Decision::Remove)
                || (self.opts.compress_after.is_some()
                    && plan.iter().zip(&eng.inv.items).any(|(d, it)| {
                        *d == Decision::TooNew
                            && matches!(it.ty, StorageType::Events | StorageType::Logs)
                    }))
                || (role == Role::Core
                    && (trash_pending(self.root) > 0
                        || stale_git_records(&eng) > 0
                        || stale_registry_entries(&eng) > 0)));
        let mode = if real { Mode::Real } else { Mode::DryRun };
        let mut rep = execute(&mut eng, &plan, mode, self.audit, &mut |_, _, _| {});
        (self.on_batch)(&eng, &plan);
        if role == Role::Core {
            self.note_kept_worktrees(&eng, &plan);
        }
        self.merge(&mut rep);
    }

    /// After the worktrees' batch: each session with a worktree that stays gets the detail its
    /// record is kept with ("the owner goes last"), as [`Engine`]'s own `decide_session` words it.
    fn note_kept_worktrees(&mut self, eng: &Engine<'_>, plan: &[Decision]) {
        for (j, w) in eng.inv.items.iter().enumerate() {
            if w.kind != ItemKind::Worktree {
                continue;
            }
            let Some(r) = w.owner.as_deref().and_then(|o| self.idx.row(o)) else {
                continue;
            };
            let why = match &plan[j] {
                Decision::Remove | Decision::Gone => {
                    if eng.outcome.get(j) == Some(&Some(false)) {
                        format!("its worktree {} is kept", w.rel())
                    } else {
                        continue;
                    }
                }
                Decision::Keep(reason, _) => {
                    format!("its worktree {} is kept ({})", w.rel(), reason.word())
                }
                Decision::TooNew => format!("its worktree {} is kept (too new)", w.rel()),
                Decision::NotSelected | Decision::OutOfScope => {
                    format!("its worktree {} is kept (not being cleaned)", w.rel())
                }
            };
            self.idx.rare_mut(r).worktree_kept.get_or_insert(why);
        }
    }

    /// Add a batch's report to the run's.
    fn merge(&mut self, rep: &mut Report) {
        let t = &mut self.total;
        t.before.merge(&rep.before);
        t.after.merge(&rep.after);
        t.removed_count.0.items += rep.removed_count.0.items;
        t.removed_count.0.bytes += rep.removed_count.0.bytes;
        t.removed_count.1 += rep.removed_count.1;
        t.compressed.append(&mut rep.compressed);
        t.compressed_count.0.items += rep.compressed_count.0.items;
        t.compressed_count.0.bytes += rep.compressed_count.0.bytes;
        t.compressed_count.1 += rep.compressed_count.1;
        t.removed.append(&mut rep.removed);
        t.kept.append(&mut rep.kept);
        t.branches_deleted.append(&mut rep.branches_deleted);
        t.branches_kept.append(&mut rep.branches_kept);
        t.errors.append(&mut rep.errors);
        t.warnings.append(&mut rep.warnings);
    }
}
