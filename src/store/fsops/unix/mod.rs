//! The Unix implementation of [`Dir`], [`walk`](fn@walk) and [`remove_tree`], which keeps the
//! promises of the parent module: every call names one component relative to an open
//! descriptor, no symlink is followed, no filesystem boundary crossed, descriptors are bounded,
//! and `ENOENT` during a removal is success. Linux lists directories with `getdents64` and
//! renames with `renameat2(RENAME_NOREPLACE)`; macOS renames with `renameatx_np(RENAME_EXCL)`;
//! other Unix systems use `readdir` and a checked `renameat`.

mod dir;
mod listing;
mod remove;
mod stack;
mod sys;
mod walk;

pub use self::dir::Dir;
pub use self::remove::remove_tree;
pub use self::walk::walk;

#[cfg(test)]
use self::sys::reopen_dotdot;
#[cfg(test)]
use std::io;

#[cfg(test)]
pub(super) fn test_reopen_dotdot(child: &Dir, dev: u64, ino: u64) -> io::Result<()> {
    reopen_dotdot(child.raw(), dev, ino).map(drop)
}
