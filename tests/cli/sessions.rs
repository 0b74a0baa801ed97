//! Tests of `prodigy stats` and `prodigy sessions ls|show|rm`.

use super::common::*;
use std::fs;

/// A canonical session with a job: record, events, job state (map checkpoint when `checkpoint`),
/// mappings; everything `days` old.
fn session_with_job(
    env: &Env,
    repo: &str,
    sid: &str,
    job: &str,
    status: &str,
    days: u64,
    checkpoint: bool,
) -> Vec<String> {
    let t = rfc3339_ago(days * DAY);
    env.write(
        &format!("sessions/{sid}.json"),
        &format!(
            r#"{{"id":"{sid}","session_type":"MapReduce","status":"{status}","started_at":"{t}","updated_at":"{t}","completed_at":null,"metadata":{{}},"checkpoints":[],"timings":{{}},"error":null,"workflow_data":null,"mapreduce_data":{{"job_id":"{job}"}}}}"#
        ),
    );
    env.write(
        &format!("events/{repo}/{job}/events-20250101120000.jsonl"),
        "{\"event_type\":\"AgentStarted\"}\n",
    );
    let (phase, st) = if status == "Completed" {
        ("complete", "completed")
    } else {
        ("map", "failed")
    };
    env.write(
        &format!("state/{repo}/mapreduce/jobs/{job}/job-state.json"),
        &format!(r#"{{"job_id":"{job}","session_id":"{sid}","phase":"{phase}","status":"{st}"}}"#),
    );
    if checkpoint {
        env.write(
            &format!("state/{repo}/mapreduce/jobs/{job}/map-checkpoint-20250101120000.json"),
            &format!(r#"{{"phase":"map","completed_items":[],"in_progress_items":{{}},"pending_items":[],"failed_items":[],"agent_results":{{}},"timestamp":"{t}"}}"#),
        );
    }
    let m = format!(
        r#"{{"session_id":"{sid}","job_id":"{job}","workflow_name":"w","created_at":"{t}"}}"#
    );
    env.write(&format!("state/{repo}/mappings/{sid}.json"), &m);
    env.write(&format!("state/{repo}/mappings/{job}.json"), &m);
    let owned = vec![
        format!("sessions/{sid}.json"),
        format!("events/{repo}/{job}"),
        format!("state/{repo}/mapreduce/jobs/{job}"),
        format!("state/{repo}/mappings/{sid}.json"),
        format!("state/{repo}/mappings/{job}.json"),
    ];
    for p in &owned {
        age_tree(&env.p(p), days * DAY);
    }
    owned
}

#[test]
fn sessions_ls_classifies_and_filters() {
    let env = Env::new("sess-ls");
    session_with_job(&env, "web", "s-res", "job-res", "Failed", 40, true);
    session_with_job(&env, "web", "s-done", "job-done", "Completed", 40, false);
    fs::write(env.p("sessions/s-bad.json"), "").unwrap();
    let (o, v) = env.json(&["sessions", "ls", "--all-repos", "--json"]);
    assert_eq!(o.code, 0, "{o:?}");
    let by_id = |id: &str| {
        v["sessions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["id"] == id)
            .cloned()
            .unwrap()
    };
    assert_eq!(by_id("s-res")["class"], "resumable");
    assert!(by_id("s-res")["evidence"]
        .as_str()
        .unwrap()
        .contains("map-checkpoint-20250101120000.json parses"));
    assert_eq!(by_id("s-done")["class"], "completed");
    assert_eq!(by_id("s-bad")["class"], "unknown");
    assert_eq!(by_id("s-res")["repository"], "web");
    let o = env.run(&["sessions", "ls", "--all-repos", "--class", "resumable"]);
    assert_eq!(o.stdout.lines().count(), 1, "{o:?}");
    assert!(
        o.stdout
            .starts_with("s-res\tMapReduce\tFailed\tresumable\tweb\t40d\t"),
        "{o:?}"
    );
    let o = env.run(&["sessions", "ls", "--all-repos", "--status", "completed"]);
    assert!(o.stdout.starts_with("s-done\t"), "{o:?}");
}

#[test]
fn sessions_show_accepts_a_session_or_a_job_id() {
    let env = Env::new("sess-show");
    let owned = session_with_job(&env, "web", "s-res", "job-res", "Failed", 40, true);
    let (o, by_job) = env.json(&["sessions", "show", "job-res", "--json"]);
    assert_eq!(o.code, 0, "{o:?}");
    let (_, by_sid) = env.json(&["sessions", "show", "s-res", "--json"]);
    // Ages may differ by a second between the two runs; everything else is the same.
    let strip = |mut v: serde_json::Value| {
        v.as_object_mut().unwrap().remove("last_activity_seconds");
        for i in v["items"].as_array_mut().unwrap() {
            i.as_object_mut().unwrap().remove("age_seconds");
        }
        v
    };
    assert_eq!(strip(by_job.clone()), strip(by_sid));
    assert_eq!(by_job["session"], "s-res");
    assert_eq!(by_job["class"], "resumable");
    assert_eq!(by_job["jobs"], serde_json::json!(["job-res"]));
    let mut paths: Vec<String> = by_job["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["path"].as_str().unwrap().to_string())
        .collect();
    paths.sort();
    let mut expect: Vec<String> = owned
        .iter()
        .filter(|p| !p.contains("mappings"))
        .cloned()
        .collect();
    expect.sort();
    assert_eq!(paths, expect, "mappings go with the job state");
    let o = env.run(&["sessions", "show", "nope"]);
    assert_eq!(o.code, 2);
    assert!(
        o.stderr.contains("no session or job `nope`")
            && o.stderr.contains("see `prodigy sessions ls`"),
        "{o:?}"
    );
}

#[test]
fn sessions_rm_of_a_resumable_session_removes_exactly_what_it_owns() {
    let env = Env::new("sess-rm");
    let owned = session_with_job(&env, "web", "s-res", "job-res", "Failed", 2, true);
    let other = session_with_job(&env, "web", "s-other", "job-other", "Failed", 2, true);
    let before = env.snapshot();
    // clean never removes it…
    let (_, v) = env.json(&[
        "clean",
        "--all-repos",
        "--older-than",
        "0s",
        "--force",
        "--json",
    ]);
    assert!(v["removed"].as_array().unwrap().is_empty(), "{v}");
    // …sessions rm does, and only what it owns.
    let o = env.run(&["sessions", "rm", "s-res"]);
    assert_eq!(o.code, 3, "no terminal, no --force: {o:?}");
    let (o, dry) = env.json(&["sessions", "rm", "job-res", "-n", "--json"]);
    assert_eq!(o.code, 0, "{o:?}");
    let (o, v) = env.json(&["sessions", "rm", "s-res", "-f", "--json"]);
    assert_eq!(o.code, 0, "{o:?}");
    assert_eq!(removed_paths(&dry), removed_paths(&v));
    let mut expect = owned.clone();
    expect.sort();
    assert_eq!(removed_paths(&v), expect);
    for p in &owned {
        assert!(!env.exists(p), "{p}");
    }
    for p in &other {
        assert!(env.exists(p), "{p}");
    }
    let mut left: Vec<String> = before
        .into_iter()
        .filter(|p| {
            !owned
                .iter()
                .any(|o| p == o || p.starts_with(&format!("{o}/")))
        })
        .collect();
    left.push("resume_locks".into());
    left.sort();
    assert_eq!(env.snapshot(), left, "nothing else changed");
    let audit = fs::read_to_string(env.p("clean-audit.jsonl")).unwrap();
    assert_eq!(audit.lines().count(), 3, "{audit}");
    assert!(
        audit.contains(
            r#""also":["state/web/mappings/job-res.json","state/web/mappings/s-res.json"]"#
        ),
        "{audit}"
    );
}

#[test]
fn sessions_rm_never_removes_an_active_session() {
    let env = Env::new("sess-rm-active");
    let owned = session_with_job(&env, "web", "s-act", "job-act", "Failed", 40, false);
    // A live resume lock (this test process, this host) makes it active.
    let host = fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap_or_default()
        .trim()
        .to_string();
    env.write(
        "resume_locks/job-act.lock",
        &format!(
            r#"{{"job_id":"job-act","process_id":{},"hostname":"{host}","acquired_at":"{}"}}"#,
            std::process::id(),
            rfc3339_ago(60)
        ),
    );
    let o = env.run(&["sessions", "rm", "s-act", "-f"]);
    assert_eq!(o.code, 1, "{o:?}");
    assert!(
        o.stderr.contains("session s-act is active") && o.stderr.contains("not removed"),
        "{o:?}"
    );
    for p in &owned {
        assert!(env.exists(p), "{p}");
    }
}

#[test]
fn stats_reports_types_reclaimable_and_held_bytes() {
    let env = Env::new("stats");
    session_with_job(&env, "web", "s-res", "job-res", "Failed", 40, true);
    session_with_job(&env, "api", "s-done", "job-done", "Completed", 40, false);
    let (o, v) = env.json(&["stats", "--all-repos", "--json"]);
    assert_eq!(o.code, 0, "{o:?}");
    assert_eq!(v["total"]["items"], 6);
    assert_eq!(v["types"]["sessions"]["items"], 2);
    assert_eq!(v["repositories"]["web"]["items"], 3);
    assert_eq!(
        v["reclaimable"]["items"], 3,
        "the completed session's record, events and state"
    );
    assert_eq!(v["held"]["resumable"]["items"], 3);
    assert_eq!(
        v["sessions"],
        serde_json::json!({"completed": 1, "resumable": 1})
    );
    assert_eq!(v["largest"].as_array().unwrap().len(), 6);
    let before = env.snapshot();
    let o = env.run(&["stats", "--all-repos"]);
    assert!(
        o.stdout
            .contains("Clean would reclaim now (default retention): 3 items"),
        "{o:?}"
    );
    assert_eq!(env.snapshot(), before, "stats changes nothing");
}
