//! Standard workflows (run.md §3 "Standard workflow", §5.2): steps in order in the session
//! worktree; the first failing step stops the run. The session record is the checkpoint: after
//! every step it is rewritten with `workflow_data.completed_steps`, `current_step` and the
//! captured `variables`, plus a one-entry `checkpoints` array naming the last completed step
//! (what makes `clean` see a failed or killed run as resumable).

use super::lane::{Lane, LaneEnd};
use super::merge::finish;
use super::session::{pause, Ctx, Start, Summary};
use crate::error::Result;
use crate::store::records::{SessionStatus, Timestamp};
use crate::workflow::{Step, Workflow};
use serde_json::{json, Value};

/// Write the standard checkpoint into the session record: steps `0..done` completed.
pub(crate) fn checkpoint(ctx: &mut Ctx, lane: &Lane<'_>, done: usize, total: usize) -> Result<()> {
    // Every variable the steps set or changed: a capture whose name shadows an `--arg` (or any
    // variable the run started with) is kept too, or a resume would restore the old value.
    let vars: serde_json::Map<String, Value> = lane.vars.changed_from(&ctx.vars);
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
