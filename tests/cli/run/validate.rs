//! `validate:` with `on_incomplete` and `${validation.*}` (run.md §2), end to end.

use super::*;

/// The validator reports 40 % (missing `x`) until `done.txt` exists, then 100 %.
const VALIDATOR: &str = r#"if [ -f done.txt ]; then echo '{"completion_percentage": 100, "status": "complete"}'; else echo '{"completion_percentage": 40, "status": "incomplete", "missing": ["x"]}'; fi"#;

fn wf(on_incomplete: &str) -> String {
    format!(
        "- shell: echo work > work.txt && git add . && git commit -q -m work\n  commit_required: true\n  validate:\n    shell: '{}'\n    on_incomplete: {on_incomplete}\n- shell: echo \"after ${{validation.completion}}\" > after.txt && git add . && git commit -q -m after\n",
        VALIDATOR.replace('\'', "''")
    )
}

#[test]
fn an_incomplete_validation_runs_on_incomplete_once_then_passes() {
    let Some(r) = setup("validate-pass") else {
        return;
    };
    let fix = "{shell: 'echo \"${validation.missing}|${validation.missing_count}|${validation.completion}|${validation.attempt_number}\" >> fixes.log; touch done.txt'}";
    let wf = r.write_workflow("v.yml", &wf(fix));
    let o = r.run(&wf, &["-y"]);
    assert_eq!(o.code, 0, "{o:?}");
    let s = r.only_session();
    assert_eq!(s["status"], "Completed", "{s}");
    let id = s["id"].as_str().unwrap();
    let fixes = fs::read_to_string(r.env.p(&format!("worktrees/work/{id}/fixes.log")))
        .or_else(|_| fs::read_to_string(r.repo.join("fixes.log")))
        .unwrap();
    assert_eq!(fixes, "x|1|40.0|1\n");
    assert_eq!(
        fs::read_to_string(r.repo.join("after.txt")).unwrap(),
        "after 100.0\n"
    );
    let v = &s["workflow_data"]["variables"]["validation"];
    assert_eq!(v["completion"], 100.0, "{v}");
    assert_eq!(v["status"], "complete", "{v}");
    // The on_incomplete run is an event, after the checkpoint that counts it.
    let ev: Vec<serde_json::Value> = r
        .events(id)
        .into_iter()
        .filter(|e| e["event_type"] == "validation_attempt")
        .collect();
    assert_eq!(ev.len(), 1, "{ev:?}");
    assert_eq!(
        (
            &ev[0]["step"],
            &ev[0]["attempt"],
            &ev[0]["max_attempts"],
            &ev[0]["completion"]
        ),
        (&0.into(), &1.into(), &2.into(), &40.0.into()),
        "{ev:?}"
    );
}

#[test]
fn unmet_validation_fails_the_step_or_warns_under_fail_workflow_false() {
    let Some(r) = setup("validate-unmet") else {
        return;
    };
    let wf1 = r.write_workflow(
        "v.yml",
        &wf("{shell: 'echo tried >> tries.log', max_attempts: 2}"),
    );
    let o = r.run(&wf1, &["-y"]);
    assert_eq!(o.code, 1, "{o:?}");
    assert!(
        o.stdout.contains(
            "validation unmet after 2 on_incomplete attempt(s): 40% complete (threshold: 100%)"
        ),
        "{o:?}"
    );
    let s = r.only_session();
    assert_eq!(s["status"], "Failed", "{s}");
    let id = s["id"].as_str().unwrap().to_string();
    let tries = fs::read_to_string(r.env.p(&format!("worktrees/work/{id}/tries.log"))).unwrap();
    assert_eq!(tries, "tried\ntried\n");
    assert!(!r.env.p(&format!("worktrees/work/{id}/after.txt")).exists());

    let wf2 = r.write_workflow(
        "w.yml",
        &wf("{shell: 'echo tried', max_attempts: 1, fail_workflow: false}"),
    );
    let o = r.run(&wf2, &["-y"]);
    assert_eq!(o.code, 0, "{o:?}");
    assert!(
        o.stderr.contains("prodigy: warning: step 1 (shell: echo work > work.txt && git add . && git commit -q -m work): validation unmet after 1 on_incomplete attempt(s): 40% complete (threshold: 100%); continuing (fail_workflow: false)"),
        "{o:?}"
    );
    assert_eq!(
        fs::read_to_string(r.repo.join("after.txt")).unwrap(),
        "after 40.0\n"
    );
}

#[test]
fn output_that_is_not_the_json_counts_by_exit_status_and_result_file_is_read() {
    let Some(r) = setup("validate-exit") else {
        return;
    };
    // Exit 0 and no JSON: 100 %; threshold met.
    let ok = r.write_workflow(
        "ok.yml",
        "- shell: 'true'\n  validate: {shell: echo looks fine}\n- shell: echo ${validation.completion} ${validation.status} > c.txt && git add . && git commit -q -m c\n",
    );
    let o = r.run(&ok, &["-y"]);
    assert_eq!(o.code, 0, "{o:?}");
    assert_eq!(
        fs::read_to_string(r.repo.join("c.txt")).unwrap(),
        "100.0 complete\n"
    );
    // Exit 1 (even with JSON saying 100): 0 %, never complete.
    let bad = r.write_workflow(
        "bad.yml",
        "- shell: 'true'\n  validate:\n    shell: |\n      echo '{\"completion_percentage\": 100}'; exit 1\n    threshold: 50\n",
    );
    let o = r.run(&bad, &["-y"]);
    assert_eq!(o.code, 1, "{o:?}");
    assert!(o.stdout.contains("0% complete (threshold: 50%)"), "{o:?}");
    // result_file, relative to the worktree; stdout is ignored then.
    let rf = r.write_workflow(
        "rf.yml",
        "- shell: 'true'\n  validate:\n    shell: |\n      mkdir -p out && echo '{\"completion_percentage\": 80, \"missing\": [\"a\", \"b\"]}' > out/v.json; echo noise\n    result_file: out/v.json\n    threshold: 75\n- shell: echo ${validation.completion} ${validation.missing} > r.txt && git add r.txt && git commit -q -m r\n",
    );
    let o = r.run(&rf, &["-y"]);
    assert_eq!(o.code, 0, "{o:?}");
    assert_eq!(
        fs::read_to_string(r.repo.join("r.txt")).unwrap(),
        "80.0 a, b\n"
    );
    // A result_file outside the worktree is refused: 0 %.
    let out = r.write_workflow(
        "out.yml",
        "- shell: 'true'\n  validate: {shell: 'true', result_file: ../x.json, threshold: 1}\n",
    );
    let o = r.run(&out, &["-y"]);
    assert_eq!(o.code, 1, "{o:?}");
}

#[test]
fn an_agent_whose_validation_is_unmet_goes_to_the_dlq_while_the_others_merge() {
    let Some(r) = setup("validate-agent") else {
        return;
    };
    let wf = r.write_workflow(
        "mr.yml",
        r#"name: vmr
mode: mapreduce
map:
  input: "seq 1 3"
  agent_template:
    - shell: echo ${item} > f-${item}.txt && git add . && git commit -q -m "agent ${item}"
      validate:
        shell: 'if [ ${item} = 2 ]; then echo "{\"completion_percentage\": 10}"; else echo "{\"completion_percentage\": 100}"; fi'
        on_incomplete: {shell: 'true', max_attempts: 1}
"#,
    );
    let o = r.run(&wf, &["-y"]);
    assert_eq!(o.code, 1, "{o:?}");
    let s = r.only_session();
    let job = s["mapreduce_data"]["job_id"].as_str().unwrap().to_string();
    let dlq = r.json(&format!("dlq/work/{job}/dlq-items.json"));
    let items = dlq["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{dlq}");
    assert_eq!(items[0]["item_id"], "1", "{dlq}");
    let err = items[0]["failure_history"][0]["error"].as_str().unwrap();
    assert!(
        err.contains("validation unmet after 1 on_incomplete attempt(s): 10% complete"),
        "{err}"
    );
    assert!(r.repo.join("f-1.txt").exists() && r.repo.join("f-3.txt").exists());
    assert!(!r.repo.join("f-2.txt").exists());
}

#[test]
fn a_run_killed_inside_on_incomplete_resumes_by_validating_again_with_the_attempt_counted_once() {
    let Some(r) = setup("validate-kill") else {
        return;
    };
    let d = r.env.dir.display().to_string();
    let text = format!(
        "- shell: echo ran >> {d}/step.log; echo work > work.txt && git add . && git commit -q -m work\n  commit_required: true\n  validate:\n    shell: '{}'\n    on_incomplete:\n      shell: 'echo ${{validation.attempt_number}} >> {d}/fixes.log; if [ ! -f {d}/killed ]; then touch {d}/started; sleep 30; fi; touch done.txt'\n      max_attempts: 2\n- shell: echo \"after ${{validation.attempt_number}}\" > after.txt && git add . && git commit -q -m after\n",
        VALIDATOR.replace('\'', "''")
    );
    let wf = r.write_workflow("k.yml", &text);
    let mut child = spawn_run(&r, &wf, &["-y"]);
    let started = r.env.dir.join("started");
    wait_for("on_incomplete", || started.exists());
    fs::write(r.env.dir.join("killed"), "").unwrap();
    unsafe_kill(child.id() as i32, 9);
    let _ = child.wait();
    let s = r.only_session();
    let v = &s["workflow_data"]["variables"]["validation"];
    assert_eq!(v["attempt_number"], 1, "{s}");
    assert_eq!(v["at"], "step1", "{s}");
    let id = s["id"].as_str().unwrap().to_string();
    let o = Out::from(
        r.env
            .cmd(&["resume", &id, "-y"])
            .current_dir(&r.repo)
            .output()
            .unwrap(),
    );
    assert_eq!(o.code, 0, "{o:?}");
    // The step ran once (re-validated, not re-run); the killed attempt counts: the next is 2.
    assert_eq!(
        fs::read_to_string(r.env.dir.join("step.log")).unwrap(),
        "ran\n"
    );
    assert_eq!(
        fs::read_to_string(r.env.dir.join("fixes.log")).unwrap(),
        "1\n2\n"
    );
    assert_eq!(
        fs::read_to_string(r.repo.join("after.txt")).unwrap(),
        "after 2\n"
    );
    assert_eq!(r.only_session()["status"], "Completed");
}

#[test]
fn setup_and_reduce_steps_are_validated_with_commands_and_list_forms() {
    let Some(r) = setup("validate-phases") else {
        return;
    };
    let wf = r.write_workflow(
        "mr.yml",
        r#"name: vph
mode: mapreduce
setup:
  - shell: echo setup > s.txt && git add . && git commit -q -m setup
    validate:
      commands:
        - shell: test -f s.txt
        - shell: |
            if [ -f fixed.txt ]; then echo '{"completion_percentage": 100}' > v.json; else echo '{"completion_percentage": 20, "missing": ["fix"]}' > v.json; fi
      result_file: v.json
      on_incomplete:
        - shell: echo "${validation.missing} ${validation.attempt_number}" > fixed.txt
map:
  input: "seq 1 2"
  agent_template:
    - shell: echo ${item} > f-${item}.txt && git add f-${item}.txt && git commit -q -m "agent ${item}"
reduce:
  - shell: 'true'
    validate:
      shell: |
        echo '{"completion_percentage": 60, "status": "incomplete"}'
      threshold: 90
      on_incomplete: {shell: 'true', max_attempts: 1, fail_workflow: false}
  - shell: echo "${validation.completion} ${validation.status}" > red.txt && cat fixed.txt >> red.txt && git add red.txt && git commit -q -m reduce
"#,
    );
    let o = r.run(&wf, &["-y"]);
    assert_eq!(o.code, 0, "{o:?}");
    assert_eq!(
        fs::read_to_string(r.repo.join("red.txt")).unwrap(),
        "60.0 incomplete\nfix 1\n"
    );
    assert!(
        o.stderr.contains("validation unmet after 1 on_incomplete attempt(s): 60% complete (threshold: 90%); continuing (fail_workflow: false)"),
        "{o:?}"
    );
    assert!(r.repo.join("f-1.txt").exists() && r.repo.join("f-2.txt").exists());
}

#[test]
fn a_committed_step_killed_in_its_validator_is_validated_again_not_run_again() {
    let Some(r) = setup("validate-kill-check") else {
        return;
    };
    let d = r.env.dir.display().to_string();
    let text = format!(
        "- shell: echo ran >> {d}/step.log; echo work > work.txt && git add . && git commit -q -m work\n  commit_required: true\n  validate:\n    shell: 'echo checked >> {d}/checks.log; if [ ! -f {d}/killed ]; then touch {d}/started; sleep 30; fi'\n",
    );
    let wf = r.write_workflow("k.yml", &text);
    let mut child = spawn_run(&r, &wf, &["-y"]);
    let started = r.env.dir.join("started");
    wait_for("the validator", || started.exists());
    fs::write(r.env.dir.join("killed"), "").unwrap();
    unsafe_kill(child.id() as i32, 9);
    let _ = child.wait();
    let id = r.only_session()["id"].as_str().unwrap().to_string();
    let o = Out::from(
        r.env
            .cmd(&["resume", &id, "-y"])
            .current_dir(&r.repo)
            .output()
            .unwrap(),
    );
    assert_eq!(o.code, 0, "{o:?}");
    assert_eq!(
        fs::read_to_string(r.env.dir.join("step.log")).unwrap(),
        "ran\n"
    );
    assert_eq!(
        fs::read_to_string(r.env.dir.join("checks.log")).unwrap(),
        "checked\nchecked\n"
    );
    assert_eq!(
        fs::read_to_string(r.repo.join("work.txt")).unwrap(),
        "work\n"
    );
}

#[test]
fn a_reduce_killed_inside_on_incomplete_after_a_validated_setup_resumes_its_own_loop() {
    // Setup's validation leaves `${validation.*}` in the run's variables; the reduce
    // checkpoint must still keep reduce's own loop (it once kept only names setup did not
    // have, so the resume ran the committed step again: "nothing to commit", exit 1).
    let Some(r) = setup("validate-kill-reduce") else {
        return;
    };
    let d = r.env.dir.display().to_string();
    let text = format!(
        r#"name: vkr
mode: mapreduce
setup:
  - shell: echo s > s.txt && git add . && git commit -q -m setup
    validate: {{shell: 'true'}}
map:
  input: "seq 1 2"
  agent_template:
    - shell: echo ${{item}} > f-${{item}}.txt && git add . && git commit -q -m "agent ${{item}}"
reduce:
  - shell: echo ran >> {d}/step.log; echo work > work.txt && git add . && git commit -q -m work
    commit_required: true
    validate:
      shell: '{v}'
      on_incomplete:
        shell: 'echo ${{validation.attempt_number}} >> {d}/fixes.log; if [ ! -f {d}/killed ]; then touch {d}/started; while [ ! -f {d}/killed ]; do sleep 0.05; done; exit 1; fi; touch done.txt'
        max_attempts: 2
  - shell: echo "after ${{validation.attempt_number}}" > after.txt && git add after.txt && git commit -q -m after
"#,
        v = VALIDATOR.replace('\'', "''")
    );
    let wf = r.write_workflow("k.yml", &text);
    let mut child = spawn_run(&r, &wf, &["-y"]);
    let started = r.env.dir.join("started");
    wait_for("on_incomplete", || started.exists());
    unsafe_kill(child.id() as i32, 9);
    let _ = child.wait();
    // The orphaned handler run ends (without its fix) once prodigy is gone.
    fs::write(r.env.dir.join("killed"), "").unwrap();
    let job = r.only_session()["mapreduce_data"]["job_id"]
        .as_str()
        .unwrap()
        .to_string();
    let o = Out::from(
        r.env
            .cmd(&["resume", &job, "-y"])
            .current_dir(&r.repo)
            .output()
            .unwrap(),
    );
    assert_eq!(o.code, 0, "{o:?}");
    assert_eq!(
        fs::read_to_string(r.env.dir.join("step.log")).unwrap(),
        "ran\n"
    );
    assert_eq!(
        fs::read_to_string(r.env.dir.join("fixes.log")).unwrap(),
        "1\n2\n"
    );
    assert_eq!(
        fs::read_to_string(r.repo.join("after.txt")).unwrap(),
        "after 2\n"
    );
}
