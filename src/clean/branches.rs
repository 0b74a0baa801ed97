//! git's bookkeeping after worktrees go: `git worktree prune` per repository, and deletion of
//! the removed worktrees' own branches when another remaining branch contains their tip.

use super::inventory::{Item, ItemKind};
use super::plan::has_moved_worktree;
use super::*;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Prune git's bookkeeping in every repository that lost a worktree, then delete the removed
/// worktrees' own `prodigy-*`/`agent-*` branches that are fully merged into another branch.
pub(super) fn finish_worktrees(
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
pub(super) fn job_ids_of(eng: &Engine<'_>, it: &Item) -> Vec<String> {
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
                    .map(crate::sort::collect_map)
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
        crate::sort::sort_by_key(&mut others, |b| {
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
