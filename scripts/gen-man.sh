#!/usr/bin/env bash
# Regenerate man/*.1 from the binary's flag tables (`prodigy help --man PAGE`).
# A unit test fails when the committed pages differ from what the binary generates.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --quiet
for page in prodigy prodigy-run prodigy-clean prodigy-worktree prodigy-stats prodigy-sessions prodigy-events prodigy-dlq prodigy-checkpoints; do
  target/debug/prodigy help --man "$page" > "man/$page.1"
done
if command -v groff >/dev/null 2>&1; then
  for f in man/*.1; do groff -ww -z -man "$f"; done
fi
echo "man pages written to man/"
