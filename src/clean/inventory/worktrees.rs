//! The `worktrees/` part of the scan: worktree directories, their git facts (`.git` file, git's
//! worktree list, nested agents, 0.4.4 metadata) and the repositories session records name.

use super::*;

impl Scanner<'_> {
    /// Scan `worktrees/` and ask git about the repositories its worktrees belong to. Returns
    /// the common git directories asked (whether git answered or not).
    pub(super) fn scan_worktrees(&self, inv: &mut Inventory) -> BTreeSet<PathBuf> {
        let ty = StorageType::Worktrees;
        let top = [OsStr::new("worktrees")];
        let Some(d) = self.open(&top, inv) else {
            return BTreeSet::new();
        };
        let mut by_common: BTreeMap<PathBuf, Vec<usize>> = BTreeMap::new();
        for repo in self.names(&d, &top, inv) {
            let Some(r) = valid_id_str(&repo).map(str::to_string) else {
                self.push_invalid(inv, ty, comps(&[top[0], &repo]), "not a repository name");
                continue;
            };
            let pseudo = self.pseudo_owner(&r, inv);
            let p2 = [top[0], repo.as_os_str()];
            let Some(rd) = self.open(&p2, inv) else {
                continue;
            };
            let metas = self.legacy_metas(&p2, inv);
            for name in self.names(&rd, &p2, inv) {
                if name == ".metadata" || name == ".gitignore" {
                    continue;
                }
                let parts = comps(&[top[0], &repo, &name]);
                let Some(n) = valid_id_str(&name).map(str::to_string) else {
                    self.push_invalid(inv, ty, parts, "not a worktree name");
                    continue;
                };
                let idx = self.push_worktree(
                    inv,
                    parts,
                    pseudo.is_none().then(|| r.clone()),
                    &mut by_common,
                );
                if let Some(o) = &pseudo {
                    inv.items[idx].owner = Some(o.clone());
                }
                if let Some((mparts, meta)) = metas.get(&n) {
                    inv.items[idx].git.as_mut().expect("worktree").legacy_meta =
                        Some((mparts.clone(), meta.clone()));
                }
                // Canonical MapReduce agents live inside their parent's worktree (seed 004).
                let pw = [top[0], repo.as_os_str(), name.as_os_str()];
                let Ok(wd) = self.root.open_path(&pw) else {
                    continue;
                };
                let mut kids = Vec::new();
                for child in wd.names().unwrap_or_default() {
                    // Canonical agents are `agent-*` (seed 004). Any other directory with a `.git`
                    // file (a submodule checkout) is part of this worktree, judged by its status.
                    if !is_valid_id(&child)
                        || !child.to_str().is_some_and(|c| c.starts_with("agent-"))
                    {
                        continue;
                    }
                    let Ok(cd) = wd.open_dir(&child) else {
                        continue;
                    };
                    if cd
                        .stat(OsStr::new(".git"))
                        .map(|m| m.kind == Kind::File)
                        .unwrap_or(false)
                    {
                        let cparts = comps(&[top[0], &repo, &name, &child]);
                        let c = self.push_worktree(
                            inv,
                            cparts,
                            pseudo.is_none().then(|| r.clone()),
                            &mut by_common,
                        );
                        inv.items[c].git.as_mut().expect("worktree").parent = Some(idx);
                        kids.push(c);
                    }
                }
                inv.items[idx].git.as_mut().expect("worktree").children = kids;
            }
        }
        let asked = by_common.keys().cloned().collect();
        self.resolve_git(inv, by_common);
        asked
    }

    fn legacy_metas(
        &self,
        p2: &[&OsStr],
        inv: &mut Inventory,
    ) -> HashMap<String, (RelPath, LegacyWorktreeMeta)> {
        let mut out = HashMap::new();
        let p3 = [p2[0], p2[1], OsStr::new(".metadata")];
        let Ok(md) = self.root.open_path(&p3) else {
            return out;
        };
        for (f, listed) in self.listing(&md, &p3, inv) {
            let Some(stem) = strip_valid(&f, ".json") else {
                continue;
            };
            if let Ok(m) = self.read_json::<LegacyWorktreeMeta>(&md, &f, listed) {
                out.insert(stem.to_string(), (comps(&[p3[0], p3[1], p3[2], &f]), m));
            }
        }
        out
    }

    fn push_worktree(
        &self,
        inv: &mut Inventory,
        parts: RelPath,
        repo: Option<String>,
        by_common: &mut BTreeMap<PathBuf, Vec<usize>>,
    ) -> usize {
        let mut it = Item::new(StorageType::Worktrees, ItemKind::Worktree, parts);
        it.repo = repo;
        let mut g = WorktreeGit::default();
        let refs = it.comps.parts();
        if let Ok(d) = self.root.open_path(&refs) {
            match d.stat(OsStr::new(".git")) {
                Ok(m) if m.kind == Kind::File => {
                    match d.read_listed(OsStr::new(".git"), 64 << 10, Some(m.kind)) {
                        Ok(b) => match common_dir_of(&b, &self.root_path.join(it.rel())) {
                            Ok((admin, c)) => {
                                by_common
                                    .entry(c.clone())
                                    .or_default()
                                    .push(inv.items.len());
                                g.common = Some(c);
                                g.admin = Some(admin);
                            }
                            Err(e) => g.error = Some(e),
                        },
                        Err(e) => {
                            g.error = Some(format!(
                                "cannot read .git: {}",
                                crate::error::describe_io(&e)
                            ))
                        }
                    }
                }
                Ok(m) if m.kind == Kind::Dir => {
                    g.error =
                        Some("has its own .git directory (a repository, not a worktree)".into())
                }
                // No .git: plain data under worktrees/, judged by age (issue: never through git).
                _ => {}
            }
        }
        it.git = Some(Box::new(g));
        inv.push(it)
    }

    /// Ask each repository once for its worktree list and match our directories to it.
    fn resolve_git(&self, inv: &mut Inventory, by_common: BTreeMap<PathBuf, Vec<usize>>) {
        for (common, idxs) in by_common {
            let list = match self.git.worktree_list(&common) {
                Ok(l) => l,
                Err(e) => {
                    for i in idxs {
                        inv.items[i].git.as_mut().expect("worktree").error = Some(e.to_string());
                    }
                    continue;
                }
            };
            if list.is_empty() {
                // Every repository lists at least its main working tree: an empty answer is odd,
                // and odd means keep (safety R4).
                for i in idxs {
                    inv.items[i].git.as_mut().expect("worktree").error = Some(
                        "`git worktree list` listed nothing, not even the main working tree".into(),
                    );
                }
                continue;
            }
            let repo_name = list
                .first()
                .and_then(|m| {
                    if m.bare {
                        common.file_name()
                    } else {
                        m.path.file_name()
                    }
                })
                .and_then(|n| valid_id_str(n).map(str::to_string));
            inv.repos.insert(
                common.clone(),
                RepoWorktrees {
                    name: repo_name.clone(),
                    entries: list.clone(),
                },
            );
            let by_path: HashMap<&Path, &WorktreeEntry> =
                list.iter().map(|e| (e.path.as_path(), e)).collect();
            for i in idxs {
                let path = self.root_path.join(inv.items[i].rel());
                let entry = by_path.get(path.as_path()).copied().or_else(|| {
                    // git records the path it was given; the root may have been reached through a
                    // symlink then. Compare by device and inode (same-file).
                    list.iter()
                        .skip(1)
                        .find(|e| same_file::is_same_file(&e.path, &path).unwrap_or(false))
                });
                let g = inv.items[i].git.as_mut().expect("worktree");
                g.repo_name = repo_name.clone();
                match entry {
                    Some(e) if list.first().map(|m| m.path == e.path).unwrap_or(false) => {
                        g.error =
                            Some("is the repository's main working tree; never touched".into());
                    }
                    Some(e) => g.entry = Some(e.clone()),
                    None => {
                        // Not registered. If the administrative directory its `.git` names
                        // records a path that no longer exists, this is a worktree moved by
                        // hand (git lists it as prunable at the old path): it may hold work, so
                        // keep it. Otherwise it is plain data, judged by age, never through git.
                        let recorded = g
                            .admin
                            .as_ref()
                            .and_then(|a| std::fs::read_to_string(a.join("gitdir")).ok())
                            .map(|t| PathBuf::from(t.trim()));
                        match recorded {
                            Some(r) if std::fs::symlink_metadata(&r).is_err() => {
                                g.moved = true;
                                g.error = Some(format!(
                                    "a worktree moved by hand: git records it at `{}`; run `git worktree repair` in its repository",
                                    r.parent().unwrap_or(&r).display()
                                ));
                            }
                            _ => g.common = None,
                        }
                    }
                }
            }
        }
    }

    /// Add to `inv.repos` the repositories session records name (`named`, from
    /// `metadata.worktree.repository`) that no worktree under the root led to (`asked`), so that
    /// git's records of worktrees under the root whose directory is gone are found (and pruned)
    /// there too. A path is only used to ask git, and only when git confirms it is a
    /// repository's main working tree. A path that no longer exists is skipped silently (the
    /// repository and its bookkeeping are gone); any other doubt is a warning and the repository
    /// is left alone (safety R4).
    pub(super) fn resolve_record_repos(
        &self,
        inv: &mut Inventory,
        named: BTreeMap<PathBuf, String>,
        asked: &BTreeSet<PathBuf>,
    ) {
        for (path, sid) in named {
            // Already listed through one of its worktrees: no git call needed.
            if inv
                .repos
                .values()
                .any(|r| r.entries.first().is_some_and(|m| m.path == path))
            {
                continue;
            }
            match self.record_repo(&path, asked, inv) {
                Ok(Some((common, rw))) => {
                    inv.repos.insert(common, rw);
                }
                Ok(None) => {}
                Err(why) => inv.warnings.push(format!(
                    "session {sid}: metadata.worktree.repository `{}` {why}; {NOT_CHECKED}",
                    printable(path.as_os_str())
                )),
            }
        }
    }

    /// The common git directory and worktree list of the repository whose main working tree is
    /// `path`; `None` when `path` is gone or the repository was already asked. Errors say why
    /// `path` is not usable.
    fn record_repo(
        &self,
        path: &Path,
        asked: &BTreeSet<PathBuf>,
        inv: &Inventory,
    ) -> Result<Option<(PathBuf, RepoWorktrees)>, String> {
        match std::fs::metadata(path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(format!(
                    "cannot be read ({})",
                    crate::error::describe_io(&e)
                ))
            }
            Ok(m) if !m.is_dir() => return Err("is not a directory".into()),
            Ok(_) => {}
        }
        let out = self
            .git
            .run(
                Some(path),
                &[
                    OsStr::new("rev-parse"),
                    OsStr::new("--path-format=absolute"),
                    OsStr::new("--git-common-dir"),
                ],
            )
            .map_err(|e| format!("could not be checked ({e})"))?;
        let common = String::from_utf8(out)
            .ok()
            .and_then(|s| s.strip_suffix('\n').map(str::to_string))
            .ok_or("could not be checked (git named no common git directory)")?;
        let common = std::fs::canonicalize(&common).map_err(|e| {
            format!(
                "names `{}` as its git directory, which cannot be resolved ({})",
                printable(OsStr::new(&common)),
                crate::error::describe_io(&e)
            )
        })?;
        // Asked through a worktree under the root, answered or not: that answer stands (a
        // failure there already keeps its worktrees; asking again could not make pruning safe).
        if asked.contains(&common) || inv.repos.contains_key(&common) {
            return Ok(None);
        }
        let list = self
            .git
            .worktree_list(&common)
            .map_err(|e| format!("could not be checked ({e})"))?;
        let main = list
            .first()
            .ok_or("has no main working tree (`git worktree list` listed nothing)")?;
        if main.bare || !same_file::is_same_file(&main.path, path).unwrap_or(false) {
            return Err(format!(
                "is not a repository's main working tree (git's is `{}`)",
                printable(main.path.as_os_str())
            ));
        }
        let name = main
            .path
            .file_name()
            .and_then(|n| valid_id_str(n).map(str::to_string));
        Ok(Some((
            common,
            RepoWorktrees {
                name,
                entries: list,
            },
        )))
    }
}

/// The common git directory of a worktree from its `.git` file content (`gitdir: PATH`, then
/// `PATH/commondir`). Read only; the result is used to ask git, never to delete.
pub(super) fn common_dir_of(dotgit: &[u8], worktree: &Path) -> Result<(PathBuf, PathBuf), String> {
    let text = std::str::from_utf8(dotgit).map_err(|_| ".git file is not UTF-8".to_string())?;
    let gitdir = text
        .lines()
        .find_map(|l| l.strip_prefix("gitdir:"))
        .map(str::trim)
        .ok_or_else(|| ".git file has no `gitdir:` line".to_string())?;
    let gitdir = worktree.join(gitdir);
    let common = match std::fs::read_to_string(gitdir.join("commondir")) {
        Ok(c) => gitdir.join(c.trim()),
        Err(e) => {
            return Err(format!(
                "`{}` is not a worktree git directory ({})",
                gitdir.display(),
                crate::error::describe_io(&e)
            ))
        }
    };
    std::fs::canonicalize(&common)
        .map(|c| (gitdir, c))
        .map_err(|e| format!("`{}`: {}", common.display(), crate::error::describe_io(&e)))
}
