//! Locks (storage-format §4.6, safety R5/R6): resume locks in `resume_locks/{job_id}.lock` and the
//! one global clean lock `resume_locks/.clean.lock`, all `flock`s taken through fs2.
//!
//! A lock file is never unlinked by anyone who does not hold its flock, and a holder checks after
//! acquiring that the path still names the inode it locked (another process may have unlinked
//! and recreated it in between).

use super::fsops::Dir;
use fs2::FileExt;
use std::ffi::OsStr;
use std::fs::File;
use std::io;

/// What a non-blocking probe of a lock file found.
#[derive(Debug, PartialEq, Eq)]
pub enum Probe {
    /// Nobody holds its flock (we took and released it).
    Free,
    /// Another process holds its flock.
    Held,
    /// The flock could not be checked (ENOLCK, unreadable file …): callers keep.
    Unknown(String),
}

fn would_block(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::WouldBlock
        || e.raw_os_error() == fs2::lock_contended_error().raw_os_error()
}

/// Probe the flock of `dir/name` without blocking and without creating the file.
pub fn probe(dir: &Dir, name: &OsStr) -> Probe {
    let f = match dir
        .open_file(name, true, false)
        .or_else(|_| dir.open_file(name, false, false))
    {
        Ok(f) => f,
        Err(e) => return Probe::Unknown(crate::error::describe_io(&e)),
    };
    match f.try_lock_exclusive() {
        Ok(()) => {
            let _ = FileExt::unlock(&f);
            Probe::Free
        }
        Err(e) if would_block(&e) => Probe::Held,
        Err(e) => Probe::Unknown(crate::error::describe_io(&e)),
    }
}

/// A held flock; released on drop.
#[derive(Debug)]
pub struct Held {
    file: File,
}

impl Held {
    /// The locked file.
    pub fn file(&self) -> &File {
        &self.file
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let _ = FileExt::unlock(&self.file);
    }
}

/// Outcome of trying to take a lock.
#[derive(Debug)]
pub enum TryLock {
    /// We hold it.
    Acquired(Held),
    /// Someone else holds it.
    Busy,
}

/// Try to take the flock of `dir/name` without blocking, creating the file (mode 0600) when
/// `create`. After acquiring, re-check that `name` still names the inode we locked (R6); if it
/// was replaced, retry once with the new file.
pub fn try_lock(dir: &Dir, name: &OsStr, create: bool) -> io::Result<TryLock> {
    for _ in 0..3 {
        let f = dir.open_file(name, true, create)?;
        match f.try_lock_exclusive() {
            Ok(()) => {}
            Err(e) if would_block(&e) => return Ok(TryLock::Busy),
            Err(e) => return Err(e),
        }
        let held = Held { file: f };
        let ours = file_id(held.file())?;
        match dir.stat(name) {
            Ok(m) if (m.dev, m.ino) == ours => return Ok(TryLock::Acquired(held)),
            Ok(_) => continue,
            Err(e) if e.kind() == io::ErrorKind::NotFound && create => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(TryLock::Busy)
}

#[cfg(unix)]
fn file_id(f: &File) -> io::Result<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let m = f.metadata()?;
    Ok((m.dev(), m.ino()))
}

#[cfg(not(unix))]
fn file_id(_f: &File) -> io::Result<(u64, u64)> {
    Ok((0, 0))
}
