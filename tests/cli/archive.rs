//! `clean --archive DIR` and `archive ls|restore` (issue 26): what clean removes is first in a
//! complete archive; a restore puts it back byte-identical with its mtimes; nothing active or
//! resumable is archived-and-removed; a kill at any step loses nothing; hostile archives are
//! refused and write nothing.

use super::common::*;
use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

/// A session record `days` old with `status`, `metadata` and `checkpoints` text, mapped to
/// `job` in `webapp`, with an events, a logs, a dlq and a state job directory, all as old.
fn job(env: &Env, id: &str, status: &str, md: &str, cps: &str, job: &str, days: u64) {
    let p = env.write(
        &format!("sessions/{id}.json"),
        &body(id, status, &rfc3339_ago(days * DAY), md, cps),
    );
    age(&p, days * DAY);
    mapping(env, "webapp", id, job, days);
    let mut ev = String::new();
    for i in 0..50 {
        ev.push_str(&format!(
            "{{\"timestamp\":\"2025-01-01T00:00:{:02}Z\",\"event_type\":\"AgentStarted\",\"job_id\":\"{job}\",\"agent_id\":\"agent-{i}\",\"item_id\":\"item-{i}\"}}\n",
            i % 60
        ));
    }
    env.write(
        &format!("events/webapp/{job}/events-20250101000000.jsonl"),
        &ev,
    );
    env.write(
        &format!("logs/webapp/{job}/steps.log"),
        &"out\n".repeat(300),
    );
    env.write(&format!("dlq/webapp/{job}/dlq-items.json"), "[]");
    env.write(
        &format!("state/webapp/mapreduce/jobs/{job}/job-state.json"),
        &format!(r#"{{"job_id":"{job}"}}"#),
    );
    for d in ["events", "logs", "dlq"] {
        age_tree(&env.p(&format!("{d}/webapp/{job}")), days * DAY);
    }
    age_tree(
        &env.p(&format!("state/webapp/mapreduce/jobs/{job}")),
        days * DAY,
    );
}

/// Every regular file under `base` (relative path → bytes and mtime seconds), and every
/// directory at or below `under` with its mtime.
fn files(base: &Path) -> BTreeMap<String, (Vec<u8>, u64)> {
    let mut out = BTreeMap::new();
    fn go(base: &Path, p: &Path, out: &mut BTreeMap<String, (Vec<u8>, u64)>) {
        let Ok(rd) = fs::read_dir(p) else { return };
        for e in rd.flatten() {
            let path = e.path();
            let rel = path
                .strip_prefix(base)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            let m = fs::symlink_metadata(&path).unwrap();
            let t = m
                .modified()
                .unwrap()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_secs();
            if m.is_dir() {
                out.insert(format!("{rel}/"), (Vec::new(), t));
                go(base, &path, out);
            } else {
                out.insert(rel, (fs::read(&path).unwrap(), t));
            }
        }
    }
    go(base, base, &mut out);
    out
}

/// The archives in `dir` (not temp files).
fn archives(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir)
        .map(|rd| rd.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    v.retain(|p| !p.file_name().unwrap().to_string_lossy().starts_with('.'));
    v.sort();
    v
}

/// The item paths of archive `a`, through `archive ls --json` (which checks it whole).
fn listed(env: &Env, a: &Path) -> Vec<String> {
    let (o, v) = env.json(&["archive", "ls", "--json", a.to_str().unwrap()]);
    assert_eq!(o.code, 0, "{o:?}");
    v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["path"].as_str().unwrap().to_string())
        .collect()
}

/// [`listed`] and every item's `also` paths.
fn listed_all(env: &Env, a: &Path) -> Vec<String> {
    let (o, v) = env.json(&["archive", "ls", "--json", a.to_str().unwrap()]);
    assert_eq!(o.code, 0, "{o:?}");
    let mut out = Vec::new();
    for i in v["items"].as_array().unwrap() {
        out.push(i["path"].as_str().unwrap().to_string());
        for x in i["also"].as_array().unwrap() {
            out.push(x.as_str().unwrap().to_string());
        }
    }
    out
}

#[test]
fn archive_then_restore_into_an_empty_root_gives_back_the_same_bytes_mtimes_and_views() {
    let env = Env::new("arch-rt");
    job(
        &env,
        "s-1",
        "Completed",
        r#"{"x":1}"#,
        "[]",
        "mapreduce-1",
        40,
    );
    job(
        &env,
        "s-2",
        "Cancelled",
        r#"{"x":1}"#,
        "[]",
        "mapreduce-2",
        45,
    );
    let archive_dir = env.dir.join("archives");
    let before = files(&env.root);
    let ls = env.run(&["sessions", "ls", "--all-repos"]);
    let show = env.run(&["events", "show", "mapreduce-1"]);
    assert_eq!(ls.code, 0, "{ls:?}");
    assert!(show.stdout.lines().count() >= 50, "{show:?}");

    let (o, v) = env.json(&[
        "clean",
        "--all-repos",
        "--force",
        "--json",
        "--archive",
        archive_dir.to_str().unwrap(),
    ]);
    assert_eq!(o.code, 0, "{o:?}");
    let path = PathBuf::from(v["archive"]["path"].as_str().unwrap());
    assert_eq!(archives(&archive_dir), vec![path.clone()]);
    let name = path.file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        name.starts_with("prodigy-") && name.ends_with(".tar.gz") && name.len() == 30,
        "{name}"
    );
    assert_eq!(v["archive"]["items"], 10, "{v}");
    assert_eq!(v["removed"].as_array().unwrap().len(), 10, "{v}");
    assert!(!env.exists("sessions/s-1.json") && !env.exists("events/webapp/mapreduce-1"));
    // The archive is private and holds no temp file beside it.
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let mut items = listed_all(&env, &path);
    items.sort();
    let mut want: Vec<String> = removed_paths(&v);
    want.sort();
    assert_eq!(items, want);

    // Restore into an empty root.
    fs::remove_dir_all(&env.root).unwrap();
    fs::create_dir_all(&env.root).unwrap();
    let o = env.run(&["archive", "restore", path.to_str().unwrap()]);
    assert_eq!(o.code, 0, "{o:?}");
    assert!(o.stdout.starts_with("Restored 10 items from `"), "{o:?}");
    let after = files(&env.root);
    for (rel, (bytes, t)) in &before {
        // Directories above the items (events/, events/webapp/) are made anew.
        if rel.ends_with('/') && rel.matches('/').count() <= 2 && !rel.contains("mapreduce-") {
            continue;
        }
        if rel.ends_with("mapreduce/") || rel.ends_with("jobs/") || rel.ends_with("mappings/") {
            continue;
        }
        let got = after
            .get(rel)
            .unwrap_or_else(|| panic!("{rel} not restored"));
        assert_eq!(&got.0, bytes, "{rel}");
        assert_eq!(got.1, *t, "mtime of {rel}");
    }
    assert_eq!(
        env.run(&["sessions", "ls", "--all-repos"]).stdout,
        ls.stdout
    );
    assert_eq!(
        env.run(&["events", "show", "mapreduce-1"]).stdout,
        show.stdout
    );
    // Restoring again would overwrite: refused, nothing changed.
    let o = env.run(&["archive", "restore", path.to_str().unwrap()]);
    assert_eq!(o.code, 3, "{o:?}");
    assert!(
        o.stderr.contains("exists; restore never overwrites"),
        "{o:?}"
    );
    assert_eq!(files(&env.root), after);
}

#[test]
fn restore_only_selects_by_session_job_or_path_and_an_unknown_id_is_a_usage_error() {
    let env = Env::new("arch-only");
    job(
        &env,
        "s-1",
        "Completed",
        r#"{"x":1}"#,
        "[]",
        "mapreduce-1",
        40,
    );
    job(
        &env,
        "s-2",
        "Completed",
        r#"{"x":1}"#,
        "[]",
        "mapreduce-2",
        40,
    );
    let dir = env.dir.join("a");
    let (o, v) = env.json(&[
        "clean",
        "--all-repos",
        "--force",
        "--json",
        "--archive",
        dir.to_str().unwrap(),
    ]);
    assert_eq!(o.code, 0, "{o:?}");
    let a = v["archive"]["path"].as_str().unwrap().to_string();
    let o = env.run(&["archive", "restore", &a, "--only", "nope"]);
    assert_eq!(o.code, 2, "{o:?}");
    assert!(o.stderr.contains("no item matches `nope`"), "{o:?}");
    let o = env.run(&[
        "archive",
        "restore",
        &a,
        "--only",
        "mapreduce-2",
        "--dry-run",
    ]);
    assert_eq!(o.code, 0, "{o:?}");
    assert!(o.stdout.starts_with("Would restore 4 items"), "{o:?}");
    assert!(!env.exists("events/webapp/mapreduce-2"));
    let o = env.run(&[
        "archive",
        "restore",
        &a,
        "--only",
        "s-1",
        "--only",
        "events/webapp/mapreduce-2",
    ]);
    assert_eq!(o.code, 0, "{o:?}");
    // s-1's session record, mappings and four job directories; mapreduce-2's events.
    assert!(env.exists("sessions/s-1.json") && env.exists("state/webapp/mappings/s-1.json"));
    assert!(env.exists("dlq/webapp/mapreduce-1/dlq-items.json"));
    assert!(env.exists("events/webapp/mapreduce-2/events-20250101000000.jsonl"));
    assert!(!env.exists("sessions/s-2.json") && !env.exists("dlq/webapp/mapreduce-2"));
}

#[test]
fn dry_run_names_the_archive_it_would_write_and_writes_nothing() {
    let env = Env::new("arch-dry");
    job(
        &env,
        "s-1",
        "Completed",
        r#"{"x":1}"#,
        "[]",
        "mapreduce-1",
        40,
    );
    let dir = env.dir.join("a");
    let before = env.snapshot();
    let o = env.run(&[
        "clean",
        "--all-repos",
        "--dry-run",
        "--archive",
        dir.to_str().unwrap(),
    ]);
    assert_eq!(o.code, 0, "{o:?}");
    assert!(
        o.stdout.contains("Would archive 5 items (7 files, "),
        "{o:?}"
    );
    assert!(
        o.stdout
            .contains(&format!("to `{}/prodigy-", dir.display())),
        "{o:?}"
    );
    let (o, v) = env.json(&[
        "clean",
        "--all-repos",
        "--dry-run",
        "--json",
        "--archive",
        dir.to_str().unwrap(),
    ]);
    assert_eq!(o.code, 0, "{o:?}");
    assert_eq!(v["archive"]["items"], 5);
    assert!(!dir.exists());
    assert_eq!(env.snapshot(), before);
    // Without --archive the document says null.
    let (_, v) = env.json(&["clean", "--all-repos", "--dry-run", "--json"]);
    assert!(v["archive"].is_null());
}

#[test]
fn clean_conf_archive_is_used_and_must_be_absolute() {
    let env = Env::new("arch-conf");
    job(
        &env,
        "s-1",
        "Completed",
        r#"{"x":1}"#,
        "[]",
        "mapreduce-1",
        40,
    );
    env.write("clean.conf", "archive = relative/dir\n");
    let o = env.run(&["clean", "--all-repos", "--force"]);
    assert_eq!(o.code, 2, "{o:?}");
    assert!(o.stderr.contains("is not an absolute path"), "{o:?}");
    assert!(env.exists("sessions/s-1.json"));
    let dir = env.dir.join("conf-archives");
    env.write("clean.conf", &format!("archive = {}\n", dir.display()));
    let o = env.run(&["clean", "--all-repos", "--force"]);
    assert_eq!(o.code, 0, "{o:?}");
    assert_eq!(archives(&dir).len(), 1);
    assert!(!env.exists("sessions/s-1.json"));
}

/// A symlink (to a file outside the root) inside an item: the archive refuses it, so the item
/// is kept and the exit status says so; the other items go; the archive holds nothing from
/// outside the root.
#[test]
fn an_item_that_cannot_be_archived_is_kept_and_reported() {
    let env = Env::new("arch-link");
    job(
        &env,
        "s-1",
        "Completed",
        r#"{"x":1}"#,
        "[]",
        "mapreduce-1",
        40,
    );
    let link = env.p("logs/webapp/mapreduce-1/evil");
    std::os::unix::fs::symlink(env.outside.join("canary.txt"), &link).unwrap();
    // The link's own mtime (touch -h), so the item is old enough to go.
    let t = std::time::SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        - 40 * DAY;
    let st = std::process::Command::new("touch")
        .args(["-h", "-d", &format!("@{t}")])
        .arg(&link)
        .status()
        .unwrap();
    assert!(st.success());
    age(&env.p("logs/webapp/mapreduce-1"), 40 * DAY);
    let dir = env.dir.join("a");
    let (o, v) = env.json(&[
        "clean",
        "--all-repos",
        "--force",
        "--json",
        "--archive",
        dir.to_str().unwrap(),
    ]);
    assert_eq!(o.code, 1, "{o:?}");
    assert!(
        o.stderr.contains("logs/webapp/mapreduce-1: cannot archive: `logs/webapp/mapreduce-1/evil` is a symlink; not followed; kept"),
        "{o:?}"
    );
    assert!(env.exists("logs/webapp/mapreduce-1/steps.log"));
    assert!(!env.exists("events/webapp/mapreduce-1"));
    assert_eq!(
        kept_reason(&v, "logs/webapp/mapreduce-1").as_deref(),
        Some("failed")
    );
    let a = PathBuf::from(v["archive"]["path"].as_str().unwrap());
    assert!(!listed(&env, &a).contains(&"logs/webapp/mapreduce-1".to_string()));
    let raw = {
        let mut s = Vec::new();
        std::io::Read::read_to_end(
            &mut prodigy::store::gz::decoder(fs::File::open(&a).unwrap()),
            &mut s,
        )
        .unwrap();
        s
    };
    assert!(!raw.windows(6).any(|w| w == b"canary"));
    assert_eq!(fs::read(env.outside.join("canary.txt")).unwrap(), b"canary");
}

/// An archive directory that cannot be written: nothing it would hold is removed (worktrees
/// are not archived, so they would still go).
#[test]
fn an_archive_that_cannot_be_written_removes_nothing() {
    let env = Env::new("arch-nodir");
    job(
        &env,
        "s-1",
        "Completed",
        r#"{"x":1}"#,
        "[]",
        "mapreduce-1",
        40,
    );
    let file = env.dir.join("not-a-dir");
    fs::write(&file, "x").unwrap();
    let before = env.snapshot();
    let o = env.run(&[
        "clean",
        "--all-repos",
        "--force",
        "--archive",
        file.to_str().unwrap(),
    ]);
    assert_eq!(o.code, 1, "{o:?}");
    assert!(
        o.stderr.contains("nothing it would hold was removed"),
        "{o:?}"
    );
    let mut after = env.snapshot();
    after.retain(|p| p != "resume_locks");
    assert_eq!(after, before);
}

#[test]
fn active_and_resumable_sessions_are_neither_archived_nor_removed() {
    let env = Env::new("arch-protect");
    let me = std::process::id();
    let host = fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default();
    job(
        &env,
        "s-done",
        "Completed",
        r#"{"x":1}"#,
        "[]",
        "mapreduce-1",
        40,
    );
    job(
        &env,
        "s-live",
        "Running",
        &format!(
            r#"{{"owner":{{"pid":{me},"hostname":"{host}","heartbeat_at":"{}"}}}}"#,
            rfc3339_ago(40 * DAY)
        ),
        "[]",
        "mapreduce-2",
        40,
    );
    job(
        &env,
        "s-res",
        "Failed",
        r#"{"x":1}"#,
        r#"[{"n":1}]"#,
        "mapreduce-3",
        40,
    );
    let dir = env.dir.join("a");
    let (o, v) = env.json(&[
        "clean",
        "--all-repos",
        "--force",
        "--json",
        "--archive",
        dir.to_str().unwrap(),
    ]);
    assert_eq!(o.code, 0, "{o:?}");
    let a = PathBuf::from(v["archive"]["path"].as_str().unwrap());
    let items = listed(&env, &a);
    assert_eq!(items.len(), 5, "{items:?}");
    for it in &items {
        assert!(it.contains("mapreduce-1") || it.contains("s-done"), "{it}");
    }
    for keep in ["s-live", "s-res"] {
        assert!(env.exists(&format!("sessions/{keep}.json")));
    }
    for keep in ["mapreduce-2", "mapreduce-3"] {
        assert!(env.exists(&format!("events/webapp/{keep}/events-20250101000000.jsonl")));
        assert!(env.exists(&format!(
            "state/webapp/mapreduce/jobs/{keep}/job-state.json"
        )));
    }
}

// ---------------------------------------------------------------- hostile archives

/// A ustar header, `typeflag` and `link` as given, checksum right.
fn hdr(path: &str, typeflag: u8, size: u64, link: &str) -> Vec<u8> {
    let mut b = vec![0u8; 512];
    b[..path.len()].copy_from_slice(path.as_bytes());
    b[100..108].copy_from_slice(b"0000644\0");
    b[108..116].copy_from_slice(b"0000000\0");
    b[116..124].copy_from_slice(b"0000000\0");
    b[124..136].copy_from_slice(format!("{size:011o}\0").as_bytes());
    b[136..148].copy_from_slice(b"14000000000\0");
    b[156] = typeflag;
    b[157..157 + link.len()].copy_from_slice(link.as_bytes());
    b[257..263].copy_from_slice(b"ustar\0");
    b[263..265].copy_from_slice(b"00");
    b[148..156].fill(b' ');
    let sum: u32 = b.iter().map(|&c| u32::from(c)).sum();
    b[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    b
}

fn entry(path: &str, typeflag: u8, data: &[u8], link: &str) -> Vec<u8> {
    let mut v = hdr(path, typeflag, data.len() as u64, link);
    v.extend_from_slice(data);
    v.resize(v.len().div_ceil(512) * 512, 0);
    v
}

/// A manifest of one item at `path` with `files` files of `bytes` bytes.
fn manifest(path: &str, files: u64, bytes: u64) -> Vec<u8> {
    let m = serde_json::json!({
        "format": "prodigy-archive", "version": 1, "created": "2026-12-07T00:00:00Z",
        "items": [{"type": "events", "repository": "webapp", "session": "s-1", "job": "job-1",
                   "path": path, "also": [], "files": files, "bytes": bytes, "reason": "test"}],
    });
    let j = serde_json::to_vec(&m).unwrap();
    entry("prodigy-manifest.json", b'0', &j, "")
}

fn gz(tar: &[u8]) -> Vec<u8> {
    let mut t = tar.to_vec();
    t.extend_from_slice(&[0u8; 1024]);
    prodigy::store::gz::gzip(&t)
}

#[test]
fn hostile_archives_are_refused_naming_the_entry_and_write_nothing() {
    let env = Env::new("arch-hostile");
    let outside = env.outside.display().to_string();
    let item = "events/webapp/job-1";
    let ok_file = entry(&format!("{item}/events-1.jsonl"), b'0', b"{}\n", "");
    let dir = entry(&format!("{item}/"), b'5', b"", "");
    let valid = [dir.clone(), ok_file.clone(), manifest(item, 1, 3)].concat();
    let cases: Vec<(&str, Vec<u8>, String)> = vec![
        (
            "traversal",
            gz(&[
                dir.clone(),
                entry(&format!("{item}/../../../../outside/evil"), b'0', b"x", ""),
                manifest(item, 1, 1),
            ]
            .concat()),
            "entry `events/webapp/job-1/../../../../outside/evil`: path".into(),
        ),
        (
            "absolute",
            gz(&[
                entry(&format!("{outside}/evil"), b'0', b"x", ""),
                manifest(item, 1, 1),
            ]
            .concat()),
            format!("entry `{outside}/evil`: path"),
        ),
        (
            "symlink",
            gz(&[
                dir.clone(),
                entry(&format!("{item}/l"), b'2', b"", "/etc/passwd"),
                manifest(item, 0, 0),
            ]
            .concat()),
            format!("after entry `{item}`: symlink entry refused"),
        ),
        (
            "hardlink",
            gz(&[
                dir.clone(),
                entry(&format!("{item}/h"), b'1', b"", "/etc/passwd"),
                manifest(item, 0, 0),
            ]
            .concat()),
            format!("after entry `{item}`: hard link entry refused"),
        ),
        (
            "device",
            gz(&[
                dir.clone(),
                entry(&format!("{item}/d"), b'3', b"", ""),
                manifest(item, 0, 0),
            ]
            .concat()),
            format!("after entry `{item}`: device entry refused"),
        ),
        (
            "truncated-gzip",
            {
                let g = gz(&valid);
                g[..g.len() - 20].to_vec()
            },
            "corrupt or truncated gzip data".into(),
        ),
        (
            "larger-than-declared",
            gz(&[
                dir.clone(),
                entry(&format!("{item}/events-1.jsonl"), b'0', &[b'x'; 4000], ""),
                manifest(item, 1, 3),
            ]
            .concat()),
            format!("manifest item `{item}` declares 1 files, 3 bytes; the entries hold 1, 4000"),
        ),
        (
            "size-beyond-the-data",
            gz(&[
                dir.clone(),
                hdr(&format!("{item}/events-1.jsonl"), b'0', 1 << 20, ""),
            ]
            .concat()),
            "truncated archive".into(),
        ),
        (
            "not-in-the-manifest",
            gz(&[
                dir.clone(),
                ok_file.clone(),
                entry("events/webapp/job-2/x", b'0', b"y", ""),
                manifest(item, 1, 3),
            ]
            .concat()),
            "entry `events/webapp/job-2/x`: is in no item of the manifest".into(),
        ),
        (
            "duplicate",
            gz(&[
                dir.clone(),
                ok_file.clone(),
                ok_file.clone(),
                manifest(item, 2, 6),
            ]
            .concat()),
            format!("entry `{item}/events-1.jsonl`: appears twice"),
        ),
        (
            "no-manifest",
            gz(&[dir.clone(), ok_file.clone()].concat()),
            "no manifest: the archive is incomplete".into(),
        ),
        (
            "outside-the-layout",
            gz(&[
                entry("worktrees/webapp/s-1/x", b'0', b"y", ""),
                manifest(item, 1, 3),
            ]
            .concat()),
            "entry `worktrees/webapp/s-1/x`: path `worktrees/webapp/s-1/x` refused: not under"
                .into(),
        ),
    ];
    // The valid archive restores (the crafted bytes are right when nothing is wrong).
    let good = env.dir.join("good.tar.gz");
    fs::write(&good, gz(&valid)).unwrap();
    let o = env.run(&["archive", "ls", good.to_str().unwrap()]);
    assert_eq!(o.code, 0, "{o:?}");
    let before_out = files(&env.outside);
    for (name, bytes, want) in cases {
        let f = env.dir.join(format!("{name}.tar.gz"));
        fs::File::create(&f).unwrap().write_all(&bytes).unwrap();
        let before = env.snapshot();
        for args in [vec!["archive", "restore"], vec!["archive", "ls"]] {
            let mut args = args.clone();
            args.push(f.to_str().unwrap());
            let o = env.run(&args);
            assert_eq!(o.code, 3, "{name} {args:?}: {o:?}");
            assert!(
                o.stderr.starts_with(&format!(
                    "prodigy: {} {}: `{}`: ",
                    args[0],
                    args[1],
                    f.display()
                )),
                "{name}: {o:?}"
            );
            assert!(o.stderr.contains(&want), "{name}: want {want:?}: {o:?}");
            assert_eq!(o.stderr.lines().count(), 1, "{name}: {o:?}");
            assert!(o.stdout.is_empty(), "{name}: {o:?}");
        }
        assert_eq!(env.snapshot(), before, "{name}");
        assert_eq!(files(&env.outside), before_out, "{name}");
    }
    let o = env.run(&["archive", "restore", good.to_str().unwrap()]);
    assert_eq!(o.code, 0, "{o:?}");
    assert_eq!(
        fs::read(env.p(&format!("{item}/events-1.jsonl"))).unwrap(),
        b"{}\n"
    );
}

// ---------------------------------------------------------------- crash safety

/// Kill `clean --archive --force` with SIGKILL at the Nth call of each syscall that orders the
/// archiving and the removals (strace's fault injection): after every kill each item is either
/// in place, whole, or in a complete archive, and a rerun finishes (everything removed, all of
/// it in an archive).
#[test]
fn a_kill_at_every_step_of_archiving_loses_no_item() {
    if !have("strace", "a_kill_at_every_step_of_archiving_loses_no_item") {
        return;
    }
    let mut points: Vec<(&str, u32)> = Vec::new();
    for n in 1..=6 {
        points.push(("fsync", n));
        points.push(("renameat2", n));
        points.push(("unlinkat", n));
    }
    for n in [20, 40, 60, 80] {
        points.push(("openat", n));
    }
    let mut killed = 0;
    for (sys, n) in points {
        let env = Env::new("arch-crash");
        job(
            &env,
            "s-1",
            "Completed",
            r#"{"x":1}"#,
            "[]",
            "mapreduce-1",
            40,
        );
        job(
            &env,
            "s-2",
            "Completed",
            r#"{"x":1}"#,
            "[]",
            "mapreduce-2",
            40,
        );
        let original = files(&env.root);
        let items: Vec<String> = [
            "sessions/s-1.json",
            "sessions/s-2.json",
            "state/webapp/mappings/mapreduce-1.json",
            "state/webapp/mappings/mapreduce-2.json",
        ]
        .into_iter()
        .map(String::from)
        .chain(
            ["events", "logs", "dlq"]
                .iter()
                .flat_map(|d| ["mapreduce-1", "mapreduce-2"].map(|j| format!("{d}/webapp/{j}"))),
        )
        .chain(["mapreduce-1", "mapreduce-2"].map(|j| format!("state/webapp/mapreduce/jobs/{j}")))
        .collect();
        let dir = env.dir.join("a");
        let args = [
            "clean",
            "--all-repos",
            "--force",
            "--archive",
            dir.to_str().unwrap(),
        ];
        let inject = format!("inject={sys}:signal=SIGKILL:when={n}");
        let o = Out::from(
            cmd_via(
                &env,
                "strace",
                &["-qq", "-f", "-o", "/dev/null", "-e", &inject],
                &args,
            )
            .output()
            .unwrap(),
        );
        if o.code != 0 {
            killed += 1;
        }
        let check = |when: &str| {
            let mut archived: Vec<String> = Vec::new();
            for a in archives(&dir) {
                archived.extend(listed_all(&env, &a));
            }
            let now = files(&env.root);
            for it in &items {
                let whole = original
                    .iter()
                    .filter(|(k, _)| *k == it || k.starts_with(&format!("{it}/")))
                    .all(|(k, v)| now.get(k) == Some(v));
                assert!(
                    whole || archived.contains(it),
                    "{when} ({sys} #{n}): {it} neither whole in place nor archived"
                );
            }
            archived
        };
        check("after the kill");
        let o = env.run(&args);
        assert!(o.code == 0, "rerun after {sys} #{n}: {o:?}");
        let archived = check("after the rerun");
        for it in &items {
            assert!(!env.exists(it), "after the rerun ({sys} #{n}): {it} left");
            assert!(
                archived.contains(it),
                "after the rerun ({sys} #{n}): {it} not archived"
            );
        }
    }
    assert!(killed >= 15, "only {killed} runs were killed");
}
