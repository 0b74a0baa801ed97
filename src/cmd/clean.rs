//! `prodigy clean` and `prodigy worktree clean`: resolve the root and scope, take the clean lock,
//! plan, confirm, execute, report. Output goes through `writeln!` with errors handled.

use crate::clean::retention::{self, Config};
use crate::clean::{self, Decision, Engine, Mode, Options, Report, Stats};
use crate::cli::CleanArgs;
use crate::error::{describe_io, Error, Exit, Result};
use crate::git::Git;
use crate::store::fsops::Dir;
use crate::store::lock::{self, TryLock};
use crate::store::{self, StorageType};
use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::io::{BufRead, IsTerminal, Write};
use std::path::Path;

/// Run a clean. `name` is the command as the user typed it, for messages.
pub fn run(a: &CleanArgs, name: &str) -> Result<Exit> {
    let (wanted, opened) = super::open_store(name)?;
    let Some((root_path, root)) = opened else {
        if a.json {
            crate::cmd::print(&format!(
                "{}\n",
                serde_json::json!({"command": name, "root": wanted, "nothing_stored": true})
            ))?;
        } else if !a.quiet {
            crate::cmd::print(&format!(
                "prodigy {name}: nothing is stored at `{}`\n",
                wanted.display()
            ))?;
        }
        return Ok(Exit::Ok);
    };
    // The retention file is read before anything else is looked at: a file that does not parse
    // stops the run before anything is removed.
    let file = if name == "clean" {
        load_config(&root, &root_path).map_err(|e| Error::usage(format!("{name}: {e}")))?
    } else {
        Config::default()
    };
    let policy = Policy::resolve(&file, a);
    let git = Git::default();
    let (scope, scope_note) = super::resolve_scope(&a.scope, &git);
    // Only a run that may delete creates the lock file: a dry run, or a run that will be refused
    // for want of a terminal, changes nothing.
    let interactive = std::io::stdin().is_terminal() && std::io::stderr().is_terminal();
    let may_delete = !a.dry_run && (a.force || interactive);
    let _clean_lock = match take_clean_lock(&root, may_delete) {
        Ok(Some(l)) => Some(l),
        Ok(None) => {
            if !a.quiet {
                let _ = writeln!(
                    std::io::stderr(),
                    "prodigy {name}: another clean is running; nothing to do"
                );
            }
            return Ok(Exit::Ok);
        }
        // A read-only root can still be looked at; deleting will fail item by item.
        Err(e) => {
            if may_delete && !a.quiet && e.kind() != std::io::ErrorKind::NotFound {
                let _ = writeln!(
                    std::io::stderr(),
                    "prodigy {name}: warning: cannot take the clean lock ({}); going on without it",
                    describe_io(&e)
                );
            }
            None
        }
    };
    let types = if a.types.is_empty() {
        StorageType::ALL.to_vec()
    } else {
        a.types.clone()
    };
    let opts = Options {
        types,
        older_than: a.older_than,
        retention: policy.retention.clone(),
        max_size: policy.max_size,
        scope,
        discard_changes: a.discard_changes,
        only_name: a.only_name.clone(),
        only_paths: a.only_paths.clone(),
        only_owners: a.only_owners.clone(),
        explicit: a.explicit,
        // With --force the plan is never shown: each worktree's `git status` runs once, in
        // the re-check right before its deletion.
        status_at_plan: !a.force || a.dry_run,
        estimate: false,
        compress_after: policy.compress_after,
        archive: policy.archive.clone(),
    };
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    if (a.dry_run || a.force) && clean::stream::eligible(&opts) && !whole_root_forced() {
        // Nothing to confirm: stream the root batch by batch (memory bounded by the index).
        let mode = if a.dry_run { Mode::DryRun } else { Mode::Real };
        let mut audit = AuditLog::new(&root_path, name);
        let report = clean::stream::run(
            &root,
            &root_path,
            &git,
            now,
            &opts,
            mode,
            &mut audit,
            &mut |_, _| {},
        );
        return finish(a, &policy, name, &root_path, &scope_note, report);
    }
    let progress = !a.quiet && !a.json && std::io::stderr().is_terminal();
    if progress {
        let _ = write!(
            std::io::stderr(),
            "Scanning {}…\r",
            crate::store::names::printable(root_path.as_os_str())
        );
    }
    let mut eng = Engine::new(&root, &root_path, &git, now, &opts);
    if progress {
        let _ = write!(
            std::io::stderr(),
            "\x1b[2KScanned {} items\r",
            eng.inv.items.len()
        );
    }
    let plan = eng.plan();
    if progress {
        let _ = write!(std::io::stderr(), "\x1b[2K\r");
    }
    if let Some(n) = &a.only_name {
        if !plan.iter().zip(&eng.inv.items).any(|(d, it)| {
            it.name() == *n && *d != Decision::NotSelected && *d != Decision::OutOfScope
        }) {
            return Err(Error::usage(format!(
                "{name}: no worktree named `{n}` in scope under `{}`; check the name, or add --all-repos",
                root_path.display()
            )));
        }
    }
    // Leftovers of an interrupted run count as work: finishing them is a deletion.
    // Stale git records of vanished worktrees also count: pruning them is a change.
    // Files to compress count as work too: a run with only those is a real run.
    let compressing = opts.compress_after.is_some()
        && plan.iter().zip(&eng.inv.items).any(|(d, it)| {
            *d == Decision::TooNew && matches!(it.ty, StorageType::Events | StorageType::Logs)
        });
    let to_remove = plan.iter().filter(|d| **d == Decision::Remove).count()
        + usize::from(compressing)
        + clean::trash_pending(&root)
        + clean::stale_git_records(&eng)
        + clean::stale_registry_entries(&eng);
    let mut audit = AuditLog::new(&root_path, name);
    let mode = if a.dry_run || to_remove == 0 {
        Mode::DryRun
    } else if a.force {
        Mode::Real
    } else {
        let preview = clean::execute(&mut eng, &plan, Mode::DryRun, &mut (), &mut |_, _, _| {});
        if !(std::io::stdin().is_terminal() && std::io::stderr().is_terminal()) {
            return Err(Error::refused(format!(
                "{name}: {} items ({}) would be removed, but there is no terminal to confirm; \
                 add --force to remove them or --dry-run to list them",
                preview.removed.len(),
                human_bytes(preview.removed.bytes())
            )));
        }
        emit(a, &policy, name, &root_path, &scope_note, &preview)?;
        if !confirm(&preview)? {
            let _ = writeln!(std::io::stderr(), "prodigy {name}: nothing was removed");
            return Ok(Exit::Ok);
        }
        Mode::Real
    };
    let nothing_to_do = to_remove == 0 && !a.dry_run;
    // Progress on stderr only when it is a terminal (Spec 135: "Cleaning sessions… (45/123) 36%").
    let show = progress && mode == Mode::Real;
    let mut last = std::time::Instant::now();
    let mut tick = |ty: StorageType, done: usize, total: usize| {
        if show && (last.elapsed().as_millis() >= 200 || done + 1 == total) {
            last = std::time::Instant::now();
            let pct = (done * 100).checked_div(total).unwrap_or(100);
            let _ = write!(
                std::io::stderr(),
                "\x1b[2KCleaning {}… ({done}/{total}) {pct}%\r",
                ty.word()
            );
        }
    };
    let mut report = clean::execute(&mut eng, &plan, mode, &mut audit, &mut tick);
    if show {
        let _ = write!(std::io::stderr(), "\x1b[2K\r");
    }
    // With nothing to remove, a real run and a dry run are the same; say it as a real run.
    if nothing_to_do {
        report.dry_run = false;
    }
    finish(a, &policy, name, &root_path, &scope_note, report)
}

/// `PRODIGY_CLEAN_WHOLE_ROOT=1` plans the whole root at once, as runs with a quota do (for
/// comparing the two engines; see DESIGN.md).
fn whole_root_forced() -> bool {
    std::env::var_os("PRODIGY_CLEAN_WHOLE_ROOT").is_some_and(|v| v == "1")
}

/// Print a run's failures on stderr and its report, and pick the exit status.
fn finish(
    a: &CleanArgs,
    policy: &Policy,
    name: &str,
    root_path: &Path,
    scope_note: &str,
    report: Report,
) -> Result<Exit> {
    for f in &report.errors {
        crate::error::eprint_line(&format!(
            "prodigy {name}: {}: {}; {}",
            f.path, f.cause, f.hint
        ));
    }
    emit(a, policy, name, root_path, scope_note, &report)?;
    if let Some(q) = report
        .quota
        .as_ref()
        .filter(|q| !q.met() && a.quiet && !a.json)
    {
        // Under --quiet (cron) an unmet quota is still worth a mail; it is not a failure.
        crate::error::eprint_line(&format!(
            "prodigy {name}: warning: quota {}",
            quota_line(q, report.dry_run)
        ));
    }
    Ok(if report.errors.is_empty() {
        Exit::Ok
    } else {
        Exit::Failures
    })
}

/// The effective retention of every type and the quota, from the retention file and the flags.
pub struct Policy {
    /// Seconds per type.
    pub retention: std::collections::BTreeMap<StorageType, u64>,
    /// Bytes.
    pub max_size: Option<u64>,
    /// Seconds: `--compress-after` > the file's `compress-after`.
    pub compress_after: Option<u64>,
    /// `--archive DIR` > the file's `archive` (a relative flag is taken from the current
    /// directory).
    pub archive: Option<std::path::PathBuf>,
}

impl Policy {
    /// Precedence: `--retention TYPE=D` > `--older-than D` (every type) > the retention file >
    /// the default retention (Spec 135). `--max-size` > the file's `max-size`.
    pub fn resolve(file: &Config, a: &CleanArgs) -> Policy {
        let mut retention: std::collections::BTreeMap<StorageType, u64> =
            crate::sort::collect_map(StorageType::ALL.iter().map(|t| (*t, t.default_retention())));
        retention.extend(file.retention.iter().map(|(t, s)| (*t, *s)));
        if let Some(o) = a.older_than {
            retention.values_mut().for_each(|v| *v = o);
        }
        retention.extend(a.retention.iter().copied());
        Policy {
            retention,
            max_size: a.max_size.or(file.max_size),
            // Only `clean` compresses (not `worktree clean` or `sessions rm`).
            compress_after: a.compress_after.or(file.compress_after),
            archive: a
                .archive
                .as_ref()
                .map(|d| std::path::absolute(d).unwrap_or_else(|_| d.clone()))
                .or_else(|| file.archive.clone()),
        }
    }
}

/// Read `$PRODIGY_HOME/clean.conf` fd-relative (a symlink, FIFO or huge file is refused, not
/// followed); an absent file is an empty policy. Errors read `` `PATH`:LINE: … `` or
/// `` cannot read `PATH`: … ``.
pub fn load_config(root: &Dir, root_path: &Path) -> std::result::Result<Config, String> {
    let path = root_path.join(retention::FILE);
    let bytes = match root.read_file(OsStr::new(retention::FILE), retention::MAX_FILE) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Config::default()),
        Err(e) => {
            return Err(format!(
                "cannot read retention file `{}`: {}; fix or remove it",
                path.display(),
                describe_io(&e)
            ))
        }
    };
    let text = String::from_utf8(bytes).map_err(|e| {
        let line = 1 + e.as_bytes()[..e.utf8_error().valid_up_to()]
            .iter()
            .filter(|&&b| b == b'\n')
            .count();
        format!("`{}`:{line}: not UTF-8 text", path.display())
    })?;
    retention::parse(&text, &path)
}

/// How the quota went, in one line to follow the word "quota".
fn quota_line(q: &clean::Quota, dry_run: bool) -> String {
    let picked = if q.picked.items > 0 {
        format!(
            "; {} {} items ({}) younger than their retention for it",
            if dry_run { "would remove" } else { "removed" },
            q.picked.items,
            human_bytes(q.picked.bytes)
        )
    } else {
        String::new()
    };
    if q.met() {
        return format!(
            "{} met: {} stored{}",
            human_bytes(q.max_bytes),
            human_bytes(q.after_bytes),
            picked
        );
    }
    let mut ways: Vec<String> = q
        .blocked_by
        .iter()
        .take(3)
        .map(|e| {
            format!(
                "{} ({}, {})",
                e.path,
                e.reason.map(|r| r.word()).unwrap_or("-"),
                human_bytes(e.bytes)
            )
        })
        .collect();
    if q.blocked_by.len() > 3 {
        ways.push(format!("{} more", q.blocked_by.len() - 3));
    }
    let why = if ways.is_empty() {
        "nothing else may be removed".to_string()
    } else {
        format!("protected data in the way: {}", ways.join(", "))
    };
    format!(
        "{} not met: {} stored, {} over{picked}; {why}",
        human_bytes(q.max_bytes),
        human_bytes(q.after_bytes),
        human_bytes(q.shortfall()),
    )
}

/// Take the global clean lock. A dry run creates nothing: it takes the lock only if the lock
/// file exists already (a concurrent real run creates it before deleting anything).
fn take_clean_lock(root: &Dir, create: bool) -> std::io::Result<Option<lock::Held>> {
    let dirname = OsStr::new("resume_locks");
    if create {
        match root.create_dir(dirname) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
    }
    let d = root.open_dir(dirname)?;
    match lock::try_lock(&d, OsStr::new(store::CLEAN_LOCK), create)? {
        TryLock::Acquired(h) => Ok(Some(h)),
        TryLock::Busy => Ok(None),
    }
}

/// The audit log ([`store::AUDIT_LOG`]), opened once per run on its first line and rotated to
/// `.1` when it has grown past [`store::AUDIT_LIMIT`] bytes. Each line is one `write(2)`
/// ([`store::atomic::append_to`]); lines are synced when the engine asks (after each batch of
/// deletions and at the end of the run) and before a rotation. The first error is reported on
/// stderr, naming the log; the run goes on.
struct AuditLog<'a> {
    path: std::path::PathBuf,
    /// The open file and its size, bytes.
    open: Option<(std::fs::File, u64)>,
    /// Lines were written since the last sync.
    unsynced: bool,
    /// The command, for the warning (`clean`, `sessions rm`, ...).
    command: &'a str,
    warned: bool,
}

impl<'a> AuditLog<'a> {
    /// The audit log of the root at `root_path`, opened on its first line; `command` names
    /// the command in its warnings.
    fn new(root_path: &Path, command: &'a str) -> Self {
        AuditLog {
            path: root_path.join(store::AUDIT_LOG),
            open: None,
            unsynced: false,
            command,
            warned: false,
        }
    }
}

impl clean::Audit for AuditLog<'_> {
    fn record(&mut self, event: &serde_json::Value) {
        let r = self.append(event);
        self.warn(r);
    }

    fn sync(&mut self) {
        let r = self.sync_now();
        self.warn(r);
    }
}

impl AuditLog<'_> {
    fn warn(&mut self, r: std::io::Result<()>) {
        if let Err(e) = r {
            if !self.warned {
                self.warned = true;
                crate::error::eprint_line(&format!(
                    "prodigy {}: cannot write audit log `{}`: {}",
                    self.command,
                    self.path.display(),
                    describe_io(&e)
                ));
            }
        }
    }

    fn sync_now(&mut self) -> std::io::Result<()> {
        match &self.open {
            Some((f, _)) if self.unsynced => {
                self.unsynced = false;
                f.sync_data()
            }
            _ => Ok(()),
        }
    }

    fn append(&mut self, v: &serde_json::Value) -> std::io::Result<()> {
        if self
            .open
            .as_ref()
            .is_some_and(|(_, n)| *n > store::AUDIT_LIMIT)
        {
            self.sync_now()?;
            self.open = None;
        }
        let (file, size) = match &mut self.open {
            Some(o) => o,
            None => {
                if std::fs::symlink_metadata(&self.path)
                    .map(|m| m.len() > store::AUDIT_LIMIT)
                    .unwrap_or(false)
                {
                    let mut old = self.path.as_os_str().to_owned();
                    old.push(".1");
                    std::fs::rename(&self.path, old)?;
                }
                let f = store::atomic::open_append(&self.path)?;
                let n = f.metadata()?.len();
                self.open.insert((f, n))
            }
        };
        let line = v.to_string();
        store::atomic::append_to(file, &self.path, line.as_bytes())?;
        *size += line.len() as u64 + 1;
        self.unsynced = true;
        Ok(())
    }
}

fn confirm(preview: &Report) -> Result<bool> {
    let mut err = std::io::stderr();
    let gz = if preview.compressed_count.0.items > 0 {
        format!(
            " and compress {} files ({})",
            preview.compressed_count.0.items,
            human_bytes(preview.compressed_count.0.bytes)
        )
    } else {
        String::new()
    };
    let _ = write!(
        err,
        "Remove {} items ({}){gz}? [y/N] ",
        preview.removed.len(),
        human_bytes(preview.removed.bytes())
    );
    let _ = err.flush();
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| Error::fatal(format!("cannot read answer: {e}")))?;
    Ok(matches!(line.trim(), "y" | "Y" | "yes" | "Yes" | "YES"))
}

fn emit(
    a: &CleanArgs,
    policy: &Policy,
    name: &str,
    root: &Path,
    scope: &str,
    rep: &Report,
) -> Result<()> {
    if a.json {
        // Serialized straight to stdout from borrowed data: no JSON tree of the whole report.
        let mut out = std::io::BufWriter::new(std::io::stdout().lock());
        return serde_json::to_writer_pretty(&mut out, &json(a, policy, name, root, scope, rep))
            .map_err(std::io::Error::from)
            .and_then(|_| out.write_all(b"\n"))
            .and_then(|_| out.flush())
            .map_err(|e| Error::fatal(format!("cannot write output: {}", describe_io(&e))));
    }
    if a.quiet {
        return Ok(());
    }
    crate::cmd::print_with(|o| human(o, a, name, root, scope, rep))
}

/// `1536` → `1.5 KiB`.
pub fn human_bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if b < 1024 {
        return format!("{b} B");
    }
    let mut v = b as f64 / 1024.0;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    format!("{v:.1} {}", UNITS[u])
}

fn stats_lines(out: &mut dyn std::fmt::Write, title: &str, s: &Stats) -> std::fmt::Result {
    writeln!(
        out,
        "{title}: {} items, {}",
        s.total.items,
        human_bytes(s.total.bytes)
    )?;
    for t in StorageType::ALL {
        let c = s.by_type.get(t.word()).copied().unwrap_or_default();
        writeln!(
            out,
            "  {:<10} {:>8} items {:>12}",
            t.word(),
            c.items,
            human_bytes(c.bytes)
        )?;
    }
    let repos: Vec<_> = s.by_repo.iter().filter(|(_, c)| c.items > 0).collect();
    if repos.len() > 1 {
        for (r, c) in repos {
            writeln!(
                out,
                "  repo {:<24} {:>8} items {:>12}",
                r,
                c.items,
                human_bytes(c.bytes)
            )?;
        }
    }
    Ok(())
}

fn human(
    o: &mut dyn std::fmt::Write,
    a: &CleanArgs,
    name: &str,
    root: &Path,
    scope: &str,
    rep: &Report,
) -> std::fmt::Result {
    use std::fmt::Write as _;
    let would = if rep.dry_run {
        "Would remove"
    } else {
        "Removed"
    };
    writeln!(o, "prodigy {name}: {} — {scope}", root.display())?;
    stats_lines(o, "Before", &rep.before)?;
    if !rep.classes.is_empty() {
        let parts: Vec<String> = rep
            .classes
            .iter()
            .map(|(c, n)| format!("{n} {c}"))
            .collect();
        writeln!(o, "Sessions: {}", parts.join(", "))?;
    }
    let removed_bytes: u64 = rep.removed.bytes();
    writeln!(
        o,
        "{would}: {} items, {}",
        rep.removed.len(),
        human_bytes(removed_bytes)
    )?;
    if name == "worktree clean" {
        // Prodigy 0.4.4's wording.
        for e in rep
            .removed
            .iter()
            .filter(|e| e.ty == StorageType::Worktrees)
        {
            let n = e.path.rsplit('/').next().unwrap_or(&e.path);
            if rep.dry_run {
                writeln!(o, "DRY RUN: Would remove worktree: {n}")?;
            } else {
                writeln!(o, "Removing worktree: {n}")?;
            }
        }
    }
    if rep.dry_run {
        // Each line is made whole, then written: one pass of the output guard a line.
        let mut line = String::new();
        for e in rep.removed.iter() {
            line.clear();
            writeln!(
                line,
                "  {:<10} {:<60} {:>10}  {}",
                e.ty.word(),
                e.path,
                human_bytes(e.bytes),
                e.detail
            )?;
            o.write_str(&line)?;
        }
    } else {
        let mut per: Vec<(StorageType, u64, u64)> = Vec::new();
        for t in StorageType::ALL {
            let (n, b) = rep
                .removed
                .iter()
                .filter(|e| e.ty == t)
                .fold((0, 0), |(n, b), e| (n + 1, b + e.bytes));
            if n > 0 {
                per.push((t, n, b));
            }
        }
        for (t, n, b) in per {
            writeln!(
                o,
                "  {:<10} {:>8} items {:>12}",
                t.word(),
                n,
                human_bytes(b)
            )?;
        }
    }
    if let Some(x) = &rep.archive {
        writeln!(
            o,
            "{} {} items ({} files, {}) to `{}`",
            if rep.dry_run {
                "Would archive"
            } else {
                "Archived"
            },
            x.items,
            x.files,
            human_bytes(x.bytes),
            x.path.display()
        )?;
    }
    if rep.compressed_count.0.items > 0 {
        let (c, after) = rep.compressed_count;
        writeln!(
            o,
            "{}: {} files, {} → {} (saves {})",
            if rep.dry_run {
                "Would compress"
            } else {
                "Compressed"
            },
            c.items,
            human_bytes(c.bytes),
            human_bytes(after),
            human_bytes(c.bytes.saturating_sub(after))
        )?;
        if rep.dry_run {
            for e in &rep.compressed {
                writeln!(
                    o,
                    "  gzip {:<10} {:<60} {:>10} → {}",
                    e.ty.word(),
                    e.path,
                    human_bytes(e.before),
                    human_bytes(e.after)
                )?;
            }
        }
    }
    for b in &rep.branches_deleted {
        let verb = if rep.dry_run {
            "Would delete"
        } else {
            "Deleted"
        };
        writeln!(o, "{verb} branch {} in {} ({})", b.branch, b.repo, b.detail)?;
    }
    for b in &rep.branches_kept {
        writeln!(o, "Kept branch {} in {}: {}", b.branch, b.repo, b.detail)?;
    }
    if !rep.kept.is_empty() {
        let kb: u64 = rep.kept.bytes();
        writeln!(
            o,
            "Kept though old enough: {} items, {}",
            rep.kept.len(),
            human_bytes(kb)
        )?;
        let mut by: std::collections::BTreeMap<&str, (u64, u64)> = Default::default();
        for (r, n, b) in rep.kept.by_reason() {
            let c = by.entry(r.map(|r| r.word()).unwrap_or("-")).or_default();
            c.0 += n;
            c.1 += b;
        }
        for (r, (n, b)) in by {
            writeln!(o, "  {r:<18} {n:>6} items {:>12}", human_bytes(b))?;
        }
        if rep.dry_run {
            let mut line = String::new();
            for e in rep.kept.iter() {
                let r = e.reason.map(|r| r.word()).unwrap_or("-");
                line.clear();
                writeln!(
                    line,
                    "  kept {:<10} {:<60} {r}: {}",
                    e.ty.word(),
                    e.path,
                    e.detail
                )?;
                o.write_str(&line)?;
            }
        }
    }
    for w in &rep.warnings {
        writeln!(o, "warning: {w}")?;
    }
    stats_lines(
        o,
        if rep.dry_run {
            "After (predicted)"
        } else {
            "After"
        },
        &rep.after,
    )?;
    if let Some(q) = &rep.quota {
        writeln!(o, "Quota {}", quota_line(q, rep.dry_run))?;
    }
    if rep.dry_run && !a.dry_run {
        writeln!(o, "Nothing was changed yet.")?;
    } else if rep.dry_run {
        writeln!(o, "Dry run: nothing was changed.")?;
    } else if !rep.errors.is_empty() {
        writeln!(
            o,
            "{} items could not be removed; see the errors above.",
            rep.errors.len()
        )?;
    }
    Ok(())
}

fn stats_json(s: &Stats) -> serde_json::Value {
    let c = |c: &clean::Count| serde_json::json!({"items": c.items, "bytes": c.bytes});
    serde_json::json!({
        "total": c(&s.total),
        "types": crate::sort::collect_object(StorageType::ALL.iter().map(|t| (t.word().to_string(), c(&s.by_type.get(t.word()).copied().unwrap_or_default())))),
        "repositories": crate::sort::collect_object(s.by_repo.iter().map(|(r, v)| (r.clone(), c(v)))),
    })
}

/// One `removed`/`kept` entry of the `--json` document, borrowed from the report.
#[derive(serde::Serialize)]
struct EntryJson<'a> {
    #[serde(rename = "type")]
    ty: &'static str,
    repository: &'a Option<String>,
    path: &'a str,
    bytes: u64,
    owner: &'a Option<String>,
    reason: Option<&'static str>,
    detail: &'a str,
    also: &'a [String],
}

/// A list of entries serialized one by one.
struct Entries<'a>(&'a clean::entries::EntryList);

impl serde::Serialize for Entries<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        let mut seq = s.serialize_seq(Some(self.0.len()))?;
        for e in self.0.iter() {
            seq.serialize_element(&EntryJson {
                ty: e.ty.word(),
                repository: &e.repo,
                path: &e.path,
                bytes: e.bytes,
                owner: &e.owner,
                reason: e.reason.map(|r| r.word()),
                detail: &e.detail,
                also: &e.also,
            })?;
        }
        seq.end()
    }
}

/// The `--json` document of `clean` (shape in man/prodigy-clean.1).
#[derive(serde::Serialize)]
struct Doc<'a> {
    command: &'a str,
    root: &'a Path,
    scope: &'a str,
    dry_run: bool,
    older_than_seconds: Option<u64>,
    retention_seconds: BTreeMap<&'static str, u64>,
    max_size_bytes: Option<u64>,
    types: Vec<&'static str>,
    before: serde_json::Value,
    after: serde_json::Value,
    sessions: &'a std::collections::BTreeMap<&'static str, u64>,
    removed: Entries<'a>,
    kept: Entries<'a>,
    branches: serde_json::Value,
    errors: serde_json::Value,
    warnings: &'a [String],
    totals: serde_json::Value,
    quota: Option<serde_json::Value>,
    compress_after_seconds: Option<u64>,
    compressed: serde_json::Value,
    archive: Option<serde_json::Value>,
}

fn json<'a>(
    a: &CleanArgs,
    policy: &Policy,
    name: &'a str,
    root: &'a Path,
    scope: &'a str,
    rep: &'a Report,
) -> Doc<'a> {
    let branch = |b: &clean::BranchEntry| serde_json::json!({"repository": b.repo, "branch": b.branch, "detail": b.detail});
    Doc {
        command: name,
        root,
        scope,
        dry_run: rep.dry_run,
        older_than_seconds: a.older_than,
        retention_seconds: crate::sort::collect_map(
            policy.retention.iter().map(|(t, s)| (t.word(), *s)),
        ),
        max_size_bytes: policy.max_size,
        types: if a.types.is_empty() {
            StorageType::ALL.to_vec()
        } else {
            a.types.clone()
        }
        .iter()
        .map(|t| t.word())
        .collect(),
        before: stats_json(&rep.before),
        after: stats_json(&rep.after),
        sessions: &rep.classes,
        removed: Entries(&rep.removed),
        kept: Entries(&rep.kept),
        branches: serde_json::json!({
            "deleted": rep.branches_deleted.iter().map(branch).collect::<Vec<_>>(),
            "kept": rep.branches_kept.iter().map(branch).collect::<Vec<_>>(),
        }),
        errors: rep
            .errors
            .iter()
            .map(|f| serde_json::json!({"path": f.path, "cause": f.cause, "hint": f.hint}))
            .collect(),
        warnings: &rep.warnings,
        totals: serde_json::json!({
            "removed_items": rep.removed.len(),
            "removed_bytes": rep.removed.bytes(),
            "kept_items": rep.kept.len(),
            "kept_bytes": rep.kept.bytes(),
        }),
        compress_after_seconds: policy.compress_after,
        archive: rep.archive.as_ref().map(|x| {
            serde_json::json!({
                "path": x.path, "items": x.items, "files": x.files, "bytes": x.bytes,
            })
        }),
        compressed: serde_json::json!({
            "files": rep.compressed_count.0.items,
            "bytes_before": rep.compressed_count.0.bytes,
            "bytes_after": rep.compressed_count.1,
            "saved_bytes": rep.compressed_count.0.bytes.saturating_sub(rep.compressed_count.1),
            "entries": rep.compressed.iter().map(|c| serde_json::json!({
                "type": c.ty.word(), "repository": c.repo, "path": c.path, "owner": c.owner,
                "bytes_before": c.before, "bytes_after": c.after,
            })).collect::<Vec<_>>(),
        }),
        quota: rep.quota.as_ref().map(|q| {
            serde_json::json!({
                "max_bytes": q.max_bytes,
                "before_bytes": q.before_bytes,
                "after_bytes": q.after_bytes,
                "met": q.met(),
                "shortfall_bytes": q.shortfall(),
                "removed_items": q.picked.items,
                "removed_bytes": q.picked.bytes,
                "blocked_by": q.blocked_by.iter().map(|e| serde_json::json!({
                    "type": e.ty.word(), "path": e.path, "bytes": e.bytes, "owner": e.owner,
                    "reason": e.reason.map(|r| r.word()), "detail": e.detail,
                })).collect::<Vec<_>>(),
            })
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_bytes_uses_binary_units() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(59 << 30), "59.0 GiB");
    }
}
