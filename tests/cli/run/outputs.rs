//! `id: NAME` + `outputs: {OUT: {file_pattern: GLOB}}` (`${ID.OUT}` = the file the step created
//! or changed) and `setup.capture_outputs` (`${NAME}` in agents and reduce), end to end.

use super::*;

/// The stub's calls, one line each: `ARG|ARG|…|AUTOMATION=… STREAMING=…`.
fn claude_calls(r: &Run) -> String {
    fs::read_to_string(r.env.dir.join("claude.log")).unwrap_or_default()
}

const SPEC: &str = r#"
name: spec
commands:
  - shell: mkdir -p specs && echo spec > specs/123-x.md && echo note > notes.txt && git add -A && git commit -q -m spec
    id: spec
    outputs:
      file:
        file_pattern: "specs/*-x.md"
      any:
        file_pattern: "*.txt"
  - claude: /implement ${spec.file}
  - shell: echo "${spec.file} ${spec.any}" > seen.txt && git add -A && git commit -q -m seen
    commit_required: true
"#;

#[test]
fn a_step_id_and_outputs_give_later_steps_the_path_of_the_file_it_made() {
    let Some(r) = setup("outputs-spec") else {
        return;
    };
    // A file that matches the pattern but that the step does not touch is never chosen.
    fs::create_dir_all(r.repo.join("specs")).unwrap();
    fs::write(r.repo.join("specs/000-x.md"), "old\n").unwrap();
    git(&r.repo, &["add", "-A"]);
    git(&r.repo, &["commit", "-q", "-m", "old spec"]);
    let wf = r.write_workflow("spec.yml", SPEC);

    let dry = r.run(&wf, &["--dry-run"]);
    assert_eq!(dry.code, 0, "{dry:?}");
    assert!(
        dry.stdout.contains(
            "id spec; ${spec.file} = the file matching `specs/*-x.md` it creates or changes"
        ),
        "{dry:?}"
    );
    assert!(dry.stdout.contains("/implement ${spec.file}"), "{dry:?}");

    let o = r.run(&wf, &["-y"]);
    assert_eq!(o.code, 0, "{o:?}");
    assert_eq!(o.stderr, "", "{o:?}");
    let calls = claude_calls(&r);
    assert!(
        calls.contains("|/implement specs/123-x.md|AUTOMATION="),
        "{calls}"
    );
    assert_eq!(
        fs::read_to_string(r.repo.join("seen.txt")).unwrap(),
        "specs/123-x.md notes.txt\n"
    );
    let s = r.only_session();
    let v = &s["workflow_data"]["variables"];
    assert_eq!(v["spec.file"], "specs/123-x.md", "{v}");
    assert_eq!(v["spec.any"], "notes.txt", "{v}");
}

#[test]
fn outputs_without_a_matching_file_fail_the_step_naming_the_pattern() {
    let Some(r) = setup("outputs-none") else {
        return;
    };
    let wf = r.write_workflow(
        "none.yml",
        "- shell: echo x > other.txt\n  id: spec\n  outputs:\n    file:\n      file_pattern: \"specs/*.md\"\n- claude: /implement ${spec.file}\n",
    );
    let o = r.run(&wf, &["-y"]);
    assert_eq!(o.code, 1, "{o:?}");
    assert!(
        o.stdout.contains(
            "step 1 (shell: echo x > other.txt): `outputs.file`: no file the step created or \
             changed matches `file_pattern: specs/*.md` (it created or changed: `other.txt`)"
        ),
        "{o:?}"
    );
    assert_eq!(claude_calls(&r), "");
    assert_eq!(r.only_session()["status"], "Failed");
}

#[test]
fn outputs_survive_kill_9_and_resume_and_the_later_step_sees_them() {
    let Some(r) = setup("outputs-resume") else {
        return;
    };
    let flag = r.env.dir.join("slept");
    let wf = r.write_workflow(
        "k.yml",
        &format!(
            r#"name: killed
commands:
  - shell: mkdir -p specs && echo s > specs/7-plan.md && git add -A && git commit -q -m plan
    id: plan
    commit_required: true
    outputs:
      spec: {{file_pattern: "**/*-plan.md"}}
  - shell: if [ ! -e {f} ]; then touch {f}; sleep 60; fi
  - claude: /implement ${{plan.spec}}
"#,
            f = flag.display()
        ),
    );
    let mut child = spawn_run(&r, &wf, &["-y"]);
    wait_for("step 2", || flag.exists());
    unsafe_kill(-(child.id() as i32), 9);
    let _ = child.wait();
    let s = r.only_session();
    let id = s["id"].as_str().unwrap().to_string();
    assert_eq!(
        s["workflow_data"]["variables"]["plan.spec"], "specs/7-plan.md",
        "{s}"
    );
    assert_eq!(claude_calls(&r), "");
    let o = Out::from(
        r.env
            .cmd(&["resume", &id, "-y"])
            .current_dir(&r.repo)
            .output()
            .unwrap(),
    );
    assert_eq!(o.code, 0, "{o:?}");
    let calls = claude_calls(&r);
    assert!(calls.contains("|/implement specs/7-plan.md|"), "{calls}");
    assert_eq!(calls.lines().count(), 1, "{calls}");
    assert_eq!(r.only_session()["status"], "Completed");
}

const CAPTURE_OUTPUTS: &str = r#"
name: capout
mode: mapreduce
setup:
  commands:
    - shell: echo '[{"id":"a"},{"id":"b"}]' > items.json && echo '{"n":7}'
    - shell: echo "count=3 of 9"; echo warn >&2
  capture_outputs:
    N:
      command_index: 0
      json_path: "$.n"
    C:
      command_index: 1
      pattern: "count=(\\d+)"
    BOTH:
      command_index: 1
      source: both
      multiline: join
    MISS:
      command_index: 1
      pattern: "nope"
      default: none
map:
  input: items.json
  json_path: "$[*]"
  agent_template:
    - claude: /work ${item_id} ${N} ${C}
    - shell: mkdir -p out && echo "${N} ${C} ${MISS}" > out/${item_id}.txt && git add -A && git commit -q -m "agent ${item_id}"
      commit_required: true
reduce:
  - shell: echo "${BOTH} ${N}" > reduce.txt && git add reduce.txt && git commit -q -m reduce
    commit_required: true
"#;

#[test]
fn setup_capture_outputs_reach_agents_and_reduce_and_the_setup_checkpoint() {
    let Some(r) = setup("outputs-capout") else {
        return;
    };
    let wf = r.write_workflow("capout.yml", CAPTURE_OUTPUTS);
    let dry = r.run(&wf, &["--dry-run"]);
    assert_eq!(dry.code, 0, "{dry:?}");
    assert!(
        dry.stdout
            .contains("capture_outputs: ${C} = stdout of step 2, pattern `count=(\\d+)`"),
        "{dry:?}"
    );
    let o = r.run(&wf, &["-y"]);
    assert_eq!(o.code, 0, "{o:?}");
    let calls = claude_calls(&r);
    assert!(calls.contains("|/work a 7 3|"), "{calls}");
    assert!(calls.contains("|/work b 7 3|"), "{calls}");
    assert_eq!(
        fs::read_to_string(r.repo.join("out/a.txt")).unwrap(),
        "7 3 none\n"
    );
    assert_eq!(
        fs::read_to_string(r.repo.join("reduce.txt")).unwrap(),
        "count=3 of 9 warn 7\n"
    );
    let s = r.only_session();
    let job = s["mapreduce_data"]["job_id"].as_str().unwrap();
    let cp = r.json(&format!(
        "state/work/mapreduce/jobs/{job}/setup-checkpoint.json"
    ));
    assert_eq!(cp["completed"], true);
    assert_eq!(cp["outputs"]["N"], "7", "{cp}");
    assert_eq!(cp["outputs"]["C"], "3", "{cp}");
    let hidden: Vec<&String> = cp["outputs"]
        .as_object()
        .unwrap()
        .keys()
        .filter(|k| k.starts_with("_setup_output"))
        .collect();
    assert!(hidden.is_empty(), "{cp}");
}

#[test]
fn capture_outputs_that_select_nothing_without_a_default_fail_setup() {
    let Some(r) = setup("outputs-capout-bad") else {
        return;
    };
    let wf = r.write_workflow(
        "bad.yml",
        "name: bad\nmode: mapreduce\nsetup:\n  commands:\n    - shell: echo hello\n  capture_outputs:\n    X: {command_index: 0, pattern: \"n=(\\\\d+)\"}\nmap:\n  input: items.json\n  agent_template:\n    - claude: /x ${X}\n",
    );
    let o = r.run(&wf, &["-y"]);
    assert_eq!(o.code, 1, "{o:?}");
    assert!(
        o.stdout.contains(
            "setup failed: `capture_outputs.X`: `pattern: n=(\\d+)` matches nothing in the output of setup step 0 and there is no `default`"
        ),
        "{o:?}"
    );
    assert_eq!(claude_calls(&r), "");
}

#[test]
fn a_step_killed_after_its_commit_is_counted_done_on_resume_with_its_outputs() {
    let Some(r) = setup("outputs-resume-commit") else {
        return;
    };
    let flag = r.env.dir.join("committed");
    let wf = r.write_workflow(
        "k.yml",
        &format!(
            r#"name: killed-after-commit
commands:
  - shell: mkdir -p specs && echo s > specs/9-plan.md && git add -A && git commit -q -m plan && touch {f} && sleep 60
    id: plan
    commit_required: true
    outputs:
      spec: {{file_pattern: "specs/*.md"}}
  - claude: /implement ${{plan.spec}}
"#,
            f = flag.display()
        ),
    );
    let mut child = spawn_run(&r, &wf, &["-y"]);
    wait_for("the commit of step 1", || flag.exists());
    unsafe_kill(-(child.id() as i32), 9);
    let _ = child.wait();
    let s = r.only_session();
    let id = s["id"].as_str().unwrap().to_string();
    assert!(
        s["workflow_data"]["variables"]["plan.spec"].is_null(),
        "{s}"
    );
    let o = Out::from(
        r.env
            .cmd(&["resume", &id, "-y"])
            .current_dir(&r.repo)
            .output()
            .unwrap(),
    );
    assert_eq!(o.code, 0, "{o:?}");
    let calls = claude_calls(&r);
    // Step 1 did not run again (it would sleep a minute); its file came from its commit.
    assert!(calls.contains("|/implement specs/9-plan.md|"), "{calls}");
    assert_eq!(r.only_session()["status"], "Completed");
}
