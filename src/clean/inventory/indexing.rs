//! The first pass of the streaming engine (issue 15): the [`Index`] of every session, and the
//! few items kept whole for the run (worktrees with their git facts, resume locks, registry
//! temp files). Reads the session records; where a record does not already say it, the mappings
//! that tell which session owns a job; and the `job-state.json` and checkpoints of every job whose
//! owner is not Completed or Cancelled, for its resumability (safety §1).

use super::*;
use crate::clean::classify::{self, Facts, RecordFacts};
use crate::clean::index::Index;

impl Scanner<'_> {
    /// This scanner, knowing the sessions of `idx`.
    pub(crate) fn with_index<'b>(&'b self, idx: &'b Index) -> Scanner<'b> {
        Scanner {
            root: self.root,
            root_path: self.root_path,
            git: self.git,
            host: self.host.clone(),
            now: self.now,
            lock_lease: self.lock_lease,
            index: Some(idx),
        }
    }

    /// Build the index and the inventory of items kept whole (`core`, measured, owners
    /// resolved, their evidence folded into the index). Warnings go to `core.warnings`.
    pub fn build_index(&self, f: &Facts<'_>) -> (Index, Inventory) {
        let mut idx = Index::default();
        let mut core = Inventory::default();
        let mut named_repos = BTreeMap::new();
        // Sessions, listed without holding the listing (a record is read as its name comes).
        let top = [OsStr::new("sessions")];
        if let Some(d) = self.open(&top, &mut core) {
            let listed = d.for_each_listed(|name, listed| {
                let Some(id) = strip_valid(name, ".json")
                    .filter(|_| !crate::store::atomic::is_temp_name(name))
                else {
                    // Temp files and invalid names are items of pass 2 (judged on their own).
                    idx.other_session_names.push(name.to_os_string());
                    return;
                };
                let mut rec = None;
                let (facts, jobs, repo) = self.read_session(
                    &d,
                    name,
                    listed,
                    id,
                    &mut core.warnings,
                    &mut named_repos,
                    &mut rec,
                );
                if rec.is_none() {
                    rec = d.stat(name).ok().map(|m| (m.dev, m.ino, m.mtime_secs));
                }
                let facts = facts.map(|fa| RecordFacts::of(&fa, &self.host));
                let row = idx.len() as u32;
                idx.add_session(id, facts, rec, repo.as_deref());
                for j in jobs {
                    idx.add_job(&j, row);
                }
            });
            if let Err(e) = listed {
                core.warnings.push(format!(
                    "cannot list `sessions`: {}",
                    crate::error::describe_io(&e)
                ));
            }
            crate::sort::sort(&mut idx.other_session_names);
        }
        idx.seal();
        // 0.4.4 pseudo-repositories name a session's MapReduce jobs.
        let mut scratch = Inventory::default();
        let known = self.with_index(&idx);
        let mut pseudo_state: Vec<String> = Vec::new();
        for ty in [StorageType::Events, StorageType::Dlq, StorageType::State] {
            let t = [OsStr::new(ty.dir())];
            let Some(d) = known.open(&t, &mut scratch) else {
                continue;
            };
            for repo in known.names(&d, &t, &mut scratch) {
                let Some(r) = valid_id_str(&repo) else {
                    continue;
                };
                if known.pseudo_owner(r, &scratch).is_none() {
                    continue;
                }
                if ty == StorageType::State {
                    // 0.4.4 standard workflows checkpoint here (storage-format §4.4).
                    pseudo_state.push(r.to_string());
                    continue;
                }
                let p2 = [t[0], repo.as_os_str()];
                if let Some(pd) = known.open(&p2, &mut scratch) {
                    for job in known.names(&pd, &p2, &mut scratch) {
                        if let Some(j) = valid_id_str(&job).filter(|j| j.starts_with("mapreduce-"))
                        {
                            scratch.legacy_jobs.push((r.to_string(), j.to_string()));
                        }
                    }
                }
            }
        }
        drop(known);
        for (sid, j) in std::mem::take(&mut scratch.legacy_jobs) {
            if let Some(r) = idx.row(&sid) {
                idx.add_job(&j, r);
            }
        }
        idx.seal_jobs();
        // state/: owners a record does not already give (mappings, `job-state.json`) and the
        // jobs' resumability, read as a whole-root scan reads them (see `Scanner::scan_state`).
        let t = [OsStr::new("state")];
        if let Some(d) = self.open(&t, &mut scratch) {
            for repo in self.names(&d, &t, &mut scratch) {
                let Some(r) = valid_id_str(&repo) else {
                    continue;
                };
                if r == "reduce_checkpoints" || idx.row(r).is_some() || is_legacy_session_id(r) {
                    continue;
                }
                let p3 = [t[0], repo.as_os_str(), OsStr::new("mappings")];
                if let Some(md) = self.open(&p3, &mut scratch) {
                    // Listed without holding the listing (issue 25): only the files to read
                    // are kept, then read in listing order (the first mapping of a job wins).
                    let mut read: Vec<(OsString, Listed)> = Vec::new();
                    let listed = md.for_each_listed(|f, listed| {
                        let Some(stem) = strip_valid(f, ".json") else {
                            return;
                        };
                        // Paired by its name (see scan_state): nothing to learn.
                        if idx.job_owner(stem).is_some() || idx.row(stem).is_some() {
                            return;
                        }
                        read.push((f.to_os_string(), listed));
                    });
                    if let Err(e) = listed {
                        read.clear();
                        scratch.warnings.push(crate::error::describe_io(&e));
                    }
                    crate::sort::sort_unstable_by(&mut read, |a, b| a.0.cmp(&b.0));
                    for (f, listed) in read {
                        let Some(stem) = strip_valid(&f, ".json") else {
                            continue;
                        };
                        if let Ok(m) = self.read_json::<SessionJobMapping>(&md, &f, listed) {
                            if (m.job_id == stem || m.session_id == stem)
                                && is_valid_id(OsStr::new(&m.job_id))
                                && is_valid_id(OsStr::new(&m.session_id))
                                && idx.owner_of_job(&m.job_id).is_none()
                            {
                                idx.set_job_owner(&m.job_id, &m.session_id);
                            }
                        }
                    }
                }
                let p4 = [
                    t[0],
                    repo.as_os_str(),
                    OsStr::new("mapreduce"),
                    OsStr::new("jobs"),
                ];
                let Some(jd) = self.open(&p4, &mut scratch) else {
                    continue;
                };
                let names = self.name_list_in(Some(&idx), &jd, &p4, &mut scratch);
                for k in 0..names.len() {
                    let job = names.get(Some(&idx), k);
                    let Some(j) = valid_id_str(&job) else {
                        continue;
                    };
                    let owner = idx.owner_of_job(j);
                    let done = owner.as_ref().and_then(|(_, r)| *r).is_some_and(|r| {
                        idx.facts(r).is_some_and(|fa| {
                            matches!(
                                fa.status,
                                SessionStatus::Completed | SessionStatus::Cancelled
                            )
                        })
                    });
                    if done {
                        continue;
                    }
                    let p5 = [p4[0], p4[1], p4[2], p4[3], job.as_os_str()];
                    let (js_owner, resumable) = self.job_state(&jd, &p5, &mut scratch);
                    // As in a whole-root scan, the owner `job-state.json` names comes first.
                    let owner = match js_owner {
                        Some(o) if owner.as_ref().map(|(id, _)| id) != Some(&o) => {
                            idx.set_job_owner(j, &o);
                            Some((o.clone(), idx.row(&o)))
                        }
                        _ => owner,
                    };
                    if let Some(why) = resumable {
                        match owner.and_then(|(_, r)| r) {
                            Some(row) => idx.add_job_evidence(row, r, j, &why),
                            None => idx.set_ownerless_evidence(j, why),
                        }
                    }
                }
            }
        }
        for sid in pseudo_state {
            let p = [t[0], OsStr::new(&sid), OsStr::new("checkpoints")];
            if let Some(why) = self.legacy_checkpoints(&p, &mut scratch) {
                if let Some(r) = idx.row(&sid) {
                    idx.add_evidence(r, &why);
                }
            }
        }
        // Pass 2 meets the same problems in `state/` and reports them then.
        drop(scratch);
        // The items kept whole.
        let scanner = self.with_index(&idx);
        let asked = scanner.scan_worktrees(&mut core);
        scanner.resolve_record_repos(&mut core, named_repos, &asked);
        scanner.scan_locks(&mut core);
        scanner.scan_registry_temps(&mut core);
        resolve_core_owners(&idx, &mut core);
        measure(self.root, &mut core, |_| true);
        for it in &core.items {
            let Some(r) = it.owner.as_deref().and_then(|o| idx.row(o)) else {
                continue;
            };
            idx.fold_newest(r, it.newest);
            if idx.at(r).repo().is_none() {
                if let Some(repo) = it
                    .git
                    .as_ref()
                    .and_then(|g| g.repo_name.clone())
                    .or_else(|| it.repo.clone())
                {
                    let id = idx.repo_id(&repo);
                    idx.at_mut(r).set_repo(id);
                }
            }
            classify::fold(&mut idx.rare_mut(r).owned, it, f);
        }
        idx.compact();
        (idx, core)
    }
}

/// Owners and repositories of the items kept whole, as [`Scanner::resolve_owners`] finds them:
/// a worktree belongs to its parent's owner or to the session it is named after (a failed
/// agent's `{session_id}.agent-{fid}` to that session), a lock to its job's session (or the
/// session it is named after).
fn resolve_core_owners(idx: &Index, inv: &mut Inventory) {
    let n = inv.items.len();
    for i in 0..n {
        if inv.items[i].owner.is_some() || inv.items[i].kind == ItemKind::Invalid {
            continue;
        }
        let owner = match inv.items[i].kind {
            ItemKind::Worktree => {
                let name = inv.items[i].name();
                let parent_owner = inv.items[i]
                    .git
                    .as_ref()
                    .and_then(|g| g.parent)
                    .and_then(|p| inv.items[p].owner.clone());
                parent_owner
                    .or_else(|| super::worktree_owner_by_name(&name, |s| idx.row(s).is_some()))
            }
            _ => inv.items[i].job.as_ref().and_then(|j| {
                idx.owner_of_job(j)
                    .map(|(id, _)| id)
                    .or_else(|| idx.row(j).is_some().then(|| j.clone()))
            }),
        };
        inv.items[i].owner = owner;
    }
    for i in 0..n {
        if let Some(p) = inv.items[i].git.as_ref().and_then(|g| g.parent) {
            if inv.items[i].owner.is_none() {
                inv.items[i].owner = inv.items[p].owner.clone();
            }
        }
    }
    for it in &mut inv.items {
        if it.repo.is_none() {
            it.repo = it.git.as_ref().and_then(|g| g.repo_name.clone());
        }
        if it.repo.is_none() {
            if let Some(r) = it.owner.as_deref().and_then(|o| idx.row(o)) {
                it.repo = idx.at(r).repo().map(|x| idx.repos[x as usize].clone());
            }
        }
    }
}
