//! The end of a session: the final merge of the session branch into the branch the run started
//! on (with the workflow's `merge:` steps when it has them), the removal of the session worktree
//! and branch, and the session's last status (run.md §4 "Final merge", §5).

use super::lane::{Lane, LaneEnd};
use super::session::{pause, register_orphan, Ctx, Summary};
use super::worktrees;
use crate::error::Result;
use crate::store::records::SessionStatus;
use crate::workflow::Workflow;
use serde_json::{json, Value};
use std::io::{IsTerminal, Write};

/// How the final merge went (run.md §4 "Final merge").
pub(crate) enum MergeEnd {
    Merged,
    NothingToMerge,
    NotMerged(String),
    Failed(String),
    Interrupted(i32),
}

/// Ask on a terminal whether to merge; never merge on end of input (run.md §1).
fn confirm(question: &str) -> bool {
    if !(std::io::stdin().is_terminal() && std::io::stderr().is_terminal()) {
        return false;
    }
    let _ = write!(
        std::io::stderr(),
        "{} [y/N] ",
        crate::store::names::terminal_safe(question)
    );
    let _ = std::io::stderr().flush();
    let mut line = String::new();
    match std::io::stdin().read_line(&mut line) {
        Ok(0) | Err(_) => false,
        Ok(_) => matches!(line.trim(), "y" | "Y" | "yes" | "Yes" | "YES"),
    }
}

/// The final merge of the session branch into the original branch, then removal of the session
/// worktree and branch, also when items failed: their worktrees are beside it, not inside it
/// (run.md §4). The branch's tip is recorded first (`metadata.worktree.merged_tip`), so that a
/// `dlq retry` can make the session worktree again where it ended.
pub(crate) fn final_merge(ctx: &mut Ctx, wf: &Workflow) -> Result<MergeEnd> {
    let meta = ctx
        .session
        .metadata
        .get("worktree")
        .cloned()
        .unwrap_or(Value::Null);
    let Some(target) = meta
        .get("original_branch")
        .and_then(Value::as_str)
        .map(str::to_string)
    else {
        return Ok(MergeEnd::NotMerged(format!(
            "HEAD was detached when the run started; merge `{}` by hand",
            ctx.branch
        )));
    };
    let ahead = worktrees::commits_ahead(&ctx.git, &ctx.repo.main, &target, &ctx.branch)?;
    if ahead.is_empty() {
        // Also when merge steps merged it before a kill: their progress is done with.
        if let Some(Value::Object(w)) = ctx.session.workflow_data.as_mut() {
            w.remove("merge");
        }
        // Also when a kill came after the merge commit: HEAD moved, nothing to undo.
        forget_final_merge(ctx)?;
        remove_session_worktree(ctx)?;
        return Ok(MergeEnd::NothingToMerge);
    }
    let by_hand = format!(
        "git -C {} merge --no-ff {}",
        ctx.repo.main.display(),
        ctx.branch
    );
    if !ctx.opts.yes && !confirm(&format!("Merge {} into {target}?", ctx.branch)) {
        return Ok(MergeEnd::NotMerged(format!(
            "not merged (no -y and no yes on a terminal); merge by hand: {by_hand}"
        )));
    }
    if let Some(steps) = &wf.merge {
        let mut vars = ctx.vars.clone();
        vars.set_str("merge.worktree", &ctx.worktree.to_string_lossy());
        vars.set_str("merge.source_branch", &ctx.branch);
        vars.set_str("merge.target_branch", &target);
        vars.set_str("merge.session_id", &ctx.session.id);
        let base = vars.clone();
        // A resume continues after the merge steps that completed, with their variables
        // (`workflow_data.merge`, written after every step like a standard checkpoint).
        let saved = ctx
            .session
            .workflow_data
            .as_ref()
            .and_then(|w| w.get("merge"))
            .cloned()
            .unwrap_or(Value::Null);
        if let Some(m) = saved.get("variables").and_then(Value::as_object) {
            for (k, v) in m {
                vars.set(k, v.clone());
            }
        }
        let mut lane = Lane::new(
            steps,
            ctx.worktree.clone(),
            ctx.log_path("merge.log"),
            vars,
            vec![],
            true,
        );
        lane.deadline = wf.merge_timeout.map(|t| {
            (
                std::time::Instant::now() + std::time::Duration::from_secs(t),
                t,
            )
        });
        lane.next = saved
            .get("completed_steps")
            .and_then(Value::as_u64)
            .map_or(0, |n| (n as usize).min(steps.len()));
        let head = saved.get("head").and_then(Value::as_str);
        if let Some(i) = lane.skip_if_committed(ctx, head) {
            merge_checkpoint(ctx, &lane, &base, i + 1)?;
        } else if saved.is_null() {
            // HEAD before the first merge step, so a resume can tell whether it committed.
            merge_checkpoint(ctx, &lane, &base, 0)?;
        }
        let end = ctx.run_lane(&mut lane, |ctx, lane, _| {
            merge_checkpoint(ctx, lane, &base, lane.next)
        })?;
        match end {
            LaneEnd::Finished => {}
            LaneEnd::Failed { error, .. } => {
                return Ok(MergeEnd::Failed(format!("merge step failed: {error}")))
            }
            LaneEnd::Interrupted(sig) => return Ok(MergeEnd::Interrupted(sig)),
            LaneEnd::StepDone(_) => unreachable!("run_lane consumes StepDone"),
        }
        let tip = worktrees::branch_tip(&ctx.git, &ctx.repo.main, &ctx.branch).unwrap_or_default();
        if !worktrees::is_ancestor(&ctx.git, &ctx.repo.main, &tip, &target) {
            return Ok(MergeEnd::Failed(format!(
                "the merge steps ran, but `{}` is not merged into `{target}`",
                ctx.branch
            )));
        }
        // Merged: a later `dlq retry` runs the merge steps again from the first.
        if let Some(Value::Object(w)) = ctx.session.workflow_data.as_mut() {
            w.remove("merge");
        }
    } else {
        let checkout = ctx.repo.checkout.clone();
        // A merge of this very branch that a kill interrupted (MERGE_HEAD is our branch's tip or
        // an earlier state of it) is ours to abort and make again; any other operation in the
        // user's checkout is left alone.
        let tip = worktrees::branch_tip(&ctx.git, &ctx.repo.main, &ctx.branch);
        let merging = worktrees::git_out(
            &ctx.git,
            &checkout,
            &["rev-parse", "-q", "--verify", "MERGE_HEAD"],
        )
        .ok();
        let ours = match (&merging, &tip) {
            (Some(m), Some(t)) => worktrees::is_ancestor(&ctx.git, &ctx.repo.main, m, t),
            _ => false,
        };
        // A git of this session killed in the user's checkout (inside the final merge, before
        // or after it wrote MERGE_HEAD) leaves its lock files: `index.lock`, `HEAD.lock`, the
        // target branch's ref lock. Those of our own interrupted merge, and those made since
        // this session started, are removed when unchanged for a second and open nowhere (git's
        // own advice for a crashed git); a lock another git holds or changes is left alone.
        let private = worktrees::git_out(
            &ctx.git,
            &checkout,
            &["rev-parse", "--path-format=absolute", "--git-dir"],
        )
        .ok()
        .map(std::path::PathBuf::from);
        let since = ctx
            .session
            .started_at
            .map_or(i64::MAX, |t| t.unix_seconds());
        let locks: Vec<std::path::PathBuf> =
            worktrees::git_lock_files(&ctx.repo.common, private.as_deref(), |b| b == target)
                .into_iter()
                .filter(|p| ours || modified_since(p, since))
                .collect();
        for (p, r) in worktrees::remove_stale_locks(locks, std::time::Duration::from_secs(1)) {
            match r {
                Ok(()) => ctx.warn(&format!(
                    "removed the stale `{}` of an interrupted git of this session",
                    p.display()
                )),
                Err(why) => ctx.warn(&format!("`{}` is left ({why})", p.display())),
            }
        }
        if ours {
            let _ = worktrees::git_out(&ctx.git, &checkout, &["merge", "--abort"]);
            ctx.warn(&format!(
                "aborted the interrupted merge of `{}` in `{}`; merging again",
                ctx.branch,
                checkout.display()
            ));
        }
        if let Some(end) = undo_interrupted_final_merge(ctx, &checkout, &by_hand)? {
            return Ok(end);
        }
        if worktrees::current_branch(&ctx.git, &checkout).as_deref() != Some(target.as_str()) {
            return Ok(MergeEnd::NotMerged(format!(
                "`{}` is no longer on `{target}`; merge by hand: {by_hand}",
                checkout.display()
            )));
        }
        match worktrees::tracked_changes(&ctx.git, &checkout) {
            Ok(c) if c.is_empty() => {}
            _ => {
                return Ok(MergeEnd::NotMerged(format!(
                    "`{}` has uncommitted changes; merge by hand: {by_hand}",
                    checkout.display()
                )))
            }
        }
        if let Some(op) = worktrees::operation_in_progress(&ctx.git, &checkout) {
            return Ok(MergeEnd::NotMerged(format!(
                "`{}` has {op} in progress; merge by hand: {by_hand}",
                checkout.display()
            )));
        }
        let msg = format!("Merge {} (prodigy session {})", ctx.branch, ctx.session.id);
        if let (Ok(head), Some(tip)) = (worktrees::head(&ctx.git, &checkout), &tip) {
            if let Some(Value::Object(w)) = ctx.session.metadata.get_mut("worktree") {
                let at = time::OffsetDateTime::now_utc().unix_timestamp();
                w.insert(
                    FINAL_MERGING.into(),
                    json!({"head": head, "tip": tip, "at": at}),
                );
                ctx.save_session()?;
            }
        }
        let merged = worktrees::merge_no_ff(&ctx.git, &checkout, &ctx.branch, &msg);
        // A git that a terminal's SIGINT cut short may have left files, as a kill does: the
        // record stays for the resume (it undoes only what is exactly the branch's).
        if merged.is_ok() || super::exec::interrupted().is_none() {
            forget_final_merge(ctx)?;
        }
        if let Err(e) = merged {
            return Ok(MergeEnd::Failed(e));
        }
    }
    ctx.event(
        "worktree_merged",
        json!({"branch": ctx.branch, "target": target}),
    );
    remove_session_worktree(ctx)?;
    Ok(MergeEnd::Merged)
}

/// The key of `metadata.worktree` in the session record (`sessions/{session_id}.json` under
/// `$PRODIGY_HOME`) that names the final `git merge --no-ff` of the session branch into the
/// user's checkout while it runs: `{"head", "tip", "at"}`, the checkout's HEAD before the merge,
/// the branch's tip being merged and when the merge started (unix seconds). Written with the
/// record (crash-safely) before `git merge` starts, dropped when it returns (kept when a SIGINT
/// interrupted it), and when a resume finds the branch merged or has undone the merge.
///
/// Why: git writes the merged files, then the index, then the merge commit (no `MERGE_HEAD`
/// for a clean merge), so a kill in between left the branch's files in the checkout as
/// untracked or changed files, and every resumed merge refused them ("untracked working tree
/// files would be overwritten by merge"; the loop crash sweep's seed 16).
/// [`undo_interrupted_final_merge`] reads it on resume.
const FINAL_MERGING: &str = "final_merging";

/// Drop the [`FINAL_MERGING`] record (saved only when there was one).
fn forget_final_merge(ctx: &mut Ctx) -> Result<()> {
    ctx.forget_worktree_record(FINAL_MERGING)
}

/// On resume, before the final merge checks the user's checkout: undo what a killed final merge
/// ([`FINAL_MERGING`]) wrote there. When the checkout's HEAD is still the recorded `head`, no
/// merge commit was made: of the paths the branch changed, those whose work-tree content is
/// exactly the branch tip's (what the merge itself wrote) are put back, a new file unlinked
/// (fsops, the checkout as root, no symlink followed) and a tracked one checked out from HEAD
/// ([`worktrees::undo_unfinished_merge`] with `only_tip`). A path with any other content is
/// the user's and is left: the merge then refuses and says to merge by hand. When HEAD moved,
/// the merge commit exists: nothing to undo. The record is dropped either way; an undo that
/// failed keeps it and ends the merge with a message saying to merge by hand.
fn undo_interrupted_final_merge(
    ctx: &mut Ctx,
    checkout: &std::path::Path,
    by_hand: &str,
) -> Result<Option<MergeEnd>> {
    let Some(rec) = ctx.worktree_record(FINAL_MERGING) else {
        return Ok(None);
    };
    let field = |k: &str| rec.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    let (head, tip) = (field("head"), field("tip"));
    // When the merge started (a record of an older prodigy has no `at`: the session's start),
    // a second earlier: file times come from the kernel's coarse clock, which may lag ours.
    let since = rec
        .get("at")
        .and_then(Value::as_i64)
        .or_else(|| ctx.session.started_at.map(|t| t.unix_seconds()))
        .map_or(i64::MAX, |t| t.saturating_sub(1));
    if !head.is_empty()
        && !tip.is_empty()
        && worktrees::head(&ctx.git, checkout).ok().as_deref() == Some(head.as_str())
    {
        match worktrees::undo_unfinished_merge(&ctx.git, checkout, checkout, &head, &tip, Some(since)) {
            Ok(put_back) if put_back.is_empty() => {}
            Ok(put_back) => ctx.warn(&format!(
                "put back {} file(s) that the interrupted merge of `{}` left in `{}`; merging again",
                put_back.len(),
                ctx.branch,
                checkout.display()
            )),
            Err(e) => {
                return Ok(Some(MergeEnd::NotMerged(format!(
                    "cannot undo the interrupted merge of `{}` in `{}`: {e}; merge by hand: {by_hand}",
                    ctx.branch,
                    checkout.display()
                ))))
            }
        }
    }
    forget_final_merge(ctx)?;
    Ok(None)
}

/// Record the merge steps' progress in the session record (`workflow_data.merge`): steps
/// `0..done` completed, the variables they set or changed, and HEAD of the session worktree.
fn merge_checkpoint(
    ctx: &mut Ctx,
    lane: &Lane<'_>,
    base: &crate::workflow::vars::Vars,
    done: usize,
) -> Result<()> {
    let variables: serde_json::Map<String, Value> = lane.vars.changed_from(base);
    let mut m = json!({"completed_steps": done, "variables": variables});
    if let Some(h) = lane.head(ctx) {
        m["head"] = json!(h);
    }
    if let Some(Value::Object(w)) = ctx.session.workflow_data.as_mut() {
        w.insert("merge".into(), m);
    }
    ctx.save_session()
}

/// Remove the session worktree (fsops) and its branch once the branch is merged; a failure is
/// registered in the orphan registry and reported as a warning. The branch's tip goes into the
/// session record first (`metadata.worktree.merged_tip`): a `dlq retry` re-creates the branch
/// there, so the items merged before are in its history (resume's "git is the truth").
fn remove_session_worktree(ctx: &mut Ctx) -> Result<()> {
    let parent = ctx.layout.worktrees_dir();
    let name = ctx.session.id.clone();
    let tip = worktrees::branch_tip(&ctx.git, &ctx.repo.main, &ctx.branch);
    if let (Some(t), Some(Value::Object(w))) = (&tip, ctx.session.metadata.get_mut("worktree")) {
        w.insert("merged_tip".into(), json!(t));
        ctx.save_session()?;
    }
    match worktrees::remove_worktree(
        &ctx.git,
        ctx.layout.root(),
        &ctx.repo.common,
        &parent,
        &name,
    ) {
        Ok(()) => {
            if let Some(t) = tip {
                let _ =
                    worktrees::delete_merged_branch(&ctx.git, &ctx.repo.common, &ctx.branch, &t);
            }
            ctx.event(
                "worktree_cleaned",
                json!({"path": ctx.worktree.to_string_lossy()}),
            );
        }
        Err(e) => {
            register_orphan(ctx, &ctx.worktree.clone(), "", "", &e);
        }
    }
    Ok(())
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

/// Was `p` (a lock file, not followed if a symlink) last modified at or after `since` (Unix
/// seconds)? False when it cannot be read.
fn modified_since(p: &std::path::Path, since: i64) -> bool {
    std::fs::symlink_metadata(p)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .is_some_and(|d| d.as_secs() as i64 >= since)
}
