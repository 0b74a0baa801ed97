//! The `state/` part of the scan (storage-format §4.4): MapReduce job directories with their
//! owner (`job-state.json`) and resumability (a checkpoint that parses), session↔job mappings,
//! and Prodigy 0.4.4's workflow checkpoints.

use super::names::Ids;
use super::*;
use crate::clean::index::Index;
use std::cmp::Ordering;

/// A lookup by id, for [`Known`].
pub type Lookup<'k> = &'k dyn Fn(&str) -> Option<String>;
/// A test of an id, for [`Known`].
pub type Test<'k> = &'k dyn Fn(&str) -> bool;

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
    /// The streaming engine's pass 3: job directories whose items it would drop (their owner
    /// did not wait): no item is made of them (their mapping files are still theirs, so that
    /// none of them becomes a loose mapping's item).
    pub skip_job: Option<Test<'k>>,
    /// With `skip_job`: whether a session's class waited. A mapping file that pairs a
    /// skipped job with a session that did not wait is not kept: the job's directory makes no
    /// item, and a loose item of the job would be owned by a session that did not wait and
    /// dropped too (issue 25: pass 3 held a repository's every mapping file again, 8 bytes a
    /// file, 16 a session at the peak RSS with all sessions in one repository).
    pub waited: Option<Test<'k>>,
}

impl Scanner<'_> {
    pub(super) fn scan_state(&self, inv: &mut Inventory) {
        // Jobs named by a readable session record (`mapreduce_data.job_id`): their owner is
        // known without reading `job-state.json` or a mapping (issue 15: read only what
        // classification needs). The flag: the owner is Completed or Cancelled, so no
        // checkpoint of the job can make it resumable (safety §1) and none is read.
        let named: crate::clean::Map<String, (String, bool)> = inv
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
        let single: crate::clean::Map<String, String> = inv
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
            skip_job: None,
            waited: None,
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
            loose: None,
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

/// The mapping files of `state/{repo}/mappings/` that pair a job with a session: each is named
/// `{job}.json` or `{session}.json`. 8 bytes a file, the ids referring to the index where it
/// holds them (issue 25: two boxed ids a file raised the peak RSS of a dry run of S4 by 2.1 MB;
/// ids packed in a string of their own, 108 bytes a session with all sessions in one
/// repository).
#[derive(Default)]
struct Pairs {
    ids: Ids,
    /// Once [`Pairs::seal`]ed, sorted by job, then file name (a job's files in listing order).
    files: Vec<MappingFile>,
    /// Once sealed, a bit a file: attached to its job's item already ([`Pairs::take`]).
    taken: Vec<u64>,
}

/// One mapping file, 8 bytes: references ([`Ids`]) to the id it is named after and to the
/// other id of its pair. Which of them is the job, the reference says ([`Ids::is_job`]).
#[derive(Clone, Copy)]
struct MappingFile {
    /// The id the file is named after (`{stem}.json`).
    stem: u32,
    other: u32,
}

impl MappingFile {
    /// Its job's reference.
    fn job(&self) -> u32 {
        if Ids::is_job(self.stem) {
            self.stem
        } else {
            self.other
        }
    }

    /// Its session's reference.
    fn session(&self) -> u32 {
        if Ids::is_job(self.stem) {
            self.other
        } else {
            self.stem
        }
    }
}

impl Pairs {
    /// Add a file pairing valid ids `job` and `session`, named after the job when `by_job`.
    fn push(&mut self, idx: Option<&Index>, job: &str, session: &str, by_job: bool) {
        let job = self.ids.put(idx, job.as_bytes(), true);
        let session = self.ids.put(idx, session.as_bytes(), false);
        let (stem, other) = if by_job {
            (job, session)
        } else {
            (session, job)
        };
        self.files.push(MappingFile { stem, other });
    }

    fn job(&self, idx: Option<&Index>, i: usize) -> String {
        self.ids.string(idx, self.files[i].job())
    }

    fn session(&self, idx: Option<&Index>, i: usize) -> String {
        self.ids.string(idx, self.files[i].session())
    }

    /// The end of the files of file `i`'s job (the first of another job after it).
    fn job_end(&self, idx: Option<&Index>, i: usize) -> usize {
        let j = self.files[i].job();
        (i + 1..self.files.len())
            .find(|&k| {
                let o = self.files[k].job();
                o != j && self.ids.cmp(idx, o, j) != Ordering::Equal
            })
            .unwrap_or(self.files.len())
    }

    /// Whether file `i` is attached to its job's item already.
    fn taken(&self, i: usize) -> bool {
        self.taken
            .get(i / 64)
            .is_some_and(|w| w >> (i % 64) & 1 == 1)
    }

    /// Files `a` and `b` in the order of their names (`{stem}.json`), as a listing is sorted.
    fn cmp_names(&self, idx: Option<&Index>, a: &MappingFile, b: &MappingFile) -> Ordering {
        self.ids.with(idx, a.stem, |x| {
            self.ids.with(idx, b.stem, |y| {
                x.iter().chain(b".json").cmp(y.iter().chain(b".json"))
            })
        })
    }

    /// Sort the files by job, then name, once every file is in.
    fn seal(&mut self, idx: Option<&Index>) {
        let mut files = std::mem::take(&mut self.files);
        crate::sort::sort_unstable_by(&mut files, |a, b| {
            self.ids
                .cmp(idx, a.job(), b.job())
                .then_with(|| self.cmp_names(idx, a, b))
        });
        files.shrink_to_fit();
        self.taken = vec![0; files.len().div_ceil(64)];
        self.files = files;
    }

    /// Mark the files of job `j` taken (they go with its directory's item), calling `each`
    /// with each one's index, in listing order.
    fn take(&mut self, idx: Option<&Index>, j: &str, mut each: impl FnMut(&Pairs, usize)) {
        let want = j.as_bytes();
        let want_ref = Ids::job_in_index(idx, j);
        let start = self
            .files
            .partition_point(|m| self.ids.cmp_to(idx, m.job(), want, want_ref) == Ordering::Less);
        for i in start..self.files.len() {
            if self.ids.cmp_to(idx, self.files[i].job(), want, want_ref) != Ordering::Equal {
                break;
            }
            if let Some(w) = self.taken.get_mut(i / 64) {
                *w |= 1 << (i % 64);
            }
            each(self, i);
        }
    }

    /// The path of file `i`.
    fn parts(&self, idx: Option<&Index>, repo: &OsStr, i: usize) -> RelPath {
        let mut name = self.ids.os(idx, self.files[i].stem);
        name.push(".json");
        comps(&[OsStr::new("state"), repo, OsStr::new("mappings"), &name])
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
    jobs: Option<(Dir, NameList, usize)>,
    /// The mapping files that pair a job with a session.
    pairs: Pairs,
    /// Once the entries are done: the loose jobs' first files ([`StateRepoScan::loose`]), in
    /// listing order, and the next to make an item of.
    loose: Option<(Vec<u32>, usize)>,
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
                if k < names.len() {
                    let job = names.get(scanner.index, k);
                    self.job_item(scanner, &jd, &job, inv, known);
                    self.jobs = Some((jd, names, k + 1));
                    continue;
                }
            }
            match self.subs.next() {
                Some(sub) => self.sub(scanner, &sub, inv, known),
                None => {
                    if !self.loose(scanner.index, inv, limit) {
                        return false;
                    }
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
                    let names = s.name_list(&jd, &p4, inv);
                    self.jobs = Some((jd, names, 0));
                }
            }
            Some("mappings") => {
                let p3 = [top, repo, OsStr::new("mappings")];
                let Some(md) = s.open(&p3, inv) else {
                    return;
                };
                let idx = s.index;
                // Pass 3 keeps only the files of jobs that may have waited (`known.waited`).
                // A file pairing a skipped job with a session that waited names another
                // owner than the index's: then the job's other files may make its loose item
                // in pass 3, and the directory is listed again keeping every file.
                let mut filter = known.skip_job.zip(known.waited);
                let (mut own, listed) = loop {
                    let (own, listed, other_owner) =
                        Self::list_mappings(&mut self.pairs, s, &md, &p3, known, filter);
                    if other_owner {
                        filter = None;
                        continue;
                    }
                    break (own, listed);
                };
                if let Err(e) = listed {
                    inv.warnings.push(format!(
                        "cannot list `{}`: {}",
                        rel_of_parts(p3.iter().copied()),
                        crate::error::describe_io(&e)
                    ));
                    self.pairs = Pairs::default();
                    return;
                }
                // The files that are items of their own, in listing order.
                crate::sort::sort_by(&mut own, |a, b| a.0.cmp(&b.0));
                for (_, it) in own {
                    inv.push(it);
                }
                self.pairs.seal(idx);
                // The streaming engine finds owners in its index (`known.indexed`); a
                // whole-root scan takes a job's owner from its first file in listing order.
                if known.indexed.is_none() {
                    for i in 0..self.pairs.files.len() {
                        let job = self.pairs.job(idx, i);
                        if let std::collections::hash_map::Entry::Vacant(e) =
                            inv.job_owner.entry(job)
                        {
                            e.insert(self.pairs.session(idx, i));
                        }
                    }
                }
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

    /// The listing of `state/{repo}/mappings` (`md`, open; `p3`, its parts) into `pairs`,
    /// without holding the listing (issue 25: the pairs are sorted once all are in). Returns
    /// the files that are items of their own (temp files, invalid names, unreadable mappings),
    /// unsorted, with their names; the listing's result; and, with a `filter` (pass 3:
    /// [`Known::skip_job`] and [`Known::waited`]), whether a file paired a skipped job with a
    /// session that waited (then files were left out that pass 3 needs).
    fn list_mappings(
        pairs: &mut Pairs,
        s: &Scanner<'_>,
        md: &Dir,
        p3: &[&OsStr; 3],
        known: &Known<'_>,
        filter: Option<(Test<'_>, Test<'_>)>,
    ) -> (Vec<(OsString, Item)>, std::io::Result<()>, bool) {
        let ty = StorageType::State;
        let idx = s.index;
        let mut own: Vec<(OsString, Item)> = Vec::new();
        let mut other_owner = false;
        *pairs = Pairs::default();
        let listed = md.for_each_listed(|f, listed| {
            // Made only for the few files that are items of their own.
            let parts = || comps(&[p3[0], p3[1], p3[2], f]);
            if crate::store::atomic::is_temp_name(f) {
                own.push((f.to_os_string(), Item::new(ty, ItemKind::Temp, parts())));
                return;
            }
            let Some(stem) = strip_valid(f, ".json") else {
                let mut one = Inventory::default();
                s.push_invalid(&mut one, ty, parts(), "not a `{id}.json` mapping name");
                own.extend(one.items.into_iter().map(|it| (f.to_os_string(), *it)));
                return;
            };
            // A mapping named after a job or a session that a record pairs is that
            // pair: it is not read.
            let pair = (known.named)(stem)
                .map(|(o, _)| (stem.to_string(), o))
                .or_else(|| (known.single_job)(stem).map(|j| (j, stem.to_string())));
            let pair = match pair {
                Some(p) => Some(p),
                None => match s.read_json::<SessionJobMapping>(md, f, listed) {
                    Ok(m)
                        if (m.job_id == stem || m.session_id == stem)
                            && is_valid_id(OsStr::new(&m.job_id))
                            && is_valid_id(OsStr::new(&m.session_id)) =>
                    {
                        Some((m.job_id, m.session_id))
                    }
                    Ok(_) => {
                        let mut it = Item::new(ty, ItemKind::Unrecognized, parts());
                        it.rare_mut().note =
                            Some("mapping names neither its file's session nor job".into());
                        own.push((f.to_os_string(), it));
                        None
                    }
                    Err(e) => {
                        let mut it = Item::new(ty, ItemKind::Unrecognized, parts());
                        it.rare_mut().note = Some(format!("corrupt mapping: {e}"));
                        own.push((f.to_os_string(), it));
                        None
                    }
                },
            };
            if let Some((job, session)) = pair {
                if let Some((skip, waited)) = filter {
                    if skip(&job) {
                        if !waited(&session) {
                            return;
                        }
                        other_owner = true;
                    }
                }
                pairs.push(idx, &job, &session, job == stem);
            }
        });
        (own, listed, other_owner)
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
        let idx = s.index;
        if known.skip_job.is_some_and(|skip| skip(&j)) {
            self.pairs.take(idx, &j, |_, _| {});
            return;
        }
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
        let repo = &self.repo;
        self.pairs.take(idx, &j, |p, i| {
            it.rare_mut().extra.push(p.parts(idx, repo, i))
        });
        inv.push(it);
    }

    /// The mapping files of jobs without a directory: one item per job, made when its first
    /// file is listed, owned by the session the file names. Made until `inv` holds `limit`
    /// items; false once all are made. Held meanwhile: 4 bytes a loose job (its first file;
    /// the files are sorted by job, so a job's files are the ones after it), not an item each
    /// (issue 25: with a repository's 40,000 sessions, 8,889 loose items made at once were
    /// a third of the peak RSS of `stats`).
    fn loose(&mut self, idx: Option<&Index>, inv: &mut Inventory, limit: usize) -> bool {
        let p = &self.pairs;
        let (firsts, next) = self.loose.get_or_insert_with(|| {
            let mut firsts: Vec<u32> = Vec::new();
            let mut i = 0;
            while i < p.files.len() {
                let end = p.job_end(idx, i);
                // Files of a job are in name order: its first untaken one comes first.
                if let Some(f) = (i..end).find(|&f| !p.taken(f)) {
                    firsts.push(f as u32);
                }
                i = end;
            }
            crate::sort::sort_by(&mut firsts, |&a, &b| {
                p.cmp_names(idx, &p.files[a as usize], &p.files[b as usize])
            });
            (firsts, 0)
        });
        while *next < firsts.len() {
            if inv.items.len() >= limit {
                return true;
            }
            let first = firsts[*next] as usize;
            *next += 1;
            let end = p.job_end(idx, first);
            let mut it = Item::new(
                StorageType::State,
                ItemKind::Data,
                p.parts(idx, &self.repo, first),
            );
            it.repo = Some(self.r.clone());
            it.job = Some(p.job(idx, first));
            it.owner = Some(p.session(idx, first));
            for f in (first + 1..end).filter(|&f| !p.taken(f)) {
                it.rare_mut().extra.push(p.parts(idx, &self.repo, f));
            }
            inv.push(it);
        }
        self.pairs = Pairs::default();
        self.loose = Some((Vec::new(), 0));
        false
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mapping_files_know_their_job_session_and_name_and_are_taken_by_job() {
        let mut p = Pairs::default();
        // Listing order is not sorted; ids not in an index are packed in the pairs' own arena.
        p.push(None, "mapreduce-2", "session-2", false);
        p.push(None, "mapreduce-1", "session-1", true);
        p.push(None, "mapreduce-1", "session-1", false);
        p.push(None, "mapreduce-3", "session-0", true);
        p.seal(None);
        let names = |p: &Pairs, i: usize| rel_of(&p.parts(None, OsStr::new("r"), i));
        let mut taken = Vec::new();
        p.take(None, "mapreduce-1", |p, i| {
            taken.push((names(p, i), p.job(None, i), p.session(None, i)))
        });
        assert_eq!(
            taken,
            [
                (
                    "state/r/mappings/mapreduce-1.json",
                    "mapreduce-1",
                    "session-1"
                ),
                (
                    "state/r/mappings/session-1.json",
                    "mapreduce-1",
                    "session-1"
                ),
            ]
            .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
        );
        let left: Vec<String> = (0..p.files.len())
            .filter(|&i| !p.taken(i))
            .map(|i| format!("{} {}", names(&p, i), p.session(None, i)))
            .collect();
        assert_eq!(
            left,
            [
                "state/r/mappings/session-2.json session-2",
                "state/r/mappings/mapreduce-3.json session-0"
            ]
        );
        // What is left makes one item a job, in the listing order of its first file, a batch
        // of `limit` at a time.
        p.push(None, "mapreduce-4", "session-4", true);
        p.push(None, "mapreduce-4", "session-4", false);
        p.push(None, "mapreduce-0", "session-9", false);
        p.seal(None);
        let mut scan = StateRepoScan {
            repo: "r".into(),
            r: "r".into(),
            subs: Vec::new().into_iter(),
            jobs: None,
            pairs: p,
            loose: None,
        };
        let mut inv = Inventory::default();
        let mut batches = 0;
        while scan.loose(None, &mut inv, 2 * (batches + 1)) {
            batches += 1;
        }
        let items: Vec<String> = inv
            .items
            .iter()
            .map(|it| {
                let mut v = vec![rel_of(&it.comps)];
                v.extend(
                    it.rare
                        .as_ref()
                        .into_iter()
                        .flat_map(|r| r.extra.iter().map(rel_of)),
                );
                format!("{} {:?} {:?}: {}", v.len(), it.job, it.owner, v.join(" "))
            })
            .collect();
        assert_eq!(
            items,
            [
                "2 Some(\"mapreduce-1\") Some(\"session-1\"): state/r/mappings/mapreduce-1.json state/r/mappings/session-1.json",
                "1 Some(\"mapreduce-3\") Some(\"session-0\"): state/r/mappings/mapreduce-3.json",
                "2 Some(\"mapreduce-4\") Some(\"session-4\"): state/r/mappings/mapreduce-4.json state/r/mappings/session-4.json",
                "1 Some(\"mapreduce-2\") Some(\"session-2\"): state/r/mappings/session-2.json",
                "1 Some(\"mapreduce-0\") Some(\"session-9\"): state/r/mappings/session-9.json",
            ]
        );
        assert_eq!(batches, 2, "made 2, then 2 more, then the last");
        assert!(
            scan.pairs.files.is_empty(),
            "the pairs are dropped once done"
        );
    }
}
