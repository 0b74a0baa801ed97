//! `prodigy validate` and `prodigy run --dry-run` (run.md §2 "Checking without running"): every
//! problem with file:line:col and the exit status; the JSON and the schema; a dry run prints
//! the plan and writes nothing anywhere.

use crate::common::*;
use std::fs;
use std::path::{Path, PathBuf};

fn write(env: &Env, name: &str, text: &str) -> PathBuf {
    let p = env.dir.join(name);
    fs::write(&p, text).unwrap();
    p
}

const VALID: &str = "- shell: echo hi\n  commit_required: false\n";
const WARNS: &str = "- shell: echo hi\n  comit_required: true\n";
const INVALID: &str = "- shell: a\n  timeout: soon\n- commit_required: true\n- analyze: {}\n";

#[test]
fn validate_prints_every_problem_with_its_position_and_exits_by_severity() {
    let env = Env::new("validate-text");
    let valid = write(&env, "valid.yml", VALID);
    let warns = write(&env, "warns.yml", WARNS);
    let invalid = write(&env, "invalid.yml", INVALID);
    let p = |x: &Path| x.to_str().unwrap().to_string();

    let o = env.run(&["validate", &p(&valid)]);
    assert_eq!(o.code, 0, "{o:?}");
    assert_eq!(
        o.stdout,
        format!(
            "`{}`: valid, standard workflow (0 error(s), 0 warning(s))\n",
            p(&valid)
        )
    );
    assert_eq!(o.stderr, "");

    let o = env.run(&["validate", &p(&warns)]);
    assert_eq!(o.code, 0, "{o:?}");
    assert_eq!(
        o.stdout,
        format!(
            "`{w}`:2:3: warning: unknown key `comit_required` in a step (did you mean \
             `commit_required`?); it is ignored\n`{w}`: valid, standard workflow (0 error(s), 1 \
             warning(s))\n",
            w = p(&warns)
        )
    );
    let o = env.run(&["validate", "--strict", &p(&warns)]);
    assert_eq!(o.code, 1, "{o:?}");
    let o = env.run(&["validate", "--strict", &p(&valid)]);
    assert_eq!(o.code, 0, "{o:?}");

    let o = env.run(&["validate", &p(&valid), &p(&invalid), &p(&warns)]);
    assert_eq!(o.code, 2, "{o:?}");
    let i = p(&invalid);
    let want = [
        format!("`{i}`:2:12: error: `timeout` must be a positive whole number of seconds, found `soon`"),
        format!("`{i}`:3:3: error: a step needs an action: `shell:`, `claude:`, `write_file:` or `foreach:` (or a legacy `name:`)"),
        format!("`{i}`:4:3: error: `analyze` was removed from Prodigy (0.4.4 fails such a step with `No command specified`); run the analysis as a `shell` step"),
        format!("`{i}`: invalid (3 error(s), 0 warning(s))"),
    ];
    for w in &want {
        assert!(o.stdout.lines().any(|l| l == w), "missing {w}\n{o:?}");
    }
    // Files in the order given, each with its verdict.
    assert_eq!(
        o.stdout.lines().filter(|l| l.contains(": valid")).count(),
        2
    );

    // YAML syntax errors and unreadable files are errors naming the file.
    let syntax = write(&env, "syntax.yml", "- shell: [unclosed\n");
    let o = env.run(&["validate", &p(&syntax), &p(&env.dir.join("missing.yml"))]);
    assert_eq!(o.code, 2, "{o:?}");
    assert!(o.stdout.contains(&format!("`{}`:", p(&syntax))), "{o:?}");
    assert!(o.stdout.contains("cannot read workflow file"), "{o:?}");
    // Nothing was written.
    assert_eq!(fs::read_dir(&env.root).unwrap().count(), 0);
}

#[test]
fn validate_json_is_one_document_and_the_schema_parses() {
    let env = Env::new("validate-json");
    let warns = write(&env, "warns.yml", WARNS);
    let invalid = write(&env, "invalid.yml", INVALID);
    let (o, v) = env.json(&[
        "validate",
        "--json",
        "--strict",
        warns.to_str().unwrap(),
        invalid.to_str().unwrap(),
    ]);
    assert_eq!(o.code, 2, "{o:?}");
    assert_eq!(o.stdout.lines().count(), 1);
    assert_eq!(v["valid"], false);
    assert_eq!(v["exit"], 2);
    assert_eq!(v["files"][0]["valid"], true);
    assert_eq!(v["files"][0]["kind"], "standard");
    assert_eq!(v["files"][0]["warnings"], 1);
    assert_eq!(v["files"][0]["problems"][0]["severity"], "warning");
    assert_eq!(v["files"][0]["problems"][0]["line"], 2);
    assert_eq!(v["files"][0]["problems"][0]["col"], 3);
    assert_eq!(v["files"][1]["valid"], false);
    assert_eq!(v["files"][1]["errors"], 3);
    assert_eq!(v["files"][1]["kind"], serde_json::Value::Null);

    let (o, s) = env.json(&["validate", "--schema"]);
    assert_eq!(o.code, 0, "{o:?}");
    assert_eq!(s["$schema"], "https://json-schema.org/draft/2020-12/schema");
    for (def, key) in [
        ("step_map", "write_file"),
        ("step_map", "validate"),
        ("map", "max_parallel"),
        ("foreach", "do"),
        ("mapreduce", "setup"),
    ] {
        assert!(
            s["$defs"][def]["properties"].get(key).is_some(),
            "{def}.{key} missing"
        );
    }
}

/// A repository with `items.json` committed and a stub `claude` that records being called.
fn dry_repo(env: &mut Env) -> (PathBuf, PathBuf) {
    let r = repo(env, "work");
    fs::write(
        r.join("items.json"),
        r#"{"items": [{"id": "a", "score": 3}, {"id": "b", "score": 9}, {"id": "c", "score": 7}, {"id": "d", "score": 1}]}"#,
    )
    .unwrap();
    git(&r, &["add", "."]);
    git(&r, &["commit", "-qm", "items"]);
    let bin = env.dir.join("bin");
    fs::create_dir_all(&bin).unwrap();
    let called = env.dir.join("claude-called");
    fs::write(
        bin.join("claude"),
        format!("#!/bin/sh\ntouch '{}'\n", called.display()),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(bin.join("claude"), fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    env.extra_env.push(("PATH".into(), path));
    (r, called)
}

#[test]
fn dry_run_prints_the_plan_and_writes_nothing() {
    if !have("git", "dry_run_prints_the_plan_and_writes_nothing") {
        return;
    }
    let mut env = Env::new("dry-run");
    let (r, called) = dry_repo(&mut env);
    let wf = write(
        &env,
        "mr.yml",
        r#"name: scores
mode: mapreduce
env:
  TARGET: src
  TOKEN: {secret: true, value: hunter2}
setup:
  - shell: "echo setup ${TARGET}"
map:
  input: items.json
  json_path: "$.items[*]"
  filter: "score >= 3"
  sort_by: "score DESC"
  max_items: 2
  max_parallel: 2
  agent_template:
    - claude: "/fix ${item.id} in ${TARGET} with $TOKEN"
      validate:
        shell: "check ${ARG}"
        threshold: 80
reduce:
  - shell: "echo ${map.total} ${ARG}"
"#,
    );
    let status_before = git(&r, &["status", "--porcelain", "--ignored"]);
    let branches_before = git(&r, &["branch", "-a"]);
    let worktrees_before = git(&r, &["worktree", "list"]);
    let o = Out::from(
        env.cmd(&["run", wf.to_str().unwrap(), "--dry-run", "--arg", "ARG=42"])
            .current_dir(&r)
            .output()
            .unwrap(),
    );
    assert_eq!(o.code, 0, "{o:?}");
    assert_eq!(o.stderr, "");
    let want = format!(
        "dry run of `{}`: MapReduce workflow `scores`; nothing is run or written
env:
  TARGET = src
  TOKEN = *** (secret)
setup:
  1. shell: echo setup src
map:
  input: `items.json` (a file of the repository; setup may change it)
  2 work item(s) after json_path, filter, sort_by, offset, max_items
  item b: {{\"id\":\"b\",\"score\":9}}
  item c: {{\"id\":\"c\",\"score\":7}}
  max_parallel: 2
agent_template:
  1. claude: /fix ${{item.id}} in src with ***
      validate (threshold 80%; unmet fails the step):
        1. shell: check 42
reduce:
  1. shell: echo ${{map.total}} 42
",
        wf.display()
    );
    assert_eq!(o.stdout, want);
    assert!(!o.stdout.contains("hunter2"));
    // Nothing anywhere: no PRODIGY_HOME entry, no claude, the repository as it was.
    assert_eq!(fs::read_dir(&env.root).unwrap().count(), 0);
    assert!(!called.exists());
    assert_eq!(
        git(&r, &["status", "--porcelain", "--ignored"]),
        status_before
    );
    assert_eq!(git(&r, &["branch", "-a"]), branches_before);
    assert_eq!(git(&r, &["worktree", "list"]), worktrees_before);
}

#[test]
fn dry_run_of_a_command_input_prints_the_command_and_profiles_apply() {
    if !have("git", "dry_run_of_a_command_input") {
        return;
    }
    let mut env = Env::new("dry-run-cmd");
    let (r, _) = dry_repo(&mut env);
    let wf = write(
        &env,
        "cmd.yml",
        "mode: mapreduce\nenv: {WHO: base}\nprofiles:\n  dev: {WHO: dev}\nmap:\n  input: \"ls src\"\n  agent_template: [{shell: \"echo ${item} $WHO\"}]\n",
    );
    let o = Out::from(
        env.cmd(&["run", wf.to_str().unwrap(), "--dry-run", "--profile", "dev"])
            .current_dir(&r)
            .output()
            .unwrap(),
    );
    assert_eq!(o.code, 0, "{o:?}");
    assert!(o.stdout.contains("  input: `ls src` is not a file of the repository; at run time it is read from the session worktree after setup, or else run there as a command"), "{o:?}");
    assert!(o.stdout.contains("  1. shell: echo ${item} dev\n"), "{o:?}");
    let o = Out::from(
        env.cmd(&[
            "run",
            wf.to_str().unwrap(),
            "--dry-run",
            "--profile",
            "prod",
        ])
        .current_dir(&r)
        .output()
        .unwrap(),
    );
    assert_eq!(o.code, 2, "{o:?}");
    assert!(
        o.stderr.contains("no profile `prod`; profiles: dev"),
        "{o:?}"
    );
    assert_eq!(fs::read_dir(&env.root).unwrap().count(), 0);
}

#[test]
fn dry_run_takes_0_4_4_params_and_the_arg_wins() {
    let env = Env::new("dry-run-params");
    let wf = write(&env, "p.yml", "- shell: \"echo ${A} ${B} ${C}\"\n");
    let file = write(&env, "params.yaml", "A: from-file\nB: 2\n");
    let o = env.run(&[
        "run",
        wf.to_str().unwrap(),
        "--dry-run",
        "--param-file",
        file.to_str().unwrap(),
        "--param",
        "B=cli",
        "--params",
        "C=3",
    ]);
    assert_eq!(o.code, 0, "{o:?}");
    assert!(
        o.stdout.contains("  1. shell: echo from-file cli 3\n"),
        "{o:?}"
    );
    let bad = write(&env, "bad.yaml", "- a list\n");
    let o = env.run(&[
        "run",
        wf.to_str().unwrap(),
        "--dry-run",
        "--param-file",
        bad.to_str().unwrap(),
    ]);
    assert_eq!(o.code, 2, "{o:?}");
    assert!(
        o.stderr.contains("not a JSON or YAML map of NAME: value"),
        "{o:?}"
    );
    assert_eq!(fs::read_dir(&env.root).unwrap().count(), 0);
}
