//! A cache of freed small blocks in front of the system allocator, for the static musl binary.
//!
//! musl's allocator (mallocng) hands out small blocks from page-sized groups, one group size per
//! size class, and unmaps a group as soon as its last block is freed. The clean engine works in
//! batches of [`crate::clean::stream::BATCH_ITEMS`] sessions, making and dropping a few hundred
//! small strings and vectors a session, so every batch maps and unmaps the same groups again:
//! 47,000 `mmap` and 47,000 `munmap` for 10,000 sessions, and the static binary took 1.6× the
//! time of the glibc build (scripts/README.md, issue 25's seventh and eighth rounds).
//!
//! [`SmallBlocks`] keeps freed blocks of up to [`MAX_SMALL`] bytes (alignment at most 16) on one
//! free list per 16-byte size class and hands them out again; everything else, and every block
//! once [`CAP_BYTES`] are held, goes to [`System`]. Memory a run gives back is therefore at most
//! [`CAP_BYTES`] less than under musl alone; peak memory is unchanged, since every cached block
//! was in use before it was freed.
//!
//! The binary is single-threaded (DESIGN.md), but a `GlobalAlloc` must be `Sync`: one spin lock
//! guards the lists and is held only for a push or a pop, never across a call into [`System`].
//! `src/main.rs` installs it for musl targets only. With glibc (which caches small blocks per
//! thread and keeps freed memory) it measured the same by hand (hyperfine, 10 runs) and 10–15%
//! faster in one bench run, but held more: the peak-RSS slope of `clean --dry-run` from 10,000
//! to 40,000 sessions rose from 100–111 to 103–132 bytes a session, over the 128-byte target.
//! CI runs every CLI test against the static musl binary, so they all run on it there.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::UnsafeCell;
use std::ptr;
use std::sync::atomic::{AtomicBool, Ordering};

/// Size classes are multiples of this many bytes; it is also the alignment of every cached block.
const GRAIN: usize = 16;
/// Number of size classes: blocks of 16, 32, … [`MAX_SMALL`] bytes.
const CLASSES: usize = 64;
/// Largest request, in bytes, served from the cache.
pub const MAX_SMALL: usize = GRAIN * CLASSES;
/// Most bytes held on the free lists at once (1 MiB); a block freed beyond it goes to [`System`].
/// At 10,000 sessions it leaves 15,800 of musl's 47,000 `mmap` calls. More pays in time but
/// not in memory: at 40,000 sessions in one repository (dry run, issue 25's ninth round) the
/// `mmap` calls were 60,470 with 1 MiB, 16,635 with 2 MiB and 10,514 with 4 MiB, but in 20
/// repositories 2 MiB raised the peak-RSS slope of `clean --dry-run` from 10,000 to 40,000
/// sessions from 101 to 136 bytes a session, and 4 MiB to 142 in the eighth round (the target
/// is 128). Cached blocks of one phase's size classes sit idle at another's peak.
pub const CAP_BYTES: usize = 1 << 20;

/// A freed block: its first word links to the next free block of its class.
struct Free {
    next: *mut Free,
}

struct Lists {
    heads: [*mut Free; CLASSES],
    held: usize,
}

/// The allocator: see the module documentation.
pub struct SmallBlocks {
    locked: AtomicBool,
    lists: UnsafeCell<Lists>,
}

// SAFETY: `lists` is only touched between `lock` and `unlock`, which exclude each other.
unsafe impl Sync for SmallBlocks {}

impl Default for SmallBlocks {
    fn default() -> Self {
        Self::new()
    }
}

/// The class of a request, or `None` when the cache does not serve it.
#[inline(always)]
fn class_of(size: usize, align: usize) -> Option<usize> {
    if size <= MAX_SMALL && align <= GRAIN {
        Some(size.max(1).div_ceil(GRAIN) - 1)
    } else {
        None
    }
}

/// The layout every block of class `c` is made with, whatever size was asked for.
#[inline(always)]
fn block(c: usize) -> Layout {
    // SAFETY: GRAIN is a power of two and GRAIN * CLASSES is far below isize::MAX.
    unsafe { Layout::from_size_align_unchecked(GRAIN * (c + 1), GRAIN) }
}

impl SmallBlocks {
    /// An empty cache.
    pub const fn new() -> Self {
        Self {
            locked: AtomicBool::new(false),
            lists: UnsafeCell::new(Lists {
                heads: [ptr::null_mut(); CLASSES],
                held: 0,
            }),
        }
    }

    /// Runs `f` on the lists with the lock held. `f` must not allocate.
    #[inline(always)]
    fn locked<R>(&self, f: impl FnOnce(&mut Lists) -> R) -> R {
        while self
            .locked
            .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            std::hint::spin_loop();
        }
        // SAFETY: the lock is held, so no other reference to the lists exists.
        let r = f(unsafe { &mut *self.lists.get() });
        self.locked.store(false, Ordering::Release);
        r
    }

    /// A cached block of class `c`, or null when its list is empty.
    #[inline(always)]
    fn pop(&self, c: usize) -> *mut u8 {
        self.locked(|l| {
            let head = l.heads[c];
            if !head.is_null() {
                // SAFETY: every pointer on a list is a block this cache owns, its first word
                // written by `push`.
                l.heads[c] = unsafe { (*head).next };
                l.held -= block(c).size();
            }
            head.cast()
        })
    }

    /// Puts block `p` of class `c` on its list; false when that would hold more than the cap.
    #[inline(always)]
    fn push(&self, c: usize, p: *mut u8) -> bool {
        self.locked(|l| {
            let size = block(c).size();
            if l.held + size > CAP_BYTES {
                return false;
            }
            let f: *mut Free = p.cast();
            // SAFETY: `p` is a block of class `c` (at least 16 bytes, 16-aligned) that its owner
            // has just given up.
            unsafe { f.write(Free { next: l.heads[c] }) };
            l.heads[c] = f;
            l.held += size;
            true
        })
    }

    /// Bytes held on the free lists now.
    pub fn held(&self) -> usize {
        self.locked(|l| l.held)
    }
}

// SAFETY: small requests get a block of their class's size, at least as large and as aligned as
// asked; a block is on a list only after its owner freed it, and leaves the list before it is
// handed out again. Other requests go to `System` unchanged. Never inlined: with LTO, the
// lock and the lists copied into every allocating call site cost 6.7 KB of the aarch64 binary.
unsafe impl GlobalAlloc for SmallBlocks {
    #[inline(never)]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        match class_of(layout.size(), layout.align()) {
            None => unsafe { System.alloc(layout) },
            Some(c) => {
                let p = self.pop(c);
                if p.is_null() {
                    unsafe { System.alloc(block(c)) }
                } else {
                    p
                }
            }
        }
    }

    #[inline(never)]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        match class_of(layout.size(), layout.align()) {
            None => unsafe { System.alloc_zeroed(layout) },
            Some(c) => {
                let p = self.pop(c);
                if p.is_null() {
                    unsafe { System.alloc_zeroed(block(c)) }
                } else {
                    // SAFETY: `p` is a block of at least `layout.size()` bytes.
                    unsafe { p.write_bytes(0, layout.size()) };
                    p
                }
            }
        }
    }

    #[inline(never)]
    unsafe fn dealloc(&self, p: *mut u8, layout: Layout) {
        match class_of(layout.size(), layout.align()) {
            None => unsafe { System.dealloc(p, layout) },
            Some(c) => {
                if !self.push(c, p) {
                    unsafe { System.dealloc(p, block(c)) }
                }
            }
        }
    }

    #[inline(never)]
    unsafe fn realloc(&self, p: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let old = class_of(layout.size(), layout.align());
        let new = class_of(new_size, layout.align());
        match (old, new) {
            (None, None) => unsafe { System.realloc(p, layout, new_size) },
            (Some(a), Some(b)) if a == b => p,
            _ => {
                // SAFETY: the caller guarantees `new_size` with this alignment is a valid layout.
                let to = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
                let q = unsafe { self.alloc(to) };
                if !q.is_null() {
                    // SAFETY: both blocks hold at least the smaller of the two sizes, and are
                    // distinct: `p` is still owned by the caller.
                    unsafe {
                        ptr::copy_nonoverlapping(p, q, layout.size().min(new_size));
                        self.dealloc(p, layout);
                    }
                }
                q
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(size: usize, align: usize) -> Layout {
        Layout::from_size_align(size, align).unwrap()
    }

    #[test]
    fn classes_round_up_to_sixteen_bytes_and_stop_at_the_largest() {
        assert_eq!(class_of(0, 1), Some(0));
        assert_eq!(class_of(1, 1), Some(0));
        assert_eq!(class_of(16, 8), Some(0));
        assert_eq!(class_of(17, 8), Some(1));
        assert_eq!(class_of(MAX_SMALL, 16), Some(CLASSES - 1));
        assert_eq!(class_of(MAX_SMALL + 1, 1), None);
        assert_eq!(class_of(8, 32), None);
        assert_eq!(block(0).size(), 16);
        assert_eq!(block(CLASSES - 1).size(), MAX_SMALL);
    }

    #[test]
    fn a_freed_block_is_handed_out_again_for_any_size_of_its_class() {
        let h = SmallBlocks::new();
        unsafe {
            let a = h.alloc(layout(40, 8));
            assert!(!a.is_null());
            a.write_bytes(0xAB, 40);
            h.dealloc(a, layout(40, 8));
            assert_eq!(h.held(), 48);
            // 33..=48 bytes share the class; a zeroed request gets the block back cleared.
            let b = h.alloc_zeroed(layout(33, 1));
            assert_eq!(b, a);
            assert!(std::slice::from_raw_parts(b, 33).iter().all(|&x| x == 0));
            assert_eq!(h.held(), 0);
            // Another class does not take it.
            h.dealloc(b, layout(33, 1));
            let c = h.alloc(layout(64, 8));
            assert_ne!(c, a);
            h.dealloc(c, layout(64, 8));
            assert_eq!(h.held(), 48 + 64);
            // Large and over-aligned requests bypass the cache.
            let d = h.alloc(layout(MAX_SMALL + 1, 8));
            let e = h.alloc(layout(32, 64));
            assert_eq!(e as usize % 64, 0);
            h.dealloc(d, layout(MAX_SMALL + 1, 8));
            h.dealloc(e, layout(32, 64));
            assert_eq!(h.held(), 48 + 64);
            // Drain, so that the test gives its blocks back.
            System.dealloc(h.pop(2), block(2));
            System.dealloc(h.pop(3), block(3));
            assert!(h.pop(2).is_null() && h.pop(3).is_null());
        }
    }

    #[test]
    fn realloc_keeps_the_bytes_across_classes_and_into_and_out_of_the_cache() {
        let h = SmallBlocks::new();
        unsafe {
            let mut size = 5;
            let mut p = h.alloc(layout(size, 1));
            for i in 0..size {
                *p.add(i) = i as u8;
            }
            // Grow through small classes into System's range, then shrink back down.
            for next in [12, 16, 17, 200, MAX_SMALL, MAX_SMALL + 1, 9000, 700, 3] {
                let q = h.realloc(p, layout(size, 1), next);
                assert!(!q.is_null());
                let kept = size.min(next);
                for i in 0..kept {
                    assert_eq!(*q.add(i), i as u8, "byte {i} after {size} -> {next}");
                }
                for i in kept..next {
                    *q.add(i) = i as u8;
                }
                if class_of(size, 1).is_some() && class_of(size, 1) == class_of(next, 1) {
                    assert_eq!(q, p, "{size} -> {next} stays in its block");
                }
                p = q;
                size = next;
            }
            h.dealloc(p, layout(size, 1));
            for c in 0..CLASSES {
                loop {
                    let b = h.pop(c);
                    if b.is_null() {
                        break;
                    }
                    System.dealloc(b, block(c));
                }
            }
            assert_eq!(h.held(), 0);
        }
    }

    #[test]
    fn the_cache_holds_at_most_its_cap_and_gives_the_rest_to_the_system() {
        let h = SmallBlocks::new();
        let l = layout(MAX_SMALL, 16);
        let n = CAP_BYTES / MAX_SMALL + 10;
        unsafe {
            let blocks: Vec<*mut u8> = (0..n).map(|_| h.alloc(l)).collect();
            for &b in &blocks {
                h.dealloc(b, l);
            }
            assert_eq!(h.held(), CAP_BYTES);
            let mut back = 0;
            loop {
                let b = h.pop(CLASSES - 1);
                if b.is_null() {
                    break;
                }
                System.dealloc(b, block(CLASSES - 1));
                back += 1;
            }
            assert_eq!(back, CAP_BYTES / MAX_SMALL);
        }
    }

    #[test]
    fn threads_that_share_the_cache_never_get_the_same_block() {
        static H: SmallBlocks = SmallBlocks::new();
        let l = layout(24, 8);
        let workers: Vec<_> = (0..4u8)
            .map(|t| {
                std::thread::spawn(move || {
                    for _ in 0..2000 {
                        unsafe {
                            let p = H.alloc(l);
                            p.write_bytes(t, 24);
                            std::thread::yield_now();
                            assert!(std::slice::from_raw_parts(p, 24).iter().all(|&x| x == t));
                            H.dealloc(p, l);
                        }
                    }
                })
            })
            .collect();
        for w in workers {
            w.join().unwrap();
        }
        assert!(H.held() <= 4 * 32);
    }
}
