//! Step modifiers that `prodigy run` executes (run.md §2–§3): `capture` with `capture_format`
//! and `capture_streams`, `output_file`; each in a small workflow run end to end.

use super::*;

const CAPTURES: &str = r#"
name: captures
commands:
  - shell: 'echo "{\"n\": 4, \"list\": [\"a\", \"b\"]}"'
    capture: data
    capture_format: json
  - shell: echo oops >&2; echo out
    capture: both
    capture_streams: {stdout: true, stderr: true}
  - shell: printf '3\n'
    capture: count
    capture_format: number
  - shell: printf 'x\ny\n'
    capture: ls
    capture_format: lines
    output_file: out/lines.txt
  - shell: echo true
    capture: flag
    capture_format: boolean
    capture_streams: stdout
  - shell: |
      echo "${data.n} ${data.list[1]} ${both} ${both.stderr} ${both.exit_code} ${both.success} ${count} ${ls[1]} ${ls} ${flag}" > result.txt
      git add -A && git commit -q -m result
    commit_required: true
"#;

#[test]
fn capture_keeps_typed_output_streams_and_exit_status_and_output_file_writes_stdout() {
    let Some(r) = setup("steps-capture") else {
        return;
    };
    let wf = r.write_workflow("cap.yml", CAPTURES);
    let o = r.run(&wf, &["-y"]);
    assert_eq!(o.code, 0, "{o:?}");
    assert_eq!(o.stderr, "", "{o:?}");
    assert_eq!(
        fs::read_to_string(r.repo.join("result.txt")).unwrap(),
        // `${ls}` is `["x","y"]`, substituted as text inside the shell's double quotes.
        "4 b out oops 0 true 3 y [x,y] true\n"
    );
    // output_file: stdout as written, committed by the last step and merged.
    assert_eq!(
        fs::read_to_string(r.repo.join("out/lines.txt")).unwrap(),
        "x\ny\n"
    );
    assert!(log(&r.repo).contains("result"));
    let s = r.only_session();
    let v = &s["workflow_data"]["variables"];
    assert_eq!(
        v["data"],
        serde_json::json!({"n": 4, "list": ["a", "b"]}),
        "{v}"
    );
    assert_eq!(v["count"], 3, "{v}");
    assert_eq!(v["ls"], serde_json::json!(["x", "y"]));
    assert_eq!(v["both"], "out");
    assert_eq!(v["both.stderr"], "oops");
    assert_eq!(v["both.exit_code"], 0);
    assert_eq!(v["both.success"], true);
    assert!(v["both.duration"].as_f64().unwrap() >= 0.0, "{v}");
    assert_eq!(v["flag"], true);
    // The log stays complete; the capture files are gone.
    let id = s["id"].as_str().unwrap();
    let logdir = r.env.p(&format!("logs/work/{id}"));
    let text = fs::read_to_string(logdir.join("steps.log")).unwrap();
    assert!(text.contains("oops\n") && text.contains("x\ny\n"), "{text}");
    let left: Vec<_> = fs::read_dir(&logdir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".out") || n.ends_with(".err"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn capture_format_json_that_does_not_parse_fails_the_step_and_a_failed_step_still_captures() {
    let Some(r) = setup("steps-capture-bad") else {
        return;
    };
    let wf = r.write_workflow(
        "bad.yml",
        "- shell: echo not-json\n  capture: d\n  capture_format: json\n- shell: echo never > never.txt\n",
    );
    let o = r.run(&wf, &["-y"]);
    assert_eq!(o.code, 1, "{o:?}");
    assert!(
        o.stdout.contains(
            "step 1 (shell: echo not-json): capture `d` (capture_format: json): the output is not valid JSON"
        ),
        "{o:?}"
    );
    let s = r.only_session();
    assert_eq!(s["status"], "Failed");
    assert_eq!(s["workflow_data"]["current_step"], 0);
    let id = s["id"].as_str().unwrap();
    assert!(!r.env.p(&format!("worktrees/work/{id}/never.txt")).exists());

    // A failing step's output and status are kept (as a string) before it fails.
    let wf = r.write_workflow(
        "fail.yml",
        "- shell: echo half; exit 3\n  capture: c\n  capture_format: number\n",
    );
    let o = r.run(&wf, &["-y"]);
    assert_eq!(o.code, 1, "{o:?}");
    assert!(o.stdout.contains("failed: exit status 3"), "{o:?}");
    let s = r
        .sessions()
        .into_iter()
        .find(|s| s["workflow_data"]["workflow_name"] == "fail")
        .unwrap();
    // Not checkpointed as completed: the variables of a failed step are not in the record.
    assert_eq!(s["workflow_data"]["current_step"], 0);
}

#[test]
fn a_capture_survives_kill_9_and_resume_and_the_later_step_sees_it() {
    let Some(r) = setup("steps-capture-resume") else {
        return;
    };
    let flag = r.env.dir.join("slept");
    let wf = r.write_workflow(
        "k.yml",
        &format!(
            r#"name: killed
commands:
  - shell: 'echo "{{\"n\": 41}}"'
    capture: data
    capture_format: json
  - shell: echo attempt; if [ ! -e {f} ]; then touch {f}; sleep 60; fi
    capture_output: second
  - shell: echo "n=${{data.n}} ok=${{data.success}} ${{second}}" > seen.txt && git add seen.txt && git commit -q -m seen
    commit_required: true
"#,
            f = flag.display()
        ),
    );
    let mut child = spawn_run(&r, &wf, &["-y"]);
    wait_for("step 2", || flag.exists());
    // The whole group: prodigy and its step, as a crash of the machine would.
    unsafe_kill(-(child.id() as i32), 9);
    let _ = child.wait();
    let s = r.only_session();
    let id = s["id"].as_str().unwrap().to_string();
    assert_eq!(s["workflow_data"]["variables"]["data"]["n"], 41, "{s}");
    let o = Out::from(
        r.env
            .cmd(&["resume", &id, "-y"])
            .current_dir(&r.repo)
            .output()
            .unwrap(),
    );
    assert_eq!(o.code, 0, "{o:?}");
    assert_eq!(
        fs::read_to_string(r.repo.join("seen.txt")).unwrap(),
        // The killed step's partial capture file was not appended to.
        "n=41 ok=true attempt\n"
    );
    assert_eq!(r.only_session()["status"], "Completed");
}

const HANDLERS: &str = r#"
name: handlers
commands:
  - shell: echo a >> trail.txt
    on_success:
      shell: echo success-of-1 >> trail.txt
  - shell: exit 3
    capture: three
    on_exit_code:
      3:
        shell: echo "code ${three.exit_code} ${three.success}" >> trail.txt
    on_failure:
      shell: echo must-not-run >> trail.txt
  - shell: exit 1
    on_failure: true
  - shell: exit 2
    on_failure:
      - shell: echo fix1 >> trail.txt
      - shell: echo fix2 >> trail.txt
  - shell: test -e fixed || exit 5
    on_failure:
      commands:
        - shell: echo attempt >> trail.txt
        - shell: test -e again || { touch again; exit 1; }
        - shell: touch fixed
      max_attempts: 2
  - shell: exit 4
    on_failure:
      shell: echo handled-4
      capture_output: h
  - shell: echo "h=${h}" >> trail.txt && git add -A && git commit -q -m trail
    commit_required: true
"#;

#[test]
fn on_success_on_exit_code_and_every_on_failure_form_run_and_recover() {
    let Some(r) = setup("steps-handlers") else {
        return;
    };
    let wf = r.write_workflow("h.yml", HANDLERS);
    let o = r.run(&wf, &["-y"]);
    assert_eq!(o.code, 0, "{o:?}");
    assert_eq!(o.stderr, "", "{o:?}");
    assert_eq!(
        fs::read_to_string(r.repo.join("trail.txt")).unwrap(),
        "a\nsuccess-of-1\ncode 3 false\nfix1\nfix2\nattempt\nattempt\nh=handled-4\n"
    );
    assert!(r.repo.join("fixed").exists());
    assert!(log(&r.repo).lines().any(|l| l == "trail"));
    let s = r.only_session();
    assert_eq!(s["status"], "Completed");
    assert_eq!(
        s["workflow_data"]["completed_steps"],
        serde_json::json!([0, 1, 2, 3, 4, 5, 6])
    );
    let id = s["id"].as_str().unwrap();
    let text = fs::read_to_string(r.env.p(&format!("logs/work/{id}/steps.log"))).unwrap();
    assert!(
        text.contains("step 2 (shell: exit 3) exited with 3: on_exit_code 3 runs"),
        "{text}"
    );
    assert!(
        text.contains("failure ignored (on_failure: true)"),
        "{text}"
    );
    assert!(
        text.contains("on_failure of step 5 (shell: test -e fixed || exit 5) (attempt 2)"),
        "{text}"
    );
}

#[test]
fn handlers_that_fail_or_fail_workflow_fail_the_step_with_what_happened() {
    let Some(r) = setup("steps-handlers-fail") else {
        return;
    };
    for (name, text, want) in [
        (
            "fw",
            "- shell: exit 1\n  on_failure: {shell: echo fixing, fail_workflow: true}\n",
            "step 1 (shell: exit 1) failed: exit status 1 (on_failure ran; fail_workflow is set)",
        ),
        (
            "ok",
            "- shell: echo fine\n  on_success: {shell: exit 6}\n",
            "step 1 (shell: echo fine): on_success failed: on_success (shell: exit 6) failed: exit status 6",
        ),
        (
            "code",
            "- shell: exit 3\n  on_exit_code: {3: {shell: exit 4}}\n  on_failure: {shell: echo not-me > not-me}\n",
            "step 1 (shell: exit 3) exited with 3; on_exit_code 3 failed: on_exit_code 3 (shell: exit 4) failed: exit status 4",
        ),
        (
            "tries",
            "- shell: exit 1\n  on_failure: {shell: echo try >> tries.txt; exit 2, max_attempts: 3}\n",
            "step 1 (shell: exit 1) failed: exit status 1; on_failure also failed: on_failure (shell: echo try >> tries.txt; exit 2) failed: exit status 2",
        ),
    ] {
        let wf = r.write_workflow(&format!("{name}.yml"), text);
        let o = r.run(&wf, &["-y"]);
        assert_eq!(o.code, 1, "{name}: {o:?}");
        assert!(o.stdout.contains(want), "{name}: {o:?}");
    }
    // The handler ran three times, in the kept worktree; on_failure did not run after
    // on_exit_code.
    let tries: Vec<PathBuf> = fs::read_dir(r.env.p("worktrees/work"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    let all: String = tries
        .iter()
        .filter_map(|d| fs::read_to_string(d.join("tries.txt")).ok())
        .collect();
    assert_eq!(all, "try\ntry\ntry\n");
    assert!(!tries.iter().any(|d| d.join("not-me").exists()));
    assert!(!r.repo.join("tries.txt").exists());
}

const DIRS: &str = r#"
name: dirs
commands:
  - shell: mkdir -p sub/deeper && echo world
    capture: who
  - shell: pwd > where.txt; echo "$GREETING ${GREETING} $WHO" > env.txt
    working_dir: sub
    env:
      GREETING: hello
      WHO: "${who}"
  - shell: echo hi
    working_dir: sub/deeper
    output_file: o.txt
  - shell: exit 1
    working_dir: sub
    env: {FIXER: handler}
    on_failure:
      shell: echo "$FIXER" > handled.txt
  - shell: echo "[$GREETING]" > top.txt && git add -A && git commit -q -m dirs
    commit_required: true
"#;

#[test]
fn step_env_and_working_dir_apply_to_the_step_and_its_handlers_only() {
    let Some(r) = setup("steps-dirs") else {
        return;
    };
    let wf = r.write_workflow("d.yml", DIRS);
    let o = r.run(&wf, &["-y"]);
    assert_eq!(o.code, 0, "{o:?}");
    assert_eq!(
        fs::read_to_string(r.repo.join("sub/env.txt")).unwrap(),
        "hello hello world\n"
    );
    let s = r.only_session();
    let id = s["id"].as_str().unwrap();
    let where_ = fs::read_to_string(r.repo.join("sub/where.txt")).unwrap();
    assert!(where_.ends_with(&format!("{id}/sub\n")), "{where_}");
    assert_eq!(
        fs::read_to_string(r.repo.join("sub/deeper/o.txt")).unwrap(),
        "hi\n"
    );
    assert_eq!(
        fs::read_to_string(r.repo.join("sub/handled.txt")).unwrap(),
        "handler\n"
    );
    // The step env did not leak into the next step.
    assert_eq!(fs::read_to_string(r.repo.join("top.txt")).unwrap(), "[]\n");
}

#[test]
fn a_working_dir_that_is_missing_a_symlink_or_outside_fails_the_step_with_a_message() {
    let Some(r) = setup("steps-dirs-bad") else {
        return;
    };
    let outside = r.env.dir.join("elsewhere");
    fs::create_dir_all(&outside).unwrap();
    for (name, text, want) in [
        (
            "missing",
            "- shell: echo\n  working_dir: nope\n".to_string(),
            "step 1 (shell: echo): `working_dir` `nope`: ".to_string(),
        ),
        (
            "link",
            format!(
                "- shell: ln -s {} link\n- shell: touch escaped\n  working_dir: link\n",
                outside.display()
            ),
            "step 2 (shell: touch escaped): `working_dir` `link`: a component is a symlink or \
             not a directory (symlinks are not followed)"
                .to_string(),
        ),
        (
            "dotdot",
            "- shell: echo ..\n  capture: up\n- shell: touch escaped\n  working_dir: \"${up}\"\n"
                .to_string(),
            "step 2 (shell: touch escaped): `working_dir` must stay inside the worktree (no \
             `..`), found `..`"
                .to_string(),
        ),
    ] {
        let wf = r.write_workflow(&format!("{name}.yml"), &text);
        let o = r.run(&wf, &["-y"]);
        assert_eq!(o.code, 1, "{name}: {o:?}");
        assert!(o.stdout.contains(&want), "{name}: {o:?}");
    }
    let left: Vec<_> = fs::read_dir(&outside)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(left.is_empty(), "{left:?}");
    assert!(!r.env.p("worktrees").join("escaped").exists());
}

const WRITES: &str = r#"
name: wf
commands:
  - shell: echo 7
    capture: n
    capture_format: number
  - write_file:
      path: gen/config.json
      content: '{"name": "${workflow.name}", "n": ${n}}'
      format: json
      mode: "0600"
      create_dirs: true
    capture_output: msg
  - write_file:
      path: notes.yml
      content: "b: [x, y]\na: 1\n"
      format: yaml
  - write_file: {path: plain.txt, content: "line ${n}"}
    working_dir: gen
  - shell: |
      [ -n "$(find gen/config.json -perm 600)" ] && echo 600 > mode.txt
      echo "${msg}" > msg.txt && git add -A && git commit -q -m written
    commit_required: true
"#;

#[test]
fn write_file_checks_pretty_prints_and_writes_inside_the_worktree_with_its_mode() {
    let Some(r) = setup("steps-write") else {
        return;
    };
    let wf = r.write_workflow("w.yml", WRITES);
    let o = r.run(&wf, &["-y"]);
    assert_eq!(o.code, 0, "{o:?}");
    assert_eq!(o.stderr, "", "{o:?}");
    let json = "{\n  \"n\": 7,\n  \"name\": \"wf\"\n}";
    assert_eq!(
        fs::read_to_string(r.repo.join("gen/config.json")).unwrap(),
        json
    );
    assert_eq!(
        fs::read_to_string(r.repo.join("notes.yml")).unwrap(),
        // Re-emitted in the order written.
        "b:\n- x\n- y\na: 1\n"
    );
    assert_eq!(
        fs::read_to_string(r.repo.join("gen/plain.txt")).unwrap(),
        "line 7"
    );
    assert_eq!(
        fs::read_to_string(r.repo.join("mode.txt")).unwrap(),
        "600\n"
    );
    assert_eq!(
        fs::read_to_string(r.repo.join("msg.txt")).unwrap(),
        format!("Wrote {} bytes to gen/config.json\n", json.len())
    );
    // No temp file was left behind to be committed.
    let files = git(&r.repo, &["ls-files"]);
    assert!(!files.contains(".tmp-"), "{files}");
}

#[test]
fn write_file_never_writes_outside_the_worktree_and_bad_content_fails_the_step() {
    let Some(r) = setup("steps-write-bad") else {
        return;
    };
    let elsewhere = r.env.dir.join("elsewhere");
    fs::create_dir_all(&elsewhere).unwrap();
    let e = elsewhere.display();
    for (name, text, want) in [
        (
            "json",
            "- write_file: {path: bad.json, content: '{\"a\": ${x:-}}', format: json}\n"
                .to_string(),
            "step 1 (write_file: bad.json): `write_file` `bad.json`: the content is not valid JSON"
                .to_string(),
        ),
        (
            "parent",
            format!("- shell: ln -s {e} link\n- write_file: {{path: link/x.txt, content: x}}\n"),
            "step 2 (write_file: link/x.txt): `write_file` `link/x.txt`: a component is a \
             symlink or not a directory (symlinks are not followed)"
                .to_string(),
        ),
        (
            "missing",
            "- write_file: {path: no/x.txt, content: x}\n".to_string(),
            "`write_file` `no/x.txt`: the directory `no` does not exist; add `create_dirs: true`"
                .to_string(),
        ),
    ] {
        let wf = r.write_workflow(&format!("{name}.yml"), &text);
        let o = r.run(&wf, &["-y"]);
        assert_eq!(o.code, 1, "{name}: {o:?}");
        assert!(o.stdout.contains(&want), "{name}: {o:?}");
    }
    // A symlink at the target is replaced, never written through.
    let wf = r.write_workflow(
        "target.yml",
        &format!(
            "- shell: ln -s {e}/t.txt t.txt\n- write_file: {{path: t.txt, content: mine}}\n\
             - shell: test ! -L t.txt && git add -A && git commit -q -m t\n  commit_required: true\n"
        ),
    );
    let o = r.run(&wf, &["-y"]);
    assert_eq!(o.code, 0, "{o:?}");
    assert_eq!(fs::read_to_string(r.repo.join("t.txt")).unwrap(), "mine");
    let left: Vec<_> = fs::read_dir(&elsewhere)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

const MAPREDUCE_STEPS: &str = r#"
name: mr-steps
mode: mapreduce
setup:
  - shell: echo '[{"id":"a","n":1},{"id":"b","n":2}]'
    capture: list
    capture_format: json
    on_success:
      write_file: {path: items.json, content: "${list}", format: json}
  - shell: git add items.json && git commit -q -m setup-items
    commit_required: true
map:
  input: items.json
  json_path: "$[*]"
  max_parallel: 2
  agent_template:
    - shell: echo $(( ${item.n} * 10 ))
      capture: tenfold
      capture_format: number
      on_success:
        write_file: {path: "out/${item_id}.txt", content: "${tenfold}", create_dirs: true}
    - shell: touch big-${item_id}
      when: "${item.n} > 1"
    - shell: git add -A && git commit -q -m "agent ${item_id}"
      commit_required: true
reduce:
  - shell: echo ${map.successful}
    capture: ok
    capture_format: number
    on_success:
      write_file:
        path: summary.json
        content: '{"ok": ${ok}, "total": ${map.total}}'
        format: json
  - shell: git add -A && git commit -q -m reduce
    commit_required: true
"#;

#[test]
fn mapreduce_setup_agents_and_reduce_capture_write_files_on_success() {
    let Some(r) = setup("steps-mapreduce") else {
        return;
    };
    let wf = r.write_workflow("mr.yml", MAPREDUCE_STEPS);
    let o = r.run(&wf, &["-y"]);
    assert_eq!(o.code, 0, "{o:?}");
    assert_eq!(
        fs::read_to_string(r.repo.join("items.json")).unwrap(),
        "[\n  {\n    \"id\": \"a\",\n    \"n\": 1\n  },\n  {\n    \"id\": \"b\",\n    \"n\": 2\n  }\n]"
    );
    assert_eq!(fs::read_to_string(r.repo.join("out/a.txt")).unwrap(), "10");
    assert_eq!(fs::read_to_string(r.repo.join("out/b.txt")).unwrap(), "20");
    // `when` in an agent: only the item with n > 1.
    assert!(r.repo.join("big-b").exists() && !r.repo.join("big-a").exists());
    assert_eq!(
        fs::read_to_string(r.repo.join("summary.json")).unwrap(),
        "{\n  \"ok\": 2,\n  \"total\": 2\n}"
    );
    let l = log(&r.repo);
    for m in ["setup-items", "agent a", "agent b", "reduce"] {
        assert!(l.lines().any(|x| x == m), "{m}: {l}");
    }
    assert_eq!(r.only_session()["status"], "Completed");
}

const WHENS: &str = r#"
- shell: echo main
  capture: branch
- shell: echo skipped > skipped.txt
  when: "${branch} != main"
  on_success: {shell: echo nope > nope.txt}
- shell: echo ran > ran.txt
  when: "${branch} == main && ${branch.success} == true"
- shell: exit 3
  capture: t
  on_failure: true
- shell: echo fixed > fixed.txt
  when: "${t.exit_code} != 0"
- shell: git add -A && git commit -q -m when
  commit_required: true
"#;

#[test]
fn when_skips_a_step_and_its_handlers_and_a_bad_expression_fails_the_step() {
    let Some(r) = setup("steps-when") else {
        return;
    };
    let wf = r.write_workflow("when.yml", WHENS);
    let o = r.run(&wf, &["-y"]);
    assert_eq!(o.code, 0, "{o:?}");
    assert!(r.repo.join("ran.txt").exists());
    assert!(r.repo.join("fixed.txt").exists());
    assert!(!r.repo.join("skipped.txt").exists());
    assert!(!r.repo.join("nope.txt").exists());
    let s = r.only_session();
    assert_eq!(
        s["workflow_data"]["completed_steps"],
        serde_json::json!([0, 1, 2, 3, 4, 5])
    );
    let id = s["id"].as_str().unwrap();
    let text = fs::read_to_string(r.env.p(&format!("logs/work/{id}/steps.log"))).unwrap();
    assert!(
        text.contains("step 2 (shell: echo skipped > skipped.txt) skipped: `when: ${branch} != main` is false"),
        "{text}"
    );

    let wf = r.write_workflow("bad.yml", "- shell: echo x > x.txt\n  when: \"1 ==\"\n");
    let o = r.run(&wf, &["-y"]);
    assert_eq!(o.code, 1, "{o:?}");
    assert!(
        o.stdout
            .contains("step 1 (shell: echo x > x.txt): `when` (line 2): `1 ==`: column"),
        "{o:?}"
    );
}

#[test]
fn dry_run_shows_every_modifier_that_runs_and_writes_nothing() {
    let Some(r) = setup("steps-dry") else {
        return;
    };
    let wf = r.write_workflow("dry.yml", DRY);
    let o = r.run(&wf, &["--dry-run"]);
    assert_eq!(o.code, 0, "{o:?}");
    let want = "steps:
  1. shell: echo '{\"a\":1}'  [when `${d.a} == 1`; in `sub`; env X; capture → d (json; stdout+stderr+exit_code+success+duration); output_file `out.json`]
      on_failure (at most 2 attempts):
        1. shell: fix
      on_success: shell: echo ok
      on_exit_code 2: shell: echo two
  2. write_file: a.json (json, mode 600, create_dirs)
      on_failure: ignore the failure
";
    assert!(o.stdout.ends_with(want), "{o:?}");
    assert!(!r.env.root.exists() || fs::read_dir(&r.env.root).unwrap().count() == 0);
}

const DRY: &str = r#"
- shell: echo '{"a":1}'
  capture: d
  capture_format: json
  capture_streams: {stderr: true}
  output_file: out.json
  working_dir: sub
  env: {X: "1"}
  when: "${d.a} == 1"
  on_success: {shell: echo ok}
  on_exit_code: {2: {shell: echo two}}
  on_failure: {commands: [{shell: fix}], max_attempts: 2}
- write_file: {path: a.json, content: '{}', format: json, mode: "0600", create_dirs: true}
  on_failure: true
"#;
