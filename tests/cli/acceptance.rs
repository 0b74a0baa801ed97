//! One test per acceptance criterion of Spec 135 (seed 002), on canonical trees with real git.

use super::common::*;
use std::fs;

/// A canonical MapReduce session `sid` with job `job` in `repo`: record, events, DLQ, job state
/// (with a map checkpoint when `checkpoint`), both mapping files; everything `days` old.
pub(super) fn mr_session(
    env: &Env,
    repo: &str,
    sid: &str,
    job: &str,
    status: &str,
    days: u64,
    checkpoint: bool,
) {
    let t = rfc3339_ago(days * DAY);
    let terminal = matches!(status, "Completed" | "Failed" | "Cancelled");
    let completed = if terminal {
        format!("\"{t}\"")
    } else {
        "null".into()
    };
    env.write(
        &format!("sessions/{sid}.json"),
        &format!(
            r#"{{"id":"{sid}","session_type":"MapReduce","status":"{status}","started_at":"{t}","updated_at":"{t}","completed_at":{completed},"metadata":{{}},"checkpoints":[],"timings":{{}},"error":null,"workflow_data":null,"mapreduce_data":{{"job_id":"{job}","total_items":1,"processed_items":1,"failed_items":0,"agent_count":1,"phase":"Map"}}}}"#
        ),
    );
    env.write(
        &format!("events/{repo}/{job}/events-20250101120000.jsonl"),
        &format!(
            "{{\"timestamp\":\"{t}\",\"event_type\":\"AgentStarted\",\"agent_id\":\"agent-1\"}}\n"
        ),
    );
    env.write(
        &format!("dlq/{repo}/{job}/dlq-items.json"),
        &format!(r#"{{"items":[{{"item_id":"item-1","work_item":{{}},"failure_history":[{{"timestamp":"{t}","error":"boom","json_log_location":null}}]}}]}}"#),
    );
    let (jphase, jstatus) = match status {
        "Completed" => ("complete", "completed"),
        "Cancelled" => ("map", "cancelled"),
        "Failed" => ("map", "failed"),
        _ => ("map", "running"),
    };
    env.write(
        &format!("state/{repo}/mapreduce/jobs/{job}/job-state.json"),
        &format!(
            r#"{{"job_id":"{job}","session_id":"{sid}","workflow_name":"w","phase":"{jphase}","status":"{jstatus}","created_at":"{t}","updated_at":"{t}","total_items":1,"completed_items":0,"failed_items":0}}"#
        ),
    );
    if checkpoint {
        env.write(
            &format!("state/{repo}/mapreduce/jobs/{job}/map-checkpoint-20250101120000.json"),
            &format!(
                r#"{{"phase":"map","completed_items":[],"in_progress_items":{{}},"pending_items":[{{"id":"item-1","data":{{}}}}],"failed_items":[],"agent_results":{{}},"timestamp":"{t}"}}"#
            ),
        );
    }
    let mapping = format!(
        r#"{{"session_id":"{sid}","job_id":"{job}","workflow_name":"w","created_at":"{t}"}}"#
    );
    env.write(&format!("state/{repo}/mappings/{sid}.json"), &mapping);
    env.write(&format!("state/{repo}/mappings/{job}.json"), &mapping);
    let when = ago(days * DAY);
    for rel in session_files(repo, sid, job) {
        age_tree_at(&env.p(&rel), when);
    }
}

pub(super) fn session_files(repo: &str, sid: &str, job: &str) -> Vec<String> {
    vec![
        format!("sessions/{sid}.json"),
        format!("events/{repo}/{job}"),
        format!("dlq/{repo}/{job}"),
        format!("state/{repo}/mapreduce/jobs/{job}"),
        format!("state/{repo}/mappings/{sid}.json"),
        format!("state/{repo}/mappings/{job}.json"),
    ]
}

fn all_exist(env: &Env, rels: &[String]) -> bool {
    rels.iter().all(|r| env.exists(r))
}

fn none_exist(env: &Env, rels: &[String]) -> bool {
    rels.iter().all(|r| !env.exists(r))
}

#[test]
fn clean_all_dry_run_displays_storage_and_changes_nothing() {
    let env = Env::new("dryrun");
    mr_session(&env, "web", "s-old", "job-old", "Completed", 60, false);
    mr_session(&env, "web", "s-new", "job-new", "Completed", 1, false);
    let before = env.snapshot();
    let o = env.run(&["clean", "--all", "--dry-run", "--all-repos"]);
    assert_eq!(o.code, 0, "{o:?}");
    // Four items per session: its record, events, DLQ and job state (mappings go with the state).
    assert!(o.stdout.contains("Before: 8 items"), "{o:?}");
    assert!(o.stdout.contains("Would remove: 4 items"), "{o:?}");
    assert!(
        o.stdout.contains("  sessions   sessions/s-old.json"),
        "{o:?}"
    );
    assert!(o.stdout.contains("After (predicted): 4 items"), "{o:?}");
    assert!(
        o.stdout
            .trim_end()
            .ends_with("Dry run: nothing was changed."),
        "{o:?}"
    );
    assert_eq!(o.stderr, "");
    assert_eq!(env.snapshot(), before);
    assert!(!env.exists("clean-audit.jsonl"));
}

#[test]
fn clean_worktrees_older_than_7d_removes_only_old_worktrees() {
    let env = Env::new("wt7d");
    let r = repo(&env, "web");
    let old = worktree(&env, &r, "web", "wt-old");
    let new = worktree(&env, &r, "web", "wt-new");
    age_tree(&old, 10 * DAY);
    age_tree(&new, 2 * DAY);
    env.old_file("events/web/job-1/events-20250101120000.jsonl", 60);
    let (o, v) = env.json(&[
        "clean",
        "--worktrees",
        "--older-than",
        "7d",
        "--all-repos",
        "--force",
        "--json",
    ]);
    assert_eq!(o.code, 0, "{o:?}");
    assert_eq!(removed_paths(&v), vec!["worktrees/web/wt-old"]);
    assert!(!old.exists() && new.exists());
    assert!(env.exists("events/web/job-1"), "other types untouched");
    // git's bookkeeping is pruned and the fully merged branch is gone; the other stays.
    let list = git(&r, &["worktree", "list", "--porcelain"]);
    assert!(
        !list.contains("wt-old") && !list.contains("prunable"),
        "{list}"
    );
    let branches = git(&r, &["branch", "--format=%(refname:short)"]);
    assert_eq!(
        branches.lines().collect::<Vec<_>>(),
        vec!["main", "prodigy-wt-new"]
    );
    assert_eq!(v["branches"]["deleted"][0]["branch"], "prodigy-wt-old");
    assert_eq!(v["branches"]["deleted"][0]["detail"], "merged into main");
}

#[test]
fn clean_sessions_older_than_30d_removes_old_session_state() {
    let env = Env::new("sess30");
    env.session("s-40", "Completed", 40, "");
    env.session("s-20", "Completed", 20, "");
    env.session("s-stale", "Running", 40, "");
    env.session("s-cancel", "Cancelled", 45, "");
    let (o, v) = env.json(&[
        "clean",
        "--sessions",
        "--older-than",
        "30d",
        "--all-repos",
        "-f",
        "--json",
    ]);
    assert_eq!(o.code, 0, "{o:?}");
    assert_eq!(
        removed_paths(&v),
        vec![
            "sessions/s-40.json",
            "sessions/s-cancel.json",
            "sessions/s-stale.json"
        ]
    );
    assert!(env.exists("sessions/s-20.json"));
}

#[test]
fn clean_logs_older_than_24h_removes_old_logs() {
    let env = Env::new("logs24");
    env.old_file("logs/web/run-1.log", 2);
    env.write("logs/web/run-2.log", "fresh\n");
    env.old_file("logs/web/agent-3/out.log", 3);
    age(&env.p("logs/web/agent-3"), 3 * DAY);
    let (o, v) = env.json(&[
        "clean",
        "--logs",
        "--older-than",
        "24h",
        "--all-repos",
        "-f",
        "--json",
    ]);
    assert_eq!(o.code, 0, "{o:?}");
    assert_eq!(
        removed_paths(&v),
        vec!["logs/web/agent-3", "logs/web/run-1.log"]
    );
    assert!(exists_or_gz(&env.p("logs/web/run-2.log")));
}

#[test]
fn clean_state_older_than_7d_removes_old_job_state_with_its_mappings() {
    let env = Env::new("state7");
    mr_session(&env, "web", "s-a", "job-a", "Completed", 10, false);
    mr_session(&env, "web", "s-b", "job-b", "Completed", 3, false);
    let (o, v) = env.json(&[
        "clean",
        "--state",
        "--older-than",
        "7d",
        "--all-repos",
        "-f",
        "--json",
    ]);
    assert_eq!(o.code, 0, "{o:?}");
    assert_eq!(
        removed_paths(&v),
        vec![
            "state/web/mappings/job-a.json",
            "state/web/mappings/s-a.json",
            "state/web/mapreduce/jobs/job-a"
        ]
    );
    assert!(
        env.exists("sessions/s-a.json") && env.exists("events/web/job-a"),
        "other types untouched"
    );
    assert!(all_exist(&env, &session_files("web", "s-b", "job-b")));
}

#[test]
fn clean_events_older_than_14d_removes_old_event_logs() {
    let env = Env::new("ev14");
    mr_session(&env, "web", "s-a", "job-a", "Completed", 20, false);
    mr_session(&env, "web", "s-b", "job-b", "Completed", 10, false);
    let (o, v) = env.json(&[
        "clean",
        "--events",
        "--older-than",
        "14d",
        "--all-repos",
        "-f",
        "--json",
    ]);
    assert_eq!(o.code, 0, "{o:?}");
    assert_eq!(removed_paths(&v), vec!["events/web/job-a"]);
    assert!(env.exists("events/web/job-b") && env.exists("dlq/web/job-a"));
}

#[test]
fn clean_dlq_older_than_30d_removes_old_dead_letter_queues() {
    let env = Env::new("dlq30");
    mr_session(&env, "web", "s-a", "job-a", "Completed", 31, false);
    mr_session(&env, "web", "s-b", "job-b", "Completed", 29, false);
    let (o, v) = env.json(&[
        "clean",
        "dlq",
        "--older-than",
        "30d",
        "--all-repos",
        "-f",
        "--json",
    ]);
    assert_eq!(o.code, 0, "{o:?}");
    assert_eq!(removed_paths(&v), vec!["dlq/web/job-a"]);
    assert!(env.exists("dlq/web/job-b"));
}

#[test]
fn clean_all_repos_cleans_every_repository_and_repo_limits_to_one() {
    let env = Env::new("repos");
    mr_session(&env, "web", "s-w", "job-w", "Completed", 40, false);
    mr_session(&env, "api", "s-a", "job-a", "Completed", 40, false);
    let (o, v) = env.json(&[
        "clean",
        "--all",
        "--older-than",
        "30d",
        "--repo",
        "api",
        "-f",
        "--json",
    ]);
    assert_eq!(o.code, 0, "{o:?}");
    assert_eq!(v["scope"], "repository api");
    assert!(none_exist(&env, &session_files("api", "s-a", "job-a")));
    assert!(all_exist(&env, &session_files("web", "s-w", "job-w")));
    let (o, v) = env.json(&[
        "clean",
        "--all",
        "--older-than",
        "30d",
        "--all-repos",
        "-f",
        "--json",
    ]);
    assert_eq!(o.code, 0, "{o:?}");
    assert_eq!(v["scope"], "all repositories");
    assert!(none_exist(&env, &session_files("web", "s-w", "job-w")));
}

#[test]
fn clean_outside_a_repository_defaults_to_all_repositories_and_says_so() {
    let env = Env::new("scope");
    mr_session(&env, "web", "s-w", "job-w", "Completed", 40, false);
    let o = env.run(&["clean", "--dry-run"]);
    assert!(
        o.stdout
            .lines()
            .next()
            .unwrap()
            .ends_with("all repositories (not inside a git repository)"),
        "{o:?}"
    );
}

#[test]
fn clean_inside_a_repository_defaults_to_that_repository() {
    let env = Env::new("scope-repo");
    let r = repo(&env, "web");
    fs::create_dir_all(r.join("sub")).unwrap();
    mr_session(&env, "web", "s-w", "job-w", "Completed", 40, false);
    mr_session(&env, "api", "s-a", "job-a", "Completed", 40, false);
    let o = env
        .cmd(&["clean", "--json", "--dry-run"])
        .current_dir(r.join("sub"))
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(
        v["scope"].as_str().unwrap().starts_with("repository web"),
        "{v}"
    );
    assert!(
        removed_paths(&v)
            .iter()
            .all(|p| !p.contains("api") && !p.contains("s-a")),
        "{v}"
    );
    assert_eq!(removed_paths(&v).len(), 6, "{v}");
}

#[test]
fn clean_never_deletes_active_sessions_regardless_of_age() {
    let env = Env::new("active");
    mr_session(&env, "web", "s-act", "job-act", "Running", 100, false);
    // The owner is this test process, alive on this host.
    let host = fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap_or_default()
        .trim()
        .to_string();
    let rec = fs::read_to_string(env.p("sessions/s-act.json"))
        .unwrap()
        .replace(
            r#""metadata":{}"#,
            &format!(
                r#""metadata":{{"owner":{{"pid":{},"hostname":"{host}","heartbeat_at":"{}"}}}}"#,
                std::process::id(),
                rfc3339_ago(100 * DAY)
            ),
        );
    fs::write(env.p("sessions/s-act.json"), rec).unwrap();
    age(&env.p("sessions/s-act.json"), 100 * DAY);
    let (o, v) = env.json(&["clean", "--older-than", "0s", "--all-repos", "-f", "--json"]);
    assert_eq!(o.code, 0, "{o:?}");
    assert_eq!(v["sessions"]["active"], 1);
    assert!(all_exist(&env, &session_files("web", "s-act", "job-act")));
    assert_eq!(
        kept_reason(&v, "sessions/s-act.json").as_deref(),
        Some("active")
    );
    assert_eq!(
        kept_reason(&v, "events/web/job-act").as_deref(),
        Some("active")
    );
}

#[test]
fn clean_protects_resumable_workflows_even_when_only_state_is_cleaned() {
    let env = Env::new("resumable");
    mr_session(&env, "web", "s-res", "job-res", "Failed", 100, true);
    mr_session(&env, "web", "s-done", "job-done", "Completed", 100, true);
    let (o, v) = env.json(&[
        "clean",
        "--state",
        "--older-than",
        "0s",
        "--all-repos",
        "-f",
        "--json",
    ]);
    assert_eq!(o.code, 0, "{o:?}");
    assert!(all_exist(&env, &session_files("web", "s-res", "job-res")));
    let why = &v["kept"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["path"] == "state/web/mapreduce/jobs/job-res")
        .unwrap()["detail"];
    assert!(
        why.as_str()
            .unwrap()
            .contains("map-checkpoint-20250101120000.json parses"),
        "{why}"
    );
    // A completed session is never resumable, checkpoint or not.
    assert!(!env.exists("state/web/mapreduce/jobs/job-done"));
}

#[test]
fn dry_run_shows_usage_and_reclaim_estimate_that_the_real_run_matches() {
    let env = Env::new("estimate");
    for i in 0..5 {
        mr_session(
            &env,
            "web",
            &format!("s-{i}"),
            &format!("job-{i}"),
            if i % 2 == 0 { "Completed" } else { "Failed" },
            40,
            i == 3,
        );
    }
    let (_, dry) = env.json(&["clean", "--all-repos", "--json", "--dry-run"]);
    let (o, real) = env.json(&["clean", "--all-repos", "--json", "--force"]);
    assert_eq!(o.code, 0, "{o:?}");
    assert_eq!(dry["dry_run"], true);
    assert_eq!(real["dry_run"], false);
    assert_eq!(removed_paths(&dry), removed_paths(&real));
    assert_eq!(dry["totals"], real["totals"]);
    assert_eq!(dry["after"], real["after"]);
    assert!(dry["totals"]["removed_bytes"].as_u64().unwrap() > 0);
    assert_eq!(removed_paths(&real).len(), 4 * 6);
}

#[test]
fn without_a_terminal_clean_refuses_unless_forced() {
    let env = Env::new("force");
    mr_session(&env, "web", "s-1", "job-1", "Completed", 40, false);
    let before = env.snapshot();
    let o = env.run(&["clean", "--all-repos"]);
    assert_eq!(o.code, 3, "{o:?}");
    assert_eq!(o.stdout, "");
    assert!(
        o.stderr.contains("4 items")
            && o.stderr.contains("add --force to remove them or --dry-run"),
        "{o:?}"
    );
    // A refused run changes nothing, not even the clean lock's file.
    assert_eq!(env.snapshot(), before);
    assert!(!env.exists("resume_locks"));
    let o = env.run(&["clean", "--all-repos", "-f", "-q"]);
    assert_eq!(
        (o.code, o.stdout.as_str(), o.stderr.as_str()),
        (0, "", ""),
        "quiet success for cron"
    );
    assert!(none_exist(&env, &session_files("web", "s-1", "job-1")));
    // Nothing to do needs no confirmation.
    let o = env.run(&["clean", "--all-repos"]);
    assert_eq!(o.code, 0, "{o:?}");
}

#[test]
fn statistics_are_shown_before_and_after() {
    let env = Env::new("stats");
    mr_session(&env, "web", "s-1", "job-1", "Completed", 40, false);
    mr_session(&env, "api", "s-2", "job-2", "Completed", 1, false);
    let o = env.run(&["clean", "--all-repos", "-f"]);
    assert_eq!(o.code, 0, "{o:?}");
    let lines: Vec<&str> = o.stdout.lines().collect();
    assert!(
        lines.iter().any(|l| l.starts_with("Before: 8 items")),
        "{o:?}"
    );
    assert!(
        lines.iter().any(|l| l.starts_with("Removed: 4 items")),
        "{o:?}"
    );
    assert!(
        lines.iter().any(|l| l.starts_with("After: 4 items")),
        "{o:?}"
    );
    assert!(
        lines.iter().any(|l| l.starts_with("  repo api ")),
        "per repository with several: {o:?}"
    );
    let (_, v) = env.json(&["clean", "--all-repos", "--json", "--dry-run"]);
    assert_eq!(v["before"]["types"]["sessions"]["items"], 1);
    assert_eq!(v["before"]["repositories"]["api"]["items"], 4);
}

#[test]
fn errors_name_the_problem_and_what_to_do() {
    let env = Env::new("errors");
    let o = env
        .cmd(&["clean"])
        .env("PRODIGY_HOME", "relative/dir")
        .output()
        .unwrap();
    let o = Out::from(o);
    assert_eq!(o.code, 2);
    assert_eq!(
        o.stderr,
        "prodigy: PRODIGY_HOME must be an absolute path, not `relative/dir`\n"
    );
    let o = env.run(&["clean", "--older-than", "7y"]);
    assert_eq!(o.code, 2);
    assert_eq!(
        o.stderr,
        "prodigy: --older-than: invalid duration `7y`: unknown unit; expected a whole number followed by s, m, h, d or w (90s, 30m, 24h, 7d, 2w; 0s = no age limit)\n"
    );
    let o = env.run(&["clean", "--frobnicate"]);
    assert_eq!(o.code, 2);
    assert!(
        o.stderr
            .starts_with("prodigy: invalid option '--frobnicate'"),
        "{o:?}"
    );
    let o = env.run(&["clean", "--older-than", "-1d"]);
    assert!(o.stderr.contains("negative"), "{o:?}");
}

#[test]
fn every_removal_is_logged_in_the_audit_log() {
    let env = Env::new("audit");
    mr_session(&env, "web", "s-1", "job-1", "Completed", 40, false);
    let (_, v) = env.json(&["clean", "--all-repos", "-f", "--json"]);
    let log = fs::read_to_string(env.p("clean-audit.jsonl")).unwrap();
    let lines: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), v["removed"].as_array().unwrap().len());
    for l in &lines {
        assert_eq!(l["action"], "remove");
        for k in ["time", "type", "path", "bytes", "reason"] {
            assert!(!l[k].is_null(), "{k} in {l}");
        }
    }
    assert!(lines.iter().any(|l| l["path"] == "sessions/s-1.json"));
    // The audit log itself is never cleaned.
    age(&env.p("clean-audit.jsonl"), 400 * DAY);
    env.run(&["clean", "--all-repos", "-f", "--older-than", "0s"]);
    assert!(env.exists("clean-audit.jsonl"));
}

#[test]
fn a_full_audit_log_is_rotated_once_and_the_new_lines_follow() {
    let env = Env::new("audit-rotate");
    mr_session(&env, "web", "s-1", "job-1", "Completed", 40, false);
    // 4 MiB + 1 byte of earlier lines: over the limit, so this run starts a new log.
    let old = format!("{}\n", "x".repeat((4 << 20) as usize));
    fs::write(env.p("clean-audit.jsonl"), &old).unwrap();
    let (o, v) = env.json(&["clean", "--all-repos", "-f", "--json"]);
    assert_eq!((o.code, o.stderr.as_str()), (0, ""), "{v}");
    let removed = v["removed"].as_array().unwrap().len();
    assert!(removed >= 2, "{v}");
    assert_eq!(
        fs::read_to_string(env.p("clean-audit.jsonl.1")).unwrap(),
        old
    );
    let log = fs::read_to_string(env.p("clean-audit.jsonl")).unwrap();
    assert_eq!(log.lines().count(), removed, "{log}");
    assert!(log
        .lines()
        .all(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["action"] == "remove"));
}

#[test]
fn worktree_clean_keeps_working_with_0_4_4_wording() {
    let env = Env::new("wtcompat");
    let r = repo(&env, "web");
    let a = worktree(&env, &r, "web", "session-a");
    let b = worktree(&env, &r, "web", "session-b");
    fs::write(b.join("wip.txt"), "uncommitted").unwrap();
    let o = env.run(&["worktree", "clean"]);
    assert_eq!(o.code, 2);
    assert!(
        o.stderr
            .contains("`prodigy worktree clean NAME`, or `--all`"),
        "{o:?}"
    );
    let o = env.run(&["worktree", "clean", "session-a", "--dry-run", "--all-repos"]);
    assert_eq!(o.code, 0, "{o:?}");
    assert!(
        o.stdout
            .contains("DRY RUN: Would remove worktree: session-a\n"),
        "{o:?}"
    );
    assert!(a.exists());
    let o = env.run(&["worktree", "clean", "--all", "--all-repos", "--dry-run"]);
    assert!(
        o.stdout.contains("Would remove worktree: session-a")
            && !o.stdout.contains("Would remove worktree: session-b"),
        "{o:?}"
    );
    // -f keeps its 0.4.4 meaning: remove even with uncommitted changes.
    let o = env.run(&["worktree", "clean", "-f", "--all", "--all-repos"]);
    assert_eq!(o.code, 0, "{o:?}");
    assert!(
        o.stdout.contains("Removing worktree: session-a\n")
            && o.stdout.contains("Removing worktree: session-b\n"),
        "{o:?}"
    );
    assert!(!a.exists() && !b.exists());
    let o = env.run(&["worktree", "clean", "nope", "--all-repos"]);
    assert_eq!(o.code, 2, "{o:?}");
    assert!(o.stderr.contains("no worktree named `nope`"), "{o:?}");
}

#[test]
fn uncommitted_worktrees_are_kept_unless_discarding_changes() {
    let env = Env::new("discard");
    let r = repo(&env, "web");
    let w = worktree(&env, &r, "web", "wt");
    fs::write(w.join("wip.txt"), "x").unwrap();
    fs::write(w.join("README.md"), "changed\n").unwrap();
    age_tree(&w, 30 * DAY);
    let (o, v) = env.json(&["clean", "--worktrees", "--all-repos", "-f", "--json"]);
    assert_eq!(o.code, 0, "{o:?}");
    assert_eq!(
        kept_reason(&v, "worktrees/web/wt").as_deref(),
        Some("uncommitted")
    );
    assert!(w.join("wip.txt").exists());
    let (o, v) = env.json(&[
        "clean",
        "--worktrees",
        "--all-repos",
        "-f",
        "--discard-changes",
        "--json",
    ]);
    assert_eq!(o.code, 0, "{o:?}");
    assert_eq!(removed_paths(&v), vec!["worktrees/web/wt"]);
    assert!(!w.exists());
    assert!(!git(&r, &["worktree", "list", "--porcelain"]).contains("prunable"));
}

#[test]
fn progress_is_silent_when_stderr_is_not_a_terminal() {
    let env = Env::new("progress");
    mr_session(&env, "web", "s-1", "job-1", "Completed", 40, false);
    let o = env.run(&["clean", "--all-repos", "-f"]);
    assert_eq!((o.code, o.stderr.as_str()), (0, ""), "{o:?}");
}

#[test]
fn help_lists_every_flag_and_the_exit_codes() {
    let env = Env::new("help");
    let o = env.run(&["clean", "--help"]);
    assert_eq!(o.code, 0);
    for f in [
        "--all",
        "--worktrees",
        "--sessions",
        "--logs",
        "--state",
        "--events",
        "--dlq",
        "--older-than DURATION",
        "--all-repos",
        "--repo NAME",
        "--dry-run",
        "--force",
        "--discard-changes",
        "--json",
        "--quiet",
    ] {
        assert!(o.stdout.contains(f), "{f}");
    }
    assert!(o.stdout.contains("  3  refused"), "{o:?}");
    assert_eq!(
        env.run(&["--version"]).stdout,
        format!("prodigy {}\n", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn an_interrupted_runs_trash_is_emptied_by_the_next_real_run() {
    let env = Env::new("trash");
    env.write(".trash/999-0/events-x.jsonl", "{}\n");
    env.session("s-new", "Completed", 1, "");
    let o = env.run(&["clean", "--all-repos", "--dry-run"]);
    assert_eq!(o.code, 0, "{o:?}");
    assert!(
        env.exists(".trash/999-0/events-x.jsonl"),
        "a dry run leaves it"
    );
    let o = env.run(&["clean", "--all-repos", "--force"]);
    assert_eq!(o.code, 0, "{o:?}");
    assert!(
        o.stdout
            .contains("warning: finished removing 1 items an interrupted clean left in .trash"),
        "{o:?}"
    );
    assert!(!env.exists(".trash/999-0"));
    assert!(env.exists("sessions/s-new.json"));
}
