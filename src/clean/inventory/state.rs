//! The `state/` part of the scan (storage-format §4.4): MapReduce job directories with their
//! owner (`job-state.json`) and resumability (a checkpoint that parses), session↔job mappings,
//! and Prodigy 0.4.4's workflow checkpoints.

use super::*;

/// A lookup by id, for [`Known`].
pub type Lookup<'k> = &'k dyn Fn(&str) -> Option<String>;

/// What the scan of `state/` may know without reading (see [`Scanner::scan_state`]).
pub struct Known<'k> {
    /// A job a readable record names: its owner, and whether that owner is Completed or
    /// Cancelled (then none of its checkpoints is read).
    pub named: &'k dyn Fn(&str) -> Option<(String, bool)>,
    /// A session whose readable record names exactly one job: that job.
    pub single_job: Lookup<'k>,
    /// The streaming engine's pass 1 read every job's `job-state.json` and checkpoints: none is
    /// read again, and this gives an ownerless job's resumability evidence.
    pub indexed: Option<Lookup<'k>>,
}

impl Scanner<'_> {
    pub(super) fn scan_state(&self, inv: &mut Inventory) {
        // Jobs named by a readable session record (`mapreduce_data.job_id`): their owner is
        // known without reading `job-state.json` or a mapping (issue 15: read only what
        // classification needs). The flag: the owner is Completed or Cancelled, so no
        // checkpoint of the job can make it resumable (safety §1) and none is read.
        let named: HashMap<String, (String, bool)> = inv
            .sessions
            .values()
            .filter_map(|s| s.record.as_ref().ok().map(|r| (s, r)))
            .flat_map(|(s, r)| {
                let done = matches!(
                    r.status,
                    SessionStatus::Completed | SessionStatus::Cancelled
                );
                s.jobs
                    .iter()
                    .map(move |j| (j.clone(), (s.id.clone(), done)))
            })
            .collect();
        let single: HashMap<String, String> = inv
            .sessions
            .values()
            .filter(|s| s.record.is_ok())
            .filter_map(|s| match s.jobs.as_slice() {
                [j] => Some((s.id.clone(), j.clone())),
                _ => None,
            })
            .collect();
        let known = Known {
            named: &|j| named.get(j).cloned(),
            single_job: &|s| single.get(s).cloned(),
            indexed: None,
        };
        let top = [OsStr::new("state")];
        let Some(d) = self.open(&top, inv) else {
            return;
        };
        for repo in self.names(&d, &top, inv) {
            if let Some(r) = self.state_top(&repo, inv) {
                self.scan_state_repo(&repo, &r, inv, &known);
            }
        }
    }

    /// One entry `state/{repo}`: a canonical repository's name is returned for
    /// [`Scanner::scan_state_repo`]; anything else (an invalid name, 0.4.4's reduce checkpoints,
    /// a 0.4.4 pseudo-repository with its workflow checkpoints) is pushed as one item.
    pub(super) fn state_top(&self, repo: &OsStr, inv: &mut Inventory) -> Option<String> {
        let ty = StorageType::State;
        let top = [OsStr::new("state")];
        let Some(r) = valid_id_str(repo).map(str::to_string) else {
            self.push_invalid(inv, ty, comps(&[top[0], repo]), "not a repository name");
            return None;
        };
        if r == "reduce_checkpoints" {
            let mut it = Item::new(ty, ItemKind::Unrecognized, comps(&[top[0], repo]));
            it.rare_mut().note =
                Some("0.4.4 reduce checkpoints are not understood by this version".into());
            inv.push(it);
            return None;
        }
        if let Some(owner) = self.pseudo_owner(&r, inv) {
            let mut it = Item::new(ty, ItemKind::Data, comps(&[top[0], repo]));
            it.owner = Some(owner);
            // 0.4.4 standard workflows checkpoint here (storage-format §4.4).
            it.set_resumable(
                self.legacy_checkpoints(&[top[0], repo, OsStr::new("checkpoints")], inv),
            );
            inv.push(it);
            return None;
        }
        Some(r)
    }

    /// Start the scan of canonical repository `state/{repo}` (`r`: its name): its entries are
    /// listed, and [`StateRepoScan::next`] makes their items.
    pub(super) fn state_repo_scan(
        &self,
        repo: &OsStr,
        r: &str,
        inv: &mut Inventory,
    ) -> StateRepoScan {
        let p2 = [OsStr::new("state"), repo];
        let subs = match self.open(&p2, inv) {
            Some(rd) => self.names(&rd, &p2, inv),
            None => Vec::new(),
        };
        StateRepoScan {
            repo: repo.to_os_string(),
            r: r.to_string(),
            subs: subs.into_iter(),
            jobs: None,
            pairs: Pairs::default(),
        }
    }

    /// All the items of canonical repository `state/{repo}` (`r`: its name), at once.
    pub(super) fn scan_state_repo(
        &self,
        repo: &OsStr,
        r: &str,
        inv: &mut Inventory,
        known: &Known<'_>,
    ) {
        let mut scan = self.state_repo_scan(repo, r, inv);
        while scan.next(self, inv, known, usize::MAX) {}
    }
}

/// The mapping files of `state/{repo}/mappings/` that pair a job with a session, in listing
/// order: each is named `{job}.json` or `{session}.json`. The ids are kept in one string, and 12
/// bytes a file besides (two boxed ids a file raised the peak RSS of a dry run of S4, 15,000
/// jobs and 30,000 mapping files a repository, by 2.1 MB).
#[derive(Default)]
struct Pairs {
    ids: String,
    files: Vec<MappingFile>,
    /// Indices into `files` sorted by job (stably: a job's files in listing order).
    by_job: Vec<u32>,
}

/// One mapping file: its job and session ids at `off` in [`Pairs::ids`] (valid ids are at most
/// 128 bytes).
struct MappingFile {
    off: u32,
    job_len: u8,
    session_len: u8,
    /// Named after its job (else after its session).
    by_job: bool,
    /// Attached to its job's item already.
    taken: bool,
}

impl Pairs {
    /// Add a file pairing valid ids `job` and `session`.
    fn push(&mut self, job: &str, session: &str, by_job: bool) {
        let off = self.ids.len() as u32;
        self.ids.push_str(job);
        self.ids.push_str(session);
        self.files.push(MappingFile {
            off,
            job_len: job.len() as u8,
            session_len: session.len() as u8,
            by_job,
            taken: false,
        });
    }

    fn job(&self, i: u32) -> &str {
        let m = &self.files[i as usize];
        &self.ids[m.off as usize..][..m.job_len as usize]
    }

    fn session(&self, i: u32) -> &str {
        let m = &self.files[i as usize];
        &self.ids[m.off as usize + m.job_len as usize..][..m.session_len as usize]
    }

    /// Sort [`Pairs::by_job`], once every file is in.
    fn seal(&mut self) {
        let mut by_job: Vec<u32> = (0..self.files.len() as u32).collect();
        crate::sort::sort_by(&mut by_job, |&a, &b| self.job(a).cmp(self.job(b)));
        self.by_job = by_job;
    }

    /// The path of file `i`.
    fn parts(&self, repo: &OsStr, i: u32) -> RelPath {
        let m = &self.files[i as usize];
        let id = if m.by_job {
            self.job(i)
        } else {
            self.session(i)
        };
        let name = format!("{id}.json");
        comps(&[
            OsStr::new("state"),
            repo,
            OsStr::new("mappings"),
            OsStr::new(&name),
        ])
    }
}

/// The scan of one canonical repository `state/{repo}` (storage-format §4.4), a part at a time
/// (issue 15: a repository's items would grow with its sessions). Its entries are taken in
/// listing order (sorted: `mappings` comes before `mapreduce`, so a job's mapping files are
/// known when its item is made); each job directory is one item, its mapping files go with it,
/// and the mapping files of a job without a directory are one item, made last. What is kept
/// between parts: the job directories' names and the pairs the mapping files make.
pub struct StateRepoScan {
    repo: OsString,
    r: String,
    /// Entries of `state/{repo}` not scanned yet.
    subs: std::vec::IntoIter<OsString>,
    /// `state/{repo}/mapreduce/jobs`, open, its entries, and the next to make an item of.
    jobs: Option<(Dir, Vec<OsString>, usize)>,
    /// The mapping files that pair a job with a session.
    pairs: Pairs,
}

impl StateRepoScan {
    /// Make items into `inv` until it holds `limit` items or more; false once the repository is
    /// done.
    pub fn next(
        &mut self,
        scanner: &Scanner<'_>,
        inv: &mut Inventory,
        known: &Known<'_>,
        limit: usize,
    ) -> bool {
        loop {
            if inv.items.len() >= limit {
                return true;
            }
            if let Some((jd, names, k)) = self.jobs.take() {
                if let Some(job) = names.get(k) {
                    self.job_item(scanner, &jd, job, inv, known);
                    self.jobs = Some((jd, names, k + 1));
                    continue;
                }
            }
            match self.subs.next() {
                Some(sub) => self.sub(scanner, &sub, inv, known),
                None => {
                    self.loose(inv);
                    return false;
                }
            }
        }
    }

    /// One entry `state/{repo}/{sub}`.
    fn sub(&mut self, s: &Scanner<'_>, sub: &OsStr, inv: &mut Inventory, known: &Known<'_>) {
        let ty = StorageType::State;
        let repo = self.repo.as_os_str();
        let top = OsStr::new("state");
        match sub.to_str() {
            Some("mapreduce") => {
                let p4 = [top, repo, OsStr::new("mapreduce"), OsStr::new("jobs")];
                if let Some(jd) = s.open(&p4, inv) {
                    let names = s.names(&jd, &p4, inv);
                    self.jobs = Some((jd, names, 0));
                }
            }
            Some("mappings") => {
                let p3 = [top, repo, OsStr::new("mappings")];
                let Some(md) = s.open(&p3, inv) else {
                    return;
                };
                for (f, listed) in s.listing(&md, &p3, inv) {
                    let parts = comps(&[p3[0], p3[1], p3[2], &f]);
                    if crate::store::atomic::is_temp_name(&f) {
                        inv.push(Item::new(ty, ItemKind::Temp, parts));
                        continue;
                    }
                    let Some(stem) = strip_valid(&f, ".json").map(str::to_string) else {
                        s.push_invalid(inv, ty, parts, "not a `{id}.json` mapping name");
                        continue;
                    };
                    // A mapping named after a job or a session that a record pairs is that
                    // pair: it is not read.
                    let pair = (known.named)(&stem)
                        .map(|(o, _)| (stem.clone(), o))
                        .or_else(|| (known.single_job)(&stem).map(|j| (j, stem.clone())));
                    let pair = match pair {
                        Some(p) => Some(p),
                        None => match s.read_json::<SessionJobMapping>(&md, &f, listed) {
                            Ok(m)
                                if (m.job_id == stem || m.session_id == stem)
                                    && is_valid_id(OsStr::new(&m.job_id))
                                    && is_valid_id(OsStr::new(&m.session_id)) =>
                            {
                                Some((m.job_id, m.session_id))
                            }
                            Ok(_) => {
                                let mut it = Item::new(ty, ItemKind::Unrecognized, parts);
                                it.rare_mut().note =
                                    Some("mapping names neither its file's session nor job".into());
                                inv.push(it);
                                None
                            }
                            Err(e) => {
                                let mut it = Item::new(ty, ItemKind::Unrecognized, parts);
                                it.rare_mut().note = Some(format!("corrupt mapping: {e}"));
                                inv.push(it);
                                None
                            }
                        },
                    };
                    if let Some((job, session)) = pair {
                        // The streaming engine finds owners in its index (`known.indexed`).
                        if known.indexed.is_none() {
                            inv.job_owner.entry(job.clone()).or_insert(session.clone());
                        }
                        self.pairs.push(&job, &session, job == stem);
                    }
                }
                self.pairs.seal();
            }
            Some("checkpoints") => {
                // 0.4.4 writes `state/{repo}/checkpoints/{workflow}.checkpoint.json` when a
                // workflow runs outside a worktree: each file is judged on its own.
                let p3 = [top, repo, OsStr::new("checkpoints")];
                let Some(cd) = s.open(&p3, inv) else {
                    return;
                };
                for (f, listed) in s.listing(&cd, &p3, inv) {
                    let parts = comps(&[p3[0], p3[1], p3[2], &f]);
                    if strip_valid(&f, ".checkpoint.json").is_none() {
                        s.push_invalid(
                            inv,
                            ty,
                            parts,
                            "not a `{workflow_id}.checkpoint.json` name",
                        );
                        continue;
                    }
                    let mut it = Item::new(ty, ItemKind::Data, parts);
                    it.repo = Some(self.r.clone());
                    let resumable = match s.read_json::<LegacyWorkflowCheckpoint>(&cd, &f, listed) {
                        Ok(c) if !c.is_completed() => {
                            Some(format!("{} has status {}", it.rel(), c.status_str()))
                        }
                        Ok(_) => None,
                        Err(e) => Some(format!("{} does not parse ({e})", it.rel())),
                    };
                    it.set_resumable(resumable);
                    inv.push(it);
                }
            }
            _ => {
                let mut it = Item::new(ty, ItemKind::Unrecognized, comps(&[top, repo, sub]));
                it.repo = Some(self.r.clone());
                it.rare_mut().note = Some("not part of the state layout".into());
                inv.push(it);
            }
        }
    }

    /// The item of job directory `job` of `state/{repo}/mapreduce/jobs` (`jd`, open), with
    /// the mapping files of its job.
    fn job_item(
        &mut self,
        s: &Scanner<'_>,
        jd: &Dir,
        job: &OsStr,
        inv: &mut Inventory,
        known: &Known<'_>,
    ) {
        let ty = StorageType::State;
        let p4 = [
            OsStr::new("state"),
            self.repo.as_os_str(),
            OsStr::new("mapreduce"),
            OsStr::new("jobs"),
        ];
        let parts = comps(&[p4[0], p4[1], p4[2], p4[3], job]);
        let Some(j) = valid_id_str(job).map(str::to_string) else {
            s.push_invalid(inv, ty, parts, "not a job id");
            return;
        };
        let mut it = Item::new(ty, ItemKind::Data, parts);
        it.repo = Some(self.r.clone());
        it.job = Some(j.clone());
        let p5 = [p4[0], p4[1], p4[2], p4[3], job];
        let (owner, resumable) = match ((known.named)(&j), known.indexed) {
            (Some((o, true)), _) => (Some(o.clone()), None),
            (named, Some(evidence)) => (named.map(|(o, _)| o), evidence(&j)),
            _ => s.job_state(jd, &p5, inv),
        };
        if let Some(o) = owner.filter(|_| known.indexed.is_none()) {
            inv.job_owner.entry(j.clone()).or_insert(o);
        }
        it.set_resumable(resumable);
        // Its mapping files, in listing order.
        let p = &mut self.pairs;
        let start = p.by_job.partition_point(|&i| p.job(i) < j.as_str());
        for k in start..p.by_job.len() {
            let i = p.by_job[k];
            if p.job(i) != j {
                break;
            }
            p.files[i as usize].taken = true;
            it.rare_mut().extra.push(p.parts(&self.repo, i));
        }
        inv.push(it);
    }

    /// The mapping files of jobs without a directory: one item per job, made when its first
    /// file is listed, owned by the session the file names.
    fn loose(&mut self, inv: &mut Inventory) {
        let p = std::mem::take(&mut self.pairs);
        let mut loose: BTreeMap<&str, usize> = BTreeMap::new();
        for i in 0..p.files.len() as u32 {
            if p.files[i as usize].taken {
                continue;
            }
            let parts = p.parts(&self.repo, i);
            if let Some(&k) = loose.get(p.job(i)) {
                inv.items[k].rare_mut().extra.push(parts);
            } else {
                let mut it = Item::new(StorageType::State, ItemKind::Data, parts);
                it.repo = Some(self.r.clone());
                it.job = Some(p.job(i).to_string());
                it.owner = Some(p.session(i).to_string());
                loose.insert(p.job(i), inv.push(it));
            }
        }
    }
}

impl Scanner<'_> {
    /// Owner and resumability of a canonical job directory (storage-format §4.4): resumable when
    /// the job is not complete and a checkpoint parses.
    /// `parts` is the job directory's path, `parent` its already open parent (`jobs/`).
    pub(super) fn job_state(
        &self,
        parent: &Dir,
        parts: &[&OsStr],
        inv: &mut Inventory,
    ) -> (Option<String>, Option<String>) {
        let Some(d) = self.opened(parent.open_dir(parts[parts.len() - 1]), parts, inv) else {
            return (None, None);
        };
        let mut owner = None;
        let mut complete = false;
        if let Ok(js) = self.read_json::<JobState>(&d, OsStr::new("job-state.json"), None) {
            if let Some(sid) = js
                .session_id
                .as_ref()
                .filter(|s| is_valid_id(OsStr::new(s)))
            {
                owner = Some(sid.clone());
            }
            complete = js.is_terminal();
        }
        if complete {
            return (owner, None);
        }
        for (f, listed) in self.listing(&d, parts, inv) {
            let Some(s) = f.to_str() else { continue };
            let Some((kind, _)) = records::checkpoint_kind_of_file_name(s) else {
                continue;
            };
            let Ok(bytes) = d.read_listed(&f, MAX_RECORD, listed) else {
                continue;
            };
            if records::parse_checkpoint(kind, &bytes).is_ok() {
                let rel = rel_of_parts(parts.iter().copied());
                return (
                    owner,
                    Some(crate::clean::index::checkpoint_evidence(&rel, s)),
                );
            }
        }
        (owner, None)
    }

    /// Evidence from 0.4.4 workflow checkpoints in one directory: the first one that is not
    /// Completed (or does not parse: unknown means keep).
    pub(super) fn legacy_checkpoints(
        &self,
        parts: &[&OsStr],
        inv: &mut Inventory,
    ) -> Option<String> {
        let d = self.open(parts, inv)?;
        for (f, listed) in self.listing(&d, parts, inv) {
            let rel = format!("{}/{}", rel_of_parts(parts.iter().copied()), printable(&f));
            match self.read_json::<LegacyWorkflowCheckpoint>(&d, &f, listed) {
                Ok(c) if !c.is_completed() => {
                    return Some(format!("{rel} has status {}", c.status_str()))
                }
                Ok(_) => {}
                Err(e) => return Some(format!("{rel} does not parse ({e})")),
            }
        }
        None
    }
}
