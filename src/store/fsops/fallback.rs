//! The non-Unix implementation of [`Dir`], [`walk`] and [`remove_tree`]: the same API, but
//! walking and reading go through `std::fs` paths (without following symlinks where `std` allows
//! it; mount points cannot be detected, device and inode are 0, disk bytes are the apparent
//! size), and every removal or rename fails with [`io::ErrorKind::Unsupported`]: without
//! descriptor-relative calls the guarantees of the parent module cannot be kept, so it refuses to
//! delete rather than delete unsafely.

use super::{Kind, Meta, Problem, RemoveSummary, WalkSummary};
use std::ffi::{OsStr, OsString};
use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Component, Path, PathBuf};
use std::time::UNIX_EPOCH;

fn unsupported() -> io::Error {
    io::Error::new(
        io::ErrorKind::Unsupported,
        "removal and rename need descriptor-relative calls, available on Unix only",
    )
}

fn not_regular() -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, "not a regular file")
}

fn too_large(len: u64, max: u64) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("file too large ({len} bytes, limit {max})"),
    )
}

fn component(name: &OsStr) -> io::Result<&OsStr> {
    let mut comps = Path::new(name).components();
    match (comps.next(), comps.next()) {
        (Some(Component::Normal(c)), None) if c == name => Ok(name),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("not a single path component: {name:?}"),
        )),
    }
}

fn meta_from(m: &fs::Metadata) -> Meta {
    let ft = m.file_type();
    let kind = if ft.is_symlink() {
        Kind::Symlink
    } else if ft.is_dir() {
        Kind::Dir
    } else if ft.is_file() {
        Kind::File
    } else {
        Kind::Other
    };
    let (mtime_secs, mtime_nanos) = match m.modified() {
        Ok(t) => match t.duration_since(UNIX_EPOCH) {
            Ok(d) => (d.as_secs() as i64, d.subsec_nanos()),
            Err(e) => {
                let d = e.duration();
                if d.subsec_nanos() == 0 {
                    (-(d.as_secs() as i64), 0)
                } else {
                    (-(d.as_secs() as i64) - 1, 1_000_000_000 - d.subsec_nanos())
                }
            }
        },
        Err(_) => (0, 0),
    };
    Meta {
        kind,
        dev: 0,
        ino: 0,
        len: m.len(),
        disk_bytes: m.len(),
        mtime_secs,
        mtime_nanos,
        uid: 0,
        nlink: 1,
    }
}

/// An open directory handle (O_DIRECTORY|O_NOFOLLOW|O_CLOEXEC), remembers its dev/ino.
///
/// On this platform it holds a path; device and inode are reported as 0.
#[derive(Debug)]
pub struct Dir {
    path: PathBuf,
}

impl Dir {
    fn child(&self, name: &OsStr) -> io::Result<PathBuf> {
        Ok(self.path.join(component(name)?))
    }

    /// Open an absolute directory path as a root. The final component must not be a symlink (O_NOFOLLOW); caller has already canonicalized.
    ///
    /// Errors: `InvalidInput` for a relative path, a symlink or a non-directory; OS errors.
    pub fn open_root(path: &Path) -> io::Result<Dir> {
        if !path.is_absolute() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "root must be an absolute path",
            ));
        }
        Dir::checked(path.to_path_buf())
    }

    fn checked(path: PathBuf) -> io::Result<Dir> {
        let m = fs::symlink_metadata(&path)?;
        if !m.file_type().is_dir() || m.file_type().is_symlink() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "not a directory (or a symlink)",
            ));
        }
        Ok(Dir { path })
    }

    /// Open child directory `name` (one component: reject "", ".", "..", or anything containing '/' or NUL with InvalidInput) without following a symlink (a symlink gives an error, ELOOP/ENOTDIR).
    ///
    /// Errors: `InvalidInput` for a bad name, a symlink or a non-directory; OS errors.
    pub fn open_dir(&self, name: &OsStr) -> io::Result<Dir> {
        Dir::checked(self.child(name)?)
    }

    /// Walk down several components, each via open_dir.
    pub fn open_path(&self, comps: &[&OsStr]) -> io::Result<Dir> {
        let mut cur = Dir::checked(self.path.clone())?;
        for c in comps {
            cur = cur.open_dir(c)?;
        }
        Ok(cur)
    }

    /// fstat of this dir.
    pub fn meta(&self) -> io::Result<Meta> {
        Ok(meta_from(&fs::symlink_metadata(&self.path)?))
    }

    /// Entry names excluding "." and "..", as raw OsString (never lossy). Order unspecified.
    pub fn names(&self) -> io::Result<Vec<OsString>> {
        let mut out = Vec::new();
        for e in fs::read_dir(&self.path)? {
            out.push(e?.file_name());
        }
        Ok(out)
    }

    /// Like [`Dir::names`]; this platform reports no types (every hint is `None`).
    pub fn listing(&self) -> io::Result<Vec<(OsString, Option<Kind>)>> {
        Ok(self.names()?.into_iter().map(|n| (n, None)).collect())
    }

    /// Each entry of [`Dir::listing`] in turn (read whole first on this platform).
    pub fn for_each_listed(&self, mut f: impl FnMut(&OsStr, Option<Kind>)) -> io::Result<()> {
        for n in self.names()? {
            f(&n, None);
        }
        Ok(())
    }

    /// [`Dir::read_file`]; the listing's hint is not used on this platform.
    pub fn read_listed(
        &self,
        name: &OsStr,
        max: u64,
        _listed: Option<Kind>,
    ) -> io::Result<Vec<u8>> {
        self.read_file(name, max)
    }

    /// [`Dir::read_listed`] with the file's metadata (a second lookup on this platform).
    pub fn read_listed_meta(
        &self,
        name: &OsStr,
        max: u64,
        listed: Option<Kind>,
    ) -> io::Result<(Vec<u8>, Meta)> {
        let b = self.read_listed(name, max, listed)?;
        Ok((b, self.stat(name)?))
    }

    /// lstat of child `name` (AT_SYMLINK_NOFOLLOW).
    pub fn stat(&self, name: &OsStr) -> io::Result<Meta> {
        Ok(meta_from(&fs::symlink_metadata(self.child(name)?)?))
    }

    /// Read a child regular file, at most `max` bytes: open O_RDONLY|O_NOFOLLOW|O_NONBLOCK|O_CLOEXEC, fstat, refuse non-regular files (FIFO, socket, device, dir) with ErrorKind::InvalidData "not a regular file" WITHOUT blocking on a FIFO, and refuse files larger than `max` with InvalidData "file too large (N bytes, limit M)".
    pub fn read_file(&self, name: &OsStr, max: u64) -> io::Result<Vec<u8>> {
        let p = self.child(name)?;
        let m = fs::symlink_metadata(&p)?;
        if !m.file_type().is_file() {
            return Err(not_regular());
        }
        if m.len() > max {
            return Err(too_large(m.len(), max));
        }
        let f = File::open(&p)?;
        if !f.metadata()?.is_file() {
            return Err(not_regular());
        }
        let mut buf = Vec::new();
        f.take(max.saturating_add(1)).read_to_end(&mut buf)?;
        if buf.len() as u64 > max {
            return Err(too_large(buf.len() as u64, max));
        }
        Ok(buf)
    }

    /// Open a child regular file for reading/writing as std::fs::File (O_NOFOLLOW, O_CLOEXEC; create with mode 0o600 when `create`), used for lock files.
    ///
    /// On this platform `create` implies write access (std cannot create read-only).
    pub fn open_file(&self, name: &OsStr, write: bool, create: bool) -> io::Result<File> {
        let p = self.child(name)?;
        match fs::symlink_metadata(&p) {
            Ok(m) if !m.file_type().is_file() => return Err(not_regular()),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound && create => {}
            Err(e) => return Err(e),
        }
        let f = fs::OpenOptions::new()
            .read(true)
            .write(write || create)
            .create(create)
            .open(&p)?;
        if !f.metadata()?.is_file() {
            return Err(not_regular());
        }
        Ok(f)
    }

    /// Create child regular file `name` for writing, which must not exist.
    pub fn create_new(&self, name: &OsStr) -> io::Result<File> {
        fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(self.child(name)?)
    }

    /// Set this directory's own mtime: on this platform a no-op.
    pub fn set_mtime(&self, secs: i64, nanos: u32) -> io::Result<()> {
        let _ = (secs, nanos);
        Ok(())
    }

    /// mkdirat(name, 0o700); AlreadyExists is returned as an error (caller decides).
    pub fn create_dir(&self, name: &OsStr) -> io::Result<()> {
        fs::create_dir(self.child(name)?)
    }

    /// renameat(self, name, to, to_name); on Linux use renameat2 with RENAME_NOREPLACE when available, falling back to renameat when the kernel/fs says EINVAL/ENOSYS; must never follow symlinks (rename never does).
    ///
    /// On this platform: always `Unsupported`.
    pub fn rename(&self, name: &OsStr, to: &Dir, to_name: &OsStr) -> io::Result<()> {
        let _ = (name, to, to_name);
        Err(unsupported())
    }

    /// Rename `name` over `to_name` in this directory.
    ///
    /// On this platform: always `Unsupported`.
    pub fn replace(&self, name: &OsStr, to_name: &OsStr) -> io::Result<()> {
        let _ = (name, to_name);
        Err(unsupported())
    }

    /// unlinkat a non-directory child. NotFound is Ok(()).
    ///
    /// On this platform: always `Unsupported`.
    pub fn unlink(&self, name: &OsStr) -> io::Result<()> {
        let _ = name;
        Err(unsupported())
    }

    /// fsync the directory (needed after rename for durability).
    ///
    /// On this platform a no-op returning Ok (there is no rename to make durable).
    pub fn sync(&self) -> io::Result<()> {
        Ok(())
    }

    /// Device of this directory: always 0 on this platform.
    pub fn dev(&self) -> u64 {
        0
    }

    /// Inode of this directory: always 0 on this platform.
    pub fn ino(&self) -> u64 {
        0
    }
}

/// Walk child `name` of `parent` (file, symlink, or directory tree). Never follows a symlink (a symlink counts as one entry of its own lstat size), never enters another filesystem, keeps at most ~32 directory descriptors open however deep the tree (deeper ancestors are closed and reopened with openat(child, "..") and their (dev, ino) verified; a mismatch is a Problem and that subtree's walk stops). NotFound for the item itself => Ok(WalkSummary::default()) with newest_mtime None.
///
/// On this platform the walk goes through `std::fs` paths; mount points cannot be detected.
pub fn walk(parent: &Dir, name: &OsStr) -> io::Result<WalkSummary> {
    let p = parent.child(name)?;
    let mut sum = WalkSummary::default();
    let m = match fs::symlink_metadata(&p) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(sum),
        Err(e) => return Err(e),
    };
    let meta = meta_from(&m);
    sum.dev_ino = Some((meta.dev, meta.ino));
    if meta.kind != Kind::Dir {
        sum.add_leaf(name, &meta);
        return Ok(sum);
    }
    sum.add_dir(&meta);
    let mut todo: Vec<PathBuf> = vec![PathBuf::new()];
    while let Some(rel) = todo.pop() {
        let rd = match fs::read_dir(p.join(&rel)) {
            Ok(rd) => rd,
            Err(e) => {
                sum.problems.push(Problem { rel, error: e });
                continue;
            }
        };
        for ent in rd {
            let ent = match ent {
                Ok(e) => e,
                Err(e) => {
                    sum.problems.push(Problem {
                        rel: rel.clone(),
                        error: e,
                    });
                    break;
                }
            };
            let crel = rel.join(ent.file_name());
            match fs::symlink_metadata(ent.path()) {
                Ok(m) => {
                    let meta = meta_from(&m);
                    if meta.kind == Kind::Dir {
                        sum.add_dir(&meta);
                        todo.push(crel);
                    } else {
                        sum.add_leaf(&ent.file_name(), &meta);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => sum.problems.push(Problem {
                    rel: crel,
                    error: e,
                }),
            }
        }
    }
    Ok(sum)
}

/// Remove child `name` of `parent` entirely, post-order, fd-relative: unlinkat files and symlinks (a symlink is unlinked, never followed), descend into directories only through open_dir (O_NOFOLLOW), never into another filesystem (st_dev differs from the item's own st_dev -> record in `mounts`, leave it, item not complete), bounded descriptors as in walk, ENOENT anywhere is success (concurrent deletion), other per-entry errors go into `problems` and removal continues with the rest. Counts disk_bytes of what was actually unlinked. A directory that vanished or was replaced between readdir and open (e.g. swapped for a symlink) must never be followed: the symlink itself is unlinked instead.
///
/// On this platform nothing is removed: one `Unsupported` problem, `complete` false.
pub fn remove_tree(parent: &Dir, name: &OsStr) -> RemoveSummary {
    let _ = (parent, name);
    let mut sum = RemoveSummary::default();
    sum.problem(PathBuf::new(), unsupported());
    sum
}
