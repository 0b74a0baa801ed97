#!/usr/bin/env python3
"""Generate a PRODIGY_HOME tree in the canonical layout, with a manifest of what `prodigy clean` must do.

Shared by the integration tests and the benchmarks. Standard library only; `git` must be on PATH.

    python3 gen-tree.py --out DIR [--repos 3] [--sessions 60] [--worktrees 12]
                        [--files-per-worktree 5] [--logs 10] [--seed 1] [--quiet]
                        [--kinds K1,K2,...] [--worktree-variants V1,V2,...]
                        [--id-style random|same-second|shared-prefix]

DIR (must not exist, or be empty) receives:
    repos/repo-{k}/        real git repositories (branch main, one commit)
    home/.prodigy/         the PRODIGY_HOME, canonical layout (docs spec: storage-format.md §3, §4)
    outside/canary.txt     must survive every clean
    manifest.json          every item a cleaner considers, with the expected outcome
    .gitconfig             HOME for every git call made here

Expectations in the manifest are for `prodigy clean --all-repos --force` with default retention
(worktrees 7d, sessions 30d, logs 7d, state 30d, events 14d, dlq 30d) run right after generation;
"old" items are 60 days old and "recent" ones 1 day old, so they also hold for `--older-than 1w`.
Classification follows safety.md §1-§2.

Session kinds are assigned round-robin over KINDS (index i -> KINDS[i % 9]). The m-th session of a
kind goes to repository (m + kind_index) % repos, so that sessions are spread evenly over repositories
and every kind (in particular the worktree kind) reaches every repository, even when the number of
repositories divides 9.

--kinds replaces the kind list (default: all nine, in the order below; the same round-robin and
repository rule applies to the given list). --worktree-variants replaces the worktree variant cycle
(default merged,unmerged,untracked,modified,locked); the variant `recent` makes the worktree and its
whole session 1 day old (everything kept, too-new), so e.g. `merged,recent` gives worktrees of which
exactly half are expired (the benchmarks use both options; scripts/bench.sh).

--id-style chooses the generated ids (scripts/bench-ids.sh, issue 25): `random` (default)
`session-{48 random bits}` and `mapreduce-{48 random bits}`, differing early; `same-second` job ids
of jobs started in one second, `mapreduce-20260101T000000-{counter:06x}`, and session ids
`session-{job id}`; `shared-prefix` ids that share their first 120 characters (a `session-` or
`mapreduce-` prefix, then dates and hex runs) and end in an 8-digit hex counter: 128 characters,
the longest the name grammar allows.
"""

import argparse
import functools
import json
import os
import random
import socket
import subprocess
import sys
import time
from datetime import datetime, timezone

GENERATOR_VERSION = 1
DAY = 86400
OLD_AGE = 60 * DAY
RECENT_AGE = 1 * DAY

# Kind order is part of the contract (see the module docstring).
KINDS = [
    "completed-old",
    "completed-recent",
    "failed-resumable-old",
    "running-stale-old",
    "active-old",
    "corrupt-old",
    "completed-old-worktree",  # becomes plain "completed-old" once the worktree budget is spent
    "cancelled-old",
    "paused-resumable-old",
]
WORKTREE_VARIANTS = ["merged", "unmerged", "untracked", "modified", "locked"]
ALL_WORKTREE_VARIANTS = WORKTREE_VARIANTS + ["recent"]
ID_STYLES = ["random", "same-second", "shared-prefix"]
# 120 characters after the type prefix is cut to fit (see --id-style).
SHARED_BODY = ("-20260101T000000-" + "0123456789abcdef" * 2 + "-run") * 4

# kind -> (session status, job-state status, session phase, job phase, processed, failed,
#          checkpoints written besides job-state.json, class, expect, reason)
KIND_SPEC = {
    "completed-old": ("Completed", "completed", "Complete", "complete", 3, 0, ("setup",),
                      "completed", "removed", None),
    "completed-recent": ("Completed", "completed", "Complete", "complete", 3, 0, ("setup",),
                         "completed", "kept", "too-new"),
    "failed-resumable-old": ("Failed", "failed", "Map", "map", 1, 1, ("setup", "map"),
                             "resumable", "kept", "resumable"),
    "running-stale-old": ("Running", "running", "Setup", "setup", 0, 0, (),
                          "stale", "removed", None),
    "active-old": ("Running", "running", "Map", "map", 1, 0, ("setup",),
                   "active", "kept", "active"),
    "corrupt-old": ("Completed", "completed", "Complete", "complete", 3, 0, ("setup",),
                    "unknown", "kept", "unknown"),
    "cancelled-old": ("Cancelled", "cancelled", "Map", "map", 1, 0, ("setup",),
                      "cancelled", "removed", None),
    "paused-resumable-old": ("Paused", "running", "Reduce", "reduce", 3, 0, ("setup", "reduce"),
                             "resumable", "kept", "resumable"),
}
KIND_SPEC["completed-old-worktree"] = KIND_SPEC["completed-old"]
# Internal: the session of a `recent` worktree (not accepted by --kinds).
KIND_SPEC["completed-recent-worktree"] = KIND_SPEC["completed-recent"]
RECENT_KINDS = {"completed-recent", "completed-recent-worktree"}
TERMINAL = {"Completed", "Failed", "Cancelled"}

# worktree variant -> (worktree expect, worktree reason, branch expect, session expect, session reason)
# Jobs' events, dlq, state and mappings are removed in every variant (the session is Completed and
# old); only the session record stays with a kept worktree ("the owner goes last", safety.md §1).
VARIANT_SPEC = {
    "merged": ("removed", None, "deleted", "removed", None),
    "unmerged": ("removed", None, "kept", "removed", None),
    "untracked": ("kept", "uncommitted", "kept", "kept", "owner-kept"),
    "modified": ("kept", "uncommitted", "kept", "kept", "owner-kept"),
    "locked": ("kept", "locked", "kept", "kept", "owner-kept"),
    "recent": ("kept", "too-new", "kept", "kept", "too-new"),
}


def die(msg, code=1):
    sys.stderr.write(f"gen-tree: {msg}\n")
    sys.exit(code)


@functools.lru_cache(maxsize=None)
def rfc3339(epoch):
    return datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@functools.lru_cache(maxsize=None)
def fname_ts(epoch):
    return datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y%m%d%H%M%S")


def dumps(obj):
    # One line: json's C encoder only runs without `indent`, and speed matters at 10k sessions.
    return json.dumps(obj) + "\n"


class Writer:
    """Writes files directly (no fsync: this is test data) and remembers created directories."""

    def __init__(self):
        self.dirs = set()

    def mkdirs(self, path):
        if path not in self.dirs:
            os.makedirs(path, exist_ok=True)
            self.dirs.add(path)

    def write(self, path, data):
        self.mkdirs(os.path.dirname(path))
        if isinstance(data, str):
            data = data.encode()
        # os.open/os.write: a third of the cost of open() with its buffered text layer.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
        finally:
            os.close(fd)


def set_mtime(path, epoch):
    os.utime(path, (epoch, epoch), follow_symlinks=False)


def set_tree_mtime(top, epoch):
    """Every file, symlink and directory under `top` (and `top` itself), deepest first."""
    for dirpath, dirnames, filenames in os.walk(top, topdown=False, followlinks=False):
        for name in filenames + dirnames:  # dirnames here are symlinks to dirs or already-done dirs
            set_mtime(os.path.join(dirpath, name), epoch)
        set_mtime(dirpath, epoch)


class Git:
    """git with an environment free of GIT_*, no system config, HOME = DIR, hooks disabled."""

    def __init__(self, root):
        env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
        env["GIT_CONFIG_NOSYSTEM"] = "1"
        env["HOME"] = root
        # git also reads $XDG_CONFIG_HOME/git/config; point it into DIR (where nothing exists).
        env["XDG_CONFIG_HOME"] = os.path.join(root, ".config")
        env["LC_ALL"] = "C"
        self.env = env
        self.calls = 0

    def __call__(self, *args):
        cmd = ["git", "-c", "core.hooksPath=/dev/null", *args]
        self.calls += 1
        try:
            r = subprocess.run(cmd, env=self.env, stdin=subprocess.DEVNULL,
                               capture_output=True, text=True, timeout=300)
        except (OSError, subprocess.TimeoutExpired) as e:
            die(f"`{' '.join(cmd)}`: {e}")
        if r.returncode != 0:
            die(f"`{' '.join(cmd)}` exited {r.returncode}: {r.stderr.strip()}")
        return r.stdout


def parse_args(argv):
    p = argparse.ArgumentParser(description="Generate a Prodigy storage tree plus manifest.json.")
    p.add_argument("--out", required=True, help="output directory (must not exist, or be empty)")
    p.add_argument("--repos", type=int, default=3)
    p.add_argument("--sessions", type=int, default=60)
    p.add_argument("--worktrees", type=int, default=12)
    p.add_argument("--files-per-worktree", type=int, default=5)
    p.add_argument("--logs", type=int, default=10)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--quiet", action="store_true")
    p.add_argument("--kinds", default=",".join(KINDS),
                   help="comma-separated session kinds assigned round-robin (default: all nine)")
    p.add_argument("--worktree-variants", default=",".join(WORKTREE_VARIANTS),
                   help="comma-separated worktree variants cycled over the worktrees "
                        f"(from {','.join(ALL_WORKTREE_VARIANTS)})")
    p.add_argument("--id-style", choices=ID_STYLES, default="random",
                   help="how session and job ids are made (default: random)")
    a = p.parse_args(argv)
    a.kinds = [k for k in a.kinds.split(",") if k]
    a.worktree_variants = [v for v in a.worktree_variants.split(",") if v]
    if not a.kinds or any(k not in KINDS for k in a.kinds):
        p.error(f"--kinds takes a non-empty list from {','.join(KINDS)}")
    if not a.worktree_variants or any(v not in ALL_WORKTREE_VARIANTS for v in a.worktree_variants):
        p.error(f"--worktree-variants takes a non-empty list from {','.join(ALL_WORKTREE_VARIANTS)}")
    if a.repos < 1:
        p.error("--repos must be at least 1")
    for name in ("sessions", "worktrees", "files_per_worktree", "logs"):
        if getattr(a, name) < 0:
            p.error(f"--{name.replace('_', '-')} must not be negative")
    return a


def prepare_out(out):
    out = os.path.abspath(out)
    if os.path.lexists(out):
        if not os.path.isdir(out) or os.path.islink(out):
            die(f"`{out}` exists and is not a directory", 2)
        if os.listdir(out):
            die(f"`{out}` is not empty", 2)
    else:
        os.makedirs(out)
    # The cleaner resolves its root; give tests the resolved form too.
    return os.path.realpath(out)


def make_repos(root, n, files, git, w):
    with open(os.path.join(root, ".gitconfig"), "w") as f:
        f.write("[user]\n\tname = gen-tree\n\temail = gen-tree@example.invalid\n"
                "[safe]\n\tdirectory = *\n")
    repos = {}
    for k in range(n):
        name = f"repo-{k}"
        path = os.path.join(root, "repos", name)
        os.makedirs(path)
        git("init", "-q", "-b", "main", path)
        git("-C", path, "config", "user.name", "gen-tree")
        git("-C", path, "config", "user.email", "gen-tree@example.invalid")
        git("-C", path, "config", "commit.gpgsign", "false")
        w.write(os.path.join(path, "README.md"), f"# {name}\n\nGenerated by gen-tree.py.\n")
        for i in range(files):
            w.write(os.path.join(path, "f", f"d{i // 100:03d}", f"{i}.txt"), f"file {i} of {name}\n")
        git("-C", path, "add", "-A")
        git("-C", path, "commit", "-q", "-m", "initial commit")
        repos[name] = path
    return repos


class Gen:
    def __init__(self, args, root):
        self.args = args
        self.root = root
        self.home = os.path.join(root, "home", ".prodigy")
        self.rng = random.Random(args.seed)
        self.used_ids = set()
        self.id_counter = 0
        self.w = Writer()
        self.now = int(time.time())
        self.old_t = self.now - OLD_AGE
        self.recent_t = self.now - RECENT_AGE
        self.hostname = socket.gethostname()
        self.sessions = []
        self.paths = []
        self.branches = []
        self.adversarial = []

    def new_ids(self):
        """A (session id, job id) pair in the chosen --id-style."""
        style = self.args.id_style
        if style == "random":
            return self.new_id("session"), self.new_id("mapreduce")
        n = self.id_counter
        self.id_counter += 1
        if style == "same-second":
            jid = f"mapreduce-20260101T000000-{n:06x}"
            return f"session-{jid}", jid
        sid = ("session" + SHARED_BODY)[:120] + f"{n:08x}"
        jid = ("mapreduce" + SHARED_BODY)[:120] + f"{n:08x}"
        return sid, jid

    def new_id(self, prefix):
        while True:
            i = f"{prefix}-{self.rng.getrandbits(48):012x}"
            if i not in self.used_ids:
                self.used_ids.add(i)
                return i

    def h(self, *parts):
        return os.path.join(self.home, *parts)

    def add_path(self, rel, typ, owner, expect, reason):
        self.paths.append({"path": rel, "type": typ, "owner": owner, "expect": expect, "reason": reason})

    # ---- one session and its job -------------------------------------------------------------

    def write_session(self, sid, jid, repo, kind, corrupt_n=0):
        """Writes every file of one session; returns (owned paths for mtimes, epoch base, hook)."""
        (status, js_status, phase, jphase, processed, failed, ckpts,
         _cls, _exp, _rsn) = KIND_SPEC[kind]
        base = self.recent_t if kind in RECENT_KINDS else self.old_t
        started, t1, updated = base - 60, base - 30, base
        terminal = status in TERMINAL
        w = self.w

        metadata = {"repo": repo}
        if kind == "active-old":
            metadata["owner"] = {"pid": 1, "hostname": self.hostname, "heartbeat_at": rfc3339(updated)}
        record = {
            "id": sid,
            "session_type": "MapReduce",
            "status": status,
            "started_at": rfc3339(started),
            "updated_at": rfc3339(updated),
            "completed_at": rfc3339(updated) if terminal else None,
            "metadata": metadata,
            "checkpoints": [],
            "timings": {},
            "error": None,
            "workflow_data": None,
            "mapreduce_data": {
                "job_id": jid,
                "total_items": 3,
                "processed_items": processed,
                "failed_items": failed,
                "agent_count": 1,
                "phase": phase,
            },
        }
        files = []
        session_file = self.h("sessions", f"{sid}.json")
        text = dumps(record)
        if kind == "corrupt-old":
            # Alternate: 0-byte file (0.4.4 after Ctrl-C), then a truncated JSON prefix.
            text = "" if corrupt_n % 2 == 0 else text[: len(text) // 2]
        w.write(session_file, text)
        files.append(session_file)

        # events
        ev_dir = self.h("events", repo, jid)
        if js_status == "failed":
            last = {"event_type": "AgentFailed", "error": "agent failed"}
        elif js_status == "completed" or status == "Paused":
            last = {"event_type": "AgentCompleted", "commits": []}
        else:
            last = {"event_type": "AgentProgress", "step": "2/3"}
        agent = {"agent_id": "agent-1", "job_id": jid}
        lines = [
            {"timestamp": rfc3339(started), "event_type": "AgentStarted", **agent},
            {"timestamp": rfc3339(t1), "event_type": "AgentProgress", **agent, "step": "1/3"},
            {"timestamp": rfc3339(updated), "event_type": last.pop("event_type"), **agent, **last},
        ]
        ev_file = os.path.join(ev_dir, f"events-{fname_ts(started)}.jsonl")
        w.write(ev_file, "".join(json.dumps(l) + "\n" for l in lines))
        files.append(ev_file)

        # dlq
        dlq_dir = self.h("dlq", repo, jid)
        dlq_file = os.path.join(dlq_dir, "dlq-items.json")
        w.write(dlq_file, dumps({"items": [{
            "item_id": "item-2",
            "work_item": {"id": "item-2", "data": {"n": 2}},
            "failure_history": [{"timestamp": rfc3339(t1), "error": "Agent failed",
                                 "json_log_location": None}],
        }]}))
        files.append(dlq_file)

        # job state
        job_dir = self.h("state", repo, "mapreduce", "jobs", jid)
        js = {
            "job_id": jid,
            "session_id": sid,
            "workflow_name": "gen-workflow",
            "phase": jphase,
            "status": js_status,
            "created_at": rfc3339(started),
            "updated_at": rfc3339(updated),
            "total_items": 3,
            "completed_items": processed - failed,
            "failed_items": failed,
        }
        js_file = os.path.join(job_dir, "job-state.json")
        w.write(js_file, dumps(js))
        files.append(js_file)
        if "setup" in ckpts:
            p = os.path.join(job_dir, "setup-checkpoint.json")
            w.write(p, dumps({"phase": "setup", "completed": True, "outputs": {},
                              "timestamp": rfc3339(started)}))
            files.append(p)
        if "map" in ckpts:
            p = os.path.join(job_dir, f"map-checkpoint-{fname_ts(t1)}.json")
            w.write(p, dumps({"phase": "map", "completed_items": [], "in_progress_items": {},
                              "pending_items": [{"id": "item-1", "data": {"n": 1}}],
                              "failed_items": [], "agent_results": {}, "timestamp": rfc3339(t1)}))
            files.append(p)
        if "reduce" in ckpts:
            p = os.path.join(job_dir, f"reduce-checkpoint-v1-{fname_ts(updated)}.json")
            w.write(p, dumps({"phase": "reduce", "completed_steps": [0], "current_step": 1,
                              "step_results": {}, "map_results": {}, "timestamp": rfc3339(updated)}))
            files.append(p)

        # mappings: same bytes twice
        mapping = dumps({"session_id": sid, "job_id": jid, "workflow_name": "gen-workflow",
                         "created_at": rfc3339(started)})
        map_s = self.h("state", repo, "mappings", f"{sid}.json")
        map_j = self.h("state", repo, "mappings", f"{jid}.json")
        w.write(map_s, mapping)
        w.write(map_j, mapping)
        files += [map_s, map_j]

        # Directories after the files they hold (writing a file bumps its directory's mtime).
        return files + [ev_dir, dlq_dir, job_dir], base

    def session_paths(self, sid, jid, repo, expect, reason, rec_expect=None, rec_reason=None):
        """Manifest paths of a session; the record may differ (kept for its worktree)."""
        rel = lambda *p: "/".join(p)  # noqa: E731
        self.add_path(rel("sessions", f"{sid}.json"), "sessions", sid,
                      rec_expect or expect, rec_reason if rec_expect else reason)
        self.add_path(rel("events", repo, jid), "events", sid, expect, reason)
        self.add_path(rel("dlq", repo, jid), "dlq", sid, expect, reason)
        self.add_path(rel("state", repo, "mapreduce", "jobs", jid), "state", sid, expect, reason)
        self.add_path(rel("state", repo, "mappings", f"{sid}.json"), "state", sid, expect, reason)
        self.add_path(rel("state", repo, "mappings", f"{jid}.json"), "state", sid, expect, reason)

    # ---- the whole tree ------------------------------------------------------------------------

    def run(self, git, repos):
        a = self.args
        repo_names = list(repos)
        kinds = a.kinds
        variants = a.worktree_variants
        kind_counts = [0] * len(kinds)
        corrupt_n = 0
        wt_n = 0
        pending_mtimes = []  # (paths, epoch)
        worktree_jobs = []   # (sid, repo, variant)
        first_completed = None

        plan = []
        for i in range(a.sessions):
            k = i % len(kinds)
            m = kind_counts[k]
            kind_counts[k] += 1
            repo = repo_names[(m + k) % len(repo_names)]
            kind = kinds[k]
            variant = None
            if kind == "completed-old-worktree":
                if wt_n < a.worktrees:
                    variant = variants[wt_n % len(variants)]
                    wt_n += 1
                    if variant == "recent":
                        kind = "completed-recent-worktree"
                else:
                    kind = "completed-old"
            plan.append((*self.new_ids(), repo, kind, variant, None))
        # Safety case 7: `session-1` active beside an expired `session-10`.
        r0 = repo_names[0]
        plan.append(("session-1", self.new_id("mapreduce"), r0, "active-old", None, "prefix-similar"))
        plan.append(("session-10", self.new_id("mapreduce"), r0, "completed-old", None, "prefix-similar"))

        for sid, jid, repo, kind, variant, tag in plan:
            owned, base = self.write_session(sid, jid, repo, kind, corrupt_n)
            if kind == "corrupt-old":
                corrupt_n += 1
            _s, _j, _p, _jp, _pr, _f, _c, cls, expect, reason = KIND_SPEC[kind]
            wt = None
            if variant:
                wt_exp, wt_reason, br_exp, s_exp, s_reason = VARIANT_SPEC[variant]
                wt_rel = f"worktrees/{repo}/{sid}"
                branch = f"prodigy-{sid}"
                wt = {"path": wt_rel, "variant": variant, "branch": branch}
                worktree_jobs.append((sid, repo, variant))
                self.session_paths(sid, jid, repo, expect, reason, s_exp, s_reason)
                self.add_path(wt_rel, "worktrees", sid, wt_exp, wt_reason)
                self.branches.append({"repo": repo, "branch": branch, "expect": br_exp})
                expect, reason = s_exp, s_reason
            else:
                self.session_paths(sid, jid, repo, expect, reason)
            entry = {"id": sid, "repo": repo, "job_id": jid, "kind": kind, "class": cls,
                     "worktree": wt, "expect": expect, "reason": reason}
            self.sessions.append(entry)
            if tag:
                self.adversarial.append({"case": tag, "session": sid, "kind": kind})

            if kind == "completed-old" and first_completed is None:
                # Safety case 1: a symlink inside an expired item pointing outside the root.
                first_completed = sid
                link = os.path.join(self.h("events", repo, jid), "escape")
                target = os.path.join(self.root, "outside")
                os.symlink(target, link)
                owned.insert(0, link)
                self.adversarial.append({"case": "symlink-escape", "session": sid,
                                         "path": f"events/{repo}/{jid}/escape", "target": target})
            pending_mtimes.append((owned, base))

        # A name outside the id grammar, at the job-id position (safety R3).
        bad_dir = self.h("events", r0, "not a valid id!")
        bad_file = os.path.join(bad_dir, "x.jsonl")
        self.w.write(bad_file, json.dumps({"timestamp": rfc3339(self.old_t), "event_type": "AgentStarted",
                                           "agent_id": "agent-1"}) + "\n")
        pending_mtimes.append(([bad_file, bad_dir], self.old_t))
        rel_bad = f"events/{r0}/not a valid id!/x.jsonl"
        self.add_path(rel_bad, "events", None, "kept", "invalid-name")
        self.adversarial.append({"case": "invalid-name", "path": rel_bad})

        # Logs: even n old (removed), odd n recent (kept, too-new).
        for n in range(a.logs):
            repo = repo_names[n % len(repo_names)]
            old = n % 2 == 0
            base = self.old_t if old else self.recent_t
            p = self.h("logs", repo, f"run-{n}.log")
            body = "".join(f"{rfc3339(base - 60 + s)} INFO run-{n} step {s}: generated log line\n"
                           for s in range(6))
            self.w.write(p, body)
            pending_mtimes.append(([p], base))
            self.add_path(f"logs/{repo}/run-{n}.log", "logs", None,
                          "removed" if old else "kept", None if old else "too-new")

        for paths, epoch in pending_mtimes:
            for p in paths:
                set_mtime(p, epoch)

        # Worktrees: git work, then make every file of the (old) worktree old.
        for sid, repo, variant in worktree_jobs:
            repo_path = repos[repo]
            wt_path = self.h("worktrees", repo, sid)
            git("-C", repo_path, "worktree", "add", "-q", "-b", f"prodigy-{sid}", wt_path, "main")
            if variant == "unmerged":
                self.w.write(os.path.join(wt_path, "change.txt"), f"work of {sid}\n")
                git("-C", wt_path, "add", "change.txt")
                git("-C", wt_path, "commit", "-q", "-m", f"work of {sid}")
            elif variant == "untracked":
                self.w.write(os.path.join(wt_path, "wip.txt"), "work in progress\n")
            elif variant == "modified":
                with open(os.path.join(wt_path, "README.md"), "a") as f:
                    f.write("uncommitted change\n")
            elif variant == "locked":
                git("-C", repo_path, "worktree", "lock", "--reason", "test", wt_path)
            set_tree_mtime(wt_path, self.recent_t if variant == "recent" else self.old_t)

        return first_completed

    def manifest(self, repos):
        return {
            "generator": GENERATOR_VERSION,
            "seed": self.args.seed,
            "now": rfc3339(self.now),
            "root": self.root,
            "prodigy_home": self.home,
            "repos": repos,
            "canaries": [os.path.join(self.root, "outside", "canary.txt")],
            "sessions": self.sessions,
            "paths": self.paths,
            "branches": self.branches,
            "adversarial": self.adversarial,
        }


def write_manifest(path, manifest):
    """Pretty enough to read and diff (one list element per line) without json's slow indent path."""
    out = ["{"]
    keys = list(manifest)
    for n, key in enumerate(keys):
        value = manifest[key]
        comma = "," if n + 1 < len(keys) else ""
        if isinstance(value, list) and value:
            out.append(f"{json.dumps(key)}: [")
            out.append(",\n".join(json.dumps(v) for v in value))
            out.append(f"]{comma}")
        else:
            out.append(f"{json.dumps(key)}: {json.dumps(value)}{comma}")
    out.append("}")
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")


def main(argv=None):
    t0 = time.monotonic()
    args = parse_args(argv)
    root = prepare_out(args.out)
    git = Git(root)
    gen = Gen(args, root)
    os.makedirs(gen.home)
    gen.w.write(os.path.join(root, "outside", "canary.txt"), "canary: must survive every clean\n")
    repos = make_repos(root, args.repos, args.files_per_worktree, git, gen.w)
    gen.run(git, repos)
    write_manifest(os.path.join(root, "manifest.json"), gen.manifest(repos))
    if not args.quiet:
        n_wt = sum(1 for s in gen.sessions if s["worktree"])
        removed = sum(1 for p in gen.paths if p["expect"] == "removed")
        print(f"gen-tree: {len(gen.sessions)} sessions, {n_wt} worktrees, {args.logs} logs, "
              f"{len(repos)} repos, {len(gen.paths)} paths ({removed} to remove) in {root} "
              f"({time.monotonic() - t0:.2f}s, {git.calls} git calls)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
