//! The second pass's producers (see `clean::stream`): the same scan as a whole-root run, one
//! type directory or one repository at a time, so that each batch can be handled and dropped
//! before the next is read.

use super::*;

impl Scanner<'_> {
    /// `state/`'s own entries (invalid names, 0.4.4 reduce checkpoints and pseudo-repositories)
    /// as one inventory, and the canonical repositories to scan one by one.
    pub fn stream_state_top(&self) -> (Inventory, Vec<OsString>) {
        let mut inv = Inventory::default();
        let mut repos = Vec::new();
        let top = [OsStr::new("state")];
        if let Some(d) = self.open(&top, &mut inv) {
            for repo in self.names(&d, &top, &mut inv) {
                if self.state_top(&repo, &mut inv).is_some() {
                    repos.push(repo);
                }
            }
        }
        (inv, repos)
    }

    /// The scan of canonical repository `state/{repo}`, to make its items a part at a time with
    /// [`StateRepoScan::next`] (`None`: not a repository name).
    pub fn stream_state_repo(&self, repo: &OsStr, inv: &mut Inventory) -> Option<StateRepoScan> {
        let r = valid_id_str(repo)?;
        Some(self.state_repo_scan(repo, r, inv))
    }

    /// A type directory's own entries (invalid names, 0.4.4 pseudo-repositories) as one
    /// inventory, and the repositories to scan one by one with [`Scanner::stream_repo`]
    /// (`events/`, `dlq/`, `logs/`).
    pub fn stream_top(&self, ty: StorageType) -> (Inventory, Vec<OsString>) {
        let mut inv = Inventory::default();
        let mut repos = Vec::new();
        let top = [OsStr::new(ty.dir())];
        if let Some(d) = self.open(&top, &mut inv) {
            for repo in self.names(&d, &top, &mut inv) {
                if ty == StorageType::Logs || self.job_dirs_top(ty, &repo, &mut inv).is_some() {
                    repos.push(repo);
                }
            }
        }
        // Pass 1 already gave these jobs to their sessions.
        inv.legacy_jobs.clear();
        (inv, repos)
    }

    /// The entries of repository `{type}/{repo}` (`events/`, `dlq/`, `logs/`), sorted, for
    /// [`Scanner::stream_repo_items`] to make items of a batch at a time (a repository's
    /// listing is names only; its items would grow with its sessions). Problems, and a
    /// repository entry judged on its own, go to `inv`.
    pub fn stream_repo_names(
        &self,
        ty: StorageType,
        repo: &OsStr,
        inv: &mut Inventory,
    ) -> NameList {
        let names = if ty == StorageType::Logs {
            self.logs_names(repo, inv)
        } else if valid_id_str(repo).is_some() {
            self.job_dirs_names(ty, repo, inv)
        } else {
            None
        };
        names.unwrap_or_default()
    }

    /// The items of entries `names` of repository `{type}/{repo}` (from
    /// [`Scanner::stream_repo_names`]).
    pub fn stream_repo_items(
        &self,
        ty: StorageType,
        repo: &OsStr,
        names: &[OsString],
        inv: &mut Inventory,
    ) {
        if ty == StorageType::Logs {
            self.log_items(repo, names, inv);
        } else if let Some(r) = valid_id_str(repo) {
            self.job_dir_items(ty, repo, r, names, inv);
        }
    }

    /// The items of entries `names` of `sessions/`, records unread (pass 1 read them: see
    /// `clean::index`): each record belongs to its session, in its session's repository.
    pub fn session_items(&self, names: &[OsString]) -> Inventory {
        let mut inv = Inventory::default();
        for name in names {
            let Some((mut it, id)) = self.session_entry(name, &mut inv) else {
                continue;
            };
            if let Some(x) = self.index {
                it.repo = x
                    .row(id)
                    .and_then(|r| x.at(r).repo())
                    .map(|k| x.repos[k as usize].clone());
            }
            inv.push(it);
        }
        inv
    }
}
