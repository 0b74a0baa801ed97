//! Flat memory (issue 15): `stats` and `clean --dry-run` over a generated tree of 50,000
//! sessions, run again under a 64 MiB address-space limit, must succeed and print the same.

use super::common::*;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

/// The address-space limit of the limited runs: 64 MiB.
const LIMIT_BYTES: u64 = 64 * 1024 * 1024;

/// S2's session kinds (scripts/bench.sh): a third of the sessions expired, the rest kept for
/// every reason a session can be kept.
const S2_KINDS: &str = "completed-old,completed-recent,failed-resumable-old,running-stale-old,\
                        active-old,corrupt-old,cancelled-old,paused-resumable-old,completed-recent";

/// Generate a tree in S2's shape at `out`: `sessions` sessions over `repos` repositories, `logs`
/// log files in all, no worktrees.
fn gen_s2_shape(out: &Path, sessions: &str, repos: &str, logs: &str) {
    gen_tree(
        out,
        &[
            "--sessions",
            sessions,
            "--worktrees",
            "0",
            "--repos",
            repos,
            "--logs",
            logs,
            "--kinds",
            S2_KINDS,
            "--quiet",
        ],
    );
}

/// `prodigy ARGS` on the generated tree at `out`, under the address-space limit when `limit`:
/// `prlimit --as=BYTES -- prodigy ARGS` when prlimit exists, else `ulimit -v` in `sh`.
fn run_on(env: &Env, out: &Path, args: &[&str], limit: bool) -> Out {
    let mut c = if !limit {
        env.cmd(args)
    } else if prlimit_works() {
        let as_arg = format!("--as={LIMIT_BYTES}");
        cmd_via(env, "prlimit", &[&as_arg, "--"], args)
    } else {
        let script = format!("ulimit -v {}; exec \"$@\"", LIMIT_BYTES / 1024);
        cmd_via(env, "sh", &["-c", &script, "sh"], args)
    };
    // As the generator's manifest and the other generated-tree tests have it: HOME is the
    // generated home, PRODIGY_HOME its .prodigy.
    c.env("PRODIGY_HOME", out.join("home/.prodigy"))
        .env("HOME", out.join("home"));
    let t = Instant::now();
    let output = c.output().expect("run prodigy");
    let signal = std::os::unix::process::ExitStatusExt::signal(&output.status);
    let mut o = Out::from(output);
    if let Some(sig) = signal {
        // Killed by a signal (SIGABRT when the allocator gives up): a shell's 128 + N.
        o.code = 128 + sig;
    }
    eprintln!(
        "memory: prodigy {} ({}): {:.1} s, exit {}, {} bytes of stdout",
        args.join(" "),
        if limit {
            "64 MiB address space"
        } else {
            "no limit"
        },
        t.elapsed().as_secs_f64(),
        o.code,
        o.stdout.len()
    );
    o
}

/// Up to 80 bytes either side of byte `at` of `s`, for a failure message.
fn around(s: &str, at: usize) -> String {
    let b = s.as_bytes();
    let lo = at.saturating_sub(80).min(b.len());
    let hi = (at + 80).min(b.len());
    String::from_utf8_lossy(&b[lo..hi]).into_owned()
}

fn prlimit_works() -> bool {
    Command::new("prlimit")
        .args(["--as=67108864", "--", "true"])
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// Issue 15, flat memory: over a generated tree of 50,000 sessions in S2's shape
/// (scripts/bench.sh; ~506k entries, no worktrees), `prodigy stats --all-repos --json` and
/// `prodigy clean --all-repos --dry-run --json` succeed under a 64 MiB address-space limit
/// (`prlimit --as`, else `ulimit -v`) and print exactly what they print without it.
///
/// This is a behaviour test, not a timing: it proves that the engine's memory does not grow with
/// the number of sessions past 64 MiB of address space at 50,000 sessions, and that a bounded
/// engine answers the same thing byte for byte. The engine that plans over the whole inventory
/// peaks at about 160 MiB RSS for `stats` and 225 MiB for the dry run here (debug or release
/// alike) and is stopped by its allocator under the limit ("memory allocation of N bytes
/// failed", exit 134). It measures no time; the durations it
/// prints (with `--nocapture`) are for whoever wonders why the test is slow.
///
/// The limit is on address space, not RSS: it also counts reserved but untouched memory (the
/// binary's mappings, thread stacks, malloc arenas), so a small RSS with large reservations
/// fails too. An empty PRODIGY_HOME is checked first under the same limit, so the limit itself
/// is not what fails (a debug binary's `stats` runs under 16 MiB).
#[test]
fn stats_and_dry_run_of_50000_sessions_fit_in_64_mib_and_print_the_same() {
    if !have("python3", "memory_50000_sessions") || !have("git", "memory_50000_sessions") {
        return;
    }
    let env = Env::new("mem50k");

    // The limit is not too tight for the binary itself: an empty root works under it.
    let o = run_on(&env, &env.dir, &["stats", "--all-repos", "--json"], true);
    assert_eq!(o.code, 0, "stats on an empty root under the limit: {o:?}");

    let out = env.dir.join("tree");
    let t = Instant::now();
    gen_s2_shape(&out, "50000", "20", "100");
    eprintln!(
        "memory: generated 50,000 sessions in {:.1} s",
        t.elapsed().as_secs_f64()
    );

    // stdout is compared byte for byte. Neither document holds anything time-dependent for this
    // tree: stats has sizes and counts only, and the dry run's only clock-relative text
    // ("last activity Ns ago" in a kept item's detail) is for sessions active within the
    // activity window, which the generator does not make (its "recent" items are a day old, too
    // new to be listed at all). Paths are relative to the root, which is the same for both runs.
    let mut failures = Vec::new();
    for args in [
        &["stats", "--all-repos", "--json"][..],
        &["clean", "--all-repos", "--dry-run", "--json"][..],
    ] {
        let free = run_on(&env, &out, args, false);
        assert_eq!(free.code, 0, "{args:?} without a limit: {free:?}");
        // Both commands run before anything is asserted, so one run of this slow test reports
        // on both.
        let limited = run_on(&env, &out, args, true);
        if limited.code != 0 {
            failures.push(format!(
                "{args:?} under a 64 MiB address-space limit exited {} (134, SIGABRT, after \
                 \"memory allocation of N bytes failed\" is the allocator giving up: memory is \
                 not flat); stderr:\n{}",
                limited.code, limited.stderr
            ));
        } else if limited.stdout != free.stdout {
            let at = limited
                .stdout
                .bytes()
                .zip(free.stdout.bytes())
                .position(|(a, b)| a != b)
                .unwrap_or(limited.stdout.len().min(free.stdout.len()));
            failures.push(format!(
                "{args:?}: stdout under the limit differs from the unlimited run ({} vs {} \
                 bytes), first at byte {at}: {:?} vs {:?}",
                limited.stdout.len(),
                free.stdout.len(),
                around(&limited.stdout, at),
                around(&free.stdout, at),
            ));
        }
    }
    // The tree is half a million entries: its removal (Env's drop) is timed too.
    let t = Instant::now();
    drop(env);
    eprintln!(
        "memory: test directory cleaned up in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// Issue 15: the streaming engine makes a repository's `state/` items a batch at a time (at most
/// 1,024 items each), every job directory with its mapping files. Over a generated tree of 3,000
/// sessions in one repository (3,002 job directories, 6,004 mapping files, so the jobs span
/// three batches), its dry run gives every job directory it lists both its mapping files
/// (`{job}.json` and `{session}.json`), lists no mapping file as an item of its own, and lists
/// the same removed and kept entries, sessions and totals as the engine that plans the whole
/// root at once (`PRODIGY_CLEAN_WHOLE_ROOT=1`); only their order differs (batch by batch).
#[test]
fn streamed_state_batches_keep_each_job_with_its_mapping_files() {
    if !have("python3", "streamed_state_batches") {
        return;
    }
    let env = Env::new("state-batches");
    let out = env.dir.join("tree");
    gen_s2_shape(&out, "3000", "1", "10");
    let jobs_dir = out.join("home/.prodigy/state/repo-0/mapreduce/jobs");
    let jobs = std::fs::read_dir(&jobs_dir).unwrap().count();
    assert!(
        jobs > 2 * 1024,
        "{jobs} job directories: fewer than three batches"
    );

    let args = ["clean", "--all-repos", "--dry-run", "--json"];
    let streamed = run_on(&env, &out, &args, false);
    assert_eq!(streamed.code, 0, "streamed dry run: {streamed:?}");
    let mut c = env.cmd(&args);
    c.env("PRODIGY_HOME", out.join("home/.prodigy"))
        .env("HOME", out.join("home"))
        .env("PRODIGY_CLEAN_WHOLE_ROOT", "1");
    let whole = Out::from(c.output().unwrap());
    assert_eq!(whole.code, 0, "whole-root dry run: {whole:?}");

    let s: serde_json::Value = serde_json::from_str(&streamed.stdout).unwrap();
    let w: serde_json::Value = serde_json::from_str(&whole.stdout).unwrap();
    let mut job_entries = 0;
    for e in ["removed", "kept"]
        .iter()
        .flat_map(|k| s[k].as_array().unwrap())
    {
        let path = e["path"].as_str().unwrap();
        assert!(
            !path.starts_with("state/repo-0/mappings/"),
            "a mapping file listed apart from its job: {e}"
        );
        let Some(job) = path.strip_prefix("state/repo-0/mapreduce/jobs/") else {
            continue;
        };
        job_entries += 1;
        let also: Vec<&str> = e["also"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p.as_str().unwrap())
            .collect();
        let owner = e["owner"].as_str().unwrap();
        assert_eq!(
            also,
            [
                format!("state/repo-0/mappings/{job}.json"),
                format!("state/repo-0/mappings/{owner}.json")
            ],
            "{e}"
        );
    }
    // Items too new to be listed at all (the generator's recent sessions) are not entries.
    assert!(
        job_entries > 2 * 1024,
        "{job_entries} job directories listed: fewer than three batches"
    );
    for k in [
        "before", "after", "sessions", "totals", "errors", "warnings",
    ] {
        assert_eq!(s[k], w[k], "`{k}` differs from the whole-root run");
    }
    assert_same_entries(&s, &w);
}

/// The `removed` and `kept` entries of two `clean --dry-run --json` reports (`streamed`, by the
/// streaming engine; `whole`, by the whole-root one) are the same, in whatever order.
fn assert_same_entries(streamed: &serde_json::Value, whole: &serde_json::Value) {
    for k in ["removed", "kept"] {
        let sorted = |v: &serde_json::Value| {
            let mut l: Vec<String> = v[k]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e.to_string())
                .collect();
            l.sort();
            l
        };
        assert_eq!(
            sorted(streamed),
            sorted(whole),
            "`{k}` differs from the whole-root run"
        );
    }
}

/// Issue 25: pass 3 of the streaming engine (the items of sessions whose class waited for all
/// activity) keeps only the mapping files of jobs that may have waited; it used to hold every
/// mapping file of the repository again. A mapping file that pairs a job whose owner did not wait
/// with a session that did makes it keep them all: here `session-a.json` names job
/// `mapreduce-b` (owned by Completed `session-b`, whose mappings say so) and Running, ownerless
/// `session-a` (which waits: its job's events are streamed before its class is known). The file
/// goes with `mapreduce-b`'s loose mapping item, owned by `session-b` (its first file in name
/// order); keeping only it in pass 3 would make it an item of `session-a` too, listed twice.
/// The dry run lists every file once, and the same entries as the whole-root engine. (Without
/// the fallback, `session-a.json` was listed twice.)
#[test]
fn pass_3_keeps_a_mapping_that_names_a_waited_session_with_its_job() {
    let env = Env::new("pass3-mappings");
    env.session("session-a", "Running", 40, "");
    env.session("session-b", "Completed", 40, "");
    env.old_file("events/repo/mapreduce-a/events-1.jsonl", 40);
    mapping(&env, "repo", "session-b", "mapreduce-b", 40);
    let m = |s: &str, j: &str| {
        format!(
            r#"{{"session_id":"{s}","job_id":"{j}","workflow_name":"wf","created_at":"{}"}}"#,
            rfc3339_ago(40 * DAY)
        )
    };
    for (name, s, j) in [
        ("mapreduce-a", "session-a", "mapreduce-a"),
        ("session-a", "session-a", "mapreduce-b"),
    ] {
        env.write(&format!("state/repo/mappings/{name}.json"), &m(s, j));
    }
    // Everything 40 days old, directories too: `session-a` is stale, every item is listed.
    age_tree(&env.root, 40 * DAY);

    let args = ["clean", "--all-repos", "--dry-run", "--json"];
    let (o, streamed) = env.json(&args);
    assert_eq!(o.code, 0, "{o:?}");
    let mut paths = removed_paths(&streamed);
    paths.extend(kept_paths(&streamed));
    paths.sort();
    let mut once = paths.clone();
    once.dedup();
    assert_eq!(paths, once, "a path listed twice: {}", o.stdout);
    for f in ["mapreduce-a", "mapreduce-b", "session-a", "session-b"] {
        let f = format!("state/repo/mappings/{f}.json");
        assert!(paths.contains(&f), "{f} not listed: {}", o.stdout);
    }
    let entry = streamed["removed"]
        .as_array()
        .unwrap()
        .iter()
        .chain(streamed["kept"].as_array().unwrap())
        .find(|e| e["path"] == "state/repo/mappings/mapreduce-b.json")
        .unwrap_or_else(|| panic!("no item of mapreduce-b's mappings: {}", o.stdout));
    assert_eq!(entry["owner"], "session-b", "{entry}");

    let mut c = env.cmd(&args);
    c.env("PRODIGY_CLEAN_WHOLE_ROOT", "1");
    let whole = Out::from(c.output().unwrap());
    assert_eq!(whole.code, 0, "whole-root dry run: {whole:?}");
    let w: serde_json::Value = serde_json::from_str(&whole.stdout).unwrap();
    assert_same_entries(&streamed, &w);
}

/// The fastest of `runs` runs of `prodigy ARGS` on the generated tree at `out`, in seconds
/// (the fastest: the least disturbed by whatever else the machine runs).
fn fastest_run(env: &Env, out: &Path, args: &[&str], runs: usize) -> f64 {
    (0..runs)
        .map(|_| {
            let mut c = env.cmd(args);
            c.env("PRODIGY_HOME", out.join("home/.prodigy"))
                .env("HOME", out.join("home"));
            let t = Instant::now();
            let o = Out::from(c.output().expect("run prodigy"));
            let s = t.elapsed().as_secs_f64();
            assert_eq!(o.code, 0, "{args:?} on {}: {o:?}", out.display());
            s
        })
        .fold(f64::INFINITY, f64::min)
}

/// Issue 25: the cost of a session does not depend on its id. Two trees of 4,000 sessions in S2's
/// shape in one repository, one with random ids (`session-{48 random bits}`) and one whose ids
/// share their first 120 of 128 characters (`gen-tree.py --id-style shared-prefix`); `stats
/// --all-repos` of the second takes less than 3 times as long as of the first (the fastest of
/// three runs each). Longer ids cost more bytes to read, list and print, well under 3 times.
///
/// A ratio, not a wall-clock time, so a slow machine does not fail it. The index's hash tables
/// hashed with FNV-1a and took the home slot from its high bits, which barely see an id's last
/// bytes: ids differing only at the end clustered into one run of slots and every lookup walked
/// it: this ratio was 6.8 with that code's debug binary (8.4 s against 1.2 s; 31 at 8,000 sessions).
#[test]
fn stats_time_does_not_depend_on_ids_sharing_a_long_prefix() {
    if !have("python3", "ids_sharing_a_long_prefix") || !have("git", "ids_sharing_a_long_prefix") {
        return;
    }
    let env = Env::new("id-shapes");
    let mut fastest = Vec::new();
    for style in ["random", "shared-prefix"] {
        let out = env.dir.join(style);
        gen_tree(
            &out,
            &[
                "--sessions",
                "4000",
                "--worktrees",
                "0",
                "--repos",
                "1",
                "--logs",
                "10",
                "--kinds",
                S2_KINDS,
                "--id-style",
                style,
                "--quiet",
            ],
        );
        let s = fastest_run(&env, &out, &["stats", "--all-repos", "--json"], 3);
        eprintln!("ids: stats of 4,002 sessions with {style} ids: {s:.2} s");
        fastest.push(s);
    }
    let ratio = fastest[1] / fastest[0];
    assert!(
        ratio < 3.0,
        "stats took {ratio:.1} times as long with ids sharing a 120-character prefix as with \
         random ids ({:.2} s vs {:.2} s): the cost of a session depends on its id",
        fastest[1],
        fastest[0]
    );
}

/// Peak RSS in KiB of `prodigy stats --all-repos --json` on the generated tree at `out`, from
/// `/usr/bin/time -v`.
fn stats_peak_kib(env: &Env, out: &Path) -> u64 {
    let mut c = cmd_via(
        env,
        "/usr/bin/time",
        &["-v"],
        &["stats", "--all-repos", "--json"],
    );
    c.env("PRODIGY_HOME", out.join("home/.prodigy"))
        .env("HOME", out.join("home"));
    let o = Out::from(c.output().expect("run prodigy under /usr/bin/time"));
    assert_eq!(o.code, 0, "stats on {}: {o:?}", out.display());
    o.stderr
        .lines()
        .find(|l| l.contains("Maximum resident set size"))
        .and_then(|l| l.rsplit(':').next())
        .and_then(|n| n.trim().parse().ok())
        .expect("no RSS in /usr/bin/time output")
}

/// Issue 25: with every session in one repository, a session costs about the memory it costs
/// spread over twenty. Peak RSS of `stats` at 1,000 and 7,000 sessions in S2's shape with
/// same-second ids (`gen-tree.py --id-style same-second`, as Prodigy names jobs started in one
/// second), in 1 and in 20 repositories: the slope over 6,000 sessions (bytes a session) in one
/// repository is at most the slope in twenty plus 96 bytes.
///
/// A slope, not a size, so the binary's own memory (debug or release) does not count; the margin
/// is for the page-sized noise of a peak RSS over only 6,000 sessions. While a repository's
/// `state/` was scanned its job directories' and mapping files' names were held as `OsString`s
/// and the mappings' ids packed in a string of their own: at these sizes (release) the slope in
/// one repository was 366 bytes a session against 154 in twenty, and this failed; with the
/// names as index references, 91 against 153 (release) and 150 against 123 (debug).
#[test]
fn one_repository_costs_about_the_memory_a_session_of_twenty_costs() {
    let test = "one_repository_memory_slope";
    if !have("python3", test) || !have("git", test) {
        return;
    }
    if !Path::new("/usr/bin/time").exists() {
        eprintln!("SKIPPED {test}: /usr/bin/time is not installed");
        return;
    }
    let env = Env::new("one-repo-slope");
    let (small, large) = (1000u64, 7000u64);
    let mut slopes = Vec::new();
    for repos in ["1", "20"] {
        let mut peaks = Vec::new();
        for n in [small, large] {
            let out = env.dir.join(format!("r{repos}-{n}"));
            gen_tree(
                &out,
                &[
                    "--sessions",
                    &n.to_string(),
                    "--worktrees",
                    "0",
                    "--repos",
                    repos,
                    "--logs",
                    "10",
                    "--kinds",
                    S2_KINDS,
                    "--id-style",
                    "same-second",
                    "--quiet",
                ],
            );
            // The least of two runs: the one least disturbed.
            let kib = (0..2).map(|_| stats_peak_kib(&env, &out)).min().unwrap();
            eprintln!("memory: stats of {n} sessions in {repos} repositories: {kib} KiB");
            peaks.push(kib);
            std::fs::remove_dir_all(&out).unwrap();
        }
        slopes.push((peaks[1] as f64 - peaks[0] as f64) * 1024.0 / (large - small) as f64);
    }
    eprintln!(
        "memory: slope {:.0} B/session in one repository, {:.0} in twenty",
        slopes[0], slopes[1]
    );
    assert!(
        slopes[0] <= slopes[1] + 96.0,
        "with every session in one repository, stats' peak RSS grows {:.0} bytes a session, \
         against {:.0} in twenty repositories: a repository's scan holds something per session",
        slopes[0],
        slopes[1]
    );
}
