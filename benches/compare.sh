#!/usr/bin/env bash
# The load ramp (benches/load.sh) for two checkouts of heatgrid, interleaved A, B, A, B, …
# so that both share the machine's drift: the before/after figure of a change.
#   bash benches/compare.sh BEFORE_DIR AFTER_DIR [ROUNDS] [OUT_DIR]
# Each directory is a checkout (e.g. `git worktree add ../before <commit>`); each is built in
# release mode first (its own target/). Both binaries are measured by AFTER's harness
# (benches/load.sh with LOAD_ENGINE), so only the engine differs. LOAD_RATES, LOAD_STEP_S and
# LOAD_CLUSTER pass through (default here: 5,000–25,000 msg/s, 10 s steps; the echo engine is
# skipped). Prints, per run, the ramp's tables and its closing line; the plots go to OUT_DIR
# (default: a temporary directory), never into the checkouts' docs.
set -euo pipefail
before=$(cd "$1" && pwd); after=$(cd "$2" && pwd); rounds=${3:-2}
out=${4:-$(mktemp -d)}
mkdir -p "$out"
export LOAD_RATES=${LOAD_RATES:-5000,10000,15000,20000,25000} LOAD_STEP_S=${LOAD_STEP_S:-10}
export LOAD_ECHO=${LOAD_ECHO:-0}
for dir in "$before" "$after"; do
  (cd "$dir" && cargo build --release -q -p heatgrid)
done
(cd "$after" && cargo bench -q --bench load --no-run)
for ((r = 1; r <= rounds; r++)); do
  for side in before after; do
    dir=$before; [ "$side" = after ] && dir=$after
    echo "== round $r, $side ($(git -C "$dir" rev-parse --short HEAD)), steal ticks $(awk '/^cpu /{print $9}' /proc/stat)"
    LOAD_ENGINE="$dir/target/release/heatgrid" LOAD_OUT="$out/$side-$r.svg" bash "$after/benches/load.sh" | tee "$out/$side-$r.txt"
  done
done
echo "outputs in $out"
