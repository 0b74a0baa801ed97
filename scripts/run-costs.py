#!/usr/bin/env python3
"""Where a `prodigy run` spends its time per work item (issue 25), from git's own trace.

    printf '[trace2]\\n\\teventTarget = /tmp/t2.json\\n' >> "$HOME/.gitconfig"   # a scratch HOME
    prodigy run WF -y -q
    scripts/run-costs.py /tmp/t2.json ITEMS [WALL_SECONDS]

git's trace2 event stream records every git process with its argv and its own elapsed time
(`exit.t_abs`), without slowing the run the way strace -f does. prodigy runs its git commands
with `-c core.fsmonitor=false`, which tells them from the git commands of the steps. Prints
one markdown table: per git subcommand prodigy ran, how many per item, the mean and the time
per item. prodigy waits for each of its git commands (one at a time, from its one thread), so
their sum is the time its wait loop was blocked; the rest of the wall time is the steps (which
overlap, up to max_parallel), process starts and prodigy's own work.
"""
import json
import sys
from collections import defaultdict


def label(argv):
    rest, own = argv[1:], False
    while len(rest) >= 2 and rest[0] == "-c":
        own = own or rest[1] == "core.fsmonitor=false"
        rest = rest[2:]
    while rest and rest[0].startswith("--git-dir"):
        rest = rest[1:] if "=" in rest[0] else rest[2:]
    while len(rest) >= 2 and rest[0] == "-C":
        rest = rest[2:]
    sub = rest[0] if rest else "?"
    if sub == "worktree" and len(rest) > 1:
        sub += " " + rest[1]
    return ("git " + sub) if own else None


def main():
    if len(sys.argv) not in (3, 4):
        sys.exit("usage: run-costs.py TRACE2_EVENT_FILE ITEMS [WALL_SECONDS]")
    items = int(sys.argv[2])
    argv, elapsed = {}, {}
    for line in open(sys.argv[1], encoding="utf-8", errors="replace"):
        try:
            e = json.loads(line)
        except ValueError:
            continue
        sid = e.get("sid", "")
        if "/" in sid:
            continue  # a child git started by git itself (maintenance, hooks): in its parent's time
        if e.get("event") == "start":
            argv[sid] = e.get("argv", [])
        elif e.get("event") == "exit":
            elapsed[sid] = e.get("t_abs", 0.0)
    rows = defaultdict(lambda: [0, 0.0])
    steps = [0, 0.0]
    for sid, a in argv.items():
        lab = label(a)
        if lab is None:
            steps[0] += 1
            steps[1] += elapsed.get(sid, 0.0)
            continue
        rows[lab][0] += 1
        rows[lab][1] += elapsed.get(sid, 0.0)
    print("| git command prodigy ran | per item | mean ms | ms per item |")
    print("|---|---:|---:|---:|")
    total = 0.0
    for lab, (n, t) in sorted(rows.items(), key=lambda kv: -kv[1][1]):
        total += t
        print(f"| {lab} | {n / items:.2f} | {1000 * t / n:.1f} | {1000 * t / items:.1f} |")
    n = sum(r[0] for r in rows.values())
    print(f"| all of prodigy's git (its loop blocked) | {n / items:.2f} | | {1000 * total / items:.1f} |")
    print(f"| the steps' own git (in parallel) | {steps[0] / items:.2f} | | {1000 * steps[1] / items:.1f} |")
    if len(sys.argv) == 4:
        wall = float(sys.argv[3])
        print(f"| the whole run (wall) | | | {1000 * wall / items:.1f} |")


main()
