//! The safety contract (safety.md §5) under fault injection: the cases `safety.rs` and
//! `worktree.rs` do not cover, each run against the built binary with strace, faketime, chattr,
//! mounts and privileges where a case needs them.
//!
//! Every test asserts the safe outcome and that the canaries outside the root (and the files of
//! protected items) survive byte for byte. A test whose tool or privilege is missing prints a loud
//! `SKIPPED …` line and returns.

use super::common::*;
use std::collections::{BTreeMap, BTreeSet};
use std::ffi::CString;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{symlink, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
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

/// Every syscall that deletes or moves a directory entry.
const DELETING: &str = "unlink,unlinkat,rmdir,rename,renameat,renameat2";

type Tree = BTreeMap<String, String>;

fn is_root() -> bool {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() == 0 }
}

fn need_root(test: &str) -> bool {
    if !is_root() {
        eprintln!("SKIPPED {test}: needs root (CI runs as root)");
    }
    is_root()
}

/// This host's name as prodigy sees it (the UTS nodename).
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

/// A session record with full control over its body; file aged `days` days.
fn record(env: &Env, id: &str, body: &str, days: u64) -> PathBuf {
    let p = env.write(&format!("sessions/{id}.json"), body);
    age(&p, days * DAY);
    p
}

const CHECKPOINT: &str =
    r#"[{"id":"c1","created_at":"2025-01-01T00:00:00Z","state":{},"metadata":{}}]"#;

/// `events/{repo}/{job}/events-….jsonl`, aged; returns its relative path.
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

/// An expired events job with `dirs` subdirectories of `files` files each.
fn big_events_job(env: &Env, repo: &str, job: &str, dirs: usize, files: usize) -> String {
    let rel = format!("events/{repo}/{job}");
    for d in 0..dirs {
        for f in 0..files {
            env.write(&format!("{rel}/sub-{d:02}/f-{f:03}.jsonl"), "{}\n");
        }
    }
    age_tree(&env.p(&rel), 40 * DAY);
    rel
}

/// Every path below `dir` with its content (files), link target or `<dir>`, never following
/// symlinks: a byte-for-byte picture of a tree.
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
            let Ok(m) = fs::symlink_metadata(&path) else {
                continue;
            };
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
                let c = fs::read(&path).map(|b| b.escape_ascii().to_string());
                out.insert(rel, c.unwrap_or_else(|e| format!("<unreadable {e}>")));
            } else {
                out.insert(rel, "<special>".into());
            }
        }
    }
    let mut out = BTreeMap::new();
    go(dir, dir, &mut out);
    out
}

/// Two digests are equal; on failure, name only the paths that differ.
fn assert_tree_eq(after: &Tree, before: &Tree, what: &str) {
    if after == before {
        return;
    }
    let mut diff = Vec::new();
    for k in before.keys().chain(after.keys()).collect::<BTreeSet<_>>() {
        match (before.get(k), after.get(k)) {
            (Some(a), Some(b)) if a == b => {}
            (Some(_), Some(_)) => diff.push(format!("changed {k}")),
            (Some(_), None) => diff.push(format!("gone    {k}")),
            (None, _) => diff.push(format!("new     {k}")),
        }
    }
    panic!("{what}:\n{}", diff.join("\n"));
}

/// The canary outside the root is intact, and so is everything else outside it.
fn assert_outside(env: &Env, before: &Tree) {
    assert_eq!(
        fs::read(env.outside.join("canary.txt")).expect("canary.txt is gone"),
        b"canary",
        "canary changed"
    );
    assert_tree_eq(
        &digest(&env.outside),
        before,
        "files outside the root changed",
    );
}

fn assert_no_panic(o: &Out) {
    assert!(
        !o.stderr.contains("panicked") && !o.stderr.contains("RUST_BACKTRACE"),
        "prodigy panicked: {o:?}"
    );
}

fn parse(o: &Out) -> serde_json::Value {
    serde_json::from_str(&o.stdout).unwrap_or_else(|e| panic!("bad json ({e}): {o:?}"))
}

/// `prodigy args` under `strace -o /dev/null -e <opts…>` (each opt is one `-e` value).
fn strace_run(env: &Env, follow: bool, opts: &[&str], args: &[&str]) -> Out {
    let mut pre: Vec<&str> = vec!["-qq", "-o", "/dev/null"];
    if follow {
        pre.push("-f");
    }
    for o in opts {
        pre.push("-e");
        pre.push(o);
    }
    Out::from(cmd_via(env, "strace", &pre, args).output().unwrap())
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
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn trash_entries(env: &Env) -> Vec<String> {
    fs::read_dir(env.p(".trash"))
        .map(|r| {
            r.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

fn cstr(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).unwrap()
}

fn chown(p: &Path, uid: u32) {
    let c = cstr(p);
    // SAFETY: valid C string; lchown does not follow a final symlink.
    assert_eq!(
        unsafe { libc::lchown(c.as_ptr(), uid, uid) },
        0,
        "chown {p:?}"
    );
}

/// `sh -c script` with the test environment (PATH, HOME, PRODIGY_HOME, P = the binary).
fn sh(env: &Env, script: &str) -> Out {
    Out::from(
        Command::new("sh")
            .args(["-c", script])
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", &env.home)
            .env("PRODIGY_HOME", &env.root)
            .env("LC_ALL", "C")
            .env("P", prodigy_bin())
            .current_dir(&env.dir)
            .stdin(Stdio::null())
            .output()
            .unwrap(),
    )
}

/// A tree with an active session (owned by this test process), a resumable one, a completed and
/// a stale one with their data, and unowned expired data. Returns the protected paths.
fn build_tree(env: &Env) -> Vec<String> {
    let host = this_host();
    let me = std::process::id();
    let owner = format!(
        r#"{{"owner":{{"pid":{me},"hostname":"{host}","heartbeat_at":"{}"}}}}"#,
        rfc3339_ago(40 * DAY)
    );
    record(
        env,
        "session-live",
        &body(
            "session-live",
            "Running",
            &rfc3339_ago(40 * DAY),
            &owner,
            "[]",
        ),
        40,
    );
    mapping(env, "repo", "session-live", "job-live", 40);
    events_job(env, "repo", "job-live", 40);
    record(
        env,
        "session-resume",
        &body(
            "session-resume",
            "Failed",
            &rfc3339_ago(40 * DAY),
            "{}",
            CHECKPOINT,
        ),
        40,
    );
    mapping(env, "repo", "session-resume", "job-resume", 40);
    events_job(env, "repo", "job-resume", 40);
    env.session("session-done", "Completed", 40, "");
    mapping(env, "repo", "session-done", "job-done", 40);
    events_job(env, "repo", "job-done", 40);
    env.session("session-stale", "Running", 40, "");
    mapping(env, "repo", "session-stale", "job-stale", 40);
    events_job(env, "repo", "job-stale", 40);
    events_job(env, "repo", "job-orphan", 40);
    env.old_file("logs/repo/run-1.log", 40);
    vec![
        "sessions/session-live.json".into(),
        "sessions/session-resume.json".into(),
        "state/repo/mappings/session-live.json".into(),
        "state/repo/mappings/job-live.json".into(),
        "state/repo/mappings/session-resume.json".into(),
        "state/repo/mappings/job-resume.json".into(),
        "events/repo/job-live/events-20250101000000.jsonl".into(),
        "events/repo/job-resume/events-20250101000000.jsonl".into(),
    ]
}

/// The protected paths with their bytes.
fn protected_digest(env: &Env, protected: &[String]) -> BTreeMap<String, Vec<u8>> {
    protected
        .iter()
        .map(|p| (p.clone(), fs::read(env.p(p)).unwrap()))
        .collect()
}

fn assert_protected(env: &Env, want: &BTreeMap<String, Vec<u8>>, when: &str) {
    for (p, bytes) in want {
        let now = fs::read(env.p(p)).unwrap_or_else(|e| panic!("{when}: protected `{p}`: {e}"));
        assert!(&now == bytes, "{when}: protected `{p}` changed");
    }
}

// ------------------------------------------------------------------------------------------------
// Deletion sandbox: commands that must not delete anything make no deleting syscall at all
// ------------------------------------------------------------------------------------------------

/// Run prodigy under strace, tracing (and failing with EPERM) every deleting syscall and tracing
/// execve; returns the output and the deleting calls made (pid-prefixed strace lines).
fn sandboxed(env: &Env, args: &[&str], root: Option<&std::ffi::OsStr>) -> (Out, Vec<String>) {
    let trace = env.dir.join(format!("sandbox-{}.trace", args.join("_")));
    let t = trace.to_str().unwrap().to_string();
    let trace_set = format!("trace=execve,{DELETING}");
    let inject = format!("inject={DELETING}:error=EPERM");
    let mut c = cmd_via(
        env,
        "strace",
        &["-f", "-qq", "-o", &t, "-e", &trace_set, "-e", &inject],
        args,
    );
    if let Some(r) = root {
        c.env("PRODIGY_HOME", r);
    }
    let o = Out::from(c.output().unwrap());
    let text = fs::read_to_string(&trace).unwrap_or_default();
    let _ = fs::remove_file(&trace);
    let calls = text
        .lines()
        .filter(|l| !l.contains("execve(") && !l.contains("+++") && !l.contains("---"))
        .filter(|l| DELETING.split(',').any(|s| l.contains(&format!(" {s}("))))
        .map(str::to_string)
        .collect();
    (o, calls)
}

#[test]
fn refusing_and_read_only_commands_make_no_deleting_syscall() {
    let test = "refusing_and_read_only_commands_make_no_deleting_syscall";
    if !have("strace", test) || !have("git", test) {
        return;
    }
    let env = Env::new("sandbox");
    let protected = build_tree(&env);
    let keep = protected_digest(&env, &protected);
    let r = repo(&env, "web");
    let w = worktree(&env, &r, "web", "wt-old");
    age_tree(&w, 30 * DAY);
    // Expired data in HOME and in a relative decoy, for the hostile roots.
    fs::create_dir_all(env.home.join("events/repo/job-h")).unwrap();
    fs::write(env.home.join("events/repo/job-h/events-1.jsonl"), b"{}\n").unwrap();
    fs::create_dir_all(env.dir.join("rel/.prodigy/sessions")).unwrap();
    fs::write(env.dir.join("rel/.prodigy/sessions/s.json"), b"{}").unwrap();
    age_tree(&env.home, 40 * DAY);
    let before = digest(&env.dir);
    let outside = digest(&env.outside);

    let clean = ["clean", "--all-repos", "--force", "--older-than", "0s"];
    let home = env.home.clone().into_os_string();
    let mut runs: Vec<(String, Vec<&str>, Option<&std::ffi::OsStr>, i32)> = vec![
        ("root /".into(), clean.to_vec(), Some("/".as_ref()), 3),
        (
            "root $HOME".into(),
            clean.to_vec(),
            Some(home.as_os_str()),
            3,
        ),
        (
            "relative root".into(),
            clean.to_vec(),
            Some("rel/.prodigy".as_ref()),
            2,
        ),
        (
            "dry run".into(),
            vec!["clean", "--all-repos", "--dry-run", "--older-than", "0s"],
            None,
            0,
        ),
        ("stats".into(), vec!["stats", "--all-repos"], None, 0),
        ("sessions ls".into(), vec!["sessions", "ls"], None, 0),
        (
            "worktree ls".into(),
            vec!["worktree", "ls", "--all-repos"],
            None,
            0,
        ),
        (
            "clean without --force, no terminal".into(),
            vec!["clean", "--all-repos", "--older-than", "0s"],
            None,
            3,
        ),
    ];
    // A dry run that prints JSON goes through the same plan.
    runs.push((
        "dry run --json".into(),
        vec![
            "clean",
            "--all-repos",
            "--dry-run",
            "--older-than",
            "0s",
            "--json",
        ],
        None,
        0,
    ));
    for (what, args, root, code) in &runs {
        let (o, calls) = sandboxed(&env, args, *root);
        assert_no_panic(&o);
        assert_eq!(o.code, *code, "{what}: {o:?}");
        assert!(
            calls.is_empty(),
            "{what}: deleting syscalls were made:\n{}\n{o:?}",
            calls.join("\n")
        );
        // Nothing changes but the clean lock, which a refused clean creates (see
        // refused_clean_without_force_creates_nothing).
        let mut now = digest(&env.dir);
        now.remove("home/.prodigy/resume_locks/.clean.lock");
        if !before.contains_key("home/.prodigy/resume_locks") {
            now.remove("home/.prodigy/resume_locks");
        }
        assert_tree_eq(&now, &before, &format!("{what} changed files"));
    }
    // The dry run did find work to do: the sandbox is not vacuous.
    let (o, calls) = sandboxed(
        &env,
        &[
            "clean",
            "--all-repos",
            "--dry-run",
            "--older-than",
            "0s",
            "--json",
        ],
        None,
    );
    let v = parse(&o);
    assert!(
        removed_paths(&v).contains(&"events/repo/job-orphan".to_string()),
        "{o:?}"
    );
    assert!(calls.is_empty());
    // And the sandbox does see a real run's deletions (it fails them all).
    let (o, calls) = sandboxed(&env, &clean, None);
    assert_no_panic(&o);
    assert!(!calls.is_empty(), "strace saw no deletion in a real run");
    assert!(calls.iter().all(|c| c.contains("EPERM")), "{calls:?}");
    assert_protected(&env, &keep, "after the sandboxed real run");
    assert_outside(&env, &outside);
    // Another user's root (needs root to chown it).
    if need_root(&format!("{test} (root owned by another user)")) {
        let env2 = Env::new("sandbox-other");
        build_tree(&env2);
        chown(&env2.root, 12345);
        let before = digest(&env2.dir);
        let (o, calls) = sandboxed(&env2, &clean, None);
        assert_eq!(o.code, 3, "{o:?}");
        assert!(o.stderr.contains("uid 12345"), "{o:?}");
        assert!(calls.is_empty(), "{calls:?}");
        assert_tree_eq(&digest(&env2.dir), &before, "another user's root changed");
        chown(&env2.root, 0);
    }
}

// ------------------------------------------------------------------------------------------------
// Case 2: a directory swapped for a symlink mid-deletion
// ------------------------------------------------------------------------------------------------

/// Swap every real directory `sub-*` directly below `base` for a symlink to `target` (the
/// directory itself is moved aside inside the item).
fn swap_subdirs(base: &Path, target: &Path, n: &mut usize) {
    let Ok(rd) = fs::read_dir(base) else { return };
    for e in rd.flatten() {
        let name = e.file_name();
        let s = name.to_string_lossy();
        if !s.starts_with("sub-") || s.contains(".moved") {
            continue;
        }
        let p = e.path();
        if fs::symlink_metadata(&p)
            .map(|m| m.is_dir())
            .unwrap_or(false)
        {
            let aside = base.join(format!("{s}.moved"));
            if fs::rename(&p, &aside).is_ok() && symlink(target, &p).is_ok() {
                *n += 1;
            }
        }
    }
}

#[test]
fn directory_swapped_for_symlink_mid_deletion_never_leads_outside() {
    let test = "directory_swapped_for_symlink_mid_deletion_never_leads_outside";
    if !have("strace", test) {
        return;
    }
    let mut swaps = 0;
    for round in 0..20 {
        let env = Env::new(&format!("swap-{round}"));
        let victim = env.outside.join("victim");
        for i in 0..10 {
            fs::create_dir_all(victim.join(format!("d{i}"))).unwrap();
            fs::write(victim.join(format!("d{i}/keep.jsonl")), b"outside\n").unwrap();
            fs::write(victim.join(format!("f-{i:03}.jsonl")), b"outside\n").unwrap();
        }
        let outside = digest(&env.outside);
        let job = big_events_job(&env, "repo", "job-big", 8, 8);
        let item = env.p(&job);
        let child = cmd_via(
            &env,
            "strace",
            &[
                "-qq",
                "-o",
                "/dev/null",
                "-e",
                "inject=unlinkat:delay_enter=3000",
            ],
            &CLEAN_ALL,
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let (s2, trash, item2, victim2) =
            (stop.clone(), env.p(".trash"), item.clone(), victim.clone());
        let swapper = std::thread::spawn(move || {
            let mut n = 0;
            while !s2.load(Ordering::Relaxed) {
                swap_subdirs(&item2, &victim2, &mut n);
                if let Ok(rd) = fs::read_dir(&trash) {
                    for e in rd.flatten() {
                        swap_subdirs(&e.path(), &victim2, &mut n);
                    }
                }
                std::thread::sleep(Duration::from_millis(2));
            }
            n
        });
        let o = wait_timeout(child, Duration::from_secs(60)).expect("clean hung");
        stop.store(true, Ordering::Relaxed);
        swaps += swapper.join().unwrap();
        assert_no_panic(&o);
        assert!(o.code == 0 || o.code == 1, "round {round}: {o:?}");
        assert_outside(&env, &outside);
        // A second run finishes whatever the first left; still nothing outside is touched.
        let o = env.run(&CLEAN_ALL);
        assert_no_panic(&o);
        assert_eq!(o.code, 0, "round {round}: rerun: {o:?}");
        assert!(!env.exists(&job), "round {round}: the item is left: {o:?}");
        assert!(trash_entries(&env).is_empty(), "round {round}: trash left");
        assert_outside(&env, &outside);
    }
    assert!(
        swaps >= 20,
        "only {swaps} swaps happened: the race was not exercised"
    );
}

// ------------------------------------------------------------------------------------------------
// Case 8: a mount point inside an item
// ------------------------------------------------------------------------------------------------

/// Unmounts (lazily) on drop, so a failing test leaves no mount behind.
struct Mount(PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn tmpfs_mounted_inside_an_expired_item_is_not_touched() {
    let test = "tmpfs_mounted_inside_an_expired_item_is_not_touched";
    if !need_root(test) {
        return;
    }
    let env = Env::new("mount-inside");
    let job = big_events_job(&env, "repo", "job-m", 2, 2);
    let mnt = env.p(&format!("{job}/mnt"));
    fs::create_dir_all(&mnt).unwrap();
    let ok = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=4m", "tmpfs"])
        .arg(&mnt)
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !ok {
        eprintln!("SKIPPED {test}: cannot mount a tmpfs");
        return;
    }
    let _guard = Mount(mnt.clone());
    fs::create_dir_all(mnt.join("deep")).unwrap();
    fs::write(mnt.join("precious.txt"), b"on another filesystem").unwrap();
    fs::write(mnt.join("deep/more.txt"), b"more").unwrap();
    age_tree(&env.p(&job), 40 * DAY);
    let in_mount = digest(&mnt);
    let outside = digest(&env.outside);

    let (o, dry) = env.json(&[
        "clean",
        "--all-repos",
        "--dry-run",
        "--older-than",
        "0s",
        "--json",
    ]);
    assert_eq!(o.code, 0, "{o:?}");
    let (o, v) = env.json(&CLEAN_ALL);
    assert_no_panic(&o);
    assert!(
        !removed_paths(&v).contains(&job),
        "an item with a mount inside was counted as removed: {o:?}"
    );
    let e = kept_entry(&v, &job).unwrap_or_else(|| panic!("{job} not reported kept: {o:?}"));
    assert_eq!(e["reason"], "other-filesystem", "{o:?}");
    assert_eq!(
        kept_entry(&dry, &job).map(|e| e["reason"].clone()),
        Some("other-filesystem".into()),
        "the dry run predicted it"
    );
    assert_eq!(o.code, 0, "{o:?}");
    let mp = Command::new("mountpoint")
        .arg("-q")
        .arg(&mnt)
        .status()
        .unwrap();
    assert!(mp.success(), "the mount point is gone");
    assert_tree_eq(&digest(&mnt), &in_mount, "the mounted filesystem changed");
    assert!(trash_entries(&env).is_empty(), "left in the trash");
    assert_outside(&env, &outside);
}

// ------------------------------------------------------------------------------------------------
// Case 9: a tree deeper than the open-file limit
// ------------------------------------------------------------------------------------------------

/// `base/d/d/…/d/leaf.jsonl`, `depth` levels, every entry aged `secs` (fd-relative: the path is
/// far longer than PATH_MAX).
fn deep_tree(base: &Path, depth: usize, secs: u64) {
    fs::create_dir_all(base).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let t = libc::timespec {
        tv_sec: now - secs as i64,
        tv_nsec: 0,
    };
    let ts = [t, t];
    let d = c"d";
    // SAFETY: plain syscalls on descriptors we own; every fd is closed.
    unsafe {
        let mut fd = libc::open(cstr(base).as_ptr(), libc::O_RDONLY | libc::O_DIRECTORY);
        assert!(fd >= 0);
        let mut parents = Vec::with_capacity(depth);
        for _ in 0..depth {
            assert_eq!(libc::mkdirat(fd, d.as_ptr(), 0o755), 0);
            let child = libc::openat(fd, d.as_ptr(), libc::O_RDONLY | libc::O_DIRECTORY);
            assert!(child >= 0);
            parents.push(fd);
            // Keep few descriptors: age and close the parent now (its mtime no longer changes).
            let p = parents.pop().unwrap();
            libc::futimens(p, ts.as_ptr());
            libc::close(p);
            fd = child;
        }
        let f = libc::openat(
            fd,
            c"leaf.jsonl".as_ptr(),
            libc::O_WRONLY | libc::O_CREAT,
            0o644,
        );
        assert!(f >= 0);
        libc::write(f, b"{}\n".as_ptr().cast(), 3);
        libc::futimens(f, ts.as_ptr());
        libc::close(f);
        libc::futimens(fd, ts.as_ptr());
        libc::close(fd);
    }
    age(base, secs);
}

#[test]
fn tree_deeper_than_the_open_file_limit_is_removed_completely() {
    let env = Env::new("deep");
    let job = "events/repo/job-deep";
    deep_tree(&env.p(job), 5000, 40 * DAY);
    age(&env.p("events/repo"), 40 * DAY);
    let outside = digest(&env.outside);
    let o = sh(
        &env,
        "ulimit -n 64 && exec \"$P\" clean --all-repos --force --older-than 0s --json",
    );
    assert_no_panic(&o);
    assert_eq!(o.code, 0, "{o:?}");
    let v = parse(&o);
    assert!(removed_paths(&v).contains(&job.to_string()), "{o:?}");
    assert!(!env.exists(job), "the deep tree is still there");
    assert!(trash_entries(&env).is_empty(), "left in the trash: {o:?}");
    assert_outside(&env, &outside);
}

// ------------------------------------------------------------------------------------------------
// Case 10: files of another owner, hard links
// ------------------------------------------------------------------------------------------------

#[test]
fn foreign_owned_files_and_hard_links_to_outside() {
    let test = "foreign_owned_files_and_hard_links_to_outside";
    let env = Env::new("owners-links");
    let job = big_events_job(&env, "repo", "job-x", 2, 3);
    let target = env.outside.join("linked.txt");
    fs::write(&target, b"outside, hard-linked into the root\n").unwrap();
    let link = env.p(&format!("{job}/sub-00/hard.jsonl"));
    fs::hard_link(&target, &link).unwrap();
    let chowned = is_root();
    if chowned {
        for p in [
            env.p(&format!("{job}/sub-01/f-000.jsonl")),
            env.p(&format!("{job}/sub-01")),
        ] {
            chown(&p, 12345);
        }
    } else {
        eprintln!("SKIPPED {test} (foreign owner part): needs root to chown");
    }
    age_tree(&env.p(&job), 40 * DAY);
    let nlink = fs::metadata(&target).unwrap().nlink();
    assert_eq!(nlink, 2);
    let outside = digest(&env.outside);
    let (o, v) = env.json(&CLEAN_ALL);
    assert_no_panic(&o);
    assert_eq!(o.code, 0, "{o:?}");
    assert!(removed_paths(&v).contains(&job), "{o:?}");
    assert!(!env.exists(&job));
    let m = fs::metadata(&target).unwrap();
    assert_eq!(m.nlink(), nlink - 1, "the link count did not drop by one");
    assert_outside(&env, &outside);
    assert!(trash_entries(&env).is_empty());
}

// ------------------------------------------------------------------------------------------------
// Case 11: immutable files, read-only filesystems
// ------------------------------------------------------------------------------------------------

/// `chattr -i` on drop.
struct Immutable(PathBuf);

impl Drop for Immutable {
    fn drop(&mut self) {
        let _ = Command::new("chattr").arg("-i").arg(&self.0).status();
    }
}

/// An expired item of 3 subdirectories with an immutable file in the middle one; None (after a
/// loud SKIPPED) when `chattr +i` is unavailable.
fn immutable_item(env: &Env, test: &str) -> Option<(String, PathBuf, Immutable)> {
    if !need_root(test) || !have("chattr", test) {
        return None;
    }
    let job = big_events_job(env, "repo", "job-i", 3, 3);
    let stuck = env.p(&format!("{job}/sub-01/f-001.jsonl"));
    let ok = Command::new("chattr")
        .arg("+i")
        .arg(&stuck)
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !ok {
        eprintln!("SKIPPED {test}: chattr +i failed (filesystem without attributes?)");
        return None;
    }
    let guard = Immutable(stuck.clone());
    Some((job, stuck, guard))
}

#[test]
fn immutable_file_fails_the_item_reported_in_place_and_rerun_finishes() {
    let test = "immutable_file_fails_the_item_reported_in_place_and_rerun_finishes";
    let env = Env::new("immutable");
    let Some((job, stuck, guard)) = immutable_item(&env, test) else {
        return;
    };
    env.old_file("logs/repo/run.log", 40);
    let outside = digest(&env.outside);
    let (o, v) = env.json(&CLEAN_ALL);
    assert_no_panic(&o);
    assert_eq!(o.code, 1, "{o:?}");
    let err = v["errors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["path"] == job.as_str())
        .unwrap_or_else(|| panic!("no error for {job}: {o:?}"));
    assert!(
        !err["hint"].as_str().unwrap_or("").is_empty(),
        "no hint: {err}"
    );
    assert_eq!(
        kept_entry(&v, &job).map(|e| e["reason"].clone()),
        Some("failed".into()),
        "{o:?}"
    );
    // What is left stays in place (not in the trash), the immutable file intact; the rest of the
    // run went on.
    assert_eq!(fs::read(&stuck).unwrap(), b"{}\n");
    assert!(trash_entries(&env).is_empty(), "left in the trash");
    assert!(!env.exists("logs/repo/run.log"), "the run did not go on");
    // The text report names the path and gives a hint.
    let o = env.run(&["clean", "--all-repos", "--force", "--older-than", "0s"]);
    assert_eq!(o.code, 1, "{o:?}");
    let line = o
        .stderr
        .lines()
        .find(|l| l.starts_with(&format!("prodigy clean: {job}: ")))
        .unwrap_or_else(|| panic!("no `prodigy clean: {job}: …` line: {o:?}"));
    assert!(line.contains("; "), "no hint in `{line}`");
    assert!(trash_entries(&env).is_empty(), "left in the trash");
    drop(guard);
    let (o, v) = env.json(&CLEAN_ALL);
    assert_eq!(o.code, 0, "{o:?}");
    assert!(removed_paths(&v).contains(&job), "{o:?}");
    assert!(!env.exists(&job));
    assert_outside(&env, &outside);
}

#[test]
fn read_only_filesystem_fails_cleanly_and_loses_nothing() {
    let test = "read_only_filesystem_fails_cleanly_and_loses_nothing";
    if !need_root(test) || !have("unshare", test) {
        return;
    }
    let env = Env::new("rofs");
    // Build the tree in a template, copied into a tmpfs mounted as the root.
    let tmpl = Env::new("rofs-template");
    build_tree(&tmpl);
    let template = digest(&tmpl.root);
    let outside = digest(&env.outside);
    let script = format!(
        r#"set -e
mount -t tmpfs -o size=8m,mode=0755 tmpfs "$PRODIGY_HOME"
cp -a "{src}/." "$PRODIGY_HOME/"
mount -o remount,ro "$PRODIGY_HOME"
set +e
"$P" clean --all-repos --force --older-than 0s --json > real.json 2> real.err
echo $? > real.rc
"$P" clean --all-repos --dry-run --older-than 0s --json > dry.json 2> dry.err
echo $? > dry.rc
cp -a "$PRODIGY_HOME" after
"#,
        src = tmpl.root.display()
    );
    let o = Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c", &script])
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", &env.home)
        .env("PRODIGY_HOME", &env.root)
        .env("LC_ALL", "C")
        .env("P", prodigy_bin())
        .current_dir(&env.dir)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let o = Out::from(o);
    if o.code != 0 && !env.dir.join("real.rc").exists() {
        eprintln!("SKIPPED {test}: cannot mount a tmpfs in a mount namespace: {o:?}");
        return;
    }
    let read = |n: &str| fs::read_to_string(env.dir.join(n)).unwrap_or_default();
    let real = Out {
        stdout: read("real.json"),
        stderr: read("real.err"),
        code: read("real.rc").trim().parse().unwrap(),
    };
    let dry = Out {
        stdout: read("dry.json"),
        stderr: read("dry.err"),
        code: read("dry.rc").trim().parse().unwrap(),
    };
    assert_no_panic(&real);
    assert_no_panic(&dry);
    assert_eq!(
        real.code, 1,
        "a read-only root must end in failure: {real:?}"
    );
    assert!(
        !real.stderr.is_empty() || real.stdout.contains("errors"),
        "{real:?}"
    );
    assert_eq!(dry.code, 0, "the dry run still works: {dry:?}");
    let dv = parse(&dry);
    assert!(
        removed_paths(&dv).contains(&"events/repo/job-orphan".to_string()),
        "{dry:?}"
    );
    assert_tree_eq(
        &digest(&env.dir.join("after")),
        &template,
        "files were lost on a read-only filesystem",
    );
    assert_outside(&env, &outside);
}

// ------------------------------------------------------------------------------------------------
// Cases 14/15: huge and deeply nested JSON
// ------------------------------------------------------------------------------------------------

/// Peak RSS in KiB from `/usr/bin/time -v` output.
fn max_rss_kib(stderr: &str) -> Option<u64> {
    stderr
        .lines()
        .find(|l| l.contains("Maximum resident set size"))
        .and_then(|l| l.rsplit(':').next())
        .and_then(|n| n.trim().parse().ok())
}

#[test]
fn huge_session_record_is_unknown_kept_and_memory_stays_bounded() {
    let test = "huge_session_record_is_unknown_kept_and_memory_stays_bounded";
    if !Path::new("/usr/bin/time").exists() {
        eprintln!("SKIPPED {test}: /usr/bin/time is not installed");
        return;
    }
    let env = Env::new("huge");
    let big = "x".repeat(100 << 20);
    let rec = record(
        &env,
        "session-huge",
        &body(
            "session-huge",
            "Completed",
            &rfc3339_ago(40 * DAY),
            &format!(r#"{{"blob":"{big}"}}"#),
            "[]",
        ),
        40,
    );
    drop(big);
    mapping(&env, "repo", "session-huge", "job-huge", 40);
    let ev = events_job(&env, "repo", "job-huge", 40);
    let len = fs::metadata(&rec).unwrap().len();
    assert!(len > 100 << 20);
    let outside = digest(&env.outside);
    let mine = digest(&env.p("events"));
    let o = Out::from(
        cmd_via(&env, "/usr/bin/time", &["-v"], &CLEAN_ALL)
            .output()
            .unwrap(),
    );
    assert_no_panic(&o);
    assert_eq!(o.code, 0, "{}", o.stderr);
    let v = parse(&o);
    let rss = max_rss_kib(&o.stderr).expect("no RSS in /usr/bin/time output");
    assert!(rss < 128 * 1024, "peak RSS {rss} KiB for a 100 MB record");
    let e = kept_entry(&v, "sessions/session-huge.json").expect("record not reported kept");
    assert_eq!(e["reason"], "unknown", "{e}");
    assert!(
        v.to_string().contains("too large"),
        "the reason does not say the file is too large: {e}"
    );
    assert!(kept_entry(&v, &ev).is_some(), "{ev} not reported kept: {v}");
    assert!(env.exists(&ev), "the unknown session's events were removed");
    assert_eq!(fs::metadata(&rec).unwrap().len(), len);
    assert_tree_eq(&digest(&env.p("events")), &mine, "its events changed");
    assert_outside(&env, &outside);
}

#[test]
fn deeply_nested_session_record_is_unknown_and_kept_without_stack_overflow() {
    let env = Env::new("nested-json");
    let depth = 100_000;
    let meta = format!(r#"{{"x":{}{}}}"#, "[".repeat(depth), "]".repeat(depth));
    let text = body(
        "session-deep",
        "Completed",
        &rfc3339_ago(40 * DAY),
        &meta,
        "[]",
    );
    record(&env, "session-deep", &text, 40);
    mapping(&env, "repo", "session-deep", "job-deep", 40);
    let ev = events_job(&env, "repo", "job-deep", 40);
    let outside = digest(&env.outside);
    let (o, v) = env.json(&CLEAN_ALL);
    assert_no_panic(&o);
    assert_eq!(o.code, 0, "{o:?}");
    let e = kept_entry(&v, "sessions/session-deep.json").expect("record not reported kept");
    assert_eq!(e["reason"], "unknown", "{e}");
    assert_eq!(
        fs::read_to_string(env.p("sessions/session-deep.json")).unwrap(),
        text
    );
    assert!(env.exists(&ev), "the unknown session's events were removed");
    for cmd in [&["stats", "--all-repos"][..], &["sessions", "ls"][..]] {
        let o = env.run(cmd);
        assert_no_panic(&o);
        assert!(o.code >= 0, "{cmd:?} died of a signal: {o:?}");
    }
    assert_outside(&env, &outside);
}

// ------------------------------------------------------------------------------------------------
// Case 19: clean racing a writer
// ------------------------------------------------------------------------------------------------

/// Crash-safe rewrite of a file (temp name that prodigy recognises, then rename).
fn rewrite(path: &Path, bytes: &str) {
    let tmp = path.with_file_name(format!(
        ".{}.tmp-{}-1-{}",
        path.file_name().unwrap().to_string_lossy(),
        std::process::id(),
        rand_u32()
    ));
    fs::write(&tmp, bytes).unwrap();
    fs::rename(&tmp, path).unwrap();
}

fn rand_u32() -> u32 {
    static C: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    C.fetch_add(1, Ordering::Relaxed)
}

#[test]
fn clean_racing_a_writer_never_removes_new_or_resumed_sessions() {
    let env = Env::new("race-writer");
    // An old session (40 days, idle data) that the writer keeps running: it rewrites the record
    // with a fresh updated_at 200 times, the first time before any clean starts.
    env.session("session-old", "Running", 40, "");
    mapping(&env, "repo", "session-old", "job-old", 40);
    let ev_old = events_job(&env, "repo", "job-old", 40);
    let old_files = [
        "state/repo/mappings/session-old.json".to_string(),
        "state/repo/mappings/job-old.json".to_string(),
        format!("{ev_old}/events-20250101000000.jsonl"),
    ];
    let outside = digest(&env.outside);
    let root = env.root.clone();
    let started = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicBool::new(false));
    let (st2, d2) = (started.clone(), done.clone());
    // The writer: resumes session-old (rewrites its record) and creates 200 sessions the way a
    // writer does (record, then mapping, then events), all crash-safely renamed into place.
    let writer = std::thread::spawn(move || {
        let mut old_lost = Vec::new();
        for i in 0..200 {
            let old = root.join("sessions/session-old.json");
            rewrite(
                &old,
                &format!(
                    r#"{{"id":"session-old","session_type":"Workflow","status":"Running","started_at":"{}","updated_at":"{}","completed_at":null,"metadata":{{}},"checkpoints":[],"timings":{{}},"error":null,"workflow_data":null,"mapreduce_data":null}}"#,
                    rfc3339_ago(40 * DAY),
                    rfc3339_ago(0)
                ),
            );
            st2.store(true, Ordering::Relaxed);
            let id = format!("session-new-{i}");
            let job = format!("job-new-{i}");
            let now = rfc3339_ago(0);
            rewrite(
                &root.join(format!("sessions/{id}.json")),
                &body(&id, "Running", &now, "{}", "[]"),
            );
            let m = format!(
                r#"{{"session_id":"{id}","job_id":"{job}","workflow_name":"wf","created_at":"{now}"}}"#
            );
            fs::create_dir_all(root.join("state/repo/mappings")).unwrap();
            for n in [&id, &job] {
                rewrite(&root.join(format!("state/repo/mappings/{n}.json")), &m);
            }
            let ev = root.join(format!("events/repo/{job}"));
            fs::create_dir_all(&ev).unwrap();
            fs::write(ev.join("events-20250101000000.jsonl"), "{}\n").unwrap();
            // The resumed session's files are all there while its record exists.
            for f in [
                "state/repo/mappings/session-old.json",
                "state/repo/mappings/job-old.json",
                "events/repo/job-old/events-20250101000000.jsonl",
            ] {
                if old.exists() && !root.join(f).exists() && !old_lost.contains(&f) {
                    old_lost.push(f);
                }
            }
            std::thread::sleep(Duration::from_millis(3));
        }
        d2.store(true, Ordering::Relaxed);
        old_lost
    });
    while !started.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(1));
    }
    let mut runs = 0;
    while !done.load(Ordering::Relaxed) {
        let o = env.run(&["clean", "--all-repos", "--older-than", "0s", "--force"]);
        assert_no_panic(&o);
        assert!(o.code == 0 || o.code == 1, "{o:?}");
        runs += 1;
    }
    let old_lost = writer.join().unwrap();
    let o = env.run(&["clean", "--all-repos", "--older-than", "0s", "--force"]);
    assert_eq!(o.code, 0, "{o:?}");
    let mut lost = Vec::new();
    for i in 0..200 {
        for p in [
            format!("sessions/session-new-{i}.json"),
            format!("state/repo/mappings/session-new-{i}.json"),
            format!("state/repo/mappings/job-new-{i}.json"),
            format!("events/repo/job-new-{i}/events-20250101000000.jsonl"),
        ] {
            if !env.exists(&p) {
                lost.push(p);
            }
        }
    }
    for p in &old_files {
        if !env.exists(p) {
            lost.push(p.clone());
        }
    }
    assert!(env.exists("sessions/session-old.json"));
    assert_outside(&env, &outside);
    assert!(runs >= 2, "only {runs} cleans ran during the writer");
    assert!(
        lost.is_empty() && old_lost.is_empty(),
        "{runs} cleans removed {} files of active sessions: {lost:#?}\nthe resumed session lost while its record existed: {old_lost:?}",
        lost.len()
    );
}

#[test]
fn owner_record_rewritten_after_the_scan_keeps_its_items() {
    let test = "owner_record_rewritten_after_the_scan_keeps_its_items";
    if !have("strace", test) {
        return;
    }
    let env = Env::new("race-pause");
    // Deleted first (unowned, first repository in order): its rename into the trash is paused.
    events_job(&env, "aaa", "job-first", 40);
    env.session("session-x", "Completed", 40, "");
    mapping(&env, "repo", "session-x", "job-x", 40);
    let ev = events_job(&env, "repo", "job-x", 40);
    env.write("dlq/repo/job-x/dlq-items.json", r#"{"items":[]}"#);
    age_tree(&env.p("dlq/repo/job-x"), 40 * DAY);
    let outside = digest(&env.outside);
    let child = cmd_via(
        &env,
        "strace",
        &[
            "-qq",
            "-o",
            "/dev/null",
            "-e",
            "inject=renameat2,renameat,rename:delay_enter=2000000:when=1",
        ],
        &CLEAN_ALL,
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    std::thread::sleep(Duration::from_millis(1000));
    // During the pause, the session is resumed: status Running, fresh updated_at.
    let rec = env.p("sessions/session-x.json");
    rewrite(
        &rec,
        &body("session-x", "Running", &rfc3339_ago(0), "{}", "[]"),
    );
    let resumed = fs::read(&rec).unwrap();
    let o = wait_timeout(child, Duration::from_secs(30)).expect("clean hung");
    assert_no_panic(&o);
    assert_eq!(o.code, 0, "{o:?}");
    let v = parse(&o);
    assert!(
        removed_paths(&v).contains(&"events/aaa/job-first".to_string()),
        "the paused item was not the first one: {o:?}"
    );
    for p in [ev.as_str(), "dlq/repo/job-x", "sessions/session-x.json"] {
        assert_eq!(
            kept_entry(&v, p).map(|e| e["reason"].clone()),
            Some("changed".into()),
            "{p}: {o:?}"
        );
        assert!(env.exists(p), "{p} removed");
    }
    assert_eq!(fs::read(&rec).unwrap(), resumed);
    assert!(env.exists("state/repo/mappings/session-x.json"));
    assert!(env.exists("state/repo/mappings/job-x.json"));
    assert_outside(&env, &outside);
}

/// The deterministic form of the race above: the session record is written while clean is paused
/// after its scan (first rename delayed 2 s), its mapping and events existed at the scan. At
/// deletion time the owner's record exists and is active (Running, fresh `updated_at`): R5 says
/// re-check, so the data must be kept.
#[test]
fn data_of_a_session_recorded_after_the_scan_is_kept() {
    let test = "data_of_a_session_recorded_after_the_scan_is_kept";
    if !have("strace", test) {
        return;
    }
    let env = Env::new("race-new-record");
    events_job(&env, "aaa", "job-first", 40);
    // A writer has created the mapping and events (fresh) and is about to write the record.
    mapping(&env, "repo", "session-n", "job-n", 0);
    let ev = events_job(&env, "repo", "job-n", 0);
    fs::create_dir_all(env.p("sessions")).unwrap();
    let outside = digest(&env.outside);
    let child = cmd_via(
        &env,
        "strace",
        &[
            "-qq",
            "-o",
            "/dev/null",
            "-e",
            "inject=renameat2,renameat,rename:delay_enter=2000000:when=1",
        ],
        &CLEAN_ALL,
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    std::thread::sleep(Duration::from_millis(1000));
    rewrite(
        &env.p("sessions/session-n.json"),
        &body("session-n", "Running", &rfc3339_ago(0), "{}", "[]"),
    );
    let o = wait_timeout(child, Duration::from_secs(30)).expect("clean hung");
    assert_no_panic(&o);
    assert_eq!(o.code, 0, "{o:?}");
    assert!(env.exists("sessions/session-n.json"));
    assert_outside(&env, &outside);
    for p in [
        ev.as_str(),
        "state/repo/mappings/session-n.json",
        "state/repo/mappings/job-n.json",
    ] {
        assert!(
            env.exists(p),
            "{p} of the active session-n was removed: {o:?}"
        );
    }
}

// ------------------------------------------------------------------------------------------------
// Cases 22/23: a lock file unlinked while held; locks unavailable
// ------------------------------------------------------------------------------------------------

/// `flock FILE sleep SECS` in the background; returns once the lock is held.
fn hold_flock(file: &Path, secs: &str) -> Child {
    let child = Command::new("flock")
        .arg(file)
        .args(["sleep", secs])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn flock");
    let start = Instant::now();
    while try_flock_probe(file) {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "flock never took {file:?}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    child
}

/// True while nobody holds the flock of `p` (probe without creating).
fn try_flock_probe(p: &Path) -> bool {
    use std::os::fd::AsRawFd;
    let Ok(f) = fs::File::open(p) else {
        return true;
    };
    // SAFETY: valid descriptor.
    let r = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if r == 0 {
        // SAFETY: valid descriptor.
        unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_UN) };
    }
    r == 0
}

/// A Running session 40 days old with no owner, owning `job-{tag}` (events, mapping).
fn idle_running(env: &Env, tag: &str) -> (String, String) {
    let id = format!("session-{tag}");
    env.session(&id, "Running", 40, "");
    mapping(env, "repo", &id, &format!("job-{tag}"), 40);
    (
        id.clone(),
        events_job(env, "repo", &format!("job-{tag}"), 40),
    )
}

#[test]
fn lock_file_unlinked_and_recreated_while_held() {
    let test = "lock_file_unlinked_and_recreated_while_held";
    if !have("flock", test) {
        return;
    }
    let env = Env::new("lock-recreated");
    let (id, ev) = idle_running(&env, "l");
    let lock = env.p("resume_locks/job-l.lock");
    fs::create_dir_all(lock.parent().unwrap()).unwrap();
    fs::write(&lock, b"").unwrap();
    let mut first = hold_flock(&lock, "60");
    // Someone unlinks the held file and creates a new one; the holder re-takes the new inode.
    fs::remove_file(&lock).unwrap();
    let dead = {
        let mut c = Command::new("true").spawn().unwrap();
        let p = c.id();
        c.wait().unwrap();
        p
    };
    fs::write(
        &lock,
        format!(
            r#"{{"job_id":"job-l","process_id":{dead},"hostname":"{}","acquired_at":"{}"}}"#,
            this_host(),
            rfc3339_ago(40 * DAY)
        ),
    )
    .unwrap();
    age(&lock, 40 * DAY);
    let mut second = hold_flock(&lock, "60");
    let ino = fs::metadata(&lock).unwrap().ino();
    let mine = digest(&env.root);
    let outside = digest(&env.outside);
    let (o, v) = env.json(&CLEAN_ALL);
    assert_no_panic(&o);
    assert_eq!(o.code, 0, "{o:?}");
    assert!(env.exists(&format!("sessions/{id}.json")), "{o:?}");
    assert!(env.exists(&ev), "{o:?}");
    assert_eq!(
        fs::metadata(&lock).unwrap().ino(),
        ino,
        "the held lock file was replaced"
    );
    assert!(!try_flock_probe(&lock), "the holder lost its lock");
    assert!(
        !removed_paths(&v).iter().any(|p| p.contains("job-l")),
        "{o:?}"
    );
    let mut now = digest(&env.root);
    now.remove("clean-audit.jsonl");
    now.remove("resume_locks/.clean.lock");
    let mut before = mine;
    before.remove("resume_locks/.clean.lock");
    assert_tree_eq(&now, &before, "the held session's files changed");
    // Once the holder of the new inode is gone (and its pid dead), the lock is dead: the old
    // holder of the unlinked inode protects nothing any more, and clean does not crash on it.
    let _ = second.kill();
    let _ = second.wait();
    let (o, _) = env.json(&CLEAN_ALL);
    assert_no_panic(&o);
    assert_eq!(o.code, 0, "{o:?}");
    let _ = first.kill();
    let _ = first.wait();
    assert_outside(&env, &outside);
}

#[test]
fn locks_unavailable_enolck_keeps_locked_work() {
    let test = "locks_unavailable_enolck_keeps_locked_work";
    if !have("strace", test) {
        return;
    }
    let env = Env::new("enolck");
    let protected = build_tree(&env);
    let (id, ev) = idle_running(&env, "lk");
    // A resume lock of a dead pid on this host: normally dead, removable with its session.
    let l = env.write(
        "resume_locks/job-lk.lock",
        &format!(
            r#"{{"job_id":"job-lk","process_id":2147483646,"hostname":"{}","acquired_at":"{}"}}"#,
            this_host(),
            rfc3339_ago(40 * DAY)
        ),
    );
    age(&l, 40 * DAY);
    let keep = protected_digest(&env, &protected);
    let lock_bytes = fs::read(&l).unwrap();
    let outside = digest(&env.outside);
    let o = strace_run(&env, true, &["inject=flock:error=ENOLCK"], &CLEAN_ALL);
    assert_no_panic(&o);
    // What prodigy does when even the clean lock cannot be taken: it goes on without it
    // (src/cmd/clean.rs treats any error of the clean lock like a read-only root), silently,
    // and exits 0. Every resume lock is then uncheckable, so its session counts as active.
    let v = parse(&o);
    assert_eq!(o.code, 0, "{o:?}");
    let e = kept_entry(&v, "resume_locks/job-lk.lock").expect("lock not reported kept");
    assert_eq!(e["reason"], "active", "{e}");
    assert!(
        e["detail"].as_str().unwrap().contains("cannot check"),
        "{e}"
    );
    assert_eq!(
        kept_entry(&v, &format!("sessions/{id}.json")).map(|e| e["reason"].clone()),
        Some("active".into())
    );
    // Unprotected expired work is still cleaned.
    assert!(!env.exists("events/repo/job-orphan"), "{o:?}");
    assert_protected(&env, &keep, "under ENOLCK");
    assert_eq!(
        fs::read(&l).unwrap(),
        lock_bytes,
        "a lock that cannot be checked was removed"
    );
    assert!(env.exists(&format!("sessions/{id}.json")) && env.exists(&ev));
    // With a working clean lock but failing resume-lock probes (the clean lock is the first
    // flock): the uncheckable resume lock counts as live and keeps its session.
    let o = strace_run(
        &env,
        true,
        &["inject=flock:error=ENOLCK:when=2+"],
        &CLEAN_ALL,
    );
    assert_no_panic(&o);
    let v = parse(&o);
    assert!(o.code == 0 || o.code == 1, "{o:?}");
    assert!(env.exists(&format!("sessions/{id}.json")), "{o:?}");
    assert!(env.exists(&ev), "{o:?}");
    assert_eq!(fs::read(&l).unwrap(), lock_bytes);
    assert!(
        kept_entry(&v, "resume_locks/job-lk.lock").is_some(),
        "the lock is not reported kept: {o:?}"
    );
    assert_protected(&env, &keep, "under ENOLCK for resume locks");
    assert_outside(&env, &outside);
}

// ------------------------------------------------------------------------------------------------
// Case 26: future mtimes and clock jumps
// ------------------------------------------------------------------------------------------------

#[test]
fn future_mtime_inside_an_expired_item_keeps_it_with_a_warning() {
    let env = Env::new("future-inside");
    let job = big_events_job(&env, "repo", "job-f", 2, 2);
    let f = env.p(&format!("{job}/sub-01/f-001.jsonl"));
    let t = std::time::SystemTime::now() + Duration::from_secs(10 * DAY);
    fs::File::open(&f).unwrap().set_modified(t).unwrap();
    let before = digest(&env.p(&job));
    let outside = digest(&env.outside);
    let o = env.run(&["clean", "--all-repos", "--force", "--older-than", "0s"]);
    assert_eq!(o.code, 0, "{o:?}");
    assert!(
        o.stdout
            .lines()
            .chain(o.stderr.lines())
            .any(|l| l.starts_with("warning:") && l.contains(&job)),
        "no warning line: {o:?}"
    );
    let (o, v) = env.json(&CLEAN_ALL);
    assert_eq!(o.code, 0, "{o:?}");
    assert_eq!(
        kept_entry(&v, &job).map(|e| e["reason"].clone()),
        Some("future-timestamp".into()),
        "{o:?}"
    );
    assert_tree_eq(&digest(&env.p(&job)), &before, "the item changed");
    assert_outside(&env, &outside);
}

#[test]
fn clock_jump_a_year_ahead_keeps_resumable_and_removes_completed() {
    let test = "clock_jump_a_year_ahead_keeps_resumable_and_removes_completed";
    if !have("faketime", test) {
        return;
    }
    let env = Env::new("clock-jump");
    let now = rfc3339_ago(0);
    record(
        &env,
        "session-run",
        &body("session-run", "Running", &now, "{}", CHECKPOINT),
        0,
    );
    mapping(&env, "repo", "session-run", "job-run", 0);
    let ev_run = events_job(&env, "repo", "job-run", 0);
    env.session("session-done", "Completed", 0, "");
    mapping(&env, "repo", "session-done", "job-done", 0);
    let ev_done = events_job(&env, "repo", "job-done", 0);
    let keep = protected_digest(
        &env,
        &[
            "sessions/session-run.json".into(),
            format!("{ev_run}/events-20250101000000.jsonl"),
            "state/repo/mappings/session-run.json".into(),
        ],
    );
    let outside = digest(&env.outside);
    let mut c = cmd_via(
        &env,
        "faketime",
        &["-f", "+365d"],
        &["clean", "--all-repos", "--force", "--json"],
    );
    c.env("NO_FAKE_STAT", "1")
        .env("FAKETIME_DONT_FAKE_MONOTONIC", "1");
    let o = Out::from(c.output().unwrap());
    assert_no_panic(&o);
    let v = parse(&o);
    // A static build ignores LD_PRELOAD: then nothing is old enough and nothing goes.
    if o.code == 0 && v["removed"].as_array().unwrap().is_empty() {
        eprintln!("SKIPPED {test}: faketime did not change prodigy's clock: {o:?}");
        return;
    }
    assert_eq!(o.code, 0, "{o:?}");
    let removed = removed_paths(&v);
    for p in ["sessions/session-done.json", ev_done.as_str()] {
        assert!(removed.contains(&p.to_string()), "{p} not removed: {o:?}");
    }
    assert_eq!(
        kept_entry(&v, "sessions/session-run.json").map(|e| e["reason"].clone()),
        Some("resumable".into()),
        "{o:?}"
    );
    assert_protected(&env, &keep, "a year later");
    assert_outside(&env, &outside);
}

// ------------------------------------------------------------------------------------------------
// Case 30: SIGTERM mid-clean
// ------------------------------------------------------------------------------------------------

/// The pid of the child of `parent` (strace) that runs prodigy (strace forks short-lived helpers
/// first).
fn child_of(parent: u32) -> Option<u32> {
    let bin = fs::canonicalize(prodigy_bin()).ok()?;
    let s = fs::read_to_string(format!("/proc/{parent}/task/{parent}/children")).ok()?;
    s.split_whitespace()
        .filter_map(|p| p.parse().ok())
        .find(|p| {
            fs::read_link(format!("/proc/{p}/exe"))
                .map(|e| e == bin)
                .unwrap_or(false)
        })
}

fn big_tree(env: &Env) -> Vec<String> {
    let p = build_tree(env);
    big_events_job(env, "repo", "job-huge", 20, 20);
    p
}

#[test]
fn sigterm_mid_clean_then_rerun_converges() {
    let test = "sigterm_mid_clean_then_rerun_converges";
    if !have("strace", test) {
        return;
    }
    let reference = {
        let env = Env::new("sigterm-ref");
        big_tree(&env);
        let (o, _) = env.json(&CLEAN_ALL);
        assert_eq!(o.code, 0, "{o:?}");
        env.snapshot()
    };
    for delay_ms in [150u64, 600] {
        let env = Env::new("sigterm");
        let protected = big_tree(&env);
        let keep = protected_digest(&env, &protected);
        let outside = digest(&env.outside);
        let child = cmd_via(
            &env,
            "strace",
            &[
                "-qq",
                "-o",
                "/dev/null",
                "-e",
                "inject=unlinkat:delay_enter=2000",
            ],
            &["clean", "--all-repos", "--force", "--older-than", "0s"],
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
        let start = Instant::now();
        let pid = loop {
            if let Some(p) = child_of(child.id()) {
                break p;
            }
            assert!(start.elapsed() < Duration::from_secs(5), "no tracee");
            std::thread::sleep(Duration::from_millis(5));
        };
        std::thread::sleep(Duration::from_millis(delay_ms));
        // SAFETY: sending a signal to our own grandchild.
        unsafe { libc::kill(pid as i32, libc::SIGTERM) };
        let o = wait_timeout(child, Duration::from_secs(30)).expect("hung after SIGTERM");
        assert_no_panic(&o);
        assert_ne!(
            o.code, 0,
            "SIGTERM at {delay_ms} ms did not interrupt: {o:?}"
        );
        assert_protected(&env, &keep, "after SIGTERM");
        assert_outside(&env, &outside);
        let o = env.run(&["clean", "--all-repos", "--force", "--older-than", "0s"]);
        assert_eq!(o.code, 0, "{o:?}");
        assert_eq!(env.snapshot(), reference, "SIGTERM then rerun differs");
        assert!(trash_entries(&env).is_empty(), "trash not emptied");
        assert_protected(&env, &keep, "after the rerun");
        assert_outside(&env, &outside);
    }
}

// ------------------------------------------------------------------------------------------------
// Crash sweep of clean's own write paths: audit log and orphan registry
// ------------------------------------------------------------------------------------------------

/// An expired unregistered-by-nobody worktree whose removal will be made to fail (so clean
/// records it as orphaned), an old registry entry and an old audit log. Returns the old bytes.
fn orphan_setup(env: &Env) -> (Vec<u8>, Vec<u8>) {
    let r = repo(env, "web");
    let w = worktree(env, &r, "web", "wt");
    age_tree(&w, 30 * DAY);
    let elsewhere = env.p("worktrees/web/keep-me");
    fs::create_dir_all(&elsewhere).unwrap();
    let old = serde_json::to_vec(&serde_json::json!([{"path": elsewhere, "agent_id": "a",
        "item_id": "i", "failed_at": "2025-01-11T12:00:00Z", "error": "old"}]))
    .unwrap();
    fs::create_dir_all(env.p("orphaned_worktrees/web")).unwrap();
    fs::write(env.p("orphaned_worktrees/web/unowned.json"), &old).unwrap();
    let audit =
        b"{\"time\":\"2025-01-01T00:00:00Z\",\"action\":\"remove\",\"path\":\"x\"}\n".to_vec();
    fs::write(env.p("clean-audit.jsonl"), &audit).unwrap();
    (old, audit)
}

/// The registry is the old version or a valid new one (old entry plus the failed worktree).
fn check_registry(env: &Env, old: &[u8], when: &str) -> bool {
    let p = env.p("orphaned_worktrees/web/unowned.json");
    let now = fs::read(&p).unwrap_or_else(|e| panic!("{when}: registry gone: {e}"));
    if now == old {
        return false;
    }
    let v: serde_json::Value = serde_json::from_slice(&now).unwrap_or_else(|e| {
        panic!(
            "{when}: registry torn ({e}): {}",
            String::from_utf8_lossy(&now)
        )
    });
    let paths: Vec<String> = v
        .as_array()
        .unwrap_or_else(|| panic!("{when}: not an array: {v}"))
        .iter()
        .map(|e| e["path"].as_str().unwrap().to_string())
        .collect();
    assert!(
        paths.iter().any(|p| p.ends_with("worktrees/web/keep-me")),
        "{when}: old entry lost: {v}"
    );
    assert!(
        paths.iter().any(|p| p.ends_with("worktrees/web/wt")),
        "{when}: {v}"
    );
    true
}

/// Every line of the audit log parses, except possibly a torn last line; the old line is first.
fn check_audit(env: &Env, old: &[u8], when: &str) {
    let now = fs::read(env.p("clean-audit.jsonl")).unwrap_or_else(|e| panic!("{when}: {e}"));
    assert!(now.starts_with(old), "{when}: old audit lines changed");
    let text = String::from_utf8_lossy(&now);
    let lines: Vec<&str> = text.split_terminator('\n').collect();
    let complete = text.ends_with('\n');
    for (i, l) in lines.iter().enumerate() {
        let last = i + 1 == lines.len();
        if last && !complete {
            continue;
        }
        serde_json::from_str::<serde_json::Value>(l)
            .unwrap_or_else(|e| panic!("{when}: audit line {} does not parse ({e}): {l}", i + 1));
    }
}

/// Names in the registry directory and the root that look like temp files.
fn temps(env: &Env) -> Vec<String> {
    let mut out = Vec::new();
    for d in [env.p("orphaned_worktrees/web"), env.root.clone()] {
        for e in fs::read_dir(&d).into_iter().flatten().flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            if n.contains(".tmp") || n.contains("~") {
                out.push(
                    e.path()
                        .strip_prefix(&env.root)
                        .unwrap()
                        .display()
                        .to_string(),
                );
            }
        }
    }
    out
}

const FAIL_WT: &str = "inject=unlinkat:error=EPERM";
const CLEAN_WT: [&str; 5] = ["clean", "--worktrees", "--all-repos", "--force", "--json"];

#[test]
fn crash_sweep_of_audit_log_and_orphan_registry_writes() {
    let test = "crash_sweep_of_audit_log_and_orphan_registry_writes";
    if !have("strace", test) || !have("git", test) {
        return;
    }
    let mut killed = 0;
    let mut new_seen = 0;
    let mut old_seen = 0;
    let mut temps_seen = 0;
    // strace counts `when=N` per syscall: sweep each syscall of the write paths on its own.
    let sweep = [
        ("write", 1..=6),
        ("fsync", 1..=4),
        ("fdatasync", 1..=3),
        ("rename,renameat,renameat2", 1..=3),
    ];
    for (sys, ns) in sweep {
        for n in ns {
            let env = Env::new(&format!("crash-{n}"));
            let (old, audit) = orphan_setup(&env);
            let outside = digest(&env.outside);
            let kill = format!("inject={sys}:signal=KILL:when={n}");
            let o = strace_run(&env, false, &[FAIL_WT, &kill], &CLEAN_WT);
            let when = format!("kill at {sys} #{n}");
            if o.code != 1 {
                killed += 1;
            }
            assert_no_panic(&o);
            let new = check_registry(&env, &old, &when);
            if new {
                new_seen += 1;
            } else {
                old_seen += 1;
            }
            let code = o.code;
            check_audit(&env, &audit, &when);
            // The worktree is in place, or in the trash (killed between the move into the trash
            // and the move back), never half-deleted in place.
            let in_place = env.p("worktrees/web/wt").exists();
            assert!(
                in_place || !trash_entries(&env).is_empty(),
                "{when}: the failing worktree went: {o:?}"
            );
            if in_place {
                assert!(
                    env.p("worktrees/web/wt/README.md").exists(),
                    "{when}: the worktree was half-deleted in place"
                );
            }
            let t = temps(&env);
            temps_seen += usize::from(!t.is_empty());
            eprintln!(
                "{when}: exit {code}, registry new: {new}, in place: {in_place}, temps: {t:?}"
            );
            // The next write succeeds, and a later clean sweeps the leftover temp files.
            let o = strace_run(&env, false, &[FAIL_WT], &CLEAN_WT);
            assert_no_panic(&o);
            assert_eq!(o.code, 1, "{when}: rerun: {o:?}");
            let rerun = format!("{when}, rerun");
            let recorded = check_registry(&env, &old, &rerun);
            assert!(
                recorded || !in_place,
                "{when}: rerun did not record the orphan: {o:?}"
            );
            check_audit(&env, &audit, &rerun);
            let o = env.run(&["clean", "--all-repos", "--force"]);
            assert_no_panic(&o);
            assert_eq!(o.code, 0, "{when}: final clean: {o:?}");
            assert!(!env.p("worktrees/web/wt").exists(), "{when}: {o:?}");
            assert!(trash_entries(&env).is_empty(), "{when}: trash left");
            check_audit(&env, &audit, &format!("{when}, final"));
            for l in &t {
                assert!(
                    l.starts_with("orphaned_worktrees/web/.unowned.json.tmp-"),
                    "{when}: an unrecognisable temp file: {l}"
                );
            }
            assert_outside(&env, &outside);
        }
    }
    eprintln!("{killed} runs killed; registry old {old_seen}, new {new_seen}; temp files left by {temps_seen}");
    assert!(old_seen >= 1, "no crash point before the registry write");
    assert!(
        killed >= 5,
        "only {killed} runs were killed: is injection working?"
    );
    assert!(new_seen >= 1, "no crash point after the registry write");
    assert!(
        temps_seen >= 1,
        "no crash point between temp creation and rename"
    );
}

#[test]
fn enospc_and_eio_while_recording_an_orphan() {
    let test = "enospc_and_eio_while_recording_an_orphan";
    if !have("strace", test) || !have("git", test) {
        return;
    }
    for fault in [
        "inject=write:error=ENOSPC",
        "inject=fsync:error=EIO",
        "inject=fdatasync:error=EIO",
        "inject=renameat2,rename,renameat:error=EIO",
    ] {
        let env = Env::new("enospc");
        let (old, audit) = orphan_setup(&env);
        let outside = digest(&env.outside);
        let o = strace_run(&env, false, &[FAIL_WT, fault], &CLEAN_WT);
        assert_no_panic(&o);
        assert!(o.code > 0, "{fault}: exit {o:?}");
        let when = fault.to_string();
        check_registry(&env, &old, &when);
        if env.p("clean-audit.jsonl").exists() {
            check_audit(&env, &audit, &when);
        }
        let t: Vec<String> = temps(&env)
            .into_iter()
            .filter(|t| t.starts_with("orphaned_worktrees"))
            .collect();
        assert!(t.is_empty(), "{fault}: temp files left behind: {t:?}");
        assert!(env.p("worktrees/web/wt").exists());
        assert_outside(&env, &outside);
    }
}

/// R7 "Stale temp files are swept by age": a registry temp file left by a crashed write (the
/// crash sweep above leaves `.unowned.json.tmp-*` when killed at the temp's write or fsync).
#[test]
fn stale_orphan_registry_temp_file_is_swept() {
    let env = Env::new("registry-temp");
    let t = env.write("orphaned_worktrees/web/.unowned.json.tmp-1-2-3", "[{\"pa");
    let s = env.write("sessions/.s-1.json.tmp-1-2-3", "{");
    age(&t, 40 * DAY);
    age(&s, 40 * DAY);
    let outside = digest(&env.outside);
    let o = env.run(&["clean", "--all-repos", "--force"]);
    assert_eq!(o.code, 0, "{o:?}");
    assert!(
        !s.exists(),
        "a stale session temp file is swept (control): {o:?}"
    );
    assert!(
        !t.exists(),
        "a stale registry temp file is never swept: {o:?}"
    );
    assert_outside(&env, &outside);
}

/// A clean refused for want of confirmation (exit 3) must change nothing, like a dry run.
#[test]
fn refused_clean_without_force_creates_nothing() {
    let env = Env::new("refused-creates");
    events_job(&env, "repo", "job-a", 40);
    let before = digest(&env.root);
    let o = env.run(&["clean", "--all-repos", "--older-than", "0s"]);
    assert_eq!(o.code, 3, "{o:?}");
    assert_tree_eq(
        &digest(&env.root),
        &before,
        "a refused clean changed the tree",
    );
}

/// Directory items are renamed into the trash one by one (each re-checked first) but their
/// renames are made durable together: one fsync of the trash and one sync of the audit log per
/// batch of up to 512 items, not one of each per item (on a disk, 0.3 ms or more apiece).
#[test]
fn many_items_share_one_trash_sync_per_batch_and_each_is_audited() {
    let test = "many_items_share_one_trash_sync_per_batch_and_each_is_audited";
    if !have("strace", test) {
        return;
    }
    let env = Env::new("batch");
    let n = 700;
    let jobs: Vec<String> = (0..n)
        .map(|i| events_job(&env, "repo", &format!("job-{i:04}"), 40))
        .collect();
    let trace = env.dir.join("syncs.trace");
    let o = Out::from(
        cmd_via(
            &env,
            "strace",
            &[
                "-f",
                "-qq",
                "-e",
                "trace=fsync,fdatasync",
                "-o",
                trace.to_str().unwrap(),
            ],
            &CLEAN_ALL,
        )
        .output()
        .unwrap(),
    );
    assert_eq!(o.code, 0, "{o:?}");
    let v: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    let removed = removed_paths(&v);
    for j in &jobs {
        assert!(removed.contains(j), "{j} not removed: {o:?}");
        assert!(!env.exists(j), "{j} still there");
    }
    assert!(trash_entries(&env).is_empty(), "left in the trash");
    let log = fs::read_to_string(env.p("clean-audit.jsonl")).unwrap();
    let audited: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(audited.len(), removed.len(), "{log}");
    assert!(audited.iter().all(|l| l["action"] == "remove"), "{log}");
    let calls = fs::read_to_string(&trace).unwrap();
    let count = |name: &str| {
        calls
            .lines()
            .filter(|l| l.contains(&format!("{name}(")))
            .count()
    };
    // Two batches (512 + 188): two trash fsyncs and two audit syncs.
    assert_eq!((count("fsync"), count("fdatasync")), (2, 2), "{calls}");
}
