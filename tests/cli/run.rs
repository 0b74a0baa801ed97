//! `prodigy run` end to end: real git repositories, real child processes, a stub `claude` on
//! PATH, a temporary PRODIGY_HOME. Each test pins exit status, output and the files left.

use crate::common::*;
use serde_json::Value;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A repository `work` with a committed README and an identity in its config (the merges that
/// prodigy makes, and the steps' commits, use it), plus a `bin/` with a stub `claude` first on
/// PATH. The stub logs its argv and `PRODIGY_*` environment to `claude.log`, one line per call.
struct Run {
    env: Env,
    repo: PathBuf,
    bin: PathBuf,
}

fn setup(name: &str) -> Option<Run> {
    if !have("git", name) {
        return None;
    }
    let mut env = Env::new(name);
    let repo = repo(&env, "work");
    git(&repo, &["config", "user.name", "Test"]);
    git(&repo, &["config", "user.email", "test@example.com"]);
    git(&repo, &["config", "commit.gpgsign", "false"]);
    let bin = env.dir.join("bin");
    fs::create_dir_all(&bin).unwrap();
    let log = env.dir.join("claude.log");
    let stub = format!(
        "#!/bin/sh\nif [ \"$1\" = --version ]; then echo 'stub-claude 1.0'; exit 0; fi\nprintf '%s|' \"$@\" >> '{}'\nprintf 'AUTOMATION=%s STREAMING=%s\\n' \"$PRODIGY_AUTOMATION\" \"$PRODIGY_CLAUDE_STREAMING\" >> '{}'\necho '{{\"type\":\"result\"}}'\n",
        log.display(),
        log.display()
    );
    let claude = bin.join("claude");
    fs::write(&claude, stub).unwrap();
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(&claude, fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    env.extra_env.push(("PATH".into(), path));
    Some(Run { env, repo, bin })
}

impl Run {
    fn write_workflow(&self, name: &str, text: &str) -> PathBuf {
        let p = self.env.dir.join(name);
        fs::write(&p, text).unwrap();
        p
    }

    /// `prodigy run FILE ARGS…` in the repository.
    fn run(&self, wf: &Path, args: &[&str]) -> Out {
        let mut a = vec!["run", wf.to_str().unwrap()];
        a.extend_from_slice(args);
        Out::from(
            self.env
                .cmd(&a)
                .current_dir(&self.repo)
                .output()
                .expect("run prodigy"),
        )
    }

    fn json(&self, rel: &str) -> Value {
        let p = self.env.p(rel);
        serde_json::from_slice(&fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display())))
            .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
    }

    /// Every `sessions/*.json`, parsed.
    fn sessions(&self) -> Vec<Value> {
        let d = self.env.p("sessions");
        let mut v: Vec<Value> = fs::read_dir(&d)
            .map(|rd| {
                rd.flatten()
                    .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
                    .map(|e| serde_json::from_slice(&fs::read(e.path()).unwrap()).unwrap())
                    .collect()
            })
            .unwrap_or_default();
        v.sort_by_key(|s| s["id"].as_str().unwrap_or("").to_string());
        v
    }

    fn only_session(&self) -> Value {
        let s = self.sessions();
        assert_eq!(s.len(), 1, "{s:?}");
        s.into_iter().next().unwrap()
    }

    /// Event lines of a job, parsed, in file order.
    fn events(&self, job: &str) -> Vec<Value> {
        let d = self.env.p(&format!("events/work/{job}"));
        let mut out = Vec::new();
        let mut files: Vec<_> = fs::read_dir(&d)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .collect();
        files.sort();
        for f in files {
            for l in fs::read_to_string(&f).unwrap().lines() {
                out.push(serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")));
            }
        }
        out
    }

    fn count(&self, job: &str, ty: &str) -> usize {
        self.events(job)
            .iter()
            .filter(|e| e["event_type"] == ty)
            .count()
    }
}

fn log(repo: &Path) -> String {
    git(repo, &["log", "--format=%s", "main"])
}

fn no_running_session(r: &Run) {
    for s in r.sessions() {
        assert_ne!(s["status"], "Running", "{s}");
    }
}

const STANDARD: &str = r#"
name: std-test
commands:
  - shell: echo first-output
    capture_output: true
  - shell: |
      echo "${shell.output} ${workflow.name} ${NAME}" > out.txt
      git add out.txt && git commit -q -m "step two"
    commit_required: true
  - claude: "/prodigy-lint ${NAME}"
"#;

#[test]
fn standard_workflow_runs_in_a_worktree_checkpoints_every_step_and_merges_with_yes() {
    let Some(r) = setup("run-standard") else {
        return;
    };
    let wf = r.write_workflow("std.yml", STANDARD);
    let o = r.run(&wf, &["-y", "--arg", "NAME=world"]);
    assert_eq!(o.code, 0, "{o:?}");
    assert!(
        o.stdout.contains(": completed (every step succeeded)"),
        "{o:?}"
    );
    assert!(o.stdout.contains("branch: merged"), "{o:?}");
    assert_eq!(o.stderr, "", "{o:?}");
    // The user's branch got the step's commit through a --no-ff merge; its checkout the file.
    assert_eq!(
        fs::read_to_string(r.repo.join("out.txt")).unwrap(),
        "first-output std-test world\n"
    );
    let l = log(&r.repo);
    assert!(l.starts_with("Merge prodigy-session-"), "{l}");
    assert!(l.contains("step two"), "{l}");
    // The session record is the checkpoint.
    let s = r.only_session();
    let id = s["id"].as_str().unwrap().to_string();
    assert!(id.starts_with("session-"), "{id}");
    assert_eq!(s["status"], "Completed");
    assert_eq!(s["session_type"], "Workflow");
    assert!(s["completed_at"].is_string());
    assert!(s["metadata"].get("owner").is_none(), "{s}");
    let w = &s["workflow_data"];
    assert_eq!(w["workflow_name"], "std-test");
    assert_eq!(w["completed_steps"], serde_json::json!([0, 1, 2]));
    assert_eq!(w["current_step"], 3);
    assert_eq!(w["variables"]["shell.output"], "first-output");
    assert_eq!(w["workflow_hash"].as_str().unwrap().len(), 16);
    assert_eq!(s["checkpoints"].as_array().unwrap().len(), 1);
    let wt = &s["metadata"]["worktree"];
    assert_eq!(wt["original_branch"], "main");
    assert_eq!(wt["branch"], format!("prodigy-{id}"));
    assert_eq!(
        Path::new(wt["repository"].as_str().unwrap()),
        r.repo.canonicalize().unwrap()
    );
    // Merged: the worktree and its branch are gone, git has nothing prunable.
    assert!(!r.env.exists(&format!("worktrees/work/{id}")));
    let branches = git(&r.repo, &["branch", "--format=%(refname:short)"]);
    assert_eq!(branches.trim(), "main");
    assert!(!git(&r.repo, &["worktree", "list", "--porcelain"]).contains("prunable"));
    // The mapping (one file: the job id is the session id), logs, events, no lock left.
    let m = r.json(&format!("state/work/mappings/{id}.json"));
    assert_eq!(m["job_id"], id.as_str());
    assert!(r.env.exists(&format!("logs/work/{id}/steps.log")));
    assert_eq!(
        fs::read_dir(r.env.p("resume_locks")).unwrap().count(),
        0,
        "the resume lock is released and removed"
    );
    assert_eq!(r.count(&id, "job_started"), 1);
    assert_eq!(r.count(&id, "checkpoint_created"), 3);
    assert_eq!(r.count(&id, "job_completed"), 1);
    // Claude ran in 0.4.4's streaming mode, with the prompt as one argument.
    let c = fs::read_to_string(r.env.dir.join("claude.log")).unwrap();
    assert_eq!(
        c,
        "--output-format|stream-json|--verbose|--dangerously-skip-permissions|/prodigy-lint world|AUTOMATION=true STREAMING=\n"
    );
    let _ = &r.bin;
}

#[test]
fn standard_workflow_stops_at_the_failing_step_and_stays_resumable() {
    let Some(r) = setup("run-std-fail") else {
        return;
    };
    let wf = r.write_workflow(
        "fail.yml",
        "- shell: echo one\n- shell: echo two\n- shell: exit 7\n- shell: echo four > four.txt\n",
    );
    let o = r.run(&wf, &["-y"]);
    assert_eq!(o.code, 1, "{o:?}");
    assert!(
        o.stdout
            .contains("failed (step 3 (shell: exit 7) failed: exit status 7)"),
        "{o:?}"
    );
    let s = r.only_session();
    assert_eq!(s["status"], "Failed");
    assert_eq!(
        s["workflow_data"]["completed_steps"],
        serde_json::json!([0, 1])
    );
    assert_eq!(s["workflow_data"]["current_step"], 2);
    // Not merged, worktree kept for the resume; the fourth step never ran.
    let id = s["id"].as_str().unwrap();
    let wt = r.env.p(&format!("worktrees/work/{id}"));
    assert!(wt.is_dir());
    assert!(!wt.join("four.txt").exists());
    assert!(!r.repo.join("four.txt").exists());
    // clean and sessions see it as resumable.
    let (o, v) = r.env.json(&["sessions", "ls", "--all-repos", "--json"]);
    assert_eq!(o.code, 0, "{o:?}");
    assert_eq!(v["sessions"][0]["class"], "resumable", "{v}");
}

fn mapreduce_workflow(items: usize, fail: &[usize]) -> String {
    let items_json: Vec<String> = (1..=items)
        .map(|i| {
            format!(
                r#"{{"id": "it{i}", "n": {i}, "meta": {{"fail": {}}}}}"#,
                fail.contains(&i)
            )
        })
        .collect();
    format!(
        r#"name: mr-test
mode: mapreduce
setup:
  - shell: |
      cat > items.json <<'EOF'
      {{"items": [{}]}}
      EOF
      git add items.json && git commit -q -m "setup: items"
    commit_required: true
map:
  input: items.json
  json_path: "$.items[*]"
  max_parallel: 3
  agent_template:
    - shell: |
        test "${{item.meta.fail}}" = false || {{ echo "item ${{item_id}} fails" >&2; exit 3; }}
        echo "${{item.n}}" > "out-${{item_id}}.txt"
        git add "out-${{item_id}}.txt" && git commit -q -m "agent ${{item_id}}"
      commit_required: true
reduce:
  - shell: |
      echo "${{map.successful}}/${{map.total}} failed=${{map.failed}}" > summary.txt
      git add summary.txt && git commit -q -m "reduce: summary"
    commit_required: true
"#,
        items_json.join(", ")
    )
}

#[test]
fn mapreduce_runs_items_in_parallel_merges_successes_and_queues_failures() {
    let Some(r) = setup("run-mr") else { return };
    let wf = r.write_workflow("mr.yml", &mapreduce_workflow(8, &[3, 6]));
    let o = r.run(&wf, &["-y", "--json"]);
    assert_eq!(o.code, 1, "{o:?}");
    let v: Value = serde_json::from_str(&o.stdout).unwrap_or_else(|e| panic!("{e}: {o:?}"));
    assert_eq!(v["status"], "completed");
    assert_eq!(v["total"], 8);
    assert_eq!(v["completed"], 6);
    assert_eq!(v["failed"], 2);
    assert_eq!(v["merge"], "merged");
    assert_eq!(v["exit"], 1);
    let job = v["job_id"].as_str().unwrap().to_string();
    let sid = v["session_id"].as_str().unwrap().to_string();
    assert_eq!(sid, format!("session-{job}"));
    assert!(job.starts_with("mapreduce-"), "{job}");

    // The merged result on main: setup, six agents (each once), reduce.
    for i in [1, 2, 4, 5, 7, 8] {
        assert_eq!(
            fs::read_to_string(r.repo.join(format!("out-it{i}.txt"))).unwrap(),
            format!("{i}\n")
        );
    }
    for i in [3, 6] {
        assert!(!r.repo.join(format!("out-it{i}.txt")).exists());
    }
    assert_eq!(
        fs::read_to_string(r.repo.join("summary.txt")).unwrap(),
        "6/8 failed=2\n"
    );
    let l = log(&r.repo);
    for i in [1, 2, 4, 5, 7, 8] {
        assert_eq!(
            l.lines().filter(|x| *x == format!("agent it{i}")).count(),
            1,
            "{l}"
        );
        assert_eq!(
            l.lines()
                .filter(|x| x.starts_with(&format!("Merge agent prodigy-agent-{job}-it{i} ")))
                .count(),
            1,
            "{l}"
        );
    }
    assert_eq!(l.lines().filter(|x| *x == "setup: items").count(), 1);
    assert_eq!(l.lines().filter(|x| *x == "reduce: summary").count(), 1);

    // Storage: session, mappings (both), job state, checkpoints, DLQ, events.
    let s = r.only_session();
    assert_eq!(s["id"], sid.as_str());
    assert_eq!(s["session_type"], "MapReduce");
    assert_eq!(s["status"], "Completed");
    assert_eq!(s["mapreduce_data"]["job_id"], job.as_str());
    assert_eq!(s["mapreduce_data"]["total_items"], 8);
    assert_eq!(s["mapreduce_data"]["failed_items"], 2);
    let m1 = fs::read(r.env.p(&format!("state/work/mappings/{sid}.json"))).unwrap();
    let m2 = fs::read(r.env.p(&format!("state/work/mappings/{job}.json"))).unwrap();
    assert_eq!(m1, m2);
    let js = r.json(&format!("state/work/mapreduce/jobs/{job}/job-state.json"));
    assert_eq!(js["phase"], "complete");
    assert_eq!(js["status"], "completed");
    assert_eq!(js["completed_items"], 6);
    assert_eq!(js["failed_items"], 2);
    let setup_cp = r.json(&format!(
        "state/work/mapreduce/jobs/{job}/setup-checkpoint.json"
    ));
    assert_eq!(setup_cp["completed"], true);
    let jobdir = r.env.p(&format!("state/work/mapreduce/jobs/{job}"));
    let names: Vec<String> = fs::read_dir(&jobdir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    let maps: Vec<&String> = names
        .iter()
        .filter(|n| n.starts_with("map-checkpoint-"))
        .collect();
    assert!(!maps.is_empty() && maps.len() <= 3, "{names:?}");
    // One reduce checkpoint per second of the reduce phase (a slow machine crosses a second
    // boundary), the newest three kept (run.md §5.3), as for map checkpoints above.
    let reduces = names
        .iter()
        .filter(|n| n.starts_with("reduce-checkpoint-v1-"))
        .count();
    assert!((1..=3).contains(&reduces), "{names:?}");
    let mut newest = maps.clone();
    newest.sort();
    let cp = r.json(&format!(
        "state/work/mapreduce/jobs/{job}/{}",
        newest.last().unwrap()
    ));
    assert_eq!(cp["completed_items"].as_array().unwrap().len(), 6);
    assert_eq!(cp["failed_items"].as_array().unwrap().len(), 2);
    assert_eq!(cp["pending_items"].as_array().unwrap().len(), 0);
    assert_eq!(cp["in_progress_items"].as_object().unwrap().len(), 0);
    let dlq = r.json(&format!("dlq/work/{job}/dlq-items.json"));
    let mut ids: Vec<&str> = dlq["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["item_id"].as_str().unwrap())
        .collect();
    ids.sort();
    assert_eq!(ids, ["it3", "it6"]);
    for it in dlq["items"].as_array().unwrap() {
        assert_eq!(it["failure_history"].as_array().unwrap().len(), 1);
        let err = it["failure_history"][0]["error"].as_str().unwrap();
        assert!(err.contains("exit status 3"), "{err}");
        assert_eq!(it["work_item"]["meta"]["fail"], true);
        // The failed agent's worktree is kept for inspection, beside the session worktree.
        let id = it["item_id"].as_str().unwrap();
        assert_eq!(
            it["worktree_path"],
            r.env
                .p(&format!("worktrees/work/{sid}.agent-{id}"))
                .to_str()
                .unwrap(),
            "{it}"
        );
        assert!(
            Path::new(it["worktree_path"].as_str().unwrap()).is_dir(),
            "{it}"
        );
    }
    assert_eq!(r.count(&job, "job_started"), 1);
    assert_eq!(r.count(&job, "setup_completed"), 1);
    assert_eq!(r.count(&job, "agent_started"), 8);
    assert_eq!(r.count(&job, "agent_completed"), 6);
    assert_eq!(r.count(&job, "agent_failed"), 2);
    assert_eq!(r.count(&job, "dlq_item_added"), 2);
    assert_eq!(r.count(&job, "reduce_step_completed"), 1);
    assert_eq!(r.count(&job, "job_completed"), 1);
    // Merged agents: worktrees and branches gone; failed ones: kept (branch and worktree); the
    // merged session: worktree and branch gone, also with items failed (run.md §4).
    let branches = git(&r.repo, &["branch", "--format=%(refname:short)"]);
    let mut b: Vec<&str> = branches.lines().collect();
    b.sort();
    assert_eq!(
        b,
        [
            "main".to_string(),
            format!("prodigy-agent-{job}-it3"),
            format!("prodigy-agent-{job}-it6"),
        ]
    );
    assert!(!r.env.p(&format!("worktrees/work/{sid}")).exists());
    assert!(r.env.p(&format!("logs/work/{job}/agent-it3.log")).is_file());
    assert!(
        fs::read_to_string(r.env.p(&format!("logs/work/{job}/agent-it3.log")))
            .unwrap()
            .contains("item it3 fails")
    );
    // The readers agree: checkpoints verify passes, dlq show lists both, nothing is Running.
    let o = r.env.run(&["checkpoints", "verify", "--all-repos"]);
    assert_eq!(o.code, 0, "{o:?}");
    let o = r.env.run(&["dlq", "show", &job]);
    assert_eq!(o.code, 0, "{o:?}");
    assert!(
        o.stdout.contains("it3") && o.stdout.contains("it6"),
        "{o:?}"
    );
    no_running_session(&r);
}

#[test]
fn a_merge_conflict_between_two_agents_fails_exactly_one_item() {
    let Some(r) = setup("run-conflict") else {
        return;
    };
    let wf = r.write_workflow(
        "conflict.yml",
        r#"name: conflict
mode: mapreduce
setup: []
map:
  input: "printf 'a\nb\n'"
  max_parallel: 2
  agent_template:
    - shell: |
        echo "written by ${item}" > same.txt
        git add same.txt && git commit -q -m "agent ${item}"
      commit_required: true
"#,
    );
    let o = r.run(&wf, &["-y", "--json"]);
    assert_eq!(o.code, 1, "{o:?}");
    let v: Value = serde_json::from_str(&o.stdout).unwrap();
    assert_eq!(v["completed"], 1, "{v}");
    assert_eq!(v["failed"], 1, "{v}");
    let job = v["job_id"].as_str().unwrap();
    let dlq = r.json(&format!("dlq/work/{job}/dlq-items.json"));
    assert_eq!(dlq["items"].as_array().unwrap().len(), 1);
    let err = dlq["items"][0]["failure_history"][0]["error"]
        .as_str()
        .unwrap();
    assert!(err.contains("merge of"), "{err}");
    // The session branch was merged (not mid-merge: a merge left half done would have
    // stopped that) and its worktree removed; the item whose merge conflicted has its worktree
    // beside it, on its branch, and the main checkout has the other agent's file.
    assert_eq!(v["merge"], "merged", "{v}");
    let sid = v["session_id"].as_str().unwrap();
    assert!(!r.env.p(&format!("worktrees/work/{sid}")).exists());
    let item = dlq["items"][0]["item_id"].as_str().unwrap();
    let beside = r.env.p(&format!("worktrees/work/{sid}.agent-{item}"));
    assert_eq!(dlq["items"][0]["worktree_path"], beside.to_str().unwrap());
    assert_eq!(
        git(&beside, &["log", "-1", "--format=%s"]).trim(),
        format!("agent {}", dlq["items"][0]["work_item"].as_str().unwrap())
    );
    assert_eq!(git(&r.repo, &["status", "--porcelain"]), "");
    let content = fs::read_to_string(r.repo.join("same.txt")).unwrap();
    assert!(
        content == "written by a\n" || content == "written by b\n",
        "{content}"
    );
}

#[test]
fn a_step_timeout_kills_its_whole_process_group() {
    let Some(r) = setup("run-timeout") else {
        return;
    };
    let marker = r.env.dir.join("grandchild.pid");
    let wf = r.write_workflow(
        "t.yml",
        &format!(
            "- shell: \"sleep 300 & echo $! > {}; wait\"\n  timeout: 1\n",
            marker.display()
        ),
    );
    let t = Instant::now();
    let o = r.run(&wf, &[]);
    assert_eq!(o.code, 1, "{o:?}");
    assert!(t.elapsed() < Duration::from_secs(20), "{:?}", t.elapsed());
    assert!(o.stdout.contains("timed out after 1s"), "{o:?}");
    let pid: i32 = fs::read_to_string(&marker).unwrap().trim().parse().unwrap();
    // The `sleep` grandchild is gone (not merely orphaned).
    let deadline = Instant::now() + Duration::from_secs(5);
    while Path::new(&format!("/proc/{pid}")).exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let alive = fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| !s.contains(") Z "))
        .unwrap_or(false);
    assert!(!alive, "grandchild {pid} survived the timeout");
}

/// Start `prodigy run` in the background with its own process group (so a test can signal it
/// alone), stdout and stderr to files.
fn spawn_run(r: &Run, wf: &Path, args: &[&str]) -> std::process::Child {
    let mut a = vec!["run", wf.to_str().unwrap()];
    a.extend_from_slice(args);
    let mut c = r.env.cmd(&a);
    c.current_dir(&r.repo)
        .stdout(fs::File::create(r.env.dir.join("bg.out")).unwrap())
        .stderr(fs::File::create(r.env.dir.join("bg.err")).unwrap());
    use std::os::unix::process::CommandExt;
    c.process_group(0);
    c.spawn().unwrap()
}

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn slow_mapreduce(started_dir: &Path) -> String {
    format!(
        r#"name: slow
mode: mapreduce
setup: []
map:
  input: "seq 1 6"
  max_parallel: 2
  agent_template:
    - shell: |
        touch {}/started-${{item}}
        sleep 30
        echo ${{item}} > f-${{item}}.txt && git add . && git commit -q -m "agent ${{item}}"
"#,
        started_dir.display()
    )
}

#[test]
fn sigint_pauses_the_run_with_a_parseable_resumable_session_and_exit_130() {
    let Some(r) = setup("run-sigint") else { return };
    let started = r.env.dir.join("started");
    fs::create_dir_all(&started).unwrap();
    let wf = r.write_workflow("slow.yml", &slow_mapreduce(&started));
    let mut child = spawn_run(&r, &wf, &["-y"]);
    wait_for("two agents", || {
        fs::read_dir(&started).unwrap().count() >= 2
    });
    let t = Instant::now();
    unsafe_kill(child.id() as i32, 2);
    let status = child.wait().unwrap();
    assert_eq!(
        status.code(),
        Some(130),
        "{}",
        fs::read_to_string(r.env.dir.join("bg.err")).unwrap()
    );
    assert!(t.elapsed() < Duration::from_secs(15), "{:?}", t.elapsed());
    let s = r.only_session();
    assert_eq!(s["status"], "Paused", "{s}");
    let job = s["mapreduce_data"]["job_id"].as_str().unwrap().to_string();
    let js = r.json(&format!("state/work/mapreduce/jobs/{job}/job-state.json"));
    assert_eq!(js["status"], "paused");
    assert_eq!(js["phase"], "map");
    // The last map checkpoint lists the interrupted items and the pending ones.
    let mut names: Vec<String> = fs::read_dir(r.env.p(&format!("state/work/mapreduce/jobs/{job}")))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("map-checkpoint-"))
        .collect();
    names.sort();
    let cp = r.json(&format!(
        "state/work/mapreduce/jobs/{job}/{}",
        names.last().unwrap()
    ));
    assert_eq!(
        cp["in_progress_items"].as_object().unwrap().len(),
        2,
        "{cp}"
    );
    assert_eq!(cp["pending_items"].as_array().unwrap().len(), 4, "{cp}");
    assert_eq!(r.count(&job, "job_paused"), 1);
    assert_eq!(fs::read_dir(r.env.p("resume_locks")).unwrap().count(), 0);
    // Nothing was merged into the user's branch; clean sees a resumable session.
    assert_eq!(log(&r.repo).trim(), "init");
    let (o, v) = r.env.json(&["sessions", "ls", "--all-repos", "--json"]);
    assert_eq!(o.code, 0, "{o:?}");
    assert_eq!(v["sessions"][0]["class"], "resumable", "{v}");
}

fn unsafe_kill(pid: i32, sig: i32) {
    // `--` always: procps `kill` reads a negative pid after a signal as the signal.
    let ok = Command::new("kill")
        .args(["-s", &sig.to_string(), "--", &pid.to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok);
}

#[test]
fn clean_during_a_run_removes_nothing_of_it() {
    let Some(r) = setup("run-clean") else { return };
    let started = r.env.dir.join("started");
    fs::create_dir_all(&started).unwrap();
    let wf = r.write_workflow("slow.yml", &slow_mapreduce(&started));
    let mut child = spawn_run(&r, &wf, &["-y"]);
    wait_for("two agents", || {
        fs::read_dir(&started).unwrap().count() >= 2
    });
    let before = r.env.snapshot();
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
    let after = r.env.snapshot();
    for p in &before {
        assert!(
            after.contains(p) || p.contains("checkpoint") || p.ends_with(".out"),
            "clean removed {p}"
        );
    }
    let (o, v) = r.env.json(&["sessions", "ls", "--all-repos", "--json"]);
    assert_eq!(o.code, 0, "{o:?}");
    assert_eq!(v["sessions"][0]["class"], "active", "{v}");
    unsafe_kill(child.id() as i32, 15);
    assert_eq!(child.wait().unwrap().code(), Some(143));
    assert_eq!(r.only_session()["status"], "Paused");
}

#[test]
fn every_example_workflow_runs() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/workflows");
    let mut n = 0;
    for e in fs::read_dir(&dir).unwrap().flatten() {
        let p = e.path();
        if p.extension().and_then(|x| x.to_str()) != Some("yml") {
            continue;
        }
        let name = format!("run-example-{}", p.file_stem().unwrap().to_string_lossy());
        let Some(r) = setup(&name) else { return };
        let o = r.run(&p, &["-y"]);
        assert_eq!(o.code, 0, "{}: {o:?}", p.display());
        assert!(
            o.stdout.contains("branch: merged"),
            "{}: {o:?}",
            p.display()
        );
        assert!(r.repo.join("prodigy-demo").is_dir(), "{}", p.display());
        no_running_session(&r);
        n += 1;
    }
    assert!(
        n >= 2,
        "expected the standard and MapReduce examples in {}",
        dir.display()
    );
}

#[test]
fn bad_workflows_are_refused_before_anything_runs_with_file_line_and_key() {
    let Some(r) = setup("run-bad") else { return };
    let cases: &[(&str, &str, &str)] = &[
        ("invalid.yml", "- shell: [unclosed\n", "invalid.yml`:"),
        (
            "noinput.yml",
            "name: x\nmode: mapreduce\nmap:\n  agent_template:\n    - shell: echo\n",
            "input",
        ),
        (
            "analyze.yml",
            "- analyze: {max_cache_age: 1}\n",
            "analyze.yml`:1:3: `analyze` was removed from Prodigy",
        ),
    ];
    for (file, text, needle) in cases {
        let wf = r.write_workflow(file, text);
        let o = r.run(&wf, &["-y"]);
        assert_eq!(o.code, 2, "{file}: {o:?}");
        assert_eq!(o.stdout, "", "{file}");
        assert!(o.stderr.starts_with("prodigy: "), "{file}: {o:?}");
        assert!(o.stderr.contains(needle), "{file}: {o:?}");
        assert_eq!(o.stderr.lines().count(), 1, "{file}: {o:?}");
    }
    // Every problem of a file is reported, one line each.
    let wf = r.write_workflow(
        "two.yml",
        "- shell: a\n  timeout: soon\n- commit_required: true\n",
    );
    let o = r.run(&wf, &["-y"]);
    assert_eq!(o.code, 2, "{o:?}");
    let lines: Vec<&str> = o.stderr.lines().collect();
    assert_eq!(lines.len(), 2, "{o:?}");
    assert!(lines[0].starts_with("prodigy: `") && lines[0].contains("two.yml`:2:12: `timeout`"));
    assert!(
        lines[1].contains("two.yml`:3:3: a step needs an action"),
        "{o:?}"
    );
    // Nothing was written for any of them.
    assert!(!r.env.exists("sessions"));
    assert!(!r.env.exists("worktrees"));
    // An unknown key is a warning naming file, line and column, and the run goes on.
    let wf = r.write_workflow("unknown.yml", "- shell: echo\n  comit_required: true\n");
    let o = r.run(&wf, &["-y"]);
    assert_eq!(o.code, 0, "{o:?}");
    assert!(
        o.stderr.contains("prodigy: warning: `")
            && o.stderr.contains(
                "unknown.yml`:2:3: unknown key `comit_required` in a step (did you mean \
             `commit_required`?); it is ignored"
            ),
        "{o:?}"
    );
    assert_eq!(r.only_session()["status"], "Completed");
}

#[test]
fn a_json_path_matching_nothing_warns_and_maps_nothing() {
    let Some(r) = setup("run-empty") else { return };
    let wf = r.write_workflow(
        "empty.yml",
        "name: e\nmode: mapreduce\nsetup:\n  - shell: |\n      echo '{\"items\": []}' > in.json\nmap:\n  input: in.json\n  json_path: \"$.nothing[*]\"\n  agent_template:\n    - shell: exit 1\nreduce:\n  - shell: exit 1\n",
    );
    let o = r.run(&wf, &["-y"]);
    assert_eq!(o.code, 0, "{o:?}");
    assert!(
        o.stderr.contains(
            "warning: map input `in.json` with json_path `$.nothing[*]` gave no work items"
        ),
        "{o:?}"
    );
    assert_eq!(r.only_session()["status"], "Completed");
}

#[test]
fn dirty_mid_merge_and_non_repositories_are_refused_and_leave_nothing_running() {
    let Some(r) = setup("run-refused") else {
        return;
    };
    let wf = r.write_workflow("ok.yml", "- shell: echo hi\n");
    fs::write(r.repo.join("README.md"), "changed\n").unwrap();
    let o = r.run(&wf, &[]);
    assert_eq!(o.code, 3, "{o:?}");
    assert!(o.stderr.contains("has uncommitted changes"), "{o:?}");
    git(&r.repo, &["checkout", "README.md"]);

    // Mid-merge.
    git(&r.repo, &["checkout", "-q", "-b", "other"]);
    fs::write(r.repo.join("README.md"), "other\n").unwrap();
    git(&r.repo, &["commit", "-qam", "other"]);
    git(&r.repo, &["checkout", "-q", "main"]);
    fs::write(r.repo.join("README.md"), "main\n").unwrap();
    git(&r.repo, &["commit", "-qam", "main"]);
    let m = git_cmd(&r.repo, &["merge", "other"]).output().unwrap();
    assert!(!m.status.success());
    let o = r.run(&wf, &[]);
    assert_eq!(o.code, 3, "{o:?}");
    assert!(o.stderr.contains("has a merge in progress"), "{o:?}");
    git(&r.repo, &["merge", "--abort"]);

    // Outside any repository.
    let o = Out::from(
        r.env
            .cmd(&["run", wf.to_str().unwrap()])
            .current_dir(&r.env.outside)
            .output()
            .unwrap(),
    );
    assert_eq!(o.code, 2, "{o:?}");
    assert!(o.stderr.contains("is not inside a git work tree"), "{o:?}");
    assert!(!r.env.exists("sessions"), "nothing was written");

    // A storage root that cannot be created (as root, permission bits would not stop us).
    let file = r.env.dir.join("a-file");
    fs::write(&file, "x").unwrap();
    let o = Out::from(
        r.env
            .cmd(&["run", wf.to_str().unwrap()])
            .env("PRODIGY_HOME", file.join("home"))
            .current_dir(&r.repo)
            .output()
            .unwrap(),
    );
    assert_eq!(o.code, 2, "{o:?}");
    assert!(o.stderr.contains("cannot create the storage root"), "{o:?}");
    // A storage root that is not writable (only checkable when not root).
    if unsafe_geteuid() != 0 {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&r.env.root, fs::Permissions::from_mode(0o500)).unwrap();
        let o = r.run(&wf, &[]);
        fs::set_permissions(&r.env.root, fs::Permissions::from_mode(0o700)).unwrap();
        assert_eq!(o.code, 2, "{o:?}");
        assert!(o.stderr.contains("not writable"), "{o:?}");
    } else {
        eprintln!(
            "SKIPPED the read-only PRODIGY_HOME case: running as root, which writes anywhere"
        );
    }
    no_running_session(&r);
}

fn unsafe_geteuid() -> u32 {
    let o = Command::new("id")
        .arg("-u")
        .stdout(Stdio::piped())
        .output()
        .unwrap();
    String::from_utf8_lossy(&o.stdout)
        .trim()
        .parse()
        .unwrap_or(0)
}

/// The first control character in `text` that may not reach a terminal (issue 27): C0 but line
/// ends and tabs, DEL, C1.
fn terminal_unsafe(text: &str) -> Option<char> {
    text.chars()
        .find(|&c| (c < ' ' && c != '\n' && c != '\t') || ('\u{7f}'..='\u{9f}').contains(&c))
}

#[test]
fn control_characters_from_workflow_files_never_reach_the_terminal() {
    let Some(r) = setup("run-escapes") else {
        return;
    };
    // A workflow key, a workflow value, a file name, a step's text and an --arg, each carrying
    // an escape sequence (recolour, retitle, clear), DEL and a C1 control (U+009B, CSI).
    let hostile = "\u{1b}[31mRED\u{1b}]0;pwned\u{7}\u{7f}\u{9b}2J";
    let yaml_escaped = "\\e[31mRED\\e]0;pwned\\a\\x7f\\u009b2J";
    let cases: Vec<(String, String, Vec<&str>)> = vec![
        (
            "value.yml".into(),
            format!("mode: \"mapreduce{yaml_escaped}\\nsecond line\"\n"),
            vec!["-y"],
        ),
        (
            "key.yml".into(),
            // An unknown key is a warning (quoted, escaped); the failing step makes the run
            // exit non-zero like the other cases.
            format!("- shell: exit 3\n  \"bad{yaml_escaped}key\": 1\n"),
            vec!["-y"],
        ),
        (
            format!("name{hostile}.yml"),
            "- shell: [\n".into(),
            vec!["-y"],
        ),
        (
            "step.yml".into(),
            format!("- shell: \"echo '{yaml_escaped}'; exit 3\"\n"),
            vec!["-y"],
        ),
        (
            "arg.yml".into(),
            "- shell: \"echo ${missing.var}\"\n".into(),
            vec![
                "-y",
                "--arg",
                &*Box::leak(format!("x{hostile}=1").into_boxed_str()),
            ],
        ),
    ];
    for (file, text, args) in &cases {
        let wf = r.write_workflow(file, text);
        for extra in [&[][..], &["--json"][..]] {
            let mut a = args.clone();
            a.extend_from_slice(extra);
            let o = r.run(&wf, &a);
            assert_ne!(o.code, 0, "{file}: {o:?}");
            let all = format!("{}{}", o.stdout, o.stderr);
            assert!(
                all.contains("\\u{1b}") || all.contains("\\u001b"),
                "{file}: the input is quoted, escaped: {o:?}"
            );
            if !extra.is_empty() && !o.stdout.is_empty() {
                // --json stays one valid document.
                let v: Result<Value, _> = serde_json::from_str(&o.stdout);
                assert!(v.is_ok(), "--json output parses: {o:?}");
            }
            for (stream, text) in [("stdout", &o.stdout), ("stderr", &o.stderr)] {
                if let Some(c) = terminal_unsafe(text) {
                    panic!("{file} {extra:?}: {stream} carries {c:?}: {o:?}");
                }
            }
        }
        // The commands that only read the file quote it too: validate and the dry run, as text
        // and as JSON.
        let w = wf.to_str().unwrap();
        for args in [
            vec!["validate", w],
            vec!["validate", "--json", w],
            vec!["run", "--dry-run", w],
            vec!["run", "--dry-run", "--json", w],
        ] {
            let o = Out::from(
                r.env
                    .cmd(&args)
                    .current_dir(&r.repo)
                    .output()
                    .expect("run prodigy"),
            );
            for (stream, text) in [("stdout", &o.stdout), ("stderr", &o.stderr)] {
                if let Some(c) = terminal_unsafe(text) {
                    panic!("{file} {args:?}: {stream} carries {c:?}: {o:?}");
                }
            }
        }
    }
    // A missing workflow file whose name carries the same bytes.
    let o = r.run(&r.env.dir.join(format!("gone{hostile}.yml")), &["-y"]);
    assert_eq!(o.code, 2, "{o:?}");
    assert!(
        o.stderr.contains("\\u{1b}[31mRED"),
        "escaped, not dropped: {o:?}"
    );
    assert_eq!(terminal_unsafe(&o.stderr), None, "{o:?}");
}

/// Three items; `b` commits, leaves an uncommitted file and fails while `flag` exists; reduce
/// commits with `git add -A` (as many real reduce steps do).
fn add_all_workflow(r: &Run, flag: &Path) -> PathBuf {
    r.write_workflow(
        "add-all.yml",
        &format!(
            r#"name: add-all
mode: mapreduce
map:
  input: "echo '[{{\"id\":\"a\"}},{{\"id\":\"b\"}},{{\"id\":\"c\"}}]'"
  max_parallel: 2
  agent_template:
    - claude: "/work ${{item_id}}"
    - shell: |
        echo "${{item_id}}" > "out-${{item_id}}.txt"
        git add "out-${{item_id}}.txt" && git commit -q -m "agent ${{item_id}}"
        if [ "${{item_id}}" = b ] && [ -e {flag} ]; then echo wip > wip.txt; echo "item b fails" >&2; exit 4; fi
      commit_required: true
reduce:
  - shell: |
      echo "${{map.successful}}/${{map.total}}" > summary.txt
      git add -A && git commit -q -m reduce
    commit_required: true
"#,
            flag = flag.display()
        ),
    )
}

/// No gitlink (mode 160000, an embedded repository) and no `agent-*` path in `rev`'s tree.
fn assert_no_embedded_repository(repo: &Path, rev: &str) {
    let tree = git(repo, &["ls-tree", "-r", "--full-tree", rev]);
    for l in tree.lines() {
        assert!(!l.starts_with("160000"), "{rev} has a gitlink: {l}\n{tree}");
        let path = l.split('\t').nth(1).unwrap_or("");
        assert!(
            !path.split('/').any(|c| c.starts_with("agent-")),
            "{rev} has an agent path: {l}\n{tree}"
        );
    }
}

#[test]
fn a_failed_agent_moves_beside_the_session_so_reduce_git_add_all_commits_no_embedded_repository() {
    let Some(r) = setup("run-add-all") else {
        return;
    };
    let flag = r.env.dir.join("broken");
    fs::write(&flag, "").unwrap();
    let wf = add_all_workflow(&r, &flag);
    let exclude = fs::read(r.repo.join(".git/info/exclude")).unwrap_or_default();
    let config = fs::read(r.repo.join(".git/config")).unwrap();
    let o = r.run(&wf, &["-y", "--json"]);
    assert_eq!(o.code, 1, "{o:?}");
    let v: Value = serde_json::from_str(&o.stdout).unwrap_or_else(|e| panic!("{e}: {o:?}"));
    assert_eq!(
        (&v["status"], &v["completed"], &v["failed"], &v["merge"]),
        (
            &Value::from("completed"),
            &Value::from(2),
            &Value::from(1),
            &Value::from("merged")
        ),
        "{v}"
    );
    let job = v["job_id"].as_str().unwrap().to_string();
    let sid = v["session_id"].as_str().unwrap().to_string();

    // The reduce commit, and main after the final merge, hold no embedded repository.
    let reduce = git(
        &r.repo,
        &["log", "-1", "--format=%H", "--grep=^reduce$", "main"],
    );
    assert!(!reduce.trim().is_empty(), "{}", log(&r.repo));
    assert_no_embedded_repository(&r.repo, reduce.trim());
    assert_no_embedded_repository(&r.repo, "main");
    assert_eq!(
        fs::read_to_string(r.repo.join("summary.txt")).unwrap(),
        "2/3\n"
    );
    // Nothing changed in the user's checkout, its ignore rules or its config.
    assert_eq!(git(&r.repo, &["status", "--porcelain"]), "");
    assert!(!r.repo.join(".gitignore").exists());
    assert_eq!(
        fs::read(r.repo.join(".git/info/exclude")).unwrap_or_default(),
        exclude
    );
    assert_eq!(fs::read(r.repo.join(".git/config")).unwrap(), config);

    // The session worktree and its branch are gone; the failed agent's work is beside it.
    let moved = r.env.p(&format!("worktrees/work/{sid}.agent-b"));
    let agent_branch = format!("prodigy-agent-{job}-b");
    assert!(!r.env.p(&format!("worktrees/work/{sid}")).exists());
    let mut names: Vec<String> = fs::read_dir(r.env.p("worktrees/work"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, [format!("{sid}.agent-b")]);
    let branches = git(&r.repo, &["branch", "--format=%(refname:short)"]);
    let mut b: Vec<&str> = branches.lines().collect();
    b.sort();
    assert_eq!(b, ["main", agent_branch.as_str()]);
    assert_eq!(fs::read_to_string(moved.join("wip.txt")).unwrap(), "wip\n");
    assert_eq!(
        git(&moved, &["log", "-1", "--format=%s"]).trim(),
        "agent b",
        "the failed agent's commit is on its branch"
    );
    assert_eq!(
        git(&moved, &["symbolic-ref", "--short", "HEAD"]).trim(),
        agent_branch
    );
    let wl = git(&r.repo, &["worktree", "list", "--porcelain"]);
    assert!(!wl.contains("prunable"), "{wl}");
    assert!(
        wl.contains(&format!("worktree {}\n", moved.display())),
        "{wl}"
    );
    let s = r.only_session();
    assert_eq!(s["status"], "Completed");
    assert!(s["metadata"]["worktree"]["merged_tip"].is_string(), "{s}");

    // The DLQ names where the work is; dlq show shows it.
    let dlq = r.json(&format!("dlq/work/{job}/dlq-items.json"));
    let it = &dlq["items"][0];
    assert_eq!(it["item_id"], "b");
    assert_eq!(it["worktree_path"], moved.to_str().unwrap(), "{dlq}");
    assert_eq!(it["branch_name"], agent_branch.as_str(), "{dlq}");
    let (o, shown) = r.env.json(&["dlq", "show", &job, "--json"]);
    assert_eq!(o.code, 0, "{o:?}");
    assert_eq!(
        shown["items"][0]["record"]["worktree_path"],
        moved.to_str().unwrap(),
        "{shown}"
    );

    // worktree ls and clean see it where it is, owned by its session; clean keeps it.
    let (o, ls) = r.env.json(&["worktree", "ls", "--all-repos", "--json"]);
    assert_eq!(o.code, 0, "{o:?}");
    let rows = ls["worktrees"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "{ls}");
    assert_eq!(rows[0]["name"], format!("{sid}.agent-b"), "{ls}");
    assert_eq!(rows[0]["owner"], sid.as_str(), "{ls}");
    assert_eq!(rows[0]["branch"], agent_branch.as_str(), "{ls}");
    let flags: Vec<&str> = rows[0]["flags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap())
        .collect();
    assert!(
        flags.contains(&"untracked") && flags.contains(&"unmerged"),
        "{ls}"
    );
    let (o, c) = r
        .env
        .json(&["clean", "--all", "--all-repos", "--dry-run", "--json"]);
    assert_eq!(o.code, 0, "{o:?}");
    assert!(removed_paths(&c).is_empty(), "{c}");
    let rel = format!("worktrees/work/{sid}.agent-b");
    assert_eq!(c["sessions"], serde_json::json!({"completed": 1}), "{c}");
    let (_, c) = r.env.json(&[
        "clean",
        "--all",
        "--all-repos",
        "--dry-run",
        "--json",
        "--older-than",
        "0s",
    ]);
    assert_eq!(kept_reason(&c, &rel).as_deref(), Some("uncommitted"), "{c}");
    assert!(
        !removed_paths(&c).contains(&format!("sessions/{sid}.json")),
        "the session record stays while its worktree does: {c}"
    );

    // dlq retry finds it there, replaces it, and merges the item.
    let o = r.env.run(&["dlq", "retry", &job, "-n"]);
    assert!(
        o.stdout.starts_with("would retry b\t")
            && o.stdout.ends_with(&format!("\t{}\n", moved.display())),
        "{o:?}"
    );
    fs::remove_file(&flag).unwrap();
    let o = Out::from(
        r.env
            .cmd(&["dlq", "retry", &job, "-y", "--json"])
            .current_dir(&r.repo)
            .output()
            .unwrap(),
    );
    assert_eq!(o.code, 0, "{o:?}");
    assert_eq!(fs::read_to_string(r.repo.join("out-b.txt")).unwrap(), "b\n");
    let l = log(&r.repo);
    for i in ["a", "b", "c"] {
        assert_eq!(
            l.lines()
                .filter(|x| x.starts_with(&format!("Merge agent prodigy-agent-{job}-{i} ")))
                .count(),
            1,
            "{l}"
        );
    }
    assert_no_embedded_repository(&r.repo, "main");
    let dlq = r.json(&format!("dlq/work/{job}/dlq-items.json"));
    assert_eq!(dlq["items"].as_array().unwrap().len(), 0, "{dlq}");
    assert_eq!(
        git(&r.repo, &["branch", "--format=%(refname:short)"]).trim(),
        "main"
    );
    assert!(
        fs::read_dir(r.env.p("worktrees/work"))
            .unwrap()
            .next()
            .is_none(),
        "worktrees left"
    );
    let wl = git(&r.repo, &["worktree", "list", "--porcelain"]);
    assert_eq!(
        wl.lines().filter(|l| l.starts_with("worktree ")).count(),
        1,
        "{wl}"
    );
    assert_eq!(git(&r.repo, &["status", "--porcelain"]), "");
    no_running_session(&r);
}

#[test]
fn merge_steps_that_git_add_all_commit_no_embedded_repository_either() {
    let Some(r) = setup("run-merge-add-all") else {
        return;
    };
    let wf = r.write_workflow(
        "merge-add-all.yml",
        &format!(
            r#"name: merge-add-all
mode: mapreduce
map:
  input: "echo '[{{\"id\":\"a\"}},{{\"id\":\"b\"}}]'"
  agent_template:
    - shell: |
        echo ${{item_id}} > ${{item_id}}.txt && git add -A && git commit -q -m "agent ${{item_id}}"
        test ${{item_id}} = a
merge:
  - shell: |
      date > merged-at.txt
      git add -A && git commit -q -m "merge step"
      cd {repo} && git merge -q --no-ff -m "merge ${{merge.source_branch}}" ${{merge.source_branch}}
"#,
            repo = r.repo.display()
        ),
    );
    let o = r.run(&wf, &["-y", "--json"]);
    assert_eq!(o.code, 1, "{o:?}");
    let v: Value = serde_json::from_str(&o.stdout).unwrap();
    assert_eq!(
        (&v["failed"], &v["merge"]),
        (&Value::from(1), &Value::from("merged")),
        "{v}"
    );
    let sid = v["session_id"].as_str().unwrap();
    let step = git(
        &r.repo,
        &["log", "-1", "--format=%H", "--grep=^merge step$", "main"],
    );
    assert!(!step.trim().is_empty(), "{}", log(&r.repo));
    assert_no_embedded_repository(&r.repo, step.trim());
    assert_no_embedded_repository(&r.repo, "main");
    assert!(r.repo.join("a.txt").is_file() && !r.repo.join("b.txt").exists());
    assert!(!r.env.p(&format!("worktrees/work/{sid}")).exists());
    assert!(r.env.p(&format!("worktrees/work/{sid}.agent-b")).is_dir());
}

#[test]
fn clean_removes_a_failed_agents_clean_worktree_before_its_session_and_keeps_its_unmerged_branch() {
    let Some(r) = setup("run-clean-failed-agent") else {
        return;
    };
    let flag = r.env.dir.join("broken");
    fs::write(&flag, "").unwrap();
    let wf = add_all_workflow(&r, &flag);
    let o = r.run(&wf, &["-y", "--json"]);
    assert_eq!(o.code, 1, "{o:?}");
    let v: Value = serde_json::from_str(&o.stdout).unwrap();
    let job = v["job_id"].as_str().unwrap().to_string();
    let sid = v["session_id"].as_str().unwrap().to_string();
    let beside = r.env.p(&format!("worktrees/work/{sid}.agent-b"));
    // Its uncommitted file goes: now the worktree is clean, its commit on its branch only.
    fs::remove_file(beside.join("wip.txt")).unwrap();
    let (o, c) = r.env.json(&[
        "clean",
        "--all-repos",
        "--force",
        "--json",
        "--older-than",
        "0s",
    ]);
    assert_eq!(o.code, 0, "{o:?}");
    let removed = removed_paths(&c);
    let rel = format!("worktrees/work/{sid}.agent-b");
    assert!(removed.contains(&rel), "{c}");
    assert!(removed.contains(&format!("sessions/{sid}.json")), "{c}");
    assert!(!beside.exists());
    // Its branch holds the agent's commit, which no other branch has: kept.
    let branch = format!("prodigy-agent-{job}-b");
    assert_eq!(
        git(&r.repo, &["log", "-1", "--format=%s", &branch]).trim(),
        "agent b"
    );
    let wl = git(&r.repo, &["worktree", "list", "--porcelain"]);
    assert_eq!(
        wl.lines().filter(|l| l.starts_with("worktree ")).count(),
        1,
        "{wl}"
    );
}

#[test]
fn a_session_left_in_the_nested_layout_is_listed_cleaned_around_and_retried() {
    let Some(r) = setup("run-nested-layout") else {
        return;
    };
    let flag = r.env.dir.join("broken");
    fs::write(&flag, "").unwrap();
    let wf = add_all_workflow(&r, &flag);
    // No -y and no terminal: nothing merged, the session worktree stays.
    let o = r.run(&wf, &["--json"]);
    assert_eq!(o.code, 1, "{o:?}");
    let v: Value = serde_json::from_str(&o.stdout).unwrap();
    assert_eq!(v["merge"], "not-merged", "{v}");
    let job = v["job_id"].as_str().unwrap().to_string();
    let sid = v["session_id"].as_str().unwrap().to_string();
    // What earlier versions left: the failed agent nested in the session worktree, the DLQ
    // naming it there.
    let wt = r.env.p(&format!("worktrees/work/{sid}"));
    let beside = r.env.p(&format!("worktrees/work/{sid}.agent-b"));
    let nested = wt.join("agent-b");
    git(
        &r.repo,
        &[
            "worktree",
            "move",
            beside.to_str().unwrap(),
            nested.to_str().unwrap(),
        ],
    );
    let dp = r.env.p(&format!("dlq/work/{job}/dlq-items.json"));
    let mut dlq: Value = serde_json::from_slice(&fs::read(&dp).unwrap()).unwrap();
    dlq["items"][0]["worktree_path"] = Value::from(nested.to_str().unwrap());
    fs::write(&dp, serde_json::to_vec(&dlq).unwrap()).unwrap();
    // worktree ls shows it nested, owned by the session; clean keeps both (uncommitted work).
    let (_, ls) = r.env.json(&["worktree", "ls", "--all-repos", "--json"]);
    let rows = ls["worktrees"].as_array().unwrap();
    let row = rows
        .iter()
        .find(|w| w["path"] == nested.to_str().unwrap())
        .unwrap_or_else(|| panic!("{ls}"));
    assert_eq!(row["owner"], sid.as_str(), "{ls}");
    let (o, c) = r.env.json(&[
        "clean",
        "--all-repos",
        "--dry-run",
        "--json",
        "--older-than",
        "0s",
    ]);
    assert_eq!(o.code, 0, "{o:?}");
    let rel = format!("worktrees/work/{sid}/agent-b");
    assert_eq!(kept_reason(&c, &rel).as_deref(), Some("uncommitted"), "{c}");
    assert!(
        !removed_paths(&c)
            .iter()
            .any(|p| p.starts_with("worktrees/")),
        "{c}"
    );
    // dlq retry replaces it, merges the item, and the final merge removes the session worktree.
    fs::remove_file(&flag).unwrap();
    let o = Out::from(
        r.env
            .cmd(&["dlq", "retry", &job, "-y"])
            .current_dir(&r.repo)
            .output()
            .unwrap(),
    );
    assert_eq!(o.code, 0, "{o:?}");
    for i in ["a", "b", "c"] {
        assert_eq!(
            fs::read_to_string(r.repo.join(format!("out-{i}.txt"))).unwrap(),
            format!("{i}\n")
        );
    }
    assert_no_embedded_repository(&r.repo, "main");
    assert!(fs::read_dir(r.env.p("worktrees/work"))
        .unwrap()
        .next()
        .is_none());
    assert_eq!(
        git(&r.repo, &["branch", "--format=%(refname:short)"]).trim(),
        "main"
    );
}

/// `map.filter` (`matches`, `in`, `AND`, `NOT`), `sort_by` with `NULLS FIRST` and two keys,
/// `distinct`, `offset` and `max_items`, in that order, decide which items run.
#[test]
fn map_filter_sort_distinct_offset_and_max_items_pick_the_items_that_run() {
    let Some(r) = setup("run-filter") else { return };
    let items = [
        r#"{"id": "a", "path": "src/a.rs", "kind": "bug", "prio": 2, "group": "x"}"#,
        r#"{"id": "b", "path": "src/b.py", "kind": "bug", "prio": 9, "group": "y"}"#,
        r#"{"id": "c", "path": "src/c.rs", "kind": "docs", "prio": 8, "group": "z"}"#,
        r#"{"id": "d", "path": "src/d.rs", "kind": "lint", "group": "x"}"#,
        r#"{"id": "e", "path": "src/e.rs", "kind": "bug", "prio": 5, "group": "y"}"#,
        r#"{"id": "f", "path": "src/f.rs", "kind": "lint", "prio": 5.0, "group": "y"}"#,
        r#"{"id": "g", "path": "lib/g.rs", "kind": "bug", "prio": 7, "skip": true, "group": "w"}"#,
        r#"{"id": "h", "path": "src/h.rs", "kind": "lint", "prio": 1, "group": "v"}"#,
        r#"{"id": "i", "path": "src/i.rs", "kind": "bug", "prio": 3, "group": "x"}"#,
        r#"{"id": "j", "path": "src/j.rs", "kind": "bug", "prio": 0, "group": "u"}"#,
    ];
    // filter keeps a d e f h i j; sorted: d (null first) e f i a h j; distinct group: d e h j;
    // offset 1: e h j; max_items 2: e h. NULLS LAST would give e i h j → i h.
    let wf = r.write_workflow(
        "filter.yml",
        &format!(
            r#"name: filter-test
mode: mapreduce
setup:
  - shell: |
      cat > items.json <<'EOF'
      [{}]
      EOF
map:
  input: items.json
  filter: "path matches '\\.rs$' AND kind in ['bug', 'lint'] AND NOT skip == true"
  sort_by: "prio DESC NULLS FIRST, id asc"
  distinct: item.group
  offset: 1
  max_items: 2
  max_parallel: 1
  agent_template:
    - shell: |
        echo "${{item.prio}}" > "out-${{item_id}}.txt"
        git add "out-${{item_id}}.txt" && git commit -q -m "agent ${{item_id}}"
      commit_required: true
"#,
            items.join(", ")
        ),
    );
    let o = r.run(&wf, &["-y", "--json"]);
    assert_eq!(o.code, 0, "{o:?}");
    let v: Value = serde_json::from_str(&o.stdout).unwrap_or_else(|e| panic!("{e}: {o:?}"));
    assert_eq!(
        (v["total"].as_u64(), v["failed"].as_u64()),
        (Some(2), Some(0)),
        "{v}"
    );
    let job = v["job_id"].as_str().unwrap().to_string();
    let mut outs: Vec<String> = fs::read_dir(&r.repo)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("out-"))
        .collect();
    outs.sort();
    assert_eq!(outs, ["out-e.txt", "out-h.txt"]);
    assert_eq!(fs::read_to_string(r.repo.join("out-e.txt")).unwrap(), "5\n");
    let started: Vec<String> = r
        .events(&job)
        .iter()
        .filter(|e| e["event_type"] == "agent_started")
        .map(|e| e["item_id"].as_str().unwrap_or("?").to_string())
        .collect();
    assert_eq!(started, ["e", "h"], "one at a time, in the sorted order");
    no_running_session(&r);
}

/// A filter that does not compile is refused before anything runs, with its column.
#[test]
fn a_bad_map_filter_is_refused_with_file_line_and_column() {
    let Some(r) = setup("run-filter-bad") else {
        return;
    };
    let wf = r.write_workflow(
        "bad.yml",
        "name: b\nmode: mapreduce\nmap:\n  input: items.json\n  filter: \"path matches '(a' && x\"\n  agent_template:\n    - shell: exit 1\n",
    );
    let o = r.run(&wf, &["-y"]);
    assert_eq!(o.code, 2, "{o:?}");
    assert_eq!(
        o.stderr,
        format!(
            "prodigy: `{}`:5:11: `map.filter`: column 14: invalid regex `(a`: found open group \
             without closing ')'\n",
            wf.display()
        )
    );
    assert!(r.sessions().is_empty());
}

/// Map checkpoint bytes linear in items: the map log beside full checkpoints (issue 25).
mod checkpoint_bytes;
/// `foreach` steps (issue 24): items, `do` in the worktree, parallel, failures, resume.
mod foreach;
/// `id` + `outputs.NAME.file_pattern` and `setup.capture_outputs` (issue 24).
mod outputs;
/// The feature × phase matrix: every step modifier in every phase, and resumed captures.
mod phases;
#[path = "run_secrets.rs"]
mod secrets;
/// Step modifiers (issue 24, execution side): capture, handlers, env/working_dir, write_file.
mod steps;
/// `validate` with `on_incomplete` (issue 24).
mod validate;
