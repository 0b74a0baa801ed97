//! The name grammar of storage-format §6 / safety R3.
//!
//! IDs and repository names match `^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`: never empty, `.`, `..`,
//! a path, or containing `/` or NUL. Names are raw bytes and are never converted lossily; a name
//! that does not fit is kept and reported by the caller, never joined onto a path.

use std::ffi::OsStr;

/// True when `name` is a valid id or repository name (safety R3).
pub fn is_valid_id(name: &OsStr) -> bool {
    is_valid_id_bytes(as_bytes(name))
}

/// The bytes an id may hold: ASCII letters, digits, `.`, `_` and `-`.
static ID_BYTE: [bool; 256] = {
    let mut t = [false; 256];
    let mut c = 0;
    while c < 256 {
        let b = c as u8;
        t[c] = b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-';
        c += 1;
    }
    t
};

/// [`is_valid_id`] on bytes. One table lookup a byte, eight combined before a branch: the
/// static binary is built at opt-level "z", where the four comparisons were a call a byte
/// (issue 25, eighth round) and a loop is not unrolled (ninth round).
pub fn is_valid_id_bytes(b: &[u8]) -> bool {
    if b.is_empty() || b.len() > 128 || !b[0].is_ascii_alphanumeric() {
        return false;
    }
    let mut i = 0;
    while i + 8 <= b.len() {
        if !id_word(crate::bytes::word(b, i)) {
            return false;
        }
        i += 8;
    }
    b[i..].iter().all(|&c| ID_BYTE[c as usize])
}

/// Whether the eight bytes of `w` are all id bytes: eight lookups, one branch.
#[inline(always)]
fn id_word(w: u64) -> bool {
    // Written out: at opt-level "z" a closure here is a call a byte.
    ID_BYTE[w as u8 as usize]
        & ID_BYTE[(w >> 8) as u8 as usize]
        & ID_BYTE[(w >> 16) as u8 as usize]
        & ID_BYTE[(w >> 24) as u8 as usize]
        & ID_BYTE[(w >> 32) as u8 as usize]
        & ID_BYTE[(w >> 40) as u8 as usize]
        & ID_BYTE[(w >> 48) as u8 as usize]
        & ID_BYTE[(w >> 56) as u8 as usize]
}

/// `name` as a `&str` when it is a valid id (valid ids are ASCII).
pub fn valid_id_str(name: &OsStr) -> Option<&str> {
    if is_valid_id(name) {
        name.to_str()
    } else {
        None
    }
}

/// `stem` when `name` is `{stem}{suffix}` and `stem` is a valid id.
pub fn strip_valid<'a>(name: &'a OsStr, suffix: &str) -> Option<&'a str> {
    let s = name.to_str()?;
    let stem = s.strip_suffix(suffix)?;
    if is_valid_id_bytes(stem.as_bytes()) {
        Some(stem)
    } else {
        None
    }
}

/// True for the session ids Prodigy 0.4.4 creates (storage-format §5): `workflow-{unix_ms}` and
/// `session-{uuid}`. Directories with such names under `events/`, `dlq/`, `state/` and
/// `worktrees/` are 0.4.4 pseudo-repositories owned by that session.
pub fn is_legacy_session_id(s: &str) -> bool {
    if let Some(ms) = s.strip_prefix("workflow-") {
        return !ms.is_empty() && ms.len() <= 20 && ms.bytes().all(|c| c.is_ascii_digit());
    }
    if let Some(uuid) = s.strip_prefix("session-") {
        let parts: Vec<&str> = uuid.split('-').collect();
        let lens = [8, 4, 4, 4, 12];
        return parts.len() == 5
            && parts
                .iter()
                .zip(lens)
                .all(|(p, n)| p.len() == n && p.bytes().all(|c| c.is_ascii_hexdigit()));
    }
    false
}

/// A printable form of a raw name: valid UTF-8 as is, other bytes as `\xNN`, control
/// characters escaped, so a hostile name cannot forge output lines.
pub fn printable(name: &OsStr) -> String {
    let bytes = as_bytes(name);
    if let Some(s) = ascii_printable(bytes) {
        // The common case: nothing to escape.
        return s;
    }
    let mut out = String::new();
    for chunk in as_bytes(name).utf8_chunks() {
        for c in chunk.valid().chars() {
            if c.is_control() {
                out.extend(c.escape_default());
            } else {
                out.push(c);
            }
        }
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}

/// `b` as a `String` when every byte is printable ASCII (`' '`…`'~'`), else `None`. (Not
/// `from_utf8_lossy`, which checks a chunk at a time, four times slower on 128-character
/// ids: issue 25.)
pub fn ascii_printable(b: &[u8]) -> Option<String> {
    if !crate::bytes::all_printable(b) {
        return None;
    }
    std::str::from_utf8(b).ok().map(str::to_owned)
}

/// [`printable`] of text: control characters (C0, DEL, C1; newlines as `\n`, tabs as `\t`)
/// escaped, everything else as is. For quoting user input (workflow keys and values, paths,
/// ids, git's output, a step's text) in a message.
pub fn printable_str(s: &str) -> String {
    printable(OsStr::new(s))
}

/// [`printable_str`] cut to at most `max` characters of the input, with `…` when cut: a long
/// value quoted in a one-line message.
pub fn printable_cut(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((at, _)) => format!("{}…", printable_str(&s[..at])),
        None => printable_str(s),
    }
}

/// `text` made safe for a terminal: every control character except line ends (`\n`) and tabs
/// escaped. C0 controls as [`printable`] writes them (`ESC` → `\u{1b}`, `\r` → `\r`); DEL
/// and C1 as `\u007f`…`\u009f`, which is also a JSON escape: serde_json writes C0 escaped but
/// DEL and C1 raw, so this keeps a `--json` document valid and its strings' values unchanged.
/// The last guard on everything prodigy writes as text (stdout through `cmd::print`, errors,
/// warnings and progress on stderr), behind the quoting of each input at its source; a message
/// that is already safe is returned borrowed.
pub fn terminal_safe(text: &str) -> std::borrow::Cow<'_, str> {
    let unsafe_char = |c: char| c.is_control() && c != '\n' && c != '\t';
    // Printable ASCII (the common case) is checked without decoding.
    if plain_ascii(text.as_bytes()) || !text.chars().any(unsafe_char) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if !unsafe_char(c) {
            out.push(c);
        } else if c < ' ' {
            out.extend(c.escape_default());
        } else {
            out.push_str(&format!("\\u{:04x}", u32::from(c)));
        }
    }
    std::borrow::Cow::Owned(out)
}

/// Whether every byte of `b` is printable ASCII, a newline or a tab. Eight bytes at a time:
/// a dry run's listing is tens of megabytes of text (issue 25), checked byte by byte it was 5%
/// of the run's instructions. A word with a byte below `' '` or above `'~'` (found exactly:
/// the subtraction borrows, the addition carries, only out of such a byte) is checked byte by
/// byte.
fn plain_ascii(b: &[u8]) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let plain = |c: &u8| (b' '..=b'~').contains(c) || *c == b'\n' || *c == b'\t';
    let mut words = b.chunks_exact(8);
    for w in &mut words {
        let x = u64::from_le_bytes(w.try_into().expect("eight bytes"));
        let below_space = x.wrapping_sub(u64::from(b' ') * ONES) & !x & HIGH;
        let above_tilde = (x.wrapping_add(ONES) | x) & HIGH;
        if below_space | above_tilde != 0 && !w.iter().all(plain) {
            return false;
        }
    }
    words.remainder().iter().all(plain)
}

#[cfg(unix)]
fn as_bytes(s: &OsStr) -> &[u8] {
    use std::os::unix::ffi::OsStrExt;
    s.as_bytes()
}

#[cfg(not(unix))]
fn as_bytes(s: &OsStr) -> &[u8] {
    s.as_encoded_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_grammar_accepts_ids_and_rejects_paths() {
        for ok in [
            "a",
            "session-1",
            "workflow-1795238089653",
            "mapreduce-20261121_051522",
            "A.b_c-d",
        ] {
            assert!(is_valid_id(OsStr::new(ok)), "{ok}");
        }
        let long = "a".repeat(129);
        for bad in [
            "",
            ".",
            "..",
            "../x",
            "a/b",
            "-a",
            ".hidden",
            "a b",
            "a\0b",
            long.as_str(),
        ] {
            assert!(!is_valid_id(OsStr::new(bad)), "{bad:?}");
        }
        assert!(is_valid_id(OsStr::new(&"a".repeat(128))));
    }

    #[test]
    fn id_bytes_are_exactly_letters_digits_dot_underscore_and_dash() {
        for c in 0..=255u8 {
            let allowed = matches!(c, b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'.' | b'_' | b'-');
            assert_eq!(
                is_valid_id_bytes(&[b'a', c, b'z']),
                allowed,
                "byte {c:#04x}"
            );
            // At every position after the first of a 20-byte id: in either of the two
            // eight-byte words checked together, or in the four bytes after them.
            for at in 1..20 {
                let mut id = *b"a0123456789abcdefghi";
                id[at] = c;
                assert_eq!(is_valid_id_bytes(&id), allowed, "byte {c:#04x} at {at}");
            }
        }
    }

    #[test]
    fn legacy_session_ids_are_recognized_exactly() {
        assert!(is_legacy_session_id("workflow-1795238089653"));
        assert!(is_legacy_session_id(
            "session-d18a73c0-e5b5-44da-b9e5-fc1936284e80"
        ));
        assert!(!is_legacy_session_id("session-abc"));
        assert!(!is_legacy_session_id("workflow-"));
        assert!(!is_legacy_session_id("webapp"));
    }

    #[test]
    fn plain_ascii_agrees_with_a_byte_by_byte_check_at_every_offset() {
        let plain = |c: &u8| (b' '..=b'~').contains(c) || *c == b'\n' || *c == b'\t';
        let base = b"session-0123456789abcdef ~ the quick brown fox\tjumps\n".to_vec();
        for odd in 0..=255u8 {
            for at in 0..base.len() {
                let mut v = base.clone();
                v[at] = odd;
                // Beside its neighbours' carries: the bytes around it at their extremes.
                for (k, n) in [(at.wrapping_sub(1), b'~'), (at + 1, b' ')] {
                    if let Some(c) = v.get_mut(k) {
                        *c = n;
                    }
                }
                assert_eq!(plain_ascii(&v), v.iter().all(plain), "{odd:#x} at {at}");
            }
        }
    }

    #[test]
    fn terminal_safe_escapes_every_control_but_line_ends_and_tabs() {
        let t = terminal_safe("a\u{1b}[31mb\u{7f}c\u{9b}d\re\n\tf");
        assert_eq!(t, "a\\u{1b}[31mb\\u007fc\\u009bd\\re\n\tf");
        // In a JSON document (C0 already escaped by serde_json) the result is the same JSON.
        let doc = serde_json::to_string(&serde_json::json!({"k": "x\u{1b}\u{7f}\u{9b}"})).unwrap();
        let safe = terminal_safe(&doc);
        let back: serde_json::Value = serde_json::from_str(&safe).unwrap();
        assert_eq!(back["k"], "x\u{1b}\u{7f}\u{9b}");
        assert!(matches!(
            terminal_safe("plain\n"),
            std::borrow::Cow::Borrowed(_)
        ));
        assert_eq!(printable_cut("abcdef", 3), "abc…");
        assert_eq!(printable_cut("ab\ncd", 9), "ab\\ncd");
        assert_eq!(printable_cut("ééé", 2), "éé…");
    }

    #[test]
    fn printable_escapes_control_and_invalid_bytes() {
        assert_eq!(printable(OsStr::new("a\nb")), "a\\nb");
        #[cfg(unix)]
        {
            use std::os::unix::ffi::OsStrExt;
            assert_eq!(printable(OsStr::from_bytes(b"bad\xff")), "bad\\xff");
        }
    }

    #[test]
    fn strip_valid_requires_suffix_and_valid_stem() {
        assert_eq!(strip_valid(OsStr::new("s-1.json"), ".json"), Some("s-1"));
        assert_eq!(strip_valid(OsStr::new(".s.json"), ".json"), None);
        assert_eq!(strip_valid(OsStr::new("s-1.jsonx"), ".json"), None);
    }
}
