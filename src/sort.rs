//! One sort for the whole binary: every sort in prodigy goes through here.
//!
//! std's sorts are instantiated once per element type and comparator, about 3.8 KB of machine
//! code each; with 38 call sites that was 44 copies and 160 KB of the static binary (`nm -S`,
//! x86_64 musl, issue 26: over the 2.4 MiB budget). Here each sort is one non-generic function
//! over `u32` indices with a `dyn` comparator; what stays generic per call site is a few dozen
//! instructions (build the indices, apply the permutation).
//!
//! Same contracts as `slice::sort_by` and `slice::sort_unstable_by`, O(n log n) comparisons, plus
//! 4 bytes of scratch memory per element (the indices; the stable sort's own buffer adds up to 4
//! more). A comparator that is not a total order may panic, as in std. Slices longer than
//! `u32::MAX` elements panic (prodigy sorts sessions, work items and names: far fewer).

use std::cmp::Ordering;

/// Sort `v` stably by `cmp` (like `slice::sort_by`).
pub fn sort_by<T>(v: &mut [T], mut cmp: impl FnMut(&T, &T) -> Ordering) {
    by_indices(v, &mut cmp, true);
}

/// Sort `v` by `cmp`, equal elements in any order, without the stable sort's buffer (like
/// `slice::sort_unstable_by`): the clean engine's large sorts.
pub fn sort_unstable_by<T>(v: &mut [T], mut cmp: impl FnMut(&T, &T) -> Ordering) {
    by_indices(v, &mut cmp, false);
}

/// Sort `v` stably in ascending order (like `slice::sort`).
pub fn sort<T: Ord>(v: &mut [T]) {
    sort_by(v, |a, b| a.cmp(b));
}

/// Sort `v` stably by `key` (like `slice::sort_by_key`).
pub fn sort_by_key<T, K: Ord>(v: &mut [T], mut key: impl FnMut(&T) -> K) {
    sort_by(v, |a, b| key(a).cmp(&key(b)));
}

fn by_indices<T>(v: &mut [T], cmp: &mut dyn FnMut(&T, &T) -> Ordering, stable: bool) {
    if v.len() < 2 {
        return;
    }
    let n = u32::try_from(v.len()).expect("prodigy sorts fewer than 2^32 elements");
    let mut idx: Vec<u32> = (0..n).collect();
    {
        let items: &[T] = v;
        let mut by = |a: u32, b: u32| cmp(&items[a as usize], &items[b as usize]);
        if stable {
            stable_indices(&mut idx, &mut by);
        } else {
            unstable_indices(&mut idx, &mut by);
        }
    }
    permute(v, idx);
}

/// The one instantiation of std's stable sort.
#[inline(never)]
fn stable_indices(idx: &mut [u32], cmp: &mut dyn FnMut(u32, u32) -> Ordering) {
    idx.sort_by(|&a, &b| cmp(a, b));
}

/// The one instantiation of std's unstable sort.
#[inline(never)]
fn unstable_indices(idx: &mut [u32], cmp: &mut dyn FnMut(u32, u32) -> Ordering) {
    idx.sort_unstable_by(|&a, &b| cmp(a, b));
}

/// Rearrange `v` so that the new `v[i]` is the old `v[idx[i]]`, in place, following each cycle
/// of the permutation once (`idx` is consumed as the visited marks).
fn permute<T>(v: &mut [T], mut idx: Vec<u32>) {
    for start in 0..v.len() {
        if idx[start] == u32::MAX {
            continue;
        }
        let mut j = start;
        loop {
            let k = idx[j] as usize;
            idx[j] = u32::MAX;
            if k == start {
                break;
            }
            // v[j] gets the old v[k]; v[k] now holds the cycle's first element, carried on.
            v.swap(j, k);
            j = k;
        }
    }
}

/// Collect key-value pairs into a `BTreeMap`, the last of equal keys winning (like
/// `collect()`). `BTreeMap`'s own `FromIterator` sorts its input with a stable sort instantiated
/// once per iterator type (13 copies for `serde_json::Map` alone); inserting one by one reuses
/// the one `insert` of each map type.
pub fn collect_map<K: Ord, V>(
    pairs: impl IntoIterator<Item = (K, V)>,
) -> std::collections::BTreeMap<K, V> {
    let mut m = std::collections::BTreeMap::new();
    for (k, v) in pairs {
        m.insert(k, v);
    }
    m
}

/// [`collect_map`] for a JSON object.
pub fn collect_object(
    pairs: impl IntoIterator<Item = (String, serde_json::Value)>,
) -> serde_json::Map<String, serde_json::Value> {
    let mut m = serde_json::Map::new();
    for (k, v) in pairs {
        m.insert(k, v);
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorts_like_std_stably() {
        // A small generator (no rand dependency): many equal keys, so stability shows.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for n in [0usize, 1, 2, 3, 7, 20, 33, 100, 1000] {
            let v: Vec<(u8, usize)> = (0..n)
                .map(|i| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    ((x % 5) as u8, i)
                })
                .collect();
            let mut want = v.clone();
            want.sort_by_key(|p| p.0);
            let mut got = v.clone();
            sort_by_key(&mut got, |p| p.0);
            assert_eq!(got, want, "n = {n}");
            let mut got = v.clone();
            sort_by(&mut got, |a, b| b.0.cmp(&a.0));
            let mut want = v.clone();
            want.sort_by_key(|p| std::cmp::Reverse(p.0));
            assert_eq!(got, want, "n = {n}, descending");
            let mut got = v.clone();
            sort_unstable_by(&mut got, |a, b| a.cmp(b));
            let mut want = v.clone();
            want.sort_unstable();
            assert_eq!(got, want, "n = {n}, unstable (distinct elements)");
            let mut got = v.clone();
            sort(&mut got);
            let mut want = v;
            want.sort();
            assert_eq!(got, want, "n = {n}, Ord");
        }
    }
}
