//! Tests of the workflow file parser ([`super::parse`]).

use super::*;
use std::time::{Duration, Instant};

const TEST_RESUME: &str = r#"# Test workflow for resume functionality
# This workflow will fail at step 3 to test checkpoint/resume
- shell: echo "Step 1 - Starting workflow"
- shell: echo "Step 2 - Processing data"
- shell: exit 1  # This will cause the workflow to fail
- shell: echo "Step 4 - This should run on resume"
- shell: echo "Step 5 - Final step"
"#;

const MAPREDUCE_JSON_INPUT: &str = r#"# Example: MapReduce workflow using JSON file as input
# This demonstrates processing structured data from a JSON file
name: process-work-items
mode: mapreduce

# Setup phase - create the JSON file with work items
setup:
  - shell: |
      cat > work-items.json <<EOF
      {
        "items": [
          {"id": 1, "file": "src/main.rs", "task": "add-types"},
          {"id": 2, "file": "src/lib.rs", "task": "refactor"},
          {"id": 3, "file": "src/config.rs", "task": "optimize"}
        ]
      }
      EOF
  - shell: echo "Created work-items.json with $(jq '.items | length' work-items.json) items"

# Map phase - process each item from the JSON file
map:
  # JSON file path
  input: "work-items.json"

  # JSONPath expression to extract items
  json_path: "$.items[*]"

  # Template for each parallel agent
  agent_template:
    - shell: echo "Processing item ${item.id}: ${item.task} for ${item.file}"
    - shell: |
        # Simulate processing
        sleep 1
        echo "Completed ${item.task} on ${item.file}"

  # Run up to 3 agents in parallel
  max_parallel: 3

  # Timeout configuration (optional)
  # Note: agent_timeout_secs can also be configured via timeout_config block
  # See docs/examples.md Example 8 for full timeout_config syntax
  timeout_config:
    agent_timeout_secs: 60  # Maximum time per agent (seconds)

# Reduce phase - aggregate results
reduce:
  - shell: echo "Processed ${map.total} items"
  - shell: echo "Successful: ${map.successful}, Failed: ${map.failed}"
  - shell: rm -f work-items.json
"#;

fn p(text: &str) -> Result<Workflow> {
    parse(text, Path::new("wf/test.yml"))
}

/// The error message of parsing `text`, asserting it is a usage error.
fn err(text: &str) -> String {
    let e = p(text).expect_err("expected a parse error");
    assert_eq!(e.kind(), crate::error::ErrorKind::Usage, "{e}");
    e.to_string()
}

/// The warnings of parsing `text`, asserting it parses.
fn warns(text: &str) -> Vec<String> {
    p(text).expect("expected to parse").warnings
}

fn shell(line: usize, text: &str) -> Step {
    Step::new(Action::Shell(text.to_string()), line)
}

fn standard(wf: &Workflow) -> &[Step] {
    match &wf.kind {
        Kind::Standard(s) => s,
        Kind::MapReduce(_) => panic!("expected a standard workflow"),
    }
}

fn mapreduce(wf: &Workflow) -> &MapReduce {
    match &wf.kind {
        Kind::MapReduce(m) => m,
        Kind::Standard(_) => panic!("expected a MapReduce workflow"),
    }
}

#[test]
fn real_test_resume_example_parses_as_a_list() {
    let wf = p(TEST_RESUME).unwrap();
    assert_eq!(wf.name, "test");
    assert_eq!(wf.path, Path::new("wf/test.yml"));
    assert_eq!(wf.hash, fnv1a64_hex(TEST_RESUME.as_bytes()));
    assert!(wf.env.is_empty() && wf.merge.is_none() && wf.warnings.is_empty());
    assert_eq!(
        standard(&wf),
        [
            shell(3, "echo \"Step 1 - Starting workflow\""),
            shell(4, "echo \"Step 2 - Processing data\""),
            shell(5, "exit 1"),
            shell(6, "echo \"Step 4 - This should run on resume\""),
            shell(7, "echo \"Step 5 - Final step\""),
        ]
    );
}

/// `MAPREDUCE_JSON_INPUT` with its two invalid lines quoted, nothing else changed.
fn json_input_example_fixed() -> String {
    let fixed = MAPREDUCE_JSON_INPUT
        .replace(
            "- shell: echo \"Processing item ${item.id}: ${item.task} for ${item.file}\"",
            "- shell: 'echo \"Processing item ${item.id}: ${item.task} for ${item.file}\"'",
        )
        .replace(
            "- shell: echo \"Successful: ${map.successful}, Failed: ${map.failed}\"",
            "- shell: 'echo \"Successful: ${map.successful}, Failed: ${map.failed}\"'",
        );
    assert_eq!(fixed.matches("- shell: 'echo").count(), 2);
    fixed
}

#[test]
fn real_mapreduce_json_input_example_verbatim_is_invalid_yaml_and_the_error_says_why() {
    // `- shell: echo "Processing item ${item.id}: ..."` is a plain scalar containing `: `,
    // which YAML forbids; libyaml (also behind 0.4.4's serde_yaml) stops at the second colon.
    assert_eq!(
        err(MAPREDUCE_JSON_INPUT),
        "`wf/test.yml`:30:46: mapping values are not allowed in this context; a plain value \
         cannot contain `: ` — quote the whole value (`shell: 'echo \"a: b\"'`) or use a block \
         scalar (`shell: |`)"
    );
}

#[test]
fn real_mapreduce_json_input_example_parses_once_quoted() {
    let wf = p(&json_input_example_fixed()).unwrap();
    assert_eq!(wf.name, "process-work-items");
    let mr = mapreduce(&wf);
    assert_eq!(mr.setup.len(), 2);
    assert_eq!(mr.setup[0].line, 8);
    assert!(mr.setup[0]
        .text()
        .starts_with("cat > work-items.json <<EOF\n{\n  \"items\": ["));
    assert!(mr.setup[0].text().ends_with("EOF\n"));
    assert_eq!(mr.setup[1].line, 18);
    assert_eq!(
        mr.map,
        MapSpec {
            input: "work-items.json".into(),
            json_path: Some("$.items[*]".into()),
            filter: None,
            sort_by: None,
            max_items: None,
            offset: None,
            distinct: None,
            max_parallel: MaxParallel::Count(3),
            agent_template: vec![
                shell(
                    30,
                    "echo \"Processing item ${item.id}: ${item.task} for ${item.file}\""
                ),
                shell(
                    31,
                    "# Simulate processing\nsleep 1\necho \"Completed ${item.task} on ${item.file}\"\n"
                ),
            ],
        }
    );
    assert_eq!(
        mr.reduce,
        [
            shell(47, "echo \"Processed ${map.total} items\""),
            shell(
                48,
                "echo \"Successful: ${map.successful}, Failed: ${map.failed}\""
            ),
            shell(49, "rm -f work-items.json"),
        ]
    );
    assert_eq!(mr.error_policy, ErrorPolicy::default());
    assert!(mr.error_policy.continue_on_failure);
    assert_eq!(
        wf.warnings,
        [
            "`wf/test.yml`:42:3: `map.timeout_config` is only advisory in Prodigy 0.4.4 and is \
          ignored; use a step `timeout`"
        ]
    );
}

#[test]
fn fnv1a64_matches_reference_vectors() {
    assert_eq!(fnv1a64_hex(b""), "cbf29ce484222325");
    assert_eq!(fnv1a64_hex(b"a"), "af63dc4c8601ec8c");
    assert_eq!(fnv1a64_hex(b"foobar"), "85944171f73967e8");
}

#[test]
fn mode_is_chosen_by_the_key_not_the_text() {
    let text = "# mode: mapreduce\nname: x\ncommands:\n  - shell: \"echo 'mode: mapreduce'\"\n";
    let wf = p(text).unwrap();
    assert_eq!(standard(&wf).len(), 1);
    let wf =
        p("mode: 'mapreduce'\nmap:\n  input: a.json\n  agent_template:\n    - shell: x\n").unwrap();
    assert_eq!(mapreduce(&wf).map.input, "a.json");
    assert_eq!(wf.name, "test");
    let wf = p("mode: standard\ncommands: [{shell: a}]\n").unwrap();
    assert_eq!(standard(&wf).len(), 1);
    assert_eq!(
        err("mode: map-reduce\ncommands: []\n"),
        "`wf/test.yml`:1:7: `mode` must be `mapreduce` or `standard`, found `map-reduce`"
    );
}

#[test]
fn standard_map_form_with_env_and_merge() {
    let text = "name: build\nenv:\n  V: 1.10\n  N: 3\n  B: true\n  S: text\ncommands:\n  - \
                claude: /prodigy-lint\n    commit_required: true\n  - \"/legacy-cmd arg\"\n\
                merge:\n  commands:\n    - shell: git merge ${merge.source_branch}\n  timeout: 600\n";
    let wf = p(text).unwrap();
    assert_eq!(wf.name, "build");
    let env: Vec<(&str, &str)> = wf
        .env
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(
        env,
        [("B", "true"), ("N", "3"), ("S", "text"), ("V", "1.10")]
    );
    let steps = standard(&wf);
    assert_eq!(steps[0].action, Action::Claude("/prodigy-lint".into()));
    assert!(steps[0].commit_required);
    assert_eq!(steps[0].line, 8);
    assert_eq!(steps[1].action, Action::Claude("/legacy-cmd arg".into()));
    assert_eq!(steps[1].line, 10);
    let merge = wf.merge.as_ref().unwrap();
    assert_eq!(merge[0].text(), "git merge ${merge.source_branch}");
    assert_eq!(wf.merge_timeout, Some(600));
}

#[test]
fn step_options_parse() {
    let text = "- shell: make test\n  timeout: 30\n  capture_output: true\n  on_failure:\n    \
                claude: /fix ${shell.output}\n    max_attempts: 3\n    fail_workflow: true\n\
                - claude: /review\n  capture_output: review_notes\n  on_failure: echo failed\n\
                - shell: a\n  capture_output: false\n  on_failure: /prodigy-debug\n\
                - claude: /x\n  capture_output: true\n";
    let wf = p(text).unwrap();
    let s = standard(&wf);
    assert_eq!(s[0].timeout, Some(30));
    assert_eq!(s[0].capture.as_deref(), Some("shell"));
    assert_eq!(
        s[0].on_failure,
        Some(OnFailure {
            action: Action::Claude("/fix ${shell.output}".into()),
            steps: Vec::new(),
            ignore: false,
            max_attempts: 3,
            fail_workflow: true,
            commit_required: false,
        })
    );
    assert_eq!(s[1].capture.as_deref(), Some("review_notes"));
    let of = s[1].on_failure.as_ref().unwrap();
    assert_eq!(
        (&of.action, of.max_attempts, of.fail_workflow),
        (&Action::Shell("echo failed".into()), 1, false)
    );
    assert_eq!(s[2].capture, None);
    assert_eq!(
        s[2].on_failure.as_ref().unwrap().action,
        Action::Claude("/prodigy-debug".into())
    );
    assert_eq!(s[3].capture.as_deref(), Some("claude"));
}

#[test]
fn on_failure_0_4_4_test_debug_shape_parses() {
    let text = "- shell: cargo test\n  on_failure:\n    claude: /prodigy-debug-test-failure\n    \
                max_retries: 2\n    fail_workflow: false\n    commit_required: true\n";
    let of = standard(&p(text).unwrap())[0].on_failure.clone().unwrap();
    assert_eq!(of.max_attempts, 2);
    assert!(of.commit_required && !of.fail_workflow);
}

#[test]
fn mapreduce_full_form() {
    let text = r#"name: full
mode: mapreduce
env:
  MAXP: 4
setup:
  commands:
    - shell: ./gen.sh > items.json
  timeout: 120
map:
  input: "./list-items.sh"
  json_path: "$.items"
  filter: "item.prio > 1 && !(item.skip == true)"
  sort_by: "prio DESC, id"
  max_items: 10
  offset: 2
  distinct: item.file
  max_parallel: "${MAXP}"
  agent_template:
    commands:
      - claude: /fix ${item.file}
reduce:
  commands:
    - shell: echo ${map.results}
error_policy:
  on_item_failure: stop
  max_failures: 2
continue_on_failure: false
failure_threshold: 0.25
"#;
    let wf = p(text).unwrap();
    assert_eq!(wf.env.get("MAXP").map(String::as_str), Some("4"));
    let mr = mapreduce(&wf);
    assert_eq!(mr.setup_timeout, Some(120));
    assert_eq!(mr.setup[0].text(), "./gen.sh > items.json");
    assert_eq!(mr.map.max_parallel, MaxParallel::Var("MAXP".into()));
    assert_eq!(
        mr.map.filter.as_deref(),
        Some("item.prio > 1 && !(item.skip == true)")
    );
    assert_eq!(mr.map.sort_by.as_deref(), Some("prio DESC, id"));
    assert_eq!((mr.map.max_items, mr.map.offset), (Some(10), Some(2)));
    assert_eq!(mr.map.distinct.as_deref(), Some("item.file"));
    assert_eq!(
        mr.map.agent_template[0].action,
        Action::Claude("/fix ${item.file}".into())
    );
    assert_eq!(mr.reduce.len(), 1);
    assert_eq!(
        mr.error_policy,
        ErrorPolicy {
            on_item_failure: OnItemFailure::Stop,
            continue_on_failure: false,
            max_failures: Some(2),
            failure_threshold: Some(0.25),
        }
    );
}

#[test]
fn max_parallel_forms() {
    let mp = |v: &str| {
        p(&format!(
            "mode: mapreduce\nmap:\n  input: x\n  max_parallel: {v}\n  agent_template: [{{shell: a}}]\n"
        ))
        .map(|wf| mapreduce(&wf).map.max_parallel.clone())
    };
    assert_eq!(mp("3").unwrap(), MaxParallel::Count(3));
    assert_eq!(mp("'5'").unwrap(), MaxParallel::Count(5));
    assert_eq!(mp("$N").unwrap(), MaxParallel::Var("N".into()));
    assert_eq!(mp("\"${N_2}\"").unwrap(), MaxParallel::Var("N_2".into()));
    let e = mp("0").unwrap_err().to_string();
    assert_eq!(
        e,
        "`wf/test.yml`:4:17: `max_parallel` must be a positive whole number, found `0`"
    );
    let e = mp("'$1x'").unwrap_err().to_string();
    assert!(
        e.starts_with("`wf/test.yml`:4:17: `max_parallel` must be a positive number or `$NAME`"),
        "{e}"
    );
    assert!(mp("2.5").is_err());
}

#[test]
fn unknown_keys_are_warnings_with_line_column_and_a_hint() {
    assert_eq!(
        warns("- shell: echo\n  shel: echo\n"),
        ["`wf/test.yml`:2:3: unknown key `shel` in a step (did you mean `shell`?); it is ignored"]
    );
    assert_eq!(
        warns("name: a\ncommands:\n  - shell: a\nstepz: 1\n"),
        ["`wf/test.yml`:4:1: unknown key `stepz` in the workflow (did you mean `steps`?); it is \
          ignored"]
    );
    assert_eq!(
        warns("name: a\ncommands:\n  - shell: a\nzzz: 1\n"),
        ["`wf/test.yml`:4:1: unknown key `zzz` in the workflow; it is ignored"]
    );
    assert_eq!(
        warns(
            "mode: mapreduce\nmap:\n  input: x\n  agent_template: [{shell: a}]\n  max_paralel: 3\n"
        ),
        ["`wf/test.yml`:5:3: unknown key `max_paralel` in `map` (did you mean `max_parallel`?); \
          it is ignored"]
    );
    assert_eq!(
        warns(
            "mode: mapreduce\nmap:\n  input: x\n  agent_template: [{shell: a}]\nerror_policy:\n  \
             max_failure: 3\n"
        ),
        [
            "`wf/test.yml`:6:3: unknown key `max_failure` in `error_policy` (did you mean \
          `max_failures`?); it is ignored"
        ]
    );
    assert_eq!(
        warns("- shell: a\n  on_failure: {shell: b, max_attempt: 2}\n"),
        [
            "`wf/test.yml`:2:26: unknown key `max_attempt` in `on_failure` (did you mean \
          `max_attempts`?); it is ignored"
        ]
    );
}

#[test]
fn keys_prodigy_run_does_not_run_yet_parse_and_are_listed_as_features() {
    let wf = p(concat!(
        "name: x\ncommands:\n  - shell: make\n    when: \"${a} == 1\"\n",
        "    on_success: {shell: ok}\n",
        "  - foreach: {foreach: [a, b], do: [{shell: \"echo ${item}\"}]}\n"
    ))
    .unwrap();
    let names: Vec<(&str, usize, usize)> = wf
        .features
        .iter()
        .map(|(f, l, c)| (f.as_str(), *l, *c))
        .collect();
    assert_eq!(
        names,
        [("when", 4, 5), ("on_success", 5, 5), ("foreach", 6, 5)]
    );
    assert_eq!(
        err("mode: mapreduce\nsecrets: {A: 1}\nmap: {input: x, agent_template: [{shell: a}]}\n"),
        "`wf/test.yml`:2:14: `secrets.A` must be the name of an environment variable or \
         `{provider: env|file, key}`, found `1`"
    );
    assert_eq!(
        err("mode: mapreduce\nmap: {input: x, distinct: true, agent_template: [{shell: a}]}\n"),
        "`wf/test.yml`:2:27: `map.distinct` must be a string, found `true`"
    );
}

#[test]
fn wrong_types_show_the_value_position() {
    assert_eq!(
        err("- shell: a\n  commit_required: yes please\n"),
        "`wf/test.yml`:2:20: `commit_required` must be true or false, found `yes please`"
    );
    assert_eq!(
        err("- shell: a\n  timeout: 0\n"),
        "`wf/test.yml`:2:12: `timeout` must be a positive whole number of seconds, found `0`"
    );
    assert_eq!(
        err("- shell: a\n  timeout: 30s\n"),
        "`wf/test.yml`:2:12: `timeout` must be a positive whole number of seconds, found `30s`"
    );
    assert_eq!(
        err("- shell: [a, b]\n"),
        "`wf/test.yml`:1:3: `shell` must be a string, found a list"
    );
    assert_eq!(
        err("- shell: a\n  capture_output: 1bad\n"),
        "`wf/test.yml`:2:19: `capture_output` must be true, false or a variable name \
         ([A-Za-z_][A-Za-z0-9_]*), found `1bad`"
    );
    assert_eq!(
        err("name: x\ncommands: {shell: a}\n"),
        "`wf/test.yml`:2:1: `commands` must be a list of steps, found a map"
    );
    assert_eq!(
        err("env:\n  A-B: x\ncommands: [{shell: a}]\n"),
        "`wf/test.yml`:2:3: `env` name `A-B` is not a variable name ([A-Za-z_][A-Za-z0-9_]*)"
    );
    assert_eq!(
        err("env:\n  A: [x]\ncommands: [{shell: a}]\n"),
        "`wf/test.yml`:2:3: `env.A` must be a string, number, boolean or a map (`{secret: true, \
         value}`, `{command}`, `{condition, when_true, when_false}`), found a list"
    );
    assert_eq!(
        err("name: [a]\ncommands: [{shell: a}]\n"),
        "`wf/test.yml`:1:1: `name` must be a string, found a list"
    );
}

#[test]
fn steps_need_exactly_one_command() {
    assert_eq!(
        err("- commit_required: true\n"),
        "`wf/test.yml`:1:3: a step needs an action: `shell:`, `claude:`, `write_file:` or \
         `foreach:` (or a legacy `name:`)"
    );
    assert_eq!(
        err("- shell: a\n  claude: /b\n"),
        "`wf/test.yml`:2:3: a step has both `shell` and `claude`; split it into two steps"
    );
    assert_eq!(
        err("- shell: \"  \"\n"),
        "`wf/test.yml`:1:10: `shell` is empty"
    );
    assert_eq!(
        err("- 42\n"),
        "`wf/test.yml`:1:3: a step in `the workflow` must be a map with `shell:` or `claude:`, \
         found a number"
    );
    assert_eq!(
        err("- shell: a\n  on_failure: {max_attempts: 2}\n"),
        "`wf/test.yml`:2:3: `on_failure` needs `shell:`, `claude:` or `commands:`"
    );
}

#[test]
fn error_policy_rules() {
    let base = "mode: mapreduce\nmap: {input: x, agent_template: [{shell: a}]}\n";
    assert_eq!(
        err(&format!("{base}on_item_failure: retry\n")),
        "`wf/test.yml`:3:18: `on_item_failure: retry` is not supported by prodigy run; use \
         `dlq` and `prodigy dlq retry JOB`"
    );
    assert_eq!(
        err(&format!(
            "{base}error_policy:\n  on_item_failure: custom_handler\n"
        )),
        "`wf/test.yml`:4:20: `on_item_failure` must be `dlq`, `skip` or `stop`, found \
         `custom_handler`"
    );
    assert_eq!(
        err(&format!(
            "{base}max_failures: 1\nerror_policy:\n  max_failures: 2\n"
        )),
        "`wf/test.yml`:3:1: `max_failures` is given both at top level and in `error_policy` \
         (line 5); keep one"
    );
    assert_eq!(
        err(&format!("{base}failure_threshold: 20\n")),
        "`wf/test.yml`:3:20: `failure_threshold` must be a fraction from 0 to 1 (0.2 = 20%), \
         found `20`"
    );
    let wf = p(&format!(
        "{base}on_item_failure: skip\nerror_collection: aggregate\nfailure_threshold: 1\n"
    ))
    .unwrap();
    let pol = &mapreduce(&wf).error_policy;
    assert_eq!(pol.on_item_failure, OnItemFailure::Skip);
    assert_eq!(pol.failure_threshold, Some(1.0));
    assert_eq!(wf.warnings.len(), 1);
    assert!(
        wf.warnings[0].starts_with("`wf/test.yml`:4:1: `error_collection`"),
        "{:?}",
        wf.warnings
    );
}

#[test]
fn mapreduce_required_parts() {
    assert_eq!(
        err("mode: mapreduce\nmap:\n  json_path: $.items\n  agent_template: [{shell: a}]\n"),
        "`wf/test.yml`:2:1: `map.input` is required (a JSON file or a command)"
    );
    assert_eq!(
        err("mode: mapreduce\nmap:\n  input: x\n"),
        "`wf/test.yml`:2:1: `map.agent_template` is required (the steps each agent runs)"
    );
    assert_eq!(
        err("mode: mapreduce\nmap:\n  input: x\n  agent_template: []\n"),
        "`wf/test.yml`:4:3: `map.agent_template` has no steps"
    );
    assert_eq!(
        err("name: a\nmode: mapreduce\nreduce: [{shell: a}]\n"),
        "`wf/test.yml`:1:1: a MapReduce workflow needs `map:` with `input` and `agent_template`"
    );
    assert_eq!(
        err("mode: mapreduce\nmap: {input: x, json_path: '$..id', agent_template: [{shell: a}]}\n"),
        "`wf/test.yml`:2:28: `map.json_path`: recursive descent `..` at offset 1 is not \
         supported (supported: `$`, `.key`, `['key']`, `[N]`, `[*]`)"
    );
    assert_eq!(
        err(
            "mode: mapreduce\nmap:\n  input: x\n  filter: prio >\n  agent_template: [{shell: a}]\n"
        ),
        "`wf/test.yml`:4:11: `map.filter`: column 7: expression ends too early; expected a value"
    );
    assert_eq!(
        err(
            "mode: mapreduce\nmap:\n  input: x\n  filter: \"p matches '(a'\"\n  \
             agent_template: [{shell: a}]\n"
        ),
        "`wf/test.yml`:4:11: `map.filter`: column 11: invalid regex `(a`: found open group \
         without closing ')'"
    );
    assert_eq!(
        err(
            "mode: mapreduce\nmap:\n  input: x\n  distinct: \"a..b\"\n  \
             agent_template: [{shell: a}]\n"
        ),
        "`wf/test.yml`:4:13: `map.distinct`: column 2: `a..b` is not a field path (e.g. \
         `priority`, `item.meta.size`, `tags[0]`)"
    );
    assert!(err(
        "mode: mapreduce\nmap:\n  input: x\n  sort_by: p up\n  agent_template: [{shell: a}]\n"
    )
    .starts_with("`wf/test.yml`:4:12: `map.sort_by`: `p up`: expected"));
}

#[test]
fn mapreduce_keys_in_a_standard_workflow_say_add_mode() {
    assert_eq!(
        warns("name: a\nmap:\n  input: x\ncommands: [{shell: a}]\n"),
        [
            "`wf/test.yml`:2:1: `map` belongs to MapReduce workflows and is ignored here; add \
          `mode: mapreduce` at top level"
        ]
    );
    assert_eq!(
        err("name: a\n"),
        "`wf/test.yml`:1:1: a workflow map needs `commands:` (the steps), or `mode: mapreduce` \
         with `map:`"
    );
}

#[test]
fn empty_scalar_and_syntax_errors() {
    assert_eq!(
        err(""),
        "`wf/test.yml`:1:1: the workflow file is empty; expected a list of steps, a map with \
         `commands:`, or `mode: mapreduce`"
    );
    assert!(err("# nothing here\n\n").contains("the workflow file is empty"));
    assert_eq!(
        err("just a string\n"),
        "`wf/test.yml`:1:1: expected a list of steps or a map, found a string"
    );
    assert_eq!(err("[]\n"), "`wf/test.yml`:1:1: the workflow has no steps");
    let e = err("- shell: a\n  - shell: b\n");
    assert!(e.starts_with("`wf/test.yml`:2:3: "), "{e}");
    let e = err("- shell: a\n---\n- shell: b\n");
    assert!(e.contains("more than one document"), "{e}");
    assert_eq!(
        err("- shell: a\n  timeout: 1\n  timeout: 2\n"),
        "`wf/test.yml`:3:3: duplicate key `timeout` (first at line 2); keep one"
    );
}

#[test]
fn alias_bomb_is_refused_quickly() {
    let mut text = String::from(
        "a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n",
    );
    let names = ["a", "b", "c", "d", "e", "f", "g", "h", "i"];
    for w in names.windows(2) {
        let refs = vec![format!("*{}", w[0]); 9].join(",");
        text.push_str(&format!("{}: &{} [{refs}]\n", w[1], w[1]));
    }
    text.push_str("commands: [{shell: echo}]\n");
    // Without a limit this document expands to 9^9 strings (minutes and gigabytes); the bound
    // is loose so a loaded CI machine cannot make it flaky, and still far below that.
    let start = Instant::now();
    let e = err(&text);
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "{:?}",
        start.elapsed()
    );
    assert!(
        e.contains("repetition limit exceeded") || e.contains("expands to more than"),
        "{e}"
    );
    assert!(e.starts_with("`wf/test.yml`:"), "{e}");
}

#[test]
fn deep_nesting_is_refused() {
    let text = format!("{}{}", "[".repeat(200), "]".repeat(200));
    let e = err(&text);
    assert!(e.contains("recursion limit exceeded"), "{e}");
}

#[test]
fn step_display_is_one_short_line() {
    let s = shell(1, "echo hi");
    assert_eq!(s.display(), "shell: echo hi");
    let long = shell(1, &"x".repeat(100));
    assert_eq!(long.display(), format!("shell: {}…", "x".repeat(57)));
    let multi = shell(1, "# first\nsecond\n");
    assert_eq!(multi.display(), "shell: # first…");
    let exact = shell(1, &"y".repeat(60));
    assert_eq!(exact.display(), format!("shell: {}", "y".repeat(60)));
    let claude = Step {
        action: Action::Claude("/prodigy-lint".into()),
        ..shell(1, "")
    };
    assert_eq!(claude.display(), "claude: /prodigy-lint");
    assert_eq!(claude.text(), "/prodigy-lint");
}

#[test]
fn load_reads_the_file_and_reports_missing_ones() {
    let dir = std::env::temp_dir().join(format!("prodigy-wf-load-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("resume-test.yaml");
    std::fs::write(&path, TEST_RESUME).unwrap();
    let wf = load(&path).unwrap();
    assert_eq!(wf.name, "resume-test");
    assert_eq!(standard(&wf).len(), 5);
    let missing = dir.join("missing.yml");
    let e = load(&missing).unwrap_err();
    assert_eq!(e.kind(), crate::error::ErrorKind::Usage);
    assert_eq!(
        e.to_string(),
        format!(
            "cannot read workflow file `{}`: No such file or directory",
            missing.display()
        )
    );
    std::fs::write(&path, b"- shell: \xff\n").unwrap();
    assert!(load(&path).unwrap_err().to_string().contains("not UTF-8"));
    std::fs::remove_dir_all(&dir).unwrap();
}
