//! `prodigy archive ls FILE` and `prodigy archive restore FILE [--only ID]...`: read the
//! archives `clean --archive` writes (`store::archive`), which are untrusted input: every check
//! runs on the whole archive before anything is printed or written.

use crate::cli::Args;
use crate::error::{Error, Exit, Result};
use crate::store::archive::{self, Scanned};
use std::path::Path;

fn scanned<'a>(cmd: &str, a: &'a Args) -> Result<(std::fs::File, Scanned, &'a Path)> {
    let file: &Path = a.file.as_deref().expect("the parser requires FILE");
    let (f, s) = archive::open_scan(file).map_err(|e| {
        Error::refused(format!(
            "archive {cmd}: {e}; the archive is refused as a whole and nothing was written"
        ))
    })?;
    Ok((f, s, file))
}

fn row(it: &archive::ManifestItem) -> Vec<String> {
    let p = |s: &Option<String>| crate::store::names::printable_str(s.as_deref().unwrap_or("-"));
    vec![
        it.ty.clone(),
        p(&it.repository),
        p(&it.session),
        p(&it.job),
        it.files.to_string(),
        it.bytes.to_string(),
        crate::store::names::printable_str(&it.path),
        crate::store::names::printable_str(&it.reason),
    ]
}

const HEAD: &[&str] = &[
    "TYPE",
    "REPOSITORY",
    "SESSION",
    "JOB",
    "FILES",
    "BYTES",
    "PATH",
    "REASON",
];

/// `prodigy archive ls FILE`.
pub fn ls(a: &Args) -> Result<Exit> {
    let (_, s, file) = scanned("ls", a)?;
    if a.json {
        super::print(&format!(
            "{}\n",
            serde_json::json!({
                "archive": file, "created": s.manifest.created,
                "items": s.manifest.items.iter().map(archive::ManifestItem::to_json).collect::<Vec<_>>(),
            })
        ))?;
    } else {
        let rows: Vec<Vec<String>> = s.manifest.items.iter().map(row).collect();
        super::print(&super::table::render(HEAD, &rows))?;
    }
    Ok(Exit::Ok)
}

/// `prodigy archive restore FILE [--only ID]... [--dry-run]`.
pub fn restore(a: &Args) -> Result<Exit> {
    let (f, s, file) = scanned("restore", a)?;
    let sel = archive::select(&s, &a.only).map_err(|e| {
        Error::usage(format!(
            "archive restore: `{}`: {e}; see `prodigy archive ls {}`",
            file.display(),
            file.display()
        ))
    })?;
    let (wanted, opened) = super::open_store("archive restore")?;
    let refused = |e: String| Error::refused(format!("archive restore: `{}`: {e}", file.display()));
    let root_path = match opened {
        Some((p, root)) => {
            archive::restore(&f, &s, &sel, &root, a.dry_run).map_err(refused)?;
            p
        }
        // Nothing stored: nothing a dry run could find in the way.
        None if a.dry_run => wanted,
        None => {
            std::fs::create_dir_all(&wanted)
                .map_err(|e| Error::io("create storage root", &wanted, &e))?;
            let (p, root) = super::open_store("archive restore")?
                .1
                .ok_or_else(|| Error::fatal(format!("`{}` vanished", wanted.display())))?;
            archive::restore(&f, &s, &sel, &root, false).map_err(refused)?;
            p
        }
    };
    let restored: Vec<&archive::ManifestItem> = s
        .manifest
        .items
        .iter()
        .zip(&sel)
        .filter(|(_, &y)| y)
        .map(|(it, _)| it)
        .collect();
    if a.json {
        super::print(&format!(
            "{}\n",
            serde_json::json!({
                "archive": file, "root": root_path, "dry_run": a.dry_run,
                "restored": restored.iter().map(|i| &i.path).collect::<Vec<_>>(),
            })
        ))?;
    } else if !a.quiet {
        let verb = if a.dry_run {
            "Would restore"
        } else {
            "Restored"
        };
        let mut out = format!(
            "{verb} {} items from `{}` into `{}`\n",
            restored.len(),
            file.display(),
            root_path.display()
        );
        for it in &restored {
            out.push_str(&format!(
                "  {:<9} {}\n",
                it.ty,
                crate::store::names::printable_str(&it.path)
            ));
        }
        super::print(&out)?;
    }
    Ok(Exit::Ok)
}
