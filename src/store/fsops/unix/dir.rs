//! [`Dir`]: an open directory handle (`O_DIRECTORY|O_NOFOLLOW|O_CLOEXEC`) that remembers its
//! device and inode, and every single-component operation the crate does below the storage
//! root: open a child directory or a path of them, lstat, list, read a file (bounded by a
//! maximum in bytes, refusing non-regular files without blocking), open or create a file,
//! mkdir, rename without replacing, replace, unlink, set the directory's mtime and fsync.
//! Each method's errors are on the method: `InvalidInput` for a name that is not one component,
//! `ELOOP`/`ENOTDIR` for a symlink where a directory or file was asked for, the OS error otherwise.

use super::super::{Kind, Meta};
use super::listing::{for_each_entry, kind_of_dtype, read_entries};
use super::sys::{
    component, cvt, fstat_fd, last_err, lstat_at, not_found, not_regular, open_dir_at, openat_raw,
    too_large, unlink_at, DIR_FLAGS,
};
use std::ffi::{CString, OsStr, OsString};
use std::fmt;
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::io::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;

/// An open directory handle (O_DIRECTORY|O_NOFOLLOW|O_CLOEXEC), remembers its dev/ino.
pub struct Dir {
    fd: OwnedFd,
    pub(super) dev: u64,
    ino: u64,
}

impl fmt::Debug for Dir {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Dir")
            .field("fd", &self.fd.as_raw_fd())
            .field("dev", &self.dev)
            .field("ino", &self.ino)
            .finish()
    }
}

impl Dir {
    fn from_parts(fd: OwnedFd, m: &Meta) -> Dir {
        Dir {
            fd,
            dev: m.dev,
            ino: m.ino,
        }
    }

    pub(super) fn raw(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Open an absolute directory path as a root. The final component must not be a symlink (O_NOFOLLOW); caller has already canonicalized.
    ///
    /// Errors: `InvalidInput` for a relative path or one containing NUL; the OS error
    /// (`ELOOP`/`ENOTDIR` for a symlink or non-directory, `NotFound`, `PermissionDenied`) otherwise.
    pub fn open_root(path: &Path) -> io::Result<Dir> {
        if !path.is_absolute() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("root must be an absolute path: {}", path.display()),
            ));
        }
        let c = CString::new(path.as_os_str().as_bytes())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in root path"))?;
        let fd = loop {
            // SAFETY: valid C string.
            let fd = unsafe { libc::open(c.as_ptr(), DIR_FLAGS, 0 as libc::c_uint) };
            if fd >= 0 {
                // SAFETY: freshly returned descriptor.
                break unsafe { OwnedFd::from_raw_fd(fd) };
            }
            let e = last_err();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        };
        let m = fstat_fd(fd.as_raw_fd())?;
        if m.kind != Kind::Dir {
            return Err(io::Error::from_raw_os_error(libc::ENOTDIR));
        }
        Ok(Dir::from_parts(fd, &m))
    }

    /// Open child directory `name` (one component: reject "", ".", "..", or anything containing '/' or NUL with InvalidInput) without following a symlink (a symlink gives an error, ELOOP/ENOTDIR).
    ///
    /// Errors: `InvalidInput` for a bad name; `NotFound`; `ELOOP`/`ENOTDIR` (FreeBSD:
    /// `EMLINK`) when `name` is a symlink or not a directory; other OS errors as returned.
    pub fn open_dir(&self, name: &OsStr) -> io::Result<Dir> {
        let c = component(name)?;
        let (fd, m) = open_dir_at(self.raw(), &c)?;
        Ok(Dir::from_parts(fd, &m))
    }

    /// Walk down several components, each via open_dir.
    ///
    /// Only one intermediate descriptor is open at a time. An empty `comps` returns a new
    /// handle (a duplicate descriptor) for this same directory. Errors as [`Dir::open_dir`]
    /// for the first component that fails.
    pub fn open_path(&self, comps: &[&OsStr]) -> io::Result<Dir> {
        let mut cur: Option<Dir> = None;
        for c in comps {
            let next = cur.as_ref().unwrap_or(self).open_dir(c)?;
            cur = Some(next);
        }
        match cur {
            Some(d) => Ok(d),
            None => Ok(Dir {
                fd: self.fd.try_clone()?,
                dev: self.dev,
                ino: self.ino,
            }),
        }
    }

    /// fstat of this dir.
    ///
    /// Errors: the OS error of `fstat` (rare: `EIO`, `EOVERFLOW`).
    pub fn meta(&self) -> io::Result<Meta> {
        fstat_fd(self.raw())
    }

    /// Entry names excluding "." and "..", as raw OsString (never lossy). Order unspecified.
    ///
    /// Reads the whole directory into memory. Uses one extra descriptor while reading.
    /// Safe to call repeatedly (each call lists from the start). Errors: OS errors of
    /// `openat`/`fdopendir`/`readdir` (e.g. `PermissionDenied`, `EIO`).
    pub fn names(&self) -> io::Result<Vec<OsString>> {
        Ok(read_entries(self.raw(), false)?
            .into_iter()
            .map(|(n, _)| n)
            .collect())
    }

    /// Like [`Dir::names`], with each entry's type as the directory listing reported it
    /// (`d_type`): a hint for [`Dir::read_listed`], `None` where the filesystem or platform
    /// does not say. The entry can be replaced at any time after the listing.
    pub fn listing(&self) -> io::Result<Vec<(OsString, Option<Kind>)>> {
        Ok(read_entries(self.raw(), false)?
            .into_iter()
            .map(|(n, t)| (n, kind_of_dtype(t)))
            .collect())
    }

    /// Call `f` with each entry and its listed type (as [`Dir::listing`] gives them),
    /// unsorted, without holding the whole listing: on Linux memory stays constant whatever
    /// the directory's size. Errors: those of [`Dir::listing`]; `f` may have seen some
    /// entries before one.
    pub fn for_each_listed(&self, mut f: impl FnMut(&OsStr, Option<Kind>)) -> io::Result<()> {
        for_each_entry(self.raw(), &mut |n, t| f(n, kind_of_dtype(t)))
    }

    /// lstat of child `name` (AT_SYMLINK_NOFOLLOW).
    ///
    /// Errors: `InvalidInput` for a bad name; `NotFound`; other OS errors.
    pub fn stat(&self, name: &OsStr) -> io::Result<Meta> {
        let c = component(name)?;
        lstat_at(self.raw(), &c)
    }

    /// Read a child regular file, at most `max` bytes: open O_RDONLY|O_NOFOLLOW|O_NONBLOCK|O_CLOEXEC, fstat, refuse non-regular files (FIFO, socket, device, dir) with ErrorKind::InvalidData "not a regular file" WITHOUT blocking on a FIFO, and refuse files larger than `max` with InvalidData "file too large (N bytes, limit M)".
    ///
    /// `max` is in bytes. The entry is lstat'ed first, so a FIFO or device is refused without
    /// even being opened (opening some devices has side effects); the opened descriptor is
    /// fstat'ed again in case the entry was swapped in between. A file that grows beyond
    /// `max` while being read is refused too. A symlink fails with `ELOOP`.
    pub fn read_file(&self, name: &OsStr, max: u64) -> io::Result<Vec<u8>> {
        self.read_listed(name, max, None)
    }

    /// [`Dir::read_file`] of an entry whose type a [`Dir::listing`] just reported as `listed`:
    /// a regular file is opened without the lstat first (the listing is the same check, and
    /// the opened descriptor is still fstat'ed); any other type is refused without opening
    /// it; `None` (not known) lstats first as `read_file` does. Same errors as `read_file`.
    pub fn read_listed(&self, name: &OsStr, max: u64, listed: Option<Kind>) -> io::Result<Vec<u8>> {
        self.read_listed_meta(name, max, listed).map(|(b, _)| b)
    }

    /// [`Dir::read_listed`], with the file's metadata as the open descriptor's fstat gave it
    /// (no second lookup by name).
    pub fn read_listed_meta(
        &self,
        name: &OsStr,
        max: u64,
        listed: Option<Kind>,
    ) -> io::Result<(Vec<u8>, Meta)> {
        let c = component(name)?;
        let kind = match listed {
            Some(k) => k,
            None => lstat_at(self.raw(), &c)?.kind,
        };
        match kind {
            Kind::File => {}
            Kind::Symlink => return Err(io::Error::from_raw_os_error(libc::ELOOP)),
            _ => return Err(not_regular()),
        }
        // O_NONBLOCK: if a FIFO was swapped in after the lstat, the open returns at once
        // instead of waiting for a writer. O_NOCTTY: a terminal never becomes ours.
        let fd = openat_raw(
            self.raw(),
            &c,
            libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC | libc::O_NOCTTY,
            0,
        )?;
        let m = fstat_fd(fd.as_raw_fd())?;
        if m.kind != Kind::File {
            return Err(not_regular());
        }
        if m.len > max {
            return Err(too_large(m.len, max));
        }
        let mut file = File::from(fd);
        let want = usize::try_from(m.len).unwrap_or(0);
        let mut buf = vec![0u8; want.saturating_add(1)];
        // One read asking for a byte more than fstat said: a regular file returns less only
        // at its end, so a short read needs no second call to see EOF. If it filled the
        // buffer the file grew: read on, up to the limit.
        let n = loop {
            match file.read(&mut buf) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        };
        buf.truncate(n);
        if n > want {
            file.take(max.saturating_add(1).saturating_sub(n as u64))
                .read_to_end(&mut buf)?;
        }
        if buf.len() as u64 > max {
            return Err(too_large(buf.len() as u64, max));
        }
        Ok((buf, m))
    }

    /// Open a child regular file for reading/writing as std::fs::File (O_NOFOLLOW, O_CLOEXEC; create with mode 0o600 when `create`), used for lock files.
    ///
    /// `write` opens read-write (`O_RDWR`), otherwise read-only. `create` adds `O_CREAT`
    /// (never `O_EXCL`, never `O_TRUNC`). Errors: `InvalidInput` for a bad name; `ELOOP` for a
    /// symlink (also a dangling one: nothing is created through it); `InvalidData` "not a
    /// regular file" for anything else that is not a regular file (a FIFO does not block);
    /// other OS errors.
    pub fn open_file(&self, name: &OsStr, write: bool, create: bool) -> io::Result<File> {
        let c = component(name)?;
        let mut flags = libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NOCTTY | libc::O_NONBLOCK;
        flags |= if write { libc::O_RDWR } else { libc::O_RDONLY };
        if create {
            flags |= libc::O_CREAT;
        }
        let fd = openat_raw(self.raw(), &c, flags, 0o600)?;
        if fstat_fd(fd.as_raw_fd())?.kind != Kind::File {
            return Err(not_regular());
        }
        // O_NONBLOCK was only there so that opening a FIFO could not hang; clear it now that
        // we know this is a regular file.
        // SAFETY: plain fcntl calls on a descriptor we own.
        let fl = cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) })?;
        cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, fl & !libc::O_NONBLOCK) })?;
        Ok(File::from(fd))
    }

    /// Create child regular file `name` for writing, which must not exist (`O_CREAT|O_EXCL|
    /// O_NOFOLLOW`, mode 0600): the temp file of a compressed copy (`store::gz`).
    ///
    /// Errors: `InvalidInput` for a bad name; `AlreadyExists` (also for a symlink, which is
    /// not followed); other OS errors.
    pub fn create_new(&self, name: &OsStr) -> io::Result<File> {
        let c = component(name)?;
        let flags = libc::O_NOFOLLOW
            | libc::O_CLOEXEC
            | libc::O_NOCTTY
            | libc::O_WRONLY
            | libc::O_CREAT
            | libc::O_EXCL;
        Ok(File::from(openat_raw(self.raw(), &c, flags, 0o600)?))
    }

    /// Set this directory's own mtime (atime unchanged): compressing a file inside an item
    /// must not make the item look active (its age is the newest mtime inside, directories
    /// included).
    pub fn set_mtime(&self, secs: i64, nanos: u32) -> io::Result<()> {
        let ts = [
            libc::timespec {
                tv_sec: 0,
                tv_nsec: libc::UTIME_OMIT,
            },
            libc::timespec {
                tv_sec: secs as _,
                tv_nsec: nanos as _,
            },
        ];
        // SAFETY: a descriptor we own and a two-element timespec array.
        cvt(unsafe { libc::futimens(self.raw(), ts.as_ptr()) }).map(drop)
    }

    /// mkdirat(name, 0o700); AlreadyExists is returned as an error (caller decides).
    ///
    /// Errors: `InvalidInput` for a bad name; `AlreadyExists` (also when `name` is a symlink,
    /// which is not followed); other OS errors.
    pub fn create_dir(&self, name: &OsStr) -> io::Result<()> {
        let c = component(name)?;
        // SAFETY: valid C string.
        cvt(unsafe { libc::mkdirat(self.raw(), c.as_ptr(), 0o700 as libc::mode_t) }).map(drop)
    }

    /// renameat(self, name, to, to_name); on Linux use renameat2 with RENAME_NOREPLACE when available, falling back to renameat when the kernel/fs says EINVAL/ENOSYS; must never follow symlinks (rename never does).
    ///
    /// On macOS `renameatx_np(RENAME_EXCL)` plays the part of `RENAME_NOREPLACE`. Where no
    /// atomic no-replace rename is available, an existing `to_name` is refused by a check
    /// just before `renameat` (not atomic against a concurrent creator). Errors:
    /// `InvalidInput` for a bad name; `AlreadyExists` when `to_name` exists; `NotFound`;
    /// `EXDEV` across filesystems; other OS errors.
    pub fn rename(&self, name: &OsStr, to: &Dir, to_name: &OsStr) -> io::Result<()> {
        let from = component(name)?;
        let dest = component(to_name)?;
        #[cfg(target_os = "linux")]
        {
            // SAFETY: valid C strings; renameat2 takes (int, char*, int, char*, unsigned).
            let r = unsafe {
                libc::syscall(
                    libc::SYS_renameat2,
                    self.raw() as libc::c_long,
                    from.as_ptr(),
                    to.raw() as libc::c_long,
                    dest.as_ptr(),
                    libc::RENAME_NOREPLACE as libc::c_long,
                )
            };
            if r == 0 {
                return Ok(());
            }
            let e = last_err();
            match e.raw_os_error() {
                Some(c) if c == libc::EINVAL || c == libc::ENOSYS => {}
                _ => return Err(e),
            }
        }
        #[cfg(target_vendor = "apple")]
        {
            // SAFETY: valid C strings.
            let r = unsafe {
                libc::renameatx_np(
                    self.raw(),
                    from.as_ptr(),
                    to.raw(),
                    dest.as_ptr(),
                    libc::RENAME_EXCL,
                )
            };
            if r == 0 {
                return Ok(());
            }
            let e = last_err();
            match e.raw_os_error() {
                Some(c) if c == libc::EINVAL || c == libc::ENOTSUP => {}
                _ => return Err(e),
            }
        }
        // Fallback: best-effort no-replace check, then a plain renameat.
        match lstat_at(to.raw(), &dest) {
            Ok(_) => return Err(io::Error::from_raw_os_error(libc::EEXIST)),
            Err(e) if not_found(&e) => {}
            Err(e) => return Err(e),
        }
        // SAFETY: valid C strings.
        cvt(unsafe { libc::renameat(self.raw(), from.as_ptr(), to.raw(), dest.as_ptr()) }).map(drop)
    }

    /// renameat(self, name, self, to_name), replacing an existing `to_name` (a file; never
    /// follows a symlink: one at `to_name` is replaced itself). For crash-safe writes: a temp
    /// file made here, synced, then put in place.
    ///
    /// Errors: `InvalidInput` for a bad name; `NotFound`; `EISDIR` when `to_name` is a
    /// directory; other OS errors.
    pub fn replace(&self, name: &OsStr, to_name: &OsStr) -> io::Result<()> {
        let from = component(name)?;
        let dest = component(to_name)?;
        // SAFETY: valid C strings and descriptors we own.
        cvt(unsafe { libc::renameat(self.raw(), from.as_ptr(), self.raw(), dest.as_ptr()) })
            .map(drop)
    }

    /// unlinkat a non-directory child. NotFound is Ok(()).
    ///
    /// A symlink is removed itself, never its target. Errors: `InvalidInput` for a bad name;
    /// `EISDIR` (Linux) / `EPERM` (macOS) for a directory; other OS errors.
    pub fn unlink(&self, name: &OsStr) -> io::Result<()> {
        let c = component(name)?;
        match unlink_at(self.raw(), &c, 0) {
            Err(e) if not_found(&e) => Ok(()),
            r => r,
        }
    }

    /// fsync the directory (needed after rename for durability).
    ///
    /// Errors: the OS error of `fsync` (e.g. `EIO`); the caller must then treat the rename
    /// as possibly not durable.
    pub fn sync(&self) -> io::Result<()> {
        // SAFETY: plain fsync on a descriptor we own.
        cvt(unsafe { libc::fsync(self.raw()) }).map(drop)
    }

    /// Device (`st_dev`) of this directory, recorded when it was opened.
    pub fn dev(&self) -> u64 {
        self.dev
    }

    /// Inode number (`st_ino`) of this directory, recorded when it was opened.
    pub fn ino(&self) -> u64 {
        self.ino
    }
}
