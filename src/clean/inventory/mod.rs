//! Inventory: every item under the root, its type, repository and owner session.
//!
//! Reads both the canonical layout and Prodigy 0.4.4's (storage-format §3–§5). Reaches every
//! entry fd-relative from the root without following symlinks (safety R1); names that do not fit
//! the grammar of their place are recorded as invalid and never joined onto a path (R3). Nothing
//! here deletes or writes.
//!
//! Repositories are found through the worktrees under the root, and through the repository a
//! session record names (`metadata.worktree.repository`, written by `prodigy run`) so that git's
//! record of a hand-deleted worktree is found when no worktree of its repository is left. Such a
//! path is only ever given to git, after git confirms it is a main working tree.

use crate::git::{Git, WorktreeEntry};
use crate::store::fsops::{self, Dir, Kind};

/// An entry's type as its directory listing reported it (`None`: not reported).
type Listed = Option<Kind>;
use crate::store::names::{
    is_legacy_session_id, is_valid_id, printable, strip_valid, valid_id_str,
};
use crate::store::records::{
    self, JobState, LegacyWorkflowCheckpoint, LegacyWorktreeMeta, ResumeLockInfo,
    SessionJobMapping, SessionOwner, SessionRecord, SessionStatus,
};
use crate::store::StorageType;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};

mod indexing;
mod names;
mod produce;
mod state;
mod worktrees;
pub use names::NameList;
pub use state::{Known, StateRepoScan};
#[cfg(test)]
use worktrees::common_dir_of;

/// `ELOOP`: what reading a symlink with `O_NOFOLLOW` gives.
#[cfg(unix)]
const ELOOP: i32 = libc::ELOOP;
#[cfg(not(unix))]
const ELOOP: i32 = -1;

/// The end of a warning about a session record's `metadata.worktree.repository`.
const NOT_CHECKED: &str = "git's records of its worktrees were not checked";

/// Largest JSON record read into memory, bytes; larger files are reported and kept (safety §5
/// case 14: bounded memory).
pub const MAX_RECORD: u64 = 64 << 20;

/// A session record and what it owns.
#[derive(Debug)]
pub struct Session {
    /// Session id (the file stem of `sessions/{id}.json`).
    pub id: String,
    /// What the record says, or why it could not be read (an Unknown session). The record
    /// itself is parsed in full to validate it, then dropped: `sessions show` reads it again.
    pub record: Result<SessionFacts, String>,
    /// Index of its `sessions/{id}.json` item.
    pub item: usize,
    /// Jobs it owns (from the record, mappings and job-state files).
    pub jobs: Vec<String>,
    /// Repository, when one of its items tells.
    pub repo: Option<String>,
}

/// The fields of a session record (storage-format §4.1) that classification and `sessions ls`
/// use, kept instead of the whole record so memory per session stays small.
#[derive(Debug, Clone)]
pub struct SessionFacts {
    /// `session_type` (`"Workflow"` or `"MapReduce"`).
    pub session_type: Box<str>,
    /// `status`.
    pub status: SessionStatus,
    /// `updated_at`, Unix seconds.
    pub updated_at: Option<i64>,
    /// Number of entries in `checkpoints` (0.4.4 session checkpoints).
    pub checkpoints: usize,
    /// `metadata.owner`, when it parses.
    pub owner: Option<SessionOwner>,
}

impl SessionFacts {
    /// The facts of a parsed record.
    pub fn of(r: &SessionRecord) -> SessionFacts {
        SessionFacts {
            session_type: r.session_type.as_str().into(),
            status: r.status,
            updated_at: r.updated_at.as_ref().map(|t| t.unix_seconds()),
            checkpoints: r.checkpoints.len(),
            owner: r.owner(),
        }
    }
}

/// What kind of thing an item is, beyond its storage type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ItemKind {
    /// A session record file.
    SessionRecord,
    /// A job's directory (events, dlq, state) or a 0.4.4 pseudo-repository directory.
    Data,
    /// A git worktree directory (or a plain directory under `worktrees/`).
    Worktree,
    /// A resume lock file.
    Lock,
    /// A name outside the grammar of its place: always kept and reported.
    Invalid,
    /// Data this version does not understand: always kept and reported.
    Unrecognized,
    /// A leftover temp file of a crash-safe write (swept after an hour).
    Temp,
    /// A session record the streaming engine puts beside a batch's items so that their
    /// deletion-time checks can look at it (safety R5); never decided, counted or removed.
    Reference,
}

/// Git facts about a worktree item.
#[derive(Debug, Default, Clone)]
pub struct WorktreeGit {
    /// The repository's common git directory, from the worktree's `.git` file (read, never
    /// followed to delete anything).
    pub common: Option<PathBuf>,
    /// git's own record of this worktree, when git lists it.
    pub entry: Option<WorktreeEntry>,
    /// The worktree's administrative directory (`{common}/worktrees/{name}`), from its `.git`.
    pub admin: Option<PathBuf>,
    /// Moved by hand: its administrative directory records a path that is gone. Kept, and its
    /// repository is not pruned (pruning would delete what `git worktree repair` needs).
    pub moved: bool,
    /// The repository's name: its main working tree's directory name.
    pub repo_name: Option<String>,
    /// Why git facts are missing (git failed, `.git` unreadable …); None when all is known or the
    /// directory is plain data.
    pub error: Option<String>,
    /// Nested worktrees inside this one (canonical MapReduce agents), item indices.
    pub children: Vec<usize>,
    /// The enclosing worktree item, for a nested agent worktree.
    pub parent: Option<usize>,
    /// The 0.4.4 `.metadata/{name}.json` removed together with the worktree.
    pub legacy_meta: Option<(RelPath, LegacyWorktreeMeta)>,
}

/// One unit of deletion.
#[derive(Debug)]
pub struct Item {
    /// Storage type it counts under.
    pub ty: StorageType,
    /// What it is.
    pub kind: ItemKind,
    /// Path from the root (raw names).
    pub comps: RelPath,

    /// Repository as its place says (None for a pseudo-repository or a global place).
    pub repo: Option<String>,
    /// Owning session id, when found.
    pub owner: Option<String>,
    /// Job id, when the item belongs to a job.
    pub job: Option<String>,
    /// Device and inode at scan time; deletion is skipped if the path names something else then.
    pub dev_ino: Option<(u64, u64)>,
    /// Bytes on disk (st_blocks·512) of everything inside, at scan time.
    pub bytes: u64,
    /// Last activity, Unix seconds: newest mtime inside (and timestamps inside records).
    pub newest: Option<i64>,
    /// Git facts (worktrees only).
    pub git: Option<Box<WorktreeGit>>,
    /// What few items have (see [`Rare`]); `None` when all of it is empty.
    rare: Option<Box<Rare>>,
}

/// The parts of an [`Item`] that most items do not have, boxed so that an item without them
/// costs one pointer (an inventory holds an item per job directory, session record …).
#[derive(Debug, Default)]
pub struct Rare {
    /// Other files removed together with it (a job's mapping files).
    pub extra: Vec<RelPath>,
    /// A directory inside on another filesystem (safety R2): kept.
    pub mounts: Vec<PathBuf>,
    /// Walk problems (unreadable directories …), as text.
    pub problems: Vec<String>,
    /// For state items with no owner: a checkpoint inside that can still be resumed.
    pub resumable: Option<String>,
    /// Resume lock content and liveness (locks only): `Some(reason)` when live.
    pub lock_live: Option<String>,
    /// Why the item is unrecognized or invalid.
    pub note: Option<String>,
    /// Its walk counted a regular file named `*.gz` ([`fsops::WalkSummary::gz_files`]).
    pub has_gz: bool,
}

static NO_RARE: Rare = Rare {
    extra: Vec::new(),
    mounts: Vec::new(),
    problems: Vec::new(),
    resumable: None,
    lock_live: None,
    note: None,
    has_gz: false,
};

impl Item {
    /// An item of type `ty` and kind `kind` at `comps`, with nothing else known yet.
    pub fn new(ty: StorageType, kind: ItemKind, comps: RelPath) -> Item {
        Item {
            ty,
            kind,
            comps,
            repo: None,
            owner: None,
            job: None,
            dev_ino: None,
            bytes: 0,
            newest: None,
            git: None,
            rare: None,
        }
    }

    /// The rare parts (all empty for most items).
    pub fn rare(&self) -> &Rare {
        self.rare.as_deref().unwrap_or(&NO_RARE)
    }

    /// The rare parts, to set one.
    pub fn rare_mut(&mut self) -> &mut Rare {
        self.rare.get_or_insert_with(Default::default)
    }

    /// Set `rare().resumable`; `None` allocates nothing.
    fn set_resumable(&mut self, r: Option<String>) {
        if r.is_some() || self.rare.is_some() {
            self.rare_mut().resumable = r;
        }
    }

    /// The item's path relative to the root, printable (hostile bytes escaped).
    pub fn rel(&self) -> String {
        rel_of(&self.comps)
    }

    /// The worktree's short name (last component).
    pub fn name(&self) -> String {
        printable(self.comps.name())
    }
}

/// A path below the root: raw names, never `.`, `..` or empty (they come from directory
/// listings and from our own constants), kept in one allocation because an inventory holds one
/// or more per item.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RelPath(Box<Path>);

impl RelPath {
    /// The path of `parts` (at least one name).
    pub fn new(parts: &[&OsStr]) -> RelPath {
        debug_assert!(!parts.is_empty());
        // Sized up front: collecting grew the buffer a name at a time and shrank it to box it
        // (a third of the reallocations of `stats`).
        let len = parts.iter().map(|p| p.len()).sum::<usize>() + parts.len() - 1;
        let mut p = PathBuf::with_capacity(len);
        for part in parts {
            p.push(part);
        }
        RelPath(p.into_boxed_path())
    }

    /// The names from the root, for [`Dir::open_path`].
    pub fn parts(&self) -> Vec<&OsStr> {
        self.0.iter().collect()
    }

    /// The last name.
    pub fn name(&self) -> &OsStr {
        #[cfg(unix)]
        {
            let (_, name) = self.split_last();
            std::os::unix::ffi::OsStrExt::from_bytes(name)
        }
        #[cfg(not(unix))]
        {
            self.0.file_name().unwrap_or_default()
        }
    }

    /// The containing directory's path (empty for a name directly under the root).
    pub fn parent(&self) -> &Path {
        #[cfg(unix)]
        {
            let (parent, _) = self.split_last();
            Path::new(<OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(parent))
        }
        #[cfg(not(unix))]
        {
            self.0.parent().unwrap_or(Path::new(""))
        }
    }

    /// The bytes before the last `/` and after it (empty and the whole path without one):
    /// what `parent` and `file_name` give for a path of names joined by single `/`s, as a
    /// `RelPath` is, found with one backward search instead of `Path`'s parsing of components
    /// (4% of a dry run's instructions with issue 25's 128-character ids).
    #[cfg(unix)]
    fn split_last(&self) -> (&[u8], &[u8]) {
        let b = std::os::unix::ffi::OsStrExt::as_bytes(self.0.as_os_str());
        match crate::bytes::rfind(b, b'/') {
            Some(i) => (&b[..i], &b[i + 1..]),
            None => (&[], b),
        }
    }
}

/// Printable `a/b/c` of a path below the root (hostile bytes escaped).
pub fn rel_of(p: &RelPath) -> String {
    // A path of printable ASCII names joined by `/` is its own printable form (a name holds no
    // `/`, `.`, `..` or empty one: see [`RelPath`]): made without splitting it into names.
    #[cfg(unix)]
    {
        if let Some(s) = crate::store::names::ascii_printable(p.0.as_os_str().as_encoded_bytes()) {
            return s;
        }
    }
    rel_of_parts(p.0.iter())
}

/// Printable `a/b/c` of raw names.
pub fn rel_of_parts<'a>(parts: impl Iterator<Item = &'a OsStr>) -> String {
    parts.map(printable).collect::<Vec<_>>().join("/")
}

/// Everything the scan found.
#[derive(Debug, Default)]
pub struct Inventory {
    /// Items, in discovery order. Boxed: growing the vector moves pointers, not whole items,
    /// so its doubling costs 8 bytes per item instead of the item's size.
    pub items: Vec<Box<Item>>,
    /// Sessions by id.
    pub sessions: BTreeMap<String, Session>,
    /// Job id → owning session id.
    pub job_owner: super::Map<String, String>,
    /// Problems met while scanning containers (unreadable directories …).
    pub warnings: Vec<String>,
    /// Each repository's `git worktree list`, by common git directory, with its name.
    pub repos: BTreeMap<PathBuf, RepoWorktrees>,
    /// (session, job) pairs seen only in 0.4.4 pseudo-repository directory names.
    pub legacy_jobs: Vec<(String, String)>,
}

impl Inventory {
    /// Add an item (boxed, see `items`) and return its index.
    pub fn push(&mut self, it: Item) -> usize {
        self.items.push(Box::new(it));
        self.items.len() - 1
    }
}

/// One repository as git lists its worktrees.
#[derive(Debug, Clone)]
pub struct RepoWorktrees {
    /// The repository's name (its main working tree's directory name).
    pub name: Option<String>,
    /// git's entries, the main working tree first.
    pub entries: Vec<WorktreeEntry>,
}

/// Scan context.
pub struct Scanner<'a> {
    /// The root handle.
    pub root: &'a Dir,
    /// The root's canonical path (for git and for matching worktree paths).
    pub root_path: &'a Path,
    /// git runner.
    pub git: &'a Git,
    /// This host's name, for resume locks.
    pub host: String,
    /// Now, Unix seconds.
    pub now: i64,
    /// Lease of a lock written by another host, seconds.
    pub lock_lease: i64,
    /// The streaming engine's index: its sessions count as known sessions (0.4.4
    /// pseudo-repositories are named after them).
    pub index: Option<&'a crate::clean::index::Index>,
}

/// The session a top-level worktree directory `name` belongs to by its name: the session it is
/// named after, or, for a failed MapReduce agent's worktree kept beside its session's
/// (`{session_id}.agent-{fid}`, run.md §4), that session. Ids are matched exactly
/// (`is_session`), never by prefix alone (safety R3).
pub(super) fn worktree_owner_by_name(
    name: &str,
    is_session: impl Fn(&str) -> bool,
) -> Option<String> {
    if is_session(name) {
        return Some(name.to_string());
    }
    crate::store::layout::failed_agent_owners(name)
        .into_iter()
        .find(|s| is_session(s))
        .map(str::to_string)
}

fn comps(parts: &[&OsStr]) -> RelPath {
    RelPath::new(parts)
}

impl Scanner<'_> {
    /// Open a directory below the root, `None` when it does not exist; other errors are warnings.
    fn open(&self, parts: &[&OsStr], inv: &mut Inventory) -> Option<Dir> {
        self.opened(self.root.open_path(parts), parts, inv)
    }

    /// `r`, the result of opening the directory at `parts`: `None` when it does not exist;
    /// other errors become warnings naming `parts`.
    fn opened(
        &self,
        r: std::io::Result<Dir>,
        parts: &[&OsStr],
        inv: &mut Inventory,
    ) -> Option<Dir> {
        match r {
            Ok(d) => Some(d),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => {
                inv.warnings.push(format!(
                    "cannot open `{}`: {}",
                    rel_of_parts(parts.iter().copied()),
                    crate::error::describe_io(&e)
                ));
                None
            }
        }
    }

    /// The names in `d` (at `parts`), sorted; a listing error becomes a warning naming `parts`.
    fn names(&self, d: &Dir, parts: &[&OsStr], inv: &mut Inventory) -> Vec<OsString> {
        self.listing(d, parts, inv)
            .into_iter()
            .map(|(n, _)| n)
            .collect()
    }

    /// [`Scanner::names`] with each entry's listed type (a hint for [`Dir::read_listed`]).
    fn listing(&self, d: &Dir, parts: &[&OsStr], inv: &mut Inventory) -> Vec<(OsString, Listed)> {
        match d.listing() {
            Ok(mut v) => {
                crate::sort::sort_unstable_by(&mut v, |a, b| a.0.cmp(&b.0));
                v
            }
            Err(e) => {
                inv.warnings.push(format!(
                    "cannot list `{}`: {}",
                    rel_of_parts(parts.iter().copied()),
                    crate::error::describe_io(&e)
                ));
                Vec::new()
            }
        }
    }

    /// Parse JSON record `name` of `d`; `listed` is its type from the directory listing, if
    /// known. Errors are described for the user (I/O error or parse error).
    fn read_json<T: serde::de::DeserializeOwned>(
        &self,
        d: &Dir,
        name: &OsStr,
        listed: Listed,
    ) -> Result<T, String> {
        let bytes = d
            .read_listed(name, MAX_RECORD, listed)
            .map_err(|e| crate::error::describe_io(&e))?;
        records::parse(&bytes).map_err(|e| e.to_string())
    }

    /// Scan the whole root.
    pub fn scan(&self) -> Inventory {
        let mut inv = Inventory::default();
        let named = self.scan_sessions(&mut inv);
        for ty in [StorageType::Events, StorageType::Dlq] {
            self.scan_job_dirs(ty, &mut inv);
        }
        self.scan_state(&mut inv);
        self.scan_logs(&mut inv);
        let asked = self.scan_worktrees(&mut inv);
        self.resolve_record_repos(&mut inv, named, &asked);
        self.scan_locks(&mut inv);
        self.scan_registry_temps(&mut inv);
        self.resolve_owners(&mut inv);
        inv
    }

    fn push_invalid(&self, inv: &mut Inventory, ty: StorageType, parts: RelPath, why: &str) {
        let mut it = Item::new(ty, ItemKind::Invalid, parts);
        it.rare_mut().note = Some(why.to_string());
        inv.push(it);
    }

    /// Scan `sessions/`. Returns the repositories the records name
    /// (`metadata.worktree.repository`): each absolute path once, with the first session naming
    /// it, for [`Scanner::resolve_record_repos`].
    fn scan_sessions(&self, inv: &mut Inventory) -> BTreeMap<PathBuf, String> {
        let mut named = BTreeMap::new();
        let top = [OsStr::new("sessions")];
        let Some(d) = self.open(&top, inv) else {
            return named;
        };
        for (name, listed) in self.listing(&d, &top, inv) {
            let Some((mut it, id)) = self.session_entry(&name, inv) else {
                continue;
            };
            let (record, jobs, repo) = self.read_session(
                &d,
                &name,
                listed,
                id,
                &mut inv.warnings,
                &mut named,
                &mut None,
            );
            it.repo = repo;
            let repo = it.repo.clone();
            let item = inv.push(it);
            inv.sessions.insert(
                id.to_string(),
                Session {
                    id: id.to_string(),
                    record,
                    item,
                    jobs,
                    repo,
                },
            );
        }
        named
    }

    /// Entry `name` of `sessions/`: a record's item (owned by its session, not pushed) and its
    /// session id; a temp file or an invalid name is pushed as its own item instead.
    pub(super) fn session_entry<'n>(
        &self,
        name: &'n OsStr,
        inv: &mut Inventory,
    ) -> Option<(Item, &'n str)> {
        let parts = comps(&[OsStr::new("sessions"), name]);
        if crate::store::atomic::is_temp_name(name) {
            inv.push(Item::new(StorageType::Sessions, ItemKind::Temp, parts));
            return None;
        }
        let Some(id) = strip_valid(name, ".json") else {
            self.push_invalid(
                inv,
                StorageType::Sessions,
                parts,
                "not a `{session_id}.json` name",
            );
            return None;
        };
        let mut it = Item::new(StorageType::Sessions, ItemKind::SessionRecord, parts);
        it.owner = Some(id.to_string());
        Some((it, id))
    }

    /// Read and check session record `name` of `sessions/` (`d`; `id` its stem, `listed` its
    /// listed type): its facts or why it cannot be used, the job it names
    /// (`mapreduce_data.job_id`) and its `metadata.repo`. The repository it names
    /// (`metadata.worktree.repository`) goes into `named`; the file's device, inode and mtime
    /// as it was read into `meta`.
    #[allow(clippy::type_complexity, clippy::too_many_arguments)]
    fn read_session(
        &self,
        d: &Dir,
        name: &OsStr,
        listed: Listed,
        id: &str,
        warnings: &mut Vec<String>,
        named: &mut BTreeMap<PathBuf, String>,
        meta: &mut Option<(u64, u64, i64)>,
    ) -> (Result<SessionFacts, String>, Vec<String>, Option<String>) {
        // read_listed refuses anything but a regular file (a symlink with ELOOP) without
        // opening it, from the listing's type or else an lstat.
        let record = match d.read_listed_meta(name, MAX_RECORD, listed) {
            Ok((b, m)) => {
                *meta = Some((m.dev, m.ino, m.mtime_secs));
                records::check_no_duplicate_keys(&b)
                    .map_err(|e| e.to_string())
                    .and_then(|()| records::parse::<SessionRecord>(&b).map_err(|e| e.to_string()))
            }
            Err(e) if e.raw_os_error() == Some(ELOOP) => Err("not a regular file".to_string()),
            Err(e) => Err(crate::error::describe_io(&e)),
        };
        let record = record.and_then(|r| {
            if r.id == id {
                Ok(r)
            } else {
                Err(format!("record id `{}` does not match its file name", r.id))
            }
        });
        let mut jobs = Vec::new();
        let mut repo_of = None;
        if let Ok(r) = &record {
            if let Some(j) = r.mapreduce_data.as_ref().and_then(|m| m.job_id.clone()) {
                if is_valid_id(OsStr::new(&j)) {
                    jobs.push(j);
                }
            }
            if let Some(repo) = r.metadata.get("repo").and_then(|v| v.as_str()) {
                if is_valid_id(OsStr::new(repo)) {
                    repo_of = Some(repo.to_string());
                }
            }
            match r
                .metadata
                .get("worktree")
                .and_then(|w| w.get("repository"))
            {
                None | Some(serde_json::Value::Null) => {}
                Some(serde_json::Value::String(p))
                    if Path::new(p).is_absolute() && !p.contains('\0') =>
                {
                    named.entry(PathBuf::from(p)).or_insert_with(|| id.to_string());
                }
                Some(_) => warnings.push(format!(
                    "session {id}: metadata.worktree.repository is not an absolute path; {NOT_CHECKED}"
                )),
            }
        }
        (record.map(|r| SessionFacts::of(&r)), jobs, repo_of)
    }

    /// True when `name` directly under a type directory is a 0.4.4 pseudo-repository owned by a
    /// session (storage-format §5).
    fn pseudo_owner(&self, name: &str, inv: &Inventory) -> Option<String> {
        (inv.sessions.contains_key(name)
            || self.index.is_some_and(|x| x.row(name).is_some())
            || is_legacy_session_id(name))
        .then(|| name.to_string())
    }

    fn scan_job_dirs(&self, ty: StorageType, inv: &mut Inventory) {
        let top = [OsStr::new(ty.dir())];
        let Some(d) = self.open(&top, inv) else {
            return;
        };
        for repo in self.names(&d, &top, inv) {
            if let Some(r) = self.job_dirs_top(ty, &repo, inv) {
                self.scan_job_dirs_repo(ty, &repo, &r, inv);
            }
        }
    }

    /// One entry `{type}/{repo}` of `events/` or `dlq/`: a canonical repository's name is
    /// returned for [`Scanner::scan_job_dirs_repo`]; an invalid name or a 0.4.4
    /// pseudo-repository (with the jobs it names, `inv.legacy_jobs`) is pushed as one item.
    pub(super) fn job_dirs_top(
        &self,
        ty: StorageType,
        repo: &OsStr,
        inv: &mut Inventory,
    ) -> Option<String> {
        let top = [OsStr::new(ty.dir())];
        let Some(r) = valid_id_str(repo).map(str::to_string) else {
            self.push_invalid(inv, ty, comps(&[top[0], repo]), "not a repository name");
            return None;
        };
        if let Some(owner) = self.pseudo_owner(&r, inv) {
            // 0.4.4 records a session's MapReduce job only here: `{type}/session-{uuid}/{job}/`.
            let p2 = [top[0], repo];
            if let Some(pd) = self.open(&p2, inv) {
                for job in self.names(&pd, &p2, inv) {
                    if let Some(j) = valid_id_str(&job).filter(|j| j.starts_with("mapreduce-")) {
                        inv.legacy_jobs.push((owner.clone(), j.to_string()));
                    }
                }
            }
            let mut it = Item::new(ty, ItemKind::Data, comps(&[top[0], repo]));
            it.owner = Some(owner);
            inv.push(it);
            return None;
        }
        Some(r)
    }

    /// The job directories of canonical repository `{type}/{repo}` (`r`: its name).
    pub(super) fn scan_job_dirs_repo(
        &self,
        ty: StorageType,
        repo: &OsStr,
        r: &str,
        inv: &mut Inventory,
    ) {
        if let Some(names) = self.job_dirs_names(ty, repo, inv) {
            let names = names.slice(self.index, 0..names.len());
            self.job_dir_items(ty, repo, r, &names, inv);
        }
    }

    /// The names in `{type}/{repo}` (`events/`, `dlq/`), sorted.
    pub(super) fn job_dirs_names(
        &self,
        ty: StorageType,
        repo: &OsStr,
        inv: &mut Inventory,
    ) -> Option<NameList> {
        let p2 = [OsStr::new(ty.dir()), repo];
        let rd = self.open(&p2, inv)?;
        Some(self.name_list(&rd, &p2, inv))
    }

    /// The items of entries `names` of `{type}/{repo}` (`r`: the repository's name): one per
    /// job directory.
    pub(super) fn job_dir_items(
        &self,
        ty: StorageType,
        repo: &OsStr,
        r: &str,
        names: &[OsString],
        inv: &mut Inventory,
    ) {
        let top = OsStr::new(ty.dir());
        for job in names {
            let parts = comps(&[top, repo, job]);
            let Some(j) = valid_id_str(job) else {
                self.push_invalid(inv, ty, parts, "not a job id");
                continue;
            };
            let mut it = Item::new(ty, ItemKind::Data, parts);
            it.repo = Some(r.to_string());
            it.job = Some(j.to_string());
            inv.push(it);
        }
    }

    fn scan_logs(&self, inv: &mut Inventory) {
        let top = [OsStr::new("logs")];
        let Some(d) = self.open(&top, inv) else {
            return;
        };
        for repo in self.names(&d, &top, inv) {
            self.scan_logs_repo(&repo, inv);
        }
    }

    /// The items of `logs/{repo}`: one per entry in a repository's log directory (a job's
    /// `logs/{repo}/{job_id}/` belongs to the job), or the entry itself when it is a file.
    pub(super) fn scan_logs_repo(&self, repo: &OsStr, inv: &mut Inventory) {
        if let Some(names) = self.logs_names(repo, inv) {
            let names = names.slice(self.index, 0..names.len());
            self.log_items(repo, &names, inv);
        }
    }

    /// The names in `logs/{repo}`, sorted; `None` when it is not a directory of a repository
    /// (its item, judged on its own, is in `inv` then).
    pub(super) fn logs_names(&self, repo: &OsStr, inv: &mut Inventory) -> Option<NameList> {
        let ty = StorageType::Logs;
        let top = [OsStr::new("logs")];
        if valid_id_str(repo).is_none() {
            self.push_invalid(inv, ty, comps(&[top[0], repo]), "not a repository name");
            return None;
        }
        let p2 = [top[0], repo];
        let Some(rd) = self.open(&p2, inv) else {
            // A plain file directly under logs/: judge it on its own.
            inv.push(Item::new(ty, ItemKind::Data, comps(&p2)));
            return None;
        };
        Some(self.name_list(&rd, &p2, inv))
    }

    /// The items of entries `names` of `logs/{repo}` (a valid repository name).
    pub(super) fn log_items(&self, repo: &OsStr, names: &[OsString], inv: &mut Inventory) {
        let ty = StorageType::Logs;
        let top = OsStr::new("logs");
        let Some(r) = valid_id_str(repo) else {
            return;
        };
        let global = r == "claude-streaming";
        for f in names {
            let mut it = Item::new(ty, ItemKind::Data, comps(&[top, repo, f]));
            if !global {
                it.repo = Some(r.to_string());
                // `logs/{repo}/{job_id}/` is a run's log directory (run.md §3): it belongs
                // to the job's session and follows its protection.
                it.job = valid_id_str(f).map(str::to_string);
            }
            inv.push(it);
        }
    }

    /// Leftover temp files of interrupted crash-safe registry writes
    /// (`orphaned_worktrees/{repo}/.{job}.json.tmp-*`): swept like other temp files.
    fn scan_registry_temps(&self, inv: &mut Inventory) {
        let top = [OsStr::new("orphaned_worktrees")];
        let Some(d) = self.open(&top, inv) else {
            return;
        };
        for repo in self.names(&d, &top, inv) {
            let Some(r) = valid_id_str(&repo).map(str::to_string) else {
                continue;
            };
            let p2 = [top[0], repo.as_os_str()];
            let Some(rd) = self.open(&p2, inv) else {
                continue;
            };
            for f in self.names(&rd, &p2, inv) {
                if crate::store::atomic::is_temp_name(&f) {
                    let mut it = Item::new(
                        StorageType::Worktrees,
                        ItemKind::Temp,
                        comps(&[top[0], &repo, &f]),
                    );
                    it.repo = Some(r.clone());
                    inv.push(it);
                }
            }
        }
    }

    fn scan_locks(&self, inv: &mut Inventory) {
        let ty = StorageType::State;
        let top = [OsStr::new("resume_locks")];
        let Some(d) = self.open(&top, inv) else {
            return;
        };
        for name in self.names(&d, &top, inv) {
            if name == crate::store::CLEAN_LOCK {
                continue;
            }
            let parts = comps(&[top[0], &name]);
            let Some(id) = strip_valid(&name, ".lock").map(str::to_string) else {
                self.push_invalid(inv, ty, parts, "not a `{job_id}.lock` name");
                continue;
            };
            let mut it = Item::new(ty, ItemKind::Lock, parts);
            it.job = Some(id);
            if let Some(live) = self.lock_liveness(&d, &name) {
                it.rare_mut().lock_live = Some(live);
            }
            inv.push(it);
        }
    }

    /// Storage-format §4.6: live when its flock is held; else, written by this host with a live
    /// pid; else, written by another host within the lease. Unreadable or unparsable → live.
    fn lock_liveness(&self, d: &Dir, name: &OsStr) -> Option<String> {
        match crate::store::lock::probe(d, name) {
            crate::store::lock::Probe::Held => return Some("its flock is held".into()),
            crate::store::lock::Probe::Unknown(why) => {
                return Some(format!("cannot check its flock ({why})"))
            }
            crate::store::lock::Probe::Free => {}
        }
        let info: ResumeLockInfo = match self.read_json(d, name, None) {
            Ok(i) => i,
            Err(e) => return Some(format!("unreadable lock ({e})")),
        };
        if info.hostname == self.host {
            return crate::procs::pid_alive(info.process_id as u64)
                .then(|| format!("pid {} is alive on this host", info.process_id));
        }
        let age = self.now - info.acquired_at.unix_seconds();
        (age < self.lock_lease).then(|| {
            format!(
                "written by host `{}` {}s ago (lease {}s)",
                info.hostname,
                age.max(0),
                self.lock_lease
            )
        })
    }

    fn resolve_owners(&self, inv: &mut Inventory) {
        for (sid, job) in std::mem::take(&mut inv.legacy_jobs) {
            if let Some(s) = inv.sessions.get_mut(&sid) {
                if !s.jobs.contains(&job) {
                    s.jobs.push(job);
                }
            }
        }
        for s in inv.sessions.values() {
            for j in &s.jobs {
                inv.job_owner.entry(j.clone()).or_insert(s.id.clone());
            }
        }
        let n = inv.items.len();
        for i in 0..n {
            if inv.items[i].owner.is_some() || inv.items[i].kind == ItemKind::Invalid {
                continue;
            }
            let owner = if inv.items[i].kind == ItemKind::Worktree {
                let name = inv.items[i].name();
                let parent_owner = inv.items[i]
                    .git
                    .as_ref()
                    .and_then(|g| g.parent)
                    .and_then(|p| inv.items[p].owner.clone());
                parent_owner
                    .or_else(|| worktree_owner_by_name(&name, |s| inv.sessions.contains_key(s)))
            } else {
                inv.items[i].job.as_ref().and_then(|j| {
                    inv.job_owner
                        .get(j)
                        .cloned()
                        .or_else(|| inv.sessions.contains_key(j).then(|| j.clone()))
                })
            };
            inv.items[i].owner = owner;
        }
        // Nested agents follow their parent's owner even when the parent was resolved later.
        for i in 0..n {
            if let Some(p) = inv.items[i].git.as_ref().and_then(|g| g.parent) {
                if inv.items[i].owner.is_none() {
                    inv.items[i].owner = inv.items[p].owner.clone();
                }
            }
        }
        // Jobs and repositories of sessions, from what they own.
        for it in &inv.items {
            let Some(o) = &it.owner else { continue };
            let Some(s) = inv.sessions.get_mut(o) else {
                continue;
            };
            if let Some(j) = &it.job {
                if it.kind == ItemKind::Data && !s.jobs.contains(j) {
                    s.jobs.push(j.clone());
                }
            }
            if s.repo.is_none() {
                s.repo = it
                    .git
                    .as_ref()
                    .and_then(|g| g.repo_name.clone())
                    .or_else(|| it.repo.clone());
            }
        }
        // Items in pseudo-repositories take their session's repository.
        for it in &mut inv.items {
            if it.repo.is_none() {
                it.repo = it.git.as_ref().and_then(|g| g.repo_name.clone());
            }
            if it.repo.is_none() {
                if let Some(s) = it.owner.as_ref().and_then(|o| inv.sessions.get(o)) {
                    it.repo = s.repo.clone();
                }
            }
        }
        // Locks belong to the session of the job they name.
        for it in &mut inv.items {
            if it.kind == ItemKind::Lock && it.owner.is_none() {
                if let Some(j) = &it.job {
                    it.owner = inv
                        .job_owner
                        .get(j)
                        .cloned()
                        .or_else(|| inv.sessions.contains_key(j).then(|| j.clone()));
                }
            }
        }
    }
}

/// The last few parent directories opened, by components from the root, so that a run of
/// items in one directory (the usual case: items are found directory by directory) opens it
/// once instead of once per item. Used to measure, re-check and delete; each entry was opened
/// fd-relative without following symlinks like any other, and a deletion through it still
/// checks the item's device and inode first.
#[derive(Default)]
pub struct ParentCache {
    open: Vec<(PathBuf, Dir)>,
    /// Directories found missing, when [`ParentCache::remembering_missing`].
    missing: Option<Vec<PathBuf>>,
}

impl ParentCache {
    /// How many directories are kept open.
    const SIZE: usize = 6;

    /// A cache that also remembers which directories were missing (`NotFound`), so that each
    /// is looked up once. Only for a dry run: it deletes nothing, so a directory created while
    /// it runs (`resume_locks/` by a writer's first lock, say) only makes its report a moment
    /// older. A real run looks again each time (there, its own `resume_locks/.clean.lock`
    /// makes `resume_locks/` exist anyway).
    pub fn remembering_missing() -> Self {
        ParentCache {
            open: Vec::new(),
            missing: Some(Vec::new()),
        }
    }

    /// The directory at `path` below `root` (a [`RelPath`]'s parent), opened now or earlier in
    /// this run.
    ///
    /// Errors: those of [`Dir::open_path`]; nothing is cached then, except a `NotFound` in a
    /// cache [`ParentCache::remembering_missing`].
    pub fn get(&mut self, root: &Dir, path: &Path) -> std::io::Result<&Dir> {
        let not_found = || std::io::Error::from(std::io::ErrorKind::NotFound);
        if self
            .missing
            .as_ref()
            .is_some_and(|m| m.iter().any(|c| c == path))
        {
            return Err(not_found());
        }
        if let Some(k) = self.open.iter().position(|(c, _)| c == path) {
            let e = self.open.remove(k);
            self.open.push(e);
        } else {
            let refs: Vec<&OsStr> = path.iter().collect();
            let d = match root.open_path(&refs) {
                Ok(d) => d,
                Err(e) => {
                    if let (Some(m), std::io::ErrorKind::NotFound) = (&mut self.missing, e.kind()) {
                        if m.len() < Self::SIZE {
                            m.push(path.to_path_buf());
                        }
                    }
                    return Err(e);
                }
            };
            if self.open.len() == Self::SIZE {
                self.open.remove(0);
            }
            self.open.push((path.to_path_buf(), d));
        }
        Ok(&self.open.last().expect("just pushed").1)
    }
}

/// Walk every item once: bytes on disk and newest mtime (safety §2), mounts and problems.
pub fn measure(root: &Dir, inv: &mut Inventory, wanted: impl Fn(&Item) -> bool) {
    let mut parents = ParentCache::default();
    for i in 0..inv.items.len() {
        if !wanted(&inv.items[i]) {
            continue;
        }
        let it = &inv.items[i];
        let mut paths: Vec<&RelPath> = vec![&it.comps];
        paths.extend(it.rare().extra.iter());
        if let Some((m, _)) = it.git.as_ref().and_then(|g| g.legacy_meta.as_ref()) {
            paths.push(m);
        }
        let (mut bytes, mut newest, mut mounts, mut problems) =
            (0u64, None::<i64>, Vec::new(), Vec::new());
        let mut gz = false;
        let mut dev_ino = None;
        for (k, p) in paths.iter().enumerate() {
            let d = match parents.get(root, p.parent()) {
                Ok(d) => d,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => {
                    problems.push(format!("{}: {}", rel_of(p), crate::error::describe_io(&e)));
                    continue;
                }
            };
            match fsops::walk(d, p.name()) {
                Ok(w) => {
                    if k == 0 {
                        dev_ino = w.dev_ino;
                    }
                    bytes += w.disk_bytes;
                    gz |= w.gz_files > 0;
                    if let Some((s, _)) = w.newest_mtime {
                        newest = Some(newest.map_or(s, |n: i64| n.max(s)));
                    }
                    mounts.extend(w.mounts);
                    problems.extend(w.problems.iter().map(|pr| {
                        format!(
                            "{}/{}: {}",
                            rel_of(p),
                            pr.rel.display(),
                            crate::error::describe_io(&pr.error)
                        )
                    }));
                }
                Err(e) => {
                    problems.push(format!("{}: {}", rel_of(p), crate::error::describe_io(&e)))
                }
            }
        }
        let it = &mut inv.items[i];
        it.bytes = bytes;
        it.newest = newest;
        if !mounts.is_empty() || !problems.is_empty() || gz || it.rare.is_some() {
            let r = it.rare_mut();
            r.mounts = mounts;
            r.problems = problems;
            r.has_gz = gz;
        }
        it.dev_ino = dev_ino;
    }
    // A parent worktree's walk includes its nested agents: count their bytes once.
    for i in 0..inv.items.len() {
        let kids = inv.items[i]
            .git
            .as_ref()
            .map(|g| g.children.clone())
            .unwrap_or_default();
        let sub: u64 = kids.iter().map(|&k| inv.items[k].bytes).sum();
        inv.items[i].bytes = inv.items[i].bytes.saturating_sub(sub);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parent_cache_remembers_missing_only_when_asked() {
        let d = std::env::temp_dir().join(format!("prodigy-parent-cache-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        let root = Dir::open_root(&d).unwrap();
        let locks = Path::new("resume_locks");
        let mut dry = ParentCache::remembering_missing();
        let mut real = ParentCache::default();
        for c in [&mut dry, &mut real] {
            let e = c
                .get(&root, locks)
                .map(|_| ())
                .expect_err("missing at first");
            assert_eq!(e.kind(), std::io::ErrorKind::NotFound);
        }
        std::fs::create_dir(d.join("resume_locks")).unwrap();
        // A real run's cache looks again and finds the directory created since.
        assert!(real.get(&root, locks).is_ok());
        // A dry run's cache answers from memory: one lookup per directory per batch.
        let e = dry
            .get(&root, locks)
            .map(|_| ())
            .expect_err("remembered as missing");
        assert_eq!(e.kind(), std::io::ErrorKind::NotFound);
        // Other paths are looked up as usual.
        std::fs::create_dir(d.join("sessions")).unwrap();
        assert!(dry.get(&root, Path::new("sessions")).is_ok());
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn common_dir_requires_gitdir_line() {
        assert!(common_dir_of(b"nonsense", Path::new("/tmp")).is_err());
        assert!(common_dir_of(b"gitdir: relative/nowhere", Path::new("/tmp")).is_err());
        assert!(common_dir_of(
            b"gitdir: /nonexistent/x/.git/worktrees/a\n",
            Path::new("/tmp")
        )
        .is_err());
    }

    #[test]
    fn rel_escapes_hostile_names() {
        let p = RelPath::new(&[OsStr::new("events"), OsStr::new("a\nb"), OsStr::new("c\\d")]);
        assert_eq!(rel_of(&p), "events/a\\nb/c\\d");
        // The names come back exactly, a backslash included.
        assert_eq!(p.name(), OsStr::new("c\\d"));
        assert_eq!(p.parts().len(), 3);
        assert_eq!(rel_of_parts(p.parent().iter()), "events/a\\nb");
        // Printable names take the short way, to the same text.
        for names in [
            &["sessions", "s-1.json"][..],
            &["state", "r", "mappings", "j ~x.json"],
        ] {
            let os: Vec<&OsStr> = names.iter().map(OsStr::new).collect();
            let p = RelPath::new(&os);
            assert_eq!(rel_of(&p), names.join("/"));
            assert_eq!(rel_of(&p), rel_of_parts(p.0.iter()));
        }
        let del = RelPath::new(&[OsStr::new("logs"), OsStr::new("a\u{7f}")]);
        assert_eq!(rel_of(&del), "logs/a\\u{7f}");
    }

    #[test]
    fn name_and_parent_are_those_of_std_path() {
        for names in [
            &["sessions"][..],
            &["sessions", "s-1.json"],
            &["state", "r", "mapreduce", "jobs", "j\\x"],
            &["a b", "c\nd", "é"],
        ] {
            let os: Vec<&OsStr> = names.iter().map(OsStr::new).collect();
            let p = RelPath::new(&os);
            assert_eq!(p.name(), p.0.file_name().expect("a name"), "{names:?}");
            assert_eq!(p.parent(), p.0.parent().expect("a parent"), "{names:?}");
            assert_eq!(p.parent().iter().count(), names.len() - 1);
        }
    }
}
