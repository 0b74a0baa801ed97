//! `clean --compress-after` (issue 26): event and log files of unprotected items become
//! `NAME.gz`, read transparently by `events`; nothing active or resumable is compressed; a kill
//! at any step of a compression leaves one readable copy and a rerun finishes.

use super::common::*;
use std::fs;
use std::io::Read;
use std::path::Path;
use std::process::Command;

/// This host's name as prodigy sees it (gethostname = the UTS nodename).
fn this_host() -> String {
    if let Ok(h) = fs::read_to_string("/proc/sys/kernel/hostname") {
        let h = h.trim().to_string();
        if !h.is_empty() {
            return h;
        }
    }
    let o = Command::new("hostname").output().expect("hostname");
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

/// A session record with `status` and `metadata`/`checkpoints` text, `days` old, and its
/// mapping to `job` in `webapp`.
fn owned_session(env: &Env, id: &str, status: &str, md: &str, cps: &str, job: &str, days: u64) {
    let p = env.write(
        &format!("sessions/{id}.json"),
        &body(id, status, &rfc3339_ago(days * DAY), md, cps),
    );
    age(&p, days * DAY);
    mapping(env, "webapp", id, job, days);
}

/// Event lines of every kind the reader meets: both shapes, a corrupt line, a blank line and a
/// torn last line.
fn event_text(job: &str, n: usize) -> String {
    let mut s = String::new();
    for i in 0..n {
        s.push_str(&format!(
            "{{\"timestamp\":\"2025-01-01T00:{:02}:{:02}Z\",\"event_type\":\"AgentStarted\",\"job_id\":\"{job}\",\"agent_id\":\"agent-{i}\",\"item_id\":\"item-{i}\"}}\n",
            (i / 60) % 60,
            i % 60
        ));
    }
    s.push_str(r#"{"id":"u-1","timestamp":"2025-01-01T01:00:00Z","correlation_id":"c","event":{"event_type":"agent_completed","job_id":"J","agent_id":"agent-0"},"metadata":{"host":"h"}}"#);
    s.push('\n');
    s.push_str("this is not json\n\n");
    s.push_str(r#"{"timestamp":"2025-01-01T02:00:00Z","event_ty"#);
    s
}

/// The decompressed bytes of a `.gz` file, through prodigy's own reader.
fn gunzip(p: &Path) -> Vec<u8> {
    let mut v = Vec::new();
    prodigy::store::gz::decoder(fs::File::open(p).unwrap())
        .read_to_end(&mut v)
        .unwrap();
    v
}

fn mtime(p: &Path) -> std::time::SystemTime {
    fs::symlink_metadata(p).unwrap().modified().unwrap()
}

fn paths(v: &serde_json::Value) -> Vec<String> {
    let mut p: Vec<String> = v["compressed"]["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().unwrap().to_string())
        .collect();
    p.sort();
    p
}

#[test]
fn compressed_events_show_the_same_and_protected_sessions_are_never_compressed() {
    let env = Env::new("gz-protect");
    let host = this_host();
    let me = std::process::id();
    // Completed: its files may be compressed. Active (a live owner) and resumable (a
    // checkpoint): never.
    owned_session(
        &env,
        "s-done",
        "Completed",
        r#"{"x":1}"#,
        "[]",
        "mapreduce-1",
        3,
    );
    owned_session(
        &env,
        "s-live",
        "Running",
        &format!(
            r#"{{"owner":{{"pid":{me},"hostname":"{host}","heartbeat_at":"{}"}}}}"#,
            rfc3339_ago(3 * DAY)
        ),
        "[]",
        "mapreduce-2",
        3,
    );
    owned_session(
        &env,
        "s-res",
        "Failed",
        r#"{"x":1}"#,
        r#"[{"n":1}]"#,
        "mapreduce-3",
        3,
    );
    for job in ["mapreduce-1", "mapreduce-2", "mapreduce-3"] {
        env.write(
            &format!("events/webapp/{job}/events-20250101000000.jsonl"),
            &event_text(job, 300),
        );
        env.write(
            &format!("logs/webapp/{job}/steps.log"),
            &"step output\n".repeat(500),
        );
        env.write(&format!("logs/webapp/{job}/empty.log"), "");
        age_tree(&env.p(&format!("events/webapp/{job}")), 3 * DAY);
        age_tree(&env.p(&format!("logs/webapp/{job}")), 3 * DAY);
    }
    // No owner, but younger than --compress-after: kept as it is.
    env.write(
        "events/webapp/mapreduce-4/events-20250101000000.jsonl",
        &event_text("mapreduce-4", 3),
    );
    age_tree(&env.p("events/webapp/mapreduce-4"), 3600);

    let show = env.run(&["events", "show", "mapreduce-1"]);
    let show_json = env.run(&["events", "show", "mapreduce-1", "--json"]);
    let ls = env.run(&["events", "ls", "--json"]);
    assert_eq!(show.code, 0, "{show:?}");
    assert!(show.stdout.lines().count() > 300, "{show:?}");
    let f1 = env.p("events/webapp/mapreduce-1/events-20250101000000.jsonl");
    let t1 = mtime(&f1);
    let d1 = mtime(&env.p("events/webapp/mapreduce-1"));
    let before = env.snapshot();

    // The dry run lists what would be compressed and the saving, and changes nothing.
    let (o, dry) = env.json(&["clean", "--compress-after", "1d", "--dry-run", "--json"]);
    assert_eq!(o.code, 0, "{o:?}");
    let want = vec![
        "events/webapp/mapreduce-1/events-20250101000000.jsonl".to_string(),
        "logs/webapp/mapreduce-1/steps.log".to_string(),
    ];
    assert_eq!(paths(&dry), want, "{dry}");
    assert_eq!(dry["compress_after_seconds"], 86_400);
    assert!(
        dry["compressed"]["saved_bytes"].as_u64().unwrap() > 0,
        "{dry}"
    );
    assert_eq!(env.snapshot(), before);
    let o = env.run(&["clean", "--compress-after", "1d", "--dry-run"]);
    assert!(o.stdout.contains("Would compress: 2 files"), "{o:?}");

    let (o, real) = env.json(&["clean", "--compress-after", "1d", "--force", "--json"]);
    assert_eq!(o.code, 0, "{o:?}");
    assert_eq!(paths(&real), want, "{real}");
    assert_eq!(real["removed"].as_array().unwrap().len(), 0, "{real}");
    let mut after = before.clone();
    for p in &want {
        let i = after.iter().position(|x| x == p).unwrap();
        after[i] = format!("{p}.gz");
    }
    // (The real run creates the clean lock's directory.)
    after.push("resume_locks".to_string());
    after.sort();
    assert_eq!(env.snapshot(), after, "only the two files changed, to .gz");
    // Same mtime (so the same retention age), and the directory's mtime is unchanged too.
    assert_eq!(mtime(&env.p(&format!("{}.gz", want[0]))), t1);
    assert_eq!(mtime(&env.p("events/webapp/mapreduce-1")), d1);
    assert_eq!(
        gunzip(&env.p(&format!("{}.gz", want[1]))),
        "step output\n".repeat(500).as_bytes()
    );

    // Readers see exactly what they saw.
    let show2 = env.run(&["events", "show", "mapreduce-1"]);
    assert_eq!(show2.stdout, show.stdout);
    assert_eq!(show2.code, show.code);
    assert_eq!(show2.stderr.replace(".jsonl.gz`", ".jsonl`"), show.stderr);
    assert_eq!(
        env.run(&["events", "show", "mapreduce-1", "--json"]).stdout,
        show_json.stdout
    );
    assert_eq!(env.run(&["events", "ls", "--json"]).stdout, ls.stdout);

    // stats reports both sizes: on disk, and uncompressed from each gzip trailer.
    let (o, st) = env.json(&["stats", "--json"]);
    assert_eq!(o.code, 0, "{o:?}");
    let plain = (event_text("mapreduce-1", 300).len() + "step output\n".repeat(500).len()) as u64;
    assert_eq!(st["compressed"]["files"], 2, "{st}");
    assert_eq!(st["compressed"]["uncompressed_bytes"], plain, "{st}");
    assert!(st["compressed"]["bytes"].as_u64().unwrap() > 0, "{st}");
    let o = env.run(&["stats"]);
    assert!(
        o.stdout.contains("Compressed event and log files: 2, "),
        "{o:?}"
    );

    // The audit log names each compression.
    let audit = fs::read_to_string(env.p("clean-audit.jsonl")).unwrap();
    assert_eq!(
        audit.matches(r#""action":"compress""#).count(),
        2,
        "{audit}"
    );

    // A second run has nothing to do.
    let (o, again) = env.json(&["clean", "--compress-after", "1d", "--force", "--json"]);
    assert_eq!(o.code, 0, "{o:?}");
    assert_eq!(again["compressed"]["files"], 0, "{again}");
    assert_eq!(env.snapshot(), after);

    // Retention applies to the compressed file by the same age (3 days).
    let (_, v) = env.json(&[
        "clean",
        "--events",
        "--older-than",
        "4d",
        "--dry-run",
        "--json",
    ]);
    assert!(
        !removed_paths(&v).contains(&"events/webapp/mapreduce-1".to_string()),
        "{v}"
    );
    let (_, v) = env.json(&[
        "clean",
        "--events",
        "--older-than",
        "2d",
        "--dry-run",
        "--json",
    ]);
    assert!(
        removed_paths(&v).contains(&"events/webapp/mapreduce-1".to_string()),
        "{v}"
    );
}

#[test]
fn compress_after_in_clean_conf_and_bad_values() {
    let env = Env::new("gz-conf");
    env.write(
        "events/webapp/mapreduce-1/events-20250101000000.jsonl",
        &event_text("m", 50),
    );
    age_tree(&env.p("events/webapp/mapreduce-1"), 3 * DAY);
    env.write("clean.conf", "compress-after = 2d\n");
    let (o, v) = env.json(&["clean", "--dry-run", "--json"]);
    assert_eq!(o.code, 0, "{o:?}");
    assert_eq!(v["compressed"]["files"], 1, "{v}");
    // The flag beats the file.
    let (_, v) = env.json(&["clean", "--dry-run", "--json", "--compress-after", "4d"]);
    assert_eq!(v["compressed"]["files"], 0, "{v}");
    env.write("clean.conf", "compress-after = soon\n");
    let o = env.run(&["clean", "--dry-run"]);
    assert_eq!(o.code, 2, "{o:?}");
    assert!(o.stderr.contains("clean.conf`:1:"), "{o:?}");
    let o = env.run(&["clean", "--dry-run", "--compress-after", "x"]);
    assert_eq!(o.code, 2, "{o:?}");
    assert!(o.stderr.contains("--compress-after"), "{o:?}");
}

#[test]
fn a_corrupt_gz_is_reported_and_kept() {
    let env = Env::new("gz-corrupt");
    let dir = "events/webapp/mapreduce-1";
    env.write(
        &format!("{dir}/events-20250101000000.jsonl"),
        &event_text("m", 200),
    );
    age_tree(&env.p(dir), 3 * DAY);
    let o = env.run(&["clean", "--compress-after", "1d", "--force"]);
    assert_eq!(o.code, 0, "{o:?}");
    let gz = env.p(&format!("{dir}/events-20250101000000.jsonl.gz"));
    let bytes = fs::read(&gz).unwrap();
    fs::write(&gz, &bytes[..bytes.len() / 2]).unwrap();
    let o = env.run(&["events", "show", "mapreduce-1"]);
    assert_eq!(o.code, 1, "{o:?}");
    assert!(o.stderr.contains("corrupt or truncated gzip data"), "{o:?}");
    assert!(!o.stderr.contains("panicked"), "{o:?}");
    let o = env.run(&["clean", "--compress-after", "1d", "--force"]);
    assert_eq!(o.code, 0, "{o:?}");
    assert!(gz.exists());
}

/// Kill `clean --compress-after` with SIGKILL at the Nth call of each syscall that orders a
/// compression (`fsync` of the temp file and of the directory, `renameat2`, `unlinkat`), with
/// strace's fault injection: after every kill each file has one readable copy (`events show`
/// prints what it printed before), and a rerun finishes the job.
#[test]
fn a_kill_at_every_step_of_compressing_leaves_one_readable_copy() {
    if !have(
        "strace",
        "a_kill_at_every_step_of_compressing_leaves_one_readable_copy",
    ) {
        return;
    }
    let names = ["events-20250101000000.jsonl", "events-20250102000000.jsonl"];
    let mut points: Vec<(&str, u32)> = Vec::new();
    for n in 1..=8 {
        points.push(("fsync", n));
    }
    for n in 1..=3 {
        points.push(("renameat2", n));
        points.push(("unlinkat", n));
        points.push(("openat", 40 + n));
    }
    let mut killed = 0;
    for (sys, n) in points {
        let env = Env::new("gz-crash");
        let dir = "events/webapp/mapreduce-1";
        for (i, f) in names.iter().enumerate() {
            env.write(&format!("{dir}/{f}"), &event_text("m", 100 + i));
        }
        env.write("logs/webapp/mapreduce-1/steps.log", &"x\n".repeat(1000));
        age_tree(&env.p(dir), 3 * DAY);
        age_tree(&env.p("logs/webapp/mapreduce-1"), 3 * DAY);
        let show = env.run(&["events", "show", "mapreduce-1"]);
        let inject = format!("inject={sys}:signal=SIGKILL:when={n}");
        let o = Out::from(
            cmd_via(
                &env,
                "strace",
                &["-qq", "-f", "-o", "/dev/null", "-e", &inject],
                &["clean", "--compress-after", "1d", "--force"],
            )
            .output()
            .unwrap(),
        );
        if o.code != 0 {
            killed += 1;
        }
        let check = |when: &str| {
            for f in names {
                let plain = env.p(&format!("{dir}/{f}"));
                let gz = env.p(&format!("{dir}/{f}.gz"));
                assert!(
                    plain.exists() || gz.exists(),
                    "{when} ({sys} #{n}): no copy of {f}"
                );
            }
            let log = env.p("logs/webapp/mapreduce-1/steps.log");
            let log_gz = env.p("logs/webapp/mapreduce-1/steps.log.gz");
            if log.exists() {
                assert_eq!(fs::read(&log).unwrap(), "x\n".repeat(1000).as_bytes());
            } else {
                assert_eq!(gunzip(&log_gz), "x\n".repeat(1000).as_bytes(), "{when}");
            }
            let again = env.run(&["events", "show", "mapreduce-1"]);
            assert_eq!(again.stdout, show.stdout, "{when} ({sys} #{n})");
        };
        check("after the kill");
        let o = env.run(&["clean", "--compress-after", "1d", "--force"]);
        assert_eq!(o.code, 0, "rerun after {sys} #{n}: {o:?}");
        check("after the rerun");
        let mut left: Vec<String> = env
            .snapshot()
            .into_iter()
            .filter(|p| p.starts_with("events/") || p.starts_with("logs/"))
            .collect();
        left.sort();
        assert_eq!(
            left,
            vec![
                "events/webapp".to_string(),
                format!("{dir}"),
                format!("{dir}/{}.gz", names[0]),
                format!("{dir}/{}.gz", names[1]),
                "logs/webapp".to_string(),
                "logs/webapp/mapreduce-1".to_string(),
                "logs/webapp/mapreduce-1/steps.log.gz".to_string(),
            ],
            "after the rerun ({sys} #{n})"
        );
    }
    assert!(killed >= 10, "only {killed} runs were killed");
}

/// `events follow` prints a compressed file once, and a file compressed while it is followed is
/// read on from where the original left off, not printed again.
#[test]
fn events_follow_reads_gz_once_and_a_file_compressed_under_it_is_not_repeated() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    use std::sync::mpsc;
    use std::time::Duration;
    let env = Env::new("gz-follow");
    let dir = "events/webapp/mapreduce-7";
    let ev = |n: u32| {
        format!(
            "{{\"timestamp\":\"2025-01-11T12:00:0{n}Z\",\"event_type\":\"AgentProgress\",\"agent_id\":\"a\",\"n\":{n}}}\n"
        )
    };
    let want = |n: u32| format!("2025-01-11T12:00:0{n}Z  AgentProgress  agent=a  {{\"n\":{n}}}\n");
    // An already compressed file and a plain one, both old and unowned.
    env.write(&format!("{dir}/events-20250111110000.jsonl"), &ev(1));
    env.write(&format!("{dir}/events-20250111120000.jsonl"), &ev(2));
    age_tree(&env.p(dir), 3 * DAY);
    let o = env.run(&["clean", "--compress-after", "1d", "--force"]);
    assert_eq!(o.code, 0, "{o:?}");
    assert!(env.exists(&format!("{dir}/events-20250111110000.jsonl.gz")));
    env.write(&format!("{dir}/events-20250111120000.jsonl"), &ev(2));
    age_tree(
        &env.p(&format!("{dir}/events-20250111120000.jsonl")),
        3 * DAY,
    );

    let mut child = env
        .cmd(&["events", "follow", "mapreduce-7"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for l in BufReader::new(out).lines() {
            let Ok(l) = l else { break };
            if tx.send(format!("{l}\n")).is_err() {
                break;
            }
        }
    });
    let next = || rx.recv_timeout(Duration::from_secs(10)).expect("a line");
    let mut got = vec![next(), next()];
    // The followed plain file is compressed under it; then a new file appears.
    let o = env.run(&["clean", "--compress-after", "1d", "--force"]);
    assert_eq!(o.code, 0, "{o:?}");
    assert!(env.exists(&format!("{dir}/events-20250111120000.jsonl.gz")));
    std::thread::sleep(Duration::from_millis(600));
    env.write(&format!("{dir}/events-20250111130000.jsonl"), &ev(3));
    got.push(next());
    std::thread::sleep(Duration::from_millis(600));
    let _ = child.kill();
    let _ = child.wait();
    while let Ok(l) = rx.recv_timeout(Duration::from_millis(200)) {
        got.push(l);
    }
    assert_eq!(got, (1..=3).map(want).collect::<Vec<_>>());
}

/// The whole-root engine (a quota, `PRODIGY_CLEAN_WHOLE_ROOT=1`) compresses the same files as
/// the streaming one, also when nothing is removed.
#[test]
fn the_whole_root_engine_compresses_the_same_files() {
    let env = Env::new("gz-whole");
    let dir = "events/webapp/mapreduce-1";
    env.write(
        &format!("{dir}/events-20250101000000.jsonl"),
        &event_text("m", 50),
    );
    env.write("logs/webapp/mapreduce-1/steps.log", &"x\n".repeat(100));
    age_tree(&env.p(dir), 3 * DAY);
    age_tree(&env.p("logs/webapp/mapreduce-1"), 3 * DAY);
    let (_, dry) = env.json(&["clean", "--compress-after", "1d", "--dry-run", "--json"]);
    let o = Out::from(
        env.cmd(&[
            "clean",
            "--compress-after",
            "1d",
            "--force",
            "--json",
            "--max-size",
            "1T",
        ])
        .env("PRODIGY_CLEAN_WHOLE_ROOT", "1")
        .output()
        .unwrap(),
    );
    assert_eq!(o.code, 0, "{o:?}");
    let v: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    assert_eq!(v["dry_run"], false, "{v}");
    assert_eq!(paths(&v), paths(&dry), "{v}");
    assert_eq!(paths(&v).len(), 2, "{v}");
    assert!(env.exists(&format!("{dir}/events-20250101000000.jsonl.gz")));
    assert!(env.exists("logs/webapp/mapreduce-1/steps.log.gz"));
}

/// `dlq show` names where a failure's log is now: `PATH.gz` once clean compressed it (the
/// recorded `json_log_location` is kept as stored in `--json`).
#[test]
fn dlq_show_names_the_compressed_log() {
    let env = Env::new("gz-dlq");
    let log = env.p("logs/webapp/mapreduce-1/agent-item-0.log");
    let log_s = log.to_str().unwrap().to_string();
    env.write(
        "logs/webapp/mapreduce-1/agent-item-0.log",
        &"failed\n".repeat(100),
    );
    env.write(
        "dlq/webapp/mapreduce-1/dlq-items.json",
        &format!(
            r#"{{"items":[{{"item_id":"item-0","work_item":{{"n":0}},"failure_history":[{{"timestamp":"2025-01-01T00:00:00Z","error":"boom","json_log_location":"{log_s}"}}]}}]}}"#
        ),
    );
    age_tree(&env.p("logs/webapp/mapreduce-1"), 3 * DAY);
    age_tree(&env.p("dlq/webapp/mapreduce-1"), 3 * DAY);
    let o = env.run(&["dlq", "show", "mapreduce-1"]);
    assert!(o.stdout.contains(&format!("{log_s}\t")), "{o:?}");
    let o = env.run(&["clean", "--compress-after", "1d", "--force"]);
    assert_eq!(o.code, 0, "{o:?}");
    assert!(!log.exists());
    let o = env.run(&["dlq", "show", "mapreduce-1"]);
    assert!(o.stdout.contains(&format!("{log_s}.gz\t")), "{o:?}");
    let (_, v) = env.json(&["dlq", "show", "mapreduce-1", "--json"]);
    let f = &v["items"][0]["failure_history"][0];
    assert_eq!(f["json_log_location"], log_s.as_str(), "{v}");
    assert_eq!(f["log_path"], format!("{log_s}.gz"), "{v}");
}
