//! Session classes of safety §1, with the evidence that decided them.
//!
//! Active → never cleaned; Resumable → never cleaned by `clean`; Unknown → never cleaned;
//! Stale, Completed, Failed, Cancelled → cleaned after the retention period. Protection is
//! relational: the planner keeps everything a protected session owns.

use super::inventory::{Inventory, ItemKind};
use crate::store::records::SessionStatus;
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

/// Fold what item `it` (owned by some session) tells about its owner's class into `acc`:
/// its newest activity, a live resume lock, a process working in it, evidence of resumability.
/// The first lock and the first process found are the ones named.
pub fn fold(acc: &mut Owned, it: &super::inventory::Item, f: &Facts<'_>) {
    if let Some(n) = it.newest {
        acc.last = Some(acc.last.map_or(n, |l| l.max(n)));
    }
    if let (ItemKind::Lock, Some(why)) = (&it.kind, &it.rare().lock_live) {
        acc.live_lock
            .get_or_insert_with(|| format!("resume lock {}: {why}", it.rel()));
    }
    if it.kind == ItemKind::Worktree {
        let p = f.root_path.join(it.rel());
        if let Some(u) = f.in_use.iter().find(|u| u.starts_with(&p)) {
            acc.in_use.get_or_insert_with(|| {
                format!("a process works in {} (`{}`)", it.rel(), u.display())
            });
        }
        if let Some((m, meta)) = it.git.as_ref().and_then(|g| g.legacy_meta.as_ref()) {
            if meta.resumable {
                acc.resumable.push(format!(
                    "{} says resumable: true",
                    super::inventory::rel_of(m)
                ));
            }
        }
    }
    if let Some(r) = &it.rare().resumable {
        acc.resumable.push(r.clone());
    }
}

/// Classify every session of the inventory.
pub fn classify_all(inv: &mut Inventory, f: &Facts<'_>) -> super::Map<String, Verdict> {
    // Evidence from what each session owns.
    let mut owned: super::Map<String, Owned> = Default::default();
    for it in &inv.items {
        let Some(o) = &it.owner else { continue };
        fold(owned.entry(o.clone()).or_default(), it, f);
    }
    let mut out = super::Map::default();
    for s in inv.sessions.values_mut() {
        let rec_item = &inv.items[s.item];
        // The record item itself is owned by its session: its mtime is in `last`.
        let owned = owned.remove(&s.id).unwrap_or_default();
        let record = s.record.as_ref().map(|r| RecordFacts::of(r, f.host));
        let v = classify_one(
            &rec_item.rel(),
            record.as_ref().map_err(|e| e.as_str()),
            owned,
            f,
        );
        out.insert(s.id.clone(), v);
    }
    out
}

/// How a record's `metadata.owner` can be checked from here.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OwnerFact {
    /// No parsable owner.
    None,
    /// Written on this host: the pid decides.
    Here(u32),
    /// Another host: only activity can tell.
    Elsewhere,
}

/// The facts of a session record classification uses, small enough to keep one per session.
#[derive(Clone, Copy, Debug)]
pub struct RecordFacts {
    /// `status`.
    pub status: SessionStatus,
    /// `updated_at`, Unix seconds.
    pub updated_at: Option<i64>,
    /// Entries in `checkpoints` (0.4.4).
    pub checkpoints: usize,
    /// `metadata.owner`.
    pub owner: OwnerFact,
}

impl RecordFacts {
    /// From a scanned record, for this host.
    pub fn of(r: &super::inventory::SessionFacts, host: &str) -> RecordFacts {
        RecordFacts {
            status: r.status,
            updated_at: r.updated_at,
            checkpoints: r.checkpoints,
            owner: match &r.owner {
                None => OwnerFact::None,
                Some(o) if o.hostname == host => OwnerFact::Here(o.pid),
                Some(_) => OwnerFact::Elsewhere,
            },
        }
    }

    /// True when the class may depend on the session's last activity beyond what is known:
    /// a running session whose owner cannot be checked here (safety §1 activity window).
    pub fn needs_activity(&self) -> bool {
        let running = matches!(
            self.status,
            SessionStatus::Initializing | SessionStatus::Running | SessionStatus::Paused
        );
        running && !matches!(self.owner, OwnerFact::Here(_))
    }
}

/// What a session owns that bears on its class.
#[derive(Debug, Default)]
pub struct Owned {
    /// Evidence that it can be resumed (checkpoints that parse, 0.4.4 metadata …).
    pub resumable: Vec<String>,
    /// A live resume lock of it: why it is live.
    pub live_lock: Option<String>,
    /// A process works in one of its worktrees: which.
    pub in_use: Option<String>,
    /// Newest activity of its record file and of everything it owns, Unix seconds.
    pub last: Option<i64>,
}

/// Classify one session from its record (or why the record could not be read; `rec_rel` is the
/// record's path) and what it owns (safety §1).
pub fn classify_one(
    rec_rel: &str,
    record: Result<&RecordFacts, &str>,
    owned: Owned,
    f: &Facts<'_>,
) -> Verdict {
    let Owned {
        resumable: mut evidence,
        live_lock,
        in_use,
        mut last,
    } = owned;
    let verdict = |class, evidence: String, last| Verdict {
        class,
        evidence,
        last_activity: last,
    };
    let record = match record {
        // An unreadable record whose resume lock is live or whose worktree a process works
        // in is running, whatever its file says.
        Err(_) if live_lock.is_some() || in_use.is_some() => {
            let why = live_lock.or(in_use).unwrap_or_default();
            return verdict(Class::Active, why, last);
        }
        Err(why) => return verdict(Class::Unknown, format!("{rec_rel}: {why}"), last),
        Ok(r) => r,
    };
    if let Some(u) = record.updated_at {
        last = Some(last.map_or(u, |l| l.max(u)));
    }
    if record.checkpoints > 0 {
        evidence.push(format!(
            "{rec_rel} lists {} checkpoint(s)",
            record.checkpoints
        ));
    }
    let status = record.status;
    let running = matches!(
        status,
        SessionStatus::Initializing | SessionStatus::Running | SessionStatus::Paused
    );
    if let Some(why) = live_lock {
        verdict(Class::Active, why, last)
    } else if let Some(why) = in_use {
        verdict(Class::Active, why, last)
    } else if let Some(why) = running.then(|| active_owner(record, last, f)).flatten() {
        verdict(Class::Active, why, last)
    } else if !matches!(status, SessionStatus::Completed | SessionStatus::Cancelled)
        && !evidence.is_empty()
    {
        verdict(
            Class::Resumable,
            format!("status {status:?}; {}", evidence.join("; ")),
            last,
        )
    } else if running {
        verdict(
            Class::Stale,
            format!("status {status:?}, no live owner, nothing to resume from"),
            last,
        )
    } else {
        let class = match status {
            SessionStatus::Completed => Class::Completed,
            SessionStatus::Cancelled => Class::Cancelled,
            _ => Class::Failed,
        };
        verdict(class, format!("status {status:?}"), last)
    }
}

/// Active by its owner: `metadata.owner` alive on this host; or, owner unknown or on another
/// host, activity within [`ACTIVITY_WINDOW`].
fn active_owner(r: &RecordFacts, last: Option<i64>, f: &Facts<'_>) -> Option<String> {
    if let OwnerFact::Here(pid) = r.owner {
        return crate::procs::pid_alive(pid as u64)
            .then(|| format!("owner pid {pid} is alive on this host"));
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
