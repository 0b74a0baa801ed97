//! The real tree written by Prodigy 0.4.4 (`tests/fixtures/real-0.4.4/`) and a generated
//! canonical tree of 10,000 sessions (`scripts/gen-tree.py`), cleaned end to end.

use super::common::*;
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

/// The fixture must live at this fixed path (its git worktrees link there), so its tests run
/// one at a time.
const CORPUS: &str = "/tmp/prodigy-corpus";
static CORPUS_LOCK: Mutex<()> = Mutex::new(());

/// Extract a pristine copy of the fixture at [`CORPUS`] (its tarball holds absolute paths
/// under it). Callers hold [`CORPUS_LOCK`].
fn extract_corpus() {
    let tar = fixture_0_4_4("tree.tar.gz");
    let _ = fs::remove_dir_all(CORPUS);
    let ok = Command::new("tar")
        .args(["-C", "/", "-xzf"])
        .arg(&tar)
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(ok, "tar failed");
}

/// Run prodigy on the corpus at a fixed clock (`faketime`), everything aged to 2026-10-01.
fn corpus_run(args: &[&str]) -> (Out, serde_json::Value) {
    let home = format!("{CORPUS}/home");
    let o = Command::new("faketime")
        .arg("2026-12-31 12:00:00")
        .arg(prodigy_bin())
        .args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", &home)
        .env("PRODIGY_HOME", format!("{home}/.prodigy"))
        // Fake the clock only: libfaketime would otherwise shift the mtimes stat(2) returns too.
        .env("NO_FAKE_STAT", "1")
        .current_dir("/tmp")
        .output()
        .unwrap();
    let o = Out::from(o);
    let v = serde_json::from_str(&o.stdout).unwrap_or(serde_json::Value::Null);
    (o, v)
}

fn age_corpus() {
    let ok = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "find {CORPUS}/home -exec touch -h -d '2026-10-01 00:00:00' {{}} +"
        ))
        .status()
        .unwrap()
        .success();
    assert!(ok);
}

fn branch_tips(repo: &Path) -> BTreeMap<String, String> {
    git(
        repo,
        &[
            "for-each-ref",
            "--format=%(refname:short) %(objectname)",
            "refs/heads/",
        ],
    )
    .lines()
    .map(|l| {
        let (b, c) = l.split_once(' ').unwrap();
        (b.to_string(), c.to_string())
    })
    .collect()
}

#[test]
fn real_0_4_4_tree_is_cleaned_by_the_rules_of_its_readme() {
    let _g = CORPUS_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    if !have("faketime", "real_0_4_4_tree") {
        return;
    }
    extract_corpus();
    let gt: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(fixture_0_4_4("ground-truth.json")).unwrap())
            .unwrap();
    let root = PathBuf::from(gt["prodigy_home"].as_str().unwrap());
    age_corpus();

    // Every JSON file is understood, except the four 0-byte sessions, reported as corrupt.
    let (o, dry) = corpus_run(&[
        "clean",
        "--all-repos",
        "--older-than",
        "0s",
        "--dry-run",
        "--json",
    ]);
    assert_eq!(o.code, 0, "{o:?}");
    let mut empty: Vec<String> = dry["kept"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "sessions" && e["detail"].as_str().unwrap().contains("empty file"))
        .map(|e| e["path"].as_str().unwrap().to_string())
        .collect();
    empty.sort();
    assert_eq!(
        empty,
        [
            "sessions/session-05ca58e9-86f2-420d-ab40-66673acbd8b7.json",
            "sessions/session-daf6092e-da53-4cfd-9f92-3587d23bcaf0.json",
            "sessions/workflow-1795238098502.json",
            "sessions/workflow-1795238106470.json",
        ]
    );
    let odd: Vec<&serde_json::Value> = dry["kept"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| {
            matches!(
                e["reason"].as_str(),
                Some("unrecognized" | "unreadable" | "invalid-name" | "git")
            )
        })
        .collect();
    assert!(odd.is_empty(), "every file is understood: {odd:?}");
    assert_eq!(
        dry["sessions"],
        serde_json::json!({"completed": 8, "resumable": 5, "stale": 2, "unknown": 4})
    );

    let repos: Vec<PathBuf> = ["webapp", "api-server", "tools"]
        .iter()
        .map(|r| PathBuf::from(CORPUS).join("repos").join(r))
        .collect();
    let tips_before: Vec<BTreeMap<String, String>> = repos.iter().map(|r| branch_tips(r)).collect();
    let main_status: Vec<String> = repos
        .iter()
        .map(|r| git(r, &["status", "--porcelain"]))
        .collect();

    let (o, real) = corpus_run(&[
        "clean",
        "--all-repos",
        "--older-than",
        "0s",
        "--force",
        "--json",
    ]);
    assert_eq!(o.code, 0, "{o:?}");
    assert_eq!(
        removed_paths(&dry),
        removed_paths(&real),
        "the dry run predicted the real run"
    );
    assert_eq!(dry["totals"], real["totals"]);

    // Sessions: the README's outcome table.
    let by_scenario: BTreeMap<&str, &str> = gt["scenarios"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["scenario"].as_str().unwrap(),
                s["session_id"].as_str().unwrap(),
            )
        })
        .collect();
    for (sc, sid) in &by_scenario {
        let exists = root.join(format!("sessions/{sid}.json")).exists();
        let expect_removed = matches!(*sc, "a1" | "a3" | "c1" | "c2" | "f");
        if *sc == "d1-resume" {
            continue;
        }
        assert_eq!(
            exists, !expect_removed,
            "scenario {sc} ({sid}): session record exists = {exists}"
        );
    }
    for f in [
        "workflow-1795238098502",
        "workflow-1795238106470",
        "session-daf6092e-da53-4cfd-9f92-3587d23bcaf0",
        "session-05ca58e9-86f2-420d-ab40-66673acbd8b7",
    ] {
        assert_eq!(
            fs::metadata(root.join(format!("sessions/{f}.json")))
                .unwrap()
                .len(),
            0,
            "corrupt file kept as is"
        );
    }
    // Resumable sessions keep their checkpoints; g1 keeps its (stale) resume lock.
    for sid in [
        "workflow-1795238090597",
        "workflow-1795238090936",
        "workflow-1795238114447",
        "workflow-1795238178314",
    ] {
        assert!(
            root.join(format!("state/{sid}/checkpoints"))
                .read_dir()
                .unwrap()
                .next()
                .is_some(),
            "{sid}"
        );
    }
    assert!(root
        .join("resume_locks/workflow-1795238178314.lock")
        .exists());

    // Worktrees: removed exactly where the README says.
    let removed_wt = [
        "worktrees/session-d18a73c0-e5b5-44da-b9e5-fc1936284e80/mapreduce-agent-mapreduce-20261121_051522_agent_3",
        "worktrees/session-d18a73c0-e5b5-44da-b9e5-fc1936284e80/mapreduce-agent-mapreduce-20261121_051522_agent_5",
        "worktrees/webapp/workflow-1795238090439",
        "worktrees/tools/session-7f8c288b-aa4b-4dce-ba8a-65b0e0337e8d",
        "worktrees/api-server/session-c2807da3-2c90-448d-a2ed-e3cf9c497753",
    ];
    for w in gt["worktrees"].as_array().unwrap() {
        let p = PathBuf::from(w["path"].as_str().unwrap());
        let rel = p
            .strip_prefix(&root)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let expect_gone = removed_wt.contains(&rel.as_str());
        assert_eq!(
            p.exists(),
            !expect_gone,
            "{rel} (scenario {})",
            w["scenario"]
        );
        if w["locked"] == true || !w["uncommitted"].as_array().unwrap().is_empty() {
            assert!(p.exists(), "locked or dirty worktree {rel} kept");
        }
    }

    for (i, r) in repos.iter().enumerate() {
        // git's bookkeeping: no entry whose directory is gone.
        let list = git(r, &["worktree", "list", "--porcelain"]);
        assert!(!list.contains("prunable"), "{}: {list}", r.display());
        // No unmerged commit became unreachable: a deleted branch's tip is on a remaining branch.
        let after = branch_tips(r);
        for (b, tip) in &tips_before[i] {
            if !after.contains_key(b) {
                let holders = git(
                    r,
                    &[
                        "for-each-ref",
                        "--contains",
                        tip,
                        "--format=%(refname:short)",
                        "refs/heads/",
                    ],
                );
                assert!(
                    !holders.trim().is_empty(),
                    "{b} deleted but {tip} is on no branch"
                );
            }
        }
        // Branches with commits not in main whose worktree went are kept.
        assert_eq!(
            git(r, &["status", "--porcelain"]),
            main_status[i],
            "main worktree untouched"
        );
    }
    assert!(
        branch_tips(&repos[0]).contains_key("prodigy-workflow-1795238090439"),
        "a3's unmerged branch kept"
    );
    assert!(
        branch_tips(&repos[2]).contains_key("prodigy-session-7f8c288b-aa4b-4dce-ba8a-65b0e0337e8d"),
        "c2's unmerged branch kept"
    );

    // A second run converges: nothing left to remove.
    let (o, again) = corpus_run(&[
        "clean",
        "--all-repos",
        "--older-than",
        "0s",
        "--force",
        "--json",
    ]);
    assert_eq!(o.code, 0, "{o:?}");
    assert_eq!(again["removed"].as_array().unwrap().len(), 0, "{again}");

    // Leave a pristine copy for the next reader.
    extract_corpus();
}

#[test]
fn worktree_ls_on_the_real_tree_matches_its_ground_truth() {
    let _g = CORPUS_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    if !have("faketime", "worktree_ls_on_the_real_tree") {
        return;
    }
    extract_corpus();
    let gt: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(fixture_0_4_4("ground-truth.json")).unwrap())
            .unwrap();
    age_corpus();
    let (o, v) = corpus_run(&["worktree", "ls", "--all-repos", "--json"]);
    assert_eq!(o.code, 0, "{o:?}");
    let rows = v["worktrees"].as_array().unwrap();
    let gtw = gt["worktrees"].as_array().unwrap();
    assert_eq!(rows.len(), gtw.len(), "{v}");
    for w in gtw {
        let path = w["path"].as_str().unwrap();
        let row = rows
            .iter()
            .find(|r| r["path"] == path)
            .unwrap_or_else(|| panic!("{path} not listed"));
        let flags: Vec<&str> = row["flags"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f.as_str().unwrap())
            .collect();
        let uncommitted = w["uncommitted"].as_array().unwrap();
        let has = |f: &str| flags.contains(&f);
        assert_eq!(has("locked"), w["locked"] == true, "{path} {flags:?}");
        assert_eq!(has("prunable"), w["prunable"] == true, "{path}");
        assert_eq!(
            has("untracked"),
            uncommitted
                .iter()
                .any(|l| l.as_str().unwrap().starts_with("??")),
            "{path}"
        );
        assert_eq!(
            has("uncommitted"),
            uncommitted
                .iter()
                .any(|l| !l.as_str().unwrap().starts_with("??")),
            "{path}"
        );
        assert_eq!(row["repository"], w["repo"], "{path}");
        assert_eq!(row["branch"], w["branch"], "{path}");
        assert_eq!(row["owner"], w["owner_session"], "{path}");
        // Unmerged: no other branch contains the worktree's tip.
        let repo = PathBuf::from(CORPUS)
            .join("repos")
            .join(w["repo"].as_str().unwrap());
        let tip = row["head"].as_str().unwrap();
        let others = git(
            &repo,
            &[
                "for-each-ref",
                "--contains",
                tip,
                "--format=%(refname:short)",
                "refs/heads/",
            ],
        );
        let unmerged = others.lines().all(|b| b == w["branch"].as_str().unwrap());
        assert_eq!(has("unmerged"), unmerged, "{path} {flags:?}");
        if w["commits_not_in_main"] == 0 {
            assert!(!has("unmerged"), "{path}");
        }
    }
    extract_corpus();
}

#[test]
fn worktree_clean_all_force_keeps_the_locked_worktree_and_every_unmerged_branch() {
    let _g = CORPUS_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    if !have("faketime", "worktree_clean_all_force") {
        return;
    }
    extract_corpus();
    age_corpus();
    let repos: Vec<PathBuf> = ["webapp", "api-server", "tools"]
        .iter()
        .map(|r| PathBuf::from(CORPUS).join("repos").join(r))
        .collect();
    let tips_before: Vec<BTreeMap<String, String>> = repos.iter().map(|r| branch_tips(r)).collect();
    let (o, v) = corpus_run(&["worktree", "clean", "--all", "-f", "--all-repos", "--json"]);
    assert_eq!(o.code, 0, "{o:?}");
    let g2 = format!("{CORPUS}/home/.prodigy/worktrees/session-4b70d78f-b726-4924-b554-e104534decff/mapreduce-agent-mapreduce-20261121_051616_agent_0");
    assert!(
        Path::new(&g2).exists(),
        "the git-locked g2 agent worktree is kept"
    );
    assert_eq!(
        kept_reason(&v, "worktrees/session-4b70d78f-b726-4924-b554-e104534decff/mapreduce-agent-mapreduce-20261121_051616_agent_0").as_deref(),
        Some("locked")
    );
    // -f discards uncommitted changes, but never touches resumable or unknown sessions' worktrees.
    assert!(
        Path::new(&format!(
            "{CORPUS}/home/.prodigy/worktrees/webapp/workflow-1795238090597"
        ))
        .exists(),
        "b1 resumable"
    );
    assert!(
        Path::new(&format!(
            "{CORPUS}/home/.prodigy/worktrees/webapp/workflow-1795238098502"
        ))
        .exists(),
        "b3b unknown"
    );
    for (i, r) in repos.iter().enumerate() {
        let after = branch_tips(r);
        for (b, tip) in &tips_before[i] {
            let holders = git(
                r,
                &[
                    "for-each-ref",
                    "--contains",
                    tip,
                    "--format=%(refname:short)",
                    "refs/heads/",
                ],
            );
            assert!(
                !holders.trim().is_empty(),
                "{b}'s commits are still on a branch"
            );
            if !after.contains_key(b) {
                assert!(
                    holders.lines().any(|h| h != b),
                    "{b} was deleted only because another branch has it"
                );
            }
        }
        assert!(!git(r, &["worktree", "list", "--porcelain"]).contains("prunable"));
    }
    extract_corpus();
}

#[test]
fn sessions_ls_on_the_real_tree_classifies_every_session_as_its_readme_says() {
    let _g = CORPUS_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    if !have("faketime", "sessions_ls_on_the_real_tree") {
        return;
    }
    extract_corpus();
    age_corpus();
    let gt: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(fixture_0_4_4("ground-truth.json")).unwrap())
            .unwrap();
    let (o, v) = corpus_run(&["sessions", "ls", "--all-repos", "--json"]);
    assert_eq!(o.code, 0, "{o:?}");
    let class_of = |sid: &str| {
        v["sessions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["id"] == sid)
            .map(|s| s["class"].as_str().unwrap().to_string())
    };
    let expected = [
        ("a1", "completed"),
        ("a2", "completed"),
        ("a3", "completed"),
        ("b1", "resumable"),
        ("b2", "completed"),
        ("b3a", "resumable"),
        ("b3b", "unknown"),
        ("b3c", "unknown"),
        ("b4", "resumable"),
        ("c1", "completed"),
        ("d1", "unknown"),
        ("d2", "stale"),
        ("d3", "resumable"),
        ("e1", "unknown"),
        ("e2", "stale"),
        ("c2", "completed"),
        ("g2", "completed"),
        ("g1", "resumable"),
        ("f", "completed"),
    ];
    for (sc, class) in expected {
        let sid = gt["scenarios"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["scenario"] == sc)
            .unwrap()["session_id"]
            .as_str()
            .unwrap();
        assert_eq!(
            class_of(sid).as_deref(),
            Some(class),
            "scenario {sc} ({sid})"
        );
    }
    assert_eq!(v["sessions"].as_array().unwrap().len(), 19);
    extract_corpus();
}

/// Compare a run's report and the files left with the generator's manifest.
fn check_manifest(manifest: &serde_json::Value, report: &serde_json::Value, on_disk: bool) {
    let removed: std::collections::HashSet<String> = removed_paths(report).into_iter().collect();
    let kept: BTreeMap<String, String> = report["kept"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|e| {
            let r = e["reason"].as_str().unwrap().to_string();
            let mut v = vec![(e["path"].as_str().unwrap().to_string(), r.clone())];
            v.extend(
                e["also"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|a| (a.as_str().unwrap().to_string(), r.clone())),
            );
            v
        })
        .collect();
    let home = PathBuf::from(manifest["prodigy_home"].as_str().unwrap());
    let mut bad = Vec::new();
    for p in manifest["paths"].as_array().unwrap() {
        let path = p["path"].as_str().unwrap();
        let expect = p["expect"].as_str().unwrap();
        let reason = p["reason"].as_str();
        let ok = match (expect, reason) {
            ("removed", _) => removed.contains(path),
            ("kept", Some("too-new")) => !removed.contains(path) && !kept.contains_key(path),
            ("kept", Some("invalid-name")) => kept.keys().any(|k| path.starts_with(k.as_str())),
            ("kept", r) => kept.get(path).map(String::as_str) == r,
            _ => false,
        };
        let disk_ok = !on_disk || (expect == "removed") != home.join(path).exists();
        if !ok || !disk_ok {
            bad.push(format!("{path}: expected {expect} {reason:?}"));
        }
    }
    assert!(
        bad.is_empty(),
        "{} mismatches, first: {:?}",
        bad.len(),
        &bad[..bad.len().min(10)]
    );
}

#[test]
fn generated_tree_of_10000_sessions_is_cleaned_exactly_as_its_manifest_says() {
    if !have("python3", "generated_tree_of_10000_sessions") {
        return;
    }
    let env = Env::new("gen10k");
    let out = env.dir.join("tree");
    gen_tree(
        &out,
        &["--sessions", "10000", "--worktrees", "12", "--quiet"],
    );
    let manifest: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(out.join("manifest.json")).unwrap()).unwrap();
    let run = |args: &[&str]| {
        let o = env
            .cmd(args)
            .env("PRODIGY_HOME", out.join("home/.prodigy"))
            .env("HOME", out.join("home"))
            .output()
            .unwrap();
        let o = Out::from(o);
        let v: serde_json::Value =
            serde_json::from_str(&o.stdout).unwrap_or_else(|_| panic!("{o:?}"));
        (o, v)
    };
    let canaries: Vec<(String, Vec<u8>)> = manifest["canaries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c.as_str().unwrap().to_string(),
                fs::read(c.as_str().unwrap()).unwrap(),
            )
        })
        .collect();
    let (o, dry) = run(&["clean", "--all-repos", "--dry-run", "--json"]);
    assert_eq!(o.code, 0, "{o:?}");
    check_manifest(&manifest, &dry, false);
    let (o, real) = run(&["clean", "--all-repos", "--force", "--json"]);
    assert_eq!(o.code, 0, "{o:?}");
    assert_eq!(
        removed_paths(&dry),
        removed_paths(&real),
        "the dry run predicted the real run"
    );
    assert_eq!(dry["totals"], real["totals"]);
    assert_eq!(dry["branches"], real["branches"]);
    check_manifest(&manifest, &real, true);
    for (path, bytes) in &canaries {
        assert_eq!(
            &fs::read(path).unwrap(),
            bytes,
            "{path} survives byte for byte"
        );
    }
    for b in manifest["branches"].as_array().unwrap() {
        let repo = PathBuf::from(
            manifest["repos"][b["repo"].as_str().unwrap()]
                .as_str()
                .unwrap(),
        );
        let exists = !git(&repo, &["branch", "--list", b["branch"].as_str().unwrap()])
            .trim()
            .is_empty();
        assert_eq!(exists, b["expect"] == "kept", "{b}");
        assert!(!git(&repo, &["worktree", "list", "--porcelain"]).contains("prunable"));
    }
}

/// Every file under `dir` with its size and mtime, and every directory and symlink: a
/// fingerprint that any write, deletion or rename changes.
fn tree_fingerprint(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = fs::read_dir(&d) else { continue };
        for e in rd.flatten() {
            let p = e.path();
            let m = fs::symlink_metadata(&p).unwrap();
            let mtime = m
                .modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map(|d| d.as_nanos())
                .unwrap_or(0);
            out.push(format!("{} {} {mtime}", p.display(), m.len()));
            if m.is_dir() {
                stack.push(p);
            }
        }
    }
    out.sort();
    out
}

#[test]
fn resuming_each_resumable_0_4_4_session_is_refused_clearly_and_changes_nothing() {
    let _g = CORPUS_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    if !have("faketime", "resume_0_4_4") || !have("git", "resume_0_4_4") {
        return;
    }
    extract_corpus();
    age_corpus();
    let (o, v) = corpus_run(&["sessions", "ls", "--all-repos", "--json"]);
    assert_eq!(o.code, 0, "{o:?}");
    let ids: Vec<String> = v["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["class"] == "resumable")
        .map(|s| s["id"].as_str().unwrap().to_string())
        .collect();
    assert!(!ids.is_empty(), "the fixture has resumable sessions");
    for s in v["sessions"].as_array().unwrap() {
        if s["class"] == "resumable" {
            assert!(
                s["resume"].as_str().unwrap().contains("Prodigy 0.4.4"),
                "{s}"
            );
        }
    }
    let before = tree_fingerprint(Path::new(CORPUS));
    for id in &ids {
        let (o, _) = corpus_run(&["resume", id, "-y"]);
        assert_eq!(o.code, 3, "{id}: {o:?}");
        assert_eq!(o.stdout, "", "{id}");
        assert_eq!(o.stderr.lines().count(), 1, "{id}: {o:?}");
        assert!(
            o.stderr.contains("written by Prodigy 0.4.4")
                && o.stderr.contains(&format!("prodigy sessions show {id}")),
            "{id}: {o:?}"
        );
    }
    assert_eq!(
        before,
        tree_fingerprint(Path::new(CORPUS)),
        "a refused resume changed the tree or a checkout"
    );
}
