//! Issue 24, environment side: env value forms, `secrets`, `env_files`, `profiles`, and secrets
//! masked as `***` in everything prodigy prints or writes (run.md §2 "Environment").
//! A child of `run` (tests/cli/run.rs) for its `setup()` and `Run` helpers.

use super::*;

const API_TOKEN: &str = "tok-ABCDEF-123456";
const INLINE: &str = "inl-secret-98765";
const FILE_TOKEN: &str = "file-secret-4242";
const STEP_SECRET: &str = "step-secret-5555";

/// The shared top of the workflows: every env form, both secret forms, an env file, a profile.
const ENV_TOP: &str = r#"env:
  PLAIN: plain-value
  NUM: 42
  INLINE_SECRET:
    secret: true
    value: inl-secret-98765
  FROM_CMD:
    command: "printf ' cmd-%s \n' \"$PLAIN\""
    cache: true
  COND:
    condition: "${PLAIN} == profile-value"
    when_true: yes-branch
    when_false: no-branch
secrets:
  API_TOKEN: "TEST_API_TOKEN"
  FILE_TOKEN:
    provider: file
    key: secret-token.txt
env_files:
  - .env.test
profiles:
  ci:
    description: CI
    PLAIN: profile-value
"#;

/// `setup()` plus the secret in prodigy's environment, the secret file and the env file
/// (untracked, as such files are), and a `claude` stub that prints its prompt.
fn secret_setup(name: &str) -> Option<Run> {
    let mut r = setup(name)?;
    r.env
        .extra_env
        .push(("TEST_API_TOKEN".into(), API_TOKEN.into()));
    fs::write(r.repo.join("secret-token.txt"), format!("  {FILE_TOKEN}\n")).unwrap();
    fs::write(
        r.repo.join(".env.test"),
        "# test env\nexport DOTENV_VAR=\"dotenv value\"\nPLAIN=from-dotenv # overridden by env\n",
    )
    .unwrap();
    let stub = "#!/bin/sh\nif [ \"$1\" = --version ]; then echo 'stub-claude 1.0'; exit 0; fi\n\
                for a in \"$@\"; do last=\"$a\"; done\n\
                printf '{\"type\":\"result\",\"prompt\":\"%s\",\"token\":\"%s\"}\\n' \"$last\" \"$API_TOKEN\"\n\
                echo \"claude stderr $API_TOKEN\" >&2\n";
    fs::write(r.bin.join("claude"), stub).unwrap();
    Some(r)
}

/// Every file under `dir` (recursively; `.gz` files decompressed) that contains one of the
/// secrets, skipping `worktrees/` (checkouts of the user's branches: what a step commits is the
/// user's business). Returns `(path, secret)` pairs.
fn leaks(dir: &Path, found: &mut Vec<(PathBuf, &'static str)>) {
    let Ok(rd) = fs::read_dir(dir) else { return };
    for e in rd.flatten() {
        let p = e.path();
        let ft = e.file_type().unwrap();
        if ft.is_dir() {
            if p.file_name().is_some_and(|n| n == "worktrees") {
                continue;
            }
            leaks(&p, found);
        } else if ft.is_file() {
            let mut bytes = fs::read(&p).unwrap_or_default();
            if p.extension().is_some_and(|x| x == "gz") {
                bytes = Command::new("gzip")
                    .arg("-dc")
                    .arg(&p)
                    .output()
                    .unwrap()
                    .stdout;
            }
            let text = String::from_utf8_lossy(&bytes);
            for s in [API_TOKEN, INLINE, FILE_TOKEN, STEP_SECRET] {
                if text.contains(s) {
                    found.push((p.clone(), s));
                }
            }
        }
    }
}

fn assert_no_leak(r: &Run, outputs: &[&Out]) {
    let mut found = Vec::new();
    leaks(&r.env.root, &mut found);
    assert!(found.is_empty(), "secrets written to disk: {found:?}");
    for o in outputs {
        for s in [API_TOKEN, INLINE, FILE_TOKEN, STEP_SECRET] {
            assert!(
                !o.stdout.contains(s) && !o.stderr.contains(s),
                "secret printed: {o:?}"
            );
        }
    }
}

/// The masked lines really are in the logs: the steps' output reached them, as `***`.
fn logs_text(r: &Run) -> String {
    let mut out = String::new();
    fn walk(d: &Path, out: &mut String) {
        for e in fs::read_dir(d).into_iter().flatten().flatten() {
            if e.file_type().unwrap().is_dir() {
                walk(&e.path(), out);
            } else {
                out.push_str(&String::from_utf8_lossy(&fs::read(e.path()).unwrap()));
            }
        }
    }
    walk(&r.env.p("logs"), &mut out);
    out
}

#[test]
fn standard_run_gives_steps_every_env_form_and_masks_secrets_everywhere() {
    let Some(r) = secret_setup("run-secrets-std") else {
        return;
    };
    let wf = r.write_workflow(
        "sec.yml",
        &format!(
            r#"name: sec
{ENV_TOP}commands:
  - shell: |
      echo "out token=$API_TOKEN inline=$INLINE_SECRET file=$FILE_TOKEN"
      echo "err token=$API_TOKEN" >&2
      printf '%s\n' "$API_TOKEN" "$INLINE_SECRET" "$FILE_TOKEN" "$DOTENV_VAR" "$PLAIN" "$NUM" "$FROM_CMD" "$COND" "$STEP_ONLY" "$STEP_SECRET" > got.txt
      git add got.txt && git commit -q -m got
    commit_required: true
    env:
      STEP_ONLY: "step ${{PLAIN}}"
      STEP_SECRET:
        secret: true
        value: {STEP_SECRET}
  - claude: "/review ${{API_TOKEN}} $INLINE_SECRET"
    capture_output: true
  - shell: "echo captured ${{claude.output}}"
  - shell: "echo failing $API_TOKEN; echo failing-err $FILE_TOKEN >&2; exit 3"
"#
        ),
    );
    let o = r.run(&wf, &["-y", "--profile", "ci"]);
    assert_eq!(o.code, 1, "{o:?}");
    // The steps got the real values (the committed file is the user's business).
    let s = r.only_session();
    let sid = s["id"].as_str().unwrap();
    let got = git(&r.repo, &["show", &format!("prodigy-{sid}:got.txt")]);
    assert_eq!(
        got.lines().collect::<Vec<_>>(),
        vec![
            API_TOKEN,
            INLINE,
            FILE_TOKEN,
            "dotenv value",
            "profile-value",
            "42",
            "cmd-profile-value",
            "yes-branch",
            "step profile-value",
            STEP_SECRET,
        ]
    );
    let logs = logs_text(&r);
    assert!(logs.contains("out token=*** inline=*** file=***"), "{logs}");
    assert!(logs.contains("err token=***"), "{logs}");
    assert!(
        logs.contains("failing ***") && logs.contains("failing-err ***"),
        "{logs}"
    );
    assert!(logs.contains("\"prompt\":\"/review *** ***\""), "{logs}");
    assert!(logs.contains("claude stderr ***"), "{logs}");
    assert_no_leak(&r, &[&o]);
    // The profile name is kept for a resume; the values are not.
    assert_eq!(s["workflow_data"]["profile"], "ci", "{s}");
}

#[test]
fn mapreduce_phases_get_the_secrets_and_nothing_stores_them() {
    let Some(r) = secret_setup("run-secrets-mr") else {
        return;
    };
    let wf = r.write_workflow(
        "mr.yml",
        &format!(
            r#"name: sec-mr
mode: mapreduce
{ENV_TOP}setup:
  - shell: |
      echo "setup $API_TOKEN"; echo "setup-err $INLINE_SECRET" >&2
      printf '[{{"id":"a"}},{{"id":"b","tok":"%s"}}]' "$API_TOKEN" > items.json
      echo "$API_TOKEN $FILE_TOKEN $COND" > setup-got.txt
      git add items.json setup-got.txt && git commit -q -m setup
    commit_required: true
map:
  input: items.json
  max_parallel: 2
  agent_template:
    - shell: |
        echo "agent ${{item_id}} $API_TOKEN"; echo "agent-err $FILE_TOKEN" >&2
        test "${{item_id}}" = a || {{ echo "agent fails $API_TOKEN $INLINE_SECRET" >&2; exit 3; }}
        echo "$API_TOKEN $DOTENV_VAR" > agent-${{item_id}}.txt && git add agent-${{item_id}}.txt && git commit -q -m "agent ${{item_id}}"
      commit_required: true
    - claude: "/agent ${{API_TOKEN}}"
reduce:
  - shell: |
      echo "reduce $API_TOKEN ${{map.successful}}"
      echo "$INLINE_SECRET $PLAIN" > reduce-got.txt && git add reduce-got.txt && git commit -q -m reduce
    commit_required: true
"#
        ),
    );
    let o = r.run(&wf, &["-y", "--json"]);
    assert_eq!(o.code, 1, "{o:?}");
    let v: Value = serde_json::from_str(&o.stdout).unwrap_or_else(|e| panic!("{e}: {o:?}"));
    assert_eq!(v["completed"], 1, "{v}");
    assert_eq!(v["failed"], 1, "{v}");
    assert_eq!(v["merge"], "merged", "{v}");
    let read = |f: &str| fs::read_to_string(r.repo.join(f)).unwrap();
    assert_eq!(
        read("setup-got.txt"),
        format!("{API_TOKEN} {FILE_TOKEN} no-branch\n")
    );
    assert_eq!(read("agent-a.txt"), format!("{API_TOKEN} dotenv value\n"));
    assert_eq!(read("reduce-got.txt"), format!("{INLINE} plain-value\n"));
    let logs = logs_text(&r);
    for line in [
        "setup ***",
        "setup-err ***",
        "agent a ***",
        "agent-err ***",
        "agent fails *** ***",
        "reduce *** 1",
        "\"prompt\":\"/agent ***\"",
    ] {
        assert!(logs.contains(line), "{line}: {logs}");
    }
    // The DLQ has the failed item, whose data held the secret: masked.
    let job = v["job_id"].as_str().unwrap();
    let dlq = r.json(&format!("dlq/work/{job}/dlq-items.json"));
    assert!(dlq.to_string().contains("\"tok\":\"***\""), "{dlq}");
    assert_no_leak(&r, &[&o]);
}

#[test]
fn missing_secrets_env_files_and_unknown_profiles_are_refused_before_anything_runs() {
    let Some(mut r) = secret_setup("run-secrets-refused") else {
        return;
    };
    let wf = r.write_workflow(
        "sec.yml",
        &format!("name: sec\n{ENV_TOP}commands:\n  - shell: echo hi\n"),
    );
    let o = r.run(&wf, &["--profile", "nope"]);
    assert_eq!(o.code, 2, "{o:?}");
    assert!(
        o.stderr.contains("unknown profile `nope`") && o.stderr.contains("known: `ci`"),
        "{o:?}"
    );
    fs::remove_file(r.repo.join(".env.test")).unwrap();
    let o = r.run(&wf, &[]);
    assert_eq!(o.code, 2, "{o:?}");
    assert!(o.stderr.contains(".env.test"), "{o:?}");
    fs::write(r.repo.join(".env.test"), "A=1\n").unwrap();
    r.env.extra_env.retain(|(k, _)| k != "TEST_API_TOKEN");
    let o = r.run(&wf, &[]);
    assert_eq!(o.code, 2, "{o:?}");
    assert!(
        o.stderr.contains("secret `API_TOKEN`") && o.stderr.contains("`TEST_API_TOKEN`"),
        "{o:?}"
    );
    assert!(r.sessions().is_empty(), "nothing ran");
    assert_no_leak(&r, &[&o]);
}

#[test]
fn a_killed_run_resumes_with_the_secrets_read_again_and_still_masked() {
    let Some(r) = secret_setup("run-secrets-resume") else {
        return;
    };
    let started = r.env.dir.join("started");
    let go = r.env.dir.join("go");
    let wf = r.write_workflow(
        "sec.yml",
        &format!(
            r#"name: sec
{ENV_TOP}commands:
  - shell: echo "first $API_TOKEN" && echo "$API_TOKEN" > one.txt && git add one.txt && git commit -q -m one
    commit_required: true
  - shell: |
      echo "second $INLINE_SECRET"
      touch {started}
      while [ ! -e {go} ]; do sleep 0.1; done
      echo "second done $FILE_TOKEN"
  - shell: echo "third $API_TOKEN" && echo "$API_TOKEN $INLINE_SECRET $PLAIN" > three.txt && git add three.txt && git commit -q -m three
    commit_required: true
"#,
            started = started.display(),
            go = go.display()
        ),
    );
    let mut child = spawn_run(&r, &wf, &["-y", "--profile", "ci"]);
    wait_for("the second step", || started.exists());
    unsafe_kill(child.id() as i32, 9);
    child.wait().unwrap();
    fs::write(&go, "").unwrap();
    let s = r.only_session();
    let sid = s["id"].as_str().unwrap().to_string();
    let o = Out::from(
        r.env
            .cmd(&["resume", &sid, "-y"])
            .current_dir(&r.repo)
            .output()
            .unwrap(),
    );
    assert_eq!(o.code, 0, "{o:?}");
    assert_eq!(
        fs::read_to_string(r.repo.join("three.txt")).unwrap(),
        format!("{API_TOKEN} {INLINE} profile-value\n")
    );
    let logs = logs_text(&r);
    for line in ["first ***", "second ***", "second done ***", "third ***"] {
        assert!(logs.contains(line), "{line}: {logs}");
    }
    let bg = Out {
        code: 0,
        stdout: fs::read_to_string(r.env.dir.join("bg.out")).unwrap(),
        stderr: fs::read_to_string(r.env.dir.join("bg.err")).unwrap(),
    };
    assert_no_leak(&r, &[&o, &bg]);
}

#[test]
fn a_failing_env_command_fails_the_run_with_its_stderr_masked_and_short_secrets_are_warned_about() {
    let Some(r) = secret_setup("run-secrets-cmd") else {
        return;
    };
    let wf = r.write_workflow(
        "sec.yml",
        r#"name: sec
secrets:
  API_TOKEN: TEST_API_TOKEN
env:
  SHORT: {secret: true, value: ab}
  BROKEN:
    command: 'echo "bad $API_TOKEN" >&2; exit 4'
commands:
  - shell: echo never > never.txt
"#,
    );
    let o = r.run(&wf, &[]);
    assert_eq!(o.code, 1, "{o:?}");
    assert!(
        o.stderr.contains("env `BROKEN`") && o.stderr.contains("bad ***"),
        "{o:?}"
    );
    assert!(
        o.stderr.contains(
            "warning: secret `SHORT` is shorter than 4 characters (or 8 when all digits) and is \
             not masked in output"
        ),
        "{o:?}"
    );
    let s = r.only_session();
    assert_eq!(s["status"], "Failed", "{s}");
    assert!(s["error"].as_str().unwrap().contains("bad ***"), "{s}");
    assert_no_leak(&r, &[&o]);
}
