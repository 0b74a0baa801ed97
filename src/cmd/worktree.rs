//! `prodigy worktree ls`: every worktree under the root (nested agents and 0.4.4 pseudo-repos
//! included), with its repository, branch, owner and class, age, size and flags; and the
//! worktrees 0.4.4 left in `$HOME/.prodigy/worktrees` while `PRODIGY_HOME` points elsewhere.

use crate::clean::classify::Class;
use crate::clean::inventory::ItemKind;
use crate::clean::{in_scope, Engine, Options};
use crate::cli::{CleanArgs, LsArgs, OrphanArgs};
use crate::cmd::clean::human_bytes;
use crate::error::{Exit, Result};
use crate::git::Git;
use crate::store::StorageType;
use std::fmt::Write as _;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};

/// One row of `worktree ls`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// `root` (under PRODIGY_HOME) or `home` (0.4.4's `$HOME/.prodigy`, listed, never cleaned here).
    pub location: &'static str,
    /// Repository name, if known.
    pub repo: Option<String>,
    /// Worktree directory name.
    pub name: String,
    /// Absolute path.
    pub path: PathBuf,
    /// Checked-out branch (None when detached or unknown).
    pub branch: Option<String>,
    /// Checked-out commit.
    pub head: Option<String>,
    /// Owning session.
    pub owner: Option<String>,
    /// The owner's class (safety §1).
    pub class: Option<Class>,
    /// Seconds since last activity.
    pub age: Option<i64>,
    /// Bytes on disk (nested agent worktrees not included).
    pub bytes: u64,
    /// uncommitted, untracked, unmerged, locked, prunable, unregistered, in-use.
    pub flags: Vec<&'static str>,
    /// Why git facts are missing, when they are.
    pub note: Option<String>,
}

/// Rows for every worktree of one root.
pub fn rows(eng: &mut Engine<'_>, location: &'static str) -> Vec<Row> {
    let mut out = Vec::new();
    for i in 0..eng.inv.items.len() {
        let it = &eng.inv.items[i];
        if it.kind != ItemKind::Worktree || !in_scope(&eng.opts.scope, it) {
            continue;
        }
        let g = it.git.clone().unwrap_or_default();
        let mut row = Row {
            location,
            repo: it.repo.clone(),
            name: it.name(),
            path: eng.root_path.join(it.rel()),
            branch: g.entry.as_ref().and_then(|e| e.branch.clone()),
            head: g.entry.as_ref().and_then(|e| e.head.clone()),
            owner: it.owner.clone(),
            class: it
                .owner
                .as_ref()
                .and_then(|o| eng.verdicts.get(o))
                .map(|v| v.class),
            age: it.newest.map(|n| (eng.now - n).max(0)),
            bytes: it.bytes,
            flags: Vec::new(),
            note: g.error.clone(),
        };
        if eng.in_use_by(it).is_some() {
            row.flags.push("in-use");
        }
        match (&g.entry, &g.common) {
            (Some(e), Some(common)) => {
                if e.locked {
                    row.flags.push("locked");
                }
                match eng.dirty(i) {
                    Ok(lines) => {
                        if lines.iter().any(|l| !l.starts_with("??")) {
                            row.flags.push("uncommitted");
                        }
                        if lines.iter().any(|l| l.starts_with("??")) {
                            row.flags.push("untracked");
                        }
                    }
                    Err(err) => row.note = Some(err),
                }
                if let Some(head) = &e.head {
                    match eng.git.branches_containing(common, head) {
                        Ok(bs) if bs.iter().all(|b| Some(b) == e.branch.as_ref()) => {
                            row.flags.push("unmerged")
                        }
                        Ok(_) => {}
                        Err(err) => row.note = Some(err.to_string()),
                    }
                }
            }
            _ if g.error.is_none() => row.flags.push("unregistered"),
            _ => {}
        }
        out.push(row);
    }
    // git's records of worktrees under this root whose directory is gone.
    for (_, rw, entries) in crate::clean::vanished_records(eng) {
        for e in entries {
            let mut flags = vec!["prunable"];
            if e.locked {
                flags.push("locked");
            }
            out.push(Row {
                location,
                repo: rw.name.clone(),
                name: e
                    .path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                path: e.path.clone(),
                branch: e.branch.clone(),
                head: e.head.clone(),
                owner: None,
                class: None,
                age: None,
                bytes: 0,
                flags,
                note: None,
            });
        }
    }
    crate::sort::sort_by(&mut out, |a, b| (&a.repo, &a.path).cmp(&(&b.repo, &b.path)));
    out
}

/// `1h` style age.
fn age_text(secs: Option<i64>) -> String {
    match secs {
        None => "-".into(),
        Some(s) if s < 3600 => format!("{}m", s / 60),
        Some(s) if s < 86_400 => format!("{}h", s / 3600),
        Some(s) => format!("{}d", s / 86_400),
    }
}

/// Run `prodigy worktree ls`.
pub fn ls(a: &LsArgs) -> Result<Exit> {
    let (wanted, opened) = super::open_store("worktree ls")?;
    let git = Git::default();
    let (scope, scope_note) = super::resolve_scope(&a.scope, &git);
    let opts = Options {
        types: vec![StorageType::Worktrees],
        older_than: Some(0),
        scope,
        discard_changes: false,
        ..Options::default()
    };
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let mut all = Vec::new();
    let mut roots = Vec::new();
    if let Some((root_path, root)) = &opened {
        let mut eng = Engine::new(root, root_path, &git, now, &opts);
        all.extend(rows(&mut eng, "root"));
        roots.push(root_path.clone());
    }
    // 0.4.4 always kept worktrees under $HOME/.prodigy, whatever PRODIGY_HOME said.
    if let Some((lp, ld)) = super::legacy_home(opened.as_ref().map(|(p, _)| p.as_path())) {
        let mut eng = Engine::new(&ld, &lp, &git, now, &opts);
        let mut extra = rows(&mut eng, "home");
        for r in &mut extra {
            r.flags.push("home");
        }
        all.extend(extra);
        roots.push(lp);
    }
    let text = if a.json {
        let mut s = serde_json::to_string_pretty(&json(&wanted, &scope_note, &all)).expect("json");
        s.push('\n');
        s
    } else if std::io::stdout().is_terminal() {
        table(&all, &roots, &scope_note)
    } else {
        tsv(&all)
    };
    super::print(&text)?;
    Ok(Exit::Ok)
}

fn json(root: &Path, scope: &str, rows: &[Row]) -> serde_json::Value {
    serde_json::json!({
        "command": "worktree ls",
        "root": root,
        "scope": scope,
        "worktrees": rows.iter().map(|r| serde_json::json!({
            "location": r.location, "repository": r.repo, "name": r.name, "path": r.path,
            "branch": r.branch, "head": r.head, "owner": r.owner,
            "class": r.class.map(|c| c.word()), "age_seconds": r.age, "bytes": r.bytes,
            "flags": r.flags, "note": r.note,
        })).collect::<Vec<_>>(),
    })
}

fn tsv(rows: &[Row]) -> String {
    let mut o = String::new();
    for r in rows {
        writeln!(
            o,
            "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
            r.repo.as_deref().unwrap_or("-"),
            r.name,
            r.branch.as_deref().unwrap_or("-"),
            r.owner.as_deref().unwrap_or("-"),
            r.class.map(|c| c.word()).unwrap_or("-"),
            r.age.map(|a| a.to_string()).unwrap_or_else(|| "-".into()),
            r.bytes,
            if r.flags.is_empty() {
                "-".to_string()
            } else {
                r.flags.join(",")
            },
            r.path.display()
        )
        .unwrap();
    }
    o
}

fn table(rows: &[Row], roots: &[PathBuf], scope: &str) -> String {
    let head = [
        "REPO", "NAME", "BRANCH", "OWNER", "CLASS", "AGE", "SIZE", "FLAGS",
    ];
    let cells: Vec<[String; 8]> = rows
        .iter()
        .map(|r| {
            [
                r.repo.clone().unwrap_or_else(|| "-".into()),
                r.name.clone(),
                r.branch.clone().unwrap_or_else(|| "-".into()),
                r.owner.clone().unwrap_or_else(|| "-".into()),
                r.class
                    .map(|c| c.word().to_string())
                    .unwrap_or_else(|| "-".into()),
                age_text(r.age),
                human_bytes(r.bytes),
                if r.flags.is_empty() {
                    "-".into()
                } else {
                    r.flags.join(",")
                },
            ]
        })
        .collect();
    let mut w = head.map(str::len);
    for c in &cells {
        for (k, v) in c.iter().enumerate() {
            w[k] = w[k].max(v.chars().count());
        }
    }
    let mut o = String::new();
    let roots: Vec<String> = roots.iter().map(|p| p.display().to_string()).collect();
    writeln!(
        o,
        "{} worktrees in {} — {scope}",
        rows.len(),
        roots.join(", ")
    )
    .unwrap();
    let line = |o: &mut String, c: &[String]| {
        let parts: Vec<String> = c
            .iter()
            .enumerate()
            .map(|(k, v)| format!("{v:<width$}", width = w[k]))
            .collect();
        writeln!(o, "{}", parts.join("  ").trim_end()).unwrap();
    };
    line(&mut o, &head.map(String::from));
    for c in &cells {
        line(&mut o, c);
    }
    o
}

/// Run `prodigy worktree clean-orphaned [JOB_ID]`: remove the worktrees recorded in
/// `orphaned_worktrees/{repo}/{job_id}.json` through the clean engine (every protection applies),
/// then drop the entries that are gone and remove a registry left empty.
pub fn clean_orphaned(a: &OrphanArgs) -> Result<Exit> {
    let name = "worktree clean-orphaned";
    let (wanted, opened) = super::open_store(name)?;
    let Some((root_path, root)) = opened else {
        if !a.quiet {
            super::print(&format!(
                "prodigy {name}: nothing is stored at `{}`\n",
                wanted.display()
            ))?;
        }
        return Ok(Exit::Ok);
    };
    let git = Git::default();
    let (scope, _) = super::resolve_scope(&a.scope, &git);
    let regs = crate::clean::orphan_registries(&root, &scope);
    let selected: Vec<&crate::clean::Registry> = match &a.job {
        Some(j) => {
            let v: Vec<_> = regs.iter().filter(|r| &r.job == j).collect();
            if v.is_empty() {
                return Err(crate::error::Error::usage(format!(
                    "{name}: no orphaned-worktree registry for job `{j}` in scope; run `prodigy {name}` to list them (add --all-repos outside a repository)"
                )));
            }
            v
        }
        None if regs.is_empty() => {
            if !a.quiet {
                super::print(&format!(
                    "prodigy {name}: no orphaned worktrees are recorded\n"
                ))?;
            }
            return Ok(Exit::Ok);
        }
        None if regs.len() > 1 && !a.force => {
            let mut o = String::from("REPOSITORY\tJOB\tENTRIES\tPRESENT\n");
            for r in &regs {
                let n = r
                    .entries
                    .as_ref()
                    .map(|e| e.len().to_string())
                    .unwrap_or_else(|e| format!("unreadable: {e}"));
                writeln!(o, "{}\t{}\t{}\t{}", r.repo, r.job, n, r.live().len()).unwrap();
            }
            o.push_str(&format!(
                "{} registries; give a JOB_ID, or -f to handle them all\n",
                regs.len()
            ));
            super::print(&o)?;
            return Ok(Exit::Ok);
        }
        None => regs.iter().collect(),
    };
    let wt_root = root_path.join("worktrees");
    let mut paths = std::collections::BTreeSet::new();
    for reg in &selected {
        let Ok(entries) = &reg.entries else { continue };
        for e in entries {
            let rel = e.path.strip_prefix(&wt_root).ok().filter(|r| {
                r.components().count() > 0
                    && r.components()
                        .all(|c| crate::store::names::is_valid_id(c.as_os_str()))
            });
            match rel {
                Some(r) => {
                    paths.insert(format!("worktrees/{}", r.display()));
                }
                None if std::fs::symlink_metadata(&e.path).is_ok() => {
                    crate::error::eprint_line(&format!(
                        "prodigy {name}: `{}` (in {}) is not inside `{}`; left as is",
                        e.path.display(),
                        reg.rel,
                        wt_root.display()
                    ));
                }
                None => {}
            }
        }
    }
    let args = CleanArgs {
        types: vec![StorageType::Worktrees],
        older_than: Some(0),
        scope: a.scope.clone(),
        dry_run: a.dry_run,
        force: a.force,
        discard_changes: false,
        json: a.json,
        quiet: a.quiet,
        only_name: None,
        only_paths: Some(paths),
        ..CleanArgs::default()
    };
    super::clean::run(&args, name)
}
