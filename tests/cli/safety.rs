//! Safety tests: the adversarial cases of safety.md §5 against the built binary.
//!
//! Every test asserts the safe outcome *and* that the canaries outside the root (and the files of
//! protected items) survive byte for byte. Tests that need a tool (git, strace, flock, mkfifo via
//! libc) print a loud SKIPPED line when it is missing.

use super::common::*;
use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

// ------------------------------------------------------------------------------------------------
// helpers
// ------------------------------------------------------------------------------------------------

const CLEAN_ALL: [&str; 6] = [
    "clean",
    "--all-repos",
    "--force",
    "--older-than",
    "0s",
    "--json",
];

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

/// A pid that existed a moment ago and is now reaped (dead).
fn dead_pid() -> u32 {
    let mut c = Command::new("true").spawn().expect("spawn true");
    let pid = c.id();
    c.wait().unwrap();
    pid
}

/// `metadata.owner` fragment for [`Env::session`].
fn owner_fragment(pid: u64, host: &str) -> String {
    format!(
        r#""owner":{{"pid":{pid},"hostname":"{host}","heartbeat_at":"{}"}}"#,
        rfc3339_ago(40 * DAY)
    )
}

/// A session record with full control over its fields; file aged `days` days.
fn record(env: &Env, id: &str, body: &str, days: u64) -> PathBuf {
    let p = env.write(&format!("sessions/{id}.json"), body);
    age(&p, days * DAY);
    p
}

/// `events/{repo}/{job}/events-….jsonl`, aged.
fn events_job(env: &Env, repo: &str, job: &str, days: u64) -> String {
    let rel = format!("events/{repo}/{job}");
    env.write(
        &format!("{rel}/events-20250101000000.jsonl"),
        &format!(
            "{{\"timestamp\":\"{}\",\"event_type\":\"AgentStarted\",\"agent_id\":\"a-1\"}}\n",
            rfc3339_ago(days * DAY)
        ),
    );
    age_tree(&env.p(&rel), days * DAY);
    rel
}

/// `dlq/{repo}/{job}/dlq-items.json`, aged.
fn dlq_job(env: &Env, repo: &str, job: &str, days: u64) -> String {
    let rel = format!("dlq/{repo}/{job}");
    env.write(&format!("{rel}/dlq-items.json"), r#"{"items":[]}"#);
    age_tree(&env.p(&rel), days * DAY);
    rel
}

/// Set the mtime of a symlink itself (utimensat with AT_SYMLINK_NOFOLLOW).
fn age_link(p: &Path, secs: u64) {
    let c = std::ffi::CString::new(p.as_os_str().as_bytes()).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let t = libc::timespec {
        tv_sec: now - secs as i64,
        tv_nsec: 0,
    };
    let ts = [t, t];
    // SAFETY: valid C string and two timespecs.
    let r = unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            c.as_ptr(),
            ts.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    assert_eq!(r, 0, "utimensat {}", p.display());
}

/// Every path below `dir` (raw bytes, escaped) with its content (files, escaped bytes), link
/// target (symlinks) or `<dir>`, never following symlinks: a byte-for-byte picture of a tree.
fn digest(dir: &Path) -> Tree {
    fn go(base: &Path, p: &Path, out: &mut Tree) {
        let Ok(rd) = fs::read_dir(p) else { return };
        for e in rd.flatten() {
            let path = e.path();
            let rel = path
                .strip_prefix(base)
                .unwrap()
                .as_os_str()
                .as_bytes()
                .escape_ascii()
                .to_string();
            let m = fs::symlink_metadata(&path).unwrap();
            if m.file_type().is_symlink() {
                let t = fs::read_link(&path).unwrap();
                out.insert(
                    rel,
                    format!("-> {}", t.as_os_str().as_bytes().escape_ascii()),
                );
            } else if m.is_dir() {
                out.insert(rel, "<dir>".into());
                go(base, &path, out);
            } else if m.is_file() {
                out.insert(rel, fs::read(&path).unwrap().escape_ascii().to_string());
            } else {
                out.insert(rel, "<special>".into());
            }
        }
    }
    let mut out = BTreeMap::new();
    go(dir, dir, &mut out);
    out
}

type Tree = BTreeMap<String, String>;

/// Two digests are equal; on failure, name only the paths that differ.
fn assert_tree_eq(after: &Tree, before: &Tree, what: &str) {
    if after == before {
        return;
    }
    let mut diff = Vec::new();
    for k in before
        .keys()
        .chain(after.keys())
        .collect::<std::collections::BTreeSet<_>>()
    {
        match (before.get(k), after.get(k)) {
            (Some(a), Some(b)) if a == b => {}
            (Some(_), Some(_)) => diff.push(format!("changed {k}")),
            (Some(_), None) => diff.push(format!("gone    {k}")),
            (None, _) => diff.push(format!("new     {k}")),
        }
    }
    panic!("{what}:\n{}", diff.join("\n"));
}

/// The canary outside the root is intact.
fn assert_canary(env: &Env) {
    assert_eq!(
        fs::read(env.outside.join("canary.txt")).expect("canary.txt is gone"),
        b"canary",
        "canary changed"
    );
}

/// Is `s` named anywhere in the report's kept list, warnings or errors?
fn reported(v: &serde_json::Value, s: &str) -> bool {
    [&v["kept"], &v["warnings"], &v["errors"]]
        .iter()
        .any(|x| x.to_string().contains(s))
}

fn assert_no_panic(o: &Out) {
    assert!(!o.stderr.contains("panicked"), "prodigy panicked: {o:?}");
    assert!(
        !o.stderr.contains("RUST_BACKTRACE"),
        "prodigy panicked: {o:?}"
    );
}

/// Wait for a child at most `limit`; kill it (it is ours) and return None when it overran.
fn wait_timeout(mut child: Child, limit: Duration) -> Option<Out> {
    let start = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            return Some(Out::from(child.wait_with_output().unwrap()));
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// True when another process holds the flock of `p` (probed with LOCK_NB on our own descriptor).
fn flock_held(p: &Path) -> bool {
    use std::os::fd::AsRawFd;
    let Ok(f) = fs::OpenOptions::new().read(true).open(p) else {
        return false;
    };
    // SAFETY: valid descriptor.
    let r = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if r == 0 {
        // SAFETY: valid descriptor.
        unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_UN) };
        false
    } else {
        true
    }
}

/// `flock FILE sleep SECS` in the background; returns once the lock is held.
fn hold_flock(file: &Path, secs: &str) -> Child {
    fs::create_dir_all(file.parent().unwrap()).unwrap();
    if !file.exists() {
        fs::write(file, b"").unwrap();
    }
    let child = Command::new("flock")
        .arg(file)
        .args(["sleep", secs])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn flock");
    let start = Instant::now();
    while !flock_held(file) {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "flock never took {}",
            file.display()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    child
}

/// A tree with something of every kind: an active session and a resumable one (protected, with
/// their data), a completed and a stale one (expired, with their data), unowned expired data and a
/// dead resume lock. Returns the protected paths.
fn build_tree(env: &Env) -> Vec<String> {
    let host = this_host();
    let me = std::process::id() as u64;
    // Protected: active (owner is this test process, on this host).
    env.session("session-live", "Running", 40, &owner_fragment(me, &host));
    mapping(env, "repo", "session-live", "job-live", 40);
    let e_live = events_job(env, "repo", "job-live", 40);
    let d_live = dlq_job(env, "repo", "job-live", 40);
    // Protected: resumable (failed with a checkpoint).
    record(
        env,
        "session-resume",
        &body(
            "session-resume",
            "Failed",
            &rfc3339_ago(40 * DAY),
            "{}",
            r#"[{"id":"c1","created_at":"2025-01-01T00:00:00Z","state":{},"metadata":{}}]"#,
        ),
        40,
    );
    mapping(env, "repo", "session-resume", "job-resume", 40);
    let e_res = events_job(env, "repo", "job-resume", 40);
    // Expired: completed with all its data.
    env.session("session-done", "Completed", 40, "");
    mapping(env, "repo", "session-done", "job-done", 40);
    events_job(env, "repo", "job-done", 40);
    dlq_job(env, "repo", "job-done", 40);
    env.write(
        "state/repo/mapreduce/jobs/job-done/job-state.json",
        &format!(
            r#"{{"job_id":"job-done","session_id":"session-done","workflow_name":"wf","phase":"complete","status":"completed","created_at":"{t}","updated_at":"{t}","total_items":1,"completed_items":1,"failed_items":0}}"#,
            t = rfc3339_ago(40 * DAY)
        ),
    );
    age_tree(&env.p("state/repo/mapreduce/jobs/job-done"), 40 * DAY);
    // Expired: stale (Running, no owner, nothing to resume).
    env.session("session-stale", "Running", 40, "");
    mapping(env, "repo", "session-stale", "job-stale", 40);
    events_job(env, "repo", "job-stale", 40);
    // Expired, unowned.
    events_job(env, "repo", "job-orphan", 40);
    env.old_file("logs/repo/run-1.log", 40);
    env.old_file("logs/repo/run-2.log", 40);
    // A resume lock of a process that cannot exist (beyond pid_max), this host.
    let l = env.write(
        "resume_locks/job-gone.lock",
        &format!(
            r#"{{"job_id":"job-gone","process_id":2147483646,"hostname":"{host}","acquired_at":"{}"}}"#,
            rfc3339_ago(40 * DAY)
        ),
    );
    age(&l, 40 * DAY);
    let mut protected = vec![
        "sessions/session-live.json".to_string(),
        "sessions/session-resume.json".to_string(),
        "state/repo/mappings/session-live.json".into(),
        "state/repo/mappings/job-live.json".into(),
        "state/repo/mappings/session-resume.json".into(),
        "state/repo/mappings/job-resume.json".into(),
    ];
    for d in [e_live, d_live, e_res] {
        protected.push(d);
    }
    protected.push("events/repo/job-live/events-20250101000000.jsonl".into());
    protected.push("dlq/repo/job-live/dlq-items.json".into());
    protected
}

fn assert_protected(env: &Env, protected: &[String], when: &str) {
    for p in protected {
        assert!(env.exists(p), "{when}: protected `{p}` is missing");
    }
}

/// The snapshot after one uninterrupted clean of [`build_tree`].
fn reference_snapshot() -> Vec<String> {
    let env = Env::new("safety-ref");
    build_tree(&env);
    let (o, _) = env.json(&CLEAN_ALL);
    assert_eq!(o.code, 0, "{o:?}");
    env.snapshot()
}

// ------------------------------------------------------------------------------------------------
// Case 1: symlinks inside an expired item
// ------------------------------------------------------------------------------------------------

#[test]
fn clean_does_not_follow_symlink_out_of_expired_item() {
    let env = Env::new("sym-inside");
    fs::create_dir_all(env.outside.join("sub")).unwrap();
    fs::write(env.outside.join("sub/deep.txt"), b"deep").unwrap();
    age_tree(&env.outside, 40 * DAY);
    let before_outside = digest(&env.outside);

    let job = events_job(&env, "repo", "job-a", 40);
    let j = env.p(&job);
    symlink(&env.outside, j.join("to-dir")).unwrap();
    symlink(env.outside.join("canary.txt"), j.join("to-file")).unwrap();
    fs::create_dir_all(j.join("nested")).unwrap();
    symlink(&env.outside, j.join("nested/again")).unwrap();
    for l in ["to-dir", "to-file", "nested/again"] {
        age_link(&j.join(l), 40 * DAY);
    }
    age_tree(&j, 40 * DAY);
    let dlq = dlq_job(&env, "repo", "job-b", 40);
    symlink(
        env.outside.join("canary.txt"),
        env.p(&dlq).join("dlq-link.json"),
    )
    .unwrap();
    age_link(&env.p(&dlq).join("dlq-link.json"), 40 * DAY);
    age(&env.p(&dlq), 40 * DAY);

    // Default retention (events 14d, dlq 30d): the items are expired by age, links included.
    let (o, v) = env.json(&["clean", "--all-repos", "--force", "--json"]);
    if std::env::var_os("PRODIGY_IT_ARCHIVE").is_some() {
        // With --archive a symlink is refused, not followed: the items cannot be archived
        // whole, so they are kept and the exit status says so (issue 26).
        assert_eq!(o.code, 1, "{o:?}");
        assert_no_panic(&o);
        for item in [&job, &dlq] {
            assert_eq!(kept_reason(&v, item).as_deref(), Some("failed"), "{o:?}");
            assert!(env.exists(item));
        }
        assert!(o.stderr.contains("is a symlink; not followed"), "{o:?}");
        assert_canary(&env);
        assert_tree_eq(
            &digest(&env.outside),
            &before_outside,
            "something outside the root changed",
        );
        return;
    }
    assert_eq!(o.code, 0, "{o:?}");
    assert_no_panic(&o);
    let removed = removed_paths(&v);
    assert!(removed.contains(&job), "{removed:?}\n{o:?}");
    assert!(removed.contains(&dlq), "{removed:?}\n{o:?}");
    assert!(
        !env.exists(&job) && !env.exists(&dlq),
        "{:?}",
        env.snapshot()
    );
    assert_canary(&env);
    assert_tree_eq(
        &digest(&env.outside),
        &before_outside,
        "something outside the root changed",
    );
    assert!(v["errors"].as_array().unwrap().is_empty(), "{o:?}");
}

// ------------------------------------------------------------------------------------------------
// Case 3: symlinks as intermediate components and as the root
// ------------------------------------------------------------------------------------------------

#[test]
fn clean_does_not_follow_symlinked_repo_dir_under_worktrees() {
    let env = Env::new("sym-worktrees-repo");
    let target = env.outside.join("wtdata");
    fs::create_dir_all(target.join("session-old/src")).unwrap();
    fs::write(target.join("session-old/src/main.rs"), b"fn main() {}\n").unwrap();
    fs::write(target.join("canary.txt"), b"canary").unwrap();
    age_tree(&env.outside, 40 * DAY);
    let before_outside = digest(&env.outside);
    fs::create_dir_all(env.p("worktrees")).unwrap();
    symlink(&target, env.p("worktrees/repo")).unwrap();
    age_link(&env.p("worktrees/repo"), 40 * DAY);
    // Something real beside it, to show the run does its work.
    let job = events_job(&env, "repo", "job-a", 40);

    let (o, v) = env.json(&CLEAN_ALL);
    assert_eq!(o.code, 0, "{o:?}");
    assert_no_panic(&o);
    assert!(!env.exists(&job), "{o:?}");
    assert_tree_eq(
        &digest(&env.outside),
        &before_outside,
        "something outside the root changed",
    );
    assert_canary(&env);
    // The symlink itself is reported, not followed; it is still there.
    assert!(
        reported(&v, "worktrees/repo"),
        "the symlinked worktrees/repo is not reported: {o:?}"
    );
    assert!(fs::symlink_metadata(env.p("worktrees/repo"))
        .unwrap()
        .file_type()
        .is_symlink());
    assert!(
        !removed_paths(&v)
            .iter()
            .any(|p| p.starts_with("worktrees/")),
        "{o:?}"
    );
}

#[test]
fn clean_does_not_follow_symlinked_type_dir() {
    let env = Env::new("sym-events");
    let target = env.outside.join("events-elsewhere");
    fs::create_dir_all(target.join("repo/job-x")).unwrap();
    fs::write(
        target.join("repo/job-x/events-20250101000000.jsonl"),
        b"{}\n",
    )
    .unwrap();
    fs::write(target.join("canary.txt"), b"canary").unwrap();
    age_tree(&env.outside, 40 * DAY);
    let before_outside = digest(&env.outside);
    symlink(&target, env.p("events")).unwrap();
    age_link(&env.p("events"), 40 * DAY);
    let dlq = dlq_job(&env, "repo", "job-x", 40);

    let (o, v) = env.json(&CLEAN_ALL);
    assert_eq!(o.code, 0, "{o:?}");
    assert_no_panic(&o);
    assert!(!env.exists(&dlq), "{o:?}");
    assert_tree_eq(
        &digest(&env.outside),
        &before_outside,
        "something outside the root changed",
    );
    assert_canary(&env);
    assert!(
        fs::symlink_metadata(env.p("events"))
            .unwrap()
            .file_type()
            .is_symlink(),
        "the events symlink is gone"
    );
    assert!(
        reported(&v, "events"),
        "the symlinked `events` is not reported: {o:?}"
    );
    assert!(
        !removed_paths(&v).iter().any(|p| p.starts_with("events")),
        "{o:?}"
    );
}

#[test]
fn clean_refuses_root_that_is_a_symlink_to_slash() {
    let env = Env::new("sym-root-slash");
    let link = env.dir.join("root-link");
    symlink("/", &link).unwrap();
    let o = Out::from(
        env.cmd(&["clean", "--all-repos", "--force", "--older-than", "0s"])
            .env("PRODIGY_HOME", &link)
            .output()
            .unwrap(),
    );
    assert_eq!(o.code, 3, "{o:?}");
    assert_no_panic(&o);
    assert!(
        o.stderr.contains("refusing") && o.stderr.contains("filesystem root"),
        "{o:?}"
    );
    assert!(
        o.stdout.is_empty() || !o.stdout.contains("Removed"),
        "{o:?}"
    );
    assert!(fs::symlink_metadata(&link)
        .unwrap()
        .file_type()
        .is_symlink());
    assert_canary(&env);
}

#[test]
fn clean_works_through_root_symlink_to_real_directory() {
    let env = Env::new("sym-root-real");
    let real = env.dir.join("elsewhere/prodigy-data");
    let link = env.dir.join("root-link");
    fs::create_dir_all(&real).unwrap();
    symlink(&real, &link).unwrap();
    fs::create_dir_all(real.join("events/repo/job-a")).unwrap();
    fs::write(
        real.join("events/repo/job-a/events-20250101000000.jsonl"),
        b"{}\n",
    )
    .unwrap();
    fs::create_dir_all(real.join("events/repo/job-new")).unwrap();
    fs::write(
        real.join("events/repo/job-new/events-20250101000000.jsonl"),
        b"{}\n",
    )
    .unwrap();
    age_tree(&real.join("events/repo/job-a"), 40 * DAY);

    let o = Out::from(
        env.cmd(&["clean", "--all-repos", "--force", "--json"])
            .env("PRODIGY_HOME", &link)
            .output()
            .unwrap(),
    );
    assert_eq!(o.code, 0, "{o:?}");
    let v: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    assert_eq!(
        removed_paths(&v),
        vec!["events/repo/job-a".to_string()],
        "{o:?}"
    );
    assert!(!real.join("events/repo/job-a").exists());
    // Kept (under `PRODIGY_IT_COMPRESS_AFTER`, compressed in place).
    assert!(exists_or_gz(
        &real.join("events/repo/job-new/events-20250101000000.jsonl")
    ));
    assert_eq!(
        fs::read_link(&link).unwrap(),
        real,
        "the root symlink itself changed"
    );
    assert_canary(&env);
}

// ------------------------------------------------------------------------------------------------
// Case 4: hostile roots
// ------------------------------------------------------------------------------------------------

/// Expired data in the tree and in HOME, to show a refused run deletes nothing.
fn bait(env: &Env) -> (Tree, Tree) {
    events_job(env, "repo", "job-a", 40);
    fs::create_dir_all(env.home.join("events/repo/job-h")).unwrap();
    fs::write(
        env.home
            .join("events/repo/job-h/events-20250101000000.jsonl"),
        b"{}\n",
    )
    .unwrap();
    fs::write(env.home.join("notes.txt"), b"my notes").unwrap();
    fs::create_dir_all(env.dir.join("rel/.prodigy/events/repo/job-r")).unwrap();
    fs::write(
        env.dir
            .join("rel/.prodigy/events/repo/job-r/events-20250101000000.jsonl"),
        b"{}\n",
    )
    .unwrap();
    age_tree(&env.dir, 40 * DAY);
    (digest(&env.dir), digest(&env.outside))
}

fn hostile(env: &Env, root: &OsStr) -> Out {
    Out::from(
        env.cmd(&["clean", "--all-repos", "--force", "--older-than", "0s"])
            .env("PRODIGY_HOME", root)
            .output()
            .unwrap(),
    )
}

#[test]
fn clean_rejects_empty_prodigy_home_as_usage_error() {
    let env = Env::new("root-empty");
    let (before, _) = bait(&env);
    let o = hostile(&env, OsStr::new(""));
    assert_eq!(o.code, 2, "{o:?}");
    assert_no_panic(&o);
    assert!(
        o.stderr.contains("PRODIGY_HOME") && o.stderr.contains("empty"),
        "{o:?}"
    );
    assert_tree_eq(&digest(&env.dir), &before, "a refused run changed files");
    assert_canary(&env);
}

#[test]
fn clean_rejects_relative_prodigy_home_as_usage_error() {
    let env = Env::new("root-relative");
    let (before, _) = bait(&env);
    // The cwd (env.dir) holds rel/.prodigy with expired data: it must not be cleaned.
    let o = hostile(&env, OsStr::new("rel/.prodigy"));
    assert_eq!(o.code, 2, "{o:?}");
    assert_no_panic(&o);
    assert!(
        o.stderr.contains("PRODIGY_HOME") && o.stderr.contains("absolute"),
        "{o:?}"
    );
    assert_tree_eq(&digest(&env.dir), &before, "a refused run changed files");
    assert_canary(&env);
}

#[test]
fn clean_refuses_filesystem_root() {
    let env = Env::new("root-slash");
    let (before, _) = bait(&env);
    for root in ["/", "//", "/.", "/tmp/.."] {
        let o = hostile(&env, OsStr::new(root));
        assert_eq!(o.code, 3, "PRODIGY_HOME={root}: {o:?}");
        assert_no_panic(&o);
        assert!(
            o.stderr.contains("refusing") && o.stderr.contains("filesystem root"),
            "PRODIGY_HOME={root}: {o:?}"
        );
    }
    assert_tree_eq(&digest(&env.dir), &before, "a refused run changed files");
    assert_canary(&env);
}

#[test]
fn clean_refuses_home_directory_as_root() {
    let env = Env::new("root-home");
    let (before, _) = bait(&env);
    let o = hostile(&env, env.home.as_os_str());
    assert_eq!(o.code, 3, "{o:?}");
    assert_no_panic(&o);
    assert!(
        o.stderr.contains("refusing") && o.stderr.contains("home directory"),
        "{o:?}"
    );
    // Also through a trailing slash and a symlink to HOME.
    let mut slash = env.home.as_os_str().to_owned();
    slash.push("/");
    let o = hostile(&env, &slash);
    assert_eq!(o.code, 3, "{o:?}");
    let link = env.dir.join("home-link");
    symlink(&env.home, &link).unwrap();
    let o = hostile(&env, link.as_os_str());
    assert_eq!(o.code, 3, "{o:?}");
    assert!(o.stderr.contains("home directory"), "{o:?}");
    fs::remove_file(&link).unwrap();
    assert_tree_eq(&digest(&env.dir), &before, "a refused run changed files");
    assert_canary(&env);
}

#[test]
fn clean_refuses_root_owned_by_another_user() {
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!(
            "SKIPPED clean_refuses_root_owned_by_another_user: needs root to chown the test root"
        );
        return;
    }
    let env = Env::new("root-other-user");
    let (_, _) = bait(&env);
    let c = std::ffi::CString::new(env.root.as_os_str().as_bytes()).unwrap();
    // SAFETY: valid C string.
    assert_eq!(unsafe { libc::chown(c.as_ptr(), 12345, 12345) }, 0);
    let before = digest(&env.dir);
    let o = env.run(&["clean", "--all-repos", "--force", "--older-than", "0s"]);
    assert_eq!(o.code, 3, "{o:?}");
    assert_no_panic(&o);
    assert!(
        o.stderr.contains("refusing") && o.stderr.contains("uid 12345"),
        "{o:?}"
    );
    assert_tree_eq(&digest(&env.dir), &before, "a refused run changed files");
    assert_canary(&env);
    // SAFETY: valid C string.
    unsafe { libc::chown(c.as_ptr(), 0, 0) };
}

// ------------------------------------------------------------------------------------------------
// Case 5: names outside the grammar; --repo values that are paths
// ------------------------------------------------------------------------------------------------

#[test]
fn clean_keeps_entries_with_invalid_names() {
    let env = Env::new("bad-names");
    let long = "a".repeat(200);
    let names = ["..x", " x", "-x", "x y", ".hidden", long.as_str()];
    for n in names {
        env.write(
            &format!("events/repo/{n}/events-20250101000000.jsonl"),
            "{}\n",
        );
        age_tree(&env.p(&format!("events/repo/{n}")), 40 * DAY);
    }
    // A repository directory with a bad name, and bad session file names.
    env.write("events/-repo/job-a/events-20250101000000.jsonl", "{}\n");
    age_tree(&env.p("events/-repo"), 40 * DAY);
    record(
        &env,
        "-x",
        &body("-x", "Completed", &rfc3339_ago(40 * DAY), "{}", "[]"),
        40,
    );
    record(
        &env,
        "x y",
        &body("x y", "Completed", &rfc3339_ago(40 * DAY), "{}", "[]"),
        40,
    );
    let good = events_job(&env, "repo", "job-good", 40);
    let before = env.snapshot();

    let (o, v) = env.json(&CLEAN_ALL);
    assert_eq!(o.code, 0, "{o:?}");
    assert_no_panic(&o);
    for n in names {
        let p = format!("events/repo/{n}");
        assert_eq!(
            kept_reason(&v, &p).as_deref(),
            Some("invalid-name"),
            "{p}: {o:?}"
        );
        assert!(
            env.exists(&format!("{p}/events-20250101000000.jsonl")),
            "{p} was touched"
        );
    }
    for p in ["events/-repo", "sessions/-x.json", "sessions/x y.json"] {
        assert_eq!(
            kept_reason(&v, p).as_deref(),
            Some("invalid-name"),
            "{p}: {o:?}"
        );
        assert!(env.exists(p));
    }
    assert_eq!(removed_paths(&v), vec![good.clone()], "{o:?}");
    let after = env.snapshot();
    let gone: Vec<_> = before.iter().filter(|p| !after.contains(p)).collect();
    assert!(
        gone.iter().all(|p| p.starts_with(&good)),
        "removed more than {good}: {gone:?}"
    );
    assert_canary(&env);
}

#[test]
fn clean_rejects_repo_names_that_are_paths() {
    let env = Env::new("bad-repo-arg");
    events_job(&env, "repo", "job-a", 40);
    fs::create_dir_all(env.dir.join("x/events/repo/job-b")).unwrap();
    let before = digest(&env.dir);
    for bad in ["../x", "a/b", "", ".", "..", "/", "/etc", "x\ny", "-x"] {
        let o = env.run(&["clean", "--force", "--older-than", "0s", "--repo", bad]);
        assert_eq!(o.code, 2, "--repo {bad:?}: {o:?}");
        assert_no_panic(&o);
        assert!(
            o.stderr.contains("repo"),
            "--repo {bad:?}: stderr does not say what is wrong: {o:?}"
        );
    }
    let o = env.run(&["clean", "--force", "--older-than", "0s", "--repo=../x"]);
    assert_eq!(o.code, 2, "{o:?}");
    assert_tree_eq(&digest(&env.dir), &before, "a usage error changed files");
    assert_canary(&env);
}

// ------------------------------------------------------------------------------------------------
// Case 6: control characters, non-UTF-8 and overlong names
// ------------------------------------------------------------------------------------------------

#[test]
fn clean_keeps_and_escapes_hostile_byte_names() {
    let env = Env::new("hostile-bytes");
    let dir = env.p("events/repo");
    fs::create_dir_all(&dir).unwrap();
    let long = "b".repeat(255);
    let raw: Vec<Vec<u8>> = vec![
        b"bad\nname".to_vec(),
        b"bad\xff".to_vec(),
        b"tab\there".to_vec(),
        b"esc\x1b[31mred".to_vec(),
        long.as_bytes().to_vec(),
    ];
    for n in &raw {
        let p = dir.join(OsStr::from_bytes(n));
        fs::create_dir_all(&p).unwrap();
        fs::write(p.join("events-20250101000000.jsonl"), b"{}\n").unwrap();
        age_tree(&p, 40 * DAY);
    }
    // A session file with a newline in its name.
    let s = env.p("sessions");
    fs::create_dir_all(&s).unwrap();
    fs::write(
        s.join(OsStr::from_bytes(b"s\nforged.json")),
        body("s", "Completed", &rfc3339_ago(40 * DAY), "{}", "[]"),
    )
    .unwrap();
    age_tree(&s, 40 * DAY);
    let before = digest(&env.root);

    // Human dry run lists kept paths: each escaped, never a raw control byte or invalid UTF-8.
    let out = env
        .cmd(&["clean", "--all-repos", "--dry-run", "--older-than", "0s"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{:?}", Out::from(out.clone()));
    let so = out.stdout.clone();
    assert!(
        std::str::from_utf8(&so).is_ok(),
        "stdout is not UTF-8 (a raw name byte leaked)"
    );
    let text = String::from_utf8(so).unwrap();
    assert!(!text.contains('\x1b'), "raw ESC in output:\n{text}");
    assert!(
        !text.contains('\t') || !text.contains("tab\there"),
        "raw TAB inside a path:\n{text}"
    );
    assert!(
        !text
            .lines()
            .any(|l| l.starts_with("name") || l.starts_with("forged")),
        "a newline in a name forged a line:\n{text}"
    );
    assert!(
        text.contains("events/repo/bad\\nname"),
        "escaped newline name missing:\n{text}"
    );
    assert!(
        text.contains("events/repo/bad\\xff"),
        "escaped non-UTF-8 name missing:\n{text}"
    );

    // JSON: the same escaped paths, kept as invalid-name.
    let (o, v) = env.json(&CLEAN_ALL);
    assert_eq!(o.code, 0, "{o:?}");
    assert_no_panic(&o);
    for p in [
        "events/repo/bad\\nname",
        "events/repo/bad\\xff",
        "events/repo/tab\\there",
    ] {
        assert_eq!(
            kept_reason(&v, p).as_deref(),
            Some("invalid-name"),
            "{p}: {o:?}"
        );
    }
    assert_eq!(
        kept_reason(&v, &format!("events/repo/{long}")).as_deref(),
        Some("invalid-name"),
        "{o:?}"
    );
    assert_eq!(
        kept_reason(&v, "sessions/s\\nforged.json").as_deref(),
        Some("invalid-name"),
        "{o:?}"
    );
    assert!(
        !o.stdout.contains('\u{fffd}'),
        "lossy conversion in JSON: {o:?}"
    );
    assert!(removed_paths(&v).is_empty(), "{o:?}");

    // Real run, human: exit 0, nothing touched, no forged lines on stderr either.
    let o = env.run(&["clean", "--all-repos", "--force", "--older-than", "0s"]);
    assert_eq!(o.code, 0, "{o:?}");
    assert!(!o.stderr.lines().any(|l| l.starts_with("name")), "{o:?}");
    let after: Tree = digest(&env.root)
        .into_iter()
        .filter(|(p, _)| {
            !p.starts_with("resume_locks")
                && !p.starts_with(".trash")
                && !p.starts_with("clean-audit.jsonl")
        })
        .collect();
    assert_tree_eq(
        &after,
        &before,
        "a run that keeps everything changed the tree",
    );
    assert_canary(&env);
}

// ------------------------------------------------------------------------------------------------
// Case 7: session-1 active beside an expired session-10
// ------------------------------------------------------------------------------------------------

#[test]
fn clean_matches_ids_exactly_active_session_1_beside_expired_session_10() {
    let env = Env::new("prefix-ids");
    let host = this_host();
    env.session(
        "session-1",
        "Running",
        40,
        &owner_fragment(std::process::id() as u64, &host),
    );
    env.session("session-10", "Completed", 40, "");
    mapping(&env, "repo", "session-1", "job-1", 40);
    mapping(&env, "repo", "session-10", "job-10", 40);
    let e1 = events_job(&env, "repo", "job-1", 40);
    let e10 = events_job(&env, "repo", "job-10", 40);
    let d1 = dlq_job(&env, "repo", "job-1", 40);
    let d10 = dlq_job(&env, "repo", "job-10", 40);
    let live_before = fs::read(env.p("sessions/session-1.json")).unwrap();

    // Default retention: everything is 40 days old.
    let (o, v) = env.json(&["clean", "--all-repos", "--force", "--json"]);
    assert_eq!(o.code, 0, "{o:?}");
    assert_no_panic(&o);
    let removed = removed_paths(&v);
    for p in [
        "sessions/session-10.json",
        e10.as_str(),
        d10.as_str(),
        "state/repo/mappings/session-10.json",
        "state/repo/mappings/job-10.json",
    ] {
        assert!(
            removed.contains(&p.to_string()),
            "{p} not removed: {removed:?}\n{o:?}"
        );
        assert!(!env.exists(p), "{p} still exists");
    }
    for p in ["sessions/session-1.json", e1.as_str(), d1.as_str()] {
        assert_eq!(kept_reason(&v, p).as_deref(), Some("active"), "{p}: {o:?}");
    }
    for p in [
        "sessions/session-1.json",
        "state/repo/mappings/session-1.json",
        "state/repo/mappings/job-1.json",
        "events/repo/job-1/events-20250101000000.jsonl",
        "dlq/repo/job-1/dlq-items.json",
    ] {
        assert!(env.exists(p), "{p} of the active session is gone");
        assert!(!removed.contains(&p.to_string()), "{p} listed as removed");
    }
    assert_eq!(
        fs::read(env.p("sessions/session-1.json")).unwrap(),
        live_before,
        "active record changed"
    );
    assert_eq!(v["sessions"]["active"], 1, "{o:?}");
    assert_canary(&env);
}

// ------------------------------------------------------------------------------------------------
// Case 12: a FIFO or a directory where a JSON file is expected
// ------------------------------------------------------------------------------------------------

fn mkfifo(p: &Path) {
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    let c = std::ffi::CString::new(p.as_os_str().as_bytes()).unwrap();
    // SAFETY: valid C string.
    assert_eq!(
        unsafe { libc::mkfifo(c.as_ptr(), 0o644) },
        0,
        "mkfifo {}",
        p.display()
    );
}

#[test]
fn clean_does_not_block_on_fifo_or_directory_where_json_expected() {
    let env = Env::new("fifo");
    fs::create_dir_all(env.p("sessions/s-dir.json/inner")).unwrap();
    // Data of the directory "session", through a mapping.
    mapping(&env, "repo", "s-dir", "job-d", 40);
    let ed = events_job(&env, "repo", "job-d", 40);
    let other = events_job(&env, "repo", "job-other", 40);
    mkfifo(&env.p("sessions/s-fifo.json"));
    mkfifo(&env.p("state/repo/mappings/x.json"));
    mkfifo(&env.p("resume_locks/job-f.lock"));
    mkfifo(&env.p("worktrees/repo/wt-a/.git"));
    // Age everything without opening it (opening a FIFO blocks).
    for p in env.snapshot() {
        age_link(&env.p(&p), 40 * DAY);
    }

    let child = env
        .cmd(&CLEAN_ALL)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let o = wait_timeout(child, Duration::from_secs(20))
        .expect("prodigy clean blocked on a FIFO (killed after 20s)");
    assert_eq!(o.code, 0, "{o:?}");
    assert_no_panic(&o);
    let v: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    assert_eq!(
        kept_reason(&v, "sessions/s-fifo.json").as_deref(),
        Some("unknown"),
        "{o:?}"
    );
    assert_eq!(
        kept_reason(&v, "sessions/s-dir.json").as_deref(),
        Some("unknown"),
        "{o:?}"
    );
    assert_eq!(
        kept_reason(&v, &ed).as_deref(),
        Some("unknown"),
        "data of an unknown session: {o:?}"
    );
    assert!(reported(&v, "state/repo/mappings/x.json"), "{o:?}");
    assert_eq!(v["sessions"]["unknown"], 2, "{o:?}");
    for p in [
        "sessions/s-fifo.json",
        "sessions/s-dir.json/inner",
        "state/repo/mappings/x.json",
        "resume_locks/job-f.lock",
        &ed,
    ] {
        assert!(env.exists(p), "{p} was removed");
    }
    assert!(
        removed_paths(&v).contains(&other),
        "the run did not finish its work: {o:?}"
    );
    assert_canary(&env);
}

// ------------------------------------------------------------------------------------------------
// Case 13: truncated, empty, wrong-shaped records
// ------------------------------------------------------------------------------------------------

#[test]
fn clean_keeps_sessions_with_unreadable_records_and_their_data() {
    let env = Env::new("bad-json");
    let t = rfc3339_ago(40 * DAY);
    let full = |id: &str, status: &str| body(id, status, &t, "{}", "[]");
    let cases: Vec<(&str, String)> = vec![
        ("s-trunc", full("s-trunc", "Completed")[..60].to_string()),
        ("s-empty", String::new()),
        ("s-blank", " \n".to_string()),
        ("s-array", "[]".to_string()),
        ("s-string", "\"Completed\"".to_string()),
        ("s-nostatus", r#"{"id":"s-nostatus"}"#.to_string()),
        ("s-zombie", full("s-zombie", "Zombie")),
        ("s-lower", full("s-lower", "completed")),
        (
            "s-numstatus",
            full("s-numstatus", "Completed").replace(r#""status":"Completed""#, r#""status":3"#),
        ),
        ("s-mismatch", full("other-id", "Completed")),
        ("s-nul", format!("{}\0", full("s-nul", "Completed"))),
    ];
    let mut data = Vec::new();
    for (i, (id, content)) in cases.iter().enumerate() {
        record(&env, id, content, 40);
        let job = format!("job-{i}");
        mapping(&env, "repo", id, &job, 40);
        data.push((id.to_string(), events_job(&env, "repo", &job, 40), job));
    }
    let (o, v) = env.json(&CLEAN_ALL);
    assert_eq!(o.code, 0, "{o:?}");
    assert_no_panic(&o);
    for (id, ev, job) in &data {
        let rec = format!("sessions/{id}.json");
        let e = kept_entry(&v, &rec).unwrap_or_else(|| panic!("{rec} not in kept: {o:?}"));
        assert_eq!(e["reason"], "unknown", "{rec}: {e}");
        assert!(
            e["detail"].as_str().unwrap().contains(&rec),
            "{rec}: the report does not name the file: {e}"
        );
        assert_eq!(
            kept_reason(&v, ev).as_deref(),
            Some("unknown"),
            "{ev} of {id}: {o:?}"
        );
        assert!(env.exists(&rec) && env.exists(&format!("{ev}/events-20250101000000.jsonl")));
        assert!(
            env.exists(&format!("state/repo/mappings/{id}.json"))
                && env.exists(&format!("state/repo/mappings/{job}.json"))
        );
    }
    assert_eq!(v["sessions"]["unknown"], data.len(), "{o:?}");
    assert!(removed_paths(&v).is_empty(), "{o:?}");
    assert_canary(&env);
}

// ------------------------------------------------------------------------------------------------
// Case 16: duplicate keys, absurd pids and timestamps
// ------------------------------------------------------------------------------------------------

#[test]
fn clean_keeps_record_with_duplicate_status_key() {
    let env = Env::new("dup-status");
    let t = rfc3339_ago(40 * DAY);
    let b = body("s-dup", "Completed", &t, "{}", "[]").replace(
        r#""status":"Completed""#,
        r#""status":"Completed","status":"Running""#,
    );
    record(&env, "s-dup", &b, 40);
    let b = body("s-dupid", "Completed", &t, "{}", "[]")
        .replace(r#""id":"s-dupid""#, r#""id":"s-dupid","id":"s-dupid""#);
    record(&env, "s-dupid", &b, 40);
    let (o, v) = env.json(&["clean", "--all-repos", "--force", "--json"]);
    assert_eq!(o.code, 0, "{o:?}");
    assert_no_panic(&o);
    assert_eq!(
        kept_reason(&v, "sessions/s-dup.json").as_deref(),
        Some("unknown"),
        "{o:?}"
    );
    assert_eq!(
        kept_reason(&v, "sessions/s-dupid.json").as_deref(),
        Some("unknown"),
        "{o:?}"
    );
    assert!(env.exists("sessions/s-dup.json") && env.exists("sessions/s-dupid.json"));
    assert_canary(&env);
}

#[test]

fn clean_keeps_record_with_duplicate_owner_key() {
    // metadata.owner written twice: a live owner, then a dead one. Last-wins would make the
    // session stale; the record is ambiguous and must be kept (R4).
    let env = Env::new("dup-owner");
    let host = this_host();
    let live = owner_fragment(std::process::id() as u64, &host);
    let dead = owner_fragment(dead_pid() as u64, &host);
    let md = format!("{{{live},{dead}}}");
    record(
        &env,
        "s-dupowner",
        &body("s-dupowner", "Running", &rfc3339_ago(40 * DAY), &md, "[]"),
        40,
    );
    mapping(&env, "repo", "s-dupowner", "job-do", 40);
    let ev = events_job(&env, "repo", "job-do", 40);
    let (o, v) = env.json(&["clean", "--all-repos", "--force", "--json"]);
    assert_eq!(o.code, 0, "{o:?}");
    assert_no_panic(&o);
    assert!(
        env.exists("sessions/s-dupowner.json"),
        "a record with a live owner (written twice) was removed: {o:?}"
    );
    assert!(env.exists(&ev), "{o:?}");
    assert!(
        kept_reason(&v, "sessions/s-dupowner.json").is_some(),
        "{o:?}"
    );
    assert_canary(&env);
}

#[test]
fn clean_treats_absurd_owner_pids_as_not_alive() {
    let env = Env::new("absurd-pid");
    let host = this_host();
    // 4294967295 as pid_t is -1 (kill(-1, 0) = "every process"); 0 is the process group;
    // 2147483647 is beyond any pid_max. None is alive: the sessions are stale and cleaned.
    for (id, pid) in [
        ("s-max", 4294967295u64),
        ("s-zero", 0),
        ("s-imax", 2147483647),
    ] {
        record(
            &env,
            id,
            &body(
                id,
                "Running",
                &rfc3339_ago(40 * DAY),
                &format!("{{{}}}", owner_fragment(pid, &host)),
                "[]",
            ),
            40,
        );
    }
    // An out-of-range pid (does not fit u32): owner unknown → judged by activity → stale.
    record(
        &env,
        "s-huge",
        &body(
            "s-huge",
            "Running",
            &rfc3339_ago(40 * DAY),
            &format!("{{{}}}", owner_fragment(99999999999, &host)),
            "[]",
        ),
        40,
    );
    let (o, v) = env.json(&["clean", "--all-repos", "--force", "--json"]);
    assert_eq!(o.code, 0, "{o:?}");
    assert_no_panic(&o);
    assert_eq!(v["sessions"]["stale"], 4, "{o:?}");
    let removed = removed_paths(&v);
    for id in ["s-max", "s-zero", "s-imax", "s-huge"] {
        assert!(
            removed.contains(&format!("sessions/{id}.json")),
            "{id}: {o:?}"
        );
    }
    assert_canary(&env);
}

#[test]
fn clean_keeps_items_with_future_timestamps() {
    let env = Env::new("future-ts");
    let b = body("s-future", "Completed", "9999-12-31T23:59:59Z", "{}", "[]");
    record(&env, "s-future", &b, 40);
    let b = body("s-epoch", "Completed", "1970-01-01T00:00:00Z", "{}", "[]");
    record(&env, "s-epoch", &b, 40);
    // A file with an mtime in the future too.
    let f = env.write("logs/repo/future.log", "x\n");
    fs::File::open(&f)
        .unwrap()
        .set_modified(std::time::SystemTime::now() + Duration::from_secs(400 * DAY))
        .unwrap();
    let (o, v) = env.json(&["clean", "--all-repos", "--force", "--json"]);
    assert_eq!(o.code, 0, "{o:?}");
    assert_no_panic(&o);
    assert_eq!(
        kept_reason(&v, "sessions/s-future.json").as_deref(),
        Some("future-timestamp"),
        "{o:?}"
    );
    assert_eq!(
        kept_reason(&v, "logs/repo/future.log").as_deref(),
        Some("future-timestamp"),
        "{o:?}"
    );
    assert!(env.exists("sessions/s-future.json") && env.exists("logs/repo/future.log"));
    assert!(
        removed_paths(&v).contains(&"sessions/s-epoch.json".to_string()),
        "1970 timestamps are ordinary: {o:?}"
    );
    assert_canary(&env);
}

/// Safety §2: "A timestamp in the future counts as now and the item is kept with a warning."
#[test]

fn clean_warns_about_future_timestamps() {
    let env = Env::new("future-ts");
    let b = body("s-future", "Completed", "9999-12-31T23:59:59Z", "{}", "[]");
    record(&env, "s-future", &b, 40);
    let b = body("s-epoch", "Completed", "1970-01-01T00:00:00Z", "{}", "[]");
    record(&env, "s-epoch", &b, 40);
    // A file with an mtime in the future too.
    let f = env.write("logs/repo/future.log", "x\n");
    fs::File::open(&f)
        .unwrap()
        .set_modified(std::time::SystemTime::now() + Duration::from_secs(400 * DAY))
        .unwrap();
    let (o, v) = env.json(&["clean", "--all-repos", "--force", "--json"]);
    assert_eq!(o.code, 0, "{o:?}");
    let w = v["warnings"].to_string();
    assert!(
        w.contains("s-future") && w.contains("future"),
        "no warning for the future timestamp: {o:?}"
    );
    // Human output says it too.
    let o = env.run(&["clean", "--all-repos", "--force"]);
    assert_eq!(o.code, 0, "{o:?}");
    assert!(
        o.stdout
            .lines()
            .any(|l| l.starts_with("warning:") && l.contains("s-future")),
        "{o:?}"
    );
    assert_canary(&env);
}

// ------------------------------------------------------------------------------------------------
// Case 17: torn and garbled JSONL
// ------------------------------------------------------------------------------------------------

#[test]
fn clean_removes_expired_events_with_torn_and_garbled_lines() {
    let env = Env::new("torn-jsonl");
    let rel = "events/repo/job-torn";
    let mut content = String::new();
    content.push_str(
        r#"{"timestamp":"2025-01-01T00:00:00Z","event_type":"JobStarted","job_id":"job-torn"}"#,
    );
    content.push('\n');
    content.push_str("{{{ garbage \u{0}\u{1} not json ]]]\n");
    content.push('\n');
    content.push_str(
        r#"{"timestamp":"2025-01-01T00:00:01Z","event_type":"AgentStarted","agent_id":"a"}"#,
    );
    content.push('\n');
    content.push_str(r#"{"timestamp":"2025-01-01T00:00:02Z","event_type":"AgentComp"#);
    env.write(&format!("{rel}/events-20250101000000.jsonl"), &content);
    let mut bin = b"\xff\xfe\x00garbage\n".to_vec();
    bin.extend_from_slice(&[0x7b; 5000]);
    fs::write(env.p(&format!("{rel}/events-20250101000001.jsonl")), bin).unwrap();
    fs::write(env.p(&format!("{rel}/events-20250101000002.jsonl")), b"").unwrap();
    age_tree(&env.p(rel), 30 * DAY);
    let fresh = events_job(&env, "repo", "job-fresh", 1);

    let (o, v) = env.json(&["clean", "--all-repos", "--force", "--json"]);
    assert_eq!(o.code, 0, "{o:?}");
    assert_no_panic(&o);
    assert_eq!(removed_paths(&v), vec![rel.to_string()], "{o:?}");
    assert!(!env.exists(rel));
    assert!(env.exists(&fresh), "a fresh job was removed");
    assert_canary(&env);
}

// ------------------------------------------------------------------------------------------------
// Case 18: two cleans at once
// ------------------------------------------------------------------------------------------------

#[test]
fn clean_exits_zero_when_another_clean_holds_the_lock() {
    let env = Env::new("clean-lock");
    if !have(
        "flock",
        "clean_exits_zero_when_another_clean_holds_the_lock",
    ) {
        return;
    }
    build_tree(&env);
    let mut holder = hold_flock(&env.p("resume_locks/.clean.lock"), "5");
    let before = digest(&env.root);
    let o = env.run(&["clean", "--all-repos", "--force", "--older-than", "0s"]);
    let o_json = env.run(&CLEAN_ALL);
    let _ = holder.kill();
    let _ = holder.wait();
    assert_eq!(o.code, 0, "{o:?}");
    assert_no_panic(&o);
    assert!(o.stderr.contains("another clean is running"), "{o:?}");
    assert_eq!(o_json.code, 0, "{o_json:?}");
    assert!(
        o_json.stderr.contains("another clean is running"),
        "{o_json:?}"
    );
    assert_tree_eq(
        &digest(&env.root),
        &before,
        "a clean that lost the lock changed the tree",
    );
    assert_canary(&env);
}

#[test]
fn concurrent_cleans_converge_to_a_single_clean() {
    let reference = reference_snapshot();
    let env = Env::new("clean-concurrent");
    let protected = build_tree(&env);
    let children: Vec<Child> = (0..10)
        .map(|_| {
            env.cmd(&[
                "clean",
                "--all-repos",
                "--force",
                "--older-than",
                "0s",
                "-q",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
        })
        .collect();
    for c in children {
        let o = wait_timeout(c, Duration::from_secs(60)).expect("a concurrent clean hung");
        assert_eq!(o.code, 0, "{o:?}");
        assert_no_panic(&o);
    }
    assert_eq!(
        env.snapshot(),
        reference,
        "10 concurrent cleans did not end where one clean ends"
    );
    assert_protected(&env, &protected, "after 10 concurrent cleans");
    assert_canary(&env);
    // The audit log names each removal exactly once.
    let audit = fs::read_to_string(env.p("clean-audit.jsonl")).unwrap();
    let mut paths: Vec<String> = audit
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|e| e["action"] == "remove")
        .map(|e| e["path"].as_str().unwrap().to_string())
        .collect();
    let n = paths.len();
    paths.sort();
    paths.dedup();
    assert_eq!(paths.len(), n, "an item was removed twice: {audit}");
}

// ------------------------------------------------------------------------------------------------
// Cases 20/21: resume locks
// ------------------------------------------------------------------------------------------------

/// A Running session with no owner record, 40 days old, owning job `job-{tag}` (events + mapping)
/// and the resume lock `resume_locks/job-{tag}.lock` with `content`.
fn locked_session(env: &Env, tag: &str, content: &str) -> (String, String, String) {
    let sid = format!("s-{tag}");
    let job = format!("job-{tag}");
    env.session(&sid, "Running", 40, "");
    mapping(env, "repo", &sid, &job, 40);
    let ev = events_job(env, "repo", &job, 40);
    let l = env.write(&format!("resume_locks/{job}.lock"), content);
    age(&l, 40 * DAY);
    (
        format!("sessions/{sid}.json"),
        ev,
        format!("resume_locks/{job}.lock"),
    )
}

fn lock_content(job: &str, pid: u64, host: &str, secs_ago: u64) -> String {
    format!(
        r#"{{"job_id":"{job}","process_id":{pid},"hostname":"{host}","acquired_at":"{}"}}"#,
        rfc3339_ago(secs_ago)
    )
}

fn assert_live_lock_protects(
    env: &Env,
    rec: &str,
    ev: &str,
    lock: &str,
    o: &Out,
    v: &serde_json::Value,
) {
    assert_eq!(o.code, 0, "{o:?}");
    assert_no_panic(o);
    for p in [rec, ev, lock] {
        assert!(
            env.exists(p),
            "{p} removed despite a live resume lock: {o:?}"
        );
        let r = kept_reason(v, p);
        assert!(
            matches!(r.as_deref(), Some("active") | Some("live-lock")),
            "{p}: reason {r:?}: {o:?}"
        );
    }
}

#[test]
fn resume_lock_of_dead_pid_on_this_host_is_not_live() {
    let env = Env::new("lock-dead");
    let host = this_host();
    let (rec, ev, lock) = locked_session(
        &env,
        "dead",
        &lock_content("job-dead", dead_pid() as u64, &host, 40 * DAY),
    );
    let (o, v) = env.json(&["clean", "--all-repos", "--force", "--json"]);
    assert_eq!(o.code, 0, "{o:?}");
    assert_no_panic(&o);
    assert_eq!(v["sessions"]["stale"], 1, "{o:?}");
    let removed = removed_paths(&v);
    for p in [&rec, &ev, &lock] {
        assert!(removed.contains(p), "{p} not removed: {o:?}");
        assert!(!env.exists(p));
    }
    assert_canary(&env);
}

#[test]
fn resume_lock_of_live_pid_on_this_host_protects_session() {
    let env = Env::new("lock-live-pid");
    let host = this_host();
    let (rec, ev, lock) = locked_session(
        &env,
        "mine",
        &lock_content("job-mine", std::process::id() as u64, &host, 40 * DAY),
    );
    let before = fs::read(env.p(&lock)).unwrap();
    let (o, v) = env.json(&["clean", "--all-repos", "--force", "--json"]);
    assert_live_lock_protects(&env, &rec, &ev, &lock, &o, &v);
    assert_eq!(
        fs::read(env.p(&lock)).unwrap(),
        before,
        "the lock file changed"
    );
    assert_canary(&env);
}

#[test]
fn resume_lock_from_another_host_within_lease_protects_session() {
    let env = Env::new("lock-other-host");
    let (rec, ev, lock) = locked_session(
        &env,
        "remote",
        &lock_content("job-remote", 1, "some-other-host.example", 60),
    );
    let (o, v) = env.json(&["clean", "--all-repos", "--force", "--json"]);
    assert_live_lock_protects(&env, &rec, &ev, &lock, &o, &v);
    assert_canary(&env);
}

#[test]
fn resume_lock_held_by_flock_protects_session() {
    let env = Env::new("lock-flock");
    if !have("flock", "resume_lock_held_by_flock_protects_session") {
        return;
    }
    let host = this_host();
    // Content says "dead pid, this host": only the held flock makes it live.
    let (rec, ev, lock) = locked_session(
        &env,
        "held",
        &lock_content("job-held", dead_pid() as u64, &host, 40 * DAY),
    );
    // Without -o: `sleep` inherits the locked descriptor (case 21, inherited descriptor).
    let mut holder = hold_flock(&env.p(&lock), "5");
    let (o, v) = env.json(&["clean", "--all-repos", "--force", "--json"]);
    let _ = holder.kill();
    let _ = holder.wait();
    assert_live_lock_protects(&env, &rec, &ev, &lock, &o, &v);
    assert_canary(&env);
}

// ------------------------------------------------------------------------------------------------
// Case 24: kill -9 at every step
// ------------------------------------------------------------------------------------------------

#[test]
fn clean_killed_at_any_step_is_finished_by_the_next_run() {
    if !have(
        "strace",
        "clean_killed_at_any_step_is_finished_by_the_next_run",
    ) {
        return;
    }
    let reference = reference_snapshot();
    let mut killed = 0;
    let mut completed = None;
    for n in 1..=80 {
        let env = Env::new(&format!("kill9-{n}"));
        let protected = build_tree(&env);
        let live = fs::read(env.p("sessions/session-live.json")).unwrap();
        let when = format!("inject=renameat2,renameat,unlinkat:signal=KILL:when={n}");
        let o = Out::from(
            cmd_via(
                &env,
                "strace",
                &["-f", "-o", "/dev/null", "-e", &when],
                &["clean", "--all-repos", "--force", "--older-than", "0s"],
            )
            .output()
            .unwrap(),
        );
        assert_no_panic(&o);
        if o.code != 0 {
            killed += 1;
        }
        let finished = o.code == 0;
        assert_protected(&env, &protected, &format!("after kill at step {n}"));
        assert_eq!(
            fs::read(env.p("sessions/session-live.json")).unwrap(),
            live,
            "step {n}: active record changed"
        );
        assert_canary(&env);
        let o = env.run(&["clean", "--all-repos", "--force", "--older-than", "0s"]);
        assert_eq!(o.code, 0, "rerun after kill at step {n}: {o:?}");
        assert_eq!(
            env.snapshot(),
            reference,
            "kill at step {n}, then a clean, differs from one clean"
        );
        assert_protected(&env, &protected, &format!("after rerun (step {n})"));
        let trash: Vec<_> = fs::read_dir(env.p(".trash"))
            .map(|r| r.flatten().map(|e| e.file_name()).collect())
            .unwrap_or_default();
        assert!(trash.is_empty(), "step {n}: trash not emptied: {trash:?}");
        assert_canary(&env);
        if finished {
            completed = Some(n);
            break;
        }
    }
    // The last step ran to completion: every rename/unlink of the run was a kill point.
    let done = completed.expect("no run completed within 80 injected kills");
    assert!(
        done > 12 && killed == done - 1,
        "killed {killed} runs, completed at step {done}"
    );
    assert!(
        killed >= 3,
        "the injection killed only {killed} runs: is strace injection working?"
    );
}

// ------------------------------------------------------------------------------------------------
// Case 25: per-item failures
// ------------------------------------------------------------------------------------------------

#[test]
fn clean_reports_per_item_failure_and_keeps_item_in_place() {
    if !have(
        "strace",
        "clean_reports_per_item_failure_and_keeps_item_in_place",
    ) {
        return;
    }
    let env = Env::new("eacces");
    let job = events_job(&env, "repo", "job-a", 40);
    fs::create_dir_all(env.p(&format!("{job}/sub"))).unwrap();
    fs::write(env.p(&format!("{job}/sub/more.jsonl")), b"{}\n").unwrap();
    age_tree(&env.p(&job), 40 * DAY);
    env.old_file("logs/repo/run.log", 40);
    let before = digest(&env.p("events"));
    let o = Out::from(
        cmd_via(
            &env,
            "strace",
            &[
                "-f",
                "-o",
                "/dev/null",
                "-e",
                "inject=unlinkat:error=EACCES",
            ],
            &["clean", "--all-repos", "--force", "--older-than", "0s"],
        )
        .output()
        .unwrap(),
    );
    assert_eq!(o.code, 1, "{o:?}");
    assert_no_panic(&o);
    let line = o
        .stderr
        .lines()
        .find(|l| l.starts_with(&format!("prodigy clean: {job}: ")))
        .unwrap_or_else(|| panic!("no `prodigy clean: {job}: …` line: {o:?}"));
    assert!(line.contains("; "), "no hint in `{line}`");
    assert!(
        line.to_lowercase().contains("permission denied") || line.contains("EACCES"),
        "cause missing: `{line}`"
    );
    assert!(
        o.stderr
            .lines()
            .any(|l| l.starts_with("prodigy clean: logs/repo/run.log: ")),
        "{o:?}"
    );
    // Kept in place, complete, not half-hidden in the trash.
    assert_tree_eq(
        &digest(&env.p("events")),
        &before,
        "the failed item changed",
    );
    let trash: Vec<_> = fs::read_dir(env.p(".trash"))
        .map(|r| r.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(trash.is_empty(), "left in the trash: {trash:?}");
    // The JSON report says the same.
    let (o2, v) = {
        let o = Out::from(
            cmd_via(
                &env,
                "strace",
                &["-f", "-o", "/dev/null", "-e", "inject=unlinkat:error=EPERM"],
                &CLEAN_ALL,
            )
            .output()
            .unwrap(),
        );
        let v: serde_json::Value =
            serde_json::from_str(&o.stdout).unwrap_or_else(|e| panic!("{e}: {o:?}"));
        (o, v)
    };
    assert_eq!(o2.code, 1, "{o2:?}");
    assert_eq!(kept_reason(&v, &job).as_deref(), Some("failed"), "{o2:?}");
    assert!(
        v["errors"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["path"] == job.as_str()),
        "{o2:?}"
    );
    assert!(env.exists(&format!("{job}/sub/more.jsonl")));
    // A rerun without the fault finishes.
    let (o, v) = env.json(&CLEAN_ALL);
    assert_eq!(o.code, 0, "{o:?}");
    assert!(removed_paths(&v).contains(&job), "{o:?}");
    assert!(!env.exists(&job) && !env.exists("logs/repo/run.log"));
    assert_canary(&env);
}

// ------------------------------------------------------------------------------------------------
// Case 28: git misdirected by leaked GIT_DIR / GIT_WORK_TREE
// ------------------------------------------------------------------------------------------------

#[test]
fn leaked_git_environment_does_not_change_worktree_decisions() {
    if !have(
        "git",
        "leaked_git_environment_does_not_change_worktree_decisions",
    ) {
        return;
    }
    let mut env = Env::new("git-env");
    let r = repo(&env, "proj");
    let decoy = repo(&env, "decoy");
    fs::write(decoy.join("decoy-dirty.txt"), b"decoy work").unwrap();
    let dirty = worktree(&env, &r, "proj", "wt-dirty");
    fs::write(dirty.join("untracked.txt"), b"precious").unwrap();
    let clean = worktree(&env, &r, "proj", "wt-clean");
    age_tree(&dirty, 40 * DAY);
    age_tree(&clean, 40 * DAY);
    let decoy_before = digest(&decoy);
    env.extra_env
        .push(("GIT_DIR".into(), decoy.join(".git").display().to_string()));
    env.extra_env
        .push(("GIT_WORK_TREE".into(), decoy.display().to_string()));
    env.extra_env.push((
        "GIT_INDEX_FILE".into(),
        decoy.join(".git/index").display().to_string(),
    ));
    env.extra_env.push((
        "GIT_COMMON_DIR".into(),
        decoy.join(".git").display().to_string(),
    ));

    let (o, v) = env.json(&CLEAN_ALL);
    assert_eq!(o.code, 0, "{o:?}");
    assert_no_panic(&o);
    assert_eq!(
        kept_reason(&v, "worktrees/proj/wt-dirty").as_deref(),
        Some("uncommitted"),
        "{o:?}"
    );
    assert_eq!(fs::read(dirty.join("untracked.txt")).unwrap(), b"precious");
    assert!(
        removed_paths(&v).contains(&"worktrees/proj/wt-clean".to_string()),
        "{o:?}"
    );
    assert!(!clean.exists());
    assert_tree_eq(
        &digest(&decoy),
        &decoy_before,
        "the decoy repository (GIT_DIR) was changed",
    );
    let wl = git(&r, &["worktree", "list", "--porcelain"]);
    assert!(
        wl.contains("wt-dirty") && !wl.contains("wt-clean"),
        "git bookkeeping: {wl}"
    );
    let branches = git(&r, &["branch", "--list"]);
    assert!(branches.contains("prodigy-wt-dirty"), "{branches}");
    let decoy_branches = git(&decoy, &["branch", "--list"]);
    assert_eq!(
        decoy_branches.trim(),
        "* main",
        "decoy branches changed: {decoy_branches}"
    );
    assert_canary(&env);
}

// ------------------------------------------------------------------------------------------------
// Case 30: stdout full; dry run = real run
// ------------------------------------------------------------------------------------------------

#[test]
fn clean_with_full_stdout_does_not_panic_and_rerun_converges() {
    let reference = reference_snapshot();
    for json in [false, true] {
        let env = Env::new("dev-full");
        let protected = build_tree(&env);
        let mut args = vec!["clean", "--all-repos", "--force", "--older-than", "0s"];
        if json {
            args.push("--json");
        }
        let o = Out::from(
            env.cmd(&args)
                .stdout(fs::File::create("/dev/full").unwrap())
                .output()
                .unwrap(),
        );
        assert_no_panic(&o);
        assert_ne!(
            o.code, 0,
            "json={json}: writing to a full disk was not reported: {o:?}"
        );
        assert!(o.code > 0, "json={json}: killed by a signal: {o:?}");
        assert!(
            o.stderr.contains("prodigy"),
            "json={json}: no error message: {o:?}"
        );
        assert_protected(&env, &protected, "after /dev/full");
        let o = env.run(&["clean", "--all-repos", "--force", "--older-than", "0s"]);
        assert_eq!(o.code, 0, "{o:?}");
        assert_eq!(
            env.snapshot(),
            reference,
            "json={json}: rerun did not converge"
        );
        assert_canary(&env);
    }
    // A closed pipe: no panic, no SIGPIPE death.
    let env = Env::new("closed-pipe");
    build_tree(&env);
    let mut c = env
        .cmd(&["clean", "--all-repos", "--force", "--older-than", "0s"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(c.stdout.take());
    let o = wait_timeout(c, Duration::from_secs(20)).expect("hung on a closed pipe");
    assert_no_panic(&o);
    let o = env.run(&["clean", "--all-repos", "--force", "--older-than", "0s"]);
    assert_eq!(o.code, 0, "{o:?}");
    assert_eq!(env.snapshot(), reference);
}

#[test]
fn dry_run_lists_exactly_what_real_run_removes() {
    let env = Env::new("dry-equals-real");
    let protected = build_tree(&env);
    let before = env.snapshot();
    let (o, dry) = env.json(&[
        "clean",
        "--all-repos",
        "--dry-run",
        "--older-than",
        "0s",
        "--json",
    ]);
    assert_eq!(o.code, 0, "{o:?}");
    assert_eq!(dry["dry_run"], true);
    assert_eq!(env.snapshot(), before, "the dry run changed the tree");
    let (o, real) = env.json(&CLEAN_ALL);
    assert_eq!(o.code, 0, "{o:?}");
    assert_eq!(real["dry_run"], false);
    for p in [
        "sessions/session-done.json",
        "sessions/session-stale.json",
        "events/repo/job-orphan",
        "resume_locks/job-gone.lock",
    ] {
        assert!(
            removed_paths(&real).contains(&p.to_string()),
            "{p} not removed: {o:?}"
        );
    }
    assert_eq!(
        removed_paths(&dry),
        removed_paths(&real),
        "dry run and real run differ"
    );
    assert_eq!(kept_paths(&dry), kept_paths(&real), "kept lists differ");
    // And what the real run says it removed is exactly what disappeared.
    let after = env.snapshot();
    for p in removed_paths(&real) {
        assert!(!after.contains(&p), "{p} reported removed but exists");
    }
    assert_protected(&env, &protected, "after the real run");
    assert_canary(&env);
}

#[test]
fn clean_does_not_append_to_an_audit_log_symlinked_outside_the_root() {
    let env = Env::new("audit-symlink");
    let target = env.outside.join("victim.txt");
    std::fs::write(&target, b"do not touch\n").unwrap();
    std::os::unix::fs::symlink(&target, env.p("clean-audit.jsonl")).unwrap();
    env.session("s-old", "Completed", 60, "");
    let o = env.run(&["clean", "--all-repos", "--force"]);
    assert_eq!(o.code, 0, "{o:?}");
    assert!(
        !env.exists("sessions/s-old.json"),
        "the clean itself goes on"
    );
    assert!(o.stderr.contains("cannot write audit log"), "{o:?}");
    assert_eq!(std::fs::read(&target).unwrap(), b"do not touch\n");
    assert_eq!(
        std::fs::read(env.outside.join("canary.txt")).unwrap(),
        b"canary"
    );
}

#[test]
fn orphan_registry_is_not_written_through_a_symlinked_directory() {
    if !have(
        "strace",
        "orphan_registry_is_not_written_through_a_symlinked_directory",
    ) {
        return;
    }
    let env = Env::new("orphan-symlink");
    let r = repo(&env, "web");
    let w = worktree(&env, &r, "web", "wt");
    age_tree(&w, 30 * DAY);
    std::fs::create_dir_all(env.p("orphaned_worktrees")).unwrap();
    std::os::unix::fs::symlink(&env.outside, env.p("orphaned_worktrees/web")).unwrap();
    // Make the worktree's removal fail so that clean wants to record it as orphaned.
    let o = std::process::Command::new("strace")
        .args(["-f", "-o", "/dev/null", "-e", "inject=unlinkat:error=EPERM"])
        .arg(prodigy_bin())
        .args(["clean", "--worktrees", "--all-repos", "--force"])
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", &env.home)
        .env("PRODIGY_HOME", &env.root)
        .current_dir(&env.dir)
        .output()
        .unwrap();
    let o = Out::from(o);
    assert_eq!(o.code, 1, "{o:?}");
    assert!(
        o.stdout
            .contains("warning: cannot record orphaned worktree"),
        "{o:?}"
    );
    let outside: Vec<_> = std::fs::read_dir(&env.outside)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        outside,
        vec![std::ffi::OsString::from("canary.txt")],
        "nothing written outside the root"
    );
}

#[test]
fn worktree_with_a_dirty_initialized_submodule_is_kept() {
    let env = Env::new("submodule");
    let sub = repo(&env, "lib");
    let r = repo(&env, "web");
    git(
        &r,
        &[
            "-c",
            "protocol.file.allow=always",
            "submodule",
            "add",
            "-q",
            sub.to_str().unwrap(),
            "lib",
        ],
    );
    git(&r, &["commit", "-qm", "add submodule"]);
    let dirty = worktree(&env, &r, "web", "wt-dirty");
    let clean = worktree(&env, &r, "web", "wt-clean");
    for w in [&dirty, &clean] {
        git(
            w,
            &[
                "-c",
                "protocol.file.allow=always",
                "submodule",
                "update",
                "--init",
                "-q",
            ],
        );
    }
    std::fs::write(
        dirty.join("lib/README.md"),
        "changed inside the submodule\n",
    )
    .unwrap();
    age_tree(&dirty, 30 * DAY);
    age_tree(&clean, 30 * DAY);
    let (o, v) = env.json(&["clean", "--worktrees", "--all-repos", "--force", "--json"]);
    assert_eq!(o.code, 0, "{o:?}");
    assert_eq!(
        kept_reason(&v, "worktrees/web/wt-dirty").as_deref(),
        Some("uncommitted"),
        "{v}"
    );
    assert_eq!(
        std::fs::read_to_string(dirty.join("lib/README.md")).unwrap(),
        "changed inside the submodule\n"
    );
    assert!(
        removed_paths(&v).contains(&"worktrees/web/wt-clean".to_string()),
        "{v}"
    );
    assert!(!git(&r, &["worktree", "list", "--porcelain"]).contains("prunable"));
}

#[test]
fn nested_agent_worktrees_go_first_and_a_kept_agent_keeps_its_parent() {
    let env = Env::new("nested");
    let r = repo(&env, "web");
    let mk = |parent: &str| {
        let p = worktree(&env, &r, "web", parent);
        for a in ["agent-1", "agent-2"] {
            let ap = p.join(a);
            git(
                &r,
                &[
                    "worktree",
                    "add",
                    "-q",
                    "-b",
                    &format!("prodigy-{parent}-{a}"),
                    ap.to_str().unwrap(),
                    "main",
                ],
            );
        }
        p
    };
    let both_clean = mk("session-mr1");
    let one_dirty = mk("session-mr2");
    std::fs::write(one_dirty.join("agent-2/wip.txt"), "work in progress\n").unwrap();
    env.session("session-mr1", "Completed", 30, "");
    env.session("session-mr2", "Completed", 30, "");
    age_tree(&both_clean, 30 * DAY);
    age_tree(&one_dirty, 30 * DAY);
    let (_, dry) = env.json(&["clean", "--all-repos", "--dry-run", "--json"]);
    let (o, v) = env.json(&["clean", "--all-repos", "--force", "--json"]);
    assert_eq!(o.code, 0, "{o:?}");
    assert_eq!(
        removed_paths(&dry),
        removed_paths(&v),
        "the dry run predicted the real run"
    );
    let removed = removed_paths(&v);
    for p in [
        "worktrees/web/session-mr1",
        "worktrees/web/session-mr1/agent-1",
        "worktrees/web/session-mr1/agent-2",
        "sessions/session-mr1.json",
        "worktrees/web/session-mr2/agent-1",
    ] {
        assert!(removed.contains(&p.to_string()), "{p} removed: {removed:?}");
    }
    assert!(!both_clean.exists());
    assert_eq!(
        kept_reason(&v, "worktrees/web/session-mr2/agent-2").as_deref(),
        Some("uncommitted")
    );
    assert_eq!(
        kept_reason(&v, "worktrees/web/session-mr2").as_deref(),
        Some("nested-kept")
    );
    assert_eq!(
        kept_reason(&v, "sessions/session-mr2.json").as_deref(),
        Some("owner-kept")
    );
    assert_eq!(
        std::fs::read_to_string(one_dirty.join("agent-2/wip.txt")).unwrap(),
        "work in progress\n"
    );
    let list = git(&r, &["worktree", "list", "--porcelain"]);
    assert!(!list.contains("prunable"), "{list}");
    let branches = git(&r, &["branch", "--format=%(refname:short)"]);
    assert_eq!(
        branches.lines().collect::<Vec<_>>(),
        vec!["main", "prodigy-session-mr2", "prodigy-session-mr2-agent-2"]
    );
}
