//! Byte scans a word (eight bytes) at a time, and `memcmp` and `bcmp` for the static musl
//! binary.
//!
//! The static binary is built at opt-level "z", where a loop over bytes runs one byte a step
//! and is not unrolled or vectorized. Ids and paths here are up to 128 and 300 bytes, read
//! several times each per session: [`rfind`], [`contains2`] and [`all_printable`] test eight
//! bytes with a few word operations (issue 25, ninth round; scripts/README.md).
//!
//! musl compares memory one byte a step (`src/string/memcmp.c`; `bcmp` calls it). Rust calls
//! them for every slice and string comparison: B-tree keys, hash-map keys, sorting. With
//! 128-character ids that share their first 120, `clean --dry-run` of 10,000 sessions spent 36%
//! of its instructions in musl's `memcmp` (callgrind; scripts/README.md, issue 25's eighth
//! round). glibc's are vectorized already, so the functions below replace musl's only
//! (`target_env = "musl"`): the static linker takes a symbol the program defines and does not
//! pull musl's object for it.
//!
//! [`compare`] is the one implementation, tested against std's comparison on every target.
//! The C functions are never inlined: with LTO, copies at every comparison in the program cost
//! 4 KB of the x86_64 binary.

use std::ptr;

/// `memcmp`'s result for `n` bytes at `a` and `b`: 0 when equal, else the difference of the
/// first unequal bytes as unsigned values (negative when `a`'s is smaller).
///
/// # Safety
/// `a` and `b` must be readable for `n` bytes.
#[inline]
pub unsafe fn compare(a: *const u8, b: *const u8, n: usize) -> i32 {
    let mut i = 0;
    while n - i >= 8 {
        // SAFETY: i + 8 <= n, so both eight-byte reads are within the caller's ranges.
        let (x, y) = unsafe {
            (
                u64::from_le_bytes(ptr::read_unaligned(a.add(i).cast::<[u8; 8]>())),
                u64::from_le_bytes(ptr::read_unaligned(b.add(i).cast::<[u8; 8]>())),
            )
        };
        if x != y {
            // Little-endian words: the lowest differing bit is in the first differing byte.
            let shift = (x ^ y).trailing_zeros() & !7;
            return i32::from((x >> shift) as u8) - i32::from((y >> shift) as u8);
        }
        i += 8;
    }
    while i < n {
        // SAFETY: i < n.
        let (x, y) = unsafe { (*a.add(i), *b.add(i)) };
        if x != y {
            return i32::from(x) - i32::from(y);
        }
        i += 1;
    }
    0
}

/// Eight copies of a byte.
const ONES: u64 = 0x0101_0101_0101_0101;
/// The high bit of each byte.
const HIGHS: u64 = 0x8080_8080_8080_8080;

/// The little-endian word at `b[i..i + 8]`; panics when `b` is shorter. One unaligned load
/// (`copy_from_slice` into an array is a call at opt-level "z").
#[inline(always)]
pub fn word(b: &[u8], i: usize) -> u64 {
    let s = &b[i..i + 8];
    // SAFETY: `s` is eight readable bytes; the read has no alignment requirement.
    u64::from_le(unsafe { ptr::read_unaligned(s.as_ptr().cast::<u64>()) })
}

/// Whether a byte of `w` is zero (exact as a whole; which bytes it marks is not).
#[inline(always)]
fn has_zero(w: u64) -> bool {
    w.wrapping_sub(ONES) & !w & HIGHS != 0
}

/// The index of the last `x` in `b`.
pub fn rfind(b: &[u8], x: u8) -> Option<usize> {
    let mut end = b.len();
    while end >= 8 {
        if has_zero(word(b, end - 8) ^ (ONES * u64::from(x))) {
            break;
        }
        end -= 8;
    }
    b[..end].iter().rposition(|&c| c == x)
}

/// Whether `b` holds `x` or `y`.
pub fn contains2(b: &[u8], x: u8, y: u8) -> bool {
    let (wx, wy) = (ONES * u64::from(x), ONES * u64::from(y));
    let mut i = 0;
    while i + 8 <= b.len() {
        let w = word(b, i);
        if has_zero(w ^ wx) || has_zero(w ^ wy) {
            return true;
        }
        i += 8;
    }
    b[i..].iter().any(|&c| c == x || c == y)
}

/// Whether every byte of `b` is printable ASCII, `' '` (0x20) to `'~'` (0x7e).
pub fn all_printable(b: &[u8]) -> bool {
    let mut i = 0;
    while i + 8 <= b.len() {
        let w = word(b, i);
        // Above 0x7e: adding 1 reaches the high bit, or it was set. Below 0x20: subtracting
        // 0x20 borrows into a high bit that was clear. Exact for the word as a whole.
        let high = (w.wrapping_add(ONES) | w) & HIGHS;
        let low = w.wrapping_sub(ONES * 0x20) & !w & HIGHS;
        if high | low != 0 {
            return false;
        }
        i += 8;
    }
    b[i..].iter().all(|c| (b' '..=b'~').contains(c))
}

/// C's `memcmp`, replacing musl's (see the module documentation).
///
/// # Safety
/// As C's: `a` and `b` readable for `n` bytes.
#[cfg(all(target_env = "musl", not(test)))]
#[no_mangle]
#[inline(never)]
pub unsafe extern "C" fn memcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    unsafe { compare(a, b, n) }
}

/// C's `bcmp` (zero when equal, nonzero otherwise), replacing musl's.
///
/// # Safety
/// As C's: `a` and `b` readable for `n` bytes.
#[cfg(all(target_env = "musl", not(test)))]
#[no_mangle]
#[inline(never)]
pub unsafe extern "C" fn bcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    unsafe { compare(a, b, n) }
}

#[cfg(test)]
mod tests {
    use super::compare;
    use std::cmp::Ordering;

    fn sign(a: &[u8], b: &[u8]) -> Ordering {
        assert_eq!(a.len(), b.len());
        unsafe { compare(a.as_ptr(), b.as_ptr(), a.len()) }.cmp(&0)
    }

    #[test]
    fn agrees_with_slice_order_at_every_length_and_offset_of_the_first_difference() {
        for n in 0..40 {
            let a: Vec<u8> = (0..n as u8).map(|k| k.wrapping_mul(37)).collect();
            assert_eq!(sign(&a, &a), Ordering::Equal, "n={n}");
            for at in 0..n {
                // Neighbouring values, and the ends of the unsigned range (0x00 below 0xff).
                for (x, y) in [
                    (0u8, 1u8),
                    (1, 0),
                    (0x7f, 0x80),
                    (0x80, 0x7f),
                    (0, 0xff),
                    (0xff, 0),
                ] {
                    let mut p = a.clone();
                    let mut q = a.clone();
                    p[at] = x;
                    q[at] = y;
                    // A later difference the other way must not count.
                    if at + 1 < n {
                        p[n - 1] = 0;
                        q[n - 1] = 0xff;
                    }
                    assert_eq!(sign(&p, &q), p.cmp(&q), "n={n} at={at} {x:#x} vs {y:#x}");
                    let d = unsafe { compare(p.as_ptr(), q.as_ptr(), n) };
                    assert_eq!(d, i32::from(x) - i32::from(y), "n={n} at={at}");
                }
            }
        }
    }

    #[test]
    fn reads_unaligned_ranges_only() {
        // The ranges start at every offset of a buffer and end at its last byte, so a read past
        // either range would be caught by Miri or a sanitizer, and the results are checked here.
        let buf: Vec<u8> = (0..64u8).collect();
        let mut other = buf.clone();
        other[63] = 0;
        for start in 0..64 {
            let n = 64 - start;
            let d = unsafe { compare(buf.as_ptr().add(start), other.as_ptr().add(start), n) };
            assert_eq!(d, 63, "start={start}");
            let e = unsafe { compare(buf.as_ptr().add(start), buf.as_ptr().add(start), n) };
            assert_eq!(e, 0);
        }
    }

    /// The word-at-a-time scans against their bytewise definitions: every length up to 40,
    /// the byte sought (or an unprintable one) at every position, every byte value.
    #[test]
    fn scans_agree_with_bytewise_definitions() {
        use super::{all_printable, contains2, rfind};
        for n in 0..40usize {
            let base: Vec<u8> = (0..n).map(|k| b'a' + (k % 26) as u8).collect();
            assert_eq!(rfind(&base, b'/'), None);
            assert!(!contains2(&base, b'/', 0));
            assert!(all_printable(&base));
            for at in 0..n {
                for v in 0..=255u8 {
                    let mut b = base.clone();
                    b[at] = v;
                    let pos = b.iter().rposition(|&c| c == v);
                    assert_eq!(rfind(&b, v), pos, "n={n} at={at} v={v:#x}");
                    assert_eq!(
                        contains2(&b, v, 0),
                        b.iter().any(|&c| c == v || c == 0),
                        "n={n} at={at} v={v:#x}"
                    );
                    assert_eq!(
                        contains2(&b, b'/', 0),
                        b.contains(&b'/') || b.contains(&0),
                        "n={n} at={at} v={v:#x}"
                    );
                    assert_eq!(
                        all_printable(&b),
                        b.iter().all(|c| (b' '..=b'~').contains(c)),
                        "n={n} at={at} v={v:#x}"
                    );
                }
            }
        }
        // Two occurrences: the last one is found, across a word boundary.
        let mut b = vec![b'x'; 20];
        b[3] = b'/';
        b[17] = b'/';
        assert_eq!(rfind(&b, b'/'), Some(17));
        b[17] = b'x';
        assert_eq!(rfind(&b, b'/'), Some(3));
    }
}
