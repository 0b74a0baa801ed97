//! The bytes a MapReduce job writes into its state directory stay linear in its items (issue
//! 25): ended items go to the append-only `map-log.jsonl`, full map checkpoints are rewritten
//! only geometrically. `checkpoints verify` and `ls` read the log.

use super::*;

/// Sum of the bytes prodigy's own process `write(2)`s into files under `dir` (strace `-y`
/// names each descriptor's path).
fn bytes_written_under(strace_log: &Path, dir: &str) -> u64 {
    let log = fs::read_to_string(strace_log).unwrap();
    let prefix_ok = |l: &str| {
        l.strip_prefix("write(")
            .and_then(|r| r.split_once('<'))
            .and_then(|(fd, rest)| {
                fd.parse::<u32>().ok()?;
                Some(rest.split('>').next()?.starts_with(dir))
            })
            .unwrap_or(false)
    };
    log.lines()
        .filter(|l| prefix_ok(l))
        .filter_map(|l| l.rsplit_once(") = ")?.1.trim().parse::<u64>().ok())
        .sum()
}

#[test]
fn mapreduce_checkpoint_bytes_stay_within_a_small_multiple_of_the_final_checkpoint() {
    let Some(r) = setup("run-ckpt-bytes") else {
        return;
    };
    if !have("strace", "run-ckpt-bytes") {
        return;
    }
    const N: usize = 100;
    let items: Vec<String> = (1..=N)
        .map(|i| format!(r#"{{"id": "item-{i}", "n": {i}}}"#))
        .collect();
    let wf = r.write_workflow(
        "bytes.yml",
        &format!(
            r#"name: ckpt-bytes
mode: mapreduce
setup:
  - shell: |
      cat > items.json <<'EOF'
      [{}]
      EOF
      git add items.json && git commit -q -m items
    commit_required: true
map:
  input: items.json
  max_parallel: 8
  agent_template:
    - shell: "true"
"#,
            items.join(", ")
        ),
    );
    let trace = r.env.dir.join("strace.log");
    let mut c = cmd_via(
        &r.env,
        "strace",
        &[
            "-y",
            "-qq",
            "-e",
            "trace=write",
            "-o",
            trace.to_str().unwrap(),
        ],
        &["run", wf.to_str().unwrap(), "-y"],
    );
    let o = Out::from(c.current_dir(&r.repo).output().unwrap());
    assert_eq!(o.code, 0, "{o:?}");
    let s = r.only_session();
    let job = s["mapreduce_data"]["job_id"].as_str().unwrap().to_string();
    let rel = format!("state/work/mapreduce/jobs/{job}");
    let jobdir = r.env.p(&rel);
    let mut maps: Vec<String> = fs::read_dir(&jobdir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("map-checkpoint-"))
        .collect();
    maps.sort();
    let newest = jobdir.join(maps.last().unwrap());
    let final_cp = fs::metadata(&newest).unwrap().len();
    let cp = r.json(&format!("{rel}/{}", maps.last().unwrap()));
    // The final checkpoint holds the whole final state, and the whole log.
    assert_eq!(cp["completed_items"].as_array().unwrap().len(), N);
    assert_eq!(cp["pending_items"].as_array().unwrap().len(), 0);
    let log = jobdir.join("map-log.jsonl");
    let log_len = fs::metadata(&log).unwrap().len();
    assert_eq!(cp["map_log_bytes"], log_len, "{cp}");
    assert_eq!(fs::read_to_string(&log).unwrap().lines().count(), N);

    let root = r.env.root.canonicalize().unwrap();
    let written = bytes_written_under(&trace, &format!("{}/{rel}/", root.display()));
    // Rewriting the whole checkpoint every 5 items wrote 12.3x the final checkpoint at 100
    // items (and 46x at 400); the log plus geometric rewrites write about 2x. The bound is
    // generous, and still fails the old way of writing.
    let ratio = written as f64 / final_cp as f64;
    assert!(
        ratio < 6.0,
        "{written} bytes written into {rel} for a final checkpoint of {final_cp} bytes: {ratio:.1}x"
    );
    assert!(
        written >= final_cp + log_len,
        "{written} bytes: strace saw nothing?"
    );

    // `checkpoints verify` checks the log: a torn last line (a kill mid-append) is valid, a
    // corrupt line before the last is reported with its line, and the file is left as it is.
    let (o, v) = r
        .env
        .json(&["checkpoints", "verify", "--all-repos", "--json"]);
    assert_eq!(o.code, 0, "{o:?}");
    let checked = v["checked"].as_u64().unwrap();
    let good = fs::read(&log).unwrap();
    let mut torn = good.clone();
    torn.extend_from_slice(b"{\"completed\": {\"work_");
    fs::write(&log, &torn).unwrap();
    let (o, v) = r
        .env
        .json(&["checkpoints", "verify", "--all-repos", "--json"]);
    assert_eq!(o.code, 0, "{o:?}");
    assert_eq!(v["checked"].as_u64().unwrap(), checked);
    let first = good.iter().position(|&b| b == b'\n').unwrap() + 1;
    let mut bad = good[..first].to_vec();
    bad.extend_from_slice(b"{\"completed\": 7}\n");
    bad.extend_from_slice(&good[first..]);
    fs::write(&log, &bad).unwrap();
    let (o, v) = r
        .env
        .json(&["checkpoints", "verify", "--all-repos", "--json"]);
    assert_eq!(o.code, 1, "{o:?}");
    assert_eq!(v["invalid"].as_array().unwrap().len(), 1, "{v}");
    assert_eq!(v["invalid"][0]["kind"], "map-log");
    assert_eq!(v["invalid"][0]["line"], 2);
    assert!(v["invalid"][0]["path"]
        .as_str()
        .unwrap()
        .ends_with("/map-log.jsonl"));
    assert_eq!(fs::read(&log).unwrap(), bad);

    // The log is part of its job's directory: clean removes it with the job's other state, as
    // one item, never as an item of its own.
    let (o, v) = r.env.json(&[
        "clean",
        "--all",
        "--older-than",
        "0s",
        "--force",
        "--all-repos",
        "--json",
    ]);
    assert_eq!(o.code, 0, "{o:?}");
    let removed = removed_paths(&v);
    assert!(removed.contains(&rel), "{v}");
    assert!(!removed.iter().any(|p| p.contains("map-log")), "{v}");
    assert!(!jobdir.exists());
}

/// A run killed (SIGKILL) in its map resumes from the newest full checkpoint plus the map log:
/// a torn last line is ignored, a corrupt line before it is a warning naming the file and line
/// (the file is kept), and the items the log lost are found in git's history, so every item is
/// merged exactly once.
#[test]
fn resume_reads_the_map_log_ignoring_a_torn_tail_and_reporting_a_corrupt_line() {
    let Some(r) = setup("run-ckpt-log-resume") else {
        return;
    };
    let gate = r.env.dir.join("gate");
    let started = r.env.dir.join("started-7");
    let wf = r.write_workflow(
        "log.yml",
        &format!(
            r#"name: log-resume
mode: mapreduce
setup: []
map:
  input: "seq 1 40"
  max_parallel: 1
  agent_template:
    - shell: |
        if [ "${{item}}" = 7 ]; then
          touch {started}
          while [ ! -f {gate} ]; do sleep 0.05; done
        fi
        echo ${{item}} > f-${{item}}.txt && git add . && git commit -q -m "agent ${{item}}"
      commit_required: true
"#,
            started = started.display(),
            gate = gate.display()
        ),
    );
    let mut child = spawn_run(&r, &wf, &["-y"]);
    wait_for("item 7", || started.exists());
    child.kill().unwrap();
    child.wait().unwrap();
    fs::write(&gate, "").unwrap();
    let s = r.only_session();
    let job = s["mapreduce_data"]["job_id"].as_str().unwrap().to_string();
    let log = r
        .env
        .p(&format!("state/work/mapreduce/jobs/{job}/map-log.jsonl"));
    // Items 1-5 ended in the first batch; 6 ended after it, and 7 was running. The first
    // batch's lines are smaller than the full checkpoint of 40 items: no full checkpoint
    // followed, so the newest holds none of the log and resume needs every line.
    let dir = r.env.p(&format!("state/work/mapreduce/jobs/{job}"));
    let mut maps: Vec<String> = fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("map-checkpoint-"))
        .collect();
    maps.sort();
    let cp = r.json(&format!(
        "state/work/mapreduce/jobs/{job}/{}",
        maps.last().unwrap()
    ));
    assert_eq!(cp["map_log_bytes"], 0, "{cp}");
    assert_eq!(cp["pending_items"].as_array().unwrap().len(), 40);
    let good = fs::read_to_string(&log).unwrap();
    let lines: Vec<&str> = good.lines().collect();
    assert_eq!(lines.len(), 5, "{good}");
    let mut bad = String::new();
    for (i, l) in lines.iter().enumerate() {
        bad.push_str(if i == 2 { "{\"completed\": \"x\"}" } else { l });
        bad.push('\n');
    }
    bad.push_str("{\"completed\": {\"work_item\": {\"id\": \"");
    fs::write(&log, &bad).unwrap();

    // A killed job with a map log is resumable to clean: nothing of it is removed.
    let (o, v) = r.env.json(&[
        "clean",
        "--all",
        "--older-than",
        "0s",
        "--force",
        "--all-repos",
        "--json",
    ]);
    assert_eq!(o.code, 0, "{o:?}");
    assert_eq!(removed_paths(&v), Vec::<String>::new(), "{v}");
    assert_eq!(fs::read_to_string(&log).unwrap(), bad);

    let o = Out::from(
        r.env
            .cmd(&["resume", &job, "-y"])
            .current_dir(&r.repo)
            .output()
            .unwrap(),
    );
    assert_eq!(o.code, 0, "{o:?}");
    assert!(
        o.stderr.contains("map-log.jsonl` line 3 does not parse"),
        "{o:?}"
    );
    // Items 3 (its line is corrupt) and 6 (after the batch) come from git's history alone.
    assert!(
        o.stderr
            .contains("6 item(s) merged (2 found in git history only), 34 to run, 0 failed"),
        "{o:?}"
    );
    // Every item merged exactly once.
    let subjects = log_subjects(&r.repo);
    for i in 1..=40 {
        let n = subjects
            .lines()
            .filter(|l| *l == format!("agent {i}"))
            .count();
        assert_eq!(n, 1, "item {i}: {subjects}");
    }
    // The corrupt line is kept; the torn tail was cut off before the resume appended.
    let after = fs::read_to_string(&log).unwrap();
    assert!(
        after.starts_with(&bad[..bad.rfind('\n').unwrap() + 1]),
        "{after}"
    );
    assert!(!after.contains("{\"id\": \"{"), "{after}");
    let tail = &after[bad.rfind('\n').unwrap() + 1..];
    assert_eq!(tail.lines().count(), 34, "{after}");
    assert!(
        tail.lines().all(|l| l.starts_with("{\"completed\":")),
        "{tail}"
    );
}

fn log_subjects(repo: &Path) -> String {
    git(repo, &["log", "--format=%s", "main"])
}
