#!/usr/bin/env bash
# Benchmarks for issue 7: prodigy stats / clean side by side with du -sb, rm -rf and find; and
# for issue 13: prodigy run (a MapReduce of trivial items) against a shell script doing its git work.
#
#   scripts/bench.sh [--only clean|run] [--sizes S1,S2,S3,S4] [--runs N] [--clean-runs N] [--dir DIR]
#                    [--keep] [--no-build] [--no-readme] [--drop-caches yes|no|auto]
#                    [--strace full|count|perf|none|auto] [--run-items 100,400] [--run-runs N]
#
# For each size the tree is generated once (scripts/gen-tree.py) into DIR/SIZE/work and copied to
# DIR/SIZE/pristine; before every destructive run DIR/SIZE/work is deleted and re-copied from the
# pristine copy (mtimes and modes preserved, no hard links), so every command sees the same tree at
# the same absolute path (git worktrees record absolute paths). See scripts/README.md.
set -euo pipefail

usage() {
    sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'
    exit "${1:-2}"
}

SIZES=S1,S2,S3
RUNS=""
CLEAN_RUNS=""
DIR=""
KEEP=0
BUILD=1
README_UPDATE=1
DROP=auto
STRACE=auto
ONLY=""
SIZES_GIVEN=0
RUN_ITEMS=100,400
RUN_ITEMS_GIVEN=0
RUN_RUNS=""
ARGV=("$@")
while [ $# -gt 0 ]; do
    case "$1" in
        --only) ONLY=$2; shift 2 ;;
        --sizes) SIZES=$2; SIZES_GIVEN=1; shift 2 ;;
        --run-items) RUN_ITEMS=$2; RUN_ITEMS_GIVEN=1; shift 2 ;;
        --run-runs) RUN_RUNS=$2; shift 2 ;;
        --runs) RUNS=$2; shift 2 ;;
        --clean-runs) CLEAN_RUNS=$2; shift 2 ;;
        --dir) DIR=$2; shift 2 ;;
        --keep) KEEP=1; shift ;;
        --no-build) BUILD=0; shift ;;
        --no-readme) README_UPDATE=0; shift ;;
        --drop-caches) DROP=$2; shift 2 ;;
        --strace) STRACE=$2; shift 2 ;;
        -h|--help) usage 0 ;;
        *) echo "bench: unknown argument \`$1\`" >&2; usage ;;
    esac
done

case "$ONLY" in
    "") ;;
    clean) RUN_ITEMS="" ;;
    run) [ "$SIZES_GIVEN" = 0 ] || { echo "bench: --only run takes no --sizes" >&2; exit 2; }; SIZES="" ;;
    *) echo "bench: --only clean|run" >&2; exit 2 ;;
esac
# Without --only, --sizes alone means the clean benchmarks only (as before the run benchmark).
if [ -z "$ONLY" ] && [ "$SIZES_GIVEN" = 1 ] && [ "$RUN_ITEMS_GIVEN" = 0 ]; then RUN_ITEMS=""; fi

ROOT=$(cd "$(dirname "$0")/.." && pwd)
# The release binary, where cargo puts it (CARGO_TARGET_DIR is relative to the workspace).
TARGET_DIR=${CARGO_TARGET_DIR:-target}
case "$TARGET_DIR" in /*) ;; *) TARGET_DIR=$ROOT/$TARGET_DIR ;; esac
BIN=$TARGET_DIR/release/prodigy
GEN=$ROOT/scripts/gen-tree.py
README=$ROOT/scripts/README.md
FIND_DAYS=7   # find baseline: -mtime +7 (the shortest default retention); old items are 60 days old

PERF_OK=0
if command -v perf >/dev/null && perf stat -x, -e raw_syscalls:sys_enter -o /dev/null -- true 2>/dev/null; then
    PERF_OK=1
fi
case "$STRACE" in
    full|count|none|auto) ;;
    perf) [ "$PERF_OK" = 1 ] || { echo "bench: --strace perf: \`perf stat -e raw_syscalls:sys_enter\` does not work here (apt-get install linux-perf; kernel.perf_event_paranoid)" >&2; exit 2; } ;;
    *) echo "bench: --strace full|count|perf|none|auto" >&2; exit 2 ;;
esac
TOOLS="hyperfine python3 git"
[ -z "$SIZES" ] || TOOLS+=" strace find du xargs"
[ -z "$RUN_ITEMS" ] || TOOLS+=" xargs flock seq"
for tool in $TOOLS; do
    command -v "$tool" >/dev/null || { echo "bench: \`$tool\` is missing (apt-get install hyperfine strace)" >&2; exit 2; }
done

# Size -> generator arguments and a one-line description.
gen_args() {
    case "$1" in
        S1) echo "--sessions 450 --worktrees 50 --files-per-worktree 5000 --repos 5 --logs 10 --worktree-variants merged,recent" ;;
        S2) echo "--sessions 100000 --worktrees 0 --repos 20 --logs 100 --kinds completed-old,completed-recent,failed-resumable-old,running-stale-old,active-old,corrupt-old,cancelled-old,paused-resumable-old,completed-recent" ;;
        S3) echo "--sessions 1800 --worktrees 200 --files-per-worktree 5000 --repos 10 --logs 10 --worktree-variants merged,recent" ;;
        # S4: S2's shape at three times the sessions, for peak RSS (is memory flat in sessions?).
        S4) echo "--sessions 300000 --worktrees 0 --repos 20 --logs 100 --kinds completed-old,completed-recent,failed-resumable-old,running-stale-old,active-old,corrupt-old,cancelled-old,paused-resumable-old,completed-recent" ;;
        *) echo "bench: unknown size \`$1\` (S1, S2, S3, S4)" >&2; exit 2 ;;
    esac
}
describe() {
    case "$1" in
        S1) echo "50 worktrees x 5,000 files (25 expired+merged, 25 recent), 452 sessions, 5 repos" ;;
        S2) echo "100,002 sessions (events, DLQ, checkpoints, mappings), 20 repos, a third expired, no worktrees" ;;
        S3) echo "200 worktrees x 5,000 files (100 expired+merged, 100 recent), 1,802 sessions, 10 repos" ;;
        S4) echo "300,002 sessions (S2's shape, 3x), 20 repos, a third expired, no worktrees" ;;
    esac
}
# Defaults: S1 5 timing runs and 3 destructive runs; S2, S3 and S4 (minutes per copy) 3 and 2.
runs_for() { if [ -n "$RUNS" ]; then echo "$RUNS"; elif [ "$1" = S1 ]; then echo 5; else echo 3; fi; }
clean_runs_for() { if [ -n "$CLEAN_RUNS" ]; then echo "$CLEAN_RUNS"; elif [ "$1" = S1 ]; then echo 3; else echo 2; fi; }

# S4 needs room for two copies (work and pristine) of 3.03M entries: 12 GB and 6.1M inodes on
# ext4 (measured), about 9 GiB of tmpfs pages per copy plus the kernel's unreclaimable inodes
# (~0.5 GB per million entries). A /dev/shm sized like RAM rarely has the inodes or the memory, so
# S4 goes to /var/tmp unless /dev/shm has both. Checked before generating (minutes at S4).
S4_KB=$((26 * 1024 * 1024)) S4_INODES=6500000 S4_MEM_KB=$((32 * 1024 * 1024))
case ",$SIZES," in *,S4,*) HAS_S4=1 ;; *) HAS_S4=0 ;; esac
fits_s4() {  # DIR: room for S4's trees there (true when S4 is not asked for)
    [ "$HAS_S4" = 1 ] || return 0
    local d=$1 kb inodes mem
    while [ ! -d "$d" ]; do d=$(dirname "$d"); done
    [ -f "$1/S4/stamp" ] && return 0  # a tree kept by --keep is reused, not regenerated
    kb=$(df -Pk "$d" | awk 'NR==2 {print $4}')
    inodes=$(df -Pi "$d" | awk 'NR==2 {print ($2 == 0 || $2 == "-") ? -1 : $4}')  # -1: no inode limit (btrfs)
    [ "$kb" -ge "$S4_KB" ] || return 1
    [ "$inodes" = -1 ] || [ "$inodes" -ge "$S4_INODES" ] || return 1
    if [ "$(stat -f -c %T "$d")" = tmpfs ]; then
        mem=$(awk '/MemAvailable/ {print $2}' /proc/meminfo)
        [ "$mem" -ge "$S4_MEM_KB" ] || return 1
    fi
}
if [ -z "$DIR" ]; then
    avail_kb=$(df -Pk /dev/shm 2>/dev/null | awk 'NR==2 {print $4}')
    if [ "$HAS_S4" = 1 ]; then
        if [ -n "$avail_kb" ] && fits_s4 /dev/shm/prodigy-bench; then DIR=/dev/shm/prodigy-bench; else DIR=/var/tmp/prodigy-bench; fi
    elif [ -n "$avail_kb" ] && [ "$avail_kb" -gt $((14 * 1024 * 1024)) ]; then
        DIR=/dev/shm/prodigy-bench
    else
        DIR=${TMPDIR:-/tmp}/prodigy-bench
    fi
fi
mkdir -p "$DIR"
DIR=$(cd "$DIR" && pwd -P)
FSTYPE=$(stat -f -c %T "$DIR")
fits_s4 "$DIR" || {
    echo "bench: S4 needs $((S4_KB / 1024 / 1024)) GiB and $S4_INODES inodes free on $DIR ($FSTYPE; on tmpfs also $((S4_MEM_KB / 1024 / 1024)) GiB of MemAvailable): $(df -Ph "$DIR" | awk 'NR==2 {print $4}') and $(df -Pi "$DIR" | awk 'NR==2 {print $4}') inodes free; use --dir on a disk, e.g. --dir /var/tmp/pb" >&2
    exit 2
}

case "$DROP" in
    yes|no) ;;
    auto)
        # On tmpfs the tree is not page cache (there is no backing store to drop it to): dropping
        # caches would only evict the binaries, so it is off there.
        if [ "$FSTYPE" != tmpfs ] && [ -w /proc/sys/vm/drop_caches ] && { sync; echo 3 >/proc/sys/vm/drop_caches; } 2>/dev/null; then
            DROP=yes
        else
            DROP=no
        fi ;;
    *) echo "bench: --drop-caches yes|no|auto" >&2; exit 2 ;;
esac
DROP_CMD=""
if [ "$DROP" = yes ]; then DROP_CMD="sync; echo 3 > /proc/sys/vm/drop_caches"; fi

if [ "$BUILD" = 1 ]; then
    (cd "$ROOT" && cargo build --release --quiet)
fi
[ -x "$BIN" ] || { echo "bench: $BIN not built" >&2; exit 2; }

# ---- helpers in Python (parallel tree copy/removal, JSON and strace parsing, tables) ----------
LIB=$DIR/benchlib.py
cat >"$LIB" <<'PY'
import json, os, subprocess, sys, statistics, collections

def units(top):
    """Entries at depth 5 plus non-directories above: the pieces copied/removed in parallel."""
    out, dirs = [], []
    def walk(rel, depth):
        p = os.path.join(top, rel) if rel else top
        for e in os.scandir(p):
            r = os.path.join(rel, e.name) if rel else e.name
            if e.is_dir(follow_symlinks=False):
                if depth + 1 >= 5:
                    out.append(r)
                else:
                    dirs.append(r)
                    walk(r, depth + 1)
            else:
                out.append(r)
    walk("", 0)
    return dirs, out

def parallel(cmd_prefix, items, cwd, jobs=2, chunk=500):
    procs, it = [], [items[i:i + chunk] for i in range(0, len(items), chunk)]
    # Interleave chunks over `jobs` workers, each running its chunks one after the other.
    workers = [it[w::jobs] for w in range(jobs)]
    def run(chunks):
        for c in chunks:
            subprocess.run(cmd_prefix + c, cwd=cwd, check=True)
    import threading
    ts = [threading.Thread(target=run, args=(w,)) for w in workers]
    for t in ts: t.start()
    for t in ts: t.join()

def copy(src, dst):
    assert not os.path.lexists(dst), dst
    dirs, items = units(src)
    os.mkdir(dst)
    for d in dirs:
        os.mkdir(os.path.join(dst, d))
    # cp --parents needs the destination last: run it through a tiny shell wrapper.
    parallel(["sh", "-c", 'exec cp -R --parents --no-dereference --preserve=mode,timestamps,links -- "$@" "$0"', dst],
             items, cwd=src)
    for d in reversed([""] + dirs):  # deepest first: creating entries bumps the parent's mtime
        s = os.lstat(os.path.join(src, d) if d else src)
        t = os.path.join(dst, d) if d else dst
        os.chmod(t, s.st_mode & 0o7777)
        os.utime(t, ns=(s.st_atime_ns, s.st_mtime_ns), follow_symlinks=False)

def refresh(work):
    """Refresh the index of every worktree under the root (`git update-index --refresh`).

    A copy gives every file a new inode and ctime, and the generator backdated mtimes after
    checkout, so each index's stat data is stale and `git status` would read and hash every
    file. In use, git refreshed the index when the agent last committed, and `git status` then
    only lstats each file. This step (not timed) restores that state; it writes only the
    indexes in the repositories' `.git/worktrees/*/`, nothing under the root.
    """
    base = os.path.join(work, "home", ".prodigy", "worktrees")
    if not os.path.isdir(base):
        return
    dirs = []
    for repo in sorted(os.listdir(base)):
        rp = os.path.join(base, repo)
        if not os.path.isdir(rp):
            continue
        for wt in sorted(os.listdir(rp)):
            wp = os.path.join(rp, wt)
            if os.path.isfile(os.path.join(wp, ".git")):
                dirs.append(wp)
                for sub in sorted(os.listdir(wp)):
                    if sub.startswith("agent-") and os.path.isfile(os.path.join(wp, sub, ".git")):
                        dirs.append(os.path.join(wp, sub))
    import concurrent.futures
    with concurrent.futures.ThreadPoolExecutor(2) as ex:
        list(ex.map(lambda d: subprocess.run(["git", "-C", d, "update-index", "-q", "--refresh"],
                                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL), dirs))

def rmtree(top):
    if not os.path.lexists(top):
        return
    _, items = units(top)
    parallel(["rm", "-rf", "--"], items, cwd=top)
    subprocess.run(["rm", "-rf", "--", top], check=True)

def count_entries(paths):
    n = 0
    for p in paths:
        if os.path.isdir(p) and not os.path.islink(p):
            for _dp, dns, fns in os.walk(p):
                n += len(dns) + len(fns)
            n += 1
        elif os.path.lexists(p):
            n += 1
    return n

def plan(work, dry_json, list_out):
    """The dry run's removed paths (absolute, NUL-separated) and a check against manifest.json."""
    home = os.path.join(work, "home", ".prodigy")
    d = json.load(open(dry_json))
    rel = []
    for r in d["removed"]:
        rel.append(r["path"]); rel.extend(r.get("also") or [])
    m = json.load(open(os.path.join(work, "manifest.json")))
    want = {p["path"] for p in m["paths"] if p["expect"] == "removed"}
    got = set(rel)
    mismatch = len(want ^ got)
    paths = [os.path.join(home, p) for p in rel]
    with open(list_out, "wb") as f:
        f.write(b"".join(p.encode() + b"\0" for p in paths))
    print(json.dumps({"items": len(d["removed"]), "paths": len(paths),
                      "entries": count_entries(paths), "manifest_mismatches": mismatch,
                      "removed_bytes": d["totals"]["removed_bytes"],
                      "sessions": d.get("sessions")}))

def find_set(home, days):
    out = subprocess.run(["find", home, "-mindepth", "3", "-maxdepth", "3", "-mtime", f"+{days}", "-print0"],
                         capture_output=True, check=True).stdout
    paths = [p.decode() for p in out.split(b"\0") if p]
    print(json.dumps({"paths": len(paths), "entries": count_entries(paths)}))

def median(hf_json):
    r = json.load(open(hf_json))["results"]
    print(" ".join(f"{x['median']:.6f}" for x in r))

def strace_count(trace):
    """Counts syscalls per process in `strace -f -o` output; the first pid is the traced command."""
    per_pid = collections.Counter(); names = collections.Counter(); main_names = collections.Counter()
    main = None; execs = collections.Counter(); pending = {}
    def exec_name(rest):
        args = rest.split("[", 1)[1] if "[" in rest else ""
        words = [w.strip(' "') for w in args.split("]", 1)[0].split(",")]
        cmd = next((w for w in words[1:] if w and not w.startswith("-") and "=" not in w and not w.startswith("core.")), "")
        return (os.path.basename(words[0]) + " " + cmd).strip()
    for line in open(trace, errors="replace"):
        pid, _, rest = line.partition(" ")
        rest = rest.lstrip()
        if rest.startswith("<... execve resumed>"):
            # With -f, a child's execve is split: "execve(... <unfinished ...>", then this line.
            if rest.rstrip().endswith("= 0") and pid in pending and pid != main:
                execs[pending.pop(pid)] += 1
            continue
        if rest.startswith("+++") or rest.startswith("---") or rest.startswith("<..."):
            continue
        if rest.startswith("execve(") and rest.rstrip().endswith("<unfinished ...>"):
            pending[pid] = exec_name(rest)
        name = rest.split("(", 1)[0]
        if not name or not name.replace("_", "").isalnum():
            continue
        if main is None:
            main = pid
        per_pid[pid] += 1; names[name] += 1
        if pid == main:
            main_names[name] += 1
        if name == "execve" and pid != main and rest.rstrip().endswith("= 0"):
            execs[exec_name(rest)] += 1
    total = sum(per_pid.values())
    print(json.dumps({"total": total, "main": per_pid[main] if main else 0, "processes": len(per_pid),
                      "top": names.most_common(8), "main_top": main_names.most_common(8),
                      "execs": execs.most_common(8)}))

def strace_c(out):
    """Total syscalls of an `strace -f -c -o` summary (every process together)."""
    total = 0
    for line in open(out):
        f = line.split()
        if f and f[-1] == "total":
            total = int(f[3])
    print(json.dumps({"total": total, "main": "n/a", "processes": "n/a"}))

PERF_SYSCALLS = ["newfstatat", "statx", "openat", "close", "getdents64", "read", "write", "unlinkat",
                 "rmdir", "renameat2", "fsync", "fdatasync", "flock", "lseek", "fcntl", "mkdirat",
                 "clone3", "execve", "wait4", "mmap", "futex"]

def perf_events():
    """The -e list for `perf stat`: all syscalls, then the common ones by name."""
    print(",".join(["raw_syscalls:sys_enter"] + [f"syscalls:sys_enter_{n}" for n in PERF_SYSCALLS
                    if os.path.exists(f"/sys/kernel/tracing/events/syscalls/sys_enter_{n}")]))

def perf_stat(all_out, main_out):
    """Syscall counts from two `perf stat -x,` runs: `all_out` with children (inherited), and
    `main_out` with --no-inherit (the traced command alone)."""
    def read(path):
        counts = {}
        for line in open(path):
            f = line.strip().split(",")
            if len(f) > 2 and f[0].isdigit():
                counts[f[2].split(":")[-1].replace("sys_enter_", "")] = int(f[0])
        return counts
    a, m = read(all_out), read(main_out)
    top = sorted(((k, v) for k, v in a.items() if k != "sys_enter" and v), key=lambda kv: -kv[1])
    print(json.dumps({"total": a.get("sys_enter", 0), "main": m.get("sys_enter", 0),
                      "processes": "n/a", "top": top[:8], "main_top": "total only (counted without children)", "execs": "n/a"}))

def peak(out, *cmd):
    """Runs cmd; writes "SELF CHILDREN" peak RSS in KiB: the command's own VmHWM (polled every
    2 ms from /proc; a high-water mark, so only growth in the last 2 ms could be missed) and the
    largest of its waited-for children (git), from getrusage."""
    import resource, subprocess, time
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
    hwm = 0
    while p.poll() is None:
        try:
            for l in open(f"/proc/{p.pid}/status"):
                if l.startswith("VmHWM:"):
                    hwm = max(hwm, int(l.split()[1]))
        except OSError:
            pass
        time.sleep(0.002)
    if p.returncode != 0:
        sys.exit(f"bench: {' '.join(cmd)} exited {p.returncode}")
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    with open(out, "a") as f:
        f.write(f"{hwm} {kids}\n")

def rss_max(path):
    """Max over runs of the first (self) and second (largest child) column."""
    rows = [l.split() for l in open(path)] if os.path.exists(path) else []
    print(max((int(r[0]) for r in rows), default=0), max((int(r[1]) for r in rows), default=0))

def exec_counts(trace, items):
    """Successful execs in `strace -ff -e trace=execve -o TRACE` output (one file per process,
    so no call is split), by program and first non-option argument (git's subcommand), per
    work item. The traced command itself is counted too."""
    import glob
    c = collections.Counter()
    lines = (l for f in glob.glob(glob.escape(trace) + ".*") for l in open(f, errors="replace"))
    for line in lines:
        if not line.startswith("execve(") or not line.rstrip().endswith("= 0"):
            continue
        args = line.split("[", 1)[1].split("]", 1)[0] if "[" in line else ""
        words = [w.strip(' "') for w in args.split(", ")]
        prog = os.path.basename(words[0]) if words else "?"
        sub = ""
        if prog == "git":
            rest = iter(words[1:])
            for w in rest:
                if w in ("-c", "-C"):
                    next(rest, None)  # the option's value
                elif not w.startswith("-"):
                    sub = w
                    break
        c[(prog + " " + sub).strip()] += 1
    n = int(items)
    print(json.dumps({"total": sum(c.values()), "per_item": round(sum(c.values()) / n, 2),
                      "by_command": [[k, v, round(v / n, 2)] for k, v in c.most_common()]}))

cmd = sys.argv[1]
args = sys.argv[2:]
{"copy": copy, "rmtree": rmtree, "refresh": refresh, "plan": plan, "median": median, "strace": strace_count,
 "strace_c": strace_c, "perf_events": perf_events, "perf_stat": perf_stat, "peak": peak, "rss": rss_max, "exec_counts": exec_counts, "find_set": lambda h, d: find_set(h, int(d))}[cmd](*args)
PY
lib() { python3 "$LIB" "$@"; }

RESULTS=$DIR/results.md
SUMMARY=$DIR/summary.md
: >"$RESULTS"
: >"$SUMMARY"
T_START=$(date +%s)
log() { printf '[bench %4ss] %s\n' $(( $(date +%s) - T_START )) "$*" >&2; }
ratio() { python3 -c "import sys; a,b=float(sys.argv[1]),float(sys.argv[2]); print(f'{a/b:.2f}' if b>0 else 'n/a')" "$1" "$2"; }
fmt_s() { python3 -c "import sys; v=float(sys.argv[1]); print(f'{v*1000:.0f} ms' if v<1 else f'{v:.2f} s')" "$1"; }
meets() { python3 -c "import sys; print('yes' if float(sys.argv[1])<=float(sys.argv[2]) else '**no**')" "$1" "$2"; }

echo "| size | prodigy command | prodigy median | baseline | baseline median | ratio | target | met |" >>"$SUMMARY"
echo "|---|---|---|---|---|---|---|---|" >>"$SUMMARY"
RSS_ROWS=""
SYS_ROWS=""
SMODES=""
GEN_ROWS=""

bench_size() {
    local S=$1 D=$DIR/$1 W=$DIR/$1/work P=$DIR/$1/pristine
    local R C args
    R=$(runs_for "$S"); C=$(clean_runs_for "$S"); args=$(gen_args "$S")
    mkdir -p "$D"
    local stamp="$args gen-tree:$(sha1sum "$GEN" | cut -c1-12)"
    local gen_s="reused"
    if [ -d "$P" ] && [ "$(cat "$D/stamp" 2>/dev/null)" = "$stamp" ]; then
        log "$S: reusing $P"
    else
        lib rmtree "$W"; lib rmtree "$P"; rm -f "$D/stamp"
        log "$S: generating ($args)"
        local t0=$(date +%s.%N)
        # shellcheck disable=SC2086
        python3 "$GEN" --out "$W" $args --quiet
        gen_s=$(python3 -c "import sys,time; print(f'{time.time()-float(sys.argv[1]):.0f} s')" "$t0")
        log "$S: generated in $gen_s; copying to pristine"
        lib copy "$W" "$P"
        echo "$stamp" >"$D/stamp"
    fi
    restore() { lib rmtree "$W"; lib copy "$P" "$W"; lib refresh "$W"; }
    restore
    local t0=$(date +%s.%N); restore
    local restore_s=$(python3 -c "import sys,time; print(f'{time.time()-float(sys.argv[1]):.1f} s')" "$t0")

    export PRODIGY_HOME=$W/home/.prodigy HOME=$W/home LC_ALL=C
    local H=$PRODIGY_HOME
    local entries; entries=$(find "$H" -mindepth 1 | wc -l)
    local repos=("$W"/repos/*)

    # The dry run's list of removed paths -> the rm -rf baseline (plus git worktree prune).
    "$BIN" clean --all-repos --dry-run --json >"$D/dry.json"
    local plan; plan=$(lib plan "$W" "$D/dry.json" "$D/rm.list")
    local del_entries; del_entries=$(python3 -c "import json,sys; print(json.loads(sys.argv[1])['entries'])" "$plan")
    local mism; mism=$(python3 -c "import json,sys; print(json.loads(sys.argv[1])['manifest_mismatches'])" "$plan")
    local findset; findset=$(lib find_set "$H" "$FIND_DAYS")
    local find_entries; find_entries=$(python3 -c "import json,sys; print(json.loads(sys.argv[1])['entries'])" "$findset")
    {
        echo "#!/bin/sh"
        echo "xargs -0 rm -rf -- < '$D/rm.list'"
        if [ -d "$W/home/.prodigy/worktrees" ]; then
            for r in "${repos[@]}"; do echo "git -C '$r' worktree prune"; done
        fi
    } >"$D/rm.sh"
    log "$S: $entries entries under the root; dry run removes $del_entries entries ($(python3 -c "import json,sys; d=json.loads(sys.argv[1]); print(d['items'], 'items')" "$plan"), manifest mismatches: $mism); find -mtime +$FIND_DAYS would remove $find_entries"

    rm -f "$D"/rss.*
    log "$S: timing stats, clean --dry-run, du -sb ($R runs + 1 warmup each)"
    hyperfine --style basic --warmup 1 --runs "$R" ${DROP_CMD:+--prepare "$DROP_CMD"} --export-json "$D/read.json" \
        -n "prodigy stats" "$BIN stats --all-repos" \
        -n "prodigy clean --dry-run" "$BIN clean --all-repos --dry-run" \
        -n "du -sb" "du -sb $H" >"$D/read.txt" 2>&1 || { cat "$D/read.txt"; exit 1; }
    local m_stats m_dry m_du
    read -r m_stats m_dry m_du < <(lib median "$D/read.json")

    log "$S: timing clean --force, rm -rf of the same set, find -exec rm ($C runs each, restore $restore_s before each)"
    local prep="python3 $LIB rmtree $W && python3 $LIB copy $P $W && python3 $LIB refresh $W${DROP_CMD:+ && $DROP_CMD}"
    hyperfine --style basic --runs "$C" --prepare "$prep" --export-json "$D/clean.json" \
        -n "prodigy clean --force" "$BIN clean --all-repos --force -q" \
        -n "rm -rf (same set)" "sh $D/rm.sh" \
        -n "find -mtime +$FIND_DAYS -exec rm -rf" "find $H -mindepth 3 -maxdepth 3 -mtime +$FIND_DAYS -exec rm -rf {} +" \
        >"$D/clean.txt" 2>&1 || { cat "$D/clean.txt"; exit 1; }
    local m_force m_rm m_find
    read -r m_force m_rm m_find < <(lib median "$D/clean.json")

    log "$S: peak RSS of stats, clean --dry-run, clean --force (one run each; own and largest git child)"
    lib peak "$D/rss.stats" "$BIN" stats --all-repos
    lib peak "$D/rss.dry" "$BIN" clean --all-repos --dry-run
    restore
    lib peak "$D/rss.force" "$BIN" clean --all-repos --force -q
    local left_peak; left_peak=$(find "$H" -mindepth 1 | wc -l)

    # Full traces count per process (prodigy itself vs git) but take minutes per million
    # syscalls; `count` (strace -c) gives totals only; `perf` counts with the kernel's syscall
    # tracepoints (no ptrace: seconds, not minutes), prodigy alone in a second run without
    # children; `none` skips the step. auto: none at S4 (it is there for peak RSS, its shape is
    # S2's, and the step's four restores of 3M entries would add one to two hours on a disk), else perf
    # where it works, else full at S1 and count at S2 and S3.
    local smode=$STRACE
    if [ "$smode" = auto ]; then
        if [ "$S" = S4 ]; then smode=none; elif [ "$PERF_OK" = 1 ]; then smode=perf; elif [ "$S" = S1 ]; then smode=full; else smode=count; fi
    fi
    log "$S: syscalls ($smode) of clean --force, rm -rf (same set), stats, du -sb"
    local left_force left_rm sc_force sc_rm sc_stats sc_du
    if [ "$smode" = none ]; then
        # Entries left after the peak-RSS run of clean --force; the rm -rf baseline is not run.
        left_force=$left_peak left_rm="not run"
        sc_force='{"total": "n/a", "main": "n/a"}'; sc_rm=$sc_force sc_stats=$sc_force sc_du=$sc_force
    elif [ "$smode" = perf ]; then
        local ev; ev=$(lib perf_events)
        pcount() {  # NAME CMD...: both counts of CMD into $D/perf.NAME.{all,main}
            local name=$1; shift
            perf stat -x, -e "$ev" -o "$D/perf.$name.all" -- "$@" >/dev/null
        }
        pmain() {
            local name=$1; shift
            perf stat --no-inherit -x, -e raw_syscalls:sys_enter -o "$D/perf.$name.main" -- "$@" >/dev/null
        }
        restore; pcount force "$BIN" clean --all-repos --force -q
        left_force=$(find "$H" -mindepth 1 | wc -l)
        restore; pmain force "$BIN" clean --all-repos --force -q
        restore; pcount rm sh "$D/rm.sh"
        left_rm=$(find "$H" -mindepth 1 | wc -l)
        restore; pmain rm sh "$D/rm.sh"
        restore
        pcount stats "$BIN" stats --all-repos; pmain stats "$BIN" stats --all-repos
        pcount du du -sb "$H"; pmain du du -sb "$H"
        sc_force=$(lib perf_stat "$D/perf.force.all" "$D/perf.force.main")
        sc_rm=$(lib perf_stat "$D/perf.rm.all" "$D/perf.rm.main")
        sc_stats=$(lib perf_stat "$D/perf.stats.all" "$D/perf.stats.main")
        sc_du=$(lib perf_stat "$D/perf.du.all" "$D/perf.du.main")
        rm -f "$D"/perf.*
    else
        local sopt=(-f -qq -s 48) scount=strace
        [ "$smode" = count ] && { sopt=(-f -c); scount=strace_c; }
        restore
        strace "${sopt[@]}" -o "$D/strace.force" "$BIN" clean --all-repos --force -q
        left_force=$(find "$H" -mindepth 1 | wc -l)
        restore
        strace "${sopt[@]}" -o "$D/strace.rm" sh "$D/rm.sh"
        left_rm=$(find "$H" -mindepth 1 | wc -l)
        restore
        strace "${sopt[@]}" -o "$D/strace.stats" "$BIN" stats --all-repos >/dev/null
        strace "${sopt[@]}" -o "$D/strace.du" du -sb "$H" >/dev/null
        sc_force=$(lib $scount "$D/strace.force"); sc_rm=$(lib $scount "$D/strace.rm")
        sc_stats=$(lib $scount "$D/strace.stats"); sc_du=$(lib $scount "$D/strace.du")
        rm -f "$D"/strace.*
    fi
    echo "$sc_force" >"$D/syscalls.force.json"; echo "$sc_rm" >"$D/syscalls.rm.json"
    echo "$sc_stats" >"$D/syscalls.stats.json"; echo "$sc_du" >"$D/syscalls.du.json"
    SMODES+="$S: $smode; "
    tot() { python3 -c "import json,sys; d=json.loads(sys.argv[1]); print(d[sys.argv[2]])" "$1" "$2"; }

    # ---- tables ----
    local du_rm; du_rm=$(python3 -c "import sys; print(float(sys.argv[1])+float(sys.argv[2]))" "$m_du" "$m_rm")
    {
        echo "| $S | stats | $(fmt_s "$m_stats") | du -sb | $(fmt_s "$m_du") | $(ratio "$m_stats" "$m_du") | ≤ 1.1 | $(meets "$(ratio "$m_stats" "$m_du")" 1.1) |"
        echo "| $S | clean --dry-run | $(fmt_s "$m_dry") | du -sb | $(fmt_s "$m_du") | $(ratio "$m_dry" "$m_du") | | |"
        echo "| $S | clean --force | $(fmt_s "$m_force") | du -sb + rm -rf (same set) | $(fmt_s "$du_rm") | $(ratio "$m_force" "$du_rm") | ≤ 1.2 | $(meets "$(ratio "$m_force" "$du_rm")" 1.2) |"
        echo "| $S | clean --force | $(fmt_s "$m_force") | rm -rf (same set) | $(fmt_s "$m_rm") | $(ratio "$m_force" "$m_rm") | | |"
        echo "| $S | clean --force | $(fmt_s "$m_force") | find -mtime +$FIND_DAYS -exec rm -rf ($find_entries entries) | $(fmt_s "$m_find") | $(ratio "$m_force" "$m_find") | | |"
    } >>"$SUMMARY"
    local r_stats r_dry r_force
    r_stats=$(lib rss "$D/rss.stats"); r_dry=$(lib rss "$D/rss.dry"); r_force=$(lib rss "$D/rss.force")
    mib() { python3 -c "import sys; print(f'{int(sys.argv[1])/1024:.1f} MiB ({int(sys.argv[2])/1024:.1f})')" $1; }
    RSS_ROWS+="| $S | $entries | $(mib "$r_stats") | $(mib "$r_dry") | $(mib "$r_force") |"$'\n'
    local f_tot f_main r_tot s_tot d_tot
    if [ "$smode" = none ]; then
        SYS_ROWS+="| $S | $del_entries | not counted (--strace none) | | | | | | |"$'\n'
    else
        f_tot=$(tot "$sc_force" total); f_main=$(tot "$sc_force" main); r_tot=$(tot "$sc_rm" total)
        s_tot=$(tot "$sc_stats" total); d_tot=$(tot "$sc_du" total)
        local per_f per_fm per_r
        per_f=$(python3 -c "import sys; print(f'{int(sys.argv[1])/int(sys.argv[2]):.2f}')" "$f_tot" "$del_entries")
        per_fm=$(python3 -c "import sys; print(f'{int(sys.argv[1])/int(sys.argv[2]):.2f}' if sys.argv[1].isdigit() else 'n/a')" "$f_main" "$del_entries")
        per_r=$(python3 -c "import sys; print(f'{int(sys.argv[1])/int(sys.argv[2]):.2f}')" "$r_tot" "$del_entries")
        local pr; pr=$(ratio "$per_f" "$per_r")
        SYS_ROWS+="| $S | $del_entries | $f_tot ($f_main in prodigy itself) | $per_f ($per_fm) | $r_tot | $per_r | $pr | $(meets "$pr" 1.2) | $s_tot / $d_tot = $(ratio "$s_tot" "$d_tot") |"$'\n'
    fi
    GEN_ROWS+="| $S | $(describe "$S") | \`$args\` | $entries | $del_entries | $find_entries | $gen_s | $restore_s | $R / $C | $left_force / $left_rm | $mism |"$'\n'
    [ "$smode" = none ] || {
        echo "#### $S syscall detail"
        echo
        echo "- clean --force, all processes: \`$(python3 -c "import json,sys; print(json.loads(sys.argv[1])['top'])" "$sc_force")\`"
        echo "- clean --force, prodigy itself: \`$(python3 -c "import json,sys; print(json.loads(sys.argv[1])['main_top'])" "$sc_force")\`"
        echo "- clean --force, child processes: \`$(python3 -c "import json,sys; d=json.loads(sys.argv[1]); print(d['processes']-1, 'processes:', d['execs']) if isinstance(d['processes'], int) else print('not counted in this mode')" "$sc_force")\`"
        echo "- rm -rf (same set): \`$(python3 -c "import json,sys; print(json.loads(sys.argv[1])['top'])" "$sc_rm")\`"
        echo "- stats, all processes: \`$(python3 -c "import json,sys; print(json.loads(sys.argv[1])['top'])" "$sc_stats")\`; prodigy itself: \`$(python3 -c "import json,sys; print(json.loads(sys.argv[1])['main_top'])" "$sc_stats")\`"
        echo "- du -sb: \`$(python3 -c "import json,sys; print(json.loads(sys.argv[1])['top'])" "$sc_du")\`"
        echo
    } >>"$RESULTS"
    log "$S: done ($(fmt_s "$m_stats") stats, $(fmt_s "$m_du") du, $(fmt_s "$m_force") clean --force, $(fmt_s "$m_rm") rm)"
    cat "$SUMMARY" | tail -5 >&2

    unset PRODIGY_HOME
    export HOME=$ORIG_HOME
    if [ "$KEEP" = 0 ]; then lib rmtree "$W"; lib rmtree "$P"; rm -rf "$D"/stamp; fi
}

# ---- run benchmark (issue 13) ------------------------------------------------------------------
# A MapReduce of N trivial items (max_parallel 4) by `prodigy run WF -y`, against a shell script
# doing the same git work (the floor), with 4 items at once and one at a time, and against
# Prodigy 0.4.4 when one is installed. See scripts/README.md, "Run benchmark".
RUN_ROWS=""
EXEC_ROWS=""
V044=""
find_044() {
    local c p
    for c in prodigy-0.4.4 prodigy "$ORIG_HOME/.cargo/bin/prodigy"; do
        p=$(command -v "$c" 2>/dev/null) || continue
        [ "$p" -ef "$BIN" ] && continue
        if "$p" --version 2>/dev/null | grep -q '0\.4\.4'; then V044=$p; return; fi
    done
}

write_run_scripts() {  # R: the scripts, the workflow and the scratch tree go in R
    local R=$1
    cat >"$R/wf.yml" <<'EOF'
# scripts/bench.sh: N trivial work items, 4 at once; each writes a file and commits it.
name: bench-run
mode: mapreduce
map:
  input: items.json
  json_path: "$.items[*]"
  max_parallel: 4
  agent_template:
    - shell: |
        echo "${item.n}" > "out-${item_id}.txt"
        git add "out-${item_id}.txt" && git commit -q -m "agent ${item_id}"
      commit_required: true
EOF
    cat >"$R/prep.sh" <<'EOF'
#!/bin/sh
# prep.sh T N: a fresh repository T/repo with N work items in items.json, committed; an empty
# PRODIGY_HOME T/home (and T/home044 for 0.4.4, which keeps its data under $HOME/.prodigy).
set -eu
T=$1 N=$2
rm -rf "$T"
mkdir -p "$T/home" "$T/home044"
git init -q "$T/repo"
cd "$T/repo"
git config user.name bench; git config user.email bench@example.com
git config commit.gpgsign false; git config gc.auto 0
echo bench >README
python3 -c 'import json, sys; print(json.dumps({"items": [{"id": "i%d" % i, "n": i} for i in range(int(sys.argv[1]))]}))' "$N" >items.json
git add README items.json
git commit -q -m init
EOF
    cat >"$R/prodigy.sh" <<'EOF'
#!/bin/sh
# prodigy.sh T BIN WF: `prodigy run WF -y -q` in T/repo with PRODIGY_HOME=T/home.
set -eu
T=$1 BIN=$2 WF=$3
cd "$T/repo"
HOME=$T PRODIGY_HOME=$T/home exec "$BIN" run "$WF" -y -q
EOF
    cat >"$R/v044.sh" <<'EOF'
#!/bin/sh
# v044.sh T BIN WF: Prodigy 0.4.4's `prodigy run WF -y` in T/repo, its data in T/home044/.prodigy,
# with the stub `claude` of stub/ first on PATH (0.4.4 asks `claude --version` before a run and
# has Claude do the final merge).
set -eu
T=$1 BIN=$2 WF=$3
PATH=$(dirname "$0")/stub:$PATH
export PATH
cd "$T/repo"
HOME=$T/home044 exec "$BIN" run "$WF" -y >/dev/null
EOF
    mkdir -p "$R/stub"
    cat >"$R/stub/claude" <<'EOF'
#!/bin/sh
# A stub `claude` for Prodigy 0.4.4: answers --version, and does the final merge 0.4.4 asks
# Claude for (`/prodigy-merge-worktree BRANCH TARGET`, run in the session worktree) as the
# floor does: `git merge --no-ff` of the session branch in the main checkout.
[ "${1:-}" = "--version" ] && { echo "1.0.0 (Claude Code)"; exit 0; }
for a in "$@"; do
    case "$a" in
        /prodigy-merge-worktree\ *)
            set -- ${a#/prodigy-merge-worktree }
            main=$(dirname "$(git rev-parse --path-format=absolute --git-common-dir)")
            exec git -C "$main" merge --no-ff --no-edit -q "$1" ;;
    esac
done
exit 0
EOF
    chmod +x "$R/stub/claude"
    cat >"$R/floor.sh" <<'EOF'
#!/bin/sh
# floor.sh T P N: the git work `prodigy run` does for the benchmark workflow, in a shell script.
# A session worktree (`git worktree add -b`) from the checkout's HEAD; then per item, P items at
# once (xargs -P; the git commands on the session worktree one at a time), floor-item.sh; then
# the session branch is merged into the checkout
# (`git merge --no-ff`), its worktree directory removed, `git worktree prune`, the branch deleted.
set -eu
T=$1 P=$2 N=$3
export HOME=$T LC_ALL=C
sess=$T/home/worktrees/repo/floor-session
cp=$T/home/state/floor
mkdir -p "$cp" "${sess%/*}"
export sess cp
cd "$T/repo"
git worktree add -q -b floor-session "$sess" HEAD
seq 0 $((N - 1)) | xargs -P "$P" -n 1 sh "$(dirname "$0")/floor-item.sh"
git merge -q --no-ff --no-edit -m "Merge floor-session" floor-session
rm -rf "$sess"
git worktree prune
git branch -q -D floor-session
EOF
    cat >"$R/floor-item.sh" <<'EOF'
#!/bin/sh
# floor-item.sh I: work item iI. Git's worktree bookkeeping is not safe against concurrent
# changes (a `git worktree add` or `prune` reading a half-made entry fails), so, as in prodigy,
# every git command on the session worktree runs one at a time (flock) and only the agent's step
# runs in parallel with other items. Under the lock: an agent worktree nested in the session
# worktree from its HEAD (`git worktree add -b BRANCH PATH HEAD`, run in the session worktree).
# Unlocked: the agent's step (`sh -c`: write a file, git add, git commit, in the agent worktree).
# Under the lock again: `git merge --no-ff --no-edit -m MSG BRANCH` in the session worktree, the
# agent worktree's directory removed (rm -rf) and `git worktree prune`, the branch deleted
# (`git branch -D`), and a JSON checkpoint of the items done so far rewritten (temporary file +
# rename; it grows with the items, as prodigy's map checkpoint does).
set -eu
i=$1 id=i$1
b=floor-agent-$id
w=$sess/agent-$id
cd "$sess"
exec 9>"$cp/lock"
flock 9
git worktree add -q -b "$b" "$w" HEAD
flock -u 9
(cd "$w" && sh -c "echo $i > out-$id.txt && git add out-$id.txt && git commit -q -m 'agent $id'")
flock 9
git merge -q --no-ff --no-edit -m "Merge agent $b (item $id)" "$b"
rm -rf "$w"
git worktree prune
git branch -q -D "$b"
echo "\"$id\"" >>"$cp/done"
{ printf '{"completed": ['; paste -sd, "$cp/done"; printf ']}\n'; } >"$cp/map-checkpoint.tmp"
mv "$cp/map-checkpoint.tmp" "$cp/map-checkpoint.json"
EOF
}

# run_check T N WHAT: after one run, the checkout has the init commit, N agent commits, N merges
# and the session merge; one worktree and one branch are left; every item's file is there.
run_check() {
    local T=$1 N=$2 what=$3 commits wts brs files want_brs=1
    # Prodigy 0.4.4 deletes no agent branch: 2N + 2 left (the checkout's, its session branch and
    # two per item, `agent-…` and `prodigy-mapreduce-agent-…`).
    [ "$what" != "prodigy 0.4.4" ] || want_brs=$((2 * N + 2))
    commits=$(git -C "$T/repo" rev-list --count HEAD)
    wts=$(git -C "$T/repo" worktree list | wc -l)
    brs=$(git -C "$T/repo" branch | wc -l)
    files=$(cd "$T/repo" && ls out-i*.txt 2>/dev/null | wc -l)
    if [ "$commits" != $((2 * N + 2)) ] || [ "$wts" != 1 ] || [ "$brs" != "$want_brs" ] || [ "$files" != "$N" ]; then
        echo "bench: $what at $N items left $commits commits (want $((2 * N + 2))), $wts worktrees, $brs branches, $files item files" >&2
        exit 1
    fi
}

bench_run() {
    local N=$1 R=$DIR/run/$1 first=$2
    local T=$R/t WF=$R/wf.yml
    # Timed runs: --run-runs, else 3 up to 100 items and 2 above (a run of 400 takes a minute).
    local RR=$RUN_RUNS
    [ -n "$RR" ] || { if [ "$N" -le 100 ]; then RR=3; else RR=2; fi; }
    rm -rf "$R"; mkdir -p "$R"
    write_run_scripts "$R"
    local PREP="sh $R/prep.sh $T $N"
    local C_PRODIGY="sh $R/prodigy.sh $T $BIN $WF"
    local C_PAR="sh $R/floor.sh $T 4 $N" C_SER="sh $R/floor.sh $T 1 $N"
    local C_044="sh $R/v044.sh $T $V044 $WF"

    log "run $N: one checked run of each (prodigy, floor 4 at once, floor serial${V044:+, 0.4.4})"
    $PREP; $C_PRODIGY; run_check "$T" "$N" "prodigy run"
    $PREP; $C_PAR; run_check "$T" "$N" "floor (4 at once)"
    $PREP; $C_SER; run_check "$T" "$N" "floor (serial)"
    if [ -n "$V044" ]; then $PREP; $C_044; run_check "$T" "$N" "prodigy 0.4.4"; fi

    log "run $N: timing ($RR runs each, a fresh repository and PRODIGY_HOME before each)"
    local extra=()
    [ -z "$V044" ] || extra=(-n "prodigy 0.4.4" "$C_044")
    hyperfine --style basic --runs "$RR" --prepare "$PREP" --export-json "$R/run.json" \
        -n "prodigy run" "$C_PRODIGY" \
        -n "floor (4 at once)" "$C_PAR" \
        -n "floor (serial)" "$C_SER" \
        "${extra[@]}" >"$R/run.txt" 2>&1 || { cat "$R/run.txt"; exit 1; }
    local m_prodigy m_par m_ser m_044="SKIPPED (not installed)"
    if [ -n "$V044" ]; then
        read -r m_prodigy m_par m_ser m_044 < <(lib median "$R/run.json")
    else
        read -r m_prodigy m_par m_ser < <(lib median "$R/run.json")
    fi

    log "run $N: peak RSS (prodigy's own VmHWM; largest process) and execs (strace -ff -e trace=execve)"
    $PREP
    (cd "$T/repo" && HOME=$T PRODIGY_HOME=$T/home lib peak "$R/rss" "$BIN" run "$WF" -y -q)
    local rss_self rss_kids
    read -r rss_self rss_kids < <(lib rss "$R/rss")
    local cpu_self="n/a"
    if command -v perf >/dev/null; then
        $PREP
        if (cd "$T/repo" && HOME=$T PRODIGY_HOME=$T/home perf stat --no-inherit -x, -e task-clock -o "$R/perf.self" -- "$BIN" run "$WF" -y -q) 2>/dev/null; then
            cpu_self=$(awk -F, '$3 == "task-clock" {printf "%.0f ms", $1; exit}' "$R/perf.self")
        fi
    fi
    # Processes started, at the first size only (per item they do not depend on the size).
    local ex_p="" ex_f=""
    if [ "$first" = 1 ]; then
        mkdir -p "$R/trace"
        $PREP; strace -ff -qq -s 256 -e trace=execve -o "$R/trace/prodigy" sh "$R/prodigy.sh" "$T" "$BIN" "$WF"
        $PREP; strace -ff -qq -s 256 -e trace=execve -o "$R/trace/floor" sh "$R/floor.sh" "$T" 4 "$N"
        ex_p=$(lib exec_counts "$R/trace/prodigy" "$N"); ex_f=$(lib exec_counts "$R/trace/floor" "$N")
        echo "$ex_p" >"$R/execs.prodigy.json"; echo "$ex_f" >"$R/execs.floor.json"
        rm -rf "$R/trace"
    fi

    local per_item per_item_ser
    per_item=$(python3 -c "import sys; print(f'{(float(sys.argv[1])-float(sys.argv[2]))/int(sys.argv[3])*1000:.1f} ms')" "$m_prodigy" "$m_par" "$N")
    per_item_ser=$(python3 -c "import sys; print(f'{(float(sys.argv[1])-float(sys.argv[2]))/int(sys.argv[3])*1000:.1f} ms')" "$m_prodigy" "$m_ser" "$N")
    local r_par; r_par=$(ratio "$m_prodigy" "$m_par")
    local v044_cell=$m_044
    [ -z "$V044" ] || v044_cell="$(fmt_s "$m_044") ($(ratio "$m_prodigy" "$m_044"))"
    RUN_ROWS+="| $N | $(fmt_s "$m_prodigy") | $(fmt_s "$m_par") | $r_par | $(meets "$r_par" 1.3) | $per_item | $(fmt_s "$m_ser") | $(ratio "$m_prodigy" "$m_ser") | $per_item_ser | $v044_cell | $cpu_self | $(python3 -c "import sys; print(f'{int(sys.argv[1])/1024:.1f} MiB ({int(sys.argv[2])/1024:.1f})')" "$rss_self" "$rss_kids") |"$'\n'
    [ -z "$ex_p" ] || EXEC_ROWS+="| $N | $(python3 -c "import json,sys; d=json.loads(sys.argv[1]); print(d['total'], '/', d['per_item'])" "$ex_p") | $(python3 -c "import json,sys; d=json.loads(sys.argv[1]); print(d['total'], '/', d['per_item'])" "$ex_f") | $(python3 -c "import json,sys; d=json.loads(sys.argv[1]); print(', '.join(f'{k} {p}' for k, v, p in d['by_command'][:12]))" "$ex_p") | $(python3 -c "import json,sys; d=json.loads(sys.argv[1]); print(', '.join(f'{k} {p}' for k, v, p in d['by_command'][:12]))" "$ex_f") |"$'\n'
    log "run $N: prodigy $(fmt_s "$m_prodigy"), floor $(fmt_s "$m_par") (4 at once) / $(fmt_s "$m_ser") (serial), ratio $r_par, $per_item per item; peak RSS $rss_self KiB"
    [ "$KEEP" = 1 ] || rm -rf "$T"
}

ORIG_HOME=$HOME
IFS=, read -r -a SIZE_LIST <<<"$SIZES"
for S in "${SIZE_LIST[@]}"; do gen_args "$S" >/dev/null; done

# readme_update REPORT NAME: REPORT between <!-- NAME:begin --> and <!-- NAME:end --> in README.
readme_update() {
    python3 - "$README" "$1" "$2" <<'PY'
import os, sys
readme, report, name = sys.argv[1], open(sys.argv[2]).read(), sys.argv[3]
begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
text = open(readme).read() if os.path.exists(readme) else f"# scripts\n\n{begin}\n{end}\n"
if begin not in text:
    text += f"\n{begin}\n{end}\n"
head, rest = text.split(begin, 1)
_, tail = rest.split(end, 1)
open(readme, "w").write(f"{head}{begin}\n{report}{end}{tail}")
PY
    echo "bench: results written to $README" >&2
}
MEM=$(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo)
CPU=$(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)

if [ -n "$SIZES" ]; then
    for S in "${SIZE_LIST[@]}"; do bench_size "$S"; done
    ELAPSED=$(( $(date +%s) - T_START ))
    OUT=$DIR/report.md
    {
        echo "Produced by \`scripts/bench.sh ${ARGV[*]}\` on $(date -u +%Y-%m-%d) (commit $(cd "$ROOT" && git rev-parse --short HEAD)$(cd "$ROOT" && git diff --quiet -- src || echo ', src/ modified')), in $((ELAPSED / 60)) min $((ELAPSED % 60)) s."
        echo "Machine: $(nproc) CPUs ($CPU), $MEM RAM, $(uname -sr); trees on \`$DIR\` ($FSTYPE);"
        if [ "$DROP" = yes ]; then
            echo "page cache dropped before every measured run."
        else
            echo "page cache not dropped ($( [ "$FSTYPE" = tmpfs ] && echo "tmpfs holds the tree in memory, dropping caches would only evict the binaries" || echo "not permitted or --drop-caches no"))."
        fi
        echo "hyperfine $(hyperfine --version | awk '{print $2}'), strace $(strace -V | awk 'NR==1 {print $4}'), $( [ "$PERF_OK" = 1 ] && perf version || echo "perf not usable"), $(du --version | head -1), $(git --version)."
        echo
        echo "Medians (wall clock):"
        echo
        cat "$SUMMARY"
        echo
        echo "Peak RSS, one run each: prodigy's own (VmHWM), and in parentheses the largest process of the run by \`getrusage(RUSAGE_CHILDREN)\`, which counts prodigy itself too: at S1 and S3 that is a git child (\`git status\` of a 5,000-file worktree), at S2 and S4 prodigy:"
        echo
        echo "| size | entries under the root | stats | clean --dry-run | clean --force |"
        echo "|---|---|---|---|---|"
        printf '%s' "$RSS_ROWS"
        echo
        echo "Syscalls (counted by ${SMODES%; }; every process including git, prodigy's own in parentheses) per entry deleted (files + directories + symlinks):"
        echo
        echo "| size | entries deleted | clean --force syscalls | per entry | rm -rf syscalls (incl. worktree prune) | per entry | ratio | ≤ 1.2 | stats / du -sb syscalls |"
        echo "|---|---|---|---|---|---|---|---|---|"
        printf '%s' "$SYS_ROWS"
        echo
        echo "Trees (entries: files, directories and symlinks under \`home/.prodigy\`; \"left\" is what remains after clean --force / after the rm -rf baseline, which must agree; \"mismatches\" compares the dry run with manifest.json):"
        echo
        echo "| size | shape | generator arguments | entries | deleted by clean | deleted by find | generated in | restore (copy) | runs (timing / destructive) | left | mismatches |"
        echo "|---|---|---|---|---|---|---|---|---|---|---|"
        printf '%s' "$GEN_ROWS"
        echo
        cat "$RESULTS"
    } >"$OUT"
    cat "$OUT"
    if [ "$README_UPDATE" = 1 ]; then readme_update "$OUT" bench; fi
fi

if [ -n "$RUN_ITEMS" ]; then
    IFS=, read -r -a RUN_LIST <<<"$RUN_ITEMS"
    find_044
    T_RUN=$(date +%s)
    FIRST=1
    for N in "${RUN_LIST[@]}"; do bench_run "$N" "$FIRST"; FIRST=0; done
    ELAPSED=$(( $(date +%s) - T_RUN ))
    OUT=$DIR/run-report.md
    {
        echo "Produced by \`scripts/bench.sh ${ARGV[*]}\` on $(date -u +%Y-%m-%d) (commit $(cd "$ROOT" && git rev-parse --short HEAD)$(cd "$ROOT" && git diff --quiet -- src || echo ', src/ modified')), in $((ELAPSED / 60)) min $((ELAPSED % 60)) s."
        echo "Machine: $(nproc) CPUs ($CPU), $MEM RAM, $(uname -sr); repositories and PRODIGY_HOME on \`$DIR\` ($FSTYPE)."
        echo "hyperfine $(hyperfine --version | awk '{print $2}'), $(git --version), $([ -n "$RUN_RUNS" ] && echo "$RUN_RUNS timed runs" || echo "3 timed runs up to 100 items, 2 above,") per command, each on a fresh repository and PRODIGY_HOME (\`--prepare\`). Prodigy 0.4.4: $([ -n "$V044" ] && echo "$V044" || echo "SKIPPED (not installed)")."
        echo
        echo "Medians (wall clock); ratio is prodigy over the floor; overhead per item is (prodigy - floor) / items. CPU is prodigy's own (perf stat --no-inherit task-clock: without its git and sh children). RSS: prodigy's own peak (VmHWM), in parentheses the largest process of the run (git or prodigy):"
        echo
        echo "| items | prodigy run | floor, 4 at once | ratio | ≤ 1.3 | overhead per item | floor, serial | ratio | overhead per item | Prodigy 0.4.4 | prodigy CPU (own) | peak RSS |"
        echo "|---|---|---|---|---|---|---|---|---|---|---|---|"
        printf '%s' "$RUN_ROWS"
        echo
        echo "Processes started (strace -ff -e trace=execve; one run of prodigy and of the 4-at-once floor, at the first size): total / per item, then per item by command:"
        echo
        echo "| items | prodigy | floor | prodigy, per item | floor, per item |"
        echo "|---|---|---|---|---|"
        printf '%s' "$EXEC_ROWS"
    } >"$OUT"
    cat "$OUT"
    if [ "$README_UPDATE" = 1 ]; then readme_update "$OUT" bench-run; fi
fi
