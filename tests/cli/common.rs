//! Test harness: a temporary PRODIGY_HOME, the built binary run with a cleared environment,
//! real git repositories, and helpers to age files. std only.

#![allow(dead_code)]

use std::ffi::OsStr;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

pub const DAY: u64 = 86_400;

/// The tree written by Prodigy 0.4.4 and its ground truth: `tests/fixtures/real-0.4.4/`, part of
/// the repository, so its tests never skip for want of it.
pub fn fixture_0_4_4(file: &str) -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/real-0.4.4")
        .join(file);
    assert!(
        p.is_file(),
        "{} is missing: it is tracked in git, restore it with `git checkout -- tests/fixtures`",
        p.display()
    );
    p
}

/// The binary under test: `$PRODIGY_BIN` when set (a release build such as the musl static
/// binary, or a wrapper script that execs `qemu-aarch64 BIN "$@"`), else the one cargo built.
/// Read once per call; the tests pass it to the child through `Command::new`, never through the
/// environment (which they clear).
pub fn prodigy_bin() -> PathBuf {
    match std::env::var_os("PRODIGY_BIN") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => PathBuf::from(env!("CARGO_BIN_EXE_prodigy")),
    }
}

/// `args`, with `--compress-after D` added to a `clean` when `PRODIGY_IT_COMPRESS_AFTER=D` is
/// set, and `--archive DIR` when `PRODIGY_IT_ARCHIVE=DIR` is: the safety suite runs again with compression on (issue 26:
/// `PRODIGY_IT_COMPRESS_AFTER=0s cargo test --test cli safety::`).
pub fn with_compress(args: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    if let Some(d) = std::env::var("PRODIGY_IT_COMPRESS_AFTER")
        .ok()
        .filter(|d| !d.is_empty())
    {
        if args.first() == Some(&"clean")
            && ![&"--help", &"-h", &"--compress-after"]
                .iter()
                .any(|f| args.contains(f))
        {
            v.push("--compress-after".into());
            v.push(d);
        }
    }
    // `PRODIGY_IT_ARCHIVE=DIR`: every clean archives into DIR first (issue 26: the safety
    // suite passes with `--archive` set).
    if let Some(d) = std::env::var("PRODIGY_IT_ARCHIVE")
        .ok()
        .filter(|d| !d.is_empty())
    {
        if args.first() == Some(&"clean")
            && ![&"--help", &"-h", &"--archive"]
                .iter()
                .any(|f| args.contains(f))
        {
            v.push("--archive".into());
            v.push(d);
        }
    }
    v
}

/// `p` exists, or, when the suite runs with `PRODIGY_IT_COMPRESS_AFTER`, `p.gz` does.
pub fn exists_or_gz(p: &Path) -> bool {
    if p.exists() {
        return true;
    }
    let mut gz = p.as_os_str().to_os_string();
    gz.push(".gz");
    std::env::var_os("PRODIGY_IT_COMPRESS_AFTER").is_some() && Path::new(&gz).exists()
}

/// A scratch directory with `home/` (HOME), `home/.prodigy` (PRODIGY_HOME) and `outside/` (canaries).
pub struct Env {
    pub dir: PathBuf,
    pub home: PathBuf,
    pub root: PathBuf,
    pub outside: PathBuf,
    pub extra_env: Vec<(String, String)>,
}

static N: AtomicU64 = AtomicU64::new(0);

impl Env {
    pub fn new(name: &str) -> Env {
        let dir = std::env::temp_dir().join(format!(
            "prodigy-it-{}-{}-{}",
            name,
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&dir);
        let home = dir.join("home");
        let root = home.join(".prodigy");
        let outside = dir.join("outside");
        fs::create_dir_all(&root).unwrap();
        fs::create_dir_all(&outside).unwrap();
        fs::write(outside.join("canary.txt"), b"canary").unwrap();
        Env {
            dir,
            home,
            root,
            outside,
            extra_env: Vec::new(),
        }
    }

    /// The built binary with a cleared environment: PATH, HOME, PRODIGY_HOME, LC_ALL=C.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(prodigy_bin());
        c.args(with_compress(args))
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", &self.home)
            .env("PRODIGY_HOME", &self.root)
            .env("LC_ALL", "C")
            .current_dir(&self.dir)
            .stdin(Stdio::null());
        for (k, v) in &self.extra_env {
            c.env(k, v);
        }
        c
    }

    pub fn run(&self, args: &[&str]) -> Out {
        Out::from(self.cmd(args).output().expect("run prodigy"))
    }

    /// Run and parse stdout as the `--json` document.
    pub fn json(&self, args: &[&str]) -> (Out, serde_json::Value) {
        let o = self.run(args);
        let v = serde_json::from_str(&o.stdout)
            .unwrap_or_else(|e| panic!("bad json ({e}): {}\nstderr: {}", o.stdout, o.stderr));
        (o, v)
    }

    pub fn p(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    /// Write a file under the root, creating parents.
    pub fn write(&self, rel: &str, content: &str) -> PathBuf {
        let p = self.p(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, content).unwrap();
        p
    }

    pub fn exists(&self, rel: &str) -> bool {
        fs::symlink_metadata(self.p(rel)).is_ok()
    }

    /// A canonical session record (storage-format §4.1) `days_old` days old (timestamps and mtime).
    pub fn session(&self, id: &str, status: &str, days_old: u64, extra_metadata: &str) -> PathBuf {
        let t = rfc3339_ago(days_old * DAY);
        let completed = if matches!(status, "Completed" | "Failed" | "Cancelled") {
            format!("\"{t}\"")
        } else {
            "null".into()
        };
        let md = if extra_metadata.is_empty() {
            String::new()
        } else {
            format!(",{extra_metadata}")
        };
        let p = self.write(
            &format!("sessions/{id}.json"),
            &format!(
                r#"{{"id":"{id}","session_type":"Workflow","status":"{status}","started_at":"{t}","updated_at":"{t}","completed_at":{completed},"metadata":{{"x":1{md}}},"checkpoints":[],"timings":{{}},"error":null,"workflow_data":null,"mapreduce_data":null}}"#
            ),
        );
        age(&p, days_old * DAY);
        p
    }

    /// A file of `rel` with content, aged.
    pub fn old_file(&self, rel: &str, days_old: u64) -> PathBuf {
        let p = self.write(rel, "data\n");
        age_tree(&p, days_old * DAY);
        p
    }

    /// Relative paths of everything under the root (sorted), excluding the audit log, trash and clean lock.
    pub fn snapshot(&self) -> Vec<String> {
        let mut v = Vec::new();
        walk(&self.root, &self.root, &mut v);
        v.retain(|p| {
            !p.starts_with("clean-audit.jsonl")
                && !p.starts_with(".trash")
                && p != "resume_locks/.clean.lock"
        });
        v.sort();
        v
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        if std::env::var_os("PRODIGY_KEEP_TEST_DIRS").is_none() {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

fn walk(base: &Path, p: &Path, out: &mut Vec<String>) {
    let Ok(rd) = fs::read_dir(p) else { return };
    for e in rd.flatten() {
        let path = e.path();
        out.push(
            path.strip_prefix(base)
                .unwrap()
                .to_string_lossy()
                .into_owned(),
        );
        if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            walk(base, &path, out);
        }
    }
}

/// stdout, stderr and status of a run.
pub struct Out {
    pub stdout: String,
    pub stderr: String,
    pub code: i32,
}

impl From<Output> for Out {
    fn from(o: Output) -> Out {
        Out {
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
            code: o.status.code().unwrap_or(-1),
        }
    }
}

impl std::fmt::Debug for Out {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {}\n--- stdout\n{}--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// RFC 3339 UTC time `secs` ago.
pub fn rfc3339_ago(secs: u64) -> String {
    let t = time::OffsetDateTime::now_utc() - time::Duration::seconds(secs as i64);
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

/// Set the mtime of one path to `secs` ago (not following a final symlink: symlinks are left
/// alone).
pub fn age(p: &Path, secs: u64) {
    age_at(p, ago(secs));
}

/// The time `secs` ago.
pub fn ago(secs: u64) -> SystemTime {
    SystemTime::now() - Duration::from_secs(secs)
}

/// Set the mtime of one path to `t` (symlinks are left alone).
pub fn age_at(p: &Path, t: SystemTime) {
    let m = fs::symlink_metadata(p).unwrap();
    if m.file_type().is_symlink() {
        return;
    }
    let f = fs::File::open(p).unwrap();
    f.set_modified(t).unwrap();
}

/// Set the mtime of a path and everything below it to `secs` ago, one instant for all of them.
pub fn age_tree(p: &Path, secs: u64) {
    age_tree_at(p, ago(secs));
}

/// Set the mtime of a path and everything below it to `t`. Paths that must tie (a session's
/// items, ordered by their age in whole seconds) take one `t`: an age taken per path differs by
/// a second when a second boundary falls between two of them.
pub fn age_tree_at(p: &Path, t: SystemTime) {
    let m = fs::symlink_metadata(p).unwrap();
    if m.is_dir() {
        for e in fs::read_dir(p).unwrap().flatten() {
            age_tree_at(&e.path(), t);
        }
    }
    age_at(p, t);
}

/// True when `prog` runs; otherwise print a loud SKIPPED line.
pub fn have(prog: &str, test: &str) -> bool {
    let ok = Command::new(prog)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    if !ok {
        eprintln!("SKIPPED {test}: `{prog}` is not installed");
    }
    ok
}

/// Run git with a clean environment; panics on failure.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let o = git_cmd(dir, args).output().unwrap();
    assert!(
        o.status.success(),
        "git {args:?} in {}: {}",
        dir.display(),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn git_cmd(dir: &Path, args: &[&str]) -> Command {
    let mut c = Command::new("git");
    c.args([
        "-c",
        "user.name=T",
        "-c",
        "user.email=t@example.com",
        "-c",
        "init.defaultBranch=main",
        "-c",
        "commit.gpgsign=false",
    ])
    .args(args)
    .current_dir(dir)
    .env_clear()
    .env("PATH", std::env::var_os("PATH").unwrap_or_default())
    .env("HOME", dir)
    .env("GIT_CONFIG_NOSYSTEM", "1")
    .stdin(Stdio::null());
    c
}

/// A repository at `dir/repos/{name}` with one commit on main.
pub fn repo(env: &Env, name: &str) -> PathBuf {
    let r = env.dir.join("repos").join(name);
    fs::create_dir_all(&r).unwrap();
    git(&r, &["init", "-q", "-b", "main"]);
    fs::write(r.join("README.md"), "hello\n").unwrap();
    git(&r, &["add", "."]);
    git(&r, &["commit", "-qm", "init"]);
    r
}

/// A linked worktree `worktrees/{repo}/{name}` on branch `prodigy-{name}`.
pub fn worktree(env: &Env, repo_dir: &Path, repo: &str, name: &str) -> PathBuf {
    let p = env.p(&format!("worktrees/{repo}/{name}"));
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    git(
        repo_dir,
        &[
            "worktree",
            "add",
            "-q",
            "-b",
            &format!("prodigy-{name}"),
            p.to_str().unwrap(),
            "main",
        ],
    );
    p
}

/// Paths in the report's `removed` list (with their `also` files).
pub fn removed_paths(v: &serde_json::Value) -> Vec<String> {
    paths(v, "removed")
}

pub fn kept_paths(v: &serde_json::Value) -> Vec<String> {
    paths(v, "kept")
}

fn paths(v: &serde_json::Value, key: &str) -> Vec<String> {
    let mut out = Vec::new();
    for e in v[key].as_array().unwrap() {
        out.push(e["path"].as_str().unwrap().to_string());
        for a in e["also"].as_array().unwrap() {
            out.push(a.as_str().unwrap().to_string());
        }
    }
    out.sort();
    out
}

/// The reason a path was kept, if it was.
pub fn kept_reason(v: &serde_json::Value, path: &str) -> Option<String> {
    v["kept"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["path"] == path)
        .map(|e| e["reason"].as_str().unwrap().to_string())
}

pub fn os(s: &str) -> &OsStr {
    OsStr::new(s)
}

// Shared by safety.rs and contract.rs.

/// A record body: `status`, `updated` (RFC 3339), `metadata` object text, `checkpoints` array text.
pub fn body(id: &str, status: &str, updated: &str, metadata: &str, checkpoints: &str) -> String {
    format!(
        r#"{{"id":"{id}","session_type":"Workflow","status":"{status}","started_at":"{updated}","updated_at":"{updated}","completed_at":null,"metadata":{metadata},"checkpoints":{checkpoints},"timings":{{}},"error":null,"workflow_data":null,"mapreduce_data":null}}"#
    )
}

/// The session↔job mapping, stored twice (storage-format §4.5), aged.
pub fn mapping(env: &Env, repo: &str, session: &str, job: &str, days: u64) {
    let m = format!(
        r#"{{"session_id":"{session}","job_id":"{job}","workflow_name":"wf","created_at":"{}"}}"#,
        rfc3339_ago(days * DAY)
    );
    for n in [session, job] {
        let p = env.write(&format!("state/{repo}/mappings/{n}.json"), &m);
        age(&p, days * DAY);
    }
}

pub fn kept_entry<'a>(v: &'a serde_json::Value, path: &str) -> Option<&'a serde_json::Value> {
    v["kept"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["path"] == path)
}

/// The binary run under `prog pre… prodigy args…`, with the same environment as [`Env::cmd`].
pub fn cmd_via(env: &Env, prog: &str, pre: &[&str], args: &[&str]) -> Command {
    let mut c = Command::new(prog);
    c.args(pre)
        .arg(prodigy_bin())
        .args(with_compress(args))
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", &env.home)
        .env("PRODIGY_HOME", &env.root)
        .env("LC_ALL", "C")
        .current_dir(&env.dir)
        .stdin(Stdio::null());
    for (k, v) in &env.extra_env {
        c.env(k, v);
    }
    c
}

/// Generate a tree at `out` with `scripts/gen-tree.py ARGS` (`--out` given here; the caller
/// checks that python3 exists). Panics when the generator fails.
pub fn gen_tree(out: &Path, args: &[&str]) {
    let gen = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/gen-tree.py");
    let st = Command::new("python3")
        .arg(&gen)
        .arg("--out")
        .arg(out)
        .args(args)
        .status()
        .expect("run python3 scripts/gen-tree.py");
    assert!(st.success(), "gen-tree.py {args:?} failed");
}
