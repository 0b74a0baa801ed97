//! Secret masking (run.md §2 "Environment": secrets are masked as `***` in everything prodigy
//! prints or writes).
//!
//! A run registers its secret values once, before anything is written ([`set`]); from then on
//! every byte prodigy writes goes through [`mask_bytes`] / [`mask_str`]: the crash-safe writers
//! of `store::atomic` (session records, checkpoints, job state, the DLQ, events), the terminal
//! (`error::eprint_line`, `cmd::print`) and the step logs, which steps no longer write
//! themselves while a secret is registered: their stdout and stderr come through a pipe that the
//! wait loop reads and writes masked ([`Stream`], `run::exec`), so no unmasked byte ever
//! reaches the disk, not even when prodigy is killed mid-step.
//!
//! Both the value and its JSON-escaped form (`"` → `\"`, `\` → `\\`, control characters) are
//! masked, so a secret inside a serialized record is found too. Values shorter than
//! [`MIN_LEN`] bytes, and all-digit values shorter than [`MIN_DIGITS_LEN`], are not masked
//! (masking `on` would garble every line, masking `2026` every timestamp of every record); the
//! run warns about each one by name.
//!
//! The set is per thread: prodigy is single-threaded, and unit tests running in parallel do not
//! see each other's secrets.

use std::borrow::Cow;
use std::cell::RefCell;

/// What a secret is replaced with.
pub const MASK: &str = "***";

/// Secrets shorter than this many bytes are not masked (and the run warns).
pub const MIN_LEN: usize = 4;

/// Secrets made only of digits must be at least this long to be masked: timestamps, pids,
/// counters and file names in records are digits, and masking `2026` would break them all.
pub const MIN_DIGITS_LEN: usize = 8;

/// Whether `v` is long enough to be masked ([`MIN_LEN`], [`MIN_DIGITS_LEN`]).
pub fn maskable(v: &str) -> bool {
    v.len() >= MIN_LEN && (v.len() >= MIN_DIGITS_LEN || !v.bytes().all(|b| b.is_ascii_digit()))
}

thread_local! {
    static PATTERNS: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
}

/// Register the secret values to mask from now on (replacing any set before). Returns the
/// values that are too short to be masked (shorter than [`MIN_LEN`]), for a warning.
pub fn set<'a>(values: impl IntoIterator<Item = &'a str>) -> Vec<&'a str> {
    let mut short = Vec::new();
    let mut pats: Vec<Vec<u8>> = Vec::new();
    for v in values {
        if !maskable(v) {
            if !v.is_empty() {
                short.push(v);
            }
            continue;
        }
        pats.push(v.as_bytes().to_vec());
        let escaped = serde_json::to_string(v).unwrap_or_default();
        let inner = escaped.get(1..escaped.len().saturating_sub(1)).unwrap_or(v);
        if inner != v {
            pats.push(inner.as_bytes().to_vec());
        }
    }
    // Longest first: a secret that contains another is masked whole.
    crate::sort::sort_by(&mut pats, |a, b| b.len().cmp(&a.len()).then(a.cmp(b)));
    pats.dedup();
    PATTERNS.with(|p| *p.borrow_mut() = pats);
    short
}

/// Whether any secret is registered.
pub fn active() -> bool {
    PATTERNS.with(|p| !p.borrow().is_empty())
}

/// The longest pattern's length (0 when none).
fn longest() -> usize {
    PATTERNS.with(|p| p.borrow().first().map_or(0, Vec::len))
}

/// Mask `buf`. With `eof` false, a tail that could be the start of a secret is not emitted but
/// returned as the carry (at most the longest secret's length − 1 bytes).
fn scan(buf: &[u8], eof: bool, out: &mut Vec<u8>) -> Vec<u8> {
    PATTERNS.with(|p| {
        let pats = p.borrow();
        let longest = pats.first().map_or(0, Vec::len);
        let mut i = 0;
        while i < buf.len() {
            let rest = &buf[i..];
            if let Some(m) = pats.iter().find(|s| rest.starts_with(s)) {
                out.extend_from_slice(MASK.as_bytes());
                i += m.len();
                continue;
            }
            if !eof && rest.len() < longest && pats.iter().any(|s| s.starts_with(rest)) {
                return rest.to_vec();
            }
            out.push(buf[i]);
            i += 1;
        }
        Vec::new()
    })
}

/// `bytes` with every registered secret replaced by [`MASK`] (borrowed when nothing changes).
pub fn mask_bytes(bytes: &[u8]) -> Cow<'_, [u8]> {
    if !active() {
        return Cow::Borrowed(bytes);
    }
    let mut out = Vec::with_capacity(bytes.len());
    scan(bytes, true, &mut out);
    if out == bytes {
        Cow::Borrowed(bytes)
    } else {
        Cow::Owned(out)
    }
}

/// Like [`mask_bytes`], but when `bytes` is JSON (starts with `{` or `[`) only the insides of
/// string literals are masked: a secret that looks like a number, `null` or punctuation must not
/// turn a record into something that is not JSON. Other text is masked whole.
pub fn mask_record(bytes: &[u8]) -> Cow<'_, [u8]> {
    if !active() {
        return Cow::Borrowed(bytes);
    }
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
    if !matches!(first, Some(b'{') | Some(b'[')) {
        return mask_bytes(bytes);
    }
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'"' {
            out.push(bytes[i]);
            i += 1;
            continue;
        }
        let mut j = i + 1;
        while j < bytes.len() && bytes[j] != b'"' {
            j += if bytes[j] == b'\\' { 2 } else { 1 };
        }
        let end = j.min(bytes.len());
        out.push(b'"');
        scan(&bytes[i + 1..end], true, &mut out);
        if end < bytes.len() {
            out.push(b'"');
        }
        i = end + 1;
    }
    if out == bytes {
        Cow::Borrowed(bytes)
    } else {
        Cow::Owned(out)
    }
}

/// `text` with every registered secret replaced by [`MASK`].
pub fn mask_str(text: &str) -> Cow<'_, str> {
    match mask_bytes(text.as_bytes()) {
        Cow::Borrowed(_) => Cow::Borrowed(text),
        Cow::Owned(b) => Cow::Owned(String::from_utf8_lossy(&b).into_owned()),
    }
}

/// Masking of a byte stream read in pieces: a secret split across two reads is still masked,
/// because a tail that may begin a secret is held back until the next piece (or the end).
#[derive(Debug, Default)]
pub struct Stream {
    carry: Vec<u8>,
}

impl Stream {
    /// A new stream with nothing held back.
    pub fn new() -> Self {
        Stream::default()
    }

    /// Mask `piece` (after what was held back); returns what can be written now.
    pub fn feed(&mut self, piece: &[u8]) -> Vec<u8> {
        let mut buf = std::mem::take(&mut self.carry);
        buf.extend_from_slice(piece);
        let mut out = Vec::with_capacity(buf.len());
        if longest() == 0 {
            return buf;
        }
        self.carry = scan(&buf, false, &mut out);
        out
    }

    /// The end of the stream: what was held back, masked.
    pub fn finish(&mut self) -> Vec<u8> {
        let buf = std::mem::take(&mut self.carry);
        let mut out = Vec::with_capacity(buf.len());
        scan(&buf, true, &mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_values_and_their_json_form_and_skips_short_ones() {
        let short = set(["hunter2-secret", "a\"b\\c-q", "ab"]);
        assert_eq!(short, vec!["ab"]);
        assert_eq!(mask_str("x hunter2-secret y ab"), "x *** y ab");
        let json = serde_json::to_string("p a\"b\\c-q").unwrap();
        assert_eq!(mask_str(&json), "\"p ***\"");
        assert_eq!(mask_str("a\"b\\c-q"), "***");
        assert_eq!(set(["1234567", "12345678"]), vec!["1234567"]);
        set(["12345678", "null"]);
        let rec = br#"{"pid": 12345678, "x": null, "s": "pin 12345678 null", "k\"12345678": [1]}"#;
        assert_eq!(
            String::from_utf8(mask_record(rec).into_owned()).unwrap(),
            r#"{"pid": 12345678, "x": null, "s": "pin *** ***", "k\"***": [1]}"#
        );
        assert_eq!(mask_record(b"pin 12345678").as_ref(), b"pin ***");
        set([]);
        assert_eq!(mask_str("hunter2-secret"), "hunter2-secret");
    }

    #[test]
    fn a_secret_split_across_reads_is_masked() {
        set(["s3cr3t-value"]);
        let text = b"before s3cr3t-value middle s3cr3t-value after s3cr3t";
        for cut in 0..text.len() {
            for cut2 in cut..text.len() {
                let mut s = Stream::new();
                let mut out = s.feed(&text[..cut]);
                out.extend(s.feed(&text[cut..cut2]));
                out.extend(s.feed(&text[cut2..]));
                out.extend(s.finish());
                assert_eq!(
                    String::from_utf8(out).unwrap(),
                    "before *** middle *** after s3cr3t"
                );
            }
        }
        set([]);
    }
}
