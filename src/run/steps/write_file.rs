//! Paths a step writes to or runs in, confined to its worktree (run.md §2: `write_file`,
//! `output_file`, `working_dir`): relative, no `..`, and no symlink followed on the way — every
//! directory is opened descriptor-relative with `O_NOFOLLOW` ([`crate::store::fsops::Dir`]), so
//! a symlink planted in the worktree cannot lead a write outside it.

use crate::store::fsops::Dir;
use std::ffi::OsStr;
use std::io::{self, Read, Write};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// The components of `rel`, a path relative to the worktree. Errors (one line, naming `what`):
/// absolute, `~`, `..`, or empty.
pub fn components<'a>(rel: &'a str, what: &str) -> Result<Vec<&'a OsStr>, String> {
    let p = Path::new(rel);
    if p.is_absolute() || rel.starts_with('~') {
        return Err(format!(
            "`{what}` must be relative to the worktree, found `{rel}`"
        ));
    }
    let mut out = Vec::new();
    for c in p.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::CurDir => {}
            _ => {
                return Err(format!(
                    "`{what}` must stay inside the worktree (no `..`), found `{rel}`"
                ))
            }
        }
    }
    Ok(out)
}

/// ELOOP or ENOTDIR: what opening a component with `O_NOFOLLOW|O_DIRECTORY` says of a symlink.
#[cfg(unix)]
fn is_symlink_refusal(e: &io::Error) -> bool {
    e.raw_os_error() == Some(libc::ELOOP) || e.raw_os_error() == Some(libc::ENOTDIR)
}

#[cfg(not(unix))]
fn is_symlink_refusal(_: &io::Error) -> bool {
    false
}

fn io_msg(what: &str, rel: &str, e: &io::Error) -> String {
    let why = if is_symlink_refusal(e) {
        "a component is a symlink or not a directory (symlinks are not followed)".to_string()
    } else {
        crate::error::describe_io(e)
    };
    format!("`{what}` `{rel}`: {why}")
}

/// The directory `rel` under `root` (the worktree), checked component by component without
/// following a symlink. `rel` empty or `.` is `root`. Errors: see [`components`]; a component
/// that is missing, a symlink, or not a directory.
pub fn resolve_dir(root: &Path, rel: &str, what: &str) -> Result<PathBuf, String> {
    let comps = components(rel, what)?;
    let d = Dir::open_root(root).map_err(|e| io_msg(what, rel, &e))?;
    d.open_path(&comps).map_err(|e| io_msg(what, rel, &e))?;
    Ok(comps.iter().fold(root.to_path_buf(), |p, c| p.join(c)))
}

/// The text of the file `rel` under `root` (at most 1 MiB), read without following a symlink
/// (`validate.result_file`). Errors (one line, naming `what`): see [`components`]; a missing
/// file, a symlink on the way, or not UTF-8.
pub fn read_confined(root: &Path, rel: &str, what: &str) -> Result<String, String> {
    let comps = components(rel, what)?;
    let Some((name, parents)) = comps.split_last() else {
        return Err(format!("`{what}` names no file, found `{rel}`"));
    };
    let d = Dir::open_root(root).map_err(|e| io_msg(what, rel, &e))?;
    let d = d.open_path(parents).map_err(|e| io_msg(what, rel, &e))?;
    let f = d
        .open_file(name, false, false)
        .map_err(|e| io_msg(what, rel, &e))?;
    let mut s = String::new();
    f.take(1 << 20)
        .read_to_string(&mut s)
        .map_err(|e| io_msg(what, rel, &e))?;
    Ok(s)
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// Write what `data` yields to `rel` under `root`, crash-safely: a temp file beside the target
/// (`.{name}.tmp-{pid}-{nanos}-{n}`), fsync, chmod `mode`, rename over the target, fsync the
/// directory. Missing parent directories are created (mode 0o700, as `mkdirat` here makes them) when `create_dirs`, else an
/// error. Returns the bytes written. Nothing outside `root` is touched: no `..`, no symlink
/// followed (also not at the target: a symlink there is replaced, never written through).
pub fn write_confined(
    root: &Path,
    rel: &str,
    data: &mut dyn Read,
    mode: u32,
    create_dirs: bool,
    what: &str,
) -> Result<u64, String> {
    let comps = components(rel, what)?;
    let Some((name, parents)) = comps.split_last() else {
        return Err(format!("`{what}` names no file, found `{rel}`"));
    };
    let mut dir = Dir::open_root(root).map_err(|e| io_msg(what, rel, &e))?;
    for c in parents {
        dir = match dir.open_dir(c) {
            Ok(d) => d,
            Err(e) if e.kind() == io::ErrorKind::NotFound && create_dirs => {
                match dir.create_dir(c) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                    Err(e) => return Err(io_msg(what, rel, &e)),
                }
                dir.open_dir(c).map_err(|e| io_msg(what, rel, &e))?
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(format!(
                    "`{what}` `{rel}`: the directory `{}` does not exist; add `create_dirs: true`",
                    c.to_string_lossy()
                ))
            }
            Err(e) => return Err(io_msg(what, rel, &e)),
        };
    }
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let tmp = format!(
        ".{}.tmp-{}-{nanos}-{}",
        name.to_string_lossy(),
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst)
    );
    let tmp = OsStr::new(&tmp);
    let result = (|| -> io::Result<u64> {
        let mut f = dir.open_file(tmp, true, true)?;
        let n = io::copy(data, &mut f)?;
        f.flush()?;
        f.sync_all()?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            f.set_permissions(std::fs::Permissions::from_mode(mode))?;
        }
        #[cfg(not(unix))]
        let _ = mode;
        dir.replace(tmp, name)?;
        dir.sync()?;
        Ok(n)
    })();
    match result {
        Ok(n) => Ok(n),
        Err(e) => {
            let _ = dir.unlink(tmp);
            Err(io_msg(what, rel, &e))
        }
    }
}

/// A `write_file` step (run.md §2): `content` (already interpolated) checked and pretty-printed
/// by `format` (`json`: parsed then pretty-printed; `yaml`: parsed then re-emitted; `text`: as
/// it is; no newline added, as in 0.4.4), written to `rel` under `root` by [`write_confined`]
/// with `mode`. Returns the bytes written. Errors: content that does not parse as its format,
/// and every error of [`write_confined`].
pub fn write_file(
    root: &Path,
    rel: &str,
    content: &str,
    format: &str,
    mode: u32,
    create_dirs: bool,
) -> Result<u64, String> {
    let bytes = match format {
        "json" => {
            let v: serde_json::Value = serde_json::from_str(content).map_err(|e| {
                format!("`write_file` `{rel}`: the content is not valid JSON ({e})")
            })?;
            serde_json::to_string_pretty(&v).map_err(|e| e.to_string())?
        }
        "yaml" => {
            let v: serde_yaml_ng::Value = serde_yaml_ng::from_str(content).map_err(|e| {
                format!(
                    "`write_file` `{rel}`: the content is not valid YAML ({})",
                    crate::store::names::printable_str(&e.to_string())
                )
            })?;
            serde_yaml_ng::to_string(&v).map_err(|e| e.to_string())?
        }
        _ => content.to_string(),
    };
    write_confined(
        root,
        rel,
        &mut bytes.as_bytes(),
        mode,
        create_dirs,
        "write_file",
    )
}
