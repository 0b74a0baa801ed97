//! The one table of workflow keys (run.md §2): for every context a key can appear in, its value
//! kind, a one-line doc, whether `prodigy run` runs it, and how Prodigy 0.4.4 differs
//! (`prodigy-0.4.4-steps.md`).
//!
//! The parser asks [`known`] which keys exist (anything else is an "unknown key" warning with a
//! "did you mean" from [`closest`]), `prodigy validate --schema` prints [`json_schema`], and the
//! `prodigy-workflow(5)` man page lists [`KEYS`] through [`man_page`]. A unit test parses a file
//! that uses every key and checks that the parser read exactly the keys of this table.

use serde_json::{json, Map, Value};
use std::fmt::Write as _;

/// Where a key may appear.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Cx {
    /// The top level of a standard workflow given as a map.
    Standard,
    /// The top level of a `mode: mapreduce` workflow.
    MapReduce,
    /// `setup:` in its map form.
    Setup,
    /// One entry of `setup.capture_outputs` in its map form.
    CaptureOutput,
    /// `map:`.
    Map,
    /// `map.timeout_config`.
    TimeoutConfig,
    /// `agent_template:` or `reduce:` in the `{commands}` form.
    Commands,
    /// `merge:` in its map form.
    Merge,
    /// `error_policy:`.
    ErrorPolicy,
    /// A step.
    Step,
    /// `on_failure:` in its map form.
    OnFailure,
    /// `validate:` in its map form.
    Validate,
    /// `validate.on_incomplete` in its map form.
    OnIncomplete,
    /// `write_file:`.
    WriteFile,
    /// `foreach:`.
    Foreach,
    /// `capture_streams:` in its map form.
    CaptureStreams,
    /// One entry of a step's `outputs:`.
    Output,
    /// An `env:` value written as a map (`{secret, value}`, `{command, cache}`,
    /// `{condition, when_true, when_false}`).
    EnvValue,
    /// A `secrets:` value written as a map.
    Secret,
}

impl Cx {
    /// Every context, in the order the man page lists them.
    pub const ALL: &'static [Cx] = &[
        Cx::Standard,
        Cx::MapReduce,
        Cx::Setup,
        Cx::CaptureOutput,
        Cx::Map,
        Cx::TimeoutConfig,
        Cx::Commands,
        Cx::Merge,
        Cx::ErrorPolicy,
        Cx::Step,
        Cx::OnFailure,
        Cx::Validate,
        Cx::OnIncomplete,
        Cx::WriteFile,
        Cx::Foreach,
        Cx::CaptureStreams,
        Cx::Output,
        Cx::EnvValue,
        Cx::Secret,
    ];

    /// How messages name the context ("in a step").
    pub fn what(self) -> &'static str {
        match self {
            Cx::Standard => "the workflow",
            Cx::MapReduce => "a MapReduce workflow",
            Cx::Setup => "`setup`",
            Cx::CaptureOutput => "a `setup.capture_outputs` entry",
            Cx::Map => "`map`",
            Cx::TimeoutConfig => "`map.timeout_config`",
            Cx::Commands => "a `{commands}` phase",
            Cx::Merge => "`merge`",
            Cx::ErrorPolicy => "`error_policy`",
            Cx::Step => "a step",
            Cx::OnFailure => "`on_failure`",
            Cx::Validate => "`validate`",
            Cx::OnIncomplete => "`on_incomplete`",
            Cx::WriteFile => "`write_file`",
            Cx::Foreach => "`foreach`",
            Cx::CaptureStreams => "`capture_streams`",
            Cx::Output => "an `outputs` entry",
            Cx::EnvValue => "an `env` value",
            Cx::Secret => "a `secrets` entry",
        }
    }

    /// The JSON Schema definition name.
    fn def(self) -> &'static str {
        match self {
            Cx::Standard => "standard",
            Cx::MapReduce => "mapreduce",
            Cx::Setup => "setup",
            Cx::CaptureOutput => "capture_output_entry",
            Cx::Map => "map",
            Cx::TimeoutConfig => "timeout_config",
            Cx::Commands => "commands_phase",
            Cx::Merge => "merge",
            Cx::ErrorPolicy => "error_policy",
            Cx::Step => "step_map",
            Cx::OnFailure => "on_failure",
            Cx::Validate => "validate",
            Cx::OnIncomplete => "on_incomplete",
            Cx::WriteFile => "write_file",
            Cx::Foreach => "foreach",
            Cx::CaptureStreams => "capture_streams",
            Cx::Output => "output",
            Cx::EnvValue => "env_value_map",
            Cx::Secret => "secret_map",
        }
    }
}

/// The value a key takes (for the schema and the man page; the parser checks each by hand).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Text.
    Str,
    /// `true` or `false`.
    Bool,
    /// A whole number, 0 or more.
    Uint,
    /// Any number.
    Number,
    /// One of these words.
    Enum(&'static [&'static str]),
    /// A list of steps.
    Steps,
    /// One step.
    Step,
    /// A map with the keys of this context.
    Obj(Cx),
    /// A list of steps or a map with the keys of this context.
    StepsOr(Cx),
    /// A string or a map with the keys of this context.
    StrOr(Cx),
    /// A number, or `$NAME` / `${NAME}`.
    UintOrVar,
    /// `true`, `false` or a variable name.
    BoolOrName,
    /// `true`, `false` or a whole number.
    BoolOrUint,
    /// A string, or a list of strings.
    StrOrList,
    /// A list of strings.
    List,
    /// `NAME: value` where value is a string, number, boolean or an [`Cx::EnvValue`] map.
    Env,
    /// `NAME: "ENV_VAR"` or a [`Cx::Secret`] map.
    Secrets,
    /// `NAME: {description?, KEY: value...}`.
    Profiles,
    /// `NAME: index` or a [`Cx::CaptureOutput`] map.
    CaptureOutputs,
    /// `NAME: {file_pattern}`.
    Outputs,
    /// `CODE: step`.
    ExitCodes,
    /// `on_failure`'s forms: bool, string, list of steps, or a map.
    OnFailure,
    /// A string or a boolean (`when`).
    StrOrBool,
    /// Anything (kept, not read).
    Any,
}

/// Whether `prodigy run` runs a key (what `validate` and `--dry-run` accept is every key).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Run {
    /// Run as documented.
    Yes,
    /// Parsed and checked; `prodigy run` refuses a file that uses it (see
    /// `crate::run::NOT_RUN_YET`).
    NotYet,
    /// Accepted and ignored with a warning (0.4.4 ignores it too).
    Ignored,
    /// A label or a structural key: nothing to run.
    Label,
}

/// One key of the language.
#[derive(Clone, Copy, Debug)]
pub struct Key {
    /// Where it appears.
    pub cx: Cx,
    /// The key.
    pub name: &'static str,
    /// Its value.
    pub kind: Kind,
    /// What it means, one line.
    pub doc: &'static str,
    /// Whether `prodigy run` runs it.
    pub run: Run,
    /// How Prodigy 0.4.4 treats it, one line ("" when the same).
    pub v044: &'static str,
}

const fn k(
    cx: Cx,
    name: &'static str,
    kind: Kind,
    run: Run,
    doc: &'static str,
    v044: &'static str,
) -> Key {
    Key {
        cx,
        name,
        kind,
        doc,
        run,
        v044,
    }
}

use Cx as C;
use Kind as K;
use Run as R;

const FORMATS: &[&str] = &["string", "number", "json", "lines", "boolean"];
const FILE_FORMATS: &[&str] = &["text", "json", "yaml"];
const MODES: &[&str] = &["standard", "mapreduce"];
const ITEM_FAILURE: &[&str] = &["dlq", "skip", "stop"];
const PROVIDERS: &[&str] = &["env", "file"];
const SOURCES: &[&str] = &["stdout", "stderr", "both"];
const MULTILINE: &[&str] = &["preserve", "join", "first_line", "last_line", "array"];

/// Every key of the language (one line each: context, key, value, run, doc, 0.4.4).
#[rustfmt::skip]
pub const KEYS: &[Key] = &[
    // Standard top level.
    k(C::Standard, "name", K::Str, R::Label, "the workflow's name (default: the file stem)", ""),
    k(C::Standard, "description", K::Str, R::Label, "what the workflow does (shown by --dry-run)", "ignored"),
    k(C::Standard, "mode", K::Enum(MODES), R::Label, "`standard` (the default) or `mapreduce`", "any text containing `mode: mapreduce` switches the parser"),
    k(C::Standard, "commands", K::Steps, R::Yes, "the steps, in order", ""),
    k(C::Standard, "steps", K::Steps, R::Yes, "another name for `commands`", "not accepted: the file fails"),
    k(C::Standard, "env", K::Env, R::Yes, "environment of every step; plain values are also ${NAME}", "a non-string value silently drops env, secrets, env_files, profiles and merge"),
    k(C::Standard, "secrets", K::Secrets, R::Yes, "secret environment variables, masked as *** in output", "never masked"),
    k(C::Standard, "env_files", K::List, R::Yes, "dotenv files read before `env`", ""),
    k(C::Standard, "profiles", K::Profiles, R::Yes, "named env overrides chosen with --profile", "parsed, never applied (no flag selects one)"),
    k(C::Standard, "merge", K::StepsOr(C::Merge), R::Yes, "steps that replace the default merge; checkpointed after each step (session record `workflow_data.merge`), so a resume continues after the last completed one with its captures", ""),
    // MapReduce top level.
    k(C::MapReduce, "name", K::Str, R::Label, "the workflow's name (required by 0.4.4)", ""),
    k(C::MapReduce, "description", K::Str, R::Label, "what the workflow does", "ignored"),
    k(C::MapReduce, "mode", K::Enum(MODES), R::Label, "`mapreduce`", "chosen by a substring of the text"),
    k(C::MapReduce, "env", K::Env, R::Yes, "environment of every phase; plain values are also ${NAME}", "map values fail the file"),
    k(C::MapReduce, "secrets", K::Secrets, R::Yes, "secret environment variables, masked as ***", "reach setup only; never masked"),
    k(C::MapReduce, "env_files", K::List, R::Yes, "dotenv files read before `env`", "reach setup only"),
    k(C::MapReduce, "profiles", K::Profiles, R::Yes, "named env overrides chosen with --profile", "never applied"),
    k(C::MapReduce, "setup", K::StepsOr(C::Setup), R::Yes, "steps run in the session worktree before the map", ""),
    k(C::MapReduce, "map", K::Obj(C::Map), R::Yes, "the work items and the steps each agent runs", ""),
    k(C::MapReduce, "reduce", K::StepsOr(C::Commands), R::Yes, "steps run after the map", ""),
    k(C::MapReduce, "merge", K::StepsOr(C::Merge), R::Yes, "steps that replace the default merge; checkpointed after each step (session record `workflow_data.merge`), so a resume continues after the last completed one with its captures", ""),
    k(C::MapReduce, "error_policy", K::Obj(C::ErrorPolicy), R::Yes, "what a failed work item does", "parsed, never applied"),
    k(C::MapReduce, "on_item_failure", K::Enum(ITEM_FAILURE), R::Yes, "shorthand of error_policy.on_item_failure", "never applied; also `retry` and custom names"),
    k(C::MapReduce, "continue_on_failure", K::Bool, R::Yes, "shorthand of error_policy.continue_on_failure", "never applied"),
    k(C::MapReduce, "max_failures", K::Uint, R::Yes, "shorthand of error_policy.max_failures", "never applied"),
    k(C::MapReduce, "failure_threshold", K::Number, R::Yes, "shorthand of error_policy.failure_threshold (a fraction 0..1)", "never applied"),
    k(C::MapReduce, "error_collection", K::Any, R::Ignored, "shorthand of error_policy.error_collection", "logged only"),
    // setup / phases.
    k(C::Setup, "commands", K::Steps, R::Yes, "the setup steps", ""),
    k(C::Setup, "timeout", K::Uint, R::Yes, "seconds for the whole setup phase (from its start in this process): then the running step is stopped (SIGTERM, SIGKILL 5 s later) and setup fails", ""),
    k(C::Setup, "capture_outputs", K::CaptureOutputs, R::Yes, "variables made from setup steps' output when setup ends: ${NAME} in agents, reduce and merge (kept in the setup checkpoint)", "reach agents only, not reduce"),
    k(C::CaptureOutput, "command_index", K::Uint, R::Yes, "which setup step (0-based; must exist)", ""),
    k(C::CaptureOutput, "source", K::Enum(SOURCES), R::Yes, "which stream: stdout (default), stderr, or both (stdout, newline, stderr)", "also `combined`"),
    k(C::CaptureOutput, "pattern", K::Str, R::Yes, "a regex; its first group (or match) is the value", ""),
    k(C::CaptureOutput, "json_path", K::Str, R::Yes, "a JSONPath into the output parsed as JSON; the first value selected", ""),
    k(C::CaptureOutput, "max_size", K::Uint, R::Yes, "most bytes kept (default 1 MiB)", ""),
    k(C::CaptureOutput, "default", K::Str, R::Yes, "the value when pattern or json_path select nothing (else that fails setup)", ""),
    k(C::CaptureOutput, "multiline", K::Enum(MULTILINE), R::Yes, "preserve (default), join (with spaces), first_line, last_line, array", ""),
    k(C::Commands, "commands", K::Steps, R::Yes, "the phase's steps", "deprecated form (a warning there)"),
    k(C::Merge, "commands", K::Steps, R::Yes, "the merge steps", ""),
    k(C::Merge, "timeout", K::Uint, R::Yes, "seconds for the whole merge (from its start in this process): then the running step is stopped (SIGTERM, SIGKILL 5 s later) and the merge fails", ""),
    // map.
    k(C::Map, "input", K::Str, R::Yes, "a JSON file in the session worktree, else a command whose output lists the items", ""),
    k(C::Map, "json_path", K::Str, R::Yes, "JSONPath (RFC 9535) selecting the items", ""),
    k(C::Map, "filter", K::Str, R::Yes, "keep items for which this expression holds", "a different, weaker grammar"),
    k(C::Map, "sort_by", K::Str, R::Yes, "`f1 DESC, f2 ASC NULLS FIRST`", ""),
    k(C::Map, "max_items", K::Uint, R::Yes, "keep at most this many items", ""),
    k(C::Map, "offset", K::Uint, R::Yes, "skip this many items first", "parsed, ignored"),
    k(C::Map, "distinct", K::Str, R::Yes, "keep the first item of each value of this field (after sort_by)", "parsed, ignored"),
    k(C::Map, "max_parallel", K::UintOrVar, R::Yes, "agents at once (default 10), or `${VAR}` of env", ""),
    k(C::Map, "agent_timeout_secs", K::Uint, R::Ignored, "seconds per agent", "advisory only (logged)"),
    k(C::Map, "timeout_config", K::Obj(C::TimeoutConfig), R::Ignored, "timeouts per agent", "advisory only (logged)"),
    k(C::Map, "agent_template", K::StepsOr(C::Commands), R::Yes, "the steps each agent runs for its item", ""),
    k(C::TimeoutConfig, "agent_timeout_secs", K::Uint, R::Ignored, "seconds per agent", "advisory only"),
    k(C::TimeoutConfig, "cleanup_grace_period_secs", K::Uint, R::Ignored, "seconds between stop and kill", "advisory only"),
    k(C::TimeoutConfig, "timeout_policy", K::Str, R::Ignored, "what a timeout does", "advisory only"),
    k(C::TimeoutConfig, "per_command_timeouts", K::Any, R::Ignored, "timeouts of single commands", "advisory only"),
    k(C::TimeoutConfig, "enable_monitoring", K::Bool, R::Ignored, "timeout monitoring", "advisory only"),
    // error_policy.
    k(C::ErrorPolicy, "on_item_failure", K::Enum(ITEM_FAILURE), R::Yes, "`dlq` (default), `skip` or `stop`", "never applied; also `retry` and custom names"),
    k(C::ErrorPolicy, "continue_on_failure", K::Bool, R::Yes, "false: start no item after a failure", "never applied"),
    k(C::ErrorPolicy, "max_failures", K::Uint, R::Yes, "stop starting items after this many failures", "never applied"),
    k(C::ErrorPolicy, "failure_threshold", K::Number, R::Yes, "stop when this fraction (0..1) of items failed", "never applied"),
    k(C::ErrorPolicy, "error_collection", K::Any, R::Ignored, "how errors are gathered", "logged only"),
    // Step: actions.
    k(C::Step, "shell", K::Str, R::Yes, "run this text with `sh -c` in the worktree", ""),
    k(C::Step, "claude", K::Str, R::Yes, "run Claude with this prompt (`/command args`)", ""),
    k(C::Step, "write_file", K::Obj(C::WriteFile), R::Yes, "write a file in the worktree, crash-safely (temp, fsync, rename); logs `Wrote N bytes to PATH`", "dropped in standard workflows (the step fails)"),
    k(C::Step, "foreach", K::Obj(C::Foreach), R::Yes, "run `do` once per item in the worktree with ${item}, ${index} (0-based), ${total} and the workflow's variables (in an agent, ${item} inside `do` is the foreach item; the work item's ${item_id} stays); finished items are checkpointed and not run again by resume", "`do` runs in prodigy's cwd with only item/index/total, only shell and claude run in it and their modifiers are ignored; refused in agents and reduce; every item runs before a failure stops the step"),
    k(C::Step, "args", K::StrOrList, R::Label, "arguments of a legacy `name:` step (`claude /name args`)", ""),
    // Step: modifiers.
    k(C::Step, "name", K::Str, R::Label, "a label; alone (with `args`) a legacy `claude /name` step", "any step with `name:` becomes `claude /name`"),
    k(C::Step, "description", K::Str, R::Label, "a label", "ignored"),
    k(C::Step, "commit_required", K::Bool, R::Yes, "the step fails unless it made a commit", ""),
    k(C::Step, "timeout", K::Uint, R::Yes, "seconds before the step is stopped", "dropped in standard workflows, agents and reduce"),
    k(C::Step, "working_dir", K::Str, R::Yes, "run in this directory of the worktree (relative, interpolated, no `..`, no symlink followed; a bad one fails the step; its handlers run there too)", "ignored in standard workflows"),
    k(C::Step, "env", K::Env, R::Yes, "extra environment of this step, over the workflow's (values interpolated, also ${NAME} in the step's text; its handlers get it too)", "ignored in standard workflows"),
    k(C::Step, "capture_output", K::BoolOrName, R::Yes, "keep stdout as ${shell.output} / ${claude.output} / ${NAME}", ""),
    k(C::Step, "capture", K::Str, R::Yes, "keep the output as ${NAME}, typed by capture_format, with ${NAME.stderr|exit_code|success|duration}; output that does not fit the format fails the step", "ignored in standard workflows"),
    k(C::Step, "capture_format", K::Enum(FORMATS), R::Yes, "how `capture` reads the output (read back up to 1 MiB): string, number, json (${NAME.field}), lines (${NAME[0]}), boolean", "a JSON integer interpolates as 4.0"),
    k(C::Step, "capture_streams", K::StrOr(C::CaptureStreams), R::Yes, "which streams `capture` keeps", "a string in standard workflows, a map in MapReduce"),
    k(C::Step, "output_file", K::Str, R::Yes, "write stdout to this file of the worktree (relative to working_dir, interpolated; parents created; no symlink followed)", "honoured in standard steps and setup only"),
    k(C::Step, "on_failure", K::OnFailure, R::Yes, "what runs when the step fails (for an exit code without an on_exit_code entry): true ignores the failure; a command, a step or a list of steps, retried up to max_attempts; the step is then recovered unless fail_workflow", "only `{claude, ...}` parses in standard workflows"),
    k(C::Step, "on_success", K::Step, R::Yes, "a step run after this one succeeds (and its commit_required is met); when it fails the step fails", "dropped in standard workflows"),
    k(C::Step, "on_exit_code", K::ExitCodes, R::Yes, "a step per exit code; the entry for the step's own exit code runs and decides (succeeds: the step succeeded; fails: the step failed, on_failure does not run)", "honoured in setup only, after on_failure, with the recovered step's code"),
    k(C::Step, "when", K::StrOrBool, R::Yes, "skip the step (and its handlers) when this expression is false; ${...} is replaced first; a skipped step counts as done", "never evaluated"),
    k(C::Step, "validate", K::StepsOr(C::Validate), R::Yes, "after the step succeeded, run the validator; its JSON completion_percentage (from result_file or stdout; other output counts by exit status: 0 is 100, else 0) must reach threshold; ${validation.*} reach on_incomplete and later steps; unmet after the attempts fails the step (an agent's item goes to the DLQ) unless fail_workflow is false", "ignored in agents and reduce; output that is not the JSON counts as complete; no on_incomplete only warns"),
    k(C::Step, "id", K::Str, R::Yes, "name for `outputs` (${ID.NAME})", "dropped"),
    k(C::Step, "outputs", K::Outputs, R::Yes, "files the step created or changed (worktree changes and its commits), as ${ID.NAME} (kept in the checkpoint)", "dropped: ${ID.NAME} reaches the command verbatim"),
    k(C::Step, "commit_message", K::Str, R::Ignored, "accepted, not used", ""),
    // on_failure.
    k(C::OnFailure, "shell", K::Str, R::Yes, "the handler, a shell command", "fails a standard file"),
    k(C::OnFailure, "claude", K::Str, R::Yes, "the handler, a Claude prompt", ""),
    k(C::OnFailure, "commands", K::Steps, R::Yes, "the handler, a list of steps", ""),
    k(C::OnFailure, "max_attempts", K::Uint, R::Yes, "how often the handler may run (default 1)", ""),
    k(C::OnFailure, "max_retries", K::Uint, R::Yes, "another name for max_attempts", ""),
    k(C::OnFailure, "fail_workflow", K::Bool, R::Yes, "fail even when the handler succeeds", ""),
    k(C::OnFailure, "commit_required", K::Bool, R::Yes, "each handler attempt must make a commit", ""),
    // validate.
    k(C::Validate, "shell", K::Str, R::Yes, "the validator, a shell command", ""),
    k(C::Validate, "claude", K::Str, R::Yes, "the validator, a Claude prompt", ""),
    k(C::Validate, "commands", K::Steps, R::Yes, "the validator, a list of steps", ""),
    k(C::Validate, "threshold", K::Number, R::Yes, "percent complete needed (default 100)", ""),
    k(C::Validate, "result_file", K::Str, R::Yes, "read the result JSON from this file (relative to the worktree, interpolated, no `..`, no symlink followed; missing: 0%) instead of stdout", "relative to the working_dir; missing file: failed"),
    k(C::Validate, "timeout", K::Uint, R::Yes, "seconds for a shell/claude validator", "shell only"),
    k(C::Validate, "expected_schema", K::Any, R::Ignored, "accepted, not used", "parsed, never read"),
    k(C::Validate, "on_incomplete", K::StepsOr(C::OnIncomplete), R::Yes, "what runs while the validation is unmet", ""),
    k(C::OnIncomplete, "shell", K::Str, R::Yes, "the handler, a shell command", ""),
    k(C::OnIncomplete, "claude", K::Str, R::Yes, "the handler, a Claude prompt", ""),
    k(C::OnIncomplete, "commands", K::Steps, R::Yes, "the handler, a list of steps", ""),
    k(C::OnIncomplete, "max_attempts", K::Uint, R::Yes, "handler runs at most (default 2); ${validation.attempt_number} is the run (1, 2, ...), kept across a resume", ""),
    k(C::OnIncomplete, "fail_workflow", K::Bool, R::Yes, "fail the step when still unmet (default true); false: a warning and the step succeeds", ""),
    k(C::OnIncomplete, "commit_required", K::Bool, R::Yes, "each handler run must make a commit (else it counts as failed and the attempts end)", "a run without a commit fails the workflow even under fail_workflow: false"),
    k(C::OnIncomplete, "prompt", K::Str, R::Yes, "written to the log when still unmet (nothing is asked)", "asked once; the answer is ignored"),
    // write_file.
    k(C::WriteFile, "path", K::Str, R::Yes, "the file, relative to the worktree or working_dir (interpolated; no `..`, no symlink followed)", "an absolute path is allowed"),
    k(C::WriteFile, "content", K::Str, R::Yes, "what to write (interpolated; no newline added)", ""),
    k(C::WriteFile, "format", K::Enum(FILE_FORMATS), R::Yes, "`json`/`yaml` content is checked and pretty-printed; content that does not parse fails the step", ""),
    k(C::WriteFile, "mode", K::Str, R::Yes, "octal permissions (default 0644)", ""),
    k(C::WriteFile, "create_dirs", K::Bool, R::Yes, "create missing parent directories (else a missing one fails the step)", ""),
    // foreach.
    k(C::Foreach, "foreach", K::StrOrList, R::Yes, "the items: a list (each item interpolated), or a command (interpolated) run in the worktree whose stdout is a JSON array or one item per non-blank line (a non-zero exit fails the step)", "the command runs in prodigy's cwd; no JSON array"),
    k(C::Foreach, "input", K::StrOrList, R::Yes, "another name for `foreach`", "not accepted: the file fails"),
    k(C::Foreach, "do", K::Steps, R::Yes, "the steps run for each ${item}, every action and modifier", "only shell and claude, modifiers ignored"),
    k(C::Foreach, "parallel", K::BoolOrUint, R::Yes, "items at once: false 1, true 10, or N", ""),
    k(C::Foreach, "continue_on_error", K::Bool, R::Yes, "run every item even after one failed; the step still fails at the end when any item failed (its own on_failure decides); without it no item starts after a failure", "without it every item still runs before the step fails"),
    k(C::Foreach, "max_items", K::Uint, R::Yes, "keep the first N items", ""),
    // capture_streams.
    k(C::CaptureStreams, "stdout", K::Bool, R::Yes, "keep stdout (default true)", ""),
    k(C::CaptureStreams, "stderr", K::Bool, R::Yes, "keep stderr as ${NAME.stderr}", ""),
    k(C::CaptureStreams, "exit_code", K::Bool, R::Yes, "keep ${NAME.exit_code}", ""),
    k(C::CaptureStreams, "success", K::Bool, R::Yes, "keep ${NAME.success}", ""),
    k(C::CaptureStreams, "duration", K::Bool, R::Yes, "keep ${NAME.duration} (seconds)", "always 0"),
    // outputs.
    k(C::Output, "file_pattern", K::Str, R::Yes, "glob (*, ?, **, [a-z]) of the file; without `/` it matches the file name in any directory; no match fails the step; several: the newest (mtime, then path)", "dropped"),
    // env value maps.
    k(C::EnvValue, "secret", K::Bool, R::Yes, "mask the value as ***", "a map value fails the file"),
    k(C::EnvValue, "value", K::Str, R::Yes, "the value of a secret", ""),
    k(C::EnvValue, "command", K::Str, R::Yes, "the value is this command's output", "unreachable from YAML"),
    k(C::EnvValue, "cache", K::Bool, R::Yes, "run the command once per run", "unreachable from YAML"),
    k(C::EnvValue, "condition", K::Str, R::Yes, "an expression choosing when_true or when_false", "unreachable from YAML"),
    k(C::EnvValue, "when_true", K::Str, R::Yes, "the value when the condition holds", "unreachable from YAML"),
    k(C::EnvValue, "when_false", K::Str, R::Yes, "the value otherwise", "unreachable from YAML"),
    // secrets.
    k(C::Secret, "provider", K::Enum(PROVIDERS), R::Yes, "`env` (an environment variable) or `file`", "also vault, aws and custom stores"),
    k(C::Secret, "key", K::Str, R::Yes, "the variable name or the file path", ""),
    k(C::Secret, "version", K::Str, R::Yes, "the secret's version (accepted; `env` and `file` have none)", ""),
];

/// The entry of `name` in `cx`.
pub fn get(cx: Cx, name: &str) -> Option<&'static Key> {
    KEYS.iter().find(|k| k.cx == cx && k.name == name)
}

/// True when `name` is a key of `cx`.
pub fn known(cx: Cx, name: &str) -> bool {
    get(cx, name).is_some()
}

/// The keys of `cx`, in table order.
pub fn names(cx: Cx) -> impl Iterator<Item = &'static str> {
    KEYS.iter().filter(move |k| k.cx == cx).map(|k| k.name)
}

/// The key of `cx` within edit distance 2 of `name` (for "did you mean").
pub fn closest(cx: Cx, name: &str) -> Option<&'static str> {
    names(cx)
        .map(|c| (edit_distance(name, c), c))
        .filter(|(d, _)| *d <= 2)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

fn r(cx: Cx) -> Value {
    json!({"$ref": format!("#/$defs/{}", cx.def())})
}

fn kind_schema(kind: Kind) -> Value {
    let steps = json!({"$ref": "#/$defs/steps"});
    match kind {
        K::Str => json!({"type": "string"}),
        K::Bool => json!({"type": "boolean"}),
        K::Uint => json!({"type": "integer", "minimum": 0}),
        K::Number => json!({"type": "number"}),
        K::Enum(words) => json!({"enum": words}),
        K::Steps => steps,
        K::Step => json!({"$ref": "#/$defs/step"}),
        K::Obj(cx) => r(cx),
        K::StepsOr(cx) => json!({"anyOf": [steps, r(cx)]}),
        K::StrOr(cx) => json!({"anyOf": [{"type": "string"}, r(cx)]}),
        K::UintOrVar => json!({"anyOf": [{"type": "integer", "minimum": 1},
            {"type": "string", "pattern": "^(\\d+|\\$[A-Za-z_][A-Za-z0-9_]*|\\$\\{[A-Za-z_][A-Za-z0-9_]*\\})$"}]}),
        K::BoolOrName => json!({"anyOf": [{"type": "boolean"},
            {"type": "string", "pattern": "^[A-Za-z_][A-Za-z0-9_]*$"}]}),
        K::BoolOrUint => json!({"anyOf": [{"type": "boolean"}, {"type": "integer", "minimum": 1}]}),
        K::StrOrList => {
            json!({"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": ["string", "number", "boolean"]}}]})
        }
        K::List => json!({"type": "array", "items": {"type": "string"}}),
        K::Env => json!({"type": "object", "additionalProperties":
            {"anyOf": [{"type": ["string", "number", "boolean"]}, r(C::EnvValue)]}}),
        K::Secrets => json!({"type": "object", "additionalProperties":
            {"anyOf": [{"type": "string"}, r(C::Secret)]}}),
        K::Profiles => json!({"type": "object", "additionalProperties": {"type": "object",
            "additionalProperties": {"type": ["string", "number", "boolean"]}}}),
        K::CaptureOutputs => json!({"type": "object", "additionalProperties":
            {"anyOf": [{"type": "integer", "minimum": 0}, r(C::CaptureOutput)]}}),
        K::Outputs => json!({"type": "object", "additionalProperties": r(C::Output)}),
        K::ExitCodes => json!({"type": "object", "propertyNames": {"pattern": "^-?\\d+$"},
            "additionalProperties": {"$ref": "#/$defs/step"}}),
        K::OnFailure => {
            json!({"anyOf": [{"type": "boolean"}, {"type": "string"}, steps, r(C::OnFailure)]})
        }
        K::StrOrBool => json!({"type": ["string", "boolean"]}),
        K::Any => json!({}),
    }
}

/// A JSON Schema (draft 2020-12) of the language, for editors (`# yaml-language-server:
/// $schema=…`). Unknown keys are allowed, as `prodigy run` allows them (with a warning).
pub fn json_schema() -> Value {
    let mut defs = Map::new();
    for &cx in Cx::ALL {
        let mut props = Map::new();
        for key in KEYS.iter().filter(|x| x.cx == cx) {
            let mut s = kind_schema(key.kind);
            if let Value::Object(o) = &mut s {
                o.insert("description".into(), json!(key.doc));
            }
            props.insert(key.name.to_string(), s);
        }
        defs.insert(
            cx.def().to_string(),
            json!({"type": "object", "properties": props}),
        );
    }
    defs.insert(
        "steps".into(),
        json!({"type": ["array", "null"], "items": {"$ref": "#/$defs/step"}}),
    );
    defs.insert(
        "step".into(),
        json!({"anyOf": [{"type": "string", "description": "a legacy `claude /name args` step"},
            r(C::Step)]}),
    );
    // The MapReduce form is told apart by `mode: mapreduce`.
    if let Some(Value::Object(m)) = defs.get_mut("mapreduce") {
        m.insert("required".into(), json!(["mode", "map"]));
        if let Some(Value::Object(p)) = m.get_mut("properties") {
            p.insert(
                "mode".into(),
                json!({"const": "mapreduce", "description": "`mapreduce`"}),
            );
        }
    }
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://github.com/iepathos/prodigy/workflow.schema.json",
        "title": "Prodigy workflow",
        "description": "A Prodigy workflow file as `prodigy run` reads it (prodigy-workflow(5)).",
        "anyOf": [
            {"$ref": "#/$defs/steps"},
            {"$ref": "#/$defs/mapreduce"},
            {"allOf": [{"$ref": "#/$defs/standard"},
                {"not": {"properties": {"mode": {"const": "mapreduce"}}, "required": ["mode"]}}]}
        ],
        "$defs": defs,
    })
}

fn kind_text(kind: Kind) -> String {
    match kind {
        K::Str => "string".into(),
        K::Bool => "boolean".into(),
        K::Uint => "whole number".into(),
        K::Number => "number".into(),
        K::Enum(w) => w.join("|"),
        K::Steps => "list of steps".into(),
        K::Step => "step".into(),
        K::Obj(cx) => format!("map ({})", cx.what().trim_matches('`')),
        K::StepsOr(cx) => format!("list of steps or map ({})", cx.what().trim_matches('`')),
        K::StrOr(cx) => format!("string or map ({})", cx.what().trim_matches('`')),
        K::UintOrVar => "number or ${VAR}".into(),
        K::BoolOrName => "true|false|NAME".into(),
        K::BoolOrUint => "true|false|N".into(),
        K::StrOrList => "string or list".into(),
        K::List => "list of strings".into(),
        K::Env => "NAME: value".into(),
        K::Secrets => "NAME: ENV_VAR or map".into(),
        K::Profiles => "NAME: {KEY: value}".into(),
        K::CaptureOutputs => "NAME: index or map".into(),
        K::Outputs => "NAME: {file_pattern}".into(),
        K::ExitCodes => "CODE: step".into(),
        K::OnFailure => "true|false|string|list|map".into(),
        K::StrOrBool => "string or boolean".into(),
        K::Any => "anything".into(),
    }
}

/// The KEYS section of `prodigy-workflow(5)`, in roff: one subsection per context, one entry
/// per key with its value, meaning, whether `prodigy run` runs it and how 0.4.4 differs.
pub fn man_keys(roff: impl Fn(&str) -> String) -> String {
    let mut out = String::new();
    for &cx in Cx::ALL {
        writeln!(
            out,
            ".SS {}",
            roff(&format!("In {}", cx.what().replace('`', "")))
        )
        .unwrap();
        for key in KEYS.iter().filter(|x| x.cx == cx) {
            let run = match key.run {
                R::Yes => "run",
                R::NotYet => "validate and \\-\\-dry\\-run only; prodigy run refuses it",
                R::Ignored => "accepted and ignored (a warning)",
                R::Label => "a label",
            };
            write!(
                out,
                ".TP\n\\fB{}\\fR (\\fI{}\\fR)\n{}; {}.",
                roff(key.name),
                roff(&kind_text(key.kind)),
                roff(key.doc),
                run
            )
            .unwrap();
            if !key.v044.is_empty() {
                write!(out, " 0.4.4: {}.", roff(key.v044)).unwrap();
            }
            out.push('\n');
        }
    }
    out
}
