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

/// [`is_valid_id`] on bytes.
pub fn is_valid_id_bytes(b: &[u8]) -> bool {
    if b.is_empty() || b.len() > 128 || !b[0].is_ascii_alphanumeric() {
        return false;
    }
    b.iter()
        .all(|&c| c.is_ascii_alphanumeric() || c == b'.' || c == b'_' || c == b'-')
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
