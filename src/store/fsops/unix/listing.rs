//! Reading a directory's entries, byte-exact and without "." and "..", each with the `d_type`
//! the kernel reported (a hint: the entry can be replaced at any time after the listing).
//! Linux reads with `getdents64` straight on the descriptor through one reused 32 KiB buffer;
//! other Unix systems go through `fdopendir`/`readdir` on a fresh descriptor of the same
//! directory and report every type as `DT_UNKNOWN` (callers lstat). Errors are the OS errors of
//! those calls (`PermissionDenied`, `EIO`), and `InvalidData` for a malformed `getdents64` record.

use super::super::Kind;
use super::sys::last_err;
#[cfg(not(target_os = "linux"))]
use super::sys::{cvt, openat_raw, DIR_FLAGS, DOT};
#[cfg(not(target_os = "linux"))]
use std::ffi::CStr;
use std::ffi::{OsStr, OsString};
use std::io;
#[cfg(target_os = "linux")]
use std::os::unix::ffi::OsStrExt;
#[cfg(not(target_os = "linux"))]
use std::os::unix::ffi::OsStringExt;
use std::os::unix::io::RawFd;
#[cfg(not(target_os = "linux"))]
use std::os::unix::io::{FromRawFd, IntoRawFd, OwnedFd};

// readdir reports errors only through errno, so it must be cleared before each call.
#[cfg(any(
    target_os = "linux",
    target_os = "emscripten",
    target_os = "fuchsia",
    target_os = "l4re",
    target_os = "hurd",
    target_os = "redox",
    target_os = "dragonfly"
))]
#[cfg_attr(target_os = "linux", allow(dead_code))]
fn clear_errno() -> bool {
    // SAFETY: returns the calling thread's errno slot.
    unsafe { *libc::__errno_location() = 0 };
    true
}
#[cfg(any(target_vendor = "apple", target_os = "freebsd"))]
fn clear_errno() -> bool {
    // SAFETY: returns the calling thread's errno slot.
    unsafe { *libc::__error() = 0 };
    true
}
#[cfg(any(
    target_os = "android",
    target_os = "netbsd",
    target_os = "openbsd",
    target_os = "cygwin"
))]
fn clear_errno() -> bool {
    // SAFETY: returns the calling thread's errno slot.
    unsafe { *libc::__errno() = 0 };
    true
}
#[cfg(not(any(
    target_os = "linux",
    target_os = "emscripten",
    target_os = "fuchsia",
    target_os = "l4re",
    target_os = "hurd",
    target_os = "redox",
    target_os = "dragonfly",
    target_vendor = "apple",
    target_os = "freebsd",
    target_os = "android",
    target_os = "netbsd",
    target_os = "openbsd",
    target_os = "cygwin"
)))]
fn clear_errno() -> bool {
    // Unknown platform: a readdir error cannot be told from the end of the directory. A
    // listing cut short only makes a removal incomplete (rmdir then fails with ENOTEMPTY).
    false
}

/// `d_type` value for "not known": the entry must be lstat'ed to learn its type.
pub(super) const DT_UNKNOWN: u8 = 0;
/// `d_type` of a directory.
pub(super) const DT_DIR: u8 = 4;
/// `d_type` of a regular file.
const DT_REG: u8 = 8;
/// `d_type` of a symbolic link.
const DT_LNK: u8 = 10;

/// The [`Kind`] a `d_type` names; `None` for `DT_UNKNOWN`.
pub(super) fn kind_of_dtype(t: u8) -> Option<Kind> {
    match t {
        DT_UNKNOWN => None,
        DT_REG => Some(Kind::File),
        DT_DIR => Some(Kind::Dir),
        DT_LNK => Some(Kind::Symlink),
        _ => Some(Kind::Other),
    }
}

/// Every entry of the directory `fd` (without "." and ".."), byte-exact, with its `d_type`
/// as the kernel reported it (a hint: the entry can be replaced at any time).
///
/// Linux: `getdents64` straight on `fd` (one call per 32 KiB of entries, no `DIR` stream).
/// `fresh`: `fd` was just opened, so its offset is 0; otherwise it is rewound first. The
/// offset is then left at the end: callers own their descriptors and never share them.
#[cfg(target_os = "linux")]
pub(super) fn read_entries(fd: RawFd, fresh: bool) -> io::Result<Vec<(OsString, u8)>> {
    if !fresh {
        // SAFETY: plain lseek on a descriptor the caller owns.
        if unsafe { libc::lseek(fd, 0, libc::SEEK_SET) } < 0 {
            return Err(last_err());
        }
    }
    thread_local! {
        // One 32 KiB buffer reused by every listing (u64 elements: linux_dirent64 records are
        // 8-byte aligned within it) instead of a zeroed allocation per directory.
        static BUF: std::cell::RefCell<Vec<u64>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    let mut out = Vec::new();
    let mut push = |n: &OsStr, t: u8| out.push((n.to_os_string(), t));
    BUF.with(|b| match b.try_borrow_mut() {
        Ok(mut buf) => getdents_into(fd, &mut buf, &mut push),
        Err(_) => getdents_into(fd, &mut Vec::new(), &mut push),
    })?;
    Ok(out)
}

/// Call `f` with every entry of the directory `fd` (without "." and ".."), in the kernel's
/// order, holding at most one 32 KiB buffer of them: a directory of any size is listed in
/// constant memory. The offset is rewound first and left at the end.
#[cfg(target_os = "linux")]
pub(super) fn for_each_entry(fd: RawFd, f: &mut dyn FnMut(&OsStr, u8)) -> io::Result<()> {
    // SAFETY: plain lseek on a descriptor the caller owns.
    if unsafe { libc::lseek(fd, 0, libc::SEEK_SET) } < 0 {
        return Err(last_err());
    }
    getdents_into(fd, &mut Vec::new(), f)
}

/// [`for_each_entry`] elsewhere: the directory is read whole first.
#[cfg(not(target_os = "linux"))]
pub(super) fn for_each_entry(fd: RawFd, f: &mut dyn FnMut(&OsStr, u8)) -> io::Result<()> {
    for (n, t) in read_entries(fd, false)? {
        f(&n, t);
    }
    Ok(())
}

/// Call `f` with each entry of `fd` from its current offset to the end (without "." and
/// ".."), read through `buf` (grown to 32 KiB when smaller).
#[cfg(target_os = "linux")]
fn getdents_into(fd: RawFd, buf: &mut Vec<u64>, f: &mut dyn FnMut(&OsStr, u8)) -> io::Result<()> {
    if buf.len() < 4096 {
        buf.resize(4096, 0);
    }
    loop {
        // SAFETY: the buffer is valid for writes of its whole length in bytes.
        let n = unsafe {
            libc::syscall(
                libc::SYS_getdents64,
                fd as libc::c_long,
                buf.as_mut_ptr() as *mut libc::c_void,
                (buf.len() * 8) as libc::c_long,
            )
        };
        if n < 0 {
            let e = last_err();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if n == 0 {
            return Ok(());
        }
        // SAFETY: the kernel wrote `n` bytes; viewing initialized u64s as bytes is sound.
        let bytes = unsafe { std::slice::from_raw_parts(buf.as_ptr() as *const u8, n as usize) };
        let mut off = 0usize;
        // struct linux_dirent64 { u64 d_ino; i64 d_off; u16 d_reclen; u8 d_type; char d_name[]; }
        while off + 19 <= bytes.len() {
            let reclen = u16::from_ne_bytes([bytes[off + 16], bytes[off + 17]]) as usize;
            if reclen < 19 || off + reclen > bytes.len() {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "malformed directory entry from getdents64",
                ));
            }
            let dtype = bytes[off + 18];
            let name = &bytes[off + 19..off + reclen];
            let name = &name[..name.iter().position(|&b| b == 0).unwrap_or(name.len())];
            if name != b"." && name != b".." && !name.is_empty() {
                f(OsStr::from_bytes(name), dtype);
            }
            off += reclen;
        }
    }
}

/// Every entry of the directory `fd` (without "." and ".."); the type is not reported here
/// (`DT_UNKNOWN`: callers lstat).
#[cfg(not(target_os = "linux"))]
pub(super) fn read_entries(fd: RawFd, _fresh: bool) -> io::Result<Vec<(OsString, u8)>> {
    Ok(read_names(fd)?
        .into_iter()
        .map(|n| (n, DT_UNKNOWN))
        .collect())
}

/// Read all entry names of the directory `fd` (without "." and ".."), byte-exact.
#[cfg(not(target_os = "linux"))]
fn read_names(fd: RawFd) -> io::Result<Vec<OsString>> {
    // A fresh open file description via openat(fd, "."), so the directory offset is not shared
    // with `fd` (a dup would share it and two listings would interfere). If that is refused,
    // fall back to a dup and rewind it.
    let own = match openat_raw(fd, DOT, DIR_FLAGS, 0) {
        Ok(f) => f,
        Err(_) => {
            // SAFETY: F_DUPFD_CLOEXEC returns a new descriptor or -1.
            let d = cvt(unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 0) })?;
            // SAFETY: freshly returned descriptor, owned by nobody else.
            unsafe { OwnedFd::from_raw_fd(d) }
        }
    };
    let raw = own.into_raw_fd();
    // SAFETY: `raw` is a valid directory descriptor; on success the DIR owns it.
    let dirp = unsafe { libc::fdopendir(raw) };
    if dirp.is_null() {
        let e = last_err();
        // SAFETY: fdopendir failed, so we still own `raw`.
        unsafe { libc::close(raw) };
        return Err(e);
    }
    struct Stream(*mut libc::DIR);
    impl Drop for Stream {
        fn drop(&mut self) {
            // SAFETY: the pointer came from fdopendir and is closed exactly once.
            unsafe { libc::closedir(self.0) };
        }
    }
    let stream = Stream(dirp);
    // SAFETY: valid stream.
    unsafe { libc::rewinddir(stream.0) };
    let mut out = Vec::new();
    loop {
        let errno_ok = clear_errno();
        // SAFETY: valid stream; the entry is only read before the next readdir call.
        let ent = unsafe { libc::readdir(stream.0) };
        if ent.is_null() {
            if errno_ok {
                let e = last_err();
                if e.raw_os_error().unwrap_or(0) != 0 {
                    return Err(e);
                }
            }
            break;
        }
        // SAFETY: d_name is NUL-terminated inside the entry.
        let bytes = unsafe { CStr::from_ptr((*ent).d_name.as_ptr()) }.to_bytes();
        if bytes == b"." || bytes == b".." {
            continue;
        }
        out.push(OsString::from_vec(bytes.to_vec()));
    }
    Ok(out)
}
