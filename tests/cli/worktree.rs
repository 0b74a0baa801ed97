//! Worktree tests: safety.md §4 and §5 cases 27, 28 and 29 against the built binary with real git.
//!
//! Every test asserts the exit code, the report's paths and reasons, what is left on disk, and
//! that the main repository is unmodified except for git's worktree bookkeeping and the deletion
//! of removed worktrees' merged branches. Tests print a loud SKIPPED line when git is missing.

use super::common::*;
use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

// ------------------------------------------------------------------------------------------------
// helpers
// ------------------------------------------------------------------------------------------------

/// `prodigy clean --worktrees` with the default retention (7d).
const CLEAN_WT: [&str; 5] = ["clean", "--worktrees", "--all-repos", "--force", "--json"];

/// `prodigy worktree clean --all -f`: every worktree that is safe to remove, of any age.
const WT_CLEAN_ALL_F: [&str; 6] = ["worktree", "clean", "--all", "-f", "--all-repos", "--json"];

/// Older than the 7-day worktree retention.
const OLD: u64 = 10 * DAY;

fn skip(test: &str) -> bool {
    !have("git", test)
}

/// Local branches of `r`, sorted by name (git's order).
fn branches(r: &Path) -> Vec<String> {
    git(r, &["branch", "--format=%(refname:short)"])
        .lines()
        .map(str::to_string)
        .collect()
}

/// The main repository's working tree is clean and its branches are exactly `want`.
fn assert_main_repo(r: &Path, want: &[&str]) {
    let st = git(r, &["status", "--porcelain"]);
    assert_eq!(st, "", "main repository {} was modified", r.display());
    assert_eq!(branches(r), want, "branches of {}", r.display());
}

fn sha(dir: &Path, rev: &str) -> String {
    git(dir, &["rev-parse", rev]).trim().to_string()
}

/// Commit a new file in `dir` (a worktree or the main repository); return the new commit.
fn commit_file(dir: &Path, name: &str, content: &str) -> String {
    fs::write(dir.join(name), content).unwrap();
    git(dir, &["add", name]);
    git(dir, &["commit", "-qm", name]);
    sha(dir, "HEAD")
}

/// Is object `sha` present in repository `r`?
fn reachable_object(r: &Path, sha: &str) -> bool {
    git_cmd(r, &["cat-file", "-e", sha])
        .status()
        .unwrap()
        .success()
}

/// Local branches of `r` that contain `sha`.
fn branches_containing(r: &Path, sha: &str) -> Vec<String> {
    git(
        r,
        &["branch", "--format=%(refname:short)", "--contains", sha],
    )
    .lines()
    .map(str::to_string)
    .collect()
}

/// One linked entry of `git worktree list --porcelain`.
#[derive(Debug)]
struct Entry {
    path: PathBuf,
    prunable: bool,
    locked: bool,
}

/// The linked worktrees git lists for `r` (the main working tree is left out).
fn linked(r: &Path) -> Vec<Entry> {
    let out = git(r, &["worktree", "list", "--porcelain"]);
    let mut v = Vec::new();
    for block in out.split("\n\n").skip(1) {
        let mut e = Entry {
            path: PathBuf::new(),
            prunable: false,
            locked: false,
        };
        for l in block.lines() {
            if let Some(p) = l.strip_prefix("worktree ") {
                e.path = PathBuf::from(p);
            } else if l == "prunable" || l.starts_with("prunable ") {
                e.prunable = true;
            } else if l == "locked" || l.starts_with("locked ") {
                e.locked = true;
            }
        }
        if !e.path.as_os_str().is_empty() {
            v.push(e);
        }
    }
    v
}

/// git's bookkeeping of `r` lists no worktree whose directory is gone (locked entries aside:
/// git keeps those on purpose), other than the paths in `allow`.
fn assert_bookkeeping(r: &Path, allow: &[&Path], when: &str) {
    for e in linked(r) {
        if allow.iter().any(|a| *a == e.path) || e.locked {
            continue;
        }
        assert!(
            fs::symlink_metadata(&e.path).is_ok() && !e.prunable,
            "{when}: {} lists {} whose directory is gone:\n{}",
            r.display(),
            e.path.display(),
            git(r, &["worktree", "list", "--porcelain"])
        );
    }
}

fn kept_entry<'a>(v: &'a serde_json::Value, path: &str) -> Option<&'a serde_json::Value> {
    v["kept"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["path"] == path)
}

fn kept_detail(v: &serde_json::Value, path: &str) -> String {
    kept_entry(v, path)
        .and_then(|e| e["detail"].as_str())
        .unwrap_or_default()
        .to_string()
}

fn removed(v: &serde_json::Value, path: &str) -> bool {
    removed_paths(v).iter().any(|p| p == path)
}

/// `(branch, detail)` of the report's `branches.deleted` entries.
fn deleted_branches(v: &serde_json::Value) -> Vec<(String, String)> {
    v["branches"]["deleted"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["branch"].as_str().unwrap().to_string(),
                e["detail"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

fn kept_branches(v: &serde_json::Value) -> Vec<String> {
    v["branches"]["kept"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["branch"].as_str().unwrap().to_string())
        .collect()
}

/// Every path below `dir` with its content (files), link target or `<dir>`; no following.
fn digest(dir: &Path) -> BTreeMap<String, String> {
    fn go(base: &Path, p: &Path, out: &mut BTreeMap<String, String>) {
        let Ok(rd) = fs::read_dir(p) else { return };
        for e in rd.flatten() {
            let path = e.path();
            let rel = path.strip_prefix(base).unwrap().display().to_string();
            let m = fs::symlink_metadata(&path).unwrap();
            if m.file_type().is_symlink() {
                out.insert(
                    rel,
                    format!("-> {}", fs::read_link(&path).unwrap().display()),
                );
            } else if m.is_dir() {
                out.insert(rel, "<dir>".into());
                go(base, &path, out);
            } else {
                out.insert(rel, fs::read(&path).unwrap().escape_ascii().to_string());
            }
        }
    }
    let mut out = BTreeMap::new();
    go(dir, dir, &mut out);
    out
}

fn assert_same(after: &BTreeMap<String, String>, before: &BTreeMap<String, String>, what: &str) {
    if after == before {
        return;
    }
    let mut diff = Vec::new();
    for k in before.keys().chain(after.keys()) {
        if before.get(k) != after.get(k) && !diff.contains(k) {
            diff.push(k.clone());
        }
    }
    panic!("{what}: changed {diff:?}");
}

fn assert_canary(env: &Env) {
    assert_eq!(
        fs::read(env.outside.join("canary.txt")).expect("canary.txt is gone"),
        b"canary"
    );
}

/// An executable script `dir/name`.
fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    fs::create_dir_all(dir).unwrap();
    let p = dir.join(name);
    fs::write(&p, body).unwrap();
    fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).unwrap();
    p
}

/// The current PATH with `dir` in front.
fn path_with(dir: &Path) -> String {
    format!(
        "{}:{}",
        dir.display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

// ------------------------------------------------------------------------------------------------
// Case 27: what a worktree holds decides whether it may go
// ------------------------------------------------------------------------------------------------

#[test]
fn worktree_with_only_ignored_files_is_removed_and_its_merged_branch_deleted() {
    if skip("worktree_with_only_ignored_files_is_removed_and_its_merged_branch_deleted") {
        return;
    }
    let env = Env::new("wt-ignored");
    let r = repo(&env, "web");
    commit_file(&r, ".gitignore", "*.log\n");
    let w = worktree(&env, &r, "web", "wt");
    fs::write(w.join("x.log"), "build output\n").unwrap();
    fs::create_dir_all(w.join("logs")).unwrap();
    fs::write(w.join("logs/deep.log"), "more\n").unwrap();
    age_tree(&w, OLD);

    let (o, v) = env.json(&CLEAN_WT);
    assert_eq!(o.code, 0, "{o:?}");
    assert_eq!(removed_paths(&v), vec!["worktrees/web/wt"], "{v}");
    assert!(v["kept"].as_array().unwrap().is_empty(), "{v}");
    assert!(!w.exists(), "the worktree directory is still there");
    assert!(
        env.exists("worktrees/web"),
        "the repository directory stays"
    );
    assert!(linked(&r).is_empty(), "{:?}", linked(&r));
    assert_eq!(
        deleted_branches(&v),
        vec![("prodigy-wt".to_string(), "merged into main".to_string())]
    );
    assert!(kept_branches(&v).is_empty(), "{v}");
    assert_main_repo(&r, &["main"]);
    assert_canary(&env);
}

#[test]
fn untracked_modified_and_staged_changes_are_kept_until_discard_changes() {
    if skip("untracked_modified_and_staged_changes_are_kept_until_discard_changes") {
        return;
    }
    let env = Env::new("wt-dirty");
    let r = repo(&env, "web");
    let untracked = worktree(&env, &r, "web", "wt-untracked");
    fs::write(untracked.join("notes.txt"), "precious\n").unwrap();
    let modified = worktree(&env, &r, "web", "wt-modified");
    fs::write(modified.join("README.md"), "edited\n").unwrap();
    let staged = worktree(&env, &r, "web", "wt-staged");
    fs::write(staged.join("new.rs"), "fn main() {}\n").unwrap();
    git(&staged, &["add", "new.rs"]);
    // A staged change whose working file was then restored: only the index differs.
    let staged_only = worktree(&env, &r, "web", "wt-staged-only");
    fs::write(staged_only.join("README.md"), "staged\n").unwrap();
    git(&staged_only, &["add", "README.md"]);
    fs::write(staged_only.join("README.md"), "hello\n").unwrap();
    let all = [
        ("wt-untracked", &untracked),
        ("wt-modified", &modified),
        ("wt-staged", &staged),
        ("wt-staged-only", &staged_only),
    ];
    for (_, w) in &all {
        age_tree(w, OLD);
    }

    for args in [&CLEAN_WT[..], &WT_CLEAN_ALL_F[..3]] {
        // `worktree clean --all` without -f keeps dirty worktrees too (dry run: no confirmation).
        let mut args = args.to_vec();
        if args[0] == "worktree" {
            args.extend(["--dry-run", "--all-repos", "--json"]);
        }
        let (o, v) = env.json(&args);
        assert_eq!(o.code, 0, "{args:?}: {o:?}");
        assert!(removed_paths(&v).is_empty(), "{args:?}: {v}");
        for (name, _) in &all {
            let p = format!("worktrees/web/{name}");
            assert_eq!(
                kept_reason(&v, &p).as_deref(),
                Some("uncommitted"),
                "{args:?} {p}: {v}"
            );
        }
        assert!(deleted_branches(&v).is_empty(), "{v}");
    }
    assert_eq!(
        fs::read_to_string(untracked.join("notes.txt")).unwrap(),
        "precious\n"
    );
    assert_eq!(
        fs::read_to_string(modified.join("README.md")).unwrap(),
        "edited\n"
    );
    assert_eq!(
        git(&staged, &["diff", "--cached", "--name-only"]),
        "new.rs\n"
    );
    assert_eq!(
        git(&staged_only, &["diff", "--cached", "--name-only"]),
        "README.md\n"
    );
    assert_eq!(linked(&r).len(), 4);
    assert_main_repo(
        &r,
        &[
            "main",
            "prodigy-wt-modified",
            "prodigy-wt-staged",
            "prodigy-wt-staged-only",
            "prodigy-wt-untracked",
        ],
    );

    let mut discard = CLEAN_WT.to_vec();
    discard.push("--discard-changes");
    let (o, v) = env.json(&discard);
    assert_eq!(o.code, 0, "{o:?}");
    let mut want: Vec<String> = all
        .iter()
        .map(|(n, _)| format!("worktrees/web/{n}"))
        .collect();
    want.sort();
    assert_eq!(removed_paths(&v), want, "{v}");
    for (_, w) in &all {
        assert!(!w.exists(), "{} is still there", w.display());
    }
    assert!(linked(&r).is_empty(), "{:?}", linked(&r));
    // The discarded changes were never committed: every branch was at main's tip, so merged.
    let mut deleted: Vec<String> = deleted_branches(&v).into_iter().map(|b| b.0).collect();
    deleted.sort();
    assert_eq!(
        deleted,
        vec![
            "prodigy-wt-modified",
            "prodigy-wt-staged",
            "prodigy-wt-staged-only",
            "prodigy-wt-untracked"
        ]
    );
    assert_main_repo(&r, &["main"]);
}

#[test]
fn unmerged_branch_is_kept_when_its_clean_worktree_is_removed() {
    if skip("unmerged_branch_is_kept_when_its_clean_worktree_is_removed") {
        return;
    }
    let env = Env::new("wt-unmerged");
    let r = repo(&env, "web");
    let main_tip = sha(&r, "main");
    let w = worktree(&env, &r, "web", "wt");
    let tip = commit_file(&w, "feature.rs", "fn feature() {}\n");
    // Two worktrees on one unmerged commit: each branch contains the other's tip, but deleting
    // both would lose the commit. Exactly one may go.
    let a = worktree(&env, &r, "web", "wt-a");
    let shared = commit_file(&a, "a.rs", "a\n");
    let b = env.p("worktrees/web/wt-b");
    git(
        &r,
        &[
            "worktree",
            "add",
            "-q",
            "-b",
            "prodigy-wt-b",
            b.to_str().unwrap(),
            "prodigy-wt-a",
        ],
    );
    // A branch whose commit is also on another (non-main) branch may go.
    let c = worktree(&env, &r, "web", "wt-c");
    let c_tip = commit_file(&c, "c.rs", "c\n");
    git(&r, &["branch", "keep-c", "prodigy-wt-c"]);
    for p in [&w, &a, &b, &c] {
        age_tree(p, OLD);
    }

    let (o, v) = env.json(&CLEAN_WT);
    assert_eq!(o.code, 0, "{o:?}");
    assert_eq!(
        removed_paths(&v),
        vec![
            "worktrees/web/wt",
            "worktrees/web/wt-a",
            "worktrees/web/wt-b",
            "worktrees/web/wt-c"
        ],
        "{v}"
    );
    for p in [&w, &a, &b, &c] {
        assert!(!p.exists(), "{} is still there", p.display());
    }
    assert!(linked(&r).is_empty(), "{:?}", linked(&r));

    let kept = kept_branches(&v);
    assert!(kept.contains(&"prodigy-wt".to_string()), "{v}");
    let entry = v["branches"]["kept"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["branch"] == "prodigy-wt")
        .unwrap();
    assert_eq!(entry["repository"], "web", "{v}");
    let deleted = deleted_branches(&v);
    assert!(
        deleted
            .iter()
            .any(|(b, d)| b == "prodigy-wt-c" && d.contains("keep-c")),
        "{v}"
    );
    let ab_deleted = deleted
        .iter()
        .filter(|(b, _)| b == "prodigy-wt-a" || b == "prodigy-wt-b")
        .count();
    assert_eq!(ab_deleted, 1, "exactly one of two equal branches goes: {v}");

    // Every commit is still on some branch.
    for s in [&tip, &shared, &c_tip] {
        assert!(reachable_object(&r, s), "commit {s} is gone");
        assert!(
            !branches_containing(&r, s).is_empty(),
            "{s} is on no branch"
        );
    }
    assert_eq!(sha(&r, "prodigy-wt"), tip);
    assert_eq!(sha(&r, "main"), main_tip, "main moved");
    let left = branches(&r);
    assert!(left.contains(&"prodigy-wt".to_string()), "{left:?}");
    assert!(left.contains(&"keep-c".to_string()), "{left:?}");
    assert!(!left.contains(&"prodigy-wt-c".to_string()), "{left:?}");
    assert_eq!(
        left.len(),
        4,
        "main, keep-c, prodigy-wt and one of a/b: {left:?}"
    );
    assert_eq!(git(&r, &["status", "--porcelain"]), "");
}

#[test]
fn locked_worktree_is_kept_even_when_forced() {
    if skip("locked_worktree_is_kept_even_when_forced") {
        return;
    }
    let env = Env::new("wt-locked");
    let r = repo(&env, "web");
    let w = worktree(&env, &r, "web", "wt");
    fs::write(w.join("scratch.txt"), "mine\n").unwrap();
    git(
        &r,
        &[
            "worktree",
            "lock",
            "--reason",
            "on a usb disk",
            w.to_str().unwrap(),
        ],
    );
    let clean_locked = worktree(&env, &r, "web", "wt-clean");
    git(&r, &["worktree", "lock", clean_locked.to_str().unwrap()]);
    age_tree(&w, OLD);
    age_tree(&clean_locked, OLD);
    let before = digest(&w);

    let mut discard = CLEAN_WT.to_vec();
    discard.push("--discard-changes");
    let mut all_any_age = CLEAN_WT.to_vec();
    all_any_age.extend(["--older-than", "0s", "--discard-changes"]);
    for args in [
        CLEAN_WT.to_vec(),
        discard,
        all_any_age,
        WT_CLEAN_ALL_F.to_vec(),
        vec!["worktree", "clean", "wt", "-f", "--all-repos", "--json"],
    ] {
        let (o, v) = env.json(&args);
        assert_eq!(o.code, 0, "{args:?}: {o:?}");
        assert!(removed_paths(&v).is_empty(), "{args:?}: {v}");
        assert_eq!(
            kept_reason(&v, "worktrees/web/wt").as_deref(),
            Some("locked"),
            "{args:?}: {v}"
        );
        if args.contains(&"--all") || args[0] == "clean" {
            assert_eq!(
                kept_reason(&v, "worktrees/web/wt-clean").as_deref(),
                Some("locked"),
                "{args:?}: {v}"
            );
        }
        assert!(deleted_branches(&v).is_empty(), "{v}");
        assert_same(&digest(&w), &before, "the locked worktree changed");
        assert!(clean_locked.join("README.md").exists());
    }
    let l = linked(&r);
    assert_eq!(l.len(), 2, "{l:?}");
    assert!(l.iter().all(|e| e.locked && !e.prunable), "{l:?}");
    assert_main_repo(&r, &["main", "prodigy-wt", "prodigy-wt-clean"]);
}

#[test]
fn detached_head_worktree_is_removed_and_no_branch_is_touched() {
    if skip("detached_head_worktree_is_removed_and_no_branch_is_touched") {
        return;
    }
    let env = Env::new("wt-detached");
    let r = repo(&env, "web");
    git(&r, &["branch", "feature"]);
    let w = env.p("worktrees/web/wt");
    fs::create_dir_all(w.parent().unwrap()).unwrap();
    git(
        &r,
        &[
            "worktree",
            "add",
            "-q",
            "--detach",
            w.to_str().unwrap(),
            "main",
        ],
    );
    age_tree(&w, OLD);

    let (o, v) = env.json(&CLEAN_WT);
    assert_eq!(o.code, 0, "{o:?}");
    assert_eq!(removed_paths(&v), vec!["worktrees/web/wt"], "{v}");
    assert!(!w.exists());
    assert!(linked(&r).is_empty(), "{:?}", linked(&r));
    assert!(deleted_branches(&v).is_empty(), "{v}");
    assert!(kept_branches(&v).is_empty(), "{v}");
    assert_main_repo(&r, &["feature", "main"]);
}

#[test]
fn detached_head_with_commits_on_no_branch_does_not_lose_them() {
    if skip("detached_head_with_commits_on_no_branch_does_not_lose_them") {
        return;
    }
    let env = Env::new("wt-detached-lost");
    let r = repo(&env, "web");
    let w = env.p("worktrees/web/wt");
    fs::create_dir_all(w.parent().unwrap()).unwrap();
    git(
        &r,
        &[
            "worktree",
            "add",
            "-q",
            "--detach",
            w.to_str().unwrap(),
            "main",
        ],
    );
    let lost = commit_file(&w, "work.rs", "a day of work\n");
    age_tree(&w, OLD);

    let (o, v) = env.json(&CLEAN_WT);
    assert_eq!(o.code, 0, "{o:?}");
    // Either the worktree stays (its HEAD is the only ref to the commit), or the commit is put
    // on a ref before the worktree goes; never left for `git gc` to collect.
    let refs = git(&r, &["for-each-ref", "--contains", &lost]);
    assert!(
        (w.exists() && kept_entry(&v, "worktrees/web/wt").is_some()) || !refs.trim().is_empty(),
        "commit {lost} is on no ref any more: {v}"
    );
    assert!(reachable_object(&r, &lost));
    assert_eq!(git(&r, &["status", "--porcelain"]), "");
}

#[test]
fn worktree_on_a_users_own_branch_is_removed_but_the_branch_is_never_deleted() {
    if skip("worktree_on_a_users_own_branch_is_removed_but_the_branch_is_never_deleted") {
        return;
    }
    let env = Env::new("wt-user-branch");
    let r = repo(&env, "web");
    git(&r, &["branch", "feature"]);
    let w = env.p("worktrees/web/wt");
    fs::create_dir_all(w.parent().unwrap()).unwrap();
    git(
        &r,
        &["worktree", "add", "-q", w.to_str().unwrap(), "feature"],
    );
    age_tree(&w, OLD);

    let (o, v) = env.json(&CLEAN_WT);
    assert_eq!(o.code, 0, "{o:?}");
    assert_eq!(removed_paths(&v), vec!["worktrees/web/wt"], "{v}");
    assert!(!w.exists());
    assert!(linked(&r).is_empty(), "{:?}", linked(&r));
    // `feature` is merged into main, but it is not Prodigy's branch.
    assert!(deleted_branches(&v).is_empty(), "{v}");
    assert_main_repo(&r, &["feature", "main"]);
}

#[test]
fn main_working_tree_under_worktrees_is_kept_and_untouched() {
    if skip("main_working_tree_under_worktrees_is_kept_and_untouched") {
        return;
    }
    let env = Env::new("wt-main");
    let r = repo(&env, "web");
    let clone = env.p("worktrees/web/clone");
    fs::create_dir_all(clone.parent().unwrap()).unwrap();
    git(
        &env.dir,
        &["clone", "-q", r.to_str().unwrap(), clone.to_str().unwrap()],
    );
    // A clean clone with an unpushed commit and a file of its own: losing it loses work.
    commit_file(&clone, "local.rs", "local\n");
    age_tree(&clone, OLD);
    let before = digest(&clone);
    let origin_before = digest(&r);

    let mut any_age = CLEAN_WT.to_vec();
    any_age.extend(["--older-than", "0s", "--discard-changes"]);
    for args in [
        CLEAN_WT.to_vec(),
        any_age,
        WT_CLEAN_ALL_F.to_vec(),
        vec!["worktree", "clean", "clone", "-f", "--all-repos", "--json"],
    ] {
        let (o, v) = env.json(&args);
        assert_eq!(o.code, 0, "{args:?}: {o:?}");
        assert!(removed_paths(&v).is_empty(), "{args:?}: {v}");
        assert_eq!(
            kept_reason(&v, "worktrees/web/clone").as_deref(),
            Some("git"),
            "{args:?}: {v}"
        );
        assert!(deleted_branches(&v).is_empty(), "{v}");
        assert_same(&digest(&clone), &before, "the main working tree changed");
        assert_same(&digest(&r), &origin_before, "its origin changed");
    }
    assert_main_repo(&r, &["main"]);
    assert_eq!(git(&clone, &["status", "--porcelain"]), "");
}

#[test]
fn worktree_that_is_a_processs_cwd_is_kept_in_use() {
    if skip("worktree_that_is_a_processs_cwd_is_kept_in_use")
        || !Path::new("/proc/self/cwd").exists()
    {
        eprintln!("SKIPPED worktree_that_is_a_processs_cwd_is_kept_in_use: no /proc");
        return;
    }
    let env = Env::new("wt-inuse");
    let r = repo(&env, "web");
    let w = worktree(&env, &r, "web", "wt");
    fs::create_dir_all(w.join("src")).unwrap();
    age_tree(&w, OLD);
    let mut child = Command::new("sleep")
        .arg("60")
        .current_dir(w.join("src"))
        .stdin(Stdio::null())
        .spawn()
        .expect("spawn sleep");
    let (o, v) = env.json(&WT_CLEAN_ALL_F);
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(o.code, 0, "{o:?}");
    assert_eq!(
        kept_reason(&v, "worktrees/web/wt").as_deref(),
        Some("in-use"),
        "{v}"
    );
    assert!(w.join("README.md").exists());
    assert_main_repo(&r, &["main", "prodigy-wt"]);
    // Once the process is gone, the worktree goes.
    let (o, v) = env.json(&WT_CLEAN_ALL_F);
    assert_eq!(o.code, 0, "{o:?}");
    assert!(removed(&v, "worktrees/web/wt"), "{v}");
    assert_main_repo(&r, &["main"]);
}

// ------------------------------------------------------------------------------------------------
// Case 29: bookkeeping out of step with git
// ------------------------------------------------------------------------------------------------

#[test]
fn hand_deleted_worktree_is_pruned_beside_a_removed_one() {
    if skip("hand_deleted_worktree_is_pruned_beside_a_removed_one") {
        return;
    }
    let env = Env::new("wt-gone");
    let r = repo(&env, "web");
    let gone = worktree(&env, &r, "web", "wt-gone");
    let other = worktree(&env, &r, "web", "wt-other");
    // A locked entry whose directory is missing (an unmounted disk): git keeps it, and so must we.
    let usb = worktree(&env, &r, "web", "wt-usb");
    git(&r, &["worktree", "lock", usb.to_str().unwrap()]);
    fs::remove_dir_all(&usb).unwrap();
    age_tree(&other, OLD);
    fs::remove_dir_all(&gone).unwrap();
    assert!(linked(&r).iter().any(|e| e.path == gone && e.prunable));

    // A dry run changes nothing, bookkeeping included.
    let mut dry = CLEAN_WT.to_vec();
    dry[3] = "--dry-run";
    let (o, v) = env.json(&dry);
    assert_eq!(o.code, 0, "{o:?}");
    assert_eq!(removed_paths(&v), vec!["worktrees/web/wt-other"], "{v}");
    assert!(other.exists());
    assert!(linked(&r).iter().any(|e| e.path == gone && e.prunable));

    let (o, v) = env.json(&CLEAN_WT);
    assert_eq!(o.code, 0, "{o:?}");
    assert_eq!(removed_paths(&v), vec!["worktrees/web/wt-other"], "{v}");
    assert!(!other.exists());
    assert_bookkeeping(&r, &[], "after clean");
    let l = linked(&r);
    assert!(!l.iter().any(|e| e.path == gone), "{l:?}");
    assert!(
        l.iter().any(|e| e.path == usb && e.locked),
        "the locked entry was pruned: {l:?}"
    );
    // Only the removed worktree's branch goes; the hand-deleted one's branch is not ours.
    assert_eq!(
        deleted_branches(&v),
        vec![(
            "prodigy-wt-other".to_string(),
            "merged into main".to_string()
        )]
    );
    assert_main_repo(&r, &["main", "prodigy-wt-gone", "prodigy-wt-usb"]);
}

#[test]
fn hand_deleted_worktree_is_pruned_when_nothing_else_in_its_repo_is_removed() {
    if skip("hand_deleted_worktree_is_pruned_when_nothing_else_in_its_repo_is_removed") {
        return;
    }
    let env = Env::new("wt-gone-kept");
    let r = repo(&env, "web");
    let gone = worktree(&env, &r, "web", "wt-gone");
    let dirty = worktree(&env, &r, "web", "wt-dirty");
    fs::write(dirty.join("wip.txt"), "wip\n").unwrap();
    age_tree(&dirty, OLD);
    fs::remove_dir_all(&gone).unwrap();

    let (o, v) = env.json(&CLEAN_WT);
    assert_eq!(o.code, 0, "{o:?}");
    assert!(removed_paths(&v).is_empty(), "{v}");
    assert_eq!(
        kept_reason(&v, "worktrees/web/wt-dirty").as_deref(),
        Some("uncommitted")
    );
    assert_bookkeeping(&r, &[], "after clean");
    assert!(!linked(&r).iter().any(|e| e.path == gone));
    assert!(dirty.join("wip.txt").exists());
    assert_main_repo(&r, &["main", "prodigy-wt-dirty", "prodigy-wt-gone"]);
}

/// The session record `prodigy run` writes (`metadata.worktree`, man/prodigy-storage.5 RUN AND
/// RESUME RECORDS) for session `id` of a worktree at `path`, naming `repository`, `days_old` old.
fn run_record(env: &Env, id: &str, path: &Path, repository: &serde_json::Value, days_old: u64) {
    let wt = serde_json::json!({
        "path": path,
        "branch": format!("prodigy-{id}"),
        "base_commit": "0123456789abcdef0123456789abcdef01234567",
        "original_branch": "main",
        "repository": repository,
    });
    env.session(id, "Completed", days_old, &format!(r#""worktree":{wt}"#));
}

/// Warnings of a report that are about `metadata.worktree.repository`.
fn repository_warnings(v: &serde_json::Value) -> Vec<String> {
    v["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|w| w.as_str())
        .filter(|w| w.contains("metadata.worktree.repository"))
        .map(str::to_string)
        .collect()
}

#[test]
fn hand_deleted_worktree_that_was_the_repos_only_one_is_pruned() {
    if skip("hand_deleted_worktree_that_was_the_repos_only_one_is_pruned") {
        return;
    }
    let env = Env::new("wt-gone-only");
    let r = repo(&env, "web");
    let gone = worktree(&env, &r, "web", "wt-gone");
    // With no worktree directory left, only the session record names the repository.
    run_record(&env, "wt-gone", &gone, &serde_json::json!(r), OLD / DAY);
    fs::remove_dir_all(&gone).unwrap();
    age_tree(&env.p("worktrees"), OLD);
    assert!(linked(&r).iter().any(|e| e.path == gone && e.prunable));

    // `worktree ls` shows git's stale record; a dry run reports the prune and changes nothing.
    let (o, v) = env.json(&["worktree", "ls", "--all-repos", "--json"]);
    assert_eq!(o.code, 0, "{o:?}");
    let rows = v["worktrees"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "{v}");
    assert_eq!(rows[0]["name"], "wt-gone", "{v}");
    assert_eq!(rows[0]["repository"], "web", "{v}");
    assert_eq!(rows[0]["flags"], serde_json::json!(["prunable"]), "{v}");
    let mut dry = CLEAN_WT.to_vec();
    dry[3] = "--dry-run";
    let (o, v) = env.json(&dry);
    assert_eq!(o.code, 0, "{o:?}");
    assert!(
        v["warnings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|w| w.as_str().unwrap().contains("repository web: would prune")),
        "{v}"
    );
    assert!(linked(&r).iter().any(|e| e.path == gone && e.prunable));

    for args in [CLEAN_WT.to_vec(), WT_CLEAN_ALL_F.to_vec()] {
        let (o, v) = env.json(&args);
        assert_eq!(o.code, 0, "{args:?}: {o:?}");
        assert!(removed_paths(&v).is_empty(), "{args:?}: {v}");
        assert!(deleted_branches(&v).is_empty(), "{v}");
        assert!(repository_warnings(&v).is_empty(), "{v}");
    }
    assert_bookkeeping(&r, &[], "after clean");
    assert!(!linked(&r).iter().any(|e| e.path == gone));
    // The hand-deleted worktree's branch is not ours to delete (nothing of ours was removed), and
    // the record, only read, stays: only worktrees were cleaned.
    assert_main_repo(&r, &["main", "prodigy-wt-gone"]);
    assert!(env.exists("sessions/wt-gone.json"));
}

#[test]
fn a_record_naming_no_usable_repository_prunes_nothing() {
    if skip("a_record_naming_no_usable_repository_prunes_nothing") {
        return;
    }
    let env = Env::new("wt-gone-badrepo");
    let r = repo(&env, "web");
    let gone = worktree(&env, &r, "web", "wt-gone");
    fs::remove_dir_all(&gone).unwrap();
    fs::create_dir_all(r.join("sub")).unwrap();
    fs::write(r.join("sub/f.txt"), "f\n").unwrap();
    git(&r, &["add", "sub"]);
    git(&r, &["commit", "-qm", "sub"]);
    // A repository deleted since the run: no bookkeeping is left there, nothing is said.
    run_record(
        &env,
        "s-missing",
        &gone,
        &serde_json::json!(env.dir.join("repos/deleted")),
        OLD / DAY,
    );
    // A directory that is not a repository.
    run_record(
        &env,
        "s-plain",
        &gone,
        &serde_json::json!(env.outside),
        OLD / DAY,
    );
    // A directory inside the repository, not its main working tree: git would find the
    // repository from there, but the record does not name it.
    run_record(
        &env,
        "s-sub",
        &gone,
        &serde_json::json!(r.join("sub")),
        OLD / DAY,
    );
    // A relative path (which, taken from prodigy's working directory, would name the repository)
    // and a value of the wrong type.
    run_record(
        &env,
        "s-relative",
        &gone,
        &serde_json::json!("repos/web"),
        OLD / DAY,
    );
    run_record(&env, "s-number", &gone, &serde_json::json!(7), OLD / DAY);
    // No repository recorded: nothing to check, nothing said.
    run_record(&env, "s-null", &gone, &serde_json::Value::Null, OLD / DAY);
    let outside_before = digest(&env.outside);
    let repo_before = digest(&r);

    let (o, v) = env.json(&CLEAN_WT);
    assert_eq!(o.code, 0, "{o:?}");
    assert!(removed_paths(&v).is_empty(), "{v}");
    assert!(deleted_branches(&v).is_empty(), "{v}");
    assert!(v["errors"].as_array().unwrap().is_empty(), "{v}");
    let w = repository_warnings(&v);
    assert_eq!(w.len(), 4, "{w:#?}");
    let says = |sid: &str, what: &str| {
        assert!(
            w.iter()
                .any(|w| w.starts_with(&format!("session {sid}: ")) && w.contains(what)),
            "no warning for {sid} saying `{what}`: {w:#?}"
        )
    };
    says("s-plain", "could not be checked");
    says("s-plain", "not a git repository"); // git's own words
    says("s-sub", "is not a repository's main working tree");
    says("s-relative", "is not an absolute path");
    says("s-number", "is not an absolute path");
    assert!(
        w.iter()
            .all(|w| w.ends_with("git's records of its worktrees were not checked")),
        "{w:#?}"
    );
    // git's stale record stays, and nothing named by a record changed.
    assert!(linked(&r).iter().any(|e| e.path == gone && e.prunable));
    assert_eq!(digest(&env.outside), outside_before);
    assert_eq!(digest(&r), repo_before);
    assert_main_repo(&r, &["main", "prodigy-wt-gone"]);
    for sid in [
        "s-missing",
        "s-plain",
        "s-sub",
        "s-relative",
        "s-number",
        "s-null",
    ] {
        assert!(env.exists(&format!("sessions/{sid}.json")), "{sid}");
    }
    // `worktree ls` does not list the stale record either.
    let (o, v) = env.json(&["worktree", "ls", "--all-repos", "--json"]);
    assert_eq!(o.code, 0, "{o:?}");
    assert!(v["worktrees"].as_array().unwrap().is_empty(), "{v}");
}

#[test]
fn unregistered_directories_are_plain_data_removed_by_age_without_git() {
    if skip("unregistered_directories_are_plain_data_removed_by_age_without_git") {
        return;
    }
    let env = Env::new("wt-plain");
    // Plain directories: no .git at all.
    let plain = env.p("worktrees/web/leftover");
    fs::create_dir_all(plain.join("target/debug")).unwrap();
    fs::write(plain.join("target/debug/app"), "binary\n").unwrap();
    fs::write(plain.join("notes.txt"), "notes\n").unwrap();
    age_tree(&plain, OLD);
    let young = env.p("worktrees/web/young");
    fs::create_dir_all(&young).unwrap();
    fs::write(young.join("f"), "f\n").unwrap();
    age_tree(&young, 2 * DAY);

    // A `.git` file pointing at another repository's worktree that does not list this path.
    let other = repo(&env, "other");
    let other_wt = env.dir.join("other-wt");
    git(
        &other,
        &[
            "worktree",
            "add",
            "-q",
            "-b",
            "other-wt",
            other_wt.to_str().unwrap(),
            "main",
        ],
    );
    fs::write(other_wt.join("wip.txt"), "the other repository's work\n").unwrap();
    // The other repository also has a stale entry (its directory is gone) outside the root: a
    // `git worktree prune` run there would drop it, which is not ours to do.
    let other_gone = env.dir.join("other-gone");
    git(
        &other,
        &[
            "worktree",
            "add",
            "-q",
            "-b",
            "other-gone",
            other_gone.to_str().unwrap(),
            "main",
        ],
    );
    fs::remove_dir_all(&other_gone).unwrap();
    let fake = env.p("worktrees/other/fake");
    fs::create_dir_all(&fake).unwrap();
    fs::write(
        fake.join(".git"),
        format!(
            "gitdir: {}\n",
            other.join(".git/worktrees/other-wt").display()
        ),
    )
    .unwrap();
    fs::write(fake.join("README.md"), "not the other repo's file\n").unwrap();
    fs::write(fake.join("extra.txt"), "x\n").unwrap();
    age_tree(&fake, OLD);
    let other_before = digest(&other);
    let other_wt_before = digest(&other_wt);
    let other_list = git(&other, &["worktree", "list", "--porcelain"]);

    let (o, v) = env.json(&CLEAN_WT);
    assert_eq!(o.code, 0, "{o:?}");
    assert_eq!(
        removed_paths(&v),
        vec!["worktrees/other/fake", "worktrees/web/leftover"],
        "{v}"
    );
    assert!(!plain.exists() && !fake.exists());
    assert!(young.join("f").exists(), "a young plain directory stays");
    assert!(
        deleted_branches(&v).is_empty() && kept_branches(&v).is_empty(),
        "{v}"
    );
    assert_same(
        &digest(&other),
        &other_before,
        "the other repository changed",
    );
    assert_same(
        &digest(&other_wt),
        &other_wt_before,
        "the other worktree changed",
    );
    assert_eq!(
        git(&other, &["worktree", "list", "--porcelain"]),
        other_list
    );
    assert_eq!(git(&other, &["status", "--porcelain"]), "");
    assert_eq!(branches(&other), vec!["main", "other-gone", "other-wt"]);
    assert_canary(&env);
}

// ------------------------------------------------------------------------------------------------
// Case 28: git missing, failing, hanging, misdirected
// ------------------------------------------------------------------------------------------------

/// A tree with a clean and a dirty expired worktree, an expired plain directory and expired
/// events: (repo, clean worktree, dirty worktree).
fn git_trouble_tree(env: &Env) -> (PathBuf, PathBuf, PathBuf) {
    let r = repo(env, "web");
    let clean = worktree(env, &r, "web", "wt-clean");
    let dirty = worktree(env, &r, "web", "wt-dirty");
    fs::write(dirty.join("wip.txt"), "wip\n").unwrap();
    age_tree(&clean, OLD);
    age_tree(&dirty, OLD);
    env.old_file("worktrees/web/plain/data.txt", 10);
    age_tree(&env.p("worktrees/web/plain"), OLD);
    env.old_file("events/web/job-1/events-20250101120000.jsonl", 60);
    age_tree(&env.p("events/web/job-1"), 60 * DAY);
    (r, clean, dirty)
}

/// With git unusable: worktrees kept (reason git), everything else cleaned, exit 0.
fn assert_git_unusable_keeps_worktrees(env: &Env, o: &Out, v: &serde_json::Value) -> String {
    assert_eq!(o.code, 0, "{o:?}");
    assert!(!o.stderr.contains("panicked"), "{o:?}");
    for w in ["wt-clean", "wt-dirty"] {
        let p = format!("worktrees/web/{w}");
        assert_eq!(kept_reason(v, &p).as_deref(), Some("git"), "{p}: {v}");
        assert!(env.p(&p).join("README.md").exists(), "{p} is damaged");
    }
    assert!(env.p("worktrees/web/wt-dirty/wip.txt").exists());
    assert!(removed(v, "events/web/job-1"), "{v}");
    assert!(!env.exists("events/web/job-1"));
    assert!(removed(v, "worktrees/web/plain"), "{v}");
    assert!(!env.exists("worktrees/web/plain"));
    assert!(deleted_branches(v).is_empty(), "{v}");
    kept_detail(v, "worktrees/web/wt-clean")
}

const CLEAN_ALL: [&str; 4] = ["clean", "--all-repos", "--force", "--json"];

#[test]
fn git_missing_keeps_worktrees_and_cleans_the_rest() {
    if skip("git_missing_keeps_worktrees_and_cleans_the_rest") {
        return;
    }
    let mut env = Env::new("git-missing");
    let (r, _, _) = git_trouble_tree(&env);
    env.extra_env.push(("PATH".into(), "/nonexistent".into()));
    let (o, v) = env.json(&CLEAN_ALL);
    let detail = assert_git_unusable_keeps_worktrees(&env, &o, &v);
    assert!(
        detail.contains("not installed") || detail.contains("not found"),
        "{detail}"
    );
    let l = linked(&r);
    assert_eq!(l.len(), 2, "{l:?}");
    assert_main_repo(&r, &["main", "prodigy-wt-clean", "prodigy-wt-dirty"]);
}

#[test]
fn failing_git_keeps_worktrees() {
    if skip("failing_git_keeps_worktrees") {
        return;
    }
    let mut env = Env::new("git-fail");
    let (r, _, _) = git_trouble_tree(&env);
    let bin = env.dir.join("fakebin");
    script(
        &bin,
        "git",
        "#!/bin/sh\necho 'fatal: simulated failure' >&2\nexit 1\n",
    );
    env.extra_env.push(("PATH".into(), path_with(&bin)));
    let (o, v) = env.json(&CLEAN_ALL);
    assert_git_unusable_keeps_worktrees(&env, &o, &v);
    assert_eq!(linked(&r).len(), 2);
    assert_main_repo(&r, &["main", "prodigy-wt-clean", "prodigy-wt-dirty"]);
}

#[test]
fn git_that_succeeds_with_garbage_output_keeps_worktrees() {
    if skip("git_that_succeeds_with_garbage_output_keeps_worktrees") {
        return;
    }
    // A git that exits 0 and prints nothing: an empty `worktree list` and an empty (clean!)
    // `status`. An odd answer must mean keep, never "clean, not listed, delete".
    let mut env = Env::new("git-empty");
    let (r, _, dirty) = git_trouble_tree(&env);
    let bin = env.dir.join("fakebin");
    script(&bin, "git", "#!/bin/sh\nexit 0\n");
    env.extra_env.push(("PATH".into(), path_with(&bin)));
    let (o, v) = env.json(&CLEAN_ALL);
    assert_eq!(o.code, 0, "{o:?}");
    for w in ["wt-clean", "wt-dirty"] {
        let p = format!("worktrees/web/{w}");
        assert!(
            !removed(&v, &p),
            "{p} was removed on git's empty answers: {v}"
        );
        assert!(kept_entry(&v, &p).is_some(), "{p} is not reported: {v}");
    }
    assert!(dirty.join("wip.txt").exists());
    assert!(removed(&v, "events/web/job-1"), "{v}");
    assert_eq!(linked(&r).len(), 2);
    assert_main_repo(&r, &["main", "prodigy-wt-clean", "prodigy-wt-dirty"]);
}

#[test]
fn hanging_git_times_out_and_keeps_worktrees() {
    if skip("hanging_git_times_out_and_keeps_worktrees") {
        return;
    }
    let mut env = Env::new("git-hang");
    let (r, _, _) = git_trouble_tree(&env);
    let bin = env.dir.join("fakebin");
    // Not `exec`: the sleeping grandchild keeps git's pipes open after the shell is killed.
    script(&bin, "git", "#!/bin/sh\nsleep 30\nexit 0\n");
    env.extra_env.push(("PATH".into(), path_with(&bin)));
    env.extra_env
        .push(("PRODIGY_GIT_TIMEOUT".into(), "1".into()));
    let start = Instant::now();
    let (o, v) = env.json(&CLEAN_ALL);
    let took = start.elapsed();
    assert!(took < Duration::from_secs(15), "took {took:?}: {o:?}");
    let detail = assert_git_unusable_keeps_worktrees(&env, &o, &v);
    assert!(detail.contains("timed out"), "{detail}");
    assert_eq!(linked(&r).len(), 2);
    assert_main_repo(&r, &["main", "prodigy-wt-clean", "prodigy-wt-dirty"]);
}

#[test]
fn leaked_git_variables_change_no_decision_and_leave_the_decoy_alone() {
    if skip("leaked_git_variables_change_no_decision_and_leave_the_decoy_alone") {
        return;
    }
    let mut env = Env::new("git-leak");
    let r = repo(&env, "web");
    let decoy = repo(&env, "decoy");
    fs::write(decoy.join("decoy-wip.txt"), "decoy work\n").unwrap();
    let dirty = worktree(&env, &r, "web", "wt-dirty");
    fs::write(dirty.join("untracked.txt"), "precious\n").unwrap();
    let clean = worktree(&env, &r, "web", "wt-clean");
    let unmerged = worktree(&env, &r, "web", "wt-unmerged");
    let tip = commit_file(&unmerged, "u.rs", "u\n");
    let locked = worktree(&env, &r, "web", "wt-locked");
    git(&r, &["worktree", "lock", locked.to_str().unwrap()]);
    for w in [&dirty, &clean, &unmerged, &locked] {
        age_tree(w, OLD);
    }

    // The decisions without leaked variables (a dry run changes nothing).
    let mut dry = CLEAN_WT.to_vec();
    dry[3] = "--dry-run";
    let (o, base) = env.json(&dry);
    assert_eq!(o.code, 0, "{o:?}");
    assert_eq!(
        removed_paths(&base),
        vec!["worktrees/web/wt-clean", "worktrees/web/wt-unmerged"],
        "{base}"
    );

    let decoy_before = digest(&decoy);
    let d = |p: &str| decoy.join(p).display().to_string();
    for (k, v) in [
        ("GIT_DIR", d(".git")),
        ("GIT_WORK_TREE", decoy.display().to_string()),
        ("GIT_INDEX_FILE", d(".git/index")),
        ("GIT_COMMON_DIR", d(".git")),
        ("GIT_OBJECT_DIRECTORY", d(".git/objects")),
        ("GIT_CEILING_DIRECTORIES", env.dir.display().to_string()),
        // Injected configuration that would hide untracked files from `git status`.
        ("GIT_CONFIG_COUNT", "2".into()),
        ("GIT_CONFIG_KEY_0", "status.showUntrackedFiles".into()),
        ("GIT_CONFIG_VALUE_0", "no".into()),
        ("GIT_CONFIG_KEY_1", "core.excludesFile".into()),
        ("GIT_CONFIG_VALUE_1", d("ignore-all")),
        (
            "GIT_CONFIG_PARAMETERS",
            "'status.showuntrackedfiles'='no'".into(),
        ),
    ] {
        env.extra_env.push((k.into(), v));
    }
    fs::write(decoy.join(".git/ignore-all"), "*\n").unwrap();
    let decoy_before_run = digest(&decoy);
    let (o, v) = env.json(&CLEAN_WT);
    assert_eq!(o.code, 0, "{o:?}");
    assert_eq!(removed_paths(&v), removed_paths(&base), "{v}");
    for w in ["wt-dirty", "wt-locked"] {
        let p = format!("worktrees/web/{w}");
        assert_eq!(kept_reason(&v, &p), kept_reason(&base, &p), "{p}: {v}");
    }
    assert_eq!(
        kept_reason(&v, "worktrees/web/wt-dirty").as_deref(),
        Some("uncommitted")
    );
    assert_eq!(
        kept_reason(&v, "worktrees/web/wt-locked").as_deref(),
        Some("locked")
    );
    assert_eq!(
        fs::read_to_string(dirty.join("untracked.txt")).unwrap(),
        "precious\n"
    );
    assert!(!clean.exists() && !unmerged.exists() && locked.exists());
    assert_eq!(deleted_branches(&v), deleted_branches(&base));
    assert_eq!(kept_branches(&v), vec!["prodigy-wt-unmerged"]);
    assert!(reachable_object(&r, &tip));
    assert_same(
        &digest(&decoy),
        &decoy_before_run,
        "the decoy repository changed",
    );
    fs::remove_file(decoy.join(".git/ignore-all")).unwrap();
    assert_same(
        &digest(&decoy),
        &decoy_before,
        "the decoy repository changed",
    );
    assert_eq!(branches(&decoy), vec!["main"]);
    assert_bookkeeping(&r, &[], "after clean");
    assert_main_repo(
        &r,
        &[
            "main",
            "prodigy-wt-dirty",
            "prodigy-wt-locked",
            "prodigy-wt-unmerged",
        ],
    );
}

// ------------------------------------------------------------------------------------------------
// A sequence of runs: bookkeeping and commits stay right after every step
// ------------------------------------------------------------------------------------------------

struct Repo {
    dir: PathBuf,
    main_tip: String,
    /// (branch, tip) of every branch not on main at the start.
    tips: Vec<(String, String)>,
}

impl Repo {
    fn record(dir: &Path) -> Repo {
        let main_tip = sha(dir, "main");
        let mut tips = Vec::new();
        for l in git(
            dir,
            &[
                "for-each-ref",
                "--format=%(refname:short) %(objectname)",
                "refs/heads",
            ],
        )
        .lines()
        {
            let (b, s) = l.split_once(' ').unwrap();
            let on_main = git_cmd(dir, &["merge-base", "--is-ancestor", s, "main"])
                .status()
                .unwrap()
                .success();
            if !on_main {
                tips.push((b.to_string(), s.to_string()));
            }
        }
        Repo {
            dir: dir.to_path_buf(),
            main_tip,
            tips,
        }
    }

    /// No stale bookkeeping (but `allow`), every recorded commit on some branch, main intact.
    fn check(&self, allow: &[&Path], when: &str) {
        assert_bookkeeping(&self.dir, allow, when);
        for (b, s) in &self.tips {
            assert!(
                reachable_object(&self.dir, s),
                "{when}: {b}'s commit {s} is gone"
            );
            assert!(
                !branches_containing(&self.dir, s).is_empty(),
                "{when}: {b}'s commit {s} is on no branch"
            );
        }
        assert_eq!(sha(&self.dir, "main"), self.main_tip, "{when}: main moved");
        assert_eq!(
            git(&self.dir, &["status", "--porcelain"]),
            "",
            "{when}: main repository modified"
        );
    }
}

#[test]
fn a_sequence_of_cleans_keeps_bookkeeping_and_commits_right() {
    if skip("a_sequence_of_cleans_keeps_bookkeeping_and_commits_right") {
        return;
    }
    let env = Env::new("wt-seq");
    let alpha = repo(&env, "alpha");
    let beta = repo(&env, "beta");
    let dirty = worktree(&env, &alpha, "alpha", "wt-dirty");
    fs::write(dirty.join("wip.txt"), "wip\n").unwrap();
    let locked = worktree(&env, &alpha, "alpha", "wt-locked");
    git(&alpha, &["worktree", "lock", locked.to_str().unwrap()]);
    let young = worktree(&env, &alpha, "alpha", "wt-young");
    let unmerged = worktree(&env, &beta, "beta", "wt-unmerged");
    commit_file(&unmerged, "u.rs", "u\n");
    let merged = worktree(&env, &beta, "beta", "wt-merged");
    commit_file(&merged, "m.rs", "m\n");
    git(&beta, &["merge", "-q", "--ff-only", "prodigy-wt-merged"]);
    for w in [&dirty, &locked, &unmerged, &merged] {
        age_tree(w, OLD);
    }
    age_tree(&young, DAY);
    let repos = [Repo::record(&alpha), Repo::record(&beta)];
    assert_eq!(repos[1].tips.len(), 1, "{:?}", repos[1].tips);
    let check = |allow: &[&Path], when: &str| {
        for r in &repos {
            r.check(allow, when);
        }
    };
    check(&[], "at the start");

    // 1. dry run of `worktree clean --all`: lists the clean ones of any age, changes nothing.
    let before = digest(&env.root);
    let (o, v) = env.json(&[
        "worktree",
        "clean",
        "--all",
        "--dry-run",
        "--all-repos",
        "--json",
    ]);
    assert_eq!(o.code, 0, "{o:?}");
    assert_eq!(
        removed_paths(&v),
        vec![
            "worktrees/alpha/wt-young",
            "worktrees/beta/wt-merged",
            "worktrees/beta/wt-unmerged"
        ],
        "{v}"
    );
    assert_eq!(
        kept_reason(&v, "worktrees/alpha/wt-dirty").as_deref(),
        Some("uncommitted")
    );
    assert_eq!(
        kept_reason(&v, "worktrees/alpha/wt-locked").as_deref(),
        Some("locked")
    );
    assert_same(&digest(&env.root), &before, "the dry run changed the tree");
    check(&[], "after the dry run");
    assert_eq!(linked(&alpha).len(), 3);
    assert_eq!(linked(&beta).len(), 2);

    // 2. `clean --worktrees --force`: the expired clean ones go.
    let (o, v) = env.json(&CLEAN_WT);
    assert_eq!(o.code, 0, "{o:?}");
    assert_eq!(
        removed_paths(&v),
        vec!["worktrees/beta/wt-merged", "worktrees/beta/wt-unmerged"],
        "{v}"
    );
    assert_eq!(
        kept_reason(&v, "worktrees/alpha/wt-dirty").as_deref(),
        Some("uncommitted")
    );
    assert_eq!(
        kept_reason(&v, "worktrees/alpha/wt-locked").as_deref(),
        Some("locked")
    );
    assert_eq!(kept_branches(&v), vec!["prodigy-wt-unmerged"]);
    assert_eq!(
        deleted_branches(&v),
        vec![(
            "prodigy-wt-merged".to_string(),
            "merged into main".to_string()
        )]
    );
    assert!(young.exists() && dirty.join("wip.txt").exists() && locked.exists());
    check(&[], "after clean --worktrees");
    assert_eq!(branches(&beta), vec!["main", "prodigy-wt-unmerged"]);

    // 3. a kept worktree's directory deleted by hand.
    fs::remove_dir_all(&dirty).unwrap();
    check(&[&dirty], "right after the manual deletion");

    // 4. `worktree clean --all -f`: the young one goes; the hand-deleted one is pruned.
    let (o, v) = env.json(&WT_CLEAN_ALL_F);
    assert_eq!(o.code, 0, "{o:?}");
    assert_eq!(removed_paths(&v), vec!["worktrees/alpha/wt-young"], "{v}");
    assert_eq!(
        kept_reason(&v, "worktrees/alpha/wt-locked").as_deref(),
        Some("locked")
    );
    assert!(!young.exists() && locked.exists());
    check(&[], "after worktree clean --all -f");
    assert!(!linked(&alpha).iter().any(|e| e.path == dirty));
    assert_eq!(
        branches(&alpha),
        vec!["main", "prodigy-wt-dirty", "prodigy-wt-locked"]
    );

    // 5. `clean --force --older-than 0s`: everything of any age; the locked one still stays.
    let (o, v) = env.json(&[
        "clean",
        "--force",
        "--older-than",
        "0s",
        "--all-repos",
        "--json",
    ]);
    assert_eq!(o.code, 0, "{o:?}");
    assert!(removed_paths(&v).is_empty(), "{v}");
    assert_eq!(
        kept_reason(&v, "worktrees/alpha/wt-locked").as_deref(),
        Some("locked")
    );
    assert!(locked.join("README.md").exists());
    check(&[], "after clean --older-than 0s");
    assert_eq!(linked(&alpha).len(), 1);
    assert!(linked(&beta).is_empty());
    assert_eq!(
        branches(&alpha),
        vec!["main", "prodigy-wt-dirty", "prodigy-wt-locked"]
    );
    assert_eq!(branches(&beta), vec!["main", "prodigy-wt-unmerged"]);
    assert_canary(&env);
}

#[test]
fn a_worktree_moved_by_hand_is_kept_and_its_repository_not_pruned() {
    let env = Env::new("wt-moved");
    let r = repo(&env, "web");
    let w = worktree(&env, &r, "web", "wt-old-name");
    fs::write(w.join("README.md"), "staged work\n").unwrap();
    git(&w, &["add", "README.md"]);
    let moved = env.p("worktrees/web/wt-new-name");
    fs::rename(&w, &moved).unwrap();
    // The record of its session names the repository: that changes nothing.
    run_record(&env, "wt-old-name", &w, &serde_json::json!(r), 30);
    let other = worktree(&env, &r, "web", "wt-expired");
    age_tree(&moved, 30 * DAY);
    age_tree(&other, 30 * DAY);
    let (o, v) = env.json(&["clean", "--worktrees", "--all-repos", "--force", "--json"]);
    assert_eq!(o.code, 0, "{o:?}");
    assert_eq!(
        kept_reason(&v, "worktrees/web/wt-new-name").as_deref(),
        Some("git"),
        "{v}"
    );
    assert!(
        removed_paths(&v).contains(&"worktrees/web/wt-expired".to_string()),
        "{v}"
    );
    // The moved worktree's administrative directory survives, so git can repair it.
    assert!(r.join(".git/worktrees/wt-old-name").exists());
    git(&r, &["worktree", "repair", moved.to_str().unwrap()]);
    assert_eq!(
        git(&moved, &["diff", "--cached", "--name-only"]).trim(),
        "README.md"
    );
}

fn registry(env: &Env, repo: &str, job: &str, paths: &[&Path]) {
    let entries: Vec<serde_json::Value> = paths
        .iter()
        .enumerate()
        .map(|(i, p)| {
            serde_json::json!({"path": p, "agent_id": format!("agent-{i}"), "item_id": format!("item-{i}"),
                "failed_at": "2025-01-11T12:00:00Z", "error": "Permission denied"})
        })
        .collect();
    env.write(
        &format!("orphaned_worktrees/{repo}/{job}.json"),
        &serde_json::to_string(&entries).unwrap(),
    );
}

#[test]
fn clean_orphaned_removes_recorded_worktrees_and_rewrites_the_registry() {
    let env = Env::new("orphaned");
    let r = repo(&env, "web");
    let clean = worktree(&env, &r, "web", "agent-clean");
    let dirty = worktree(&env, &r, "web", "agent-dirty");
    fs::write(dirty.join("wip.txt"), "work\n").unwrap();
    let outside = env.outside.join("elsewhere");
    fs::create_dir_all(&outside).unwrap();
    let gone = env.p("worktrees/web/agent-gone");
    registry(&env, "web", "job-1", &[&clean, &dirty, &outside, &gone]);
    // Several registries and no JOB_ID: list them, change nothing.
    registry(&env, "web", "job-2", &[&gone]);
    let o = env.run(&["worktree", "clean-orphaned", "--all-repos"]);
    assert_eq!(o.code, 0, "{o:?}");
    assert_eq!(o.stdout, "REPOSITORY\tJOB\tENTRIES\tPRESENT\nweb\tjob-1\t4\t3\nweb\tjob-2\t1\t0\n2 registries; give a JOB_ID, or -f to handle them all\n");
    assert!(clean.exists());
    let o = env.run(&["worktree", "clean-orphaned", "nope", "--all-repos"]);
    assert_eq!(o.code, 2, "{o:?}");
    // The dry run changes nothing; the real run removes the clean one, keeps the dirty one.
    let (o, dry) = env.json(&[
        "worktree",
        "clean-orphaned",
        "job-1",
        "--all-repos",
        "--dry-run",
        "--json",
    ]);
    assert_eq!(o.code, 0, "{o:?}");
    assert_eq!(removed_paths(&dry), vec!["worktrees/web/agent-clean"]);
    assert!(clean.exists());
    let (o, v) = env.json(&[
        "worktree",
        "clean-orphaned",
        "job-1",
        "--all-repos",
        "-f",
        "--json",
    ]);
    assert_eq!(o.code, 0, "{o:?}");
    assert!(
        o.stderr.contains(&format!(
            "`{}` (in orphaned_worktrees/web/job-1.json) is not inside",
            outside.display()
        )),
        "{o:?}"
    );
    assert_eq!(removed_paths(&v), vec!["worktrees/web/agent-clean"]);
    assert_eq!(
        kept_reason(&v, "worktrees/web/agent-dirty").as_deref(),
        Some("uncommitted")
    );
    assert!(!clean.exists() && dirty.join("wip.txt").exists() && outside.exists());
    let left: serde_json::Value = serde_json::from_str(
        &fs::read_to_string(env.p("orphaned_worktrees/web/job-1.json")).unwrap(),
    )
    .unwrap();
    let left: Vec<&str> = left
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().unwrap())
        .collect();
    assert_eq!(
        left,
        vec![dirty.to_str().unwrap(), outside.to_str().unwrap()],
        "entries that are gone are dropped"
    );
    // job-2's only entry is gone: its registry is removed.
    assert!(!env.exists("orphaned_worktrees/web/job-2.json"));
    assert!(!git(&r, &["worktree", "list", "--porcelain"]).contains("prunable"));
}

#[test]
fn worktree_ls_lists_nested_agents_prunable_unregistered_and_home_worktrees() {
    let env = Env::new("wt-ls");
    let r = repo(&env, "web");
    let parent = worktree(&env, &r, "web", "session-mr");
    git(
        &r,
        &[
            "worktree",
            "add",
            "-q",
            "-b",
            "prodigy-agent-1",
            parent.join("agent-1").to_str().unwrap(),
            "main",
        ],
    );
    fs::write(parent.join("agent-1/wip.txt"), "x").unwrap();
    let gone = worktree(&env, &r, "web", "gone");
    fs::remove_dir_all(&gone).unwrap();
    fs::create_dir_all(env.p("worktrees/web/plain")).unwrap();
    let locked = worktree(&env, &r, "web", "locked-one");
    git(&r, &["worktree", "lock", locked.to_str().unwrap()]);
    fs::write(locked.join("x.txt"), "x").unwrap();
    git(&locked, &["add", "x.txt"]);
    git(&locked, &["commit", "-qm", "unmerged"]);
    // 0.4.4 kept worktrees in $HOME/.prodigy while PRODIGY_HOME pointed elsewhere.
    let legacy_root = env.home.join("legacy-home");
    let legacy = legacy_root.join(".prodigy/worktrees/web/workflow-1");
    fs::create_dir_all(legacy.parent().unwrap()).unwrap();
    git(
        &r,
        &[
            "worktree",
            "add",
            "-q",
            "-b",
            "prodigy-workflow-1",
            legacy.to_str().unwrap(),
            "main",
        ],
    );
    let o = env
        .cmd(&["worktree", "ls", "--all-repos", "--json"])
        .env("HOME", &legacy_root)
        .output()
        .unwrap();
    let o = Out::from(o);
    assert_eq!(o.code, 0, "{o:?}");
    let v: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    let flags = |name: &str| -> Vec<String> {
        let row = v["worktrees"]
            .as_array()
            .unwrap()
            .iter()
            .find(|w| w["name"] == name)
            .unwrap_or_else(|| panic!("{name}: {v}"));
        row["flags"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f.as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(
        flags("session-mr"),
        Vec::<String>::new(),
        "its nested agent is not its own untracked file"
    );
    assert_eq!(flags("agent-1"), vec!["untracked"]);
    assert_eq!(flags("gone"), vec!["prunable"]);
    assert_eq!(flags("plain"), vec!["unregistered"]);
    assert_eq!(flags("locked-one"), vec!["locked", "unmerged"]);
    assert_eq!(flags("workflow-1"), vec!["home"]);
    assert_eq!(v["worktrees"].as_array().unwrap().len(), 6);
    // Without a terminal: one tab-separated line per worktree.
    let o = env.run(&["worktree", "ls", "--all-repos"]);
    assert_eq!(o.stdout.lines().count(), 5, "{o:?}");
    assert!(
        o.stdout.lines().all(|l| l.split('\t').count() == 9),
        "{o:?}"
    );
}
