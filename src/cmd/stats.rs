//! `prodigy stats`: bytes and items per type and per repository, what `clean` would reclaim now
//! under the default retention, what active, resumable and unknown sessions hold, the largest
//! items, and data Prodigy 0.4.4 left under `$HOME/.prodigy` while `PRODIGY_HOME` points elsewhere.

use super::table;
use crate::clean::inventory::{ItemKind, RelPath};
use crate::clean::{self, in_scope, Count, Mode, Options, Stats};
use crate::cli::Args;
use crate::cmd::clean::human_bytes;
use crate::error::{Exit, Result};
use crate::git::Git;
use crate::store::StorageType;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;

/// How many of the largest items are listed.
pub const LARGEST: usize = 10;

fn count_json(c: &Count) -> serde_json::Value {
    serde_json::json!({"items": c.items, "bytes": c.bytes})
}

/// Totals of 0.4.4's `$HOME/.prodigy` when it is not the root in use.
fn legacy_home(root_path: &std::path::Path, now: i64) -> Option<(PathBuf, Stats)> {
    let (legacy, dir) = super::legacy_home(Some(root_path))?;
    let git = Git::default();
    let opts = Options {
        estimate: true,
        ..Options::default()
    };
    let rep = clean::stream::run(
        &dir,
        &legacy,
        &git,
        now,
        &opts,
        Mode::DryRun,
        &mut (),
        &mut |_, _| {},
    );
    Some((legacy, rep.before))
}

/// One of the largest items (see `LARGEST`). Ordered worst first: fewer bytes, then a later
/// path, so a max-heap's top is the one to drop.
struct Largest {
    bytes: u64,
    comps: RelPath,
    ty: StorageType,
    repo: Option<String>,
}

impl Largest {
    fn rel(&self) -> String {
        crate::clean::inventory::rel_of(&self.comps)
    }
}

impl Ord for Largest {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        o.bytes
            .cmp(&self.bytes)
            .then_with(|| self.comps.cmp(&o.comps))
    }
}

impl PartialOrd for Largest {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}

impl PartialEq for Largest {
    fn eq(&self, o: &Self) -> bool {
        self.cmp(o).is_eq()
    }
}

impl Eq for Largest {}

/// The root a report is about (what the output names).
struct Root<'a> {
    root: &'a crate::store::fsops::Dir,
    root_path: &'a std::path::Path,
    now: i64,
}

/// Run `prodigy stats`.
pub fn run(a: &Args) -> Result<Exit> {
    let (wanted, opened) = super::open_store("stats")?;
    let Some((root_path, root)) = opened else {
        super::print(&format!(
            "prodigy stats: nothing is stored at `{}`\n",
            wanted.display()
        ))?;
        return Ok(Exit::Ok);
    };
    let git = Git::default();
    let (scope, note) = super::resolve_scope(&a.scope, &git);
    let opts = Options {
        scope,
        estimate: true,
        ..Options::default()
    };
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let note = note.as_str();
    // What protected sessions hold, and the largest items, gathered batch by batch: the
    // largest in a heap of at most LARGEST, so memory does not grow with the number of items.
    let mut held: BTreeMap<&'static str, Count> = BTreeMap::new();
    // Files compressed by `clean --compress-after`: how many, their bytes on disk, and their
    // uncompressed size as each gzip trailer records it (ISIZE, modulo 2^32).
    let (mut gz_files, mut gz_disk, mut gz_plain) = (0u64, 0u64, 0u64);
    let mut heap: std::collections::BinaryHeap<Largest> =
        std::collections::BinaryHeap::with_capacity(LARGEST + 1);
    let rep = clean::stream::run(
        &root,
        &root_path,
        &git,
        now,
        &opts,
        Mode::DryRun,
        &mut (),
        &mut |eng, _| {
            for it in eng
                .inv
                .items
                .iter()
                .filter(|it| it.kind != ItemKind::Reference && in_scope(&eng.opts.scope, it))
            {
                if matches!(it.ty, StorageType::Events | StorageType::Logs)
                    && it.kind == ItemKind::Data
                    && it.rare().has_gz
                {
                    for (disk, plain) in gz_sizes(eng.root, &it.comps) {
                        gz_files += 1;
                        gz_disk += disk;
                        gz_plain += plain;
                    }
                }
                if let Some(v) = it.owner.as_ref().and_then(|o| eng.verdicts.get(o)) {
                    if v.class.protected() {
                        let c = held.entry(v.class.word()).or_default();
                        c.items += 1;
                        c.bytes += it.bytes;
                    }
                }
                // The heap's top is the worst kept so far: a full heap takes only better ones.
                let better = heap.len() < LARGEST
                    || heap.peek().is_some_and(|w| {
                        it.bytes > w.bytes || (it.bytes == w.bytes && it.comps < w.comps)
                    });
                if better {
                    heap.push(Largest {
                        bytes: it.bytes,
                        comps: it.comps.clone(),
                        ty: it.ty,
                        repo: it.repo.clone(),
                    });
                    if heap.len() > LARGEST {
                        heap.pop();
                    }
                }
            }
        },
    );
    let largest = heap.into_sorted_vec();
    let eng = Root {
        root: &root,
        root_path: &root_path,
        now,
    };
    {
        let (reclaim, unchecked) = rep.removed_count;
        // Worktrees are counted before `git status` (stats runs no git but `worktree list`):
        // clean keeps the ones with uncommitted or untracked changes.
        let legacy = legacy_home(eng.root_path, eng.now);
        // The quota of the retention file, against what is stored in scope (the whole root when
        // every repository is in scope, as `clean` checks it).
        let max_size = crate::cmd::clean::load_config(eng.root, eng.root_path)
            .map_err(|e| crate::error::Error::usage(format!("stats: {e}")))?
            .max_size;
        let over = max_size.filter(|m| rep.before.total.bytes > *m);
        if a.json {
            let v = serde_json::json!({
                "command": "stats",
                "root": eng.root_path,
                "scope": note,
                "total": count_json(&rep.before.total),
                "types": crate::sort::collect_object(StorageType::ALL.iter().map(|t| (t.word().to_string(), count_json(&rep.before.by_type.get(t.word()).copied().unwrap_or_default())))),
                "repositories": crate::sort::collect_object(rep.before.by_repo.iter().map(|(r, c)| (r.clone(), count_json(c)))),
                "sessions": rep.classes,
                "reclaimable": count_json(&reclaim),
                "reclaimable_worktrees_unchecked": unchecked,
                "held": crate::sort::collect_object(held.iter().map(|(k, c)| (k.to_string(), count_json(c)))),
                "largest": largest.iter().map(|it| serde_json::json!({"type": it.ty.word(), "repository": it.repo, "path": it.rel(), "bytes": it.bytes})).collect::<Vec<_>>(),
                "quota": max_size.map(|m| serde_json::json!({"max_bytes": m, "stored_bytes": rep.before.total.bytes, "over": over.is_some()})),
                "compressed": {"files": gz_files, "bytes": gz_disk, "uncompressed_bytes": gz_plain},
                "legacy_home": legacy.as_ref().map(|(p, s)| serde_json::json!({"root": p, "total": count_json(&s.total)})),
            });
            return super::print(&format!(
                "{}\n",
                serde_json::to_string_pretty(&v).expect("json")
            ))
            .map(|_| Exit::Ok);
        }
        let mut o = String::new();
        writeln!(o, "prodigy stats: {} — {note}", eng.root_path.display()).unwrap();
        writeln!(
            o,
            "Stored: {} items, {}",
            rep.before.total.items,
            human_bytes(rep.before.total.bytes)
        )
        .unwrap();
        let rows: Vec<Vec<String>> = StorageType::ALL
            .iter()
            .map(|t| {
                let c = rep
                    .before
                    .by_type
                    .get(t.word())
                    .copied()
                    .unwrap_or_default();
                vec![
                    t.word().to_string(),
                    c.items.to_string(),
                    human_bytes(c.bytes),
                ]
            })
            .collect();
        o.push_str(&table::render_for(true, &["TYPE", "ITEMS", "SIZE"], &rows));
        let repos: Vec<Vec<String>> = rep
            .before
            .by_repo
            .iter()
            .map(|(r, c)| vec![r.clone(), c.items.to_string(), human_bytes(c.bytes)])
            .collect();
        if repos.len() > 1 {
            o.push('\n');
            o.push_str(&table::render_for(
                true,
                &["REPOSITORY", "ITEMS", "SIZE"],
                &repos,
            ));
        }
        if !rep.classes.is_empty() {
            let parts: Vec<String> = rep
                .classes
                .iter()
                .map(|(c, n)| format!("{n} {c}"))
                .collect();
            writeln!(o, "\nSessions: {}", parts.join(", ")).unwrap();
        }
        writeln!(
            o,
            "Clean would reclaim now (default retention): {} items, {}",
            reclaim.items,
            human_bytes(reclaim.bytes)
        )
        .unwrap();
        if gz_files > 0 {
            writeln!(
                o,
                "Compressed event and log files: {gz_files}, {} on disk, {} uncompressed",
                human_bytes(gz_disk),
                human_bytes(gz_plain)
            )
            .unwrap();
        }
        if unchecked > 0 {
            writeln!(
                o,
                "  (counts {unchecked} worktrees before `git status`; clean keeps any with \
                 uncommitted changes: see `prodigy clean --dry-run`)"
            )
            .unwrap();
        }
        for (class, c) in &held {
            writeln!(
                o,
                "Held by {class} sessions: {} items, {}",
                c.items,
                human_bytes(c.bytes)
            )
            .unwrap();
        }
        if !largest.is_empty() {
            o.push_str("\nLargest items:\n");
            let rows: Vec<Vec<String>> = largest
                .iter()
                .map(|it| vec![it.ty.word().to_string(), it.rel(), human_bytes(it.bytes)])
                .collect();
            o.push_str(&table::render_for(true, &["TYPE", "PATH", "SIZE"], &rows));
        }
        if let Some((p, s)) = &legacy {
            writeln!(
                o,
                "\nAlso under {} (Prodigy 0.4.4 keeps worktrees, logs and the orphan registry there whatever PRODIGY_HOME says): {} items, {}",
                p.display(),
                s.total.items,
                human_bytes(s.total.bytes)
            )
            .unwrap();
        }
        if let Some(m) = over {
            writeln!(
                o,
                "\nwarning: over the quota: {} stored, max-size {} in `{}`; `prodigy clean --dry-run` shows what it would remove",
                human_bytes(rep.before.total.bytes),
                human_bytes(m),
                eng.root_path.join(clean::retention::FILE).display()
            )
            .unwrap();
        }
        super::print(&o).map(|_| Exit::Ok)
    }
}

/// The `.gz` files directly inside item `comps` (a directory, or the file itself): for each,
/// its bytes on disk and its uncompressed size from the gzip trailer (ISIZE: modulo 2^32).
fn gz_sizes(root: &crate::store::fsops::Dir, comps: &clean::inventory::RelPath) -> Vec<(u64, u64)> {
    use crate::store::fsops::Kind;
    use crate::store::gz;
    let parts = comps.parts();
    let one = |d: &crate::store::fsops::Dir, n: &std::ffi::OsStr| {
        let m = d.stat(n).ok().filter(|m| m.kind == Kind::File)?;
        Some((m.disk_bytes, gz::trailer_size(d, n).unwrap_or(0)))
    };
    if gz::is_gz(comps.name()) {
        let Ok(d) = root.open_path(&parts[..parts.len() - 1]) else {
            return Vec::new();
        };
        return one(&d, comps.name()).into_iter().collect();
    }
    let Ok(d) = root.open_path(&parts) else {
        return Vec::new();
    };
    d.names()
        .unwrap_or_default()
        .iter()
        .filter(|n| gz::is_gz(n))
        .filter_map(|n| one(&d, n))
        .collect()
}
