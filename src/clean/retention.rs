//! The retention file `$PRODIGY_HOME/clean.conf` and `--max-size` sizes: parsing only.
//!
//! The file is a list of `key = value` lines: a storage type and its retention
//! (`worktrees = 7d`), or `max-size = 20G`; blank lines and lines starting with `#` are
//! ignored. It is not YAML and not named `config.yml`, so Prodigy 0.4.4, which reads its own
//! `config.yml` from the same directory, never sees it. Any line that is not understood is an
//! error naming the file and the line, and `clean` stops before it removes anything (an
//! unattended clean must not guess what a retention file meant). This module reads nothing
//! but the bytes it is given and prints nothing.

use crate::store::StorageType;
use std::collections::BTreeMap;
use std::path::Path;

/// The retention file's name at the root.
pub const FILE: &str = "clean.conf";

/// Largest retention file read, bytes: a few lines are expected.
pub const MAX_FILE: u64 = 64 << 10;

/// The accepted size forms, quoted in every error.
pub const SIZE_FORMS: &str =
    "a whole number of bytes, optionally followed by K, M, G or T (binary: 1K = 1024; 500M, 20G)";

/// What the retention file says. Types it does not name keep their default retention.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Config {
    /// Retention per type, seconds.
    pub retention: BTreeMap<StorageType, u64>,
    /// `max-size`, bytes.
    pub max_size: Option<u64>,
    /// `compress-after`, seconds: event and log files idle this long are compressed.
    pub compress_after: Option<u64>,
    /// `archive`, an absolute directory: removed items are archived there first.
    pub archive: Option<std::path::PathBuf>,
}

/// Parse a size: `1048576`, `512K`, `500M`, `20G`, `1T` (binary units; an optional trailing
/// `B` or `iB` is accepted: `20GiB`, `20GB`). Errors name the accepted forms.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let bad = |why: &str| Err(format!("invalid size `{s}`: {why}; expected {SIZE_FORMS}"));
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    if num.is_empty() {
        return bad("missing number");
    }
    let unit = unit
        .strip_suffix("iB")
        .or_else(|| unit.strip_suffix('B'))
        .unwrap_or(unit);
    let shift = match unit {
        "" => 0,
        "K" | "k" => 10,
        "M" | "m" => 20,
        "G" | "g" => 30,
        "T" | "t" => 40,
        _ => return bad("unknown unit"),
    };
    let Ok(n) = num.parse::<u64>() else {
        return bad("number too large");
    };
    n.checked_mul(1u64 << shift)
        .map_or_else(|| bad("too large"), Ok)
}

/// Parse the retention file's text. `path` is only used in errors, which read
/// `` `PATH`:LINE: what is wrong ``.
pub fn parse(text: &str, path: &Path) -> Result<Config, String> {
    let mut c = Config::default();
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for (n, raw) in text.lines().enumerate() {
        let n = n + 1;
        let err = |why: String| format!("`{}`:{n}: {why}", path.display());
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            return Err(err(format!(
                "expected `KEY = VALUE`, found `{}`",
                crate::store::names::printable(std::ffi::OsStr::new(line))
            )));
        };
        let (key, value) = (key.trim(), value.trim());
        if let Some(first) = seen.insert(key.to_string(), n) {
            return Err(err(format!("`{key}` is set twice (first on line {first})")));
        }
        if key == "max-size" {
            c.max_size = Some(parse_size(value).map_err(err)?);
        } else if key == "archive" {
            let p = std::path::PathBuf::from(value);
            if !p.is_absolute() {
                return Err(err(format!(
                    "archive `{value}` is not an absolute path; give the directory from /"
                )));
            }
            c.archive = Some(p);
        } else if key == "compress-after" {
            c.compress_after = Some(crate::duration::parse_duration(value).map_err(err)?);
        } else if let Some(t) = StorageType::from_word(key) {
            let secs = crate::duration::parse_duration(value).map_err(err)?;
            c.retention.insert(t, secs);
        } else {
            return Err(err(format!(
                "unknown key `{}`; expected worktrees, sessions, logs, state, events, dlq, max-size, compress-after or archive",
                crate::store::names::printable(std::ffi::OsStr::new(key))
            )));
        }
    }
    Ok(c)
}

/// Parse `--retention TYPE=DURATION`.
pub fn parse_flag(s: &str) -> Result<(StorageType, u64), String> {
    let Some((t, d)) = s.split_once('=') else {
        return Err(format!(
            "invalid retention `{s}`: expected TYPE=DURATION, such as sessions=30d"
        ));
    };
    let Some(ty) = StorageType::from_word(t) else {
        return Err(format!(
            "invalid retention `{s}`: unknown type `{t}`; expected worktrees, sessions, logs, state, events or dlq"
        ));
    };
    Ok((ty, crate::duration::parse_duration(d)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_use_binary_units() {
        assert_eq!(parse_size("0"), Ok(0));
        assert_eq!(parse_size("1536"), Ok(1536));
        assert_eq!(parse_size("512K"), Ok(512 << 10));
        assert_eq!(parse_size("500M"), Ok(500 << 20));
        assert_eq!(parse_size("20G"), Ok(20 << 30));
        assert_eq!(parse_size("20GiB"), Ok(20 << 30));
        assert_eq!(parse_size("20GB"), Ok(20 << 30));
        assert_eq!(parse_size("2T"), Ok(2 << 40));
        assert_eq!(parse_size("3k"), Ok(3 << 10));
    }

    #[test]
    fn bad_sizes_name_the_forms() {
        for bad in [
            "",
            "G",
            "-1G",
            "1.5G",
            "20 G",
            "20X",
            "20Gi",
            "99999999999999999999",
            "16777216T",
        ] {
            let e = parse_size(bad).unwrap_err();
            assert!(e.contains("expected a whole number of bytes"), "{bad}: {e}");
        }
    }

    #[test]
    fn file_sets_types_and_max_size_and_ignores_comments() {
        let c = parse(
            "# nightly\n\nworktrees = 3d\n  sessions=60d  \nmax-size = 20G\n",
            Path::new("/r/clean.conf"),
        )
        .unwrap();
        assert_eq!(c.retention[&StorageType::Worktrees], 3 * 86_400);
        assert_eq!(c.retention[&StorageType::Sessions], 60 * 86_400);
        assert_eq!(c.retention.len(), 2);
        assert_eq!(c.max_size, Some(20 << 30));
        assert_eq!(parse("", Path::new("x")).unwrap(), Config::default());
    }

    #[test]
    fn file_errors_name_the_file_and_line() {
        let p = Path::new("/r/clean.conf");
        for (text, line, what) in [
            ("worktrees = 7d\nbogus = 1d\n", 2, "unknown key `bogus`"),
            ("\n\nsessions = 7 days\n", 3, "invalid duration"),
            ("max-size = lots\n", 1, "invalid size"),
            ("worktrees 7d\n", 1, "expected `KEY = VALUE`"),
            (
                "logs = 1d\n# x\nlogs = 2d\n",
                3,
                "set twice (first on line 1)",
            ),
        ] {
            let e = parse(text, p).unwrap_err();
            assert!(
                e.starts_with(&format!("`/r/clean.conf`:{line}: ")) && e.contains(what),
                "{text:?}: {e}"
            );
        }
    }

    #[test]
    fn retention_flag_is_type_equals_duration() {
        assert_eq!(
            parse_flag("sessions=30d"),
            Ok((StorageType::Sessions, 30 * 86_400))
        );
        assert!(parse_flag("sessions")
            .unwrap_err()
            .contains("TYPE=DURATION"));
        assert!(parse_flag("bogus=1d").unwrap_err().contains("unknown type"));
        assert!(parse_flag("logs=1y").unwrap_err().contains("90s, 30m"));
    }
}
