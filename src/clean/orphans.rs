//! The orphaned-worktree registry (storage-format §4.7): recording a worktree whose removal
//! failed, reading the registries, and dropping entries whose directory is gone.

use super::inventory::Item;
use super::*;
use crate::store::fsops::{self, Dir};

/// Storage-format §4.7: a worktree whose removal failed goes into
/// `orphaned_worktrees/{repo}/{job_id}.json`, merged with what is there, written crash-safely.
pub(super) fn record_orphan(eng: &Engine<'_>, it: &Item, cause: &str, rep: &mut Report) {
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
    crate::sort::sort(&mut repos);
    for repo in repos {
        let Some(r) = crate::store::names::valid_id_str(&repo) else {
            continue;
        };
        if matches!(scope, Scope::Repo(want) if want != r) {
            continue;
        }
        let Ok(rd) = d.open_dir(&repo) else { continue };
        let mut files = rd.names().unwrap_or_default();
        crate::sort::sort(&mut files);
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
pub(super) fn prune_orphan_registry(eng: &Engine<'_>, mode: Mode, rep: &mut Report) {
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
