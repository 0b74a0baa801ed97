//! SipHash-1-3 of a byte slice, keyed at random: the index's table hash ([`super::Table`]) and,
//! through [`IdHash`], the clean engine's hash maps ([`crate::clean::Map`]).
//!
//! The same function std's `HashMap` uses (`RandomState`), written for one slice at a time.
//! std's `BuildHasher::hash_one(&[u8])` goes through the streaming `Hasher` (a length prefix,
//! then bytes gathered into a tail buffer, each a call at opt-level "z"): the table's
//! `home`, hashing included, was 194 M of the 4.22 G instructions of the static binary's
//! `clean --dry-run` over 10,000 sessions with 128-character shared-prefix ids, and is 107 M
//! with this (callgrind; scripts/README.md, issue 25's ninth round).
//!
//! The keys come from std's `RandomState` (random per process, then per table), so the layout
//! of a table is unpredictable and ids cannot be crafted to collide; SipHash is the
//! keyed-hash-flooding defence std chose. The rounds are generic so that the tests can check
//! SipHash-2-4 against std's `SipHasher`; the index uses 1-3, as std does.

use std::hash::{BuildHasher, Hasher, RandomState};

/// A random SipHash key (128 bits).
#[derive(Debug, Clone, Copy)]
pub(super) struct Key {
    k0: u64,
    k1: u64,
}

impl Default for Key {
    /// A fresh random key: two outputs of a new `RandomState`, whose own key is random.
    fn default() -> Key {
        let s = RandomState::new();
        Key {
            k0: s.hash_one(0u64),
            k1: s.hash_one(1u64),
        }
    }
}

impl Key {
    /// SipHash-1-3 of `bytes` under this key.
    #[inline]
    pub(super) fn hash(&self, bytes: &[u8]) -> u64 {
        sip::<1, 3>(self.k0, self.k1, bytes)
    }
}

/// The `BuildHasher` of the clean engine's hash maps ([`crate::clean::Map`]): keys are ids
/// (up to 128 bytes), hashed by [`Key::hash`] in one call. std's `RandomState` hashes a string
/// through its streaming `Hasher`, a call a step at opt-level "z": the maps of verdicts and
/// owners took 186 M of the static binary's 3.98 G instructions (issue 25, ninth round).
#[derive(Debug, Clone, Copy, Default)]
pub struct IdHash(Key);

impl BuildHasher for IdHash {
    type Hasher = IdHasher;
    fn build_hasher(&self) -> IdHasher {
        IdHasher { key: self.0, h: 0 }
    }
}

/// [`IdHash`]'s hasher. A key's bytes come in one `write` (a `str` then adds the byte 0xff,
/// an integer key is its bytes); each `write` is chained to the previous by the key.
#[derive(Debug)]
pub struct IdHasher {
    key: Key,
    h: u64,
}

impl Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        let k = Key {
            k0: self.key.k0 ^ self.h,
            k1: self.key.k1,
        };
        self.h = k.hash(bytes);
    }

    /// The `str` terminator (and any single byte): folded in without another SipHash, an
    /// invertible step that keeps distinct hashes distinct.
    fn write_u8(&mut self, b: u8) {
        self.h = self.h.rotate_left(8) ^ u64::from(b);
    }

    fn finish(&self) -> u64 {
        self.h
    }
}

/// SipHash-`C`-`D` of `bytes` with key (`k0`, `k1`): the reference algorithm (Aumasson and
/// Bernstein, 2012), little-endian words, the length's low byte in the last word's top byte.
#[inline(always)]
fn sip<const C: usize, const D: usize>(k0: u64, k1: u64, bytes: &[u8]) -> u64 {
    let mut v = [
        k0 ^ 0x736f_6d65_7073_6575,
        k1 ^ 0x646f_7261_6e64_6f6d,
        k0 ^ 0x6c79_6765_6e65_7261,
        k1 ^ 0x7465_6462_7974_6573,
    ];
    let mut i = 0;
    while i + 8 <= bytes.len() {
        let m = crate::bytes::word(bytes, i);
        v[3] ^= m;
        for _ in 0..C {
            round(&mut v);
        }
        v[0] ^= m;
        i += 8;
    }
    let mut last = (bytes.len() as u64) << 56;
    let mut shift = 0;
    while i < bytes.len() {
        last |= u64::from(bytes[i]) << shift;
        shift += 8;
        i += 1;
    }
    v[3] ^= last;
    for _ in 0..C {
        round(&mut v);
    }
    v[0] ^= last;
    v[2] ^= 0xff;
    for _ in 0..D {
        round(&mut v);
    }
    v[0] ^ v[1] ^ v[2] ^ v[3]
}

/// One SipRound.
#[inline(always)]
fn round(v: &mut [u64; 4]) {
    v[0] = v[0].wrapping_add(v[1]);
    v[1] = v[1].rotate_left(13) ^ v[0];
    v[0] = v[0].rotate_left(32);
    v[2] = v[2].wrapping_add(v[3]);
    v[3] = v[3].rotate_left(16) ^ v[2];
    v[0] = v[0].wrapping_add(v[3]);
    v[3] = v[3].rotate_left(21) ^ v[0];
    v[2] = v[2].wrapping_add(v[1]);
    v[1] = v[1].rotate_left(17) ^ v[2];
    v[2] = v[2].rotate_left(32);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::Hasher;

    /// The SipHash paper's test vector (Appendix A): key 00..0f, message 00..0e, SipHash-2-4.
    #[test]
    fn paper_vector() {
        let k0 = u64::from_le_bytes([0, 1, 2, 3, 4, 5, 6, 7]);
        let k1 = u64::from_le_bytes([8, 9, 10, 11, 12, 13, 14, 15]);
        let m: Vec<u8> = (0..15).collect();
        assert_eq!(sip::<2, 4>(k0, k1, &m), 0xa129_ca61_49be_45e5);
    }

    /// SipHash-2-4 equals std's `SipHasher` (documented as SipHash-2-4) at every length up to
    /// 40 (every tail length, several words) and for several keys.
    #[test]
    #[allow(deprecated)]
    fn matches_std_siphash_2_4() {
        let bytes: Vec<u8> = (0..40u8).map(|i| i.wrapping_mul(37) ^ 0x5a).collect();
        for (k0, k1) in [(0, 0), (1, 2), (u64::MAX, 0x0123_4567_89ab_cdef)] {
            for n in 0..=bytes.len() {
                let mut h = std::hash::SipHasher::new_with_keys(k0, k1);
                h.write(&bytes[..n]);
                assert_eq!(sip::<2, 4>(k0, k1, &bytes[..n]), h.finish(), "{n} bytes");
            }
        }
    }

    /// Maps with [`IdHash`] find what they hold; equal strings hash equally, and the hash of a
    /// string is not that of its bytes with the terminator moved.
    #[test]
    fn id_hash_maps_work() {
        let b = IdHash::default();
        assert_eq!(
            b.hash_one("session-a"),
            b.hash_one(String::from("session-a"))
        );
        assert_ne!(b.hash_one(("ab", "c")), b.hash_one(("a", "bc")));
        let mut m: std::collections::HashMap<String, usize, IdHash> = Default::default();
        for i in 0..1000 {
            m.insert(format!("mapreduce-20260101T000000-{i:06}"), i);
        }
        for i in 0..1000 {
            assert_eq!(
                m.get(&format!("mapreduce-20260101T000000-{i:06}")),
                Some(&i)
            );
        }
        assert_eq!(m.get("mapreduce-20260101T000000-001000"), None);
        let s: std::collections::HashSet<u32, IdHash> = (0..100).collect();
        assert!((0..100).all(|i| s.contains(&i)) && !s.contains(&100));
    }

    /// Keys differ between tables, and the hash depends on every byte and on the length.
    #[test]
    fn keyed_and_sensitive() {
        let (a, b) = (Key::default(), Key::default());
        let id = b"mapreduce-20260101T000000-000001";
        assert_ne!(a.hash(id), b.hash(id));
        assert_eq!(a.hash(id), a.hash(id));
        for i in 0..id.len() {
            let mut other = *id;
            other[i] ^= 1;
            assert_ne!(a.hash(id), a.hash(&other), "byte {i}");
        }
        assert_ne!(a.hash(b"ab"), a.hash(b"ab\0"));
    }
}
