//! Retention policies (`$PRODIGY_HOME/clean.conf`, `--older-than`, `--retention`), the quota
//! (`max-size`, `--max-size`) and the scheduled clean (`scripts/systemd/`).

use super::acceptance::{mr_session, session_files};
use super::common::*;
use std::fs;

const MIB: u64 = 1 << 20;

/// One unowned item of each of three types: events 5 days old, logs 5 days, dlq 40 days.
fn three_items(env: &Env) {
    env.old_file("events/web/job-a/events-20250101120000.jsonl", 5);
    env.old_file("logs/web/run-1.log", 5);
    env.old_file("dlq/web/job-b/dlq-items.json", 40);
    age_tree(&env.p("events/web/job-a"), 5 * DAY);
    age_tree(&env.p("dlq/web/job-b"), 40 * DAY);
}

fn dry(env: &Env, extra: &[&str]) -> Vec<String> {
    let mut args = vec!["clean", "--all-repos", "--dry-run", "--json"];
    args.extend_from_slice(extra);
    let (o, v) = env.json(&args);
    assert_eq!(o.code, 0, "{o:?}");
    let mut r = removed_paths(&v);
    r.sort();
    r
}

#[test]
fn retention_per_type_comes_from_the_file_and_flags_win() {
    let env = Env::new("retention");
    three_items(&env);
    let (ev, logs, dlq) = (
        "events/web/job-a".to_string(),
        "logs/web/run-1.log".to_string(),
        "dlq/web/job-b".to_string(),
    );
    // Spec 135 defaults: only the 40-day-old DLQ has expired.
    assert_eq!(dry(&env, &[]), vec![dlq.clone()]);
    env.write(
        "clean.conf",
        "# retention of this root\nevents = 2d\n\ndlq = 60d   \nmax-size = 1T\n",
    );
    assert_eq!(dry(&env, &[]), vec![ev.clone()]);
    let (_, v) = env.json(&["clean", "--all-repos", "--dry-run", "--json"]);
    assert_eq!(v["retention_seconds"]["events"], 2 * DAY);
    assert_eq!(v["retention_seconds"]["dlq"], 60 * DAY);
    assert_eq!(v["retention_seconds"]["logs"], 7 * DAY);
    assert_eq!(v["max_size_bytes"], 1u64 << 40);
    assert_eq!(v["quota"]["met"], true, "{v}");
    // --older-than wins over the file for every type ...
    assert_eq!(
        dry(&env, &["--older-than", "3d"]),
        vec![dlq.clone(), ev.clone(), logs.clone()]
    );
    // ... and --retention wins over both, for its type only.
    assert_eq!(
        dry(&env, &["--older-than", "3d", "--retention", "logs=10d"]),
        vec![dlq.clone(), ev.clone()]
    );
    assert_eq!(
        dry(
            &env,
            &["--retention", "events=10d", "--retention", "dlq=30d"]
        ),
        vec![dlq.clone()]
    );
    // The real run removes what the dry run listed.
    let (o, v) = env.json(&["clean", "--all-repos", "--force", "--json"]);
    assert_eq!(o.code, 0, "{o:?}");
    assert_eq!(removed_paths(&v), vec![ev]);
    // (Under `PRODIGY_IT_COMPRESS_AFTER` the kept log file is compressed in place.)
    assert!(exists_or_gz(&env.p(&logs)) && env.exists(&dlq));
}

/// A MapReduce session of `days` whose events file holds `mib` MiB.
fn big_session(env: &Env, n: &str, status: &str, days: u64, mib: usize, checkpoint: bool) {
    mr_session(
        env,
        "web",
        &format!("s-{n}"),
        &format!("job-{n}"),
        status,
        days,
        checkpoint,
    );
    env.write(
        &format!("events/web/job-{n}/events-20250102120000.jsonl"),
        &"{\"x\":1}\n".repeat(mib * (MIB as usize) / 8),
    );
    // Every item of the session one age, to the second: the quota takes the oldest first, and
    // items of one age in the order they were found, events first (CI failed once when a second
    // boundary fell between mr_session's ages and the events file's: a's events were then its
    // youngest item, and its small items went before them).
    let when = ago(days * DAY);
    for rel in session_paths(n) {
        age_tree_at(&env.p(&rel), when);
    }
}

/// The paths of `big_session(n)`: session `s-{n}`, job `job-{n}` in repository `web`.
fn session_paths(n: &str) -> Vec<String> {
    session_files("web", &format!("s-{n}"), &format!("job-{n}"))
}

#[test]
fn quota_removes_unprotected_items_younger_than_their_retention_oldest_first() {
    let env = Env::new("quota-met");
    // Completed sessions of 3, 5 and 1 day: none has expired (events keep 14 days).
    big_session(&env, "a", "Completed", 3, 1, false);
    big_session(&env, "b", "Completed", 5, 1, false);
    big_session(&env, "c", "Completed", 1, 1, false);
    assert!(dry(&env, &[]).is_empty());
    // 1.5 MiB: the oldest session goes whole, then the next oldest item (a's events) is enough.
    let (o, d) = env.json(&[
        "clean",
        "--all-repos",
        "--max-size",
        "1536K",
        "--dry-run",
        "--json",
    ]);
    assert_eq!(o.code, 0, "{o:?}");
    let q = &d["quota"];
    assert_eq!(q["met"], true, "{q}");
    assert_eq!(q["max_bytes"], 1536 * 1024);
    assert!(q["before_bytes"].as_u64().unwrap() > 3 * MIB, "{q}");
    assert!(q["after_bytes"].as_u64().unwrap() <= 1536 * 1024, "{q}");
    assert_eq!(q["shortfall_bytes"], 0);
    assert_eq!(q["blocked_by"].as_array().unwrap().len(), 0);
    let mut want = session_paths("b");
    want.push("events/web/job-a".into());
    want.sort();
    let mut got = removed_paths(&d);
    got.sort();
    assert_eq!(got, want);
    assert!(d["removed"][0]["detail"]
        .as_str()
        .unwrap()
        .contains("over the quota"));
    // The same from the file, for real: what the dry run listed goes, the rest stays.
    env.write("clean.conf", "max-size = 1536K\n");
    let (o, v) = env.json(&["clean", "--all-repos", "--force", "--json"]);
    assert_eq!(o.code, 0, "{o:?}");
    let mut real = removed_paths(&v);
    real.sort();
    assert_eq!(real, want);
    assert_eq!(v["quota"]["met"], true);
    for p in &want {
        assert!(!env.exists(p), "{p}");
    }
    for p in session_paths("c")
        .iter()
        .chain(&session_paths("a")[..1])
        .chain(&session_paths("a")[2..])
    {
        assert!(env.exists(p), "{p}");
    }
    let audit = fs::read_to_string(env.p("clean-audit.jsonl")).unwrap();
    assert!(audit.contains("over the quota"), "{audit}");
    // Met now: another run removes nothing and, quiet, says nothing.
    let o = env.run(&["clean", "--force", "--quiet"]);
    assert_eq!((o.code, o.stdout.as_str(), o.stderr.as_str()), (0, "", ""));
}

#[test]
fn quota_blocked_by_a_resumable_session_keeps_it_and_reports_the_shortfall() {
    let env = Env::new("quota-blocked");
    // A failed session with a checkpoint is resumable: 2 MiB the quota cannot take.
    big_session(&env, "res", "Failed", 2, 2, true);
    big_session(&env, "done", "Completed", 1, 1, false);
    let before = env.snapshot();
    let (o, v) = env.json(&[
        "clean",
        "--all-repos",
        "--max-size",
        "1M",
        "--force",
        "--json",
    ]);
    assert_eq!(o.code, 0, "{o:?}");
    let q = &v["quota"];
    assert_eq!(q["met"], false, "{q}");
    assert!(q["shortfall_bytes"].as_u64().unwrap() >= MIB, "{q}");
    assert_eq!(
        q["after_bytes"].as_u64().unwrap() - q["max_bytes"].as_u64().unwrap(),
        q["shortfall_bytes"].as_u64().unwrap()
    );
    // The unprotected session went; every item of the resumable one stays and is named.
    for p in session_paths("done") {
        assert!(!env.exists(&p), "{p}");
    }
    let blocked = q["blocked_by"].as_array().unwrap();
    for p in session_paths("res") {
        assert!(env.exists(&p), "{p}");
        if p.contains("/mappings/") {
            continue; // they go and stay with the job's state directory
        }
        let b = blocked
            .iter()
            .find(|b| b["path"] == p)
            .unwrap_or_else(|| panic!("{p} not in {q}"));
        assert_eq!(b["reason"], "resumable", "{b}");
        assert!(b["bytes"].as_u64().is_some());
    }
    assert_eq!(blocked[0]["path"], "events/web/job-res", "largest first");
    assert!(before.iter().any(|p| p.starts_with("events/web/job-res")));
    // Under --quiet (cron) the shortfall is a warning on stderr; the exit is still 0.
    let o = env.run(&["clean", "--max-size", "1M", "--force", "--quiet"]);
    assert_eq!(o.code, 0, "{o:?}");
    assert_eq!(o.stdout, "");
    assert!(
        o.stderr
            .starts_with("prodigy clean: warning: quota 1.0 MiB not met: ")
            && o.stderr.contains("events/web/job-res (resumable, ")
            && o.stderr.lines().count() == 1,
        "{o:?}"
    );
    // The human report says it in one line.
    let o = env.run(&["clean", "--max-size", "1M", "--dry-run"]);
    assert!(
        o.stdout
            .lines()
            .any(|l| l.starts_with("Quota 1.0 MiB not met: ")
                && l.contains("protected data in the way")),
        "{o:?}"
    );
    // stats warns too, from the file.
    env.write("clean.conf", "max-size = 1M\n");
    let o = env.run(&["stats"]);
    assert_eq!(o.code, 0, "{o:?}");
    assert!(
        o.stdout
            .lines()
            .any(|l| l.starts_with("warning: over the quota: ") && l.contains("max-size 1.0 MiB")),
        "{o:?}"
    );
    let (_, s) = env.json(&["stats", "--json"]);
    assert_eq!(s["quota"]["max_bytes"], MIB);
    assert_eq!(s["quota"]["over"], true);
}

#[test]
fn malformed_retention_file_is_an_error_naming_file_and_line_and_removes_nothing() {
    let env = Env::new("bad-conf");
    env.session("s-old", "Completed", 100, "");
    three_items(&env);
    let conf = env.p("clean.conf");
    for (text, line, what) in [
        (
            "# ok\nworktrees = 7d\nsessions = soon\n",
            3,
            "invalid duration `soon`",
        ),
        ("retention = 7d\n", 1, "unknown key `retention`"),
        ("max-size = 20X\n", 1, "invalid size `20X`"),
        ("events 7d\n", 1, "expected `KEY = VALUE`"),
    ] {
        fs::write(&conf, text).unwrap();
        let before = env.snapshot();
        let o = env.run(&["clean", "--all-repos", "--force", "--older-than", "0s"]);
        assert_eq!(o.code, 2, "{text:?}: {o:?}");
        let want = format!("prodigy: clean: `{}`:{line}: ", conf.display());
        assert!(
            o.stderr.starts_with(&want) && o.stderr.contains(what),
            "{text:?}: want {want}…{what}: {o:?}"
        );
        assert_eq!(env.snapshot(), before, "{text:?}");
        assert!(!env.exists("clean-audit.jsonl"));
        // stats refuses the same file the same way.
        let o = env.run(&["stats"]);
        assert_eq!(o.code, 2, "{o:?}");
        assert!(o.stderr.contains(&format!("`{}`:{line}: ", conf.display())));
    }
    // A symlink in its place is not followed.
    fs::remove_file(&conf).unwrap();
    std::os::unix::fs::symlink(env.outside.join("canary.txt"), &conf).unwrap();
    let o = env.run(&["clean", "--all-repos", "--force"]);
    assert_eq!(o.code, 2, "{o:?}");
    assert!(o.stderr.contains("cannot read retention file"), "{o:?}");
    assert!(env.exists("sessions/s-old.json"));
}

#[test]
fn bad_retention_and_size_flags_are_usage_errors() {
    let env = Env::new("bad-flags");
    for (args, what) in [
        (
            &["clean", "--retention", "bogus=1d"][..],
            "unknown type `bogus`",
        ),
        (&["clean", "--retention", "logs"][..], "TYPE=DURATION"),
        (&["clean", "--retention", "logs=1y"][..], "90s, 30m"),
        (&["clean", "--max-size", "lots"][..], "K, M, G or T"),
    ] {
        let o = env.run(args);
        assert_eq!(o.code, 2, "{args:?}: {o:?}");
        assert!(o.stderr.contains(what), "{args:?}: {o:?}");
    }
}

#[test]
fn quiet_forced_clean_prints_nothing_when_there_is_nothing_to_say() {
    let env = Env::new("quiet");
    // Nothing stored yet, then a root with live data only and a quota that is met.
    let o = env.run(&["clean", "--force", "--quiet"]);
    assert_eq!((o.code, o.stdout.as_str(), o.stderr.as_str()), (0, "", ""));
    env.write("clean.conf", "max-size = 1G\nworktrees = 3d\n");
    big_session(&env, "new", "Completed", 1, 1, false);
    let o = env.run(&["clean", "--force", "--quiet"]);
    assert_eq!((o.code, o.stdout.as_str(), o.stderr.as_str()), (0, "", ""));
    assert!(env.exists("events/web/job-new"));
}

fn unit(name: &str) -> (std::path::PathBuf, String) {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("scripts/systemd")
        .join(name);
    let text = fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    (p, text)
}

#[test]
fn systemd_units_are_hardened_and_run_the_quiet_forced_clean() {
    let (svc_path, svc) = unit("prodigy-clean.service");
    let (timer_path, timer) = unit("prodigy-clean.timer");
    for line in [
        "Type=oneshot",
        "ExecStart=/usr/local/bin/prodigy clean --force --quiet",
        "Environment=PRODIGY_HOME=",
        "Nice=19",
        "IOSchedulingClass=idle",
        "ProtectSystem=strict",
        "ReadWritePaths=",
        "NoNewPrivileges=yes",
        "PrivateTmp=yes",
    ] {
        assert!(
            svc.lines().any(|l| l.starts_with(line)),
            "{}: no {line}",
            svc_path.display()
        );
    }
    for line in [
        "OnCalendar=daily",
        "RandomizedDelaySec=",
        "Persistent=true",
        "WantedBy=timers.target",
    ] {
        assert!(
            timer.lines().any(|l| l.starts_with(line)),
            "{}: no {line}",
            timer_path.display()
        );
    }
    // The root the unit sets is the one it may write.
    let env_root = svc
        .lines()
        .find_map(|l| l.strip_prefix("Environment=PRODIGY_HOME="))
        .unwrap();
    assert!(
        svc.lines()
            .any(|l| l.strip_prefix("ReadWritePaths=") == Some(env_root)),
        "ReadWritePaths must be {env_root}"
    );
    if !have("systemd-analyze", "systemd_units_are_hardened") {
        return;
    }
    // `verify` checks the syntax and that ExecStart exists: point it at this build.
    let dir = std::env::temp_dir().join(format!("prodigy-units-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    let bin = prodigy_bin();
    fs::write(
        dir.join("prodigy-clean.service"),
        svc.replace("/usr/local/bin/prodigy", &bin.to_string_lossy()),
    )
    .unwrap();
    fs::write(dir.join("prodigy-clean.timer"), &timer).unwrap();
    let o = std::process::Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(dir.join("prodigy-clean.service"))
        .arg(dir.join("prodigy-clean.timer"))
        .output()
        .unwrap();
    let _ = fs::remove_dir_all(&dir);
    let err = String::from_utf8_lossy(&o.stderr);
    // Without a running systemd (containers) verify cannot load the units at all: say so.
    if err.contains("Failed to connect") || err.contains("System has not been booted") {
        eprintln!("SKIPPED systemd-analyze verify: no systemd here ({err})");
        return;
    }
    assert!(o.status.success() && err.trim().is_empty(), "{err}");
}
