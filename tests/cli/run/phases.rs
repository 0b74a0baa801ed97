//! The feature × phase matrix (run.md §2: "Step modifiers, honoured in every phase (standard,
//! setup, agents, reduce, merge)"): the same block of steps, one per feature, runs in each phase
//! and leaves its evidence in `DIR/`, committed and merged into the user's branch; then failed
//! runs resumed with their captures (also captures that shadow an `--arg`).

use super::*;

/// One step (or two) per feature; `@T` is the phase's tag (variable names, values), `@D` the
/// directory its files go to. The last step commits everything the block wrote.
const BLOCK: &str = r#"- shell: 'echo "{\"n\": 4, \"w\": \"@T\"}"; echo err-@T >&2'
  capture: @T_j
  capture_format: json
  capture_streams: {stdout: true, stderr: true, exit_code: true}
- write_file:
    path: "@D/sub/w.json"
    content: '{"n": ${@T_j.n}, "w": "${@T_j.w}"}'
    format: json
    create_dirs: true
- foreach:
    foreach: [a, b]
    parallel: 2
    do:
      - shell: echo "${item} ${index}/${total} ${@T_j.w}" > @D/fe-${item}.txt
- shell: echo no > @D/when-false.txt
  when: "${@T_j.n} == 5"
- shell: echo yes > @D/when-true.txt
  when: "${@T_j.n} == 4 && '${@T_j.w}' == '@T'"
- shell: echo no > @D/when-bool.txt
  when: false
- shell: echo step > @D/ok.txt
  on_success:
    shell: echo on_success >> @D/ok.txt
- shell: exit 3
  on_exit_code:
    3:
      shell: echo exit-3 > @D/code.txt
  on_failure:
    shell: echo wrong > @D/code-failure.txt
- shell: exit 1
  on_failure: echo cmd > @D/fail-cmd.txt
- shell: exit 1
  on_failure:
    - shell: echo list-1 > @D/fail-list.txt
    - shell: echo list-2 >> @D/fail-list.txt
- shell: basename "$(pwd)" > here.txt
  working_dir: @D/sub
- shell: echo "$STEP_ENV" > @D/env.txt
  env: {STEP_ENV: "env-${@T_j.w}"}
- shell: exit 1
  working_dir: @D/sub
  env: {STEP_ENV: "h-${@T_j.w}"}
  on_failure:
    shell: echo "$STEP_ENV $(basename "$(pwd)")" > handler.txt
- shell: echo out-@T
  capture_output: true
  output_file: @D/out.txt
- shell: echo "${shell.output}" > @D/shell-output.txt
- shell: sleep 10
  timeout: 1
  on_failure: echo timed-out > @D/timeout.txt
- id: gen_@T
  shell: echo made > @D/gen-@T.txt
  outputs:
    made: {file_pattern: "gen-@T.txt"}
- shell: echo "${gen_@T.made}" > @D/outputs.txt
- shell: echo checked > @D/val.txt
  validate:
    shell: 'if [ -e @D/fixed.txt ]; then echo "{\"completion_percentage\": 100}"; else echo "{\"completion_percentage\": 50, \"missing\": [\"fix\"]}"; fi'
    on_incomplete:
      shell: echo "${validation.completion} ${validation.missing} ${validation.attempt_number}" > @D/fixed.txt
      max_attempts: 2
- shell: |
    echo "${@T_j.n} ${@T_j.w} ${@T_j.stderr} ${@T_j.exit_code} ${validation.completion}" > @D/cap.txt
    git add -A && git commit -q -m "@D features"
  commit_required: true
"#;

/// `BLOCK` for phase `tag` writing under `dir`, indented by `indent` spaces.
fn block(tag: &str, dir: &str, indent: usize) -> String {
    let pad = " ".repeat(indent);
    BLOCK
        .replace("@T", tag)
        .replace("@D", dir)
        .lines()
        .map(|l| format!("{pad}{l}\n"))
        .collect()
}

/// The merge step that merges the session branch into the user's checkout (`merge:` replaces
/// the default merge, run.md §4).
fn merge_step(r: &Run, indent: usize) -> String {
    let pad = " ".repeat(indent);
    format!(
        "{pad}- shell: git -C {} merge -q --no-ff -m \"merge ${{merge.source_branch}} into ${{merge.target_branch}}\" ${{merge.source_branch}}\n",
        r.repo.display()
    )
}

/// What `BLOCK` leaves in `dir` of the user's checkout, for phase `tag`.
fn block_files(r: &Run, tag: &str, dir: &str) {
    let d = r.repo.join(dir);
    let read = |f: &str| {
        fs::read_to_string(d.join(f)).unwrap_or_else(|e| panic!("{tag}: `{dir}/{f}`: {e}"))
    };
    // capture + capture_format json + capture_streams.
    assert_eq!(
        read("cap.txt"),
        format!("4 {tag} err-{tag} 0 100.0\n"),
        "{tag}"
    );
    // write_file, json pretty-printed, create_dirs.
    let w: Value = serde_json::from_str(&read("sub/w.json")).unwrap();
    assert_eq!(w, serde_json::json!({"n": 4, "w": tag}), "{tag}");
    assert!(read("sub/w.json").contains("\n  \"n\": 4"), "{tag}: pretty");
    // foreach, parallel 2, in the worktree.
    assert_eq!(read("fe-a.txt"), format!("a 0/2 {tag}\n"), "{tag}");
    assert_eq!(read("fe-b.txt"), format!("b 1/2 {tag}\n"), "{tag}");
    // when false / true.
    assert!(!d.join("when-false.txt").exists(), "{tag}: when false ran");
    assert!(!d.join("when-bool.txt").exists(), "{tag}: when: false ran");
    assert_eq!(read("when-true.txt"), "yes\n", "{tag}");
    // on_success.
    assert_eq!(read("ok.txt"), "step\non_success\n", "{tag}");
    // on_exit_code decides; on_failure does not run.
    assert_eq!(read("code.txt"), "exit-3\n", "{tag}");
    assert!(
        !d.join("code-failure.txt").exists(),
        "{tag}: on_failure ran"
    );
    // on_failure as a command and as a list.
    assert_eq!(read("fail-cmd.txt"), "cmd\n", "{tag}");
    assert_eq!(read("fail-list.txt"), "list-1\nlist-2\n", "{tag}");
    // working_dir.
    assert_eq!(read("sub/here.txt"), "sub\n", "{tag}");
    assert!(!d.join("here.txt").exists(), "{tag}");
    // step env; a handler runs in the step's working_dir with its env.
    assert_eq!(read("env.txt"), format!("env-{tag}\n"), "{tag}");
    assert_eq!(read("sub/handler.txt"), format!("h-{tag} sub\n"), "{tag}");
    // capture_output, output_file.
    assert_eq!(read("out.txt"), format!("out-{tag}\n"), "{tag}");
    assert_eq!(read("shell-output.txt"), format!("out-{tag}\n"), "{tag}");
    // timeout: the step is stopped and fails (its on_failure recovers it).
    assert_eq!(read("timeout.txt"), "timed-out\n", "{tag}");
    // id + outputs.
    assert_eq!(read(&format!("gen-{tag}.txt")), "made\n", "{tag}");
    assert_eq!(
        read("outputs.txt"),
        format!("{dir}/gen-{tag}.txt\n"),
        "{tag}"
    );
    // validate + on_incomplete with ${validation.*}.
    assert_eq!(read("val.txt"), "checked\n", "{tag}");
    assert_eq!(read("fixed.txt"), "50.0 fix 1\n", "{tag}");
}

/// The session branch's own history (first parents of the final merge's second parent).
fn session_log(r: &Run) -> Vec<String> {
    git(&r.repo, &["log", "--first-parent", "--format=%s", "main^2"])
        .lines()
        .map(str::to_string)
        .collect()
}

/// No session worktree, agent worktree or branch left; no session Running.
fn nothing_left(r: &Run) {
    let branches = git(&r.repo, &["branch", "--format=%(refname:short)"]);
    assert_eq!(branches.trim(), "main", "{branches}");
    let wts = r.env.p("worktrees/work");
    let left: Vec<_> = fs::read_dir(&wts)
        .map(|rd| rd.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "{left:?}");
    assert!(!git(&r.repo, &["worktree", "list", "--porcelain"]).contains("prunable"));
    no_running_session(r);
    assert_eq!(git(&r.repo, &["status", "--porcelain"]), "");
}

#[test]
fn every_feature_runs_in_a_standard_workflow_and_its_merge_steps() {
    let Some(r) = setup("phases-standard") else {
        return;
    };
    let text = format!(
        "name: std\ncommands:\n{}merge:\n{}{}",
        block("std", "std", 2),
        block("smerge", "smerge", 2),
        merge_step(&r, 2)
    );
    let wf = r.write_workflow("std.yml", &text);
    let o = r.run(&wf, &["-y"]);
    assert_eq!(o.code, 0, "{o:?}");
    assert!(o.stdout.contains("branch: merged"), "{o:?}");
    assert_eq!(o.stderr, "", "{o:?}");
    block_files(&r, "std", "std");
    block_files(&r, "smerge", "smerge");
    // The merge step's merge, of the session branch: the phases' commits in order.
    let l = log(&r.repo);
    assert!(l.starts_with("merge prodigy-session-"), "{l}");
    assert!(l.lines().next().unwrap().ends_with(" into main"), "{l}");
    assert_eq!(
        session_log(&r),
        ["smerge features", "std features", "init"],
        "{l}"
    );
    // The checkpoint keeps the captures with their types and the step's outputs.
    let s = r.only_session();
    assert_eq!(s["status"], "Completed", "{s}");
    let v = &s["workflow_data"]["variables"];
    assert_eq!(v["std_j"]["n"], 4, "{v}");
    assert_eq!(v["std_j"]["w"], "std", "{v}");
    assert_eq!(v["gen_std.made"], "std/gen-std.txt", "{v}");
    nothing_left(&r);
}

/// The job's directory under `$PRODIGY_HOME` (`state/work/mapreduce/jobs/JOB`).
fn job_dir(r: &Run, job: &str) -> PathBuf {
    r.env.p(&format!("state/work/mapreduce/jobs/{job}"))
}

/// The newest `reduce-checkpoint-v1-*.json` of a job.
fn reduce_checkpoint(r: &Run, job: &str) -> Value {
    let mut names: Vec<String> = fs::read_dir(job_dir(r, job))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("reduce-checkpoint-v1-"))
        .collect();
    names.sort();
    let p = job_dir(r, job).join(names.last().expect("a reduce checkpoint"));
    serde_json::from_slice(&fs::read(p).unwrap()).unwrap()
}

#[test]
fn every_feature_runs_in_setup_agents_reduce_and_merge_of_a_mapreduce_workflow() {
    let Some(r) = setup("phases-mapreduce") else {
        return;
    };
    let text = format!(
        r#"name: mr
mode: mapreduce
setup:
{}map:
  input: "echo '[{{\"id\": \"a1\"}}, {{\"id\": \"a2\"}}]'"
  max_parallel: 2
  agent_template:
{}reduce:
{}  - shell: echo "${{map.successful}}/${{map.total}} ${{setup_j.w}}" > reduce/map.txt && git add -A && git commit -q -m "reduce map"
    commit_required: true
merge:
{}  - shell: echo "${{setup_j.w}} ${{reduce_j.w}} ${{map.successful}}" > merge/seen.txt && git add -A && git commit -q -m "merge seen"
{}"#,
        block("setup", "setup", 2),
        block("agent", "item-${item_id}", 4),
        block("reduce", "reduce", 2),
        block("merge", "merge", 2),
        merge_step(&r, 2)
    );
    let wf = r.write_workflow("mr.yml", &text);
    let o = r.run(&wf, &["-y", "--json"]);
    assert_eq!(o.code, 0, "{o:?}");
    assert_eq!(o.stderr, "", "{o:?}");
    let v: Value = serde_json::from_str(&o.stdout).unwrap();
    assert_eq!(v["merge"], "merged", "{v}");
    assert_eq!(v["status"], "completed", "{v}");
    assert_eq!(
        (v["total"].as_u64(), v["failed"].as_u64()),
        (Some(2), Some(0)),
        "{v}"
    );
    block_files(&r, "setup", "setup");
    block_files(&r, "agent", "item-a1");
    block_files(&r, "agent", "item-a2");
    block_files(&r, "reduce", "reduce");
    block_files(&r, "merge", "merge");
    assert_eq!(
        fs::read_to_string(r.repo.join("reduce/map.txt")).unwrap(),
        "2/2 setup\n"
    );
    // Setup's and reduce's captures and map.* reach the merge steps.
    assert_eq!(
        fs::read_to_string(r.repo.join("merge/seen.txt")).unwrap(),
        "setup reduce 2\n"
    );
    // History: setup, both agents (each merged into the parent), reduce, merge, the merge step.
    let l = log(&r.repo);
    assert!(l.starts_with("merge prodigy-session-"), "{l}");
    let s = session_log(&r);
    assert_eq!(s.len(), 8, "{s:?}");
    assert_eq!(
        &s[..4],
        [
            "merge seen",
            "merge features",
            "reduce map",
            "reduce features"
        ],
        "{s:?}"
    );
    assert_eq!(&s[6..], ["setup features", "init"], "{s:?}");
    // Each agent merged into the session branch on its own, with its item's commit.
    let mut items = Vec::new();
    for (i, subject) in s.iter().enumerate().take(6).skip(4) {
        assert!(subject.starts_with("Merge agent prodigy-agent-"), "{s:?}");
        let item = &subject[subject.len() - 3..subject.len() - 1];
        assert!(subject.ends_with(&format!("(item {item})")), "{s:?}");
        let agent = git(
            &r.repo,
            &["log", "-1", "--format=%s", &format!("main^2~{i}^2")],
        );
        assert_eq!(agent.trim(), format!("item-{item} features"));
        items.push(item.to_string());
    }
    items.sort();
    assert_eq!(items, ["a1", "a2"]);
    let job = v["job_id"].as_str().unwrap();
    // Each phase's log (run.md §3) has its write_file line.
    for (log, dir) in [
        ("setup", "setup"),
        ("agent-a1", "item-a1"),
        ("agent-a2", "item-a2"),
        ("reduce", "reduce"),
        ("merge", "merge"),
    ] {
        let p = r.env.p(&format!("logs/work/{job}/{log}.log"));
        let text = fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        assert!(
            text.contains(&format!(" bytes to {dir}/sub/w.json\n")),
            "{log}: {text}"
        );
    }
    // The checkpoints keep each phase's captures, typed.
    let sc: Value =
        serde_json::from_slice(&fs::read(job_dir(&r, job).join("setup-checkpoint.json")).unwrap())
            .unwrap();
    assert_eq!(sc["completed"], true, "{sc}");
    assert_eq!(sc["outputs"]["setup_j"]["w"], "setup", "{sc}");
    assert_eq!(sc["outputs"]["setup_j"]["n"], 4, "{sc}");
    assert_eq!(
        sc["outputs"]["gen_setup.made"], "setup/gen-setup.txt",
        "{sc}"
    );
    let rc = reduce_checkpoint(&r, job);
    assert_eq!(rc["step_results"]["reduce_j"]["w"], "reduce", "{rc}");
    assert_eq!(
        rc["step_results"]["gen_reduce.made"], "reduce/gen-reduce.txt",
        "{rc}"
    );
    assert_eq!(rc["completed_steps"].as_array().unwrap().len(), 21, "{rc}");
    nothing_left(&r);
}

/// `prodigy resume ID -y` in the repository.
fn resume(r: &Run, id: &str) -> Out {
    Out::from(
        r.env
            .cmd(&["resume", id, "-y"])
            .current_dir(&r.repo)
            .output()
            .unwrap(),
    )
}

/// A capture named like an `--arg` replaces it; a run failed after the capture and resumed keeps
/// the captured value (the checkpoint keeps every variable the steps changed, not only new
/// names), and the capturing step does not run again.
#[test]
fn a_standard_capture_shadowing_an_arg_survives_a_failure_and_resume() {
    let Some(r) = setup("phases-shadow-standard") else {
        return;
    };
    let count = r.env.dir.join("count.txt");
    let flag = r.env.dir.join("broken");
    fs::write(&flag, "").unwrap();
    let wf = r.write_workflow(
        "shadow.yml",
        &format!(
            r#"name: shadow
commands:
  - shell: 'echo ran >> {c}; echo "{{\"v\": \"captured\"}}"'
    capture: NAME
    capture_format: json
  - shell: test ! -e {f} || exit 7
  - shell: echo "${{NAME.v}} ${{OTHER}}" > name.txt && git add -A && git commit -q -m name
    commit_required: true
"#,
            c = count.display(),
            f = flag.display()
        ),
    );
    let o = r.run(&wf, &["-y", "--arg", "NAME=orig", "--arg", "OTHER=kept"]);
    assert_eq!(o.code, 1, "{o:?}");
    let s = r.only_session();
    assert_eq!(
        s["workflow_data"]["variables"]["NAME"],
        serde_json::json!({"v": "captured"}),
        "{s}"
    );
    // An unchanged --arg is not a captured variable.
    assert!(
        s["workflow_data"]["variables"].get("OTHER").is_none(),
        "{s}"
    );
    fs::remove_file(&flag).unwrap();
    let o = resume(&r, s["id"].as_str().unwrap());
    assert_eq!(o.code, 0, "{o:?}");
    assert_eq!(
        fs::read_to_string(r.repo.join("name.txt")).unwrap(),
        "captured kept\n"
    );
    assert_eq!(fs::read_to_string(&count).unwrap(), "ran\n");
    nothing_left(&r);
}

/// The same in MapReduce: a setup capture shadowing an `--arg`, setup failed after it and
/// resumed, reaches the agents and reduce; then reduce fails after its own shadowing capture and
/// a second resume (setup complete, restored from its checkpoint) still sees both.
#[test]
fn a_setup_capture_shadowing_an_arg_survives_failures_in_setup_and_reduce_and_resumes() {
    let Some(r) = setup("phases-shadow-setup") else {
        return;
    };
    let count = r.env.dir.join("count.txt");
    let (f1, f2) = (r.env.dir.join("broken1"), r.env.dir.join("broken2"));
    fs::write(&f1, "").unwrap();
    fs::write(&f2, "").unwrap();
    let wf = r.write_workflow(
        "shadow.yml",
        &format!(
            r#"name: shadow
mode: mapreduce
setup:
  - shell: echo setup >> {c}; echo from-setup
    capture: NAME
  - shell: test ! -e {f1} || exit 7
map:
  input: "echo '[\"x\"]'"
  agent_template:
    - shell: echo "${{NAME}}" > agent.txt && git add -A && git commit -q -m agent
      commit_required: true
reduce:
  - shell: echo reduce >> {c}; echo from-reduce
    capture: R
  - shell: test ! -e {f2} || exit 8
  - shell: echo "${{NAME}} ${{R}}" > reduce.txt && git add -A && git commit -q -m reduce
    commit_required: true
"#,
            c = count.display(),
            f1 = f1.display(),
            f2 = f2.display()
        ),
    );
    let o = r.run(&wf, &["-y", "--arg", "NAME=orig", "--arg", "R=orig-r"]);
    assert_eq!(o.code, 1, "{o:?}");
    let id = r.only_session()["id"].as_str().unwrap().to_string();
    fs::remove_file(&f1).unwrap();
    let o = resume(&r, &id);
    assert_eq!(o.code, 1, "{o:?}");
    assert!(o.stdout.contains("reduce failed"), "{o:?}");
    fs::remove_file(&f2).unwrap();
    let o = resume(&r, &id);
    assert_eq!(o.code, 0, "{o:?}");
    assert_eq!(
        fs::read_to_string(r.repo.join("agent.txt")).unwrap(),
        "from-setup\n"
    );
    assert_eq!(
        fs::read_to_string(r.repo.join("reduce.txt")).unwrap(),
        "from-setup from-reduce\n"
    );
    assert_eq!(fs::read_to_string(&count).unwrap(), "setup\nreduce\n");
    nothing_left(&r);
}

/// Merge steps: a capture, a committing step, then `sleep`/`FLAG` points, then the merge.
fn merge_resume_workflow(r: &Run, count: &Path, stop2: &str, stop3: &str, head: &str) -> String {
    format!(
        r#"name: m
{head}merge:
  - shell: 'echo ran >> {c}; echo "{{\"v\": 1}}"'
    capture: M
    capture_format: json
  - shell: echo m > m.txt && git add -A && git commit -q -m "merge commit"{stop2}
    commit_required: true
  - shell: {stop3}echo "${{M.v}}" > mv.txt && git add -A && git commit -q -m mv
    commit_required: true
{ms}"#,
        c = count.display(),
        ms = merge_step(r, 2),
    )
}

/// `merge:` steps resume like the other phases (run.md §6): a run failed in its merge steps
/// resumes after the last completed one, with its captures; a step that committed is not run
/// again (it could not: there is nothing left to commit).
#[test]
fn merge_steps_failed_after_a_commit_resume_after_it_with_their_captures() {
    let Some(r) = setup("phases-merge-fail") else {
        return;
    };
    let count = r.env.dir.join("count.txt");
    let flag = r.env.dir.join("broken");
    fs::write(&flag, "").unwrap();
    let wf = r.write_workflow(
        "m.yml",
        &merge_resume_workflow(
            &r,
            &count,
            "",
            &format!("test ! -e {} || exit 7; ", flag.display()),
            "commands:\n  - shell: echo a > a.txt && git add -A && git commit -q -m a\n",
        ),
    );
    let o = r.run(&wf, &["-y"]);
    assert_eq!(o.code, 1, "{o:?}");
    assert!(o.stdout.contains("merge step failed: step 3 "), "{o:?}");
    let s = r.only_session();
    let m = &s["workflow_data"]["merge"];
    assert_eq!(m["completed_steps"], 2, "{m}");
    assert_eq!(m["variables"]["M"], serde_json::json!({"v": 1}), "{m}");
    assert_eq!(log(&r.repo), "init\n");
    fs::remove_file(&flag).unwrap();
    let id = s["id"].as_str().unwrap();
    let o = resume(&r, id);
    assert_eq!(o.code, 0, "{o:?}");
    assert_eq!(
        o.stderr,
        format!("prodigy: resuming session {id} at its final merge\n")
    );
    assert_eq!(fs::read_to_string(&count).unwrap(), "ran\n");
    assert_eq!(fs::read_to_string(r.repo.join("mv.txt")).unwrap(), "1\n");
    assert_eq!(session_log(&r), ["mv", "merge commit", "a", "init"]);
    let s = r.only_session();
    assert_eq!(s["status"], "Completed", "{s}");
    assert!(s["workflow_data"].get("merge").is_none(), "{s}");
    nothing_left(&r);
}

/// The same under kill -9 of the whole run (prodigy and the step) inside a MapReduce workflow's merge step, after that
/// step's commit: the resume counts the step as done and keeps the capture made before it.
#[test]
fn a_mapreduce_run_killed_inside_a_merge_step_after_its_commit_resumes_after_it() {
    let Some(r) = setup("phases-merge-kill") else {
        return;
    };
    let count = r.env.dir.join("count.txt");
    let ready = r.env.dir.join("ready");
    let wf = r.write_workflow(
        "m.yml",
        &merge_resume_workflow(
            &r,
            &count,
            &format!(
                " && echo $$ > {r}.tmp && mv {r}.tmp {r} && sleep 30",
                r = ready.display()
            ),
            "",
            "mode: mapreduce\nmap:\n  input: \"echo '[\\\"x\\\"]'\"\n  agent_template:\n    - shell: echo x > x.txt && git add -A && git commit -q -m x\n",
        ),
    );
    run_and_kill_at(&r, &["run", wf.to_str().unwrap(), "-y"], &ready);
    let id = r.only_session()["id"].as_str().unwrap().to_string();
    let o = resume(&r, &id);
    assert_eq!(o.code, 0, "{o:?}");
    assert_eq!(fs::read_to_string(&count).unwrap(), "ran\n");
    assert_eq!(fs::read_to_string(r.repo.join("mv.txt")).unwrap(), "1\n");
    let l = session_log(&r);
    assert_eq!(&l[..2], ["mv", "merge commit"], "{l:?}");
    assert_eq!(
        l.iter().filter(|s| *s == "merge commit").count(),
        1,
        "{l:?}"
    );
    assert_eq!(r.only_session()["status"], "Completed");
    nothing_left(&r);
}

/// `setup.timeout` and `merge.timeout` (`{commands, timeout}` forms) bound the whole phase: the
/// running step is stopped and the phase fails, naming the timeout.
#[test]
fn setup_and_merge_timeouts_stop_the_phase_and_fail_the_run() {
    let Some(r) = setup("phases-timeouts") else {
        return;
    };
    let wf = r.write_workflow(
        "mr.yml",
        r#"name: t
mode: mapreduce
setup:
  timeout: 1
  commands:
    - shell: sleep 0.3
    - shell: sleep 30
    - shell: echo never > never.txt
map:
  input: "echo '[\"x\"]'"
  agent_template:
    - shell: echo x
"#,
    );
    let t = Instant::now();
    let o = r.run(&wf, &["-y"]);
    assert_eq!(o.code, 1, "{o:?}");
    assert!(t.elapsed() < Duration::from_secs(8), "{:?}", t.elapsed());
    assert!(
        o.stdout
            .contains("failed (setup failed: the phase's timeout of 1 s was reached)"),
        "{o:?}"
    );
    let wf = r.write_workflow(
        "std.yml",
        "commands:\n  - shell: echo a > a.txt && git add -A && git commit -q -m a\nmerge:\n  timeout: 1\n  commands:\n    - shell: sleep 30\n",
    );
    let t = Instant::now();
    let o = r.run(&wf, &["-y"]);
    assert_eq!(o.code, 1, "{o:?}");
    assert!(t.elapsed() < Duration::from_secs(8), "{:?}", t.elapsed());
    assert!(
        o.stdout.contains(
            "(final merge failed: merge step failed: the phase's timeout of 1 s was reached)"
        ),
        "{o:?}"
    );
    assert_eq!(log(&r.repo), "init\n");
}

/// A validator that never gets there: 50 %.
const HALF: &str = r#"echo '{"completion_percentage": 50, "missing": ["m"]}'"#;

/// An unmet validation (run.md §2): in an agent it fails the item (→ DLQ) unless
/// `fail_workflow: false`, which, in every phase and inside a `foreach`, is a warning on the
/// terminal and the step succeeds.
#[test]
fn an_unmet_validation_fails_an_agents_item_or_warns_in_every_phase() {
    let Some(r) = setup("phases-unmet") else {
        return;
    };
    let soft = |what: &str| {
        format!(
            "  validate:\n    shell: \"{}\"\n    on_incomplete:\n      shell: echo {what} >> tried.txt\n      max_attempts: 1\n      fail_workflow: false\n",
            HALF.replace('"', "\\\"")
        )
    };
    let wf = r.write_workflow(
        "mr.yml",
        &format!(
            r#"name: unmet
mode: mapreduce
setup:
  - foreach:
      foreach: [f1]
      do:
        - shell: echo ${{item}} > ${{item}}.txt
{fe}  - shell: git add -A && git commit -q -m setup
map:
  input: "echo '[\"hard\", \"soft\"]'"
  agent_template:
    - shell: echo ${{item}} > ${{item}}.txt && git add -A && git commit -q -m ${{item}}
      when: "'${{item}}' == 'soft'"
{soft}    - shell: echo ${{item}} > ${{item}}.txt && git add -A && git commit -q -m ${{item}}
      when: "'${{item}}' == 'hard'"
      validate:
        shell: "{half}"
        on_incomplete:
          shell: echo hard >> tried.txt
          max_attempts: 1
reduce:
  - shell: echo reduce > reduce.txt && git add -A && git commit -q -m reduce
{red}"#,
            fe = soft("setup-foreach")
                .lines()
                .map(|l| format!("        {l}\n"))
                .collect::<String>(),
            soft = soft("agent")
                .lines()
                .map(|l| format!("    {l}\n"))
                .collect::<String>(),
            half = HALF.replace('"', "\\\""),
            red = soft("reduce")
                .lines()
                .map(|l| format!("  {l}\n"))
                .collect::<String>(),
        ),
    );
    let o = r.run(&wf, &["-y", "--json"]);
    assert_eq!(o.code, 1, "{o:?}");
    let v: Value = serde_json::from_str(&o.stdout).unwrap();
    assert_eq!(v["failed"], 1, "{v}");
    assert_eq!(v["merge"], "merged", "{v}");
    let warned: Vec<&str> = o
        .stderr
        .lines()
        .filter(|l| l.contains("validation unmet after 1 on_incomplete attempt(s): 50% complete"))
        .collect();
    assert_eq!(warned.len(), 3, "{o:?}");
    assert!(
        warned.iter().all(|l| l.starts_with("prodigy: warning: ")
            && l.ends_with("; continuing (fail_workflow: false)")),
        "{o:?}"
    );
    // Which step: inside the foreach item, of the agent (item id: the index of a string item),
    // of reduce.
    assert!(
        warned[0]
            .starts_with("prodigy: warning: foreach item 1 (`f1`): step 1 (shell: echo ${item}"),
        "{o:?}"
    );
    assert!(
        warned[1].starts_with("prodigy: warning: item 1: step 1 (shell: echo ${item}"),
        "{o:?}"
    );
    assert!(
        warned[2].starts_with("prodigy: warning: step 1 (shell: echo reduce"),
        "{o:?}"
    );
    // on_incomplete ran once in the foreach item (committed by setup's next step).
    assert_eq!(
        fs::read_to_string(r.repo.join("tried.txt")).unwrap(),
        "setup-foreach\n"
    );
    // The hard item is in the DLQ for its validation; the soft one merged.
    let dlq = r.json(&format!(
        "dlq/work/{}/dlq-items.json",
        v["job_id"].as_str().unwrap()
    ));
    assert_eq!(dlq["items"].as_array().unwrap().len(), 1, "{dlq}");
    assert_eq!(dlq["items"][0]["work_item"], "hard", "{dlq}");
    let err = dlq["items"][0]["failure_history"][0]["error"]
        .as_str()
        .unwrap();
    assert!(
        err.contains("validation unmet after 1 on_incomplete attempt(s)"),
        "{err}"
    );
    assert_eq!(
        fs::read_to_string(r.repo.join("soft.txt")).unwrap(),
        "soft\n"
    );
    assert!(!r.repo.join("hard.txt").exists());
    assert_eq!(fs::read_to_string(r.repo.join("f1.txt")).unwrap(), "f1\n");
    assert_eq!(
        fs::read_to_string(r.repo.join("reduce.txt")).unwrap(),
        "reduce\n"
    );
}

/// Keys accepted and ignored (`commit_message` in any phase's step, `map.agent_timeout_secs`)
/// and unknown keys are warnings naming file:line:col, in every phase; the run goes on.
#[test]
fn ignored_and_unknown_keys_warn_in_every_phase_and_the_run_goes_on() {
    let Some(r) = setup("phases-ignored") else {
        return;
    };
    let wf = r.write_workflow(
        "w.yml",
        &(r#"name: w
mode: mapreduce
setup:
  - shell: echo s
    commit_message: x
map:
  input: "echo '[1]'"
  agent_timeout_secs: 5
  agent_template:
    - shell: echo a > a.txt && git add -A && git commit -q -m a
      comit_required: true
reduce:
  - shell: echo r
    commit_message: y
merge:
  - shell: echo m
    commit_message: z
"#
        .to_string()
            + &merge_step(&r, 2)),
    );
    let o = r.run(&wf, &["-y"]);
    assert_eq!(o.code, 0, "{o:?}");
    let f = format!("`{}`", wf.display());
    let lines: Vec<String> = o.stderr.lines().map(str::to_string).collect();
    let ignored = "`commit_message` is accepted for Prodigy 0.4.4 compatibility and ignored";
    for (at, what) in [
        ("5:5", ignored.to_string()),
        (
            "8:3",
            "`map.agent_timeout_secs` is only advisory in Prodigy 0.4.4 and is ignored; \
             use a step `timeout`"
                .to_string(),
        ),
        (
            "11:7",
            "unknown key `comit_required` in a step (did you mean `commit_required`?); \
             it is ignored"
                .to_string(),
        ),
        ("14:5", ignored.to_string()),
        ("17:5", ignored.to_string()),
    ] {
        let want = format!("prodigy: warning: {f}:{at}: {what}");
        assert!(lines.contains(&want), "{want}\n{o:?}");
    }
    assert_eq!(lines.len(), 5, "{o:?}");
    assert_eq!(fs::read_to_string(r.repo.join("a.txt")).unwrap(), "a\n");
}

/// Start `prodigy ARGS` in its own process group; when `ready` holds a step's pid, kill -9
/// prodigy's group and that step's group (nothing of the run is left, as after a crash).
fn run_and_kill_at(r: &Run, args: &[&str], ready: &Path) {
    let mut c = r.env.cmd(args);
    c.current_dir(&r.repo)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    use std::os::unix::process::CommandExt;
    c.process_group(0);
    let mut child = c.spawn().unwrap();
    let t = Instant::now();
    while !ready.exists() {
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "the kill point was never reached"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let step: i32 = fs::read_to_string(ready).unwrap().trim().parse().unwrap();
    for pgid in [child.id() as i32, step] {
        let _ = Command::new("kill")
            .args(["-s", "9", "--", &(-pgid).to_string()])
            .status();
    }
    child.wait().unwrap();
}

/// A `foreach` in merge steps killed -9 in its second item resumes at that item: the first is
/// not run again (its progress is in the merge checkpoint).
#[test]
fn a_foreach_in_merge_steps_killed_in_its_second_item_resumes_there() {
    let Some(r) = setup("phases-merge-foreach") else {
        return;
    };
    let count = r.env.dir.join("count.txt");
    let ready = r.env.dir.join("ready");
    let wf = r.write_workflow(
        "m.yml",
        &format!(
            r#"commands:
  - shell: echo a > a.txt && git add -A && git commit -q -m a
merge:
  - foreach:
      foreach: [i1, i2, i3]
      do:
        - shell: |
            echo ${{item}} >> {c}
            if [ ${{item}} = i2 ] && [ ! -e {k} ]; then echo $$ > {k}.tmp; mv {k}.tmp {k}; sleep 30; fi
            echo ${{item}} > ${{item}}.txt
  - shell: git add -A && git commit -q -m items
    commit_required: true
{ms}"#,
            c = count.display(),
            k = ready.display(),
            ms = merge_step(&r, 2)
        ),
    );
    run_and_kill_at(&r, &["run", wf.to_str().unwrap(), "-y"], &ready);
    let s = r.only_session();
    let m = &s["workflow_data"]["merge"];
    assert_eq!(m["completed_steps"], 0, "{m}");
    let o = resume(&r, s["id"].as_str().unwrap());
    assert_eq!(o.code, 0, "{o:?}");
    assert_eq!(fs::read_to_string(&count).unwrap(), "i1\ni2\ni2\ni3\n");
    for i in ["i1", "i2", "i3"] {
        assert_eq!(
            fs::read_to_string(r.repo.join(format!("{i}.txt"))).unwrap(),
            format!("{i}\n")
        );
    }
    assert_eq!(session_log(&r), ["items", "a", "init"]);
    nothing_left(&r);
}

/// Killed -9 after the merge steps merged the session branch (in their last step): the resume
/// finds nothing left to merge, removes the session worktree and branch, completes, and keeps
/// no merge-step progress (a later `dlq retry` runs the merge steps from the first).
#[test]
fn killed_after_the_merge_steps_merged_the_resume_completes_with_nothing_to_merge() {
    let Some(r) = setup("phases-merge-done") else {
        return;
    };
    let ready = r.env.dir.join("ready");
    let wf = r.write_workflow(
        "m.yml",
        &format!(
            "commands:\n  - shell: echo a > a.txt && git add -A && git commit -q -m a\nmerge:\n  - shell: echo m\n    capture: M\n{}  - shell: echo $$ > {k}.tmp && mv {k}.tmp {k} && sleep 30\n",
            merge_step(&r, 2),
            k = ready.display()
        ),
    );
    run_and_kill_at(&r, &["run", wf.to_str().unwrap(), "-y"], &ready);
    let s = r.only_session();
    assert_eq!(s["workflow_data"]["merge"]["completed_steps"], 2, "{s}");
    let o = resume(&r, s["id"].as_str().unwrap());
    assert_eq!(o.code, 0, "{o:?}");
    assert!(o.stdout.contains("branch: nothing-to-merge"), "{o:?}");
    let s = r.only_session();
    assert_eq!(s["status"], "Completed", "{s}");
    assert!(s["workflow_data"].get("merge").is_none(), "{s}");
    assert_eq!(session_log(&r), ["a", "init"]);
    nothing_left(&r);
}

/// `setup.capture_outputs` (documented: agents, reduce and merge) and reduce's captures reach
/// the merge steps, also in a resume that starts at the merge steps (reduce complete: its
/// captures come from its checkpoint).
#[test]
fn setup_capture_outputs_and_reduce_captures_reach_merge_steps_also_after_a_resume() {
    let Some(r) = setup("phases-capout-merge") else {
        return;
    };
    let flag = r.env.dir.join("broken");
    fs::write(&flag, "").unwrap();
    let wf = r.write_workflow(
        "m.yml",
        &format!(
            r#"mode: mapreduce
setup:
  commands:
    - shell: 'echo ''{{"n": 7}}'''
  capture_outputs:
    N:
      command_index: 0
      json_path: "$.n"
map:
  input: "echo '[\"x\"]'"
  agent_template:
    - shell: echo ${{N}} > x.txt && git add -A && git commit -q -m x
reduce:
  - shell: echo r
    capture: R
merge:
  - shell: test ! -e {f} || exit 7
  - shell: echo "${{N}} ${{R}}" > merged.txt && git add -A && git commit -q -m merged
{ms}"#,
            f = flag.display(),
            ms = merge_step(&r, 2)
        ),
    );
    let o = r.run(&wf, &["-y"]);
    assert_eq!(o.code, 1, "{o:?}");
    fs::remove_file(&flag).unwrap();
    let o = resume(&r, r.only_session()["id"].as_str().unwrap());
    assert_eq!(o.code, 0, "{o:?}");
    assert_eq!(fs::read_to_string(r.repo.join("x.txt")).unwrap(), "7\n");
    assert_eq!(
        fs::read_to_string(r.repo.join("merged.txt")).unwrap(),
        "7 r\n"
    );
    nothing_left(&r);
}
