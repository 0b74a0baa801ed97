//! Tests of the whole language (run.md §2): the key table's invariants, every form of every
//! key, and every error, each reported with its file:line:col.

use super::keys::{self, Cx as K};
use super::*;
use std::collections::BTreeSet;

fn p(text: &str) -> Result<Workflow> {
    parse(text, Path::new("wf/test.yml"))
}

fn errors(text: &str) -> Vec<String> {
    let c = check(text, Path::new("wf/test.yml"));
    assert!(c.workflow.is_none());
    c.problems
        .into_iter()
        .filter(|p| p.severity == Severity::Error)
        .map(|p| p.text)
        .collect()
}

fn steps(wf: &Workflow) -> &[Step] {
    match &wf.kind {
        Kind::Standard(s) => s,
        Kind::MapReduce(m) => &m.map.agent_template,
    }
}

/// A standard file that uses every key of every context a standard file can hold.
const STANDARD_ALL: &str = r#"
name: all
description: every key
mode: standard
env:
  PLAIN: x
  NUM: 5
  TOKEN: {secret: true, value: abc}
  WORKERS: {command: nproc, cache: true}
  TARGET: {condition: "${PLAIN} == 'x'", when_true: a, when_false: b}
secrets:
  API: API_ENV
  FILE_SECRET: {provider: file, key: /run/secret, version: "2"}
env_files: [.env]
profiles:
  dev: {description: development, PLAIN: y}
merge:
  commands: [{shell: git merge x}]
  timeout: 60
commands:
  - shell: make
    name: build
    description: builds
    commit_required: true
    commit_message: m
    timeout: 30
    working_dir: sub
    env: {A: b}
    capture_output: out
    capture: build
    capture_format: json
    capture_streams: {stdout: true, stderr: true, exit_code: true, success: true, duration: false}
    output_file: out.txt
    on_failure: {claude: /fix, max_attempts: 2, fail_workflow: false, commit_required: true}
    on_success: {shell: echo ok}
    on_exit_code: {1: {shell: echo one}}
    when: "${x} == 1"
    id: b
    outputs: {log: {file_pattern: "*.log"}}
    validate:
      shell: check
      threshold: 90
      result_file: r.json
      timeout: 10
      expected_schema: {}
      on_incomplete:
        claude: /more
        max_attempts: 3
        fail_workflow: false
        commit_required: true
        prompt: go on?
  - write_file: {path: a/b.json, content: "{}", format: json, mode: "0600", create_dirs: true}
  - foreach: {foreach: [a, b], do: [{shell: "echo ${item}"}], parallel: 2, continue_on_error: true, max_items: 1}
  - foreach: {input: ls, do: [{shell: x}]}
  - shell: a
    on_failure: {shell: b, max_retries: 2}
  - shell: a
    on_failure: {commands: [{shell: b}]}
  - shell: a
    validate: {claude: /v, on_incomplete: {shell: fix}}
  - shell: a
    validate: {commands: [{shell: v}], on_incomplete: {commands: [{shell: w}]}}
  - name: legacy
    args: [x]
"#;

const STEPS_FORM: &str = "steps: [{shell: a}]\n";

/// A MapReduce file that uses every MapReduce-only key.
const MAPREDUCE_ALL: &str = r#"
name: mr
description: d
mode: mapreduce
env: {N: 2}
secrets: {S: V}
env_files: [e]
profiles: {p: {A: b}}
setup:
  commands: [{shell: a}]
  timeout: 10
  capture_outputs:
    COUNT: 0
    FILES: {command_index: 0, source: stdout, pattern: "x", json_path: "$.a", max_size: 10, default: "0", multiline: join}
map:
  input: items.json
  json_path: "$[*]"
  filter: "score >= 5"
  sort_by: "score DESC"
  max_items: 3
  offset: 1
  distinct: id
  max_parallel: ${N}
  agent_timeout_secs: 5
  timeout_config: {agent_timeout_secs: 5, cleanup_grace_period_secs: 1, timeout_policy: x, per_command_timeouts: {}, enable_monitoring: true}
  agent_template: {commands: [{shell: "echo ${item}"}]}
reduce: {commands: [{shell: r}]}
merge: [{shell: m}]
error_policy: {on_item_failure: dlq, continue_on_failure: true, max_failures: 2, failure_threshold: 0.5, error_collection: aggregate}
"#;

const MAPREDUCE_SHORTHANDS: &str =
    "mode: mapreduce\nmap: {input: x, agent_template: [{shell: a}]}\n\
    on_item_failure: skip\ncontinue_on_failure: false\nmax_failures: 1\nfailure_threshold: 0.1\n\
    error_collection: x\n";

#[test]
fn the_key_table_is_exactly_what_the_parser_reads() {
    let mut read = BTreeSet::new();
    for text in [
        STANDARD_ALL,
        STEPS_FORM,
        MAPREDUCE_ALL,
        MAPREDUCE_SHORTHANDS,
    ] {
        let (c, r) = check_reading(text);
        let errs: Vec<_> = c
            .problems
            .iter()
            .filter(|p| p.severity == Severity::Error)
            .collect();
        assert!(errs.is_empty(), "{errs:?}");
        let unknown: Vec<_> = c
            .problems
            .iter()
            .filter(|p| p.message.starts_with("unknown key"))
            .collect();
        assert!(unknown.is_empty(), "{unknown:?}");
        read.extend(r);
    }
    let table: BTreeSet<(K, String)> = keys::KEYS
        .iter()
        .map(|k| (k.cx, k.name.to_string()))
        .collect();
    let never_read: Vec<_> = table.difference(&read).collect();
    assert!(
        never_read.is_empty(),
        "in the table, never read: {never_read:?}"
    );
    // `Cx::get` debug-asserts that every key it reads is in the table; this is the other half.
    let not_in_table: Vec<_> = read.difference(&table).collect();
    assert!(not_in_table.is_empty(), "{not_in_table:?}");
    // Every context has keys, and no key is listed twice in one context.
    for &cx in K::ALL {
        let names: Vec<_> = keys::names(cx).collect();
        assert!(!names.is_empty(), "{cx:?}");
        let set: BTreeSet<_> = names.iter().collect();
        assert_eq!(set.len(), names.len(), "{cx:?}");
    }
}

#[test]
fn the_schema_and_the_man_page_come_from_the_table() {
    let s = keys::json_schema();
    assert_eq!(s["$schema"], "https://json-schema.org/draft/2020-12/schema");
    for k in keys::KEYS {
        let defs = &s["$defs"];
        let found = defs
            .as_object()
            .unwrap()
            .values()
            .any(|d| d["properties"].get(k.name).is_some());
        assert!(found, "{} not in the schema", k.name);
    }
    let man = keys::man_keys(|s| s.to_string());
    for k in keys::KEYS {
        assert!(man.contains(&format!("\\fB{}\\fR", k.name)), "{}", k.name);
    }
}

#[test]
fn every_form_parses_into_typed_values() {
    let wf = p(STANDARD_ALL).unwrap();
    assert_eq!(wf.description.as_deref(), Some("every key"));
    assert_eq!(
        wf.env,
        BTreeMap::from([("NUM".into(), "5".into()), ("PLAIN".into(), "x".into())])
    );
    assert_eq!(
        wf.env_values[2],
        ("TOKEN".into(), EnvValue::Secret("abc".into()))
    );
    assert_eq!(
        wf.env_values[3].1,
        EnvValue::Command {
            command: "nproc".into(),
            cache: true
        }
    );
    assert!(
        matches!(&wf.env_values[4].1, EnvValue::Conditional { when_true, .. } if when_true == "a")
    );
    assert_eq!(wf.secrets[0].provider, "env");
    assert_eq!(wf.secrets[0].key, "API_ENV");
    assert_eq!(wf.secrets[1].provider, "file");
    assert_eq!(wf.secrets[1].version.as_deref(), Some("2"));
    assert_eq!(wf.env_files, ["`.env`".trim_matches('`')]);
    assert_eq!(wf.profiles[0].env, [("PLAIN".to_string(), "y".to_string())]);
    assert_eq!(wf.merge_timeout, Some(60));
    let s = steps(&wf);
    let first = &s[0];
    assert_eq!(first.action, Action::Shell("make".into()));
    assert_eq!(first.more.name.as_deref(), Some("build"));
    assert_eq!(first.more.working_dir.as_deref(), Some("sub"));
    assert_eq!(first.capture.as_deref(), Some("out"));
    let c = first.more.capture.as_ref().unwrap();
    assert_eq!((c.name.as_str(), c.format.as_str()), ("build", "json"));
    assert!(c.streams.stderr && !c.streams.duration);
    assert_eq!(first.more.on_exit_code[0].0, 1);
    let when = first.more.when.as_ref().unwrap();
    assert_eq!(
        (when.text.as_str(), when.line, when.col),
        ("${x} == 1", 37, 11)
    );
    let v = first.more.validate.as_ref().unwrap();
    assert_eq!(v.threshold, 90.0);
    assert_eq!(v.steps[0].action, Action::Shell("check".into()));
    let oi = v.on_incomplete.as_ref().unwrap();
    assert_eq!(
        (oi.max_attempts, oi.fail_workflow, oi.commit_required),
        (3, false, true)
    );
    assert_eq!(
        first.more.outputs,
        [("log".to_string(), "*.log".to_string())]
    );
    let Action::WriteFile(w) = &s[1].action else {
        panic!()
    };
    assert_eq!(
        (w.path.as_str(), w.format.as_str(), w.mode, w.create_dirs),
        ("a/b.json", "json", 0o600, true)
    );
    let Action::Foreach(f) = &s[2].action else {
        panic!()
    };
    assert_eq!(f.input, ForeachInput::List(vec!["a".into(), "b".into()]));
    assert_eq!(
        (f.parallel, f.continue_on_error, f.max_items),
        (2, true, Some(1))
    );
    let Action::Foreach(f) = &s[3].action else {
        panic!()
    };
    assert_eq!(
        (&f.input, f.parallel),
        (&ForeachInput::Command("ls".into()), 1)
    );
    assert_eq!(s[4].on_failure.as_ref().unwrap().max_attempts, 2);
    assert_eq!(s[5].on_failure.as_ref().unwrap().steps.len(), 1);
    assert_eq!(s[8].action, Action::Claude("/legacy x".into()));
    // The 0.4.4 difference of `name:` beside an action is a warning.
    assert!(wf.warnings.iter().any(|w| w.contains(
        "`name: build` is a label here; Prodigy 0.4.4 would run this step as `claude /build`"
    )));
}

#[test]
fn on_failure_takes_every_form() {
    let wf = p(concat!(
        "- shell: a\n  on_failure: true\n",
        "- shell: a\n  on_failure: false\n",
        "- shell: a\n  on_failure: echo x\n",
        "- shell: a\n  on_failure: [{shell: x}, {claude: /y}]\n",
        "- shell: a\n  on_failure: {shell: x, capture_output: true}\n",
    ))
    .unwrap();
    let s = steps(&wf);
    assert!(s[0].on_failure.as_ref().unwrap().ignore);
    assert_eq!(s[1].on_failure, None);
    assert_eq!(
        s[2].on_failure.as_ref().unwrap().action,
        Action::Shell("echo x".into())
    );
    assert_eq!(s[3].on_failure.as_ref().unwrap().steps.len(), 2);
    assert_eq!(
        s[4].on_failure.as_ref().unwrap().steps[0]
            .capture
            .as_deref(),
        Some("shell")
    );
}

#[test]
fn capture_streams_as_a_string_and_mapreduce_forms() {
    let wf = p("- shell: a\n  capture: x\n  capture_streams: both\n").unwrap();
    assert!(steps(&wf)[0].more.capture.as_ref().unwrap().streams.stderr);
    let wf = p(MAPREDUCE_ALL).unwrap();
    let Kind::MapReduce(m) = &wf.kind else {
        panic!()
    };
    assert_eq!(m.map.max_parallel, MaxParallel::Var("N".into()));
    assert_eq!(
        m.capture_outputs
            .iter()
            .map(|c| c.name.as_str())
            .collect::<Vec<_>>(),
        ["COUNT", "FILES"]
    );
    assert_eq!(m.capture_outputs[1].multiline, "join");
    assert_eq!(m.capture_outputs[1].max_size, 10);
    assert_eq!(m.setup_timeout, Some(10));
    assert_eq!(m.reduce.len(), 1);
    assert_eq!(wf.merge.as_ref().unwrap().len(), 1);
}

#[test]
fn every_problem_in_a_file_is_reported_one_per_line() {
    let text = concat!(
        "- shell: a\n  timeout: soon\n",
        "- commit_required: true\n",
        "- shell: b\n  capture_format: yaml\n  capture: c\n",
        "- write_file: {path: ../out, content: x}\n",
        "- write_file: {path: /etc/x, content: x}\n",
        "- analyze: {max_cache_age: 1}\n",
        "- shell: c\n  goal_seek: {}\n",
    );
    assert_eq!(
        errors(text),
        [
            "`wf/test.yml`:2:12: `timeout` must be a positive whole number of seconds, found `soon`",
            "`wf/test.yml`:3:3: a step needs an action: `shell:`, `claude:`, `write_file:` or \
             `foreach:` (or a legacy `name:`)",
            "`wf/test.yml`:5:19: `capture_format` must be one of `string`, `number`, `json`, \
             `lines`, `boolean`, found `yaml`",
            "`wf/test.yml`:7:22: `write_file.path` must stay inside the worktree (no `..`), found \
             `../out`",
            "`wf/test.yml`:8:22: `write_file.path` must be relative to the worktree, found `/etc/x`",
            "`wf/test.yml`:9:3: `analyze` was removed from Prodigy (0.4.4 fails such a step with \
             `No command specified`); run the analysis as a `shell` step",
            "`wf/test.yml`:11:3: `goal_seek` was removed from Prodigy in 0.4.1; loop with \
             `validate` and `on_incomplete` instead",
        ]
    );
    // parse() returns them all, one per line.
    let e = p(text).unwrap_err().to_string();
    assert_eq!(e.lines().count(), 7, "{e}");
}

#[test]
fn bad_values_of_the_new_keys_are_errors() {
    let one = |t: &str| {
        let e = errors(t);
        assert_eq!(e.len(), 1, "{e:?}");
        e[0].clone()
    };
    assert_eq!(
        one("secrets: {A: {provider: vault, key: x}}\ncommands: [{shell: a}]\n"),
        "`wf/test.yml`:1:25: secret provider `vault` is not supported; use `env` (an environment \
         variable) or `file` (a file's contents)"
    );
    assert_eq!(
        one("- foreach: {do: [{shell: a}]}\n"),
        "`wf/test.yml`:1:3: `foreach` needs its items: `foreach:` (a command or a list)"
    );
    assert_eq!(
        one("- foreach: {foreach: ls}\n"),
        "`wf/test.yml`:1:3: `foreach` needs `do:` (the steps run for each ${item})"
    );
    assert_eq!(
        one("- shell: a\n  when: [x]\n"),
        "`wf/test.yml`:2:3: `when` must be an expression (a string) or a boolean, found a list"
    );
    assert_eq!(
        one("- shell: a\n  validate: {shell: v, threshold: 150}\n"),
        "`wf/test.yml`:2:35: `threshold` is a percentage from 0 to 100, found `150`"
    );
    assert_eq!(
        one("- shell: a\n  on_exit_code: {x: {shell: b}}\n"),
        "`wf/test.yml`:2:18: `on_exit_code` keys are exit codes (numbers), found `x`"
    );
    assert_eq!(
        one("- shell: a\n  working_dir: ../x\n"),
        "`wf/test.yml`:2:16: `working_dir` must stay inside the worktree (no `..`), found `../x`"
    );
    assert_eq!(
        one("env: {A: {secret: true}}\ncommands: [{shell: a}]\n"),
        "`wf/test.yml`:1:7: `env.A` has `secret` but no `value`"
    );
    assert_eq!(
        one("- write_file: {path: a, content: x, format: toml}\n"),
        "`wf/test.yml`:1:45: `format` must be one of `text`, `json`, `yaml`, found `toml`"
    );
    assert_eq!(
        one("- shell: a\n  write_file: {path: a, content: b}\n"),
        "`wf/test.yml`:2:3: a step has both `shell` and `write_file`; split it into two steps"
    );
}

#[test]
fn a_yaml_syntax_error_is_one_error_with_its_position() {
    let e = errors("- shell: echo \"a: b\n");
    assert_eq!(e.len(), 1);
    assert!(e[0].starts_with("`wf/test.yml`:"), "{e:?}");
}

/// Features the parser notes that `prodigy run` runs.
const RUN_NOW: &[&str] = &[
    "foreach",
    "id",
    "outputs",
    "setup.capture_outputs",
    "capture",
    "capture_format",
    "capture_streams",
    "output_file",
    "on_success",
    "on_exit_code",
    "on_failure: true",
    "on_failure (a list of steps)",
    "on_failure (a step with modifiers)",
    "on_failure.commands",
    "working_dir",
    "write_file",
    "when",
    "validate",
];

#[test]
fn every_feature_the_parser_notes_is_one_run_refuses_and_back() {
    let mut seen = BTreeSet::new();
    for text in [
        STANDARD_ALL,
        MAPREDUCE_ALL,
        "- shell: a\n  on_failure: true\n- shell: b\n  on_failure: [{shell: c}]\n\
         - shell: d\n  on_failure: {shell: e, timeout: 5}\n",
    ] {
        let wf = p(text).unwrap();
        seen.extend(wf.features.into_iter().map(|f| f.0));
    }
    let listed: BTreeSet<String> = crate::run::NOT_RUN_YET
        .iter()
        .map(|s| s.to_string())
        .collect();
    // Features that `prodigy run` runs now (each left NOT_RUN_YET when its execution came).
    let runs: BTreeSet<String> = RUN_NOW.iter().map(|s| s.to_string()).collect();
    assert!(listed.is_disjoint(&runs), "{listed:?}");
    assert_eq!(seen, listed.union(&runs).cloned().collect());
    // Keys run today note nothing.
    let wf = p(
        "- shell: a\n  commit_required: true\n  timeout: 3\n  capture_output: x\n  \
                on_failure: {claude: /fix, max_attempts: 2}\n",
    )
    .unwrap();
    assert!(wf.features.is_empty(), "{:?}", wf.features);
}
