//! `--older-than DURATION`: `90s`, `30m`, `24h`, `7d`, `2w` (Spec 135, seed 002).

/// The accepted forms, quoted in every error.
pub const FORMS: &str =
    "a whole number followed by s, m, h, d or w (90s, 30m, 24h, 7d, 2w; 0s = no age limit)";

/// Parse a duration into whole seconds. Errors name the accepted forms.
pub fn parse_duration(s: &str) -> Result<u64, String> {
    let bad = |why: &str| Err(format!("invalid duration `{s}`: {why}; expected {FORMS}"));
    if s.starts_with('-') {
        return bad("negative durations are not allowed");
    }
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    if num.is_empty() {
        return bad("missing number");
    }
    let mult: u64 = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 604_800,
        "" => return bad("missing unit"),
        _ => return bad("unknown unit"),
    };
    let Ok(n) = num.parse::<u64>() else {
        return bad("number too large");
    };
    match n.checked_mul(mult) {
        // Bound at ~292 years so later arithmetic on i64 seconds cannot overflow.
        Some(v) if v <= i64::MAX as u64 / 1_000 => Ok(v),
        _ => bad("too large"),
    }
}

/// Render seconds in the largest unit that divides them (`604800` → `1w`).
pub fn format_duration(secs: u64) -> String {
    for (unit, mult) in [("w", 604_800), ("d", 86_400), ("h", 3600), ("m", 60)] {
        if secs != 0 && secs % mult == 0 {
            return format!("{}{unit}", secs / mult);
        }
    }
    format!("{secs}s")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_documented_examples() {
        assert_eq!(parse_duration("90s"), Ok(90));
        assert_eq!(parse_duration("30m"), Ok(1800));
        assert_eq!(parse_duration("24h"), Ok(86_400));
        assert_eq!(parse_duration("7d"), Ok(604_800));
        assert_eq!(parse_duration("2w"), Ok(1_209_600));
        assert_eq!(parse_duration("0s"), Ok(0));
    }

    #[test]
    fn rejects_negative_overflow_and_unknown_units() {
        for bad in [
            "-1d",
            "1y",
            "d",
            "7",
            "",
            "99999999999999999999s",
            "9999999999999999w",
            "1.5h",
            "7 d",
        ] {
            let e = parse_duration(bad).unwrap_err();
            assert!(e.contains("expected a whole number"), "{bad}: {e}");
        }
    }

    #[test]
    fn formats_in_largest_unit() {
        assert_eq!(format_duration(604_800), "1w");
        assert_eq!(format_duration(86_400 * 30), "30d");
        assert_eq!(format_duration(0), "0s");
        assert_eq!(format_duration(90), "90s");
    }
}
