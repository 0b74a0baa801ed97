//! `prodigy resume` and `prodigy dlq retry`: runs killed (SIGKILL, SIGINT) at chosen moments and
//! resumed until they finish, with real git, real child processes and a temporary PRODIGY_HOME.
//! The crash sweeps print their seeds so a failure can be replayed alone
//! (`PRODIGY_SWEEP=3 cargo test crash_sweep -- --nocapture`: seed 3 of each sweep).

use crate::common::*;
use serde_json::Value;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct R {
    env: Env,
    repo: PathBuf,
}

fn setup(name: &str) -> Option<R> {
    if !have("git", name) {
        return None;
    }
    let env = Env::new(name);
    let repo = repo(&env, "work");
    git(&repo, &["config", "user.name", "Test"]);
    git(&repo, &["config", "user.email", "test@example.com"]);
    git(&repo, &["config", "commit.gpgsign", "false"]);
    Some(R { env, repo })
}

impl R {
    fn wf(&self, name: &str, text: &str) -> PathBuf {
        let p = self.env.dir.join(name);
        fs::write(&p, text).unwrap();
        p
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = self.env.cmd(args);
        c.current_dir(&self.repo);
        c
    }

    fn out(&self, args: &[&str]) -> Out {
        Out::from(self.cmd(args).output().unwrap())
    }

    /// Start prodigy in its own process group, output to files.
    fn spawn(&self, args: &[&str], tag: &str) -> Child {
        let mut c = self.cmd(args);
        c.stdout(fs::File::create(self.env.dir.join(format!("{tag}.out"))).unwrap())
            .stderr(fs::File::create(self.env.dir.join(format!("{tag}.err"))).unwrap());
        use std::os::unix::process::CommandExt;
        c.process_group(0);
        c.spawn().unwrap()
    }

    fn session(&self) -> Value {
        let d = self.env.p("sessions");
        // A writer killed mid-write leaves `.{name}.tmp-…` (safety R7): not a record.
        let files: Vec<_> = fs::read_dir(&d)
            .unwrap()
            .flatten()
            .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
            .collect();
        assert_eq!(files.len(), 1, "one session");
        let b = fs::read(files[0].path()).unwrap();
        serde_json::from_slice(&b).unwrap_or_else(|e| {
            panic!(
                "torn or empty session record ({e}): {:?}",
                String::from_utf8_lossy(&b)
            )
        })
    }

    fn all_events(&self) -> String {
        let mut s = String::new();
        if let Ok(rd) = fs::read_dir(self.env.p("events/work")) {
            for j in rd.flatten() {
                for f in fs::read_dir(j.path()).unwrap().flatten() {
                    s.push_str(&fs::read_to_string(f.path()).unwrap_or_default());
                }
            }
        }
        s
    }

    fn count_events(&self, ty: &str) -> usize {
        self.all_events()
            .lines()
            .filter(|l| l.contains(&format!("\"event_type\":\"{ty}\"")))
            .count()
    }
}

/// Send `sig` to `pid` (a negative pid is a process group). `--` is required: procps `kill`
/// reads `kill -9 -1234` as signal 1234 sent to process group 9 (seen here, under strace).
fn kill(pid: i32, sig: i32) {
    let _ = Command::new("kill")
        .args(["-s", &sig.to_string(), "--", &pid.to_string()])
        .stderr(Stdio::null())
        .status();
}

fn main_log(repo: &Path) -> Vec<String> {
    git(repo, &["log", "--format=%s", "main"])
        .lines()
        .map(str::to_string)
        .collect()
}

const ITEMS: usize = 12;

fn sweep_workflow() -> String {
    let items: Vec<String> = (1..=ITEMS)
        .map(|i| format!(r#"{{"id": "w{i:02}", "n": {i}}}"#))
        .collect();
    format!(
        r#"name: sweep
mode: mapreduce
setup:
  - shell: |
      sleep 0.1
      printf '%s' '[{}]' > items.json
      git add items.json && git commit -q -m "setup: items"
    commit_required: true
  - shell: sleep 0.1
map:
  input: items.json
  max_parallel: 3
  agent_template:
    - shell: |
        sleep 0.15
        echo ${{item.n}} > "out-${{item_id}}.txt"
        git add "out-${{item_id}}.txt" && git commit -q -m "item ${{item_id}}"
      commit_required: true
reduce:
  - shell: |
      sleep 0.1
      echo "${{map.successful}}" > reduce-1.txt && git add reduce-1.txt && git commit -q -m "reduce one"
    commit_required: true
  - shell: |
      sleep 0.1
      echo done > reduce-2.txt && git add reduce-2.txt && git commit -q -m "reduce two"
    commit_required: true
"#,
        items.join(", ")
    )
}

/// A kill point: wait until the run's events contain `n` events of type `after`, wait `delay`
/// more milliseconds, then SIGKILL prodigy alone, its whole process group, or its whole tree.
#[derive(Clone, Copy, Debug)]
struct Kill {
    after: &'static str,
    n: usize,
    delay: u64,
    who: Who,
}

/// What a kill point kills.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Who {
    /// prodigy alone: its steps (each in its own process group) live on as orphans, and the
    /// resume waits for them.
    Prodigy,
    /// prodigy's process group: prodigy and the git it runs itself; steps live on.
    Group,
    /// Everything, as a crash of the machine would: prodigy stopped, then every process
    /// group of its descendants (steps and what they started) and its own killed. A step is
    /// cut where it is (a commit half made, a line not yet appended).
    Tree,
}

const fn k(after: &'static str, n: usize, delay: u64, group: bool) -> Kill {
    Kill {
        after,
        n,
        delay,
        who: if group { Who::Group } else { Who::Prodigy },
    }
}

/// A kill point that kills prodigy's whole tree ([`Who::Tree`]).
const fn kt(after: &'static str, n: usize, delay: u64) -> Kill {
    Kill {
        after,
        n,
        delay,
        who: Who::Tree,
    }
}

/// The fixed seed list: every phase (setup, map starts, merges, agent completion, reduce, final
/// merge), prodigy alone and the whole group; some seeds kill the resume too.
const SEEDS: &[&[Kill]] = &[
    &[k("job_started", 1, 0, false)],
    &[k("job_started", 1, 60, true)],
    &[k("job_started", 1, 150, false)],
    &[k("setup_completed", 1, 0, true)],
    &[k("agent_started", 1, 0, false)],
    &[k("agent_started", 3, 10, true)],
    &[k("worktree_merged", 1, 0, false)],
    &[k("worktree_merged", 2, 0, true)],
    &[k("worktree_merged", 4, 2, false)],
    &[k("agent_completed", 3, 0, true)],
    &[k("agent_completed", 5, 1, false)],
    &[k("worktree_cleaned", 6, 0, false)],
    &[k("agent_started", 9, 5, true)],
    &[k("agent_completed", 11, 0, false)],
    &[k("agent_completed", 12, 0, true)],
    &[k("reduce_step_completed", 1, 0, false)],
    &[k("reduce_step_completed", 1, 90, true)],
    &[k("reduce_step_completed", 2, 0, false)],
    &[k("reduce_step_completed", 2, 15, true)],
    &[k("reduce_step_completed", 2, 40, false)],
    &[
        k("agent_completed", 2, 0, false),
        k("job_resumed", 1, 300, true),
    ],
    &[
        k("worktree_merged", 3, 0, true),
        k("agent_completed", 8, 0, false),
    ],
    &[
        k("setup_completed", 1, 0, false),
        k("job_resumed", 1, 0, true),
        k("reduce_step_completed", 1, 0, false),
    ],
];

/// Run or resume with a kill point; returns whether the kill happened before the process ended,
/// and its exit code otherwise.
fn run_with_kill(r: &R, args: &[&str], kp: Option<Kill>, tag: &str) -> Option<i32> {
    let mut child = r.spawn(args, tag);
    let Some(kp) = kp else {
        return child.wait().unwrap().code();
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return st.code();
        }
        if r.count_events(kp.after) >= kp.n {
            break;
        }
        assert!(Instant::now() < deadline, "kill point {kp:?} never reached");
        std::thread::sleep(Duration::from_millis(2));
    }
    std::thread::sleep(Duration::from_millis(kp.delay));
    let pid = child.id() as i32;
    match kp.who {
        Who::Prodigy => kill(pid, 9),
        Who::Group => kill(-pid, 9),
        Who::Tree => kill_tree(pid),
    }
    let code = child.wait().unwrap().code();
    if code.is_some() {
        // It finished before the signal arrived.
        return code;
    }
    None
}

/// SIGKILL `pid`'s process group and the process group of every descendant: `pid` is stopped
/// first, so it starts nothing meanwhile; a step's children share its group.
fn kill_tree(pid: i32) {
    kill(pid, 19);
    // pid → (ppid, pgid) of every process, from /proc/PID/stat (the fields after the last `)`).
    let mut procs = Vec::new();
    for e in fs::read_dir("/proc").unwrap().flatten() {
        let Ok(p) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let f: Vec<&str> = rest.split_whitespace().collect();
        if let (Some(Ok(ppid)), Some(Ok(pgid))) = (
            f.get(1).map(|v| v.parse::<i32>()),
            f.get(2).map(|v| v.parse::<i32>()),
        ) {
            procs.push((p, ppid, pgid));
        }
    }
    let mut tree = vec![pid];
    let mut i = 0;
    while i < tree.len() {
        let parent = tree[i];
        tree.extend(procs.iter().filter(|p| p.1 == parent).map(|p| p.0));
        i += 1;
    }
    let mut groups: Vec<i32> = procs
        .iter()
        .filter(|p| tree.contains(&p.0))
        .map(|p| p.2)
        .collect();
    groups.sort_unstable();
    groups.dedup();
    for g in groups {
        kill(-g, 9);
    }
    // A child forked just before the stop may have left prodigy's group after it was read.
    for p in tree.iter().skip(1) {
        kill(*p, 9);
    }
    kill(-pid, 9);
}

/// What must hold after every round, killed or not.
fn invariants(r: &R, round: &str) {
    let s = r.session();
    assert!(s["id"].is_string(), "{round}: {s}");
    // No live resume lock: every lock file's flock is free. A child that prodigy forked just
    // before the kill holds the descriptor until its exec closes it (O_CLOEXEC), so a lock
    // counts as live only if it stays held for a few seconds.
    if let Ok(rd) = fs::read_dir(r.env.p("resume_locks")) {
        for f in rd.flatten() {
            let free = || {
                Command::new("flock")
                    .args(["-n", "-E", "99"])
                    .arg(f.path())
                    .arg("true")
                    .status()
                    .map(|s| s.code() != Some(99))
                    .unwrap_or(true)
            };
            let deadline = Instant::now() + Duration::from_secs(5);
            while !free() {
                assert!(
                    Instant::now() < deadline,
                    "{round}: {} is still locked",
                    f.path().display()
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
    let o = r.out(&["checkpoints", "verify", "--all-repos"]);
    assert_eq!(o.code, 0, "{round}: {o:?}");
}

/// For a failure message: each queued item's id and the error of its last failure.
fn dlq_errors(r: &R) -> String {
    let s = r.session();
    let job = s["mapreduce_data"]["job_id"]
        .as_str()
        .unwrap_or("")
        .to_string();
    let Ok(bytes) = fs::read(r.env.p(&format!("dlq/work/{job}/dlq-items.json"))) else {
        return "none".into();
    };
    let v: Value = serde_json::from_slice(&bytes).unwrap_or_default();
    let items = v["items"].as_array().cloned().unwrap_or_default();
    items
        .iter()
        .map(|i| {
            let last = i["failure_history"]
                .as_array()
                .and_then(|h| h.last())
                .cloned()
                .unwrap_or_default();
            format!("{}: {}", i["item_id"], last["error"])
        })
        .collect::<Vec<_>>()
        .join("; ")
}

fn final_checks(r: &R, seed: usize) {
    let s = r.session();
    assert_eq!(s["status"], "Completed", "seed {seed}: {s}");
    let log = main_log(&r.repo);
    for i in 1..=ITEMS {
        let subject = format!("item w{i:02}");
        assert_eq!(
            log.iter().filter(|l| **l == subject).count(),
            1,
            "seed {seed}: {subject} not exactly once in {log:?}"
        );
        assert_eq!(
            fs::read_to_string(r.repo.join(format!("out-w{i:02}.txt"))).unwrap(),
            format!("{i}\n"),
            "seed {seed}"
        );
    }
    for subject in ["setup: items", "reduce one", "reduce two"] {
        assert_eq!(
            log.iter().filter(|l| *l == subject).count(),
            1,
            "seed {seed}: {subject} in {log:?}"
        );
    }
    assert_eq!(
        fs::read_to_string(r.repo.join("reduce-1.txt")).unwrap(),
        "12\n",
        "seed {seed}: map.successful after resumes"
    );
    nothing_left(r, &format!("seed {seed}"));
}

/// After a run that succeeded: its dead letter queue empty, no branch but `main`, no worktree
/// (not in git's list, not on disk), the user's checkout clean.
fn nothing_left(r: &R, seed: &str) {
    let s = r.session();
    let job = s["mapreduce_data"]["job_id"]
        .as_str()
        .or(s["id"].as_str())
        .unwrap()
        .to_string();
    let dlq = r.env.p(&format!("dlq/work/{job}/dlq-items.json"));
    if dlq.exists() {
        let v: Value = serde_json::from_slice(&fs::read(&dlq).unwrap()).unwrap();
        assert_eq!(v["items"].as_array().unwrap().len(), 0, "{seed}: {v}");
    }
    let branches = git(&r.repo, &["branch", "--format=%(refname:short)"]);
    assert_eq!(branches.trim(), "main", "{seed}: branches left");
    let wl = git(&r.repo, &["worktree", "list", "--porcelain"]);
    assert!(!wl.contains("prunable"), "{seed}: {wl}");
    assert_eq!(
        wl.lines().filter(|l| l.starts_with("worktree ")).count(),
        1,
        "{seed}: {wl}"
    );
    assert!(
        !r.env.p("worktrees/work").exists()
            || fs::read_dir(r.env.p("worktrees/work")).unwrap().count() == 0,
        "{seed}: worktree directories left"
    );
    let st = git(&r.repo, &["status", "--porcelain"]);
    assert_eq!(st, "", "{seed}: the user's checkout is dirty");
}

/// Run `wf` with the first of `kills`, then resume it, alternately by job id and session id,
/// each round with the next kill point, until a round exits 0 (a resume must exit 0 or be
/// killed). [`invariants`] hold after every round; `killed` looks at what a round that was
/// killed left.
fn run_until_done(r: &R, wf: &Path, kills: &[Kill], seed: &str, mut killed: impl FnMut(&R)) {
    let mut kills = kills.iter().copied();
    let mut code = run_with_kill(r, &["run", wf.to_str().unwrap(), "-y"], kills.next(), "run");
    invariants(r, &format!("{seed} after run"));
    let mut round = 0;
    while code != Some(0) {
        if code.is_none() {
            killed(r);
            // The kill came just after the round finished its session (the record says
            // Completed): nothing is left to resume (`resume` would say so, exit 3), and the
            // final checks judge what the round left.
            if r.session()["status"] == "Completed" {
                break;
            }
        }
        round += 1;
        assert!(round <= 6, "{seed}: no success after {round} resumes");
        let s = r.session();
        let sid = s["id"].as_str().unwrap().to_string();
        let job = s["mapreduce_data"]["job_id"]
            .as_str()
            .unwrap_or(&sid)
            .to_string();
        // Alternate session id and job id.
        let id = if round % 2 == 1 { job } else { sid };
        code = run_with_kill(
            r,
            &["resume", &id, "-y"],
            kills.next(),
            &format!("resume{round}"),
        );
        let err = fs::read_to_string(r.env.dir.join(format!("resume{round}.err"))).unwrap()
            + &fs::read_to_string(r.env.dir.join(format!("resume{round}.out"))).unwrap();
        assert!(
            code.is_none() || code == Some(0),
            "{seed} round {round}: exit {code:?}: {err}\ndead letter queue: {}",
            dlq_errors(r)
        );
        invariants(r, &format!("{seed} after resume {round}"));
    }
}

#[test]
fn crash_sweep_every_kill_point_resumes_to_every_item_merged_exactly_once() {
    if !have("flock", "crash_sweep") {
        return;
    }
    let only: Option<usize> = std::env::var("PRODIGY_SWEEP")
        .ok()
        .and_then(|s| s.parse().ok());
    for (seed, kills) in SEEDS.iter().enumerate() {
        if only.is_some_and(|o| o != seed) {
            continue;
        }
        sweep_seed(seed, kills);
    }
}

fn sweep_seed(seed: usize, kills: &[Kill]) {
    eprintln!("crash sweep: seed {seed}: {kills:?}");
    let Some(r) = setup(&format!("sweep-{seed}")) else {
        return;
    };
    let wf = r.wf("sweep.yml", &sweep_workflow());
    run_until_done(&r, &wf, kills, &format!("seed {seed}"), |_| {});
    final_checks(&r, seed);
}

/// Which workflow a loop sweep seed runs.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Form {
    /// [`loop_sweep_workflow`]: setup and reduce checkpoints.
    MapReduce,
    /// [`loop_standard_workflow`]: the session record is the checkpoint.
    Standard,
}

/// A step's `validate` whose loop counts in `@D/{p}-fixed` (outside the repository): 40 %
/// (missing `x`) until two `on_incomplete` runs have each appended their line there, then
/// 100 %; each run first appends `${validation.attempt_number} ${validation.completion}
/// ${validation.missing}` to `@D/{p}-attempts`.
fn loop_validate(p: &str) -> String {
    format!(
        r#"validate:
      shell: |
        n=$(cat @D/{p}-fixed 2>/dev/null | wc -l)
        if [ "$n" -ge 2 ]; then echo '{{"completion_percentage": 100, "status": "complete"}}'; else echo '{{"completion_percentage": 40, "status": "incomplete", "missing": ["x"]}}'; fi
      on_incomplete:
        shell: |
          echo "${{validation.attempt_number}} ${{validation.completion}} ${{validation.missing}}" >> @D/{p}-attempts
          sleep 0.15
          echo fix >> @D/{p}-fixed
        max_attempts: {LOOP_MAX}"#
    )
}

/// A `foreach` of the loop sweep: each item appends its name to `@D/{name}` and commits
/// `{name}-{item}.txt` as `{name} {item}` only when it changed (what a step that may run
/// twice has to do), one git at a time; its progress is the variable `key` of the checkpoint
/// `cp`.
struct Each {
    name: &'static str,
    items: &'static [&'static str],
    parallel: usize,
    cp: Cp,
    key: &'static str,
}

/// Where a foreach's progress is checkpointed.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Cp {
    Setup,
    Reduce,
    Session,
}

/// Setup's foreach (its third step).
const PRE: Each = Each {
    name: "pre",
    items: &["p", "q", "r", "s"],
    parallel: 2,
    cp: Cp::Setup,
    key: "_foreach.step3",
};
const EACH_ITEMS: &[&str] = &["a", "b", "c", "d", "e", "f"];
/// Reduce's foreach (its first step).
const EACH_REDUCE: Each = Each {
    name: "each",
    items: EACH_ITEMS,
    parallel: 3,
    cp: Cp::Reduce,
    key: "_foreach.step1",
};
/// The standard workflow's foreach (its third step).
const EACH_STANDARD: Each = Each {
    name: "each",
    items: EACH_ITEMS,
    parallel: 3,
    cp: Cp::Session,
    key: "_foreach.step3",
};

fn foreaches(form: Form) -> &'static [Each] {
    match form {
        Form::MapReduce => &[PRE, EACH_REDUCE],
        Form::Standard => &[EACH_STANDARD],
    }
}

fn loop_foreach(e: &Each) -> String {
    format!(
        r#"foreach:
      foreach: [{items}]
      parallel: {parallel}
      do:
        - shell: |
            echo ${{item}} >> @D/{n}
            sleep 0.15
            echo ${{item}} > {n}-${{item}}.txt
            flock @D/git.lock sh -c 'git add {n}-${{item}}.txt && {{ git diff --cached --quiet -- {n}-${{item}}.txt || git commit -q -m "{n} ${{item}}" -- {n}-${{item}}.txt; }}'"#,
        items = e.items.join(", "),
        parallel = e.parallel,
        n = e.name,
    )
}

/// The step after a validated one: its `${validation.*}` into `{file}`, committed.
fn loop_after(file: &str, subject: &str) -> String {
    format!(
        r#"shell: |
      echo "${{validation.completion}} ${{validation.status}} ${{validation.attempt_number}} ${{validation.missing_count}}" > {file} && git add {file} && git commit -q -m "{subject}"
    commit_required: true"#
    )
}

/// A validate loop in setup and in reduce, and a parallel foreach in both (run.md §2, §6).
fn loop_sweep_workflow(d: &Path) -> String {
    let items: Vec<String> = (1..=LOOP_ITEMS)
        .map(|i| format!(r#"{{"id": "w{i}"}}"#))
        .collect();
    format!(
        r#"name: loop-sweep
mode: mapreduce
setup:
  - shell: |
      sleep 0.05
      printf '%s' '[{items}]' > items.json
      git add items.json && git commit -q -m "setup: items"
    commit_required: true
    {sv}
  - {sa}
  - {pre}
map:
  input: items.json
  max_parallel: 2
  agent_template:
    - shell: |
        sleep 0.05
        echo ${{item_id}} > "out-${{item_id}}.txt"
        git add "out-${{item_id}}.txt" && git commit -q -m "item ${{item_id}}"
      commit_required: true
reduce:
  - {each}
  - shell: |
      echo "${{map.successful}}" > reduce.txt && git add reduce.txt && git commit -q -m "reduce"
    commit_required: true
    {rv}
  - {ra}
"#,
        items = items.join(", "),
        sv = loop_validate("s"),
        sa = loop_after("setup-validation.txt", "setup: validation"),
        pre = loop_foreach(&PRE),
        each = loop_foreach(&EACH_REDUCE),
        rv = loop_validate("r"),
        ra = loop_after("reduce-validation.txt", "reduce: validation"),
    )
    .replace("@D", &d.display().to_string())
}

/// The same loops in a standard workflow: a validated step, the step after it, the foreach.
fn loop_standard_workflow(d: &Path) -> String {
    format!(
        r#"name: loop-standard
commands:
  - shell: |
      sleep 0.05
      echo work > work.txt && git add work.txt && git commit -q -m "work"
    commit_required: true
    {sv}
  - {sa}
  - {each}
"#,
        sv = loop_validate("s"),
        sa = loop_after("setup-validation.txt", "setup: validation"),
        each = loop_foreach(&EACH_STANDARD),
    )
    .replace("@D", &d.display().to_string())
}

const LOOP_ITEMS: usize = 4;
const LOOP_MAX: u32 = 5;

/// Kill points inside the loops. MapReduce: `validation_attempt` 1–2 are setup's
/// `on_incomplete` runs and 3–4 reduce's (in a run that no kill made repeat an attempt),
/// `foreach_item_completed` 1–4 setup's foreach's items and 5–10 reduce's. Standard: attempts
/// 1–2, then items 1–6. Each event is written right after the checkpoint that records it, so
/// delay 0 kills with that checkpoint just written, a delay inside the next handler run or
/// among the running items. prodigy alone (its steps finish as orphans), its group, and its
/// whole tree (the steps die too: a handler run cut before its fix, an item cut mid-commit).
const LOOP_SEEDS: &[(Form, &[Kill])] = &[
    (Form::MapReduce, &[k("validation_attempt", 1, 0, false)]),
    (Form::MapReduce, &[kt("validation_attempt", 1, 60)]),
    (Form::MapReduce, &[k("validation_attempt", 2, 80, true)]),
    (Form::MapReduce, &[kt("validation_attempt", 2, 170)]),
    (Form::MapReduce, &[kt("foreach_item_completed", 1, 40)]),
    (Form::MapReduce, &[k("foreach_item_completed", 3, 0, false)]),
    (Form::MapReduce, &[k("foreach_item_completed", 5, 0, false)]),
    (Form::MapReduce, &[kt("foreach_item_completed", 6, 40)]),
    (Form::MapReduce, &[k("foreach_item_completed", 8, 0, true)]),
    (Form::MapReduce, &[kt("foreach_item_completed", 10, 0)]),
    (Form::MapReduce, &[k("validation_attempt", 3, 50, false)]),
    (Form::MapReduce, &[kt("validation_attempt", 4, 100)]),
    (
        Form::MapReduce,
        &[
            kt("validation_attempt", 1, 100),
            k("foreach_item_completed", 7, 30, false),
            kt("validation_attempt", 5, 60),
        ],
    ),
    (
        Form::MapReduce,
        &[
            k("foreach_item_completed", 6, 0, false),
            kt("job_resumed", 1, 250),
        ],
    ),
    (Form::Standard, &[kt("validation_attempt", 1, 80)]),
    (Form::Standard, &[k("validation_attempt", 2, 0, false)]),
    (
        Form::Standard,
        &[
            kt("foreach_item_completed", 2, 20),
            k("foreach_item_completed", 5, 50, true),
        ],
    ),
];

/// The lines of `@D/{name}` (none when it does not exist).
fn lines_of(r: &R, name: &str) -> Vec<String> {
    fs::read_to_string(r.env.dir.join(name))
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

/// The items of `e` its checkpoint records as done (setup's, the newest reduce checkpoint,
/// the session record).
fn each_done(r: &R, e: &Each) -> Vec<usize> {
    let s = r.session();
    let newest = |prefix: &str| -> Value {
        let job = s["mapreduce_data"]["job_id"].as_str().unwrap();
        let dir = r.env.p(&format!("state/work/mapreduce/jobs/{job}"));
        let name = fs::read_dir(&dir).ok().and_then(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(prefix) && n.ends_with(".json"))
                .max()
        });
        name.map(|n| serde_json::from_slice(&fs::read(dir.join(n)).unwrap()).unwrap())
            .unwrap_or_default()
    };
    let v = match e.cp {
        Cp::Session => s["workflow_data"]["variables"][e.key].clone(),
        Cp::Setup => newest("setup-checkpoint")["outputs"][e.key].clone(),
        Cp::Reduce => newest("reduce-checkpoint-v1-")["step_results"][e.key].clone(),
    };
    v["done"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(Value::as_u64)
                .map(|i| i as usize)
                .collect()
        })
        .unwrap_or_default()
}

/// What a kill left of each foreach: the items its checkpoint had done, and how many lines
/// its `@D/{name}` had.
type AtKill = Vec<(Vec<usize>, usize)>;

/// The rules asserted after the last resume of a loop sweep seed (`kills`: the rounds a kill
/// ended; `at_kill`: what each left, [`AtKill`]):
/// * foreach: every item's commit exactly once in git history and its file right; every item
///   ran at least once; an item the checkpoint recorded as done never ran again after that
///   kill; an item cut by a kill may run again (at least once), so the runs number at most
///   the items plus `parallel` a kill.
/// * validate: the validated step's commit exactly once; the loop ran until the validator was
///   satisfied: exactly two fixes made (never a handler run after the second); each
///   `on_incomplete` run saw `${validation.completion}` 40 and `missing` `x`; its
///   `${validation.attempt_number}`s strictly increase (a run cut by a kill counts once, the
///   next is one more: a number is never given twice), the last at most `max_attempts`; the
///   step after it sees `100.0 complete LAST 0`.
/// * every work item merged once, and [`nothing_left`].
fn loop_checks(r: &R, form: Form, seed: &str, kills: usize, at_kill: &[AtKill]) {
    let s = r.session();
    assert_eq!(s["status"], "Completed", "{seed}: {s}");
    let log = main_log(&r.repo);
    let (mut once, loops): (Vec<String>, &[(&str, &str)]) = match form {
        Form::MapReduce => (
            [
                "setup: items",
                "setup: validation",
                "reduce",
                "reduce: validation",
            ]
            .iter()
            .map(|s| s.to_string())
            .chain((1..=LOOP_ITEMS).map(|i| format!("item w{i}")))
            .collect(),
            &[
                ("s", "setup-validation.txt"),
                ("r", "reduce-validation.txt"),
            ],
        ),
        Form::Standard => (
            vec!["work".to_string(), "setup: validation".to_string()],
            &[("s", "setup-validation.txt")],
        ),
    };
    let each = foreaches(form);
    for e in each {
        once.extend(e.items.iter().map(|i| format!("{} {i}", e.name)));
    }
    for subject in &once {
        assert_eq!(
            log.iter().filter(|l| *l == subject).count(),
            1,
            "{seed}: `{subject}` not exactly once in {log:?}"
        );
    }
    if form == Form::MapReduce {
        assert_eq!(
            fs::read_to_string(r.repo.join("reduce.txt")).unwrap(),
            format!("{LOOP_ITEMS}\n"),
            "{seed}: map.successful"
        );
    }
    for (k, e) in each.iter().enumerate() {
        let ran = lines_of(r, e.name);
        for i in e.items {
            assert_eq!(
                fs::read_to_string(r.repo.join(format!("{}-{i}.txt", e.name))).unwrap(),
                format!("{i}\n"),
                "{seed}"
            );
            assert!(
                ran.iter().any(|l| l == i),
                "{seed}: {} {i} never ran: {ran:?}",
                e.name
            );
        }
        assert!(
            ran.len() <= e.items.len() + e.parallel * kills,
            "{seed}: {} {} runs after {kills} kill(s): {ran:?}",
            ran.len(),
            e.name
        );
        for a in at_kill {
            let (done, from) = &a[k];
            for &i in done {
                assert!(
                    !ran[*from..].iter().any(|l| l == e.items[i]),
                    "{seed}: {} {} was done at a kill (checkpoint: {done:?}) and ran again: {ran:?}",
                    e.name,
                    e.items[i]
                );
            }
        }
    }
    for &(p, file) in loops {
        let attempts = lines_of(r, &format!("{p}-attempts"));
        assert_eq!(
            lines_of(r, &format!("{p}-fixed")).len(),
            2,
            "{seed}: {p}: the loop did not end at its second fix; attempts {attempts:?}"
        );
        let mut last = 0;
        for a in &attempts {
            let (n, rest) = a.split_once(' ').unwrap();
            let n: u32 = n.parse().unwrap();
            assert!(n > last, "{seed}: {p}: attempt numbers {attempts:?}");
            assert_eq!(rest, "40.0 x", "{seed}: {p}: {attempts:?}");
            last = n;
        }
        assert!(
            (2..=LOOP_MAX).contains(&last),
            "{seed}: {p}: attempts {attempts:?}"
        );
        assert_eq!(
            fs::read_to_string(r.repo.join(file)).unwrap(),
            format!("100.0 complete {last} 0\n"),
            "{seed}: {p}: attempts {attempts:?}"
        );
    }
    // The new events are written (the kill points wait for them); each follows its
    // checkpoint, so a kill between the two loses at most one.
    assert!(
        r.count_events("foreach_item_completed") + kills
            >= each.iter().map(|e| e.items.len()).sum::<usize>(),
        "{seed}"
    );
    assert!(
        r.count_events("validation_attempt") + kills >= 2 * loops.len(),
        "{seed}"
    );
    nothing_left(r, seed);
}

#[test]
fn crash_sweep_inside_validate_loops_and_a_parallel_foreach_resumes_each_to_its_end() {
    if !have("flock", "crash_sweep_loops") {
        return;
    }
    let only: Option<usize> = std::env::var("PRODIGY_SWEEP")
        .ok()
        .and_then(|s| s.parse().ok());
    for (seed, &(form, kills)) in LOOP_SEEDS.iter().enumerate() {
        if only.is_some_and(|o| o != seed) {
            continue;
        }
        eprintln!("loop crash sweep: seed {seed}: {form:?} {kills:?}");
        let Some(r) = setup(&format!("loop-sweep-{seed}")) else {
            return;
        };
        let text = match form {
            Form::MapReduce => loop_sweep_workflow(&r.env.dir),
            Form::Standard => loop_standard_workflow(&r.env.dir),
        };
        let wf = r.wf("loops.yml", &text);
        let label = format!("loop seed {seed}");
        let mut at_kill: Vec<AtKill> = Vec::new();
        run_until_done(&r, &wf, kills, &label, |r| {
            let each = foreaches(form).iter();
            at_kill.push(
                each.map(|e| (each_done(r, e), lines_of(r, e.name).len()))
                    .collect(),
            );
        });
        loop_checks(&r, form, &label, at_kill.len(), &at_kill);
    }
}

/// A resume stopped before it reaches reduce (SIGINT while it waits for the killed run's
/// leftover item, which it then ends at once) leaves the job where it was: the next resume
/// continues reduce's `foreach` from its checkpoint and never runs the item that checkpoint
/// records as done again. (The stopped resume used to record the job's phase as `setup`,
/// which made the next one ignore the reduce checkpoint and start reduce over: loop sweep
/// seed 13's rare failure, a resume killed in that moment.)
#[test]
fn a_resume_stopped_before_reduce_keeps_the_reduce_foreach_progress_for_the_next() {
    let Some(r) = setup("resume-stopped-before-reduce") else {
        return;
    };
    const EACH: Each = Each {
        name: "each",
        items: &["a", "b"],
        parallel: 1,
        cp: Cp::Reduce,
        key: "_foreach.step1",
    };
    let wf = r.wf(
        "wf.yml",
        &r#"name: stopped-before-reduce
mode: mapreduce
setup:
  - shell: |
      printf '%s' '[{"id": "w1"}]' > items.json
      git add items.json && git commit -q -m "setup: items"
    commit_required: true
map:
  input: items.json
  agent_template:
    - shell: echo ${item_id} > out.txt && git add out.txt && git commit -q -m "item ${item_id}"
      commit_required: true
reduce:
  - foreach:
      foreach: [a, b]
      parallel: 1
      do:
        - shell: |
            echo ${item} >> @D/each
            if [ ${item} = b ]; then sleep 2; fi
"#
        .replace("@D", &r.env.dir.display().to_string()),
    );
    // The run, killed alone once `b` started (after `a`'s checkpoint): `b` lives on.
    let mut run = r.spawn(&["run", wf.to_str().unwrap(), "-y"], "run");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !lines_of(&r, "each").iter().any(|l| l == "b") {
        if let Some(st) = run.try_wait().unwrap() {
            let err = fs::read_to_string(r.env.dir.join("run.err")).unwrap_or_default();
            panic!("the run ended ({st}) before item b started: {err}");
        }
        assert!(Instant::now() < deadline, "item b never started");
        std::thread::sleep(Duration::from_millis(5));
    }
    kill(run.id() as i32, 9);
    assert_eq!(run.wait().unwrap().code(), None);
    assert_eq!(each_done(&r, &EACH), vec![0], "the reduce checkpoint");
    // A resume stopped while it waits for `b`.
    let mut resume = r.spawn(&["resume", r.session()["id"].as_str().unwrap()], "resume1");
    let err = r.env.dir.join("resume1.err");
    while !fs::read_to_string(&err)
        .unwrap_or_default()
        .contains("waiting up to 10s")
    {
        assert!(Instant::now() < deadline, "no wait for the leftover item");
        std::thread::sleep(Duration::from_millis(5));
    }
    kill(resume.id() as i32, 2);
    let code = resume.wait().unwrap().code();
    assert_eq!(
        code,
        Some(130),
        "{}",
        fs::read_to_string(&err).unwrap_or_default()
    );
    assert_eq!(each_done(&r, &EACH), vec![0], "the reduce checkpoint");
    let o = r.out(&["resume", r.session()["id"].as_str().unwrap(), "-y"]);
    assert_eq!(o.code, 0, "{o:?}");
    // `b` was cut by the kill: it runs again; `a` never does.
    assert_eq!(lines_of(&r, "each"), ["a", "b", "b"]);
    assert_eq!(r.session()["status"], "Completed");
    nothing_left(&r, "stopped before reduce");
}

fn counted_standard(r: &R) -> (PathBuf, PathBuf, PathBuf) {
    let count = r.env.dir.join("count.txt");
    let flag = r.env.dir.join("broken");
    fs::write(&flag, "").unwrap();
    let wf = r.wf(
        "five.yml",
        &format!(
            r#"name: five
commands:
  - shell: echo one >> {c}; echo first-capture
    capture_output: true
  - shell: echo two >> {c}
  - shell: |
      test ! -e {f} || exit 9
      echo three >> {c}
      echo "${{shell.output}}" > captured.txt && git add captured.txt && git commit -q -m "step three"
    commit_required: true
  - shell: echo four >> {c}
  - shell: echo five >> {c}
"#,
            c = count.display(),
            f = flag.display()
        ),
    );
    (wf, count, flag)
}

#[test]
fn a_standard_workflow_failed_at_step_3_resumes_steps_3_to_5_with_its_captures() {
    let Some(r) = setup("resume-standard") else {
        return;
    };
    let (wf, count, flag) = counted_standard(&r);
    let o = r.out(&["run", wf.to_str().unwrap(), "-y"]);
    assert_eq!(o.code, 1, "{o:?}");
    assert_eq!(fs::read_to_string(&count).unwrap(), "one\ntwo\n");
    let id = r.session()["id"].as_str().unwrap().to_string();
    let (o, v) = r.env.json(&["sessions", "ls", "--all-repos", "--json"]);
    assert_eq!(o.code, 0, "{o:?}");
    assert_eq!(
        v["sessions"][0]["resume"],
        format!("prodigy resume {id}"),
        "{v}"
    );
    let o = r.out(&["sessions", "ls", "--all-repos"]);
    assert!(
        o.stdout.contains(&format!("\tprodigy resume {id}\n")),
        "{o:?}"
    );
    let o = r.out(&["sessions", "show", &id]);
    assert!(
        o.stdout
            .contains(&format!("resume:       prodigy resume {id}")),
        "{o:?}"
    );
    fs::remove_file(&flag).unwrap();
    let o = r.out(&["resume", &id, "-y"]);
    assert_eq!(o.code, 0, "{o:?}");
    assert!(
        o.stderr
            .contains(&format!("resuming session {id} at step 3")),
        "{o:?}"
    );
    assert_eq!(
        fs::read_to_string(&count).unwrap(),
        "one\ntwo\nthree\nfour\nfive\n"
    );
    assert_eq!(
        fs::read_to_string(r.repo.join("captured.txt")).unwrap(),
        "first-capture\n"
    );
    assert!(main_log(&r.repo)[0].starts_with("Merge prodigy-session-"));
    let s = r.session();
    assert_eq!(s["status"], "Completed");
    assert_eq!(
        s["workflow_data"]["completed_steps"],
        serde_json::json!([0, 1, 2, 3, 4])
    );
    // Completed: a second resume is refused.
    let o = r.out(&["resume", &id]);
    assert_eq!(o.code, 3, "{o:?}");
    assert!(
        o.stderr.contains("is Completed; nothing to resume"),
        "{o:?}"
    );
}

#[test]
fn two_concurrent_resumes_run_the_step_once_and_the_second_names_the_lock_holder() {
    let Some(r) = setup("resume-concurrent") else {
        return;
    };
    let count = r.env.dir.join("count.txt");
    let flag = r.env.dir.join("broken");
    fs::write(&flag, "").unwrap();
    let wf = r.wf(
        "two.yml",
        &format!(
            "- shell: echo one\n- shell: \"test ! -e {} || exit 4; sleep 1; echo resumed >> {}\"\n",
            flag.display(),
            count.display()
        ),
    );
    assert_eq!(r.out(&["run", wf.to_str().unwrap(), "-y"]).code, 1);
    fs::remove_file(&flag).unwrap();
    let id = r.session()["id"].as_str().unwrap().to_string();
    let mut a = r.spawn(&["resume", &id, "-y"], "a");
    let mut b = r.spawn(&["resume", &id, "-y"], "b");
    let (ca, cb) = (a.wait().unwrap().code(), b.wait().unwrap().code());
    let mut codes = [ca.unwrap(), cb.unwrap()];
    codes.sort();
    assert_eq!(codes, [0, 3], "a {ca:?} b {cb:?}");
    let loser = if ca == Some(3) { "a" } else { "b" };
    let err = fs::read_to_string(r.env.dir.join(format!("{loser}.err"))).unwrap();
    assert!(err.contains("is being run or resumed by pid "), "{err}");
    assert!(err.contains(" since "), "{err}");
    assert_eq!(fs::read_to_string(&count).unwrap(), "resumed\n");
}

fn sleepy_mapreduce(r: &R, fail_flag: Option<&Path>) -> PathBuf {
    let check = fail_flag
        .map(|f| {
            format!(
                "case ${{item_id}} in w2|w5) test ! -e {} || exit 5;; esac\n        ",
                f.display()
            )
        })
        .unwrap_or_default();
    r.wf(
        "mr.yml",
        &format!(
            r#"name: mr
mode: mapreduce
map:
  input: "echo '[{{\"id\":\"w1\"}},{{\"id\":\"w2\"}},{{\"id\":\"w3\"}},{{\"id\":\"w4\"}},{{\"id\":\"w5\"}},{{\"id\":\"w6\"}}]'"
  max_parallel: 2
  agent_template:
    - shell: |
        {check}sleep 0.3
        echo ${{item_id}} > ${{item_id}}.txt && git add . && git commit -q -m "item ${{item_id}}"
      commit_required: true
reduce:
  - shell: echo "${{map.successful}}/${{map.total}}" > total.txt && git add . && git commit -q -m reduce
"#
        ),
    )
}

/// Run [`sleepy_mapreduce`] and stop it with signal `sig` once `after` agents completed; it
/// must exit with `code` (128 + the signal).
fn sleepy_stopped(r: &R, after: usize, sig: i32, code: i32) {
    let wf = sleepy_mapreduce(r, None);
    assert_eq!(
        run_with_kill_sig(
            r,
            &["run", wf.to_str().unwrap(), "-y"],
            "agent_completed",
            after,
            sig
        ),
        Some(code)
    );
}

#[test]
fn sigint_during_map_then_resume_by_job_id_merges_every_item_once() {
    let Some(r) = setup("resume-sigint") else {
        return;
    };
    let wf = sleepy_mapreduce(&r, None);
    let code = run_with_kill_sig(
        &r,
        &["run", wf.to_str().unwrap(), "-y"],
        "agent_completed",
        2,
        2,
    );
    assert_eq!(code, Some(130));
    let s = r.session();
    assert_eq!(s["status"], "Paused");
    let job = s["mapreduce_data"]["job_id"].as_str().unwrap().to_string();
    let o = r.out(&["resume", &job, "-y", "--json"]);
    assert_eq!(o.code, 0, "{o:?}");
    let v: Value = serde_json::from_str(&o.stdout).unwrap();
    assert_eq!(v["completed"], 6, "{v}");
    let log = main_log(&r.repo);
    for i in 1..=6 {
        assert_eq!(
            log.iter().filter(|l| **l == format!("item w{i}")).count(),
            1,
            "{log:?}"
        );
    }
    assert_eq!(
        fs::read_to_string(r.repo.join("total.txt")).unwrap(),
        "6/6\n"
    );
    assert_eq!(r.count_events("job_resumed"), 1);
    assert_eq!(r.count_events("job_paused"), 1);
}

fn run_with_kill_sig(r: &R, args: &[&str], after: &str, n: usize, sig: i32) -> Option<i32> {
    let mut child = r.spawn(args, "sig");
    let deadline = Instant::now() + Duration::from_secs(60);
    while r.count_events(after) < n {
        assert!(Instant::now() < deadline, "{after} x{n} never happened");
        if child.try_wait().unwrap().is_some() {
            panic!("ended before {after} x{n}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    kill(child.id() as i32, sig);
    child.wait().unwrap().code()
}

#[test]
fn dlq_retry_after_fixing_the_cause_merges_both_items_and_empties_the_queue() {
    let Some(r) = setup("resume-dlq") else {
        return;
    };
    let flag = r.env.dir.join("broken");
    fs::write(&flag, "").unwrap();
    let wf = sleepy_mapreduce(&r, Some(&flag));
    let o = r.out(&["run", wf.to_str().unwrap(), "-y", "--json"]);
    assert_eq!(o.code, 1, "{o:?}");
    let v: Value = serde_json::from_str(&o.stdout).unwrap();
    let job = v["job_id"].as_str().unwrap().to_string();
    assert_eq!(v["failed"], 2);
    // -n lists, changes nothing.
    let before = r.env.snapshot();
    let o = r.out(&["dlq", "retry", &job, "-n"]);
    assert_eq!(o.code, 0, "{o:?}");
    assert!(
        o.stdout.contains("would retry w2\t") && o.stdout.contains("would retry w5\t"),
        "{o:?}"
    );
    assert_eq!(r.env.snapshot(), before);
    // Still broken: both fail again, one more failure_history entry each.
    let o = r.out(&["dlq", "retry", &job, "-y"]);
    assert_eq!(o.code, 1, "{o:?}");
    let dlq: Value = serde_json::from_slice(
        &fs::read(r.env.p(&format!("dlq/work/{job}/dlq-items.json"))).unwrap(),
    )
    .unwrap();
    for it in dlq["items"].as_array().unwrap() {
        assert_eq!(it["failure_history"].as_array().unwrap().len(), 2, "{it}");
    }
    // Fixed: both merged, DLQ empty, history in the events.
    fs::remove_file(&flag).unwrap();
    let o = r.out(&["dlq", "retry", &job, "-y", "--json"]);
    assert_eq!(o.code, 0, "{o:?}");
    let dlq: Value = serde_json::from_slice(
        &fs::read(r.env.p(&format!("dlq/work/{job}/dlq-items.json"))).unwrap(),
    )
    .unwrap();
    assert_eq!(dlq["items"].as_array().unwrap().len(), 0, "{dlq}");
    let log = main_log(&r.repo);
    for i in 1..=6 {
        assert_eq!(
            log.iter().filter(|l| **l == format!("item w{i}")).count(),
            1,
            "{log:?}"
        );
    }
    assert!(r.repo.join("w2.txt").is_file() && r.repo.join("w5.txt").is_file());
    assert_eq!(r.count_events("dlq_item_removed"), 2);
    assert_eq!(r.count_events("dlq_item_added"), 4);
    // Reduce was not run again (no --reduce): it saw 4 of 6.
    assert_eq!(
        fs::read_to_string(r.repo.join("total.txt")).unwrap(),
        "4/6\n"
    );
    let branches = git(&r.repo, &["branch", "--format=%(refname:short)"]);
    assert_eq!(branches.trim(), "main", "{branches}");
}

#[test]
fn a_changed_workflow_file_is_refused_unless_forced() {
    let Some(r) = setup("resume-changed") else {
        return;
    };
    let (wf, count, flag) = counted_standard(&r);
    assert_eq!(r.out(&["run", wf.to_str().unwrap()]).code, 1);
    let id = r.session()["id"].as_str().unwrap().to_string();
    let text = fs::read_to_string(&wf).unwrap();
    fs::write(&wf, text.replace("echo five", "echo FIVE")).unwrap();
    fs::remove_file(&flag).unwrap();
    let o = r.out(&["resume", &id]);
    assert_eq!(o.code, 3, "{o:?}");
    assert!(
        o.stderr
            .contains("changed since the run started (step 5 was `shell: echo five >> ")
            && o.stderr.contains(", is `shell: echo FIVE >> "),
        "{o:?}"
    );
    assert!(o.stderr.contains("--force"), "{o:?}");
    assert_eq!(fs::read_to_string(&count).unwrap(), "one\ntwo\n");
    let o = r.out(&["resume", &id, "--force"]);
    assert_eq!(o.code, 0, "{o:?}");
    assert!(fs::read_to_string(&count)
        .unwrap()
        .ends_with("four\nFIVE\n"));
    // Without -y and without a terminal nothing is merged; the message says how.
    assert!(o.stderr.contains("merge by hand: git -C "), "{o:?}");
    assert_eq!(main_log(&r.repo), ["init"]);
}

#[test]
fn resume_waits_for_leftover_processes_then_kills_them_and_repairs_a_deleted_worktree() {
    let Some(r) = setup("resume-leftovers") else {
        return;
    };
    let started = r.env.dir.join("started");
    fs::create_dir_all(&started).unwrap();
    let wf = r.wf(
        "slow.yml",
        &format!(
            r#"name: slow
mode: mapreduce
map:
  input: "echo '[{{\"id\":\"a\"}},{{\"id\":\"b\"}}]'"
  max_parallel: 2
  agent_template:
    - shell: |
        test -e "$HOME/fast" || {{ touch {}/${{item_id}}; sleep 60; }}
        echo ${{item_id}} > ${{item_id}}.txt && git add . && git commit -q -m "item ${{item_id}}"
      commit_required: true
"#,
            started.display()
        ),
    );
    let mut child = r.spawn(&["run", wf.to_str().unwrap(), "-y"], "run");
    let deadline = Instant::now() + Duration::from_secs(30);
    while fs::read_dir(&started).unwrap().count() < 2 {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(20));
    }
    // Both agents have passed their `fast` test and are committed to the sleep (the marker is
    // made after the test: made before it, a slow machine let an agent see `fast` and finish
    // before the resume looked). SIGKILL prodigy alone: its two agents keep sleeping in their
    // worktrees.
    kill(child.id() as i32, 9);
    child.wait().unwrap();
    fs::write(r.env.home.join("fast"), "").unwrap();
    let t = Instant::now();
    let s = r.session();
    let job = s["mapreduce_data"]["job_id"].as_str().unwrap().to_string();
    let sid = s["id"].as_str().unwrap().to_string();
    // A process that is not part of the run (a user's shell looking at the worktree): named in
    // a warning, never killed.
    let mut bystander = Command::new("sleep")
        .arg("60")
        .current_dir(r.env.p(&format!("worktrees/work/{sid}")))
        .env_clear()
        .spawn()
        .unwrap();
    let o = r.out(&["resume", &job, "-y"]);
    let alive = bystander.try_wait().unwrap().is_none();
    let _ = bystander.kill();
    let _ = bystander.wait();
    assert!(alive, "resume killed a process that is not part of the run");
    assert_eq!(o.code, 0, "{o:?}");
    assert!(
        o.stderr
            .contains(&format!("process(es) {} work in", bystander.id()))
            && o.stderr
                .contains("not part of the run; they are left alone"),
        "{o:?}"
    );
    assert!(
        o.stderr
            .contains("process(es) of the interrupted run still work in"),
        "{o:?}"
    );
    assert!(
        t.elapsed() >= Duration::from_secs(10),
        "it waited 10 s first"
    );
    assert!(
        o.stderr.contains("took over the stale resume lock"),
        "{o:?}"
    );
    let log = main_log(&r.repo);
    assert_eq!(log.iter().filter(|l| *l == "item a").count(), 1, "{log:?}");
    assert_eq!(log.iter().filter(|l| *l == "item b").count(), 1, "{log:?}");

    // A paused run whose session worktree was deleted by hand: re-created from its branch.
    let r = setup("resume-rm-worktree").unwrap();
    sleepy_stopped(&r, 2, 2, 130);
    let s = r.session();
    let sid = s["id"].as_str().unwrap().to_string();
    fs::remove_dir_all(r.env.p(&format!("worktrees/work/{sid}"))).unwrap();
    let o = r.out(&["resume", &sid, "-y"]);
    assert_eq!(o.code, 0, "{o:?}");
    assert!(
        o.stderr.contains("re-created the session worktree"),
        "{o:?}"
    );
    let log = main_log(&r.repo);
    for i in 1..=6 {
        assert_eq!(
            log.iter().filter(|l| **l == format!("item w{i}")).count(),
            1,
            "{log:?}"
        );
    }
    assert!(!git(&r.repo, &["worktree", "list", "--porcelain"]).contains("prunable"));
}

#[test]
fn a_paused_run_left_mid_merge_with_a_stale_index_lock_is_repaired_and_finished() {
    let Some(r) = setup("resume-midmerge") else {
        return;
    };
    sleepy_stopped(&r, 1, 15, 143);
    let s = r.session();
    let sid = s["id"].as_str().unwrap().to_string();
    let wt = r.env.p(&format!("worktrees/work/{sid}"));
    // What a kill inside `git merge` leaves: a conflicted merge in progress, then an index.lock.
    git(&wt, &["checkout", "-q", "-b", "side", "HEAD~0"]);
    fs::write(wt.join("README.md"), "side\n").unwrap();
    git(&wt, &["commit", "-qam", "side"]);
    git(&wt, &["checkout", "-q", &format!("prodigy-{sid}")]);
    fs::write(wt.join("README.md"), "parent\n").unwrap();
    git(&wt, &["commit", "-qam", "parent edit"]);
    assert!(!git_cmd(&wt, &["merge", "side"])
        .output()
        .unwrap()
        .status
        .success());
    let lock = git(
        &wt,
        &[
            "rev-parse",
            "--path-format=absolute",
            "--git-path",
            "index.lock",
        ],
    );
    fs::write(lock.trim(), "").unwrap();
    let o = r.out(&["resume", &sid, "-y"]);
    assert_eq!(o.code, 0, "{o:?}");
    assert!(o.stderr.contains("removed the stale"), "{o:?}");
    assert!(o.stderr.contains("aborted a merge"), "{o:?}");
    let log = main_log(&r.repo);
    for i in 1..=6 {
        assert_eq!(
            log.iter().filter(|l| **l == format!("item w{i}")).count(),
            1,
            "{log:?}"
        );
    }
    git(&r.repo, &["branch", "-D", "side"]);
}

#[test]
fn lock_files_left_by_a_git_killed_with_the_run_are_removed_before_items_run_again() {
    // Seen in the crash sweep: a SIGKILL to prodigy's process group that lands inside a `git
    // update-ref -d` or `git worktree add -b` leaves `packed-refs.lock`; with it no branch can be
    // deleted, so an item that runs again found its old branch, could not make its worktree and
    // went to the DLQ, and every merged branch was left behind.
    let Some(r) = setup("resume-git-locks") else {
        return;
    };
    sleepy_stopped(&r, 2, 2, 130);
    let s = r.session();
    let sid = s["id"].as_str().unwrap().to_string();
    let job = s["mapreduce_data"]["job_id"].as_str().unwrap().to_string();
    // w6 has not run: its branch is one of an earlier attempt, which it must replace.
    let stale = format!("prodigy-agent-{job}-w6");
    if git(&r.repo, &["branch", "--list", &stale])
        .trim()
        .is_empty()
    {
        git(&r.repo, &["branch", &stale, "main"]);
    }
    let common = PathBuf::from(
        git(
            &r.repo,
            &["rev-parse", "--path-format=absolute", "--git-common-dir"],
        )
        .trim(),
    );
    let wt = r.env.p(&format!("worktrees/work/{sid}"));
    let private =
        PathBuf::from(git(&wt, &["rev-parse", "--path-format=absolute", "--git-dir"]).trim());
    let locks = [
        common.join("packed-refs.lock"),
        common.join(format!("refs/heads/{stale}.lock")),
        private.join("HEAD.lock"),
    ];
    for l in &locks {
        fs::write(l, "").unwrap();
    }
    let o = r.out(&["resume", &job, "-y"]);
    assert_eq!(o.code, 0, "{o:?}");
    for l in &locks {
        assert!(
            o.stderr.contains(&format!(
                "removed the stale `{}` of a killed git",
                l.display()
            )),
            "{o:?}"
        );
        assert!(!l.exists(), "{}", l.display());
    }
    let log = main_log(&r.repo);
    for i in 1..=6 {
        assert_eq!(
            log.iter().filter(|l| **l == format!("item w{i}")).count(),
            1,
            "{log:?}"
        );
    }
    let dlq = r.env.p(&format!("dlq/work/{job}/dlq-items.json"));
    if dlq.exists() {
        let v: Value = serde_json::from_slice(&fs::read(&dlq).unwrap()).unwrap();
        assert_eq!(v["items"].as_array().unwrap().len(), 0, "{v}");
    }
    let branches = git(&r.repo, &["branch", "--format=%(refname:short)"]);
    assert_eq!(branches.trim(), "main", "{branches}");
}

#[test]
fn an_interrupted_final_merge_in_the_users_checkout_is_aborted_and_made_again() {
    let Some(r) = setup("resume-final-merge") else {
        return;
    };
    sleepy_stopped(&r, 6, 15, 143);
    let sid = r.session()["id"].as_str().unwrap().to_string();
    // What a kill inside the final `git merge` leaves in the user's checkout: MERGE_HEAD.
    let m = git_cmd(
        &r.repo,
        &["merge", "--no-commit", "--no-ff", &format!("prodigy-{sid}")],
    )
    .output()
    .unwrap();
    assert!(m.status.success(), "{m:?}");
    let o = r.out(&["resume", &sid, "-y"]);
    assert_eq!(o.code, 0, "{o:?}");
    assert!(o.stderr.contains("aborted the interrupted merge"), "{o:?}");
    let log = main_log(&r.repo);
    assert_eq!(
        log.iter()
            .filter(|l| l.starts_with(&format!("Merge prodigy-{sid}")))
            .count(),
        1,
        "{log:?}"
    );
    assert_eq!(git(&r.repo, &["status", "--porcelain"]), "");
    assert_eq!(r.session()["status"], "Completed");
}

#[test]
fn a_half_made_session_worktree_is_removed_and_made_again_from_the_base_commit() {
    let Some(r) = setup("resume-half-made") else {
        return;
    };
    let flag = r.env.dir.join("broken");
    fs::write(&flag, "").unwrap();
    let wf = r.wf(
        "one.yml",
        &format!(
            "- shell: \"test ! -e {} || exit 3; echo x > x.txt; git add x.txt; git commit -qm x\"\n  commit_required: true\n",
            flag.display()
        ),
    );
    assert_eq!(r.out(&["run", wf.to_str().unwrap(), "-y"]).code, 1);
    let s = r.session();
    let sid = s["id"].as_str().unwrap().to_string();
    // What a kill inside `git worktree add` leaves: the record without `created`, and a checkout
    // without its files or index (a commit there would drop the user's README.md).
    let p = r.env.p(&format!("sessions/{sid}.json"));
    let mut v: Value = serde_json::from_slice(&fs::read(&p).unwrap()).unwrap();
    v["metadata"]["worktree"]
        .as_object_mut()
        .unwrap()
        .remove("created");
    fs::write(&p, serde_json::to_vec_pretty(&v).unwrap()).unwrap();
    let wt = r.env.p(&format!("worktrees/work/{sid}"));
    fs::remove_file(wt.join("README.md")).unwrap();
    let index = git(
        &wt,
        &["rev-parse", "--path-format=absolute", "--git-path", "index"],
    );
    fs::remove_file(index.trim()).unwrap();
    fs::remove_file(&flag).unwrap();
    let o = r.out(&["resume", &sid, "-y"]);
    assert_eq!(o.code, 0, "{o:?}");
    assert!(
        o.stderr.contains("removed the half-made session worktree"),
        "{o:?}"
    );
    assert_eq!(
        fs::read_to_string(r.repo.join("README.md")).unwrap(),
        "hello\n"
    );
    assert_eq!(fs::read_to_string(r.repo.join("x.txt")).unwrap(), "x\n");
    assert_eq!(r.session()["metadata"]["worktree"]["created"], true);
}

/// Where a kill lands around the move of a failed agent's worktree out of the session worktree
/// (run.md §4): before `git worktree move` starts, inside it (the directory renamed, git's
/// record still naming the old place, as git itself does it), or right after it.
#[derive(Clone, Copy, Debug)]
enum AtMove {
    Before,
    Torn,
    After,
    /// No kill: git refuses the move, as it does for a worktree with submodules.
    Refused,
}

/// A `git` first on PATH that kills prodigy (its parent) at `at` of the first
/// `git worktree move`, and otherwise runs the real git.
fn killing_git(r: &R, at: AtMove) -> String {
    let real = Command::new("sh")
        .args(["-c", "command -v git"])
        .output()
        .unwrap();
    let real = String::from_utf8(real.stdout).unwrap().trim().to_string();
    let bin = r.env.dir.join("killing-git");
    fs::create_dir_all(&bin).unwrap();
    // The wrapper leaves the worktree before it kills prodigy: it outlives prodigy by a moment,
    // and a process whose cwd is in the agent's worktree makes clean (rightly) call the run
    // active (seen under load in CI's emulation).
    let act = match at {
        AtMove::Before => "cd /; kill -9 $PPID; exit 1".to_string(),
        AtMove::Torn => r#"mv "$5" "$6"; cd /; kill -9 $PPID; exit 1"#.to_string(),
        AtMove::After => format!(r#""{real}" "$@"; cd /; kill -9 $PPID; exit 1"#),
        AtMove::Refused => {
            "echo 'fatal: working trees containing submodules cannot be moved or removed' >&2; exit 128"
                .to_string()
        }
    };
    let script = format!(
        "#!/bin/sh\nif [ \"$3 $4\" = \"worktree move\" ]; then\n  {act}\nfi\nexec \"{real}\" \"$@\"\n"
    );
    let p = bin.join("git");
    fs::write(&p, script).unwrap();
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).unwrap();
    format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

/// No gitlink (an embedded repository) and no `agent-*` path in `rev`'s tree.
fn no_embedded_repository(repo: &Path, rev: &str) {
    let tree = git(repo, &["ls-tree", "-r", "--full-tree", rev]);
    for l in tree.lines() {
        let path = l.split('\t').nth(1).unwrap_or("");
        assert!(
            !l.starts_with("160000") && !path.split('/').any(|c| c.starts_with("agent-")),
            "{rev}: {l}\n{tree}"
        );
    }
}

#[test]
fn a_kill_around_the_move_of_a_failed_agents_worktree_resumes_to_it_beside_the_session() {
    for at in [AtMove::Before, AtMove::Torn, AtMove::After] {
        let Some(r) = setup(&format!("resume-move-{at:?}")) else {
            return;
        };
        let wf = r.wf(
            "mr.yml",
            r#"name: mr
mode: mapreduce
map:
  input: "echo '[{\"id\":\"a\"},{\"id\":\"b\"},{\"id\":\"c\"}]'"
  max_parallel: 1
  agent_template:
    - shell: |
        echo ${item_id} > ${item_id}.txt && git add ${item_id}.txt && git commit -q -m "item ${item_id}"
        if [ ${item_id} = b ]; then echo wip > wip.txt; exit 4; fi
      commit_required: true
reduce:
  - shell: echo "${map.successful}/${map.total}" > total.txt && git add -A && git commit -q -m reduce
"#,
        );
        let path = killing_git(&r, at);
        let o = Out::from(
            r.cmd(&["run", wf.to_str().unwrap(), "-y"])
                .env("PATH", &path)
                .output()
                .unwrap(),
        );
        assert_eq!(o.code, -1, "{at:?}: killed by SIGKILL: {o:?}");
        let s = r.session();
        let sid = s["id"].as_str().unwrap().to_string();
        let job = s["mapreduce_data"]["job_id"].as_str().unwrap().to_string();
        let nested = r.env.p(&format!("worktrees/work/{sid}/agent-b"));
        let beside = r.env.p(&format!("worktrees/work/{sid}.agent-b"));
        match at {
            AtMove::Before => assert!(nested.is_dir() && !beside.exists(), "{at:?}"),
            _ => assert!(!nested.exists() && beside.is_dir(), "{at:?}"),
        }
        // A process that outlived prodigy by a moment (the git wrapper, or a git it started)
        // makes clean call the run active while it works in a worktree, which is right; wait
        // until clean's dry run sees the run as what it is once they are gone (CI under load).
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let (_, c) = r.env.json(&[
                "clean",
                "--all-repos",
                "--dry-run",
                "--json",
                "--older-than",
                "0s",
            ]);
            if c["sessions"] != serde_json::json!({"active": 1}) || Instant::now() > deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        // clean, even forced and with no retention, takes nothing of the resumable run, prunes
        // no git record of it, and calls nothing unknown.
        let (o, c) = r.env.json(&[
            "clean",
            "--all-repos",
            "--force",
            "--json",
            "--older-than",
            "0s",
        ]);
        assert_eq!(o.code, 0, "{at:?}: {o:?}");
        assert!(removed_paths(&c).is_empty(), "{at:?}: {c}");
        assert_eq!(
            c["sessions"],
            serde_json::json!({"resumable": 1}),
            "{at:?}: {c}"
        );
        let wl = git(&r.repo, &["worktree", "list", "--porcelain"]);
        assert_eq!(
            wl.lines().filter(|l| l.starts_with("worktree ")).count(),
            3,
            "{at:?}: main, session, agent b: {wl}"
        );
        let o = r.out(&["resume", &job, "-y"]);
        assert_eq!(o.code, 1, "{at:?}: item b fails again: {o:?}");
        let log = main_log(&r.repo);
        for i in ["a", "c"] {
            assert_eq!(
                log.iter().filter(|l| **l == format!("item {i}")).count(),
                1,
                "{at:?}: {log:?}"
            );
        }
        assert_eq!(log.iter().filter(|l| *l == "reduce").count(), 1, "{log:?}");
        no_embedded_repository(&r.repo, "main");
        assert_eq!(
            fs::read_to_string(r.repo.join("total.txt")).unwrap(),
            "2/3\n"
        );
        let dlq: Value = serde_json::from_slice(
            &fs::read(r.env.p(&format!("dlq/work/{job}/dlq-items.json"))).unwrap(),
        )
        .unwrap();
        let items = dlq["items"].as_array().unwrap();
        assert_eq!(items.len(), 1, "{at:?}: {dlq}");
        assert_eq!(items[0]["item_id"], "b");
        assert_eq!(
            items[0]["failure_history"].as_array().unwrap().len(),
            1,
            "{dlq}"
        );
        assert_eq!(items[0]["worktree_path"], beside.to_str().unwrap(), "{dlq}");
        assert!(
            !r.env.p(&format!("worktrees/work/{sid}")).exists(),
            "{at:?}"
        );
        assert_eq!(fs::read_to_string(beside.join("wip.txt")).unwrap(), "wip\n");
        let wl = git(&r.repo, &["worktree", "list", "--porcelain"]);
        assert!(!wl.contains("prunable"), "{at:?}: {wl}");
        assert!(
            wl.contains(&format!("worktree {}\n", beside.display())),
            "{wl}"
        );
        let branches = git(&r.repo, &["branch", "--format=%(refname:short)"]);
        let mut b: Vec<&str> = branches.lines().collect();
        b.sort();
        assert_eq!(
            b,
            ["main".to_string(), format!("prodigy-agent-{job}-b")],
            "{at:?}"
        );
        assert_eq!(git(&r.repo, &["status", "--porcelain"]), "", "{at:?}");
        let o = r.out(&["checkpoints", "verify", "--all-repos"]);
        assert_eq!(o.code, 0, "{at:?}: {o:?}");
    }
}

#[test]
fn when_git_refuses_to_move_a_failed_agents_worktree_it_is_renamed_and_gits_record_repaired() {
    let Some(r) = setup("resume-move-refused") else {
        return;
    };
    let wf = r.wf(
        "mr.yml",
        r#"name: mr
mode: mapreduce
map:
  input: "echo '[{\"id\":\"a\"},{\"id\":\"b\"}]'"
  agent_template:
    - shell: |
        echo ${item_id} > ${item_id}.txt && git add ${item_id}.txt && git commit -q -m "item ${item_id}"
        if [ ${item_id} = b ]; then echo wip > wip.txt; exit 4; fi
reduce:
  - shell: echo "${map.successful}/${map.total}" > total.txt && git add -A && git commit -q -m reduce
"#,
    );
    let path = killing_git(&r, AtMove::Refused);
    let o = Out::from(
        r.cmd(&["run", wf.to_str().unwrap(), "-y"])
            .env("PATH", &path)
            .output()
            .unwrap(),
    );
    assert_eq!(o.code, 1, "{o:?}");
    assert!(o.stderr.contains("cannot move worktree"), "{o:?}");
    let s = r.session();
    let sid = s["id"].as_str().unwrap().to_string();
    let beside = r.env.p(&format!("worktrees/work/{sid}.agent-b"));
    assert_eq!(fs::read_to_string(beside.join("wip.txt")).unwrap(), "wip\n");
    assert!(!r.env.p(&format!("worktrees/work/{sid}")).exists());
    no_embedded_repository(&r.repo, "main");
    let wl = git(&r.repo, &["worktree", "list", "--porcelain"]);
    assert!(!wl.contains("prunable"), "{wl}");
    assert!(
        wl.contains(&format!("worktree {}\n", beside.display())),
        "{wl}"
    );
    assert_eq!(git(&beside, &["log", "-1", "--format=%s"]).trim(), "item b");
}

/// Kill points around a failed item's move and the final merge that follows it: the move
/// (`worktree_moved`), the failure recorded (`agent_failed`, `dlq_item_added`), reduce done,
/// the final merge made but the session worktree not yet removed, the session worktree and
/// branch removed but the session not yet Completed; prodigy alone and its group.
const FAILING_SEEDS: &[Kill] = &[
    k("worktree_moved", 1, 0, false),
    k("worktree_moved", 1, 0, true),
    k("agent_failed", 1, 0, false),
    k("dlq_item_added", 1, 0, true),
    k("reduce_step_completed", 1, 0, false),
    k("worktree_merged", 4, 0, false),
    k("worktree_merged", 4, 0, true),
    k("worktree_cleaned", 4, 0, false),
];

#[test]
fn crash_sweep_with_a_failing_item_ends_with_it_beside_the_session_and_no_embedded_repository() {
    if !have("flock", "crash_sweep_failing") {
        return;
    }
    for (seed, kp) in FAILING_SEEDS.iter().enumerate() {
        eprintln!("failing crash sweep: seed {seed}: {kp:?}");
        let Some(r) = setup(&format!("sweep-fail-{seed}")) else {
            return;
        };
        let wf = r.wf(
            "mr.yml",
            r#"name: mr
mode: mapreduce
map:
  input: "echo '[{\"id\":\"w1\"},{\"id\":\"w2\"},{\"id\":\"w3\"},{\"id\":\"w4\"}]'"
  max_parallel: 2
  agent_template:
    - shell: |
        echo ${item_id} > ${item_id}.txt && git add ${item_id}.txt && git commit -q -m "item ${item_id}"
        if [ ${item_id} = w3 ]; then echo wip > wip.txt; exit 4; fi
reduce:
  - shell: echo "${map.successful}/${map.total}" > total.txt && git add -A && git commit -q -m reduce
"#,
        );
        let mut code = run_with_kill(&r, &["run", wf.to_str().unwrap(), "-y"], Some(*kp), "run");
        eprintln!("seed {seed}: the run ended with {code:?} (None: killed)");
        invariants(&r, &format!("seed {seed} after run"));
        let mut round = 0;
        // A kill that lands after the session is Completed (the last writes) ends it too.
        while code.is_none() && r.session()["status"] != "Completed" {
            round += 1;
            assert!(round <= 3, "seed {seed}: no end after {round} resumes");
            let job = r.session()["mapreduce_data"]["job_id"]
                .as_str()
                .unwrap()
                .to_string();
            code = run_with_kill(&r, &["resume", &job, "-y"], None, &format!("resume{round}"));
            invariants(&r, &format!("seed {seed} after resume {round}"));
        }
        let err =
            fs::read_to_string(r.env.dir.join(format!("resume{round}.err"))).unwrap_or_default();
        assert!(
            code.is_none() || code == Some(1),
            "seed {seed}: {code:?}: {err}"
        );
        let s = r.session();
        assert_eq!(s["status"], "Completed", "seed {seed}: {s}");
        let sid = s["id"].as_str().unwrap().to_string();
        let job = s["mapreduce_data"]["job_id"].as_str().unwrap().to_string();
        let log = main_log(&r.repo);
        for i in ["w1", "w2", "w4"] {
            assert_eq!(
                log.iter().filter(|l| **l == format!("item {i}")).count(),
                1,
                "seed {seed}: {log:?}"
            );
        }
        assert!(!log.iter().any(|l| l == "item w3"), "seed {seed}: {log:?}");
        assert_eq!(
            log.iter().filter(|l| *l == "reduce").count(),
            1,
            "seed {seed}: {log:?}"
        );
        no_embedded_repository(&r.repo, "main");
        let dlq: Value = serde_json::from_slice(
            &fs::read(r.env.p(&format!("dlq/work/{job}/dlq-items.json"))).unwrap(),
        )
        .unwrap();
        let items = dlq["items"].as_array().unwrap();
        assert_eq!(items.len(), 1, "seed {seed}: {dlq}");
        let beside = r.env.p(&format!("worktrees/work/{sid}.agent-w3"));
        assert_eq!(
            items[0]["worktree_path"],
            beside.to_str().unwrap(),
            "seed {seed}"
        );
        assert_eq!(fs::read_to_string(beside.join("wip.txt")).unwrap(), "wip\n");
        let mut names: Vec<String> = fs::read_dir(r.env.p("worktrees/work"))
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, [format!("{sid}.agent-w3")], "seed {seed}");
        let branches = git(&r.repo, &["branch", "--format=%(refname:short)"]);
        let mut b: Vec<&str> = branches.lines().collect();
        b.sort();
        assert_eq!(
            b,
            ["main".to_string(), format!("prodigy-agent-{job}-w3")],
            "seed {seed}"
        );
        let wl = git(&r.repo, &["worktree", "list", "--porcelain"]);
        assert!(!wl.contains("prunable"), "seed {seed}: {wl}");
        assert_eq!(
            wl.lines().filter(|l| l.starts_with("worktree ")).count(),
            2,
            "{wl}"
        );
        assert_eq!(git(&r.repo, &["status", "--porcelain"]), "", "seed {seed}");
    }
}

/// A run killed during its final merge whose `git merge` lives on in the user's checkout (here
/// a `git` wrapper that holds `.git/index.lock` for 4 s, kills prodigy, then merges): the
/// resume waits for that git (it carries the run's `PRODIGY_SESSION_ID`, run.md §6) instead of
/// merging beside it, which failed with "Unable to create … index.lock" (seen once in the loop
/// sweep as "Unable to write index").
#[test]
fn a_resume_waits_for_the_killed_runs_git_merge_in_the_checkout() {
    let Some(r) = setup("resume-waits-for-merge") else {
        return;
    };
    let (o, _) = killed_in_final_merge(
        &r,
        "slow-merge-git",
        "touch .git/index.lock; kill -9 $PPID; sleep 4; rm -f .git/index.lock; exec \"REAL\" \"$@\"",
    );
    assert_eq!(o.code, 0, "{o:?}");
    assert!(
        o.stderr
            .contains("process(es) of the interrupted run still work in"),
        "{o:?}"
    );
    assert_eq!(fs::read_to_string(r.repo.join("one.txt")).unwrap(), "one\n");
    assert!(!r.repo.join(".git/index.lock").exists());
    let st = git(&r.repo, &["status", "--porcelain"]);
    assert_eq!(st, "", "the user's checkout is clean");
    assert_eq!(r.session()["status"], "Completed", "{o:?}");
}

/// A run whose final `git merge` in the user's checkout is SIGKILLed where a `git` wrapper
/// says (`act`, run in the checkout with the branch as `$last`), then resumed; returns the
/// resume's output.
fn killed_in_final_merge(r: &R, name: &str, act: &str) -> (Out, String) {
    killed_in_final_merge_of(
        r,
        name,
        act,
        "name: one\ncommands:\n  - shell: echo one > one.txt && git add one.txt && git commit -q -m one\n    commit_required: true\n",
    )
}

/// [`killed_in_final_merge`] of the workflow `text`.
fn killed_in_final_merge_of(r: &R, name: &str, act: &str, text: &str) -> (Out, String) {
    let wf = r.wf("one.yml", text);
    let real = Command::new("sh")
        .args(["-c", "command -v git"])
        .output()
        .unwrap();
    let real = String::from_utf8(real.stdout).unwrap().trim().to_string();
    let bin = r.env.dir.join(name);
    fs::create_dir_all(&bin).unwrap();
    let checkout = fs::canonicalize(&r.repo).unwrap();
    let act = act.replace("REAL", &real);
    let script = format!(
        "#!/bin/sh\nif [ \"$3\" = merge ] && [ \"$(pwd -P)\" = \"{c}\" ]; then\n  for a; do last=$a; done\n  {act}\n  kill -9 $PPID\n  exit 1\nfi\nexec \"{real}\" \"$@\"\n",
        c = checkout.display()
    );
    let p = bin.join("git");
    fs::write(&p, script).unwrap();
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let o = Out::from(
        r.cmd(&["run", wf.to_str().unwrap(), "-y"])
            .env("PATH", &path)
            .output()
            .unwrap(),
    );
    assert_eq!(o.code, -1, "killed by SIGKILL in its final merge: {o:?}");
    let sid = r.session()["id"].as_str().unwrap().to_string();
    (r.out(&["resume", &sid, "-y"]), sid)
}

/// What must hold once such a resume merged.
fn merged_once_and_clean(r: &R, o: &Out, sid: &str, lock: &str) {
    assert_eq!(o.code, 0, "{o:?}");
    assert!(
        o.stderr
            .contains(&format!("{lock}` of an interrupted git of this session")),
        "{o:?}"
    );
    assert_eq!(fs::read_to_string(r.repo.join("one.txt")).unwrap(), "one\n");
    assert!(!r.repo.join(".git").join(lock).exists());
    assert!(!r.repo.join(".git/MERGE_HEAD").exists());
    let st = git(&r.repo, &["status", "--porcelain"]);
    assert_eq!(st, "", "the user's checkout is clean");
    let subjects = git(&r.repo, &["log", "--format=%s", "-3"]);
    assert!(
        subjects.starts_with(&format!("Merge prodigy-{sid}")),
        "{subjects}"
    );
    assert_eq!(r.session()["status"], "Completed", "{o:?}");
}

/// Killed after its merge wrote `MERGE_HEAD`, holding `HEAD.lock` (the loop sweep's group
/// kill): the resume removes the stale lock, aborts its own merge and merges again (run.md §6).
#[test]
fn a_resume_removes_the_stale_locks_of_its_own_killed_final_merge() {
    let Some(r) = setup("resume-merge-locks") else {
        return;
    };
    let (o, sid) = killed_in_final_merge(
        &r,
        "killed-merge-git",
        "\"REAL\" merge -q --no-ff --no-commit \"$last\" >/dev/null 2>&1; touch .git/HEAD.lock",
    );
    merged_once_and_clean(&r, &o, &sid, "HEAD.lock");
}

/// Killed before its merge wrote anything but `index.lock` (the crash sweep's seed 18: "Unable
/// to write index."): a lock made since the session started is the session's to remove.
#[test]
fn a_resume_removes_an_index_lock_its_killed_merge_left_before_merge_head() {
    let Some(r) = setup("resume-merge-index-lock") else {
        return;
    };
    let (o, sid) = killed_in_final_merge(&r, "killed-early-git", "touch .git/index.lock");
    merged_once_and_clean(&r, &o, &sid, "index.lock");
}

/// A `git` wrapper act for [`killed_in_final_merge`]: write the branch's version of every path
/// it changed where the checkout has no file, the way the killed `git merge` had written them
/// when the kill came (no index, no `MERGE_HEAD`, no commit).
const WRITE_BRANCH_FILES: &str = "for f in $(\"REAL\" diff --name-only HEAD...\"$last\"); do [ -e \"$f\" ] || \"REAL\" show \"$last:$f\" > \"$f\"; done";

/// What must hold once the resume after a final merge killed with the branch's files written
/// into the checkout finished: those files put back, the branch merged once, the checkout clean.
fn put_back_and_merged_once(r: &R, o: &Out, sid: &str) {
    put_back_and_merged_once_with(r, o, sid, ("one.txt", "one\n", "one"));
}

/// [`put_back_and_merged_once`] of a branch whose one commit `subject` left `file` as `content`.
fn put_back_and_merged_once_with(
    r: &R,
    o: &Out,
    sid: &str,
    (file, content, subject): (&str, &str, &str),
) {
    assert_eq!(o.code, 0, "{o:?}");
    assert!(
        o.stderr.contains(&format!(
            "put back 1 file(s) that the interrupted merge of `prodigy-{sid}` left in"
        )),
        "{o:?}"
    );
    assert_eq!(fs::read_to_string(r.repo.join(file)).unwrap(), content);
    assert!(!r.repo.join(".git/MERGE_HEAD").exists());
    let st = git(&r.repo, &["status", "--porcelain", "--untracked-files=all"]);
    assert_eq!(st, "", "the user's checkout is clean");
    let log = main_log(&r.repo);
    let merge = format!("Merge prodigy-{sid} (prodigy session {sid})");
    assert_eq!(
        log.iter().filter(|l| **l == merge).count(),
        1,
        "{merge} not exactly once in {log:?}"
    );
    assert_eq!(log.iter().filter(|l| *l == subject).count(), 1, "{log:?}");
    let s = r.session();
    assert_eq!(s["status"], "Completed", "{o:?}");
    assert!(
        s["metadata"]["worktree"].get("final_merging").is_none(),
        "{s}"
    );
}

/// The loop crash sweep's seed 16, without timing luck: killed inside the final merge after git
/// wrote the branch's new file into the checkout (untracked: no index, no `MERGE_HEAD`, no
/// commit). The resumed merge refused it ("untracked working tree files would be overwritten
/// by merge"); now the resume removes the file the merge wrote and merges again.
#[test]
fn a_resume_puts_back_the_files_its_killed_final_merge_wrote_into_the_checkout() {
    let Some(r) = setup("resume-final-half-merge") else {
        return;
    };
    let (o, sid) = killed_in_final_merge(&r, "final-half-merge-git", WRITE_BRANCH_FILES);
    put_back_and_merged_once(&r, &o, &sid);
}

/// Killed after git wrote the merged files and the index (the branch's new file staged).
#[test]
fn a_resume_puts_back_the_files_and_index_its_killed_final_merge_wrote() {
    let Some(r) = setup("resume-final-half-merge-index") else {
        return;
    };
    let (o, sid) = killed_in_final_merge(
        &r,
        "final-half-merge-index-git",
        "\"REAL\" read-tree -m -u HEAD \"$last\" || exit 1",
    );
    put_back_and_merged_once(&r, &o, &sid);
}

/// Killed while git wrote a file of the merge: git creates it, then writes it, so the kill
/// leaves it empty or cut short (about one kill in a hundred inside a merge of a few small files;
/// the loop crash sweep failed so in CI with "untracked working tree files would be overwritten
/// by merge"). A file modified since the merge started that holds a strict prefix of the
/// branch's content is the merge's: put back, and the branch merged once.
#[test]
fn a_resume_puts_back_a_file_its_killed_final_merge_left_empty_or_cut_short() {
    for (tag, act) in [
        ("empty", ": > one.txt"),
        ("cut-short", "printf on > one.txt"),
    ] {
        let Some(r) = setup(&format!("resume-final-merge-{tag}")) else {
            return;
        };
        let (o, sid) = killed_in_final_merge(&r, &format!("final-merge-{tag}-git"), act);
        put_back_and_merged_once(&r, &o, &sid);
    }
}

/// Killed after git unlinked a tracked file the branch changes, before it wrote the new one:
/// the file is missing; checked out from HEAD (the merge starts only on a checkout without
/// tracked changes, so nothing of the user's is lost), then the branch is merged once.
#[test]
fn a_resume_puts_back_a_tracked_file_its_killed_final_merge_unlinked() {
    let Some(r) = setup("resume-final-merge-unlinked") else {
        return;
    };
    let (o, sid) = killed_in_final_merge_of(
        &r,
        "final-merge-unlinked-git",
        "rm README.md",
        "name: readme\ncommands:\n  - shell: echo changed > README.md && git commit -q -am readme\n    commit_required: true\n",
    );
    put_back_and_merged_once_with(&r, &o, &sid, ("README.md", "changed\n", "readme"));
}

/// An empty file of the user's at a path the branch adds, older than the merge (a prefix of
/// the branch's content, but not written by it), is kept byte for byte; the merge refuses.
#[test]
fn a_resume_leaves_the_users_older_empty_file_where_its_killed_final_merge_would_write() {
    let Some(r) = setup("resume-final-merge-old-empty") else {
        return;
    };
    let f = r.repo.join("one.txt");
    fs::write(&f, b"").unwrap();
    let t = Command::new("touch")
        .args(["-d", "@946684800"])
        .arg(&f)
        .status()
        .unwrap();
    assert!(t.success());
    let (o, _) = killed_in_final_merge(&r, "final-merge-old-empty-git", "true");
    assert_eq!(o.code, 1, "{o:?}");
    assert!(
        o.stdout
            .contains("untracked working tree files would be overwritten by merge"),
        "{o:?}"
    );
    assert!(!o.stderr.contains("put back"), "{o:?}");
    assert_eq!(fs::read(&f).unwrap(), b"");
}

/// The user's own untracked file at a path the branch adds, with other content than the
/// branch's, is never the killed merge's: it survives byte for byte and the resumed merge
/// fails as git refuses to overwrite it (exit 1, as before the undo existed).
#[test]
fn a_resume_leaves_the_users_file_where_its_killed_final_merge_would_write() {
    let Some(r) = setup("resume-final-half-merge-user") else {
        return;
    };
    fs::write(r.repo.join("one.txt"), b"mine, not the branch's\n").unwrap();
    let (o, sid) = killed_in_final_merge(&r, "final-half-merge-user-git", WRITE_BRANCH_FILES);
    assert_eq!(o.code, 1, "{o:?}");
    assert!(
        o.stdout.contains("final merge failed")
            && o.stdout
                .contains("untracked working tree files would be overwritten by merge"),
        "{o:?}"
    );
    assert!(!o.stderr.contains("put back"), "{o:?}");
    assert_eq!(
        fs::read(r.repo.join("one.txt")).unwrap(),
        b"mine, not the branch's\n"
    );
    let log = main_log(&r.repo);
    assert!(
        !log.iter()
            .any(|l| l.starts_with(&format!("Merge prodigy-{sid}"))),
        "{log:?}"
    );
}

/// A MapReduce run whose second agent merge into the session worktree a `git` wrapper cuts
/// short the way a SIGKILL inside `git merge` does (git writes the merged files, then the
/// index, then the commit; no `MERGE_HEAD` without a conflict): it makes the merge's files and
/// index (`git read-tree -m -u`), with `leave_lock` moves that index to `index.lock` and puts
/// the old one back (killed before the index was written), then SIGKILLs prodigy. Setup leaves
/// an untracked `scratch.txt` and an unstaged change of `base.txt` in the session worktree,
/// which reduce commits as `seen.txt`. Returns the resume's output and the job id.
fn killed_in_an_agent_merge(r: &R, leave_lock: bool) -> (Out, String) {
    let wf = r.wf(
        "halfmerge.yml",
        r#"name: halfmerge
mode: mapreduce
setup:
  - shell: |
      printf '%s' '[{"id": "a"}, {"id": "b"}, {"id": "c"}]' > items.json
      echo base > base.txt
      for i in a b c; do echo "$i" > "notes-$i.txt"; done
      git add items.json base.txt notes-*.txt && git commit -q -m "setup: items"
    commit_required: true
  - shell: echo scratch > scratch.txt && echo changed >> base.txt
map:
  input: items.json
  max_parallel: 1
  agent_template:
    - shell: |
        echo "${item_id}" > "out-${item_id}.txt"
        echo more >> "notes-${item_id}.txt"
        git add "out-${item_id}.txt" "notes-${item_id}.txt" && git commit -q -m "item ${item_id}"
      commit_required: true
reduce:
  - shell: |
      cat scratch.txt base.txt > seen.txt && git add seen.txt && git commit -q -m "reduce: seen"
    commit_required: true
"#,
    );
    let real = Command::new("sh")
        .args(["-c", "command -v git"])
        .output()
        .unwrap();
    let real = String::from_utf8(real.stdout).unwrap().trim().to_string();
    let bin = r.env.dir.join("half-merge-git");
    fs::create_dir_all(&bin).unwrap();
    let act = if leave_lock {
        "mv \"$idx\" \"$idx.lock\"; mv \"$idx.before\" \"$idx\""
    } else {
        "rm \"$idx.before\""
    };
    let script = format!(
        r#"#!/bin/sh
case "$(pwd -P)" in
*/worktrees/work/session-*/*) ;;
*/worktrees/work/session-*)
  if [ "$3" = merge ]; then
    n=$(cat "{bin}/merges" 2>/dev/null || echo 0); n=$((n + 1)); echo $n > "{bin}/merges"
    if [ $n = 2 ]; then
      for a; do last=$a; done
      idx=$("{real}" rev-parse --path-format=absolute --git-path index)
      tree=$("{real}" merge-tree --write-tree HEAD "$last" | head -n 1)
      cp "$idx" "$idx.before"
      "{real}" read-tree -m -u HEAD "$tree" || exit 1
      {act}
      kill -9 $PPID
      exit 1
    fi
  fi;;
esac
exec "{real}" "$@"
"#,
        bin = bin.display()
    );
    let p = bin.join("git");
    fs::write(&p, script).unwrap();
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let o = Out::from(
        r.cmd(&["run", wf.to_str().unwrap(), "-y"])
            .env("PATH", &path)
            .output()
            .unwrap(),
    );
    assert_eq!(o.code, -1, "killed by SIGKILL in an agent's merge: {o:?}");
    let s = r.session();
    let sid = s["id"].as_str().unwrap().to_string();
    let job = s["mapreduce_data"]["job_id"].as_str().unwrap().to_string();
    // What the kill left: item b's files as local changes beside setup's, HEAD unmoved.
    let wt = r.env.p(&format!("worktrees/work/{sid}"));
    let st = git(&wt, &["status", "--porcelain", "--untracked-files=all"]);
    let expect = if leave_lock {
        [
            " M base.txt",
            " M notes-b.txt",
            "?? out-b.txt",
            "?? scratch.txt",
        ]
    } else {
        [
            " M base.txt",
            "A  out-b.txt",
            "M  notes-b.txt",
            "?? scratch.txt",
        ]
    };
    for e in expect {
        assert!(st.lines().any(|l| l == e), "{e:?} not in {st:?}");
    }
    let lock = git(
        &wt,
        &[
            "rev-parse",
            "--path-format=absolute",
            "--git-path",
            "index.lock",
        ],
    );
    assert_eq!(Path::new(lock.trim()).exists(), leave_lock);
    assert!(!git(&wt, &["log", "--format=%s", "-1"]).contains("(item b)"));
    (r.out(&["resume", &sid, "-y"]), job)
}

/// What must hold once the resume after [`killed_in_an_agent_merge`] finished: the half-made
/// merge was put back (its two files, nothing else), item b ran again, every item is merged
/// exactly once, the DLQ is empty, and setup's uncommitted output reached reduce unchanged.
fn every_agent_merged_once(r: &R, o: &Out, job: &str) {
    assert_eq!(o.code, 0, "{o:?}\ndead letter queue: {}", dlq_errors(r));
    assert!(
        o.stderr.contains(&format!(
            "put back 2 file(s) that the interrupted merge of `prodigy-agent-{job}-b` (item b) left in"
        )),
        "{o:?}"
    );
    let log = main_log(&r.repo);
    for i in ["a", "b", "c"] {
        let merged = format!("Merge agent prodigy-agent-{job}-{i} (item {i})");
        for subject in [format!("item {i}"), merged] {
            assert_eq!(
                log.iter().filter(|l| **l == subject).count(),
                1,
                "{subject} not exactly once in {log:?}"
            );
        }
        assert_eq!(
            fs::read_to_string(r.repo.join(format!("out-{i}.txt"))).unwrap(),
            format!("{i}\n")
        );
        assert_eq!(
            fs::read_to_string(r.repo.join(format!("notes-{i}.txt"))).unwrap(),
            format!("{i}\nmore\n")
        );
    }
    assert_eq!(
        fs::read_to_string(r.repo.join("seen.txt")).unwrap(),
        "scratch\nbase\nchanged\n",
        "setup's uncommitted output survived the repair"
    );
    assert_eq!(r.session()["status"], "Completed", "{o:?}");
    nothing_left(r, "after the resume");
}

/// Seed 20 of the crash sweep, without timing luck: killed after git wrote the merged files
/// and its new index (`index.lock`) but before it renamed the index into place.
#[test]
fn a_resume_puts_back_an_agent_merge_killed_before_it_wrote_the_index() {
    let Some(r) = setup("resume-half-merge-lock") else {
        return;
    };
    let (o, job) = killed_in_an_agent_merge(&r, true);
    assert!(o.stderr.contains("index.lock` of a killed git"), "{o:?}");
    every_agent_merged_once(&r, &o, &job);
}

/// Killed after git wrote the merged files and the index, before the merge commit: every later
/// merge refused the staged changes.
#[test]
fn a_resume_puts_back_an_agent_merge_killed_before_its_commit() {
    let Some(r) = setup("resume-half-merge-index") else {
        return;
    };
    let (o, job) = killed_in_an_agent_merge(&r, false);
    every_agent_merged_once(&r, &o, &job);
}

/// An agent merge that git refuses by itself (setup left an untracked `shared.txt` where the
/// agent's branch adds one) leaves nothing half made: a resume after a later interruption must
/// not take setup's file for that merge's and remove it.
#[test]
fn a_merge_git_refused_is_not_undone_by_a_later_resume() {
    let Some(r) = setup("resume-refused-merge") else {
        return;
    };
    let wf = r.wf(
        "refused.yml",
        r#"name: refused
mode: mapreduce
setup:
  - shell: |
      printf '%s' '[{"id": "x"}, {"id": "y"}]' > items.json
      git add items.json && git commit -q -m "setup: items"
    commit_required: true
  - shell: echo setup > shared.txt
map:
  input: items.json
  max_parallel: 1
  agent_template:
    - shell: |
        case "${item_id}" in y) sleep 3;; x) echo agent > shared.txt;; esac
        echo "${item_id}" > "${item_id}.txt"
        git add -A . && git commit -q -m "item ${item_id}"
      commit_required: true
reduce:
  - shell: |
      cat shared.txt > seen.txt && git add seen.txt && git commit -q -m "reduce: seen"
    commit_required: true
"#,
    );
    let code = run_with_kill_sig(
        &r,
        &["run", wf.to_str().unwrap(), "-y"],
        "agent_failed",
        1,
        15,
    );
    assert_eq!(code, Some(143));
    let job = r.session()["mapreduce_data"]["job_id"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        dlq_errors(&r).contains("would be overwritten by merge"),
        "{}",
        dlq_errors(&r)
    );
    let o = r.out(&["resume", &job, "-y"]);
    assert_eq!(o.code, 1, "x stays in the DLQ: {o:?}");
    assert!(!o.stderr.contains("put back"), "{o:?}");
    assert_eq!(
        fs::read_to_string(r.repo.join("seen.txt")).unwrap(),
        "setup\n",
        "{o:?}"
    );
    assert_eq!(fs::read_to_string(r.repo.join("y.txt")).unwrap(), "y\n");
}

/// The crash sweep's seed 20 also lands inside an agent's `git worktree add`, between the
/// creation of its record's `commondir` and the write of it: every later `git worktree add`
/// died ("failed to read …/commondir: Success") and every remaining item went to the DLQ. The
/// resume completes that record (it is ours: its `gitdir` is inside the session worktree).
#[test]
fn a_worktree_record_with_an_empty_commondir_is_completed_before_items_run_again() {
    let Some(r) = setup("resume-empty-commondir") else {
        return;
    };
    sleepy_stopped(&r, 2, 2, 130);
    let s = r.session();
    let sid = s["id"].as_str().unwrap().to_string();
    let job = s["mapreduce_data"]["job_id"].as_str().unwrap().to_string();
    let wt = r.env.p(&format!("worktrees/work/{sid}"));
    // w6 has not run: what a kill inside its `git worktree add` leaves.
    let agent = wt.join("agent-w6");
    git(
        &wt,
        &[
            "worktree",
            "add",
            "-q",
            "-b",
            &format!("prodigy-agent-{job}-w6"),
            agent.to_str().unwrap(),
            "HEAD",
        ],
    );
    let admin = PathBuf::from(
        git(
            &agent,
            &["rev-parse", "--path-format=absolute", "--git-dir"],
        )
        .trim(),
    );
    fs::write(admin.join("commondir"), "").unwrap();
    fs::write(admin.join("locked"), "initializing\n").unwrap();
    assert!(!git_cmd(&r.repo, &["worktree", "list"])
        .output()
        .unwrap()
        .status
        .success());
    let o = r.out(&["resume", &job, "-y"]);
    assert_eq!(o.code, 0, "{o:?}\ndead letter queue: {}", dlq_errors(&r));
    assert!(
        o.stderr.contains(&format!(
            "completed git's record `{}` of a worktree whose `git worktree add` was killed",
            admin.display()
        )),
        "{o:?}"
    );
    let log = main_log(&r.repo);
    for i in 1..=6 {
        assert_eq!(
            log.iter().filter(|l| **l == format!("item w{i}")).count(),
            1,
            "{log:?}"
        );
    }
    nothing_left(&r, "after the resume");
}
