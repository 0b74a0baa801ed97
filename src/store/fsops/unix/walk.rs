//! [`walk`]: measuring one item (a file, a symlink or a directory tree) fd-relative, never
//! following a symlink and never entering another filesystem. It returns a [`WalkSummary`]:
//! disk bytes (`st_blocks * 512`), file and directory counts, the newest mtime, the mount points
//! met and the per-entry problems. `Err` only for a bad name or when the item's own lstat fails.

use super::super::{Kind, Problem, WalkSummary};
use super::dir::Dir;
use super::listing::read_entries;
use super::stack::{Frame, Next, Stack};
use super::sys::{component, lstat_at, not_found, open_dir_at, refused_non_dir};
use std::ffi::OsStr;
use std::io;
use std::os::unix::io::AsRawFd;
use std::path::PathBuf;

/// Walk child `name` of `parent` (file, symlink, or directory tree). Never follows a symlink (a symlink counts as one entry of its own lstat size), never enters another filesystem, keeps at most ~32 directory descriptors open however deep the tree (deeper ancestors are closed and reopened with openat(child, "..") and their (dev, ino) verified; a mismatch is a Problem and that subtree's walk stops). NotFound for the item itself => Ok(WalkSummary::default()) with newest_mtime None.
///
/// Returns `Err` only when `name` is not a single component (`InvalidInput`) or the item's
/// own lstat fails with something other than NotFound. Everything after that — an
/// unreadable directory, entries that vanish — is reported in `problems` (an unreadable item
/// is `problems` with `rel` ""), and what could be seen is still counted. When the item
/// itself is a directory on another filesystem than `parent`, it is not entered: `mounts`
/// is `[""]` and only its own mtime is reported, consistent with
/// [`remove_tree`](super::remove_tree), which would not remove it.
pub fn walk(parent: &Dir, name: &OsStr) -> io::Result<WalkSummary> {
    let cname = component(name)?;
    let mut sum = WalkSummary::default();
    let st = match lstat_at(parent.raw(), &cname) {
        Ok(m) => m,
        Err(e) if not_found(&e) => return Ok(sum),
        Err(e) => return Err(e),
    };
    sum.dev_ino = Some((st.dev, st.ino));
    if st.kind != Kind::Dir {
        sum.add_leaf(name, &st);
        return Ok(sum);
    }
    if st.dev != parent.dev {
        sum.note_mtime(&st);
        sum.mounts.push(PathBuf::new());
        return Ok(sum);
    }
    let (fd, m) = match open_dir_at(parent.raw(), &cname) {
        Ok(x) => x,
        Err(e) if not_found(&e) => return Ok(sum),
        Err(e) if refused_non_dir(&e) => {
            // Replaced by a symlink or file since the lstat: count what is there now as a
            // leaf, never follow it.
            match lstat_at(parent.raw(), &cname) {
                Ok(m) if m.kind != Kind::Dir => sum.add_leaf(name, &m),
                Ok(_) => sum.problems.push(Problem {
                    rel: PathBuf::new(),
                    error: e,
                }),
                Err(e2) if not_found(&e2) => {}
                Err(e2) => return Err(e2),
            }
            return Ok(sum);
        }
        Err(e) => {
            sum.add_dir(&st);
            sum.problems.push(Problem {
                rel: PathBuf::new(),
                error: e,
            });
            return Ok(sum);
        }
    };
    if m.dev != parent.dev {
        sum.note_mtime(&m);
        sum.mounts.push(PathBuf::new());
        return Ok(sum);
    }
    sum.add_dir(&m);
    let names = match read_entries(fd.as_raw_fd(), true) {
        Ok(n) => n,
        Err(e) => {
            sum.problems.push(Problem {
                rel: PathBuf::new(),
                error: e,
            });
            return Ok(sum);
        }
    };
    // Every directory entered must be on the item's filesystem.
    let item_dev = m.dev;
    let mut stack = Stack::new(parent, Frame::new(name.to_owned(), names, fd, &m));
    loop {
        let (dirfd, entry) = match stack.next(&mut sum.problems) {
            Next::Empty => break,
            Next::Done => {
                stack.pop(&mut sum.problems);
                continue;
            }
            Next::Entry(fd, n, _) => (fd, n),
        };
        let cname = match component(&entry) {
            Ok(c) => c,
            Err(e) => {
                sum.problems.push(Problem {
                    rel: stack.rel_top(Some(&entry)),
                    error: e,
                });
                continue;
            }
        };
        let st = match lstat_at(dirfd, &cname) {
            Ok(m) => m,
            Err(e) if not_found(&e) => continue,
            Err(e) => {
                sum.problems.push(Problem {
                    rel: stack.rel_top(Some(&entry)),
                    error: e,
                });
                continue;
            }
        };
        if st.kind != Kind::Dir {
            sum.add_leaf(&entry, &st);
            continue;
        }
        // st_dev differs: a mount point (or another subvolume). Do not even open it (opening
        // could trigger an automount).
        if st.dev != item_dev {
            sum.mounts.push(stack.rel_top(Some(&entry)));
            continue;
        }
        match open_dir_at(dirfd, &cname) {
            Ok((cfd, cm)) => {
                // Re-check on the opened directory: something may have been mounted or
                // swapped in since the lstat.
                if cm.dev != item_dev {
                    sum.mounts.push(stack.rel_top(Some(&entry)));
                    continue;
                }
                sum.add_dir(&cm);
                match read_entries(cfd.as_raw_fd(), true) {
                    Ok(names) => stack.push(Frame::new(entry, names, cfd, &cm)),
                    Err(e) => sum.problems.push(Problem {
                        rel: stack.rel_top(Some(&entry)),
                        error: e,
                    }),
                }
            }
            Err(e) if not_found(&e) => {}
            Err(e) if refused_non_dir(&e) => match lstat_at(dirfd, &cname) {
                Ok(m) if m.kind != Kind::Dir => sum.add_leaf(&entry, &m),
                Err(e2) if not_found(&e2) => {}
                Ok(_) => sum.problems.push(Problem {
                    rel: stack.rel_top(Some(&entry)),
                    error: e,
                }),
                Err(e2) => sum.problems.push(Problem {
                    rel: stack.rel_top(Some(&entry)),
                    error: e2,
                }),
            },
            Err(e) => {
                sum.add_dir(&st);
                sum.problems.push(Problem {
                    rel: stack.rel_top(Some(&entry)),
                    error: e,
                });
            }
        }
    }
    Ok(sum)
}
