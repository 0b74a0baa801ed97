#!/usr/bin/env bash
# Benchmark of issue 25: is `prodigy stats` / `clean --dry-run` linear in sessions whatever the ids?
#
#   scripts/bench-ids.sh [--sizes 10000,40000] [--repos 1,20,400] [--ids random,same-second,shared-prefix]
#                        [--runs N] [--dir DIR] [--no-build] [--bin FILE] [--out FILE]
#
# For every size × id style × repository count, generates a tree (scripts/gen-tree.py --id-style,
# S2's session kinds, no worktrees), times `prodigy stats --all-repos`, `prodigy clean --all-repos
# --dry-run` and `du -sb` of the root with hyperfine (one warm-up, N timed runs, default 3), records
# the peak RSS of `stats` and of `clean --dry-run` (`/usr/bin/time -f %M`), then deletes the tree
# (one at a time: a 40,000-session tree is ~1.5 GB and ~1 million inodes on tmpfs). DIR defaults
# to /dev/shm/prodigy-bench-ids. Prints one markdown table, then per shape the time ratio of the
# largest to the smallest size over the size ratio (1.00 is linear) and the RSS slopes in bytes a
# session; written to FILE too (default DIR/report.md). Wall and CPU time (user + system) both:
# on a machine others load, CPU time is the steadier measure. --bin times another binary instead
# of target/release/prodigy, without building: the static musl build that ships, for example
# (scripts/build-static.sh puts it in target/static/x86_64/prodigy).
set -euo pipefail

usage() {
    sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'
    exit "${1:-2}"
}

SIZES=10000,40000
REPOS=1,20,400
IDS=random,same-second,shared-prefix
RUNS=3
DIR=/dev/shm/prodigy-bench-ids
BUILD=1
OUT=""
BIN_ARG=""
while [ $# -gt 0 ]; do
    case "$1" in
        --sizes) SIZES=$2; shift 2 ;;
        --repos) REPOS=$2; shift 2 ;;
        --ids) IDS=$2; shift 2 ;;
        --runs) RUNS=$2; shift 2 ;;
        --dir) DIR=$2; shift 2 ;;
        --no-build) BUILD=0; shift ;;
        --bin) BIN_ARG=$2; BUILD=0; shift 2 ;;
        --out) OUT=$2; shift 2 ;;
        -h|--help) usage 0 ;;
        *) echo "bench-ids: unknown argument \`$1\`" >&2; usage ;;
    esac
done

ROOT=$(cd "$(dirname "$0")/.." && pwd)
TARGET_DIR=${CARGO_TARGET_DIR:-target}
case "$TARGET_DIR" in /*) ;; *) TARGET_DIR=$ROOT/$TARGET_DIR ;; esac
BIN=${BIN_ARG:-$TARGET_DIR/release/prodigy}
GEN=$ROOT/scripts/gen-tree.py
OUT=${OUT:-$DIR/report.md}
# S2's kinds (scripts/bench.sh): a third expired, resumable sessions with a map checkpoint.
KINDS=completed-old,completed-recent,failed-resumable-old,running-stale-old,active-old,corrupt-old,cancelled-old,paused-resumable-old,completed-recent

for tool in hyperfine python3 git /usr/bin/time; do
    command -v "$tool" >/dev/null || { echo "bench-ids: \`$tool\` is missing (apt-get install hyperfine time)" >&2; exit 2; }
done
if [ "$BUILD" = 1 ]; then (cd "$ROOT" && cargo build --release --locked -q); fi
[ -x "$BIN" ] || { echo "bench-ids: no binary at \`$BIN\` (build it, or drop --no-build)" >&2; exit 2; }
mkdir -p "$DIR"
fs=$(stat -f -c %T "$DIR")

# mean seconds of command N (0-based) in a hyperfine JSON export, wall and CPU (user + system)
mean() { python3 -c 'import json,sys; print("%.3f" % json.load(open(sys.argv[1]))["results"][int(sys.argv[2])]["mean"])' "$1" "$2"; }
cpu() { python3 -c 'import json,sys; r=json.load(open(sys.argv[1]))["results"][int(sys.argv[2])]; print("%.3f" % (r["user"] + r["system"]))' "$1" "$2"; }

rows=$DIR/rows.tsv
: > "$rows"
IFS=, read -r -a sizes <<< "$SIZES"
IFS=, read -r -a repos <<< "$REPOS"
IFS=, read -r -a styles <<< "$IDS"
for n in "${sizes[@]}"; do
    for style in "${styles[@]}"; do
        for r in "${repos[@]}"; do
            t=$DIR/tree
            rm -rf "$t"
            python3 "$GEN" --out "$t" --sessions "$n" --repos "$r" --worktrees 0 --logs 100 \
                --kinds "$KINDS" --id-style "$style" --quiet
            home=$t/home/.prodigy
            json=$DIR/h.json
            hyperfine -N -w 1 -r "$RUNS" --export-json "$json" \
                "env PRODIGY_HOME=$home $BIN stats --all-repos" \
                "env PRODIGY_HOME=$home $BIN clean --all-repos --dry-run" \
                "du -sb $home" >/dev/null 2>&1
            s=$(mean "$json" 0); c=$(mean "$json" 1); d=$(mean "$json" 2)
            sc=$(cpu "$json" 0); cc=$(cpu "$json" 1); dc=$(cpu "$json" 2)
            rss=$(PRODIGY_HOME=$home /usr/bin/time -f %M "$BIN" stats --all-repos 2>&1 >/dev/null | tail -1)
            crss=$(PRODIGY_HOME=$home /usr/bin/time -f %M "$BIN" clean --all-repos --dry-run 2>&1 >/dev/null | tail -1)
            printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$n" "$style" "$r" "$s" "$c" "$d" "$rss" "$sc" "$cc" "$dc" "$crss" >> "$rows"
            echo "bench-ids: $n sessions, $style ids, $r repos: stats ${s}s, clean --dry-run ${c}s, du ${d}s, peak RSS stats ${rss} KiB, clean --dry-run ${crss} KiB" >&2
            rm -rf "$t"
        done
    done
done

python3 - "$rows" "$fs" "$RUNS" > "$OUT" <<'EOF'
import sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
print(f"On {sys.argv[2]}, mean of {sys.argv[3]} runs (hyperfine, one warm-up); peak RSS of `stats` "
      "and of `clean --dry-run` (one run each).\n")
print("Wall time, then CPU time (user + system, what other load on the machine disturbs least).\n")
print("| sessions | ids | repos | `stats` s | `clean --dry-run` s | `du -sb` s | stats/du | clean/du "
      "| CPU: stats | clean | du | stats/du | clean/du | peak RSS: stats | clean |")
print("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
by = {}
for n, style, r, s, c, d, rss, sc, cc, dc, crss in rows:
    n, rss, crss = int(n), int(rss), int(crss)
    s, c, d, sc, cc, dc = map(float, (s, c, d, sc, cc, dc))
    by.setdefault((style, r), []).append((n, s, c, d, rss, sc, cc, dc, crss))
    print(f"| {n:,} | {style} | {r} | {s:.2f} | {c:.2f} | {d:.2f} | {s/d:.2f} | {c/d:.2f} "
          f"| {sc:.2f} | {cc:.2f} | {dc:.2f} | {sc/dc:.2f} | {cc/dc:.2f} | {rss/1024:.1f} MiB "
          f"| {crss/1024:.1f} MiB |")
print("\nLinearity, largest size over smallest: time ratio ÷ size ratio (1.00: linear), wall and "
      "CPU, and the slope of peak RSS in bytes a session.\n")
print("| ids | repos | stats | clean --dry-run | du | CPU: stats | clean | du | RSS slope: stats "
      "| clean |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for (style, r), v in by.items():
    if len(v) < 2:
        continue
    v.sort()
    (n0, s0, c0, d0, m0, sc0, cc0, dc0, cm0) = v[0]
    (n1, s1, c1, d1, m1, sc1, cc1, dc1, cm1) = v[-1]
    k = n1 / n0
    slope = (m1 - m0) * 1024 / (n1 - n0)
    cslope = (cm1 - cm0) * 1024 / (n1 - n0)
    print(f"| {style} | {r} | {s1/s0/k:.2f} | {c1/c0/k:.2f} | {d1/d0/k:.2f} "
          f"| {sc1/sc0/k:.2f} | {cc1/cc0/k:.2f} | {dc1/dc0/k:.2f} | {slope:.0f} B | {cslope:.0f} B |")
EOF
cat "$OUT"
