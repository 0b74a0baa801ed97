//! Archives of removed items (issue 26): `DIR/prodigy-{YYYYmmddTHHMMSS}.tar.gz`.
//!
//! The format is a gzip stream (one member, `flate2`'s pure-Rust backend) of a POSIX ustar
//! archive that holds regular files and directories only, each path relative to the storage root
//! (`events/web/job-1/events-1.jsonl`), a directory's entry before its contents, the entries of
//! one item together, and last a regular file `prodigy-manifest.json` ([`Manifest`]). Sizes,
//! mtimes (whole seconds) and modes are octal; names longer than 100 bytes use the ustar prefix
//! field; a path that does not fit (255 bytes) is refused. The writer and reader are ours, a few
//! hundred lines, instead of the `tar` crate: the static binaries have little room (issue 26).
//!
//! [`write`] reads every file fd-relative from the root, one component at a time without
//! following a symlink (`fsops::Dir`, `O_NOFOLLOW`), refuses anything that is not a regular file
//! or a directory, a name outside the grammar and a mount point, and writes to a temp file in
//! `DIR` (`O_EXCL|O_NOFOLLOW`, mode 0600) that is fsynced, renamed without replacing, and the
//! directory fsynced: the archive is complete on disk before the caller removes anything.
//!
//! An archive is untrusted input. [`scan`] reads a whole archive and refuses, naming the entry,
//! a bad checksum or magic, any entry type but file and directory (symlinks, hard links,
//! devices, FIFOs, pax and GNU extensions), a path that is absolute, has `.`/`..`/empty
//! components, a name outside the grammar or a top-level directory that is not one of the
//! archived types, a duplicate, truncated or corrupt gzip or tar data, and a manifest that
//! disagrees with the entries (an entry no item owns, a count or byte total that differs).
//! [`restore`] scans first, checks that nothing it would write exists, and only then writes,
//! each item under a temp name (files fsynced, mtimes set) renamed into place without
//! replacing and the parent fsynced: a kill leaves an item whole or not there (plus a temp
//! name `clean` sweeps).

use crate::store::fsops::{Dir, Kind};
use serde_json::{json, Value};
use std::ffi::{OsStr, OsString};
use std::io::{self, Read, Seek, Write};
use std::path::Path;

/// Name of the manifest entry, the archive's last.
pub const MANIFEST: &str = "prodigy-manifest.json";
/// `format` of a manifest.
pub const FORMAT: &str = "prodigy-archive";
/// The top-level directories an archive may hold (every type but worktrees, and resume locks).
pub const TOPS: &[&str] = &["sessions", "events", "logs", "dlq", "state", "resume_locks"];
/// Largest manifest read, bytes.
const MAX_MANIFEST: u64 = 64 << 20;
/// Deepest path below the root, components.
const MAX_DEPTH: usize = 24;
/// Largest ustar size field (11 octal digits), bytes.
const MAX_SIZE: u64 = 0o77_777_777_777;
const BLOCK: usize = 512;

/// The last entry of an archive: what it holds and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// Always [`FORMAT`].
    pub format: String,
    /// 1.
    pub version: u32,
    /// When the archive was written, RFC 3339 UTC.
    pub created: String,
    /// The items, in archive order.
    pub items: Vec<ManifestItem>,
}

/// One archived item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestItem {
    /// Storage type word (`sessions`, `events`, `logs`, `dlq`, `state`).
    pub ty: String,
    /// Repository, when known.
    pub repository: Option<String>,
    /// Owning session, when known.
    pub session: Option<String>,
    /// Job, when known.
    pub job: Option<String>,
    /// Path relative to the root.
    pub path: String,
    /// Other files that went with it (a job's mapping files), relative to the root.
    pub also: Vec<String>,
    /// Regular files archived for it.
    pub files: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Why `clean` removed it.
    pub reason: String,
}

// By hand on `serde_json::Value` rather than derived: the derives cost the static binary
// more than this (issue 26's size budget).
impl ManifestItem {
    /// The item as the manifest stores it (and `archive ls --json` prints it).
    pub fn to_json(&self) -> Value {
        json!({
            "type": self.ty, "repository": self.repository, "session": self.session,
            "job": self.job, "path": self.path, "also": self.also, "files": self.files,
            "bytes": self.bytes, "reason": self.reason,
        })
    }

    fn from_json(v: &Value) -> Option<ManifestItem> {
        let o = v.as_object()?;
        let s = |k: &str| o.get(k)?.as_str().map(String::from);
        let opt = |k: &str| match o.get(k)? {
            Value::Null => Some(None),
            Value::String(x) => Some(Some(x.clone())),
            _ => None,
        };
        let also = o.get("also")?.as_array()?;
        (o.len() == 9).then_some(())?;
        Some(ManifestItem {
            ty: s("type")?,
            repository: opt("repository")?,
            session: opt("session")?,
            job: opt("job")?,
            path: s("path")?,
            also: {
                let mut v = Vec::new();
                for a in also {
                    v.push(a.as_str()?.to_string());
                }
                v
            },
            files: o.get("files")?.as_u64()?,
            bytes: o.get("bytes")?.as_u64()?,
            reason: s("reason")?,
        })
    }
}

impl Manifest {
    fn to_json(&self) -> Value {
        json!({
            "format": self.format, "version": self.version, "created": self.created,
            "items": self.items.iter().map(ManifestItem::to_json).collect::<Vec<_>>(),
        })
    }

    fn from_json(v: &Value) -> Option<Manifest> {
        let o = v.as_object()?;
        (o.len() == 4).then_some(())?;
        Some(Manifest {
            format: o.get("format")?.as_str()?.into(),
            version: u32::try_from(o.get("version")?.as_u64()?).ok()?,
            created: o.get("created")?.as_str()?.into(),
            items: {
                let mut v = Vec::new();
                for it in o.get("items")?.as_array()? {
                    v.push(ManifestItem::from_json(it)?);
                }
                v
            },
        })
    }
}

/// An item to archive (what `clean` knows about it).
#[derive(Debug, Clone)]
pub struct Source {
    /// Storage type word.
    pub ty: &'static str,
    /// Repository.
    pub repo: Option<String>,
    /// Owning session.
    pub session: Option<String>,
    /// Job.
    pub job: Option<String>,
    /// Its path from the root, raw names.
    pub path: Vec<OsString>,
    /// The other paths that go with it.
    pub also: Vec<Vec<OsString>>,
    /// Why it goes.
    pub reason: String,
}

/// One entry's header as read or to be written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// Path relative to the root, `/`-separated, no trailing `/`.
    pub path: String,
    /// A directory (else a regular file).
    pub dir: bool,
    /// Bytes of data (0 for a directory).
    pub size: u64,
    /// Modification time, Unix seconds.
    pub mtime: i64,
    /// Permission bits.
    pub mode: u32,
}

// ---------------------------------------------------------------- ustar, writing

fn octal(field: &mut [u8], v: u64) {
    let s = format!("{v:0w$o}", w = field.len() - 1);
    field[..s.len()].copy_from_slice(s.as_bytes());
}

/// The 512-byte ustar header of `h`; `Err` when the path does not fit.
pub fn header_block(h: &Header) -> Result<[u8; BLOCK], String> {
    let mut b = [0u8; BLOCK];
    let full = if h.dir {
        format!("{}/", h.path)
    } else {
        h.path.clone()
    };
    let (prefix, name) = if full.len() <= 100 {
        ("", full.as_str())
    } else {
        // The last `/` that leaves a name of at most 100 bytes and a prefix of at most 155.
        let cut = full[..full.len() - 1]
            .match_indices('/')
            .map(|(i, _)| i)
            .find(|&i| full.len() - i - 1 <= 100 && i <= 155)
            .ok_or_else(|| format!("path `{}` is too long for the archive", h.path))?;
        (&full[..cut], &full[cut + 1..])
    };
    if h.size > MAX_SIZE {
        return Err(format!("`{}` is too large for the archive", h.path));
    }
    b[..name.len()].copy_from_slice(name.as_bytes());
    octal(&mut b[100..108], u64::from(h.mode & 0o7777));
    octal(&mut b[108..116], 0);
    octal(&mut b[116..124], 0);
    octal(&mut b[124..136], h.size);
    octal(&mut b[136..148], h.mtime.clamp(0, MAX_SIZE as i64) as u64);
    b[156] = if h.dir { b'5' } else { b'0' };
    b[257..263].copy_from_slice(b"ustar\0");
    b[263..265].copy_from_slice(b"00");
    b[345..345 + prefix.len()].copy_from_slice(prefix.as_bytes());
    b[148..156].fill(b' ');
    let sum: u32 = b.iter().map(|&c| u32::from(c)).sum();
    let s = format!("{sum:06o}\0 ");
    b[148..156].copy_from_slice(s.as_bytes());
    Ok(b)
}

fn pad(n: u64) -> usize {
    (BLOCK - (n % BLOCK as u64) as usize) % BLOCK
}

// ---------------------------------------------------------------- ustar, reading

/// Reads the entries of a ustar stream (already decompressed), checking each header.
pub struct Reader<'a> {
    r: &'a mut dyn Read,
    /// Data bytes of the current entry not read yet, and its padding.
    left: u64,
    pad: usize,
    done: bool,
}

fn parse_octal(f: &[u8], what: &str) -> Result<u64, String> {
    let s: &[u8] = {
        let start = f.iter().position(|&c| c != b' ').unwrap_or(f.len());
        let end = f[start..]
            .iter()
            .position(|&c| c == 0 || c == b' ')
            .map_or(f.len(), |e| start + e);
        if f[end..].iter().any(|&c| c != 0 && c != b' ') {
            return Err(format!("bad {what} field"));
        }
        &f[start..end]
    };
    if s.is_empty() {
        return Err(format!("bad {what} field"));
    }
    s.iter().try_fold(0u64, |acc, &c| match c {
        b'0'..=b'7' => acc
            .checked_mul(8)
            .map(|a| a + u64::from(c - b'0'))
            .ok_or_else(|| format!("bad {what} field")),
        _ => Err(format!("bad {what} field")),
    })
}

fn text(f: &[u8]) -> Result<&str, String> {
    let end = f.iter().position(|&c| c == 0).unwrap_or(f.len());
    std::str::from_utf8(&f[..end]).map_err(|_| "a name that is not UTF-8".to_string())
}

impl<'a> Reader<'a> {
    /// A reader of the tar stream `r`.
    pub fn new(r: &'a mut dyn Read) -> Self {
        Reader {
            r,
            left: 0,
            pad: 0,
            done: false,
        }
    }

    fn fill(&mut self, buf: &mut [u8]) -> Result<(), String> {
        self.r.read_exact(buf).map_err(|e| {
            if e.kind() == io::ErrorKind::UnexpectedEof {
                "truncated archive".to_string()
            } else {
                crate::error::describe_io(&e)
            }
        })
    }

    /// The next entry's header, `None` at the end-of-archive blocks. Skips what was not read of
    /// the previous entry's data. Errors are phrases ("symlink entry refused").
    pub fn next_header(&mut self) -> Result<Option<Header>, String> {
        if self.done {
            return Ok(None);
        }
        self.skip()?;
        let mut b = [0u8; BLOCK];
        self.fill(&mut b)?;
        if b.iter().all(|&c| c == 0) {
            self.done = true;
            return Ok(None);
        }
        let want = parse_octal(&b[148..156], "checksum")?;
        let sum: u64 = b
            .iter()
            .enumerate()
            .map(|(i, &c)| u64::from(if (148..156).contains(&i) { b' ' } else { c }))
            .sum();
        if sum != want {
            return Err("bad header checksum".into());
        }
        if &b[257..263] != b"ustar\0" || &b[263..265] != b"00" {
            return Err("not a ustar header".into());
        }
        let dir = match b[156] {
            b'0' | 0 => false,
            b'5' => true,
            b'1' => return Err("hard link entry refused".into()),
            b'2' => return Err("symlink entry refused".into()),
            b'3' | b'4' => return Err("device entry refused".into()),
            b'6' => return Err("fifo entry refused".into()),
            t => {
                return Err(format!(
                    "entry type `{}` refused",
                    char::from(t).escape_default()
                ))
            }
        };
        let name = text(&b[..100])?;
        let prefix = text(&b[345..500])?;
        let mut path = if prefix.is_empty() {
            name.to_string()
        } else {
            format!("{prefix}/{name}")
        };
        if dir {
            if let Some(p) = path.strip_suffix('/') {
                path = p.to_string();
            }
        }
        let size = parse_octal(&b[124..136], "size")?;
        if dir && size != 0 {
            return Err(format!("directory `{path}` with data"));
        }
        let h = Header {
            path,
            dir,
            size,
            mtime: parse_octal(&b[136..148], "mtime")? as i64,
            mode: (parse_octal(&b[100..108], "mode")? & 0o777) as u32,
        };
        self.left = size;
        self.pad = pad(size);
        Ok(Some(h))
    }

    /// Copy the current entry's data to `w` (exactly its declared size, or an error).
    pub fn copy_to(&mut self, w: &mut dyn Write) -> Result<u64, String> {
        let mut buf = [0u8; 16 << 10];
        let mut n = 0;
        while self.left > 0 {
            let k = (self.left as usize).min(buf.len());
            self.fill(&mut buf[..k])?;
            w.write_all(&buf[..k])
                .map_err(|e| crate::error::describe_io(&e))?;
            self.left -= k as u64;
            n += k as u64;
        }
        Ok(n)
    }

    fn skip(&mut self) -> Result<(), String> {
        self.copy_to(&mut io::sink())?;
        let mut p = [0u8; BLOCK];
        let k = self.pad;
        self.pad = 0;
        self.fill(&mut p[..k])
    }
}

// ---------------------------------------------------------------- paths

/// Check a path from an archive against the layout: relative, `/`-separated names of the id
/// grammar (or the temp-file shape of a crash-safe write), under one of [`TOPS`].
pub fn check_path(p: &str) -> Result<(), String> {
    let comps: Vec<&str> = p.split('/').collect();
    let bad = |why: &str| Err(format!("path `{}` refused: {why}", names_printable(p)));
    if p.starts_with('/') {
        return bad("absolute");
    }
    if comps.len() > MAX_DEPTH {
        return bad("too deep");
    }
    for c in &comps {
        if c.is_empty() || *c == "." || *c == ".." {
            return bad("empty, `.` or `..` component");
        }
        if !crate::store::names::is_valid_id_bytes(c.as_bytes())
            && !crate::store::atomic::is_temp_name(OsStr::new(c))
        {
            return bad("a name outside the storage grammar");
        }
    }
    if !TOPS.contains(&comps[0]) || comps.len() < 2 {
        return bad("not under sessions/, events/, logs/, dlq/, state/ or resume_locks/");
    }
    Ok(())
}

fn names_printable(p: &str) -> String {
    crate::store::names::printable_str(p)
}

fn rel(parts: &[OsString]) -> Result<String, String> {
    let mut v = Vec::new();
    for p in parts {
        match p.to_str() {
            Some(s) => v.push(s),
            None => {
                return Err(format!(
                    "a name that is not UTF-8: `{}`",
                    crate::store::names::printable(p)
                ))
            }
        }
    }
    let s = v.join("/");
    check_path(&s)?;
    Ok(s)
}

// ---------------------------------------------------------------- writing an archive

/// What [`write`] did.
#[derive(Debug, Default)]
pub struct Written {
    /// The archive's final name in `DIR` (None when nothing could be archived, or in a check).
    pub name: Option<OsString>,
    /// Per source: `Ok((files, bytes))` archived, or why not (the item must then be kept).
    pub results: Vec<Result<(u64, u64), String>>,
}

/// "cannot {what} `{path}`: {error}", the one shape of the I/O errors here.
#[inline(never)]
fn cannot(what: &str, path: &str, e: io::Error) -> String {
    format!(
        "cannot {what} `{}`: {}",
        names_printable(path),
        crate::error::describe_io(&e)
    )
}

/// Open the directory holding checked path `p` below `root` (no symlink followed) and give
/// the last name.
fn parent_of<'p>(root: &Dir, p: &'p str) -> io::Result<(Dir, &'p OsStr)> {
    let c: Vec<&OsStr> = p.split('/').map(OsStr::new).collect();
    let (name, up) = c.split_last().expect("a checked path has components");
    Ok((root.open_path(up)?, name))
}

/// Walk checked path `p` (a file or a directory tree) fd-relative from `root`: every entry a
/// regular file or a directory on the root's device whose name fits. Pushes each entry's header
/// (a file's size and mode are taken again when it is written).
fn walk(root: &Dir, p: &str, out: &mut Vec<Header>) -> Result<(), String> {
    check_path(p)?;
    let (pd, name) = parent_of(root, p).map_err(|e| cannot("open the parent of", p, e))?;
    let m = pd.stat(name).map_err(|e| cannot("stat", p, e))?;
    let dir = match m.kind {
        Kind::File => false,
        Kind::Dir if m.dev == root.dev() => true,
        Kind::Dir => return Err(format!("`{p}` is on another filesystem")),
        Kind::Symlink => return Err(format!("`{p}` is a symlink; not followed")),
        _ => return Err(format!("`{p}` is not a regular file or directory")),
    };
    let h = Header {
        path: p.into(),
        dir,
        size: if dir { 0 } else { m.len },
        mtime: m.mtime_secs,
        mode: 0o700,
    };
    header_block(&h)?; // the path fits, or the item is not archived
    out.push(h);
    if dir {
        let d = pd.open_dir(name).map_err(|e| cannot("open", p, e))?;
        let mut names = d.names().map_err(|e| cannot("list", p, e))?;
        crate::sort::sort(&mut names);
        for n in names {
            let n = n
                .to_str()
                .ok_or_else(|| format!("`{p}` holds a name that is not UTF-8"))?;
            walk(root, &format!("{p}/{n}"), out)?;
        }
    }
    Ok(())
}

/// The file name of an archive written at Unix time `now`, with `-{n}` for n > 1.
pub fn archive_name(now: i64, n: u32) -> String {
    let t =
        time::OffsetDateTime::from_unix_timestamp(now).unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let base = format!(
        "prodigy-{:04}{:02}{:02}T{:02}{:02}{:02}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    );
    if n > 1 {
        format!("{base}-{n}.tar.gz")
    } else {
        format!("{base}.tar.gz")
    }
}

/// True for a temp file [`write`] left in the archive directory when it was killed.
pub fn is_leftover(name: &OsStr) -> bool {
    let b = name.as_encoded_bytes();
    crate::store::atomic::is_temp_name(name) && b.starts_with(b".prodigy-") && {
        b.windows(11).any(|w| w == b".tar.gz.tmp")
    }
}

/// The pid in a temp name `.NAME.tmp-{pid}-{nanos}-{n}`.
fn leftover_pid(name: &OsStr) -> Option<u64> {
    let s = name.to_str()?;
    let rest = &s[s.rfind(".tmp-")? + 5..];
    rest.split('-').next()?.parse().ok()
}

/// Archive `sources` into `dir` (a directory, opened by the caller). `real == false` only walks
/// (the dry run: which items could be archived). Items that cannot be walked are left out and
/// their error returned in [`Written::results`]; an error writing the archive itself is `Err`,
/// and then no item counts as archived. `now` names the archive; `created` goes in the manifest.
pub fn write(
    dir: &Dir,
    root: &Dir,
    sources: &[Source],
    now: i64,
    created: &str,
    real: bool,
) -> Result<Written, String> {
    let mut out = Written::default();
    let mut plans = Vec::new();
    for s in sources {
        let mut found = Vec::new();
        let mut also = Vec::new();
        let r = (|| {
            let path = rel(&s.path)?;
            walk(root, &path, &mut found)?;
            for a in &s.also {
                let a = rel(a)?;
                match walk(root, &a, &mut found) {
                    // A mapping gone since the scan is not an error.
                    Err(e) if e.contains("No such file") => {}
                    r => {
                        r?;
                        also.push(a);
                    }
                }
            }
            Ok(path)
        })();
        let files = found.iter().filter(|f| !f.dir).count() as u64;
        let bytes = found.iter().map(|f| f.size).sum();
        out.results
            .push(r.as_ref().map(|_| (files, bytes)).map_err(String::clone));
        if let Ok(path) = r {
            let item = ManifestItem {
                ty: s.ty.into(),
                repository: s.repo.clone(),
                session: s.session.clone(),
                job: s.job.clone(),
                path,
                also,
                files,
                bytes: 0,
                reason: s.reason.clone(),
            };
            plans.push((out.results.len() - 1, found, item));
        }
    }
    if !real || plans.is_empty() {
        return Ok(out);
    }
    // Leftovers of a killed run: a temp name whose writer is gone (the pid is in the name;
    // another root's clean may be writing here right now).
    for n in dir.names().unwrap_or_default() {
        if is_leftover(&n) && !leftover_pid(&n).is_some_and(crate::procs::pid_alive) {
            let _ = dir.unlink(&n);
        }
    }
    let mut name = OsString::from(archive_name(now, 1));
    let tmp = crate::store::atomic::temp_name(&name);
    let tmp_s = tmp.to_string_lossy().into_owned();
    let file = dir
        .create_new(&tmp)
        .map_err(|e| cannot("create", &tmp_s, e))?;
    let mut manifest = Manifest {
        format: FORMAT.into(),
        version: 1,
        created: created.into(),
        items: Vec::new(),
    };
    let mut enc = flate2::write::GzEncoder::new(
        io::BufWriter::with_capacity(64 << 10, file),
        flate2::Compression::default(),
    );
    let mut buf = vec![0u8; 64 << 10];
    let body = (|| -> Result<(), String> {
        let w = |e: io::Error| cannot("write", &tmp_s, e);
        for (k, found, mut item) in plans {
            for h in found {
                let mut h = h;
                let mut src = None;
                if !h.dir {
                    let (pd, n) =
                        parent_of(root, &h.path).map_err(|e| cannot("read", &h.path, e))?;
                    let f = pd
                        .open_file(n, false, false)
                        .map_err(|e| cannot("read", &h.path, e))?;
                    let m = f.metadata().map_err(|e| cannot("read", &h.path, e))?;
                    #[cfg(unix)]
                    let mode = std::os::unix::fs::PermissionsExt::mode(&m.permissions());
                    #[cfg(not(unix))]
                    let mode = if m.permissions().readonly() {
                        0o444
                    } else {
                        0o644
                    };
                    (h.size, h.mode) = (m.len(), mode);
                    src = Some((f, m));
                }
                enc.write_all(&header_block(&h)?).map_err(w)?;
                let Some((mut f, m0)) = src else { continue };
                let mut left = h.size;
                while left > 0 {
                    let k = (left as usize).min(buf.len());
                    f.read_exact(&mut buf[..k])
                        .map_err(|e| cannot("read", &h.path, e))?;
                    enc.write_all(&buf[..k]).map_err(w)?;
                    left -= k as u64;
                }
                let m1 = f.metadata().map_err(|e| cannot("read", &h.path, e))?;
                if m1.len() != h.size || m1.modified().ok() != m0.modified().ok() {
                    return Err(format!("`{}` changed while it was archived", h.path));
                }
                enc.write_all(&[0u8; BLOCK][..pad(h.size)]).map_err(w)?;
                item.bytes += h.size;
            }
            out.results[k] = Ok((item.files, item.bytes));
            manifest.items.push(item);
        }
        let json = manifest.to_json().to_string();
        let h = Header {
            path: MANIFEST.into(),
            dir: false,
            size: json.len() as u64,
            mtime: now,
            mode: 0o600,
        };
        enc.write_all(&header_block(&h)?).map_err(w)?;
        enc.write_all(json.as_bytes()).map_err(w)?;
        enc.write_all(&[0u8; 3 * BLOCK][..pad(h.size) + 2 * BLOCK])
            .map_err(w)?;
        let f = enc
            .finish()
            .map_err(w)?
            .into_inner()
            .map_err(|e| w(e.into_error()))?;
        // The data must be on disk before the name points at it.
        f.sync_all().map_err(w)?;
        // Never replacing: a name taken (two runs in one second) moves on to `-2`, `-3` ...
        let mut n = 1;
        loop {
            match dir.rename(&tmp, dir, &name) {
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists && n < 1000 => {
                    n += 1;
                    name = OsString::from(archive_name(now, n));
                }
                r => return r.map_err(w),
            }
        }
    })();
    if let Err(e) = body {
        let _ = dir.unlink(&tmp);
        return Err(e);
    }
    // The rename must be durable before anything it holds is removed.
    dir.sync().map_err(|e| cannot("sync", &tmp_s, e))?;
    out.name = Some(name);
    Ok(out)
}

// ---------------------------------------------------------------- reading an archive

/// Everything [`scan`] read: the headers in order and the manifest.
#[derive(Debug)]
pub struct Scanned {
    /// Entries before the manifest, in order.
    pub entries: Vec<Header>,
    /// The manifest.
    pub manifest: Manifest,
    /// For each entry, the index of its item in the manifest.
    pub owner: Vec<usize>,
}

/// The item of `path`: the one whose path or `also` is `path` or an ancestor of it, looked
/// up in `bases` (`{path}\n{index}` of every item's path and `also`, sorted: `\n` sorts before
/// any name, so this is the order of the paths).
fn owner_of(bases: &[String], path: &str) -> Option<usize> {
    let mut p = path;
    loop {
        if let Ok(k) = bases.binary_search_by(|b| b.split('\n').next().unwrap_or("").cmp(p)) {
            return bases[k].rsplit('\n').next()?.parse().ok();
        }
        p = &p[..p.rfind('/')?];
    }
}

/// Read a whole archive and check it (see the module comment); `r` gives the tar stream,
/// decompressed (`gz::decoder`, [`open_scan`]). Errors are phrases naming the entry: "entry
/// `x/y`: symlink entry refused".
pub fn scan(r: &mut dyn Read) -> Result<Scanned, String> {
    let mut t = Reader::new(r);
    let mut entries: Vec<Header> = Vec::new();
    let mut manifest = None;
    let bad = |p: &str, e: &str| format!("entry `{}`: {e}", names_printable(p));
    loop {
        let h = match t.next_header() {
            Ok(Some(h)) => h,
            Ok(None) => break,
            Err(e) => {
                return Err(match entries.last() {
                    Some(h) => format!("after entry `{}`: {e}", names_printable(&h.path)),
                    None => e,
                })
            }
        };
        if manifest.is_some() {
            return Err(bad(&h.path, "after the manifest"));
        }
        if h.path == MANIFEST && !h.dir && h.size < MAX_MANIFEST {
            let mut v = Vec::new();
            t.copy_to(&mut v).map_err(|e| bad(&h.path, &e))?;
            manifest = serde_json::from_slice(&v)
                .ok()
                .and_then(|m: Value| Manifest::from_json(&m))
                .filter(|m| m.format == FORMAT && m.version == 1);
            if manifest.is_none() {
                return Err("the manifest is not a prodigy-archive manifest of version 1".into());
            }
            continue;
        }
        check_path(&h.path).map_err(|e| bad(&h.path, &e))?;
        entries.push(h);
    }
    // The gzip trailer (CRC, length) is checked only when its end is read.
    t.left = u64::MAX;
    match t.copy_to(&mut io::sink()) {
        Err(e) if e != "truncated archive" => return Err(e),
        _ => {}
    }
    let manifest = manifest.ok_or("no manifest: the archive is incomplete")?;
    let mut paths: Vec<String> = entries.iter().map(|h| h.path.clone()).collect();
    crate::sort::sort(&mut paths);
    if let Some(w) = paths.windows(2).find(|w| w[0] == w[1]) {
        return Err(bad(&w[0], "appears twice"));
    }
    let mut bases = Vec::new();
    for (i, it) in manifest.items.iter().enumerate() {
        let item = |e: &str| format!("manifest item `{}`: {e}", names_printable(&it.path));
        if !matches!(crate::store::StorageType::from_word(&it.ty),
            Some(t) if t != crate::store::StorageType::Worktrees)
        {
            return Err(item("unknown type"));
        }
        if paths.binary_search(&it.path).is_err() {
            return Err(item("has no entry"));
        }
        for p in std::iter::once(&it.path).chain(it.also.iter()) {
            check_path(p).map_err(|e| item(&e))?;
            bases.push(format!("{p}\n{i}"));
        }
    }
    crate::sort::sort(&mut bases);
    let base = |k: usize| bases.get(k).and_then(|b| b.split('\n').next());
    for k in 0..bases.len() {
        // No path named twice, none inside another item's.
        let p = base(k).unwrap_or("");
        let up = p.rfind('/').and_then(|c| owner_of(&bases, &p[..c]));
        if up.is_some() || base(k + 1) == Some(p) {
            return Err(bad(p, "named by two items of the manifest"));
        }
    }
    let mut owner = Vec::with_capacity(entries.len());
    let mut sums = vec![(0u64, 0u64); manifest.items.len()];
    let mut started = vec![false; manifest.items.len()];
    for h in &entries {
        let i = owner_of(&bases, &h.path)
            .ok_or_else(|| bad(&h.path, "is in no item of the manifest"))?;
        if owner.last() != Some(&i) && std::mem::replace(&mut started[i], true) {
            return Err(bad(&h.path, "is apart from its item's other entries"));
        }
        owner.push(i);
        if !h.dir {
            sums[i].0 += 1;
            sums[i].1 += h.size;
        }
    }
    for (it, (files, bytes)) in manifest.items.iter().zip(&sums) {
        if (*files, *bytes) != (it.files, it.bytes) {
            return Err(format!(
                "manifest item `{}` declares {} files, {} bytes; the entries hold {files}, {bytes}",
                names_printable(&it.path),
                it.files,
                it.bytes
            ));
        }
    }
    Ok(Scanned {
        entries,
        manifest,
        owner,
    })
}

/// Open archive `path` and [`scan`] it; errors name the archive.
pub fn open_scan(path: &Path) -> Result<(std::fs::File, Scanned), String> {
    let f = std::fs::File::open(path).map_err(|e| {
        format!(
            "cannot open `{}`: {}",
            path.display(),
            crate::error::describe_io(&e)
        )
    })?;
    let g = f.try_clone().map_err(|e| crate::error::describe_io(&e))?;
    let s = scan(&mut crate::store::gz::decode_file(g))
        .map_err(|e| format!("`{}`: {e}", path.display()))?;
    Ok((f, s))
}

// ---------------------------------------------------------------- restoring

/// Open (creating as needed, 0700) the directories `comps` below `root`, never following a
/// symlink.
fn make_dirs(root: &Dir, comps: &[&str]) -> io::Result<Dir> {
    let mut cur = root.open_path(&[])?;
    for c in comps {
        match cur.create_dir(OsStr::new(c)) {
            Err(e) if e.kind() != io::ErrorKind::AlreadyExists => return Err(e),
            _ => cur = cur.open_dir(OsStr::new(c))?,
        }
    }
    Ok(cur)
}

/// The items of `s` that `ids` select: all when `ids` is empty; else those whose session, job
/// or path is one of them. An id that selects nothing is an error.
pub fn select(s: &Scanned, ids: &[String]) -> Result<Vec<bool>, String> {
    let mut sel = vec![ids.is_empty(); s.manifest.items.len()];
    for id in ids {
        let mut any = false;
        for (i, it) in s.manifest.items.iter().enumerate() {
            if [&it.session, &it.job].contains(&&Some(id.clone())) || it.path == *id {
                sel[i] = true;
                any = true;
            }
        }
        if !any {
            return Err(format!("no item matches `{}`", names_printable(id)));
        }
    }
    Ok(sel)
}

/// Put the selected items of archive `f` (already [`scan`]ned as `s`) back under `root`:
/// refuses, before writing anything, when a file it would write exists (a symlink or anything
/// on the way counts); then writes each file under a temp name beside its place (`O_EXCL`),
/// fsyncs it, gives it its mode and mtime, renames it without replacing and fsyncs the
/// directory; directories get their mtimes last, deepest first. `check_only` stops after the
/// refusal check. Errors name the entry.
pub fn restore(
    f: &std::fs::File,
    s: &Scanned,
    sel: &[bool],
    root: &Dir,
    check_only: bool,
) -> Result<(), String> {
    let err = |p: &str, e: String| format!("entry `{}`: {e}", names_printable(p));
    let ioe = |p: &str, e: io::Error| err(p, crate::error::describe_io(&e));
    let wanted = |k: usize| sel[s.owner[k]];
    for (k, h) in s.entries.iter().enumerate() {
        let comps: Vec<&str> = h.path.split('/').collect();
        let (name, parent) = comps.split_last().expect("a checked path has components");
        let c: Vec<&OsStr> = parent.iter().map(OsStr::new).collect();
        let taken = match root.open_path(&c) {
            Ok(d) => {
                !matches!(d.stat(OsStr::new(name)), Err(ref e) if e.kind() == io::ErrorKind::NotFound)
            }
            Err(e) => e.kind() != io::ErrorKind::NotFound,
        };
        if wanted(k) && !h.dir && taken {
            return Err(err(
                &h.path,
                "exists; restore never overwrites: move it away or leave its item out with --only"
                    .into(),
            ));
        }
    }
    if check_only {
        return Ok(());
    }
    let mut f = f.try_clone().map_err(|e| ioe("-", e))?;
    f.rewind().map_err(|e| ioe("-", e))?;
    let mut g = crate::store::gz::decode_file(f);
    let mut t = Reader::new(&mut g);
    let mut dirs = Vec::new();
    for (k, want) in s.entries.iter().enumerate() {
        if t.next_header().map_err(|e| err(&want.path, e))?.as_ref() != Some(want) {
            return Err(err(
                &want.path,
                "changed since the archive was checked".into(),
            ));
        }
        if !wanted(k) {
            continue;
        }
        let comps: Vec<&str> = want.path.split('/').collect();
        let e = |e| ioe(&want.path, e);
        if want.dir {
            make_dirs(root, &comps).map_err(e)?;
            dirs.push(want);
            continue;
        }
        let (name, parent) = comps.split_last().expect("checked");
        let d = make_dirs(root, parent).map_err(e)?;
        let name = OsStr::new(name);
        let tmp = crate::store::atomic::temp_name(name);
        let mut file = d.create_new(&tmp).map_err(e)?;
        let r = (|| {
            let mut w = io::BufWriter::new(&mut file);
            t.copy_to(&mut w).map_err(|x| err(&want.path, x))?;
            w.flush().map_err(e)?;
            drop(w);
            #[cfg(unix)]
            file.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(want.mode))
                .map_err(e)?;
            file.set_modified(mtime(want.mtime)).map_err(e)?;
            // On disk before the name points at it.
            file.sync_all().map_err(e)?;
            d.rename(&tmp, &d, name).map_err(e)?;
            d.sync().map_err(e)
        })();
        if r.is_err() {
            let _ = d.unlink(&tmp);
            return r;
        }
    }
    for h in dirs.iter().rev() {
        let c: Vec<&OsStr> = h.path.split('/').map(OsStr::new).collect();
        let d = root.open_path(&c).map_err(|e| ioe(&h.path, e))?;
        d.set_mtime(h.mtime, 0).map_err(|e| ioe(&h.path, e))?;
    }
    Ok(())
}

fn mtime(secs: i64) -> std::time::SystemTime {
    std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs.max(0) as u64)
}
