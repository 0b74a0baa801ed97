#!/usr/bin/env bash
# Run every cargo-fuzz target in fuzz/ for SECONDS each (default 60), one after the other, and
# print per target: runs, coverage, crashes.
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]
#
# Needs a nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz`). The corpus of each
# target (fuzz/corpus/TARGET/, not committed) is seeded from the committed seeds in
# fuzz/seeds/TARGET/ (except crash-* files: inputs that found a bug not fixed yet, which are
# replayed first and reported as "known") and from the real 0.4.4 tree at
# /tmp/prodigy-corpus/home/.prodigy (extracted from tests/fixtures/real-0.4.4/tree.tar.gz when it
# is not there yet; copied, never modified). Crashing inputs land in
# fuzz/artifacts/TARGET/; full libFuzzer logs in fuzz/artifacts/logs/TARGET.log.
# Memory is bounded: -rss_limit_mb=512 -max_len=65536. Exit status 1 if any target found a new
# crash. FUZZ_FEATURES=... is passed to `cargo fuzz --features` (see fuzz/Cargo.toml).
set -euo pipefail
cd "$(dirname "$0")/.."

secs=${1:-60}
[[ $secs =~ ^[0-9]+$ && $secs -gt 0 ]] || { echo "usage: $0 [SECONDS] [TARGET...]" >&2; exit 2; }
shift $(($# > 0 ? 1 : 0))
all_targets=(checkpoint event_line jsonl dlq records duration workflow expr)
targets=("${@:-${all_targets[@]}}")

# cargo fuzz needs nightly (sanitizer flags); use the default toolchain if it is nightly.
toolchain=()
if ! rustc --version | grep -q nightly; then
  rustup toolchain list | grep -q '^nightly' || { echo "fuzz.sh: no nightly toolchain (rustup toolchain install nightly)" >&2; exit 1; }
  toolchain=(+nightly)
fi
cargo "${toolchain[@]}" fuzz --version >/dev/null 2>&1 || { echo "fuzz.sh: cargo-fuzz missing (cargo install cargo-fuzz)" >&2; exit 1; }

real=/tmp/prodigy-corpus/home/.prodigy
if [[ ! -d $real ]]; then
  # The tarball holds absolute paths under /tmp/prodigy-corpus.
  tar -C / -xzf tests/fixtures/real-0.4.4/tree.tar.gz
fi

# add TARGET FILE [PREFIX_BYTE_OCTAL]: copy FILE into the corpus under its content hash.
add() {
  local dir=fuzz/corpus/$1 tmp
  tmp=$(mktemp)
  { [[ -z ${3:-} ]] || printf "\\$3"; cat "$2"; } > "$tmp"
  mv "$tmp" "$dir/$(sha1sum < "$tmp" | cut -c1-40)"
}
seed() {
  local t=$1 f
  mkdir -p "fuzz/corpus/$t" "fuzz/artifacts/$t"
  for f in fuzz/seeds/"$t"/*; do [[ -f $f && ${f##*/} != crash-* ]] && add "$t" "$f"; done
  [[ -d $real ]] || return 0
  case $t in
    checkpoint)  # first byte 4 = 0.4.4 workflow checkpoint
      for f in "$real"/state/*/checkpoints/*.checkpoint.json; do [[ -f $f ]] && add "$t" "$f" 004; done ;;
    dlq)
      for f in "$real"/dlq/*/*/mapreduce/dlq/*/items/*.json "$real"/dlq/*/*/mapreduce/dlq/*/index.json; do
        [[ -f $f ]] && add "$t" "$f"
      done ;;
    records)
      for f in "$real"/sessions/*.json "$real"/resume_locks/*.lock; do [[ -f $f ]] && add "$t" "$f"; done ;;
    jsonl)
      for f in "$real"/events/*/*/*.jsonl; do [[ -s $f ]] && add "$t" "$f"; done ;;
  esac
  return 0
}

echo "fuzz.sh: building targets"
mkdir -p fuzz/artifacts/logs
features=()
[[ -z ${FUZZ_FEATURES:-} ]] || features=(--features "$FUZZ_FEATURES")
cargo "${toolchain[@]}" fuzz build "${features[@]}" >fuzz/artifacts/logs/build.log 2>&1 ||
  { cat fuzz/artifacts/logs/build.log >&2; echo "fuzz.sh: build failed" >&2; exit 1; }

crashed=0
rows=()
for t in "${targets[@]}"; do
  seed "$t"
  log=fuzz/artifacts/logs/$t.log
  known=0
  for f in fuzz/seeds/"$t"/crash-*; do
    [[ -f $f ]] || continue
    if cargo "${toolchain[@]}" fuzz run "${features[@]}" "$t" "$f" >"$log" 2>&1; then
      echo "fuzz.sh: $t: $f no longer crashes (fixed? move it out of crash-*)"
    else
      known=$((known + 1))
      echo "fuzz.sh: $t: known bug still present: $f"
    fi
  done
  before=$(find "fuzz/artifacts/$t" -maxdepth 1 -type f \( -name 'crash-*' -o -name 'oom-*' -o -name 'timeout-*' -o -name 'leak-*' \) | wc -l)
  echo "fuzz.sh: $t for ${secs}s"
  status=0
  cargo "${toolchain[@]}" fuzz run "${features[@]}" "$t" "fuzz/corpus/$t" -- \
    -max_total_time="$secs" -rss_limit_mb=512 -max_len=65536 -timeout=10 \
    -print_final_stats=1 >"$log" 2>&1 || status=$?
  after=$(find "fuzz/artifacts/$t" -maxdepth 1 -type f \( -name 'crash-*' -o -name 'oom-*' -o -name 'timeout-*' -o -name 'leak-*' \) | wc -l)
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1 || true)
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | cut -d' ' -f2 || true)
  corp=$(grep -o 'corp: [0-9]*' "$log" | tail -1 | cut -d' ' -f2 || true)
  new=$((after - before))
  if [[ $status -ne 0 || $new -gt 0 ]]; then
    crashed=1
    echo "fuzz.sh: $t FAILED (exit $status); see $log and fuzz/artifacts/$t/" >&2
    grep -m3 -E 'panicked at|^SUMMARY|Test unit written' "$log" >&2 || true
    new=$((new > 0 ? new : 1))
  fi
  rows+=("$(printf '%-12s %8ss %12s %8s %8s %8s %6s' "$t" "$secs" "${runs:-?}" "${cov:-?}" "${corp:-?}" "$new" "$known")")
done

echo
printf '%-12s %9s %12s %8s %8s %8s %6s\n' target time runs coverage corpus crashes known
printf '%s\n' "${rows[@]}"
exit "$crashed"
