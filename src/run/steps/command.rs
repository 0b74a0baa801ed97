//! `shell:` and `claude:` steps: the command line each runs (run.md §2 "Actions"). The wait loop
//! ([`super::super::lane`]) starts it with the step's directory, environment, timeout and
//! output files; this module only says what is run.

use std::ffi::OsString;

/// `sh -c TEXT`: a `shell:` step's interpolated text, as 0.4.4 runs it
/// (reference/prodigy-0.4.4-steps.md, "shell").
pub(crate) fn shell_argv(text: &str) -> Vec<OsString> {
    vec!["sh".into(), "-c".into(), text.into()]
}

/// A `claude:` step's command: `claude --print --dangerously-skip-permissions TEXT`, or with
/// `streaming` (reference §3.2 streaming mode) `claude --output-format stream-json --verbose
/// --dangerously-skip-permissions TEXT`, whose JSON lines go to a log of their own.
pub(crate) fn claude_argv(text: &str, streaming: bool) -> Vec<OsString> {
    let mut argv: Vec<OsString> = vec!["claude".into()];
    if streaming {
        argv.extend([
            "--output-format".into(),
            "stream-json".into(),
            "--verbose".into(),
        ]);
    } else {
        argv.push("--print".into());
    }
    argv.push("--dangerously-skip-permissions".into());
    argv.push(text.into());
    argv
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_lines() {
        assert_eq!(shell_argv("echo hi"), ["sh", "-c", "echo hi"]);
        assert_eq!(
            claude_argv("/fix x", false),
            [
                "claude",
                "--print",
                "--dangerously-skip-permissions",
                "/fix x"
            ]
        );
        assert_eq!(
            claude_argv("/fix", true),
            [
                "claude",
                "--output-format",
                "stream-json",
                "--verbose",
                "--dangerously-skip-permissions",
                "/fix"
            ]
        );
    }
}
