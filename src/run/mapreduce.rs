//! MapReduce workflows (run.md §3–§5): setup in the session (parent) worktree → work items →
//! map (agents in nested worktrees, at most `max_parallel` at once, merged one at a time) →
//! reduce in the parent → final merge. A failed agent's worktree is moved out of the parent,
//! beside it (`{session_id}.agent-{fid}`), before its failure is recorded, and no agent
//! worktree is left inside the parent when the map ends: a reduce or merge step's
//! `git add -A` never finds one (run.md §4).
//!
//! Records: `job-state.json` on every phase or status change; `setup-checkpoint.json` after each
//! setup step; a reduce checkpoint after each reduce step; the DLQ as soon as an item fails.
//!
//! The map's state is written so that the bytes a job writes stay linear in its items (issue
//! 25): every 5 agents that ended (or 10 s) the items that ended are appended, one line each, to
//! the job's `map-log.jsonl` and fsynced ([`journal::MapLogWriter`]). A full map checkpoint
//! (every item, `map-checkpoint-{ts}.json`, recording in `map_log_bytes` how much of the log it
//! holds) is written at the start of each map pass, at its end, on interruption, and after a
//! batch only when the log has grown by more than the last full checkpoint's size since it.
//! So the full checkpoints written before the last one add up to at most the log's length, and
//! a job writes at most about twice its log plus twice its final checkpoint (plus one full
//! checkpoint per interruption), where rewriting the whole checkpoint every batch wrote
//! O(items²). A kill loses what it lost before: the lines of the batch not yet appended, as
//! before the checkpoint not yet written; merges stay in git's history and failures in the DLQ,
//! both written first. Resume reads the newest full checkpoint plus the log's later lines
//! ([`journal::newest_map_state`]).
//!
//! The merge commit of an agent names its branch and item, so git's history records every merge
//! before any checkpoint does (see the module doc of [`super`]).

use super::lane::{Lane, LaneEnd};
use super::mapstate::MapState;
use super::merge::finish;
use super::session::{pause, register_orphan, Ctx, Start, Summary, HEARTBEAT};
use super::{exec, worktrees};
use crate::error::{Error, Result};
use crate::store::journal;
use crate::store::records::{
    AgentResult, CompletedWorkItem, DlqFailure, DurationValue, FailedWorkItem, JobPhase, JobState,
    JobStatus, ReduceCheckpoint, SessionStatus, SetupCheckpoint, Timestamp, WorkItem,
    WorkItemProgress, MAP_LOG_FILE_NAME,
};
use crate::workflow::items;
use crate::workflow::{MapReduce, MaxParallel, OnItemFailure, Workflow};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// The job's progress, written into `job-state.json` and the session's `mapreduce_data`.
struct Job {
    phase: JobPhase,
    status: JobStatus,
    created: Timestamp,
    total: u64,
    completed: u64,
    failed: u64,
}

fn write_job(ctx: &mut Ctx, wf: &Workflow, j: &Job) -> Result<()> {
    journal::write_job_state(
        &ctx.layout,
        &JobState {
            job_id: ctx.job_id.clone(),
            session_id: Some(ctx.session.id.clone()),
            workflow_name: Some(wf.name.clone()),
            phase: j.phase,
            status: j.status,
            created_at: Some(j.created),
            updated_at: Some(Timestamp::now()),
            total_items: j.total,
            completed_items: j.completed,
            failed_items: j.failed,
            extra: Default::default(),
        },
    )?;
    if let Some(m) = ctx.session.mapreduce_data.as_mut() {
        m.total_items = Some(j.total);
        m.processed_items = Some(j.completed + j.failed);
        m.failed_items = Some(j.failed);
        m.phase = Some(
            match j.phase {
                JobPhase::Setup => "Setup",
                JobPhase::Map => "Map",
                JobPhase::Reduce => "Reduce",
                JobPhase::Complete => "Complete",
            }
            .into(),
        );
    }
    ctx.save_session()
}

/// One agent: a work item in its own worktree.
struct Agent<'w> {
    index: usize,
    item: WorkItem,
    file_id: String,
    path: PathBuf,
    branch: String,
    lane: Lane<'w>,
    started: Instant,
    started_at: Timestamp,
}

/// A map checkpoint serialized from the map state without copying it (the same JSON as
/// [`crate::store::records::MapCheckpoint`], storage-format §4.4): a long map writes many checkpoints.
#[derive(serde::Serialize)]
struct MapCheckpointRef<'a> {
    phase: &'static str,
    completed_items: &'a [CompletedWorkItem],
    in_progress_items: BTreeMap<&'a str, WorkItemProgress>,
    pending_items: Vec<&'a WorkItem>,
    failed_items: &'a [FailedWorkItem],
    agent_results: &'a Map<String, Value>,
    timestamp: Timestamp,
    map_log_bytes: u64,
}

impl MapState {
    fn checkpoint<'a>(&'a self, running: &'a [Agent<'_>]) -> MapCheckpointRef<'a> {
        let mut in_progress = BTreeMap::new();
        for a in running {
            in_progress.insert(
                a.item.id.as_str(),
                WorkItemProgress {
                    work_item: a.item.clone(),
                    agent_id: format!("agent-{}", a.file_id),
                    started_at: Some(a.started_at),
                    last_update: Some(Timestamp::now()),
                    extra: crate::sort::collect_object([
                        ("branch_name".to_string(), json!(a.branch)),
                        ("worktree_path".to_string(), json!(a.path.to_string_lossy())),
                    ]),
                },
            );
        }
        MapCheckpointRef {
            phase: "map",
            completed_items: &self.completed,
            in_progress_items: in_progress,
            pending_items: self.pending.iter().map(|&i| &self.items[i].0).collect(),
            failed_items: &self.failed,
            agent_results: &self.results,
            timestamp: Timestamp::now(),
            map_log_bytes: self.log_len(),
        }
    }
}

/// Append the items that ended since the last append to the map log (opening it first, which
/// cuts off a torn last line a kill left) and make them durable.
fn append_log(ctx: &Ctx, st: &mut MapState) -> Result<()> {
    if st.log.is_none() {
        st.log = Some(journal::MapLogWriter::open(&ctx.layout, &ctx.job_id)?);
    }
    if let Some(log) = st.log.as_mut() {
        log.append(&st.unlogged)?;
    }
    st.unlogged.clear();
    Ok(())
}

/// A full map checkpoint: the log first (so the checkpoint can say how much of it it holds),
/// then every item in `map-checkpoint-{ts}.json`.
fn save_map(ctx: &mut Ctx, st: &mut MapState, running: &[Agent<'_>]) -> Result<()> {
    append_log(ctx, st)?;
    let (bytes, ts, folded) = {
        let cp = st.checkpoint(running);
        let bytes = crate::store::records::to_json_bytes(&cp);
        (bytes, cp.timestamp, cp.map_log_bytes)
    };
    let p = journal::write_map_checkpoint_bytes(&ctx.layout, &ctx.job_id, &ts, &bytes)?;
    st.folded = folded;
    st.full_bytes = bytes.len() as u64;
    let name = p.file_name().map(|n| n.to_string_lossy().into_owned());
    checkpoint_event(ctx, st, running.len(), name);
    Ok(())
}

/// A batch's checkpoint: the items that ended go to the map log; a full map checkpoint follows
/// only when the log has grown by more than the last full checkpoint's size since it, so the
/// full checkpoints before the last add up to at most the log's length.
fn save_batch(ctx: &mut Ctx, st: &mut MapState, running: &[Agent<'_>]) -> Result<()> {
    append_log(ctx, st)?;
    if st.log_len().saturating_sub(st.folded) > st.full_bytes {
        return save_map(ctx, st, running);
    }
    checkpoint_event(ctx, st, running.len(), Some(MAP_LOG_FILE_NAME.to_string()));
    Ok(())
}

fn checkpoint_event(ctx: &mut Ctx, st: &MapState, running: usize, path: Option<String>) {
    let _ = ctx.events.sync();
    ctx.event(
        "checkpoint_created",
        json!({"phase": "map", "path": path, "completed": st.completed.len(), "failed": st.failed.len(), "pending": st.pending.len(), "in_progress": running}),
    );
}

/// Map checkpoints are written after at least this many agents ended since the last one
/// (run.md §5.3), or [`CHECKPOINT_EVERY`] after it, and on interruption and at the end.
const CHECKPOINT_ITEMS: usize = 5;
/// See [`CHECKPOINT_ITEMS`].
const CHECKPOINT_EVERY: Duration = Duration::from_secs(10);

/// Resolve `map.input` (run.md §2): a JSON file relative to the parent worktree, else a shell
/// command run there whose stdout is the items.
fn load_input(ctx: &mut Ctx, m: &MapReduce) -> Result<Value> {
    let p = ctx.worktree.join(&m.map.input);
    if !m.map.input.is_empty() && p.is_file() {
        let bytes = std::fs::read(&p).map_err(|e| Error::io("read map input", &p, &e))?;
        return serde_json::from_slice(&bytes)
            .map_err(|e| Error::fatal(format!("map input `{}` is not JSON: {e}", p.display())));
    }
    let out = ctx.log_path("map-input.out");
    let log = crate::store::atomic::open_append(&ctx.log_path("setup.log"))
        .map_err(|e| Error::io("open", &ctx.log_path("setup.log"), &e))?;
    let stdout = std::fs::File::create(&out).map_err(|e| Error::io("create", &out, &e))?;
    let mut run = exec::spawn(exec::Spawn {
        argv: vec!["sh".into(), "-c".into(), m.map.input.clone().into()],
        cwd: ctx.worktree.clone(),
        env: ctx.env.clone(),
        stdout,
        stderr: log,
        timeout: Some(Duration::from_secs(300)),
    })
    .map_err(|e| Error::fatal(format!("map input command: {e}")))?;
    let outcome = loop {
        if let Some(o) = run.poll() {
            break o;
        }
        if let Some(sig) = exec::interrupted() {
            run.signal_group(sig);
            break run.finish(super::lane::INTERRUPT_GRACE);
        }
        exec::wait_event(Duration::from_millis(200));
    };
    if !outcome.success() {
        return Err(Error::fatal(format!(
            "map input command `{}` failed: {} (output in `{}`)",
            m.map.input,
            outcome.describe(),
            ctx.log_path("setup.log").display()
        )));
    }
    let text = std::fs::read_to_string(&out).map_err(|e| Error::io("read", &out, &e))?;
    Ok(Value::Array(items::parse_input_text(&text)))
}

fn max_parallel(ctx: &Ctx, m: &MapReduce) -> Result<usize> {
    if let Some(n) = ctx.opts.max_parallel {
        return Ok(n.max(1));
    }
    match &m.map.max_parallel {
        MaxParallel::Count(n) => Ok((*n).max(1)),
        MaxParallel::Var(v) => {
            let name = v
                .trim_start_matches('$')
                .trim_start_matches('{')
                .trim_end_matches('}');
            let val = ctx
                .env
                .iter()
                .rev()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
                .or_else(|| std::env::var(name).ok())
                .ok_or_else(|| {
                    Error::usage(format!("map.max_parallel names `{v}`, which is not set"))
                })?;
            val.trim().parse::<usize>().map(|n| n.max(1)).map_err(|_| {
                Error::usage(format!("map.max_parallel: `{v}` is `{val}`, not a number"))
            })
        }
    }
}

/// Run a MapReduce workflow to its end.
pub(crate) fn run(ctx: &mut Ctx, wf: &Workflow, m: &MapReduce, start: Start) -> Result<Summary> {
    let mut summary = Summary {
        session_id: ctx.session.id.clone(),
        job_id: ctx.job_id.clone(),
        ..Default::default()
    };
    let mut job = Job {
        // A resume past setup never records the job as back in it: `resume` takes a job in
        // setup for one whose reduce has not started, and would run reduce's finished steps
        // and `foreach` items again after a kill before the next phase is written.
        phase: if start.setup_complete {
            JobPhase::Map
        } else {
            JobPhase::Setup
        },
        status: JobStatus::Running,
        created: start.created.unwrap_or_else(Timestamp::now),
        total: 0,
        completed: 0,
        failed: 0,
    };
    write_job(ctx, wf, &job)?;

    // Setup, in the parent worktree; a checkpoint after every step.
    ctx.progress("setup");
    let mut restored = ctx.vars.clone();
    for (k, v) in &start.vars {
        restored.set(k, v.clone());
    }
    // `capture_outputs`: hidden captures on the steps its entries name (run::steps::outputs).
    let setup_steps = super::steps::outputs::setup_steps(&m.setup, &m.capture_outputs);
    let mut setup = Lane::new(
        &setup_steps,
        ctx.worktree.clone(),
        ctx.log_path("setup.log"),
        restored,
        vec![],
        true,
    );
    setup.deadline = m.setup_timeout.map(|t| {
        (
            std::time::Instant::now() + std::time::Duration::from_secs(t),
            t,
        )
    });
    setup.next = if start.setup_complete {
        m.setup.len()
    } else {
        start.from_step.min(m.setup.len())
    };
    let base_vars = ctx.vars.clone();
    let setup_cp = |ctx: &mut Ctx, lane: &Lane<'_>, done: usize, completed: bool| -> Result<()> {
        // What setup set or changed: a capture shadowing an `--arg` (or any variable the run
        // started with) is kept too, or a resume would restore the old value.
        let outputs: Map<String, Value> = lane.vars.changed_from(&base_vars);
        let mut c = SetupCheckpoint {
            completed,
            outputs,
            timestamp: Some(Timestamp::now()),
            ..Default::default()
        };
        c.extra.insert("completed_steps".into(), json!(done));
        if let Some(h) = lane.head(ctx) {
            c.extra.insert("head".into(), json!(h));
        }
        journal::write_setup_checkpoint(&ctx.layout, &ctx.job_id, &c)
    };
    if !start.setup_complete {
        if let Some(i) = setup.skip_if_committed(ctx, start.head.as_deref()) {
            setup_cp(ctx, &setup, i + 1, false)?;
        }
    }
    let end = ctx.run_lane(&mut setup, |ctx, lane, _| {
        setup_cp(ctx, lane, lane.next, false)
    })?;
    match end {
        LaneEnd::Finished => {}
        LaneEnd::Failed { error, .. } => {
            let error = format!("setup failed: {error}");
            return fail(ctx, wf, &mut job, summary, error);
        }
        LaneEnd::Interrupted(sig) => {
            job.status = JobStatus::Paused;
            write_job(ctx, wf, &job)?;
            return pause(ctx, summary, sig);
        }
        LaneEnd::StepDone(_) => unreachable!(),
    }
    if !start.setup_complete {
        // `capture_outputs` → `${NAME}` for agents, reduce and merge (in the checkpoint).
        for i in 0..m.setup.len() {
            let r = super::steps::outputs::apply_capture_outputs(
                &setup_steps,
                &m.capture_outputs,
                i,
                &mut setup.vars,
            );
            if let Err(e) = r {
                return fail(ctx, wf, &mut job, summary, format!("setup failed: {e}"));
            }
        }
        setup_cp(ctx, &setup, m.setup.len(), true)?;
        ctx.event("setup_completed", json!({"steps": m.setup.len()}));
    }
    ctx.vars = setup.vars.clone();

    // Work items: from the checkpoint when resuming, else from the input.
    let fresh = start.map.is_none();
    let mut st = match start.map {
        Some(st) => st,
        None => {
            let input = load_input(ctx, m)?;
            let selected = items::select(&input, &m.map)
                .map_err(|e| Error::fatal(format!("map input: {e}")))?;
            let ids =
                items::item_ids(&selected).map_err(|e| Error::fatal(format!("map input: {e}")))?;
            let mut st = MapState::default();
            let mut seen = std::collections::BTreeMap::new();
            for (i, (data, id)) in selected.into_iter().zip(ids).enumerate() {
                let fid = items::file_id(&id, i);
                // Two items must never share an agent worktree or branch name.
                if let Some(j) = seen.insert(fid.clone(), i) {
                    return fail(
                        ctx,
                        wf,
                        &mut job,
                        summary,
                        format!("map input: work items {j} and {i} both map to the name `{fid}`; give items distinct ids"),
                    );
                }
                st.items.push((
                    WorkItem {
                        id,
                        data,
                        extra: crate::sort::collect_object([("index".to_string(), json!(i))]),
                    },
                    fid,
                ));
                st.pending.push_back(i);
            }
            st
        }
    };
    job.phase = JobPhase::Map;
    job.total = st.items.len() as u64;
    summary.total = job.total;
    write_job(ctx, wf, &job)?;
    if fresh && st.items.is_empty() {
        ctx.warn(&format!(
            "map input `{}`{} gave no work items; nothing to map, reduce skipped",
            m.map.input,
            m.map
                .json_path
                .as_deref()
                .map(|p| format!(" with json_path `{p}`"))
                .unwrap_or_default()
        ));
        save_map(ctx, &mut st, &[])?;
        job.phase = JobPhase::Reduce;
        write_job(ctx, wf, &job)?;
        let s = finish(ctx, wf, summary, 0)?;
        complete_job(ctx, wf, &mut job, &s)?;
        return Ok(s);
    }
    save_map(ctx, &mut st, &[])?;

    // Map.
    let limit = max_parallel(ctx, m)?;
    let stopped = match map_loop(ctx, m, &mut st, &mut job, wf, limit)? {
        MapEnd::Done(stopped) => stopped,
        MapEnd::Interrupted(sig) => {
            job.status = JobStatus::Paused;
            write_job(ctx, wf, &job)?;
            summary.completed = st.completed.len() as u64;
            summary.failed = st.failed.len() as u64;
            return pause(ctx, summary, sig);
        }
    };
    summary.completed = st.completed.len() as u64;
    summary.failed = st.failed.len() as u64;
    forget_merge(ctx)?;
    evict_leftovers(ctx, &st)?;
    ctx.vars.set("map.total", json!(st.items.len()));
    ctx.vars.set("map.successful", json!(st.completed.len()));
    ctx.vars.set("map.failed", json!(st.failed.len()));
    let results: Vec<Value> = st
        .items
        .iter()
        .filter_map(|(w, _)| st.results.get(&w.id).cloned())
        .collect();
    ctx.vars.set("map.results", Value::Array(results));
    if let Some(why) = stopped {
        let error = format!("map stopped by error_policy: {why}");
        return fail(ctx, wf, &mut job, summary, error);
    }

    // Reduce, in the parent, with a checkpoint after every step.
    job.phase = JobPhase::Reduce;
    write_job(ctx, wf, &job)?;
    if st.completed.is_empty() {
        ctx.warn("every work item failed; reduce skipped");
    } else if start.reduce_done < m.reduce.len() {
        ctx.progress("reduce");
        let env = vec![
            ("MAP_TOTAL".to_string(), st.items.len().to_string()),
            ("MAP_SUCCESSFUL".to_string(), st.completed.len().to_string()),
            ("MAP_FAILED".to_string(), st.failed.len().to_string()),
        ];
        let map_results = json!({"total": st.items.len(), "successful": st.completed.len(), "failed": st.failed.len()});
        let mut vars = ctx.vars.clone();
        for (k, v) in &start.reduce_vars {
            vars.set(k, v.clone());
        }
        let mut lane = Lane::new(
            &m.reduce,
            ctx.worktree.clone(),
            ctx.log_path("reduce.log"),
            vars,
            env,
            false,
        );
        lane.next = start.reduce_done;
        let reduce_cp = |ctx: &mut Ctx, lane: &Lane<'_>, done: usize| -> Result<()> {
            // What reduce set or changed: a name setup also set (`validation`, a capture)
            // with reduce's own value is kept too, or a resume would lose it (its validate
            // loop, its capture) and restore setup's.
            let step_results: Map<String, Value> = lane.vars.changed_from(&ctx.vars);
            let mut c = ReduceCheckpoint {
                completed_steps: (0..done as u32).collect(),
                current_step: done as u32,
                step_results,
                map_results: map_results.as_object().cloned().unwrap_or_default(),
                timestamp: Some(Timestamp::now()),
                ..Default::default()
            };
            if let Some(h) = lane.head(ctx) {
                c.extra.insert("head".into(), json!(h));
            }
            journal::write_reduce_checkpoint(&ctx.layout, &ctx.job_id, &c)?;
            Ok(())
        };
        if start.reduce_done == 0 {
            // HEAD before the first reduce step, so a resume can tell whether it committed.
            reduce_cp(ctx, &lane, 0)?;
        } else if let Some(i) = lane.skip_if_committed(ctx, start.reduce_head.as_deref()) {
            reduce_cp(ctx, &lane, i + 1)?;
        }
        let end = ctx.run_lane(&mut lane, |ctx, lane, i| {
            reduce_cp(ctx, lane, lane.next)?;
            if let Some(i) = i {
                ctx.event("reduce_step_completed", json!({"step": i}));
            }
            Ok(())
        })?;
        match end {
            LaneEnd::Finished => {}
            LaneEnd::Failed { error, .. } => {
                return fail(
                    ctx,
                    wf,
                    &mut job,
                    summary,
                    format!("reduce failed: {error}"),
                );
            }
            LaneEnd::Interrupted(sig) => {
                job.status = JobStatus::Paused;
                write_job(ctx, wf, &job)?;
                return pause(ctx, summary, sig);
            }
            LaneEnd::StepDone(_) => unreachable!(),
        }
        ctx.vars = lane.vars.clone();
    } else {
        // Reduce completed in an earlier process (a resume at the final merge, `dlq retry`
        // without --reduce): what its steps captured still reaches the merge steps.
        for (k, v) in &start.reduce_vars {
            ctx.vars.set(k, v.clone());
        }
    }

    let failed_in_dlq = st.failed.len() as u64 - st.skipped;
    let s = finish(ctx, wf, summary, failed_in_dlq)?;
    complete_job(ctx, wf, &mut job, &s)?;
    Ok(s)
}

fn complete_job(ctx: &mut Ctx, wf: &Workflow, job: &mut Job, s: &Summary) -> Result<()> {
    match s.status.as_str() {
        "completed" => {
            job.phase = JobPhase::Complete;
            job.status = JobStatus::Completed;
        }
        "paused" => job.status = JobStatus::Paused,
        _ => job.status = JobStatus::Failed,
    }
    write_job(ctx, wf, job)
}

fn fail(
    ctx: &mut Ctx,
    wf: &Workflow,
    job: &mut Job,
    mut summary: Summary,
    error: String,
) -> Result<Summary> {
    job.status = JobStatus::Failed;
    write_job(ctx, wf, job)?;
    summary.status = "failed".into();
    summary.reason = error.clone();
    summary.merge = "not-merged".into();
    summary.exit = 1;
    ctx.event("job_failed", json!({"error": error}));
    ctx.finish_session(SessionStatus::Failed, Some(error))?;
    Ok(summary)
}

enum MapEnd {
    /// All items ran, or the error policy stopped the map (`Some(why)`).
    Done(Option<String>),
    Interrupted(i32),
}

fn agent_vars(ctx: &Ctx, item: &WorkItem) -> crate::workflow::vars::Vars {
    let mut v = ctx.vars.clone();
    v.set("item", item.data.clone());
    v.set_str(
        "item_json",
        &serde_json::to_string(&item.data).unwrap_or_default(),
    );
    v.set_str("item_id", &item.id);
    v
}

fn start_agent<'w>(
    ctx: &mut Ctx,
    m: &'w MapReduce,
    st: &MapState,
    i: usize,
) -> std::result::Result<Agent<'w>, String> {
    let (item, fid) = &st.items[i];
    let name = format!("agent-{fid}");
    let path = ctx.worktree.join(&name);
    let branch = format!("prodigy-agent-{}-{fid}", ctx.job_id);
    // A stale worktree or branch of an earlier attempt (a resume, `dlq retry`) makes
    // `worktree add` fail: remove them and try once more. A new job has none, so the common
    // case costs one git call.
    if worktrees::add_worktree(&ctx.git, &ctx.worktree, &path, &branch, "HEAD").is_err() {
        if path.exists() {
            worktrees::remove_worktree(
                &ctx.git,
                ctx.layout.root(),
                &ctx.repo.common,
                &ctx.worktree,
                &name,
            )?;
        }
        // The worktree an earlier failed attempt left beside the session's (the DLQ names it)
        // holds the branch: it goes before the branch does (`dlq retry` replaces it).
        remove_failed_agent(ctx, fid)?;
        worktrees::forget_worktree(&ctx.git, &ctx.repo.common, &ctx.worktree, &path);
        let mut stale = None;
        if let Some(tip) = worktrees::branch_tip(&ctx.git, &ctx.repo.main, &branch) {
            stale =
                worktrees::delete_merged_branch(&ctx.git, &ctx.repo.common, &branch, &tip).err();
        }
        worktrees::add_worktree(&ctx.git, &ctx.worktree, &path, &branch, "HEAD").map_err(|e| {
            match stale {
                Some(d) => format!("{e} (the stale branch could not be deleted: {d})"),
                None => e.to_string(),
            }
        })?;
    }
    ctx.event(
        "worktree_created",
        json!({"path": path.to_string_lossy(), "branch": branch, "item_id": item.id}),
    );
    ctx.event(
        "agent_started",
        json!({"agent_id": name, "item_id": item.id, "worktree_path": path.to_string_lossy()}),
    );
    let env = vec![
        ("PRODIGY_ITEM_ID".to_string(), item.id.clone()),
        (
            "item_json".to_string(),
            serde_json::to_string(&item.data).unwrap_or_default(),
        ),
    ];
    let lane = Lane::new(
        &m.map.agent_template,
        path.clone(),
        ctx.log_path(&format!("agent-{fid}.log")),
        agent_vars(ctx, item),
        env,
        false,
    );
    Ok(Agent {
        index: i,
        item: item.clone(),
        file_id: fid.clone(),
        path,
        branch,
        lane,
        started: Instant::now(),
        started_at: Timestamp::now(),
    })
}

fn map_loop(
    ctx: &mut Ctx,
    m: &MapReduce,
    st: &mut MapState,
    job: &mut Job,
    wf: &Workflow,
    limit: usize,
) -> Result<MapEnd> {
    let policy = &m.error_policy;
    let mut agents: Vec<Agent<'_>> = Vec::new();
    let mut stop: Option<String> = None;
    let mut unsaved = 0usize;
    let mut last_save = Instant::now();
    loop {
        if let Some(sig) = exec::interrupted() {
            for a in agents.iter_mut() {
                if a.lane.busy() {
                    a.lane.interrupt(sig);
                }
            }
            save_map(ctx, st, &agents)?;
            return Ok(MapEnd::Interrupted(sig));
        }
        let mut changed = false;
        while stop.is_none() && agents.len() < limit {
            let Some(i) = st.pending.pop_front() else {
                break;
            };
            changed = true;
            match start_agent(ctx, m, st, i) {
                Ok(a) => agents.push(a),
                Err(e) => {
                    item_failed(
                        ctx,
                        st,
                        i,
                        &format!("cannot create the agent worktree: {e}"),
                        None,
                        None,
                        policy.on_item_failure,
                    )?;
                }
            }
        }
        if agents.is_empty() && (st.pending.is_empty() || stop.is_some()) {
            break;
        }
        let mut k = 0;
        while k < agents.len() {
            let end = loop {
                match agents[k].lane.advance(ctx) {
                    Some(LaneEnd::StepDone(_)) => continue,
                    other => break other,
                }
            };
            // An agent's warnings (an unmet validation under `fail_workflow: false`).
            for w in agents[k].lane.take_warnings() {
                ctx.warn(&format!("item {}: {w}", agents[k].item.id));
            }
            let Some(end) = end else {
                k += 1;
                continue;
            };
            changed = true;
            let a = agents.remove(k);
            match end {
                LaneEnd::Finished => agent_succeeded(ctx, st, a, policy.on_item_failure)?,
                LaneEnd::Failed { error, .. } => {
                    let log = a.lane.log().to_string_lossy().into_owned();
                    item_failed(
                        ctx,
                        st,
                        a.index,
                        &error,
                        Some(&a),
                        Some(log),
                        policy.on_item_failure,
                    )?;
                }
                LaneEnd::Interrupted(_) | LaneEnd::StepDone(_) => {
                    unreachable!("advance never interrupts")
                }
            }
            job.completed = st.completed.len() as u64;
            job.failed = st.failed.len() as u64;
            // Checkpoints in batches: what a lost batch knew is in git's history (the merge
            // commits name their items) and in the DLQ, both written first.
            unsaved += 1;
            if unsaved >= CHECKPOINT_ITEMS || last_save.elapsed() >= CHECKPOINT_EVERY {
                save_batch(ctx, st, &agents)?;
                write_job(ctx, wf, job)?;
                unsaved = 0;
                last_save = Instant::now();
            }
            ctx.progress(&format!(
                "map: {} done, {} failed, {} running, {} pending",
                st.completed.len(),
                st.failed.len(),
                agents.len(),
                st.pending.len()
            ));
            if stop.is_none() {
                stop = stop_reason(m, st);
            }
        }
        if !changed {
            ctx.heartbeat()?;
            let wait = agents
                .iter()
                .map(|a| a.lane.wait_for())
                .min()
                .unwrap_or(Duration::from_secs(1));
            exec::wait_event(wait.min(HEARTBEAT));
        }
    }
    // The map's end: one full checkpoint holds the whole final state.
    if unsaved > 0 || st.log_len() != st.folded || !st.unlogged.is_empty() {
        save_map(ctx, st, &agents)?;
        write_job(ctx, wf, job)?;
    }
    Ok(MapEnd::Done(stop))
}

/// Why the error policy stops the map now (run.md §3), if it does.
fn stop_reason(m: &MapReduce, st: &MapState) -> Option<String> {
    let p = &m.error_policy;
    let failed = st.failed.len();
    if failed == 0 {
        return None;
    }
    if p.on_item_failure == OnItemFailure::Stop {
        return Some("on_item_failure: stop".into());
    }
    if !p.continue_on_failure {
        return Some("continue_on_failure: false".into());
    }
    if let Some(n) = p.max_failures {
        if failed >= n {
            return Some(format!("max_failures: {n} reached"));
        }
    }
    if let Some(t) = p.failure_threshold {
        let frac = failed as f64 / st.items.len().max(1) as f64;
        if frac >= t {
            return Some(format!(
                "failure_threshold: {t} reached ({failed} of {})",
                st.items.len()
            ));
        }
    }
    None
}

fn agent_result(
    a: &Agent<'_>,
    status: Value,
    commits: Vec<String>,
    error: Option<String>,
) -> AgentResult {
    let d = a.started.elapsed();
    AgentResult {
        item_id: a.item.id.clone(),
        status,
        output: None,
        commits,
        duration: DurationValue {
            secs: d.as_secs(),
            nanos: d.subsec_nanos(),
        },
        error,
        worktree_path: Some(a.path.to_string_lossy().into_owned()),
        branch_name: Some(a.branch.clone()),
        extra: Default::default(),
    }
}

fn agent_succeeded(
    ctx: &mut Ctx,
    st: &mut MapState,
    a: Agent<'_>,
    on_fail: OnItemFailure,
) -> Result<()> {
    let commits = match worktrees::commits_ahead(&ctx.git, &ctx.worktree, "HEAD", &a.branch) {
        Ok(c) => c,
        Err(e) => {
            let log = a.lane.log().to_string_lossy().into_owned();
            return item_failed(
                ctx,
                st,
                a.index,
                &e.to_string(),
                Some(&a),
                Some(log),
                on_fail,
            );
        }
    };
    if let Some(tip) = commits.last() {
        let msg = format!("Merge agent {} (item {})", a.branch, a.item.id);
        let head = match worktrees::head(&ctx.git, &ctx.worktree) {
            Ok(h) => h,
            Err(e) => {
                let log = a.lane.log().to_string_lossy().into_owned();
                let e = e.to_string();
                return item_failed(ctx, st, a.index, &e, Some(&a), Some(log), on_fail);
            }
        };
        note_merge(ctx, &a, tip, &head)?;
        if let Err(e) = worktrees::merge_no_ff(&ctx.git, &ctx.worktree, &a.branch, &msg) {
            // git ended on its own (a merge it refused, a conflict aborted): nothing half made
            // is left, and a setup step's file that made it refuse is not the merge's to undo.
            // Interrupted (a terminal's SIGINT reaches git too), it may have been cut short.
            if exec::interrupted().is_none() {
                forget_merge(ctx)?;
            }
            let log = a.lane.log().to_string_lossy().into_owned();
            return item_failed(ctx, st, a.index, &e, Some(&a), Some(log), on_fail);
        }
        ctx.event(
            "worktree_merged",
            json!({"item_id": a.item.id, "branch": a.branch, "commits": commits}),
        );
    }
    let r = agent_result(&a, json!("Success"), commits.clone(), None);
    let rv = serde_json::to_value(&r).unwrap_or(Value::Null);
    st.results.insert(a.item.id.clone(), rv);
    st.push_completed(CompletedWorkItem {
        work_item: a.item.clone(),
        result: r,
        completed_at: Some(Timestamp::now()),
        extra: Default::default(),
    });
    if st.dlq.remove(&a.item.id) {
        journal::dlq_remove(&ctx.layout, &ctx.job_id, &a.item.id)?;
        ctx.event(
            "dlq_item_removed",
            json!({"item_id": a.item.id, "reason": "succeeded on retry"}),
        );
    }
    // No checkpoint here: the merge commit in the parent's history already says this item is
    // done (resume reads it), and map_loop checkpoints in batches.
    ctx.event(
        "agent_completed",
        json!({"agent_id": format!("agent-{}", a.file_id), "item_id": a.item.id, "commits": commits, "duration": {"secs": a.started.elapsed().as_secs(), "nanos": a.started.elapsed().subsec_nanos()}}),
    );
    // The branch's tip is its last commit (rev-list above); without commits ask git.
    let tip = match commits.last() {
        Some(c) => Some(c.clone()),
        None => worktrees::branch_tip(&ctx.git, &ctx.repo.main, &a.branch),
    };
    match worktrees::remove_worktree(
        &ctx.git,
        ctx.layout.root(),
        &ctx.repo.common,
        &ctx.worktree,
        &format!("agent-{}", a.file_id),
    ) {
        Ok(()) => {
            if let Some(t) = tip {
                let _ = worktrees::delete_merged_branch(&ctx.git, &ctx.repo.common, &a.branch, &t);
            }
            ctx.event(
                "worktree_cleaned",
                json!({"item_id": a.item.id, "path": a.path.to_string_lossy()}),
            );
        }
        Err(e) => register_orphan(
            ctx,
            &a.path,
            &format!("agent-{}", a.file_id),
            &a.item.id,
            &e,
        ),
    }
    Ok(())
}

/// The key of `metadata.worktree` in the session record (`sessions/{session_id}.json` under
/// `$PRODIGY_HOME`) that names the agent merge into the session worktree under way:
/// `{"item_id", "branch", "tip", "head"}`, the item, its agent branch and that branch's tip
/// being merged, and the session worktree's HEAD before the merge. Written with the record
/// (crash-safely) before `git merge` starts, replaced by the next merge, dropped when git fails
/// the merge by itself and when the map ends (after a merge that succeeded it is inert: HEAD
/// moved).
///
/// Why: git writes the merged files, then the index, then the merge commit, and a kill in
/// between (a merge without conflicts writes no `MERGE_HEAD`) leaves the agent's changes in the
/// session worktree as local changes with HEAD unmoved; every later merge refused them and the
/// remaining items went to the dead letter queue (the crash sweep's seed 20), and resume could
/// not tell those files from a setup step's uncommitted output. [`undo_interrupted_merge`]
/// reads it on resume and touches only the paths the branch changed. (A setup step's
/// uncommitted change at such a path, which makes git refuse the merge anyway, is put back too
/// when the kill lands inside that merge.)
const MERGING: &str = "merging";

/// Record the merge of agent `a`'s branch at `tip` into the session worktree at `head` before
/// it starts (see [`MERGING`]).
fn note_merge(ctx: &mut Ctx, a: &Agent<'_>, tip: &str, head: &str) -> Result<()> {
    let Some(Value::Object(w)) = ctx.session.metadata.get_mut("worktree") else {
        return Ok(());
    };
    w.insert(
        MERGING.into(),
        json!({"item_id": a.item.id, "branch": a.branch, "tip": tip, "head": head}),
    );
    ctx.save_session()
}

/// Drop the [`MERGING`] record, once no agent merge can be under way (the map's end, a resume
/// that undid one): a later step's uncommitted output must never be taken for a merge's.
fn forget_merge(ctx: &mut Ctx) -> Result<()> {
    ctx.forget_worktree_record(MERGING)
}

/// On resume, before anything runs in the session worktree: undo the agent merge a kill
/// interrupted ([`MERGING`]). When HEAD is still the recorded `head`, no merge commit was made:
/// the paths the agent's branch changed are put back to HEAD
/// ([`worktrees::undo_unfinished_merge`]; every other path, a setup step's uncommitted output
/// among them, is left), and the item, whose merge commit is not in the history, runs again.
/// When HEAD moved, the merge commit exists and git's history is the truth: nothing to undo.
/// Stale `index.lock` files of the killed git are the resume's to remove first, and a merge
/// that wrote `MERGE_HEAD` its to abort. Returns what was put back, for the resume to say.
pub(super) fn undo_interrupted_merge(ctx: &mut Ctx) -> Result<Option<String>> {
    let Some(rec) = ctx.worktree_record(MERGING) else {
        return Ok(None);
    };
    let field = |k: &str| rec.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    let (item, branch, tip, head) = (
        field("item_id"),
        field("branch"),
        field("tip"),
        field("head"),
    );
    let mut said = None;
    if !tip.is_empty() && worktrees::head(&ctx.git, &ctx.worktree).ok().as_deref() == Some(&head) {
        let wt = ctx.worktree.clone();
        let put_back =
            worktrees::undo_unfinished_merge(&ctx.git, ctx.layout.root(), &wt, &head, &tip, None)
                .map_err(|e| {
                    Error::fatal(format!(
                        "cannot undo the interrupted merge of `{branch}` (item {item}) in `{}`: {e}; put the files it changed back to HEAD, then `prodigy resume {}`",
                        wt.display(),
                        ctx.job_id
                    ))
                })?;
        if !put_back.is_empty() {
            said = Some(format!(
                "put back {} file(s) that the interrupted merge of `{branch}` (item {item}) left in `{}`; the item runs again",
                put_back.len(),
                wt.display()
            ));
        }
    }
    forget_merge(ctx)?;
    Ok(said)
}

#[allow(clippy::too_many_arguments)]
fn item_failed(
    ctx: &mut Ctx,
    st: &mut MapState,
    index: usize,
    error: &str,
    agent: Option<&Agent<'_>>,
    log: Option<String>,
    on_fail: OnItemFailure,
) -> Result<()> {
    // A failure seen after SIGINT/SIGTERM may be the signal's doing (a terminal's Ctrl-C reaches
    // the git commands prodigy runs in its own process group): the item is not failed but
    // interrupted, and a resume runs it again.
    if exec::interrupted().is_some() {
        st.pending.push_front(index);
        return Ok(());
    }
    let item = st.items[index].0.clone();
    // Out of the session worktree before anything records the failure (run.md §4): reduce and
    // merge steps run there, and a `git add -A` must not find the agent's repository.
    let mut moved_to = None;
    let mut stuck = None;
    if let Some(a) = agent {
        match evict_agent(ctx, &a.file_id) {
            Ok(p) => moved_to = Some(p),
            Err(e) => {
                ctx.warn(&e);
                stuck = Some(e);
            }
        }
    }
    let where_now = |a: &Agent<'_>| -> String {
        moved_to
            .as_deref()
            .unwrap_or(a.path.as_path())
            .to_string_lossy()
            .into_owned()
    };
    if let Some(a) = agent {
        let mut r = agent_result(a, json!({"Failed": error}), vec![], Some(error.to_string()));
        r.worktree_path = Some(where_now(a));
        st.results.insert(
            item.id.clone(),
            serde_json::to_value(&r).unwrap_or(Value::Null),
        );
    }
    ctx.event(
        "agent_failed",
        json!({"item_id": item.id, "error": error, "log_path": log, "worktree_path": agent.map(where_now), "branch_name": agent.map(|a| a.branch.clone())}),
    );
    if on_fail == OnItemFailure::Skip {
        // error_policy `skip`: recorded as failed in the checkpoint, not queued in the DLQ.
        st.skipped += 1;
        let result = agent.and_then(|_| st.results.get(&item.id).cloned());
        st.push_failed(
            FailedWorkItem {
                work_item: item,
                error: error.to_string(),
                failed_at: Some(Timestamp::now()),
                retry_count: 0,
                extra: [
                    ("skipped".to_string(), json!(true)),
                    ("worktree_path".to_string(), json!(agent.map(where_now))),
                ]
                .into_iter()
                .collect(),
            },
            result,
        );
        return Ok(());
    }
    let mut extra = Map::new();
    if let Some(a) = agent {
        extra.insert("worktree_path".into(), json!(where_now(a)));
        extra.insert("branch_name".into(), json!(a.branch));
        if let Some(e) = &stuck {
            extra.insert("worktree_error".into(), json!(e));
        }
    }
    extra.insert("log_path".into(), json!(log));
    journal::dlq_add(
        &ctx.layout,
        &ctx.job_id,
        &item.id,
        &item.data,
        DlqFailure {
            timestamp: Some(Timestamp::now()),
            error: Some(error.to_string()),
            json_log_location: None,
            extra: crate::sort::collect_object([("log_path".to_string(), json!(log))]),
        },
        extra,
    )?;
    ctx.event(
        "dlq_item_added",
        json!({"item_id": item.id, "error": error}),
    );
    let result = agent.and_then(|_| st.results.get(&item.id).cloned());
    st.push_failed(
        FailedWorkItem {
            work_item: item,
            error: error.to_string(),
            failed_at: Some(Timestamp::now()),
            retry_count: 0,
            extra: Default::default(),
        },
        result,
    );
    Ok(())
}

/// Move the worktree of agent `fid` out of the session worktree to its place beside it,
/// `worktrees/{repo}/{session_id}.agent-{fid}/` (run.md §4: no step in the session worktree
/// may see an agent's repository as content). A worktree an earlier attempt of the same item
/// left there is removed first. `git worktree move` keeps uncommitted work and the branch; when
/// git refuses (a worktree with submodules), the directory is renamed through `fsops` and
/// git's record repaired. Returns the new path.
fn evict_agent(ctx: &mut Ctx, fid: &str) -> std::result::Result<PathBuf, String> {
    let name = format!("agent-{fid}");
    let from = ctx.worktree.join(&name);
    let to = ctx
        .layout
        .failed_agent_worktree(&ctx.session.id, fid)
        .map_err(|e| e.to_string())?;
    if to.symlink_metadata().is_ok() {
        remove_failed_agent(ctx, fid)?;
    }
    let moved = worktrees::move_worktree(&ctx.git, &ctx.repo.main, &from, &to);
    if let Err(why) = moved {
        let open = |p: &std::path::Path| {
            crate::store::layout::open_beneath(ctx.layout.root(), p)
                .map_err(|e| crate::error::describe_io(&e))
        };
        let target = to.file_name().unwrap_or_default();
        open(&ctx.worktree)
            .and_then(|src| {
                let dst = open(&ctx.layout.worktrees_dir())?;
                src.rename(std::ffi::OsStr::new(&name), &dst, target)
                    .map_err(|e| crate::error::describe_io(&e))?;
                dst.sync().map_err(|e| crate::error::describe_io(&e))
            })
            .map_err(|e| format!("{why}; renaming it failed too: {e}"))?;
        if let Err(e) =
            worktrees::repair_worktrees(&ctx.git, &ctx.repo.main, std::slice::from_ref(&to))
        {
            ctx.warn(&format!(
                "moved `{}` to `{}`, but git's record of it could not be repaired ({e}); run `git worktree repair {}`",
                from.display(),
                to.display(),
                to.display()
            ));
        } else {
            ctx.warn(&format!(
                "{why}; renamed it to `{}` instead and repaired git's record of it",
                to.display()
            ));
        }
    }
    ctx.event(
        "worktree_moved",
        json!({"from": from.to_string_lossy(), "path": to.to_string_lossy()}),
    );
    Ok(to)
}

/// Remove the worktree a failed attempt of agent `fid` left beside the session worktree, if
/// there is one (the item runs again: resume, `dlq retry`).
fn remove_failed_agent(ctx: &mut Ctx, fid: &str) -> std::result::Result<(), String> {
    let to = ctx
        .layout
        .failed_agent_worktree(&ctx.session.id, fid)
        .map_err(|e| e.to_string())?;
    if to.symlink_metadata().is_err() {
        return Ok(());
    }
    let name = to
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    worktrees::remove_worktree(
        &ctx.git,
        ctx.layout.root(),
        &ctx.repo.common,
        &ctx.layout.worktrees_dir(),
        &name,
    )?;
    ctx.event(
        "worktree_cleaned",
        json!({"path": to.to_string_lossy(), "reason": "replaced by a new attempt"}),
    );
    Ok(())
}

/// After the map, before any reduce or merge step: no agent worktree may be left inside the
/// session worktree (run.md §4). A merged item's leftover (its removal failed, or a kill came
/// before it) is removed; any other is moved beside the session worktree like a failed
/// agent's. One that can be neither stops the run before reduce, resumable, with the reason.
fn evict_leftovers(ctx: &mut Ctx, st: &MapState) -> Result<()> {
    let done: std::collections::BTreeSet<&str> = st
        .completed
        .iter()
        .map(|c| c.work_item.id.as_str())
        .collect();
    for (w, fid) in &st.items {
        let name = format!("agent-{fid}");
        let path = ctx.worktree.join(&name);
        if path.symlink_metadata().is_err() {
            continue;
        }
        if done.contains(w.id.as_str())
            && worktrees::remove_worktree(
                &ctx.git,
                ctx.layout.root(),
                &ctx.repo.common,
                &ctx.worktree,
                &name,
            )
            .is_ok()
        {
            continue;
        }
        let to = evict_agent(ctx, fid).map_err(|e| {
            Error::fatal(format!(
                "the agent worktree `{}` is still inside the session worktree, where a reduce or merge step could commit it ({e}); move or remove it, then `prodigy resume {}`",
                path.display(),
                ctx.job_id
            ))
        })?;
        ctx.warn(&format!(
            "moved the leftover agent worktree of item {} to `{}`",
            w.id,
            to.display()
        ));
    }
    Ok(())
}
