//! Standard workflows (run.md §3 "Standard workflow", §5.2): steps in order in the session
//! worktree; the first failing step stops the run. The session record is the checkpoint: after
//! every step it is rewritten with `workflow_data.completed_steps`, `current_step` and the
//! captured `variables`, plus a one-entry `checkpoints` array naming the last completed step
//! (what makes `clean` see a failed or killed run as resumable).

use super::lane::{Lane, LaneEnd};
use super::resume::Start;
use super::{final_merge, signal_exit, Ctx, MergeEnd, Summary};
use crate::error::Result;
use crate::store::records::{SessionStatus, Timestamp};
use crate::workflow::{Step, Workflow};
use serde_json::{json, Value};

/// Write the standard checkpoint into the session record: steps `0..done` completed.
pub(crate) fn checkpoint(ctx: &mut Ctx, lane: &Lane<'_>, done: usize, total: usize) -> Result<()> {
    let vars: serde_json::Map<String, Value> = lane
        .vars
        .iter()
        .filter(|(k, _)| ctx.vars.get(k).is_none())
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let head = lane.head(ctx);
    if let Some(Value::Object(w)) = ctx.session.workflow_data.as_mut() {
        w.insert(
            "completed_steps".into(),
            json!((0..done).collect::<Vec<_>>()),
        );
        w.insert("current_step".into(), json!(done));
        w.insert("total_steps".into(), json!(total));
        w.insert("variables".into(), Value::Object(vars));
        if let Some(h) = head {
            w.insert("head".into(), json!(h));
        }
    }
    ctx.session.checkpoints = if done > 0 {
        vec![json!({
            "id": format!("step-{done}"),
            "created_at": Timestamp::now().to_string(),
            "state": {"completed_steps": done, "current_step": done},
            "metadata": {"last_completed_step": done - 1},
        })]
    } else {
        Vec::new()
    };
    ctx.save_session()?;
    ctx.event("checkpoint_created", json!({"completed_steps": done}));
    Ok(())
}

/// Run a standard workflow to its end.
pub(crate) fn run(ctx: &mut Ctx, wf: &Workflow, steps: &[Step], start: Start) -> Result<Summary> {
    let total = steps.len();
    let mut vars = ctx.vars.clone();
    for (k, v) in start.vars {
        vars.set(&k, v);
    }
    let mut lane = Lane::new(
        steps,
        ctx.worktree.clone(),
        ctx.log_path("steps.log"),
        vars,
        vec![],
        true,
    );
    lane.next = start.from_step.min(total);
    if let Some(i) = lane.skip_if_committed(ctx, start.head.as_deref()) {
        checkpoint(ctx, &lane, i + 1, total)?;
    }
    let mut summary = Summary {
        session_id: ctx.session.id.clone(),
        job_id: ctx.job_id.clone(),
        total: total as u64,
        ..Default::default()
    };
    let end = ctx.run_lane(&mut lane, |ctx, lane, i| {
        if let Some(i) = i {
            ctx.progress(&format!("step {}/{total} done", i + 1));
        }
        checkpoint(ctx, lane, lane.next, total)
    })?;
    summary.completed = lane.next as u64;
    match end {
        LaneEnd::Finished => {}
        LaneEnd::Failed { step, error } => {
            summary.failed = 1;
            summary.status = "failed".into();
            summary.reason = error.clone();
            summary.merge = "not-merged".into();
            summary.exit = 1;
            ctx.event("job_failed", json!({"error": error, "step": step}));
            ctx.finish_session(SessionStatus::Failed, Some(error))?;
            return Ok(summary);
        }
        LaneEnd::Interrupted(sig) => return pause(ctx, summary, sig),
        LaneEnd::StepDone(_) => unreachable!("run_lane consumes StepDone"),
    }
    ctx.vars = lane.vars.clone();
    finish(ctx, wf, summary, 0)
}

/// Pause after SIGINT/SIGTERM: session Paused (its checkpoint already says what completed).
pub(crate) fn pause(ctx: &mut Ctx, mut summary: Summary, sig: i32) -> Result<Summary> {
    summary.status = "paused".into();
    summary.reason = format!("interrupted by signal {sig}");
    summary.exit = signal_exit(sig);
    summary.merge = "not-merged".into();
    ctx.event("job_paused", json!({"signal": sig}));
    ctx.finish_session(SessionStatus::Paused, None)?;
    Ok(summary)
}

/// The final merge and the end of the session. `failed_items` > 0 makes the exit status 1.
pub(crate) fn finish(
    ctx: &mut Ctx,
    wf: &Workflow,
    mut summary: Summary,
    failed_items: u64,
) -> Result<Summary> {
    let merge = final_merge(ctx, wf)?;
    let (merge_word, merge_err) = match merge {
        MergeEnd::Merged => ("merged", None),
        MergeEnd::NothingToMerge => ("nothing-to-merge", None),
        MergeEnd::NotMerged(why) => {
            if !ctx.opts.quiet && !ctx.opts.json {
                crate::error::eprint_line(&format!("prodigy: {why}"));
            }
            ("not-merged", None)
        }
        // A merge that failed because the run was interrupted meanwhile is resumed, not failed.
        MergeEnd::Failed(_) if super::exec::interrupted().is_some() => {
            return pause(ctx, summary, super::exec::interrupted().unwrap_or(2))
        }
        MergeEnd::Failed(why) => ("failed", Some(why)),
        MergeEnd::Interrupted(sig) => return pause(ctx, summary, sig),
    };
    summary.merge = merge_word.into();
    if let Some(e) = merge_err {
        summary.status = "failed".into();
        summary.reason = format!("final merge failed: {e}");
        summary.exit = 1;
        ctx.event("job_failed", json!({"error": summary.reason}));
        ctx.finish_session(SessionStatus::Failed, Some(summary.reason.clone()))?;
        return Ok(summary);
    }
    summary.status = "completed".into();
    if failed_items > 0 {
        summary.exit = 1;
        summary.reason = format!(
            "{failed_items} work item(s) failed; they are in the dead letter queue (prodigy dlq show {})",
            ctx.job_id
        );
    } else {
        summary.reason = if ctx.session.mapreduce_data.is_some() {
            "every work item succeeded".into()
        } else {
            "every step succeeded".into()
        };
    }
    ctx.event(
        "job_completed",
        json!({"merge": merge_word, "failed_items": failed_items}),
    );
    let err = (failed_items > 0).then(|| summary.reason.clone());
    ctx.finish_session(SessionStatus::Completed, err)?;
    Ok(summary)
}
