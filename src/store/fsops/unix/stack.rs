//! The depth-first traversal shared by [`walk`](fn@super::walk) and
//! [`remove_tree`](super::remove_tree): a stack of directory frames, each with the entries not
//! visited yet, of which at most [`MAX_OPEN_DIRS`] hold an open descriptor. Ancestors beyond
//! that are closed and reopened through `openat(child, "..")` (or, failing that, down from the
//! caller's parent one component at a time), their device and inode verified; a frame that
//! cannot be reopened safely is a [`Problem`] and is abandoned with what is left in it.

use super::super::{Meta, Problem, MAX_OPEN_DIRS};
use super::dir::Dir;
use super::sys::{changed, component, open_dir_at, reopen_dotdot};
use std::ffi::{OsStr, OsString};
use std::io;
use std::os::unix::io::{AsRawFd, OwnedFd, RawFd};
use std::path::PathBuf;

/// One directory on the traversal stack.
pub(super) struct Frame {
    /// Name in its parent directory (frame 0: in the caller's `parent`).
    pub(super) name: OsString,
    /// Entries not visited yet (read in full before descending).
    names: Vec<(OsString, u8)>,
    dev: u64,
    ino: u64,
    /// Open descriptor, or None while closed to bound the number of open descriptors.
    pub(super) fd: Option<OwnedFd>,
    /// Something inside is left in place (mount, error), so rmdir of this frame would fail.
    pub(super) kept: bool,
}

impl Frame {
    pub(super) fn new(name: OsString, names: Vec<(OsString, u8)>, fd: OwnedFd, m: &Meta) -> Frame {
        Frame {
            name,
            names,
            dev: m.dev,
            ino: m.ino,
            fd: Some(fd),
            kept: false,
        }
    }
}

/// Depth-first traversal state. Invariant: frames `[0, closed)` have no descriptor, frames
/// `[closed, len)` have one, and `len - closed <= MAX_OPEN_DIRS`.
pub(super) struct Stack<'a> {
    root: &'a Dir,
    pub(super) frames: Vec<Frame>,
    closed: usize,
}

pub(super) enum Next {
    /// Visit entry `name` of the top frame, whose descriptor is `fd`, with its `d_type`.
    Entry(RawFd, OsString, u8),
    /// The top frame has no entries left.
    Done,
    /// The stack is empty.
    Empty,
}

impl<'a> Stack<'a> {
    pub(super) fn new(root: &'a Dir, first: Frame) -> Stack<'a> {
        Stack {
            root,
            frames: vec![first],
            closed: 0,
        }
    }

    pub(super) fn push(&mut self, f: Frame) {
        self.frames.push(f);
        // Bounded descriptors: close the oldest open ancestor; it is reopened through ".."
        // from its child when the traversal comes back to it.
        if self.frames.len() - self.closed > MAX_OPEN_DIRS {
            self.frames[self.closed].fd = None;
            self.closed += 1;
        }
    }

    /// Path relative to the item of frame `idx`, plus `extra` if given.
    fn rel(&self, idx: usize, extra: Option<&OsStr>) -> PathBuf {
        let mut p = PathBuf::new();
        for f in self.frames.iter().take(idx + 1).skip(1) {
            p.push(&f.name);
        }
        if let Some(e) = extra {
            p.push(e);
        }
        p
    }

    pub(super) fn rel_top(&self, extra: Option<&OsStr>) -> PathBuf {
        self.rel(self.frames.len().saturating_sub(1), extra)
    }

    pub(super) fn mark_kept(&mut self) {
        if let Some(t) = self.frames.last_mut() {
            t.kept = true;
        }
    }

    pub(super) fn next(&mut self, problems: &mut Vec<Problem>) -> Next {
        loop {
            let Some(top) = self.frames.last_mut() else {
                return Next::Empty;
            };
            if top.fd.is_none() {
                // Cannot happen given the invariant; recover by reopening from the root.
                self.reopen_top(None, problems);
                continue;
            }
            return match (top.names.pop(), top.fd.as_ref()) {
                (Some((n, t)), Some(fd)) => Next::Entry(fd.as_raw_fd(), n, t),
                _ => Next::Done,
            };
        }
    }

    /// Pop the top frame and make the new top usable. Returns the popped frame and whether
    /// its parent is still on the stack with an open descriptor (false: the parent could not
    /// be reopened safely and was abandoned, recorded in `problems`). None if empty.
    pub(super) fn pop(&mut self, problems: &mut Vec<Problem>) -> Option<(Frame, bool)> {
        let mut child = self.frames.pop()?;
        self.closed = self.closed.min(self.frames.len());
        let fd = child.fd.take();
        let ready = self.reopen_top(fd.as_ref(), problems);
        Some((child, ready))
    }

    /// Make sure the top frame has a descriptor. The first attempt goes through
    /// `openat(child, "..")` (verified by dev/ino); a frame that cannot be reopened is a
    /// Problem and is abandoned with everything left in it. Its ancestors, having no open
    /// child any more, are reopened by walking down from the caller's parent one verified
    /// component at a time. Returns false if any frame was abandoned.
    fn reopen_top(&mut self, child: Option<&OwnedFd>, problems: &mut Vec<Problem>) -> bool {
        let mut via_child = child;
        let mut ready = true;
        while let Some(top) = self.frames.last() {
            if top.fd.is_some() {
                break;
            }
            let idx = self.frames.len() - 1;
            let res = match via_child.take() {
                Some(c) => reopen_dotdot(c.as_raw_fd(), top.dev, top.ino),
                None => self.reopen_from_root(idx),
            };
            match res {
                Ok(fd) => {
                    self.frames[idx].fd = Some(fd);
                    self.closed = idx;
                }
                Err(e) => {
                    problems.push(Problem {
                        rel: self.rel(idx, None),
                        error: e,
                    });
                    self.frames.pop();
                    self.closed = self.closed.min(self.frames.len());
                    self.mark_kept();
                    ready = false;
                }
            }
        }
        ready
    }

    fn reopen_from_root(&self, idx: usize) -> io::Result<OwnedFd> {
        let mut cur: Option<OwnedFd> = None;
        for f in &self.frames[..=idx] {
            let dirfd = cur.as_ref().map_or(self.root.raw(), |c| c.as_raw_fd());
            let c = component(&f.name)?;
            let (fd, m) = open_dir_at(dirfd, &c)?;
            if m.dev != f.dev || m.ino != f.ino {
                return Err(changed());
            }
            cur = Some(fd);
        }
        cur.ok_or_else(changed)
    }
}
