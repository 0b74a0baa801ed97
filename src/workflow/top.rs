//! The top level of a workflow file and its phases (run.md §2 "Forms"): standard and
//! MapReduce forms, `setup`/`reduce`/`merge`/`agent_template` phases, `error_policy`.

use super::cx::{show, Cx, Entries};
use super::keys::Cx as K;
use super::yaml::{self, Key, Node, NodeKind, Scalar};
use super::{
    fnv1a64_hex, CaptureOutput, EnvValue, ErrorPolicy, Kind, MapReduce, OnItemFailure, Step,
    Workflow,
};
use crate::error::Result;
use std::collections::BTreeMap;

/// The error-policy keys, allowed at top level and inside `error_policy`.
const POLICY_KEYS: &[&str] = &[
    "on_item_failure",
    "continue_on_failure",
    "max_failures",
    "failure_threshold",
    "error_collection",
];

impl Cx<'_> {
    pub(crate) fn workflow(&self, text: &str) -> Result<Workflow> {
        let root = yaml::parse(text).map_err(|e| {
            let mut msg = e.message;
            if msg.starts_with("mapping values are not allowed") {
                // The classic: `shell: echo "a: b"` (a plain value cannot contain `: `).
                msg.push_str(
                    "; a plain value cannot contain `: ` — quote the whole value \
                     (`shell: 'echo \"a: b\"'`) or use a block scalar (`shell: |`)",
                );
            }
            self.err(e.pos, msg)
        })?;
        let stem = self
            .path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "workflow".to_string());
        let mut wf = Workflow {
            name: stem,
            path: self.path.to_path_buf(),
            hash: fnv1a64_hex(text.as_bytes()),
            env: BTreeMap::new(),
            merge: None,
            merge_timeout: None,
            kind: Kind::Standard(Vec::new()),
            warnings: Vec::new(),
            description: None,
            env_values: Vec::new(),
            secrets: Vec::new(),
            env_files: Vec::new(),
            profiles: Vec::new(),
            features: Vec::new(),
        };
        let mut failed = None;
        match &root.kind {
            NodeKind::Seq(_) => match self.steps(&root, "the workflow", root.pos) {
                Ok(steps) => wf.kind = Kind::Standard(steps),
                Err(e) => failed = Some(e),
            },
            NodeKind::Map(m) => {
                let mapreduce = match self.get(K::Standard, m, "mode") {
                    None => false,
                    Some((k, v)) => match v.kind {
                        NodeKind::Scalar(Scalar::Str(ref s), _) if s == "mapreduce" => true,
                        NodeKind::Scalar(Scalar::Str(ref s), _) if s == "standard" => false,
                        _ => {
                            return Err(self.err(
                                v.pos_or(k),
                                format!(
                                    "`mode` must be `mapreduce` or `standard`, found {}",
                                    show(v)
                                ),
                            ))
                        }
                    },
                };
                let cx = if mapreduce { K::MapReduce } else { K::Standard };
                let _ = self.get(cx, m, "mode");
                if let Err(e) = self.top(&mut wf, m, cx) {
                    failed = Some(e);
                }
                if mapreduce {
                    match self.mapreduce(&root, m) {
                        Ok(mr) => wf.kind = Kind::MapReduce(mr),
                        Err(e) => failed = Some(e),
                    }
                } else {
                    self.standard_keys(m);
                    let commands = self.get(K::Standard, m, "commands");
                    let steps = self.get(K::Standard, m, "steps");
                    let (k, v) = match (commands, steps) {
                        (Some(c), None) | (None, Some(c)) => c,
                        (Some(_), Some((sk, _))) => {
                            return Err(self.err(
                                sk.pos,
                                "the workflow has both `commands` and `steps`; they mean the \
                                 same, keep one",
                            ))
                        }
                        (None, None) => {
                            return Err(self.err(
                                root.pos,
                                "a workflow map needs `commands:` (the steps), or `mode: \
                                 mapreduce` with `map:`",
                            ))
                        }
                    };
                    match self.steps(v, &k.name, k.pos) {
                        Ok(steps) => wf.kind = Kind::Standard(steps),
                        Err(e) => failed = Some(e),
                    }
                }
            }
            NodeKind::Scalar(Scalar::Null, _) => {
                return Err(self.err(
                    root.pos,
                    "the workflow file is empty; expected a list of steps, a map with \
                     `commands:`, or `mode: mapreduce`",
                ))
            }
            NodeKind::Scalar(..) => {
                return Err(self.err(
                    root.pos,
                    format!(
                        "expected a list of steps or a map, found {}",
                        root.describe()
                    ),
                ))
            }
        }
        if let Some(e) = failed {
            return Err(e);
        }
        if let Kind::Standard(steps) = &wf.kind {
            if steps.is_empty() {
                return Err(self.err(root.pos, "the workflow has no steps"));
            }
        }
        Ok(wf)
    }

    /// The keys both forms share: `name`, `description`, `env`, `secrets`, `env_files`,
    /// `profiles`, `merge`. Each is read on its own; the last failure is returned.
    fn top(&self, wf: &mut Workflow, m: &Entries, cx: K) -> Result<()> {
        let mut failed = None;
        let mut keep = |r: Result<()>| {
            if let Err(e) = r {
                failed = Some(e);
            }
        };
        if let Some((k, v)) = self.get(cx, m, "name") {
            keep(self.string(k, v, "name").map(|s| wf.name = s.to_string()));
        }
        if let Some((k, v)) = self.get(cx, m, "description") {
            keep(
                self.string(k, v, "description")
                    .map(|s| wf.description = Some(s.to_string())),
            );
        }
        if let Some((k, v)) = self.get(cx, m, "env") {
            keep(self.env_map(k, v, true).map(|values| {
                for (name, val) in &values {
                    if let EnvValue::Plain(s) = val {
                        wf.env.insert(name.clone(), s.clone());
                    }
                }
                wf.env_values = values;
            }));
        }
        if let Some((k, v)) = self.get(cx, m, "secrets") {
            keep(self.secrets(k, v).map(|s| wf.secrets = s));
        }
        if let Some((k, v)) = self.get(cx, m, "env_files") {
            keep(self.env_files(k, v).map(|s| wf.env_files = s));
        }
        if let Some((k, v)) = self.get(cx, m, "profiles") {
            keep(self.profiles(k, v).map(|s| wf.profiles = s));
        }
        if let Some((k, v)) = self.get(cx, m, "merge") {
            keep(self.phase(k, v, "merge", true).map(|(steps, timeout)| {
                wf.merge = Some(steps);
                wf.merge_timeout = timeout;
            }));
        }
        match failed {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Warn about the keys of a standard workflow map that are not its keys; a MapReduce key
    /// gets a hint to add `mode: mapreduce`.
    fn standard_keys(&self, m: &Entries) {
        for (k, _) in m {
            let name = k.name.as_str();
            if super::keys::known(K::Standard, name) {
                continue;
            }
            if super::keys::known(K::MapReduce, name) {
                self.warn(
                    k.pos,
                    format!(
                        "`{name}` belongs to MapReduce workflows and is ignored here; add `mode: \
                         mapreduce` at top level"
                    ),
                );
                continue;
            }
            self.check_key(k, K::Standard);
        }
    }

    fn mapreduce(&self, root: &Node, m: &Entries) -> Result<MapReduce> {
        self.check_keys(m, K::MapReduce);
        let mut failed = None;
        let mut setup = Vec::new();
        let mut setup_timeout = None;
        let mut capture_outputs = Vec::new();
        if let Some((k, v)) = self.get(K::MapReduce, m, "setup") {
            match self.phase(k, v, "setup", true) {
                Ok((s, t)) => (setup, setup_timeout) = (s, t),
                Err(e) => failed = Some(e),
            }
            if let NodeKind::Map(sm) = &v.kind {
                match self.capture_outputs(sm) {
                    Ok(c) => {
                        if let Some(bad) = c.iter().find(|c| c.command_index >= setup.len()) {
                            let (k, _) = self.get(K::Setup, sm, "capture_outputs").expect("read");
                            failed = Some(self.err(
                                k.pos,
                                format!(
                                    "`capture_outputs.{}` names setup step {} (0-based) but setup has {} step(s)",
                                    bad.name,
                                    bad.command_index,
                                    setup.len()
                                ),
                            ));
                        }
                        capture_outputs = c
                    }
                    Err(e) => failed = Some(e),
                }
            }
        }
        let reduce = match self.get(K::MapReduce, m, "reduce") {
            Some((k, v)) => match self.phase(k, v, "reduce", false) {
                Ok(p) => p.0,
                Err(e) => {
                    failed = Some(e);
                    Vec::new()
                }
            },
            None => Vec::new(),
        };
        let map = match self.get(K::MapReduce, m, "map") {
            Some((mk, mv)) => self.map_spec(mk, mv),
            None => Err(self.err(
                root.pos,
                "a MapReduce workflow needs `map:` with `input` and `agent_template`",
            )),
        };
        let error_policy = self.error_policy(m);
        if let Some(e) = failed {
            return Err(e);
        }
        Ok(MapReduce {
            setup,
            setup_timeout,
            capture_outputs,
            map: map?,
            reduce,
            error_policy: error_policy?,
        })
    }

    fn capture_outputs(&self, sm: &Entries) -> Result<Vec<CaptureOutput>> {
        let Some((k, v)) = self.get(K::Setup, sm, "capture_outputs") else {
            return Ok(Vec::new());
        };
        self.uses("setup.capture_outputs", k.pos);
        let mut out = Vec::new();
        for (ck, cv) in self.map_of(k, v, "`capture_outputs`")? {
            if !super::is_identifier(&ck.name) {
                return Err(self.err(
                    ck.pos,
                    format!(
                        "`capture_outputs` name `{}` is not a variable name ([A-Za-z_][A-Za-z0-9_]*)",
                        ck.name
                    ),
                ));
            }
            let mut c = CaptureOutput {
                name: ck.name.clone(),
                command_index: 0,
                source: "stdout".into(),
                pattern: None,
                json_path: None,
                max_size: 1 << 20,
                default: None,
                multiline: "preserve".into(),
            };
            match &cv.kind {
                NodeKind::Scalar(Scalar::Int(_), _) => {
                    c.command_index = self.uint(ck, cv, 0)? as usize;
                }
                _ => {
                    let cm = self.map_of(ck, cv, &format!("`capture_outputs.{}`", ck.name))?;
                    self.check_keys(cm, K::CaptureOutput);
                    if let Some((a, b)) = self.get(K::CaptureOutput, cm, "command_index") {
                        c.command_index = self.uint(a, b, 0)? as usize;
                    }
                    if let Some((a, b)) = self.get(K::CaptureOutput, cm, "max_size") {
                        c.max_size = self.uint(a, b, 0)?;
                    }
                    if let Some((a, b)) = self.get(K::CaptureOutput, cm, "source") {
                        c.source = self.word(a, b, &["stdout", "stderr", "both"])?;
                    }
                    if let Some((a, b)) = self.get(K::CaptureOutput, cm, "pattern") {
                        let p = self.text(a, b, "pattern")?;
                        if let Err(e) = regex_lite::Regex::new(&p) {
                            return Err(self.err(b.pos, format!("`pattern` is not a regex: {e}")));
                        }
                        c.pattern = Some(p);
                    }
                    if let Some((a, b)) = self.get(K::CaptureOutput, cm, "json_path") {
                        let p = self.text(a, b, "json_path")?;
                        if let Err(e) = super::items::compile_path(&p) {
                            return Err(self.err(b.pos, format!("`json_path`: {e}")));
                        }
                        c.json_path = Some(p);
                    }
                    if let Some((a, b)) = self.get(K::CaptureOutput, cm, "default") {
                        c.default = Some(self.text(a, b, "default")?);
                    }
                    if let Some((a, b)) = self.get(K::CaptureOutput, cm, "multiline") {
                        c.multiline = self.word(
                            a,
                            b,
                            &["preserve", "join", "first_line", "last_line", "array"],
                        )?;
                    }
                }
            }
            out.push(c);
        }
        Ok(out)
    }

    fn error_policy(&self, m: &Entries) -> Result<ErrorPolicy> {
        let mut error_policy = ErrorPolicy::default();
        let nested = match self.get(K::MapReduce, m, "error_policy") {
            Some((k, v)) => {
                let pm = self.map_of(k, v, "`error_policy`")?;
                self.check_keys(pm, K::ErrorPolicy);
                pm
            }
            None => &[],
        };
        let mut failed = None;
        for key in POLICY_KEYS {
            let top = self.get(K::MapReduce, m, key);
            let inner = self.get(K::ErrorPolicy, nested, key);
            let (k, v) = match (top, inner) {
                (Some((tk, _)), Some((ik, _))) => {
                    failed = Some(self.err(
                        tk.pos,
                        format!(
                            "`{key}` is given both at top level and in `error_policy` (line {}); \
                             keep one",
                            ik.pos.line
                        ),
                    ));
                    continue;
                }
                (Some(e), None) | (None, Some(e)) => e,
                (None, None) => continue,
            };
            if let Err(e) = self.policy_key(&mut error_policy, k, v) {
                failed = Some(e);
            }
        }
        match failed {
            Some(e) => Err(e),
            None => Ok(error_policy),
        }
    }

    fn policy_key(&self, p: &mut ErrorPolicy, k: &Key, v: &Node) -> Result<()> {
        match k.name.as_str() {
            "on_item_failure" => {
                let s = self.string(k, v, "on_item_failure")?;
                p.on_item_failure =
                    match s {
                        "dlq" => OnItemFailure::Dlq,
                        "skip" => OnItemFailure::Skip,
                        "stop" => OnItemFailure::Stop,
                        "retry" => return Err(self.err(
                            v.pos,
                            "`on_item_failure: retry` is not supported by prodigy run; use `dlq` \
                             and `prodigy dlq retry JOB`",
                        )),
                        other => {
                            return Err(self.err(
                                v.pos,
                                format!(
                                    "`on_item_failure` must be `dlq`, `skip` or `stop`, found \
                                 `{other}`"
                                ),
                            ))
                        }
                    };
            }
            "continue_on_failure" => p.continue_on_failure = self.bool(k, v)?,
            "max_failures" => p.max_failures = Some(self.uint(k, v, 0)? as usize),
            "failure_threshold" => {
                let f = match v.kind {
                    NodeKind::Scalar(Scalar::Int(i), _) => i as f64,
                    NodeKind::Scalar(Scalar::Float(f), _) => f,
                    _ => f64::NAN,
                };
                if !(0.0..=1.0).contains(&f) {
                    return Err(self.err(
                        v.pos_or(k),
                        format!(
                            "`failure_threshold` must be a fraction from 0 to 1 (0.2 = 20%), \
                             found {}",
                            show(v)
                        ),
                    ));
                }
                p.failure_threshold = Some(f);
            }
            "error_collection" => self.warn(
                k.pos,
                "`error_collection` is accepted for Prodigy 0.4.4 compatibility and ignored",
            ),
            _ => unreachable!("POLICY_KEYS"),
        }
        Ok(())
    }

    /// `setup`, `reduce`, `merge`, `agent_template`: a list of steps or `{commands, …}`.
    /// Null (all steps commented out) is an empty list.
    pub(crate) fn phase(
        &self,
        k: &Key,
        v: &Node,
        what: &str,
        timeout_allowed: bool,
    ) -> Result<(Vec<Step>, Option<u64>)> {
        match &v.kind {
            NodeKind::Map(m) => {
                let cx = match what {
                    "setup" => K::Setup,
                    "merge" => K::Merge,
                    _ => K::Commands,
                };
                debug_assert_eq!(timeout_allowed, cx != K::Commands);
                self.check_keys(m, cx);
                let timeout = match timeout_allowed
                    .then(|| self.get(cx, m, "timeout"))
                    .flatten()
                {
                    Some((tk, tv)) => Some(self.uint(tk, tv, 1)?),
                    None => None,
                };
                let Some((ck, cv)) = self.get(cx, m, "commands") else {
                    return Err(self.err(k.pos, format!("`{what}` needs `commands:` (the steps)")));
                };
                Ok((self.steps(cv, what, ck.pos)?, timeout))
            }
            NodeKind::Scalar(Scalar::Null, _) => Ok((Vec::new(), None)),
            _ => Ok((self.steps(v, what, k.pos)?, None)),
        }
    }

    /// `map.timeout_config`: checked, then ignored with the caller's warning.
    pub(crate) fn timeout_config(&self, k: &Key, v: &Node) -> Result<()> {
        let m = self.map_of(k, v, "`map.timeout_config`")?;
        self.check_keys(m, K::TimeoutConfig);
        for key in ["agent_timeout_secs", "cleanup_grace_period_secs"] {
            if let Some((a, b)) = self.get(K::TimeoutConfig, m, key) {
                self.uint(a, b, 0)?;
            }
        }
        if let Some((a, b)) = self.get(K::TimeoutConfig, m, "timeout_policy") {
            self.string(a, b, "timeout_policy")?;
        }
        if let Some((a, b)) = self.get(K::TimeoutConfig, m, "enable_monitoring") {
            self.bool(a, b)?;
        }
        let _ = self.get(K::TimeoutConfig, m, "per_command_timeouts");
        Ok(())
    }
}
