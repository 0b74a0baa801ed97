//! Ids as the index keeps them, packed (issue 15): a 0.4.4 session id such as
//! `session-daf6092e-da53-4cfd-9f92-3587d23bcaf0` (44 bytes) is kept in 18, a generated
//! `mapreduce-000aeb86ef56` in 8.
//!
//! A packed id is a sequence of tokens, each standing for a run of the id's bytes:
//!
//! | byte | followed by | stands for |
//! |---|---|---|
//! | `0x00`–`0x7F` | | itself |
//! | `0x80` | one byte | that byte (one that is not ASCII: never in a valid id) |
//! | `0x81`–`0xBF` | `n = b - 0x80` bytes | `2n` lowercase hex digits, two to a byte |
//! | `0xC0` | 16 bytes | a lowercase UUID, `8-4-4-4-12` hex digits with dashes |
//! | `0xC1`… | | a prefix of [`PREFIXES`], anywhere (`session-mapreduce-…`: issue 25) |
//!
//! Packing is a function of the id and [`unpack`] undoes it, so two ids are equal exactly when
//! their packed forms are: tables compare and hash packed bytes. Packed forms do not sort like
//! ids; sorting unpacks.

/// Id prefixes of Prodigy 0.4.4 (storage-format §3): sessions, MapReduce jobs, workflows.
const PREFIXES: [&[u8]; 3] = [b"session-", b"mapreduce-", b"workflow-"];

fn hex(c: u8) -> bool {
    matches!(c, b'0'..=b'9' | b'a'..=b'f')
}

#[cfg(test)]
fn val(c: u8) -> u8 {
    if c <= b'9' {
        c - b'0'
    } else {
        c - b'a' + 10
    }
}

const DIGITS: &[u8; 16] = b"0123456789abcdef";

/// True when `b` starts with a lowercase UUID.
fn uuid_at(b: &[u8]) -> bool {
    b.len() >= 36
        && b[..36].iter().enumerate().all(|(i, &c)| match i {
            8 | 13 | 18 | 23 => c == b'-',
            _ => hex(c),
        })
}

/// Append the packed form of `id` to `out` (at most twice `id`'s length).
pub fn pack(id: &[u8], out: &mut Vec<u8>) {
    pack_with(id, |b| out.push(b));
}

/// Call `f` with the packed form of `id`, packed on the stack when `id` is at most 128 bytes
/// (every valid id is).
pub fn with_packed<R>(id: &[u8], f: impl FnOnce(&[u8]) -> R) -> R {
    if id.len() > 128 {
        let mut v = Vec::with_capacity(id.len() * 2);
        pack(id, &mut v);
        return f(&v);
    }
    let mut buf = [0u8; 256];
    let mut n = 0;
    pack_with(id, |b| {
        buf[n] = b;
        n += 1;
    });
    f(&buf[..n])
}

/// The value of each byte as a lowercase hex digit, [`NOT_HEX`] for the others.
const HEX_VALUE: [u8; 256] = {
    let mut t = [NOT_HEX; 256];
    let mut c = 0;
    while c < 16 {
        t[DIGITS[c] as usize] = c as u8;
        c += 1;
    }
    t
};
const NOT_HEX: u8 = 0xFF;

/// Packing, byte by byte to `push`. Every lookup in the index packs the id it looks for (about
/// 38 lookups a session in `stats`, issue 25), so this reads each byte once through
/// [`HEX_VALUE`]: a hex run is measured once, a UUID is tried only where 8 hex digits and a
/// dash start, and a run too short to pack (under 4 digits, so no UUID or packed run starts
/// inside it either) is copied whole. The tokens are those of the module's table, exactly as
/// [`pack_reference`] (the plain form this replaced, kept for the tests) makes them.
fn pack_with(id: &[u8], mut push: impl FnMut(u8)) {
    let mut i = 0;
    while i < id.len() {
        let rest = &id[i..];
        let run = rest
            .iter()
            .position(|&c| HEX_VALUE[c as usize] == NOT_HEX)
            .unwrap_or(rest.len());
        if run >= 8 && rest.get(8) == Some(&b'-') && uuid_at(rest) {
            push(0xC0);
            let mut high = None;
            for &c in rest[..36].iter().filter(|&&c| c != b'-') {
                match high.take() {
                    None => high = Some(HEX_VALUE[c as usize]),
                    Some(h) => push(h << 4 | HEX_VALUE[c as usize]),
                }
            }
            i += 36;
        } else if run >= 4 {
            let pairs = (run / 2).min(0x3F);
            push(0x80 + pairs as u8);
            for k in 0..pairs {
                push(HEX_VALUE[rest[2 * k] as usize] << 4 | HEX_VALUE[rest[2 * k + 1] as usize]);
            }
            i += 2 * pairs;
        } else if run > 0 {
            rest[..run].iter().for_each(|&c| push(c));
            i += run;
        } else if let Some(k) = prefix_at(rest) {
            push(0xC1 + k as u8);
            i += PREFIXES[k].len();
        } else {
            let c = rest[0];
            if c >= 0x80 {
                push(0x80);
            }
            push(c);
            i += 1;
        }
    }
}

/// The [`PREFIXES`] entry `rest` starts with. None starts with a hex digit, so none starts
/// inside a hex run or a UUID.
fn prefix_at(rest: &[u8]) -> Option<usize> {
    match rest.first() {
        Some(b's' | b'm' | b'w') => PREFIXES.iter().position(|p| rest.starts_with(p)),
        _ => None,
    }
}

/// Packing as it was first written, one token per byte position: the definition
/// [`pack_with`] must agree with.
#[cfg(test)]
fn pack_reference(id: &[u8], mut push: impl FnMut(u8)) {
    let mut i = 0;
    while i < id.len() {
        let rest = &id[i..];
        if uuid_at(rest) {
            push(0xC0);
            let mut high = None;
            for &c in rest[..36].iter().filter(|&&c| c != b'-') {
                match high.take() {
                    None => high = Some(val(c)),
                    Some(h) => push(h << 4 | val(c)),
                }
            }
            i += 36;
            continue;
        }
        let run = rest.iter().take_while(|&&c| hex(c)).count();
        if run >= 4 {
            let pairs = (run / 2).min(0x3F);
            push(0x80 + pairs as u8);
            for k in 0..pairs {
                push(val(rest[2 * k]) << 4 | val(rest[2 * k + 1]));
            }
            i += 2 * pairs;
            continue;
        }
        if let Some(k) = PREFIXES.iter().position(|p| rest.starts_with(p)) {
            push(0xC1 + k as u8);
            i += PREFIXES[k].len();
            continue;
        }
        let c = rest[0];
        if c >= 0x80 {
            push(0x80);
        }
        push(c);
        i += 1;
    }
}

/// Append the id that `p` is the packed form of to `out`.
pub fn unpack(p: &[u8], out: &mut Vec<u8>) {
    unpack_with(p, |b| out.push(b));
}

/// Call `f` with the id that `p` is the packed form of, unpacked on the stack when `p` is at
/// most 128 bytes (a token stands for at most 10 bytes).
pub fn with_unpacked<R>(p: &[u8], f: impl FnOnce(&[u8]) -> R) -> R {
    if p.len() > 128 {
        let mut v = Vec::with_capacity(p.len() * 10);
        unpack(p, &mut v);
        return f(&v);
    }
    let mut buf = [0u8; 1280];
    let mut n = 0;
    unpack_with(p, |b| {
        buf[n] = b;
        n += 1;
    });
    f(&buf[..n])
}

/// Unpacking, byte by byte to `push`.
fn unpack_with(p: &[u8], mut push: impl FnMut(u8)) {
    let mut i = 0;
    while i < p.len() {
        let b = p[i];
        i += 1;
        match b {
            0x00..=0x7F => push(b),
            0x80 => {
                if let Some(&c) = p.get(i) {
                    push(c);
                }
                i += 1;
            }
            0x81..=0xBF => {
                let n = (b - 0x80) as usize;
                for &x in p.get(i..i + n).unwrap_or(&[]) {
                    push(DIGITS[(x >> 4) as usize]);
                    push(DIGITS[(x & 15) as usize]);
                }
                i += n;
            }
            0xC0 => {
                for (k, &x) in p.get(i..i + 16).unwrap_or(&[]).iter().enumerate() {
                    if matches!(k, 4 | 6 | 8 | 10) {
                        push(b'-');
                    }
                    push(DIGITS[(x >> 4) as usize]);
                    push(DIGITS[(x & 15) as usize]);
                }
                i += 16;
            }
            _ => {
                if let Some(p) = PREFIXES.get((b - 0xC1) as usize) {
                    p.iter().for_each(|&c| push(c));
                }
            }
        }
    }
}

/// Packed ids `a` and `b` in the order of their unpacked bytes, mostly without unpacking. The
/// tokens before the first byte where they differ are the same, so are the bytes they stand
/// for; from there: two one-byte tokens (ASCII standing for itself) compare as those bytes; a
/// difference inside the data of the same escape, hex-run or UUID token compares as the data
/// byte (hex digits are in ASCII order, and a UUID's dashes are at fixed places); one ending
/// there is a prefix of the other. Anything else is unpacked (on the stack).
pub fn cmp_packed(a: &[u8], b: &[u8]) -> std::cmp::Ordering {
    let i = common_prefix(a, b);
    // Walk the common prefix token by token to the token that holds `i`.
    let mut p = 0;
    while p < i {
        let len = match a[p] {
            0x00..=0x7F => 1,
            0x80 => 2,
            t @ 0x81..=0xBF => 1 + (t - 0x80) as usize,
            0xC0 => 17,
            _ => 1,
        };
        if p + len > i {
            // `i` is in the data of the token at `p`, the same in both.
            if a[p] >= 0x80 && a[p] <= 0xC0 && i < a.len() && i < b.len() {
                return a[i].cmp(&b[i]);
            }
            break;
        }
        p += len;
    }
    if p == i {
        match (a.get(i), b.get(i)) {
            (None, _) | (_, None) => return a.len().cmp(&b.len()),
            (Some(&x), Some(&y)) if x < 0x80 && y < 0x80 => return x.cmp(&y),
            _ => {}
        }
    }
    with_unpacked(a, |x| with_unpacked(b, |y| x.cmp(y)))
}

/// The length of the longest common prefix of `a` and `b`, eight bytes at a time (ids that
/// share 120 characters are sorted too: issue 25).
fn common_prefix(a: &[u8], b: &[u8]) -> usize {
    let n = a.len().min(b.len());
    let mut i = 0;
    while i + 8 <= n {
        let x = u64::from_le_bytes(a[i..i + 8].try_into().expect("eight bytes"));
        let y = u64::from_le_bytes(b[i..i + 8].try_into().expect("eight bytes"));
        if x != y {
            return i + ((x ^ y).trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while i < n && a[i] == b[i] {
        i += 1;
    }
    i
}

/// The id `p` is the packed form of.
#[cfg(test)]
pub fn unpacked(p: &[u8]) -> String {
    with_unpacked(p, string_of)
}

/// Id bytes as a `String`. Packing keeps every byte that is not an ASCII hex digit, a dash of
/// a UUID or a prefix, so an id packed from a `&str` unpacks to valid UTF-8.
pub fn string_of(b: &[u8]) -> String {
    // `from_utf8` first: `from_utf8_lossy` checks a chunk at a time, four times slower on
    // 128-character ids.
    match std::str::from_utf8(b) {
        Ok(s) => s.to_owned(),
        Err(_) => String::from_utf8_lossy(b).into_owned(),
    }
}

/// Unpack `p` into the start of `out`, giving the number of bytes written; `None` (and
/// `out` partly written) when they do not fit.
pub fn unpack_into(p: &[u8], out: &mut [u8]) -> Option<usize> {
    let mut n = 0;
    let mut fits = true;
    unpack_with(p, |b| match out.get_mut(n) {
        Some(slot) => {
            *slot = b;
            n += 1;
        }
        None => fits = false,
    });
    fits.then_some(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_prefix_counts_equal_leading_bytes() {
        let base: Vec<u8> = (0..40u8).collect();
        for cut in 0..=base.len() {
            for extra in [0usize, 1, 9] {
                let mut a = base[..cut].to_vec();
                a.extend(std::iter::repeat(200u8).take(extra));
                let mut b = base.clone();
                if cut < b.len() {
                    b[cut] = b[cut].wrapping_add(1);
                }
                let want = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
                assert_eq!(common_prefix(&a, &b), want, "cut {cut} extra {extra}");
                assert_eq!(common_prefix(&b, &a), want);
            }
        }
        assert_eq!(common_prefix(&base, &base), base.len());
    }

    fn packed(s: &str) -> Vec<u8> {
        let mut v = Vec::new();
        pack(s.as_bytes(), &mut v);
        v
    }

    #[test]
    fn ids_round_trip_and_shrink() {
        for (id, len) in [
            ("session-daf6092e-da53-4cfd-9f92-3587d23bcaf0", 18),
            ("mapreduce-000aeb86ef56", 8),
            ("session-00010463a973", 8),
            ("workflow-1795238090439", 9),
            ("s-a", 3),
            ("abc", 3),
            ("abcd", 3),
            ("abcde", 4),
            ("DAF6092E-da53", 11),
            ("x-DAF6092e-da53-4cfd-9f92-3587d23bcaf0", 29),
            ("café-0000", 11),
            ("session-mapreduce-20260101T000000-00abcd", 17),
            ("amapreduce-", 2),
            ("x-workflow-session-", 4),
            ("", 0),
        ] {
            let p = packed(id);
            assert_eq!(unpacked(&p), id, "{id}");
            assert_eq!(p.len(), len, "{id}: {p:?}");
            assert_eq!(with_packed(id.as_bytes(), |w| w.to_vec()), p, "{id}");
        }
        let long = "a".repeat(300);
        assert_eq!(unpacked(&packed(&long)), long);
        assert_eq!(with_packed(long.as_bytes(), |w| w.to_vec()), packed(&long));
    }

    #[test]
    fn packed_ids_compare_as_their_ids_do() {
        let mut ids: Vec<String> = vec![
            "".into(),
            "a".into(),
            "ab".into(),
            "abc".into(),
            "session-".into(),
            "session-a".into(),
            "session-0".into(),
            "session-00".into(),
            "session-0g".into(),
            "mapreduce-20260101T000000-000000".into(),
            "mapreduce-20260101T000000-00000a".into(),
            "mapreduce-20260101T000000-0000".into(),
            "mapreduce-20260101T000000-00000".into(),
            "session-daf6092e-da53-4cfd-9f92-3587d23bcaf0".into(),
            "session-daf6092e-da53-4cfd-9f92-3587d23bcaf1".into(),
            "session-daf6092e-da53-4cfd-9f92-3587d23bcaf".into(),
            "run-202600000000".into(),
            "run-202600000001".into(),
            "run-2026000000010".into(),
            "run-20260000000".into(),
            "run-2026000000f0".into(),
            "run-2026000000a0".into(),
            "session-daf6092e-da53-4cfd-9f92-3587d23bcaf0-x".into(),
            "session-daf6092e-da53-4cfe-9f92-3587d23bcaf0".into(),
            "session-daf6092e-da53-4cfd-9f92-3587d23bcae0".into(),
            "x\u{e9}y".into(),
            "x\u{e9}z".into(),
            "session-mapreduce-".into(),
            "session-mapreduce-0".into(),
            "session-mapreducf".into(),
            "session-mapreduc".into(),
            "session-map".into(),
            "session-l".into(),
            "session-n".into(),
            "session-session-".into(),
            "session-workflow-1".into(),
            "sessionmapreduce-".into(),
        ];
        let mut seed = 7u64;
        for _ in 0..400 {
            let mut id = String::new();
            for _ in 0..(seed % 40) {
                seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                id.push(b"0123456789abcdefxyz-_ZA"[(seed >> 33) as usize % 23] as char);
            }
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
            let pre = [
                "session-",
                "mapreduce-",
                "",
                "p-aaaa",
                "session-mapreduce-",
                "wworkflow-",
            ][(seed >> 40) as usize % 6];
            ids.push(format!("{pre}{id}"));
            let h = seed ^ (seed >> 29);
            if h % 8 == 0 {
                ids.push(format!(
                    "session-{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
                    h >> 32,
                    (h >> 16) & 0xffff,
                    h & 0x3,
                    (h >> 8) & 0x3,
                    h & 0xffff_ffff_ffff
                ));
            }
        }
        for a in &ids {
            for b in &ids {
                assert_eq!(
                    cmp_packed(&packed(a), &packed(b)),
                    a.as_bytes().cmp(b.as_bytes()),
                    "{a:?} vs {b:?}"
                );
            }
        }
    }

    #[test]
    fn packing_agrees_with_its_reference_form() {
        let mut seed = 11u64;
        let alphabet = b"0123456789abcdef-ABxz_.\xc3\xa9";
        for n in 0..20_000 {
            let mut id = Vec::new();
            let pre: &[u8] = [b"session-" as &[u8], b"mapreduce-", b"", b"workflow-"][n % 4];
            id.extend_from_slice(pre);
            for _ in 0..(n % 140) {
                seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                // Mostly hex digits, so that runs of every length and UUIDs occur.
                let r = (seed >> 33) as usize;
                id.push(if r % 4 == 0 {
                    alphabet[r / 4 % alphabet.len()]
                } else {
                    DIGITS[r / 4 % 16]
                });
            }
            if n % 7 == 0 {
                id.extend_from_slice(b"daf6092e-da53-4cfd-9f92-3587d23bcaf0");
            }
            let (mut a, mut b) = (Vec::new(), Vec::new());
            pack(&id, &mut a);
            pack_reference(&id, |c| b.push(c));
            assert_eq!(a, b, "{:?}", String::from_utf8_lossy(&id));
        }
    }

    #[test]
    fn different_ids_pack_differently() {
        let ids = [
            "session-daf6092e-da53-4cfd-9f92-3587d23bcaf0",
            "session-daf6092eda534cfd9f923587d23bcaf0",
            "session-daf6092e-da53-4cfd-9f92-3587d23bcaf",
            "sessiondaf6092e",
            "session-",
            "session",
            "0123",
            "01234",
            "012",
            "\u{81}\u{1}",
            "\u{c1}",
            "é",
        ];
        for a in ids {
            for b in ids {
                assert_eq!(packed(a) == packed(b), a == b, "{a:?} {b:?}");
            }
        }
    }
}
