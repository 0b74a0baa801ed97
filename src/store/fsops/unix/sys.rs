//! The raw descriptor-relative calls under [`Dir`](super::Dir): `openat` (retried on `EINTR`),
//! `fstat`, `fstatat(AT_SYMLINK_NOFOLLOW)`, `unlinkat`, and reopening a parent through `..` with
//! its device and inode verified. Also the single-component check every name goes through (a name
//! that is empty, `.`, `..`, or holds a `/` or NUL is `InvalidInput`) and the errors the Unix
//! implementation shares: `not a regular file` and `file too large (N bytes, limit M)`
//! (`InvalidData`), and `moved or replaced during traversal` for a directory whose device or
//! inode changed. Metadata comes from `struct stat`: sizes in bytes, disk use `st_blocks * 512`.

use super::super::{Kind, Meta};
use std::ffi::{CStr, CString, OsStr};
use std::io;
use std::mem::MaybeUninit;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::io::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// Flags for every directory we open.
/// `O_NOFOLLOW`: if the name is (or was just swapped for) a symlink, the open fails instead of
/// landing wherever the link points. `O_DIRECTORY`: a file or FIFO fails too (and never blocks:
/// `O_NONBLOCK` is there for systems that would check the type only after opening).
/// `O_CLOEXEC`: git and other children must not inherit descriptors into the store.
pub(super) const DIR_FLAGS: libc::c_int =
    libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK;

/// `..` and `.` as C strings (C string literals need Rust 1.77; the crate supports 1.74).
const DOTDOT: &CStr = c"..";
#[cfg(not(target_os = "linux"))]
pub(super) const DOT: &CStr = c".";

pub(super) fn last_err() -> io::Error {
    io::Error::last_os_error()
}

pub(super) fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r == -1 {
        Err(last_err())
    } else {
        Ok(r)
    }
}

pub(super) fn not_found(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::NotFound
}

/// Errors with which `openat(O_DIRECTORY|O_NOFOLLOW)` refuses a symlink or non-directory:
/// Linux and macOS say ELOOP or ENOTDIR, FreeBSD EMLINK, NetBSD EFTYPE.
pub(super) fn refused_non_dir(e: &io::Error) -> bool {
    match e.raw_os_error() {
        Some(c) if c == libc::ELOOP || c == libc::ENOTDIR => true,
        #[cfg(any(target_os = "freebsd", target_os = "dragonfly"))]
        Some(c) if c == libc::EMLINK => true,
        #[cfg(target_os = "netbsd")]
        Some(c) if c == libc::EFTYPE => true,
        _ => false,
    }
}

pub(super) fn not_regular() -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, "not a regular file")
}

pub(super) fn too_large(len: u64, max: u64) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("file too large ({len} bytes, limit {max})"),
    )
}

pub(super) fn changed() -> io::Error {
    io::Error::other(
        "directory was moved or replaced during traversal (device/inode changed); not continuing there",
    )
}

/// Check that `name` is exactly one path component and turn it into a C string.
/// Anything else (empty, `.`, `..`, a `/`, a NUL) would let the kernel resolve more than one
/// component — and follow symlinks in all but the last — so it is refused outright.
pub(super) fn component(name: &OsStr) -> io::Result<CName> {
    let b = name.as_bytes();
    if b.is_empty() || b == b"." || b == b".." || crate::bytes::contains2(b, b'/', 0) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("not a single path component: {name:?}"),
        ));
    }
    if b.len() < NAME_BUF {
        let mut buf = [0u8; NAME_BUF];
        buf[..b.len()].copy_from_slice(b);
        return Ok(CName::Stack(buf, b.len() + 1));
    }
    CString::new(b)
        .map(CName::Heap)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in name"))
}

/// Bytes of a [`CName`] kept on the stack, its NUL included: every name a directory lists
/// fits (NAME_MAX is 255).
const NAME_BUF: usize = 256;

/// One checked path component as a C string ([`component`]): on the stack when it fits, so
/// that a walk does not allocate for every entry it stats (a `CString` an entry was 7% of
/// the allocations of `stats`).
// The large variant is the point: boxing its buffer would be the allocation it avoids.
#[allow(clippy::large_enum_variant)]
pub(super) enum CName {
    /// The name and its NUL in the first `.1` bytes.
    Stack([u8; NAME_BUF], usize),
    Heap(CString),
}

impl std::ops::Deref for CName {
    type Target = CStr;
    fn deref(&self) -> &CStr {
        match self {
            // `component` refused names with a NUL and put one after the name.
            CName::Stack(buf, n) => CStr::from_bytes_with_nul(&buf[..*n])
                .expect("component() checked the name has no NUL"),
            CName::Heap(c) => c,
        }
    }
}

pub(super) fn openat_raw(
    dirfd: RawFd,
    name: &CStr,
    flags: libc::c_int,
    mode: libc::c_uint,
) -> io::Result<OwnedFd> {
    loop {
        // SAFETY: `name` is a valid NUL-terminated string; the mode is passed as c_uint as
        // variadic promotion requires.
        let fd = unsafe { libc::openat(dirfd, name.as_ptr(), flags, mode) };
        if fd >= 0 {
            // SAFETY: openat just returned this descriptor and nothing else owns it.
            return Ok(unsafe { OwnedFd::from_raw_fd(fd) });
        }
        let e = last_err();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

// The casts are needed on other platforms even where they are no-ops on this one.
#[allow(clippy::unnecessary_cast)]
fn meta_from(st: &libc::stat) -> Meta {
    // The casts are deliberate: field types differ between platforms (st_dev is i32 on macOS,
    // st_mode u16 there, st_nlink u16); only equality of dev/ino matters to us.
    let kind = match (st.st_mode as u32) & (libc::S_IFMT as u32) {
        x if x == libc::S_IFREG as u32 => Kind::File,
        x if x == libc::S_IFDIR as u32 => Kind::Dir,
        x if x == libc::S_IFLNK as u32 => Kind::Symlink,
        _ => Kind::Other,
    };
    Meta {
        kind,
        dev: st.st_dev as u64,
        ino: st.st_ino as u64,
        len: if st.st_size < 0 { 0 } else { st.st_size as u64 },
        disk_bytes: if st.st_blocks < 0 {
            0
        } else {
            (st.st_blocks as u64).saturating_mul(512)
        },
        mtime_secs: st.st_mtime as i64,
        mtime_nanos: (st.st_mtime_nsec as u32).min(999_999_999),
        uid: st.st_uid as u32,
        nlink: st.st_nlink as u64,
    }
}

pub(super) fn fstat_fd(fd: RawFd) -> io::Result<Meta> {
    let mut st = MaybeUninit::<libc::stat>::uninit();
    // SAFETY: fstat fills the whole struct on success.
    cvt(unsafe { libc::fstat(fd, st.as_mut_ptr()) })?;
    Ok(meta_from(unsafe { &st.assume_init() }))
}

pub(super) fn lstat_at(dirfd: RawFd, name: &CStr) -> io::Result<Meta> {
    let mut st = MaybeUninit::<libc::stat>::uninit();
    // SAFETY: valid C string; fstatat fills the whole struct on success.
    cvt(unsafe {
        libc::fstatat(
            dirfd,
            name.as_ptr(),
            st.as_mut_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    })?;
    Ok(meta_from(unsafe { &st.assume_init() }))
}

/// Open child directory `name` of `dirfd` (never through a symlink) and fstat it.
pub(super) fn open_dir_at(dirfd: RawFd, name: &CStr) -> io::Result<(OwnedFd, Meta)> {
    let fd = openat_raw(dirfd, name, DIR_FLAGS, 0)?;
    let m = fstat_fd(fd.as_raw_fd())?;
    if m.kind != Kind::Dir {
        return Err(io::Error::from_raw_os_error(libc::ENOTDIR));
    }
    Ok((fd, m))
}

pub(super) fn unlink_at(dirfd: RawFd, name: &CStr, flags: libc::c_int) -> io::Result<()> {
    // SAFETY: valid C string.
    cvt(unsafe { libc::unlinkat(dirfd, name.as_ptr(), flags) }).map(drop)
}

/// Reopen the parent of `child` through `openat(child, "..")` and check that it is still the
/// directory we left: `..` is never a symlink, but if `child` was moved elsewhere meanwhile its
/// `..` is some other directory, possibly outside the tree, and we must not continue there.
pub(super) fn reopen_dotdot(child: RawFd, dev: u64, ino: u64) -> io::Result<OwnedFd> {
    let (fd, m) = open_dir_at(child, DOTDOT)?;
    if m.dev != dev || m.ino != ino {
        return Err(changed());
    }
    Ok(fd)
}
