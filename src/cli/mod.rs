//! Command line: argv in, a [`Command`] out. Touches no files.
//!
//! Hand-rolled on lexopt (design card). Flags are described once, in [`CLEAN_FLAGS`] and
//! [`WORKTREE_CLEAN_FLAGS`]; the parser looks names up there and `--help` is printed from the same
//! rows, so the two cannot drift.
//!
//! Why one file of about 1,900 lines: the command table, the parser, `--help`, the man pages and
//! the completions are generated from the same rows, and the flag tables and their man text are
//! most of it; split, a flag would drift from its documentation.

use crate::duration::{parse_duration, FORMS};
use crate::error::{Error, Result, EXIT_TABLE};
use crate::store::StorageType;
use lexopt::prelude::*;

pub mod docs;
use std::ffi::OsString;
use std::fmt::Write as _;

/// One documented flag.
#[derive(Debug, Clone, Copy)]
pub struct Flag {
    /// Long name without dashes.
    pub long: &'static str,
    /// Short letter, if any.
    pub short: Option<char>,
    /// Name of the value it takes, if any (`DURATION`, `NAME`).
    pub value: Option<&'static str>,
    /// One-line help.
    pub help: &'static str,
}

const fn flag(
    long: &'static str,
    short: Option<char>,
    value: Option<&'static str>,
    help: &'static str,
) -> Flag {
    Flag {
        long,
        short,
        value,
        help,
    }
}

/// Flags of `prodigy run` (run.md §1).
pub const RUN_FLAGS: &[Flag] = &[
    flag(
        "yes",
        Some('y'),
        None,
        "merge the session branch into the original branch without asking",
    ),
    flag(
        "path",
        None,
        Some("REPO"),
        "the git repository to run in (default: the current directory's)",
    ),
    flag(
        "arg",
        None,
        Some("NAME=VALUE"),
        "set ${NAME} for the workflow's steps (repeatable)",
    ),
    flag(
        "max-parallel",
        None,
        Some("N"),
        "run at most N MapReduce agents at once (overrides map.max_parallel)",
    ),
    flag(
        "profile",
        None,
        Some("NAME"),
        "use the workflow's profiles.NAME environment",
    ),
    flag(
        "dry-run",
        None,
        None,
        "print the plan (steps, work items); run and write nothing",
    ),
    flag("quiet", Some('q'), None, "print only errors"),
    flag(
        "json",
        None,
        None,
        "print one JSON summary at the end (session, job, counts, exit reason)",
    ),
    flag(
        "param",
        None,
        Some("NAME=VALUE"),
        "0.4.4's name for --arg NAME=VALUE (repeatable)",
    ),
    flag(
        "params",
        None,
        Some("NAME=VALUE"),
        "0.4.4's name for --arg NAME=VALUE (repeatable)",
    ),
    flag(
        "param-file",
        None,
        Some("FILE"),
        "--arg for each entry of a JSON or YAML map (--arg wins)",
    ),
    flag(
        "resume",
        None,
        Some("ID"),
        "0.4.4's form of prodigy resume ID",
    ),
    flag(
        "args",
        None,
        Some("VALUE"),
        "0.4.4 flag, refused: use --arg ARG=VALUE, one run per value",
    ),
    flag(
        "map",
        None,
        Some("PATTERN"),
        "0.4.4 flag, refused: run once per file from a shell loop",
    ),
    flag(
        "fail-fast",
        None,
        None,
        "0.4.4 flag (ignored there), refused: use error_policy",
    ),
    flag(
        "max-iterations",
        Some('n'),
        Some("N"),
        "0.4.4 flag: only 1 is accepted; run again to repeat",
    ),
    flag("help", Some('h'), None, "print this help"),
];

/// Flags of `prodigy run` that Prodigy 0.4.4 has and this version refuses, each with a message
/// naming what to use instead (run.md §2).
pub const REFUSED_RUN_FLAGS: &[&str] = &["args", "map", "fail-fast", "max-iterations"];

/// Flags of `prodigy validate` (run.md §2 "Checking without running").
pub const VALIDATE_FLAGS: &[Flag] = &[
    flag(
        "strict",
        None,
        None,
        "exit 1 when there are warnings (unknown or ignored keys)",
    ),
    flag(
        "json",
        None,
        None,
        "print one JSON document with each file's problems",
    ),
    flag(
        "schema",
        None,
        None,
        "print the JSON Schema of workflow files and exit",
    ),
    flag("help", Some('h'), None, "print this help"),
];

/// `prodigy validate` arguments.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ValidateArgs {
    /// The workflow files.
    pub files: Vec<std::path::PathBuf>,
    /// `--strict`.
    pub strict: bool,
    /// `--json`.
    pub json: bool,
    /// `--schema`.
    pub schema: bool,
}

/// Flags of `prodigy resume` (run.md §6).
pub const RESUME_FLAGS: &[Flag] = &[
    flag(
        "yes",
        Some('y'),
        None,
        "merge the session branch at the end without asking",
    ),
    flag(
        "force",
        None,
        None,
        "resume even though the workflow file changed since the run started",
    ),
    flag("quiet", Some('q'), None, "print only errors"),
    flag("json", None, None, "print one JSON summary at the end"),
    flag("help", Some('h'), None, "print this help"),
];

/// Flags of `prodigy clean`.
pub const CLEAN_FLAGS: &[Flag] = &[
    flag("all", None, None, "clean every storage type (the default)"),
    flag(
        "worktrees",
        None,
        None,
        "clean git worktrees (retention 7d)",
    ),
    flag(
        "sessions",
        None,
        None,
        "clean session records (retention 30d)",
    ),
    flag("logs", None, None, "clean execution logs (retention 7d)"),
    flag(
        "state",
        None,
        None,
        "clean job state and checkpoints (retention 30d)",
    ),
    flag("events", None, None, "clean event logs (retention 14d)"),
    flag(
        "dlq",
        None,
        None,
        "clean dead letter queues (retention 30d)",
    ),
    flag(
        "older-than",
        None,
        Some("DURATION"),
        "only items idle this long, every type (0s: any age)",
    ),
    flag(
        "retention",
        None,
        Some("TYPE=DURATION"),
        "one type's retention, e.g. sessions=60d; repeatable",
    ),
    flag(
        "max-size",
        None,
        Some("SIZE"),
        "quota: also remove unprotected items, oldest first",
    ),
    flag(
        "compress-after",
        None,
        Some("DURATION"),
        "gzip event and log files idle this long (NAME.gz)",
    ),
    flag(
        "archive",
        None,
        Some("DIR"),
        "archive what goes (not worktrees) in DIR first",
    ),
    flag(
        "repo",
        None,
        Some("NAME"),
        "clean this repository's storage",
    ),
    flag(
        "all-repos",
        None,
        None,
        "clean the storage of every repository",
    ),
    flag(
        "dry-run",
        Some('n'),
        None,
        "list what would be removed; change nothing",
    ),
    flag(
        "force",
        Some('f'),
        None,
        "do not ask; required to delete without a terminal",
    ),
    flag(
        "discard-changes",
        None,
        None,
        "also remove worktrees with uncommitted changes",
    ),
    flag(
        "json",
        None,
        None,
        "print one JSON document instead of text",
    ),
    flag("quiet", Some('q'), None, "print only errors"),
    flag("help", Some('h'), None, "print this help"),
];

/// Flags of `prodigy worktree clean`.
pub const WORKTREE_CLEAN_FLAGS: &[Flag] = &[
    flag(
        "all",
        None,
        None,
        "every worktree that is safe to remove, of any age",
    ),
    flag(
        "older-than",
        None,
        Some("DURATION"),
        "only worktrees idle this long",
    ),
    flag(
        "force",
        Some('f'),
        None,
        "remove even with uncommitted changes; do not ask",
    ),
    flag(
        "dry-run",
        Some('n'),
        None,
        "list what would be removed; change nothing",
    ),
    flag("repo", None, Some("NAME"), "this repository's worktrees"),
    flag("all-repos", None, None, "worktrees of every repository"),
    flag(
        "json",
        None,
        None,
        "print one JSON document instead of text",
    ),
    flag("quiet", Some('q'), None, "print only errors"),
    flag("help", Some('h'), None, "print this help"),
];

/// Flags of `prodigy worktree ls`.
pub const WORKTREE_LS_FLAGS: &[Flag] = &[
    flag("repo", None, Some("NAME"), "this repository's worktrees"),
    flag("all-repos", None, None, "worktrees of every repository"),
    flag(
        "json",
        None,
        None,
        "print one JSON document instead of a table",
    ),
    flag("help", Some('h'), None, "print this help"),
];

/// Flags of `prodigy worktree clean-orphaned`.
pub const WORKTREE_ORPHAN_FLAGS: &[Flag] = &[
    flag(
        "dry-run",
        Some('n'),
        None,
        "list what would be removed; change nothing",
    ),
    flag(
        "force",
        Some('f'),
        None,
        "handle every registry; do not ask",
    ),
    flag("repo", None, Some("NAME"), "this repository's registries"),
    flag("all-repos", None, None, "registries of every repository"),
    flag(
        "json",
        None,
        None,
        "print one JSON document instead of text",
    ),
    flag("quiet", Some('q'), None, "print only errors"),
    flag("help", Some('h'), None, "print this help"),
];

/// Parsed `prodigy worktree clean-orphaned`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OrphanArgs {
    /// The job whose registry to handle; None = the only one, or list them.
    pub job: Option<String>,
    /// `-n/--dry-run`.
    pub dry_run: bool,
    /// `-f/--force`.
    pub force: bool,
    /// Repository scope.
    pub scope: ScopeArg,
    /// `--json`.
    pub json: bool,
    /// `-q/--quiet`.
    pub quiet: bool,
}

/// Parsed `prodigy worktree ls`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LsArgs {
    /// Repository scope.
    pub scope: ScopeArg,
    /// `--json`.
    pub json: bool,
}

/// Arguments of the inspection commands (`stats`, `sessions`, `events`, `dlq`, `checkpoints`):
/// every flag any of them takes; each subcommand's table says which it accepts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Args {
    /// Repository scope.
    pub scope: ScopeArg,
    /// `--json`.
    pub json: bool,
    /// `-q/--quiet`.
    pub quiet: bool,
    /// `-n/--dry-run`.
    pub dry_run: bool,
    /// `-f/--force`.
    pub force: bool,
    /// Positional arguments (ids), validated against the id grammar.
    pub ids: Vec<String>,
    /// `--status STATUS` (sessions ls).
    pub status: Option<String>,
    /// `--class CLASS` (sessions ls).
    pub class: Option<String>,
    /// `--type TYPE` (events).
    pub event_type: Option<String>,
    /// `--since DURATION` in seconds (events show).
    pub since: Option<u64>,
    /// `--limit N` (events show).
    pub limit: Option<u64>,
    /// `-y`: merge without asking (`dlq retry`).
    pub yes: bool,
    /// `--max-parallel N` (`dlq retry`).
    pub max_parallel: Option<usize>,
    /// `--reduce` (`dlq retry`).
    pub reduce: bool,
    /// `archive ls|restore FILE`: the archive (a path, not an id).
    pub file: Option<std::path::PathBuf>,
    /// `--only ID` (`archive restore`), repeatable: a session id, job id or item path.
    pub only: Vec<String>,
}

const SCOPE_FLAGS: [Flag; 2] = [
    flag("repo", None, Some("NAME"), "this repository only"),
    flag("all-repos", None, None, "every repository"),
];
const JSON: Flag = flag(
    "json",
    None,
    None,
    "print one JSON document instead of text",
);
const HELP: Flag = flag("help", Some('h'), None, "print this help");

/// One inspection subcommand: its words, positional arguments (`ARGS`), flags and help.
#[derive(Debug)]
pub struct Sub {
    /// `["sessions", "ls"]`.
    pub words: &'static [&'static str],
    /// Positional arguments as shown in the synopsis.
    pub positional: &'static str,
    /// Minimum and maximum number of positional ids.
    pub arity: (usize, usize),
    /// What it does, one line.
    pub about: &'static str,
    /// Its flags.
    pub flags: &'static [Flag],
}

impl PartialEq for Sub {
    fn eq(&self, other: &Sub) -> bool {
        self.words == other.words
    }
}

impl Eq for Sub {}

/// The cleaning commands as specs, for help, man pages and completions (their parsers are
/// `parse_clean` and `parse_worktree*`, which read the same flag tables).
pub const CORE: &[Sub] = &[
    Sub {
        words: &["run"],
        positional: "WORKFLOW",
        arity: (1, 1),
        about: "run a workflow file in a worktree (standard or MapReduce)",
        flags: RUN_FLAGS,
    },
    Sub {
        words: &["resume"],
        positional: "ID",
        arity: (1, 1),
        about: "continue an interrupted or failed run, by session id or job id",
        flags: RESUME_FLAGS,
    },
    Sub {
        words: &["validate"],
        positional: "WORKFLOW...",
        arity: (1, usize::MAX),
        about: "check workflow files: every error and warning with file:line:col",
        flags: VALIDATE_FLAGS,
    },
    Sub {
        words: &["clean"],
        positional: "[all|worktrees|sessions|logs|state|events|dlq]",
        arity: (0, 1),
        about: "remove expired storage, never live or resumable work",
        flags: CLEAN_FLAGS,
    },
    Sub {
        words: &["worktree", "ls"],
        positional: "",
        arity: (0, 0),
        about: "worktrees with owner, class, age, size, flags",
        flags: WORKTREE_LS_FLAGS,
    },
    Sub {
        words: &["worktree", "clean"],
        positional: "NAME|--all",
        arity: (0, 1),
        about: "remove worktrees (0.4.4's form of clean --worktrees)",
        flags: WORKTREE_CLEAN_FLAGS,
    },
    Sub {
        words: &["worktree", "clean-orphaned"],
        positional: "[JOB_ID]",
        arity: (0, 1),
        about: "remove worktrees whose removal failed before",
        flags: WORKTREE_ORPHAN_FLAGS,
    },
];

/// Every command: [`CORE`] then [`SUBS`].
pub fn all_specs() -> impl Iterator<Item = &'static Sub> {
    CORE.iter().chain(SUBS.iter())
}

/// An example value for a flag's value name (documentation and table tests).
pub fn example_value(value: &str) -> &'static str {
    match value {
        "DURATION" => "7d",
        "NAME" => "webapp",
        "STATUS" => "Running",
        "CLASS" => "resumable",
        "TYPE" => "agent_started",
        "N" => "5",
        "REPO" => ".",
        "NAME=VALUE" => "TARGET=src/lib.rs",
        "TYPE=DURATION" => "sessions=60d",
        "SIZE" => "20G",
        "DIR" => "/var/backups/prodigy",
        "FILE" => "prodigy-20261207T031500.tar.gz",
        _ => "x",
    }
}

/// Every inspection subcommand (issue: "See what is stored").
pub const SUBS: &[Sub] = &[
    Sub {
        words: &["stats"],
        positional: "",
        arity: (0, 0),
        about: "what is stored, what clean would reclaim, what stays",
        flags: &[SCOPE_FLAGS[0], SCOPE_FLAGS[1], JSON, HELP],
    },
    Sub {
        words: &["sessions", "ls"],
        positional: "",
        arity: (0, 0),
        about: "sessions with status, class and evidence, size",
        flags: &[
            flag(
                "status",
                None,
                Some("STATUS"),
                "only this status (Running, Failed, ...)",
            ),
            flag(
                "class",
                None,
                Some("CLASS"),
                "only this class (active, resumable, ...)",
            ),
            SCOPE_FLAGS[0],
            SCOPE_FLAGS[1],
            JSON,
            HELP,
        ],
    },
    Sub {
        words: &["sessions", "show"],
        positional: "ID",
        arity: (1, 1),
        about: "one session (by session or job id), all it owns",
        flags: &[JSON, HELP],
    },
    Sub {
        words: &["sessions", "rm"],
        positional: "ID...",
        arity: (1, usize::MAX),
        about: "delete sessions (resumable too, never active)",
        flags: &[
            flag(
                "dry-run",
                Some('n'),
                None,
                "list what would be removed; change nothing",
            ),
            flag(
                "force",
                Some('f'),
                None,
                "do not ask; required without a terminal",
            ),
            JSON,
            flag("quiet", Some('q'), None, "print only errors"),
            HELP,
        ],
    },
    Sub {
        words: &["events", "ls"],
        positional: "",
        arity: (0, 0),
        about: "jobs with event files: counts, time range",
        flags: &[SCOPE_FLAGS[0], SCOPE_FLAGS[1], JSON, HELP],
    },
    Sub {
        words: &["events", "show"],
        positional: "JOB_ID",
        arity: (1, 1),
        about: "a job's events (0.4.4 and canonical shapes)",
        flags: &[
            flag(
                "type",
                None,
                Some("TYPE"),
                "only events of this type (agent_started, ...)",
            ),
            flag(
                "since",
                None,
                Some("DURATION"),
                "only events this recent: 30m, 24h, 7d",
            ),
            flag("limit", None, Some("N"), "at most N events (the last N)"),
            JSON,
            HELP,
        ],
    },
    Sub {
        words: &["events", "follow"],
        positional: "JOB_ID",
        arity: (1, 1),
        about: "print a job's events as they are appended",
        flags: &[
            flag("type", None, Some("TYPE"), "only events of this type"),
            JSON,
            HELP,
        ],
    },
    Sub {
        words: &["dlq", "ls"],
        positional: "",
        arity: (0, 0),
        about: "jobs with failed work items",
        flags: &[SCOPE_FLAGS[0], SCOPE_FLAGS[1], JSON, HELP],
    },
    Sub {
        words: &["dlq", "show"],
        positional: "JOB_ID [ITEM_ID]",
        arity: (1, 2),
        about: "failed items: history, errors, log locations",
        flags: &[JSON, HELP],
    },
    Sub {
        words: &["dlq", "retry"],
        positional: "JOB_ID",
        arity: (1, 1),
        about: "run the failed items again as a new map pass",
        flags: &[
            flag(
                "yes",
                Some('y'),
                None,
                "merge the session branch at the end without asking",
            ),
            flag(
                "max-parallel",
                None,
                Some("N"),
                "run at most N agents at once",
            ),
            flag(
                "dry-run",
                Some('n'),
                None,
                "list the items that would run; change nothing",
            ),
            flag(
                "reduce",
                None,
                None,
                "run the reduce phase again afterwards",
            ),
            flag("quiet", Some('q'), None, "print only errors"),
            JSON,
            HELP,
        ],
    },
    Sub {
        words: &["archive", "ls"],
        positional: "FILE",
        arity: (1, 1),
        about: "the manifest of an archive clean --archive wrote",
        flags: &[JSON, HELP],
    },
    Sub {
        words: &["archive", "restore"],
        positional: "FILE",
        arity: (1, 1),
        about: "put archived items back; never overwrites",
        flags: &[
            flag(
                "only",
                None,
                Some("ID"),
                "items of this session, job or path (repeatable)",
            ),
            flag(
                "dry-run",
                Some('n'),
                None,
                "check the archive and list what would be restored",
            ),
            JSON,
            flag("quiet", Some('q'), None, "print only errors"),
            HELP,
        ],
    },
    Sub {
        words: &["checkpoints", "ls"],
        positional: "[JOB_ID]",
        arity: (0, 1),
        about: "newest checkpoint per phase, with progress",
        flags: &[SCOPE_FLAGS[0], SCOPE_FLAGS[1], JSON, HELP],
    },
    Sub {
        words: &["checkpoints", "verify"],
        positional: "",
        arity: (0, 0),
        about: "parse every checkpoint; exit 1 if one is invalid",
        flags: &[SCOPE_FLAGS[0], SCOPE_FLAGS[1], JSON, HELP],
    },
];

/// Which repositories a command covers.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum ScopeArg {
    /// Not given: the current repository inside a git repository, all repositories outside.
    #[default]
    Default,
    /// `--repo NAME`.
    Repo(String),
    /// `--all-repos`.
    AllRepos,
}

/// Parsed `prodigy clean` (and the engine's input for `prodigy worktree clean`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CleanArgs {
    /// Storage types to clean; empty means all.
    pub types: Vec<StorageType>,
    /// `--older-than` in seconds; `None` = each type's default retention.
    pub older_than: Option<u64>,
    /// `--retention TYPE=DURATION`, seconds, in the order given (a later one wins).
    pub retention: Vec<(StorageType, u64)>,
    /// `--max-size SIZE`, bytes.
    pub max_size: Option<u64>,
    /// `--compress-after DURATION`, seconds.
    pub compress_after: Option<u64>,
    /// `--archive DIR`.
    pub archive: Option<std::path::PathBuf>,
    /// Repository scope.
    pub scope: ScopeArg,
    /// `-n/--dry-run`.
    pub dry_run: bool,
    /// `-f/--force`.
    pub force: bool,
    /// `--discard-changes`.
    pub discard_changes: bool,
    /// `--json`.
    pub json: bool,
    /// `-q/--quiet`.
    pub quiet: bool,
    /// `worktree clean NAME`: only this worktree.
    pub only_name: Option<String>,
    /// `worktree clean-orphaned`: only these paths (relative to the root).
    pub only_paths: Option<std::collections::BTreeSet<String>>,
    /// `sessions rm`: only what these sessions own.
    pub only_owners: Option<std::collections::BTreeSet<String>>,
    /// `sessions rm`: resumable and unknown sessions do not protect what they own.
    pub explicit: bool,
}

/// A parsed command line.
#[derive(Debug, PartialEq, Eq)]
pub enum Command {
    /// Print this text to stdout and exit 0.
    Help(String),
    /// Print the version and exit 0.
    Version,
    /// `prodigy run …`.
    Run(crate::run::Options),
    /// `prodigy resume …`.
    Resume(crate::run::resume::ResumeOptions),
    /// `prodigy validate …`.
    Validate(ValidateArgs),
    /// `prodigy clean …`.
    Clean(CleanArgs),
    /// `prodigy worktree clean …` (0.4.4-compatible wording).
    WorktreeClean(CleanArgs),
    /// `prodigy worktree ls …`.
    WorktreeLs(LsArgs),
    /// `prodigy worktree clean-orphaned …`.
    WorktreeCleanOrphaned(OrphanArgs),
    /// An inspection subcommand from [`SUBS`] and its arguments.
    Inspect(&'static Sub, Args),
}

/// Parse `argv` (including the program name).
pub fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Command> {
    let mut p = lexopt::Parser::from_iter(args);
    let Some(arg) = p.next().map_err(usage)? else {
        return Err(Error::usage(
            "no command given; try `prodigy clean --dry-run` or `prodigy --help`",
        ));
    };
    match arg {
        Short('h') | Long("help") => Ok(Command::Help(main_help())),
        Short('V') | Long("version") => Ok(Command::Version),
        Value(v) => {
            let v = v.string().map_err(usage)?;
            match v.as_str() {
                "run" => parse_run(&mut p),
                "resume" | "resume-job" => parse_resume(&mut p),
                "validate" => parse_validate(&mut p),
                "clean" => parse_clean(&mut p),
                "worktree" => parse_worktree(&mut p),
                "stats" | "sessions" | "events" | "dlq" | "checkpoints" | "archive" => {
                    parse_inspect(&mut p, &v)
                }
                "help" => Ok(Command::Help(match p.next().map_err(usage)? {
                    Some(Value(c)) if c == "clean" => clean_help(),
                    Some(Value(c)) if c == "run" => sub_help(&CORE[0]),
                    Some(Value(c)) if c == "resume" => sub_help(&CORE[1]),
                    Some(Value(c)) if c == "validate" => sub_help(&CORE[2]),
                    Some(Value(c)) if c == "worktree" => worktree_help(),
                    Some(Value(c)) if SUBS.iter().any(|s| s.words[0] == c) => {
                        sub_group_help(&c.to_string_lossy())
                    }
                    // `prodigy help --completions SHELL`: a completion script.
                    Some(Long("completions")) => {
                        let sh = p.value().map_err(usage)?.string().map_err(usage)?;
                        docs::completions(&sh).ok_or_else(|| {
                            Error::usage(format!(
                                "no completions for `{sh}`; shells: {}",
                                docs::SHELLS.join(", ")
                            ))
                        })?
                    }
                    // `prodigy help --man PAGE`: the roff page, for scripts/gen-man.sh.
                    Some(Long("man")) => {
                        let page = p.value().map_err(usage)?.string().map_err(usage)?;
                        man_page(&page).ok_or_else(|| {
                            Error::usage(format!(
                                "no man page `{page}`; pages: {}",
                                MAN_PAGES
                                    .iter()
                                    .chain(MAN_PAGES_5)
                                    .copied()
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            ))
                        })?
                    }
                    _ => main_help(),
                })),
                other => Err(Error::usage(format!(
                    "unknown command `{other}`; run `prodigy --help` for the commands"
                ))),
            }
        }
        _ => Err(usage(arg.unexpected())),
    }
}

fn usage(e: lexopt::Error) -> Error {
    Error::usage(format!("{e}; see `prodigy --help`"))
}

fn lookup(table: &'static [Flag], arg: &lexopt::Arg<'_>) -> Option<&'static Flag> {
    table.iter().find(|f| match arg {
        Long(l) => f.long == *l,
        Short(c) => f.short == Some(*c),
        Value(_) => false,
    })
}

fn parse_run(p: &mut lexopt::Parser) -> Result<Command> {
    let mut o = crate::run::Options::default();
    let mut workflow: Option<std::path::PathBuf> = None;
    let mut resume: Option<String> = None;
    while let Some(arg) = p.next().map_err(usage)? {
        if let Value(v) = &arg {
            if workflow.is_some() {
                return Err(Error::usage(
                    "usage: prodigy run WORKFLOW [OPTIONS]: one workflow file; see `prodigy run --help`",
                ));
            }
            workflow = Some(v.into());
            continue;
        }
        let Some(f) = lookup(RUN_FLAGS, &arg) else {
            return Err(usage(arg.unexpected()));
        };
        match f.long {
            "help" => return Ok(Command::Help(sub_help(&CORE[0]))),
            "yes" => o.yes = true,
            "quiet" => o.quiet = true,
            "json" => o.json = true,
            "path" => o.path = Some(p.value().map_err(usage)?.into()),
            "arg" => {
                let v = p.value().map_err(usage)?.string().map_err(usage)?;
                o.args.push(arg_pair(&v, "arg")?);
            }
            "profile" => o.profile = Some(p.value().map_err(usage)?.string().map_err(usage)?),
            "dry-run" => o.dry_run = true,
            "param" | "params" => {
                let v = p.value().map_err(usage)?.string().map_err(usage)?;
                o.args.push(arg_pair(&v, f.long)?);
            }
            "param-file" => o.param_files.push(p.value().map_err(usage)?.into()),
            "resume" => {
                let v = p.value().map_err(usage)?.string().map_err(usage)?;
                if !crate::store::names::is_valid_id_bytes(v.as_bytes()) {
                    return Err(Error::usage(format!(
                        "--resume `{}`: not a session id or job id",
                        crate::store::names::printable_str(&v)
                    )));
                }
                resume = Some(v);
            }
            "args" => {
                return Err(Error::usage(
                    "--args (0.4.4: one pass per value as ${ARG}) is not supported; use \
                     --arg ARG=VALUE and run once per value",
                ))
            }
            "map" => {
                return Err(Error::usage(
                    "--map (0.4.4: one run per matching file) is not supported; run once per \
                     file from the shell: for f in PATTERN; do prodigy run WORKFLOW --arg FILE=\"$f\"; done",
                ))
            }
            "fail-fast" => {
                return Err(Error::usage(
                    "--fail-fast is not supported (0.4.4 ignores it); a failed standard step \
                     always stops the run, and in MapReduce say `error_policy: \
                     {on_item_failure: stop}` in the workflow",
                ))
            }
            "max-iterations" => {
                let v = p.value().map_err(usage)?.string().map_err(usage)?;
                if v != "1" {
                    return Err(Error::usage(format!(
                        "--max-iterations `{}` is not supported: a workflow runs once; run it \
                         again to repeat it",
                        crate::store::names::printable_str(&v)
                    )));
                }
            }
            "max-parallel" => {
                let v = p.value().map_err(usage)?.string().map_err(usage)?;
                o.max_parallel =
                    Some(v.parse().ok().filter(|n: &usize| *n > 0).ok_or_else(|| {
                        Error::usage(format!(
                            "--max-parallel: `{v}` is not a positive whole number"
                        ))
                    })?);
            }
            _ => unreachable!("flag table and match agree"),
        }
    }
    o.workflow = workflow.ok_or_else(|| {
        Error::usage("usage: prodigy run WORKFLOW [OPTIONS]; see `prodigy run --help`")
    })?;
    if let Some(id) = resume {
        // 0.4.4's `prodigy run WORKFLOW --resume ID`: the job's own workflow is resumed.
        if o.dry_run || o.profile.is_some() {
            return Err(Error::usage(
                "--resume cannot be combined with --dry-run or --profile; use `prodigy resume ID`",
            ));
        }
        return Ok(Command::Resume(crate::run::resume::ResumeOptions {
            id,
            yes: o.yes,
            quiet: o.quiet,
            json: o.json,
            ..Default::default()
        }));
    }
    Ok(Command::Run(o))
}

/// `NAME=VALUE` of `--arg` (and its 0.4.4 names).
fn arg_pair(v: &str, flag: &str) -> Result<(String, String)> {
    let (k, val) = v
        .split_once('=')
        .ok_or_else(|| Error::usage(format!("--{flag} `{v}`: expected NAME=VALUE")))?;
    let ok = k
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.');
    if !ok {
        return Err(Error::usage(format!(
            "--{flag} `{v}`: NAME must be letters, digits, `_` or `.`, not starting with a digit"
        )));
    }
    Ok((k.to_string(), val.to_string()))
}

fn parse_validate(p: &mut lexopt::Parser) -> Result<Command> {
    let mut a = ValidateArgs::default();
    while let Some(arg) = p.next().map_err(usage)? {
        if let Value(v) = &arg {
            a.files.push(v.into());
            continue;
        }
        let Some(f) = lookup(VALIDATE_FLAGS, &arg) else {
            return Err(usage(arg.unexpected()));
        };
        match f.long {
            "help" => return Ok(Command::Help(sub_help(&CORE[2]))),
            "strict" => a.strict = true,
            "json" => a.json = true,
            "schema" => a.schema = true,
            _ => unreachable!("flag table and match agree"),
        }
    }
    if a.files.is_empty() && !a.schema {
        return Err(Error::usage(
            "usage: prodigy validate WORKFLOW... [--strict] [--json]; see `prodigy validate --help`",
        ));
    }
    Ok(Command::Validate(a))
}

fn parse_resume(p: &mut lexopt::Parser) -> Result<Command> {
    let mut o = crate::run::resume::ResumeOptions::default();
    let mut id: Option<String> = None;
    while let Some(arg) = p.next().map_err(usage)? {
        if let Value(v) = &arg {
            let v = v.to_string_lossy().into_owned();
            if id.is_some() || !crate::store::names::is_valid_id_bytes(v.as_bytes()) {
                return Err(Error::usage(format!(
                    "usage: prodigy resume ID: one session id or job id (not `{}`); see `prodigy resume --help`",
                    crate::store::names::printable(std::ffi::OsStr::new(&v))
                )));
            }
            id = Some(v);
            continue;
        }
        let Some(f) = lookup(RESUME_FLAGS, &arg) else {
            return Err(usage(arg.unexpected()));
        };
        match f.long {
            "help" => return Ok(Command::Help(sub_help(&CORE[1]))),
            "yes" => o.yes = true,
            "force" => o.force = true,
            "quiet" => o.quiet = true,
            "json" => o.json = true,
            _ => unreachable!("flag table and match agree"),
        }
    }
    o.id =
        id.ok_or_else(|| Error::usage("usage: prodigy resume ID; see `prodigy resume --help`"))?;
    Ok(Command::Resume(o))
}

fn parse_clean(p: &mut lexopt::Parser) -> Result<Command> {
    let mut a = CleanArgs::default();
    let mut positional_type = false;
    while let Some(arg) = p.next().map_err(usage)? {
        if let Value(v) = &arg {
            // 0.4.4 form: `prodigy clean {all|worktrees|…}`.
            let word = v.to_string_lossy();
            let t = StorageType::from_word(&word)
                .or_else(|| (word == "all").then_some(StorageType::Worktrees));
            if positional_type || t.is_none() {
                return Err(Error::usage(format!(
                    "unexpected argument `{word}`; expected one of all, worktrees, sessions, logs, state, events, dlq"
                )));
            }
            positional_type = true;
            if word != "all" {
                a.types.push(t.expect("checked"));
            }
            continue;
        }
        let Some(f) = lookup(CLEAN_FLAGS, &arg) else {
            return Err(usage(arg.unexpected()));
        };
        match f.long {
            "help" => return Ok(Command::Help(clean_help())),
            "all" => {}
            "older-than" => a.older_than = Some(value_duration(p)?),
            "retention" => {
                let v = p.value().map_err(usage)?;
                let v = v.to_string_lossy();
                a.retention.push(
                    crate::clean::retention::parse_flag(&v)
                        .map_err(|e| Error::usage(format!("--retention: {e}")))?,
                );
            }
            "compress-after" => {
                let v = p.value().map_err(usage)?;
                a.compress_after = Some(
                    parse_duration(&v.to_string_lossy())
                        .map_err(|e| Error::usage(format!("--compress-after: {e}")))?,
                );
            }
            "archive" => {
                let v = p.value().map_err(usage)?;
                if v.is_empty() {
                    return Err(Error::usage("--archive: give a directory"));
                }
                a.archive = Some(std::path::PathBuf::from(v));
            }
            "max-size" => {
                let v = p.value().map_err(usage)?;
                a.max_size = Some(
                    crate::clean::retention::parse_size(&v.to_string_lossy())
                        .map_err(|e| Error::usage(format!("--max-size: {e}")))?,
                );
            }
            "repo" => a.scope = merge_scope(&a.scope, ScopeArg::Repo(value_name(p)?))?,
            "all-repos" => a.scope = merge_scope(&a.scope, ScopeArg::AllRepos)?,
            "dry-run" => a.dry_run = true,
            "force" => a.force = true,
            "discard-changes" => a.discard_changes = true,
            "json" => a.json = true,
            "quiet" => a.quiet = true,
            word => a
                .types
                .push(StorageType::from_word(word).expect("type flag")),
        }
    }
    crate::sort::sort(&mut a.types);
    a.types.dedup();
    Ok(Command::Clean(a))
}

fn parse_worktree(p: &mut lexopt::Parser) -> Result<Command> {
    match p.next().map_err(usage)? {
        Some(Value(v)) if v == "clean" => {}
        Some(Value(v)) if v == "ls" => return parse_worktree_ls(p),
        Some(Value(v)) if v == "clean-orphaned" => return parse_worktree_orphaned(p),
        Some(Short('h') | Long("help")) | None => return Ok(Command::Help(worktree_help())),
        Some(other) => {
            return Err(Error::usage(format!(
                "{}; `prodigy worktree` takes the subcommand `clean`",
                other.unexpected()
            )))
        }
    }
    let mut a = CleanArgs {
        types: vec![StorageType::Worktrees],
        ..CleanArgs::default()
    };
    let mut all = false;
    while let Some(arg) = p.next().map_err(usage)? {
        if let Value(v) = &arg {
            let name = v.to_string_lossy().into_owned();
            if a.only_name.is_some() {
                return Err(Error::usage(format!(
                    "unexpected argument `{name}`: give one worktree NAME"
                )));
            }
            if !crate::store::names::is_valid_id_bytes(name.as_bytes()) {
                return Err(Error::usage(format!(
                    "invalid worktree name `{name}`: names match [A-Za-z0-9][A-Za-z0-9._-]*"
                )));
            }
            a.only_name = Some(name);
            continue;
        }
        let Some(f) = lookup(WORKTREE_CLEAN_FLAGS, &arg) else {
            return Err(usage(arg.unexpected()));
        };
        match f.long {
            "help" => return Ok(Command::Help(worktree_help())),
            "all" => all = true,
            "older-than" => a.older_than = Some(value_duration(p)?),
            "repo" => a.scope = merge_scope(&a.scope, ScopeArg::Repo(value_name(p)?))?,
            "all-repos" => a.scope = merge_scope(&a.scope, ScopeArg::AllRepos)?,
            "dry-run" => a.dry_run = true,
            // 0.4.4 meaning: remove even with uncommitted changes, and do not ask.
            "force" => {
                a.force = true;
                a.discard_changes = true;
            }
            "json" => a.json = true,
            "quiet" => a.quiet = true,
            _ => unreachable!("flag table and match agree"),
        }
    }
    match (&a.only_name, all) {
        (None, false) => {
            return Err(Error::usage(
                "say which worktrees: `prodigy worktree clean NAME`, or `--all` for every worktree that is safe to remove",
            ))
        }
        (Some(_), true) => return Err(Error::usage("give either a worktree NAME or --all, not both")),
        _ => {}
    }
    // `--all` and NAME mean "of any age" unless --older-than says otherwise (0.4.4 behaviour).
    a.older_than.get_or_insert(0);
    Ok(Command::WorktreeClean(a))
}

fn parse_inspect(p: &mut lexopt::Parser, first: &str) -> Result<Command> {
    let group: Vec<&'static Sub> = SUBS.iter().filter(|s| s.words[0] == first).collect();
    let sub = if group.len() == 1 && group[0].words.len() == 1 {
        group[0]
    } else {
        let verbs: Vec<&str> = group.iter().map(|s| s.words[1]).collect();
        match p.next().map_err(usage)? {
            Some(Value(v)) => {
                let v = v.string().map_err(usage)?;
                group
                    .iter()
                    .copied()
                    .find(|s| s.words[1] == v)
                    .ok_or_else(|| {
                        Error::usage(format!(
                            "unknown command `{first} {v}`; `prodigy {first}` takes {}",
                            verbs.join(", ")
                        ))
                    })?
            }
            Some(Short('h') | Long("help")) | None => {
                return Ok(Command::Help(sub_group_help(first)))
            }
            Some(other) => return Err(usage(other.unexpected())),
        }
    };
    let mut a = Args::default();
    while let Some(arg) = p.next().map_err(usage)? {
        if let (Value(v), "archive") = (&arg, first) {
            if a.file.is_some() {
                return Err(Error::usage(format!(
                    "usage: prodigy {} FILE; give one archive",
                    sub.words.join(" ")
                )));
            }
            a.file = Some(std::path::PathBuf::from(v));
            continue;
        }
        if let Value(v) = &arg {
            let id = v.to_string_lossy().into_owned();
            if !crate::store::names::is_valid_id_bytes(id.as_bytes()) {
                return Err(Error::usage(format!(
                    "invalid id `{}`: ids match [A-Za-z0-9][A-Za-z0-9._-]* (at most 128 characters)",
                    crate::store::names::printable(std::ffi::OsStr::new(&id))
                )));
            }
            a.ids.push(id);
            continue;
        }
        let Some(f) = lookup(sub.flags, &arg) else {
            return Err(usage(arg.unexpected()));
        };
        match f.long {
            "help" => return Ok(Command::Help(sub_help(sub))),
            "repo" => a.scope = merge_scope(&a.scope, ScopeArg::Repo(value_name(p)?))?,
            "all-repos" => a.scope = merge_scope(&a.scope, ScopeArg::AllRepos)?,
            "json" => a.json = true,
            "quiet" => a.quiet = true,
            "dry-run" => a.dry_run = true,
            "force" => a.force = true,
            "status" => a.status = Some(p.value().map_err(usage)?.string().map_err(usage)?),
            "class" => a.class = Some(p.value().map_err(usage)?.string().map_err(usage)?),
            "type" => a.event_type = Some(p.value().map_err(usage)?.string().map_err(usage)?),
            "since" => {
                let v = p.value().map_err(usage)?.string().map_err(usage)?;
                a.since =
                    Some(parse_duration(&v).map_err(|e| Error::usage(format!("--since: {e}")))?);
            }
            "yes" => a.yes = true,
            "reduce" => a.reduce = true,
            "only" => a
                .only
                .push(p.value().map_err(usage)?.string().map_err(usage)?),
            "max-parallel" => {
                let v = p.value().map_err(usage)?.string().map_err(usage)?;
                a.max_parallel =
                    Some(v.parse().ok().filter(|n: &usize| *n > 0).ok_or_else(|| {
                        Error::usage(format!(
                            "--max-parallel: `{v}` is not a positive whole number"
                        ))
                    })?);
            }
            "limit" => {
                let v = p.value().map_err(usage)?.string().map_err(usage)?;
                a.limit =
                    Some(v.parse().map_err(|_| {
                        Error::usage(format!("--limit: `{v}` is not a whole number"))
                    })?);
            }
            _ => unreachable!("flag table and match agree"),
        }
    }
    let (lo, hi) = sub.arity;
    let given = a.ids.len() + usize::from(a.file.is_some());
    if given < lo || given > hi {
        return Err(Error::usage(format!(
            "usage: prodigy {} {}; see `prodigy {} --help`",
            sub.words.join(" "),
            sub.positional,
            sub.words.join(" ")
        )));
    }
    Ok(Command::Inspect(sub, a))
}

/// `prodigy SUB --help` for one inspection subcommand.
pub fn sub_help(sub: &Sub) -> String {
    let mut s = format!(
        "prodigy {} - {}\n\nUsage: prodigy {}",
        sub.words.join(" "),
        sub.about,
        sub.words.join(" ")
    );
    if !sub.positional.is_empty() {
        write!(s, " {}", sub.positional).unwrap();
    }
    s.push_str(" [OPTIONS]\n\nOptions:\n");
    flag_rows(&mut s, sub.flags);
    exit_rows(&mut s);
    s
}

/// `prodigy sessions --help` and the like: the group's subcommands.
pub fn sub_group_help(first: &str) -> String {
    let mut s = format!("prodigy {first}\n\nCommands:\n");
    for sub in SUBS.iter().filter(|x| x.words[0] == first) {
        let left = format!("{} {}", sub.words.join(" "), sub.positional);
        writeln!(s, "  {left:<30}{}", sub.about).unwrap();
    }
    writeln!(s, "\nRun `prodigy {first} COMMAND --help` for its options.").unwrap();
    s
}

fn parse_worktree_orphaned(p: &mut lexopt::Parser) -> Result<Command> {
    let mut a = OrphanArgs::default();
    while let Some(arg) = p.next().map_err(usage)? {
        if let Value(v) = &arg {
            let job = v.to_string_lossy().into_owned();
            if a.job.is_some() || !crate::store::names::is_valid_id_bytes(job.as_bytes()) {
                return Err(Error::usage(format!(
                    "unexpected argument `{}`: give one JOB_ID ([A-Za-z0-9][A-Za-z0-9._-]*)",
                    crate::store::names::printable(std::ffi::OsStr::new(&job))
                )));
            }
            a.job = Some(job);
            continue;
        }
        let Some(f) = lookup(WORKTREE_ORPHAN_FLAGS, &arg) else {
            return Err(usage(arg.unexpected()));
        };
        match f.long {
            "help" => return Ok(Command::Help(worktree_help())),
            "dry-run" => a.dry_run = true,
            "force" => a.force = true,
            "repo" => a.scope = merge_scope(&a.scope, ScopeArg::Repo(value_name(p)?))?,
            "all-repos" => a.scope = merge_scope(&a.scope, ScopeArg::AllRepos)?,
            "json" => a.json = true,
            "quiet" => a.quiet = true,
            _ => unreachable!("flag table and match agree"),
        }
    }
    Ok(Command::WorktreeCleanOrphaned(a))
}

fn parse_worktree_ls(p: &mut lexopt::Parser) -> Result<Command> {
    let mut a = LsArgs::default();
    while let Some(arg) = p.next().map_err(usage)? {
        let Some(f) = lookup(WORKTREE_LS_FLAGS, &arg) else {
            return Err(usage(arg.unexpected()));
        };
        match f.long {
            "help" => return Ok(Command::Help(worktree_help())),
            "repo" => a.scope = merge_scope(&a.scope, ScopeArg::Repo(value_name(p)?))?,
            "all-repos" => a.scope = merge_scope(&a.scope, ScopeArg::AllRepos)?,
            "json" => a.json = true,
            _ => unreachable!("flag table and match agree"),
        }
    }
    Ok(Command::WorktreeLs(a))
}

fn merge_scope(old: &ScopeArg, new: ScopeArg) -> Result<ScopeArg> {
    match (old, &new) {
        (ScopeArg::Default, _) => Ok(new),
        (a, b) if a == b => Ok(new),
        _ => Err(Error::usage(
            "give either --repo NAME or --all-repos, not both",
        )),
    }
}

fn value_duration(p: &mut lexopt::Parser) -> Result<u64> {
    let v = p.value().map_err(usage)?;
    let s = v.to_string_lossy();
    parse_duration(&s).map_err(|e| Error::usage(format!("--older-than: {e}")))
}

fn value_name(p: &mut lexopt::Parser) -> Result<String> {
    let v = p.value().map_err(usage)?;
    let s = v.to_string_lossy().into_owned();
    if crate::store::names::is_valid_id_bytes(s.as_bytes()) {
        Ok(s)
    } else {
        Err(Error::usage(format!(
            "--repo: invalid repository name `{}`: names match [A-Za-z0-9][A-Za-z0-9._-]* (at most 128 characters)",
            crate::store::names::printable(std::ffi::OsStr::new(&s))
        )))
    }
}

fn flag_rows(out: &mut String, table: &[Flag]) {
    for f in table {
        let mut left = String::from("  ");
        match f.short {
            Some(c) => write!(left, "-{c}, ").unwrap(),
            None => left.push_str("    "),
        }
        write!(left, "--{}", f.long).unwrap();
        if let Some(v) = f.value {
            write!(left, " {v}").unwrap();
        }
        if left.len() >= 28 {
            // Too long for the column: the help goes on the next line, aligned.
            writeln!(out, "{left}\n{:28}{}", "", f.help).unwrap();
        } else {
            writeln!(out, "{left:<28}{}", f.help).unwrap();
        }
    }
}

fn exit_rows(out: &mut String) {
    out.push_str("\nExit status:\n");
    for (code, meaning) in EXIT_TABLE {
        writeln!(out, "  {code}  {meaning}").unwrap();
    }
}

/// `prodigy --help`.
pub fn main_help() -> String {
    let mut s = String::from(
        "prodigy - keep Prodigy's global storage ($PRODIGY_HOME) tidy and safe\n\n\
         Usage: prodigy <COMMAND> [OPTIONS]\n\n\
         Commands:\n\
         \x20 run WORKFLOW       run a workflow file in a worktree (standard or MapReduce)\n\
         \x20 resume ID          continue an interrupted or failed run (session or job id)\n\
         \x20 validate WORKFLOW...   check workflow files (every error and warning)\n\
         \x20 clean              remove expired storage, never live or resumable work\n\
         \x20 worktree ls|clean|clean-orphaned   list and remove worktrees\n\
         \x20 stats              what is stored, what clean would reclaim, what is protected\n\
         \x20 sessions ls|show|rm   sessions, their class and what they own\n\
         \x20 events ls|show|follow   event logs of jobs\n\
         \x20 dlq ls|show|retry  dead letter queues; run failed items again\n\
         \x20 checkpoints ls|verify   MapReduce and workflow checkpoints\n\
         \x20 archive ls|restore FILE   what clean --archive wrote; put it back\n\
         \x20 help [COMMAND]     print help for a command\n\n\
         Options:\n\
         \x20 -h, --help       print help\n\
         \x20 -V, --version    print version\n\n\
         Environment:\n\
         \x20 PRODIGY_HOME     storage root (absolute path); default $HOME/.prodigy\n",
    );
    exit_rows(&mut s);
    s
}

/// `prodigy clean --help`.
pub fn clean_help() -> String {
    let mut s = String::from(
        "prodigy clean - remove expired Prodigy storage, keeping live and resumable work\n\n\
         Usage: prodigy clean [--all] [--worktrees] [--sessions] [--logs] [--state]\n\
         \x20                    [--events] [--dlq] [OPTIONS]\n\
         \x20      prodigy clean {all|worktrees|sessions|logs|state|events|dlq} [OPTIONS]\n\n\
         Options:\n",
    );
    flag_rows(&mut s, CLEAN_FLAGS);
    s.push_str(
        "\nDURATION is a whole number and a unit: 90s, 30m, 24h, 7d, 2w; 0s = no limit.\n\n\
         Scope: inside a git repository, that repository; elsewhere (cron), all.\n\n\
         Never removed, whatever the age: active sessions (owner alive, a live resume\n\
         lock, a process in their worktree, or activity in the last hour), resumable\n\
         ones (a checkpoint to resume from; failed sessions count), unknown ones\n\
         (unreadable record), and all they own; git-locked worktrees; worktrees with\n\
         uncommitted or untracked changes (unless --discard-changes); branches with\n\
         commits on no other branch. A resume lock of another host is live for 24h.\n\
         Every removal is logged in $PRODIGY_HOME/clean-audit.jsonl.\n\n\
         Without a terminal, add --force to delete or --dry-run to look.\n\
         From cron: prodigy clean --force --quiet\n",
    );
    exit_rows(&mut s);
    s
}

/// `prodigy worktree --help`.
pub fn worktree_help() -> String {
    let mut s = String::from(
        "prodigy worktree - list and remove Prodigy worktrees\n\n\
         Usage: prodigy worktree ls [--repo NAME|--all-repos] [--json]\n\
         \x20      prodigy worktree clean NAME [OPTIONS]\n\
         \x20      prodigy worktree clean --all [OPTIONS]\n\
         \x20      prodigy worktree clean-orphaned [JOB_ID] [OPTIONS]\n\n\
         ls lists every worktree under the root with its repository, branch, owning\n\
         session and class, age, size and flags: uncommitted, untracked, unmerged\n\
         (commits on no other branch), locked, prunable (directory gone), unregistered\n\
         (git does not know it), in-use, home (under $HOME/.prodigy, not PRODIGY_HOME).\n\n\
         Options of ls:\n",
    );
    flag_rows(&mut s, WORKTREE_LS_FLAGS);
    s.push_str("\nOptions of clean:\n");
    flag_rows(&mut s, WORKTREE_CLEAN_FLAGS);
    s.push_str(
        "\nclean-orphaned removes the worktrees recorded in orphaned_worktrees/{repo}/\n\
         {job}.json (where a failed removal is recorded), under the same protections,\n\
         then drops the entries that are gone. Without JOB_ID and with several\n\
         registries it lists them. Options of clean-orphaned:\n",
    );
    flag_rows(&mut s, WORKTREE_ORPHAN_FLAGS);
    s.push_str(
        "\nworktree clean -f removes worktrees even with uncommitted changes, but never\n\
         a worktree of an active, resumable or unknown session, never a git-locked\n\
         worktree, and never a branch with commits that are not on another branch.\n",
    );
    exit_rows(&mut s);
    s
}

/// The man pages `man/` holds, generated by [`man_page`].
pub const MAN_PAGES: &[&str] = &[
    "prodigy",
    "prodigy-run",
    "prodigy-resume",
    "prodigy-validate",
    "prodigy-clean",
    "prodigy-worktree",
    "prodigy-stats",
    "prodigy-sessions",
    "prodigy-events",
    "prodigy-dlq",
    "prodigy-checkpoints",
    "prodigy-archive",
];

/// Escape text for roff: backslashes, leading dots and quotes, and hyphens in option names.
pub(crate) fn roff(s: &str) -> String {
    let t = s.replace('\\', "\\e").replace('-', "\\-");
    if t.starts_with('.') || t.starts_with('\'') {
        format!("\\&{t}")
    } else {
        t
    }
}

fn man_flags(out: &mut String, table: &[Flag]) {
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

/// The EXIT STATUS section of a man page.
pub(crate) fn exit_rows_roff(out: &mut String) {
    man_exit(out)
}

fn man_exit(out: &mut String) {
    out.push_str(".SH EXIT STATUS\n");
    for (code, meaning) in EXIT_TABLE {
        writeln!(out, ".TP\n{code}\n{}", roff(meaning)).unwrap();
    }
}

/// DESCRIPTION and the sections after it of `prodigy-run(1)`.
const RUN_MAN_TEXT: &str = "\
.SH DESCRIPTION
Runs a Prodigy workflow file, standard or MapReduce, in a new git worktree of the repository that
holds the current directory (or \\fB\\-\\-path\\fR), and writes everything the run produces under
\\fB$PRODIGY_HOME\\fR: the session record, the session\\-job mappings, event lines, MapReduce job
state and checkpoints, the dead letter queue, logs, and the job's resume lock, held for the whole
run. A repository with uncommitted tracked changes, or with a merge, rebase, cherry\\-pick or revert
in progress, is refused (exit 3): the run starts from HEAD.
.SH WORKFLOW FILES
Prodigy's YAML. A standard workflow is a list of steps, or a map with \\fBname\\fR, \\fBcommands\\fR,
\\fBenv\\fR and \\fBmerge\\fR. A MapReduce workflow has \\fBmode: mapreduce\\fR (the key, not text in a
comment), \\fBsetup\\fR, \\fBmap\\fR (\\fBinput\\fR, \\fBjson_path\\fR, \\fBfilter\\fR, \\fBsort_by\\fR,
\\fBdistinct\\fR, \\fBmax_items\\fR, \\fBoffset\\fR, \\fBmax_parallel\\fR, \\fBagent_template\\fR), \\fBreduce\\fR, \\fBmerge\\fR
and \\fBerror_policy\\fR. A step is \\fBshell:\\fR, \\fBclaude:\\fR, \\fBwrite_file:\\fR,
\\fBforeach:\\fR or a legacy \\fBname:\\fR, with modifiers; every key, where it is honoured and how
it differs from Prodigy 0.4.4 is in \\fBprodigy\\-workflow\\fR(5). Unknown keys are warnings (with
a \"did you mean\"); invalid values, YAML syntax errors, steps without an action and the removed
\\fBanalyze\\fR and \\fBgoal_seek\\fR are errors naming file, line and column, every one of them
(exit 2). Keys that parse but that this version does not run yet (\\fBvalidate\\fR,
\\fBid\\fR, \\fBoutputs\\fR, ...) make \\fBprodigy run\\fR refuse the file before anything runs (exit 2, each
use with its line); \\fBprodigy validate\\fR and \\fB\\-\\-dry\\-run\\fR accept them. A feature is
never silently dropped.
.PP
The steps' environment, later wins: prodigy's own environment, the \\fBenv_files\\fR (dotenv,
relative to the repository's checkout), the workflow's \\fBenv\\fR and \\fBsecrets\\fR, the
\\fB\\-\\-profile\\fR's values, the step's \\fBenv\\fR. \\fB{command}\\fR values are the command's
trimmed output, run once in the session worktree when the run (or a resume) starts;
\\fB{condition}\\fR is \\fIA\\fR \\fB==\\fR \\fIB\\fR, \\fIA\\fR \\fB!=\\fR \\fIB\\fR or a variable's truthiness. A secret
(\\fBsecrets:\\fR, \\fB{secret: true, value}\\fR) that cannot be read, a missing env file or an
unknown profile is an error before anything runs (exit 2, naming it, never a value). Every secret
value of 4 characters or more (8 when it is all digits, which timestamps and pids are made of)
is replaced by \\fB***\\fR in everything prodigy prints or writes (terminal, step and Claude
logs, events, checkpoints, the DLQ, session records); shorter ones are not masked, with a
warning. The steps get the real values. Secrets are never stored: a resume
reads them again, with the profile the run started with.
.PP
\\fB\\-\\-dry\\-run\\fR prints the plan: each phase's steps as they would run, with \\fB\\-\\-arg\\fR,
\\fB\\-\\-param\\-file\\fR, the workflow's plain \\fBenv\\fR and the \\fB\\-\\-profile\\fR
interpolated (never secrets), and the work items after \\fBjson_path\\fR, \\fBfilter\\fR,
\\fBsort_by\\fR, \\fBoffset\\fR and \\fBmax_items\\fR when \\fBmap.input\\fR is a file of the
repository (else what the run will do with it). It writes nothing anywhere and starts no step;
only git is asked where the repository is.
.PP
Prodigy 0.4.4's flags: \\fB\\-\\-param\\fR and \\fB\\-\\-params\\fR are \\fB\\-\\-arg\\fR,
\\fB\\-\\-resume ID\\fR is \\fBprodigy resume ID\\fR, \\fB\\-n 1\\fR is accepted; \\fB\\-\\-args\\fR,
\\fB\\-\\-map\\fR, \\fB\\-\\-fail\\-fast\\fR and \\fB\\-n\\fR above 1 are refused with what to use instead.
.PP
\\fBmap.input\\fR is a JSON file in the session worktree as setup left it or, when no such file
exists, a shell command whose output is a JSON array or one item per line. \\fBjson_path\\fR takes
\\fB$\\fR, \\fB.key\\fR, \\fB[\\(aqkey\\(aq]\\fR, \\fB[N]\\fR and \\fB[*]\\fR. A work item's id is its \\fBid\\fR field
(string or number), else its index; two items with one id are an error.
.PP
\\fBmap.filter\\fR is an expression, true for the items that run: \\fB== != < <= > >=\\fR, \\fB&&\\fR,
\\fB||\\fR, \\fB!\\fR and \\fBAND\\fR, \\fBOR\\fR, \\fBNOT\\fR (in any case), parentheses,
\\fBFIELD in [1, \\(aqa\\(aq]\\fR, \\fBcontains\\fR, \\fBstarts_with\\fR, \\fBends_with\\fR,
\\fBmatches \\(aqREGEX\\(aq\\fR, \\fBis_null\\fR, \\fBis_not_null\\fR and \\fBlength(FIELD)\\fR. A field is
a path in the item, with or without \\fBitem.\\fR (\\fBmeta.size\\fR, \\fBtags[0]\\fR); a missing field
is null. Numbers compare as numbers (\\fB5 == 5.0\\fR), and a string that is a number compares
with a number as that number. \\fBsort_by\\fR is \\fBFIELD [ASC|DESC] [NULLS FIRST|NULLS LAST]\\fR,
comma\\-separated, nulls last by default. \\fBdistinct: FIELD\\fR keeps the first item of each value
of the field (all nulls are one value). They apply in this order: \\fBjson_path\\fR, \\fBfilter\\fR,
\\fBsort_by\\fR, \\fBdistinct\\fR, \\fBoffset\\fR, \\fBmax_items\\fR.
.SH VARIABLES
\\fB${name}\\fR, \\fB${name.path[0]}\\fR and \\fB${name:\\-default}\\fR are replaced before a step runs:
\\fBitem\\fR (and nested \\fBitem.*\\fR), \\fBitem_json\\fR, \\fBitem_id\\fR, \\fBmap.total\\fR,
\\fBmap.successful\\fR, \\fBmap.failed\\fR, \\fBmap.results\\fR, \\fBshell.output\\fR, \\fBclaude.output\\fR and
capture names (\\fBcapture: NAME\\fR also sets \\fBNAME.stderr\\fR, \\fBNAME.exit_code\\fR,
\\fBNAME.success\\fR and \\fBNAME.duration\\fR), \\fBworkflow.name\\fR, \\fBsession.id\\fR, \\fBjob.id\\fR, \\fBworktree\\fR, \\fBmerge.*\\fR in
merge steps, and \\fB\\-\\-arg\\fR names. An unknown dotted name fails its step; an unknown plain
\\fB$NAME\\fR or \\fB${NAME}\\fR is left for the shell. Values are inserted as text, not shell\\-quoted.
.SH EXECUTION
Each step runs as \\fBsh \\-c\\fR (or \\fBclaude\\fR, invoked as Prodigy 0.4.4 invokes it) in its own
process group, stdin \\fI/dev/null\\fR, output appended to \\fI$PRODIGY_HOME/logs/{repo}/{job_id}/\\fR
(\\fIsteps.log\\fR, \\fIsetup.log\\fR, \\fIagent\\-{item}.log\\fR, \\fIreduce.log\\fR, \\fImerge.log\\fR). The
environment is prodigy's own plus the workflow's \\fBenv\\fR, \\fBPRODIGY_AUTOMATION=true\\fR,
\\fBPRODIGY_SESSION_ID\\fR, \\fBPRODIGY_JOB_ID\\fR, and for agents \\fBPRODIGY_ITEM_ID\\fR and
\\fBitem_json\\fR. A non\\-zero exit fails the step in every phase (Prodigy 0.4.4 ignores it in map and
reduce); \\fBon_failure\\fR then runs and, unless \\fBfail_workflow\\fR, recovers the step.
\\fBcommit_required\\fR fails a step that made no commit. A \\fBtimeout\\fR sends SIGTERM to the
step's process group, SIGKILL 5 seconds later.
.PP
MapReduce: setup runs in the session worktree; each work item runs in its own agent worktree
nested in it, at most \\fBmax_parallel\\fR at once, and an agent whose steps succeeded is merged into
the session worktree with \\fBgit merge \\-\\-no\\-ff\\fR, one merge at a time. A conflict fails the item;
the session worktree is never left mid\\-merge. Merged agents' worktrees and branches are removed.
A failed item goes to the dead letter queue; its agent worktree is first moved out of the session
worktree to \\fIworktrees/{repo}/{session_id}.agent\\-{item}/\\fR beside it, with its branch, its
commits and its uncommitted changes, and kept there for inspection until \\fBprodigy dlq retry\\fR or
\\fBprodigy clean\\fR; the queue entry names it (\\fBworktree_path\\fR, \\fBbranch_name\\fR). No agent
worktree is inside the session worktree when the map ends, so a reduce or merge step's
\\fBgit add \\-A\\fR never commits one as an embedded repository; nothing is changed in your checkout,
its \\fI.gitignore\\fR or its git configuration. Reduce runs in the session worktree with
\\fBmap.*\\fR set, unless every item failed or \\fBerror_policy\\fR stopped the map.
.PP
At the end, the session branch is merged into the branch that was checked out when the run
started: by the workflow's \\fBmerge\\fR steps, else with \\fBgit merge \\-\\-no\\-ff\\fR in your checkout,
only when it is still on that branch and clean. Without \\fB\\-y\\fR a terminal is asked; with no
terminal nothing is merged and the command to merge by hand is printed (Prodigy 0.4.4 merges on
end of input). After a merge the session worktree and branch are removed, also when items failed
(their worktrees are beside it); the branch's last commit is recorded in the session record
(\\fBmetadata.worktree.merged_tip\\fR) for \\fBprodigy dlq retry\\fR.
.SH SIGNALS
SIGINT and SIGTERM stop new work, are forwarded to running steps (which get 10 seconds), a
checkpoint is written, the session is marked Paused and the resume lock released; the exit
status is 130 or 143. A killed run stays Running with a dead owner pid: \\fBprodigy clean\\fR keeps
it as resumable while it has a checkpoint.
.SH OUTPUT
Progress goes to a terminal only; \\fB\\-q\\fR prints errors only; \\fB\\-\\-json\\fR prints one object
with \\fBsession_id\\fR, \\fBjob_id\\fR, \\fBstatus\\fR, \\fBreason\\fR, \\fBtotal\\fR, \\fBcompleted\\fR,
\\fBfailed\\fR, \\fBmerge\\fR and \\fBexit\\fR.
";

/// DESCRIPTION of `prodigy-validate(1)`.
const VALIDATE_MAN_TEXT: &str = "\
.SH DESCRIPTION
Reads each workflow file as \\fBprodigy run\\fR reads it and prints every error and warning, one
per line, as \\fI`FILE`:LINE:COLUMN: error|warning: MESSAGE\\fR, then one verdict line per file.
Errors: YAML syntax, invalid values, steps without an action, the removed \\fBanalyze\\fR and
\\fBgoal_seek\\fR. Warnings: unknown keys (with a \"did you mean\"), keys that are accepted and
ignored, and where Prodigy 0.4.4 would run the file differently (a step with \\fBname:\\fR beside
an action is a label here, \\fBclaude /name\\fR there). Keys that \\fBprodigy run\\fR does not run
yet are valid here; see \\fBprodigy\\-run\\fR(1). Nothing is run and nothing is written.
.PP
\\fB\\-\\-json\\fR prints one document: \\fB{\"valid\", \"strict\", \"exit\", \"files\": [{\"path\",
\"valid\", \"kind\", \"errors\", \"warnings\", \"problems\": [{\"severity\", \"line\", \"col\",
\"message\"}]}]}\\fR. \\fB\\-\\-schema\\fR prints a JSON Schema (draft 2020\\-12) of the language,
made from the same key table as the parser; editors that use yaml\\-language\\-server read it
from a first line \\fB# yaml\\-language\\-server: $schema=prodigy\\-workflow.schema.json\\fR.
.PP
Exit status: 0 every file is valid, 1 some file has warnings and \\fB\\-\\-strict\\fR was given,
2 some file is invalid or unreadable.
";

/// DESCRIPTION and the sections after it of `prodigy-resume(1)`.
const RESUME_MAN_TEXT: &str = "\
.SH DESCRIPTION
Continues a run that \\fBprodigy run\\fR started and that was interrupted (SIGINT, SIGTERM, SIGKILL,
a crash, a reboot) or failed, so that it finishes with nothing lost and nothing done twice.
\\fIID\\fR is a session id or a job id: either resolves through the session\\-job mappings.
.PP
The job's resume lock is taken first: while another \\fBprodigy run\\fR or \\fBresume\\fR holds it,
resume refuses (exit 3) naming its pid, host and since when; a lock file left by a process that is
gone is taken over and the takeover is reported. Completed and Cancelled sessions are refused
(exit 3). A workflow file that changed since the run started is refused unless \\fB\\-\\-force\\fR.
Sessions written by Prodigy 0.4.4 record neither repository nor worktree; they are reported with
what they have and refused (exit 3); the user's checkout is never touched.
.PP
Before the session worktree is used again, processes of the killed run that still work in it
(every step, and every git command of the run, has \\fBPRODIGY_SESSION_ID\\fR in its environment)
are waited for (up to 10 seconds), then their process groups are killed; any other process working
there is named and left alone. The run's git commands still working in your checkout (a final
merge the kill interrupted) are waited for the same way. What a kill leaves is
repaired and each repair reported: a worktree directory that is gone is re\\-created from its
branch, a half\\-made one is removed first, a merge left in progress is aborted, a stale
\\fIindex.lock\\fR is removed, an agent's merge into the session worktree that a kill cut short
before its commit is undone (the files its branch changed are put back to HEAD, nothing else;
the item runs again), git's record of a worktree whose \\fBgit worktree add\\fR was killed with
its \\fIcommondir\\fR still empty is completed, leftover agent worktrees of merged items are
removed, and git's record of a failed agent's worktree whose move out of the session worktree a
kill interrupted is repaired (\\fBgit worktree repair\\fR) before anything prunes it. An item that runs again
replaces the worktree an earlier attempt left, inside or beside the session worktree.
.PP
A standard workflow continues at the step that failed or was interrupted, with the variables
captured by the completed steps. A MapReduce job skips setup when its checkpoint says it
completed (else continues setup at its first unfinished step). Git's history is the truth for
what was merged: an item whose merge commit is in the session worktree's history is done,
whatever the checkpoint says; pending and interrupted items run again from fresh agent
worktrees; failed items stay in the dead letter queue. Reduce continues at its first unfinished
step (from the start when items ran again), with \\fBmap.*\\fR rebuilt; then the final merge, as
in \\fBprodigy\\-run\\fR(1).
.SH DLQ RETRY
\\fBprodigy dlq retry\\fR \\fIJOB_ID\\fR runs the items of the job's dead letter queue again as a new
map pass in the job's session worktree (re\\-created at \\fBmetadata.worktree.merged_tip\\fR when
the final merge removed it), through the same code; each item's old worktree beside the session
worktree is replaced by a fresh one. An item that succeeds is merged
and leaves the queue (its history stays in the events); one that fails again gets one more
\\fBfailure_history\\fR entry. Reduce is not run again unless \\fB\\-\\-reduce\\fR. \\fB\\-n\\fR lists the
items that would run (item, last error and, when the queue names one, the worktree the failed
attempt left, tab\\-separated; \\fB\\-\\-json\\fR: \\fBitem_id\\fR, \\fBlast_error\\fR, \\fBworktree_path\\fR)
and changes nothing. Then the session branch is merged as at the end of a run.
";

const MAN_PROTECTED: &str = "\
.SH WHAT IS PROTECTED
Sessions are classified from their records (see \\fBprodigy\\-storage\\fR(5)):
.TP
.B active
status Initializing, Running or Paused and an owner that is alive: its recorded pid on this host,
a live resume lock, a process whose working directory is inside one of its worktrees, or (owner
unknown or on another host) activity within the last hour.
.TP
.B resumable
not active, not Completed or Cancelled, and something to resume from: a checkpoint that parses, a
0.4.4 workflow checkpoint that is not Completed, a non\\-empty checkpoints list, or 0.4.4 worktree
metadata saying resumable. Failed sessions count: Prodigy resumes them.
.TP
.B unknown
the record is empty, truncated, of the wrong shape, or has an unknown status.
.PP
Active, resumable and unknown sessions, and everything they own (worktrees, job state,
checkpoints, mappings, events, dead letter queues, resume locks), are never removed by
\\fBclean\\fR, whatever their age. Stale, completed, failed and cancelled sessions are removed after
the retention period, the session record last, and only when none of its worktrees stays.
.PP
A worktree stays when it is git\\-locked, has uncommitted or untracked changes (unless
\\fB\\-\\-discard\\-changes\\fR), is in use by a process, or git cannot be asked. When a worktree goes,
its git bookkeeping is pruned and its own branch is deleted only when another branch contains all
its commits. Names outside [A\\-Za\\-z0\\-9][A\\-Za\\-z0\\-9._\\-]* are never touched, symlinks are never
followed, and nothing on another filesystem is entered.
";

/// `prodigy-clean.1`, RETENTION: the retention file, precedence and the quota.
const MAN_RETENTION: &str = r".SH RETENTION
\fI$PRODIGY_HOME/clean.conf\fR sets the retention of storage types and a size quota for the root.
One setting per line, \fIKEY\fR \fB=\fR \fIVALUE\fR, spaces around the \fB=\fR optional; blank lines and
lines starting with \fB#\fR are ignored:
.PP
.nf
# $PRODIGY_HOME/clean.conf
worktrees = 3d
sessions = 90d
max\-size = 20G
.fi
.PP
Keys are the storage types (\fBworktrees\fR, \fBsessions\fR, \fBlogs\fR, \fBstate\fR, \fBevents\fR, \fBdlq\fR),
whose value is a \fIDURATION\fR, \fBmax\-size\fR, whose value is a \fISIZE\fR, \fBcompress\-after\fR, a
\fIDURATION\fR (see \fBCOMPRESSION\fR), and \fBarchive\fR, a directory (see \fBARCHIVE\fR). A type the file does not
name keeps its default. An unknown key, a bad value, a key set twice, a line without \fB=\fR, or a file
that is not a regular file (a symlink is not followed) stops \fBclean\fR before anything is removed,
with exit status 2 and a message naming the file and line: \fI`PATH`:LINE: what is wrong\fR.
The file is plain text, not YAML, and not \fIconfig.yml\fR, which Prodigy 0.4.4 reads from the same
directory: neither disturbs the other. Only \fBclean\fR (not \fBworktree clean\fR or \fBsessions rm\fR)
applies it; \fBstats\fR reads its quota.
.PP
Precedence, highest first: \fB\-\-retention\fR \fITYPE\fR=\fIDURATION\fR for its type; \fB\-\-older\-than\fR for
every type; the file; the defaults (worktrees 7d, sessions 30d, logs 7d, state 30d, events 14d,
dlq 30d). \fB\-\-max\-size\fR overrides the file's \fBmax\-size\fR.
.PP
The quota: when what stays after the normal clean is more than \fBmax\-size\fR, items that were kept
only because they are younger than their retention are removed too, the oldest last activity
first, until it fits. They are judged by every other rule as if they had expired, so nothing of
an active, resumable or unknown session is ever removed for the quota, nor a git\-locked, dirty or
in\-use worktree, nor anything kept for any other reason; the session record still goes last.
The quota counts the whole root and is checked only when every repository is in scope (outside a
repository, or with \fB\-\-all\-repos\fR); otherwise a warning says so. The report says in one line
whether the quota was met and, if not, how much is over and which protected data stands in the
way; under \fB\-\-quiet\fR an unmet quota is one warning line on standard error. Either way the exit
status is 0: an unmet quota is not a failure. \fBprodigy stats\fR prints a warning when the root is
over the file's quota.
.SH COMPRESSION
\fB\-\-compress\-after\fR \fIDURATION\fR (or \fBcompress\-after\fR = \fIDURATION\fR in \fIclean.conf\fR; the
flag wins) compresses in place the event files (\fIevents\-*.jsonl\fR) and the log files (any file
directly in a log entry) idle at least that long, when their item is kept only because it is younger
than its retention: so never a file of an active, resumable or unknown session, nor one of a
live\-locked or unreadable item, whatever its age. Each becomes \fINAME.gz\fR with \fINAME\fR's
modification time (retention applies to it by the same age; the directory's own time is put back
too). Empty files are left alone. Before an item's files are compressed its deletion\-time checks run
(the owner's record unchanged, its resume locks taken, the path still naming the directory scanned),
and the locks are held while they are compressed. The order of writes: a temp file
\fI.NAME.gz.tmp\-...\fR created beside it (no symlink followed, never an existing file), written,
fsynced, renamed to \fINAME.gz\fR (never replacing), the directory fsynced; then \fINAME\fR is checked to
be unchanged (inode, size, time) and unlinked, and the directory fsynced. A file that changed
meanwhile is kept and its \fB.gz\fR removed. A kill at any moment leaves \fINAME\fR, or \fINAME.gz\fR, or
both (then \fINAME\fR is read, and the next run redoes the \fB.gz\fR after checking it decompresses to
\fINAME\fR); a leftover temp file is removed by the next run. A dry run lists each file with its size
and its compressed size (it compresses into a counter) and the total saving. Each compression is one
\fBcompress\fR line in the audit log (\fBpath\fR, \fBbytes\fR, \fBgz_bytes\fR).
.SH ARCHIVE
\fB\-\-archive\fR \fIDIR\fR (or \fBarchive\fR = \fIDIR\fR, absolute, in \fIclean.conf\fR; the flag wins) first writes
every item the run removes, worktrees excepted, to \fIDIR/prodigy\-YYYYmmddTHHMMSS.tar.gz\fR (UTC,
\fB\-2\fR... when taken; \fIDIR\fR is created) with a manifest of each item's type, repository, session,
job, path, size and reason. It is written to a temp name, fsynced, renamed and \fIDIR\fR fsynced
before the first removal. Files are read without following a symlink: an item holding anything
but files and directories, or a name the archive cannot hold, is kept and reported as failed
(exit 1); if the archive cannot be written, nothing it would hold is removed. The whole root is
planned at once. A dry run names the archive; \fB\-\-json\fR has \fBarchive\fR ({\fBpath\fR, \fBitems\fR,
\fBfiles\fR, \fBbytes\fR} or null). See \fBprodigy\-archive\fR(1) and \fBprodigy\-storage\fR(5).
";

/// `prodigy.1`, SCHEDULING: cron and the systemd units.
const MAN_SCHEDULING: &str = r".SH SCHEDULING
\fBprodigy clean \-\-force \-\-quiet\fR is made to run unattended: it prints nothing when there is
nothing to say, prints only errors (and an unmet quota) on standard error, and exits 0 unless an
item failed. Retention and the quota come from \fI$PRODIGY_HOME/clean.conf\fR. From cron:
.PP
.nf
15 3 * * * prodigy clean \-\-force \-\-quiet
.fi
.PP
With systemd, \fIscripts/systemd/prodigy\-clean.service\fR and \fIprodigy\-clean.timer\fR in the source
tree run the same command daily (\fBOnCalendar=daily\fR, \fBRandomizedDelaySec=2h\fR,
\fBPersistent=true\fR) in a hardened unit: \fBNice=19\fR, \fBIOSchedulingClass=idle\fR,
\fBProtectSystem=strict\fR with only the storage root writable (\fBReadWritePaths=\fR, the same path as
\fBEnvironment=PRODIGY_HOME=\fR), no network, no new privileges. Install them with:
.PP
.nf
install \-m 0644 prodigy\-clean.service prodigy\-clean.timer /etc/systemd/system/
systemctl edit prodigy\-clean.service     # User=, PRODIGY_HOME, ReadWritePaths
systemctl daemon\-reload && systemctl enable \-\-now prodigy\-clean.timer
.fi
.PP
The repositories that worktrees belong to stay read\-only unless added to \fBReadWritePaths\fR:
a removed worktree's git bookkeeping and branch live there, and a clean that cannot prune or
delete them reports each as an error (exit 1; nothing else is lost, and \fBgit worktree prune\fR
finishes it). List the repositories there when the root holds worktrees.
";

/// A man page in roff, generated from the flag tables (`man/` holds the committed copies).
pub fn man_page(page: &str) -> Option<String> {
    let version = env!("CARGO_PKG_VERSION");
    let mut o = String::new();
    let header = |o: &mut String, name: &str, what: &str| {
        writeln!(
            o,
            ".TH {} 1 \"\" \"prodigy {version}\" \"User Commands\"",
            name.to_uppercase()
        )
        .unwrap();
        writeln!(o, ".SH NAME\n{} \\- {}", roff(name), roff(what)).unwrap();
    };
    match page {
        "prodigy" => {
            header(
                &mut o,
                "prodigy",
                "keep Prodigy's global storage tidy and safe",
            );
            o.push_str(".SH SYNOPSIS\n.B prodigy\n\\fICOMMAND\\fR [\\fIOPTIONS\\fR]\n");
            o.push_str(".SH DESCRIPTION\n");
            o.push_str(
                "Prodigy runs AI and shell agents in git worktrees and keeps everything a run produces under one\n\
                 root, \\fB$PRODIGY_HOME\\fR (default \\fI~/.prodigy\\fR): sessions, event logs, dead letter queues,\n\
                 MapReduce checkpoints, session\\-job mappings, logs, worktrees, resume locks and the\n\
                 orphaned\\-worktree registry. \\fBprodigy\\fR shows that tree and reclaims space from it without\n\
                 deleting live or resumable work.\n",
            );
            o.push_str(".SH COMMANDS\n.TP\n\\fBrun\\fR \\fIWORKFLOW\\fR\nRun a workflow file in a worktree; see \\fBprodigy\\-run\\fR(1).\n");
            o.push_str(".TP\n\\fBvalidate\\fR \\fIWORKFLOW\\fR...\nCheck workflow files without running them; see \\fBprodigy\\-validate\\fR(1) and \\fBprodigy\\-workflow\\fR(5).\n");
            o.push_str(
                ".TP\n\\fBclean\\fR\nRemove expired storage; see \\fBprodigy\\-clean\\fR(1).\n",
            );
            o.push_str(".TP\n\\fBworktree ls\\fR|\\fBclean\\fR|\\fBclean\\-orphaned\\fR\nList and remove worktrees; see \\fBprodigy\\-worktree\\fR(1).\n");
            for (g, _) in docs::GROUPS {
                let about = SUBS
                    .iter()
                    .find(|s| s.words[0] == *g)
                    .map(|s| s.about)
                    .unwrap_or("");
                writeln!(
                    o,
                    ".TP\n\\fB{g}\\fR\n{}; see \\fBprodigy\\-{g}\\fR(1).",
                    roff(about)
                )
                .unwrap();
            }
            o.push_str(".SH SHELL COMPLETION\n.nf\nprodigy help \\-\\-completions bash > /etc/bash_completion.d/prodigy\nprodigy help \\-\\-completions zsh > \"${fpath[1]}/_prodigy\"\nprodigy help \\-\\-completions fish > ~/.config/fish/completions/prodigy.fish\n.fi\n");
            o.push_str(".SH STORAGE LAYOUT\n.nf\n");
            for l in [
                "$PRODIGY_HOME/",
                "  sessions/{session_id}.json",
                "  events/{repo}/{job_id}/events-{YYYYmmddHHMMSS}.jsonl",
                "  dlq/{repo}/{job_id}/dlq-items.json",
                "  state/{repo}/mapreduce/jobs/{job_id}/",
                "  state/{repo}/mappings/{session_id}.json, {job_id}.json",
                "  logs/{repo}/...",
                "  worktrees/{repo}/{session_id}/",
                "  resume_locks/{job_id}.lock",
                "  orphaned_worktrees/{repo}/{job_id}.json",
                "  clean-audit.jsonl",
            ] {
                writeln!(o, "{}", roff(l)).unwrap();
            }
            o.push_str(".fi\n.PP\nEvery path and file format, the layout Prodigy 0.4.4 writes, crash safety and locks are\ndescribed in \\fBprodigy\\-storage\\fR(5).\n");
            o.push_str(".SH ENVIRONMENT\n.TP\n.B PRODIGY_HOME\nThe storage root; must be an absolute path. Default: \\fI$HOME/.prodigy\\fR.\n");
            o.push_str(".TP\n.B PRODIGY_GIT_TIMEOUT\nSeconds one git call may take before it is stopped and its worktree kept (default 120).\n");
            man_exit(&mut o);
            o.push_str(".SH FILES\n.TP\n\\fI$PRODIGY_HOME/clean\\-audit.jsonl\\fR\nOne JSON line per removal, failure and branch deletion; never cleaned; rotated past 4 MiB.\n.TP\n\\fI$PRODIGY_HOME/resume_locks/\\fR\nResume locks (\\fI{job_id}.lock\\fR, flock) and the global clean lock (\\fI.clean.lock\\fR).\n.TP\n\\fI$PRODIGY_HOME/.trash/\\fR\nItems being deleted; emptied by the next run if a clean was interrupted.\n.TP\n\\fI$PRODIGY_HOME/orphaned_worktrees/{repo}/{job_id}.json\\fR\nWorktrees whose removal failed; see \\fBprodigy\\-worktree\\fR(1).\n.TP\n\\fI$PRODIGY_HOME/clean.conf\\fR\nRetention per storage type and the size quota of \\fBclean\\fR; see \\fBprodigy\\-clean\\fR(1), RETENTION.\n");
            o.push_str(MAN_SCHEDULING);
            o.push_str(".SH EXAMPLES\nA nightly clean from cron, quiet unless something fails:\n.PP\n.nf\n");
            o.push_str("15 3 * * * prodigy clean \\-\\-force \\-\\-quiet\n.fi\n");
            o.push_str(".SH SEE ALSO\n\\fBprodigy\\-run\\fR(1), \\fBprodigy\\-resume\\fR(1), \\fBprodigy\\-clean\\fR(1), \\fBprodigy\\-worktree\\fR(1), \\fBprodigy\\-stats\\fR(1), \\fBprodigy\\-sessions\\fR(1), \\fBprodigy\\-events\\fR(1), \\fBprodigy\\-dlq\\fR(1), \\fBprodigy\\-checkpoints\\fR(1), \\fBprodigy\\-archive\\fR(1), \\fBprodigy\\-validate\\fR(1), \\fBprodigy\\-workflow\\fR(5), \\fBprodigy\\-storage\\fR(5), \\fBgit\\-worktree\\fR(1)\n");
        }
        "prodigy-run" => {
            header(
                &mut o,
                "prodigy-run",
                "run a Prodigy workflow file in a git worktree",
            );
            o.push_str(".SH SYNOPSIS\n.B prodigy run\n\\fIWORKFLOW\\fR [\\fB\\-y\\fR] [\\fB\\-\\-path\\fR \\fIREPO\\fR] [\\fB\\-\\-arg\\fR \\fINAME=VALUE\\fR]... [\\fB\\-\\-max\\-parallel\\fR \\fIN\\fR] [\\fB\\-\\-profile\\fR \\fINAME\\fR] [\\fB\\-\\-dry\\-run\\fR] [\\fB\\-q\\fR] [\\fB\\-\\-json\\fR]\n");
            o.push_str(RUN_MAN_TEXT);
            o.push_str(".SH OPTIONS\n");
            man_flags(&mut o, RUN_FLAGS);
            o.push_str(".SH ENVIRONMENT\n.TP\n.B PRODIGY_HOME\nThe storage root; must be an absolute path. Default: \\fI$HOME/.prodigy\\fR.\n.TP\n.B PATH\n\\fBsh\\fR, \\fBgit\\fR and, for Claude steps, \\fBclaude\\fR are found here.\n");
            man_exit(&mut o);
            o.push_str(".SH EXAMPLES\n.nf\nprodigy run scripts/workflows/mapreduce.yml \\-y\nprodigy run fix.yml \\-\\-arg TARGET=src/lib.rs \\-\\-json\nprodigy run big.yml \\-\\-max\\-parallel 4 \\-q\nprodigy run big.yml \\-\\-dry\\-run \\-\\-arg TARGET=src\n.fi\n");
            o.push_str(".SH SEE ALSO\n\\fBprodigy\\fR(1), \\fBprodigy\\-sessions\\fR(1), \\fBprodigy\\-events\\fR(1), \\fBprodigy\\-dlq\\fR(1), \\fBprodigy\\-checkpoints\\fR(1), \\fBprodigy\\-clean\\fR(1), \\fBprodigy\\-storage\\fR(5), \\fBgit\\-worktree\\fR(1)\n");
        }
        "prodigy-validate" => {
            header(
                &mut o,
                "prodigy-validate",
                "check Prodigy workflow files without running them",
            );
            o.push_str(".SH SYNOPSIS\n.B prodigy validate\n\\fIWORKFLOW\\fR... [\\fB\\-\\-strict\\fR] [\\fB\\-\\-json\\fR]\n.br\n.B prodigy validate \\-\\-schema\n");
            o.push_str(VALIDATE_MAN_TEXT);
            o.push_str(".SH OPTIONS\n");
            man_flags(&mut o, VALIDATE_FLAGS);
            man_exit(&mut o);
            o.push_str(".SH EXAMPLES\n.nf\nprodigy validate workflows/*.yml\nprodigy validate ci.yml \\-\\-strict \\-\\-json\nprodigy validate \\-\\-schema > prodigy\\-workflow.schema.json\n.fi\n");
            o.push_str(".SH SEE ALSO\n\\fBprodigy\\-run\\fR(1), \\fBprodigy\\-workflow\\fR(5)\n");
        }
        "prodigy-resume" => {
            header(
                &mut o,
                "prodigy-resume",
                "continue an interrupted or failed Prodigy run",
            );
            o.push_str(".SH SYNOPSIS\n.B prodigy resume\n\\fIID\\fR [\\fB\\-y\\fR] [\\fB\\-\\-force\\fR] [\\fB\\-q\\fR] [\\fB\\-\\-json\\fR]\n.br\n.B prodigy dlq retry\n\\fIJOB_ID\\fR [\\fB\\-y\\fR] [\\fB\\-\\-max\\-parallel\\fR \\fIN\\fR] [\\fB\\-n\\fR] [\\fB\\-\\-reduce\\fR]\n");
            o.push_str(RESUME_MAN_TEXT);
            o.push_str(".SH OPTIONS\n");
            man_flags(&mut o, RESUME_FLAGS);
            o.push_str(".SH ENVIRONMENT\n.TP\n.B PRODIGY_HOME\nThe storage root; must be an absolute path. Default: \\fI$HOME/.prodigy\\fR.\n");
            man_exit(&mut o);
            o.push_str(".SH EXAMPLES\n.nf\nprodigy resume mapreduce\\-20261203T101500\\-a1b2c3 \\-y\nprodigy resume session\\-mapreduce\\-20261203T101500\\-a1b2c3\nprodigy dlq retry mapreduce\\-20261203T101500\\-a1b2c3 \\-n\nprodigy dlq retry mapreduce\\-20261203T101500\\-a1b2c3 \\-y \\-\\-reduce\n.fi\n");
            o.push_str(".SH SEE ALSO\n\\fBprodigy\\-run\\fR(1), \\fBprodigy\\-dlq\\fR(1), \\fBprodigy\\-sessions\\fR(1), \\fBprodigy\\-storage\\fR(5)\n");
        }
        "prodigy-clean" => {
            header(
                &mut o,
                "prodigy-clean",
                "remove expired Prodigy storage, keeping live and resumable work",
            );
            o.push_str(".SH SYNOPSIS\n.B prodigy clean\n[\\fB\\-\\-all\\fR] [\\fB\\-\\-worktrees\\fR] [\\fB\\-\\-sessions\\fR] [\\fB\\-\\-logs\\fR] [\\fB\\-\\-state\\fR] [\\fB\\-\\-events\\fR] [\\fB\\-\\-dlq\\fR] [\\fIOPTIONS\\fR]\n.br\n");
            o.push_str(".B prodigy clean\n{\\fBall\\fR|\\fBworktrees\\fR|\\fBsessions\\fR|\\fBlogs\\fR|\\fBstate\\fR|\\fBevents\\fR|\\fBdlq\\fR} [\\fIOPTIONS\\fR]\n");
            o.push_str(".SH DESCRIPTION\n");
            o.push_str(
                "Removes storage whose last activity is older than its retention: worktrees 7 days, sessions 30\n\
                 days, logs 7 days, state 30 days, events 14 days, dead letter queues 30 days, or\n\
                 \\fB\\-\\-older\\-than\\fR for all of them. Type flags combine; none means all types. Inside a git\n\
                 repository the scope is that repository, elsewhere every repository, and the output says which.\n\
                 Statistics per type (and per repository) are printed before and after. Without a terminal and\n\
                 without \\fB\\-\\-force\\fR nothing is deleted; on a terminal the plan is shown and confirmed.\n\
                 Retention per type and a size quota can be set in \\fI$PRODIGY_HOME/clean.conf\\fR (see\n\
                 \\fBRETENTION\\fR).\n",
            );
            o.push_str(".SH OPTIONS\n");
            man_flags(&mut o, CLEAN_FLAGS);
            o.push_str(".PP\n\\fIDURATION\\fR is ");
            o.push_str(&roff(FORMS));
            o.push_str(".\n");
            o.push_str(".PP\n\\fISIZE\\fR is ");
            o.push_str(&roff(crate::clean::retention::SIZE_FORMS));
            o.push_str(".\n");
            o.push_str(MAN_RETENTION);
            o.push_str(MAN_PROTECTED);
            o.push_str(
                ".SH JSON OUTPUT\n\\fB\\-\\-json\\fR prints one object: \\fBcommand\\fR, \\fBroot\\fR, \\fBscope\\fR, \\fBdry_run\\fR,\n\
                 \\fBolder_than_seconds\\fR, \\fBretention_seconds\\fR (per type, after precedence),\n\
                 \\fBmax_size_bytes\\fR, \\fBtypes\\fR, \\fBbefore\\fR and \\fBafter\\fR (each \\fBtotal\\fR, \\fBtypes\\fR,\n\
                 \\fBrepositories\\fR of {\\fBitems\\fR, \\fBbytes\\fR}), \\fBsessions\\fR (count per class), \\fBremoved\\fR and\n\
                 \\fBkept\\fR (arrays of {\\fBtype\\fR, \\fBrepository\\fR, \\fBpath\\fR, \\fBbytes\\fR, \\fBowner\\fR, \\fBreason\\fR,\n\
                 \\fBdetail\\fR, \\fBalso\\fR}), \\fBbranches\\fR ({\\fBdeleted\\fR, \\fBkept\\fR}), \\fBerrors\\fR ({\\fBpath\\fR,\n\
                 \\fBcause\\fR, \\fBhint\\fR}), \\fBwarnings\\fR and \\fBtotals\\fR. Paths are relative to the root; sizes are\n\
                 bytes on disk. Reasons: active, resumable, unknown, owner\\-kept, uncommitted, locked, nested\\-kept,\n\
                 in\\-use, live\\-lock, other\\-filesystem, git, invalid\\-name, unrecognized, unreadable,\n\
                 future\\-timestamp, changed, failed. \\fBquota\\fR is null without a quota (or with one repository in\n\
                 scope), else {\\fBmax_bytes\\fR, \\fBbefore_bytes\\fR, \\fBafter_bytes\\fR, \\fBmet\\fR, \\fBshortfall_bytes\\fR,\n\
                 \\fBremoved_items\\fR, \\fBremoved_bytes\\fR (removed for the quota alone), \\fBblocked_by\\fR (when not\n\
                 met: what stays though it could otherwise have gone, largest first, each {\\fBtype\\fR, \\fBpath\\fR,\n\
                 \\fBbytes\\fR, \\fBowner\\fR, \\fBreason\\fR, \\fBdetail\\fR})}. \\fBcompress_after_seconds\\fR is null\n\
                 without \\fB\\-\\-compress\\-after\\fR; \\fBcompressed\\fR is {\\fBfiles\\fR, \\fBbytes_before\\fR,\n\
                 \\fBbytes_after\\fR, \\fBsaved_bytes\\fR, \\fBentries\\fR (each {\\fBtype\\fR, \\fBrepository\\fR, \\fBpath\\fR,\n\
                 \\fBowner\\fR, \\fBbytes_before\\fR, \\fBbytes_after\\fR})}.\n",
            );
            o.push_str(".SH FILES\n.TP\n\\fI$PRODIGY_HOME/clean\\-audit.jsonl\\fR\nOne JSON line per removal, failure and branch deletion (time, action, type, repository, path,\nbytes, reason). Never cleaned; rotated to \\fIclean\\-audit.jsonl.1\\fR past 4 MiB.\n");
            o.push_str(".TP\n\\fI$PRODIGY_HOME/clean.conf\\fR\nRetention per type and the quota (see \\fBRETENTION\\fR). Read by \\fBclean\\fR and \\fBstats\\fR only.\n");
            o.push_str(".TP\n\\fI$PRODIGY_HOME/resume_locks/.clean.lock\\fR\nHeld while a clean runs; a second clean exits 0 saying another is running.\n");
            o.push_str(".TP\n\\fI$PRODIGY_HOME/.trash/\\fR\nItems being deleted; emptied by the next run if a clean was interrupted.\n");
            o.push_str(".SH MEMORY\nA dry run and a run with \\fB\\-\\-force\\fR (and \\fBprodigy stats\\fR) keep a small index of every\nsession and stream the items in batches, so memory does not grow with the number of items: it\ngrows by 85 to 130 bytes a session over a small tree's baseline (a peak near 27 MiB at 100,000\nsessions), whatever the ids' length and however many repositories hold the sessions (measured\nfrom 10,000 to 40,000 sessions; \\fBprodigy stats\\fR 80 to 115).\nA session costs the same time whatever its id. A quota, an interactive confirmation and the narrowed selections of\n\\fBsessions rm\\fR and \\fBworktree clean\\fR plan the whole root at once.\n");
            o.push_str(".SH ENVIRONMENT\n.TP\n.B PRODIGY_HOME\nThe storage root; must be an absolute path. Default: \\fI$HOME/.prodigy\\fR.\n.TP\n.B TMPDIR\nWhere the lists of a large report wait, in an unlinked file, until they are printed (default \\fI/tmp\\fR).\n.TP\n.B PRODIGY_CLEAN_WHOLE_ROOT\n\\fB1\\fR plans the whole root at once in a dry run and with \\fB\\-\\-force\\fR too (more memory; to compare).\n");
            man_exit(&mut o);
            o.push_str(".SH EXAMPLES\n.nf\nprodigy clean \\-\\-all \\-\\-dry\\-run\nprodigy clean \\-\\-worktrees \\-\\-older\\-than 7d\nprodigy clean \\-\\-all \\-\\-older\\-than 30d \\-\\-all\\-repos \\-\\-force\nprodigy clean \\-\\-retention sessions=90d \\-\\-max\\-size 20G \\-\\-dry\\-run\nprodigy clean \\-\\-compress\\-after 2d \\-\\-dry\\-run\nprodigy clean \\-\\-force \\-\\-archive /var/backups/prodigy\n15 3 * * * prodigy clean \\-\\-force \\-\\-quiet\n.fi\n");
            o.push_str(".SH SEE ALSO\n\\fBprodigy\\fR(1), \\fBprodigy\\-worktree\\fR(1), \\fBprodigy\\-archive\\fR(1), \\fBprodigy\\-storage\\fR(5)\n");
        }
        "prodigy-worktree" => {
            header(
                &mut o,
                "prodigy-worktree",
                "list and remove Prodigy worktrees",
            );
            o.push_str(".SH SYNOPSIS\n.B prodigy worktree ls\n[\\fB\\-\\-repo\\fR \\fINAME\\fR|\\fB\\-\\-all\\-repos\\fR] [\\fB\\-\\-json\\fR]\n.br\n");
            o.push_str(".B prodigy worktree clean\n\\fINAME\\fR|\\fB\\-\\-all\\fR [\\fIOPTIONS\\fR]\n.br\n");
            o.push_str(
                ".B prodigy worktree clean\\-orphaned\n[\\fIJOB_ID\\fR] [\\fIOPTIONS\\fR]\n",
            );
            o.push_str(".SH DESCRIPTION\n\\fBls\\fR lists every worktree under the root, nested MapReduce agents included, with its\nrepository, name, branch, owning session and class, age, size and flags: \\fBuncommitted\\fR,\n\\fBuntracked\\fR, \\fBunmerged\\fR (its tip is on no other branch), \\fBlocked\\fR, \\fBprunable\\fR (git records it\nbut its directory is gone), \\fBunregistered\\fR (a directory git does not know: plain data),\n\\fBin\\-use\\fR (a process works in it), \\fBhome\\fR (left by 0.4.4 under \\fI$HOME/.prodigy\\fR while\n\\fBPRODIGY_HOME\\fR points elsewhere). A table on a terminal, tab\\-separated lines otherwise.\n.PP\n");
            o.push_str("\\fBclean\\fR is the Prodigy 0.4.4 form of \\fBprodigy clean \\-\\-worktrees\\fR, through the same engine and\nrules: the worktree named, or all with \\fB\\-\\-all\\fR, of any age unless \\fB\\-\\-older\\-than\\fR is given.\n.PP\n");
            o.push_str("\\fBclean\\-orphaned\\fR removes the worktrees recorded in\n\\fI$PRODIGY_HOME/orphaned_worktrees/{repo}/{job_id}.json\\fR (where a failed removal is recorded),\nunder the same protections, then drops the entries whose worktree is gone and removes a\nregistry left empty. Paths outside \\fI$PRODIGY_HOME/worktrees/\\fR are reported and left. Without\n\\fIJOB_ID\\fR and with several registries it lists them; \\fB\\-f\\fR handles them all.\n");
            o.push_str(".SH OPTIONS OF LS\n");
            man_flags(&mut o, WORKTREE_LS_FLAGS);
            o.push_str(".SH OPTIONS OF CLEAN-ORPHANED\n");
            man_flags(&mut o, WORKTREE_ORPHAN_FLAGS);
            o.push_str(".SH OPTIONS OF CLEAN\n");
            man_flags(&mut o, WORKTREE_CLEAN_FLAGS);
            o.push_str(".PP\n\\fB\\-f\\fR removes worktrees even with uncommitted changes, as in 0.4.4, but never a worktree of an\nactive, resumable or unknown session, never a git\\-locked worktree, and never a branch with\ncommits that are not on another branch.\n");
            man_exit(&mut o);
            o.push_str(".SH SEE ALSO\n\\fBprodigy\\-clean\\fR(1)\n");
        }
        "prodigy-workflow" => return Some(workflow_man_page()),
        other => return docs::group_page(other),
    }
    Some(o)
}

/// Section-5 pages `man/` holds (`man/{page}.5`), generated by [`man_page`].
pub const MAN_PAGES_5: &[&str] = &["prodigy-workflow"];

/// `prodigy-workflow(5)`: the language, its key list generated from
/// [`crate::workflow::keys::KEYS`].
fn workflow_man_page() -> String {
    let version = env!("CARGO_PKG_VERSION");
    let mut o = format!(
        ".TH PRODIGY-WORKFLOW 5 \"\" \"prodigy {version}\" \"File Formats\"\n.SH NAME\n\
         prodigy\\-workflow \\- Prodigy workflow files, as prodigy run reads them\n"
    );
    o.push_str(WORKFLOW_MAN_TEXT);
    o.push_str(".SH KEYS\nEvery key, by where it appears: its value, what it means, whether \\fBprodigy run\\fR\nruns it, and how Prodigy 0.4.4 treats it when that differs.\n");
    o.push_str(&crate::workflow::keys::man_keys(roff));
    o.push_str(".SH SEE ALSO\n\\fBprodigy\\-run\\fR(1), \\fBprodigy\\-validate\\fR(1), \\fBprodigy\\-resume\\fR(1)\n");
    o
}

/// DESCRIPTION and the sections before KEYS of `prodigy-workflow(5)`.
const WORKFLOW_MAN_TEXT: &str = "\
.SH DESCRIPTION
A workflow file is YAML. A standard workflow is a list of steps, or a map with \\fBcommands\\fR
(or \\fBsteps\\fR) and the top\\-level keys below. A MapReduce workflow is a map with
\\fBmode: mapreduce\\fR (the key; 0.4.4 looks for the text anywhere, comments included),
\\fBsetup\\fR, \\fBmap\\fR, \\fBreduce\\fR and \\fBmerge\\fR. A step is a map with one action
(\\fBshell\\fR, \\fBclaude\\fR, \\fBwrite_file\\fR, \\fBforeach\\fR, or a legacy \\fBname\\fR with
\\fBargs\\fR, run as \\fBclaude /name args\\fR), or a bare string (\\fBclaude /name args\\fR), plus
modifiers.
.SH ERRORS AND WARNINGS
Every problem of a file is reported, one line each, as \\fI`FILE`:LINE:COLUMN: MESSAGE\\fR.
Unknown keys are warnings with a \"did you mean\" and are ignored (0.4.4 ignores them
silently); \\fBprodigy validate \\-\\-strict\\fR exits 1 on them. Invalid values, YAML syntax
errors, steps without an action and the removed \\fBanalyze\\fR and \\fBgoal_seek\\fR are errors
(exit 2) before anything runs. A step with \\fBname:\\fR beside an action is that action with a
label (0.4.4 runs it as \\fBclaude /name\\fR); a warning says so. Paths of \\fBwrite_file\\fR,
\\fBworking_dir\\fR and \\fBoutput_file\\fR must be relative and stay inside the worktree.
\\fBwhen\\fR and \\fBmap.filter\\fR are expressions; \\fBsecrets\\fR take the providers \\fBenv\\fR
and \\fBfile\\fR only.
.SH SCHEMA
\\fBprodigy validate \\-\\-schema\\fR prints a JSON Schema (draft 2020\\-12) made from the key list
below; with it saved as \\fIprodigy\\-workflow.schema.json\\fR, a first line
\\fB# yaml\\-language\\-server: $schema=prodigy\\-workflow.schema.json\\fR gives editors completion
and checks.
";

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_strs(args: &[&str]) -> Result<Command> {
        parse(
            std::iter::once("prodigy")
                .chain(args.iter().copied())
                .map(OsString::from),
        )
    }

    fn clean(args: &[&str]) -> CleanArgs {
        match parse_strs(args).unwrap() {
            Command::Clean(a) => a,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn flag_form_and_word_form_mean_the_same() {
        assert_eq!(
            clean(&["clean", "--events", "--older-than", "14d"]),
            clean(&["clean", "events", "--older-than=14d"])
        );
        assert_eq!(
            clean(&["clean", "all", "-n"]),
            clean(&["clean", "--all", "--dry-run"])
        );
        assert!(clean(&["clean", "all"]).types.is_empty());
    }

    #[test]
    fn type_flags_combine() {
        let a = clean(&["clean", "--logs", "--events", "--logs"]);
        assert_eq!(a.types, vec![StorageType::Events, StorageType::Logs]);
    }

    #[test]
    fn bad_values_are_usage_errors_naming_the_forms() {
        let e = parse_strs(&["clean", "--older-than", "-3d"]).unwrap_err();
        assert!(e.to_string().contains("90s, 30m, 24h, 7d, 2w"), "{e}");
        assert_eq!(e.exit(), crate::error::Exit::Usage);
        assert!(parse_strs(&["clean", "--repo", "../x"]).is_err());
        assert!(parse_strs(&["clean", "--repo", "a", "--all-repos"]).is_err());
        assert!(parse_strs(&["clean", "--bogus"]).is_err());
        assert!(parse_strs(&["clean", "events", "dlq"]).is_err());
    }

    #[test]
    fn worktree_clean_needs_a_name_or_all() {
        assert!(parse_strs(&["worktree", "clean"])
            .unwrap_err()
            .to_string()
            .contains("--all"));
        let Command::WorktreeClean(a) =
            parse_strs(&["worktree", "clean", "-f", "session-1"]).unwrap()
        else {
            panic!()
        };
        assert!(a.force && a.discard_changes);
        assert_eq!(a.only_name.as_deref(), Some("session-1"));
        assert_eq!(a.older_than, Some(0));
    }

    #[test]
    fn every_clean_flag_parses() {
        for f in CLEAN_FLAGS.iter().filter(|f| f.long != "help") {
            let mut args = vec!["clean".to_string(), format!("--{}", f.long)];
            if let Some(v) = f.value {
                args.push(example_value(v).into());
            }
            let refs: Vec<&str> = args.iter().map(String::as_str).collect();
            parse_strs(&refs).unwrap_or_else(|e| panic!("--{}: {e}", f.long));
        }
    }

    #[test]
    fn no_command_has_two_flags_with_one_name() {
        for spec in all_specs() {
            let mut longs: Vec<&str> = spec.flags.iter().map(|f| f.long).collect();
            let mut shorts: Vec<char> = spec.flags.iter().filter_map(|f| f.short).collect();
            let (nl, ns) = (longs.len(), shorts.len());
            longs.sort();
            longs.dedup();
            shorts.sort();
            shorts.dedup();
            assert_eq!((longs.len(), shorts.len()), (nl, ns), "{:?}", spec.words);
            for f in spec.flags {
                if let Some(v) = f.value {
                    assert!(
                        v.chars()
                            .all(|c| c.is_ascii_uppercase() || c == '_' || c == '='),
                        "--{} names its value: {v}",
                        f.long
                    );
                }
            }
        }
    }

    #[test]
    fn refused_run_flags_name_what_to_use_instead() {
        for (args, hint) in [
            (&["run", "w.yml", "--args", "x"][..], "use --arg ARG=VALUE"),
            (&["run", "w.yml", "--map", "*.md"][..], "for f in PATTERN"),
            (
                &["run", "w.yml", "--fail-fast"][..],
                "on_item_failure: stop",
            ),
            (&["run", "w.yml", "-n", "3"][..], "run it again"),
        ] {
            let e = parse_strs(args).unwrap_err();
            assert_eq!(e.exit(), crate::error::Exit::Usage);
            assert!(e.to_string().contains(hint), "{e}");
        }
        assert!(matches!(
            parse_strs(&["run", "w.yml", "-n", "1"]),
            Ok(Command::Run(_))
        ));
        let Ok(Command::Resume(r)) = parse_strs(&["run", "w.yml", "--resume", "job-1", "-y"])
        else {
            panic!("--resume is resume")
        };
        assert_eq!((r.id.as_str(), r.yes), ("job-1", true));
        assert!(matches!(
            parse_strs(&["resume-job", "job-1"]),
            Ok(Command::Resume(_))
        ));
        let Ok(Command::Run(o)) = parse_strs(&[
            "run",
            "w.yml",
            "--param",
            "A=1",
            "--params",
            "B=2",
            "--dry-run",
            "--profile",
            "dev",
        ]) else {
            panic!()
        };
        assert_eq!(o.args, [("A".into(), "1".into()), ("B".into(), "2".into())]);
        assert!(o.dry_run);
        assert_eq!(o.profile.as_deref(), Some("dev"));
        assert!(parse_strs(&["validate"]).is_err());
        assert!(matches!(
            parse_strs(&["validate", "--schema"]),
            Ok(Command::Validate(_))
        ));
    }

    #[test]
    fn every_flag_of_every_command_parses_its_documented_example() {
        for spec in all_specs() {
            for f in spec.flags.iter().filter(|f| {
                f.long != "help" && !(spec.words == ["run"] && REFUSED_RUN_FLAGS.contains(&f.long))
            }) {
                let mut args: Vec<String> = spec.words.iter().map(|w| w.to_string()).collect();
                args.extend((0..spec.arity.0).map(|i| format!("id-{i}")));
                if spec.words == ["worktree", "clean"] && f.long != "all" {
                    args.push("--all".into());
                }
                args.push(format!("--{}", f.long));
                if let Some(v) = f.value {
                    args.push(example_value(v).into());
                }
                let refs: Vec<&str> = args.iter().map(String::as_str).collect();
                match parse_strs(&refs) {
                    Ok(Command::Help(_)) | Err(_) => panic!("{args:?} does not parse"),
                    Ok(_) => {}
                }
                if let Some(c) = f.short {
                    let short = format!("-{c}");
                    let refs: Vec<&str> = refs
                        .iter()
                        .map(|a| {
                            if *a == format!("--{}", f.long) {
                                short.as_str()
                            } else {
                                a
                            }
                        })
                        .collect();
                    assert!(parse_strs(&refs).is_ok(), "{refs:?}");
                }
            }
        }
    }

    #[test]
    fn every_man_page_example_parses() {
        for sub in SUBS {
            let ex = docs::example(sub);
            let args: Vec<&str> = ex.split_whitespace().skip(1).collect();
            assert!(
                matches!(parse_strs(&args), Ok(Command::Inspect(..))),
                "{ex}"
            );
        }
    }

    #[test]
    fn every_help_fits_80_columns() {
        let mut texts = vec![main_help(), clean_help(), worktree_help()];
        texts.extend(SUBS.iter().map(sub_help));
        texts.extend(["sessions", "events", "dlq", "checkpoints", "archive"].map(sub_group_help));
        for t in texts {
            for line in t.lines() {
                assert!(
                    line.chars().count() <= 80,
                    "too wide ({}): {line}",
                    line.chars().count()
                );
            }
        }
    }

    #[test]
    fn bash_completion_parses_and_completes_commands_and_flags() {
        let script = docs::completions("bash").unwrap();
        let run = |words: &str, cword: usize| {
            let prog = format!("{script}\nCOMP_WORDS=({words}); COMP_CWORD={cword}; _prodigy; echo \"${{COMPREPLY[*]}}\"");
            match std::process::Command::new("bash")
                .arg("-c")
                .arg(&prog)
                .output()
            {
                Ok(o) => Some(String::from_utf8_lossy(&o.stdout).trim().to_string()),
                Err(_) => None,
            }
        };
        let Some(top) = run("prodigy se", 1) else {
            eprintln!("SKIPPED bash_completion: bash is not installed");
            return;
        };
        assert_eq!(top, "sessions");
        assert_eq!(run("prodigy sessions s", 2).unwrap(), "show");
        assert_eq!(run("prodigy sessions ls --cl", 3).unwrap(), "--class");
        assert_eq!(
            run("prodigy sessions ls --class res", 4).unwrap(),
            "resumable"
        );
        assert_eq!(run("prodigy clean --older", 2).unwrap(), "--older-than");
        assert_eq!(
            run("prodigy worktree clean-o", 2).unwrap(),
            "clean-orphaned"
        );
        assert!(docs::completions("fish")
            .unwrap()
            .contains("-l older-than -r"));
        assert!(docs::completions("zsh")
            .unwrap()
            .starts_with("#compdef prodigy"));
    }

    #[test]
    fn committed_man_pages_match_the_flag_tables() {
        let pages = MAN_PAGES
            .iter()
            .map(|p| (p, 1))
            .chain(MAN_PAGES_5.iter().map(|p| (p, 5)));
        for (page, section) in pages {
            let path = format!("{}/man/{page}.{section}", env!("CARGO_MANIFEST_DIR"));
            let committed = std::fs::read_to_string(&path).unwrap_or_default();
            assert!(
                committed == man_page(page).unwrap(),
                "{path} is stale: run scripts/gen-man.sh"
            );
        }
    }

    #[test]
    fn help_lines_fit_80_columns_and_list_exit_codes() {
        for h in [main_help(), clean_help(), worktree_help()] {
            for line in h.lines() {
                assert!(line.chars().count() <= 80, "too wide: {line}");
            }
            assert!(h.contains("  3  refused"));
        }
    }
}
