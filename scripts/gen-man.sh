#!/usr/bin/env bash
# Regenerate man/*.1 from the binary's flag tables (`prodigy help --man PAGE`).
# A unit test fails when the committed pages differ from what the binary generates.
# man/prodigy-workflow.5 is generated from the workflow key table; man/prodigy-storage.5 is written by hand; it is only checked here (and by tests/cli/repo.rs).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --quiet
bin=${CARGO_TARGET_DIR:-target}/debug/prodigy
for page in prodigy prodigy-run prodigy-resume prodigy-validate prodigy-clean prodigy-worktree prodigy-stats prodigy-sessions prodigy-events prodigy-dlq prodigy-checkpoints prodigy-archive; do
  "$bin" help --man "$page" > "man/$page.1"
done
"$bin" help --man prodigy-workflow > man/prodigy-workflow.5
if command -v groff >/dev/null 2>&1; then
  for f in man/*.[15]; do groff -ww -z -man "$f"; done
else
  echo "gen-man.sh: groff missing, pages not checked" >&2
fi
echo "man pages written to man/"
