//! Session classes of safety §1, with the evidence that decided them.
//!
//! Active → never cleaned; Resumable → never cleaned by `clean`; Unknown → never cleaned;
//! Stale, Completed, Failed, Cancelled → cleaned after the retention period. Protection is
//! relational: the planner keeps everything a protected session owns.

use super::inventory::{Inventory, ItemKind};
use crate::store::records::SessionStatus;
use std::collections::HashMap;
use std::path::PathBuf;

/// How long after its last activity a running session with no checkable owner still counts as
/// active, seconds (safety §1 default: 1 hour).
pub const ACTIVITY_WINDOW: i64 = 3600;

/// A session's class.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Class {
    /// Running now: never cleaned.
    Active,
    /// Can be resumed: never cleaned by `clean`.
    Resumable,
    /// Not terminal, not active, nothing to resume from.
    Stale,
    /// Completed.
    Completed,
    /// Failed, with nothing to resume from.
    Failed,
    /// Cancelled.
    Cancelled,
    /// Unreadable or unknown record: never cleaned.
    Unknown,
}

impl Class {
    /// Lowercase name used in output and JSON.
    pub fn word(self) -> &'static str {
        match self {
            Class::Active => "active",
            Class::Resumable => "resumable",
            Class::Stale => "stale",
            Class::Completed => "completed",
            Class::Failed => "failed",
            Class::Cancelled => "cancelled",
            Class::Unknown => "unknown",
        }
    }

    /// True for the classes whose data `clean` never removes.
    pub fn protected(self) -> bool {
        matches!(self, Class::Active | Class::Resumable | Class::Unknown)
    }
}

/// A class and why.
#[derive(Clone, Debug)]
pub struct Verdict {
    /// The class.
    pub class: Class,
    /// Which file, lock or process decided it.
    pub evidence: String,
    /// Last activity, Unix seconds (newest of `updated_at` and everything it owns).
    pub last_activity: Option<i64>,
}

/// Inputs that are not in the inventory.
pub struct Facts<'a> {
    /// Now, Unix seconds.
    pub now: i64,
    /// This host's name.
    pub host: &'a str,
    /// Directories that are some process's cwd or root.
    pub in_use: &'a [PathBuf],
    /// The root's canonical path.
    pub root_path: &'a std::path::Path,
}

/// Classify every session of the inventory.
pub fn classify_all(inv: &mut Inventory, f: &Facts<'_>) -> HashMap<String, Verdict> {
    // Evidence from what each session owns.
    let mut owned_newest: HashMap<String, i64> = HashMap::new();
    let mut owned_live_lock: HashMap<String, String> = HashMap::new();
    let mut owned_in_use: HashMap<String, String> = HashMap::new();
    let mut owned_resumable: HashMap<String, Vec<String>> = HashMap::new();
    for it in &inv.items {
        let Some(o) = &it.owner else { continue };
        if let Some(n) = it.newest {
            let e = owned_newest.entry(o.clone()).or_insert(n);
            *e = (*e).max(n);
        }
        if let (ItemKind::Lock, Some(why)) = (&it.kind, &it.rare().lock_live) {
            owned_live_lock
                .entry(o.clone())
                .or_insert(format!("resume lock {}: {why}", it.rel()));
        }
        if it.kind == ItemKind::Worktree {
            let p = f.root_path.join(it.rel());
            if let Some(u) = f.in_use.iter().find(|u| u.starts_with(&p)) {
                owned_in_use.entry(o.clone()).or_insert(format!(
                    "a process works in {} (`{}`)",
                    it.rel(),
                    u.display()
                ));
            }
            if let Some((m, meta)) = it.git.as_ref().and_then(|g| g.legacy_meta.as_ref()) {
                if meta.resumable {
                    owned_resumable.entry(o.clone()).or_default().push(format!(
                        "{} says resumable: true",
                        super::inventory::rel_of(m)
                    ));
                }
            }
        }
        if let Some(r) = &it.rare().resumable {
            owned_resumable
                .entry(o.clone())
                .or_default()
                .push(r.clone());
        }
    }
    let mut out = HashMap::new();
    for s in inv.sessions.values_mut() {
        let mut evidence = owned_resumable.remove(&s.id).unwrap_or_default();
        let rec_item = &inv.items[s.item];
        let mut last = rec_item.newest;
        if let Some(n) = owned_newest.get(&s.id) {
            last = Some(last.map_or(*n, |l| l.max(*n)));
        }
        let record = match &s.record {
            // An unreadable record whose resume lock is live or whose worktree a process works
            // in is running, whatever its file says.
            Err(_) if owned_live_lock.contains_key(&s.id) || owned_in_use.contains_key(&s.id) => {
                let why = owned_live_lock
                    .get(&s.id)
                    .or_else(|| owned_in_use.get(&s.id))
                    .cloned()
                    .unwrap_or_default();
                out.insert(
                    s.id.clone(),
                    Verdict {
                        class: Class::Active,
                        evidence: why,
                        last_activity: last,
                    },
                );
                continue;
            }
            Err(why) => {
                out.insert(
                    s.id.clone(),
                    Verdict {
                        class: Class::Unknown,
                        evidence: format!("{}: {why}", rec_item.rel()),
                        last_activity: last,
                    },
                );
                continue;
            }
            Ok(r) => r,
        };
        if let Some(u) = record.updated_at {
            last = Some(last.map_or(u, |l| l.max(u)));
        }
        if record.checkpoints > 0 {
            evidence.push(format!(
                "{} lists {} checkpoint(s)",
                rec_item.rel(),
                record.checkpoints
            ));
        }
        let status = record.status;
        let running = matches!(
            status,
            SessionStatus::Initializing | SessionStatus::Running | SessionStatus::Paused
        );
        let verdict = |class, evidence: String| Verdict {
            class,
            evidence,
            last_activity: last,
        };
        let v = if let Some(why) = owned_live_lock.get(&s.id) {
            verdict(Class::Active, why.clone())
        } else if let Some(why) = owned_in_use.get(&s.id) {
            verdict(Class::Active, why.clone())
        } else if let Some(why) = running.then(|| active_owner(record, last, f)).flatten() {
            verdict(Class::Active, why)
        } else if !matches!(status, SessionStatus::Completed | SessionStatus::Cancelled)
            && !evidence.is_empty()
        {
            verdict(
                Class::Resumable,
                format!("status {status:?}; {}", evidence.join("; ")),
            )
        } else if running {
            verdict(
                Class::Stale,
                format!("status {status:?}, no live owner, nothing to resume from"),
            )
        } else {
            let class = match status {
                SessionStatus::Completed => Class::Completed,
                SessionStatus::Cancelled => Class::Cancelled,
                _ => Class::Failed,
            };
            verdict(class, format!("status {status:?}"))
        };
        out.insert(s.id.clone(), v);
    }
    out
}

/// Active by its owner: `metadata.owner` alive on this host; or, owner unknown or on another
/// host, activity within [`ACTIVITY_WINDOW`].
fn active_owner(
    r: &super::inventory::SessionFacts,
    last: Option<i64>,
    f: &Facts<'_>,
) -> Option<String> {
    if let Some(o) = &r.owner {
        if o.hostname == f.host {
            return crate::procs::pid_alive(o.pid as u64)
                .then(|| format!("owner pid {} is alive on this host", o.pid));
        }
    }
    let last = last?;
    let idle = f.now - last;
    (idle < ACTIVITY_WINDOW).then(|| {
        if idle < 0 {
            "last activity is in the future (counted as now)".to_string()
        } else {
            format!("last activity {idle}s ago, within the {ACTIVITY_WINDOW}s activity window")
        }
    })
}
