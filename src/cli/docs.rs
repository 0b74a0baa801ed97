//! Documentation generated from the command tables: man pages of the inspection commands and
//! shell completions (bash, zsh, fish). Touches no files; `prodigy help --man PAGE` and
//! `prodigy help --completions SHELL` print them.

use super::{all_specs, exit_rows_roff, roff, Flag, Sub, SUBS};
use std::fmt::Write as _;

/// Inspection command groups with a man page each, and what the page says about the group.
pub const GROUPS: &[(&str, &str)] = &[
    ("stats", "Shows what is stored under the root, per storage type and per repository, what \\fBprodigy clean\\fR would reclaim now under the default retention, how much is held by active, resumable and unknown sessions, the largest items, and what Prodigy 0.4.4 left under \\fI$HOME/.prodigy\\fR while \\fBPRODIGY_HOME\\fR points elsewhere. It changes nothing. It is built to cost about what \\fBdu\\fR costs: it reads the tree and the records but runs no git command other than \\fBgit worktree list\\fR, so the reclaimable figure counts expired worktrees before their \\fBgit status\\fR check (the JSON field \\fBreclaimable_worktrees_unchecked\\fR says how many); \\fBprodigy clean \\-\\-dry\\-run\\fR runs every check."),
    ("sessions", "Lists sessions with their class (active, resumable, stale, completed, failed, cancelled, unknown) and the evidence that decided it, shows one session by session id or job id with everything it owns, and deletes sessions explicitly. \\fBsessions rm\\fR removes resumable and unknown sessions too, never an active one; it uses the engine, confirmation, dry run and audit log of \\fBprodigy clean\\fR."),
    ("events", "Reads the JSONL event logs of jobs, in both the canonical shape and Prodigy 0.4.4's. Files are streamed, so memory does not grow with a log's size. Event types compare without case and underscores (AgentStarted = agent_started). Corrupt lines are counted and reported once; a torn last line is not corrupt. \\fBevents show \\-\\-json\\fR and \\fBevents follow \\-\\-json\\fR print one stored event per line."),
    ("dlq", "Reads dead letter queues: the canonical \\fIdlq/{repo}/{job_id}/dlq\\-items.json\\fR and Prodigy 0.4.4's per\\-item files. \\fBretry\\fR runs a job's failed items again as a new map pass (see \\fBprodigy\\-resume\\fR(1)): merged items leave the queue, items that fail again get one more \\fBfailure_history\\fR entry."),
    ("checkpoints", "Lists MapReduce jobs with their newest checkpoint per phase (by file\\-name timestamp) and work item progress (the newest map checkpoint with the later lines of the job's \\fBmap\\-log.jsonl\\fR applied), and Prodigy 0.4.4's workflow checkpoints; \\fBverify\\fR parses every checkpoint and map log in scope and names each invalid one with its line and column (a map log's torn last line, left by a kill, is not an error)."),
    ("archive", "Reads the archives \\fBprodigy clean \\-\\-archive\\fR writes (format: \\fBprodigy\\-storage\\fR(5), ARCHIVES). \\fBls\\fR prints the manifest: each item's type, repository, session, job, files, bytes, path relative to the root and why it went. \\fBrestore\\fR puts items back under \\fB$PRODIGY_HOME\\fR, files byte\\-identical with their mode and mtime (whole seconds), each written under a temp name, fsynced and renamed into place. It never overwrites: a file that exists refuses the whole restore before anything is written. \\fB\\-\\-only\\fR \\fIID\\fR takes the items whose session id or job id is \\fIID\\fR, or whose path (as \\fBls\\fR prints it) is \\fIID\\fR. An archive is untrusted: both commands check all of it first and refuse (exit 3, one line naming the archive and the entry, nothing written) a path outside the layout (absolute, \\fB..\\fR, a name outside the grammar), a symlink, hard link or device entry, a bad checksum, truncated or corrupt data, and a manifest that disagrees with the entries."),
];

fn synopsis(sub: &Sub) -> String {
    let mut s = format!(".B prodigy {}\n", sub.words.join(" "));
    if !sub.positional.is_empty() {
        writeln!(s, "{}", roff(sub.positional)).unwrap();
    }
    s.push_str("[\\fIOPTIONS\\fR]\n");
    s
}

fn flags(out: &mut String, table: &[Flag]) {
    for f in table {
        out.push_str(".TP\n");
        if let Some(c) = f.short {
            write!(out, "\\fB\\-{c}\\fR, ").unwrap();
        }
        write!(out, "\\fB\\-\\-{}\\fR", roff(f.long)).unwrap();
        if let Some(v) = f.value {
            write!(out, " \\fI{v}\\fR").unwrap();
        }
        writeln!(out, "\n{}", roff(f.help)).unwrap();
    }
}

/// The man page of an inspection group (`prodigy-sessions`), or None.
pub fn group_page(page: &str) -> Option<String> {
    let group = page.strip_prefix("prodigy-")?;
    let (_, text) = GROUPS.iter().find(|(g, _)| *g == group)?;
    let subs: Vec<&Sub> = SUBS.iter().filter(|s| s.words[0] == group).collect();
    let mut o = String::new();
    writeln!(
        o,
        ".TH {} 1 \"\" \"prodigy {}\" \"User Commands\"",
        page.to_uppercase(),
        env!("CARGO_PKG_VERSION")
    )
    .unwrap();
    writeln!(o, ".SH NAME\n{} \\- {}", roff(page), roff(subs[0].about)).unwrap();
    o.push_str(".SH SYNOPSIS\n");
    for (k, s) in subs.iter().enumerate() {
        if k > 0 {
            o.push_str(".br\n");
        }
        o.push_str(&synopsis(s));
    }
    writeln!(o, ".SH DESCRIPTION\n{text}").unwrap();
    if subs.len() > 1 || subs[0].words.len() > 1 {
        o.push_str(".SH COMMANDS\n");
    } else {
        o.push_str(".SH OPTIONS\n");
    }
    for s in &subs {
        if subs.len() > 1 || s.words.len() > 1 {
            writeln!(
                o,
                ".SS \"prodigy {} {}\"\n{}.",
                s.words.join(" "),
                roff(s.positional),
                roff(s.about)
            )
            .unwrap();
        }
        flags(&mut o, s.flags);
    }
    o.push_str(".SH ENVIRONMENT\n.TP\n.B PRODIGY_HOME\nThe storage root; must be an absolute path. Default: \\fI$HOME/.prodigy\\fR.\n");
    exit_rows_roff(&mut o);
    o.push_str(".SH EXAMPLES\n.nf\n");
    for s in &subs {
        writeln!(o, "{}", roff(&example(s))).unwrap();
    }
    o.push_str(".fi\n");
    o.push_str(".SH SEE ALSO\n\\fBprodigy\\fR(1), \\fBprodigy\\-clean\\fR(1), \\fBprodigy\\-storage\\fR(5)\n");
    Some(o)
}

/// An example command line for a subcommand: its positional placeholders filled in and its first
/// flag that takes a value given its documented example.
pub fn example(sub: &Sub) -> String {
    let mut s = format!("prodigy {}", sub.words.join(" "));
    for p in sub.positional.split_whitespace() {
        let v = match p.trim_matches(|c| c == '[' || c == ']' || c == '.') {
            "ID" => "session-abc123",
            "JOB_ID" => "mapreduce-123",
            "ITEM_ID" => "item-1",
            "FILE" => "/var/backups/prodigy/prodigy-20261207T031500.tar.gz",
            _ => continue,
        };
        s.push(' ');
        s.push_str(v);
    }
    if let Some(f) = sub
        .flags
        .iter()
        .find(|f| f.value.is_some() && f.long != "repo")
    {
        write!(
            s,
            " --{} {}",
            f.long,
            super::example_value(f.value.unwrap_or(""))
        )
        .unwrap();
    } else if sub.flags.iter().any(|f| f.long == "json") {
        s.push_str(" --json");
    }
    s
}

/// Shells `prodigy help --completions` knows.
pub const SHELLS: &[&str] = &["bash", "zsh", "fish"];

fn first_words() -> Vec<&'static str> {
    let mut v: Vec<&str> = all_specs().map(|s| s.words[0]).collect();
    v.push("help");
    v.dedup();
    v
}

fn value_choices(value: &str) -> Option<&'static str> {
    match value {
        "CLASS" => Some("active resumable stale completed failed cancelled unknown"),
        "STATUS" => Some("Initializing Running Paused Completed Failed Cancelled"),
        _ => None,
    }
}

fn long_flags(s: &Sub) -> String {
    let mut v: Vec<String> = s.flags.iter().map(|f| format!("--{}", f.long)).collect();
    if s.words == ["clean"] {
        v.extend(
            [
                "all",
                "worktrees",
                "sessions",
                "logs",
                "state",
                "events",
                "dlq",
            ]
            .map(String::from),
        );
    }
    v.join(" ")
}

fn bash() -> String {
    let mut o = String::from(
        "# bash completion for prodigy (generated by `prodigy help --completions bash`)\n\
         _prodigy() {\n\
         \x20   local cur=\"${COMP_WORDS[COMP_CWORD]}\" prev=\"${COMP_WORDS[COMP_CWORD-1]}\"\n\
         \x20   local cmd=\"${COMP_WORDS[1]}\" sub=\"${COMP_WORDS[2]}\"\n",
    );
    writeln!(o, "    if [ \"$COMP_CWORD\" -eq 1 ]; then\n        COMPREPLY=( $(compgen -W \"{}\" -- \"$cur\") ); return\n    fi", first_words().join(" ")).unwrap();
    o.push_str("    case \"$prev\" in\n");
    let mut seen = Vec::new();
    for s in all_specs() {
        for f in s.flags {
            if let (Some(v), false) = (f.value, seen.contains(&f.long)) {
                seen.push(f.long);
                match value_choices(v) {
                    Some(c) => writeln!(
                        o,
                        "        --{}) COMPREPLY=( $(compgen -W \"{c}\" -- \"$cur\") ); return ;;",
                        f.long
                    )
                    .unwrap(),
                    None => writeln!(o, "        --{}) COMPREPLY=(); return ;;", f.long).unwrap(),
                }
            }
        }
    }
    o.push_str("    esac\n    local words=\"\"\n    case \"$cmd\" in\n");
    let mut groups: Vec<&str> = Vec::new();
    for s in all_specs() {
        if s.words.len() == 1 {
            writeln!(o, "        {}) words=\"{}\" ;;", s.words[0], long_flags(s)).unwrap();
        } else if !groups.contains(&s.words[0]) {
            groups.push(s.words[0]);
            let verbs: Vec<&str> = all_specs()
                .filter(|x| x.words[0] == s.words[0])
                .map(|x| x.words[1])
                .collect();
            writeln!(o, "        {})\n            if [ \"$COMP_CWORD\" -eq 2 ]; then words=\"{}\"; else\n            case \"$sub\" in", s.words[0], verbs.join(" ")).unwrap();
            for x in all_specs().filter(|x| x.words[0] == s.words[0]) {
                writeln!(
                    o,
                    "                {}) words=\"{}\" ;;",
                    x.words[1],
                    long_flags(x)
                )
                .unwrap();
            }
            o.push_str("            esac; fi ;;\n");
        }
    }
    writeln!(
        o,
        "        help) words=\"{} --man --completions\" ;;",
        first_words().join(" ")
    )
    .unwrap();
    o.push_str("    esac\n    COMPREPLY=( $(compgen -W \"$words\" -- \"$cur\") )\n}\ncomplete -F _prodigy prodigy\n");
    o
}

fn zsh() -> String {
    format!(
        "#compdef prodigy\n# zsh completion for prodigy (generated by `prodigy help --completions zsh`):\n\
         # the bash completion through zsh's bashcompinit.\n\
         autoload -U +X bashcompinit && bashcompinit\n{}",
        bash()
    )
}

fn fish() -> String {
    let mut o = String::from("# fish completion for prodigy (generated by `prodigy help --completions fish`)\ncomplete -c prodigy -f\n");
    for w in first_words() {
        let about = all_specs()
            .find(|s| s.words[0] == w)
            .map(|s| if s.words.len() == 1 { s.about } else { "" })
            .unwrap_or("print help");
        writeln!(
            o,
            "complete -c prodigy -n __fish_use_subcommand -a {w} -d '{}'",
            about.replace('\'', "")
        )
        .unwrap();
    }
    for s in all_specs() {
        let cond = if s.words.len() == 1 {
            // `clean` also appears as `worktree clean`.
            format!(
                "__fish_seen_subcommand_from {}; and not __fish_seen_subcommand_from worktree",
                s.words[0]
            )
        } else {
            let verbs: Vec<&str> = all_specs()
                .filter(|x| x.words[0] == s.words[0])
                .map(|x| x.words[1])
                .collect();
            writeln!(
                o,
                "complete -c prodigy -n '__fish_seen_subcommand_from {}; and not __fish_seen_subcommand_from {}' -a {} -d '{}'",
                s.words[0],
                verbs.join(" "),
                s.words[1],
                s.about.replace('\'', "")
            )
            .unwrap();
            format!(
                "__fish_seen_subcommand_from {}; and __fish_seen_subcommand_from {}",
                s.words[0], s.words[1]
            )
        };
        for f in s.flags {
            let mut line = format!("complete -c prodigy -n '{cond}' -l {}", f.long);
            if let Some(c) = f.short {
                write!(line, " -s {c}").unwrap();
            }
            if let Some(v) = f.value {
                match value_choices(v) {
                    Some(c) => write!(line, " -x -a '{c}'").unwrap(),
                    None => line.push_str(" -r"),
                }
            }
            write!(line, " -d '{}'", f.help.replace('\'', "")).unwrap();
            writeln!(o, "{line}").unwrap();
        }
    }
    o
}

/// The completion script for `shell`, or None.
pub fn completions(shell: &str) -> Option<String> {
    match shell {
        "bash" => Some(bash()),
        "zsh" => Some(zsh()),
        "fish" => Some(fish()),
        _ => None,
    }
}
