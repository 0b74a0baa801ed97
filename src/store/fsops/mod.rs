//! Descriptor-relative filesystem operations for cleaning `$PRODIGY_HOME`.
//!
//! This module is the **only code in the crate that deletes files**. Everything that removes,
//! renames or measures something under the storage root goes through [`Dir`], [`walk`] and
//! [`remove_tree`], which keep these promises (safety contract R1, R2, R3, R8):
//!
//! * **fd-relative.** Every operation names one component relative to an open directory
//!   descriptor (`openat`, `fstatat`, `unlinkat`, `mkdirat`, `renameat`). No path of more than one
//!   component is ever resolved by the kernel below the root, so a concurrently swapped component
//!   cannot redirect us.
//! * **No symlink followed, in any component.** Directories are opened with
//!   `O_DIRECTORY|O_NOFOLLOW`, files with `O_NOFOLLOW`, metadata comes from `lstat`
//!   (`AT_SYMLINK_NOFOLLOW`). A symlink is a leaf: it is measured and unlinked, never entered.
//!   Names are checked to be a single component (not empty, `.`, `..`, no `/`, no NUL).
//! * **No filesystem boundary crossed.** Before descending, the child's `st_dev` is compared with
//!   the item's; a mount point is reported, not entered, and its item is not counted as removed.
//! * **Bounded descriptors.** A walk or removal keeps at most [`MAX_OPEN_DIRS`] directory
//!   descriptors open (plus a couple of transient ones) however deep the tree; ancestors beyond
//!   that are closed and later reopened through `openat(child, "..")`, with their device and inode
//!   verified. Memory is proportional to the width of one directory times the depth, never to the
//!   total number of files.
//! * **Idempotent.** `ENOENT` during a removal is success (someone else deleted it first); other
//!   per-entry errors are collected as [`Problem`]s and the removal continues with the rest.
//!
//! On non-Unix platforms the same API exists, but walking and reading go through `std` (without
//! following symlinks where `std` allows it) and every removal or rename fails with
//! [`io::ErrorKind::Unsupported`]: without descriptor-relative calls the guarantees above cannot be
//! kept, so this module refuses to delete rather than delete unsafely.
//!
//! Layout (issue 25): the shared shapes ([`Kind`], [`Meta`], [`Problem`], [`WalkSummary`],
//! [`RemoveSummary`]) are here; `unix/` holds the Unix implementation (`sys`: the raw
//! descriptor-relative calls; `listing`: directory entries; `dir`: the [`Dir`] handle; `stack`:
//! the bounded-descriptor traversal; `walk`; `remove`), `fallback.rs` the non-Unix one, and
//! `tests.rs` the contract tests (Unix only). Every path to a deletion is still under this
//! directory and nowhere else.

use std::io;
use std::path::PathBuf;

/// Maximum number of directory descriptors that [`walk`] or [`remove_tree`] keep open at once
/// (each may briefly use two or three more while opening a child or listing a directory).
pub const MAX_OPEN_DIRS: usize = 32;

/// Kind of a directory entry, from lstat (never following symlinks).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link (the link itself; its target is never looked at).
    Symlink,
    /// Anything else: FIFO, socket, character or block device.
    Other,
}

/// lstat result.
#[derive(Clone, Debug)]
pub struct Meta {
    /// What the entry is (from `st_mode`).
    pub kind: Kind,
    /// Device of the filesystem holding the entry (`st_dev`); 0 where unknown (non-Unix).
    pub dev: u64,
    /// Inode number (`st_ino`); 0 where unknown (non-Unix).
    pub ino: u64,
    /// Apparent size in bytes (`st_size`; for a symlink, the length of its target text).
    pub len: u64,
    /// bytes on disk = st_blocks*512
    pub disk_bytes: u64,
    /// Modification time, whole seconds since the Unix epoch (negative before 1970).
    pub mtime_secs: i64,
    /// Nanoseconds part of the modification time (0..1_000_000_000).
    pub mtime_nanos: u32,
    /// Owner user id (`st_uid`); 0 where unknown (non-Unix).
    pub uid: u32,
    /// Number of hard links (`st_nlink`); 1 where unknown (non-Unix).
    pub nlink: u64,
}

impl Meta {
    fn mtime(&self) -> (i64, u32) {
        (self.mtime_secs, self.mtime_nanos)
    }
}

/// One problem met during a walk or removal, with the path relative to the item ("" = the item itself).
#[derive(Debug)]
pub struct Problem {
    /// Path of the entry the problem is about, relative to the walked or removed item
    /// (empty for the item itself). Built from raw names, never lossily converted.
    pub rel: PathBuf,
    /// What went wrong.
    pub error: io::Error,
}

/// Result of walking one item.
#[derive(Debug, Default)]
pub struct WalkSummary {
    /// Bytes on disk (`st_blocks * 512`) of every entry counted, directories included.
    /// Hard-linked files are counted once per link met.
    pub disk_bytes: u64,
    /// Number of non-directory entries counted (regular files, symlinks, FIFOs, sockets, devices).
    pub files: u64,
    /// Number of directories counted, the item itself included when it is a directory.
    pub dirs: u64,
    /// Newest mtime (secs, nanos) over the item itself and everything inside it; None if nothing could be stat'ed.
    pub newest_mtime: Option<(i64, u32)>,
    /// Directories inside the item on another filesystem (st_dev differs from the item's): not entered.
    pub mounts: Vec<PathBuf>,
    /// Entries that could not be examined; their contents are not counted.
    pub problems: Vec<Problem>,
    /// Device and inode of the item itself from its lstat; None when it does not exist.
    pub dev_ino: Option<(u64, u64)>,
    /// Regular files named `*.gz` counted (the item itself or anywhere inside), so that
    /// `stats` opens again only the items that hold compressed files (issue 25: it opened
    /// every events and logs item again to look for them, 11 system calls an item).
    pub gz_files: u64,
}

impl WalkSummary {
    fn note_mtime(&mut self, m: &Meta) {
        let t = m.mtime();
        if self.newest_mtime.map_or(true, |n| t > n) {
            self.newest_mtime = Some(t);
        }
    }

    fn add_leaf(&mut self, name: &std::ffi::OsStr, m: &Meta) {
        self.files += 1;
        if m.kind == Kind::File && crate::store::gz::is_gz(name) {
            self.gz_files += 1;
        }
        self.disk_bytes = self.disk_bytes.saturating_add(m.disk_bytes);
        self.note_mtime(m);
    }

    fn add_dir(&mut self, m: &Meta) {
        self.dirs += 1;
        self.disk_bytes = self.disk_bytes.saturating_add(m.disk_bytes);
        self.note_mtime(m);
    }
}

/// Result of removing one item.
#[derive(Debug, Default)]
pub struct RemoveSummary {
    /// Number of non-directory entries this call unlinked (files, symlinks, FIFOs, ...).
    pub files: u64,
    /// Number of directories this call removed.
    pub dirs: u64,
    /// Directories inside the item on another filesystem, left in place (the item is then not
    /// complete). `""` means the item itself is on another filesystem than its parent.
    pub mounts: Vec<PathBuf>,
    /// Entries that could not be removed; the removal continued with the rest.
    pub problems: Vec<Problem>,
    /// true when the item no longer exists afterwards.
    pub complete: bool,
}

impl RemoveSummary {
    fn problem(&mut self, rel: PathBuf, error: io::Error) {
        self.problems.push(Problem { rel, error });
    }
}

#[cfg(unix)]
pub use self::unix::{remove_tree, walk, Dir};

#[cfg(not(unix))]
pub use self::fallback::{remove_tree, walk, Dir};

#[cfg(unix)]
mod unix;

#[cfg(not(unix))]
mod fallback;

#[cfg(all(test, unix))]
mod tests;
