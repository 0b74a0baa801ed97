//! `foreach` steps (run.md §2): a list or a command's output as items, `do` run in the worktree
//! with `${item}`, `${index}`, `${total}`, `max_items`, `parallel`, `continue_on_error`, inside a
//! MapReduce agent, and a kill during an item resumed without repeating finished items.

use super::*;

/// Lines of a file outside the worktree that the steps append to (empty when missing).
fn lines(p: &Path) -> Vec<String> {
    fs::read_to_string(p)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn a_list_foreach_runs_do_in_the_worktree_once_per_item_and_is_merged() {
    let Some(r) = setup("foreach-list") else {
        return;
    };
    let wf = r.write_workflow(
        "list.yml",
        r#"
- foreach:
    foreach: [a, "b c", 7]
    do:
      - shell: |
          echo "${item} ${index}/${total}" > "item-${index}.txt"
          git add . && git commit -q -m "item ${item}"
        commit_required: true
- shell: echo after > after.txt && git add . && git commit -q -m after
"#,
    );
    let o = r.run(&wf, &["-y"]);
    assert_eq!(o.code, 0, "{o:?}");
    assert_eq!(o.stderr, "", "{o:?}");
    for (i, want) in ["a 0/3", "b c 1/3", "7 2/3"].iter().enumerate() {
        assert_eq!(
            fs::read_to_string(r.repo.join(format!("item-{i}.txt"))).unwrap(),
            format!("{want}\n")
        );
    }
    // Not in prodigy's own cwd (0.4.4's bug): only through the merge.
    let l = git(&r.repo, &["log", "--topo-order", "--format=%s", "main"]);
    let subjects: Vec<&str> = l.lines().collect();
    assert!(subjects[0].starts_with("Merge prodigy-session-"), "{l}");
    assert_eq!(
        &subjects[1..],
        ["after", "item 7", "item b c", "item a", "init"],
        "{l}"
    );
    let s = r.only_session();
    assert_eq!(s["status"], "Completed");
    // The progress variable is gone once the step ended.
    assert_eq!(
        s["workflow_data"]["variables"],
        serde_json::json!({}),
        "{s}"
    );
    // One event per item, after the checkpoint that records it (man/prodigy-storage.5).
    let id = s["id"].as_str().unwrap();
    let items: Vec<(Value, Value, Value, Value)> = r
        .events(id)
        .into_iter()
        .filter(|e| e["event_type"] == "foreach_item_completed")
        .map(|e| {
            (
                e["step"].clone(),
                e["index"].clone(),
                e["done"].clone(),
                e["total"].clone(),
            )
        })
        .collect();
    let j = |v: i32| Value::from(v);
    assert_eq!(
        items,
        [
            (j(0), j(0), j(1), j(3)),
            (j(0), j(1), j(2), j(3)),
            (j(0), j(2), j(3), j(3))
        ]
    );
}

#[test]
fn a_command_foreach_reads_lines_or_a_json_array_in_the_worktree_and_max_items_caps_it() {
    let Some(r) = setup("foreach-cmd") else {
        return;
    };
    let out = r.env.dir.join("seen.txt");
    let wf = r.write_workflow(
        "cmd.yml",
        &format!(
            r#"
- shell: touch only-in-worktree.marker
- foreach:
    foreach: ls *.marker
    do: [{{shell: "echo lines ${{item}} >> {o}"}}]
- foreach:
    input: "echo '[\"p q\", 2]'"
    do: [{{shell: "echo json ${{item}} >> {o}"}}]
- foreach:
    foreach: seq 1 10
    max_items: 3
    do: [{{shell: "echo max ${{item}}/${{total}} >> {o}"}}]
"#,
            o = out.display()
        ),
    );
    let o = r.run(&wf, &["-y"]);
    assert_eq!(o.code, 0, "{o:?}");
    assert_eq!(
        lines(&out),
        [
            "lines only-in-worktree.marker",
            "json p q",
            "json 2",
            "max 1/3",
            "max 2/3",
            "max 3/3"
        ]
    );

    // A failing input command fails the step.
    let wf = r.write_workflow(
        "badcmd.yml",
        "- foreach: {foreach: 'echo x; exit 4', do: [{shell: 'touch never'}]}\n",
    );
    let o = r.run(&wf, &["-y"]);
    assert_eq!(o.code, 1, "{o:?}");
    assert!(
        o.stdout
            .contains("foreach input `echo x; exit 4` failed: exit status 4"),
        "{o:?}"
    );
}

#[test]
fn a_failed_item_stops_the_foreach_unless_continue_on_error_which_still_fails_the_step() {
    let Some(r) = setup("foreach-fail") else {
        return;
    };
    let out = r.env.dir.join("ran.txt");
    let body = |extra: &str| {
        format!(
            "- foreach:\n    foreach: [a, b, c]\n    do: [{{shell: 'echo ${{item}} >> {}; test ${{item}} != b'}}]\n{extra}\
             - shell: echo next >> {}\n",
            out.display(),
            out.display()
        )
    };
    let wf = r.write_workflow("stop.yml", &body(""));
    let o = r.run(&wf, &["-y"]);
    assert_eq!(o.code, 1, "{o:?}");
    assert!(
        o.stdout
            .contains("foreach item 2 of 3 (`b`): step 1 (shell: echo ${item} >> "),
        "{o:?}"
    );
    assert_eq!(lines(&out), ["a", "b"]);

    fs::remove_file(&out).unwrap();
    let wf = r.write_workflow("cont.yml", &body("    continue_on_error: true\n"));
    let o = r.run(&wf, &["-y"]);
    assert_eq!(o.code, 1, "{o:?}");
    assert!(
        o.stdout
            .contains("1 of 3 foreach items failed; first: item 2 of 3 (`b`)"),
        "{o:?}"
    );
    assert_eq!(lines(&out), ["a", "b", "c"]);

    // The step's own on_failure decides whether the workflow goes on.
    fs::remove_file(&out).unwrap();
    let wf = r.write_workflow(
        "ignored.yml",
        &body("    continue_on_error: true\n  on_failure: true\n"),
    );
    let o = r.run(&wf, &["-y"]);
    assert_eq!(o.code, 0, "{o:?}");
    assert_eq!(lines(&out), ["a", "b", "c", "next"]);
}

#[test]
fn parallel_items_run_at_the_same_time() {
    let Some(r) = setup("foreach-par") else {
        return;
    };
    let m = r.env.dir.join("marks");
    fs::create_dir_all(&m).unwrap();
    // Each item waits (up to 10 s) until both have started: only overlap lets both succeed.
    let wf = r.write_workflow(
        "par.yml",
        &format!(
            r#"
- foreach:
    foreach: [a, b]
    parallel: 2
    do:
      - shell: |
          touch {m}/start-${{item}}
          for i in $(seq 100); do
            if [ -e {m}/start-a ] && [ -e {m}/start-b ]; then touch {m}/done-${{item}}; exit 0; fi
            sleep 0.1
          done
          exit 1
"#,
            m = m.display()
        ),
    );
    let t = Instant::now();
    let o = r.run(&wf, &["-y"]);
    assert_eq!(o.code, 0, "{o:?}");
    assert!(m.join("done-a").exists() && m.join("done-b").exists());
    assert!(t.elapsed() < Duration::from_secs(9), "{:?}", t.elapsed());
}

#[test]
fn foreach_runs_inside_a_mapreduce_agent() {
    let Some(r) = setup("foreach-agent") else {
        return;
    };
    let wf = r.write_workflow(
        "mr.yml",
        r#"name: mr-foreach
mode: mapreduce
map:
  input: "seq 1 2"
  max_parallel: 2
  agent_template:
    - foreach:
        foreach: [x, y]
        parallel: true
        do:
          - shell: echo "${item}" > "f-${item_id}-${item}.txt"
    - shell: git add . && git commit -q -m "agent ${item}"
      commit_required: true
"#,
    );
    let o = r.run(&wf, &["-y"]);
    assert_eq!(o.code, 0, "{o:?}");
    let mut files: Vec<String> = fs::read_dir(&r.repo)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("f-"))
        .collect();
    files.sort();
    assert_eq!(files.len(), 4, "{files:?}");
    assert_eq!(
        fs::read_to_string(r.repo.join(&files[1])).unwrap(),
        "y\n",
        "{files:?}"
    );
}

#[test]
fn a_run_killed_during_item_3_of_5_resumes_without_repeating_items_1_and_2() {
    let Some(r) = setup("foreach-resume") else {
        return;
    };
    let ran = r.env.dir.join("ran.txt");
    let started = r.env.dir.join("started");
    let go = r.env.dir.join("go");
    let wf = r.write_workflow(
        "kill.yml",
        &format!(
            r#"
- foreach:
    foreach: [a, b, c, d, e]
    do:
      - shell: |
          echo ${{item}} >> {ran}
          echo ${{item}} > "${{item}}.txt"
          if [ ${{index}} = 2 ] && [ ! -e {go} ]; then touch {started}; sleep 60; fi
- shell: git add . && git commit -q -m items
  commit_required: true
"#,
            ran = ran.display(),
            go = go.display(),
            started = started.display()
        ),
    );
    let mut child = spawn_run(&r, &wf, &["-y"]);
    wait_for("item 3", || started.exists());
    // SIGKILL the whole group: prodigy and the sleeping item.
    unsafe_kill(-(child.id() as i32), 9);
    child.wait().unwrap();
    assert_eq!(lines(&ran), ["a", "b", "c"]);
    let s = r.only_session();
    let id = s["id"].as_str().unwrap().to_string();
    assert_eq!(s["workflow_data"]["current_step"], 0, "{s}");
    assert_eq!(
        s["workflow_data"]["variables"]["_foreach.step1"]["done"],
        serde_json::json!([0, 1]),
        "{s}"
    );
    fs::write(&go, "").unwrap();
    let o = Out::from(
        r.env
            .cmd(&["resume", &id, "-y"])
            .current_dir(&r.repo)
            .output()
            .unwrap(),
    );
    assert_eq!(o.code, 0, "{o:?}");
    // Items 1 and 2 are not repeated; the interrupted item 3 runs again.
    assert_eq!(lines(&ran), ["a", "b", "c", "c", "d", "e"]);
    for i in ["a", "b", "c", "d", "e"] {
        assert_eq!(
            fs::read_to_string(r.repo.join(format!("{i}.txt"))).unwrap(),
            format!("{i}\n")
        );
    }
    assert_eq!(r.only_session()["status"], "Completed");
}

#[test]
fn foreach_runs_in_setup_reduce_and_merge_with_its_workflow_variables() {
    let Some(r) = setup("foreach-phases") else {
        return;
    };
    let seen = r.env.dir.join("seen.txt");
    let wf = r.write_workflow(
        "phases.yml",
        &format!(
            r#"name: phases
mode: mapreduce
setup:
  - foreach:
      foreach: [one, two]
      do:
        - shell: echo ${{item}} > "setup-${{item}}.txt" && git add . && git commit -q -m "setup ${{item}}"
          commit_required: true
map:
  input: "seq 1 2"
  agent_template:
    - shell: echo ${{item}} > "map-${{item}}.txt" && git add . && git commit -q -m "map ${{item}}"
reduce:
  - foreach:
      foreach: ls map-*.txt setup-*.txt
      do:
        - shell: echo "reduce ${{item}} of ${{total}} after ${{map.successful}}" >> {seen}
merge:
  - foreach:
      foreach: ["${{merge.target_branch}}"]
      do:
        - shell: echo "merge into ${{item}}" >> {seen}
  - shell: cd {repo} && git merge -q --no-ff -m "merged ${{merge.source_branch}}" ${{merge.source_branch}}
"#,
            seen = seen.display(),
            repo = r.repo.display()
        ),
    );
    let o = r.run(&wf, &["-y"]);
    assert_eq!(o.code, 0, "{o:?}");
    assert_eq!(
        lines(&seen),
        [
            "reduce map-1.txt of 4 after 2",
            "reduce map-2.txt of 4 after 2",
            "reduce setup-one.txt of 4 after 2",
            "reduce setup-two.txt of 4 after 2",
            "merge into main",
        ]
    );
    for f in ["setup-one.txt", "setup-two.txt", "map-1.txt", "map-2.txt"] {
        assert!(r.repo.join(f).exists(), "{f}");
    }
    assert!(log(&r.repo).contains("setup two\n"), "{}", log(&r.repo));
}

#[test]
fn dry_run_shows_the_items_or_the_command_and_the_do_steps() {
    let Some(r) = setup("foreach-dry") else {
        return;
    };
    let wf = r.write_workflow(
        "dry.yml",
        "- foreach:\n    foreach: ls *.md\n    parallel: true\n    max_items: 2\n    do: [{shell: 'echo ${item}'}]\n\
         - foreach:\n    foreach: [a, b]\n    continue_on_error: true\n    do: [{shell: 'echo ${index}'}, {claude: '/x ${item}'}]\n",
    );
    let o = r.run(&wf, &["--dry-run"]);
    assert_eq!(o.code, 0, "{o:?}");
    assert!(
        o.stdout.contains(
            "  1. foreach: ls *.md (parallel 10, max_items 2)\n      do 1. shell: echo ${item}\n  \
             2. foreach: [\"a\",\"b\"] (parallel 1, continue_on_error)\n      do 1. shell: echo ${index}\n      \
             do 2. claude: /x ${item}\n"
        ),
        "{o:?}"
    );
    assert!(r.sessions().is_empty());
}

#[test]
fn a_failed_foreach_resumed_runs_only_the_items_that_did_not_succeed() {
    let Some(r) = setup("foreach-fail-resume") else {
        return;
    };
    let ran = r.env.dir.join("ran.txt");
    let fixed = r.env.dir.join("fixed");
    let wf = r.write_workflow(
        "f.yml",
        &format!(
            "- foreach:\n    foreach: [a, b, c]\n    continue_on_error: true\n    \
             do: [{{shell: 'echo ${{item}} >> {ran}; test ${{item}} != b || test -e {fixed}'}}]\n",
            ran = ran.display(),
            fixed = fixed.display()
        ),
    );
    let o = r.run(&wf, &["-y"]);
    assert_eq!(o.code, 1, "{o:?}");
    assert_eq!(lines(&ran), ["a", "b", "c"]);
    let id = r.only_session()["id"].as_str().unwrap().to_string();
    fs::write(&fixed, "").unwrap();
    let o = Out::from(
        r.env
            .cmd(&["resume", &id, "-y"])
            .current_dir(&r.repo)
            .output()
            .unwrap(),
    );
    assert_eq!(o.code, 0, "{o:?}");
    assert_eq!(lines(&ran), ["a", "b", "c", "b"]);
    assert_eq!(r.only_session()["status"], "Completed");
}

#[test]
fn sigint_during_parallel_items_pauses_and_resume_finishes_the_rest() {
    let Some(r) = setup("foreach-sigint") else {
        return;
    };
    let ran = r.env.dir.join("ran.txt");
    let marks = r.env.dir.join("marks");
    fs::create_dir_all(&marks).unwrap();
    let go = r.env.dir.join("go");
    let wf = r.write_workflow(
        "int.yml",
        &format!(
            r#"
- foreach:
    foreach: [a, b, c, d]
    parallel: 2
    do:
      - shell: |
          echo start ${{item}} >> {ran}
          if [ ! -e {go} ]; then trap '' INT; touch {marks}/${{item}}; sleep 60; fi
          echo end ${{item}} >> {ran}
"#,
            ran = ran.display(),
            go = go.display(),
            marks = marks.display()
        ),
    );
    let mut child = spawn_run(&r, &wf, &["-y"]);
    wait_for("two items", || fs::read_dir(&marks).unwrap().count() >= 2);
    let t = Instant::now();
    unsafe_kill(child.id() as i32, 2);
    assert_eq!(child.wait().unwrap().code(), Some(130));
    // Both items ignore SIGINT: each is killed after the 10 s grace, and the two grace
    // periods run at the same time, not one after the other.
    let took = t.elapsed();
    assert!(
        took >= Duration::from_secs(9) && took < Duration::from_secs(16),
        "{took:?}"
    );
    let mut first = lines(&ran);
    first.sort();
    assert_eq!(first, ["start a", "start b"]);
    let s = r.only_session();
    assert_eq!(s["status"], "Paused", "{s}");
    let id = s["id"].as_str().unwrap().to_string();
    fs::write(&go, "").unwrap();
    let o = Out::from(
        r.env
            .cmd(&["resume", &id, "-y"])
            .current_dir(&r.repo)
            .output()
            .unwrap(),
    );
    assert_eq!(o.code, 0, "{o:?}");
    let mut rest = lines(&ran)[2..].to_vec();
    rest.sort();
    assert_eq!(
        rest,
        ["end a", "end b", "end c", "end d", "start a", "start b", "start c", "start d"]
    );
}
