//! Tests of `prodigy events`, `dlq` and `checkpoints` on generated canonical trees and on the
//! real 0.4.4 tree (extracted into the test's own directory, so no fixed path is shared).

use super::common::*;
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// RFC 3339 UTC time `secs` ago, whole seconds (prints the same as prodigy prints it).
fn ts_ago(secs: u64) -> String {
    let t = time::OffsetDateTime::now_utc() - time::Duration::seconds(secs as i64);
    t.replace_nanosecond(0)
        .unwrap()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

fn lines(s: &str) -> Vec<&str> {
    s.lines().collect()
}

/// Lines of a child's stdout, delivered through a channel by a reader thread.
fn line_reader(child: &mut Child) -> mpsc::Receiver<String> {
    let out = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut r = BufReader::new(out);
        loop {
            let mut l = String::new();
            match r.read_line(&mut l) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    if tx.send(l).is_err() {
                        break;
                    }
                }
            }
        }
    });
    rx
}

/// Wait for the next line, at most `secs` seconds.
fn next_line(rx: &mpsc::Receiver<String>, secs: u64) -> String {
    rx.recv_timeout(Duration::from_secs(secs))
        .unwrap_or_else(|e| panic!("no output line within {secs}s: {e}"))
}

fn kill(child: &mut Child) -> String {
    let _ = child.kill();
    let _ = child.wait();
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut err);
    }
    err
}

fn append(p: &Path, s: &str) {
    let mut f = fs::OpenOptions::new().append(true).open(p).unwrap();
    f.write_all(s.as_bytes()).unwrap();
    f.sync_all().unwrap();
}

// ------------------------------------------------------------------ events

#[test]
fn events_ls_and_show_both_shapes_filters_and_corrupt_lines() {
    let env = Env::new("insp-events");
    let (t3, t4, t5) = (ts_ago(1800), ts_ago(1200), ts_ago(600));
    let dir = "events/webapp/mapreduce-1";
    let f1 = env.write(
        &format!("{dir}/events-20250111120000.jsonl"),
        &format!(
            concat!(
                r#"{{"timestamp":"2020-01-01T00:00:00Z","event_type":"AgentStarted","agent_id":"agent-1","job_id":"mapreduce-1","item_id":"i1"}}"#,
                "\n",
                r#"{{"id":"u-1","timestamp":"2020-01-01T00:00:01Z","correlation_id":"c","event":{{"event_type":"agent_started","job_id":"mapreduce-1","agent_id":"agent-2","item_id":"i2"}},"metadata":{{"host":"h"}}}}"#,
                "\n",
                "this is not json\n",
                "\n",
                r#"{{"timestamp":"{t3}","event_type":"SomethingNew","x":1}}"#,
                "\n",
                r#"{{"timestamp":"{t4}","event_type":"agent_completed","agent_id":"agent-1"}}"#,
                "\n",
                r#"{{"timestamp":"2025-01-11T12:00:00Z","event_ty"#,
            ),
            t3 = t3,
            t4 = t4
        ),
    );
    env.write(
        &format!("{dir}/events-20250111130000.jsonl"),
        &format!(
            "{}\n",
            format_args!(
                r#"{{"timestamp":"{t5}","event_type":"JobCompleted","job_id":"mapreduce-1"}}"#
            )
        ),
    );
    // A job with an empty event file (0.4.4 creates them eagerly) and a pseudo-repo job.
    env.write("events/webapp/mapreduce-2/events-20250111120000.jsonl", "");
    env.write(
        "events/session-d18a73c0-e5b5-44da-b9e5-fc1936284e80/mapreduce-20261121_051522/events-20261121_051522.jsonl",
        "",
    );

    let o = env.run(&["events", "ls"]);
    assert_eq!(o.code, 0, "{o:?}");
    assert_eq!(
        lines(&o.stdout),
        vec![
            "-\tmapreduce-20261121_051522\t1\t0\t0\t-\t-".to_string(),
            format!("webapp\tmapreduce-1\t2\t5\t1\t2020-01-01T00:00:00Z\t{t5}"),
            "webapp\tmapreduce-2\t1\t0\t0\t-\t-".to_string(),
        ]
    );
    assert_eq!(o.stderr, "");
    let (o, v) = env.json(&["events", "ls", "--json", "--repo", "webapp"]);
    assert_eq!(o.code, 0);
    assert_eq!(v["command"], "events ls");
    let jobs = v["jobs"].as_array().unwrap();
    assert_eq!(jobs.len(), 2, "{v}");
    assert_eq!(jobs[0]["repository"], "webapp");
    assert_eq!(jobs[0]["job"], "mapreduce-1");
    assert_eq!(jobs[0]["files"], 2);
    assert_eq!(jobs[0]["events"], 5);
    assert_eq!(jobs[0]["bad_lines"], 1);
    assert_eq!(jobs[0]["first"], "2020-01-01T00:00:00Z");
    assert_eq!(jobs[0]["last"], t5.as_str());
    assert_eq!(
        jobs[0]["path"],
        env.root.join(dir).canonicalize().unwrap().to_str().unwrap()
    );

    let l1 =
        r#"2020-01-01T00:00:00Z  AgentStarted  agent=agent-1 job=mapreduce-1  {"item_id":"i1"}"#;
    let l2 =
        r#"2020-01-01T00:00:01Z  agent_started  agent=agent-2 job=mapreduce-1  {"item_id":"i2"}"#;
    let l3 = format!(r#"{t3}  SomethingNew  {{"x":1}}"#);
    let l4 = format!("{t4}  agent_completed  agent=agent-1");
    let l5 = format!("{t5}  JobCompleted  job=mapreduce-1");
    let corrupt = format!(
        "prodigy events show: 1 corrupt line in `{}` (first at line 3)\n",
        f1.canonicalize().unwrap().display()
    );

    let o = env.run(&["events", "show", "mapreduce-1"]);
    assert_eq!(o.code, 0, "{o:?}");
    assert_eq!(
        lines(&o.stdout),
        vec![l1, l2, l3.as_str(), l4.as_str(), l5.as_str()]
    );
    // Reported once, at the end; the torn last line is not reported.
    assert_eq!(o.stderr, corrupt);

    let o = env.run(&["events", "show", "mapreduce-1", "--type", "agent_started"]);
    assert_eq!(lines(&o.stdout), vec![l1, l2], "{o:?}");
    let o = env.run(&["events", "show", "mapreduce-1", "--type", "JOB_COMPLETED"]);
    assert_eq!(lines(&o.stdout), vec![l5.as_str()], "{o:?}");
    let o = env.run(&["events", "show", "mapreduce-1", "--limit", "2"]);
    assert_eq!(lines(&o.stdout), vec![l4.as_str(), l5.as_str()], "{o:?}");
    assert_eq!(o.stderr, corrupt);
    let o = env.run(&["events", "show", "mapreduce-1", "--since", "1h"]);
    assert_eq!(
        lines(&o.stdout),
        vec![l3.as_str(), l4.as_str(), l5.as_str()],
        "{o:?}"
    );
    let o = env.run(&[
        "events",
        "show",
        "mapreduce-1",
        "--since",
        "1h",
        "--type",
        "agentcompleted",
        "--limit",
        "5",
    ]);
    assert_eq!(lines(&o.stdout), vec![l4.as_str()], "{o:?}");

    // --json: JSON Lines of the events as stored.
    let o = env.run(&["events", "show", "mapreduce-1", "--json", "--limit", "4"]);
    assert_eq!(o.code, 0, "{o:?}");
    let evs: Vec<serde_json::Value> = o
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(evs.len(), 4);
    assert_eq!(evs[0]["id"], "u-1");
    assert_eq!(evs[0]["event"]["event_type"], "agent_started");
    assert_eq!(evs[0]["metadata"]["host"], "h");
    assert_eq!(evs[3]["event_type"], "JobCompleted");

    // Unknown job.
    let o = env.run(&["events", "show", "mapreduce-9"]);
    assert_eq!(o.code, 2);
    assert_eq!(o.stdout, "");
    assert_eq!(
        o.stderr,
        "prodigy events show: no events for job `mapreduce-9`; see `prodigy events ls`\n"
    );
    let o = env.run(&["events", "follow", "mapreduce-9"]);
    assert_eq!(o.code, 2, "{o:?}");

    // Pseudo-repo (0.4.4) job: found with no scope flag; no events is not an error.
    let o = env.run(&["events", "show", "mapreduce-20261121_051522"]);
    assert_eq!((o.code, o.stdout.as_str(), o.stderr.as_str()), (0, "", ""));
}

#[test]
fn missing_root_is_nothing_stored() {
    let env = Env::new("insp-missing");
    fs::remove_dir_all(&env.root).unwrap();
    for args in [
        &["events", "ls"][..],
        &["events", "show", "j1"],
        &["dlq", "ls"],
        &["dlq", "show", "j1"],
        &["checkpoints", "ls"],
        &["checkpoints", "verify"],
    ] {
        let o = env.run(args);
        assert_eq!(o.code, 0, "{args:?} {o:?}");
        let name = args[..2].join(" ");
        assert_eq!(
            o.stdout,
            format!(
                "prodigy {name}: nothing is stored at `{}`\n",
                env.root.display()
            ),
            "{args:?}"
        );
    }
}

#[test]
fn events_follow_prints_appended_lines_once_and_whole() {
    let env = Env::new("insp-follow");
    let dir = "events/webapp/mapreduce-5";
    let ev = |n: u32| {
        format!(
            r#"{{"timestamp":"2025-01-11T12:00:0{n}Z","event_type":"AgentProgress","agent_id":"a","n":{n}}}"#
        )
    };
    let want = |n: u32| format!("2025-01-11T12:00:0{n}Z  AgentProgress  agent=a  {{\"n\":{n}}}\n");
    let f1 = env.write(
        &format!("{dir}/events-20250111120000.jsonl"),
        &format!("{}\n", ev(1)),
    );
    let mut child = env
        .cmd(&["events", "follow", "mapreduce-5"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let rx = line_reader(&mut child);
    let mut got = vec![next_line(&rx, 10)];
    assert_eq!(got[0], want(1));

    append(&f1, &format!("{}\n", ev(2)));
    got.push(next_line(&rx, 10));
    assert_eq!(got[1], want(2));

    // One line written in two halves with a pause between: printed once, whole.
    let e3 = ev(3);
    let (a, b) = e3.split_at(e3.len() / 2);
    append(&f1, a);
    std::thread::sleep(Duration::from_millis(700));
    assert!(rx.try_recv().is_err(), "a half line must not be printed");
    append(&f1, &format!("{b}\n"));
    got.push(next_line(&rx, 10));
    assert_eq!(got[2], want(3));

    // A new events file appears.
    env.write(
        &format!("{dir}/events-20250111130000.jsonl"),
        &format!("{}\n", ev(4)),
    );
    got.push(next_line(&rx, 10));
    assert_eq!(got[3], want(4));
    append(&f1, &format!("{}\n", ev(5)));
    got.push(next_line(&rx, 10));
    assert_eq!(got[4], want(5));

    // Nothing else arrives: no duplicates.
    std::thread::sleep(Duration::from_millis(700));
    let stderr = kill(&mut child);
    while let Ok(l) = rx.recv_timeout(Duration::from_millis(200)) {
        got.push(l);
    }
    assert_eq!(got, (1..=5).map(want).collect::<Vec<_>>());
    assert_eq!(stderr, "");
}

#[test]
fn events_follow_ends_with_exit_0_when_stdout_closes() {
    let env = Env::new("insp-follow-close");
    env.write(
        "events/webapp/mapreduce-6/events-20250111120000.jsonl",
        "{\"event_type\":\"JobStarted\"}\n",
    );
    let mut child = env
        .cmd(&["events", "follow", "mapreduce-6"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut l = String::new();
    out.read_line(&mut l).unwrap();
    assert_eq!(l, "-  JobStarted\n");
    drop(out);
    let start = Instant::now();
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            assert_eq!(st.code(), Some(0));
            break;
        }
        if start.elapsed() > Duration::from_secs(10) {
            kill(&mut child);
            panic!("events follow did not end after stdout closed");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Peak resident memory of a running process in kB (VmHWM), if /proc has it.
fn vm_hwm_kb(pid: u32) -> Option<u64> {
    let s = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let l = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    l.split_whitespace().nth(1)?.parse().ok()
}

#[test]
fn events_show_streams_a_200_mb_file() {
    if !Path::new("/proc/self/status").exists() {
        eprintln!("SKIPPED events_show_streams_a_200_mb_file: /proc is missing");
        return;
    }
    let env = Env::new("insp-big");
    let p = env.write(
        "events/webapp/mapreduce-big/events-20250111120000.jsonl",
        "",
    );
    let mut n = 0u64;
    {
        let mut w = std::io::BufWriter::new(fs::File::create(&p).unwrap());
        let pad = "x".repeat(150);
        let mut written = 0u64;
        while written < 200 << 20 {
            let l = format!(
                "{{\"timestamp\":\"2025-01-11T12:00:00Z\",\"event_type\":\"AgentProgress\",\"agent_id\":\"a\",\"n\":{n},\"pad\":\"{pad}\"}}\n"
            );
            w.write_all(l.as_bytes()).unwrap();
            written += l.len() as u64;
            n += 1;
        }
        w.flush().unwrap();
    }

    // The first line arrives at once (no pre-scan); memory stays small.
    let start = Instant::now();
    let mut child = env
        .cmd(&["events", "show", "mapreduce-big"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    out.read_line(&mut first).unwrap();
    let took = start.elapsed();
    let hwm = vm_hwm_kb(child.id());
    kill(&mut child);
    assert!(
        first.starts_with("2025-01-11T12:00:00Z  AgentProgress  agent=a  {\"n\":0,"),
        "{first}"
    );
    assert!(took < Duration::from_secs(2), "first line after {took:?}");
    if let Some(kb) = hwm {
        assert!(kb < 64 * 1024, "VmHWM {kb} kB");
    }

    // --limit 5 reads the whole file with bounded memory, sampled while it runs.
    let mut child = env
        .cmd(&["events", "show", "mapreduce-big", "--limit", "5"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let mut peak = 0;
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if let Some(kb) = vm_hwm_kb(pid) {
            peak = peak.max(kb);
        }
        assert!(
            start.elapsed() < Duration::from_secs(300),
            "events show --limit 5 takes too long"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let o = Out::from(child.wait_with_output().unwrap());
    assert_eq!(o.code, 0, "{o:?}");
    let got = lines(&o.stdout);
    assert_eq!(got.len(), 5);
    assert!(
        got[4].contains(&format!("{{\"n\":{},", n - 1)),
        "{}",
        got[4]
    );
    assert!(peak < 64 * 1024, "VmHWM {peak} kB");
}

// ------------------------------------------------------------------ the real 0.4.4 tree

/// The 0.4.4 fixture extracted into this test's own directory and used as its root.
fn legacy_env(name: &str) -> Env {
    let tar = fixture_0_4_4("tree.tar.gz");
    let env = Env::new(name);
    let x = env.dir.join("x");
    fs::create_dir_all(&x).unwrap();
    let ok = std::process::Command::new("tar")
        .arg("-C")
        .arg(&x)
        .arg("-xzf")
        .arg(&tar)
        .status()
        .unwrap()
        .success();
    assert!(ok, "tar failed");
    fs::remove_dir_all(&env.root).unwrap();
    fs::rename(x.join("tmp/prodigy-corpus/home/.prodigy"), &env.root).unwrap();
    env
}

#[test]
fn legacy_tree_dlq_checkpoints_events() {
    let env = legacy_env("insp-legacy");
    // Scenario c1: two failed items.
    let o = env.run(&["dlq", "show", "mapreduce-20261121_051522"]);
    assert_eq!(o.code, 0, "{o:?}");
    assert_eq!(
        lines(&o.stdout),
        vec![
            "item_3\t1\t2026-11-21T05:15:22Z\tUnknown\tProcessing error: Agent mapreduce-20261121_051522_agent_3 step 2 failed and on_failure handler failed\t-\t{\"id\":4,\"mode\":\"handled-fail\",\"name\":\"item-4\"}",
            "item_5\t1\t2026-11-21T05:15:22Z\tUnknown\tProcessing error: Agent mapreduce-20261121_051522_agent_5 step 2 failed and on_failure handler failed\t-\t{\"id\":6,\"mode\":\"handled-fail\",\"name\":\"item-6\"}",
        ]
    );
    assert_eq!(o.stderr, "");
    let (o, v) = env.json(&[
        "dlq",
        "show",
        "mapreduce-20261121_051522",
        "item_5",
        "--json",
    ]);
    assert_eq!(o.code, 0);
    let items = v["items"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["item_id"], "item_5");
    assert_eq!(items[0]["shape"], "0.4.4");
    assert_eq!(
        items[0]["session"],
        "session-d18a73c0-e5b5-44da-b9e5-fc1936284e80"
    );
    assert_eq!(items[0]["failure_count"], 1);
    assert_eq!(items[0]["work_item"]["name"], "item-6");
    assert_eq!(
        items[0]["failure_history"][0]["error"],
        "Processing error: Agent mapreduce-20261121_051522_agent_5 step 2 failed and on_failure handler failed"
    );
    assert_eq!(
        items[0]["record"]["error_signature"].as_str().map(str::len),
        Some(16)
    );

    let o = env.run(&["dlq", "show", "mapreduce-20261121_051522", "item_4"]);
    assert_eq!(o.code, 2);
    assert!(o.stderr.contains("(it has: item_3, item_5)"), "{o:?}");
    assert!(o.stderr.contains("`prodigy dlq ls`"), "{o:?}");
    let o = env.run(&["dlq", "show", "mapreduce-20261121_051542"]);
    assert_eq!(o.code, 2);
    assert_eq!(
        o.stderr,
        "prodigy dlq show: no failed items for job `mapreduce-20261121_051542`; see `prodigy dlq ls`\n"
    );

    let o = env.run(&["dlq", "ls"]);
    assert_eq!(o.code, 0, "{o:?}");
    assert_eq!(
        lines(&o.stdout),
        vec!["-\tmapreduce-20261121_051522\t2\t2026-11-21T05:15:22Z\t0.4.4"]
    );

    // Workflow checkpoints: one row each, with the status in the file.
    let o = env.run(&["checkpoints", "ls"]);
    assert_eq!(o.code, 0, "{o:?}");
    let mut expected = Vec::new();
    let state = env.root.join("state");
    let mut sessions: Vec<PathBuf> = fs::read_dir(&state)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    sessions.sort();
    for s in sessions {
        let Ok(rd) = fs::read_dir(s.join("checkpoints")) else {
            continue;
        };
        for f in rd {
            let f = f.unwrap().path();
            let v: serde_json::Value = serde_json::from_slice(&fs::read(&f).unwrap()).unwrap();
            let sid = s.file_name().unwrap().to_str().unwrap();
            let status = v["execution_state"]["status"].as_str().unwrap();
            expected.push(format!(
                "-\t{sid}\t{}\tworkflow\t{}\t{status}",
                v["workflow_id"].as_str().unwrap(),
                f.file_name().unwrap().to_str().unwrap()
            ));
        }
    }
    assert_eq!(expected.len(), 10);
    let got: Vec<String> = o
        .stdout
        .lines()
        .map(|l| l.split('\t').take(6).collect::<Vec<_>>().join("\t"))
        .collect();
    assert_eq!(got, expected);
    assert!(o.stdout.contains(
        "-\tworkflow-1795238090936\tworkflow-1795238090949\tworkflow\tworkflow-1795238090949.checkpoint.json\tRunning\tstep 2 of 4\t2026-11-21T05:14:51Z\n"
    ));
    let (_, v) = env.json(&["checkpoints", "ls", "workflow-1795238178314", "--json"]);
    let w = v["workflow_checkpoints"].as_array().unwrap();
    assert_eq!(w.len(), 1, "{v}");
    assert_eq!(w[0]["status"], "Failed");
    assert_eq!(w[0]["workflow_id"], "workflow-1795238178331");
    assert_eq!(w[0]["current_step_index"], 2);

    let o = env.run(&["checkpoints", "verify"]);
    assert_eq!(
        (o.code, o.stdout.as_str(), o.stderr.as_str()),
        (0, "10 checkpoints verified\n", "")
    );

    // Events: 0.4.4 leaves empty files; every job is listed.
    let o = env.run(&["events", "ls"]);
    assert_eq!(o.code, 0, "{o:?}");
    assert_eq!(o.stdout.lines().count(), 30);
    assert!(o
        .stdout
        .contains("-\tsession-8fec518b-c68f-4b9b-8596-a469b5ad2f8e\t1\t0\t0\t-\t-\n"));
    assert!(o
        .stdout
        .contains("webapp\tsession-06035e48-287f-4282-86e3-6f9809e0cd68\t1\t0\t0\t-\t-\n"));
}

// ------------------------------------------------------------------ canonical DLQ and checkpoints

const DLQ: &str = r#"{"items": [
  {"item_id": "item-1", "work_item": {"file": "a.rs"},
   "failure_history": [
     {"timestamp": "2025-01-11T12:00:00Z", "error": "Agent failed", "json_log_location": "/logs/claude-1.jsonl"},
     {"timestamp": "2025-01-11T12:05:00.5Z", "error": "Agent failed\nagain", "json_log_location": null}
   ]},
  {"item_id": "item-2", "work_item": 7,
   "failure_history": [{"timestamp": "2025-01-11T12:01:00Z", "error": "timeout", "json_log_location": "/logs/claude-2.jsonl"}],
   "extra_field": true}
]}"#;

const JOB: &str = "state/webapp/mapreduce/jobs/mapreduce-7";

fn canonical_state(env: &Env) {
    env.write("dlq/webapp/mapreduce-7/dlq-items.json", DLQ);
    env.write(
        &format!("{JOB}/job-state.json"),
        r#"{"job_id": "mapreduce-7", "session_id": "session-mapreduce-7", "workflow_name": "wf",
            "phase": "map", "status": "running", "created_at": "2025-01-11T12:00:00Z",
            "updated_at": "2025-01-11T12:06:00Z", "total_items": 4, "completed_items": 1,
            "failed_items": 1}"#,
    );
    env.write(
        &format!("{JOB}/setup-checkpoint.json"),
        r#"{"phase": "setup", "completed": true, "outputs": {"a": "1"}, "timestamp": "2025-01-11T11:59:00Z"}"#,
    );
    let item = |id: &str| format!(r#"{{"id": "{id}", "data": {{"n": 1}}}}"#);
    env.write(
        &format!("{JOB}/map-checkpoint-20250111120000.json"),
        &format!(
            r#"{{"phase": "map", "completed_items": [], "in_progress_items": {{}}, "pending_items": [{}, {}, {}, {}], "failed_items": [], "agent_results": {{}}, "timestamp": "2025-01-11T12:00:00Z"}}"#,
            item("i1"),
            item("i2"),
            item("i3"),
            item("i4")
        ),
    );
    env.write(
        &format!("{JOB}/map-checkpoint-20250111120500.json"),
        &format!(
            r#"{{"phase": "map",
              "completed_items": [{{"work_item": {i1}, "result": {{"item_id": "i1", "status": "Success", "commits": [], "duration": {{"secs": 1, "nanos": 0}}}}, "completed_at": "2025-01-11T12:03:00Z"}}],
              "in_progress_items": {{"i2": {{"work_item": {i2}, "agent_id": "agent-2", "started_at": "2025-01-11T12:04:00Z", "last_update": "2025-01-11T12:04:30Z"}}}},
              "pending_items": [{i3}],
              "failed_items": [{{"work_item": {i4}, "error": "boom", "failed_at": "2025-01-11T12:04:00Z", "retry_count": 1}}],
              "agent_results": {{}}, "timestamp": "2025-01-11T12:05:00Z"}}"#,
            i1 = item("i1"),
            i2 = item("i2"),
            i3 = item("i3"),
            i4 = item("i4")
        ),
    );
    env.write(
        &format!("{JOB}/reduce-checkpoint-v1-20250111121000.json"),
        r#"{"phase": "reduce", "completed_steps": [0, 1], "current_step": 2, "step_results": {}, "map_results": {}, "timestamp": "2025-01-11T12:10:00Z"}"#,
    );
    // 0.4.4 workflow checkpoint filed under a repository.
    env.write(
        "state/webapp/checkpoints/workflow-1700000000001.checkpoint.json",
        r#"{"workflow_id": "workflow-1700000000001", "execution_state": {"status": "Interrupted", "current_step_index": 1, "total_steps": 3}, "timestamp": "2025-01-11T12:20:00Z"}"#,
    );
}

#[test]
fn canonical_dlq_shows_failure_history() {
    let env = Env::new("insp-dlq");
    canonical_state(&env);
    let o = env.run(&["dlq", "ls"]);
    assert_eq!(o.code, 0, "{o:?}");
    assert_eq!(
        lines(&o.stdout),
        vec!["webapp\tmapreduce-7\t2\t2025-01-11T12:05:00Z\tcanonical"]
    );
    let (_, v) = env.json(&["dlq", "ls", "--json"]);
    assert_eq!(v["jobs"][0]["newest_failure"], "2025-01-11T12:05:00.500Z");
    assert_eq!(v["jobs"][0]["items"], 2);
    assert_eq!(v["jobs"][0]["repository"], "webapp");

    let o = env.run(&["dlq", "show", "mapreduce-7"]);
    assert_eq!(o.code, 0, "{o:?}");
    assert_eq!(
        lines(&o.stdout),
        vec![
            "item-1\t2\t2025-01-11T12:00:00Z\t-\tAgent failed\t/logs/claude-1.jsonl\t{\"file\":\"a.rs\"}",
            "item-1\t2\t2025-01-11T12:05:00Z\t-\tAgent failed\\nagain\t-\t{\"file\":\"a.rs\"}",
            "item-2\t1\t2025-01-11T12:01:00Z\t-\ttimeout\t/logs/claude-2.jsonl\t7",
        ]
    );
    let o = env.run(&["dlq", "show", "mapreduce-7", "item-2"]);
    assert_eq!(
        lines(&o.stdout),
        vec!["item-2\t1\t2025-01-11T12:01:00Z\t-\ttimeout\t/logs/claude-2.jsonl\t7"]
    );
    let (_, v) = env.json(&["dlq", "show", "mapreduce-7", "item-2", "--json"]);
    let it = &v["items"][0];
    assert_eq!(it["shape"], "canonical");
    assert_eq!(it["work_item"], 7);
    assert_eq!(
        it["failure_history"][0]["json_log_location"],
        "/logs/claude-2.jsonl"
    );
    assert_eq!(
        it["failure_history"][0]["error_type"],
        serde_json::Value::Null
    );
    assert_eq!(it["record"]["extra_field"], true);

    let o = env.run(&["dlq", "show", "mapreduce-8"]);
    assert_eq!(o.code, 2);
    assert!(o.stderr.contains("see `prodigy dlq ls`"), "{o:?}");

    // A corrupt DLQ file is reported, not fatal.
    env.write("dlq/webapp/mapreduce-8/dlq-items.json", "{\"items\": [");
    let o = env.run(&["dlq", "ls"]);
    assert_eq!(o.code, 0, "{o:?}");
    assert_eq!(o.stdout.lines().count(), 1);
    assert!(
        o.stderr
            .contains("mapreduce-8/dlq-items.json` does not parse: line 1, column"),
        "{o:?}"
    );
}

#[test]
fn canonical_checkpoints_ls_and_verify() {
    let env = Env::new("insp-ckpt");
    canonical_state(&env);
    let job_rows = [
        "webapp\tsession-mapreduce-7\tmapreduce-7\tjob\tjob-state.json\trunning (map)\titems 4: completed 1, failed 1\t2025-01-11T12:06:00Z",
        "webapp\tsession-mapreduce-7\tmapreduce-7\tsetup\tsetup-checkpoint.json\tcompleted\toutputs 1\t2025-01-11T11:59:00Z",
        "webapp\tsession-mapreduce-7\tmapreduce-7\tmap\tmap-checkpoint-20250111120500.json\t-\tpending 1, in progress 1, completed 1, failed 1\t2025-01-11T12:05:00Z",
        "webapp\tsession-mapreduce-7\tmapreduce-7\treduce\treduce-checkpoint-v1-20250111121000.json\t-\tcompleted steps 2, current step 2\t2025-01-11T12:10:00Z",
    ];
    let wf_row = "webapp\t-\tworkflow-1700000000001\tworkflow\tworkflow-1700000000001.checkpoint.json\tInterrupted\tstep 1 of 3\t2025-01-11T12:20:00Z";
    let o = env.run(&["checkpoints", "ls"]);
    assert_eq!(o.code, 0, "{o:?}");
    let mut all = job_rows.to_vec();
    all.push(wf_row);
    assert_eq!(lines(&o.stdout), all);
    let o = env.run(&["checkpoints", "ls", "mapreduce-7"]);
    assert_eq!(lines(&o.stdout), job_rows.to_vec(), "{o:?}");
    let (o, v) = env.json(&["checkpoints", "ls", "--json", "--repo", "webapp"]);
    assert_eq!(o.code, 0);
    let j = &v["jobs"][0];
    assert_eq!(j["job"], "mapreduce-7");
    assert_eq!(j["job_state"]["status"], "running");
    assert_eq!(j["map"]["file"], "map-checkpoint-20250111120500.json");
    assert_eq!(j["map"]["pending_items"], 1);
    assert_eq!(j["map"]["failed_items"], 1);
    assert_eq!(j["reduce"]["completed_steps"], serde_json::json!([0, 1]));
    assert_eq!(v["workflow_checkpoints"][0]["status"], "Interrupted");
    let o = env.run(&["checkpoints", "ls", "--repo", "other"]);
    assert_eq!((o.code, o.stdout.as_str()), (0, ""));
    let o = env.run(&["checkpoints", "ls", "mapreduce-99"]);
    assert_eq!(o.code, 2);
    assert!(
        o.stderr.contains("no checkpoints for job `mapreduce-99`"),
        "{o:?}"
    );

    let o = env.run(&["checkpoints", "verify"]);
    assert_eq!(
        (o.code, o.stdout.as_str(), o.stderr.as_str()),
        (0, "6 checkpoints verified\n", "")
    );

    // One corrupt checkpoint: named with its position, exit 1.
    let bad = env.write(
        "state/webapp/mapreduce/jobs/mapreduce-8/map-checkpoint-20250111130000.json",
        "{\n  \"phase\": \"map\",\n  \"completed_items\": [\n",
    );
    let bad = bad.canonicalize().unwrap();
    let o = env.run(&["checkpoints", "verify"]);
    assert_eq!(o.code, 1, "{o:?}");
    assert_eq!(
        o.stdout,
        format!(
            "{}\tline 4, column 0: EOF while parsing a list\n",
            bad.display()
        )
    );
    assert_eq!(
        o.stderr,
        "prodigy checkpoints verify: 1 of 7 checkpoints invalid\n"
    );
    let (o, v) = env.json(&["checkpoints", "verify", "--json"]);
    assert_eq!(o.code, 1);
    assert_eq!(v["checked"], 7);
    assert_eq!(v["valid"], 6);
    assert_eq!(v["invalid"][0]["path"], bad.to_str().unwrap());
    assert_eq!(v["invalid"][0]["kind"], "map");
    assert_eq!(v["invalid"][0]["line"], 4);
    // A wrong phase is invalid too (no position beyond serde's).
    fs::write(&bad, r#"{"phase": "reduce"}"#).unwrap();
    let o = env.run(&["checkpoints", "verify"]);
    assert_eq!(o.code, 1, "{o:?}");
    assert!(
        o.stdout
            .starts_with(&format!("{}\tline 1, column ", bad.display())),
        "{o:?}"
    );
    // ls shows the invalid newest map checkpoint of the other job.
    let o = env.run(&["checkpoints", "ls", "mapreduce-8"]);
    assert_eq!(o.code, 0);
    assert!(o.stdout.starts_with("webapp\t-\tmapreduce-8\tmap\tmap-checkpoint-20250111130000.json\tinvalid\tline 1, column "), "{o:?}");
}
