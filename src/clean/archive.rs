//! `--archive DIR` (issue 26): before the first removal, every item the plan removes except
//! worktrees is written to one archive in `DIR` (`store::archive`), which is complete and durable
//! before [`super::execute`] removes anything. An item that could not be archived is kept and
//! reported as a failure; when the archive itself cannot be written, every item it should have
//! held is kept. A dry run walks the items the same way (so it names the ones that could not be
//! archived) and writes nothing.

use super::execute::{entry_of, removal_reason};
use super::*;
use crate::store::archive::{self, Source};
use std::path::PathBuf;

/// The archive of a run, for the report.
#[derive(Clone, Debug, Default)]
pub struct Archived {
    /// The archive's path (in a dry run, the name it would have).
    pub path: PathBuf,
    /// Items archived (or that would be).
    pub items: u64,
    /// Regular files in them, and their bytes.
    pub files: u64,
    /// Bytes of those files.
    pub bytes: u64,
}

/// Archive the items of `order` (the plan's removals) into `dir`; mark those that must be kept
/// in `outcome` (`Some(false)`) and report them.
pub(super) fn archive_items(
    eng: &Engine<'_>,
    dir: &std::path::Path,
    order: &[usize],
    mode: Mode,
    outcome: &mut [Option<bool>],
    rep: &mut Report,
    audit: &mut dyn Audit,
) {
    let picked: Vec<usize> = order
        .iter()
        .copied()
        .filter(|&i| eng.inv.items[i].ty != StorageType::Worktrees)
        .collect();
    if picked.is_empty() {
        return;
    }
    let sources: Vec<Source> = picked
        .iter()
        .map(|&i| {
            let it = &eng.inv.items[i];
            let parts =
                |p: &inventory::RelPath| p.parts().iter().map(|c| c.to_os_string()).collect();
            Source {
                ty: it.ty.word(),
                repo: it.repo.clone(),
                session: it.owner.clone(),
                job: it.job.clone(),
                path: parts(&it.comps),
                also: it.rare().extra.iter().map(parts).collect(),
                reason: removal_reason(eng, i),
            }
        })
        .collect();
    let real = mode == Mode::Real;
    let keep_all = |rep: &mut Report, outcome: &mut [Option<bool>], cause: String| {
        for &i in &picked {
            outcome[i] = Some(false);
            let it = &eng.inv.items[i];
            rep.kept
                .push(entry_of(it, Some(Reason::Failed), "not archived".into()));
        }
        rep.errors.push(Failure {
            path: dir.display().to_string(),
            cause,
            hint: "nothing it would hold was removed; fix the cause (permissions, disk space) and run clean again".into(),
        });
    };
    // The directory: created when missing (a real run only), opened without following a
    // symlink at its last component.
    if real {
        if let Err(e) = std::fs::create_dir_all(dir) {
            let cause = format!(
                "cannot create the archive directory: {}",
                crate::error::describe_io(&e)
            );
            return keep_all(rep, outcome, cause);
        }
    }
    let opened = std::fs::canonicalize(dir).and_then(|p| crate::store::fsops::Dir::open_root(&p));
    let d = match opened {
        Ok(d) => Some(d),
        Err(e) if !real && e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => {
            let cause = format!(
                "cannot open the archive directory: {}",
                crate::error::describe_io(&e)
            );
            return keep_all(rep, outcome, cause);
        }
    };
    let created = crate::store::records::Timestamp::now().to_string();
    let written = match &d {
        Some(d) => archive::write(d, eng.root, &sources, eng.now, &created, real),
        None => archive::write(eng.root, eng.root, &sources, eng.now, &created, false),
    };
    let w = match written {
        Ok(w) => w,
        Err(cause) => return keep_all(rep, outcome, format!("cannot write the archive: {cause}")),
    };
    let mut info = Archived {
        path: dir.join(match &w.name {
            Some(n) => n.clone(),
            None => archive::archive_name(eng.now, 1).into(),
        }),
        ..Archived::default()
    };
    for (k, r) in w.results.into_iter().enumerate() {
        let i = picked[k];
        let it = &eng.inv.items[i];
        match r {
            Ok((files, bytes)) => {
                info.items += 1;
                info.files += files;
                info.bytes += bytes;
            }
            Err(cause) => {
                outcome[i] = Some(false);
                if real {
                    audit.record(&serde_json::json!({
                        "time": crate::store::records::Timestamp::now(),
                        "action": "fail", "type": it.ty.word(), "repository": it.repo,
                        "path": it.rel(), "bytes": it.bytes,
                        "reason": format!("archive: {cause}"),
                    }));
                }
                rep.errors.push(Failure {
                    path: it.rel(),
                    cause: format!("cannot archive: {cause}"),
                    hint: "kept; clean removes only what it archived".into(),
                });
                rep.kept.push(entry_of(
                    it,
                    Some(Reason::Failed),
                    format!("not archived: {cause}"),
                ));
            }
        }
    }
    if info.items > 0 && (w.name.is_some() || !real) {
        if real {
            audit.record(&serde_json::json!({
                "time": crate::store::records::Timestamp::now(),
                "action": "archive", "path": info.path, "items": info.items,
                "files": info.files, "bytes": info.bytes,
            }));
            audit.sync();
        }
        rep.archive = Some(info);
    }
}
