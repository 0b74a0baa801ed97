//! [`remove_tree`]: removing one item entirely, post-order and fd-relative: files and symlinks
//! are unlinked (a symlink itself, never its target), directories entered only through
//! `O_NOFOLLOW` and never across a filesystem boundary. `ENOENT` is success (someone deleted it
//! first); other per-entry errors are collected in the [`RemoveSummary`] and the removal goes
//! on with the rest. It never returns an error: a bad name is a problem and nothing is touched.

use super::super::{Kind, RemoveSummary};
use super::dir::Dir;
use super::listing::{read_entries, DT_DIR, DT_UNKNOWN};
use super::stack::{Frame, Next, Stack};
use super::sys::{component, lstat_at, not_found, open_dir_at, refused_non_dir, unlink_at};
use std::ffi::{CStr, OsStr};
use std::io;
use std::os::unix::io::{AsRawFd, RawFd};
use std::path::PathBuf;

/// unlinkat a non-directory, counting it. Gone already is success.
fn unlink_leaf(dirfd: RawFd, name: &CStr, sum: &mut RemoveSummary) -> io::Result<()> {
    match unlink_at(dirfd, name, 0) {
        Ok(()) => {
            sum.files += 1;
            Ok(())
        }
        Err(e) if not_found(&e) => Ok(()),
        Err(e) => Err(e),
    }
}

/// rmdir a directory, counting it. Gone already is success.
fn rmdir(dirfd: RawFd, name: &CStr, sum: &mut RemoveSummary) -> io::Result<()> {
    match unlink_at(dirfd, name, libc::AT_REMOVEDIR) {
        Ok(()) => {
            sum.dirs += 1;
            Ok(())
        }
        Err(e) if not_found(&e) => Ok(()),
        Err(e) => Err(e),
    }
}

/// `name` was a directory at lstat time but opening it as one (O_NOFOLLOW) was refused: it
/// was swapped for a symlink or file. Unlink whatever non-directory is there now — the link
/// itself, never its target.
fn remove_swapped(
    dirfd: RawFd,
    name: &CStr,
    open_err: io::Error,
    sum: &mut RemoveSummary,
) -> io::Result<()> {
    match lstat_at(dirfd, name) {
        Ok(m) if m.kind != Kind::Dir => unlink_leaf(dirfd, name, sum),
        Ok(_) => Err(open_err),
        Err(e) if not_found(&e) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Remove child `name` of `parent` entirely, post-order, fd-relative: unlinkat files and symlinks (a symlink is unlinked, never followed), descend into directories only through open_dir (O_NOFOLLOW), never into another filesystem (st_dev differs from the item's own st_dev -> record in `mounts`, leave it, item not complete), bounded descriptors as in walk, ENOENT anywhere is success (concurrent deletion), other per-entry errors go into `problems` and removal continues with the rest. Counts disk_bytes of what was actually unlinked. A directory that vanished or was replaced between readdir and open (e.g. swapped for a symlink) must never be followed: the symlink itself is unlinked instead.
///
/// In addition, an item that is itself a directory on another filesystem than `parent` (a
/// mount point at the item's place) is not entered: `mounts` is `[""]`, nothing is removed,
/// `complete` is false (rule R2 compares with the parent). A `name` that is not a single
/// component is a Problem (`InvalidInput`) and nothing is touched.
pub fn remove_tree(parent: &Dir, name: &OsStr) -> RemoveSummary {
    let mut sum = RemoveSummary::default();
    let top = PathBuf::new;
    let cname = match component(name) {
        Ok(c) => c,
        Err(e) => {
            sum.problem(top(), e);
            return sum;
        }
    };
    let pfd = parent.raw();
    let st = match lstat_at(pfd, &cname) {
        Ok(m) => m,
        Err(e) if not_found(&e) => {
            sum.complete = true;
            return sum;
        }
        Err(e) => {
            sum.problem(top(), e);
            return sum;
        }
    };
    if st.kind != Kind::Dir {
        match unlink_leaf(pfd, &cname, &mut sum) {
            Ok(()) => sum.complete = true,
            Err(e) => sum.problem(top(), e),
        }
        return sum;
    }
    if st.dev != parent.dev {
        sum.mounts.push(top());
        return sum;
    }
    let (fd, m) = match open_dir_at(pfd, &cname) {
        Ok(x) => x,
        Err(e) if not_found(&e) => {
            sum.complete = true;
            return sum;
        }
        Err(e) if refused_non_dir(&e) => {
            match remove_swapped(pfd, &cname, e, &mut sum) {
                Ok(()) => sum.complete = true,
                Err(e) => sum.problem(top(), e),
            }
            return sum;
        }
        Err(e) => {
            // Unreadable (e.g. EACCES): an empty directory can still be removed.
            match rmdir(pfd, &cname, &mut sum) {
                Ok(()) => sum.complete = true,
                Err(_) => sum.problem(top(), e),
            }
            return sum;
        }
    };
    if m.dev != parent.dev {
        sum.mounts.push(top());
        return sum;
    }
    let names = match read_entries(fd.as_raw_fd(), true) {
        Ok(n) => n,
        Err(e) => {
            drop(fd);
            match rmdir(pfd, &cname, &mut sum) {
                Ok(()) => sum.complete = true,
                Err(_) => sum.problem(top(), e),
            }
            return sum;
        }
    };
    let item_dev = m.dev;
    let mut stack = Stack::new(parent, Frame::new(name.to_owned(), names, fd, &m));
    loop {
        let (dirfd, entry, dtype) = match stack.next(&mut sum.problems) {
            Next::Empty => break,
            Next::Entry(fd, n, t) => (fd, n, t),
            Next::Done => {
                let was_item = stack.frames.len() == 1;
                let Some((child, ready)) = stack.pop(&mut sum.problems) else {
                    break;
                };
                if was_item {
                    // All contents handled; remove the item itself from the caller's parent.
                    if !child.kept {
                        match rmdir(pfd, &cname, &mut sum) {
                            Ok(()) => sum.complete = true,
                            Err(e) => sum.problem(top(), e),
                        }
                    }
                    break;
                }
                if !ready {
                    // The parent could not be reopened safely; the child stays.
                    continue;
                }
                if child.kept {
                    stack.mark_kept();
                    continue;
                }
                let Some(parent_fd) = stack.frames.last().and_then(|f| f.fd.as_ref()) else {
                    stack.mark_kept();
                    continue;
                };
                let parent_fd = parent_fd.as_raw_fd();
                let res = component(&child.name).and_then(|c| rmdir(parent_fd, &c, &mut sum));
                if let Err(e) = res {
                    let rel = stack.rel_top(Some(&child.name));
                    sum.problem(rel, e);
                    stack.mark_kept();
                }
                continue;
            }
        };
        let rel = |stack: &Stack<'_>| stack.rel_top(Some(&entry));
        let cname = match component(&entry) {
            Ok(c) => c,
            Err(e) => {
                sum.problem(rel(&stack), e);
                stack.mark_kept();
                continue;
            }
        };
        if dtype != DT_UNKNOWN && dtype != DT_DIR {
            // Not a directory when listed: unlink it straight away (rm -rf's one call per
            // entry). unlinkat never follows a symlink and refuses a directory (EISDIR; EPERM
            // on some systems), which then takes the careful path below, as does any error.
            match unlink_at(dirfd, &cname, 0) {
                Ok(()) => {
                    sum.files += 1;
                    continue;
                }
                Err(e) if not_found(&e) => continue,
                Err(_) => {}
            }
        }
        let st = match lstat_at(dirfd, &cname) {
            Ok(m) => m,
            Err(e) if not_found(&e) => continue,
            Err(e) => {
                sum.problem(rel(&stack), e);
                stack.mark_kept();
                continue;
            }
        };
        if st.kind != Kind::Dir {
            if let Err(e) = unlink_leaf(dirfd, &cname, &mut sum) {
                sum.problem(rel(&stack), e);
                stack.mark_kept();
            }
            continue;
        }
        if st.dev != item_dev {
            sum.mounts.push(rel(&stack));
            stack.mark_kept();
            continue;
        }
        match open_dir_at(dirfd, &cname) {
            Ok((cfd, cm)) => {
                if cm.dev != item_dev {
                    sum.mounts.push(rel(&stack));
                    stack.mark_kept();
                    continue;
                }
                match read_entries(cfd.as_raw_fd(), true) {
                    Ok(names) => stack.push(Frame::new(entry, names, cfd, &cm)),
                    Err(e) => {
                        drop(cfd);
                        if rmdir(dirfd, &cname, &mut sum).is_err() {
                            sum.problem(rel(&stack), e);
                            stack.mark_kept();
                        }
                    }
                }
            }
            Err(e) if not_found(&e) => {}
            Err(e) if refused_non_dir(&e) => {
                if let Err(e) = remove_swapped(dirfd, &cname, e, &mut sum) {
                    sum.problem(rel(&stack), e);
                    stack.mark_kept();
                }
            }
            Err(e) => {
                if rmdir(dirfd, &cname, &mut sum).is_err() {
                    sum.problem(rel(&stack), e);
                    stack.mark_kept();
                }
            }
        }
    }
    sum
}
