#!/usr/bin/env bash
# Bytes a MapReduce run writes into its job's state directory (issue 25), measured with strace.
#
#   scripts/ckpt-bytes.sh BINARY ITEMS [MAX_PARALLEL]
#
# Runs a MapReduce workflow of ITEMS trivial agents (`shell: true`, no commits) in a fresh git
# repository and PRODIGY_HOME under a temporary directory, with `strace -y -e trace=write` on
# prodigy's own process (not its children: git and the agents write nothing there). Every
# `write(2)` whose descriptor names a file under `state/work/mapreduce/jobs/` (the records, the
# temp files of crash-safe rewrites, the map log) is summed. Prints one tab-separated line:
#   items  seconds  bytes_written  final_state_bytes  final_map_checkpoint_bytes  ratio
# where final_state_bytes is `du -b` of the job directory at the end and ratio is
# bytes_written / final_map_checkpoint_bytes (the newest `map-checkpoint-*.json`).
set -euo pipefail
bin=$(realpath "$1")
n=$2
par=${3:-16}
tmp=$(mktemp -d /tmp/ckpt-bytes.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
repo=$tmp/work
git init -q -b main "$repo"
git -C "$repo" config user.name bench
git -C "$repo" config user.email bench@example.com
git -C "$repo" config commit.gpgsign false
echo bench > "$repo/README.md"
git -C "$repo" add README.md
git -C "$repo" commit -q -m init
cat > "$tmp/wf.yml" <<YML
name: ckpt-bytes
mode: mapreduce
setup:
  - shell: |
      seq 1 $n | awk 'BEGIN{printf "["} {if (NR>1) printf ","; printf "{\"id\": \"item-%d\", \"n\": %d}", \$1, \$1} END{print "]"}' > items.json
      git add items.json && git commit -q -m items
    commit_required: true
map:
  input: items.json
  max_parallel: $par
  agent_template:
    - shell: "true"
YML
mkdir -p "$tmp/home"
start=$(date +%s.%N)
(cd "$repo" && PRODIGY_HOME=$tmp/home strace -y -qq -e trace=write -o "$tmp/strace.log" \
  "$bin" run "$tmp/wf.yml" -y >"$tmp/out.log" 2>&1) || { tail -5 "$tmp/out.log" >&2; exit 1; }
end=$(date +%s.%N)
jobdir=$(ls -d "$tmp"/home/state/work/mapreduce/jobs/*)
written=$(grep -E "^write\([0-9]+<[^>]*/state/work/mapreduce/jobs/" "$tmp/strace.log" |
  sed -n 's/.*) = \([0-9][0-9]*\)$/\1/p' | awk '{s+=$1} END{print s+0}')
state=$(du -sb "$jobdir" | cut -f1)
cp=$(ls "$jobdir"/map-checkpoint-*.json | sort | tail -1)
cpb=$(stat -c %s "$cp")
printf '%s\t%.0f\t%s\t%s\t%s\t%.1f\n' "$n" "$(echo "$end - $start" | bc)" "$written" "$state" "$cpb" \
  "$(echo "$written / $cpb" | bc -l)"
