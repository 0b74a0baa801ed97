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

/// A job's resume lock, held by this process (storage-format §4.6, run.md §5.1): the flock of
/// `resume_locks/{job_id}.lock` plus its JSON content naming this process. Dropping it (or
/// [`ResumeLock::release`]) unlinks the file while the flock is still held (R6), then unlocks; a
/// SIGKILL leaves the file with a dead pid and no flock, which every reader treats as not live.
#[derive(Debug)]
pub struct ResumeLock {
    held: Option<Held>,
    dir: std::path::PathBuf,
    name: std::ffi::OsString,
}

/// Why a resume lock could not be taken.
#[derive(Debug)]
pub enum LockRefused {
    /// Another process holds the flock; its recorded content, when it parses.
    Held(Option<super::records::ResumeLockInfo>),
    /// An I/O error (message names the file).
    Io(String),
}

impl ResumeLock {
    /// Take `resume_locks/{job_id}.lock` under `root` without blocking and write
    /// `{job_id, process_id, hostname, acquired_at}` into it (in place: replacing the file would
    /// drop the flock). `job_id` must already fit the id grammar.
    pub fn acquire(root: &std::path::Path, job_id: &str) -> Result<ResumeLock, LockRefused> {
        use std::io::{Seek, Write};
        let dirp = root.join("resume_locks");
        let io = |what: &str, e: io::Error| {
            LockRefused::Io(format!(
                "failed to {what} `{}`: {}",
                dirp.join(format!("{job_id}.lock")).display(),
                crate::error::describe_io(&e)
            ))
        };
        std::fs::create_dir_all(&dirp).map_err(|e| io("create the directory of", e))?;
        let dir = Dir::open_root(&dirp).map_err(|e| io("open the directory of", e))?;
        let name = std::ffi::OsString::from(format!("{job_id}.lock"));
        let held = match try_lock(&dir, &name, true).map_err(|e| io("lock", e))? {
            TryLock::Acquired(h) => h,
            TryLock::Busy => {
                let info = dir
                    .read_file(&name, 64 * 1024)
                    .ok()
                    .and_then(|b| super::records::parse(&b).ok());
                return Err(LockRefused::Held(info));
            }
        };
        let info = super::records::ResumeLockInfo {
            job_id: job_id.to_string(),
            process_id: std::process::id(),
            hostname: crate::procs::hostname(),
            acquired_at: super::records::Timestamp::now(),
            extra: Default::default(),
        };
        let bytes = super::records::to_json_bytes(&info);
        let mut f = held.file();
        f.set_len(0)
            .and_then(|_| f.seek(io::SeekFrom::Start(0)))
            .and_then(|_| f.write_all(&bytes))
            .and_then(|_| f.sync_all())
            .map_err(|e| io("write", e))?;
        Ok(ResumeLock {
            held: Some(held),
            dir: dirp,
            name,
        })
    }

    /// Unlink the lock file while holding its flock, then release the flock.
    pub fn release(mut self) {
        self.unlink_and_drop();
    }

    fn unlink_and_drop(&mut self) {
        if let Some(h) = self.held.take() {
            if let Ok(d) = Dir::open_root(&self.dir) {
                // Only if the name still names the inode we hold (R6).
                if let (Ok(m), Ok(ours)) = (d.stat(&self.name), file_id(h.file())) {
                    if (m.dev, m.ino) == ours {
                        let _ = d.unlink(&self.name);
                    }
                }
            }
            drop(h);
        }
    }
}

impl Drop for ResumeLock {
    fn drop(&mut self) {
        self.unlink_and_drop();
    }
}
